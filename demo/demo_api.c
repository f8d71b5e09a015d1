/*
 * demo_api.c — what each endpoint of capgate-demo-upstream reads from a
 * request and answers: chat completions, legacy completions, embeddings and
 * the Responses API, plain JSON or SSE (demo/README.md is the contract).
 *
 * Token counts are exact and documented so tests can compute costs without
 * tolerance: prompt tokens are ceil(bytes / 4) of the request's text (per
 * prompt or input where the endpoint has several), completion tokens
 * min(16, max_*) words or the body's demo.completion_tokens, still capped by
 * max_*. Every prompt count is at most the number of text bytes, so it never
 * exceeds an upper bound that counts one token per byte.
 *
 * Invariants: a prepared job owns j->plain only on success; stream events are
 * produced from the job alone (the request may be gone); nothing here blocks.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_clock.h"
#include "cg_http.h"
#include "demo.h"

const char *const demo_words[DEMO_WORDS_DEFAULT] = {
    "The", "quick", "brown",   "fox",   "jumps", "over",  "the",    "lazy",
    "dog", "while", "capgate", "keeps", "every", "token", "within", "budget.",
};

/* ---- small helpers ---- */

void demo_json_escape(char *dst, size_t cap, const char *s)
{
    (void)cg_http_json_escape(dst, cap, s, SIZE_MAX);
}

int64_t demo_int(const cJSON *obj, const char *name, int64_t dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : dflt;
}

static int64_t demo_ceil4(size_t bytes)
{
    return (int64_t)((bytes + 3) / 4);
}

/* A growing string; on out-of-memory it stays failed and the caller answers 500. */
typedef struct demo_buf {
    char *p;
    size_t len;
    size_t cap;
    int failed;
    int fixed; /* p is the caller's buffer: never reallocated, overflow fails */
} demo_buf;

static void demo_buf_printf(demo_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void demo_buf_printf(demo_buf *b, const char *fmt, ...)
{
    for (int attempt = 0; attempt < 2 && !b->failed; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p != NULL ? b->p + b->len : NULL, b->p != NULL ? b->cap - b->len : 0,
                          fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if (b->p != NULL && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        if (b->fixed) {
            b->failed = 1;
            return;
        }
        size_t want = b->len + (size_t)n + 1;
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < want) {
            cap *= 2;
        }
        char *np = realloc(b->p, cap);
        if (np == NULL) {
            b->failed = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

/* The first n words of the completion, space-separated. */
static void demo_buf_words(demo_buf *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        demo_buf_printf(b, "%s%s", i ? " " : "", demo_words[i % DEMO_WORDS_DEFAULT]);
    }
}

/* "demo_seen_max_tokens": N or null. */
static void demo_buf_seen(demo_buf *b, const demo_job *j)
{
    if (j->seen_max_tokens >= 0) {
        demo_buf_printf(b, ",\"demo_seen_max_tokens\":%" PRId64, j->seen_max_tokens);
    } else {
        demo_buf_printf(b, ",\"demo_seen_max_tokens\":null");
    }
}

/* Move b into j->plain; -1 (and b freed) if it failed. */
static int demo_buf_take(demo_buf *b, demo_job *j, char *err, size_t errcap)
{
    if (b->failed) {
        free(b->p);
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    j->plain = b->p;
    j->plain_len = b->len;
    return 0;
}

/*
 * Completion length: demo.completion_tokens (default 16, clamped to
 * 0..DEMO_WORDS_MAX) capped by the first present field of caps. Sets words,
 * length_capped and seen_max_tokens.
 */
static void demo_job_words(demo_job *j, const cJSON *root, const char *const *caps, size_t cap_n)
{
    const cJSON *demo = cJSON_GetObjectItemCaseSensitive(root, "demo");
    int64_t want = demo_int(demo, "completion_tokens", DEMO_WORDS_DEFAULT);
    want = want < 0 ? 0 : want > DEMO_WORDS_MAX ? DEMO_WORDS_MAX : want;
    int64_t cap = INT64_MAX;
    j->seen_max_tokens = -1;
    for (size_t i = 0; i < cap_n; i++) {
        int64_t v = demo_int(root, caps[i], INT64_MAX);
        if (v != INT64_MAX && j->seen_max_tokens < 0) {
            j->seen_max_tokens = v < 0 ? 0 : v;
        }
        cap = v < cap ? v : cap;
    }
    cap = cap < 0 ? 0 : cap;
    j->words = want < cap ? want : cap;
    j->length_capped = cap < want;
}

/* UTF-8 bytes of a string, or of the "text" of every part of an array. */
static size_t demo_text_bytes(const cJSON *content)
{
    if (cJSON_IsString(content)) {
        return strlen(content->valuestring);
    }
    size_t n = 0;
    const cJSON *part;
    cJSON_ArrayForEach(part, content)
    {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (cJSON_IsString(text)) {
            n += strlen(text->valuestring);
        }
    }
    return n;
}

/* "id","object","created","model" of a chat completion, completion or chunk. */
static void demo_buf_head(demo_buf *b, const demo_job *j, const char *prefix, const char *object)
{
    demo_buf_printf(b,
                    "{\"id\":\"%s-demo-%" PRIu64 "\",\"object\":\"%s\",\"created\":%" PRId64
                    ",\"model\":\"%s\"",
                    prefix, j->id, object, j->created, j->model_json);
}

static void demo_buf_usage(demo_buf *b, const demo_job *j)
{
    int64_t completion = j->words * j->choices;
    demo_buf_printf(b,
                    "\"usage\":{\"prompt_tokens\":%" PRId64 ",\"completion_tokens\":%" PRId64
                    ",\"total_tokens\":%" PRId64 "}",
                    j->prompt_tokens, completion, j->prompt_tokens + completion);
}

/* ---- /v1/chat/completions ---- */

static int demo_chat_prepare(demo_job *j, const cJSON *root, char *err, size_t errcap)
{
    static const char *const caps[] = {"max_tokens", "max_completion_tokens"};
    size_t bytes = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(root, "messages"))
    {
        bytes += demo_text_bytes(cJSON_GetObjectItemCaseSensitive(m, "content"));
    }
    j->prompt_tokens = demo_ceil4(bytes);
    demo_job_words(j, root, caps, 2);
    if (j->stream) {
        return 0;
    }
    demo_buf b = {0};
    demo_buf_head(&b, j, "chatcmpl", "chat.completion");
    demo_buf_printf(&b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                        "\"content\":\"");
    demo_buf_words(&b, j->words);
    demo_buf_printf(&b, "\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"%s\"}],",
                    j->length_capped ? "length" : "stop");
    demo_buf_usage(&b, j);
    demo_buf_seen(&b, j);
    demo_buf_printf(&b, "}");
    return demo_buf_take(&b, j, err, errcap);
}

/* ---- /v1/completions ---- */

/* Prompt tokens of one prompt: ceil(bytes / 4) of a string, one per integer
 * of a token array. Returns -1 if p is neither. */
static int64_t demo_prompt_tokens(const cJSON *p)
{
    if (cJSON_IsString(p)) {
        return demo_ceil4(strlen(p->valuestring));
    }
    if (!cJSON_IsArray(p)) {
        return -1;
    }
    int64_t n = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, p)
    {
        if (!cJSON_IsNumber(t)) {
            return -1;
        }
        n++;
    }
    return n;
}

/*
 * `prompt`: a string, an array of strings, an array of token integers, or an
 * array of token arrays. Each string / token array is one prompt and gets one
 * choice, as with OpenAI. Sets choices and prompt_tokens.
 */
static int demo_completion_prompts(demo_job *j, const cJSON *prompt, char *err, size_t errcap)
{
    const cJSON *first = cJSON_IsArray(prompt) ? cJSON_GetArrayItem(prompt, 0) : NULL;
    if (cJSON_IsString(prompt) || (cJSON_IsArray(prompt) && cJSON_IsNumber(first))) {
        j->choices = 1;
        j->prompt_tokens = demo_prompt_tokens(prompt);
        if (j->prompt_tokens >= 0) {
            return 0;
        }
    } else if (cJSON_IsArray(prompt) && first != NULL) {
        int n = cJSON_GetArraySize(prompt);
        if (n > DEMO_CHOICES_MAX) {
            snprintf(err, errcap, "prompt: at most %d prompts", DEMO_CHOICES_MAX);
            return -1;
        }
        j->choices = n;
        j->prompt_tokens = 0;
        const cJSON *p;
        cJSON_ArrayForEach(p, prompt)
        {
            int64_t t = demo_prompt_tokens(p);
            if (t < 0 || (cJSON_IsArray(p) && !cJSON_IsArray(first))) {
                j->prompt_tokens = -1;
                break;
            }
            j->prompt_tokens += t;
        }
        if (j->prompt_tokens >= 0) {
            return 0;
        }
    }
    snprintf(err, errcap, "prompt: a string, an array of strings or token arrays is required");
    return -1;
}

static int demo_completion_prepare(demo_job *j, const cJSON *root, char *err, size_t errcap)
{
    static const char *const caps[] = {"max_tokens"};
    if (demo_completion_prompts(j, cJSON_GetObjectItemCaseSensitive(root, "prompt"), err, errcap) !=
        0) {
        return -1;
    }
    demo_job_words(j, root, caps, 1);
    if (j->stream) {
        return 0;
    }
    demo_buf b = {0};
    demo_buf_head(&b, j, "cmpl", "text_completion");
    demo_buf_printf(&b, ",\"choices\":[");
    for (int64_t i = 0; i < j->choices; i++) {
        demo_buf_printf(&b, "%s{\"text\":\"", i ? "," : "");
        demo_buf_words(&b, j->words);
        demo_buf_printf(&b, "\",\"index\":%" PRId64 ",\"logprobs\":null,\"finish_reason\":\"%s\"}",
                        i, j->length_capped ? "length" : "stop");
    }
    demo_buf_printf(&b, "],");
    demo_buf_usage(&b, j);
    demo_buf_seen(&b, j);
    demo_buf_printf(&b, "}");
    return demo_buf_take(&b, j, err, errcap);
}

/* ---- /v1/embeddings ---- */

/* A deterministic unit-ish vector from an input's bytes (FNV-1a, then an LCG). */
static void demo_buf_embedding(demo_buf *b, const cJSON *in, int index)
{
    uint64_t h = 1469598103934665603ULL;
    char *s = cJSON_PrintUnformatted(in);
    for (const char *p = s != NULL ? s : ""; *p != '\0'; p++) {
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    }
    cJSON_free(s);
    demo_buf_printf(b, "%s{\"object\":\"embedding\",\"index\":%d,\"embedding\":[", index ? "," : "",
                    index);
    for (int i = 0; i < DEMO_EMBED_DIM; i++) {
        h = h * 6364136223846793005ULL + 1442695040888963407ULL;
        double v = (double)(h >> 11) / (double)(1ULL << 53) * 2.0 - 1.0;
        demo_buf_printf(b, "%s%.6f", i ? "," : "", v);
    }
    demo_buf_printf(b, "]}");
}

/*
 * `input`: a string, an array of strings, an array of token integers (one
 * input) or an array of token arrays. prompt_tokens = sum over inputs of
 * ceil(bytes / 4) (strings) or the token count (arrays).
 */
static int demo_embedding_prepare(demo_job *j, const cJSON *root, char *err, size_t errcap)
{
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(root, "input");
    const cJSON *first = cJSON_IsArray(input) ? cJSON_GetArrayItem(input, 0) : NULL;
    int single = cJSON_IsString(input) || (cJSON_IsArray(input) && cJSON_IsNumber(first));
    int n = single ? 1 : cJSON_IsArray(input) ? cJSON_GetArraySize(input) : 0;
    if (n < 1 || n > DEMO_EMBED_INPUTS_MAX) {
        snprintf(err, errcap, "input: a string or an array of 1..%d inputs is required",
                 DEMO_EMBED_INPUTS_MAX);
        return -1;
    }
    j->words = 0;
    j->seen_max_tokens = -1;
    j->prompt_tokens = 0;
    demo_buf b = {0};
    demo_buf_printf(&b, "{\"object\":\"list\",\"data\":[");
    for (int i = 0; i < n; i++) {
        const cJSON *in = single ? input : cJSON_GetArrayItem(input, i);
        int64_t t = demo_prompt_tokens(in);
        if (t < 0) {
            free(b.p);
            snprintf(err, errcap, "input[%d]: a string or an array of token integers", i);
            return -1;
        }
        j->prompt_tokens += t;
        demo_buf_embedding(&b, in, i);
    }
    demo_buf_printf(&b,
                    "],\"model\":\"%s\",\"usage\":{\"prompt_tokens\":%" PRId64
                    ",\"total_tokens\":%" PRId64 "}}",
                    j->model_json, j->prompt_tokens, j->prompt_tokens);
    return demo_buf_take(&b, j, err, errcap);
}

/* ---- /v1/responses ---- */

/* Text bytes of `input` (a string, or items with a string or parts `content`,
 * or a `text` / `output` string) plus `instructions`. */
static size_t demo_response_bytes(const cJSON *root)
{
    const cJSON *instr = cJSON_GetObjectItemCaseSensitive(root, "instructions");
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(root, "input");
    size_t n = cJSON_IsString(instr) ? strlen(instr->valuestring) : 0;
    if (cJSON_IsString(input)) {
        return n + strlen(input->valuestring);
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, input)
    {
        n += demo_text_bytes(cJSON_GetObjectItemCaseSensitive(item, "content"));
        static const char *const extra[] = {"text", "output"};
        for (size_t i = 0; i < 2; i++) {
            const cJSON *s = cJSON_GetObjectItemCaseSensitive(item, extra[i]);
            n += cJSON_IsString(s) ? strlen(s->valuestring) : 0;
        }
    }
    return n;
}

/* The "response" object; final: status completed/incomplete with output and
 * usage, else in_progress with neither. */
static void demo_buf_response(demo_buf *b, const demo_job *j, int final)
{
    const char *status = !final ? "in_progress" : j->length_capped ? "incomplete" : "completed";
    demo_buf_printf(b,
                    "{\"id\":\"resp_demo_%" PRIu64
                    "\",\"object\":\"response\",\"created_at\":%" PRId64
                    ",\"status\":\"%s\",\"model\":\"%s\",\"incomplete_details\":%s",
                    j->id, j->created, status, j->model_json,
                    final && j->length_capped ? "{\"reason\":\"max_output_tokens\"}" : "null");
    if (j->seen_max_tokens >= 0) {
        demo_buf_printf(b, ",\"max_output_tokens\":%" PRId64, j->seen_max_tokens);
    } else {
        demo_buf_printf(b, ",\"max_output_tokens\":null");
    }
    if (!final) {
        demo_buf_printf(b, ",\"output\":[],\"usage\":null}");
        return;
    }
    demo_buf_printf(b,
                    ",\"output\":[{\"type\":\"message\",\"id\":\"msg_demo_%" PRIu64
                    "\",\"status\":\"%s\",\"role\":\"assistant\",\"content\":[{\"type\":"
                    "\"output_text\",\"annotations\":[],\"text\":\"",
                    j->id, status);
    demo_buf_words(b, j->words);
    demo_buf_printf(b,
                    "\"}]}],\"usage\":{\"input_tokens\":%" PRId64
                    ",\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":%" PRId64
                    ",\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":%" PRId64
                    "}",
                    j->prompt_tokens, j->words, j->prompt_tokens + j->words);
    demo_buf_seen(b, j);
    demo_buf_printf(b, "}");
}

static int demo_response_prepare(demo_job *j, const cJSON *root, char *err, size_t errcap)
{
    static const char *const caps[] = {"max_output_tokens"};
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(root, "input");
    if (!cJSON_IsString(input) && !cJSON_IsArray(input)) {
        snprintf(err, errcap, "input: a string or an array of input items is required");
        return -1;
    }
    j->prompt_tokens = demo_ceil4(demo_response_bytes(root));
    demo_job_words(j, root, caps, 1);
    /* Streamed responses end with the final object too: build it now. */
    demo_buf b = {0};
    demo_buf_response(&b, j, 1);
    return demo_buf_take(&b, j, err, errcap);
}

int demo_api_prepare(demo_job *j, const cJSON *root, char *err, size_t errcap)
{
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    j->stream =
        j->kind != DEMO_EMBEDDING && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "stream"));
    j->include_usage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage"));
    j->choices = 1;
    switch (j->kind) {
    case DEMO_CHAT:
        return demo_chat_prepare(j, root, err, errcap);
    case DEMO_COMPLETION:
        return demo_completion_prepare(j, root, err, errcap);
    case DEMO_EMBEDDING:
        return demo_embedding_prepare(j, root, err, errcap);
    default:
        return demo_response_prepare(j, root, err, errcap);
    }
}

/* ---- streams ---- */

/*
 * Chat: 0 role chunk, 1..words content, finish chunk, usage chunk
 * (include_usage only), [DONE].
 */
static void demo_chat_event(const demo_job *j, uint32_t step, demo_buf *b)
{
    uint64_t finish = (uint64_t)j->words + 1, usage = finish + 1;
    demo_buf_printf(b, "data: ");
    demo_buf_head(b, j, "chatcmpl", "chat.completion.chunk");
    if (step == usage) {
        demo_buf_printf(b, ",\"choices\":[],");
        demo_buf_usage(b, j);
        demo_buf_printf(b, "}\n\n");
        return;
    }
    demo_buf_printf(b, ",\"choices\":[{\"index\":0,\"delta\":");
    if (step == 0) {
        demo_buf_printf(b, "{\"role\":\"assistant\",\"content\":\"\"}");
    } else if (step < finish) {
        demo_buf_printf(b, "{\"content\":\"%s%s\"}", step > 1 ? " " : "",
                        demo_words[(step - 1) % DEMO_WORDS_DEFAULT]);
    } else {
        demo_buf_printf(b, "{}");
    }
    demo_buf_printf(b, ",\"logprobs\":null,\"finish_reason\":%s}]}\n\n",
                    step < finish      ? "null"
                    : j->length_capped ? "\"length\""
                                       : "\"stop\"");
}

/* Completions: choices x words text chunks (choice by choice), one finish
 * chunk per choice, usage chunk (include_usage only), [DONE]. */
static void demo_completion_event(const demo_job *j, uint32_t step, demo_buf *b)
{
    uint64_t content = (uint64_t)(j->words * j->choices), usage = content + (uint64_t)j->choices;
    demo_buf_printf(b, "data: ");
    demo_buf_head(b, j, "cmpl", "text_completion");
    if (step == usage) {
        demo_buf_printf(b, ",\"choices\":[],");
        demo_buf_usage(b, j);
        demo_buf_printf(b, "}\n\n");
        return;
    }
    if (step < content) {
        uint64_t w = step % (uint64_t)j->words;
        demo_buf_printf(b,
                        ",\"choices\":[{\"text\":\"%s%s\",\"index\":%" PRIu64
                        ",\"logprobs\":null,\"finish_reason\":null}]}\n\n",
                        w ? " " : "", demo_words[w % DEMO_WORDS_DEFAULT],
                        step / (uint64_t)j->words);
        return;
    }
    demo_buf_printf(b,
                    ",\"choices\":[{\"text\":\"\",\"index\":%" PRIu64
                    ",\"logprobs\":null,\"finish_reason\":\"%s\"}]}\n\n",
                    step - content, j->length_capped ? "length" : "stop");
}

/* Responses: 0 response.created, 1..words response.output_text.delta,
 * response.completed with the final response (usage included); no [DONE]. */
static void demo_response_event(const demo_job *j, uint32_t step, demo_buf *b)
{
    static const char *const names[] = {"response.created", "response.output_text.delta",
                                        "response.completed"};
    uint64_t completed = (uint64_t)j->words + 1;
    const char *name = names[step == 0 ? 0 : step < completed ? 1 : 2];
    demo_buf_printf(b, "event: %s\ndata: {\"type\":\"%s\",\"sequence_number\":%u", name, name,
                    step);
    if (step == 0) {
        demo_buf_printf(b, ",\"response\":");
        demo_buf_response(b, j, 0);
    } else if (step < completed) {
        demo_buf_printf(b,
                        ",\"item_id\":\"msg_demo_%" PRIu64
                        "\",\"output_index\":0,\"content_index\":0,\"delta\":\"%s%s\"",
                        j->id, step > 1 ? " " : "", demo_words[(step - 1) % DEMO_WORDS_DEFAULT]);
    } else {
        demo_buf_printf(b, ",\"response\":%.*s", (int)j->plain_len, j->plain);
    }
    demo_buf_printf(b, "}\n\n");
}

/* Number of events before [DONE] (or the end, for responses). */
static uint64_t demo_stream_events(const demo_job *j)
{
    switch (j->kind) {
    case DEMO_CHAT:
        return (uint64_t)j->words + 2 + (j->include_usage ? 1 : 0);
    case DEMO_COMPLETION:
        return (uint64_t)(j->words * j->choices + j->choices) + (j->include_usage ? 1 : 0);
    default:
        return (uint64_t)j->words + 2;
    }
}

uint32_t demo_stream_content_first(const demo_job *j)
{
    return j->kind == DEMO_COMPLETION ? 0 : 1;
}

int demo_stream_next(demo_job *j, size_t *pending)
{
    uint64_t events = demo_stream_events(j);
    uint64_t end = events + (j->kind == DEMO_RESPONSE ? 0 : 1);
    if (j->step >= end) {
        return 0;
    }
    char small[DEMO_EVENT_MAX];
    demo_buf b = {.p = small, .cap = sizeof(small), .fixed = 1};
    int heap = 0;
    if (j->step == events) {
        demo_buf_printf(&b, "data: [DONE]\n\n");
    } else if (j->kind == DEMO_RESPONSE && j->step + 1 == events) {
        /* The final response holds the whole text: may exceed the stack buffer. */
        b = (demo_buf){0};
        heap = 1;
        demo_response_event(j, j->step, &b);
    } else if (j->kind == DEMO_CHAT) {
        demo_chat_event(j, j->step, &b);
    } else if (j->kind == DEMO_COMPLETION) {
        demo_completion_event(j, j->step, &b);
    } else {
        demo_response_event(j, j->step, &b);
    }
    /* The stack buffer is large enough for every small event; a failed heap
     * buffer (out of memory) ends the stream early rather than sending junk. */
    j->step++;
    if (b.failed || b.p == NULL) {
        if (heap) {
            free(b.p);
        }
        j->step = (uint32_t)end;
        *pending = 0;
        return 0;
    }
    *pending = cg_http_stream_write(j->conn, b.p, b.len);
    if (heap) {
        free(b.p);
    }
    return 1;
}
