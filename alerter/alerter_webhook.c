/*
 * alerter_webhook.c — payload, signing, URL/address guards and backoff for
 * webhook delivery (contracts in alerter_webhook.h).
 *
 * The payload is written with a bounded string builder rather than cJSON so the
 * number formats are exact and ours: money goes through cg_money_format (never a
 * double), thresholds are printed from basis points, counts as int64. The
 * outbox stores these bytes, so every retry of a delivery sends the same body.
 */
#include "alerter_webhook.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "alerter_limits.h"
#include "cg_money.h"
#include "cg_period.h"

/* ---- bounded JSON builder ------------------------------------------------------------ */

typedef struct alerter_buf {
    char *p;
    size_t cap;
    size_t len;
    int full; /* set once anything did not fit; the result is then discarded */
} alerter_buf;

static void alerter_buf_raw(alerter_buf *b, const char *s, size_t n)
{
    if (b->full || n >= b->cap - b->len) {
        b->full = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void alerter_buf_str(alerter_buf *b, const char *s)
{
    alerter_buf_raw(b, s, strlen(s));
}

/* A JSON string literal: quotes, backslashes and control bytes escaped; other bytes
 * (UTF-8 ids) pass through unchanged. */
static void alerter_buf_jstr(alerter_buf *b, const char *s)
{
    alerter_buf_raw(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c != '\0'; c++) {
        char esc[8];
        if (*c == '"' || *c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*c;
            alerter_buf_raw(b, esc, 2);
        } else if (*c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", (unsigned)*c);
            alerter_buf_raw(b, esc, 6);
        } else {
            alerter_buf_raw(b, (const char *)c, 1);
        }
    }
    alerter_buf_raw(b, "\"", 1);
}

/* ,"key": */
static void alerter_buf_key(alerter_buf *b, const char *key, int first)
{
    if (!first) {
        alerter_buf_raw(b, ",", 1);
    }
    alerter_buf_jstr(b, key);
    alerter_buf_raw(b, ":", 1);
}

/* ---- payload ------------------------------------------------------------------------- */

/* Exact decimal of bp / 10000: 8000 -> "0.8", 10000 -> "1", 125 -> "0.0125". */
static void alerter_threshold_format(uint16_t bp, char *out, size_t cap)
{
    unsigned whole = bp / 10000u, frac = bp % 10000u;
    if (frac == 0) {
        snprintf(out, cap, "%u", whole);
        return;
    }
    char digits[8];
    snprintf(digits, sizeof digits, "%04u", frac);
    size_t n = strlen(digits);
    while (n > 0 && digits[n - 1] == '0') {
        digits[--n] = '\0';
    }
    snprintf(out, cap, "%u.%s", whole, digits);
}

/* max / used: USD string for cost, JSON integer otherwise. */
static void alerter_amount(alerter_buf *b, uint8_t metric, int64_t v)
{
    char tmp[40];
    if (metric == PROTO_METRIC_COST) {
        if (cg_money_format(v, 2, tmp, sizeof tmp) == 0) {
            b->full = 1;
            return;
        }
        alerter_buf_jstr(b, tmp);
    } else {
        snprintf(tmp, sizeof tmp, "%" PRId64, v);
        alerter_buf_str(b, tmp);
    }
}

static cg_err alerter_time_field(alerter_buf *b, const char *key, int64_t t_ms)
{
    char ts[40];
    alerter_buf_key(b, key, 0);
    if (cg_time_format(t_ms, ts, sizeof ts) == 0) {
        return CG_ERR_INVAL;
    }
    alerter_buf_jstr(b, ts);
    return CG_ERR_OK;
}

/* The "data" object. */
static cg_err alerter_payload_data(alerter_buf *b, const proto_event *e)
{
    const char *scope = proto_scope_name(e->scope);
    const char *metric = proto_metric_name(e->metric);
    char win[32], thr[16];
    if (scope == NULL || metric == NULL || cg_window_format(e->window, win, sizeof win) == 0) {
        return CG_ERR_INVAL;
    }
    alerter_buf_raw(b, "{", 1);
    alerter_buf_key(b, "org", 1);
    alerter_buf_jstr(b, e->org);
    alerter_buf_key(b, "scope", 0);
    alerter_buf_jstr(b, scope);
    alerter_buf_key(b, "scope_id", 0);
    alerter_buf_jstr(b, e->scope_id);
    alerter_buf_key(b, "metric", 0);
    alerter_buf_jstr(b, metric);
    alerter_buf_key(b, "window", 0);
    alerter_buf_jstr(b, win);
    if (alerter_time_field(b, "period_start", e->period_start_ms) != CG_ERR_OK) {
        return CG_ERR_INVAL;
    }
    /* A lifetime period never ends: proto says 0, cg_period says INT64_MAX. */
    if (e->period_end_ms == 0 || e->period_end_ms == INT64_MAX) {
        alerter_buf_key(b, "period_end", 0);
        alerter_buf_str(b, "null");
    } else if (alerter_time_field(b, "period_end", e->period_end_ms) != CG_ERR_OK) {
        return CG_ERR_INVAL;
    }
    alerter_threshold_format(e->threshold_bp, thr, sizeof thr);
    alerter_buf_key(b, "threshold", 0);
    alerter_buf_str(b, thr);
    alerter_buf_key(b, "max", 0);
    alerter_amount(b, e->metric, e->max);
    alerter_buf_key(b, "used", 0);
    alerter_amount(b, e->metric, e->used);
    alerter_buf_raw(b, "}", 1);
    return CG_ERR_OK;
}

cg_err alerter_payload_build(const proto_event *e, char *buf, size_t cap, size_t *len)
{
    const char *type = proto_event_type_name(e->type);
    if (type == NULL || e->id[0] == '\0') {
        return CG_ERR_INVAL;
    }
    if (cap == 0) {
        return CG_ERR_TOOBIG;
    }
    alerter_buf b = {.p = buf, .cap = cap, .len = 0, .full = 0};
    buf[0] = '\0';
    alerter_buf_raw(&b, "{", 1);
    alerter_buf_key(&b, "id", 1);
    alerter_buf_jstr(&b, e->id);
    alerter_buf_key(&b, "type", 0);
    alerter_buf_jstr(&b, type);
    if (alerter_time_field(&b, "created_at", e->created_ms) != CG_ERR_OK) {
        return CG_ERR_INVAL;
    }
    alerter_buf_key(&b, "data", 0);
    cg_err err = alerter_payload_data(&b, e);
    if (err != CG_ERR_OK) {
        return err;
    }
    alerter_buf_raw(&b, "}", 1);
    if (b.full) {
        return CG_ERR_TOOBIG;
    }
    *len = b.len;
    return CG_ERR_OK;
}

/* ---- email --------------------------------------------------------------------------- */

static void alerter_bufp(alerter_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void alerter_bufp(alerter_buf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->full = 1;
        return;
    }
    alerter_buf_raw(b, tmp, (size_t)n);
}

/* A header value: bytes outside printable ASCII become '?', so nothing can start a new
 * header line. */
static void alerter_hdr_clean(const char *in, char *out, size_t cap)
{
    size_t i = 0;
    for (; in[i] != '\0' && i + 1 < cap; i++) {
        unsigned char c = (unsigned char)in[i];
        out[i] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
    }
    out[i] = '\0';
}

/* The same rules as an org's emails (the admin API), so smtp_to and org addresses agree. */
int alerter_email_ok(const char *addr)
{
    return proto_email_ok(addr);
}

static const char *alerter_scope_words(uint8_t scope)
{
    switch (scope) {
    case PROTO_SCOPE_KEY:
        return "API key";
    case PROTO_SCOPE_GROUP:
        return "key group";
    case PROTO_SCOPE_CUSTOMER:
        return "customer";
    case PROTO_SCOPE_ORG:
        return "organization";
    }
    return NULL;
}

static const char *alerter_metric_words(uint8_t metric)
{
    switch (metric) {
    case PROTO_METRIC_COST:
        return "spend cap";
    case PROTO_METRIC_TOKENS:
        return "token quota";
    case PROTO_METRIC_REQUESTS:
        return "request quota";
    }
    return NULL;
}

/* "$801.20" for cost, "1200 tokens" / "50 requests" otherwise. */
static int alerter_amount_words(uint8_t metric, int64_t v, char *out, size_t cap)
{
    char tmp[40];
    if (metric == PROTO_METRIC_COST) {
        if (cg_money_format(v, 2, tmp, sizeof tmp) == 0) {
            return -1;
        }
        snprintf(out, cap, "$%s", tmp);
    } else {
        snprintf(out, cap, "%" PRId64 " %s", v,
                 metric == PROTO_METRIC_TOKENS ? "tokens" : "requests");
    }
    return 0;
}

/* The body: which, how much, when, and what happens next. id and org are cleaned. */
static void alerter_email_text(alerter_buf *b, const proto_event *e, int reached, int action,
                               const char *id, const char *org, const char *what, const char *win,
                               const char *used, const char *max, const char *start,
                               const char *end, const char *thr)
{
    const char *sw = alerter_scope_words(e->scope);
    const char *verb = reached ? "has been reached" : "has passed a warning threshold";
    if (e->scope == PROTO_SCOPE_ORG) {
        alerter_bufp(b, "The %s of organization %s %s.\r\n\r\n", what, org, verb);
    } else {
        alerter_bufp(b, "The %s of %s %s in organization %s %s.\r\n\r\n", what, sw, id, org, verb);
    }
    alerter_bufp(b, "  Organization: %s\r\n", org);
    alerter_bufp(b, "  Scope:        %s %s\r\n", sw, id);
    alerter_bufp(b, "  Limit:        %s, window %s\r\n", what, win);
    alerter_bufp(b, "  Used:         %s of %s\r\n", used, max);
    if (!reached) {
        alerter_bufp(b, "  Threshold:    %s%% of the limit\r\n", thr);
    }
    alerter_bufp(b, "  Period:       %s to %s\r\n\r\n", start, end);
    alerter_bufp(b, "What happens next:\r\n");
    char until[96];
    if (e->period_end_ms > 0 && e->period_end_ms != INT64_MAX) {
        snprintf(until, sizeof until, "until the period ends at %s", end);
    } else {
        snprintf(until, sizeof until, "for good (a lifetime limit never resets)");
    }
    if (!reached && action == PROTO_ACTION_WARN) {
        alerter_bufp(b,
                     "Nothing is blocked: this limit only warns. You will be told again\r\n"
                     "when used reaches %s; requests will still be served.\r\n",
                     max);
    } else if (!reached) {
        alerter_bufp(b,
                     "Nothing is blocked yet; requests continue. Once used reaches %s,\r\n"
                     "requests that would go over the limit are refused with HTTP 402\r\n"
                     "(budget_exceeded) %s%s.\r\n",
                     max, until, action < 0 ? ",\r\nunless the limit is set to only warn" : "");
    } else if (action == PROTO_ACTION_WARN) {
        alerter_bufp(b, "This limit only warns: requests continue to be served.\r\n");
    } else {
        alerter_bufp(b,
                     "Requests that would go over this limit are now refused with HTTP 402\r\n"
                     "(budget_exceeded) %s%s.\r\n",
                     until, action < 0 ? ",\r\nunless the limit is set to only warn" : "");
    }
    alerter_bufp(b, "To change this, raise the limit through the capgate admin API.\r\n\r\n");
    alerter_bufp(b, "Event id: %s\r\nEvent type: %s\r\n", e->id, proto_event_type_name(e->type));
}

cg_err alerter_email_build(const proto_event *e, const char *from, const char *to, int action,
                           char *buf, size_t cap, size_t *len)
{
    const char *type = proto_event_type_name(e->type);
    const char *scope = alerter_scope_words(e->scope);
    const char *what = alerter_metric_words(e->metric);
    char win[32], used[48], max[48], start[40], end[40], thr[16], date[64];
    char hfrom[300], hto[300], hid[PROTO_EVENT_ID_MAX + 1], hscope[PROTO_ID_MAX + 1],
        horg[PROTO_ID_MAX + 1];
    if (type == NULL || scope == NULL || what == NULL || e->id[0] == '\0' ||
        cg_window_format(e->window, win, sizeof win) == 0 ||
        alerter_amount_words(e->metric, e->used, used, sizeof used) != 0 ||
        alerter_amount_words(e->metric, e->max, max, sizeof max) != 0 ||
        cg_time_format(e->period_start_ms, start, sizeof start) == 0) {
        return CG_ERR_INVAL;
    }
    if (e->period_end_ms == 0 || e->period_end_ms == INT64_MAX) {
        snprintf(end, sizeof end, "(never: lifetime limit)");
    } else if (cg_time_format(e->period_end_ms, end, sizeof end) == 0) {
        return CG_ERR_INVAL;
    }
    /* The threshold as a percentage: bp / 100. */
    snprintf(thr, sizeof thr, "%u", (unsigned)(e->threshold_bp / 100));
    if (e->threshold_bp % 100 != 0) {
        snprintf(thr, sizeof thr, "%u.%02u", (unsigned)(e->threshold_bp / 100),
                 (unsigned)(e->threshold_bp % 100));
    }
    time_t t = (time_t)(e->created_ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL ||
        strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm) == 0) {
        return CG_ERR_INVAL;
    }
    alerter_hdr_clean(from, hfrom, sizeof hfrom);
    alerter_hdr_clean(to, hto, sizeof hto);
    alerter_hdr_clean(e->id, hid, sizeof hid);
    alerter_hdr_clean(e->scope_id, hscope, sizeof hscope);
    alerter_hdr_clean(e->org, horg, sizeof horg);
    int reached = e->type == PROTO_EVT_SPEND_REACHED || e->type == PROTO_EVT_TOKEN_REACHED ||
                  e->type == PROTO_EVT_REQUEST_REACHED;
    if (cap == 0) {
        return CG_ERR_TOOBIG;
    }
    alerter_buf b = {.p = buf, .cap = cap, .len = 0, .full = 0};
    buf[0] = '\0';
    alerter_bufp(&b, "From: %s\r\nTo: %s\r\n", hfrom, hto);
    if (reached) {
        alerter_bufp(&b, "Subject: [capgate] %c%s reached: %s %s (org %s)\r\n", what[0] - 32,
                     what + 1, scope, hscope, horg);
    } else {
        alerter_bufp(&b, "Subject: [capgate] %c%s at %s%%: %s %s (org %s)\r\n", what[0] - 32,
                     what + 1, thr, scope, hscope, horg);
    }
    alerter_bufp(&b, "Date: %s\r\nMessage-ID: <%s@capgate>\r\n", date, hid);
    alerter_bufp(&b, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Transfer-Encoding: 8bit\r\n");
    alerter_bufp(&b, "X-Capgate-Event-Id: %s\r\nX-Capgate-Event-Type: %s\r\n\r\n", hid, type);
    alerter_email_text(&b, e, reached, action, hscope, horg, what, win, used, max, start, end, thr);
    if (b.full) {
        return CG_ERR_TOOBIG;
    }
    *len = b.len;
    return CG_ERR_OK;
}

/* ---- base64 and signing -------------------------------------------------------------- */

static int alerter_b64_val(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

cg_err alerter_b64_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
    size_t pad = 0;
    while (len > 0 && in[len - 1] == '=' && pad < 2) {
        len--;
        pad++;
    }
    /* Padding, if any, must complete the last quantum exactly. */
    if (len % 4 == 1 || (pad > 0 && (len + pad) % 4 != 0)) {
        return CG_ERR_PARSE;
    }
    size_t n = len / 4 * 3 + (len % 4 == 0 ? 0 : len % 4 - 1);
    if (n > cap) {
        return CG_ERR_TOOBIG;
    }
    uint32_t acc = 0;
    size_t bits = 0, o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = alerter_b64_val(in[i]);
        if (v < 0) {
            return CG_ERR_PARSE;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1u;
        }
    }
    /* Leftover bits must be zero, or the encoding is not canonical. */
    if (acc != 0) {
        return CG_ERR_PARSE;
    }
    *out_len = o;
    return CG_ERR_OK;
}

static cg_err alerter_hmac_sha256(const uint8_t *key, size_t key_len, const char *id,
                                  const char *ts, const void *body, size_t body_len,
                                  uint8_t mac[32])
{
    cg_err err = CG_ERR_INTERNAL;
    EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = m != NULL ? EVP_MAC_CTX_new(m) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    size_t mac_len = 0;
    if (ctx == NULL || !EVP_MAC_init(ctx, key, key_len, params)) {
        goto fail;
    }
    if (!EVP_MAC_update(ctx, (const unsigned char *)id, strlen(id)) ||
        !EVP_MAC_update(ctx, (const unsigned char *)".", 1) ||
        !EVP_MAC_update(ctx, (const unsigned char *)ts, strlen(ts)) ||
        !EVP_MAC_update(ctx, (const unsigned char *)".", 1) ||
        !EVP_MAC_update(ctx, body, body_len) || !EVP_MAC_final(ctx, mac, &mac_len, 32) ||
        mac_len != 32) {
        goto fail;
    }
    err = CG_ERR_OK;
fail:
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(m);
    return err;
}

cg_err alerter_sign(const char *secret, const char *msg_id, int64_t ts_s, const void *body,
                    size_t body_len, char *out, size_t cap)
{
    uint8_t key[ALERTER_KEY_MAX], mac[32];
    size_t key_len = 0;
    char ts[24];
    if (cap < ALERTER_SIG_MAX) {
        return CG_ERR_TOOBIG;
    }
    if (strncmp(secret, "whsec_", 6) == 0) {
        secret += 6;
    }
    if (alerter_b64_decode(secret, strlen(secret), key, sizeof key, &key_len) != CG_ERR_OK ||
        key_len == 0) {
        return CG_ERR_INVAL;
    }
    snprintf(ts, sizeof ts, "%" PRId64, ts_s);
    cg_err err = alerter_hmac_sha256(key, key_len, msg_id, ts, body, body_len, mac);
    OPENSSL_cleanse(key, sizeof key);
    if (err != CG_ERR_OK) {
        return err;
    }
    snprintf(out, cap, "v1,");
    /* EVP_EncodeBlock writes 44 chars + NUL for 32 bytes (cap >= ALERTER_SIG_MAX = 64). */
    EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)sizeof mac);
    return CG_ERR_OK;
}

/* ---- URL policy ---------------------------------------------------------------------- */

cg_err alerter_url_check(const char *url, int allow_http)
{
    size_t skip;
    if (strncasecmp(url, "https://", 8) == 0) {
        skip = 8;
    } else if (allow_http && strncasecmp(url, "http://", 7) == 0) {
        skip = 7;
    } else {
        return CG_ERR_INVAL;
    }
    const char *host = url + skip;
    if (*host == '\0' || *host == '/' || *host == '?' || *host == '#') {
        return CG_ERR_INVAL;
    }
    for (const char *c = url; *c != '\0'; c++) {
        if ((unsigned char)*c <= 0x20 || *c == 0x7f) {
            return CG_ERR_INVAL; /* spaces and control bytes: never a valid URL */
        }
    }
    return CG_ERR_OK;
}

void alerter_url_origin(const char *url, char *out, size_t cap)
{
    if (cap == 0) {
        return;
    }
    const char *sep = strstr(url, "://");
    const char *host = sep != NULL ? sep + 3 : url;
    size_t end = strcspn(host, "/?#");
    /* User-info ("user:pass@") is a credential: drop it. */
    const char *at = memchr(host, '@', end);
    const char *h = at != NULL ? at + 1 : host;
    size_t hlen = end - (size_t)(h - host);
    int scheme_len = sep != NULL ? (int)(sep - url) : 0;
    snprintf(out, cap, "%.*s%s%.*s", scheme_len, url, sep != NULL ? "://" : "", (int)hlen, h);
}

/* ---- SSRF guard ---------------------------------------------------------------------- */

typedef struct alerter_net4 {
    uint32_t net;
    uint8_t prefix;
    const char *reason;
} alerter_net4;

static const alerter_net4 alerter_refused4[] = {
    {0x00000000u, 8, "unspecified"}, /* 0.0.0.0/8 "this network" */
    {0x0a000000u, 8, "private"},     /* 10/8 */
    {0x64400000u, 10, "cgnat"},      /* 100.64/10 */
    {0x7f000000u, 8, "loopback"},    /* 127/8 */
    {0xa9fe0000u, 16, "link-local"}, /* 169.254/16 (cloud metadata lives here) */
    {0xac100000u, 12, "private"},    /* 172.16/12 */
    {0xc0000000u, 24, "reserved"},   /* 192.0.0/24 IETF protocol assignments */
    {0xc0a80000u, 16, "private"},    /* 192.168/16 */
    {0xc6120000u, 15, "reserved"},   /* 198.18/15 benchmarking */
    {0xe0000000u, 4, "multicast"},   /* 224/4 */
    {0xf0000000u, 4, "reserved"},    /* 240/4, 255.255.255.255 included */
};

/* a in host byte order. */
static const char *alerter_refusal4(uint32_t a)
{
    for (size_t i = 0; i < sizeof alerter_refused4 / sizeof alerter_refused4[0]; i++) {
        const alerter_net4 *n = &alerter_refused4[i];
        uint32_t mask = 0xffffffffu << (32 - n->prefix);
        if ((a & mask) == n->net) {
            return n->reason;
        }
    }
    return NULL;
}

static uint32_t alerter_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int alerter_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0) {
            return 0;
        }
    }
    return 1;
}

static const char *alerter_refusal6(const uint8_t a[16])
{
    static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};
    if (alerter_zero(a, 15)) {
        return a[15] == 0 ? "unspecified" : a[15] == 1 ? "loopback" : alerter_refusal4(a[15]);
    }
    /* Embedded IPv4: mapped ::ffff:a.b.c.d, translated ::ffff:0:a.b.c.d, compatible
     * ::a.b.c.d, NAT64 64:ff9b::a.b.c.d — each is judged as the IPv4 address. */
    if (alerter_zero(a, 10) && a[10] == 0xff && a[11] == 0xff) {
        return alerter_refusal4(alerter_be32(a + 12));
    }
    if (alerter_zero(a, 8) && a[8] == 0xff && a[9] == 0xff && a[10] == 0 && a[11] == 0) {
        return alerter_refusal4(alerter_be32(a + 12));
    }
    if (alerter_zero(a, 12) || memcmp(a, nat64, 12) == 0) {
        return alerter_refusal4(alerter_be32(a + 12));
    }
    if (a[0] == 0x20 && a[1] == 0x02) {
        return alerter_refusal4(alerter_be32(a + 2)); /* 6to4 2002:V4ADDR::/48 */
    }
    if ((a[0] & 0xfe) == 0xfc) {
        return "unique-local"; /* fc00::/7 */
    }
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) {
        return "link-local"; /* fe80::/10 */
    }
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0) {
        return "site-local"; /* fec0::/10, deprecated but still routable inside sites */
    }
    if (a[0] == 0xff) {
        return "multicast";
    }
    return NULL;
}

const char *alerter_addr_refusal(const struct sockaddr *sa, socklen_t len)
{
    if (sa == NULL) {
        return "family";
    }
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return alerter_refusal4(ntohl(in->sin_addr.s_addr));
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        return alerter_refusal6(in6->sin6_addr.s6_addr);
    }
    return "family";
}

/* ---- backoff ------------------------------------------------------------------------- */

int alerter_backoff(const uint32_t *sched_s, uint32_t n, uint32_t attempts, int64_t retry_after_s,
                    uint32_t rnd, int64_t *delay_ms)
{
    if (attempts == 0 || attempts > n) {
        return 0;
    }
    int64_t base_ms = (int64_t)sched_s[attempts - 1] * 1000;
    int64_t span_ms = base_ms * ALERTER_JITTER_PCT / 100;
    int64_t d = base_ms - span_ms + (int64_t)(rnd % (uint64_t)(2 * span_ms + 1));
    if (retry_after_s > 0) {
        int64_t ra_s =
            retry_after_s < ALERTER_RETRY_AFTER_MAX_S ? retry_after_s : ALERTER_RETRY_AFTER_MAX_S;
        if (ra_s * 1000 > d) {
            d = ra_s * 1000;
        }
    }
    *delay_ms = d;
    return 1;
}
