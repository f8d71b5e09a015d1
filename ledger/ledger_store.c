/*
 * ledger_store.c — the LMDB environment of a ledger shard and its group-commit
 * batch runner.
 *
 * LMDB layout: one environment per shard directory with the named databases
 * listed in ledger_int.h (orgs, keys, groups, customers, counters, resv,
 * leases, gc, usage, events, meta). Durable default flags: no MDB_NOSYNC, no MDB_WRITEMAP, so a
 * commit returns only after fdatasync. MDB_NOTLS lets future read-only
 * transactions move between threads; it does not weaken durability.
 *
 * The batch runner applies a batch in one write transaction. The fast path
 * runs every operation directly in that transaction; it relies on the write
 * discipline of ledger_int.h (refusals before writes). If an operation breaks
 * the transaction (an LMDB error such as MDB_MAP_FULL) or refuses after having
 * written, the whole transaction is aborted and the batch re-run in isolated
 * mode: one nested transaction per operation, so only the failing operation
 * fails. Nested transactions cost a few allocations each, which is why they
 * are the fallback and not the rule. A batch that wrote nothing is aborted
 * instead of committed: read-only batches cost no fsync.
 */
#include "ledger_store.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "cg_clock.h"
#include "cg_log.h"
#include "ledger_int.h"

static const char ls_meta_schema[] = "schema";
static const char ls_meta_last_seq[] = "last_seq";

/* ---- LMDB access helpers ---- */

cg_err ls_lmdb_fail(ls_txn *t, int rc, const char *what)
{
    cg_err err = cg_err_from_lmdb(rc);
    cg_log(rc == MDB_MAP_FULL ? CG_LOG_WARN : CG_LOG_ERROR, "lmdb operation failed", "op", what,
           "lmdb", mdb_strerror(rc), "err", cg_err_name(err), NULL);
    if (!t->broken) {
        t->broken = 1;
        t->broken_err = err;
    }
    return err;
}

cg_err ls_get(ls_txn *t, MDB_dbi dbi, const void *k, size_t kn, MDB_val *val)
{
    MDB_val key = {.mv_size = kn, .mv_data = (void *)k};
    int rc = mdb_get(t->txn, dbi, &key, val);
    if (rc == MDB_NOTFOUND) {
        return CG_ERR_NOTFOUND;
    }
    if (rc != MDB_SUCCESS) {
        return ls_lmdb_fail(t, rc, "get");
    }
    return CG_ERR_OK;
}

/* A write to a definition database makes every cached scope stale. */
static void ls_def_written(ls_txn *t, MDB_dbi dbi)
{
    ledger_store *s = t->s;
    if (dbi == s->db_orgs || dbi == s->db_keys || dbi == s->db_groups || dbi == s->db_customers) {
        ls_scope_cache_drop(s);
    }
}

cg_err ls_put(ls_txn *t, MDB_dbi dbi, const void *k, size_t kn, const void *v, size_t vn)
{
    MDB_val key = {.mv_size = kn, .mv_data = (void *)k};
    MDB_val val = {.mv_size = vn, .mv_data = (void *)v};
    t->dirty = 1;
    ls_def_written(t, dbi);
    int rc = mdb_put(t->txn, dbi, &key, &val, 0);
    if (rc != MDB_SUCCESS) {
        return ls_lmdb_fail(t, rc, "put");
    }
    return CG_ERR_OK;
}

cg_err ls_del(ls_txn *t, MDB_dbi dbi, const void *k, size_t kn)
{
    MDB_val key = {.mv_size = kn, .mv_data = (void *)k};
    t->dirty = 1;
    ls_def_written(t, dbi);
    int rc = mdb_del(t->txn, dbi, &key, NULL);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        return ls_lmdb_fail(t, rc, "del");
    }
    return CG_ERR_OK;
}

static cg_err ls_events_reserve(ledger_store *s, size_t need)
{
    if (need <= s->event_cap) {
        return CG_ERR_OK;
    }
    size_t cap = s->event_cap ? s->event_cap : LS_EVENTS_INITIAL;
    while (cap < need) {
        cap *= 2;
    }
    proto_event *ev = realloc(s->events, cap * sizeof(*ev));
    if (ev == NULL) {
        return CG_ERR_NOMEM;
    }
    s->events = ev;
    s->event_cap = cap;
    return CG_ERR_OK;
}

cg_err ls_event_append(ls_txn *t, proto_event *ev)
{
    ledger_store *s = t->s;
    ls_key k;
    cg_err err = ls_events_reserve(s, t->p.event_n + 1);
    if (err != CG_ERR_OK) {
        return err;
    }
    ev->seq = t->p.next_seq;
    msgpack_sbuffer_clear(&s->sbuf);
    err = proto_event_encode(ev, &s->sbuf);
    if (err != CG_ERR_OK) {
        return err;
    }
    ls_key_u64(&k, ev->seq);
    err = ls_put(t, s->db_events, k.b, k.n, s->sbuf.data, s->sbuf.size);
    if (err != CG_ERR_OK) {
        return err;
    }
    s->events[t->p.event_n++] = *ev;
    t->p.next_seq++;
    return CG_ERR_OK;
}

/* ---- open / close ---- */

static cg_err ls_open_dbs(ledger_store *s, MDB_txn *txn)
{
    static const struct {
        const char *name;
        size_t off;
    } dbs[] = {
        {"orgs", offsetof(ledger_store, db_orgs)},
        {"keys", offsetof(ledger_store, db_keys)},
        {"groups", offsetof(ledger_store, db_groups)},
        {"customers", offsetof(ledger_store, db_customers)},
        {"counters", offsetof(ledger_store, db_counters)},
        {"resv", offsetof(ledger_store, db_resv)},
        {"leases", offsetof(ledger_store, db_leases)},
        {"gc", offsetof(ledger_store, db_gc)},
        {"usage", offsetof(ledger_store, db_usage)},
        {"events", offsetof(ledger_store, db_events)},
        {"meta", offsetof(ledger_store, db_meta)},
    };
    static_assert(sizeof(dbs) / sizeof(dbs[0]) <= LEDGER_DBS_MAX, "LEDGER_DBS_MAX too small");
    for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
        int rc = mdb_dbi_open(txn, dbs[i].name, MDB_CREATE, (MDB_dbi *)((char *)s + dbs[i].off));
        if (rc != MDB_SUCCESS) {
            cg_log(CG_LOG_ERROR, "cannot open database", "db", dbs[i].name, "lmdb",
                   mdb_strerror(rc), NULL);
            return cg_err_from_lmdb(rc);
        }
    }
    return CG_ERR_OK;
}

/* Check (or write, for a new store) the schema version and read the last event seq. */
static cg_err ls_open_meta(ledger_store *s, MDB_txn *txn)
{
    MDB_val k = {.mv_size = sizeof(ls_meta_schema) - 1, .mv_data = (void *)ls_meta_schema};
    MDB_val v;
    uint8_t b[4] = {LS_SCHEMA_VERSION, 0, 0, 0};
    int rc = mdb_get(txn, s->db_meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        v.mv_size = sizeof(b);
        v.mv_data = b;
        rc = mdb_put(txn, s->db_meta, &k, &v, 0);
    } else if (rc == MDB_SUCCESS && (v.mv_size != 4 || memcmp(v.mv_data, b, 4) != 0)) {
        cg_log(CG_LOG_ERROR, "ledger store has an unknown schema version", NULL);
        return CG_ERR_DB;
    }
    if (rc != MDB_SUCCESS) {
        cg_log(CG_LOG_ERROR, "cannot read store schema", "lmdb", mdb_strerror(rc), NULL);
        return cg_err_from_lmdb(rc);
    }
    k.mv_size = sizeof(ls_meta_last_seq) - 1;
    k.mv_data = (void *)ls_meta_last_seq;
    rc = mdb_get(txn, s->db_meta, &k, &v);
    if (rc == MDB_SUCCESS && v.mv_size == 8) {
        s->last_seq = ls_be64_get(v.mv_data);
    } else if (rc != MDB_NOTFOUND) {
        cg_log(CG_LOG_ERROR, "cannot read last event seq", "lmdb",
               rc == MDB_SUCCESS ? "bad size" : mdb_strerror(rc), NULL);
        return rc == MDB_SUCCESS ? CG_ERR_DB : cg_err_from_lmdb(rc);
    }
    return CG_ERR_OK;
}

static cg_err ls_open_env(ledger_store *s, const ledger_store_cfg *cfg)
{
    int rc = mdb_env_create(&s->env);
    if (rc != MDB_SUCCESS) {
        s->env = NULL;
        goto fail;
    }
    if ((rc = mdb_env_set_maxdbs(s->env, LEDGER_DBS_MAX)) != MDB_SUCCESS ||
        (rc = mdb_env_set_mapsize(s->env, (size_t)cfg->map_bytes)) != MDB_SUCCESS ||
        (rc = mdb_env_open(s->env, cfg->dir, MDB_NOTLS, 0600)) != MDB_SUCCESS) {
        goto fail;
    }
    int dead = 0;
    if ((rc = mdb_reader_check(s->env, &dead)) != MDB_SUCCESS) {
        goto fail;
    }
    if (dead > 0) {
        cg_logf(CG_LOG_WARN, "cleared %d stale lmdb reader slots", dead);
    }
    return CG_ERR_OK;
fail:
    cg_log(CG_LOG_ERROR, "cannot open lmdb environment", "dir", cfg->dir, "lmdb", mdb_strerror(rc),
           NULL);
    return cg_err_from_lmdb(rc);
}

cg_err ledger_store_open(const ledger_store_cfg *cfg, ledger_store **out)
{
    MDB_txn *txn = NULL;
    cg_err err = CG_ERR_INVAL;
    if (cfg == NULL || cfg->dir == NULL || cfg->ring == NULL || cfg->shard_name == NULL ||
        cfg->shard_name[0] == '\0' || strlen(cfg->shard_name) > PROTO_SHARD_MAX ||
        cfg->shard_index >= cfg->ring->shard_n) {
        return CG_ERR_INVAL;
    }
    ledger_store *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return CG_ERR_NOMEM;
    }
    msgpack_sbuffer_init(&s->sbuf);
    s->def_gen = 1;
    s->scope_cache = calloc(LS_SCOPE_CACHE_SLOTS, sizeof(*s->scope_cache));
    if (s->scope_cache == NULL) {
        free(s);
        return CG_ERR_NOMEM;
    }
    s->ring = cfg->ring;
    s->shard_index = cfg->shard_index;
    memcpy(s->shard, cfg->shard_name, strlen(cfg->shard_name) + 1);
    if ((err = ls_events_reserve(s, LS_EVENTS_INITIAL)) != CG_ERR_OK ||
        (err = ls_open_env(s, cfg)) != CG_ERR_OK) {
        goto fail;
    }
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != MDB_SUCCESS) {
        err = cg_err_from_lmdb(rc);
        goto fail;
    }
    if ((err = ls_open_dbs(s, txn)) != CG_ERR_OK || (err = ls_open_meta(s, txn)) != CG_ERR_OK) {
        goto fail;
    }
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc != MDB_SUCCESS) {
        cg_log(CG_LOG_ERROR, "cannot initialise store", "lmdb", mdb_strerror(rc), NULL);
        err = cg_err_from_lmdb(rc);
        goto fail;
    }
    *out = s;
    return CG_ERR_OK;
fail:
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    ledger_store_close(s);
    return err;
}

void ledger_store_close(ledger_store *s)
{
    if (s == NULL) {
        return;
    }
    if (s->env != NULL) {
        mdb_env_close(s->env);
    }
    msgpack_sbuffer_destroy(&s->sbuf);
    free(s->scope_cache);
    free(s->events);
    free(s);
}

/* ---- the batch runner ---- */

void ledger_rep_clear(proto_rep *rep)
{
    if (rep->op == PROTO_OP_EVENTS_SINCE) {
        free(rep->u.events.events);
    }
    memset(rep, 0, sizeof(*rep));
}

/* Sweep in isolated mode: in its own nested transaction, skipped if it fails. */
static void ls_sweep_isolated(ls_txn *t)
{
    MDB_txn *parent = t->txn;
    ls_pending saved = t->p;
    int rc = mdb_txn_begin(t->s->env, parent, 0, &t->txn);
    if (rc != MDB_SUCCESS) {
        t->txn = parent;
        cg_log(CG_LOG_ERROR, "cannot begin sweep txn", "lmdb", mdb_strerror(rc), NULL);
        return;
    }
    cg_err err = ls_sweep(t);
    if (err == CG_ERR_OK && !t->broken) {
        rc = mdb_txn_commit(t->txn);
        err = rc == MDB_SUCCESS ? CG_ERR_OK : cg_err_from_lmdb(rc);
    } else {
        mdb_txn_abort(t->txn);
    }
    t->txn = parent;
    if (err != CG_ERR_OK || t->broken) {
        cg_log(CG_LOG_WARN, "lease sweep skipped", "err", cg_err_name(err), NULL);
        t->p = saved;
        t->broken = 0;
        t->dirty = 0;
    }
}

/* Apply one op in its own nested transaction; on any failure it leaves no trace. */
static void ls_op_isolated(ls_txn *t, const ledger_op *op)
{
    MDB_txn *parent = t->txn;
    ls_pending saved = t->p;
    int rc = mdb_txn_begin(t->s->env, parent, 0, &t->txn);
    if (rc != MDB_SUCCESS) {
        t->txn = parent;
        ledger_rep_clear(op->rep);
        op->rep->op = op->req->op;
        op->rep->status = (uint16_t)ls_lmdb_fail(t, rc, "begin nested");
        t->broken = 0;
        return;
    }
    t->dirty = 0;
    ls_op_apply(t, op->req, op->rep);
    if (t->broken || op->rep->status != CG_ERR_OK) {
        cg_err err = t->broken ? t->broken_err : (cg_err)op->rep->status;
        mdb_txn_abort(t->txn);
        if (t->broken) {
            ledger_rep_clear(op->rep);
            op->rep->op = op->req->op;
            op->rep->status = (uint16_t)err;
        }
        t->p = saved;
        t->dirty = 0; /* nothing of this op reaches the parent */
    } else if ((rc = mdb_txn_commit(t->txn)) != MDB_SUCCESS) {
        ledger_rep_clear(op->rep);
        op->rep->op = op->req->op;
        op->rep->status = (uint16_t)ls_lmdb_fail(t, rc, "commit nested");
        t->p = saved;
        t->dirty = 0;
    }
    t->txn = parent;
    t->broken = 0;
}

static cg_err ls_meta_put_last_seq(ls_txn *t)
{
    uint8_t b[8];
    for (int i = 7; i >= 0; i--) {
        b[i] = (uint8_t)((t->p.next_seq - 1) >> (8 * (7 - i)));
    }
    return ls_put(t, t->s->db_meta, ls_meta_last_seq, sizeof(ls_meta_last_seq) - 1, b, 8);
}

/*
 * Does this batch hold anything that must survive an OS crash? Settled usage
 * (SETTLE, partial ones too) and definitions do. Reservations do not: SPEC §10
 * lets in-flight reservations vanish with a shard (a settle that finds none is
 * counted as late spend), so reserves, releases, reads and the lease sweep may
 * commit with MDB_NOMETASYNC — one sync instead of two. LMDB keeps integrity
 * with that flag (it defers only the meta page, flushed by the next durable
 * commit), and a process crash (kill -9) loses nothing either way: the page
 * cache survives it. Unknown ops count as durable, so a new op is safe by default.
 */
static int ls_batch_needs_sync(const ledger_op *ops, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        switch (ops[i].req->op) {
        case PROTO_OP_PING:
        case PROTO_OP_AUTH:
        case PROTO_OP_RESERVE:
        case PROTO_OP_RELEASE:
        case PROTO_OP_GET_ORG:
        case PROTO_OP_GET_KEY:
        case PROTO_OP_GET_GROUP:
        case PROTO_OP_GET_CUSTOMER:
        case PROTO_OP_GET_ORG_STATE:
        case PROTO_OP_EVENTS_SINCE:
        case PROTO_OP_USAGE_QUERY:
            continue;
        default:
            return 1;
        }
    }
    return 0;
}

/* Commit t (or abort it when nothing was written) and publish its pending counts. */
static cg_err ls_batch_finish(ls_txn *t, int wrote, uint32_t n, int durable)
{
    ledger_store *s = t->s;
    int rc;
    if (t->p.next_seq != s->last_seq + 1 && ls_meta_put_last_seq(t) != CG_ERR_OK) {
        mdb_txn_abort(t->txn);
        ls_scope_cache_drop(s);
        return t->broken_err;
    }
    if (wrote && (rc = mdb_env_set_flags(s->env, MDB_NOMETASYNC, durable ? 0 : 1)) != 0) {
        mdb_txn_abort(t->txn);
        ls_scope_cache_drop(s);
        return ls_lmdb_fail(t, rc, "set sync flags");
    }
    if (!wrote) {
        mdb_txn_abort(t->txn);
    } else if ((rc = mdb_txn_commit(t->txn)) != MDB_SUCCESS) {
        cg_log(CG_LOG_ERROR, "batch commit failed", "lmdb", mdb_strerror(rc), NULL);
        ls_scope_cache_drop(s);
        return cg_err_from_lmdb(rc);
    } else {
        s->stats.batches++;
        s->stats.metasync_skipped += durable ? 0 : 1;
        if (n > 0) {
            unsigned b = 0;
            while (b + 1 < LEDGER_BATCH_HIST && (n >> (b + 1)) != 0) {
                b++;
            }
            s->stats.batch_hist[b]++;
        }
    }
    s->last_seq = t->p.next_seq - 1;
    s->event_n = t->p.event_n;
    s->stats.ops += n;
    s->stats.late_settles += t->p.late_settles;
    s->stats.leases_expired += t->p.leases_expired;
    s->stats.gc_deleted += t->p.gc_deleted;
    return CG_ERR_OK;
}

/*
 * One attempt at the batch. Returns 1 when the fast path must be abandoned
 * (the caller re-runs isolated), else 0 with the transaction outcome in *out.
 */
static int ls_batch_run(ledger_store *s, const ledger_op *ops, uint32_t n, int64_t now_ms,
                        int isolated, cg_err *out)
{
    ls_txn t = {.s = s, .now_ms = now_ms, .no_cache = isolated};
    int wrote = 0;
    t.p.next_seq = s->last_seq + 1;
    s->event_n = 0;
    int rc = mdb_txn_begin(s->env, NULL, 0, &t.txn);
    if (rc != MDB_SUCCESS) {
        *out = ls_lmdb_fail(&t, rc, "begin");
        return 0;
    }
    if (isolated) {
        ls_sweep_isolated(&t);
    } else if (ls_sweep(&t) != CG_ERR_OK || t.broken) {
        goto retry;
    }
    wrote |= t.dirty;
    for (uint32_t i = 0; i < n; i++) {
        t.dirty = 0;
        if (isolated) {
            ls_op_isolated(&t, &ops[i]);
        } else {
            ls_op_apply(&t, ops[i].req, ops[i].rep);
            if (t.broken || (t.dirty && ops[i].rep->status != CG_ERR_OK)) {
                goto retry;
            }
        }
        wrote |= t.dirty;
    }
    *out = ls_batch_finish(&t, wrote, n, ls_batch_needs_sync(ops, n));
    return 0;
retry:
    mdb_txn_abort(t.txn);
    ls_scope_cache_drop(s); /* entries read in this attempt may hold its uncommitted writes */
    return 1;
}

cg_err ledger_store_apply(ledger_store *s, const ledger_op *ops, uint32_t n)
{
    assert(n <= LEDGER_BATCH_OPS_MAX);
    int64_t now_ms = cg_now_ms();
    cg_err err = CG_ERR_OK;
    if (ls_batch_run(s, ops, n, now_ms, 0, &err)) {
        s->stats.isolated_runs++;
        for (uint32_t i = 0; i < n; i++) {
            ledger_rep_clear(ops[i].rep);
        }
        (void)ls_batch_run(s, ops, n, now_ms, 1, &err);
        ls_scope_cache_drop(s); /* nested aborts undid writes the cache may have seen */
    }
    if (err != CG_ERR_OK) {
        s->stats.commit_errors++;
        s->event_n = 0;
        for (uint32_t i = 0; i < n; i++) {
            ledger_rep_clear(ops[i].rep);
            ops[i].rep->op = ops[i].req->op;
            ops[i].rep->status = (uint16_t)err;
        }
    }
    return err;
}

const proto_event *ledger_store_new_events(const ledger_store *s, size_t *n)
{
    *n = s->event_n;
    return s->events;
}

uint64_t ledger_store_last_seq(const ledger_store *s)
{
    return s->last_seq;
}

const char *ledger_store_shard(const ledger_store *s)
{
    return s->shard;
}

cg_err ledger_store_reader_check(ledger_store *s, int *dead)
{
    int d = 0;
    int rc = mdb_reader_check(s->env, &d);
    if (rc != MDB_SUCCESS) {
        cg_log(CG_LOG_ERROR, "mdb_reader_check failed", "lmdb", mdb_strerror(rc), NULL);
        return cg_err_from_lmdb(rc);
    }
    if (d > 0) {
        cg_logf(CG_LOG_WARN, "cleared %d stale lmdb reader slots", d);
    }
    if (dead != NULL) {
        *dead = d;
    }
    return CG_ERR_OK;
}

void ledger_store_stats_get(const ledger_store *s, ledger_store_stats *out)
{
    *out = s->stats;
}
