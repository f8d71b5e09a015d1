/*
 * gw_scopes.c — refusal choice, clamp arithmetic and success headers over the
 * limit states of a request's scopes (see gw_scopes.h).
 *
 * All arithmetic on amounts is done in __int128 so that hostile or saturated
 * values (a worst case of INT64_MAX) can never wrap into a small number.
 */
#include "gw_scopes.h"

#include <stdio.h>
#include <string.h>
#include "cg_money.h"
#include "cg_str.h"

#define GW_MTOK 1000000

int gw_scopes_first_refusal(const gw_scope *s, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (s[i].done && !s[i].skip && s[i].st == CG_ERR_BUDGET) {
            return (int)i;
        }
    }
    return -1;
}

static int gw_state_blocks(const proto_limit_state *st)
{
    return st->action == PROTO_ACTION_BLOCK && st->max > 0;
}

static int64_t gw_worst_of(const gw_clamp_in *in, uint8_t metric)
{
    switch (metric) {
    case PROTO_METRIC_COST:
        return in->worst_cost_nusd;
    case PROTO_METRIC_TOKENS:
        return in->worst_tokens;
    default:
        return 1;
    }
}

/*
 * The largest total completion (all choices) that one limit leaves room for,
 * given what is available on it; -1 if not even the prompt fits.
 */
static __int128 gw_clamp_room(const proto_limit_state *st, __int128 avail, const gw_clamp_in *in)
{
    if (st->metric == PROTO_METRIC_REQUESTS) {
        return avail >= 1 ? (__int128)INT64_MAX : -1;
    }
    if (st->metric == PROTO_METRIC_TOKENS) {
        __int128 rem = avail - in->prompt_tokens;
        return rem >= 0 ? rem : -1;
    }
    __int128 rem = avail - in->prompt_cost_nusd - in->fee_nusd;
    if (rem < 0) {
        return -1;
    }
    if (in->completion_rate <= 0) {
        return INT64_MAX;
    }
    /* cg_money_token_cost(C) = ceil(C × rate / 1e6) <= rem  ⇔  C <= floor(rem × 1e6 / rate). */
    return rem * GW_MTOK / in->completion_rate;
}

int64_t gw_clamp_max_tokens(const gw_scope *s, uint32_t n, const gw_clamp_in *in)
{
    __int128 best = INT64_MAX;
    if (in->choices < 1) {
        return -1;
    }
    for (uint32_t i = 0; i < n; i++) {
        const gw_scope *sc = &s[i];
        if (sc->skip) {
            continue;
        }
        if (!sc->done || (sc->st != CG_ERR_OK && sc->st != CG_ERR_BUDGET)) {
            return -1;
        }
        if (sc->st == CG_ERR_BUDGET && sc->refusal.metric == PROTO_METRIC_REQUESTS) {
            return -1;
        }
        for (uint32_t k = 0; k < sc->state_n && k < PROTO_LIMITS_MAX; k++) {
            const proto_limit_state *st = &sc->states[k];
            if (!gw_state_blocks(st)) {
                continue;
            }
            __int128 avail = (__int128)st->max - st->used - st->reserved;
            if (sc->st == CG_ERR_OK) {
                avail += gw_worst_of(in, st->metric); /* this request's reservation goes */
            }
            __int128 room = gw_clamp_room(st, avail, in);
            if (room < 0) {
                return -1;
            }
            if (room < best) {
                best = room;
            }
        }
    }
    return (int64_t)(best / in->choices);
}

static int64_t gw_clamp0(__int128 v)
{
    return v < 0 ? 0 : (v > INT64_MAX ? INT64_MAX : (int64_t)v);
}

gw_rate_pick gw_scopes_rate_pick(const gw_scope *s, uint32_t n, uint8_t metric, int64_t now_ms,
                                 const gw_charge_adj *adj)
{
    gw_rate_pick pick = {0};
    for (uint32_t i = 0; i < n; i++) {
        if (s[i].skip || !s[i].done || s[i].st != CG_ERR_OK) {
            continue;
        }
        for (uint32_t k = 0; k < s[i].state_n && k < PROTO_LIMITS_MAX; k++) {
            const proto_limit_state *st = &s[i].states[k];
            if (!gw_state_blocks(st) || st->metric != metric || st->window.kind != CG_WIN_SLIDING) {
                continue;
            }
            __int128 rem = (__int128)st->max - st->used - st->reserved;
            if (metric == PROTO_METRIC_TOKENS && adj != NULL) {
                rem += adj->tokens;
            }
            int64_t r = gw_clamp0(rem);
            if (!pick.found || r < pick.remaining) {
                pick.found = 1;
                pick.max = st->max;
                pick.remaining = r;
                pick.reset_ms = gw_clamp0((__int128)st->period_end_ms - now_ms);
                if (pick.reset_ms == 0 && st->used == 0 && st->reserved > 0) {
                    /* Nothing counted yet but this request: it leaves a whole window later. */
                    pick.reset_ms = (int64_t)st->window.sliding_s * 1000;
                }
            }
        }
    }
    return pick;
}

int64_t gw_scopes_budget_left(const gw_scope *s, uint32_t n, const gw_charge_adj *adj, int *found)
{
    int64_t best = 0;
    *found = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (s[i].skip || !s[i].done || s[i].st != CG_ERR_OK) {
            continue;
        }
        for (uint32_t k = 0; k < s[i].state_n && k < PROTO_LIMITS_MAX; k++) {
            const proto_limit_state *st = &s[i].states[k];
            if (!gw_state_blocks(st) || st->metric != PROTO_METRIC_COST) {
                continue;
            }
            __int128 rem = (__int128)st->max - st->used - st->reserved;
            if (adj != NULL) {
                rem += adj->cost_nusd;
            }
            int64_t r = gw_clamp0(rem);
            if (!*found || r < best) {
                best = r;
                *found = 1;
            }
        }
    }
    return best;
}

size_t gw_reset_format(int64_t ms, char *buf, size_t cap)
{
    unsigned long long sec = ms <= 0 ? 0 : (unsigned long long)((ms - 1) / 1000 + 1);
    unsigned long long h = sec / 3600, m = (sec % 3600) / 60, x = sec % 60;
    char tmp[48];
    size_t n = 0;
    if (h > 0) {
        n += cg_str_u64(tmp + n, h);
        tmp[n++] = 'h';
    }
    if (h > 0 || m > 0) {
        n += cg_str_u64(tmp + n, m);
        tmp[n++] = 'm';
    }
    n += cg_str_u64(tmp + n, x);
    tmp[n++] = 's';
    if (n >= cap) {
        return 0;
    }
    memcpy(buf, tmp, n);
    buf[n] = '\0';
    return n;
}

/* Append "<name><what>: <value>\r\n"; on overflow leave buf as it was. */
static size_t gw_hdr_add(char *buf, size_t len, size_t cap, const char *name, const char *what,
                         const char *value)
{
    size_t a = strlen(name), b = strlen(what), v = strlen(value);
    if (len >= cap || a + b + v + 4 >= cap - len) {
        if (len < cap) {
            buf[len] = '\0';
        }
        return len;
    }
    char *d = buf + len;
    memcpy(d, name, a);
    memcpy(d + a, what, b);
    memcpy(d + a + b, ": ", 2);
    memcpy(d + a + b + 2, value, v);
    memcpy(d + a + b + 2 + v, "\r\n", 3); /* with the terminator */
    return len + a + b + v + 4;
}

/* Decimal of a signed value into v (room for 21 bytes). */
static void gw_i64_str(int64_t x, char *v)
{
    size_t n = 0;
    unsigned long long u = (unsigned long long)x;
    if (x < 0) {
        v[n++] = '-';
        u = 0ULL - u;
    }
    n += cg_str_u64(v + n, u);
    v[n] = '\0';
}

static size_t gw_rate_headers(const gw_rate_pick *pk, const char *what, char *buf, size_t len,
                              size_t cap)
{
    char v[32];
    if (!pk->found) {
        return len;
    }
    gw_i64_str(pk->max, v);
    len = gw_hdr_add(buf, len, cap, "x-ratelimit-limit-", what, v);
    gw_i64_str(pk->remaining, v);
    len = gw_hdr_add(buf, len, cap, "x-ratelimit-remaining-", what, v);
    gw_reset_format(pk->reset_ms, v, sizeof(v));
    return gw_hdr_add(buf, len, cap, "x-ratelimit-reset-", what, v);
}

size_t gw_scopes_headers(const gw_scope *s, uint32_t n, int64_t now_ms, const gw_charge_adj *adj,
                         char *buf, size_t len, size_t cap)
{
    gw_rate_pick req = gw_scopes_rate_pick(s, n, PROTO_METRIC_REQUESTS, now_ms, adj);
    gw_rate_pick tok = gw_scopes_rate_pick(s, n, PROTO_METRIC_TOKENS, now_ms, adj);
    len = gw_rate_headers(&req, "requests", buf, len, cap);
    len = gw_rate_headers(&tok, "tokens", buf, len, cap);
    int found = 0;
    int64_t left = gw_scopes_budget_left(s, n, adj, &found);
    if (found) {
        char money[40];
        cg_money_format(left, 2, money, sizeof(money));
        len = gw_hdr_add(buf, len, cap, "x-capgate-budget-remaining-usd", "", money);
    }
    return len;
}
