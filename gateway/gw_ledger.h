/*
 * gw_ledger.h — the gateway's asynchronous client of the ledger shards.
 *
 * One gw_ledger per libuv loop (worker or admin loop). It owns one NNG REQ
 * socket per shard, dialled to the shard's req_url; each operation runs on its
 * own nng_ctx so many are in flight at once. NNG completes aios on its own
 * threads: results are handed back to the owning loop through a locked queue
 * and uv_async_send, so callbacks always run on the loop thread and never
 * touch loop state from an NNG thread.
 *
 * Operations submitted for one shard during one loop iteration travel as one
 * NNG message (a proto batch of up to GW_LEDGER_BATCH_OPS), sent from a
 * uv_check_t at the end of that iteration: no added delay at low load.
 *
 * Every operation has a deadline (ledger_timeout_ms from its submission; a
 * batch uses its earliest); a shard that does not answer in time yields
 * CG_ERR_TIMEOUT (for every operation of the batch), never a hang.
 */
#ifndef GW_LEDGER_H
#define GW_LEDGER_H
#include <stdint.h>
#include <uv.h>
#include "cg_config.h"
#include "cg_err.h"
#include "cg_ring.h"
#include "proto.h"

typedef struct gw_ledger gw_ledger;

/*
 * Result of one operation, on the loop thread. err is the transport outcome:
 * CG_ERR_OK with rep set (rep->status is the shard's answer), or CG_ERR_TIMEOUT /
 * CG_ERR_UNAVAILABLE / CG_ERR_PROTO / CG_ERR_SHUTDOWN with rep NULL. rep (and
 * the events array inside) is valid only during the callback.
 */
typedef void (*gw_ledger_cb)(cg_err err, const proto_rep *rep, void *ud);

/* Create for loop; dials every shard of cfg (non-blocking dial, reconnects by itself).
 * cfg and ring are borrowed and must outlive the client. Call on the loop thread. */
cg_err gw_ledger_new(uv_loop_t *loop, const cg_config *cfg, const cg_ring *ring, gw_ledger **out);

/* Close sockets; pending operations complete with CG_ERR_SHUTDOWN (callbacks run
 * before this returns or on the next loop turn). Frees when the last one is done.
 * Call on the loop thread. */
void gw_ledger_free(gw_ledger *l);

/* Send req to the shard that owns req->route (ring lookup). req is copied.
 * Returns CG_ERR_OK if submitted (cb will be called exactly once), else an
 * error (cb not called): CG_ERR_INVAL for an empty route, CG_ERR_UNAVAILABLE
 * when the in-flight bound (GW_LEDGER_INFLIGHT_MAX) is reached. */
cg_err gw_ledger_submit(gw_ledger *l, const proto_req *req, gw_ledger_cb cb, void *ud);
/* Same, to an explicit shard index (PING, EVENTS_SINCE). */
cg_err gw_ledger_submit_to(gw_ledger *l, uint16_t shard, const proto_req *req, gw_ledger_cb cb,
                           void *ud);

#define GW_LEDGER_INFLIGHT_MAX 65536
#define GW_LEDGER_BATCH_OPS 128 /* operations per message at most (<= PROTO_BATCH_MAX) */

#endif
