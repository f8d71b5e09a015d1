/*
 * gw_proxy_int.h — internals shared by the two halves of the proxy flow:
 * gw_proxy.c (admission: auth, validation, estimate, reservation) and
 * gw_proxy_up.c (upstream, streaming, settlement, the answer).
 * Not a public contract; see gw_proxy.h.
 */
#ifndef GW_PROXY_INT_H
#define GW_PROXY_INT_H
#include <stddef.h>
#include <stdint.h>
#include "gw_estimate.h"
#include "gw_keys.h"
#include "gw_proxy.h"
#include "gw_sse.h"
#include "proto.h"

typedef enum gw_proxy_phase {
    GW_PH_AUTH = 0, /* waiting for the key */
    GW_PH_RESERVE,  /* waiting for the reservation */
    GW_PH_UPSTREAM, /* transfer running */
    GW_PH_SETTLE,   /* settle or release submitted, answer pending or sent */
} gw_proxy_phase;

struct gw_proxy {
    gw_proxy_env *env;
    gw_proxy *prev, *next;  /* env->active */
    int refs;               /* flow + outstanding operations */
    uint8_t flow_done;      /* the flow reference was dropped */
    uint8_t phase;          /* gw_proxy_phase */
    cg_http_conn *conn;     /* NULL once answered or the client left */
    const cg_http_req *req; /* valid while conn is, until the upstream starts */
    uint8_t client_gone;
    int64_t t0_ms; /* cg_mono_ms at arrival */
    char rid[GW_REQID_LEN + 1];

    /* admission */
    char key_id[GW_KEY_ID_MAX + 1];
    uint8_t key_hash[32];
    proto_key key;
    char route[PROTO_ROUTE_MAX + 1];
    const cg_model_cfg *model;
    gw_estimate est;
    uint8_t stream;       /* body "stream": true */
    uint8_t client_usage; /* the client asked for stream usage itself */
    uint8_t reserved;     /* a reservation is held */
    uint8_t state_n;
    proto_limit_state states[PROTO_LIMITS_MAX]; /* from the reserve reply */

    /* upstream */
    char *up_body; /* what is sent upstream (owned) */
    size_t up_len;
    gw_xfer *xfer;
    uint8_t paused;       /* the transfer waits for the client to drain */
    uint8_t in_data;      /* inside the data callback (the SSE scanner is mid-feed) */
    uint8_t gone_in_data; /* the client left during the data callback: stop after it */
    size_t pending;       /* client bytes queued, last reported */
    int up_status;
    char up_ctype[GW_UPSTREAM_CTYPE_MAX + 1];
    char *buf; /* buffered response body */
    size_t buf_len, buf_cap;
    uint8_t too_big;
    uint8_t stream_started;
    gw_sse sse;

    /* settlement and answer */
    gw_usage usage;
    uint8_t estimated;
    int64_t cost_nusd;
    int64_t tokens;
    int client_status; /* status the client gets (usage record) */
    int err_status;    /* non-zero: answer with this OpenAI error instead */
    const char *err_type;
    const char *err_code;
    char err_msg[160];
    uint8_t charged;      /* a settle carries this request's usage */
    int64_t settle_ts_ms; /* fixed at the first settle attempt, so retries are identical */
    int32_t latency_ms;
    uint8_t answered;
    uint8_t settle_tries;
    uint8_t retry_open; /* retry timer initialised (holds a reference until closed) */
    uv_timer_t retry;
};

/* gw_proxy.c */
void gw_proxy_ref(gw_proxy *p);
void gw_proxy_unref(gw_proxy *p);
/* Drop the flow reference (once). */
void gw_proxy_done(gw_proxy *p);
/* Answer with an OpenAI error (if the client is still there) and end the flow. */
void gw_proxy_fail(gw_proxy *p, int status, const char *type, const char *code, const char *msg);
/* "x-capgate-request-id: ...\r\n" */
void gw_proxy_rid_header(const gw_proxy *p, char *buf, size_t cap);
/* Submit a ledger operation holding a reference; on failure none is held. */
cg_err gw_proxy_submit(gw_proxy *p, const proto_req *rq, gw_ledger_cb cb);

/* gw_proxy_up.c */
/* Start the upstream transfer (reservation held or fail-open). */
void gw_proxy_upstream_start(gw_proxy *p);
/* The client went away (abort callback) / drained its queued bytes. */
void gw_proxy_client_gone(gw_proxy *p);
void gw_proxy_client_drained(gw_proxy *p);
/* Shutdown: stop the transfer and settle what is known. */
void gw_proxy_force(gw_proxy *p);
/* Drop the reservation (client left before the upstream started). */
void gw_proxy_release(gw_proxy *p);

#endif
