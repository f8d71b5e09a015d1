/*
 * it_endpoints.c — integration: /v1/completions, /v1/embeddings and
 * /v1/responses (plain and streaming) pass the same gate as chat and are
 * charged exactly.
 *
 * Costs are computed here from the demo's documented token counts
 * (demo/README.md) and demo-gpt-4o-mini's prices, 0.15 / 0.60 USD per 1M
 * tokens = 150 / 600 nano-USD per token:
 *   completions "hello world" (11 bytes -> 3 tokens), max_tokens 5 -> 5 words;
 *     a prompt array ["hello world", "abc"] -> 3 + 1 prompt tokens and one
 *     5-word choice per prompt (10 completion tokens);
 *   embeddings ["hello world", "abc"] -> 3 + 1 prompt tokens, no completion;
 *   responses instructions "be brief" (8) + input "hello world" (11) -> 19 bytes
 *     -> 5 input tokens, max_output_tokens 6 -> 6 output tokens.
 * Each request: 200 with the endpoint's shape, x-capgate-cost-usd equal to
 * the expected cost (non-streaming), the key's counter up by exactly that;
 * 401 without a key; and a key whose budget is spent (a lifetime cap of one
 * request) gets 402 budget_exceeded — none of these refusals reach the
 * upstream. Strict worst case per endpoint: on a cost cap the cheap request
 * passes while one whose worst case exceeds it (a responses request with no
 * max_output_tokens, an embeddings input too long for the budget, a
 * completions prompt array whose choices multiply the bound) is refused with
 * 402 before the upstream.
 */
#include <stdio.h>
#include <string.h>
#include "fixture.h"

#define PROMPT_NUSD 150
#define COMPLETION_NUSD 600

static fx_cluster c;

typedef struct endpoint_case {
    const char *name;
    const char *path;
    const char *body;
    int stream;
    int64_t prompt; /* tokens the demo reports */
    int64_t completion;
} endpoint_case;

static const endpoint_case cases[] = {
    {"completions", "/v1/completions",
     "{\"model\":\"demo-gpt-4o-mini\",\"prompt\":\"hello world\",\"max_tokens\":5}", 0, 3, 5},
    {"completions/array", "/v1/completions",
     "{\"model\":\"demo-gpt-4o-mini\",\"prompt\":[\"hello world\",\"abc\"],\"max_tokens\":5}", 0, 4,
     10},
    {"embeddings", "/v1/embeddings",
     "{\"model\":\"demo-gpt-4o-mini\",\"input\":[\"hello world\",\"abc\"]}", 0, 4, 0},
    {"embeddings/string", "/v1/embeddings",
     "{\"model\":\"demo-gpt-4o-mini\",\"input\":\"hello world\"}", 0, 3, 0},
    {"responses", "/v1/responses",
     "{\"model\":\"demo-gpt-4o-mini\",\"instructions\":\"be brief\",\"input\":\"hello world\","
     "\"max_output_tokens\":6}",
     0, 5, 6},
    {"responses/items", "/v1/responses",
     "{\"model\":\"demo-gpt-4o-mini\",\"instructions\":\"be brief\",\"input\":[{\"role\":"
     "\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"hello world\"}]}],"
     "\"max_output_tokens\":6}",
     0, 5, 6},
    {"responses/stream", "/v1/responses",
     "{\"model\":\"demo-gpt-4o-mini\",\"instructions\":\"be brief\",\"input\":\"hello world\","
     "\"max_output_tokens\":6,\"stream\":true}",
     1, 5, 6},
};
#define CASE_N (sizeof(cases) / sizeof(cases[0]))

static int64_t cost_of(const endpoint_case *e)
{
    return e->prompt * PROMPT_NUSD + e->completion * COMPLETION_NUSD;
}

static int64_t num(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    FX_CHECK(cJSON_IsNumber(v), "no number %s", name);
    return (int64_t)v->valuedouble;
}

/* The answer has the endpoint's shape and the demo's token counts. */
static void check_shape(const endpoint_case *e, const fx_resp *r)
{
    if (e->stream) {
        int done = 0;
        cJSON *events = fx_sse_parse(r->body, &done);
        int n = cJSON_GetArraySize(events);
        FX_CHECK(n >= 2, "%s: %d events: %s", e->name, n, r->body);
        const cJSON *first = cJSON_GetArrayItem(events, 0);
        const cJSON *last = cJSON_GetArrayItem(events, n - 1);
        const cJSON *t0 = cJSON_GetObjectItemCaseSensitive(first, "type");
        const cJSON *tl = cJSON_GetObjectItemCaseSensitive(last, "type");
        FX_CHECK(cJSON_IsString(t0) && strcmp(t0->valuestring, "response.created") == 0,
                 "%s: first event %s", e->name, r->body);
        FX_CHECK(cJSON_IsString(tl) && strcmp(tl->valuestring, "response.completed") == 0,
                 "%s: last event %.300s", e->name, r->body);
        const cJSON *usage = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(last, "response"), "usage");
        FX_CHECK_EQ_INT(num(usage, "input_tokens"), e->prompt);
        FX_CHECK_EQ_INT(num(usage, "output_tokens"), e->completion);
        FX_CHECK_EQ_INT(n, e->completion + 2);
        cJSON_Delete(events);
        return;
    }
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(r->json, "usage");
    const cJSON *object = cJSON_GetObjectItemCaseSensitive(r->json, "object");
    FX_CHECK(cJSON_IsString(object), "%s: no object: %s", e->name, r->body);
    if (strcmp(e->path, "/v1/responses") == 0) {
        FX_CHECK_EQ_STR(object->valuestring, "response");
        FX_CHECK_EQ_INT(num(usage, "input_tokens"), e->prompt);
        FX_CHECK_EQ_INT(num(usage, "output_tokens"), e->completion);
        const cJSON *out =
            cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r->json, "output"), 0);
        const cJSON *part = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(out, "content"), 0);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        FX_CHECK(cJSON_IsString(type) && strcmp(type->valuestring, "output_text") == 0,
                 "%s: output %s", e->name, r->body);
        return;
    }
    FX_CHECK_EQ_INT(num(usage, "prompt_tokens"), e->prompt);
    if (strcmp(e->path, "/v1/embeddings") == 0) {
        FX_CHECK_EQ_STR(object->valuestring, "list");
        const cJSON *d0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r->json, "data"), 0);
        FX_CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(d0, "embedding")), 8);
        return;
    }
    FX_CHECK_EQ_STR(object->valuestring, "text_completion");
    FX_CHECK_EQ_INT(num(usage, "completion_tokens"), e->completion);
}

/* Every case once on a fresh key: exact charge, header and key counter. */
static void charged_exactly(void)
{
    char id[64], key[128], path[256];
    fx_key_create(&c, "acme",
                  "{\"name\":\"meter\",\"limits\":[{\"metric\":\"cost\",\"window\":\"month\","
                  "\"max\":100},{\"metric\":\"tokens\",\"window\":\"month\",\"max\":1000000}]}",
                  id, key);
    fx_scope_path(path, FX_SCOPE_KEY, "acme", id);
    int64_t cost = 0, tokens = 0;
    for (size_t i = 0; i < CASE_N; i++) {
        const endpoint_case *e = &cases[i];
        fx_demo_stats s0 = fx_demo_stats_get(&c);
        fx_resp r;
        long st = fx_post(&c, 0, &r, key, e->path, NULL, e->body);
        FX_CHECK(st == 200, "%s: %ld %s", e->name, st, r.body);
        check_shape(e, &r);
        if (!e->stream) {
            const char *h = fx_resp_header(&r, "x-capgate-cost-usd");
            FX_CHECK(h != NULL, "%s: no x-capgate-cost-usd", e->name);
            FX_CHECK_EQ_INT(fx_usd(h), cost_of(e));
        }
        FX_CHECK(fx_resp_header(&r, "x-capgate-request-id") != NULL, "%s: no request id", e->name);
        fx_resp_free(&r);
        cost += cost_of(e);
        tokens += e->prompt + e->completion;
        fx_limit l = fx_scope_limit_settled(&c, path, "cost", "month", cost);
        FX_CHECK(l.used == cost && l.reserved == 0, "%s: cost used %lld (want %lld) reserved %lld",
                 e->name, (long long)l.used, (long long)cost, (long long)l.reserved);
        l = fx_scope_limit_settled(&c, path, "tokens", "month", tokens);
        FX_CHECK_EQ_INT(l.used, tokens);
        fx_demo_stats s1 = fx_demo_stats_get(&c);
        FX_CHECK_EQ_INT(s1.api, s0.api + 1);
        if (strcmp(e->path, "/v1/completions") == 0) {
            FX_CHECK_EQ_INT(s1.completions, s0.completions + 1);
        } else if (strcmp(e->path, "/v1/embeddings") == 0) {
            FX_CHECK_EQ_INT(s1.embeddings, s0.embeddings + 1);
        } else {
            FX_CHECK_EQ_INT(s1.responses, s0.responses + 1);
        }
        fx_log("%-18s charged %lld nano-USD exactly", e->name, (long long)cost_of(e));
    }
    fx_usage u = fx_usage_totals(&c, fx_fmt_("org=acme&key=%s", id));
    FX_CHECK_EQ_INT(u.requests, (int64_t)CASE_N);
    FX_CHECK_EQ_INT(u.cost, cost);
    FX_CHECK_EQ_INT(u.prompt_tokens + u.completion_tokens, tokens);
}

/* 401 without a key and 402 past a spent budget, for every case. */
static void gated(void)
{
    char id[64], key[128];
    for (size_t i = 0; i < CASE_N; i++) {
        const endpoint_case *e = &cases[i];
        fx_key_create(&c, "acme",
                      "{\"name\":\"one-shot\",\"limits\":[{\"metric\":\"requests\","
                      "\"window\":\"lifetime\",\"max\":1}]}",
                      id, key);
        int64_t api0 = fx_demo_api_requests(&c);
        fx_resp r;
        long st = fx_post(&c, 0, &r, NULL, e->path, NULL, e->body);
        FX_CHECK(st == 401, "%s without key: %ld %s", e->name, st, r.body);
        FX_CHECK_EQ_STR(fx_resp_error_code(&r), "invalid_api_key");
        fx_resp_free(&r);
        st = fx_post(&c, 0, &r, key, e->path, NULL, e->body);
        FX_CHECK(st == 200, "%s first: %ld %s", e->name, st, r.body);
        fx_resp_free(&r);
        st = fx_post(&c, 0, &r, key, e->path, NULL, e->body);
        FX_CHECK(st == 402, "%s past the cap: %ld %s", e->name, st, r.body);
        FX_CHECK_EQ_STR(fx_resp_error_type(&r), "insufficient_quota");
        FX_CHECK_EQ_STR(fx_resp_error_code(&r), "budget_exceeded");
        fx_resp_free(&r);
        FX_CHECK_EQ_INT(fx_demo_api_requests(&c), api0 + 1);
    }
    fx_log("every endpoint: 401 without a key, 402 past the cap, refusals never upstream");
}

/*
 * Strict worst case per endpoint on a 0.001 USD (1,000,000 nano-USD) cap:
 *   responses without max_output_tokens: worst >= 16384 output tokens x 600 =
 *     9.8 M > cap -> 402; with max_output_tokens 6 it passes;
 *   embeddings with a 10,000-byte input: worst >= 10,000 x 150 = 1.5 M > cap
 *     -> 402 (the demo would bill 2,500 tokens = 375,000: the bound must not
 *     be the estimate); a short input passes;
 *   completions with max_tokens 1000: one prompt, worst >= 600,000 fits; a
 *     two-prompt array gets two choices of up to 1000 tokens each, worst >=
 *     1.2 M > cap -> 402.
 */
static void strict_worst_case(void)
{
    char id[64], key[128];
    fx_key_create(&c, "acme",
                  "{\"name\":\"strict\",\"limits\":[{\"metric\":\"cost\",\"window\":\"month\","
                  "\"max\":\"0.001\"}]}",
                  id, key);
    static char big[10200];
    int n = snprintf(big, sizeof(big), "{\"model\":\"demo-gpt-4o-mini\",\"input\":\"");
    memset(big + n, 'a', 10000);
    snprintf(big + n + 10000, sizeof(big) - (size_t)n - 10000, "\"}");
    static const struct {
        const char *path;
        const char *body;
        long want;
    } steps[] = {
        {"/v1/responses", "{\"model\":\"demo-gpt-4o-mini\",\"input\":\"hi\"}", 402},
        {"/v1/responses",
         "{\"model\":\"demo-gpt-4o-mini\",\"input\":\"hi\",\"max_output_tokens\":6}", 200},
        {"/v1/embeddings", NULL, 402},
        {"/v1/embeddings", "{\"model\":\"demo-gpt-4o-mini\",\"input\":\"hi\"}", 200},
        {"/v1/completions",
         "{\"model\":\"demo-gpt-4o-mini\",\"prompt\":[\"a\",\"b\"],\"max_tokens\":1000}", 402},
        {"/v1/completions",
         "{\"model\":\"demo-gpt-4o-mini\",\"prompt\":\"a\",\"max_tokens\":1000,"
         "\"demo\":{\"completion_tokens\":2}}",
         200},
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        int64_t api0 = fx_demo_api_requests(&c);
        fx_resp r;
        const char *body = steps[i].body != NULL ? steps[i].body : big;
        long st = fx_post(&c, 0, &r, key, steps[i].path, NULL, body);
        FX_CHECK(st == steps[i].want, "strict %s %.120s: want %ld, got %ld %.300s", steps[i].path,
                 body, steps[i].want, st, r.body);
        if (st == 402) {
            FX_CHECK_EQ_STR(fx_resp_error_code(&r), "budget_exceeded");
        }
        fx_resp_free(&r);
        FX_CHECK_EQ_INT(fx_demo_api_requests(&c), api0 + (steps[i].want == 200));
    }
    char path[256];
    fx_scope_path(path, FX_SCOPE_KEY, "acme", id);
    /* responses 1x150 + 6x600; embeddings 1x150; completions 1x150 + 2x600. */
    int64_t want = 150 + 3600 + 150 + 150 + 1200;
    fx_limit l = fx_scope_limit_settled(&c, path, "cost", "month", want);
    FX_CHECK_EQ_INT(l.used, want);
    FX_CHECK_EQ_INT(l.reserved, 0);
    fx_log("strict worst case holds on every endpoint");
}

int main(void)
{
    fx_init("it_endpoints");
    fx_opts o = {.shard_n = 2};
    fx_cluster_start(&c, &o);
    fx_org_create(&c, "{\"id\":\"acme\",\"name\":\"Acme Inc.\"}");
    charged_exactly();
    gated();
    strict_worst_case();
    return fx_done();
}
