/*
 * alerter_outbox.c — LMDB storage of cursors and delivery records (contract in
 * alerter_outbox.h).
 *
 * Record value layout (little-endian, version 2):
 *   0 u8 version | 1 u8 state | 2 u16 attempts | 4 u16 url_len | 6 u16 secret_len
 *   8 u16 err_len | 10 u16 id_len | 12 u32 body_len | 16 i64 created_ms | 24 i64 next_ms
 *   32 i64 last_ms | 40 u8 channel | 41 u8 event type | 42 u16 org_len | 44 4 bytes zero
 *   48 event id | url | secret | last error | org | body
 * Version 1 (read only) had a 32-byte header and no last_ms, channel, type or org.
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

#define ALERTER_REC_VERSION 2
#define ALERTER_REC_HDR 48
#define ALERTER_REC_HDR_V1 32
#define ALERTER_REC_MAX                                                                          \
    (ALERTER_REC_HDR + PROTO_EVENT_ID_MAX + PROTO_URL_MAX + PROTO_SECRET_MAX + ALERTER_ERR_MAX + \
     PROTO_ID_MAX + ALERTER_BODY_MAX)
#define ALERTER_IDX_BYTES (8 + ALERTER_KEY_BYTES)
#define ALERTER_DBS 5
/* Endpoint value: i64 disabled_ms | u16 org_len | u16 url_len | org | url. */
#define ALERTER_EP_HDR 12
#define ALERTER_EP_MAX (ALERTER_EP_HDR + PROTO_ID_MAX + PROTO_URL_MAX)

struct alerter_outbox {
    MDB_env *env;
    MDB_dbi cursor_db;
    MDB_dbi outbox_db;
    MDB_dbi due_db;
    MDB_dbi done_db;
    MDB_dbi endpoint_db;
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
    size_t err = strlen(r->last_error), org = strlen(r->org);
    memset(out, 0, ALERTER_REC_HDR);
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
    alerter_put_le(out + 32, (uint64_t)r->last_ms, 8);
    out[40] = r->channel;
    out[41] = r->type;
    alerter_put_le(out + 42, org, 2);
    size_t o = ALERTER_REC_HDR;
    memcpy(out + o, r->event_id, id);
    o += id;
    memcpy(out + o, r->url, url);
    o += url;
    memcpy(out + o, r->secret, sec);
    o += sec;
    memcpy(out + o, r->last_error, err);
    o += err;
    memcpy(out + o, r->org, org);
    o += org;
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
    if (key->mv_size != ALERTER_KEY_BYTES || val->mv_size < ALERTER_REC_HDR_V1 ||
        (v[0] != ALERTER_REC_VERSION && v[0] != 1) ||
        (v[0] == ALERTER_REC_VERSION && val->mv_size < ALERTER_REC_HDR)) {
        return CG_ERR_DB;
    }
    int v1 = v[0] == 1;
    size_t hdr = v1 ? ALERTER_REC_HDR_V1 : ALERTER_REC_HDR;
    size_t url = alerter_get_le(v + 4, 2), sec = alerter_get_le(v + 6, 2);
    size_t err = alerter_get_le(v + 8, 2), id = alerter_get_le(v + 10, 2);
    size_t body = alerter_get_le(v + 12, 4), org = v1 ? 0 : alerter_get_le(v + 42, 2);
    if (hdr + id + url + sec + err + org + body != val->mv_size || body > ALERTER_BODY_MAX ||
        v[1] > ALERTER_FAILED) {
        return CG_ERR_DB;
    }
    memcpy(r->key, key->mv_data, ALERTER_KEY_BYTES);
    r->state = v[1];
    r->attempts = (uint16_t)alerter_get_le(v + 2, 2);
    r->created_ms = (int64_t)alerter_get_le(v + 16, 8);
    r->next_ms = (int64_t)alerter_get_le(v + 24, 8);
    r->last_ms = v1 ? 0 : (int64_t)alerter_get_le(v + 32, 8);
    r->channel = v1 ? ALERTER_CH_WEBHOOK : v[40];
    r->type = v1 ? 0xff : v[41];
    size_t o = hdr;
    if (alerter_rec_str(v, &o, id, PROTO_EVENT_ID_MAX, r->event_id) != 0 ||
        alerter_rec_str(v, &o, url, PROTO_URL_MAX, r->url) != 0 ||
        alerter_rec_str(v, &o, sec, PROTO_SECRET_MAX, r->secret) != 0 ||
        alerter_rec_str(v, &o, err, ALERTER_ERR_MAX, r->last_error) != 0 ||
        alerter_rec_str(v, &o, org, PROTO_ID_MAX, r->org) != 0) {
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
        (rc = mdb_dbi_open(txn, "done", MDB_CREATE, &ob->done_db)) != MDB_SUCCESS ||
        (rc = mdb_dbi_open(txn, "endpoint", MDB_CREATE, &ob->endpoint_db)) != MDB_SUCCESS) {
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

/* A read-only transaction and a cursor on db in it; the caller closes cur and aborts txn. */
static cg_err alerter_ro_cursor(alerter_outbox *ob, MDB_dbi db, MDB_txn **txn, MDB_cursor **cur)
{
    int rc = mdb_txn_begin(ob->env, NULL, MDB_RDONLY, txn);
    if (rc != MDB_SUCCESS) {
        return alerter_db_err(rc, "txn_begin");
    }
    if ((rc = mdb_cursor_open(*txn, db, cur)) != MDB_SUCCESS) {
        mdb_txn_abort(*txn);
        return alerter_db_err(rc, "cursor_open");
    }
    return CG_ERR_OK;
}

cg_err alerter_outbox_count(alerter_outbox *ob, uint64_t counts[3])
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int rc;
    cg_err err = alerter_ro_cursor(ob, ob->outbox_db, &txn, &cur);
    if (err != CG_ERR_OK) {
        return err;
    }
    counts[0] = counts[1] = counts[2] = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *p = v.mv_data;
        if (v.mv_size < ALERTER_REC_HDR_V1 || p[1] > ALERTER_FAILED) {
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

/* ---- the delivery-state API ---------------------------------------------------------- */

/* Visit the records of one index db in the given direction; *left counts down. */
static cg_err alerter_list_idx(alerter_outbox *ob, MDB_txn *txn, MDB_dbi db, int newest_first,
                               uint32_t *left, alerter_visit_fn fn, void *arg, int *stopped,
                               alerter_record *r)
{
    MDB_cursor *cur = NULL;
    MDB_val ik, iv, k, v;
    int rc = mdb_cursor_open(txn, db, &cur);
    if (rc != MDB_SUCCESS) {
        return alerter_db_err(rc, "cursor_open");
    }
    cg_err err = CG_ERR_OK;
    MDB_cursor_op first = newest_first ? MDB_LAST : MDB_FIRST;
    MDB_cursor_op next = newest_first ? MDB_PREV : MDB_NEXT;
    for (rc = mdb_cursor_get(cur, &ik, &iv, first); rc == MDB_SUCCESS && *left > 0 && !*stopped;
         rc = mdb_cursor_get(cur, &ik, &iv, next)) {
        if (ik.mv_size != ALERTER_IDX_BYTES) {
            err = CG_ERR_DB;
            break;
        }
        k.mv_size = ALERTER_KEY_BYTES;
        k.mv_data = (uint8_t *)ik.mv_data + 8;
        int grc = mdb_get(txn, ob->outbox_db, &k, &v);
        if (grc == MDB_NOTFOUND) {
            continue;
        }
        err = grc == MDB_SUCCESS ? alerter_rec_decode(&k, &v, r) : alerter_db_err(grc, "get");
        if (err != CG_ERR_OK) {
            break;
        }
        (*left)--;
        *stopped = fn(r, arg) != 0;
    }
    if (err == CG_ERR_OK && rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        err = alerter_db_err(rc, "cursor_get");
    }
    mdb_cursor_close(cur);
    return err;
}

cg_err alerter_outbox_list(alerter_outbox *ob, int state, uint32_t max, alerter_visit_fn fn,
                           void *arg)
{
    MDB_txn *txn = NULL;
    alerter_record *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return CG_ERR_NOMEM;
    }
    int rc = mdb_txn_begin(ob->env, NULL, MDB_RDONLY, &txn);
    if (rc != MDB_SUCCESS) {
        free(r);
        return alerter_db_err(rc, "txn_begin");
    }
    cg_err err = CG_ERR_OK;
    int stopped = 0;
    uint32_t left = max;
    /* A finished-state filter walks `done`, whose records are both states: fn sees both
     * and filters; pending ones come from `due` only. */
    if (state < 0 || state == ALERTER_PENDING) {
        err = alerter_list_idx(ob, txn, ob->due_db, 0, &left, fn, arg, &stopped, r);
    }
    if (err == CG_ERR_OK && state != ALERTER_PENDING) {
        err = alerter_list_idx(ob, txn, ob->done_db, 1, &left, fn, arg, &stopped, r);
    }
    mdb_txn_abort(txn);
    free(r);
    return err;
}

static void alerter_ep_key(const char *url, uint8_t k[8])
{
    alerter_put_be64(k, cg_hash64(url, strlen(url)));
}

static size_t alerter_ep_encode(const char *org, const char *url, int64_t disabled_ms, uint8_t *out)
{
    size_t on = strnlen(org, PROTO_ID_MAX), un = strnlen(url, PROTO_URL_MAX);
    alerter_put_le(out, (uint64_t)disabled_ms, 8);
    alerter_put_le(out + 8, on, 2);
    alerter_put_le(out + 10, un, 2);
    memcpy(out + ALERTER_EP_HDR, org, on);
    memcpy(out + ALERTER_EP_HDR + on, url, un);
    return ALERTER_EP_HDR + on + un;
}

static cg_err alerter_ep_decode(const MDB_val *k, const MDB_val *v, alerter_endpoint *e)
{
    const uint8_t *p = v->mv_data;
    if (k->mv_size != 8 || v->mv_size < ALERTER_EP_HDR) {
        return CG_ERR_DB;
    }
    size_t on = alerter_get_le(p + 8, 2), un = alerter_get_le(p + 10, 2);
    if (on > PROTO_ID_MAX || un > PROTO_URL_MAX || ALERTER_EP_HDR + on + un != v->mv_size) {
        return CG_ERR_DB;
    }
    e->id = alerter_get_be64(k->mv_data);
    e->disabled_ms = (int64_t)alerter_get_le(p, 8);
    memcpy(e->org, p + ALERTER_EP_HDR, on);
    e->org[on] = '\0';
    memcpy(e->url, p + ALERTER_EP_HDR + on, un);
    e->url[un] = '\0';
    return CG_ERR_OK;
}

static cg_err alerter_ep_put(MDB_txn *txn, MDB_dbi db, const char *org, const char *url,
                             int64_t disabled_ms, int only_new)
{
    uint8_t k[8], buf[ALERTER_EP_MAX];
    alerter_ep_key(url, k);
    MDB_val kv = {sizeof k, k}, vv = {alerter_ep_encode(org, url, disabled_ms, buf), buf};
    int rc = mdb_put(txn, db, &kv, &vv, only_new ? MDB_NOOVERWRITE : 0);
    return rc == MDB_KEYEXIST ? CG_ERR_OK : alerter_db_err(rc, "put endpoint");
}

cg_err alerter_outbox_endpoint_seen(alerter_txn *t, const char *org, const char *url)
{
    return alerter_ep_put(t->txn, t->ob->endpoint_db, org, url, 0, 1);
}

cg_err alerter_outbox_endpoint_disable(alerter_txn *t, const char *org, const char *url,
                                       int64_t now_ms)
{
    uint8_t k[8];
    alerter_ep_key(url, k);
    MDB_val kv = {sizeof k, k}, vv;
    int rc = mdb_get(t->txn, t->ob->endpoint_db, &kv, &vv);
    if (rc == MDB_SUCCESS) {
        alerter_endpoint e;
        cg_err err = alerter_ep_decode(&kv, &vv, &e);
        if (err != CG_ERR_OK) {
            return err;
        }
        if (e.disabled_ms != 0) {
            return CG_ERR_OK;
        }
        org = e.org[0] != '\0' ? e.org : org;
        return alerter_ep_put(t->txn, t->ob->endpoint_db, org, url, now_ms > 0 ? now_ms : 1, 0);
    }
    if (rc != MDB_NOTFOUND) {
        return alerter_db_err(rc, "get endpoint");
    }
    return alerter_ep_put(t->txn, t->ob->endpoint_db, org, url, now_ms > 0 ? now_ms : 1, 0);
}

cg_err alerter_outbox_endpoint_enable(alerter_outbox *ob, uint64_t id)
{
    alerter_txn t = {NULL, NULL};
    uint8_t k[8];
    alerter_put_be64(k, id);
    MDB_val kv = {sizeof k, k}, vv;
    cg_err err = alerter_outbox_begin(ob, &t);
    if (err != CG_ERR_OK) {
        return err;
    }
    int rc = mdb_get(t.txn, ob->endpoint_db, &kv, &vv);
    alerter_endpoint e;
    err = rc == MDB_SUCCESS ? alerter_ep_decode(&kv, &vv, &e) : alerter_db_err(rc, "get endpoint");
    if (err == CG_ERR_OK) {
        err = alerter_ep_put(t.txn, ob->endpoint_db, e.org, e.url, 0, 0);
    }
    if (err != CG_ERR_OK) {
        alerter_outbox_abort(&t);
        return err;
    }
    return alerter_outbox_commit(&t);
}

cg_err alerter_outbox_endpoint_state(alerter_outbox *ob, const char *url, int64_t *disabled_ms)
{
    MDB_txn *txn = NULL;
    uint8_t k[8];
    alerter_ep_key(url, k);
    MDB_val kv = {sizeof k, k}, vv;
    int rc = mdb_txn_begin(ob->env, NULL, MDB_RDONLY, &txn);
    if (rc != MDB_SUCCESS) {
        return alerter_db_err(rc, "txn_begin");
    }
    rc = mdb_get(txn, ob->endpoint_db, &kv, &vv);
    cg_err err = CG_ERR_OK;
    *disabled_ms = 0;
    if (rc == MDB_SUCCESS) {
        alerter_endpoint e;
        if ((err = alerter_ep_decode(&kv, &vv, &e)) == CG_ERR_OK) {
            *disabled_ms = e.disabled_ms;
        }
    } else if (rc != MDB_NOTFOUND) {
        err = alerter_db_err(rc, "get endpoint");
    }
    mdb_txn_abort(txn);
    return err;
}

cg_err alerter_outbox_endpoints(alerter_outbox *ob, alerter_endpoint_fn fn, void *arg)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int rc;
    cg_err err = alerter_ro_cursor(ob, ob->endpoint_db, &txn, &cur);
    if (err != CG_ERR_OK) {
        return err;
    }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        alerter_endpoint e;
        if ((err = alerter_ep_decode(&k, &v, &e)) != CG_ERR_OK || fn(&e, arg) != 0) {
            break;
        }
    }
    if (err == CG_ERR_OK && rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        err = alerter_db_err(rc, "cursor_get");
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return err;
}

cg_err alerter_outbox_pending(alerter_outbox *ob, uint64_t *n)
{
    MDB_txn *txn = NULL;
    MDB_stat st;
    int rc = mdb_txn_begin(ob->env, NULL, MDB_RDONLY, &txn);
    if (rc != MDB_SUCCESS) {
        return alerter_db_err(rc, "txn_begin");
    }
    rc = mdb_stat(txn, ob->due_db, &st);
    mdb_txn_abort(txn);
    if (rc != MDB_SUCCESS) {
        return alerter_db_err(rc, "stat");
    }
    *n = st.ms_entries;
    return CG_ERR_OK;
}
