/*
 * ledger_durability_test.c — the store's two environments (issue 4,
 * docs/ledger-durability.md): reservations live in an MDB_NOSYNC env that
 * survives a process restart on the same boot and is recreated empty after a
 * reboot (a different boot id), while settled usage, the settled markers that
 * make retried settles idempotent, and the charge sequence of partial settles
 * are durable and survive both. A reopen of the store stands for the process
 * restart (the page cache, which kill -9 keeps, is what the reopen reads);
 * fx.boot_id stands for the machine's boot id.
 */
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

int main(void)
{
    cg_log_init("ledger_durability_test", CG_LOG_ERROR);
    return CG_TEST_RUN(reservations_survive_a_restart_on_the_same_boot,
                       a_reboot_drops_reservations_but_not_settled_usage,
                       partial_settle_sequence_survives_a_reboot,
                       lease_expiry_and_gc_run_in_the_reservation_env);
}
