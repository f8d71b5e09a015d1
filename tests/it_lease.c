/*
 * it_lease.c — integration: budget leases for a hot scope (issue 4,
 * docs/leasing.md).
 *
 * Two shards, two gateway processes with two workers each, `lease_scopes org`.
 * One org with a lifetime cap of ORG_CAP requests (requests: worst case and
 * actual are both exactly 1, so the cap is exact to the request); four keys
 * without limits. 8 client threads send TOTAL requests (more than the cap),
 * alternating between the gateways, until all are sent.
 *
 * Afterwards: every answer is 200 or 402 budget_exceeded naming the org; the
 * org's used equals the number of 200s and never exceeds the cap; nothing
 * stays reserved once the gateways returned their idle leases; usage totals
 * equal the 200s and what reached the upstream. Then the gateways are stopped
 * (SIGTERM) and their "ledger ops" log lines summed: the org route's shard
 * operations (RESERVE/SETTLE/RELEASE) per admitted request must be <= 0.1
 * (without leasing it is 2: a reserve and a settle per request).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fixture.h"

#define THREADS 8
#define ORG_CAP 2000
#define TOTAL 2300
/* Leases are flushed on a 200 ms timer, so ops per request depend a little on
 * how long the run takes: under ASan+UBSan (several times slower) the bound is
 * 0.2, still an order of magnitude below the 2 ops per request of no leasing. */
#ifdef CG_SANITIZED
#define MAX_OPS_PER_REQ 0.2
#else
#define MAX_OPS_PER_REQ 0.1
#endif

static const char body[] = "{\"model\":\"demo-gpt-4o-mini\",\"max_tokens\":8,"
                           "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

static fx_cluster c;
static char keys[4][128];
static char key_ids[4][64];
static atomic_int next_req;
static atomic_llong n200, n402;
static atomic_int bad;
static char bad_msg[512];

static void *client_main(void *arg)
{
    int t = *(const int *)arg;
    int i;
    while ((i = atomic_fetch_add(&next_req, 1)) < TOTAL) {
        fx_resp r;
        long st = fx_post(&c, (uint32_t)((t + i) % 2), &r, keys[i % 4], "/v1/chat/completions",
                          NULL, body);
        const cJSON *limit = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(r.json, "error"), "limit");
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(limit, "scope");
        if (st == 200) {
            atomic_fetch_add(&n200, 1);
        } else if (st == 402 && strcmp(fx_resp_error_code(&r), "budget_exceeded") == 0 &&
                   cJSON_IsString(sc) && strcmp(sc->valuestring, "org") == 0) {
            atomic_fetch_add(&n402, 1);
        } else if (atomic_fetch_add(&bad, 1) == 0) {
            snprintf(bad_msg, sizeof(bad_msg), "request %d: %ld %s %.200s", i, st, r.err, r.body);
        }
        fx_resp_free(&r);
    }
    return NULL;
}

int main(void)
{
    fx_init("it_lease");
    const char *off = getenv("IT_LEASE_OFF"); /* measurement only: the baseline without leases */
    fx_opts o = {.shard_n = 2,
                 .gateway_n = 2,
                 .workers = 2,
                 .extra_config = off != NULL ? "lease_scopes none\n"
                                             : "lease_scopes org\nlease_slice_pct 10\n"};
    fx_cluster_start(&c, &o);
    fx_org_create(&c, fx_fmt_("{\"id\":\"acme\",\"name\":\"Acme Inc.\",\"limits\":[{\"metric\":"
                              "\"requests\",\"window\":\"lifetime\",\"max\":%d}]}",
                              ORG_CAP));
    for (int k = 0; k < 4; k++) {
        fx_key_create(&c, "acme", fx_fmt_("{\"name\":\"k%d\"}", k), key_ids[k], keys[k]);
    }
    int64_t api0 = fx_demo_api_requests(&c);

    static int idx[THREADS];
    pthread_t threads[THREADS];
    int64_t t0 = fx_now_ms();
    for (int t = 0; t < THREADS; t++) {
        idx[t] = t;
        FX_CHECK(pthread_create(&threads[t], NULL, client_main, &idx[t]) == 0, "pthread_create");
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
    }
    int64_t ms = fx_now_ms() - t0;
    long long ok = atomic_load(&n200), refused = atomic_load(&n402);
    fx_log("%d requests in %lld ms: %lld x 200, %lld x 402 (org cap %d)", TOTAL, (long long)ms, ok,
           refused, ORG_CAP);
    FX_CHECK(atomic_load(&bad) == 0, "unexpected answer: %s", bad_msg);
    FX_CHECK(ok <= ORG_CAP, "org cap exceeded: %lld admitted", ok);
    FX_CHECK(refused >= TOTAL - ORG_CAP, "only %lld refused", refused);

    /* Leases go back once idle: the org's counter is exact and nothing stays reserved. */
    char path[256];
    fx_scope_path(path, FX_SCOPE_ORG, "acme", NULL);
    fx_limit l = fx_scope_limit_settled(&c, path, "requests", "lifetime", ok);
    FX_CHECK(l.used == ok && l.reserved == 0 && l.max == ORG_CAP && l.used <= l.max,
             "org: used %lld (want %lld) reserved %lld max %lld", (long long)l.used, ok,
             (long long)l.reserved, (long long)l.max);
    fx_usage u = fx_usage_totals_settled(&c, "org=acme", ok); /* key scopes settle apart */
    FX_CHECK_EQ_INT(u.requests, ok);
    FX_CHECK_EQ_INT(fx_demo_api_requests(&c), api0 + ok);

    /* Shard operations per admitted request, from the gateways' shutdown logs. */
    long long org_ops = 0, key_ops = 0;
    int lines = 0;
    for (uint32_t g = 0; g < 2; g++) {
        fx_proc_stop_clean(&c.gateways[g]);
        fx_ledger_ops(&c.gateways[g], &org_ops, &key_ops, &lines);
    }
    double per = ok > 0 ? (double)org_ops / (double)ok : 0;
    fx_log("ledger ops (%d lines): org %lld (%.3f per admitted request), key %lld", lines, org_ops,
           per, key_ops);
    FX_CHECK(lines >= 4, "ledger ops lines: %d", lines);
    if (off == NULL) {
        FX_CHECK(per <= MAX_OPS_PER_REQ, "org ops per request %.3f > %.2f", per, MAX_OPS_PER_REQ);
    }
    return fx_done();
}
