/*
 * ledger_sweep.c — the ledger store's housekeeping, run at the start of every
 * batch: expired leases give their reservations back (reserved -= amount on
 * every counter they hold, calendar or sliding), and finished reservations
 * past their dedup window are deleted.
 *
 * Both walk a time-ordered index (db_leases, db_gc) from its oldest entry and
 * stop at the first one not yet due, in chunks of LS_SWEEP_CHUNK copied out of
 * LMDB before anything is written, and at most LEDGER_SWEEP_MAX entries per
 * transaction so a backlog is worked off over several batches instead of
 * stalling one. A malformed or stale index entry is dropped, never retried for
 * ever.
 *
 * Since issue 4 the lease index and the gc index of active / released /
 * expired reservations live in the reservation env (rdb_leases, rdb_gc), the
 * gc index of settled ones in the durable env (db_gc): a lease expiry touches
 * only the reservation env and costs no sync.
 */
#include <string.h>

#include "cg_log.h"
#include "ledger_int.h"

/* Index entries handled per cursor pass (bounded stack use: ~14 KiB). */
#define LS_SWEEP_CHUNK 32

/* One due index entry, copied out of LMDB. */
typedef struct ls_due {
    ls_key key;
    int parsed; /* 0: the key is malformed; only the index entry is removed */
    char rid[PROTO_REQID_MAX + 1];
    char route[PROTO_ROUTE_MAX + 1];
} ls_due;

/* Split an index key (time, request id, 0x00, route) into d. */
static void ls_due_parse(ls_due *d)
{
    const uint8_t *p = d->key.b + 8;
    size_t n = d->key.n - 8;
    const uint8_t *z = memchr(p, 0, n);
    d->parsed = 0;
    if (z == NULL) {
        return;
    }
    size_t rn = (size_t)(z - p);
    size_t qn = n - rn - 1;
    if (rn == 0 || rn > PROTO_REQID_MAX || qn == 0 || qn > PROTO_ROUTE_MAX ||
        memchr(z + 1, 0, qn) != NULL) {
        return;
    }
    memcpy(d->rid, p, rn);
    d->rid[rn] = '\0';
    memcpy(d->route, z + 1, qn);
    d->route[qn] = '\0';
    d->parsed = 1;
}

/* Copy out up to max entries of an index that are due (time < now), oldest first. */
static cg_err ls_due_collect(ls_txn *t, MDB_dbi dbi, ls_due *out, size_t max, size_t *n)
{
    MDB_cursor *cur = NULL;
    MDB_val key, val;
    MDB_txn *tx = ls_txn_of(t, &dbi);
    int rc = mdb_cursor_open(tx, dbi, &cur);
    if (rc != MDB_SUCCESS) {
        return ls_lmdb_fail(t, rc, "cursor open");
    }
    *n = 0;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == MDB_SUCCESS && *n < max;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        ls_due *d = &out[*n];
        if (key.mv_size > LS_KEY_MAX) {
            cg_log(CG_LOG_ERROR, "oversized index key: sweep stopped", NULL);
            break;
        }
        memcpy(d->key.b, key.mv_data, key.mv_size);
        d->key.n = key.mv_size;
        d->parsed = 0;
        /* A key too short to carry a time is not one of ours: drop it, it cannot stall us. */
        if (key.mv_size >= 8) {
            if (ls_index_time(&d->key) >= t->now_ms) {
                break;
            }
            ls_due_parse(d);
        }
        (*n)++;
    }
    mdb_cursor_close(cur);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        return ls_lmdb_fail(t, rc, "cursor get");
    }
    return CG_ERR_OK;
}

/* A lease ran out: return what the reservation holds; keep its record for the dedup window. */
static cg_err ls_sweep_lease(ls_txn *t, const ls_due *d)
{
    ls_resv r;
    /* The reservation env's record itself: after a crash between a settle's two commits it
     * is still ACTIVE while the durable env holds the SETTLED one, and its hold is returned. */
    cg_err err =
        d->parsed ? ls_resv_get_db(t, t->s->rdb_resv, d->rid, d->route, &r) : CG_ERR_NOTFOUND;
    if (err == CG_ERR_OK && r.state == LS_RESV_ACTIVE) {
        if ((err = ls_resv_return(t, d->route, &r)) != CG_ERR_OK ||
            (err = ls_resv_finish(t, d->rid, d->route, &r, LS_RESV_ACTIVE, LS_RESV_EXPIRED)) !=
                CG_ERR_OK) {
            return err;
        }
        t->p.leases_expired++;
        cg_log(CG_LOG_INFO, "reservation lease expired", "request_id", d->rid, "route", d->route,
               NULL);
        return CG_ERR_OK;
    }
    if (t->broken) {
        return t->broken_err;
    }
    /* A stale or unreadable entry (the record was finished or is corrupt): drop the entry. */
    return ls_del(t, t->s->rdb_leases, d->key.b, d->key.n);
}

/* The dedup window of a finished reservation is over: forget it (in db_resv for the durable
 * gc index, in rdb_resv for the reservation env's, with any durable copy a partial settle
 * left: the copy of a SETTLED record is the record itself and is deleted by its own entry). */
static cg_err ls_sweep_gc_in(ls_txn *t, const ls_due *d, MDB_dbi resv_dbi, MDB_dbi gc_dbi)
{
    ls_resv r;
    cg_err err = d->parsed ? ls_resv_get_db(t, resv_dbi, d->rid, d->route, &r) : CG_ERR_NOTFOUND;
    if (t->broken) {
        return t->broken_err;
    }
    if (err == CG_ERR_OK && r.state != LS_RESV_ACTIVE) {
        ls_key k;
        ls_key_resv(&k, d->rid, d->route);
        if ((err = ls_del(t, resv_dbi, k.b, k.n)) != CG_ERR_OK) {
            return err;
        }
        if (resv_dbi == t->s->rdb_resv) {
            ls_resv c;
            err = ls_resv_get_db(t, t->s->db_resv, d->rid, d->route, &c);
            if (err == CG_ERR_OK && c.state != LS_RESV_SETTLED) {
                err = ls_del(t, t->s->db_resv, k.b, k.n);
            } else if (err == CG_ERR_NOTFOUND || err == CG_ERR_DB) {
                err = CG_ERR_OK;
            }
            if (err != CG_ERR_OK) {
                return err;
            }
        }
        t->p.gc_deleted++;
    }
    return ls_del(t, gc_dbi, d->key.b, d->key.n);
}

static cg_err ls_sweep_gc(ls_txn *t, const ls_due *d)
{
    return ls_sweep_gc_in(t, d, t->s->db_resv, t->s->db_gc);
}

static cg_err ls_sweep_rgc(ls_txn *t, const ls_due *d)
{
    return ls_sweep_gc_in(t, d, t->s->rdb_resv, t->s->rdb_gc);
}

static cg_err ls_sweep_index(ls_txn *t, MDB_dbi dbi, cg_err (*fn)(ls_txn *, const ls_due *))
{
    ls_due due[LS_SWEEP_CHUNK];
    size_t done = 0;
    while (done < LEDGER_SWEEP_MAX) {
        size_t n = 0;
        cg_err err = ls_due_collect(t, dbi, due, LS_SWEEP_CHUNK, &n);
        for (size_t i = 0; err == CG_ERR_OK && i < n; i++) {
            err = fn(t, &due[i]);
        }
        if (err != CG_ERR_OK) {
            return err;
        }
        done += n;
        if (n < LS_SWEEP_CHUNK) {
            break;
        }
    }
    return CG_ERR_OK;
}

cg_err ls_sweep(ls_txn *t)
{
    cg_err err = ls_sweep_index(t, t->s->rdb_leases, ls_sweep_lease);
    if (err == CG_ERR_OK) {
        err = ls_sweep_index(t, t->s->rdb_gc, ls_sweep_rgc);
    }
    if (err == CG_ERR_OK) {
        err = ls_sweep_index(t, t->s->db_gc, ls_sweep_gc);
    }
    if (err == CG_ERR_OK) {
        err = ls_usage_sweep(t); /* usage_retention_days (ledger_usage.c) */
    }
    return err;
}
