/*
 * gw_admin_usage.c — usage in the admin API: totals, time series and raw
 * records, as JSON or CSV (docs/contracts.md "Issue 5", "Usage").
 *
 *   GET /admin/v1/usage?org=&key=&group=&customer=&model=&provider=&from=&to=
 *       &granularity=hour|day|month&group_by=key|model|provider|customer|group
 *       &format=json|csv
 *   GET /admin/v1/usage/records?<same filters>&limit=N&format=json|csv
 *
 * Usage records live on the shard of their key, so every query goes to every
 * shard (scatter-gather). If any shard fails before the answer has started, it
 * is 503 ledger_unavailable: a partial sum would be wrong money. A shard that
 * refuses a range as too wide (CG_ERR_TOOBIG: over LEDGER_ROLLUP_SCAN_MAX hourly
 * rollup rows, over LEDGER_USAGE_SCAN_MAX raw records in a partial end hour, or
 * over PROTO_SERIES_MAX points) is a 400 naming `from`.
 *
 * Series: each shard answers USAGE_SERIES with its points (period start, value,
 * totals); the points of all shards are concatenated, sorted and summed by
 * (start, value). The totals are the sum of every point. Periods are UTC
 * calendar hours/days/months; periods without usage are omitted. The answer is
 * bounded by GW_USAGE_POINTS_MAX points.
 *
 * Records: a k-way merge by (time, request id) over pages of at most
 * GW_USAGE_PAGE records per shard, fetched as the merge empties them,
 * and streamed (chunked) with back-pressure: memory is one page per shard plus
 * GW_USAGE_OUT_CHUNK of output, whatever `limit`. The first page of every shard
 * arrives before the status line is sent, so an unreachable shard is still a
 * 503; a shard failing later truncates the body (the connection is dropped
 * without the terminating chunk, which every HTTP client reports as an error).
 *
 * Query values are percent-decoded; an empty value means "any" / the default
 * (org is required). from/to are RFC 3339 times or YYYY-MM-DD dates (UTC
 * midnight); from defaults to the epoch, to to now, and the range is [from, to).
 * Every bad value is a 400 whose message starts with the parameter's name.
 *
 * CSV follows RFC 4180: CRLF line ends, a header row, fields quoted (with
 * doubled quotes) when they hold a comma, a quote, CR or LF; times RFC 3339,
 * money as decimal strings.
 */
#include "gw_admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_clock.h"
#include "cg_log.h"
#include "cg_money.h"
#include "cg_period.h"

#define GW_ADMIN_QUERY_MAX 2048     /* bytes of the query string */
#define GW_USAGE_POINTS_MAX 10000   /* series points in one answer */
#define GW_USAGE_LIMIT_DEFAULT 1000 /* records: default limit */
#define GW_USAGE_PAGE 256 /* records: per shard and round trip (<= PROTO_USAGE_RECORDS_MAX) */
#define GW_USAGE_LIMIT_MAX 100000       /* records: largest limit */
#define GW_USAGE_OUT_CHUNK (64u << 10)  /* records: output buffered before a write */
#define GW_USAGE_PENDING_MAX (1u << 20) /* records: unwritten bytes before waiting to drain */
#define GW_USAGE_ROW_MAX 2048           /* bytes of one record row (JSON or CSV) */
#define GW_USAGE_HOUR_MS (3600LL * 1000)
#define GW_USAGE_DAY_MS (24 * GW_USAGE_HOUR_MS)

typedef enum gw_uparam {
    GW_UP_ORG,
    GW_UP_KEY,
    GW_UP_GROUP,
    GW_UP_CUSTOMER,
    GW_UP_MODEL,
    GW_UP_PROVIDER,
    GW_UP_FROM,
    GW_UP_TO,
    GW_UP_GRANULARITY,
    GW_UP_GROUP_BY,
    GW_UP_FORMAT,
    GW_UP_LIMIT,
    GW_UP_COUNT_
} gw_uparam;

static const char *const gw_uparam_names[GW_UP_COUNT_] = {
    "org",  "key", "group",       "customer", "model",  "provider",
    "from", "to",  "granularity", "group_by", "format", "limit",
};

static const char *const gw_gran_names[] = {NULL, "hour", "day", "month"};
static const char *const gw_by_names[] = {NULL, "key", "model", "provider", "customer", "group"};

/* A parsed query of either endpoint. */
typedef struct gw_uq {
    proto_usage_filter f; /* to_ms resolved (never 0) */
    uint8_t gran;         /* proto_usage_gran */
    uint8_t by;           /* proto_usage_by */
    uint8_t csv;
    uint8_t records; /* the /usage/records endpoint */
    uint32_t limit;  /* records only */
} gw_uq;

typedef struct gw_ujob gw_ujob;

/* One shard's state in the records merge (also the ledger callback's ud of its pages). */
typedef struct gw_ushard {
    gw_ujob *j;
    uint16_t idx;      /* shard index */
    proto_usage *page; /* GW_USAGE_PAGE entries */
    uint32_t n;
    uint32_t pos;
    uint8_t more;     /* the shard has records after its page */
    int64_t after_ts; /* cursor: the last record received */
    char after_rid[PROTO_REQID_MAX + 1];
} gw_ushard;

/* A usage request in progress; owns x until it ends. */
struct gw_ujob {
    gw_admin_ctx *x;
    gw_uq q;
    uint16_t shard_n;
    uint16_t left;          /* replies still to come in this round */
    cg_err transport;       /* first transport failure */
    uint16_t status;        /* first shard status other than OK */
    proto_usage_point *pts; /* series: every shard's points */
    uint32_t pt_n;
    uint32_t pt_cap;
    gw_ushard *sh; /* records: shard_n entries */
    uint32_t emitted;
    uint8_t streaming; /* the status line is out */
    uint8_t draining;  /* waiting for the drain callback */
    char *out;         /* GW_USAGE_OUT_CHUNK + GW_USAGE_ROW_MAX */
    size_t out_n;
};

/* ---- the query ---- */

static cg_err gw_usage_id(const char *name, const char *v, int (*ok)(const char *, size_t),
                          const char *charset, char *out, char *err, size_t errcap)
{
    if (!ok(v, strlen(v))) {
        snprintf(err, errcap, "%s: must match %s{1,%d}", name, charset, PROTO_ID_MAX);
        return CG_ERR_INVAL;
    }
    snprintf(out, PROTO_ID_MAX + 1, "%s", v);
    return CG_ERR_OK;
}

/* A printable name of at most max bytes (model, provider). */
static cg_err gw_usage_name(const char *name, const char *v, size_t max, char *out, char *err,
                            size_t errcap)
{
    size_t n = strlen(v);
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) {
            n = max + 1;
        }
    }
    if (n > max) {
        snprintf(err, errcap, "%s: at most %zu printable bytes", name, max);
        return CG_ERR_INVAL;
    }
    memcpy(out, v, strlen(v) + 1);
    return CG_ERR_OK;
}

/* Index of v in names[1..n), or 0. */
static uint8_t gw_usage_enum(const char *const *names, size_t n, const char *v)
{
    for (size_t i = 1; i < n; i++) {
        if (strcmp(names[i], v) == 0) {
            return (uint8_t)i;
        }
    }
    return 0;
}

static cg_err gw_usage_limit(const char *v, uint32_t *out, char *err, size_t errcap)
{
    char *end = NULL;
    unsigned long long n = strtoull(v, &end, 10);
    if (v[0] < '0' || v[0] > '9' || *end != '\0' || n < 1 || n > GW_USAGE_LIMIT_MAX) {
        snprintf(err, errcap, "limit: must be an integer 1..%d", GW_USAGE_LIMIT_MAX);
        return CG_ERR_INVAL;
    }
    *out = (uint32_t)n;
    return CG_ERR_OK;
}

/* One parameter p with its decoded, non-empty value v into q. */
static cg_err gw_usage_param(gw_uparam p, const char *v, gw_uq *q, char *err, size_t errcap)
{
    const char *name = gw_uparam_names[p];
    proto_usage_filter *f = &q->f;
    switch (p) {
    case GW_UP_ORG:
        return gw_usage_id(name, v, gw_admin_id_ok, "[a-z0-9_-]", f->org, err, errcap);
    case GW_UP_KEY:
        return gw_usage_id(name, v, gw_admin_id_ok, "[a-z0-9_-]", f->key_id, err, errcap);
    case GW_UP_GROUP:
        return gw_usage_id(name, v, gw_admin_group_id_ok, "[A-Za-z0-9_.-]", f->group, err, errcap);
    case GW_UP_CUSTOMER:
        return gw_usage_id(name, v, gw_admin_customer_id_ok, "[A-Za-z0-9_.:@-]", f->customer, err,
                           errcap);
    case GW_UP_MODEL:
        return gw_usage_name(name, v, PROTO_MODEL_MAX, f->model, err, errcap);
    case GW_UP_PROVIDER:
        return gw_usage_name(name, v, PROTO_PROVIDER_MAX, f->provider, err, errcap);
    case GW_UP_FROM:
    case GW_UP_TO: {
        int64_t *t = p == GW_UP_FROM ? &f->from_ms : &f->to_ms;
        if (cg_time_parse(v, t) != CG_ERR_OK || *t < 0) {
            snprintf(err, errcap, "%s: must be an RFC 3339 time or a date YYYY-MM-DD", name);
            return CG_ERR_INVAL;
        }
        return CG_ERR_OK;
    }
    case GW_UP_GRANULARITY:
        if ((q->gran = gw_usage_enum(gw_gran_names, 4, v)) == 0) {
            snprintf(err, errcap, "granularity: must be hour, day or month");
            return CG_ERR_INVAL;
        }
        return CG_ERR_OK;
    case GW_UP_GROUP_BY:
        if ((q->by = gw_usage_enum(gw_by_names, 6, v)) == 0) {
            snprintf(err, errcap, "group_by: must be key, model, provider, customer or group");
            return CG_ERR_INVAL;
        }
        return CG_ERR_OK;
    case GW_UP_FORMAT:
        if (strcmp(v, "json") != 0 && strcmp(v, "csv") != 0) {
            snprintf(err, errcap, "format: must be json or csv");
            return CG_ERR_INVAL;
        }
        q->csv = v[0] == 'c';
        return CG_ERR_OK;
    default:
        return gw_usage_limit(v, &q->limit, err, errcap);
    }
}

/* Is parameter p one of this endpoint's? */
static int gw_usage_param_ok(const gw_uq *q, int p)
{
    if (q->records) {
        return p != GW_UP_GRANULARITY && p != GW_UP_GROUP_BY;
    }
    return p != GW_UP_LIMIT;
}

/* One "name=value" pair of the query; seen tracks names already given. */
static cg_err gw_usage_pair(const char *pair, size_t len, unsigned *seen, gw_uq *q, char *err,
                            size_t errcap)
{
    const char *eq = memchr(pair, '=', len);
    size_t nlen = eq != NULL ? (size_t)(eq - pair) : len;
    char name[32], val[GW_ADMIN_SEG_MAX + 1];
    int p;

    if (!cg_http_pct_decode(pair, nlen, 1, name, sizeof(name))) {
        snprintf(err, errcap, "query: malformed parameter name");
        return CG_ERR_INVAL;
    }
    for (p = 0; p < GW_UP_COUNT_ && strcmp(gw_uparam_names[p], name) != 0; p++) {
    }
    if (p == GW_UP_COUNT_ || !gw_usage_param_ok(q, p)) {
        snprintf(err, errcap, "%s: unknown parameter", name);
        return CG_ERR_INVAL;
    }
    if (*seen & (1u << p)) {
        snprintf(err, errcap, "%s: given twice", name);
        return CG_ERR_INVAL;
    }
    *seen |= 1u << p;
    if (eq == NULL || !cg_http_pct_decode(eq + 1, len - nlen - 1, 1, val, sizeof(val))) {
        snprintf(err, errcap, "%s: malformed or too long value", name);
        return CG_ERR_INVAL;
    }
    if (val[0] == '\0') {
        return CG_ERR_OK; /* "any" / the default */
    }
    return gw_usage_param((gw_uparam)p, val, q, err, errcap);
}

/* The whole query string into q (q->records set by the caller). */
static cg_err gw_usage_parse(const char *query, int64_t now, gw_uq *q, char *err, size_t errcap)
{
    unsigned seen = 0;
    const char *s = query;
    cg_err e;

    q->limit = GW_USAGE_LIMIT_DEFAULT;
    if (strlen(query) > GW_ADMIN_QUERY_MAX) {
        snprintf(err, errcap, "query: at most %d bytes", GW_ADMIN_QUERY_MAX);
        return CG_ERR_INVAL;
    }
    while (*s != '\0') {
        const char *amp = strchr(s, '&');
        size_t len = amp != NULL ? (size_t)(amp - s) : strlen(s);
        if (len > 0 && (e = gw_usage_pair(s, len, &seen, q, err, errcap)) != CG_ERR_OK) {
            return e;
        }
        s += len + (amp != NULL);
    }
    if (q->f.org[0] == '\0') {
        snprintf(err, errcap, "org: required");
        return CG_ERR_INVAL;
    }
    if (q->f.to_ms == 0) {
        q->f.to_ms = now;
    }
    if (q->f.from_ms >= q->f.to_ms) {
        snprintf(err, errcap, "from: must be before to");
        return CG_ERR_INVAL;
    }
    return CG_ERR_OK;
}

/* ---- shared plumbing ---- */

static void gw_usage_job_free(gw_ujob *j)
{
    if (j->sh != NULL) {
        for (uint16_t i = 0; i < j->shard_n; i++) {
            free(j->sh[i].page);
        }
    }
    free(j->sh);
    free(j->pts);
    free(j->out);
    free(j);
}

/* The job is over (nothing in flight): free it and its admin context. */
static void gw_usage_job_end(gw_ujob *j)
{
    gw_admin_ctx *x = j->x;
    if (x->c != NULL) {
        cg_http_conn_set_callbacks(x->c, NULL, NULL, NULL);
    }
    gw_usage_job_free(j);
    gw_admin_ctx_done(x);
}

/* Answer a failed round (before anything was sent). */
static void gw_usage_fail(gw_ujob *j)
{
    if (j->transport == CG_ERR_OK && j->status == CG_ERR_TOOBIG) {
        gw_admin_invalid(j->x, "from: the range holds too many usage records or series points "
                               "for one query; narrow from/to, filter, or use a coarser "
                               "granularity");
        return;
    }
    gw_admin_ledger_fail(j->x, j->transport, j->status);
}

/* Note one reply's outcome; 1 if it is a success to use. */
static int gw_usage_rep_ok(gw_ujob *j, cg_err err, const proto_rep *rep)
{
    j->x->a->pending--;
    j->left--;
    if (err != CG_ERR_OK) {
        j->transport = j->transport != CG_ERR_OK ? j->transport : err;
        return 0;
    }
    if (rep->status != CG_ERR_OK) {
        j->status = j->status != 0 ? j->status : rep->status;
        return 0;
    }
    return 1;
}

static int gw_usage_submit(gw_ujob *j, uint16_t shard, const proto_req *rq, gw_ledger_cb cb,
                           void *ud)
{
    cg_err e = gw_ledger_submit_to(j->x->a->ledger, shard, rq, cb, ud);
    if (e != CG_ERR_OK) {
        j->transport =
            j->transport != CG_ERR_OK ? j->transport : (e == CG_ERR_INVAL ? CG_ERR_INTERNAL : e);
        return 0;
    }
    j->x->a->pending++;
    j->left++;
    return 1;
}

/* Send a complete non-JSON (CSV) answer. */
static void gw_usage_send_csv(gw_admin_ctx *x, const char *body, size_t len)
{
    static const char disp[] = "Content-Disposition: attachment; filename=\"usage.csv\"\r\n";
    gw_admin_log(x, 200);
    if (x->c != NULL) {
        cg_http_respond(x->c, 200, disp, "text/csv; charset=utf-8", body, len);
        x->c = NULL;
    }
}

/* Append s to b as one CSV field (RFC 4180), with a leading comma unless first. */
static size_t gw_csv_field(char *b, size_t cap, size_t o, const char *s, int first)
{
    int quote = strpbrk(s, ",\"\r\n") != NULL;
    if (!first && o < cap) {
        b[o++] = ',';
    }
    if (quote && o < cap) {
        b[o++] = '"';
    }
    for (; *s != '\0' && o < cap; s++) {
        if (*s == '"' && o + 1 < cap) {
            b[o++] = '"';
        }
        b[o++] = *s;
    }
    if (quote && o < cap) {
        b[o++] = '"';
    }
    return o;
}

static void gw_usage_money(int64_t nusd, char *buf, size_t cap)
{
    if (cg_money_format(nusd, 2, buf, cap) == 0) {
        snprintf(buf, cap, "0");
    }
}

/* End of the UTC period of granularity g starting at start. */
static int64_t gw_usage_period_end(uint8_t g, int64_t start)
{
    int64_t y;
    unsigned m, d;
    switch (g) {
    case PROTO_GRAN_HOUR:
        return start + GW_USAGE_HOUR_MS;
    case PROTO_GRAN_DAY:
        return start + GW_USAGE_DAY_MS;
    default:
        cg_civil_from_days(start / GW_USAGE_DAY_MS, &y, &m, &d);
        return cg_days_from_civil(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1, 1) * GW_USAGE_DAY_MS;
    }
}

/* ---- series (GET /admin/v1/usage) ---- */

static int gw_point_cmp(const void *a, const void *b)
{
    const proto_usage_point *x = a, *y = b;
    if (x->start_ms != y->start_ms) {
        return x->start_ms < y->start_ms ? -1 : 1;
    }
    return strcmp(x->value, y->value);
}

static int gw_totals_add(proto_usage_totals *sum, const proto_usage_totals *t)
{
    return !__builtin_add_overflow(sum->requests, t->requests, &sum->requests) &&
           !__builtin_add_overflow(sum->prompt_tokens, t->prompt_tokens, &sum->prompt_tokens) &&
           !__builtin_add_overflow(sum->completion_tokens, t->completion_tokens,
                                   &sum->completion_tokens) &&
           !__builtin_add_overflow(sum->cost_nusd, t->cost_nusd, &sum->cost_nusd);
}

/* Sort and sum the points of every shard by (start, value); *tot = the sum of all. */
static cg_err gw_series_merge(gw_ujob *j, proto_usage_totals *tot)
{
    uint32_t n = 0;
    memset(tot, 0, sizeof(*tot));
    if (j->pt_n > 0) {
        qsort(j->pts, j->pt_n, sizeof(*j->pts), gw_point_cmp);
    }
    for (uint32_t i = 0; i < j->pt_n; i++) {
        if (!gw_totals_add(tot, &j->pts[i].totals)) {
            return CG_ERR_OVERFLOW;
        }
        if (n > 0 && gw_point_cmp(&j->pts[n - 1], &j->pts[i]) == 0) {
            if (!gw_totals_add(&j->pts[n - 1].totals, &j->pts[i].totals)) {
                return CG_ERR_OVERFLOW;
            }
        } else {
            j->pts[n++] = j->pts[i];
        }
    }
    j->pt_n = n;
    return n > GW_USAGE_POINTS_MAX ? CG_ERR_TOOBIG : CG_ERR_OK;
}

static int gw_series_add_totals(cJSON *o, const proto_usage_totals *t)
{
    return gw_admin_add(o, "requests", cJSON_CreateNumber((double)t->requests)) &&
           gw_admin_add(o, "prompt_tokens", cJSON_CreateNumber((double)t->prompt_tokens)) &&
           gw_admin_add(o, "completion_tokens", cJSON_CreateNumber((double)t->completion_tokens)) &&
           gw_admin_add(o, "cost", gw_json_money(t->cost_nusd));
}

static cJSON *gw_series_point_json(const gw_ujob *j, const proto_usage_point *p)
{
    cJSON *o = cJSON_CreateObject();
    int has_gran = j->q.gran != PROTO_GRAN_NONE;
    int ok = o != NULL &&
             gw_admin_add(o, "start", has_gran ? gw_json_time(p->start_ms) : cJSON_CreateNull()) &&
             gw_admin_add(o, "end",
                          has_gran ? gw_json_time(gw_usage_period_end(j->q.gran, p->start_ms))
                                   : cJSON_CreateNull()) &&
             (j->q.by == PROTO_BY_NONE ||
              gw_admin_add(o, gw_by_names[j->q.by], gw_admin_str_or_null(p->value))) &&
             gw_series_add_totals(o, &p->totals);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *gw_series_json(const gw_ujob *j, const proto_usage_totals *tot)
{
    const proto_usage_filter *f = &j->q.f;
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = NULL;
    int ok = o != NULL && gw_admin_add(o, "org", cJSON_CreateString(f->org)) &&
             gw_admin_add(o, "from", gw_json_time(f->from_ms)) &&
             gw_admin_add(o, "to", gw_json_time(f->to_ms)) && gw_series_add_totals(o, tot);
    if (ok && (j->q.gran != PROTO_GRAN_NONE || j->q.by != PROTO_BY_NONE)) {
        ok = gw_admin_add(o, "granularity",
                          gw_admin_str_or_null(j->q.gran ? gw_gran_names[j->q.gran] : "")) &&
             gw_admin_add(o, "group_by",
                          gw_admin_str_or_null(j->q.by ? gw_by_names[j->q.by] : "")) &&
             gw_admin_add(o, "series", arr = cJSON_CreateArray());
        for (uint32_t i = 0; ok && i < j->pt_n; i++) {
            ok = gw_admin_add_item(arr, gw_series_point_json(j, &j->pts[i]));
        }
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* One CSV row of a point (or of the totals when p is NULL) into b; returns its length. */
static size_t gw_series_csv_row(const gw_ujob *j, const proto_usage_point *p,
                                const proto_usage_totals *t, char *b, size_t cap)
{
    char start[40], end[40], num[4][32];
    size_t o;
    int64_t s = p != NULL && j->q.gran ? p->start_ms : j->q.f.from_ms;
    int64_t e = p != NULL && j->q.gran ? gw_usage_period_end(j->q.gran, s) : j->q.f.to_ms;
    cg_time_format(s, start, sizeof(start));
    cg_time_format(e, end, sizeof(end));
    o = gw_csv_field(b, cap, 0, start, 1);
    o = gw_csv_field(b, cap, o, end, 0);
    o = gw_csv_field(b, cap, o, j->q.f.org, 0);
    if (j->q.by != PROTO_BY_NONE) {
        o = gw_csv_field(b, cap, o, p != NULL ? p->value : "", 0);
    }
    snprintf(num[0], sizeof(num[0]), "%lld", (long long)t->requests);
    snprintf(num[1], sizeof(num[1]), "%lld", (long long)t->prompt_tokens);
    snprintf(num[2], sizeof(num[2]), "%lld", (long long)t->completion_tokens);
    gw_usage_money(t->cost_nusd, num[3], sizeof(num[3]));
    for (int i = 0; i < 4; i++) {
        o = gw_csv_field(b, cap, o, num[i], 0);
    }
    return (size_t)snprintf(b + o, cap - o, "\r\n") + o;
}

static void gw_series_send_csv(gw_ujob *j, const proto_usage_totals *tot)
{
    size_t rows = (j->q.gran || j->q.by) ? j->pt_n : 1;
    size_t cap = (rows + 1) * GW_USAGE_ROW_MAX, o;
    char *b = malloc(cap);
    if (b == NULL) {
        gw_admin_error(j->x, 500, "server_error", "internal_error", "out of memory", NULL);
        return;
    }
    o = (size_t)snprintf(b, cap,
                         "period_start,period_end,org,%s%srequests,prompt_tokens,"
                         "completion_tokens,cost_usd\r\n",
                         j->q.by ? gw_by_names[j->q.by] : "", j->q.by ? "," : "");
    if (j->q.gran || j->q.by) {
        for (uint32_t i = 0; i < j->pt_n; i++) {
            o += gw_series_csv_row(j, &j->pts[i], &j->pts[i].totals, b + o, cap - o);
        }
    } else {
        o += gw_series_csv_row(j, NULL, tot, b + o, cap - o);
    }
    gw_usage_send_csv(j->x, b, o);
    free(b);
}

static void gw_series_finish(gw_ujob *j)
{
    proto_usage_totals tot;
    cg_err e;
    if (j->transport != CG_ERR_OK || j->status != CG_ERR_OK) {
        gw_usage_fail(j);
    } else if (j->x->c == NULL) {
        gw_admin_log(j->x, 499);
    } else if ((e = gw_series_merge(j, &tot)) != CG_ERR_OK) {
        j->status = e == CG_ERR_TOOBIG ? CG_ERR_TOOBIG : CG_ERR_OVERFLOW;
        gw_usage_fail(j);
    } else if (j->q.csv) {
        gw_series_send_csv(j, &tot);
    } else {
        gw_admin_send_json(j->x, 200, gw_series_json(j, &tot));
    }
}

/* Keep a shard's points (copied: the reply dies with the callback). */
static int gw_series_keep(gw_ujob *j, const proto_rep *rep)
{
    uint32_t n = rep->u.usage_series.n;
    if (n > j->pt_cap - j->pt_n) {
        uint32_t cap = j->pt_n + n;
        proto_usage_point *p = realloc(j->pts, (size_t)cap * sizeof(*p));
        if (p == NULL) {
            return 0;
        }
        j->pts = p;
        j->pt_cap = cap;
    }
    if (n > 0) {
        memcpy(j->pts + j->pt_n, rep->u.usage_series.points, (size_t)n * sizeof(*j->pts));
    }
    j->pt_n += n;
    return 1;
}

static void gw_series_cb(cg_err err, const proto_rep *rep, void *ud)
{
    gw_ujob *j = ud;
    if (gw_usage_rep_ok(j, err, rep) && !gw_series_keep(j, rep)) {
        j->status = j->status != 0 ? j->status : CG_ERR_NOMEM;
    }
    if (j->left == 0) {
        gw_series_finish(j);
        gw_usage_job_end(j);
    }
}

/* ---- records (GET /admin/v1/usage/records) ---- */

static void gw_records_step(gw_ujob *j);

/* Format t as RFC 3339 UTC with milliseconds. */
static void gw_usage_time_ms(int64_t t, char *buf, size_t cap)
{
    char s[40];
    size_t n = cg_time_format(t - (t % 1000 + 1000) % 1000, s, sizeof(s));
    if (n < 2) {
        snprintf(buf, cap, "%s", s);
        return;
    }
    s[n - 1] = '\0'; /* drop the Z */
    snprintf(buf, cap, "%s.%03dZ", s, (int)((t % 1000 + 1000) % 1000));
}

static void gw_records_page_req(const gw_ujob *j, const gw_ushard *s, proto_req *rq)
{
    uint32_t want = j->q.limit - j->emitted;
    memset(rq, 0, sizeof(*rq));
    rq->op = PROTO_OP_USAGE_RECORDS;
    rq->u.usage_records.f = j->q.f;
    rq->u.usage_records.after_ts_ms = s->after_ts;
    snprintf(rq->u.usage_records.after_rid, sizeof(rq->u.usage_records.after_rid), "%s",
             s->after_rid);
    rq->u.usage_records.limit = want < GW_USAGE_PAGE ? (want > 0 ? want : 1) : GW_USAGE_PAGE;
}

/* A page of shard s arrived (or failed). */
static void gw_records_cb(cg_err err, const proto_rep *rep, void *ud)
{
    gw_ushard *s = ud;
    gw_ujob *j = s->j;
    if (gw_usage_rep_ok(j, err, rep)) {
        uint32_t n = rep->u.usage_records.n;
        if (n > GW_USAGE_PAGE) { /* more than asked: a peer bug, never an overflow */
            j->status = j->status != 0 ? j->status : CG_ERR_PROTO;
            n = 0;
        }
        if (n > 0) {
            memcpy(s->page, rep->u.usage_records.records, (size_t)n * sizeof(*s->page));
            s->after_ts = s->page[n - 1].ts_ms;
            snprintf(s->after_rid, sizeof(s->after_rid), "%s", s->page[n - 1].request_id);
        }
        s->n = n;
        s->pos = 0;
        s->more = rep->u.usage_records.has_more && n > 0;
    }
    if (j->left == 0) {
        gw_records_step(j);
    }
}

/* Ask shard s for its next page; 0 if it could not be sent (noted in j). */
static int gw_records_ask(gw_ujob *j, gw_ushard *s)
{
    proto_req rq;
    gw_records_page_req(j, s, &rq);
    return gw_usage_submit(j, s->idx, &rq, gw_records_cb, s);
}

/* One record as a JSON object (compact) or a CSV row into b (cap >= GW_USAGE_ROW_MAX). */
static size_t gw_records_row(const gw_ujob *j, const proto_usage *u, char *b, size_t cap)
{
    char t[48], cost[32], num[5][24];
    gw_usage_time_ms(u->ts_ms, t, sizeof(t));
    gw_usage_money(u->cost_nusd, cost, sizeof(cost));
    if (!j->q.csv) {
        cJSON *o = cJSON_CreateObject();
        int ok = o != NULL && gw_admin_add(o, "time", cJSON_CreateString(t)) &&
                 gw_admin_add(o, "request_id", cJSON_CreateString(u->request_id)) &&
                 gw_admin_add(o, "org", cJSON_CreateString(u->org)) &&
                 gw_admin_add(o, "key", cJSON_CreateString(u->key_id)) &&
                 gw_admin_add(o, "group", gw_admin_str_or_null(u->group)) &&
                 gw_admin_add(o, "customer", gw_admin_str_or_null(u->customer)) &&
                 gw_admin_add(o, "model", cJSON_CreateString(u->model)) &&
                 gw_admin_add(o, "provider", cJSON_CreateString(u->provider)) &&
                 gw_admin_add(o, "prompt_tokens", cJSON_CreateNumber((double)u->prompt_tokens)) &&
                 gw_admin_add(o, "completion_tokens",
                              cJSON_CreateNumber((double)u->completion_tokens)) &&
                 gw_admin_add(o, "cost", cJSON_CreateString(cost)) &&
                 gw_admin_add(o, "status", cJSON_CreateNumber(u->status)) &&
                 gw_admin_add(o, "latency_ms", cJSON_CreateNumber(u->latency_ms)) &&
                 gw_admin_add(o, "estimated", cJSON_CreateBool(u->estimated != 0));
        size_t n = 0;
        if (ok && cJSON_PrintPreallocated(o, b + 1, (int)(cap - 1), 0)) {
            b[0] = j->emitted > 0 ? ',' : '\n';
            n = strlen(b);
        }
        cJSON_Delete(o);
        return n;
    }
    snprintf(num[0], sizeof(num[0]), "%lld", (long long)u->prompt_tokens);
    snprintf(num[1], sizeof(num[1]), "%lld", (long long)u->completion_tokens);
    snprintf(num[2], sizeof(num[2]), "%d", (int)u->status);
    snprintf(num[3], sizeof(num[3]), "%d", (int)u->latency_ms);
    snprintf(num[4], sizeof(num[4]), "%s", u->estimated ? "true" : "false");
    const char *f[] = {t,           u->request_id, u->org,      u->key_id, u->group,
                       u->customer, u->model,      u->provider, num[0],    num[1],
                       cost,        num[2],        num[3],      num[4]};
    size_t o = 0;
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        o = gw_csv_field(b, cap - 3, o, f[i], i == 0);
    }
    memcpy(b + o, "\r\n", 3);
    return o + 2;
}

static void gw_records_write(gw_ujob *j, const char *s, size_t n)
{
    memcpy(j->out + j->out_n, s, n);
    j->out_n += n;
}

/* Write the buffered output; 1 if the connection can take more now. */
static int gw_records_flush(gw_ujob *j)
{
    size_t pending = 0;
    if (j->out_n > 0 && j->x->c != NULL) {
        pending = cg_http_stream_write(j->x->c, j->out, j->out_n);
    }
    j->out_n = 0;
    return pending <= GW_USAGE_PENDING_MAX;
}

static void gw_records_abort_cb(cg_http_conn *c, void *ud)
{
    gw_ujob *j = ud;
    (void)c;
    cg_log(CG_LOG_INFO, "admin request abandoned by client", "method", j->x->method, "path",
           j->x->path, NULL);
    j->x->c = NULL;
    if (j->draining) {
        j->draining = 0;
        gw_admin_log(j->x, 499);
        gw_usage_job_end(j);
    }
}

static void gw_records_drain_cb(cg_http_conn *c, void *ud)
{
    gw_ujob *j = ud;
    (void)c;
    if (j->draining) {
        j->draining = 0;
        gw_records_step(j);
    }
}

/* The status line and the body's opening. */
static void gw_records_begin(gw_ujob *j)
{
    static const char disp[] =
        "Content-Disposition: attachment; filename=\"usage-records.csv\"\r\n";
    gw_admin_ctx *x = j->x;
    cg_http_stream_begin(x->c, 200, j->q.csv ? disp : NULL,
                         j->q.csv ? "text/csv; charset=utf-8" : "application/json");
    cg_http_conn_set_callbacks(x->c, gw_records_abort_cb, gw_records_drain_cb, j);
    j->streaming = 1;
    if (j->q.csv) {
        static const char hdr[] = "time,request_id,org,key,group,customer,model,provider,"
                                  "prompt_tokens,completion_tokens,cost_usd,status,latency_ms,"
                                  "estimated\r\n";
        gw_records_write(j, hdr, sizeof(hdr) - 1);
    } else {
        char head[256];
        cJSON *org = cJSON_CreateString(j->q.f.org);
        char *o = org != NULL ? cJSON_PrintUnformatted(org) : NULL;
        char from[40], to[40];
        cg_time_format(j->q.f.from_ms, from, sizeof(from));
        cg_time_format(j->q.f.to_ms, to, sizeof(to));
        /* from 0 (not given) prints null, as in GET /admin/v1/usage. */
        int n = snprintf(head, sizeof(head), "{\"org\":%s,\"from\":%s%s%s,\"to\":\"%s\",\"data\":[",
                         o != NULL ? o : "null", j->q.f.from_ms ? "\"" : "",
                         j->q.f.from_ms ? from : "null", j->q.f.from_ms ? "\"" : "", to);
        gw_records_write(j, head, (size_t)n);
        cJSON_free(o);
        cJSON_Delete(org);
    }
}

/* The body's end: has_more, the terminating chunk. */
static void gw_records_end(gw_ujob *j)
{
    int more = 0;
    for (uint16_t i = 0; i < j->shard_n; i++) {
        more |= j->sh[i].pos < j->sh[i].n || j->sh[i].more;
    }
    if (!j->q.csv) {
        const char *tail = more ? "\n],\"has_more\":true}\n" : "\n],\"has_more\":false}\n";
        gw_records_write(j, tail, strlen(tail));
    }
    gw_records_flush(j);
    gw_admin_log(j->x, 200);
    if (j->x->c != NULL) {
        cg_http_conn_set_callbacks(j->x->c, NULL, NULL, NULL);
        cg_http_stream_end(j->x->c);
        j->x->c = NULL;
    }
}

/*
 * Advance the merge: emit records while every shard that may hold the next one has a
 * page; ask for pages (and return) when one runs dry; end the body when done. Runs after
 * every round of pages and after every drain.
 */
static void gw_records_step(gw_ujob *j)
{
    if (j->transport != CG_ERR_OK || j->status != CG_ERR_OK) {
        if (!j->streaming) {
            gw_usage_fail(j);
        } else if (j->x->c != NULL) {
            cg_log(CG_LOG_WARN, "admin: usage records truncated: a shard failed", "path",
                   j->x->path, "err",
                   cg_err_name(j->transport != CG_ERR_OK ? j->transport : (cg_err)j->status), NULL);
            gw_admin_log(j->x, 502);
            cg_http_conn_set_callbacks(j->x->c, NULL, NULL, NULL);
            cg_http_conn_drop(j->x->c);
            j->x->c = NULL;
        }
        gw_usage_job_end(j);
        return;
    }
    if (j->x->c == NULL) {
        gw_admin_log(j->x, 499);
        gw_usage_job_end(j);
        return;
    }
    if (!j->streaming) {
        gw_records_begin(j);
    }
    while (j->emitted < j->q.limit) {
        gw_ushard *best = NULL;
        for (uint16_t i = 0; i < j->shard_n; i++) {
            gw_ushard *s = &j->sh[i];
            if (s->pos == s->n && s->more) {
                gw_records_ask(j, s);
            }
        }
        if (j->left > 0 || j->transport != CG_ERR_OK) {
            gw_records_flush(j);
            if (j->left == 0) {
                gw_records_step(j); /* nothing was sent: report the failure now */
            }
            return;
        }
        for (uint16_t i = 0; i < j->shard_n; i++) {
            gw_ushard *s = &j->sh[i];
            if (s->pos < s->n &&
                (best == NULL || s->page[s->pos].ts_ms < best->page[best->pos].ts_ms ||
                 (s->page[s->pos].ts_ms == best->page[best->pos].ts_ms &&
                  strcmp(s->page[s->pos].request_id, best->page[best->pos].request_id) < 0))) {
                best = s;
            }
        }
        if (best == NULL) {
            break;
        }
        j->out_n +=
            gw_records_row(j, &best->page[best->pos++], j->out + j->out_n, GW_USAGE_ROW_MAX);
        j->emitted++;
        if (j->out_n >= GW_USAGE_OUT_CHUNK && !gw_records_flush(j)) {
            j->draining = 1; /* the drain callback resumes */
            return;
        }
    }
    gw_records_end(j);
    gw_usage_job_end(j);
}

/* ---- entry points ---- */

static gw_ujob *gw_usage_job_new(gw_admin_ctx *x, const cg_http_req *req, int records)
{
    char err[GW_ADMIN_ERR_MAX] = "";
    gw_ujob *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        gw_admin_error(x, 500, "server_error", "internal_error", "out of memory", NULL);
        return NULL;
    }
    j->x = x;
    j->q.records = (uint8_t)records;
    j->shard_n = (uint16_t)x->a->cfg->shard_n;
    if (gw_usage_parse(req->query, cg_now_ms(), &j->q, err, sizeof(err)) != CG_ERR_OK) {
        gw_admin_invalid(x, err);
        gw_usage_job_free(j);
        return NULL;
    }
    return j;
}

int gw_admin_usage_get(gw_admin_ctx *x, const cg_http_req *req)
{
    gw_ujob *j = gw_usage_job_new(x, req, 0);
    proto_req rq;
    if (j == NULL) {
        return 0;
    }
    memset(&rq, 0, sizeof(rq));
    rq.op = PROTO_OP_USAGE_SERIES;
    rq.u.usage_series.f = j->q.f;
    rq.u.usage_series.granularity = j->q.gran;
    rq.u.usage_series.group_by = j->q.by;
    for (uint16_t i = 0; i < j->shard_n && gw_usage_submit(j, i, &rq, gw_series_cb, j); i++) {
    }
    if (j->left == 0) {
        gw_series_finish(j);
        gw_usage_job_free(j);
        return 0;
    }
    /* The last shard's callback answers; the job (not x) is its ud, so x is handed over. */
    return 1;
}

int gw_admin_usage_records_get(gw_admin_ctx *x, const cg_http_req *req)
{
    gw_ujob *j = gw_usage_job_new(x, req, 1);
    if (j == NULL) {
        return 0;
    }
    j->sh = calloc(j->shard_n, sizeof(*j->sh));
    j->out = malloc(GW_USAGE_OUT_CHUNK + GW_USAGE_ROW_MAX);
    for (uint16_t i = 0; j->sh != NULL && i < j->shard_n; i++) {
        j->sh[i].j = j;
        j->sh[i].idx = i;
        j->sh[i].more = 1;
        if ((j->sh[i].page = malloc(GW_USAGE_PAGE * sizeof(proto_usage))) == NULL) {
            j->status = CG_ERR_NOMEM;
        }
    }
    if (j->sh == NULL || j->out == NULL || j->status != CG_ERR_OK) {
        gw_admin_error(x, 500, "server_error", "internal_error", "out of memory", NULL);
        gw_usage_job_free(j);
        return 0;
    }
    for (uint16_t i = 0; i < j->shard_n && gw_records_ask(j, &j->sh[i]); i++) {
    }
    if (j->left == 0) {
        gw_usage_fail(j);
        gw_usage_job_free(j);
        return 0;
    }
    return 1;
}
