/*
 * it_email.c — integration: alert email reaches a real SMTP server on loopback.
 *
 * The sink is tests/smtp_sink.py (Debian's python3-aiosmtpd, through
 * fixture_smtp.c), started on a free port and stopped by PID; it writes each accepted message to a
 * file. The alerter is configured with smtp_url/smtp_from/smtp_to (two
 * recipients). A key's 0.01 USD cap is crossed at 50% and then reached (spend
 * as in it_webhook: 100,000 nano-USD per completion token): each event must
 * arrive once per recipient, with the envelope, From, To, a Subject naming the
 * limit, the key and the org, a Date, a Message-ID derived from the event id
 * (the same in every copy), and a plain-text body a person can act on (used vs
 * max, the period end, what happens next). The delivery state lists the four
 * email deliveries as delivered.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fixture.h"
#include "fixture_smtp.h"

#define DELIVERY_MS 20000
#define QUIET_MS 1500

static const fx_model models[] = {
    {"demo-flat", "0", "100", 1000},
};

static fx_smtp sink;

typedef struct seen {
    char to[64];
    char msgid[128];
    char subject[256];
} seen;

/* Check messages first..first+1 are one event to both recipients; returns the subject. */
static void check_pair(size_t first, const char *key_id, const char *used, int reached,
                       const char *end)
{
    seen s[2];
    for (size_t k = 0; k < 2; k++) {
        char *m = fx_smtp_read(&sink, first + k);
        char from[128], envfrom[128], envto[128], date[128];
        fx_smtp_header(m, "X-Envelope-From", envfrom, sizeof(envfrom));
        fx_smtp_header(m, "X-Envelope-To", envto, sizeof(envto));
        fx_smtp_header(m, "From", from, sizeof(from));
        fx_smtp_header(m, "To", s[k].to, sizeof(s[k].to));
        fx_smtp_header(m, "Subject", s[k].subject, sizeof(s[k].subject));
        fx_smtp_header(m, "Message-ID", s[k].msgid, sizeof(s[k].msgid));
        fx_smtp_header(m, "Date", date, sizeof(date));
        FX_CHECK_EQ_STR(envfrom, "alerts@capgate.test");
        FX_CHECK_EQ_STR(from, "alerts@capgate.test");
        FX_CHECK_EQ_STR(envto, s[k].to);
        FX_CHECK(strcmp(s[k].to, "ops@acme.test") == 0 || strcmp(s[k].to, "cfo@acme.test") == 0,
                 "To: %s", s[k].to);
        FX_CHECK(strlen(date) > 20 && strstr(date, "+0000") != NULL, "Date: %s", date);
        FX_CHECK(strncmp(s[k].msgid, "<evt_", 5) == 0 && strstr(s[k].msgid, "@capgate>") != NULL,
                 "Message-ID: %s", s[k].msgid);
        char want[256];
        if (reached) {
            snprintf(want, sizeof(want), "[capgate] Spend cap reached: API key %s (org acme)",
                     key_id);
        } else {
            snprintf(want, sizeof(want), "[capgate] Spend cap at 50%%: API key %s (org acme)",
                     key_id);
        }
        FX_CHECK_EQ_STR(s[k].subject, want);
        const char *body = strstr(m, "\r\n\r\n");
        FX_CHECK(body != NULL, "no body in message %zu", first + k);
        snprintf(want, sizeof(want), "Used:         $%s of $0.01", used);
        FX_CHECK(strstr(body, want) != NULL, "body lacks \"%s\":\n%s", want, body);
        FX_CHECK(strstr(body, key_id) != NULL, "body lacks the key id:\n%s", body);
        FX_CHECK(strstr(body, end) != NULL, "body lacks the period end %s:\n%s", end, body);
        FX_CHECK(strstr(body, "What happens next:") != NULL, "body:\n%s", body);
        FX_CHECK(strstr(body, reached ? "are now refused with HTTP 402"
                                      : "Nothing is blocked yet") != NULL,
                 "body:\n%s", body);
        free(m);
    }
    FX_CHECK(strcmp(s[0].to, s[1].to) != 0, "both copies to %s", s[0].to);
    FX_CHECK_EQ_STR(s[0].msgid, s[1].msgid);
    fx_log("email pair: %s / %s", s[0].subject, s[0].msgid);
}

static void spend(fx_cluster *c, const char *key, int max_tokens, int times)
{
    char body[256];
    snprintf(body, sizeof(body),
             "{\"model\":\"demo-flat\",\"max_tokens\":%d,"
             "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
             max_tokens);
    for (int i = 0; i < times; i++) {
        fx_resp r;
        long st = fx_chat(c, 0, &r, key, body);
        FX_CHECK(st == 200, "spend: %ld %s %s", st, r.err, r.body);
        fx_resp_free(&r);
    }
}

int main(void)
{
    fx_init("it_email");
    int port = fx_free_port();
    fx_smtp_start(&sink, "mail", port, NULL);
    char extra[512];
    snprintf(extra, sizeof(extra),
             "smtp_url smtp://127.0.0.1:%d\nsmtp_from alerts@capgate.test\n"
             "smtp_to ops@acme.test,cfo@acme.test\nsmtp_tls off\n",
             port);
    fx_cluster c;
    fx_opts o = {
        .shard_n = 2, .models = models, .model_n = 1, .start_alerter = 1, .extra_config = extra};
    fx_cluster_start(&c, &o);
    char id[64], key[128], end[32];
    fx_org_create(&c, "{\"id\":\"acme\",\"name\":\"Acme Inc.\"}");
    fx_key_create(&c, "acme",
                  "{\"name\":\"mailed\",\"limits\":[{\"metric\":\"cost\",\"window\":\"month\","
                  "\"max\":\"0.01\",\"warn_at\":[0.5]}]}",
                  id, key);
    fx_next_month(end);

    spend(&c, key, 7, 8); /* 0.0056: the 50% warning */
    FX_CHECK(fx_smtp_wait(&sink, 2, DELIVERY_MS) == 2, "%zu of 2 warning emails",
             fx_smtp_count(&sink));
    check_pair(1, id, "0.0056", 0, end);

    spend(&c, key, 10, 4);
    spend(&c, key, 4, 1); /* exactly the cap */
    FX_CHECK(fx_smtp_wait(&sink, 4, DELIVERY_MS) == 4, "%zu of 4 emails", fx_smtp_count(&sink));
    fx_sleep_ms(QUIET_MS);
    FX_CHECK_EQ_INT(fx_smtp_count(&sink), 4); /* one per recipient per event, no more */
    check_pair(3, id, "0.01", 1, end);

    fx_resp r;
    FX_CHECK_EQ_INT(fx_alerter_get(&c, &r, "/admin/v1/deliveries?org=acme&status=delivered"), 200);
    const cJSON *d, *data = cJSON_GetObjectItemCaseSensitive(r.json, "data");
    FX_CHECK_EQ_INT(cJSON_GetArraySize(data), 4);
    cJSON_ArrayForEach(d, data)
    {
        FX_CHECK_EQ_STR(cJSON_GetObjectItemCaseSensitive(d, "channel")->valuestring, "email");
        const char *to = cJSON_GetObjectItemCaseSensitive(d, "target")->valuestring;
        FX_CHECK(strcmp(to, "ops@acme.test") == 0 || strcmp(to, "cfo@acme.test") == 0, "target %s",
                 to);
    }
    fx_resp_free(&r);
    FX_CHECK_EQ_INT(fx_alerter_get(&c, &r, "/metrics"), 200);
    FX_CHECK(fx_metric_value(r.body, "capgate_alerter_deliveries_total{channel=\"email\","
                                     "outcome=\"delivered\"}") == 4,
             "email delivered counter:\n%s", r.body);
    fx_resp_free(&r);
    int rc = fx_done();
    fx_smtp_stop(&sink);
    return rc;
}
