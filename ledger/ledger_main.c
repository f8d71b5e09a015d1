/*
 * ledger_main.c — `capgate-ledger --config FILE --shard NAME`: one ledger shard.
 *
 * Loads the cluster config, finds this shard in the shard list, opens the
 * store in <data_dir>/<NAME>/ (created) and serves until SIGINT/SIGTERM; then
 * it answers what is queued, closes everything and exits 0. Exit 2 for usage
 * or config errors (the message names the field or the unknown shard), 1 for
 * runtime failures (store cannot open, address in use).
 *
 * SIGINT/SIGTERM are blocked before any thread exists (NNG starts threads on
 * the first socket), so every thread inherits the mask and the main thread
 * receives them synchronously with sigwait.
 *
 * With a 4th field on its `shard` line (HTTP_ADDR), the shard also serves GET
 * /metrics (Prometheus text, ledger_metrics.h), /healthz and /readyz over
 * cg_http on a thread of its own with its own libuv loop. /readyz turns 503
 * as soon as SIGTERM arrives, so load balancers stop routing before the
 * listener goes away; the listener closes after the last batch committed.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <stdatomic.h>
#include <uv.h>

#include "cg_clock.h"
#include "cg_config.h"
#include "cg_http.h"
#include "cg_log.h"
#include "cg_metrics.h"
#include "cg_ring.h"
#include "cg_signal.h"
#include "ledger_metrics.h"
#include "ledger_server.h"
#include "ledger_store.h"

#define LEDGER_EXIT_RUNTIME 1
#define LEDGER_EXIT_USAGE 2

static void usage(void)
{
    fprintf(stderr, "usage: capgate-ledger --config FILE --shard NAME\n"
                    "  --config defaults to $CAPGATE_CONFIG\n");
}

/* mkdir -p path (mode 0700): every missing component is created. */
static int mkdir_p(const char *path)
{
    char buf[CG_PATH_MAX + CG_SHARD_NAME_MAX + 2];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') {
            continue;
        }
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
            return -1;
        }
        buf[i] = saved;
    }
    return 0;
}

static int parse_args(int argc, char **argv, const char **config, const char **shard)
{
    *config = getenv("CAPGATE_CONFIG");
    *shard = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            *config = argv[++i];
        } else if (strcmp(argv[i], "--shard") == 0 && i + 1 < argc) {
            *shard = argv[++i];
        } else {
            fprintf(stderr, "capgate-ledger: unknown argument %s\n", argv[i]);
            return -1;
        }
    }
    if (*config == NULL || (*config)[0] == '\0' || *shard == NULL || (*shard)[0] == '\0') {
        fprintf(stderr, "capgate-ledger: --config (or CAPGATE_CONFIG) and --shard are required\n");
        return -1;
    }
    return 0;
}

/* ---- the HTTP listener: /metrics, /healthz, /readyz ---- */

typedef struct ledger_http {
    cg_http_thread *srv; /* the listener's thread and loop */
    atomic_int ready;    /* 1 while the shard serves requests */
} ledger_http;

static void ledger_http_handle(cg_http_conn *c, const cg_http_req *req, void *ud)
{
    ledger_http *h = ud;
    if (strcmp(req->method, "GET") != 0) {
        cg_http_respond_error(c, 405, "invalid_request_error", "method_not_allowed",
                              "Only GET is served here.", "Allow: GET\r\n");
        return;
    }
    if (strcmp(req->path, "/metrics") == 0) {
        char *txt = NULL;
        size_t n = 0;
        cg_metrics *m = ledger_metrics_registry();
        if (m == NULL || cg_metrics_render(m, &txt, &n) != CG_ERR_OK) {
            cg_http_respond_error(c, 503, "service_unavailable", "overloaded", "Out of memory.",
                                  NULL);
            return;
        }
        cg_http_respond(c, 200, NULL, CG_METRICS_CONTENT_TYPE, txt, n);
        free(txt);
    } else if (strcmp(req->path, "/healthz") == 0) {
        static const char ok[] = "{\"status\":\"ok\"}";
        cg_http_respond(c, 200, NULL, "application/json", ok, sizeof(ok) - 1);
    } else if (strcmp(req->path, "/readyz") == 0) {
        static const char ready[] = "{\"status\":\"ready\"}";
        static const char down[] = "{\"status\":\"unavailable\"}";
        int r = atomic_load(&h->ready);
        cg_http_respond(c, r ? 200 : 503, NULL, "application/json", r ? ready : down,
                        r ? sizeof(ready) - 1 : sizeof(down) - 1);
    } else {
        cg_http_respond_error(c, 404, "invalid_request_error", "not_found", "Unknown path.", NULL);
    }
}

/* Start the listener thread; CG_ERR_OK when it listens (error logged otherwise). */
static cg_err ledger_http_start(ledger_http *h, const char *addr)
{
    memset(h, 0, sizeof(*h));
    cg_http_opts o = {.body_max_bytes = 4096, .conns_max = 256};
    cg_err err = cg_http_thread_start(addr, &o, ledger_http_handle, h, &h->srv);
    if (err != CG_ERR_OK) {
        cg_log(CG_LOG_ERROR, "cannot listen for http", "listen", addr, "error", cg_err_name(err),
               NULL);
        return err;
    }
    cg_log(CG_LOG_INFO, "http listening (metrics, healthz, readyz)", "listen", addr, NULL);
    return CG_ERR_OK;
}

static void ledger_http_stop(ledger_http *h)
{
    cg_http_thread_stop(h->srv);
    h->srv = NULL;
}

/* Serve until SIGINT/SIGTERM; returns the exit code. */
static int run(const cg_config *cfg, int idx, const cg_ring *ring, const char *dir)
{
    const cg_shard_cfg *sh = &cfg->shards[idx];
    ledger_store *store = NULL;
    ledger_server *srv = NULL;
    ledger_store_cfg scfg = {.dir = dir,
                             .map_bytes = cfg->lmdb_map_bytes,
                             .ring = ring,
                             .shard_index = (uint16_t)idx,
                             .shard_name = sh->name};
    if (ledger_store_open(&scfg, &store) != CG_ERR_OK) {
        cg_log(CG_LOG_ERROR, "cannot open the shard's store", "dir", dir, NULL);
        return LEDGER_EXIT_RUNTIME;
    }
    ledger_store_set_usage_retention(store, (int64_t)cfg->usage_retention_days * 86400 * 1000);
    if (ledger_metrics_open(sh->name, store) != CG_ERR_OK) {
        ledger_store_close(store);
        return LEDGER_EXIT_RUNTIME;
    }
    static ledger_http http;
    int with_http = sh->http_addr[0] != '\0';
    if (with_http && ledger_http_start(&http, sh->http_addr) != CG_ERR_OK) {
        ledger_metrics_close();
        ledger_store_close(store);
        return LEDGER_EXIT_RUNTIME;
    }
    ledger_server_cfg vcfg = {.store = store,
                              .req_url = sh->req_url,
                              .pub_url = sh->pub_url,
                              .contexts = cfg->ledger_contexts};
    if (ledger_server_start(&vcfg, &srv) != CG_ERR_OK) {
        if (with_http) {
            ledger_http_stop(&http);
        }
        ledger_metrics_close();
        ledger_store_close(store);
        return LEDGER_EXIT_RUNTIME;
    }
    atomic_store(&http.ready, 1);
    sigset_t set;
    cg_signals_stop_set(&set);
    int sig = 0;
    while (sigwait(&set, &sig) != 0) {
    }
    cg_log(CG_LOG_INFO, "signal received: stopping", "signal", sig == SIGINT ? "INT" : "TERM",
           NULL);
    atomic_store(&http.ready, 0);
    ledger_server_stop(srv);
    if (with_http) {
        ledger_http_stop(&http);
    }
    ledger_metrics_close();
    ledger_store_stats st;
    ledger_store_stats_get(store, &st);
    cg_logf(CG_LOG_INFO, "stopped: %llu batches, %llu ops, %llu late settles, %llu leases expired",
            (unsigned long long)st.batches, (unsigned long long)st.ops,
            (unsigned long long)st.late_settles, (unsigned long long)st.leases_expired);
    ledger_store_close(store);
    return 0;
}

int main(int argc, char **argv)
{
    static cg_config cfg; /* large: keep it off the stack */
    char err[512];
    char dir[CG_PATH_MAX + CG_SHARD_NAME_MAX + 2];
    char proc[64];
    const char *config = NULL;
    const char *shard = NULL;
    cg_ring ring;

    ledger_malloc_tune();
    sigset_t set;
    cg_signals_block(&set);

    if (parse_args(argc, argv, &config, &shard) != 0) {
        usage();
        return LEDGER_EXIT_USAGE;
    }
    cg_log_init("ledger", CG_LOG_INFO);
    if (cg_config_load(&cfg, config, err, sizeof(err)) != CG_ERR_OK) {
        cg_log(CG_LOG_ERROR, "bad config", "config", config, "error", err, NULL);
        return LEDGER_EXIT_USAGE;
    }
    int idx = cg_config_shard_index(&cfg, shard);
    if (idx < 0) {
        cg_log(CG_LOG_ERROR, "unknown shard: not in the config's shard list", "shard", shard,
               "config", config, NULL);
        return LEDGER_EXIT_USAGE;
    }
    snprintf(proc, sizeof(proc), "ledger:%s", shard);
    cg_log_init(proc, cfg.log_level);
    cg_clock_set_offset_ms(cfg.clock_offset_s * 1000);
    if (cfg.clock_file[0]) {
        cg_clock_set_file(cfg.clock_file);
    }
    if ((size_t)snprintf(dir, sizeof(dir), "%s/%s", cfg.data_dir, shard) >= sizeof(dir) ||
        mkdir_p(dir) != 0) {
        cg_log(CG_LOG_ERROR, "cannot create the data directory", "dir", dir, "error",
               strerror(errno), NULL);
        return LEDGER_EXIT_RUNTIME;
    }
    if (cg_config_ring(&cfg, &ring) != CG_ERR_OK) {
        cg_log(CG_LOG_ERROR, "cannot build the shard ring", NULL);
        return LEDGER_EXIT_USAGE;
    }
    int rc = run(&cfg, idx, &ring, dir);
    cg_ring_fini(&ring);
    return rc;
}
