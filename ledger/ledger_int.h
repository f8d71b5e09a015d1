/*
 * ledger_int.h — internals shared by the ledger store's files: the store
 * struct, the transaction context every operation runs in, record encodings
 * and scope resolution. Not a public contract: only ledger_store.c,
 * ledger_rec.c and ledger_ops.c include it.
 *
 * Write discipline (what makes the cheap batch path safe): an operation first
 * reads and decides — every refusal (BUDGET, CONFLICT, NOTFOUND, INVAL, ...)
 * happens before its first write — then writes. Writes go through ls_put /
 * ls_del, which mark the operation dirty and, when LMDB fails, mark the
 * transaction broken. The batch runner (ledger_store.c) treats "broken", or
 * "dirty and not OK", as a reason to re-run the batch with one nested
 * transaction per operation, so a failing operation never leaves half its
 * writes behind and never fails its neighbours.
 */
#ifndef LEDGER_INT_H
#define LEDGER_INT_H
#include <lmdb.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "cg_err.h"
#include "cg_period.h"
#include "cg_ring.h"
#include "ledger_store.h"
#include "proto.h"

/* Layout version stored in meta; a store with another version is refused, except
 * LS_SCHEMA_PRE_ROLLUP (no usage rollups yet): its rollups are built at open, then the version
 * is bumped (ledger_store.c, docs/contracts.md "Usage rollups"). */
#define LS_SCHEMA_VERSION 2
#define LS_SCHEMA_PRE_ROLLUP 1
/* Longest LMDB key built here: gc/lease key = 8 + request id + 1 + route. */
#define LS_KEY_MAX (8 + PROTO_REQID_MAX + 1 + PROTO_ROUTE_MAX)
/* Events buffered for one batch before the array grows (it grows by doubling). */
#define LS_EVENTS_INITIAL 256
/* Longest usage rollup key: hour:BE64, then org 0x00 key_id 0x00 model 0x00 provider 0x00
 * group 0x00 customer. Its value: LS_ROLLUP_BYTES (4 x i64 LE totals). */
#define LS_HOUR_KEY_MAX \
    (8 + 4 * (PROTO_ID_MAX + 1) + (PROTO_MODEL_MAX + 1) + (PROTO_PROVIDER_MAX + 1))
#define LS_ROLLUP_BYTES 32
#define LS_HOUR_MS (3600LL * 1000)
/* Slots of the scope cache (direct-mapped by a hash of the route; a power of two). */
#define LS_SCOPE_CACHE_SLOTS 1024

/*
 * A decoded key / group / org scope, reused by later operations on the same
 * route instead of reading and decoding its record again. An entry is valid
 * while its gen equals the store's def_gen, which moves on every write to a
 * definition database (ls_put / ls_del) and whenever a transaction attempt is
 * abandoned (so nothing read from uncommitted state survives an abort).
 * Customer scopes are not cached (they merge the request's inline defaults).
 */
typedef struct ls_scope_slot ls_scope_slot;

/*
 * One reservation-env write of a durable-lane batch, recorded while the batch runs and
 * replayed around its durable commit (two-phase, ledger_store.c): a put or delete of a
 * record or index key, or a change of a reserved sum kept as a delta (the reserve lane
 * moves the same sums meanwhile, and deltas commute). `pre` entries (holds taken: positive
 * deltas, the records of RESERVE ops) are committed before the durable commit, the others
 * after it.
 */
typedef struct ls_rlog_ent {
    MDB_dbi dbi;  /* with LS_RSV_DBI */
    uint8_t kind; /* LS_RLOG_PUT, LS_RLOG_DEL, LS_RLOG_SUM */
    uint8_t pre;  /* applied before the durable commit */
    uint32_t kn;  /* key bytes at off, value bytes (puts) right after */
    uint32_t vn;
    size_t off;    /* into ledger_store.rlog_buf */
    int64_t delta; /* LS_RLOG_SUM */
} ls_rlog_ent;
#define LS_RLOG_PUT 1
#define LS_RLOG_DEL 2
#define LS_RLOG_SUM 3

struct ledger_store {
    MDB_env *env;
    MDB_dbi db_orgs;       /* org id -> proto_org (msgpack) */
    MDB_dbi db_keys;       /* key id -> proto_key (msgpack) */
    MDB_dbi db_groups;     /* "<org>/<group id>" -> proto_group (msgpack) */
    MDB_dbi db_customers;  /* "<org>/<customer id>" -> proto_customer override (msgpack) */
    MDB_dbi db_counters;   /* route 0x00 limit_id:BE32 period_index:BE64 -> ls_counter, or
                            (sliding: period index LS_SLIDE_PERIOD) -> ls_slide record */
    MDB_dbi db_resv;       /* request_id 0x00 route -> ls_resv: SETTLED records, and durable
                             copies of partially settled (lease) reservations */
    MDB_dbi db_leases;     /* unused since issue 4 (reservations moved to renv); kept opened */
    MDB_dbi db_gc;         /* delete_at_ms:BE64 request_id 0x00 route -> "" (db_resv records) */
    MDB_dbi db_usage;      /* ts_ms:BE64 request_id -> proto_usage (msgpack) */
    MDB_dbi db_usage_hour; /* usage rollups: LS_HOUR_KEY_MAX key -> LS_ROLLUP_BYTES totals */
    MDB_dbi db_events;     /* seq:BE64 -> proto_event (msgpack) */
    MDB_dbi db_meta;       /* "schema" -> u32 LE, "last_seq" -> u64 LE */
    /* The reservation env (docs/ledger-durability.md): MDB_NOSYNC, recreated empty when the
     * machine rebooted since it was written. Its dbi values carry LS_RSV_DBI. */
    MDB_env *renv;
    MDB_dbi rdb_resv;   /* request_id 0x00 route -> ls_resv: ACTIVE, RELEASED, EXPIRED */
    MDB_dbi rdb_leases; /* expires_ms:BE64 request_id 0x00 route -> "" (active only) */
    MDB_dbi rdb_gc;     /* delete_at_ms:BE64 request_id 0x00 route -> "" (rdb_resv records) */
    MDB_dbi rdb_sum;    /* counter key -> reserved i64 LE (absent = 0) */
    MDB_dbi rdb_meta;   /* "boot_id" -> the boot id the env was written under */
    const cg_ring *ring;
    uint16_t shard_index;
    char shard[PROTO_SHARD_MAX + 1];
    uint64_t last_seq;   /* newest committed event seq */
    proto_event *events; /* events appended by the current / last batch */
    size_t event_n;
    size_t event_cap;
    msgpack_sbuffer sbuf; /* scratch for record encoding (writer thread only) */
    ledger_store_stats stats;
    ls_scope_slot *scope_cache;  /* LS_SCOPE_CACHE_SLOTS entries */
    uint64_t def_gen;            /* starts at 1; an entry with another gen is stale */
    int64_t usage_retention_ms;  /* usage records older than this are swept; 0 = kept forever */
    int64_t usage_sweep_next_ms; /* the retention sweep's next look (ledger_usage.c) */

    /* Two lanes (docs/ledger-durability.md, "Two writer lanes"). On the main store: */
    struct ledger_store *lane;    /* the reserve lane's view, or NULL: then no two-phase */
    _Atomic uint64_t def_epoch;   /* moves after every durable commit that wrote definitions */
    _Atomic int64_t lane_used_ms; /* cg_mono_ms of the lane's latest batch (0: never) */
    int rlog_on;                  /* the running batch records its reservation-env writes */
    ls_rlog_ent *rlog;            /* the records (rlog_n of rlog_cap) */
    size_t rlog_n;
    size_t rlog_cap;
    uint8_t *rlog_buf; /* their keys and values (rlog_buf_n of rlog_buf_cap bytes) */
    size_t rlog_buf_n;
    size_t rlog_buf_cap;
    /* On a lane view (ledger_store_lane_open): */
    struct ledger_store *main;    /* the store it was opened from (shares env, renv, dbis) */
    uint64_t seen_epoch;          /* main->def_epoch its scope cache was filled under */
    MDB_txn *rd;                  /* its durable-env read txn, reset between batches */
    pthread_mutex_t stats_mu;     /* guards stats_pub */
    ledger_store_stats stats_pub; /* stats as of the last lane batch (read by the main store) */
};

/* Invalidate every scope cache entry. */
void ls_scope_cache_drop(ledger_store *s);

/* Counts that become true only when the transaction commits. */
typedef struct ls_pending {
    size_t event_n;
    uint64_t next_seq; /* seq the next appended event gets */
    uint64_t late_settles;
    uint64_t leases_expired;
    uint64_t gc_deleted;
} ls_pending;

/* A dbi of the reservation env: ls_get / ls_put / ls_del run it in t->rtxn. */
#define LS_RSV_DBI 0x40000000u
/* Bits of ls_txn.dirty: which env the current operation wrote. */
#define LS_DIRTY_DURABLE 1
#define LS_DIRTY_RSV 2

/* The context of one (possibly nested) transaction. */
typedef struct ls_txn {
    ledger_store *s;
    MDB_txn *txn;   /* the durable env's */
    MDB_txn *rtxn;  /* the reservation env's (same nesting as txn) */
    int64_t now_ms; /* one clock reading for the whole batch */
    int dirty;      /* the current operation has written (LS_DIRTY_* bits) */
    int broken;     /* an LMDB call failed: this txn can only be aborted */
    int poisoned;   /* a nested pair merged only half: the whole batch must fail */
    int no_cache;   /* isolated mode: scopes are neither taken from nor put in the cache */
    int pre_op;     /* the current op is a RESERVE: its record writes are rlog `pre` */
    int defs;       /* a definition database was written */
    cg_err broken_err;
    ls_pending p;
} ls_txn;

/* ---- LMDB access (ledger_store.c) ---- */
/* Get: CG_ERR_OK (val borrowed until the txn ends), CG_ERR_NOTFOUND, or an LMDB error (logged,
 * marks broken). */
cg_err ls_get(ls_txn *t, MDB_dbi dbi, const void *k, size_t kn, MDB_val *val);
/* Put / delete (delete of a missing key is OK). Marks dirty; on failure marks broken. */
cg_err ls_put(ls_txn *t, MDB_dbi dbi, const void *k, size_t kn, const void *v, size_t vn);
cg_err ls_del(ls_txn *t, MDB_dbi dbi, const void *k, size_t kn);
/* The transaction a dbi belongs to (t->txn or t->rtxn); clears LS_RSV_DBI from *dbi. */
MDB_txn *ls_txn_of(ls_txn *t, MDB_dbi *dbi);
/* Note an LMDB failure: logs the original code, marks broken, returns the cg_err. */
cg_err ls_lmdb_fail(ls_txn *t, int rc, const char *what);
/* Append an event (seq and stored record assigned here). */
cg_err ls_event_append(ls_txn *t, proto_event *ev);

/* ---- keys and records (ledger_rec.c) ---- */
typedef struct ls_key {
    uint8_t b[LS_KEY_MAX];
    size_t n;
} ls_key;

void ls_key_counter(ls_key *k, const char *route, uint32_t limit_id, int64_t period_index);
void ls_key_resv(ls_key *k, const char *request_id, const char *route);
/* An index key: at_ms (BE64) followed by the reservation key. */
void ls_key_index(ls_key *k, int64_t at_ms, const char *request_id, const char *route);
void ls_key_u64(ls_key *k, uint64_t v);
void ls_key_usage(ls_key *k, int64_t ts_ms, const char *request_id);
uint64_t ls_be64_get(const uint8_t *p);
int64_t ls_index_time(const ls_key *k);
/* Little-endian fixed-width fields of the small binary records. */
void ls_le64_put(uint8_t *p, uint64_t v);
uint64_t ls_le64_get(const uint8_t *p);

#define LS_FIRED_REACHED (1u << 31)
typedef struct ls_counter {
    int64_t used;     /* >= 0 */
    int64_t reserved; /* >= 0 */
    uint32_t fired;   /* bit i: warn_bp[i] fired; LS_FIRED_REACHED: *_reached fired */
} ls_counter;

/* Counter of (route, limit, period); zero when absent. CG_ERR_DB if the record is corrupt.
 * used and fired come from the durable env, reserved from the reservation env. */
cg_err ls_counter_get(ls_txn *t, const char *route, uint32_t limit_id, int64_t period_index,
                      ls_counter *out);
/* Write c: used and fired to the durable env only when `durable`, reserved always (to the
 * reservation env), so a reserve or release never dirties the durable env. */
cg_err ls_counter_put(ls_txn *t, const char *route, uint32_t limit_id, int64_t period_index,
                      const ls_counter *c, int durable);
/* The reserved sum under counter key k (reservation env; 0 when absent). */
cg_err ls_reserved_get(ls_txn *t, const ls_key *k, int64_t *out);
cg_err ls_reserved_put(ls_txn *t, const ls_key *k, int64_t reserved);

typedef enum ls_resv_state {
    LS_RESV_ACTIVE = 1,
    LS_RESV_SETTLED = 2,
    LS_RESV_RELEASED = 3,
    LS_RESV_EXPIRED = 4,
} ls_resv_state;

/*
 * One counter a reservation holds an amount on, with a snapshot of the limit
 * it was reserved under. The snapshot lets a settle judge thresholds of limits
 * the shard does not store (a customer's inline defaults); v1 records (issue
 * 2) have none: max 0, so they fire nothing.
 */
typedef struct ls_item {
    uint32_t limit_id;
    uint8_t metric;       /* proto_metric */
    int64_t period_index; /* calendar index (>= 0), or LS_SLIDE_PERIOD(window) (< 0) */
    int64_t period_start_ms;
    int64_t period_end_ms; /* INT64_MAX for lifetime; unused for sliding windows */
    int64_t amount;        /* reserved amount, >= 0 */
    cg_window window;      /* snapshot of the limit */
    int64_t max;
    uint8_t action;
    uint8_t warn_n;
    uint16_t warn_bp[PROTO_WARN_MAX];
} ls_item;

typedef struct ls_resv {
    uint8_t state;         /* ls_resv_state */
    uint8_t late;          /* the settle came after the lease (replayed on a retry) */
    uint8_t item_n;        /* 0..PROTO_LIMITS_MAX */
    int64_t created_ms;    /* sliding windows: the settle counts in this time's bucket */
    int64_t expires_ms;    /* lease expiry; the gc deletes the record LEDGER_DEDUP_MS later */
    proto_amounts settled; /* SETTLED: the actual amounts, compared on a retry (the digest) */
    ls_item items[PROTO_LIMITS_MAX];
} ls_resv;

/* The limit snapshot an item carries. */
void ls_item_limit(const ls_item *it, proto_limit *out);

/*
 * A reservation as the two envs hold it: a SETTLED record of the durable env wins (a settle
 * is committed there first); else the reservation env's record; else a durable copy left by
 * a partial settle, whose hold was lost with the reservation env (read as EXPIRED).
 * CG_ERR_NOTFOUND if absent, CG_ERR_DB if corrupt.
 */
cg_err ls_resv_get(ls_txn *t, const char *request_id, const char *route, ls_resv *out);
/* The record of one database (db_resv or rdb_resv) only. */
cg_err ls_resv_get_db(ls_txn *t, MDB_dbi dbi, const char *request_id, const char *route,
                      ls_resv *out);
/* SETTLED: into the durable env (and off the reservation env); else the reservation env. */
cg_err ls_resv_put(ls_txn *t, const char *request_id, const char *route, const ls_resv *r);
/* A durable copy of a partially settled reservation (its charge_seq survives an OS crash). */
cg_err ls_resv_put_durable(ls_txn *t, const char *request_id, const char *route, const ls_resv *r);

/* Records stored with the proto encoders; CG_ERR_NOTFOUND if absent, CG_ERR_DB if corrupt. */
cg_err ls_org_get(ls_txn *t, const char *id, proto_org *out);
cg_err ls_org_put(ls_txn *t, const proto_org *o);
cg_err ls_apikey_get(ls_txn *t, const char *id, proto_key *out);
cg_err ls_apikey_put(ls_txn *t, const proto_key *k);
/* Groups and customer overrides are keyed by "<org>/<id>" (the route after its prefix). */
cg_err ls_group_get(ls_txn *t, const char *org_slash_id, proto_group *out);
cg_err ls_group_put(ls_txn *t, const proto_group *g);
cg_err ls_customer_get(ls_txn *t, const char *org_slash_id, proto_customer *out);
cg_err ls_customer_put(ls_txn *t, const proto_customer *c);
/* Put a usage record and add it to its hourly rollup; a record already stored under
 * (ts, request_id) is left alone (nothing written, OK), so a re-put never double-counts. */
cg_err ls_usage_put(ls_txn *t, const char *request_id, const proto_usage *u);

/* ---- usage rollups (ledger_rec.c) ---- */
typedef struct ls_hkey {
    uint8_t b[LS_HOUR_KEY_MAX];
    size_t n;
} ls_hkey;
/* Start of the UTC hour containing t (floor, also for negative t). */
int64_t ls_hour_floor(int64_t t);
/* The rollup key of u's fields in the hour starting at hour_ms. */
void ls_key_usage_hour(ls_hkey *k, int64_t hour_ms, const proto_usage *u);
/* Parse a rollup key into out (ts_ms = the hour, the six fields; the rest zeroed) and its
 * value into tot. CG_ERR_DB when either is malformed. */
cg_err ls_rollup_parse(const MDB_val *key, const MDB_val *val, proto_usage *out,
                       proto_usage_totals *tot);
/* Add one record (stamped ts_ms) to its hour's rollup (read-modify-write). */
cg_err ls_rollup_add(ls_txn *t, int64_t ts_ms, const proto_usage *u);
/* a += b, each field saturating; b may be negative (a record taken back out of a rollup). */
void ls_totals_add(proto_usage_totals *a, const proto_usage_totals *b);

/* ---- scopes (ledger_rec.c) ---- */
/* What a routing key names: whose limits apply and in which calendar. */
typedef struct ls_scope {
    uint8_t kind;               /* proto_scope */
    char id[PROTO_ID_MAX + 1];  /* key / group / customer / org id (an event's scope_id) */
    char org[PROTO_ID_MAX + 1]; /* the owning org (the org itself for org scope) */
    uint8_t anchor_day;         /* 1..28 */
    uint8_t limit_n;
    proto_limit limits[PROTO_LIMITS_MAX];
} ls_scope;

struct ls_scope_slot {
    uint64_t gen; /* 0: empty */
    char route[PROTO_ROUTE_MAX + 1];
    ls_scope sc;
};

/* A customer's defaults as a request carries them inline (the org's customer_defaults). */
typedef struct ls_defaults {
    uint8_t anchor_day; /* 0 = 1 */
    uint8_t n;          /* 0..PROTO_LIMITS_MAX */
    const proto_limit *limits;
} ls_defaults;

/*
 * Resolve route to its scope. Routes: "key:<id>", "group:<org>/<id>",
 * "customer:<org>/<id>", "org:<id>". A customer scope always exists: its
 * limits are cd's (may be NULL: none) merged with the stored override record
 * if any (an override replaces the default of the same metric and window,
 * others are appended; ids are proto_limit_natural_id). Returns
 * CG_ERR_NOTFOUND for an unknown prefix, a malformed id or an absent record,
 * CG_ERR_INVAL for invalid defaults or a merge over PROTO_LIMITS_MAX limits,
 * CG_ERR_DB for a corrupt record.
 */
cg_err ls_scope_load(ls_txn *t, const char *route, const ls_defaults *cd, ls_scope *out);
/* Split "<org>/<id>" at its last '/': CG_ERR_NOTFOUND unless both parts are 1..PROTO_ID_MAX. */
cg_err ls_split_org_id(const char *s, char org[PROTO_ID_MAX + 1], char id[PROTO_ID_MAX + 1]);
/* Calendar period of limit l of scope sc containing t_ms (CG_ERR_INVAL for sliding windows). */
cg_err ls_limit_period(const ls_scope *sc, const proto_limit *l, int64_t t_ms, cg_period *out);
/* The limit with this id, or NULL. */
const proto_limit *ls_scope_limit(const ls_scope *sc, uint32_t limit_id);
/* Check limits at PUT time: CG_ERR_INVAL for bad or duplicate ids, metrics, windows, warn_at
 * (sliding windows take no warn_at: "once per period" has no meaning there). */
cg_err ls_limits_validate(const proto_limit *limits, uint8_t n);
/* Give every limit its natural id (customer limits: proto_limit_natural_id). */
void ls_limits_naturalize(proto_limit *limits, uint8_t n);
/* Amount of metric m in a. */
int64_t ls_amount_of(const proto_amounts *a, uint8_t m);
/* a + b saturating at INT64_MAX (both >= 0). */
int64_t ls_sat_add(int64_t a, int64_t b);
/* Add one usage record to a totals block (saturating; negative amounts count as 0). */
void ls_usage_add(proto_usage_totals *tot, const proto_usage *u);
/* a - b, at least 0. */
int64_t ls_sub_floor0(int64_t a, int64_t b);

/* ---- meters: one limit's counter, calendar or sliding (ledger_meter.c) ---- */
/*
 * Sliding windows keep one counter value per (route, limit): a ring of
 * LS_SLIDE_BUCKETS buckets of cg_window_bucket_ms(window) each. Bucket b (its
 * start time, a multiple of the bucket length) lives in slot
 * (b / bucket_ms) % LS_SLIDE_BUCKETS and counts while b > now - window, so
 * the ring always covers the window (60 buckets of at least window / 60).
 * Its period index is LS_SLIDE_PERIOD(window), negative, so it never shares
 * a key with a calendar counter (indexes >= 0 after 1970) and a changed window
 * length starts a fresh ring instead of misreading the old one.
 */
#define LS_SLIDE_BUCKETS 60
#define LS_SLIDE_PERIOD(w) (-(int64_t)(w).sliding_s)

typedef struct ls_meter {
    uint8_t sliding;
    int64_t period_index; /* calendar index, or LS_SLIDE_PERIOD */
    int64_t start_ms;     /* calendar: period start (inclusive) */
    int64_t end_ms;       /* calendar: period end (exclusive), INT64_MAX for lifetime */
    ls_counter c;         /* reserved (both kinds); used and fired: calendar only */
    uint8_t used_dirty;   /* used (or fired) changed: ls_meter_store writes the durable env */
    int64_t window_ms;    /* sliding only */
    int64_t bucket_ms;    /* sliding only */
    int64_t b_start_ms[LS_SLIDE_BUCKETS]; /* sliding: bucket start; meaningful if amount > 0 */
    int64_t b_amount[LS_SLIDE_BUCKETS];   /* sliding: usage counted in the bucket, >= 0 */
} ls_meter;

/* The meter of limit l of sc as of t->now_ms (zero when no counter exists yet). */
cg_err ls_meter_load(ls_txn *t, const char *route, const ls_scope *sc, const proto_limit *l,
                     ls_meter *m);
/* The meter a reservation item names (its period, whatever the time now). */
cg_err ls_meter_load_item(ls_txn *t, const char *route, const ls_item *it, ls_meter *m);
/* Write m back (sliding: only buckets still in the window are kept). */
cg_err ls_meter_store(ls_txn *t, const char *route, uint32_t limit_id, const ls_meter *m);
/* Usage counted now: calendar `used`, sliding the sum of the buckets in the window. */
int64_t ls_meter_used(const ls_meter *m, int64_t now_ms);
/* Record actual usage of a request created at created_ms (sliding: into that time's bucket,
 * dropped if the bucket has already left the window). */
void ls_meter_add_used(ls_meter *m, int64_t amount, int64_t created_ms, int64_t now_ms);
/* A self-describing state of limit l. */
void ls_meter_state(const ls_meter *m, const proto_limit *l, int64_t now_ms, proto_limit_state *st);
/* Whether worst fits limit l (warn limits and max 0 always fit). */
int ls_meter_fits(const ls_meter *m, const proto_limit *l, int64_t worst, int64_t now_ms);
/* The refusal of a limit that does not fit (retry_after_ms for sliding windows). */
void ls_meter_refusal(const ls_meter *m, const proto_limit *l, int64_t worst, int64_t now_ms,
                      proto_refusal *rf);

/* ---- operations (ledger_ops.c, ledger_defs.c) ---- */
typedef cg_err (*ls_op_fn)(ls_txn *t, const proto_req *req, proto_rep *rep);

/* Apply one request; fills rep (op, status, body). Never fails otherwise. */
void ls_op_apply(ls_txn *t, const proto_req *req, proto_rep *rep);
/* Every limit's state now (zero when no counter exists yet); *n = sc->limit_n. */
cg_err ls_states_read(ls_txn *t, const char *route, const ls_scope *sc, proto_limit_state *states,
                      uint8_t *n);
/* Give back what an active reservation holds on its counters. */
cg_err ls_resv_return(ls_txn *t, const char *route, const ls_resv *r);
/* Move a reservation to a finished state: off the lease index, onto the gc index. */
cg_err ls_resv_finish(ls_txn *t, const char *rid, const char *route, ls_resv *r, uint8_t was_state,
                      uint8_t new_state);

/* Definition ops (ledger_defs.c): PUT/GET of orgs, keys, groups, customers, DELETE. */
cg_err ls_op_put_org(ls_txn *t, const proto_req *req, proto_rep *rep);
cg_err ls_op_get_org(ls_txn *t, const proto_req *req, proto_rep *rep);
cg_err ls_op_get_org_state(ls_txn *t, const proto_req *req, proto_rep *rep);
cg_err ls_op_put_key(ls_txn *t, const proto_req *req, proto_rep *rep);
cg_err ls_op_get_key(ls_txn *t, const proto_req *req, proto_rep *rep);
cg_err ls_op_put_group(ls_txn *t, const proto_req *req, proto_rep *rep);
cg_err ls_op_get_group(ls_txn *t, const proto_req *req, proto_rep *rep);
cg_err ls_op_put_customer(ls_txn *t, const proto_req *req, proto_rep *rep);
cg_err ls_op_get_customer(ls_txn *t, const proto_req *req, proto_rep *rep);
cg_err ls_op_delete(ls_txn *t, const proto_req *req, proto_rep *rep);
/* Reads over the shard's logs (ledger_defs.c): usage totals, events since a seq. */
cg_err ls_op_usage_query(ls_txn *t, const proto_req *req, proto_rep *rep);
cg_err ls_op_events_since(ls_txn *t, const proto_req *req, proto_rep *rep);
/* Usage series and raw records over the shard's usage log (ledger_usage.c). */
cg_err ls_op_usage_series(ls_txn *t, const proto_req *req, proto_rep *rep);
cg_err ls_op_usage_records(ls_txn *t, const proto_req *req, proto_rep *rep);
/* Called per unit of usage matching a filter: one raw record (tot = its own amounts) or one
 * rollup row (u->ts_ms = its hour start, tot = the hour's totals of those fields). */
typedef cg_err (*ls_usage_tot_fn)(void *ud, const proto_usage *u, const proto_usage_totals *tot);
/* Every unit of usage matching f in [from_ms, to_ms) (to_ms 0 = no bound): rollups for the
 * whole UTC hours inside, raw records for the partial hours at the ends. CG_ERR_TOOBIG past
 * LEDGER_USAGE_SCAN_MAX raw records at either end or LEDGER_ROLLUP_SCAN_MAX rollup rows. */
cg_err ls_usage_totals_walk(ls_txn *t, const proto_usage_filter *f, ls_usage_tot_fn fn, void *ud);
/* Build the rollups of a store written before them from its raw log, in chunks of one write
 * transaction each (resumable), then set the schema version (ledger_usage.c). */
cg_err ls_rollup_upgrade(ledger_store *s, const void *schema_key, size_t schema_kn);
/* One step of it: up to max records in one write transaction; *done = 1 at the end of the log. */
cg_err ls_rollup_chunk(ledger_store *s, const void *schema_key, size_t schema_kn, size_t max,
                       size_t *records, size_t *corrupt, int *done);
/* Delete usage records past the store's retention (bounded per call; ledger_usage.c). */
cg_err ls_usage_sweep(ls_txn *t);
/* Issue 5 (ledger_defs.c, ledger_pricing.c): keys of an org, pricing overrides. */
cg_err ls_op_list_keys(ls_txn *t, const proto_req *req, proto_rep *rep);
cg_err ls_op_put_pricing(ls_txn *t, const proto_req *req, proto_rep *rep);
cg_err ls_op_list_pricing(ls_txn *t, const proto_req *req, proto_rep *rep);

/* Return expired leases and delete finished reservations past the dedup window
 * (ledger_sweep.c). */
cg_err ls_sweep(ls_txn *t);

#endif
