/*
 * gw_estimate.c — worst-case and actual usage of a chat completion request.
 *
 * See gw_estimate.h for the bound and why it never underestimates. Invariant:
 * every quantity saturates instead of wrapping, so a hostile body can make the
 * estimate huge (and the reservation fail) but never small.
 */
#include "gw_estimate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cg_money.h"

/* Bytes counted for a JSON number or boolean inside a message: its longest printed form. */
#define GW_ESTIMATE_SCALAR_BYTES 24

static int64_t gw_sat_add(int64_t a, int64_t b)
{
    return (a > INT64_MAX - b) ? INT64_MAX : a + b;
}

static int64_t gw_sat_mul(int64_t a, int64_t b)
{
    if (a != 0 && b > INT64_MAX / a) {
        return INT64_MAX;
    }
    return a * b;
}

/* Content parts the model does not see as text; billed per part instead. */
static int gw_is_media_part(const cJSON *node)
{
    static const char *const media[] = {"image_url",   "input_audio", "file", "image",
                                        "input_image", "input_file",  "audio"};
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(node, "type");
    if (!cJSON_IsObject(node) || !cJSON_IsString(type)) {
        return 0;
    }
    for (size_t i = 0; i < sizeof(media) / sizeof(media[0]); i++) {
        if (strcmp(type->valuestring, media[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Bytes of every string value under node (media parts: the part allowance). */
static int64_t gw_text_bytes(const cg_config *cfg, const cJSON *node)
{
    if (cJSON_IsString(node)) {
        return (int64_t)strlen(node->valuestring);
    }
    if (cJSON_IsNumber(node) || cJSON_IsBool(node)) {
        return GW_ESTIMATE_SCALAR_BYTES;
    }
    if (gw_is_media_part(node)) {
        return cfg->prompt_part_tokens;
    }
    int64_t sum = 0;
    if (cJSON_IsArray(node) || cJSON_IsObject(node)) {
        const cJSON *child;
        cJSON_ArrayForEach(child, node)
        {
            sum = gw_sat_add(sum, gw_text_bytes(cfg, child));
        }
    }
    return sum;
}

/* Serialized length of a JSON value (tools, response_format). */
static int64_t gw_json_bytes(const cJSON *node)
{
    char *s = cJSON_PrintUnformatted(node);
    if (s == NULL) {
        /* Out of memory: a bound must still be returned; the caller's total
         * saturates and the reservation is refused rather than undercounted. */
        return INT64_MAX;
    }
    int64_t n = (int64_t)strlen(s);
    cJSON_free(s);
    return n;
}

cg_err gw_estimate_prompt(const cg_config *cfg, const cJSON *body, int64_t *out, char *msg,
                          size_t msgcap)
{
    static const char *const extras[] = {"tools", "functions", "response_format"};
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(body, "messages");
    if (!cJSON_IsArray(messages)) {
        snprintf(msg, msgcap, "messages: required, must be an array");
        return CG_ERR_INVAL;
    }
    int64_t total = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, messages)
    {
        total = gw_sat_add(total, gw_text_bytes(cfg, m));
        total = gw_sat_add(total, cfg->prompt_message_tokens);
    }
    for (size_t i = 0; i < sizeof(extras) / sizeof(extras[0]); i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(body, extras[i]);
        if (x != NULL && !cJSON_IsNull(x)) {
            total = gw_sat_add(total, gw_json_bytes(x));
            total = gw_sat_add(total, cfg->prompt_message_tokens);
        }
    }
    *out = total;
    return CG_ERR_OK;
}

/* An optional integer field in [lo, hi]: 1 = present (*out set), 0 = absent or null, -1 = bad. */
static int gw_opt_int(const cJSON *body, const char *name, int64_t lo, int64_t hi, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);
    if (v == NULL || cJSON_IsNull(v)) {
        return 0;
    }
    if (!cJSON_IsNumber(v)) {
        return -1;
    }
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < (double)lo || d > (double)hi) {
        return -1;
    }
    *out = (int64_t)d;
    return 1;
}

cg_err gw_estimate_completion(const cg_model_cfg *m, const cJSON *body, int64_t *out, char *msg,
                              size_t msgcap)
{
    static const char *const fields[] = {"max_completion_tokens", "max_tokens"};
    int64_t bound = -1;
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        int64_t v = 0;
        int r = gw_opt_int(body, fields[i], 0, GW_ESTIMATE_MAX_TOKENS_MAX, &v);
        if (r < 0) {
            snprintf(msg, msgcap, "%s: must be a non-negative integer", fields[i]);
            return CG_ERR_INVAL;
        }
        if (r > 0 && v > bound) {
            bound = v;
        }
    }
    if (bound < 0) {
        bound = m->max_output_tokens;
    }
    int64_t n = 1;
    if (gw_opt_int(body, "n", 1, GW_ESTIMATE_N_MAX, &n) < 0) {
        snprintf(msg, msgcap, "n: must be an integer from 1 to %d", GW_ESTIMATE_N_MAX);
        return CG_ERR_INVAL;
    }
    *out = gw_sat_mul(bound, n);
    return CG_ERR_OK;
}

cg_err gw_estimate_request(const cg_config *cfg, const cg_model_cfg *m, const cJSON *body,
                           gw_estimate *out, char *msg, size_t msgcap)
{
    int64_t prompt = 0, completion = 0;
    cg_err err = gw_estimate_prompt(cfg, body, &prompt, msg, msgcap);
    if (err != CG_ERR_OK) {
        return err;
    }
    err = gw_estimate_completion(m, body, &completion, msg, msgcap);
    if (err != CG_ERR_OK) {
        return err;
    }
    int64_t prompt_rate = m->prompt_nusd_per_mtok;
    if (m->cached_prompt_nusd_per_mtok > prompt_rate) {
        prompt_rate = m->cached_prompt_nusd_per_mtok;
    }
    int64_t cost = cg_money_token_cost(prompt, prompt_rate);
    cost = gw_sat_add(cost, cg_money_token_cost(completion, m->completion_nusd_per_mtok));
    cost = gw_sat_add(cost, cfg->routing_fee_nusd);
    out->prompt_tokens = prompt;
    out->completion_tokens = completion;
    out->cost_nusd = cost;
    return CG_ERR_OK;
}

int64_t gw_cost_of(const cg_config *cfg, const cg_model_cfg *m, const gw_usage *u)
{
    int64_t cached = u->cached_tokens;
    if (cached > u->prompt_tokens) {
        cached = u->prompt_tokens;
    }
    int64_t cached_rate = m->cached_prompt_nusd_per_mtok >= 0 ? m->cached_prompt_nusd_per_mtok
                                                              : m->prompt_nusd_per_mtok;
    int64_t cost = cg_money_token_cost(u->prompt_tokens - cached, m->prompt_nusd_per_mtok);
    cost = gw_sat_add(cost, cg_money_token_cost(cached, cached_rate));
    cost = gw_sat_add(cost, cg_money_token_cost(u->completion_tokens, m->completion_nusd_per_mtok));
    return gw_sat_add(cost, cfg->routing_fee_nusd);
}

/* A non-negative integer member, else 0. */
static int64_t gw_count(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0) {
        return 0;
    }
    if (v->valuedouble >= (double)GW_ESTIMATE_MAX_TOKENS_MAX) {
        return GW_ESTIMATE_MAX_TOKENS_MAX;
    }
    return (int64_t)ceil(v->valuedouble);
}

int gw_usage_from_json(const cJSON *usage, gw_usage *out)
{
    if (!cJSON_IsObject(usage)) {
        return 0;
    }
    out->prompt_tokens = gw_count(usage, "prompt_tokens");
    out->completion_tokens = gw_count(usage, "completion_tokens");
    const cJSON *details = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens_details");
    out->cached_tokens = cJSON_IsObject(details) ? gw_count(details, "cached_tokens") : 0;
    if (out->cached_tokens > out->prompt_tokens) {
        out->cached_tokens = out->prompt_tokens;
    }
    return 1;
}

int gw_body_has_nul_escape(const char *body, size_t len)
{
    /* The hex digits of NUL have no letter case, so one pattern covers every spelling. */
    static const char pat[] = "\\u0000";
    return memmem(body, len, pat, sizeof(pat) - 1) != NULL;
}
