/*
 * gw_estimate.c — worst-case and actual usage of a request to a proxied endpoint.
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
#include "gw_json.h"
#include "proto.h"

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

/* One message, item or schema: its string bytes plus the allowance. */
static int64_t gw_item_bound(const cg_config *cfg, const cJSON *node)
{
    return gw_sat_add(gw_text_bytes(cfg, node), cfg->prompt_message_tokens);
}

/* For each named member present (not null): its serialized length plus the allowance. */
static int64_t gw_extras_bound(const cg_config *cfg, const cJSON *body, const char *const *names,
                               size_t n)
{
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(body, names[i]);
        if (x != NULL && !cJSON_IsNull(x)) {
            total = gw_sat_add(total, gw_json_bytes(x));
            total = gw_sat_add(total, cfg->prompt_message_tokens);
        }
    }
    return total;
}

static cg_err gw_prompt_chat(const cg_config *cfg, const cJSON *body, int64_t *out, char *msg,
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
        total = gw_sat_add(total, gw_item_bound(cfg, m));
    }
    *out = gw_sat_add(total, gw_extras_bound(cfg, body, extras, 3));
    return CG_ERR_OK;
}

/* A token-id array: every element an integer. 1 = yes. */
static int gw_is_token_array(const cJSON *a)
{
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) == 0) {
        return 0;
    }
    const cJSON *t;
    cJSON_ArrayForEach(t, a)
    {
        if (!cJSON_IsNumber(t) || t->valuedouble != floor(t->valuedouble)) {
            return 0;
        }
    }
    return 1;
}

/*
 * The inputs of a completions "prompt" / embeddings "input": a string, an
 * array of strings, a token-id array, or an array of token-id arrays. Sets
 * *bytes to the sum over inputs of (bytes or ids + per_input) and *count to
 * the number of inputs. CG_ERR_INVAL for any other shape.
 */
static cg_err gw_inputs_bound(const cJSON *v, int64_t per_input, int64_t *bytes, int64_t *count)
{
    int64_t total = 0, n = 0;
    if (cJSON_IsString(v)) {
        *bytes = gw_sat_add((int64_t)strlen(v->valuestring), per_input);
        *count = 1;
        return CG_ERR_OK;
    }
    if (gw_is_token_array(v)) {
        *bytes = gw_sat_add(cJSON_GetArraySize(v), per_input);
        *count = 1;
        return CG_ERR_OK;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0) {
        return CG_ERR_INVAL;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, v)
    {
        if (cJSON_IsString(it)) {
            total = gw_sat_add(total, (int64_t)strlen(it->valuestring));
        } else if (gw_is_token_array(it)) {
            total = gw_sat_add(total, cJSON_GetArraySize(it));
        } else {
            return CG_ERR_INVAL;
        }
        total = gw_sat_add(total, per_input);
        n++;
    }
    *bytes = total;
    *count = n;
    return CG_ERR_OK;
}

static cg_err gw_prompt_inputs(const cg_config *cfg, int ep, const cJSON *body, int64_t *out,
                               char *msg, size_t msgcap)
{
    const char *field = ep == GW_EP_COMPLETIONS ? "prompt" : "input";
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, field);
    const cJSON *suffix = cJSON_GetObjectItemCaseSensitive(body, "suffix");
    int64_t per = cfg->prompt_message_tokens;
    if (ep == GW_EP_COMPLETIONS && cJSON_IsString(suffix)) {
        /* The suffix is part of every prompt of the batch. */
        per = gw_sat_add(per, (int64_t)strlen(suffix->valuestring));
    }
    int64_t total = 0, count = 0;
    if (gw_inputs_bound(v, per, &total, &count) != CG_ERR_OK) {
        snprintf(msg, msgcap,
                 "%s: required, must be a string, an array of strings, an array of token ids "
                 "or an array of token-id arrays (not empty)",
                 field);
        return CG_ERR_INVAL;
    }
    *out = total;
    return CG_ERR_OK;
}

static cg_err gw_prompt_responses(const cg_config *cfg, const cJSON *body, int64_t *out, char *msg,
                                  size_t msgcap)
{
    static const char *const extras[] = {"tools", "text"};
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(body, "input");
    const cJSON *instr = cJSON_GetObjectItemCaseSensitive(body, "instructions");
    int64_t total = 0;
    if (cJSON_IsString(input)) {
        total = gw_item_bound(cfg, input);
    } else if (cJSON_IsArray(input)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, input)
        {
            total = gw_sat_add(total, gw_item_bound(cfg, it));
        }
    } else {
        snprintf(msg, msgcap, "input: required, must be a string or an array of items");
        return CG_ERR_INVAL;
    }
    if (instr != NULL && !cJSON_IsNull(instr)) {
        if (!cJSON_IsString(instr)) {
            snprintf(msg, msgcap, "instructions: must be a string");
            return CG_ERR_INVAL;
        }
        total = gw_sat_add(total, gw_item_bound(cfg, instr));
    }
    *out = gw_sat_add(total, gw_extras_bound(cfg, body, extras, 2));
    return CG_ERR_OK;
}

cg_err gw_estimate_prompt(const cg_config *cfg, int ep, const cJSON *body, int64_t *out, char *msg,
                          size_t msgcap)
{
    switch (ep) {
    case GW_EP_CHAT:
        return gw_prompt_chat(cfg, body, out, msg, msgcap);
    case GW_EP_COMPLETIONS:
    case GW_EP_EMBEDDINGS:
        return gw_prompt_inputs(cfg, ep, body, out, msg, msgcap);
    case GW_EP_RESPONSES:
        return gw_prompt_responses(cfg, body, out, msg, msgcap);
    default:
        snprintf(msg, msgcap, "this endpoint takes no request body");
        return CG_ERR_INVAL;
    }
}

size_t gw_endpoint_max_fields(int ep, const char *const **out)
{
    static const char *const chat[] = {"max_completion_tokens", "max_tokens"};
    static const char *const completions[] = {"max_tokens"};
    static const char *const responses[] = {"max_output_tokens"};
    switch (ep) {
    case GW_EP_CHAT:
        *out = chat;
        return 2;
    case GW_EP_COMPLETIONS:
        *out = completions;
        return 1;
    case GW_EP_RESPONSES:
        *out = responses;
        return 1;
    default:
        *out = NULL;
        return 0;
    }
}

const char *gw_endpoint_fill_field(int ep)
{
    const char *const *f = NULL;
    size_t n = gw_endpoint_max_fields(ep, &f);
    return n == 0 ? NULL : f[n - 1];
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

/* The bound the request names (-1: none). */
static cg_err gw_named_max(int ep, const cJSON *body, int64_t *out, char *msg, size_t msgcap)
{
    const char *const *fields = NULL;
    size_t nf = gw_endpoint_max_fields(ep, &fields);
    int64_t bound = -1;
    for (size_t i = 0; i < nf; i++) {
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
    *out = bound;
    return CG_ERR_OK;
}

/* Completions a request may produce (see the file comment). */
static cg_err gw_choices(int ep, const cJSON *body, int64_t *out, char *msg, size_t msgcap)
{
    int64_t n = 1, best_of = 1, prompts = 1, ignored = 0;
    if (ep == GW_EP_EMBEDDINGS) {
        *out = 0;
        return CG_ERR_OK;
    }
    if (ep == GW_EP_RESPONSES) {
        *out = 1;
        return CG_ERR_OK;
    }
    if (gw_opt_int(body, "n", 1, GW_ESTIMATE_N_MAX, &n) < 0) {
        snprintf(msg, msgcap, "n: must be an integer from 1 to %d", GW_ESTIMATE_N_MAX);
        return CG_ERR_INVAL;
    }
    if (ep == GW_EP_COMPLETIONS) {
        if (gw_opt_int(body, "best_of", 1, GW_ESTIMATE_N_MAX, &best_of) < 0) {
            snprintf(msg, msgcap, "best_of: must be an integer from 1 to %d", GW_ESTIMATE_N_MAX);
            return CG_ERR_INVAL;
        }
        const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(body, "prompt");
        if (gw_inputs_bound(prompt, 0, &ignored, &prompts) != CG_ERR_OK) {
            prompts = 1; /* the prompt's shape is checked (and refused) by the prompt bound */
        }
    }
    *out = gw_sat_mul(n > best_of ? n : best_of, prompts);
    return CG_ERR_OK;
}

cg_err gw_estimate_completion(const cg_model_cfg *m, int ep, const cJSON *body, gw_estimate *out,
                              char *msg, size_t msgcap)
{
    int64_t named = -1, choices = 0;
    cg_err err = gw_named_max(ep, body, &named, msg, msgcap);
    if (err == CG_ERR_OK) {
        err = gw_choices(ep, body, &choices, msg, msgcap);
    }
    if (err != CG_ERR_OK) {
        return err;
    }
    out->named_max = named;
    out->choices = choices;
    out->max_tokens = choices == 0 ? 0 : (named >= 0 ? named : m->max_output_tokens);
    out->completion_tokens = gw_sat_mul(out->max_tokens, choices);
    return CG_ERR_OK;
}

int64_t gw_estimate_tokens(const gw_estimate *e)
{
    return gw_sat_add(e->prompt_tokens, e->completion_tokens);
}

int64_t gw_estimate_prompt_cost(const cg_model_cfg *m, int64_t prompt_tokens)
{
    int64_t prompt_rate = m->prompt_nusd_per_mtok;
    if (m->cached_prompt_nusd_per_mtok > prompt_rate) {
        prompt_rate = m->cached_prompt_nusd_per_mtok;
    }
    return cg_money_token_cost(prompt_tokens, prompt_rate);
}

void gw_estimate_set_max(const cg_config *cfg, const cg_model_cfg *m, gw_estimate *e,
                         int64_t max_tokens)
{
    e->max_tokens = e->choices == 0 ? 0 : max_tokens;
    e->completion_tokens = gw_sat_mul(e->max_tokens, e->choices);
    int64_t cost = gw_estimate_prompt_cost(m, e->prompt_tokens);
    cost = gw_sat_add(cost, cg_money_token_cost(e->completion_tokens, m->completion_nusd_per_mtok));
    e->cost_nusd = gw_sat_add(cost, cfg->routing_fee_nusd);
}

cg_err gw_estimate_request(const cg_config *cfg, const cg_model_cfg *m, int ep, const cJSON *body,
                           gw_estimate *out, char *msg, size_t msgcap)
{
    gw_estimate e;
    memset(&e, 0, sizeof(e));
    cg_err err = gw_estimate_prompt(cfg, ep, body, &e.prompt_tokens, msg, msgcap);
    if (err != CG_ERR_OK) {
        return err;
    }
    err = gw_estimate_completion(m, ep, body, &e, msg, msgcap);
    if (err != CG_ERR_OK) {
        return err;
    }
    gw_estimate_set_max(cfg, m, &e, e.max_tokens);
    *out = e;
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
    /* Chat, completions and embeddings name them prompt/completion; responses input/output. */
    int responses = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens") == NULL &&
                    cJSON_GetObjectItemCaseSensitive(usage, "input_tokens") != NULL;
    out->prompt_tokens = gw_count(usage, responses ? "input_tokens" : "prompt_tokens");
    out->completion_tokens = gw_count(usage, responses ? "output_tokens" : "completion_tokens");
    const cJSON *details = cJSON_GetObjectItemCaseSensitive(
        usage, responses ? "input_tokens_details" : "prompt_tokens_details");
    out->cached_tokens = cJSON_IsObject(details) ? gw_count(details, "cached_tokens") : 0;
    if (out->cached_tokens > out->prompt_tokens) {
        out->cached_tokens = out->prompt_tokens;
    }
    return 1;
}

/* The first top-level "usage" member's value of a strict-JSON object body:
 * 0 with [*vs, *ve) (NULL if there is none), -1 when cJSON must decide. */
static int gw_usage_span(const char *body, size_t len, const char **vs, const char **ve)
{
    gw_jw w = {body, body + len};
    *vs = *ve = NULL;
    int open = gw_jw_object_open(&w);
    if (open <= 0) {
        return open;
    }
    for (;;) {
        const char *k;
        size_t kn;
        if (gw_jw_key(&w, &k, &kn) != 0) {
            return -1;
        }
        const char *start = w.p;
        if (gw_jw_value(&w, 1, NULL) != 0) {
            return -1;
        }
        if (*vs == NULL && gw_jw_is(k, kn, "usage")) {
            *vs = start;
            *ve = w.p;
        }
        int more = gw_jw_next(&w, '}');
        if (more <= 0) {
            return more; /* trailing bytes are ignored, as cJSON_ParseWithLength does */
        }
    }
}

/* gw_count for a value's raw text [s, e): a number read as cJSON reads it (strtod), anything
 * else 0; -1 for a number this does not take (then cJSON decides). */
static int gw_count_raw(const char *s, const char *e, int64_t *out)
{
    char buf[64];
    size_t n = (size_t)(e - s);
    *out = 0;
    if (s == NULL || n == 0 || !(*s == '-' || (*s >= '0' && *s <= '9'))) {
        return 0; /* not a number (or absent): cJSON_IsNumber is false */
    }
    if (n >= sizeof(buf)) {
        return -1;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end = NULL;
    double v = strtod(buf, &end);
    if (end != buf + n) {
        return -1;
    }
    if (!isfinite(v) || v < 0) {
        return 0;
    }
    *out = v >= (double)GW_ESTIMATE_MAX_TOKENS_MAX ? GW_ESTIMATE_MAX_TOKENS_MAX : (int64_t)ceil(v);
    return 0;
}

/* The raw values of the first members named names[0..n) in object text [vs, ve), in one
 * pass: span[i] = {start, end}, or {NULL, NULL} when absent; -1 when the walker gives up. */
static int gw_members_raw(const char *vs, const char *ve, const char *const *names, size_t n,
                          const char *(*span)[2])
{
    gw_jw w = {vs, ve};
    for (size_t i = 0; i < n; i++) {
        span[i][0] = span[i][1] = NULL;
    }
    int open = gw_jw_object_open(&w);
    if (open <= 0) {
        return open;
    }
    for (;;) {
        const char *k, *start;
        size_t kn;
        if (gw_jw_key(&w, &k, &kn) != 0) {
            return -1;
        }
        start = w.p;
        if (gw_jw_value(&w, 2, NULL) != 0) {
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            if (span[i][0] == NULL && gw_jw_is(k, kn, names[i])) {
                span[i][0] = start;
                span[i][1] = w.p;
            }
        }
        int more = gw_jw_next(&w, '}');
        if (more <= 0) {
            return more;
        }
    }
}

/* gw_usage_from_json on the usage object's text [vs, ve) without building a tree:
 * 1 / 0 as it, -1 when cJSON must decide. */
static int gw_usage_walk(const char *vs, const char *ve, gw_usage *out)
{
    enum { PT, IT, CT, OT, PD, ID, N };
    static const char *const names[N] = {"prompt_tokens",         "input_tokens",
                                         "completion_tokens",     "output_tokens",
                                         "prompt_tokens_details", "input_tokens_details"};
    const char *v[N][2], *cached[1][2];
    if (*vs != '{') {
        return 0; /* not an object */
    }
    if (gw_members_raw(vs, ve, names, N, v) != 0) {
        return -1;
    }
    int responses = v[PT][0] == NULL && v[IT][0] != NULL;
    int p = responses ? IT : PT, c = responses ? OT : CT, d = responses ? ID : PD;
    gw_usage u = {0};
    if (gw_count_raw(v[p][0], v[p][1], &u.prompt_tokens) != 0 ||
        gw_count_raw(v[c][0], v[c][1], &u.completion_tokens) != 0) {
        return -1;
    }
    if (v[d][0] != NULL && *v[d][0] == '{') {
        static const char *const cn[1] = {"cached_tokens"};
        if (gw_members_raw(v[d][0], v[d][1], cn, 1, cached) != 0 ||
            gw_count_raw(cached[0][0], cached[0][1], &u.cached_tokens) != 0) {
            return -1;
        }
    }
    if (u.cached_tokens > u.prompt_tokens) {
        u.cached_tokens = u.prompt_tokens;
    }
    *out = u;
    return 1;
}

int gw_usage_from_body(const char *body, size_t len, gw_usage *out)
{
    const char *vs, *ve;
    int r;
    if (body != NULL && gw_usage_span(body, len, &vs, &ve) == 0) {
        if (vs == NULL) {
            return 0;
        }
        /* The usage object without a cJSON tree (~3 % of the gateway's CPU per request
         * before, perf); anything the walker does not take goes to cJSON as before. */
        if ((r = gw_usage_walk(vs, ve, out)) >= 0) {
            return r;
        }
        cJSON *u = cJSON_ParseWithLength(vs, (size_t)(ve - vs));
        r = gw_usage_from_json(u, out);
        cJSON_Delete(u);
        return r;
    }
    cJSON *j = cJSON_ParseWithLength(body != NULL ? body : "", len);
    r = gw_usage_from_json(cJSON_GetObjectItemCaseSensitive(j, "usage"), out);
    cJSON_Delete(j);
    return r;
}

int gw_body_has_nul_escape(const char *body, size_t len)
{
    /* The hex digits of NUL have no letter case, so one pattern covers every spelling. */
    static const char pat[] = "\\u0000";
    return memmem(body, len, pat, sizeof(pat) - 1) != NULL;
}

/* ---- pricing snapshots (per thread) ---- */

typedef struct gw_price_table {
    struct gw_price_table *older; /* retired snapshots, freed at thread end */
    uint32_t n;
    cg_model_cfg models[CG_MODELS_MAX];
} gw_price_table;

static _Thread_local gw_price_table *gw_price_current;

const cg_model_cfg *gw_pricing_model(const cg_config *cfg, const char *name)
{
    const gw_price_table *t = gw_price_current;
    if (t == NULL) {
        return cg_config_model(cfg, name);
    }
    for (uint32_t i = 0; i < t->n; i++) {
        if (strcmp(t->models[i].name, name) == 0) {
            return &t->models[i];
        }
    }
    return NULL;
}

void gw_pricing_apply(cg_model_cfg *m, int64_t input_nusd_per_mtok, int64_t output_nusd_per_mtok)
{
    m->prompt_nusd_per_mtok = input_nusd_per_mtok;
    m->completion_nusd_per_mtok = output_nusd_per_mtok;
    if (m->cached_prompt_nusd_per_mtok > input_nusd_per_mtok) {
        m->cached_prompt_nusd_per_mtok = input_nusd_per_mtok;
    }
}

cg_err gw_pricing_install(const cg_config *cfg, const proto_pricing *items, uint32_t n)
{
    gw_price_table *t = malloc(sizeof(*t));
    if (t == NULL) {
        return CG_ERR_NOMEM;
    }
    t->n = cfg->model_n;
    memcpy(t->models, cfg->models, sizeof(t->models[0]) * cfg->model_n);
    for (uint32_t i = 0; i < n; i++) {
        for (uint32_t j = 0; j < t->n; j++) {
            if (strcmp(t->models[j].name, items[i].model) == 0) {
                gw_pricing_apply(&t->models[j], items[i].input_nusd_per_mtok,
                                 items[i].output_nusd_per_mtok);
            }
        }
    }
    if (gw_price_current != NULL && gw_price_current->n == t->n &&
        memcmp(gw_price_current->models, t->models, sizeof(t->models[0]) * t->n) == 0) {
        free(t); /* nothing changed (a reload after a reconnect): keep the snapshot */
        return CG_ERR_OK;
    }
    t->older = gw_price_current;
    gw_price_current = t;
    return CG_ERR_OK;
}

void gw_pricing_thread_fini(void)
{
    while (gw_price_current != NULL) {
        gw_price_table *t = gw_price_current;
        gw_price_current = t->older;
        free(t);
    }
}
