/*
 * gw_admin_customers.c — per-customer limit overrides in the admin API (see
 * gw_admin_int.h and proto_customer).
 *
 *   PUT    /admin/v1/orgs/{org}/customers/{customer}  GET_ORG (404 org_not_found),
 *                                                     PUT_CUSTOMER, GET_CUSTOMER → 200
 *   GET    /admin/v1/orgs/{org}/customers/{customer}  GET_ORG, GET_CUSTOMER → 200 (also
 *                                                     without an override record)
 *   DELETE /admin/v1/orgs/{org}/customers/{customer}  DELETE → 200, 404 customer_not_found
 *
 * A customer's effective limits are the org's customer_defaults merged with
 * the override record by (metric, window) (gw_json_limits_merge, the rule the
 * shard applies too); GET_CUSTOMER gets the defaults inline so the shard can
 * report the state of each. The answer:
 *   {"id", "org", "override": <an override record exists>,
 *    "limits": [{...limit with state..., "override": <this limit comes from it>}]}
 * Customer limit ids are proto_limit_natural_id, so replacing a default by an
 * override keeps the period's counter. A PUT whose merge with the current
 * defaults would exceed PROTO_LIMITS_MAX limits is refused (400).
 */
#include "gw_admin_int.h"

#include <stdio.h>
#include <string.h>

#include "cg_clock.h"
#include "cg_log.h"

/* ---- JSON out ---- */

/* The customer as merged from org defaults and the override record (or none). */
static cJSON *gw_admin_customer_json(const gw_admin_ctx *x, const proto_customer *over,
                                     const proto_limit_state *states, uint8_t state_n)
{
    proto_limit eff[PROTO_LIMITS_MAX];
    uint8_t from_over[PROTO_LIMITS_MAX];
    uint32_t n =
        gw_json_limits_merge(x->org.customer_limits, x->org.customer_limit_n,
                             over ? over->limits : NULL, over ? over->limit_n : 0, eff, from_over);
    cJSON *limits, *item, *j = cJSON_CreateObject();
    uint32_t i = 0;
    int ok;

    n = n > PROTO_LIMITS_MAX ? PROTO_LIMITS_MAX : n;
    limits = gw_admin_limits_json(eff, (uint8_t)n, states, state_n, x->org.billing_anchor_day, 1);
    ok = limits != NULL;
    cJSON_ArrayForEach(item, limits)
    {
        ok = ok && gw_admin_add(item, "override", cJSON_CreateBool(from_over[i++]));
    }
    ok = ok && j != NULL && gw_admin_add(j, "id", cJSON_CreateString(x->sub)) &&
         gw_admin_add(j, "org", cJSON_CreateString(x->id)) &&
         gw_admin_add(j, "override", cJSON_CreateBool(over != NULL));
    if (ok) {
        ok = gw_admin_add(j, "limits", limits);
        limits = NULL;
    }
    cJSON_Delete(limits);
    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* ---- shared steps ---- */

static int gw_admin_customer_got(gw_admin_ctx *x, const proto_rep *rep)
{
    const proto_customer *over;

    if (rep->status != CG_ERR_OK) {
        gw_admin_ledger_fail(x, CG_ERR_OK, rep->status);
        return 0;
    }
    over = rep->u.get_customer.found ? &rep->u.get_customer.customer : NULL;
    gw_admin_send_json(
        x, 200,
        gw_admin_customer_json(x, over, rep->u.get_customer.states, rep->u.get_customer.state_n));
    return 0;
}

/* GET_CUSTOMER with the org's defaults inline (x->org holds the org). */
static int gw_admin_customer_ask(gw_admin_ctx *x)
{
    gw_admin_req2(x, PROTO_OP_GET_CUSTOMER, "customer", x->id, x->sub);
    /* The org's calendar applies to the defaults and to the customer's overrides. */
    x->req.u.get_customer.anchor_day = x->org.billing_anchor_day;
    x->req.u.get_customer.inline_n = x->org.customer_limit_n;
    memcpy(x->req.u.get_customer.inline_limits, x->org.customer_limits,
           sizeof(x->req.u.get_customer.inline_limits));
    return gw_admin_submit(x, gw_admin_customer_got, 0);
}

/* Keep the org of rep in x->org; 0 after answering 404/503. */
static int gw_admin_customer_org(gw_admin_ctx *x, const proto_rep *rep)
{
    if (!gw_admin_rep_ok(x, rep, "org_not_found", "No organization with this id")) {
        return 0;
    }
    x->org = rep->u.get_org.org;
    return 1;
}

/* ---- PUT /admin/v1/orgs/{org}/customers/{customer} ---- */

static int gw_admin_customer_put_done(gw_admin_ctx *x, const proto_rep *rep)
{
    if (rep->status != CG_ERR_OK) {
        gw_admin_ledger_fail(x, CG_ERR_OK, rep->status);
        return 0;
    }
    cg_log(CG_LOG_INFO, "admin: customer override stored", "org", x->id, "customer", x->sub, NULL);
    if (x->c == NULL) {
        gw_admin_log(x, 499); /* written; nobody is waiting for the read-back */
        return 0;
    }
    return gw_admin_customer_ask(x);
}

static int gw_admin_customer_put_org_got(gw_admin_ctx *x, const proto_rep *rep)
{
    char err[GW_ADMIN_ERR_MAX];
    uint32_t n;

    if (!gw_admin_customer_org(x, rep)) {
        return 0;
    }
    n = gw_json_limits_merge(x->org.customer_limits, x->org.customer_limit_n, x->cust.limits,
                             x->cust.limit_n, NULL, NULL);
    if (n > PROTO_LIMITS_MAX) {
        snprintf(err, sizeof(err),
                 "limits: with the org's customer_defaults this customer would have %u limits; "
                 "at most %d",
                 (unsigned)n, PROTO_LIMITS_MAX);
        gw_admin_invalid(x, err);
        return 0;
    }
    x->cust.created_ms = cg_now_ms();
    gw_admin_req2(x, PROTO_OP_PUT_CUSTOMER, "customer", x->id, x->sub);
    x->req.u.put_customer.customer = x->cust;
    return gw_admin_submit(x, gw_admin_customer_put_done, 1);
}

int gw_admin_customer_put(gw_admin_ctx *x, const cg_http_req *req)
{
    static const char *const fields[] = {"limits", NULL};
    char err[GW_ADMIN_ERR_MAX] = "";
    cJSON *body = gw_admin_body(x, req);
    cg_err e;

    if (body == NULL) {
        return 0;
    }
    e = gw_json_check_fields(body, "", fields, err, sizeof(err));
    if (e == CG_ERR_OK) {
        e = gw_json_limits_parse(cJSON_GetObjectItemCaseSensitive(body, "limits"), "limits",
                                 GW_JSON_LIMIT_ALLOW_SLIDING | GW_JSON_LIMIT_NATURAL_IDS,
                                 x->cust.limits, &x->cust.limit_n, err, sizeof(err));
    }
    cJSON_Delete(body);
    if (e != CG_ERR_OK) {
        gw_admin_invalid(x, err);
        return 0;
    }
    snprintf(x->cust.id, sizeof(x->cust.id), "%s", x->sub);
    snprintf(x->cust.org, sizeof(x->cust.org), "%s", x->id);
    gw_admin_req(x, PROTO_OP_GET_ORG, "org", x->id);
    return gw_admin_submit(x, gw_admin_customer_put_org_got, 0);
}

/* ---- GET /admin/v1/orgs/{org}/customers/{customer} ---- */

static int gw_admin_customer_get_org_got(gw_admin_ctx *x, const proto_rep *rep)
{
    return gw_admin_customer_org(x, rep) && gw_admin_customer_ask(x);
}

int gw_admin_customer_get(gw_admin_ctx *x, const cg_http_req *req)
{
    (void)req;
    gw_admin_req(x, PROTO_OP_GET_ORG, "org", x->id);
    return gw_admin_submit(x, gw_admin_customer_get_org_got, 0);
}

/* ---- DELETE /admin/v1/orgs/{org}/customers/{customer} ---- */

static int gw_admin_customer_deleted(gw_admin_ctx *x, const proto_rep *rep)
{
    if (!gw_admin_rep_ok(x, rep, "customer_not_found", "No override for this customer")) {
        return 0;
    }
    cg_log(CG_LOG_INFO, "admin: customer override deleted", "org", x->id, "customer", x->sub, NULL);
    gw_admin_send_deleted(x, x->id, x->sub);
    return 0;
}

int gw_admin_customer_delete(gw_admin_ctx *x, const cg_http_req *req)
{
    (void)req;
    gw_admin_req2(x, PROTO_OP_DELETE, "customer", x->id, x->sub);
    return gw_admin_submit(x, gw_admin_customer_deleted, 1);
}
