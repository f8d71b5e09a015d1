/*
 * it_webhook_retry.c — integration: a failing webhook endpoint is retried.
 *
 * The receiver answers 500, 503, 500, then 200. The alerter (retry schedule
 * "1 1 2" s from the fixture config: four attempts in all) must deliver the one
 * warning event four times — same webhook-id (the event id, stable across
 * retries), same body, each attempt validly signed — and stop after the 2xx:
 * exactly one successful delivery. The alerter's GET /admin/v1/deliveries then
 * shows the record delivered after 4 attempts, and /metrics counts 3 retries
 * and 1 delivery.
 *
 * Spend as in it_webhook: demo-flat costs 100,000 nano-USD per completion
 * token and nothing per prompt token; 8 requests of 7 tokens = 0.0056 USD
 * cross the 0.5 warning of a 0.01 USD cap.
 */
#include <stdio.h>
#include <string.h>
#include "fixture.h"

#define DELIVERY_MS 20000
#define QUIET_MS 3000

static const fx_model models[] = {
    {"demo-flat", "0", "100", 1000},
};

/* Attempt i carries the same event as attempt 0, freshly signed. */
static void check_attempt(fx_hook *h, size_t i, const fx_hook_req *first, const char *secret)
{
    fx_hook_req req;
    fx_hook_get(h, i, &req);
    fx_hook_check_signature(&req, secret);
    FX_CHECK_EQ_STR(fx_hook_req_header(&req, "webhook-id"),
                    fx_hook_req_header(first, "webhook-id"));
    FX_CHECK(req.body_len == first->body_len && memcmp(req.body, first->body, req.body_len) == 0,
             "attempt %zu body differs: %s", i, req.body);
    fx_log("attempt %zu after %lld ms", i + 1, (long long)(req.at_ms - first->at_ms));
    fx_hook_req_free(&req);
}

int main(void)
{
    fx_init("it_webhook_retry");
    static const int statuses[] = {500, 503, 500, 200};
    fx_hook *h = fx_hook_start(statuses, 4);
    fx_cluster c;
    fx_opts o = {.shard_n = 2, .models = models, .model_n = 1, .start_alerter = 1};
    fx_cluster_start(&c, &o);
    char secret[64], id[64], key[128];
    fx_webhook_secret(secret);
    fx_org_with_hook(&c, "beta", "Beta", h, secret);
    fx_key_create(&c, "beta",
                  "{\"name\":\"flaky\",\"limits\":[{\"metric\":\"cost\",\"window\":\"month\","
                  "\"max\":\"0.01\",\"warn_at\":[0.5]}]}",
                  id, key);
    fx_spend(&c, key, "demo-flat", 7, 8);

    size_t got = fx_hook_wait(h, 4, DELIVERY_MS);
    FX_CHECK(got >= 4, "only %zu of 4 attempts within %d ms", got, DELIVERY_MS);
    fx_sleep_ms(QUIET_MS);
    FX_CHECK_EQ_INT(fx_hook_count(h), 4); /* nothing after the 200 */
    fx_hook_tally t = fx_hook_tally_get(h);
    FX_CHECK_EQ_INT(t.ok_ids, 1);
    FX_CHECK_EQ_INT(t.ok_dup_ids, 0);
    fx_hook_req first;
    fx_hook_get(h, 0, &first);
    fx_hook_check_signature(&first, secret);
    cJSON *ev = cJSON_ParseWithLength(first.body, first.body_len);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "type");
    FX_CHECK(cJSON_IsString(type), "no type in %s", first.body);
    FX_CHECK_EQ_STR(type->valuestring, "spend_cap_warning_threshold_reached");
    cJSON_Delete(ev);
    check_attempt(h, 1, &first, secret);
    check_attempt(h, 2, &first, secret);
    check_attempt(h, 3, &first, secret);

    /* The delivery state says the same. */
    fx_resp r;
    FX_CHECK_EQ_INT(fx_alerter_get(&c, &r, "/admin/v1/deliveries?org=beta"), 200);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(r.json, "data");
    FX_CHECK(cJSON_GetArraySize(data) == 1, "deliveries: %s", r.body);
    const cJSON *d0 = cJSON_GetArrayItem(data, 0);
    FX_CHECK_EQ_STR(cJSON_GetObjectItemCaseSensitive(d0, "status")->valuestring, "delivered");
    FX_CHECK_EQ_STR(cJSON_GetObjectItemCaseSensitive(d0, "event_id")->valuestring,
                    fx_hook_req_header(&first, "webhook-id"));
    FX_CHECK_EQ_STR(cJSON_GetObjectItemCaseSensitive(d0, "channel")->valuestring, "webhook");
    FX_CHECK_EQ_INT(cJSON_GetObjectItemCaseSensitive(d0, "attempts")->valueint, 4);
    FX_CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(d0, "delivered_at")),
             "delivered_at: %s", r.body);
    fx_resp_free(&r);
    FX_CHECK_EQ_INT(fx_alerter_get(&c, &r, "/metrics"), 200);
    FX_CHECK_EQ_INT(fx_metric_value(r.body, "capgate_alerter_deliveries_total{channel=\"webhook\","
                                            "outcome=\"retried\"}"),
                    3);
    FX_CHECK_EQ_INT(fx_metric_value(r.body, "capgate_alerter_deliveries_total{channel=\"webhook\","
                                            "outcome=\"delivered\"}"),
                    1);
    fx_resp_free(&r);
    fx_hook_req_free(&first);
    int rc = fx_done();
    fx_hook_stop(h);
    return rc;
}
