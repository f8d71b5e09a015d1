/*
 * gw_proxy.h — the enforcement flow of the proxied endpoints
 * (POST /v1/chat/completions, /v1/completions, /v1/embeddings,
 * /v1/responses) and of GET /v1/models.
 *
 * One gw_proxy per request, on its worker's loop:
 *   authenticate (key cache or ledger AUTH, with the org and group
 *   definitions from their caches or GET_ORG / GET_GROUP) → the key's static
 *   rules (expiry, client IP, allowed models, customer, max_tokens) → parse
 *   and validate the body → estimate the worst case (gw_estimate) → RESERVE
 *   on every scope (key, group, customer, org) in parallel → upstream
 *   (gw_upstream; streamed responses relayed chunk by chunk through gw_sse) →
 *   SETTLE the actual usage on every scope (or RELEASE when nothing was
 *   consumed) → answer the client (non-streaming: after the settles are
 *   confirmed). GET /v1/models stops after the rules and lists the models
 *   the key may use.
 *
 * Lifetime invariant: a proxy holds one reference for its flow plus one per
 * outstanding asynchronous operation (each ledger call, the upstream transfer,
 * an open retry timer). It is freed when the last is dropped, so no callback
 * ever finds freed memory, even after the client went away. The client side
 * (conn) is used only until the response completes or the abort callback ran.
 *
 * All functions run on the worker's loop thread.
 */
#ifndef GW_PROXY_H
#define GW_PROXY_H
#include <stdint.h>
#include <uv.h>
#include "cg_config.h"
#include "cg_http.h"
#include "gw_cache.h"
#include "gw_keycache.h"
#include "gw_ledger.h"
#include "gw_lease.h"
#include "gw_upstream.h"

/* "req_" + 24 lowercase hex digits. */
#define GW_REQID_LEN 28
/* Bound of a buffered (non-streamed or error) upstream response body. */
#define GW_UPSTREAM_BODY_MAX (16u << 20)
/* Client bytes queued on a stream beyond which the upstream transfer pauses. */
#define GW_STREAM_PENDING_MAX (256u << 10)
/* Settle attempts (the first included) before the usage is given up; backoff doubles. */
#define GW_SETTLE_TRIES_MAX 4
#define GW_SETTLE_BACKOFF_MS 200u

typedef struct gw_proxy gw_proxy;

/* What the proxies of one worker share. Owned by the worker. */
typedef struct gw_proxy_env {
    uv_loop_t *loop;
    const cg_config *cfg;  /* borrowed, outlives the env */
    gw_ledger *ledger;     /* NULL once the worker has shut it down */
    gw_upstream *upstream; /* NULL once closed */
    gw_keycache keys;
    gw_cache defs;       /* org and group definitions */
    uint64_t rid_prefix; /* random per worker (RAND_bytes) */
    uint32_t rid_counter;
    gw_proxy *active; /* every proxy not yet freed */
    uint32_t active_n;
    uint8_t closing;           /* shutdown forced: new requests get 503 */
    void (*on_idle)(void *ud); /* called when active_n drops to 0 */
    void *on_idle_ud;
    gw_lease_tab leases; /* budget leases of hot scopes (gw_lease.h); ops count in active_n */
} gw_proxy_env;

/* Initialise env (caches, request-id seed). ledger/upstream are set by the caller. */
cg_err gw_proxy_env_init(gw_proxy_env *env, uv_loop_t *loop, const cg_config *cfg);
/* Free the caches. No proxy may be active. */
void gw_proxy_env_fini(gw_proxy_env *env);

/* Next request id of this worker, NUL-terminated (out has GW_REQID_LEN + 1 bytes). */
void gw_proxy_reqid(gw_proxy_env *env, char *out);

/*
 * Handle one request to endpoint ep (gw_endpoint, from gw_endpoint_of). Takes
 * over the response of c: answers it (possibly much later) and registers the
 * abort/drain callbacks of c.
 */
void gw_proxy_start(gw_proxy_env *env, cg_http_conn *c, const cg_http_req *req, int ep);

/*
 * Shutdown after the drain timeout: stop every upstream transfer (streams end
 * and settle their estimated usage; buffered requests are charged their worst
 * case and answered 503), stop settle retries, refuse new requests. Proxies
 * still waiting on the ledger finish when the ledger is freed.
 */
void gw_proxy_cancel_all(gw_proxy_env *env);

#endif
