/*
 * ledger_usage.c — a shard's reads over its usage log (USAGE_SERIES,
 * USAGE_RECORDS) and the log's retention.
 *
 * The usage log (db_usage) holds one record per settled request of a key this
 * shard owns, keyed by (ts_ms biased BE64, request id), so a cursor walks it in
 * time order and a time range is one contiguous scan. There is no index by org
 * or key: a query scans its time range and filters, and every scan visits at
 * most LEDGER_USAGE_SCAN_MAX records (a wider range is CG_ERR_TOOBIG) because
 * it runs on the writer thread, inside the batch transaction, where its cost
 * delays every other operation of the shard.
 *
 *  - USAGE_SERIES sums the matching records per (UTC calendar period start,
 *    group_by value) through a small open-addressing table, at most
 *    PROTO_SERIES_MAX points (more is CG_ERR_TOOBIG), sorted by (start, value).
 *  - USAGE_RECORDS returns a page of at most `limit` matching records in log
 *    order, strictly after the (ts, request id) cursor, and whether more match.
 *    A record's request_id in the reply is the one of its log key, so pages are
 *    strictly ordered even for records written without one.
 *  - Retention: ls_usage_sweep (called by the batch sweep) deletes records
 *    older than now - usage_retention_ms, at most LEDGER_SWEEP_MAX per
 *    transaction and, once caught up, at most once per LS_USAGE_SWEEP_EVERY_MS,
 *    so the hot path pays one comparison per batch.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_log.h"
#include "cg_period.h"
#include "ledger_int.h"

#define LS_USAGE_SWEEP_EVERY_MS 1000 /* retention re-check period once caught up */
#define LS_USAGE_SWEEP_CHUNK 32      /* log keys copied out per cursor pass */
#define LS_SERIES_SLOTS 32768        /* hash slots (power of two, > 3 * PROTO_SERIES_MAX) */
#define LS_HOUR_MS (3600LL * 1000)
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
 * non-empty — up to f->to_ms (exclusive; 0 = no bound), calling fn for every record
 * matching f. Bounded by LEDGER_USAGE_SCAN_MAX visited records (CG_ERR_TOOBIG).
 */
static cg_err ls_usage_walk(ls_txn *t, const proto_usage_filter *f, int64_t from_ts,
                            const char *after_rid, ls_usage_visit_fn fn, void *ud)
{
    MDB_cursor *cur = NULL;
    MDB_val key, val;
    ls_key k, start;
    proto_usage u;
    cg_err err = CG_ERR_OK;
    size_t visited = 0;
    int stop = 0;
    int64_t to_ms = f->to_ms == 0 ? INT64_MAX : f->to_ms;
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

static cg_err ls_series_visit(void *ud, const proto_usage *u, int *stop)
{
    ls_series *s = ud;
    int64_t start = ls_period_start(s->gran, u->ts_ms);
    const char *v = ls_usage_by_value(u, s->by);
    uint32_t i = ls_series_hash(start, v) & (LS_SERIES_SLOTS - 1);
    (void)stop;
    for (;; i = (i + 1) & (LS_SERIES_SLOTS - 1)) {
        uint32_t slot = s->slots[i];
        if (slot == 0) {
            break;
        }
        proto_usage_point *p = &s->points[slot - 1];
        if (p->start_ms == start && strcmp(p->value, v) == 0) {
            ls_usage_add(&p->totals, u);
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
    ls_usage_add(&p->totals, u);
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
    if (f->to_ms == 0 || f->from_ms < f->to_ms) {
        err = ls_usage_walk(t, f, f->from_ms, "", ls_series_visit, &s);
    }
    if (err != CG_ERR_OK || s.n == 0) {
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
        err = ls_usage_walk(t, f, from_ts, after, ls_records_visit, &r);
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

/* Copy out up to max log keys older than cutoff, oldest first. */
static cg_err ls_usage_old_keys(ls_txn *t, int64_t cutoff, ls_key *out, size_t max, size_t *n)
{
    MDB_cursor *cur = NULL;
    MDB_val key, val;
    int rc = mdb_cursor_open(t->txn, t->s->db_usage, &cur);
    if (rc != MDB_SUCCESS) {
        return ls_lmdb_fail(t, rc, "cursor open");
    }
    *n = 0;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == MDB_SUCCESS && *n < max;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        /* A key that cannot be ours (too short or long) is old by definition: drop it. */
        int bad = key.mv_size < 8 || key.mv_size > 8 + PROTO_REQID_MAX;
        if (!bad && ls_usage_key_ts(&key) >= cutoff) {
            break;
        }
        if (key.mv_size > LS_KEY_MAX) {
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

cg_err ls_usage_sweep(ls_txn *t)
{
    ledger_store *s = t->s;
    ls_key keys[LS_USAGE_SWEEP_CHUNK];
    size_t done = 0, n = 0;
    if (s->usage_retention_ms <= 0 || t->now_ms < s->usage_sweep_next_ms) {
        return CG_ERR_OK;
    }
    int64_t cutoff = t->now_ms - s->usage_retention_ms;
    do {
        cg_err err = ls_usage_old_keys(t, cutoff, keys, LS_USAGE_SWEEP_CHUNK, &n);
        for (size_t i = 0; err == CG_ERR_OK && i < n; i++) {
            err = ls_del(t, s->db_usage, keys[i].b, keys[i].n);
        }
        if (err != CG_ERR_OK) {
            return err;
        }
        done += n;
    } while (n == LS_USAGE_SWEEP_CHUNK && done < LEDGER_SWEEP_MAX);
    if (done > 0) {
        char nbuf[24];
        snprintf(nbuf, sizeof(nbuf), "%zu", done);
        cg_log(CG_LOG_INFO, "usage records past retention deleted", "records", nbuf, NULL);
    }
    /* Caught up: look again a little later (a hint; an aborted txn only makes it early). */
    if (n < LS_USAGE_SWEEP_CHUNK) {
        s->usage_sweep_next_ms = t->now_ms + LS_USAGE_SWEEP_EVERY_MS;
    }
    return CG_ERR_OK;
}
