/*
 * cg_config.h — configuration of every capgate process.
 *
 * One file of `directive value...` lines with `#` comments (path from
 * --config or CAPGATE_CONFIG) shared by the whole cluster; each process uses
 * the directives it needs. Every directive can be overridden by the
 * environment variable CAPGATE_<DIRECTIVE> (upper case). For the repeatable
 * directives (shard, provider, model) the variable replaces all entries of the
 * file; its value is a ';'-separated list, each item being that directive's
 * arguments, e.g. CAPGATE_SHARD="s0 tcp://a:7100 tcp://a:7101;s1 tcp://b:7100 tcp://b:7101".
 *
 * Secret-bearing values (provider api keys, admin_token, key_pepper) accept
 * `env:NAME` (read that variable), `file:/path` (first line of the file) or a
 * literal; they are resolved at load and never logged.
 *
 * A bad value makes cg_config_load fail with a message naming the directive
 * and, for the file, `file:line` ("capgate.conf:7: workers: must be 1..64").
 *
 * Directive table (name: type, default, range):
 *   listen                 host:port  127.0.0.1:8080
 *   admin_listen           host:port  127.0.0.1:8081
 *   workers                int        2          1..64
 *   shard                  NAME REQ_URL PUB_URL [HTTP_ADDR] (repeat, 1..CG_SHARDS_MAX;
 *                                                 HTTP_ADDR: shard /metrics, /healthz, /readyz)
 *   provider               NAME BASE_URL [KEY_SOURCE] (repeat, 0..CG_PROVIDERS_MAX)
 *   model                  NAME PROVIDER prompt=USD completion=USD [cached_prompt=USD]
 *                          [max_output=N]        USD per 1M tokens (repeat)
 *   routing_fee            USD        0
 *   reservation            strict|estimate       strict
 *   fail_mode              closed|open           closed
 *   upstream_timeout_ms    int        120000     100..3600000
 *   ledger_timeout_ms      int        2000       10..60000
 *   lease_ms               int        0 (= upstream_timeout_ms + 30000) 0..86400000
 *   key_cache_ms           int        1000       0..60000
 *   key_rotate_grace_s     int        86400      0..2592000 (rotate: how long the old secret works)
 *   body_max_bytes         int        4194304    1024..67108864
 *   header_max_bytes       int        16384      1024..1048576
 *   request_timeout_ms     int        30000      100..600000 (client must send the request within)
 *   conns_max              int        10000      1..1000000 (per worker)
 *   admin_token            secret     (required by the gateway)
 *   key_pepper             secret     (required by the gateway)
 *   data_dir               path       ./data     (ledger: <data_dir>/<shard>, alerter: <data_dir>/alerter)
 *   lmdb_map_bytes         int        1073741824 1048576..1099511627776
 *   ledger_contexts        int        16         1..256
 *   prompt_message_tokens  int        8          0..1000000 (per-message allowance in the prompt bound)
 *   prompt_part_tokens     int        2000       0..1000000 (per image/audio/file part)
 *   allow_unpriced_models  bool       off
 *   alert_retry_s          list of ints  "5 30 120 600 1800 3600 7200 14400 28800 43200" (cumulative delays)
 *   alert_allow_http       bool       off
 *   alert_allow_private    bool       off
 *   alert_poll_ms          int        2000       50..60000 (catch-up poll interval)
 *   alerter_listen         host:port  127.0.0.1:8082 (alerter health, metrics, deliveries; "" = off)
 *   smtp_url               url        ""         (smtp://host:port or smtps://...; "" = no email)
 *   smtp_from              address    ""         (envelope and From: address of alert email)
 *   smtp_to                addresses  ""         (comma-separated; every alert email goes to these)
 *   smtp_user              string     ""         (SMTP AUTH user; "" = no AUTH)
 *   smtp_password          secret     ""         (SMTP AUTH password; env:/file:/literal, never logged)
 *   smtp_tls               off|starttls|implicit off (starttls: require STARTTLS; implicit: smtps)
 *   smtp_ca_file           path       ""         (CA bundle to verify the SMTP server; "" = system)
 *   metrics_listen         host:port  ""         (ledger/alerter metrics; later)
 *   shutdown_timeout_ms    int        30000      0..600000 (SIGTERM: longest drain of requests
 *                                                 in flight before they are stopped and settled)
 *   log_level              debug|info|warn|error info
 *   clock_offset_s         int        0          (tests only: shifts cg_now_ms)
 *   clock_file             path       ""         (tests only: a file holding an offset in
 *                                                 seconds, re-read at most every 50 ms, so a
 *                                                 test moves time in running processes)
 *   trusted_proxies        list of CIDRs ""      (peers whose X-Forwarded-For is believed)
 *   clamp_min_tokens       int        16         1..1000000 (on_low_budget clamp floor)
 *   lease_scopes           none|org|all none     (budget leases: org scopes, or every scope
 *                                                 kind; docs/leasing.md)
 *   lease_slice_pct        int        10         1..100 (a lease asks for this % of the
 *                                                 remaining budget, at least the worst case)
 *   enforcement            bool       on         (off: auth + static rules only; no
 *                                                 reserve/settle/release, no usage record)
 *   upstream_client        builtin|curl builtin  (http:// providers: capgate's own
 *                                                 HTTP/1.1 client or libcurl; https:// always
 *                                                 libcurl)
 *   demo_listen            host:port  127.0.0.1:9090 (demo upstream)
 *   usage_retention_days   int        400        0..36500 (ledger: usage records older than
 *                                                 this are deleted; 0 = kept forever)
 */
#ifndef CG_CONFIG_H
#define CG_CONFIG_H
#include <stddef.h>
#include <stdint.h>
#include "cg_err.h"
#include "cg_ring.h"
#include "cg_cidr.h"

#define CG_PROVIDERS_MAX 16
#define CG_MODELS_MAX 256
#define CG_MODEL_NAME_MAX 63
#define CG_ALERT_RETRY_MAX 32
#define CG_ADDR_MAX 127
#define CG_URL_MAX 255
#define CG_SECRET_MAX 255
#define CG_PATH_MAX 511
#define CG_TRUSTED_PROXIES_MAX 32

/* lease_scopes (docs/leasing.md) */
#define CG_LEASE_NONE 0
#define CG_LEASE_ORG 1
#define CG_LEASE_ALL 2

/* upstream_client (docs/config.md) */
#define CG_UPSTREAM_BUILTIN 0
#define CG_UPSTREAM_CURL 1

typedef struct cg_shard_cfg {
    char name[CG_SHARD_NAME_MAX + 1];
    char req_url[CG_ADDR_MAX + 1];   /* NNG url of the REP socket, e.g. tcp://127.0.0.1:7100 */
    char pub_url[CG_ADDR_MAX + 1];   /* NNG url of the PUB socket */
    char http_addr[CG_ADDR_MAX + 1]; /* host:port of /metrics, /healthz, /readyz; "" = none */
} cg_shard_cfg;

typedef struct cg_provider_cfg {
    char name[32];
    char base_url[CG_URL_MAX + 1];   /* e.g. https://api.openai.com/v1 (no trailing slash) */
    char api_key[CG_SECRET_MAX + 1]; /* resolved secret; empty = send no Authorization */
} cg_provider_cfg;

typedef struct cg_model_cfg {
    char name[CG_MODEL_NAME_MAX + 1];
    uint16_t provider;                   /* index into providers */
    int64_t prompt_nusd_per_mtok;        /* nano-USD per 1M prompt tokens */
    int64_t completion_nusd_per_mtok;    /* nano-USD per 1M completion tokens */
    int64_t cached_prompt_nusd_per_mtok; /* -1 = same as prompt */
    int64_t
        max_output_tokens; /* worst-case completion when the request names none; default 16384 */
} cg_model_cfg;

typedef struct cg_config {
    char listen[CG_ADDR_MAX + 1];
    char admin_listen[CG_ADDR_MAX + 1];
    char demo_listen[CG_ADDR_MAX + 1];
    char metrics_listen[CG_ADDR_MAX + 1];
    uint32_t workers;

    cg_shard_cfg shards[CG_SHARDS_MAX];
    uint32_t shard_n;
    cg_provider_cfg providers[CG_PROVIDERS_MAX];
    uint32_t provider_n;
    cg_model_cfg models[CG_MODELS_MAX];
    uint32_t model_n;

    int64_t routing_fee_nusd;
    uint8_t reservation_estimate; /* 0 = strict (default), 1 = estimate */
    uint8_t fail_open;            /* 0 = closed (default) */
    uint32_t upstream_timeout_ms;
    uint32_t ledger_timeout_ms;
    uint32_t lease_ms; /* resolved: never 0 after load */
    uint32_t key_cache_ms;
    uint32_t key_rotate_grace_s; /* default grace period of a key rotation (issue 5) */
    uint32_t body_max_bytes;
    uint32_t header_max_bytes;
    uint32_t request_timeout_ms;
    uint32_t conns_max;
    uint32_t prompt_message_tokens;
    uint32_t prompt_part_tokens;
    uint8_t allow_unpriced_models;

    char admin_token[CG_SECRET_MAX + 1]; /* resolved; empty if not configured */
    char key_pepper[CG_SECRET_MAX + 1];  /* resolved; empty if not configured */

    char data_dir[CG_PATH_MAX + 1];
    uint64_t lmdb_map_bytes;
    uint32_t ledger_contexts;

    uint32_t alert_retry_s[CG_ALERT_RETRY_MAX];
    uint32_t alert_retry_n;
    uint8_t alert_allow_http;
    uint8_t alert_allow_private;
    uint32_t alert_poll_ms;
    char alerter_listen[CG_ADDR_MAX + 1]; /* alerter HTTP listener; "" = off */
    char smtp_url[CG_URL_MAX + 1];        /* smtp://host:port or smtps://; "" = no email */
    char smtp_from[CG_URL_MAX + 1];
    char smtp_to[CG_URL_MAX + 1]; /* comma-separated addresses every alert email goes to */
    char smtp_user[CG_SECRET_MAX + 1];
    char smtp_password[CG_SECRET_MAX + 1]; /* resolved secret; never logged */
    uint8_t smtp_tls;                      /* 0 off, 1 starttls, 2 implicit (smtps) */
    char smtp_ca_file[CG_PATH_MAX + 1];    /* CA bundle for the SMTP server; "" = system CAs */

    uint32_t shutdown_timeout_ms; /* SIGTERM drain bound (gateway); 0 = stop at once */
    int log_level;                /* cg_log_level */
    int64_t clock_offset_s;
    char clock_file[CG_PATH_MAX + 1]; /* "" = none */

    cg_cidr trusted_proxies[CG_TRUSTED_PROXIES_MAX];
    uint32_t trusted_proxy_n;
    uint32_t clamp_min_tokens;
    uint8_t lease_scopes;          /* CG_LEASE_NONE / _ORG / _ALL (docs/leasing.md) */
    uint32_t lease_slice_pct;      /* 1..100 */
    uint8_t enforcement;           /* 0 = off: no reserve / settle / release (benchmarks) */
    uint8_t upstream_client;       /* CG_UPSTREAM_BUILTIN / _CURL */
    uint32_t usage_retention_days; /* 0 = keep usage records forever */
} cg_config;

/* Fill c with every default (no shards, no providers, no models). */
void cg_config_defaults(cg_config *c);

/*
 * Load: defaults, then the file at path (NULL = none; a missing file is an
 * error), then CAPGATE_* overrides, then cross-checks (model names a known
 * provider, shard names unique, lease resolved). On failure returns CG_ERR_INVAL
 * (or CG_ERR_IO for an unreadable file) and writes a message naming the field
 * into err (NUL-terminated, truncated to errcap). c is only valid on success.
 */
cg_err cg_config_load(cg_config *c, const char *path, char *err, size_t errcap);

/* Look up a model by name; NULL if not configured. */
const cg_model_cfg *cg_config_model(const cg_config *c, const char *name);
/* Index of the shard named name, or -1. */
int cg_config_shard_index(const cg_config *c, const char *name);
/* Build the ring from c->shards (names in config order). */
cg_err cg_config_ring(const cg_config *c, cg_ring *out);
/* Split "host:port" (IPv6 as "[::1]:8080") into host and port. */
cg_err cg_addr_split(const char *hostport, char *host, size_t hostcap, int *port);

#endif
