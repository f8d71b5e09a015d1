/*
 * ledger_durability_test.c — the store's two environments (issue 4,
 * docs/ledger-durability.md): reservations live in an MDB_NOSYNC env that
 * survives a process restart on the same boot and is recreated empty after a
 * reboot (a different boot id), while settled usage, the settled markers that
 * make retried settles idempotent, and the charge sequence of partial settles
 * are durable and survive both. A reopen of the store stands for the process
 * restart (the page cache, which kill -9 keeps, is what the reopen reads);
 * fx.boot_id stands for the machine's boot id.
 *
 * The reserve lane (issue 4, "Two writer lanes"): with a lane open the store
 * commits in two phases; the last tests drive the lane and the store from two
 * threads and check that caps still hold exactly.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cg_log.h"
#include "cg_test.h"
#include "ledger_store.h"
#include "ledger_test_fx.h"

/* State of limit 1 of key:k1 (zeroed when the GET fails, which the checks then catch). */
static proto_limit_state st1(fx *f)
{
    proto_limit_state st;
    memset(&st, 0, sizeof(st));
    st.used = -1;
    proto_req r = simple_req(PROTO_OP_GET_KEY, "key:k1", NULL);
    proto_rep rep;
    if (apply1(f, &r, &rep) == CG_ERR_OK && rep.u.get_key.state_n > 0) {
        st = rep.u.get_key.states[0];
    }
    return st;
}

/* Close and reopen the store under boot id `boot`. */
static int restart(fx *f, const char *boot)
{
    ledger_store_close(f->s);
    f->s = NULL;
    f->boot_id = boot;
    return fx_open(f, 1 << 24);
}

/* A key k1 with one lifetime cost cap of 100 USD, on boot "boot-a". */
static int setup(fx *f)
{
    proto_limit lims[1] = {
        limit(1, PROTO_METRIC_COST, CG_WIN_LIFETIME, 100 * USD, PROTO_ACTION_BLOCK)};
    if (fx_init(f, 1 << 24) != 0 || restart(f, "boot-a") != 0) {
        return -1;
    }
    return put_key(f, "k1", lims, 1) == CG_ERR_OK ? 0 : -1;
}

static int settle1(fx *f, const char *rid, int64_t cost, int *late)
{
    proto_req r = settle_req("key:k1", rid, cost, 0);
    proto_rep rep;
    int st = apply1(f, &r, &rep);
    *late = rep.u.settle.late;
    return st;
}

CG_TEST(reservations_survive_a_restart_on_the_same_boot)
{
    fx f;
    proto_rep rep;
    int late = 0;
    CG_CHECK(setup(&f) == 0);
    CG_CHECK_EQ_INT(spend(&f, "key:k1", "r0", 2 * USD), CG_ERR_OK);
    proto_req r = reserve_req("key:k1", "r1", 60000, 3 * USD, 0);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(st1(&f).reserved, 3 * USD);

    CG_CHECK(restart(&f, "boot-a") == 0);
    proto_limit_state st = st1(&f);
    CG_CHECK_EQ_INT(st.used, 2 * USD);
    CG_CHECK_EQ_INT(st.reserved, 3 * USD); /* still held: caps keep holding */

    /* The reservation settles normally (not late) and gives its hold back. */
    CG_CHECK_EQ_INT(settle1(&f, "r1", USD, &late), CG_ERR_OK);
    CG_CHECK_EQ_INT(late, 0);
    st = st1(&f);
    CG_CHECK_EQ_INT(st.used, 3 * USD);
    CG_CHECK_EQ_INT(st.reserved, 0);
    /* Retried settles (before and after another restart) count once. */
    CG_CHECK_EQ_INT(settle1(&f, "r1", USD, &late), CG_ERR_OK);
    CG_CHECK(restart(&f, "boot-a") == 0);
    CG_CHECK_EQ_INT(settle1(&f, "r1", USD, &late), CG_ERR_OK);
    CG_CHECK_EQ_INT(settle1(&f, "r0", 2 * USD, &late), CG_ERR_OK);
    CG_CHECK_EQ_INT(st1(&f).used, 3 * USD);
    /* A different amount under a settled id is still a conflict; the id cannot be reused. */
    CG_CHECK_EQ_INT(settle1(&f, "r1", 2 * USD, &late), CG_ERR_CONFLICT);
    r = reserve_req("key:k1", "r1", 60000, USD, 0);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_CONFLICT);
    fx_fini(&f);
}

CG_TEST(a_reboot_drops_reservations_but_not_settled_usage)
{
    fx f;
    proto_rep rep;
    int late = 0;
    CG_CHECK(setup(&f) == 0);
    CG_CHECK_EQ_INT(spend(&f, "key:k1", "r0", 2 * USD), CG_ERR_OK);
    proto_req r = reserve_req("key:k1", "r1", 60000, 3 * USD, 0);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    r = reserve_req("key:k1", "r2", 60000, 4 * USD, 0);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(st1(&f).reserved, 7 * USD);

    CG_CHECK(restart(&f, "boot-b") == 0);
    proto_limit_state st = st1(&f);
    CG_CHECK_EQ_INT(st.used, 2 * USD); /* settled usage is durable */
    CG_CHECK_EQ_INT(st.reserved, 0);   /* the holds went with the reservation env */

    /* The in-flight request's settle still lands, as late spend, and only once. */
    CG_CHECK_EQ_INT(settle1(&f, "r1", USD, &late), CG_ERR_OK);
    CG_CHECK_EQ_INT(late, 1);
    CG_CHECK_EQ_INT(settle1(&f, "r1", USD, &late), CG_ERR_OK);
    CG_CHECK_EQ_INT(settle1(&f, "r0", 2 * USD, &late), CG_ERR_OK); /* settled before the reboot */
    st = st1(&f);
    CG_CHECK_EQ_INT(st.used, 3 * USD);
    CG_CHECK_EQ_INT(st.reserved, 0);
    /* r2's gateway releases: nothing is held, nothing changes. */
    r = simple_req(PROTO_OP_RELEASE, "key:k1", "r2");
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(st1(&f).used, 3 * USD);

    /* The recreated env is trusted on this boot again. */
    r = reserve_req("key:k1", "r3", 60000, 5 * USD, 0);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    CG_CHECK(restart(&f, "boot-b") == 0);
    CG_CHECK_EQ_INT(st1(&f).reserved, 5 * USD);
    /* An unknown boot id ("") never trusts the env. */
    CG_CHECK(restart(&f, "") == 0);
    CG_CHECK_EQ_INT(st1(&f).reserved, 0);
    CG_CHECK_EQ_INT(st1(&f).used, 3 * USD);
    fx_fini(&f);
}

CG_TEST(partial_settle_sequence_survives_a_reboot)
{
    fx f;
    proto_rep rep;
    CG_CHECK(setup(&f) == 0);
    proto_req r = reserve_req("key:k1", "lease:g:1", 60000, 10 * USD, 0);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    proto_req p = settle_req("key:k1", "lease:g:1", USD, 0);
    p.u.settle.partial = 1;
    p.u.settle.charge_seq = 1;
    p.u.settle.lease_ms = 60000;
    CG_CHECK_EQ_INT(apply1(&f, &p, &rep), CG_ERR_OK);
    proto_limit_state st = st1(&f);
    CG_CHECK_EQ_INT(st.used, USD);
    CG_CHECK_EQ_INT(st.reserved, 9 * USD);

    CG_CHECK(restart(&f, "boot-b") == 0);
    st = st1(&f);
    CG_CHECK_EQ_INT(st.used, USD);
    CG_CHECK_EQ_INT(st.reserved, 0);
    /* The same charge retried after the reboot is recognised (durable copy of the seq). */
    CG_CHECK_EQ_INT(apply1(&f, &p, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(st1(&f).used, USD);
    /* A new charge counts, late (its hold is gone), and once. */
    p.u.settle.charge_seq = 2;
    CG_CHECK_EQ_INT(apply1(&f, &p, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.settle.late, 1);
    CG_CHECK_EQ_INT(apply1(&f, &p, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(st1(&f).used, 2 * USD);
    fx_fini(&f);
}

CG_TEST(lease_expiry_and_gc_run_in_the_reservation_env)
{
    fx f;
    proto_rep rep;
    ledger_store_stats a, b;
    int late = 0;
    CG_CHECK(setup(&f) == 0);
    proto_req r = reserve_req("key:k1", "r1", 1000, 3 * USD, 0);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(spend(&f, "key:k1", "r2", USD), CG_ERR_OK);
    ledger_store_stats_get(f.s, &a);
    cg_clock_set_offset_ms(2000);
    CG_CHECK_EQ_INT(ledger_store_apply(f.s, NULL, 0), CG_ERR_OK); /* sweep only */
    ledger_store_stats_get(f.s, &b);
    CG_CHECK_EQ_INT(b.leases_expired, a.leases_expired + 1);
    CG_CHECK_EQ_INT(b.nosync_commits, a.nosync_commits + 1); /* no durable commit */
    CG_CHECK_EQ_INT(st1(&f).reserved, 0);
    /* A settle after expiry is late spend, recorded once. */
    CG_CHECK_EQ_INT(settle1(&f, "r1", USD, &late), CG_ERR_OK);
    CG_CHECK_EQ_INT(late, 1);
    CG_CHECK_EQ_INT(settle1(&f, "r1", USD, &late), CG_ERR_OK);
    CG_CHECK_EQ_INT(st1(&f).used, 2 * USD);
    /* After the dedup window both kinds of finished records are collected. */
    cg_clock_set_offset_ms(2000 + LEDGER_DEDUP_MS + 120000);
    ledger_store_stats_get(f.s, &a);
    CG_CHECK_EQ_INT(ledger_store_apply(f.s, NULL, 0), CG_ERR_OK);
    ledger_store_stats_get(f.s, &b);
    CG_CHECK_EQ_INT(b.gc_deleted, a.gc_deleted + 2);
    fx_fini(&f);
}

/* Apply one request on a lane view (as apply1). */
static int lane1(ledger_store *lane, const proto_req *req, proto_rep *rep)
{
    ledger_op op = {.req = req, .rep = rep};
    memset(rep, 0, sizeof(*rep));
    if (ledger_store_apply(lane, &op, 1) != CG_ERR_OK) {
        return -1;
    }
    return rep->status;
}

CG_TEST(two_phase_batches_count_as_before)
{
    fx f;
    proto_rep rep;
    ledger_store *lane = NULL;
    ledger_store_stats a, b;
    CG_CHECK(setup(&f) == 0);
    CG_CHECK_EQ_INT(ledger_store_lane_open(f.s, &lane), CG_ERR_OK);
    ledger_store_stats_get(f.s, &a);
    proto_req r = reserve_req("key:k1", "r1", 60000, 3 * USD, 0);
    CG_CHECK_EQ_INT(lane1(lane, &r, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(lane1(lane, &r, &rep), CG_ERR_OK); /* a retried reserve holds once */
    ledger_store_stats_get(f.s, &b);
    CG_CHECK_EQ_INT(b.nosync_commits, a.nosync_commits + 1); /* no durable commit */
    CG_CHECK_EQ_INT(st1(&f).reserved, 3 * USD);
    /* A settle on the store (two-phase): used counted, the hold returned. */
    proto_req s1 = settle_req("key:k1", "r1", 2 * USD, 0);
    CG_CHECK_EQ_INT(apply1(&f, &s1, &rep), CG_ERR_OK);
    proto_limit_state st = st1(&f);
    CG_CHECK_EQ_INT(st.used, 2 * USD);
    CG_CHECK_EQ_INT(st.reserved, 0);
    CG_CHECK_EQ_INT(apply1(&f, &s1, &rep), CG_ERR_OK); /* retried: counted once */
    CG_CHECK_EQ_INT(st1(&f).used, 2 * USD);
    /* A reserve and a release in one store batch; a reserve on the store itself. */
    proto_req r2 = reserve_req("key:k1", "r2", 60000, 4 * USD, 0);
    proto_req r3 = reserve_req("key:k1", "r3", 1000, 5 * USD, 0);
    CG_CHECK_EQ_INT(lane1(lane, &r2, &rep), CG_ERR_OK);
    proto_req rel = simple_req(PROTO_OP_RELEASE, "key:k1", "r2");
    proto_rep reps[2];
    memset(reps, 0, sizeof(reps));
    ledger_op ops[2] = {{.req = &rel, .rep = &reps[0]}, {.req = &r3, .rep = &reps[1]}};
    CG_CHECK_EQ_INT(ledger_store_apply(f.s, ops, 2), CG_ERR_OK);
    CG_CHECK_EQ_INT(reps[0].status, CG_ERR_OK);
    CG_CHECK_EQ_INT(reps[1].status, CG_ERR_OK);
    CG_CHECK_EQ_INT(st1(&f).reserved, 5 * USD);
    /* Its lease expires: the sweep (store side) returns the hold. */
    cg_clock_set_offset_ms(2000);
    CG_CHECK_EQ_INT(ledger_store_apply(f.s, NULL, 0), CG_ERR_OK);
    st = st1(&f);
    CG_CHECK_EQ_INT(st.reserved, 0);
    CG_CHECK_EQ_INT(st.used, 2 * USD);
    /* The lane refuses what does not fit: 98 USD left. */
    proto_req big = reserve_req("key:k1", "r4", 60000, 99 * USD, 0);
    CG_CHECK_EQ_INT(lane1(lane, &big, &rep), CG_ERR_BUDGET);
    /* A survives-restart check with the lane closed again. */
    ledger_store_close(lane);
    CG_CHECK(restart(&f, "boot-a") == 0);
    CG_CHECK_EQ_INT(st1(&f).used, 2 * USD);
    fx_fini(&f);
}

CG_TEST(the_lane_sees_a_definition_change_once_it_is_confirmed)
{
    fx f;
    proto_rep rep;
    ledger_store *lane = NULL;
    CG_CHECK(setup(&f) == 0);
    CG_CHECK_EQ_INT(ledger_store_lane_open(f.s, &lane), CG_ERR_OK);
    proto_req r = reserve_req("key:k1", "r1", 60000, 5 * USD, 0);
    CG_CHECK_EQ_INT(lane1(lane, &r, &rep), CG_ERR_OK); /* the lane caches key:k1's scope */
    proto_limit lims[1] = {
        limit(1, PROTO_METRIC_COST, CG_WIN_LIFETIME, 6 * USD, PROTO_ACTION_BLOCK)};
    CG_CHECK_EQ_INT(put_key(&f, "k1", lims, 1), CG_ERR_OK);
    proto_req r2 = reserve_req("key:k1", "r2", 60000, 5 * USD, 0);
    CG_CHECK_EQ_INT(lane1(lane, &r2, &rep), CG_ERR_BUDGET); /* 5 + 5 > 6 */
    fx_fini(&f);                                            /* closes the lane too */
}

#define RACE_TRIES 200000
#define RACE_AFTER 3000
#define RACE_CAP (100 * USD)
#define RACE_WORST (2 * USD)

typedef struct race {
    fx *f;
    ledger_store *lane;
    _Atomic int admitted[RACE_TRIES]; /* 1: reserved on the lane, 2: settled */
    _Atomic int done;                 /* the lane thread has finished */
    _Atomic int violations;           /* an admitted reserve's state was over the cap */
    int n_ok;
} race;

/* The lane: reserve fresh ids (worst 2 USD) until 50 were admitted and RACE_AFTER more tries
 * were made (each one a chance to overspend while the store commits settles). */
static void *race_lane(void *arg)
{
    race *x = arg;
    int full_at = -1; /* the try at which the cap was first fully admitted */
    for (int i = 0; i < RACE_TRIES && (full_at < 0 || i < full_at + RACE_AFTER); i++) {
        if (full_at < 0 && x->n_ok >= (int)(RACE_CAP / RACE_WORST)) {
            full_at = i;
        }
        char rid[32];
        proto_rep rep;
        snprintf(rid, sizeof(rid), "q%d", i);
        proto_req r = reserve_req("key:k1", rid, 60000, RACE_WORST, 0);
        int st = lane1(x->lane, &r, &rep);
        if (st == CG_ERR_OK) {
            x->n_ok++;
            atomic_store(&x->admitted[i], 1);
        }
        /* An admitted reserve's own view fits the cap. (A refused one's may exceed it: between
         * a settle's two phases `used` has the settle and `reserved` still its hold.) */
        if (st == CG_ERR_OK && rep.u.reserve.state_n > 0 &&
            rep.u.reserve.states[0].used + rep.u.reserve.states[0].reserved > RACE_CAP) {
            atomic_fetch_add(&x->violations, 1);
        }
    }
    atomic_store(&x->done, 1);
    return NULL;
}

CG_TEST(reserves_on_the_lane_never_overspend_while_settles_commit)
{
    fx f;
    pthread_t th;
    race *x = calloc(1, sizeof(*x));
    CG_CHECK(x != NULL && setup(&f) == 0);
    x->f = &f;
    CG_CHECK_EQ_INT(ledger_store_lane_open(f.s, &x->lane), CG_ERR_OK);
    CG_CHECK(pthread_create(&th, NULL, race_lane, x) == 0);
    /* The store: settle every admitted reservation at its worst case, in small batches. */
    int settled = 0;
    for (;;) {
        int done = atomic_load(&x->done);
        proto_req reqs[8];
        proto_rep reps[8];
        ledger_op ops[8];
        uint32_t n = 0;
        for (int i = 0; i < RACE_TRIES && n < 8; i++) {
            if (atomic_load(&x->admitted[i]) == 1) {
                char rid[32];
                snprintf(rid, sizeof(rid), "q%d", i);
                reqs[n] = settle_req("key:k1", rid, RACE_WORST, 0);
                memset(&reps[n], 0, sizeof(reps[n]));
                ops[n] = (ledger_op){.req = &reqs[n], .rep = &reps[n]};
                atomic_store(&x->admitted[i], 2);
                n++;
            }
        }
        if (n == 0 && done) {
            break;
        }
        if (n > 0) {
            CG_CHECK_EQ_INT(ledger_store_apply(f.s, ops, n), CG_ERR_OK);
            for (uint32_t i = 0; i < n; i++) {
                CG_CHECK_EQ_INT(reps[i].status, CG_ERR_OK);
                CG_CHECK_EQ_INT(reps[i].u.settle.late, 0);
            }
            settled += (int)n;
        }
    }
    pthread_join(th, NULL);
    /* Exactly the cap was admitted (no more: no overspend; no fewer: holds came back). */
    CG_CHECK_EQ_INT(x->n_ok, (int)(RACE_CAP / RACE_WORST));
    CG_CHECK_EQ_INT(settled, x->n_ok);
    CG_CHECK_EQ_INT(atomic_load(&x->violations), 0);
    proto_limit_state st = st1(&f);
    CG_CHECK_EQ_INT(st.used, RACE_CAP);
    CG_CHECK_EQ_INT(st.reserved, 0);
    proto_rep rep;
    proto_req more = reserve_req("key:k1", "over", 60000, 1, 0);
    CG_CHECK_EQ_INT(lane1(x->lane, &more, &rep), CG_ERR_BUDGET);
    fx_fini(&f);
    free(x);
}

int main(void)
{
    cg_log_init("ledger_durability_test", CG_LOG_ERROR);
    return CG_TEST_RUN(
        reservations_survive_a_restart_on_the_same_boot,
        a_reboot_drops_reservations_but_not_settled_usage,
        partial_settle_sequence_survives_a_reboot, lease_expiry_and_gc_run_in_the_reservation_env,
        two_phase_batches_count_as_before, the_lane_sees_a_definition_change_once_it_is_confirmed,
        reserves_on_the_lane_never_overspend_while_settles_commit);
}
