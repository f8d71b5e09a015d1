/*
 * gw_admin_int.h — internals shared by the admin API's files (not a public
 * contract; the public one is gw_admin.h).
 *
 *   gw_admin.c           server lifecycle, token check, routing, ledger callback
 *   gw_admin_io.c        responses, ledger round trips, JSON in/out helpers
 *   gw_admin_orgs.c      POST/GET/PATCH orgs
 *   gw_admin_keys.c      keys: create, GET, PATCH, revoke, DELETE
 *   gw_admin_groups.c    groups: create, GET, PATCH, DELETE
 *   gw_admin_customers.c customer overrides: PUT, GET, DELETE
 *   gw_admin_usage.c     usage totals over every shard
 *   gw_admin_pricing.c   pricing: list (config + overrides), PUT override
 *
 * Model: each request gets a heap context (gw_admin_ctx) that lives until its
 * answer is sent and no ledger operation of it is in flight. A handler
 * validates the whole body first, then sends one ledger operation with the
 * step that handles its reply (gw_admin_next); a step either answers or sends
 * the next operation. Every function here runs on the admin loop thread.
 *
 * Read-modify-write (PATCH, revoke, rotate) is a GET then a PUT without
 * create_only that expects the revision the GET saw (optimistic concurrency,
 * issue 5): if another writer got in between, the shard refuses the PUT
 * (CG_ERR_CONFLICT, nothing written) and the handler starts over from the GET,
 * up to GW_ADMIN_RMW_TRIES attempts, then answers 409 concurrent_update.
 */
#ifndef GW_ADMIN_INT_H
#define GW_ADMIN_INT_H
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#include "cg_http.h"
#include "gw_admin.h"
#include "gw_json.h"
#include "gw_keys.h"
#include "proto.h"

#define GW_ADMIN_LOG_PATH_MAX 191        /* path bytes kept for the log line */
#define GW_ADMIN_ERR_MAX GW_JSON_ERR_MAX /* validation message */
#define GW_ADMIN_MAC_BYTES 32
#define GW_ADMIN_SEG_MAX (3 * PROTO_ID_MAX) /* a path segment before percent-decoding */

typedef struct gw_admin_ctx gw_admin_ctx;

/*
 * One step of a request: handles the shard's reply (transport succeeded; rep
 * valid only during the call). Returns 1 if it sent another operation (the
 * ledger owns x again), 0 if it answered.
 */
typedef int (*gw_admin_next)(gw_admin_ctx *x, const proto_rep *rep);

struct gw_admin {
    uv_loop_t *loop;
    const cg_config *cfg;
    const cg_ring *ring;
    gw_ledger *ledger;
    cg_http_server *srv;
    uint8_t mac_key[GW_ADMIN_MAC_BYTES];   /* random, per process */
    uint8_t token_mac[GW_ADMIN_MAC_BYTES]; /* HMAC(mac_key, admin_token) */
    uint32_t pending;                      /* ledger operations in flight */
    int stopping;
    uint64_t rid_prefix; /* request ids of the access log: random prefix + counter */
    uint32_t rid_counter;
    gw_admin_open_cb open_cb; /* token-free paths (gw_admin_set_open_routes); may be NULL */
    void *open_ud;
};

/* PATCH: which fields the body named (bits of gw_admin_ctx.has). */
enum {
    GW_ADM_F_NAME = 1u << 0,
    GW_ADM_F_LIMITS = 1u << 1,
    GW_ADM_F_EXPIRES = 1u << 2,
    GW_ADM_F_GROUP = 1u << 3,
    GW_ADM_F_CUSTOMER = 1u << 4,
    GW_ADM_F_MODELS = 1u << 5,
    GW_ADM_F_IP_ALLOW = 1u << 6,
    GW_ADM_F_IP_DENY = 1u << 7,
    GW_ADM_F_MAX_TOKENS = 1u << 8,
    GW_ADM_F_LOW_BUDGET = 1u << 9,
    GW_ADM_F_ANCHOR = 1u << 10,
    GW_ADM_F_CUST_DEFAULTS = 1u << 11,
    GW_ADM_F_WEBHOOKS = 1u << 12,
    GW_ADM_F_EMAILS = 1u << 13,
};

struct gw_admin_ctx {
    gw_admin *a;
    cg_http_conn *c;    /* NULL once answered or the client went away */
    gw_admin_next next; /* step for the reply of the operation in flight */
    uint8_t writes;     /* the operation in flight changes state: finish even if the client left */
    char method[8];
    char path[GW_ADMIN_LOG_PATH_MAX + 1]; /* without the query (never logged: may name ids) */
    char peer[48];                        /* client address, for the access log */
    char rid[32];                         /* "adm_<hex>": the access log's request id */
    char id[PROTO_ID_MAX + 1];            /* {org} or {key} of the path */
    char sub[PROTO_ID_MAX + 1];           /* {group} or {customer} of the path */
    proto_req req;                        /* the operation being built or sent */
    uint32_t has;                         /* PATCH: GW_ADM_F_* named by the body */
    /* Records staged between steps (parsed body, or the merged record to write). */
    proto_org org;
    proto_key key;
    proto_group group;
    proto_customer cust;
    /* Limit states read before a write, printed with the written record. */
    uint8_t state_n;
    proto_limit_state states[PROTO_LIMITS_MAX];
    uint8_t whsec_generated[PROTO_WEBHOOKS_MAX]; /* org: secrets generated now, shown once */
    char api_key[GW_KEY_MAX + 1];                /* create key: the key, shown once */
    /* Usage fan-out (gw_admin_usage.c). */
    uint16_t fan_left;         /* shard replies still to come */
    cg_err fan_transport;      /* first transport failure, CG_ERR_OK if none */
    uint16_t fan_status;       /* first shard status other than OK, 0 if none */
    proto_usage_totals totals; /* summed so far */
    /* Key rotation (gw_admin_keys.c). */
    int64_t grace_s;
    /* Key list fan-out (gw_admin_keys.c): every shard's page, merged on the last reply. */
    proto_key *list; /* heap (freed with x), list_n of list_cap */
    uint32_t list_n;
    uint32_t list_cap;
    uint32_t list_limit;  /* the page size asked for */
    uint8_t list_cut_set; /* a shard has more keys after list_cut */
    char list_cut[PROTO_ID_MAX + 1];
    char list_after[PROTO_ID_MAX + 1];
    /* Pricing fan-out (gw_admin_pricing.c): overrides of every shard. */
    proto_pricing *prices; /* heap (freed with x), price_n entries */
    uint32_t price_n;
    /* Read-modify-write retries (issue 5): attempts refused as stale so far, the step that
     * handles the GET (to start over), and the parsed patch as it was before the first merge
     * (a merge changes x->org/key/group; whsec_patch: x->whsec_generated then). */
    uint8_t rmw_tries;
    gw_admin_next rmw_got;
    uint8_t whsec_patch[PROTO_WEBHOOKS_MAX];
    union {
        proto_org org;
        proto_key key;
        proto_group group;
    } patch;
};

/* ---- gw_admin.c ---- */

/* Free x (ledger done with it) and, if the server is stopping and idle, the server. */
void gw_admin_ctx_done(gw_admin_ctx *x);

/* ---- gw_admin_io.c: responses (each answers x once; later calls only log) ---- */

void gw_admin_log(const gw_admin_ctx *x, int status);
void gw_admin_send(gw_admin_ctx *x, int status, const char *body, size_t len);
void gw_admin_error(gw_admin_ctx *x, int status, const char *type, const char *code,
                    const char *message, const char *param);
/* 400 invalid_request_error / invalid_request with message (names the field). */
void gw_admin_invalid(gw_admin_ctx *x, const char *message);
/* 404 invalid_request_error with code. */
void gw_admin_not_found(gw_admin_ctx *x, const char *code, const char *message);
/* Serialise root (consumed; NULL = out of memory → 500) and send it. */
void gw_admin_send_json(gw_admin_ctx *x, int status, cJSON *root);
/* 200 {"id": id, "deleted": true} (plus "org" when org is non-NULL). */
void gw_admin_send_deleted(gw_admin_ctx *x, const char *org, const char *id);
/*
 * A ledger outcome that is not the step's success or expected NOTFOUND/EXISTS:
 * transport errors (transport != OK), WRONG_SHARD, UNAVAILABLE, TIMEOUT and
 * SHUTDOWN are 503 ledger_unavailable; the rest 500.
 */
void gw_admin_ledger_fail(gw_admin_ctx *x, cg_err transport, int status);
/*
 * The common check of a lookup's reply: NOTFOUND answers 404 with nf_code and
 * nf_message, any other non-OK status goes to gw_admin_ledger_fail. Returns 1
 * if rep->status is OK (nothing answered), else 0 (the request was answered).
 */
int gw_admin_rep_ok(gw_admin_ctx *x, const proto_rep *rep, const char *nf_code,
                    const char *nf_message);

/* ---- gw_admin_io.c: ledger round trips ---- */

/* Start building x->req: zeroed, op set, route "<kind>:<id>". */
void gw_admin_req(gw_admin_ctx *x, proto_op op, const char *kind, const char *id);
/* Same with route "<kind>:<org>/<id>" (groups, customers). */
void gw_admin_req2(gw_admin_ctx *x, proto_op op, const char *kind, const char *org, const char *id);
/*
 * Send x->req to the shard owning its route; next handles the reply. writes:
 * the operation changes state (it is seen through even if the client leaves).
 * Returns 1 if the ledger owns x now; 0 after answering 503 at once.
 */
int gw_admin_submit(gw_admin_ctx *x, gw_admin_next next, int writes);
/* The ledger callback for gw_admin_submit (gw_admin.c). */
void gw_admin_ledger_cb(cg_err err, const proto_rep *rep, void *ud);
/*
 * Fan-out to every shard: send x->req to each with cb (ud x), counting the
 * sends in x->fan_left. Returns 1 if the ledger owns x now (the last reply
 * answers); 0 after answering 503 when no shard could be asked.
 */
int gw_admin_fan_out(gw_admin_ctx *x, gw_ledger_cb cb);
/*
 * In cb: count one shard's reply, keeping the first transport failure and the
 * first non-OK status. Returns 1 when rep is a success whose data cb merges.
 */
int gw_admin_fan_reply(gw_admin_ctx *x, cg_err err, const proto_rep *rep);
/*
 * At the end of cb: once every shard replied, answer (503/500 if any failed,
 * nothing but the log if the client left, else answer(x)) and free x.
 */
void gw_admin_fan_done(gw_admin_ctx *x, void (*answer)(gw_admin_ctx *x));

/* ---- gw_admin_io.c: request bodies and validation ---- */

/* The body as a JSON object (an empty body counts as {}); NULL after answering 400. */
cJSON *gw_admin_body(gw_admin_ctx *x, const cg_http_req *req);
/* Org ids, and the charset of key ids: [a-z0-9_-]{1,PROTO_ID_MAX}. */
int gw_admin_id_ok(const char *s, size_t len);
/* Group ids: [A-Za-z0-9_.-]{1,PROTO_ID_MAX}. */
int gw_admin_group_id_ok(const char *s, size_t len);
/* Customer ids (contracts.md): [A-Za-z0-9_.:@-]{1,PROTO_ID_MAX}. */
int gw_admin_customer_id_ok(const char *s, size_t len);
/*
 * Walk a query string: for each "name=value" pair call fn with both
 * percent-decoded (plus as space). 0 after answering 400 (bad escape, value too
 * long, or fn refused: fn writes the message naming the parameter).
 */
typedef int (*gw_admin_query_fn)(gw_admin_ctx *x, const char *name, const char *value, char *err,
                                 size_t errcap);
int gw_admin_query_each(gw_admin_ctx *x, const char *query, gw_admin_query_fn fn);
/* Model names in a path: 1..PROTO_MODEL_MAX printable ASCII bytes other than space. */
int gw_admin_model_ok(const char *s, size_t len);
/* Field present and not JSON null. */
int gw_admin_given(const cJSON *v);
/* "name": string of at most PROTO_NAME_MAX bytes, or null (= ""). Absent: untouched. */
cg_err gw_admin_name_parse(const cJSON *body, char *out, uint32_t *has, char *err, size_t errcap);
/* "allowed_models": up to PROTO_MODELS_MAX strings of 1..PROTO_MODEL_MAX bytes, or null. */
cg_err gw_admin_models_parse(const cJSON *v, char (*models)[PROTO_MODEL_MAX + 1], uint8_t *n,
                             char *err, size_t errcap);
/* ip_allow / ip_deny at field name: up to PROTO_CIDRS_MAX CIDRs or addresses, or null. */
cg_err gw_admin_cidrs_parse(const cJSON *v, const char *name, proto_cidr *list, uint8_t *n,
                            char *err, size_t errcap);
/* on_low_budget: "reject" | "clamp" (and "inherit" when allow_inherit). */
cg_err gw_admin_low_budget_parse(const cJSON *v, int allow_inherit, uint8_t *out, char *err,
                                 size_t errcap);
/* Fields of SPEC §5 not served yet: accepted only when they say "nothing". */
cg_err gw_admin_unsupported(const cJSON *body, const char *const *names, char *err, size_t errcap);

/* ---- gw_admin_io.c: JSON out (NULL on out-of-memory; items consumed) ---- */

int gw_admin_add(cJSON *o, const char *name, cJSON *item);
int gw_admin_add_item(cJSON *arr, cJSON *item);
/* A string, or null when s is "". */
cJSON *gw_admin_str_or_null(const char *s);
cJSON *gw_admin_models_json(const char (*models)[PROTO_MODEL_MAX + 1], uint8_t n);
cJSON *gw_admin_cidrs_json(const proto_cidr *list, uint8_t n);
/*
 * Limits with their counter state (matched by limit id; a limit without a
 * state shows a fresh one: nothing used, resets at the end of the current
 * calendar period, now for a sliding window, null for lifetime). with_state 0
 * prints definitions only (customer_defaults).
 */
cJSON *gw_admin_limits_json(const proto_limit *limits, uint8_t n, const proto_limit_state *states,
                            uint8_t state_n, uint8_t anchor_day, int with_state);
/* Keep states (for the answer after a write): copy n states into x. */
void gw_admin_keep_states(gw_admin_ctx *x, const proto_limit_state *states, uint8_t n);

/* ---- gw_admin_keys.c: read-modify-write retries (used by orgs and groups too) ---- */
#define GW_ADMIN_RMW_TRIES 5 /* attempts of one read-modify-write before 409 */
/*
 * The PUT of a read-modify-write came back CG_ERR_CONFLICT (its GET went stale). Returns 1
 * if x should start over from its GET (tries left; the caller re-sends it), else answers
 * 409 concurrent_update and returns 0.
 */
int gw_admin_rmw_again(gw_admin_ctx *x);

/* ---- handlers (each returns 1 if the ledger owns x now, 0 if it answered) ---- */

typedef int (*gw_admin_handler_fn)(gw_admin_ctx *x, const cg_http_req *req);

int gw_admin_org_create(gw_admin_ctx *x, const cg_http_req *req);
int gw_admin_org_get(gw_admin_ctx *x, const cg_http_req *req);
int gw_admin_org_patch(gw_admin_ctx *x, const cg_http_req *req);
int gw_admin_org_delete(gw_admin_ctx *x, const cg_http_req *req);
int gw_admin_key_create(gw_admin_ctx *x, const cg_http_req *req);
int gw_admin_key_get(gw_admin_ctx *x, const cg_http_req *req);
int gw_admin_key_patch(gw_admin_ctx *x, const cg_http_req *req);
int gw_admin_key_revoke(gw_admin_ctx *x, const cg_http_req *req);
int gw_admin_key_delete(gw_admin_ctx *x, const cg_http_req *req);
int gw_admin_key_rotate(gw_admin_ctx *x, const cg_http_req *req);
int gw_admin_key_list(gw_admin_ctx *x, const cg_http_req *req);
int gw_admin_pricing_list(gw_admin_ctx *x, const cg_http_req *req);
int gw_admin_pricing_put(gw_admin_ctx *x, const cg_http_req *req);
int gw_admin_group_create(gw_admin_ctx *x, const cg_http_req *req);
int gw_admin_group_get(gw_admin_ctx *x, const cg_http_req *req);
int gw_admin_group_patch(gw_admin_ctx *x, const cg_http_req *req);
int gw_admin_group_delete(gw_admin_ctx *x, const cg_http_req *req);
int gw_admin_customer_put(gw_admin_ctx *x, const cg_http_req *req);
int gw_admin_customer_get(gw_admin_ctx *x, const cg_http_req *req);
int gw_admin_customer_delete(gw_admin_ctx *x, const cg_http_req *req);
int gw_admin_usage_get(gw_admin_ctx *x, const cg_http_req *req);
int gw_admin_usage_records_get(gw_admin_ctx *x, const cg_http_req *req);

#endif
