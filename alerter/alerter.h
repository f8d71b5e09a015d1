/*
 * alerter.h — the alerter process: follows every shard's event log and delivers
 * each event to its org's webhooks, durably and at least once (SPEC §7).
 *
 * One loop thread owns all state (cursors, pending events, org cache, outbox,
 * curl transfers). NNG threads only complete aios and wake the loop; see
 * alerter.c for the loop and the event-ordering rules.
 */
#ifndef ALERTER_H
#define ALERTER_H
#include <signal.h>
#include <stddef.h>
#include "cg_config.h"
#include "cg_err.h"

typedef struct alerter alerter;

/*
 * The alerter's own checks of cfg beyond cg_config_load: shards present, and the
 * smtp_* directives consistent when smtp_url is set. Returns CG_ERR_OK, or
 * CG_ERR_INVAL with a message naming the directive in msg.
 */
cg_err alerter_config_check(const cg_config *cfg, char *msg, size_t cap);

/*
 * Open <data_dir>/alerter, read the cursors, dial every shard (non-blocking: shards
 * that are down are picked up when they come up). cfg is borrowed and must outlive
 * the alerter; it needs at least one shard. curl_global_init must have been called.
 * Returns CG_ERR_INVAL without shards, CG_ERR_IO / CG_ERR_DB for the data directory,
 * an NNG-derived error for a bad shard URL.
 */
cg_err alerter_new(const cg_config *cfg, alerter **out);

/*
 * Run the loop on the calling thread until *stop becomes non-zero (a signal
 * handler sets it; it is seen within ALERTER_LOOP_WAIT_MS). Attempts in flight then
 * get up to ALERTER_DRAIN_MS to finish and be recorded; any still running are
 * abandoned by alerter_free: their records are still due and are retried after a
 * restart. Returns CG_ERR_OK, or an error when the loop cannot continue.
 */
cg_err alerter_run(alerter *a, const volatile sig_atomic_t *stop);

/* Close everything. Safe on NULL. */
void alerter_free(alerter *a);

#endif
