/*
 * alerter_http.c — the alerter's HTTP listener: health, readiness, Prometheus
 * metrics and the admin-token-protected delivery state (contract in
 * alerter_http.h and docs/contracts.md "Issues 6 and 7").
 *
 * One thread runs one uv loop with one cg_http server (cg_http_thread). Every request
 * is answered synchronously from an LMDB read transaction (bounded by ALERTER_LIST_MAX
 * records) or from the metrics registry.
 */
#include "alerter_http.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "cg_http.h"
#include "cg_log.h"
#include "cg_period.h"

struct alerter_http {
    const cg_config *cfg;
    alerter_outbox *ob;
    cg_metrics *metrics;
    const atomic_int *ready;
    uint8_t token_sha[SHA256_DIGEST_LENGTH]; /* of cfg->admin_token; compared in constant time */
    cg_http_thread *srv;                     /* the listener's thread and loop */
};

/* ---- small helpers ------------------------------------------------------------------- */

static void alerter_http_json(cg_http_conn *c, int status, cJSON *j)
{
    char *txt = j != NULL ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (txt == NULL) {
        cg_http_respond_error(c, 500, "api_error", "internal_error", "Out of memory", NULL);
        return;
    }
    cg_http_respond(c, status, NULL, "application/json", txt, strlen(txt));
    free(txt);
}

static int alerter_http_authorized(const alerter_http *h, const cg_http_req *req)
{
    const char *v = cg_http_req_header(req, "Authorization");
    uint8_t got[SHA256_DIGEST_LENGTH];
    if (h->cfg->admin_token[0] == '\0' || v == NULL || strncasecmp(v, "Bearer ", 7) != 0) {
        return 0;
    }
    v += 7;
    while (*v == ' ') {
        v++;
    }
    SHA256((const unsigned char *)v, strlen(v), got);
    int ok = CRYPTO_memcmp(got, h->token_sha, sizeof got) == 0;
    OPENSSL_cleanse(got, sizeof got);
    return ok;
}

/*
 * The value of name in query, percent-decoded into out. Returns 1 if present, 0 if
 * absent, -1 if malformed or too long.
 */
static int alerter_query_get(const char *query, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *p = query; p != NULL && *p != '\0';) {
        const char *end = strchr(p, '&');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            return cg_http_pct_decode(p + nl + 1, len - nl - 1, 1, out, cap) ? 1 : -1;
        }
        p = end != NULL ? end + 1 : NULL;
    }
    return 0;
}

static void alerter_bad_param(cg_http_conn *c, const char *msg)
{
    cg_http_respond_error(c, 400, "invalid_request_error", "invalid_request", msg, NULL);
}

static cJSON *alerter_time_json(int64_t ms)
{
    char ts[40];
    if (ms <= 0 || cg_time_format(ms, ts, sizeof ts) == 0) {
        return cJSON_CreateNull();
    }
    return cJSON_CreateString(ts);
}

static const char *const alerter_state_names[] = {"pending", "delivered", "failed"};

/* ---- GET /admin/v1/deliveries -------------------------------------------------------- */

typedef struct alerter_list_ctx {
    cJSON *data;
    const char *org; /* "" = any */
    int state;       /* -1 = any */
    uint32_t limit;
    uint32_t n;
    int oom;
} alerter_list_ctx;

static cJSON *alerter_delivery_json(const alerter_record *r)
{
    cJSON *o = cJSON_CreateObject();
    const char *type = r->type != 0xff ? proto_event_type_name(r->type) : NULL;
    int email = r->channel == ALERTER_CH_EMAIL;
    const char *target = r->url;
    if (email && strncmp(target, ALERTER_MAILTO, strlen(ALERTER_MAILTO)) == 0) {
        target += strlen(ALERTER_MAILTO);
    }
    if (o == NULL) {
        return NULL;
    }
    cJSON_AddStringToObject(o, "event_id", r->event_id);
    cJSON_AddStringToObject(o, "org", r->org);
    if (type != NULL) {
        cJSON_AddStringToObject(o, "type", type);
    } else {
        cJSON_AddNullToObject(o, "type");
    }
    cJSON_AddStringToObject(o, "channel", email ? "email" : "webhook");
    cJSON_AddStringToObject(o, "target", target);
    cJSON_AddStringToObject(o, "status", alerter_state_names[r->state]);
    cJSON_AddNumberToObject(o, "attempts", r->attempts);
    if (r->last_error[0] != '\0') {
        cJSON_AddStringToObject(o, "last_error", r->last_error);
    } else {
        cJSON_AddNullToObject(o, "last_error");
    }
    cJSON_AddItemToObject(o, "created_at", alerter_time_json(r->created_ms));
    cJSON_AddItemToObject(o, "last_attempt_at", alerter_time_json(r->last_ms));
    cJSON_AddItemToObject(o, "next_attempt_at",
                          alerter_time_json(r->state == ALERTER_PENDING ? r->next_ms : 0));
    cJSON_AddItemToObject(o, "delivered_at",
                          alerter_time_json(r->state == ALERTER_DELIVERED ? r->next_ms : 0));
    return o;
}

static int alerter_list_visit(const alerter_record *r, void *arg)
{
    alerter_list_ctx *x = arg;
    if ((x->state >= 0 && r->state != x->state) || (x->org[0] != '\0' && strcmp(r->org, x->org))) {
        return 0;
    }
    cJSON *o = alerter_delivery_json(r);
    if (o == NULL || !cJSON_AddItemToArray(x->data, o)) {
        cJSON_Delete(o);
        x->oom = 1;
        return 1;
    }
    return ++x->n >= x->limit;
}

static void alerter_deliveries(alerter_http *h, cg_http_conn *c, const cg_http_req *req)
{
    char org[PROTO_ID_MAX + 1] = "", status[16] = "", lim[16] = "";
    alerter_list_ctx x = {.org = org, .state = -1, .limit = ALERTER_LIST_DEFAULT};
    if (alerter_query_get(req->query, "org", org, sizeof org) < 0) {
        alerter_bad_param(c, "org: must be an org id");
        return;
    }
    int st = alerter_query_get(req->query, "status", status, sizeof status);
    if (st < 0) {
        alerter_bad_param(c, "status: must be pending, delivered or failed");
        return;
    }
    for (int i = 0; st > 0 && i < 3; i++) {
        if (strcmp(status, alerter_state_names[i]) == 0) {
            x.state = i;
        }
    }
    if (st > 0 && x.state < 0) {
        alerter_bad_param(c, "status: must be pending, delivered or failed");
        return;
    }
    int lt = alerter_query_get(req->query, "limit", lim, sizeof lim);
    if (lt != 0) {
        char *end = NULL;
        long v = lt > 0 ? strtol(lim, &end, 10) : 0;
        if (lt < 0 || end == lim || *end != '\0' || v < 1 || v > ALERTER_LIST_MAX) {
            alerter_bad_param(c, "limit: must be an integer 1..1000");
            return;
        }
        x.limit = (uint32_t)v;
    }
    if ((x.data = cJSON_CreateArray()) == NULL) {
        cg_http_respond_error(c, 500, "api_error", "internal_error", "Out of memory", NULL);
        return;
    }
    /* Filters are applied by the visitor, so the scan itself is bounded generously. */
    uint32_t scan_max = x.state < 0 && org[0] == '\0' ? x.limit : 1000000u;
    cg_err err = alerter_outbox_list(h->ob, x.state, scan_max, alerter_list_visit, &x);
    if (err != CG_ERR_OK || x.oom) {
        cJSON_Delete(x.data);
        cg_http_respond_error(c, 500, "api_error", "internal_error", "Cannot read the outbox",
                              NULL);
        return;
    }
    cJSON *j = cJSON_CreateObject();
    if (j != NULL) {
        cJSON_AddItemToObject(j, "data", x.data);
    } else {
        cJSON_Delete(x.data);
    }
    alerter_http_json(c, 200, j);
}

/* ---- endpoints ----------------------------------------------------------------------- */

static int alerter_endpoint_visit(const alerter_endpoint *e, void *arg)
{
    cJSON *arr = arg, *o = cJSON_CreateObject();
    char id[20];
    if (o == NULL) {
        return 1;
    }
    snprintf(id, sizeof id, "%016" PRIx64, e->id);
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "org", e->org);
    cJSON_AddStringToObject(o, "url", e->url);
    cJSON_AddBoolToObject(o, "disabled", e->disabled_ms != 0);
    cJSON_AddItemToObject(o, "disabled_at", alerter_time_json(e->disabled_ms));
    return !cJSON_AddItemToArray(arr, o);
}

static void alerter_endpoints(alerter_http *h, cg_http_conn *c)
{
    cJSON *arr = cJSON_CreateArray(), *j = cJSON_CreateObject();
    if (arr == NULL || j == NULL ||
        alerter_outbox_endpoints(h->ob, alerter_endpoint_visit, arr) != CG_ERR_OK) {
        cJSON_Delete(arr);
        cJSON_Delete(j);
        cg_http_respond_error(c, 500, "api_error", "internal_error", "Cannot read the outbox",
                              NULL);
        return;
    }
    cJSON_AddItemToObject(j, "data", arr);
    alerter_http_json(c, 200, j);
}

/* POST /admin/v1/endpoints/{16 hex}/enable */
static void alerter_endpoint_enable(alerter_http *h, cg_http_conn *c, const char *rest)
{
    char hex[17];
    const char *slash = strchr(rest, '/');
    size_t n = slash != NULL ? (size_t)(slash - rest) : 0;
    if (slash == NULL || n != 16 || strcmp(slash, "/enable") != 0) {
        cg_http_respond_error(c, 404, "invalid_request_error", "not_found", "Unknown path", NULL);
        return;
    }
    memcpy(hex, rest, 16);
    hex[16] = '\0';
    uint64_t id = 0;
    for (int i = 0; i < 16; i++) {
        int v = cg_http_hex_digit(hex[i]);
        if (v < 0) {
            cg_http_respond_error(c, 404, "invalid_request_error", "endpoint_not_found",
                                  "No such endpoint", NULL);
            return;
        }
        id = id << 4 | (uint64_t)v;
    }
    cg_err err = alerter_outbox_endpoint_enable(h->ob, id);
    if (err == CG_ERR_NOTFOUND) {
        cg_http_respond_error(c, 404, "invalid_request_error", "endpoint_not_found",
                              "No such endpoint", NULL);
        return;
    }
    if (err != CG_ERR_OK) {
        cg_http_respond_error(c, 500, "api_error", "internal_error", "Cannot write the outbox",
                              NULL);
        return;
    }
    cg_log(CG_LOG_INFO, "webhook endpoint enabled", "endpoint_id", hex, NULL);
    cJSON *j = cJSON_CreateObject();
    if (j != NULL) {
        cJSON_AddStringToObject(j, "id", hex);
        cJSON_AddBoolToObject(j, "disabled", 0);
    }
    alerter_http_json(c, 200, j);
}

/* ---- dispatch ------------------------------------------------------------------------ */

static void alerter_http_handler(cg_http_conn *c, const cg_http_req *req, void *ud)
{
    alerter_http *h = ud;
    int get = strcmp(req->method, "GET") == 0;
    if (get && strcmp(req->path, "/healthz") == 0) {
        cg_http_respond(c, 200, NULL, "application/json", "{\"status\":\"ok\"}", 15);
        return;
    }
    if (get && strcmp(req->path, "/readyz") == 0) {
        if (atomic_load(h->ready)) {
            cg_http_respond(c, 200, NULL, "application/json", "{\"status\":\"ready\"}", 18);
        } else {
            cg_http_respond(c, 503, NULL, "application/json", "{\"status\":\"starting\"}", 21);
        }
        return;
    }
    if (get && strcmp(req->path, "/metrics") == 0) {
        char *txt = NULL;
        size_t len = 0;
        if (cg_metrics_render(h->metrics, &txt, &len) != CG_ERR_OK) {
            cg_http_respond_error(c, 500, "api_error", "internal_error", "Out of memory", NULL);
            return;
        }
        cg_http_respond(c, 200, NULL, CG_METRICS_CONTENT_TYPE, txt, len);
        free(txt);
        return;
    }
    if (strncmp(req->path, "/admin/", 7) != 0) {
        cg_http_respond_error(c, 404, "invalid_request_error", "not_found", "Unknown path", NULL);
        return;
    }
    if (!alerter_http_authorized(h, req)) {
        cg_http_respond_error(c, 401, "invalid_request_error", "invalid_admin_token",
                              "Missing or wrong admin token", "WWW-Authenticate: Bearer\r\n");
        return;
    }
    static const char ep_prefix[] = "/admin/v1/endpoints/";
    if (get && strcmp(req->path, "/admin/v1/deliveries") == 0) {
        alerter_deliveries(h, c, req);
    } else if (get && strcmp(req->path, "/admin/v1/endpoints") == 0) {
        alerter_endpoints(h, c);
    } else if (strcmp(req->method, "POST") == 0 &&
               strncmp(req->path, ep_prefix, sizeof ep_prefix - 1) == 0) {
        alerter_endpoint_enable(h, c, req->path + sizeof ep_prefix - 1);
    } else {
        cg_http_respond_error(c, 404, "invalid_request_error", "not_found", "Unknown path", NULL);
    }
}

/* ---- thread -------------------------------------------------------------------------- */

cg_err alerter_http_start(const cg_config *cfg, alerter_outbox *ob, cg_metrics *m,
                          const atomic_int *ready, alerter_http **out)
{
    alerter_http *h = calloc(1, sizeof *h);
    if (h == NULL) {
        return CG_ERR_NOMEM;
    }
    h->cfg = cfg;
    h->ob = ob;
    h->metrics = m;
    h->ready = ready;
    SHA256((const unsigned char *)cfg->admin_token, strlen(cfg->admin_token), h->token_sha);
    cg_http_opts o = {
        .body_max_bytes = 4096,
        .header_max_bytes = 16384,
        .request_timeout_ms = 10000,
        .idle_timeout_ms = 30000,
        .conns_max = 64,
    };
    cg_err err = cg_http_thread_start(cfg->alerter_listen, &o, alerter_http_handler, h, &h->srv);
    if (err != CG_ERR_OK) {
        cg_log(CG_LOG_ERROR, "alerter cannot listen", "alerter_listen", cfg->alerter_listen,
               "error", cg_err_name(err), NULL);
        free(h);
        return err;
    }
    cg_log(CG_LOG_INFO, "alerter listening", "alerter_listen", cfg->alerter_listen, NULL);
    *out = h;
    return CG_ERR_OK;
}

void alerter_http_stop(alerter_http *h)
{
    if (h == NULL) {
        return;
    }
    cg_http_thread_stop(h->srv);
    free(h);
}
