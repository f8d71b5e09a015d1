/*
 * it_usage.c — usage export through the real HTTP API (issue 5, docs/contracts.md
 * "Usage"): three shards, two orgs, keys with and without a group and customer,
 * two models, traffic on two days (test clock), then:
 *  - totals by org, key, group, customer, model and provider equal what the test
 *    computes from the demo's documented token counts and the configured prices,
 *    and equal the ledger counters of each key (GET key `used`) exactly;
 *  - day / hour / month series and group_by model / key, ordered, across the day
 *    boundary; from/to cut at the boundary;
 *  - CSV of a series and of the totals parsed back (RFC 4180) and compared with
 *    the JSON; raw records (JSON and CSV) oldest first with every field, limit
 *    and has_more;
 *  - every validation error is a 400 naming its parameter; a stopped shard makes
 *    both endpoints 503 ledger_unavailable;
 *  - retention (usage_retention_days 2): once the clock passes it, the first
 *    day's records are gone and the second day's remain;
 *  - raw records beyond one shard page (320 requests over two shards): complete,
 *    strictly ordered, cut exactly at `limit` with has_more.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

#define MODEL_A "m-alpha"
#define MODEL_B "m-beta"
#define SENT_MAX 16

/* Prices in USD per 1M tokens: whole nano-USD per token, so costs compare exactly. */
static const fx_model models[] = {
    {MODEL_A, "0.001", "0.002", 1000},
    {MODEL_B, "0.003", "0.005", 1000},
};

typedef struct sent {
    int key;  /* 0 = kA, 1 = kB, 2 = kO (other org) */
    int day;  /* 0 or 1 */
    int beta; /* model B */
    const char *customer;
    int64_t prompt, completion, cost;
} sent;

static sent sent_list[SENT_MAX];
static int sent_n;
static char key_id[3][64], key_sec[3][128];

static int64_t price(int beta, int completion)
{
    return beta ? (completion ? 5 : 3) : (completion ? 2 : 1);
}

/* One chat request; records what it must cost. */
static void chat(fx_cluster *c, int key, int day, int beta, const char *content, int max_tokens,
                 const char *customer, int in_body)
{
    fx_resp r;
    char body[512];
    const char *hdr[2] = {NULL, NULL};
    char h[128];
    if (customer != NULL && !in_body) {
        snprintf(h, sizeof(h), "X-Capgate-Customer: %s", customer);
        hdr[0] = h;
    }
    snprintf(body, sizeof(body),
             "{\"model\":\"%s\",\"max_tokens\":%d,%s%s%s\"messages\":[{\"role\":\"user\","
             "\"content\":\"%s\"}]}",
             beta ? MODEL_B : MODEL_A, max_tokens, in_body ? "\"user\":\"" : "",
             in_body ? customer : "", in_body ? "\"," : "", content);
    long st = fx_post(c, 0, &r, key_sec[key], "/v1/chat/completions", hdr, body);
    FX_CHECK(st == 200, "chat: %ld %s", st, r.body);
    fx_resp_free(&r);
    FX_CHECK(sent_n < SENT_MAX, "too many requests");
    sent *s = &sent_list[sent_n++];
    s->key = key;
    s->day = day;
    s->beta = beta;
    s->customer = customer;
    s->prompt = ((int64_t)strlen(content) + 3) / 4;
    s->completion = max_tokens < 16 ? max_tokens : 16;
    s->cost = s->prompt * price(beta, 0) + s->completion * price(beta, 1);
}

/* Expected totals of the requests matching the predicate. */
typedef int (*pred_fn)(const sent *s, const void *arg);
static fx_usage expect(pred_fn p, const void *arg)
{
    fx_usage u = {0};
    for (int i = 0; i < sent_n; i++) {
        if (p(&sent_list[i], arg)) {
            u.requests++;
            u.prompt_tokens += sent_list[i].prompt;
            u.completion_tokens += sent_list[i].completion;
            u.cost += sent_list[i].cost;
        }
    }
    return u;
}

static int p_acme(const sent *s, const void *a)
{
    (void)a;
    return s->key != 2;
}
static int p_key(const sent *s, const void *a)
{
    return s->key == *(const int *)a;
}
static int p_customer(const sent *s, const void *a)
{
    return s->customer != NULL && strcmp(s->customer, a) == 0;
}
static int p_beta(const sent *s, const void *a)
{
    (void)a;
    return s->key != 2 && s->beta;
}
static int p_day(const sent *s, const void *a)
{
    return s->key != 2 && s->day == *(const int *)a;
}
static int p_day_model(const sent *s, const void *a)
{
    const int *dm = a;
    return s->key != 2 && s->day == dm[0] && s->beta == dm[1];
}

static void check_usage(fx_usage got, fx_usage want, const char *what)
{
    FX_CHECK(got.requests == want.requests && got.prompt_tokens == want.prompt_tokens &&
                 got.completion_tokens == want.completion_tokens && got.cost == want.cost,
             "%s: got %lld/%lld/%lld/%lld want %lld/%lld/%lld/%lld", what, (long long)got.requests,
             (long long)got.prompt_tokens, (long long)got.completion_tokens, (long long)got.cost,
             (long long)want.requests, (long long)want.prompt_tokens,
             (long long)want.completion_tokens, (long long)want.cost);
}

static int64_t num(const cJSON *o, const char *f)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, f);
    if (cJSON_IsString(v)) {
        return fx_usd(v->valuestring);
    }
    FX_CHECK(cJSON_IsNumber(v), "field %s missing", f);
    return (int64_t)v->valuedouble;
}

static fx_usage point_usage(const cJSON *p)
{
    fx_usage u = {num(p, "requests"), num(p, "prompt_tokens"), num(p, "completion_tokens"),
                  num(p, "cost")};
    return u;
}

static const char *str(const cJSON *o, const char *f)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, f);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- a small RFC 4180 reader: rows of fields ---- */

#define CSV_ROWS 64
#define CSV_COLS 16
typedef struct csv {
    int rows;
    int cols[CSV_ROWS];
    char f[CSV_ROWS][CSV_COLS][96];
} csv;

static void csv_parse(const char *s, csv *out)
{
    memset(out, 0, sizeof(*out));
    int row = 0, col = 0;
    size_t n = 0;
    while (*s != '\0') {
        FX_CHECK(row < CSV_ROWS && col < CSV_COLS, "CSV too large");
        char *dst = out->f[row][col];
        if (*s == '"') {
            for (s++;; s++) {
                FX_CHECK(*s != '\0', "unterminated quoted CSV field");
                if (*s == '"' && s[1] == '"') {
                    s++;
                } else if (*s == '"') {
                    s++;
                    break;
                }
                FX_CHECK(n + 1 < sizeof(out->f[0][0]), "CSV field too long");
                dst[n++] = *s;
            }
        } else {
            while (*s != '\0' && *s != ',' && *s != '\r' && *s != '\n') {
                FX_CHECK(*s != '"', "bare quote inside a CSV field");
                FX_CHECK(n + 1 < sizeof(out->f[0][0]), "CSV field too long");
                dst[n++] = *s++;
            }
        }
        dst[n] = '\0';
        n = 0;
        if (*s == ',') {
            s++;
            col++;
            continue;
        }
        FX_CHECK(s[0] == '\r' && s[1] == '\n', "CSV rows must end in CRLF");
        s += 2;
        out->cols[row] = col + 1;
        row++;
        col = 0;
    }
    out->rows = row;
}

/* ---- requests ---- */

static cJSON *get(fx_cluster *c, const char *path)
{
    return fx_admin_expect(c, 200, "GET", path, NULL);
}

static void expect_400(fx_cluster *c, const char *query, const char *param)
{
    fx_resp r;
    long st = fx_admin(c, &r, "GET", query, NULL);
    const char *code = fx_resp_error_code(&r);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(r.json, "error");
    const char *msg = str(e, "message");
    size_t pl = strlen(param);
    FX_CHECK(st == 400 && strcmp(code, "invalid_request") == 0 && msg != NULL &&
                 strncmp(msg, param, pl) == 0 && msg[pl] == ':',
             "%s -> %ld %s (want 400 naming %s)", query, st, r.body, param);
    fx_resp_free(&r);
}

static void check_validation(fx_cluster *c)
{
    static const char *const cases[][2] = {
        {"/admin/v1/usage", "org"},
        {"/admin/v1/usage?org=", "org"},
        {"/admin/v1/usage?org=Bad!", "org"},
        {"/admin/v1/usage?org=acme&key=K%20x", "key"},
        {"/admin/v1/usage?org=acme&group=a/b", "group"},
        {"/admin/v1/usage?org=acme&customer=a%20b", "customer"},
        {"/admin/v1/usage?org=acme&model=%01x", "model"},
        {"/admin/v1/usage?org=acme&provider=pppppppppppppppppppppppppppppppppp", "provider"},
        {"/admin/v1/usage?org=acme&from=yesterday", "from"},
        {"/admin/v1/usage?org=acme&to=2026-13-01", "to"},
        {"/admin/v1/usage?org=acme&from=2026-02-01&to=2026-01-01", "from"},
        {"/admin/v1/usage?org=acme&granularity=week", "granularity"},
        {"/admin/v1/usage?org=acme&group_by=color", "group_by"},
        {"/admin/v1/usage?org=acme&format=xml", "format"},
        {"/admin/v1/usage?org=acme&limit=5", "limit"},
        {"/admin/v1/usage?org=acme&bogus=1", "bogus"},
        {"/admin/v1/usage?org=acme&org=acme", "org"},
        {"/admin/v1/usage/records?org=acme&limit=0", "limit"},
        {"/admin/v1/usage/records?org=acme&limit=100001", "limit"},
        {"/admin/v1/usage/records?org=acme&limit=ten", "limit"},
        {"/admin/v1/usage/records?org=acme&granularity=day", "granularity"},
        {"/admin/v1/usage/records?org=acme&group_by=key", "group_by"},
        {"/admin/v1/usage/records?org=acme&format=pdf", "format"},
        {"/admin/v1/usage/records?key=k_1", "org"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        expect_400(c, cases[i][0], cases[i][1]);
    }
}

/* Totals for a query equal expectations. */
static void check_totals(fx_cluster *c, const char *query, fx_usage want)
{
    check_usage(fx_usage_totals(c, query), want, query);
}

static void check_series(fx_cluster *c, int64_t day0, int64_t day1)
{
    char path[512];
    int d0 = 0, d1 = 1;
    /* Day series: two points, day starts, ends a day later, requests per day. */
    cJSON *j = get(c, "/admin/v1/usage?org=acme&granularity=day");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "series");
    FX_CHECK(cJSON_GetArraySize(s) == 2, "day series: %d points", cJSON_GetArraySize(s));
    FX_CHECK_EQ_STR(str(j, "granularity"), "day");
    FX_CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "group_by")), "group_by not null");
    const cJSON *p0 = cJSON_GetArrayItem(s, 0), *p1 = cJSON_GetArrayItem(s, 1);
    FX_CHECK(fx_time_parse(str(p0, "start")) == day0 && fx_time_parse(str(p0, "end")) == day1,
             "day 0 period %s..%s", str(p0, "start"), str(p0, "end"));
    FX_CHECK(fx_time_parse(str(p1, "start")) == day1 &&
                 fx_time_parse(str(p1, "end")) == day1 + 86400,
             "day 1 period %s..%s", str(p1, "start"), str(p1, "end"));
    check_usage(point_usage(p0), expect(p_day, &d0), "day 0");
    check_usage(point_usage(p1), expect(p_day, &d1), "day 1");
    check_usage(point_usage(j), expect(p_acme, NULL), "day series totals");
    cJSON_Delete(j);

    /* Day x model: ordered by start then value. */
    j = get(c, "/admin/v1/usage?org=acme&granularity=day&group_by=model");
    s = cJSON_GetObjectItemCaseSensitive(j, "series");
    FX_CHECK(cJSON_GetArraySize(s) == 4, "day x model: %d points", cJSON_GetArraySize(s));
    for (int i = 0; i < 4; i++) {
        const cJSON *p = cJSON_GetArrayItem(s, i);
        int dm[2] = {i / 2, i % 2};
        FX_CHECK(fx_time_parse(str(p, "start")) == (dm[0] ? day1 : day0), "point %d start", i);
        FX_CHECK_EQ_STR(str(p, "model"), dm[1] ? MODEL_B : MODEL_A);
        check_usage(point_usage(p), expect(p_day_model, dm), "day x model point");
    }
    cJSON_Delete(j);

    /* By key without granularity: start/end null, one point per key of the org. */
    j = get(c, "/admin/v1/usage?org=acme&group_by=key");
    s = cJSON_GetObjectItemCaseSensitive(j, "series");
    FX_CHECK(cJSON_GetArraySize(s) == 2, "by key: %d points", cJSON_GetArraySize(s));
    for (int i = 0; i < 2; i++) {
        const cJSON *p = cJSON_GetArrayItem(s, i);
        int k = strcmp(str(p, "key"), key_id[0]) == 0 ? 0 : 1;
        FX_CHECK(strcmp(str(p, "key"), key_id[k]) == 0, "by key: unknown key %s", str(p, "key"));
        FX_CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(p, "start")), "start not null");
        check_usage(point_usage(p), expect(p_key, &k), "by key point");
    }
    FX_CHECK(strcmp(str(cJSON_GetArrayItem(s, 0), "key"), str(cJSON_GetArrayItem(s, 1), "key")) < 0,
             "by key: not ordered");
    cJSON_Delete(j);

    /* Hour and month: periods aligned, nothing lost. */
    static const char *const grans[] = {"hour", "month"};
    for (int g = 0; g < 2; g++) {
        snprintf(path, sizeof(path), "/admin/v1/usage?org=acme&granularity=%s", grans[g]);
        j = get(c, path);
        s = cJSON_GetObjectItemCaseSensitive(j, "series");
        int64_t req = 0, prev = -1;
        const cJSON *p;
        cJSON_ArrayForEach(p, s)
        {
            int64_t st = fx_time_parse(str(p, "start")), en = fx_time_parse(str(p, "end"));
            FX_CHECK(st > prev, "%s series not ordered", grans[g]);
            prev = st;
            if (g == 0) {
                FX_CHECK(st % 3600 == 0 && en == st + 3600, "hour period %s", str(p, "start"));
            } else {
                FX_CHECK(strstr(str(p, "start"), "-01T00:00:00Z") != NULL && en > st + 27 * 86400,
                         "month period %s..%s", str(p, "start"), str(p, "end"));
            }
            req += num(p, "requests");
        }
        FX_CHECK(req == expect(p_acme, NULL).requests, "%s series: %lld requests", grans[g],
                 (long long)req);
        cJSON_Delete(j);
    }

    /* from / to cut at the day boundary ([from, to)). */
    char b[32];
    fx_time_format(day1, b);
    snprintf(path, sizeof(path), "org=acme&from=%s", b);
    check_totals(c, path, expect(p_day, &d1));
    snprintf(path, sizeof(path), "org=acme&to=%s", b);
    check_totals(c, path, expect(p_day, &d0));
}

static void check_csv(fx_cluster *c)
{
    fx_resp r;
    csv t;
    long st = fx_admin(c, &r, "GET",
                       "/admin/v1/usage?org=acme&granularity=day&group_by=model"
                       "&format=csv",
                       NULL);
    FX_CHECK(st == 200, "csv: %ld %s", st, r.body);
    const char *ct = fx_resp_header(&r, "content-type");
    const char *cd = fx_resp_header(&r, "content-disposition");
    FX_CHECK(ct != NULL && strncmp(ct, "text/csv", 8) == 0, "content-type %s", ct ? ct : "-");
    FX_CHECK(cd != NULL && strncmp(cd, "attachment", 10) == 0, "content-disposition missing");
    csv_parse(r.body, &t);
    fx_resp_free(&r);
    static const char *const hdr[] = {
        "period_start",  "period_end",        "org",     "model", "requests",
        "prompt_tokens", "completion_tokens", "cost_usd"};
    FX_CHECK(t.rows == 5 && t.cols[0] == 8, "csv: %d rows, %d cols", t.rows, t.cols[0]);
    for (int i = 0; i < 8; i++) {
        FX_CHECK_EQ_STR(t.f[0][i], hdr[i]);
    }
    cJSON *j = get(c, "/admin/v1/usage?org=acme&granularity=day&group_by=model");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "series");
    for (int i = 1; i < t.rows; i++) {
        const cJSON *p = cJSON_GetArrayItem(s, i - 1);
        FX_CHECK(t.cols[i] == 8, "csv row %d: %d fields", i, t.cols[i]);
        FX_CHECK_EQ_STR(t.f[i][0], str(p, "start"));
        FX_CHECK_EQ_STR(t.f[i][1], str(p, "end"));
        FX_CHECK_EQ_STR(t.f[i][2], "acme");
        FX_CHECK_EQ_STR(t.f[i][3], str(p, "model"));
        fx_usage u = {atoll(t.f[i][4]), atoll(t.f[i][5]), atoll(t.f[i][6]), fx_usd(t.f[i][7])};
        check_usage(u, point_usage(p), "csv row");
    }
    cJSON_Delete(j);

    /* The totals as one row, from/to as its period. */
    st = fx_admin(c, &r, "GET", "/admin/v1/usage?org=acme&format=csv&from=2020-01-01", NULL);
    FX_CHECK(st == 200, "csv totals: %ld", st);
    csv_parse(r.body, &t);
    fx_resp_free(&r);
    FX_CHECK(t.rows == 2 && t.cols[1] == 7, "csv totals: %d rows", t.rows);
    FX_CHECK_EQ_STR(t.f[0][3], "requests");
    FX_CHECK_EQ_STR(t.f[1][0], "2020-01-01T00:00:00Z");
    fx_usage u = {atoll(t.f[1][3]), atoll(t.f[1][4]), atoll(t.f[1][5]), fx_usd(t.f[1][6])};
    check_usage(u, expect(p_acme, NULL), "csv totals row");
}

static void check_records(fx_cluster *c)
{
    cJSON *j = get(c, "/admin/v1/usage/records?org=acme");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "data");
    fx_usage want = expect(p_acme, NULL), got = {0};
    FX_CHECK(cJSON_GetArraySize(d) == want.requests, "records: %d", cJSON_GetArraySize(d));
    FX_CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(j, "has_more")), "has_more");
    const cJSON *rec;
    const char *prev = "";
    int cust1 = 0, cust2 = 0;
    cJSON_ArrayForEach(rec, d)
    {
        FX_CHECK(strcmp(str(rec, "time"), prev) >= 0, "records not oldest first");
        prev = str(rec, "time");
        FX_CHECK_EQ_STR(str(rec, "org"), "acme");
        FX_CHECK_EQ_STR(str(rec, "provider"), "demo");
        FX_CHECK(num(rec, "status") == 200 && num(rec, "latency_ms") >= 0, "status/latency");
        FX_CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(rec, "estimated")), "estimated");
        FX_CHECK(str(rec, "request_id") != NULL && str(rec, "request_id")[0] != '\0', "rid");
        int k = strcmp(str(rec, "key"), key_id[0]) == 0 ? 0 : 1;
        FX_CHECK_EQ_STR(str(rec, "key"), key_id[k]);
        if (k == 0) {
            FX_CHECK_EQ_STR(str(rec, "group"), "team-a");
        } else {
            FX_CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(rec, "group")), "group");
            const char *cu = str(rec, "customer");
            cust1 += cu != NULL && strcmp(cu, "cust-1") == 0;
            cust2 += cu != NULL && strcmp(cu, "cust-2") == 0;
        }
        got.requests++;
        got.prompt_tokens += num(rec, "prompt_tokens");
        got.completion_tokens += num(rec, "completion_tokens");
        got.cost += num(rec, "cost");
    }
    check_usage(got, want, "records summed");
    FX_CHECK(cust1 == 1 && cust2 == 2, "customers in records: %d %d", cust1, cust2);

    /* limit: the oldest N, and has_more. */
    cJSON *k = get(c, "/admin/v1/usage/records?org=acme&limit=3");
    const cJSON *kd = cJSON_GetObjectItemCaseSensitive(k, "data");
    FX_CHECK(cJSON_GetArraySize(kd) == 3, "limit 3: %d", cJSON_GetArraySize(kd));
    FX_CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(k, "has_more")), "has_more");
    for (int i = 0; i < 3; i++) {
        FX_CHECK_EQ_STR(str(cJSON_GetArrayItem(kd, i), "request_id"),
                        str(cJSON_GetArrayItem(d, i), "request_id"));
    }
    cJSON_Delete(k);

    /* CSV: header and one row per record, the same values. */
    fx_resp r;
    csv t;
    long st = fx_admin(c, &r, "GET", "/admin/v1/usage/records?org=acme&format=csv", NULL);
    FX_CHECK(st == 200, "records csv: %ld", st);
    FX_CHECK(strncmp(fx_resp_header(&r, "content-type"), "text/csv", 8) == 0, "csv type");
    csv_parse(r.body, &t);
    fx_resp_free(&r);
    FX_CHECK(t.rows == want.requests + 1 && t.cols[0] == 14, "records csv: %d rows %d cols", t.rows,
             t.cols[0]);
    FX_CHECK_EQ_STR(t.f[0][0], "time");
    FX_CHECK_EQ_STR(t.f[0][10], "cost_usd");
    for (int i = 1; i < t.rows; i++) {
        const cJSON *x = cJSON_GetArrayItem(d, i - 1);
        FX_CHECK(t.cols[i] == 14, "records csv row %d", i);
        FX_CHECK_EQ_STR(t.f[i][1], str(x, "request_id"));
        FX_CHECK_EQ_STR(t.f[i][3], str(x, "key"));
        FX_CHECK(fx_usd(t.f[i][10]) == num(x, "cost"), "csv cost");
        FX_CHECK_EQ_STR(t.f[i][13], "false");
    }
    cJSON_Delete(j);

    /* A filter on records: the customer-bound requests of kB. */
    char path[256];
    snprintf(path, sizeof(path), "/admin/v1/usage/records?org=acme&key=%s&customer=cust-2",
             key_id[1]);
    j = get(c, path);
    FX_CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "data")) == 2,
             "records of cust-2");
    cJSON_Delete(j);
}

/* Records past one shard page (GW_USAGE_PAGE = 256): two keys on different shards, 320
 * requests interleaved; the merged list is complete, strictly ordered and cut exactly at
 * `limit`. */
static void check_records_paging(fx_cluster *c)
{
    char ids[2][64], secs[2][128], path[256];
    fx_org_create(c, "{\"id\":\"bulk\",\"name\":\"Bulk\"}");
    fx_key_create(c, "bulk", "{\"name\":\"a\"}", ids[0], secs[0]);
    for (int tries = 0;; tries++) {
        FX_CHECK(tries < 32, "no key on another shard");
        fx_key_create(c, "bulk", "{\"name\":\"b\"}", ids[1], secs[1]);
        if (fx_shard_of(c, "key:%s", ids[1]) != fx_shard_of(c, "key:%s", ids[0])) {
            break;
        }
    }
    const int total = 320;
    for (int i = 0; i < total; i++) {
        fx_resp r;
        long st = fx_chat(c, 0, &r, secs[i % 8 == 7],
                          "{\"model\":\"" MODEL_A "\",\"max_tokens\":1,\"messages\":[{\"role\":"
                          "\"user\",\"content\":\"x\"}]}");
        FX_CHECK(st == 200, "bulk chat %d: %ld", i, st);
        fx_resp_free(&r);
    }
    FX_CHECK(fx_usage_totals_settled(c, "org=bulk", total).requests == total, "bulk settled");
    cJSON *all = get(c, "/admin/v1/usage/records?org=bulk&limit=1000");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(all, "data");
    FX_CHECK(cJSON_GetArraySize(d) == total, "bulk records: %d", cJSON_GetArraySize(d));
    FX_CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(all, "has_more")), "bulk has_more");
    int on_b = 0;
    for (int i = 0; i < total; i++) {
        const cJSON *x = cJSON_GetArrayItem(d, i);
        on_b += strcmp(str(x, "key"), ids[1]) == 0;
        if (i > 0) {
            const cJSON *w = cJSON_GetArrayItem(d, i - 1);
            int t = strcmp(str(w, "time"), str(x, "time"));
            FX_CHECK(t < 0 || (t == 0 && strcmp(str(w, "request_id"), str(x, "request_id")) < 0),
                     "bulk records out of order at %d", i);
        }
    }
    FX_CHECK(on_b == total / 8, "bulk records of key b: %d", on_b);
    snprintf(path, sizeof(path), "/admin/v1/usage/records?org=bulk&limit=%d", total - 20);
    cJSON *cut = get(c, path);
    const cJSON *cd = cJSON_GetObjectItemCaseSensitive(cut, "data");
    FX_CHECK(cJSON_GetArraySize(cd) == total - 20, "cut: %d", cJSON_GetArraySize(cd));
    FX_CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cut, "has_more")), "cut has_more");
    FX_CHECK_EQ_STR(str(cJSON_GetArrayItem(cd, total - 21), "request_id"),
                    str(cJSON_GetArrayItem(d, total - 21), "request_id"));
    cJSON_Delete(cut);
    cJSON_Delete(all);
}

/* GET key limit i's used, after every reservation settled. */
static int64_t key_used(fx_cluster *c, int k, const char *metric)
{
    char path[256];
    fx_scope_path(path, FX_SCOPE_KEY, "acme", key_id[k]);
    fx_limit l = fx_scope_limit_idle(c, path, metric, "lifetime");
    FX_CHECK(l.reserved == 0, "key %d %s still reserved", k, metric);
    return l.used;
}

int main(void)
{
    fx_init("it_usage");
    fx_cluster c;
    fx_opts o = {
        .shard_n = 3, .models = models, .model_n = 2, .extra_config = "usage_retention_days 2"};
    fx_cluster_start(&c, &o);
    static const char lim[] =
        "\"limits\":[{\"metric\":\"cost\",\"window\":\"lifetime\",\"max\":100},"
        "{\"metric\":\"tokens\",\"window\":\"lifetime\",\"max\":100000000}]";
    char body[512];
    fx_org_create(&c, "{\"id\":\"acme\",\"name\":\"Acme\"}");
    fx_org_create(&c, "{\"id\":\"other\",\"name\":\"Other\"}");
    fx_group_create(&c, "acme", "{\"id\":\"team-a\",\"name\":\"Team A\"}");
    snprintf(body, sizeof(body), "{\"name\":\"a\",\"group\":\"team-a\",%s}", lim);
    fx_key_create(&c, "acme", body, key_id[0], key_sec[0]);
    snprintf(body, sizeof(body), "{\"name\":\"b\",%s}", lim);
    fx_key_create(&c, "acme", body, key_id[1], key_sec[1]);
    fx_key_create(&c, "other", "{\"name\":\"o\"}", key_id[2], key_sec[2]);

    /* Nothing yet: zero totals, empty series and records. */
    check_totals(&c, "org=acme", (fx_usage){0});
    cJSON *j = get(&c, "/admin/v1/usage?org=acme&granularity=day");
    FX_CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "series")) == 0, "empty");
    cJSON_Delete(j);
    check_validation(&c);

    /* Day 0. */
    char nd[32];
    fx_next_day(nd);
    int64_t day1 = fx_time_parse(nd), day0 = day1 - 86400;
    chat(&c, 0, 0, 0, "hello world!", 5, NULL, 0);
    chat(&c, 0, 0, 0, "hello again, world", 9, NULL, 0);
    chat(&c, 0, 0, 1, "abcdefghij", 7, NULL, 0);
    chat(&c, 1, 0, 0, "hi", 3, "cust-1", 0);
    chat(&c, 2, 0, 0, "other org", 4, NULL, 0);
    fx_usage_totals_settled(&c, "org=acme", 4);

    /* Day 1, an hour after midnight. */
    fx_clock_advance(day1 - fx_clock_now_s() + 3600);
    chat(&c, 0, 1, 0, "tomorrow", 2, NULL, 0);
    chat(&c, 1, 1, 1, "a longer prompt for beta", 11, "cust-2", 1);
    chat(&c, 1, 1, 1, "x", 20, "cust-2", 1);
    fx_usage all = fx_usage_totals_settled(&c, "org=acme", expect(p_acme, NULL).requests);
    check_usage(all, expect(p_acme, NULL), "org totals");

    /* Totals per filter, and equal to the ledger counters of each key. */
    char q[256];
    for (int k = 0; k < 2; k++) {
        fx_usage want = expect(p_key, &k);
        snprintf(q, sizeof(q), "org=acme&key=%s", key_id[k]);
        check_totals(&c, q, want);
        FX_CHECK(key_used(&c, k, "cost") == want.cost, "key %d cost counter %lld != usage %lld", k,
                 (long long)key_used(&c, k, "cost"), (long long)want.cost);
        FX_CHECK(key_used(&c, k, "tokens") == want.prompt_tokens + want.completion_tokens,
                 "key %d tokens counter", k);
    }
    int k0 = 0;
    check_totals(&c, "org=acme&group=team-a", expect(p_key, &k0));
    check_totals(&c, "org=acme&customer=cust-1", expect(p_customer, "cust-1"));
    check_totals(&c, "org=acme&model=" MODEL_B, expect(p_beta, NULL));
    check_totals(&c, "org=acme&provider=demo", expect(p_acme, NULL));
    check_totals(&c, "org=acme&provider=nope", (fx_usage){0});
    int k2 = 2;
    check_totals(&c, "org=other", expect(p_key, &k2));

    check_series(&c, day0, day1);
    check_csv(&c);
    check_records(&c);

    /* A shard down: no partial answer. */
    fx_proc_stop(&c.ledgers[1], SIGTERM);
    static const char *const paths[] = {"/admin/v1/usage?org=acme",
                                        "/admin/v1/usage/records?org=acme"};
    for (int i = 0; i < 2; i++) {
        fx_resp r;
        long st = fx_admin(&c, &r, "GET", paths[i], NULL);
        FX_CHECK(st == 503 && strcmp(fx_resp_error_code(&r), "ledger_unavailable") == 0,
                 "%s with a shard down: %ld %s", paths[i], st, r.body);
        fx_resp_free(&r);
    }
    fx_proc_start(&c, &c.ledgers[1]);
    fx_wait_ready(&c);
    check_totals(&c, "org=acme", all);

    /* Retention: 2 days. Move to 10 minutes short of two days after day 1's traffic:
     * day 0's records are past it, day 1's are not. */
    fx_clock_advance(2 * 86400 - 600);
    int d1 = 1;
    check_totals(&c, "org=acme", expect(p_day, &d1));
    j = get(&c, "/admin/v1/usage/records?org=acme");
    FX_CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "data")) ==
                 expect(p_day, &d1).requests,
             "records after retention");
    cJSON_Delete(j);
    check_records_paging(&c);
    return fx_done();
}
