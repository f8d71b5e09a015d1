/*
 * ledger_lease_test.c — partial settles (budget leases, docs/leasing.md):
 * charges against an active reservation, idempotency per charge_seq, lease
 * extension, threshold events as used grows, the final settle returning the
 * rest, and a partial settle after the lease expired (late spend). Key leases:
 * the usage records a settle carries are written with its counters, never by a
 * replay, refused off a key route or for another key, and kept when late.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cg_clock.h"
#include "cg_log.h"
#include "cg_ring.h"
#include "cg_test.h"
#include "ledger_store.h"
#include "ledger_test_fx.h"

static proto_limit_state state_of(fx *f, uint32_t limit_id)
{
    proto_limit_state st;
    memset(&st, 0, sizeof(st));
    proto_req r = simple_req(PROTO_OP_GET_KEY, "key:k1", NULL);
    proto_rep rep;
    if (apply1(f, &r, &rep) == CG_ERR_OK) {
        for (uint8_t i = 0; i < rep.u.get_key.state_n; i++) {
            if (rep.u.get_key.states[i].limit_id == limit_id) {
                st = rep.u.get_key.states[i];
            }
        }
    }
    return st;
}

static proto_req partial(const char *rid, int64_t cost, int64_t requests, uint32_t seq,
                         int64_t lease_ms)
{
    proto_req r = settle_req("key:k1", rid, cost, 0);
    r.u.settle.actual.requests = requests;
    r.u.settle.partial = 1;
    r.u.settle.charge_seq = seq;
    r.u.settle.lease_ms = lease_ms;
    return r;
}

CG_TEST(partial_settle_charges_and_final_returns_rest)
{
    fx f;
    proto_rep rep;
    proto_limit lims[2] = {
        limit(1, PROTO_METRIC_COST, CG_WIN_MONTH, 10 * USD, PROTO_ACTION_BLOCK),
        limit(2, PROTO_METRIC_REQUESTS, CG_WIN_LIFETIME, 100, PROTO_ACTION_BLOCK)};
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_key(&f, "k1", lims, 2), CG_ERR_OK);

    /* A lease: a reservation of a slice (5 USD, 20 requests). */
    proto_req r = reserve_req("key:k1", "lease:a:1", 60000, 5 * USD, 0);
    r.u.reserve.worst.requests = 20;
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(state_of(&f, 1).reserved, 5 * USD);

    proto_req p1 = partial("lease:a:1", 2 * USD, 7, 1, 60000);
    CG_CHECK_EQ_INT(apply1(&f, &p1, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.settle.late, 0);
    CG_CHECK_EQ_INT(state_of(&f, 1).used, 2 * USD);
    CG_CHECK_EQ_INT(state_of(&f, 1).reserved, 3 * USD);
    CG_CHECK_EQ_INT(state_of(&f, 2).used, 7);
    CG_CHECK_EQ_INT(state_of(&f, 2).reserved, 13);
    /* The same seq again (a retry), or an older one: no recount. */
    CG_CHECK_EQ_INT(apply1(&f, &p1, &rep), CG_ERR_OK);
    proto_req p0 = partial("lease:a:1", USD, 1, 0, 60000);
    CG_CHECK_EQ_INT(apply1(&f, &p0, &rep), CG_ERR_INVAL); /* seq 0 is not a charge */
    CG_CHECK_EQ_INT(state_of(&f, 1).used, 2 * USD);
    /* The invariant holds with the lease counted: used + reserved <= max. */
    proto_req big = reserve_req("key:k1", "req-x", 60000, 5 * USD + 1, 0);
    CG_CHECK_EQ_INT(apply1(&f, &big, &rep), CG_ERR_BUDGET);

    /* A charge above what is left of the slice: reserved never goes below 0. */
    proto_req p2 = partial("lease:a:1", 4 * USD, 3, 2, 60000);
    CG_CHECK_EQ_INT(apply1(&f, &p2, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(state_of(&f, 1).used, 6 * USD);
    CG_CHECK_EQ_INT(state_of(&f, 1).reserved, 0);
    CG_CHECK_EQ_INT(state_of(&f, 2).reserved, 10);
    CG_CHECK_EQ_INT(apply1(&f, &p1, &rep), CG_ERR_OK); /* older seq: no-op */
    CG_CHECK_EQ_INT(state_of(&f, 1).used, 6 * USD);

    /* The final settle: the last charges, the rest returned; idempotent as ever. */
    proto_req fin = settle_req("key:k1", "lease:a:1", 0, 0);
    fin.u.settle.actual.requests = 2;
    CG_CHECK_EQ_INT(apply1(&f, &fin, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(state_of(&f, 2).used, 12);
    CG_CHECK_EQ_INT(state_of(&f, 2).reserved, 0);
    CG_CHECK_EQ_INT(apply1(&f, &fin, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(state_of(&f, 2).used, 12);
    /* A partial settle after the final one contradicts it. */
    proto_req p3 = partial("lease:a:1", 1, 1, 3, 60000);
    CG_CHECK_EQ_INT(apply1(&f, &p3, &rep), CG_ERR_CONFLICT);
    fx_fini(&f);
}

CG_TEST(partial_settle_extends_lease)
{
    fx f;
    proto_rep rep;
    proto_limit lims[1] = {
        limit(1, PROTO_METRIC_COST, CG_WIN_LIFETIME, 10 * USD, PROTO_ACTION_BLOCK)};
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_key(&f, "k1", lims, 1), CG_ERR_OK);
    proto_req r = reserve_req("key:k1", "lease:b:1", 1000, 5 * USD, 0);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    cg_clock_set_offset_ms(800);
    proto_req p1 = partial("lease:b:1", USD, 1, 1, 1000); /* extends to 1800 */
    CG_CHECK_EQ_INT(apply1(&f, &p1, &rep), CG_ERR_OK);
    cg_clock_set_offset_ms(1500);
    CG_CHECK(ledger_store_apply(f.s, NULL, 0) == CG_ERR_OK); /* sweep */
    CG_CHECK_EQ_INT(state_of(&f, 1).reserved, 4 * USD);      /* still held */
    cg_clock_set_offset_ms(2000);
    CG_CHECK(ledger_store_apply(f.s, NULL, 0) == CG_ERR_OK);
    CG_CHECK_EQ_INT(state_of(&f, 1).reserved, 0); /* expired: returned */
    CG_CHECK_EQ_INT(state_of(&f, 1).used, USD);
    /* A charge after expiry still counts as spend (late); its retry does not recount. */
    proto_req p2 = partial("lease:b:1", 2 * USD, 1, 2, 1000);
    CG_CHECK_EQ_INT(apply1(&f, &p2, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.settle.late, 1);
    CG_CHECK_EQ_INT(apply1(&f, &p2, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(state_of(&f, 1).used, 3 * USD);
    CG_CHECK_EQ_INT(state_of(&f, 1).reserved, 0);
    /* The final settle of an expired lease: late spend of the rest. */
    proto_req fin = settle_req("key:k1", "lease:b:1", USD, 0);
    CG_CHECK_EQ_INT(apply1(&f, &fin, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.settle.late, 1);
    CG_CHECK_EQ_INT(state_of(&f, 1).used, 4 * USD);
    fx_fini(&f);
}

CG_TEST(partial_settle_fires_events)
{
    fx f;
    size_t n = 0;
    proto_rep rep;
    proto_limit lims[1] = {limit(7, PROTO_METRIC_COST, CG_WIN_MONTH, 10 * USD, PROTO_ACTION_BLOCK)};
    lims[0].warn_n = 1;
    lims[0].warn_bp[0] = 5000;
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_key(&f, "k1", lims, 1), CG_ERR_OK);
    proto_req r = reserve_req("key:k1", "lease:c:1", 60000, 10 * USD, 0);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    proto_req p1 = partial("lease:c:1", 4 * USD, 1, 1, 60000);
    CG_CHECK_EQ_INT(apply1(&f, &p1, &rep), CG_ERR_OK);
    ledger_store_new_events(f.s, &n);
    CG_CHECK_EQ_INT(n, 0);
    proto_req p2 = partial("lease:c:1", 2 * USD, 1, 2, 60000);
    CG_CHECK_EQ_INT(apply1(&f, &p2, &rep), CG_ERR_OK);
    const proto_event *ev = ledger_store_new_events(f.s, &n);
    CG_CHECK_EQ_INT(n, 1);
    CG_CHECK_EQ_INT(ev[0].type, PROTO_EVT_SPEND_WARNING);
    CG_CHECK_EQ_INT(ev[0].used, 6 * USD);
    proto_req p3 = partial("lease:c:1", 4 * USD, 1, 3, 60000);
    CG_CHECK_EQ_INT(apply1(&f, &p3, &rep), CG_ERR_OK);
    ev = ledger_store_new_events(f.s, &n);
    CG_CHECK_EQ_INT(n, 1);
    CG_CHECK_EQ_INT(ev[0].type, PROTO_EVT_SPEND_REACHED);
    CG_CHECK_EQ_INT(apply1(&f, &p3, &rep), CG_ERR_OK); /* retry: nothing again */
    ledger_store_new_events(f.s, &n);
    CG_CHECK_EQ_INT(n, 0);
    fx_fini(&f);
}

/* ---- usage records on key leases ---- */

#define CENT (USD / 100)

/* The usage record of request rid on key `key` of org acme: cost cents, 10 prompt tokens. */
static proto_usage rec(const char *key, const char *rid, int64_t cents)
{
    proto_usage u;
    memset(&u, 0, sizeof(u));
    snprintf(u.org, sizeof(u.org), "acme");
    snprintf(u.key_id, sizeof(u.key_id), "%s", key);
    snprintf(u.model, sizeof(u.model), "gpt-test");
    snprintf(u.provider, sizeof(u.provider), "openai");
    snprintf(u.request_id, sizeof(u.request_id), "%s", rid);
    u.prompt_tokens = 10;
    u.completion_tokens = 5;
    u.cost_nusd = cents * CENT;
    u.status = 200;
    return u; /* ts_ms 0: the shard stamps it */
}

/* A settle of lease `lease` on `route` carrying n records and charging exactly their sums
 * (cost, tokens, one request each); partial with seq when seq > 0, else the final one. */
static proto_req lease_settle(const char *route, const char *lease, proto_usage *recs, uint32_t n,
                              uint32_t seq)
{
    proto_req r = settle_req(route, lease, 0, 0);
    r.u.settle.actual.requests = n;
    for (uint32_t i = 0; i < n; i++) {
        r.u.settle.actual.cost_nusd += recs[i].cost_nusd;
        r.u.settle.actual.tokens += recs[i].prompt_tokens + recs[i].completion_tokens;
    }
    r.u.settle.rec_n = n;
    r.u.settle.recs = n > 0 ? recs : NULL;
    if (seq > 0) {
        r.u.settle.partial = 1;
        r.u.settle.charge_seq = seq;
        r.u.settle.lease_ms = 60000;
    }
    return r;
}

/* Org acme's usage log, oldest first (up to 100 records); the reply owns them. */
static uint32_t usage_log(fx *f, proto_rep *rep)
{
    proto_req r = simple_req(PROTO_OP_USAGE_RECORDS, "", NULL);
    snprintf(r.u.usage_records.f.org, sizeof(r.u.usage_records.f.org), "acme");
    r.u.usage_records.limit = 100;
    ledger_rep_clear(rep); /* apply1 only zeroes it: free the last reply's records */
    return apply1(f, &r, rep) == CG_ERR_OK ? rep->u.usage_records.n : UINT32_MAX;
}

/* Whether org acme's usage log holds a record of request rid (with its cost). */
static int logged(fx *f, const char *rid, int64_t cents)
{
    proto_rep rep = {0};
    int found = 0;
    uint32_t n = usage_log(f, &rep);
    for (uint32_t i = 0; i < n && n != UINT32_MAX; i++) {
        const proto_usage *u = &rep.u.usage_records.records[i];
        found |= strcmp(u->request_id, rid) == 0 && u->cost_nusd == cents * CENT && u->ts_ms > 0;
    }
    ledger_rep_clear(&rep);
    return found;
}

static uint32_t log_n(fx *f)
{
    proto_rep rep = {0};
    uint32_t n = usage_log(f, &rep);
    ledger_rep_clear(&rep);
    return n;
}

/* USAGE_QUERY totals of org acme (all time). */
static proto_usage_totals totals(fx *f)
{
    proto_usage_totals t;
    memset(&t, 0, sizeof(t));
    proto_req r = simple_req(PROTO_OP_USAGE_QUERY, "", NULL);
    snprintf(r.u.usage_query.org, sizeof(r.u.usage_query.org), "acme");
    proto_rep rep;
    if (apply1(f, &r, &rep) == CG_ERR_OK) {
        t = rep.u.usage.totals;
    }
    return t;
}

/* Key k1: 10 USD a month, 100 requests ever; a lease of 5 USD / 20 requests on it. */
static void key_lease(fx *f, const char *lease, int64_t lease_ms)
{
    proto_rep rep;
    proto_limit lims[2] = {
        limit(1, PROTO_METRIC_COST, CG_WIN_MONTH, 10 * USD, PROTO_ACTION_BLOCK),
        limit(2, PROTO_METRIC_REQUESTS, CG_WIN_LIFETIME, 100, PROTO_ACTION_BLOCK)};
    CG_CHECK(fx_init(f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_key(f, "k1", lims, 2), CG_ERR_OK);
    proto_req r = reserve_req("key:k1", lease, lease_ms, 5 * USD, 0);
    r.u.reserve.worst.requests = 20;
    CG_CHECK_EQ_INT(apply1(f, &r, &rep), CG_ERR_OK);
}

CG_TEST(key_lease_settles_write_usage_records)
{
    fx f;
    proto_rep rep;
    key_lease(&f, "lease:k:1", 60000);
    proto_usage b1[3] = {rec("k1", "q1", 10), rec("k1", "q2", 20), rec("k1", "q3", 30)};
    proto_req p1 = lease_settle("key:k1", "lease:k:1", b1, 3, 1);
    CG_CHECK_EQ_INT(apply1(&f, &p1, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.settle.late, 0);
    CG_CHECK_EQ_INT(log_n(&f), 3);
    CG_CHECK(logged(&f, "q1", 10) && logged(&f, "q2", 20) && logged(&f, "q3", 30));
    CG_CHECK_EQ_INT(state_of(&f, 1).used, 60 * CENT);
    CG_CHECK_EQ_INT(state_of(&f, 2).used, 3);

    /* A replay of seq 1 writes nothing — not even a record it did not carry before. */
    CG_CHECK_EQ_INT(apply1(&f, &p1, &rep), CG_ERR_OK);
    proto_usage other[1] = {rec("k1", "q-replayed", 5)};
    proto_req p1b = lease_settle("key:k1", "lease:k:1", other, 1, 1);
    CG_CHECK_EQ_INT(apply1(&f, &p1b, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(log_n(&f), 3);
    CG_CHECK(!logged(&f, "q-replayed", 5));
    CG_CHECK_EQ_INT(state_of(&f, 1).used, 60 * CENT);
    CG_CHECK_EQ_INT(state_of(&f, 2).used, 3);

    /* Seq 2 with two records, then the final settle with one. */
    proto_usage b2[2] = {rec("k1", "q4", 40), rec("k1", "q5", 50)};
    proto_req p2 = lease_settle("key:k1", "lease:k:1", b2, 2, 2);
    CG_CHECK_EQ_INT(apply1(&f, &p2, &rep), CG_ERR_OK);
    proto_usage b3[1] = {rec("k1", "q6", 60)};
    proto_req fin = lease_settle("key:k1", "lease:k:1", b3, 1, 0);
    CG_CHECK_EQ_INT(apply1(&f, &fin, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(log_n(&f), 6);
    CG_CHECK(logged(&f, "q4", 40) && logged(&f, "q5", 50) && logged(&f, "q6", 60));
    proto_limit_state cost = state_of(&f, 1), reqs = state_of(&f, 2);
    CG_CHECK_EQ_INT(cost.reserved, 0);
    CG_CHECK_EQ_INT(reqs.reserved, 0);
    /* The usage log and the counters agree. */
    proto_usage_totals t = totals(&f);
    CG_CHECK_EQ_INT(t.cost_nusd, cost.used);
    CG_CHECK_EQ_INT(t.requests, reqs.used);
    CG_CHECK_EQ_INT(t.requests, 6);
    CG_CHECK_EQ_INT(t.prompt_tokens, 60);

    /* A retry of the final settle (same amounts) is answered without writing again. */
    proto_usage b3b[1] = {rec("k1", "q-final-retry", 60)};
    proto_req fin2 = lease_settle("key:k1", "lease:k:1", b3b, 1, 0);
    CG_CHECK_EQ_INT(apply1(&f, &fin2, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(log_n(&f), 6);
    CG_CHECK_EQ_INT(state_of(&f, 2).used, 6);
    fx_fini(&f);
}

CG_TEST(key_lease_records_refused_whole)
{
    fx f;
    proto_rep rep;
    key_lease(&f, "lease:k:2", 60000);
    /* One record of another key: the whole settle is refused, nothing written. */
    proto_usage mixed[2] = {rec("k1", "q1", 10), rec("k2", "q2", 20)};
    proto_req bad = lease_settle("key:k1", "lease:k:2", mixed, 2, 1);
    CG_CHECK_EQ_INT(apply1(&f, &bad, &rep), CG_ERR_INVAL);
    bad = lease_settle("key:k1", "lease:k:2", mixed, 2, 0); /* final: the same */
    CG_CHECK_EQ_INT(apply1(&f, &bad, &rep), CG_ERR_INVAL);
    /* A record without a request id. */
    proto_usage anon[1] = {rec("k1", "", 10)};
    bad = lease_settle("key:k1", "lease:k:2", anon, 1, 1);
    CG_CHECK_EQ_INT(apply1(&f, &bad, &rep), CG_ERR_INVAL);
    CG_CHECK_EQ_INT(log_n(&f), 0);
    CG_CHECK_EQ_INT(state_of(&f, 1).used, 0);
    CG_CHECK_EQ_INT(state_of(&f, 1).reserved, 5 * USD);
    /* The refused seq was not consumed: the good batch with it applies. */
    proto_req good = lease_settle("key:k1", "lease:k:2", mixed, 1, 1);
    CG_CHECK_EQ_INT(apply1(&f, &good, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(log_n(&f), 1);
    CG_CHECK_EQ_INT(state_of(&f, 1).used, 10 * CENT);

    /* Records on an org route: refused; the same settle without them applies. */
    proto_limit ol = limit(1, PROTO_METRIC_COST, CG_WIN_MONTH, 100 * USD, PROTO_ACTION_BLOCK);
    proto_req o;
    memset(&o, 0, sizeof(o));
    o.op = PROTO_OP_PUT_ORG;
    snprintf(o.route, sizeof(o.route), "org:acme");
    snprintf(o.u.put_org.org.id, sizeof(o.u.put_org.org.id), "acme");
    o.u.put_org.org.billing_anchor_day = 1;
    o.u.put_org.org.limit_n = 1;
    o.u.put_org.org.limits[0] = ol;
    CG_CHECK_EQ_INT(apply1(&f, &o, &rep), CG_ERR_OK);
    proto_req ores = reserve_req("org:acme", "lease:o:1", 60000, 5 * USD, 0);
    CG_CHECK_EQ_INT(apply1(&f, &ores, &rep), CG_ERR_OK);
    proto_usage orec[1] = {rec("k1", "q9", 70)};
    proto_req op = lease_settle("org:acme", "lease:o:1", orec, 1, 1);
    CG_CHECK_EQ_INT(apply1(&f, &op, &rep), CG_ERR_INVAL);
    CG_CHECK_EQ_INT(log_n(&f), 1);
    proto_req get = simple_req(PROTO_OP_GET_ORG_STATE, "org:acme", NULL);
    CG_CHECK_EQ_INT(apply1(&f, &get, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.get_org_state.states[0].used, 0);
    op.u.settle.rec_n = 0;
    op.u.settle.recs = NULL;
    CG_CHECK_EQ_INT(apply1(&f, &op, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(apply1(&f, &get, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.get_org_state.states[0].used, 70 * CENT);
    CG_CHECK_EQ_INT(log_n(&f), 1);
    fx_fini(&f);
}

CG_TEST(key_lease_late_settles_keep_records)
{
    fx f;
    proto_rep rep;
    key_lease(&f, "lease:k:3", 1000);
    cg_clock_set_offset_ms(2000);
    CG_CHECK(ledger_store_apply(f.s, NULL, 0) == CG_ERR_OK); /* sweep: the lease expires */
    CG_CHECK_EQ_INT(state_of(&f, 1).reserved, 0);
    proto_usage b1[2] = {rec("k1", "q1", 10), rec("k1", "q2", 20)};
    proto_req p1 = lease_settle("key:k1", "lease:k:3", b1, 2, 1);
    CG_CHECK_EQ_INT(apply1(&f, &p1, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.settle.late, 1);
    CG_CHECK_EQ_INT(log_n(&f), 2);
    CG_CHECK(logged(&f, "q1", 10) && logged(&f, "q2", 20));
    /* Its retry: late again, nothing written twice. */
    CG_CHECK_EQ_INT(apply1(&f, &p1, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.settle.late, 1);
    CG_CHECK_EQ_INT(log_n(&f), 2);
    CG_CHECK_EQ_INT(state_of(&f, 1).used, 30 * CENT);
    /* The late final settle writes its record too. */
    proto_usage b2[1] = {rec("k1", "q3", 30)};
    proto_req fin = lease_settle("key:k1", "lease:k:3", b2, 1, 0);
    CG_CHECK_EQ_INT(apply1(&f, &fin, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.settle.late, 1);
    CG_CHECK_EQ_INT(log_n(&f), 3);
    CG_CHECK(logged(&f, "q3", 30));
    /* A partial settle of a lease the shard never saw: late spend, its records written. */
    proto_usage b3[1] = {rec("k1", "q4", 40)};
    proto_req unk = lease_settle("key:k1", "lease:k:unknown", b3, 1, 1);
    CG_CHECK_EQ_INT(apply1(&f, &unk, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.settle.late, 1);
    CG_CHECK_EQ_INT(apply1(&f, &unk, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(log_n(&f), 4);
    proto_usage_totals t = totals(&f);
    CG_CHECK_EQ_INT(t.cost_nusd, state_of(&f, 1).used);
    CG_CHECK_EQ_INT(t.requests, state_of(&f, 2).used);
    fx_fini(&f);
}

/* What the shard applies is what came off the wire: a settle encoded, decoded, applied. */
CG_TEST(key_lease_records_from_the_wire)
{
    fx f;
    proto_rep rep;
    key_lease(&f, "lease:k:4", 60000);
    proto_usage b[2] = {rec("k1", "w1", 10), rec("k1", "w2", 20)};
    int64_t stamped = cg_now_ms() - DAY_MS;
    b[1].ts_ms = stamped; /* stamped by the gateway: kept */
    proto_req in = lease_settle("key:k1", "lease:k:4", b, 2, 1);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    CG_CHECK_EQ_INT(proto_req_encode(&in, 1, &sb), CG_ERR_OK);
    proto_req *dec = NULL;
    uint32_t n = 0;
    CG_CHECK_EQ_INT(proto_req_decode(sb.data, sb.size, &dec, &n), CG_ERR_OK);
    CG_CHECK_EQ_INT(dec[0].u.settle.rec_n, 2);
    CG_CHECK_EQ_INT(apply1(&f, &dec[0], &rep), CG_ERR_OK);
    proto_req_free(dec, n);
    msgpack_sbuffer_destroy(&sb);
    proto_rep log = {0};
    CG_CHECK_EQ_INT(usage_log(&f, &log), 2);
    /* Log order is (ts, request id): w2's stamp (a day ago) sorts before the shard's now. */
    CG_CHECK_EQ_STR(log.u.usage_records.records[0].request_id, "w2");
    CG_CHECK_EQ_INT(log.u.usage_records.records[0].ts_ms, stamped);
    CG_CHECK_EQ_STR(log.u.usage_records.records[1].request_id, "w1");
    CG_CHECK_EQ_STR(log.u.usage_records.records[1].model, "gpt-test");
    CG_CHECK_EQ_INT(log.u.usage_records.records[1].cost_nusd, 10 * CENT);
    ledger_rep_clear(&log);
    CG_CHECK_EQ_INT(state_of(&f, 1).used, 30 * CENT);
    fx_fini(&f);
}

/* A lease outliving its sliding window: every partial charge counts in the window from the
 * time it arrives, however old the lease. */
CG_TEST(partial_settle_counts_in_sliding_window_of_now)
{
    fx f;
    proto_rep rep;
    proto_limit lims[1] = {
        limit(1, PROTO_METRIC_REQUESTS, CG_WIN_SLIDING, 100, PROTO_ACTION_BLOCK)};
    lims[0].window.sliding_s = 60;
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_key(&f, "k1", lims, 1), CG_ERR_OK);
    proto_req r = reserve_req("key:k1", "lease:s:1", 120000, 0, 0);
    r.u.reserve.worst.requests = 40;
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    cg_clock_set_offset_ms(50000);
    proto_req p1 = partial("lease:s:1", 0, 10, 1, 120000);
    CG_CHECK_EQ_INT(apply1(&f, &p1, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(state_of(&f, 1).used, 10);
    CG_CHECK_EQ_INT(state_of(&f, 1).reserved, 30);
    cg_clock_set_offset_ms(90000); /* the lease began 90 s ago, the charge 40 s ago */
    CG_CHECK_EQ_INT(state_of(&f, 1).used, 10);
    proto_req p2 = partial("lease:s:1", 0, 25, 2, 120000);
    CG_CHECK_EQ_INT(apply1(&f, &p2, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(state_of(&f, 1).used, 35);
    CG_CHECK_EQ_INT(state_of(&f, 1).reserved, 5);
    /* 100 - 35 used - 5 reserved: 60 more fit, 61 do not. */
    proto_req no = reserve_req("key:k1", "req-s", 60000, 0, 0);
    no.u.reserve.worst.requests = 61;
    CG_CHECK_EQ_INT(apply1(&f, &no, &rep), CG_ERR_BUDGET);
    cg_clock_set_offset_ms(111000); /* the first charge (at 50 s) has left the window */
    CG_CHECK_EQ_INT(state_of(&f, 1).used, 25);
    cg_clock_set_offset_ms(0);
    fx_fini(&f);
}

int main(void)
{
    cg_log_init("ledger_lease_test", CG_LOG_ERROR);
    return CG_TEST_RUN(partial_settle_charges_and_final_returns_rest, partial_settle_extends_lease,
                       partial_settle_fires_events, key_lease_settles_write_usage_records,
                       key_lease_records_refused_whole, key_lease_late_settles_keep_records,
                       key_lease_records_from_the_wire,
                       partial_settle_counts_in_sliding_window_of_now);
}
