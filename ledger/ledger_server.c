/*
 * ledger_server.c — NNG REP contexts, the job queue and the group-commit
 * writer thread of a ledger shard (contract: ledger_server.h).
 *
 * Threads: NNG's threads run the context callbacks (receive, decode, queue;
 * on send completion free the job and receive again). Two writer threads
 * ("lanes", docs/ledger-durability.md section 3) each own a queue, an op
 * array, an encode buffer and a reply array for a whole batch (replies are
 * encoded and copied into their NNG messages before the next batch reuses
 * it): the durable lane applies with the store, the reserve lane — jobs made
 * only of ledger_store_lane_op ops — with the store's lane view, so a reserve
 * never queues behind a settle's device syncs. A job goes to one lane whole.
 * The mutex guards both queues, the in-flight count and the stop flags;
 * metrics_mu serialises ledger_metrics_batch. CAPGATE_LEDGER_ONE_LANE=1 runs
 * the durable lane alone (the store then commits in one phase).
 *
 * Each context's life: RECV -> (callback decodes) QUEUED -> (writer applies,
 * commits, encodes) SEND -> (callback frees the job) RECV again. A context
 * holds at most one job, so the queue never exceeds the context count.
 *
 * Stop: set `stopping` (no context re-arms after its reply), wait until the
 * queue is empty and no job is in flight, let the writer finish what is
 * queued and join it, wait for those replies, then stop every aio (cancels
 * pending receives, waits for running callbacks) and only then close the
 * sockets: a context operation must never race the socket's close (NNG 1.5
 * panics on that). A job a last receive queued after the writer left is
 * freed unanswered; its client times out and retries, and nothing of it was
 * applied. Each socket close is bounded (lsv_close_bounded): NNG 1.5.2 can
 * hang in nng_close while peers keep reconnecting, and a SIGTERM must not.
 */
#include "ledger_server.h"

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/reqrep0/rep.h>
#include <assert.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cg_clock.h"
#include "cg_log.h"
#include "ledger_metrics.h"
#include "proto.h"

/* Operations one batch can hold: lsv_take admits a job while the batch stays within
 * LEDGER_BATCH_OPS_MAX, and always the first one (at most PROTO_BATCH_MAX). */
#define LSV_REPS_MAX \
    (LEDGER_BATCH_OPS_MAX > PROTO_BATCH_MAX ? LEDGER_BATCH_OPS_MAX : PROTO_BATCH_MAX)

typedef enum lsv_state { LSV_IDLE = 0, LSV_RECV, LSV_QUEUED, LSV_SEND } lsv_state;

typedef struct lsv_ctx {
    struct ledger_server *srv;
    nng_ctx ctx;
    nng_aio *aio;
    int opened; /* ctx opened */
    lsv_state state;
    proto_req *reqs; /* the job: decoded request batch (n entries) */
    proto_rep *reps; /* its replies: a slice of the writer's scratch, valid while it replies */
    uint32_t n;
    cg_err decode_err;    /* not OK: the message did not decode; reply with this status */
    struct lsv_ctx *next; /* queue link */
} lsv_ctx;

/* A writer thread with its queue: lane 0 (LSV_DURABLE) applies everything but lane ops, with
 * the store, and sweeps; lane 1 (LSV_RESERVE) applies jobs made only of ledger_store_lane_op
 * ops with the store's lane view, so reserves never wait for a durable commit's syncs. */
typedef struct lsv_lane {
    struct ledger_server *srv;
    ledger_store *store;
    int durable;
    pthread_cond_t wake; /* a job was queued, or quit */
    lsv_ctx *q_head;
    lsv_ctx *q_tail;
    pthread_t th;
    int started;
    /* This lane's thread only. */
    msgpack_sbuffer sbuf;
    ledger_op ops[LEDGER_BATCH_OPS_MAX];
    /* Reply scratch for one batch (LSV_REPS_MAX entries), allocated once: a proto_rep is ~8 KB,
     * and a calloc per job was the shard's top cost (zeroing plus fresh-page faults). */
    proto_rep *reps;
    lsv_ctx *batch[LEDGER_CONTEXTS_MAX];
} lsv_lane;

#define LSV_DURABLE 0
#define LSV_RESERVE 1
#define LSV_LANES 2

struct ledger_server {
    ledger_store *store;
    nng_socket rep;
    nng_socket pub;
    int rep_open;
    int pub_open;
    nng_listener rep_listener;
    int rep_listening;
    lsv_ctx *ctxs;
    uint32_t ctx_n;

    pthread_mutex_t mu;
    pthread_cond_t drained; /* stopper: queues empty and nothing in flight */
    uint32_t q_len;         /* jobs in both queues, <= ctx_n */
    uint32_t inflight;      /* jobs between receive completion and send completion */
    int stopping;
    int quit;
    lsv_lane lanes[LSV_LANES];
    uint32_t lane_n;            /* 1: no reserve lane (CAPGATE_LEDGER_ONE_LANE=1, or none) */
    ledger_store *lane_store;   /* the store's lane view (lane_n 2), closed at teardown */
    pthread_mutex_t metrics_mu; /* ledger_metrics_batch is single-threaded */

    _Atomic uint64_t st_requests;
    _Atomic uint64_t st_bad;
    _Atomic uint64_t st_published;
    _Atomic uint64_t st_send_errors;
};

/* ---- contexts (NNG threads) ---- */

static void lsv_recv(lsv_ctx *c)
{
    c->state = LSV_RECV;
    nng_ctx_recv(c->ctx, c->aio);
}

static void lsv_job_free(lsv_ctx *c)
{
    if (c->reqs != NULL) {
        proto_req_free(c->reqs, c->n);
    }
    c->reqs = NULL;
    c->reps = NULL;
    c->n = 0;
    c->decode_err = CG_ERR_OK;
}

/* The job's reply went out (or could not): free it and, unless stopping, receive again. */
static void lsv_job_done(lsv_ctx *c)
{
    ledger_server *srv = c->srv;
    lsv_job_free(c);
    c->state = LSV_IDLE;
    pthread_mutex_lock(&srv->mu);
    srv->inflight--;
    int stopping = srv->stopping;
    if (stopping) {
        pthread_cond_broadcast(&srv->drained);
    }
    pthread_mutex_unlock(&srv->mu);
    if (!stopping) {
        lsv_recv(c);
    }
}

static void lsv_on_recv(lsv_ctx *c, int rv)
{
    ledger_server *srv = c->srv;
    if (rv != 0) {
        c->state = LSV_IDLE;
        if (rv != NNG_ECLOSED && rv != NNG_ECANCELED) {
            cg_log(CG_LOG_WARN, "receive failed", "nng", nng_strerror(rv), NULL);
            lsv_recv(c);
        }
        return;
    }
    nng_msg *m = nng_aio_get_msg(c->aio);
    atomic_fetch_add(&srv->st_requests, 1);
    c->decode_err = proto_req_decode(nng_msg_body(m), nng_msg_len(m), &c->reqs, &c->n);
    nng_msg_free(m);
    if (c->decode_err != CG_ERR_OK) {
        atomic_fetch_add(&srv->st_bad, 1);
        cg_log(CG_LOG_WARN, "undecodable request", "err", cg_err_name(c->decode_err), NULL);
        c->reqs = NULL;
        c->n = 0;
    }
    c->state = LSV_QUEUED;
    c->next = NULL;
    int reserve = srv->lane_n > 1 && c->decode_err == CG_ERR_OK && c->n > 0;
    for (uint32_t i = 0; reserve && i < c->n; i++) {
        reserve = ledger_store_lane_op(c->reqs[i].op);
    }
    lsv_lane *ln = &srv->lanes[reserve ? LSV_RESERVE : LSV_DURABLE];
    pthread_mutex_lock(&srv->mu);
    srv->inflight++;
    srv->q_len++;
    if (ln->q_tail != NULL) {
        ln->q_tail->next = c;
    } else {
        ln->q_head = c;
    }
    ln->q_tail = c;
    pthread_cond_signal(&ln->wake);
    pthread_mutex_unlock(&srv->mu);
}

static void lsv_ctx_cb(void *arg)
{
    lsv_ctx *c = arg;
    int rv = nng_aio_result(c->aio);
    if (c->state == LSV_RECV) {
        lsv_on_recv(c, rv);
        return;
    }
    /* LSV_SEND: on failure the message is still ours. */
    if (rv != 0) {
        nng_msg_free(nng_aio_get_msg(c->aio));
        nng_aio_set_msg(c->aio, NULL);
        atomic_fetch_add(&c->srv->st_send_errors, 1);
        cg_log(CG_LOG_WARN, "reply not sent", "nng", nng_strerror(rv), NULL);
    }
    lsv_job_done(c);
}

/* ---- the writer thread ---- */

/* Encode c's replies (or the one-result error reply) and send them. */
static void lsv_reply(lsv_lane *ln, lsv_ctx *c)
{
    nng_msg *m = NULL;
    cg_err err = c->decode_err;
    msgpack_sbuffer_clear(&ln->sbuf);
    if (err == CG_ERR_OK) {
        err = proto_rep_encode(c->reps, c->n, &ln->sbuf);
    }
    for (uint32_t i = 0; c->reps != NULL && i < c->n; i++) {
        /* Encoded: free what a reply owns (EVENTS_SINCE's array). The next apply clears the
         * body before use, so only op and status are reset here (no 8 KB memset). */
        proto_rep_owned_free(&c->reps[i]);
        c->reps[i].op = 0;
        c->reps[i].status = 0;
    }
    c->reps = NULL;
    if (err != CG_ERR_OK) {
        proto_rep one = {.op = PROTO_OP_PING, .status = (uint16_t)err};
        msgpack_sbuffer_clear(&ln->sbuf);
        err = proto_rep_encode(&one, 1, &ln->sbuf);
    }
    int rv = err == CG_ERR_OK ? nng_msg_alloc(&m, 0) : NNG_ENOMEM;
    if (rv == 0) {
        rv = nng_msg_append(m, ln->sbuf.data, ln->sbuf.size);
    }
    if (rv != 0) {
        cg_log(CG_LOG_ERROR, "cannot build reply", "err", cg_err_name(err), NULL);
        nng_msg_free(m);
        atomic_fetch_add(&ln->srv->st_send_errors, 1);
        lsv_job_done(c);
        return;
    }
    c->state = LSV_SEND;
    nng_aio_set_msg(c->aio, m);
    nng_ctx_send(c->ctx, c->aio);
}

static void lsv_publish(lsv_lane *ln)
{
    ledger_server *srv = ln->srv;
    size_t n = 0;
    const proto_event *ev = ledger_store_new_events(ln->store, &n);
    for (size_t i = 0; i < n; i++) {
        msgpack_sbuffer_clear(&ln->sbuf);
        cg_err err = proto_pub_encode(ledger_store_shard(ln->store), &ev[i], &ln->sbuf);
        int rv = err == CG_ERR_OK
                     ? nng_send(srv->pub, ln->sbuf.data, ln->sbuf.size, NNG_FLAG_NONBLOCK)
                     : NNG_EINVAL;
        if (rv != 0) {
            /* Subscribers catch up with EVENTS_SINCE: a dropped publication loses nothing. */
            cg_log(CG_LOG_WARN, "event not published", "event", ev[i].id, "nng", nng_strerror(rv),
                   NULL);
            continue;
        }
        atomic_fetch_add(&srv->st_published, 1);
        ledger_metrics_published(1);
    }
}

/* Whether a committed op changed a definition gateways may cache (issue 5 notices). */
static int lsv_is_def_write(uint8_t op)
{
    return op == PROTO_OP_PUT_ORG || op == PROTO_OP_PUT_KEY || op == PROTO_OP_PUT_GROUP ||
           op == PROTO_OP_PUT_CUSTOMER || op == PROTO_OP_DELETE || op == PROTO_OP_PUT_PRICING;
}

/*
 * Publish a definition-change notice (topic "d", docs/contracts.md "Issue 5") for every
 * definition write of the batch that committed (status OK after ledger_store_apply).
 * Sent before the replies, so a notice is on its way before the writer hears "done".
 * A dropped notice is bounded by the gateways' key_cache_ms.
 */
static void lsv_publish_notices(lsv_lane *ln, lsv_ctx **jobs, size_t jn)
{
    ledger_server *srv = ln->srv;
    for (size_t j = 0; j < jn; j++) {
        lsv_ctx *c = jobs[j];
        for (uint32_t i = 0; c->decode_err == CG_ERR_OK && c->reps != NULL && i < c->n; i++) {
            if (!lsv_is_def_write(c->reqs[i].op) || c->reps[i].status != CG_ERR_OK) {
                continue;
            }
            msgpack_sbuffer_clear(&ln->sbuf);
            cg_err err =
                proto_notice_encode(ledger_store_shard(ln->store), c->reqs[i].route, &ln->sbuf);
            int rv = err == CG_ERR_OK
                         ? nng_send(srv->pub, ln->sbuf.data, ln->sbuf.size, NNG_FLAG_NONBLOCK)
                         : NNG_EINVAL;
            if (rv != 0) {
                cg_log(CG_LOG_WARN, "notice not published", "route", c->reqs[i].route, "nng",
                       nng_strerror(rv), NULL);
            }
        }
    }
}

/* Apply the jobs' operations in one transaction, then reply to each, then publish. */
static void lsv_batch(lsv_lane *ln, lsv_ctx **jobs, size_t jn)
{
    ledger_server *srv = ln->srv;
    uint32_t k = 0;
    for (size_t j = 0; j < jn; j++) {
        lsv_ctx *c = jobs[j];
        if (c->decode_err != CG_ERR_OK) {
            continue;
        }
        assert(k + c->n <= LSV_REPS_MAX);
        c->reps = &ln->reps[k];
        for (uint32_t i = 0; i < c->n; i++) {
            ln->ops[k++] = (ledger_op){.req = &c->reqs[i], .rep = &c->reps[i]};
        }
    }
    int64_t t0_us = cg_mono_us();
    cg_err rc = ledger_store_apply(ln->store, ln->ops, k);
    int64_t dur_us = cg_mono_us() - t0_us;
    pthread_mutex_lock(&srv->metrics_mu);
    ledger_metrics_batch(ln->ops, k, rc, dur_us);
    pthread_mutex_unlock(&srv->metrics_mu);
    lsv_publish_notices(ln, jobs, jn);
    for (size_t j = 0; j < jn; j++) {
        lsv_reply(ln, jobs[j]);
    }
    lsv_publish(ln);
}

static struct timespec lsv_deadline(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Take queued jobs up to the batch bound; waits up to one tick for the first. -1: quit. */
static int lsv_take(lsv_lane *ln, size_t *jn)
{
    ledger_server *srv = ln->srv;
    struct timespec until = lsv_deadline(LEDGER_TICK_MS);
    uint32_t ops = 0;
    *jn = 0;
    pthread_mutex_lock(&srv->mu);
    while (ln->q_head == NULL && !srv->quit) {
        if (pthread_cond_timedwait(&ln->wake, &srv->mu, &until) != 0) {
            break;
        }
    }
    if (ln->q_head == NULL && srv->quit) {
        pthread_mutex_unlock(&srv->mu);
        return -1;
    }
    while (ln->q_head != NULL && *jn < LEDGER_CONTEXTS_MAX &&
           (*jn == 0 || ops + ln->q_head->n <= LEDGER_BATCH_OPS_MAX)) {
        lsv_ctx *c = ln->q_head;
        ln->q_head = c->next;
        if (ln->q_head == NULL) {
            ln->q_tail = NULL;
        }
        srv->q_len--;
        ops += c->n;
        ln->batch[(*jn)++] = c;
    }
    pthread_mutex_unlock(&srv->mu);
    return 0;
}

static void *lsv_writer(void *arg)
{
    lsv_lane *ln = arg;
    int64_t last_sweep = cg_mono_ms();
    int64_t last_check = last_sweep;
    size_t jn = 0;
    while (lsv_take(ln, &jn) == 0) {
        int64_t now = cg_mono_ms();
        if (jn > 0 || (ln->durable && now - last_sweep >= LEDGER_TICK_MS)) {
            /* With no jobs this is a sweep-only transaction (aborted if nothing expired); the
             * reserve lane never sweeps. */
            lsv_batch(ln, ln->batch, jn);
            last_sweep = now;
        }
        if (ln->durable && now - last_check >= LEDGER_READER_CHECK_MS) {
            (void)ledger_store_reader_check(ln->store, NULL);
            last_check = now;
        }
    }
    return NULL;
}

/* ---- bounded socket close ---- */

/* Shared by the stopper and the closer thread; the last of the two frees it. */
typedef struct lsv_closer {
    nng_socket sock;
    pthread_mutex_t mu;
    pthread_cond_t done_cv;
    int done;
    int refs;
} lsv_closer;

static void lsv_closer_rele(lsv_closer *c)
{
    pthread_mutex_lock(&c->mu);
    int last = --c->refs == 0;
    pthread_mutex_unlock(&c->mu);
    if (last) {
        pthread_cond_destroy(&c->done_cv);
        pthread_mutex_destroy(&c->mu);
        free(c);
    }
}

static void *lsv_closer_main(void *arg)
{
    lsv_closer *c = arg;
    nng_close(c->sock);
    pthread_mutex_lock(&c->mu);
    c->done = 1;
    pthread_cond_signal(&c->done_cv);
    pthread_mutex_unlock(&c->mu);
    lsv_closer_rele(c);
    return NULL;
}

/*
 * nng_close, but never waiting longer than LEDGER_CLOSE_TIMEOUT_MS: NNG 1.5.2
 * can block for ever closing a socket while peers keep reconnecting
 * (nanomsg/nng#1543, #1813: a pipe that is never reaped). Callers only get
 * here after every aio is stopped, so an abandoned socket references none of
 * our memory; the shard process exits right after stopping.
 */
static void lsv_close_bounded(nng_socket sock, const char *what)
{
    pthread_condattr_t ca;
    pthread_t th;
    lsv_closer *c = calloc(1, sizeof(*c));
    if (c == NULL || pthread_condattr_init(&ca) != 0) {
        free(c);
        nng_close(sock);
        return;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    c->sock = sock;
    c->refs = 2;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&th, NULL, lsv_closer_main, c) != 0) {
        c->refs = 1;
        lsv_closer_rele(c);
        nng_close(sock);
        return;
    }
    pthread_detach(th);
    struct timespec until = lsv_deadline(LEDGER_CLOSE_TIMEOUT_MS);
    pthread_mutex_lock(&c->mu);
    while (!c->done && pthread_cond_timedwait(&c->done_cv, &c->mu, &until) == 0) {
    }
    int done = c->done;
    pthread_mutex_unlock(&c->mu);
    if (!done) {
        cg_log(CG_LOG_WARN, "socket close did not finish in time; abandoned", "socket", what, NULL);
    }
    lsv_closer_rele(c);
}

/* ---- start / stop ---- */

static cg_err lsv_nng_fail(int rv, const char *what, const char *url)
{
    cg_log(CG_LOG_ERROR, "nng call failed", "op", what, "url", url ? url : "", "nng",
           nng_strerror(rv), NULL);
    return cg_err_from_nng(rv);
}

static cg_err lsv_sockets_open(ledger_server *srv, const ledger_server_cfg *cfg)
{
    int rv;
    if ((rv = nng_rep0_open(&srv->rep)) != 0) {
        return lsv_nng_fail(rv, "rep0_open", NULL);
    }
    srv->rep_open = 1;
    if ((rv = nng_socket_set_size(srv->rep, NNG_OPT_RECVMAXSZ, PROTO_MSG_MAX_BYTES)) != 0) {
        return lsv_nng_fail(rv, "set recvmaxsz", NULL);
    }
    if ((rv = nng_pub0_open(&srv->pub)) != 0) {
        return lsv_nng_fail(rv, "pub0_open", NULL);
    }
    srv->pub_open = 1;
    if ((rv = nng_listen(srv->pub, cfg->pub_url, NULL, 0)) != 0) {
        return lsv_nng_fail(rv, "listen", cfg->pub_url);
    }
    for (uint32_t i = 0; i < srv->ctx_n; i++) {
        lsv_ctx *c = &srv->ctxs[i];
        c->srv = srv;
        if ((rv = nng_aio_alloc(&c->aio, lsv_ctx_cb, c)) != 0) {
            return lsv_nng_fail(rv, "aio_alloc", NULL);
        }
        if ((rv = nng_ctx_open(&c->ctx, srv->rep)) != 0) {
            return lsv_nng_fail(rv, "ctx_open", NULL);
        }
        c->opened = 1;
    }
    if ((rv = nng_listen(srv->rep, cfg->req_url, &srv->rep_listener, 0)) != 0) {
        return lsv_nng_fail(rv, "listen", cfg->req_url);
    }
    srv->rep_listening = 1;
    return CG_ERR_OK;
}

/* Ask the writers to finish what is queued and exit; join them. */
static void lsv_writer_join(ledger_server *srv)
{
    pthread_mutex_lock(&srv->mu);
    srv->quit = 1;
    for (uint32_t i = 0; i < LSV_LANES; i++) {
        pthread_cond_signal(&srv->lanes[i].wake);
    }
    pthread_mutex_unlock(&srv->mu);
    for (uint32_t i = 0; i < LSV_LANES; i++) {
        if (srv->lanes[i].started) {
            pthread_join(srv->lanes[i].th, NULL);
            srv->lanes[i].started = 0;
        }
    }
}

/*
 * Stop every aio (cancels pending receives and waits for running callbacks;
 * afterwards no thread touches a context), only then close the sockets:
 * NNG must never see a context operation racing the socket's close. Free
 * what a last receive may have queued, and the server.
 */
static void lsv_teardown(ledger_server *srv)
{
    pthread_mutex_lock(&srv->mu);
    srv->stopping = 1;
    pthread_mutex_unlock(&srv->mu);
    lsv_writer_join(srv);
    for (uint32_t i = 0; i < srv->ctx_n; i++) {
        if (srv->ctxs[i].aio != NULL) {
            nng_aio_stop(srv->ctxs[i].aio);
        }
    }
    for (uint32_t i = 0; i < srv->ctx_n; i++) {
        if (srv->ctxs[i].opened) {
            nng_ctx_close(srv->ctxs[i].ctx);
        }
    }
    if (srv->rep_listening) {
        nng_listener_close(srv->rep_listener);
    }
    /* PUB first: its close is unaffected by REQ peers, so it never waits behind REP's. */
    if (srv->pub_open) {
        lsv_close_bounded(srv->pub, "pub");
    }
    if (srv->rep_open) {
        lsv_close_bounded(srv->rep, "rep");
    }
    for (uint32_t i = 0; i < LSV_LANES; i++) {
        for (lsv_ctx *c = srv->lanes[i].q_head; c != NULL; c = c->next) {
            lsv_job_free(c);
        }
    }
    for (uint32_t i = 0; i < srv->ctx_n; i++) {
        if (srv->ctxs[i].aio != NULL) {
            nng_aio_free(srv->ctxs[i].aio);
        }
    }
    ledger_store_close(srv->lane_store); /* the store leaves two-phase mode */
    pthread_cond_destroy(&srv->drained);
    for (uint32_t i = 0; i < LSV_LANES; i++) {
        pthread_cond_destroy(&srv->lanes[i].wake);
        msgpack_sbuffer_destroy(&srv->lanes[i].sbuf);
        free(srv->lanes[i].reps);
    }
    pthread_mutex_destroy(&srv->metrics_mu);
    pthread_mutex_destroy(&srv->mu);
    free(srv->ctxs);
    free(srv);
}

static int lsv_sync_init(ledger_server *srv)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) {
        return -1;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_mutex_init(&srv->mu, NULL) || pthread_mutex_init(&srv->metrics_mu, NULL) ||
             pthread_cond_init(&srv->lanes[0].wake, &ca) ||
             pthread_cond_init(&srv->lanes[1].wake, &ca) || pthread_cond_init(&srv->drained, &ca);
    pthread_condattr_destroy(&ca);
    return rc ? -1 : 0;
}

cg_err ledger_server_start(const ledger_server_cfg *cfg, ledger_server **out)
{
    if (cfg == NULL || cfg->store == NULL || cfg->req_url == NULL || cfg->pub_url == NULL ||
        cfg->contexts < 1 || cfg->contexts > LEDGER_CONTEXTS_MAX) {
        return CG_ERR_INVAL;
    }
    ledger_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        return CG_ERR_NOMEM;
    }
    if (lsv_sync_init(srv) != 0) {
        free(srv);
        return CG_ERR_NOMEM;
    }
    srv->store = cfg->store;
    srv->ctx_n = cfg->contexts;
    srv->ctxs = calloc(cfg->contexts, sizeof(*srv->ctxs));
    const char *one = getenv("CAPGATE_LEDGER_ONE_LANE");
    srv->lane_n = one != NULL && strcmp(one, "1") == 0 ? 1 : LSV_LANES;
    cg_err err = srv->ctxs == NULL ? CG_ERR_NOMEM : CG_ERR_OK;
    for (uint32_t i = 0; i < LSV_LANES; i++) {
        lsv_lane *ln = &srv->lanes[i];
        ln->srv = srv;
        ln->durable = i == LSV_DURABLE;
        msgpack_sbuffer_init(&ln->sbuf);
        ln->reps = i < srv->lane_n ? calloc(LSV_REPS_MAX, sizeof(*ln->reps)) : NULL;
        if (i < srv->lane_n && ln->reps == NULL) {
            err = CG_ERR_NOMEM;
        }
    }
    srv->lanes[LSV_DURABLE].store = cfg->store;
    if (err == CG_ERR_OK && srv->lane_n > 1) {
        err = ledger_store_lane_open(cfg->store, &srv->lane_store);
        srv->lanes[LSV_RESERVE].store = srv->lane_store;
    }
    if (err == CG_ERR_OK) {
        err = lsv_sockets_open(srv, cfg);
    }
    if (err != CG_ERR_OK) {
        goto fail;
    }
    for (uint32_t i = 0; i < srv->lane_n; i++) {
        if (pthread_create(&srv->lanes[i].th, NULL, lsv_writer, &srv->lanes[i]) != 0) {
            err = CG_ERR_NOMEM;
            goto fail;
        }
        srv->lanes[i].started = 1;
    }
    for (uint32_t i = 0; i < srv->ctx_n; i++) {
        lsv_recv(&srv->ctxs[i]);
    }
    cg_log(CG_LOG_INFO, "ledger shard listening", "shard", ledger_store_shard(cfg->store), "req",
           cfg->req_url, "pub", cfg->pub_url, NULL);
    *out = srv;
    return CG_ERR_OK;
fail:
    if (srv->ctxs == NULL) {
        srv->ctx_n = 0;
    }
    lsv_teardown(srv);
    return err;
}

/* Wait (up to the deadline) until no job is being applied or sent and, if with_queue, none
 * is queued either. Called with mu held. */
static void lsv_drain_locked(ledger_server *srv, int with_queue, const struct timespec *until)
{
    while (srv->inflight > srv->q_len || (with_queue && srv->q_len > 0)) {
        if (pthread_cond_timedwait(&srv->drained, &srv->mu, until) != 0) {
            cg_logf(CG_LOG_WARN, "stop: %u jobs still in flight after the drain timeout",
                    (unsigned)srv->inflight);
            return;
        }
    }
}

void ledger_server_stop(ledger_server *srv)
{
    if (srv == NULL) {
        return;
    }
    struct timespec until = lsv_deadline(LEDGER_DRAIN_TIMEOUT_MS);
    pthread_mutex_lock(&srv->mu);
    srv->stopping = 1;
    lsv_drain_locked(srv, 1, &until);
    pthread_mutex_unlock(&srv->mu);
    /* Jobs received while draining are applied by the writers before they exit; wait for their
     * replies to leave too. */
    lsv_writer_join(srv);
    pthread_mutex_lock(&srv->mu);
    lsv_drain_locked(srv, 0, &until);
    pthread_mutex_unlock(&srv->mu);
    lsv_teardown(srv);
}

void ledger_server_stats_get(ledger_server *srv, ledger_server_stats *out)
{
    out->requests = atomic_load(&srv->st_requests);
    out->bad_requests = atomic_load(&srv->st_bad);
    out->events_published = atomic_load(&srv->st_published);
    out->send_errors = atomic_load(&srv->st_send_errors);
}

void ledger_malloc_tune(void)
{
    /* Fixed thresholds turn off glibc's dynamic ones: requests of up to 256 operations decode
     * into arrays of up to ~1.8 MB on NNG's threads, and with the defaults each one was mmap'ed,
     * or trimmed back to the kernel when freed, so every message paid fresh-page faults. */
    (void)mallopt(M_MMAP_THRESHOLD, 64 << 20);
    (void)mallopt(M_TRIM_THRESHOLD, 128 << 20);
}
