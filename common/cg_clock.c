/*
 * cg_clock.c — wall and monotonic clocks.
 *
 * The static offset is written once at start-up, before any thread exists,
 * and only read afterwards; a relaxed atomic keeps that race-free under TSan
 * anyway.
 *
 * The test clock file (cg_clock_set_file) adds a second offset that running
 * processes pick up without a restart. Many threads call cg_now_ms at once, so
 * the file is re-read lazily: when CG_CLOCK_FILE_REREAD_MS of monotonic time
 * have passed, the one thread that wins a compare-and-swap on the `reading`
 * flag reads it and publishes the new offset; every other thread (including
 * those that lose the race) uses the cached offset and never blocks. The
 * offset is a single atomic int64, so a reader sees the old or the new value,
 * never a torn one. The path is written before threads start and published by
 * the release store of `cg_clock_file_on_`.
 */
#include "cg_clock.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CG_CLOCK_FILE_REREAD_MS 50
#define CG_CLOCK_FILE_PATH_MAX 511 /* CG_PATH_MAX in cg_config.h */
#define CG_CLOCK_FILE_BYTES_MAX 63 /* longer content is garbage: counts as 0 */
#define CG_CLOCK_FILE_MS_DIGITS 3  /* fraction digits that matter (ms precision) */
/* +-100 years, as clock_offset_s: cg_now_ms() cannot overflow. */
#define CG_CLOCK_FILE_ABS_MAX_S 3155760000LL

static _Atomic int64_t cg_clock_offset_ms_;

static char cg_clock_file_path_[CG_CLOCK_FILE_PATH_MAX + 1];
static atomic_bool cg_clock_file_on_;
static atomic_int cg_clock_file_reading_;           /* 1 while one thread re-reads */
static _Atomic int64_t cg_clock_file_next_mono_ms_; /* re-read once cg_mono_ms() reaches it */
static _Atomic int64_t cg_clock_file_offset_ms_;

static int64_t cg_clock_read_ns_(clockid_t id)
{
    struct timespec ts;
    /* clock_gettime cannot fail for these clock ids on Linux. */
    (void)clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + (int64_t)ts.tv_nsec;
}

/*
 * "[ws][-|+]digits[.digits][ws]" into milliseconds; false for anything else
 * or an absolute value over CG_CLOCK_FILE_ABS_MAX_S. Fraction digits past the
 * millisecond are ignored (truncated towards zero).
 */
static bool cg_clock_parse_s_(const char *s, int64_t *out_ms)
{
    while (isspace((unsigned char)*s)) {
        s++;
    }
    bool neg = *s == '-';
    if (*s == '-' || *s == '+') {
        s++;
    }
    int64_t sec = 0, ms = 0;
    const char *start = s;
    for (; isdigit((unsigned char)*s); s++) {
        sec = sec * 10 + (*s - '0');
        if (sec > CG_CLOCK_FILE_ABS_MAX_S) {
            return false;
        }
    }
    bool any = s != start;
    if (*s == '.') {
        s++;
        int digits = 0;
        for (; isdigit((unsigned char)*s); s++, digits++) {
            ms = digits < CG_CLOCK_FILE_MS_DIGITS ? ms * 10 + (*s - '0') : ms;
        }
        for (int k = digits; k < CG_CLOCK_FILE_MS_DIGITS; k++) {
            ms *= 10; /* "1.5" is 1500 ms */
        }
        any = any || digits > 0;
    }
    while (isspace((unsigned char)*s)) {
        s++;
    }
    if (!any || *s != '\0') {
        return false;
    }
    int64_t v = sec * 1000 + ms;
    *out_ms = neg ? -v : v;
    return true;
}

/* The file's offset in ms; 0 if it is missing, unreadable, too long or not a number. */
static int64_t cg_clock_file_read_(void)
{
    char buf[CG_CLOCK_FILE_BYTES_MAX + 2];
    int fd = open(cg_clock_file_path_, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    size_t len = 0;
    while (len < sizeof(buf) - 1) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    int64_t ms;
    if (len > CG_CLOCK_FILE_BYTES_MAX || strlen(buf) != len || !cg_clock_parse_s_(buf, &ms)) {
        return 0;
    }
    return ms;
}

/* The file offset, re-read by at most one thread at a time once it is due. */
static int64_t cg_clock_file_offset_(void)
{
    int64_t mono = cg_mono_ms();
    int64_t due = atomic_load_explicit(&cg_clock_file_next_mono_ms_, memory_order_relaxed);
    int idle = 0;
    if (mono >= due &&
        atomic_compare_exchange_strong_explicit(&cg_clock_file_reading_, &idle, 1,
                                                memory_order_acquire, memory_order_relaxed)) {
        /* Another thread may have re-read between our load and the CAS: check again. */
        if (mono >= atomic_load_explicit(&cg_clock_file_next_mono_ms_, memory_order_relaxed)) {
            atomic_store_explicit(&cg_clock_file_offset_ms_, cg_clock_file_read_(),
                                  memory_order_relaxed);
            atomic_store_explicit(&cg_clock_file_next_mono_ms_, mono + CG_CLOCK_FILE_REREAD_MS,
                                  memory_order_relaxed);
        }
        atomic_store_explicit(&cg_clock_file_reading_, 0, memory_order_release);
    }
    return atomic_load_explicit(&cg_clock_file_offset_ms_, memory_order_relaxed);
}

int64_t cg_now_ms(void)
{
    int64_t off = atomic_load_explicit(&cg_clock_offset_ms_, memory_order_relaxed);
    if (atomic_load_explicit(&cg_clock_file_on_, memory_order_acquire)) {
        off += cg_clock_file_offset_();
    }
    return cg_clock_read_ns_(CLOCK_REALTIME) / 1000000LL + off;
}

int64_t cg_mono_ms(void)
{
    return cg_clock_read_ns_(CLOCK_MONOTONIC) / 1000000LL;
}

int64_t cg_mono_us(void)
{
    return cg_clock_read_ns_(CLOCK_MONOTONIC) / 1000LL;
}

void cg_clock_set_offset_ms(int64_t offset_ms)
{
    atomic_store_explicit(&cg_clock_offset_ms_, offset_ms, memory_order_relaxed);
}

void cg_clock_set_file(const char *path)
{
    if (path == NULL || path[0] == '\0') {
        atomic_store_explicit(&cg_clock_file_on_, false, memory_order_release);
        return;
    }
    size_t n = strnlen(path, CG_CLOCK_FILE_PATH_MAX + 1);
    if (n > CG_CLOCK_FILE_PATH_MAX) {
        n = CG_CLOCK_FILE_PATH_MAX; /* cg_config bounds paths to CG_PATH_MAX already */
    }
    memcpy(cg_clock_file_path_, path, n);
    cg_clock_file_path_[n] = '\0';
    /* Read now, so the very first cg_now_ms() already carries the offset. */
    atomic_store_explicit(&cg_clock_file_offset_ms_, cg_clock_file_read_(), memory_order_relaxed);
    atomic_store_explicit(&cg_clock_file_next_mono_ms_, cg_mono_ms() + CG_CLOCK_FILE_REREAD_MS,
                          memory_order_relaxed);
    atomic_store_explicit(&cg_clock_file_on_, true, memory_order_release);
}
