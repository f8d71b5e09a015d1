/*
 * cg_period.c — window syntax, calendar periods and RFC 3339 time, all UTC.
 *
 * A period index is a pure function of (window, anchor day, timestamp): every
 * process computes the same index for the same instant, so a new period is a
 * new counter and nothing is ever reset. Civil-date conversion is Howard
 * Hinnant's days_from_civil / civil_from_days (proleptic Gregorian, exact for
 * any int64 day count within range). Timestamps are bounded by
 * CG_PERIOD_T_ABS_MAX_MS so that period ends never overflow.
 */
#include "cg_period.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define CG_MS_PER_S 1000LL
#define CG_MS_PER_DAY 86400000LL
#define CG_BUCKETS_PER_WINDOW 60
#define CG_BUCKET_MIN_MS 1000
/* |t_ms| accepted by cg_period_of: about 3 million years either side of 1970. */
#define CG_PERIOD_T_ABS_MAX_MS 100000000000000000LL
/* 1970-01-01 was a Thursday: Monday 1969-12-29 is day -3. */
#define CG_EPOCH_MONDAY_OFFSET_DAYS 3
#define CG_ANCHOR_DAY_MAX 28

static int64_t cg_floor_div_(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) {
        q--;
    }
    return q;
}

typedef struct cg_window_unit {
    char suffix;
    uint32_t seconds;
} cg_window_unit;

/* Largest first, so cg_window_format picks the largest exact unit. */
static const cg_window_unit cg_window_units_[] = {
    {'d', 86400u},
    {'h', 3600u},
    {'m', 60u},
    {'s', 1u},
};

static const char *const cg_window_names_[] = {
    [CG_WIN_LIFETIME] = "lifetime",
    [CG_WIN_DAY] = "day",
    [CG_WIN_WEEK] = "week",
    [CG_WIN_MONTH] = "month",
};

cg_err cg_window_parse(const char *s, cg_window *out)
{
    if (s == NULL || *s == '\0') {
        return CG_ERR_PARSE;
    }
    for (int k = CG_WIN_LIFETIME; k <= CG_WIN_MONTH; k++) {
        if (strcmp(s, cg_window_names_[k]) == 0) {
            out->kind = (uint8_t)k;
            out->sliding_s = 0;
            return CG_ERR_OK;
        }
    }
    uint64_t n = 0;
    size_t i = 0;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        n = n * 10u + (uint64_t)(s[i] - '0');
        if (n > CG_WINDOW_SLIDING_MAX_S) {
            return CG_ERR_RANGE;
        }
    }
    if (i == 0 || s[i] == '\0' || s[i + 1] != '\0') {
        return CG_ERR_PARSE;
    }
    for (size_t u = 0; u < sizeof(cg_window_units_) / sizeof(cg_window_units_[0]); u++) {
        if (s[i] != cg_window_units_[u].suffix) {
            continue;
        }
        uint64_t total = n * cg_window_units_[u].seconds;
        if (n == 0 || total > CG_WINDOW_SLIDING_MAX_S) {
            return CG_ERR_RANGE;
        }
        out->kind = CG_WIN_SLIDING;
        out->sliding_s = (uint32_t)total;
        return CG_ERR_OK;
    }
    return CG_ERR_PARSE;
}

size_t cg_window_format(cg_window w, char *buf, size_t cap)
{
    int n = -1;
    if (w.kind <= CG_WIN_MONTH) {
        n = snprintf(buf, cap, "%s", cg_window_names_[w.kind]);
    } else if (w.kind == CG_WIN_SLIDING && w.sliding_s > 0) {
        for (size_t u = 0; u < sizeof(cg_window_units_) / sizeof(cg_window_units_[0]); u++) {
            if (w.sliding_s % cg_window_units_[u].seconds == 0) {
                n = snprintf(buf, cap, "%u%c", w.sliding_s / cg_window_units_[u].seconds,
                             cg_window_units_[u].suffix);
                break;
            }
        }
    }
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0) {
            buf[0] = '\0';
        }
        return 0;
    }
    return (size_t)n;
}

int64_t cg_window_bucket_ms(cg_window w)
{
    if (w.kind != CG_WIN_SLIDING) {
        return 0;
    }
    int64_t ms = (int64_t)w.sliding_s * CG_MS_PER_S;
    int64_t b = (ms + CG_BUCKETS_PER_WINDOW - 1) / CG_BUCKETS_PER_WINDOW;
    return b < CG_BUCKET_MIN_MS ? CG_BUCKET_MIN_MS : b;
}

int64_t cg_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;                                   /* [0, 399] */
    const int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* [0, 365] */
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;           /* [0, 146096] */
    return era * 146097 + doe - 719468;
}

void cg_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const int64_t doe = z - era * 146097;                                      /* [0, 146096] */
    const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
    const int64_t mp = (5 * doy + 2) / 153;                                    /* [0, 11] */
    *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static void cg_period_month_(uint8_t anchor, int64_t t_ms, cg_period *out)
{
    int64_t y;
    unsigned m, d;
    cg_civil_from_days(cg_floor_div_(t_ms, CG_MS_PER_DAY), &y, &m, &d);
    /* Before the anchor day, t still belongs to the period that began last month. */
    int64_t mi = (y - 1970) * 12 + (int64_t)(m - 1) - (d < anchor ? 1 : 0);
    int64_t sy = 1970 + cg_floor_div_(mi, 12);
    unsigned sm = (unsigned)(mi - cg_floor_div_(mi, 12) * 12) + 1;
    int64_t ey = sm == 12 ? sy + 1 : sy;
    unsigned em = sm == 12 ? 1 : sm + 1;
    out->index = mi;
    out->start_ms = cg_days_from_civil(sy, sm, anchor) * CG_MS_PER_DAY;
    out->end_ms = cg_days_from_civil(ey, em, anchor) * CG_MS_PER_DAY;
}

cg_err cg_period_of(cg_window w, uint8_t anchor_day, int64_t t_ms, cg_period *out)
{
    if (t_ms > CG_PERIOD_T_ABS_MAX_MS || t_ms < -CG_PERIOD_T_ABS_MAX_MS) {
        return CG_ERR_RANGE;
    }
    int64_t days = cg_floor_div_(t_ms, CG_MS_PER_DAY);
    switch (w.kind) {
    case CG_WIN_LIFETIME:
        out->index = 0;
        out->start_ms = 0;
        out->end_ms = INT64_MAX;
        return CG_ERR_OK;
    case CG_WIN_DAY:
        out->index = days;
        out->start_ms = days * CG_MS_PER_DAY;
        out->end_ms = out->start_ms + CG_MS_PER_DAY;
        return CG_ERR_OK;
    case CG_WIN_WEEK: {
        int64_t wk = cg_floor_div_(days + CG_EPOCH_MONDAY_OFFSET_DAYS, 7);
        out->index = wk;
        out->start_ms = (wk * 7 - CG_EPOCH_MONDAY_OFFSET_DAYS) * CG_MS_PER_DAY;
        out->end_ms = out->start_ms + 7 * CG_MS_PER_DAY;
        return CG_ERR_OK;
    }
    case CG_WIN_MONTH:
        if (anchor_day < 1 || anchor_day > CG_ANCHOR_DAY_MAX) {
            return CG_ERR_INVAL;
        }
        cg_period_month_(anchor_day, t_ms, out);
        return CG_ERR_OK;
    default:
        return CG_ERR_INVAL;
    }
}

size_t cg_time_format(int64_t t_ms, char *buf, size_t cap)
{
    int64_t days = cg_floor_div_(t_ms, CG_MS_PER_DAY);
    int64_t sod = (t_ms - days * CG_MS_PER_DAY) / CG_MS_PER_S;
    int64_t y;
    unsigned m, d;
    cg_civil_from_days(days, &y, &m, &d);
    if (cap < 21 || y < 0 || y > 9999) {
        if (cap > 0) {
            buf[0] = '\0';
        }
        return 0;
    }
    int n = snprintf(buf, cap, "%04lld-%02u-%02uT%02d:%02d:%02dZ", (long long)y, m, d,
                     (int)(sod / 3600), (int)(sod / 60 % 60), (int)(sod % 60));
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* Read exactly n digits at *p into *v; advance *p. */
static bool cg_time_digits_(const char **p, int n, int *v)
{
    int x = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9') {
            return false;
        }
        x = x * 10 + (c - '0');
    }
    *p += n;
    *v = x;
    return true;
}

static bool cg_time_expect_(const char **p, char c)
{
    if (**p != c) {
        return false;
    }
    (*p)++;
    return true;
}

static unsigned cg_days_in_month_(int64_t y, unsigned m)
{
    static const unsigned dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : dim[m - 1];
}

/* Parse "[.fff...](Z|±hh:mm)" after the seconds; *ms gets the fraction, *off_ms the offset. */
static cg_err cg_time_parse_tail_(const char *p, int64_t *ms, int64_t *off_ms)
{
    *ms = 0;
    if (*p == '.') {
        p++;
        int n = 0;
        for (; *p >= '0' && *p <= '9'; p++, n++) {
            if (n < 3) {
                *ms = *ms * 10 + (*p - '0');
            }
        }
        if (n == 0) {
            return CG_ERR_PARSE;
        }
        for (; n < 3; n++) {
            *ms *= 10;
        }
    }
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
        *off_ms = 0;
        return CG_ERR_OK;
    }
    if (*p != '+' && *p != '-') {
        return CG_ERR_PARSE;
    }
    int sign = *p == '-' ? -1 : 1;
    int oh, om;
    p++;
    if (!cg_time_digits_(&p, 2, &oh) || !cg_time_expect_(&p, ':') || !cg_time_digits_(&p, 2, &om) ||
        *p != '\0' || oh > 23 || om > 59) {
        return CG_ERR_PARSE;
    }
    *off_ms = sign * ((int64_t)oh * 3600 + om * 60) * CG_MS_PER_S;
    return CG_ERR_OK;
}

cg_err cg_time_parse(const char *s, int64_t *out_ms)
{
    if (s == NULL) {
        return CG_ERR_PARSE;
    }
    const char *p = s;
    int y, mo, d, h = 0, mi = 0, sec = 0;
    if (!cg_time_digits_(&p, 4, &y) || !cg_time_expect_(&p, '-') || !cg_time_digits_(&p, 2, &mo) ||
        !cg_time_expect_(&p, '-') || !cg_time_digits_(&p, 2, &d)) {
        return CG_ERR_PARSE;
    }
    if (mo < 1 || mo > 12 || d < 1 || (unsigned)d > cg_days_in_month_(y, (unsigned)mo)) {
        return CG_ERR_RANGE;
    }
    int64_t frac_ms = 0, off_ms = 0;
    if (*p != '\0') {
        if (*p != 'T' && *p != 't') {
            return CG_ERR_PARSE;
        }
        p++;
        if (!cg_time_digits_(&p, 2, &h) || !cg_time_expect_(&p, ':') ||
            !cg_time_digits_(&p, 2, &mi) || !cg_time_expect_(&p, ':') ||
            !cg_time_digits_(&p, 2, &sec)) {
            return CG_ERR_PARSE;
        }
        if (h > 23 || mi > 59 || sec > 59) {
            return CG_ERR_RANGE;
        }
        cg_err err = cg_time_parse_tail_(p, &frac_ms, &off_ms);
        if (err != CG_ERR_OK) {
            return err;
        }
    }
    int64_t days = cg_days_from_civil(y, (unsigned)mo, (unsigned)d);
    *out_ms =
        days * CG_MS_PER_DAY + ((int64_t)h * 3600 + mi * 60 + sec) * CG_MS_PER_S + frac_ms - off_ms;
    return CG_ERR_OK;
}
