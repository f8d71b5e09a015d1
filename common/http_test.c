/*
 * http_test.c — unit tests of cg_http: a server on 127.0.0.1:0 runs its own
 * loop in a thread, the test talks to it through plain blocking sockets.
 *
 * Fixtures are heap-allocated and deliberately leaked when a check fails, so a
 * server thread still running never touches a dead stack frame.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "cg_clock.h"
#include "cg_http.h"
#include "cg_test.h"

#define FX_BODY_MAX_BYTES 1024
#define FX_HEADER_MAX_BYTES 4096
#define FX_REQUEST_TIMEOUT_MS 200
#define FX_DELAY_MS 50
#define CLI_TIMEOUT_MS 3000
#define CLI_BUF_BYTES 65536
#define FX_BIG_CHUNK_BYTES 4096
#define FX_BIG_CHUNKS 2048 /* 8 MiB: far more than the socket buffers hold */
#define FX_BIG_PENDING_MAX 16384

typedef struct fx {
    uv_loop_t loop;
    uv_async_t stop;
    uv_thread_t thr;
    cg_http_server *srv;
    int port;
    int loop_close_rc;
    atomic_int aborts;
    atomic_int hangs;
    atomic_int drains;
    atomic_int delays; /* /delay requests the handler has seen */
    int big_sent;      /* loop thread only */
} fx;

/* ---- server side (runs on the fixture's loop) ---- */

typedef struct fx_delay {
    uv_timer_t timer;
    cg_http_conn *conn;
} fx_delay;

static void fx_free_cb(uv_handle_t *h)
{
    free(h->data);
}

static void fx_delay_cb(uv_timer_t *t)
{
    fx_delay *d = t->data;
    cg_http_respond(d->conn, 200, NULL, "text/plain", "delayed", 7);
    uv_close((uv_handle_t *)t, fx_free_cb);
}

static void fx_delay_abort_cb(cg_http_conn *c, void *ud)
{
    fx_delay *d = ud;
    (void)c;
    uv_close((uv_handle_t *)&d->timer, fx_free_cb);
}

static void fx_hang_abort_cb(cg_http_conn *c, void *ud)
{
    fx *f = ud;
    (void)c;
    atomic_fetch_add(&f->aborts, 1);
}

/* /big: FX_BIG_CHUNKS chunks, never more than FX_BIG_PENDING_MAX queued. */
static void fx_big_pump(cg_http_conn *c, fx *f)
{
    char chunk[FX_BIG_CHUNK_BYTES];
    while (f->big_sent < FX_BIG_CHUNKS) {
        memset(chunk, 'a' + f->big_sent % 26, sizeof(chunk));
        f->big_sent++;
        if (cg_http_stream_write(c, chunk, sizeof(chunk)) > FX_BIG_PENDING_MAX) {
            return; /* wait for the drain callback */
        }
    }
    cg_http_stream_end(c);
}

static void fx_big_drain_cb(cg_http_conn *c, void *ud)
{
    fx *f = ud;
    atomic_fetch_add(&f->drains, 1);
    fx_big_pump(c, f);
}

/* /sizes: chunks of these sizes, all written in the handler call (so coalesced,
 * past the 64 KiB block limit too); chunk i is filled with 'A' + i. */
static const size_t fx_sizes[] = {1, 15, 16, 255, 256, 4095, 65536, 70000, 3};
#define FX_SIZES_N (sizeof(fx_sizes) / sizeof(fx_sizes[0]))

static void fx_sizes_stream(cg_http_conn *c)
{
    static char buf[70000];
    cg_http_stream_begin(c, 200, "X-Sizes: 1\r\n", "application/octet-stream");
    for (size_t i = 0; i < FX_SIZES_N; i++) {
        memset(buf, 'A' + (int)i, fx_sizes[i]);
        cg_http_stream_write(c, buf, fx_sizes[i]);
    }
    cg_http_stream_end(c);
}

static void fx_echo(cg_http_conn *c, const cg_http_req *r)
{
    char buf[FX_BODY_MAX_BYTES + 512];
    int n = snprintf(buf, sizeof(buf), "%s %s?%s %zu:", r->method, r->path, r->query, r->body_len);
    memcpy(buf + n, r->body, r->body_len);
    const char *h = cg_http_req_header(r, "x-value");
    n += (int)r->body_len;
    n += snprintf(buf + n, sizeof(buf) - (size_t)n, "|%s", h ? h : "-");
    cg_http_respond(c, 200, "X-Test: 1\r\n", "text/plain", buf, (size_t)n);
}

static void fx_handler(cg_http_conn *c, const cg_http_req *r, void *ud)
{
    fx *f = ud;
    if (strcmp(r->path, "/echo") == 0) {
        fx_echo(c, r);
    } else if (strcmp(r->path, "/stream") == 0) {
        cg_http_stream_begin(c, 200, NULL, "text/event-stream");
        for (int i = 0; i < 5; i++) {
            char chunk[32];
            int n = snprintf(chunk, sizeof(chunk), "chunk-%d;", i);
            cg_http_stream_write(c, chunk, (size_t)n);
        }
        cg_http_stream_end(c);
    } else if (strcmp(r->path, "/delay") == 0) {
        atomic_fetch_add(&f->delays, 1);
        fx_delay *d = malloc(sizeof(*d));
        d->conn = c;
        uv_timer_init(&f->loop, &d->timer);
        d->timer.data = d;
        cg_http_conn_set_callbacks(c, fx_delay_abort_cb, NULL, d);
        uv_timer_start(&d->timer, fx_delay_cb, FX_DELAY_MS, 0);
    } else if (strcmp(r->path, "/sizes") == 0) {
        fx_sizes_stream(c);
    } else if (strcmp(r->path, "/big") == 0) {
        f->big_sent = 0;
        cg_http_conn_set_callbacks(c, NULL, fx_big_drain_cb, f);
        cg_http_stream_begin(c, 200, NULL, "application/octet-stream");
        fx_big_pump(c, f);
    } else if (strcmp(r->path, "/hang") == 0) {
        cg_http_conn_set_callbacks(c, fx_hang_abort_cb, NULL, f);
        atomic_fetch_add(&f->hangs, 1);
    } else {
        cg_http_respond_error(c, 404, "invalid_request_error", "not_found", "no \"such\" path",
                              NULL);
    }
}

static void fx_stop_cb(uv_async_t *a)
{
    fx *f = a->data;
    cg_http_server_close(f->srv);
    uv_close((uv_handle_t *)a, NULL);
}

static void fx_thread(void *arg)
{
    fx *f = arg;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    f->loop_close_rc = uv_loop_close(&f->loop);
}

static fx *fx_start(uint32_t conns_max)
{
    fx *f = calloc(1, sizeof(*f));
    cg_http_opts o = {.body_max_bytes = FX_BODY_MAX_BYTES,
                      .header_max_bytes = FX_HEADER_MAX_BYTES,
                      .request_timeout_ms = FX_REQUEST_TIMEOUT_MS,
                      .idle_timeout_ms = 5000,
                      .conns_max = conns_max};
    if (f == NULL || uv_loop_init(&f->loop) != 0) {
        return NULL;
    }
    if (cg_http_listen(&f->loop, "127.0.0.1:0", 0, &o, fx_handler, f, &f->srv) != CG_ERR_OK) {
        return NULL;
    }
    f->port = cg_http_server_port(f->srv);
    uv_async_init(&f->loop, &f->stop, fx_stop_cb);
    f->stop.data = f;
    if (uv_thread_create(&f->thr, fx_thread, f) != 0) {
        return NULL;
    }
    return f;
}

/* Close the server, wait for the loop to end; returns uv_loop_close's result
 * (0 = every handle was closed). */
static int fx_stop(fx *f)
{
    uv_async_send(&f->stop);
    uv_thread_join(&f->thr);
    int rc = f->loop_close_rc;
    free(f);
    return rc;
}

/* ---- client side (blocking sockets) ---- */

typedef struct cli {
    int fd;
    size_t len;
    char buf[CLI_BUF_BYTES + 1]; /* + NUL for cli_find */
} cli;

typedef struct resp {
    int status;
    char head[4096];
    char body[CLI_BUF_BYTES];
    size_t body_len;
} resp;

static cli *cli_open(int port)
{
    cli *c = calloc(1, sizeof(*c));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {.tv_sec = CLI_TIMEOUT_MS / 1000};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(c->fd);
        free(c);
        return NULL;
    }
    return c;
}

static void cli_close(cli *c)
{
    close(c->fd);
    free(c);
}

static int cli_send(cli *c, const char *s)
{
    size_t n = strlen(s);
    return send(c->fd, s, n, MSG_NOSIGNAL) == (ssize_t)n ? 0 : -1;
}

/* Read more bytes; returns the count, 0 at EOF, -1 on error or timeout. */
static ssize_t cli_fill(cli *c)
{
    if (c->len == CLI_BUF_BYTES) {
        return -1;
    }
    ssize_t n = recv(c->fd, c->buf + c->len, CLI_BUF_BYTES - c->len, 0);
    if (n > 0) {
        c->len += (size_t)n;
    }
    return n;
}

static void cli_consume(cli *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

static char *cli_find(cli *c, const char *s)
{
    c->buf[c->len] = '\0';
    return strstr(c->buf, s);
}

/* Decode a chunked body from c into r. */
static int cli_chunked(cli *c, resp *r)
{
    for (;;) {
        char *eol;
        while ((eol = cli_find(c, "\r\n")) == NULL) {
            if (cli_fill(c) <= 0) {
                return -1;
            }
        }
        size_t sz = strtoul(c->buf, NULL, 16);
        size_t hl = (size_t)(eol - c->buf) + 2;
        while (c->len < hl + sz + 2) {
            if (cli_fill(c) <= 0) {
                return -1;
            }
        }
        if (r->body_len + sz >= sizeof(r->body)) {
            return -1;
        }
        memcpy(r->body + r->body_len, c->buf + hl, sz);
        r->body_len += sz;
        cli_consume(c, hl + sz + 2);
        if (sz == 0) {
            return 0;
        }
    }
}

/* Read one response. Returns 0 on success. */
static int cli_resp(cli *c, resp *r)
{
    char *end;
    memset(r, 0, sizeof(*r));
    while ((end = cli_find(c, "\r\n\r\n")) == NULL) {
        if (cli_fill(c) <= 0) {
            return -1;
        }
    }
    size_t hl = (size_t)(end - c->buf) + 4;
    if (hl >= sizeof(r->head) || strncmp(c->buf, "HTTP/1.1 ", 9) != 0) {
        return -1;
    }
    r->status = (int)strtol(c->buf + 9, NULL, 10);
    memcpy(r->head, c->buf, hl);
    cli_consume(c, hl);
    if (strcasestr(r->head, "\r\ntransfer-encoding: chunked") != NULL) {
        return cli_chunked(c, r);
    }
    char *cl = strcasestr(r->head, "\r\ncontent-length:");
    size_t n = cl ? strtoul(cl + 17, NULL, 10) : 0;
    while (c->len < n) {
        if (cli_fill(c) <= 0) {
            return -1;
        }
    }
    if (n >= sizeof(r->body)) {
        return -1;
    }
    memcpy(r->body, c->buf, n);
    r->body_len = n;
    cli_consume(c, n);
    return 0;
}

/* After a "Connection: close" response the server must close (EOF, not a timeout). */
static int cli_eof(cli *c)
{
    char b[256];
    ssize_t n;
    while ((n = recv(c->fd, b, sizeof(b), 0)) > 0) {
    }
    return n == 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- tests ---- */

CG_TEST(http_keepalive_two_requests)
{
    fx *f = fx_start(64);
    CG_CHECK(f != NULL);
    cli *c = cli_open(f->port);
    CG_CHECK(c != NULL);
    resp *r = malloc(sizeof(*r));
    CG_CHECK(cli_send(c, "GET /echo?a=1 HTTP/1.1\r\nHost: x\r\nX-Value:  v1  \r\n\r\n") == 0);
    CG_CHECK(cli_resp(c, r) == 0);
    CG_CHECK_EQ_INT(r->status, 200);
    CG_CHECK_EQ_STR(r->body, "GET /echo?a=1 0:|v1");
    CG_CHECK(strstr(r->head, "X-Test: 1\r\n") != NULL);
    CG_CHECK(strstr(r->head, "Connection: close") == NULL);
    CG_CHECK(cli_send(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello") == 0);
    CG_CHECK(cli_resp(c, r) == 0);
    CG_CHECK_EQ_INT(r->status, 200);
    CG_CHECK_EQ_STR(r->body, "POST /echo? 5:hello|-");
    CG_CHECK(cli_send(c, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CG_CHECK(cli_resp(c, r) == 0);
    CG_CHECK_EQ_INT(r->status, 404);
    CG_CHECK_EQ_STR(r->body, "{\"error\":{\"message\":\"no \\\"such\\\" path\",\"type\":"
                             "\"invalid_request_error\",\"code\":\"not_found\",\"param\":null}}");
    cli_close(c);
    free(r);
    CG_CHECK_EQ_INT(fx_stop(f), 0);
}

CG_TEST(http_pipelined_in_order)
{
    fx *f = fx_start(64);
    CG_CHECK(f != NULL);
    cli *c = cli_open(f->port);
    CG_CHECK(c != NULL);
    resp *r = malloc(sizeof(*r));
    /* The first is answered late (timer), the second at once: order must hold. */
    CG_CHECK(cli_send(c, "GET /delay HTTP/1.1\r\nHost: x\r\n\r\n"
                         "GET /echo?second HTTP/1.1\r\nHost: x\r\n\r\n"
                         "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CG_CHECK(cli_resp(c, r) == 0);
    CG_CHECK_EQ_STR(r->body, "delayed");
    CG_CHECK(cli_resp(c, r) == 0);
    CG_CHECK_EQ_STR(r->body, "GET /echo?second 0:|-");
    CG_CHECK(cli_resp(c, r) == 0);
    CG_CHECK_EQ_STR(r->body, "chunk-0;chunk-1;chunk-2;chunk-3;chunk-4;");
    cli_close(c);
    free(r);
    CG_CHECK_EQ_INT(fx_stop(f), 0);
}

/* Send req, expect status and code in the error body, then the close. */
static int expect_error(int port, const char *req, int status, const char *code)
{
    cli *c = cli_open(port);
    resp *r = malloc(sizeof(*r));
    int ok = c != NULL && r != NULL && cli_send(c, req) == 0 && cli_resp(c, r) == 0 &&
             r->status == status && strstr(r->body, code) != NULL &&
             strstr(r->body, "\"type\":\"invalid_request_error\"") != NULL &&
             strstr(r->head, "Connection: close\r\n") != NULL && cli_eof(c);
    if (c != NULL) {
        cli_close(c);
    }
    free(r);
    return ok;
}

CG_TEST(http_limits_and_errors)
{
    fx *f = fx_start(64);
    CG_CHECK(f != NULL);
    /* Content-Length over the limit: 413 before any body byte is sent. */
    CG_CHECK(expect_error(f->port,
                          "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", 413,
                          "\"code\":\"body_too_large\""));
    /* Chunked body over the limit. */
    char *big = malloc(8192);
    int n = snprintf(big, 8192, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n",
                     FX_BODY_MAX_BYTES + 1);
    memset(big + n, 'b', FX_BODY_MAX_BYTES + 1);
    memcpy(big + n + FX_BODY_MAX_BYTES + 1, "\r\n0\r\n\r\n", 8); /* with its NUL */
    CG_CHECK(expect_error(f->port, big, 413, "\"code\":\"body_too_large\""));
    /* Headers over header_max_bytes. */
    n = snprintf(big, 8192, "GET /echo HTTP/1.1\r\nX-Big: ");
    memset(big + n, 'h', FX_HEADER_MAX_BYTES + 10);
    memcpy(big + n + FX_HEADER_MAX_BYTES + 10, "\r\n\r\n", 5); /* with its NUL */
    CG_CHECK(expect_error(f->port, big, 431, "\"code\":\"headers_too_large\""));
    free(big);
    CG_CHECK(expect_error(f->port, "GARBAGE\r\n\r\n", 400, "\"code\":\"invalid_request\""));
    CG_CHECK(expect_error(f->port, "GET /echo HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400,
                          "\"code\":\"invalid_request\""));
    CG_CHECK_EQ_INT(fx_stop(f), 0);
}

CG_TEST(http_request_timeout)
{
    fx *f = fx_start(64);
    CG_CHECK(f != NULL);
    int64_t t0 = cg_mono_ms();
    /* Half a request, then silence past the 200 ms request timeout. */
    CG_CHECK(expect_error(f->port, "GET /echo HTTP/1.1\r\nHost: x\r\n", 408,
                          "\"code\":\"request_timeout\""));
    int64_t dt = cg_mono_ms() - t0;
    CG_CHECK(dt >= FX_REQUEST_TIMEOUT_MS - 20 && dt < CLI_TIMEOUT_MS);
    CG_CHECK_EQ_INT(fx_stop(f), 0);
}

CG_TEST(http_chunked_request_and_stream)
{
    fx *f = fx_start(64);
    CG_CHECK(f != NULL);
    cli *c = cli_open(f->port);
    CG_CHECK(c != NULL);
    resp *r = malloc(sizeof(*r));
    CG_CHECK(cli_send(c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "5\r\nhello\r\n") == 0);
    sleep_ms(20); /* the rest in a second segment */
    CG_CHECK(cli_send(c, "6\r\n world\r\n0\r\n\r\n") == 0);
    CG_CHECK(cli_resp(c, r) == 0);
    CG_CHECK_EQ_INT(r->status, 200);
    CG_CHECK_EQ_STR(r->body, "POST /echo? 11:hello world|-");
    CG_CHECK(cli_send(c, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CG_CHECK(cli_resp(c, r) == 0);
    CG_CHECK_EQ_INT(r->status, 200);
    CG_CHECK(strstr(r->head, "Content-Type: text/event-stream\r\n") != NULL);
    CG_CHECK_EQ_STR(r->body, "chunk-0;chunk-1;chunk-2;chunk-3;chunk-4;");
    cli_close(c);
    free(r);
    CG_CHECK_EQ_INT(fx_stop(f), 0);
}

/* Many chunks written in one handler call are coalesced on the wire: every
 * chunk keeps its own hex size line and bytes, in order, whatever its size. */
CG_TEST(http_stream_coalesced_chunk_sizes)
{
    fx *f = fx_start(64);
    CG_CHECK(f != NULL);
    cli *c = cli_open(f->port);
    CG_CHECK(c != NULL);
    for (int round = 0; round < 2; round++) { /* twice on one keep-alive connection */
        CG_CHECK(cli_send(c, "GET /sizes HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
        char *end;
        while ((end = cli_find(c, "\r\n\r\n")) == NULL) {
            CG_CHECK(cli_fill(c) > 0);
        }
        end[2] = '\0'; /* the head, with its last header's CRLF */
        CG_CHECK(strstr(c->buf, "HTTP/1.1 200 OK\r\n") == c->buf);
        CG_CHECK(strstr(c->buf, "Transfer-Encoding: chunked\r\n") != NULL);
        CG_CHECK(strstr(c->buf, "X-Sizes: 1\r\n") != NULL);
        cli_consume(c, (size_t)(end - c->buf) + 4);
        int bad = 0;
        for (size_t i = 0; i <= FX_SIZES_N; i++) {
            size_t want = i < FX_SIZES_N ? fx_sizes[i] : 0;
            char line[24];
            int ln = snprintf(line, sizeof(line), "%zx\r\n", want);
            while (c->len < (size_t)ln) {
                CG_CHECK(cli_fill(c) > 0);
            }
            CG_CHECK(memcmp(c->buf, line, (size_t)ln) == 0);
            cli_consume(c, (size_t)ln);
            size_t got = 0;
            while (got < want) { /* the data may exceed the client buffer: take it in parts */
                if (c->len == 0) {
                    CG_CHECK(cli_fill(c) > 0);
                }
                size_t take = c->len < want - got ? c->len : want - got;
                for (size_t k = 0; k < take; k++) {
                    bad += c->buf[k] != 'A' + (int)i;
                }
                cli_consume(c, take);
                got += take;
            }
            while (c->len < 2) {
                CG_CHECK(cli_fill(c) > 0);
            }
            CG_CHECK(memcmp(c->buf, "\r\n", 2) == 0);
            cli_consume(c, 2);
        }
        CG_CHECK_EQ_INT(bad, 0);
    }
    cli_close(c);
    CG_CHECK_EQ_INT(fx_stop(f), 0);
}

/* A response much larger than the socket buffers, written under back-pressure
 * (drain callback) to a client that reads slowly. */
CG_TEST(http_stream_backpressure)
{
    fx *f = fx_start(64);
    CG_CHECK(f != NULL);
    cli *c = cli_open(f->port);
    CG_CHECK(c != NULL);
    CG_CHECK(cli_send(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    sleep_ms(100); /* let the server fill the socket buffers and wait */
    size_t total = 0, want = (size_t)FX_BIG_CHUNK_BYTES * FX_BIG_CHUNKS;
    int bad = 0;
    char *end;
    while ((end = cli_find(c, "\r\n\r\n")) == NULL) {
        CG_CHECK(cli_fill(c) > 0);
    }
    cli_consume(c, (size_t)(end - c->buf) + 4);
    for (;;) { /* chunks: "1000\r\n" + 4096 bytes + "\r\n", then "0\r\n\r\n" */
        while (c->len < 5) {
            CG_CHECK(cli_fill(c) > 0);
        }
        if (memcmp(c->buf, "0\r\n\r\n", 5) == 0) {
            break;
        }
        CG_CHECK(memcmp(c->buf, "1000\r\n", 6) == 0);
        while (c->len < 6 + FX_BIG_CHUNK_BYTES + 2) {
            CG_CHECK(cli_fill(c) > 0);
        }
        bad += c->buf[6] != 'a' + (int)(total / FX_BIG_CHUNK_BYTES) % 26;
        total += FX_BIG_CHUNK_BYTES;
        cli_consume(c, 6 + FX_BIG_CHUNK_BYTES + 2);
    }
    CG_CHECK_EQ_INT(total, want);
    CG_CHECK_EQ_INT(bad, 0);
    CG_CHECK(atomic_load(&f->drains) > 0);
    cli_close(c);
    CG_CHECK_EQ_INT(fx_stop(f), 0);
}

CG_TEST(http_expect_continue)
{
    fx *f = fx_start(64);
    CG_CHECK(f != NULL);
    cli *c = cli_open(f->port);
    CG_CHECK(c != NULL);
    resp *r = malloc(sizeof(*r));
    CG_CHECK(cli_send(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                         "Expect: 100-continue\r\n\r\n") == 0);
    CG_CHECK(cli_resp(c, r) == 0);
    CG_CHECK_EQ_INT(r->status, 100);
    CG_CHECK(cli_send(c, "abc") == 0);
    CG_CHECK(cli_resp(c, r) == 0);
    CG_CHECK_EQ_INT(r->status, 200);
    CG_CHECK_EQ_STR(r->body, "POST /echo? 3:abc|-");
    cli_close(c);
    free(r);
    CG_CHECK_EQ_INT(fx_stop(f), 0);
}

CG_TEST(http_async_response)
{
    fx *f = fx_start(64);
    CG_CHECK(f != NULL);
    cli *c = cli_open(f->port);
    CG_CHECK(c != NULL);
    resp *r = malloc(sizeof(*r));
    int64_t t0 = cg_mono_ms();
    CG_CHECK(cli_send(c, "GET /delay HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CG_CHECK(cli_resp(c, r) == 0);
    CG_CHECK(cg_mono_ms() - t0 >= FX_DELAY_MS - 5);
    CG_CHECK_EQ_INT(r->status, 200);
    CG_CHECK_EQ_STR(r->body, "delayed");
    /* HTTP/1.0 without keep-alive: answered, then closed. */
    CG_CHECK(cli_send(c, "GET /echo HTTP/1.0\r\n\r\n") == 0);
    CG_CHECK(cli_resp(c, r) == 0);
    CG_CHECK(strstr(r->head, "Connection: close\r\n") != NULL);
    CG_CHECK(cli_eof(c));
    cli_close(c);
    free(r);
    CG_CHECK_EQ_INT(fx_stop(f), 0);
}

CG_TEST(http_client_disconnect_aborts)
{
    fx *f = fx_start(64);
    CG_CHECK(f != NULL);
    cli *c = cli_open(f->port);
    CG_CHECK(c != NULL);
    CG_CHECK(cli_send(c, "GET /hang HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    for (int i = 0; i < 200 && atomic_load(&f->hangs) == 0; i++) {
        sleep_ms(5);
    }
    CG_CHECK_EQ_INT(atomic_load(&f->hangs), 1);
    cli_close(c);
    for (int i = 0; i < 200 && atomic_load(&f->aborts) == 0; i++) {
        sleep_ms(5);
    }
    sleep_ms(20);
    CG_CHECK_EQ_INT(atomic_load(&f->aborts), 1);
    CG_CHECK_EQ_INT(fx_stop(f), 0);
}

CG_TEST(http_conns_max)
{
    fx *f = fx_start(2);
    CG_CHECK(f != NULL);
    cli *a = cli_open(f->port), *b = cli_open(f->port);
    CG_CHECK(a != NULL && b != NULL);
    resp *r = malloc(sizeof(*r));
    CG_CHECK(cli_send(a, "GET /echo HTTP/1.1\r\n\r\n") == 0 && cli_resp(a, r) == 0);
    CG_CHECK(cli_send(b, "GET /echo HTTP/1.1\r\n\r\n") == 0 && cli_resp(b, r) == 0);
    cli *x = cli_open(f->port); /* accepted and closed at once */
    CG_CHECK(x != NULL);
    CG_CHECK(cli_eof(x));
    cli_close(x);
    cli_close(a);
    cli_close(b);
    free(r);
    CG_CHECK_EQ_INT(fx_stop(f), 0);
}

CG_TEST(http_close_waits_for_owed_response)
{
    fx *f = fx_start(64);
    CG_CHECK(f != NULL);
    cli *c = cli_open(f->port);
    CG_CHECK(c != NULL);
    cli *idle = cli_open(f->port);
    CG_CHECK(idle != NULL);
    resp *r = malloc(sizeof(*r));
    CG_CHECK(cli_send(c, "GET /delay HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    /* Wait until the handler owns the request (not a fixed sleep: under load the
     * stop could otherwise arrive first and find the connection idle). */
    for (int i = 0; i < 500 && atomic_load(&f->delays) == 0; i++) {
        sleep_ms(10);
    }
    CG_CHECK(atomic_load(&f->delays) == 1);
    uv_async_send(&f->stop); /* server closes while the response is owed */
    CG_CHECK(cli_resp(c, r) == 0);
    CG_CHECK_EQ_STR(r->body, "delayed");
    CG_CHECK(strstr(r->head, "Connection: close\r\n") != NULL);
    CG_CHECK(cli_eof(c));
    CG_CHECK(cli_eof(idle));
    cli_close(c);
    cli_close(idle);
    free(r);
    uv_thread_join(&f->thr);
    CG_CHECK_EQ_INT(f->loop_close_rc, 0);
    free(f);
}

static void thread_handler(cg_http_conn *c, const cg_http_req *r, void *ud)
{
    atomic_int *n = ud;
    atomic_fetch_add(n, 1);
    cg_http_respond(c, 200, NULL, "text/plain", r->path, strlen(r->path));
}

CG_TEST(http_thread_start_stop)
{
    atomic_int n = 0;
    cg_http_opts o = {.conns_max = 4};
    cg_http_thread *t = NULL, *t2 = NULL;
    CG_CHECK_EQ_INT(cg_http_thread_start("127.0.0.1:0", &o, thread_handler, &n, &t), CG_ERR_OK);
    int port = cg_http_thread_port(t);
    CG_CHECK(port > 0);
    /* The port is taken: a second listener on it fails and leaves nothing running. */
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    CG_CHECK(cg_http_thread_start(addr, &o, thread_handler, &n, &t2) != CG_ERR_OK);
    CG_CHECK(t2 == NULL);
    cli *c = cli_open(port);
    CG_CHECK(c != NULL);
    resp *r = malloc(sizeof(*r));
    CG_CHECK(cli_send(c, "GET /on-thread HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
    CG_CHECK(cli_resp(c, r) == 0);
    CG_CHECK_EQ_INT(r->status, 200);
    CG_CHECK_EQ_STR(r->body, "/on-thread");
    CG_CHECK_EQ_INT(atomic_load(&n), 1);
    cli_close(c);
    free(r);
    cg_http_thread_stop(t);
    cg_http_thread_stop(NULL);
}

CG_TEST(http_pct_decode)
{
    char out[8];
    CG_CHECK_EQ_INT(cg_http_pct_decode("a%2Fb+c", 7, 1, out, sizeof(out)), 1);
    CG_CHECK_EQ_STR(out, "a/b c");
    CG_CHECK_EQ_INT(cg_http_pct_decode("a%2fb+c", 7, 0, out, sizeof(out)), 1);
    CG_CHECK_EQ_STR(out, "a/b+c");
    CG_CHECK_EQ_INT(cg_http_pct_decode("", 0, 1, out, sizeof(out)), 1);
    CG_CHECK_EQ_STR(out, "");
    CG_CHECK_EQ_INT(cg_http_pct_decode("%4", 2, 1, out, sizeof(out)), 0);       /* short escape */
    CG_CHECK_EQ_INT(cg_http_pct_decode("%g1", 3, 1, out, sizeof(out)), 0);      /* not hex */
    CG_CHECK_EQ_INT(cg_http_pct_decode("a%00", 4, 1, out, sizeof(out)), 0);     /* NUL byte */
    CG_CHECK_EQ_INT(cg_http_pct_decode("12345678", 8, 1, out, sizeof(out)), 0); /* too long */
    CG_CHECK_EQ_INT(cg_http_pct_decode("1234567", 7, 1, out, sizeof(out)), 1);
    CG_CHECK_EQ_INT(cg_http_hex_digit('F'), 15);
    CG_CHECK_EQ_INT(cg_http_hex_digit('g'), -1);
}

int main(void)
{
    return CG_TEST_RUN(http_pct_decode, http_thread_start_stop, http_keepalive_two_requests,
                       http_pipelined_in_order, http_limits_and_errors, http_request_timeout,
                       http_chunked_request_and_stream, http_async_response,
                       http_client_disconnect_aborts, http_conns_max,
                       http_close_waits_for_owed_response, http_stream_backpressure,
                       http_stream_coalesced_chunk_sizes, http_expect_continue);
}
