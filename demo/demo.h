/*
 * demo.h — internals of capgate-demo-upstream shared by its two files:
 * demo_upstream.c (process, routing, delays and the stream pump) and
 * demo_api.c (what each endpoint parses and answers). The observable contract
 * is demo/README.md.
 *
 * A request becomes a demo_job: everything the answer needs is taken from the
 * body when it arrives (token counts, the plain-JSON answer or the stream's
 * shape), so answering later (after delay_ms, or chunk by chunk) needs no
 * access to the request. Jobs answered at once live on the stack; delayed and
 * streamed ones on the heap, freed when the answer is complete or the client
 * went away.
 */
#ifndef DEMO_H
#define DEMO_H
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <cjson/cJSON.h>
#include "cg_http.h"

#define DEMO_MODEL_MAX 256                           /* bytes of the model name echoed back */
#define DEMO_MODEL_JSON_MAX (DEMO_MODEL_MAX * 6 + 1) /* JSON-escaped */
#define DEMO_WORDS_DEFAULT 16         /* completion tokens without demo.completion_tokens */
#define DEMO_WORDS_MAX 100000         /* ceiling of demo.completion_tokens */
#define DEMO_DELAY_MS_MAX 600000      /* ceiling of demo.delay_ms */
#define DEMO_CHOICES_MAX 64           /* /v1/completions: prompts in one request */
#define DEMO_EMBED_INPUTS_MAX 2048    /* /v1/embeddings: inputs in one request (as OpenAI) */
#define DEMO_EMBED_DIM 8              /* floats per embedding */
#define DEMO_STREAM_PENDING_MAX 65536 /* queued stream bytes before waiting for drain */
#define DEMO_WORD_MAX 8               /* longest word of the reply */
#define DEMO_EVENT_MAX (DEMO_MODEL_JSON_MAX + 512) /* one SSE event, except the final response */
#define DEMO_HEAD_JSON_MAX (DEMO_MODEL_JSON_MAX + 256)

typedef enum demo_kind {
    DEMO_CHAT = 0,       /* POST /v1/chat/completions */
    DEMO_COMPLETION = 1, /* POST /v1/completions */
    DEMO_EMBEDDING = 2,  /* POST /v1/embeddings */
    DEMO_RESPONSE = 3,   /* POST /v1/responses */
    DEMO_KIND_N = 4,
} demo_kind;

/* One request in progress. */
typedef struct demo_job {
    uv_timer_t timer; /* delay_ms; initialised only if timer_used */
    uint8_t timer_used;
    uint8_t kind; /* demo_kind */
    uint8_t stream;
    uint8_t include_usage;
    uint8_t length_capped; /* finish_reason "length" / status "incomplete" */
    int status;            /* demo.status, 0 = normal answer */
    int64_t break_after;   /* content events before the connection drops; -1 = never */
    int64_t words;         /* completion tokens per choice (0 for embeddings) */
    int64_t choices;       /* /v1/completions: one choice per prompt; else 1 */
    int64_t prompt_tokens;
    int64_t seen_max_tokens; /* max_tokens (or max_completion_tokens / max_output_tokens)
                                as received; -1 = the request named none */
    int64_t delay_ms;
    uint64_t id;
    int64_t created; /* unix seconds */
    uint32_t step;   /* stream position, see demo_stream_next */
    cg_http_conn *conn;
    char *plain; /* the whole non-streaming answer (or, for a streamed response, the final
                    "response" object); malloc'd, owned */
    size_t plain_len;
    char model_json[DEMO_MODEL_JSON_MAX];
} demo_job;

/* The reply, one word per token; longer completions cycle through it. */
extern const char *const demo_words[DEMO_WORDS_DEFAULT];

/* JSON-escape s into dst (cap bytes, NUL-terminated; truncates). */
void demo_json_escape(char *dst, size_t cap, const char *s);
/* Integer field of obj, or dflt when absent or not a number. */
int64_t demo_int(const cJSON *obj, const char *name, int64_t dflt);

/*
 * Fill j from the parsed body root for endpoint j->kind (already set): token
 * counts, the answer's shape and, unless streaming, the answer itself
 * (j->plain). On a bad request writes a message to err and returns -1; j owns
 * nothing then. Called on the worker loop that received the request.
 */
int demo_api_prepare(demo_job *j, const cJSON *root, char *err, size_t errcap);

/*
 * Write the next SSE event of a streamed job to j->conn and advance j->step.
 * Returns 0 when the stream is complete (nothing written), else 1; *pending
 * is the connection's queued byte count after the write.
 */
int demo_stream_next(demo_job *j, size_t *pending);
/* Index of the first content event of j's stream (break_after counts from it). */
uint32_t demo_stream_content_first(const demo_job *j);

#endif
