/*
 * ledger_server.h — a ledger shard's network service: NNG REP (many contexts)
 * in front of writer threads doing group commit, and NNG PUB for events.
 *
 * Flow of a request: an nng_ctx receives a message and decodes it on NNG's
 * thread; the job joins the shard's queue; the writer thread takes every
 * queued job (up to LEDGER_BATCH_OPS_MAX operations), applies them all in one
 * durable LMDB transaction (ledger_store_apply), and only after the commit
 * sends each reply and then publishes the batch's new events on PUB. A reply
 * that confirms a settle therefore always follows its commit. Each context
 * holds at most one job, so the queue is bounded by the number of contexts.
 *
 * A message that does not decode gets a one-result reply [PING, status] with
 * the decoder's error (CG_ERR_PROTO, CG_ERR_VERSION, CG_ERR_TOOBIG): the
 * client sees a failure instead of a timeout.
 *
 * The writer also sweeps expired leases at least every LEDGER_TICK_MS and runs
 * mdb_reader_check every LEDGER_READER_CHECK_MS.
 *
 * Two lanes (issue 4, docs/ledger-durability.md section 3): jobs made only of
 * RESERVE / AUTH / GET_* ops go to a second writer thread (the reserve lane)
 * that applies them through ledger_store_lane_open's view of the store without
 * ever waiting for a durable commit; everything else, sweeps included, stays
 * on the writer above. Replies of both follow their commits.
 */
#ifndef LEDGER_SERVER_H
#define LEDGER_SERVER_H
#include <stdint.h>
#include "cg_err.h"
#include "ledger_store.h"

/* Bounds on the REP contexts (the ledger_contexts directive: 1..256). */
#define LEDGER_CONTEXTS_MAX 256
/* Longest idle time between two sweeps of expired leases. */
#define LEDGER_TICK_MS 100
/* Interval of mdb_reader_check (stale reader slots of dead processes). */
#define LEDGER_READER_CHECK_MS 10000
/* How long ledger_server_stop waits for queued and in-flight jobs to be answered. */
#define LEDGER_DRAIN_TIMEOUT_MS 5000
/* Longest wait for one socket to close (NNG 1.5.2 can hang there; see ledger_server.c). */
#define LEDGER_CLOSE_TIMEOUT_MS 2000

typedef struct ledger_server ledger_server;

typedef struct ledger_server_cfg {
    ledger_store *store; /* borrowed; only the writer thread uses it while the server runs */
    const char *req_url; /* NNG listen URL of the REP socket (tcp://, ipc://, inproc://) */
    const char *pub_url; /* NNG listen URL of the PUB socket */
    uint32_t contexts;   /* REP contexts, 1..LEDGER_CONTEXTS_MAX */
} ledger_server_cfg;

/* Counters since start. */
typedef struct ledger_server_stats {
    uint64_t requests;     /* messages received */
    uint64_t bad_requests; /* messages that did not decode */
    uint64_t events_published;
    uint64_t send_errors; /* replies that could not be sent (peer gone) */
} ledger_server_stats;

/*
 * Listen on both URLs, start the contexts and the writer thread. Returns
 * CG_ERR_INVAL for a bad cfg, the translated NNG error when a socket cannot be
 * opened or a URL not listened on (original logged). *out set only on success.
 * Call from one thread; the store must not be used by the caller until stop.
 */
cg_err ledger_server_start(const ledger_server_cfg *cfg, ledger_server **out);

/*
 * Stop: receive no new requests, answer every queued and in-flight job (up
 * to LEDGER_DRAIN_TIMEOUT_MS), join the writer, close both sockets (each
 * bounded by LEDGER_CLOSE_TIMEOUT_MS) and free the server. Every commit is
 * done before the sockets close. The store stays open (the caller closes it).
 * NULL is ignored. Returns within about LEDGER_DRAIN_TIMEOUT_MS + 2 *
 * LEDGER_CLOSE_TIMEOUT_MS.
 */
void ledger_server_stop(ledger_server *srv);

/* A snapshot of the counters (thread-safe). */
void ledger_server_stats_get(ledger_server *srv, ledger_server_stats *out);

/*
 * Process-wide glibc malloc tuning for a shard process (call once, early in
 * main): fixed mmap / trim thresholds, so the large per-message request arrays
 * are reused from the heap instead of being mapped and faulted in afresh each
 * time. Costs up to the trim threshold of retained heap.
 */
void ledger_malloc_tune(void);

#endif
