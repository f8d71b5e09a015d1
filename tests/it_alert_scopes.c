/*
 * it_alert_scopes.c — integration: all six event types of SPEC §7 for every
 * scope (key, group, customer, org), each once per threshold per period.
 *
 * Org "omni" has three warn-only limits (so nothing is refused and one request
 * crosses every one of them): cost/month max 0.0001 USD, tokens/month max 2,
 * requests/month max 1, each with warn_at [0.5]. The same three limits are set
 * on the group "g1", on customers (the org's customer_defaults) and on a key in
 * g1. One request for customer "cust1" therefore yields 24 events: for each of
 * the four scopes the warning and the *_reached event of each metric. A second
 * request in the same period yields none (once per period). After the test
 * clock moves into the next month, a request yields 24 new events with new ids.
 */
#include <stdio.h>
#include <string.h>
#include "fixture.h"

#define DELIVERY_MS 15000
#define QUIET_MS 1500
#define PER_PERIOD 24

static const fx_model models[] = {
    {"demo-flat", "0", "100", 1000},
};

#define LIMITS                                                                                    \
    "[{\"metric\":\"cost\",\"window\":\"month\",\"max\":\"0.0001\",\"action\":\"warn\","          \
    "\"warn_at\":[0.5]},"                                                                         \
    "{\"metric\":\"tokens\",\"window\":\"month\",\"max\":2,\"action\":\"warn\",\"warn_at\":"      \
    "[0.5]},"                                                                                     \
    "{\"metric\":\"requests\",\"window\":\"month\",\"max\":1,\"action\":\"warn\",\"warn_at\":[0." \
    "5]}]"

static const char *const types[6] = {
    "spend_cap_warning_threshold_reached",     "spend_cap_reached",
    "token_quota_warning_threshold_reached",   "token_quota_reached",
    "request_quota_warning_threshold_reached", "request_quota_reached",
};
static const char *const scopes[4] = {"key", "group", "customer", "org"};

static void request(fx_cluster *c, const char *key)
{
    const char *const hdrs[] = {"X-Capgate-Customer: cust1", NULL};
    fx_resp r;
    long st = fx_post(c, 0, &r, key, "/v1/chat/completions", hdrs,
                      "{\"model\":\"demo-flat\",\"max_tokens\":7,"
                      "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    FX_CHECK(st == 200, "request: %ld %s %s", st, r.err, r.body);
    fx_resp_free(&r);
}

static const char *str_at(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* Deliveries [from, from + PER_PERIOD): one per (scope, type), scope ids right,
 * ids new. ids[] collects them. */
static void check_period(fx_hook *h, size_t from, const char *key_id, char ids[][64], size_t *id_n)
{
    int seen[4][6] = {{0}};
    for (size_t i = from; i < from + PER_PERIOD; i++) {
        fx_hook_req req;
        fx_hook_get(h, i, &req);
        cJSON *ev = cJSON_ParseWithLength(req.body, req.body_len);
        FX_CHECK(cJSON_IsObject(ev), "not JSON: %s", req.body);
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(ev, "data");
        int s = -1, t = -1;
        for (int k = 0; k < 4; k++) {
            s = strcmp(str_at(d, "scope"), scopes[k]) == 0 ? k : s;
        }
        for (int k = 0; k < 6; k++) {
            t = strcmp(str_at(ev, "type"), types[k]) == 0 ? k : t;
        }
        FX_CHECK(s >= 0 && t >= 0, "event %s", req.body);
        seen[s][t]++;
        static const char *const fixed_ids[4] = {NULL, "g1", "cust1", "omni"};
        FX_CHECK_EQ_STR(str_at(d, "scope_id"), s == 0 ? key_id : fixed_ids[s]);
        FX_CHECK_EQ_STR(str_at(d, "org"), "omni");
        const char *id = str_at(ev, "id");
        FX_CHECK_EQ_STR(id, fx_hook_req_header(&req, "webhook-id"));
        for (size_t k = 0; k < *id_n; k++) {
            FX_CHECK(strcmp(ids[k], id) != 0, "event id %s seen twice", id);
        }
        snprintf(ids[(*id_n)++], 64, "%s", id);
        cJSON_Delete(ev);
        fx_hook_req_free(&req);
    }
    for (int s = 0; s < 4; s++) {
        for (int t = 0; t < 6; t++) {
            FX_CHECK(seen[s][t] == 1, "%s/%s seen %d times", scopes[s], types[t], seen[s][t]);
        }
    }
}

int main(void)
{
    fx_init("it_alert_scopes");
    fx_hook *h = fx_hook_start(NULL, 0);
    fx_cluster c;
    fx_opts o = {.shard_n = 3, .models = models, .model_n = 1, .start_alerter = 1};
    fx_cluster_start(&c, &o);
    char body[2048], id[64], key[128], ids[3 * PER_PERIOD][64];
    size_t id_n = 0;
    snprintf(body, sizeof(body),
             "{\"id\":\"omni\",\"name\":\"Omni\",\"limits\":" LIMITS
             ",\"customer_defaults\":{\"limits\":" LIMITS "},"
             "\"webhooks\":[{\"url\":\"http://127.0.0.1:%d/hook\"}]}",
             fx_hook_port(h));
    fx_org_create(&c, body);
    fx_group_create(&c, "omni", "{\"id\":\"g1\",\"name\":\"G1\",\"limits\":" LIMITS "}");
    fx_key_create(&c, "omni", "{\"name\":\"all\",\"group\":\"g1\",\"limits\":" LIMITS "}", id, key);

    request(&c, key);
    size_t got = fx_hook_wait(h, PER_PERIOD, DELIVERY_MS);
    FX_CHECK(got >= PER_PERIOD, "%zu of %d events", got, PER_PERIOD);
    request(&c, key); /* same period: nothing new */
    fx_sleep_ms(QUIET_MS);
    FX_CHECK_EQ_INT(fx_hook_count(h), PER_PERIOD);
    check_period(h, 0, id, ids, &id_n);
    fx_log("24 events: 6 types x 4 scopes, once each");

    char next[32];
    fx_next_month(next);
    fx_clock_advance(fx_time_parse(next) - fx_clock_now_s() + 60);
    request(&c, key);
    got = fx_hook_wait(h, 2 * PER_PERIOD, DELIVERY_MS);
    FX_CHECK(got >= 2 * PER_PERIOD, "%zu of %d events", got, 2 * PER_PERIOD);
    fx_sleep_ms(QUIET_MS);
    FX_CHECK_EQ_INT(fx_hook_count(h), 2 * PER_PERIOD);
    check_period(h, PER_PERIOD, id, ids, &id_n);
    fx_log("next month: 24 new events with new ids");
    int rc = fx_done();
    fx_hook_stop(h);
    return rc;
}
