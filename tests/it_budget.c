/*
 * it_budget.c — integration: a key's monthly cost cap blocks with 402.
 *
 * Model demo-pricey costs 10 / 100 USD per 1M tokens (10,000 / 100,000
 * nano-USD per token) and has max_output 1000, so one request "hi" (2 bytes ->
 * 1 prompt token) with max_tokens 5 costs exactly 510,000 nano-USD, while a
 * request without max_tokens has a worst case of at least 1000 completion
 * tokens = 0.1 USD, more than the whole 0.01 USD cap. Strict reservation
 * must refuse that one even on a fresh key, before it reaches the upstream.
 * Finally a requests/day and a tokens/week quota refuse requests past their max.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "fixture.h"

#define CAP_NUSD 10000000LL      /* 0.01 USD */
#define SMALL_COST_NUSD 510000LL /* 1 x 10,000 + 5 x 100,000 */
#define ATTEMPTS_MAX 40          /* 40 x 510,000 > 2 x cap: a 402 must come */

static const fx_model models[] = {
    {"demo-pricey", "10", "100", 1000},
};

static const char small_body[] = "{\"model\":\"demo-pricey\",\"max_tokens\":5,"
                                 "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
static const char unbounded_body[] =
    "{\"model\":\"demo-pricey\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

static const char *limit_str(const cJSON *limit, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(limit, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The 402 answer: OpenAI error shape plus the SPEC §4 limit object. */
static void check_402(const fx_resp *r, const char *key_id, int64_t used)
{
    FX_CHECK(r->status == 402, "want 402, got %ld %s", r->status, r->body);
    FX_CHECK_EQ_STR(fx_resp_error_type(r), "insufficient_quota");
    FX_CHECK_EQ_STR(fx_resp_error_code(r), "budget_exceeded");
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(r->json, "error");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(err, "message");
    FX_CHECK(cJSON_IsString(msg) && msg->valuestring[0] != '\0', "no message: %s", r->body);
    const cJSON *limit = cJSON_GetObjectItemCaseSensitive(err, "limit");
    FX_CHECK(cJSON_IsObject(limit), "no limit object: %s", r->body);
    char next[32];
    fx_next_month(next);
    FX_CHECK_EQ_STR(limit_str(limit, "scope"), "key");
    FX_CHECK_EQ_STR(limit_str(limit, "scope_id"), key_id);
    FX_CHECK_EQ_STR(limit_str(limit, "metric"), "cost");
    FX_CHECK_EQ_STR(limit_str(limit, "window"), "month");
    FX_CHECK_EQ_STR(limit_str(limit, "max"), "0.01");
    FX_CHECK_EQ_STR(limit_str(limit, "resets_at"), next);
    FX_CHECK(limit_str(limit, "used") != NULL, "no limit.used: %s", r->body);
    FX_CHECK_EQ_INT(fx_usd(limit_str(limit, "used")), used);
}

static void key_with_cap(fx_cluster *c, const char *name, char id[64], char key[128])
{
    char body[256];
    snprintf(body, sizeof(body),
             "{\"name\":\"%s\",\"limits\":[{\"metric\":\"cost\",\"window\":\"month\","
             "\"max\":\"0.01\"}]}",
             name);
    fx_key_create(c, "acme", body, id, key);
}

/* Spend with small requests until the first 402; everything admitted is
 * charged exactly and the refused requests never reach the upstream. */
static void spend_to_cap(fx_cluster *c)
{
    char id[64], key[128];
    key_with_cap(c, "small-spender", id, key);
    int64_t upstream0 = fx_demo_chat_requests(c);
    int n200 = 0;
    fx_resp r;
    memset(&r, 0, sizeof(r));
    for (int i = 0; i < ATTEMPTS_MAX; i++) {
        fx_resp_free(&r);
        long st = fx_chat(c, 0, &r, key, small_body);
        if (st != 200) {
            break;
        }
        n200++;
        /* Wait for the settle so the next admission sees the real usage. */
        fx_limit l = fx_key_limit_settled(c, id, 0, n200 * SMALL_COST_NUSD);
        FX_CHECK_EQ_INT(l.used, n200 * SMALL_COST_NUSD);
    }
    fx_log("%d requests admitted before the first refusal", n200);
    FX_CHECK(n200 >= 1, "the first small request was refused: %ld %s", r.status, r.body);
    fx_limit l = fx_key_limit_settled(c, id, 0, n200 * SMALL_COST_NUSD);
    FX_CHECK_EQ_INT(l.used, n200 * SMALL_COST_NUSD);
    FX_CHECK_EQ_INT(l.reserved, 0);
    FX_CHECK_EQ_INT(l.max, CAP_NUSD);
    FX_CHECK(l.used <= CAP_NUSD, "used %lld over the cap", (long long)l.used);
    check_402(&r, id, l.used);
    fx_resp_free(&r);
    /* Still blocked, still nothing spent, upstream saw only the admitted ones. */
    fx_chat(c, 0, &r, key, small_body);
    check_402(&r, id, l.used);
    fx_resp_free(&r);
    FX_CHECK_EQ_INT(fx_demo_chat_requests(c), upstream0 + n200);
    char next[32];
    fx_next_month(next);
    FX_CHECK_EQ_STR(l.resets_at, next);
    fx_log("cap holds: used %lld <= %lld, 402 budget_exceeded", (long long)l.used,
           (long long)CAP_NUSD);
}

/* A request whose worst case exceeds the cap is refused on a fresh key. */
static void strict_worst_case(fx_cluster *c)
{
    char id[64], key[128];
    key_with_cap(c, "fresh", id, key);
    int64_t upstream0 = fx_demo_chat_requests(c);
    fx_resp r;
    fx_chat(c, 0, &r, key, unbounded_body);
    check_402(&r, id, 0);
    fx_resp_free(&r);
    FX_CHECK_EQ_INT(fx_demo_chat_requests(c), upstream0);
    fx_limit l = fx_key_limit_settled(c, id, 0, 0);
    FX_CHECK_EQ_INT(l.used, 0);
    FX_CHECK_EQ_INT(l.reserved, 0);
    /* The budget was there all along: a bounded request passes. */
    long st = fx_chat(c, 0, &r, key, small_body);
    FX_CHECK(st == 200, "bounded request on fresh key -> %ld %s", st, r.body);
    fx_resp_free(&r);
    FX_CHECK_EQ_INT(fx_demo_chat_requests(c), upstream0 + 1);
    l = fx_key_limit_settled(c, id, 0, SMALL_COST_NUSD);
    FX_CHECK_EQ_INT(l.used, SMALL_COST_NUSD);
    fx_log("worst case without max_tokens refused on a fresh key; bounded request passes");
}

/* First instant of tomorrow, UTC. */
static void next_day(char out[32])
{
    time_t t = time(NULL) + 86400;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT00:00:00Z", &tm);
}

/* A requests/day quota of 3: three pass, the fourth is 402 naming the
 * requests limit; nothing more is counted. */
static void request_quota(fx_cluster *c)
{
    char id[64], key[128];
    fx_key_create(c, "acme",
                  "{\"name\":\"three-a-day\",\"limits\":[{\"metric\":\"requests\","
                  "\"window\":\"day\",\"max\":3}]}",
                  id, key);
    fx_resp r;
    for (int i = 0; i < 3; i++) {
        long st = fx_chat(c, 0, &r, key, small_body);
        FX_CHECK(st == 200, "request %d of 3: %ld %s", i + 1, st, r.body);
        fx_resp_free(&r);
    }
    long st = fx_chat(c, 0, &r, key, small_body);
    FX_CHECK(st == 402, "4th request: %ld %s", st, r.body);
    FX_CHECK_EQ_STR(fx_resp_error_code(&r), "budget_exceeded");
    const cJSON *limit = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(r.json, "error"), "limit");
    char tomorrow[32];
    next_day(tomorrow);
    FX_CHECK_EQ_STR(limit_str(limit, "scope"), "key");
    FX_CHECK_EQ_STR(limit_str(limit, "metric"), "requests");
    FX_CHECK_EQ_STR(limit_str(limit, "window"), "day");
    FX_CHECK_EQ_STR(limit_str(limit, "resets_at"), tomorrow);
    fx_resp_free(&r);
    fx_limit l = fx_key_limit_settled(c, id, 0, 3);
    FX_CHECK_EQ_INT(l.used, 3);
    FX_CHECK_EQ_INT(l.reserved, 0);
    FX_CHECK_EQ_INT(l.max, 3);
    fx_log("requests/day quota: 3 admitted, 4th refused, resets %s", tomorrow);
}

/* First instant of next Monday (weeks start on Monday), UTC. */
static void next_monday(char out[32])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    time_t t = now + (time_t)(7 - (tm.tm_wday + 6) % 7) * 86400;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT00:00:00Z", &tm);
}

/* A tokens/week quota of 40: each small request uses 1 + 5 = 6 tokens; they
 * pass until the worst case no longer fits, then 402 naming the tokens limit.
 * Whatever the gateway's prompt bound, used is a multiple of 6 and <= 40. */
static void token_quota(fx_cluster *c)
{
    char id[64], key[128];
    fx_key_create(c, "acme",
                  "{\"name\":\"tokens\",\"limits\":[{\"metric\":\"tokens\","
                  "\"window\":\"week\",\"max\":40}]}",
                  id, key);
    fx_resp r;
    memset(&r, 0, sizeof(r));
    int n200 = 0;
    for (int i = 0; i < 10; i++) {
        fx_resp_free(&r);
        if (fx_chat(c, 0, &r, key, small_body) != 200) {
            break;
        }
        n200++;
        fx_key_limit_settled(c, id, 0, 6 * n200);
    }
    FX_CHECK(r.status == 402, "tokens quota: %ld %s", r.status, r.body);
    FX_CHECK_EQ_STR(fx_resp_error_code(&r), "budget_exceeded");
    const cJSON *limit = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(r.json, "error"), "limit");
    char monday[32];
    next_monday(monday);
    FX_CHECK_EQ_STR(limit_str(limit, "metric"), "tokens");
    FX_CHECK_EQ_STR(limit_str(limit, "window"), "week");
    FX_CHECK_EQ_STR(limit_str(limit, "resets_at"), monday);
    fx_resp_free(&r);
    fx_limit l = fx_key_limit_settled(c, id, 0, 6 * n200);
    FX_CHECK_EQ_INT(l.used, 6 * n200);
    FX_CHECK(l.used <= 40 && n200 >= 1, "used %lld tokens, %d admitted", (long long)l.used, n200);
    FX_CHECK_EQ_INT(l.reserved, 0);
    fx_log("tokens/week quota: %d admitted (%lld tokens), then 402; resets %s", n200,
           (long long)l.used, monday);
}

int main(void)
{
    fx_init("it_budget");
    fx_cluster c;
    fx_opts o = {.shard_n = 2, .models = models, .model_n = 1};
    fx_cluster_start(&c, &o);
    fx_org_create(&c, "{\"id\":\"acme\",\"name\":\"Acme Inc.\"}");
    spend_to_cap(&c);
    strict_worst_case(&c);
    request_quota(&c);
    token_quota(&c);
    return fx_done();
}
