/*
 * gw_admin_groups.c — groups (teams / projects: one budget shared by several
 * keys) in the admin API (see gw_admin_int.h).
 *
 *   POST   /admin/v1/orgs/{org}/groups          GET_ORG (404 org_not_found), then
 *                                               PUT_GROUP (create_only) → 201, 409 group_exists
 *   GET    /admin/v1/orgs/{org}/groups/{group}  GET_GROUP → 200 with limit state
 *   PATCH  /admin/v1/orgs/{org}/groups/{group}  GET_GROUP, then PUT_GROUP → 200
 *   DELETE /admin/v1/orgs/{org}/groups/{group}  DELETE → 200 {"id","org","deleted":true}
 *
 * Group ids are [A-Za-z0-9_.-]{1,64}; the billing anchor day is copied from
 * the org at creation. Deleting a group does not touch the keys naming it
 * (the ledger has no index of them); the request path decides what such a
 * key gets.
 *
 * PATCH is a read-modify-write whose PUT expects the revision its GET saw; a
 * PUT refused as stale starts over from the GET (gw_admin_rmw_again).
 */
#include "gw_admin_int.h"

#include <stdio.h>
#include <string.h>

#include "cg_clock.h"
#include "cg_log.h"

/* ---- JSON in and out ---- */

/* name, allowed_models, limits of a group body into g, flagged in *has. */
static cg_err gw_admin_group_fields(const cJSON *body, proto_group *g, uint32_t *has, char *err,
                                    size_t errcap)
{
    const cJSON *v;
    cg_err e;

    if ((e = gw_admin_name_parse(body, g->name, has, err, errcap)) != CG_ERR_OK) {
        return e;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "allowed_models")) != NULL) {
        *has |= GW_ADM_F_MODELS;
        if ((e = gw_admin_models_parse(v, g->models, &g->model_n, err, errcap)) != CG_ERR_OK) {
            return e;
        }
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "limits")) != NULL) {
        *has |= GW_ADM_F_LIMITS;
        return gw_json_limits_parse(v, "limits", GW_JSON_LIMIT_ALLOW_SLIDING, g->limits,
                                    &g->limit_n, err, errcap);
    }
    return CG_ERR_OK;
}

/* Parse the body of x into x->group / x->has (id only when with_id); 0 after answering 400. */
static int gw_admin_group_body(gw_admin_ctx *x, const cg_http_req *req, int with_id)
{
    static const char *const fields[] = {"id", "name", "allowed_models", "limits", NULL};
    char err[GW_ADMIN_ERR_MAX] = "";
    cJSON *body = gw_admin_body(x, req);
    const cJSON *v;
    cg_err e;

    if (body == NULL) {
        return 0;
    }
    e = gw_json_check_fields(body, "", with_id ? fields : fields + 1, err, sizeof(err));
    v = cJSON_GetObjectItemCaseSensitive(body, "id");
    if (e == CG_ERR_OK && with_id) {
        if (!cJSON_IsString(v) || !gw_admin_group_id_ok(v->valuestring, strlen(v->valuestring))) {
            snprintf(err, sizeof(err), "id: required, must match [A-Za-z0-9_.-]{1,%d}",
                     PROTO_ID_MAX);
            e = CG_ERR_INVAL;
        } else {
            snprintf(x->group.id, sizeof(x->group.id), "%s", v->valuestring);
        }
    }
    if (e == CG_ERR_OK) {
        e = gw_admin_group_fields(body, &x->group, &x->has, err, sizeof(err));
    }
    cJSON_Delete(body);
    if (e != CG_ERR_OK) {
        gw_admin_invalid(x, err);
        return 0;
    }
    return 1;
}

static cJSON *gw_admin_group_json(const proto_group *g, const proto_limit_state *states,
                                  uint8_t state_n)
{
    cJSON *j = cJSON_CreateObject();
    int ok = j != NULL && gw_admin_add(j, "id", cJSON_CreateString(g->id)) &&
             gw_admin_add(j, "org", cJSON_CreateString(g->org)) &&
             gw_admin_add(j, "name", cJSON_CreateString(g->name)) &&
             gw_admin_add(j, "created_at", gw_json_time(g->created_ms)) &&
             gw_admin_add(j, "allowed_models", gw_admin_models_json(g->models, g->model_n)) &&
             gw_admin_add(j, "limits",
                          gw_admin_limits_json(g->limits, g->limit_n, states, state_n,
                                               g->billing_anchor_day, 1));

    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* NOTFOUND → 404 group_not_found, another failure → 503/500; 1 if rep is OK. */
static int gw_admin_group_found(gw_admin_ctx *x, const proto_rep *rep)
{
    if (!gw_admin_rep_ok(x, rep, "group_not_found", "No group with this id in this organization")) {
        return 0;
    }
    return 1;
}

/* ---- POST /admin/v1/orgs/{org}/groups ---- */

static int gw_admin_group_created(gw_admin_ctx *x, const proto_rep *rep)
{
    if (rep->status == CG_ERR_EXISTS) {
        gw_admin_error(x, 409, "invalid_request_error", "group_exists",
                       "A group with this id already exists in this organization", "id");
        return 0;
    }
    if (rep->status != CG_ERR_OK) {
        gw_admin_ledger_fail(x, CG_ERR_OK, rep->status);
        return 0;
    }
    cg_log(CG_LOG_INFO, "admin: group created", "org", x->group.org, "group", x->group.id, NULL);
    gw_admin_send_json(x, 201, gw_admin_group_json(&x->group, NULL, 0));
    return 0;
}

static int gw_admin_group_org_got(gw_admin_ctx *x, const proto_rep *rep)
{
    if (!gw_admin_rep_ok(x, rep, "org_not_found", "No organization with this id")) {
        return 0;
    }
    x->group.billing_anchor_day = rep->u.get_org.org.billing_anchor_day;
    x->group.created_ms = cg_now_ms();
    gw_admin_req2(x, PROTO_OP_PUT_GROUP, "group", x->group.org, x->group.id);
    x->req.u.put_group.create_only = 1;
    x->req.u.put_group.group = x->group;
    return gw_admin_submit(x, gw_admin_group_created, 1);
}

int gw_admin_group_create(gw_admin_ctx *x, const cg_http_req *req)
{
    if (!gw_admin_group_body(x, req, 1)) {
        return 0;
    }
    snprintf(x->group.org, sizeof(x->group.org), "%s", x->id);
    gw_admin_req(x, PROTO_OP_GET_ORG, "org", x->id);
    return gw_admin_submit(x, gw_admin_group_org_got, 0);
}

/* ---- GET /admin/v1/orgs/{org}/groups/{group} ---- */

static int gw_admin_group_got(gw_admin_ctx *x, const proto_rep *rep)
{
    if (gw_admin_group_found(x, rep)) {
        gw_admin_send_json(x, 200,
                           gw_admin_group_json(&rep->u.get_group.group, rep->u.get_group.states,
                                               rep->u.get_group.state_n));
    }
    return 0;
}

int gw_admin_group_get(gw_admin_ctx *x, const cg_http_req *req)
{
    (void)req;
    gw_admin_req2(x, PROTO_OP_GET_GROUP, "group", x->id, x->sub);
    return gw_admin_submit(x, gw_admin_group_got, 0);
}

/* ---- PATCH /admin/v1/orgs/{org}/groups/{group} ---- */

/* Start (or start over) the PATCH's read: GET_GROUP, then x->rmw_got. */
static int gw_admin_group_patch_read(gw_admin_ctx *x)
{
    gw_admin_req2(x, PROTO_OP_GET_GROUP, "group", x->id, x->sub);
    return gw_admin_submit(x, x->rmw_got, x->rmw_tries > 0);
}

static int gw_admin_group_patched(gw_admin_ctx *x, const proto_rep *rep)
{
    if (rep->status == CG_ERR_CONFLICT) {
        return gw_admin_rmw_again(x) && gw_admin_group_patch_read(x);
    }
    if (gw_admin_group_found(x, rep)) {
        cg_log(CG_LOG_INFO, "admin: group updated", "org", x->group.org, "group", x->group.id,
               NULL);
        gw_admin_send_json(x, 200, gw_admin_group_json(&x->group, x->states, x->state_n));
    }
    return 0;
}

static int gw_admin_group_patch_got(gw_admin_ctx *x, const proto_rep *rep)
{
    proto_group cur;

    if (!gw_admin_group_found(x, rep)) {
        return 0;
    }
    cur = rep->u.get_group.group;
    gw_admin_keep_states(x, rep->u.get_group.states, rep->u.get_group.state_n);
    x->group = x->patch.group; /* the patch as parsed (an earlier try's merge changed it) */
    if (x->has & GW_ADM_F_NAME) {
        memcpy(cur.name, x->group.name, sizeof(cur.name));
    }
    if (x->has & GW_ADM_F_MODELS) {
        memcpy(cur.models, x->group.models, sizeof(cur.models));
        cur.model_n = x->group.model_n;
    }
    if (x->has & GW_ADM_F_LIMITS) {
        gw_json_limits_keep_ids(cur.limits, cur.limit_n, x->group.limits, x->group.limit_n);
        memcpy(cur.limits, x->group.limits, sizeof(cur.limits));
        cur.limit_n = x->group.limit_n;
    }
    x->group = cur;
    gw_admin_req2(x, PROTO_OP_PUT_GROUP, "group", cur.org, cur.id);
    x->req.u.put_group.create_only = 0;
    x->req.u.put_group.group = cur;
    x->req.u.put_group.expect_rev = cur.revision;
    return gw_admin_submit(x, gw_admin_group_patched, 1);
}

int gw_admin_group_patch(gw_admin_ctx *x, const cg_http_req *req)
{
    if (!gw_admin_group_body(x, req, 0)) {
        return 0;
    }
    x->patch.group = x->group;
    x->rmw_got = gw_admin_group_patch_got;
    return gw_admin_group_patch_read(x);
}

/* ---- DELETE /admin/v1/orgs/{org}/groups/{group} ---- */

static int gw_admin_group_deleted(gw_admin_ctx *x, const proto_rep *rep)
{
    if (gw_admin_group_found(x, rep)) {
        cg_log(CG_LOG_INFO, "admin: group deleted", "org", x->id, "group", x->sub, NULL);
        gw_admin_send_deleted(x, x->id, x->sub);
    }
    return 0;
}

int gw_admin_group_delete(gw_admin_ctx *x, const cg_http_req *req)
{
    (void)req;
    gw_admin_req2(x, PROTO_OP_DELETE, "group", x->id, x->sub);
    return gw_admin_submit(x, gw_admin_group_deleted, 1);
}
