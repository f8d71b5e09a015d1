/*
 * ledger_lease_test.c — partial settles (budget leases, docs/leasing.md):
 * charges against an active reservation, idempotency per charge_seq, lease
 * extension, threshold events as used grows, the final settle returning the
 * rest, and a partial settle after the lease expired (late spend).
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

int main(void)
{
    cg_log_init("ledger_lease_test", CG_LOG_ERROR);
    return CG_TEST_RUN(partial_settle_charges_and_final_returns_rest, partial_settle_extends_lease,
                       partial_settle_fires_events);
}
