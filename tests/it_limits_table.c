/*
 * it_limits_table.c — integration: every limit kind on every scope, table-driven.
 *
 * For each scope (key, group, customer, org) and each limit (cost/month,
 * tokens/day, requests/week, cost/lifetime, requests over a sliding 1m,
 * tokens over a sliding 1h), a fresh org gets only that limit on that scope,
 * with a max that admits exactly N requests (N = 2, or 1 for a customer
 * override). Then:
 *   1. N requests pass (200), each charged exactly;
 *   2. the next is refused: 402 insufficient_quota / budget_exceeded for
 *      calendar and lifetime windows, 429 rate_limit_error /
 *      rate_limit_exceeded with Retry-After for sliding ones, with the SPEC §4
 *      `limit` object (scope, scope_id, metric, window, max, used, resets_at),
 *      and the upstream never sees it;
 *   3. the test clock moves to just before the reset: still refused;
 *   4. the clock moves past the reset (next day / Monday / month, or past the
 *      sliding window): the request passes and the counter starts afresh —
 *      except lifetime, which stays refused with `used` unchanged.
 * The customer rows run twice in one org: customer "cust-a" named by the
 * X-Capgate-Customer header and limited by the org's customer_defaults
 * (N = 2), and "cust-b" named by the body's "user", whose per-customer
 * override of the same (metric, window) wins (N = 1).
 *
 * Why exactly N pass whatever the gateway's prompt bound P: model demo-m
 * costs 0.001 / 1 USD per 1M tokens (1 / 1,000 nano-USD per token); every
 * request is "hi" (1 prompt token) with max_tokens 100 and the demo asked for
 * 100 completion tokens, so it uses exactly 101 tokens and 100,001 nano-USD
 * and its worst case is P + 100 tokens / P + 100,000 nano-USD. With max =
 * 250 tokens / 250,000 nano-USD (N = 2) or 150 / 150,000 (N = 1), the N-th
 * request fits and the next does not for every P <= 49.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fixture.h"

#define UNIT_COST_NUSD 100001LL /* 1 x 1 + 100 x 1,000 */
#define UNIT_TOKENS 101LL
#define LIFETIME_ADVANCE_S (40LL * 86400) /* "a long time later" */
#define BEFORE_RESET_S 3                  /* the "just before" probe, seconds before the reset */

static const fx_model models[] = {
    {"demo-m", "0.001", "1", 1000},
};

typedef struct kind {
    const char *metric; /* "cost" | "tokens" | "requests" */
    const char *window;
    int64_t sliding_s; /* 0 = calendar or lifetime */
} kind;

static const kind kinds[] = {
    {"cost", "month", 0},    {"tokens", "day", 0},   {"requests", "week", 0},
    {"cost", "lifetime", 0}, {"requests", "1m", 60}, {"tokens", "1h", 3600},
};
#define KIND_N (sizeof(kinds) / sizeof(kinds[0]))

/* One thing being limited: a key sending requests that count against a scope. */
typedef struct subject {
    fx_scope scope;
    char org[64];
    char scope_id[64]; /* as the `limit` object names it */
    char path[256];    /* admin record showing the limit's state */
    char key_id[64];
    char key[128];
    const char *customer_header; /* X-Capgate-Customer value, or NULL */
    const char *customer_user;   /* body "user", or NULL */
    int n;                       /* requests that fit */
} subject;

/* ---- amounts ---- */

static int64_t unit_of(const kind *k)
{
    if (strcmp(k->metric, "cost") == 0) {
        return UNIT_COST_NUSD;
    }
    return strcmp(k->metric, "tokens") == 0 ? UNIT_TOKENS : 1;
}

/* The max admitting exactly n (1 or 2) requests, in its unit and as JSON. */
static int64_t max_of(const kind *k, int n, char json[32])
{
    int64_t v;
    if (strcmp(k->metric, "cost") == 0) {
        v = n == 2 ? 250000 : 150000;
        snprintf(json, 32, "\"0.000%d50\"", n == 2 ? 2 : 1);
    } else {
        v = strcmp(k->metric, "tokens") == 0 ? (n == 2 ? 250 : 150) : n;
        snprintf(json, 32, "%lld", (long long)v);
    }
    return v;
}

static void limits_json(char *out, size_t cap, const kind *k, int n)
{
    char max[32];
    max_of(k, n, max);
    snprintf(out, cap, "[{\"metric\":\"%s\",\"window\":\"%s\",\"max\":%s}]", k->metric, k->window,
             max);
}

/* ---- requests ---- */

static long send(fx_cluster *c, const subject *s, fx_resp *r)
{
    char body[512], hdr[128];
    char user[96] = "";
    if (s->customer_user != NULL) {
        snprintf(user, sizeof(user), "\"user\":\"%s\",", s->customer_user);
    }
    snprintf(body, sizeof(body),
             "{\"model\":\"demo-m\",%s\"max_tokens\":100,\"demo\":{\"completion_tokens\":100},"
             "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
             user);
    const char *headers[] = {hdr, NULL};
    if (s->customer_header != NULL) {
        snprintf(hdr, sizeof(hdr), "X-Capgate-Customer: %s", s->customer_header);
    }
    return fx_post(c, 0, r, s->key, "/v1/chat/completions",
                   s->customer_header != NULL ? headers : NULL, body);
}

static const char *str_field(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* An amount of the limit object: a USD string for cost, an integer otherwise. */
static int64_t amount_field(const cJSON *o, const char *name, const kind *k, const char *body)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (strcmp(k->metric, "cost") == 0) {
        FX_CHECK(cJSON_IsString(v), "limit.%s is not a USD string: %s", name, body);
        return fx_usd(v->valuestring);
    }
    FX_CHECK(cJSON_IsNumber(v), "limit.%s is not a number: %s", name, body);
    return (int64_t)v->valuedouble;
}

/* The refusal: status, type, code, Retry-After and the whole `limit` object. */
static void check_refused(const fx_resp *r, const subject *s, const kind *k, int64_t used)
{
    const char *what = fx_fmt_("%s %s/%s", fx_scope_name(s->scope), k->metric, k->window);
    char maxj[32];
    int64_t max = max_of(k, s->n, maxj);
    int64_t now = fx_clock_now_s();
    if (k->sliding_s > 0) {
        FX_CHECK(r->status == 429, "%s: want 429, got %ld %s", what, r->status, r->body);
        FX_CHECK_EQ_STR(fx_resp_error_type(r), "rate_limit_error");
        FX_CHECK_EQ_STR(fx_resp_error_code(r), "rate_limit_exceeded");
    } else {
        FX_CHECK(r->status == 402, "%s: want 402, got %ld %s", what, r->status, r->body);
        FX_CHECK_EQ_STR(fx_resp_error_type(r), "insufficient_quota");
        FX_CHECK_EQ_STR(fx_resp_error_code(r), "budget_exceeded");
    }
    const cJSON *limit = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(r->json, "error"), "limit");
    FX_CHECK(cJSON_IsObject(limit), "%s: no limit object: %s", what, r->body);
    FX_CHECK_EQ_STR(str_field(limit, "scope"), fx_scope_name(s->scope));
    FX_CHECK_EQ_STR(str_field(limit, "scope_id"), s->scope_id);
    FX_CHECK_EQ_STR(str_field(limit, "metric"), k->metric);
    FX_CHECK_EQ_STR(str_field(limit, "window"), k->window);
    FX_CHECK_EQ_INT(amount_field(limit, "max", k, r->body), max);
    FX_CHECK_EQ_INT(amount_field(limit, "used", k, r->body), used);
    const cJSON *ra = cJSON_GetObjectItemCaseSensitive(limit, "resets_at");
    char want[32];
    if (strcmp(k->window, "lifetime") == 0) {
        FX_CHECK(ra == NULL || cJSON_IsNull(ra), "%s: lifetime resets_at must be null: %s", what,
                 r->body);
    } else if (k->sliding_s == 0) {
        if (strcmp(k->window, "day") == 0) {
            fx_next_day(want);
        } else if (strcmp(k->window, "week") == 0) {
            fx_next_monday(want);
        } else {
            fx_next_month(want);
        }
        FX_CHECK_EQ_STR(str_field(limit, "resets_at"), want);
    }
    if (k->sliding_s == 0) {
        FX_CHECK(fx_resp_header(r, "retry-after") == NULL, "%s: Retry-After on a 402", what);
        return;
    }
    /* Sliding: Retry-After in whole seconds (>= 1), at most one window and a
     * bucket away; resets_at is when the oldest counted bucket leaves, which
     * here (one bucket leaving frees enough) is the same instant. */
    const char *retry = fx_resp_header(r, "retry-after");
    FX_CHECK(retry != NULL, "%s: 429 without Retry-After", what);
    char *end;
    long ra_s = strtol(retry, &end, 10);
    int64_t bucket_s = k->sliding_s / 60 > 1 ? k->sliding_s / 60 : 1;
    FX_CHECK(*end == '\0' && ra_s >= 1 && ra_s <= k->sliding_s + bucket_s,
             "%s: Retry-After \"%s\" not in 1..%lld", what, retry,
             (long long)(k->sliding_s + bucket_s));
    int64_t resets = fx_time_parse(str_field(limit, "resets_at"));
    FX_CHECK(resets > now && resets <= now + k->sliding_s + bucket_s + 1,
             "%s: resets_at %s not within the window", what, str_field(limit, "resets_at"));
    FX_CHECK(llabs((long long)(resets - (now + ra_s))) <= 2, "%s: resets_at %s vs Retry-After %ld",
             what, str_field(limit, "resets_at"), ra_s);
}

/* ---- one row ---- */

/* n requests pass, each charged exactly; the next is refused. Returns the
 * Retry-After of a sliding refusal (0 otherwise). */
static long fill(fx_cluster *c, const subject *s, const kind *k)
{
    int64_t unit = unit_of(k);
    int64_t api0 = fx_demo_api_requests(c);
    fx_resp r;
    for (int i = 1; i <= s->n; i++) {
        long st = send(c, s, &r);
        FX_CHECK(st == 200, "%s %s/%s request %d of %d: %ld %s", fx_scope_name(s->scope), k->metric,
                 k->window, i, s->n, st, r.body);
        fx_resp_free(&r);
        fx_limit l = fx_scope_limit_settled(c, s->path, k->metric, k->window, i * unit);
        FX_CHECK_EQ_INT(l.used, i * unit);
        FX_CHECK_EQ_INT(l.reserved, 0);
    }
    send(c, s, &r);
    check_refused(&r, s, k, s->n * unit);
    const char *retry = fx_resp_header(&r, "retry-after");
    long ra = retry != NULL ? strtol(retry, NULL, 10) : 0;
    fx_resp_free(&r);
    FX_CHECK_EQ_INT(fx_demo_api_requests(c), api0 + s->n);
    fx_limit l = fx_scope_limit_settled(c, s->path, k->metric, k->window, s->n * unit);
    FX_CHECK_EQ_INT(l.used, s->n * unit);
    FX_CHECK_EQ_INT(l.reserved, 0);
    return ra;
}

/* Seconds from now to the reset of a calendar window (0: lifetime). */
static int64_t to_reset_s(const kind *k)
{
    char t[32];
    if (strcmp(k->window, "lifetime") == 0) {
        return 0;
    }
    if (strcmp(k->window, "day") == 0) {
        fx_next_day(t);
    } else if (strcmp(k->window, "week") == 0) {
        fx_next_monday(t);
    } else {
        fx_next_month(t);
    }
    return fx_time_parse(t) - fx_clock_now_s();
}

static void run_row(fx_cluster *c, subject *subs, int sub_n, const kind *k)
{
    int64_t unit = unit_of(k);
    long retry_min = 0;
    for (int i = 0; i < sub_n; i++) {
        long ra = fill(c, &subs[i], k);
        retry_min = i == 0 || ra < retry_min ? ra : retry_min;
    }
    /* Just before the reset: still refused. */
    int64_t before = k->sliding_s > 0 ? retry_min - BEFORE_RESET_S : to_reset_s(k) - BEFORE_RESET_S;
    if (strcmp(k->window, "lifetime") == 0) {
        before = LIFETIME_ADVANCE_S;
    }
    if (before > 0) {
        fx_clock_advance(before);
        for (int i = 0; i < sub_n; i++) {
            fx_resp r;
            send(c, &subs[i], &r);
            FX_CHECK(r.status == (k->sliding_s > 0 ? 429 : 402),
                     "%s %s/%s just before the reset: %ld %s", fx_scope_name(subs[i].scope),
                     k->metric, k->window, r.status, r.body);
            fx_resp_free(&r);
        }
    }
    /* Past the reset: a fresh period (or window) admits again; lifetime never resets. */
    int64_t past = k->sliding_s > 0
                       ? k->sliding_s + k->sliding_s / 60 + 2 - (before > 0 ? before : 0)
                       : BEFORE_RESET_S + 2;
    fx_clock_advance(past > 0 ? past : 1);
    for (int i = 0; i < sub_n; i++) {
        subject *s = &subs[i];
        fx_resp r;
        long st = send(c, s, &r);
        if (strcmp(k->window, "lifetime") == 0) {
            check_refused(&r, s, k, s->n * unit);
            fx_resp_free(&r);
            fx_limit l = fx_scope_limit_settled(c, s->path, k->metric, k->window, s->n * unit);
            FX_CHECK_EQ_INT(l.used, s->n * unit);
            continue;
        }
        FX_CHECK(st == 200, "%s %s/%s after the reset: %ld %s", fx_scope_name(s->scope), k->metric,
                 k->window, st, r.body);
        fx_resp_free(&r);
        fx_limit l = fx_scope_limit_settled(c, s->path, k->metric, k->window, unit);
        FX_CHECK_EQ_INT(l.used, unit);
        FX_CHECK_EQ_INT(l.reserved, 0);
    }
    fx_log("%-8s %-8s %-8s: %d subject(s) refused at their max, %s", fx_scope_name(subs[0].scope),
           k->metric, k->window, sub_n,
           strcmp(k->window, "lifetime") == 0 ? "still refused later" : "admitted after the reset");
}

/* ---- scopes ---- */

static void key_for(fx_cluster *c, subject *s, const char *body)
{
    fx_key_create(c, s->org, body, s->key_id, s->key);
}

static int setup(fx_cluster *c, fx_scope scope, const kind *k, int row, subject subs[2])
{
    char org[64], lim[256], body[1024];
    snprintf(org, sizeof(org), "lt%02d", row);
    memset(subs, 0, 2 * sizeof(subject));
    for (int i = 0; i < 2; i++) {
        subs[i].scope = scope;
        subs[i].n = 2;
        snprintf(subs[i].org, sizeof(subs[i].org), "%s", org);
    }
    limits_json(lim, sizeof(lim), k, 2);
    subject *s = &subs[0];
    switch (scope) {
    case FX_SCOPE_KEY:
        fx_org_create(c, fx_fmt_("{\"id\":\"%s\",\"name\":\"row %d\"}", org, row));
        snprintf(body, sizeof(body), "{\"name\":\"k\",\"limits\":%s}", lim);
        key_for(c, s, body);
        snprintf(s->scope_id, sizeof(s->scope_id), "%s", s->key_id);
        break;
    case FX_SCOPE_GROUP:
        fx_org_create(c, fx_fmt_("{\"id\":\"%s\",\"name\":\"row %d\"}", org, row));
        snprintf(body, sizeof(body), "{\"id\":\"team\",\"name\":\"Team\",\"limits\":%s}", lim);
        fx_group_create(c, org, body);
        key_for(c, s, "{\"name\":\"k\",\"group\":\"team\"}");
        snprintf(s->scope_id, sizeof(s->scope_id), "team");
        break;
    case FX_SCOPE_CUSTOMER:
        snprintf(body, sizeof(body),
                 "{\"id\":\"%s\",\"name\":\"row %d\",\"customer_defaults\":{\"limits\":%s}}", org,
                 row, lim);
        fx_org_create(c, body);
        key_for(c, s, "{\"name\":\"k\"}");
        snprintf(s->scope_id, sizeof(s->scope_id), "cust-a");
        s->customer_header = "cust-a";
        /* cust-b: an override of the same (metric, window) with a smaller max wins. */
        subject *o = &subs[1];
        limits_json(lim, sizeof(lim), k, 1);
        snprintf(body, sizeof(body), "{\"limits\":%s}", lim);
        fx_customer_put(c, org, "cust-b", body);
        snprintf(o->key_id, sizeof(o->key_id), "%s", s->key_id);
        snprintf(o->key, sizeof(o->key), "%s", s->key);
        snprintf(o->scope_id, sizeof(o->scope_id), "cust-b");
        o->customer_user = "cust-b";
        o->n = 1;
        fx_scope_path(o->path, scope, org, o->scope_id);
        break;
    case FX_SCOPE_ORG:
        snprintf(body, sizeof(body), "{\"id\":\"%s\",\"name\":\"row %d\",\"limits\":%s}", org, row,
                 lim);
        fx_org_create(c, body);
        key_for(c, s, "{\"name\":\"k\"}");
        snprintf(s->scope_id, sizeof(s->scope_id), "%s", org);
        break;
    }
    fx_scope_path(s->path, scope, org, s->scope_id);
    return scope == FX_SCOPE_CUSTOMER ? 2 : 1;
}

int main(void)
{
    fx_init("it_limits_table");
    fx_cluster c;
    fx_opts o = {.shard_n = 2, .models = models, .model_n = 1};
    fx_cluster_start(&c, &o);
    static const fx_scope scopes[] = {FX_SCOPE_KEY, FX_SCOPE_GROUP, FX_SCOPE_CUSTOMER,
                                      FX_SCOPE_ORG};
    int row = 0;
    for (size_t si = 0; si < 4; si++) {
        for (size_t ki = 0; ki < KIND_N; ki++) {
            subject subs[2];
            int n = setup(&c, scopes[si], &kinds[ki], row++, subs);
            run_row(&c, subs, n, &kinds[ki]);
        }
    }
    fx_log("%d rows, test clock moved %lld days", row, (long long)(fx_clock_offset_s() / 86400));
    return fx_done();
}
