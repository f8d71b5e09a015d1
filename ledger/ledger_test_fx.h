/*
 * ledger_test_fx.h — the fixture shared by the ledger store's unit tests
 * (ledger_store_test.c, ledger_scope_test.c): a fresh store in a scratch
 * directory owning every route (a one-shard ring), and builders for the
 * requests the tests apply one at a time.
 *
 * Time is moved with cg_clock_set_offset_ms; fx_init and fx_fini reset it.
 * Header-only (static inline) so each test binary takes what it uses.
 */
#ifndef LEDGER_TEST_FX_H
#define LEDGER_TEST_FX_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cg_clock.h"
#include "cg_ring.h"
#include "ledger_store.h"

#define DAY_MS (86400LL * 1000)
#define USD (1000000000LL)

typedef struct fx {
    char dir[64];
    cg_ring ring;
    ledger_store *s;
    const char *boot_id; /* NULL: the kernel's; a test sets another to act out a reboot */
} fx;

static inline int fx_open(fx *f, uint64_t map_bytes)
{
    ledger_store_cfg cfg = {.dir = f->dir,
                            .map_bytes = map_bytes,
                            .ring = &f->ring,
                            .shard_index = 0,
                            .shard_name = "s0",
                            .boot_id = f->boot_id};
    return ledger_store_open(&cfg, &f->s) == CG_ERR_OK ? 0 : -1;
}

/* A fresh store in a new scratch dir, owning every route (one-shard ring). */
static inline int fx_init(fx *f, uint64_t map_bytes)
{
    const char *names[] = {"s0"};
    memset(f, 0, sizeof(*f));
    cg_clock_set_offset_ms(0);
    snprintf(f->dir, sizeof(f->dir), "/tmp/ledger_test.XXXXXX");
    if (mkdtemp(f->dir) == NULL || cg_ring_init(&f->ring, names, 1) != CG_ERR_OK) {
        return -1;
    }
    return fx_open(f, map_bytes);
}

static inline void fx_fini(fx *f)
{
    char p[128];
    ledger_store_close(f->s);
    f->s = NULL;
    snprintf(p, sizeof(p), "%s/data.mdb", f->dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/lock.mdb", f->dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/reservations.mdb", f->dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/reservations.mdb-lock", f->dir);
    unlink(p);
    rmdir(f->dir);
    cg_ring_fini(&f->ring);
    cg_clock_set_offset_ms(0);
}

/* Apply one request; the reply's status. rep is cleared first. */
static inline int apply1(fx *f, const proto_req *req, proto_rep *rep)
{
    ledger_op op = {.req = req, .rep = rep};
    memset(rep, 0, sizeof(*rep));
    if (ledger_store_apply(f->s, &op, 1) != CG_ERR_OK) {
        return -1;
    }
    return rep->status;
}

static inline proto_limit limit(uint32_t id, int metric, int window, int64_t max, int action)
{
    proto_limit l;
    memset(&l, 0, sizeof(l));
    l.id = id;
    l.metric = (uint8_t)metric;
    l.window.kind = (uint8_t)window;
    l.max = max;
    l.action = (uint8_t)action;
    return l;
}

static inline proto_req reserve_req(const char *route, const char *rid, int64_t lease_ms,
                                    int64_t cost, int64_t tokens)
{
    proto_req r;
    memset(&r, 0, sizeof(r));
    r.op = PROTO_OP_RESERVE;
    snprintf(r.route, sizeof(r.route), "%s", route);
    snprintf(r.u.reserve.request_id, sizeof(r.u.reserve.request_id), "%s", rid);
    r.u.reserve.lease_ms = lease_ms;
    r.u.reserve.worst = (proto_amounts){.cost_nusd = cost, .tokens = tokens, .requests = 1};
    return r;
}

/* A PUT_KEY of key `id` in org "acme" with the given limits. */
static inline proto_req put_key_req(const char *id, const proto_limit *limits, uint8_t n)
{
    proto_req r;
    memset(&r, 0, sizeof(r));
    r.op = PROTO_OP_PUT_KEY;
    snprintf(r.route, sizeof(r.route), "key:%s", id);
    proto_key *k = &r.u.put_key.key;
    snprintf(k->id, sizeof(k->id), "%s", id);
    snprintf(k->org, sizeof(k->org), "acme");
    snprintf(k->name, sizeof(k->name), "test key");
    memset(k->hash, 0xab, sizeof(k->hash));
    k->created_ms = cg_now_ms();
    k->billing_anchor_day = 1;
    k->limit_n = n;
    if (n > 0) { /* limits may be NULL when n is 0 (memcpy must not get NULL) */
        memcpy(k->limits, limits, n * sizeof(*limits));
    }
    return r;
}

/* Apply put_key_req; the reply status. */
static inline int put_key(fx *f, const char *id, const proto_limit *limits, uint8_t n)
{
    proto_req r = put_key_req(id, limits, n);
    proto_rep rep;
    return apply1(f, &r, &rep);
}

static inline proto_req settle_req(const char *route, const char *rid, int64_t cost, int64_t tokens)
{
    proto_req r;
    memset(&r, 0, sizeof(r));
    r.op = PROTO_OP_SETTLE;
    snprintf(r.route, sizeof(r.route), "%s", route);
    snprintf(r.u.settle.request_id, sizeof(r.u.settle.request_id), "%s", rid);
    r.u.settle.actual = (proto_amounts){.cost_nusd = cost, .tokens = tokens, .requests = 1};
    return r;
}

static inline proto_req simple_req(int op, const char *route, const char *rid)
{
    proto_req r;
    memset(&r, 0, sizeof(r));
    r.op = (uint8_t)op;
    snprintf(r.route, sizeof(r.route), "%s", route);
    if (op == PROTO_OP_RELEASE) {
        snprintf(r.u.release.request_id, sizeof(r.u.release.request_id), "%s", rid);
    }
    return r;
}

/* Settle `cost` for a fresh request id through reserve + settle. */
static inline int spend(fx *f, const char *route, const char *rid, int64_t cost)
{
    proto_rep rep;
    proto_req r = reserve_req(route, rid, 60000, cost, 0);
    int st = apply1(f, &r, &rep);
    if (st != CG_ERR_OK) {
        return st;
    }
    proto_req s = settle_req(route, rid, cost, 0);
    return apply1(f, &s, &rep);
}

#endif
