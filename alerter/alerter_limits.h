/*
 * alerter_limits.h — every limit of the alerter, named, bounded and explained
 * in one place (in the manner of SQLite's sqliteLimit.h).
 *
 * The alerter's memory is bounded by these numbers times the shard count; no
 * queue grows with the event rate. When a bound is hit, work waits (events
 * stay in the shard's log, records stay due in the outbox), it is never lost.
 */
#ifndef ALERTER_LIMITS_H
#define ALERTER_LIMITS_H
#include "proto.h"

/* Webhook attempts in flight at once (one libcurl multi). */
#define ALERTER_INFLIGHT_MAX 64
/* One attempt, connect included, must finish within this (SPEC §7: a timeout is a failure). */
#define ALERTER_ATTEMPT_TIMEOUT_MS 10000
#define ALERTER_CONNECT_TIMEOUT_MS 5000
/* A receiver's response body is read up to this and the transfer then cut short; the
 * status line already decides the outcome. */
#define ALERTER_RESP_BODY_MAX (64u << 10)
/* A Retry-After larger than this is clamped, so a hostile receiver cannot park a
 * delivery for ever. */
#define ALERTER_RETRY_AFTER_MAX_S 86400
/* Backoff jitter: each scheduled delay is moved by up to ± this percentage. */
#define ALERTER_JITTER_PCT 10

/* Payload bytes: every field is bounded by proto.h (ids <= 64 bytes, escaped at most
 * 6x), so the SPEC §7 JSON always fits; the builder still checks. */
#define ALERTER_BODY_MAX 4096
/* Last error text kept in an outbox record. */
#define ALERTER_ERR_MAX 127

/* Events fetched from a shard and not yet written to the outbox. */
#define ALERTER_PENDING_MAX PROTO_EVENTS_MAX
/* Org definitions (with their webhooks) cached from GET_ORG, and for how long. A short
 * life means a changed webhook list applies to the next event within seconds. */
#define ALERTER_ORG_CACHE_N 256
#define ALERTER_ORG_CACHE_MS 5000

/* Longest sleep in the loop: bounds how late a signal or a due record is noticed. NNG
 * completions wake the loop at once (curl_multi_wakeup). */
#define ALERTER_LOOP_WAIT_MS 100
/* On SIGTERM/SIGINT, attempts in flight get this long to finish and be recorded
 * before the process exits (the rest are retried after a restart). */
#define ALERTER_DRAIN_MS 3000

/* After an LMDB error, a shard's event processing pauses this long before retrying. */
#define ALERTER_DB_RETRY_MS 1000

/* Delivered and failed records are kept this long (for inspection), then swept. */
#define ALERTER_RETAIN_MS (7LL * 86400 * 1000)
#define ALERTER_SWEEP_EVERY_MS 60000
#define ALERTER_SWEEP_BATCH 1024

#endif
