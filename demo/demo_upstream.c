/*
 * demo_upstream.c — capgate-demo-upstream: a fast OpenAI-compatible mock used
 * as the provider in integration tests and benchmarks (docs/contracts-issue2.md,
 * "Demo upstream").
 *
 *   capgate-demo-upstream [--listen HOST:PORT] [--workers N]
 *
 * Answers POST /v1/chat/completions (and /chat/completions) with a fixed
 * sentence, one "token" per word, non-streaming or as SSE chunks; GET
 * /v1/models, /demo/stats, /healthz; 404 otherwise. Token counts are exact and
 * documented so tests can compute costs: prompt_tokens = ceil(content bytes / 4),
 * completion_tokens = min(16, max_tokens, max_completion_tokens) or the
 * body's "demo": {"completion_tokens": N} (0..100000, still capped by the
 * max_* fields). Test controls in "demo": status, delay_ms, break_after.
 *
 * Invariants: nothing blocks or sleeps on a worker loop (delay_ms is a uv
 * timer, streams follow the connection's drain callback); each worker thread
 * owns one loop and one listener (SO_REUSEPORT when N > 1); the only shared
 * state is the atomic counters. /demo/stats counts every request received,
 * including the stats request itself.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <cjson/cJSON.h>

#include "cg_clock.h"
#include "cg_config.h"
#include "cg_http.h"
#include "cg_log.h"

#define DEMO_LISTEN_DEFAULT "127.0.0.1:9090"
#define DEMO_WORKERS_MAX 64
#define DEMO_MODEL_MAX 256                           /* bytes of the model name echoed back */
#define DEMO_MODEL_JSON_MAX (DEMO_MODEL_MAX * 6 + 1) /* JSON-escaped */
#define DEMO_WORDS_DEFAULT 16         /* completion tokens without demo.completion_tokens */
#define DEMO_WORDS_MAX 100000         /* ceiling of demo.completion_tokens */
#define DEMO_DELAY_MS_MAX 600000      /* ceiling of demo.delay_ms */
#define DEMO_STREAM_PENDING_MAX 65536 /* queued stream bytes before waiting for drain */
#define DEMO_EVENT_MAX (DEMO_MODEL_JSON_MAX + 512) /* one SSE event */
#define DEMO_HEAD_JSON_MAX (DEMO_MODEL_JSON_MAX + 256)

/* The reply, one word per token; longer completions cycle through it. */
static const char *const demo_words[DEMO_WORDS_DEFAULT] = {
    "The", "quick", "brown",   "fox",   "jumps", "over",  "the",    "lazy",
    "dog", "while", "capgate", "keeps", "every", "token", "within", "budget.",
};
#define DEMO_WORD_MAX 8 /* longest word above */

static atomic_llong demo_requests;
static atomic_llong demo_chat_requests;
static atomic_ullong demo_ids;

typedef struct demo_worker {
    uv_loop_t loop;
    uv_async_t stop; /* workers 1..N-1: closes the server from the main thread */
    uv_thread_t thread;
    cg_http_server *srv;
} demo_worker;

/* One chat completion in progress (on the heap only when delayed or streamed). */
typedef struct demo_job {
    uv_timer_t timer; /* delay_ms; initialised only if timer_used */
    uint8_t timer_used;
    uint8_t stream;
    uint8_t include_usage;
    uint8_t length_capped; /* finish_reason "length" */
    int status;            /* demo.status, 0 = normal answer */
    int64_t break_after;   /* content chunks before the connection drops; -1 = never */
    int64_t words;         /* completion tokens */
    int64_t prompt_tokens;
    int64_t delay_ms;
    uint64_t id;
    int64_t created;
    uint32_t step; /* stream position, see demo_stream_event */
    cg_http_conn *conn;
    char model_json[DEMO_MODEL_JSON_MAX];
} demo_job;

/* ---- small JSON helpers ---- */

static void demo_json_escape(char *dst, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s != '\0' && o + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)ch;
        } else if (ch < 0x20) {
            o += (size_t)snprintf(dst + o, cap - o, "\\u%04x", ch);
        } else {
            dst[o++] = (char)ch;
        }
    }
    dst[o] = '\0';
}

/* Integer field of obj, or dflt when absent or not a number. */
static int64_t demo_int(const cJSON *obj, const char *name, int64_t dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : dflt;
}

static void demo_json_reply(cg_http_conn *c, int status, const char *json)
{
    cg_http_respond(c, status, NULL, "application/json", json, strlen(json));
}

static const char *demo_error_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 429:
        return "rate_limit_error";
    default:
        return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

/* ---- request parsing ---- */

/* Sum of UTF-8 bytes of every message's content (string or text parts). */
static size_t demo_content_bytes(const cJSON *messages)
{
    size_t n = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, messages)
    {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (cJSON_IsString(content)) {
            n += strlen(content->valuestring);
            continue;
        }
        const cJSON *part;
        cJSON_ArrayForEach(part, content)
        {
            const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
            if (cJSON_IsString(text)) {
                n += strlen(text->valuestring);
            }
        }
    }
    return n;
}

/* Completion length: the default or demo.completion_tokens, capped by max_*. */
static void demo_job_words(demo_job *j, const cJSON *root, const cJSON *demo)
{
    int64_t want = demo_int(demo, "completion_tokens", DEMO_WORDS_DEFAULT);
    want = want < 0 ? 0 : want > DEMO_WORDS_MAX ? DEMO_WORDS_MAX : want;
    int64_t cap = INT64_MAX;
    const char *const caps[] = {"max_tokens", "max_completion_tokens"};
    for (size_t i = 0; i < 2; i++) {
        int64_t v = demo_int(root, caps[i], INT64_MAX);
        cap = v < cap ? v : cap;
    }
    cap = cap < 0 ? 0 : cap;
    j->words = want < cap ? want : cap;
    j->length_capped = cap < want;
}

/* Fill j from the body; on a bad request answers 400 and returns -1. */
static int demo_job_parse(demo_job *j, cg_http_conn *c, const cg_http_req *r)
{
    cJSON *root = cJSON_ParseWithLength(r->body, r->body_len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        cg_http_respond_error(c, 400, "invalid_request_error", "invalid_json",
                              "We could not parse the JSON body of your request.", NULL);
        return -1;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsString(model) || strlen(model->valuestring) > DEMO_MODEL_MAX) {
        cJSON_Delete(root);
        cg_http_respond_error(c, 400, "invalid_request_error", "invalid_request",
                              "model: a string of at most 256 bytes is required", NULL);
        return -1;
    }
    demo_json_escape(j->model_json, sizeof(j->model_json), model->valuestring);
    const cJSON *demo = cJSON_GetObjectItemCaseSensitive(root, "demo");
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    j->stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "stream"));
    j->include_usage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage"));
    j->prompt_tokens =
        (int64_t)(demo_content_bytes(cJSON_GetObjectItemCaseSensitive(root, "messages")) + 3) / 4;
    demo_job_words(j, root, demo);
    int64_t st = demo_int(demo, "status", 0);
    j->status = st >= 100 && st <= 599 && st != 200 ? (int)st : 0;
    j->delay_ms = demo_int(demo, "delay_ms", 0);
    j->delay_ms = j->delay_ms < 0                   ? 0
                  : j->delay_ms > DEMO_DELAY_MS_MAX ? DEMO_DELAY_MS_MAX
                                                    : j->delay_ms;
    j->break_after = demo_int(demo, "break_after", -1);
    j->id = atomic_fetch_add(&demo_ids, 1) + 1;
    j->created = cg_now_ms() / 1000;
    j->conn = c;
    cJSON_Delete(root);
    return 0;
}

/* ---- answers ---- */

static void demo_job_free_cb(uv_handle_t *h)
{
    free(h->data);
}

/* Free a heap job (its timer first, if it has one). */
static void demo_job_free(demo_job *j)
{
    if (j->timer_used) {
        uv_close((uv_handle_t *)&j->timer, demo_job_free_cb);
    } else {
        free(j);
    }
}

static void demo_reply_status(demo_job *j)
{
    char msg[64];
    snprintf(msg, sizeof(msg), "demo: forced status %d", j->status);
    cg_http_respond_error(j->conn, j->status, demo_error_type(j->status), "demo_status", msg, NULL);
}

/* "id","object","created","model" of a completion or chunk. */
static int demo_head_json(const demo_job *j, char *dst, size_t cap, const char *object)
{
    return snprintf(dst, cap,
                    "{\"id\":\"chatcmpl-demo-%llu\",\"object\":\"%s\",\"created\":%lld,"
                    "\"model\":\"%s\"",
                    (unsigned long long)j->id, object, (long long)j->created, j->model_json);
}

static void demo_reply_plain(const demo_job *j)
{
    size_t cap = DEMO_HEAD_JSON_MAX + 512 + (size_t)j->words * (DEMO_WORD_MAX + 1);
    char *b = malloc(cap);
    if (b == NULL) {
        cg_http_respond_error(j->conn, 500, "server_error", "out_of_memory", "out of memory", NULL);
        return;
    }
    size_t n = (size_t)demo_head_json(j, b, cap, "chat.completion");
    n += (size_t)snprintf(b + n, cap - n,
                          ",\"choices\":[{\"index\":0,\"message\":{\"role\":"
                          "\"assistant\",\"content\":\"");
    for (int64_t i = 0; i < j->words; i++) {
        n += (size_t)snprintf(b + n, cap - n, "%s%s", i ? " " : "",
                              demo_words[i % DEMO_WORDS_DEFAULT]);
    }
    n += (size_t)snprintf(b + n, cap - n,
                          "\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"%s\"}],"
                          "\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,"
                          "\"total_tokens\":%lld}}",
                          j->length_capped ? "length" : "stop", (long long)j->prompt_tokens,
                          (long long)j->words, (long long)j->prompt_tokens + (long long)j->words);
    cg_http_respond(j->conn, 200, NULL, "application/json", b, n);
    free(b);
}

/*
 * SSE event number step of the stream, into dst; returns its length, 0 when
 * the stream is complete. Steps: 0 role, 1..words content, finish chunk,
 * usage chunk (include_usage only), [DONE].
 */
static size_t demo_stream_event(const demo_job *j, uint32_t step, char *dst, size_t cap)
{
    uint64_t words = (uint64_t)j->words;
    uint64_t finish = words + 1, usage = finish + 1, done = usage + (j->include_usage ? 1 : 0);
    if (step > done) {
        return 0;
    }
    if (step == done) {
        return (size_t)snprintf(dst, cap, "data: [DONE]\n\n");
    }
    int n = snprintf(dst, cap, "data: ");
    n += demo_head_json(j, dst + n, cap - (size_t)n, "chat.completion.chunk");
    if (step == usage) {
        n += snprintf(dst + n, cap - (size_t)n,
                      ",\"choices\":[],\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":"
                      "%lld,\"total_tokens\":%lld}}\n\n",
                      (long long)j->prompt_tokens, (long long)j->words,
                      (long long)j->prompt_tokens + (long long)j->words);
        return (size_t)n;
    }
    n += snprintf(dst + n, cap - (size_t)n, ",\"choices\":[{\"index\":0,\"delta\":");
    if (step == 0) {
        n += snprintf(dst + n, cap - (size_t)n, "{\"role\":\"assistant\",\"content\":\"\"}");
    } else if (step < finish) {
        n += snprintf(dst + n, cap - (size_t)n, "{\"content\":\"%s%s\"}", step > 1 ? " " : "",
                      demo_words[(step - 1) % DEMO_WORDS_DEFAULT]);
    } else {
        n += snprintf(dst + n, cap - (size_t)n, "{}");
    }
    n += snprintf(dst + n, cap - (size_t)n, ",\"logprobs\":null,\"finish_reason\":%s}]}\n\n",
                  step < finish      ? "null"
                  : j->length_capped ? "\"length\""
                                     : "\"stop\"");
    return (size_t)n;
}

/* Write events until the queue is full (then wait for drain) or the end. */
static void demo_stream_pump(demo_job *j)
{
    char ev[DEMO_EVENT_MAX];
    int64_t brk = j->break_after;
    if (brk >= 0 && brk > j->words) {
        brk = j->words;
    }
    for (;;) {
        if (brk >= 0 && j->step == (uint32_t)brk + 1) {
            cg_http_conn_drop(j->conn); /* K content chunks, then the connection breaks */
            demo_job_free(j);
            return;
        }
        size_t n = demo_stream_event(j, j->step, ev, sizeof(ev));
        if (n == 0) {
            cg_http_stream_end(j->conn);
            demo_job_free(j);
            return;
        }
        j->step++;
        if (cg_http_stream_write(j->conn, ev, n) > DEMO_STREAM_PENDING_MAX) {
            return; /* demo_drain_cb continues */
        }
    }
}

static void demo_drain_cb(cg_http_conn *c, void *ud)
{
    (void)c;
    demo_stream_pump(ud);
}

static void demo_abort_cb(cg_http_conn *c, void *ud)
{
    demo_job *j = ud;
    (void)c;
    if (j->timer_used) {
        uv_timer_stop(&j->timer);
    }
    demo_job_free(j);
}

/* Answer a parsed job (now, or when its delay has passed). Frees heap jobs. */
static void demo_job_run(demo_job *j, int on_heap)
{
    if (j->status != 0) {
        demo_reply_status(j);
    } else if (j->stream) {
        cg_http_stream_begin(j->conn, 200, "Cache-Control: no-cache\r\n", "text/event-stream");
        demo_stream_pump(j); /* frees j when done */
        return;
    } else {
        demo_reply_plain(j);
    }
    if (on_heap) {
        demo_job_free(j);
    }
}

static void demo_delay_cb(uv_timer_t *t)
{
    demo_job_run(t->data, 1);
}

static void demo_chat(uv_loop_t *loop, cg_http_conn *c, const cg_http_req *r)
{
    demo_job local;
    memset(&local, 0, sizeof(local));
    if (demo_job_parse(&local, c, r) != 0) {
        return;
    }
    if (local.delay_ms == 0 && !(local.stream && local.status == 0)) {
        demo_job_run(&local, 0); /* answered at once: no allocation */
        return;
    }
    demo_job *j = malloc(sizeof(*j));
    if (j == NULL) {
        cg_http_respond_error(c, 500, "server_error", "out_of_memory", "out of memory", NULL);
        return;
    }
    *j = local;
    cg_http_conn_set_callbacks(c, demo_abort_cb, demo_drain_cb, j);
    if (j->delay_ms > 0) {
        uv_timer_init(loop, &j->timer);
        j->timer.data = j;
        j->timer_used = 1;
        uv_timer_start(&j->timer, demo_delay_cb, (uint64_t)j->delay_ms, 0);
        return;
    }
    demo_job_run(j, 1);
}

static void demo_models(cg_http_conn *c)
{
    static const char *const models[] = {"demo-gpt-4o-mini", "demo-model", "gpt-4o-mini"};
    char b[1024];
    size_t n = (size_t)snprintf(b, sizeof(b), "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
        n += (size_t)snprintf(b + n, sizeof(b) - n,
                              "%s{\"id\":\"%s\",\"object\":\"model\",\"created\":1700000000,"
                              "\"owned_by\":\"capgate-demo\"}",
                              i ? "," : "", models[i]);
    }
    snprintf(b + n, sizeof(b) - n, "]}");
    demo_json_reply(c, 200, b);
}

static void demo_handler(cg_http_conn *c, const cg_http_req *r, void *ud)
{
    demo_worker *w = ud;
    atomic_fetch_add(&demo_requests, 1);
    int get = strcmp(r->method, "GET") == 0;
    if (strcmp(r->method, "POST") == 0 && (strcmp(r->path, "/v1/chat/completions") == 0 ||
                                           strcmp(r->path, "/chat/completions") == 0)) {
        atomic_fetch_add(&demo_chat_requests, 1);
        demo_chat(&w->loop, c, r);
    } else if (get && (strcmp(r->path, "/v1/models") == 0 || strcmp(r->path, "/models") == 0)) {
        demo_models(c);
    } else if (get && strcmp(r->path, "/demo/stats") == 0) {
        char b[128];
        snprintf(b, sizeof(b), "{\"requests\":%lld,\"chat_requests\":%lld}",
                 (long long)atomic_load(&demo_requests),
                 (long long)atomic_load(&demo_chat_requests));
        demo_json_reply(c, 200, b);
    } else if (get && strcmp(r->path, "/healthz") == 0) {
        demo_json_reply(c, 200, "{\"status\":\"ok\"}");
    } else {
        char msg[160];
        snprintf(msg, sizeof(msg), "Unknown request URL: %s %.100s", r->method, r->path);
        cg_http_respond_error(c, 404, "invalid_request_error", "unknown_url", msg, NULL);
    }
}

/* ---- process ---- */

static demo_worker *demo_workers;
static uint32_t demo_worker_n;
static uv_signal_t demo_sigs[2];

static void demo_stop_cb(uv_async_t *a)
{
    demo_worker *w = a->data;
    cg_http_server_close(w->srv);
    uv_close((uv_handle_t *)a, NULL);
}

static void demo_signal_cb(uv_signal_t *s, int signum)
{
    (void)s;
    cg_logf(CG_LOG_INFO, "signal %d: shutting down", signum);
    for (uint32_t i = 1; i < demo_worker_n; i++) {
        uv_async_send(&demo_workers[i].stop);
    }
    cg_http_server_close(demo_workers[0].srv);
    uv_close((uv_handle_t *)&demo_sigs[0], NULL);
    uv_close((uv_handle_t *)&demo_sigs[1], NULL);
}

static void demo_thread(void *arg)
{
    demo_worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

static int demo_args(int argc, char **argv, const char **listen, uint32_t *workers)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            *listen = argv[++i];
        } else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end != '\0' || v < 1 || v > DEMO_WORKERS_MAX) {
                fprintf(stderr, "capgate-demo-upstream: --workers: must be 1..%d\n",
                        DEMO_WORKERS_MAX);
                return -1;
            }
            *workers = (uint32_t)v;
        } else {
            fprintf(stderr, "usage: capgate-demo-upstream [--listen HOST:PORT] [--workers N]\n");
            return -1;
        }
    }
    return 0;
}

/* Loops and listeners of every worker; the threads start afterwards. */
static int demo_listen_all(const char *listen)
{
    cg_http_opts o = {.body_max_bytes = 64u << 20,
                      .header_max_bytes = 64u << 10,
                      .request_timeout_ms = 60000,
                      .conns_max = 100000};
    for (uint32_t i = 0; i < demo_worker_n; i++) {
        demo_worker *w = &demo_workers[i];
        uv_loop_init(&w->loop);
        cg_err err =
            cg_http_listen(&w->loop, listen, demo_worker_n > 1, &o, demo_handler, w, &w->srv);
        if (err != CG_ERR_OK) {
            cg_log(CG_LOG_ERROR, "cannot listen", "listen", listen, "error", cg_err_name(err),
                   NULL);
            return -1;
        }
        if (i > 0) {
            uv_async_init(&w->loop, &w->stop, demo_stop_cb);
            w->stop.data = w;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *listen = getenv("CAPGATE_DEMO_LISTEN");
    uint32_t workers = 1;
    cg_log_init("demo-upstream", CG_LOG_INFO);
    if (listen == NULL || listen[0] == '\0') {
        listen = DEMO_LISTEN_DEFAULT;
    }
    if (demo_args(argc, argv, &listen, &workers) != 0) {
        return 2;
    }
    demo_worker_n = workers;
    demo_workers = calloc(workers, sizeof(*demo_workers));
    if (demo_workers == NULL || demo_listen_all(listen) != 0) {
        return 1;
    }
    demo_worker *w0 = &demo_workers[0];
    uv_signal_init(&w0->loop, &demo_sigs[0]);
    uv_signal_init(&w0->loop, &demo_sigs[1]);
    uv_signal_start(&demo_sigs[0], demo_signal_cb, SIGINT);
    uv_signal_start(&demo_sigs[1], demo_signal_cb, SIGTERM);
    for (uint32_t i = 1; i < workers; i++) {
        uv_thread_create(&demo_workers[i].thread, demo_thread, &demo_workers[i]);
    }
    char port[16], nw[16];
    snprintf(port, sizeof(port), "%d", cg_http_server_port(w0->srv));
    snprintf(nw, sizeof(nw), "%u", workers);
    cg_log(CG_LOG_INFO, "demo upstream listening", "listen", listen, "port", port, "workers", nw,
           NULL);
    uv_run(&w0->loop, UV_RUN_DEFAULT);
    for (uint32_t i = 1; i < workers; i++) {
        uv_thread_join(&demo_workers[i].thread);
    }
    for (uint32_t i = 0; i < workers; i++) {
        uv_loop_close(&demo_workers[i].loop);
    }
    free(demo_workers);
    cg_log(CG_LOG_INFO, "demo upstream stopped", NULL);
    return 0;
}
