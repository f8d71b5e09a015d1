/*
 * it_upstream_wire.c — the gateway's upstream HTTP/1.1 wire behaviour, as a client sees it.
 *
 * The upstream here is not the demo: it is a scripted raw HTTP/1.1 server in this
 * process (an acceptor thread on 127.0.0.1 plus one thread per connection). Each
 * connection gets an id in accept order; every request read from it (request line,
 * headers, Content-Length body) is recorded with that id, and answered with the
 * current scenario's plan: raw bytes written in given pieces with optional pauses,
 * then keep the connection, close it, close it a little later without a word, or
 * never answer. Provider `wire` points at it (also as `wirehost`, by the name
 * localhost), provider `refused` at a port nobody listens on.
 *
 * Through the gateway, as a real client (fx_post, and a raw slow-reading socket):
 *  1. what arrives upstream: POST /v1/chat/completions, Host, Content-Type,
 *     Authorization with the provider's key, Content-Length = body, the JSON body;
 *  2.-5. Content-Length, chunked (headers byte by byte, chunks splitting the JSON),
 *     close-delimited and streamed (SSE split across chunks) answers: 200, the bytes
 *     passed through exactly, the usage the upstream reported charged;
 *  6.-7. keep-alive: 20 requests over one connection (one worker); a pooled
 *     connection the upstream closed silently is not used: the next request arrives
 *     once, on a new connection;
 *  8. an interim 100 Continue before the final answer;
 *  9.-12. garbage, a truncated body, no answer, a refused port: 502 / 504 with the
 *     SPEC's error codes, never a 200 with a short body, records at zero cost (the
 *     truncated body: the worst case, estimated — the upstream produced an answer it
 *     will bill, gw_proxy_up.c);
 *  13. a provider named by host name;
 *  14. ~4 MB streamed fast to a client reading slowly: every byte and [DONE]
 *     arrive, and the gateway's RSS grows by less than the response (under ASan
 *     1 MB and no RSS bound: its quarantine keeps freed buffers resident).
 * Every request's usage record (cost, tokens, status, estimated) and the key's cost
 * counter are checked at the end. Every wait is bounded; the threads are joined.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fixture.h"

#define TIMEOUT_MS 5000  /* upstream_timeout_ms (also bounds a whole stream) */
#define MAX_TOKENS 50    /* every request's max_tokens (the worst-case completion) */
#define PROMPT_NUSD 1000 /* prompt=1 USD per 1M tokens */
#define COMPL_NUSD 2000  /* completion=2 USD per 1M tokens */
#define PROVIDER_KEY "sk-wire-0123456789abcdef"
#define UP_CONNS_MAX 128  /* connections the scripted upstream accepts in all */
#define UP_HEAD_MAX 65536 /* request head bound */
#define UP_BODY_MAX (16 << 20)
#define BIG_REQ_BYTES (4u << 20) /* scenario 15: more than loopback buffers take at once */
#define UP_WRITE_MS 20000        /* longest a plan's writes may block */
#define UP_HDRS_MAX 32
#define EXPECTS_MAX 64
#define RECORDS_MS 10000
#if defined(__SANITIZE_ADDRESS__)
#define BIG_BYTES (1u << 20) /* scenario 14 under ASan: smaller, no RSS bound */
#else
#define BIG_BYTES (4u << 20)
#endif

/* ---- the scripted upstream ---- */

typedef enum up_end { UP_KEEP, UP_CLOSE, UP_CLOSE_LATER, UP_HANG } up_end;

typedef struct up_piece {
    char *data; /* owned */
    size_t len;
    int pause_ms; /* after writing it */
} up_piece;

/* What to answer to one request. Plans live until the end of the test. */
typedef struct up_plan {
    up_piece *p;
    size_t n, cap;
    up_end end;
    int later_ms; /* UP_CLOSE_LATER: silent close this long after the answer */
} up_plan;

typedef struct up_req {
    int conn; /* connection id, 1.. in accept order */
    char method[16];
    char path[256];
    char *names[UP_HDRS_MAX]; /* lower-cased */
    char *values[UP_HDRS_MAX];
    int hdr_n;
    char *body;
    size_t body_len;
} up_req;

static struct {
    int fd, port;
    pthread_t acceptor;
    atomic_int stop;
    _Atomic int64_t answered_ms; /* when the last plan's writes ended */
    atomic_int read_delay_ms;    /* wait this long before reading each request */
    pthread_mutex_t mu;
    pthread_t threads[UP_CONNS_MAX];
    int conn_n;                       /* accepted so far */
    uint8_t closed[UP_CONNS_MAX + 1]; /* by id: this side closed it */
    up_req **reqs;
    size_t req_n, req_cap;
    const up_plan *plans[8]; /* the current scenario's: request i gets plans[min(i, n-1)] */
    size_t plan_n, served;
} up = {.mu = PTHREAD_MUTEX_INITIALIZER};

static up_plan *all_plans[64];
static size_t all_plan_n;

static up_plan *plan_new(up_end end)
{
    FX_CHECK(all_plan_n < sizeof(all_plans) / sizeof(all_plans[0]), "too many plans");
    up_plan *pl = calloc(1, sizeof(*pl));
    FX_CHECK(pl != NULL, "out of memory");
    pl->end = end;
    all_plans[all_plan_n++] = pl;
    return pl;
}

static void plan_add(up_plan *pl, const char *d, size_t n, int pause_ms)
{
    if (pl->n == pl->cap) {
        pl->cap = pl->cap ? pl->cap * 2 : 16;
        pl->p = realloc(pl->p, pl->cap * sizeof(*pl->p));
        FX_CHECK(pl->p != NULL, "out of memory");
    }
    up_piece *pc = &pl->p[pl->n++];
    pc->data = malloc(n ? n : 1);
    FX_CHECK(pc->data != NULL, "out of memory");
    memcpy(pc->data, d, n);
    pc->len = n;
    pc->pause_ms = pause_ms;
}

static void plan_adds(up_plan *pl, const char *s, int pause_ms)
{
    plan_add(pl, s, strlen(s), pause_ms);
}

static void plans_free(void)
{
    for (size_t i = 0; i < all_plan_n; i++) {
        for (size_t j = 0; j < all_plans[i]->n; j++) {
            free(all_plans[i]->p[j].data);
        }
        free(all_plans[i]->p);
        free(all_plans[i]);
    }
    all_plan_n = 0;
}

/* Set the plans of the next requests (the last one repeats). */
static void up_script(up_plan *const *plans, size_t n)
{
    FX_CHECK(n >= 1 && n <= sizeof(up.plans) / sizeof(up.plans[0]), "plans: %zu", n);
    pthread_mutex_lock(&up.mu);
    for (size_t i = 0; i < n; i++) {
        up.plans[i] = plans[i];
    }
    up.plan_n = n;
    up.served = 0;
    pthread_mutex_unlock(&up.mu);
}

static void up_req_free(up_req *r)
{
    for (int i = 0; i < r->hdr_n; i++) {
        free(r->names[i]);
        free(r->values[i]);
    }
    free(r->body);
    free(r);
}

static const char *up_hdr(const up_req *r, const char *name)
{
    for (int i = 0; i < r->hdr_n; i++) {
        if (strcasecmp(r->names[i], name) == 0) {
            return r->values[i];
        }
    }
    return NULL;
}

static size_t up_count(void)
{
    pthread_mutex_lock(&up.mu);
    size_t n = up.req_n;
    pthread_mutex_unlock(&up.mu);
    return n;
}

/* Request i (< up_count()); records are immutable once stored. */
static const up_req *up_get(size_t i)
{
    pthread_mutex_lock(&up.mu);
    const up_req *r = i < up.req_n ? up.reqs[i] : NULL;
    pthread_mutex_unlock(&up.mu);
    FX_CHECK(r != NULL, "no upstream request %zu", i);
    return r;
}

static int up_is_closed(int conn)
{
    pthread_mutex_lock(&up.mu);
    int v = conn >= 1 && conn <= UP_CONNS_MAX ? up.closed[conn] : 0;
    pthread_mutex_unlock(&up.mu);
    return v;
}

/* Wait for fd to be ready for events; 1 ready, 0 stop asked or deadline, -1 error. */
static int up_wait(int fd, short events, int64_t deadline_ms)
{
    for (;;) {
        if (atomic_load(&up.stop) || (deadline_ms > 0 && fx_now_ms() > deadline_ms)) {
            return 0;
        }
        struct pollfd pf = {.fd = fd, .events = events};
        int n = poll(&pf, 1, 50);
        if (n > 0) {
            return 1;
        }
        if (n < 0 && errno != EINTR) {
            return -1;
        }
    }
}

static int up_write_all(int fd, const char *d, size_t n)
{
    int64_t deadline = fx_now_ms() + UP_WRITE_MS;
    while (n > 0) {
        if (up_wait(fd, POLLOUT, deadline) != 1) {
            return -1;
        }
        ssize_t w = send(fd, d, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        d += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Parse the head in b[0..head_len) into r; 0 or -1. */
static int up_parse_head(char *b, size_t head_len, up_req *r, long *clen)
{
    b[head_len] = '\0';
    char *save = NULL;
    char *line = strtok_r(b, "\r\n", &save);
    if (line == NULL || sscanf(line, "%15s %255s", r->method, r->path) != 2) {
        return -1;
    }
    *clen = 0;
    while ((line = strtok_r(NULL, "\r\n", &save)) != NULL && r->hdr_n < UP_HDRS_MAX) {
        char *colon = strchr(line, ':');
        if (colon == NULL) {
            return -1;
        }
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t') {
            v++;
        }
        for (char *q = line; *q; q++) {
            *q = (char)(*q >= 'A' && *q <= 'Z' ? *q + 32 : *q);
        }
        r->names[r->hdr_n] = strdup(line);
        r->values[r->hdr_n] = strdup(v);
        r->hdr_n++;
        if (strcmp(line, "content-length") == 0) {
            *clen = strtol(v, NULL, 10);
        }
    }
    return *clen >= 0 && *clen <= UP_BODY_MAX ? 0 : -1;
}

typedef struct up_conn {
    int fd, id;
    char *buf; /* bytes read and not consumed yet */
    size_t len;
} up_conn;

static void up_sleep(int ms)
{
    int64_t until = fx_now_ms() + ms;
    while (!atomic_load(&up.stop) && fx_now_ms() < until) {
        fx_sleep_ms(ms < 20 ? ms : 20);
    }
}

/* Read more bytes into k->buf; 1 read, 0 EOF/stop/error. */
static int up_fill(up_conn *k)
{
    if (up_wait(k->fd, POLLIN, 0) != 1) {
        return 0;
    }
    char tmp[16384];
    ssize_t n = recv(k->fd, tmp, sizeof(tmp), 0);
    if (n <= 0 || k->len + (size_t)n > UP_HEAD_MAX + UP_BODY_MAX) {
        return 0;
    }
    memcpy(k->buf + k->len, tmp, (size_t)n);
    k->len += (size_t)n;
    return 1;
}

/* The next request of connection k, or NULL (EOF, stop, malformed). */
static up_req *up_read_request(up_conn *k)
{
    char *end;
    int delay = atomic_load(&up.read_delay_ms);
    if (delay > 0) {
        up_sleep(delay);
    }
    while ((k->buf[k->len] = '\0', end = strstr(k->buf, "\r\n\r\n")) == NULL) {
        if (k->len >= UP_HEAD_MAX || !up_fill(k)) {
            return NULL;
        }
    }
    size_t head_len = (size_t)(end - k->buf) + 4;
    up_req *r = calloc(1, sizeof(*r));
    char *head = malloc(head_len + 1);
    long clen = 0;
    if (r == NULL || head == NULL) {
        free(r);
        free(head);
        return NULL;
    }
    memcpy(head, k->buf, head_len);
    r->conn = k->id;
    int bad = up_parse_head(head, head_len, r, &clen);
    free(head);
    while (!bad && k->len < head_len + (size_t)clen) {
        if (!up_fill(k)) {
            bad = 1;
        }
    }
    r->body = bad ? NULL : malloc((size_t)clen + 1);
    if (r->body == NULL) {
        up_req_free(r);
        return NULL;
    }
    memcpy(r->body, k->buf + head_len, (size_t)clen);
    r->body[clen] = '\0';
    r->body_len = (size_t)clen;
    size_t used = head_len + (size_t)clen;
    memmove(k->buf, k->buf + used, k->len - used);
    k->len -= used;
    return r;
}

static void up_record(up_req *r)
{
    pthread_mutex_lock(&up.mu);
    if (up.req_n == up.req_cap) {
        size_t cap = up.req_cap ? up.req_cap * 2 : 64;
        up_req **n = realloc(up.reqs, cap * sizeof(*n));
        if (n == NULL) {
            pthread_mutex_unlock(&up.mu);
            up_req_free(r);
            return;
        }
        up.reqs = n;
        up.req_cap = cap;
    }
    up.reqs[up.req_n++] = r;
    pthread_mutex_unlock(&up.mu);
}

static const up_plan *up_next_plan(void)
{
    pthread_mutex_lock(&up.mu);
    const up_plan *pl = NULL;
    if (up.plan_n > 0) {
        size_t i = up.served < up.plan_n ? up.served : up.plan_n - 1;
        pl = up.plans[i];
        up.served++;
    }
    pthread_mutex_unlock(&up.mu);
    return pl;
}

/* One connection: request, plan, request, ... until the plan or the peer ends it. */
static void *up_conn_main(void *arg)
{
    up_conn k = *(up_conn *)arg;
    free(arg);
    k.buf = malloc(UP_HEAD_MAX + UP_BODY_MAX + 1);
    up_req *r;
    while (k.buf != NULL && (r = up_read_request(&k)) != NULL) {
        up_record(r);
        const up_plan *pl = up_next_plan();
        int ok = pl != NULL;
        for (size_t i = 0; ok && i < pl->n; i++) {
            ok = up_write_all(k.fd, pl->p[i].data, pl->p[i].len) == 0;
            if (ok && pl->p[i].pause_ms > 0) {
                up_sleep(pl->p[i].pause_ms);
            }
        }
        atomic_store(&up.answered_ms, fx_now_ms());
        if (!ok || pl->end == UP_CLOSE) {
            break;
        }
        if (pl->end == UP_CLOSE_LATER) {
            up_sleep(pl->later_ms);
            break;
        }
        if (pl->end == UP_HANG) {
            while (up_fill(&k)) { /* until the gateway gives up and closes */
                k.len = 0;
            }
            break;
        }
    }
    close(k.fd);
    pthread_mutex_lock(&up.mu);
    up.closed[k.id] = 1;
    pthread_mutex_unlock(&up.mu);
    free(k.buf);
    return NULL;
}

static void *up_accept_main(void *arg)
{
    (void)arg;
    while (up_wait(up.fd, POLLIN, 0) == 1) {
        int fd = accept(up.fd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        pthread_mutex_lock(&up.mu);
        up_conn *k = up.conn_n < UP_CONNS_MAX ? calloc(1, sizeof(*k)) : NULL;
        if (k != NULL) {
            k->fd = fd;
            k->id = up.conn_n + 1;
            if (pthread_create(&up.threads[up.conn_n], NULL, up_conn_main, k) == 0) {
                up.conn_n++;
                k = NULL;
                fd = -1;
            }
        }
        pthread_mutex_unlock(&up.mu);
        free(k);
        if (fd >= 0) {
            close(fd);
        }
    }
    return NULL;
}

static void up_start(int port)
{
    up.port = port;
    up.fd = socket(AF_INET, SOCK_STREAM, 0);
    FX_CHECK(up.fd >= 0, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(up.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    FX_CHECK(bind(up.fd, (struct sockaddr *)&a, sizeof(a)) == 0, "bind %d: %s", port,
             strerror(errno));
    FX_CHECK(listen(up.fd, 64) == 0, "listen: %s", strerror(errno));
    FX_CHECK(pthread_create(&up.acceptor, NULL, up_accept_main, NULL) == 0, "thread");
}

static void up_stop(void)
{
    atomic_store(&up.stop, 1);
    pthread_join(up.acceptor, NULL);
    close(up.fd);
    pthread_mutex_lock(&up.mu);
    int n = up.conn_n;
    pthread_mutex_unlock(&up.mu);
    for (int i = 0; i < n; i++) {
        pthread_join(up.threads[i], NULL); /* each polls the stop flag every 50 ms */
    }
    for (size_t i = 0; i < up.req_n; i++) {
        up_req_free(up.reqs[i]);
    }
    free(up.reqs);
    plans_free();
}

/* ---- answers ---- */

/* A chat completion reporting usage pt/ct. Caller frees. */
static char *completion_json(const char *tag, int64_t pt, int64_t ct)
{
    char *s = malloc(512);
    FX_CHECK(s != NULL, "out of memory");
    snprintf(s, 512,
             "{\"id\":\"chatcmpl-%s\",\"object\":\"chat.completion\",\"created\":1700000000,"
             "\"model\":\"m-wire\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
             "\"content\":\"wire says %s \\u00e9\"},\"finish_reason\":\"stop\"}],"
             "\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,\"total_tokens\":%lld}}",
             tag, tag, (long long)pt, (long long)ct, (long long)(pt + ct));
    return s;
}

/* HTTP/1.1 200 with Content-Length, connection kept. */
static up_plan *plan_cl(const char *json, up_end end)
{
    up_plan *pl = plan_new(end);
    char head[256];
    snprintf(head, sizeof(head),
             "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
             strlen(json));
    plan_adds(pl, head, 0);
    plan_adds(pl, json, 0);
    return pl;
}

/* Append `n` bytes of d as one HTTP chunk (size line, data, CRLF) in one piece. */
static void plan_chunk(up_plan *pl, const char *d, size_t n, int pause_ms)
{
    char *b = malloc(n + 32);
    FX_CHECK(b != NULL, "out of memory");
    int h = snprintf(b, 32, "%zx\r\n", n);
    memcpy(b + h, d, n);
    memcpy(b + h + n, "\r\n", 2);
    plan_add(pl, b, (size_t)h + n + 2, pause_ms);
    free(b);
}

/* An SSE stream of `events` content events (each `text_len` bytes of text) ending with a
 * usage event and [DONE], like a provider asked for include_usage. Caller frees. */
static char *sse_text(const char *tag, int events, size_t text_len, int64_t pt, int64_t ct,
                      size_t *len)
{
    size_t cap = (size_t)events * (text_len + 256) + 1024, n = 0;
    char *s = malloc(cap);
    char *text = malloc(text_len + 1);
    FX_CHECK(s != NULL && text != NULL, "out of memory");
    const char *pre = "data: {\"id\":\"chatcmpl-";
    n += (size_t)snprintf(s + n, cap - n,
                          "%s%s\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
                          "\"model\":\"m-wire\",\"choices\":[{\"index\":0,\"delta\":{\"role\":"
                          "\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
                          pre, tag);
    for (int i = 0; i < events; i++) {
        for (size_t j = 0; j < text_len; j++) {
            text[j] = (char)('a' + (i + (int)j) % 26);
        }
        text[text_len] = '\0';
        n += (size_t)snprintf(s + n, cap - n,
                              "%s%s\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
                              "\"model\":\"m-wire\",\"choices\":[{\"index\":0,\"delta\":{"
                              "\"content\":\"%d:%s \"},\"finish_reason\":null}]}\n\n",
                              pre, tag, i, text);
    }
    n += (size_t)snprintf(s + n, cap - n,
                          "%s%s\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
                          "\"model\":\"m-wire\",\"choices\":[{\"index\":0,\"delta\":{},"
                          "\"finish_reason\":\"stop\"}]}\n\n"
                          "%s%s\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
                          "\"model\":\"m-wire\",\"choices\":[],\"usage\":{\"prompt_tokens\":%lld,"
                          "\"completion_tokens\":%lld,\"total_tokens\":%lld}}\n\n"
                          "data: [DONE]\n\n",
                          pre, tag, pre, tag, (long long)pt, (long long)ct, (long long)(pt + ct));
    FX_CHECK(n < cap, "sse text overflow");
    free(text);
    *len = n;
    return s;
}

/* ---- client side and what must be charged ---- */

typedef struct expect {
    char what[48];
    char rid[64];
    int status;
    int64_t pt, ct; /* the upstream's usage; pt -1: the worst case (estimated) */
} expect;

static fx_cluster c;
static char key_id[64], key_sec[128];
static expect exps[EXPECTS_MAX];
static size_t exp_n;

static int64_t cost_of(int64_t pt, int64_t ct)
{
    return pt * PROMPT_NUSD + ct * COMPL_NUSD;
}

static void chat_body(char *out, size_t cap, const char *model, int stream, const char *text)
{
    snprintf(out, cap,
             "{\"model\":\"%s\",\"max_tokens\":%d,%s\"messages\":[{\"role\":\"user\","
             "\"content\":\"%s\"}]}",
             model, MAX_TOKENS,
             stream ? "\"stream\":true,\"stream_options\":{\"include_usage\":true}," : "", text);
}

static long chat(fx_resp *r, const char *model, int stream, const char *text)
{
    char body[512];
    chat_body(body, sizeof(body), model, stream, text);
    return fx_post(&c, 0, r, key_sec, "/v1/chat/completions", NULL, body);
}

/* Remember what request r must have left in the usage records. */
static void expect_rid(const char *what, const char *rid, int status, int64_t pt, int64_t ct)
{
    FX_CHECK(exp_n < EXPECTS_MAX, "too many expectations");
    FX_CHECK(rid != NULL && rid[0] != '\0', "%s: no x-capgate-request-id", what);
    expect *e = &exps[exp_n++];
    snprintf(e->what, sizeof(e->what), "%s", what);
    snprintf(e->rid, sizeof(e->rid), "%s", rid);
    e->status = status;
    e->pt = pt;
    e->ct = ct;
}

/* A 200 whose body must be exactly `want` and whose cost header matches pt/ct. */
static void check_ok(const char *what, fx_resp *r, long st, const char *want, size_t want_len,
                     int64_t pt, int64_t ct, int streamed)
{
    FX_CHECK(st == 200, "%s: %ld %s %s", what, st, r->err, r->body);
    FX_CHECK(r->body_len == want_len && memcmp(r->body, want, want_len) == 0,
             "%s: body differs (%zu bytes, want %zu): %.300s", what, r->body_len, want_len,
             r->body);
    if (!streamed) {
        const char *cost = fx_resp_header(r, "x-capgate-cost-usd");
        FX_CHECK(cost != NULL, "%s: no x-capgate-cost-usd", what);
        FX_CHECK_EQ_INT(fx_usd(cost), cost_of(pt, ct));
    }
    expect_rid(what, fx_resp_header(r, "x-capgate-request-id"), 200, pt, ct);
    fx_log("%s: 200, %zu bytes, charged %lld+%lld tokens", what, r->body_len, (long long)pt,
           (long long)ct);
}

static void run_plan(up_plan *pl);

/* Script pl, send one chat request with text, expect a 200 relaying json byte-exact and
 * charged pt/ct; frees json. */
static void expect_relayed(up_plan *pl, const char *what, const char *text, char *json, int64_t pt,
                           int64_t ct)
{
    run_plan(pl);
    fx_resp r;
    long st = chat(&r, "m-wire", 0, text);
    check_ok(what, &r, st, json, strlen(json), pt, ct, 0);
    fx_resp_free(&r);
    free(json);
}

/* An error answer: status, code, and none of the upstream's bytes. */
static void check_err(const char *what, fx_resp *r, long st, long want, const char *code)
{
    FX_CHECK(st == want, "%s: %ld (want %ld) %s %s", what, st, want, r->err, r->body);
    FX_CHECK_EQ_STR(fx_resp_error_code(r), code);
    fx_log("%s: %ld %s in %lld ms", what, st, code, (long long)r->elapsed_ms);
}

static int64_t num(const cJSON *o, const char *f)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, f);
    if (cJSON_IsString(v)) {
        return fx_usd(v->valuestring);
    }
    FX_CHECK(cJSON_IsNumber(v), "record field %s missing", f);
    return (int64_t)v->valuedouble;
}

/* Every expected usage record, exactly; returns the sum of their costs. */
static int64_t check_records(void)
{
    int64_t deadline = fx_now_ms() + RECORDS_MS;
    cJSON *j;
    int got;
    for (;;) {
        j = fx_admin_expect(&c, 200, "GET", "/admin/v1/usage/records?org=wire&limit=1000", NULL);
        got = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "data"));
        if ((size_t)got >= exp_n || fx_now_ms() > deadline) {
            break;
        }
        cJSON_Delete(j);
        fx_sleep_ms(50);
    }
    FX_CHECK((size_t)got == exp_n, "usage records: %d, want %zu", got, exp_n);
    int64_t sum = 0;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
    for (size_t i = 0; i < exp_n; i++) {
        const expect *e = &exps[i];
        const cJSON *rec = NULL, *it;
        cJSON_ArrayForEach(it, data)
        {
            const cJSON *rid = cJSON_GetObjectItemCaseSensitive(it, "request_id");
            if (cJSON_IsString(rid) && strcmp(rid->valuestring, e->rid) == 0) {
                rec = it;
            }
        }
        FX_CHECK(rec != NULL, "%s: no usage record for %s", e->what, e->rid);
        FX_CHECK(num(rec, "status") == e->status, "%s: record status %lld", e->what,
                 (long long)num(rec, "status"));
        const cJSON *est = cJSON_GetObjectItemCaseSensitive(rec, "estimated");
        int64_t pt = num(rec, "prompt_tokens"), ct = num(rec, "completion_tokens");
        int64_t cost = num(rec, "cost");
        if (e->pt < 0) { /* the worst case: the prompt bound and max_tokens */
            FX_CHECK(cJSON_IsTrue(est), "%s: not estimated", e->what);
            FX_CHECK(pt > 0 && ct == e->ct, "%s: worst case %lld+%lld", e->what, (long long)pt,
                     (long long)ct);
        } else {
            FX_CHECK(cJSON_IsFalse(est), "%s: estimated", e->what);
            FX_CHECK(pt == e->pt && ct == e->ct, "%s: tokens %lld+%lld, want %lld+%lld", e->what,
                     (long long)pt, (long long)ct, (long long)e->pt, (long long)e->ct);
        }
        FX_CHECK(cost == cost_of(pt, ct), "%s: cost %lld for %lld+%lld", e->what, (long long)cost,
                 (long long)pt, (long long)ct);
        sum += cost;
    }
    cJSON_Delete(j);
    return sum;
}

/* ---- scenarios ---- */

static void run_plan(up_plan *pl)
{
    up_script(&pl, 1);
}

/* 1 and 2: what the upstream receives; a Content-Length answer passed through. */
static void scenario_request_and_cl(void)
{
    char *json = completion_json("cl", 11, 7);
    run_plan(plan_cl(json, UP_KEEP));
    size_t base = up_count();
    fx_resp r;
    long st = chat(&r, "m-wire", 0, "hello wire");
    check_ok("2 content-length", &r, st, json, strlen(json), 11, 7, 0);
    fx_resp_free(&r);
    free(json);

    FX_CHECK_EQ_INT(up_count() - base, 1);
    const up_req *q = up_get(base);
    FX_CHECK_EQ_STR(q->method, "POST");
    FX_CHECK_EQ_STR(q->path, "/v1/chat/completions");
    char want[128];
    snprintf(want, sizeof(want), "127.0.0.1:%d", up.port);
    FX_CHECK_EQ_STR(up_hdr(q, "host"), want);
    const char *ctype = up_hdr(q, "content-type");
    FX_CHECK(ctype != NULL && strncasecmp(ctype, "application/json", 16) == 0,
             "upstream content-type %s", ctype ? ctype : "(none)");
    FX_CHECK_EQ_STR(up_hdr(q, "authorization"), "Bearer " PROVIDER_KEY);
    const char *clen = up_hdr(q, "content-length");
    FX_CHECK(clen != NULL, "no Content-Length upstream");
    FX_CHECK_EQ_INT(strtoll(clen, NULL, 10), (long long)q->body_len);
    FX_CHECK(up_hdr(q, "transfer-encoding") == NULL, "request body sent chunked");
    cJSON *j = cJSON_Parse(q->body);
    FX_CHECK(j != NULL, "upstream body is not JSON: %s", q->body);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    FX_CHECK(cJSON_IsString(model) && strcmp(model->valuestring, "m-wire") == 0, "model: %s",
             q->body);
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "max_tokens");
    FX_CHECK(cJSON_IsNumber(mt) && mt->valuedouble == MAX_TOKENS, "max_tokens: %s", q->body);
    const cJSON *msg = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "messages"), 0);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
    FX_CHECK(cJSON_IsString(content) && strcmp(content->valuestring, "hello wire") == 0,
             "messages: %s", q->body);
    cJSON_Delete(j);
    char names[512] = "";
    for (int i = 0; i < q->hdr_n; i++) {
        size_t nl = strlen(names);
        snprintf(names + nl, sizeof(names) - nl, "%s%s", i ? ", " : "", q->names[i]);
    }
    fx_log("1 upstream request: POST %s, Host %s, %zu-byte JSON body; headers: %s", q->path, want,
           q->body_len, names);
}

/* 3: chunked, the head byte by byte, chunk boundaries inside the JSON. */
static void scenario_chunked(void)
{
    char *json = completion_json("chunked", 13, 9);
    up_plan *pl = plan_new(UP_KEEP);
    const char *head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n";
    for (size_t i = 0; head[i] != '\0'; i++) {
        plan_add(pl, head + i, 1, 1);
    }
    size_t len = strlen(json);
    const size_t cuts[] = {0, 1, 9, len / 3, len / 2 + 3, len - 2, len};
    for (size_t k = 0; k + 1 < sizeof(cuts) / sizeof(cuts[0]); k++) {
        char size_line[32];
        snprintf(size_line, sizeof(size_line), "%zX\r\n", cuts[k + 1] - cuts[k]);
        plan_adds(pl, size_line, 2);
        plan_add(pl, json + cuts[k], cuts[k + 1] - cuts[k], 2);
        plan_adds(pl, "\r\n", 2);
    }
    plan_adds(pl, "0\r\n", 2);
    plan_adds(pl, "\r\n", 0);
    expect_relayed(pl, "3 chunked", "chunks please", json, 13, 9);
}

/* 4: no Content-Length, the end of the body is the close. */
static void scenario_close_delimited(void)
{
    char *json = completion_json("close", 17, 5);
    up_plan *pl = plan_new(UP_CLOSE);
    plan_adds(pl, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
              5);
    size_t len = strlen(json);
    plan_add(pl, json, len / 3, 5);
    plan_add(pl, json + len / 3, len / 3, 5);
    plan_add(pl, json + 2 * (len / 3), len - 2 * (len / 3), 0);
    expect_relayed(pl, "4 close-delimited", "until close", json, 17, 5);
}

/* 5: SSE in chunks that split events; the usage event charges. */
static void scenario_stream(void)
{
    size_t sl;
    char *sse = sse_text("s5", 6, 12, 19, 23, &sl);
    up_plan *pl = plan_new(UP_KEEP);
    plan_adds(pl,
              "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
              "Transfer-Encoding: chunked\r\n\r\n",
              2);
    for (size_t off = 0; off < sl; off += 29) {
        plan_chunk(pl, sse + off, sl - off < 29 ? sl - off : 29, 2);
    }
    plan_adds(pl, "0\r\n\r\n", 0);
    run_plan(pl);
    fx_resp r;
    long st = chat(&r, "m-wire", 1, "stream please");
    check_ok("5 streamed", &r, st, sse, sl, 19, 23, 1);
    const char *ctype = fx_resp_header(&r, "content-type");
    FX_CHECK(ctype != NULL && strncmp(ctype, "text/event-stream", 17) == 0, "stream type %s",
             ctype ? ctype : "(none)");
    int done = 0;
    cJSON *ev = fx_sse_parse(r.body, &done);
    FX_CHECK(done, "no [DONE]");
    FX_CHECK_EQ_INT(cJSON_GetArraySize(ev), 6 + 3);
    for (int i = 0; i < 6; i++) {
        const cJSON *ch = cJSON_GetArrayItem(
            cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ev, 1 + i), "choices"), 0);
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(ch, "delta"), "content");
        char pre[16];
        snprintf(pre, sizeof(pre), "%d:", i);
        FX_CHECK(cJSON_IsString(ct) && strncmp(ct->valuestring, pre, strlen(pre)) == 0,
                 "event %d out of order", i + 1);
    }
    FX_CHECK(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ev, 8), "usage") != NULL,
             "the usage event is not last");
    cJSON_Delete(ev);
    fx_resp_free(&r);
    free(sse);
}

/* 6: 20 sequential requests ride one kept-alive connection per worker. */
static void scenario_keepalive(void)
{
    char *json = completion_json("ka", 3, 4);
    run_plan(plan_cl(json, UP_KEEP));
    size_t base = up_count();
    for (int i = 0; i < 20; i++) {
        fx_resp r;
        long st = chat(&r, "m-wire", 0, "again");
        check_ok("6 keep-alive", &r, st, json, strlen(json), 3, 4, 0);
        fx_resp_free(&r);
    }
    free(json);
    FX_CHECK_EQ_INT(up_count() - base, 20);
    int conns[20], distinct = 0;
    for (size_t i = 0; i < 20; i++) {
        int id = up_get(base + i)->conn, seen = 0;
        for (int k = 0; k < distinct; k++) {
            seen |= conns[k] == id;
        }
        if (!seen) {
            conns[distinct++] = id;
        }
    }
    fx_log("6 keep-alive: 20 requests over %d upstream connection(s)", distinct);
    FX_CHECK(distinct <= (int)c.opts.workers, "20 requests used %d connections (workers %u)",
             distinct, c.opts.workers);
}

/* 7: a pooled connection the upstream closed silently is not used again. */
static void scenario_stale(void)
{
    char *ja = completion_json("stale-a", 5, 6), *jb = completion_json("stale-b", 7, 8);
    up_plan *pa = plan_cl(ja, UP_CLOSE_LATER);
    pa->later_ms = 100;
    up_plan *plans[2] = {pa, plan_cl(jb, UP_KEEP)};
    up_script(plans, 2);
    size_t base = up_count();
    fx_resp r;
    long st = chat(&r, "m-wire", 0, "first");
    int64_t answered = fx_now_ms();
    check_ok("7 before the silent close", &r, st, ja, strlen(ja), 5, 6, 0);
    fx_resp_free(&r);
    int conn_a = up_get(base)->conn;
    int64_t deadline = answered + 5000;
    while (!up_is_closed(conn_a) && fx_now_ms() < deadline) {
        fx_sleep_ms(10);
    }
    FX_CHECK(up_is_closed(conn_a), "upstream did not close connection %d", conn_a);
    if (fx_now_ms() < answered + 300) {
        fx_sleep_ms(answered + 300 - fx_now_ms()); /* the scenario: the next one 300 ms later */
    }
    st = chat(&r, "m-wire", 0, "second");
    check_ok("7 after the silent close", &r, st, jb, strlen(jb), 7, 8, 0);
    fx_resp_free(&r);
    FX_CHECK_EQ_INT(up_count() - base, 2);
    FX_CHECK(up_get(base + 1)->conn != conn_a, "sent on the closed connection %d", conn_a);
    free(ja);
    free(jb);
}

/* 8: an interim 100 Continue, then the answer. */
static void scenario_continue(void)
{
    char *json = completion_json("100", 21, 2);
    up_plan *pl = plan_new(UP_KEEP);
    plan_adds(pl, "HTTP/1.1 100 Continue\r\n\r\n", 20);
    char head[256];
    snprintf(head, sizeof(head),
             "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
             strlen(json));
    plan_adds(pl, head, 0);
    plan_adds(pl, json, 0);
    expect_relayed(pl, "8 100 Continue", "continue", json, 21, 2);
}

/* 9, 10: garbage; a body shorter than its Content-Length. */
static void scenario_broken(void)
{
    up_plan *pl = plan_new(UP_CLOSE);
    plan_adds(pl, "HELLO WORLD\r\n\r\n", 0);
    run_plan(pl);
    fx_resp r;
    long st = chat(&r, "m-wire", 0, "garbage");
    check_err("9 garbage", &r, st, 502, "upstream_error");
    FX_CHECK(strstr(r.body, "HELLO") == NULL, "garbage relayed: %s", r.body);
    expect_rid("9 garbage", fx_resp_header(&r, "x-capgate-request-id"), 502, 0, 0);
    fx_resp_free(&r);

    char *json = completion_json("truncated", 1, 1);
    pl = plan_new(UP_CLOSE);
    plan_adds(
        pl, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n", 0);
    plan_add(pl, json, 100, 0);
    run_plan(pl);
    st = chat(&r, "m-wire", 0, "truncated");
    check_err("10 truncated", &r, st, 502, "upstream_error");
    FX_CHECK(strstr(r.body, "chatcmpl-truncated") == NULL, "partial body relayed: %s", r.body);
    /* The upstream produced an answer it will bill: the worst case, estimated. */
    expect_rid("10 truncated", fx_resp_header(&r, "x-capgate-request-id"), 502, -1, MAX_TOKENS);
    fx_resp_free(&r);
    free(json);
}

/* 11: no answer → 504 after upstream_timeout_ms; the next request on a fresh connection. */
static void scenario_hang(void)
{
    char *json = completion_json("after-hang", 9, 10);
    up_plan *plans[2] = {plan_new(UP_HANG), plan_cl(json, UP_KEEP)};
    up_script(plans, 2);
    size_t base = up_count();
    fx_resp r;
    long st = chat(&r, "m-wire", 0, "are you there");
    check_err("11 no answer", &r, st, 504, "upstream_timeout");
    FX_CHECK(r.elapsed_ms >= TIMEOUT_MS - 50 && r.elapsed_ms < 3 * TIMEOUT_MS,
             "504 after %lld ms (upstream_timeout_ms %d)", (long long)r.elapsed_ms, TIMEOUT_MS);
    expect_rid("11 no answer", fx_resp_header(&r, "x-capgate-request-id"), 504, 0, 0);
    fx_resp_free(&r);
    int hung = up_get(base)->conn;
    st = chat(&r, "m-wire", 0, "and now");
    check_ok("11 after the timeout", &r, st, json, strlen(json), 9, 10, 0);
    fx_resp_free(&r);
    free(json);
    FX_CHECK_EQ_INT(up_count() - base, 2);
    FX_CHECK(up_get(base + 1)->conn != hung, "request sent on the timed-out connection");
}

/* 12, 13: a port nobody listens on; a provider named by host name. */
static void scenario_addresses(void)
{
    size_t base = up_count();
    fx_resp r;
    long st = chat(&r, "m-refused", 0, "anyone");
    check_err("12 refused", &r, st, 502, "upstream_error");
    FX_CHECK(r.elapsed_ms < TIMEOUT_MS / 2, "refused port answered after %lld ms",
             (long long)r.elapsed_ms);
    expect_rid("12 refused", fx_resp_header(&r, "x-capgate-request-id"), 502, 0, 0);
    fx_resp_free(&r);
    FX_CHECK_EQ_INT(up_count() - base, 0);

    char *json = completion_json("localhost", 29, 31);
    run_plan(plan_cl(json, UP_KEEP));
    st = chat(&r, "m-host", 0, "by name");
    check_ok("13 localhost", &r, st, json, strlen(json), 29, 31, 0);
    fx_resp_free(&r);
    free(json);
    FX_CHECK_EQ_INT(up_count() - base, 1);
    char want[64];
    snprintf(want, sizeof(want), "localhost:%d", up.port);
    FX_CHECK_EQ_STR(up_hdr(up_get(base), "host"), want);

    /* A name that does not resolve (RFC 6761 .invalid): 502 upstream_error at zero cost. A
     * resolver too slow to say so within upstream_timeout_ms gives the 504 of scenario 11
     * instead; both are a clear failure, never a hang past the timeout. */
    st = chat(&r, "m-nohost", 0, "nobody");
    int slow = st == 504 && r.elapsed_ms >= TIMEOUT_MS - 50;
    check_err("12b unresolvable host", &r, st, slow ? 504 : 502,
              slow ? "upstream_timeout" : "upstream_error");
    FX_CHECK(r.elapsed_ms < 3 * TIMEOUT_MS, "unresolvable host answered after %lld ms",
             (long long)r.elapsed_ms);
    expect_rid("12b unresolvable host", fx_resp_header(&r, "x-capgate-request-id"),
               slow ? 504 : 502, 0, 0);
    fx_log("12b unresolvable host: %ld after %lld ms", st, (long long)r.elapsed_ms);
    fx_resp_free(&r);
    FX_CHECK_EQ_INT(up_count() - base, 1);
}

/* ---- 14: a big stream to a slow reader ---- */

/* Decode a chunked body: 1 complete (*out malloc'd), 0 incomplete, -1 malformed. */
static int dechunk(const char *b, size_t n, char **out, size_t *out_len)
{
    char *d = malloc(n + 1);
    size_t i = 0, o = 0;
    FX_CHECK(d != NULL, "out of memory");
    for (;;) {
        const char *lf = memmem(b + i, n - i, "\r\n", 2);
        if (lf == NULL) {
            break;
        }
        char *endp;
        unsigned long sz = strtoul(b + i, &endp, 16);
        if (endp == b + i) {
            free(d);
            return -1;
        }
        i = (size_t)(lf - b) + 2;
        if (n - i < sz + 2) {
            break;
        }
        if (memcmp(b + i + sz, "\r\n", 2) != 0) {
            free(d);
            return -1;
        }
        memcpy(d + o, b + i, sz);
        o += sz;
        i += sz + 2;
        if (sz == 0) {
            *out = d;
            *out_len = o;
            return 1;
        }
    }
    free(d);
    return 0;
}

/* Read the gateway's answer 64 KiB every 10 ms; *peak_kb = the gateway's largest RSS seen. */
static size_t slow_read(int fd, char **buf, size_t cap, long *peak_kb)
{
    size_t len = 0;
    int64_t deadline = fx_now_ms() + 60000;
    while (fx_now_ms() < deadline) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 100) > 0) {
            if (cap - len < 65536) {
                cap *= 2;
                *buf = realloc(*buf, cap);
                FX_CHECK(*buf != NULL, "out of memory");
            }
            ssize_t n = recv(fd, *buf + len, 65536, 0);
            if (n <= 0) {
                break; /* the gateway closed (Connection: close) */
            }
            len += (size_t)n;
        }
        long kb = fx_proc_rss_kb(c.gateways[0].pid);
        *peak_kb = kb > *peak_kb ? kb : *peak_kb;
        if (len >= 5 && memcmp(*buf + len - 5, "0\r\n\r\n", 5) == 0) {
            break; /* maybe the last chunk; checked by the caller */
        }
        fx_sleep_ms(10);
    }
    return len;
}

static void scenario_big_stream(void)
{
    size_t sl;
    char *sse = sse_text("big", (int)(BIG_BYTES / 1150), 1000, 41, 43, &sl);
    up_plan *pl = plan_new(UP_KEEP);
    plan_adds(pl,
              "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
              "Transfer-Encoding: chunked\r\n\r\n",
              0);
    for (size_t off = 0; off < sl; off += 16384) {
        plan_chunk(pl, sse + off, sl - off < 16384 ? sl - off : 16384, 0);
    }
    plan_adds(pl, "0\r\n\r\n", 0);
    run_plan(pl);

    char body[512], req[1024];
    chat_body(body, sizeof(body), "m-wire", 1, "a long one");
    int n = snprintf(req, sizeof(req),
                     "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                     "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     c.gw_port[0], key_sec, strlen(body), body);
    long rss0 = fx_proc_rss_kb(c.gateways[0].pid), peak = rss0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int rcv = 65536; /* a small window, so the gateway cannot push it all at once */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c.gw_port[0])};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    FX_CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "connect: %s", strerror(errno));
    FX_CHECK(send(fd, req, (size_t)n, MSG_NOSIGNAL) == n, "send: %s", strerror(errno));
    int64_t t0 = fx_now_ms();
    char *buf = malloc(sl + 65536);
    FX_CHECK(buf != NULL, "out of memory");
    size_t len = slow_read(fd, &buf, sl + 65536, &peak);
    int64_t took = fx_now_ms() - t0, upstream_done = atomic_load(&up.answered_ms) - t0;
    close(fd);

    char *head_end = memmem(buf, len, "\r\n\r\n", 4);
    FX_CHECK(head_end != NULL && len > 12 && memcmp(buf, "HTTP/1.1 200", 12) == 0,
             "big stream: %.200s", len ? buf : "(nothing)");
    size_t head_len = (size_t)(head_end - buf) + 4;
    char head[4096];
    snprintf(head, sizeof(head), "%.*s", (int)(head_len < sizeof(head) ? head_len : 4095), buf);
    char *rid = strcasestr(head, "\r\nx-capgate-request-id:");
    char rid_v[64] = "";
    if (rid != NULL) {
        sscanf(rid + 23, " %63[^\r\n]", rid_v);
    }
    char *got = NULL;
    size_t got_len = 0;
    if (strcasestr(head, "\r\ntransfer-encoding: chunked") != NULL) {
        FX_CHECK(dechunk(buf + head_len, len - head_len, &got, &got_len) == 1,
                 "big stream: chunked body incomplete or malformed (%zu bytes)", len);
    } else {
        got = malloc(len - head_len + 1);
        FX_CHECK(got != NULL, "out of memory");
        memcpy(got, buf + head_len, len - head_len);
        got_len = len - head_len;
    }
    FX_CHECK(got_len == sl && memcmp(got, sse, sl) == 0, "big stream: %zu bytes of %zu, differ",
             got_len, sl);
    FX_CHECK(sl > 14 && memcmp(got + sl - 14, "data: [DONE]\n\n", 14) == 0, "no [DONE]");
    fx_log("14 big stream: %zu bytes in %lld ms to a slow reader (the upstream's writes ended "
           "at %lld ms); gateway RSS %ld -> peak %ld kB (+%ld kB)",
           sl, (long long)took, (long long)upstream_done, rss0, peak, peak - rss0);
#if defined(__SANITIZE_ADDRESS__)
    /* ASan's quarantine (256 MB by default) keeps every freed buffer resident, so RSS grows
     * with the bytes relayed, not the bytes held: the bound is checked in the plain build. */
    fx_log("14 big stream: SKIP the RSS bound under ASan (quarantine holds freed buffers)");
#else
    FX_CHECK((size_t)(peak - rss0) * 1024 < sl, "gateway RSS grew %ld kB for a %zu-byte stream",
             peak - rss0, sl);
#endif
    expect_rid("14 big stream", rid_v, 200, 41, 43);
    free(got);
    free(buf);
    free(sse);
}

/* 15: a request body larger than the loopback buffers take at once, to an upstream that
 * starts reading 300 ms late: the gateway's write goes out in parts (uv_try_write, then a
 * write request for the rest) and the upstream gets every byte. */
static void scenario_big_request(void)
{
    size_t n = BIG_REQ_BYTES;
    char *text = malloc(n + 1);
    char *body = malloc(n + 512);
    FX_CHECK(text != NULL && body != NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        text[i] = (char)('a' + (i * 7 + i / 977) % 26);
    }
    text[n] = '\0';
    int bl = snprintf(body, n + 512,
                      "{\"model\":\"m-wire\",\"max_tokens\":%d,\"messages\":[{\"role\":\"user\","
                      "\"content\":\"%s\"}]}",
                      MAX_TOKENS, text);
    FX_CHECK(bl > 0 && (size_t)bl < n + 512, "body");
    char *json = completion_json("big", 17, 3);
    run_plan(plan_cl(json, UP_KEEP));
    atomic_store(&up.read_delay_ms, 300);
    size_t base = up_count();
    fx_resp r;
    long st = fx_post(&c, 0, &r, key_sec, "/v1/chat/completions", NULL, body);
    atomic_store(&up.read_delay_ms, 0);
    check_ok("15 big request", &r, st, json, strlen(json), 17, 3, 0);
    fx_resp_free(&r);
    FX_CHECK_EQ_INT(up_count() - base, 1);
    const up_req *q = up_get(base);
    cJSON *j = cJSON_Parse(q->body);
    FX_CHECK(j != NULL, "15: upstream body (%zu bytes) is not JSON", q->body_len);
    const cJSON *msg = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "messages"), 0);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
    FX_CHECK(cJSON_IsString(content) && strlen(content->valuestring) == n &&
                 memcmp(content->valuestring, text, n) == 0,
             "15: the upstream got a different message (%zu bytes of body)", q->body_len);
    fx_log("15 big request: %zu-byte body received whole by an upstream that read 300 ms late",
           q->body_len);
    cJSON_Delete(j);
    free(json);
    free(body);
    free(text);
}

int main(void)
{
    fx_init("it_upstream_wire");
    int port = fx_free_port(), dead = fx_free_port();
    up_start(port);
    char extra[1024];
    snprintf(extra, sizeof(extra),
             "upstream_timeout_ms %d\n"
             "body_max_bytes 16777216\n"
             "provider wire http://127.0.0.1:%d/v1 " PROVIDER_KEY "\n"
             "provider wirehost http://localhost:%d/v1 " PROVIDER_KEY "\n"
             "provider refused http://127.0.0.1:%d/v1\n"
             "provider nohost http://capgate-no-such-host.invalid:9/v1\n"
             "model m-wire wire prompt=1 completion=2 max_output=100\n"
             "model m-host wirehost prompt=1 completion=2 max_output=100\n"
             "model m-refused refused prompt=1 completion=2 max_output=100\n"
             "model m-nohost nohost prompt=1 completion=2 max_output=100\n",
             TIMEOUT_MS, port, port, dead);
    /* One worker: one connection pool, so reuse and "a new connection" are exact. */
    fx_opts o = {.shard_n = 1, .workers = 1, .extra_config = extra};
    fx_cluster_start(&c, &o);
    fx_org_create(&c, "{\"id\":\"wire\",\"name\":\"Wire Inc.\"}");
    fx_key_create(&c, "wire",
                  "{\"name\":\"k\",\"limits\":[{\"metric\":\"cost\",\"window\":\"month\","
                  "\"max\":\"10\"}]}",
                  key_id, key_sec);

    scenario_request_and_cl();
    scenario_chunked();
    scenario_close_delimited();
    scenario_stream();
    scenario_keepalive();
    scenario_stale();
    scenario_continue();
    scenario_broken();
    scenario_hang();
    scenario_addresses();
    scenario_big_stream();
    scenario_big_request();

    int64_t sum = check_records();
    fx_limit l = fx_key_limit_settled(&c, key_id, 0, sum);
    FX_CHECK(l.used == sum && l.reserved == 0, "key cost used %lld (want %lld) reserved %lld",
             (long long)l.used, (long long)sum, (long long)l.reserved);
    fx_log("%zu usage records exact; key charged %lld nano-USD", exp_n, (long long)sum);
    up_stop();
    return fx_done();
}
