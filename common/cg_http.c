/*
 * cg_http.c — the HTTP/1.1 server of cg_http.h: libuv for I/O, http-parser for
 * the wire format.
 *
 * One cg_http_conn per accepted socket moves through these states:
 *
 *   IDLE ──first byte──▶ READING ──complete──▶ OWED ──respond/stream_end──▶ FLUSHING
 *     ▲                     │ limit/parse error/timeout                         │
 *     │                     └──────────▶ (error response) FLUSHING             │
 *     └───────────── keep-alive, all writes done ◀──────────────────────────────┘
 *   FLUSHING without keep-alive ──▶ LINGER (FIN sent, input discarded) ──▶ CLOSING
 *
 * Invariants:
 * - The parser is paused from the end of a request until its response has been
 *   flushed, so the request (arena, body) stays valid while the handler owns it
 *   and pipelined requests are answered strictly in order. Bytes that arrive
 *   meanwhile are held in conn->pend (bounded by CG_HTTP_PIPELINE_BYTES; when it
 *   is full reading stops, which is the back-pressure on a pipelining client).
 * - Input is read into one per-server buffer and parsed at once; requests are
 *   copied into a per-connection header arena (bounded by header_max_bytes) and
 *   body buffer (bounded by body_max_bytes). Allocations are per request or per
 *   write, never per byte.
 * - Every uv_write owns one heap block (request + bytes); the caller's buffers
 *   are copied, so they may be transient.
 * - Streamed output (head, chunks, terminator) is coalesced: it is appended to
 *   the connection's open block (conn->out) and handed to uv_write once per loop
 *   iteration, by the server's prepare handle (right before the loop polls), when
 *   the block reaches CG_HTTP_OUT_MAX_BYTES, or when the response completes. So
 *   a burst of small writes in one iteration (SSE events of one upstream read)
 *   costs one write(2), not one each. Bytes in the open block count as pending.
 * - The handler is never called from inside another handler call: everything
 *   that could re-enter it (finishing a response, closing after a failed
 *   write) is deferred through the connection's timer with timeout 0.
 * - A connection struct is freed only after both of its handles are closed and,
 *   if it died while a response was owed without an abort callback, after the
 *   handler completed that response (a "zombie": cg_http_respond on it is a no-op).
 * - The server frees itself once closing, with its listener closed and no conns.
 */
#include "cg_str.h"
#include "cg_http.h"

#include <assert.h>
#include <errno.h>
#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cg_config.h"
#include "cg_log.h"

/* Limits of this file; the per-server ones come from cg_http_opts. */
#define CG_HTTP_READ_BUF_BYTES 65536        /* per-server read buffer (one read at a time) */
#define CG_HTTP_PIPELINE_BYTES 65536        /* input held per conn while a response is owed */
#define CG_HTTP_ARENA_INIT_BYTES 1024       /* first header arena; doubles up to the limit */
#define CG_HTTP_BODY_INIT_BYTES 4096        /* first buffer of a chunked body */
#define CG_HTTP_BODY_KEEP_BYTES 65536       /* bigger body buffers are freed between requests */
#define CG_HTTP_BODY_PREALLOC_BYTES 262144  /* reserved at once for a Content-Length body */
#define CG_HTTP_LINGER_MS 2000              /* wait for the peer's FIN after our last response */
#define CG_HTTP_LINGER_BYTES_MAX (1u << 20) /* input discarded while lingering */
#define CG_HTTP_HEAD_FIXED_BYTES 256        /* status line + the headers added here */
#define CG_HTTP_ERROR_MSG_MAX 512           /* error message bytes kept (JSON-escaped x6) */
#define CG_HTTP_OUT_INIT_BYTES 4096         /* first coalesced output block of a stream */
#define CG_HTTP_OUT_MAX_BYTES 65536         /* a fuller block is queued at once */
#define CG_HTTP_CHUNK_FRAME_BYTES 20        /* hex size + CRLF + CRLF around one chunk */
/* The arena holds header_max_bytes of text plus its NUL terminators. */
#define CG_HTTP_ARENA_SLACK_BYTES (2 * CG_HTTP_HEADERS_MAX + 8)
#define CG_HTTP_BACKLOG 1024
/* http-parser's own header limit is process-global; ours (per server) is checked
 * first, this one only has to be above the largest header_max_bytes allowed. */
#define CG_HTTP_PARSER_HEADER_MAX ((1u << 20) + 65536)

/* Defaults for zero fields of cg_http_opts. */
#define CG_HTTP_DEF_BODY_MAX_BYTES 4194304u
#define CG_HTTP_DEF_HEADER_MAX_BYTES 16384u
#define CG_HTTP_DEF_REQUEST_TIMEOUT_MS 30000u
#define CG_HTTP_DEF_IDLE_TIMEOUT_MS 75000u
#define CG_HTTP_DEF_CONNS_MAX 10000u

_Static_assert(CG_HTTP_READ_BUF_BYTES <= CG_HTTP_PIPELINE_BYTES,
               "the rest of one read must fit the pipeline buffer");

typedef enum conn_state {
    CONN_IDLE,     /* between requests: idle (or first-request) timer runs */
    CONN_READING,  /* request in progress: request timer runs */
    CONN_OWED,     /* handler called, response not complete */
    CONN_FLUSHING, /* response complete, writes in flight */
    CONN_LINGER,   /* FIN sent, discarding input until EOF or timer */
    CONN_CLOSING,  /* uv_close called on both handles */
} conn_state;

/* Where parser data currently goes in the header arena. */
typedef enum conn_hstate { HS_URL, HS_FIELD, HS_VALUE, HS_DONE } conn_hstate;

struct cg_http_server {
    uv_tcp_t tcp;
    uv_loop_t *loop;
    cg_http_opts opts; /* zero fields replaced by defaults */
    cg_http_handler_cb handler;
    void *ud;
    cg_http_conn *conns; /* doubly linked list of open conns */
    uint32_t conn_n;
    uint8_t closing;
    uint8_t listener_open;
    uint8_t prep_open;   /* the prepare handle is not closed yet */
    uv_prepare_t prep;   /* queues coalesced output before the loop polls */
    cg_http_conn *outq;  /* conns with an open output block (doubly linked) */
    cg_http_conn *doneq; /* conns whose write completed at once (uv_try_write), to finish */
    char rbuf[CG_HTTP_READ_BUF_BYTES];
};

struct cg_http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* request / idle / flush / linger timeout, or deferred step */
    uv_shutdown_t shutdown;
    cg_http_server *srv;
    cg_http_conn *prev, *next;
    http_parser parser;
    conn_state state;
    uint8_t handles_open;  /* 2 until both close callbacks ran */
    uint8_t reading;       /* uv_read_start is active */
    uint8_t keep_alive;    /* another request may follow this one */
    uint8_t http10;        /* request was HTTP/1.0 */
    uint8_t head_only;     /* HEAD: send no body bytes */
    uint8_t streaming;     /* cg_http_stream_begin was called */
    uint8_t chunked_out;   /* the stream uses chunked framing */
    uint8_t discard_input; /* an error response is going out: input is ignored */
    uint8_t peer_eof;      /* the peer half-closed */
    uint8_t dead;          /* close pending on the 0 timer (failed write) */
    uint8_t zombie;        /* closed while owed without abort cb: wait for the handler */
    uint8_t in_body;       /* headers done: header callbacks are trailers (ignored) */
    conn_hstate hstate;
    int err_status; /* set by a parser callback that refused the request */
    const char *err_code;
    const char *err_msg;
    char *arena; /* url NUL name NUL value NUL ... */
    uint32_t arena_len, arena_cap;
    uint32_t hdr_bytes; /* raw url + header bytes of this request */
    uint32_t url_len;
    uint32_t name_off[CG_HTTP_HEADERS_MAX];
    uint32_t value_off[CG_HTTP_HEADERS_MAX];
    char *body;
    size_t body_len, body_cap;
    char *pend; /* held input, capacity CG_HTTP_PIPELINE_BYTES */
    size_t pend_len;
    size_t linger_bytes;
    size_t pending_bytes; /* queued to uv_write, not yet written */
    uint32_t writes_inflight;
    struct conn_wreq *out;       /* open coalesced output block (not queued yet), or NULL */
    size_t out_cap;              /* its data capacity */
    cg_http_conn *oprev, *onext; /* srv->outq, while out is set */
    cg_http_conn *dprev, *dnext; /* srv->doneq, while on_doneq */
    uint8_t on_doneq;
    cg_http_abort_cb on_abort;
    cg_http_drain_cb on_drain;
    void *cb_ud;
    cg_http_req req;
};

/* One uv_write and the bytes it writes, in one allocation. */
typedef struct conn_wreq {
    uv_write_t req;
    size_t len;
    char data[];
} conn_wreq;

static atomic_uint_fast64_t http_conn_ids;
static uv_once_t http_setup_once = UV_ONCE_INIT;

static int conn_on_message_begin(http_parser *p);
static int conn_on_url(http_parser *p, const char *at, size_t len);
static int conn_on_header_field(http_parser *p, const char *at, size_t len);
static int conn_on_header_value(http_parser *p, const char *at, size_t len);
static int conn_on_headers_complete(http_parser *p);
static int conn_on_body(http_parser *p, const char *at, size_t len);
static int conn_on_message_complete(http_parser *p);
static void conn_timer_cb(uv_timer_t *t);
static void conn_close(cg_http_conn *c);
static void conn_out_discard(cg_http_conn *c);
static void conn_done_unlink(cg_http_conn *c);
static void conn_feed(cg_http_conn *c, const char *data, size_t len);

static const http_parser_settings http_settings = {
    .on_message_begin = conn_on_message_begin,
    .on_url = conn_on_url,
    .on_header_field = conn_on_header_field,
    .on_header_value = conn_on_header_value,
    .on_headers_complete = conn_on_headers_complete,
    .on_body = conn_on_body,
    .on_message_complete = conn_on_message_complete,
};

/* Once per process: the parser's global header limit, and SIGPIPE ignored,
 * since libuv writes to sockets with write(2) and a peer that went away must be
 * an EPIPE on one connection, not the death of the process. */
static void http_process_setup(void)
{
    http_parser_set_max_header_size(CG_HTTP_PARSER_HEADER_MAX);
    signal(SIGPIPE, SIG_IGN);
}

/* ---- timers and reading ---- */

/* A deferred close (dead) owns the timer until it fires. */
static void conn_timer_start(cg_http_conn *c, uint64_t ms)
{
    if (!c->dead && c->state != CONN_CLOSING) {
        uv_timer_start(&c->timer, conn_timer_cb, ms, 0);
    }
}

static void conn_timer_stop(cg_http_conn *c)
{
    if (!c->dead && c->state != CONN_CLOSING) {
        uv_timer_stop(&c->timer);
    }
}

/* Close from the loop, not from the current call stack (a handler may be in it). */
static void conn_defer_close(cg_http_conn *c)
{
    conn_timer_start(c, 0);
    c->dead = 1;
}

static void conn_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void conn_read_start(cg_http_conn *c)
{
    if (c->reading || c->peer_eof || c->state == CONN_CLOSING) {
        return;
    }
    if (uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb) == 0) {
        c->reading = 1;
    }
}

static void conn_read_stop(cg_http_conn *c)
{
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

/* Input that arrives while a response is owed or flushing is held for the next
 * request only if there will be one. */
static int conn_holds_input(const cg_http_conn *c)
{
    return (c->state == CONN_OWED || c->state == CONN_FLUSHING) && c->keep_alive &&
           !c->discard_input;
}

static void conn_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    cg_http_conn *c = h->data;
    (void)hint;
    if (conn_holds_input(c)) {
        if (c->pend == NULL && (c->pend = malloc(CG_HTTP_PIPELINE_BYTES)) == NULL) {
            *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
            return;
        }
        *buf = uv_buf_init(c->pend + c->pend_len, (unsigned)(CG_HTTP_PIPELINE_BYTES - c->pend_len));
        return;
    }
    *buf = uv_buf_init(c->srv->rbuf, sizeof(c->srv->rbuf));
}

/* ---- connection teardown ---- */

static void server_prep_close_cb(uv_handle_t *h)
{
    cg_http_server *s = h->data;
    free(s);
}

static void server_maybe_free(cg_http_server *s)
{
    if (s->closing && !s->listener_open && s->conn_n == 0 && s->prep_open) {
        s->prep_open = 0;
        uv_close((uv_handle_t *)&s->prep, server_prep_close_cb);
    }
}

static void conn_maybe_free(cg_http_conn *c)
{
    if (c->handles_open > 0 || c->zombie) {
        return;
    }
    cg_http_server *s = c->srv;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        s->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    s->conn_n--;
    free(c->arena);
    free(c->body);
    free(c->pend);
    free(c);
    server_maybe_free(s);
}

static void conn_close_cb(uv_handle_t *h)
{
    cg_http_conn *c = h->data;
    c->handles_open--;
    conn_maybe_free(c);
}

/* Close now. If a response was owed the handler is told (abort callback) first. */
static void conn_close(cg_http_conn *c)
{
    if (c->state == CONN_CLOSING) {
        return;
    }
    int owed = c->state == CONN_OWED;
    uv_timer_stop(&c->timer);
    conn_out_discard(c);
    conn_done_unlink(c);
    c->state = CONN_CLOSING;
    c->reading = 0;
    if (owed) {
        cg_http_abort_cb cb = c->on_abort;
        c->on_abort = NULL;
        c->on_drain = NULL;
        if (cb != NULL) {
            cb(c, c->cb_ud);
        } else {
            c->zombie = 1;
        }
    }
    uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
    uv_close((uv_handle_t *)&c->timer, conn_close_cb);
}

/* A handler call on a connection that is already closing: completing calls
 * release a zombie. Returns 1 if the call must do nothing else. */
static int conn_gone(cg_http_conn *c, int completes)
{
    if (c->state != CONN_CLOSING) {
        return 0;
    }
    if (completes && c->zombie) {
        c->zombie = 0;
        conn_maybe_free(c);
    }
    return 1;
}

static void conn_shutdown_cb(uv_shutdown_t *req, int status)
{
    cg_http_conn *c = req->data;
    if (status < 0) {
        conn_close(c);
    }
}

/* The last response is out: send FIN and wait (bounded) for the peer's, so that
 * closing with unread input does not reset the connection under our response. */
static void conn_linger(cg_http_conn *c)
{
    if (c->peer_eof) {
        conn_close(c);
        return;
    }
    c->state = CONN_LINGER;
    c->shutdown.data = c;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, conn_shutdown_cb) != 0) {
        conn_close(c);
        return;
    }
    conn_timer_start(c, CG_HTTP_LINGER_MS);
    conn_read_start(c);
}

/* ---- writing ---- */

static conn_wreq *conn_wreq_new(size_t cap)
{
    conn_wreq *w = malloc(sizeof(*w) + cap);
    if (w != NULL) {
        w->len = 0;
    }
    return w;
}

static void conn_finish(cg_http_conn *c);

/* A write of c completed (status < 0: failed): the state machine moves on. */
static void conn_write_done(cg_http_conn *c, int status)
{
    if (c->state == CONN_CLOSING || c->dead) {
        return;
    }
    if (status < 0) {
        conn_close(c); /* aborts the handler if the response is still owed */
        return;
    }
    if (c->state == CONN_OWED && c->streaming && c->pending_bytes == 0 && c->out == NULL &&
        c->on_drain != NULL) {
        c->on_drain(c, c->cb_ud);
    }
    if (c->state == CONN_FLUSHING && c->writes_inflight == 0) {
        conn_finish(c);
    }
}

static void conn_write_cb(uv_write_t *req, int status)
{
    conn_wreq *w = (conn_wreq *)req;
    cg_http_conn *c = req->data;
    c->pending_bytes -= w->len;
    c->writes_inflight--;
    free(w);
    conn_write_done(c, status);
}

static void server_prep_cb(uv_prepare_t *h);

static void conn_done_unlink(cg_http_conn *c)
{
    cg_http_server *s = c->srv;
    if (!c->on_doneq) {
        return;
    }
    if (c->dprev != NULL) {
        c->dprev->dnext = c->dnext;
    } else {
        s->doneq = c->dnext;
    }
    if (c->dnext != NULL) {
        c->dnext->dprev = c->dprev;
    }
    c->dprev = c->dnext = NULL;
    c->on_doneq = 0;
    if (s->outq == NULL && s->doneq == NULL) {
        uv_prepare_stop(&s->prep);
    }
}

/*
 * Queue w (ownership moves here in every case). With nothing queued before it, it is
 * written at once (uv_try_write); what completes so is finished from the prepare
 * callback, never inside the caller. This saves libuv's write request round: each
 * completed uv_write re-arms the socket's epoll entry (EPOLL_CTL_MOD) even when its
 * events do not change, one syscall per response (strace, bench/GATEWAY_NOTES.md).
 */
static void conn_write(cg_http_conn *c, conn_wreq *w)
{
    if (c->dead) {
        free(w);
        return;
    }
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    if (c->writes_inflight == 0) {
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n == (int)w->len) {
            free(w);
            if (!c->on_doneq) {
                cg_http_server *s = c->srv;
                c->dprev = NULL;
                c->dnext = s->doneq;
                if (s->doneq != NULL) {
                    s->doneq->dprev = c;
                }
                s->doneq = c;
                c->on_doneq = 1;
                uv_prepare_start(&s->prep, server_prep_cb);
            }
            return;
        }
        if (n > 0) { /* the rest goes through a write request */
            w->len -= (size_t)n;
            memmove(w->data, w->data + n, w->len);
            b = uv_buf_init(w->data, (unsigned)w->len);
        }
    }
    w->req.data = c;
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, conn_write_cb) != 0) {
        free(w);
        conn_defer_close(c);
        return;
    }
    c->pending_bytes += w->len;
    c->writes_inflight++;
}

/* ---- coalesced output (streams) ---- */

static void conn_out_unlink(cg_http_conn *c)
{
    cg_http_server *s = c->srv;
    if (c->oprev != NULL) {
        c->oprev->onext = c->onext;
    } else {
        s->outq = c->onext;
    }
    if (c->onext != NULL) {
        c->onext->oprev = c->oprev;
    }
    c->oprev = c->onext = NULL;
    if (s->outq == NULL && s->doneq == NULL) {
        uv_prepare_stop(&s->prep);
    }
}

/* Queue the open output block now (if any). */
static void conn_out_flush(cg_http_conn *c)
{
    conn_wreq *w = c->out;
    if (w == NULL) {
        return;
    }
    conn_out_unlink(c);
    c->out = NULL;
    conn_write(c, w);
}

/* Drop the open output block (the connection is closing). */
static void conn_out_discard(cg_http_conn *c)
{
    if (c->out != NULL) {
        conn_out_unlink(c);
        free(c->out);
        c->out = NULL;
    }
}

static void server_prep_cb(uv_prepare_t *h)
{
    cg_http_server *s = h->data;
    while (s->outq != NULL || s->doneq != NULL) {
        while (s->outq != NULL) {
            conn_out_flush(s->outq); /* unlinks it; never closes synchronously */
        }
        if (s->doneq != NULL) {
            cg_http_conn *c = s->doneq;
            conn_done_unlink(c);
            conn_write_done(c, 0);
        }
    }
}

/* Room for need more bytes at the end of the open output block (opened, grown or
 * queued and replaced as needed); the caller adds what it wrote to out->len.
 * NULL when out of memory. */
static char *conn_out_reserve(cg_http_conn *c, size_t need)
{
    conn_wreq *w = c->out;
    if (w != NULL && w->len + need > c->out_cap) {
        size_t cap = c->out_cap * 2;
        while (cap < w->len + need) {
            cap *= 2;
        }
        conn_wreq *nw = cap <= CG_HTTP_OUT_MAX_BYTES ? realloc(w, sizeof(*w) + cap) : NULL;
        if (nw != NULL) {
            c->out = w = nw;
            c->out_cap = cap;
        } else {
            conn_out_flush(c);
            w = NULL;
        }
    }
    if (w == NULL) {
        size_t cap = need > CG_HTTP_OUT_INIT_BYTES ? need : CG_HTTP_OUT_INIT_BYTES;
        if ((w = conn_wreq_new(cap)) == NULL) {
            return NULL;
        }
        cg_http_server *s = c->srv;
        c->out = w;
        c->out_cap = cap;
        c->oprev = NULL;
        c->onext = s->outq;
        if (s->outq != NULL) {
            s->outq->oprev = c;
        } else {
            uv_prepare_start(&s->prep, server_prep_cb);
        }
        s->outq = c;
    }
    return w->data + w->len;
}

static void conn_write_copy(cg_http_conn *c, const char *p, size_t n)
{
    conn_wreq *w = conn_wreq_new(n);
    if (w == NULL) {
        conn_defer_close(c);
        return;
    }
    memcpy(w->data, p, n);
    w->len = n;
    conn_write(c, w);
}

#define CG_HTTP_CLEN_CHUNKED (-1)
#define CG_HTTP_CLEN_NONE (-2) /* body delimited by the connection close */

static size_t conn_head_cap(const char *extra, const char *ctype)
{
    return CG_HTTP_HEAD_FIXED_BYTES + (extra ? strlen(extra) : 0) + (ctype ? strlen(ctype) : 0);
}

/* Append len bytes at dst + n (the capacity is guaranteed by conn_head_cap). */
static size_t conn_put(char *dst, size_t n, size_t cap, const char *p, size_t len)
{
    assert(n + len < cap);
    (void)cap;
    memcpy(dst + n, p, len);
    return n + len;
}

#define CONN_PUT_LIT(dst, n, cap, lit) conn_put(dst, n, cap, lit, sizeof(lit) - 1)

/* Append the decimal digits of v. */
static size_t conn_put_dec(char *dst, size_t n, size_t cap, uint64_t v)
{
    char tmp[20];
    return conn_put(dst, n, cap, tmp, cg_str_u64(tmp, v));
}

/* Format the status line and headers into dst (capacity from conn_head_cap). Plain
 * copies, no printf: this runs for every response. */
static size_t conn_head(const cg_http_conn *c, char *dst, size_t cap, int status, const char *extra,
                        const char *ctype, int64_t clen)
{
    const char *reason = cg_http_reason(status);
    size_t n = CONN_PUT_LIT(dst, 0, cap, "HTTP/1.1 ");
    n = conn_put_dec(dst, n, cap, status > 0 ? (uint64_t)status : 0);
    n = CONN_PUT_LIT(dst, n, cap, " ");
    n = conn_put(dst, n, cap, reason, strlen(reason));
    n = CONN_PUT_LIT(dst, n, cap, "\r\n");
    if (ctype != NULL) {
        n = CONN_PUT_LIT(dst, n, cap, "Content-Type: ");
        n = conn_put(dst, n, cap, ctype, strlen(ctype));
        n = CONN_PUT_LIT(dst, n, cap, "\r\n");
    }
    if (clen >= 0) {
        n = CONN_PUT_LIT(dst, n, cap, "Content-Length: ");
        n = conn_put_dec(dst, n, cap, (uint64_t)clen);
        n = CONN_PUT_LIT(dst, n, cap, "\r\n");
    } else if (clen == CG_HTTP_CLEN_CHUNKED) {
        n = CONN_PUT_LIT(dst, n, cap, "Transfer-Encoding: chunked\r\n");
    }
    if (!c->keep_alive) {
        n = CONN_PUT_LIT(dst, n, cap, "Connection: close\r\n");
    } else if (c->http10) {
        n = CONN_PUT_LIT(dst, n, cap, "Connection: keep-alive\r\n");
    }
    if (extra != NULL) {
        n = conn_put(dst, n, cap, extra, strlen(extra));
    }
    n = CONN_PUT_LIT(dst, n, cap, "\r\n");
    return n;
}

/* Queue a complete response and move to FLUSHING. */
static void conn_respond_raw(cg_http_conn *c, int status, const char *extra, const char *ctype,
                             const void *body, size_t len)
{
    if (c->srv->closing) {
        c->keep_alive = 0;
    }
    size_t blen = c->head_only ? 0 : len;
    size_t cap = conn_head_cap(extra, ctype) + blen;
    c->state = CONN_FLUSHING;
    conn_timer_start(c, c->srv->opts.idle_timeout_ms); /* bound on a peer not reading */
    conn_wreq *w = conn_wreq_new(cap);
    if (w == NULL) {
        conn_defer_close(c);
        return;
    }
    w->len = conn_head(c, w->data, cap, status, extra, ctype, (int64_t)len);
    if (blen > 0) {
        memcpy(w->data + w->len, body, blen);
        w->len += blen;
    }
    conn_write(c, w);
}

size_t cg_http_json_escape(char *dst, size_t cap, const char *s, size_t max_in)
{
    size_t o = 0;
    if (cap == 0) {
        return 0;
    }
    for (size_t i = 0; s[i] != '\0' && i < max_in && o + 7 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)ch;
        } else if (ch < 0x20) {
            o += (size_t)snprintf(dst + o, cap - o, "\\u%04x", ch);
        } else {
            dst[o++] = (char)ch;
        }
    }
    dst[o] = '\0';
    return o;
}

static void conn_respond_error_raw(cg_http_conn *c, int status, const char *type, const char *code,
                                   const char *message, const char *extra)
{
    char msg[CG_HTTP_ERROR_MSG_MAX * 6 + 8];
    char body[sizeof(msg) + 256];
    /* At most CG_HTTP_ERROR_MSG_MAX input bytes. */
    cg_http_json_escape(msg, sizeof(msg), message ? message : "", CG_HTTP_ERROR_MSG_MAX);
    int n = snprintf(body, sizeof(body),
                     "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"code\":\"%s\","
                     "\"param\":null}}",
                     msg, type, code);
    conn_respond_raw(c, status, extra, "application/json", body, (size_t)n);
}

/* Refuse the request being read: answer, then close without reading more. */
static void conn_fail(cg_http_conn *c, int status, const char *code, const char *message)
{
    c->discard_input = 1;
    c->keep_alive = 0;
    c->pend_len = 0;
    conn_timer_stop(c);
    cg_log(CG_LOG_DEBUG, "http request refused", "code", code, "peer", c->req.peer_ip, NULL);
    conn_respond_error_raw(c, status, "invalid_request_error", code, message, NULL);
}

/* ---- request lifecycle ---- */

static void conn_reset_request(cg_http_conn *c)
{
    c->state = CONN_IDLE;
    c->streaming = 0;
    c->chunked_out = 0;
    c->head_only = 0;
    c->on_abort = NULL;
    c->on_drain = NULL;
    c->cb_ud = NULL;
    if (c->body_cap > CG_HTTP_BODY_KEEP_BYTES) {
        free(c->body);
        c->body = NULL;
        c->body_cap = 0;
    }
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
}

/* The response has been flushed: next request, or close. Never called from
 * inside a handler call (see the file header). */
static void conn_finish(cg_http_conn *c)
{
    if (!c->keep_alive || c->srv->closing || c->peer_eof) {
        conn_linger(c);
        return;
    }
    conn_reset_request(c);
    conn_timer_start(c, c->srv->opts.idle_timeout_ms);
    if (c->pend_len > 0) {
        conn_feed(c, c->pend, c->pend_len);
    } else {
        conn_read_start(c);
    }
}

static void conn_dispatch(cg_http_conn *c)
{
    c->state = CONN_OWED;
    conn_timer_stop(c);
    /* Keep reading while the handler works, to notice a disconnect. */
    if (c->pend_len < CG_HTTP_PIPELINE_BYTES) {
        conn_read_start(c);
    } else {
        conn_read_stop(c);
    }
    c->srv->handler(c, &c->req, c->srv->ud);
}

/* Parse len bytes (from the server buffer or from c->pend). */
static void conn_feed(cg_http_conn *c, const char *data, size_t len)
{
    size_t n = http_parser_execute(&c->parser, &http_settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (e == HPE_PAUSED) {
        size_t rest = len - n;
        if (rest > 0 && c->keep_alive) {
            if (c->pend == NULL && (c->pend = malloc(CG_HTTP_PIPELINE_BYTES)) == NULL) {
                conn_close(c);
                return;
            }
            memmove(c->pend, data + n, rest);
        }
        c->pend_len = c->keep_alive ? rest : 0;
        conn_dispatch(c);
        return;
    }
    c->pend_len = 0;
    if (e == HPE_OK) {
        conn_read_start(c);
    } else if (c->err_status != 0) {
        conn_fail(c, c->err_status, c->err_code, c->err_msg);
    } else if (e == HPE_HEADER_OVERFLOW) {
        conn_fail(c, 431, "headers_too_large", "request headers too large");
    } else {
        conn_fail(c, 400, "invalid_request", http_errno_description(e));
    }
}

static void conn_on_eof(cg_http_conn *c)
{
    c->reading = 0;
    c->peer_eof = 1;
    if (c->state == CONN_FLUSHING) {
        c->keep_alive = 0; /* finish writing, then close */
        return;
    }
    conn_close(c);
}

static void conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    cg_http_conn *c = s->data;
    if (nread == 0 || c->state == CONN_CLOSING) {
        return;
    }
    if (nread < 0) {
        conn_on_eof(c);
        return;
    }
    if (buf->base != c->srv->rbuf) { /* read straight into pend (conn_alloc_cb) */
        c->pend_len += (size_t)nread;
        if (c->pend_len == CG_HTTP_PIPELINE_BYTES) {
            conn_read_stop(c);
        }
        return;
    }
    switch (c->state) {
    case CONN_IDLE:
    case CONN_READING:
        conn_feed(c, buf->base, (size_t)nread);
        break;
    case CONN_LINGER:
        c->linger_bytes += (size_t)nread;
        if (c->linger_bytes > CG_HTTP_LINGER_BYTES_MAX) {
            conn_close(c);
        }
        break;
    default:
        break; /* not held: input after a final request or an error is dropped */
    }
}

static void conn_timer_cb(uv_timer_t *t)
{
    cg_http_conn *c = t->data;
    if (c->dead) {
        conn_close(c);
        return;
    }
    switch (c->state) {
    case CONN_READING:
        conn_fail(c, 408, "request_timeout", "request not received within the request timeout");
        break;
    case CONN_FLUSHING:
        if (c->writes_inflight == 0) {
            conn_finish(c); /* deferred by stream_end / drop */
        } else {
            conn_close(c); /* the peer does not read its response */
        }
        break;
    case CONN_IDLE:
    case CONN_LINGER:
        conn_close(c);
        break;
    default:
        break;
    }
}

/* ---- parser callbacks: copy the request into the arena and body buffer ---- */

/* Remember why the request is refused; the callback then returns -1. */
static int conn_refuse(cg_http_conn *c, int status, const char *code, const char *msg)
{
    c->err_status = status;
    c->err_code = code;
    c->err_msg = msg;
    return -1;
}

/* Append to the arena; counted bytes are checked against header_max_bytes. */
static int conn_arena_add(cg_http_conn *c, const char *p, size_t n, int counted)
{
    const cg_http_opts *o = &c->srv->opts;
    if (counted) {
        if (n > o->header_max_bytes - c->hdr_bytes) {
            return conn_refuse(c, 431, "headers_too_large", "request headers too large");
        }
        c->hdr_bytes += (uint32_t)n;
    }
    if (c->arena_len + n > c->arena_cap) {
        size_t max = (size_t)o->header_max_bytes + CG_HTTP_ARENA_SLACK_BYTES;
        size_t cap = c->arena_cap ? c->arena_cap : CG_HTTP_ARENA_INIT_BYTES;
        while (cap < c->arena_len + n) {
            cap *= 2;
        }
        cap = cap > max ? max : cap;
        assert(cap >= c->arena_len + n); /* NULs are bounded by the slack */
        char *a = realloc(c->arena, cap);
        if (a == NULL) {
            return conn_refuse(c, 503, "server_busy", "out of memory");
        }
        c->arena = a;
        c->arena_cap = (uint32_t)cap;
    }
    memcpy(c->arena + c->arena_len, p, n);
    c->arena_len += (uint32_t)n;
    return 0;
}

/* Terminate the url or header being collected. */
static int conn_arena_close(cg_http_conn *c)
{
    int rc = 0;
    switch (c->hstate) {
    case HS_URL:
        c->url_len = c->arena_len;
        rc = conn_arena_add(c, "", 1, 0);
        break;
    case HS_FIELD: /* a name without a value: the value is "" */
        rc = conn_arena_add(c, "", 1, 0);
        c->value_off[c->req.header_n] = c->arena_len;
        rc = rc ? rc : conn_arena_add(c, "", 1, 0);
        c->req.header_n++;
        break;
    case HS_VALUE:
        rc = conn_arena_add(c, "", 1, 0);
        c->req.header_n++;
        break;
    case HS_DONE:
        break;
    }
    c->hstate = HS_DONE;
    return rc;
}

static int conn_on_message_begin(http_parser *p)
{
    cg_http_conn *c = p->data;
    c->state = CONN_READING;
    c->arena_len = 0;
    c->hdr_bytes = 0;
    c->url_len = 0;
    c->hstate = HS_URL;
    c->in_body = 0;
    c->body_len = 0;
    c->err_status = 0;
    c->req.header_n = 0;
    conn_timer_start(c, c->srv->opts.request_timeout_ms);
    return 0;
}

static int conn_on_url(http_parser *p, const char *at, size_t len)
{
    return conn_arena_add(p->data, at, len, 1);
}

static int conn_on_header_field(http_parser *p, const char *at, size_t len)
{
    cg_http_conn *c = p->data;
    if (c->in_body) {
        return 0; /* trailers of a chunked body are ignored */
    }
    if (c->hstate != HS_FIELD) {
        if (conn_arena_close(c) != 0) {
            return -1;
        }
        if (c->req.header_n == CG_HTTP_HEADERS_MAX) {
            return conn_refuse(c, 431, "headers_too_large", "too many request headers");
        }
        c->name_off[c->req.header_n] = c->arena_len;
        c->hstate = HS_FIELD;
    }
    return conn_arena_add(c, at, len, 1);
}

static int conn_on_header_value(http_parser *p, const char *at, size_t len)
{
    cg_http_conn *c = p->data;
    if (c->in_body) {
        return 0;
    }
    if (c->hstate == HS_FIELD) {
        if (conn_arena_add(c, "", 1, 0) != 0) {
            return -1;
        }
        c->value_off[c->req.header_n] = c->arena_len;
        c->hstate = HS_VALUE;
    }
    return conn_arena_add(c, at, len, 1);
}

/* Point the request at the arena: path, query, trimmed header values. */
static void conn_resolve_request(cg_http_conn *c)
{
    cg_http_req *r = &c->req;
    char *url = c->arena;
    /* Absolute form (http://host/path): keep only the path. */
    if (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0) {
        char *slash = strchr(strstr(url, "//") + 2, '/');
        url = slash != NULL ? slash : (char *)"/";
    }
    char *q = strchr(url, '?');
    if (q != NULL) {
        *q = '\0';
    }
    r->path = url;
    r->query = q != NULL ? q + 1 : "";
    r->method = http_method_str((enum http_method)c->parser.method);
    for (uint32_t i = 0; i < r->header_n; i++) {
        char *v = c->arena + c->value_off[i];
        size_t vl = strlen(v);
        while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) {
            v[--vl] = '\0';
        }
        r->headers[i].name = c->arena + c->name_off[i];
        r->headers[i].value = v;
    }
}

/* Make room for n more body bytes plus a NUL. */
static int conn_body_reserve(cg_http_conn *c, size_t n)
{
    size_t need = c->body_len + n + 1;
    if (need <= c->body_cap) {
        return 0;
    }
    size_t cap = c->body_cap ? c->body_cap : CG_HTTP_BODY_INIT_BYTES;
    while (cap < need) {
        cap *= 2;
    }
    size_t max = (size_t)c->srv->opts.body_max_bytes + 1;
    cap = cap > max ? max : cap;
    char *b = realloc(c->body, cap);
    if (b == NULL) {
        return conn_refuse(c, 503, "server_busy", "out of memory");
    }
    c->body = b;
    c->body_cap = cap;
    return 0;
}

static int conn_on_headers_complete(http_parser *p)
{
    cg_http_conn *c = p->data;
    if (conn_arena_close(c) != 0) {
        return -1;
    }
    c->in_body = 1;
    conn_resolve_request(c);
    c->http10 = p->http_major == 0 || (p->http_major == 1 && p->http_minor == 0);
    c->head_only = p->method == HTTP_HEAD;
    int chunked = (p->flags & F_CHUNKED) != 0;
    if (!chunked && p->content_length != ULLONG_MAX) {
        if (p->content_length > c->srv->opts.body_max_bytes) {
            return conn_refuse(c, 413, "body_too_large", "request body too large");
        }
        /* Memory follows the bytes that actually arrive beyond the first part. */
        size_t pre = p->content_length < CG_HTTP_BODY_PREALLOC_BYTES ? (size_t)p->content_length
                                                                     : CG_HTTP_BODY_PREALLOC_BYTES;
        if (conn_body_reserve(c, pre) != 0) {
            return -1;
        }
    }
    int has_body = chunked || (p->content_length != ULLONG_MAX && p->content_length > 0);
    const char *expect = cg_http_req_header(&c->req, "expect");
    if (has_body && expect != NULL && strcasecmp(expect, "100-continue") == 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        conn_write_copy(c, cont, sizeof(cont) - 1);
    }
    return 0;
}

static int conn_on_body(http_parser *p, const char *at, size_t len)
{
    cg_http_conn *c = p->data;
    if (len > c->srv->opts.body_max_bytes - c->body_len) {
        return conn_refuse(c, 413, "body_too_large", "request body too large");
    }
    if (conn_body_reserve(c, len) != 0) {
        return -1;
    }
    memcpy(c->body + c->body_len, at, len);
    c->body_len += len;
    return 0;
}

static int conn_on_message_complete(http_parser *p)
{
    cg_http_conn *c = p->data;
    c->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    if (c->body != NULL) {
        c->body[c->body_len] = '\0';
        c->req.body = c->body;
    } else {
        c->req.body = "";
    }
    c->req.body_len = c->body_len;
    http_parser_pause(p, 1); /* until the response is flushed */
    return 0;
}

/* ---- accepting ---- */

static void http_reject_close_cb(uv_handle_t *h)
{
    free(h);
}

/* Over conns_max (or out of memory): accept and close at once. */
static void server_reject(cg_http_server *s)
{
    uv_tcp_t *t = malloc(sizeof(*t));
    if (t == NULL) {
        return;
    }
    uv_tcp_init(s->loop, t);
    uv_accept((uv_stream_t *)&s->tcp, (uv_stream_t *)t);
    uv_close((uv_handle_t *)t, http_reject_close_cb);
}

static void conn_peer_ip(cg_http_conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    c->req.peer_ip[0] = '\0';
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0) {
        return;
    }
    if (ss.ss_family == AF_INET) {
        uv_ip4_name((struct sockaddr_in *)&ss, c->req.peer_ip, sizeof(c->req.peer_ip));
        return;
    }
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) { /* report ::ffff:a.b.c.d as a.b.c.d */
        struct sockaddr_in s4 = {.sin_family = AF_INET};
        memcpy(&s4.sin_addr, &s6->sin6_addr.s6_addr[12], 4);
        uv_ip4_name(&s4, c->req.peer_ip, sizeof(c->req.peer_ip));
        return;
    }
    uv_ip6_name(s6, c->req.peer_ip, sizeof(c->req.peer_ip));
}

static void server_conn_cb(uv_stream_t *ls, int status)
{
    cg_http_server *s = ls->data;
    if (status < 0) {
        cg_log(CG_LOG_WARN, "http accept failed", "error", uv_strerror(status), NULL);
        return;
    }
    cg_http_conn *c = s->conn_n < s->opts.conns_max ? calloc(1, sizeof(*c)) : NULL;
    if (c == NULL) {
        server_reject(s);
        return;
    }
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    c->next = s->conns;
    if (s->conns != NULL) {
        s->conns->prev = c;
    }
    s->conns = c;
    s->conn_n++;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    conn_peer_ip(c);
    c->req.conn_id = atomic_fetch_add(&http_conn_ids, 1) + 1;
    conn_reset_request(c);
    /* A fresh connection must start its request within the request timeout. */
    conn_timer_start(c, s->opts.request_timeout_ms);
    conn_read_start(c);
}

/* ---- listening ---- */

/* Bound, listening, non-blocking socket for host:port. */
static cg_err http_listen_fd(const char *host, int port, int reuseport, int *out)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    int wild = host[0] == '\0' || strcmp(host, "*") == 0;
    if (getaddrinfo(wild ? NULL : host, portstr, &hints, &ai) != 0 || ai == NULL) {
        return CG_ERR_INVAL;
    }
    cg_err err = CG_ERR_OK;
    int one = 1;
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err = cg_err_from_errno(errno);
        goto fail;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, CG_HTTP_BACKLOG) != 0) {
        err = cg_err_from_errno(errno);
        goto fail;
    }
    freeaddrinfo(ai);
    *out = fd;
    return CG_ERR_OK;
fail:
    if (fd >= 0) {
        close(fd);
    }
    freeaddrinfo(ai);
    return err;
}

static void http_opts_resolve(cg_http_opts *o)
{
    o->body_max_bytes = o->body_max_bytes ? o->body_max_bytes : CG_HTTP_DEF_BODY_MAX_BYTES;
    o->header_max_bytes = o->header_max_bytes ? o->header_max_bytes : CG_HTTP_DEF_HEADER_MAX_BYTES;
    if (o->header_max_bytes > CG_HTTP_PARSER_HEADER_MAX) {
        o->header_max_bytes = CG_HTTP_PARSER_HEADER_MAX;
    }
    o->request_timeout_ms =
        o->request_timeout_ms ? o->request_timeout_ms : CG_HTTP_DEF_REQUEST_TIMEOUT_MS;
    o->idle_timeout_ms = o->idle_timeout_ms ? o->idle_timeout_ms : CG_HTTP_DEF_IDLE_TIMEOUT_MS;
    o->conns_max = o->conns_max ? o->conns_max : CG_HTTP_DEF_CONNS_MAX;
}

static void server_close_cb(uv_handle_t *h)
{
    cg_http_server *s = h->data;
    s->listener_open = 0;
    server_maybe_free(s);
}

cg_err cg_http_listen(uv_loop_t *loop, const char *hostport, int reuseport, const cg_http_opts *o,
                      cg_http_handler_cb handler, void *ud, cg_http_server **out)
{
    char host[CG_ADDR_MAX + 1];
    int port, fd = -1;
    uv_once(&http_setup_once, http_process_setup);
    cg_err err = cg_addr_split(hostport, host, sizeof(host), &port);
    if (err != CG_ERR_OK) {
        return err;
    }
    cg_http_server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return CG_ERR_NOMEM;
    }
    err = http_listen_fd(host, port, reuseport, &fd);
    if (err != CG_ERR_OK) {
        free(s);
        return err;
    }
    s->loop = loop;
    s->opts = *o;
    http_opts_resolve(&s->opts);
    uv_prepare_init(loop, &s->prep);
    s->prep.data = s;
    s->prep_open = 1;
    s->handler = handler;
    s->ud = ud;
    uv_tcp_init(loop, &s->tcp);
    s->tcp.data = s;
    s->listener_open = 1;
    int rc = uv_tcp_open(&s->tcp, fd);
    if (rc != 0) {
        close(fd); /* not owned by the handle yet */
    }
    rc = rc ? rc : uv_listen((uv_stream_t *)&s->tcp, CG_HTTP_BACKLOG, server_conn_cb);
    if (rc != 0) {
        s->closing = 1; /* freed by the close callback when the loop runs */
        uv_close((uv_handle_t *)&s->tcp, server_close_cb);
        return cg_err_from_errno(-rc);
    }
    *out = s;
    return CG_ERR_OK;
}

void cg_http_server_close(cg_http_server *s)
{
    if (s->closing) {
        return;
    }
    s->closing = 1;
    uv_close((uv_handle_t *)&s->tcp, server_close_cb);
    for (cg_http_conn *c = s->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (c->state == CONN_IDLE || c->state == CONN_READING) {
            conn_close(c);
        }
    }
    server_maybe_free(s); /* not yet: the listener closes on the loop */
}

uint32_t cg_http_server_conns(const cg_http_server *s)
{
    return s->conn_n;
}

int cg_http_server_port(const cg_http_server *s)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&ss, &len) != 0) {
        return -1;
    }
    if (ss.ss_family == AF_INET) {
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* ---- the handler's side ---- */

const char *cg_http_req_header(const cg_http_req *r, const char *name)
{
    for (uint32_t i = 0; i < r->header_n; i++) {
        if (strcasecmp(r->headers[i].name, name) == 0) {
            return r->headers[i].value;
        }
    }
    return NULL;
}

void cg_http_conn_set_callbacks(cg_http_conn *c, cg_http_abort_cb on_abort,
                                cg_http_drain_cb on_drain, void *ud)
{
    if (c->state == CONN_CLOSING) {
        return;
    }
    c->on_abort = on_abort;
    c->on_drain = on_drain;
    c->cb_ud = ud;
}

void cg_http_respond(cg_http_conn *c, int status, const char *extra_headers,
                     const char *content_type, const void *body, size_t len)
{
    if (conn_gone(c, 1)) {
        return;
    }
    assert(c->state == CONN_OWED && !c->streaming);
    conn_respond_raw(c, status, extra_headers, content_type, body, len);
}

void cg_http_respond_error(cg_http_conn *c, int status, const char *type, const char *code,
                           const char *message, const char *extra_headers)
{
    if (conn_gone(c, 1)) {
        return;
    }
    assert(c->state == CONN_OWED && !c->streaming);
    conn_respond_error_raw(c, status, type, code, message, extra_headers);
}

void cg_http_stream_begin(cg_http_conn *c, int status, const char *extra_headers,
                          const char *content_type)
{
    if (conn_gone(c, 0)) {
        return;
    }
    assert(c->state == CONN_OWED && !c->streaming);
    c->streaming = 1;
    c->chunked_out = !c->http10;
    if (c->http10 || c->srv->closing) {
        c->keep_alive = 0; /* HTTP/1.0 has no chunks: the close ends the body */
    }
    size_t cap = conn_head_cap(extra_headers, content_type);
    char *d = conn_out_reserve(c, cap);
    if (d == NULL) {
        conn_defer_close(c);
        return;
    }
    c->out->len += conn_head(c, d, cap, status, extra_headers, content_type,
                             c->chunked_out ? CG_HTTP_CLEN_CHUNKED : CG_HTTP_CLEN_NONE);
}

/* "<hex n>\r\n" at d; returns its length. */
static size_t conn_chunk_size_line(char *d, size_t n)
{
    char tmp[2 * sizeof(size_t)];
    size_t k = 0;
    do {
        tmp[k++] = "0123456789abcdef"[n & 15];
        n >>= 4;
    } while (n != 0);
    for (size_t i = 0; i < k; i++) {
        d[i] = tmp[k - 1 - i];
    }
    d[k] = '\r';
    d[k + 1] = '\n';
    return k + 2;
}

size_t cg_http_stream_write(cg_http_conn *c, const void *p, size_t n)
{
    if (conn_gone(c, 0)) {
        return 0;
    }
    assert(c->state == CONN_OWED && c->streaming);
    if (n == 0 || c->head_only) {
        return c->pending_bytes +
               (c->out != NULL ? c->out->len : 0); /* an empty chunk ends the body */
    }
    char *d = conn_out_reserve(c, n + CG_HTTP_CHUNK_FRAME_BYTES);
    if (d == NULL) {
        conn_defer_close(c);
        return c->pending_bytes;
    }
    size_t o = c->chunked_out ? conn_chunk_size_line(d, n) : 0;
    memcpy(d + o, p, n);
    o += n;
    if (c->chunked_out) {
        memcpy(d + o, "\r\n", 2);
        o += 2;
    }
    c->out->len += o;
    return c->pending_bytes + c->out->len;
}

/* Complete the owed response once what is queued has been written. */
static void conn_complete(cg_http_conn *c)
{
    conn_out_flush(c);
    c->state = CONN_FLUSHING;
    /* With writes in flight the last write callback finishes; else the timer. */
    conn_timer_start(c, c->writes_inflight ? c->srv->opts.idle_timeout_ms : 0);
}

void cg_http_stream_end(cg_http_conn *c)
{
    if (conn_gone(c, 1)) {
        return;
    }
    assert(c->state == CONN_OWED && c->streaming);
    if (c->chunked_out && !c->head_only) {
        char *d = conn_out_reserve(c, 5);
        if (d != NULL) {
            memcpy(d, "0\r\n\r\n", 5);
            c->out->len += 5;
        } else {
            conn_defer_close(c);
        }
    }
    conn_complete(c);
}

void cg_http_conn_drop(cg_http_conn *c)
{
    if (conn_gone(c, 1)) {
        return;
    }
    assert(c->state == CONN_OWED);
    c->on_abort = NULL;
    c->on_drain = NULL;
    c->keep_alive = 0;
    conn_complete(c);
}

const char *cg_http_reason(int status)
{
    const char *r = http_status_str((enum http_status)status);
    return r[0] == '<' ? "Unknown" : r; /* http-parser says "<unknown>" */
}

/* ---- a server on its own thread ---- */

struct cg_http_thread {
    uv_loop_t loop;
    uv_async_t stop;
    uv_thread_t thread;
    uv_sem_t started;
    cg_http_server *server;
    const char *hostport; /* during start only */
    cg_http_opts opts;
    cg_http_handler_cb handler;
    void *ud;
    cg_err err; /* of listening; read after started */
    int port;
};

static void cg_http_thread_stop_cb(uv_async_t *a)
{
    cg_http_thread *t = a->data;
    if (t->server != NULL) {
        cg_http_server_close(t->server);
        t->server = NULL;
    }
    uv_close((uv_handle_t *)&t->stop, NULL);
}

static void cg_http_thread_main(void *arg)
{
    cg_http_thread *t = arg;
    t->err = cg_http_listen(&t->loop, t->hostport, 0, &t->opts, t->handler, t->ud, &t->server);
    if (t->err == CG_ERR_OK) {
        t->port = cg_http_server_port(t->server);
        if (t->port <= 0) {
            cg_http_server_close(t->server);
            t->server = NULL;
            t->err = CG_ERR_IO;
        }
    }
    if (t->err != CG_ERR_OK) {
        uv_close((uv_handle_t *)&t->stop, NULL);
    }
    uv_sem_post(&t->started);
    uv_run(&t->loop, UV_RUN_DEFAULT);
}

cg_err cg_http_thread_start(const char *hostport, const cg_http_opts *o, cg_http_handler_cb handler,
                            void *ud, cg_http_thread **out)
{
    cg_http_thread *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return CG_ERR_NOMEM;
    }
    t->hostport = hostport;
    t->opts = *o;
    t->handler = handler;
    t->ud = ud;
    if (uv_loop_init(&t->loop) != 0) {
        free(t);
        return CG_ERR_NOMEM;
    }
    if (uv_async_init(&t->loop, &t->stop, cg_http_thread_stop_cb) != 0) {
        uv_loop_close(&t->loop);
        free(t);
        return CG_ERR_NOMEM;
    }
    if (uv_sem_init(&t->started, 0) != 0) {
        uv_close((uv_handle_t *)&t->stop, NULL);
        uv_run(&t->loop, UV_RUN_DEFAULT);
        uv_loop_close(&t->loop);
        free(t);
        return CG_ERR_NOMEM;
    }
    t->stop.data = t;
    if (uv_thread_create(&t->thread, cg_http_thread_main, t) != 0) {
        uv_close((uv_handle_t *)&t->stop, NULL);
        uv_run(&t->loop, UV_RUN_DEFAULT);
        uv_loop_close(&t->loop);
        uv_sem_destroy(&t->started);
        free(t);
        return CG_ERR_NOMEM;
    }
    uv_sem_wait(&t->started);
    t->hostport = NULL;
    if (t->err != CG_ERR_OK) {
        cg_err err = t->err;
        uv_thread_join(&t->thread);
        uv_loop_close(&t->loop);
        uv_sem_destroy(&t->started);
        free(t);
        return err;
    }
    *out = t;
    return CG_ERR_OK;
}

int cg_http_thread_port(const cg_http_thread *t)
{
    return t->port;
}

void cg_http_thread_stop(cg_http_thread *t)
{
    if (t == NULL) {
        return;
    }
    uv_async_send(&t->stop);
    uv_thread_join(&t->thread);
    uv_loop_close(&t->loop);
    uv_sem_destroy(&t->started);
    free(t);
}

int cg_http_hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

int cg_http_pct_decode(const char *s, size_t len, int plus_space, char *out, size_t cap)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)s[i];
        if (c == '+' && plus_space) {
            c = ' ';
        } else if (c == '%') {
            int hi = i + 2 < len ? cg_http_hex_digit(s[i + 1]) : -1;
            int lo = hi < 0 ? -1 : cg_http_hex_digit(s[i + 2]);
            if (lo < 0) {
                return 0;
            }
            c = hi * 16 + lo;
            i += 2;
        }
        if (c == 0 || n + 1 >= cap) {
            return 0;
        }
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return 1;
}
