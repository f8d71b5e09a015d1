/*
 * it_proxy.c — integration: a request with a valid key is proxied to the
 * demo upstream and its exact cost is recorded; bad keys, bad JSON and unknown
 * models get the SPEC §4 errors and cost nothing; streaming requests are
 * charged from the usage chunk, which only the client that asked for it sees.
 *
 * Expected costs are computed here from the demo's documented token counts
 * (prompt = ceil(content bytes / 4), completion = min(16, max_tokens)) and the
 * configured prices: demo-gpt-4o-mini at 0.15 / 0.60 USD per 1M tokens, i.e.
 * 150 / 600 nano-USD per token, plus a routing fee of 1000 nano-USD.
 */
#include <stdio.h>
#include <string.h>
#include "fixture.h"
#include "gw_keys.h"

#define PROMPT_NUSD 150     /* per prompt token */
#define COMPLETION_NUSD 600 /* per completion token */
#define FEE_NUSD 1000       /* routing_fee 0.000001 */

static int64_t cost_of(int64_t prompt_tokens, int64_t completion_tokens)
{
    return prompt_tokens * PROMPT_NUSD + completion_tokens * COMPLETION_NUSD + FEE_NUSD;
}

static int64_t usage_field(const cJSON *usage, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(usage, name);
    FX_CHECK(cJSON_IsNumber(v), "usage.%s missing", name);
    return (int64_t)v->valuedouble;
}

/* Non-streaming request; checks body, usage and the cost header. */
static void check_plain(fx_cluster *c, const char *key, const char *body, int64_t prompt,
                        int64_t completion)
{
    fx_resp r;
    long st = fx_chat(c, 0, &r, key, body);
    FX_CHECK(st == 200, "chat -> %ld %s %s", st, r.err, r.body);
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(r.json, "choices");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(choices, 0), "message");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
    FX_CHECK(cJSON_IsString(content) && content->valuestring[0] != '\0', "no content: %s", r.body);
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(r.json, "usage");
    FX_CHECK_EQ_INT(usage_field(usage, "prompt_tokens"), prompt);
    FX_CHECK_EQ_INT(usage_field(usage, "completion_tokens"), completion);
    const char *cost = fx_resp_header(&r, "x-capgate-cost-usd");
    FX_CHECK(cost != NULL, "no x-capgate-cost-usd header");
    FX_CHECK_EQ_INT(fx_usd(cost), cost_of(prompt, completion));
    FX_CHECK(fx_resp_header(&r, "x-capgate-request-id") != NULL, "no x-capgate-request-id");
    fx_resp_free(&r);
}

/* A refused request: status, type, code, and the upstream never saw it. */
static void check_refused(fx_cluster *c, const char *const *headers, const char *body, long want,
                          const char *type, const char *code)
{
    int64_t before = fx_demo_chat_requests(c);
    fx_resp r;
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/chat/completions", c->gw_port[0]);
    long st = fx_http(&r, "POST", url, headers, body, 0);
    FX_CHECK(st == want, "want %ld got %ld %s %s", want, st, r.err, r.body);
    FX_CHECK_EQ_STR(fx_resp_error_type(&r), type);
    FX_CHECK_EQ_STR(fx_resp_error_code(&r), code);
    fx_resp_free(&r);
    FX_CHECK_EQ_INT(fx_demo_chat_requests(c), before);
}

static void check_bad_keys(fx_cluster *c, const char *key)
{
    static const char body[] =
        "{\"model\":\"demo-gpt-4o-mini\",\"max_tokens\":5,"
        "\"messages\":[{\"role\":\"user\",\"content\":\"Say hello to capgate\"}]}";
    char unknown[GW_KEY_MAX + 1], unknown_id[GW_KEY_ID_MAX + 1];
    FX_CHECK(gw_key_generate(unknown, sizeof(unknown), unknown_id, sizeof(unknown_id)) == CG_ERR_OK,
             "gw_key_generate");
    char h_unknown[256], h_malformed[256], h_mangled[256];
    snprintf(h_unknown, sizeof(h_unknown), "Authorization: Bearer %s", unknown);
    snprintf(h_malformed, sizeof(h_malformed), "Authorization: Bearer cg-not-a-key");
    /* One character of a real key changed: the checksum refuses it. */
    snprintf(h_mangled, sizeof(h_mangled), "Authorization: Bearer %s", key);
    char *last = h_mangled + strlen(h_mangled) - 1;
    *last = *last == 'A' ? 'B' : 'A';
    const char *const hu[] = {h_unknown, NULL};
    const char *const hm[] = {h_malformed, NULL};
    const char *const hg[] = {h_mangled, NULL};
    check_refused(c, hu, body, 401, "authentication_error", "invalid_api_key");
    check_refused(c, hm, body, 401, "authentication_error", "invalid_api_key");
    check_refused(c, hg, body, 401, "authentication_error", "invalid_api_key");
    check_refused(c, NULL, body, 401, "authentication_error", "invalid_api_key");
    fx_log("unknown, malformed, mangled and missing keys: 401 invalid_api_key");
}

static void check_bad_requests(fx_cluster *c, const char *key)
{
    char auth[256];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
    const char *const h[] = {auth, NULL};
    check_refused(c, h, "{\"model\": \"demo-gpt-4o-mini\", \"messages\": [", 400,
                  "invalid_request_error", "invalid_json");
    check_refused(c, h,
                  "{\"model\":\"no-such-model\",\"max_tokens\":5,"
                  "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                  400, "invalid_request_error", "model_not_found");
    fx_log("malformed JSON: 400 invalid_json; unknown model: 400 model_not_found");
}

/* Streams one request; returns how many chunks carried a non-null usage
 * object, and checks the usage numbers of such a chunk. */
static int check_stream(fx_cluster *c, const char *key, const char *body, int64_t prompt,
                        int64_t completion)
{
    fx_resp r;
    long st = fx_chat(c, 0, &r, key, body);
    FX_CHECK(st == 200, "stream -> %ld %s %s", st, r.err, r.body);
    const char *ct = fx_resp_header(&r, "content-type");
    FX_CHECK(ct != NULL && strncmp(ct, "text/event-stream", 17) == 0, "content-type %s",
             ct ? ct : "(none)");
    int done = 0, usage_n = 0, words = 0;
    cJSON *chunks = fx_sse_parse(r.body, &done);
    FX_CHECK(done, "no data: [DONE] in %s", r.body);
    const cJSON *ch = NULL;
    cJSON_ArrayForEach(ch, chunks)
    {
        const cJSON *usage = cJSON_GetObjectItemCaseSensitive(ch, "usage");
        if (usage != NULL && !cJSON_IsNull(usage)) {
            usage_n++;
            FX_CHECK_EQ_INT(usage_field(usage, "prompt_tokens"), prompt);
            FX_CHECK_EQ_INT(usage_field(usage, "completion_tokens"), completion);
            FX_CHECK(ch->next == NULL, "usage chunk is not the last chunk");
        }
        const cJSON *delta = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ch, "choices"), 0), "delta");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(delta, "content");
        words += cJSON_IsString(content) && content->valuestring[0] != '\0';
    }
    FX_CHECK_EQ_INT(words, completion);
    cJSON_Delete(chunks);
    fx_resp_free(&r);
    return usage_n;
}

static void check_streaming(fx_cluster *c, const char *key, const char *id, int64_t *used)
{
    /* "Stream me": 9 bytes -> 3 prompt tokens; max_tokens 4 -> 4 words. */
    static const char plain[] = "{\"model\":\"demo-gpt-4o-mini\",\"stream\":true,\"max_tokens\":4,"
                                "\"messages\":[{\"role\":\"user\",\"content\":\"Stream me\"}]}";
    static const char with_usage[] =
        "{\"model\":\"demo-gpt-4o-mini\",\"stream\":true,\"max_tokens\":4,"
        "\"stream_options\":{\"include_usage\":true},"
        "\"messages\":[{\"role\":\"user\",\"content\":\"Stream me\"}]}";
    FX_CHECK_EQ_INT(check_stream(c, key, plain, 3, 4), 0);
    *used += cost_of(3, 4);
    fx_limit l = fx_key_limit_settled(c, id, 0, *used);
    FX_CHECK_EQ_INT(l.used, *used);
    FX_CHECK_EQ_INT(l.reserved, 0);
    fx_log("stream without include_usage: no usage chunk, charged %lld", (long long)cost_of(3, 4));
    FX_CHECK_EQ_INT(check_stream(c, key, with_usage, 3, 4), 1);
    *used += cost_of(3, 4);
    l = fx_key_limit_settled(c, id, 0, *used);
    FX_CHECK_EQ_INT(l.used, *used);
    FX_CHECK_EQ_INT(l.reserved, 0);
    fx_log("stream with include_usage: one usage chunk, charged %lld", (long long)cost_of(3, 4));
}

static void check_proxied(fx_cluster *c, const char *key, const char *id, int64_t *used)
{
    /* "Say hello to capgate": 20 bytes -> 5 prompt tokens; 5 completion. */
    check_plain(c, key,
                "{\"model\":\"demo-gpt-4o-mini\",\"max_tokens\":5,"
                "\"messages\":[{\"role\":\"user\",\"content\":\"Say hello to capgate\"}]}",
                5, 5);
    *used += cost_of(5, 5);
    fx_limit l = fx_key_limit_settled(c, id, 0, *used);
    FX_CHECK_EQ_INT(l.used, *used);
    FX_CHECK_EQ_INT(l.reserved, 0);
    FX_CHECK_EQ_INT(l.max, 10LL * 1000000000LL);
    fx_log("proxied: used %lld nUSD as expected", (long long)l.used);
    /* Two messages, 14 + 5 bytes -> ceil(19/4) = 5; max_completion_tokens 3. */
    check_plain(c, key,
                "{\"model\":\"demo-gpt-4o-mini\",\"max_completion_tokens\":3,"
                "\"messages\":[{\"role\":\"system\",\"content\":\"You are terse.\"},"
                "{\"role\":\"user\",\"content\":\"Ping?\"}]}",
                5, 3);
    *used += cost_of(5, 3);
    l = fx_key_limit_settled(c, id, 0, *used);
    FX_CHECK_EQ_INT(l.used, *used);
    FX_CHECK_EQ_INT(l.reserved, 0);
}

int main(void)
{
    fx_init("it_proxy");
    fx_cluster c;
    fx_opts o = {.shard_n = 2, .routing_fee = "0.000001"};
    fx_cluster_start(&c, &o);
    fx_org_create(&c, "{\"id\":\"acme\",\"name\":\"Acme Inc.\"}");
    char id[64], key[128];
    fx_key_create(&c, "acme",
                  "{\"name\":\"proxy\",\"limits\":[{\"metric\":\"cost\","
                  "\"window\":\"month\",\"max\":\"10\"}]}",
                  id, key);
    int64_t used = 0;
    check_proxied(&c, key, id, &used);
    check_bad_keys(&c, key);
    check_bad_requests(&c, key);
    fx_limit l = fx_key_limit_settled(&c, id, 0, used);
    FX_CHECK_EQ_INT(l.used, used); /* refused requests cost nothing */
    check_streaming(&c, key, id, &used);
    return fx_done();
}
