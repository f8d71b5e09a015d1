/*
 * ledger_server_test.c — the shard service in-process on ipc:// sockets in a
 * scratch directory: a REQ batch of several ops answered in order, the
 * threshold event arriving on SUB, an undecodable message answered with an
 * error, EVENTS_SINCE catch-up, concurrent clients keeping an exact count, and
 * the issue-3 ops (groups, customers, sliding refusals, usage, delete) on the wire.
 */
#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cg_clock.h"
#include "cg_log.h"
#include "cg_ring.h"
#include "cg_test.h"
#include "ledger_server.h"
#include "ledger_store.h"
#include "ledger_test_call.h"

#define CLIENTS 8
#define ROUNDS 50

typedef struct fx {
    char dir[64];
    char req_url[128];
    char pub_url[128];
    cg_ring ring;
    ledger_store *store;
    ledger_server *srv;
} fx;

static int fx_init(fx *f)
{
    const char *names[] = {"s0"};
    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/ledger_server_test.XXXXXX");
    if (mkdtemp(f->dir) == NULL || cg_ring_init(&f->ring, names, 1) != CG_ERR_OK) {
        return -1;
    }
    snprintf(f->req_url, sizeof(f->req_url), "ipc://%s/req.ipc", f->dir);
    snprintf(f->pub_url, sizeof(f->pub_url), "ipc://%s/pub.ipc", f->dir);
    ledger_store_cfg scfg = {.dir = f->dir,
                             .map_bytes = 1 << 24,
                             .ring = &f->ring,
                             .shard_index = 0,
                             .shard_name = "s0"};
    if (ledger_store_open(&scfg, &f->store) != CG_ERR_OK) {
        return -1;
    }
    ledger_server_cfg vcfg = {
        .store = f->store, .req_url = f->req_url, .pub_url = f->pub_url, .contexts = 4};
    return ledger_server_start(&vcfg, &f->srv) == CG_ERR_OK ? 0 : -1;
}

static void fx_fini(fx *f)
{
    char p[128];
    ledger_server_stop(f->srv);
    ledger_store_close(f->store);
    const char *files[] = {"data.mdb", "lock.mdb", "reservations.mdb", "reservations.mdb-lock",
                           "req.ipc",  "pub.ipc"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", f->dir, files[i]);
        unlink(p);
    }
    rmdir(f->dir);
    cg_ring_fini(&f->ring);
}

static int req_open(const fx *f, nng_socket *s)
{
    if (nng_req0_open(s) != 0 || nng_socket_set_ms(*s, NNG_OPT_RECVTIMEO, 5000) != 0 ||
        nng_dial(*s, f->req_url, NULL, 0) != 0) {
        return -1;
    }
    return 0;
}

/* Send a batch and decode the reply (free with proto_rep_free). */
static int call(nng_socket s, const proto_req *reqs, uint32_t n, proto_rep **reps, uint32_t *rn)
{
    return ledger_test_call(s, 0, reqs, n, reps, rn);
}

static proto_req mk(int op, const char *route)
{
    proto_req r;
    memset(&r, 0, sizeof(r));
    r.op = (uint8_t)op;
    snprintf(r.route, sizeof(r.route), "%s", route);
    return r;
}

static proto_req mk_key(const char *id, int64_t max, uint16_t warn_bp, int window)
{
    proto_req r = mk(PROTO_OP_PUT_KEY, "");
    snprintf(r.route, sizeof(r.route), "key:%s", id);
    proto_key *k = &r.u.put_key.key;
    snprintf(k->id, sizeof(k->id), "%s", id);
    snprintf(k->org, sizeof(k->org), "acme");
    k->billing_anchor_day = 1;
    k->limit_n = 1;
    k->limits[0].id = 1;
    k->limits[0].metric = PROTO_METRIC_COST;
    k->limits[0].window.kind = (uint8_t)window;
    k->limits[0].max = max;
    k->limits[0].warn_n = warn_bp ? 1 : 0;
    k->limits[0].warn_bp[0] = warn_bp;
    return r;
}

static proto_req mk_reserve(const char *route, const char *rid, int64_t cost)
{
    proto_req r = mk(PROTO_OP_RESERVE, route);
    snprintf(r.u.reserve.request_id, sizeof(r.u.reserve.request_id), "%s", rid);
    r.u.reserve.lease_ms = 60000;
    r.u.reserve.worst.cost_nusd = cost;
    r.u.reserve.worst.requests = 1;
    return r;
}

static proto_req mk_settle(const char *route, const char *rid, int64_t cost)
{
    proto_req r = mk(PROTO_OP_SETTLE, route);
    snprintf(r.u.settle.request_id, sizeof(r.u.settle.request_id), "%s", rid);
    r.u.settle.actual.cost_nusd = cost;
    r.u.settle.actual.requests = 1;
    return r;
}

CG_TEST(batch_reply_and_published_event)
{
    fx f;
    nng_socket req, sub;
    proto_rep *reps = NULL;
    uint32_t n = 0;
    CG_CHECK(fx_init(&f) == 0);
    CG_CHECK(req_open(&f, &req) == 0);
    CG_CHECK(nng_sub0_open(&sub) == 0);
    CG_CHECK(nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, "", 0) == 0);
    CG_CHECK(nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 5000) == 0);
    CG_CHECK(nng_dial(sub, f.pub_url, NULL, 0) == 0);
    usleep(200 * 1000); /* let the subscription reach the publisher */

    proto_req reqs[5] = {mk_key("k1", 10, 5000, CG_WIN_MONTH), mk_reserve("key:k1", "r1", 6),
                         mk_settle("key:k1", "r1", 6), mk(PROTO_OP_GET_KEY, "key:k1"),
                         mk(PROTO_OP_PING, "")};
    CG_CHECK(call(req, reqs, 5, &reps, &n) == 0);
    CG_CHECK_EQ_INT(n, 5);
    for (uint32_t i = 0; i < n; i++) {
        CG_CHECK_EQ_INT(reps[i].op, reqs[i].op);
        CG_CHECK_EQ_INT(reps[i].status, CG_ERR_OK);
    }
    CG_CHECK_EQ_INT(reps[1].u.reserve.states[0].reserved, 6);
    CG_CHECK_EQ_INT(reps[3].u.get_key.states[0].used, 6);
    CG_CHECK_EQ_INT(reps[3].u.get_key.states[0].reserved, 0);
    CG_CHECK_EQ_STR(reps[4].u.ping.shard, "s0");
    CG_CHECK_EQ_INT(reps[4].u.ping.last_seq, 1);
    proto_rep_free(reps, n);

    void *buf = NULL;
    size_t len = 0;
    char shard[PROTO_SHARD_MAX + 1];
    proto_event ev;
    /* The key PUT's definition-change notice (topic "d") is published before the replies,
     * the threshold event after them. */
    char route[PROTO_ROUTE_MAX + 1];
    CG_CHECK(nng_recv(sub, &buf, &len, NNG_FLAG_ALLOC) == 0);
    CG_CHECK(proto_notice_decode(buf, len, shard, route) == CG_ERR_OK);
    CG_CHECK(proto_pub_decode(buf, len, shard, &ev) != CG_ERR_OK);
    nng_free(buf, len);
    CG_CHECK_EQ_STR(route, "key:k1");
    CG_CHECK(nng_recv(sub, &buf, &len, NNG_FLAG_ALLOC) == 0);
    CG_CHECK(proto_notice_decode(buf, len, shard, route) != CG_ERR_OK);
    CG_CHECK(proto_pub_decode(buf, len, shard, &ev) == CG_ERR_OK);
    nng_free(buf, len);
    CG_CHECK_EQ_STR(shard, "s0");
    CG_CHECK_EQ_INT(ev.seq, 1);
    CG_CHECK_EQ_INT(ev.type, PROTO_EVT_SPEND_WARNING);
    CG_CHECK_EQ_INT(ev.used, 6);

    /* The same event by catch-up. */
    proto_req es = mk(PROTO_OP_EVENTS_SINCE, "");
    es.u.events_since.after_seq = 0;
    es.u.events_since.max_n = 10;
    CG_CHECK(call(req, &es, 1, &reps, &n) == 0);
    CG_CHECK_EQ_INT(reps[0].status, CG_ERR_OK);
    CG_CHECK_EQ_INT(reps[0].u.events.n, 1);
    CG_CHECK_EQ_STR(reps[0].u.events.events[0].id, ev.id);
    proto_rep_free(reps, n);

    nng_close(sub);
    nng_close(req);
    fx_fini(&f);
}

CG_TEST(garbage_gets_an_error_reply)
{
    fx f;
    nng_socket req;
    void *buf = NULL;
    size_t len = 0;
    proto_rep *reps = NULL;
    uint32_t n = 0;
    CG_CHECK(fx_init(&f) == 0);
    CG_CHECK(req_open(&f, &req) == 0);
    CG_CHECK(nng_send(req, "\x93\x01\x02\x03junk", 8, 0) == 0);
    CG_CHECK(nng_recv(req, &buf, &len, NNG_FLAG_ALLOC) == 0);
    CG_CHECK(proto_rep_decode(buf, len, &reps, &n) == CG_ERR_OK);
    nng_free(buf, len);
    CG_CHECK_EQ_INT(n, 1);
    CG_CHECK(reps[0].status == CG_ERR_PROTO || reps[0].status == CG_ERR_VERSION);
    proto_rep_free(reps, n);
    /* The context serves again afterwards. */
    proto_req ping = mk(PROTO_OP_PING, "");
    CG_CHECK(call(req, &ping, 1, &reps, &n) == 0);
    CG_CHECK_EQ_INT(reps[0].status, CG_ERR_OK);
    proto_rep_free(reps, n);
    nng_close(req);
    fx_fini(&f);
}

typedef struct client_arg {
    const fx *f;
    int id;
    int failures;
} client_arg;

static void *client_main(void *p)
{
    client_arg *a = p;
    nng_socket req;
    if (req_open(a->f, &req) != 0) {
        a->failures = ROUNDS;
        return NULL;
    }
    for (int i = 0; i < ROUNDS; i++) {
        char rid[32];
        proto_rep *reps = NULL;
        uint32_t n = 0;
        snprintf(rid, sizeof(rid), "c%d-%d", a->id, i);
        proto_req reqs[2] = {mk_reserve("key:hot", rid, 3), mk_settle("key:hot", rid, 1)};
        if (call(req, reqs, 2, &reps, &n) != 0 || n != 2) {
            a->failures++;
            continue;
        }
        /* A refused reservation leaves the settle to count as late spend: both are fine here,
         * but the reserve must be OK while budget remains. */
        if (reps[0].status != CG_ERR_OK || reps[1].status != CG_ERR_OK) {
            a->failures++;
        }
        proto_rep_free(reps, n);
    }
    nng_close(req);
    return NULL;
}

CG_TEST(concurrent_clients_exact_count)
{
    fx f;
    nng_socket req;
    proto_rep *reps = NULL;
    uint32_t n = 0;
    pthread_t th[CLIENTS];
    client_arg args[CLIENTS];
    CG_CHECK(fx_init(&f) == 0);
    CG_CHECK(req_open(&f, &req) == 0);
    proto_req put = mk_key("hot", 1000000, 0, CG_WIN_LIFETIME);
    CG_CHECK(call(req, &put, 1, &reps, &n) == 0);
    CG_CHECK_EQ_INT(reps[0].status, CG_ERR_OK);
    proto_rep_free(reps, n);
    for (int i = 0; i < CLIENTS; i++) {
        args[i] = (client_arg){.f = &f, .id = i};
        CG_CHECK(pthread_create(&th[i], NULL, client_main, &args[i]) == 0);
    }
    int failures = 0;
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(th[i], NULL);
        failures += args[i].failures;
    }
    CG_CHECK_EQ_INT(failures, 0);
    proto_req get = mk(PROTO_OP_GET_KEY, "key:hot");
    CG_CHECK(call(req, &get, 1, &reps, &n) == 0);
    CG_CHECK_EQ_INT(reps[0].u.get_key.states[0].used, CLIENTS * ROUNDS);
    CG_CHECK_EQ_INT(reps[0].u.get_key.states[0].reserved, 0);
    proto_rep_free(reps, n);
    nng_close(req);
    fx_fini(&f);
}

static proto_req mk_group(const char *org, const char *id)
{
    proto_req r = mk(PROTO_OP_PUT_GROUP, "");
    snprintf(r.route, sizeof(r.route), "group:%s/%s", org, id);
    r.u.put_group.create_only = 1;
    proto_group *g = &r.u.put_group.group;
    snprintf(g->id, sizeof(g->id), "%s", id);
    snprintf(g->org, sizeof(g->org), "%s", org);
    g->billing_anchor_day = 1;
    g->limit_n = 1;
    g->limits[0].id = 1;
    g->limits[0].metric = PROTO_METRIC_REQUESTS;
    g->limits[0].window.kind = CG_WIN_SLIDING;
    g->limits[0].window.sliding_s = 60;
    g->limits[0].max = 1;
    return r;
}

/* The issue-3 ops over the wire: every reply body the shard builds must encode and decode. */
CG_TEST(scope_ops_round_trip)
{
    fx f;
    nng_socket req;
    proto_rep *reps = NULL;
    uint32_t n = 0;
    CG_CHECK(fx_init(&f) == 0);
    CG_CHECK(req_open(&f, &req) == 0);
    proto_req reqs[8] = {mk_group("acme", "team"),
                         mk_reserve("group:acme/team", "r1", 0),
                         mk_reserve("group:acme/team", "r2", 0),
                         mk(PROTO_OP_GET_GROUP, "group:acme/team"),
                         mk(PROTO_OP_GET_CUSTOMER, "customer:acme/alice"),
                         mk(PROTO_OP_USAGE_QUERY, ""),
                         mk(PROTO_OP_DELETE, "group:acme/team"),
                         mk(PROTO_OP_GET_ORG_STATE, "org:acme")};
    proto_limit *d = &reqs[4].u.get_customer.inline_limits[0];
    d->metric = PROTO_METRIC_TOKENS;
    d->window.kind = CG_WIN_DAY;
    d->max = 1000;
    d->id = proto_limit_natural_id(d->metric, d->window);
    reqs[4].u.get_customer.inline_n = 1;
    reqs[4].u.get_customer.anchor_day = 1;
    snprintf(reqs[5].u.usage_query.org, sizeof(reqs[5].u.usage_query.org), "acme");
    CG_CHECK(call(req, reqs, 8, &reps, &n) == 0);
    CG_CHECK_EQ_INT(n, 8);
    CG_CHECK_EQ_INT(reps[0].status, CG_ERR_OK);
    CG_CHECK_EQ_INT(reps[1].status, CG_ERR_OK);
    CG_CHECK_EQ_INT(reps[2].status, CG_ERR_BUDGET); /* 1 request per minute */
    CG_CHECK_EQ_INT(reps[2].u.reserve.refusal.window.kind, CG_WIN_SLIDING);
    CG_CHECK_EQ_INT(reps[2].u.reserve.refusal.retry_after_ms, 1000); /* held, not yet settled */
    CG_CHECK_EQ_INT(reps[3].status, CG_ERR_OK);
    CG_CHECK_EQ_STR(reps[3].u.get_group.group.id, "team");
    CG_CHECK_EQ_INT(reps[3].u.get_group.states[0].window.sliding_s, 60);
    CG_CHECK_EQ_INT(reps[3].u.get_group.states[0].reserved, 1);
    CG_CHECK_EQ_INT(reps[4].status, CG_ERR_OK);
    CG_CHECK_EQ_INT(reps[4].u.get_customer.found, 0);
    CG_CHECK_EQ_INT(reps[4].u.get_customer.state_n, 1);
    CG_CHECK_EQ_INT(reps[4].u.get_customer.states[0].max, 1000);
    CG_CHECK_EQ_INT(reps[5].status, CG_ERR_OK);
    CG_CHECK_EQ_INT(reps[5].u.usage.totals.requests, 0);
    CG_CHECK_EQ_INT(reps[6].status, CG_ERR_OK);
    CG_CHECK_EQ_INT(reps[7].status, CG_ERR_NOTFOUND);
    proto_rep_free(reps, n);
    nng_close(req);
    fx_fini(&f);
}

int main(void)
{
    cg_log_init("ledger_server_test", CG_LOG_ERROR);
    return CG_TEST_RUN(batch_reply_and_published_event, garbage_gets_an_error_reply,
                       concurrent_clients_exact_count, scope_ops_round_trip);
}
