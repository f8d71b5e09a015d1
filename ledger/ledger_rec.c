/*
 * ledger_rec.c — the ledger store's LMDB keys, record encodings and scope
 * resolution.
 *
 * Keys put big-endian numbers first where order matters (lease and gc
 * indexes by time, events and usage by seq / time), so a cursor walks them in
 * order. Counter and reservation values are small fixed-layout little-endian
 * records with a version byte; org, key, usage and event records use the
 * proto encoders, so a record read from disk is checked exactly like one from
 * the network. Every decoder checks lengths and ranges: a corrupt record is
 * CG_ERR_DB (logged), never a crash, and values are copied out of LMDB before
 * the transaction can end.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "cg_log.h"
#include "ledger_int.h"

#define LS_COUNTER_BYTES 20
#define LS_RESV_VERSION 1
#define LS_RESV_HEAD_BYTES 44
#define LS_ITEM_BYTES 37

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

static void ls_le64_put(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint64_t ls_le64_get(const uint8_t *p)
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
        return CG_ERR_OK;
    }
    if (err != CG_ERR_OK) {
        return err;
    }
    const uint8_t *p = v.mv_data;
    ls_counter c;
    if (v.mv_size != LS_COUNTER_BYTES) {
        goto corrupt;
    }
    c.used = (int64_t)ls_le64_get(p);
    c.reserved = (int64_t)ls_le64_get(p + 8);
    c.fired = ls_le32_get(p + 16);
    if (c.used < 0 || c.reserved < 0) {
        goto corrupt;
    }
    *out = c;
    return CG_ERR_OK;
corrupt:
    cg_log(CG_LOG_ERROR, "corrupt counter record", "route", route, NULL);
    return CG_ERR_DB;
}

cg_err ls_counter_put(ls_txn *t, const char *route, uint32_t limit_id, int64_t period_index,
                      const ls_counter *c)
{
    ls_key k;
    uint8_t b[LS_COUNTER_BYTES];
    ls_key_counter(&k, route, limit_id, period_index);
    ls_le64_put(b, (uint64_t)c->used);
    ls_le64_put(b + 8, (uint64_t)c->reserved);
    ls_le32_put(b + 16, c->fired);
    return ls_put(t, t->s->db_counters, k.b, k.n, b, sizeof(b));
}

/* ---- reservations ---- */

static int ls_resv_decode(const uint8_t *p, size_t n, ls_resv *r)
{
    if (n < LS_RESV_HEAD_BYTES || p[0] != LS_RESV_VERSION) {
        return -1;
    }
    r->state = p[1];
    r->late = p[2];
    r->item_n = p[3];
    if (r->state < LS_RESV_ACTIVE || r->state > LS_RESV_EXPIRED || r->item_n > PROTO_LIMITS_MAX ||
        n != LS_RESV_HEAD_BYTES + (size_t)r->item_n * LS_ITEM_BYTES) {
        return -1;
    }
    r->created_ms = (int64_t)ls_le64_get(p + 4);
    r->expires_ms = (int64_t)ls_le64_get(p + 12);
    r->settled.cost_nusd = (int64_t)ls_le64_get(p + 20);
    r->settled.tokens = (int64_t)ls_le64_get(p + 28);
    r->settled.requests = (int64_t)ls_le64_get(p + 36);
    for (uint8_t i = 0; i < r->item_n; i++) {
        const uint8_t *q = p + LS_RESV_HEAD_BYTES + (size_t)i * LS_ITEM_BYTES;
        ls_item *it = &r->items[i];
        it->limit_id = ls_le32_get(q);
        it->metric = q[4];
        it->period_index = (int64_t)ls_le64_get(q + 5);
        it->period_start_ms = (int64_t)ls_le64_get(q + 13);
        it->period_end_ms = (int64_t)ls_le64_get(q + 21);
        it->amount = (int64_t)ls_le64_get(q + 29);
        if (it->metric >= PROTO_METRIC_COUNT_ || it->amount < 0) {
            return -1;
        }
    }
    return 0;
}

cg_err ls_resv_get(ls_txn *t, const char *request_id, const char *route, ls_resv *out)
{
    ls_key k;
    MDB_val v;
    ls_key_resv(&k, request_id, route);
    cg_err err = ls_get(t, t->s->db_resv, k.b, k.n, &v);
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

cg_err ls_resv_put(ls_txn *t, const char *request_id, const char *route, const ls_resv *r)
{
    uint8_t b[LS_RESV_HEAD_BYTES + PROTO_LIMITS_MAX * LS_ITEM_BYTES];
    ls_key k;
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
        uint8_t *q = b + LS_RESV_HEAD_BYTES + (size_t)i * LS_ITEM_BYTES;
        const ls_item *it = &r->items[i];
        ls_le32_put(q, it->limit_id);
        q[4] = it->metric;
        ls_le64_put(q + 5, (uint64_t)it->period_index);
        ls_le64_put(q + 13, (uint64_t)it->period_start_ms);
        ls_le64_put(q + 21, (uint64_t)it->period_end_ms);
        ls_le64_put(q + 29, (uint64_t)it->amount);
    }
    ls_key_resv(&k, request_id, route);
    return ls_put(t, t->s->db_resv, k.b, k.n, b,
                  LS_RESV_HEAD_BYTES + (size_t)r->item_n * LS_ITEM_BYTES);
}

/* ---- proto-encoded records ---- */

cg_err ls_org_get(ls_txn *t, const char *id, proto_org *out)
{
    MDB_val v;
    cg_err err = ls_get(t, t->s->db_orgs, id, strlen(id), &v);
    if (err != CG_ERR_OK) {
        return err;
    }
    if (proto_org_decode(v.mv_data, v.mv_size, out) != CG_ERR_OK) {
        cg_log(CG_LOG_ERROR, "corrupt org record", "org", id, NULL);
        return CG_ERR_DB;
    }
    return CG_ERR_OK;
}

cg_err ls_apikey_get(ls_txn *t, const char *id, proto_key *out)
{
    MDB_val v;
    cg_err err = ls_get(t, t->s->db_keys, id, strlen(id), &v);
    if (err != CG_ERR_OK) {
        return err;
    }
    if (proto_key_decode(v.mv_data, v.mv_size, out) != CG_ERR_OK) {
        cg_log(CG_LOG_ERROR, "corrupt key record", "key", id, NULL);
        return CG_ERR_DB;
    }
    return CG_ERR_OK;
}

cg_err ls_org_put(ls_txn *t, const proto_org *o)
{
    msgpack_sbuffer *sb = &t->s->sbuf;
    msgpack_sbuffer_clear(sb);
    cg_err err = proto_org_encode(o, sb);
    if (err != CG_ERR_OK) {
        return err;
    }
    return ls_put(t, t->s->db_orgs, o->id, strlen(o->id), sb->data, sb->size);
}

cg_err ls_apikey_put(ls_txn *t, const proto_key *k)
{
    msgpack_sbuffer *sb = &t->s->sbuf;
    msgpack_sbuffer_clear(sb);
    cg_err err = proto_key_encode(k, sb);
    if (err != CG_ERR_OK) {
        return err;
    }
    return ls_put(t, t->s->db_keys, k->id, strlen(k->id), sb->data, sb->size);
}

cg_err ls_usage_put(ls_txn *t, const char *request_id, const proto_usage *u)
{
    msgpack_sbuffer *sb = &t->s->sbuf;
    ls_key k;
    msgpack_sbuffer_clear(sb);
    cg_err err = proto_usage_encode(u, sb);
    if (err != CG_ERR_OK) {
        return err;
    }
    ls_key_usage(&k, u->ts_ms, request_id);
    return ls_put(t, t->s->db_usage, k.b, k.n, sb->data, sb->size);
}

/* ---- scopes ---- */

static uint8_t ls_anchor(uint8_t day)
{
    /* 0 means "not set": the calendar month. */
    return day == 0 ? 1 : day;
}

static cg_err ls_scope_load_key(ls_txn *t, const char *id, ls_scope *out)
{
    proto_key k;
    cg_err err = ls_apikey_get(t, id, &k);
    if (err != CG_ERR_OK) {
        return err;
    }
    out->kind = PROTO_SCOPE_KEY;
    memcpy(out->id, k.id, sizeof(out->id));
    memcpy(out->org, k.org, sizeof(out->org));
    out->anchor_day = ls_anchor(k.billing_anchor_day);
    out->limit_n = k.limit_n;
    memcpy(out->limits, k.limits, sizeof(out->limits));
    return CG_ERR_OK;
}

static cg_err ls_scope_load_org(ls_txn *t, const char *id, ls_scope *out)
{
    proto_org o;
    cg_err err = ls_org_get(t, id, &o);
    if (err != CG_ERR_OK) {
        return err;
    }
    out->kind = PROTO_SCOPE_ORG;
    memcpy(out->id, o.id, sizeof(out->id));
    memcpy(out->org, o.id, sizeof(out->org));
    out->anchor_day = ls_anchor(o.billing_anchor_day);
    out->limit_n = o.limit_n;
    memcpy(out->limits, o.limits, sizeof(out->limits));
    return CG_ERR_OK;
}

typedef cg_err (*ls_scope_load_fn)(ls_txn *t, const char *id, ls_scope *out);

/* Routing-key prefixes this shard understands. Issue 3 adds "group:" and "customer:". */
static const struct ls_scope_type {
    const char *prefix;
    ls_scope_load_fn load;
} ls_scope_types[] = {
    {.prefix = "key:", .load = ls_scope_load_key},
    {.prefix = "org:", .load = ls_scope_load_org},
};

cg_err ls_scope_load(ls_txn *t, const char *route, ls_scope *out)
{
    for (size_t i = 0; i < sizeof(ls_scope_types) / sizeof(ls_scope_types[0]); i++) {
        const struct ls_scope_type *ty = &ls_scope_types[i];
        size_t pn = strlen(ty->prefix);
        if (strncmp(route, ty->prefix, pn) == 0) {
            const char *id = route + pn;
            if (id[0] == '\0' || strlen(id) > PROTO_ID_MAX) {
                return CG_ERR_NOTFOUND;
            }
            memset(out, 0, sizeof(*out));
            return ty->load(t, id, out);
        }
    }
    return CG_ERR_NOTFOUND;
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
        l->max < 0 || l->warn_n > PROTO_WARN_MAX) {
        return CG_ERR_INVAL;
    }
    /* Sliding windows arrive with issue 3; until then they are refused here. */
    if (l->window.kind > CG_WIN_MONTH) {
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
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}
