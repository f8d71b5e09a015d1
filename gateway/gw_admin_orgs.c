/*
 * gw_admin_orgs.c — organisations in the admin API (see gw_admin_int.h).
 *
 *   POST  /admin/v1/orgs         PUT_ORG (create_only)           → 201, 409 org_exists
 *   GET   /admin/v1/orgs/{org}   GET_ORG_STATE                   → 200 with limit state
 *   PATCH /admin/v1/orgs/{org}   GET_ORG_STATE, then PUT_ORG     → 200
 *   DELETE /admin/v1/orgs/{org}  GET_ORG (404), LIST_KEYS limit 1 on every shard
 *                                (any key → 409 org_not_empty), DELETE org:<id> → 200
 *
 * emails: up to PROTO_EMAILS_MAX alert addresses (proto_email_ok), duplicates
 * (ignoring case) refused; the alerter mails the org's events to them and to
 * smtp_to. A PATCH of "emails" replaces the list.
 *
 * DELETE refuses while any shard still holds a key of the org (revoked keys
 * count: delete them first). Groups and customer overrides are not checked and
 * stay (the ledger has no list of them): an org created again with the same id
 * finds them again. The check and the delete are not atomic: a key created in
 * between (it needs the org to exist at its creation) is left without an org.
 *
 * Org limits get ids 1..n at creation; a PATCH of "limits" keeps the id of a
 * limit with the same (metric, window) (gw_json_limits_keep_ids).
 * customer_defaults limits carry proto_limit_natural_id, like every customer
 * limit. A webhook given without a secret gets a generated one, shown once in
 * the answer — except on PATCH when the org already has a webhook with that
 * URL: its secret is kept (and not shown), so re-sending the list does not
 * rotate secrets. billing_anchor_day changes apply to the org's own limits;
 * keys and groups keep the anchor copied at their creation.
 *
 * PATCH is a read-modify-write whose PUT expects the revision its GET saw; a
 * PUT refused as stale starts over from the GET with the patch as parsed
 * (gw_admin_rmw_again), so concurrent PATCHes never lose one another's fields.
 */
#include "gw_admin_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "cg_clock.h"
#include "cg_log.h"

#define GW_ADMIN_WHSEC_BYTES 32 /* random bytes of a generated webhook secret */

/* ---- JSON in ---- */

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

/* One webhook {url, secret?} at path; a missing secret is generated (*gen = 1). */
static cg_err gw_admin_webhook_parse(const cJSON *w, const char *path, proto_webhook *h,
                                     uint8_t *gen, char *err, size_t errcap)
{
    static const char *const fields[] = {"url", "secret", NULL};
    const cJSON *url, *sec;

    if (!cJSON_IsObject(w)) {
        snprintf(err, errcap, "%s: must be an object", path);
        return CG_ERR_INVAL;
    }
    if (gw_json_check_fields(w, path, fields, err, errcap) != CG_ERR_OK) {
        return CG_ERR_INVAL;
    }
    url = cJSON_GetObjectItemCaseSensitive(w, "url");
    sec = cJSON_GetObjectItemCaseSensitive(w, "secret");
    if (gw_json_get_string(url, PROTO_URL_MAX, h->url, sizeof(h->url)) != CG_ERR_OK ||
        !((strncmp(h->url, "http://", 7) == 0 && h->url[7] != '\0') ||
          (strncmp(h->url, "https://", 8) == 0 && h->url[8] != '\0'))) {
        snprintf(err, errcap, "%s.url: must be an http:// or https:// URL of at most %d bytes",
                 path, PROTO_URL_MAX);
        return CG_ERR_INVAL;
    }
    if (!gw_admin_given(sec)) {
        if (!gw_admin_whsec_generate(h->secret, sizeof(h->secret))) {
            snprintf(err, errcap, "%s.secret: could not generate one", path);
            return CG_ERR_INTERNAL;
        }
        *gen = 1;
    } else if (gw_json_get_string(sec, PROTO_SECRET_MAX, h->secret, sizeof(h->secret)) !=
                   CG_ERR_OK ||
               strncmp(h->secret, "whsec_", 6) != 0 || !gw_admin_base64_ok(h->secret + 6)) {
        snprintf(err, errcap, "%s.secret: must be \"whsec_\" followed by base64", path);
        return CG_ERR_INVAL;
    }
    return CG_ERR_OK;
}

/* webhooks: [{url, secret?}] (null = none) into o; generated secrets are flagged in gen. */
static cg_err gw_admin_webhooks_parse(const cJSON *v, proto_org *o, uint8_t *gen, char *err,
                                      size_t errcap)
{
    char path[GW_JSON_PATH_MAX];
    const cJSON *w;
    uint32_t i = 0;
    cg_err e;

    memset(gen, 0, PROTO_WEBHOOKS_MAX);
    if (!gw_admin_given(v)) {
        o->webhook_n = 0;
        return CG_ERR_OK;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > PROTO_WEBHOOKS_MAX) {
        snprintf(err, errcap, "webhooks: must be an array of at most %d {url, secret} objects",
                 PROTO_WEBHOOKS_MAX);
        return CG_ERR_INVAL;
    }
    cJSON_ArrayForEach(w, v)
    {
        gw_json_path_index(path, sizeof(path), "webhooks", i);
        e = gw_admin_webhook_parse(w, path, &o->webhooks[i], &gen[i], err, errcap);
        if (e != CG_ERR_OK) {
            return e;
        }
        i++;
    }
    o->webhook_n = (uint8_t)i;
    return CG_ERR_OK;
}

/* emails: ["addr", ...] (null = none) into o; each proto_email_ok, no duplicates. */
static cg_err gw_admin_emails_parse(const cJSON *v, proto_org *o, char *err, size_t errcap)
{
    char path[GW_JSON_PATH_MAX];
    const cJSON *e;
    uint32_t i = 0;

    if (!gw_admin_given(v)) {
        o->email_n = 0;
        return CG_ERR_OK;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > PROTO_EMAILS_MAX) {
        snprintf(err, errcap, "emails: must be an array of at most %d email addresses",
                 PROTO_EMAILS_MAX);
        return CG_ERR_INVAL;
    }
    cJSON_ArrayForEach(e, v)
    {
        gw_json_path_index(path, sizeof(path), "emails", i);
        if (gw_json_get_string(e, PROTO_EMAIL_MAX, o->emails[i], sizeof(o->emails[i])) !=
                CG_ERR_OK ||
            !proto_email_ok(o->emails[i])) {
            snprintf(err, errcap,
                     "%s: must be an email address (user@domain) of at most %d bytes, without "
                     "spaces, control characters, commas, quotes or angle brackets",
                     path, PROTO_EMAIL_MAX);
            return CG_ERR_INVAL;
        }
        for (uint32_t j = 0; j < i; j++) {
            if (strcasecmp(o->emails[j], o->emails[i]) == 0) {
                snprintf(err, errcap, "%s: duplicate address", path);
                return CG_ERR_INVAL;
            }
        }
        i++;
    }
    o->email_n = (uint8_t)i;
    return CG_ERR_OK;
}

/* customer_defaults: {"limits": [...]} (null = none), natural limit ids. */
static cg_err gw_admin_cust_defaults_parse(const cJSON *v, proto_org *o, char *err, size_t errcap)
{
    static const char *const fields[] = {"limits", NULL};
    cg_err e;

    if (!gw_admin_given(v)) {
        o->customer_limit_n = 0;
        return CG_ERR_OK;
    }
    if (!cJSON_IsObject(v)) {
        snprintf(err, errcap, "customer_defaults: must be an object {\"limits\": [...]}");
        return CG_ERR_INVAL;
    }
    if ((e = gw_json_check_fields(v, "customer_defaults", fields, err, errcap)) != CG_ERR_OK) {
        return e;
    }
    return gw_json_limits_parse(cJSON_GetObjectItemCaseSensitive(v, "limits"),
                                "customer_defaults.limits",
                                GW_JSON_LIMIT_ALLOW_SLIDING | GW_JSON_LIMIT_NATURAL_IDS,
                                o->customer_limits, &o->customer_limit_n, err, errcap);
}

/* billing_anchor_day and on_low_budget (null = not given). */
static cg_err gw_admin_org_scalars(const cJSON *body, proto_org *o, uint32_t *has, char *err,
                                   size_t errcap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "billing_anchor_day");
    int64_t day = 0;

    if (gw_admin_given(v)) {
        if (gw_json_get_int(v, 28, &day) != CG_ERR_OK || day < 1) {
            snprintf(err, errcap, "billing_anchor_day: must be an integer in 1..28");
            return CG_ERR_INVAL;
        }
        o->billing_anchor_day = (uint8_t)day;
        *has |= GW_ADM_F_ANCHOR;
    }
    v = cJSON_GetObjectItemCaseSensitive(body, "on_low_budget");
    if (gw_admin_given(v)) {
        if (gw_admin_low_budget_parse(v, 0, &o->on_low_budget, err, errcap) != CG_ERR_OK) {
            return CG_ERR_INVAL;
        }
        *has |= GW_ADM_F_LOW_BUDGET;
    }
    return CG_ERR_OK;
}

/* Every settable org field present in body into o, flagged in *has (create and PATCH). */
static cg_err gw_admin_org_fields(const cJSON *body, proto_org *o, uint32_t *has, uint8_t *gen,
                                  char *err, size_t errcap)
{
    const cJSON *v;
    cg_err e;

    if ((e = gw_admin_name_parse(body, o->name, has, err, errcap)) != CG_ERR_OK ||
        (e = gw_admin_org_scalars(body, o, has, err, errcap)) != CG_ERR_OK) {
        return e;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "limits")) != NULL) {
        *has |= GW_ADM_F_LIMITS;
        e = gw_json_limits_parse(v, "limits", GW_JSON_LIMIT_ALLOW_SLIDING, o->limits, &o->limit_n,
                                 err, errcap);
        if (e != CG_ERR_OK) {
            return e;
        }
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "customer_defaults")) != NULL) {
        *has |= GW_ADM_F_CUST_DEFAULTS;
        if ((e = gw_admin_cust_defaults_parse(v, o, err, errcap)) != CG_ERR_OK) {
            return e;
        }
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "emails")) != NULL) {
        *has |= GW_ADM_F_EMAILS;
        if ((e = gw_admin_emails_parse(v, o, err, errcap)) != CG_ERR_OK) {
            return e;
        }
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "webhooks")) != NULL) {
        *has |= GW_ADM_F_WEBHOOKS;
        return gw_admin_webhooks_parse(v, o, gen, err, errcap);
    }
    return CG_ERR_OK;
}

/* ---- JSON out ---- */

static cJSON *gw_admin_webhooks_json(const proto_org *o, const uint8_t *show_secret)
{
    cJSON *arr = cJSON_CreateArray();

    for (uint8_t i = 0; arr != NULL && i < o->webhook_n; i++) {
        cJSON *w = cJSON_CreateObject();
        int ok = w != NULL && gw_admin_add(w, "url", cJSON_CreateString(o->webhooks[i].url));
        if (ok && show_secret != NULL && show_secret[i]) {
            ok = gw_admin_add(w, "secret", cJSON_CreateString(o->webhooks[i].secret));
        }
        if (!ok) {
            cJSON_Delete(w);
            w = NULL;
        }
        if (!gw_admin_add_item(arr, w)) {
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

static cJSON *gw_admin_emails_json(const proto_org *o)
{
    cJSON *arr = cJSON_CreateArray();

    for (uint8_t i = 0; arr != NULL && i < o->email_n; i++) {
        if (!gw_admin_add_item(arr, cJSON_CreateString(o->emails[i]))) {
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

static cJSON *gw_admin_cust_defaults_json(const proto_org *o)
{
    cJSON *j = cJSON_CreateObject();

    if (j == NULL || !gw_admin_add(j, "limits",
                                   gw_admin_limits_json(o->customer_limits, o->customer_limit_n,
                                                        NULL, 0, o->billing_anchor_day, 0))) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* Org JSON with limit states; webhook secrets only where show_secret[i] (generated now). */
static cJSON *gw_admin_org_json(const proto_org *o, const proto_limit_state *states,
                                uint8_t state_n, const uint8_t *show_secret)
{
    int lb = o->on_low_budget == PROTO_LOW_BUDGET_CLAMP ? PROTO_LOW_BUDGET_CLAMP
                                                        : PROTO_LOW_BUDGET_REJECT;
    cJSON *j = cJSON_CreateObject();
    int ok = j != NULL && gw_admin_add(j, "id", cJSON_CreateString(o->id)) &&
             gw_admin_add(j, "name", cJSON_CreateString(o->name)) &&
             gw_admin_add(j, "billing_anchor_day", cJSON_CreateNumber(o->billing_anchor_day)) &&
             gw_admin_add(j, "created_at", gw_json_time(o->created_ms)) &&
             gw_admin_add(j, "on_low_budget", cJSON_CreateString(proto_low_budget_name(lb))) &&
             gw_admin_add(j, "limits",
                          gw_admin_limits_json(o->limits, o->limit_n, states, state_n,
                                               o->billing_anchor_day, 1)) &&
             gw_admin_add(j, "customer_defaults", gw_admin_cust_defaults_json(o)) &&
             gw_admin_add(j, "webhooks", gw_admin_webhooks_json(o, show_secret)) &&
             gw_admin_add(j, "emails", gw_admin_emails_json(o));

    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* ---- POST /admin/v1/orgs ---- */

static int gw_admin_org_created(gw_admin_ctx *x, const proto_rep *rep)
{
    if (rep->status == CG_ERR_EXISTS) {
        gw_admin_error(x, 409, "invalid_request_error", "org_exists",
                       "An organization with this id already exists", "id");
        return 0;
    }
    if (rep->status != CG_ERR_OK) {
        gw_admin_ledger_fail(x, CG_ERR_OK, rep->status);
        return 0;
    }
    cg_log(CG_LOG_INFO, "admin: org created", "org", x->org.id, NULL);
    gw_admin_send_json(x, 201, gw_admin_org_json(&x->org, NULL, 0, x->whsec_generated));
    return 0;
}

static cg_err gw_admin_org_create_parse(const cJSON *body, gw_admin_ctx *x, char *err,
                                        size_t errcap)
{
    static const char *const fields[] = {"id",       "name",          "billing_anchor_day",
                                         "limits",   "emails",        "customer_defaults",
                                         "webhooks", "on_low_budget", NULL};
    const cJSON *v;
    cg_err e;

    if ((e = gw_json_check_fields(body, "", fields, err, errcap)) != CG_ERR_OK) {
        return e;
    }
    v = cJSON_GetObjectItemCaseSensitive(body, "id");
    if (!cJSON_IsString(v) || !gw_admin_id_ok(v->valuestring, strlen(v->valuestring))) {
        snprintf(err, errcap, "id: required, must match [a-z0-9_-]{1,%d}", PROTO_ID_MAX);
        return CG_ERR_INVAL;
    }
    snprintf(x->org.id, sizeof(x->org.id), "%s", v->valuestring);
    x->org.billing_anchor_day = 1;
    x->org.on_low_budget = PROTO_LOW_BUDGET_REJECT;
    return gw_admin_org_fields(body, &x->org, &x->has, x->whsec_generated, err, errcap);
}

/* Answer a parse failure: 500 when generating a secret failed, else 400. */
static void gw_admin_org_parse_failed(gw_admin_ctx *x, cg_err e, const char *err)
{
    if (e == CG_ERR_INTERNAL) {
        gw_admin_error(x, 500, "server_error", "internal_error", err, NULL);
    } else {
        gw_admin_invalid(x, err);
    }
}

int gw_admin_org_create(gw_admin_ctx *x, const cg_http_req *req)
{
    char err[GW_ADMIN_ERR_MAX] = "";
    cJSON *body = gw_admin_body(x, req);
    cg_err e;

    if (body == NULL) {
        return 0;
    }
    e = gw_admin_org_create_parse(body, x, err, sizeof(err));
    cJSON_Delete(body);
    if (e != CG_ERR_OK) {
        gw_admin_org_parse_failed(x, e, err);
        return 0;
    }
    x->org.created_ms = cg_now_ms();
    gw_admin_req(x, PROTO_OP_PUT_ORG, "org", x->org.id);
    x->req.u.put_org.create_only = 1;
    x->req.u.put_org.org = x->org;
    return gw_admin_submit(x, gw_admin_org_created, 1);
}

/* ---- GET /admin/v1/orgs/{org} ---- */

static int gw_admin_org_got(gw_admin_ctx *x, const proto_rep *rep)
{
    if (!gw_admin_rep_ok(x, rep, "org_not_found", "No organization with this id")) {
        return 0;
    }
    gw_admin_send_json(x, 200,
                       gw_admin_org_json(&rep->u.get_org_state.org, rep->u.get_org_state.states,
                                         rep->u.get_org_state.state_n, NULL));
    return 0;
}

int gw_admin_org_get(gw_admin_ctx *x, const cg_http_req *req)
{
    (void)req;
    gw_admin_req(x, PROTO_OP_GET_ORG_STATE, "org", x->id);
    return gw_admin_submit(x, gw_admin_org_got, 0);
}

/* ---- PATCH /admin/v1/orgs/{org} ---- */

/* Start (or start over) the PATCH's read: GET_ORG_STATE, then gw_admin_org_patch_got. */
static int gw_admin_org_patch_read(gw_admin_ctx *x)
{
    gw_admin_req(x, PROTO_OP_GET_ORG_STATE, "org", x->id);
    return gw_admin_submit(x, x->rmw_got, x->rmw_tries > 0);
}

static int gw_admin_org_patched(gw_admin_ctx *x, const proto_rep *rep)
{
    if (rep->status == CG_ERR_CONFLICT) {
        return gw_admin_rmw_again(x) && gw_admin_org_patch_read(x);
    }
    if (rep->status == CG_ERR_NOTFOUND) { /* deleted between the GET and the PUT */
        gw_admin_not_found(x, "org_not_found", "No organization with this id");
        return 0;
    }
    if (rep->status != CG_ERR_OK) {
        gw_admin_ledger_fail(x, CG_ERR_OK, rep->status);
        return 0;
    }
    cg_log(CG_LOG_INFO, "admin: org updated", "org", x->org.id, NULL);
    gw_admin_send_json(x, 200,
                       gw_admin_org_json(&x->org, x->states, x->state_n, x->whsec_generated));
    return 0;
}

/* Webhooks of the patch; a generated secret yields to the current one of the same URL. */
static void gw_admin_org_merge_webhooks(gw_admin_ctx *x, proto_org *cur)
{
    for (uint8_t i = 0; i < x->org.webhook_n; i++) {
        for (uint8_t j = 0; x->whsec_generated[i] && j < cur->webhook_n; j++) {
            if (strcmp(cur->webhooks[j].url, x->org.webhooks[i].url) == 0) {
                memcpy(x->org.webhooks[i].secret, cur->webhooks[j].secret,
                       sizeof(x->org.webhooks[i].secret));
                x->whsec_generated[i] = 0;
            }
        }
    }
    memcpy(cur->webhooks, x->org.webhooks, sizeof(cur->webhooks));
    cur->webhook_n = x->org.webhook_n;
}

/* Apply the fields of the patch (x->org, x->has) to cur, the stored org. */
static void gw_admin_org_merge(gw_admin_ctx *x, proto_org *cur)
{
    if (x->has & GW_ADM_F_NAME) {
        memcpy(cur->name, x->org.name, sizeof(cur->name));
    }
    if (x->has & GW_ADM_F_ANCHOR) {
        cur->billing_anchor_day = x->org.billing_anchor_day;
    }
    if (x->has & GW_ADM_F_LOW_BUDGET) {
        cur->on_low_budget = x->org.on_low_budget;
    }
    if (x->has & GW_ADM_F_LIMITS) {
        gw_json_limits_keep_ids(cur->limits, cur->limit_n, x->org.limits, x->org.limit_n);
        memcpy(cur->limits, x->org.limits, sizeof(cur->limits));
        cur->limit_n = x->org.limit_n;
    }
    if (x->has & GW_ADM_F_CUST_DEFAULTS) {
        memcpy(cur->customer_limits, x->org.customer_limits, sizeof(cur->customer_limits));
        cur->customer_limit_n = x->org.customer_limit_n;
    }
    if (x->has & GW_ADM_F_WEBHOOKS) {
        gw_admin_org_merge_webhooks(x, cur);
    }
    if (x->has & GW_ADM_F_EMAILS) {
        memcpy(cur->emails, x->org.emails, sizeof(cur->emails));
        cur->email_n = x->org.email_n;
    }
}

static int gw_admin_org_patch_got(gw_admin_ctx *x, const proto_rep *rep)
{
    proto_org cur;

    if (!gw_admin_rep_ok(x, rep, "org_not_found", "No organization with this id")) {
        return 0;
    }
    cur = rep->u.get_org_state.org;
    gw_admin_keep_states(x, rep->u.get_org_state.states, rep->u.get_org_state.state_n);
    /* The patch as parsed: an earlier try's merge changed x->org and x->whsec_generated. */
    x->org = x->patch.org;
    memcpy(x->whsec_generated, x->whsec_patch, sizeof(x->whsec_generated));
    gw_admin_org_merge(x, &cur);
    x->org = cur;
    OPENSSL_cleanse(&cur, sizeof(cur));
    gw_admin_req(x, PROTO_OP_PUT_ORG, "org", x->org.id);
    x->req.u.put_org.create_only = 0;
    x->req.u.put_org.org = x->org;
    x->req.u.put_org.expect_rev = x->org.revision;
    return gw_admin_submit(x, gw_admin_org_patched, 1);
}

int gw_admin_org_patch(gw_admin_ctx *x, const cg_http_req *req)
{
    static const char *const fields[] = {"name",          "limits", "customer_defaults",
                                         "webhooks",      "emails", "billing_anchor_day",
                                         "on_low_budget", NULL};
    char err[GW_ADMIN_ERR_MAX] = "";
    cJSON *body = gw_admin_body(x, req);
    cg_err e;

    if (body == NULL) {
        return 0;
    }
    e = gw_json_check_fields(body, "", fields, err, sizeof(err));
    if (e == CG_ERR_OK) {
        e = gw_admin_org_fields(body, &x->org, &x->has, x->whsec_generated, err, sizeof(err));
    }
    cJSON_Delete(body);
    if (e != CG_ERR_OK) {
        gw_admin_org_parse_failed(x, e, err);
        return 0;
    }
    x->patch.org = x->org;
    memcpy(x->whsec_patch, x->whsec_generated, sizeof(x->whsec_patch));
    x->rmw_got = gw_admin_org_patch_got;
    return gw_admin_org_patch_read(x);
}

/* ---- DELETE /admin/v1/orgs/{org} ---- */

static int gw_admin_org_deleted(gw_admin_ctx *x, const proto_rep *rep)
{
    if (gw_admin_rep_ok(x, rep, "org_not_found", "No organization with this id")) {
        cg_log(CG_LOG_INFO, "admin: org deleted", "org", x->id, NULL);
        gw_admin_send_deleted(x, NULL, x->id);
    }
    return 0;
}

/* One shard's LIST_KEYS (limit 1): x->list_n counts the keys seen (x->list stays NULL).
 * The last reply answers: 503 if a shard failed, 409 if any has a key, else DELETE. */
static void gw_admin_org_keys_cb(cg_err err, const proto_rep *rep, void *ud)
{
    gw_admin_ctx *x = ud;

    if (gw_admin_fan_reply(x, err, rep)) {
        x->list_n += rep->u.list_keys.n;
    }
    if (x->fan_left > 0) {
        return;
    }
    if (x->fan_transport != CG_ERR_OK || x->fan_status != CG_ERR_OK) {
        /* A shard that did not answer may hold keys: never delete on a partial view. */
        gw_admin_ledger_fail(x, x->fan_transport, x->fan_status);
    } else if (x->c == NULL) {
        gw_admin_log(x, 499); /* the client left before anything was written */
    } else if (x->list_n > 0) {
        gw_admin_error(x, 409, "invalid_request_error", "org_not_empty",
                       "The organization still has API keys (revoked ones too); delete them "
                       "first",
                       NULL);
    } else {
        gw_admin_req(x, PROTO_OP_DELETE, "org", x->id);
        if (gw_admin_submit(x, gw_admin_org_deleted, 1)) {
            return; /* gw_admin_ledger_cb answers and frees x */
        }
    }
    gw_admin_ctx_done(x);
}

/* The org exists: ask every shard whether it holds one of its keys. */
static int gw_admin_org_delete_got(gw_admin_ctx *x, const proto_rep *rep)
{
    if (!gw_admin_rep_ok(x, rep, "org_not_found", "No organization with this id")) {
        return 0;
    }
    memset(&x->req, 0, sizeof(x->req));
    x->req.op = PROTO_OP_LIST_KEYS;
    snprintf(x->req.u.list_keys.org, sizeof(x->req.u.list_keys.org), "%s", x->id);
    x->req.u.list_keys.limit = 1;
    x->list_n = 0;
    return gw_admin_fan_out(x, gw_admin_org_keys_cb); /* the last shard's callback answers */
}

int gw_admin_org_delete(gw_admin_ctx *x, const cg_http_req *req)
{
    (void)req;
    gw_admin_req(x, PROTO_OP_GET_ORG, "org", x->id);
    return gw_admin_submit(x, gw_admin_org_delete_got, 0);
}
