/*
 * metrics_test.c — the cg_metrics registry: Prometheus text 0.0.4 output
 * (HELP/TYPE once per family, cumulative histogram buckets, escaping), input
 * validation, and lock-free updates from several threads during scrapes.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_metrics.h"
#include "cg_test.h"

static char *metrics_test_render(cg_metrics *m)
{
    char *txt = NULL;
    size_t n = 0;
    if (cg_metrics_render(m, &txt, &n) != CG_ERR_OK) {
        return NULL;
    }
    if (strlen(txt) != n) {
        free(txt);
        return NULL;
    }
    return txt;
}

static int metrics_test_count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

CG_TEST(metrics_counter_family)
{
    cg_metrics *m;
    CG_CHECK(cg_metrics_new(&m) == CG_ERR_OK);
    cg_counter *ok = cg_metrics_counter(m, "capgate_requests_total", "Requests by outcome.",
                                        "status", "200", "reason", "ok", NULL);
    cg_counter *bud = cg_metrics_counter(m, "capgate_requests_total", "Requests by outcome.",
                                         "status", "402", "reason", "budget_exceeded", NULL);
    CG_CHECK(ok != NULL && bud != NULL && ok != bud);
    /* Same name and labels: the same series. */
    CG_CHECK(cg_metrics_counter(m, "capgate_requests_total", "x", "status", "200", "reason", "ok",
                                NULL) == ok);
    cg_counter_add(ok, 3);
    cg_counter_add(ok, 2);
    cg_counter_add(bud, 1);
    cg_counter_add(NULL, 1); /* ignored */
    CG_CHECK_EQ_INT(cg_counter_get(ok), 5);
    char *t = metrics_test_render(m);
    CG_CHECK(t != NULL);
    int good = metrics_test_count(t, "# HELP capgate_requests_total Requests by outcome.\n") == 1 &&
               metrics_test_count(t, "# TYPE capgate_requests_total counter\n") == 1 &&
               strstr(t, "capgate_requests_total{status=\"200\",reason=\"ok\"} 5\n") != NULL &&
               strstr(t, "capgate_requests_total{status=\"402\",reason=\"budget_exceeded\"} 1\n");
    if (!good) {
        fprintf(stderr, "%s", t);
    }
    free(t);
    cg_metrics_free(m);
    CG_CHECK(good);
}

static double metrics_test_cb(void *ud)
{
    return (double)*(const long *)ud;
}

CG_TEST(metrics_gauges)
{
    cg_metrics *m;
    CG_CHECK(cg_metrics_new(&m) == CG_ERR_OK);
    cg_gauge *g = cg_metrics_gauge(m, "capgate_inflight", "In flight.", NULL);
    long bytes = 123456789;
    cg_gauge *cb = cg_metrics_gauge_cb(m, "capgate_lmdb_bytes", "Map used.", metrics_test_cb,
                                       &bytes, "shard", "s0", NULL);
    CG_CHECK(g != NULL && cb != NULL);
    cg_gauge_set(g, 10);
    cg_gauge_add(g, -3);
    CG_CHECK_EQ_INT(cg_gauge_get(g), 7);
    char *t = metrics_test_render(m);
    CG_CHECK(t != NULL);
    int good = strstr(t, "# TYPE capgate_inflight gauge\ncapgate_inflight 7\n") != NULL &&
               strstr(t, "capgate_lmdb_bytes{shard=\"s0\"} 123456789\n") != NULL;
    free(t);
    bytes = 5;
    t = metrics_test_render(m);
    CG_CHECK(t != NULL);
    good = good && strstr(t, "capgate_lmdb_bytes{shard=\"s0\"} 5\n") != NULL;
    free(t);
    cg_metrics_free(m);
    CG_CHECK(good);
}

CG_TEST(metrics_histogram)
{
    cg_metrics *m;
    CG_CHECK(cg_metrics_new(&m) == CG_ERR_OK);
    const double b[] = {0.1, 0.5, 2};
    cg_histo *h = cg_metrics_histo(m, "capgate_batch_ops", "Ops per batch.", b, 3, "op", "r", NULL);
    CG_CHECK(h != NULL);
    double obs[] = {0.05, 0.1, 0.3, 1, 7, 0.5};
    double sum = 0;
    for (size_t i = 0; i < sizeof(obs) / sizeof(obs[0]); i++) {
        cg_histo_observe(h, obs[i]);
        sum += obs[i];
    }
    double got_sum;
    CG_CHECK_EQ_INT(cg_histo_count(h, &got_sum), 6);
    CG_CHECK(got_sum > sum - 1e-9 && got_sum < sum + 1e-9);
    char *t = metrics_test_render(m);
    CG_CHECK(t != NULL);
    /* Cumulative: le=0.1 holds 0.05 and 0.1 (upper bound inclusive). */
    int good = strstr(t, "# TYPE capgate_batch_ops histogram\n") != NULL &&
               strstr(t, "capgate_batch_ops_bucket{op=\"r\",le=\"0.1\"} 2\n") != NULL &&
               strstr(t, "capgate_batch_ops_bucket{op=\"r\",le=\"0.5\"} 4\n") != NULL &&
               strstr(t, "capgate_batch_ops_bucket{op=\"r\",le=\"2\"} 5\n") != NULL &&
               strstr(t, "capgate_batch_ops_bucket{op=\"r\",le=\"+Inf\"} 6\n") != NULL &&
               strstr(t, "capgate_batch_ops_sum{op=\"r\"} 8.95\n") != NULL &&
               strstr(t, "capgate_batch_ops_count{op=\"r\"} 6\n") != NULL;
    if (!good) {
        fprintf(stderr, "%s", t);
    }
    free(t);
    /* Default seconds buckets, no labels. */
    cg_histo *d = cg_metrics_histo(m, "capgate_request_seconds", "Latency.", NULL, 0, NULL);
    CG_CHECK(d != NULL);
    cg_histo_observe(d, 0.0002);
    t = metrics_test_render(m);
    CG_CHECK(t != NULL);
    good = good && strstr(t, "capgate_request_seconds_bucket{le=\"0.0001\"} 0\n") != NULL &&
           strstr(t, "capgate_request_seconds_bucket{le=\"0.00025\"} 1\n") != NULL &&
           strstr(t, "capgate_request_seconds_bucket{le=\"10\"} 1\n") != NULL;
    free(t);
    cg_metrics_free(m);
    CG_CHECK(good);
}

CG_TEST(metrics_escaping)
{
    cg_metrics *m;
    CG_CHECK(cg_metrics_new(&m) == CG_ERR_OK);
    cg_counter *c = cg_metrics_counter(m, "capgate_x_total", "Line one\nback\\slash \"q\"", "v",
                                       "a\"b\\c\nd", NULL);
    CG_CHECK(c != NULL);
    char *t = metrics_test_render(m);
    CG_CHECK(t != NULL);
    int good = strstr(t, "# HELP capgate_x_total Line one\\nback\\\\slash \"q\"\n") != NULL &&
               strstr(t, "capgate_x_total{v=\"a\\\"b\\\\c\\nd\"} 0\n") != NULL;
    if (!good) {
        fprintf(stderr, "%s", t);
    }
    free(t);
    cg_metrics_free(m);
    CG_CHECK(good);
}

CG_TEST(metrics_rejects_bad_input)
{
    cg_metrics *m;
    CG_CHECK(cg_metrics_new(&m) == CG_ERR_OK);
    CG_CHECK(cg_metrics_counter(m, "9bad", "h", NULL) == NULL);
    CG_CHECK(cg_metrics_counter(m, "bad-name", "h", NULL) == NULL);
    CG_CHECK(cg_metrics_counter(m, "", "h", NULL) == NULL);
    CG_CHECK(cg_metrics_counter(m, "ok_total", "h", "__reserved", "x", NULL) == NULL);
    CG_CHECK(cg_metrics_counter(m, "ok_total", "h", "bad label", "x", NULL) == NULL);
    CG_CHECK(cg_metrics_counter(m, "ok_total", "h", "k", NULL) == NULL); /* missing value */
    CG_CHECK(cg_metrics_counter(m, "ok_total", "h", "a", "1", "b", "2", "c", "3", "d", "4", "e",
                                "5", "f", "6", "g", "7", "h", "8", "i", "9", NULL) == NULL);
    const double unsorted[] = {1, 0.5};
    CG_CHECK(cg_metrics_histo(m, "h_seconds", "h", unsorted, 2, NULL) == NULL);
    /* One name, one type. */
    CG_CHECK(cg_metrics_counter(m, "ok_total", "h", NULL) != NULL);
    CG_CHECK(cg_metrics_gauge(m, "ok_total", "h", NULL) == NULL);
    CG_CHECK(cg_metrics_histo(m, "ok_total", "h", NULL, 0, NULL) == NULL);
    /* One histogram family, one set of buckets. */
    const double b1[] = {1, 2}, b2[] = {1, 3};
    CG_CHECK(cg_metrics_histo(m, "hb", "h", b1, 2, "a", "1", NULL) != NULL);
    CG_CHECK(cg_metrics_histo(m, "hb", "h", b2, 2, "a", "2", NULL) == NULL);
    CG_CHECK(cg_metrics_gauge_cb(m, "cbg", "h", NULL, NULL, NULL) == NULL);
    cg_metrics_free(m);
}

#define METRICS_TEST_THREADS 4
#define METRICS_TEST_ITERS 200000

typedef struct metrics_test_ctx {
    cg_counter *c;
    cg_histo *h;
    cg_gauge *g;
} metrics_test_ctx;

static void *metrics_test_worker(void *arg)
{
    metrics_test_ctx *x = arg;
    for (int i = 0; i < METRICS_TEST_ITERS; i++) {
        cg_counter_add(x->c, 1);
        cg_gauge_add(x->g, 1);
        cg_histo_observe(x->h, (i % 2) ? 0.001 : 3.0);
        cg_gauge_add(x->g, -1);
    }
    return NULL;
}

CG_TEST(metrics_threads)
{
    cg_metrics *m;
    CG_CHECK(cg_metrics_new(&m) == CG_ERR_OK);
    metrics_test_ctx x = {
        .c = cg_metrics_counter(m, "capgate_t_total", "h", NULL),
        .h = cg_metrics_histo(m, "capgate_t_seconds", "h", NULL, 0, NULL),
        .g = cg_metrics_gauge(m, "capgate_t_inflight", "h", NULL),
    };
    CG_CHECK(x.c && x.h && x.g);
    pthread_t th[METRICS_TEST_THREADS];
    for (int i = 0; i < METRICS_TEST_THREADS; i++) {
        CG_CHECK(pthread_create(&th[i], NULL, metrics_test_worker, &x) == 0);
    }
    /* Scrape while the workers update: must neither crash nor lose adds. */
    for (int i = 0; i < 50; i++) {
        char *t = metrics_test_render(m);
        free(t);
    }
    for (int i = 0; i < METRICS_TEST_THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    const uint64_t total = (uint64_t)METRICS_TEST_THREADS * METRICS_TEST_ITERS;
    double sum;
    uint64_t cnt = cg_histo_count(x.h, &sum);
    uint64_t c = cg_counter_get(x.c);
    int64_t g = cg_gauge_get(x.g);
    char want[128];
    snprintf(want, sizeof(want), "capgate_t_seconds_bucket{le=\"+Inf\"} %llu\n",
             (unsigned long long)total);
    char *t = metrics_test_render(m);
    int good = t && strstr(t, want) != NULL;
    free(t);
    cg_metrics_free(m);
    CG_CHECK_EQ_INT(c, total);
    CG_CHECK_EQ_INT(cnt, total);
    CG_CHECK_EQ_INT(g, 0);
    double want_sum = (double)total / 2 * 3.001;
    CG_CHECK(sum > want_sum * 0.999999 && sum < want_sum * 1.000001);
    CG_CHECK(good);
}

int main(void)
{
    return CG_TEST_RUN(metrics_counter_family, metrics_gauges, metrics_histogram, metrics_escaping,
                       metrics_rejects_bad_input, metrics_threads);
}
