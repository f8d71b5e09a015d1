/*
 * gw_admin.c — the admin API server: lifecycle, admin token check, routing
 * and the ledger callback (contract in gw_admin.h; JSON shapes in
 * docs/contracts.md "Admin API JSON" and "Admin API additions"). The
 * resources live in gw_admin_{orgs,keys,groups,customers,usage}.c, the shared
 * plumbing in gw_admin_io.c (see gw_admin_int.h for the request model).
 *
 *   POST   /admin/v1/orgs                              create org
 *   GET    /admin/v1/orgs/{org}                        org with limit state
 *   PATCH  /admin/v1/orgs/{org}
 *   DELETE /admin/v1/orgs/{org}                        409 org_not_empty while it has keys
 *   POST   /admin/v1/orgs/{org}/keys                   create key (secret shown once)
 *   POST   /admin/v1/orgs/{org}/groups                 create group
 *   GET|PATCH|DELETE /admin/v1/orgs/{org}/groups/{group}
 *   PUT|GET|DELETE   /admin/v1/orgs/{org}/customers/{customer}
 *   GET|PATCH|DELETE /admin/v1/keys/{id}
 *   POST   /admin/v1/keys/{id}/revoke
 *   GET    /admin/v1/usage?org=&key=&group=&customer=&model=&from=&to=
 *   GET    /admin/v1/orgs/{org}/keys?limit=&after=     list keys (issue 5)
 *   POST   /admin/v1/keys/{id}/rotate                  new secret, old one for grace_s
 *   GET    /admin/v1/pricing                           config prices + overrides
 *   PUT    /admin/v1/pricing/{model}                   pricing override
 *
 * Invariants:
 *  - the admin token is compared in constant time: both sides are reduced to
 *    HMAC-SHA256 under a random per-process key and compared with
 *    CRYPTO_memcmp, so neither content nor length leaks through timing;
 *  - secrets (admin token, API keys, webhook secrets) are never logged; API
 *    keys and generated webhook secrets appear once, in the 201/200 body;
 *  - every request is logged once (method, path, status) when answered;
 *  - a path parameter is percent-decoded and checked against its charset
 *    before any ledger I/O; a malformed one is a 404 (a 400 for the customer
 *    of a PUT, which creates);
 *  - the server struct is freed only after gw_admin_stop and when no ledger
 *    operation is in flight (pending == 0).
 */
#include "gw_admin_int.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "cg_log.h"

#define GW_ADMIN_BODY_MAX (1u << 20) /* admin request bodies are small */
#define GW_ADMIN_CONNS_MAX 256       /* concurrent admin connections */
#define GW_ADMIN_SEGS_MAX 5          /* path segments after /admin/v1/ */
#define GW_ADMIN_ALLOW_MAX 48        /* "GET, PATCH, DELETE" */

static const char gw_admin_prefix[] = "/admin/v1/";

typedef struct gw_admin_route_def {
    const char *pattern; /* segments after /admin/v1/; "{name}" is a path parameter */
    const char *method;
    gw_admin_handler_fn fn;
} gw_admin_route_def;

static const gw_admin_route_def gw_admin_routes[] = {
    {"orgs", "POST", gw_admin_org_create},
    {"orgs/{org}", "GET", gw_admin_org_get},
    {"orgs/{org}", "PATCH", gw_admin_org_patch},
    {"orgs/{org}", "DELETE", gw_admin_org_delete},
    {"orgs/{org}/keys", "POST", gw_admin_key_create},
    {"orgs/{org}/keys", "GET", gw_admin_key_list},
    {"orgs/{org}/groups", "POST", gw_admin_group_create},
    {"orgs/{org}/groups/{group}", "GET", gw_admin_group_get},
    {"orgs/{org}/groups/{group}", "PATCH", gw_admin_group_patch},
    {"orgs/{org}/groups/{group}", "DELETE", gw_admin_group_delete},
    {"orgs/{org}/customers/{customer}", "PUT", gw_admin_customer_put},
    {"orgs/{org}/customers/{customer}", "GET", gw_admin_customer_get},
    {"orgs/{org}/customers/{customer}", "DELETE", gw_admin_customer_delete},
    {"keys/{key}", "GET", gw_admin_key_get},
    {"keys/{key}", "PATCH", gw_admin_key_patch},
    {"keys/{key}", "DELETE", gw_admin_key_delete},
    {"keys/{key}/revoke", "POST", gw_admin_key_revoke},
    {"keys/{key}/rotate", "POST", gw_admin_key_rotate},
    {"pricing", "GET", gw_admin_pricing_list},
    {"pricing/{model}", "PUT", gw_admin_pricing_put},
    {"usage", "GET", gw_admin_usage_get},
    {"usage/records", "GET", gw_admin_usage_records_get},
};

#define GW_ADMIN_ROUTE_N (sizeof(gw_admin_routes) / sizeof(gw_admin_routes[0]))

/* ---- contexts and the ledger callback ---- */

static void gw_admin_free(gw_admin *a)
{
    OPENSSL_cleanse(a, sizeof(*a)); /* the token MAC and its key */
    free(a);
}

static void gw_admin_ctx_free(gw_admin_ctx *x)
{
    /* The staged records may hold webhook secrets, the key its secret. */
    free(x->list);
    free(x->prices);
    OPENSSL_cleanse(x, sizeof(*x));
    free(x);
}

void gw_admin_ctx_done(gw_admin_ctx *x)
{
    gw_admin *a = x->a;

    gw_admin_ctx_free(x);
    if (a->stopping && a->pending == 0) {
        gw_admin_free(a);
    }
}

static void gw_admin_abort_cb(cg_http_conn *c, void *ud)
{
    gw_admin_ctx *x = ud;

    (void)c;
    cg_log(CG_LOG_INFO, "admin request abandoned by client", "method", x->method, "path", x->path,
           NULL);
    x->c = NULL;
}

void gw_admin_ledger_cb(cg_err err, const proto_rep *rep, void *ud)
{
    gw_admin_ctx *x = ud;
    int again = 0;

    x->a->pending--;
    if (err != CG_ERR_OK) {
        gw_admin_ledger_fail(x, err, 0);
    } else if (x->c == NULL && !x->writes) {
        gw_admin_log(x, 499); /* client gone before a read finished: nothing to do */
    } else {
        /* Writes complete (and are logged) even if the client went away. */
        again = x->next(x, rep);
    }
    if (!again) {
        gw_admin_ctx_done(x);
    }
}

/* ---- routing ---- */

/* Split p at '/' into at most GW_ADMIN_SEGS_MAX segments (in place); -1 if more. */
static int gw_admin_split(char *p, char **segs)
{
    int n = 0;

    for (;;) {
        if (n == GW_ADMIN_SEGS_MAX) {
            return -1;
        }
        segs[n++] = p;
        p = strchr(p, '/');
        if (p == NULL) {
            return n;
        }
        *p++ = '\0';
    }
}

/* Does the pattern have the shape of segs (same count, same literal segments)? */
static int gw_admin_shape(const char *pattern, char *const *segs, int n)
{
    char buf[64];
    char *psegs[GW_ADMIN_SEGS_MAX];
    int pn;

    snprintf(buf, sizeof(buf), "%s", pattern);
    pn = gw_admin_split(buf, psegs);
    if (pn != n) {
        return 0;
    }
    for (int i = 0; i < n; i++) {
        if (psegs[i][0] != '{' && strcmp(psegs[i], segs[i]) != 0) {
            return 0;
        }
    }
    return 1;
}

typedef struct gw_admin_param {
    const char *name;                     /* as in the route patterns */
    int (*ok)(const char *s, size_t len); /* charset and length check */
    int is_sub;                           /* stored in x->sub, else in x->id */
    const char *code;                     /* 404 code when malformed */
    const char *message;
} gw_admin_param;

static const gw_admin_param gw_admin_params[] = {
    {"{org}", gw_admin_id_ok, 0, "org_not_found", "No organization with this id"},
    {"{key}", gw_admin_id_ok, 0, "key_not_found", "No API key with this id"},
    {"{group}", gw_admin_group_id_ok, 1, "group_not_found",
     "No group with this id in this organization"},
    {"{customer}", gw_admin_customer_id_ok, 1, "customer_not_found",
     "No override for this customer"},
    {"{model}", gw_admin_model_ok, 0, "model_not_found", "No configured model with this name"},
};

/* Check one path parameter and store it in x; 0 after answering 404/400. */
static int gw_admin_bind(gw_admin_ctx *x, const char *name, const char *raw)
{
    char v[GW_ADMIN_SEG_MAX + 1];
    const gw_admin_param *p = NULL;

    for (size_t i = 0; i < sizeof(gw_admin_params) / sizeof(gw_admin_params[0]); i++) {
        if (strcmp(gw_admin_params[i].name, name) == 0) {
            p = &gw_admin_params[i];
        }
    }
    assert(p != NULL); /* every pattern parameter has an entry */
    if (!cg_http_pct_decode(raw, strlen(raw), 0, v, sizeof(v)) || !p->ok(v, strlen(v))) {
        if (strcmp(name, "{customer}") == 0 && strcmp(x->method, "PUT") == 0) {
            /* A PUT creates the override: a bad id is the caller's input error. */
            gw_admin_invalid(x, "customer: must match [A-Za-z0-9_.:@-]{1,64}");
        } else {
            gw_admin_not_found(x, p->code, p->message);
        }
        return 0;
    }
    snprintf(p->is_sub ? x->sub : x->id, PROTO_ID_MAX + 1, "%s", v);
    return 1;
}

/* Bind every parameter of route r (whose shape matches) from segs[0..n); 0 after answering. */
static int gw_admin_bind_all(gw_admin_ctx *x, const gw_admin_route_def *r, char *const *segs, int n)
{
    char buf[64];
    char *psegs[GW_ADMIN_SEGS_MAX];
    int pn;

    snprintf(buf, sizeof(buf), "%s", r->pattern);
    pn = gw_admin_split(buf, psegs);
    for (int i = 0; i < pn && i < n; i++) {
        if (psegs[i][0] == '{' && !gw_admin_bind(x, psegs[i], segs[i])) {
            return 0;
        }
    }
    return 1;
}

static int gw_admin_dispatch(gw_admin_ctx *x, const cg_http_req *req)
{
    const size_t plen = sizeof(gw_admin_prefix) - 1;
    char path[GW_ADMIN_LOG_PATH_MAX + 1], allow[GW_ADMIN_ALLOW_MAX] = "", msg[96];
    char *segs[GW_ADMIN_SEGS_MAX];
    int n;

    if (strncmp(req->path, gw_admin_prefix, plen) != 0 ||
        strlen(req->path + plen) >= sizeof(path)) {
        gw_admin_not_found(x, "not_found", "Unknown admin endpoint");
        return 0;
    }
    snprintf(path, sizeof(path), "%s", req->path + plen);
    n = gw_admin_split(path, segs);
    for (size_t i = 0; n > 0 && i < GW_ADMIN_ROUTE_N; i++) {
        const gw_admin_route_def *r = &gw_admin_routes[i];
        if (!gw_admin_shape(r->pattern, segs, n)) {
            continue;
        }
        if (strcmp(r->method, req->method) == 0) {
            return gw_admin_bind_all(x, r, segs, n) && r->fn(x, req);
        }
        snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "%s%s", allow[0] ? ", " : "",
                 r->method);
    }
    if (allow[0] == '\0') {
        gw_admin_not_found(x, "not_found", "Unknown admin endpoint");
        return 0;
    }
    snprintf(msg, sizeof(msg), "Method not allowed here; use %s", allow);
    gw_admin_error(x, 405, "invalid_request_error", "method_not_allowed", msg, NULL);
    return 0;
}

/* ---- auth and the HTTP handler ---- */

/* MAC of a candidate token under the per-process key; constant-time comparable. */
static void gw_admin_token_mac(const gw_admin *a, const char *tok, size_t len,
                               uint8_t out[GW_ADMIN_MAC_BYTES])
{
    unsigned int outlen = 0;
    const unsigned char *r = HMAC(EVP_sha256(), a->mac_key, sizeof(a->mac_key),
                                  (const unsigned char *)tok, len, out, &outlen);
    assert(r != NULL && outlen == GW_ADMIN_MAC_BYTES);
    (void)r;
}

static int gw_admin_authorized(const gw_admin *a, const cg_http_req *req)
{
    const char *h = cg_http_req_header(req, "Authorization");
    uint8_t mac[GW_ADMIN_MAC_BYTES];
    int ok;

    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
        return 0;
    }
    h += 7;
    while (*h == ' ') {
        h++;
    }
    gw_admin_token_mac(a, h, strlen(h), mac);
    ok = CRYPTO_memcmp(mac, a->token_mac, sizeof(mac)) == 0;
    OPENSSL_cleanse(mac, sizeof(mac));
    return ok;
}

static void gw_admin_handler(cg_http_conn *c, const cg_http_req *req, void *ud)
{
    gw_admin *a = ud;
    if (a->open_cb != NULL && a->open_cb(c, req, a->open_ud)) {
        return; /* answered without the token: /metrics, /healthz, /readyz */
    }
    gw_admin_ctx *x = calloc(1, sizeof(*x));

    if (x == NULL) {
        cg_http_respond_error(c, 500, "server_error", "internal_error", "out of memory", NULL);
        return;
    }
    x->a = a;
    x->c = c;
    snprintf(x->method, sizeof(x->method), "%s", req->method);
    snprintf(x->path, sizeof(x->path), "%s", req->path);
    snprintf(x->peer, sizeof(x->peer), "%s", req->peer_ip);
    snprintf(x->rid, sizeof(x->rid), "adm_%016llx%08x", (unsigned long long)a->rid_prefix,
             ++a->rid_counter);
    if (!gw_admin_authorized(a, req)) {
        cg_log(CG_LOG_WARN, "admin: unauthorized request", "peer", req->peer_ip, NULL);
        gw_admin_error(x, 401, "authentication_error", "invalid_api_key",
                       "Missing or invalid admin token", NULL);
        gw_admin_ctx_free(x);
        return;
    }
    if (a->stopping) {
        gw_admin_error(x, 503, "service_unavailable", "shutting_down", "Shutting down", NULL);
        gw_admin_ctx_free(x);
        return;
    }
    if (gw_admin_dispatch(x, req)) {
        /* The ledger owns x now; its callback answers (never before we return). */
        cg_http_conn_set_callbacks(c, gw_admin_abort_cb, NULL, x);
        return;
    }
    gw_admin_ctx_free(x);
}

/* ---- lifecycle ---- */

cg_err gw_admin_start(uv_loop_t *loop, const cg_config *cfg, const cg_ring *ring, gw_ledger *ledger,
                      gw_admin **out)
{
    cg_http_opts o = {0};
    gw_admin *a;
    cg_err e;

    assert(loop != NULL && cfg != NULL && ring != NULL && ledger != NULL && out != NULL);
    if (cfg->admin_token[0] == '\0' || cfg->key_pepper[0] == '\0') {
        cg_log(CG_LOG_ERROR, "admin: admin_token and key_pepper are required", NULL);
        return CG_ERR_INVAL;
    }
    if ((a = calloc(1, sizeof(*a))) == NULL) {
        return CG_ERR_NOMEM;
    }
    a->loop = loop;
    a->cfg = cfg;
    a->ring = ring;
    a->ledger = ledger;
    if (RAND_bytes(a->mac_key, sizeof(a->mac_key)) != 1) {
        e = CG_ERR_INTERNAL;
        goto fail;
    }
    gw_admin_token_mac(a, cfg->admin_token, strlen(cfg->admin_token), a->token_mac);
    if (RAND_bytes((unsigned char *)&a->rid_prefix, sizeof(a->rid_prefix)) != 1) {
        e = CG_ERR_INTERNAL;
        goto fail;
    }
    o.body_max_bytes =
        cfg->body_max_bytes < GW_ADMIN_BODY_MAX ? cfg->body_max_bytes : GW_ADMIN_BODY_MAX;
    o.header_max_bytes = cfg->header_max_bytes;
    o.request_timeout_ms = cfg->request_timeout_ms;
    o.conns_max = GW_ADMIN_CONNS_MAX;
    e = cg_http_listen(loop, cfg->admin_listen, 0, &o, gw_admin_handler, a, &a->srv);
    if (e != CG_ERR_OK) {
        cg_log(CG_LOG_ERROR, "admin: cannot listen", "listen", cfg->admin_listen, "err",
               cg_err_name(e), NULL);
        goto fail;
    }
    cg_log(CG_LOG_INFO, "admin API listening", "listen", cfg->admin_listen, NULL);
    *out = a;
    return CG_ERR_OK;
fail:
    gw_admin_free(a);
    return e;
}

void gw_admin_set_open_routes(gw_admin *a, gw_admin_open_cb cb, void *ud)
{
    a->open_cb = cb;
    a->open_ud = ud;
}

void gw_admin_stop(gw_admin *a)
{
    if (a == NULL || a->stopping) {
        return;
    }
    a->stopping = 1;
    cg_http_server_close(a->srv);
    a->srv = NULL;
    if (a->pending == 0) {
        gw_admin_free(a);
    }
}
