/*
 * fixture_http.c — the fixture's HTTP client (libcurl easy, one handle per
 * request so any thread may call it) and the admin/chat helpers built on it.
 *
 * A response keeps the headers of the final HTTP response only (interim
 * 1xx responses are dropped), its body NUL-terminated, and the body parsed as
 * JSON when it is JSON.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <curl/curl.h>
#include "cg_money.h"
#include "fixture.h"

#define FX_RESP_HEADERS_MAX 64
#define FX_RESP_BODY_MAX (64u << 20)

static size_t fx_body_cb(char *p, size_t size, size_t n, void *ud)
{
    fx_resp *r = ud;
    size_t len = size * n;
    if (r->body_len + len > FX_RESP_BODY_MAX) {
        return 0;
    }
    char *nb = realloc(r->body, r->body_len + len + 1);
    if (nb == NULL) {
        return 0;
    }
    memcpy(nb + r->body_len, p, len);
    r->body = nb;
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return len;
}

static void fx_headers_clear(fx_resp *r)
{
    for (size_t i = 0; i < r->header_n; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    r->header_n = 0;
}

static char *fx_strndup_trim(const char *p, size_t n)
{
    while (n > 0 && isspace((unsigned char)*p)) {
        p++;
        n--;
    }
    while (n > 0 && isspace((unsigned char)p[n - 1])) {
        n--;
    }
    char *s = malloc(n + 1);
    if (s != NULL) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static size_t fx_header_cb(char *p, size_t size, size_t n, void *ud)
{
    fx_resp *r = ud;
    size_t len = size * n;
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        fx_headers_clear(r); /* a new (final or interim) response starts */
        return len;
    }
    const char *colon = memchr(p, ':', len);
    if (colon == NULL || r->header_n >= FX_RESP_HEADERS_MAX) {
        return len;
    }
    fx_header *h = &r->headers[r->header_n];
    h->name = fx_strndup_trim(p, (size_t)(colon - p));
    h->value = fx_strndup_trim(colon + 1, len - (size_t)(colon - p) - 1);
    if (h->name == NULL || h->value == NULL) {
        free(h->name);
        free(h->value);
        return 0;
    }
    for (char *q = h->name; *q != '\0'; q++) {
        *q = (char)tolower((unsigned char)*q);
    }
    r->header_n++;
    return len;
}

static struct curl_slist *fx_header_list(const char *const *headers, int has_body)
{
    struct curl_slist *list = NULL;
    /* No "Expect: 100-continue" round trip for larger bodies. */
    list = curl_slist_append(list, "Expect:");
    if (has_body) {
        list = curl_slist_append(list, "Content-Type: application/json");
    }
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
        list = curl_slist_append(list, headers[i]);
    }
    return list;
}

long fx_http(fx_resp *r, const char *method, const char *url, const char *const *headers,
             const char *body, long timeout_ms)
{
    memset(r, 0, sizeof(*r));
    r->headers = calloc(FX_RESP_HEADERS_MAX, sizeof(fx_header));
    CURL *e = curl_easy_init();
    if (e == NULL || r->headers == NULL) {
        snprintf(r->err, sizeof(r->err), "out of memory");
        curl_easy_cleanup(e);
        return 0;
    }
    struct curl_slist *list = fx_header_list(headers, body != NULL);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : FX_HTTP_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, fx_body_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, fx_header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    if (body != NULL) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    int64_t t0 = fx_now_ms();
    CURLcode rc = curl_easy_perform(e);
    r->elapsed_ms = fx_now_ms() - t0;
    if (rc == CURLE_OK) {
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
    } else {
        snprintf(r->err, sizeof(r->err), "%s", curl_easy_strerror(rc));
    }
    curl_slist_free_all(list);
    curl_easy_cleanup(e);
    if (r->body == NULL) {
        r->body = calloc(1, 1);
    }
    r->json = r->body != NULL ? cJSON_ParseWithLength(r->body, r->body_len) : NULL;
    return r->status;
}

void fx_resp_free(fx_resp *r)
{
    if (r->headers != NULL) {
        fx_headers_clear(r);
    }
    free(r->headers);
    free(r->body);
    cJSON_Delete(r->json);
    memset(r, 0, sizeof(*r));
}

const char *fx_resp_header(const fx_resp *r, const char *name)
{
    for (size_t i = 0; i < r->header_n; i++) {
        if (strcasecmp(r->headers[i].name, name) == 0) {
            return r->headers[i].value;
        }
    }
    return NULL;
}

static const char *fx_resp_error_field(const fx_resp *r, const char *field)
{
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(r->json, "error");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(err, field);
    return cJSON_IsString(v) ? v->valuestring : "";
}

const char *fx_resp_error_code(const fx_resp *r)
{
    return fx_resp_error_field(r, "code");
}

const char *fx_resp_error_type(const fx_resp *r)
{
    return fx_resp_error_field(r, "type");
}

long fx_admin(fx_cluster *c, fx_resp *r, const char *method, const char *path, const char *body)
{
    char auth[128];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->admin_token);
    const char *headers[] = {auth, NULL};
    char url[512];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", c->admin_port[0], path);
    return fx_http(r, method, url, headers, body, 0);
}

#define FX_EXTRA_HEADERS_MAX 8

/* A request on gateway gw with the key's Authorization header (if any) and extra headers. */
static long fx_gw_request(fx_cluster *c, uint32_t gw, fx_resp *r, const char *method,
                          const char *key, const char *path, const char *const *extra,
                          const char *body)
{
    char auth[256];
    const char *headers[FX_EXTRA_HEADERS_MAX + 2];
    size_t n = 0;
    if (key != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
        headers[n++] = auth;
    }
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        FX_CHECK(i < FX_EXTRA_HEADERS_MAX, "too many extra headers");
        headers[n++] = extra[i];
    }
    headers[n] = NULL;
    FX_CHECK(gw < c->opts.gateway_n, "no gateway %u", gw);
    char url[512];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", c->gw_port[gw], path);
    return fx_http(r, method, url, headers, body, 0);
}

long fx_chat(fx_cluster *c, uint32_t gw, fx_resp *r, const char *key, const char *body)
{
    return fx_gw_request(c, gw, r, "POST", key, "/v1/chat/completions", NULL, body);
}

long fx_post(fx_cluster *c, uint32_t gw, fx_resp *r, const char *key, const char *path,
             const char *const *headers, const char *body)
{
    return fx_gw_request(c, gw, r, "POST", key, path, headers, body);
}

long fx_get(fx_cluster *c, uint32_t gw, fx_resp *r, const char *key, const char *path)
{
    return fx_gw_request(c, gw, r, "GET", key, path, NULL, NULL);
}

/* One SSE event's `data:` payload (lines joined by '\n' per the SSE rules). */
static void fx_sse_event(cJSON *out, const char *data, int *done)
{
    if (strcmp(data, "[DONE]") == 0) {
        *done = 1;
        return;
    }
    cJSON *j = cJSON_Parse(data);
    FX_CHECK(cJSON_IsObject(j), "SSE data is not a JSON object: %.200s", data);
    FX_CHECK(!*done, "SSE data after [DONE]: %.200s", data);
    cJSON_AddItemToArray(out, j);
}

cJSON *fx_sse_parse(const char *body, int *done)
{
    cJSON *out = cJSON_CreateArray();
    *done = 0;
    size_t cap = strlen(body) + 1, n = 0;
    char *data = malloc(cap);
    FX_CHECK(out != NULL && data != NULL, "out of memory");
    data[0] = '\0';
    const char *p = body;
    while (*p != '\0') {
        const char *eol = strchr(p, '\n');
        size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
        size_t l = len > 0 && p[len - 1] == '\r' ? len - 1 : len;
        if (l == 0 && n > 0) { /* blank line: dispatch the event */
            data[n] = '\0';
            fx_sse_event(out, data, done);
            n = 0;
        } else if (l >= 5 && strncmp(p, "data:", 5) == 0) {
            const char *v = p + 5 + (l > 5 && p[5] == ' ');
            size_t vl = l - (size_t)(v - p);
            if (n > 0) {
                data[n++] = '\n';
            }
            memcpy(data + n, v, vl);
            n += vl;
        }
        p = eol != NULL ? eol + 1 : p + len;
    }
    if (n > 0) {
        data[n] = '\0';
        fx_sse_event(out, data, done);
    }
    free(data);
    return out;
}

int64_t fx_usd(const char *s)
{
    int64_t v = 0;
    FX_CHECK(s != NULL, "money string missing");
    FX_CHECK(cg_money_parse(s, strlen(s), 0, &v) == CG_ERR_OK, "bad money string \"%s\"", s);
    return v;
}

void fx_org_create(fx_cluster *c, const char *body)
{
    fx_resp r;
    long st = fx_admin(c, &r, "POST", "/admin/v1/orgs", body);
    FX_CHECK(st == 201, "POST /admin/v1/orgs -> %ld %s %s", st, r.err, r.body);
    fx_resp_free(&r);
}

void fx_key_create(fx_cluster *c, const char *org, const char *body, char id[64], char key[128])
{
    fx_resp r;
    char path[256];
    snprintf(path, sizeof(path), "/admin/v1/orgs/%s/keys", org);
    long st = fx_admin(c, &r, "POST", path, body);
    FX_CHECK(st == 201, "POST %s -> %ld %s %s", path, st, r.err, r.body);
    const cJSON *jid = cJSON_GetObjectItemCaseSensitive(r.json, "id");
    const cJSON *jkey = cJSON_GetObjectItemCaseSensitive(r.json, "key");
    FX_CHECK(cJSON_IsString(jid) && cJSON_IsString(jkey), "key reply: %s", r.body);
    FX_CHECK(strlen(jid->valuestring) < 64 && strlen(jkey->valuestring) < 128, "key too long");
    snprintf(id, 64, "%s", jid->valuestring);
    snprintf(key, 128, "%s", jkey->valuestring);
    fx_resp_free(&r);
}

void fx_acme_capped_key(fx_cluster *c, char id[64], char key[128])
{
    fx_org_create(c, "{\"id\":\"acme\",\"name\":\"Acme Inc.\"}");
    fx_key_create(c, "acme",
                  "{\"name\":\"k\",\"limits\":[{\"metric\":\"cost\","
                  "\"window\":\"month\",\"max\":\"1\"}]}",
                  id, key);
}

void fx_spend(fx_cluster *c, const char *key, const char *model, int max_tokens, int times)
{
    char body[256];
    snprintf(body, sizeof(body),
             "{\"model\":\"%s\",\"max_tokens\":%d,"
             "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
             model, max_tokens);
    for (int i = 0; i < times; i++) {
        fx_resp r;
        long st = fx_chat(c, 0, &r, key, body);
        FX_CHECK(st == 200, "spend %d tokens: %ld %s %s", max_tokens, st, r.err, r.body);
        fx_resp_free(&r);
    }
}

void fx_org_with_hook(fx_cluster *c, const char *id, const char *name, const fx_hook *h,
                      const char *secret)
{
    char body[512];
    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"name\":\"%s\",\"webhooks\":[{\"url\":"
             "\"http://127.0.0.1:%d/hook\",\"secret\":\"%s\"}]}",
             id, name, fx_hook_port(h), secret);
    fx_org_create(c, body);
}

/* A limit amount: a decimal USD string for cost, an integer otherwise. */
static int64_t fx_amount(const cJSON *v, const char *what, const char *body)
{
    if (cJSON_IsString(v)) {
        return fx_usd(v->valuestring);
    }
    FX_CHECK(cJSON_IsNumber(v), "limit %s missing in %s", what, body);
    return (int64_t)v->valuedouble;
}

long fx_key_limit_get(fx_cluster *c, const char *id, size_t i, fx_limit *out)
{
    fx_resp r;
    char path[256];
    snprintf(path, sizeof(path), "/admin/v1/keys/%s", id);
    long st = fx_admin(c, &r, "GET", path, NULL);
    if (st != 200) {
        fx_log("GET %s -> %ld %s %.300s", path, st, r.err, r.body);
        fx_resp_free(&r);
        return st;
    }
    const cJSON *limits = cJSON_GetObjectItemCaseSensitive(r.json, "limits");
    const cJSON *l = cJSON_GetArrayItem(limits, (int)i);
    FX_CHECK(cJSON_IsObject(l), "no limits[%zu] in %s", i, r.body);
    memset(out, 0, sizeof(*out));
    out->used = fx_amount(cJSON_GetObjectItemCaseSensitive(l, "used"), "used", r.body);
    out->reserved = fx_amount(cJSON_GetObjectItemCaseSensitive(l, "reserved"), "reserved", r.body);
    out->max = fx_amount(cJSON_GetObjectItemCaseSensitive(l, "max"), "max", r.body);
    const cJSON *ra = cJSON_GetObjectItemCaseSensitive(l, "resets_at");
    if (cJSON_IsString(ra)) {
        snprintf(out->resets_at, sizeof(out->resets_at), "%s", ra->valuestring);
    }
    fx_resp_free(&r);
    return st;
}

fx_limit fx_key_limit(fx_cluster *c, const char *id, size_t i)
{
    fx_limit out;
    long st = fx_key_limit_get(c, id, i, &out);
    FX_CHECK(st == 200, "GET /admin/v1/keys/%s -> %ld", id, st);
    return out;
}

fx_limit fx_key_limit_settled(fx_cluster *c, const char *id, size_t i, int64_t used)
{
    /* Settlement may finish just after the client got its response. */
    int64_t deadline = fx_now_ms() + FX_SETTLE_TIMEOUT_MS;
    fx_limit l = fx_key_limit(c, id, i);
    while ((l.used != used || l.reserved != 0) && fx_now_ms() < deadline) {
        fx_sleep_ms(20);
        l = fx_key_limit(c, id, i);
    }
    return l;
}

int64_t fx_demo_chat_requests(fx_cluster *c)
{
    fx_resp r;
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/demo/stats", c->demo_port);
    long st = fx_http(&r, "GET", url, NULL, NULL, 0);
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(r.json, "chat_requests");
    FX_CHECK(st == 200 && cJSON_IsNumber(n), "GET /demo/stats -> %ld %s", st, r.body);
    int64_t v = (int64_t)n->valuedouble;
    fx_resp_free(&r);
    return v;
}

static int64_t fx_stat_field(const cJSON *j, const char *name, const char *body)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);
    if (cJSON_IsNull(v)) {
        return -1;
    }
    FX_CHECK(cJSON_IsNumber(v), "/demo/stats has no %s: %s", name, body);
    return (int64_t)v->valuedouble;
}

fx_demo_stats fx_demo_stats_get(fx_cluster *c)
{
    fx_resp r;
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/demo/stats", c->demo_port);
    long st = fx_http(&r, "GET", url, NULL, NULL, 0);
    FX_CHECK(st == 200 && cJSON_IsObject(r.json), "GET /demo/stats -> %ld %s", st, r.body);
    fx_demo_stats s = {
        .requests = fx_stat_field(r.json, "requests", r.body),
        .api = fx_stat_field(r.json, "api_requests", r.body),
        .chat = fx_stat_field(r.json, "chat_requests", r.body),
        .completions = fx_stat_field(r.json, "completions_requests", r.body),
        .embeddings = fx_stat_field(r.json, "embeddings_requests", r.body),
        .responses = fx_stat_field(r.json, "responses_requests", r.body),
        .last_max_tokens = fx_stat_field(r.json, "last_max_tokens", r.body),
    };
    fx_resp_free(&r);
    return s;
}

int64_t fx_demo_api_requests(fx_cluster *c)
{
    return fx_demo_stats_get(c).api;
}

/* ---- issue 3 admin helpers ---- */

cJSON *fx_admin_expect(fx_cluster *c, long want, const char *method, const char *path,
                       const char *body)
{
    fx_resp r;
    long st = fx_admin(c, &r, method, path, body);
    FX_CHECK(st == want, "%s %s -> %ld (want %ld) %s %.500s", method, path, st, want, r.err,
             r.body);
    cJSON *j = r.json;
    r.json = NULL;
    fx_resp_free(&r);
    return j;
}

/* An admin call accepting either of two statuses. */
static void fx_admin_either(fx_cluster *c, long a, long b, const char *method, const char *path,
                            const char *body)
{
    fx_resp r;
    long st = fx_admin(c, &r, method, path, body);
    FX_CHECK(st == a || st == b, "%s %s -> %ld (want %ld or %ld) %s %.500s", method, path, st, a, b,
             r.err, r.body);
    fx_resp_free(&r);
}

void fx_group_create(fx_cluster *c, const char *org, const char *body)
{
    char path[256];
    snprintf(path, sizeof(path), "/admin/v1/orgs/%s/groups", org);
    cJSON_Delete(fx_admin_expect(c, 201, "POST", path, body));
}

void fx_group_patch(fx_cluster *c, const char *org, const char *group, const char *body)
{
    char path[256];
    snprintf(path, sizeof(path), "/admin/v1/orgs/%s/groups/%s", org, group);
    cJSON_Delete(fx_admin_expect(c, 200, "PATCH", path, body));
}

void fx_org_patch(fx_cluster *c, const char *org, const char *body)
{
    char path[256];
    snprintf(path, sizeof(path), "/admin/v1/orgs/%s", org);
    cJSON_Delete(fx_admin_expect(c, 200, "PATCH", path, body));
}

void fx_customer_put(fx_cluster *c, const char *org, const char *customer, const char *body)
{
    char path[256];
    snprintf(path, sizeof(path), "/admin/v1/orgs/%s/customers/%s", org, customer);
    fx_admin_either(c, 200, 201, "PUT", path, body);
}

void fx_key_patch(fx_cluster *c, const char *id, const char *body)
{
    char path[256];
    snprintf(path, sizeof(path), "/admin/v1/keys/%s", id);
    cJSON_Delete(fx_admin_expect(c, 200, "PATCH", path, body));
}

void fx_key_revoke(fx_cluster *c, const char *id)
{
    char path[256];
    snprintf(path, sizeof(path), "/admin/v1/keys/%s/revoke", id);
    fx_admin_either(c, 200, 204, "POST", path, NULL);
}

static int64_t fx_usage_field(const cJSON *j, const char *name, int money)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);
    if (money && cJSON_IsString(v)) {
        return fx_usd(v->valuestring);
    }
    FX_CHECK(cJSON_IsNumber(v), "usage totals: no %s", name);
    return (int64_t)v->valuedouble;
}

fx_usage fx_usage_totals(fx_cluster *c, const char *query)
{
    char path[512];
    snprintf(path, sizeof(path), "/admin/v1/usage?%s", query);
    cJSON *j = fx_admin_expect(c, 200, "GET", path, NULL);
    FX_CHECK(cJSON_IsObject(j), "GET %s: not a JSON object", path);
    fx_usage u = {
        .requests = fx_usage_field(j, "requests", 0),
        .prompt_tokens = fx_usage_field(j, "prompt_tokens", 0),
        .completion_tokens = fx_usage_field(j, "completion_tokens", 0),
        .cost = fx_usage_field(j, "cost", 1),
    };
    cJSON_Delete(j);
    return u;
}

fx_usage fx_usage_totals_settled(fx_cluster *c, const char *query, int64_t requests)
{
    int64_t deadline = fx_now_ms() + FX_SETTLE_TIMEOUT_MS;
    fx_usage u = fx_usage_totals(c, query);
    while (u.requests != requests && fx_now_ms() < deadline) {
        fx_sleep_ms(20);
        u = fx_usage_totals(c, query);
    }
    return u;
}

const char *fx_scope_name(fx_scope s)
{
    static const char *const names[] = {"key", "group", "customer", "org"};
    return (unsigned)s < 4 ? names[s] : "?";
}

void fx_scope_path(char out[256], fx_scope s, const char *org, const char *id)
{
    switch (s) {
    case FX_SCOPE_KEY:
        snprintf(out, 256, "/admin/v1/keys/%s", id);
        break;
    case FX_SCOPE_GROUP:
        snprintf(out, 256, "/admin/v1/orgs/%s/groups/%s", org, id);
        break;
    case FX_SCOPE_CUSTOMER:
        snprintf(out, 256, "/admin/v1/orgs/%s/customers/%s", org, id);
        break;
    case FX_SCOPE_ORG:
        snprintf(out, 256, "/admin/v1/orgs/%s", org);
        break;
    }
}

/* The limit of j's "limits" matching metric and window, parsed; 0 if none. */
static int fx_limit_find(const cJSON *j, const char *metric, const char *window, fx_limit *out,
                         const char *where)
{
    const cJSON *l;
    cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(j, "limits"))
    {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(l, "metric");
        const cJSON *w = cJSON_GetObjectItemCaseSensitive(l, "window");
        if (!cJSON_IsString(m) || !cJSON_IsString(w) || strcmp(m->valuestring, metric) != 0 ||
            strcmp(w->valuestring, window) != 0) {
            continue;
        }
        memset(out, 0, sizeof(*out));
        out->used = fx_amount(cJSON_GetObjectItemCaseSensitive(l, "used"), "used", where);
        out->reserved =
            fx_amount(cJSON_GetObjectItemCaseSensitive(l, "reserved"), "reserved", where);
        out->max = fx_amount(cJSON_GetObjectItemCaseSensitive(l, "max"), "max", where);
        const cJSON *ra = cJSON_GetObjectItemCaseSensitive(l, "resets_at");
        if (cJSON_IsString(ra)) {
            snprintf(out->resets_at, sizeof(out->resets_at), "%s", ra->valuestring);
        }
        return 1;
    }
    return 0;
}

fx_limit fx_scope_limit(fx_cluster *c, const char *path, const char *metric, const char *window)
{
    cJSON *j = fx_admin_expect(c, 200, "GET", path, NULL);
    char *txt = cJSON_PrintUnformatted(j);
    fx_limit out;
    int found = fx_limit_find(j, metric, window, &out, txt != NULL ? txt : "?");
    FX_CHECK(found, "GET %s: no %s/%s limit in %.600s", path, metric, window, txt ? txt : "?");
    cJSON_free(txt);
    cJSON_Delete(j);
    return out;
}

fx_limit fx_scope_limit_settled(fx_cluster *c, const char *path, const char *metric,
                                const char *window, int64_t used)
{
    int64_t deadline = fx_now_ms() + FX_SETTLE_TIMEOUT_MS;
    fx_limit l = fx_scope_limit(c, path, metric, window);
    while ((l.used != used || l.reserved != 0) && fx_now_ms() < deadline) {
        fx_sleep_ms(20);
        l = fx_scope_limit(c, path, metric, window);
    }
    return l;
}

fx_limit fx_scope_limit_idle(fx_cluster *c, const char *path, const char *metric,
                             const char *window)
{
    int64_t deadline = fx_now_ms() + FX_SETTLE_TIMEOUT_MS;
    fx_limit l = fx_scope_limit(c, path, metric, window);
    while (l.reserved != 0 && fx_now_ms() < deadline) {
        fx_sleep_ms(20);
        l = fx_scope_limit(c, path, metric, window);
    }
    return l;
}
