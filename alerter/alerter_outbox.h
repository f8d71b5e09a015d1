/*
 * alerter_outbox.h — the alerter's durable state in LMDB: one cursor per shard
 * and one outbox record per (event, webhook endpoint).
 *
 * Databases in <data_dir>/alerter/:
 *   cursor  shard name            -> last processed seq (u64 BE)
 *   outbox  record key (48 bytes) -> record (see alerter_outbox.c for the layout)
 *   due     next_ms (u64 BE) + record key -> "" ; exactly the PENDING records
 *   done    finished_ms (u64 BE) + record key -> "" ; DELIVERED and FAILED, for the sweep
 *   endpoint XXH3-64 of a webhook URL (u64 BE) -> org, URL, disabled_ms (0 = enabled);
 *           every webhook endpoint the alerter has queued a delivery for. A 410 sets
 *           disabled_ms; a disabled endpoint gets no further attempts.
 *
 * Invariants: a record is in exactly one of due/done, under the time stored in it;
 * the cursor of a shard and the records of the events up to it are written in one
 * transaction (alerter_txn), so a crash can neither lose an event nor duplicate a
 * delivery record. Commits are durable (no MDB_NOSYNC).
 *
 * Single-threaded: one alerter_outbox is used by one thread (the alerter loop).
 * Records are copied out of LMDB before a transaction ends.
 *
 * A record carries its endpoint's URL and secret as they were when the event was
 * processed, so retries never depend on the ledger being reachable; a secret
 * rotated meanwhile applies to the next event, not to retries of this one.
 */
#ifndef ALERTER_OUTBOX_H
#define ALERTER_OUTBOX_H
#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>
#include "alerter_limits.h"
#include "cg_err.h"
#include "proto.h"

/* Record key: event id NUL-padded to PROTO_EVENT_ID_MAX bytes + XXH3-64 of the URL (BE). */
#define ALERTER_KEY_BYTES (PROTO_EVENT_ID_MAX + 8)

typedef enum alerter_state {
    ALERTER_PENDING = 0,   /* waiting for its next attempt (in `due`) */
    ALERTER_DELIVERED = 1, /* a 2xx was received */
    ALERTER_FAILED = 2,    /* schedule exhausted, 410, or a permanent error */
} alerter_state;

typedef enum alerter_channel {
    ALERTER_CH_WEBHOOK = 0, /* url is the endpoint */
    ALERTER_CH_EMAIL = 1,   /* url is "mailto:<address>"; body is the whole RFC 5322 message */
} alerter_channel;

/* Prefix of an email record's url. */
#define ALERTER_MAILTO "mailto:"

typedef struct alerter_record {
    uint8_t key[ALERTER_KEY_BYTES];
    char event_id[PROTO_EVENT_ID_MAX + 1];
    char org[PROTO_ID_MAX + 1];
    uint8_t type;    /* proto_event_type; 0xff when unknown (records of format 1) */
    uint8_t channel; /* alerter_channel */
    int64_t last_ms; /* when the last attempt finished; 0 = none yet */
    char url[PROTO_URL_MAX + 1];
    char secret[PROTO_SECRET_MAX + 1]; /* never logged */
    uint8_t state;                     /* alerter_state */
    uint16_t attempts;                 /* attempts made so far */
    int64_t created_ms;
    int64_t next_ms; /* PENDING: next attempt; else: when it finished */
    char last_error[ALERTER_ERR_MAX + 1];
    uint32_t body_len;
    char body[ALERTER_BODY_MAX]; /* exact bytes POSTed on every attempt */
} alerter_record;

typedef struct alerter_outbox alerter_outbox;

/* A write transaction; caller's storage. Every begin is ended by commit or abort. */
typedef struct alerter_txn {
    alerter_outbox *ob;
    MDB_txn *txn;
} alerter_txn;

/* Skip predicate for alerter_outbox_due: non-zero skips the record (e.g. in flight). */
typedef int (*alerter_skip_fn)(const uint8_t key[ALERTER_KEY_BYTES], void *arg);

/* Fill r->key from (event_id, url). event_id must be 1..PROTO_EVENT_ID_MAX bytes. */
void alerter_record_key(const char *event_id, const char *url, uint8_t key[ALERTER_KEY_BYTES]);

/*
 * Open (creating dir and databases if needed) with a map of map_bytes. Clears stale
 * reader slots. Returns CG_ERR_IO if dir cannot be created, CG_ERR_DB / CG_ERR_NOMEM
 * otherwise; *out is set only on success.
 */
cg_err alerter_outbox_open(const char *dir, uint64_t map_bytes, alerter_outbox **out);
void alerter_outbox_close(alerter_outbox *ob);

/* Cursor of shard (0 if none stored yet). */
cg_err alerter_outbox_cursor_get(alerter_outbox *ob, const char *shard, uint64_t *seq);

cg_err alerter_outbox_begin(alerter_outbox *ob, alerter_txn *t);
/* Commit durably; t is ended whatever the result. CG_ERR_MAP_FULL if the map is full. */
cg_err alerter_outbox_commit(alerter_txn *t);
void alerter_outbox_abort(alerter_txn *t);

cg_err alerter_outbox_cursor_set(alerter_txn *t, const char *shard, uint64_t seq);

/*
 * Insert r (state PENDING, due at r->next_ms) unless a record with r->key exists;
 * *created says which. An existing record is left untouched (idempotent ingest).
 */
cg_err alerter_outbox_create(alerter_txn *t, const alerter_record *r, int *created);

/*
 * Replace the stored record with key r->key by r (after an attempt) and move its index
 * entry: to `due` at r->next_ms if PENDING, else to `done` at r->next_ms.
 * CG_ERR_NOTFOUND if no such record.
 */
cg_err alerter_outbox_update(alerter_txn *t, const alerter_record *r);

/* Read one record. CG_ERR_NOTFOUND if absent. */
cg_err alerter_outbox_get(alerter_outbox *ob, const uint8_t key[ALERTER_KEY_BYTES],
                          alerter_record *out);

/* The same inside a write transaction (LMDB allows one transaction per thread). */
cg_err alerter_outbox_get_txn(alerter_txn *t, const uint8_t key[ALERTER_KEY_BYTES],
                              alerter_record *out);

/*
 * Up to cap PENDING records with next_ms <= now_ms, oldest due first, skipping those
 * for which skip (may be NULL) returns non-zero. Writes *n (0..cap) and *next_ms: when
 * the next record not returned and not skipped is due (now_ms if cap was reached
 * first, INT64_MAX if there is none), so the caller knows when to look again.
 */
cg_err alerter_outbox_due(alerter_outbox *ob, int64_t now_ms, alerter_skip_fn skip, void *arg,
                          alerter_record *out, uint32_t cap, uint32_t *n, int64_t *next_ms);

/* Earliest next_ms of any PENDING record; CG_ERR_NOTFOUND if there is none. */
cg_err alerter_outbox_next_due(alerter_outbox *ob, int64_t *next_ms);

/* Delete up to max finished records that finished before before_ms; *removed counts them. */
cg_err alerter_outbox_sweep(alerter_outbox *ob, int64_t before_ms, uint32_t max, uint32_t *removed);

/*
 * Visit records for the delivery-state API, up to max of them: state < 0 means every
 * state (pending first, by next attempt; then finished, newest first), otherwise only
 * that state (pending by next attempt, finished newest first). fn returns non-zero to
 * stop. Uses its own read transaction, so it may run on any thread (one call at a time
 * per thread); r is valid during the callback only.
 */
typedef int (*alerter_visit_fn)(const alerter_record *r, void *arg);
cg_err alerter_outbox_list(alerter_outbox *ob, int state, uint32_t max, alerter_visit_fn fn,
                           void *arg);

/* A webhook endpoint as stored in `endpoint`. */
typedef struct alerter_endpoint {
    uint64_t id; /* XXH3-64 of url */
    char org[PROTO_ID_MAX + 1];
    char url[PROTO_URL_MAX + 1];
    int64_t disabled_ms; /* 0 = enabled */
} alerter_endpoint;

/* Record that org uses url (kept as it is if already known). */
cg_err alerter_outbox_endpoint_seen(alerter_txn *t, const char *org, const char *url);
/* Disable url's endpoint at now_ms (adding it if unknown); a disabled one keeps its time. */
cg_err alerter_outbox_endpoint_disable(alerter_txn *t, const char *org, const char *url,
                                       int64_t now_ms);
/* Enable the endpoint with this id again. CG_ERR_NOTFOUND if unknown. */
cg_err alerter_outbox_endpoint_enable(alerter_outbox *ob, uint64_t id);
/* *disabled_ms = when url's endpoint was disabled, 0 if it is not (or unknown). Own read
 * transaction; any thread. */
cg_err alerter_outbox_endpoint_state(alerter_outbox *ob, const char *url, int64_t *disabled_ms);
/* Visit every endpoint, in id order; fn returns non-zero to stop. Any thread. */
typedef int (*alerter_endpoint_fn)(const alerter_endpoint *e, void *arg);
cg_err alerter_outbox_endpoints(alerter_outbox *ob, alerter_endpoint_fn fn, void *arg);

/* Number of PENDING records (entries of `due`; O(1)). Any thread. */
cg_err alerter_outbox_pending(alerter_outbox *ob, uint64_t *n);

/* Number of records per state (counts[ALERTER_PENDING..ALERTER_FAILED]); full scan, for
 * tests and start-up logging. */
cg_err alerter_outbox_count(alerter_outbox *ob, uint64_t counts[3]);

#endif
