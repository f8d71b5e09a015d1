/*
 * proto_rec.c — the record codecs of the ledger protocol (limits, orgs, keys,
 * usage, events, limit states, refusals) and the SPEC names of its enums.
 *
 * The same codecs serve network messages and LMDB values, so a record read
 * back from disk is checked exactly like one from a peer. Layouts are listed
 * in proto.c's header comment.
 *
 * Invariant: each record has one validity predicate (*_ok below) covering the
 * bounds documented in proto.h. Writers assert it (a programmer error to
 * encode an invalid record); readers apply it after decoding and answer
 * CG_ERR_PROTO. So whatever an encoder accepts, its decoder accepts, and a
 * decoded record always satisfies its documented bounds.
 */
#include "proto_wire.h"

#include <assert.h>
#include <string.h>

#define ORG_ARITY 6
#define KEY_ARITY 9
#define LIMIT_ARITY 7
#define WEBHOOK_ARITY 2
#define USAGE_ARITY 10
#define EVENT_ARITY 16
#define STATE_ARITY 5
#define REFUSAL_ARITY 8
#define AMOUNTS_ARITY 3
#define HASH_BYTES 32

/* ---- validity ---- */

bool proto_window_ok(cg_window w)
{
    if (w.kind == CG_WIN_SLIDING) {
        return w.sliding_s >= 1 && w.sliding_s <= CG_WINDOW_SLIDING_MAX_S;
    }
    return w.kind < CG_WIN_SLIDING && w.sliding_s == 0;
}

/* Only a sliding window carries its length; others are written (and must be read) as 0. */
static uint32_t window_len_s(cg_window w)
{
    return w.kind == CG_WIN_SLIDING ? w.sliding_s : 0;
}

static bool limit_ok(const proto_limit *l)
{
    cg_window w = {l->window.kind, window_len_s(l->window)};
    if (l->id == 0 || l->metric >= PROTO_METRIC_COUNT_ || l->action > PROTO_ACTION_WARN ||
        !proto_window_ok(w) || l->warn_n > PROTO_WARN_MAX) {
        return false;
    }
    for (uint32_t i = 0; i < l->warn_n; i++) {
        uint32_t prev = i == 0 ? 0 : l->warn_bp[i - 1];
        if (l->warn_bp[i] <= prev || l->warn_bp[i] > PROTO_BP_MAX) {
            return false;
        }
    }
    return true;
}

/* n limits, each valid, with distinct ids (ids name the counters of their scope). */
static bool limits_ok(const proto_limit *l, uint32_t n)
{
    if (n > PROTO_LIMITS_MAX) {
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (!limit_ok(&l[i])) {
            return false;
        }
        for (uint32_t j = 0; j < i; j++) {
            if (l[j].id == l[i].id) {
                return false;
            }
        }
    }
    return true;
}

static bool anchor_ok(uint8_t day)
{
    return day >= PROTO_ANCHOR_MIN && day <= PROTO_ANCHOR_MAX;
}

static bool event_ok(const proto_event *e)
{
    cg_window w = {e->window.kind, window_len_s(e->window)};
    return e->metric < PROTO_METRIC_COUNT_ && e->scope <= PROTO_SCOPE_ORG &&
           e->type >= PROTO_EVT_SPEND_WARNING && e->type <= PROTO_EVT_REQUEST_REACHED &&
           (e->type - 1) / 2 == e->metric && proto_window_ok(w) && e->threshold_bp >= 1 &&
           e->threshold_bp <= PROTO_BP_MAX;
}

/* ---- limits and windows ---- */

static void wr_window(proto_wr *w, cg_window win)
{
    proto_wr_u64(w, win.kind);
    proto_wr_u64(w, window_len_s(win));
}

static cg_err rd_window(proto_rd *rd, cg_window *win)
{
    PROTO_TRY(proto_rd_u8(rd, CG_WIN_SLIDING, &win->kind));
    PROTO_TRY(proto_rd_u32(rd, CG_WINDOW_SLIDING_MAX_S, &win->sliding_s));
    return proto_window_ok(*win) ? CG_ERR_OK : CG_ERR_PROTO;
}

static void wr_limits(proto_wr *w, const proto_limit *ls, uint8_t n)
{
    assert(limits_ok(ls, n));
    proto_wr_array(w, n);
    for (uint32_t i = 0; i < n; i++) {
        const proto_limit *l = &ls[i];
        proto_wr_array(w, LIMIT_ARITY);
        proto_wr_u64(w, l->id);
        proto_wr_u64(w, l->metric);
        wr_window(w, l->window);
        proto_wr_i64(w, l->max);
        proto_wr_u64(w, l->action);
        proto_wr_array(w, l->warn_n);
        for (uint32_t j = 0; j < l->warn_n; j++) {
            proto_wr_u64(w, l->warn_bp[j]);
        }
    }
}

static cg_err rd_limit(proto_rd *rd, proto_limit *l)
{
    uint32_t n;
    PROTO_TRY(proto_rd_array_n(rd, LIMIT_ARITY));
    PROTO_TRY(proto_rd_u32(rd, UINT32_MAX, &l->id));
    PROTO_TRY(proto_rd_u8(rd, PROTO_METRIC_COUNT_ - 1, &l->metric));
    PROTO_TRY(rd_window(rd, &l->window));
    PROTO_TRY(proto_rd_i64(rd, &l->max));
    PROTO_TRY(proto_rd_u8(rd, PROTO_ACTION_WARN, &l->action));
    PROTO_TRY(proto_rd_array(rd, PROTO_WARN_MAX, &n));
    l->warn_n = (uint8_t)n;
    for (uint32_t j = 0; j < n; j++) {
        PROTO_TRY(proto_rd_u16(rd, PROTO_BP_MAX, &l->warn_bp[j]));
    }
    return CG_ERR_OK;
}

static cg_err rd_limits(proto_rd *rd, proto_limit *ls, uint8_t *n_out)
{
    uint32_t n;
    PROTO_TRY(proto_rd_array(rd, PROTO_LIMITS_MAX, &n));
    for (uint32_t i = 0; i < n; i++) {
        PROTO_TRY(rd_limit(rd, &ls[i]));
    }
    if (!limits_ok(ls, n)) {
        return CG_ERR_PROTO;
    }
    *n_out = (uint8_t)n;
    return CG_ERR_OK;
}

/* ---- orgs and keys ---- */

void proto_wr_org(proto_wr *w, const proto_org *o)
{
    assert(anchor_ok(o->billing_anchor_day) && o->webhook_n <= PROTO_WEBHOOKS_MAX);
    proto_wr_array(w, ORG_ARITY);
    proto_wr_str(w, o->id, PROTO_ID_MAX);
    proto_wr_str(w, o->name, PROTO_NAME_MAX);
    proto_wr_u64(w, o->billing_anchor_day);
    proto_wr_i64(w, o->created_ms);
    wr_limits(w, o->limits, o->limit_n);
    proto_wr_array(w, o->webhook_n);
    for (uint32_t i = 0; i < o->webhook_n; i++) {
        proto_wr_array(w, WEBHOOK_ARITY);
        proto_wr_str(w, o->webhooks[i].url, PROTO_URL_MAX);
        proto_wr_str(w, o->webhooks[i].secret, PROTO_SECRET_MAX);
    }
}

cg_err proto_rd_org(proto_rd *rd, proto_org *o)
{
    uint32_t n;
    PROTO_TRY(proto_rd_array_n(rd, ORG_ARITY));
    PROTO_TRY(proto_rd_str(rd, o->id, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, o->name, PROTO_NAME_MAX));
    PROTO_TRY(proto_rd_u8(rd, PROTO_ANCHOR_MAX, &o->billing_anchor_day));
    if (!anchor_ok(o->billing_anchor_day)) {
        return CG_ERR_PROTO;
    }
    PROTO_TRY(proto_rd_i64(rd, &o->created_ms));
    PROTO_TRY(rd_limits(rd, o->limits, &o->limit_n));
    PROTO_TRY(proto_rd_array(rd, PROTO_WEBHOOKS_MAX, &n));
    o->webhook_n = (uint8_t)n;
    for (uint32_t i = 0; i < n; i++) {
        PROTO_TRY(proto_rd_array_n(rd, WEBHOOK_ARITY));
        PROTO_TRY(proto_rd_str(rd, o->webhooks[i].url, PROTO_URL_MAX));
        PROTO_TRY(proto_rd_str(rd, o->webhooks[i].secret, PROTO_SECRET_MAX));
    }
    return CG_ERR_OK;
}

void proto_wr_key(proto_wr *w, const proto_key *k)
{
    assert(anchor_ok(k->billing_anchor_day));
    proto_wr_array(w, KEY_ARITY);
    proto_wr_str(w, k->id, PROTO_ID_MAX);
    proto_wr_str(w, k->org, PROTO_ID_MAX);
    proto_wr_str(w, k->name, PROTO_NAME_MAX);
    proto_wr_bin(w, k->hash, HASH_BYTES);
    proto_wr_i64(w, k->created_ms);
    proto_wr_i64(w, k->expires_ms);
    proto_wr_bool(w, k->revoked != 0);
    proto_wr_u64(w, k->billing_anchor_day);
    wr_limits(w, k->limits, k->limit_n);
}

cg_err proto_rd_key(proto_rd *rd, proto_key *k)
{
    PROTO_TRY(proto_rd_array_n(rd, KEY_ARITY));
    PROTO_TRY(proto_rd_str(rd, k->id, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, k->org, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, k->name, PROTO_NAME_MAX));
    PROTO_TRY(proto_rd_bin(rd, k->hash, HASH_BYTES));
    PROTO_TRY(proto_rd_i64(rd, &k->created_ms));
    PROTO_TRY(proto_rd_i64(rd, &k->expires_ms));
    PROTO_TRY(proto_rd_bool(rd, &k->revoked));
    PROTO_TRY(proto_rd_u8(rd, PROTO_ANCHOR_MAX, &k->billing_anchor_day));
    if (!anchor_ok(k->billing_anchor_day)) {
        return CG_ERR_PROTO;
    }
    return rd_limits(rd, k->limits, &k->limit_n);
}

/* ---- usage, events ---- */

void proto_wr_usage(proto_wr *w, const proto_usage *u)
{
    proto_wr_array(w, USAGE_ARITY);
    proto_wr_i64(w, u->ts_ms);
    proto_wr_str(w, u->org, PROTO_ID_MAX);
    proto_wr_str(w, u->key_id, PROTO_ID_MAX);
    proto_wr_str(w, u->model, PROTO_MODEL_MAX);
    proto_wr_i64(w, u->prompt_tokens);
    proto_wr_i64(w, u->completion_tokens);
    proto_wr_i64(w, u->cost_nusd);
    proto_wr_i64(w, u->status);
    proto_wr_i64(w, u->latency_ms);
    proto_wr_bool(w, u->estimated != 0);
}

cg_err proto_rd_usage(proto_rd *rd, proto_usage *u)
{
    PROTO_TRY(proto_rd_array_n(rd, USAGE_ARITY));
    PROTO_TRY(proto_rd_i64(rd, &u->ts_ms));
    PROTO_TRY(proto_rd_str(rd, u->org, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, u->key_id, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, u->model, PROTO_MODEL_MAX));
    PROTO_TRY(proto_rd_i64(rd, &u->prompt_tokens));
    PROTO_TRY(proto_rd_i64(rd, &u->completion_tokens));
    PROTO_TRY(proto_rd_i64(rd, &u->cost_nusd));
    PROTO_TRY(proto_rd_i32(rd, &u->status));
    PROTO_TRY(proto_rd_i32(rd, &u->latency_ms));
    return proto_rd_bool(rd, &u->estimated);
}

void proto_wr_event(proto_wr *w, const proto_event *e)
{
    assert(event_ok(e));
    proto_wr_array(w, EVENT_ARITY);
    proto_wr_u64(w, e->seq);
    proto_wr_str(w, e->id, PROTO_EVENT_ID_MAX);
    proto_wr_u64(w, e->type);
    proto_wr_i64(w, e->created_ms);
    proto_wr_str(w, e->org, PROTO_ID_MAX);
    proto_wr_u64(w, e->scope);
    proto_wr_str(w, e->scope_id, PROTO_ID_MAX);
    proto_wr_u64(w, e->limit_id);
    proto_wr_u64(w, e->metric);
    wr_window(w, e->window);
    proto_wr_i64(w, e->period_start_ms);
    proto_wr_i64(w, e->period_end_ms);
    proto_wr_u64(w, e->threshold_bp);
    proto_wr_i64(w, e->max);
    proto_wr_i64(w, e->used);
}

cg_err proto_rd_event(proto_rd *rd, proto_event *e)
{
    PROTO_TRY(proto_rd_array_n(rd, EVENT_ARITY));
    PROTO_TRY(proto_rd_u64(rd, UINT64_MAX, &e->seq));
    PROTO_TRY(proto_rd_str(rd, e->id, PROTO_EVENT_ID_MAX));
    PROTO_TRY(proto_rd_u8(rd, PROTO_EVT_REQUEST_REACHED, &e->type));
    PROTO_TRY(proto_rd_i64(rd, &e->created_ms));
    PROTO_TRY(proto_rd_str(rd, e->org, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_u8(rd, PROTO_SCOPE_ORG, &e->scope));
    PROTO_TRY(proto_rd_str(rd, e->scope_id, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_u32(rd, UINT32_MAX, &e->limit_id));
    PROTO_TRY(proto_rd_u8(rd, PROTO_METRIC_COUNT_ - 1, &e->metric));
    PROTO_TRY(rd_window(rd, &e->window));
    PROTO_TRY(proto_rd_i64(rd, &e->period_start_ms));
    PROTO_TRY(proto_rd_i64(rd, &e->period_end_ms));
    PROTO_TRY(proto_rd_u16(rd, PROTO_BP_MAX, &e->threshold_bp));
    PROTO_TRY(proto_rd_i64(rd, &e->max));
    PROTO_TRY(proto_rd_i64(rd, &e->used));
    return event_ok(e) ? CG_ERR_OK : CG_ERR_PROTO;
}

/* ---- limit states, refusals, amounts ---- */

void proto_wr_states(proto_wr *w, const proto_limit_state *s, uint8_t n)
{
    assert(n <= PROTO_LIMITS_MAX);
    proto_wr_array(w, n);
    for (uint32_t i = 0; i < n; i++) {
        proto_wr_array(w, STATE_ARITY);
        proto_wr_u64(w, s[i].limit_id);
        proto_wr_i64(w, s[i].used);
        proto_wr_i64(w, s[i].reserved);
        proto_wr_i64(w, s[i].period_start_ms);
        proto_wr_i64(w, s[i].period_end_ms);
    }
}

cg_err proto_rd_states(proto_rd *rd, proto_limit_state *s, uint8_t *n_out)
{
    uint32_t n;
    PROTO_TRY(proto_rd_array(rd, PROTO_LIMITS_MAX, &n));
    for (uint32_t i = 0; i < n; i++) {
        PROTO_TRY(proto_rd_array_n(rd, STATE_ARITY));
        PROTO_TRY(proto_rd_u32(rd, UINT32_MAX, &s[i].limit_id));
        PROTO_TRY(proto_rd_i64(rd, &s[i].used));
        PROTO_TRY(proto_rd_i64(rd, &s[i].reserved));
        PROTO_TRY(proto_rd_i64(rd, &s[i].period_start_ms));
        PROTO_TRY(proto_rd_i64(rd, &s[i].period_end_ms));
    }
    *n_out = (uint8_t)n;
    return CG_ERR_OK;
}

void proto_wr_refusal(proto_wr *w, const proto_refusal *r)
{
    assert(r->metric < PROTO_METRIC_COUNT_);
    assert(proto_window_ok((cg_window){r->window.kind, window_len_s(r->window)}));
    proto_wr_array(w, REFUSAL_ARITY);
    proto_wr_u64(w, r->limit_id);
    proto_wr_u64(w, r->metric);
    wr_window(w, r->window);
    proto_wr_i64(w, r->max);
    proto_wr_i64(w, r->used);
    proto_wr_i64(w, r->reserved);
    proto_wr_i64(w, r->resets_at_ms);
}

cg_err proto_rd_refusal(proto_rd *rd, proto_refusal *r)
{
    PROTO_TRY(proto_rd_array_n(rd, REFUSAL_ARITY));
    PROTO_TRY(proto_rd_u32(rd, UINT32_MAX, &r->limit_id));
    PROTO_TRY(proto_rd_u8(rd, PROTO_METRIC_COUNT_ - 1, &r->metric));
    PROTO_TRY(rd_window(rd, &r->window));
    PROTO_TRY(proto_rd_i64(rd, &r->max));
    PROTO_TRY(proto_rd_i64(rd, &r->used));
    PROTO_TRY(proto_rd_i64(rd, &r->reserved));
    return proto_rd_i64(rd, &r->resets_at_ms);
}

void proto_wr_amounts(proto_wr *w, const proto_amounts *a)
{
    proto_wr_array(w, AMOUNTS_ARITY);
    proto_wr_i64(w, a->cost_nusd);
    proto_wr_i64(w, a->tokens);
    proto_wr_i64(w, a->requests);
}

cg_err proto_rd_amounts(proto_rd *rd, proto_amounts *a)
{
    PROTO_TRY(proto_rd_array_n(rd, AMOUNTS_ARITY));
    PROTO_TRY(proto_rd_i64(rd, &a->cost_nusd));
    PROTO_TRY(proto_rd_i64(rd, &a->tokens));
    return proto_rd_i64(rd, &a->requests);
}

/* ---- names ---- */

static const char *const metric_names[] = {"cost", "tokens", "requests"};
static const char *const action_names[] = {"block", "warn"};
static const char *const scope_names[] = {"key", "group", "customer", "org"};
static const char *const event_names[] = {
    NULL,
    "spend_cap_warning_threshold_reached",
    "spend_cap_reached",
    "token_quota_warning_threshold_reached",
    "token_quota_reached",
    "request_quota_warning_threshold_reached",
    "request_quota_reached",
};
static const char *const op_names[] = {
    NULL,      "ping",    "auth",    "reserve", "settle",       "release",
    "put_org", "get_org", "put_key", "get_key", "events_since",
};

#define NAME_AT(table, i) \
    ((i) >= 0 && (size_t)(i) < sizeof(table) / sizeof((table)[0]) ? (table)[i] : NULL)

static int name_find(const char *const *table, size_t n, const char *s)
{
    if (s == NULL) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (table[i] != NULL && strcmp(table[i], s) == 0) {
            return (int)i;
        }
    }
    return -1;
}

const char *proto_metric_name(int metric)
{
    return NAME_AT(metric_names, metric);
}

const char *proto_action_name(int action)
{
    return NAME_AT(action_names, action);
}

const char *proto_scope_name(int scope)
{
    return NAME_AT(scope_names, scope);
}

const char *proto_event_type_name(int type)
{
    return NAME_AT(event_names, type);
}

const char *proto_op_name(int op)
{
    return NAME_AT(op_names, op);
}

int proto_metric_parse(const char *s)
{
    return name_find(metric_names, sizeof(metric_names) / sizeof(metric_names[0]), s);
}

int proto_action_parse(const char *s)
{
    return name_find(action_names, sizeof(action_names) / sizeof(action_names[0]), s);
}

int proto_event_type_for(int metric, int reached)
{
    if (metric < 0 || metric >= PROTO_METRIC_COUNT_) {
        return -1;
    }
    return 1 + metric * 2 + (reached ? 1 : 0);
}
