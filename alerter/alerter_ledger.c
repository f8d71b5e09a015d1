/*
 * alerter_ledger.c — NNG sockets and asynchronous calls of the alerter
 * (contract and threading rules in alerter_ledger.h).
 *
 * A call is a two-step aio chain run by NNG threads: ctx send, then ctx recv,
 * both bounded by one deadline. The chain ends by storing the outcome and setting
 * state DONE (release); the loop thread reads it after an acquire load, so no
 * lock is needed.
 */
#include "alerter_ledger.h"

#include <string.h>

#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/req.h>

#include "cg_clock.h"
#include "cg_log.h"

/* ---- calls --------------------------------------------------------------------------- */

static void alerter_call_done(alerter_call *c, int rc)
{
    c->nng_rc = rc;
    atomic_store_explicit(&c->state, ALERTER_CALL_DONE, memory_order_release);
    c->wake(c->wake_arg);
}

/* NNG thread: advance the send -> recv chain. */
static void alerter_call_cb(void *arg)
{
    alerter_call *c = arg;
    int rc = nng_aio_result(c->aio);
    if (c->phase == 0) {
        if (rc != 0) {
            nng_msg_free(nng_aio_get_msg(c->aio)); /* not sent: still ours */
            nng_aio_set_msg(c->aio, NULL);
            alerter_call_done(c, rc);
            return;
        }
        int64_t left_ms = c->deadline_mono_ms - cg_mono_ms();
        if (left_ms <= 0) {
            alerter_call_done(c, NNG_ETIMEDOUT);
            return;
        }
        c->phase = 1;
        nng_aio_set_timeout(c->aio, (nng_duration)left_ms);
        nng_ctx_recv(c->ctx, c->aio);
        return;
    }
    c->reply = rc == 0 ? nng_aio_get_msg(c->aio) : NULL;
    alerter_call_done(c, rc);
}

cg_err alerter_call_init(alerter_call *c, alerter_wake_fn wake, void *wake_arg)
{
    memset(c, 0, sizeof *c);
    atomic_init(&c->state, ALERTER_CALL_IDLE);
    c->wake = wake;
    c->wake_arg = wake_arg;
    int rc = nng_aio_alloc(&c->aio, alerter_call_cb, c);
    if (rc != 0) {
        c->aio = NULL;
        return cg_err_from_nng(rc);
    }
    return CG_ERR_OK;
}

void alerter_call_fini(alerter_call *c)
{
    if (c->aio != NULL) {
        nng_aio_stop(c->aio); /* cancels, and waits for the callback chain to end */
        nng_aio_free(c->aio);
        c->aio = NULL;
    }
    if (c->reply != NULL) {
        nng_msg_free(c->reply);
        c->reply = NULL;
    }
    if (c->ctx_open) {
        nng_ctx_close(c->ctx);
        c->ctx_open = 0;
    }
}

static cg_err alerter_req_msg(const proto_req *req, nng_msg **out)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    nng_msg *m = NULL;
    cg_err err = proto_req_encode(req, 1, &sb);
    if (err != CG_ERR_OK) {
        goto done;
    }
    int rc = nng_msg_alloc(&m, 0);
    if (rc == 0) {
        rc = nng_msg_append(m, sb.data, sb.size);
    }
    if (rc != 0) {
        nng_msg_free(m);
        err = cg_err_from_nng(rc);
        goto done;
    }
    *out = m;
done:
    msgpack_sbuffer_destroy(&sb);
    return err;
}

cg_err alerter_call_start(alerter_call *c, nng_socket sock, const proto_req *req,
                          uint32_t timeout_ms)
{
    nng_msg *m = NULL;
    if (alerter_call_state_get(c) != ALERTER_CALL_IDLE) {
        return CG_ERR_INVAL;
    }
    cg_err err = alerter_req_msg(req, &m);
    if (err != CG_ERR_OK) {
        return err;
    }
    int rc = nng_ctx_open(&c->ctx, sock);
    if (rc != 0) {
        nng_msg_free(m);
        return cg_err_from_nng(rc);
    }
    c->ctx_open = 1;
    c->phase = 0;
    c->op = req->op;
    c->nng_rc = 0;
    c->reply = NULL;
    c->deadline_mono_ms = cg_mono_ms() + timeout_ms;
    atomic_store_explicit(&c->state, ALERTER_CALL_BUSY, memory_order_release);
    nng_aio_set_msg(c->aio, m);
    nng_aio_set_timeout(c->aio, (nng_duration)timeout_ms);
    nng_ctx_send(c->ctx, c->aio);
    return CG_ERR_OK;
}

/* Decode the reply: exactly one result, answering the op we sent. */
static cg_err alerter_call_decode(alerter_call *c, proto_rep **rep)
{
    proto_rep *reps = NULL;
    uint32_t n = 0;
    cg_err err = proto_rep_decode(nng_msg_body(c->reply), nng_msg_len(c->reply), &reps, &n);
    if (err != CG_ERR_OK) {
        return err;
    }
    if (n != 1 || reps[0].op != c->op) {
        proto_rep_free(reps, n);
        return CG_ERR_PROTO;
    }
    *rep = reps;
    return CG_ERR_OK;
}

cg_err alerter_call_finish(alerter_call *c, proto_rep **rep)
{
    cg_err err;
    if (c->nng_rc != 0) {
        err = c->nng_rc == NNG_ETIMEDOUT ? CG_ERR_TIMEOUT : cg_err_from_nng(c->nng_rc);
    } else {
        err = alerter_call_decode(c, rep);
    }
    if (c->reply != NULL) {
        nng_msg_free(c->reply);
        c->reply = NULL;
    }
    nng_ctx_close(c->ctx);
    c->ctx_open = 0;
    atomic_store_explicit(&c->state, ALERTER_CALL_IDLE, memory_order_relaxed);
    return err;
}

/* ---- sockets ------------------------------------------------------------------------- */

static void alerter_sock_tune(nng_socket s)
{
    /* Failures here only lose a tuning, never correctness: the defaults still work. */
    nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, PROTO_MSG_MAX_BYTES);
    nng_socket_set_ms(s, NNG_OPT_RECONNMINT, ALERTER_RECONNECT_MIN_MS);
    nng_socket_set_ms(s, NNG_OPT_RECONNMAXT, ALERTER_RECONNECT_MAX_MS);
}

cg_err alerter_req_open(const char *url, nng_socket *out)
{
    nng_socket s;
    int rc = nng_req0_open(&s);
    if (rc != 0) {
        return cg_err_from_nng(rc);
    }
    alerter_sock_tune(s);
    rc = nng_dial(s, url, NULL, NNG_FLAG_NONBLOCK);
    if (rc != 0) {
        cg_log(CG_LOG_ERROR, "cannot dial shard", "url", url, "nng", nng_strerror(rc), NULL);
        nng_close(s);
        return cg_err_from_nng(rc);
    }
    *out = s;
    return CG_ERR_OK;
}

static void alerter_sub_cb(void *arg)
{
    alerter_sub *s = arg;
    atomic_store_explicit(&s->ready, 1, memory_order_release);
    s->wake(s->wake_arg);
}

static cg_err alerter_sub_dial(alerter_sub *s, const cg_shard_cfg *shards, uint32_t n)
{
    /* Threshold events only: definition-change notices (topic "d") are for gateways. */
    int rc = nng_socket_set(s->sock, NNG_OPT_SUB_SUBSCRIBE, PROTO_PUB_TOPIC_EVENT,
                            sizeof(PROTO_PUB_TOPIC_EVENT) - 1);
    if (rc != 0) {
        return cg_err_from_nng(rc);
    }
    for (uint32_t i = 0; i < n; i++) {
        rc = nng_dial(s->sock, shards[i].pub_url, NULL, NNG_FLAG_NONBLOCK);
        if (rc != 0) {
            cg_log(CG_LOG_ERROR, "cannot dial shard pub", "shard", shards[i].name, "url",
                   shards[i].pub_url, "nng", nng_strerror(rc), NULL);
            return cg_err_from_nng(rc);
        }
    }
    return CG_ERR_OK;
}

cg_err alerter_sub_open(alerter_sub *s, const cg_shard_cfg *shards, uint32_t n,
                        alerter_wake_fn wake, void *wake_arg)
{
    memset(s, 0, sizeof *s);
    atomic_init(&s->ready, 0);
    s->wake = wake;
    s->wake_arg = wake_arg;
    int rc = nng_sub0_open(&s->sock);
    if (rc != 0) {
        return cg_err_from_nng(rc);
    }
    s->open = 1;
    alerter_sock_tune(s->sock);
    cg_err err = alerter_sub_dial(s, shards, n);
    if (err != CG_ERR_OK) {
        goto fail;
    }
    if ((rc = nng_aio_alloc(&s->aio, alerter_sub_cb, s)) != 0) {
        s->aio = NULL;
        err = cg_err_from_nng(rc);
        goto fail;
    }
    nng_recv_aio(s->sock, s->aio);
    return CG_ERR_OK;
fail:
    alerter_sub_close(s);
    return err;
}

int alerter_sub_take(alerter_sub *s, nng_msg **msg)
{
    if (!atomic_load_explicit(&s->ready, memory_order_acquire)) {
        return 0;
    }
    atomic_store_explicit(&s->ready, 0, memory_order_relaxed);
    int rc = nng_aio_result(s->aio);
    *msg = rc == 0 ? nng_aio_get_msg(s->aio) : NULL;
    if (rc != 0 && rc != NNG_ECLOSED && rc != NNG_ECANCELED) {
        cg_log(CG_LOG_WARN, "sub receive failed", "nng", nng_strerror(rc), NULL);
    }
    if (rc != NNG_ECLOSED) {
        nng_recv_aio(s->sock, s->aio);
    }
    return 1;
}

void alerter_sub_close(alerter_sub *s)
{
    if (s->aio != NULL) {
        nng_aio_stop(s->aio);
        if (atomic_load(&s->ready) && nng_aio_result(s->aio) == 0) {
            nng_msg_free(nng_aio_get_msg(s->aio));
        }
        nng_aio_free(s->aio);
        s->aio = NULL;
    }
    if (s->open) {
        nng_close(s->sock);
        s->open = 0;
    }
}
