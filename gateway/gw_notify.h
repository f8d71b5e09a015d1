/*
 * gw_notify.h — a client worker's subscriber to the shards' definition-change
 * notices (docs/contracts.md "Issue 5": topic "d" on every shard's PUB
 * socket), and the owner of the worker's pricing snapshot.
 *
 * Each client worker has one NNG SUB socket dialled to every shard's pub_url.
 * A notice names the route of a committed PUT/DELETE; on the worker's loop it
 * drops that entry from the worker's key cache ("key:<id>") or definition
 * cache ("org:<id>", "group:<org>/<id>"), or reloads the pricing overrides
 * ("pricing:<model>": LIST_PRICING on every shard, then gw_pricing_install).
 * A (re)connection to any shard's PUB drops both caches whole and reloads
 * pricing: notices may have been missed meanwhile. key_cache_ms stays the
 * backstop for a dropped notice. The pricing overrides are also loaded when
 * the worker starts; until that answer arrives the config's prices apply.
 *
 * Threads: NNG completes receives and pipe events on its own threads; they only
 * queue (under a mutex) and wake the loop with uv_async_send. Everything else
 * runs on the worker's loop.
 */
#ifndef GW_NOTIFY_H
#define GW_NOTIFY_H
#include <uv.h>
#include "cg_config.h"
#include "cg_err.h"
#include "gw_cache.h"
#include "gw_keycache.h"
#include "gw_ledger.h"

typedef struct gw_notify gw_notify;

/* Start on loop: dial every shard's PUB, load pricing. keys, defs and ledger are borrowed;
 * call gw_notify_close before any of them goes away. */
cg_err gw_notify_start(uv_loop_t *loop, const cg_config *cfg, gw_ledger *ledger, gw_keycache *keys,
                       gw_cache *defs, gw_notify **out);

/* Every notice's route (and NULL when notices may have been missed: everything may have
 * changed) is also passed to fn on the loop, after the caches were updated — the worker
 * retires its budget leases there (gw_lease_route_changed). */
void gw_notify_on_route(gw_notify *n, void (*fn)(void *ud, const char *route), void *ud);

/* Stop receiving and close the handles; the struct is freed once its ledger operations
 * have completed (freeing the ledger completes them). Loop thread; NULL is a no-op. */
void gw_notify_close(gw_notify *n);

#endif
