/*
 * alerter_ledger.h — the alerter's NNG side: one SUB socket dialled to every
 * shard's PUB, one REQ socket per shard, and asynchronous request "calls"
 * (EVENTS_SINCE, GET_ORG) with deadlines.
 *
 * Threads: NNG completes aios on its own threads. Those callbacks only store the
 * outcome, publish it with a release store of an atomic state, and call the wake
 * function (curl_multi_wakeup of the loop), so the loop thread sees completions at
 * once and is the only thread that reads results, decodes messages or touches
 * alerter state. Every function here is called on the loop thread.
 *
 * Dials are non-blocking and NNG reconnects by itself (100 ms .. 2 s), so a shard
 * that is down at start-up, or restarts, is picked up without any action here.
 */
#ifndef ALERTER_LEDGER_H
#define ALERTER_LEDGER_H
#include <stdatomic.h>
#include <stdint.h>
#include <nng/nng.h>
#include "cg_config.h"
#include "cg_err.h"
#include "proto.h"

#define ALERTER_RECONNECT_MIN_MS 100
#define ALERTER_RECONNECT_MAX_MS 2000

typedef void (*alerter_wake_fn)(void *arg);

typedef enum alerter_call_state {
    ALERTER_CALL_IDLE = 0,
    ALERTER_CALL_BUSY = 1, /* owned by NNG threads until DONE */
    ALERTER_CALL_DONE = 2, /* outcome ready for alerter_call_finish */
} alerter_call_state;

/* One request/reply exchange at a time on its own nng_ctx. Caller's storage. */
typedef struct alerter_call {
    nng_aio *aio;
    nng_ctx ctx;
    int ctx_open;
    atomic_int state;         /* alerter_call_state */
    int phase;                /* 0 = sending, 1 = receiving; NNG thread only while BUSY */
    int64_t deadline_mono_ms; /* the whole exchange must end by then */
    int nng_rc;               /* DONE: 0 or the NNG error */
    nng_msg *reply;           /* DONE and nng_rc == 0: the reply, owned by the call */
    uint8_t op;               /* proto_op of the request in flight */
    alerter_wake_fn wake;
    void *wake_arg;
} alerter_call;

/* Allocate the aio. wake (not NULL) is called from an NNG thread on each completion. */
cg_err alerter_call_init(alerter_call *c, alerter_wake_fn wake, void *wake_arg);
/* Cancel an exchange in flight and wait for its callback, then free. Safe on a zeroed
 * or already finalised call. */
void alerter_call_fini(alerter_call *c);

/*
 * Send the 1-op batch req on a new context of sock; the reply (or failure) must come
 * within timeout_ms. The call must be IDLE. Returns CG_ERR_OK (the call is BUSY and
 * will become DONE) or an error (still IDLE).
 */
cg_err alerter_call_start(alerter_call *c, nng_socket sock, const proto_req *req,
                          uint32_t timeout_ms);

static inline int alerter_call_state_get(alerter_call *c)
{
    return atomic_load_explicit(&c->state, memory_order_acquire);
}

/*
 * Collect the outcome of a DONE call; the call becomes IDLE. On success *rep is a
 * one-element array from proto_rep_decode (free with proto_rep_free(*rep, 1)) whose op
 * matches the request; rep->status is the shard's answer. Errors: CG_ERR_TIMEOUT,
 * CG_ERR_UNAVAILABLE (or another NNG code mapped by cg_err_from_nng) for the transport;
 * CG_ERR_PROTO / CG_ERR_VERSION / CG_ERR_TOOBIG for a malformed reply.
 */
cg_err alerter_call_finish(alerter_call *c, proto_rep **rep);

/* Open a REQ socket dialled (non-blocking) to url, receive size capped. */
cg_err alerter_req_open(const char *url, nng_socket *out);

/* The subscriber: one SUB socket, one receive outstanding at a time. */
typedef struct alerter_sub {
    nng_socket sock;
    int open;
    nng_aio *aio;
    atomic_int ready; /* 1: a receive completed; the loop takes it */
    alerter_wake_fn wake;
    void *wake_arg;
} alerter_sub;

/* Open, subscribe to everything, dial every shard's pub_url, start receiving. */
cg_err alerter_sub_open(alerter_sub *s, const cg_shard_cfg *shards, uint32_t n,
                        alerter_wake_fn wake, void *wake_arg);
/*
 * If a receive completed: returns 1 with *msg set to the message (owned by the caller,
 * nng_msg_free it) or NULL when the receive failed, and starts the next receive.
 * Returns 0 when nothing is ready.
 */
int alerter_sub_take(alerter_sub *s, nng_msg **msg);
/* Stop receiving (waits for the callback) and close the socket. */
void alerter_sub_close(alerter_sub *s);

#endif
