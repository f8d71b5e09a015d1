/*
 * gw_body.c — endpoint table, body checks and upstream body rewrite (see
 * gw_body.h).
 */
#include "gw_body.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Top-level members compared pairwise below this count; sorted above it. */
#define GW_BODY_DUP_LINEAR_MAX 64
/* Room for one spliced member: "\"max_output_tokens\":9007199254740992," and the usage option. */
#define GW_BODY_SPLICE_MAX 128

typedef struct gw_route {
    const char *path;
    const char *method;
    int ep;
    const char *upstream; /* appended to the provider's base_url */
} gw_route;

static const gw_route gw_routes[] = {
    {"/v1/chat/completions", "POST", GW_EP_CHAT, "/chat/completions"},
    {"/v1/completions", "POST", GW_EP_COMPLETIONS, "/completions"},
    {"/v1/embeddings", "POST", GW_EP_EMBEDDINGS, "/embeddings"},
    {"/v1/responses", "POST", GW_EP_RESPONSES, "/responses"},
    {"/v1/models", "GET", GW_EP_MODELS, NULL},
};

int gw_endpoint_of(const char *method, const char *path, int *known)
{
    *known = 0;
    for (size_t i = 0; i < sizeof(gw_routes) / sizeof(gw_routes[0]); i++) {
        if (strcmp(path, gw_routes[i].path) != 0) {
            continue;
        }
        if (strcmp(method, gw_routes[i].method) == 0) {
            return gw_routes[i].ep;
        }
        *known = 1;
    }
    return -1;
}

const char *gw_endpoint_upstream_path(int ep)
{
    for (size_t i = 0; i < sizeof(gw_routes) / sizeof(gw_routes[0]); i++) {
        if (gw_routes[i].ep == ep) {
            return gw_routes[i].upstream;
        }
    }
    return NULL;
}

static int gw_name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first member name that appears twice in object j, or NULL. *nomem on allocation failure. */
static const char *gw_body_duplicate(const cJSON *j, int *nomem)
{
    int n = cJSON_GetArraySize(j);
    const cJSON *a, *b;
    *nomem = 0;
    if (n <= GW_BODY_DUP_LINEAR_MAX) {
        for (a = j->child; a != NULL; a = a->next) {
            for (b = a->next; b != NULL; b = b->next) {
                if (strcmp(a->string, b->string) == 0) {
                    return a->string;
                }
            }
        }
        return NULL;
    }
    const char **names = malloc(sizeof(*names) * (size_t)n);
    if (names == NULL) {
        *nomem = 1;
        return NULL;
    }
    size_t k = 0;
    for (a = j->child; a != NULL; a = a->next) {
        names[k++] = a->string;
    }
    qsort(names, k, sizeof(*names), gw_name_cmp);
    const char *dup = NULL;
    for (size_t i = 1; i < k && dup == NULL; i++) {
        if (strcmp(names[i - 1], names[i]) == 0) {
            dup = names[i];
        }
    }
    free(names);
    return dup;
}

/* The endpoint's required input member and its check; NULL message when fine. */
static const char *gw_body_input_error(int ep, const cJSON *j)
{
    switch (ep) {
    case GW_EP_CHAT:
        return cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "messages"))
                   ? NULL
                   : "messages: required, must be an array";
    case GW_EP_COMPLETIONS:
        return cJSON_GetObjectItemCaseSensitive(j, "prompt") != NULL ? NULL : "prompt: required";
    case GW_EP_EMBEDDINGS:
    case GW_EP_RESPONSES:
        return cJSON_GetObjectItemCaseSensitive(j, "input") != NULL ? NULL : "input: required";
    default:
        return "this endpoint takes no request body";
    }
}

/* Responses members naming content stored upstream, whose size the gateway cannot know. */
static const char *gw_body_unbounded(int ep, const cJSON *j)
{
    static const char *const names[] = {"previous_response_id", "conversation", "prompt"};
    if (ep != GW_EP_RESPONSES) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, names[i]);
        if (v != NULL && !cJSON_IsNull(v)) {
            return names[i];
        }
    }
    return NULL;
}

cg_err gw_body_check(int ep, const cJSON *j, int strict, char *msg, size_t msgcap)
{
    int nomem = 0;
    if (!cJSON_IsObject(j)) {
        snprintf(msg, msgcap, "Request body must be a JSON object.");
        return CG_ERR_INVAL;
    }
    const char *dup = gw_body_duplicate(j, &nomem);
    if (dup != NULL || nomem) {
        snprintf(msg, msgcap, "%.64s: %s", dup ? dup : "body",
                 nomem ? "too many members" : "member given more than once");
        return CG_ERR_INVAL;
    }
    if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "model"))) {
        snprintf(msg, msgcap, "model: required, must be a string");
        return CG_ERR_INVAL;
    }
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "stream");
    if (s != NULL && !cJSON_IsBool(s) && !cJSON_IsNull(s)) {
        snprintf(msg, msgcap, "stream: must be a boolean");
        return CG_ERR_INVAL;
    }
    if (ep == GW_EP_EMBEDDINGS && cJSON_IsTrue(s)) {
        snprintf(msg, msgcap, "stream: embeddings cannot be streamed");
        return CG_ERR_INVAL;
    }
    const char *bad = gw_body_input_error(ep, j);
    if (bad != NULL) {
        snprintf(msg, msgcap, "%s", bad);
        return CG_ERR_INVAL;
    }
    const char *unb = strict ? gw_body_unbounded(ep, j) : NULL;
    if (unb != NULL) {
        snprintf(msg, msgcap,
                 "%s: not supported by this gateway (reservation: strict needs the whole "
                 "prompt in the request)",
                 unb);
        return CG_ERR_INVAL;
    }
    return CG_ERR_OK;
}

/* ---- rewrite ---- */

/* Can the edit be done by splicing absent members? 1 = yes. */
static int gw_body_splicable(int ep, const cJSON *j, const gw_body_edit *e)
{
    if (e->include_usage && cJSON_GetObjectItemCaseSensitive(j, "stream_options") != NULL) {
        return 0;
    }
    if (e->set_max >= 0) {
        const char *const *f = NULL;
        size_t nf = gw_endpoint_max_fields(ep, &f);
        for (size_t i = 0; i < nf; i++) {
            if (cJSON_GetObjectItemCaseSensitive(j, f[i]) != NULL) {
                return 0;
            }
        }
    }
    return 1;
}

static cg_err gw_body_splice(int ep, const char *body, size_t len, const gw_body_edit *e,
                             char **out, size_t *out_len)
{
    char ins[GW_BODY_SPLICE_MAX * 2];
    size_t n = 0;
    const char *fill = gw_endpoint_fill_field(ep);
    if (e->set_max >= 0 && fill != NULL) {
        n +=
            (size_t)snprintf(ins + n, sizeof(ins) - n, "\"%s\":%lld,", fill, (long long)e->set_max);
    }
    if (e->include_usage) {
        n += (size_t)snprintf(ins + n, sizeof(ins) - n,
                              "\"stream_options\":{\"include_usage\":true},");
    }
    /* The body is a JSON object with at least "model", so a member follows the brace. */
    const char *brace = memchr(body, '{', len);
    if (brace == NULL) {
        return CG_ERR_INVAL;
    }
    size_t head = (size_t)(brace - body) + 1;
    char *b = malloc(len + n + 1);
    if (b == NULL) {
        return CG_ERR_NOMEM;
    }
    memcpy(b, body, head);
    memcpy(b + head, ins, n);
    memcpy(b + head + n, body + head, len - head);
    b[len + n] = '\0';
    *out = b;
    *out_len = len + n;
    return CG_ERR_OK;
}

/* Set the completion bound members on tree t. */
static int gw_tree_set_max(int ep, cJSON *t, int64_t v)
{
    const char *const *f = NULL;
    size_t nf = gw_endpoint_max_fields(ep, &f);
    int set = 0;
    for (size_t i = 0; i < nf; i++) {
        const cJSON *cur = cJSON_GetObjectItemCaseSensitive(t, f[i]);
        if (cur != NULL && !cJSON_IsNull(cur)) {
            set = 1;
            if (!cJSON_ReplaceItemInObjectCaseSensitive(t, f[i], cJSON_CreateNumber((double)v))) {
                return 0;
            }
        }
    }
    const char *fill = gw_endpoint_fill_field(ep);
    if (set || fill == NULL) {
        return 1;
    }
    cJSON *num = cJSON_CreateNumber((double)v);
    if (num == NULL) {
        return 0;
    }
    if (cJSON_GetObjectItemCaseSensitive(t, fill) != NULL) {
        return cJSON_ReplaceItemInObjectCaseSensitive(t, fill, num);
    }
    return cJSON_AddItemToObject(t, fill, num);
}

/* stream_options.include_usage = true, other options kept. */
static int gw_tree_include_usage(cJSON *t)
{
    cJSON *so = cJSON_GetObjectItemCaseSensitive(t, "stream_options");
    if (cJSON_IsObject(so)) {
        cJSON *cur = cJSON_GetObjectItemCaseSensitive(so, "include_usage");
        if (cur != NULL) {
            return cJSON_ReplaceItemInObjectCaseSensitive(so, "include_usage", cJSON_CreateTrue());
        }
        return cJSON_AddTrueToObject(so, "include_usage") != NULL;
    }
    cJSON *opts = cJSON_CreateObject();
    if (opts == NULL || cJSON_AddTrueToObject(opts, "include_usage") == NULL) {
        cJSON_Delete(opts);
        return 0;
    }
    if (so != NULL) {
        return cJSON_ReplaceItemInObjectCaseSensitive(t, "stream_options", opts);
    }
    return cJSON_AddItemToObject(t, "stream_options", opts);
}

static cg_err gw_body_copy(const char *body, size_t len, char **out, size_t *out_len)
{
    char *b = malloc(len + 1);
    if (b == NULL) {
        return CG_ERR_NOMEM;
    }
    memcpy(b, body, len);
    b[len] = '\0';
    *out = b;
    *out_len = len;
    return CG_ERR_OK;
}

/* Apply the edit on tree t (consumed) and print it into malloc'd memory. */
static cg_err gw_body_print(int ep, cJSON *t, const gw_body_edit *edit, char **out, size_t *out_len)
{
    int ok = (edit->set_max < 0 || gw_tree_set_max(ep, t, edit->set_max)) &&
             (!edit->include_usage || gw_tree_include_usage(t));
    char *s = ok ? cJSON_PrintUnformatted(t) : NULL;
    cJSON_Delete(t);
    if (s == NULL) {
        return CG_ERR_NOMEM;
    }
    /* Hand out malloc'd memory whatever cJSON's allocator is. */
    cg_err err = gw_body_copy(s, strlen(s), out, out_len);
    cJSON_free(s);
    return err;
}

cg_err gw_body_rewrite(int ep, const char *body, size_t len, const cJSON *j,
                       const gw_body_edit *edit, char **out, size_t *out_len)
{
    if (edit->set_max < 0 && !edit->include_usage) {
        return gw_body_copy(body, len, out, out_len);
    }
    cJSON *parsed = NULL;
    if (j == NULL && (j = parsed = cJSON_ParseWithLength(body, len)) == NULL) {
        return CG_ERR_INVAL;
    }
    if (gw_body_splicable(ep, j, edit)) {
        cJSON_Delete(parsed);
        return gw_body_splice(ep, body, len, edit, out, out_len);
    }
    cJSON *t = parsed != NULL ? parsed : cJSON_Duplicate(j, 1);
    if (t == NULL) {
        return CG_ERR_NOMEM;
    }
    return gw_body_print(ep, t, edit, out, out_len);
}
