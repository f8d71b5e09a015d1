/*
 * ledger_bench.c — micro-benchmark of one ledger shard driven directly over
 * NNG (SPEC §11: "one ledger shard sustains at least 100k reserve+settle pairs
 * per second with durable group commit").
 *
 * The shard runs in-process (ledger_store + ledger_server, durable default
 * flags) on a scratch directory on the real disk, listening on ipc://. Client
 * threads each own a REQ socket and send messages of B operations: B/2
 * reserves of new requests and B/2 settles of the requests reserved by the
 * previous message (B = 1: one reserve message, then one settle message).
 * Workloads: "spread" (each op on one of K distinct keys) and "hot" (every op
 * on one key). Each row restarts the server on the same store, so the store's
 * counters give exact per-row writer numbers (transactions, ops, batch sizes).
 *
 * Row "overlap": one client in the gateway's one-request-at-a-time pattern (each reserve
 * sent while the previous request's settle commits). CAPGATE_LEDGER_ONE_LANE=1 runs the
 * server with one writer lane (before issue 4's reserve lane), for side-by-side numbers.
 *
 * Usage: ledger_bench [-t seconds] [-c clients] [-x contexts] [-k keys] [-D dir] [-B only_batch]
 * (-B: run only the rows of that batch size, e.g. while profiling; -B 1024: only the
 * store-alone rows).
 */
#include <errno.h>
#include <fcntl.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cg_log.h"
#include "cg_ring.h"
#include "ledger_server.h"
#include "ledger_store.h"
#include "proto.h"

#define LAT_US_MAX 200000 /* latency histogram: 1 µs buckets up to 200 ms (+ overflow) */

typedef struct bench {
    char dir[256];
    char req_url[300];
    char pub_url[300];
    cg_ring ring;
    ledger_store *store;
    ledger_server *srv;
    double secs;
    uint32_t clients;
    uint32_t contexts;
    uint32_t keys;
    uint32_t row; /* request ids are unique per row */
} bench;

typedef struct client {
    bench *b;
    uint32_t id;
    uint32_t batch; /* ops per message */
    int hot;
    int64_t deadline_ns;
    uint64_t pairs;
    uint64_t msgs;
    uint64_t errors;
    uint32_t *lat;             /* LAT_US_MAX + 1 counters */
    uint32_t *lat_rs, *lat_st; /* B = 1: reserve and settle messages apart */
    uint64_t rs_n, st_n;
    uint64_t seed;
} client;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint32_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)(*s >> 11);
}

static void mk_route(char *out, size_t n, const client *c, uint32_t k)
{
    if (c->hot) {
        snprintf(out, n, "key:hot");
    } else {
        snprintf(out, n, "key:k%u", k);
    }
}

/* One round trip; returns 0 and counts non-OK statuses into c->errors. */
static int call(client *c, nng_socket s, msgpack_sbuffer *sb, const proto_req *reqs, uint32_t n,
                uint32_t *lat2, uint64_t *n2)
{
    void *buf = NULL;
    size_t len = 0;
    proto_rep *reps = NULL;
    uint32_t rn = 0;
    msgpack_sbuffer_clear(sb);
    if (proto_req_encode(reqs, n, sb) != CG_ERR_OK) {
        return -1;
    }
    int64_t t0 = now_ns();
    if (nng_send(s, sb->data, sb->size, 0) != 0 || nng_recv(s, &buf, &len, NNG_FLAG_ALLOC) != 0) {
        return -1;
    }
    int64_t us = (now_ns() - t0) / 1000;
    c->lat[us > LAT_US_MAX ? LAT_US_MAX : us]++;
    c->msgs++;
    if (lat2 != NULL) {
        lat2[us > LAT_US_MAX ? LAT_US_MAX : us]++;
        (*n2)++;
    }
    int rc = proto_rep_decode(buf, len, &reps, &rn) == CG_ERR_OK && rn == n ? 0 : -1;
    nng_free(buf, len);
    for (uint32_t i = 0; rc == 0 && i < rn; i++) {
        if (reps[i].status != CG_ERR_OK) {
            if (c->errors++ == 0) {
                fprintf(stderr, "op %u status %s\n", reps[i].op, cg_err_name(reps[i].status));
            }
        }
    }
    if (reps != NULL) {
        proto_rep_free(reps, rn);
    }
    return rc;
}

static void *client_main(void *arg)
{
    client *c = arg;
    bench *b = c->b;
    nng_socket s;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (nng_req0_open(&s) != 0 || nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 10000) != 0 ||
        nng_dial(s, b->req_url, NULL, 0) != 0) {
        fprintf(stderr, "client %u: cannot connect\n", c->id);
        c->errors++;
        return NULL;
    }
    uint32_t half = c->batch >= 2 ? c->batch / 2 : 1;
    /* Templates built once (a proto_req is ~7 KB: zeroing one per op would make the client,
     * not the shard, the bottleneck); per message only routes and request ids change.
     * Layout: [0, half) settles, [half, 2 half) reserves; B = 1 uses one of each alone. */
    proto_req *reqs = calloc(2 * half, sizeof(*reqs));
    for (uint32_t i = 0; i < half; i++) {
        proto_req *st = &reqs[i], *rs = &reqs[half + i];
        st->op = PROTO_OP_SETTLE;
        st->u.settle.actual = (proto_amounts){.cost_nusd = 700, .tokens = 10, .requests = 1};
        rs->op = PROTO_OP_RESERVE;
        rs->u.reserve.lease_ms = 60000;
        rs->u.reserve.worst = (proto_amounts){.cost_nusd = 1000, .tokens = 20, .requests = 1};
    }
    uint32_t *pk = calloc(half, sizeof(*pk)); /* key index of each reservation just made */
    uint64_t seq = 0;
    int have_prev = 0;
    while (now_ns() < c->deadline_ns) {
        /* settles of the previous message's reservations (their ids are still in place) */
        for (uint32_t i = 0; i < half; i++) {
            proto_req *st = &reqs[i], *rs = &reqs[half + i];
            memcpy(st->route, rs->route, sizeof(st->route));
            memcpy(st->u.settle.request_id, rs->u.reserve.request_id,
                   sizeof(st->u.settle.request_id));
            pk[i] = rnd(&c->seed) % b->keys;
            mk_route(rs->route, sizeof(rs->route), c, pk[i]);
            snprintf(rs->u.reserve.request_id, sizeof(rs->u.reserve.request_id), "r%uc%un%llu",
                     b->row, c->id, (unsigned long long)seq++);
        }
        if (c->batch >= 2) {
            int with_settles = have_prev;
            if (call(c, s, &sb, with_settles ? reqs : reqs + half, with_settles ? 2 * half : half,
                     NULL, NULL) != 0) {
                c->errors++;
                break;
            }
            c->pairs += with_settles ? half : 0;
        } else {
            /* B = 1: reserve, then settle it in its own message */
            memcpy(reqs[0].route, reqs[1].route, sizeof(reqs[0].route));
            memcpy(reqs[0].u.settle.request_id, reqs[1].u.reserve.request_id,
                   sizeof(reqs[0].u.settle.request_id));
            if (call(c, s, &sb, &reqs[1], 1, c->lat_rs, &c->rs_n) != 0 ||
                call(c, s, &sb, &reqs[0], 1, c->lat_st, &c->st_n) != 0) {
                c->errors++;
                break;
            }
            c->pairs++;
        }
        have_prev = 1;
    }
    free(pk);
    free(reqs);
    msgpack_sbuffer_destroy(&sb);
    nng_close(s);
    return NULL;
}

/*
 * The gateway's pattern at one request at a time (issue 4): request i's settle is sent and
 * not waited for, and request i+1's reserve goes out at once on a second socket, so it
 * arrives while the settle's durable commit runs. Measures that reserve (c->lat_rs) and the
 * settle's round trip (c->lat_st); a pair counts when both are answered.
 */
static void *overlap_main(void *arg)
{
    client *c = arg;
    bench *b = c->b;
    nng_socket rs, st;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (nng_req0_open(&rs) != 0 || nng_req0_open(&st) != 0 ||
        nng_socket_set_ms(rs, NNG_OPT_RECVTIMEO, 10000) != 0 ||
        nng_socket_set_ms(st, NNG_OPT_RECVTIMEO, 10000) != 0 ||
        nng_dial(rs, b->req_url, NULL, 0) != 0 || nng_dial(st, b->req_url, NULL, 0) != 0) {
        fprintf(stderr, "overlap client: cannot connect\n");
        c->errors++;
        return NULL;
    }
    proto_req *reqs = calloc(2, sizeof(*reqs)); /* [0] settle, [1] reserve */
    reqs[0].op = PROTO_OP_SETTLE;
    reqs[0].u.settle.actual = (proto_amounts){.cost_nusd = 700, .tokens = 10, .requests = 1};
    reqs[1].op = PROTO_OP_RESERVE;
    reqs[1].u.reserve.lease_ms = 60000;
    reqs[1].u.reserve.worst = (proto_amounts){.cost_nusd = 1000, .tokens = 20, .requests = 1};
    uint64_t seq = 0;
    int64_t st_t0 = 0;
    int settle_out = 0;
    while (now_ns() < c->deadline_ns) {
        mk_route(reqs[1].route, sizeof(reqs[1].route), c, rnd(&c->seed) % b->keys);
        snprintf(reqs[1].u.reserve.request_id, sizeof(reqs[1].u.reserve.request_id), "r%uo%llu",
                 b->row, (unsigned long long)seq++);
        if (call(c, rs, &sb, &reqs[1], 1, c->lat_rs, &c->rs_n) != 0) {
            c->errors++;
            break;
        }
        if (settle_out) { /* the previous request's settle: wait for its confirmation */
            void *buf = NULL;
            size_t len = 0;
            if (nng_recv(st, &buf, &len, NNG_FLAG_ALLOC) != 0) {
                c->errors++;
                break;
            }
            int64_t us = (now_ns() - st_t0) / 1000;
            c->lat_st[us > LAT_US_MAX ? LAT_US_MAX : us]++;
            c->st_n++;
            nng_free(buf, len);
            c->pairs++;
        }
        memcpy(reqs[0].route, reqs[1].route, sizeof(reqs[0].route));
        memcpy(reqs[0].u.settle.request_id, reqs[1].u.reserve.request_id,
               sizeof(reqs[0].u.settle.request_id));
        msgpack_sbuffer_clear(&sb);
        if (proto_req_encode(&reqs[0], 1, &sb) != CG_ERR_OK) {
            c->errors++;
            break;
        }
        st_t0 = now_ns();
        if (nng_send(st, sb.data, sb.size, 0) != 0) {
            c->errors++;
            break;
        }
        settle_out = 1;
    }
    if (settle_out) {
        void *buf = NULL;
        size_t len = 0;
        if (nng_recv(st, &buf, &len, NNG_FLAG_ALLOC) == 0) {
            nng_free(buf, len);
            c->pairs++;
        }
    }
    free(reqs);
    msgpack_sbuffer_destroy(&sb);
    nng_close(rs);
    nng_close(st);
    return NULL;
}

static int server_start(bench *b)
{
    ledger_server_cfg vcfg = {
        .store = b->store, .req_url = b->req_url, .pub_url = b->pub_url, .contexts = b->contexts};
    return ledger_server_start(&vcfg, &b->srv) == CG_ERR_OK ? 0 : -1;
}

/* Create the keys (one shared org "bench"; no warn thresholds, so no events). */
static int setup_keys(bench *b)
{
    client c = {.b = b, .lat = calloc(LAT_US_MAX + 1, sizeof(uint32_t))};
    nng_socket s;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (nng_req0_open(&s) != 0 || nng_dial(s, b->req_url, NULL, 0) != 0) {
        return -1;
    }
    proto_req *reqs = calloc(PROTO_BATCH_MAX, sizeof(*reqs));
    uint32_t total = b->keys + 1, done = 0;
    while (done < total) {
        uint32_t n = 0;
        for (; n < PROTO_BATCH_MAX && done < total; n++, done++) {
            proto_req *r = &reqs[n];
            memset(r, 0, sizeof(*r));
            r->op = PROTO_OP_PUT_KEY;
            proto_key *k = &r->u.put_key.key;
            if (done == b->keys) {
                snprintf(k->id, sizeof(k->id), "hot");
            } else {
                snprintf(k->id, sizeof(k->id), "k%u", done);
            }
            snprintf(r->route, sizeof(r->route), "key:%s", k->id);
            snprintf(k->org, sizeof(k->org), "bench");
            k->billing_anchor_day = 1;
            k->limit_n = 2;
            k->limits[0].id = 1;
            k->limits[0].metric = PROTO_METRIC_COST;
            k->limits[0].window.kind = CG_WIN_MONTH;
            k->limits[0].max = INT64_MAX / 4;
            k->limits[1].id = 2;
            k->limits[1].metric = PROTO_METRIC_TOKENS;
            k->limits[1].window.kind = CG_WIN_DAY;
            k->limits[1].max = INT64_MAX / 4;
        }
        if (call(&c, s, &sb, reqs, n, NULL, NULL) != 0 || c.errors != 0) {
            return -1;
        }
    }
    free(reqs);
    free(c.lat);
    msgpack_sbuffer_destroy(&sb);
    nng_close(s);
    return 0;
}

static uint32_t pct(const uint32_t *lat, uint64_t total, double p)
{
    uint64_t want = (uint64_t)(p * (double)total), acc = 0;
    for (uint32_t i = 0; i <= LAT_US_MAX; i++) {
        acc += lat[i];
        if (acc > want) {
            return i;
        }
    }
    return LAT_US_MAX;
}

typedef struct row_result row_result;
static int run_row_fn(bench *b, uint32_t batch, int hot, uint32_t clients, void *(*fn)(void *),
                      row_result *out);

struct row_result {
    double pairs_s, msgs_s, txn_s, ops_per_txn;
    uint32_t p50, p99;
    uint32_t rs_p50, rs_p99, st_p50, st_p99; /* B = 1: reserve / settle messages */
    double nosync_pct;                       /* commits that synced nothing (issue 4) */
    uint64_t errors;
    uint64_t hist[LEDGER_BATCH_HIST];
};

static int run_row(bench *b, uint32_t batch, int hot, uint32_t clients, row_result *out)
{
    return run_row_fn(b, batch, hot, clients, client_main, out);
}

static int run_row_fn(bench *b, uint32_t batch, int hot, uint32_t clients, void *(*fn)(void *),
                      row_result *out)
{
    ledger_store_stats s0, s1;
    memset(out, 0, sizeof(*out));
    b->row++;
    if (server_start(b) != 0) {
        return -1;
    }
    client *cs = calloc(clients, sizeof(*cs));
    pthread_t *th = calloc(clients, sizeof(*th));
    uint32_t *lat = calloc(LAT_US_MAX + 1, sizeof(uint32_t));
    uint32_t *lat_rs = calloc(LAT_US_MAX + 1, sizeof(uint32_t));
    uint32_t *lat_st = calloc(LAT_US_MAX + 1, sizeof(uint32_t));
    uint64_t rs_n = 0, st_n = 0;
    ledger_store_stats_get(b->store, &s0); /* writer idle: no job queued yet */
    int64_t t0 = now_ns();
    for (uint32_t i = 0; i < clients; i++) {
        cs[i] = (client){.b = b,
                         .id = i,
                         .batch = batch,
                         .hot = hot,
                         .deadline_ns = t0 + (int64_t)(b->secs * 1e9),
                         .lat = calloc(LAT_US_MAX + 1, sizeof(uint32_t)),
                         .lat_rs = calloc(LAT_US_MAX + 1, sizeof(uint32_t)),
                         .lat_st = calloc(LAT_US_MAX + 1, sizeof(uint32_t)),
                         .seed = 0x9E3779B97F4A7C15ULL * (i + 1) + b->row};
        pthread_create(&th[i], NULL, fn, &cs[i]);
    }
    uint64_t pairs = 0, msgs = 0;
    for (uint32_t i = 0; i < clients; i++) {
        pthread_join(th[i], NULL);
        pairs += cs[i].pairs;
        msgs += cs[i].msgs;
        out->errors += cs[i].errors;
        for (uint32_t j = 0; j <= LAT_US_MAX; j++) {
            lat[j] += cs[i].lat[j];
            lat_rs[j] += cs[i].lat_rs[j];
            lat_st[j] += cs[i].lat_st[j];
        }
        rs_n += cs[i].rs_n;
        st_n += cs[i].st_n;
        free(cs[i].lat);
        free(cs[i].lat_rs);
        free(cs[i].lat_st);
    }
    double el = (double)(now_ns() - t0) / 1e9;
    ledger_server_stop(b->srv);
    b->srv = NULL;
    ledger_store_stats_get(b->store, &s1);
    out->pairs_s = (double)pairs / el;
    out->msgs_s = (double)msgs / el;
    out->txn_s = (double)(s1.batches - s0.batches) / el;
    out->ops_per_txn =
        s1.batches > s0.batches ? (double)(s1.ops - s0.ops) / (double)(s1.batches - s0.batches) : 0;
    for (int i = 0; i < LEDGER_BATCH_HIST; i++) {
        out->hist[i] = s1.batch_hist[i] - s0.batch_hist[i];
    }
    out->p50 = pct(lat, msgs, 0.50);
    out->p99 = pct(lat, msgs, 0.99);
    out->rs_p50 = pct(lat_rs, rs_n, 0.50);
    out->rs_p99 = pct(lat_rs, rs_n, 0.99);
    out->st_p50 = pct(lat_st, st_n, 0.50);
    out->st_p99 = pct(lat_st, st_n, 0.99);
    out->nosync_pct = s1.batches > s0.batches
                          ? 100.0 * (double)(s1.nosync_commits - s0.nosync_commits) /
                                (double)(s1.batches - s0.batches)
                          : 0;
    free(lat);
    free(lat_rs);
    free(lat_st);
    free(cs);
    free(th);
    return 0;
}

static void print_hist(const uint64_t *h)
{
    uint64_t tot = 0;
    for (int i = 0; i < LEDGER_BATCH_HIST; i++) {
        tot += h[i];
    }
    for (int i = 0; i < LEDGER_BATCH_HIST; i++) {
        if (h[i] * 100 >= tot && tot > 0) {
            printf(" %u-%u:%.0f%%", 1u << i, (2u << i) - 1, 100.0 * (double)h[i] / (double)tot);
        }
    }
}

/*
 * The store alone (no NNG): batches of 1024 ops (512 settles of the previous batch's
 * reservations + 512 reserves) applied with ledger_store_apply on this thread. Reports wall
 * pairs/s and the thread's CPU time per pair, which (unlike throughput on a shared machine)
 * hardly moves with the device's sync latency: the number to compare CPU optimisations by.
 */
static void store_row(bench *b, int hot)
{
    enum { HALF = LEDGER_BATCH_OPS_MAX / 2 };
    proto_req *reqs = calloc(2 * HALF, sizeof(*reqs));
    proto_rep *reps = calloc(2 * HALF, sizeof(*reps));
    ledger_op *ops = calloc(2 * HALF, sizeof(*ops));
    client c = {.b = b, .hot = hot, .seed = 12345};
    b->row++;
    for (uint32_t i = 0; i < HALF; i++) {
        reqs[i].op = PROTO_OP_SETTLE;
        reqs[i].u.settle.actual = (proto_amounts){.cost_nusd = 700, .tokens = 10, .requests = 1};
        reqs[HALF + i].op = PROTO_OP_RESERVE;
        reqs[HALF + i].u.reserve.lease_ms = 60000;
        reqs[HALF + i].u.reserve.worst =
            (proto_amounts){.cost_nusd = 1000, .tokens = 20, .requests = 1};
    }
    for (uint32_t i = 0; i < 2 * HALF; i++) {
        ops[i] = (ledger_op){.req = &reqs[i], .rep = &reps[i]};
    }
    uint64_t seq = 0, pairs = 0, errors = 0;
    int have_prev = 0;
    struct timespec c0, c1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    int64_t t0 = now_ns(), end = t0 + (int64_t)(b->secs * 1e9);
    while (now_ns() < end) {
        for (uint32_t i = 0; i < HALF; i++) {
            proto_req *st = &reqs[i], *rs = &reqs[HALF + i];
            memcpy(st->route, rs->route, sizeof(st->route));
            memcpy(st->u.settle.request_id, rs->u.reserve.request_id,
                   sizeof(st->u.settle.request_id));
            mk_route(rs->route, sizeof(rs->route), &c, rnd(&c.seed) % b->keys);
            snprintf(rs->u.reserve.request_id, sizeof(rs->u.reserve.request_id), "r%us%llu", b->row,
                     (unsigned long long)seq++);
        }
        uint32_t off = have_prev ? 0 : HALF;
        if (ledger_store_apply(b->store, ops + off, 2 * HALF - off) != CG_ERR_OK) {
            errors++;
            break;
        }
        for (uint32_t i = off; i < 2 * HALF; i++) {
            errors += reps[i].status != CG_ERR_OK;
        }
        pairs += have_prev ? HALF : 0;
        have_prev = 1;
    }
    double el = (double)(now_ns() - t0) / 1e9;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    double cpu = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) / 1e9;
    printf("store   %-6s 1024/txn: %8.0f pairs/s wall, %.2f us CPU per pair (writer thread)%s\n",
           hot ? "hot" : "spread", (double)pairs / el, pairs ? cpu * 1e6 / (double)pairs : 0,
           errors ? "  ERRORS" : "");
    free(ops);
    free(reps);
    free(reqs);
}

/* Device baseline: p50/p99 of a 4 KiB pwrite + fdatasync in the bench directory. */
static void fsync_baseline(const bench *b)
{
    char p[300];
    snprintf(p, sizeof(p), "%s/fsync.probe", b->dir);
    int fd = open(p, O_CREAT | O_RDWR, 0600);
    if (fd < 0) {
        return;
    }
    char buf[4096];
    memset(buf, 'x', sizeof(buf));
    enum { N = 200 };
    int64_t us[N];
    for (int i = 0; i < N; i++) {
        int64_t t0 = now_ns();
        if (pwrite(fd, buf, sizeof(buf), (off_t)(i % 16) * 4096) < 0 || fdatasync(fd) != 0) {
            break;
        }
        us[i] = (now_ns() - t0) / 1000;
    }
    close(fd);
    unlink(p);
    for (int i = 1; i < N; i++) { /* insertion sort: tiny */
        int64_t v = us[i];
        int j = i - 1;
        for (; j >= 0 && us[j] > v; j--) {
            us[j + 1] = us[j];
        }
        us[j + 1] = v;
    }
    printf("device: 4 KiB pwrite+fdatasync p50 %lld us, p99 %lld us\n", (long long)us[N / 2],
           (long long)us[N * 99 / 100]);
}

int main(int argc, char **argv)
{
    bench b = {.secs = 5, .clients = 8, .contexts = 16, .keys = 1024};
    const char *base = "/var/tmp";
    uint32_t only = 0;
    int opt;
    while ((opt = getopt(argc, argv, "t:c:x:k:D:B:")) != -1) {
        switch (opt) {
        case 't':
            b.secs = atof(optarg);
            break;
        case 'c':
            b.clients = (uint32_t)atoi(optarg);
            break;
        case 'x':
            b.contexts = (uint32_t)atoi(optarg);
            break;
        case 'k':
            b.keys = (uint32_t)atoi(optarg);
            break;
        case 'D':
            base = optarg;
            break;
        case 'B':
            only = (uint32_t)atoi(optarg);
            break;
        default:
            fprintf(
                stderr,
                "usage: %s [-t secs] [-c clients] [-x contexts] [-k keys] [-D dir] [-B batch]\n",
                argv[0]);
            return 2;
        }
    }
    ledger_malloc_tune(); /* as capgate-ledger's main does */
    cg_log_init("ledger_bench", CG_LOG_ERROR);
    const char *names[] = {"s0"};
    snprintf(b.dir, sizeof(b.dir), "%s/ledger_bench.XXXXXX", base);
    if (mkdtemp(b.dir) == NULL || cg_ring_init(&b.ring, names, 1) != CG_ERR_OK) {
        perror("setup");
        return 1;
    }
    snprintf(b.req_url, sizeof(b.req_url), "ipc://%s/req.ipc", b.dir);
    snprintf(b.pub_url, sizeof(b.pub_url), "ipc://%s/pub.ipc", b.dir);
    ledger_store_cfg scfg = {.dir = b.dir,
                             .map_bytes = 8ULL << 30,
                             .ring = &b.ring,
                             .shard_index = 0,
                             .shard_name = "s0"};
    if (ledger_store_open(&scfg, &b.store) != CG_ERR_OK || server_start(&b) != 0 ||
        setup_keys(&b) != 0) {
        fprintf(stderr, "cannot set up the shard in %s\n", b.dir);
        return 1;
    }
    ledger_server_stop(b.srv);
    printf("ledger_bench: dir %s, %.1f s per row, %u clients, %u contexts, %u keys\n", b.dir,
           b.secs, b.clients, b.contexts, b.keys);
    fsync_baseline(&b);
    printf("%-7s %4s %4s %10s %9s %7s %7s %8s %8s  %s\n", "load", "B", "cli", "pairs/s", "msgs/s",
           "p50us", "p99us", "txn/s", "ops/txn", "ops-per-txn histogram (>=1%)");
    static const uint32_t batches[] = {1, 16, 64, 256};
    int rc = 0;
    for (int hot = 0; hot <= 1; hot++) {
        for (size_t i = 0; i < sizeof(batches) / sizeof(batches[0]); i++) {
            row_result r;
            if (only != 0 && batches[i] != only) {
                continue;
            }
            if (run_row(&b, batches[i], hot, b.clients, &r) != 0) {
                rc = 1;
                continue;
            }
            printf("%-7s %4u %4u %10.0f %9.0f %7u %7u %8.0f %8.1f ", hot ? "hot" : "spread",
                   batches[i], b.clients, r.pairs_s, r.msgs_s, r.p50, r.p99, r.txn_s,
                   r.ops_per_txn);
            print_hist(r.hist);
            printf("%s\n", r.errors ? "  ERRORS" : "");
            fflush(stdout);
            rc |= r.errors != 0;
        }
    }
    if (only == 0 || only == 1024) {
        store_row(&b, 0);
        store_row(&b, 1);
        fflush(stdout);
    }
    /* Single-op durable commit latency: one client, one op per message. */
    row_result r;
    if ((only == 0 || only == 1) && run_row(&b, 1, 0, 1, &r) == 0) {
        printf("%-7s %4u %4u %10.0f %9.0f %7u %7u %8.0f %8.1f ", "single", 1u, 1u, r.pairs_s,
               r.msgs_s, r.p50, r.p99, r.txn_s, r.ops_per_txn);
        print_hist(r.hist);
        printf("%s\n", r.errors ? "  ERRORS" : "");
        printf("single: reserve p50 %u us p99 %u us; settle p50 %u us p99 %u us; "
               "%.0f%% of commits synced nothing\n",
               r.rs_p50, r.rs_p99, r.st_p50, r.st_p99, r.nosync_pct);
        rc |= r.errors != 0;
    }
    /* The gateway's pattern: each reserve sent while the previous settle commits. */
    if ((only == 0 || only == 1) && run_row_fn(&b, 1, 0, 1, overlap_main, &r) == 0) {
        printf("overlap: %.0f pairs/s; reserve (sent during the previous settle's commit) p50 %u "
               "us p99 %u us; settle p50 %u us p99 %u us%s\n",
               r.pairs_s, r.rs_p50, r.rs_p99, r.st_p50, r.st_p99, r.errors ? "  ERRORS" : "");
        rc |= r.errors != 0;
    }
    ledger_store_close(b.store);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b.dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "could not remove %s\n", b.dir);
    }
    cg_ring_fini(&b.ring);
    return rc;
}
