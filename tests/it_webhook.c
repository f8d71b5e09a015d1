/*
 * it_webhook.c — integration: threshold events reach the org's webhook once,
 * signed, even when the alerter starts after the crossing, and are not
 * delivered again after an alerter restart.
 *
 * Model demo-flat: prompt free, 100 USD per 1M completion tokens (100,000
 * nano-USD per token), so a request's worst case equals its actual cost and
 * the key can be spent to exactly its 0.01 USD cap. With max_tokens 7 a
 * request costs 700,000: after 7 requests used = 0.0049 (< 50%), the 8th
 * crosses the 0.5 warning at used = 0.0056. Then 4 x 10 + 1 x 4 tokens spend
 * exactly the remaining 0.0044 and used reaches max: spend_cap_reached.
 *
 * The signature is verified independently of capgate's code (Standard
 * Webhooks: base64 HMAC-SHA256 over "<id>.<timestamp>.<body>", keyed with the
 * base64-decoded secret after "whsec_"), with OpenSSL directly, by the
 * fixture's fx_hook_check_signature (tests/fixture_sig.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "fixture.h"

#define TOKEN_NUSD 100000LL
#define CAP_NUSD 10000000LL
#define POLL_MS 200                   /* alert_poll_ms set by the fixture */
#define QUIET_MS (6 * POLL_MS + 1000) /* long enough to see a duplicate */
#define DELIVERY_MS 15000

static const fx_model models[] = {
    {"demo-flat", "0", "100", 1000},
};

static char secret[64]; /* "whsec_" + base64 of 24 random bytes */

static const char *str_at(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Check delivery i: POST to /hook, signed, the SPEC §7 event JSON. Writes the
 * event id into id_out. */
static void check_event(fx_hook *h, size_t i, const char *type, const char *key_id,
                        const char *used, double threshold, char id_out[128])
{
    fx_hook_req req;
    fx_hook_get(h, i, &req);
    FX_CHECK_EQ_STR(req.method, "POST");
    FX_CHECK_EQ_STR(req.path, "/hook");
    const char *ct = fx_hook_req_header(&req, "content-type");
    FX_CHECK(ct != NULL && strncmp(ct, "application/json", 16) == 0, "content-type %s",
             ct ? ct : "(none)");
    fx_hook_check_signature(&req, secret);
    cJSON *ev = cJSON_ParseWithLength(req.body, req.body_len);
    FX_CHECK(cJSON_IsObject(ev), "event body is not JSON: %s", req.body);
    const char *evid = str_at(ev, "id");
    FX_CHECK_EQ_STR(evid, fx_hook_req_header(&req, "webhook-id"));
    FX_CHECK(strncmp(evid, "evt_", 4) == 0 && strlen(evid) == 36, "event id %s", evid);
    snprintf(id_out, 128, "%s", evid);
    FX_CHECK_EQ_STR(str_at(ev, "type"), type);
    FX_CHECK(str_at(ev, "created_at") != NULL, "no created_at: %s", req.body);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(ev, "data");
    char start[32], end[32];
    fx_this_month(start);
    fx_next_month(end);
    FX_CHECK_EQ_STR(str_at(d, "org"), "acme");
    FX_CHECK_EQ_STR(str_at(d, "scope"), "key");
    FX_CHECK_EQ_STR(str_at(d, "scope_id"), key_id);
    FX_CHECK_EQ_STR(str_at(d, "metric"), "cost");
    FX_CHECK_EQ_STR(str_at(d, "window"), "month");
    FX_CHECK_EQ_STR(str_at(d, "period_start"), start);
    FX_CHECK_EQ_STR(str_at(d, "period_end"), end);
    FX_CHECK_EQ_STR(str_at(d, "max"), "0.01");
    FX_CHECK_EQ_INT(fx_usd(str_at(d, "used")), fx_usd(used));
    if (threshold > 0) {
        const cJSON *th = cJSON_GetObjectItemCaseSensitive(d, "threshold");
        FX_CHECK(cJSON_IsNumber(th) && th->valuedouble == threshold, "threshold in %s", req.body);
    }
    cJSON_Delete(ev);
    fx_hook_req_free(&req);
}

/* Wait for delivery number n (1-based), then make sure no more arrive. */
static void expect_deliveries(fx_hook *h, size_t n)
{
    size_t got = fx_hook_wait(h, n, DELIVERY_MS);
    FX_CHECK(got >= n, "only %zu of %zu webhook deliveries within %d ms", got, n, DELIVERY_MS);
    fx_sleep_ms(QUIET_MS);
    FX_CHECK_EQ_INT(fx_hook_count(h), n);
}

static void setup(fx_cluster *c, fx_hook *h, char id[64], char key[128])
{
    fx_webhook_secret(secret);
    fx_org_with_hook(c, "acme", "Acme Inc.", h, secret);
    fx_key_create(c, "acme",
                  "{\"name\":\"hooked\",\"limits\":[{\"metric\":\"cost\","
                  "\"window\":\"month\",\"max\":\"0.01\",\"warn_at\":[0.5]}]}",
                  id, key);
}

int main(void)
{
    fx_init("it_webhook");
    fx_hook *h = fx_hook_start(NULL, 0);
    fx_cluster c;
    fx_opts o = {.shard_n = 2, .models = models, .model_n = 1, .start_alerter = 0};
    fx_cluster_start(&c, &o);
    char id[64], key[128], ev1[128], ev2[128];
    setup(&c, h, id, key);

    fx_spend(&c, key, "demo-flat", 7, 8); /* 0.0056: past 50%, alerter not running */
    fx_limit l = fx_key_limit_settled(&c, id, 0, TOKEN_NUSD * 8 * 7);
    FX_CHECK_EQ_INT(l.used, TOKEN_NUSD * 8 * 7);
    FX_CHECK_EQ_INT(fx_hook_count(h), 0);
    fx_proc_start(&c, &c.alerter);
    expect_deliveries(h, 1);
    check_event(h, 0, "spend_cap_warning_threshold_reached", id, "0.0056", 0.5, ev1);
    fx_log("warning delivered once, signature verified (%s)", ev1);

    fx_spend(&c, key, "demo-flat", 10, 4);
    fx_spend(&c, key, "demo-flat", 4, 1); /* exactly the cap */
    l = fx_key_limit_settled(&c, id, 0, CAP_NUSD);
    FX_CHECK_EQ_INT(l.used, CAP_NUSD);
    fx_resp r;
    long st = fx_chat(&c, 0, &r, key,
                      "{\"model\":\"demo-flat\",\"max_tokens\":1,"
                      "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    FX_CHECK(st == 402, "over the cap: %ld %s", st, r.body);
    fx_resp_free(&r);
    expect_deliveries(h, 2);
    check_event(h, 1, "spend_cap_reached", id, "0.01", 0, ev2);
    FX_CHECK(strcmp(ev1, ev2) != 0, "two events share the id %s", ev1);
    fx_log("spend_cap_reached delivered once (%s)", ev2);

    fx_proc_stop_clean(&c.alerter);
    fx_proc_start(&c, &c.alerter);
    fx_sleep_ms(QUIET_MS);
    FX_CHECK_EQ_INT(fx_hook_count(h), 2);
    fx_log("alerter restart: nothing redelivered");
    int rc = fx_done();
    fx_hook_stop(h);
    return rc;
}
