/*
 * gw_notify.c — definition-change notices and pricing reloads of a client
 * worker (contract: gw_notify.h).
 *
 * Life: started in the worker's setup; closed in its finish before the ledger
 * client is freed. Close stops the receive aio (waiting for a running
 * callback), closes the socket, then the uv handles; the struct is freed when
 * both handles are closed and no LIST_PRICING is in flight (refs == 0).
 */
#include "gw_notify.h"

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <stdlib.h>
#include <string.h>

#include "cg_log.h"
#include "gw_estimate.h"
#include "proto.h"

#define GW_NOTIFY_QUEUE 256          /* notices queued between two loop turns; more: reset */
#define GW_NOTIFY_RETRY_MS 1000      /* a failed pricing load is retried after this */
#define GW_NOTIFY_GUARD_SLACK_MS 500 /* beyond ledger_timeout_ms (loop turn, batching) */
#define GW_NOTIFY_RECONN_MIN_MS 50
#define GW_NOTIFY_RECONN_MAX_MS 1000

struct gw_notify {
    uv_loop_t *loop;
    const cg_config *cfg;
    gw_ledger *ledger;
    gw_keycache *keys;
    gw_cache *defs;
    nng_socket sock;
    nng_aio *aio;
    int sock_open;
    uv_async_t async;
    uv_timer_t retry;
    int refs; /* open handles (2) + pricing loads in flight */
    void (*on_route)(void *ud, const char *route);
    void *on_route_ud;
    int closing;
    /* Shared with NNG threads (mu). */
    uv_mutex_t mu;
    uint32_t qn;
    int reset;
    char q[GW_NOTIFY_QUEUE][PROTO_ROUTE_MAX + 1];
    /* Pricing load (loop thread). */
    uint64_t load_gen;  /* the newest load; replies of older ones are ignored */
    uint32_t load_left; /* shard replies still to come for load_gen */
    int load_failed;    /* a shard of load_gen failed */
    uint32_t item_n;
    proto_pricing *items; /* shard_n * PROTO_PRICING_MAX */
};

typedef struct gw_notify_load {
    gw_notify *n;
    uint64_t gen;
} gw_notify_load;

static void gw_notify_unref(gw_notify *n)
{
    if (--n->refs == 0) {
        uv_mutex_destroy(&n->mu);
        free(n->items);
        free(n);
    }
}

/* ---- NNG threads ---- */

static void gw_notify_recv_cb(void *arg)
{
    gw_notify *n = arg;
    int rv = nng_aio_result(n->aio);
    char shard[PROTO_SHARD_MAX + 1], route[PROTO_ROUTE_MAX + 1];

    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
        return;
    }
    if (rv == 0) {
        nng_msg *m = nng_aio_get_msg(n->aio);
        cg_err e = proto_notice_decode(nng_msg_body(m), nng_msg_len(m), shard, route);
        nng_msg_free(m);
        uv_mutex_lock(&n->mu);
        if (e != CG_ERR_OK) {
            /* Not a notice we understand: drop everything rather than keep a stale entry. */
            n->reset = 1;
        } else if (n->qn == GW_NOTIFY_QUEUE) {
            n->reset = 1;
        } else {
            memcpy(n->q[n->qn++], route, sizeof(route));
        }
        uv_mutex_unlock(&n->mu);
        uv_async_send(&n->async);
    }
    nng_recv_aio(n->sock, n->aio);
}

static void gw_notify_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    gw_notify *n = arg;
    (void)p;
    (void)ev;
    uv_mutex_lock(&n->mu);
    n->reset = 1;
    uv_mutex_unlock(&n->mu);
    uv_async_send(&n->async);
}

/* ---- pricing loads (loop) ---- */

static void gw_notify_load_start(gw_notify *n);

static void gw_notify_retry_cb(uv_timer_t *t)
{
    gw_notify *n = t->data;
    if (!n->closing) {
        gw_notify_load_start(n);
    }
}

static void gw_notify_load_cb(cg_err err, const proto_rep *rep, void *ud)
{
    gw_notify_load *ld = ud;
    gw_notify *n = ld->n;
    uint64_t gen = ld->gen;

    free(ld);
    if (gen == n->load_gen && !n->closing) {
        if (err != CG_ERR_OK || rep->status != CG_ERR_OK) {
            n->load_failed = 1;
        } else {
            for (uint32_t i = 0; i < rep->u.list_pricing.n; i++) {
                n->items[n->item_n++] = rep->u.list_pricing.items[i];
            }
        }
        if (--n->load_left == 0) {
            if (n->load_failed) {
                cg_log(CG_LOG_WARN, "pricing overrides not loaded; retrying", NULL);
                uv_timer_start(&n->retry, gw_notify_retry_cb, GW_NOTIFY_RETRY_MS, 0);
            } else if (gw_pricing_install(n->cfg, n->items, n->item_n) != CG_ERR_OK) {
                uv_timer_start(&n->retry, gw_notify_retry_cb, GW_NOTIFY_RETRY_MS, 0);
            }
        }
    }
    gw_notify_unref(n);
}

/* LIST_PRICING on every shard; a newer load supersedes one in flight. */
static void gw_notify_load_start(gw_notify *n)
{
    proto_req req;

    memset(&req, 0, sizeof(req));
    req.op = PROTO_OP_LIST_PRICING;
    n->load_gen++;
    n->load_left = n->cfg->shard_n;
    n->load_failed = 0;
    n->item_n = 0;
    uv_timer_stop(&n->retry);
    for (uint32_t s = 0; s < n->cfg->shard_n; s++) {
        gw_notify_load *ld = malloc(sizeof(*ld));
        if (ld == NULL) {
            n->load_failed = 1;
            n->load_left--;
            continue;
        }
        ld->n = n;
        ld->gen = n->load_gen;
        if (gw_ledger_submit_to(n->ledger, (uint16_t)s, &req, gw_notify_load_cb, ld) != CG_ERR_OK) {
            free(ld);
            n->load_failed = 1;
            n->load_left--;
            continue;
        }
        n->refs++;
    }
    if (n->load_left == 0) {
        uv_timer_start(&n->retry, gw_notify_retry_cb, GW_NOTIFY_RETRY_MS, 0);
    }
}

/* ---- notices (loop) ---- */

static void gw_notify_apply(gw_notify *n, const char *route, int *reload)
{
    char org[PROTO_ID_MAX + 1];
    const char *slash;

    if (strncmp(route, "key:", 4) == 0) {
        gw_keycache_drop(n->keys, route + 4);
    } else if (strncmp(route, "org:", 4) == 0) {
        gw_cache_drop_org(n->defs, route + 4);
    } else if (strncmp(route, "group:", 6) == 0 && (slash = strrchr(route + 6, '/')) != NULL &&
               (size_t)(slash - (route + 6)) < sizeof(org)) {
        memcpy(org, route + 6, (size_t)(slash - (route + 6)));
        org[slash - (route + 6)] = '\0';
        gw_cache_drop_group(n->defs, org, slash + 1);
    } else if (strncmp(route, "pricing:", 8) == 0) {
        *reload = 1;
    }
    /* customer: overrides live only on their shard; the gateway caches none. */
}

static void gw_notify_async_cb(uv_async_t *a)
{
    gw_notify *n = a->data;
    static _Thread_local char routes[GW_NOTIFY_QUEUE][PROTO_ROUTE_MAX + 1];
    uint32_t qn;
    int reset, reload = 0;

    uv_mutex_lock(&n->mu);
    qn = n->qn;
    reset = n->reset;
    memcpy(routes, n->q, sizeof(routes[0]) * qn);
    n->qn = 0;
    n->reset = 0;
    uv_mutex_unlock(&n->mu);
    if (n->closing) {
        return;
    }
    if (reset) {
        gw_keycache_clear(n->keys);
        gw_cache_clear(n->defs);
        reload = 1;
        if (n->on_route != NULL) {
            n->on_route(n->on_route_ud, NULL);
        }
    } else {
        for (uint32_t i = 0; i < qn; i++) {
            gw_notify_apply(n, routes[i], &reload);
            if (n->on_route != NULL) {
                n->on_route(n->on_route_ud, routes[i]);
            }
        }
    }
    if (reload) {
        gw_notify_load_start(n);
    }
}

/* ---- lifecycle ---- */

void gw_notify_on_route(gw_notify *n, void (*fn)(void *ud, const char *route), void *ud)
{
    n->on_route = fn;
    n->on_route_ud = ud;
}

static void gw_notify_closed_cb(uv_handle_t *h)
{
    gw_notify_unref(h->data);
}

cg_err gw_notify_start(uv_loop_t *loop, const cg_config *cfg, gw_ledger *ledger, gw_keycache *keys,
                       gw_cache *defs, gw_notify **out)
{
    gw_notify *n = calloc(1, sizeof(*n));
    int rv;

    if (n == NULL || (n->items = calloc((size_t)cfg->shard_n * PROTO_PRICING_MAX,
                                        sizeof(proto_pricing))) == NULL) {
        free(n);
        return CG_ERR_NOMEM;
    }
    n->loop = loop;
    n->cfg = cfg;
    n->ledger = ledger;
    n->keys = keys;
    n->defs = defs;
    /* A lookup answers within ledger_timeout_ms of its start: past that after a drop, no
     * answer read before the change can still arrive and be cached. */
    gw_keycache_set_guard(keys, cfg->ledger_timeout_ms + GW_NOTIFY_GUARD_SLACK_MS);
    gw_cache_set_guard(defs, cfg->ledger_timeout_ms + GW_NOTIFY_GUARD_SLACK_MS);
    if (uv_mutex_init(&n->mu) != 0) {
        free(n->items);
        free(n);
        return CG_ERR_INTERNAL;
    }
    uv_async_init(loop, &n->async, gw_notify_async_cb);
    n->async.data = n;
    uv_timer_init(loop, &n->retry);
    n->retry.data = n;
    n->refs = 2;
    *out = n;
    if ((rv = nng_sub0_open(&n->sock)) != 0) {
        goto fail;
    }
    n->sock_open = 1;
    nng_socket_set_size(n->sock, NNG_OPT_RECVMAXSZ, PROTO_MSG_MAX_BYTES);
    nng_socket_set_ms(n->sock, NNG_OPT_RECONNMINT, GW_NOTIFY_RECONN_MIN_MS);
    nng_socket_set_ms(n->sock, NNG_OPT_RECONNMAXT, GW_NOTIFY_RECONN_MAX_MS);
    if ((rv = nng_socket_set(n->sock, NNG_OPT_SUB_SUBSCRIBE, PROTO_PUB_TOPIC_NOTICE,
                             sizeof(PROTO_PUB_TOPIC_NOTICE) - 1)) != 0 ||
        (rv = nng_pipe_notify(n->sock, NNG_PIPE_EV_ADD_POST, gw_notify_pipe_cb, n)) != 0 ||
        (rv = nng_aio_alloc(&n->aio, gw_notify_recv_cb, n)) != 0) {
        goto fail;
    }
    for (uint32_t i = 0; i < cfg->shard_n; i++) {
        if ((rv = nng_dial(n->sock, cfg->shards[i].pub_url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
            cg_log(CG_LOG_ERROR, "cannot dial shard pub", "shard", cfg->shards[i].name, "url",
                   cfg->shards[i].pub_url, "nng", nng_strerror(rv), NULL);
            goto fail;
        }
    }
    nng_recv_aio(n->sock, n->aio);
    gw_notify_load_start(n);
    return CG_ERR_OK;
fail:
    cg_log(CG_LOG_ERROR, "notice subscriber failed", "nng", nng_strerror(rv), NULL);
    gw_notify_close(n);
    *out = NULL;
    return CG_ERR_INTERNAL;
}

void gw_notify_close(gw_notify *n)
{
    if (n == NULL || n->closing) {
        return;
    }
    n->closing = 1;
    if (n->aio != NULL) {
        nng_aio_stop(n->aio); /* waits for a running receive callback */
    }
    if (n->sock_open) {
        nng_close(n->sock);
        n->sock_open = 0;
    }
    if (n->aio != NULL) {
        nng_aio_free(n->aio);
        n->aio = NULL;
    }
    uv_timer_stop(&n->retry);
    uv_close((uv_handle_t *)&n->async, gw_notify_closed_cb);
    uv_close((uv_handle_t *)&n->retry, gw_notify_closed_cb);
}
