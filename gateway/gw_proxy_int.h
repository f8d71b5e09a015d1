/*
 * gw_proxy_int.h — internals shared by the parts of the proxy flow:
 * gw_proxy.c (authentication, definitions, static rules, body, estimate),
 * gw_proxy_rsv.c (reservation on every scope, refusals, clamp) and
 * gw_proxy_up.c (upstream, streaming, settlement, the answer).
 * Not a public contract; see gw_proxy.h.
 */
#ifndef GW_PROXY_INT_H
#define GW_PROXY_INT_H
#include <stddef.h>
#include <stdint.h>
#include "gw_cache.h"
#include "gw_estimate.h"
#include "gw_keys.h"
#include "gw_scopes.h"
#include "gw_proxy.h"
#include "gw_sse.h"
#include "proto.h"

typedef enum gw_proxy_phase {
    GW_PH_AUTH = 0, /* waiting for the key and the org / group definitions */
    GW_PH_RESERVE,  /* waiting for the reservations (or their releases after a refusal) */
    GW_PH_UPSTREAM, /* transfer running */
    GW_PH_SETTLE,   /* settle or release submitted, answer pending or sent */
} gw_proxy_phase;

/* Outcome of a definition lookup (org or group). */
typedef enum gw_def_state {
    GW_DEF_NONE = 0, /* not looked up (or for another id) */
    GW_DEF_PENDING,  /* lookup in flight */
    GW_DEF_OK,       /* info valid (a group may be found = 0) */
    GW_DEF_MISSING,  /* the org does not exist */
    GW_DEF_FAILED,   /* the ledger did not answer */
} gw_def_state;

/* What to do once every release of an admission round is acknowledged. */
typedef enum gw_proxy_next {
    GW_NEXT_NONE = 0,
    GW_NEXT_REFUSE,  /* answer the first refusal (402 / 429) */
    GW_NEXT_DOWN,    /* answer 503 ledger_unavailable */
    GW_NEXT_INVALID, /* answer 401 invalid_api_key (key or org deleted meanwhile) */
    GW_NEXT_CLAMP,   /* lower the completion bound and reserve again */
    GW_NEXT_GONE,    /* the client left: just end */
} gw_proxy_next;

/* The callback context of one scope's operation (its index in scopes[]). */
typedef struct gw_proxy_slot {
    gw_proxy *p;
    uint8_t idx;
} gw_proxy_slot;

struct gw_proxy {
    gw_proxy_env *env;
    gw_proxy *prev, *next; /* env->active */
    int refs;              /* flow + outstanding operations */
    uint8_t flow_done;     /* the flow reference was dropped */
    uint8_t phase;         /* gw_proxy_phase */
    uint8_t ep;            /* gw_endpoint */
    uint8_t client_gone;
    cg_http_conn *conn;     /* NULL once answered or the client left */
    const cg_http_req *req; /* valid while conn is, until the upstream starts */
    int64_t t0_ms;          /* cg_mono_ms at arrival */
    char rid[GW_REQID_LEN + 1];

    /* authentication and definitions */
    char key_id[GW_KEY_ID_MAX + 1];
    uint8_t key_hash[32];
    proto_key key;
    uint8_t have_key;  /* key is authenticated */
    uint16_t auth_st;  /* cg_err of the AUTH lookup while have_key is 0 */
    uint8_t lookups;   /* AUTH / GET_ORG / GET_GROUP in flight */
    uint8_t org_state; /* gw_def_state, for org_want */
    uint8_t group_state;
    char org_want[PROTO_ID_MAX + 1];   /* the org looked up */
    char group_want[PROTO_ID_MAX + 1]; /* the group looked up ("" none) */
    gw_org_info org;
    gw_group_info group;

    /* admission */
    const cg_model_cfg *model;
    gw_estimate est;
    int64_t clamp_to;                /* the lowered per-choice bound (GW_NEXT_CLAMP) */
    uint8_t stream;                  /* body "stream": true */
    uint8_t client_usage;            /* the client asked for stream usage itself */
    uint8_t scope_n;                 /* 1..GW_SCOPES_MAX */
    uint8_t waiting;                 /* reserve / release operations of the round in flight */
    uint8_t then;                    /* gw_proxy_next after the releases */
    uint8_t clamped;                 /* the completion bound was lowered once already */
    char customer[PROTO_ID_MAX + 1]; /* "" = none */
    gw_scope scopes[GW_SCOPES_MAX];  /* key, group, customer, org (those that apply) */
    gw_proxy_slot slots[GW_SCOPES_MAX];
    gw_lease *lease[GW_SCOPES_MAX];           /* scope admitted on a budget lease */
    proto_amounts lease_worst[GW_SCOPES_MAX]; /* what it holds there */

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
    uint8_t nothing_used; /* upstream failed, nothing consumed: zero settle on the key scope */
    int64_t settle_ts_ms; /* fixed at the first settle attempt, so retries are identical */
    uint8_t settle_wait;  /* settles of the current attempt in flight */
    uint16_t settle_err;  /* cg_err: the worst failure of the current attempt */
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
/* Submit a ledger operation holding a reference (callback context ud); on failure none is held. */
cg_err gw_proxy_submit(gw_proxy *p, const proto_req *rq, gw_ledger_cb cb, void *ud);
/* 503 ledger_unavailable, logged with the failing operation. */
void gw_proxy_ledger_down(gw_proxy *p, cg_err err, const char *op);
/* 401 invalid_api_key. */
void gw_proxy_invalid_key(gw_proxy *p);
/* Answer an OpenAI error with extra headers, param and limit object (consumed; may be NULL). */
void gw_proxy_fail_ex(gw_proxy *p, int status, const char *type, const char *code, const char *msg,
                      const char *param, cJSON *limit, const char *headers);

/* gw_proxy_rsv.c */
/* Build the scopes (key, group, customer, org) of an admitted request. */
void gw_proxy_scopes_build(gw_proxy *p);
/* Reserve the worst case on every scope; continues with the upstream or an answer. */
void gw_proxy_reserve_all(gw_proxy *p);
/* Drop every reservation held (fire and forget: the leases bound a lost release). */
void gw_proxy_release(gw_proxy *p);
/* The same on every scope but the key's (which a zero settle finishes); those are then done. */
void gw_proxy_release_but_key(gw_proxy *p);
/* Rate-limit and budget headers of a success, appended to buf. */
size_t gw_proxy_success_headers(const gw_proxy *p, char *buf, size_t len, size_t cap);

/* gw_proxy_up.c */
/* Start the upstream transfer (reservations held or fail-open). */
void gw_proxy_upstream_start(gw_proxy *p);
/* The client went away (abort callback) / drained its queued bytes. */
void gw_proxy_client_gone(gw_proxy *p);
void gw_proxy_client_drained(gw_proxy *p);
/* Shutdown: stop the transfer and settle what is known. */
void gw_proxy_force(gw_proxy *p);

#endif
