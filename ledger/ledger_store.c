/*
 * ledger_store.c — the LMDB environment of a ledger shard and its group-commit
 * batch runner.
 *
 * LMDB layout: one environment per shard directory with the named databases
 * listed in ledger_int.h (orgs, keys, groups, customers, counters, resv,
 * leases, gc, usage, usage_hour, events, meta). Durable default flags: no MDB_NOSYNC, no MDB_WRITEMAP, so a
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
/* The durable lane commits in two phases while the reserve lane ran a batch this recently. */
#define LS_LANE_RECENT_MS 100
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
        t->defs = 1;
    }
}

/* ---- the reservation-env write log of a two-phase batch ---- */

static int ls_rlog_grow(ledger_store *s, size_t bytes)
{
    if (s->rlog_n == s->rlog_cap) {
        size_t cap = s->rlog_cap ? s->rlog_cap * 2 : 256;
        ls_rlog_ent *e = realloc(s->rlog, cap * sizeof(*e));
        if (e == NULL) {
            return -1;
        }
        s->rlog = e;
        s->rlog_cap = cap;
    }
    if (s->rlog_buf_n + bytes > s->rlog_buf_cap) {
        size_t cap = s->rlog_buf_cap ? s->rlog_buf_cap : 16384;
        while (cap < s->rlog_buf_n + bytes) {
            cap *= 2;
        }
        uint8_t *b = realloc(s->rlog_buf, cap);
        if (b == NULL) {
            return -1;
        }
        s->rlog_buf = b;
        s->rlog_buf_cap = cap;
    }
    return 0;
}

/* The reserved sum in txn (absent: 0); -1 if the record is corrupt. */
static int ls_rlog_sum_read(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, int64_t *out)
{
    MDB_val v;
    int rc = mdb_get(txn, dbi, key, &v);
    *out = 0;
    if (rc == MDB_NOTFOUND) {
        return MDB_SUCCESS;
    }
    if (rc != MDB_SUCCESS) {
        return rc;
    }
    if (v.mv_size != 8) {
        return MDB_CORRUPTED;
    }
    *out = (int64_t)ls_le64_get(v.mv_data);
    return MDB_SUCCESS;
}

/*
 * Record a reservation-env write of the running two-phase batch, before it is made in the
 * batch's (later discarded) child transaction: a reserved sum as the delta from its value
 * there, anything else as the put or delete itself.
 */
static cg_err ls_rlog_add(ls_txn *t, MDB_dbi dbi, const void *k, size_t kn, const void *v,
                          size_t vn, int del)
{
    ledger_store *s = t->s;
    ls_rlog_ent e = {.dbi = dbi, .kn = (uint32_t)kn, .vn = del ? 0 : (uint32_t)vn};
    if (dbi == s->rdb_sum) {
        MDB_val key = {.mv_size = kn, .mv_data = (void *)k};
        int64_t old = 0;
        int rc = ls_rlog_sum_read(t->rtxn, dbi & ~LS_RSV_DBI, &key, &old);
        if (rc != MDB_SUCCESS) {
            return ls_lmdb_fail(t, rc, "read reserved sum");
        }
        int64_t now = del || vn != 8 ? 0 : (int64_t)ls_le64_get(v);
        e.kind = LS_RLOG_SUM;
        e.delta = now - old;
        e.pre = e.delta > 0;
        e.vn = 0;
    } else {
        e.kind = del ? LS_RLOG_DEL : LS_RLOG_PUT;
        e.pre = (uint8_t)t->pre_op;
    }
    if (ls_rlog_grow(s, kn + e.vn) != 0) {
        t->broken = 1;
        t->broken_err = CG_ERR_NOMEM;
        return CG_ERR_NOMEM;
    }
    e.off = s->rlog_buf_n;
    memcpy(s->rlog_buf + e.off, k, kn);
    if (e.vn > 0) {
        memcpy(s->rlog_buf + e.off + kn, v, e.vn);
    }
    s->rlog_buf_n += kn + e.vn;
    s->rlog[s->rlog_n++] = e;
    return CG_ERR_OK;
}

/* Apply the recorded writes whose `pre` equals pre in txn (a reservation-env write txn). */
static int ls_rlog_apply(ledger_store *s, MDB_txn *txn, int pre)
{
    for (size_t i = 0; i < s->rlog_n; i++) {
        const ls_rlog_ent *e = &s->rlog[i];
        if (e->pre != pre) {
            continue;
        }
        MDB_dbi dbi = e->dbi & ~LS_RSV_DBI;
        MDB_val key = {.mv_size = e->kn, .mv_data = s->rlog_buf + e->off};
        MDB_val val = {.mv_size = e->vn, .mv_data = s->rlog_buf + e->off + e->kn};
        int rc = MDB_SUCCESS;
        if (e->kind == LS_RLOG_PUT) {
            rc = mdb_put(txn, dbi, &key, &val, 0);
        } else if (e->kind == LS_RLOG_DEL) {
            rc = mdb_del(txn, dbi, &key, NULL);
            rc = rc == MDB_NOTFOUND ? MDB_SUCCESS : rc;
        } else {
            int64_t cur = 0;
            uint8_t b[8];
            if ((rc = ls_rlog_sum_read(txn, dbi, &key, &cur)) != MDB_SUCCESS) {
                return rc;
            }
            int64_t now = cur + e->delta;
            if (now < 0) {
                /* Cannot happen while every hold is in its sum; never let it go negative. */
                cg_log(CG_LOG_WARN, "reserved sum below zero after replay; kept at 0", NULL);
                now = 0;
            }
            if (now == 0) {
                rc = mdb_del(txn, dbi, &key, NULL);
                rc = rc == MDB_NOTFOUND ? MDB_SUCCESS : rc;
            } else {
                ls_le64_put(b, (uint64_t)now);
                val.mv_size = 8;
                val.mv_data = b;
                rc = mdb_put(txn, dbi, &key, &val, 0);
            }
        }
        if (rc != MDB_SUCCESS) {
            return rc;
        }
    }
    return MDB_SUCCESS;
}

/* Whether any recorded write has this `pre`. */
static int ls_rlog_has(const ledger_store *s, int pre)
{
    for (size_t i = 0; i < s->rlog_n; i++) {
        if (s->rlog[i].pre == pre) {
            return 1;
        }
    }
    return 0;
}

cg_err ls_put(ls_txn *t, MDB_dbi dbi, const void *k, size_t kn, const void *v, size_t vn)
{
    MDB_val key = {.mv_size = kn, .mv_data = (void *)k};
    MDB_val val = {.mv_size = vn, .mv_data = (void *)v};
    t->dirty |= (dbi & LS_RSV_DBI) ? LS_DIRTY_RSV : LS_DIRTY_DURABLE;
    ls_def_written(t, dbi);
    if ((dbi & LS_RSV_DBI) && t->s->rlog_on && ls_rlog_add(t, dbi, k, kn, v, vn, 0) != CG_ERR_OK) {
        return t->broken_err;
    }
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
    if ((dbi & LS_RSV_DBI) && t->s->rlog_on &&
        ls_rlog_add(t, dbi, k, kn, NULL, 0, 1) != CG_ERR_OK) {
        return t->broken_err;
    }
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
        {"usage_hour", offsetof(ledger_store, db_usage_hour)},
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

/* Check (or write, for a new store) the schema version and read the last event seq.
 * *pre_rollup = 1 for a store written before usage rollups (built after this txn commits). */
static cg_err ls_open_meta(ledger_store *s, MDB_txn *txn, int *pre_rollup)
{
    MDB_val k = {.mv_size = sizeof(ls_meta_schema) - 1, .mv_data = (void *)ls_meta_schema};
    MDB_val v;
    uint8_t b[4] = {LS_SCHEMA_VERSION, 0, 0, 0};
    int rc = mdb_get(txn, s->db_meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        v.mv_size = sizeof(b);
        v.mv_data = b;
        rc = mdb_put(txn, s->db_meta, &k, &v, 0);
    } else if (rc == MDB_SUCCESS && v.mv_size == 4 &&
               memcmp(v.mv_data, (uint8_t[4]){LS_SCHEMA_PRE_ROLLUP, 0, 0, 0}, 4) == 0) {
        *pre_rollup = 1;
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
    int pre_rollup = 0;
    if ((err = ls_open_dbs(s, txn)) != CG_ERR_OK ||
        (err = ls_open_meta(s, txn, &pre_rollup)) != CG_ERR_OK ||
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
    if (pre_rollup &&
        (err = ls_rollup_upgrade(s, ls_meta_schema, sizeof(ls_meta_schema) - 1)) != CG_ERR_OK) {
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
    if (s->main != NULL) { /* a lane view: the envs are its main store's */
        ledger_store_stats l = s->stats;
        ledger_store_stats *m = &s->main->stats; /* its counters stay in the main store's */
        m->batches += l.batches;
        m->ops += l.ops;
        m->isolated_runs += l.isolated_runs;
        m->commit_errors += l.commit_errors;
        m->nosync_commits += l.nosync_commits;
        for (unsigned i = 0; i < LEDGER_BATCH_HIST; i++) {
            m->batch_hist[i] += l.batch_hist[i];
        }
        if (s->rd != NULL) {
            mdb_txn_abort(s->rd);
        }
        s->main->lane = NULL;
        pthread_mutex_destroy(&s->stats_mu);
        msgpack_sbuffer_destroy(&s->sbuf);
        free(s->scope_cache);
        free(s->events);
        free(s);
        return;
    }
    if (s->lane != NULL) {
        ledger_store_close(s->lane);
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
    free(s->rlog);
    free(s->rlog_buf);
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
    size_t log_n = t->s->rlog_n, log_buf_n = t->s->rlog_buf_n;
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
        t->s->rlog_n = log_n; /* its recorded writes are gone with it */
        t->s->rlog_buf_n = log_buf_n;
        t->broken = 0;
        t->dirty = 0;
    }
}

/* Apply one op in its own nested transaction; on any failure it leaves no trace. */
static void ls_op_isolated(ls_txn *t, const ledger_op *op)
{
    MDB_txn *parent = t->txn, *rparent = t->rtxn;
    ls_pending saved = t->p;
    size_t log_n = t->s->rlog_n, log_buf_n = t->s->rlog_buf_n;
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
    if (t->dirty == 0) {
        /* Nothing of this op reached the parent (every failure path clears dirty): neither
         * may its recorded writes. */
        t->s->rlog_n = log_n;
        t->s->rlog_buf_n = log_buf_n;
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

static void ls_batch_count(ls_txn *t, int dw, int rw, uint32_t n, int durable);

/* A failed commit: logged, the scope cache (which may hold the aborted writes) dropped. */
static cg_err ls_commit_failed(ledger_store *s, const char *what, int rc)
{
    cg_log(CG_LOG_ERROR, what, "lmdb", mdb_strerror(rc), NULL);
    ls_scope_cache_drop(s);
    return cg_err_from_lmdb(rc);
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
        return ls_commit_failed(s, "batch commit failed", rc);
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
    ls_batch_count(t, dw, rw, n, durable);
    return CG_ERR_OK;
}

/* Count a finished batch and publish its pending counts. */
static void ls_batch_count(ls_txn *t, int dw, int rw, uint32_t n, int durable)
{
    ledger_store *s = t->s;
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
}

/*
 * Two-phase finish (a reserve lane is open; docs/ledger-durability.md, "Two writer lanes").
 * The batch ran in the durable write txn t->txn and in a reservation-env child t->rtxn of
 * rtop, recording every reservation-env write. The child is discarded; in rtop the `pre`
 * records (holds taken: positive reserved deltas and the records of RESERVE ops) are applied
 * and committed — the reservation env's write lock is released here, before any device sync;
 * then the durable txn commits with its syncs while the reserve lane runs; then the other
 * records (holds returned, finished reservations) are applied in a new reservation-env txn.
 * At every instant between, a reader of both envs sees each counter's `used` with this
 * batch or without it, and `reserved` with every hold this batch takes and, until phase 2,
 * every hold it returns: too much, never too little.
 */
static cg_err ls_batch_finish2(ls_txn *t, MDB_txn *rtop, int wrote, uint32_t n, int durable)
{
    ledger_store *s = t->s;
    int rc;
    if (t->poisoned) {
        ls_abort2(t);
        mdb_txn_abort(rtop);
        ls_scope_cache_drop(s);
        return CG_ERR_DB;
    }
    if (t->p.next_seq != s->last_seq + 1 && ls_meta_put_last_seq(t) != CG_ERR_OK) {
        ls_abort2(t);
        mdb_txn_abort(rtop);
        ls_scope_cache_drop(s);
        return t->broken_err;
    }
    wrote |= t->dirty;
    int dw = (wrote & LS_DIRTY_DURABLE) != 0, rw = (wrote & LS_DIRTY_RSV) != 0;
    mdb_txn_abort(t->rtxn); /* its writes are in the log */
    t->rtxn = NULL;
    if (dw && (rc = mdb_env_set_flags(s->env, MDB_NOMETASYNC, durable ? 0 : 1)) != 0) {
        mdb_txn_abort(t->txn);
        mdb_txn_abort(rtop);
        ls_scope_cache_drop(s);
        return ls_lmdb_fail(t, rc, "set sync flags");
    }
    /* Phase 1: the holds this batch takes, visible before anything of it is. */
    if (!rw || !ls_rlog_has(s, 1)) {
        mdb_txn_abort(rtop);
    } else {
        rc = ls_rlog_apply(s, rtop, 1);
        if (rc != MDB_SUCCESS) {
            mdb_txn_abort(rtop);
        } else {
            rc = mdb_txn_commit(rtop); /* frees rtop either way; never syncs (MDB_NOSYNC) */
        }
        if (rc != MDB_SUCCESS) {
            mdb_txn_abort(t->txn);
            return ls_commit_failed(s, "reservation env commit failed", rc);
        }
    }
    /* The durable commit: the reservation env is not locked meanwhile. */
    if (!dw) {
        mdb_txn_abort(t->txn);
    } else if ((rc = mdb_txn_commit(t->txn)) != MDB_SUCCESS) {
        /* Holds taken in phase 1 stay until their leases end (over-reservation only). */
        return ls_commit_failed(s, "batch commit failed", rc);
    }
    if (dw && t->defs) {
        atomic_fetch_add(&s->def_epoch, 1); /* before any reply: the lane drops its cache */
    }
    if (dw) {
        s->last_seq = t->p.next_seq - 1;
    }
    /* Phase 2: the holds this batch returns, and the finished records. */
    if (rw && ls_rlog_has(s, 0)) {
        MDB_txn *r2 = NULL;
        rc = mdb_txn_begin(s->renv, NULL, 0, &r2);
        if (rc == MDB_SUCCESS) {
            rc = ls_rlog_apply(s, r2, 0);
            if (rc != MDB_SUCCESS) {
                mdb_txn_abort(r2);
            } else {
                rc = mdb_txn_commit(r2);
            }
        }
        if (rc != MDB_SUCCESS) {
            /* As a crash between the commits: the settles stand (their retries are recognised
             * by the durable SETTLED records), the holds are returned by the lease sweep. */
            return ls_commit_failed(s, "reservation env commit failed", rc);
        }
    }
    ls_batch_count(t, dw, rw, n, durable);
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
    MDB_txn *rtop = NULL; /* two-phase: the reservation env's top txn; t.rtxn is its child */
    int wrote = 0;
    t.p.next_seq = s->last_seq + 1;
    s->event_n = 0;
    s->rlog_n = 0;
    s->rlog_buf_n = 0;
    /* Two-phase only while the lane is in use: it costs the durable lane a write log and
     * two more reservation-env commits per batch, worth it only if reserves arrive on
     * their own (the gateway at low load). Under load reserves travel with settles in
     * mixed jobs and the lane idles. Either mode is safe at any time: a one-phase batch
     * holds the reservation env's lock through its durable commit, so the lane can see
     * nothing between the two commits. */
    s->rlog_on =
        s->lane != NULL && cg_mono_ms() - atomic_load(&s->lane_used_ms) < LS_LANE_RECENT_MS;
    int rc = s->rlog_on ? mdb_txn_begin(s->renv, NULL, 0, &rtop) : MDB_SUCCESS;
    if (rc == MDB_SUCCESS) {
        rc = ls_begin2(&t, NULL, rtop);
        if (rc != MDB_SUCCESS && rtop != NULL) {
            mdb_txn_abort(rtop);
        }
    }
    if (rc != MDB_SUCCESS) {
        s->rlog_on = 0;
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
        t.pre_op = ops[i].req->op == PROTO_OP_RESERVE;
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
    t.pre_op = 0;
    *out = rtop != NULL ? ls_batch_finish2(&t, rtop, wrote, n, ls_batch_needs_sync(ops, n))
                        : ls_batch_finish(&t, wrote, n, ls_batch_needs_sync(ops, n));
    s->rlog_on = 0;
    return 0;
retry:
    ls_abort2(&t);
    if (rtop != NULL) {
        mdb_txn_abort(rtop);
    }
    s->rlog_on = 0;
    ls_scope_cache_drop(s); /* entries read in this attempt may hold its uncommitted writes */
    return 1;
}

/* ---- the reserve lane ---- */

/* Apply one op of a lane batch in its own reservation-env child; on failure it leaves nothing. */
static void ls_lane_op_isolated(ls_txn *t, const ledger_op *op)
{
    MDB_txn *rparent = t->rtxn;
    int rc = mdb_txn_begin(t->s->renv, rparent, 0, &t->rtxn);
    if (rc != MDB_SUCCESS) {
        t->rtxn = rparent;
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
        mdb_txn_abort(t->rtxn);
        if (t->broken) {
            ledger_rep_clear(op->rep);
            op->rep->op = op->req->op;
            op->rep->status = (uint16_t)err;
        }
        t->dirty = 0;
    } else if ((rc = mdb_txn_commit(t->rtxn)) != MDB_SUCCESS) {
        ledger_rep_clear(op->rep);
        op->rep->op = op->req->op;
        op->rep->status = (uint16_t)ls_lmdb_fail(t, rc, "commit nested");
        t->dirty = 0;
    }
    t->rtxn = rparent;
    t->broken = 0;
}

/*
 * One attempt at a lane batch (ledger_store_lane_op: reserves and reads): a reservation-env
 * write txn, begun first (it waits for the durable lane's phase 1 or 2 to end), then a
 * durable-env read txn (MVCC: never waits for the durable writer or its syncs). A durable
 * write would fail (EACCES on a read-only txn); lane ops make none. Returns 1 for a retry
 * in isolated mode, as ls_batch_run.
 */
static int ls_lane_run(ledger_store *s, const ledger_op *ops, uint32_t n, int64_t now_ms,
                       int isolated, cg_err *out)
{
    ls_txn t = {.s = s, .now_ms = now_ms, .no_cache = isolated};
    int wrote = 0;
    t.p.next_seq = 1;
    s->event_n = 0;
    int rc = mdb_txn_begin(s->renv, NULL, 0, &t.rtxn);
    if (rc != MDB_SUCCESS) {
        *out = ls_lmdb_fail(&t, rc, "begin");
        return 0;
    }
    /* The epoch is read before the durable snapshot is taken: a cache filled from a snapshot
     * older than a definition commit is dropped by the next batch, which sees its epoch. */
    uint64_t epoch = atomic_load(&s->main->def_epoch);
    if (epoch != s->seen_epoch) {
        ls_scope_cache_drop(s);
        s->seen_epoch = epoch;
    }
    /* The read txn is kept between batches (reset / renew: no allocation per batch). */
    rc = s->rd != NULL ? mdb_txn_renew(s->rd) : mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->rd);
    if (rc != MDB_SUCCESS) {
        if (s->rd != NULL) {
            mdb_txn_abort(s->rd);
            s->rd = NULL;
        }
        mdb_txn_abort(t.rtxn);
        *out = ls_lmdb_fail(&t, rc, "begin read");
        return 0;
    }
    t.txn = s->rd;
    for (uint32_t i = 0; i < n; i++) {
        t.dirty = 0;
        if (isolated) {
            ls_lane_op_isolated(&t, &ops[i]);
        } else {
            ls_op_apply(&t, ops[i].req, ops[i].rep);
            if (t.broken || (t.dirty && ops[i].rep->status != CG_ERR_OK)) {
                mdb_txn_reset(s->rd);
                mdb_txn_abort(t.rtxn);
                ls_scope_cache_drop(s);
                return 1;
            }
        }
        wrote |= t.dirty;
    }
    mdb_txn_reset(s->rd);
    if (!(wrote & LS_DIRTY_RSV)) {
        mdb_txn_abort(t.rtxn);
    } else if ((rc = mdb_txn_commit(t.rtxn)) != MDB_SUCCESS) {
        cg_log(CG_LOG_ERROR, "reservation env commit failed", "lmdb", mdb_strerror(rc), NULL);
        ls_scope_cache_drop(s);
        *out = cg_err_from_lmdb(rc);
        return 0;
    }
    ls_batch_count(&t, 0, (wrote & LS_DIRTY_RSV) != 0, n, 0);
    *out = CG_ERR_OK;
    return 0;
}

int ledger_store_lane_op(uint8_t op)
{
    switch (op) {
    case PROTO_OP_RESERVE:
    case PROTO_OP_AUTH:
    case PROTO_OP_GET_ORG:
    case PROTO_OP_GET_KEY:
    case PROTO_OP_GET_GROUP:
    case PROTO_OP_GET_CUSTOMER:
    case PROTO_OP_GET_ORG_STATE:
        return 1;
    default:
        return 0;
    }
}

/* Whether every op of the batch may run on the lane. */
static int ls_lane_ops(const ledger_op *ops, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (!ledger_store_lane_op(ops[i].req->op)) {
            return 0;
        }
    }
    return 1;
}

cg_err ledger_store_lane_open(ledger_store *s, ledger_store **out)
{
    if (s == NULL || s->main != NULL || s->lane != NULL) {
        return CG_ERR_INVAL;
    }
    ledger_store *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return CG_ERR_NOMEM;
    }
    l->scope_cache = calloc(LS_SCOPE_CACHE_SLOTS, sizeof(*l->scope_cache));
    if (l->scope_cache == NULL || pthread_mutex_init(&l->stats_mu, NULL) != 0) {
        free(l->scope_cache);
        free(l);
        return CG_ERR_NOMEM;
    }
    msgpack_sbuffer_init(&l->sbuf);
    l->def_gen = 1;
    l->env = s->env;
    l->renv = s->renv;
    l->db_orgs = s->db_orgs;
    l->db_keys = s->db_keys;
    l->db_groups = s->db_groups;
    l->db_customers = s->db_customers;
    l->db_counters = s->db_counters;
    l->db_resv = s->db_resv;
    l->db_leases = s->db_leases;
    l->db_gc = s->db_gc;
    l->db_usage = s->db_usage;
    l->db_usage_hour = s->db_usage_hour;
    l->db_events = s->db_events;
    l->db_meta = s->db_meta;
    l->rdb_resv = s->rdb_resv;
    l->rdb_leases = s->rdb_leases;
    l->rdb_gc = s->rdb_gc;
    l->rdb_sum = s->rdb_sum;
    l->rdb_meta = s->rdb_meta;
    l->ring = s->ring;
    l->shard_index = s->shard_index;
    memcpy(l->shard, s->shard, sizeof(l->shard));
    l->usage_retention_ms = s->usage_retention_ms;
    l->main = s;
    l->seen_epoch = atomic_load(&s->def_epoch);
    s->lane = l;
    *out = l;
    return CG_ERR_OK;
}

cg_err ledger_store_apply(ledger_store *s, const ledger_op *ops, uint32_t n)
{
    assert(n <= LEDGER_BATCH_OPS_MAX);
    int64_t now_ms = cg_now_ms();
    cg_err err = CG_ERR_OK;
    if (s->main != NULL) {
        atomic_store(&s->main->lane_used_ms, cg_mono_ms());
        if (!ls_lane_ops(ops, n)) {
            err = CG_ERR_INVAL; /* the caller routes only lane ops here */
        } else if (ls_lane_run(s, ops, n, now_ms, 0, &err)) {
            s->stats.isolated_runs++;
            for (uint32_t i = 0; i < n; i++) {
                ledger_rep_clear(ops[i].rep);
            }
            (void)ls_lane_run(s, ops, n, now_ms, 1, &err);
            ls_scope_cache_drop(s);
        }
        if (err != CG_ERR_OK) {
            s->stats.commit_errors++;
            for (uint32_t i = 0; i < n; i++) {
                ledger_rep_clear(ops[i].rep);
                ops[i].rep->op = ops[i].req->op;
                ops[i].rep->status = (uint16_t)err;
            }
        }
        pthread_mutex_lock(&s->stats_mu);
        s->stats_pub = s->stats;
        pthread_mutex_unlock(&s->stats_mu);
        return err;
    }
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
    if (s->lane != NULL) { /* the main store's counters include its lane's */
        ledger_store_stats l;
        pthread_mutex_lock(&s->lane->stats_mu);
        l = s->lane->stats_pub;
        pthread_mutex_unlock(&s->lane->stats_mu);
        out->batches += l.batches;
        out->ops += l.ops;
        out->isolated_runs += l.isolated_runs;
        out->commit_errors += l.commit_errors;
        out->nosync_commits += l.nosync_commits;
        for (unsigned i = 0; i < LEDGER_BATCH_HIST; i++) {
            out->batch_hist[i] += l.batch_hist[i];
        }
    }
}

cg_err ledger_store_test_pre_rollup(ledger_store *s, size_t rolled)
{
    MDB_txn *txn = NULL;
    uint8_t b[4] = {LS_SCHEMA_PRE_ROLLUP, 0, 0, 0};
    MDB_val k = {.mv_size = sizeof(ls_meta_schema) - 1, .mv_data = (void *)ls_meta_schema};
    MDB_val v = {.mv_size = sizeof(b), .mv_data = b};
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc == MDB_SUCCESS && (rc = mdb_drop(txn, s->db_usage_hour, 0)) == MDB_SUCCESS &&
        (rc = mdb_put(txn, s->db_meta, &k, &v, 0)) == MDB_SUCCESS) {
        rc = mdb_txn_commit(txn);
        txn = NULL;
    }
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    if (rc != MDB_SUCCESS) {
        return cg_err_from_lmdb(rc);
    }
    size_t records = 0, corrupt = 0;
    int done = 0;
    return rolled == 0 ? CG_ERR_OK
                       : ls_rollup_chunk(s, ls_meta_schema, sizeof(ls_meta_schema) - 1, rolled,
                                         &records, &corrupt, &done);
}
