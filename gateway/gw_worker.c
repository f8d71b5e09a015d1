/*
 * gw_worker.c — a gateway thread: loop, listener, routes, shutdown
 * (see gw_worker.h).
 *
 * Shutdown phases of a client worker, all on its loop:
 *   RUNNING → (stop async) DRAINING: listener closed, requests finish
 *           → (drain_ms) FORCING: upstream transfers stopped, ledger grace
 *           → FINISHED: ledger client freed (its pending calls complete with
 *             SHUTDOWN), curl multi closed, own handles closed.
 * FINISHED is always entered from a timer callback, never from inside a
 * ledger or curl callback, because it frees the objects those run in.
 */
#include "gw_worker.h"

#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include "cg_http.h"
#include "cg_log.h"
#include "gw_admin.h"
#include "gw_body.h"
#include "gw_estimate.h"
#include "gw_ledger.h"
#include "gw_metrics.h"
#include "gw_notify.h"
#include "gw_proxy.h"
#include "gw_upstream.h"

/* Extra time the ledger gets after the transfers were stopped, beyond ledger_timeout_ms. */
#define GW_FORCE_GRACE_MS 1000u

typedef enum gw_worker_phase {
    GW_W_RUNNING = 0,
    GW_W_DRAINING,
    GW_W_FORCING,
    GW_W_FINISHED,
} gw_worker_phase;

struct gw_worker {
    gw_worker_kind kind;
    uint32_t index;
    const cg_config *cfg;
    const cg_ring *ring;
    uint32_t drain_ms;
    uv_thread_t thread;
    uv_sem_t ready;
    cg_err start_err;
    uv_loop_t loop;
    uv_async_t stop_async;
    uv_timer_t timer; /* drain, grace, then the deferred finish */
    cg_http_server *server;
    gw_admin *admin;
    gw_ledger *ledger;
    gw_notify *notify; /* client workers: definition-change notices, pricing */
    gw_proxy_env env;
    uint8_t env_ready;
    uint8_t phase; /* gw_worker_phase */
    atomic_int stop_sent;
};

/* ---- /readyz ---- */

/*
 * One readiness probe. References: the starting flow and one per PING in
 * flight. The client may leave only while a PING is in flight (the answer is
 * sent when the last one returns), so the abort callback always finds r alive.
 */
typedef struct gw_readyz {
    gw_worker *w;
    cg_http_conn *conn; /* NULL once answered or the client left */
    int refs;
    uint16_t waiting;             /* PINGs in flight, +1 while submitting */
    uint8_t state[CG_SHARDS_MAX]; /* 0 pending, 1 ok, 2 failed */
} gw_readyz;

/* Per-PING context: which shard of which probe. */
typedef struct gw_readyz_ping {
    gw_readyz *r;
    uint16_t shard;
} gw_readyz_ping;

static void gw_readyz_unref(gw_readyz *r)
{
    if (--r->refs == 0) {
        free(r);
    }
}

static void gw_readyz_answer(gw_readyz *r)
{
    const cg_config *cfg = r->w->cfg;
    int ready = 1;
    cJSON *root = cJSON_CreateObject();
    cJSON *shards = cJSON_AddObjectToObject(root, "shards");
    for (uint32_t i = 0; i < cfg->shard_n; i++) {
        ready &= r->state[i] == 1;
        cJSON_AddStringToObject(shards, cfg->shards[i].name, r->state[i] == 1 ? "ok" : "down");
    }
    cJSON_AddStringToObject(root, "status", ready ? "ready" : "unavailable");
    char *body = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (body == NULL) {
        cg_http_respond_error(r->conn, 503, "service_unavailable", "overloaded", "Out of memory.",
                              NULL);
    } else {
        cg_http_respond(r->conn, ready ? 200 : 503, NULL, "application/json", body, strlen(body));
        cJSON_free(body);
    }
    r->conn = NULL;
}

static void gw_readyz_settle(gw_readyz *r)
{
    if (--r->waiting == 0 && r->conn != NULL) {
        gw_readyz_answer(r);
    }
}

static void gw_readyz_pong_cb(cg_err err, const proto_rep *rep, void *ud)
{
    gw_readyz_ping *pg = ud;
    gw_readyz *r = pg->r;
    r->state[pg->shard] = (err == CG_ERR_OK && rep->status == CG_ERR_OK) ? 1 : 2;
    free(pg);
    gw_readyz_settle(r);
    gw_readyz_unref(r);
}

static void gw_readyz_abort_cb(cg_http_conn *c, void *ud)
{
    (void)c;
    gw_readyz *r = ud;
    r->conn = NULL;
}

static void gw_readyz_start(gw_worker *w, cg_http_conn *c)
{
    gw_readyz *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        cg_http_respond_error(c, 503, "service_unavailable", "overloaded", "Out of memory.", NULL);
        return;
    }
    r->w = w;
    r->conn = c;
    r->refs = 1;
    r->waiting = 1;
    cg_http_conn_set_callbacks(c, gw_readyz_abort_cb, NULL, r);
    for (uint32_t i = 0; i < w->cfg->shard_n; i++) {
        proto_req rq;
        memset(&rq, 0, sizeof(rq));
        rq.op = PROTO_OP_PING;
        gw_readyz_ping *pg = malloc(sizeof(*pg));
        cg_err err = CG_ERR_NOMEM;
        if (pg != NULL && w->ledger != NULL) {
            pg->r = r;
            pg->shard = (uint16_t)i;
            r->refs++;
            r->waiting++;
            err = gw_ledger_submit_to(w->ledger, (uint16_t)i, &rq, gw_readyz_pong_cb, pg);
            if (err != CG_ERR_OK) {
                r->refs--;
                r->waiting--;
            }
        }
        if (err != CG_ERR_OK) {
            free(pg);
            r->state[i] = 2;
        }
    }
    gw_readyz_settle(r);
    gw_readyz_unref(r);
}

/* ---- routes ---- */

/* GET /metrics: the process's registry in Prometheus text. */
static void gw_worker_metrics(cg_http_conn *c)
{
    char *txt = NULL;
    size_t n = 0;
    cg_metrics *m = gw_metrics_registry();
    if (m == NULL || cg_metrics_render(m, &txt, &n) != CG_ERR_OK) {
        cg_http_respond_error(c, 503, "service_unavailable", "overloaded", "Out of memory.", NULL);
        return;
    }
    cg_http_respond(c, 200, NULL, CG_METRICS_CONTENT_TYPE, txt, n);
    free(txt);
}

/* The admin listener's token-free paths (contracts.md "Issues 6 and 7"); 1 if answered. */
static int gw_worker_admin_open_cb(cg_http_conn *c, const cg_http_req *req, void *ud)
{
    static const char ok_body[] = "{\"status\":\"ok\"}";
    gw_worker *w = ud;
    int metrics = strcmp(req->path, "/metrics") == 0;
    int health = strcmp(req->path, "/healthz") == 0;
    int ready = strcmp(req->path, "/readyz") == 0;
    if (!metrics && !health && !ready) {
        return 0;
    }
    if (strcmp(req->method, "GET") != 0) {
        cg_http_respond_error(c, 405, "invalid_request_error", "method_not_allowed",
                              "Only GET is served on this path.", "Allow: GET\r\n");
    } else if (metrics) {
        gw_worker_metrics(c);
    } else if (health) {
        cg_http_respond(c, 200, NULL, "application/json", ok_body, sizeof(ok_body) - 1);
    } else if (w->phase != GW_W_RUNNING) {
        cg_http_respond_error(c, 503, "service_unavailable", "shutting_down", "Shutting down.",
                              NULL);
    } else {
        gw_readyz_start(w, c);
    }
    return 1;
}

static void gw_worker_handle(cg_http_conn *c, const cg_http_req *req, void *ud)
{
    static const char ok_body[] = "{\"status\":\"ok\"}";
    gw_worker *w = ud;
    const char *allow = NULL;
    int known = 0;
    int ep = gw_endpoint_of(req->method, req->path, &known);
    if (ep >= 0) {
        gw_proxy_start(&w->env, c, req, ep);
        return;
    }
    if (known) {
        allow = strcmp(req->path, "/v1/models") == 0 ? "Allow: GET\r\n" : "Allow: POST\r\n";
    } else if (strcmp(req->path, "/healthz") == 0) {
        if (strcmp(req->method, "GET") == 0) {
            cg_http_respond(c, 200, NULL, "application/json", ok_body, sizeof(ok_body) - 1);
            return;
        }
        allow = "Allow: GET\r\n";
    } else if (strcmp(req->path, "/readyz") == 0) {
        if (strcmp(req->method, "GET") == 0) {
            gw_readyz_start(w, c);
            return;
        }
        allow = "Allow: GET\r\n";
    }
    char msg[160];
    if (allow != NULL) {
        snprintf(msg, sizeof(msg), "Method %.16s is not allowed on %.100s.", req->method,
                 req->path);
        cg_http_respond_error(c, 405, "invalid_request_error", "method_not_allowed", msg, allow);
        return;
    }
    snprintf(msg, sizeof(msg), "Unknown request URL: %.16s %.100s.", req->method, req->path);
    cg_http_respond_error(c, 404, "invalid_request_error", "not_found", msg, NULL);
}
/* ---- lifecycle ---- */

static void gw_worker_handle_closed_cb(uv_handle_t *h)
{
    (void)h;
}

/* Free the ledger client and the curl multi, close own handles. Loop callbacks only,
 * never from inside a ledger or curl callback (see the file header). */
static void gw_worker_finish(gw_worker *w)
{
    if (w->phase == GW_W_FINISHED) {
        return;
    }
    w->phase = GW_W_FINISHED;
    w->env.closing = 1;
    w->env.on_idle = NULL;
    if (w->kind != GW_WORKER_ADMIN && w->env_ready) {
        gw_lease_close(&w->env);
    }
    if (w->server != NULL) {
        cg_http_server_close(w->server);
        w->server = NULL;
    }
    if (w->admin != NULL) {
        gw_admin_stop(w->admin);
        w->admin = NULL;
    }
    if (w->notify != NULL) {
        gw_notify_close(w->notify); /* before the ledger: its loads complete on ledger free */
        w->notify = NULL;
    }
    if (w->ledger != NULL) {
        /* Cleared first: callbacks run from gw_ledger_free must not submit again. */
        gw_ledger *l = w->ledger;
        w->ledger = NULL;
        w->env.ledger = NULL;
        gw_ledger_free(l);
    }
    if (w->env.upstream != NULL) {
        gw_upstream *u = w->env.upstream;
        w->env.upstream = NULL;
        gw_upstream_close(u);
    }
    uv_close((uv_handle_t *)&w->stop_async, gw_worker_handle_closed_cb);
    uv_close((uv_handle_t *)&w->timer, gw_worker_handle_closed_cb);
}

static void gw_worker_finish_cb(uv_timer_t *t)
{
    gw_worker_finish(t->data);
}

/* The last request finished: finish on the next loop turn (we may be inside a callback). */
static void gw_worker_idle_cb(void *ud)
{
    gw_worker *w = ud;
    if (w->phase == GW_W_DRAINING || w->phase == GW_W_FORCING) {
        uv_timer_start(&w->timer, gw_worker_finish_cb, 0, 0);
    }
}

/* A definition changed on a shard: the worker's leases under it are retired. */
static void gw_worker_route_changed(void *ud, const char *route)
{
    gw_worker *w = ud;
    gw_lease_route_changed(&w->env, route);
}

static void gw_worker_drain_cb(uv_timer_t *t)
{
    gw_worker *w = t->data;
    char n[16];
    snprintf(n, sizeof(n), "%u", w->env.active_n);
    cg_log(CG_LOG_WARN, "drain timeout: stopping requests in flight", "requests", n, NULL);
    w->phase = GW_W_FORCING;
    uv_timer_start(&w->timer, gw_worker_finish_cb,
                   (uint64_t)w->cfg->ledger_timeout_ms + GW_FORCE_GRACE_MS, 0);
    gw_proxy_cancel_all(&w->env);
}

static void gw_worker_stop_cb(uv_async_t *a)
{
    gw_worker *w = a->data;
    if (w->phase != GW_W_RUNNING) {
        return;
    }
    w->phase = GW_W_DRAINING;
    if (w->server != NULL) {
        cg_http_server_close(w->server);
        w->server = NULL;
    }
    if (w->kind != GW_WORKER_ADMIN && w->env_ready) {
        gw_lease_shutdown(&w->env); /* final settles count in active_n */
    }
    if (w->kind == GW_WORKER_ADMIN || w->env.active_n == 0) {
        gw_worker_finish(w);
        return;
    }
    uv_timer_start(&w->timer, gw_worker_drain_cb, w->drain_ms, 0);
}

static cg_err gw_worker_setup(gw_worker *w)
{
    const cg_config *cfg = w->cfg;
    uv_async_init(&w->loop, &w->stop_async, gw_worker_stop_cb);
    w->stop_async.data = w;
    uv_timer_init(&w->loop, &w->timer);
    w->timer.data = w;
    cg_err err = gw_ledger_new(&w->loop, cfg, w->ring, &w->ledger);
    if (err != CG_ERR_OK) {
        return err;
    }
    if (w->kind == GW_WORKER_ADMIN) {
        err = gw_admin_start(&w->loop, cfg, w->ring, w->ledger, &w->admin);
        if (err == CG_ERR_OK) {
            gw_admin_set_open_routes(w->admin, gw_worker_admin_open_cb, w);
        }
        return err;
    }
    err = gw_proxy_env_init(&w->env, &w->loop, cfg);
    w->env_ready = 1;
    if (err != CG_ERR_OK) {
        return err;
    }
    w->env.ledger = w->ledger;
    w->env.on_idle = gw_worker_idle_cb;
    w->env.on_idle_ud = w;
    err = gw_upstream_new(&w->loop, cfg->conns_max, cfg->upstream_client == CG_UPSTREAM_BUILTIN,
                          &w->env.upstream);
    if (err != CG_ERR_OK) {
        return err;
    }
    err = gw_notify_start(&w->loop, cfg, w->ledger, &w->env.keys, &w->env.defs, &w->notify);
    if (err != CG_ERR_OK) {
        return err;
    }
    gw_notify_on_route(w->notify, gw_worker_route_changed, w);
    cg_http_opts o = {
        .body_max_bytes = cfg->body_max_bytes,
        .header_max_bytes = cfg->header_max_bytes,
        .request_timeout_ms = cfg->request_timeout_ms,
        .idle_timeout_ms = 0,
        .conns_max = cfg->conns_max,
    };
    return cg_http_listen(&w->loop, cfg->listen, 1, &o, gw_worker_handle, w, &w->server);
}

static void gw_worker_main(void *arg)
{
    gw_worker *w = arg;
    char idx[16];
    snprintf(idx, sizeof(idx), "%u", w->index);
    const char *what = w->kind == GW_WORKER_ADMIN ? "admin" : "worker";
    if (uv_loop_init(&w->loop) != 0) {
        w->start_err = CG_ERR_INTERNAL;
        uv_sem_post(&w->ready);
        return;
    }
    cg_err err = gw_worker_setup(w);
    if (err != CG_ERR_OK) {
        cg_log(CG_LOG_ERROR, "cannot start", "thread", what, "index", idx, "error",
               cg_err_name(err), "listen",
               w->kind == GW_WORKER_ADMIN ? w->cfg->admin_listen : w->cfg->listen, NULL);
        gw_worker_finish(w);
    } else {
        cg_log(CG_LOG_INFO, "listening", "thread", what, "index", idx, "listen",
               w->kind == GW_WORKER_ADMIN ? w->cfg->admin_listen : w->cfg->listen, NULL);
    }
    w->start_err = err;
    uv_sem_post(&w->ready);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&w->loop) != 0) {
        cg_log(CG_LOG_ERROR, "loop still has handles at exit", "thread", what, "index", idx, NULL);
    }
    if (w->env_ready) {
        gw_proxy_env_fini(&w->env);
    }
    gw_pricing_thread_fini();
    cg_log(CG_LOG_INFO, "stopped", "thread", what, "index", idx, NULL);
}

cg_err gw_worker_start(const cg_config *cfg, const cg_ring *ring, gw_worker_kind kind,
                       uint32_t index, uint32_t drain_ms, gw_worker **out)
{
    gw_worker *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return CG_ERR_NOMEM;
    }
    w->kind = kind;
    w->index = index;
    w->cfg = cfg;
    w->ring = ring;
    w->drain_ms = drain_ms;
    if (uv_sem_init(&w->ready, 0) != 0) {
        free(w);
        return CG_ERR_INTERNAL;
    }
    if (uv_thread_create(&w->thread, gw_worker_main, w) != 0) {
        uv_sem_destroy(&w->ready);
        free(w);
        return CG_ERR_INTERNAL;
    }
    uv_sem_wait(&w->ready);
    if (w->start_err != CG_ERR_OK) {
        cg_err err = w->start_err;
        uv_thread_join(&w->thread);
        uv_sem_destroy(&w->ready);
        free(w);
        return err;
    }
    *out = w;
    return CG_ERR_OK;
}

void gw_worker_stop(gw_worker *w)
{
    /* Only one send: after the worker finished, its async handle is closed. */
    if (atomic_exchange(&w->stop_sent, 1) == 0) {
        uv_async_send(&w->stop_async);
    }
}

void gw_worker_join(gw_worker *w)
{
    uv_thread_join(&w->thread);
    uv_sem_destroy(&w->ready);
    free(w);
}
