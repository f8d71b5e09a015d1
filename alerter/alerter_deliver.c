/*
 * alerter_deliver.c — webhook and email attempts on a libcurl multi handle
 * (contract in alerter_deliver.h).
 *
 * A fixed table of ALERTER_INFLIGHT_MAX slots: FREE -> RUNNING (easy handle in the
 * multi) -> FINISHED (result waiting for alerter_deliver_collect) -> FREE. A slot
 * stays "busy" until its result is collected, so the loop can never start a second
 * attempt of a record whose first one has not been written back yet.
 */
#include "alerter_deliver.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "alerter_webhook.h"
#include "cg_clock.h"
#include "cg_log.h"

#define ALERTER_USER_AGENT "capgate-alerter/0.1"

typedef enum alerter_slot_state {
    ALERTER_SLOT_FREE = 0,
    ALERTER_SLOT_RUNNING = 1,
    ALERTER_SLOT_FINISHED = 2,
} alerter_slot_state;

typedef struct alerter_slot {
    uint8_t state; /* alerter_slot_state */
    CURL *easy;
    struct curl_slist *headers; /* webhook headers, or the email's RCPT list */
    char *mail;                 /* email: the message being uploaded (a copy) */
    size_t mail_len, mail_off;
    size_t resp_bytes;   /* response body bytes seen, bounded by ALERTER_RESP_BODY_MAX */
    const char *refused; /* reason the SSRF guard gave for the last refused address */
    int64_t started_mono_ms;
    char errbuf[CURL_ERROR_SIZE];
    alerter_result result; /* key always set; the rest when FINISHED */
} alerter_slot;

struct alerter_deliver {
    CURLM *multi;
    int allow_http;
    int allow_private;
    alerter_smtp smtp;
    uint32_t busy_n; /* RUNNING + FINISHED */
    alerter_slot slots[ALERTER_INFLIGHT_MAX];
};

cg_err alerter_deliver_new(int allow_http, int allow_private, const alerter_smtp *smtp,
                           alerter_deliver **out)
{
    alerter_deliver *d = calloc(1, sizeof *d);
    if (d == NULL) {
        return CG_ERR_NOMEM;
    }
    d->multi = curl_multi_init();
    if (d->multi == NULL) {
        free(d);
        return CG_ERR_NOMEM;
    }
    d->allow_http = allow_http;
    d->allow_private = allow_private;
    if (smtp != NULL) {
        d->smtp = *smtp;
    }
    *out = d;
    return CG_ERR_OK;
}

static void alerter_slot_release(alerter_deliver *d, alerter_slot *s)
{
    if (s->easy != NULL) {
        curl_multi_remove_handle(d->multi, s->easy);
        curl_easy_cleanup(s->easy);
        s->easy = NULL;
    }
    curl_slist_free_all(s->headers);
    s->headers = NULL;
    free(s->mail);
    s->mail = NULL;
}

void alerter_deliver_free(alerter_deliver *d)
{
    if (d == NULL) {
        return;
    }
    for (uint32_t i = 0; i < ALERTER_INFLIGHT_MAX; i++) {
        alerter_slot_release(d, &d->slots[i]);
    }
    curl_multi_cleanup(d->multi);
    free(d);
}

void alerter_deliver_wakeup(alerter_deliver *d)
{
    curl_multi_wakeup(d->multi);
}

uint32_t alerter_deliver_inflight(const alerter_deliver *d)
{
    return d->busy_n;
}

int alerter_deliver_busy(const alerter_deliver *d, const uint8_t key[ALERTER_KEY_BYTES])
{
    for (uint32_t i = 0; i < ALERTER_INFLIGHT_MAX; i++) {
        const alerter_slot *s = &d->slots[i];
        if (s->state != ALERTER_SLOT_FREE && memcmp(s->result.key, key, ALERTER_KEY_BYTES) == 0) {
            return 1;
        }
    }
    return 0;
}

/* ---- curl callbacks ------------------------------------------------------------------ */

/* Count and drop the response body; past the bound, cut the transfer (the status is
 * already known and decides the outcome). */
static size_t alerter_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    (void)ptr;
    alerter_slot *s = userdata;
    size_t n = size * nmemb;
    if (n > ALERTER_RESP_BODY_MAX - s->resp_bytes) {
        return 0;
    }
    s->resp_bytes += n;
    return n;
}

/* Email upload: the message bytes, then end of data. */
static size_t alerter_read_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
    alerter_slot *s = userdata;
    size_t n = size * nitems, left = s->mail_len - s->mail_off;
    if (n > left) {
        n = left;
    }
    memcpy(buf, s->mail + s->mail_off, n);
    s->mail_off += n;
    return n;
}

/* The SSRF guard: runs for every address curl is about to connect to, after DNS. */
static curl_socket_t alerter_opensocket_cb(void *clientp, curlsocktype purpose,
                                           struct curl_sockaddr *addr)
{
    alerter_slot *s = clientp;
    struct sockaddr_storage ss;
    (void)purpose;
    if (addr->addrlen > sizeof ss) {
        s->refused = "family";
        return CURL_SOCKET_BAD;
    }
    memset(&ss, 0, sizeof ss);
    memcpy(&ss, &addr->addr, addr->addrlen);
    const char *why = alerter_addr_refusal((const struct sockaddr *)&ss, addr->addrlen);
    if (why != NULL) {
        s->refused = why;
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

/* ---- starting an attempt ------------------------------------------------------------- */

static alerter_slot *alerter_slot_take(alerter_deliver *d, const alerter_record *r)
{
    for (uint32_t i = 0; i < ALERTER_INFLIGHT_MAX; i++) {
        alerter_slot *s = &d->slots[i];
        if (s->state == ALERTER_SLOT_FREE) {
            memset(&s->result, 0, sizeof s->result);
            memcpy(s->result.key, r->key, ALERTER_KEY_BYTES);
            s->result.channel = r->channel;
            s->resp_bytes = 0;
            s->refused = NULL;
            s->errbuf[0] = '\0';
            s->started_mono_ms = cg_mono_ms();
            return s;
        }
    }
    return NULL;
}

/* Finish a slot without a transfer (unusable URL or secret). */
static void alerter_slot_gone(alerter_deliver *d, alerter_slot *s, const char *why)
{
    s->result.outcome = ALERTER_OUT_GONE;
    snprintf(s->result.error, sizeof s->result.error, "%s", why);
    s->state = ALERTER_SLOT_FINISHED;
    d->busy_n++;
}

static cg_err alerter_headers(alerter_slot *s, const alerter_record *r, int64_t now_s)
{
    char sig[ALERTER_SIG_MAX], line[128];
    cg_err err = alerter_sign(r->secret, r->event_id, now_s, r->body, r->body_len, sig, sizeof sig);
    if (err != CG_ERR_OK) {
        return err;
    }
    const char *fixed[] = {"content-type: application/json", "Expect:"};
    for (size_t i = 0; i < 2; i++) {
        struct curl_slist *h = curl_slist_append(s->headers, fixed[i]);
        if (h == NULL) {
            return CG_ERR_NOMEM;
        }
        s->headers = h;
    }
    for (int i = 0; i < 3; i++) {
        if (i == 0) {
            snprintf(line, sizeof line, "webhook-id: %s", r->event_id);
        } else if (i == 1) {
            snprintf(line, sizeof line, "webhook-timestamp: %" PRId64, now_s);
        } else {
            snprintf(line, sizeof line, "webhook-signature: %s", sig);
        }
        struct curl_slist *h = curl_slist_append(s->headers, line);
        if (h == NULL) {
            return CG_ERR_NOMEM;
        }
        s->headers = h;
    }
    return CG_ERR_OK;
}

/* The result of a transfer's curl_easy_setopt chain: c is its first failure, if any. */
static cg_err alerter_setup_result(CURLcode c)
{
    if (c != CURLE_OK) {
        cg_log(CG_LOG_ERROR, "curl setup failed", "curl", curl_easy_strerror(c), NULL);
        return CG_ERR_NOMEM;
    }
    return CG_ERR_OK;
}

static cg_err alerter_easy_setup(alerter_deliver *d, alerter_slot *s, const alerter_record *r)
{
    CURL *e = s->easy;
    CURLcode c = CURLE_OK;
#define ALERTER_SETOPT(opt, val)           \
    if (c == CURLE_OK) {                   \
        c = curl_easy_setopt(e, opt, val); \
    }
    ALERTER_SETOPT(CURLOPT_URL, r->url);
    ALERTER_SETOPT(CURLOPT_PROTOCOLS_STR, d->allow_http ? "http,https" : "https");
    ALERTER_SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
    ALERTER_SETOPT(CURLOPT_PROXY, ""); /* never a proxy from the environment */
    ALERTER_SETOPT(CURLOPT_NOSIGNAL, 1L);
    ALERTER_SETOPT(CURLOPT_TIMEOUT_MS, (long)ALERTER_ATTEMPT_TIMEOUT_MS);
    ALERTER_SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long)ALERTER_CONNECT_TIMEOUT_MS);
    ALERTER_SETOPT(CURLOPT_USERAGENT, ALERTER_USER_AGENT);
    ALERTER_SETOPT(CURLOPT_HTTPHEADER, s->headers);
    ALERTER_SETOPT(CURLOPT_POST, 1L);
    ALERTER_SETOPT(CURLOPT_POSTFIELDSIZE, (long)r->body_len);
    ALERTER_SETOPT(CURLOPT_COPYPOSTFIELDS, r->body);
    ALERTER_SETOPT(CURLOPT_WRITEFUNCTION, alerter_write_cb);
    ALERTER_SETOPT(CURLOPT_WRITEDATA, s);
    ALERTER_SETOPT(CURLOPT_ERRORBUFFER, s->errbuf);
    ALERTER_SETOPT(CURLOPT_PRIVATE, s);
    if (!d->allow_private) {
        ALERTER_SETOPT(CURLOPT_OPENSOCKETFUNCTION, alerter_opensocket_cb);
        ALERTER_SETOPT(CURLOPT_OPENSOCKETDATA, s);
    }
#undef ALERTER_SETOPT
    return alerter_setup_result(c);
}

/* SMTP transfer of an email record: one recipient, the stored message. */
static cg_err alerter_mail_setup(alerter_deliver *d, alerter_slot *s, const alerter_record *r)
{
    char rcpt[PROTO_URL_MAX + 3], from[PROTO_URL_MAX + 3];
    snprintf(rcpt, sizeof rcpt, "<%s>", r->url + strlen(ALERTER_MAILTO));
    snprintf(from, sizeof from, "<%s>", d->smtp.from);
    if ((s->headers = curl_slist_append(NULL, rcpt)) == NULL ||
        (s->mail = malloc(r->body_len + 1)) == NULL) {
        return CG_ERR_NOMEM;
    }
    memcpy(s->mail, r->body, r->body_len);
    s->mail_len = r->body_len;
    s->mail_off = 0;
    CURL *e = s->easy;
    CURLcode c = CURLE_OK;
#define ALERTER_SETOPT(opt, val)           \
    if (c == CURLE_OK) {                   \
        c = curl_easy_setopt(e, opt, val); \
    }
    ALERTER_SETOPT(CURLOPT_URL, d->smtp.url);
    ALERTER_SETOPT(CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    ALERTER_SETOPT(CURLOPT_PROXY, "");
    ALERTER_SETOPT(CURLOPT_NOSIGNAL, 1L);
    ALERTER_SETOPT(CURLOPT_TIMEOUT_MS, (long)ALERTER_ATTEMPT_TIMEOUT_MS);
    ALERTER_SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long)ALERTER_CONNECT_TIMEOUT_MS);
    ALERTER_SETOPT(CURLOPT_MAIL_FROM, from);
    ALERTER_SETOPT(CURLOPT_MAIL_RCPT, s->headers);
    ALERTER_SETOPT(CURLOPT_UPLOAD, 1L);
    ALERTER_SETOPT(CURLOPT_INFILESIZE_LARGE, (curl_off_t)s->mail_len);
    ALERTER_SETOPT(CURLOPT_READFUNCTION, alerter_read_cb);
    ALERTER_SETOPT(CURLOPT_READDATA, s);
    ALERTER_SETOPT(CURLOPT_ERRORBUFFER, s->errbuf);
    ALERTER_SETOPT(CURLOPT_PRIVATE, s);
    if (d->smtp.tls == 1) {
        ALERTER_SETOPT(CURLOPT_USE_SSL, (long)CURLUSESSL_ALL); /* no plain-text fallback */
    }
    if (d->smtp.ca_file != NULL && d->smtp.ca_file[0] != '\0') {
        ALERTER_SETOPT(CURLOPT_CAINFO, d->smtp.ca_file);
    }
    if (d->smtp.user != NULL && d->smtp.user[0] != '\0') {
        ALERTER_SETOPT(CURLOPT_USERNAME, d->smtp.user);
        ALERTER_SETOPT(CURLOPT_PASSWORD, d->smtp.password != NULL ? d->smtp.password : "");
    }
#undef ALERTER_SETOPT
    return alerter_setup_result(c);
}

static cg_err alerter_mail_start(alerter_deliver *d, alerter_slot *s, const alerter_record *r)
{
    if (d->smtp.url == NULL || d->smtp.url[0] == '\0') {
        alerter_slot_gone(d, s, "email not configured (smtp_url)");
        return CG_ERR_OK;
    }
    cg_err err = CG_ERR_NOMEM;
    if ((s->easy = curl_easy_init()) == NULL || (err = alerter_mail_setup(d, s, r)) != CG_ERR_OK ||
        curl_multi_add_handle(d->multi, s->easy) != CURLM_OK) {
        alerter_slot_release(d, s);
        return err == CG_ERR_OK ? CG_ERR_NOMEM : err;
    }
    s->state = ALERTER_SLOT_RUNNING;
    d->busy_n++;
    return CG_ERR_OK;
}

cg_err alerter_deliver_start(alerter_deliver *d, const alerter_record *r, int64_t now_s)
{
    alerter_slot *s = alerter_slot_take(d, r);
    if (s == NULL) {
        return CG_ERR_RATE;
    }
    if (r->channel == ALERTER_CH_EMAIL) {
        return alerter_mail_start(d, s, r);
    }
    if (alerter_url_check(r->url, d->allow_http) != CG_ERR_OK) {
        alerter_slot_gone(d, s, d->allow_http ? "url not allowed" : "url not allowed: https only");
        return CG_ERR_OK;
    }
    cg_err err = alerter_headers(s, r, now_s);
    if (err == CG_ERR_INVAL) {
        alerter_slot_release(d, s);
        alerter_slot_gone(d, s, "invalid webhook secret");
        return CG_ERR_OK;
    }
    if (err != CG_ERR_OK) {
        goto fail;
    }
    if ((s->easy = curl_easy_init()) == NULL) {
        err = CG_ERR_NOMEM;
        goto fail;
    }
    if ((err = alerter_easy_setup(d, s, r)) != CG_ERR_OK) {
        goto fail;
    }
    if (curl_multi_add_handle(d->multi, s->easy) != CURLM_OK) {
        err = CG_ERR_NOMEM;
        goto fail;
    }
    s->state = ALERTER_SLOT_RUNNING;
    d->busy_n++;
    return CG_ERR_OK;
fail:
    alerter_slot_release(d, s);
    return err;
}

/* ---- finishing ----------------------------------------------------------------------- */

static void alerter_classify(alerter_slot *s, CURLcode code)
{
    alerter_result *res = &s->result;
    long status = 0;
    curl_off_t retry_after = 0;
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
    res->status = status;
    res->elapsed_ms = cg_mono_ms() - s->started_mono_ms;
    if (res->channel == ALERTER_CH_EMAIL) {
        if (code == CURLE_OK) {
            res->outcome = ALERTER_OUT_DELIVERED;
            return;
        }
        res->outcome = ALERTER_OUT_RETRY;
        snprintf(res->error, sizeof res->error, "smtp %ld: %.60s%s%.50s", status,
                 curl_easy_strerror(code), s->errbuf[0] != '\0' ? ": " : "", s->errbuf);
        return;
    }
    if (status >= 200 && status <= 299) {
        res->outcome = ALERTER_OUT_DELIVERED;
        return;
    }
    if (status == 410) {
        res->outcome = ALERTER_OUT_GONE_410;
        snprintf(res->error, sizeof res->error, "410 gone");
        return;
    }
    res->outcome = ALERTER_OUT_RETRY;
    if (status > 0) {
        if (curl_easy_getinfo(s->easy, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK &&
            retry_after > 0) {
            res->retry_after_s = (int64_t)retry_after;
        }
        snprintf(res->error, sizeof res->error, "http %ld", status);
    } else if (s->refused != NULL) {
        snprintf(res->error, sizeof res->error, "address refused: %s", s->refused);
    } else if (code == CURLE_OPERATION_TIMEDOUT) {
        snprintf(res->error, sizeof res->error, "timeout");
    } else {
        /* Truncation is fine: the error is for people reading logs. */
        snprintf(res->error, sizeof res->error, "%.60s%s%.60s", curl_easy_strerror(code),
                 s->errbuf[0] != '\0' ? ": " : "", s->errbuf);
    }
}

static void alerter_reap(alerter_deliver *d)
{
    CURLMsg *m;
    int left = 0;
    while ((m = curl_multi_info_read(d->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE) {
            continue;
        }
        alerter_slot *s = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
        CURLcode code = m->data.result;
        alerter_classify(s, code);
        alerter_slot_release(d, s); /* m is invalid from here */
        s->state = ALERTER_SLOT_FINISHED;
    }
}

cg_err alerter_deliver_poll(alerter_deliver *d, int timeout_ms)
{
    int running = 0, fds = 0;
    CURLMcode mc = curl_multi_poll(d->multi, NULL, 0, timeout_ms, &fds);
    if (mc == CURLM_OK) {
        mc = curl_multi_perform(d->multi, &running);
    }
    alerter_reap(d);
    if (mc != CURLM_OK) {
        cg_log(CG_LOG_ERROR, "curl multi failed", "curl", curl_multi_strerror(mc), NULL);
        return CG_ERR_INTERNAL;
    }
    return CG_ERR_OK;
}

uint32_t alerter_deliver_collect(alerter_deliver *d, alerter_result *out, uint32_t cap)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < ALERTER_INFLIGHT_MAX && n < cap; i++) {
        alerter_slot *s = &d->slots[i];
        if (s->state == ALERTER_SLOT_FINISHED) {
            out[n++] = s->result;
            s->state = ALERTER_SLOT_FREE;
            d->busy_n--;
        }
    }
    return n;
}
