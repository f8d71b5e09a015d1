/*
 * gw_ledger.c — asynchronous ledger client for one libuv loop (contract in gw_ledger.h).
 *
 * Structure. Each shard has one NNG REQ socket, dialled without blocking
 * (NNG reconnects by itself). An operation travels in a "flight": one
 * nng_ctx + nng_aio carrying one NNG message, i.e. one encoded batch of
 * 1..GW_LEDGER_BATCH_OPS operations for one shard.
 *
 * Batching without added delay (DESIGN.md). A submit encodes its operation at
 * once (proto_req_encode_op) into its shard's open batch (s->fill, s->body);
 * a uv_check_t — which runs right after the loop's I/O callbacks, where
 * submits happen — frames each open batch (proto_req_batch_prefix) and sends
 * it as one message. At low load a batch holds one operation and leaves in
 * the iteration that submitted it; under load batches grow by themselves.
 * While a batch is open a uv_idle_t is active too, so a submit made after the
 * check phase (a close or check callback) never lets the loop block in poll
 * before it is sent. A batch also leaves at once when it reaches
 * GW_LEDGER_BATCH_OPS operations or GW_LEDGER_BATCH_BYTES encoded bytes, and
 * EVENTS_SINCE (large replies) always travels alone, so a reply stays far
 * below PROTO_MSG_MAX_BYTES. The batch's deadline is its first (earliest)
 * operation's; on any transport failure every operation of the batch gets the
 * same error, and the reply's results go to the callbacks in submission order.
 *
 * Threads. A flight is owned by the loop thread until gw_flight_launch calls
 * nng_ctx_send; from then on only NNG's callback (gw_flight_cb, on an NNG
 * thread) touches it, until it pushes the flight onto the locked done queue
 * and wakes the loop with uv_async_send. The loop drains the queue
 * (gw_ledger_async_cb), waits for the NNG callback to have returned
 * (nng_aio_wait), decodes nothing more, invokes the user callbacks and puts
 * the flight back into its shard's pool. The `active` list (every flight not
 * in a pool) is touched by the loop thread only.
 *
 * Invariants:
 *  - every submitted operation's callback runs exactly once, on the loop thread;
 *  - a flight's deadline is ledger_timeout_ms from submission, covering both the
 *    wait for a connected pipe (send) and the reply (recv): no operation hangs;
 *  - the REQ resend timer is disabled, so a slow shard never sees a request twice
 *    from a timer (the deadline, not a retry, ends a request);
 *  - operations in flight <= GW_LEDGER_INFLIGHT_MAX; idle flights kept per shard
 *    <= GW_LEDGER_POOL_MAX.
 */
#include "gw_ledger.h"
#include "gw_metrics.h"

#include <assert.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "cg_clock.h"
#include "cg_log.h"

#define GW_LEDGER_FLIGHT_OPS GW_LEDGER_BATCH_OPS
#define GW_LEDGER_BATCH_BYTES (256u << 10) /* an open batch leaves once it encodes this much */
#define GW_LEDGER_BODY_KEEP (64u << 10)    /* keep a shard's encode buffer up to this size */
#define GW_LEDGER_POOL_MAX 128             /* idle flights (ctx + aio) kept per shard for reuse */
#define GW_LEDGER_RECONN_MIN_MS 50         /* first redial delay after a lost connection */
#define GW_LEDGER_RECONN_MAX_MS 1000       /* redial back-off ceiling */

_Static_assert(GW_LEDGER_FLIGHT_OPS <= PROTO_BATCH_MAX, "flight larger than a proto batch");

typedef enum gw_flight_state {
    GW_FLIGHT_IDLE = 0, /* in a pool, or the open batch of its shard (loop thread) */
    GW_FLIGHT_SEND,     /* nng_ctx_send pending (waits for a connected pipe) */
    GW_FLIGHT_RECV,     /* nng_ctx_recv pending (waits for the reply) */
    GW_FLIGHT_DONE,     /* on the done queue or being delivered */
} gw_flight_state;

typedef struct gw_ledger_op {
    uint8_t op;      /* proto_op, checked against the reply */
    gw_ledger_cb cb; /* NULL once invoked */
    void *ud;
} gw_ledger_op;

typedef struct gw_ledger_shard gw_ledger_shard;

typedef struct gw_flight {
    gw_ledger *l;
    gw_ledger_shard *shard;
    nng_ctx ctx;
    nng_aio *aio;
    struct gw_flight *next;                /* pool or done queue link */
    struct gw_flight *act_prev, *act_next; /* active list, loop thread only */
    gw_flight_state state;
    int64_t deadline_ms; /* cg_mono_ms() time the flight gives up (its first op's) */
    cg_err err;          /* transport outcome, set by the NNG callback */
    int nng_rv;          /* original NNG code, for the log */
    proto_rep *reps;     /* decoded reply (heap), rep_n entries */
    uint32_t rep_n;
    uint32_t op_n; /* 1..GW_LEDGER_FLIGHT_OPS */
    gw_ledger_op ops[GW_LEDGER_FLIGHT_OPS];
} gw_flight;

struct gw_ledger_shard {
    uint16_t index;
    int open; /* sock valid */
    nng_socket sock;
    gw_flight *pool; /* idle flights, loop thread only */
    uint32_t pool_n;
    gw_flight *fill;      /* the open batch (NULL: none), on the active list */
    msgpack_sbuffer body; /* fill's operations, encoded back to back */
};

struct gw_ledger {
    uv_loop_t *loop;
    const cg_config *cfg;
    const cg_ring *ring;
    uv_async_t async;
    uv_check_t check;    /* flushes the open batches after the I/O callbacks */
    uv_idle_t idle;      /* active while a batch is open: poll does not block */
    int handles_open;    /* of async, check, idle; the last close frees the client */
    uint32_t fill_n;     /* shards with an open batch */
    msgpack_sbuffer hdr; /* batch prefix scratch */
    uv_mutex_t mu;       /* guards done_head / done_tail */
    gw_flight *done_head;
    gw_flight *done_tail;
    gw_flight *active; /* flights out of the pools; loop thread only */
    uint32_t inflight; /* operations submitted and not yet delivered */
    int closing;
    uint16_t shard_n;
    /* Money operations (RESERVE, SETTLE, RELEASE) submitted, by the route's scope kind
     * (key, group, customer, org), and every other operation: logged as "ledger ops" at
     * gw_ledger_free (docs/leasing.md). */
    uint64_t money_ops[4];
    uint64_t other_ops;
    gw_ledger_shard shards[CG_SHARDS_MAX];
};

/* Transport errors as gw_ledger_cb documents them; the NNG code is logged by the caller. */
static cg_err gw_ledger_err_from_nng(int rv)
{
    cg_err e = cg_err_from_nng(rv);

    if (rv == NNG_ETIMEDOUT || e == CG_ERR_TIMEOUT) {
        return CG_ERR_TIMEOUT;
    }
    if (rv == NNG_ECLOSED || e == CG_ERR_SHUTDOWN) {
        return CG_ERR_SHUTDOWN;
    }
    return CG_ERR_UNAVAILABLE;
}

/* ---- NNG thread side ---- */

static void gw_flight_finish(gw_flight *f)
{
    gw_ledger *l = f->l;

    f->state = GW_FLIGHT_DONE;
    f->next = NULL;
    uv_mutex_lock(&l->mu);
    if (l->done_tail != NULL) {
        l->done_tail->next = f;
    } else {
        l->done_head = f;
    }
    l->done_tail = f;
    uv_mutex_unlock(&l->mu);
    /* Safe after the unlock: the loop waits (nng_aio_wait) for this callback to
     * return before it reuses or frees the flight or the client. */
    uv_async_send(&l->async);
}

static void gw_flight_recv_done(gw_flight *f, int rv)
{
    nng_msg *msg;

    if (rv != 0) {
        f->nng_rv = rv;
        f->err = gw_ledger_err_from_nng(rv);
        return;
    }
    msg = nng_aio_get_msg(f->aio);
    nng_aio_set_msg(f->aio, NULL);
    /* Decode here, off the loop thread; the loop only checks and delivers. */
    f->err = proto_rep_decode(nng_msg_body(msg), nng_msg_len(msg), &f->reps, &f->rep_n);
    if (f->err != CG_ERR_OK) {
        f->err = CG_ERR_PROTO;
        f->reps = NULL;
        f->rep_n = 0;
    }
    nng_msg_free(msg);
}

static void gw_flight_cb(void *arg)
{
    gw_flight *f = arg;
    int rv = nng_aio_result(f->aio);
    int64_t left_ms;

    if (f->state == GW_FLIGHT_SEND) {
        if (rv != 0) {
            /* A failed send gives the message back to us. */
            nng_msg_free(nng_aio_get_msg(f->aio));
            nng_aio_set_msg(f->aio, NULL);
            f->nng_rv = rv;
            f->err = gw_ledger_err_from_nng(rv);
            gw_flight_finish(f);
            return;
        }
        left_ms = f->deadline_ms - cg_mono_ms();
        if (left_ms <= 0) {
            f->err = CG_ERR_TIMEOUT;
            gw_flight_finish(f);
            return;
        }
        f->state = GW_FLIGHT_RECV;
        nng_aio_set_timeout(f->aio, (nng_duration)left_ms);
        /* If the aio was stopped by gw_ledger_free this returns without a callback;
         * gw_ledger_free completes the flight itself. */
        nng_ctx_recv(f->ctx, f->aio);
        return;
    }
    assert(f->state == GW_FLIGHT_RECV);
    gw_flight_recv_done(f, rv);
    gw_flight_finish(f);
}

/* ---- loop thread side ---- */

static void gw_active_insert(gw_ledger *l, gw_flight *f)
{
    f->act_prev = NULL;
    f->act_next = l->active;
    if (l->active != NULL) {
        l->active->act_prev = f;
    }
    l->active = f;
}

static void gw_active_remove(gw_ledger *l, gw_flight *f)
{
    if (f->act_prev != NULL) {
        f->act_prev->act_next = f->act_next;
    } else {
        l->active = f->act_next;
    }
    if (f->act_next != NULL) {
        f->act_next->act_prev = f->act_prev;
    }
    f->act_prev = f->act_next = NULL;
}

static void gw_flight_destroy(gw_flight *f)
{
    proto_rep_free(f->reps, f->rep_n);
    nng_aio_free(f->aio);
    nng_ctx_close(f->ctx); /* NNG_ECLOSED once the socket is closed: harmless */
    free(f);
}

/* A flight from the shard's pool, or a new one (ctx + aio). */
static cg_err gw_flight_get(gw_ledger *l, gw_ledger_shard *s, gw_flight **out)
{
    gw_flight *f = s->pool;
    cg_err e;
    int rv;

    if (f != NULL) {
        s->pool = f->next;
        s->pool_n--;
        gw_active_insert(l, f);
        *out = f;
        return CG_ERR_OK;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return CG_ERR_NOMEM;
    }
    f->l = l;
    f->shard = s;
    if ((rv = nng_aio_alloc(&f->aio, gw_flight_cb, f)) != 0) {
        goto fail;
    }
    if ((rv = nng_ctx_open(&f->ctx, s->sock)) != 0) {
        nng_aio_free(f->aio);
        goto fail;
    }
    gw_active_insert(l, f);
    *out = f;
    return CG_ERR_OK;
fail:
    free(f);
    cg_logf(CG_LOG_ERROR, "ledger client: cannot create context: %s", nng_strerror(rv));
    e = cg_err_from_nng(rv);
    return e != CG_ERR_OK ? e : CG_ERR_INTERNAL;
}

/* Back to the pool after delivery (reply freed), or destroyed when the pool is full. */
static void gw_flight_recycle(gw_ledger *l, gw_flight *f)
{
    gw_ledger_shard *s = f->shard;

    gw_active_remove(l, f);
    proto_rep_free(f->reps, f->rep_n);
    f->reps = NULL;
    f->rep_n = 0;
    f->op_n = 0;
    f->state = GW_FLIGHT_IDLE;
    if (s->pool_n >= GW_LEDGER_POOL_MAX) {
        gw_flight_destroy(f);
        return;
    }
    f->next = s->pool;
    s->pool = f;
    s->pool_n++;
}

/* The reply must hold one result per operation, in order, each echoing its op. */
static cg_err gw_flight_check(const gw_flight *f)
{
    if (f->err != CG_ERR_OK) {
        return f->err;
    }
    if (f->rep_n != f->op_n) {
        return CG_ERR_PROTO;
    }
    for (uint32_t i = 0; i < f->op_n; i++) {
        if (f->reps[i].op != f->ops[i].op) {
            return CG_ERR_PROTO;
        }
    }
    return CG_ERR_OK;
}

/* Invoke every pending callback of f with its result. Stops if a callback closes the client. */
static void gw_flight_deliver(gw_ledger *l, gw_flight *f)
{
    cg_err err = gw_flight_check(f);

    if (err != CG_ERR_OK) {
        const char *shard = l->cfg->shards[f->shard->index].name;
        if (err == CG_ERR_PROTO) {
            cg_log(CG_LOG_WARN, "ledger reply rejected", "shard", shard, "err", cg_err_name(err),
                   NULL);
        } else {
            cg_log(CG_LOG_DEBUG, "ledger operation failed", "shard", shard, "err", cg_err_name(err),
                   "nng", f->nng_rv ? nng_strerror(f->nng_rv) : "", NULL);
        }
    }
    gw_metrics_ledger_rtt(f->shard->index, f->deadline_ms - (int64_t)l->cfg->ledger_timeout_ms);
    for (uint32_t i = 0; i < f->op_n && !l->closing; i++) {
        gw_ledger_cb cb = f->ops[i].cb;
        if (cb == NULL) {
            continue;
        }
        f->ops[i].cb = NULL;
        l->inflight--;
        cb(err, err == CG_ERR_OK ? &f->reps[i] : NULL, f->ops[i].ud);
    }
}

static gw_flight *gw_done_pop(gw_ledger *l)
{
    gw_flight *f;

    uv_mutex_lock(&l->mu);
    f = l->done_head;
    if (f != NULL) {
        l->done_head = f->next;
        if (l->done_head == NULL) {
            l->done_tail = NULL;
        }
        f->next = NULL;
    }
    uv_mutex_unlock(&l->mu);
    return f;
}

static void gw_ledger_async_cb(uv_async_t *h)
{
    gw_ledger *l = h->data;
    gw_flight *f;

    /* One flight at a time, so a callback that frees the client finds the rest queued. */
    while (!l->closing && (f = gw_done_pop(l)) != NULL) {
        nng_aio_wait(f->aio); /* the NNG callback has returned */
        gw_flight_deliver(l, f);
        if (l->closing) {
            return; /* f stays on the active list; the close callback frees it */
        }
        gw_flight_recycle(l, f);
    }
}

/* Put f (filled: ops, op_n, deadline_ms) on the wire with msg, which passes to NNG. */
static void gw_flight_launch(gw_flight *f, nng_msg *msg, int64_t left_ms)
{
    f->state = GW_FLIGHT_SEND;
    nng_aio_set_msg(f->aio, msg);
    nng_aio_set_timeout(f->aio, (nng_duration)left_ms);
    nng_ctx_send(f->ctx, f->aio);
}

/* Close s's open batch and send it as one message. A failure before the send
 * completes the batch through the done queue, so no user callback runs here. */
static void gw_ledger_flush_shard(gw_ledger *l, gw_ledger_shard *s)
{
    gw_flight *f = s->fill;
    nng_msg *msg = NULL;
    int64_t left_ms;
    cg_err e;
    int rv;

    assert(f != NULL && f->op_n >= 1);
    s->fill = NULL;
    l->fill_n--;
    f->err = CG_ERR_OK;
    f->nng_rv = 0;
    msgpack_sbuffer_clear(&l->hdr);
    if ((e = proto_req_batch_prefix(f->op_n, &l->hdr)) != CG_ERR_OK) {
        goto fail;
    }
    if ((rv = nng_msg_alloc(&msg, l->hdr.size + s->body.size)) != 0) {
        e = cg_err_from_nng(rv);
        goto fail;
    }
    memcpy(nng_msg_body(msg), l->hdr.data, l->hdr.size);
    memcpy((char *)nng_msg_body(msg) + l->hdr.size, s->body.data, s->body.size);
    left_ms = f->deadline_ms - cg_mono_ms();
    if (left_ms <= 0) {
        nng_msg_free(msg);
        e = CG_ERR_TIMEOUT;
        goto fail;
    }
    gw_flight_launch(f, msg, left_ms);
    goto reset;
fail:
    f->err = e == CG_ERR_TIMEOUT ? CG_ERR_TIMEOUT : CG_ERR_UNAVAILABLE;
    gw_flight_finish(f);
reset:
    if (s->body.alloc > GW_LEDGER_BODY_KEEP) {
        msgpack_sbuffer_destroy(&s->body);
        msgpack_sbuffer_init(&s->body);
    } else {
        msgpack_sbuffer_clear(&s->body);
    }
}

static void gw_ledger_flush_all(gw_ledger *l)
{
    for (uint16_t i = 0; i < l->shard_n && l->fill_n > 0; i++) {
        if (l->shards[i].fill != NULL) {
            gw_ledger_flush_shard(l, &l->shards[i]);
        }
    }
    uv_check_stop(&l->check);
    uv_idle_stop(&l->idle);
}

static void gw_ledger_check_cb(uv_check_t *h)
{
    gw_ledger *l = h->data;

    if (!l->closing) {
        gw_ledger_flush_all(l);
    }
}

static void gw_ledger_idle_cb(uv_idle_t *h)
{
    (void)h; /* only keeps poll from blocking; the check callback sends */
}

static void gw_ledger_count(gw_ledger *l, const proto_req *req)
{
    static const char *const pre[4] = {"key:", "group:", "customer:", "org:"};
    if (req->op == PROTO_OP_RESERVE || req->op == PROTO_OP_SETTLE || req->op == PROTO_OP_RELEASE) {
        for (int i = 0; i < 4; i++) {
            if (strncmp(req->route, pre[i], strlen(pre[i])) == 0) {
                l->money_ops[i]++;
                gw_metrics_ledger_op(i);
                return;
            }
        }
    }
    l->other_ops++;
    gw_metrics_ledger_op(4);
}

cg_err gw_ledger_submit_to(gw_ledger *l, uint16_t shard, const proto_req *req, gw_ledger_cb cb,
                           void *ud)
{
    gw_ledger_shard *s;
    gw_flight *f;
    size_t mark;
    int solo;
    cg_err e;

    assert(l != NULL && req != NULL && cb != NULL);
    assert(shard < l->shard_n);
    if (l->closing) {
        return CG_ERR_SHUTDOWN;
    }
    if (l->inflight >= GW_LEDGER_INFLIGHT_MAX) {
        return CG_ERR_UNAVAILABLE;
    }
    s = &l->shards[shard];
    solo = req->op == PROTO_OP_EVENTS_SINCE || req->op == PROTO_OP_LIST_KEYS ||
           req->op == PROTO_OP_LIST_PRICING; /* large replies (issue 5 lists too) */
    if (solo && s->fill != NULL) {
        gw_ledger_flush_shard(l, s);
    }
    mark = s->body.size;
    if ((e = proto_req_encode_op(req, &s->body)) != CG_ERR_OK) {
        return e; /* the encoder appended nothing */
    }
    if ((f = s->fill) == NULL) {
        if ((e = gw_flight_get(l, s, &f)) != CG_ERR_OK) {
            s->body.size = mark;
            return e;
        }
        f->op_n = 0;
        f->deadline_ms = cg_mono_ms() + (int64_t)l->cfg->ledger_timeout_ms;
        s->fill = f;
        if (l->fill_n++ == 0) {
            uv_check_start(&l->check, gw_ledger_check_cb);
            uv_idle_start(&l->idle, gw_ledger_idle_cb);
        }
    }
    f->ops[f->op_n++] = (gw_ledger_op){.op = req->op, .cb = cb, .ud = ud};
    l->inflight++;
    gw_ledger_count(l, req);
    if (solo || f->op_n >= GW_LEDGER_FLIGHT_OPS || s->body.size >= GW_LEDGER_BATCH_BYTES) {
        gw_ledger_flush_shard(l, s);
    }
    return CG_ERR_OK;
}

cg_err gw_ledger_submit(gw_ledger *l, const proto_req *req, gw_ledger_cb cb, void *ud)
{
    size_t len;

    assert(l != NULL && req != NULL);
    len = strnlen(req->route, sizeof(req->route));
    if (len == 0 || len > PROTO_ROUTE_MAX) {
        return CG_ERR_INVAL;
    }
    return gw_ledger_submit_to(l, cg_ring_lookup(l->ring, req->route, len), req, cb, ud);
}

static cg_err gw_ledger_shard_open(gw_ledger_shard *s, const cg_shard_cfg *sc)
{
    int rv;

    if ((rv = nng_req0_open(&s->sock)) != 0) {
        goto fail;
    }
    s->open = 1;
    /* No timer resends: the operation deadline ends a request, and a settle must
     * not reach a slow shard twice just because it was slow. */
    if ((rv = nng_socket_set_ms(s->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) != 0 ||
        (rv = nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, PROTO_MSG_MAX_BYTES)) != 0 ||
        (rv = nng_socket_set_ms(s->sock, NNG_OPT_RECONNMINT, GW_LEDGER_RECONN_MIN_MS)) != 0 ||
        (rv = nng_socket_set_ms(s->sock, NNG_OPT_RECONNMAXT, GW_LEDGER_RECONN_MAX_MS)) != 0) {
        goto fail;
    }
    /* Non-blocking: a shard that is down now is dialled again in the background. */
    if ((rv = nng_dial(s->sock, sc->req_url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
        goto fail;
    }
    return CG_ERR_OK;
fail:
    cg_log(CG_LOG_ERROR, "ledger client: cannot open shard socket", "shard", sc->name, "url",
           sc->req_url, "nng", nng_strerror(rv), NULL);
    return cg_err_from_nng(rv);
}

static void gw_ledger_close_cb(uv_handle_t *h)
{
    gw_ledger *l = h->data;
    gw_flight *f;

    if (--l->handles_open > 0) {
        return;
    }
    for (gw_flight *next; l->active != NULL; l->active = next) {
        next = l->active->act_next;
        gw_flight_destroy(l->active);
    }
    for (uint16_t i = 0; i < l->shard_n; i++) {
        while ((f = l->shards[i].pool) != NULL) {
            l->shards[i].pool = f->next;
            gw_flight_destroy(f);
        }
        msgpack_sbuffer_destroy(&l->shards[i].body);
    }
    msgpack_sbuffer_destroy(&l->hdr);
    uv_mutex_destroy(&l->mu);
    free(l);
}

cg_err gw_ledger_new(uv_loop_t *loop, const cg_config *cfg, const cg_ring *ring, gw_ledger **out)
{
    gw_ledger *l;
    cg_err e = CG_ERR_OK;
    int mu_ok = 0;

    assert(loop != NULL && cfg != NULL && ring != NULL && out != NULL);
    if (cfg->shard_n == 0 || cfg->shard_n > CG_SHARDS_MAX || ring->shard_n != cfg->shard_n) {
        return CG_ERR_INVAL;
    }
    if ((l = calloc(1, sizeof(*l))) == NULL) {
        return CG_ERR_NOMEM;
    }
    l->loop = loop;
    l->cfg = cfg;
    l->ring = ring;
    l->shard_n = (uint16_t)cfg->shard_n;
    msgpack_sbuffer_init(&l->hdr);
    for (uint16_t i = 0; i < l->shard_n; i++) {
        msgpack_sbuffer_init(&l->shards[i].body);
    }
    if (uv_mutex_init(&l->mu) != 0) {
        e = CG_ERR_INTERNAL;
        goto fail;
    }
    mu_ok = 1;
    for (uint16_t i = 0; i < l->shard_n; i++) {
        l->shards[i].index = i;
        if ((e = gw_ledger_shard_open(&l->shards[i], &cfg->shards[i])) != CG_ERR_OK) {
            goto fail;
        }
    }
    if (uv_async_init(loop, &l->async, gw_ledger_async_cb) != 0) {
        e = CG_ERR_INTERNAL;
        goto fail;
    }
    l->async.data = l;
    /* Cannot fail on an initialised loop. */
    uv_check_init(loop, &l->check);
    l->check.data = l;
    uv_idle_init(loop, &l->idle);
    l->idle.data = l;
    l->handles_open = 3;
    *out = l;
    return CG_ERR_OK;
fail:
    for (uint16_t i = 0; i < l->shard_n; i++) {
        if (l->shards[i].open) {
            nng_close(l->shards[i].sock);
        }
    }
    if (mu_ok) {
        uv_mutex_destroy(&l->mu);
    }
    for (uint16_t i = 0; i < l->shard_n; i++) {
        msgpack_sbuffer_destroy(&l->shards[i].body);
    }
    msgpack_sbuffer_destroy(&l->hdr);
    free(l);
    return e;
}

void gw_ledger_free(gw_ledger *l)
{
    gw_flight *f;

    if (l == NULL || l->closing) {
        return;
    }
    l->closing = 1;
    {
        char v[5][24];
        for (int i = 0; i < 4; i++) {
            snprintf(v[i], sizeof(v[i]), "%llu", (unsigned long long)l->money_ops[i]);
        }
        snprintf(v[4], sizeof(v[4]), "%llu", (unsigned long long)l->other_ops);
        cg_log(CG_LOG_INFO, "ledger ops", "key", v[0], "group", v[1], "customer", v[2], "org", v[3],
               "other", v[4], NULL);
    }
    /* After nng_aio_stop no NNG callback runs for that flight any more. */
    for (f = l->active; f != NULL; f = f->act_next) {
        nng_aio_stop(f->aio);
    }
    for (uint16_t i = 0; i < l->shard_n; i++) {
        nng_close(l->shards[i].sock);
        l->shards[i].open = 0;
    }
    uv_mutex_lock(&l->mu);
    l->done_head = l->done_tail = NULL; /* all of them are on the active list too */
    uv_mutex_unlock(&l->mu);
    /* Complete everything not yet delivered. Callbacks may submit (they get
     * CG_ERR_SHUTDOWN) but cannot change the active list while closing. */
    for (f = l->active; f != NULL; f = f->act_next) {
        for (uint32_t i = 0; i < f->op_n; i++) {
            gw_ledger_cb cb = f->ops[i].cb;
            if (cb != NULL) {
                f->ops[i].cb = NULL;
                l->inflight--;
                cb(CG_ERR_SHUTDOWN, NULL, f->ops[i].ud);
            }
        }
    }
    for (uint16_t i = 0; i < l->shard_n; i++) {
        l->shards[i].fill = NULL; /* its flight is on the active list */
    }
    l->fill_n = 0;
    uv_close((uv_handle_t *)&l->check, gw_ledger_close_cb);
    uv_close((uv_handle_t *)&l->idle, gw_ledger_close_cb);
    uv_close((uv_handle_t *)&l->async, gw_ledger_close_cb);
}
