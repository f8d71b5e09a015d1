/*
 * webhook_test.c — payload JSON, Standard Webhooks signing, base64, URL policy,
 * SSRF classifier and the retry schedule (alerter_webhook.h).
 *
 * Signatures are checked against values computed here independently with
 * OpenSSL's one-shot HMAC() from the documented scheme, and against the published
 * Standard Webhooks test vector.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "alerter_limits.h"
#include "alerter_webhook.h"
#include "cg_test.h"

/* ---- signing ------------------------------------------------------------------------- */

/* The scheme written out independently: HMAC-SHA256 over "id.ts.body" with the
 * base64-decoded key, "v1," + base64. */
static void expected_sig(const char *key_b64, const char *id, const char *ts, const char *body,
                         char *out)
{
    unsigned char key[128], mac[32], msg[1024];
    int klen = EVP_DecodeBlock(key, (const unsigned char *)key_b64, (int)strlen(key_b64));
    size_t pad = 0;
    for (size_t n = strlen(key_b64); n > 0 && key_b64[n - 1] == '='; n--) {
        pad++;
    }
    int mlen = snprintf((char *)msg, sizeof msg, "%s.%s.%s", id, ts, body);
    unsigned int maclen = 0;
    HMAC(EVP_sha256(), key, klen - (int)pad, msg, (size_t)mlen, mac, &maclen);
    memcpy(out, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)maclen);
}

CG_TEST(sign_matches_independent_hmac)
{
    const char *secrets[] = {"c2VjcmV0LWtleS1mb3ItdGVzdGluZy0xMjM0NTY=", /* padded */
                             "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g"};
    const char *body = "{\"id\":\"evt_0123\",\"type\":\"spend_cap_reached\"}";
    for (size_t i = 0; i < 2; i++) {
        char want[ALERTER_SIG_MAX], got[ALERTER_SIG_MAX], prefixed[160];
        expected_sig(secrets[i], "evt_0123", "1700000000", body, want);
        snprintf(prefixed, sizeof prefixed, "whsec_%s", secrets[i]);
        CG_CHECK_EQ_INT(
            alerter_sign(prefixed, "evt_0123", 1700000000, body, strlen(body), got, sizeof got),
            CG_ERR_OK);
        CG_CHECK_EQ_STR(got, want);
        /* The prefix is optional, as in the reference libraries. */
        CG_CHECK_EQ_INT(
            alerter_sign(secrets[i], "evt_0123", 1700000000, body, strlen(body), got, sizeof got),
            CG_ERR_OK);
        CG_CHECK_EQ_STR(got, want);
    }
}

CG_TEST(sign_standard_webhooks_vector)
{
    /* The test vector published with the Standard Webhooks reference libraries. */
    const char *body = "{\"test\": 2432232314}";
    char got[ALERTER_SIG_MAX];
    CG_CHECK_EQ_INT(alerter_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                 "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, strlen(body),
                                 got, sizeof got),
                    CG_ERR_OK);
    CG_CHECK_EQ_STR(got, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

CG_TEST(sign_refuses_bad_secrets)
{
    char got[ALERTER_SIG_MAX];
    CG_CHECK_EQ_INT(alerter_sign("whsec_not base64!", "e", 1, "x", 1, got, sizeof got),
                    CG_ERR_INVAL);
    CG_CHECK_EQ_INT(alerter_sign("whsec_", "e", 1, "x", 1, got, sizeof got), CG_ERR_INVAL);
    CG_CHECK_EQ_INT(alerter_sign("whsec_QQ", "e", 1, "x", 1, got, 10), CG_ERR_TOOBIG);
}

CG_TEST(b64_decode_strict)
{
    uint8_t out[16];
    size_t n = 0;
    CG_CHECK_EQ_INT(alerter_b64_decode("aGVsbG8=", 8, out, sizeof out, &n), CG_ERR_OK);
    CG_CHECK_EQ_INT(n, 5);
    CG_CHECK(memcmp(out, "hello", 5) == 0);
    CG_CHECK_EQ_INT(alerter_b64_decode("aGVsbG8", 7, out, sizeof out, &n), CG_ERR_OK);
    CG_CHECK_EQ_INT(n, 5);
    CG_CHECK_EQ_INT(alerter_b64_decode("", 0, out, sizeof out, &n), CG_ERR_OK);
    CG_CHECK_EQ_INT(n, 0);
    CG_CHECK_EQ_INT(alerter_b64_decode("aGVsbG8==", 9, out, sizeof out, &n), CG_ERR_PARSE);
    CG_CHECK_EQ_INT(alerter_b64_decode("aGV=bG8=", 8, out, sizeof out, &n), CG_ERR_PARSE);
    CG_CHECK_EQ_INT(alerter_b64_decode("a", 1, out, sizeof out, &n), CG_ERR_PARSE);
    CG_CHECK_EQ_INT(alerter_b64_decode("aGVsbG9", 7, out, sizeof out, &n), CG_ERR_PARSE);
    CG_CHECK_EQ_INT(alerter_b64_decode("aGVsbG8=", 8, out, 4, &n), CG_ERR_TOOBIG);
}

/* ---- payload ------------------------------------------------------------------------- */

static proto_event cost_event(void)
{
    proto_event e;
    memset(&e, 0, sizeof e);
    e.seq = 7;
    snprintf(e.id, sizeof e.id, "evt_0123456789abcdef0123456789abcdef");
    e.type = PROTO_EVT_SPEND_WARNING;
    e.created_ms = 1795255445000LL; /* 2026-11-21T10:04:05Z */
    snprintf(e.org, sizeof e.org, "acme");
    e.scope = PROTO_SCOPE_ORG;
    snprintf(e.scope_id, sizeof e.scope_id, "acme");
    e.limit_id = 1;
    e.metric = PROTO_METRIC_COST;
    e.window.kind = CG_WIN_MONTH;
    e.period_start_ms = 1793491200000LL; /* 2026-11-01T00:00:00Z */
    e.period_end_ms = 1796083200000LL;   /* 2026-12-01T00:00:00Z */
    e.threshold_bp = 8000;
    e.max = 1000LL * 1000000000LL;
    e.used = 801200000000LL; /* 801.20 USD */
    return e;
}

static cJSON *build_parse(const proto_event *e)
{
    char buf[ALERTER_BODY_MAX];
    size_t len = 0;
    if (alerter_payload_build(e, buf, sizeof buf, &len) != CG_ERR_OK || len != strlen(buf)) {
        return NULL;
    }
    return cJSON_Parse(buf);
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

CG_TEST(payload_cost_event)
{
    proto_event e = cost_event();
    cJSON *j = build_parse(&e);
    CG_CHECK(j != NULL);
    CG_CHECK_EQ_STR(jstr(j, "id"), "evt_0123456789abcdef0123456789abcdef");
    CG_CHECK_EQ_STR(jstr(j, "type"), "spend_cap_warning_threshold_reached");
    CG_CHECK_EQ_STR(jstr(j, "created_at"), "2026-11-21T10:04:05Z");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "data");
    CG_CHECK(cJSON_IsObject(d));
    CG_CHECK_EQ_STR(jstr(d, "org"), "acme");
    CG_CHECK_EQ_STR(jstr(d, "scope"), "org");
    CG_CHECK_EQ_STR(jstr(d, "scope_id"), "acme");
    CG_CHECK_EQ_STR(jstr(d, "metric"), "cost");
    CG_CHECK_EQ_STR(jstr(d, "window"), "month");
    CG_CHECK_EQ_STR(jstr(d, "period_start"), "2026-11-01T00:00:00Z");
    CG_CHECK_EQ_STR(jstr(d, "period_end"), "2026-12-01T00:00:00Z");
    const cJSON *thr = cJSON_GetObjectItemCaseSensitive(d, "threshold");
    CG_CHECK(cJSON_IsNumber(thr) && thr->valuedouble == 0.8);
    CG_CHECK_EQ_STR(jstr(d, "max"), "1000.00");
    CG_CHECK_EQ_STR(jstr(d, "used"), "801.20");
    CG_CHECK_EQ_INT(cJSON_GetArraySize(j), 4);
    CG_CHECK_EQ_INT(cJSON_GetArraySize(d), 10);
    cJSON_Delete(j);
}

CG_TEST(payload_exact_bytes)
{
    proto_event e = cost_event();
    char buf[ALERTER_BODY_MAX];
    size_t len = 0;
    CG_CHECK_EQ_INT(alerter_payload_build(&e, buf, sizeof buf, &len), CG_ERR_OK);
    CG_CHECK_EQ_STR(buf, "{\"id\":\"evt_0123456789abcdef0123456789abcdef\","
                         "\"type\":\"spend_cap_warning_threshold_reached\","
                         "\"created_at\":\"2026-11-21T10:04:05Z\",\"data\":{\"org\":\"acme\","
                         "\"scope\":\"org\",\"scope_id\":\"acme\",\"metric\":\"cost\","
                         "\"window\":\"month\",\"period_start\":\"2026-11-01T00:00:00Z\","
                         "\"period_end\":\"2026-12-01T00:00:00Z\",\"threshold\":0.8,"
                         "\"max\":\"1000.00\",\"used\":\"801.20\"}}");
    /* Small cents and sub-cent amounts keep their digits. */
    e.max = 10000000;  /* 0.01 */
    e.used = 12345000; /* 0.012345 */
    cJSON *j = build_parse(&e);
    CG_CHECK(j != NULL);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "data");
    CG_CHECK_EQ_STR(jstr(d, "max"), "0.01");
    CG_CHECK_EQ_STR(jstr(d, "used"), "0.012345");
    cJSON_Delete(j);
}

CG_TEST(payload_token_event_lifetime)
{
    proto_event e = cost_event();
    e.type = PROTO_EVT_TOKEN_REACHED;
    e.metric = PROTO_METRIC_TOKENS;
    e.scope = PROTO_SCOPE_KEY;
    snprintf(e.scope_id, sizeof e.scope_id, "k_8f3a");
    e.window.kind = CG_WIN_LIFETIME;
    e.period_start_ms = 0;
    e.period_end_ms = 0;
    e.threshold_bp = 10000;
    e.max = 5000000000LL; /* beyond 32 bits: printed exactly */
    e.used = 5000000123LL;
    cJSON *j = build_parse(&e);
    CG_CHECK(j != NULL);
    CG_CHECK_EQ_STR(jstr(j, "type"), "token_quota_reached");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "data");
    CG_CHECK_EQ_STR(jstr(d, "scope"), "key");
    CG_CHECK_EQ_STR(jstr(d, "scope_id"), "k_8f3a");
    CG_CHECK_EQ_STR(jstr(d, "metric"), "tokens");
    CG_CHECK_EQ_STR(jstr(d, "window"), "lifetime");
    CG_CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(d, "period_end")));
    const cJSON *thr = cJSON_GetObjectItemCaseSensitive(d, "threshold");
    CG_CHECK(cJSON_IsNumber(thr) && thr->valuedouble == 1.0);
    const cJSON *max = cJSON_GetObjectItemCaseSensitive(d, "max");
    const cJSON *used = cJSON_GetObjectItemCaseSensitive(d, "used");
    CG_CHECK(cJSON_IsNumber(max) && max->valuedouble == 5000000000.0);
    CG_CHECK(cJSON_IsNumber(used) && used->valuedouble == 5000000123.0);
    cJSON_Delete(j);
    char buf[ALERTER_BODY_MAX];
    size_t len = 0;
    CG_CHECK_EQ_INT(alerter_payload_build(&e, buf, sizeof buf, &len), CG_ERR_OK);
    CG_CHECK(strstr(buf, "\"threshold\":1,\"max\":5000000000,\"used\":5000000123}") != NULL);
}

CG_TEST(payload_requests_and_escaping)
{
    proto_event e = cost_event();
    e.type = PROTO_EVT_REQUEST_WARNING;
    e.metric = PROTO_METRIC_REQUESTS;
    e.scope = PROTO_SCOPE_CUSTOMER;
    snprintf(e.scope_id, sizeof e.scope_id, "cu\"st\\42\n");
    e.window.kind = CG_WIN_DAY;
    e.threshold_bp = 125;
    e.max = 60;
    e.used = 1;
    cJSON *j = build_parse(&e);
    CG_CHECK(j != NULL);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "data");
    CG_CHECK_EQ_STR(jstr(d, "scope_id"), "cu\"st\\42\n");
    CG_CHECK_EQ_STR(jstr(d, "window"), "day");
    const cJSON *thr = cJSON_GetObjectItemCaseSensitive(d, "threshold");
    CG_CHECK(cJSON_IsNumber(thr) && thr->valuedouble == 0.0125);
    cJSON_Delete(j);
}

CG_TEST(payload_errors)
{
    proto_event e = cost_event();
    char buf[ALERTER_BODY_MAX];
    size_t len = 0;
    CG_CHECK_EQ_INT(alerter_payload_build(&e, buf, 64, &len), CG_ERR_TOOBIG);
    e.type = 99;
    CG_CHECK_EQ_INT(alerter_payload_build(&e, buf, sizeof buf, &len), CG_ERR_INVAL);
    e = cost_event();
    e.scope = 42;
    CG_CHECK_EQ_INT(alerter_payload_build(&e, buf, sizeof buf, &len), CG_ERR_INVAL);
}

/* ---- URL policy ---------------------------------------------------------------------- */

CG_TEST(url_policy)
{
    CG_CHECK_EQ_INT(alerter_url_check("https://hooks.example.com/capgate", 0), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_url_check("HTTPS://hooks.example.com", 0), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_url_check("http://hooks.example.com/x", 0), CG_ERR_INVAL);
    CG_CHECK_EQ_INT(alerter_url_check("http://hooks.example.com/x", 1), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_url_check("ftp://hooks.example.com/x", 1), CG_ERR_INVAL);
    CG_CHECK_EQ_INT(alerter_url_check("https:///path", 0), CG_ERR_INVAL);
    CG_CHECK_EQ_INT(alerter_url_check("https://a b", 0), CG_ERR_INVAL);
    CG_CHECK_EQ_INT(alerter_url_check("hooks.example.com", 1), CG_ERR_INVAL);
    char o[96];
    alerter_url_origin("https://user:pw@hooks.example.com:8443/p?token=s3cret", o, sizeof o);
    CG_CHECK_EQ_STR(o, "https://hooks.example.com:8443");
    alerter_url_origin("http://h/x", o, sizeof o);
    CG_CHECK_EQ_STR(o, "http://h");
}

/* ---- SSRF classifier ----------------------------------------------------------------- */

static const char *classify(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(text, ':') != NULL) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, text, &in6->sin6_addr) != 1) {
            return "bad test address";
        }
        return alerter_addr_refusal((struct sockaddr *)in6, sizeof *in6);
    }
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    in->sin_family = AF_INET;
    if (inet_pton(AF_INET, text, &in->sin_addr) != 1) {
        return "bad test address";
    }
    return alerter_addr_refusal((struct sockaddr *)in, sizeof *in);
}

CG_TEST(ssrf_table)
{
    static const struct {
        const char *addr;
        const char *want; /* NULL = allowed */
    } cases[] = {
        {"8.8.8.8", NULL},
        {"93.184.216.34", NULL},
        {"127.0.0.1", "loopback"},
        {"127.255.255.254", "loopback"},
        {"10.1.2.3", "private"},
        {"172.16.0.1", "private"},
        {"172.31.255.255", "private"},
        {"172.32.0.1", NULL},
        {"192.168.1.1", "private"},
        {"169.254.169.254", "link-local"},
        {"100.64.0.1", "cgnat"},
        {"100.127.255.255", "cgnat"},
        {"100.128.0.1", NULL},
        {"0.0.0.0", "unspecified"},
        {"0.1.2.3", "unspecified"},
        {"224.0.0.1", "multicast"},
        {"239.255.255.250", "multicast"},
        {"255.255.255.255", "reserved"},
        {"2606:4700:4700::1111", NULL},
        {"2001:4860:4860::8888", NULL},
        {"::1", "loopback"},
        {"::", "unspecified"},
        {"fc00::1", "unique-local"},
        {"fd12:3456::1", "unique-local"},
        {"fe80::1", "link-local"},
        {"febf::1", "link-local"},
        {"fec0::1", "site-local"},
        {"ff02::1", "multicast"},
        {"::ffff:127.0.0.1", "loopback"},
        {"::ffff:10.0.0.1", "private"},
        {"::ffff:169.254.169.254", "link-local"},
        {"::ffff:8.8.8.8", NULL},
        {"::ffff:0:192.168.0.1", "private"},
        {"::127.0.0.1", "loopback"},
        {"::10.0.0.1", "private"},
        {"::8.8.8.8", NULL},
        {"64:ff9b::7f00:1", "loopback"},
        {"64:ff9b::808:808", NULL},
        {"2002:7f00:1::", "loopback"},
        {"2002:c0a8:101::1", "private"},
        {"2002:808:808::1", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = classify(cases[i].addr);
        if (cases[i].want == NULL ? got != NULL
                                  : (got == NULL || strcmp(got, cases[i].want) != 0)) {
            fprintf(stderr, "  %s: got %s, want %s\n", cases[i].addr, got ? got : "allowed",
                    cases[i].want ? cases[i].want : "allowed");
            CG_CHECK(0);
        }
    }
    struct sockaddr sa = {.sa_family = AF_UNIX};
    CG_CHECK_EQ_STR(alerter_addr_refusal(&sa, sizeof sa), "family");
    struct sockaddr_in short_in = {.sin_family = AF_INET};
    CG_CHECK_EQ_STR(alerter_addr_refusal((struct sockaddr *)&short_in, 4), "family");
}

/* ---- backoff ------------------------------------------------------------------------- */

CG_TEST(backoff_schedule)
{
    const uint32_t sched[] = {5, 30, 120};
    int64_t d = 0;
    /* Without jitter room picked at the middle: rnd = span lands on the base. */
    CG_CHECK_EQ_INT(alerter_backoff(sched, 3, 1, 0, 500, &d), 1);
    CG_CHECK_EQ_INT(d, 5000);
    CG_CHECK_EQ_INT(alerter_backoff(sched, 3, 2, 0, 3000, &d), 1);
    CG_CHECK_EQ_INT(d, 30000);
    CG_CHECK_EQ_INT(alerter_backoff(sched, 3, 3, 0, 12000, &d), 1);
    CG_CHECK_EQ_INT(d, 120000);
    /* Exhausted after n retries (n + 1 attempts). */
    CG_CHECK_EQ_INT(alerter_backoff(sched, 3, 4, 0, 0, &d), 0);
    CG_CHECK_EQ_INT(alerter_backoff(sched, 3, 0, 0, 0, &d), 0);
    CG_CHECK_EQ_INT(alerter_backoff(sched, 0, 1, 0, 0, &d), 0);
}

CG_TEST(backoff_jitter_bounds)
{
    const uint32_t sched[] = {30};
    int64_t lo = INT64_MAX, hi = 0, d = 0;
    uint32_t x = 12345;
    for (int i = 0; i < 10000; i++) {
        x = x * 1664525u + 1013904223u;
        CG_CHECK_EQ_INT(alerter_backoff(sched, 1, 1, 0, x, &d), 1);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    CG_CHECK(lo >= 27000 && hi <= 33000);
    CG_CHECK(lo < 27500 && hi > 32500); /* the jitter is actually used */
    CG_CHECK_EQ_INT(alerter_backoff(sched, 1, 1, 0, 0, &d), 1);
    CG_CHECK_EQ_INT(d, 27000);
    CG_CHECK_EQ_INT(alerter_backoff(sched, 1, 1, 0, 6000, &d), 1);
    CG_CHECK_EQ_INT(d, 33000);
}

CG_TEST(backoff_retry_after)
{
    const uint32_t sched[] = {5, 30};
    int64_t d = 0;
    CG_CHECK_EQ_INT(alerter_backoff(sched, 2, 1, 60, 500, &d), 1);
    CG_CHECK_EQ_INT(d, 60000); /* larger Retry-After wins */
    CG_CHECK_EQ_INT(alerter_backoff(sched, 2, 2, 10, 3000, &d), 1);
    CG_CHECK_EQ_INT(d, 30000); /* smaller one does not shorten the schedule */
    CG_CHECK_EQ_INT(alerter_backoff(sched, 2, 1, 10LL * 86400 * 365, 0, &d), 1);
    CG_CHECK_EQ_INT(d, (int64_t)ALERTER_RETRY_AFTER_MAX_S * 1000); /* clamped */
    CG_CHECK_EQ_INT(alerter_backoff(sched, 2, 3, 60, 0, &d), 0);   /* still exhausts */
}

/* The alert email: headers a mail client needs, a body a person can act on. */
CG_TEST(email_org_warning)
{
    proto_event e = cost_event();
    e.org[0] = 'a';
    char buf[ALERTER_BODY_MAX];
    size_t len = 0;
    CG_CHECK_EQ_INT(alerter_email_build(&e, "alerts@x.test", "ops@acme.test", PROTO_ACTION_BLOCK,
                                        buf, sizeof buf, &len),
                    CG_ERR_OK);
    CG_CHECK_EQ_INT(len, strlen(buf));
    if (getenv("ALERTER_SHOW_EMAIL") != NULL) {
        fputs(buf, stderr);
    }
    CG_CHECK(strstr(buf, "From: alerts@x.test\r\nTo: ops@acme.test\r\n") == buf);
    CG_CHECK(
        strstr(buf, "\r\nSubject: [capgate] Spend cap at 80%: organization acme (org acme)\r\n") !=
        NULL);
    CG_CHECK(strstr(buf, "\r\nDate: Sat, 21 Nov 2026 10:04:05 +0000\r\n") != NULL);
    CG_CHECK(strstr(buf, "\r\nMessage-ID: <evt_0123456789abcdef0123456789abcdef@capgate>\r\n") !=
             NULL);
    CG_CHECK(strstr(buf, "Used:         $801.20 of $1000.00\r\n") != NULL);
    CG_CHECK(strstr(buf, "2026-11-01T00:00:00Z to 2026-12-01T00:00:00Z") != NULL);
    CG_CHECK(strstr(buf, "are refused with HTTP 402\r\n(budget_exceeded) until the period ends at "
                         "2026-12-01T00:00:00Z.\r\n") != NULL);
    CG_CHECK(strstr(buf, "only warn") == NULL); /* the action is known */
    /* Every line ends in CRLF; no bare LF. */
    for (size_t i = 0; i < len; i++) {
        CG_CHECK(buf[i] != '\n' || (i > 0 && buf[i - 1] == '\r'));
    }
}

CG_TEST(email_reached_and_errors)
{
    proto_event e = cost_event();
    e.type = PROTO_EVT_REQUEST_REACHED;
    e.metric = PROTO_METRIC_REQUESTS;
    e.scope = PROTO_SCOPE_KEY;
    snprintf(e.scope_id, sizeof e.scope_id, "k_1\r\nBcc: evil@x");
    e.max = 100;
    e.used = 100;
    char buf[ALERTER_BODY_MAX];
    size_t len = 0;
    CG_CHECK_EQ_INT(alerter_email_build(&e, "a@x.test", "b@x.test", -1, buf, sizeof buf, &len),
                    CG_ERR_OK);
    CG_CHECK(strstr(buf, "Subject: [capgate] Request quota reached: API key k_1??Bcc: evil@x") !=
             NULL);
    CG_CHECK(strstr(buf, "\r\nBcc:") == NULL); /* no header injection */
    CG_CHECK(strstr(buf, "Used:         100 requests of 100 requests") != NULL);
    CG_CHECK(strstr(buf, "unless the limit is set to only warn") != NULL);
    CG_CHECK_EQ_INT(alerter_email_build(&e, "a@x.test", "b@x.test", -1, buf, 64, &len),
                    CG_ERR_TOOBIG);
    e.type = 0;
    CG_CHECK_EQ_INT(alerter_email_build(&e, "a@x.test", "b@x.test", -1, buf, sizeof buf, &len),
                    CG_ERR_INVAL);
    CG_CHECK(alerter_email_ok("ops@acme.test"));
    CG_CHECK(!alerter_email_ok("ops"));
    CG_CHECK(!alerter_email_ok("a@b@c"));
    CG_CHECK(!alerter_email_ok("a b@c.d"));
    CG_CHECK(!alerter_email_ok("<a@c.d>"));
    CG_CHECK(!alerter_email_ok("a@c.d\r\nRCPT TO:x"));
}

int main(void)
{
    return CG_TEST_RUN(email_org_warning, email_reached_and_errors, sign_matches_independent_hmac,
                       sign_standard_webhooks_vector, sign_refuses_bad_secrets, b64_decode_strict,
                       payload_cost_event, payload_exact_bytes, payload_token_event_lifetime,
                       payload_requests_and_escaping, payload_errors, url_policy, ssrf_table,
                       backoff_schedule, backoff_jitter_bounds, backoff_retry_after);
}
