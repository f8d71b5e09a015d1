/*
 * alerter_outbox.c — LMDB storage of cursors and delivery records (contract in
 * alerter_outbox.h).
 *
 * Record value layout (little-endian, version 1):
 *   0 u8 version | 1 u8 state | 2 u16 attempts | 4 u16 url_len | 6 u16 secret_len
 *   8 u16 err_len | 10 u16 id_len | 12 u32 body_len | 16 i64 created_ms | 24 i64 next_ms
 *   32 event id | url | secret | last error | body
 * Every length is checked against its bound when read back, so a damaged value is
 * an error (CG_ERR_DB), never an overrun.
 */
#include "alerter_outbox.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cg_log.h"
#include "cg_ring.h"

#define ALERTER_REC_VERSION 1
#define ALERTER_REC_HDR 32
#define ALERTER_REC_MAX                                                                          \
    (ALERTER_REC_HDR + PROTO_EVENT_ID_MAX + PROTO_URL_MAX + PROTO_SECRET_MAX + ALERTER_ERR_MAX + \
     ALERTER_BODY_MAX)
#define ALERTER_IDX_BYTES (8 + ALERTER_KEY_BYTES)
#define ALERTER_DBS 4

struct alerter_outbox {
    MDB_env *env;
    MDB_dbi cursor_db;
    MDB_dbi outbox_db;
    MDB_dbi due_db;
    MDB_dbi done_db;
    uint8_t scratch[ALERTER_REC_MAX]; /* encode buffer; one thread by contract */
};

/* The one place LMDB codes become cg_err; the original goes to the log. */
static cg_err alerter_db_err(int rc, const char *what)
{
    if (rc == MDB_SUCCESS) {
        return CG_ERR_OK;
    }
    if (rc != MDB_NOTFOUND) {
        cg_log(CG_LOG_ERROR, "lmdb error", "op", what, "lmdb", mdb_strerror(rc), NULL);
    }
    return cg_err_from_lmdb(rc);
}

/* ---- byte helpers -------------------------------------------------------------------- */

static void alerter_put_le(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint64_t alerter_get_le(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

static void alerter_put_be64(uint8_t *p, uint64_t v)
{
    for (size_t i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (56 - 8 * i));
    }
}

static uint64_t alerter_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (size_t i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

/* Index key: time (clamped at 0 so the BE order is the numeric order) + record key. */
static void alerter_idx_key(int64_t t_ms, const uint8_t key[ALERTER_KEY_BYTES],
                            uint8_t out[ALERTER_IDX_BYTES])
{
    alerter_put_be64(out, t_ms < 0 ? 0 : (uint64_t)t_ms);
    memcpy(out + 8, key, ALERTER_KEY_BYTES);
}

void alerter_record_key(const char *event_id, const char *url, uint8_t key[ALERTER_KEY_BYTES])
{
    size_t n = strnlen(event_id, PROTO_EVENT_ID_MAX);
    memset(key, 0, ALERTER_KEY_BYTES);
    memcpy(key, event_id, n);
    alerter_put_be64(key + PROTO_EVENT_ID_MAX, cg_hash64(url, strlen(url)));
}

/* ---- record encoding ----------------------------------------------------------------- */

static size_t alerter_rec_encode(const alerter_record *r, uint8_t *out)
{
    size_t id = strlen(r->event_id), url = strlen(r->url), sec = strlen(r->secret);
    size_t err = strlen(r->last_error);
    out[0] = ALERTER_REC_VERSION;
    out[1] = r->state;
    alerter_put_le(out + 2, r->attempts, 2);
    alerter_put_le(out + 4, url, 2);
    alerter_put_le(out + 6, sec, 2);
    alerter_put_le(out + 8, err, 2);
    alerter_put_le(out + 10, id, 2);
    alerter_put_le(out + 12, r->body_len, 4);
    alerter_put_le(out + 16, (uint64_t)r->created_ms, 8);
    alerter_put_le(out + 24, (uint64_t)r->next_ms, 8);
    size_t o = ALERTER_REC_HDR;
    memcpy(out + o, r->event_id, id);
    o += id;
    memcpy(out + o, r->url, url);
    o += url;
    memcpy(out + o, r->secret, sec);
    o += sec;
    memcpy(out + o, r->last_error, err);
    o += err;
    memcpy(out + o, r->body, r->body_len);
    return o + r->body_len;
}

/* Copy a length-prefixed string out of the value, NUL-terminating it. */
static int alerter_rec_str(const uint8_t *v, size_t *o, size_t n, size_t max, char *dst)
{
    if (n > max) {
        return -1;
    }
    memcpy(dst, v + *o, n);
    dst[n] = '\0';
    *o += n;
    return 0;
}

static cg_err alerter_rec_decode(const MDB_val *key, const MDB_val *val, alerter_record *r)
{
    const uint8_t *v = val->mv_data;
    if (key->mv_size != ALERTER_KEY_BYTES || val->mv_size < ALERTER_REC_HDR ||
        v[0] != ALERTER_REC_VERSION) {
        return CG_ERR_DB;
    }
    size_t url = alerter_get_le(v + 4, 2), sec = alerter_get_le(v + 6, 2);
    size_t err = alerter_get_le(v + 8, 2), id = alerter_get_le(v + 10, 2);
    size_t body = alerter_get_le(v + 12, 4);
    if (ALERTER_REC_HDR + id + url + sec + err + body != val->mv_size || body > ALERTER_BODY_MAX ||
        v[1] > ALERTER_FAILED) {
        return CG_ERR_DB;
    }
    memcpy(r->key, key->mv_data, ALERTER_KEY_BYTES);
    r->state = v[1];
    r->attempts = (uint16_t)alerter_get_le(v + 2, 2);
    r->created_ms = (int64_t)alerter_get_le(v + 16, 8);
    r->next_ms = (int64_t)alerter_get_le(v + 24, 8);
    size_t o = ALERTER_REC_HDR;
    if (alerter_rec_str(v, &o, id, PROTO_EVENT_ID_MAX, r->event_id) != 0 ||
        alerter_rec_str(v, &o, url, PROTO_URL_MAX, r->url) != 0 ||
        alerter_rec_str(v, &o, sec, PROTO_SECRET_MAX, r->secret) != 0 ||
        alerter_rec_str(v, &o, err, ALERTER_ERR_MAX, r->last_error) != 0) {
        return CG_ERR_DB;
    }
    memcpy(r->body, v + o, body);
    r->body_len = (uint32_t)body;
    return CG_ERR_OK;
}

/* ---- open / close -------------------------------------------------------------------- */

/* mkdir -p; existing directories are fine. */
static cg_err alerter_mkdir_p(const char *dir)
{
    char tmp[1024];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof tmp) {
        return CG_ERR_INVAL;
    }
    memcpy(tmp, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0') {
            continue;
        }
        char c = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
            cg_log(CG_LOG_ERROR, "cannot create directory", "dir", tmp, "error", strerror(errno),
                   NULL);
            return CG_ERR_IO;
        }
        tmp[i] = c;
    }
    return CG_ERR_OK;
}

static cg_err alerter_outbox_dbs(alerter_outbox *ob)
{
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(ob->env, NULL, 0, &txn);
    if (rc != MDB_SUCCESS) {
        return alerter_db_err(rc, "txn_begin");
    }
    if ((rc = mdb_dbi_open(txn, "cursor", MDB_CREATE, &ob->cursor_db)) != MDB_SUCCESS ||
        (rc = mdb_dbi_open(txn, "outbox", MDB_CREATE, &ob->outbox_db)) != MDB_SUCCESS ||
        (rc = mdb_dbi_open(txn, "due", MDB_CREATE, &ob->due_db)) != MDB_SUCCESS ||
        (rc = mdb_dbi_open(txn, "done", MDB_CREATE, &ob->done_db)) != MDB_SUCCESS) {
        mdb_txn_abort(txn);
        return alerter_db_err(rc, "dbi_open");
    }
    return alerter_db_err(mdb_txn_commit(txn), "commit");
}

cg_err alerter_outbox_open(const char *dir, uint64_t map_bytes, alerter_outbox **out)
{
    cg_err err = alerter_mkdir_p(dir);
    if (err != CG_ERR_OK) {
        return err;
    }
    alerter_outbox *ob = calloc(1, sizeof *ob);
    if (ob == NULL) {
        return CG_ERR_NOMEM;
    }
    int rc = mdb_env_create(&ob->env);
    if (rc != MDB_SUCCESS) {
        err = alerter_db_err(rc, "env_create");
        ob->env = NULL;
        goto fail;
    }
    if ((rc = mdb_env_set_mapsize(ob->env, (size_t)map_bytes)) != MDB_SUCCESS ||
        (rc = mdb_env_set_maxdbs(ob->env, ALERTER_DBS)) != MDB_SUCCESS ||
        (rc = mdb_env_open(ob->env, dir, 0, 0600)) != MDB_SUCCESS) {
        err = alerter_db_err(rc, "env_open");
        goto fail;
    }
    int dead = 0;
    mdb_reader_check(ob->env, &dead);
    if ((err = alerter_outbox_dbs(ob)) != CG_ERR_OK) {
        goto fail;
    }
    *out = ob;
    return CG_ERR_OK;
fail:
    if (ob->env != NULL) {
        mdb_env_close(ob->env);
    }
    free(ob);
    return err;
}

void alerter_outbox_close(alerter_outbox *ob)
{
    if (ob == NULL) {
        return;
    }
    mdb_env_close(ob->env);
    free(ob);
}

/* ---- transactions and cursors -------------------------------------------------------- */

cg_err alerter_outbox_begin(alerter_outbox *ob, alerter_txn *t)
{
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(ob->env, NULL, 0, &txn);
    if (rc != MDB_SUCCESS) {
        return alerter_db_err(rc, "txn_begin");
    }
    t->ob = ob;
    t->txn = txn;
    return CG_ERR_OK;
}

cg_err alerter_outbox_commit(alerter_txn *t)
{
    int rc = mdb_txn_commit(t->txn);
    t->txn = NULL;
    return alerter_db_err(rc, "commit");
}

void alerter_outbox_abort(alerter_txn *t)
{
    if (t->txn != NULL) {
        mdb_txn_abort(t->txn);
        t->txn = NULL;
    }
}

cg_err alerter_outbox_cursor_get(alerter_outbox *ob, const char *shard, uint64_t *seq)
{
    MDB_txn *txn = NULL;
    MDB_val k = {strlen(shard), (void *)shard}, v;
    int rc = mdb_txn_begin(ob->env, NULL, MDB_RDONLY, &txn);
    if (rc != MDB_SUCCESS) {
        return alerter_db_err(rc, "txn_begin");
    }
    rc = mdb_get(txn, ob->cursor_db, &k, &v);
    cg_err err = CG_ERR_OK;
    if (rc == MDB_NOTFOUND) {
        *seq = 0;
    } else if (rc != MDB_SUCCESS) {
        err = alerter_db_err(rc, "get cursor");
    } else if (v.mv_size != 8) {
        err = CG_ERR_DB;
    } else {
        *seq = alerter_get_be64(v.mv_data);
    }
    mdb_txn_abort(txn);
    return err;
}

cg_err alerter_outbox_cursor_set(alerter_txn *t, const char *shard, uint64_t seq)
{
    uint8_t buf[8];
    alerter_put_be64(buf, seq);
    MDB_val k = {strlen(shard), (void *)shard}, v = {sizeof buf, buf};
    return alerter_db_err(mdb_put(t->txn, t->ob->cursor_db, &k, &v, 0), "put cursor");
}

/* ---- records ------------------------------------------------------------------------- */

/* Write the record value and its index entry (due or done). */
static cg_err alerter_rec_put(alerter_txn *t, const alerter_record *r, unsigned flags)
{
    uint8_t *buf = t->ob->scratch;
    uint8_t idx[ALERTER_IDX_BYTES];
    MDB_val k = {ALERTER_KEY_BYTES, (void *)r->key}, v = {alerter_rec_encode(r, buf), buf};
    int rc = mdb_put(t->txn, t->ob->outbox_db, &k, &v, flags);
    if (rc != MDB_SUCCESS) {
        return alerter_db_err(rc, "put record");
    }
    alerter_idx_key(r->next_ms, r->key, idx);
    MDB_val ik = {sizeof idx, idx}, iv = {0, NULL};
    MDB_dbi db = r->state == ALERTER_PENDING ? t->ob->due_db : t->ob->done_db;
    return alerter_db_err(mdb_put(t->txn, db, &ik, &iv, 0), "put index");
}

cg_err alerter_outbox_create(alerter_txn *t, const alerter_record *r, int *created)
{
    if (r->body_len > ALERTER_BODY_MAX || r->state != ALERTER_PENDING) {
        return CG_ERR_INVAL;
    }
    MDB_val k = {ALERTER_KEY_BYTES, (void *)r->key}, v;
    int rc = mdb_get(t->txn, t->ob->outbox_db, &k, &v);
    if (rc == MDB_SUCCESS) {
        *created = 0;
        return CG_ERR_OK;
    }
    if (rc != MDB_NOTFOUND) {
        return alerter_db_err(rc, "get record");
    }
    cg_err err = alerter_rec_put(t, r, MDB_NOOVERWRITE);
    if (err == CG_ERR_OK) {
        *created = 1;
    }
    return err;
}

cg_err alerter_outbox_update(alerter_txn *t, const alerter_record *r)
{
    alerter_record *old = calloc(1, sizeof *old);
    if (old == NULL) {
        return CG_ERR_NOMEM;
    }
    MDB_val k = {ALERTER_KEY_BYTES, (void *)r->key}, v;
    uint8_t idx[ALERTER_IDX_BYTES];
    int rc = mdb_get(t->txn, t->ob->outbox_db, &k, &v);
    cg_err err = rc == MDB_SUCCESS ? alerter_rec_decode(&k, &v, old) : alerter_db_err(rc, "get");
    if (err != CG_ERR_OK) {
        goto done;
    }
    alerter_idx_key(old->next_ms, old->key, idx);
    MDB_val ik = {sizeof idx, idx};
    MDB_dbi db = old->state == ALERTER_PENDING ? t->ob->due_db : t->ob->done_db;
    rc = mdb_del(t->txn, db, &ik, NULL);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        err = alerter_db_err(rc, "del index");
        goto done;
    }
    err = alerter_rec_put(t, r, 0);
done:
    free(old);
    return err;
}

cg_err alerter_outbox_get_txn(alerter_txn *t, const uint8_t key[ALERTER_KEY_BYTES],
                              alerter_record *out)
{
    MDB_val k = {ALERTER_KEY_BYTES, (void *)key}, v;
    int rc = mdb_get(t->txn, t->ob->outbox_db, &k, &v);
    return rc == MDB_SUCCESS ? alerter_rec_decode(&k, &v, out) : alerter_db_err(rc, "get");
}

cg_err alerter_outbox_get(alerter_outbox *ob, const uint8_t key[ALERTER_KEY_BYTES],
                          alerter_record *out)
{
    MDB_txn *txn = NULL;
    MDB_val k = {ALERTER_KEY_BYTES, (void *)key}, v;
    int rc = mdb_txn_begin(ob->env, NULL, MDB_RDONLY, &txn);
    if (rc != MDB_SUCCESS) {
        return alerter_db_err(rc, "txn_begin");
    }
    rc = mdb_get(txn, ob->outbox_db, &k, &v);
    cg_err err = rc == MDB_SUCCESS ? alerter_rec_decode(&k, &v, out) : alerter_db_err(rc, "get");
    mdb_txn_abort(txn);
    return err;
}

/* ---- scans --------------------------------------------------------------------------- */

/* Load the records named by due-index entries, in index order, until cap or a time
 * past now_ms. Runs inside txn. */
static cg_err alerter_due_scan(alerter_outbox *ob, MDB_txn *txn, int64_t now_ms,
                               alerter_skip_fn skip, void *arg, alerter_record *out, uint32_t cap,
                               uint32_t *n, int64_t *next_ms)
{
    MDB_cursor *cur = NULL;
    MDB_val ik, iv, k, v;
    int rc = mdb_cursor_open(txn, ob->due_db, &cur);
    if (rc != MDB_SUCCESS) {
        return alerter_db_err(rc, "cursor_open");
    }
    cg_err err = CG_ERR_OK;
    uint32_t got = 0;
    int64_t next = INT64_MAX;
    for (rc = mdb_cursor_get(cur, &ik, &iv, MDB_FIRST); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(cur, &ik, &iv, MDB_NEXT)) {
        if (ik.mv_size != ALERTER_IDX_BYTES) {
            err = CG_ERR_DB;
            break;
        }
        int64_t t_ms = (int64_t)alerter_get_be64(ik.mv_data);
        const uint8_t *key = (const uint8_t *)ik.mv_data + 8;
        if (skip != NULL && skip(key, arg)) {
            continue;
        }
        if (t_ms > now_ms || got == cap) {
            next = t_ms > now_ms ? t_ms : now_ms;
            break;
        }
        k.mv_size = ALERTER_KEY_BYTES;
        k.mv_data = (void *)key;
        int grc = mdb_get(txn, ob->outbox_db, &k, &v);
        err = grc == MDB_SUCCESS ? alerter_rec_decode(&k, &v, &out[got])
                                 : alerter_db_err(grc, "get due record");
        if (err != CG_ERR_OK) {
            break;
        }
        got++;
    }
    if (err == CG_ERR_OK && rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        err = alerter_db_err(rc, "cursor_get");
    }
    mdb_cursor_close(cur);
    if (err == CG_ERR_OK) {
        *n = got;
        *next_ms = next;
    }
    return err;
}

cg_err alerter_outbox_due(alerter_outbox *ob, int64_t now_ms, alerter_skip_fn skip, void *arg,
                          alerter_record *out, uint32_t cap, uint32_t *n, int64_t *next_ms)
{
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(ob->env, NULL, MDB_RDONLY, &txn);
    if (rc != MDB_SUCCESS) {
        return alerter_db_err(rc, "txn_begin");
    }
    cg_err err = alerter_due_scan(ob, txn, now_ms, skip, arg, out, cap, n, next_ms);
    mdb_txn_abort(txn);
    return err;
}

/* First key of db: its 8-byte time prefix. */
static cg_err alerter_first_time(MDB_txn *txn, MDB_dbi db, int64_t *t_ms, MDB_val *key_out)
{
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, db, &cur);
    if (rc != MDB_SUCCESS) {
        return alerter_db_err(rc, "cursor_open");
    }
    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    mdb_cursor_close(cur);
    if (rc != MDB_SUCCESS) {
        return alerter_db_err(rc, "cursor_get");
    }
    if (k.mv_size != ALERTER_IDX_BYTES) {
        return CG_ERR_DB;
    }
    *t_ms = (int64_t)alerter_get_be64(k.mv_data);
    if (key_out != NULL) {
        *key_out = k;
    }
    return CG_ERR_OK;
}

cg_err alerter_outbox_next_due(alerter_outbox *ob, int64_t *next_ms)
{
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(ob->env, NULL, MDB_RDONLY, &txn);
    if (rc != MDB_SUCCESS) {
        return alerter_db_err(rc, "txn_begin");
    }
    cg_err err = alerter_first_time(txn, ob->due_db, next_ms, NULL);
    mdb_txn_abort(txn);
    return err;
}

cg_err alerter_outbox_sweep(alerter_outbox *ob, int64_t before_ms, uint32_t max, uint32_t *removed)
{
    alerter_txn t = {NULL, NULL};
    uint32_t n = 0;
    cg_err err = alerter_outbox_begin(ob, &t);
    if (err != CG_ERR_OK) {
        return err;
    }
    while (n < max) {
        int64_t t_ms = 0;
        MDB_val ik = {0, NULL};
        err = alerter_first_time(t.txn, ob->done_db, &t_ms, &ik);
        if (err == CG_ERR_NOTFOUND || (err == CG_ERR_OK && t_ms >= before_ms)) {
            break; /* nothing (more) old enough */
        }
        if (err == CG_ERR_OK && ik.mv_data == NULL) {
            err = CG_ERR_DB;
        }
        if (err != CG_ERR_OK) {
            goto fail;
        }
        uint8_t idx[ALERTER_IDX_BYTES];
        memcpy(idx, ik.mv_data, sizeof idx); /* copy out before the deletes move pages */
        MDB_val k = {ALERTER_KEY_BYTES, idx + 8}, dk = {sizeof idx, idx};
        int rc = mdb_del(t.txn, ob->outbox_db, &k, NULL);
        if (rc == MDB_SUCCESS || rc == MDB_NOTFOUND) {
            rc = mdb_del(t.txn, ob->done_db, &dk, NULL);
        }
        if (rc != MDB_SUCCESS) {
            err = alerter_db_err(rc, "sweep del");
            goto fail;
        }
        n++;
    }
    if (n == 0) {
        alerter_outbox_abort(&t);
    } else if ((err = alerter_outbox_commit(&t)) != CG_ERR_OK) {
        return err;
    }
    *removed = n;
    return CG_ERR_OK;
fail:
    alerter_outbox_abort(&t);
    return err;
}

cg_err alerter_outbox_count(alerter_outbox *ob, uint64_t counts[3])
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int rc = mdb_txn_begin(ob->env, NULL, MDB_RDONLY, &txn);
    if (rc != MDB_SUCCESS) {
        return alerter_db_err(rc, "txn_begin");
    }
    if ((rc = mdb_cursor_open(txn, ob->outbox_db, &cur)) != MDB_SUCCESS) {
        mdb_txn_abort(txn);
        return alerter_db_err(rc, "cursor_open");
    }
    counts[0] = counts[1] = counts[2] = 0;
    cg_err err = CG_ERR_OK;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *p = v.mv_data;
        if (v.mv_size < ALERTER_REC_HDR || p[1] > ALERTER_FAILED) {
            err = CG_ERR_DB;
            break;
        }
        counts[p[1]]++;
    }
    if (err == CG_ERR_OK && rc != MDB_NOTFOUND) {
        err = alerter_db_err(rc, "cursor_get");
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return err;
}
