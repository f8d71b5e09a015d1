/*
 * it_email_tls.c — integration: alert email over STARTTLS with SMTP AUTH, over
 * implicit TLS (smtps://), and no plain-text fallback when STARTTLS is required.
 *
 * A self-signed certificate for 127.0.0.1 is made with the openssl tool in the
 * scratch directory; the alerter trusts it through smtp_ca_file. Three sinks
 * (tests/smtp_sink.py through fixture_smtp.c):
 *   A: STARTTLS required and AUTH required (user "alerts", password read by the
 *      alerter from a file: `smtp_password file:...`);
 *   B: implicit TLS;
 *   C: plain SMTP without STARTTLS.
 * Three keys cross a 50% warning, each while the alerter points at one sink
 * (restarted with CAPGATE_SMTP_* overrides): A must receive its email over
 * STARTTLS, authenticated; B over implicit TLS; C nothing, the delivery ends
 * failed with an SMTP error because `smtp_tls starttls` refuses to send in the
 * clear. The password never appears in the alerter's log.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fixture.h"
#include "fixture_smtp.h"

#define DELIVERY_MS 20000
#define PASSWORD "s3cret-Pw-4-smtp"

static const fx_model models[] = {
    {"demo-flat", "0", "100", 1000},
};

static fx_cluster c;

/* A key with a 0.01 USD cap crossing 50% (8 x 7 tokens x 100,000 nano-USD). */
static void cross(const char *name)
{
    char id[64], key[128];
    fx_key_create(&c, "acme",
                  fx_fmt_("{\"name\":\"%s\",\"limits\":[{\"metric\":\"cost\",\"window\":\"month\","
                          "\"max\":\"0.01\",\"warn_at\":[0.5]}]}",
                          name),
                  id, key);
    for (int i = 0; i < 8; i++) {
        fx_resp r;
        long st = fx_chat(&c, 0, &r, key,
                          "{\"model\":\"demo-flat\",\"max_tokens\":7,"
                          "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
        FX_CHECK(st == 200, "spend: %ld %s", st, r.body);
        fx_resp_free(&r);
    }
}

static void expect_one(const fx_smtp *s, const char *tls, const char *auth)
{
    FX_CHECK(fx_smtp_wait(s, 1, DELIVERY_MS) == 1, "no email at the sink on %d", s->port);
    char *m = fx_smtp_read(s, 1);
    char v[128];
    fx_smtp_header(m, "X-Sink-TLS", v, sizeof(v));
    FX_CHECK_EQ_STR(v, tls);
    fx_smtp_header(m, "X-Sink-Auth", v, sizeof(v));
    FX_CHECK_EQ_STR(v, auth);
    fx_smtp_header(m, "Subject", v, sizeof(v));
    FX_CHECK(strncmp(v, "[capgate] Spend cap at 50%", 26) == 0, "Subject: %s", v);
    free(m);
}

static void point_alerter_at(const fx_smtp *s, const char *scheme, const char *tls)
{
    fx_proc_stop_clean(&c.alerter);
    fx_proc_setenv(&c.alerter, "CAPGATE_SMTP_URL", fx_fmt_("%s://127.0.0.1:%d", scheme, s->port));
    fx_proc_setenv(&c.alerter, "CAPGATE_SMTP_TLS", tls);
    fx_proc_start(&c, &c.alerter);
}

int main(void)
{
    fx_init("it_email_tls");
    char cert[600], keyf[600], pwf[600], cmd[2048];
    snprintf(cert, sizeof(cert), "%s/cert.pem", fx_dir());
    snprintf(keyf, sizeof(keyf), "%s/key.pem", fx_dir());
    snprintf(pwf, sizeof(pwf), "%s/smtp_password", fx_dir());
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout '%s' -out '%s' -days 2 "
             "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1",
             keyf, cert);
    FX_CHECK(system(cmd) == 0, "openssl req failed");
    FILE *f = fopen(pwf, "w");
    FX_CHECK(f != NULL && fputs(PASSWORD "\n", f) >= 0 && fclose(f) == 0, "write %s", pwf);

    fx_smtp a, b, p;
    const char *const a_opts[] = {"--starttls", cert, keyf, "--auth", "alerts:" PASSWORD, NULL};
    const char *const b_opts[] = {"--implicit", cert, keyf, NULL};
    fx_smtp_start(&a, "sink_starttls", fx_free_port(), a_opts);
    fx_smtp_start(&b, "sink_implicit", fx_free_port(), b_opts);
    fx_smtp_start(&p, "sink_plain", fx_free_port(), NULL);

    char extra[2048];
    snprintf(extra, sizeof(extra),
             "smtp_url smtp://127.0.0.1:%d\nsmtp_tls starttls\nsmtp_ca_file %s\n"
             "smtp_from alerts@capgate.test\nsmtp_to ops@acme.test\n"
             "smtp_user alerts\nsmtp_password file:%s\n",
             a.port, cert, pwf);
    fx_opts o = {
        .shard_n = 2, .models = models, .model_n = 1, .start_alerter = 1, .extra_config = extra};
    fx_cluster_start(&c, &o);
    fx_org_create(&c, "{\"id\":\"acme\",\"name\":\"Acme Inc.\"}");

    cross("starttls");
    expect_one(&a, "starttls", "alerts");
    fx_log("STARTTLS + AUTH: delivered");

    point_alerter_at(&b, "smtps", "implicit");
    cross("implicit");
    expect_one(&b, "implicit", "none");
    FX_CHECK_EQ_INT(fx_smtp_count(&a), 1);
    fx_log("implicit TLS: delivered");

    point_alerter_at(&p, "smtp", "starttls");
    cross("plain");
    int64_t deadline = fx_now_ms() + DELIVERY_MS;
    cJSON *d0 = NULL;
    for (;;) {
        fx_resp r;
        FX_CHECK_EQ_INT(fx_alerter_get(&c, &r, "/admin/v1/deliveries?org=acme&status=failed"), 200);
        cJSON *data = cJSON_GetObjectItemCaseSensitive(r.json, "data");
        if (cJSON_GetArraySize(data) == 1) {
            d0 = cJSON_Duplicate(cJSON_GetArrayItem(data, 0), 1);
        }
        fx_resp_free(&r);
        if (d0 != NULL) {
            break;
        }
        FX_CHECK(fx_now_ms() < deadline, "the delivery via the plain sink never failed");
        fx_sleep_ms(100);
    }
    const char *err = cJSON_GetObjectItemCaseSensitive(d0, "last_error")->valuestring;
    FX_CHECK(strncmp(err, "smtp ", 5) == 0, "last_error %s", err);
    FX_CHECK_EQ_INT(fx_smtp_count(&p), 0);
    fx_log("STARTTLS required, plain server: not sent (%s)", err);
    cJSON_Delete(d0);

    /* The password never reaches the log. */
    char log[700];
    snprintf(log, sizeof(log), "%s", c.alerter.log_path);
    f = fopen(log, "r");
    FX_CHECK(f != NULL, "open %s", log);
    char line[8192];
    while (fgets(line, sizeof(line), f) != NULL) {
        FX_CHECK(strstr(line, PASSWORD) == NULL, "password in the alerter log: %s", line);
    }
    fclose(f);
    int rc = fx_done();
    fx_smtp_stop(&a);
    fx_smtp_stop(&b);
    fx_smtp_stop(&p);
    return rc;
}
