/*
 * ledger_metrics.h — the Prometheus series of one ledger shard process
 * (SPEC §9; docs/contracts.md "Issues 6 and 7") and the per-operation log
 * lines that carry the gateway's request id, so gateway and shard lines join.
 *
 * One registry per process (ledger_main owns it). Series, all labelled
 * shard="<name>":
 *   capgate_ledger_ops_total{op,outcome}   operations applied, by type and result
 *   capgate_ledger_batch_ops               operations per write transaction (histogram)
 *   capgate_ledger_commit_seconds          apply + durable commit time per batch (histogram)
 *   capgate_ledger_events_published_total  events sent on PUB
 *   capgate_ledger_lmdb_used_bytes         pages in use in the main LMDB map
 *   capgate_ledger_lmdb_map_bytes          the map's size (lmdb_map_bytes)
 *   capgate_ledger_up                      1 while the shard serves
 *
 * Threading: ledger_metrics_open/close from the main thread, before the
 * writer starts / after it ended. ledger_metrics_batch only on the writer
 * thread (it caches series without a lock). ledger_metrics_published from any
 * thread. Every function accepts a process that never opened the metrics
 * (unit tests of ledger_server): the calls then do nothing.
 */
#ifndef LEDGER_METRICS_H
#define LEDGER_METRICS_H
#include <stdint.h>
#include "cg_err.h"
#include "cg_metrics.h"
#include "ledger_store.h"

/* Create the process's registry for shard name, reading LMDB gauges from store
 * (borrowed; must outlive ledger_metrics_close). Errors: CG_ERR_NOMEM. */
cg_err ledger_metrics_open(const char *shard, ledger_store *store);
/* The registry (NULL before open / after close): render it on GET /metrics. */
cg_metrics *ledger_metrics_registry(void);
/* Free the registry. */
void ledger_metrics_close(void);

/* One committed (or failed) batch: ops[0..n) with their replies, the apply's
 * result and its duration. Counts each op by type and outcome, and logs (debug;
 * info for failures other than refusals) each reserve/settle/release with its
 * request_id. Writer thread only. */
void ledger_metrics_batch(const ledger_op *ops, uint32_t n, cg_err rc, int64_t dur_us);
/* n events were published. */
void ledger_metrics_published(uint64_t n);

#endif
