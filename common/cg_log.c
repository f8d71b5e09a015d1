/*
 * cg_log.c — JSON-lines logging to stderr.
 *
 * Each line is built in a stack buffer of CG_LOG_LINE_MAX bytes and written
 * with a single write(2) on fd 2, so lines from concurrent threads never
 * interleave (writes to a pipe up to PIPE_BUF are atomic; longer ones to a
 * file opened O_APPEND are too in practice). Invariants: every line is one
 * valid JSON object followed by '\n'; strings are escaped (quotes, backslash,
 * control characters) and invalid UTF-8 bytes become U+FFFD; a line that does
 * not fit is cut at a character boundary, its strings closed, and marked with
 * "truncated":true. cg_log_init runs before threads start.
 */
#include "cg_log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cg_clock.h"
#include "cg_period.h"

#define CG_LOG_LINE_MAX 8192
/* Room kept free for the closing `,"truncated":true}\n`. */
#define CG_LOG_TAIL_RESERVE 32
#define CG_LOG_PROC_MAX 63
#define CG_LOG_FMT_MAX 4096
#define CG_LOG_FD 2

static char cg_log_proc_[CG_LOG_PROC_MAX + 1] = "capgate";
static _Atomic int cg_log_min_level_ = CG_LOG_INFO;

static const char *const cg_log_level_names_[] = {
    [CG_LOG_DEBUG] = "debug",
    [CG_LOG_INFO] = "info",
    [CG_LOG_WARN] = "warn",
    [CG_LOG_ERROR] = "error",
};

typedef struct cg_log_buf {
    char data[CG_LOG_LINE_MAX];
    size_t len;
    size_t limit; /* content may not pass this; the tail reserve follows */
    bool truncated;
} cg_log_buf;

void cg_log_init(const char *proc, int level)
{
    if (proc != NULL) {
        snprintf(cg_log_proc_, sizeof(cg_log_proc_), "%s", proc);
    }
    atomic_store(&cg_log_min_level_, level);
}

int cg_log_level_parse(const char *s)
{
    if (s == NULL) {
        return -1;
    }
    for (int i = CG_LOG_DEBUG; i <= CG_LOG_ERROR; i++) {
        if (strcmp(s, cg_log_level_names_[i]) == 0) {
            return i;
        }
    }
    return -1;
}

/* Append n raw bytes if they fit under the limit; otherwise mark the line truncated. */
static bool cg_log_raw_(cg_log_buf *b, const char *s, size_t n)
{
    if (b->truncated || b->len + n > b->limit) {
        b->truncated = true;
        return false;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return true;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 if invalid. */
static size_t cg_log_utf8_len_(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF) {
            return 0;
        }
    }
    return len;
}

/* Append one escaped unit for the character at s; returns bytes of s consumed. */
static size_t cg_log_escape_one_(cg_log_buf *b, const unsigned char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char c = s[0];
    char esc[8];
    if (c == '"' || c == '\\') {
        esc[0] = '\\';
        esc[1] = (char)c;
        cg_log_raw_(b, esc, 2);
        return 1;
    }
    if (c < 0x20 || c == 0x7f) {
        const char *named = c == '\n'   ? "\\n"
                            : c == '\r' ? "\\r"
                            : c == '\t' ? "\\t"
                            : c == '\b' ? "\\b"
                            : c == '\f' ? "\\f"
                                        : NULL;
        if (named != NULL) {
            cg_log_raw_(b, named, 2);
        } else {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            cg_log_raw_(b, esc, 6);
        }
        return 1;
    }
    if (c < 0x80) {
        cg_log_raw_(b, (const char *)s, 1);
        return 1;
    }
    size_t len = cg_log_utf8_len_(s, n);
    if (len == 0) {
        cg_log_raw_(b, "\xEF\xBF\xBD", 3); /* U+FFFD replaces one invalid byte */
        return 1;
    }
    cg_log_raw_(b, (const char *)s, len);
    return len;
}

/*
 * Append s as a JSON string. If the content does not fit it is cut at a
 * character boundary and the string is still closed (the quote comes out of
 * the tail reserve), so the line stays valid JSON.
 */
static void cg_log_str_(cg_log_buf *b, const char *s)
{
    if (!cg_log_raw_(b, "\"", 1)) {
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    while (n > 0 && !b->truncated) {
        size_t used = cg_log_escape_one_(b, p, n);
        p += used;
        n -= used;
    }
    b->data[b->len++] = '"';
}

/* Append `,"key":"value"`; a pair whose key or opening does not fit is dropped whole. */
static void cg_log_pair_(cg_log_buf *b, const char *key, const char *value)
{
    if (b->truncated) {
        return;
    }
    size_t mark = b->len;
    cg_log_raw_(b, ",", 1);
    cg_log_str_(b, key);
    cg_log_raw_(b, ":", 1);
    if (b->truncated) {
        b->len = mark; /* never leave a key without its value */
        return;
    }
    if (value == NULL) {
        cg_log_raw_(b, "null", 4);
        if (b->truncated) {
            b->len = mark;
        }
        return;
    }
    size_t before = b->len;
    cg_log_str_(b, value);
    if (b->truncated && b->len <= before + 1) {
        b->len = mark; /* not even the opening quote fitted */
    }
}

static void cg_log_write_(const char *data, size_t len)
{
    ssize_t w;
    do {
        w = write(CG_LOG_FD, data, len);
    } while (w < 0 && errno == EINTR);
    /* A failed log write has nowhere to be reported; dropping it is deliberate. */
}

static void cg_log_begin_(cg_log_buf *b, int level, const char *msg)
{
    char ts[40];
    int64_t now = cg_now_ms();
    size_t tn = cg_time_format(now, ts, sizeof(ts));
    if (tn >= 1) {
        /* "...:SSZ" -> "...:SS.mmmZ" */
        int64_t ms = now % 1000;
        snprintf(ts + tn - 1, sizeof(ts) - (tn - 1), ".%03dZ", (int)(ms < 0 ? ms + 1000 : ms));
    }
    if (level < CG_LOG_DEBUG) {
        level = CG_LOG_DEBUG;
    }
    if (level > CG_LOG_ERROR) {
        level = CG_LOG_ERROR;
    }
    b->len = 0;
    b->limit = sizeof(b->data) - CG_LOG_TAIL_RESERVE;
    b->truncated = false;
    cg_log_raw_(b, "{\"ts\":", 6);
    cg_log_str_(b, ts);
    cg_log_pair_(b, "level", cg_log_level_names_[level]);
    cg_log_pair_(b, "proc", cg_log_proc_);
    cg_log_pair_(b, "msg", msg != NULL ? msg : "");
}

static void cg_log_end_(cg_log_buf *b)
{
    static const char trunc[] = ",\"truncated\":true";
    if (b->truncated) {
        memcpy(b->data + b->len, trunc, sizeof(trunc) - 1);
        b->len += sizeof(trunc) - 1;
    }
    b->data[b->len++] = '}';
    b->data[b->len++] = '\n';
    cg_log_write_(b->data, b->len);
}

void cg_log(int level, const char *msg, ...)
{
    if (level < atomic_load(&cg_log_min_level_)) {
        return;
    }
    cg_log_buf b;
    cg_log_begin_(&b, level, msg);
    va_list ap;
    va_start(ap, msg);
    for (;;) {
        const char *key = va_arg(ap, const char *);
        if (key == NULL) {
            break;
        }
        const char *value = va_arg(ap, const char *);
        cg_log_pair_(&b, key, value);
    }
    va_end(ap);
    cg_log_end_(&b);
}

void cg_logf(int level, const char *fmt, ...)
{
    if (level < atomic_load(&cg_log_min_level_)) {
        return;
    }
    char msg[CG_LOG_FMT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cg_log_buf b;
    cg_log_begin_(&b, level, msg);
    cg_log_end_(&b);
}
