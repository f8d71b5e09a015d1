/*
 * ledger_ops.c — the ledger protocol operations, each applied inside the
 * batch's write transaction (see ledger_store.c).
 *
 * Every operation follows the write discipline of ledger_int.h: it reads and
 * decides first (refusals happen before any write), then writes. Replies are
 * final only once the batch commits; the caller sends them after that.
 *
 * Money rules (SPEC §3): a reservation is admitted only if, for every block
 * limit with max > 0, used + reserved + worst <= max; then every limit (warn
 * limits too) carries the worst case in `reserved`. A settle moves the
 * reservation into `used`; a settle that comes after its lease expired (or of
 * an id never seen) still counts as spend and is reported late. Threshold
 * events are checked after `used` grows and appended in the same transaction.
 */
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_log.h"
#include "ledger_int.h"

typedef cg_err (*ls_op_fn)(ls_txn *t, const proto_req *req, proto_rep *rep);

/* ---- helpers ---- */

static int64_t ls_end_or_zero(int64_t end_ms)
{
    return end_ms == INT64_MAX ? 0 : end_ms;
}

static int64_t ls_sub_floor0(int64_t a, int64_t b)
{
    return b >= a ? 0 : a - b;
}

static int ls_amounts_valid(const proto_amounts *a)
{
    return a->cost_nusd >= 0 && a->tokens >= 0 && a->requests >= 0;
}

static int ls_amounts_equal(const proto_amounts *a, const proto_amounts *b)
{
    return a->cost_nusd == b->cost_nusd && a->tokens == b->tokens && a->requests == b->requests;
}

static int ls_reqid_valid(const char *id)
{
    return id[0] != '\0';
}

/* Whether route is exactly "<prefix><id>" for a non-empty record id. */
static int ls_route_is(const char *route, const char *prefix, const char *id)
{
    size_t pn = strlen(prefix);
    return strncmp(route, prefix, pn) == 0 && strcmp(route + pn, id) == 0 && id[0] != '\0';
}

static cg_err ls_period(const ls_scope *sc, const proto_limit *l, int64_t t_ms, cg_period *out)
{
    cg_err err = ls_limit_period(sc, l, t_ms, out);
    if (err != CG_ERR_OK) {
        /* Limits are validated at PUT time, so this is a record written by someone else. */
        cg_logf(CG_LOG_ERROR, "limit %" PRIu32 " of %s has no calendar period", l->id, sc->id);
        return CG_ERR_DB;
    }
    return CG_ERR_OK;
}

static void ls_state_fill(proto_limit_state *st, uint32_t limit_id, const ls_counter *c,
                          const cg_period *p)
{
    st->limit_id = limit_id;
    st->used = c->used;
    st->reserved = c->reserved;
    st->period_start_ms = p->start_ms;
    st->period_end_ms = ls_end_or_zero(p->end_ms);
}

/* Every limit's counter in its current period (zero when no counter exists yet). */
static cg_err ls_states_read(ls_txn *t, const char *route, const ls_scope *sc,
                             proto_limit_state *states, uint8_t *n)
{
    for (uint8_t i = 0; i < sc->limit_n; i++) {
        cg_period p;
        ls_counter c;
        cg_err err = ls_period(sc, &sc->limits[i], t->now_ms, &p);
        if (err == CG_ERR_OK) {
            err = ls_counter_get(t, route, sc->limits[i].id, p.index, &c);
        }
        if (err != CG_ERR_OK) {
            return err;
        }
        ls_state_fill(&states[i], sc->limits[i].id, &c, &p);
    }
    *n = sc->limit_n;
    return CG_ERR_OK;
}

/* Move a reservation to a finished state: off the lease index, onto the gc index. */
static cg_err ls_resv_finish(ls_txn *t, const char *rid, const char *route, ls_resv *r,
                             uint8_t was_state, uint8_t new_state)
{
    ls_key k;
    cg_err err;
    r->state = new_state;
    if ((err = ls_resv_put(t, rid, route, r)) != CG_ERR_OK) {
        return err;
    }
    if (was_state == LS_RESV_ACTIVE) {
        ls_key_index(&k, r->expires_ms, rid, route);
        if ((err = ls_del(t, t->s->db_leases, k.b, k.n)) != CG_ERR_OK) {
            return err;
        }
    }
    if (was_state == LS_RESV_ACTIVE || was_state == 0) {
        ls_key_index(&k, ls_sat_add(r->expires_ms, LEDGER_DEDUP_MS), rid, route);
        return ls_put(t, t->s->db_gc, k.b, k.n, "", 0);
    }
    return CG_ERR_OK;
}

/* Give back what an active reservation holds on its counters. */
static cg_err ls_resv_return(ls_txn *t, const char *route, const ls_resv *r)
{
    for (uint8_t i = 0; i < r->item_n; i++) {
        const ls_item *it = &r->items[i];
        ls_counter c;
        cg_err err = ls_counter_get(t, route, it->limit_id, it->period_index, &c);
        if (err != CG_ERR_OK) {
            return err;
        }
        c.reserved = ls_sub_floor0(c.reserved, it->amount);
        if ((err = ls_counter_put(t, route, it->limit_id, it->period_index, &c)) != CG_ERR_OK) {
            return err;
        }
    }
    return CG_ERR_OK;
}

/* ---- events ---- */

/* "evt_" + 32 hex of the first 16 bytes of SHA-256("<route>|<limit>|<period>|<bp>"). */
static void ls_event_id(char out[PROTO_EVENT_ID_MAX + 1], const char *route, uint32_t limit_id,
                        int64_t period_index, uint16_t bp)
{
    static const char hex[] = "0123456789abcdef";
    char src[PROTO_ROUTE_MAX + 64];
    unsigned char md[SHA256_DIGEST_LENGTH];
    int n = snprintf(src, sizeof(src), "%s|%" PRIu32 "|%" PRId64 "|%u", route, limit_id,
                     period_index, (unsigned)bp);
    SHA256((const unsigned char *)src, (size_t)n, md);
    memcpy(out, "evt_", 4);
    for (int i = 0; i < 16; i++) {
        out[4 + 2 * i] = hex[md[i] >> 4];
        out[5 + 2 * i] = hex[md[i] & 0xf];
    }
    out[36] = '\0';
}

static cg_err ls_event_emit(ls_txn *t, const char *route, const ls_scope *sc, const proto_limit *l,
                            const ls_item *it, const ls_counter *c, uint16_t bp, int reached)
{
    proto_event ev;
    memset(&ev, 0, sizeof(ev));
    ls_event_id(ev.id, route, l->id, it->period_index, bp);
    ev.type = (uint8_t)proto_event_type_for(l->metric, reached);
    ev.created_ms = t->now_ms;
    memcpy(ev.org, sc->org, sizeof(ev.org));
    ev.scope = sc->kind;
    memcpy(ev.scope_id, sc->id, sizeof(ev.scope_id));
    ev.limit_id = l->id;
    ev.metric = l->metric;
    ev.window = l->window;
    ev.period_start_ms = it->period_start_ms;
    ev.period_end_ms = ls_end_or_zero(it->period_end_ms);
    ev.threshold_bp = bp;
    ev.max = l->max;
    ev.used = c->used;
    cg_log(CG_LOG_INFO, "threshold crossed", "event", ev.id, "route", route, "type",
           proto_event_type_name(ev.type), NULL);
    return ls_event_append(t, &ev);
}

/*
 * After `used` grew: fire each warning threshold and the cap once per period
 * (the counter's `fired` bits remember). A warning at 100% is left to the
 * *_reached event, which would otherwise share its id.
 */
static cg_err ls_thresholds(ls_txn *t, const char *route, const ls_scope *sc, const proto_limit *l,
                            const ls_item *it, ls_counter *c)
{
    cg_err err = CG_ERR_OK;
    if (l == NULL || l->max <= 0 || l->metric != it->metric) {
        return CG_ERR_OK;
    }
    for (uint8_t j = 0; j < l->warn_n && j < PROTO_WARN_MAX; j++) {
        uint16_t bp = l->warn_bp[j];
        uint32_t bit = 1u << j;
        if (bp >= 10000 || (c->fired & bit) != 0 ||
            (__int128)c->used * 10000 < (__int128)l->max * bp) {
            continue;
        }
        c->fired |= bit;
        if ((err = ls_event_emit(t, route, sc, l, it, c, bp, 0)) != CG_ERR_OK) {
            return err;
        }
    }
    if ((c->fired & LS_FIRED_REACHED) == 0 && c->used >= l->max) {
        c->fired |= LS_FIRED_REACHED;
        err = ls_event_emit(t, route, sc, l, it, c, 10000, 1);
    }
    return err;
}

/* ---- PING, AUTH ---- */

static cg_err ls_op_ping(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    (void)req;
    memcpy(rep->u.ping.shard, t->s->shard, sizeof(rep->u.ping.shard));
    rep->u.ping.last_seq = t->p.next_seq - 1;
    return CG_ERR_OK;
}

static cg_err ls_op_auth(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    proto_key k;
    if (strncmp(req->route, "key:", 4) != 0) {
        return CG_ERR_NOTFOUND;
    }
    cg_err err = ls_apikey_get(t, req->route + 4, &k);
    if (err != CG_ERR_OK) {
        return err;
    }
    if (CRYPTO_memcmp(k.hash, req->u.auth.hash, sizeof(k.hash)) != 0 || k.revoked) {
        return CG_ERR_UNAUTHORIZED;
    }
    rep->u.auth.key = k;
    return CG_ERR_OK;
}

/* ---- RESERVE ---- */

/* Read every limit's current counter; refuse (BUDGET, with the first failing limit) if the
 * worst case does not fit a block limit. */
static cg_err ls_reserve_plan(ls_txn *t, const proto_req *req, const ls_scope *sc, ls_counter *c,
                              cg_period *per, proto_rep *rep)
{
    const proto_amounts *worst = &req->u.reserve.worst;
    cg_err err;
    for (uint8_t i = 0; i < sc->limit_n; i++) {
        if ((err = ls_period(sc, &sc->limits[i], t->now_ms, &per[i])) != CG_ERR_OK ||
            (err = ls_counter_get(t, req->route, sc->limits[i].id, per[i].index, &c[i])) !=
                CG_ERR_OK) {
            return err;
        }
        ls_state_fill(&rep->u.reserve.states[i], sc->limits[i].id, &c[i], &per[i]);
    }
    rep->u.reserve.state_n = sc->limit_n;
    for (uint8_t i = 0; i < sc->limit_n; i++) {
        const proto_limit *l = &sc->limits[i];
        __int128 need = (__int128)c[i].used + c[i].reserved + ls_amount_of(worst, l->metric);
        if (l->action != PROTO_ACTION_BLOCK || l->max <= 0 || need <= l->max) {
            continue;
        }
        proto_refusal *rf = &rep->u.reserve.refusal;
        rf->limit_id = l->id;
        rf->metric = l->metric;
        rf->window = l->window;
        rf->max = l->max;
        rf->used = c[i].used;
        rf->reserved = c[i].reserved;
        rf->resets_at_ms = ls_end_or_zero(per[i].end_ms);
        return CG_ERR_BUDGET;
    }
    return CG_ERR_OK;
}

static cg_err ls_reserve_write(ls_txn *t, const proto_req *req, const ls_scope *sc, ls_counter *c,
                               const cg_period *per, proto_rep *rep)
{
    const proto_amounts *worst = &req->u.reserve.worst;
    const char *rid = req->u.reserve.request_id;
    ls_resv r;
    ls_key k;
    cg_err err;
    memset(&r, 0, sizeof(r));
    r.state = LS_RESV_ACTIVE;
    r.created_ms = t->now_ms;
    r.expires_ms = t->now_ms + req->u.reserve.lease_ms;
    r.item_n = sc->limit_n;
    for (uint8_t i = 0; i < sc->limit_n; i++) {
        const proto_limit *l = &sc->limits[i];
        int64_t amount = ls_amount_of(worst, l->metric);
        c[i].reserved = ls_sat_add(c[i].reserved, amount);
        r.items[i] = (ls_item){.limit_id = l->id,
                               .metric = l->metric,
                               .period_index = per[i].index,
                               .period_start_ms = per[i].start_ms,
                               .period_end_ms = per[i].end_ms,
                               .amount = amount};
        if ((err = ls_counter_put(t, req->route, l->id, per[i].index, &c[i])) != CG_ERR_OK) {
            return err;
        }
        ls_state_fill(&rep->u.reserve.states[i], l->id, &c[i], &per[i]);
    }
    if ((err = ls_resv_put(t, rid, req->route, &r)) != CG_ERR_OK) {
        return err;
    }
    ls_key_index(&k, r.expires_ms, rid, req->route);
    return ls_put(t, t->s->db_leases, k.b, k.n, "", 0);
}

static cg_err ls_op_reserve(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    const char *rid = req->u.reserve.request_id;
    ls_scope sc;
    ls_resv r;
    ls_counter c[PROTO_LIMITS_MAX];
    cg_period per[PROTO_LIMITS_MAX];
    if (!ls_reqid_valid(rid) || req->u.reserve.lease_ms <= 0 ||
        req->u.reserve.lease_ms > LEDGER_LEASE_MAX_MS || !ls_amounts_valid(&req->u.reserve.worst)) {
        return CG_ERR_INVAL;
    }
    cg_err err = ls_scope_load(t, req->route, &sc);
    if (err != CG_ERR_OK) {
        return err;
    }
    err = ls_resv_get(t, rid, req->route, &r);
    if (err == CG_ERR_OK) {
        /* A retry of a reservation still held is answered again; anything else reuses an id. */
        if (r.state != LS_RESV_ACTIVE) {
            return CG_ERR_CONFLICT;
        }
        return ls_states_read(t, req->route, &sc, rep->u.reserve.states, &rep->u.reserve.state_n);
    }
    if (err != CG_ERR_NOTFOUND) {
        return err;
    }
    if ((err = ls_reserve_plan(t, req, &sc, c, per, rep)) != CG_ERR_OK) {
        return err;
    }
    return ls_reserve_write(t, req, &sc, c, per, rep);
}

/* ---- SETTLE ---- */

/* A settle of an id this shard never saw (or no longer remembers): count it against the
 * scope's current periods. */
static cg_err ls_settle_unknown(ls_txn *t, const ls_scope *sc, ls_resv *r)
{
    memset(r, 0, sizeof(*r));
    r->created_ms = t->now_ms;
    r->expires_ms = t->now_ms;
    r->item_n = sc->limit_n;
    for (uint8_t i = 0; i < sc->limit_n; i++) {
        cg_period p;
        cg_err err = ls_period(sc, &sc->limits[i], t->now_ms, &p);
        if (err != CG_ERR_OK) {
            return err;
        }
        r->items[i] = (ls_item){.limit_id = sc->limits[i].id,
                                .metric = sc->limits[i].metric,
                                .period_index = p.index,
                                .period_start_ms = p.start_ms,
                                .period_end_ms = p.end_ms};
    }
    return CG_ERR_OK;
}

/* used += actual on every item's counter (reserved -= amount while the lease holds). */
static cg_err ls_settle_counters(ls_txn *t, const proto_req *req, const ls_scope *sc,
                                 const ls_resv *r, int holds)
{
    const proto_amounts *actual = &req->u.settle.actual;
    for (uint8_t i = 0; i < r->item_n; i++) {
        const ls_item *it = &r->items[i];
        ls_counter c;
        cg_err err = ls_counter_get(t, req->route, it->limit_id, it->period_index, &c);
        if (err != CG_ERR_OK) {
            return err;
        }
        if (holds) {
            c.reserved = ls_sub_floor0(c.reserved, it->amount);
        }
        c.used = ls_sat_add(c.used, ls_amount_of(actual, it->metric));
        if (sc != NULL && (err = ls_thresholds(t, req->route, sc, ls_scope_limit(sc, it->limit_id),
                                               it, &c)) != CG_ERR_OK) {
            return err;
        }
        if ((err = ls_counter_put(t, req->route, it->limit_id, it->period_index, &c)) !=
            CG_ERR_OK) {
            return err;
        }
    }
    return CG_ERR_OK;
}

static cg_err ls_settle_write(ls_txn *t, const proto_req *req, const ls_scope *sc, ls_resv *r,
                              uint8_t was_state, proto_rep *rep)
{
    const char *rid = req->u.settle.request_id;
    cg_err err = ls_settle_counters(t, req, sc, r, was_state == LS_RESV_ACTIVE);
    if (err != CG_ERR_OK) {
        return err;
    }
    r->late = was_state != LS_RESV_ACTIVE;
    r->settled = req->u.settle.actual;
    if ((err = ls_resv_finish(t, rid, req->route, r, was_state, LS_RESV_SETTLED)) != CG_ERR_OK) {
        return err;
    }
    if (req->u.settle.has_usage) {
        proto_usage u = req->u.settle.usage;
        if (u.ts_ms == 0) {
            u.ts_ms = t->now_ms;
        }
        if ((err = ls_usage_put(t, rid, &u)) != CG_ERR_OK) {
            return err;
        }
    }
    if (r->late) {
        t->p.late_settles++;
        cg_log(CG_LOG_WARN, "late settle recorded as spend", "request_id", rid, "route", req->route,
               "reason", was_state == 0 ? "unknown request id" : "lease expired", NULL);
    }
    rep->u.settle.late = r->late;
    return CG_ERR_OK;
}

static cg_err ls_op_settle(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    const char *rid = req->u.settle.request_id;
    ls_scope sc;
    ls_resv r;
    if (!ls_reqid_valid(rid) || !ls_amounts_valid(&req->u.settle.actual)) {
        return CG_ERR_INVAL;
    }
    cg_err scope_err = ls_scope_load(t, req->route, &sc);
    if (scope_err != CG_ERR_OK && scope_err != CG_ERR_NOTFOUND) {
        return scope_err;
    }
    cg_err err = ls_resv_get(t, rid, req->route, &r);
    uint8_t was_state = err == CG_ERR_OK ? r.state : 0;
    if (err == CG_ERR_NOTFOUND) {
        if (scope_err != CG_ERR_OK) {
            return scope_err;
        }
        if ((err = ls_settle_unknown(t, &sc, &r)) != CG_ERR_OK) {
            return err;
        }
    } else if (err != CG_ERR_OK) {
        return err;
    } else if (r.state == LS_RESV_SETTLED) {
        /* A retry with the same contents is answered again without counting twice. */
        if (!ls_amounts_equal(&r.settled, &req->u.settle.actual)) {
            return CG_ERR_CONFLICT;
        }
        rep->u.settle.late = r.late;
        return CG_ERR_OK;
    } else if (r.state == LS_RESV_RELEASED) {
        return CG_ERR_CONFLICT;
    }
    return ls_settle_write(t, req, scope_err == CG_ERR_OK ? &sc : NULL, &r, was_state, rep);
}

/* ---- RELEASE ---- */

static cg_err ls_op_release(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    const char *rid = req->u.release.request_id;
    ls_resv r;
    (void)rep;
    if (!ls_reqid_valid(rid)) {
        return CG_ERR_INVAL;
    }
    cg_err err = ls_resv_get(t, rid, req->route, &r);
    if (err == CG_ERR_NOTFOUND) {
        return CG_ERR_OK; /* nothing held */
    }
    if (err != CG_ERR_OK) {
        return err;
    }
    switch (r.state) {
    case LS_RESV_SETTLED:
        return CG_ERR_CONFLICT;
    case LS_RESV_RELEASED:
    case LS_RESV_EXPIRED:
        return CG_ERR_OK;
    default:
        break;
    }
    if ((err = ls_resv_return(t, req->route, &r)) != CG_ERR_OK) {
        return err;
    }
    return ls_resv_finish(t, rid, req->route, &r, LS_RESV_ACTIVE, LS_RESV_RELEASED);
}

/* ---- definitions ---- */

static cg_err ls_op_put_org(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    const proto_org *o = &req->u.put_org.org;
    proto_org old;
    (void)rep;
    if (!ls_route_is(req->route, "org:", o->id) || o->billing_anchor_day > 28 ||
        ls_limits_validate(o->limits, o->limit_n) != CG_ERR_OK) {
        return CG_ERR_INVAL;
    }
    if (req->u.put_org.create_only) {
        cg_err err = ls_org_get(t, o->id, &old);
        if (err == CG_ERR_OK) {
            return CG_ERR_EXISTS;
        }
        if (err != CG_ERR_NOTFOUND) {
            return err;
        }
    }
    return ls_org_put(t, o);
}

static cg_err ls_op_put_key(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    const proto_key *k = &req->u.put_key.key;
    proto_key old;
    (void)rep;
    if (!ls_route_is(req->route, "key:", k->id) || k->billing_anchor_day > 28 ||
        ls_limits_validate(k->limits, k->limit_n) != CG_ERR_OK) {
        return CG_ERR_INVAL;
    }
    if (req->u.put_key.create_only) {
        cg_err err = ls_apikey_get(t, k->id, &old);
        if (err == CG_ERR_OK) {
            return CG_ERR_EXISTS;
        }
        if (err != CG_ERR_NOTFOUND) {
            return err;
        }
    }
    return ls_apikey_put(t, k);
}

static cg_err ls_op_get_org(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    if (strncmp(req->route, "org:", 4) != 0) {
        return CG_ERR_NOTFOUND;
    }
    return ls_org_get(t, req->route + 4, &rep->u.get_org.org);
}

static cg_err ls_op_get_key(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    ls_scope sc;
    if (strncmp(req->route, "key:", 4) != 0) {
        return CG_ERR_NOTFOUND;
    }
    cg_err err = ls_apikey_get(t, req->route + 4, &rep->u.get_key.key);
    if (err == CG_ERR_OK) {
        err = ls_scope_load(t, req->route, &sc);
    }
    if (err == CG_ERR_OK) {
        err = ls_states_read(t, req->route, &sc, rep->u.get_key.states, &rep->u.get_key.state_n);
    }
    return err;
}

/* ---- EVENTS_SINCE ---- */

static cg_err ls_events_read(ls_txn *t, uint64_t after, uint32_t max_n, proto_event *out,
                             uint32_t *n)
{
    MDB_cursor *cur = NULL;
    ls_key k;
    MDB_val key, val;
    cg_err err = CG_ERR_OK;
    int rc = mdb_cursor_open(t->txn, t->s->db_events, &cur);
    if (rc != MDB_SUCCESS) {
        return ls_lmdb_fail(t, rc, "cursor open");
    }
    ls_key_u64(&k, after + 1);
    key.mv_size = k.n;
    key.mv_data = k.b;
    *n = 0;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); rc == MDB_SUCCESS && *n < max_n;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (proto_event_decode(val.mv_data, val.mv_size, &out[*n]) != CG_ERR_OK) {
            cg_log(CG_LOG_ERROR, "corrupt event record", NULL);
            err = CG_ERR_DB;
            break;
        }
        (*n)++;
    }
    if (err == CG_ERR_OK && rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        err = ls_lmdb_fail(t, rc, "cursor get");
    }
    mdb_cursor_close(cur);
    return err;
}

static cg_err ls_op_events_since(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    uint64_t last = t->p.next_seq - 1;
    uint64_t after = req->u.events_since.after_seq;
    uint32_t max_n = req->u.events_since.max_n;
    if (max_n == 0 || max_n > PROTO_EVENTS_MAX) {
        max_n = PROTO_EVENTS_MAX;
    }
    rep->u.events.last_seq = last;
    if (after >= last) {
        return CG_ERR_OK;
    }
    if (last - after < max_n) {
        max_n = (uint32_t)(last - after);
    }
    proto_event *ev = calloc(max_n, sizeof(*ev));
    if (ev == NULL) {
        return CG_ERR_NOMEM;
    }
    uint32_t n = 0;
    cg_err err = ls_events_read(t, after, max_n, ev, &n);
    if (err != CG_ERR_OK || n == 0) {
        free(ev);
        return err;
    }
    rep->u.events.events = ev;
    rep->u.events.n = n;
    return CG_ERR_OK;
}

/* ---- dispatch ---- */

static const struct ls_op_desc {
    ls_op_fn fn;
    uint8_t routed; /* the route must be owned by this shard */
} ls_ops[] = {
    [PROTO_OP_PING] = {.fn = ls_op_ping, .routed = 0},
    [PROTO_OP_AUTH] = {.fn = ls_op_auth, .routed = 1},
    [PROTO_OP_RESERVE] = {.fn = ls_op_reserve, .routed = 1},
    [PROTO_OP_SETTLE] = {.fn = ls_op_settle, .routed = 1},
    [PROTO_OP_RELEASE] = {.fn = ls_op_release, .routed = 1},
    [PROTO_OP_PUT_ORG] = {.fn = ls_op_put_org, .routed = 1},
    [PROTO_OP_GET_ORG] = {.fn = ls_op_get_org, .routed = 1},
    [PROTO_OP_PUT_KEY] = {.fn = ls_op_put_key, .routed = 1},
    [PROTO_OP_GET_KEY] = {.fn = ls_op_get_key, .routed = 1},
    [PROTO_OP_EVENTS_SINCE] = {.fn = ls_op_events_since, .routed = 0},
};

void ls_op_apply(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    ledger_rep_clear(rep);
    rep->op = req->op;
    if (req->op >= sizeof(ls_ops) / sizeof(ls_ops[0]) || ls_ops[req->op].fn == NULL) {
        rep->status = CG_ERR_INVAL;
        return;
    }
    const struct ls_op_desc *d = &ls_ops[req->op];
    if (d->routed && cg_ring_lookup(t->s->ring, req->route, strnlen(req->route, PROTO_ROUTE_MAX)) !=
                         t->s->shard_index) {
        rep->status = CG_ERR_WRONG_SHARD;
        return;
    }
    cg_err err = d->fn(t, req, rep);
    if (t->broken) {
        err = t->broken_err;
    }
    if (err != CG_ERR_OK && err != CG_ERR_BUDGET) {
        /* Only a refusal's reply carries a body; other failures are a status alone. */
        ledger_rep_clear(rep);
        rep->op = req->op;
    }
    rep->status = (uint16_t)err;
}

/* ---- the lease sweep and the dedup-window gc ---- */

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
    int rc = mdb_cursor_open(t->txn, dbi, &cur);
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
    cg_err err = d->parsed ? ls_resv_get(t, d->rid, d->route, &r) : CG_ERR_NOTFOUND;
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
    return ls_del(t, t->s->db_leases, d->key.b, d->key.n);
}

/* The dedup window of a finished reservation is over: forget it. */
static cg_err ls_sweep_gc(ls_txn *t, const ls_due *d)
{
    ls_resv r;
    cg_err err = d->parsed ? ls_resv_get(t, d->rid, d->route, &r) : CG_ERR_NOTFOUND;
    if (t->broken) {
        return t->broken_err;
    }
    if (err == CG_ERR_OK && r.state != LS_RESV_ACTIVE) {
        ls_key k;
        ls_key_resv(&k, d->rid, d->route);
        if ((err = ls_del(t, t->s->db_resv, k.b, k.n)) != CG_ERR_OK) {
            return err;
        }
        t->p.gc_deleted++;
    }
    return ls_del(t, t->s->db_gc, d->key.b, d->key.n);
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
    cg_err err = ls_sweep_index(t, t->s->db_leases, ls_sweep_lease);
    if (err == CG_ERR_OK) {
        err = ls_sweep_index(t, t->s->db_gc, ls_sweep_gc);
    }
    return err;
}
