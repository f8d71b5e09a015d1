/*
 * gw_admin.c — the admin API of the issue 2 slice (contract in gw_admin.h,
 * JSON shapes in docs/contracts-issue2.md "Admin API JSON").
 *
 *   POST /admin/v1/orgs               PUT_ORG (create_only) on org:<id>
 *   GET  /admin/v1/orgs/{org}         GET_ORG
 *   POST /admin/v1/orgs/{org}/keys    GET_ORG (404 if missing), then PUT_KEY (create_only)
 *   GET  /admin/v1/keys/{id}          GET_KEY (limits with used/reserved/resets_at)
 *
 * Each request gets a heap context (gw_admin_ctx) that lives until its answer
 * is sent. Bodies are validated completely before any ledger I/O; a ledger
 * answer arrives on this loop (gw_ledger guarantees it) and is turned into the
 * HTTP response. If the client goes away meanwhile, the context only forgets
 * the connection; the ledger callback then frees it.
 *
 * Invariants:
 *  - the admin token is compared in constant time: both sides are reduced to
 *    HMAC-SHA256 under a random per-process key and compared with
 *    CRYPTO_memcmp, so neither content nor length leaks through timing;
 *  - secrets (admin token, API keys, webhook secrets) are never logged; API
 *    keys and generated webhook secrets appear once, in the 201 body;
 *  - every request is logged once (method, path, status) when answered;
 *  - the server struct is freed only after gw_admin_stop and when no request
 *    is waiting for the ledger (pending == 0).
 */
#include "gw_admin.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "cg_clock.h"
#include "cg_log.h"
#include "cg_period.h"
#include "gw_json.h"
#include "gw_keys.h"

#define GW_ADMIN_BODY_MAX (1u << 20)     /* admin request bodies are small */
#define GW_ADMIN_CONNS_MAX 256           /* concurrent admin connections */
#define GW_ADMIN_LOG_PATH_MAX 191        /* path bytes kept for the log line */
#define GW_ADMIN_ERR_MAX GW_JSON_ERR_MAX /* validation message */
#define GW_ADMIN_WHSEC_BYTES 32          /* random bytes of a generated webhook secret */
#define GW_ADMIN_EXPIRES_DAYS_MAX 3650
#define GW_ADMIN_DAY_MS 86400000LL
#define GW_ADMIN_MAC_BYTES 32

static const char gw_admin_prefix_orgs[] = "/admin/v1/orgs";
static const char gw_admin_prefix_keys[] = "/admin/v1/keys/";

struct gw_admin {
    uv_loop_t *loop;
    const cg_config *cfg;
    const cg_ring *ring;
    gw_ledger *ledger;
    cg_http_server *srv;
    uint8_t mac_key[GW_ADMIN_MAC_BYTES];   /* random, per process */
    uint8_t token_mac[GW_ADMIN_MAC_BYTES]; /* HMAC(mac_key, admin_token) */
    uint32_t pending;                      /* contexts waiting for the ledger */
    int stopping;
};

typedef enum gw_admin_stage {
    GW_ADM_PUT_ORG,
    GW_ADM_GET_ORG,
    GW_ADM_KEY_ORG, /* create key, step 1: does the org exist? */
    GW_ADM_PUT_KEY, /* create key, step 2 */
    GW_ADM_GET_KEY,
} gw_admin_stage;

typedef struct gw_admin_ctx {
    gw_admin *a;
    cg_http_conn *c; /* NULL once the client went away */
    gw_admin_stage stage;
    char method[8];
    char path[GW_ADMIN_LOG_PATH_MAX + 1];
    char id[PROTO_ID_MAX + 1];                   /* org or key id of the path / body */
    proto_req req;                               /* the operation being built or sent */
    uint8_t whsec_generated[PROTO_WEBHOOKS_MAX]; /* create org: secrets to show once */
    char key[GW_KEY_MAX + 1];                    /* create key: the key, shown once */
} gw_admin_ctx;

/* ---- responses ---- */

static void gw_admin_ctx_free(gw_admin_ctx *x)
{
    OPENSSL_cleanse(x->key, sizeof(x->key));
    OPENSSL_cleanse(&x->req, sizeof(x->req)); /* may hold webhook secrets */
    free(x);
}

static void gw_admin_log(const gw_admin_ctx *x, int status)
{
    char st[16];

    snprintf(st, sizeof(st), "%d", status);
    cg_log(status >= 500 ? CG_LOG_WARN : CG_LOG_INFO, "admin request", "method", x->method, "path",
           x->path, "status", st, NULL);
}

static void gw_admin_send(gw_admin_ctx *x, int status, const char *body, size_t len)
{
    gw_admin_log(x, status);
    if (x->c != NULL) {
        cg_http_respond(x->c, status, NULL, "application/json", body, len);
        x->c = NULL;
    }
}

static void gw_admin_error(gw_admin_ctx *x, int status, const char *type, const char *code,
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

static void gw_admin_invalid(gw_admin_ctx *x, const char *message)
{
    gw_admin_error(x, 400, "invalid_request_error", "invalid_request", message, NULL);
}

/* Serialise root (consumed) and send it with status. */
static void gw_admin_send_json(gw_admin_ctx *x, int status, cJSON *root)
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

/*
 * A ledger outcome that is not the operation's success or its expected
 * NOTFOUND/EXISTS: transport failures and WRONG_SHARD are 503, the rest 500.
 */
static void gw_admin_ledger_fail(gw_admin_ctx *x, cg_err transport, int status)
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

/* ---- JSON out ---- */

static int gw_admin_add(cJSON *o, const char *name, cJSON *item)
{
    if (item == NULL || !cJSON_AddItemToObject(o, name, item)) {
        cJSON_Delete(item);
        return 0;
    }
    return 1;
}

static int gw_admin_add_item(cJSON *arr, cJSON *item)
{
    if (item == NULL || !cJSON_AddItemToArray(arr, item)) {
        cJSON_Delete(item);
        return 0;
    }
    return 1;
}

/* Limits, each with its counter state when states is non-NULL (matched by limit id). */
static cJSON *gw_admin_limits_json(const proto_limit *limits, uint8_t n,
                                   const proto_limit_state *states, uint8_t state_n,
                                   uint8_t anchor_day)
{
    cJSON *arr = cJSON_CreateArray();
    int64_t now = cg_now_ms();

    for (uint8_t i = 0; arr != NULL && i < n; i++) {
        const proto_limit_state *st = NULL;
        proto_limit_state fresh;
        cg_period p;
        for (uint8_t j = 0; states != NULL && j < state_n; j++) {
            if (states[j].limit_id == limits[i].id) {
                st = &states[j];
            }
        }
        if (states != NULL && st == NULL) {
            /* No counter yet: nothing used in the current period. */
            memset(&fresh, 0, sizeof(fresh));
            fresh.limit_id = limits[i].id;
            if (cg_period_of(limits[i].window, anchor_day, now, &p) == CG_ERR_OK) {
                fresh.period_end_ms = p.end_ms;
            }
            st = &fresh;
        }
        if (!gw_admin_add_item(arr, gw_json_limit(&limits[i], st))) {
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

static cJSON *gw_admin_webhooks_json(const proto_org *o, const uint8_t *show_secret)
{
    cJSON *arr = cJSON_CreateArray();

    for (uint8_t i = 0; arr != NULL && i < o->webhook_n; i++) {
        cJSON *w = cJSON_CreateObject();
        int ok = w != NULL && gw_admin_add(w, "url", cJSON_CreateString(o->webhooks[i].url));
        if (ok && show_secret != NULL && show_secret[i]) {
            ok = gw_admin_add(w, "secret", cJSON_CreateString(o->webhooks[i].secret));
        }
        if (!ok || !gw_admin_add_item(arr, w)) {
            if (!ok) {
                cJSON_Delete(w);
            }
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

/* Org JSON; webhook secrets only where show_secret[i] (a secret generated just now). */
static cJSON *gw_admin_org_json(const proto_org *o, const uint8_t *show_secret)
{
    cJSON *j = cJSON_CreateObject();
    int ok =
        j != NULL && gw_admin_add(j, "id", cJSON_CreateString(o->id)) &&
        gw_admin_add(j, "name", cJSON_CreateString(o->name)) &&
        gw_admin_add(j, "billing_anchor_day", cJSON_CreateNumber(o->billing_anchor_day)) &&
        gw_admin_add(j, "created_at", gw_json_time(o->created_ms)) &&
        gw_admin_add(j, "limits",
                     gw_admin_limits_json(o->limits, o->limit_n, NULL, 0, o->billing_anchor_day)) &&
        gw_admin_add(j, "webhooks", gw_admin_webhooks_json(o, show_secret)) &&
        gw_admin_add(j, "emails", cJSON_CreateArray());

    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* Key JSON. key_str: the full key (creation only); states: GET only. */
static cJSON *gw_admin_key_json(const proto_key *k, const char *key_str,
                                const proto_limit_state *states, uint8_t state_n)
{
    cJSON *j = cJSON_CreateObject();
    int ok = j != NULL && gw_admin_add(j, "id", cJSON_CreateString(k->id)) &&
             (key_str == NULL || gw_admin_add(j, "key", cJSON_CreateString(key_str))) &&
             gw_admin_add(j, "org", cJSON_CreateString(k->org)) &&
             gw_admin_add(j, "name", cJSON_CreateString(k->name)) &&
             gw_admin_add(j, "created_at", gw_json_time(k->created_ms)) &&
             gw_admin_add(j, "expires_at", gw_json_time(k->expires_ms)) &&
             (key_str != NULL || gw_admin_add(j, "revoked", cJSON_CreateBool(k->revoked))) &&
             gw_admin_add(j, "limits",
                          gw_admin_limits_json(k->limits, k->limit_n, states, state_n,
                                               k->billing_anchor_day));

    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* ---- ledger round trips ---- */

static void gw_admin_ledger_cb(cg_err err, const proto_rep *rep, void *ud);

static void gw_admin_free(gw_admin *a)
{
    OPENSSL_cleanse(a, sizeof(*a)); /* the token MAC and its key */
    free(a);
}

static void gw_admin_ctx_done(gw_admin_ctx *x)
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

/* Send x->req; on failure answer 503 at once. Returns 1 if the ledger owns x now. */
static int gw_admin_submit(gw_admin_ctx *x, gw_admin_stage stage)
{
    cg_err e;

    x->stage = stage;
    e = gw_ledger_submit(x->a->ledger, &x->req, gw_admin_ledger_cb, x);
    if (e != CG_ERR_OK) {
        gw_admin_ledger_fail(x, e == CG_ERR_INVAL ? CG_ERR_INTERNAL : e, 0);
        return 0;
    }
    x->a->pending++;
    return 1;
}

static void gw_admin_route(proto_req *r, const char *kind, const char *id)
{
    snprintf(r->route, sizeof(r->route), "%s:%s", kind, id);
}

/* Create key, step 1 done: the org exists; generate the key and store it. */
static int gw_admin_key_put(gw_admin_ctx *x, const proto_org *org)
{
    proto_key *k = &x->req.u.put_key.key;
    char id[GW_KEY_ID_MAX + 1];

    if (gw_key_generate(x->key, sizeof(x->key), id, sizeof(id)) != CG_ERR_OK) {
        gw_admin_error(x, 500, "server_error", "internal_error", "key generation failed", NULL);
        return 0;
    }
    snprintf(k->id, sizeof(k->id), "%s", id);
    gw_key_hash(x->a->cfg->key_pepper, x->key, strlen(x->key), k->hash);
    k->billing_anchor_day = org->billing_anchor_day;
    k->created_ms = cg_now_ms();
    x->req.op = PROTO_OP_PUT_KEY;
    x->req.u.put_key.create_only = 1;
    gw_admin_route(&x->req, "key", k->id);
    return gw_admin_submit(x, GW_ADM_PUT_KEY);
}

/* Handle the shard's answer for x->stage; returns 1 if x went to the ledger again. */
static int gw_admin_on_reply(gw_admin_ctx *x, const proto_rep *rep)
{
    switch (x->stage) {
    case GW_ADM_PUT_ORG:
        if (rep->status == CG_ERR_EXISTS) {
            gw_admin_error(x, 409, "invalid_request_error", "org_exists",
                           "An organization with this id already exists", "id");
            return 0;
        }
        if (rep->status != CG_ERR_OK) {
            break;
        }
        gw_admin_send_json(x, 201, gw_admin_org_json(&x->req.u.put_org.org, x->whsec_generated));
        return 0;
    case GW_ADM_GET_ORG:
    case GW_ADM_KEY_ORG:
        if (rep->status == CG_ERR_NOTFOUND) {
            gw_admin_error(x, 404, "invalid_request_error", "org_not_found",
                           "No organization with this id", NULL);
            return 0;
        }
        if (rep->status != CG_ERR_OK) {
            break;
        }
        if (x->stage == GW_ADM_KEY_ORG) {
            return gw_admin_key_put(x, &rep->u.get_org.org);
        }
        gw_admin_send_json(x, 200, gw_admin_org_json(&rep->u.get_org.org, NULL));
        return 0;
    case GW_ADM_PUT_KEY:
        if (rep->status != CG_ERR_OK) {
            break; /* EXISTS: a 64-bit random id collided; a 500 is fine for that */
        }
        cg_log(CG_LOG_INFO, "admin: key created", "key_id", x->req.u.put_key.key.id, "org",
               x->req.u.put_key.key.org, NULL);
        gw_admin_send_json(x, 201, gw_admin_key_json(&x->req.u.put_key.key, x->key, NULL, 0));
        return 0;
    case GW_ADM_GET_KEY:
        if (rep->status == CG_ERR_NOTFOUND) {
            gw_admin_error(x, 404, "invalid_request_error", "key_not_found",
                           "No API key with this id", NULL);
            return 0;
        }
        if (rep->status != CG_ERR_OK) {
            break;
        }
        gw_admin_send_json(x, 200,
                           gw_admin_key_json(&rep->u.get_key.key, NULL, rep->u.get_key.states,
                                             rep->u.get_key.state_n));
        return 0;
    }
    gw_admin_ledger_fail(x, CG_ERR_OK, rep->status);
    return 0;
}

static void gw_admin_ledger_cb(cg_err err, const proto_rep *rep, void *ud)
{
    gw_admin_ctx *x = ud;
    int again = 0;

    x->a->pending--;
    if (err != CG_ERR_OK) {
        gw_admin_ledger_fail(x, err, 0);
    } else if (x->c == NULL && x->stage != GW_ADM_PUT_ORG && x->stage != GW_ADM_PUT_KEY) {
        gw_admin_log(x, 499); /* client gone before a read finished: nothing to do */
    } else {
        /* Writes complete (and are logged) even if the client went away. */
        again = gw_admin_on_reply(x, rep);
    }
    if (!again) {
        gw_admin_ctx_done(x);
    }
}

/* ---- request validation ---- */

/* [a-z0-9_-]{1,PROTO_ID_MAX}: org ids, and the charset of key ids. */
static int gw_admin_id_ok(const char *s, size_t len)
{
    if (len == 0 || len > PROTO_ID_MAX) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
            return 0;
        }
    }
    return 1;
}

/* Standard base64 with padding, at least one byte. */
static int gw_admin_base64_ok(const char *s)
{
    size_t len = strlen(s), pad = 0;

    if (len == 0 || len % 4 != 0) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '=') {
            if (i < len - 2) {
                return 0;
            }
            pad++;
        } else if (pad > 0 || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                                (c >= '0' && c <= '9') || c == '+' || c == '/')) {
            return 0;
        }
    }
    return len - pad > 1;
}

static int gw_admin_whsec_generate(char *out, size_t cap)
{
    uint8_t raw[GW_ADMIN_WHSEC_BYTES];
    unsigned char b64[4 * ((GW_ADMIN_WHSEC_BYTES + 2) / 3) + 1];

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        return 0;
    }
    EVP_EncodeBlock(b64, raw, sizeof(raw));
    snprintf(out, cap, "whsec_%s", (const char *)b64);
    OPENSSL_cleanse(raw, sizeof(raw));
    OPENSSL_cleanse(b64, sizeof(b64));
    return 1;
}

/* webhooks: [{url, secret?}] into o; generated secrets are flagged in gen. */
static cg_err gw_admin_webhooks_parse(const cJSON *v, proto_org *o, uint8_t *gen, char *err,
                                      size_t errcap)
{
    static const char *const fields[] = {"url", "secret", NULL};
    char path[GW_JSON_PATH_MAX];
    const cJSON *w;
    uint32_t i = 0;

    if (v == NULL || cJSON_IsNull(v)) {
        return CG_ERR_OK;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > PROTO_WEBHOOKS_MAX) {
        snprintf(err, errcap, "webhooks: must be an array of at most %d {url, secret} objects",
                 PROTO_WEBHOOKS_MAX);
        return CG_ERR_INVAL;
    }
    cJSON_ArrayForEach(w, v)
    {
        proto_webhook *h = &o->webhooks[i];
        gw_json_path_index(path, sizeof(path), "webhooks", i);
        if (!cJSON_IsObject(w)) {
            snprintf(err, errcap, "%s: must be an object", path);
            return CG_ERR_INVAL;
        }
        if (gw_json_check_fields(w, path, fields, err, errcap) != CG_ERR_OK) {
            return CG_ERR_INVAL;
        }
        const cJSON *url = cJSON_GetObjectItemCaseSensitive(w, "url");
        const cJSON *sec = cJSON_GetObjectItemCaseSensitive(w, "secret");
        if (gw_json_get_string(url, PROTO_URL_MAX, h->url, sizeof(h->url)) != CG_ERR_OK ||
            !((strncmp(h->url, "http://", 7) == 0 && h->url[7] != '\0') ||
              (strncmp(h->url, "https://", 8) == 0 && h->url[8] != '\0'))) {
            snprintf(err, errcap, "%s.url: must be an http:// or https:// URL of at most %d bytes",
                     path, PROTO_URL_MAX);
            return CG_ERR_INVAL;
        }
        if (sec == NULL || cJSON_IsNull(sec)) {
            if (!gw_admin_whsec_generate(h->secret, sizeof(h->secret))) {
                snprintf(err, errcap, "%s.secret: could not generate one", path);
                return CG_ERR_INTERNAL;
            }
            gen[i] = 1;
        } else if (gw_json_get_string(sec, PROTO_SECRET_MAX, h->secret, sizeof(h->secret)) !=
                       CG_ERR_OK ||
                   strncmp(h->secret, "whsec_", 6) != 0 || !gw_admin_base64_ok(h->secret + 6)) {
            snprintf(err, errcap, "%s.secret: must be \"whsec_\" followed by base64", path);
            return CG_ERR_INVAL;
        }
        i++;
    }
    o->webhook_n = (uint8_t)i;
    return CG_ERR_OK;
}

/* Fields of SPEC §5 not in this slice: accepted only when they say "nothing". */
static cg_err gw_admin_unsupported(const cJSON *body, const char *const *names, char *err,
                                   size_t errcap)
{
    for (size_t i = 0; names[i] != NULL; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, names[i]);
        if (v == NULL || cJSON_IsNull(v) || (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0)) {
            continue;
        }
        if (strcmp(names[i], "on_low_budget") == 0 && cJSON_IsString(v) &&
            strcmp(v->valuestring, "reject") == 0) {
            continue;
        }
        snprintf(err, errcap, "%s: not supported yet", names[i]);
        return CG_ERR_INVAL;
    }
    return CG_ERR_OK;
}

static cg_err gw_admin_org_parse(const cJSON *body, proto_org *o, uint8_t *gen, char *err,
                                 size_t errcap)
{
    static const char *const fields[] = {"id",       "name",   "billing_anchor_day", "limits",
                                         "webhooks", "emails", "customer_defaults",  NULL};
    static const char *const later[] = {"emails", "customer_defaults", NULL};
    const cJSON *v;
    int64_t day = 1;
    cg_err e;

    if ((e = gw_json_check_fields(body, "", fields, err, errcap)) != CG_ERR_OK ||
        (e = gw_admin_unsupported(body, later, err, errcap)) != CG_ERR_OK) {
        return e;
    }
    v = cJSON_GetObjectItemCaseSensitive(body, "id");
    if (!cJSON_IsString(v) || !gw_admin_id_ok(v->valuestring, strlen(v->valuestring))) {
        snprintf(err, errcap, "id: required, must match [a-z0-9_-]{1,%d}", PROTO_ID_MAX);
        return CG_ERR_INVAL;
    }
    snprintf(o->id, sizeof(o->id), "%s", v->valuestring);
    v = cJSON_GetObjectItemCaseSensitive(body, "name");
    if (v != NULL && !cJSON_IsNull(v) &&
        gw_json_get_string(v, PROTO_NAME_MAX, o->name, sizeof(o->name)) != CG_ERR_OK) {
        snprintf(err, errcap, "name: must be a string of at most %d bytes", PROTO_NAME_MAX);
        return CG_ERR_INVAL;
    }
    v = cJSON_GetObjectItemCaseSensitive(body, "billing_anchor_day");
    if (v != NULL && !cJSON_IsNull(v) && (gw_json_get_int(v, 28, &day) != CG_ERR_OK || day < 1)) {
        snprintf(err, errcap, "billing_anchor_day: must be an integer in 1..28");
        return CG_ERR_INVAL;
    }
    o->billing_anchor_day = (uint8_t)day;
    e = gw_json_limits_parse(cJSON_GetObjectItemCaseSensitive(body, "limits"), "limits", 0,
                             o->limits, &o->limit_n, err, errcap);
    if (e != CG_ERR_OK) {
        return e;
    }
    return gw_admin_webhooks_parse(cJSON_GetObjectItemCaseSensitive(body, "webhooks"), o, gen, err,
                                   errcap);
}

/* expires_at (RFC 3339, future) or expires_in_days (1..3650); neither = never. */
static cg_err gw_admin_expiry_parse(const cJSON *body, int64_t now, int64_t *out, char *err,
                                    size_t errcap)
{
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(body, "expires_at");
    const cJSON *days = cJSON_GetObjectItemCaseSensitive(body, "expires_in_days");
    int have_at = at != NULL && !cJSON_IsNull(at);
    int have_days = days != NULL && !cJSON_IsNull(days);
    int64_t v;

    *out = 0;
    if (have_at && have_days) {
        snprintf(err, errcap, "expires_in_days: cannot be combined with expires_at");
        return CG_ERR_INVAL;
    }
    if (have_at) {
        if (!cJSON_IsString(at) || cg_time_parse(at->valuestring, &v) != CG_ERR_OK) {
            snprintf(err, errcap, "expires_at: must be an RFC 3339 time");
            return CG_ERR_INVAL;
        }
        if (v <= now) {
            snprintf(err, errcap, "expires_at: must be in the future");
            return CG_ERR_INVAL;
        }
        *out = v;
    } else if (have_days) {
        if (gw_json_get_int(days, GW_ADMIN_EXPIRES_DAYS_MAX, &v) != CG_ERR_OK || v < 1) {
            snprintf(err, errcap, "expires_in_days: must be an integer in 1..%d",
                     GW_ADMIN_EXPIRES_DAYS_MAX);
            return CG_ERR_INVAL;
        }
        *out = now + v * GW_ADMIN_DAY_MS;
    }
    return CG_ERR_OK;
}

static cg_err gw_admin_key_parse(const cJSON *body, proto_key *k, char *err, size_t errcap)
{
    static const char *const fields[] = {"name",           "limits",
                                         "expires_at",     "expires_in_days",
                                         "group",          "customer",
                                         "allowed_models", "ip_allow",
                                         "ip_deny",        "max_tokens_per_request",
                                         "on_low_budget",  NULL};
    static const char *const later[] = {"group",         "customer", "allowed_models",
                                        "ip_allow",      "ip_deny",  "max_tokens_per_request",
                                        "on_low_budget", NULL};
    const cJSON *v;
    cg_err e;

    if ((e = gw_json_check_fields(body, "", fields, err, errcap)) != CG_ERR_OK ||
        (e = gw_admin_unsupported(body, later, err, errcap)) != CG_ERR_OK) {
        return e;
    }
    v = cJSON_GetObjectItemCaseSensitive(body, "name");
    if (v != NULL && !cJSON_IsNull(v) &&
        gw_json_get_string(v, PROTO_NAME_MAX, k->name, sizeof(k->name)) != CG_ERR_OK) {
        snprintf(err, errcap, "name: must be a string of at most %d bytes", PROTO_NAME_MAX);
        return CG_ERR_INVAL;
    }
    if ((e = gw_admin_expiry_parse(body, cg_now_ms(), &k->expires_ms, err, errcap)) != CG_ERR_OK) {
        return e;
    }
    return gw_json_limits_parse(cJSON_GetObjectItemCaseSensitive(body, "limits"), "limits", 0,
                                k->limits, &k->limit_n, err, errcap);
}

/* The body as a JSON object (an empty body counts as {}); NULL after answering 400. */
static cJSON *gw_admin_body(gw_admin_ctx *x, const cg_http_req *req)
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

/* ---- handlers (each returns 1 if the ledger now owns x) ---- */

static int gw_admin_create_org(gw_admin_ctx *x, const cg_http_req *req)
{
    char err[GW_ADMIN_ERR_MAX] = "";
    proto_org *o = &x->req.u.put_org.org;
    cJSON *body = gw_admin_body(x, req);
    cg_err e;

    if (body == NULL) {
        return 0;
    }
    e = gw_admin_org_parse(body, o, x->whsec_generated, err, sizeof(err));
    cJSON_Delete(body);
    if (e == CG_ERR_INTERNAL) {
        gw_admin_error(x, 500, "server_error", "internal_error", err, NULL);
        return 0;
    }
    if (e != CG_ERR_OK) {
        gw_admin_invalid(x, err);
        return 0;
    }
    o->created_ms = cg_now_ms();
    x->req.op = PROTO_OP_PUT_ORG;
    x->req.u.put_org.create_only = 1;
    gw_admin_route(&x->req, "org", o->id);
    return gw_admin_submit(x, GW_ADM_PUT_ORG);
}

static int gw_admin_get_org(gw_admin_ctx *x)
{
    x->req.op = PROTO_OP_GET_ORG;
    gw_admin_route(&x->req, "org", x->id);
    return gw_admin_submit(x, GW_ADM_GET_ORG);
}

static int gw_admin_create_key(gw_admin_ctx *x, const cg_http_req *req)
{
    char err[GW_ADMIN_ERR_MAX] = "";
    proto_key *k = &x->req.u.put_key.key;
    cJSON *body = gw_admin_body(x, req);
    cg_err e;

    if (body == NULL) {
        return 0;
    }
    e = gw_admin_key_parse(body, k, err, sizeof(err));
    cJSON_Delete(body);
    if (e != CG_ERR_OK) {
        gw_admin_invalid(x, err);
        return 0;
    }
    snprintf(k->org, sizeof(k->org), "%s", x->id);
    /* Step 1 reads the org; the parsed key waits in the union's put_key member,
     * which a GET_ORG request (no body) does not touch. */
    x->req.op = PROTO_OP_GET_ORG;
    gw_admin_route(&x->req, "org", x->id);
    return gw_admin_submit(x, GW_ADM_KEY_ORG);
}

static int gw_admin_get_key(gw_admin_ctx *x)
{
    x->req.op = PROTO_OP_GET_KEY;
    gw_admin_route(&x->req, "key", x->id);
    return gw_admin_submit(x, GW_ADM_GET_KEY);
}

/* ---- routing and auth ---- */

static void gw_admin_method_not_allowed(gw_admin_ctx *x, const char *allow)
{
    char msg[64];

    snprintf(msg, sizeof(msg), "Method not allowed here; use %s", allow);
    gw_admin_error(x, 405, "invalid_request_error", "method_not_allowed", msg, NULL);
}

static void gw_admin_not_found(gw_admin_ctx *x, const char *code, const char *message)
{
    gw_admin_error(x, 404, "invalid_request_error", code, message, NULL);
}

/* Copy a path segment that must be an id into x->id; 0 if it cannot be one. */
static int gw_admin_take_id(gw_admin_ctx *x, const char *s, size_t len)
{
    if (!gw_admin_id_ok(s, len)) {
        return 0;
    }
    memcpy(x->id, s, len);
    x->id[len] = '\0';
    return 1;
}

/* /admin/v1/orgs/{org} and /admin/v1/orgs/{org}/keys; rest is after "orgs/". */
static int gw_admin_dispatch_org(gw_admin_ctx *x, const cg_http_req *req, const char *rest)
{
    const char *slash = strchr(rest, '/');
    size_t idlen = slash != NULL ? (size_t)(slash - rest) : strlen(rest);
    int is_get = strcmp(req->method, "GET") == 0;
    int is_post = strcmp(req->method, "POST") == 0;

    if (slash != NULL && strcmp(slash, "/keys") != 0) {
        gw_admin_not_found(x, "not_found", "Unknown admin endpoint");
        return 0;
    }
    if (slash == NULL ? !is_get : !is_post) {
        gw_admin_method_not_allowed(x, slash == NULL ? "GET" : "POST");
        return 0;
    }
    if (!gw_admin_take_id(x, rest, idlen)) {
        gw_admin_not_found(x, "org_not_found", "No organization with this id");
        return 0;
    }
    return slash == NULL ? gw_admin_get_org(x) : gw_admin_create_key(x, req);
}

static int gw_admin_dispatch(gw_admin_ctx *x, const cg_http_req *req)
{
    const size_t orgs_len = sizeof(gw_admin_prefix_orgs) - 1;
    const size_t keys_len = sizeof(gw_admin_prefix_keys) - 1;
    const char *p = req->path;

    if (strcmp(p, gw_admin_prefix_orgs) == 0) {
        if (strcmp(req->method, "POST") != 0) {
            gw_admin_method_not_allowed(x, "POST");
            return 0;
        }
        return gw_admin_create_org(x, req);
    }
    if (strncmp(p, gw_admin_prefix_orgs, orgs_len) == 0 && p[orgs_len] == '/') {
        return gw_admin_dispatch_org(x, req, p + orgs_len + 1);
    }
    if (strncmp(p, gw_admin_prefix_keys, keys_len) == 0 && strchr(p + keys_len, '/') == NULL) {
        if (strcmp(req->method, "GET") != 0) {
            gw_admin_method_not_allowed(x, "GET");
            return 0;
        }
        if (!gw_admin_take_id(x, p + keys_len, strlen(p + keys_len))) {
            gw_admin_not_found(x, "key_not_found", "No API key with this id");
            return 0;
        }
        return gw_admin_get_key(x);
    }
    gw_admin_not_found(x, "not_found", "Unknown admin endpoint");
    return 0;
}

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
    gw_admin_ctx *x = calloc(1, sizeof(*x));

    if (x == NULL) {
        cg_http_respond_error(c, 500, "server_error", "internal_error", "out of memory", NULL);
        return;
    }
    x->a = a;
    x->c = c;
    snprintf(x->method, sizeof(x->method), "%s", req->method);
    snprintf(x->path, sizeof(x->path), "%s", req->path);
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
