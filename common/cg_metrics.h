/*
 * cg_metrics.h — a small Prometheus metrics registry shared by every capgate
 * process (gateway, ledger shard, alerter), rendered as text format 0.0.4 on
 * each process's GET /metrics (docs/contracts.md, "Issues 6 and 7").
 *
 * Model: a registry holds families (one name, one HELP, one TYPE); a family
 * holds series, one per set of label values. Label names and values are fixed
 * when a series is registered: the hot path never formats, looks up or
 * allocates, it only does relaxed C11 atomic adds on the series pointer it
 * kept from registration. Metric names start with `capgate_`.
 *
 *   cg_metrics *m;  cg_metrics_new(&m);
 *   cg_counter *ok = cg_metrics_counter(m, "capgate_requests_total", "Requests by outcome.",
 *                                       "status", "200", "reason", "ok", NULL);
 *   cg_histo *lat = cg_metrics_histo(m, "capgate_request_seconds", "End to end.", NULL, 0, NULL);
 *   cg_counter_add(ok, 1);  cg_histo_observe(lat, 0.012);
 *   char *txt; size_t n;  cg_metrics_render(m, &txt, &n);  ...  free(txt);
 *
 * Threading: registration and rendering take the registry's mutex and may run
 * on any thread. Updates (cg_counter_add, cg_gauge_set/add, cg_histo_observe)
 * are lock-free and safe from any thread at any time, including while another
 * thread renders. All update functions accept NULL (a series whose
 * registration failed) and do nothing, so callers need no checks on the hot
 * path. Series stay valid until cg_metrics_free.
 *
 * Limits: CG_METRICS_LABELS_MAX label pairs per series, CG_METRICS_BUCKETS_MAX
 * histogram buckets, names up to CG_METRICS_NAME_MAX bytes, label values up to
 * CG_METRICS_VALUE_MAX bytes. Exceeding one makes registration return NULL.
 */
#ifndef CG_METRICS_H
#define CG_METRICS_H
#include <stddef.h>
#include <stdint.h>

#include "cg_err.h"

#define CG_METRICS_LABELS_MAX 8
#define CG_METRICS_BUCKETS_MAX 32
#define CG_METRICS_NAME_MAX 128
#define CG_METRICS_VALUE_MAX 256

typedef struct cg_metrics cg_metrics;
typedef struct cg_counter cg_counter;
typedef struct cg_gauge cg_gauge;
typedef struct cg_histo cg_histo;

/* Reads a gauge's value at render time, on the rendering thread (with the
 * registry's mutex held: it must not call back into the registry). */
typedef double (*cg_gauge_cb)(void *ud);

/* Default histogram buckets, in seconds: 0.0001 … 10 (contracts.md). */
extern const double cg_metrics_seconds_buckets[];
extern const size_t cg_metrics_seconds_buckets_n;

/* A new empty registry in *out. Errors: CG_ERR_NOMEM. */
cg_err cg_metrics_new(cg_metrics **out);
/* Free the registry and every series in it; NULL is a no-op. No thread may
 * update a series of m once this is called. */
void cg_metrics_free(cg_metrics *m);

/*
 * Register (or find) a series. name: [a-zA-Z_:][a-zA-Z0-9_:]*. help: one line
 * (escaped on output). The variadic tail is (label name, label value) string
 * pairs terminated by NULL; names match [a-zA-Z_][a-zA-Z0-9_]* and do not
 * start with "__"; values are any bytes (escaped on output). Strings are
 * copied. Registering the same name and the same labels (same order) again
 * returns the same series, so two threads may both register. Returns NULL on
 * invalid input, a name already registered with another type (or, for
 * histograms, other buckets), a limit exceeded, or out of memory.
 */
cg_counter *cg_metrics_counter(cg_metrics *m, const char *name, const char *help, ...)
    __attribute__((sentinel));
cg_gauge *cg_metrics_gauge(cg_metrics *m, const char *name, const char *help, ...)
    __attribute__((sentinel));
/* A gauge whose value is read by cb(ud) at every render (e.g. LMDB map size). */
cg_gauge *cg_metrics_gauge_cb(cg_metrics *m, const char *name, const char *help, cg_gauge_cb cb,
                              void *ud, ...) __attribute__((sentinel));
/* bounds: strictly increasing finite upper bounds, n of them (1 ≤ n ≤
 * CG_METRICS_BUCKETS_MAX); NULL and 0 take cg_metrics_seconds_buckets. The
 * +Inf bucket is implicit. */
cg_histo *cg_metrics_histo(cg_metrics *m, const char *name, const char *help, const double *bounds,
                           size_t n, ...) __attribute__((sentinel));

/* Lock-free updates; any thread; NULL series are ignored. */
void cg_counter_add(cg_counter *c, uint64_t n);
void cg_gauge_set(cg_gauge *g, int64_t v);
void cg_gauge_add(cg_gauge *g, int64_t delta);
/* v in the histogram's unit (seconds for latency). NaN is ignored. */
void cg_histo_observe(cg_histo *h, double v);

/* Current values (for tests and for code that reports them elsewhere). */
uint64_t cg_counter_get(const cg_counter *c);
int64_t cg_gauge_get(const cg_gauge *g);
/* Observations so far; *sum_out (may be NULL) gets their sum. */
uint64_t cg_histo_count(const cg_histo *h, double *sum_out);

/*
 * Render every family in registration order as Prometheus text format 0.0.4
 * (serve it with Content-Type CG_METRICS_CONTENT_TYPE). On success *out is a
 * NUL-terminated malloc'd buffer the caller frees and *len its length.
 * Errors: CG_ERR_NOMEM (nothing written to the out-parameters).
 */
cg_err cg_metrics_render(cg_metrics *m, char **out, size_t *len);

#define CG_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
