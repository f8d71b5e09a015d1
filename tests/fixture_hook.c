/*
 * fixture_hook.c — a webhook receiver for integration tests.
 *
 * A cg_http server (the project's own HTTP server) on its own thread and uv
 * loop, listening on 127.0.0.1 port 0 (the kernel picks a free port). It
 * records every request (method, path, headers, body) under a mutex and
 * answers from a configured status sequence. The test thread reads the
 * records; only the hook thread touches the loop. Beyond the first
 * FX_HOOK_REQS_MAX requests stored in full, every request is tallied by its
 * webhook-id in a hash table (FX_HOOK_IDS_MAX ids), so a test of thousands of
 * deliveries can check that each id was delivered, and how often.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "cg_http.h"
#include "fixture.h"

#define FX_HOOK_REQS_MAX 256
#define FX_HOOK_STATUSES_MAX 16
#define FX_HOOK_IDS_MAX 16384 /* power of two */

typedef struct fx_hook_id {
    char id[72]; /* "" = empty slot */
    uint32_t ok; /* 2xx answers */
} fx_hook_id;

struct fx_hook {
    cg_http_thread *srv; /* the server's thread and loop */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int statuses[FX_HOOK_STATUSES_MAX];
    size_t status_n;
    fx_hook_req reqs[FX_HOOK_REQS_MAX]; /* under mu */
    size_t req_n;
    size_t total_n;  /* every request, stored or not; under mu */
    fx_hook_id *ids; /* FX_HOOK_IDS_MAX; under mu */
    size_t ids_n;
    size_t bad_sigs;
    char secret[80];        /* "" = do not verify */
    int forced;             /* status answered to everything; 0 = the sequence */
    char extra_header[256]; /* "Name: value\r\n" added to every answer, or "" */
};

/* The slot of id (existing or empty); NULL if the table is full. Under mu. */
static fx_hook_id *fx_hook_id_slot(fx_hook *h, const char *id)
{
    uint64_t x = 1469598103934665603ull;
    for (const char *p = id; *p != '\0'; p++) {
        x = (x ^ (unsigned char)*p) * 1099511628211ull;
    }
    for (size_t i = 0; i < FX_HOOK_IDS_MAX; i++) {
        fx_hook_id *e = &h->ids[(x + i) & (FX_HOOK_IDS_MAX - 1)];
        if (e->id[0] == '\0' || strcmp(e->id, id) == 0) {
            return e;
        }
    }
    return NULL;
}

static void fx_hook_copy(fx_hook_req *dst, const fx_hook_req *src)
{
    memset(dst, 0, sizeof(*dst));
    memcpy(dst->method, src->method, sizeof(dst->method));
    memcpy(dst->path, src->path, sizeof(dst->path));
    dst->headers = calloc(src->header_n ? src->header_n : 1, sizeof(fx_header));
    dst->body = malloc(src->body_len + 1);
    if (dst->headers == NULL || dst->body == NULL) {
        abort(); /* test process out of memory */
    }
    for (size_t i = 0; i < src->header_n; i++) {
        dst->headers[i].name = strdup(src->headers[i].name);
        dst->headers[i].value = strdup(src->headers[i].value);
    }
    dst->header_n = src->header_n;
    memcpy(dst->body, src->body, src->body_len);
    dst->body[src->body_len] = '\0';
    dst->body_len = src->body_len;
    dst->at_ms = src->at_ms;
}

/* On the hook loop: record the request, answer with the next status. */
static void fx_hook_handler_cb(cg_http_conn *conn, const cg_http_req *req, void *ud)
{
    fx_hook *h = ud;
    fx_hook_req rec;
    fx_header hs[CG_HTTP_HEADERS_MAX];
    memset(&rec, 0, sizeof(rec));
    snprintf(rec.method, sizeof(rec.method), "%s", req->method);
    snprintf(rec.path, sizeof(rec.path), "%s", req->path);
    for (uint32_t i = 0; i < req->header_n && i < CG_HTTP_HEADERS_MAX; i++) {
        hs[i].name = (char *)req->headers[i].name;
        hs[i].value = (char *)req->headers[i].value;
    }
    rec.headers = hs;
    rec.header_n = req->header_n;
    rec.body = (char *)req->body;
    rec.body_len = req->body_len;
    rec.at_ms = fx_now_ms();
    int status = 200;
    char ra[256] = "";
    pthread_mutex_lock(&h->mu);
    size_t i = h->total_n++;
    if (h->status_n > 0) {
        status = h->statuses[i < h->status_n ? i : h->status_n - 1];
    }
    if (h->forced != 0) {
        status = h->forced;
    }
    snprintf(ra, sizeof(ra), "%s", h->extra_header);
    if (h->secret[0] != '\0' && !fx_sig_verifies(&rec, h->secret)) {
        h->bad_sigs++;
    }
    const char *wid = cg_http_req_header(req, "webhook-id");
    fx_hook_id *slot =
        wid != NULL && strlen(wid) < sizeof(slot->id) ? fx_hook_id_slot(h, wid) : NULL;
    if (slot != NULL) {
        if (slot->id[0] == '\0') {
            snprintf(slot->id, sizeof(slot->id), "%s", wid);
            h->ids_n++;
        }
        slot->ok += status >= 200 && status <= 299;
    }
    if (i < FX_HOOK_REQS_MAX) {
        fx_hook_copy(&h->reqs[i], &rec);
        for (size_t k = 0; k < h->reqs[i].header_n; k++) {
            for (char *q = h->reqs[i].headers[k].name; *q != '\0'; q++) {
                *q = (char)(*q >= 'A' && *q <= 'Z' ? *q + 32 : *q);
            }
        }
        h->req_n++;
    }
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    cg_http_respond(conn, status, ra[0] != '\0' ? ra : NULL, "text/plain", "ok\n", 3);
}

fx_hook *fx_hook_start(const int *statuses, size_t n)
{
    fx_hook *h = calloc(1, sizeof(*h));
    FX_CHECK(h != NULL, "calloc");
    FX_CHECK(n <= FX_HOOK_STATUSES_MAX, "too many statuses");
    for (size_t i = 0; statuses != NULL && i < n; i++) {
        h->statuses[h->status_n++] = statuses[i];
    }
    h->ids = calloc(FX_HOOK_IDS_MAX, sizeof(*h->ids));
    FX_CHECK(h->ids != NULL, "calloc");
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    cg_http_opts o = {
        .body_max_bytes = 1u << 20,
        .header_max_bytes = 64u << 10,
        .request_timeout_ms = 10000,
        .idle_timeout_ms = 30000,
        .conns_max = 64,
    };
    /* Port 0: the kernel picks a free port, read back from the server. */
    if (cg_http_thread_start("127.0.0.1:0", &o, fx_hook_handler_cb, h, &h->srv) != CG_ERR_OK) {
        fx_fail(__FILE__, __LINE__, "webhook receiver could not listen");
    }
    fx_log("webhook receiver on 127.0.0.1:%d", cg_http_thread_port(h->srv));
    return h;
}

int fx_hook_port(const fx_hook *h)
{
    return cg_http_thread_port(h->srv);
}

size_t fx_hook_count(fx_hook *h)
{
    pthread_mutex_lock(&h->mu);
    size_t n = h->req_n;
    pthread_mutex_unlock(&h->mu);
    return n;
}

size_t fx_hook_wait(fx_hook *h, size_t n, int64_t timeout_ms)
{
    int64_t deadline = fx_now_ms() + timeout_ms;
    size_t got = fx_hook_count(h);
    while (got < n && fx_now_ms() < deadline) {
        fx_sleep_ms(20);
        got = fx_hook_count(h);
    }
    return got;
}

void fx_hook_get(fx_hook *h, size_t i, fx_hook_req *out)
{
    pthread_mutex_lock(&h->mu);
    int ok = i < h->req_n;
    if (ok) {
        fx_hook_copy(out, &h->reqs[i]);
    }
    pthread_mutex_unlock(&h->mu);
    FX_CHECK(ok, "webhook request %zu not received", i);
}

void fx_hook_req_free(fx_hook_req *r)
{
    for (size_t i = 0; i < r->header_n; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

const char *fx_hook_req_header(const fx_hook_req *r, const char *name)
{
    for (size_t i = 0; i < r->header_n; i++) {
        if (strcasecmp(r->headers[i].name, name) == 0) {
            return r->headers[i].value;
        }
    }
    return NULL;
}

void fx_hook_stop(fx_hook *h)
{
    cg_http_thread_stop(h->srv);
    for (size_t i = 0; i < h->req_n && i < FX_HOOK_REQS_MAX; i++) {
        fx_hook_req_free(&h->reqs[i]);
    }
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h->ids);
    free(h);
}

fx_hook_tally fx_hook_tally_get(fx_hook *h)
{
    fx_hook_tally t = {0, 0, 0, 0, 0};
    pthread_mutex_lock(&h->mu);
    t.requests = h->total_n;
    t.bad_sigs = h->bad_sigs;
    for (size_t i = 0; i < FX_HOOK_IDS_MAX; i++) {
        t.ok_ids += h->ids[i].ok > 0;
        t.ok_dup_ids += h->ids[i].ok > 1;
        t.ok_answers += h->ids[i].ok;
    }
    pthread_mutex_unlock(&h->mu);
    return t;
}

void fx_hook_set_secret(fx_hook *h, const char *secret)
{
    pthread_mutex_lock(&h->mu);
    snprintf(h->secret, sizeof(h->secret), "%s", secret != NULL ? secret : "");
    pthread_mutex_unlock(&h->mu);
}

void fx_hook_force_status(fx_hook *h, int status)
{
    pthread_mutex_lock(&h->mu);
    h->forced = status;
    pthread_mutex_unlock(&h->mu);
}

void fx_hook_set_header(fx_hook *h, const char *name, const char *value)
{
    pthread_mutex_lock(&h->mu);
    h->extra_header[0] = '\0';
    if (name != NULL && value != NULL) {
        snprintf(h->extra_header, sizeof(h->extra_header), "%s: %s\r\n", name, value);
    }
    pthread_mutex_unlock(&h->mu);
}
