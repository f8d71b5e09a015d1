/*
 * it_alert_ssrf.c — integration: with `alert_allow_private off` the alerter
 * never connects to a private, loopback or link-local address, whatever the
 * URL says, because the guard checks the address actually being connected
 * (CURLOPT_OPENSOCKETFUNCTION, after DNS), not the URL's text.
 *
 * One org, five webhooks (http is allowed, private addresses are not):
 *   http://127.0.0.1:P/hook          loopback (a live receiver listens there)
 *   http://10.20.30.40:P/hook        private
 *   http://169.254.169.254/latest    link-local (cloud metadata)
 *   http://[::ffff:127.0.0.1]:P/hook IPv4-mapped IPv6 of loopback
 *   http://localhost:P/hook          a name that resolves (via /etc/hosts) to loopback
 * One threshold event: every delivery must end `failed` after the schedule with
 * "address refused: <reason>", and the receiver on 127.0.0.1:P must see nothing.
 * No outside network is used: refused addresses are never connected to.
 * Then, with `alert_allow_http off` too, an http:// webhook is not attempted at
 * all: its delivery fails at once with "url not allowed: https only".
 */
#include <stdio.h>
#include <string.h>
#include "fixture.h"

#define DELIVERY_MS 20000

static const fx_model models[] = {
    {"demo-flat", "0", "100", 1000},
};

typedef struct target {
    const char *fmt; /* URL, %d = receiver port (if used) */
    const char *why; /* expected last_error */
    char url[128];
} target;

int main(void)
{
    fx_init("it_alert_ssrf");
    fx_hook *h = fx_hook_start(NULL, 0);
    fx_cluster c;
    fx_opts o = {.shard_n = 2, .models = models, .model_n = 1, .start_alerter = 0};
    fx_cluster_prepare(&c, &o);
    fx_proc_setenv(&c.alerter, "CAPGATE_ALERT_ALLOW_PRIVATE", "off");
    fx_cluster_launch(&c);
    fx_proc_start(&c, &c.alerter);

    target t[] = {
        {"http://127.0.0.1:%d/hook", "address refused: loopback", ""},
        {"http://10.20.30.40:%d/hook", "address refused: private", ""},
        {"http://169.254.169.254/latest", "address refused: link-local", ""},
        {"http://[::ffff:127.0.0.1]:%d/hook", "address refused: loopback", ""},
        {"http://localhost:%d/hook", "address refused: loopback", ""},
    };
    const size_t n = sizeof(t) / sizeof(t[0]);
    char secret[64], body[2048], id[64], key[128];
    fx_webhook_secret(secret);
    int off = snprintf(body, sizeof(body), "{\"id\":\"zeta\",\"name\":\"Zeta\",\"webhooks\":[");
    for (size_t i = 0; i < n; i++) {
        snprintf(t[i].url, sizeof(t[i].url), t[i].fmt, fx_hook_port(h));
        off += snprintf(body + off, sizeof(body) - (size_t)off,
                        "%s{\"url\":\"%s\",\"secret\":\"%s\"}", i > 0 ? "," : "", t[i].url, secret);
    }
    snprintf(body + off, sizeof(body) - (size_t)off, "]}");
    fx_org_create(&c, body);
    fx_key_create(&c, "zeta",
                  "{\"name\":\"k\",\"limits\":[{\"metric\":\"requests\",\"window\":\"month\","
                  "\"max\":2,\"warn_at\":[0.5]}]}",
                  id, key);
    fx_resp r;
    long st = fx_chat(&c, 0, &r, key,
                      "{\"model\":\"demo-flat\",\"max_tokens\":1,"
                      "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    FX_CHECK(st == 200, "request: %ld %s", st, r.body);
    fx_resp_free(&r);

    /* Every delivery ends failed after the schedule (four attempts). */
    int64_t deadline = fx_now_ms() + DELIVERY_MS;
    cJSON *data = NULL;
    for (;;) {
        st = fx_alerter_get(&c, &r, "/admin/v1/deliveries?org=zeta&status=failed");
        FX_CHECK(st == 200, "deliveries: %ld", st);
        data = cJSON_DetachItemFromObjectCaseSensitive(r.json, "data");
        fx_resp_free(&r);
        if ((size_t)cJSON_GetArraySize(data) >= n || fx_now_ms() > deadline) {
            break;
        }
        cJSON_Delete(data);
        fx_sleep_ms(100);
    }
    FX_CHECK_EQ_INT(cJSON_GetArraySize(data), n);
    for (size_t i = 0; i < n; i++) {
        const cJSON *d, *found = NULL;
        cJSON_ArrayForEach(d, data)
        {
            if (strcmp(cJSON_GetObjectItemCaseSensitive(d, "target")->valuestring, t[i].url) == 0) {
                found = d;
            }
        }
        FX_CHECK(found != NULL, "no delivery to %s", t[i].url);
        FX_CHECK_EQ_STR(cJSON_GetObjectItemCaseSensitive(found, "last_error")->valuestring,
                        t[i].why);
        FX_CHECK_EQ_INT(cJSON_GetObjectItemCaseSensitive(found, "attempts")->valueint, 4);
        fx_log("%s: %s", t[i].url, t[i].why);
    }
    cJSON_Delete(data);
    FX_CHECK_EQ_INT(fx_hook_tally_get(h).requests, 0);

    fx_proc_stop_clean(&c.alerter);
    fx_proc_setenv(&c.alerter, "CAPGATE_ALERT_ALLOW_HTTP", "off");
    fx_proc_start(&c, &c.alerter);
    fx_org_with_hook(&c, "eta", "Eta", h, secret);
    fx_key_create(&c, "eta",
                  "{\"name\":\"k\",\"limits\":[{\"metric\":\"requests\",\"window\":\"month\","
                  "\"max\":2,\"warn_at\":[0.5]}]}",
                  id, key);
    st = fx_chat(&c, 0, &r, key,
                 "{\"model\":\"demo-flat\",\"max_tokens\":1,"
                 "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    FX_CHECK(st == 200, "request: %ld %s", st, r.body);
    fx_resp_free(&r);
    deadline = fx_now_ms() + DELIVERY_MS;
    for (;;) {
        st = fx_alerter_get(&c, &r, "/admin/v1/deliveries?org=eta&status=failed");
        FX_CHECK(st == 200, "deliveries: %ld", st);
        data = cJSON_DetachItemFromObjectCaseSensitive(r.json, "data");
        fx_resp_free(&r);
        if (cJSON_GetArraySize(data) >= 1 || fx_now_ms() > deadline) {
            break;
        }
        cJSON_Delete(data);
        fx_sleep_ms(100);
    }
    FX_CHECK_EQ_INT(cJSON_GetArraySize(data), 1);
    const cJSON *d0 = cJSON_GetArrayItem(data, 0);
    FX_CHECK_EQ_STR(cJSON_GetObjectItemCaseSensitive(d0, "last_error")->valuestring,
                    "url not allowed: https only");
    FX_CHECK_EQ_INT(cJSON_GetObjectItemCaseSensitive(d0, "attempts")->valueint, 1);
    cJSON_Delete(data);
    FX_CHECK_EQ_INT(fx_hook_tally_get(h).requests, 0);
    fx_log("alert_allow_http off: http:// webhook failed without a request");
    int rc = fx_done();
    fx_hook_stop(h);
    return rc;
}
