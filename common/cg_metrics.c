/*
 * cg_metrics.c — the Prometheus registry of cg_metrics.h.
 *
 * Invariants: families and series are only ever appended (under the mutex)
 * and freed together in cg_metrics_free, so a series pointer handed out stays
 * valid for the registry's life. Values are C11 atomics updated with relaxed
 * order: a scrape is a snapshot of independent counters, not a transaction.
 * Histogram buckets are stored non-cumulative (one atomic add per observation)
 * and summed at render time; _count is rendered as the sum of the buckets so
 * that it always equals the +Inf bucket even when a scrape races an update.
 */
#include "cg_metrics.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double cg_metrics_seconds_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                             0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                             1,      2.5,     5,      10};
const size_t cg_metrics_seconds_buckets_n =
    sizeof(cg_metrics_seconds_buckets) / sizeof(cg_metrics_seconds_buckets[0]);

typedef enum cg_metrics_type {
    CG_METRICS_COUNTER,
    CG_METRICS_GAUGE,
    CG_METRICS_HISTO
} cg_metrics_type;

typedef struct cg_metrics_series cg_metrics_series;
typedef struct cg_metrics_family cg_metrics_family;

/* The three public series types share one layout; the public typedefs are
 * views of it so that one list per family can hold them all. */
struct cg_metrics_series {
    cg_metrics_series *next;
    cg_metrics_family *fam;
    char *labels;           /* rendered `a="x",b="y"` (escaped), "" if none */
    _Atomic uint64_t count; /* counter value; histogram observation count */
    _Atomic int64_t gauge;
    _Atomic uint64_t sum_bits;                            /* histogram sum (double bits) */
    _Atomic uint64_t buckets[CG_METRICS_BUCKETS_MAX + 1]; /* non-cumulative; last = +Inf */
    cg_gauge_cb cb;
    void *cb_ud;
};

struct cg_counter {
    cg_metrics_series s;
};
struct cg_gauge {
    cg_metrics_series s;
};
struct cg_histo {
    cg_metrics_series s;
};

struct cg_metrics_family {
    cg_metrics_family *next;
    char *name;
    char *help;
    cg_metrics_type type;
    double bounds[CG_METRICS_BUCKETS_MAX];
    size_t bounds_n;
    cg_metrics_series *first, *last;
};

struct cg_metrics {
    pthread_mutex_t mu;
    cg_metrics_family *first, *last;
};

/* ---- a growable output buffer ---- */

typedef struct cg_metrics_buf {
    char *p;
    size_t len, cap;
    bool oom;
} cg_metrics_buf;

static void cg_metrics_buf_put(cg_metrics_buf *b, const char *s, size_t n)
{
    if (b->oom) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        char *np = realloc(b->p, cap);
        if (np == NULL) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void cg_metrics_buf_str(cg_metrics_buf *b, const char *s)
{
    cg_metrics_buf_put(b, s, strlen(s));
}

/* Escape for a HELP line (backslash, newline) or a label value (also '"'). */
static void cg_metrics_buf_esc(cg_metrics_buf *b, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\') {
            cg_metrics_buf_put(b, "\\\\", 2);
        } else if (*s == '\n') {
            cg_metrics_buf_put(b, "\\n", 2);
        } else if (quote && *s == '"') {
            cg_metrics_buf_put(b, "\\\"", 2);
        } else {
            cg_metrics_buf_put(b, s, 1);
        }
    }
}

/* Shortest text that reads back as the same double (Go's ParseFloat syntax). */
static void cg_metrics_fmt_double(char *out, size_t cap, double v)
{
    if (isnan(v)) {
        snprintf(out, cap, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, cap, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, v);
        if (strtod(out, NULL) == v) {
            return;
        }
    }
}

/* ---- registration ---- */

static bool cg_metrics_name_ok(const char *s, bool colon)
{
    size_t n = strlen(s);
    if (n == 0 || n > CG_METRICS_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alpha =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) {
            return false;
        }
    }
    return true;
}

/* Render the label pairs of ap into a malloc'd string; NULL on bad input. */
static char *cg_metrics_labels(va_list ap)
{
    cg_metrics_buf b = {0};
    cg_metrics_buf_put(&b, "", 0);
    for (int i = 0;; i++) {
        const char *k = va_arg(ap, const char *);
        if (k == NULL) {
            break;
        }
        const char *v = va_arg(ap, const char *);
        if (i >= CG_METRICS_LABELS_MAX || v == NULL || !cg_metrics_name_ok(k, false) ||
            strncmp(k, "__", 2) == 0 || strlen(v) > CG_METRICS_VALUE_MAX) {
            free(b.p);
            return NULL;
        }
        if (i > 0) {
            cg_metrics_buf_put(&b, ",", 1);
        }
        cg_metrics_buf_str(&b, k);
        cg_metrics_buf_put(&b, "=\"", 2);
        cg_metrics_buf_esc(&b, v, true);
        cg_metrics_buf_put(&b, "\"", 1);
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

static cg_metrics_family *cg_metrics_family_get(cg_metrics *m, const char *name, const char *help,
                                                cg_metrics_type type, const double *bounds,
                                                size_t bounds_n)
{
    for (cg_metrics_family *f = m->first; f; f = f->next) {
        if (strcmp(f->name, name) != 0) {
            continue;
        }
        if (f->type != type || f->bounds_n != bounds_n ||
            (bounds_n && memcmp(f->bounds, bounds, bounds_n * sizeof(double)) != 0)) {
            return NULL;
        }
        return f;
    }
    cg_metrics_family *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return NULL;
    }
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    if (f->name == NULL || f->help == NULL) {
        free(f->name);
        free(f->help);
        free(f);
        return NULL;
    }
    f->type = type;
    f->bounds_n = bounds_n;
    if (bounds_n) {
        memcpy(f->bounds, bounds, bounds_n * sizeof(double));
    }
    if (m->last) {
        m->last->next = f;
    } else {
        m->first = f;
    }
    m->last = f;
    return f;
}

static cg_metrics_series *cg_metrics_register(cg_metrics *m, const char *name, const char *help,
                                              cg_metrics_type type, const double *bounds,
                                              size_t bounds_n, va_list ap)
{
    if (m == NULL || name == NULL || !cg_metrics_name_ok(name, true)) {
        return NULL;
    }
    char *labels = cg_metrics_labels(ap);
    if (labels == NULL) {
        return NULL;
    }
    cg_metrics_series *s = NULL;
    pthread_mutex_lock(&m->mu);
    cg_metrics_family *f = cg_metrics_family_get(m, name, help, type, bounds, bounds_n);
    if (f == NULL) {
        goto out;
    }
    for (s = f->first; s; s = s->next) {
        if (strcmp(s->labels, labels) == 0) {
            goto out;
        }
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        goto out;
    }
    s->fam = f;
    s->labels = labels;
    labels = NULL;
    if (f->last) {
        f->last->next = s;
    } else {
        f->first = s;
    }
    f->last = s;
out:
    pthread_mutex_unlock(&m->mu);
    free(labels);
    return s;
}

cg_err cg_metrics_new(cg_metrics **out)
{
    cg_metrics *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return CG_ERR_NOMEM;
    }
    pthread_mutex_init(&m->mu, NULL);
    *out = m;
    return CG_ERR_OK;
}

void cg_metrics_free(cg_metrics *m)
{
    if (m == NULL) {
        return;
    }
    cg_metrics_family *f = m->first;
    while (f) {
        cg_metrics_family *fn = f->next;
        cg_metrics_series *s = f->first;
        while (s) {
            cg_metrics_series *sn = s->next;
            free(s->labels);
            free(s);
            s = sn;
        }
        free(f->name);
        free(f->help);
        free(f);
        f = fn;
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

cg_counter *cg_metrics_counter(cg_metrics *m, const char *name, const char *help, ...)
{
    va_list ap;
    va_start(ap, help);
    cg_metrics_series *s = cg_metrics_register(m, name, help, CG_METRICS_COUNTER, NULL, 0, ap);
    va_end(ap);
    return (cg_counter *)s;
}

cg_gauge *cg_metrics_gauge(cg_metrics *m, const char *name, const char *help, ...)
{
    va_list ap;
    va_start(ap, help);
    cg_metrics_series *s = cg_metrics_register(m, name, help, CG_METRICS_GAUGE, NULL, 0, ap);
    va_end(ap);
    return (cg_gauge *)s;
}

cg_gauge *cg_metrics_gauge_cb(cg_metrics *m, const char *name, const char *help, cg_gauge_cb cb,
                              void *ud, ...)
{
    if (cb == NULL) {
        return NULL;
    }
    va_list ap;
    va_start(ap, ud);
    cg_metrics_series *s = cg_metrics_register(m, name, help, CG_METRICS_GAUGE, NULL, 0, ap);
    va_end(ap);
    if (s) {
        /* Set under the mutex: the renderer reads cb with the mutex held. */
        pthread_mutex_lock(&m->mu);
        s->cb = cb;
        s->cb_ud = ud;
        pthread_mutex_unlock(&m->mu);
    }
    return (cg_gauge *)s;
}

cg_histo *cg_metrics_histo(cg_metrics *m, const char *name, const char *help, const double *bounds,
                           size_t n, ...)
{
    if (bounds == NULL || n == 0) {
        bounds = cg_metrics_seconds_buckets;
        n = cg_metrics_seconds_buckets_n;
    }
    if (n > CG_METRICS_BUCKETS_MAX) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) {
            return NULL;
        }
    }
    va_list ap;
    va_start(ap, n);
    cg_metrics_series *s = cg_metrics_register(m, name, help, CG_METRICS_HISTO, bounds, n, ap);
    va_end(ap);
    return (cg_histo *)s;
}

/* ---- updates ---- */

void cg_counter_add(cg_counter *c, uint64_t n)
{
    if (c) {
        atomic_fetch_add_explicit(&c->s.count, n, memory_order_relaxed);
    }
}

void cg_gauge_set(cg_gauge *g, int64_t v)
{
    if (g) {
        atomic_store_explicit(&g->s.gauge, v, memory_order_relaxed);
    }
}

void cg_gauge_add(cg_gauge *g, int64_t delta)
{
    if (g) {
        atomic_fetch_add_explicit(&g->s.gauge, delta, memory_order_relaxed);
    }
}

static double cg_metrics_bits_double(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof(d));
    return d;
}

static uint64_t cg_metrics_double_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof(b));
    return b;
}

void cg_histo_observe(cg_histo *h, double v)
{
    if (h == NULL || isnan(v)) {
        return;
    }
    const cg_metrics_family *f = h->s.fam;
    /* Binary search for the first bound >= v; bounds_n means +Inf. */
    size_t lo = 0, hi = f->bounds_n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v <= f->bounds[mid]) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    atomic_fetch_add_explicit(&h->s.buckets[lo], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->s.count, 1, memory_order_relaxed);
    uint64_t old = atomic_load_explicit(&h->s.sum_bits, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(
        &h->s.sum_bits, &old, cg_metrics_double_bits(cg_metrics_bits_double(old) + v),
        memory_order_relaxed, memory_order_relaxed)) {
    }
}

uint64_t cg_counter_get(const cg_counter *c)
{
    return c ? atomic_load_explicit(&c->s.count, memory_order_relaxed) : 0;
}

int64_t cg_gauge_get(const cg_gauge *g)
{
    return g ? atomic_load_explicit(&g->s.gauge, memory_order_relaxed) : 0;
}

uint64_t cg_histo_count(const cg_histo *h, double *sum_out)
{
    if (h == NULL) {
        if (sum_out) {
            *sum_out = 0;
        }
        return 0;
    }
    if (sum_out) {
        *sum_out =
            cg_metrics_bits_double(atomic_load_explicit(&h->s.sum_bits, memory_order_relaxed));
    }
    return atomic_load_explicit(&h->s.count, memory_order_relaxed);
}

/* ---- rendering ---- */

/* name{labels[,extra]} value\n */
static void cg_metrics_line(cg_metrics_buf *b, const char *name, const char *suffix,
                            const char *labels, const char *extra, const char *value)
{
    cg_metrics_buf_str(b, name);
    cg_metrics_buf_str(b, suffix);
    if (labels[0] || extra) {
        cg_metrics_buf_put(b, "{", 1);
        cg_metrics_buf_str(b, labels);
        if (extra) {
            if (labels[0]) {
                cg_metrics_buf_put(b, ",", 1);
            }
            cg_metrics_buf_str(b, extra);
        }
        cg_metrics_buf_put(b, "}", 1);
    }
    cg_metrics_buf_put(b, " ", 1);
    cg_metrics_buf_str(b, value);
    cg_metrics_buf_put(b, "\n", 1);
}

static void cg_metrics_render_histo(cg_metrics_buf *b, const cg_metrics_family *f,
                                    const cg_metrics_series *s)
{
    char v[64], le[96];
    uint64_t cum = 0;
    for (size_t i = 0; i <= f->bounds_n; i++) {
        cum += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
        if (i < f->bounds_n) {
            char d[48];
            cg_metrics_fmt_double(d, sizeof(d), f->bounds[i]);
            snprintf(le, sizeof(le), "le=\"%s\"", d);
        } else {
            snprintf(le, sizeof(le), "le=\"+Inf\"");
        }
        snprintf(v, sizeof(v), "%" PRIu64, cum);
        cg_metrics_line(b, f->name, "_bucket", s->labels, le, v);
    }
    cg_metrics_fmt_double(
        v, sizeof(v),
        cg_metrics_bits_double(atomic_load_explicit(&s->sum_bits, memory_order_relaxed)));
    cg_metrics_line(b, f->name, "_sum", s->labels, NULL, v);
    snprintf(v, sizeof(v), "%" PRIu64, cum);
    cg_metrics_line(b, f->name, "_count", s->labels, NULL, v);
}

static void cg_metrics_render_family(cg_metrics_buf *b, const cg_metrics_family *f)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    cg_metrics_buf_str(b, "# HELP ");
    cg_metrics_buf_str(b, f->name);
    cg_metrics_buf_put(b, " ", 1);
    cg_metrics_buf_esc(b, f->help, false);
    cg_metrics_buf_str(b, "\n# TYPE ");
    cg_metrics_buf_str(b, f->name);
    cg_metrics_buf_put(b, " ", 1);
    cg_metrics_buf_str(b, types[f->type]);
    cg_metrics_buf_put(b, "\n", 1);
    for (const cg_metrics_series *s = f->first; s; s = s->next) {
        char v[64];
        switch (f->type) {
        case CG_METRICS_COUNTER:
            snprintf(v, sizeof(v), "%" PRIu64,
                     atomic_load_explicit(&s->count, memory_order_relaxed));
            cg_metrics_line(b, f->name, "", s->labels, NULL, v);
            break;
        case CG_METRICS_GAUGE:
            if (s->cb) {
                cg_metrics_fmt_double(v, sizeof(v), s->cb(s->cb_ud));
            } else {
                snprintf(v, sizeof(v), "%" PRId64,
                         atomic_load_explicit(&s->gauge, memory_order_relaxed));
            }
            cg_metrics_line(b, f->name, "", s->labels, NULL, v);
            break;
        case CG_METRICS_HISTO:
            cg_metrics_render_histo(b, f, s);
            break;
        }
    }
}

cg_err cg_metrics_render(cg_metrics *m, char **out, size_t *len)
{
    cg_metrics_buf b = {0};
    cg_metrics_buf_put(&b, "", 0);
    pthread_mutex_lock(&m->mu);
    for (const cg_metrics_family *f = m->first; f; f = f->next) {
        cg_metrics_render_family(&b, f);
    }
    pthread_mutex_unlock(&m->mu);
    if (b.oom) {
        free(b.p);
        return CG_ERR_NOMEM;
    }
    *out = b.p;
    *len = b.len;
    return CG_ERR_OK;
}
