/*
 * alerter_http.h — the alerter's HTTP listener (`alerter_listen`, docs/contracts.md
 * "Issues 6 and 7"): /healthz, /readyz, /metrics, and, with the admin token,
 * GET /admin/v1/deliveries, GET /admin/v1/endpoints and
 * POST /admin/v1/endpoints/{id}/enable.
 *
 * It runs on its own thread and libuv loop (common/cg_http), apart from the
 * alerter loop, which sleeps in curl_multi_poll. It only reads the outbox through
 * its own LMDB read transactions (and writes one endpoint record to re-enable it),
 * reads the metrics registry, and reads the `ready` flag the loop sets; so it
 * shares no mutable memory with the loop.
 */
#ifndef ALERTER_HTTP_H
#define ALERTER_HTTP_H
#include <stdatomic.h>
#include "alerter_outbox.h"
#include "cg_config.h"
#include "cg_err.h"
#include "cg_metrics.h"

/* Bounds of GET /admin/v1/deliveries?limit=N. */
#define ALERTER_LIST_DEFAULT 100
#define ALERTER_LIST_MAX 1000

typedef struct alerter_http alerter_http;

/*
 * Listen on cfg->alerter_listen (must be non-empty) and serve until
 * alerter_http_stop. cfg, ob, m and ready are borrowed and must outlive it.
 * Returns CG_ERR_OK once listening, or the listen error (the address is logged).
 */
cg_err alerter_http_start(const cg_config *cfg, alerter_outbox *ob, cg_metrics *m,
                          const atomic_int *ready, alerter_http **out);
/* Close the listener, join the thread, free. Safe on NULL. */
void alerter_http_stop(alerter_http *h);

#endif
