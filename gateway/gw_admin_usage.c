/*
 * gw_admin_usage.c — usage totals in the admin API (see gw_admin_int.h).
 *
 *   GET /admin/v1/usage?org=&key=&group=&customer=&model=&from=&to=
 *     → 200 {"org","from","to","requests","prompt_tokens","completion_tokens","cost"}
 *
 * Usage records live on the shard of their key, so the same USAGE_QUERY goes
 * to every shard in parallel and the totals are summed; if any shard fails
 * the answer is 503 ledger_unavailable (a partial sum would be wrong money).
 * Query values are percent-decoded; an empty value means "any" (org is
 * required). from/to are RFC 3339 times or YYYY-MM-DD dates (UTC midnight);
 * from defaults to the epoch, to to now, and the range is [from, to).
 * Time series, provider, granularity and CSV come with issue 5: those
 * parameters are refused (400) rather than silently ignored.
 */
#include "gw_admin_int.h"

#include <stdio.h>
#include <string.h>

#include "cg_clock.h"
#include "cg_log.h"
#include "cg_period.h"

#define GW_ADMIN_QUERY_MAX 2048 /* bytes of the query string */

typedef enum gw_admin_uparam {
    GW_UP_ORG,
    GW_UP_KEY,
    GW_UP_GROUP,
    GW_UP_CUSTOMER,
    GW_UP_MODEL,
    GW_UP_FROM,
    GW_UP_TO,
    GW_UP_FORMAT,
    GW_UP_PROVIDER,
    GW_UP_GRANULARITY,
    GW_UP_COUNT_
} gw_admin_uparam;

static const char *const gw_admin_uparam_names[GW_UP_COUNT_] = {
    "org", "key", "group", "customer", "model", "from", "to", "format", "provider", "granularity",
};

/* ---- the query ---- */

/* An id of the charset ok into out (cap PROTO_ID_MAX + 1). */
static cg_err gw_admin_usage_id(const char *name, const char *v, int (*ok)(const char *, size_t),
                                const char *charset, char *out, char *err, size_t errcap)
{
    if (!ok(v, strlen(v))) {
        snprintf(err, errcap, "%s: must match %s{1,%d}", name, charset, PROTO_ID_MAX);
        return CG_ERR_INVAL;
    }
    snprintf(out, PROTO_ID_MAX + 1, "%s", v);
    return CG_ERR_OK;
}

/* One parameter p with its decoded, non-empty value v into the query q. */
static cg_err gw_admin_usage_param(gw_admin_uparam p, const char *v, proto_req *q, char *err,
                                   size_t errcap)
{
    const char *name = gw_admin_uparam_names[p];
    int64_t *t = p == GW_UP_FROM ? &q->u.usage_query.from_ms : &q->u.usage_query.to_ms;

    switch (p) {
    case GW_UP_ORG:
        return gw_admin_usage_id(name, v, gw_admin_id_ok, "[a-z0-9_-]", q->u.usage_query.org, err,
                                 errcap);
    case GW_UP_KEY:
        return gw_admin_usage_id(name, v, gw_admin_id_ok, "[a-z0-9_-]", q->u.usage_query.key_id,
                                 err, errcap);
    case GW_UP_GROUP:
        return gw_admin_usage_id(name, v, gw_admin_group_id_ok, "[A-Za-z0-9_.-]",
                                 q->u.usage_query.group, err, errcap);
    case GW_UP_CUSTOMER:
        return gw_admin_usage_id(name, v, gw_admin_customer_id_ok, "[A-Za-z0-9_.:@-]",
                                 q->u.usage_query.customer, err, errcap);
    case GW_UP_MODEL:
        if (strlen(v) > PROTO_MODEL_MAX) {
            snprintf(err, errcap, "model: at most %d bytes", PROTO_MODEL_MAX);
            return CG_ERR_INVAL;
        }
        snprintf(q->u.usage_query.model, sizeof(q->u.usage_query.model), "%s", v);
        return CG_ERR_OK;
    case GW_UP_FROM:
    case GW_UP_TO:
        if (cg_time_parse(v, t) != CG_ERR_OK || *t < 0) {
            snprintf(err, errcap, "%s: must be an RFC 3339 time or a date YYYY-MM-DD", name);
            return CG_ERR_INVAL;
        }
        return CG_ERR_OK;
    case GW_UP_FORMAT:
        if (strcmp(v, "json") != 0) {
            snprintf(err, errcap, "format: only json is supported yet");
            return CG_ERR_INVAL;
        }
        return CG_ERR_OK;
    default:
        snprintf(err, errcap, "%s: not supported yet", name);
        return CG_ERR_INVAL;
    }
}

/* One "name=value" pair of the query; seen tracks names already given. */
static cg_err gw_admin_usage_pair(const char *pair, size_t len, unsigned *seen, proto_req *q,
                                  char *err, size_t errcap)
{
    const char *eq = memchr(pair, '=', len);
    size_t nlen = eq != NULL ? (size_t)(eq - pair) : len;
    char name[32], val[GW_ADMIN_SEG_MAX + 1];
    int p;

    if (!gw_admin_pct_decode(pair, nlen, 1, name, sizeof(name))) {
        snprintf(err, errcap, "query: malformed parameter name");
        return CG_ERR_INVAL;
    }
    for (p = 0; p < GW_UP_COUNT_ && strcmp(gw_admin_uparam_names[p], name) != 0; p++) {
    }
    if (p == GW_UP_COUNT_) {
        snprintf(err, errcap, "%s: unknown parameter", name);
        return CG_ERR_INVAL;
    }
    if (*seen & (1u << p)) {
        snprintf(err, errcap, "%s: given twice", name);
        return CG_ERR_INVAL;
    }
    *seen |= 1u << p;
    if (eq == NULL || !gw_admin_pct_decode(eq + 1, len - nlen - 1, 1, val, sizeof(val))) {
        snprintf(err, errcap, "%s: malformed or too long value", name);
        return CG_ERR_INVAL;
    }
    if (val[0] == '\0') {
        return CG_ERR_OK; /* "any" */
    }
    return gw_admin_usage_param((gw_admin_uparam)p, val, q, err, errcap);
}

/* The whole query string into the USAGE_QUERY request q. */
static cg_err gw_admin_usage_parse(const char *query, int64_t now, proto_req *q, char *err,
                                   size_t errcap)
{
    unsigned seen = 0;
    const char *s = query;
    cg_err e;

    if (strlen(query) > GW_ADMIN_QUERY_MAX) {
        snprintf(err, errcap, "query: at most %d bytes", GW_ADMIN_QUERY_MAX);
        return CG_ERR_INVAL;
    }
    while (*s != '\0') {
        const char *amp = strchr(s, '&');
        size_t len = amp != NULL ? (size_t)(amp - s) : strlen(s);
        if (len > 0 && (e = gw_admin_usage_pair(s, len, &seen, q, err, errcap)) != CG_ERR_OK) {
            return e;
        }
        s += len + (amp != NULL);
    }
    if (q->u.usage_query.org[0] == '\0') {
        snprintf(err, errcap, "org: required");
        return CG_ERR_INVAL;
    }
    if (!(seen & (1u << GW_UP_TO)) || q->u.usage_query.to_ms == 0) {
        q->u.usage_query.to_ms = now;
    }
    if (q->u.usage_query.from_ms >= q->u.usage_query.to_ms) {
        snprintf(err, errcap, "from: must be before to");
        return CG_ERR_INVAL;
    }
    return CG_ERR_OK;
}

/* ---- fan-out ---- */

static cJSON *gw_admin_usage_json(const gw_admin_ctx *x)
{
    const proto_usage_totals *t = &x->totals;
    cJSON *j = cJSON_CreateObject();
    int ok =
        j != NULL && gw_admin_add(j, "org", cJSON_CreateString(x->req.u.usage_query.org)) &&
        gw_admin_add(j, "from", gw_json_time(x->req.u.usage_query.from_ms)) &&
        gw_admin_add(j, "to", gw_json_time(x->req.u.usage_query.to_ms)) &&
        gw_admin_add(j, "requests", cJSON_CreateNumber((double)t->requests)) &&
        gw_admin_add(j, "prompt_tokens", cJSON_CreateNumber((double)t->prompt_tokens)) &&
        gw_admin_add(j, "completion_tokens", cJSON_CreateNumber((double)t->completion_tokens)) &&
        gw_admin_add(j, "cost", gw_json_money(t->cost_nusd));

    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* Add one shard's totals; 0 on overflow. */
static int gw_admin_usage_add(proto_usage_totals *sum, const proto_usage_totals *t)
{
    return !__builtin_add_overflow(sum->requests, t->requests, &sum->requests) &&
           !__builtin_add_overflow(sum->prompt_tokens, t->prompt_tokens, &sum->prompt_tokens) &&
           !__builtin_add_overflow(sum->completion_tokens, t->completion_tokens,
                                   &sum->completion_tokens) &&
           !__builtin_add_overflow(sum->cost_nusd, t->cost_nusd, &sum->cost_nusd);
}

/* Every shard has answered (or failed, or was never asked): answer once. */
static void gw_admin_usage_finish(gw_admin_ctx *x)
{
    if (x->fan_transport != CG_ERR_OK || x->fan_status != CG_ERR_OK) {
        gw_admin_ledger_fail(x, x->fan_transport, x->fan_status);
    } else if (x->c == NULL) {
        gw_admin_log(x, 499);
    } else {
        gw_admin_send_json(x, 200, gw_admin_usage_json(x));
    }
}

static void gw_admin_usage_cb(cg_err err, const proto_rep *rep, void *ud)
{
    gw_admin_ctx *x = ud;

    x->a->pending--;
    x->fan_left--;
    if (err != CG_ERR_OK) {
        x->fan_transport = x->fan_transport != CG_ERR_OK ? x->fan_transport : err;
    } else if (rep->status != CG_ERR_OK) {
        x->fan_status = x->fan_status != 0 ? x->fan_status : rep->status;
    } else if (!gw_admin_usage_add(&x->totals, &rep->u.usage.totals)) {
        x->fan_status = CG_ERR_OVERFLOW;
    }
    if (x->fan_left == 0) {
        gw_admin_usage_finish(x);
        gw_admin_ctx_done(x);
    }
}

int gw_admin_usage_get(gw_admin_ctx *x, const cg_http_req *req)
{
    char err[GW_ADMIN_ERR_MAX] = "";
    uint16_t n = (uint16_t)x->a->cfg->shard_n;
    cg_err e;

    memset(&x->req, 0, sizeof(x->req));
    x->req.op = PROTO_OP_USAGE_QUERY;
    if (gw_admin_usage_parse(req->query, cg_now_ms(), &x->req, err, sizeof(err)) != CG_ERR_OK) {
        gw_admin_invalid(x, err);
        return 0;
    }
    for (uint16_t i = 0; i < n; i++) {
        e = gw_ledger_submit_to(x->a->ledger, i, &x->req, gw_admin_usage_cb, x);
        if (e != CG_ERR_OK) {
            x->fan_transport = e == CG_ERR_INVAL ? CG_ERR_INTERNAL : e;
            break;
        }
        x->a->pending++;
        x->fan_left++;
    }
    if (x->fan_left == 0) {
        gw_admin_usage_finish(x);
        return 0;
    }
    return 1; /* the last shard's callback answers */
}
