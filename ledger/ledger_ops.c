/*
 * ledger_ops.c — the ledger's money operations (RESERVE, SETTLE, RELEASE),
 * PING and AUTH, threshold events and the dispatch of every operation, each
 * applied inside the batch's write transaction (see ledger_store.c).
 * Definitions and log reads live in ledger_defs.c, the lease sweep in
 * ledger_sweep.c, counter arithmetic (calendar and sliding) in ledger_meter.c.
 *
 * Every operation follows the write discipline of ledger_int.h: it reads and
 * decides first (refusals happen before any write), then writes. Replies are
 * final only once the batch commits; the caller sends them after that.
 *
 * Money rules (SPEC §3): a reservation is admitted only if, for every block
 * limit with max > 0, used + reserved + worst <= max (sliding windows: the
 * usage still in the window); then every limit (warn limits too) carries the
 * worst case in `reserved`. A settle moves the reservation into `used`; a
 * settle that comes after its lease expired (or of an id never seen) still
 * counts as spend and is reported late. Threshold events (calendar and
 * lifetime limits of every scope kind) are checked after `used` grows and
 * appended in the same transaction. A settle on a key lease carries the usage
 * records of the requests it charges (rec_n, recs): written with the counters,
 * only when the settle is applied.
 */
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_log.h"
#include "ledger_int.h"

/* ---- helpers ---- */

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

cg_err ls_states_read(ls_txn *t, const char *route, const ls_scope *sc, proto_limit_state *states,
                      uint8_t *n)
{
    ls_meter m;
    for (uint8_t i = 0; i < sc->limit_n; i++) {
        cg_err err = ls_meter_load(t, route, sc, &sc->limits[i], &m);
        if (err != CG_ERR_OK) {
            return err;
        }
        ls_meter_state(&m, &sc->limits[i], t->now_ms, &states[i]);
    }
    *n = sc->limit_n;
    return CG_ERR_OK;
}

cg_err ls_resv_finish(ls_txn *t, const char *rid, const char *route, ls_resv *r, uint8_t was_state,
                      uint8_t new_state)
{
    ls_key k;
    cg_err err;
    r->state = new_state;
    if ((err = ls_resv_put(t, rid, route, r)) != CG_ERR_OK) {
        return err;
    }
    if (was_state == LS_RESV_ACTIVE) {
        ls_key_index(&k, r->expires_ms, rid, route);
        if ((err = ls_del(t, t->s->rdb_leases, k.b, k.n)) != CG_ERR_OK) {
            return err;
        }
    }
    /* A SETTLED record moves to the durable env (ls_resv_put), so it gets a durable gc entry
     * whatever state it came from; other finished records stay in the reservation env. */
    if (was_state == LS_RESV_ACTIVE || was_state == 0 || new_state == LS_RESV_SETTLED) {
        ls_key_index(&k, ls_sat_add(r->expires_ms, LEDGER_DEDUP_MS), rid, route);
        return ls_put(t, new_state == LS_RESV_SETTLED ? t->s->db_gc : t->s->rdb_gc, k.b, k.n, "",
                      0);
    }
    return CG_ERR_OK;
}

cg_err ls_resv_return(ls_txn *t, const char *route, const ls_resv *r)
{
    ls_meter m;
    for (uint8_t i = 0; i < r->item_n; i++) {
        const ls_item *it = &r->items[i];
        cg_err err = ls_meter_load_item(t, route, it, &m);
        if (err != CG_ERR_OK) {
            return err;
        }
        m.c.reserved = ls_sub_floor0(m.c.reserved, it->amount);
        if ((err = ls_meter_store(t, route, it->limit_id, &m)) != CG_ERR_OK) {
            return err;
        }
    }
    return CG_ERR_OK;
}

/* The reservation item of limit l on meter m, with the limit's snapshot. */
static ls_item ls_item_make(const proto_limit *l, const ls_meter *m, int64_t amount)
{
    ls_item it = {.limit_id = l->id,
                  .metric = l->metric,
                  .period_index = m->period_index,
                  .period_start_ms = m->start_ms,
                  .period_end_ms = m->end_ms,
                  .amount = amount,
                  .window = l->window,
                  .max = l->max,
                  .action = l->action,
                  .warn_n = l->warn_n};
    memcpy(it.warn_bp, l->warn_bp, sizeof(it.warn_bp));
    return it;
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
    ev.period_end_ms = it->period_end_ms == INT64_MAX ? 0 : it->period_end_ms;
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
 * *_reached event, which would otherwise share its id. Sliding windows have no
 * periods and fire nothing.
 */
static cg_err ls_thresholds(ls_txn *t, const char *route, const ls_scope *sc, const proto_limit *l,
                            const ls_item *it, ls_counter *c)
{
    cg_err err = CG_ERR_OK;
    if (l == NULL || l->max <= 0 || l->metric != it->metric || it->period_index < 0 ||
        l->window.kind == CG_WIN_SLIDING) {
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
    /* The current secret, or the previous one until its grace period ends (issue 5). */
    int cur = CRYPTO_memcmp(k.hash, req->u.auth.hash, sizeof(k.hash)) == 0;
    int prev = k.prev_expires_ms > t->now_ms &&
               CRYPTO_memcmp(k.prev_hash, req->u.auth.hash, sizeof(k.prev_hash)) == 0;
    if ((!cur && !prev) || k.revoked) {
        return CG_ERR_UNAUTHORIZED;
    }
    rep->u.auth.key = k;
    return CG_ERR_OK;
}

/* ---- RESERVE ---- */

/* Read every limit's meter; refuse (BUDGET, with the first failing limit) if the worst case
 * does not fit a block limit. */
static cg_err ls_reserve_plan(ls_txn *t, const proto_req *req, const ls_scope *sc, ls_meter *m,
                              proto_rep *rep)
{
    const proto_amounts *worst = &req->u.reserve.worst;
    for (uint8_t i = 0; i < sc->limit_n; i++) {
        cg_err err = ls_meter_load(t, req->route, sc, &sc->limits[i], &m[i]);
        if (err != CG_ERR_OK) {
            return err;
        }
        ls_meter_state(&m[i], &sc->limits[i], t->now_ms, &rep->u.reserve.states[i]);
    }
    rep->u.reserve.state_n = sc->limit_n;
    for (uint8_t i = 0; i < sc->limit_n; i++) {
        const proto_limit *l = &sc->limits[i];
        int64_t w = ls_amount_of(worst, l->metric);
        if (!ls_meter_fits(&m[i], l, w, t->now_ms)) {
            ls_meter_refusal(&m[i], l, w, t->now_ms, &rep->u.reserve.refusal);
            return CG_ERR_BUDGET;
        }
    }
    return CG_ERR_OK;
}

static cg_err ls_reserve_write(ls_txn *t, const proto_req *req, const ls_scope *sc, ls_meter *m,
                               proto_rep *rep)
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
        m[i].c.reserved = ls_sat_add(m[i].c.reserved, amount);
        r.items[i] = ls_item_make(l, &m[i], amount);
        if ((err = ls_meter_store(t, req->route, l->id, &m[i])) != CG_ERR_OK) {
            return err;
        }
        ls_meter_state(&m[i], l, t->now_ms, &rep->u.reserve.states[i]);
    }
    if ((err = ls_resv_put(t, rid, req->route, &r)) != CG_ERR_OK) {
        return err;
    }
    ls_key_index(&k, r.expires_ms, rid, req->route);
    return ls_put(t, t->s->rdb_leases, k.b, k.n, "", 0);
}

static cg_err ls_op_reserve(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    const char *rid = req->u.reserve.request_id;
    const ls_defaults cd = {.anchor_day = req->u.reserve.anchor_day,
                            .n = req->u.reserve.inline_n,
                            .limits = req->u.reserve.inline_limits};
    ls_scope sc;
    ls_resv r;
    ls_meter m[PROTO_LIMITS_MAX]; /* ~16 KiB: the writer thread has a full-size stack */
    if (!ls_reqid_valid(rid) || req->u.reserve.lease_ms <= 0 ||
        req->u.reserve.lease_ms > LEDGER_LEASE_MAX_MS || !ls_amounts_valid(&req->u.reserve.worst)) {
        return CG_ERR_INVAL;
    }
    cg_err err = ls_scope_load(t, req->route, &cd, &sc);
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
    if ((err = ls_reserve_plan(t, req, &sc, m, rep)) != CG_ERR_OK) {
        return err;
    }
    return ls_reserve_write(t, req, &sc, m, rep);
}

/* ---- SETTLE ---- */

/* A settle's lease usage records (docs/leasing.md): only on a key route, every record of
 * that key and with a request id. Checked before anything is written. */
static int ls_settle_recs_valid(const proto_req *req)
{
    uint32_t n = req->u.settle.rec_n;
    if (n == 0) {
        return 1;
    }
    if (n > PROTO_SETTLE_RECS_MAX || req->u.settle.recs == NULL ||
        strncmp(req->route, "key:", 4) != 0) {
        return 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        const proto_usage *u = &req->u.settle.recs[i];
        if (!ls_reqid_valid(u->request_id) || strcmp(u->key_id, req->route + 4) != 0) {
            return 0;
        }
    }
    return 1;
}

/* Write a settle's lease usage records, each under its own request id (ts 0 = now). */
static cg_err ls_settle_recs_write(ls_txn *t, const proto_req *req)
{
    for (uint32_t i = 0; i < req->u.settle.rec_n; i++) {
        proto_usage u = req->u.settle.recs[i];
        if (u.ts_ms == 0) {
            u.ts_ms = t->now_ms;
        }
        cg_err err = ls_usage_put(t, u.request_id, &u);
        if (err != CG_ERR_OK) {
            return err;
        }
    }
    return CG_ERR_OK;
}

/* A settle of an id this shard never saw (or no longer remembers): count it against the
 * scope's current periods. A customer's inline defaults are not known here, so only its
 * override limits count such a settle. */
static cg_err ls_settle_unknown(ls_txn *t, const char *route, const ls_scope *sc, ls_resv *r)
{
    ls_meter m;
    memset(r, 0, sizeof(*r));
    r->created_ms = t->now_ms;
    r->expires_ms = t->now_ms;
    r->item_n = sc->limit_n;
    for (uint8_t i = 0; i < sc->limit_n; i++) {
        cg_err err = ls_meter_load(t, route, sc, &sc->limits[i], &m);
        if (err != CG_ERR_OK) {
            return err;
        }
        r->items[i] = ls_item_make(&sc->limits[i], &m, 0);
    }
    return CG_ERR_OK;
}

/* The definition a settle judges thresholds by: the scope's current limit; for a customer, the
 * reservation's snapshot when the limit came from inline defaults (not stored here). */
static const proto_limit *ls_settle_limit(const ls_scope *sc, const ls_item *it, proto_limit *snap)
{
    const proto_limit *l = sc != NULL ? ls_scope_limit(sc, it->limit_id) : NULL;
    if (l == NULL && sc != NULL && sc->kind == PROTO_SCOPE_CUSTOMER) {
        ls_item_limit(it, snap);
        l = snap;
    }
    return l;
}

/* used += actual on every item's meter (reserved -= amount while the lease holds). */
static cg_err ls_settle_counters(ls_txn *t, const proto_req *req, const ls_scope *sc,
                                 const ls_resv *r, int holds)
{
    const proto_amounts *actual = &req->u.settle.actual;
    ls_meter m;
    proto_limit snap;
    for (uint8_t i = 0; i < r->item_n; i++) {
        const ls_item *it = &r->items[i];
        cg_err err = ls_meter_load_item(t, req->route, it, &m);
        if (err != CG_ERR_OK) {
            return err;
        }
        if (holds) {
            m.c.reserved = ls_sub_floor0(m.c.reserved, it->amount);
        }
        ls_meter_add_used(&m, ls_amount_of(actual, it->metric), r->created_ms, t->now_ms);
        if (sc != NULL && !m.sliding &&
            (err = ls_thresholds(t, req->route, sc, ls_settle_limit(sc, it, &snap), it, &m.c)) !=
                CG_ERR_OK) {
            return err;
        }
        if ((err = ls_meter_store(t, req->route, it->limit_id, &m)) != CG_ERR_OK) {
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
    if ((err = ls_settle_recs_write(t, req)) != CG_ERR_OK) {
        return err;
    }
    if (r->late) {
        t->p.late_settles++;
        cg_log(CG_LOG_WARN, "late settle recorded as spend", "request_id", rid, "route", req->route,
               "reason", was_state == 0 ? "unknown request id" : "lease expired", NULL);
    }
    rep->u.settle.late = r->late;
    return CG_ERR_OK;
}

/*
 * Partial settle (budget leases, docs/leasing.md): charge `actual` against an ACTIVE
 * reservation without finishing it. Per item: reserved -= min(amount, actual), the item's
 * amount shrinks by the same, used += actual, thresholds fire as used grows. The lease is
 * extended to now + lease_ms. Idempotent per charge_seq: the last applied seq is kept in
 * the (otherwise unused while ACTIVE / EXPIRED) `settled.requests` field, and a seq not
 * above it is answered OK without counting. On an EXPIRED reservation (or an unknown id)
 * the charge still counts as spend (late), as a late final settle would. The settle's usage
 * records are written with the counters, late or not, and never for a seq already applied.
 */
#define LS_RESV_CHARGE_SEQ(r) ((r)->settled.requests)
static cg_err ls_op_settle_partial(ls_txn *t, const proto_req *req, const ls_scope *sc,
                                   proto_rep *rep)
{
    const char *rid = req->u.settle.request_id;
    const proto_amounts *actual = &req->u.settle.actual;
    ls_resv r;
    ls_meter m;
    ls_key k;
    proto_limit snap;
    cg_err err = ls_resv_get(t, rid, req->route, &r);
    uint8_t was_state = err == CG_ERR_OK ? r.state : 0;
    if (err == CG_ERR_NOTFOUND) {
        if (sc == NULL) {
            return CG_ERR_NOTFOUND;
        }
        if ((err = ls_settle_unknown(t, req->route, sc, &r)) != CG_ERR_OK) {
            return err;
        }
    } else if (err != CG_ERR_OK) {
        return err;
    } else if (r.state == LS_RESV_SETTLED || r.state == LS_RESV_RELEASED) {
        return CG_ERR_CONFLICT;
    }
    if (was_state != 0 && (int64_t)req->u.settle.charge_seq <= LS_RESV_CHARGE_SEQ(&r)) {
        rep->u.settle.late = was_state != LS_RESV_ACTIVE;
        return CG_ERR_OK; /* already applied */
    }
    int holds = was_state == LS_RESV_ACTIVE;
    for (uint8_t i = 0; i < r.item_n; i++) {
        ls_item *it = &r.items[i];
        if ((err = ls_meter_load_item(t, req->route, it, &m)) != CG_ERR_OK) {
            return err;
        }
        int64_t a = ls_amount_of(actual, it->metric);
        if (holds) {
            int64_t back = a < it->amount ? a : it->amount;
            m.c.reserved = ls_sub_floor0(m.c.reserved, back);
            it->amount -= back;
        }
        /* A lease's charges cover requests admitted since the lease began: in a sliding
         * window they go to the bucket of now (never earlier than those requests), not to
         * the lease's creation, which may have left the window long ago. */
        ls_meter_add_used(&m, a, t->now_ms, t->now_ms);
        if (sc != NULL && !m.sliding &&
            (err = ls_thresholds(t, req->route, sc, ls_settle_limit(sc, it, &snap), it, &m.c)) !=
                CG_ERR_OK) {
            return err;
        }
        if ((err = ls_meter_store(t, req->route, it->limit_id, &m)) != CG_ERR_OK) {
            return err;
        }
    }
    if ((err = ls_settle_recs_write(t, req)) != CG_ERR_OK) {
        return err;
    }
    LS_RESV_CHARGE_SEQ(&r) = (int64_t)req->u.settle.charge_seq;
    if (holds) {
        ls_key_index(&k, r.expires_ms, rid, req->route);
        if ((err = ls_del(t, t->s->rdb_leases, k.b, k.n)) != CG_ERR_OK) {
            return err;
        }
        r.expires_ms = t->now_ms + req->u.settle.lease_ms;
    }
    /* The charge seq must survive an OS crash with the usage it counted: a durable copy. */
    if (was_state == 0) {
        r.state = LS_RESV_EXPIRED; /* an unknown id: recorded as finished (below) */
    }
    if ((err = ls_resv_put_durable(t, rid, req->route, &r)) != CG_ERR_OK) {
        return err;
    }
    if (holds) {
        if ((err = ls_resv_put(t, rid, req->route, &r)) != CG_ERR_OK) {
            return err;
        }
        ls_key_index(&k, r.expires_ms, rid, req->route);
        return ls_put(t, t->s->rdb_leases, k.b, k.n, "", 0);
    }
    /* Late: counted as spend; an unknown id becomes an EXPIRED record (dedup of later seqs). */
    t->p.late_settles++;
    cg_log(CG_LOG_WARN, "late partial settle recorded as spend", "request_id", rid, "route",
           req->route, NULL);
    rep->u.settle.late = 1;
    if (was_state == 0) {
        return ls_resv_finish(t, rid, req->route, &r, 0, LS_RESV_EXPIRED);
    }
    if ((err = ls_resv_put(t, rid, req->route, &r)) != CG_ERR_OK) {
        return err;
    }
    /* Its gc entry again (the same key if it exists): the record may come from the durable
     * copy alone, after the reservation env was recreated. */
    ls_key_index(&k, ls_sat_add(r.expires_ms, LEDGER_DEDUP_MS), rid, req->route);
    return ls_put(t, t->s->rdb_gc, k.b, k.n, "", 0);
}

static cg_err ls_op_settle(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    const char *rid = req->u.settle.request_id;
    ls_scope sc;
    ls_resv r;
    if (!ls_reqid_valid(rid) || !ls_amounts_valid(&req->u.settle.actual) ||
        !ls_settle_recs_valid(req)) {
        return CG_ERR_INVAL;
    }
    cg_err scope_err = ls_scope_load(t, req->route, NULL, &sc);
    if (scope_err != CG_ERR_OK && scope_err != CG_ERR_NOTFOUND) {
        return scope_err;
    }
    if (req->u.settle.partial) {
        if (req->u.settle.charge_seq == 0 || req->u.settle.lease_ms <= 0 ||
            req->u.settle.lease_ms > LEDGER_LEASE_MAX_MS) {
            return CG_ERR_INVAL;
        }
        return ls_op_settle_partial(t, req, scope_err == CG_ERR_OK ? &sc : NULL, rep);
    }
    cg_err err = ls_resv_get(t, rid, req->route, &r);
    uint8_t was_state = err == CG_ERR_OK ? r.state : 0;
    if (err == CG_ERR_NOTFOUND) {
        if (scope_err != CG_ERR_OK) {
            return scope_err;
        }
        if ((err = ls_settle_unknown(t, req->route, &sc, &r)) != CG_ERR_OK) {
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
    [PROTO_OP_PUT_GROUP] = {.fn = ls_op_put_group, .routed = 1},
    [PROTO_OP_GET_GROUP] = {.fn = ls_op_get_group, .routed = 1},
    [PROTO_OP_PUT_CUSTOMER] = {.fn = ls_op_put_customer, .routed = 1},
    [PROTO_OP_GET_CUSTOMER] = {.fn = ls_op_get_customer, .routed = 1},
    [PROTO_OP_DELETE] = {.fn = ls_op_delete, .routed = 1},
    [PROTO_OP_USAGE_QUERY] = {.fn = ls_op_usage_query, .routed = 0},
    [PROTO_OP_GET_ORG_STATE] = {.fn = ls_op_get_org_state, .routed = 1},
    [PROTO_OP_LIST_KEYS] = {.fn = ls_op_list_keys, .routed = 0},
    [PROTO_OP_PUT_PRICING] = {.fn = ls_op_put_pricing, .routed = 1},
    [PROTO_OP_LIST_PRICING] = {.fn = ls_op_list_pricing, .routed = 0},
    [PROTO_OP_USAGE_SERIES] = {.fn = ls_op_usage_series, .routed = 0},
    [PROTO_OP_USAGE_RECORDS] = {.fn = ls_op_usage_records, .routed = 0},
};

/*
 * ledger_rep_clear, but zeroing only the body the new op's reply uses: a proto_rep is ~8 KB
 * (the union's largest member), a reserve's body ~1 KB and a settle's a byte, and the full
 * memset per op was a measurable share of the writer. proto_rep_encode reads only the member
 * of rep->op, and a failure other than a refusal clears the whole reply again below.
 */
static void ls_rep_reset(proto_rep *rep, uint8_t op)
{
    size_t body = sizeof(rep->u);
    proto_rep_owned_free(rep);
    if (op == PROTO_OP_RESERVE) {
        body = sizeof(rep->u.reserve);
    } else if (op == PROTO_OP_SETTLE || op == PROTO_OP_RELEASE) {
        body = sizeof(rep->u.settle);
    }
    memset(rep, 0, offsetof(proto_rep, u) + body);
}

void ls_op_apply(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    ls_rep_reset(rep, req->op);
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
