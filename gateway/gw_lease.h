/*
 * gw_lease.h — budget leases for hot scopes (issue 4, docs/leasing.md).
 *
 * Per worker, per leased route (org scopes with `lease_scopes org`, every scope
 * with `lease_scopes all`): the
 * worker holds a lease — an ordinary reservation on the owning shard with its
 * own request id ("lease:<worker prefix>:<n>") and a slice of the remaining
 * budget as its worst case — and admits requests against it locally:
 *   charged + held + worst <= granted   (every metric)
 * where charged = actual usage of finished requests, held = worst cases of the
 * requests in flight. The shard's used + reserved therefore always covers
 * every request admitted on the lease (the no-overspend invariant holds on
 * the shard unchanged). Charges are sent in batches with partial SETTLEs
 * (every GW_LEASE_TICK_MS), which also renew the shard lease; a lease that
 * cannot take a request, idles for GW_LEASE_IDLE_MS or the worker stops is
 * retired: once its requests are done a final SETTLE returns the rest.
 * A lease acquire that the shard refuses makes the request fall back to an
 * ordinary per-request reservation.
 */
#ifndef GW_LEASE_H
#define GW_LEASE_H
#include <stdint.h>
#include <uv.h>
#include "proto.h"

#define GW_LEASE_TICK_MS 200  /* flush / renew / idle check period */
#define GW_LEASE_IDLE_MS 1000 /* an unused lease is returned after this */
#define GW_LEASE_FIRST_K 16   /* first slice: the request's worst case × this */
#define GW_LEASE_MIN_K 16     /* slices are at least worst × this */
/* The tail: where a block limit has less than worst × this unreserved, requests reserve
 * one by one (exact to the cap, no slice held by one worker while another refuses). */
#define GW_LEASE_TAIL_K 16
#define GW_LEASE_MAX_K 100000
#define GW_LEASE_NOLEASE_MAX 16
#define GW_LEASE_FLUSH_RECS 256 /* a key lease flushes once this many usage records wait */
/* A lease holding this many unwritten usage records (its partial settles are not being
 * confirmed: a shard that still answers reads but cannot commit, or is too slow) admits
 * nothing more, so a worker's memory for them stays bounded (~2 MB per lease); the next
 * requests reserve one by one. (A shard that is unreachable fails requests closed before
 * any lease is consulted: its connection loss drops the cached definitions.) */
#define GW_LEASE_RECS_PENDING_MAX 4096
#define GW_LEASE_BUCKETS 256 /* route hash buckets (power of two) */

typedef struct gw_lease gw_lease;
struct gw_proxy_env;
struct gw_proxy;

typedef struct gw_lease_nolease {
    char route[PROTO_ROUTE_MAX + 1];
    int64_t until_ms; /* mono */
} gw_lease_nolease;

/* A definitive refusal: `used` alone (reservations aside) leaves no room for `worst`
 * in a calendar / lifetime block limit, so the answer cannot change before the period
 * ends (used never shrinks) unless an admin raises the cap. Kept at most
 * GW_LEASE_IDLE_MS; a request at least as large is refused without a shard operation. */
typedef struct gw_lease_refusal {
    char route[PROTO_ROUTE_MAX + 1];
    int64_t until_ms; /* wall clock */
    int64_t worst;    /* of the refused limit's metric */
    proto_refusal refusal;
    uint8_t state_n;
    proto_limit_state states[PROTO_LIMITS_MAX];
} gw_lease_refusal;

#define GW_LEASE_REFUSALS_MAX 4

typedef struct gw_lease_tab {
    gw_lease *head;
    gw_lease *bucket[GW_LEASE_BUCKETS]; /* by route hash, chained by hnext */
    uv_timer_t timer;
    uint8_t timer_open;
    uint8_t shutdown; /* no new leases; every lease retired */
    uint32_t counter; /* lease request ids */
    /* routes near their cap (or failing): per-request reservations there for a while */
    gw_lease_nolease nolease[GW_LEASE_NOLEASE_MAX];
    uint32_t nolease_next;
    gw_lease_refusal refusals[GW_LEASE_REFUSALS_MAX];
    uint32_t refusal_next;
} gw_lease_tab;

typedef enum gw_lease_verdict {
    GW_LEASE_NO = 0,   /* not leased: reserve per request */
    GW_LEASE_ADMITTED, /* admitted on a lease: *out set */
    GW_LEASE_WAIT,     /* waiting for a lease acquire: gw_proxy_lease_ready follows */
} gw_lease_verdict;

/* Whether scope kind `kind` is leased by this config. */
int gw_lease_enabled(const struct gw_proxy_env *env, uint8_t kind);
/* Try to admit scope idx of p (route, worst) on a lease. On WAIT the caller counts the
 * operation as in flight; gw_lease holds a reference of p until gw_proxy_lease_ready. */
/* A customer route's lease acquire carries the org's customer_defaults inline (from p),
 * as the request's own RESERVE would. */
gw_lease_verdict gw_lease_admit(struct gw_proxy_env *env, struct gw_proxy *p, uint8_t idx,
                                const char *route, const proto_amounts *worst, gw_lease **out);
/* A per-request reservation of a leased scope kind was refused: remember it if definitive. */
void gw_lease_note_refusal(struct gw_proxy_env *env, const char *route, const proto_amounts *worst,
                           const proto_refusal *rf, const proto_limit_state *states, uint8_t n);
/* A remembered definitive refusal covering a request of this worst case, or NULL. */
const gw_lease_refusal *gw_lease_refused(struct gw_proxy_env *env, const char *route,
                                         const proto_amounts *worst);
/* A request admitted on L finished: it consumed actual (charge) or nothing (release).
 * rec: its usage record (key scopes; NULL for others), carried by the lease's next
 * partial settle (or its final one) and written with the charge. */
void gw_lease_charge(gw_lease *L, const proto_amounts *worst, const proto_amounts *actual,
                     const proto_usage *rec);
void gw_lease_return(gw_lease *L, const proto_amounts *worst);
/* The limit states last seen for L's route (for the response headers). */
uint8_t gw_lease_states(const gw_lease *L, proto_limit_state *out);
/* A definition changed (a notice named route; NULL = any may have): retire the leases
 * it governs — the route's own, and for an org its customers' (their inline defaults come
 * from the org) — so the next requests acquire under the new limits. */
void gw_lease_route_changed(struct gw_proxy_env *env, const char *route);
/* Worker draining: retire every lease (final settles go once their requests finish). */
void gw_lease_shutdown(struct gw_proxy_env *env);
/* Worker finishing: close the timer. */
void gw_lease_close(struct gw_proxy_env *env);
/* Free what is left (after the loop ended). */
void gw_lease_fini(struct gw_proxy_env *env);

/* gw_proxy_rsv.c: a waiting scope's lease acquire ended; L NULL = reserve per request. */
void gw_proxy_lease_ready(struct gw_proxy *p, uint8_t idx, gw_lease *L);

#endif
