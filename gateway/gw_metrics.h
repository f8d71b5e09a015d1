/*
 * gw_metrics.h — the gateway process's Prometheus series (SPEC §9,
 * docs/contracts.md "Issues 6 and 7"), served on GET /metrics of the admin
 * listener without the admin token.
 *
 *   capgate_gateway_requests_total{status,reason}   answered proxied requests
 *   capgate_gateway_request_seconds                 arrival → answer complete (histogram)
 *   capgate_gateway_upstream_seconds                upstream transfer time (histogram)
 *   capgate_gateway_ledger_roundtrip_seconds{shard} ledger batch submit → reply (histogram)
 *   capgate_gateway_requests_in_flight              proxied requests not yet finished
 *                                                   (holding reservations or settling)
 *   capgate_gateway_ledger_ops_total{scope}         operations sent to the shards: money
 *                                                   ops (reserve/settle/release) by scope
 *                                                   key|group|customer|org, the rest "other"
 *                                                   (with requests_total: shard operations
 *                                                   per request, what budget leases cut)
 *   capgate_gateway_up                              1 while the gateway serves
 *
 * One registry per process, created by gw_metrics_init before the worker
 * threads start and freed by gw_metrics_fini after they ended. Every
 * observation function may be called from any worker thread and does nothing
 * when the registry was never created (unit tests that link the proxy).
 */
#ifndef GW_METRICS_H
#define GW_METRICS_H
#include <stdint.h>
#include "cg_config.h"
#include "cg_err.h"
#include "cg_metrics.h"

/* Create the registry and its series (shard names from cfg). Errors: CG_ERR_NOMEM. */
cg_err gw_metrics_init(const cg_config *cfg);
/* Free it; no thread may observe any more. */
void gw_metrics_fini(void);
/* The registry to render, or NULL. */
cg_metrics *gw_metrics_registry(void);

/* A proxied request was answered with status (reason: the OpenAI error code,
 * NULL for an upstream answer passed through); t0_ms: cg_mono_ms() at arrival. */
void gw_metrics_request(int status, const char *reason, int64_t t0_ms);
/* An upstream transfer ended: observe its total time (a CURL * easy handle;
 * void * so this header does not pull in curl). */
void gw_metrics_upstream_curl(void *easy);
/* The same for a transfer of the builtin client: its total time in seconds. */
void gw_metrics_upstream_s(double s);
/* A ledger batch to shard index returned (or failed) submit_ms after submission
 * (cg_mono_ms() time). */
void gw_metrics_ledger_rtt(uint16_t shard, int64_t submit_ms);
/* One operation submitted to a shard: scope 0..3 = money op on a key, group, customer or
 * org route, 4 = any other operation. */
void gw_metrics_ledger_op(int scope);
/* A proxied request started (+1) or ended (-1). */
void gw_metrics_inflight(int delta);

#endif
