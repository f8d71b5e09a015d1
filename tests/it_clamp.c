/*
 * it_clamp.c — integration: on_low_budget "clamp" lowers max_tokens to what
 * the remaining budget affords instead of refusing; "reject" refuses.
 *
 * Model demo-m costs 0.001 / 1 USD per 1M tokens (1 / 1,000 nano-USD per
 * token), max_output 1000; clamp_min_tokens is 4. Every request is "hi"
 * (1 prompt token, a prompt bound P of a few tokens). On a lifetime cost cap
 * of 0.0001 USD (100,000 nano-USD):
 *   1. max_tokens 50 (50 words asked of the demo) passes unchanged: 50,001.
 *   2. max_tokens 100 does not fit the 49,999 left (worst P + 100,000); the
 *      largest completion that fits is floor((49,999 - P) / 1,000) = 49 for
 *      any P < 1,000, so the demo receives max_tokens 49 and the key is
 *      charged 49,001: used 99,002 <= the cap.
 *   3. 998 left cannot pay even clamp_min_tokens (4,000): 402, nothing upstream.
 * The same with "reject" gives 402 at step 2. The org's setting is inherited
 * by keys that say nothing ("inherit") and overridden by a key's own. A
 * request naming no max_tokens, a streaming request and a /v1/responses
 * request (max_output_tokens) are clamped the same way; a tokens cap clamps
 * too; a requests cap never clamps.
 */
#include <stdio.h>
#include <string.h>
#include "fixture.h"

#define CAP "\"0.0001\""
#define CAP_NUSD 100000LL

static const fx_model models[] = {
    {"demo-m", "0.001", "1", 1000},
};

static fx_cluster c;

static const char *chat(int64_t max_tokens, int64_t words, int stream)
{
    char mt[48] = "";
    if (max_tokens >= 0) {
        snprintf(mt, sizeof(mt), "\"max_tokens\":%lld,", (long long)max_tokens);
    }
    return fx_fmt_("{\"model\":\"demo-m\",%s\"demo\":{\"completion_tokens\":%lld},%s"
                   "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                   mt, (long long)words,
                   stream ? "\"stream\":true,\"stream_options\":{\"include_usage\":true}," : "");
}

/* A key in org with a lifetime cost cap and the given on_low_budget (NULL = unset). */
static void cap_key(const char *org, const char *low, char id[64], char key[128], char path[256])
{
    char body[256], lb[64] = "";
    if (low != NULL) {
        snprintf(lb, sizeof(lb), "\"on_low_budget\":\"%s\",", low);
    }
    snprintf(body, sizeof(body),
             "{\"name\":\"k\",%s\"limits\":[{\"metric\":\"cost\",\"window\":\"lifetime\","
             "\"max\":" CAP "}]}",
             lb);
    fx_key_create(&c, org, body, id, key);
    fx_scope_path(path, FX_SCOPE_KEY, org, id);
}

/* Send body; want status; on 200 the demo must have seen max tokens `seen`
 * and the key's cost counter must reach `used`. */
static void step(const char *key, const char *path, const char *ep, const char *body, long want,
                 int64_t seen, int64_t used)
{
    int64_t api0 = fx_demo_api_requests(&c);
    fx_resp r;
    long st = fx_post(&c, 0, &r, key, ep, NULL, body);
    FX_CHECK(st == want, "%s %.160s: want %ld, got %ld %.300s", ep, body, want, st, r.body);
    if (want == 402) {
        FX_CHECK_EQ_STR(fx_resp_error_type(&r), "insufficient_quota");
        FX_CHECK_EQ_STR(fx_resp_error_code(&r), "budget_exceeded");
        FX_CHECK_EQ_INT(fx_demo_api_requests(&c), api0);
    } else {
        fx_demo_stats s = fx_demo_stats_get(&c);
        FX_CHECK_EQ_INT(s.api, api0 + 1);
        FX_CHECK(s.last_max_tokens == seen, "upstream saw max tokens %lld, want %lld",
                 (long long)s.last_max_tokens, (long long)seen);
    }
    fx_resp_free(&r);
    fx_limit l = fx_scope_limit_settled(&c, path, "cost", "lifetime", used);
    FX_CHECK_EQ_INT(l.used, used);
    FX_CHECK_EQ_INT(l.reserved, 0);
    FX_CHECK(l.used <= CAP_NUSD, "over the cap: %lld", (long long)l.used);
}

/* Steps 1-3 above with a key that clamps (clamp = 1) or rejects. */
static void low_budget(const char *org, const char *low, int clamp)
{
    char id[64], key[128], path[256];
    const char *cc = "/v1/chat/completions";
    cap_key(org, low, id, key, path);
    step(key, path, cc, chat(50, 50, 0), 200, 50, 50001);
    if (clamp) {
        fx_resp r;
        long st = fx_chat(&c, 0, &r, key, chat(100, 100, 0));
        FX_CHECK(st == 200, "clamped request: %ld %s", st, r.body);
        const cJSON *seen = cJSON_GetObjectItemCaseSensitive(r.json, "demo_seen_max_tokens");
        FX_CHECK(cJSON_IsNumber(seen) && seen->valuedouble == 49, "clamped to: %s", r.body);
        const char *cost = fx_resp_header(&r, "x-capgate-cost-usd");
        FX_CHECK(cost != NULL && fx_usd(cost) == 49001, "cost header %s", cost ? cost : "(none)");
        fx_resp_free(&r);
        fx_limit l = fx_scope_limit_settled(&c, path, "cost", "lifetime", 99002);
        FX_CHECK_EQ_INT(l.used, 99002);
        step(key, path, cc, chat(100, 100, 0), 402, 0, 99002);
    } else {
        step(key, path, cc, chat(100, 100, 0), 402, 0, 50001);
    }
    fx_log("org %s, key on_low_budget %s: %s", org, low != NULL ? low : "(unset)",
           clamp ? "clamped to 49, then 402" : "402");
}

/* Fresh clamp keys: no max_tokens, streaming, /v1/responses. Each affords
 * floor((100,000 - P) / 1,000) = 99 completion tokens. */
static void clamp_variants(void)
{
    char id[64], key[128], path[256];
    cap_key("acme", "clamp", id, key, path);
    step(key, path, "/v1/chat/completions", chat(-1, 16, 0), 200, 99, 16001);

    cap_key("acme", "clamp", id, key, path);
    int64_t api0 = fx_demo_api_requests(&c);
    fx_resp r;
    long st = fx_chat(&c, 0, &r, key, chat(500, 16, 1));
    FX_CHECK(st == 200, "streamed clamp: %ld %s", st, r.body);
    int done = 0;
    cJSON *ev = fx_sse_parse(r.body, &done);
    FX_CHECK(done, "stream without [DONE]: %s", r.body);
    cJSON_Delete(ev);
    fx_resp_free(&r);
    FX_CHECK_EQ_INT(fx_demo_api_requests(&c), api0 + 1);
    FX_CHECK_EQ_INT(fx_demo_stats_get(&c).last_max_tokens, 99);
    fx_limit l = fx_scope_limit_settled(&c, path, "cost", "lifetime", 16001);
    FX_CHECK_EQ_INT(l.used, 16001);

    cap_key("acme", "clamp", id, key, path);
    step(key, path, "/v1/responses",
         "{\"model\":\"demo-m\",\"input\":\"hi\",\"max_output_tokens\":500,"
         "\"demo\":{\"completion_tokens\":16}}",
         200, 99, 16001);
    fx_log("clamp applies to a missing max_tokens, to streams and to max_output_tokens");
}

/* A tokens cap clamps as well (the exact value depends on the prompt bound);
 * a requests cap never does. */
static void clamp_other_metrics(void)
{
    char id[64], key[128], path[256];
    fx_key_create(&c, "acme",
                  "{\"name\":\"tok\",\"on_low_budget\":\"clamp\",\"limits\":[{\"metric\":"
                  "\"tokens\",\"window\":\"lifetime\",\"max\":150}]}",
                  id, key);
    fx_scope_path(path, FX_SCOPE_KEY, "acme", id);
    fx_resp r;
    long st = fx_chat(&c, 0, &r, key, chat(100, 100, 0));
    FX_CHECK(st == 200, "tokens 1: %ld %s", st, r.body);
    fx_resp_free(&r);
    fx_scope_limit_settled(&c, path, "tokens", "lifetime", 101);
    st = fx_chat(&c, 0, &r, key, chat(100, 100, 0));
    FX_CHECK(st == 200, "tokens clamp: %ld %s", st, r.body);
    const cJSON *seen = cJSON_GetObjectItemCaseSensitive(r.json, "demo_seen_max_tokens");
    FX_CHECK(cJSON_IsNumber(seen) && seen->valuedouble >= 4 && seen->valuedouble <= 48,
             "tokens clamp to 4..48: %s", r.body);
    int64_t words = (int64_t)seen->valuedouble;
    fx_resp_free(&r);
    fx_limit l = fx_scope_limit_settled(&c, path, "tokens", "lifetime", 101 + 1 + words);
    FX_CHECK_EQ_INT(l.used, 101 + 1 + words);
    FX_CHECK(l.used <= 150, "tokens over the cap: %lld", (long long)l.used);

    fx_key_create(&c, "acme",
                  "{\"name\":\"req\",\"on_low_budget\":\"clamp\",\"limits\":[{\"metric\":"
                  "\"requests\",\"window\":\"lifetime\",\"max\":1}]}",
                  id, key);
    st = fx_chat(&c, 0, &r, key, chat(10, 10, 0));
    FX_CHECK(st == 200, "requests 1: %ld %s", st, r.body);
    fx_resp_free(&r);
    int64_t api0 = fx_demo_api_requests(&c);
    st = fx_chat(&c, 0, &r, key, chat(10, 10, 0));
    FX_CHECK(st == 402, "requests cap must not clamp: %ld %s", st, r.body);
    fx_resp_free(&r);
    FX_CHECK_EQ_INT(fx_demo_api_requests(&c), api0);
    fx_log("tokens cap clamps to %lld, requests cap refuses", (long long)words);
}

int main(void)
{
    fx_init("it_clamp");
    fx_opts o = {
        .shard_n = 2, .models = models, .model_n = 1, .extra_config = "clamp_min_tokens 4"};
    fx_cluster_start(&c, &o);
    fx_org_create(&c, "{\"id\":\"acme\",\"name\":\"Acme Inc.\"}");
    fx_org_create(&c, "{\"id\":\"clampco\",\"name\":\"Clamp Co\",\"on_low_budget\":\"clamp\"}");
    low_budget("acme", "clamp", 1);
    low_budget("acme", "reject", 0);
    low_budget("acme", NULL, 0);    /* inherits the org default: reject */
    low_budget("clampco", NULL, 1); /* inherits the org's clamp */
    low_budget("clampco", "inherit", 1);
    low_budget("clampco", "reject", 0); /* the key's own setting wins */
    clamp_variants();
    clamp_other_metrics();
    return fx_done();
}
