/*
 * gw_metrics.c — the gateway's series (see gw_metrics.h).
 *
 * The (status, reason) counters are registered the first time a pair is seen
 * and cached per thread, so the hot path is a short scan of a thread-local
 * table and one relaxed atomic add; the registry's mutex is taken only on a
 * thread's first sight of a pair. Unknown-length reasons are bounded by the
 * table: past GW_METRICS_PAIRS_MAX pairs per thread the series is looked up in
 * the registry each time (still correct, just slower).
 */
#include "gw_metrics.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

#include "cg_clock.h"

#define GW_METRICS_PAIRS_MAX 48

static struct {
    cg_metrics *reg;
    cg_histo *request_s;
    cg_histo *upstream_s;
    cg_histo *ledger_s[CG_SHARDS_MAX];
    cg_gauge *inflight;
    cg_counter *ledger_ops[5]; /* key, group, customer, org, other */
} gm;

typedef struct gw_metrics_pair {
    int status;
    char reason[48];
    cg_counter *c;
} gw_metrics_pair;

static _Thread_local gw_metrics_pair gw_metrics_pairs[GW_METRICS_PAIRS_MAX];
static _Thread_local uint32_t gw_metrics_pair_n;
static _Thread_local const cg_metrics *gw_metrics_pair_reg; /* the cache belongs to this one */

static double gw_metrics_up_cb(void *ud)
{
    (void)ud;
    return 1;
}

cg_err gw_metrics_init(const cg_config *cfg)
{
    cg_metrics *m;
    if (cg_metrics_new(&m) != CG_ERR_OK) {
        return CG_ERR_NOMEM;
    }
    gm.request_s =
        cg_metrics_histo(m, "capgate_gateway_request_seconds",
                         "Proxied requests: arrival to the end of the answer.", NULL, 0, NULL);
    gm.upstream_s = cg_metrics_histo(m, "capgate_gateway_upstream_seconds",
                                     "Upstream transfers: start to the last byte.", NULL, 0, NULL);
    gm.inflight =
        cg_metrics_gauge(m, "capgate_gateway_requests_in_flight",
                         "Proxied requests not finished (reserving, upstream or settling).", NULL);
    cg_gauge *up = cg_metrics_gauge_cb(m, "capgate_gateway_up", "1 while the gateway serves.",
                                       gw_metrics_up_cb, NULL, NULL);
    int ok = gm.request_s && gm.upstream_s && gm.inflight && up;
    for (uint32_t i = 0; ok && i < cfg->shard_n; i++) {
        gm.ledger_s[i] = cg_metrics_histo(m, "capgate_gateway_ledger_roundtrip_seconds",
                                          "Ledger batches: submission to the shard's reply.", NULL,
                                          0, "shard", cfg->shards[i].name, NULL);
        ok = gm.ledger_s[i] != NULL;
    }
    static const char *const scopes[5] = {"key", "group", "customer", "org", "other"};
    for (int i = 0; ok && i < 5; i++) {
        gm.ledger_ops[i] = cg_metrics_counter(m, "capgate_gateway_ledger_ops_total",
                                              "Operations sent to the ledger shards: "
                                              "reserve/settle/release by scope, the rest other.",
                                              "scope", scopes[i], NULL);
        ok = gm.ledger_ops[i] != NULL;
    }
    /* The family exists from the start, so dashboards see it before the first request. */
    ok = ok && cg_metrics_counter(m, "capgate_gateway_requests_total",
                                  "Proxied requests answered, by status and reason.", "status",
                                  "200", "reason", "ok", NULL) != NULL;
    if (!ok) {
        cg_metrics_free(m);
        memset(&gm, 0, sizeof(gm));
        return CG_ERR_NOMEM;
    }
    gm.reg = m;
    return CG_ERR_OK;
}

void gw_metrics_fini(void)
{
    cg_metrics_free(gm.reg);
    memset(&gm, 0, sizeof(gm));
}

void gw_metrics_ledger_op(int scope)
{
    if (gm.reg != NULL && scope >= 0 && scope < 5) {
        cg_counter_add(gm.ledger_ops[scope], 1);
    }
}

cg_metrics *gw_metrics_registry(void)
{
    return gm.reg;
}

static cg_counter *gw_metrics_pair_get(int status, const char *reason)
{
    if (gw_metrics_pair_reg != gm.reg) {
        gw_metrics_pair_n = 0;
        gw_metrics_pair_reg = gm.reg;
    }
    for (uint32_t i = 0; i < gw_metrics_pair_n; i++) {
        gw_metrics_pair *p = &gw_metrics_pairs[i];
        if (p->status == status && strcmp(p->reason, reason) == 0) {
            return p->c;
        }
    }
    char st[16];
    snprintf(st, sizeof(st), "%d", status);
    cg_counter *c = cg_metrics_counter(gm.reg, "capgate_gateway_requests_total",
                                       "Proxied requests answered, by status and reason.", "status",
                                       st, "reason", reason, NULL);
    if (c != NULL && gw_metrics_pair_n < GW_METRICS_PAIRS_MAX &&
        strlen(reason) < sizeof(gw_metrics_pairs[0].reason)) {
        gw_metrics_pair *p = &gw_metrics_pairs[gw_metrics_pair_n++];
        p->status = status;
        snprintf(p->reason, sizeof(p->reason), "%s", reason);
        p->c = c;
    }
    return c;
}

void gw_metrics_request(int status, const char *reason, int64_t t0_ms)
{
    if (gm.reg == NULL) {
        return;
    }
    if (reason == NULL || reason[0] == '\0') {
        reason = status < 400 ? "ok" : status == 499 ? "client_gone" : "upstream_error";
    }
    cg_counter_add(gw_metrics_pair_get(status, reason), 1);
    cg_histo_observe(gm.request_s, (double)(cg_mono_ms() - t0_ms) / 1e3);
}

void gw_metrics_upstream_s(double s)
{
    if (gm.reg != NULL) {
        cg_histo_observe(gm.upstream_s, s);
    }
}

void gw_metrics_upstream_curl(void *easy)
{
    curl_off_t us = 0;
    if (gm.reg != NULL && curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &us) == CURLE_OK) {
        gw_metrics_upstream_s((double)us / 1e6);
    }
}

void gw_metrics_ledger_rtt(uint16_t shard, int64_t submit_ms)
{
    if (gm.reg != NULL && shard < CG_SHARDS_MAX) {
        cg_histo_observe(gm.ledger_s[shard], (double)(cg_mono_ms() - submit_ms) / 1e3);
    }
}

void gw_metrics_inflight(int delta)
{
    cg_gauge_add(gm.inflight, delta);
}
