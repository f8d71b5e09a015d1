/*
 * ledger_store.h — a ledger shard's durable state in LMDB and the pure
 * transactional operations on it.
 *
 * The store owns two LMDB environments in one directory: the durable one
 * holding the shard's definitions (orgs, keys, groups, customer overrides),
 * used counters, settled reservations, usage records and event log, and the
 * reservation env (reservations.mdb, MDB_NOSYNC) holding active / released /
 * expired reservations and the reserved sums; it survives a process crash and
 * is recreated empty after a reboot (docs/ledger-durability.md).
 * ledger_store_apply() runs a batch of protocol operations in ONE write
 * transaction per env and commits it before returning (the durable env first,
 * with its syncs, when the batch wrote to it): that is the shard's group
 * commit. Everything an operation decides (its reply, the events it appends)
 * becomes true only if that commit succeeds; if it fails, every operation of
 * the batch gets the commit's error.
 *
 * Invariants kept by every operation:
 *  - A counter is (route, limit id, period index) -> {used, reserved, fired}
 *    (a sliding window's is a ring of usage buckets plus `reserved`);
 *    `reserved` is exactly the sum of the amounts of the active reservations
 *    that name that counter, and never negative.
 *  - A reservation is (request id, route) -> record; while active it has one
 *    entry in the lease index; once settled, released or expired it has one
 *    entry in the gc index and is deleted LEDGER_DEDUP_MS after its lease
 *    expiry, so retries within that window are recognised.
 *  - Events get consecutive sequence numbers (from 1) in the same transaction
 *    as the counter change that crossed the threshold.
 *  - Only routes this shard owns on the ring are touched (CG_ERR_WRONG_SHARD).
 *
 * Threading: a store is used by one thread at a time (the shard's writer
 * thread; tests use it from their main thread). It is not internally locked.
 */
#ifndef LEDGER_STORE_H
#define LEDGER_STORE_H
#include <stddef.h>
#include <stdint.h>
#include "cg_err.h"
#include "cg_ring.h"
#include "proto.h"

/* Dedup window: finished reservations are kept this long after their lease expiry. */
#define LEDGER_DEDUP_MS (24LL * 3600 * 1000)
/* Bounds on one reservation's lease. */
#define LEDGER_LEASE_MAX_MS (24LL * 3600 * 1000)
/* Work done by one sweep (per transaction): expired leases, and gc deletions. */
#define LEDGER_SWEEP_MAX 1024
/* Operations applied in one write transaction (the writer's group-commit bound). */
#define LEDGER_BATCH_OPS_MAX 1024
/* Usage records one USAGE_QUERY may visit (it runs on the writer thread, so its cost delays
 * every other operation of the shard); a wider range is refused with CG_ERR_TOOBIG. */
#define LEDGER_USAGE_SCAN_MAX 200000
/* Hourly rollup rows one USAGE_QUERY / USAGE_SERIES may visit (docs/contracts.md "Usage
 * rollups"): the whole hours of its range are read from rollups, so a month of a busy org costs
 * rows, not records; a wider range is refused with CG_ERR_TOOBIG. */
#define LEDGER_ROLLUP_SCAN_MAX 2000000
/* Named LMDB databases of a store (see ledger_store.c for the layout). */
#define LEDGER_DBS_MAX 12

typedef struct ledger_store ledger_store;

typedef struct ledger_store_cfg {
    const char *dir;        /* existing directory for the LMDB files */
    uint64_t map_bytes;     /* LMDB map size; LMDB rounds it to whole pages */
    const cg_ring *ring;    /* borrowed; must outlive the store */
    uint16_t shard_index;   /* this shard's index in ring */
    const char *shard_name; /* copied; 1..PROTO_SHARD_MAX bytes */
    const char *boot_id;    /* NULL: the kernel's (/proc/sys/kernel/random/boot_id); tests set
                               it to act out a reboot (the reservation env is then recreated) */
} ledger_store_cfg;

/* One operation of a batch: the request (borrowed) and where its reply goes. */
typedef struct ledger_op {
    const proto_req *req;
    proto_rep *rep; /* zeroed, filled by an earlier apply, or with op 0 and any body (apply
                       clears what the op's reply uses); an EVENTS_SINCE reply owns a heap
                       array that proto_rep_free / ledger_rep_clear release */
} ledger_op;

/* Buckets of ledger_store_stats.batch_hist: bucket i counts committed transactions of
 * 2^i .. 2^(i+1)-1 operations (the last bucket: LEDGER_BATCH_OPS_MAX). */
#define LEDGER_BATCH_HIST 11

/* Counters since open, for logs and metrics. */
typedef struct ledger_store_stats {
    uint64_t batches;          /* committed write transactions */
    uint64_t ops;              /* operations applied */
    uint64_t late_settles;     /* settles after the lease expired, or of unknown ids */
    uint64_t leases_expired;   /* reservations returned by the sweep */
    uint64_t gc_deleted;       /* finished reservations deleted after the dedup window */
    uint64_t isolated_runs;    /* batches re-run with one nested transaction per op */
    uint64_t commit_errors;    /* batches whose commit failed */
    uint64_t metasync_skipped; /* commits without the meta-page sync (nothing that must
                                  survive an OS crash: reserves, releases, sweeps) */
    uint64_t nosync_commits;   /* commits that wrote only the reservation env: no device sync
                                  at all (reserves, releases, lease expiries; issue 4) */
    uint64_t batch_hist[LEDGER_BATCH_HIST]; /* committed batches by op count (log2 buckets;
                                               sweep-only commits are not counted) */
} ledger_store_stats;

/*
 * Open (creating if needed) the environment in cfg->dir with durable default
 * flags, run mdb_reader_check, create the named databases and read the last
 * event sequence. Returns CG_ERR_INVAL for a bad cfg, CG_ERR_DB / CG_ERR_IO
 * (original LMDB code logged) when LMDB refuses. *out is set only on success.
 */
cg_err ledger_store_open(const ledger_store_cfg *cfg, ledger_store **out);
/* Close the environment and free the store. NULL is ignored. */
void ledger_store_close(ledger_store *s);

/*
 * Apply ops[0..n) (n <= LEDGER_BATCH_OPS_MAX; n == 0 only sweeps) in one
 * write transaction (per env) at time cg_now_ms(), after sweeping expired
 * leases and old reservations, and commit (durably when it holds a settle or
 * a definition write; reserves and releases sync nothing). Each ops[i].rep receives its result
 * (rep->op echoes the request; rep->status is the op's own outcome). Ops are
 * isolated: if one fails inside LMDB (e.g. CG_ERR_MAP_FULL) only that op
 * fails. Returns CG_ERR_OK when committed; otherwise the transaction error,
 * and then every rep has status set to it and no body. Events appended by the
 * batch are available from ledger_store_new_events() until the next apply.
 */
cg_err ledger_store_apply(ledger_store *s, const ledger_op *ops, uint32_t n);

/*
 * The reserve lane (docs/ledger-durability.md, "Two writer lanes"): a second view of an open
 * store s, for a second thread, that applies batches of ledger_store_lane_op ops only (reserves
 * and reads) with ledger_store_apply while s's own thread applies everything else. Once a lane
 * is open, s commits in two phases so that its device syncs never hold the reservation env.
 * The lane is closed with ledger_store_close (before s; closing s closes it too). One lane.
 */
cg_err ledger_store_lane_open(ledger_store *s, ledger_store **lane);
/* 1 if an op (proto_op) may run on the lane: RESERVE, AUTH, GET_ORG / KEY / GROUP / CUSTOMER /
 * ORG_STATE. */
int ledger_store_lane_op(uint8_t op);

/* Events committed by the last ledger_store_apply (borrowed, valid until the next apply). */
const proto_event *ledger_store_new_events(const ledger_store *s, size_t *n);
/* Sequence number of the newest committed event (0 if none). */
uint64_t ledger_store_last_seq(const ledger_store *s);
/* The shard name given at open. */
const char *ledger_store_shard(const ledger_store *s);
/* Clear stale reader slots of dead processes; *dead receives how many (may be NULL). */
cg_err ledger_store_reader_check(ledger_store *s, int *dead);
/* Keep usage records retention_ms (0 = forever): older ones are deleted by the batch sweep
 * (ledger_usage.c). Call before the store is shared with the writer thread. */
void ledger_store_set_usage_retention(ledger_store *s, int64_t retention_ms);
/* Test only: make s look like a store written before usage rollups (schema 1, rollups gone),
 * so the next open rebuilds them from the raw usage log; with rolled > 0, like one whose
 * rebuild stopped (a crash) after its first `rolled` records (fewer than the log holds). */
cg_err ledger_store_test_pre_rollup(ledger_store *s, size_t rolled);
/* A copy of the counters. */
void ledger_store_stats_get(const ledger_store *s, ledger_store_stats *out);

/* Free the heap memory inside one reply (an EVENTS_SINCE event array) and zero it. */
void ledger_rep_clear(proto_rep *rep);

#endif
