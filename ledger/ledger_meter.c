/*
 * ledger_meter.c — one limit's counter as the operations see it (a "meter"):
 * the calendar or lifetime counter {used, reserved, fired} of the period that
 * contains the time, or a sliding window's ring of usage buckets plus
 * `reserved`.
 *
 * Sliding windows (SPEC §3, docs/contracts.md "Windows"): the window is
 * counted in LS_SLIDE_BUCKETS buckets of cg_window_bucket_ms(window) each. A
 * bucket is named by its start time (a multiple of the bucket length) and
 * counts while start > now - window; it "leaves the window" at start + window.
 * Counting a bucket for at most (window - its offset) under-counts the oldest
 * usage by less than one bucket, the accuracy SPEC §3 allows; the refusal's
 * retry_after is then never longer than the window.
 *
 * A request is admitted if sum(buckets in window) + reserved + worst <= max.
 * A settle adds the actual amount to the bucket of the reservation's creation
 * time (dropped if that bucket has already left the window: it would no
 * longer count). Sliding limits fire no events, so they keep no `fired` bits.
 *
 * Sliding record (little-endian): version u8 = 1, reserved i64, n u8
 * (0..LS_SLIDE_BUCKETS), then n x {bucket start ms i64, amount i64}. Only
 * non-empty buckets still in the window are written: a quiet limit costs 10
 * bytes and stale buckets vanish on the next write. A bucket is placed in
 * slot (start / bucket_ms) % LS_SLIDE_BUCKETS; a slot holding an older bucket
 * is stale (60 buckets span at least the window) and is reused.
 *
 * Since issue 4 `reserved` (both kinds) lives in the reservation env
 * (ls_reserved_get / ls_reserved_put); the durable record's reserved field is
 * written 0 and not read. A meter writes its durable record only when `used`
 * (or `fired`) changed (m->used_dirty), so reserves and releases never touch
 * the durable env.
 */
#include <inttypes.h>
#include <string.h>

#include "cg_log.h"
#include "ledger_int.h"

#define LS_SLIDE_VERSION 1
#define LS_SLIDE_HEAD_BYTES 10
#define LS_SLIDE_ENTRY_BYTES 16
#define LS_SLIDE_MAX_BYTES (LS_SLIDE_HEAD_BYTES + LS_SLIDE_BUCKETS * LS_SLIDE_ENTRY_BYTES)

/* ---- the sliding ring ---- */

static int64_t ls_floor_to(int64_t t, int64_t q)
{
    int64_t r = t % q;
    return r < 0 ? t - r - q : t - r;
}

static size_t ls_slot(const ls_meter *m, int64_t start_ms)
{
    int64_t k = ls_floor_to(start_ms, m->bucket_ms) / m->bucket_ms;
    int64_t s = k % LS_SLIDE_BUCKETS;
    return (size_t)(s < 0 ? s + LS_SLIDE_BUCKETS : s);
}

static int ls_bucket_counts(const ls_meter *m, size_t i, int64_t now_ms)
{
    /* A bucket from the future (the clock stepped back) counts too: spend never hides. */
    return m->b_amount[i] > 0 && m->b_start_ms[i] > now_ms - m->window_ms;
}

/* Add amount to the bucket starting at start_ms (a multiple of the bucket length). */
static void ls_slide_place(ls_meter *m, int64_t start_ms, int64_t amount)
{
    size_t i = ls_slot(m, start_ms);
    if (m->b_amount[i] == 0 || m->b_start_ms[i] < start_ms) {
        m->b_start_ms[i] = start_ms; /* empty or stale: the slot is ours */
        m->b_amount[i] = amount;
    } else {
        /* Same bucket, or a newer one (only after the clock stepped back): adding to the
         * newer bucket counts the amount longer, never shorter. */
        m->b_amount[i] = ls_sat_add(m->b_amount[i], amount);
    }
}

static void ls_slide_init(ls_meter *m, cg_window w)
{
    memset(m, 0, sizeof(*m));
    m->sliding = 1;
    m->period_index = LS_SLIDE_PERIOD(w);
    m->window_ms = (int64_t)w.sliding_s * 1000;
    m->bucket_ms = cg_window_bucket_ms(w);
    m->end_ms = INT64_MAX;
}

static cg_err ls_slide_get(ls_txn *t, const char *route, uint32_t limit_id, ls_meter *m)
{
    ls_key k;
    MDB_val v;
    ls_key_counter(&k, route, limit_id, m->period_index);
    cg_err err = ls_reserved_get(t, &k, &m->c.reserved);
    if (err != CG_ERR_OK) {
        return err;
    }
    err = ls_get(t, t->s->db_counters, k.b, k.n, &v);
    if (err == CG_ERR_NOTFOUND) {
        return CG_ERR_OK;
    }
    if (err != CG_ERR_OK) {
        return err;
    }
    const uint8_t *p = v.mv_data;
    if (v.mv_size < LS_SLIDE_HEAD_BYTES || p[0] != LS_SLIDE_VERSION || p[9] > LS_SLIDE_BUCKETS ||
        v.mv_size != LS_SLIDE_HEAD_BYTES + (size_t)p[9] * LS_SLIDE_ENTRY_BYTES) {
        goto corrupt;
    }
    for (uint8_t i = 0; i < p[9]; i++) {
        const uint8_t *q = p + LS_SLIDE_HEAD_BYTES + (size_t)i * LS_SLIDE_ENTRY_BYTES;
        int64_t start = (int64_t)ls_le64_get(q);
        int64_t amount = (int64_t)ls_le64_get(q + 8);
        if (amount < 0) {
            goto corrupt;
        }
        if (amount > 0) {
            ls_slide_place(m, ls_floor_to(start, m->bucket_ms), amount);
        }
    }
    return CG_ERR_OK;
corrupt:
    cg_log(CG_LOG_ERROR, "corrupt sliding window record", "route", route, NULL);
    return CG_ERR_DB;
}

static cg_err ls_slide_put(ls_txn *t, const char *route, uint32_t limit_id, const ls_meter *m)
{
    uint8_t b[LS_SLIDE_MAX_BYTES];
    ls_key k;
    uint8_t n = 0;
    ls_key_counter(&k, route, limit_id, m->period_index);
    cg_err err = ls_reserved_put(t, &k, m->c.reserved);
    if (err != CG_ERR_OK || !m->used_dirty) {
        return err;
    }
    b[0] = LS_SLIDE_VERSION;
    ls_le64_put(b + 1, 0); /* reserved lives in the reservation env */
    for (size_t i = 0; i < LS_SLIDE_BUCKETS; i++) {
        if (ls_bucket_counts(m, i, t->now_ms)) {
            uint8_t *q = b + LS_SLIDE_HEAD_BYTES + (size_t)n * LS_SLIDE_ENTRY_BYTES;
            ls_le64_put(q, (uint64_t)m->b_start_ms[i]);
            ls_le64_put(q + 8, (uint64_t)m->b_amount[i]);
            n++;
        }
    }
    b[9] = n;
    return ls_put(t, t->s->db_counters, k.b, k.n, b,
                  LS_SLIDE_HEAD_BYTES + (size_t)n * LS_SLIDE_ENTRY_BYTES);
}

/* The buckets in the window, oldest first; returns how many. */
static size_t ls_slide_sorted(const ls_meter *m, int64_t now_ms, int64_t *start, int64_t *amount)
{
    size_t n = 0;
    for (size_t i = 0; i < LS_SLIDE_BUCKETS; i++) {
        if (!ls_bucket_counts(m, i, now_ms)) {
            continue;
        }
        size_t j = n++;
        for (; j > 0 && start[j - 1] > m->b_start_ms[i]; j--) {
            start[j] = start[j - 1];
            amount[j] = amount[j - 1];
        }
        start[j] = m->b_start_ms[i];
        amount[j] = m->b_amount[i];
    }
    return n;
}

/* The smallest d such that at now + d the buckets still in the window, reserved and worst fit
 * max; one bucket length if reserved + worst alone do not. */
static int64_t ls_slide_retry_after(const ls_meter *m, int64_t worst, int64_t max, int64_t now_ms)
{
    int64_t start[LS_SLIDE_BUCKETS], amount[LS_SLIDE_BUCKETS];
    size_t n = ls_slide_sorted(m, now_ms, start, amount);
    __int128 total = (__int128)m->c.reserved + worst;
    if (total > max) {
        return m->bucket_ms;
    }
    for (size_t i = 0; i < n; i++) {
        total += amount[i];
    }
    for (size_t i = 0; i < n; i++) {
        total -= amount[i];
        if (total <= max) {
            int64_t d = start[i] + m->window_ms - now_ms;
            return d > 0 ? d : 1;
        }
    }
    return m->bucket_ms; /* it fits already: never asked for by a refusal */
}

/* When the oldest bucket in the window leaves it (now if none). */
static int64_t ls_slide_oldest_end(const ls_meter *m, int64_t now_ms)
{
    int64_t oldest = INT64_MAX;
    for (size_t i = 0; i < LS_SLIDE_BUCKETS; i++) {
        if (ls_bucket_counts(m, i, now_ms) && m->b_start_ms[i] < oldest) {
            oldest = m->b_start_ms[i];
        }
    }
    return oldest == INT64_MAX ? now_ms : oldest + m->window_ms;
}

/* ---- meters ---- */

cg_err ls_meter_load(ls_txn *t, const char *route, const ls_scope *sc, const proto_limit *l,
                     ls_meter *m)
{
    cg_period p;
    if (l->window.kind == CG_WIN_SLIDING) {
        ls_slide_init(m, l->window);
        return ls_slide_get(t, route, l->id, m);
    }
    if (ls_limit_period(sc, l, t->now_ms, &p) != CG_ERR_OK) {
        /* Limits are validated at PUT time, so this is a record written by someone else. */
        cg_logf(CG_LOG_ERROR, "limit %" PRIu32 " of %s has no calendar period", l->id, sc->id);
        return CG_ERR_DB;
    }
    memset(m, 0, offsetof(ls_meter, b_start_ms));
    m->period_index = p.index;
    m->start_ms = p.start_ms;
    m->end_ms = p.end_ms;
    return ls_counter_get(t, route, l->id, p.index, &m->c);
}

cg_err ls_meter_load_item(ls_txn *t, const char *route, const ls_item *it, ls_meter *m)
{
    if (it->period_index < 0) {
        cg_window w = {.kind = CG_WIN_SLIDING, .sliding_s = 0};
        if (it->period_index < -(int64_t)CG_WINDOW_SLIDING_MAX_S) {
            cg_log(CG_LOG_ERROR, "reservation names an impossible window", "route", route, NULL);
            return CG_ERR_DB;
        }
        w.sliding_s = (uint32_t)-it->period_index;
        ls_slide_init(m, w);
        return ls_slide_get(t, route, it->limit_id, m);
    }
    memset(m, 0, offsetof(ls_meter, b_start_ms));
    m->period_index = it->period_index;
    m->start_ms = it->period_start_ms;
    m->end_ms = it->period_end_ms;
    return ls_counter_get(t, route, it->limit_id, it->period_index, &m->c);
}

cg_err ls_meter_store(ls_txn *t, const char *route, uint32_t limit_id, const ls_meter *m)
{
    if (m->sliding) {
        return ls_slide_put(t, route, limit_id, m);
    }
    return ls_counter_put(t, route, limit_id, m->period_index, &m->c, m->used_dirty);
}

int64_t ls_meter_used(const ls_meter *m, int64_t now_ms)
{
    if (!m->sliding) {
        return m->c.used;
    }
    int64_t sum = 0;
    for (size_t i = 0; i < LS_SLIDE_BUCKETS; i++) {
        if (ls_bucket_counts(m, i, now_ms)) {
            sum = ls_sat_add(sum, m->b_amount[i]);
        }
    }
    return sum;
}

void ls_meter_add_used(ls_meter *m, int64_t amount, int64_t created_ms, int64_t now_ms)
{
    m->used_dirty = 1;
    if (!m->sliding) {
        m->c.used = ls_sat_add(m->c.used, amount);
        return;
    }
    int64_t start = ls_floor_to(created_ms, m->bucket_ms);
    if (amount > 0 && start > now_ms - m->window_ms) {
        ls_slide_place(m, start, amount);
    }
}

void ls_meter_state(const ls_meter *m, const proto_limit *l, int64_t now_ms, proto_limit_state *st)
{
    memset(st, 0, sizeof(*st));
    st->limit_id = l->id;
    st->metric = l->metric;
    st->window = l->window;
    st->max = l->max;
    st->action = l->action;
    st->used = ls_meter_used(m, now_ms);
    st->reserved = m->c.reserved;
    if (m->sliding) {
        st->period_start_ms = now_ms - m->window_ms;
        st->period_end_ms = ls_slide_oldest_end(m, now_ms);
    } else {
        st->period_start_ms = m->start_ms;
        st->period_end_ms = m->end_ms == INT64_MAX ? 0 : m->end_ms;
    }
}

int ls_meter_fits(const ls_meter *m, const proto_limit *l, int64_t worst, int64_t now_ms)
{
    if (l->action != PROTO_ACTION_BLOCK || l->max <= 0) {
        return 1;
    }
    __int128 need = (__int128)ls_meter_used(m, now_ms) + m->c.reserved + worst;
    return need <= l->max;
}

void ls_meter_refusal(const ls_meter *m, const proto_limit *l, int64_t worst, int64_t now_ms,
                      proto_refusal *rf)
{
    memset(rf, 0, sizeof(*rf));
    rf->limit_id = l->id;
    rf->metric = l->metric;
    rf->window = l->window;
    rf->max = l->max;
    rf->used = ls_meter_used(m, now_ms);
    rf->reserved = m->c.reserved;
    if (m->sliding) {
        rf->retry_after_ms = ls_slide_retry_after(m, worst, l->max, now_ms);
        rf->resets_at_ms = now_ms + rf->retry_after_ms;
    } else {
        rf->resets_at_ms = m->end_ms == INT64_MAX ? 0 : m->end_ms;
    }
}
