/*
 * gw_admin_pricing.c — pricing in the admin API (docs/contracts.md "Pricing").
 *
 *   GET /admin/v1/pricing          LIST_PRICING on every shard → 200 {"data":[...]}:
 *                                  every configured model, with its override applied
 *                                  ("source": "admin") or its config price ("config")
 *   PUT /admin/v1/pricing/{model}  {"input_per_mtok","output_per_mtok"} → PUT_PRICING on
 *                                  the shard of "pricing:<model>" → 200 the entry
 *
 * The `model` directives are the base; an override replaces a configured
 * model's prompt (input) and completion (output) rates. Overrides of models no
 * longer configured are ignored. The ledger publishes a notice for every PUT,
 * on which every gateway worker reloads its pricing snapshot (gw_notify.c).
 * Any shard failing a listing is 503 ledger_unavailable (no partial table).
 */
#include "gw_admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_log.h"
#include "gw_estimate.h"

/* One entry of the listing: m as the gateway prices it now. */
static cJSON *gw_admin_price_json(const cg_config *cfg, const cg_model_cfg *m, int admin)
{
    cJSON *j = cJSON_CreateObject();
    int ok =
        j != NULL && gw_admin_add(j, "model", cJSON_CreateString(m->name)) &&
        gw_admin_add(j, "provider",
                     cJSON_CreateString(
                         m->provider < cfg->provider_n ? cfg->providers[m->provider].name : "")) &&
        gw_admin_add(j, "input_per_mtok", gw_json_money(m->prompt_nusd_per_mtok)) &&
        gw_admin_add(j, "output_per_mtok", gw_json_money(m->completion_nusd_per_mtok)) &&
        gw_admin_add(j, "max_output_tokens", cJSON_CreateNumber((double)m->max_output_tokens)) &&
        gw_admin_add(j, "source", cJSON_CreateString(admin ? "admin" : "config"));
    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* ---- GET /admin/v1/pricing ---- */

static int gw_admin_model_cmp(const void *a, const void *b)
{
    return strcmp(((const cg_model_cfg *)a)->name, ((const cg_model_cfg *)b)->name);
}

static void gw_admin_pricing_answer(gw_admin_ctx *x)
{
    const cg_config *cfg = x->a->cfg;
    cg_model_cfg *models = malloc(sizeof(*models) * (cfg->model_n ? cfg->model_n : 1));
    uint8_t *admin = calloc(cfg->model_n ? cfg->model_n : 1, 1);
    cJSON *root = cJSON_CreateObject(), *data = cJSON_CreateArray();
    int ok = models != NULL && admin != NULL && root != NULL && data != NULL;

    if (ok) {
        memcpy(models, cfg->models, sizeof(*models) * cfg->model_n);
        qsort(models, cfg->model_n, sizeof(*models), gw_admin_model_cmp);
        for (uint32_t i = 0; i < x->price_n; i++) {
            for (uint32_t j = 0; j < cfg->model_n; j++) {
                if (strcmp(models[j].name, x->prices[i].model) == 0) {
                    gw_pricing_apply(&models[j], x->prices[i].input_nusd_per_mtok,
                                     x->prices[i].output_nusd_per_mtok);
                    admin[j] = 1;
                }
            }
        }
    }
    for (uint32_t j = 0; ok && j < cfg->model_n; j++) {
        ok = gw_admin_add_item(data, gw_admin_price_json(cfg, &models[j], admin[j]));
    }
    if (ok) {
        ok = gw_admin_add(root, "data", data); /* consumes data */
    } else {
        cJSON_Delete(data);
    }
    if (!ok) {
        cJSON_Delete(root);
        root = NULL;
    }
    free(models);
    free(admin);
    gw_admin_send_json(x, 200, root);
}

static void gw_admin_pricing_cb(cg_err err, const proto_rep *rep, void *ud)
{
    gw_admin_ctx *x = ud;

    if (gw_admin_fan_reply(x, err, rep)) {
        for (uint32_t i = 0; i < rep->u.list_pricing.n && x->prices != NULL &&
                             x->price_n < x->a->cfg->shard_n * PROTO_PRICING_MAX;
             i++) {
            x->prices[x->price_n++] = rep->u.list_pricing.items[i];
        }
    }
    gw_admin_fan_done(x, gw_admin_pricing_answer);
}

int gw_admin_pricing_list(gw_admin_ctx *x, const cg_http_req *req)
{
    uint16_t n = (uint16_t)x->a->cfg->shard_n;

    if (req->query[0] != '\0') {
        gw_admin_invalid(x, "query: GET /admin/v1/pricing takes no parameters");
        return 0;
    }
    x->prices = calloc((size_t)n * PROTO_PRICING_MAX, sizeof(*x->prices));
    if (x->prices == NULL) {
        gw_admin_error(x, 500, "server_error", "internal_error", "out of memory", NULL);
        return 0;
    }
    memset(&x->req, 0, sizeof(x->req));
    x->req.op = PROTO_OP_LIST_PRICING;
    return gw_admin_fan_out(x, gw_admin_pricing_cb);
}

/* ---- PUT /admin/v1/pricing/{model} ---- */

static int gw_admin_pricing_written(gw_admin_ctx *x, const proto_rep *rep)
{
    const cg_model_cfg *base = cg_config_model(x->a->cfg, x->id);
    cg_model_cfg m;

    if (rep->status != CG_ERR_OK) {
        gw_admin_ledger_fail(x, CG_ERR_OK, rep->status);
        return 0;
    }
    m = *base;
    gw_pricing_apply(&m, x->req.u.put_pricing.pricing.input_nusd_per_mtok,
                     x->req.u.put_pricing.pricing.output_nusd_per_mtok);
    cg_log(CG_LOG_INFO, "admin: pricing updated", "model", m.name, NULL);
    gw_admin_send_json(x, 200, gw_admin_price_json(x->a->cfg, &m, 1));
    return 0;
}

/* A rate field: a number or decimal string of USD, >= 0. */
static int gw_admin_rate(gw_admin_ctx *x, const cJSON *body, const char *name, int64_t *out)
{
    char err[GW_ADMIN_ERR_MAX];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);

    if (!gw_admin_given(v)) {
        snprintf(err, sizeof(err), "%s: required (USD per million tokens)", name);
        gw_admin_invalid(x, err);
        return 0;
    }
    if (gw_json_get_money(v, out) != CG_ERR_OK || *out < 0) {
        snprintf(err, sizeof(err), "%s: must be a non-negative USD amount (number or string)",
                 name);
        gw_admin_invalid(x, err);
        return 0;
    }
    return 1;
}

int gw_admin_pricing_put(gw_admin_ctx *x, const cg_http_req *req)
{
    static const char *const names[] = {"input_per_mtok", "output_per_mtok", NULL};
    char err[GW_ADMIN_ERR_MAX] = "";
    proto_pricing *p = &x->req.u.put_pricing.pricing;
    int64_t in = 0, out = 0;
    cJSON *body;

    if (cg_config_model(x->a->cfg, x->id) == NULL) {
        gw_admin_not_found(x, "model_not_found", "No configured model with this name");
        return 0;
    }
    if ((body = gw_admin_body(x, req)) == NULL) {
        return 0;
    }
    if (gw_json_check_fields(body, "", names, err, sizeof(err)) != CG_ERR_OK) {
        cJSON_Delete(body);
        gw_admin_invalid(x, err);
        return 0;
    }
    if (!gw_admin_rate(x, body, "input_per_mtok", &in) ||
        !gw_admin_rate(x, body, "output_per_mtok", &out)) {
        cJSON_Delete(body);
        return 0;
    }
    cJSON_Delete(body);
    gw_admin_req(x, PROTO_OP_PUT_PRICING, "pricing", x->id);
    snprintf(p->model, sizeof(p->model), "%s", x->id);
    p->input_nusd_per_mtok = in;
    p->output_nusd_per_mtok = out;
    return gw_admin_submit(x, gw_admin_pricing_written, 1);
}
