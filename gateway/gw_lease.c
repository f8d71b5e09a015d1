/*
 * gw_lease.c — budget leases for hot scopes; see gw_lease.h and docs/leasing.md.
 *
 * Lease life: ACQUIRING (RESERVE of the slice in flight; requests wait on it)
 * → ACTIVE (admits locally; partial SETTLEs every tick carry the charges and
 * renew the shard lease) → RETIRED (admits nothing; once no request runs on it
 * and no partial settle is unconfirmed, the final SETTLE of the unflushed rest
 * goes out) → FINAL (final settle in flight) → DONE (freed once no operation
 * of it is in flight). Every operation of a lease counts in env->active_n, so
 * a draining worker finishes only after its leases were returned.
 *
 * Key leases carry their requests' usage records: a finished request's record
 * waits in `recs` until the next partial settle takes it (in `frecs` while in
 * flight, resent as is on a retry) and is written by the shard in the same
 * transaction as the charge. A route with a sliding-window limit ends its lease
 * with an empty final settle after a last partial one: the shard places a
 * partial charge in the window's bucket of its arrival (never earlier than the
 * requests it covers), a final settle at the lease's creation.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cg_clock.h"
#include "cg_log.h"
#include "gw_lease.h"
#include "gw_proxy_int.h"

enum { GL_ACQUIRING = 1, GL_ACTIVE, GL_RETIRED, GL_FINAL, GL_DONE };

/* A partial or final settle whose outcome is unknown (timeout, shard unreachable) is
 * resent with the same contents (idempotent on the shard) for as long as the worker has
 * a ledger: giving it up would either lose its usage records or count its charge twice
 * when the shard applies the copy it already has (it_lease_pending_long_freeze). After
 * this many tries it is logged once. */
#define GL_TRIES_LOG 10
/* Sends of the release that follows a timed-out lease acquire (gl_release_send). */
#define GL_RELEASE_TRIES 30

typedef struct gl_waiter {
    gw_proxy *p;
    uint8_t idx;
    proto_amounts worst;
} gl_waiter;

struct gw_lease {
    gw_proxy_env *env;
    gw_lease *next;
    char route[PROTO_ROUTE_MAX + 1];
    char rid[PROTO_REQID_MAX + 1];
    uint8_t state;
    uint8_t flush_busy;  /* a partial settle in flight */
    uint8_t flush_retry; /* the last partial settle failed: resend it (same seq) */
    uint32_t flush_tries;
    uint8_t flush_failed; /* a partial settle was given up: the final carries the rest */
    uint8_t sliding;      /* the route has a sliding-window limit */
    uint32_t final_tries;
    uint8_t release_retry; /* the release of a timed-out acquire is to be resent (tick) */
    uint8_t release_tries;
    uint32_t ops;   /* operations in flight */
    uint32_t users; /* requests admitted and not finished */
    uint32_t seq;   /* charge_seq of the last partial settle sent */
    int64_t lease_len_ms;
    proto_amounts slice;    /* asked for */
    proto_amounts granted;  /* held on the shard (0 until ACTIVE) */
    proto_amounts charged;  /* actual usage of finished requests */
    proto_amounts held;     /* worst cases of requests in flight */
    proto_amounts flushed;  /* confirmed by partial settles */
    proto_amounts flushing; /* in the partial settle in flight / to resend */
    int64_t expires_ms;     /* wall clock: the shard lease ends no earlier */
    int64_t sent_ms;        /* wall clock at the last acquire / partial settle sent */
    int64_t last_use_mono;
    uint8_t state_n;
    proto_limit_state states[PROTO_LIMITS_MAX];
    gl_waiter *w;
    uint32_t wn, wcap;
    gw_lease *hnext;    /* route hash chain */
    uint8_t anchor_day; /* customer routes: the inline defaults of the acquire */
    uint8_t inline_n;
    proto_limit inline_limits[PROTO_LIMITS_MAX];
    proto_usage *recs; /* usage records of finished requests, not yet sent */
    uint32_t rec_n, rec_cap;
    proto_usage *frecs; /* the records of the partial settle in flight / to resend */
    uint32_t frec_n, frec_cap;
};

/* ---- helpers ---- */

static int64_t gl_amt(const proto_amounts *a, int m)
{
    return m == PROTO_METRIC_COST     ? a->cost_nusd
           : m == PROTO_METRIC_TOKENS ? a->tokens
                                      : a->requests;
}

static void gl_add(proto_amounts *a, const proto_amounts *b, int sign)
{
    a->cost_nusd += sign * b->cost_nusd;
    a->tokens += sign * b->tokens;
    a->requests += sign * b->requests;
}

static int gl_zero(const proto_amounts *a)
{
    return a->cost_nusd == 0 && a->tokens == 0 && a->requests == 0;
}

static int gl_fits(const gw_lease *L, const proto_amounts *worst)
{
    if (L->rec_n + L->frec_n >= GW_LEASE_RECS_PENDING_MAX) {
        return 0; /* its records are not getting out: no more on this lease */
    }
    for (int m = 0; m < PROTO_METRIC_COUNT_; m++) {
        __int128 need = (__int128)gl_amt(&L->charged, m) + gl_amt(&L->held, m) + gl_amt(worst, m);
        if (need > gl_amt(&L->granted, m)) {
            return 0;
        }
    }
    return 1;
}

static void gl_active_inc(gw_proxy_env *env)
{
    env->active_n++;
}

static void gl_active_dec(gw_proxy_env *env)
{
    if (--env->active_n == 0 && env->on_idle != NULL) {
        env->on_idle(env->on_idle_ud);
    }
}

static cg_err gl_submit(gw_lease *L, const proto_req *rq, gw_ledger_cb cb)
{
    if (L->env->ledger == NULL) {
        return CG_ERR_SHUTDOWN;
    }
    cg_err err = gw_ledger_submit(L->env->ledger, rq, cb, L);
    if (err == CG_ERR_OK) {
        L->ops++;
        gl_active_inc(L->env);
    }
    return err;
}

static uint32_t gl_hash(const char *route)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *c = (const unsigned char *)route; *c != '\0'; c++) {
        h = (h ^ *c) * 16777619u;
    }
    return h & (GW_LEASE_BUCKETS - 1);
}

static void gl_free(gw_lease *L)
{
    if (L->rec_n + L->frec_n > 0) {
        char n[16];
        snprintf(n, sizeof(n), "%u", L->rec_n + L->frec_n);
        cg_log(CG_LOG_ERROR, "usage records of a lease not written", "lease", L->rid, "route",
               L->route, "records", n, NULL);
    }
    free(L->recs);
    free(L->frecs);
    free(L->w);
    free(L);
}

static void gl_unlink_free(gw_lease *L)
{
    gw_lease **pp = &L->env->leases.head;
    while (*pp != NULL && *pp != L) {
        pp = &(*pp)->next;
    }
    if (*pp == L) {
        *pp = L->next;
    }
    pp = &L->env->leases.bucket[gl_hash(L->route)];
    while (*pp != NULL && *pp != L) {
        pp = &(*pp)->hnext;
    }
    if (*pp == L) {
        *pp = L->hnext;
    }
    gl_free(L);
}

/* Free a DONE lease once nothing of it is in flight. */
static void gl_maybe_free(gw_lease *L)
{
    if (L->state == GL_DONE && L->ops == 0 && L->users == 0 && L->wn == 0 && !L->release_retry) {
        gl_unlink_free(L);
    }
}

static int gl_is_retriable(cg_err st)
{
    return st == CG_ERR_TIMEOUT || st == CG_ERR_UNAVAILABLE;
}

static int gl_route_nolease(gw_lease_tab *tab, const char *route)
{
    int64_t now = cg_mono_ms();
    for (uint32_t i = 0; i < GW_LEASE_NOLEASE_MAX; i++) {
        if (tab->nolease[i].until_ms > now && strcmp(tab->nolease[i].route, route) == 0) {
            return 1;
        }
    }
    return 0;
}

static void gl_route_nolease_add(gw_lease_tab *tab, const char *route, int64_t for_ms)
{
    gw_lease_nolease *n = &tab->nolease[tab->nolease_next++ % GW_LEASE_NOLEASE_MAX];
    snprintf(n->route, sizeof(n->route), "%s", route);
    n->until_ms = cg_mono_ms() + for_ms;
}

void gw_lease_note_refusal(gw_proxy_env *env, const char *route, const proto_amounts *worst,
                           const proto_refusal *rf, const proto_limit_state *states, uint8_t n)
{
    int64_t w = gl_amt(worst, rf->metric);
    if (rf->max <= 0 || rf->used + w <= rf->max) {
        return; /* not definitive: reservations may come back */
    }
    /* A sliding window's used shrinks as its buckets age out, so there it is nearly
     * definitive: kept no longer than the refusal's retry time (resets_at) and the second
     * below; a request could be refused for at most that long after old usage left the
     * window while the reservations counted in the retry time were still held. */
    int64_t until = cg_now_ms() + GW_LEASE_IDLE_MS;
    if (rf->resets_at_ms > 0 && rf->resets_at_ms < until) {
        until = rf->resets_at_ms;
    }
    gw_lease_refusal *r = &env->leases.refusals[env->leases.refusal_next++ % GW_LEASE_REFUSALS_MAX];
    snprintf(r->route, sizeof(r->route), "%s", route);
    r->until_ms = until;
    r->worst = w;
    r->refusal = *rf;
    r->state_n = n <= PROTO_LIMITS_MAX ? n : 0;
    memcpy(r->states, states, sizeof(r->states[0]) * r->state_n);
}

const gw_lease_refusal *gw_lease_refused(gw_proxy_env *env, const char *route,
                                         const proto_amounts *worst)
{
    int64_t now = cg_now_ms();
    for (uint32_t i = 0; i < GW_LEASE_REFUSALS_MAX; i++) {
        const gw_lease_refusal *r = &env->leases.refusals[i];
        if (r->until_ms > now && gl_amt(worst, r->refusal.metric) >= r->worst &&
            strcmp(r->route, route) == 0) {
            return r;
        }
    }
    return NULL;
}

/* ---- final settle ---- */

static void gl_maybe_final(gw_lease *L);

static void gl_final_cb(cg_err err, const proto_rep *rep, void *ud)
{
    gw_lease *L = ud;
    cg_err st = err == CG_ERR_OK ? (cg_err)rep->status : err;
    L->ops--;
    if (st == CG_ERR_OK) {
        L->state = GL_DONE;
        L->rec_n = 0; /* written */
    } else if (gl_is_retriable(st) && L->env->ledger != NULL) {
        if (++L->final_tries == GL_TRIES_LOG) {
            cg_log(CG_LOG_ERROR, "lease return unconfirmed; resending until the shard answers",
                   "lease", L->rid, "route", L->route, "error", cg_err_name(st), NULL);
        }
        L->state = GL_RETIRED; /* the next tick sends it again (same contents: idempotent) */
    } else {
        cg_log(CG_LOG_ERROR, "lease return failed; the shard returns the slice at lease expiry",
               "lease", L->rid, "route", L->route, "error", cg_err_name(st), NULL);
        L->state = GL_DONE;
    }
    gw_proxy_env *env = L->env;
    gl_maybe_free(L);
    gl_active_dec(env);
}

static void gl_flush(gw_lease *L, int renew);
static void gl_release_send(gw_lease *L);

static void gl_maybe_final(gw_lease *L)
{
    if (L->state != GL_RETIRED || L->users != 0 || L->flush_busy || L->flush_retry) {
        return;
    }
    proto_amounts un = L->charged;
    gl_add(&un, &L->flushed, -1);
    if (!L->flush_failed &&
        ((L->sliding && (!gl_zero(&un) || L->rec_n > 0)) || L->rec_n > PROTO_SETTLE_RECS_MAX)) {
        gl_flush(L, 0); /* a last partial settle first; its callback comes back here */
        return;
    }
    proto_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.op = PROTO_OP_SETTLE;
    snprintf(rq.route, sizeof(rq.route), "%s", L->route);
    snprintf(rq.u.settle.request_id, sizeof(rq.u.settle.request_id), "%s", L->rid);
    rq.u.settle.actual = un;
    if (L->rec_n > PROTO_SETTLE_RECS_MAX) { /* only after a failed partial settle */
        char n[16];
        snprintf(n, sizeof(n), "%u", L->rec_n - PROTO_SETTLE_RECS_MAX);
        cg_log(CG_LOG_ERROR, "usage records of a lease not written", "lease", L->rid, "route",
               L->route, "records", n, NULL);
        L->rec_n = PROTO_SETTLE_RECS_MAX;
    }
    rq.u.settle.recs = L->recs;
    rq.u.settle.rec_n = L->rec_n;
    L->state = GL_FINAL;
    cg_err err = gl_submit(L, &rq, gl_final_cb);
    if (err != CG_ERR_OK) {
        cg_log(CG_LOG_ERROR, "lease return not sent; the shard returns the slice at lease expiry",
               "lease", L->rid, "route", L->route, "error", cg_err_name(err), NULL);
        L->state = GL_DONE;
        gl_maybe_free(L);
    }
}

static void gl_retire(gw_lease *L)
{
    if (L->state == GL_ACTIVE) {
        L->state = GL_RETIRED;
        gl_maybe_final(L);
    }
}

/* ---- partial settles ---- */

static int gl_recs_reserve(proto_usage **a, uint32_t *cap, uint32_t need)
{
    if (need <= *cap) {
        return 1;
    }
    uint32_t c = *cap ? *cap : 64;
    while (c < need) {
        c *= 2;
    }
    proto_usage *n = realloc(*a, (size_t)c * sizeof(*n));
    if (n == NULL) {
        return 0;
    }
    *a = n;
    *cap = c;
    return 1;
}

/* Move the waiting records (at most PROTO_SETTLE_RECS_MAX) into the flight array. */
static void gl_recs_take(gw_lease *L)
{
    assert(L->frec_n == 0);
    if (L->rec_n <= PROTO_SETTLE_RECS_MAX) {
        proto_usage *a = L->frecs;
        uint32_t cap = L->frec_cap;
        L->frecs = L->recs;
        L->frec_cap = L->rec_cap;
        L->frec_n = L->rec_n;
        L->recs = a;
        L->rec_cap = cap;
        L->rec_n = 0;
        return;
    }
    if (!gl_recs_reserve(&L->frecs, &L->frec_cap, PROTO_SETTLE_RECS_MAX)) {
        return; /* they wait for the next flush */
    }
    memcpy(L->frecs, L->recs, PROTO_SETTLE_RECS_MAX * sizeof(*L->recs));
    L->frec_n = PROTO_SETTLE_RECS_MAX;
    L->rec_n -= PROTO_SETTLE_RECS_MAX;
    memmove(L->recs, L->recs + PROTO_SETTLE_RECS_MAX, (size_t)L->rec_n * sizeof(*L->recs));
}

/* A given-up partial settle's records go back to the waiting ones (the final takes them). */
static void gl_recs_giveback(gw_lease *L)
{
    if (L->frec_n == 0) {
        return;
    }
    if (gl_recs_reserve(&L->recs, &L->rec_cap, L->rec_n + L->frec_n)) {
        memcpy(L->recs + L->rec_n, L->frecs, (size_t)L->frec_n * sizeof(*L->frecs));
        L->rec_n += L->frec_n;
    } else {
        char n[16];
        snprintf(n, sizeof(n), "%u", L->frec_n);
        cg_log(CG_LOG_ERROR, "usage records of a lease not written", "lease", L->rid, "route",
               L->route, "records", n, NULL);
    }
    L->frec_n = 0;
}

static void gl_flush_cb(cg_err err, const proto_rep *rep, void *ud)
{
    gw_lease *L = ud;
    cg_err st = err == CG_ERR_OK ? (cg_err)rep->status : err;
    L->ops--;
    L->flush_busy = 0;
    if (st == CG_ERR_OK) {
        gl_add(&L->flushed, &L->flushing, 1);
        memset(&L->flushing, 0, sizeof(L->flushing));
        L->flush_retry = 0;
        L->flush_tries = 0;
        L->frec_n = 0; /* written */
        if (!rep->u.settle.late) {
            L->expires_ms = L->sent_ms + L->lease_len_ms;
        } else {
            L->expires_ms = 0; /* the shard lease had ended: admit nothing more */
        }
    } else if (gl_is_retriable(st) && L->env->ledger != NULL) {
        if (++L->flush_tries == GL_TRIES_LOG) {
            cg_log(CG_LOG_ERROR, "lease charge unconfirmed; resending until the shard answers",
                   "lease", L->rid, "route", L->route, "error", cg_err_name(st), NULL);
        }
        L->flush_retry = 1;
    } else {
        /* Refused for good (not applied), or the worker is closing its ledger: the final
         * settle carries it (for an unknown outcome at shutdown it may count once more:
         * never less than was used). */
        cg_log(CG_LOG_ERROR, "lease charge failed", "lease", L->rid, "route", L->route, "error",
               cg_err_name(st), NULL);
        L->flush_retry = 0;
        L->flush_failed = 1;
        memset(&L->flushing, 0, sizeof(L->flushing));
        gl_recs_giveback(L);
        if (L->state == GL_ACTIVE) {
            L->state = GL_RETIRED;
        }
    }
    if (L->state == GL_ACTIVE && L->expires_ms < cg_now_ms() + (int64_t)L->env->cfg->lease_ms) {
        L->state = GL_RETIRED;
    }
    if (L->state == GL_ACTIVE && L->rec_n >= GW_LEASE_FLUSH_RECS) {
        gl_flush(L, 0); /* more records came meanwhile */
    }
    gw_proxy_env *env = L->env;
    gl_maybe_final(L);
    gl_maybe_free(L);
    gl_active_dec(env);
}

static void gl_flush(gw_lease *L, int renew)
{
    if (L->flush_busy || (L->state != GL_ACTIVE && L->state != GL_RETIRED)) {
        return;
    }
    if (!L->flush_retry) {
        proto_amounts un = L->charged;
        gl_add(&un, &L->flushed, -1);
        if (gl_zero(&un) && L->rec_n == 0 && !renew) {
            return;
        }
        L->flushing = un;
        L->seq++;
        gl_recs_take(L);
    }
    proto_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.op = PROTO_OP_SETTLE;
    snprintf(rq.route, sizeof(rq.route), "%s", L->route);
    snprintf(rq.u.settle.request_id, sizeof(rq.u.settle.request_id), "%s", L->rid);
    rq.u.settle.actual = L->flushing;
    rq.u.settle.partial = 1;
    rq.u.settle.charge_seq = L->seq;
    rq.u.settle.lease_ms = L->lease_len_ms;
    rq.u.settle.recs = L->frecs;
    rq.u.settle.rec_n = L->frec_n;
    L->sent_ms = cg_now_ms();
    if (gl_submit(L, &rq, gl_flush_cb) == CG_ERR_OK) {
        L->flush_busy = 1;
    } else {
        L->flush_retry = 1;
    }
}

static void gl_tick_cb(uv_timer_t *t)
{
    gw_proxy_env *env = t->data;
    int64_t mono = cg_mono_ms(), now = cg_now_ms();
    gw_lease *next;
    for (gw_lease *L = env->leases.head; L != NULL; L = next) {
        next = L->next;
        if (L->state == GL_ACTIVE && L->users == 0 && mono - L->last_use_mono >= GW_LEASE_IDLE_MS) {
            gl_retire(L);
            continue;
        }
        if (L->state == GL_ACTIVE) {
            /* Renew well before requests stop fitting (admission needs lease_ms = len / 2
             * left), so a steady stream never finds its lease about to lapse. */
            gl_flush(L, now >= L->expires_ms - L->lease_len_ms * 3 / 4);
        } else if (L->state == GL_RETIRED && L->flush_retry) {
            gl_flush(L, 0);
        } else if (L->state == GL_DONE && L->release_retry) {
            gl_release_send(L);
        }
        if (L->state == GL_RETIRED) {
            gl_maybe_final(L); /* may free L */
        }
    }
}

/* ---- acquire ---- */

/* Slice multiplier from the states of the route's limits: pct% of the tightest remaining,
 * at least floor_k; 0 in the tail (a block limit with less than GW_LEASE_TAIL_K × worst
 * unreserved: no lease, requests reserve one by one). */
static int64_t gl_k(const gw_proxy_env *env, const proto_limit_state *st, uint8_t n,
                    const proto_amounts *worst, int pct, int64_t floor_k)
{
    int64_t k = INT64_MAX;
    for (uint8_t i = 0; i < n; i++) {
        if (st[i].action != PROTO_ACTION_BLOCK || st[i].max <= 0) {
            continue;
        }
        int64_t w = gl_amt(worst, st[i].metric);
        if (w <= 0) {
            continue;
        }
        int64_t rem = st[i].max - st[i].used - st[i].reserved;
        if (rem < 0) {
            rem = 0;
        }
        if ((__int128)rem < (__int128)w * GW_LEASE_TAIL_K) {
            return 0;
        }
        int64_t kk = (int64_t)((__int128)rem * pct / 100 / w);
        if (kk < k) {
            k = kk;
        }
    }
    (void)env;
    if (k == INT64_MAX) {
        k = GW_LEASE_MAX_K;
    }
    if (k < floor_k) {
        k = floor_k;
    }
    return k > GW_LEASE_MAX_K ? GW_LEASE_MAX_K : k;
}

static void gl_set_slice(gw_lease *L, const proto_amounts *worst, int64_t k)
{
    L->slice.cost_nusd =
        (int64_t)((__int128)worst->cost_nusd * k > INT64_MAX / 4 ? INT64_MAX / 4
                                                                 : worst->cost_nusd * k);
    L->slice.tokens =
        (int64_t)((__int128)worst->tokens * k > INT64_MAX / 4 ? INT64_MAX / 4 : worst->tokens * k);
    L->slice.requests = worst->requests * k;
}

static void gl_acquire_cb(cg_err err, const proto_rep *rep, void *ud);

static cg_err gl_acquire_send(gw_lease *L)
{
    proto_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.op = PROTO_OP_RESERVE;
    snprintf(rq.route, sizeof(rq.route), "%s", L->route);
    snprintf(rq.u.reserve.request_id, sizeof(rq.u.reserve.request_id), "%s", L->rid);
    rq.u.reserve.lease_ms = L->lease_len_ms;
    rq.u.reserve.worst = L->slice;
    rq.u.reserve.anchor_day = L->anchor_day;
    rq.u.reserve.inline_n = L->inline_n;
    memcpy(rq.u.reserve.inline_limits, L->inline_limits, sizeof(L->inline_limits[0]) * L->inline_n);
    L->sent_ms = cg_now_ms();
    return gl_submit(L, &rq, gl_acquire_cb);
}

/* Hand the waiters over: admitted on L when they fit, else per request. */
static void gl_wake(gw_lease *L, int usable)
{
    gl_waiter *w = L->w;
    uint32_t n = L->wn;
    L->w = NULL;
    L->wn = L->wcap = 0;
    for (uint32_t i = 0; i < n; i++) {
        gw_lease *got = NULL;
        if (usable && L->state == GL_ACTIVE && gl_fits(L, &w[i].worst)) {
            gl_add(&L->held, &w[i].worst, 1);
            L->users++;
            L->last_use_mono = cg_mono_ms();
            got = L;
        }
        gw_proxy_lease_ready(w[i].p, w[i].idx, got);
    }
    free(w);
}

static void gl_release_cb(cg_err err, const proto_rep *rep, void *ud)
{
    gw_lease *L = ud;
    gw_proxy_env *env = L->env;
    cg_err st = err == CG_ERR_OK ? (cg_err)rep->status : err;
    L->ops--;
    if (gl_is_retriable(st) && env->ledger != NULL && ++L->release_tries < GL_RELEASE_TRIES) {
        L->release_retry = 1; /* resent by the next tick */
    } else if (st != CG_ERR_OK) {
        cg_log(CG_LOG_WARN, "release of a timed-out lease acquire failed; it lapses at expiry",
               "lease", L->rid, "route", L->route, "error", cg_err_name(st), NULL);
    }
    gl_maybe_free(L);
    gl_active_dec(env);
}

/*
 * An acquire whose answer never came (timeout: the shard was frozen or slow) may
 * still be applied by the shard. Without a release its slice would stay reserved
 * until the lease expires (2 x lease_ms), refusing requests near a cap that would
 * fit (it_lease_pending). The release follows the acquire on the same connection, so
 * the shard applies it after; a release of nothing held is a no-op. Resent once per
 * tick while its outcome is unknown, at most GL_RELEASE_TRIES times (the first copy is
 * normally enough: it waits in the shard's queue behind the acquire).
 */
static void gl_release_send(gw_lease *L)
{
    proto_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.op = PROTO_OP_RELEASE;
    snprintf(rq.route, sizeof(rq.route), "%s", L->route);
    snprintf(rq.u.release.request_id, sizeof(rq.u.release.request_id), "%s", L->rid);
    L->release_retry = 0;
    if (gl_submit(L, &rq, gl_release_cb) != CG_ERR_OK && L->env->ledger != NULL) {
        L->release_retry = 1;
    }
}

static void gl_acquire_cb(cg_err err, const proto_rep *rep, void *ud)
{
    gw_lease *L = ud;
    gw_proxy_env *env = L->env;
    cg_err st = err == CG_ERR_OK ? (cg_err)rep->status : err;
    L->ops--;
    if (err == CG_ERR_OK && (st == CG_ERR_OK || st == CG_ERR_BUDGET)) {
        L->state_n = rep->u.reserve.state_n <= PROTO_LIMITS_MAX ? rep->u.reserve.state_n : 0;
        memcpy(L->states, rep->u.reserve.states, sizeof(L->states[0]) * L->state_n);
    }
    for (uint8_t i = 0; i < L->state_n; i++) {
        L->sliding |= L->states[i].window.kind == CG_WIN_SLIDING;
    }
    if (st == CG_ERR_OK) {
        L->state = GL_ACTIVE;
        L->granted = L->slice;
        L->expires_ms = L->sent_ms + L->lease_len_ms;
        L->last_use_mono = cg_mono_ms();
        gl_wake(L, 1);
        if (env->leases.shutdown || L->users == 0) {
            gl_retire(L);
        }
    } else {
        if (st != CG_ERR_BUDGET) {
            cg_log(CG_LOG_WARN, "lease acquire failed; reserving per request", "route", L->route,
                   "error", cg_err_name(st), NULL);
        }
        /* Near the cap (the tail) or failing: per request for a while instead of an
         * acquire per request. */
        gl_route_nolease_add(&env->leases, L->route,
                             st == CG_ERR_BUDGET ? GW_LEASE_IDLE_MS : GW_LEASE_TICK_MS);
        L->state = GL_DONE;
        gl_wake(L, 0);
        if (st == CG_ERR_TIMEOUT) { /* sent, unanswered: the shard may still apply it */
            gl_release_send(L);
        }
    }
    gl_maybe_free(L);
    gl_active_dec(env);
}

/* ---- public ---- */

int gw_lease_enabled(const gw_proxy_env *env, uint8_t kind)
{
    const cg_config *c = env->cfg;
    return c->enforcement && (c->lease_scopes == CG_LEASE_ALL ||
                              (c->lease_scopes == CG_LEASE_ORG && kind == PROTO_SCOPE_ORG));
}

static int gl_wait(gw_lease *L, gw_proxy *p, uint8_t idx, const proto_amounts *worst)
{
    if (L->wn == L->wcap) {
        uint32_t cap = L->wcap ? L->wcap * 2 : 8;
        gl_waiter *nw = realloc(L->w, cap * sizeof(*nw));
        if (nw == NULL) {
            return 0;
        }
        L->w = nw;
        L->wcap = cap;
    }
    L->w[L->wn++] = (gl_waiter){.p = p, .idx = idx, .worst = *worst};
    gw_proxy_ref(p);
    return 1;
}

gw_lease_verdict gw_lease_admit(gw_proxy_env *env, gw_proxy *p, uint8_t idx, const char *route,
                                const proto_amounts *worst, gw_lease **out)
{
    gw_lease_tab *tab = &env->leases;
    const cg_config *cfg = env->cfg;
    if (tab->shutdown || env->closing || env->ledger == NULL || gl_route_nolease(tab, route)) {
        return GW_LEASE_NO;
    }
    int64_t len = 2 * (int64_t)cfg->lease_ms;
    if (len > 24LL * 3600 * 1000) {
        len = 24LL * 3600 * 1000;
    }
    if (len < 2 * (int64_t)cfg->lease_ms) {
        return GW_LEASE_NO; /* no room for a lease longer than a request's */
    }
    const proto_limit_state *hint = NULL;
    uint8_t hint_n = 0;
    gw_lease *next;
    uint32_t h = gl_hash(route);
    for (gw_lease *L = tab->bucket[h]; L != NULL; L = next) {
        next = L->hnext;
        if (strcmp(L->route, route) != 0) {
            continue;
        }
        if (L->state_n > 0) {
            hint = L->states;
            hint_n = L->state_n;
        }
        if (L->state == GL_ACQUIRING) {
            return gl_wait(L, p, idx, worst) ? GW_LEASE_WAIT : GW_LEASE_NO;
        }
        if (L->state != GL_ACTIVE) {
            continue;
        }
        if (gl_fits(L, worst) && cg_now_ms() + (int64_t)cfg->lease_ms <= L->expires_ms) {
            gl_add(&L->held, worst, 1);
            L->users++;
            L->last_use_mono = cg_mono_ms();
            *out = L;
            return GW_LEASE_ADMITTED;
        }
        gl_retire(L); /* spent (or about to lapse): a fresh one below */
    }
    int64_t k = GW_LEASE_FIRST_K;
    if (hint_n > 0 &&
        (k = gl_k(env, hint, hint_n, worst, (int)cfg->lease_slice_pct, GW_LEASE_MIN_K)) == 0) {
        return GW_LEASE_NO; /* the tail */
    }
    gw_lease *L = calloc(1, sizeof(*L));
    if (L == NULL) {
        return GW_LEASE_NO;
    }
    L->env = env;
    if (p->scopes[idx].kind == PROTO_SCOPE_CUSTOMER) {
        /* The org's calendar and customer_defaults, as gw_proxy_reserve_req sends them. */
        L->anchor_day = p->org.anchor_day;
        L->inline_n = p->org.customer_limit_n <= PROTO_LIMITS_MAX ? p->org.customer_limit_n : 0;
        memcpy(L->inline_limits, p->org.customer_limits, sizeof(L->inline_limits[0]) * L->inline_n);
    }
    L->state = GL_ACQUIRING;
    L->lease_len_ms = len;
    snprintf(L->route, sizeof(L->route), "%s", route);
    snprintf(L->rid, sizeof(L->rid), "lease:%016llx:%u", (unsigned long long)env->rid_prefix,
             ++tab->counter);
    gl_set_slice(L, worst, k);
    if (!gl_wait(L, p, idx, worst)) {
        free(L);
        return GW_LEASE_NO;
    }
    if (gl_acquire_send(L) != CG_ERR_OK) {
        gw_proxy_unref(p);
        free(L->w);
        free(L);
        return GW_LEASE_NO;
    }
    L->next = tab->head;
    tab->head = L;
    L->hnext = tab->bucket[h];
    tab->bucket[h] = L;
    if (!tab->timer_open) {
        uv_timer_init(env->loop, &tab->timer);
        tab->timer.data = env;
        tab->timer_open = 1;
        uv_timer_start(&tab->timer, gl_tick_cb, GW_LEASE_TICK_MS, GW_LEASE_TICK_MS);
    }
    return GW_LEASE_WAIT;
}

void gw_lease_return(gw_lease *L, const proto_amounts *worst)
{
    gl_add(&L->held, worst, -1);
    assert(L->users > 0);
    L->users--;
    L->last_use_mono = cg_mono_ms();
    gl_maybe_final(L);
    gl_maybe_free(L);
}

void gw_lease_charge(gw_lease *L, const proto_amounts *worst, const proto_amounts *actual,
                     const proto_usage *rec)
{
    gl_add(&L->charged, actual, 1);
    if (rec != NULL) {
        if (gl_recs_reserve(&L->recs, &L->rec_cap, L->rec_n + 1)) {
            L->recs[L->rec_n++] = *rec;
        } else {
            cg_log(CG_LOG_ERROR, "usage record not kept (out of memory)", "request_id",
                   rec->request_id, NULL);
        }
        if (L->rec_n >= GW_LEASE_FLUSH_RECS && L->state == GL_ACTIVE) {
            gl_flush(L, 0);
        }
    }
    gw_lease_return(L, worst);
}

uint8_t gw_lease_states(const gw_lease *L, proto_limit_state *out)
{
    memcpy(out, L->states, sizeof(L->states[0]) * L->state_n);
    return L->state_n;
}

void gw_lease_route_changed(gw_proxy_env *env, const char *route)
{
    char prefix[PROTO_ROUTE_MAX + 2];
    size_t pn = 0;
    if (route != NULL && strncmp(route, "org:", 4) == 0) {
        pn = (size_t)snprintf(prefix, sizeof(prefix), "customer:%s/", route + 4);
    }
    gw_lease *next;
    for (gw_lease *L = env->leases.head; L != NULL; L = next) {
        next = L->next;
        if (route == NULL || strcmp(L->route, route) == 0 ||
            (pn > 0 && pn < sizeof(prefix) && strncmp(L->route, prefix, pn) == 0)) {
            gl_retire(L);
        }
    }
}

void gw_lease_shutdown(gw_proxy_env *env)
{
    env->leases.shutdown = 1;
    gw_lease *next;
    for (gw_lease *L = env->leases.head; L != NULL; L = next) {
        next = L->next;
        gl_retire(L);
    }
}

static void gl_timer_closed_cb(uv_handle_t *h)
{
    (void)h;
}

void gw_lease_close(gw_proxy_env *env)
{
    env->leases.shutdown = 1;
    if (env->leases.timer_open) {
        env->leases.timer_open = 0;
        uv_close((uv_handle_t *)&env->leases.timer, gl_timer_closed_cb);
    }
}

void gw_lease_fini(gw_proxy_env *env)
{
    gw_lease *next;
    for (gw_lease *L = env->leases.head; L != NULL; L = next) {
        next = L->next;
        gl_free(L);
    }
    env->leases.head = NULL;
    memset(env->leases.bucket, 0, sizeof(env->leases.bucket));
}
