/*
 * gw_admin_io.c — the admin API's shared plumbing (contracts in
 * gw_admin_int.h): answering a request, one ledger round trip, body parsing,
 * field validators shared by several resources, and JSON output of limits,
 * model lists and IP networks.
 *
 * Invariants: a request is answered at most once (x->c is cleared by the
 * first answer); every answer is logged once; response bodies that may hold a
 * secret are wiped before they are freed.
 */
#include "gw_admin_int.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "cg_cidr.h"
#include "cg_clock.h"
#include "cg_log.h"
#include "cg_period.h"

#define GW_ADMIN_CIDR_BUF 64 /* cg_cidr_format needs 50 */

/* ---- responses ---- */

void gw_admin_log(const gw_admin_ctx *x, int status)
{
    char st[16];

    /* The access log line (docs/contracts.md "Admin access log"): never a body, a query
     * string, a header or a secret. */
    snprintf(st, sizeof(st), "%d", status);
    cg_log(status >= 500 ? CG_LOG_WARN : CG_LOG_INFO, "admin", "method", x->method, "path", x->path,
           "status", st, "peer", x->peer, "request_id", x->rid, NULL);
}

void gw_admin_send(gw_admin_ctx *x, int status, const char *body, size_t len)
{
    gw_admin_log(x, status);
    if (x->c != NULL) {
        cg_http_respond(x->c, status, NULL, "application/json", body, len);
        x->c = NULL;
    }
}

void gw_admin_error(gw_admin_ctx *x, int status, const char *type, const char *code,
                    const char *message, const char *param)
{
    static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                              "\"code\":\"internal_error\",\"param\":null}}";
    size_t len = 0;
    char *body = gw_json_error_body(type, code, message, param, NULL, &len);

    if (body == NULL) {
        gw_admin_send(x, 500, oom, sizeof(oom) - 1);
        return;
    }
    gw_admin_send(x, status, body, len);
    cJSON_free(body);
}

void gw_admin_invalid(gw_admin_ctx *x, const char *message)
{
    gw_admin_error(x, 400, "invalid_request_error", "invalid_request", message, NULL);
}

void gw_admin_not_found(gw_admin_ctx *x, const char *code, const char *message)
{
    gw_admin_error(x, 404, "invalid_request_error", code, message, NULL);
}

void gw_admin_send_json(gw_admin_ctx *x, int status, cJSON *root)
{
    size_t len = 0;
    char *body = root != NULL ? gw_json_print(root, &len) : NULL;

    if (body == NULL) {
        gw_admin_error(x, 500, "server_error", "internal_error", "out of memory", NULL);
    } else {
        gw_admin_send(x, status, body, len);
        OPENSSL_cleanse(body, len); /* may hold a key or webhook secret */
        cJSON_free(body);
    }
    cJSON_Delete(root);
}

void gw_admin_send_deleted(gw_admin_ctx *x, const char *org, const char *id)
{
    cJSON *j = cJSON_CreateObject();
    int ok = j != NULL && gw_admin_add(j, "id", cJSON_CreateString(id)) &&
             (org == NULL || gw_admin_add(j, "org", cJSON_CreateString(org))) &&
             gw_admin_add(j, "deleted", cJSON_CreateTrue());

    if (!ok) {
        cJSON_Delete(j);
        j = NULL;
    }
    gw_admin_send_json(x, 200, j);
}

void gw_admin_ledger_fail(gw_admin_ctx *x, cg_err transport, int status)
{
    cg_err e = transport != CG_ERR_OK ? transport : (cg_err)status;

    if (transport != CG_ERR_OK || e == CG_ERR_WRONG_SHARD || e == CG_ERR_UNAVAILABLE ||
        e == CG_ERR_TIMEOUT || e == CG_ERR_SHUTDOWN) {
        cg_log(CG_LOG_WARN, "admin: ledger unavailable", "path", x->path, "route", x->req.route,
               "err", cg_err_name(e), NULL);
        gw_admin_error(x, 503, "service_unavailable", "ledger_unavailable",
                       "The ledger is unavailable; try again", NULL);
        return;
    }
    cg_log(CG_LOG_ERROR, "admin: ledger refused operation", "path", x->path, "route", x->req.route,
           "err", cg_err_name(e), NULL);
    gw_admin_error(x, 500, "server_error", "internal_error", cg_err_msg(e), NULL);
}

int gw_admin_rep_ok(gw_admin_ctx *x, const proto_rep *rep, const char *nf_code,
                    const char *nf_message)
{
    if (rep->status == CG_ERR_NOTFOUND) {
        gw_admin_not_found(x, nf_code, nf_message);
        return 0;
    }
    if (rep->status != CG_ERR_OK) {
        gw_admin_ledger_fail(x, CG_ERR_OK, rep->status);
        return 0;
    }
    return 1;
}

/* ---- ledger round trips ---- */

void gw_admin_req(gw_admin_ctx *x, proto_op op, const char *kind, const char *id)
{
    memset(&x->req, 0, sizeof(x->req));
    x->req.op = (uint8_t)op;
    snprintf(x->req.route, sizeof(x->req.route), "%s:%s", kind, id);
}

void gw_admin_req2(gw_admin_ctx *x, proto_op op, const char *kind, const char *org, const char *id)
{
    memset(&x->req, 0, sizeof(x->req));
    x->req.op = (uint8_t)op;
    snprintf(x->req.route, sizeof(x->req.route), "%s:%s/%s", kind, org, id);
}

int gw_admin_submit(gw_admin_ctx *x, gw_admin_next next, int writes)
{
    cg_err e;

    x->next = next;
    x->writes = (uint8_t)(writes != 0);
    e = gw_ledger_submit(x->a->ledger, &x->req, gw_admin_ledger_cb, x);
    if (e != CG_ERR_OK) {
        gw_admin_ledger_fail(x, e == CG_ERR_INVAL ? CG_ERR_INTERNAL : e, 0);
        return 0;
    }
    x->a->pending++;
    return 1;
}

int gw_admin_fan_out(gw_admin_ctx *x, gw_ledger_cb cb)
{
    uint16_t n = (uint16_t)x->a->cfg->shard_n;

    for (uint16_t i = 0; i < n; i++) {
        cg_err e = gw_ledger_submit_to(x->a->ledger, i, &x->req, cb, x);
        if (e != CG_ERR_OK) {
            x->fan_transport = e == CG_ERR_INVAL ? CG_ERR_INTERNAL : e;
            break;
        }
        x->a->pending++;
        x->fan_left++;
    }
    if (x->fan_left == 0) {
        gw_admin_ledger_fail(x, x->fan_transport, 0);
        return 0;
    }
    return 1;
}

int gw_admin_fan_reply(gw_admin_ctx *x, cg_err err, const proto_rep *rep)
{
    x->a->pending--;
    x->fan_left--;
    if (err != CG_ERR_OK) {
        x->fan_transport = x->fan_transport != CG_ERR_OK ? x->fan_transport : err;
        return 0;
    }
    if (rep->status != CG_ERR_OK) {
        x->fan_status = x->fan_status != 0 ? x->fan_status : rep->status;
        return 0;
    }
    return 1;
}

void gw_admin_fan_done(gw_admin_ctx *x, void (*answer)(gw_admin_ctx *x))
{
    if (x->fan_left != 0) {
        return;
    }
    /* A shard that failed would leave a hole in the answer: 503, never a partial one. */
    if (x->fan_transport != CG_ERR_OK || x->fan_status != CG_ERR_OK) {
        gw_admin_ledger_fail(x, x->fan_transport, x->fan_status);
    } else if (x->c == NULL) {
        gw_admin_log(x, 499);
    } else {
        answer(x);
    }
    gw_admin_ctx_done(x);
}

/* ---- request bodies and validation ---- */

cJSON *gw_admin_body(gw_admin_ctx *x, const cg_http_req *req)
{
    cJSON *root;

    if (req->body_len == 0) {
        root = cJSON_CreateObject();
    } else {
        root = gw_json_parse(req->body, req->body_len);
    }
    if (root == NULL) {
        gw_admin_error(x, 400, "invalid_request_error", "invalid_json", "Malformed JSON body",
                       NULL);
        return NULL;
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        gw_admin_invalid(x, "the body must be a JSON object");
        return NULL;
    }
    return root;
}

/* Every byte of s[0..len) is alphanumeric (lower case only when lower_only) or in extra. */
static int gw_admin_charset_ok(const char *s, size_t len, int lower_only, const char *extra)
{
    if (len == 0 || len > PROTO_ID_MAX) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 (!lower_only && c >= 'A' && c <= 'Z') || (c != '\0' && strchr(extra, c) != NULL);
        if (!ok) {
            return 0;
        }
    }
    return 1;
}

int gw_admin_id_ok(const char *s, size_t len)
{
    return gw_admin_charset_ok(s, len, 1, "_-");
}

int gw_admin_group_id_ok(const char *s, size_t len)
{
    return gw_admin_charset_ok(s, len, 0, "_.-");
}

int gw_admin_customer_id_ok(const char *s, size_t len)
{
    return gw_admin_charset_ok(s, len, 0, "_.:@-");
}

int gw_admin_model_ok(const char *s, size_t len)
{
    if (len == 0 || len > PROTO_MODEL_MAX) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] <= ' ' || s[i] > '~') {
            return 0;
        }
    }
    return 1;
}

int gw_admin_query_each(gw_admin_ctx *x, const char *query, gw_admin_query_fn fn)
{
    char name[32], value[GW_ADMIN_SEG_MAX + 1], err[GW_ADMIN_ERR_MAX] = "";
    const char *p = query;

    while (*p != '\0') {
        const char *end = strchr(p, '&');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t nlen = eq != NULL ? (size_t)(eq - p) : len;
        if (len > 0) {
            if (!cg_http_pct_decode(p, nlen, 1, name, sizeof(name))) {
                gw_admin_invalid(x, "query: malformed parameter name");
                return 0;
            }
            if (!cg_http_pct_decode(eq != NULL ? eq + 1 : p + len, eq != NULL ? len - nlen - 1 : 0,
                                    1, value, sizeof(value))) {
                snprintf(err, sizeof(err), "%s: malformed or too long", name);
                gw_admin_invalid(x, err);
                return 0;
            }
            if (!fn(x, name, value, err, sizeof(err))) {
                gw_admin_invalid(x, err);
                return 0;
            }
        }
        if (end == NULL) {
            break;
        }
        p = end + 1;
    }
    return 1;
}

int gw_admin_given(const cJSON *v)
{
    return v != NULL && !cJSON_IsNull(v);
}

cg_err gw_admin_name_parse(const cJSON *body, char *out, uint32_t *has, char *err, size_t errcap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "name");

    if (v == NULL) {
        return CG_ERR_OK;
    }
    *has |= GW_ADM_F_NAME;
    if (cJSON_IsNull(v)) {
        out[0] = '\0';
        return CG_ERR_OK;
    }
    if (gw_json_get_string(v, PROTO_NAME_MAX, out, PROTO_NAME_MAX + 1) != CG_ERR_OK) {
        snprintf(err, errcap, "name: must be a string of at most %d bytes", PROTO_NAME_MAX);
        return CG_ERR_INVAL;
    }
    return CG_ERR_OK;
}

cg_err gw_admin_models_parse(const cJSON *v, char (*models)[PROTO_MODEL_MAX + 1], uint8_t *n,
                             char *err, size_t errcap)
{
    char tmp[PROTO_MODELS_MAX][PROTO_MODEL_MAX + 1];
    const cJSON *m;
    uint32_t i = 0;

    if (!gw_admin_given(v)) {
        *n = 0;
        return CG_ERR_OK;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > PROTO_MODELS_MAX) {
        snprintf(err, errcap, "allowed_models: must be an array of at most %d model names",
                 PROTO_MODELS_MAX);
        return CG_ERR_INVAL;
    }
    cJSON_ArrayForEach(m, v)
    {
        if (gw_json_get_string(m, PROTO_MODEL_MAX, tmp[i], sizeof(tmp[i])) != CG_ERR_OK ||
            tmp[i][0] == '\0') {
            snprintf(err, errcap, "allowed_models[%u]: must be a model name of 1..%d bytes",
                     (unsigned)i, PROTO_MODEL_MAX);
            return CG_ERR_INVAL;
        }
        for (uint32_t j = 0; j < i; j++) {
            if (strcmp(tmp[j], tmp[i]) == 0) {
                snprintf(err, errcap, "allowed_models[%u]: duplicate of allowed_models[%u]",
                         (unsigned)i, (unsigned)j);
                return CG_ERR_INVAL;
            }
        }
        i++;
    }
    memcpy(models, tmp, i * sizeof(tmp[0]));
    *n = (uint8_t)i;
    return CG_ERR_OK;
}

cg_err gw_admin_cidrs_parse(const cJSON *v, const char *name, proto_cidr *list, uint8_t *n,
                            char *err, size_t errcap)
{
    proto_cidr tmp[PROTO_CIDRS_MAX];
    const cJSON *c;
    uint32_t i = 0;

    if (!gw_admin_given(v)) {
        *n = 0;
        return CG_ERR_OK;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > PROTO_CIDRS_MAX) {
        snprintf(err, errcap, "%s: must be an array of at most %d CIDRs", name, PROTO_CIDRS_MAX);
        return CG_ERR_INVAL;
    }
    cJSON_ArrayForEach(c, v)
    {
        if (!cJSON_IsString(c) || cg_cidr_parse(c->valuestring, &tmp[i]) != CG_ERR_OK) {
            snprintf(err, errcap,
                     "%s[%u]: must be an IPv4 or IPv6 address or CIDR (\"10.0.0.0/8\") "
                     "with no bits set past the prefix",
                     name, (unsigned)i);
            return CG_ERR_INVAL;
        }
        i++;
    }
    memcpy(list, tmp, i * sizeof(tmp[0]));
    *n = (uint8_t)i;
    return CG_ERR_OK;
}

cg_err gw_admin_low_budget_parse(const cJSON *v, int allow_inherit, uint8_t *out, char *err,
                                 size_t errcap)
{
    int lb = cJSON_IsString(v) ? proto_low_budget_parse(v->valuestring) : -1;

    if (lb < 0 || (lb == PROTO_LOW_BUDGET_INHERIT && !allow_inherit)) {
        snprintf(err, errcap, "on_low_budget: must be one of %s",
                 allow_inherit ? "inherit, reject, clamp" : "reject, clamp");
        return CG_ERR_INVAL;
    }
    *out = (uint8_t)lb;
    return CG_ERR_OK;
}

cg_err gw_admin_unsupported(const cJSON *body, const char *const *names, char *err, size_t errcap)
{
    for (size_t i = 0; names[i] != NULL; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, names[i]);
        if (!gw_admin_given(v) || (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0)) {
            continue;
        }
        snprintf(err, errcap, "%s: not supported yet", names[i]);
        return CG_ERR_INVAL;
    }
    return CG_ERR_OK;
}

/* ---- JSON out ---- */

int gw_admin_add(cJSON *o, const char *name, cJSON *item)
{
    if (item == NULL || !cJSON_AddItemToObject(o, name, item)) {
        cJSON_Delete(item);
        return 0;
    }
    return 1;
}

int gw_admin_add_item(cJSON *arr, cJSON *item)
{
    if (item == NULL || !cJSON_AddItemToArray(arr, item)) {
        cJSON_Delete(item);
        return 0;
    }
    return 1;
}

cJSON *gw_admin_str_or_null(const char *s)
{
    return s[0] == '\0' ? cJSON_CreateNull() : cJSON_CreateString(s);
}

cJSON *gw_admin_models_json(const char (*models)[PROTO_MODEL_MAX + 1], uint8_t n)
{
    cJSON *arr = cJSON_CreateArray();

    for (uint8_t i = 0; arr != NULL && i < n; i++) {
        if (!gw_admin_add_item(arr, cJSON_CreateString(models[i]))) {
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

cJSON *gw_admin_cidrs_json(const proto_cidr *list, uint8_t n)
{
    cJSON *arr = cJSON_CreateArray();
    char buf[GW_ADMIN_CIDR_BUF];

    for (uint8_t i = 0; arr != NULL && i < n; i++) {
        if (cg_cidr_format(&list[i], buf, sizeof(buf)) == 0 ||
            !gw_admin_add_item(arr, cJSON_CreateString(buf))) {
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

/* The state of a limit without a counter yet: nothing used in the current period. */
static void gw_admin_fresh_state(const proto_limit *l, uint8_t anchor_day, int64_t now,
                                 proto_limit_state *st)
{
    cg_period p;

    memset(st, 0, sizeof(*st));
    st->limit_id = l->id;
    if (l->window.kind == CG_WIN_SLIDING) {
        st->period_start_ms = now - (int64_t)l->window.sliding_s * 1000;
        st->period_end_ms = now;
    } else if (cg_period_of(l->window, anchor_day, now, &p) == CG_ERR_OK) {
        st->period_start_ms = p.start_ms;
        st->period_end_ms = p.end_ms;
    }
}

cJSON *gw_admin_limits_json(const proto_limit *limits, uint8_t n, const proto_limit_state *states,
                            uint8_t state_n, uint8_t anchor_day, int with_state)
{
    cJSON *arr = cJSON_CreateArray();
    int64_t now = cg_now_ms();

    for (uint8_t i = 0; arr != NULL && i < n; i++) {
        const proto_limit_state *st = NULL;
        proto_limit_state fresh;
        for (uint8_t j = 0; states != NULL && j < state_n; j++) {
            if (states[j].limit_id == limits[i].id) {
                st = &states[j];
            }
        }
        if (with_state && st == NULL) {
            gw_admin_fresh_state(&limits[i], anchor_day, now, &fresh);
            st = &fresh;
        }
        if (!gw_admin_add_item(arr, gw_json_limit(&limits[i], with_state ? st : NULL))) {
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

void gw_admin_keep_states(gw_admin_ctx *x, const proto_limit_state *states, uint8_t n)
{
    assert(n <= PROTO_LIMITS_MAX);
    memcpy(x->states, states, n * sizeof(states[0]));
    x->state_n = n;
}
