/*
 * gw_upstream.c — libcurl multi on a libuv loop (see gw_upstream.h).
 *
 * curl tells us which sockets to watch (socket callback → one uv_poll_t per
 * socket, gw_sock) and when to call it back (timer callback → one uv_timer_t);
 * every readiness or timeout becomes curl_multi_socket_action, after which
 * finished transfers are collected with curl_multi_info_read.
 *
 * Re-entrancy: user callbacks (data_cb) run inside curl calls. libcurl forbids
 * removing a handle from inside its callbacks, so `in_curl` counts nested curl
 * calls and a cancel or resume asked for while it is non-zero is queued on the
 * deferred list and carried out by an idle callback, outside curl. A transfer
 * on the deferred list is freed only by that list's processor.
 */
#include "gw_upstream.h"
#include "gw_h1.h"
#include "gw_metrics.h"

#include <assert.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cg_log.h"

/* Connect phase bound; the whole transfer is bounded by the caller's timeout. */
#define GW_UPSTREAM_CONNECT_TIMEOUT_MS 10000u
#define GW_UPSTREAM_AUTH_MAX 512
/* Per worker: finished easy handles kept for reuse (far cheaper than curl_easy_init +
 * cleanup), and request header lists built once per bearer. A handle whose transfer
 * ended cleanly keeps its options ("primed": only the per-request ones are set again);
 * any other is curl_easy_reset first and set up in full. */
#define GW_UP_EASY_POOL 64
#define GW_UP_HDR_CACHE 8
/* Transfers are spread over several multi handles once one holds GW_UP_MULTI_TARGET:
 * libcurl 7.88 walks every connection to a host in the multi's cache on each new
 * transfer (ConnectionExists) and searches it linearly to remove one, O(n) per request
 * with n ~ the streams open (bench/RESULTS.md, 5,000 streams). At low load everything
 * stays in the first multi, so connections are reused as before. */
#define GW_UP_MULTIS 32
#define GW_UP_MULTI_TARGET 256

typedef struct gw_umulti {
    gw_upstream *u;
    CURLM *multi;
    uv_timer_t timer;
    struct gw_sock *socks;
    uint32_t active; /* transfers in this multi */
} gw_umulti;

typedef struct gw_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    gw_umulti *m;
    struct gw_sock *prev, *next;
} gw_sock;

struct gw_xfer {
    gw_xfer_base base; /* builtin 0 */
    gw_upstream *u;
    gw_umulti *m; /* the multi it was added to */
    CURL *easy;
    struct curl_slist *headers; /* owned unless headers_cached */
    uint8_t headers_cached;     /* headers belong to u->hdrs */
    gw_xfer_data_cb data_cb;
    gw_xfer_done_cb done_cb;
    void *ud;
    gw_xfer *prev, *next; /* every live transfer of u */
    gw_xfer *dnext;       /* deferred list */
    uint8_t deferred;     /* on the deferred list: only its processor frees */
    uint8_t want_resume;
    uint8_t paused;
    uint8_t cancelled; /* no callbacks any more; freed as soon as curl allows */
    uint8_t aborted;   /* data_cb returned GW_XFER_ABORT */
    uint8_t removed;   /* easy handle no longer in the multi */
    uint8_t have_head;
    uint8_t clean; /* finished with CURLE_OK, never paused or aborted */
    int status;
    char ctype[GW_UPSTREAM_CTYPE_MAX + 1];
    char errbuf[CURL_ERROR_SIZE];
};

struct gw_upstream {
    uv_loop_t *loop;
    gw_h1 *h1;                  /* http:// transfers when upstream_client is builtin; else NULL */
    gw_umulti *m[GW_UP_MULTIS]; /* created as needed; m[0] always */
    uint32_t m_n;
    long cache; /* CURLMOPT_MAXCONNECTS of each */
    uv_idle_t idle;
    gw_xfer *xfers;
    uint32_t xfer_n;
    gw_xfer *deferred;
    int in_curl; /* depth of curl calls in progress (their callbacks may run user code) */
    int handles_open;
    uint8_t closing;
    uint32_t easy_n;
    CURL *easy_pool[GW_UP_EASY_POOL];
    uint8_t easy_primed[GW_UP_EASY_POOL]; /* the constant options are still set */
    uint32_t hdr_n;
    struct {
        char bearer[GW_UPSTREAM_AUTH_MAX];
        struct curl_slist *list;
    } hdrs[GW_UP_HDR_CACHE];
};

static void gw_up_check_done(gw_umulti *m);
static gw_umulti *gw_up_pick(gw_upstream *u);
static void gw_up_idle_cb(uv_idle_t *h);

/* ---- curl → cg_err: the one place curl's codes are translated ---- */

static cg_err gw_up_err_from_curl(CURLcode rc)
{
    switch (rc) {
    case CURLE_OK:
        return CG_ERR_OK;
    case CURLE_OPERATION_TIMEDOUT:
        return CG_ERR_TIMEOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
        return CG_ERR_UNAVAILABLE;
    case CURLE_OUT_OF_MEMORY:
        return CG_ERR_NOMEM;
    default:
        return CG_ERR_IO;
    }
}

/* ---- sockets ---- */

static void gw_sock_free_cb(uv_handle_t *h)
{
    free(h->data);
}

static void gw_sock_close(gw_umulti *m, gw_sock *k)
{
    if (k->prev) {
        k->prev->next = k->next;
    } else {
        m->socks = k->next;
    }
    if (k->next) {
        k->next->prev = k->prev;
    }
    uv_close((uv_handle_t *)&k->poll, gw_sock_free_cb);
}

static void gw_up_action(gw_umulti *m, curl_socket_t fd, int flags)
{
    int running = 0;
    m->u->in_curl++;
    curl_multi_socket_action(m->multi, fd, flags, &running);
    m->u->in_curl--;
    gw_up_check_done(m);
}

static void gw_up_poll_cb(uv_poll_t *h, int status, int events)
{
    gw_sock *k = h->data;
    int flags = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        flags |= (events & UV_READABLE) ? CURL_CSELECT_IN : 0;
        flags |= (events & UV_WRITABLE) ? CURL_CSELECT_OUT : 0;
    }
    gw_up_action(k->m, k->fd, flags);
}

static int gw_up_socket_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)e;
    gw_umulti *m = userp;
    gw_sock *k = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (k != NULL) {
            gw_sock_close(m, k);
            curl_multi_assign(m->multi, fd, NULL);
        }
        return 0;
    }
    if (k == NULL) {
        k = calloc(1, sizeof(*k));
        if (k == NULL || uv_poll_init_socket(m->u->loop, &k->poll, fd) != 0) {
            free(k);
            cg_log(CG_LOG_ERROR, "upstream: cannot watch socket", NULL);
            return -1;
        }
        k->fd = fd;
        k->m = m;
        k->poll.data = k;
        k->next = m->socks;
        if (m->socks) {
            m->socks->prev = k;
        }
        m->socks = k;
        curl_multi_assign(m->multi, fd, k);
    }
    int events = 0;
    events |= (what & CURL_POLL_IN) ? UV_READABLE : 0;
    events |= (what & CURL_POLL_OUT) ? UV_WRITABLE : 0;
    uv_poll_start(&k->poll, events, gw_up_poll_cb);
    return 0;
}

/* ---- timer ---- */

static void gw_up_timeout_cb(uv_timer_t *t)
{
    gw_up_action(t->data, CURL_SOCKET_TIMEOUT, 0);
}

static int gw_up_timer_fn(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    gw_umulti *m = userp;
    if (timeout_ms < 0) {
        uv_timer_stop(&m->timer);
    } else {
        /* 0 means "as soon as possible": the next loop turn, never re-entrantly. */
        uv_timer_start(&m->timer, gw_up_timeout_cb, (uint64_t)timeout_ms, 0);
    }
    return 0;
}

/* ---- transfers ---- */

static void gw_xfer_free(gw_xfer *x)
{
    gw_upstream *u = x->u;
    assert(!x->deferred);
    if (!x->removed) {
        u->in_curl++;
        curl_multi_remove_handle(x->m->multi, x->easy);
        u->in_curl--;
    }
    x->m->active--;
    if (!u->closing && u->easy_n < GW_UP_EASY_POOL) {
        if (!x->clean) {
            curl_easy_reset(x->easy);
        } else {
            curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, NULL); /* x->errbuf goes away */
        }
        u->easy_primed[u->easy_n] = x->clean;
        u->easy_pool[u->easy_n++] = x->easy;
    } else {
        curl_easy_cleanup(x->easy);
    }
    if (!x->headers_cached) {
        curl_slist_free_all(x->headers);
    }
    if (x->prev) {
        x->prev->next = x->next;
    } else {
        u->xfers = x->next;
    }
    if (x->next) {
        x->next->prev = x->prev;
    }
    u->xfer_n--;
    free(x);
}

static void gw_up_defer(gw_xfer *x)
{
    gw_upstream *u = x->u;
    if (!x->deferred) {
        x->deferred = 1;
        x->dnext = u->deferred;
        u->deferred = x;
    }
    uv_idle_start(&u->idle, gw_up_idle_cb);
}

static void gw_xfer_read_head(gw_xfer *x)
{
    long code = 0;
    char *ct = NULL;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ct);
    x->status = (int)code;
    snprintf(x->ctype, sizeof(x->ctype), "%s", ct ? ct : "");
    x->have_head = 1;
}

static size_t gw_up_write_cb(char *p, size_t size, size_t nmemb, void *ud)
{
    gw_xfer *x = ud;
    size_t n = size * nmemb;
    if (x->cancelled) {
        return 0;
    }
    if (!x->have_head) {
        gw_xfer_read_head(x);
    }
    int r = x->data_cb(x->ud, x->status, x->ctype, p, n);
    if (x->cancelled) {
        return 0;
    }
    if (r == GW_XFER_PAUSE) {
        x->paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    }
    if (r == GW_XFER_ABORT) {
        x->aborted = 1;
        return 0;
    }
    return n;
}

/* A transfer finished (already removed from the multi). */
static void gw_xfer_finish(gw_xfer *x, CURLcode rc)
{
    if (!x->cancelled) {
        if (!x->have_head) {
            gw_xfer_read_head(x);
        }
        cg_err err = x->aborted ? CG_ERR_IO : gw_up_err_from_curl(rc);
        x->clean = rc == CURLE_OK && !x->aborted && !x->paused && !x->want_resume;
        const char *detail = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
        gw_xfer_done_cb cb = x->done_cb;
        gw_metrics_upstream_curl(x->easy);
        x->data_cb = NULL;
        x->done_cb = NULL;
        cb(x->ud, err, x->status, x->ctype, detail);
    }
    if (x->deferred) {
        x->cancelled = 1; /* the deferred list's processor frees it */
        return;
    }
    gw_xfer_free(x);
}

static void gw_up_check_done(gw_umulti *um)
{
    gw_upstream *u = um->u;
    CURLMsg *m;
    int left = 0;
    while ((m = curl_multi_info_read(um->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE) {
            continue;
        }
        CURL *e = m->easy_handle;
        CURLcode rc = m->data.result;
        gw_xfer *x = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
        u->in_curl++;
        curl_multi_remove_handle(um->multi, e); /* m is invalid from here */
        u->in_curl--;
        x->removed = 1;
        gw_xfer_finish(x, rc);
    }
}

/* Deferred cancels and resumes, outside any curl callback. */
static void gw_up_idle_cb(uv_idle_t *h)
{
    gw_upstream *u = h->data;
    gw_xfer *list = u->deferred;
    u->deferred = NULL;
    uv_idle_stop(h);
    while (list != NULL) {
        gw_xfer *x = list;
        list = x->dnext;
        x->deferred = 0;
        x->dnext = NULL;
        if (x->cancelled) {
            gw_xfer_free(x);
        } else if (x->want_resume) {
            x->want_resume = 0;
            if (x->paused) {
                x->paused = 0;
                u->in_curl++;
                curl_easy_pause(x->easy, CURLPAUSE_CONT);
                u->in_curl--;
            }
        }
    }
    for (uint32_t i = 0; i < u->m_n; i++) {
        gw_up_check_done(u->m[i]);
    }
}

/* The header list for bearer: cached per upstream (borrowed), else built for x (owned). */
static cg_err gw_xfer_headers(gw_xfer *x, const gw_xfer_opts *o);

static cg_err gw_xfer_headers_build(gw_xfer *x, const gw_xfer_opts *o)
{
    char auth[GW_UPSTREAM_AUTH_MAX];
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    x->headers = h;
    /* No "Expect: 100-continue" round trip for large bodies. */
    h = h ? curl_slist_append(h, "Expect:") : NULL;
    if (h != NULL && o->bearer != NULL && o->bearer[0] != '\0') {
        if ((size_t)snprintf(auth, sizeof(auth), "Authorization: Bearer %s", o->bearer) >=
            sizeof(auth)) {
            return CG_ERR_INVAL;
        }
        h = curl_slist_append(h, auth);
        explicit_bzero(auth, sizeof(auth));
    }
    if (h == NULL) {
        return CG_ERR_NOMEM;
    }
    x->headers = h;
    return CG_ERR_OK;
}

static cg_err gw_xfer_headers(gw_xfer *x, const gw_xfer_opts *o)
{
    gw_upstream *u = x->u;
    const char *bearer = o->bearer != NULL ? o->bearer : "";
    size_t blen = strlen(bearer);
    cg_err err;

    if (blen >= GW_UPSTREAM_AUTH_MAX) {
        return gw_xfer_headers_build(x, o); /* refused there (too long) */
    }
    for (uint32_t i = 0; i < u->hdr_n; i++) {
        if (strcmp(u->hdrs[i].bearer, bearer) == 0) {
            x->headers = u->hdrs[i].list;
            x->headers_cached = 1;
            return CG_ERR_OK;
        }
    }
    if ((err = gw_xfer_headers_build(x, o)) != CG_ERR_OK || u->hdr_n >= GW_UP_HDR_CACHE) {
        return err;
    }
    memcpy(u->hdrs[u->hdr_n].bearer, bearer, blen + 1);
    u->hdrs[u->hdr_n].list = x->headers;
    u->hdr_n++;
    x->headers_cached = 1;
    return CG_ERR_OK;
}

static cg_err gw_xfer_setup(gw_xfer *x, const gw_xfer_opts *o, int primed)
{
    cg_err herr = gw_xfer_headers(x, o);
    if (herr != CG_ERR_OK) {
        return herr;
    }
    uint32_t connect_ms = o->timeout_ms < GW_UPSTREAM_CONNECT_TIMEOUT_MS
                              ? o->timeout_ms
                              : GW_UPSTREAM_CONNECT_TIMEOUT_MS;
    CURL *e = x->easy;
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_URL, o->url) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, o->body) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, x) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, x) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)o->timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms) != CURLE_OK;
    if (!primed) { /* the same for every transfer */
        bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, gw_up_write_cb) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK;
    }
    return bad ? CG_ERR_INTERNAL : CG_ERR_OK;
}

cg_err gw_xfer_start(gw_upstream *u, const gw_xfer_opts *o, gw_xfer_data_cb data_cb,
                     gw_xfer_done_cb done_cb, void *ud, gw_xfer **out)
{
    if (strlen(o->url) > GW_UPSTREAM_URL_MAX) {
        return CG_ERR_INVAL;
    }
    if (u->h1 != NULL && strncmp(o->url, "http://", 7) == 0) {
        gw_xfer_base *b = NULL;
        cg_err herr = gw_h1_start(u->h1, o, data_cb, done_cb, ud, &b);
        if (herr == CG_ERR_OK) {
            *out = (gw_xfer *)b;
        }
        if (herr != CG_ERR_INVAL) {
            return herr;
        }
        /* A URL form the builtin client does not take: libcurl. */
    }
    gw_xfer *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        return CG_ERR_NOMEM;
    }
    x->u = u;
    x->data_cb = data_cb;
    x->done_cb = done_cb;
    x->ud = ud;
    x->removed = 1;
    int primed = 0;
    if (u->easy_n > 0) {
        u->easy_n--;
        x->easy = u->easy_pool[u->easy_n];
        primed = u->easy_primed[u->easy_n];
    } else {
        x->easy = curl_easy_init();
    }
    cg_err err = x->easy ? gw_xfer_setup(x, o, primed) : CG_ERR_NOMEM;
    if (err != CG_ERR_OK) {
        goto fail;
    }
    x->m = gw_up_pick(u);
    u->in_curl++;
    CURLMcode mc = curl_multi_add_handle(x->m->multi, x->easy);
    u->in_curl--;
    if (mc != CURLM_OK) {
        err = CG_ERR_INTERNAL;
        goto fail;
    }
    x->m->active++;
    x->removed = 0;
    x->next = u->xfers;
    if (u->xfers) {
        u->xfers->prev = x;
    }
    u->xfers = x;
    u->xfer_n++;
    *out = x;
    return CG_ERR_OK;
fail:
    if (x->easy) {
        curl_easy_cleanup(x->easy);
    }
    if (!x->headers_cached) {
        curl_slist_free_all(x->headers);
    }
    free(x);
    return err;
}

void gw_xfer_resume(gw_xfer *x)
{
    if (x->base.builtin) {
        gw_h1_resume(&x->base);
        return;
    }
    if (x->cancelled) {
        return;
    }
    x->want_resume = 1;
    gw_up_defer(x);
}

void gw_xfer_cancel(gw_xfer *x)
{
    if (x->base.builtin) {
        gw_h1_cancel(&x->base);
        return;
    }
    x->cancelled = 1;
    x->data_cb = NULL;
    x->done_cb = NULL;
    x->ud = NULL;
    if (x->u->in_curl > 0 || x->deferred) {
        gw_up_defer(x);
        return;
    }
    gw_xfer_free(x);
}

uint32_t gw_upstream_active(const gw_upstream *u)
{
    return u->xfer_n + (u->h1 != NULL ? gw_h1_active(u->h1) : 0);
}

/* One of u's handles closed: u is freed with the last. */
static void gw_up_unref(gw_upstream *u)
{
    if (--u->handles_open == 0) {
        free(u);
    }
}

static void gw_up_timer_closed_cb(uv_handle_t *h)
{
    gw_umulti *m = h->data;
    gw_upstream *u = m->u;
    free(m);
    gw_up_unref(u);
}

static void gw_up_handle_closed_cb(uv_handle_t *h);

/* One more multi handle (NULL if it cannot be made). */
static gw_umulti *gw_up_multi_new(gw_upstream *u)
{
    gw_umulti *m = calloc(1, sizeof(*m));
    if (m == NULL || (m->multi = curl_multi_init()) == NULL) {
        free(m);
        return NULL;
    }
    m->u = u;
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, gw_up_socket_cb);
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, gw_up_timer_fn);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, u->cache);
    uv_timer_init(u->loop, &m->timer);
    m->timer.data = m;
    u->handles_open++;
    u->m[u->m_n++] = m;
    if (u->m_n > 1) {
        char n[12];
        snprintf(n, sizeof(n), "%u", u->m_n);
        cg_log(CG_LOG_INFO, "upstream transfers now spread over more curl multi handles", "multis",
               n, NULL);
    }
    return m;
}

/* The multi for a new transfer: the first below GW_UP_MULTI_TARGET, else a new one,
 * else the least loaded. */
static gw_umulti *gw_up_pick(gw_upstream *u)
{
    gw_umulti *least = u->m[0];
    for (uint32_t i = 0; i < u->m_n; i++) {
        if (u->m[i]->active < GW_UP_MULTI_TARGET) {
            return u->m[i];
        }
        if (u->m[i]->active < least->active) {
            least = u->m[i];
        }
    }
    gw_umulti *m = u->m_n < GW_UP_MULTIS ? gw_up_multi_new(u) : NULL;
    return m != NULL ? m : least;
}

cg_err gw_upstream_new(uv_loop_t *loop, uint32_t conns_max, int builtin, gw_upstream **out)
{
    gw_upstream *u = calloc(1, sizeof(*u));
    if (u == NULL) {
        return CG_ERR_NOMEM;
    }
    u->loop = loop;
    u->cache = (long)(conns_max > GW_UPSTREAM_CONNS_CACHE ? conns_max : GW_UPSTREAM_CONNS_CACHE);
    if (builtin && gw_h1_new(loop, (uint32_t)u->cache, &u->h1) != CG_ERR_OK) {
        free(u);
        return CG_ERR_NOMEM;
    }
    uv_idle_init(loop, &u->idle);
    u->idle.data = u;
    u->handles_open = 1;
    if (gw_up_multi_new(u) == NULL) {
        uv_close((uv_handle_t *)&u->idle, gw_up_handle_closed_cb);
        return CG_ERR_NOMEM;
    }
    *out = u;
    return CG_ERR_OK;
}

static void gw_up_handle_closed_cb(uv_handle_t *h)
{
    gw_up_unref(h->data);
}

void gw_upstream_close(gw_upstream *u)
{
    assert(u->in_curl == 0);
    u->closing = 1;
    if (u->h1 != NULL) {
        gw_h1_close(u->h1);
        u->h1 = NULL;
    }
    for (gw_xfer *x = u->deferred; x != NULL; x = x->dnext) {
        x->deferred = 0;
    }
    u->deferred = NULL;
    gw_xfer *x = u->xfers;
    while (x != NULL) {
        gw_xfer *next = x->next;
        x->cancelled = 1;
        gw_xfer_free(x);
        x = next;
    }
    assert(u->xfers == NULL && u->xfer_n == 0);
    while (u->easy_n > 0) {
        curl_easy_cleanup(u->easy_pool[--u->easy_n]);
    }
    for (uint32_t i = 0; i < u->hdr_n; i++) {
        explicit_bzero(u->hdrs[i].bearer, sizeof(u->hdrs[i].bearer));
        curl_slist_free_all(u->hdrs[i].list);
    }
    u->hdr_n = 0;
    for (uint32_t i = 0; i < u->m_n; i++) {
        gw_umulti *m = u->m[i];
        curl_multi_cleanup(m->multi);
        m->multi = NULL;
        while (m->socks != NULL) {
            gw_sock_close(m, m->socks);
        }
        uv_close((uv_handle_t *)&m->timer, gw_up_timer_closed_cb);
    }
    u->m_n = 0;
    uv_close((uv_handle_t *)&u->idle, gw_up_handle_closed_cb);
}
