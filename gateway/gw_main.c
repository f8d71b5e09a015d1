/*
 * gw_main.c — capgate-gateway: the client-facing gateway process.
 *
 *   capgate-gateway --config FILE      (default: $CAPGATE_CONFIG)
 *   capgate-gateway --check-config [--config FILE]
 *                                      load and check the config as the gateway
 *                                      would, print "config ok", exit 0 (2 if bad)
 *
 * Loads the config (a bad one: exit 2 with a message naming the field),
 * requires admin_token, key_pepper and at least one shard, then starts
 * `workers` client worker threads listening on `listen` (SO_REUSEPORT) and one
 * admin thread on `admin_listen`. SIGINT/SIGTERM are blocked in every thread
 * and taken here with sigwait: every worker stops accepting (its listener
 * closes, so new connections are refused), lets requests in flight finish for
 * up to `shutdown_timeout_ms`, then stops the rest, settles, closes; the
 * process exits 0. The admin listener also serves /metrics, /healthz and
 * /readyz without the admin token (gw_metrics.h).
 */
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include "cg_clock.h"
#include "cg_config.h"
#include "cg_log.h"
#include "cg_ring.h"
#include "cg_signal.h"
#include "gw_metrics.h"
#include "gw_worker.h"

#define GW_EXIT_CONFIG 2
#define GW_EXIT_START 1
/* The admin thread plus at most 64 workers (the config's bound of `workers`). */
#define GW_THREADS_MAX (1 + 64)

static void gw_usage(FILE *f)
{
    fprintf(f, "usage: capgate-gateway [--check-config] [--config FILE]\n"
               "  FILE defaults to $CAPGATE_CONFIG; every directive may be overridden by\n"
               "  CAPGATE_<DIRECTIVE> environment variables.\n");
}

/* Parse argv; returns the config path (may be NULL), or exits. */
static const char *gw_args(int argc, char **argv, int *check_only)
{
    const char *path = getenv("CAPGATE_CONFIG");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--check-config") == 0) {
            *check_only = 1;
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            path = argv[i] + 9;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            gw_usage(stdout);
            exit(0);
        } else {
            fprintf(stderr, "capgate-gateway: unknown argument '%s'\n", argv[i]);
            gw_usage(stderr);
            exit(GW_EXIT_CONFIG);
        }
    }
    return (path != NULL && path[0] != '\0') ? path : NULL;
}

/* Load and check; exits with a message on a bad config. */
static void gw_load_config(cg_config *cfg, const char *path)
{
    char err[512];
    if (cg_config_load(cfg, path, err, sizeof(err)) != CG_ERR_OK) {
        fprintf(stderr, "capgate-gateway: config: %s\n", err);
        exit(GW_EXIT_CONFIG);
    }
    const char *missing = NULL;
    if (cfg->admin_token[0] == '\0') {
        missing = "admin_token: required by the gateway (literal, env:NAME or file:/path)";
    } else if (cfg->key_pepper[0] == '\0') {
        missing = "key_pepper: required by the gateway (literal, env:NAME or file:/path)";
    } else if (cfg->shard_n == 0) {
        missing = "shard: at least one shard is required (shard NAME REQ_URL PUB_URL)";
    }
    if (missing != NULL) {
        fprintf(stderr, "capgate-gateway: config: %s\n", missing);
        exit(GW_EXIT_CONFIG);
    }
}

/* Start the admin thread and the client workers; 0 on success. */
static int gw_start_all(const cg_config *cfg, const cg_ring *ring, gw_worker **ws, uint32_t *n)
{
    /* SIGTERM: requests in flight get shutdown_timeout_ms to finish (SPEC §9). */
    uint32_t drain_ms = cfg->shutdown_timeout_ms;
    *n = 0;
    if (gw_worker_start(cfg, ring, GW_WORKER_ADMIN, 0, drain_ms, &ws[(*n)]) != CG_ERR_OK) {
        return -1;
    }
    (*n)++;
    for (uint32_t i = 0; i < cfg->workers; i++) {
        if (gw_worker_start(cfg, ring, GW_WORKER_CLIENT, i, drain_ms, &ws[*n]) != CG_ERR_OK) {
            return -1;
        }
        (*n)++;
    }
    return 0;
}

/* Every client connection may hold an upstream connection too: raise the soft limit on
 * open files towards what conns_max implies (as far as the hard limit allows). */
static void gw_raise_nofile(const cg_config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return;
    }
    rlim_t want = (rlim_t)cfg->conns_max * cfg->workers * 2 + 1024;
    if (rl.rlim_cur >= want) {
        return;
    }
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
    if (rl.rlim_cur > was && setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        rl.rlim_cur = was;
    }
    if (rl.rlim_cur < want) {
        cg_logf(CG_LOG_WARN,
                "open files limited to %llu (hard limit), below the %llu that conns_max %u x "
                "%u workers may need: raise `ulimit -n` / nofile",
                (unsigned long long)rl.rlim_cur, (unsigned long long)want, cfg->conns_max,
                cfg->workers);
    }
}

int main(int argc, char **argv)
{
    int check_only = 0;
    const char *path = gw_args(argc, argv, &check_only);
    static cg_config cfg; /* large; static storage */
    gw_load_config(&cfg, path);
    if (check_only) {
        cg_ring ring;
        if (cg_config_ring(&cfg, &ring) != CG_ERR_OK) {
            fprintf(stderr, "capgate-gateway: config: shard: cannot build the ring\n");
            return GW_EXIT_CONFIG;
        }
        cg_ring_fini(&ring);
        printf("config ok: %u shards, %u providers, %u models\n", cfg.shard_n, cfg.provider_n,
               cfg.model_n);
        return 0;
    }
    cg_clock_set_offset_ms(cfg.clock_offset_s * 1000);
    if (cfg.clock_file[0]) {
        cg_clock_set_file(cfg.clock_file);
    }
    cg_log_init("gateway", cfg.log_level);
    gw_raise_nofile(&cfg);

    /* Blocked before any thread exists, so every thread (libuv, NNG, curl) inherits it. */
    sigset_t set;
    cg_signals_block(&set);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "capgate-gateway: curl_global_init failed\n");
        return GW_EXIT_START;
    }
    cg_ring ring;
    if (cg_config_ring(&cfg, &ring) != CG_ERR_OK) {
        fprintf(stderr, "capgate-gateway: config: shard: cannot build the ring\n");
        return GW_EXIT_CONFIG;
    }
    if (gw_metrics_init(&cfg) != CG_ERR_OK) {
        fprintf(stderr, "capgate-gateway: cannot create the metrics registry\n");
        return GW_EXIT_START;
    }
    gw_worker *ws[GW_THREADS_MAX];
    uint32_t n = 0;
    int rc = gw_start_all(&cfg, &ring, ws, &n);
    if (rc == 0) {
        char workers[16];
        snprintf(workers, sizeof(workers), "%u", cfg.workers);
        cg_log(CG_LOG_INFO, "gateway started", "listen", cfg.listen, "admin_listen",
               cfg.admin_listen, "workers", workers, NULL);
        int sig = 0;
        sigwait(&set, &sig);
        cg_log(CG_LOG_INFO, "signal received: draining", "signal",
               sig == SIGINT ? "SIGINT" : "SIGTERM", NULL);
    }
    for (uint32_t i = 0; i < n; i++) {
        gw_worker_stop(ws[i]);
    }
    for (uint32_t i = 0; i < n; i++) {
        gw_worker_join(ws[i]);
    }
    gw_metrics_fini();
    cg_ring_fini(&ring);
    curl_global_cleanup();
    cg_log(CG_LOG_INFO, rc == 0 ? "gateway stopped" : "gateway failed to start", NULL);
    return rc == 0 ? 0 : GW_EXIT_START;
}
