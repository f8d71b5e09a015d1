/*
 * demo_upstream.c — capgate-demo-upstream: a fast OpenAI-compatible mock used
 * as the provider in integration tests and benchmarks (contract:
 * demo/README.md).
 *
 *   capgate-demo-upstream [--listen HOST:PORT] [--workers N]
 *
 * Answers POST /v1/chat/completions, /v1/completions, /v1/embeddings and
 * /v1/responses (also without the /v1 prefix), non-streaming or as SSE; GET
 * /v1/models, /demo/stats, /healthz; 404 otherwise. What each endpoint counts
 * and answers is in demo_api.c; this file is the process, the routing, the
 * test controls common to every endpoint ("demo": status, delay_ms,
 * break_after) and the stream pump.
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

#include "demo.h"

#define DEMO_LISTEN_DEFAULT "127.0.0.1:9090"
#define DEMO_WORKERS_MAX 64
#define DEMO_ERR_MAX 160 /* bytes of a 400 message */

/* Counters of /demo/stats. api = the four POST endpoints together. */
static atomic_llong demo_requests;
static atomic_llong demo_api_requests;
static atomic_llong demo_kind_requests[DEMO_KIND_N];
static atomic_llong demo_last_max_tokens = -1; /* of the last API request; -1 = none named */
static atomic_ullong demo_ids;

static const char *const demo_kind_stat[DEMO_KIND_N] = {
    "chat_requests", "completions_requests", "embeddings_requests", "responses_requests"};

typedef struct demo_worker {
    uv_loop_t loop;
    uv_async_t stop; /* workers 1..N-1: closes the server from the main thread */
    uv_thread_t thread;
    cg_http_server *srv;
} demo_worker;

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

/* The controls every endpoint shares: "demo": {status, delay_ms, break_after}. */
static void demo_job_controls(demo_job *j, const cJSON *root)
{
    const cJSON *demo = cJSON_GetObjectItemCaseSensitive(root, "demo");
    int64_t st = demo_int(demo, "status", 0);
    j->status = st >= 100 && st <= 599 && st != 200 ? (int)st : 0;
    j->delay_ms = demo_int(demo, "delay_ms", 0);
    j->delay_ms = j->delay_ms < 0                   ? 0
                  : j->delay_ms > DEMO_DELAY_MS_MAX ? DEMO_DELAY_MS_MAX
                                                    : j->delay_ms;
    j->break_after = demo_int(demo, "break_after", -1);
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
    j->id = atomic_fetch_add(&demo_ids, 1) + 1;
    j->created = cg_now_ms() / 1000;
    j->conn = c;
    demo_job_controls(j, root);
    char err[DEMO_ERR_MAX];
    int rc = demo_api_prepare(j, root, err, sizeof(err));
    cJSON_Delete(root);
    if (rc != 0) {
        cg_http_respond_error(c, 400, "invalid_request_error", "invalid_request", err, NULL);
        return -1;
    }
    atomic_store(&demo_last_max_tokens, j->seen_max_tokens);
    return 0;
}

/* ---- answers ---- */

static void demo_job_free_cb(uv_handle_t *h)
{
    demo_job *j = h->data;
    free(j->plain);
    free(j);
}

/* Free a heap job (its timer first, if it has one). */
static void demo_job_free(demo_job *j)
{
    if (j->timer_used) {
        uv_close((uv_handle_t *)&j->timer, demo_job_free_cb);
    } else {
        free(j->plain);
        free(j);
    }
}

static void demo_reply_status(demo_job *j)
{
    char msg[64];
    snprintf(msg, sizeof(msg), "demo: forced status %d", j->status);
    cg_http_respond_error(j->conn, j->status, demo_error_type(j->status), "demo_status", msg, NULL);
}

/* The prepared body, with the max tokens seen also as a header. */
static void demo_reply_plain(const demo_job *j)
{
    char hdr[64] = "";
    if (j->seen_max_tokens >= 0) {
        snprintf(hdr, sizeof(hdr), "x-demo-seen-max-tokens: %lld\r\n",
                 (long long)j->seen_max_tokens);
    }
    cg_http_respond(j->conn, 200, hdr, "application/json", j->plain, j->plain_len);
}

/* Write events until the queue is full (then wait for drain) or the end. */
static void demo_stream_pump(demo_job *j)
{
    int64_t brk = j->break_after;
    int64_t content = j->words * j->choices;
    if (brk >= 0 && brk > content) {
        brk = content;
    }
    for (;;) {
        if (brk >= 0 && j->step == demo_stream_content_first(j) + (uint32_t)brk) {
            cg_http_conn_drop(j->conn); /* K content events, then the connection breaks */
            demo_job_free(j);
            return;
        }
        size_t pending = 0;
        if (!demo_stream_next(j, &pending)) {
            cg_http_stream_end(j->conn);
            demo_job_free(j);
            return;
        }
        if (pending > DEMO_STREAM_PENDING_MAX) {
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
        char hdr[96] = "Cache-Control: no-cache\r\n";
        if (j->seen_max_tokens >= 0) {
            snprintf(hdr, sizeof(hdr),
                     "Cache-Control: no-cache\r\nx-demo-seen-max-tokens: %lld\r\n",
                     (long long)j->seen_max_tokens);
        }
        cg_http_stream_begin(j->conn, 200, hdr, "text/event-stream");
        demo_stream_pump(j); /* frees j when done */
        return;
    } else {
        demo_reply_plain(j);
    }
    if (on_heap) {
        demo_job_free(j);
    } else {
        free(j->plain);
    }
}

static void demo_delay_cb(uv_timer_t *t)
{
    demo_job_run(t->data, 1);
}

static void demo_api(uv_loop_t *loop, cg_http_conn *c, const cg_http_req *r, demo_kind kind)
{
    demo_job local;
    memset(&local, 0, sizeof(local));
    local.kind = (uint8_t)kind;
    if (demo_job_parse(&local, c, r) != 0) {
        return;
    }
    if (local.delay_ms == 0 && !(local.stream && local.status == 0)) {
        demo_job_run(&local, 0); /* answered at once: nothing to keep */
        return;
    }
    demo_job *j = malloc(sizeof(*j));
    if (j == NULL) {
        free(local.plain);
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

static void demo_stats(cg_http_conn *c)
{
    char b[512];
    size_t n = (size_t)snprintf(b, sizeof(b), "{\"requests\":%lld,\"api_requests\":%lld",
                                (long long)atomic_load(&demo_requests),
                                (long long)atomic_load(&demo_api_requests));
    for (int k = 0; k < DEMO_KIND_N; k++) {
        n += (size_t)snprintf(b + n, sizeof(b) - n, ",\"%s\":%lld", demo_kind_stat[k],
                              (long long)atomic_load(&demo_kind_requests[k]));
    }
    long long seen = atomic_load(&demo_last_max_tokens);
    if (seen >= 0) {
        snprintf(b + n, sizeof(b) - n, ",\"last_max_tokens\":%lld}", seen);
    } else {
        snprintf(b + n, sizeof(b) - n, ",\"last_max_tokens\":null}");
    }
    demo_json_reply(c, 200, b);
}

/* The endpoint of a POST path ("/v1/x" or "/x"); -1 if none. */
static int demo_kind_of(const char *path)
{
    static const char *const paths[DEMO_KIND_N] = {"/chat/completions", "/completions",
                                                   "/embeddings", "/responses"};
    if (strncmp(path, "/v1/", 4) == 0) {
        path += 3;
    }
    for (int k = 0; k < DEMO_KIND_N; k++) {
        if (strcmp(path, paths[k]) == 0) {
            return k;
        }
    }
    return -1;
}

static void demo_handler(cg_http_conn *c, const cg_http_req *r, void *ud)
{
    demo_worker *w = ud;
    atomic_fetch_add(&demo_requests, 1);
    int get = strcmp(r->method, "GET") == 0;
    int kind = strcmp(r->method, "POST") == 0 ? demo_kind_of(r->path) : -1;
    if (kind >= 0) {
        atomic_fetch_add(&demo_api_requests, 1);
        atomic_fetch_add(&demo_kind_requests[kind], 1);
        demo_api(&w->loop, c, r, (demo_kind)kind);
    } else if (get && (strcmp(r->path, "/v1/models") == 0 || strcmp(r->path, "/models") == 0)) {
        demo_models(c);
    } else if (get && strcmp(r->path, "/demo/stats") == 0) {
        demo_stats(c);
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
