/*
 * it_usage_failed.c — usage records of requests whose upstream failed (issue 5,
 * docs/contracts.md "Usage"): a request that reached the upstream and failed
 * (upstream 500 / 429, a streamed 503, a timeout past upstream_timeout_ms, a
 * provider that refuses the connection) answers the client as before and leaves
 * a usage record with the status the client got, zero tokens and zero cost,
 * its model, provider, group, customer and latency; every scope's counters
 * (cost, calendar and sliding request counts) end as if it had been released:
 * `used` unchanged, `reserved` 0. Usage totals count those records in
 * `requests` at zero cost. Requests refused before the upstream (401, 400) have
 * no record but are counted in the gateway's /metrics by status and reason.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

#define MODEL_OK "m-alpha"
#define MODEL_DEAD "m-dead"
#define TIMEOUT_MS 1500
#define FAILED_N 5
#define RECORDS_MS 10000

static const fx_model models[] = {{MODEL_OK, "0.001", "0.002", 1000}};

static char key_id[64], key_sec[128];

/* One request the gateway forwards upstream. */
typedef struct sent {
    const char *what;
    int status;       /* what the client must get */
    const char *code; /* its error code (NULL: the upstream's body, passed through) */
    const char *model;
    const char *provider;
    char rid[64];
} sent;

static int64_t num(const cJSON *o, const char *f)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, f);
    if (cJSON_IsString(v)) {
        return fx_usd(v->valuestring);
    }
    FX_CHECK(cJSON_IsNumber(v), "field %s missing", f);
    return (int64_t)v->valuedouble;
}

static const char *str(const cJSON *o, const char *f)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, f);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* POST a chat body as the key with customer c1; checks the status; keeps the request id. */
static void send(fx_cluster *c, sent *s, const char *body)
{
    fx_resp r;
    const char *hdr[] = {"X-Capgate-Customer: c1", NULL};
    long st = fx_post(c, 0, &r, key_sec, "/v1/chat/completions", hdr, body);
    FX_CHECK(st == s->status, "%s: %ld (want %d) %s", s->what, st, s->status, r.body);
    if (s->code != NULL) {
        FX_CHECK_EQ_STR(fx_resp_error_code(&r), s->code);
    }
    const char *rid = fx_resp_header(&r, "x-capgate-request-id");
    FX_CHECK(rid != NULL && rid[0] != '\0', "%s: no request id", s->what);
    snprintf(s->rid, sizeof(s->rid), "%s", rid);
    fx_resp_free(&r);
    fx_log("%s -> %ld (%s)", s->what, st, s->rid);
}

static void setup(fx_cluster *c)
{
    fx_org_create(c, "{\"id\":\"acme\",\"name\":\"Acme Inc.\",\"limits\":[{\"metric\":\"cost\","
                     "\"window\":\"month\",\"max\":\"5\"},{\"metric\":\"requests\",\"window\":"
                     "\"month\",\"max\":100}]}");
    fx_customer_put(c, "acme", "c1",
                    "{\"limits\":[{\"metric\":\"requests\",\"window\":\"month\",\"max\":100}]}");
    fx_group_create(c, "acme",
                    "{\"id\":\"team\",\"name\":\"Team\",\"limits\":[{\"metric\":\"requests\","
                    "\"window\":\"month\",\"max\":100}]}");
    fx_key_create(c, "acme",
                  "{\"name\":\"k\",\"group\":\"team\",\"limits\":["
                  "{\"metric\":\"cost\",\"window\":\"month\",\"max\":\"1\"},"
                  "{\"metric\":\"requests\",\"window\":\"month\",\"max\":100},"
                  "{\"metric\":\"requests\",\"window\":\"1m\",\"max\":50}]}",
                  key_id, key_sec);
}

/* Poll the raw records of acme until n are there (settles complete after the answer). */
static cJSON *records(fx_cluster *c, int n)
{
    int64_t deadline = fx_now_ms() + RECORDS_MS;
    for (;;) {
        cJSON *j = fx_admin_expect(c, 200, "GET", "/admin/v1/usage/records?org=acme", NULL);
        int got = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "data"));
        if (got >= n || fx_now_ms() > deadline) {
            FX_CHECK(got == n, "records: %d, want %d", got, n);
            return j;
        }
        cJSON_Delete(j);
        fx_sleep_ms(50);
    }
}

static const cJSON *record_of(const cJSON *data, const char *rid)
{
    const cJSON *rec;
    cJSON_ArrayForEach(rec, data)
    {
        const char *r = str(rec, "request_id");
        if (r != NULL && strcmp(r, rid) == 0) {
            return rec;
        }
    }
    return NULL;
}

static double metric(fx_cluster *c, int status, const char *reason)
{
    fx_resp r;
    FX_CHECK_EQ_INT(fx_admin(c, &r, "GET", "/metrics", NULL), 200);
    double v = fx_metric_value(
        r.body,
        fx_fmt_("capgate_gateway_requests_total{status=\"%d\",reason=\"%s\"}", status, reason));
    fx_resp_free(&r);
    return v;
}

/* Every scope's limit: `used` as given and nothing reserved. */
static void check_scope(fx_cluster *c, fx_scope sc, const char *id, const char *metric_name,
                        const char *window, int64_t used)
{
    char path[256];
    fx_scope_path(path, sc, "acme", id);
    fx_limit l = fx_scope_limit_settled(c, path, metric_name, window, used);
    FX_CHECK(l.used == used && l.reserved == 0, "%s %s/%s: used %lld (want %lld) reserved %lld",
             fx_scope_name(sc), metric_name, window, (long long)l.used, (long long)used,
             (long long)l.reserved);
}

int main(void)
{
    fx_init("it_usage_failed");
    fx_cluster c;
    char extra[512];
    int dead_port = fx_free_port(); /* nothing listens there: connection refused */
    snprintf(extra, sizeof(extra),
             "upstream_timeout_ms %d\nprovider dead http://127.0.0.1:%d/v1\n"
             "model %s dead prompt=0.001 completion=0.002 max_output=1000",
             TIMEOUT_MS, dead_port, MODEL_DEAD);
    fx_opts o = {.shard_n = 2, .models = models, .model_n = 1, .extra_config = extra};
    fx_cluster_start(&c, &o);
    setup(&c);
    fx_log("shards: key s%u, group s%u, customer s%u, org s%u", fx_shard_of(&c, "key:%s", key_id),
           fx_shard_of(&c, "group:acme/team"), fx_shard_of(&c, "customer:acme/c1"),
           fx_shard_of(&c, "org:acme"));
    int64_t demo0 = fx_demo_stats_get(&c).chat;

    /* One success, then every kind of upstream failure. */
    sent ok = {"success", 200, NULL, MODEL_OK, "demo", ""};
    send(&c, &ok,
         "{\"model\":\"" MODEL_OK "\",\"max_tokens\":8,\"messages\":[{\"role\":\"user\","
         "\"content\":\"hello there\"}]}");
    sent failed[FAILED_N] = {
        {"upstream 500", 500, "demo_status", MODEL_OK, "demo", ""},
        {"upstream 429", 429, "demo_status", MODEL_OK, "demo", ""},
        {"streamed, upstream 503", 503, "demo_status", MODEL_OK, "demo", ""},
        {"upstream timeout", 504, "upstream_timeout", MODEL_OK, "demo", ""},
        {"connection refused", 502, "upstream_error", MODEL_DEAD, "dead", ""},
    };
    static const char *const bodies[FAILED_N] = {
        "{\"model\":\"" MODEL_OK "\",\"max_tokens\":8,\"demo\":{\"status\":500},"
        "\"messages\":[{\"role\":\"user\",\"content\":\"fail\"}]}",
        "{\"model\":\"" MODEL_OK "\",\"max_tokens\":8,\"demo\":{\"status\":429},"
        "\"messages\":[{\"role\":\"user\",\"content\":\"fail\"}]}",
        "{\"model\":\"" MODEL_OK "\",\"max_tokens\":8,\"stream\":true,\"demo\":{\"status\":503},"
        "\"messages\":[{\"role\":\"user\",\"content\":\"fail\"}]}",
        "{\"model\":\"" MODEL_OK "\",\"max_tokens\":8,\"demo\":{\"delay_ms\":4000},"
        "\"messages\":[{\"role\":\"user\",\"content\":\"slow\"}]}",
        "{\"model\":\"" MODEL_DEAD "\",\"max_tokens\":8,"
        "\"messages\":[{\"role\":\"user\",\"content\":\"nobody\"}]}",
    };
    for (int i = 0; i < FAILED_N; i++) {
        send(&c, &failed[i], bodies[i]);
    }
    FX_CHECK_EQ_INT(fx_demo_stats_get(&c).chat - demo0, 5); /* the dead provider got none */

    /* Refused before the upstream: no record, counted in /metrics. */
    double m401 = metric(&c, 401, "invalid_api_key");
    fx_resp r;
    long st = fx_post(&c, 0, &r, "cg-not-a-real-key", "/v1/chat/completions", NULL,
                      "{\"model\":\"" MODEL_OK "\",\"messages\":[]}");
    FX_CHECK_EQ_INT(st, 401);
    fx_resp_free(&r);
    st = fx_post(&c, 0, &r, key_sec, "/v1/chat/completions", NULL, "{not json");
    FX_CHECK_EQ_INT(st, 400);
    char code400[64];
    snprintf(code400, sizeof(code400), "%s", fx_resp_error_code(&r) ? fx_resp_error_code(&r) : "");
    fx_resp_free(&r);
    FX_CHECK(code400[0] != '\0', "400 without an error code");
    FX_CHECK_EQ_INT(fx_demo_stats_get(&c).chat - demo0, 5);

    /* Records: the success and every failure, nothing else. */
    cJSON *j = records(&c, 1 + FAILED_N);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
    const cJSON *okr = record_of(data, ok.rid);
    FX_CHECK(okr != NULL, "no record of the success");
    FX_CHECK_EQ_INT(num(okr, "status"), 200);
    int64_t ok_cost = num(okr, "cost");
    int64_t ok_prompt = num(okr, "prompt_tokens"), ok_completion = num(okr, "completion_tokens");
    FX_CHECK(ok_cost > 0 && ok_prompt > 0 && ok_completion > 0, "success record without usage");
    for (int i = 0; i < FAILED_N; i++) {
        const sent *s = &failed[i];
        const cJSON *rec = record_of(data, s->rid);
        FX_CHECK(rec != NULL, "%s: no usage record", s->what);
        FX_CHECK_EQ_INT(num(rec, "status"), s->status);
        FX_CHECK_EQ_INT(num(rec, "prompt_tokens"), 0);
        FX_CHECK_EQ_INT(num(rec, "completion_tokens"), 0);
        FX_CHECK_EQ_INT(num(rec, "cost"), 0);
        FX_CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(rec, "estimated")), "%s: estimated",
                 s->what);
        FX_CHECK_EQ_STR(str(rec, "org"), "acme");
        FX_CHECK_EQ_STR(str(rec, "key"), key_id);
        FX_CHECK_EQ_STR(str(rec, "group"), "team");
        FX_CHECK_EQ_STR(str(rec, "customer"), "c1");
        FX_CHECK_EQ_STR(str(rec, "model"), s->model);
        FX_CHECK_EQ_STR(str(rec, "provider"), s->provider);
        int64_t lat = num(rec, "latency_ms");
        FX_CHECK(lat >= 0, "%s: latency %lld", s->what, (long long)lat);
        if (s->status == 504) {
            FX_CHECK(lat >= TIMEOUT_MS, "timeout latency %lld < %d", (long long)lat, TIMEOUT_MS);
        }
    }
    cJSON_Delete(j);

    /* Counters: only the success counts anywhere; nothing stays reserved. */
    check_scope(&c, FX_SCOPE_KEY, key_id, "cost", "month", ok_cost);
    check_scope(&c, FX_SCOPE_KEY, key_id, "requests", "month", 1);
    check_scope(&c, FX_SCOPE_KEY, key_id, "requests", "1m", 1);
    check_scope(&c, FX_SCOPE_GROUP, "team", "requests", "month", 1);
    check_scope(&c, FX_SCOPE_CUSTOMER, "c1", "requests", "month", 1);
    check_scope(&c, FX_SCOPE_ORG, "acme", "cost", "month", ok_cost);
    check_scope(&c, FX_SCOPE_ORG, "acme", "requests", "month", 1);

    /* Totals count every record; failures add requests and nothing else. */
    fx_usage t = fx_usage_totals(&c, "org=acme");
    FX_CHECK(t.requests == 1 + FAILED_N && t.cost == ok_cost && t.prompt_tokens == ok_prompt &&
                 t.completion_tokens == ok_completion,
             "totals %lld/%lld/%lld/%lld", (long long)t.requests, (long long)t.prompt_tokens,
             (long long)t.completion_tokens, (long long)t.cost);
    t = fx_usage_totals(&c, "org=acme&provider=dead");
    FX_CHECK(t.requests == 1 && t.cost == 0 && t.prompt_tokens == 0, "dead provider totals");

    /* Metrics by status and reason, refusals included. */
    FX_CHECK(metric(&c, 504, "upstream_timeout") == 1, "504 metric");
    FX_CHECK(metric(&c, 502, "upstream_error") == 1, "502 metric");
    FX_CHECK(metric(&c, 500, "upstream_error") == 1, "500 metric");
    FX_CHECK(metric(&c, 401, "invalid_api_key") == (m401 < 0 ? 0 : m401) + 1, "401 metric");
    FX_CHECK(metric(&c, 400, code400) >= 1, "400 metric (%s)", code400);
    return fx_done();
}
