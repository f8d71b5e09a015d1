/*
 * gw_json.c — JSON helpers on cJSON for the gateway (contract in gw_json.h).
 *
 * Invariants: input trees are never modified; every validation failure names
 * the field and writes nothing to the output; money never passes through
 * arithmetic on doubles (numbers go through cg_money_from_double once).
 */
#include "gw_json.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cg_money.h"
#include "cg_period.h"

#define GW_JSON_MONEY_BUF 32 /* cg_money_format: 32 bytes always suffice */
#define GW_JSON_TIME_BUF 40
#define GW_JSON_WINDOW_BUF 32
#define GW_JSON_BP_PER_UNIT 10000 /* basis points in 1.0 */

static cg_err gw_json_fail(char *err, size_t errcap, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Write "<path>: <message>" into err; always returns CG_ERR_INVAL. */
static cg_err gw_json_fail(char *err, size_t errcap, const char *path, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (err == NULL || errcap == 0) {
        return CG_ERR_INVAL;
    }
    va_start(ap, fmt);
    n = snprintf(err, errcap, "%s: ", path);
    if (n >= 0 && (size_t)n < errcap) { /* else the path alone filled the buffer */
        vsnprintf(err + n, errcap - (size_t)n, fmt, ap);
    }
    va_end(ap);
    return CG_ERR_INVAL;
}

cJSON *gw_json_parse(const char *body, size_t len)
{
    const char *end = NULL;
    cJSON *root;

    if (body == NULL || len == 0) {
        return NULL;
    }
    root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (root == NULL) {
        return NULL;
    }
    /* Only whitespace may follow the value. */
    while (end != NULL && end < body + len &&
           (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')) {
        end++;
    }
    if (end != body + len) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* Append s to buf (cap bytes, NUL-terminated), truncating: a cut path still names the field. */
static void gw_json_cat(char *buf, size_t cap, size_t *pos, const char *s)
{
    size_t n = strlen(s);

    if (*pos + 1 >= cap) {
        return;
    }
    if (n > cap - 1 - *pos) {
        n = cap - 1 - *pos;
    }
    memcpy(buf + *pos, s, n);
    *pos += n;
    buf[*pos] = '\0';
}

void gw_json_path(char *buf, size_t cap, const char *path, const char *field)
{
    size_t pos = 0;

    assert(cap > 0);
    buf[0] = '\0';
    if (path != NULL && path[0] != '\0') {
        gw_json_cat(buf, cap, &pos, path);
        gw_json_cat(buf, cap, &pos, ".");
    }
    gw_json_cat(buf, cap, &pos, field);
}

void gw_json_path_index(char *buf, size_t cap, const char *path, uint32_t i)
{
    char num[16]; /* "[" + 10 digits + "]" */
    size_t pos = 0;

    assert(cap > 0);
    snprintf(num, sizeof(num), "[%u]", (unsigned)i);
    buf[0] = '\0';
    gw_json_cat(buf, cap, &pos, path);
    gw_json_cat(buf, cap, &pos, num);
}

cg_err gw_json_check_fields(const cJSON *obj, const char *path, const char *const *allowed,
                            char *err, size_t errcap)
{
    char fpath[GW_JSON_PATH_MAX];
    uint32_t seen = 0;
    const cJSON *f;

    assert(cJSON_IsObject(obj));
    cJSON_ArrayForEach(f, obj)
    {
        size_t i;
        for (i = 0; allowed[i] != NULL; i++) {
            assert(i < GW_JSON_FIELDS_MAX);
            if (strcmp(allowed[i], f->string) == 0) {
                break;
            }
        }
        gw_json_path(fpath, sizeof(fpath), path, f->string);
        if (allowed[i] == NULL) {
            return gw_json_fail(err, errcap, fpath, "unknown field");
        }
        if (seen & (1u << i)) {
            return gw_json_fail(err, errcap, fpath, "duplicate field");
        }
        seen |= 1u << i;
    }
    return CG_ERR_OK;
}

cg_err gw_json_get_money(const cJSON *v, int64_t *out_nusd)
{
    int64_t nusd;
    cg_err e;

    if (cJSON_IsNumber(v)) {
        if (!isfinite(v->valuedouble) || v->valuedouble < 0) {
            return CG_ERR_INVAL;
        }
        e = cg_money_from_double(v->valuedouble, &nusd);
    } else if (cJSON_IsString(v)) {
        e = cg_money_parse(v->valuestring, strlen(v->valuestring), 0, &nusd);
    } else {
        return CG_ERR_INVAL;
    }
    if (e == CG_ERR_OVERFLOW || e == CG_ERR_RANGE) {
        return CG_ERR_OVERFLOW;
    }
    if (e != CG_ERR_OK || nusd < 0) {
        return CG_ERR_INVAL;
    }
    *out_nusd = nusd;
    return CG_ERR_OK;
}

cg_err gw_json_get_int(const cJSON *v, int64_t max, int64_t *out)
{
    double d;

    assert(max >= 0 && max <= GW_JSON_INT_MAX);
    if (!cJSON_IsNumber(v)) {
        return CG_ERR_INVAL;
    }
    d = v->valuedouble;
    if (!isfinite(d) || d < 0 || d > (double)max || d != floor(d)) {
        return CG_ERR_INVAL;
    }
    *out = (int64_t)d;
    return CG_ERR_OK;
}

cg_err gw_json_get_string(const cJSON *v, size_t maxlen, char *out, size_t cap)
{
    size_t n;

    assert(cap > maxlen);
    if (!cJSON_IsString(v)) {
        return CG_ERR_INVAL;
    }
    n = strlen(v->valuestring);
    if (n > maxlen) {
        return CG_ERR_INVAL;
    }
    memcpy(out, v->valuestring, n + 1);
    return CG_ERR_OK;
}

/* The "max" of a limit whose metric is already known. */
static cg_err gw_json_limit_max(const cJSON *v, int metric, const char *path, int64_t *out,
                                char *err, size_t errcap)
{
    cg_err e;

    if (v == NULL || cJSON_IsNull(v)) {
        *out = 0;
        return CG_ERR_OK;
    }
    if (metric == PROTO_METRIC_COST) {
        e = gw_json_get_money(v, out);
        if (e == CG_ERR_OVERFLOW) {
            return gw_json_fail(err, errcap, path, "amount too large");
        }
        if (e != CG_ERR_OK) {
            return gw_json_fail(err, errcap, path,
                                "must be a non-negative USD amount (number or decimal string)");
        }
        return CG_ERR_OK;
    }
    if (gw_json_get_int(v, GW_JSON_INT_MAX, out) != CG_ERR_OK) {
        return gw_json_fail(err, errcap, path, "must be a non-negative integer up to 2^53");
    }
    return CG_ERR_OK;
}

/* warn_at: fractions in (0, 1] → ascending basis points. */
static cg_err gw_json_warn_at(const cJSON *v, const char *path, proto_limit *l, char *err,
                              size_t errcap)
{
    char ipath[GW_JSON_PATH_MAX];
    const cJSON *item;
    uint32_t i = 0;

    l->warn_n = 0;
    if (v == NULL || cJSON_IsNull(v)) {
        return CG_ERR_OK;
    }
    if (!cJSON_IsArray(v)) {
        return gw_json_fail(err, errcap, path, "must be an array of fractions in (0, 1]");
    }
    if (cJSON_GetArraySize(v) > PROTO_WARN_MAX) {
        return gw_json_fail(err, errcap, path, "at most %d thresholds", PROTO_WARN_MAX);
    }
    cJSON_ArrayForEach(item, v)
    {
        gw_json_path_index(ipath, sizeof(ipath), path, i);
        if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble) || item->valuedouble <= 0 ||
            item->valuedouble > 1) {
            return gw_json_fail(err, errcap, ipath, "must be a number in (0, 1]");
        }
        long bp = lround(item->valuedouble * GW_JSON_BP_PER_UNIT);
        if (bp < 1) {
            return gw_json_fail(err, errcap, ipath, "must be at least 0.0001");
        }
        if (i > 0 && (uint16_t)bp <= l->warn_bp[i - 1]) {
            return gw_json_fail(err, errcap, ipath, "thresholds must be strictly ascending");
        }
        l->warn_bp[i++] = (uint16_t)bp;
    }
    l->warn_n = (uint8_t)i;
    return CG_ERR_OK;
}

static cg_err gw_json_limit_enums(const cJSON *v, const char *path, unsigned flags, proto_limit *l,
                                  char *err, size_t errcap)
{
    static const char *const windows = "lifetime, day, week, month";
    char fpath[GW_JSON_PATH_MAX];
    const cJSON *f;
    int m;

    gw_json_path(fpath, sizeof(fpath), path, "metric");
    f = cJSON_GetObjectItemCaseSensitive(v, "metric");
    if (!cJSON_IsString(f) || (m = proto_metric_parse(f->valuestring)) < 0) {
        return gw_json_fail(err, errcap, fpath, "must be one of cost, tokens, requests");
    }
    l->metric = (uint8_t)m;

    gw_json_path(fpath, sizeof(fpath), path, "window");
    f = cJSON_GetObjectItemCaseSensitive(v, "window");
    if (!cJSON_IsString(f) || cg_window_parse(f->valuestring, &l->window) != CG_ERR_OK) {
        return gw_json_fail(err, errcap, fpath, "must be one of %s%s", windows,
                            (flags & GW_JSON_LIMIT_ALLOW_SLIDING) ? ", <N>s|m|h|d" : "");
    }
    if (l->window.kind == CG_WIN_SLIDING && !(flags & GW_JSON_LIMIT_ALLOW_SLIDING)) {
        return gw_json_fail(err, errcap, fpath, "sliding windows are not supported yet (use %s)",
                            windows);
    }

    gw_json_path(fpath, sizeof(fpath), path, "action");
    f = cJSON_GetObjectItemCaseSensitive(v, "action");
    l->action = PROTO_ACTION_BLOCK;
    if (f != NULL && !cJSON_IsNull(f)) {
        int a = cJSON_IsString(f) ? proto_action_parse(f->valuestring) : -1;
        if (a < 0) {
            return gw_json_fail(err, errcap, fpath, "must be one of block, warn");
        }
        l->action = (uint8_t)a;
    }
    return CG_ERR_OK;
}

cg_err gw_json_limit_parse(const cJSON *v, const char *path, unsigned flags, proto_limit *out,
                           char *err, size_t errcap)
{
    static const char *const fields[] = {"metric", "window", "max", "action", "warn_at", NULL};
    char fpath[GW_JSON_PATH_MAX];
    proto_limit l;
    cg_err e;

    if (!cJSON_IsObject(v)) {
        return gw_json_fail(err, errcap, path, "must be an object");
    }
    if ((e = gw_json_check_fields(v, path, fields, err, errcap)) != CG_ERR_OK) {
        return e;
    }
    memset(&l, 0, sizeof(l));
    if ((e = gw_json_limit_enums(v, path, flags, &l, err, errcap)) != CG_ERR_OK) {
        return e;
    }
    gw_json_path(fpath, sizeof(fpath), path, "max");
    e = gw_json_limit_max(cJSON_GetObjectItemCaseSensitive(v, "max"), l.metric, fpath, &l.max, err,
                          errcap);
    if (e != CG_ERR_OK) {
        return e;
    }
    gw_json_path(fpath, sizeof(fpath), path, "warn_at");
    e = gw_json_warn_at(cJSON_GetObjectItemCaseSensitive(v, "warn_at"), fpath, &l, err, errcap);
    if (e != CG_ERR_OK) {
        return e;
    }
    if (l.window.kind == CG_WIN_SLIDING && l.warn_n > 0) {
        return gw_json_fail(err, errcap, fpath, "not allowed on sliding windows");
    }
    *out = l;
    return CG_ERR_OK;
}

static int gw_json_same_kind(const proto_limit *a, const proto_limit *b)
{
    return a->metric == b->metric && a->window.kind == b->window.kind &&
           (a->window.kind != CG_WIN_SLIDING || a->window.sliding_s == b->window.sliding_s);
}

cg_err gw_json_limits_parse(const cJSON *arr, const char *path, unsigned flags, proto_limit *out,
                            uint8_t *out_n, char *err, size_t errcap)
{
    proto_limit tmp[PROTO_LIMITS_MAX];
    char ipath[GW_JSON_PATH_MAX];
    const cJSON *item;
    uint32_t n = 0;
    cg_err e;

    if (arr == NULL || cJSON_IsNull(arr)) {
        *out_n = 0;
        return CG_ERR_OK;
    }
    if (!cJSON_IsArray(arr)) {
        return gw_json_fail(err, errcap, path, "must be an array of limits");
    }
    if (cJSON_GetArraySize(arr) > PROTO_LIMITS_MAX) {
        return gw_json_fail(err, errcap, path, "at most %d limits", PROTO_LIMITS_MAX);
    }
    cJSON_ArrayForEach(item, arr)
    {
        gw_json_path_index(ipath, sizeof(ipath), path, n);
        if ((e = gw_json_limit_parse(item, ipath, flags, &tmp[n], err, errcap)) != CG_ERR_OK) {
            return e;
        }
        for (uint32_t j = 0; j < n; j++) {
            if (gw_json_same_kind(&tmp[j], &tmp[n])) {
                return gw_json_fail(err, errcap, ipath,
                                    "same metric and window as %s[%u]; one limit per pair", path,
                                    (unsigned)j);
            }
        }
        tmp[n].id = (flags & GW_JSON_LIMIT_NATURAL_IDS)
                        ? proto_limit_natural_id(tmp[n].metric, tmp[n].window)
                        : n + 1;
        n++;
    }
    memcpy(out, tmp, n * sizeof(tmp[0]));
    *out_n = (uint8_t)n;
    return CG_ERR_OK;
}

static int gw_json_id_used(const proto_limit *l, uint8_t n, uint32_t id)
{
    for (uint8_t i = 0; i < n; i++) {
        if (l[i].id == id) {
            return 1;
        }
    }
    return 0;
}

void gw_json_limits_keep_ids(const proto_limit *old, uint8_t old_n, proto_limit *nl, uint8_t n)
{
    uint32_t top = 0;

    assert(n <= PROTO_LIMITS_MAX && old_n <= PROTO_LIMITS_MAX);
    for (uint8_t i = 0; i < old_n; i++) {
        top = old[i].id > top ? old[i].id : top;
    }
    /* Pass 1: kept ids. Pass 2: the rest, so a fresh id never shadows a kept one. */
    for (uint8_t i = 0; i < n; i++) {
        nl[i].id = 0;
        for (uint8_t j = 0; j < old_n; j++) {
            if (gw_json_same_kind(&old[j], &nl[i])) {
                nl[i].id = old[j].id;
            }
        }
    }
    for (uint8_t i = 0; i < n; i++) {
        if (nl[i].id != 0) {
            continue;
        }
        uint32_t id = proto_limit_natural_id(nl[i].metric, nl[i].window);
        if (id == 0 || gw_json_id_used(nl, n, id) || gw_json_id_used(old, old_n, id)) {
            for (uint8_t j = 0; j < n; j++) {
                top = nl[j].id > top ? nl[j].id : top;
            }
            assert(top < UINT32_MAX);
            id = top + 1;
        }
        nl[i].id = id;
    }
}

uint32_t gw_json_limits_merge(const proto_limit *defaults, uint8_t dn, const proto_limit *over,
                              uint8_t on, proto_limit *out, uint8_t *from_override)
{
    uint32_t n = 0;

    for (uint8_t i = 0; i < dn + on; i++) {
        const proto_limit *l = i < dn ? &defaults[i] : &over[i - dn];
        int is_over = i >= dn;
        if (is_over) {
            /* An override that replaced a default is already in place. */
            int matched = 0;
            for (uint8_t j = 0; j < dn; j++) {
                matched |= gw_json_same_kind(&defaults[j], l);
            }
            if (matched) {
                continue;
            }
        } else {
            for (uint8_t j = 0; j < on; j++) {
                if (gw_json_same_kind(&over[j], l)) {
                    l = &over[j];
                    is_over = 1;
                }
            }
        }
        if (n < PROTO_LIMITS_MAX && out != NULL) {
            out[n] = *l;
        }
        if (n < PROTO_LIMITS_MAX && from_override != NULL) {
            from_override[n] = (uint8_t)is_over;
        }
        n++;
    }
    return n;
}

cJSON *gw_json_money(int64_t nusd)
{
    char buf[GW_JSON_MONEY_BUF];

    if (cg_money_format(nusd, 2, buf, sizeof(buf)) == 0) {
        return NULL;
    }
    return cJSON_CreateString(buf);
}

cJSON *gw_json_amount(int metric, int64_t value)
{
    if (metric == PROTO_METRIC_COST) {
        return gw_json_money(value);
    }
    return cJSON_CreateNumber((double)value);
}

cJSON *gw_json_time(int64_t t_ms)
{
    char buf[GW_JSON_TIME_BUF];

    if (t_ms == 0 || t_ms == INT64_MAX) {
        return cJSON_CreateNull();
    }
    if (cg_time_format(t_ms, buf, sizeof(buf)) == 0) {
        return NULL;
    }
    return cJSON_CreateString(buf);
}

/* Add item to obj under name; deletes item-less failures. Returns 0 on out-of-memory. */
static int gw_json_add(cJSON *obj, const char *name, cJSON *item)
{
    if (item == NULL) {
        return 0;
    }
    if (!cJSON_AddItemToObject(obj, name, item)) {
        cJSON_Delete(item);
        return 0;
    }
    return 1;
}

static cJSON *gw_json_window(cg_window w)
{
    char buf[GW_JSON_WINDOW_BUF];

    if (cg_window_format(w, buf, sizeof(buf)) == 0) {
        return NULL;
    }
    return cJSON_CreateString(buf);
}

static cJSON *gw_json_warn_array(const proto_limit *l)
{
    cJSON *arr = cJSON_CreateArray();

    for (uint32_t i = 0; arr != NULL && i < l->warn_n; i++) {
        cJSON *n = cJSON_CreateNumber((double)l->warn_bp[i] / GW_JSON_BP_PER_UNIT);
        if (n == NULL || !cJSON_AddItemToArray(arr, n)) {
            cJSON_Delete(n);
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

cJSON *gw_json_limit(const proto_limit *l, const proto_limit_state *st)
{
    const char *metric = proto_metric_name(l->metric);
    const char *action = proto_action_name(l->action);
    cJSON *o = cJSON_CreateObject();
    int ok;

    if (o == NULL) {
        return NULL;
    }
    ok = gw_json_add(o, "id", cJSON_CreateNumber(l->id)) &&
         gw_json_add(o, "metric", metric ? cJSON_CreateString(metric) : cJSON_CreateNull()) &&
         gw_json_add(o, "window", gw_json_window(l->window)) &&
         gw_json_add(o, "max", gw_json_amount(l->metric, l->max)) &&
         gw_json_add(o, "action", action ? cJSON_CreateString(action) : cJSON_CreateNull()) &&
         gw_json_add(o, "warn_at", gw_json_warn_array(l));
    if (ok && st != NULL) {
        ok = gw_json_add(o, "used", gw_json_amount(l->metric, st->used)) &&
             gw_json_add(o, "reserved", gw_json_amount(l->metric, st->reserved)) &&
             gw_json_add(o, "resets_at", gw_json_time(st->period_end_ms));
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

cJSON *gw_json_refusal(int scope, const char *scope_id, const proto_refusal *r)
{
    const char *sname = proto_scope_name(scope);
    const char *metric = proto_metric_name(r->metric);
    cJSON *o = cJSON_CreateObject();
    int ok;

    if (o == NULL) {
        return NULL;
    }
    ok = gw_json_add(o, "scope", sname ? cJSON_CreateString(sname) : cJSON_CreateNull()) &&
         gw_json_add(o, "scope_id", cJSON_CreateString(scope_id)) &&
         gw_json_add(o, "metric", metric ? cJSON_CreateString(metric) : cJSON_CreateNull()) &&
         gw_json_add(o, "window", gw_json_window(r->window)) &&
         gw_json_add(o, "max", gw_json_amount(r->metric, r->max)) &&
         gw_json_add(o, "used", gw_json_amount(r->metric, r->used)) &&
         gw_json_add(o, "resets_at", gw_json_time(r->resets_at_ms));
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

char *gw_json_print(const cJSON *root, size_t *len)
{
    char *s = cJSON_PrintUnformatted(root);

    if (s != NULL && len != NULL) {
        *len = strlen(s);
    }
    return s;
}

char *gw_json_error_body(const char *type, const char *code, const char *message, const char *param,
                         cJSON *limit, size_t *len)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *e = cJSON_CreateObject();
    char *s = NULL;
    int ok;

    if (root == NULL || e == NULL || !cJSON_AddItemToObject(root, "error", e)) {
        cJSON_Delete(e);
        cJSON_Delete(limit);
        cJSON_Delete(root);
        return NULL;
    }
    ok = gw_json_add(e, "message", cJSON_CreateString(message)) &&
         gw_json_add(e, "type", cJSON_CreateString(type)) &&
         gw_json_add(e, "code", code ? cJSON_CreateString(code) : cJSON_CreateNull()) &&
         gw_json_add(e, "param", param ? cJSON_CreateString(param) : cJSON_CreateNull());
    if (ok && limit != NULL) {
        ok = gw_json_add(e, "limit", limit);
        limit = NULL;
    }
    cJSON_Delete(limit);
    if (ok) {
        s = gw_json_print(root, len);
    }
    cJSON_Delete(root);
    return s;
}

/* ---- allocation-free walker (gw_json.h) ---- */

void gw_jw_ws(gw_jw *w)
{
    while (w->p < w->end && (*w->p == ' ' || *w->p == '\t' || *w->p == '\n' || *w->p == '\r')) {
        w->p++;
    }
}

/* A string at w->p ('"'); adds its decoded UTF-8 length to *bytes (if not NULL).
 * key/key_len (if not NULL) get its raw bytes, refused (-1) if it holds an escape. */
int gw_jw_string(gw_jw *w, uint64_t *bytes, const char **key, size_t *key_len)
{
    const char *p = w->p + 1, *end = w->end;
    uint64_t n = 0;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            if (key != NULL) {
                *key = w->p + 1;
                *key_len = (size_t)(p - w->p - 1);
            }
            w->p = p + 1;
            if (bytes != NULL) {
                *bytes += n;
            }
            return 0;
        }
        if (c == 0) {
            return -1;
        }
        if (c != '\\') {
            n++;
            p++;
            continue;
        }
        if (key != NULL || end - p < 2) {
            return -1;
        }
        switch (p[1]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            n++;
            p += 2;
            break;
        case 'u': {
            if (end - p < 6) {
                return -1;
            }
            unsigned cp = 0;
            for (int i = 2; i < 6; i++) {
                unsigned char h = (unsigned char)p[i];
                unsigned v = h >= '0' && h <= '9'   ? h - (unsigned)'0'
                             : h >= 'a' && h <= 'f' ? h - (unsigned)'a' + 10u
                             : h >= 'A' && h <= 'F' ? h - (unsigned)'A' + 10u
                                                    : 16u;
                if (v > 15) {
                    return -1;
                }
                cp = cp * 16 + v;
            }
            if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF)) {
                return -1; /* NUL and surrogates: cJSON decides */
            }
            n += cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;
            p += 6;
            break;
        }
        default:
            return -1;
        }
    }
    return -1;
}

static int gw_jw_digits(gw_jw *w)
{
    const char *q = w->p;
    while (w->p < w->end && *w->p >= '0' && *w->p <= '9') {
        w->p++;
    }
    return w->p > q ? 0 : -1;
}

/* A strict JSON number. */
static int gw_jw_number(gw_jw *w)
{
    if (*w->p == '-') {
        w->p++;
    }
    if (w->p < w->end && *w->p == '0') {
        w->p++;
    } else if (gw_jw_digits(w) != 0) {
        return -1;
    }
    if (w->p < w->end && *w->p == '.') {
        w->p++;
        if (gw_jw_digits(w) != 0) {
            return -1;
        }
    }
    if (w->p < w->end && (*w->p == 'e' || *w->p == 'E')) {
        w->p++;
        if (w->p < w->end && (*w->p == '+' || *w->p == '-')) {
            w->p++;
        }
        if (gw_jw_digits(w) != 0) {
            return -1;
        }
    }
    return 0;
}

static int gw_jw_lit(gw_jw *w, const char *lit, size_t n)
{
    if ((size_t)(w->end - w->p) < n || memcmp(w->p, lit, n) != 0) {
        return -1;
    }
    w->p += n;
    return 0;
}

/* Member separator of an object / array: 1 = another member follows, 0 = closed, -1 bad. */
int gw_jw_next(gw_jw *w, char close)
{
    gw_jw_ws(w);
    if (w->p < w->end && *w->p == ',') {
        w->p++;
        gw_jw_ws(w);
        return 1;
    }
    if (w->p < w->end && *w->p == close) {
        w->p++;
        return 0;
    }
    return -1;
}

int gw_jw_object_open(gw_jw *w)
{
    gw_jw_ws(w);
    if (w->p >= w->end || *w->p != '{') {
        return -1;
    }
    w->p++;
    gw_jw_ws(w);
    if (w->p < w->end && *w->p == '}') {
        w->p++;
        return 0;
    }
    return 1;
}

/* "key" : at w->p (after whitespace); leaves w->p at the value. */
int gw_jw_key(gw_jw *w, const char **key, size_t *key_len)
{
    if (w->p >= w->end || *w->p != '"' || gw_jw_string(w, NULL, key, key_len) != 0) {
        return -1;
    }
    gw_jw_ws(w);
    if (w->p >= w->end || *w->p != ':') {
        return -1;
    }
    w->p++;
    gw_jw_ws(w);
    return 0;
}

/* One value at w->p (after whitespace); adds the bytes of every string in it to
 * *bytes (if not NULL; object keys are not counted). */
int gw_jw_value(gw_jw *w, int depth, uint64_t *bytes)
{
    if (w->p >= w->end || depth > GW_JSON_WALK_DEPTH) {
        return -1;
    }
    switch (*w->p) {
    case '"':
        return gw_jw_string(w, bytes, NULL, NULL);
    case '{':
    case '[': {
        char close = *w->p == '{' ? '}' : ']';
        w->p++;
        gw_jw_ws(w);
        if (w->p < w->end && *w->p == close) {
            w->p++;
            return 0;
        }
        for (;;) {
            if (close == '}') {
                /* nested keys may hold escapes: only their syntax matters here */
                uint64_t ignored = 0;
                if (w->p >= w->end || *w->p != '"' || gw_jw_string(w, &ignored, NULL, NULL) != 0) {
                    return -1;
                }
                gw_jw_ws(w);
                if (w->p >= w->end || *w->p != ':') {
                    return -1;
                }
                w->p++;
                gw_jw_ws(w);
            }
            if (gw_jw_value(w, depth + 1, bytes) != 0) {
                return -1;
            }
            int more = gw_jw_next(w, close);
            if (more <= 0) {
                return more;
            }
        }
    }
    case 't':
        return gw_jw_lit(w, "true", 4);
    case 'f':
        return gw_jw_lit(w, "false", 5);
    case 'n':
        return gw_jw_lit(w, "null", 4);
    default:
        return *w->p == '-' || (*w->p >= '0' && *w->p <= '9') ? gw_jw_number(w) : -1;
    }
}

int gw_jw_is(const char *k, size_t kn, const char *name)
{
    size_t n = strlen(name);
    return kn == n && memcmp(k, name, n) == 0;
}
