/*
 * ledger_store_test.c — the ledger store against real LMDB files in a
 * scratch directory: reservation arithmetic, refusals, idempotency and
 * conflicts, lease expiry and late settles, threshold events across periods,
 * ownership, persistence across reopen, and a full map.
 *
 * Time is moved with cg_clock_set_offset_ms; every test starts at offset 0.
 */
#include <inttypes.h>
#include <openssl/sha.h>
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

/* used and reserved of limit_id in the current period, via GET_KEY. */
static int key_state(fx *f, const char *route, uint32_t limit_id, proto_limit_state *out)
{
    proto_req r = simple_req(PROTO_OP_GET_KEY, route, NULL);
    proto_rep rep;
    if (apply1(f, &r, &rep) != CG_ERR_OK) {
        return -1;
    }
    for (uint8_t i = 0; i < rep.u.get_key.state_n; i++) {
        if (rep.u.get_key.states[i].limit_id == limit_id) {
            *out = rep.u.get_key.states[i];
            return 0;
        }
    }
    return -1;
}

static void expected_event_id(char out[PROTO_EVENT_ID_MAX + 1], const char *route, uint32_t lid,
                              int64_t period_index, unsigned bp)
{
    char src[256];
    unsigned char md[SHA256_DIGEST_LENGTH];
    int n =
        snprintf(src, sizeof(src), "%s|%" PRIu32 "|%" PRId64 "|%u", route, lid, period_index, bp);
    SHA256((const unsigned char *)src, (size_t)n, md);
    snprintf(out, 5, "evt_");
    for (size_t i = 0; i < 16; i++) {
        snprintf(out + 4 + 2 * i, 3, "%02x", md[i]);
    }
}

/* ---- tests ---- */

CG_TEST(reserve_settle_release_arithmetic)
{
    fx f;
    proto_rep rep;
    proto_limit_state st;
    proto_limit lims[2] = {limit(1, PROTO_METRIC_COST, CG_WIN_MONTH, 10 * USD, PROTO_ACTION_BLOCK),
                           limit(2, PROTO_METRIC_TOKENS, CG_WIN_LIFETIME, 0, PROTO_ACTION_BLOCK)};
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_key(&f, "k1", lims, 2), CG_ERR_OK);

    proto_req r = reserve_req("key:k1", "req-1", 60000, 3 * USD, 1000);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.reserve.state_n, 2);
    CG_CHECK_EQ_INT(rep.u.reserve.states[0].reserved, 3 * USD);
    CG_CHECK_EQ_INT(rep.u.reserve.states[1].reserved, 1000);
    CG_CHECK(rep.u.reserve.states[0].period_end_ms > cg_now_ms());
    CG_CHECK_EQ_INT(rep.u.reserve.states[1].period_end_ms, 0);

    r = settle_req("key:k1", "req-1", 2 * USD, 600);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.settle.late, 0);
    CG_CHECK(key_state(&f, "key:k1", 1, &st) == 0);
    CG_CHECK_EQ_INT(st.used, 2 * USD);
    CG_CHECK_EQ_INT(st.reserved, 0);
    CG_CHECK(key_state(&f, "key:k1", 2, &st) == 0);
    CG_CHECK_EQ_INT(st.used, 600);

    r = reserve_req("key:k1", "req-2", 60000, 4 * USD, 10);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    r = simple_req(PROTO_OP_RELEASE, "key:k1", "req-2");
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    CG_CHECK(key_state(&f, "key:k1", 1, &st) == 0);
    CG_CHECK_EQ_INT(st.used, 2 * USD);
    CG_CHECK_EQ_INT(st.reserved, 0);
    /* Released twice, or never reserved: nothing held, OK. */
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    r = simple_req(PROTO_OP_RELEASE, "key:k1", "never");
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    /* Settling a released reservation is a contradiction. */
    r = settle_req("key:k1", "req-2", 1, 1);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_CONFLICT);
    fx_fini(&f);
}

CG_TEST(budget_refusal_fields)
{
    fx f;
    proto_rep rep;
    proto_limit lims[2] = {limit(1, PROTO_METRIC_COST, CG_WIN_MONTH, 10 * USD, PROTO_ACTION_BLOCK),
                           limit(2, PROTO_METRIC_TOKENS, CG_WIN_DAY, 100, PROTO_ACTION_WARN)};
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_key(&f, "k1", lims, 2), CG_ERR_OK);

    /* A warn limit never blocks, but tracks the reservation. */
    proto_req r = reserve_req("key:k1", "a", 60000, 6 * USD, 500);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.reserve.states[1].reserved, 500);

    r = reserve_req("key:k1", "b", 60000, 5 * USD, 1);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_BUDGET);
    const proto_refusal *rf = &rep.u.reserve.refusal;
    CG_CHECK_EQ_INT(rf->limit_id, 1);
    CG_CHECK_EQ_INT(rf->metric, PROTO_METRIC_COST);
    CG_CHECK_EQ_INT(rf->window.kind, CG_WIN_MONTH);
    CG_CHECK_EQ_INT(rf->max, 10 * USD);
    CG_CHECK_EQ_INT(rf->used, 0);
    CG_CHECK_EQ_INT(rf->reserved, 6 * USD);
    cg_period p;
    CG_CHECK(cg_period_of(lims[0].window, 1, cg_now_ms(), &p) == CG_ERR_OK);
    CG_CHECK_EQ_INT(rf->resets_at_ms, p.end_ms);
    CG_CHECK_EQ_INT(rep.u.reserve.state_n, 2);
    CG_CHECK_EQ_INT(rep.u.reserve.states[0].reserved, 6 * USD); /* unchanged by the refusal */

    /* Exactly filling the cap is allowed (used + reserved + worst <= max). */
    r = reserve_req("key:k1", "c", 60000, 4 * USD, 1);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    r = reserve_req("key:k1", "d", 60000, 1, 0);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_BUDGET);
    fx_fini(&f);
}

CG_TEST(settle_idempotent_and_conflicts)
{
    fx f;
    proto_rep rep;
    proto_limit_state st;
    proto_limit lims[1] = {limit(1, PROTO_METRIC_COST, CG_WIN_MONTH, 10 * USD, PROTO_ACTION_BLOCK)};
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_key(&f, "k1", lims, 1), CG_ERR_OK);

    proto_req r = reserve_req("key:k1", "x", 60000, 2 * USD, 10);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    /* A retried reserve of a held reservation is OK and reserves nothing more. */
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.reserve.states[0].reserved, 2 * USD);

    proto_req s = settle_req("key:k1", "x", USD, 5);
    CG_CHECK_EQ_INT(apply1(&f, &s, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(apply1(&f, &s, &rep), CG_ERR_OK); /* retry: no double count */
    CG_CHECK(key_state(&f, "key:k1", 1, &st) == 0);
    CG_CHECK_EQ_INT(st.used, USD);
    CG_CHECK_EQ_INT(st.reserved, 0);

    proto_req s2 = settle_req("key:k1", "x", USD + 1, 5);
    CG_CHECK_EQ_INT(apply1(&f, &s2, &rep), CG_ERR_CONFLICT);
    proto_req rel = simple_req(PROTO_OP_RELEASE, "key:k1", "x");
    CG_CHECK_EQ_INT(apply1(&f, &rel, &rep), CG_ERR_CONFLICT);
    /* The id of a finished reservation cannot be reserved again. */
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_CONFLICT);
    CG_CHECK(key_state(&f, "key:k1", 1, &st) == 0);
    CG_CHECK_EQ_INT(st.used, USD);
    fx_fini(&f);
}

/* Reserve-only batches write only the reservation env (no sync at all, issue 4); any
 * batch holding a settle or a definition write is fully durable (SPEC §6: a confirmed
 * settle is durable). */
CG_TEST(only_settles_and_definitions_pay_the_full_sync)
{
    fx f;
    proto_rep rep;
    ledger_store_stats a, b;
    proto_limit lims[1] = {
        limit(1, PROTO_METRIC_COST, CG_WIN_LIFETIME, 10 * USD, PROTO_ACTION_BLOCK)};
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    ledger_store_stats_get(f.s, &a);
    CG_CHECK_EQ_INT(put_key(&f, "k1", lims, 1), CG_ERR_OK);
    ledger_store_stats_get(f.s, &b);
    CG_CHECK_EQ_INT(b.metasync_skipped, a.metasync_skipped); /* definition: durable */

    proto_req r = reserve_req("key:k1", "r1", 1000, USD, 10);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    ledger_store_stats_get(f.s, &a);
    CG_CHECK_EQ_INT(a.metasync_skipped, b.metasync_skipped); /* reserve: no durable commit */
    CG_CHECK_EQ_INT(a.nosync_commits, b.nosync_commits + 1); /* ... only the reservation env */

    r = settle_req("key:k1", "r1", USD / 2, 5);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    ledger_store_stats_get(f.s, &b);
    CG_CHECK_EQ_INT(b.metasync_skipped, a.metasync_skipped); /* settle: durable */
    CG_CHECK_EQ_INT(b.nosync_commits, a.nosync_commits);

    /* A batch mixing a reserve with a settle is durable as a whole. */
    proto_req rs[2] = {reserve_req("key:k1", "r2", 1000, USD, 10),
                       settle_req("key:k1", "r2", USD / 4, 3)};
    proto_rep reps[2];
    ledger_op ops[2] = {{.req = &rs[0], .rep = &reps[0]}, {.req = &rs[1], .rep = &reps[1]}};
    CG_CHECK_EQ_INT(ledger_store_apply(f.s, ops, 2), CG_ERR_OK);
    ledger_store_stats_get(f.s, &a);
    CG_CHECK_EQ_INT(a.metasync_skipped, b.metasync_skipped);
    CG_CHECK_EQ_INT(a.nosync_commits, b.nosync_commits);

    /* A release is reservation-env only too. */
    r = reserve_req("key:k1", "r3", 1000, USD, 10);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    ledger_store_stats_get(f.s, &b);
    r = simple_req(PROTO_OP_RELEASE, "key:k1", "r3");
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    ledger_store_stats_get(f.s, &a);
    CG_CHECK_EQ_INT(a.nosync_commits, b.nosync_commits + 1);
    CG_CHECK_EQ_INT(a.batches, b.batches + 1);

    /* And the settled usage is there after a reopen. */
    ledger_store_close(f.s);
    f.s = NULL;
    CG_CHECK(fx_open(&f, 1 << 24) == 0);
    proto_limit_state st;
    CG_CHECK(key_state(&f, "key:k1", 1, &st) == 0);
    CG_CHECK_EQ_INT(st.used, USD / 2 + USD / 4);
    fx_fini(&f);
}

CG_TEST(lease_expiry_and_late_settle)
{
    fx f;
    proto_rep rep;
    proto_limit_state st;
    ledger_store_stats stats;
    proto_limit lims[1] = {
        limit(1, PROTO_METRIC_COST, CG_WIN_LIFETIME, 10 * USD, PROTO_ACTION_BLOCK)};
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_key(&f, "k1", lims, 1), CG_ERR_OK);

    proto_req r = reserve_req("key:k1", "slow", 1000, 8 * USD, 10);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    r = reserve_req("key:k1", "other", 1000, 3 * USD, 10);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_BUDGET);

    cg_clock_set_offset_ms(1500);
    CG_CHECK(ledger_store_apply(f.s, NULL, 0) == CG_ERR_OK); /* a sweep-only batch */
    CG_CHECK(key_state(&f, "key:k1", 1, &st) == 0);
    CG_CHECK_EQ_INT(st.reserved, 0);
    ledger_store_stats_get(f.s, &stats);
    CG_CHECK_EQ_INT(stats.leases_expired, 1);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK); /* the budget came back */

    /* The stalled request settles after its lease: still spend, reported late. */
    proto_req s = settle_req("key:k1", "slow", 5 * USD, 10);
    CG_CHECK_EQ_INT(apply1(&f, &s, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.settle.late, 1);
    CG_CHECK_EQ_INT(apply1(&f, &s, &rep), CG_ERR_OK); /* its retry: same answer, no recount */
    CG_CHECK_EQ_INT(rep.u.settle.late, 1);
    CG_CHECK(key_state(&f, "key:k1", 1, &st) == 0);
    CG_CHECK_EQ_INT(st.used, 5 * USD);
    CG_CHECK_EQ_INT(st.reserved, 3 * USD);
    ledger_store_stats_get(f.s, &stats);
    CG_CHECK_EQ_INT(stats.late_settles, 1);

    /* Release of an expired reservation: nothing held, OK. */
    r = reserve_req("key:k1", "gone", 100, USD, 1);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    cg_clock_set_offset_ms(3000);
    proto_req rel = simple_req(PROTO_OP_RELEASE, "key:k1", "gone");
    CG_CHECK_EQ_INT(apply1(&f, &rel, &rep), CG_ERR_OK);
    fx_fini(&f);
}

CG_TEST(late_settle_of_unknown_id_and_gc)
{
    fx f;
    proto_rep rep;
    proto_limit_state st;
    ledger_store_stats stats;
    proto_limit lims[1] = {limit(1, PROTO_METRIC_TOKENS, CG_WIN_LIFETIME, 0, PROTO_ACTION_BLOCK)};
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_key(&f, "k1", lims, 1), CG_ERR_OK);

    proto_req s = settle_req("key:k1", "ghost", 0, 70);
    CG_CHECK_EQ_INT(apply1(&f, &s, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.settle.late, 1);
    CG_CHECK_EQ_INT(apply1(&f, &s, &rep), CG_ERR_OK); /* remembered: not counted twice */
    CG_CHECK(key_state(&f, "key:k1", 1, &st) == 0);
    CG_CHECK_EQ_INT(st.used, 70);

    /* After the dedup window the record is gone; the id would count as new. */
    cg_clock_set_offset_ms(LEDGER_DEDUP_MS + 1000);
    CG_CHECK(ledger_store_apply(f.s, NULL, 0) == CG_ERR_OK);
    ledger_store_stats_get(f.s, &stats);
    CG_CHECK_EQ_INT(stats.gc_deleted, 1);
    CG_CHECK_EQ_INT(apply1(&f, &s, &rep), CG_ERR_OK);
    CG_CHECK(key_state(&f, "key:k1", 1, &st) == 0);
    CG_CHECK_EQ_INT(st.used, 140);

    /* A settle on a scope that does not exist is refused. */
    s = settle_req("key:nobody", "z", 1, 1);
    CG_CHECK_EQ_INT(apply1(&f, &s, &rep), CG_ERR_NOTFOUND);
    fx_fini(&f);
}

static int events_since(fx *f, uint64_t after, uint32_t max_n, proto_rep *rep)
{
    proto_req r = simple_req(PROTO_OP_EVENTS_SINCE, "", NULL);
    r.u.events_since.after_seq = after;
    r.u.events_since.max_n = max_n;
    return apply1(f, &r, rep);
}

CG_TEST(thresholds_fire_once_per_period)
{
    fx f;
    size_t n = 0;
    char id[PROTO_EVENT_ID_MAX + 1];
    proto_limit lims[1] = {limit(7, PROTO_METRIC_COST, CG_WIN_MONTH, 10 * USD, PROTO_ACTION_WARN)};
    lims[0].warn_n = 2;
    lims[0].warn_bp[0] = 5000;
    lims[0].warn_bp[1] = 8000;
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_key(&f, "k1", lims, 1), CG_ERR_OK);
    cg_period p;
    CG_CHECK(cg_period_of(lims[0].window, 1, cg_now_ms(), &p) == CG_ERR_OK);

    CG_CHECK_EQ_INT(spend(&f, "key:k1", "r1", 4 * USD), CG_ERR_OK);
    CG_CHECK(ledger_store_new_events(f.s, &n) != NULL && n == 0);
    CG_CHECK_EQ_INT(spend(&f, "key:k1", "r2", 2 * USD), CG_ERR_OK); /* 60%: the 50% warning */
    const proto_event *ev = ledger_store_new_events(f.s, &n);
    CG_CHECK_EQ_INT(n, 1);
    CG_CHECK_EQ_INT(ev[0].seq, 1);
    CG_CHECK_EQ_INT(ev[0].type, PROTO_EVT_SPEND_WARNING);
    CG_CHECK_EQ_INT(ev[0].threshold_bp, 5000);
    CG_CHECK_EQ_INT(ev[0].used, 6 * USD);
    CG_CHECK_EQ_INT(ev[0].max, 10 * USD);
    CG_CHECK_EQ_INT(ev[0].scope, PROTO_SCOPE_KEY);
    CG_CHECK_EQ_STR(ev[0].scope_id, "k1");
    CG_CHECK_EQ_STR(ev[0].org, "acme");
    CG_CHECK_EQ_INT(ev[0].limit_id, 7);
    CG_CHECK_EQ_INT(ev[0].period_start_ms, p.start_ms);
    CG_CHECK_EQ_INT(ev[0].period_end_ms, p.end_ms);
    expected_event_id(id, "key:k1", 7, p.index, 5000);
    CG_CHECK_EQ_STR(ev[0].id, id);

    /* One settle crossing 80% and 100% appends both, with consecutive seqs. */
    CG_CHECK_EQ_INT(spend(&f, "key:k1", "r3", 5 * USD), CG_ERR_OK);
    ev = ledger_store_new_events(f.s, &n);
    CG_CHECK_EQ_INT(n, 2);
    CG_CHECK_EQ_INT(ev[0].seq, 2);
    CG_CHECK_EQ_INT(ev[0].threshold_bp, 8000);
    CG_CHECK_EQ_INT(ev[1].seq, 3);
    CG_CHECK_EQ_INT(ev[1].type, PROTO_EVT_SPEND_REACHED);
    CG_CHECK_EQ_INT(ev[1].threshold_bp, 10000);
    expected_event_id(id, "key:k1", 7, p.index, 10000);
    CG_CHECK_EQ_STR(ev[1].id, id);

    /* Further spend in the same period fires nothing again. */
    CG_CHECK_EQ_INT(spend(&f, "key:k1", "r4", 5 * USD), CG_ERR_OK);
    ledger_store_new_events(f.s, &n);
    CG_CHECK_EQ_INT(n, 0);

    fx_fini(&f);
}

CG_TEST(thresholds_fire_again_next_period)
{
    fx f;
    proto_rep rep;
    size_t n = 0;
    char id[PROTO_EVENT_ID_MAX + 1];
    proto_limit lims[1] = {limit(7, PROTO_METRIC_COST, CG_WIN_MONTH, 10 * USD, PROTO_ACTION_WARN)};
    lims[0].warn_n = 1;
    lims[0].warn_bp[0] = 5000;
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_key(&f, "k1", lims, 1), CG_ERR_OK);
    cg_period p;
    CG_CHECK(cg_period_of(lims[0].window, 1, cg_now_ms(), &p) == CG_ERR_OK);
    CG_CHECK_EQ_INT(spend(&f, "key:k1", "r1", 6 * USD), CG_ERR_OK);
    CG_CHECK_EQ_INT(spend(&f, "key:k1", "r2", 5 * USD), CG_ERR_OK); /* 50% then reached */
    const proto_event *ev = ledger_store_new_events(f.s, &n);
    CG_CHECK_EQ_INT(n, 1);
    CG_CHECK_EQ_INT(ev[0].seq, 2);

    /* Next month: a new counter, the thresholds fire again under new ids. */
    cg_clock_set_offset_ms(32 * DAY_MS);
    cg_period p2;
    CG_CHECK(cg_period_of(lims[0].window, 1, cg_now_ms(), &p2) == CG_ERR_OK);
    CG_CHECK(p2.index == p.index + 1);
    CG_CHECK_EQ_INT(spend(&f, "key:k1", "r5", 6 * USD), CG_ERR_OK);
    ev = ledger_store_new_events(f.s, &n);
    CG_CHECK_EQ_INT(n, 1);
    CG_CHECK_EQ_INT(ev[0].seq, 3);
    CG_CHECK_EQ_INT(ev[0].period_start_ms, p2.start_ms);
    expected_event_id(id, "key:k1", 7, p2.index, 5000);
    CG_CHECK_EQ_STR(ev[0].id, id);

    /* The log: all four in order, paged. */
    CG_CHECK_EQ_INT(events_since(&f, 0, 10, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.events.last_seq, 3);
    CG_CHECK_EQ_INT(rep.u.events.n, 3);
    CG_CHECK_EQ_INT(rep.u.events.events[2].seq, 3);
    CG_CHECK_EQ_STR(rep.u.events.events[2].id, id);
    ledger_rep_clear(&rep);
    CG_CHECK_EQ_INT(events_since(&f, 1, 1, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.events.n, 1);
    CG_CHECK_EQ_INT(rep.u.events.events[0].seq, 2);
    ledger_rep_clear(&rep);
    CG_CHECK_EQ_INT(events_since(&f, 3, 10, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.events.n, 0);
    fx_fini(&f);
}

CG_TEST(org_scope_and_unknown_scopes)
{
    fx f;
    proto_rep rep;
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    proto_req r;
    memset(&r, 0, sizeof(r));
    r.op = PROTO_OP_PUT_ORG;
    r.u.put_org.create_only = 1;
    snprintf(r.route, sizeof(r.route), "org:acme");
    snprintf(r.u.put_org.org.id, sizeof(r.u.put_org.org.id), "acme");
    r.u.put_org.org.billing_anchor_day = 15;
    r.u.put_org.org.limit_n = 1;
    r.u.put_org.org.limits[0] = limit(1, PROTO_METRIC_COST, CG_WIN_MONTH, USD, PROTO_ACTION_BLOCK);
    r.u.put_org.org.limits[0].warn_n = 1;
    r.u.put_org.org.limits[0].warn_bp[0] = 8000;
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_EXISTS);

    proto_req g = simple_req(PROTO_OP_GET_ORG, "org:acme", NULL);
    CG_CHECK_EQ_INT(apply1(&f, &g, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.get_org.org.billing_anchor_day, 15);

    CG_CHECK_EQ_INT(spend(&f, "org:acme", "o1", USD * 9 / 10), CG_ERR_OK);
    size_t n = 0;
    const proto_event *ev = ledger_store_new_events(f.s, &n);
    CG_CHECK_EQ_INT(n, 1);
    CG_CHECK_EQ_INT(ev[0].scope, PROTO_SCOPE_ORG);
    CG_CHECK_EQ_STR(ev[0].org, "acme");
    cg_period p;
    CG_CHECK(cg_period_of(r.u.put_org.org.limits[0].window, 15, cg_now_ms(), &p) == CG_ERR_OK);
    CG_CHECK_EQ_INT(ev[0].period_start_ms, p.start_ms); /* the org's own anchor day */

    proto_req x = reserve_req("group:acme/team", "g1", 1000, 1, 1);
    CG_CHECK_EQ_INT(apply1(&f, &x, &rep), CG_ERR_NOTFOUND);
    x = reserve_req("key:missing", "g2", 1000, 1, 1);
    CG_CHECK_EQ_INT(apply1(&f, &x, &rep), CG_ERR_NOTFOUND);
    CG_CHECK_EQ_INT(apply1(&f, &g, &rep), CG_ERR_OK);
    g = simple_req(PROTO_OP_GET_ORG, "org:nope", NULL);
    CG_CHECK_EQ_INT(apply1(&f, &g, &rep), CG_ERR_NOTFOUND);
    fx_fini(&f);
}

CG_TEST(put_validation_and_auth)
{
    fx f;
    proto_rep rep;
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    proto_limit sliding = limit(1, PROTO_METRIC_REQUESTS, CG_WIN_SLIDING, 60, PROTO_ACTION_BLOCK);
    sliding.window.sliding_s = 60;
    sliding.warn_n = 1;
    sliding.warn_bp[0] = 5000;
    CG_CHECK_EQ_INT(put_key(&f, "k1", &sliding, 1), CG_ERR_INVAL); /* no warn_at when sliding */
    proto_limit dup[2] = {limit(1, PROTO_METRIC_COST, CG_WIN_DAY, 1, PROTO_ACTION_BLOCK),
                          limit(1, PROTO_METRIC_TOKENS, CG_WIN_DAY, 1, PROTO_ACTION_BLOCK)};
    CG_CHECK_EQ_INT(put_key(&f, "k1", dup, 2), CG_ERR_INVAL);
    proto_req r = put_key_req("k1", dup, 1);
    snprintf(r.route, sizeof(r.route), "key:other"); /* route must name the record */
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_INVAL);

    r = put_key_req("k1", dup, 1);
    r.u.put_key.create_only = 1;
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_EXISTS);

    proto_req a = simple_req(PROTO_OP_AUTH, "key:k1", NULL);
    memset(a.u.auth.hash, 0xab, sizeof(a.u.auth.hash));
    CG_CHECK_EQ_INT(apply1(&f, &a, &rep), CG_ERR_OK);
    CG_CHECK_EQ_STR(rep.u.auth.key.id, "k1");
    CG_CHECK_EQ_STR(rep.u.auth.key.org, "acme");
    a.u.auth.hash[31] ^= 1;
    CG_CHECK_EQ_INT(apply1(&f, &a, &rep), CG_ERR_UNAUTHORIZED);
    a.u.auth.hash[31] ^= 1;
    r.u.put_key.create_only = 0;
    r.u.put_key.key.revoked = 1;
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(apply1(&f, &a, &rep), CG_ERR_UNAUTHORIZED);
    a = simple_req(PROTO_OP_AUTH, "key:unknown", NULL);
    CG_CHECK_EQ_INT(apply1(&f, &a, &rep), CG_ERR_NOTFOUND);
    fx_fini(&f);
}

CG_TEST(wrong_shard_refused)
{
    fx f;
    proto_rep rep;
    const char *names[] = {"s0", "s1"};
    char route[64];
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    ledger_store_close(f.s);
    cg_ring_fini(&f.ring);
    CG_CHECK(cg_ring_init(&f.ring, names, 2) == CG_ERR_OK);
    CG_CHECK(fx_open(&f, 1 << 24) == 0);
    int i = 0;
    for (; i < 1000; i++) {
        snprintf(route, sizeof(route), "key:k%d", i);
        if (cg_ring_lookup(&f.ring, route, strlen(route)) == 1) {
            break;
        }
    }
    CG_CHECK(i < 1000);
    proto_limit l = limit(1, PROTO_METRIC_COST, CG_WIN_DAY, 1, PROTO_ACTION_BLOCK);
    CG_CHECK_EQ_INT(put_key(&f, route + 4, &l, 1), CG_ERR_WRONG_SHARD);
    proto_req r = reserve_req(route, "w", 1000, 1, 1);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_WRONG_SHARD);
    r = settle_req(route, "w", 1, 1);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_WRONG_SHARD);
    r = simple_req(PROTO_OP_PING, "", NULL);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    CG_CHECK_EQ_STR(rep.u.ping.shard, "s0");
    fx_fini(&f);
}

CG_TEST(batch_ops_are_independent)
{
    fx f;
    proto_rep reps[4];
    proto_limit l = limit(1, PROTO_METRIC_COST, CG_WIN_DAY, 10, PROTO_ACTION_BLOCK);
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_key(&f, "k1", &l, 1), CG_ERR_OK);
    proto_req reqs[4] = {reserve_req("key:k1", "a", 1000, 6, 0),
                         reserve_req("key:k1", "b", 1000, 6, 0), settle_req("key:k1", "a", 5, 0),
                         reserve_req("key:k1", "c", 1000, 5, 0)};
    ledger_op ops[4];
    memset(reps, 0, sizeof(reps));
    for (int i = 0; i < 4; i++) {
        ops[i] = (ledger_op){.req = &reqs[i], .rep = &reps[i]};
    }
    CG_CHECK(ledger_store_apply(f.s, ops, 4) == CG_ERR_OK);
    CG_CHECK_EQ_INT(reps[0].status, CG_ERR_OK);
    CG_CHECK_EQ_INT(reps[1].status, CG_ERR_BUDGET);
    CG_CHECK_EQ_INT(reps[2].status, CG_ERR_OK);
    CG_CHECK_EQ_INT(reps[3].status, CG_ERR_OK); /* sees the settle before it: 5 + 5 <= 10 */
    CG_CHECK_EQ_INT(reps[3].u.reserve.states[0].used, 5);
    CG_CHECK_EQ_INT(reps[3].u.reserve.states[0].reserved, 5);
    fx_fini(&f);
}

CG_TEST(reopen_persists_counters_and_events)
{
    fx f;
    proto_rep rep;
    proto_limit_state st;
    proto_limit l = limit(1, PROTO_METRIC_COST, CG_WIN_LIFETIME, 10, PROTO_ACTION_BLOCK);
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_key(&f, "k1", &l, 1), CG_ERR_OK);
    CG_CHECK_EQ_INT(spend(&f, "key:k1", "p1", 10), CG_ERR_OK); /* reached: event 1 */
    proto_req r = reserve_req("key:k1", "held", 60000, 0, 0);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    ledger_store_close(f.s);
    f.s = NULL;

    CG_CHECK(fx_open(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(ledger_store_last_seq(f.s), 1);
    CG_CHECK(key_state(&f, "key:k1", 1, &st) == 0);
    CG_CHECK_EQ_INT(st.used, 10);
    CG_CHECK_EQ_INT(events_since(&f, 0, 10, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.events.n, 1);
    CG_CHECK_EQ_INT(rep.u.events.events[0].type, PROTO_EVT_SPEND_REACHED);
    ledger_rep_clear(&rep);
    /* The settled id is still remembered, the held reservation still held. */
    proto_req s = settle_req("key:k1", "p1", 10, 0);
    CG_CHECK_EQ_INT(apply1(&f, &s, &rep), CG_ERR_OK);
    CG_CHECK(key_state(&f, "key:k1", 1, &st) == 0);
    CG_CHECK_EQ_INT(st.used, 10);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);

    /* New events continue the sequence. */
    proto_limit l2 = limit(2, PROTO_METRIC_COST, CG_WIN_DAY, 1, PROTO_ACTION_WARN);
    CG_CHECK_EQ_INT(put_key(&f, "k2", &l2, 1), CG_ERR_OK);
    CG_CHECK_EQ_INT(spend(&f, "key:k2", "p2", 1), CG_ERR_OK);
    size_t n = 0;
    const proto_event *ev = ledger_store_new_events(f.s, &n);
    CG_CHECK_EQ_INT(n, 1);
    CG_CHECK_EQ_INT(ev[0].seq, 2);
    fx_fini(&f);
}

static proto_req put_org_req(const char *id, uint8_t webhook_n)
{
    proto_req r;
    memset(&r, 0, sizeof(r));
    r.op = PROTO_OP_PUT_ORG;
    snprintf(r.route, sizeof(r.route), "org:%s", id);
    snprintf(r.u.put_org.org.id, sizeof(r.u.put_org.org.id), "%s", id);
    r.u.put_org.org.billing_anchor_day = 1;
    r.u.put_org.org.webhook_n = webhook_n;
    for (uint8_t w = 0; w < webhook_n; w++) {
        proto_webhook *h = &r.u.put_org.org.webhooks[w];
        memset(h->url, 'a', PROTO_URL_MAX - 8);
        memcpy(h->url, "https://", 8);
        memset(h->secret, 'b', PROTO_SECRET_MAX - 8);
    }
    return r;
}

CG_TEST(tiny_map_gives_map_full)
{
    fx f;
    proto_rep reps[2];
    ledger_op ops[2];
    ledger_store_stats st;
    cg_err err = CG_ERR_OK;
    char id[32];
    CG_CHECK(fx_init(&f, UINT64_C(64) * 1024) == 0);
    /* Fill the map with small records until a commit no longer fits. */
    int i = 0;
    for (; i < 5000 && err == CG_ERR_OK; i++) {
        snprintf(id, sizeof(id), "o%d", i);
        proto_req r = put_org_req(id, 0);
        memset(reps, 0, sizeof(reps));
        ops[0] = (ledger_op){.req = &r, .rep = &reps[0]};
        err = ledger_store_apply(f.s, ops, 1);
    }
    CG_CHECK_EQ_INT(err, CG_ERR_MAP_FULL);
    CG_CHECK_EQ_INT(reps[0].status, CG_ERR_MAP_FULL);
    CG_CHECK(i > 1);

    /* A record that cannot fit fails alone; the read-only op beside it is answered. */
    proto_req reqs[2] = {put_org_req("big", PROTO_WEBHOOKS_MAX),
                         simple_req(PROTO_OP_PING, "", NULL)};
    memset(reps, 0, sizeof(reps));
    ops[0] = (ledger_op){.req = &reqs[0], .rep = &reps[0]};
    ops[1] = (ledger_op){.req = &reqs[1], .rep = &reps[1]};
    CG_CHECK_EQ_INT(ledger_store_apply(f.s, ops, 2), CG_ERR_OK);
    CG_CHECK_EQ_INT(reps[0].status, CG_ERR_MAP_FULL);
    CG_CHECK_EQ_INT(reps[1].status, CG_ERR_OK);
    CG_CHECK_EQ_STR(reps[1].u.ping.shard, "s0");
    ledger_store_stats_get(f.s, &st);
    CG_CHECK(st.isolated_runs >= 1);

    /* What was committed before is intact. */
    proto_req g = simple_req(PROTO_OP_GET_ORG, "org:o0", NULL);
    CG_CHECK_EQ_INT(apply1(&f, &g, &reps[0]), CG_ERR_OK);
    g = simple_req(PROTO_OP_GET_ORG, "org:big", NULL);
    CG_CHECK_EQ_INT(apply1(&f, &g, &reps[0]), CG_ERR_NOTFOUND);
    fx_fini(&f);
}

int main(void)
{
    cg_log_init("ledger_store_test", CG_LOG_ERROR);
    return CG_TEST_RUN(reserve_settle_release_arithmetic, budget_refusal_fields,
                       settle_idempotent_and_conflicts, lease_expiry_and_late_settle,
                       late_settle_of_unknown_id_and_gc, thresholds_fire_once_per_period,
                       thresholds_fire_again_next_period, org_scope_and_unknown_scopes,
                       put_validation_and_auth, wrong_shard_refused, batch_ops_are_independent,
                       reopen_persists_counters_and_events, tiny_map_gives_map_full,
                       only_settles_and_definitions_pay_the_full_sync);
}
