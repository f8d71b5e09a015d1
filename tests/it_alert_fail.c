/*
 * it_alert_fail.c — integration: webhook endpoints that do not take deliveries.
 *
 * Three orgs, each with its own receiver, one alerter (retry schedule "1 1 2" s
 * from the fixture config: four attempts in all):
 *   gamma — the receiver always answers 500: the delivery ends `failed` after
 *           exactly four attempts, visible in GET /admin/v1/deliveries (with the
 *           last error) and in /metrics (3 retried, 1 failed).
 *   delta — the receiver answers 410: the endpoint is disabled after that one
 *           attempt (GET /admin/v1/endpoints), and the org's next event is recorded
 *           failed with "endpoint disabled" without any request to the receiver;
 *           POST /admin/v1/endpoints/{id}/enable then enables it again.
 *   eps   — the receiver answers 503 with `Retry-After: 3`, then 200: the second
 *           attempt waits at least the 3 s asked (the schedule alone says 1 s).
 *   theta — the receiver answers 307 with a Location pointing at another live
 *           receiver: the redirect is not followed (the other receiver sees
 *           nothing) and the delivery ends failed with "http 307".
 *
 * Spend as in it_webhook: demo-flat costs 100,000 nano-USD per completion token
 * and nothing per prompt token; 8 requests of 7 tokens = 0.0056 USD cross the
 * 0.5 warning of a 0.01 USD cap, 4 x 10 + 1 x 4 more tokens reach the cap.
 */
#include <stdio.h>
#include <string.h>
#include "fixture.h"

#define DELIVERY_MS 20000

static const fx_model models[] = {
    {"demo-flat", "0", "100", 1000},
};

/* An org with one webhook to h, and a key with a 0.01 USD cap warning at 50%. */
static void org_with_key(fx_cluster *c, const char *org, fx_hook *h, char key[128])
{
    char secret[64], id[64];
    fx_webhook_secret(secret);
    fx_org_with_hook(c, org, org, h, secret);
    fx_key_create(c, org,
                  "{\"name\":\"k\",\"limits\":[{\"metric\":\"cost\",\"window\":\"month\","
                  "\"max\":\"0.01\",\"warn_at\":[0.5]}]}",
                  id, key);
}

/* The org's deliveries (GET /admin/v1/deliveries?org=...); caller frees. */
static cJSON *deliveries(fx_cluster *c, const char *query)
{
    fx_resp r;
    long st = fx_alerter_get(c, &r, fx_fmt_("/admin/v1/deliveries?%s", query));
    FX_CHECK(st == 200, "deliveries: %ld %s", st, r.body);
    cJSON *data = cJSON_DetachItemFromObjectCaseSensitive(r.json, "data");
    FX_CHECK(cJSON_IsArray(data), "deliveries: %s", r.body);
    fx_resp_free(&r);
    return data;
}

static const char *str_at(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Poll until the org has n deliveries with status; returns them (caller frees). */
static cJSON *wait_status(fx_cluster *c, const char *org, const char *status, int n)
{
    int64_t deadline = fx_now_ms() + DELIVERY_MS;
    for (;;) {
        char q[128];
        snprintf(q, sizeof(q), "org=%s&status=%s", org, status);
        cJSON *d = deliveries(c, q);
        if (cJSON_GetArraySize(d) >= n || fx_now_ms() > deadline) {
            FX_CHECK(cJSON_GetArraySize(d) == n, "org %s: %d deliveries %s, want %d", org,
                     cJSON_GetArraySize(d), status, n);
            return d;
        }
        cJSON_Delete(d);
        fx_sleep_ms(100);
    }
}

static double metric(fx_cluster *c, const char *series)
{
    fx_resp r;
    FX_CHECK_EQ_INT(fx_alerter_get(c, &r, "/metrics"), 200);
    double v = fx_metric_value(r.body, series);
    fx_resp_free(&r);
    return v;
}

static void always_failing(fx_cluster *c, fx_hook *h)
{
    char key[128];
    org_with_key(c, "gamma", h, key);
    fx_spend(c, key, "demo-flat", 7, 8);
    cJSON *d = wait_status(c, "gamma", "failed", 1);
    const cJSON *d0 = cJSON_GetArrayItem(d, 0);
    FX_CHECK_EQ_INT(cJSON_GetObjectItemCaseSensitive(d0, "attempts")->valueint, 4);
    FX_CHECK_EQ_STR(str_at(d0, "last_error"), "http 500");
    FX_CHECK_EQ_STR(str_at(d0, "type"), "spend_cap_warning_threshold_reached");
    FX_CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(d0, "delivered_at")), "delivered_at");
    FX_CHECK(str_at(d0, "last_attempt_at") != NULL, "last_attempt_at");
    cJSON_Delete(d);
    FX_CHECK_EQ_INT(fx_hook_count(h), 4);
    FX_CHECK_EQ_INT(fx_hook_tally_get(h).ok_ids, 0);
    fx_log("always-failing endpoint: failed after 4 attempts");
}

static void gone(fx_cluster *c, fx_hook *h)
{
    char key[128];
    org_with_key(c, "delta", h, key);
    fx_spend(c, key, "demo-flat", 7, 8);
    cJSON *d = wait_status(c, "delta", "failed", 1);
    FX_CHECK_EQ_STR(str_at(cJSON_GetArrayItem(d, 0), "last_error"), "410 gone");
    FX_CHECK_EQ_INT(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(d, 0), "attempts")->valueint, 1);
    cJSON_Delete(d);
    fx_resp r;
    FX_CHECK_EQ_INT(fx_alerter_get(c, &r, "/admin/v1/endpoints"), 200);
    const cJSON *e, *found = NULL;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(r.json, "data"))
    {
        if (strcmp(str_at(e, "org"), "delta") == 0) {
            found = e;
        }
    }
    FX_CHECK(found != NULL, "no endpoint of delta in %s", r.body);
    FX_CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(found, "disabled")), "%s", r.body);
    FX_CHECK(str_at(found, "disabled_at") != NULL, "disabled_at: %s", r.body);
    fx_resp_free(&r);

    fx_spend(c, key, "demo-flat", 10, 4);
    fx_spend(c, key, "demo-flat", 4, 1); /* the cap: spend_cap_reached */
    d = wait_status(c, "delta", "failed", 2);
    const cJSON *x;
    int disabled = 0;
    cJSON_ArrayForEach(x, d)
    {
        if (strcmp(str_at(x, "type"), "spend_cap_reached") == 0) {
            FX_CHECK_EQ_STR(str_at(x, "last_error"), "endpoint disabled");
            FX_CHECK_EQ_INT(cJSON_GetObjectItemCaseSensitive(x, "attempts")->valueint, 0);
            disabled = 1;
        }
    }
    FX_CHECK(disabled, "no spend_cap_reached delivery for delta");
    cJSON_Delete(d);
    FX_CHECK_EQ_INT(fx_hook_count(h), 1); /* only the one that got the 410 */
    /* An operator enables it again. */
    char auth[128], url[256], ep_id[32] = "";
    FX_CHECK_EQ_INT(fx_alerter_get(c, &r, "/admin/v1/endpoints"), 200);
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(r.json, "data"))
    {
        if (strcmp(str_at(e, "org"), "delta") == 0) {
            snprintf(ep_id, sizeof(ep_id), "%s", str_at(e, "id"));
        }
    }
    fx_resp_free(&r);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->admin_token);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/admin/v1/endpoints/%s/enable", c->alerter_port,
             ep_id);
    const char *const hdrs[] = {auth, NULL};
    FX_CHECK_EQ_INT(fx_http(&r, "POST", url, hdrs, "", 0), 200);
    fx_resp_free(&r);
    FX_CHECK_EQ_INT(fx_alerter_get(c, &r, "/admin/v1/endpoints"), 200);
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(r.json, "data"))
    {
        if (strcmp(str_at(e, "org"), "delta") == 0) {
            FX_CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(e, "disabled")), "%s", r.body);
        }
    }
    fx_resp_free(&r);
    FX_CHECK(
        metric(c, "capgate_alerter_deliveries_total{channel=\"webhook\",outcome=\"disabled\"}") ==
            1,
        "disabled counter");
    fx_log("410: endpoint disabled, next event not attempted");
}

static void retry_after(fx_cluster *c, fx_hook *h)
{
    char key[128];
    fx_hook_set_header(h, "Retry-After", "3");
    org_with_key(c, "eps", h, key);
    fx_spend(c, key, "demo-flat", 7, 8);
    size_t got = fx_hook_wait(h, 2, DELIVERY_MS);
    FX_CHECK(got == 2, "eps: %zu attempts", got);
    fx_hook_req a, b;
    fx_hook_get(h, 0, &a);
    fx_hook_get(h, 1, &b);
    int64_t gap = b.at_ms - a.at_ms;
    FX_CHECK(gap >= 2900, "second attempt %lld ms after the first despite Retry-After: 3",
             (long long)gap);
    FX_CHECK_EQ_STR(fx_hook_req_header(&a, "webhook-id"), fx_hook_req_header(&b, "webhook-id"));
    fx_hook_req_free(&a);
    fx_hook_req_free(&b);
    cJSON *d = wait_status(c, "eps", "delivered", 1);
    cJSON_Delete(d);
    fx_log("Retry-After: 3 honoured (%lld ms)", (long long)gap);
}

static void redirect(fx_cluster *c, fx_hook *h, fx_hook *target)
{
    char key[128];
    fx_hook_set_header(h, "Location", fx_fmt_("http://127.0.0.1:%d/hook", fx_hook_port(target)));
    org_with_key(c, "theta", h, key);
    fx_spend(c, key, "demo-flat", 7, 8);
    cJSON *d = wait_status(c, "theta", "failed", 1);
    FX_CHECK_EQ_STR(str_at(cJSON_GetArrayItem(d, 0), "last_error"), "http 307");
    cJSON_Delete(d);
    FX_CHECK_EQ_INT(fx_hook_count(h), 4);
    FX_CHECK_EQ_INT(fx_hook_tally_get(target).requests, 0);
    fx_log("307 with Location: not followed, failed after 4 attempts");
}

int main(void)
{
    fx_init("it_alert_fail");
    static const int s500[] = {500}, s410[] = {410}, s503[] = {503, 200};
    fx_hook *h500 = fx_hook_start(s500, 1);
    fx_hook *h410 = fx_hook_start(s410, 1);
    fx_hook *h503 = fx_hook_start(s503, 2);
    static const int s307[] = {307};
    fx_hook *h307 = fx_hook_start(s307, 1), *hsink = fx_hook_start(NULL, 0);
    fx_cluster c;
    fx_opts o = {.shard_n = 2, .models = models, .model_n = 1, .start_alerter = 1};
    fx_cluster_start(&c, &o);

    /* The admin endpoints want the admin token. */
    fx_resp r;
    long st = fx_http(&r, "GET", fx_fmt_("http://127.0.0.1:%d/admin/v1/deliveries", c.alerter_port),
                      NULL, NULL, 0);
    FX_CHECK_EQ_INT(st, 401);
    fx_resp_free(&r);
    FX_CHECK_EQ_INT(fx_alerter_get(&c, &r, "/admin/v1/deliveries?status=nope"), 400);
    fx_resp_free(&r);
    /* limit is bounded to 1..1000: outside it (or not a number), a 400 naming limit. */
    static const char *const bad_limits[] = {"0", "1001", "-1", "x", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad_limits) / sizeof(bad_limits[0]); i++) {
        char path[96];
        snprintf(path, sizeof(path), "/admin/v1/deliveries?limit=%s", bad_limits[i]);
        FX_CHECK_EQ_INT(fx_alerter_get(&c, &r, path), 400);
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(r.json, "error");
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(err, "message");
        FX_CHECK(cJSON_IsString(msg) && strncmp(msg->valuestring, "limit", 5) == 0,
                 "limit=%s: the 400 names limit: %s", bad_limits[i], r.body);
        fx_resp_free(&r);
    }
    FX_CHECK_EQ_INT(fx_alerter_get(&c, &r, "/admin/v1/deliveries?limit=1000"), 200);
    fx_resp_free(&r);

    always_failing(&c, h500);
    gone(&c, h410);
    retry_after(&c, h503);
    redirect(&c, h307, hsink);
    FX_CHECK(
        metric(&c, "capgate_alerter_deliveries_total{channel=\"webhook\",outcome=\"failed\"}") == 3,
        "failed counter (gamma's, delta's first, theta's)");
    FX_CHECK(metric(&c, "capgate_alerter_outbox_pending") == 0, "pending gauge");
    int rc = fx_done();
    fx_hook_stop(h500);
    fx_hook_stop(h410);
    fx_hook_stop(h503);
    fx_hook_stop(h307);
    fx_hook_stop(hsink);
    return rc;
}
