/*
 * ledger_metrics.c — a shard's metrics and request-id log lines (see ledger_metrics.h).
 *
 * The ops counters are registered lazily, the first time an (op, outcome)
 * pair is seen, and cached in a table only the writer thread touches; the
 * registry's own mutex makes that registration safe against a concurrent
 * scrape. LMDB gauges are read at scrape time with mdb_env_info, which only
 * reads the environment's meta pages and is safe beside the writer.
 */
#include "ledger_metrics.h"

#include <ctype.h>
#include <lmdb.h>
#include <stdio.h>
#include <string.h>

#include "cg_log.h"
#include "ledger_int.h"
#include "proto.h"

/* Ops and error codes beyond these bounds share the last slot ("other"). */
#define LM_OPS_MAX 64
#define LM_ERRS_MAX 64

static const double lm_batch_buckets[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};

static struct {
    cg_metrics *reg;
    char shard[64];
    ledger_store *store;
    cg_counter *ops[LM_OPS_MAX][LM_ERRS_MAX]; /* writer thread only */
    cg_histo *batch_ops;
    cg_histo *commit_s;
    cg_counter *published;
} lm;

static double lm_used_cb(void *ud)
{
    ledger_store *s = ud;
    MDB_envinfo info;
    MDB_stat st;
    if (mdb_env_info(s->env, &info) != 0 || mdb_env_stat(s->env, &st) != 0) {
        return 0;
    }
    return (double)(info.me_last_pgno + 1) * (double)st.ms_psize;
}

static double lm_map_cb(void *ud)
{
    ledger_store *s = ud;
    MDB_envinfo info;
    if (mdb_env_info(s->env, &info) != 0) {
        return 0;
    }
    return (double)info.me_mapsize;
}

static double lm_up_cb(void *ud)
{
    (void)ud;
    return 1;
}

cg_err ledger_metrics_open(const char *shard, ledger_store *store)
{
    cg_metrics *m;
    if (cg_metrics_new(&m) != CG_ERR_OK) {
        return CG_ERR_NOMEM;
    }
    snprintf(lm.shard, sizeof(lm.shard), "%s", shard);
    lm.store = store;
    const char *sh = lm.shard;
    lm.batch_ops =
        cg_metrics_histo(m, "capgate_ledger_batch_ops",
                         "Operations per write transaction (group commit).", lm_batch_buckets,
                         sizeof(lm_batch_buckets) / sizeof(lm_batch_buckets[0]), "shard", sh, NULL);
    lm.commit_s =
        cg_metrics_histo(m, "capgate_ledger_commit_seconds",
                         "Time to apply and durably commit one batch.", NULL, 0, "shard", sh, NULL);
    lm.published =
        cg_metrics_counter(m, "capgate_ledger_events_published_total",
                           "Limit events published on the PUB socket.", "shard", sh, NULL);
    cg_gauge *used = cg_metrics_gauge_cb(m, "capgate_ledger_lmdb_used_bytes",
                                         "Bytes of the LMDB map in use (last page + 1).",
                                         lm_used_cb, store, "shard", sh, NULL);
    cg_gauge *map = cg_metrics_gauge_cb(m, "capgate_ledger_lmdb_map_bytes",
                                        "Size of the LMDB map (lmdb_map_bytes).", lm_map_cb, store,
                                        "shard", sh, NULL);
    cg_gauge *up = cg_metrics_gauge_cb(m, "capgate_ledger_up", "1 while the shard serves.",
                                       lm_up_cb, NULL, "shard", sh, NULL);
    if (!lm.batch_ops || !lm.commit_s || !lm.published || !used || !map || !up) {
        cg_metrics_free(m);
        memset(&lm, 0, sizeof(lm));
        return CG_ERR_NOMEM;
    }
    lm.reg = m;
    return CG_ERR_OK;
}

cg_metrics *ledger_metrics_registry(void)
{
    return lm.reg;
}

void ledger_metrics_close(void)
{
    cg_metrics_free(lm.reg);
    memset(&lm, 0, sizeof(lm));
}

static cg_counter *lm_ops_counter(uint8_t op, uint16_t status)
{
    uint8_t oi = op < LM_OPS_MAX ? op : LM_OPS_MAX - 1;
    uint16_t ei = status < LM_ERRS_MAX ? status : LM_ERRS_MAX - 1;
    if (lm.ops[oi][ei] == NULL) {
        char opn[32], out[32];
        snprintf(opn, sizeof(opn), "%s", oi == LM_OPS_MAX - 1 ? "other" : proto_op_name(op));
        snprintf(out, sizeof(out), "%s", ei == LM_ERRS_MAX - 1 ? "other" : cg_err_name(status));
        for (char *p = opn; *p; p++) {
            *p = (char)tolower((unsigned char)*p);
        }
        for (char *p = out; *p; p++) {
            *p = (char)tolower((unsigned char)*p);
        }
        lm.ops[oi][ei] = cg_metrics_counter(lm.reg, "capgate_ledger_ops_total",
                                            "Ledger operations applied, by type and outcome.",
                                            "shard", lm.shard, "op", opn, "outcome", out, NULL);
    }
    return lm.ops[oi][ei];
}

/* The gateway's request id of a reserve / settle / release, or NULL. */
static const char *lm_request_id(const proto_req *r)
{
    switch (r->op) {
    case PROTO_OP_RESERVE:
        return r->u.reserve.request_id;
    case PROTO_OP_SETTLE:
        return r->u.settle.request_id;
    case PROTO_OP_RELEASE:
        return r->u.release.request_id;
    default:
        return NULL;
    }
}

static void lm_log_op(const ledger_op *o)
{
    const char *rid = lm_request_id(o->req);
    if (rid == NULL) {
        return;
    }
    cg_err st = (cg_err)o->rep->status;
    /* Successes only at debug level: one line per operation is too much for info. */
    int level = st == CG_ERR_OK ? CG_LOG_DEBUG : CG_LOG_INFO;
    cg_log(level, st == CG_ERR_OK ? "op applied" : "op refused or failed", "request_id", rid, "op",
           proto_op_name(o->req->op), "route", o->req->route, "status", cg_err_name(st), NULL);
}

void ledger_metrics_batch(const ledger_op *ops, uint32_t n, cg_err rc, int64_t dur_us)
{
    for (uint32_t i = 0; i < n; i++) {
        lm_log_op(&ops[i]);
    }
    if (lm.reg == NULL) {
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint16_t st = rc != CG_ERR_OK ? (uint16_t)rc : ops[i].rep->status;
        cg_counter_add(lm_ops_counter(ops[i].req->op, st), 1);
    }
    if (n > 0) {
        cg_histo_observe(lm.batch_ops, (double)n);
        cg_histo_observe(lm.commit_s, (double)dur_us / 1e6);
    }
}

void ledger_metrics_published(uint64_t n)
{
    cg_counter_add(lm.published, n);
}
