/*
 * gw_worker.h — one gateway thread with its own libuv loop.
 *
 * A client worker owns a loop, a ledger client (gw_ledger), a libcurl multi
 * (gw_upstream), a key cache and an HTTP server on cfg->listen opened with
 * SO_REUSEPORT, so the kernel spreads connections over the workers and they
 * share nothing on the hot path. It serves GET /healthz, GET /readyz (every
 * shard answers a PING), the proxied endpoints POST /v1/chat/completions,
 * /v1/completions, /v1/embeddings, /v1/responses and GET /v1/models
 * (gw_proxy); anything else is 404 (405 for a known path with the wrong
 * method).
 *
 * The admin worker owns a loop, its own ledger client and the admin API
 * (gw_admin) on cfg->admin_listen, where it also answers GET /metrics,
 * /healthz and /readyz without the admin token (gw_metrics.h).
 *
 * Shutdown (gw_worker_stop, from any thread): stop accepting; let requests in
 * flight finish for up to drain_ms (the `shutdown_timeout_ms` directive); then
 * stop their upstream transfers (each settles what it knows) and give the
 * ledger a last bounded grace period; then close everything. The thread ends
 * when its loop has no handle left.
 */
#ifndef GW_WORKER_H
#define GW_WORKER_H
#include <stdint.h>
#include "cg_config.h"
#include "cg_err.h"
#include "cg_ring.h"

typedef struct gw_worker gw_worker;

typedef enum gw_worker_kind { GW_WORKER_CLIENT = 0, GW_WORKER_ADMIN = 1 } gw_worker_kind;

/*
 * Start a worker thread of the given kind and wait until it listens. cfg and
 * ring are borrowed and must outlive the worker. On failure the thread has
 * ended and nothing is left to free; the error was logged (a listen failure is
 * CG_ERR_IO or the listener's error).
 */
cg_err gw_worker_start(const cg_config *cfg, const cg_ring *ring, gw_worker_kind kind,
                       uint32_t index, uint32_t drain_ms, gw_worker **out);

/* Ask the worker to drain and stop. Any thread; idempotent. */
void gw_worker_stop(gw_worker *w);

/* Wait for the thread to end and free the worker. Call once, from the starting thread. */
void gw_worker_join(gw_worker *w);

#endif
