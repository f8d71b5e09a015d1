/*
 * gw_admin.h — the admin API (SPEC §5) served on its own listener.
 *
 * Runs on one dedicated loop in the gateway process (not the workers'), with
 * its own gw_ledger. Every request needs `Authorization: Bearer <admin token>`
 * compared in constant time. Errors in OpenAI shape (400 with the bad field
 * named, 401, 404, 405, 409, 503 ledger_unavailable).
 *
 * Endpoints (docs/contracts.md "Admin API JSON" and "Admin API additions"):
 * orgs (POST, GET with limit state, PATCH), keys (POST under an org, GET,
 * PATCH, DELETE, POST .../revoke), groups (POST, GET, PATCH, DELETE),
 * customer overrides (PUT, GET merged with the org's defaults, DELETE) and
 * usage totals summed over every shard. The route table is in gw_admin.c.
 */
#ifndef GW_ADMIN_H
#define GW_ADMIN_H
#include <uv.h>
#include "cg_config.h"
#include "cg_http.h"
#include "cg_ring.h"
#include "gw_ledger.h"

typedef struct gw_admin gw_admin;

/* Start listening on cfg->admin_listen on loop. cfg, ring and ledger are
 * borrowed and must outlive the admin server. Call on the loop thread. */
cg_err gw_admin_start(uv_loop_t *loop, const cg_config *cfg, const cg_ring *ring, gw_ledger *ledger,
                      gw_admin **out);
/* Stop listening and free (connections finish their current response). Loop thread. */
void gw_admin_stop(gw_admin *a);

/*
 * Paths answered without the admin token (contracts.md "Issues 6 and 7":
 * /metrics, /healthz, /readyz): before authorizing, every request is offered
 * to cb, which answers it and returns 1, or returns 0 to leave it to the
 * admin API. Set right after gw_admin_start, on the loop thread.
 */
typedef int (*gw_admin_open_cb)(cg_http_conn *c, const cg_http_req *req, void *ud);
void gw_admin_set_open_routes(gw_admin *a, gw_admin_open_cb cb, void *ud);

#endif
