/*
 * admin_json_test.c — unit tests of gw_json.c: limit parsing, validation
 * messages naming the field, money in and out, limit and error printing.
 */
#include <stdlib.h>
#include <string.h>

#include "cg_money.h"
#include "cg_period.h"
#include "cg_test.h"
#include "gw_json.h"

static char test_err[GW_JSON_ERR_MAX];

/* Parse a limits array given as JSON text with flags; returns the gw_json_limits_parse result. */
static cg_err test_limits_flags(const char *json, unsigned flags, proto_limit *out, uint8_t *n)
{
    cJSON *v = gw_json_parse(json, strlen(json));
    cg_err e;

    test_err[0] = '\0';
    if (v == NULL) {
        return CG_ERR_PARSE;
    }
    e = gw_json_limits_parse(v, "limits", flags, out, n, test_err, sizeof(test_err));
    cJSON_Delete(v);
    return e;
}

static cg_err test_limits(const char *json, proto_limit *out, uint8_t *n)
{
    return test_limits_flags(json, 0, out, n);
}

/* The limits array must be refused (with flags) with a message starting with want_prefix. */
static int test_refused_flags(const char *json, unsigned flags, const char *want_prefix)
{
    proto_limit l[PROTO_LIMITS_MAX];
    uint8_t n = 99;

    if (test_limits_flags(json, flags, l, &n) != CG_ERR_INVAL || n != 99) {
        fprintf(stderr, "  accepted: %s\n", json);
        return 0;
    }
    if (strncmp(test_err, want_prefix, strlen(want_prefix)) != 0) {
        fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", test_err, want_prefix);
        return 0;
    }
    return 1;
}

static int test_refused(const char *json, const char *want_prefix)
{
    return test_refused_flags(json, 0, want_prefix);
}

CG_TEST(json_limits_ok)
{
    proto_limit l[PROTO_LIMITS_MAX];
    uint8_t n = 0;

    CG_CHECK_EQ_INT(test_limits("[{\"metric\":\"cost\",\"window\":\"month\",\"max\":1000,"
                                "\"warn_at\":[0.5,0.8]},"
                                "{\"metric\":\"tokens\",\"window\":\"day\",\"max\":5000000,"
                                "\"action\":\"warn\"},"
                                "{\"metric\":\"requests\",\"window\":\"lifetime\"},"
                                "{\"metric\":\"cost\",\"window\":\"week\",\"max\":\"0.01\"}]",
                                l, &n),
                    CG_ERR_OK);
    CG_CHECK_EQ_INT(n, 4);
    CG_CHECK_EQ_INT(l[0].id, 1);
    CG_CHECK_EQ_INT(l[3].id, 4);
    CG_CHECK_EQ_INT(l[0].metric, PROTO_METRIC_COST);
    CG_CHECK_EQ_INT(l[0].window.kind, CG_WIN_MONTH);
    CG_CHECK_EQ_INT(l[0].max, 1000 * CG_NUSD_PER_USD);
    CG_CHECK_EQ_INT(l[0].action, PROTO_ACTION_BLOCK);
    CG_CHECK_EQ_INT(l[0].warn_n, 2);
    CG_CHECK_EQ_INT(l[0].warn_bp[0], 5000);
    CG_CHECK_EQ_INT(l[0].warn_bp[1], 8000);
    CG_CHECK_EQ_INT(l[1].metric, PROTO_METRIC_TOKENS);
    CG_CHECK_EQ_INT(l[1].max, 5000000);
    CG_CHECK_EQ_INT(l[1].action, PROTO_ACTION_WARN);
    CG_CHECK_EQ_INT(l[2].max, 0);
    CG_CHECK_EQ_INT(l[2].window.kind, CG_WIN_LIFETIME);
    CG_CHECK_EQ_INT(l[2].warn_n, 0);
    CG_CHECK_EQ_INT(l[3].max, 10000000);
}

CG_TEST(json_limits_absent_or_empty)
{
    proto_limit l[PROTO_LIMITS_MAX];
    uint8_t n = 9;

    CG_CHECK_EQ_INT(test_limits("[]", l, &n), CG_ERR_OK);
    CG_CHECK_EQ_INT(n, 0);
    n = 9;
    CG_CHECK_EQ_INT(test_limits("null", l, &n), CG_ERR_OK);
    CG_CHECK_EQ_INT(n, 0);
    n = 9;
    CG_CHECK_EQ_INT(gw_json_limits_parse(NULL, "limits", 0, l, &n, test_err, sizeof(test_err)),
                    CG_ERR_OK);
    CG_CHECK_EQ_INT(n, 0);
}

CG_TEST(json_limits_refused)
{
    CG_CHECK(test_refused("{}", "limits: "));
    CG_CHECK(test_refused("[1]", "limits[0]: "));
    CG_CHECK(test_refused("[{\"window\":\"day\"}]", "limits[0].metric: "));
    CG_CHECK(test_refused("[{\"metric\":\"gold\",\"window\":\"day\"}]", "limits[0].metric: "));
    CG_CHECK(test_refused("[{\"metric\":\"cost\"}]", "limits[0].window: "));
    CG_CHECK(test_refused("[{\"metric\":\"cost\",\"window\":\"year\"}]", "limits[0].window: "));
    CG_CHECK(test_refused("[{\"metric\":\"cost\",\"window\":\"day\"},"
                          "{\"metric\":\"requests\",\"window\":\"1m\",\"max\":60}]",
                          "limits[1].window: sliding windows are not supported yet"));
    CG_CHECK(
        test_refused("[{\"metric\":\"cost\",\"window\":\"day\",\"max\":-1}]", "limits[0].max: "));
    CG_CHECK(test_refused("[{\"metric\":\"cost\",\"window\":\"day\",\"max\":\"1e3\"}]",
                          "limits[0].max: "));
    CG_CHECK(
        test_refused("[{\"metric\":\"cost\",\"window\":\"day\",\"max\":true}]", "limits[0].max: "));
    CG_CHECK(test_refused("[{\"metric\":\"tokens\",\"window\":\"day\",\"max\":1.5}]",
                          "limits[0].max: "));
    CG_CHECK(test_refused("[{\"metric\":\"tokens\",\"window\":\"day\",\"max\":\"100\"}]",
                          "limits[0].max: "));
    CG_CHECK(test_refused("[{\"metric\":\"tokens\",\"window\":\"day\",\"max\":1e300}]",
                          "limits[0].max: "));
    CG_CHECK(test_refused("[{\"metric\":\"cost\",\"window\":\"day\",\"action\":\"stop\"}]",
                          "limits[0].action: "));
    CG_CHECK(test_refused("[{\"metric\":\"cost\",\"window\":\"day\",\"colour\":1}]",
                          "limits[0].colour: unknown field"));
    CG_CHECK(test_refused("[{\"metric\":\"cost\",\"window\":\"day\",\"id\":3}]",
                          "limits[0].id: unknown field"));
    CG_CHECK(test_refused("[{\"metric\":\"cost\",\"metric\":\"tokens\",\"window\":\"day\"}]",
                          "limits[0].metric: duplicate field"));
}

CG_TEST(json_warn_at_refused)
{
    CG_CHECK(test_refused("[{\"metric\":\"cost\",\"window\":\"day\",\"warn_at\":0.5}]",
                          "limits[0].warn_at: "));
    CG_CHECK(test_refused("[{\"metric\":\"cost\",\"window\":\"day\",\"warn_at\":[0]}]",
                          "limits[0].warn_at[0]: "));
    CG_CHECK(test_refused("[{\"metric\":\"cost\",\"window\":\"day\",\"warn_at\":[0.5,1.2]}]",
                          "limits[0].warn_at[1]: "));
    CG_CHECK(test_refused("[{\"metric\":\"cost\",\"window\":\"day\",\"warn_at\":[0.8,0.5]}]",
                          "limits[0].warn_at[1]: thresholds must be strictly ascending"));
    CG_CHECK(test_refused("[{\"metric\":\"cost\",\"window\":\"day\",\"warn_at\":[0.5,0.5]}]",
                          "limits[0].warn_at[1]: "));
    CG_CHECK(test_refused("[{\"metric\":\"cost\",\"window\":\"day\",\"warn_at\":[\"0.5\"]}]",
                          "limits[0].warn_at[0]: "));
    CG_CHECK(test_refused("[{\"metric\":\"cost\",\"window\":\"day\",\"warn_at\":"
                          "[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9]}]",
                          "limits[0].warn_at: at most 8"));
}

CG_TEST(json_warn_at_edges)
{
    proto_limit l[PROTO_LIMITS_MAX];
    uint8_t n = 0;

    CG_CHECK_EQ_INT(test_limits("[{\"metric\":\"cost\",\"window\":\"day\",\"warn_at\":"
                                "[0.0001,0.1,0.2,0.3,0.4,0.5,0.99,1]}]",
                                l, &n),
                    CG_ERR_OK);
    CG_CHECK_EQ_INT(l[0].warn_n, 8);
    CG_CHECK_EQ_INT(l[0].warn_bp[0], 1);
    CG_CHECK_EQ_INT(l[0].warn_bp[6], 9900);
    CG_CHECK_EQ_INT(l[0].warn_bp[7], 10000);
}

CG_TEST(json_too_many_limits)
{
    char buf[4096];
    size_t pos = 0;

    for (int i = 0; i <= PROTO_LIMITS_MAX; i++) {
        pos += (size_t)snprintf(buf + pos, sizeof(buf) - pos,
                                "%c{\"metric\":\"cost\","
                                "\"window\":\"day\"}",
                                i ? ',' : '[');
    }
    snprintf(buf + pos, sizeof(buf) - pos, "]");
    CG_CHECK(test_refused(buf, "limits: at most 16"));
}

CG_TEST(json_sliding_when_allowed)
{
    const char *j = "{\"metric\":\"requests\",\"window\":\"1m\",\"max\":60}";
    cJSON *v = gw_json_parse(j, strlen(j));
    proto_limit l;

    CG_CHECK(v != NULL);
    CG_CHECK_EQ_INT(
        gw_json_limit_parse(v, "x", GW_JSON_LIMIT_ALLOW_SLIDING, &l, test_err, sizeof(test_err)),
        CG_ERR_OK);
    cJSON_Delete(v);
    CG_CHECK_EQ_INT(l.window.kind, CG_WIN_SLIDING);
    CG_CHECK_EQ_INT(l.window.sliding_s, 60);
}

CG_TEST(json_sliding_rules)
{
    const unsigned sl = GW_JSON_LIMIT_ALLOW_SLIDING;
    proto_limit l[PROTO_LIMITS_MAX];
    uint8_t n = 0;

    CG_CHECK(test_refused_flags("[{\"metric\":\"cost\",\"window\":\"day\",\"warn_at\":[0.5]},"
                                "{\"metric\":\"requests\",\"window\":\"1m\",\"max\":60,"
                                "\"warn_at\":[0.5]}]",
                                sl, "limits[1].warn_at: not allowed on sliding windows"));
    CG_CHECK(test_refused_flags("[{\"metric\":\"requests\",\"window\":\"0m\"}]", sl,
                                "limits[0].window: must be one of lifetime, day, week, month, "
                                "<N>s|m|h|d"));
    CG_CHECK_EQ_INT(test_limits_flags("[{\"metric\":\"requests\",\"window\":\"1m\",\"max\":60},"
                                      "{\"metric\":\"tokens\",\"window\":\"5h\",\"max\":9},"
                                      "{\"metric\":\"cost\",\"window\":\"24h\",\"max\":1},"
                                      "{\"metric\":\"cost\",\"window\":\"7d\",\"max\":5},"
                                      "{\"metric\":\"cost\",\"window\":\"30s\",\"max\":5}]",
                                      sl, l, &n),
                    CG_ERR_OK);
    CG_CHECK_EQ_INT(n, 5);
    CG_CHECK_EQ_INT(l[1].window.sliding_s, 5 * 3600);
    CG_CHECK_EQ_INT(l[2].window.sliding_s, 86400);
    CG_CHECK_EQ_INT(l[3].window.sliding_s, 7 * 86400);
    CG_CHECK_EQ_INT(l[4].window.sliding_s, 30);
    CG_CHECK_EQ_INT(l[4].id, 5);
}

CG_TEST(json_limits_duplicates_and_natural_ids)
{
    const unsigned nat = GW_JSON_LIMIT_ALLOW_SLIDING | GW_JSON_LIMIT_NATURAL_IDS;
    proto_limit l[PROTO_LIMITS_MAX];
    uint8_t n = 0;

    CG_CHECK(test_refused("[{\"metric\":\"cost\",\"window\":\"day\",\"max\":1},"
                          "{\"metric\":\"tokens\",\"window\":\"day\"},"
                          "{\"metric\":\"cost\",\"window\":\"day\",\"max\":2}]",
                          "limits[2]: same metric and window as limits[0]"));
    CG_CHECK(test_refused_flags("[{\"metric\":\"requests\",\"window\":\"60s\"},"
                                "{\"metric\":\"requests\",\"window\":\"1m\"}]",
                                nat, "limits[1]: same metric and window as limits[0]"));
    /* Different sliding lengths are different windows. */
    CG_CHECK_EQ_INT(test_limits_flags("[{\"metric\":\"requests\",\"window\":\"1m\"},"
                                      "{\"metric\":\"requests\",\"window\":\"1h\"},"
                                      "{\"metric\":\"cost\",\"window\":\"month\"}]",
                                      nat, l, &n),
                    CG_ERR_OK);
    CG_CHECK_EQ_INT(n, 3);
    CG_CHECK_EQ_INT(l[0].id, proto_limit_natural_id(PROTO_METRIC_REQUESTS, l[0].window));
    CG_CHECK_EQ_INT(l[1].id, proto_limit_natural_id(PROTO_METRIC_REQUESTS, l[1].window));
    CG_CHECK_EQ_INT(l[2].id, proto_limit_natural_id(PROTO_METRIC_COST, l[2].window));
    CG_CHECK(l[0].id != l[1].id);
}

/* A limit of metric m and window text w with id (for keep_ids / merge tests). */
static proto_limit test_limit(uint32_t id, int m, const char *w, int64_t max)
{
    proto_limit l;

    memset(&l, 0, sizeof(l));
    l.id = id;
    l.metric = (uint8_t)m;
    l.max = max;
    if (cg_window_parse(w, &l.window) != CG_ERR_OK) {
        l.window.kind = 99; /* makes the caller's checks fail */
    }
    return l;
}

CG_TEST(json_limits_keep_ids)
{
    proto_limit old[3] = {test_limit(1, PROTO_METRIC_COST, "month", 5),
                          test_limit(2, PROTO_METRIC_TOKENS, "day", 6),
                          test_limit(3, PROTO_METRIC_REQUESTS, "1m", 7)};
    proto_limit nl[4] = {test_limit(0, PROTO_METRIC_REQUESTS, "1m", 70),
                         test_limit(0, PROTO_METRIC_COST, "week", 8),
                         test_limit(0, PROTO_METRIC_COST, "month", 50),
                         test_limit(0, PROTO_METRIC_REQUESTS, "1h", 9)};

    gw_json_limits_keep_ids(old, 3, nl, 4);
    CG_CHECK_EQ_INT(nl[0].id, 3);
    CG_CHECK_EQ_INT(nl[2].id, 1);
    CG_CHECK_EQ_INT(nl[1].id, proto_limit_natural_id(PROTO_METRIC_COST, nl[1].window));
    CG_CHECK_EQ_INT(nl[3].id, proto_limit_natural_id(PROTO_METRIC_REQUESTS, nl[3].window));
    CG_CHECK(nl[1].id > 3 && nl[3].id > 3 && nl[1].id != nl[3].id);
    /* The removed tokens/day limit's id 2 is never handed to another kind of limit. */
    for (int i = 0; i < 4; i++) {
        CG_CHECK(nl[i].id != 2);
    }

    /* Should a natural id be taken (an odd old list), the new one goes above the maximum. */
    proto_limit odd[1] = {test_limit(0, PROTO_METRIC_TOKENS, "day", 1)};
    odd[0].id = proto_limit_natural_id(PROTO_METRIC_COST, nl[1].window);
    proto_limit nl2[2] = {test_limit(0, PROTO_METRIC_TOKENS, "day", 1),
                          test_limit(0, PROTO_METRIC_COST, "week", 2)};
    gw_json_limits_keep_ids(odd, 1, nl2, 2);
    CG_CHECK_EQ_INT(nl2[0].id, odd[0].id);
    CG_CHECK_EQ_INT(nl2[1].id, odd[0].id + 1);
}

CG_TEST(json_limits_merge)
{
    proto_limit defs[2] = {test_limit(0, PROTO_METRIC_COST, "month", 5),
                           test_limit(0, PROTO_METRIC_REQUESTS, "1m", 60)};
    proto_limit over[2] = {test_limit(0, PROTO_METRIC_TOKENS, "day", 1000),
                           test_limit(0, PROTO_METRIC_COST, "month", 20)};
    proto_limit out[PROTO_LIMITS_MAX], many[PROTO_LIMITS_MAX];
    uint8_t from[PROTO_LIMITS_MAX];

    CG_CHECK_EQ_INT(gw_json_limits_merge(defs, 2, over, 2, out, from), 3);
    CG_CHECK_EQ_INT(out[0].metric, PROTO_METRIC_COST);
    CG_CHECK_EQ_INT(out[0].max, 20);
    CG_CHECK_EQ_INT(from[0], 1);
    CG_CHECK_EQ_INT(out[1].max, 60);
    CG_CHECK_EQ_INT(from[1], 0);
    CG_CHECK_EQ_INT(out[2].max, 1000);
    CG_CHECK_EQ_INT(from[2], 1);
    CG_CHECK_EQ_INT(gw_json_limits_merge(defs, 2, NULL, 0, out, from), 2);
    CG_CHECK_EQ_INT(from[0] + from[1], 0);
    CG_CHECK_EQ_INT(gw_json_limits_merge(NULL, 0, over, 2, NULL, NULL), 2);

    /* 16 sliding defaults plus one new override: 17, only counted past the cap. */
    for (int i = 0; i < PROTO_LIMITS_MAX; i++) {
        char w[16];
        snprintf(w, sizeof(w), "%dm", i + 1);
        many[i] = test_limit(0, PROTO_METRIC_REQUESTS, w, i);
    }
    CG_CHECK_EQ_INT(gw_json_limits_merge(many, PROTO_LIMITS_MAX, over, 1, out, from),
                    PROTO_LIMITS_MAX + 1);
    CG_CHECK_EQ_INT(out[PROTO_LIMITS_MAX - 1].max, PROTO_LIMITS_MAX - 1);
}

CG_TEST(json_money)
{
    const char *cases[] = {"0.01", "\"0.01\"", "12.345", "\"12.345\"", "0",      "\"1e3\"",
                           "-1",   "\"-1\"",   "true",   "\"\"",       "\" 1\"", "99999999999"};
    const int64_t want[] = {10000000, 10000000, 12345000000LL, 12345000000LL, 0, -1, -1, -1, -1, -1,
                            -1,       -2};

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *v = gw_json_parse(cases[i], strlen(cases[i]));
        int64_t out = -7;
        cg_err e;
        CG_CHECK(v != NULL);
        e = gw_json_get_money(v, &out);
        cJSON_Delete(v);
        if (want[i] >= 0) {
            CG_CHECK_EQ_INT(e, CG_ERR_OK);
            CG_CHECK_EQ_INT(out, want[i]);
        } else if (want[i] == -2) {
            CG_CHECK_EQ_INT(e, CG_ERR_OVERFLOW);
        } else {
            CG_CHECK_EQ_INT(e, CG_ERR_INVAL);
            CG_CHECK_EQ_INT(out, -7);
        }
    }
}

/* 1 if body[0..len) parses as one JSON value. */
static int test_parses(const char *body, size_t len)
{
    cJSON *v = gw_json_parse(body, len);
    int ok = v != NULL;
    cJSON_Delete(v);
    return ok;
}

CG_TEST(json_parse_strict)
{
    CG_CHECK(test_parses("{}", 2));
    CG_CHECK(test_parses("{} \n", 4));
    CG_CHECK(!test_parses("{} x", 4));
    CG_CHECK(!test_parses("{\"a\":", 5));
    CG_CHECK(!test_parses("", 0));
    CG_CHECK(!test_parses("{}{}", 4));
    /* Length-bounded: bytes past len are not read. */
    CG_CHECK(test_parses("{\"a\":1}garbage", 7));
}

static char *test_print(cJSON *v)
{
    char *s = gw_json_print(v, NULL);
    cJSON_Delete(v);
    return s;
}

CG_TEST(json_limit_print)
{
    proto_limit l;
    proto_limit_state st;
    char *s;

    memset(&l, 0, sizeof(l));
    l.id = 3;
    l.metric = PROTO_METRIC_COST;
    l.window.kind = CG_WIN_MONTH;
    l.max = 200 * CG_NUSD_PER_USD;
    l.warn_n = 2;
    l.warn_bp[0] = 5000;
    l.warn_bp[1] = 8000;
    s = test_print(gw_json_limit(&l, NULL));
    CG_CHECK_EQ_STR(s, "{\"id\":3,\"metric\":\"cost\",\"window\":\"month\",\"max\":\"200.00\","
                       "\"action\":\"block\",\"warn_at\":[0.5,0.8]}");
    cJSON_free(s);

    memset(&st, 0, sizeof(st));
    st.limit_id = 3;
    st.used = 199970000000LL;
    st.reserved = 1000000;
    st.period_end_ms = 1796083200000LL; /* 2026-12-01T00:00:00Z */
    s = test_print(gw_json_limit(&l, &st));
    CG_CHECK_EQ_STR(s, "{\"id\":3,\"metric\":\"cost\",\"window\":\"month\",\"max\":\"200.00\","
                       "\"action\":\"block\",\"warn_at\":[0.5,0.8],\"used\":\"199.97\","
                       "\"reserved\":\"0.001\",\"resets_at\":\"2026-12-01T00:00:00Z\"}");
    cJSON_free(s);

    l.metric = PROTO_METRIC_TOKENS;
    l.window.kind = CG_WIN_LIFETIME;
    l.max = 5000000;
    l.action = PROTO_ACTION_WARN;
    l.warn_n = 0;
    st.used = 42;
    st.reserved = 0;
    st.period_end_ms = 0;
    s = test_print(gw_json_limit(&l, &st));
    CG_CHECK_EQ_STR(s, "{\"id\":3,\"metric\":\"tokens\",\"window\":\"lifetime\",\"max\":5000000,"
                       "\"action\":\"warn\",\"warn_at\":[],\"used\":42,\"reserved\":0,"
                       "\"resets_at\":null}");
    cJSON_free(s);
}

/* Parse → print → parse gives the same limit. */
CG_TEST(json_limit_roundtrip)
{
    const char *j = "[{\"metric\":\"cost\",\"window\":\"week\",\"max\":\"123.456789\","
                    "\"action\":\"warn\",\"warn_at\":[0.25,0.75,1]}]";
    proto_limit a[PROTO_LIMITS_MAX], b[PROTO_LIMITS_MAX];
    uint8_t n = 0, m = 0;
    cJSON *arr, *obj;
    char *s;

    CG_CHECK_EQ_INT(test_limits(j, a, &n), CG_ERR_OK);
    obj = gw_json_limit(&a[0], NULL);
    CG_CHECK(obj != NULL);
    cJSON_DeleteItemFromObject(obj, "id"); /* output-only field */
    arr = cJSON_CreateArray();
    cJSON_AddItemToArray(arr, obj);
    s = test_print(arr);
    CG_CHECK_EQ_INT(test_limits(s, b, &m), CG_ERR_OK);
    cJSON_free(s);
    CG_CHECK_EQ_INT(m, 1);
    CG_CHECK_EQ_INT(a[0].id, b[0].id);
    CG_CHECK_EQ_INT(a[0].metric, b[0].metric);
    CG_CHECK_EQ_INT(a[0].window.kind, b[0].window.kind);
    CG_CHECK_EQ_INT(a[0].max, b[0].max);
    CG_CHECK_EQ_INT(a[0].action, b[0].action);
    CG_CHECK_EQ_INT(a[0].warn_n, b[0].warn_n);
    CG_CHECK(memcmp(a[0].warn_bp, b[0].warn_bp, sizeof(a[0].warn_bp)) == 0);
    CG_CHECK_EQ_INT(a[0].max, 123456789000LL);
}

CG_TEST(json_error_body)
{
    proto_refusal r;
    char *s;
    size_t len = 0;

    s = gw_json_error_body("authentication_error", "invalid_api_key", "Bad \"key\"", NULL, NULL,
                           &len);
    CG_CHECK_EQ_STR(s, "{\"error\":{\"message\":\"Bad \\\"key\\\"\",\"type\":"
                       "\"authentication_error\",\"code\":\"invalid_api_key\",\"param\":null}}");
    CG_CHECK_EQ_INT(len, strlen(s));
    cJSON_free(s);

    memset(&r, 0, sizeof(r));
    r.metric = PROTO_METRIC_COST;
    r.window.kind = CG_WIN_MONTH;
    r.max = 200 * CG_NUSD_PER_USD;
    r.used = 199970000000LL;
    r.resets_at_ms = 1796083200000LL;
    s = gw_json_error_body("insufficient_quota", "budget_exceeded", "cap reached", "model",
                           gw_json_refusal(PROTO_SCOPE_KEY, "k_8f3a", &r), &len);
    CG_CHECK_EQ_STR(s, "{\"error\":{\"message\":\"cap reached\",\"type\":\"insufficient_quota\","
                       "\"code\":\"budget_exceeded\",\"param\":\"model\",\"limit\":{\"scope\":"
                       "\"key\",\"scope_id\":\"k_8f3a\",\"metric\":\"cost\",\"window\":\"month\","
                       "\"max\":\"200.00\",\"used\":\"199.97\",\"resets_at\":"
                       "\"2026-12-01T00:00:00Z\"}}}");
    cJSON_free(s);
}

CG_TEST(json_check_fields)
{
    static const char *const allowed[] = {"a", "b", NULL};
    const char *j = "{\"a\":1,\"b\":2}";
    cJSON *v = gw_json_parse(j, strlen(j));

    CG_CHECK(v != NULL);
    CG_CHECK_EQ_INT(gw_json_check_fields(v, "", allowed, test_err, sizeof(test_err)), CG_ERR_OK);
    cJSON_AddNumberToObject(v, "zz", 3);
    CG_CHECK_EQ_INT(gw_json_check_fields(v, "", allowed, test_err, sizeof(test_err)), CG_ERR_INVAL);
    cJSON_Delete(v);
    CG_CHECK_EQ_STR(test_err, "zz: unknown field");
}

int main(void)
{
    return CG_TEST_RUN(json_limits_ok, json_limits_absent_or_empty, json_limits_refused,
                       json_warn_at_refused, json_warn_at_edges, json_too_many_limits,
                       json_sliding_when_allowed, json_sliding_rules,
                       json_limits_duplicates_and_natural_ids, json_limits_keep_ids,
                       json_limits_merge, json_money, json_parse_strict, json_limit_print,
                       json_limit_roundtrip, json_error_body, json_check_fields);
}
