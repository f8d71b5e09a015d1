/*
 * gw_proxy.c — admission of a proxied request (see gw_proxy.h): the API key,
 * the org and group definitions, the key's static rules, the body and its
 * worst-case estimate. The reservation itself is gw_proxy_rsv.c.
 *
 * Order of checks, as a client observes it (docs/contracts.md "Issue 3"):
 *   1. key: 401 invalid_api_key (missing, malformed, unknown, revoked, or its
 *      org gone), 401 key_expired;
 *   2. client IP: 403 ip_not_allowed;
 *   3. body: 400 invalid_json / invalid_request;
 *   4. model: 400 model_not_found / model_not_priced, 403 model_not_allowed;
 *   5. customer: 400 invalid_request, 403 customer_not_allowed;
 *   6. max_tokens over the key's per-request cap: 400 max_tokens_exceeds_limit;
 *   7. reservation (402 / 429 / 503); skipped with `enforcement off`, which
 *      keeps 1-6 but never reserves, settles or records usage.
 * A malformed key is refused before any ledger lookup. A ledger that cannot
 * be reached for the key or its definitions gives 503 whatever the fail mode:
 * fail-open covers budgets, never permissions.
 *
 * Lookups: the key (cache, else AUTH), its org (GET_ORG) and its group
 * (GET_GROUP) come from per-worker caches when fresh. When the key itself must
 * be looked up, the org and group it had when last seen are fetched at the
 * same time, so a cold request usually costs one parallel round trip.
 */
#include "gw_proxy.h"

#include <assert.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "cg_str.h"
#include "cg_clock.h"
#include "cg_log.h"
#include "gw_body.h"
#include "gw_json.h"
#include "gw_proxy_int.h"
#include "gw_metrics.h"
#include "gw_rules.h"

/* ---- environment ---- */

cg_err gw_proxy_env_init(gw_proxy_env *env, uv_loop_t *loop, const cg_config *cfg)
{
    memset(env, 0, sizeof(*env));
    env->loop = loop;
    env->cfg = cfg;
    gw_keycache_init(&env->keys, cfg->key_cache_ms);
    gw_cache_init(&env->defs, cfg->key_cache_ms);
    if (RAND_bytes((unsigned char *)&env->rid_prefix, sizeof(env->rid_prefix)) != 1) {
        return CG_ERR_INTERNAL;
    }
    return CG_ERR_OK;
}

void gw_proxy_env_fini(gw_proxy_env *env)
{
    gw_lease_fini(env);
    gw_keycache_fini(&env->keys);
    gw_cache_fini(&env->defs);
}

void gw_proxy_reqid(gw_proxy_env *env, char *out)
{
    /* A random 64-bit prefix per worker and a counter: unique within the worker,
     * distinct across workers and replicas with overwhelming probability. */
    if (++env->rid_counter == 0) {
        env->rid_prefix = env->rid_prefix * 6364136223846793005ULL + 1442695040888963407ULL;
    }
    /* "req_%016llx%08x" without printf (once per request) */
    static const char hex[] = "0123456789abcdef";
    uint64_t v = env->rid_prefix;
    uint32_t c = env->rid_counter;
    memcpy(out, "req_", 4);
    for (int i = 15; i >= 0; i--, v >>= 4) {
        out[4 + i] = hex[v & 15];
    }
    for (int i = 7; i >= 0; i--, c >>= 4) {
        out[20 + i] = hex[c & 15];
    }
    out[28] = '\0';
    _Static_assert(GW_REQID_LEN == 28, "request id layout");
}

/* ---- lifetime ---- */

void gw_proxy_ref(gw_proxy *p)
{
    p->refs++;
}

static void gw_proxy_free(gw_proxy *p)
{
    gw_proxy_env *env = p->env;
    if (p->prev) {
        p->prev->next = p->next;
    } else {
        env->active = p->next;
    }
    if (p->next) {
        p->next->prev = p->prev;
    }
    for (uint8_t i = 0; i < GW_SCOPES_MAX; i++) {
        if (p->lease[i] != NULL) {
            gw_lease_return(p->lease[i], &p->lease_worst[i]);
            p->lease[i] = NULL;
        }
    }
    gw_sse_fini(&p->sse);
    free(p->up_body);
    free(p->buf);
    free(p);
    gw_metrics_inflight(-1);
    if (--env->active_n == 0 && env->on_idle != NULL) {
        env->on_idle(env->on_idle_ud);
    }
}

void gw_proxy_unref(gw_proxy *p)
{
    assert(p->refs > 0);
    if (--p->refs == 0) {
        gw_proxy_free(p);
    }
}

static void gw_proxy_retry_closed_cb(uv_handle_t *h)
{
    gw_proxy_unref(h->data);
}

void gw_proxy_done(gw_proxy *p)
{
    if (p->flow_done) {
        return;
    }
    p->flow_done = 1;
    if (p->retry_open) {
        p->retry_open = 0;
        uv_close((uv_handle_t *)&p->retry, gw_proxy_retry_closed_cb);
    }
    gw_proxy_unref(p);
}

void gw_proxy_rid_header(const gw_proxy *p, char *buf, size_t cap)
{
    CG_STR_CAT(buf, cap, "x-capgate-request-id: ", p->rid, "\r\n");
}

void gw_proxy_fail_ex(gw_proxy *p, int status, const char *type, const char *code, const char *msg,
                      const char *param, cJSON *limit, const char *headers)
{
    if (p->conn != NULL) {
        char hdr[256];
        size_t len = 0;
        snprintf(hdr, sizeof(hdr), "x-capgate-request-id: %s\r\n%s", p->rid,
                 headers != NULL ? headers : "");
        char *body = gw_json_error_body(type, code, msg, param, limit, &len);
        limit = NULL;
        if (body != NULL) {
            cg_http_respond(p->conn, status, hdr, "application/json", body, len);
            cJSON_free(body);
        } else {
            cg_http_respond_error(p->conn, status, type, code, msg, hdr);
        }
        p->conn = NULL;
        p->req = NULL;
    }
    cJSON_Delete(limit);
    gw_metrics_request(status, code, p->t0_ms);
    p->answered = 1;
    gw_proxy_done(p);
}

void gw_proxy_fail(gw_proxy *p, int status, const char *type, const char *code, const char *msg)
{
    gw_proxy_fail_ex(p, status, type, code, msg, NULL, NULL, NULL);
}

cg_err gw_proxy_submit(gw_proxy *p, const proto_req *rq, gw_ledger_cb cb, void *ud)
{
    if (p->env->ledger == NULL) {
        return CG_ERR_SHUTDOWN;
    }
    gw_proxy_ref(p);
    cg_err err = gw_ledger_submit(p->env->ledger, rq, cb, ud);
    if (err != CG_ERR_OK) {
        p->refs--; /* the flow reference is still held: never the last */
    }
    return err;
}

void gw_proxy_ledger_down(gw_proxy *p, cg_err err, const char *op)
{
    cg_log(CG_LOG_WARN, "ledger unavailable", "request_id", p->rid, "op", op, "error",
           cg_err_name(err), NULL);
    gw_proxy_fail(p, 503, "service_unavailable", "ledger_unavailable",
                  "The usage ledger is unavailable; please retry shortly.");
}

void gw_proxy_invalid_key(gw_proxy *p)
{
    gw_proxy_fail(p, 401, "authentication_error", "invalid_api_key", "Incorrect API key provided.");
}

static void gw_proxy_bad_request(gw_proxy *p, const char *code, const char *msg, const char *param)
{
    gw_proxy_fail_ex(p, 400, "invalid_request_error", code, msg, param, NULL, NULL);
}

/* ---- client callbacks ---- */

static void gw_proxy_abort_cb(cg_http_conn *c, void *ud)
{
    (void)c;
    gw_proxy *p = ud;
    p->conn = NULL;
    p->req = NULL;
    p->client_gone = 1;
    gw_proxy_client_gone(p);
}

static void gw_proxy_drain_cb(cg_http_conn *c, void *ud)
{
    (void)c;
    gw_proxy_client_drained(ud);
}

/* ---- body, model, customer, max_tokens ---- */

/* Parse and check the body; on failure the client has been answered and NULL returned. */
static cJSON *gw_proxy_parse(gw_proxy *p)
{
    const char *body = p->req->body;
    size_t len = p->req->body_len;
    char msg[192];
    if (gw_body_has_nul_escape(body, len)) {
        gw_proxy_bad_request(p, "invalid_request",
                             "Request body must not contain NUL characters (\\u0000).", NULL);
        return NULL;
    }
    cJSON *j = gw_json_parse(body, len);
    if (j == NULL) {
        gw_proxy_bad_request(p, "invalid_json", "We could not parse the JSON body of your request.",
                             NULL);
        return NULL;
    }
    if (gw_body_check(p->ep, j, !p->env->cfg->reservation_estimate, msg, sizeof(msg)) !=
        CG_ERR_OK) {
        cJSON_Delete(j);
        gw_proxy_bad_request(p, "invalid_request", msg, NULL);
        return NULL;
    }
    return j;
}

/* Model configured, priced and allowed for this key (4). 0 = answered. */
static int gw_proxy_check_model(gw_proxy *p, const char *name)
{
    const cg_config *cfg = p->env->cfg;
    char msg[192];
    p->model = gw_pricing_model(cfg, name); /* this worker's pricing snapshot */
    if (p->model == NULL) {
        snprintf(msg, sizeof(msg), "The model `%.64s` does not exist.", name);
        gw_proxy_bad_request(p, "model_not_found", msg, "model");
        return 0;
    }
    /* Seam for unpriced models: the config requires rates today, so this holds. */
    int priced = p->model->prompt_nusd_per_mtok >= 0 && p->model->completion_nusd_per_mtok >= 0;
    if (!priced && !cfg->allow_unpriced_models) {
        snprintf(msg, sizeof(msg), "The model `%.64s` has no price configured.", name);
        gw_proxy_bad_request(p, "model_not_priced", msg, "model");
        return 0;
    }
    uint8_t gn = p->group.found ? p->group.model_n : 0;
    if (!gw_model_allowed(&p->key, p->group.models, gn, name)) {
        snprintf(msg, sizeof(msg), "This API key is not allowed to use the model `%.64s`.", name);
        gw_proxy_fail_ex(p, 403, "permission_error", "model_not_allowed", msg, "model", NULL, NULL);
        return 0;
    }
    return 1;
}

/* The customer the request counts as (5). 0 = answered. */
static int gw_proxy_check_customer(gw_proxy *p, const cJSON *j)
{
    const char *header = cg_http_req_header(p->req, GW_CUSTOMER_HEADER);
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(j, "user");
    const char *param = NULL;
    char msg[192];
    int is_string = user == NULL || cJSON_IsNull(user) || cJSON_IsString(user);
    const char *uv = user != NULL && cJSON_IsString(user) ? user->valuestring : NULL;
    switch (gw_customer_resolve(header, uv, is_string, p->key.customer, p->customer, &param)) {
    case GW_CUSTOMER_OK:
        return 1;
    case GW_CUSTOMER_INVALID:
        snprintf(msg, sizeof(msg),
                 "%s: a customer id must be 1 to %d characters of "
                 "A-Z a-z 0-9 _ . : @ -",
                 param, GW_CUSTOMER_ID_MAX);
        gw_proxy_bad_request(p, "invalid_request", msg, param);
        return 0;
    default:
        gw_proxy_fail_ex(p, 403, "permission_error", "customer_not_allowed",
                         "This API key may only be used for its own customer.", param, NULL, NULL);
        return 0;
    }
}

/* The key's per-request cap (6), and the bound filled in when the request names none.
 * 0 = answered. */
static int gw_proxy_check_max_tokens(gw_proxy *p, const cJSON *j)
{
    int64_t cap = p->key.max_tokens_per_request;
    if (p->est.choices == 0) {
        return 1; /* embeddings: no completion */
    }
    if (cap > 0 && p->est.named_max > cap) {
        const char *const *f = NULL;
        size_t nf = gw_endpoint_max_fields(p->ep, &f);
        const char *param = nf > 0 ? f[nf - 1] : "max_tokens";
        for (size_t i = 0; i < nf; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, f[i]);
            if (cJSON_IsNumber(v) && v->valuedouble > (double)cap) {
                param = f[i];
            }
        }
        char msg[192];
        snprintf(msg, sizeof(msg), "%s: %lld exceeds this key's limit of %lld tokens per request.",
                 param, (long long)p->est.named_max, (long long)cap);
        gw_proxy_bad_request(p, "max_tokens_exceeds_limit", msg, param);
        return 0;
    }
    if (p->est.named_max < 0 && cap > 0 && cap < p->est.max_tokens) {
        gw_estimate_set_max(p->env->cfg, p->model, &p->est, cap);
    }
    return 1;
}

/* The body sent upstream: the client's bytes, the bound filled in, stream usage asked for. */
static cg_err gw_proxy_build_body(gw_proxy *p, const cJSON *j)
{
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(j, "stream_options");
    p->stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "stream"));
    p->client_usage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage"));
    int chatlike = p->ep == GW_EP_CHAT || p->ep == GW_EP_COMPLETIONS;
    gw_body_edit edit = {
        .set_max = (p->est.named_max < 0 && p->est.choices > 0) ? p->est.max_tokens : -1,
        .include_usage = (uint8_t)(chatlike && p->stream && !p->client_usage),
    };
    unsigned flags = 0;
    if (edit.include_usage) {
        flags |= GW_SSE_STRIP_USAGE;
    }
    if (p->ep == GW_EP_RESPONSES) {
        flags |= GW_SSE_RESPONSES;
    }
    gw_sse_init(&p->sse, flags);
    return gw_body_rewrite(p->ep, p->req->body, p->req->body_len, j, &edit, &p->up_body,
                           &p->up_len);
}

/* Steps 4 to 7 on a parsed, checked body. */
static void gw_proxy_admit(gw_proxy *p, const cJSON *j)
{
    const cg_config *cfg = p->env->cfg;
    char msg[192];
    if (!gw_proxy_check_model(p, cJSON_GetObjectItemCaseSensitive(j, "model")->valuestring) ||
        !gw_proxy_check_customer(p, j)) {
        return;
    }
    if (gw_estimate_request(cfg, p->model, p->ep, j, &p->est, msg, sizeof(msg)) != CG_ERR_OK) {
        gw_proxy_bad_request(p, "invalid_request", msg, NULL);
        return;
    }
    if (!gw_proxy_check_max_tokens(p, j)) {
        return;
    }
    if (gw_proxy_build_body(p, j) != CG_ERR_OK) {
        gw_proxy_fail(p, 500, "server_error", "internal_error", "Out of memory.");
        return;
    }
    if (!cfg->enforcement) {
        /* Enforcement off (benchmarks): no scopes, so no reserve, settle or usage record. */
        gw_proxy_upstream_start(p);
        return;
    }
    gw_proxy_scopes_build(p);
    gw_proxy_reserve_all(p);
}

/* ---- static rules ---- */

/* The client address (see gw_rules.h); 0 when it cannot be known. */
static int gw_proxy_client_ip(const gw_proxy *p, cg_cidr *out)
{
    const cg_config *cfg = p->env->cfg;
    const char *xff[CG_HTTP_HEADERS_MAX];
    size_t n = 0;
    for (uint32_t i = 0; i < p->req->header_n && i < CG_HTTP_HEADERS_MAX; i++) {
        if (strcasecmp(p->req->headers[i].name, "x-forwarded-for") == 0) {
            xff[n++] = p->req->headers[i].value;
        }
    }
    return gw_client_ip(p->req->peer_ip, xff, n, cfg->trusted_proxies, cfg->trusted_proxy_n, out) ==
           CG_ERR_OK;
}

/* The org and group lookups are usable (1), or the client has been answered (0). */
static int gw_proxy_defs_ok(gw_proxy *p)
{
    if (p->org_state == GW_DEF_MISSING) {
        cg_log(CG_LOG_ERROR, "key belongs to an org that does not exist (orphaned key)",
               "request_id", p->rid, "key", p->key.id, "org", p->key.org, NULL);
        gw_proxy_invalid_key(p);
        return 0;
    }
    if (p->org_state != GW_DEF_OK || p->group_state != GW_DEF_OK) {
        gw_proxy_ledger_down(p, CG_ERR_UNAVAILABLE,
                             p->org_state != GW_DEF_OK ? "get_org" : "get_group");
        return 0;
    }
    return 1;
}

static void gw_proxy_models(gw_proxy *p);

/* Key known with its definitions: the rules in order, then the body. */
static void gw_proxy_authorized(gw_proxy *p)
{
    if (p->key.expires_ms != 0 && p->key.expires_ms <= cg_now_ms()) {
        gw_proxy_fail(p, 401, "authentication_error", "key_expired", "This API key has expired.");
        return;
    }
    if (!gw_proxy_defs_ok(p)) {
        return;
    }
    if (p->key.ip_allow_n > 0 || p->key.ip_deny_n > 0) {
        cg_cidr ip;
        int known = gw_proxy_client_ip(p, &ip);
        if (!gw_ip_allowed(&p->key, known ? &ip : NULL)) {
            cg_log(CG_LOG_INFO, "client address not allowed", "request_id", p->rid, "key",
                   p->key.id, "peer", p->req->peer_ip, NULL);
            gw_proxy_fail(p, 403, "permission_error", "ip_not_allowed",
                          "Requests from this address are not allowed for this API key.");
            return;
        }
    }
    if (p->ep == GW_EP_MODELS) {
        gw_proxy_models(p);
        return;
    }
    cJSON *j = gw_proxy_parse(p);
    if (j == NULL) {
        return;
    }
    gw_proxy_admit(p, j);
    cJSON_Delete(j);
}

/* ---- GET /v1/models ---- */

static cJSON *gw_proxy_model_json(const cg_config *cfg, const cg_model_cfg *m)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL || cJSON_AddStringToObject(o, "id", m->name) == NULL ||
        cJSON_AddStringToObject(o, "object", "model") == NULL ||
        cJSON_AddNumberToObject(o, "created", 0) == NULL ||
        cJSON_AddStringToObject(o, "owned_by", cfg->providers[m->provider].name) == NULL) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* The configured models this key may use, in OpenAI's list shape. */
static void gw_proxy_models(gw_proxy *p)
{
    const cg_config *cfg = p->env->cfg;
    uint8_t gn = p->group.found ? p->group.model_n : 0;
    cJSON *root = cJSON_CreateObject();
    cJSON *data = NULL;
    int ok = root != NULL && cJSON_AddStringToObject(root, "object", "list") != NULL &&
             (data = cJSON_AddArrayToObject(root, "data")) != NULL;
    for (uint32_t i = 0; ok && i < cfg->model_n; i++) {
        if (gw_model_allowed(&p->key, p->group.models, gn, cfg->models[i].name)) {
            cJSON *m = gw_proxy_model_json(cfg, &cfg->models[i]);
            ok = m != NULL && cJSON_AddItemToArray(data, m);
        }
    }
    size_t len = 0;
    char *body = ok ? gw_json_print(root, &len) : NULL;
    cJSON_Delete(root);
    if (body == NULL) {
        gw_proxy_fail(p, 500, "server_error", "internal_error", "Out of memory.");
        return;
    }
    char hdr[64];
    gw_proxy_rid_header(p, hdr, sizeof(hdr));
    cg_http_respond(p->conn, 200, hdr, "application/json", body, len);
    cJSON_free(body);
    gw_metrics_request(200, "ok", p->t0_ms);
    p->conn = NULL;
    p->req = NULL;
    p->answered = 1;
    gw_proxy_done(p);
}

/* ---- key, org and group lookups ---- */

static void gw_proxy_lookups_done(gw_proxy *p);

static void gw_proxy_lookup_finished(gw_proxy *p)
{
    assert(p->lookups > 0);
    if (--p->lookups == 0) {
        gw_proxy_lookups_done(p);
    }
}

static void gw_proxy_org_cb(cg_err err, const proto_rep *rep, void *ud)
{
    gw_proxy *p = ud;
    cg_err st = err == CG_ERR_OK ? (cg_err)rep->status : err;
    if (st == CG_ERR_OK && strcmp(rep->u.get_org.org.id, p->org_want) == 0) {
        gw_org_info_from(&rep->u.get_org.org, &p->org);
        gw_cache_org_put(&p->env->defs, &p->org, cg_mono_ms());
        p->org_state = GW_DEF_OK;
    } else if (st == CG_ERR_NOTFOUND) {
        p->org_state = GW_DEF_MISSING;
    } else {
        cg_log(CG_LOG_WARN, "org lookup failed", "request_id", p->rid, "org", p->org_want, "error",
               cg_err_name(st == CG_ERR_OK ? CG_ERR_PROTO : st), NULL);
        p->org_state = GW_DEF_FAILED;
    }
    gw_proxy_lookup_finished(p);
    gw_proxy_unref(p);
}

static void gw_proxy_group_cb(cg_err err, const proto_rep *rep, void *ud)
{
    gw_proxy *p = ud;
    cg_err st = err == CG_ERR_OK ? (cg_err)rep->status : err;
    if (st == CG_ERR_OK && strcmp(rep->u.get_group.group.id, p->group_want) == 0) {
        gw_group_info_from(p->org_want, p->group_want, &rep->u.get_group.group, &p->group);
    } else if (st == CG_ERR_NOTFOUND) {
        /* Logged once per lookup, not per request: the answer is cached. */
        cg_log(CG_LOG_WARN, "key names a group that does not exist; treated as no group",
               "request_id", p->rid, "key", p->key_id, "group", p->group_want, NULL);
        gw_group_info_from(p->org_want, p->group_want, NULL, &p->group);
    } else {
        cg_log(CG_LOG_WARN, "group lookup failed", "request_id", p->rid, "group", p->group_want,
               "error", cg_err_name(st == CG_ERR_OK ? CG_ERR_PROTO : st), NULL);
        p->group_state = GW_DEF_FAILED;
    }
    if (p->group_state != GW_DEF_FAILED) {
        gw_cache_group_put(&p->env->defs, &p->group, cg_mono_ms());
        p->group_state = GW_DEF_OK;
    }
    gw_proxy_lookup_finished(p);
    gw_proxy_unref(p);
}

/* Submit a definition lookup; on failure the state becomes FAILED. */
static void gw_proxy_lookup(gw_proxy *p, int op, const char *route, uint8_t *state)
{
    proto_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.op = (uint8_t)op;
    CG_STR_CAT(rq.route, sizeof(rq.route), route);
    *state = GW_DEF_PENDING;
    p->lookups++;
    cg_err err =
        gw_proxy_submit(p, &rq, op == PROTO_OP_GET_ORG ? gw_proxy_org_cb : gw_proxy_group_cb, p);
    if (err != CG_ERR_OK) {
        *state = GW_DEF_FAILED;
        p->lookups--;
    }
}

/* Make sure the definitions of (org, group) are known or being fetched. Call with no lookup
 * in flight for a different id. */
static void gw_proxy_want_defs(gw_proxy *p, const char *org, const char *group)
{
    int64_t now = cg_mono_ms();
    char route[PROTO_ROUTE_MAX + 1];
    if (p->org_state == GW_DEF_NONE || strcmp(p->org_want, org) != 0) {
        CG_STR_CAT(p->org_want, sizeof(p->org_want), org);
        const gw_org_info *o = gw_cache_org_get(&p->env->defs, org, now);
        if (o != NULL) {
            p->org = *o;
            p->org_state = GW_DEF_OK;
        } else {
            CG_STR_CAT(route, sizeof(route), "org:", org);
            gw_proxy_lookup(p, PROTO_OP_GET_ORG, route, &p->org_state);
        }
    }
    if (p->group_state != GW_DEF_NONE && strcmp(p->group_want, group) == 0) {
        return;
    }
    CG_STR_CAT(p->group_want, sizeof(p->group_want), group);
    const gw_group_info *g = group[0] ? gw_cache_group_get(&p->env->defs, org, group, now) : NULL;
    if (group[0] == '\0' || g != NULL) {
        if (g != NULL) {
            p->group = *g;
        } else {
            gw_group_info_from(org, "", NULL, &p->group);
        }
        p->group_state = GW_DEF_OK;
        return;
    }
    CG_STR_CAT(route, sizeof(route), "group:", org, "/", group);
    gw_proxy_lookup(p, PROTO_OP_GET_GROUP, route, &p->group_state);
}

/* Every lookup in flight has answered. */
static void gw_proxy_lookups_done(gw_proxy *p)
{
    if (p->client_gone) {
        gw_proxy_done(p);
        return;
    }
    if (!p->have_key) {
        cg_err st = (cg_err)p->auth_st;
        if (st == CG_ERR_UNAUTHORIZED || st == CG_ERR_NOTFOUND) {
            gw_proxy_invalid_key(p);
        } else {
            gw_proxy_ledger_down(p, st, "auth");
        }
        return;
    }
    /* The definitions fetched alongside the key were for what it was when last seen. */
    if (strcmp(p->org_want, p->key.org) != 0 || strcmp(p->group_want, p->key.group) != 0 ||
        p->org_state == GW_DEF_NONE || p->group_state == GW_DEF_NONE) {
        gw_proxy_want_defs(p, p->key.org, p->key.group);
        if (p->lookups > 0) {
            return;
        }
    }
    gw_proxy_authorized(p);
}

static void gw_proxy_auth_cb(cg_err err, const proto_rep *rep, void *ud)
{
    gw_proxy *p = ud;
    assert(p->refs >= 2); /* this operation's reference and the flow's */
    cg_err st = err == CG_ERR_OK ? (cg_err)rep->status : err;
    if (st == CG_ERR_OK && !rep->u.auth.key.revoked && strcmp(rep->u.auth.key.id, p->key_id) == 0) {
        p->key = rep->u.auth.key;
        p->have_key = 1;
        gw_keycache_put(&p->env->keys, &p->key, p->key_hash, cg_mono_ms());
    } else {
        p->auth_st = (uint16_t)(st == CG_ERR_OK ? CG_ERR_UNAUTHORIZED : st);
    }
    gw_proxy_lookup_finished(p);
    gw_proxy_unref(p);
}

/* The presented key string (Bearer or api-key header); NULL if none. */
static const char *gw_proxy_key_of(const cg_http_req *req)
{
    const char *h = cg_http_req_header(req, "authorization");
    if (h != NULL) {
        if (strncasecmp(h, "Bearer ", 7) != 0) {
            return NULL;
        }
        h += 7;
        while (*h == ' ') {
            h++;
        }
        return h;
    }
    return cg_http_req_header(req, "api-key");
}

/* Look the key up (unless cached) and, alongside, the definitions it had when last seen. */
static void gw_proxy_auth_lookup(gw_proxy *p)
{
    proto_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.op = PROTO_OP_AUTH;
    CG_STR_CAT(rq.route, sizeof(rq.route), "key:", p->key_id);
    memcpy(rq.u.auth.hash, p->key_hash, sizeof(rq.u.auth.hash));
    p->lookups++;
    cg_err err = gw_proxy_submit(p, &rq, gw_proxy_auth_cb, p);
    if (err != CG_ERR_OK) {
        p->lookups--;
        gw_proxy_ledger_down(p, err, "auth");
        return;
    }
    const proto_key *hint = gw_keycache_hint(&p->env->keys, p->key_id, p->key_hash);
    if (hint != NULL) {
        gw_proxy_want_defs(p, hint->org, hint->group);
    }
}

static void gw_proxy_authenticate(gw_proxy *p)
{
    const char *key = gw_proxy_key_of(p->req);
    if (key == NULL || *key == '\0') {
        gw_proxy_fail(p, 401, "authentication_error", "invalid_api_key",
                      "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.");
        return;
    }
    size_t len = strlen(key);
    if (gw_key_parse(key, len, p->key_id, sizeof(p->key_id)) != CG_ERR_OK) {
        gw_proxy_invalid_key(p);
        return;
    }
    gw_key_hash(p->env->cfg->key_pepper, key, len, p->key_hash);
    const proto_key *cached = gw_keycache_get(&p->env->keys, p->key_id, p->key_hash, cg_mono_ms());
    gw_proxy_ref(p); /* lookups_done may end the flow before this function returns */
    if (cached != NULL) {
        p->key = *cached;
        p->have_key = 1;
        gw_proxy_want_defs(p, p->key.org, p->key.group);
    } else {
        gw_proxy_auth_lookup(p);
    }
    if (p->lookups == 0 && !p->answered) {
        gw_proxy_lookups_done(p);
    }
    gw_proxy_unref(p);
}

void gw_proxy_start(gw_proxy_env *env, cg_http_conn *c, const cg_http_req *req, int ep)
{
    gw_proxy *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        cg_http_respond_error(c, 503, "service_unavailable", "overloaded", "Out of memory.", NULL);
        return;
    }
    p->env = env;
    p->refs = 1;
    p->conn = c;
    p->req = req;
    p->ep = (uint8_t)ep;
    p->t0_ms = cg_mono_ms();
    p->next = env->active;
    if (env->active) {
        env->active->prev = p;
    }
    env->active = p;
    env->active_n++;
    gw_metrics_inflight(1);
    gw_proxy_reqid(env, p->rid);
    cg_http_conn_set_callbacks(c, gw_proxy_abort_cb, gw_proxy_drain_cb, p);
    if (env->closing || env->ledger == NULL || env->upstream == NULL) {
        gw_proxy_fail(p, 503, "service_unavailable", "shutting_down",
                      "The gateway is shutting down; please retry.");
        return;
    }
    gw_proxy_authenticate(p);
}

void gw_proxy_cancel_all(gw_proxy_env *env)
{
    gw_proxy *p = env->active;
    env->closing = 1;
    while (p != NULL) {
        gw_proxy_ref(p); /* keep p (and so p->next's link) valid across the call */
        gw_proxy_force(p);
        gw_proxy *next = p->next;
        gw_proxy_unref(p);
        p = next;
    }
}
