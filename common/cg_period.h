/*
 * cg_period.h — limit windows and calendar period arithmetic, UTC.
 *
 * Calendar windows (day, week starting Monday, month with an anchor day) map a
 * timestamp to a period index: a new period is simply a new counter, so there
 * is no reset job. Sliding windows (`<N>s|m|h|d`) are counted in buckets of at
 * most 1/60 of their length (cg_window_bucket_ms).
 */
#ifndef CG_PERIOD_H
#define CG_PERIOD_H
#include <stddef.h>
#include <stdint.h>
#include "cg_err.h"

typedef enum cg_window_kind {
    CG_WIN_LIFETIME = 0,
    CG_WIN_DAY = 1,
    CG_WIN_WEEK = 2,
    CG_WIN_MONTH = 3,
    CG_WIN_SLIDING = 4,
} cg_window_kind;

/* Longest sliding window accepted: 366 days. */
#define CG_WINDOW_SLIDING_MAX_S (366u * 86400u)

typedef struct cg_window {
    uint8_t kind;       /* cg_window_kind */
    uint32_t sliding_s; /* window length in seconds, kind == CG_WIN_SLIDING only; 1..max */
} cg_window;

typedef struct cg_period {
    int64_t
        index; /* lifetime: 0; day: days since epoch; week: Monday-weeks; month: months since 1970-01 */
    int64_t start_ms; /* inclusive; lifetime: 0 */
    int64_t end_ms;   /* exclusive, the reset time; lifetime: INT64_MAX */
} cg_period;

/* Parse "lifetime" | "day" | "week" | "month" | "<N>s|m|h|d" (N >= 1). */
cg_err cg_window_parse(const char *s, cg_window *out);
/* Inverse of cg_window_parse ("1m" is printed as "1m", 3600s as "1h"). Returns length, 0 if cap too small. */
size_t cg_window_format(cg_window w, char *buf, size_t cap);
/* Sliding windows: bucket length in ms = ceil(window / 60), at least 1000 ms. */
int64_t cg_window_bucket_ms(cg_window w);

/*
 * The calendar period of window w that contains t_ms. anchor_day (1..28)
 * applies to CG_WIN_MONTH only: the period runs from day anchor_day of one
 * month to the same day of the next. Returns CG_ERR_INVAL for sliding windows
 * or a bad anchor.
 */
cg_err cg_period_of(cg_window w, uint8_t anchor_day, int64_t t_ms, cg_period *out);

/* Proleptic Gregorian day numbers (days since 1970-01-01) and back. */
int64_t cg_days_from_civil(int64_t y, unsigned m, unsigned d);
void cg_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d);

/* "2026-12-01T00:00:00Z" (RFC 3339, UTC, seconds). Returns length, 0 if cap < 21. */
size_t cg_time_format(int64_t t_ms, char *buf, size_t cap);
/* Parse RFC 3339 "YYYY-MM-DDTHH:MM:SS[.fff](Z|+hh:mm)" or a date "YYYY-MM-DD". */
cg_err cg_time_parse(const char *s, int64_t *out_ms);

#endif
