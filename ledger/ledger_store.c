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
 *
 * Two environments (issue 4, docs/ledger-durability.md): the durable one in
 * the shard directory (definitions, used counters, settled reservations,
 * usage, events) and the reservation env `reservations.mdb` beside it
 * (active / released / expired reservations, their lease and gc indexes and
 * the reserved sums), opened MDB_NOSYNC. A batch runs one write transaction
 * in each (nested in step); the durable one is committed first, with its
 * syncs, and only if it was written; the reservation env's commit never
 * syncs. So a batch of reserves and releases costs no device sync at all,
 * and a settle is confirmed only after its durable commit (SPEC §6). A
 * process crash keeps the page cache, so the reservation env survives
 * kill -9 intact; a different boot id at open means an OS crash (or a
 * reboot) may have torn it, and it is recreated empty.
 */
#include "ledger_store.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cg_clock.h"
#include "cg_log.h"
#include "ledger_int.h"

static const char ls_meta_schema[] = "schema";
static const char ls_meta_last_seq[] = "last_seq";
static const char ls_rmeta_boot_id[] = "boot_id";
/* The reservation env's file (and its lock file, with "-lock") in the shard directory. */
#define LS_RSV_FILE "reservations.mdb"
/* Named databases of the reservation env. */
#define LS_RSV_DBS_MAX 6
/* Where the kernel tells this boot's id. */
#define LS_BOOT_ID_PATH "/proc/sys/kernel/random/boot_id"
#define LS_BOOT_ID_MAX 64

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

MDB_txn *ls_txn_of(ls_txn *t, MDB_dbi *dbi)
{
    if ((*dbi & LS_RSV_DBI) != 0) {
        *dbi &= ~LS_RSV_DBI;
        return t->rtxn;
    }
    return t->txn;
}

cg_err ls_get(ls_txn *t, MDB_dbi dbi, const void *k, size_t kn, MDB_val *val)
{
    MDB_val key = {.mv_size = kn, .mv_data = (void *)k};
    MDB_txn *tx = ls_txn_of(t, &dbi);
    int rc = mdb_get(tx, dbi, &key, val);
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
    t->dirty |= (dbi & LS_RSV_DBI) ? LS_DIRTY_RSV : LS_DIRTY_DURABLE;
    ls_def_written(t, dbi);
    MDB_txn *tx = ls_txn_of(t, &dbi);
    int rc = mdb_put(tx, dbi, &key, &val, 0);
    if (rc != MDB_SUCCESS) {
        return ls_lmdb_fail(t, rc, "put");
    }
    return CG_ERR_OK;
}

cg_err ls_del(ls_txn *t, MDB_dbi dbi, const void *k, size_t kn)
{
    MDB_val key = {.mv_size = kn, .mv_data = (void *)k};
    t->dirty |= (dbi & LS_RSV_DBI) ? LS_DIRTY_RSV : LS_DIRTY_DURABLE;
    ls_def_written(t, dbi);
    MDB_txn *tx = ls_txn_of(t, &dbi);
    int rc = mdb_del(tx, dbi, &key, NULL);
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

/* This boot's id ("" when the kernel does not tell: then a reservation env is never trusted). */
static void ls_boot_id(char out[LS_BOOT_ID_MAX])
{
    out[0] = '\0';
    int fd = open(LS_BOOT_ID_PATH, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    ssize_t n = read(fd, out, LS_BOOT_ID_MAX - 1);
    close(fd);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' ')) {
        n--;
    }
    out[n > 0 ? n : 0] = '\0';
}

/* Open the reservation env's databases; *stale = 1 when it was written under another boot. */
static int ls_rsv_dbs(ledger_store *s, MDB_txn *txn, const char *boot, int fresh, int *stale)
{
    static const struct {
        const char *name;
        size_t off;
    } dbs[] = {
        {"resv", offsetof(ledger_store, rdb_resv)}, {"leases", offsetof(ledger_store, rdb_leases)},
        {"gc", offsetof(ledger_store, rdb_gc)},     {"sum", offsetof(ledger_store, rdb_sum)},
        {"meta", offsetof(ledger_store, rdb_meta)},
    };
    static_assert(sizeof(dbs) / sizeof(dbs[0]) <= LS_RSV_DBS_MAX, "LS_RSV_DBS_MAX too small");
    int rc = MDB_SUCCESS;
    for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
        MDB_dbi *d = (MDB_dbi *)((char *)s + dbs[i].off);
        if ((rc = mdb_dbi_open(txn, dbs[i].name, MDB_CREATE, d)) != MDB_SUCCESS) {
            return rc;
        }
    }
    MDB_val k = {.mv_size = sizeof(ls_rmeta_boot_id) - 1, .mv_data = (void *)ls_rmeta_boot_id};
    MDB_val v;
    rc = mdb_get(txn, s->rdb_meta, &k, &v);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        return rc;
    }
    int same = rc == MDB_SUCCESS && boot[0] != '\0' && v.mv_size == strlen(boot) &&
               memcmp(v.mv_data, boot, v.mv_size) == 0;
    if (!same && !fresh) {
        *stale = 1;
        return MDB_SUCCESS;
    }
    v.mv_size = strlen(boot);
    v.mv_data = (void *)boot;
    rc = same ? MDB_SUCCESS : mdb_put(txn, s->rdb_meta, &k, &v, 0);
    for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
        *(MDB_dbi *)((char *)s + dbs[i].off) |= LS_RSV_DBI;
    }
    return rc;
}

/* Open the reservation env once; *stale as ls_rsv_dbs (the env is then closed again). */
static int ls_rsv_env_try(ledger_store *s, const char *path, uint64_t map_bytes, const char *boot,
                          int *stale)
{
    MDB_txn *txn = NULL;
    int fresh = access(path, F_OK) != 0;
    int rc = mdb_env_create(&s->renv);
    if (rc != MDB_SUCCESS) {
        s->renv = NULL;
        return rc;
    }
    int dead = 0;
    if ((rc = mdb_env_set_maxdbs(s->renv, LS_RSV_DBS_MAX)) != MDB_SUCCESS ||
        (rc = mdb_env_set_mapsize(s->renv, (size_t)map_bytes)) != MDB_SUCCESS ||
        (rc = mdb_env_open(s->renv, path, MDB_NOSUBDIR | MDB_NOSYNC | MDB_NOTLS, 0600)) !=
            MDB_SUCCESS ||
        (rc = mdb_reader_check(s->renv, &dead)) != MDB_SUCCESS ||
        (rc = mdb_txn_begin(s->renv, NULL, 0, &txn)) != MDB_SUCCESS) {
        goto fail;
    }
    if ((rc = ls_rsv_dbs(s, txn, boot, fresh, stale)) != MDB_SUCCESS || *stale) {
        mdb_txn_abort(txn);
        goto fail;
    }
    rc = mdb_txn_commit(txn);
    if (rc == MDB_SUCCESS) {
        rc = mdb_env_sync(s->renv, 1); /* the boot id, so a reboot right now is recognised */
    }
    if (rc == MDB_SUCCESS) {
        return MDB_SUCCESS;
    }
fail:
    mdb_env_close(s->renv);
    s->renv = NULL;
    return rc;
}

/* Open (or recreate, when written under another boot) the reservation env in cfg->dir. */
static cg_err ls_open_rsv_env(ledger_store *s, const ledger_store_cfg *cfg)
{
    char path[4096], lock[4096 + 8], boot[LS_BOOT_ID_MAX];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", cfg->dir, LS_RSV_FILE) >= sizeof(path)) {
        return CG_ERR_INVAL;
    }
    snprintf(lock, sizeof(lock), "%s-lock", path);
    if (cfg->boot_id != NULL) {
        snprintf(boot, sizeof(boot), "%s", cfg->boot_id);
    } else {
        ls_boot_id(boot);
    }
    int stale = 0;
    int rc = ls_rsv_env_try(s, path, cfg->map_bytes, boot, &stale);
    if (rc == MDB_SUCCESS && stale) {
        cg_log(CG_LOG_WARN,
               "reservation env written before a reboot (or unknown boot): recreated empty; "
               "reservations in flight are dropped",
               "path", path, NULL);
        if ((unlink(path) != 0 && errno != ENOENT) || (unlink(lock) != 0 && errno != ENOENT)) {
            cg_log(CG_LOG_ERROR, "cannot remove stale reservation env", "path", path, NULL);
            return CG_ERR_IO;
        }
        stale = 0;
        rc = ls_rsv_env_try(s, path, cfg->map_bytes, boot, &stale);
    }
    if (rc != MDB_SUCCESS || stale) {
        cg_log(CG_LOG_ERROR, "cannot open reservation env", "path", path, "lmdb",
               rc != MDB_SUCCESS ? mdb_strerror(rc) : "stale again", NULL);
        return rc != MDB_SUCCESS ? cg_err_from_lmdb(rc) : CG_ERR_DB;
    }
    return CG_ERR_OK;
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
    if ((err = ls_open_dbs(s, txn)) != CG_ERR_OK || (err = ls_open_meta(s, txn)) != CG_ERR_OK ||
        (err = ls_open_rsv_env(s, cfg)) != CG_ERR_OK) {
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
    if (s->renv != NULL) {
        mdb_env_close(s->renv);
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
    proto_rep_owned_free(rep);
    memset(rep, 0, sizeof(*rep));
}

/* Begin t's transactions in both envs, nested in (parent, rparent) when those are set. */
static int ls_begin2(ls_txn *t, MDB_txn *parent, MDB_txn *rparent)
{
    int rc = mdb_txn_begin(t->s->env, parent, 0, &t->txn);
    if (rc != MDB_SUCCESS) {
        t->txn = parent;
        t->rtxn = rparent;
        return rc;
    }
    if ((rc = mdb_txn_begin(t->s->renv, rparent, 0, &t->rtxn)) != MDB_SUCCESS) {
        mdb_txn_abort(t->txn);
        t->txn = parent;
        t->rtxn = rparent;
    }
    return rc;
}

static void ls_abort2(ls_txn *t)
{
    mdb_txn_abort(t->rtxn);
    mdb_txn_abort(t->txn);
}

/* Commit a nested pair into its parents. If the second commit fails after the first merged,
 * the parents are inconsistent: t->poisoned makes the whole batch fail. */
static int ls_commit2_nested(ls_txn *t)
{
    int rc = mdb_txn_commit(t->rtxn);
    if (rc != MDB_SUCCESS) {
        mdb_txn_abort(t->txn);
        return rc;
    }
    if ((rc = mdb_txn_commit(t->txn)) != MDB_SUCCESS) {
        t->poisoned = 1;
    }
    return rc;
}

/* Sweep in isolated mode: in its own nested transaction, skipped if it fails. */
static void ls_sweep_isolated(ls_txn *t)
{
    MDB_txn *parent = t->txn, *rparent = t->rtxn;
    ls_pending saved = t->p;
    int rc = ls_begin2(t, parent, rparent);
    if (rc != MDB_SUCCESS) {
        cg_log(CG_LOG_ERROR, "cannot begin sweep txn", "lmdb", mdb_strerror(rc), NULL);
        return;
    }
    t->dirty = 0;
    cg_err err = ls_sweep(t);
    if (err == CG_ERR_OK && !t->broken) {
        rc = ls_commit2_nested(t);
        err = rc == MDB_SUCCESS ? CG_ERR_OK : cg_err_from_lmdb(rc);
    } else {
        ls_abort2(t);
    }
    t->txn = parent;
    t->rtxn = rparent;
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
    MDB_txn *parent = t->txn, *rparent = t->rtxn;
    ls_pending saved = t->p;
    int rc = ls_begin2(t, parent, rparent);
    if (rc != MDB_SUCCESS) {
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
        ls_abort2(t);
        if (t->broken) {
            ledger_rep_clear(op->rep);
            op->rep->op = op->req->op;
            op->rep->status = (uint16_t)err;
        }
        t->p = saved;
        t->dirty = 0; /* nothing of this op reaches the parent */
    } else if ((rc = ls_commit2_nested(t)) != MDB_SUCCESS) {
        ledger_rep_clear(op->rep);
        op->rep->op = op->req->op;
        op->rep->status = (uint16_t)ls_lmdb_fail(t, rc, "commit nested");
        t->p = saved;
        t->dirty = 0;
    }
    t->txn = parent;
    t->rtxn = rparent;
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

/*
 * Commit t's two transactions (each aborted instead when nothing was written to it) and
 * publish its pending counts. The durable env commits first: a settle is confirmed only once
 * it is there, and a crash between the two commits leaves at worst a reservation still held
 * for a settled request, which its lease sweep returns (the settle's retry is recognised by
 * the durable SETTLED record). The reservation env's commit never syncs.
 */
static cg_err ls_batch_finish(ls_txn *t, int wrote, uint32_t n, int durable)
{
    ledger_store *s = t->s;
    int rc;
    if (t->poisoned) {
        ls_abort2(t);
        ls_scope_cache_drop(s);
        return CG_ERR_DB;
    }
    if (t->p.next_seq != s->last_seq + 1 && ls_meta_put_last_seq(t) != CG_ERR_OK) {
        ls_abort2(t);
        ls_scope_cache_drop(s);
        return t->broken_err;
    }
    wrote |= t->dirty;
    int dw = (wrote & LS_DIRTY_DURABLE) != 0, rw = (wrote & LS_DIRTY_RSV) != 0;
    if (dw && (rc = mdb_env_set_flags(s->env, MDB_NOMETASYNC, durable ? 0 : 1)) != 0) {
        ls_abort2(t);
        ls_scope_cache_drop(s);
        return ls_lmdb_fail(t, rc, "set sync flags");
    }
    if (!dw) {
        mdb_txn_abort(t->txn);
    } else if ((rc = mdb_txn_commit(t->txn)) != MDB_SUCCESS) {
        mdb_txn_abort(t->rtxn);
        cg_log(CG_LOG_ERROR, "batch commit failed", "lmdb", mdb_strerror(rc), NULL);
        ls_scope_cache_drop(s);
        return cg_err_from_lmdb(rc);
    }
    if (!rw) {
        mdb_txn_abort(t->rtxn);
    } else if ((rc = mdb_txn_commit(t->rtxn)) != MDB_SUCCESS) {
        /* The durable part (settles, definitions) stands; the ops are answered with the error
         * and their retries are recognised there. Reserves of this batch did not happen. */
        cg_log(CG_LOG_ERROR, "reservation env commit failed", "lmdb", mdb_strerror(rc), NULL);
        ls_scope_cache_drop(s);
        if (dw) {
            s->last_seq = t->p.next_seq - 1;
        }
        return cg_err_from_lmdb(rc);
    }
    if (dw || rw) {
        s->stats.batches++;
        s->stats.metasync_skipped += dw && !durable ? 1 : 0;
        s->stats.nosync_commits += dw ? 0 : 1;
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
    int rc = ls_begin2(&t, NULL, NULL);
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
    ls_abort2(&t);
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
    int d = 0, rd = 0;
    int rc = mdb_reader_check(s->env, &d);
    if (rc == MDB_SUCCESS) {
        rc = mdb_reader_check(s->renv, &rd);
        d += rd;
    }
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
