/*
 * gw_admin_keys.c — API keys in the admin API (see gw_admin_int.h).
 *
 *   POST   /admin/v1/orgs/{org}/keys  GET_ORG (404 org_not_found), GET_GROUP if a group is
 *                                     named (404 group_not_found), PUT_KEY (create_only) → 201
 *   GET    /admin/v1/keys/{id}        GET_KEY → 200 with limit state
 *   PATCH  /admin/v1/keys/{id}        GET_KEY, GET_GROUP if a group is named, PUT_KEY → 200
 *   POST   /admin/v1/keys/{id}/revoke GET_KEY, PUT_KEY with revoked set → 200 (idempotent)
 *   DELETE /admin/v1/keys/{id}        DELETE → 200 {"id","deleted":true}
 *   POST   /admin/v1/keys/{id}/rotate GET_KEY (409 key_revoked), PUT_KEY with a new secret
 *                                     for the same id → 200 {"id","key","previous_expires_at"}
 *   GET    /admin/v1/orgs/{org}/keys  GET_ORG (404), LIST_KEYS on every shard → 200 page
 *
 * Rotation keeps the key id (it is part of the key string, and AUTH finds the
 * record by it): the record's hash becomes the new secret's, prev_hash the
 * old one's until prev_expires_ms (grace_s, default key_rotate_grace_s; 0 =
 * the old secret stops at once). Only the latest two secrets are ever valid.
 *
 * Listing: every shard returns up to min(limit, PROTO_LIST_KEYS_MAX) of the
 * org's keys after `after`, by id, and whether it has more. The merged page
 * holds only ids up to the smallest last id of a shard that has more (past it
 * that shard's keys are unknown), so pages never skip a key; has_more is set
 * when keys were left out.
 *
 * PATCH, revoke and rotate are read-modify-writes: the PUT expects the
 * revision the GET saw, and a PUT refused as stale (another writer, maybe on
 * another replica, got in between) starts over from the GET, at most
 * GW_ADMIN_RMW_TRIES times (gw_admin_rmw_again), so no update is lost and a
 * PATCH can never put back a secret a rotation replaced.
 *
 * The key string is generated here and shown once, in the 201 body; only its
 * HMAC (gw_key_hash under key_pepper) is stored. A PATCH never touches the
 * hash, the org, created_at or the anchor day. "allowed_models" entries are
 * any names of 1..PROTO_MODEL_MAX bytes: they are not checked against the
 * configured models, since pricing may change after the key is made and the
 * request path answers model_not_found for an unknown model anyway.
 */
#include "gw_admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_clock.h"
#include "cg_log.h"
#include "cg_period.h"

#define GW_ADMIN_EXPIRES_DAYS_MAX 3650
#define GW_ADMIN_DAY_MS 86400000LL
#define GW_ADMIN_MAX_TOKENS_MAX 100000000 /* max_tokens_per_request ceiling */

static const char *const gw_admin_key_field_names[] = {"name",           "limits",
                                                       "expires_at",     "expires_in_days",
                                                       "group",          "customer",
                                                       "allowed_models", "ip_allow",
                                                       "ip_deny",        "max_tokens_per_request",
                                                       "on_low_budget",  NULL};

/* ---- JSON in ---- */

/* expires_at (RFC 3339, future, or null = never) or expires_in_days (1..3650). */
static cg_err gw_admin_expiry_parse(const cJSON *body, int64_t now, proto_key *k, uint32_t *has,
                                    char *err, size_t errcap)
{
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(body, "expires_at");
    const cJSON *days = cJSON_GetObjectItemCaseSensitive(body, "expires_in_days");
    int64_t v;

    if (at == NULL && days == NULL) {
        return CG_ERR_OK;
    }
    *has |= GW_ADM_F_EXPIRES;
    k->expires_ms = 0;
    if (gw_admin_given(at) && gw_admin_given(days)) {
        snprintf(err, errcap, "expires_in_days: cannot be combined with expires_at");
        return CG_ERR_INVAL;
    }
    if (gw_admin_given(at)) {
        if (!cJSON_IsString(at) || cg_time_parse(at->valuestring, &v) != CG_ERR_OK) {
            snprintf(err, errcap, "expires_at: must be an RFC 3339 time");
            return CG_ERR_INVAL;
        }
        if (v <= now) {
            snprintf(err, errcap, "expires_at: must be in the future");
            return CG_ERR_INVAL;
        }
        k->expires_ms = v;
    } else if (gw_admin_given(days)) {
        if (gw_json_get_int(days, GW_ADMIN_EXPIRES_DAYS_MAX, &v) != CG_ERR_OK || v < 1) {
            snprintf(err, errcap, "expires_in_days: must be an integer in 1..%d",
                     GW_ADMIN_EXPIRES_DAYS_MAX);
            return CG_ERR_INVAL;
        }
        k->expires_ms = now + v * GW_ADMIN_DAY_MS;
    }
    return CG_ERR_OK;
}

/* "group" and "customer": an id of their charset, or null (= none). */
static cg_err gw_admin_key_bindings(const cJSON *body, proto_key *k, uint32_t *has, char *err,
                                    size_t errcap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "group");

    if (v != NULL) {
        *has |= GW_ADM_F_GROUP;
        k->group[0] = '\0';
        if (!cJSON_IsNull(v) &&
            (!cJSON_IsString(v) || !gw_admin_group_id_ok(v->valuestring, strlen(v->valuestring)))) {
            snprintf(err, errcap, "group: must be a group id [A-Za-z0-9_.-]{1,%d} or null",
                     PROTO_ID_MAX);
            return CG_ERR_INVAL;
        }
        if (!cJSON_IsNull(v)) {
            snprintf(k->group, sizeof(k->group), "%s", v->valuestring);
        }
    }
    v = cJSON_GetObjectItemCaseSensitive(body, "customer");
    if (v != NULL) {
        *has |= GW_ADM_F_CUSTOMER;
        k->customer[0] = '\0';
        if (!cJSON_IsNull(v) &&
            (!cJSON_IsString(v) ||
             !gw_admin_customer_id_ok(v->valuestring, strlen(v->valuestring)))) {
            snprintf(err, errcap, "customer: must be a customer id [A-Za-z0-9_.:@-]{1,%d} or null",
                     PROTO_ID_MAX);
            return CG_ERR_INVAL;
        }
        if (!cJSON_IsNull(v)) {
            snprintf(k->customer, sizeof(k->customer), "%s", v->valuestring);
        }
    }
    return CG_ERR_OK;
}

/* allowed_models, ip_allow, ip_deny (null = empty). */
static cg_err gw_admin_key_lists(const cJSON *body, proto_key *k, uint32_t *has, char *err,
                                 size_t errcap)
{
    const cJSON *v;
    cg_err e;

    if ((v = cJSON_GetObjectItemCaseSensitive(body, "allowed_models")) != NULL) {
        *has |= GW_ADM_F_MODELS;
        if ((e = gw_admin_models_parse(v, k->models, &k->model_n, err, errcap)) != CG_ERR_OK) {
            return e;
        }
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "ip_allow")) != NULL) {
        *has |= GW_ADM_F_IP_ALLOW;
        e = gw_admin_cidrs_parse(v, "ip_allow", k->ip_allow, &k->ip_allow_n, err, errcap);
        if (e != CG_ERR_OK) {
            return e;
        }
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "ip_deny")) != NULL) {
        *has |= GW_ADM_F_IP_DENY;
        return gw_admin_cidrs_parse(v, "ip_deny", k->ip_deny, &k->ip_deny_n, err, errcap);
    }
    return CG_ERR_OK;
}

/* max_tokens_per_request (null = no cap) and on_low_budget (null = inherit). */
static cg_err gw_admin_key_scalars(const cJSON *body, proto_key *k, uint32_t *has, char *err,
                                   size_t errcap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "max_tokens_per_request");
    int64_t n = 0;

    if (v != NULL) {
        *has |= GW_ADM_F_MAX_TOKENS;
        if (!cJSON_IsNull(v) &&
            (gw_json_get_int(v, GW_ADMIN_MAX_TOKENS_MAX, &n) != CG_ERR_OK || n < 1)) {
            snprintf(err, errcap, "max_tokens_per_request: must be an integer in 1..%d or null",
                     GW_ADMIN_MAX_TOKENS_MAX);
            return CG_ERR_INVAL;
        }
        k->max_tokens_per_request = n;
    }
    v = cJSON_GetObjectItemCaseSensitive(body, "on_low_budget");
    if (v != NULL) {
        *has |= GW_ADM_F_LOW_BUDGET;
        k->on_low_budget = PROTO_LOW_BUDGET_INHERIT;
        if (!cJSON_IsNull(v) &&
            gw_admin_low_budget_parse(v, 1, &k->on_low_budget, err, errcap) != CG_ERR_OK) {
            return CG_ERR_INVAL;
        }
    }
    return CG_ERR_OK;
}

/* Every field of a key body into k, flagged in *has (create and PATCH). */
static cg_err gw_admin_key_fields(const cJSON *body, proto_key *k, uint32_t *has, char *err,
                                  size_t errcap)
{
    const cJSON *v;
    cg_err e;

    if ((e = gw_json_check_fields(body, "", gw_admin_key_field_names, err, errcap)) != CG_ERR_OK ||
        (e = gw_admin_name_parse(body, k->name, has, err, errcap)) != CG_ERR_OK ||
        (e = gw_admin_expiry_parse(body, cg_now_ms(), k, has, err, errcap)) != CG_ERR_OK ||
        (e = gw_admin_key_bindings(body, k, has, err, errcap)) != CG_ERR_OK ||
        (e = gw_admin_key_lists(body, k, has, err, errcap)) != CG_ERR_OK ||
        (e = gw_admin_key_scalars(body, k, has, err, errcap)) != CG_ERR_OK) {
        return e;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "limits")) != NULL) {
        *has |= GW_ADM_F_LIMITS;
        return gw_json_limits_parse(v, "limits", GW_JSON_LIMIT_ALLOW_SLIDING, k->limits,
                                    &k->limit_n, err, errcap);
    }
    return CG_ERR_OK;
}

/* Parse the body of x into x->key / x->has; 0 after answering 400. */
static int gw_admin_key_body(gw_admin_ctx *x, const cg_http_req *req)
{
    char err[GW_ADMIN_ERR_MAX] = "";
    cJSON *body = gw_admin_body(x, req);
    cg_err e;

    if (body == NULL) {
        return 0;
    }
    e = gw_admin_key_fields(body, &x->key, &x->has, err, sizeof(err));
    cJSON_Delete(body);
    if (e != CG_ERR_OK) {
        gw_admin_invalid(x, err);
        return 0;
    }
    return 1;
}

/* ---- JSON out ---- */

/* Key JSON. key_str: the full key (creation only). */
static cJSON *gw_admin_key_json_ex(const proto_key *k, const char *key_str,
                                   const proto_limit_state *states, uint8_t state_n, int with_state)
{
    cJSON *j = cJSON_CreateObject();
    int ok = j != NULL && gw_admin_add(j, "id", cJSON_CreateString(k->id)) &&
             (key_str == NULL || gw_admin_add(j, "key", cJSON_CreateString(key_str))) &&
             gw_admin_add(j, "org", cJSON_CreateString(k->org)) &&
             gw_admin_add(j, "name", cJSON_CreateString(k->name)) &&
             gw_admin_add(j, "created_at", gw_json_time(k->created_ms)) &&
             gw_admin_add(j, "expires_at", gw_json_time(k->expires_ms)) &&
             gw_admin_add(j, "revoked", cJSON_CreateBool(k->revoked)) &&
             gw_admin_add(j, "group", gw_admin_str_or_null(k->group)) &&
             gw_admin_add(j, "customer", gw_admin_str_or_null(k->customer)) &&
             gw_admin_add(j, "allowed_models", gw_admin_models_json(k->models, k->model_n)) &&
             gw_admin_add(j, "ip_allow", gw_admin_cidrs_json(k->ip_allow, k->ip_allow_n)) &&
             gw_admin_add(j, "ip_deny", gw_admin_cidrs_json(k->ip_deny, k->ip_deny_n)) &&
             gw_admin_add(j, "max_tokens_per_request",
                          k->max_tokens_per_request > 0
                              ? cJSON_CreateNumber((double)k->max_tokens_per_request)
                              : cJSON_CreateNull()) &&
             gw_admin_add(j, "on_low_budget",
                          cJSON_CreateString(proto_low_budget_name(k->on_low_budget))) &&
             gw_admin_add(j, "rotated_at", gw_json_time(k->rotated_ms)) &&
             gw_admin_add(j, "previous_expires_at", gw_json_time(k->prev_expires_ms)) &&
             gw_admin_add(j, "limits",
                          gw_admin_limits_json(k->limits, k->limit_n, states, state_n,
                                               k->billing_anchor_day, with_state));

    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* Key JSON with limit state (fresh states for limits without one). */
static cJSON *gw_admin_key_json(const proto_key *k, const char *key_str,
                                const proto_limit_state *states, uint8_t state_n)
{
    return gw_admin_key_json_ex(k, key_str, states, state_n, 1);
}

/* ---- shared steps ---- */

int gw_admin_rmw_again(gw_admin_ctx *x)
{
    char tries[8];

    x->rmw_tries++;
    snprintf(tries, sizeof(tries), "%u", (unsigned)x->rmw_tries);
    if (x->rmw_tries < GW_ADMIN_RMW_TRIES) {
        cg_log(CG_LOG_INFO, "admin: record changed concurrently; reading it again", "path", x->path,
               "route", x->req.route, "tries", tries, NULL);
        return 1;
    }
    cg_log(CG_LOG_WARN, "admin: record kept changing concurrently; giving up", "path", x->path,
           "route", x->req.route, "tries", tries, NULL);
    gw_admin_error(x, 409, "invalid_request_error", "concurrent_update",
                   "The record was changed by other requests while this one was being applied, "
                   "every time it was tried; nothing was written. Retry the request.",
                   NULL);
    return 0;
}

/* Start (or start over) a read-modify-write of key x->id: GET_KEY, then got. A retry is
 * seen through even if the client left (the write it stands for is). */
static int gw_admin_key_rmw(gw_admin_ctx *x, gw_admin_next got)
{
    x->rmw_got = got;
    gw_admin_req(x, PROTO_OP_GET_KEY, "key", x->id);
    return gw_admin_submit(x, got, x->rmw_tries > 0);
}

/* The PUT of x's read-modify-write was refused as stale: read again, or 409 at the last try. */
static int gw_admin_key_conflict(gw_admin_ctx *x)
{
    return gw_admin_rmw_again(x) && gw_admin_key_rmw(x, x->rmw_got);
}

/* NOTFOUND → 404 key_not_found, another failure → 503/500; 1 if rep is OK. */
static int gw_admin_key_found(gw_admin_ctx *x, const proto_rep *rep)
{
    if (!gw_admin_rep_ok(x, rep, "key_not_found", "No API key with this id")) {
        return 0;
    }
    return 1;
}

/* NOTFOUND → 404 group_not_found; 1 if rep is OK. */
static int gw_admin_key_group_found(gw_admin_ctx *x, const proto_rep *rep)
{
    if (!gw_admin_rep_ok(x, rep, "group_not_found",
                         "No group with this id in the key's organization")) {
        return 0;
    }
    return 1;
}

static int gw_admin_key_ask_group(gw_admin_ctx *x, gw_admin_next next)
{
    gw_admin_req2(x, PROTO_OP_GET_GROUP, "group", x->key.org, x->key.group);
    return gw_admin_submit(x, next, 0);
}

/* The written key, with the states read before the write. */
static int gw_admin_key_written(gw_admin_ctx *x, const proto_rep *rep)
{
    if (rep->status == CG_ERR_CONFLICT) {
        return gw_admin_key_conflict(x);
    }
    if (!gw_admin_key_found(x, rep)) {
        return 0;
    }
    cg_log(CG_LOG_INFO, "admin: key updated", "key_id", x->key.id, "org", x->key.org, NULL);
    gw_admin_send_json(x, 200, gw_admin_key_json(&x->key, NULL, x->states, x->state_n));
    return 0;
}

/* PUT x->key, read at revision x->key.revision (0: a record from before revisions). */
static int gw_admin_key_update(gw_admin_ctx *x)
{
    gw_admin_req(x, PROTO_OP_PUT_KEY, "key", x->key.id);
    x->req.u.put_key.create_only = 0;
    x->req.u.put_key.key = x->key;
    x->req.u.put_key.expect_rev = x->key.revision;
    return gw_admin_submit(x, gw_admin_key_written, 1);
}

/* ---- POST /admin/v1/orgs/{org}/keys ---- */

static int gw_admin_key_created(gw_admin_ctx *x, const proto_rep *rep)
{
    if (rep->status != CG_ERR_OK) {
        gw_admin_ledger_fail(x, CG_ERR_OK, rep->status); /* EXISTS: a 64-bit id collided */
        return 0;
    }
    cg_log(CG_LOG_INFO, "admin: key created", "key_id", x->key.id, "org", x->key.org, NULL);
    gw_admin_send_json(x, 201, gw_admin_key_json(&x->key, x->api_key, NULL, 0));
    return 0;
}

/* The org (and group) exist: generate the key and store it. */
static int gw_admin_key_put_new(gw_admin_ctx *x)
{
    proto_key *k = &x->key;
    char id[GW_KEY_ID_MAX + 1];

    if (gw_key_generate(x->api_key, sizeof(x->api_key), id, sizeof(id)) != CG_ERR_OK) {
        gw_admin_error(x, 500, "server_error", "internal_error", "key generation failed", NULL);
        return 0;
    }
    snprintf(k->id, sizeof(k->id), "%s", id);
    gw_key_hash(x->a->cfg->key_pepper, x->api_key, strlen(x->api_key), k->hash);
    k->created_ms = cg_now_ms();
    gw_admin_req(x, PROTO_OP_PUT_KEY, "key", k->id);
    x->req.u.put_key.create_only = 1;
    x->req.u.put_key.key = *k;
    return gw_admin_submit(x, gw_admin_key_created, 1);
}

static int gw_admin_key_new_group_got(gw_admin_ctx *x, const proto_rep *rep)
{
    return gw_admin_key_group_found(x, rep) && gw_admin_key_put_new(x);
}

static int gw_admin_key_org_got(gw_admin_ctx *x, const proto_rep *rep)
{
    if (!gw_admin_rep_ok(x, rep, "org_not_found", "No organization with this id")) {
        return 0;
    }
    x->key.billing_anchor_day = rep->u.get_org.org.billing_anchor_day;
    if (x->key.group[0] != '\0') {
        return gw_admin_key_ask_group(x, gw_admin_key_new_group_got);
    }
    return gw_admin_key_put_new(x);
}

int gw_admin_key_create(gw_admin_ctx *x, const cg_http_req *req)
{
    if (!gw_admin_key_body(x, req)) {
        return 0;
    }
    snprintf(x->key.org, sizeof(x->key.org), "%s", x->id);
    gw_admin_req(x, PROTO_OP_GET_ORG, "org", x->id);
    return gw_admin_submit(x, gw_admin_key_org_got, 0);
}

/* ---- GET /admin/v1/keys/{id} ---- */

static int gw_admin_key_got(gw_admin_ctx *x, const proto_rep *rep)
{
    if (gw_admin_key_found(x, rep)) {
        gw_admin_send_json(x, 200,
                           gw_admin_key_json(&rep->u.get_key.key, NULL, rep->u.get_key.states,
                                             rep->u.get_key.state_n));
    }
    return 0;
}

int gw_admin_key_get(gw_admin_ctx *x, const cg_http_req *req)
{
    (void)req;
    gw_admin_req(x, PROTO_OP_GET_KEY, "key", x->id);
    return gw_admin_submit(x, gw_admin_key_got, 0);
}

/* ---- PATCH /admin/v1/keys/{id} ---- */

/* Apply the fields of the patch (x->key, x->has) to cur, the stored key. */
static void gw_admin_key_merge(const gw_admin_ctx *x, proto_key *cur)
{
    const proto_key *p = &x->key;

    if (x->has & GW_ADM_F_NAME) {
        memcpy(cur->name, p->name, sizeof(cur->name));
    }
    if (x->has & GW_ADM_F_EXPIRES) {
        cur->expires_ms = p->expires_ms;
    }
    if (x->has & GW_ADM_F_GROUP) {
        memcpy(cur->group, p->group, sizeof(cur->group));
    }
    if (x->has & GW_ADM_F_CUSTOMER) {
        memcpy(cur->customer, p->customer, sizeof(cur->customer));
    }
    if (x->has & GW_ADM_F_MODELS) {
        memcpy(cur->models, p->models, sizeof(cur->models));
        cur->model_n = p->model_n;
    }
    if (x->has & GW_ADM_F_IP_ALLOW) {
        memcpy(cur->ip_allow, p->ip_allow, sizeof(cur->ip_allow));
        cur->ip_allow_n = p->ip_allow_n;
    }
    if (x->has & GW_ADM_F_IP_DENY) {
        memcpy(cur->ip_deny, p->ip_deny, sizeof(cur->ip_deny));
        cur->ip_deny_n = p->ip_deny_n;
    }
    if (x->has & GW_ADM_F_MAX_TOKENS) {
        cur->max_tokens_per_request = p->max_tokens_per_request;
    }
    if (x->has & GW_ADM_F_LOW_BUDGET) {
        cur->on_low_budget = p->on_low_budget;
    }
    if (x->has & GW_ADM_F_LIMITS) {
        proto_limit nl[PROTO_LIMITS_MAX];
        memcpy(nl, p->limits, sizeof(nl));
        gw_json_limits_keep_ids(cur->limits, cur->limit_n, nl, p->limit_n);
        memcpy(cur->limits, nl, sizeof(nl));
        cur->limit_n = p->limit_n;
    }
}

static int gw_admin_key_patch_group_got(gw_admin_ctx *x, const proto_rep *rep)
{
    return gw_admin_key_group_found(x, rep) && gw_admin_key_update(x);
}

static int gw_admin_key_patch_got(gw_admin_ctx *x, const proto_rep *rep)
{
    proto_key cur;

    if (!gw_admin_key_found(x, rep)) {
        return 0;
    }
    cur = rep->u.get_key.key;
    gw_admin_keep_states(x, rep->u.get_key.states, rep->u.get_key.state_n);
    x->key = x->patch.key; /* the patch as parsed (an earlier try merged into x->key) */
    gw_admin_key_merge(x, &cur);
    x->key = cur;
    if ((x->has & GW_ADM_F_GROUP) && x->key.group[0] != '\0') {
        return gw_admin_key_ask_group(x, gw_admin_key_patch_group_got);
    }
    return gw_admin_key_update(x);
}

int gw_admin_key_patch(gw_admin_ctx *x, const cg_http_req *req)
{
    if (!gw_admin_key_body(x, req)) {
        return 0;
    }
    x->patch.key = x->key;
    return gw_admin_key_rmw(x, gw_admin_key_patch_got);
}

/* ---- POST /admin/v1/keys/{id}/revoke ---- */

static int gw_admin_key_revoke_got(gw_admin_ctx *x, const proto_rep *rep)
{
    if (!gw_admin_key_found(x, rep)) {
        return 0;
    }
    x->key = rep->u.get_key.key;
    gw_admin_keep_states(x, rep->u.get_key.states, rep->u.get_key.state_n);
    if (x->key.revoked) {
        gw_admin_send_json(x, 200, gw_admin_key_json(&x->key, NULL, x->states, x->state_n));
        return 0;
    }
    x->key.revoked = 1;
    return gw_admin_key_update(x);
}

int gw_admin_key_revoke(gw_admin_ctx *x, const cg_http_req *req)
{
    (void)req;
    return gw_admin_key_rmw(x, gw_admin_key_revoke_got);
}

/* ---- DELETE /admin/v1/keys/{id} ---- */

static int gw_admin_key_deleted(gw_admin_ctx *x, const proto_rep *rep)
{
    if (gw_admin_key_found(x, rep)) {
        cg_log(CG_LOG_INFO, "admin: key deleted", "key_id", x->id, NULL);
        gw_admin_send_deleted(x, NULL, x->id);
    }
    return 0;
}

int gw_admin_key_delete(gw_admin_ctx *x, const cg_http_req *req)
{
    (void)req;
    gw_admin_req(x, PROTO_OP_DELETE, "key", x->id);
    return gw_admin_submit(x, gw_admin_key_deleted, 1);
}

/* ---- POST /admin/v1/keys/{id}/rotate ---- */

#define GW_ADMIN_GRACE_MAX_S 2592000 /* 30 days */

static int gw_admin_key_rotated(gw_admin_ctx *x, const proto_rep *rep)
{
    cJSON *j;

    if (rep->status == CG_ERR_CONFLICT) {
        return gw_admin_key_conflict(x); /* changed since the GET: rotate the fresh record */
    }
    if (!gw_admin_key_found(x, rep)) {
        return 0; /* deleted between the GET and the PUT */
    }
    cg_log(CG_LOG_INFO, "admin: key rotated", "key_id", x->key.id, "org", x->key.org, NULL);
    j = cJSON_CreateObject();
    if (j != NULL &&
        !(gw_admin_add(j, "id", cJSON_CreateString(x->key.id)) &&
          gw_admin_add(j, "key", cJSON_CreateString(x->api_key)) &&
          gw_admin_add(j, "previous_expires_at", gw_json_time(x->key.prev_expires_ms)))) {
        cJSON_Delete(j);
        j = NULL;
    }
    gw_admin_send_json(x, 200, j);
    return 0;
}

static int gw_admin_key_rotate_got(gw_admin_ctx *x, const proto_rep *rep)
{
    proto_key *k = &x->key;
    int64_t now = cg_now_ms();

    if (!gw_admin_key_found(x, rep)) {
        return 0;
    }
    *k = rep->u.get_key.key;
    if (k->revoked) {
        gw_admin_error(x, 409, "invalid_request_error", "key_revoked",
                       "This API key is revoked and cannot be rotated", NULL);
        return 0;
    }
    if (gw_key_generate_for(k->id, x->api_key, sizeof(x->api_key)) != CG_ERR_OK) {
        gw_admin_error(x, 500, "server_error", "internal_error", "key generation failed", NULL);
        return 0;
    }
    if (x->grace_s > 0) {
        memcpy(k->prev_hash, k->hash, sizeof(k->prev_hash));
        k->prev_expires_ms = now + x->grace_s * 1000;
    } else {
        memset(k->prev_hash, 0, sizeof(k->prev_hash));
        k->prev_expires_ms = 0;
    }
    gw_key_hash(x->a->cfg->key_pepper, x->api_key, strlen(x->api_key), k->hash);
    k->rotated_ms = now;
    gw_admin_req(x, PROTO_OP_PUT_KEY, "key", k->id);
    x->req.u.put_key.create_only = 0;
    x->req.u.put_key.key = *k;
    x->req.u.put_key.expect_rev = k->revision;
    return gw_admin_submit(x, gw_admin_key_rotated, 1);
}

int gw_admin_key_rotate(gw_admin_ctx *x, const cg_http_req *req)
{
    static const char *const names[] = {"grace_s", NULL};
    char err[GW_ADMIN_ERR_MAX] = "";
    cJSON *body = gw_admin_body(x, req);
    const cJSON *v;
    int64_t g = x->a->cfg->key_rotate_grace_s;

    if (body == NULL) {
        return 0;
    }
    if (gw_json_check_fields(body, "", names, err, sizeof(err)) != CG_ERR_OK) {
        cJSON_Delete(body);
        gw_admin_invalid(x, err);
        return 0;
    }
    v = cJSON_GetObjectItemCaseSensitive(body, "grace_s");
    if (gw_admin_given(v) && (gw_json_get_int(v, GW_ADMIN_GRACE_MAX_S, &g) != CG_ERR_OK || g < 0)) {
        cJSON_Delete(body);
        snprintf(err, sizeof(err), "grace_s: must be an integer in 0..%d", GW_ADMIN_GRACE_MAX_S);
        gw_admin_invalid(x, err);
        return 0;
    }
    cJSON_Delete(body);
    x->grace_s = g;
    return gw_admin_key_rmw(x, gw_admin_key_rotate_got);
}

/* ---- GET /admin/v1/orgs/{org}/keys ---- */

#define GW_ADMIN_LIST_MAX 1000
#define GW_ADMIN_LIST_DEFAULT 100

static int gw_admin_key_list_param(gw_admin_ctx *x, const char *name, const char *value, char *err,
                                   size_t errcap)
{
    if (strcmp(name, "limit") == 0) {
        char *end = NULL;
        long v = strtol(value, &end, 10);
        if (value[0] == '\0' || *end != '\0' || v < 1 || v > GW_ADMIN_LIST_MAX) {
            snprintf(err, errcap, "limit: must be an integer in 1..%d", GW_ADMIN_LIST_MAX);
            return 0;
        }
        x->list_limit = (uint32_t)v;
        return 1;
    }
    if (strcmp(name, "after") == 0) {
        if (!gw_admin_id_ok(value, strlen(value))) {
            snprintf(err, errcap, "after: must be a key id");
            return 0;
        }
        snprintf(x->list_after, sizeof(x->list_after), "%s", value);
        return 1;
    }
    snprintf(err, errcap, "%.31s: unknown query parameter", name);
    return 0;
}

static int gw_admin_key_cmp(const void *a, const void *b)
{
    return strcmp(((const proto_key *)a)->id, ((const proto_key *)b)->id);
}

static void gw_admin_key_list_answer(gw_admin_ctx *x)
{
    cJSON *root = cJSON_CreateObject(), *data = cJSON_CreateArray();
    uint32_t eligible = 0, take;
    int ok = root != NULL && data != NULL;

    qsort(x->list, x->list_n, sizeof(*x->list), gw_admin_key_cmp);
    while (eligible < x->list_n &&
           (!x->list_cut_set || strcmp(x->list[eligible].id, x->list_cut) <= 0)) {
        eligible++;
    }
    take = eligible < x->list_limit ? eligible : x->list_limit;
    for (uint32_t i = 0; ok && i < take; i++) {
        ok = gw_admin_add_item(data, gw_admin_key_json_ex(&x->list[i], NULL, NULL, 0, 0));
    }
    int more = x->list_cut_set || eligible > take;
    if (ok) {
        ok = gw_admin_add(root, "data", data); /* consumes data */
    } else {
        cJSON_Delete(data);
    }
    data = NULL;
    ok = ok && gw_admin_add(root, "has_more", cJSON_CreateBool(more)) &&
         gw_admin_add(root, "next_after",
                      more && take > 0 ? cJSON_CreateString(x->list[take - 1].id)
                      : more           ? cJSON_CreateString(x->list_after)
                                       : cJSON_CreateNull());
    cJSON_Delete(data);
    if (!ok) {
        cJSON_Delete(root);
        root = NULL;
    }
    gw_admin_send_json(x, 200, root);
}

static void gw_admin_key_list_cb(cg_err err, const proto_rep *rep, void *ud)
{
    gw_admin_ctx *x = ud;

    if (gw_admin_fan_reply(x, err, rep)) {
        uint32_t n = rep->u.list_keys.n;
        for (uint32_t i = 0; i < n && x->list_n < x->list_cap; i++) {
            x->list[x->list_n++] = rep->u.list_keys.keys[i];
        }
        if (rep->u.list_keys.has_more && n > 0) {
            const char *last = rep->u.list_keys.keys[n - 1].id;
            if (!x->list_cut_set || strcmp(last, x->list_cut) < 0) {
                snprintf(x->list_cut, sizeof(x->list_cut), "%s", last);
                x->list_cut_set = 1;
            }
        }
    }
    gw_admin_fan_done(x, gw_admin_key_list_answer);
}

/* The org exists: ask every shard for its page. */
static int gw_admin_key_list_org_got(gw_admin_ctx *x, const proto_rep *rep)
{
    uint16_t n = (uint16_t)x->a->cfg->shard_n;
    uint32_t per = x->list_limit < PROTO_LIST_KEYS_MAX ? x->list_limit : PROTO_LIST_KEYS_MAX;

    if (!gw_admin_rep_ok(x, rep, "org_not_found", "No organization with this id")) {
        return 0;
    }
    x->list_cap = per * n;
    if ((x->list = calloc(x->list_cap, sizeof(*x->list))) == NULL) {
        gw_admin_error(x, 500, "server_error", "internal_error", "out of memory", NULL);
        return 0;
    }
    memset(&x->req, 0, sizeof(x->req));
    x->req.op = PROTO_OP_LIST_KEYS;
    snprintf(x->req.u.list_keys.org, sizeof(x->req.u.list_keys.org), "%s", x->id);
    snprintf(x->req.u.list_keys.after, sizeof(x->req.u.list_keys.after), "%s", x->list_after);
    x->req.u.list_keys.limit = per;
    return gw_admin_fan_out(x, gw_admin_key_list_cb); /* the last reply answers, frees x */
}

int gw_admin_key_list(gw_admin_ctx *x, const cg_http_req *req)
{
    x->list_limit = GW_ADMIN_LIST_DEFAULT;
    if (!gw_admin_query_each(x, req->query, gw_admin_key_list_param)) {
        return 0;
    }
    gw_admin_req(x, PROTO_OP_GET_ORG, "org", x->id);
    return gw_admin_submit(x, gw_admin_key_list_org_got, 0);
}
