/*
 * alerter_main.c — `capgate-alerter --config FILE`: load the config, set up the
 * clock offset and logging, run the alerter until SIGINT/SIGTERM, exit 0.
 *
 * Exit codes: 0 after a signal, 2 for a bad command line or config (the message
 * names the field), 1 when start-up or the loop fails.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "alerter.h"
#include "cg_clock.h"
#include "cg_config.h"
#include "cg_log.h"

static volatile sig_atomic_t alerter_stop;

static void alerter_on_signal(int sig)
{
    (void)sig;
    alerter_stop = 1;
}

static void alerter_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = alerter_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

/* --config FILE (or --config=FILE); default $CAPGATE_CONFIG. Returns 0 or -1. */
static int alerter_args(int argc, char **argv, const char **path)
{
    *path = getenv("CAPGATE_CONFIG");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            *path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            *path = argv[i] + 9;
        } else {
            return -1;
        }
    }
    if (*path != NULL && (*path)[0] == '\0') {
        *path = NULL;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static cg_config cfg; /* large: keep it off the stack */
    char msg[512];
    const char *path = NULL;
    cg_log_init("alerter", CG_LOG_INFO);
    if (alerter_args(argc, argv, &path) != 0) {
        fprintf(stderr, "usage: capgate-alerter [--config FILE]\n");
        return 2;
    }
    if (cg_config_load(&cfg, path, msg, sizeof msg) != CG_ERR_OK) {
        cg_log(CG_LOG_ERROR, "bad config", "error", msg, NULL);
        return 2;
    }
    if (alerter_config_check(&cfg, msg, sizeof msg) != CG_ERR_OK) {
        cg_log(CG_LOG_ERROR, "bad config", "error", msg, NULL);
        return 2;
    }
    cg_clock_set_offset_ms(cfg.clock_offset_s * 1000);
    if (cfg.clock_file[0]) {
        cg_clock_set_file(cfg.clock_file);
    }
    cg_log_init("alerter", cfg.log_level);
    alerter_signals();
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        cg_log(CG_LOG_ERROR, "curl_global_init failed", NULL);
        return 1;
    }
    alerter *a = NULL;
    cg_err err = alerter_new(&cfg, &a);
    if (err == CG_ERR_OK) {
        err = alerter_run(a, &alerter_stop);
    } else {
        cg_log(CG_LOG_ERROR, "alerter cannot start", "error", cg_err_name(err), NULL);
    }
    alerter_free(a);
    curl_global_cleanup();
    if (err == CG_ERR_OK) {
        cg_log(CG_LOG_INFO, "alerter stopped", NULL);
    }
    return err == CG_ERR_OK ? 0 : 1;
}
