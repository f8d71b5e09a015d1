/*
 * gw_proxy_rsv.c — the reservation of an admitted request on every scope it
 * touches (SPEC §3; docs/contracts.md "Issue 3", step 7).
 *
 * One RESERVE per scope (key, group, customer, org), all submitted at once;
 * the gateway waits for every reply. Then:
 *   - all accepted                → the upstream starts;
 *   - any refused (BUDGET)        → the accepted ones are released and their
 *                                   releases acknowledged (or timed out) before
 *                                   the client hears 402 budget_exceeded or, for
 *                                   a sliding window, 429 rate_limit_exceeded with
 *                                   Retry-After; the reported scope is the first
 *                                   refusing one in the order key, group,
 *                                   customer, org;
 *   - clamp (on_low_budget)       → when only cost/token limits refused and a
 *                                   completion of at least clamp_min_tokens fits
 *                                   every limit: release all, lower the bound in
 *                                   the body, reserve again once (new request
 *                                   id: the first one's reservations are spent);
 *   - a shard unreachable         → release the others, 503 (fail-closed); with
 *                                   fail_mode open the request proceeds on what
 *                                   was reserved;
 *   - key or org record gone      → release the others, 401 invalid_api_key;
 *     group gone                  → that scope is dropped (no group).
 * Invariant: `waiting` counts the operations of the current round; the round's
 * continuation runs exactly once, when it drops to 0.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cg_clock.h"
#include "cg_log.h"
#include "cg_money.h"
#include "cg_str.h"
#include "gw_body.h"
#include "gw_json.h"
#include "gw_proxy_int.h"

/* ---- scopes ---- */

/* Scope kind with its ledger route prefix + a [+ "/" + b]. */
static void gw_proxy_scope_add(gw_proxy *p, int kind, const char *id, const char *prefix,
                               const char *a, const char *b)
{
    gw_scope *s = &p->scopes[p->scope_n];
    memset(s, 0, sizeof(*s));
    s->kind = (uint8_t)kind;
    CG_STR_CAT(s->id, sizeof(s->id), id);
    CG_STR_CAT(s->route, sizeof(s->route), prefix, a, b[0] ? "/" : "", b);
    p->slots[p->scope_n].p = p;
    p->slots[p->scope_n].idx = p->scope_n;
    p->scope_n++;
}

void gw_proxy_scopes_build(gw_proxy *p)
{
    const proto_key *k = &p->key;
    p->scope_n = 0;
    gw_proxy_scope_add(p, PROTO_SCOPE_KEY, k->id, "key:", k->id, "");
    if (k->group[0] != '\0' && p->group.found) {
        gw_proxy_scope_add(p, PROTO_SCOPE_GROUP, k->group, "group:", k->org, k->group);
    }
    if (p->customer[0] != '\0') {
        gw_proxy_scope_add(p, PROTO_SCOPE_CUSTOMER, p->customer, "customer:", k->org, p->customer);
    }
    gw_proxy_scope_add(p, PROTO_SCOPE_ORG, k->org, "org:", k->org, "");
}

/* ---- refusals ---- */

static const char *gw_window_adjective(cg_window w)
{
    switch (w.kind) {
    case CG_WIN_LIFETIME:
        return "Lifetime";
    case CG_WIN_DAY:
        return "Daily";
    case CG_WIN_WEEK:
        return "Weekly";
    default:
        return "Monthly";
    }
}

/* "key team-search", "group search", "customer cust-42", "org acme". */
static void gw_scope_label(const gw_proxy *p, const gw_scope *s, char *out, size_t cap)
{
    const char *name = s->kind == PROTO_SCOPE_KEY ? p->key.name : s->id;
    snprintf(out, cap, "%s %.100s", proto_scope_name(s->kind), name);
}

/* "spend cap of $200.00" / "token quota of 5000 tokens" / "request quota of 60 requests". */
static void gw_refusal_what(const proto_refusal *r, char *out, size_t cap)
{
    if (r->metric == PROTO_METRIC_COST) {
        char max_s[48];
        cg_money_format(r->max, 2, max_s, sizeof(max_s));
        snprintf(out, cap, "spend cap of $%s", max_s);
    } else {
        int tok = r->metric == PROTO_METRIC_TOKENS;
        snprintf(out, cap, "%s quota of %lld %s", tok ? "token" : "request", (long long)r->max,
                 tok ? "tokens" : "requests");
    }
}

static void gw_refusal_message(const gw_proxy *p, const gw_scope *s, char *out, size_t cap)
{
    const proto_refusal *r = &s->refusal;
    char what[96], who[128];
    gw_scope_label(p, s, who, sizeof(who));
    gw_refusal_what(r, what, sizeof(what));
    if (r->window.kind == CG_WIN_SLIDING) {
        char win[32];
        cg_window_format(r->window, win, sizeof(win));
        snprintf(out, cap, "Rate limit reached for %s: %s per %s. Please retry later.", who, what,
                 win);
    } else if (r->used >= r->max) {
        snprintf(out, cap, "%s %s reached for %s", gw_window_adjective(r->window), what, who);
    } else {
        char lower[16];
        snprintf(lower, sizeof(lower), "%s", gw_window_adjective(r->window));
        lower[0] = (char)(lower[0] - 'A' + 'a');
        snprintf(out, cap, "Request would exceed the %s %s for %s", lower, what, who);
    }
}

/* 402 budget_exceeded or 429 rate_limit_exceeded for the first refusing scope. */
static void gw_proxy_refuse(gw_proxy *p)
{
    int i = gw_scopes_first_refusal(p->scopes, p->scope_n);
    assert(i >= 0);
    const gw_scope *s = &p->scopes[i];
    char msg[384], hdr[48] = "";
    gw_refusal_message(p, s, msg, sizeof(msg));
    cJSON *limit = gw_json_refusal(s->kind, s->id, &s->refusal);
    int sliding = s->refusal.window.kind == CG_WIN_SLIDING;
    cg_log(CG_LOG_INFO, sliding ? "rate limit exceeded" : "budget exceeded", "request_id", p->rid,
           "key", p->key.id, "scope", proto_scope_name(s->kind), "scope_id", s->id, NULL);
    if (sliding) {
        int64_t ms = s->refusal.retry_after_ms;
        long long secs = ms <= 1000 ? 1 : (long long)((ms - 1) / 1000 + 1);
        snprintf(hdr, sizeof(hdr), "Retry-After: %lld\r\n", secs);
        gw_proxy_fail_ex(p, 429, "rate_limit_error", "rate_limit_exceeded", msg, NULL, limit, hdr);
    } else {
        gw_proxy_fail_ex(p, 402, "insufficient_quota", "budget_exceeded", msg, NULL, limit, NULL);
    }
}

/* ---- release ---- */

static void gw_proxy_round_done(gw_proxy *p);

static void gw_proxy_release_log(const gw_proxy_slot *sl, cg_err err, const proto_rep *rep)
{
    cg_err st = err == CG_ERR_OK ? (cg_err)rep->status : err;
    if (st != CG_ERR_OK && st != CG_ERR_NOTFOUND) {
        cg_log(CG_LOG_WARN, "release failed; the reservation lapses when its lease expires",
               "request_id", sl->p->rid, "route", sl->p->scopes[sl->idx].route, "error",
               cg_err_name(st), NULL);
    }
}

/* A release nobody waits for (the upstream failed, the client left). */
static void gw_proxy_release_cb(cg_err err, const proto_rep *rep, void *ud)
{
    gw_proxy_slot *sl = ud;
    gw_proxy_release_log(sl, err, rep);
    gw_proxy_unref(sl->p);
}

/* A release of an admission round: the answer waits for it. */
static void gw_proxy_round_release_cb(cg_err err, const proto_rep *rep, void *ud)
{
    gw_proxy_slot *sl = ud;
    gw_proxy *p = sl->p;
    gw_proxy_release_log(sl, err, rep);
    assert(p->waiting > 0);
    if (--p->waiting == 0) {
        gw_proxy_round_done(p);
    }
    gw_proxy_unref(p);
}

/* Release every reservation held (but the key scope's when but_key); returns how many
 * releases are in flight. */
static uint8_t gw_proxy_release_held(gw_proxy *p, gw_ledger_cb cb, int but_key)
{
    uint8_t n = 0;
    for (uint8_t i = 0; i < p->scope_n; i++) {
        gw_scope *s = &p->scopes[i];
        if (but_key && s->kind == PROTO_SCOPE_KEY) {
            continue;
        }
        if (p->lease[i] != NULL) {
            gw_lease_return(p->lease[i], &p->lease_worst[i]);
            p->lease[i] = NULL;
            continue;
        }
        if (!s->reserved) {
            continue;
        }
        s->reserved = 0;
        proto_req rq;
        memset(&rq, 0, sizeof(rq));
        rq.op = PROTO_OP_RELEASE;
        snprintf(rq.route, sizeof(rq.route), "%s", s->route);
        snprintf(rq.u.release.request_id, sizeof(rq.u.release.request_id), "%s", p->rid);
        cg_err err = gw_proxy_submit(p, &rq, cb, &p->slots[i]);
        if (err != CG_ERR_OK) {
            cg_log(CG_LOG_WARN, "release not sent; the reservation lapses when its lease expires",
                   "request_id", p->rid, "route", s->route, "error", cg_err_name(err), NULL);
        } else {
            n++;
        }
    }
    return n;
}

void gw_proxy_release(gw_proxy *p)
{
    (void)gw_proxy_release_held(p, gw_proxy_release_cb, 0);
}

void gw_proxy_release_but_key(gw_proxy *p)
{
    (void)gw_proxy_release_held(p, gw_proxy_release_cb, 1);
    for (uint8_t i = 0; i < p->scope_n; i++) {
        if (p->scopes[i].kind != PROTO_SCOPE_KEY) {
            p->scopes[i].settled = 1; /* finished by its release: no settle */
        }
    }
}

/* Release what is held, then continue with next (at once if nothing is held). */
static void gw_proxy_release_then(gw_proxy *p, int next)
{
    p->then = (uint8_t)next;
    p->waiting = gw_proxy_release_held(p, gw_proxy_round_release_cb, 0);
    if (p->waiting == 0) {
        gw_proxy_round_done(p);
    }
}

/* ---- clamp ---- */

static int gw_proxy_clamp_enabled(const gw_proxy *p)
{
    uint8_t mode = p->key.on_low_budget;
    if (mode == PROTO_LOW_BUDGET_INHERIT) {
        mode = p->org.on_low_budget;
    }
    return mode == PROTO_LOW_BUDGET_CLAMP && !p->clamped && p->est.choices > 0;
}

/* The lowered per-choice bound, or -1 when a clamp cannot help. */
static int64_t gw_proxy_clamp_target(const gw_proxy *p)
{
    if (!gw_proxy_clamp_enabled(p)) {
        return -1;
    }
    gw_clamp_in in = {
        .worst_cost_nusd = p->est.cost_nusd,
        .worst_tokens = gw_estimate_tokens(&p->est),
        .prompt_tokens = p->est.prompt_tokens,
        .prompt_cost_nusd = gw_estimate_prompt_cost(p->model, p->est.prompt_tokens),
        .fee_nusd = p->env->cfg->routing_fee_nusd,
        .completion_rate = p->model->completion_nusd_per_mtok,
        .choices = p->est.choices,
    };
    int64_t v = gw_clamp_max_tokens(p->scopes, p->scope_n, &in);
    if (v < (int64_t)p->env->cfg->clamp_min_tokens || v >= p->est.max_tokens) {
        return -1;
    }
    return v;
}

/* Lower the bound in the body and reserve again under a fresh request id. */
static void gw_proxy_clamp(gw_proxy *p)
{
    gw_body_edit edit = {.set_max = p->clamp_to, .include_usage = 0};
    char *nb = NULL;
    size_t nl = 0;
    if (gw_body_rewrite(p->ep, p->up_body, p->up_len, NULL, &edit, &nb, &nl) != CG_ERR_OK) {
        gw_proxy_fail(p, 500, "server_error", "internal_error", "Out of memory.");
        return;
    }
    free(p->up_body);
    p->up_body = nb;
    p->up_len = nl;
    char old[GW_REQID_LEN + 1], to[24], from[24];
    memcpy(old, p->rid, sizeof(old));
    snprintf(from, sizeof(from), "%lld", (long long)p->est.max_tokens);
    snprintf(to, sizeof(to), "%lld", (long long)p->clamp_to);
    gw_estimate_set_max(p->env->cfg, p->model, &p->est, p->clamp_to);
    gw_proxy_reqid(p->env, p->rid);
    p->clamped = 1;
    cg_log(CG_LOG_INFO, "low budget: max tokens clamped", "request_id", p->rid, "first_attempt",
           old, "key", p->key.id, "from", from, "to", to, NULL);
    for (uint8_t i = 0; i < p->scope_n; i++) {
        gw_scope keep = p->scopes[i];
        memset(&p->scopes[i], 0, sizeof(p->scopes[i]));
        p->scopes[i].kind = keep.kind;
        memcpy(p->scopes[i].id, keep.id, sizeof(keep.id));
        memcpy(p->scopes[i].route, keep.route, sizeof(keep.route));
        p->scopes[i].skip = keep.skip;
    }
    gw_proxy_reserve_all(p);
}

/* ---- reserve ---- */

/* Every release of the round is acknowledged: carry out what was decided. */
static void gw_proxy_round_done(gw_proxy *p)
{
    switch (p->client_gone ? GW_NEXT_GONE : p->then) {
    case GW_NEXT_REFUSE:
        gw_proxy_refuse(p);
        break;
    case GW_NEXT_INVALID:
        gw_proxy_invalid_key(p);
        break;
    case GW_NEXT_CLAMP:
        gw_proxy_clamp(p);
        break;
    case GW_NEXT_DOWN:
        gw_proxy_ledger_down(p, CG_ERR_UNAVAILABLE, "reserve");
        break;
    default:
        gw_proxy_done(p);
        break;
    }
}

/* Classify the round's replies into the next step (GW_NEXT_NONE: go upstream). */
static int gw_proxy_reserve_verdict(gw_proxy *p)
{
    int refused = 0, down = 0, gone = 0;
    for (uint8_t i = 0; i < p->scope_n; i++) {
        gw_scope *s = &p->scopes[i];
        if (s->skip || s->st == CG_ERR_OK) {
            continue;
        }
        if (s->st == CG_ERR_BUDGET) {
            refused = 1;
        } else if (s->st == CG_ERR_NOTFOUND && !s->transport &&
                   (s->kind == PROTO_SCOPE_GROUP || s->kind == PROTO_SCOPE_CUSTOMER)) {
            cg_log(CG_LOG_WARN, "scope vanished; reserved without it", "request_id", p->rid,
                   "route", s->route, NULL);
            s->skip = 1;
        } else if (s->st == CG_ERR_NOTFOUND && !s->transport) {
            gone = 1;
        } else if (!s->transport || !p->env->cfg->fail_open) {
            down = 1;
            cg_log(CG_LOG_WARN, "reserve failed", "request_id", p->rid, "route", s->route, "error",
                   cg_err_name((cg_err)s->st), NULL);
        } else {
            cg_log(CG_LOG_WARN, "ledger unavailable, fail-open: proceeding without reservation",
                   "request_id", p->rid, "route", s->route, "error", cg_err_name((cg_err)s->st),
                   NULL);
        }
    }
    if (gone) {
        return GW_NEXT_INVALID;
    }
    if (refused) {
        p->clamp_to = gw_proxy_clamp_target(p);
        return p->clamp_to >= 0 ? GW_NEXT_CLAMP : GW_NEXT_REFUSE;
    }
    return down ? GW_NEXT_DOWN : GW_NEXT_NONE;
}

/* Every reserve reply of the round arrived. */
static void gw_proxy_reserved_all(gw_proxy *p)
{
    if (p->client_gone) {
        gw_proxy_release_then(p, GW_NEXT_GONE);
        return;
    }
    int next = gw_proxy_reserve_verdict(p);
    if (next == GW_NEXT_NONE) {
        gw_proxy_upstream_start(p);
        return;
    }
    gw_proxy_release_then(p, next);
}

/*
 * A reserve whose answer timed out may still be applied by the shard — one that was frozen or slow applies what
 * it queued when it wakes. A RELEASE by the same request id follows it on the same
 * connection, so the shard applies it after; for nothing held it is a no-op. Without it
 * the worst case stays reserved until the reservation's lease expires. Nobody waits for
 * it: the request goes on (fail open) or is answered 503 as before.
 */
static void gw_proxy_release_unknown(gw_proxy *p, gw_proxy_slot *sl)
{
    const gw_scope *s = &p->scopes[sl->idx];
    proto_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.op = PROTO_OP_RELEASE;
    CG_STR_CAT(rq.route, sizeof(rq.route), s->route);
    CG_STR_CAT(rq.u.release.request_id, sizeof(rq.u.release.request_id), p->rid);
    (void)gw_proxy_submit(p, &rq, gw_proxy_release_cb, sl);
}

static void gw_proxy_reserve_cb(cg_err err, const proto_rep *rep, void *ud)
{
    gw_proxy_slot *sl = ud;
    gw_proxy *p = sl->p;
    gw_scope *s = &p->scopes[sl->idx];
    assert(p->refs >= 2); /* this operation's reference and the flow's */
    s->done = 1;
    s->transport = err != CG_ERR_OK;
    s->st = (uint16_t)(err == CG_ERR_OK ? (cg_err)rep->status : err);
    if (err == CG_ERR_TIMEOUT) {
        gw_proxy_release_unknown(p, sl);
    }
    if (err == CG_ERR_OK && (s->st == CG_ERR_OK || s->st == CG_ERR_BUDGET)) {
        s->reserved = s->st == CG_ERR_OK;
        s->state_n = rep->u.reserve.state_n <= PROTO_LIMITS_MAX ? rep->u.reserve.state_n : 0;
        memcpy(s->states, rep->u.reserve.states, sizeof(s->states[0]) * s->state_n);
        if (s->st == CG_ERR_BUDGET) {
            s->refusal = rep->u.reserve.refusal;
            if (gw_lease_enabled(p->env, s->kind)) {
                gw_lease_note_refusal(p->env, s->route, &p->lease_worst[sl->idx], &s->refusal,
                                      s->states, s->state_n);
            }
        }
    }
    assert(p->waiting > 0);
    if (--p->waiting == 0) {
        gw_proxy_reserved_all(p);
    }
    gw_proxy_unref(p);
}

static void gw_proxy_reserve_req(const gw_proxy *p, const gw_scope *s, proto_req *rq)
{
    memset(rq, 0, sizeof(*rq));
    rq->op = PROTO_OP_RESERVE;
    snprintf(rq->route, sizeof(rq->route), "%s", s->route);
    snprintf(rq->u.reserve.request_id, sizeof(rq->u.reserve.request_id), "%s", p->rid);
    rq->u.reserve.lease_ms = p->env->cfg->lease_ms;
    rq->u.reserve.worst.cost_nusd = p->est.cost_nusd;
    rq->u.reserve.worst.tokens = gw_estimate_tokens(&p->est);
    rq->u.reserve.worst.requests = 1;
    if (s->kind == PROTO_SCOPE_CUSTOMER) {
        /* The org's calendar applies to the defaults and to the customer's overrides. */
        rq->u.reserve.anchor_day = p->org.anchor_day;
        rq->u.reserve.inline_n = p->org.customer_limit_n;
        memcpy(rq->u.reserve.inline_limits, p->org.customer_limits,
               sizeof(p->org.customer_limits[0]) * p->org.customer_limit_n);
    }
}

/* Scope idx is admitted on lease L (no shard operation). */
static void gw_proxy_lease_take(gw_proxy *p, uint8_t idx, gw_lease *L)
{
    gw_scope *s = &p->scopes[idx];
    p->lease[idx] = L;
    s->done = 1;
    s->transport = 0;
    s->reserved = 0;
    s->st = CG_ERR_OK;
    s->state_n = gw_lease_states(L, s->states);
}

void gw_proxy_lease_ready(gw_proxy *p, uint8_t idx, gw_lease *L)
{
    gw_scope *s = &p->scopes[idx];
    if (L != NULL) {
        gw_proxy_lease_take(p, idx, L);
    } else {
        /* No lease: this request reserves for itself, exactly as without leasing. */
        proto_req rq;
        gw_proxy_reserve_req(p, s, &rq);
        cg_err err = gw_proxy_submit(p, &rq, gw_proxy_reserve_cb, &p->slots[idx]);
        if (err == CG_ERR_OK) {
            gw_proxy_unref(p); /* the wait's reference; the operation holds its own */
            return;
        }
        s->done = 1;
        s->transport = 1;
        s->st = (uint16_t)(err == CG_ERR_SHUTDOWN ? CG_ERR_UNAVAILABLE : err);
    }
    assert(p->waiting > 0);
    if (--p->waiting == 0) {
        gw_proxy_reserved_all(p);
    }
    gw_proxy_unref(p);
}

void gw_proxy_reserve_all(gw_proxy *p)
{
    p->phase = GW_PH_RESERVE;
    p->waiting = 1; /* held while submitting, so no reply completes the round early */
    gw_proxy_ref(p);
    for (uint8_t i = 0; i < p->scope_n; i++) {
        gw_scope *s = &p->scopes[i];
        if (s->skip) {
            continue;
        }
        if (gw_lease_enabled(p->env, s->kind)) {
            proto_amounts worst = {.cost_nusd = p->est.cost_nusd,
                                   .tokens = gw_estimate_tokens(&p->est),
                                   .requests = 1};
            gw_lease *L = NULL;
            p->lease_worst[i] = worst;
            const gw_lease_refusal *no = gw_lease_refused(p->env, s->route, &worst);
            if (no != NULL) {
                /* Definitively refused moments ago (used alone leaves no room). */
                s->done = 1;
                s->transport = 0;
                s->st = CG_ERR_BUDGET;
                s->refusal = no->refusal;
                if (no->refusal.window.kind == CG_WIN_SLIDING) {
                    /* Retry-After from now, not from the refusal remembered. */
                    int64_t left = no->refusal.resets_at_ms - cg_now_ms();
                    s->refusal.retry_after_ms = left > 0 ? left : 1;
                }
                s->state_n = no->state_n;
                memcpy(s->states, no->states, sizeof(s->states[0]) * no->state_n);
                continue;
            }
            gw_lease_verdict v = gw_lease_admit(p->env, p, i, s->route, &worst, &L);
            if (v == GW_LEASE_ADMITTED) {
                gw_proxy_lease_take(p, i, L);
                continue;
            }
            if (v == GW_LEASE_WAIT) {
                p->waiting++; /* gw_proxy_lease_ready ends it */
                continue;
            }
        }
        proto_req rq;
        gw_proxy_reserve_req(p, s, &rq);
        p->waiting++;
        cg_err err = gw_proxy_submit(p, &rq, gw_proxy_reserve_cb, &p->slots[i]);
        if (err != CG_ERR_OK) {
            p->waiting--;
            s->done = 1;
            s->transport = 1;
            s->st = (uint16_t)(err == CG_ERR_SHUTDOWN ? CG_ERR_UNAVAILABLE : err);
        }
    }
    if (--p->waiting == 0) {
        gw_proxy_reserved_all(p);
    }
    gw_proxy_unref(p);
}

/* ---- success headers ---- */

size_t gw_proxy_success_headers(const gw_proxy *p, char *buf, size_t len, size_t cap)
{
    gw_charge_adj adj = {0};
    if (p->charged) {
        /* The settle swaps the reserved worst case for the actual amounts. */
        adj.cost_nusd = p->est.cost_nusd - p->cost_nusd;
        adj.tokens = gw_estimate_tokens(&p->est) - p->tokens;
    }
    return gw_scopes_headers(p->scopes, p->scope_n, cg_now_ms(), &adj, buf, len, cap);
}
