/*
 * gw_proxy.c — admission half of the chat completion flow: authentication,
 * body validation, worst-case estimate and reservation (see gw_proxy.h).
 *
 * Order of checks, as a client observes it: 401 (key missing, malformed,
 * unknown, revoked, expired) before 400 (JSON, fields, model) before 402 (the
 * reservation refused) before 503 (ledger unreachable, fail-closed). A
 * malformed key is refused before any ledger lookup.
 */
#include "gw_proxy.h"

#include <assert.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "cg_clock.h"
#include "cg_log.h"
#include "cg_money.h"
#include "cg_period.h"
#include "gw_json.h"
#include "gw_proxy_int.h"

/* ---- environment ---- */

cg_err gw_proxy_env_init(gw_proxy_env *env, uv_loop_t *loop, const cg_config *cfg)
{
    memset(env, 0, sizeof(*env));
    env->loop = loop;
    env->cfg = cfg;
    gw_keycache_init(&env->keys, cfg->key_cache_ms);
    if (RAND_bytes((unsigned char *)&env->rid_prefix, sizeof(env->rid_prefix)) != 1) {
        return CG_ERR_INTERNAL;
    }
    return CG_ERR_OK;
}

void gw_proxy_env_fini(gw_proxy_env *env)
{
    gw_keycache_fini(&env->keys);
}

void gw_proxy_reqid(gw_proxy_env *env, char *out)
{
    /* A random 64-bit prefix per worker and a counter: unique within the worker,
     * distinct across workers and replicas with overwhelming probability. */
    if (++env->rid_counter == 0) {
        env->rid_prefix = env->rid_prefix * 6364136223846793005ULL + 1442695040888963407ULL;
    }
    snprintf(out, GW_REQID_LEN + 1, "req_%016llx%08x", (unsigned long long)env->rid_prefix,
             env->rid_counter);
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
    gw_sse_fini(&p->sse);
    free(p->up_body);
    free(p->buf);
    free(p);
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
    snprintf(buf, cap, "x-capgate-request-id: %s\r\n", p->rid);
}

void gw_proxy_fail(gw_proxy *p, int status, const char *type, const char *code, const char *msg)
{
    if (p->conn != NULL) {
        char hdr[64];
        gw_proxy_rid_header(p, hdr, sizeof(hdr));
        cg_http_respond_error(p->conn, status, type, code, msg, hdr);
        p->conn = NULL;
        p->req = NULL;
    }
    p->answered = 1;
    gw_proxy_done(p);
}

cg_err gw_proxy_submit(gw_proxy *p, const proto_req *rq, gw_ledger_cb cb)
{
    if (p->env->ledger == NULL) {
        return CG_ERR_SHUTDOWN;
    }
    gw_proxy_ref(p);
    cg_err err = gw_ledger_submit(p->env->ledger, rq, cb, p);
    if (err != CG_ERR_OK) {
        p->refs--; /* the flow reference is still held: never the last */
    }
    return err;
}

static void gw_proxy_ledger_down(gw_proxy *p, cg_err err, const char *op)
{
    cg_log(CG_LOG_WARN, "ledger unavailable", "request_id", p->rid, "op", op, "error",
           cg_err_name(err), NULL);
    gw_proxy_fail(p, 503, "service_unavailable", "ledger_unavailable",
                  "The usage ledger is unavailable; please retry shortly.");
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

/* ---- reservation ---- */

static const char *gw_window_adjective(cg_window w, char *buf, size_t cap)
{
    switch (w.kind) {
    case CG_WIN_LIFETIME:
        return "Lifetime";
    case CG_WIN_DAY:
        return "Daily";
    case CG_WIN_WEEK:
        return "Weekly";
    case CG_WIN_MONTH:
        return "Monthly";
    default:
        snprintf(buf, cap, "Rolling ");
        cg_window_format(w, buf + 8, cap - 8);
        return buf;
    }
}

static void gw_proxy_budget_message(const gw_proxy *p, const proto_refusal *r, char *out,
                                    size_t cap)
{
    char wbuf[48], max_s[48], what[96];
    const char *adj = gw_window_adjective(r->window, wbuf, sizeof(wbuf));
    if (r->metric == PROTO_METRIC_COST) {
        max_s[0] = '$';
        cg_money_format(r->max, 2, max_s + 1, sizeof(max_s) - 1);
        snprintf(what, sizeof(what), "spend cap of %s", max_s);
    } else {
        snprintf(what, sizeof(what), "%s quota of %lld %s",
                 r->metric == PROTO_METRIC_TOKENS ? "token" : "request", (long long)r->max,
                 r->metric == PROTO_METRIC_TOKENS ? "tokens" : "requests");
    }
    if (r->used >= r->max) {
        snprintf(out, cap, "%s %s reached for key %.100s", adj, what, p->key.name);
    } else {
        char lower[48];
        snprintf(lower, sizeof(lower), "%s", adj);
        lower[0] = (char)(lower[0] - 'A' + 'a');
        snprintf(out, cap, "Request would exceed the %s %s for key %.100s", lower, what,
                 p->key.name);
    }
}

/* 402 with the `limit` object of SPEC §4. */
static void gw_proxy_budget_refused(gw_proxy *p, const proto_refusal *r)
{
    char msg[384], hdr[64];
    size_t len = 0;
    gw_proxy_budget_message(p, r, msg, sizeof(msg));
    cJSON *limit = gw_json_refusal(PROTO_SCOPE_KEY, p->key.id, r);
    char *body =
        gw_json_error_body("insufficient_quota", "budget_exceeded", msg, NULL, limit, &len);
    cg_log(CG_LOG_INFO, "budget exceeded", "request_id", p->rid, "key", p->key.id, NULL);
    if (body == NULL) {
        gw_proxy_fail(p, 402, "insufficient_quota", "budget_exceeded", msg);
        return;
    }
    gw_proxy_rid_header(p, hdr, sizeof(hdr));
    cg_http_respond(p->conn, 402, hdr, "application/json", body, len);
    cJSON_free(body);
    p->conn = NULL;
    p->req = NULL;
    p->answered = 1;
    gw_proxy_done(p);
}

static void gw_proxy_reserve_cb(cg_err err, const proto_rep *rep, void *ud)
{
    gw_proxy *p = ud;
    assert(p->refs >= 2); /* this operation's reference and the flow's */
    cg_err st = err == CG_ERR_OK ? (cg_err)rep->status : err;
    if (st == CG_ERR_OK) {
        p->reserved = 1;
        p->state_n = rep->u.reserve.state_n <= PROTO_LIMITS_MAX ? rep->u.reserve.state_n : 0;
        memcpy(p->states, rep->u.reserve.states, sizeof(p->states[0]) * p->state_n);
    }
    if (p->client_gone) {
        if (p->reserved) {
            gw_proxy_release(p);
        }
        gw_proxy_done(p);
    } else if (st == CG_ERR_OK) {
        gw_proxy_upstream_start(p);
    } else if (st == CG_ERR_BUDGET) {
        gw_proxy_budget_refused(p, &rep->u.reserve.refusal);
    } else if (err != CG_ERR_OK && p->env->cfg->fail_open) {
        /* Transport failure with fail_mode open: serve without a reservation. */
        cg_log(CG_LOG_WARN, "ledger unavailable, fail-open: proceeding without reservation",
               "request_id", p->rid, "key", p->key.id, "error", cg_err_name(err), NULL);
        gw_proxy_upstream_start(p);
    } else {
        gw_proxy_ledger_down(p, st, "reserve");
    }
    gw_proxy_unref(p);
}

static void gw_proxy_reserve(gw_proxy *p)
{
    proto_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.op = PROTO_OP_RESERVE;
    snprintf(rq.route, sizeof(rq.route), "%s", p->route);
    snprintf(rq.u.reserve.request_id, sizeof(rq.u.reserve.request_id), "%s", p->rid);
    rq.u.reserve.lease_ms = p->env->cfg->lease_ms;
    rq.u.reserve.worst.cost_nusd = p->est.cost_nusd;
    rq.u.reserve.worst.tokens = p->est.prompt_tokens + p->est.completion_tokens;
    if (rq.u.reserve.worst.tokens < 0) {
        rq.u.reserve.worst.tokens = INT64_MAX; /* saturated bounds */
    }
    rq.u.reserve.worst.requests = 1;
    p->phase = GW_PH_RESERVE;
    cg_err err = gw_proxy_submit(p, &rq, gw_proxy_reserve_cb);
    if (err != CG_ERR_OK) {
        /* Not submitted: answer as the callback would (it drops one reference). */
        gw_proxy_ref(p);
        gw_proxy_reserve_cb(err, NULL, p);
    }
}

/* ---- body ---- */

/* Parse and validate; on failure the client has been answered and NULL returned. */
static cJSON *gw_proxy_parse(gw_proxy *p)
{
    const char *body = p->req->body;
    size_t len = p->req->body_len;
    if (gw_body_has_nul_escape(body, len)) {
        gw_proxy_fail(p, 400, "invalid_request_error", "invalid_request",
                      "Request body must not contain NUL characters (\\u0000).");
        return NULL;
    }
    cJSON *j = gw_json_parse(body, len);
    if (j == NULL) {
        gw_proxy_fail(p, 400, "invalid_request_error", "invalid_json",
                      "We could not parse the JSON body of your request.");
        return NULL;
    }
    const char *bad = NULL;
    if (!cJSON_IsObject(j)) {
        bad = "Request body must be a JSON object.";
    } else if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "model"))) {
        bad = "model: required, must be a string";
    } else if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "messages"))) {
        bad = "messages: required, must be an array";
    } else {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "stream");
        if (s != NULL && !cJSON_IsBool(s) && !cJSON_IsNull(s)) {
            bad = "stream: must be a boolean";
        }
    }
    if (bad != NULL) {
        cJSON_Delete(j);
        gw_proxy_fail(p, 400, "invalid_request_error", "invalid_request", bad);
        return NULL;
    }
    return j;
}

/* The body to send upstream: the client's bytes, or with include_usage added. */
static cg_err gw_proxy_build_body(gw_proxy *p, cJSON *j)
{
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(j, "stream_options");
    p->stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "stream"));
    p->client_usage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage"));
    const char *body = p->req->body;
    size_t len = p->req->body_len;
    if (!p->stream || p->client_usage) {
        p->up_body = malloc(len + 1);
        if (p->up_body == NULL) {
            return CG_ERR_NOMEM;
        }
        memcpy(p->up_body, body, len);
        p->up_len = len;
        return CG_ERR_OK;
    }
    if (so == NULL) {
        /* Splice the option in after '{', leaving every other byte as sent. */
        static const char ins[] = "\"stream_options\":{\"include_usage\":true},";
        const char *brace = memchr(body, '{', len);
        size_t head = (size_t)(brace - body) + 1;
        p->up_body = malloc(len + sizeof(ins));
        if (p->up_body == NULL) {
            return CG_ERR_NOMEM;
        }
        memcpy(p->up_body, body, head);
        memcpy(p->up_body + head, ins, sizeof(ins) - 1);
        memcpy(p->up_body + head + sizeof(ins) - 1, body + head, len - head);
        p->up_len = len + sizeof(ins) - 1;
        return CG_ERR_OK;
    }
    cJSON *opts = cJSON_CreateObject();
    if (opts == NULL || cJSON_AddTrueToObject(opts, "include_usage") == NULL) {
        cJSON_Delete(opts);
        return CG_ERR_NOMEM;
    }
    if (cJSON_IsObject(so)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, so)
        {
            if (strcmp(it->string, "include_usage") != 0) {
                cJSON_AddItemToObject(opts, it->string, cJSON_Duplicate(it, 1));
            }
        }
    }
    cJSON_ReplaceItemInObjectCaseSensitive(j, "stream_options", opts);
    p->up_body = cJSON_PrintUnformatted(j);
    if (p->up_body == NULL) {
        return CG_ERR_NOMEM;
    }
    p->up_len = strlen(p->up_body);
    return CG_ERR_OK;
}

/* Model, estimate, upstream body; then reserve. */
static void gw_proxy_admit(gw_proxy *p, cJSON *j)
{
    const cg_config *cfg = p->env->cfg;
    const char *name = cJSON_GetObjectItemCaseSensitive(j, "model")->valuestring;
    char msg[160];
    p->model = cg_config_model(cfg, name);
    if (p->model == NULL) {
        snprintf(msg, sizeof(msg), "The model `%.64s` does not exist.", name);
        gw_proxy_fail(p, 400, "invalid_request_error", "model_not_found", msg);
        return;
    }
    /* Seam for unpriced models: the config requires rates today, so this holds. */
    int priced = p->model->prompt_nusd_per_mtok >= 0 && p->model->completion_nusd_per_mtok >= 0;
    if (!priced && !cfg->allow_unpriced_models) {
        snprintf(msg, sizeof(msg), "The model `%.64s` has no price configured.", name);
        gw_proxy_fail(p, 400, "invalid_request_error", "model_not_priced", msg);
        return;
    }
    if (gw_estimate_request(cfg, p->model, j, &p->est, msg, sizeof(msg)) != CG_ERR_OK) {
        gw_proxy_fail(p, 400, "invalid_request_error", "invalid_request", msg);
        return;
    }
    if (gw_proxy_build_body(p, j) != CG_ERR_OK) {
        gw_proxy_fail(p, 500, "server_error", "internal_error", "Out of memory.");
        return;
    }
    gw_sse_init(&p->sse, p->stream && !p->client_usage);
    gw_proxy_reserve(p);
}

/* ---- authentication ---- */

static void gw_proxy_authorized(gw_proxy *p, const proto_key *k)
{
    if (k != &p->key) {
        p->key = *k;
    }
    if (p->key.expires_ms != 0 && p->key.expires_ms <= cg_now_ms()) {
        gw_proxy_fail(p, 401, "authentication_error", "key_expired", "This API key has expired.");
        return;
    }
    snprintf(p->route, sizeof(p->route), "key:%s", p->key.id);
    cJSON *j = gw_proxy_parse(p);
    if (j == NULL) {
        return;
    }
    gw_proxy_admit(p, j);
    cJSON_Delete(j);
}

static void gw_proxy_invalid_key(gw_proxy *p)
{
    gw_proxy_fail(p, 401, "authentication_error", "invalid_api_key", "Incorrect API key provided.");
}

static void gw_proxy_auth_cb(cg_err err, const proto_rep *rep, void *ud)
{
    gw_proxy *p = ud;
    assert(p->refs >= 2); /* this operation's reference and the flow's */
    cg_err st = err == CG_ERR_OK ? (cg_err)rep->status : err;
    if (p->client_gone) {
        gw_proxy_done(p);
    } else if (st == CG_ERR_OK && !rep->u.auth.key.revoked &&
               strcmp(rep->u.auth.key.id, p->key_id) == 0) {
        p->key = rep->u.auth.key;
        gw_keycache_put(&p->env->keys, &p->key, p->key_hash, cg_mono_ms());
        gw_proxy_authorized(p, &p->key);
    } else if (st == CG_ERR_OK || st == CG_ERR_UNAUTHORIZED || st == CG_ERR_NOTFOUND) {
        gw_proxy_invalid_key(p);
    } else {
        gw_proxy_ledger_down(p, st, "auth");
    }
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
    if (cached != NULL) {
        gw_proxy_authorized(p, cached);
        return;
    }
    proto_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.op = PROTO_OP_AUTH;
    snprintf(rq.route, sizeof(rq.route), "key:%s", p->key_id);
    memcpy(rq.u.auth.hash, p->key_hash, sizeof(rq.u.auth.hash));
    cg_err err = gw_proxy_submit(p, &rq, gw_proxy_auth_cb);
    if (err != CG_ERR_OK) {
        gw_proxy_ledger_down(p, err, "auth");
    }
}

void gw_proxy_start(gw_proxy_env *env, cg_http_conn *c, const cg_http_req *req)
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
    p->t0_ms = cg_mono_ms();
    p->next = env->active;
    if (env->active) {
        env->active->prev = p;
    }
    env->active = p;
    env->active_n++;
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
    env->closing = 1;
    gw_proxy *p = env->active;
    while (p != NULL) {
        gw_proxy_ref(p); /* keep p (and so p->next's link) valid across the call */
        gw_proxy_force(p);
        gw_proxy *next = p->next;
        gw_proxy_unref(p);
        p = next;
    }
}
