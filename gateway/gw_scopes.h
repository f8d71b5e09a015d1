/*
 * gw_scopes.h — the scopes one request is reserved on (key, group, customer,
 * org; SPEC §3) and the pure arithmetic over their limit states: which
 * refusal to report, how far `on_low_budget: clamp` may lower the completion
 * bound, and the rate-limit / budget headers of a success.
 *
 * Scopes are kept in report order (key, group, customer, org), so "the first
 * refusing scope" is the first in the array. Limit states come from the
 * reserve replies and describe themselves (metric, window, max, action), so
 * nothing here needs the scope definitions. A state of a scope that accepted
 * the reservation already carries this request's worst case in `reserved`; a
 * refusing scope's states do not.
 *
 * Pure functions; thread-safe.
 */
#ifndef GW_SCOPES_H
#define GW_SCOPES_H
#include <stddef.h>
#include <stdint.h>
#include "cg_err.h"
#include "proto.h"

#define GW_SCOPES_MAX 4

typedef struct gw_scope {
    uint8_t kind;                    /* proto_scope */
    uint8_t done;                    /* the reserve reply (or its failure) arrived */
    uint8_t reserved;                /* a reservation is held on this scope */
    uint8_t skip;                    /* the scope vanished (deleted group): not settled */
    uint8_t settled;                 /* the settle was confirmed (or given up) */
    uint8_t transport;               /* st is a transport failure, not the shard's answer */
    uint16_t st;                     /* cg_err: the reserve outcome (shard's or transport's) */
    char id[PROTO_ID_MAX + 1];       /* scope_id of the `limit` object */
    char route[PROTO_ROUTE_MAX + 1]; /* "key:<id>", "group:<org>/<id>", ... */
    uint8_t state_n;
    proto_refusal refusal; /* st == CG_ERR_BUDGET */
    proto_limit_state states[PROTO_LIMITS_MAX];
} gw_scope;

/* Index of the first scope whose reservation was refused (CG_ERR_BUDGET), or -1. */
int gw_scopes_first_refusal(const gw_scope *s, uint32_t n);

/* What a clamp computation needs to know about the request. */
typedef struct gw_clamp_in {
    int64_t worst_cost_nusd; /* this request's reserved worst case */
    int64_t worst_tokens;
    int64_t prompt_tokens;    /* prompt bound */
    int64_t prompt_cost_nusd; /* prompt bound at the worst prompt rate */
    int64_t fee_nusd;         /* routing fee */
    int64_t completion_rate;  /* nano-USD per 1M completion tokens */
    int64_t choices;          /* completion tokens = max_tokens × choices; >= 1 */
} gw_clamp_in;

/*
 * The largest per-choice max_tokens that fits every block limit of every
 * scope, given the states of n scopes whose reserve replies all arrived with
 * CG_ERR_OK or CG_ERR_BUDGET. Returns -1 when no clamp can help: a refusal is
 * on a requests limit, a scope failed otherwise, a requests limit has no room,
 * or even the prompt alone does not fit. The caller compares the result with
 * clamp_min_tokens and the current bound.
 */
int64_t gw_clamp_max_tokens(const gw_scope *s, uint32_t n, const gw_clamp_in *in);

/* Deltas from the reserved worst case to what is finally charged. */
typedef struct gw_charge_adj {
    int64_t cost_nusd; /* worst - actual cost (>= 0 usually); 0 before the settle */
    int64_t tokens;    /* worst - actual tokens */
} gw_charge_adj;

/* One sliding-window limit chosen for the x-ratelimit-* headers. */
typedef struct gw_rate_pick {
    int found;
    int64_t max;
    int64_t remaining; /* after this request, >= 0 */
    int64_t reset_ms;  /* from now until the oldest counted bucket leaves, >= 0; the
                           whole window when only in-flight reservations count */
} gw_rate_pick;

/*
 * The sliding-window block limit of metric (PROTO_METRIC_REQUESTS or _TOKENS)
 * with the least remaining across the scopes that hold a reservation.
 */
gw_rate_pick gw_scopes_rate_pick(const gw_scope *s, uint32_t n, uint8_t metric, int64_t now_ms,
                                 const gw_charge_adj *adj);

/* Least remaining (nano-USD, >= 0) among block cost limits of reserved scopes;
 * *found = 0 (and 0 returned) if there is none. */
int64_t gw_scopes_budget_left(const gw_scope *s, uint32_t n, const gw_charge_adj *adj, int *found);

/*
 * Append the success headers ("x-ratelimit-limit-requests: 60\r\n" ...,
 * "x-capgate-budget-remaining-usd: 12.34\r\n") to buf (NUL-terminated, cap
 * bytes). Returns the new length, or len unchanged if nothing fits.
 */
size_t gw_scopes_headers(const gw_scope *s, uint32_t n, int64_t now_ms, const gw_charge_adj *adj,
                         char *buf, size_t len, size_t cap);

/* A duration as OpenAI prints resets: "0s", "1s", "6m0s", "1h2m3s" (rounded up to seconds). */
size_t gw_reset_format(int64_t ms, char *buf, size_t cap);

#endif
