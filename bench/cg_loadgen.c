/*
 * cg_loadgen.c — an open-loop, constant-rate HTTP/1.1 load generator (bench/, issue 4).
 *
 * SPEC §11 asks for "p99 added latency at half of the maximum load". wrk is closed-loop:
 * each connection sends its next request only when the previous answer is in, so a slow
 * answer delays (and hides) the requests that should have been sent meanwhile — the
 * "coordinated omission" of latency measurement. This generator is open-loop instead:
 *
 * - Request i (i = 0, 1, ...) is due at t0 + i / rate. Requests due in the first `warmup`
 *   seconds are sent but not measured; the next `duration` × rate are measured.
 * - A due request is written at once on an idle keep-alive connection (FIFO over the
 *   idle ones). If none is idle it waits in the queue; the queue is just the index range
 *   [next_send, next_due), because due times only grow.
 * - Latency = response complete (last body byte; a chunked SSE stream ends at its
 *   terminating chunk) − DUE time, so queueing inside the generator counts — that is the
 *   coordinated-omission correction. Also reported: service time (complete − written);
 *   `queued`, the measured requests that had to wait for a free connection (the target
 *   is slower than the schedule, or there are too few connections); and the generator's
 *   own lateness (written − due, over the requests that found a free connection: its
 *   wake-up delay, and a warning sign when it is large — the generator's core is busy).
 * - Percentiles are exact (nearest rank over every measured response, sorted at the end).
 *
 * Timing: a 1 ms uv_timer plus catch-up would add up to 1 ms (0.5 ms on average) of
 * scheduling delay to every latency, more than the 500 µs target it is meant to check, so the due times are driven by a timerfd (CLOCK_MONOTONIC, absolute,
 * nanosecond resolution) watched by a uv_poll_t and re-armed for the next due request;
 * every wake-up still releases every request already due, so rates far above the wake-up
 * rate work. --spin polls the loop instead of sleeping (lg_run_loop), which also removes the
 * wake-up delay from the answers' side. A 10 ms uv_timer sweeps for timeouts and the end of
 * the run.
 *
 * Bounds: every limit is an LG_* constant below. A connect failure, reset, early EOF,
 * parse error or per-request timeout (measured from the write) counts as an error for the
 * request it was serving, and the connection is reopened (after 0 ms, then a back-off
 * up to LG_RETRY_MAX_MS while connects keep failing). After the last due time the run
 * drains for at most --timeout; what is still queued then counts as `unsent`, what is
 * still in flight as a timeout.
 *
 * One thread, one libuv loop. Output: one `RESULT key=value ...` line on stdout (the
 * format of bench/chat.lua's line) and one human-readable line on stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <http_parser.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

/* Limits of this file, each with its reason. */
#define LG_CONNS_MAX 4096             /* two fds each stays under common ulimits */
#define LG_RATE_MAX 1000000.0         /* req/s; far above what one loop can serve */
#define LG_DURATION_MAX_S 3600.0      /* measured window */
#define LG_WARMUP_MAX_S 600.0         /* warm-up window */
#define LG_TIMEOUT_MAX_S 600.0        /* per-request timeout and drain bound */
#define LG_TIMEOUT_DEFAULT_S 10.0     /* like bench/run.sh's wrk --timeout 10s */
#define LG_REQUESTS_MAX 20000000ULL   /* scheduled requests; 24 bytes of samples each */
#define LG_HEADERS_MAX 32             /* --header options */
#define LG_HEADER_BYTES_MAX 8192      /* one --header */
#define LG_BODY_BYTES_MAX (16u << 20) /* --body-file */
#define LG_CONNECT_WAIT_MS 5000       /* before t0: wait this long for the connections */
#define LG_READ_BUF_BYTES 65536       /* one shared read buffer (one read at a time) */
#define LG_SWEEP_MS 10                /* timeout / end-of-run check period */
#define LG_RETRY_MAX_MS 100           /* reconnect back-off ceiling */
#define LG_NS_PER_S 1000000000.0

typedef enum lg_state {
    LG_CLOSED,     /* no socket; the retry timer may be armed */
    LG_CONNECTING, /* uv_tcp_connect in flight */
    LG_IDLE,       /* connected, on the idle list */
    LG_BUSY,       /* one request written (or being written), response not complete */
    LG_CLOSING,    /* uv_close called, close_cb pending */
} lg_state;

typedef enum lg_phase {
    LG_PHASE_CONNECT, /* opening connections before t0 */
    LG_PHASE_RUN,     /* releasing requests at their due times */
    LG_PHASE_DRAIN,   /* every request released; waiting for the last answers */
    LG_PHASE_DONE,    /* closing handles */
} lg_phase;

struct lg_run;

typedef struct lg_conn {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t write_req;
    uv_timer_t retry; /* reconnect delay */
    http_parser parser;
    struct lg_run *run;
    struct lg_conn *idle_prev, *idle_next; /* on run->idle_* while LG_IDLE */
    lg_state state;
    uint64_t req_i;     /* request being served while LG_BUSY */
    uint64_t sent_ns;   /* when it was written (CLOCK_MONOTONIC) */
    uint64_t opened_ns; /* when the connect started, for the connect timeout */
    uint32_t fails;     /* consecutive failed connects, for the back-off */
    int writing;        /* uv_write pending: write_req is in use */
    int complete;       /* the response is complete; the parser is paused */
    int keep_alive;     /* the complete response allows another request */
    int queued;         /* the request waited for a free connection */
} lg_conn;

typedef struct lg_opts {
    const char *url;
    double rate;        /* req/s, (0, LG_RATE_MAX] */
    double duration_s;  /* measured window, (0, LG_DURATION_MAX_S] */
    double warmup_s;    /* [0, LG_WARMUP_MAX_S] */
    double timeout_s;   /* per request, from the write; also the drain bound */
    uint32_t conns;     /* [1, LG_CONNS_MAX] */
    int spin;           /* busy-poll the loop instead of sleeping (see lg_run_loop) */
    const char *method; /* default POST */
    const char *body_file;
    const char *headers[LG_HEADERS_MAX];
    uint32_t header_n;
} lg_opts;

typedef struct lg_samples {
    uint64_t *lat_ns;  /* complete − due, per measured response */
    uint64_t *svc_ns;  /* complete − written */
    uint64_t *late_ns; /* written − due, of requests written at their release */
    uint64_t n;        /* entries in lat_ns and svc_ns */
    uint64_t late_n;   /* entries in late_ns */
} lg_samples;

typedef struct lg_run {
    uv_loop_t loop;
    lg_opts o;
    struct sockaddr_storage addr;
    char *request; /* the whole request, written as is for every request */
    size_t request_len;
    int is_head;
    lg_conn *conns;
    lg_conn *idle_head, *idle_tail;
    uint32_t connected_n; /* connections that ever connected (start condition) */
    lg_phase phase;
    uint64_t phase_ns; /* when the phase began */
    uint64_t t0_ns;
    uint64_t n_warm, n_total; /* requests [0, n_warm) are warm-up; [n_warm, n_total) measured */
    uint64_t next_due;        /* first request not yet due */
    uint64_t next_send;       /* first due request not yet written */
    uint64_t inflight;
    int timer_fd;
    uv_poll_t timer_poll;
    uv_timer_t sweep;
    lg_samples s;
    uint64_t non2xx, errors, timeouts, unsent, connect_errors, reconnects, queued;
    uint64_t last_done_ns;
    char last_error[128];
    char rbuf[LG_READ_BUF_BYTES];
} lg_run;

static uint64_t lg_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t lg_due_ns(const lg_run *run, uint64_t i)
{
    return run->t0_ns + (uint64_t)llround((double)i * LG_NS_PER_S / run->o.rate);
}

static void lg_note_error(lg_run *run, const char *what, int err)
{
    snprintf(run->last_error, sizeof run->last_error, "%s: %s", what, uv_strerror(err));
}

/* ---- idle list (FIFO, so every connection stays in use) ---- */

static void lg_idle_push(lg_conn *c)
{
    lg_run *run = c->run;
    c->idle_next = NULL;
    c->idle_prev = run->idle_tail;
    if (run->idle_tail) {
        run->idle_tail->idle_next = c;
    } else {
        run->idle_head = c;
    }
    run->idle_tail = c;
}

static void lg_idle_unlink(lg_conn *c)
{
    lg_run *run = c->run;
    if (c->idle_prev) {
        c->idle_prev->idle_next = c->idle_next;
    } else {
        run->idle_head = c->idle_next;
    }
    if (c->idle_next) {
        c->idle_next->idle_prev = c->idle_prev;
    } else {
        run->idle_tail = c->idle_prev;
    }
    c->idle_prev = c->idle_next = NULL;
}

/* ---- connections ---- */

static void lg_conn_open(lg_conn *c);
static void lg_dispatch(lg_run *run, uint64_t fresh_from);
static void lg_check_done(lg_run *run);

static void lg_retry_cb(uv_timer_t *t)
{
    lg_conn *c = t->data;
    if (c->run->phase != LG_PHASE_DONE) {
        lg_conn_open(c);
    }
}

static void lg_close_cb(uv_handle_t *h)
{
    lg_conn *c = h->data;
    c->state = LG_CLOSED;
    if (c->run->phase == LG_PHASE_DONE) {
        return;
    }
    uint64_t delay_ms = 0;
    if (c->fails > 0) {
        delay_ms = c->fails >= 7 ? LG_RETRY_MAX_MS : (1u << c->fails);
        if (delay_ms > LG_RETRY_MAX_MS) {
            delay_ms = LG_RETRY_MAX_MS;
        }
    }
    uv_timer_start(&c->retry, lg_retry_cb, delay_ms, 0);
}

/* Closes the connection (no-op if closed or closing); a reconnect follows in lg_close_cb. */
static void lg_conn_close(lg_conn *c)
{
    if (c->state == LG_CLOSED || c->state == LG_CLOSING) {
        return;
    }
    if (c->state == LG_IDLE) {
        lg_idle_unlink(c);
    }
    c->state = LG_CLOSING;
    c->complete = 0;
    uv_close((uv_handle_t *)&c->tcp, lg_close_cb);
}

/* The request on c (if any) failed: count it once, then close c. */
static void lg_conn_fail(lg_conn *c, int timed_out)
{
    lg_run *run = c->run;
    if (c->state == LG_BUSY) {
        run->inflight--;
        if (c->req_i >= run->n_warm) {
            run->errors++;
            run->timeouts += timed_out ? 1 : 0;
        }
        run->reconnects++;
    }
    lg_conn_close(c);
    lg_check_done(run);
}

static void lg_record(lg_run *run, lg_conn *c, uint64_t now)
{
    int status = c->parser.status_code;
    run->last_done_ns = now;
    if (c->req_i < run->n_warm) {
        return;
    }
    uint64_t due = lg_due_ns(run, c->req_i);
    uint64_t n = run->s.n++;
    run->s.lat_ns[n] = now - due;
    run->s.svc_ns[n] = now - c->sent_ns;
    if (c->queued) {
        run->queued++;
    } else {
        run->s.late_ns[run->s.late_n++] = c->sent_ns > due ? c->sent_ns - due : 0;
    }
    if (status < 200 || status > 299) {
        run->non2xx++;
    }
}

/* The response on c is complete: record it, then reuse or reopen the connection. */
static void lg_finish(lg_conn *c, int keep)
{
    lg_run *run = c->run;
    lg_record(run, c, lg_now_ns());
    run->inflight--;
    c->complete = 0;
    http_parser_pause(&c->parser, 0);
    if (keep && !c->writing) {
        c->state = LG_IDLE;
        lg_idle_push(c);
        lg_dispatch(run, UINT64_MAX);
    } else {
        /* A write still pending means the server answered before reading the whole
         * request; the connection is not in a state to reuse. */
        c->state = LG_CONNECTING; /* any state but IDLE/BUSY: closed without counting */
        run->reconnects++;
        lg_conn_close(c);
    }
    lg_check_done(run);
}

static int lg_on_headers_complete(http_parser *p)
{
    lg_conn *c = p->data;
    /* 1 tells http_parser that this response has no body (the answer to a HEAD). */
    return c->run->is_head ? 1 : 0;
}

static int lg_on_message_complete(http_parser *p)
{
    lg_conn *c = p->data;
    if (p->status_code >= 100 && p->status_code < 200) {
        return 0; /* an interim response; the real one follows */
    }
    c->complete = 1;
    c->keep_alive = http_should_keep_alive(p);
    /* Pausing makes http_parser_execute return right after this message. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings lg_parser_settings = {
    .on_headers_complete = lg_on_headers_complete,
    .on_message_complete = lg_on_message_complete,
};

static void lg_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    lg_conn *c = h->data;
    *buf = uv_buf_init(c->run->rbuf, sizeof c->run->rbuf);
}

static void lg_read_eof(lg_conn *c, ssize_t nread)
{
    if (c->state == LG_BUSY && nread == UV_EOF) {
        /* A body delimited by the end of the connection completes here. */
        http_parser_execute(&c->parser, &lg_parser_settings, NULL, 0);
        if (c->complete) {
            lg_finish(c, 0);
            return;
        }
    }
    if (c->state == LG_BUSY) {
        lg_note_error(c->run, "read", (int)nread);
        lg_conn_fail(c, 0);
    } else {
        c->run->reconnects++;
        lg_conn_close(c); /* an idle keep-alive connection closed by the server */
    }
}

static void lg_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    lg_conn *c = stream->data;
    if (nread == 0) {
        return;
    }
    if (nread < 0) {
        lg_read_eof(c, nread);
        return;
    }
    if (c->state != LG_BUSY) {
        c->run->reconnects++;
        lg_conn_close(c); /* bytes nobody asked for: do not guess, start over */
        return;
    }
    size_t n = http_parser_execute(&c->parser, &lg_parser_settings, buf->base, (size_t)nread);
    if (c->complete) {
        /* Anything after the response was not asked for: finish, then reconnect. */
        lg_finish(c, c->keep_alive && n == (size_t)nread);
    } else if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK) {
        snprintf(c->run->last_error, sizeof c->run->last_error, "bad response: %s",
                 http_errno_description(HTTP_PARSER_ERRNO(&c->parser)));
        lg_conn_fail(c, 0);
    }
}

static void lg_connect_cb(uv_connect_t *req, int status)
{
    lg_conn *c = req->data;
    lg_run *run = c->run;
    if (c->state != LG_CONNECTING) {
        return; /* closed meanwhile (end of run); status is UV_ECANCELED */
    }
    if (status < 0) {
        run->connect_errors++;
        c->fails++;
        lg_note_error(run, "connect", status);
        lg_conn_close(c);
        return;
    }
    int rc = uv_read_start((uv_stream_t *)&c->tcp, lg_alloc_cb, lg_read_cb);
    if (rc < 0) {
        run->connect_errors++;
        c->fails++;
        lg_note_error(run, "read start", rc);
        lg_conn_close(c);
        return;
    }
    c->fails = 0;
    run->connected_n += run->phase == LG_PHASE_CONNECT ? 1 : 0;
    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = c;
    c->state = LG_IDLE;
    lg_idle_push(c);
    lg_dispatch(run, UINT64_MAX);
}

static void lg_conn_open(lg_conn *c)
{
    lg_run *run = c->run;
    int rc = uv_tcp_init(&run->loop, &c->tcp);
    if (rc < 0) {
        /* No handle to close: stay closed and try again later. */
        run->connect_errors++;
        c->fails++;
        lg_note_error(run, "socket", rc);
        uv_timer_start(&c->retry, lg_retry_cb, LG_RETRY_MAX_MS, 0);
        return;
    }
    c->tcp.data = c;
    c->connect_req.data = c;
    c->state = LG_CONNECTING;
    c->opened_ns = lg_now_ns();
    uv_tcp_nodelay(&c->tcp, 1);
    rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&run->addr,
                        lg_connect_cb);
    if (rc < 0) {
        run->connect_errors++;
        c->fails++;
        lg_note_error(run, "connect", rc);
        lg_conn_close(c);
    }
}

/* ---- requests ---- */

static void lg_write_cb(uv_write_t *req, int status)
{
    lg_conn *c = req->data;
    c->writing = 0;
    if (status < 0 && c->state == LG_BUSY) {
        lg_note_error(c->run, "write", status);
        lg_conn_fail(c, 0);
    }
}

static void lg_send(lg_conn *c, uint64_t i, int queued)
{
    lg_run *run = c->run;
    uv_buf_t buf = uv_buf_init(run->request, (unsigned int)run->request_len);
    c->state = LG_BUSY;
    c->req_i = i;
    c->complete = 0;
    c->queued = queued;
    c->sent_ns = lg_now_ns();
    c->write_req.data = c;
    run->inflight++;
    int rc = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &buf, 1, lg_write_cb);
    if (rc < 0) {
        lg_note_error(run, "write", rc);
        lg_conn_fail(c, 0);
        return;
    }
    c->writing = 1;
}

/*
 * Writes due, unsent requests on idle connections, oldest first. Requests from fresh_from
 * on were released just now (lg_release) and are written without having waited; any
 * earlier one still unsent waited for a connection (a freed connection takes the oldest
 * waiting request at once, in lg_finish), so it counts as queued.
 */
static void lg_dispatch(lg_run *run, uint64_t fresh_from)
{
    while (run->next_send < run->next_due && run->idle_head) {
        lg_conn *c = run->idle_head;
        lg_idle_unlink(c);
        uint64_t i = run->next_send++;
        lg_send(c, i, i < fresh_from);
    }
}

static void lg_arm(lg_run *run, uint64_t at_ns)
{
    struct itimerspec its = {0};
    its.it_value.tv_sec = (time_t)(at_ns / 1000000000ULL);
    its.it_value.tv_nsec = (long)(at_ns % 1000000000ULL);
    if (timerfd_settime(run->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) != 0) {
        /* Cannot happen with a valid fd and time; fail loudly rather than stall. */
        perror("cg_loadgen: timerfd_settime");
        abort();
    }
}

/* Releases every request due by now, writes what it can, arms the timer for the next. */
static void lg_release(lg_run *run)
{
    uint64_t now = lg_now_ns();
    uint64_t first_new = run->next_due;
    while (run->next_due < run->n_total && lg_due_ns(run, run->next_due) <= now) {
        run->next_due++;
    }
    lg_dispatch(run, first_new);
    if (run->next_due < run->n_total) {
        lg_arm(run, lg_due_ns(run, run->next_due));
    } else if (run->phase == LG_PHASE_RUN) {
        run->phase = LG_PHASE_DRAIN;
        run->phase_ns = now;
        lg_check_done(run);
    }
}

static void lg_timer_cb(uv_poll_t *h, int status, int events)
{
    (void)events;
    lg_run *run = h->data;
    uint64_t expirations;
    if (status < 0) {
        fprintf(stderr, "cg_loadgen: timer poll: %s\n", uv_strerror(status));
        abort();
    }
    /* Clears the readiness; EAGAIN (a spurious wake-up) is harmless. */
    if (read(run->timer_fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN) {
        perror("cg_loadgen: read timerfd");
        abort();
    }
    if (run->phase == LG_PHASE_RUN) {
        lg_release(run);
    }
}

/* ---- phases ---- */

static void lg_stop(lg_run *run)
{
    if (run->phase == LG_PHASE_DONE) {
        return;
    }
    run->phase = LG_PHASE_DONE;
    for (uint32_t k = 0; k < run->o.conns; k++) {
        lg_conn *c = &run->conns[k];
        if (c->state != LG_CLOSED && c->state != LG_CLOSING) {
            c->state = LG_CLOSING;
            uv_close((uv_handle_t *)&c->tcp, lg_close_cb);
        }
        uv_timer_stop(&c->retry);
        uv_close((uv_handle_t *)&c->retry, NULL);
    }
    uv_poll_stop(&run->timer_poll);
    uv_close((uv_handle_t *)&run->timer_poll, NULL);
    uv_timer_stop(&run->sweep);
    uv_close((uv_handle_t *)&run->sweep, NULL);
}

/* In the drain phase: stop once every request is answered or failed. */
static void lg_check_done(lg_run *run)
{
    if (run->phase == LG_PHASE_DRAIN && run->next_send == run->n_total && run->inflight == 0) {
        lg_stop(run);
    }
}

static void lg_start(lg_run *run)
{
    run->phase = LG_PHASE_RUN;
    run->t0_ns = lg_now_ns();
    run->phase_ns = run->t0_ns;
    lg_release(run);
}

/* Drain bound reached: queued measured requests are unsent, in-flight ones timed out. */
static void lg_drain_expire(lg_run *run)
{
    uint64_t first = run->next_send > run->n_warm ? run->next_send : run->n_warm;
    run->unsent = run->n_total - first;
    run->errors += run->unsent;
    run->next_send = run->n_total;
    for (uint32_t k = 0; k < run->o.conns; k++) {
        lg_conn *c = &run->conns[k];
        if (c->state == LG_BUSY) {
            lg_conn_fail(c, 1);
        }
    }
    lg_stop(run);
}

static void lg_sweep_cb(uv_timer_t *t)
{
    lg_run *run = t->data;
    uint64_t now = lg_now_ns();
    uint64_t timeout_ns = (uint64_t)(run->o.timeout_s * LG_NS_PER_S);
    if (run->phase == LG_PHASE_CONNECT) {
        if (run->connected_n == run->o.conns) {
            lg_start(run);
        } else if (now - run->phase_ns >= LG_CONNECT_WAIT_MS * 1000000ULL) {
            if (run->connected_n == 0) {
                fprintf(stderr, "cg_loadgen: cannot connect to %s (%s)\n", run->o.url,
                        run->last_error[0] ? run->last_error : "timeout");
                lg_stop(run);
                return;
            }
            lg_start(run); /* with what is up; the rest keep retrying */
        }
        return;
    }
    if (run->phase == LG_PHASE_DRAIN && now - run->phase_ns >= timeout_ns) {
        lg_drain_expire(run);
        return;
    }
    for (uint32_t k = 0; k < run->o.conns && run->phase != LG_PHASE_DONE; k++) {
        lg_conn *c = &run->conns[k];
        if (c->state == LG_BUSY && now - c->sent_ns >= timeout_ns) {
            snprintf(run->last_error, sizeof run->last_error, "timeout");
            lg_conn_fail(c, 1);
        } else if (c->state == LG_CONNECTING && now - c->opened_ns >= timeout_ns) {
            run->connect_errors++;
            c->fails++;
            snprintf(run->last_error, sizeof run->last_error, "connect: timeout");
            lg_conn_close(c);
        }
    }
}

/* ---- report ---- */

static int lg_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array, in µs; 0 when empty. */
static double lg_pct_us(const uint64_t *v, uint64_t n, double p)
{
    if (n == 0) {
        return 0.0;
    }
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)n);
    if (rank < 1) {
        rank = 1;
    }
    return (double)v[(rank > n ? n : rank) - 1] / 1000.0;
}

static void lg_report(lg_run *run)
{
    lg_samples *s = &run->s;
    qsort(s->lat_ns, s->n, sizeof *s->lat_ns, lg_cmp_u64);
    qsort(s->svc_ns, s->n, sizeof *s->svc_ns, lg_cmp_u64);
    qsort(s->late_ns, s->late_n, sizeof *s->late_ns, lg_cmp_u64);
    double sum = 0;
    for (uint64_t k = 0; k < s->n; k++) {
        sum += (double)s->lat_ns[k];
    }
    /* Achieved rate: measured answers over the measured window, or until the last answer
     * if that came later (an overloaded target answers slower than the schedule). */
    uint64_t win_start = lg_due_ns(run, run->n_warm);
    double span_s = run->o.duration_s;
    if (run->last_done_ns > win_start &&
        (double)(run->last_done_ns - win_start) / LG_NS_PER_S > span_s) {
        span_s = (double)(run->last_done_ns - win_start) / LG_NS_PER_S;
    }
    uint64_t measured = run->n_total - run->n_warm;
    double achieved = (double)s->n / span_s;
    double p50 = lg_pct_us(s->lat_ns, s->n, 50), p99 = lg_pct_us(s->lat_ns, s->n, 99);
    printf("RESULT requests=%" PRIu64 " completed=%" PRIu64 " rate_target=%.1f rate_achieved=%.1f"
           " p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f mean_us=%.1f"
           " non2xx=%" PRIu64 " errors=%" PRIu64 " timeouts=%" PRIu64 " unsent=%" PRIu64
           " connect_errors=%" PRIu64 " reconnects=%" PRIu64
           " svc_p50_us=%.1f svc_p99_us=%.1f queued=%" PRIu64 " gen_late_p50_us=%.1f"
           " gen_late_p99_us=%.1f"
           " connections=%" PRIu32 " duration_s=%.3f warmup_s=%.3f\n",
           measured, s->n, run->o.rate, achieved, p50, lg_pct_us(s->lat_ns, s->n, 90), p99,
           lg_pct_us(s->lat_ns, s->n, 99.9), lg_pct_us(s->lat_ns, s->n, 100),
           s->n ? sum / (double)s->n / 1000.0 : 0.0, run->non2xx, run->errors, run->timeouts,
           run->unsent, run->connect_errors, run->reconnects, lg_pct_us(s->svc_ns, s->n, 50),
           lg_pct_us(s->svc_ns, s->n, 99), run->queued, lg_pct_us(s->late_ns, s->late_n, 50),
           lg_pct_us(s->late_ns, s->late_n, 99), run->o.conns, run->o.duration_s, run->o.warmup_s);
    fflush(stdout);
    fprintf(stderr,
            "cg_loadgen: %s: %" PRIu64 " requests at %.1f/s (achieved %.1f/s) over %.3g s after"
            " %.3g s warm-up, %" PRIu32 " connections: latency from due time p50 %.1f µs, p99"
            " %.1f µs, max %.1f µs; %" PRIu64 " non-2xx, %" PRIu64 " errors%s%s\n",
            run->o.url, measured, run->o.rate, achieved, run->o.duration_s, run->o.warmup_s,
            run->o.conns, p50, p99, lg_pct_us(s->lat_ns, s->n, 100), run->non2xx, run->errors,
            run->last_error[0] ? "; last error: " : "", run->last_error);
}

/* ---- options and set-up ---- */

static void lg_usage(FILE *f)
{
    fprintf(f,
            "usage: cg_loadgen --url http://HOST:PORT/PATH --rate R [options]\n"
            "  --rate R            requests per second, scheduled open-loop (0 < R <= %.0f)\n"
            "  --duration S        measured seconds (default 10)\n"
            "  --warmup S          seconds sent before measuring (default 2)\n"
            "  --connections C     keep-alive connections (default 16, max %d)\n"
            "  --timeout S         per-request timeout and drain bound (default %.0f)\n"
            "  --method M          default POST\n"
            "  --body-file FILE    request body (max %u bytes)\n"
            "  --header 'N: v'     extra request header, repeatable (max %d)\n"
            "  --spin              busy-poll: precise send times, one core at 100%%\n"
            "Prints one line: RESULT requests=... p50_us=... p99_us=... errors=...\n",
            LG_RATE_MAX, LG_CONNS_MAX, LG_TIMEOUT_DEFAULT_S, LG_BODY_BYTES_MAX, LG_HEADERS_MAX);
}

/* Parses a number of seconds or req/s ("10", "2.5", "10s") within [lo, hi]. */
static int lg_parse_num(const char *name, const char *s, double lo, double hi, int lo_open,
                        double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end && *end == 's' && end[1] == '\0') {
        end++;
    }
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < lo || v > hi ||
        (lo_open && v == lo)) {
        fprintf(stderr, "cg_loadgen: %s: expected a number in %c%g, %g], got '%s'\n", name,
                lo_open ? '(' : '[', lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int lg_parse_header(lg_opts *o, const char *h)
{
    const char *colon = strchr(h, ':');
    size_t len = strlen(h);
    if (!colon || colon == h || len > LG_HEADER_BYTES_MAX || strpbrk(h, "\r\n") ||
        strcspn(h, " \t") < (size_t)(colon - h)) {
        fprintf(stderr,
                "cg_loadgen: --header: expected 'Name: value' (one line, at most %d"
                " bytes), got '%s'\n",
                LG_HEADER_BYTES_MAX, h);
        return -1;
    }
    if (o->header_n == LG_HEADERS_MAX) {
        fprintf(stderr, "cg_loadgen: --header: at most %d headers\n", LG_HEADERS_MAX);
        return -1;
    }
    o->headers[o->header_n++] = h;
    return 0;
}

static int lg_parse_opt(lg_opts *o, int opt, const char *arg)
{
    double v = 0;
    switch (opt) {
    case 'u':
        o->url = arg;
        return 0;
    case 'r':
        return lg_parse_num("--rate", arg, 0, LG_RATE_MAX, 1, &o->rate);
    case 'd':
        return lg_parse_num("--duration", arg, 0, LG_DURATION_MAX_S, 1, &o->duration_s);
    case 'w':
        return lg_parse_num("--warmup", arg, 0, LG_WARMUP_MAX_S, 0, &o->warmup_s);
    case 't':
        return lg_parse_num("--timeout", arg, 0, LG_TIMEOUT_MAX_S, 1, &o->timeout_s);
    case 'c':
        if (lg_parse_num("--connections", arg, 1, LG_CONNS_MAX, 0, &v) != 0) {
            return -1;
        }
        if (v != floor(v)) {
            fprintf(stderr, "cg_loadgen: --connections: expected a whole number, got '%s'\n", arg);
            return -1;
        }
        o->conns = (uint32_t)v;
        return 0;
    case 'm':
        if (arg[0] == '\0' || strspn(arg, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(arg)) {
            fprintf(stderr, "cg_loadgen: --method: expected an upper-case token, got '%s'\n", arg);
            return -1;
        }
        o->method = arg;
        return 0;
    case 'b':
        o->body_file = arg;
        return 0;
    case 'H':
        return lg_parse_header(o, arg);
    case 's':
        o->spin = 1;
        return 0;
    default:
        lg_usage(stderr);
        return -1;
    }
}

static int lg_parse_args(lg_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},      {"rate", required_argument, NULL, 'r'},
        {"duration", required_argument, NULL, 'd'}, {"warmup", required_argument, NULL, 'w'},
        {"timeout", required_argument, NULL, 't'},  {"connections", required_argument, NULL, 'c'},
        {"method", required_argument, NULL, 'm'},   {"body-file", required_argument, NULL, 'b'},
        {"header", required_argument, NULL, 'H'},   {"spin", no_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    *o = (lg_opts){.duration_s = 10,
                   .warmup_s = 2,
                   .timeout_s = LG_TIMEOUT_DEFAULT_S,
                   .conns = 16,
                   .method = "POST"};
    int opt;
    while ((opt = getopt_long(argc, argv, "u:r:d:w:t:c:m:b:H:sh", longopts, NULL)) != -1) {
        if (opt == 'h') {
            lg_usage(stdout);
            exit(0);
        }
        if (lg_parse_opt(o, opt, optarg) != 0) {
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "cg_loadgen: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!o->url || o->rate <= 0) {
        fprintf(stderr, "cg_loadgen: --url and --rate are required\n");
        lg_usage(stderr);
        return -1;
    }
    double total = (o->warmup_s + o->duration_s) * o->rate;
    if (total > (double)LG_REQUESTS_MAX) {
        fprintf(stderr, "cg_loadgen: (warmup + duration) × rate = %.0f requests, more than %llu\n",
                total, LG_REQUESTS_MAX);
        return -1;
    }
    return 0;
}

static int lg_read_body(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cg_loadgen: --body-file %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *buf = malloc(LG_BODY_BYTES_MAX + 1);
    size_t n = buf ? fread(buf, 1, LG_BODY_BYTES_MAX + 1, f) : 0;
    int bad = !buf || ferror(f) || n > LG_BODY_BYTES_MAX;
    fclose(f);
    if (bad) {
        fprintf(stderr, "cg_loadgen: --body-file %s: unreadable or over %u bytes\n", path,
                LG_BODY_BYTES_MAX);
        free(buf);
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* Appends to a growing buffer; returns -1 on out-of-memory. */
static int lg_append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = (*cap ? *cap : 1024);
        while (c < *len + n + 1) {
            c *= 2;
        }
        char *nb = realloc(*buf, c);
        if (!nb) {
            return -1;
        }
        *buf = nb;
        *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

static int lg_has_header(const lg_opts *o, const char *name)
{
    size_t n = strlen(name);
    for (uint32_t k = 0; k < o->header_n; k++) {
        if (strncasecmp(o->headers[k], name, n) == 0 && o->headers[k][n] == ':') {
            return 1;
        }
    }
    return 0;
}

/* Builds the request bytes: request line, Host, the --header lines, Content-Length. */
static int lg_build_request(lg_run *run, const char *hostport, const char *path)
{
    const lg_opts *o = &run->o;
    char *body = NULL, line[LG_HEADER_BYTES_MAX + 64];
    size_t body_len = 0, len = 0, cap = 0;
    int rc = 0;
    if (o->body_file && lg_read_body(o->body_file, &body, &body_len) != 0) {
        return -1;
    }
    snprintf(line, sizeof line, "%s %s HTTP/1.1\r\n", o->method, path);
    rc |= lg_append(&run->request, &len, &cap, line, strlen(line));
    if (!lg_has_header(o, "Host")) {
        snprintf(line, sizeof line, "Host: %s\r\n", hostport);
        rc |= lg_append(&run->request, &len, &cap, line, strlen(line));
    }
    if (body && !lg_has_header(o, "Content-Type")) {
        const char *ct = "Content-Type: application/json\r\n";
        rc |= lg_append(&run->request, &len, &cap, ct, strlen(ct));
    }
    for (uint32_t k = 0; k < o->header_n; k++) {
        snprintf(line, sizeof line, "%s\r\n", o->headers[k]);
        rc |= lg_append(&run->request, &len, &cap, line, strlen(line));
    }
    if (body || strcmp(o->method, "POST") == 0 || strcmp(o->method, "PUT") == 0) {
        snprintf(line, sizeof line, "Content-Length: %zu\r\n", body_len);
        rc |= lg_append(&run->request, &len, &cap, line, strlen(line));
    }
    rc |= lg_append(&run->request, &len, &cap, "\r\n", 2);
    if (body_len > 0) {
        rc |= lg_append(&run->request, &len, &cap, body, body_len);
    }
    free(body);
    if (rc != 0) {
        fprintf(stderr, "cg_loadgen: out of memory\n");
        return -1;
    }
    run->request_len = len;
    run->is_head = strcmp(o->method, "HEAD") == 0;
    return 0;
}

/* Parses --url (http only), resolves the host once, builds the request. */
static int lg_setup_target(lg_run *run)
{
    const char *url = run->o.url;
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(url, strlen(url), 0, &u) != 0 || !(u.field_set & (1 << UF_HOST)) ||
        !(u.field_set & (1 << UF_SCHEMA)) || u.field_data[UF_SCHEMA].len != 4 ||
        strncasecmp(url + u.field_data[UF_SCHEMA].off, "http", 4) != 0) {
        fprintf(stderr, "cg_loadgen: --url: expected http://HOST[:PORT]/PATH, got '%s'\n", url);
        return -1;
    }
    char host[256], port[8], hostport[300], path[4096];
    uint16_t hl = u.field_data[UF_HOST].len;
    size_t pl = (u.field_set & (1 << UF_PATH)) ? u.field_data[UF_PATH].len : 0;
    size_t ql = (u.field_set & (1 << UF_QUERY)) ? u.field_data[UF_QUERY].len : 0;
    if (hl >= sizeof host || pl + ql + 3 > sizeof path) {
        fprintf(stderr, "cg_loadgen: --url: host or path too long\n");
        return -1;
    }
    memcpy(host, url + u.field_data[UF_HOST].off, hl);
    host[hl] = '\0';
    snprintf(port, sizeof port, "%u", (u.field_set & (1 << UF_PORT)) ? u.port : 80u);
    snprintf(hostport, sizeof hostport, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
    /* No path in the URL means "/". */
    snprintf(path, sizeof path, "%.*s%s%.*s", pl ? (int)pl : 1,
             pl ? url + u.field_data[UF_PATH].off : "/", ql ? "?" : "", (int)ql,
             ql ? url + u.field_data[UF_QUERY].off : "");
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        fprintf(stderr, "cg_loadgen: --url: cannot resolve %s: %s\n", host, gai_strerror(gai));
        return -1;
    }
    memcpy(&run->addr, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return lg_build_request(run, hostport, path);
}

static int lg_alloc_run(lg_run *run)
{
    run->n_warm = (uint64_t)llround(run->o.warmup_s * run->o.rate);
    uint64_t measured = (uint64_t)llround(run->o.duration_s * run->o.rate);
    if (measured == 0) {
        fprintf(stderr, "cg_loadgen: duration × rate is below one request\n");
        return -1;
    }
    run->n_total = run->n_warm + measured;
    run->s.lat_ns = malloc(measured * sizeof(uint64_t));
    run->s.svc_ns = malloc(measured * sizeof(uint64_t));
    run->s.late_ns = malloc(measured * sizeof(uint64_t));
    run->conns = calloc(run->o.conns, sizeof *run->conns);
    if (!run->s.lat_ns || !run->s.svc_ns || !run->s.late_ns || !run->conns) {
        fprintf(stderr, "cg_loadgen: out of memory for %" PRIu64 " samples\n", measured);
        return -1;
    }
    return 0;
}

/* Loop, timer and connections; the run starts once they are connected (lg_sweep_cb). */
static int lg_start_loop(lg_run *run)
{
    int rc = uv_loop_init(&run->loop);
    if (rc < 0) {
        fprintf(stderr, "cg_loadgen: uv_loop_init: %s\n", uv_strerror(rc));
        return -1;
    }
    /* Wake-ups as close to the due time as the kernel allows (default slack is 50 µs). */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    run->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (run->timer_fd < 0) {
        perror("cg_loadgen: timerfd_create");
        return -1;
    }
    uv_poll_init(&run->loop, &run->timer_poll, run->timer_fd);
    run->timer_poll.data = run;
    uv_poll_start(&run->timer_poll, UV_READABLE, lg_timer_cb);
    uv_timer_init(&run->loop, &run->sweep);
    run->sweep.data = run;
    uv_timer_start(&run->sweep, lg_sweep_cb, LG_SWEEP_MS, LG_SWEEP_MS);
    run->phase = LG_PHASE_CONNECT;
    run->phase_ns = lg_now_ns();
    for (uint32_t k = 0; k < run->o.conns; k++) {
        lg_conn *c = &run->conns[k];
        c->run = run;
        c->state = LG_CLOSED;
        uv_timer_init(&run->loop, &c->retry);
        c->retry.data = c;
        lg_conn_open(c);
    }
    return 0;
}

/*
 * Runs the loop until every handle is closed. Sleeping in epoll costs a wake-up per due
 * time and per answer (tens of µs on a VM, more on a busy core), which lands in the
 * measured latency. --spin polls instead, releasing due requests between polls: send
 * times within a few µs of the schedule, at the price of one core kept busy.
 */
static void lg_run_loop(lg_run *run)
{
    if (!run->o.spin) {
        uv_run(&run->loop, UV_RUN_DEFAULT);
        return;
    }
    while (uv_run(&run->loop, UV_RUN_NOWAIT) != 0) {
        if (run->phase == LG_PHASE_RUN && run->next_due < run->n_total &&
            lg_due_ns(run, run->next_due) <= lg_now_ns()) {
            lg_release(run);
        }
    }
}

static void lg_free(lg_run *run)
{
    free(run->s.lat_ns);
    free(run->s.svc_ns);
    free(run->s.late_ns);
    free(run->conns);
    free(run->request);
    free(run);
}

int main(int argc, char **argv)
{
    lg_run *run = calloc(1, sizeof *run);
    if (!run) {
        fprintf(stderr, "cg_loadgen: out of memory\n");
        return 1;
    }
    run->timer_fd = -1;
    if (lg_parse_args(&run->o, argc, argv) != 0) {
        lg_free(run);
        return 2;
    }
    if (lg_setup_target(run) != 0 || lg_alloc_run(run) != 0) {
        lg_free(run);
        return 2;
    }
    if (lg_start_loop(run) != 0) {
        lg_free(run);
        return 1;
    }
    lg_run_loop(run);
    int connected = run->connected_n > 0;
    if (connected) {
        lg_report(run);
    }
    if (uv_loop_close(&run->loop) != 0) {
        fprintf(stderr, "cg_loadgen: handles left open at exit\n");
    }
    close(run->timer_fd);
    lg_free(run);
    return connected ? 0 : 1;
}
