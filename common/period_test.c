/*
 * period_test.c — windows, calendar periods (week Monday, month anchors) and RFC 3339.
 */
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "cg_period.h"
#include "cg_test.h"

#define DAY_MS 86400000LL

static int64_t ms_of(const char *s)
{
    int64_t t = INT64_MIN;
    if (cg_time_parse(s, &t) != CG_ERR_OK) {
        return INT64_MIN;
    }
    return t;
}

CG_TEST(period_civil)
{
    CG_CHECK_EQ_INT(cg_days_from_civil(1970, 1, 1), 0);
    CG_CHECK_EQ_INT(cg_days_from_civil(2000, 3, 1), 11017);
    CG_CHECK_EQ_INT(cg_days_from_civil(2026, 12, 1), 20788);
    CG_CHECK_EQ_INT(cg_days_from_civil(1969, 12, 31), -1);
    CG_CHECK_EQ_INT(cg_days_from_civil(1600, 2, 29), -135081);
    /* Round-trip every day over ~1,100 years, leap rules included. */
    for (int64_t z = -200000; z < 200000; z += 1) {
        int64_t y;
        unsigned m, d;
        cg_civil_from_days(z, &y, &m, &d);
        if (cg_days_from_civil(y, m, d) != z || m < 1 || m > 12 || d < 1 || d > 31) {
            CG_CHECK_EQ_INT(z, -1);
        }
    }
    int64_t y;
    unsigned m, d;
    cg_civil_from_days(20778, &y, &m, &d);
    CG_CHECK(y == 2026 && m == 11 && d == 21);
}

CG_TEST(period_window_parse_format)
{
    struct {
        const char *in, *out;
        uint8_t kind;
        uint32_t s;
    } ok[] = {
        {"lifetime", "lifetime", CG_WIN_LIFETIME, 0},
        {"day", "day", CG_WIN_DAY, 0},
        {"week", "week", CG_WIN_WEEK, 0},
        {"month", "month", CG_WIN_MONTH, 0},
        {"1m", "1m", CG_WIN_SLIDING, 60},
        {"90s", "90s", CG_WIN_SLIDING, 90},
        {"3600s", "1h", CG_WIN_SLIDING, 3600},
        {"5h", "5h", CG_WIN_SLIDING, 18000},
        {"24h", "1d", CG_WIN_SLIDING, 86400},
        {"7d", "7d", CG_WIN_SLIDING, 604800},
        {"120m", "2h", CG_WIN_SLIDING, 7200},
        {"366d", "366d", CG_WIN_SLIDING, 31622400},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        cg_window w = {0};
        char b[32];
        CG_CHECK(cg_window_parse(ok[i].in, &w) == CG_ERR_OK);
        CG_CHECK_EQ_INT(w.kind, ok[i].kind);
        CG_CHECK_EQ_INT(w.sliding_s, ok[i].s);
        CG_CHECK(cg_window_format(w, b, sizeof(b)) == strlen(ok[i].out));
        CG_CHECK_EQ_STR(b, ok[i].out);
    }
    const char *bad[] = {"",    "0s",    "0m",  "m",   "1",    "1x",
                         "1mm", "-1m",   " 1m", "1m ", "367d", "99999999999999999999s",
                         "Day", "months"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cg_window w;
        CG_CHECK(cg_window_parse(bad[i], &w) != CG_ERR_OK);
    }
    char b[4];
    cg_window lt = {CG_WIN_LIFETIME, 0};
    CG_CHECK_EQ_INT(cg_window_format(lt, b, sizeof(b)), 0);
}

CG_TEST(period_bucket)
{
    cg_window w = {CG_WIN_SLIDING, 60};
    CG_CHECK_EQ_INT(cg_window_bucket_ms(w), 1000);
    w.sliding_s = 30;
    CG_CHECK_EQ_INT(cg_window_bucket_ms(w), 1000); /* at least 1 s */
    w.sliding_s = 3600;
    CG_CHECK_EQ_INT(cg_window_bucket_ms(w), 60000);
    w.sliding_s = 61;
    CG_CHECK_EQ_INT(cg_window_bucket_ms(w), 1017); /* ceil(61000 / 60) */
}

CG_TEST(period_day_week)
{
    cg_period p;
    cg_window day = {CG_WIN_DAY, 0}, week = {CG_WIN_WEEK, 0}, life = {CG_WIN_LIFETIME, 0};
    int64_t t = ms_of("2026-11-21T10:04:05Z"); /* a Saturday */
    CG_CHECK(cg_period_of(day, 1, t, &p) == CG_ERR_OK);
    CG_CHECK_EQ_INT(p.index, 20778);
    CG_CHECK_EQ_INT(p.start_ms, ms_of("2026-11-21"));
    CG_CHECK_EQ_INT(p.end_ms, ms_of("2026-11-22"));
    CG_CHECK(cg_period_of(week, 1, t, &p) == CG_ERR_OK);
    CG_CHECK_EQ_INT(p.start_ms, ms_of("2026-11-16")); /* Monday */
    CG_CHECK_EQ_INT(p.end_ms, ms_of("2026-11-23"));
    /* Thursday 1970-01-01 is in week 0, which began Monday 1969-12-29. */
    CG_CHECK(cg_period_of(week, 1, 0, &p) == CG_ERR_OK);
    CG_CHECK_EQ_INT(p.index, 0);
    CG_CHECK_EQ_INT(p.start_ms, -3 * DAY_MS);
    CG_CHECK(cg_period_of(week, 1, 4 * DAY_MS, &p) == CG_ERR_OK); /* Monday 1970-01-05 */
    CG_CHECK_EQ_INT(p.index, 1);
    CG_CHECK(cg_period_of(week, 1, 4 * DAY_MS - 1, &p) == CG_ERR_OK);
    CG_CHECK_EQ_INT(p.index, 0);
    CG_CHECK(cg_period_of(day, 1, -1, &p) == CG_ERR_OK);
    CG_CHECK_EQ_INT(p.index, -1);
    CG_CHECK(cg_period_of(life, 0, t, &p) == CG_ERR_OK);
    CG_CHECK(p.index == 0 && p.start_ms == 0 && p.end_ms == INT64_MAX);
}

CG_TEST(period_month_anchor)
{
    cg_period p;
    cg_window month = {CG_WIN_MONTH, 0};
    CG_CHECK(cg_period_of(month, 1, ms_of("2026-11-21T10:04:05Z"), &p) == CG_ERR_OK);
    CG_CHECK_EQ_INT(p.index, (2026 - 1970) * 12 + 10);
    CG_CHECK_EQ_INT(p.start_ms, ms_of("2026-11-01"));
    CG_CHECK_EQ_INT(p.end_ms, ms_of("2026-12-01T00:00:00Z"));
    /* Anchor 15: the 14th still belongs to the period that began on the 15th before. */
    CG_CHECK(cg_period_of(month, 15, ms_of("2026-11-14T23:59:59.999Z"), &p) == CG_ERR_OK);
    CG_CHECK_EQ_INT(p.index, (2026 - 1970) * 12 + 9);
    CG_CHECK_EQ_INT(p.start_ms, ms_of("2026-10-15"));
    CG_CHECK_EQ_INT(p.end_ms, ms_of("2026-11-15"));
    CG_CHECK(cg_period_of(month, 15, ms_of("2026-11-15"), &p) == CG_ERR_OK);
    CG_CHECK_EQ_INT(p.index, (2026 - 1970) * 12 + 10);
    /* Across the year boundary, both ways. */
    CG_CHECK(cg_period_of(month, 28, ms_of("2027-01-10"), &p) == CG_ERR_OK);
    CG_CHECK_EQ_INT(p.start_ms, ms_of("2026-12-28"));
    CG_CHECK_EQ_INT(p.end_ms, ms_of("2027-01-28"));
    CG_CHECK(cg_period_of(month, 28, ms_of("2026-12-30"), &p) == CG_ERR_OK);
    CG_CHECK_EQ_INT(p.end_ms, ms_of("2027-01-28"));
    /* Before the epoch. */
    CG_CHECK(cg_period_of(month, 1, -1, &p) == CG_ERR_OK);
    CG_CHECK_EQ_INT(p.index, -1);
    CG_CHECK_EQ_INT(p.start_ms, ms_of("1969-12-01"));
    CG_CHECK_EQ_INT(p.end_ms, 0);
    CG_CHECK_EQ_INT(cg_period_of(month, 0, 0, &p), CG_ERR_INVAL);
    CG_CHECK_EQ_INT(cg_period_of(month, 29, 0, &p), CG_ERR_INVAL);
    cg_window sl = {CG_WIN_SLIDING, 60};
    CG_CHECK_EQ_INT(cg_period_of(sl, 1, 0, &p), CG_ERR_INVAL);
}

CG_TEST(period_consecutive)
{
    /* Every period ends where the next begins, and contains its instants. */
    cg_window ws[] = {{CG_WIN_DAY, 0}, {CG_WIN_WEEK, 0}, {CG_WIN_MONTH, 0}};
    for (size_t k = 0; k < 3; k++) {
        for (uint8_t anchor = 1; anchor <= 28; anchor += 9) {
            int64_t t = ms_of("1999-12-01");
            cg_period p, q;
            CG_CHECK(cg_period_of(ws[k], anchor, t, &p) == CG_ERR_OK);
            for (int i = 0; i < 100; i++) {
                CG_CHECK(p.start_ms <= t && t < p.end_ms);
                CG_CHECK(cg_period_of(ws[k], anchor, p.end_ms, &q) == CG_ERR_OK);
                CG_CHECK_EQ_INT(q.start_ms, p.end_ms);
                CG_CHECK_EQ_INT(q.index, p.index + 1);
                CG_CHECK(cg_period_of(ws[k], anchor, p.end_ms - 1, &q) == CG_ERR_OK);
                CG_CHECK_EQ_INT(q.start_ms, p.start_ms);
                t = p.end_ms + (p.end_ms - p.start_ms) / 3;
                CG_CHECK(cg_period_of(ws[k], anchor, p.end_ms, &p) == CG_ERR_OK);
            }
        }
    }
}

CG_TEST(period_time_format)
{
    char b[32];
    CG_CHECK_EQ_INT(cg_time_format(1796083200000LL, b, sizeof(b)), 20);
    CG_CHECK_EQ_STR(b, "2026-12-01T00:00:00Z");
    cg_time_format(1795255445999LL, b, sizeof(b));
    CG_CHECK_EQ_STR(b, "2026-11-21T10:04:05Z");
    cg_time_format(-1, b, sizeof(b));
    CG_CHECK_EQ_STR(b, "1969-12-31T23:59:59Z");
    CG_CHECK_EQ_INT(cg_time_format(0, b, 20), 0);
    CG_CHECK_EQ_INT(cg_time_format(0, b, 21), 20);
    CG_CHECK_EQ_STR(b, "1970-01-01T00:00:00Z");
}

CG_TEST(period_time_parse)
{
    CG_CHECK_EQ_INT(ms_of("2026-12-01T00:00:00Z"), 1796083200000LL);
    CG_CHECK_EQ_INT(ms_of("2026-12-01"), 1796083200000LL);
    CG_CHECK_EQ_INT(ms_of("2026-11-21T10:04:05.123Z"), 1795255445123LL);
    CG_CHECK_EQ_INT(ms_of("2026-11-21T10:04:05.1Z"), 1795255445100LL);
    CG_CHECK_EQ_INT(ms_of("2026-11-21T10:04:05.123456789Z"), 1795255445123LL);
    CG_CHECK_EQ_INT(ms_of("2026-11-21T12:04:05+02:00"), 1795255445000LL);
    CG_CHECK_EQ_INT(ms_of("2026-11-21T05:34:05-04:30"), 1795255445000LL);
    CG_CHECK_EQ_INT(ms_of("2026-11-21t10:04:05z"), 1795255445000LL);
    CG_CHECK_EQ_INT(ms_of("2024-02-29"), 1709164800000LL);
    const char *bad[] = {"",
                         "2026",
                         "2026-13-01",
                         "2026-02-29",
                         "2026-11-31",
                         "2026-00-10",
                         "2026-11-21T24:00:00Z",
                         "2026-11-21T10:04:05",
                         "2026-11-21T10:04Z",
                         "2026-11-21T10:04:05.Z",
                         "2026-11-21T10:04:05+0200",
                         "2026-11-21T10:04:05+02:00x",
                         "2026-11-21 10:04:05Z",
                         "26-11-21",
                         "2026-11-21Z",
                         "2026-11-21T10:04:05+24:00"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t t = 42;
        CG_CHECK(cg_time_parse(bad[i], &t) != CG_ERR_OK);
        CG_CHECK_EQ_INT(t, 42);
    }
    /* format -> parse round trip */
    char b[32];
    cg_time_format(1234567890000LL, b, sizeof(b));
    CG_CHECK_EQ_INT(ms_of(b), 1234567890000LL);
}

int main(void)
{
    return CG_TEST_RUN(period_civil, period_window_parse_format, period_bucket, period_day_week,
                       period_month_anchor, period_consecutive, period_time_format,
                       period_time_parse);
}
