/*
 * ledger_usage.c — a shard's reads over its usage log (USAGE_SERIES,
 * USAGE_RECORDS, and the totals walk USAGE_QUERY shares), the log's
 * retention, and the build of hourly rollups for a store written before them.
 *
 * The usage log (db_usage) holds one record per settled request of a key this
 * shard owns, keyed by (ts_ms biased BE64, request id), so a cursor walks it in
 * time order and a time range is one contiguous scan. Beside it, the hourly
 * rollups (db_usage_hour, docs/contracts.md "Usage rollups"): key = hour start
 * (biased BE64) then org 0x00 key_id 0x00 model 0x00 provider 0x00 group 0x00
 * customer, value = the totals of that hour's records with those fields
 * (4 x i64 LE: requests, prompt, completion, cost), kept by ls_usage_put in the
 * settle's own transaction. Everything here runs on the writer thread, inside
 * the batch transaction, where its cost delays every other operation of the
 * shard, so every read is bounded:
 *
 *  - Totals (USAGE_QUERY, USAGE_SERIES; ls_usage_totals_walk): the whole UTC
 *    hours inside [from, to) are read from the rollups, seeking to (hour, org)
 *    so other orgs' rows are skipped, at most LEDGER_ROLLUP_SCAN_MAX cursor
 *    steps; the partial hours at the two ends from the raw log, at most
 *    LEDGER_USAGE_SCAN_MAX records each (past either: CG_ERR_TOOBIG). Every
 *    filter field is in the rollup key and an hour lies inside one period of
 *    every granularity, so the answer is exactly the raw log's sum.
 *  - USAGE_SERIES sums the matching units per (UTC calendar period start,
 *    group_by value) through a small open-addressing table, at most
 *    PROTO_SERIES_MAX points (more is CG_ERR_TOOBIG), sorted by (start, value).
 *  - USAGE_RECORDS (raw log only) returns a page of at most `limit` matching
 *    records in log order, strictly after the (ts, request id) cursor, and
 *    whether more match; it visits at most LEDGER_USAGE_SCAN_MAX records.
 *    A record's request_id in the reply is the one of its log key, so pages are
 *    strictly ordered even for records written without one.
 *  - Retention: ls_usage_sweep (called by the batch sweep) deletes rollups and
 *    records older than now - usage_retention_ms floored to a whole UTC hour
 *    (so records live up to an hour longer), rollups first, at most
 *    LEDGER_SWEEP_MAX keys per transaction and, once caught up, at most once
 *    per LS_USAGE_SWEEP_EVERY_MS, so the hot path pays one comparison per batch.
 *  - Upgrade (ls_rollup_upgrade, from ledger_store_open): a store of schema 1
 *    has raw records only; its rollups are built from the log in chunks of
 *    LS_ROLLUP_UPGRADE_CHUNK records, one write transaction each, which also
 *    stores the last log key rolled up (meta "rollup_upto"), so a crash
 *    mid-way resumes without counting a record twice; the last one sets the
 *    schema version.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_clock.h"
#include "cg_log.h"
#include "cg_period.h"
#include "ledger_int.h"

#define LS_USAGE_SWEEP_EVERY_MS 1000  /* retention re-check period once caught up */
#define LS_USAGE_SWEEP_CHUNK 32       /* log keys copied out per cursor pass */
#define LS_SERIES_SLOTS 32768         /* hash slots (power of two, > 3 * PROTO_SERIES_MAX) */
#define LS_ROLLUP_UPGRADE_CHUNK 20000 /* raw records rolled up per write txn at upgrade */
#define LS_DAY_MS (24LL * LS_HOUR_MS)

void ledger_store_set_usage_retention(ledger_store *s, int64_t retention_ms)
{
    s->usage_retention_ms = retention_ms > 0 ? retention_ms : 0;
    s->usage_sweep_next_ms = 0;
}

/* ---- filtering ---- */

static int ls_usage_filter_match(const proto_usage *u, const proto_usage_filter *f)
{
    return strcmp(u->org, f->org) == 0 &&
           (f->key_id[0] == '\0' || strcmp(u->key_id, f->key_id) == 0) &&
           (f->group[0] == '\0' || strcmp(u->group, f->group) == 0) &&
           (f->customer[0] == '\0' || strcmp(u->customer, f->customer) == 0) &&
           (f->model[0] == '\0' || strcmp(u->model, f->model) == 0) &&
           (f->provider[0] == '\0' || strcmp(u->provider, f->provider) == 0);
}

/* The time of a log key (its first 8 bytes); the caller checked the length. */
static int64_t ls_usage_key_ts(const MDB_val *key)
{
    return (int64_t)(ls_be64_get(key->mv_data) ^ (UINT64_C(1) << 63));
}

/* Start of the UTC calendar period of granularity g containing t (0 for NONE). */
static int64_t ls_period_start(uint8_t g, int64_t t)
{
    int64_t day = t >= 0 ? t / LS_DAY_MS : -((-t + LS_DAY_MS - 1) / LS_DAY_MS);
    int64_t y;
    unsigned m, d;
    switch (g) {
    case PROTO_GRAN_HOUR:
        return day * LS_DAY_MS + (t - day * LS_DAY_MS) / LS_HOUR_MS * LS_HOUR_MS;
    case PROTO_GRAN_DAY:
        return day * LS_DAY_MS;
    case PROTO_GRAN_MONTH:
        cg_civil_from_days(day, &y, &m, &d);
        return cg_days_from_civil(y, m, 1) * LS_DAY_MS;
    default:
        return 0;
    }
}

static const char *ls_usage_by_value(const proto_usage *u, uint8_t by)
{
    switch (by) {
    case PROTO_BY_KEY:
        return u->key_id;
    case PROTO_BY_MODEL:
        return u->model;
    case PROTO_BY_PROVIDER:
        return u->provider;
    case PROTO_BY_CUSTOMER:
        return u->customer;
    case PROTO_BY_GROUP:
        return u->group;
    default:
        return "";
    }
}

/* ---- the scan ---- */

/* Called for each matching record; a non-OK return stops the scan with that error.
 * *stop = 1 ends it successfully. rid is the record's log key request id. */
typedef cg_err (*ls_usage_visit_fn)(void *ud, const proto_usage *u, int *stop);

/*
 * Walk the log from (from_ts, after_rid) — strictly after that key when after_rid is
 * non-empty — up to to_ms (exclusive; INT64_MAX = no bound), calling fn for every record
 * matching f. Bounded by LEDGER_USAGE_SCAN_MAX visited records (CG_ERR_TOOBIG).
 */
static cg_err ls_usage_walk(ls_txn *t, const proto_usage_filter *f, int64_t from_ts, int64_t to_ms,
                            const char *after_rid, ls_usage_visit_fn fn, void *ud)
{
    MDB_cursor *cur = NULL;
    MDB_val key, val;
    ls_key k, start;
    proto_usage u;
    cg_err err = CG_ERR_OK;
    size_t visited = 0;
    int stop = 0;
    int rc = mdb_cursor_open(t->txn, t->s->db_usage, &cur);
    if (rc != MDB_SUCCESS) {
        return ls_lmdb_fail(t, rc, "cursor open");
    }
    ls_key_usage(&start, from_ts, after_rid);
    k = start;
    key.mv_size = k.n;
    key.mv_data = k.b;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); rc == MDB_SUCCESS && !stop;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (key.mv_size < 8 || key.mv_size > 8 + PROTO_REQID_MAX ||
            ls_usage_key_ts(&key) >= to_ms) {
            break;
        }
        if (after_rid[0] != '\0' && key.mv_size == start.n &&
            memcmp(key.mv_data, start.b, start.n) == 0) {
            continue; /* the cursor record itself */
        }
        if (++visited > LEDGER_USAGE_SCAN_MAX) {
            cg_log(CG_LOG_WARN, "usage query range too wide", "org", f->org, NULL);
            err = CG_ERR_TOOBIG;
            break;
        }
        if (proto_usage_decode(val.mv_data, val.mv_size, &u) != CG_ERR_OK) {
            cg_log(CG_LOG_ERROR, "corrupt usage record", NULL);
            err = CG_ERR_DB;
            break;
        }
        if (!ls_usage_filter_match(&u, f)) {
            continue;
        }
        /* The log key names the record: its time and request id order every page. */
        u.ts_ms = ls_usage_key_ts(&key);
        memcpy(u.request_id, (const uint8_t *)key.mv_data + 8, key.mv_size - 8);
        u.request_id[key.mv_size - 8] = '\0';
        if ((err = fn(ud, &u, &stop)) != CG_ERR_OK) {
            break;
        }
    }
    if (err == CG_ERR_OK && rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        err = ls_lmdb_fail(t, rc, "cursor get");
    }
    mdb_cursor_close(cur);
    return err;
}

/* ---- rollup-backed totals (USAGE_QUERY, USAGE_SERIES) ---- */

typedef struct ls_tot_raw {
    ls_usage_tot_fn fn;
    void *ud;
} ls_tot_raw;

static cg_err ls_tot_raw_visit(void *ud, const proto_usage *u, int *stop)
{
    ls_tot_raw *r = ud;
    proto_usage_totals one = {0};
    (void)stop;
    ls_usage_add(&one, u);
    return r->fn(r->ud, u, &one);
}

/* The rollup rows of f's org with h1 <= hour < h2, filtered by f's other fields. Seeks to
 * (hour, org) for every hour holding rows, so other orgs' rows are skipped, not visited. */
static cg_err ls_rollup_walk(ls_txn *t, const proto_usage_filter *f, int64_t h1, int64_t h2,
                             ls_usage_tot_fn fn, void *ud)
{
    MDB_cursor *cur = NULL;
    MDB_val key, val;
    ls_hkey seek;
    proto_usage u, probe;
    proto_usage_totals tot;
    cg_err err = CG_ERR_OK;
    size_t visited = 0, on = strnlen(f->org, PROTO_ID_MAX);
    int64_t h = h1;
    int rc = mdb_cursor_open(t->txn, t->s->db_usage_hour, &cur);
    if (rc != MDB_SUCCESS) {
        return ls_lmdb_fail(t, rc, "cursor open");
    }
    memset(&probe, 0, sizeof(probe));
    memcpy(probe.org, f->org, on);
    while (err == CG_ERR_OK && h < h2) {
        ls_key_usage_hour(&seek, h, &probe); /* (h, org 0x00 0x00 ...): the org's first row */
        key.mv_size = 8 + on + 1;
        key.mv_data = seek.b;
        rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
        for (; rc == MDB_SUCCESS; rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
            if (++visited > LEDGER_ROLLUP_SCAN_MAX) {
                cg_log(CG_LOG_WARN, "usage query range too wide (rollups)", "org", f->org, NULL);
                err = CG_ERR_TOOBIG;
                break;
            }
            if (key.mv_size < 8) {
                err = CG_ERR_DB;
                break;
            }
            int64_t kh = ls_usage_key_ts(&key);
            if (kh >= h2) {
                h = h2;
                break;
            }
            if (kh != h) { /* no (more) rows of the org in h: look in kh */
                h = kh;
                break;
            }
            const uint8_t *kb = key.mv_data;
            if (key.mv_size < 8 + on + 1 || memcmp(kb + 8, f->org, on) != 0 || kb[8 + on] != 0) {
                h = ls_hour_floor(kh) + LS_HOUR_MS; /* past the org's rows: <= h2 (both whole) */
                break;
            }
            if (ls_rollup_parse(&key, &val, &u, &tot) != CG_ERR_OK) {
                err = CG_ERR_DB;
                break;
            }
            if (ls_usage_filter_match(&u, f) && (err = fn(ud, &u, &tot)) != CG_ERR_OK) {
                break;
            }
        }
        if (err == CG_ERR_OK && rc == MDB_NOTFOUND) {
            break; /* no rows after the seek key */
        }
        if (err == CG_ERR_OK && rc != MDB_SUCCESS) {
            err = ls_lmdb_fail(t, rc, "cursor get");
        }
    }
    if (err == CG_ERR_DB) {
        cg_log(CG_LOG_ERROR, "corrupt usage rollup", NULL);
    }
    mdb_cursor_close(cur);
    return err;
}

/* Log keys in [lo, hi), counted up to max + 1 (keys only: nothing is decoded). */
static cg_err ls_usage_count(ls_txn *t, int64_t lo, int64_t hi, size_t max, size_t *n)
{
    MDB_cursor *cur = NULL;
    MDB_val key, val;
    ls_key k;
    *n = 0;
    if (lo >= hi) {
        return CG_ERR_OK;
    }
    int rc = mdb_cursor_open(t->txn, t->s->db_usage, &cur);
    if (rc != MDB_SUCCESS) {
        return ls_lmdb_fail(t, rc, "cursor open");
    }
    ls_key_usage(&k, lo, "");
    key.mv_size = k.n;
    key.mv_data = k.b;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); rc == MDB_SUCCESS && *n <= max;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (key.mv_size < 8 || ls_usage_key_ts(&key) >= hi) {
            break;
        }
        (*n)++;
    }
    mdb_cursor_close(cur);
    return rc == MDB_SUCCESS || rc == MDB_NOTFOUND ? CG_ERR_OK : ls_lmdb_fail(t, rc, "cursor get");
}

/* A record of the complement, taken back out of its hour's rollup. */
static cg_err ls_tot_neg_visit(void *ud, const proto_usage *u, int *stop)
{
    ls_tot_raw *r = ud;
    proto_usage_totals one = {0};
    (void)stop;
    ls_usage_add(&one, u);
    one.requests = -one.requests;
    one.prompt_tokens = -one.prompt_tokens;
    one.completion_tokens = -one.completion_tokens;
    one.cost_nusd = -one.cost_nusd;
    return r->fn(r->ud, u, &one);
}

/*
 * The usage in [lo, hi), inside the one UTC hour h: either the raw records of [lo, hi), or
 * the hour's rollup minus the raw records of [h, lo) and [hi, h + 1 h) — whichever side has
 * fewer records (counted first, keys only). A query ending "now" in a busy hour thus reads
 * the hour's rollup and the few records stamped after now, not the whole hour. Past
 * LEDGER_USAGE_SCAN_MAX records on both sides: CG_ERR_TOOBIG.
 */
static cg_err ls_usage_partial_hour(ls_txn *t, const proto_usage_filter *f, int64_t h, int64_t lo,
                                    int64_t hi, ls_usage_tot_fn fn, void *ud)
{
    int64_t he = ls_sat_add(h, LS_HOUR_MS);
    ls_tot_raw raw = {.fn = fn, .ud = ud};
    size_t direct, before, after;
    cg_err err = ls_usage_count(t, lo, hi, LEDGER_USAGE_SCAN_MAX, &direct);
    if (err != CG_ERR_OK || direct == 0) {
        return err;
    }
    if ((err = ls_usage_count(t, h, lo, LEDGER_USAGE_SCAN_MAX, &before)) != CG_ERR_OK ||
        (err = ls_usage_count(t, hi, he, LEDGER_USAGE_SCAN_MAX, &after)) != CG_ERR_OK) {
        return err;
    }
    if (before + after >= direct) {
        return ls_usage_walk(t, f, lo, hi, "", ls_tot_raw_visit, &raw); /* TOOBIG past the cap */
    }
    if ((err = ls_rollup_walk(t, f, h, he, fn, ud)) != CG_ERR_OK ||
        (err = ls_usage_walk(t, f, h, lo, "", ls_tot_neg_visit, &raw)) != CG_ERR_OK) {
        return err;
    }
    return ls_usage_walk(t, f, hi, he, "", ls_tot_neg_visit, &raw);
}

cg_err ls_usage_totals_walk(ls_txn *t, const proto_usage_filter *f, ls_usage_tot_fn fn, void *ud)
{
    int64_t from = f->from_ms, to = f->to_ms == 0 ? INT64_MAX : f->to_ms;
    cg_err err = CG_ERR_OK;
    if (from >= to) {
        return CG_ERR_OK;
    }
    int64_t hf = ls_hour_floor(from), ht = ls_hour_floor(to);
    if (hf == ht) { /* one partial hour */
        return ls_usage_partial_hour(t, f, hf, from, to, fn, ud);
    }
    int64_t h1 = hf;
    if (from > hf) {
        h1 = ls_sat_add(hf, LS_HOUR_MS);
        err = ls_usage_partial_hour(t, f, hf, from, h1, fn, ud);
    }
    if (err == CG_ERR_OK && h1 < ht) {
        err = ls_rollup_walk(t, f, h1, ht, fn, ud);
    }
    if (err == CG_ERR_OK && ht < to) {
        err = ls_usage_partial_hour(t, f, ht, ht, to, fn, ud);
    }
    return err;
}

/* ---- USAGE_SERIES ---- */

typedef struct ls_series {
    uint8_t gran;
    uint8_t by;
    uint32_t n;
    proto_usage_point *points; /* PROTO_SERIES_MAX */
    uint32_t *slots;           /* LS_SERIES_SLOTS; index + 1, 0 = empty */
} ls_series;

static uint32_t ls_series_hash(int64_t start, const char *v)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)start;
    for (; *v != '\0'; v++) {
        h = (h ^ (uint8_t)*v) * 1099511628211ULL;
    }
    return (uint32_t)(h ^ (h >> 29));
}

/* u: one record or one rollup row (its hour lies inside one period of any granularity). */
static cg_err ls_series_visit(void *ud, const proto_usage *u, const proto_usage_totals *tot)
{
    ls_series *s = ud;
    int64_t start = ls_period_start(s->gran, u->ts_ms);
    const char *v = ls_usage_by_value(u, s->by);
    uint32_t i = ls_series_hash(start, v) & (LS_SERIES_SLOTS - 1);
    for (;; i = (i + 1) & (LS_SERIES_SLOTS - 1)) {
        uint32_t slot = s->slots[i];
        if (slot == 0) {
            break;
        }
        proto_usage_point *p = &s->points[slot - 1];
        if (p->start_ms == start && strcmp(p->value, v) == 0) {
            ls_totals_add(&p->totals, tot);
            return CG_ERR_OK;
        }
    }
    if (s->n == PROTO_SERIES_MAX) {
        return CG_ERR_TOOBIG;
    }
    proto_usage_point *p = &s->points[s->n];
    memset(p, 0, sizeof(*p));
    p->start_ms = start;
    snprintf(p->value, sizeof(p->value), "%s", v);
    ls_totals_add(&p->totals, tot);
    s->slots[i] = ++s->n;
    return CG_ERR_OK;
}

static int ls_point_cmp(const void *a, const void *b)
{
    const proto_usage_point *x = a, *y = b;
    if (x->start_ms != y->start_ms) {
        return x->start_ms < y->start_ms ? -1 : 1;
    }
    return strcmp(x->value, y->value);
}

cg_err ls_op_usage_series(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    const proto_usage_filter *f = &req->u.usage_series.f;
    ls_series s = {.gran = req->u.usage_series.granularity, .by = req->u.usage_series.group_by};
    cg_err err = CG_ERR_OK;
    if (f->org[0] == '\0' || s.gran > PROTO_GRAN_MONTH || s.by > PROTO_BY_GROUP) {
        return CG_ERR_INVAL;
    }
    s.points = malloc(PROTO_SERIES_MAX * sizeof(*s.points));
    s.slots = calloc(LS_SERIES_SLOTS, sizeof(*s.slots));
    if (s.points == NULL || s.slots == NULL) {
        err = CG_ERR_NOMEM;
        goto out;
    }
    err = ls_usage_totals_walk(t, f, ls_series_visit, &s);
    if (err != CG_ERR_OK) {
        goto out;
    }
    /* A value whose records in an hour all lay outside the range nets to no request when the
     * hour's rollup minus those records was used: not a point the raw records would make. */
    uint32_t kept = 0;
    for (uint32_t i = 0; i < s.n; i++) {
        if (s.points[i].totals.requests > 0) {
            s.points[kept++] = s.points[i];
        }
    }
    s.n = kept;
    if (s.n == 0) {
        goto out;
    }
    qsort(s.points, s.n, sizeof(*s.points), ls_point_cmp);
    rep->u.usage_series.points = s.points; /* the reply owns it now */
    rep->u.usage_series.n = s.n;
    s.points = NULL;
out:
    free(s.points);
    free(s.slots);
    return err;
}

/* ---- USAGE_RECORDS ---- */

typedef struct ls_records {
    uint32_t limit;
    uint32_t n;
    uint8_t has_more;
    proto_usage *recs;
} ls_records;

static cg_err ls_records_visit(void *ud, const proto_usage *u, int *stop)
{
    ls_records *r = ud;
    if (r->n == r->limit) {
        r->has_more = 1; /* one more match exists: the page is full */
        *stop = 1;
        return CG_ERR_OK;
    }
    r->recs[r->n++] = *u;
    return CG_ERR_OK;
}

cg_err ls_op_usage_records(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    const proto_usage_filter *f = &req->u.usage_records.f;
    ls_records r = {.limit = req->u.usage_records.limit};
    int64_t from_ts = f->from_ms;
    const char *after = req->u.usage_records.after_rid;
    cg_err err = CG_ERR_OK;
    if (f->org[0] == '\0' || r.limit == 0 || r.limit > PROTO_USAGE_RECORDS_MAX) {
        return CG_ERR_INVAL;
    }
    if (after[0] != '\0' && req->u.usage_records.after_ts_ms >= from_ts) {
        from_ts = req->u.usage_records.after_ts_ms;
    } else {
        after = ""; /* the cursor lies before the range: start at from */
    }
    if ((r.recs = malloc(r.limit * sizeof(*r.recs))) == NULL) {
        return CG_ERR_NOMEM;
    }
    if (f->to_ms == 0 || from_ts < f->to_ms) {
        err = ls_usage_walk(t, f, from_ts, f->to_ms == 0 ? INT64_MAX : f->to_ms, after,
                            ls_records_visit, &r);
    }
    if (err != CG_ERR_OK || r.n == 0) {
        free(r.recs);
        return err;
    }
    rep->u.usage_records.records = r.recs;
    rep->u.usage_records.n = r.n;
    rep->u.usage_records.has_more = r.has_more;
    return CG_ERR_OK;
}

/* ---- retention ---- */

/* Copy out up to max keys of dbi (the log or the rollups) older than cutoff, oldest first.
 * Keys outside [min_n, max_n] bytes cannot be ours: old by definition. */
static cg_err ls_usage_old_keys(ls_txn *t, MDB_dbi dbi, size_t min_n, size_t max_n, int64_t cutoff,
                                ls_hkey *out, size_t max, size_t *n)
{
    MDB_cursor *cur = NULL;
    MDB_val key, val;
    int rc = mdb_cursor_open(t->txn, dbi, &cur);
    if (rc != MDB_SUCCESS) {
        return ls_lmdb_fail(t, rc, "cursor open");
    }
    *n = 0;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == MDB_SUCCESS && *n < max;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        int bad = key.mv_size < min_n || key.mv_size > max_n;
        if (!bad && ls_usage_key_ts(&key) >= cutoff) {
            break;
        }
        if (key.mv_size > LS_HOUR_KEY_MAX) {
            cg_log(CG_LOG_ERROR, "oversized usage key: retention sweep stopped", NULL);
            break;
        }
        memcpy(out[*n].b, key.mv_data, key.mv_size);
        out[*n].n = key.mv_size;
        (*n)++;
    }
    mdb_cursor_close(cur);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        return ls_lmdb_fail(t, rc, "cursor get");
    }
    return CG_ERR_OK;
}

/* Delete dbi's keys older than cutoff, chunk by chunk, while *done < LEDGER_SWEEP_MAX.
 * *caught_up = 1 when none is left. */
static cg_err ls_usage_sweep_dbi(ls_txn *t, MDB_dbi dbi, size_t min_n, size_t max_n, int64_t cutoff,
                                 size_t *done, int *caught_up)
{
    ls_hkey keys[LS_USAGE_SWEEP_CHUNK];
    size_t n = 0;
    *caught_up = 0;
    while (*done < LEDGER_SWEEP_MAX) {
        cg_err err =
            ls_usage_old_keys(t, dbi, min_n, max_n, cutoff, keys, LS_USAGE_SWEEP_CHUNK, &n);
        for (size_t i = 0; err == CG_ERR_OK && i < n; i++) {
            err = ls_del(t, dbi, keys[i].b, keys[i].n);
        }
        if (err != CG_ERR_OK) {
            return err;
        }
        *done += n;
        if (n < LS_USAGE_SWEEP_CHUNK) {
            *caught_up = 1;
            break;
        }
    }
    return CG_ERR_OK;
}

/*
 * The cutoff is floored to a whole UTC hour, for the log and the rollups alike: an hour's rollup
 * and its records go together (records are kept up to an hour longer than the retention).
 * Rollups go first, and the log only once they are caught up, so a rollup never counts a
 * record already deleted.
 */
cg_err ls_usage_sweep(ls_txn *t)
{
    ledger_store *s = t->s;
    size_t done = 0;
    int rolled = 0, raw = 0;
    if (s->usage_retention_ms <= 0 || t->now_ms < s->usage_sweep_next_ms) {
        return CG_ERR_OK;
    }
    int64_t cutoff = ls_hour_floor(t->now_ms - s->usage_retention_ms);
    cg_err err =
        ls_usage_sweep_dbi(t, s->db_usage_hour, 8 + 5, LS_HOUR_KEY_MAX, cutoff, &done, &rolled);
    if (err == CG_ERR_OK && rolled) {
        err = ls_usage_sweep_dbi(t, s->db_usage, 8, 8 + PROTO_REQID_MAX, cutoff, &done, &raw);
    }
    if (err != CG_ERR_OK) {
        return err;
    }
    if (done > 0) {
        char nbuf[24];
        snprintf(nbuf, sizeof(nbuf), "%zu", done);
        cg_log(CG_LOG_INFO, "usage records and rollups past retention deleted", "keys", nbuf, NULL);
    }
    /* Caught up: look again a little later (a hint; an aborted txn only makes it early). */
    if (rolled && raw) {
        s->usage_sweep_next_ms = t->now_ms + LS_USAGE_SWEEP_EVERY_MS;
    }
    return CG_ERR_OK;
}

/* ---- upgrade: rollups of a store written before them ---- */

static const char ls_meta_rollup_upto[] = "rollup_upto"; /* last log key rolled up so far */

/*
 * One chunk: roll up to max log records after the progress key, store the
 * new progress key in the same transaction (so a crash mid-upgrade resumes without counting a
 * record twice) and, at the end of the log, the new schema version. *done = 1 at the end.
 */
cg_err ls_rollup_chunk(ledger_store *s, const void *schema_key, size_t schema_kn, size_t max,
                       size_t *records, size_t *corrupt, int *done)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val key, val;
    ls_key last;
    proto_usage u;
    size_t n = 0;
    cg_err err = CG_ERR_OK;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != MDB_SUCCESS) {
        return cg_err_from_lmdb(rc);
    }
    ls_txn t = {.s = s, .txn = txn, .now_ms = cg_now_ms()};
    if ((rc = mdb_cursor_open(txn, s->db_usage, &cur)) != MDB_SUCCESS) {
        err = ls_lmdb_fail(&t, rc, "cursor open");
        goto out;
    }
    last.n = 0;
    err = ls_get(&t, s->db_meta, ls_meta_rollup_upto, sizeof(ls_meta_rollup_upto) - 1, &val);
    if (err == CG_ERR_OK && val.mv_size <= LS_KEY_MAX) {
        memcpy(last.b, val.mv_data, val.mv_size);
        last.n = val.mv_size;
        key.mv_size = last.n;
        key.mv_data = last.b;
        rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
        if (rc == MDB_SUCCESS && key.mv_size == last.n &&
            memcmp(key.mv_data, last.b, last.n) == 0) {
            rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
        }
    } else if (err == CG_ERR_NOTFOUND) {
        rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST);
    } else {
        err = err == CG_ERR_OK ? CG_ERR_DB : err;
        goto out;
    }
    err = CG_ERR_OK;
    for (; rc == MDB_SUCCESS && n < max; rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (key.mv_size > LS_KEY_MAX) {
            err = CG_ERR_DB;
            goto out;
        }
        memcpy(last.b, key.mv_data, key.mv_size); /* before writing: the cursor's pages stay */
        last.n = key.mv_size;
        n++;
        if (key.mv_size < 8 || key.mv_size > 8 + PROTO_REQID_MAX ||
            proto_usage_decode(val.mv_data, val.mv_size, &u) != CG_ERR_OK) {
            (*corrupt)++; /* a raw scan refuses it too (CG_ERR_DB); it is never counted */
            continue;
        }
        if ((err = ls_rollup_add(&t, ls_usage_key_ts(&key), &u)) != CG_ERR_OK) {
            goto out;
        }
    }
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        err = ls_lmdb_fail(&t, rc, "cursor get");
        goto out;
    }
    *done = rc == MDB_NOTFOUND;
    if (n > 0) {
        err = ls_put(&t, s->db_meta, ls_meta_rollup_upto, sizeof(ls_meta_rollup_upto) - 1, last.b,
                     last.n);
    }
    if (err == CG_ERR_OK && *done) {
        uint8_t b[4] = {LS_SCHEMA_VERSION, 0, 0, 0};
        if ((err = ls_put(&t, s->db_meta, schema_key, schema_kn, b, sizeof(b))) == CG_ERR_OK) {
            err = ls_del(&t, s->db_meta, ls_meta_rollup_upto, sizeof(ls_meta_rollup_upto) - 1);
        }
    }
out:
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    if (err != CG_ERR_OK) {
        mdb_txn_abort(txn);
        return err;
    }
    if ((rc = mdb_txn_commit(txn)) != MDB_SUCCESS) {
        cg_log(CG_LOG_ERROR, "cannot commit usage rollups", "lmdb", mdb_strerror(rc), NULL);
        return cg_err_from_lmdb(rc);
    }
    *records += n;
    return CG_ERR_OK;
}

cg_err ls_rollup_upgrade(ledger_store *s, const void *schema_key, size_t schema_kn)
{
    size_t records = 0, corrupt = 0;
    int done = 0;
    int64_t t0 = cg_mono_ms();
    cg_log(CG_LOG_INFO, "store predates usage rollups: building them from the usage log", NULL);
    while (!done) {
        cg_err err = ls_rollup_chunk(s, schema_key, schema_kn, LS_ROLLUP_UPGRADE_CHUNK, &records,
                                     &corrupt, &done);
        if (err != CG_ERR_OK) {
            cg_log(CG_LOG_ERROR, "building usage rollups failed", "err", cg_err_name(err), NULL);
            return err;
        }
    }
    char nbuf[24], cbuf[24], mbuf[24];
    snprintf(nbuf, sizeof(nbuf), "%zu", records);
    snprintf(cbuf, sizeof(cbuf), "%zu", corrupt);
    snprintf(mbuf, sizeof(mbuf), "%lld", (long long)(cg_mono_ms() - t0));
    cg_log(CG_LOG_INFO, "usage rollups built", "records", nbuf, "corrupt_skipped", cbuf, "ms", mbuf,
           NULL);
    return CG_ERR_OK;
}
