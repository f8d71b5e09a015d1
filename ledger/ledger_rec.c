/*
 * ledger_rec.c — the ledger store's LMDB keys, record encodings and scope
 * resolution.
 *
 * Keys put big-endian numbers first where order matters (lease and gc
 * indexes by time, events and usage by seq / time), so a cursor walks them in
 * order. Counter and reservation values are small fixed-layout little-endian
 * records; org, key, group, customer-override, usage and event records use
 * the proto encoders, so a record read from disk is checked exactly like one
 * from the network. Every decoder checks lengths and ranges: a corrupt record
 * is CG_ERR_DB (logged), never a crash, and values are copied out of LMDB
 * before the transaction can end.
 *
 * Usage: ls_usage_put writes a record once (a record already stored under its
 * (ts, request id) is left alone) and adds it to its hourly rollup in the same
 * transaction (db_usage_hour, docs/contracts.md "Usage rollups").
 *
 * Scopes: a route names a key, group, customer or org. Key, group and org
 * scopes need their record; a customer scope exists whether or not an
 * override record does, because its defaults travel inline with the request.
 */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cg_log.h"
#include "ledger_int.h"

#define LS_COUNTER_BYTES 20
/* Reservation records: v1 (issue 2) items carry no limit snapshot; v2 items do. Both are
 * read, v2 is written, so a store upgraded within a dedup window keeps its reservations. */
#define LS_RESV_VERSION_1 1
#define LS_RESV_VERSION 2
#define LS_RESV_HEAD_BYTES 44
#define LS_ITEM_V1_BYTES 37
/* v2 item: v1 fields, then window kind u8, sliding_s u32, max i64, action u8, warn_n u8,
 * warn_bp u16 x PROTO_WARN_MAX. */
#define LS_ITEM_BYTES (LS_ITEM_V1_BYTES + 1 + 4 + 8 + 1 + 1 + 2 * PROTO_WARN_MAX)

/* ---- byte helpers ---- */

static void ls_be64_put(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

uint64_t ls_be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

void ls_le64_put(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

uint64_t ls_le64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static void ls_le32_put(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void ls_le16_put(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static uint16_t ls_le16_get(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t ls_le32_get(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Signed times and indexes are stored biased so that big-endian order is numeric order. */
static uint64_t ls_bias(int64_t v)
{
    return (uint64_t)v ^ (UINT64_C(1) << 63);
}

/* ---- keys ---- */

static void ls_key_append(ls_key *k, const void *p, size_t n)
{
    /* Callers only pass bounded ids and routes: LS_KEY_MAX covers the longest key. */
    assert(k->n + n <= LS_KEY_MAX);
    memcpy(k->b + k->n, p, n);
    k->n += n;
}

void ls_key_counter(ls_key *k, const char *route, uint32_t limit_id, int64_t period_index)
{
    uint8_t tail[13];
    k->n = 0;
    ls_key_append(k, route, strnlen(route, PROTO_ROUTE_MAX));
    tail[0] = 0;
    tail[1] = (uint8_t)(limit_id >> 24);
    tail[2] = (uint8_t)(limit_id >> 16);
    tail[3] = (uint8_t)(limit_id >> 8);
    tail[4] = (uint8_t)limit_id;
    ls_be64_put(tail + 5, ls_bias(period_index));
    ls_key_append(k, tail, sizeof(tail));
}

void ls_key_resv(ls_key *k, const char *request_id, const char *route)
{
    k->n = 0;
    ls_key_append(k, request_id, strnlen(request_id, PROTO_REQID_MAX));
    ls_key_append(k, "", 1);
    ls_key_append(k, route, strnlen(route, PROTO_ROUTE_MAX));
}

void ls_key_index(ls_key *k, int64_t at_ms, const char *request_id, const char *route)
{
    ls_key rk;
    ls_key_resv(&rk, request_id, route);
    ls_be64_put(k->b, ls_bias(at_ms));
    k->n = 8;
    ls_key_append(k, rk.b, rk.n);
}

int64_t ls_index_time(const ls_key *k)
{
    return (int64_t)(ls_be64_get(k->b) ^ (UINT64_C(1) << 63));
}

void ls_key_u64(ls_key *k, uint64_t v)
{
    ls_be64_put(k->b, v);
    k->n = 8;
}

void ls_key_usage(ls_key *k, int64_t ts_ms, const char *request_id)
{
    ls_be64_put(k->b, ls_bias(ts_ms));
    k->n = 8;
    ls_key_append(k, request_id, strnlen(request_id, PROTO_REQID_MAX));
}

/* ---- counters ---- */

cg_err ls_counter_get(ls_txn *t, const char *route, uint32_t limit_id, int64_t period_index,
                      ls_counter *out)
{
    ls_key k;
    MDB_val v;
    ls_key_counter(&k, route, limit_id, period_index);
    cg_err err = ls_get(t, t->s->db_counters, k.b, k.n, &v);
    if (err == CG_ERR_NOTFOUND) {
        memset(out, 0, sizeof(*out));
        return ls_reserved_get(t, &k, &out->reserved);
    }
    if (err != CG_ERR_OK) {
        return err;
    }
    const uint8_t *p = v.mv_data;
    ls_counter c;
    if (v.mv_size != LS_COUNTER_BYTES) {
        goto corrupt;
    }
    /* The durable record's reserved field is not read: the reservation env holds the sum
     * (a store written before issue 4 may still carry one there). */
    c.used = (int64_t)ls_le64_get(p);
    c.fired = ls_le32_get(p + 16);
    if (c.used < 0) {
        goto corrupt;
    }
    *out = c;
    return ls_reserved_get(t, &k, &out->reserved);
corrupt:
    cg_log(CG_LOG_ERROR, "corrupt counter record", "route", route, NULL);
    return CG_ERR_DB;
}

cg_err ls_counter_put(ls_txn *t, const char *route, uint32_t limit_id, int64_t period_index,
                      const ls_counter *c, int durable)
{
    ls_key k;
    uint8_t b[LS_COUNTER_BYTES];
    ls_key_counter(&k, route, limit_id, period_index);
    if (durable) {
        ls_le64_put(b, (uint64_t)c->used);
        ls_le64_put(b + 8, 0); /* reserved lives in the reservation env */
        ls_le32_put(b + 16, c->fired);
        cg_err err = ls_put(t, t->s->db_counters, k.b, k.n, b, sizeof(b));
        if (err != CG_ERR_OK) {
            return err;
        }
    }
    return ls_reserved_put(t, &k, c->reserved);
}

cg_err ls_reserved_get(ls_txn *t, const ls_key *k, int64_t *out)
{
    MDB_val v;
    cg_err err = ls_get(t, t->s->rdb_sum, k->b, k->n, &v);
    *out = 0;
    if (err == CG_ERR_NOTFOUND) {
        return CG_ERR_OK;
    }
    if (err != CG_ERR_OK) {
        return err;
    }
    if (v.mv_size != 8 || (int64_t)ls_le64_get(v.mv_data) < 0) {
        cg_log(CG_LOG_ERROR, "corrupt reserved sum", NULL);
        return CG_ERR_DB;
    }
    *out = (int64_t)ls_le64_get(v.mv_data);
    return CG_ERR_OK;
}

cg_err ls_reserved_put(ls_txn *t, const ls_key *k, int64_t reserved)
{
    uint8_t b[8];
    if (reserved <= 0) {
        return ls_del(t, t->s->rdb_sum, k->b, k->n); /* absent = 0 (a missing key is OK) */
    }
    ls_le64_put(b, (uint64_t)reserved);
    return ls_put(t, t->s->rdb_sum, k->b, k->n, b, sizeof(b));
}

/* ---- reservations ---- */

/* The limit snapshot of a v2 item; -1 if out of range. */
static int ls_item_snapshot_decode(const uint8_t *q, ls_item *it)
{
    it->window.kind = q[0];
    it->window.sliding_s = ls_le32_get(q + 1);
    it->max = (int64_t)ls_le64_get(q + 5);
    it->action = q[13];
    it->warn_n = q[14];
    for (uint8_t j = 0; j < PROTO_WARN_MAX; j++) {
        it->warn_bp[j] = ls_le16_get(q + 15 + (size_t)2 * j);
    }
    return it->window.kind > CG_WIN_SLIDING || it->max < 0 || it->warn_n > PROTO_WARN_MAX ? -1 : 0;
}

static int ls_item_decode(const uint8_t *q, int v2, ls_item *it)
{
    memset(it, 0, sizeof(*it));
    it->limit_id = ls_le32_get(q);
    it->metric = q[4];
    it->period_index = (int64_t)ls_le64_get(q + 5);
    it->period_start_ms = (int64_t)ls_le64_get(q + 13);
    it->period_end_ms = (int64_t)ls_le64_get(q + 21);
    it->amount = (int64_t)ls_le64_get(q + 29);
    if (it->metric >= PROTO_METRIC_COUNT_ || it->amount < 0) {
        return -1;
    }
    return v2 ? ls_item_snapshot_decode(q + LS_ITEM_V1_BYTES, it) : 0;
}

static int ls_resv_decode(const uint8_t *p, size_t n, ls_resv *r)
{
    if (n < LS_RESV_HEAD_BYTES || (p[0] != LS_RESV_VERSION && p[0] != LS_RESV_VERSION_1)) {
        return -1;
    }
    int v2 = p[0] == LS_RESV_VERSION;
    size_t item_bytes = v2 ? LS_ITEM_BYTES : LS_ITEM_V1_BYTES;
    r->state = p[1];
    r->late = p[2];
    r->item_n = p[3];
    if (r->state < LS_RESV_ACTIVE || r->state > LS_RESV_EXPIRED || r->item_n > PROTO_LIMITS_MAX ||
        n != LS_RESV_HEAD_BYTES + (size_t)r->item_n * item_bytes) {
        return -1;
    }
    r->created_ms = (int64_t)ls_le64_get(p + 4);
    r->expires_ms = (int64_t)ls_le64_get(p + 12);
    r->settled.cost_nusd = (int64_t)ls_le64_get(p + 20);
    r->settled.tokens = (int64_t)ls_le64_get(p + 28);
    r->settled.requests = (int64_t)ls_le64_get(p + 36);
    for (uint8_t i = 0; i < r->item_n; i++) {
        if (ls_item_decode(p + LS_RESV_HEAD_BYTES + (size_t)i * item_bytes, v2, &r->items[i]) !=
            0) {
            return -1;
        }
    }
    return 0;
}

void ls_item_limit(const ls_item *it, proto_limit *out)
{
    memset(out, 0, sizeof(*out));
    out->id = it->limit_id;
    out->metric = it->metric;
    out->window = it->window;
    out->max = it->max;
    out->action = it->action;
    out->warn_n = it->warn_n <= PROTO_WARN_MAX ? it->warn_n : PROTO_WARN_MAX;
    memcpy(out->warn_bp, it->warn_bp, sizeof(out->warn_bp));
}

cg_err ls_resv_get(ls_txn *t, const char *request_id, const char *route, ls_resv *out)
{
    ls_resv d;
    cg_err derr = ls_resv_get_db(t, t->s->db_resv, request_id, route, &d);
    if (derr == CG_ERR_OK && d.state == LS_RESV_SETTLED) {
        *out = d;
        return CG_ERR_OK;
    }
    if (derr != CG_ERR_OK && derr != CG_ERR_NOTFOUND) {
        return derr;
    }
    cg_err err = ls_resv_get_db(t, t->s->rdb_resv, request_id, route, out);
    if (err != CG_ERR_NOTFOUND || derr != CG_ERR_OK) {
        return err;
    }
    /* Only the durable copy of a partially settled reservation (or a record written before
     * issue 4): its hold went with the reservation env, so nothing is reserved any more. */
    *out = d;
    if (out->state == LS_RESV_ACTIVE) {
        out->state = LS_RESV_EXPIRED;
    }
    return CG_ERR_OK;
}

cg_err ls_resv_get_db(ls_txn *t, MDB_dbi dbi, const char *request_id, const char *route,
                      ls_resv *out)
{
    ls_key k;
    MDB_val v;
    ls_key_resv(&k, request_id, route);
    cg_err err = ls_get(t, dbi, k.b, k.n, &v);
    if (err != CG_ERR_OK) {
        return err;
    }
    if (ls_resv_decode(v.mv_data, v.mv_size, out) != 0) {
        cg_log(CG_LOG_ERROR, "corrupt reservation record", "request_id", request_id, "route", route,
               NULL);
        return CG_ERR_DB;
    }
    return CG_ERR_OK;
}

static void ls_item_encode(uint8_t *q, const ls_item *it)
{
    ls_le32_put(q, it->limit_id);
    q[4] = it->metric;
    ls_le64_put(q + 5, (uint64_t)it->period_index);
    ls_le64_put(q + 13, (uint64_t)it->period_start_ms);
    ls_le64_put(q + 21, (uint64_t)it->period_end_ms);
    ls_le64_put(q + 29, (uint64_t)it->amount);
    q += LS_ITEM_V1_BYTES;
    q[0] = it->window.kind;
    ls_le32_put(q + 1, it->window.sliding_s);
    ls_le64_put(q + 5, (uint64_t)it->max);
    q[13] = it->action;
    q[14] = it->warn_n;
    for (uint8_t j = 0; j < PROTO_WARN_MAX; j++) {
        ls_le16_put(q + 15 + (size_t)2 * j, it->warn_bp[j]);
    }
}

/* Encode r into dbi. */
static cg_err ls_resv_put_db(ls_txn *t, MDB_dbi dbi, const char *request_id, const char *route,
                             const ls_resv *r)
{
    uint8_t b[LS_RESV_HEAD_BYTES + PROTO_LIMITS_MAX * LS_ITEM_BYTES];
    ls_key k;
    assert(r->item_n <= PROTO_LIMITS_MAX);
    b[0] = LS_RESV_VERSION;
    b[1] = r->state;
    b[2] = r->late;
    b[3] = r->item_n;
    ls_le64_put(b + 4, (uint64_t)r->created_ms);
    ls_le64_put(b + 12, (uint64_t)r->expires_ms);
    ls_le64_put(b + 20, (uint64_t)r->settled.cost_nusd);
    ls_le64_put(b + 28, (uint64_t)r->settled.tokens);
    ls_le64_put(b + 36, (uint64_t)r->settled.requests);
    for (uint8_t i = 0; i < r->item_n; i++) {
        ls_item_encode(b + LS_RESV_HEAD_BYTES + (size_t)i * LS_ITEM_BYTES, &r->items[i]);
    }
    ls_key_resv(&k, request_id, route);
    return ls_put(t, dbi, k.b, k.n, b, LS_RESV_HEAD_BYTES + (size_t)r->item_n * LS_ITEM_BYTES);
}

cg_err ls_resv_put(ls_txn *t, const char *request_id, const char *route, const ls_resv *r)
{
    if (r->state != LS_RESV_SETTLED) {
        return ls_resv_put_db(t, t->s->rdb_resv, request_id, route, r);
    }
    cg_err err = ls_resv_put_db(t, t->s->db_resv, request_id, route, r);
    if (err != CG_ERR_OK) {
        return err;
    }
    ls_key k;
    ls_key_resv(&k, request_id, route);
    return ls_del(t, t->s->rdb_resv, k.b, k.n); /* a missing record is OK */
}

cg_err ls_resv_put_durable(ls_txn *t, const char *request_id, const char *route, const ls_resv *r)
{
    return ls_resv_put_db(t, t->s->db_resv, request_id, route, r);
}

/* ---- proto-encoded records ---- */

/* The value stored under a string key, or a log line naming the corrupt record. */
static cg_err ls_rec_lookup(ls_txn *t, MDB_dbi dbi, const char *id, MDB_val *v)
{
    return ls_get(t, dbi, id, strlen(id), v);
}

static cg_err ls_rec_corrupt(const char *what, const char *id)
{
    cg_log(CG_LOG_ERROR, "corrupt definition record", "record", what, "id", id, NULL);
    return CG_ERR_DB;
}

cg_err ls_org_get(ls_txn *t, const char *id, proto_org *out)
{
    MDB_val v;
    cg_err err = ls_rec_lookup(t, t->s->db_orgs, id, &v);
    if (err == CG_ERR_OK && proto_org_decode(v.mv_data, v.mv_size, out) != CG_ERR_OK) {
        return ls_rec_corrupt("org", id);
    }
    return err;
}

cg_err ls_apikey_get(ls_txn *t, const char *id, proto_key *out)
{
    MDB_val v;
    cg_err err = ls_rec_lookup(t, t->s->db_keys, id, &v);
    if (err == CG_ERR_OK && proto_key_decode(v.mv_data, v.mv_size, out) != CG_ERR_OK) {
        return ls_rec_corrupt("key", id);
    }
    return err;
}

cg_err ls_group_get(ls_txn *t, const char *org_slash_id, proto_group *out)
{
    MDB_val v;
    cg_err err = ls_rec_lookup(t, t->s->db_groups, org_slash_id, &v);
    if (err == CG_ERR_OK && proto_group_decode(v.mv_data, v.mv_size, out) != CG_ERR_OK) {
        return ls_rec_corrupt("group", org_slash_id);
    }
    return err;
}

cg_err ls_customer_get(ls_txn *t, const char *org_slash_id, proto_customer *out)
{
    MDB_val v;
    cg_err err = ls_rec_lookup(t, t->s->db_customers, org_slash_id, &v);
    if (err == CG_ERR_OK && proto_customer_decode(v.mv_data, v.mv_size, out) != CG_ERR_OK) {
        return ls_rec_corrupt("customer", org_slash_id);
    }
    return err;
}

/* Store the encoding in t's scratch buffer (err from the encoder, if any) under key. */
static cg_err ls_rec_store(ls_txn *t, MDB_dbi dbi, const char *key, cg_err enc_err)
{
    msgpack_sbuffer *sb = &t->s->sbuf;
    if (enc_err != CG_ERR_OK) {
        return enc_err;
    }
    return ls_put(t, dbi, key, strlen(key), sb->data, sb->size);
}

cg_err ls_org_put(ls_txn *t, const proto_org *o)
{
    msgpack_sbuffer_clear(&t->s->sbuf);
    return ls_rec_store(t, t->s->db_orgs, o->id, proto_org_encode(o, &t->s->sbuf));
}

cg_err ls_apikey_put(ls_txn *t, const proto_key *k)
{
    msgpack_sbuffer_clear(&t->s->sbuf);
    return ls_rec_store(t, t->s->db_keys, k->id, proto_key_encode(k, &t->s->sbuf));
}

/* "<org>/<id>": the key of group and customer records (the route after its prefix). */
static void ls_org_slash_id(char out[2 * PROTO_ID_MAX + 2], const char *org, const char *id)
{
    size_t on = strnlen(org, PROTO_ID_MAX);
    size_t in = strnlen(id, PROTO_ID_MAX);
    memcpy(out, org, on);
    out[on] = '/';
    memcpy(out + on + 1, id, in);
    out[on + 1 + in] = '\0';
}

cg_err ls_group_put(ls_txn *t, const proto_group *g)
{
    char key[2 * PROTO_ID_MAX + 2];
    ls_org_slash_id(key, g->org, g->id);
    msgpack_sbuffer_clear(&t->s->sbuf);
    return ls_rec_store(t, t->s->db_groups, key, proto_group_encode(g, &t->s->sbuf));
}

cg_err ls_customer_put(ls_txn *t, const proto_customer *c)
{
    char key[2 * PROTO_ID_MAX + 2];
    ls_org_slash_id(key, c->org, c->id);
    msgpack_sbuffer_clear(&t->s->sbuf);
    return ls_rec_store(t, t->s->db_customers, key, proto_customer_encode(c, &t->s->sbuf));
}

cg_err ls_usage_put(ls_txn *t, const char *request_id, const proto_usage *u)
{
    msgpack_sbuffer *sb = &t->s->sbuf;
    ls_key k;
    MDB_val old;
    ls_key_usage(&k, u->ts_ms, request_id);
    cg_err err = ls_get(t, t->s->db_usage, k.b, k.n, &old);
    if (err == CG_ERR_OK) {
        return CG_ERR_OK; /* stored already (a replay): its rollup counts it once */
    }
    if (err != CG_ERR_NOTFOUND) {
        return err;
    }
    msgpack_sbuffer_clear(sb);
    if ((err = proto_usage_encode(u, sb)) != CG_ERR_OK ||
        (err = ls_put(t, t->s->db_usage, k.b, k.n, sb->data, sb->size)) != CG_ERR_OK) {
        return err;
    }
    return ls_rollup_add(t, u->ts_ms, u);
}

/* ---- usage rollups ---- */

int64_t ls_hour_floor(int64_t t)
{
    int64_t r = t % LS_HOUR_MS;
    if (r >= 0) {
        return t - r;
    }
    /* The hour of the earliest times starts before INT64_MIN: clamp (no record lives there). */
    return t - r >= INT64_MIN + LS_HOUR_MS ? t - r - LS_HOUR_MS : INT64_MIN;
}

static void ls_hkey_field(ls_hkey *k, const char *v, size_t max, int last)
{
    size_t n = strnlen(v, max);
    assert(k->n + n + 1 <= LS_HOUR_KEY_MAX);
    memcpy(k->b + k->n, v, n);
    k->n += n;
    if (!last) {
        k->b[k->n++] = 0;
    }
}

void ls_key_usage_hour(ls_hkey *k, int64_t hour_ms, const proto_usage *u)
{
    ls_be64_put(k->b, ls_bias(hour_ms));
    k->n = 8;
    ls_hkey_field(k, u->org, PROTO_ID_MAX, 0);
    ls_hkey_field(k, u->key_id, PROTO_ID_MAX, 0);
    ls_hkey_field(k, u->model, PROTO_MODEL_MAX, 0);
    ls_hkey_field(k, u->provider, PROTO_PROVIDER_MAX, 0);
    ls_hkey_field(k, u->group, PROTO_ID_MAX, 0);
    ls_hkey_field(k, u->customer, PROTO_ID_MAX, 1);
}

cg_err ls_rollup_parse(const MDB_val *key, const MDB_val *val, proto_usage *out,
                       proto_usage_totals *tot)
{
    struct {
        char *dst;
        size_t max;
    } f[] = {{out->org, PROTO_ID_MAX},      {out->key_id, PROTO_ID_MAX},
             {out->model, PROTO_MODEL_MAX}, {out->provider, PROTO_PROVIDER_MAX},
             {out->group, PROTO_ID_MAX},    {out->customer, PROTO_ID_MAX}};
    const uint8_t *p = key->mv_data, *end = p + key->mv_size;
    memset(out, 0, sizeof(*out));
    if (key->mv_size < 8 + 5 || val->mv_size != LS_ROLLUP_BYTES) {
        return CG_ERR_DB;
    }
    out->ts_ms = (int64_t)(ls_be64_get(p) ^ (UINT64_C(1) << 63));
    p += 8;
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        const uint8_t *z = i + 1 < sizeof(f) / sizeof(f[0]) ? memchr(p, 0, (size_t)(end - p)) : end;
        if (z == NULL || (size_t)(z - p) > f[i].max) {
            return CG_ERR_DB;
        }
        memcpy(f[i].dst, p, (size_t)(z - p));
        f[i].dst[z - p] = '\0';
        p = z + (z < end ? 1 : 0);
    }
    const uint8_t *v = val->mv_data;
    tot->requests = (int64_t)ls_le64_get(v);
    tot->prompt_tokens = (int64_t)ls_le64_get(v + 8);
    tot->completion_tokens = (int64_t)ls_le64_get(v + 16);
    tot->cost_nusd = (int64_t)ls_le64_get(v + 24);
    return CG_ERR_OK;
}

void ls_totals_add(proto_usage_totals *a, const proto_usage_totals *b)
{
    /* b is a record's or a rollup's totals (never negative: ls_usage_add clamps), or one
     * record taken back out of its hour's rollup (ls_usage_partial_hour: all negative). */
    a->requests = ls_sat_add(a->requests, b->requests);
    a->prompt_tokens = ls_sat_add(a->prompt_tokens, b->prompt_tokens);
    a->completion_tokens = ls_sat_add(a->completion_tokens, b->completion_tokens);
    a->cost_nusd = ls_sat_add(a->cost_nusd, b->cost_nusd);
}

cg_err ls_rollup_add(ls_txn *t, int64_t ts_ms, const proto_usage *u)
{
    ls_hkey k;
    MDB_val v;
    proto_usage_totals tot = {0};
    uint8_t b[LS_ROLLUP_BYTES];
    ls_key_usage_hour(&k, ls_hour_floor(ts_ms), u);
    cg_err err = ls_get(t, t->s->db_usage_hour, k.b, k.n, &v);
    if (err == CG_ERR_OK) {
        if (v.mv_size != LS_ROLLUP_BYTES) {
            cg_log(CG_LOG_ERROR, "corrupt usage rollup", NULL);
            return CG_ERR_DB;
        }
        const uint8_t *p = v.mv_data;
        tot.requests = (int64_t)ls_le64_get(p);
        tot.prompt_tokens = (int64_t)ls_le64_get(p + 8);
        tot.completion_tokens = (int64_t)ls_le64_get(p + 16);
        tot.cost_nusd = (int64_t)ls_le64_get(p + 24);
    } else if (err != CG_ERR_NOTFOUND) {
        return err;
    }
    ls_usage_add(&tot, u);
    ls_le64_put(b, (uint64_t)tot.requests);
    ls_le64_put(b + 8, (uint64_t)tot.prompt_tokens);
    ls_le64_put(b + 16, (uint64_t)tot.completion_tokens);
    ls_le64_put(b + 24, (uint64_t)tot.cost_nusd);
    return ls_put(t, t->s->db_usage_hour, k.b, k.n, b, sizeof(b));
}

/* ---- scopes ---- */

static uint8_t ls_anchor(uint8_t day)
{
    /* 0 means "not set": the calendar month. */
    return day == 0 ? 1 : day;
}

static void ls_scope_set(ls_scope *out, uint8_t kind, const char *id, const char *org,
                         uint8_t anchor_day, const proto_limit *limits, uint8_t n)
{
    out->kind = kind;
    snprintf(out->id, sizeof(out->id), "%s", id);
    snprintf(out->org, sizeof(out->org), "%s", org);
    out->anchor_day = ls_anchor(anchor_day);
    out->limit_n = n <= PROTO_LIMITS_MAX ? n : PROTO_LIMITS_MAX;
    if (out->limit_n > 0) {
        memcpy(out->limits, limits, out->limit_n * sizeof(out->limits[0]));
    }
}

static cg_err ls_scope_load_key(ls_txn *t, const char *id, const ls_defaults *cd, ls_scope *out)
{
    proto_key k;
    (void)cd;
    cg_err err = ls_apikey_get(t, id, &k);
    if (err == CG_ERR_OK) {
        ls_scope_set(out, PROTO_SCOPE_KEY, k.id, k.org, k.billing_anchor_day, k.limits, k.limit_n);
    }
    return err;
}

static cg_err ls_scope_load_group(ls_txn *t, const char *id, const ls_defaults *cd, ls_scope *out)
{
    proto_group g;
    (void)cd;
    cg_err err = ls_group_get(t, id, &g);
    if (err == CG_ERR_OK) {
        ls_scope_set(out, PROTO_SCOPE_GROUP, g.id, g.org, g.billing_anchor_day, g.limits,
                     g.limit_n);
    }
    return err;
}

static cg_err ls_scope_load_org(ls_txn *t, const char *id, const ls_defaults *cd, ls_scope *out)
{
    proto_org o;
    (void)cd;
    cg_err err = ls_org_get(t, id, &o);
    if (err == CG_ERR_OK) {
        ls_scope_set(out, PROTO_SCOPE_ORG, o.id, o.id, o.billing_anchor_day, o.limits, o.limit_n);
    }
    return err;
}

/* Put l (its id made natural) into the merged list: replace the same id, else append. */
static cg_err ls_merge_one(ls_scope *out, const proto_limit *l)
{
    proto_limit m = *l;
    m.id = proto_limit_natural_id(m.metric, m.window);
    for (uint8_t i = 0; i < out->limit_n; i++) {
        if (out->limits[i].id == m.id) {
            out->limits[i] = m;
            return CG_ERR_OK;
        }
    }
    if (out->limit_n >= PROTO_LIMITS_MAX) {
        return CG_ERR_INVAL;
    }
    out->limits[out->limit_n++] = m;
    return CG_ERR_OK;
}

/* A customer's effective limits: the inline defaults, then the override record's. */
static cg_err ls_scope_load_customer(ls_txn *t, const char *id, const ls_defaults *cd,
                                     ls_scope *out)
{
    char org[PROTO_ID_MAX + 1], cid[PROTO_ID_MAX + 1];
    proto_customer ov;
    uint8_t dn = cd != NULL ? cd->n : 0;
    cg_err err = ls_split_org_id(id, org, cid);
    if (err != CG_ERR_OK) {
        return err;
    }
    if (dn > PROTO_LIMITS_MAX || (cd != NULL && cd->anchor_day > 28)) {
        return CG_ERR_INVAL;
    }
    ls_scope_set(out, PROTO_SCOPE_CUSTOMER, cid, org, cd != NULL ? cd->anchor_day : 1,
                 cd != NULL ? cd->limits : NULL, dn);
    ls_limits_naturalize(out->limits, out->limit_n);
    if (ls_limits_validate(out->limits, out->limit_n) != CG_ERR_OK) {
        cg_log(CG_LOG_WARN, "invalid inline customer defaults", "customer", id, NULL);
        return CG_ERR_INVAL;
    }
    err = ls_customer_get(t, id, &ov);
    if (err != CG_ERR_OK) {
        return err == CG_ERR_NOTFOUND ? CG_ERR_OK : err; /* no override: the defaults alone */
    }
    for (uint8_t i = 0; i < ov.limit_n && err == CG_ERR_OK; i++) {
        err = ls_merge_one(out, &ov.limits[i]);
    }
    if (err == CG_ERR_INVAL) {
        cg_log(CG_LOG_WARN, "customer defaults and override exceed the limit count", "customer", id,
               NULL);
    }
    return err;
}

typedef cg_err (*ls_scope_load_fn)(ls_txn *t, const char *id, const ls_defaults *cd, ls_scope *out);

/* Routing-key prefixes this shard understands, and the longest id after each. */
static const struct ls_scope_type {
    const char *prefix;
    size_t id_max;
    ls_scope_load_fn load;
} ls_scope_types[] = {
    {.prefix = "key:", .id_max = PROTO_ID_MAX, .load = ls_scope_load_key},
    {.prefix = "group:", .id_max = 2 * PROTO_ID_MAX + 1, .load = ls_scope_load_group},
    {.prefix = "customer:", .id_max = 2 * PROTO_ID_MAX + 1, .load = ls_scope_load_customer},
    {.prefix = "org:", .id_max = PROTO_ID_MAX, .load = ls_scope_load_org},
};

void ls_scope_cache_drop(ledger_store *s)
{
    s->def_gen++;
}

static ls_scope_slot *ls_scope_slot_of(ledger_store *s, const char *route, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (uint8_t)route[i]) * 16777619u;
    }
    return &s->scope_cache[h & (LS_SCOPE_CACHE_SLOTS - 1)];
}

cg_err ls_scope_load(ls_txn *t, const char *route, const ls_defaults *cd, ls_scope *out)
{
    for (size_t i = 0; i < sizeof(ls_scope_types) / sizeof(ls_scope_types[0]); i++) {
        const struct ls_scope_type *ty = &ls_scope_types[i];
        size_t pn = strlen(ty->prefix);
        if (strncmp(route, ty->prefix, pn) == 0) {
            const char *id = route + pn;
            size_t idn = strnlen(id, ty->id_max + 1);
            if (id[0] == '\0' || idn > ty->id_max) {
                return CG_ERR_NOTFOUND;
            }
            ls_scope_slot *slot = NULL;
            if (!t->no_cache && ty->load != ls_scope_load_customer) {
                slot = ls_scope_slot_of(t->s, route, pn + idn);
                if (slot->gen == t->s->def_gen && strcmp(slot->route, route) == 0) {
                    *out = slot->sc;
                    return CG_ERR_OK;
                }
            }
            memset(out, 0, sizeof(*out));
            cg_err err = ty->load(t, id, cd, out);
            if (slot != NULL && err == CG_ERR_OK && !t->broken) {
                slot->gen = t->s->def_gen;
                memcpy(slot->route, route, pn + idn + 1);
                slot->sc = *out;
            }
            return err;
        }
    }
    return CG_ERR_NOTFOUND;
}

cg_err ls_split_org_id(const char *s, char org[PROTO_ID_MAX + 1], char id[PROTO_ID_MAX + 1])
{
    /* Customer and group ids never hold a '/', so the last one separates the org. */
    const char *slash = strrchr(s, '/');
    if (slash == NULL) {
        return CG_ERR_NOTFOUND;
    }
    size_t on = (size_t)(slash - s);
    size_t in = strlen(slash + 1);
    if (on == 0 || on > PROTO_ID_MAX || in == 0 || in > PROTO_ID_MAX) {
        return CG_ERR_NOTFOUND;
    }
    memcpy(org, s, on);
    org[on] = '\0';
    memcpy(id, slash + 1, in + 1);
    return CG_ERR_OK;
}

cg_err ls_limit_period(const ls_scope *sc, const proto_limit *l, int64_t t_ms, cg_period *out)
{
    return cg_period_of(l->window, sc->anchor_day, t_ms, out);
}

const proto_limit *ls_scope_limit(const ls_scope *sc, uint32_t limit_id)
{
    for (uint8_t i = 0; i < sc->limit_n; i++) {
        if (sc->limits[i].id == limit_id) {
            return &sc->limits[i];
        }
    }
    return NULL;
}

static cg_err ls_limit_validate(const proto_limit *l)
{
    if (l->id == 0 || l->metric >= PROTO_METRIC_COUNT_ || l->action > PROTO_ACTION_WARN ||
        l->max < 0 || l->warn_n > PROTO_WARN_MAX || l->window.kind > CG_WIN_SLIDING) {
        return CG_ERR_INVAL;
    }
    if (l->window.kind == CG_WIN_SLIDING &&
        (l->window.sliding_s == 0 || l->window.sliding_s > CG_WINDOW_SLIDING_MAX_S ||
         l->warn_n > 0)) {
        /* Thresholds fire "once per period"; a sliding window has no periods. */
        return CG_ERR_INVAL;
    }
    for (uint8_t j = 0; j < l->warn_n; j++) {
        if (l->warn_bp[j] < 1 || l->warn_bp[j] > 10000 ||
            (j > 0 && l->warn_bp[j] <= l->warn_bp[j - 1])) {
            return CG_ERR_INVAL;
        }
    }
    return CG_ERR_OK;
}

cg_err ls_limits_validate(const proto_limit *limits, uint8_t n)
{
    if (n > PROTO_LIMITS_MAX) {
        return CG_ERR_INVAL;
    }
    for (uint8_t i = 0; i < n; i++) {
        if (ls_limit_validate(&limits[i]) != CG_ERR_OK) {
            return CG_ERR_INVAL;
        }
        for (uint8_t j = 0; j < i; j++) {
            if (limits[j].id == limits[i].id) {
                return CG_ERR_INVAL;
            }
        }
    }
    return CG_ERR_OK;
}

void ls_limits_naturalize(proto_limit *limits, uint8_t n)
{
    for (uint8_t i = 0; i < n && i < PROTO_LIMITS_MAX; i++) {
        limits[i].id = proto_limit_natural_id(limits[i].metric, limits[i].window);
    }
}

int64_t ls_amount_of(const proto_amounts *a, uint8_t m)
{
    switch (m) {
    case PROTO_METRIC_COST:
        return a->cost_nusd;
    case PROTO_METRIC_TOKENS:
        return a->tokens;
    case PROTO_METRIC_REQUESTS:
        return a->requests;
    default:
        return 0;
    }
}

int64_t ls_sat_add(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b) {
        return INT64_MAX;
    }
    if (b < 0 && a < INT64_MIN - b) {
        return INT64_MIN;
    }
    return a + b;
}

int64_t ls_sub_floor0(int64_t a, int64_t b)
{
    return b >= a ? 0 : a - b;
}
