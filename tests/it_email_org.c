/*
 * it_email_org.c — integration: an org's own alert email addresses (`emails` in the
 * admin API) receive its alerts, next to the operator-wide smtp_to, over a real SMTP
 * server on loopback (tests/smtp_sink.py through fixture_smtp.c).
 *
 * smtp_to names one operator address. Org "acme" has two emails, one of them the
 * operator address in other case (sent once, not twice); org "gamma" has none; org
 * "beta" has its own. A 50% warning in each org must reach exactly: acme → operator +
 * finance@acme; gamma → operator only; beta → operator + billing@beta. Every copy of
 * one event carries the same Message-ID and names its org in the Subject, and no
 * org's address ever gets another org's alert. The delivery state lists acme's two.
 * Then acme's list is PATCHed: once the alerter's cached copy is stale, acme's next
 * event (the cap reached) goes to the new address and no longer to the old one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "fixture.h"
#include "fixture_smtp.h"

#define DELIVERY_MS 20000
#define QUIET_MS 1500
#define OPS "ops@capgate.test"
/* The alerter caches an org ALERTER_ORG_CACHE_MS (5 s, alerter_limits.h); a changed email
 * list applies once that copy is stale. There is nothing to poll for: wait it out. */
#define ORG_CACHE_WAIT_MS 5500

static const fx_model models[] = {
    {"demo-flat", "0", "100", 1000},
};

static fx_smtp sink;

/*
 * Messages first..first+n-1 are one event of org to exactly the recipients want[0..n)
 * (any order), each once, all with one Message-ID.
 */
static void check_event(size_t first, size_t n, const char *org, const char *const *want)
{
    char msgid0[128] = "", subj_org[96];
    int got[4] = {0};
    snprintf(subj_org, sizeof(subj_org), "(org %s)", org);
    for (size_t k = 0; k < n; k++) {
        char *m = fx_smtp_read(&sink, first + k);
        char envto[300], to[300], subject[256], msgid[128];
        fx_smtp_header(m, "X-Envelope-To", envto, sizeof(envto));
        fx_smtp_header(m, "To", to, sizeof(to));
        fx_smtp_header(m, "Subject", subject, sizeof(subject));
        fx_smtp_header(m, "Message-ID", msgid, sizeof(msgid));
        FX_CHECK_EQ_STR(envto, to);
        FX_CHECK(strstr(subject, subj_org) != NULL, "message %zu for %s: Subject %s", first + k,
                 org, subject);
        FX_CHECK(strncmp(msgid, "<evt_", 5) == 0, "Message-ID: %s", msgid);
        if (k == 0) {
            snprintf(msgid0, sizeof(msgid0), "%s", msgid);
        }
        FX_CHECK_EQ_STR(msgid, msgid0);
        int hit = 0;
        for (size_t i = 0; i < n; i++) {
            if (strcasecmp(to, want[i]) == 0) {
                got[i]++;
                hit = 1;
            }
        }
        FX_CHECK(hit, "org %s: unexpected recipient %s", org, to);
        free(m);
    }
    for (size_t i = 0; i < n; i++) {
        FX_CHECK(got[i] == 1, "org %s: %s got %d copies", org, want[i], got[i]);
    }
    fx_log("org %s: %zu recipients, %s", org, n, msgid0);
}

/* A key of org capped at 0.01 USD with a 50% warning, spent to 56%: one warning event.
 * The key goes to key[128]. */
static void warn_org(fx_cluster *c, const char *org, char *key)
{
    char id[64];
    fx_key_create(c, org,
                  "{\"name\":\"mailed\",\"limits\":[{\"metric\":\"cost\",\"window\":\"month\","
                  "\"max\":\"0.01\",\"warn_at\":[0.5]}]}",
                  id, key);
    fx_spend(c, key, "demo-flat", 7, 8); /* 8 x 7 tokens x 100,000 nano-USD = 0.0056 */
}

/* Wait for exactly total messages: they come, and no more follow. */
static void expect_total(size_t total)
{
    FX_CHECK(fx_smtp_wait(&sink, total, DELIVERY_MS) >= total, "%zu of %zu emails",
             fx_smtp_count(&sink), total);
    fx_sleep_ms(QUIET_MS);
    FX_CHECK_EQ_INT(fx_smtp_count(&sink), total);
}

int main(void)
{
    fx_init("it_email_org");
    int port = fx_free_port();
    fx_smtp_start(&sink, "mail", port, NULL);
    char extra[512];
    snprintf(extra, sizeof(extra),
             "smtp_url smtp://127.0.0.1:%d\nsmtp_from alerts@capgate.test\nsmtp_to " OPS
             "\nsmtp_tls off\n",
             port);
    fx_cluster c;
    fx_opts o = {
        .shard_n = 2, .models = models, .model_n = 1, .start_alerter = 1, .extra_config = extra};
    fx_cluster_start(&c, &o);

    fx_org_create(&c, "{\"id\":\"acme\",\"emails\":[\"finance@acme.test\",\"OPS@capgate.test\"]}");
    fx_org_create(&c, "{\"id\":\"gamma\"}");
    fx_org_create(&c, "{\"id\":\"beta\",\"emails\":[\"billing@beta.test\"]}");
    fx_resp r;
    FX_CHECK_EQ_INT(fx_admin(&c, &r, "GET", "/admin/v1/orgs/acme", NULL), 200);
    const cJSON *em = cJSON_GetObjectItemCaseSensitive(r.json, "emails");
    FX_CHECK(cJSON_GetArraySize(em) == 2 &&
                 strcmp(cJSON_GetArrayItem(em, 0)->valuestring, "finance@acme.test") == 0,
             "acme emails: %s", r.body);
    fx_resp_free(&r);

    static const char *const to_acme[] = {OPS, "finance@acme.test"};
    static const char *const to_gamma[] = {OPS};
    static const char *const to_beta[] = {OPS, "billing@beta.test"};
    char key_acme[128], key[128];
    warn_org(&c, "acme", key_acme);
    expect_total(2); /* OPS@capgate.test is smtp_to's address: one copy */
    check_event(1, 2, "acme", to_acme);
    warn_org(&c, "gamma", key);
    expect_total(3);
    check_event(3, 1, "gamma", to_gamma);
    warn_org(&c, "beta", key);
    expect_total(5);
    check_event(4, 2, "beta", to_beta);

    FX_CHECK_EQ_INT(fx_alerter_get(&c, &r, "/admin/v1/deliveries?org=acme&status=delivered"), 200);
    const cJSON *d, *data = cJSON_GetObjectItemCaseSensitive(r.json, "data");
    FX_CHECK_EQ_INT(cJSON_GetArraySize(data), 2);
    int finance = 0;
    cJSON_ArrayForEach(d, data)
    {
        FX_CHECK_EQ_STR(cJSON_GetObjectItemCaseSensitive(d, "channel")->valuestring, "email");
        const char *to = cJSON_GetObjectItemCaseSensitive(d, "target")->valuestring;
        finance += strcmp(to, "finance@acme.test") == 0;
        FX_CHECK(strcmp(to, OPS) == 0 || strcmp(to, "finance@acme.test") == 0, "target %s", to);
    }
    FX_CHECK_EQ_INT(finance, 1);
    fx_resp_free(&r);

    /* A new list reaches the alerter: the cap reached goes to billing@acme, not finance@. */
    FX_CHECK_EQ_INT(
        fx_admin(&c, &r, "PATCH", "/admin/v1/orgs/acme", "{\"emails\":[\"billing@acme.test\"]}"),
        200);
    fx_resp_free(&r);
    fx_sleep_ms(ORG_CACHE_WAIT_MS);
    static const char *const to_acme2[] = {OPS, "billing@acme.test"};
    fx_spend(&c, key_acme, "demo-flat", 10, 4);
    fx_spend(&c, key_acme, "demo-flat", 4, 1); /* exactly the 0.01 cap */
    expect_total(7);
    check_event(6, 2, "acme", to_acme2);
    int rc = fx_done();
    fx_smtp_stop(&sink);
    return rc;
}
