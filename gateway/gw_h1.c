/*
 * gw_h1.c — the builtin HTTP/1.1 client for http:// providers (see gw_h1.h).
 *
 * Objects: an origin per distinct "host:port" (its address and its pool of idle
 * connections), a connection per TCP stream (read all its life: an idle one
 * that reads anything, EOF included, is closed), a transfer per request. Live
 * transfers sit on one list ordered by deadline, watched by one timer (which is
 * re-armed only when it fires or the list was empty, not per request).
 *
 * Re-entrancy: data_cb runs inside http_parser_execute (read callback) or in
 * the resume path; done_cb after the parser returned, with the transfer's
 * connection already parked or closed. A cancel from inside data_cb only marks
 * the transfer; the code after the callback lets go of it. Resumes (and
 * failures found while gw_h1_start is still running) go through an idle
 * callback, so no callback runs inside a caller's call.
 *
 * Lifetime: a transfer is freed when it is off the deadline list, off the
 * deferred list and not waiting for a name lookup. gw_h1 is freed when its two
 * handles, every connection and every lookup are gone.
 */
#include "gw_h1.h"

#include <arpa/inet.h>
#include <http_parser.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "cg_log.h"
#include "cg_str.h"
#include "gw_metrics.h"

#define GW_H1_ORIGINS 32
#define GW_H1_HOST_MAX 255
#define GW_H1_DNS_TTL_MS 60000u
/* A pooled connection idle longer than this is closed instead of reused (providers
 * close idle keep-alive connections after 60-120 s; reusing one as it closes costs a
 * retry). */
#define GW_H1_IDLE_MAX_MS 50000u
#define GW_H1_RBUF 65536

typedef struct h1_conn h1_conn;
typedef struct h1_xfer h1_xfer;

typedef struct h1_origin {
    char auth[GW_H1_HOST_MAX + 8]; /* "host[:port]" as in the URL: the Host header */
    size_t auth_len;
    char host[GW_H1_HOST_MAX + 1]; /* without IPv6 brackets */
    char port[6];
    struct sockaddr_storage addr;
    uint8_t have_addr;
    uint8_t literal; /* an IP address: never looked up */
    uint64_t addr_at;
    h1_conn *idle; /* most recently parked first */
    uint32_t idle_n;
} h1_origin;

struct h1_conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    http_parser parser;
    gw_h1 *h;
    h1_origin *o;
    h1_xfer *x;             /* the transfer using it; NULL when idle */
    h1_conn *prev, *next;   /* h->conns */
    h1_conn *iprev, *inext; /* o->idle */
    uint64_t idle_since;
    uint32_t uses; /* requests completed on it */
    uint8_t connected, writing, closing, in_idle;
    uint8_t reading; /* uv_read_start is in effect */
};

struct h1_xfer {
    gw_xfer_base base;
    gw_h1 *h;
    h1_origin *o;
    h1_conn *c;
    gw_xfer_data_cb data_cb;
    gw_xfer_done_cb done_cb;
    void *ud;
    const char *body;
    size_t body_len;
    char *head;
    size_t head_len;
    uint64_t started, deadline;
    h1_xfer *prev, *next; /* h->xfers, by deadline */
    h1_xfer *dnext;       /* h->deferred */
    uv_getaddrinfo_t gai;
    char *held; /* body bytes read while paused */
    size_t held_len, held_cap;
    int status;
    cg_err fail_err; /* a failure found during gw_h1_start, reported from the idle callback */
    size_t ctype_len;
    uint8_t hf_len, hf_state; /* header field being read; 0 field, 1 content-type value, 2 other */
    uint8_t listed, deferred, resolving, starting, fail_pending, want_resume;
    uint8_t paused, cancelled, in_cb, aborted, complete, keep_alive, have_head, got_bytes;
    uint8_t retried;
    char hf[16];
    char ctype[GW_UPSTREAM_CTYPE_MAX + 1];
    char detail[400];
};

struct gw_h1 {
    uv_loop_t *loop;
    uv_timer_t timer;
    uv_idle_t idle;
    uint32_t cache;
    h1_origin *origins[GW_H1_ORIGINS];
    uint32_t origin_n;
    h1_conn *conns;
    h1_xfer *xfers, *xfers_tail;
    uint32_t xfer_n;
    h1_xfer *deferred;
    uint64_t timer_due; /* deadline the timer is armed for; 0 = not armed */
    int refs;           /* the two handles + connections + lookups in flight */
    uint8_t closing;
    char rbuf[GW_H1_RBUF];
};

static void h1_dial(h1_xfer *x);
static int h1_read_ctl(h1_conn *c, int on);
static void h1_finish(h1_xfer *x, cg_err err, const char *detail, int reusable);
static const http_parser_settings h1_settings;

/* ---- lifetime ---- */

static void h1_unref(gw_h1 *h)
{
    if (--h->refs == 0) {
        for (uint32_t i = 0; i < h->origin_n; i++) {
            free(h->origins[i]);
        }
        free(h);
    }
}

static void h1_handle_closed_cb(uv_handle_t *hd)
{
    h1_unref(hd->data);
}

static void h1_xfer_free(h1_xfer *x)
{
    free(x->held);
    free(x);
}

/* x is off the deadline list and the deferred list and no lookup holds it. */
static int h1_xfer_freeable(const h1_xfer *x)
{
    return !x->listed && !x->deferred && !x->resolving;
}

static void h1_idle_cb(uv_idle_t *i);

static void h1_defer(h1_xfer *x)
{
    gw_h1 *h = x->h;
    if (!x->deferred) {
        x->deferred = 1;
        x->dnext = h->deferred;
        h->deferred = x;
    }
    uv_idle_start(&h->idle, h1_idle_cb);
}

/* ---- connections ---- */

static void h1_conn_closed_cb(uv_handle_t *hd)
{
    h1_conn *c = hd->data;
    gw_h1 *h = c->h;
    free(c);
    h1_unref(h);
}

static void h1_idle_unlink(h1_conn *c)
{
    h1_origin *o = c->o;
    if (c->iprev) {
        c->iprev->inext = c->inext;
    } else {
        o->idle = c->inext;
    }
    if (c->inext) {
        c->inext->iprev = c->iprev;
    }
    c->iprev = c->inext = NULL;
    c->in_idle = 0;
    o->idle_n--;
}

static void h1_conn_close(h1_conn *c)
{
    if (c->closing) {
        return;
    }
    c->closing = 1;
    if (c->in_idle) {
        h1_idle_unlink(c);
    }
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        c->h->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    if (c->x != NULL) {
        c->x->c = NULL;
        c->x = NULL;
    }
    uv_close((uv_handle_t *)&c->tcp, h1_conn_closed_cb);
}

/* c finished a request cleanly: back to its origin's pool (or closed if it is full). */
static void h1_conn_park(h1_conn *c)
{
    gw_h1 *h = c->h;
    h1_origin *o = c->o;
    c->x = NULL;
    /* An idle connection is read all the time (a close or stray bytes drop it); a
     * transfer that finished while paused had stopped reading. */
    if (h->closing || c->writing || !c->connected || o->idle_n >= h->cache ||
        h1_read_ctl(c, 1) != 0) {
        h1_conn_close(c);
        return;
    }
    c->uses++;
    c->idle_since = uv_now(h->loop);
    c->iprev = NULL;
    c->inext = o->idle;
    if (o->idle) {
        o->idle->iprev = c;
    }
    o->idle = c;
    o->idle_n++;
    c->in_idle = 1;
}

/* The most recently parked connection of o young enough to reuse, or NULL. */
static h1_conn *h1_conn_take(h1_origin *o, uint64_t now)
{
    while (o->idle != NULL) {
        h1_conn *c = o->idle;
        h1_idle_unlink(c);
        if (now - c->idle_since <= GW_H1_IDLE_MAX_MS) {
            return c;
        }
        h1_conn_close(c);
    }
    return NULL;
}

/* x lets go of its connection: parked when reusable, else closed. */
static void h1_detach(h1_xfer *x, int reusable)
{
    h1_conn *c = x->c;
    if (c == NULL) {
        return;
    }
    x->c = NULL;
    c->x = NULL;
    if (reusable) {
        h1_conn_park(c);
    } else {
        h1_conn_close(c);
    }
}

/* ---- the deadline list ---- */

static void h1_timer_cb(uv_timer_t *t);

static void h1_timer_arm(gw_h1 *h)
{
    if (h->xfers == NULL || h->closing) {
        uv_timer_stop(&h->timer);
        h->timer_due = 0;
        return;
    }
    uint64_t due = h->xfers->deadline;
    if (h->timer_due != 0 && h->timer_due <= due) {
        return; /* fires at or before the head's deadline and re-arms then */
    }
    uint64_t now = uv_now(h->loop);
    h->timer_due = due;
    uv_timer_start(&h->timer, h1_timer_cb, due > now ? due - now : 0, 0);
}

static void h1_list_add(h1_xfer *x)
{
    gw_h1 *h = x->h;
    h1_xfer *after = h->xfers_tail;
    while (after != NULL && after->deadline > x->deadline) {
        after = after->prev;
    }
    x->prev = after;
    x->next = after ? after->next : h->xfers;
    if (x->next) {
        x->next->prev = x;
    } else {
        h->xfers_tail = x;
    }
    if (after) {
        after->next = x;
    } else {
        h->xfers = x;
    }
    x->listed = 1;
    h->xfer_n++;
    if (h->xfers == x) {
        h1_timer_arm(h);
    }
}

static void h1_list_remove(h1_xfer *x)
{
    gw_h1 *h = x->h;
    if (!x->listed) {
        return;
    }
    if (x->prev) {
        x->prev->next = x->next;
    } else {
        h->xfers = x->next;
    }
    if (x->next) {
        x->next->prev = x->prev;
    } else {
        h->xfers_tail = x->prev;
    }
    x->prev = x->next = NULL;
    x->listed = 0;
    h->xfer_n--;
}

static void h1_timer_cb(uv_timer_t *t)
{
    gw_h1 *h = t->data;
    uint64_t now = uv_now(h->loop);
    h->timer_due = 0;
    while (h->xfers != NULL && h->xfers->deadline <= now) {
        h1_xfer *x = h->xfers;
        snprintf(x->detail, sizeof(x->detail), "no complete answer within %llu ms",
                 (unsigned long long)(x->deadline - x->started));
        h1_finish(x, CG_ERR_TIMEOUT, x->detail, 0);
    }
    h1_timer_arm(h);
}

/* ---- end of a transfer ---- */

/* x gets no more callbacks and leaves everything; freed unless a list or lookup holds it. */
static void h1_release(h1_xfer *x, int reusable)
{
    h1_detach(x, reusable);
    h1_list_remove(x);
    x->cancelled = 1;
    x->data_cb = NULL;
    x->done_cb = NULL;
    if (h1_xfer_freeable(x)) {
        h1_xfer_free(x);
    }
}

static void h1_finish(h1_xfer *x, cg_err err, const char *detail, int reusable)
{
    if (x->starting) { /* never call back from inside gw_h1_start */
        h1_detach(x, 0);
        x->fail_pending = 1;
        x->fail_err = err;
        if (detail != x->detail) {
            snprintf(x->detail, sizeof(x->detail), "%s", detail ? detail : "");
        }
        h1_defer(x);
        return;
    }
    h1_detach(x, reusable);
    h1_list_remove(x);
    gw_xfer_done_cb cb = x->done_cb;
    if (!x->cancelled && cb != NULL) {
        x->data_cb = NULL;
        x->done_cb = NULL;
        gw_metrics_upstream_s((double)(uv_now(x->h->loop) - x->started) / 1e3);
        cb(x->ud, err, x->have_head ? x->status : 0, x->ctype, detail ? detail : "");
    }
    h1_release(x, 0);
}

/* The connection broke (err: a libuv error) while x was using it. */
static void h1_conn_failed(h1_xfer *x, int err)
{
    h1_conn *c = x->c;
    if (c != NULL && c->uses > 0 && !x->got_bytes && !x->retried) {
        /* The provider had closed the pooled connection: once more on a new one. */
        x->retried = 1;
        h1_detach(x, 0);
        h1_dial(x);
        return;
    }
    snprintf(x->detail, sizeof(x->detail), "upstream connection %s: %s",
             x->got_bytes ? "broke before the answer was complete" : "closed without an answer",
             uv_strerror(err));
    h1_finish(x, CG_ERR_IO, x->detail, 0);
}

/* ---- response parsing ---- */

static int h1_hold(h1_xfer *x, const char *p, size_t n)
{
    if (x->held_len + n > x->held_cap) {
        size_t cap = x->held_cap ? x->held_cap : 16384;
        while (cap < x->held_len + n) {
            cap *= 2;
        }
        char *b = realloc(x->held, cap);
        if (b == NULL) {
            return 0;
        }
        x->held = b;
        x->held_cap = cap;
    }
    memcpy(x->held + x->held_len, p, n);
    x->held_len += n;
    return 1;
}

/* Hand n bytes to data_cb; 0 = go on parsing, 1 = stop (cancelled or aborted). */
static int h1_deliver(h1_xfer *x, const char *p, size_t n, int from_held)
{
    x->in_cb = 1;
    int r = x->data_cb(x->ud, x->status, x->ctype, p, n);
    x->in_cb = 0;
    if (x->cancelled) {
        return 1;
    }
    if (r == GW_XFER_PAUSE) {
        x->paused = 1;
        if (!from_held && !h1_hold(x, p, n)) {
            x->aborted = 1;
            return 1;
        }
        return 0;
    }
    if (r == GW_XFER_ABORT) {
        x->aborted = 1;
        return 1;
    }
    return 0;
}

static h1_xfer *h1_px(http_parser *p)
{
    return ((h1_conn *)p->data)->x;
}

static int h1_on_message_begin(http_parser *p)
{
    h1_xfer *x = h1_px(p);
    if (x == NULL || x->complete) {
        return 1; /* bytes after the answer: the connection is not reusable */
    }
    x->hf_len = 0;
    x->hf_state = 0;
    x->ctype_len = 0;
    x->ctype[0] = '\0';
    return 0;
}

static int h1_on_header_field(http_parser *p, const char *at, size_t n)
{
    h1_xfer *x = h1_px(p);
    if (x->hf_state != 0) {
        x->hf_state = 0;
        x->hf_len = 0;
    }
    if (x->hf_len + n <= sizeof(x->hf)) {
        memcpy(x->hf + x->hf_len, at, n);
        x->hf_len = (uint8_t)(x->hf_len + n);
    } else {
        x->hf_len = sizeof(x->hf); /* longer than any field we read */
    }
    return 0;
}

static int h1_on_header_value(http_parser *p, const char *at, size_t n)
{
    h1_xfer *x = h1_px(p);
    if (x->hf_state == 0) {
        x->hf_state = x->hf_len == 12 && strncasecmp(x->hf, "content-type", 12) == 0 ? 1 : 2;
        if (x->hf_state == 1) {
            x->ctype_len = 0;
        }
    }
    if (x->hf_state == 1) {
        size_t room = GW_UPSTREAM_CTYPE_MAX - x->ctype_len;
        n = n < room ? n : room;
        memcpy(x->ctype + x->ctype_len, at, n);
        x->ctype_len += n;
        x->ctype[x->ctype_len] = '\0';
    }
    return 0;
}

static int h1_on_headers_complete(http_parser *p)
{
    h1_xfer *x = h1_px(p);
    while (x->ctype_len > 0 &&
           (x->ctype[x->ctype_len - 1] == ' ' || x->ctype[x->ctype_len - 1] == '\t')) {
        x->ctype[--x->ctype_len] = '\0';
    }
    x->status = p->status_code;
    if (x->status < 100 || x->status >= 200 || x->status == 101) {
        x->have_head = 1;
    }
    return 0;
}

static int h1_on_body(http_parser *p, const char *at, size_t n)
{
    h1_xfer *x = h1_px(p);
    if (x->paused) {
        if (!h1_hold(x, at, n)) {
            x->aborted = 1;
            return 1;
        }
        return 0;
    }
    return h1_deliver(x, at, n, 0);
}

static int h1_on_message_complete(http_parser *p)
{
    h1_xfer *x = h1_px(p);
    if (!x->have_head) { /* an interim 1xx answer: the real one follows */
        x->status = 0;
        return 0;
    }
    x->complete = 1;
    x->keep_alive = (uint8_t)(http_should_keep_alive(p) && x->status != 101);
    return 0;
}

static const http_parser_settings h1_settings = {
    .on_message_begin = h1_on_message_begin,
    .on_header_field = h1_on_header_field,
    .on_header_value = h1_on_header_value,
    .on_headers_complete = h1_on_headers_complete,
    .on_body = h1_on_body,
    .on_message_complete = h1_on_message_complete,
};

/* After http_parser_execute on c's bytes for x: finish, fail, or wait for more. */
static void h1_after_parse(h1_conn *c, h1_xfer *x)
{
    if (x->cancelled) { /* cancelled from data_cb */
        h1_release(x, 0);
        return;
    }
    if (x->aborted) {
        h1_finish(x, CG_ERR_IO, "transfer aborted", 0);
        return;
    }
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (x->complete) {
        if (x->paused) { /* finished once the held bytes are taken (h1_resume_now) */
            x->keep_alive = (uint8_t)(x->keep_alive && e == HPE_OK);
            h1_read_ctl(c, 0);
            return;
        }
        h1_finish(x, CG_ERR_OK, NULL, x->keep_alive && e == HPE_OK);
        return;
    }
    if (e != HPE_OK) {
        snprintf(x->detail, sizeof(x->detail), "invalid HTTP answer from upstream: %s",
                 http_errno_description(e));
        h1_finish(x, CG_ERR_IO, x->detail, 0);
        return;
    }
    if (x->paused) {
        h1_read_ctl(c, 0);
    }
}

static void h1_alloc_cb(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    gw_h1 *h = ((h1_conn *)hd->data)->h;
    *buf = uv_buf_init(h->rbuf, sizeof(h->rbuf));
}

static void h1_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    h1_conn *c = s->data;
    h1_xfer *x = c->x;
    if (nread == 0 || c->closing) {
        return;
    }
    if (x == NULL) { /* idle: the provider closed it or sent something unasked */
        h1_conn_close(c);
        return;
    }
    if (nread < 0) {
        if (nread == UV_EOF && x->got_bytes) {
            http_parser_execute(&c->parser, &h1_settings, NULL, 0);
            if (x->complete || x->cancelled || x->aborted) {
                h1_after_parse(c, x);
                return;
            }
        }
        h1_conn_failed(x, (int)nread);
        return;
    }
    x->got_bytes = 1;
    http_parser_execute(&c->parser, &h1_settings, buf->base, (size_t)nread);
    h1_after_parse(c, x);
}

/* Start (on) or stop reading c; 0 or a libuv error. */
static int h1_read_ctl(h1_conn *c, int on)
{
    if (on == c->reading) {
        return 0;
    }
    int r = on ? uv_read_start((uv_stream_t *)&c->tcp, h1_alloc_cb, h1_read_cb)
               : uv_read_stop((uv_stream_t *)&c->tcp);
    if (r == 0) {
        c->reading = (uint8_t)on;
    }
    return r;
}

/* ---- sending ---- */

static void h1_write_cb(uv_write_t *req, int status)
{
    h1_conn *c = req->data;
    c->writing = 0;
    if (status < 0 && !c->closing && c->x != NULL) {
        h1_conn_failed(c->x, status);
    }
}

static void h1_send(h1_xfer *x)
{
    h1_conn *c = x->c;
    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = c;
    uv_buf_t b[2] = {uv_buf_init(x->head, (unsigned)x->head_len),
                     uv_buf_init((char *)x->body, (unsigned)x->body_len)};
    unsigned nb = x->body_len > 0 ? 2 : 1;
    /* Written at once when the socket takes it: no write request, so libuv does not
     * re-arm the socket's epoll entry afterwards (one epoll_ctl per request). */
    int n = uv_try_write((uv_stream_t *)&c->tcp, b, nb);
    if (n == (int)(x->head_len + x->body_len)) {
        return;
    }
    if (n < 0 && n != UV_EAGAIN) {
        h1_conn_failed(x, n);
        return;
    }
    size_t done = n > 0 ? (size_t)n : 0;
    uv_buf_t *bp = b;
    if (done >= x->head_len) { /* the head went out: the rest of the body */
        b[1] = uv_buf_init((char *)x->body + (done - x->head_len),
                           (unsigned)(x->body_len - (done - x->head_len)));
        bp = &b[1];
        nb = 1;
    } else {
        b[0] = uv_buf_init(x->head + done, (unsigned)(x->head_len - done));
    }
    c->wreq.data = c;
    c->writing = 1;
    int r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bp, nb, h1_write_cb);
    if (r != 0) {
        c->writing = 0;
        h1_conn_failed(x, r);
    }
}

static void h1_connect_cb(uv_connect_t *req, int status)
{
    h1_conn *c = req->data;
    if (c->closing) {
        return;
    }
    h1_xfer *x = c->x;
    if (status < 0) {
        if (!c->o->literal) {
            c->o->have_addr = 0; /* look the name up again next time */
        }
        if (x != NULL) {
            snprintf(x->detail, sizeof(x->detail), "cannot connect to %s: %s", c->o->auth,
                     uv_strerror(status));
            h1_finish(x, CG_ERR_UNAVAILABLE, x->detail, 0);
        }
        h1_conn_close(c);
        return;
    }
    c->connected = 1;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, 60);
    if (h1_read_ctl(c, 1) != 0) {
        if (x != NULL) {
            h1_conn_failed(x, UV_EIO);
        }
        h1_conn_close(c);
        return;
    }
    if (x != NULL) {
        h1_send(x);
    }
}

static void h1_gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    h1_xfer *x = req->data;
    gw_h1 *h = x->h;
    x->resolving = 0;
    if (x->cancelled) {
        uv_freeaddrinfo(res);
        if (h1_xfer_freeable(x)) {
            h1_xfer_free(x);
        }
        h1_unref(h);
        return;
    }
    h1_origin *o = x->o;
    if (status < 0 || res == NULL || res->ai_addrlen > sizeof(o->addr)) {
        snprintf(x->detail, sizeof(x->detail), "cannot resolve %s: %s", o->host,
                 status < 0 ? uv_strerror(status) : "no address");
        uv_freeaddrinfo(res);
        h1_finish(x, CG_ERR_UNAVAILABLE, x->detail, 0);
        h1_unref(h);
        return;
    }
    memcpy(&o->addr, res->ai_addr, res->ai_addrlen);
    o->have_addr = 1;
    o->addr_at = uv_now(h->loop);
    uv_freeaddrinfo(res);
    h1_dial(x);
    h1_unref(h);
}

/* A new connection for x (its origin's name looked up first when needed). */
static void h1_dial(h1_xfer *x)
{
    gw_h1 *h = x->h;
    h1_origin *o = x->o;
    if (!o->have_addr || (!o->literal && uv_now(h->loop) - o->addr_at > GW_H1_DNS_TTL_MS)) {
        struct addrinfo hints;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        x->gai.data = x;
        int r = uv_getaddrinfo(h->loop, &x->gai, h1_gai_cb, o->host, o->port, &hints);
        if (r != 0) {
            snprintf(x->detail, sizeof(x->detail), "cannot resolve %s: %s", o->host,
                     uv_strerror(r));
            h1_finish(x, CG_ERR_UNAVAILABLE, x->detail, 0);
            return;
        }
        x->resolving = 1;
        h->refs++;
        return;
    }
    h1_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        h1_finish(x, CG_ERR_NOMEM, "out of memory", 0);
        return;
    }
    c->h = h;
    c->o = o;
    if (uv_tcp_init(h->loop, &c->tcp) != 0) {
        free(c);
        h1_finish(x, CG_ERR_UNAVAILABLE, "cannot create a socket", 0);
        return;
    }
    h->refs++;
    c->tcp.data = c;
    c->creq.data = c;
    c->next = h->conns;
    if (h->conns) {
        h->conns->prev = c;
    }
    h->conns = c;
    c->x = x;
    x->c = c;
    int r = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&o->addr, h1_connect_cb);
    if (r != 0) {
        snprintf(x->detail, sizeof(x->detail), "cannot connect to %s: %s", o->auth, uv_strerror(r));
        h1_finish(x, CG_ERR_UNAVAILABLE, x->detail, 0);
    }
}

/* ---- deferred work: resumes and early failures ---- */

static void h1_resume_now(h1_xfer *x)
{
    if (!x->paused) {
        return;
    }
    x->paused = 0;
    if (x->held_len > 0) {
        int stop = h1_deliver(x, x->held, x->held_len, 1);
        if (x->cancelled) {
            h1_release(x, 0);
            return;
        }
        if (stop) {
            h1_finish(x, CG_ERR_IO, "transfer aborted", 0);
            return;
        }
        if (x->paused) {
            return; /* the same bytes again next time */
        }
        x->held_len = 0;
    }
    if (x->complete) {
        h1_finish(x, CG_ERR_OK, NULL, x->keep_alive);
        return;
    }
    if (x->c != NULL && h1_read_ctl(x->c, 1) != 0) {
        h1_conn_failed(x, UV_EIO);
    }
}

static void h1_idle_cb(uv_idle_t *i)
{
    gw_h1 *h = i->data;
    h1_xfer *list = h->deferred;
    h->deferred = NULL;
    uv_idle_stop(i);
    while (list != NULL) {
        h1_xfer *x = list;
        list = x->dnext;
        x->deferred = 0;
        x->dnext = NULL;
        if (x->cancelled) {
            if (h1_xfer_freeable(x)) {
                h1_xfer_free(x);
            }
        } else if (x->fail_pending) {
            x->fail_pending = 0;
            h1_finish(x, x->fail_err, x->detail, 0);
        } else if (x->want_resume) {
            x->want_resume = 0;
            h1_resume_now(x);
        }
    }
}

/* ---- API ---- */

/* The origin for URL authority a (len n); created on first use. NULL: not taken here. */
static h1_origin *h1_origin_get(gw_h1 *h, const char *a, size_t n)
{
    for (uint32_t i = 0; i < h->origin_n; i++) {
        h1_origin *o = h->origins[i];
        if (o->auth_len == n && memcmp(o->auth, a, n) == 0) {
            return o;
        }
    }
    if (h->origin_n >= GW_H1_ORIGINS || n == 0 || n >= sizeof(((h1_origin *)0)->auth) ||
        memchr(a, '@', n) != NULL) {
        return NULL;
    }
    h1_origin *o = calloc(1, sizeof(*o));
    if (o == NULL) {
        return NULL;
    }
    memcpy(o->auth, a, n);
    o->auth_len = n;
    const char *hs = a, *he, *colon;
    if (a[0] == '[') { /* [v6]:port */
        he = memchr(a, ']', n);
        if (he == NULL) {
            free(o);
            return NULL;
        }
        hs = a + 1;
        colon = he + 1 < a + n && he[1] == ':' ? he + 1 : NULL;
    } else {
        colon = memchr(a, ':', n);
        he = colon ? colon : a + n;
    }
    size_t hl = (size_t)(he - hs), pl = colon ? (size_t)(a + n - colon - 1) : 0;
    if (hl == 0 || hl > GW_H1_HOST_MAX || (colon && (pl == 0 || pl > 5))) {
        free(o);
        return NULL;
    }
    memcpy(o->host, hs, hl);
    unsigned long port = 80;
    if (colon) {
        char pb[6] = {0};
        memcpy(pb, colon + 1, pl);
        char *end = NULL;
        port = strtoul(pb, &end, 10);
        if (*end != '\0' || port == 0 || port > 65535) {
            free(o);
            return NULL;
        }
    }
    snprintf(o->port, sizeof(o->port), "%lu", port);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&o->addr;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&o->addr;
    if (inet_pton(AF_INET, o->host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        o->literal = o->have_addr = 1;
    } else if (inet_pton(AF_INET6, o->host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        o->literal = o->have_addr = 1;
    }
    h->origins[h->origin_n++] = o;
    return o;
}

static char *h1_put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define H1_PUTS(p, lit) h1_put((p), (lit), sizeof(lit) - 1)

cg_err gw_h1_start(gw_h1 *h, const gw_xfer_opts *o, gw_xfer_data_cb data_cb,
                   gw_xfer_done_cb done_cb, void *ud, gw_xfer_base **out)
{
    const char *url = o->url;
    if (strncmp(url, "http://", 7) != 0 || h->closing) {
        return CG_ERR_INVAL;
    }
    const char *a = url + 7;
    size_t an = strcspn(a, "/?#");
    const char *path = a + an;
    size_t pn = strcspn(path, "#");
    h1_origin *org = h1_origin_get(h, a, an);
    if (org == NULL) {
        return CG_ERR_INVAL;
    }
    const char *bearer = o->bearer != NULL ? o->bearer : "";
    size_t bn = strlen(bearer);
    if (memchr(bearer, '\r', bn) != NULL || memchr(bearer, '\n', bn) != NULL) {
        return CG_ERR_INVAL;
    }
    char clen[24];
    size_t cn = cg_str_u64(clen, o->body_len);
    size_t cap = 160 + pn + org->auth_len + bn + cn;
    h1_xfer *x = calloc(1, sizeof(*x) + cap);
    if (x == NULL) {
        return CG_ERR_NOMEM;
    }
    x->base.builtin = 1;
    x->h = h;
    x->o = org;
    x->data_cb = data_cb;
    x->done_cb = done_cb;
    x->ud = ud;
    x->body = o->body;
    x->body_len = o->body_len;
    x->head = (char *)(x + 1);
    char *p = x->head;
    p = H1_PUTS(p, "POST ");
    if (pn == 0 || path[0] == '?') {
        *p++ = '/';
    }
    p = h1_put(p, path, pn);
    p = H1_PUTS(p, " HTTP/1.1\r\nHost: ");
    p = h1_put(p, org->auth, org->auth_len);
    p = H1_PUTS(p, "\r\nContent-Type: application/json\r\nAccept: */*\r\nContent-Length: ");
    p = h1_put(p, clen, cn);
    if (bn > 0) {
        p = H1_PUTS(p, "\r\nAuthorization: Bearer ");
        p = h1_put(p, bearer, bn);
    }
    p = H1_PUTS(p, "\r\n\r\n");
    x->head_len = (size_t)(p - x->head);
    x->started = uv_now(h->loop);
    x->deadline = x->started + o->timeout_ms;
    x->starting = 1;
    h1_list_add(x);
    h1_conn *c = h1_conn_take(org, x->started);
    if (c != NULL) {
        c->x = x;
        x->c = c;
        h1_send(x);
    } else {
        h1_dial(x);
    }
    x->starting = 0;
    *out = &x->base;
    return CG_ERR_OK;
}

void gw_h1_resume(gw_xfer_base *b)
{
    h1_xfer *x = (h1_xfer *)b;
    if (x->cancelled) {
        return;
    }
    x->want_resume = 1;
    h1_defer(x);
}

void gw_h1_cancel(gw_xfer_base *b)
{
    h1_xfer *x = (h1_xfer *)b;
    x->cancelled = 1;
    x->data_cb = NULL;
    x->done_cb = NULL;
    x->ud = NULL;
    if (x->in_cb) {
        return; /* let go of after the callback returns */
    }
    /* An answer not read to its end leaves the connection unusable. */
    h1_release(x, 0);
}

uint32_t gw_h1_active(const gw_h1 *h)
{
    return h->xfer_n;
}

cg_err gw_h1_new(uv_loop_t *loop, uint32_t cache, gw_h1 **out)
{
    gw_h1 *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return CG_ERR_NOMEM;
    }
    h->loop = loop;
    h->cache = cache;
    uv_timer_init(loop, &h->timer);
    uv_idle_init(loop, &h->idle);
    h->timer.data = h;
    h->idle.data = h;
    h->refs = 2;
    *out = h;
    return CG_ERR_OK;
}

void gw_h1_close(gw_h1 *h)
{
    h->closing = 1;
    h1_xfer *d = h->deferred;
    h->deferred = NULL;
    while (d != NULL) {
        h1_xfer *next = d->dnext;
        d->deferred = 0;
        d->dnext = NULL;
        if (d->cancelled && h1_xfer_freeable(d)) {
            h1_xfer_free(d);
        }
        d = next;
    }
    while (h->xfers != NULL) {
        h1_release(h->xfers, 0);
    }
    while (h->conns != NULL) {
        h1_conn_close(h->conns);
    }
    uv_close((uv_handle_t *)&h->timer, h1_handle_closed_cb);
    uv_close((uv_handle_t *)&h->idle, h1_handle_closed_cb);
}
