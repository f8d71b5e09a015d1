/*
 * fixture.h — the one fixture library of capgate's integration tests.
 *
 * An integration test is a plain executable that starts the real processes
 * (capgate-demo-upstream, capgate-ledger per shard, capgate-gateway, optionally
 * capgate-alerter) by fork/exec, on free loopback ports, with a config file and
 * data directory inside its own scratch directory, then talks HTTP to them
 * with libcurl. Because ports and directories are unique per test, `ctest -j`
 * is safe.
 *
 * Failure model: a test checks with FX_CHECK*; the first failed check prints
 * the file:line and message, the tail of every process log, kills every
 * process the fixture started, keeps the scratch directory for inspection and
 * exits 1. On success fx_done() stops every process with SIGTERM (each must
 * exit 0, so a crash or sanitizer report at shutdown fails the test) and
 * removes the scratch directory.
 *
 * No process leaks: every child gets PR_SET_PDEATHSIG(SIGKILL), and an atexit
 * hook plus SIGINT/SIGTERM/SIGHUP/SIGALRM handlers kill every started PID. A
 * watchdog alarm (FX_WATCHDOG_S) ends a hung test before ctest's timeout.
 * Every wait in here is bounded.
 *
 * Time: every config the fixture writes names a test clock file
 * (`clock_file`, see docs/contracts.md "Test clock") in the scratch directory;
 * fx_clock_advance moves the clock of every running process forward, and the
 * fixture's own calendar helpers (fx_next_month, fx_next_day, ...) follow it.
 * Configs also set `key_cache_ms 0` unless asked otherwise, so an admin change
 * is seen by the very next request.
 *
 * Threading: fx_http/fx_chat/fx_post/fx_admin and the read-only admin helpers
 * may be called from several threads at once; FX_CHECK, process control and
 * fx_clock_advance only from the main thread.
 */
#ifndef FX_FIXTURE_H
#define FX_FIXTURE_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <cjson/cJSON.h>
#include "cg_ring.h"

#define FX_SHARDS_MAX 4
#define FX_GATEWAYS_MAX 2
#define FX_MODELS_MAX 8
#define FX_PROC_ENV_MAX 8
#define FX_PATH_MAX 512
#define FX_WATCHDOG_S 110         /* below the ctest TIMEOUT of 120 s */
#define FX_READY_TIMEOUT_MS 20000 /* sanitizer builds start slowly */
#define FX_STOP_TIMEOUT_MS 10000  /* SIGTERM grace before SIGKILL */
#define FX_HTTP_TIMEOUT_MS 15000  /* default per-request client timeout */
#define FX_SETTLE_TIMEOUT_MS 5000 /* settle may land just after the response */

/* One priced model of provider "demo". Prices are USD per 1M tokens. */
typedef struct fx_model {
    const char *name;
    const char *prompt;     /* decimal USD per 1M prompt tokens, e.g. "0.15" */
    const char *completion; /* decimal USD per 1M completion tokens */
    int64_t max_output;     /* model's worst-case completion; 0 = config default */
} fx_model;

typedef struct fx_opts {
    uint32_t shard_n;           /* 1..FX_SHARDS_MAX; 0 = 2 */
    uint32_t gateway_n;         /* 1..FX_GATEWAYS_MAX; 0 = 1 */
    uint32_t workers;           /* worker loops per gateway; 0 = 2 */
    int start_alerter;          /* start capgate-alerter in fx_cluster_start */
    uint32_t ledger_timeout_ms; /* 0 = 1000 */
    const char *routing_fee;    /* decimal USD per request; NULL = none */
    const fx_model *models;     /* NULL = fx_default_models */
    size_t model_n;
    const char *extra_config; /* appended verbatim to the config file; may be NULL */
    uint32_t key_cache_ms;    /* gateway key/org/group cache TTL; 0 = no caching (default) */
} fx_opts;

/* demo-gpt-4o-mini prompt=0.15 completion=0.60 max_output=16384. */
extern const fx_model fx_default_models[];
extern const size_t fx_default_model_n;

typedef enum fx_role { FX_DEMO, FX_LEDGER, FX_GATEWAY, FX_ALERTER } fx_role;

typedef struct fx_proc {
    fx_role role;
    uint32_t idx;               /* shard or gateway index */
    char name[32];              /* "ledger-s0", "gateway-1", ... */
    char log_path[FX_PATH_MAX]; /* stdout+stderr, appended across restarts */
    char *env[FX_PROC_ENV_MAX]; /* "CAPGATE_X=value" overrides, owned */
    uint32_t env_n;
    pid_t pid; /* 0 when not running */
    uint32_t starts;
} fx_proc;

typedef struct fx_cluster {
    fx_opts opts;
    char config_path[FX_PATH_MAX];
    char data_dir[FX_PATH_MAX];
    char admin_token[64];
    int demo_port;
    int req_port[FX_SHARDS_MAX];
    int pub_port[FX_SHARDS_MAX];
    int shard_http_port[FX_SHARDS_MAX]; /* the shard's /metrics, /healthz, /readyz */
    int gw_port[FX_GATEWAYS_MAX];
    int admin_port[FX_GATEWAYS_MAX];
    int alerter_port; /* alerter_listen (health, metrics, delivery state) */
    fx_proc demo;
    fx_proc ledgers[FX_SHARDS_MAX];
    fx_proc gateways[FX_GATEWAYS_MAX];
    fx_proc alerter;
    cg_ring ring;                 /* same ring as the processes compute */
    char clock_path[FX_PATH_MAX]; /* the test clock file (`clock_file`) */
} fx_cluster;

/* ---- lifecycle and checks ---- */

/* Create the scratch directory, install cleanup hooks and the watchdog,
 * initialise libcurl. Call first in main. */
void fx_init(const char *test_name);
/* The scratch directory. */
const char *fx_dir(void);
/* Progress line on stderr with the elapsed time ("[it_proxy +0.42s] ..."). */
void fx_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Report a failure at file:line and exit 1 (see the failure model above). */
_Noreturn void fx_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Stop every process cleanly (each must exit 0), remove the scratch directory,
 * release the fixture. Returns 0, the test's exit code. */
int fx_done(void);

#define FX_CHECK(cond, ...)                                                                   \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fx_fail(__FILE__, __LINE__, "check failed: %s: %s", #cond, fx_fmt_(__VA_ARGS__)); \
        }                                                                                     \
    } while (0)

#define FX_CHECK_EQ_INT(a, b)                                                                   \
    do {                                                                                        \
        long long fx_a_ = (long long)(a), fx_b_ = (long long)(b);                               \
        if (fx_a_ != fx_b_) {                                                                   \
            fx_fail(__FILE__, __LINE__, "%s == %s failed: %lld != %lld", #a, #b, fx_a_, fx_b_); \
        }                                                                                       \
    } while (0)

#define FX_CHECK_EQ_STR(a, b)                                                        \
    do {                                                                             \
        const char *fx_a_ = (a), *fx_b_ = (b);                                       \
        if (fx_a_ == NULL || fx_b_ == NULL || strcmp(fx_a_, fx_b_) != 0) {           \
            fx_fail(__FILE__, __LINE__, "%s == %s failed: \"%s\" != \"%s\"", #a, #b, \
                    fx_a_ ? fx_a_ : "(null)", fx_b_ ? fx_b_ : "(null)");             \
        }                                                                            \
    } while (0)

/* printf into a thread-local buffer; for FX_CHECK messages. */
const char *fx_fmt_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- cluster and processes ---- */

/* Pick free ports, write the config, start demo, ledgers, gateways (and the
 * alerter if asked) and wait until each is ready. */
void fx_cluster_start(fx_cluster *c, const fx_opts *o);
/* fx_cluster_start in two steps: ports, config and process slots, then the
 * processes; in between a test may fx_proc_setenv one of them (e.g. a
 * CAPGATE_TRUSTED_PROXIES for gateway 1 only). */
void fx_cluster_prepare(fx_cluster *c, const fx_opts *o);
void fx_cluster_launch(fx_cluster *c);
/* Add an environment override ("CAPGATE_X", "value") for p's next start. */
void fx_proc_setenv(fx_proc *p, const char *name, const char *value);
/* Start p (not running) and wait until it is ready. */
void fx_proc_start(fx_cluster *c, fx_proc *p);
/* Send sig (SIGTERM or SIGKILL) and reap, SIGKILL after FX_STOP_TIMEOUT_MS.
 * Returns the wait status. */
int fx_proc_stop(fx_proc *p, int sig);
/* Stop with SIGTERM and check that p exited 0. */
void fx_proc_stop_clean(fx_proc *p);
/* VmRSS of pid in kB (from /proc/<pid>/status); a failed check if unreadable. */
long fx_proc_rss_kb(pid_t pid);
/* Wait until every gateway's /readyz answers 200 (all shards reachable). */
void fx_wait_ready(fx_cluster *c);
/* The ledger process owning a routing key ("key:k_..."). */
fx_proc *fx_ledger_of(fx_cluster *c, const char *route);
/* Index of the shard owning a routing key (printf-style route). */
uint32_t fx_shard_of(fx_cluster *c, const char *route_fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A port free on 127.0.0.1 now, drawn at random below the kernel's ephemeral
 * range (see fixture.c); never returns a port twice. */
int fx_free_port(void);

/* ---- HTTP ---- */

typedef struct fx_header {
    char *name; /* lower-cased */
    char *value;
} fx_header;

typedef struct fx_resp {
    long status;        /* 0 when the transfer failed (see err) */
    char err[256];      /* libcurl error, "" on success */
    fx_header *headers; /* of the final response */
    size_t header_n;
    char *body; /* NUL-terminated */
    size_t body_len;
    cJSON *json; /* parsed body, NULL if not JSON */
    int64_t elapsed_ms;
} fx_resp;

/* One request. headers: NULL-terminated "Name: value" strings or NULL.
 * body NULL = no body. timeout_ms 0 = FX_HTTP_TIMEOUT_MS. Thread-safe.
 * Returns r->status. */
long fx_http(fx_resp *r, const char *method, const char *url, const char *const *headers,
             const char *body, long timeout_ms);
void fx_resp_free(fx_resp *r);
/* Case-insensitive header lookup; NULL if absent. */
const char *fx_resp_header(const fx_resp *r, const char *name);
/* error.code / error.type of an OpenAI-shaped error body; "" if absent. */
const char *fx_resp_error_code(const fx_resp *r);
const char *fx_resp_error_type(const fx_resp *r);

/* Admin API of gateway 0: method, path ("/admin/v1/orgs"), JSON body or NULL. */
long fx_admin(fx_cluster *c, fx_resp *r, const char *method, const char *path, const char *body);
/* POST /v1/chat/completions on gateway gw with "Authorization: Bearer key"
 * (key NULL = no Authorization header). Streaming is asked for in body. */
long fx_chat(fx_cluster *c, uint32_t gw, fx_resp *r, const char *key, const char *body);
/* POST path ("/v1/embeddings") on gateway gw, with the key as for fx_chat and
 * extra headers (NULL-terminated "Name: value" strings, or NULL). */
long fx_post(fx_cluster *c, uint32_t gw, fx_resp *r, const char *key, const char *path,
             const char *const *headers, const char *body);
/* GET path on gateway gw with the key as for fx_chat. */
long fx_get(fx_cluster *c, uint32_t gw, fx_resp *r, const char *key, const char *path);

/* Parse an SSE body: returns a cJSON array of every `data:` JSON object in
 * order, sets *done if `data: [DONE]` was seen; fails the test on a data line
 * that is neither. Caller frees with cJSON_Delete. */
cJSON *fx_sse_parse(const char *body, int *done);

/* ---- admin helpers (fail the test on any unexpected answer) ---- */

/* POST /admin/v1/orgs with body; expects 201. */
void fx_org_create(fx_cluster *c, const char *body);
/* POST /admin/v1/orgs/{org}/keys with body; expects 201; writes id and key. */
void fx_key_create(fx_cluster *c, const char *org, const char *body, char id[64], char key[128]);
/* Org "acme" ("Acme Inc.") and its key "k" capped at 1 USD a month; writes id and key. */
void fx_acme_capped_key(fx_cluster *c, char id[64], char key[128]);
/* times chat requests of model with max_tokens on gateway 0 with key; each must be 200. */
void fx_spend(fx_cluster *c, const char *key, const char *model, int max_tokens, int times);

typedef struct fx_limit {
    int64_t used; /* nano-USD for cost, else tokens / requests */
    int64_t reserved;
    int64_t max;
    char resets_at[40];
} fx_limit;

/* GET /admin/v1/keys/{id}, limit number i (cost amounts parsed to nano-USD).
 * Returns the HTTP status; *out is written on 200 only. */
long fx_key_limit_get(fx_cluster *c, const char *id, size_t i, fx_limit *out);
/* Same, failing the test unless 200. */
fx_limit fx_key_limit(fx_cluster *c, const char *id, size_t i);
/* Poll (up to FX_SETTLE_TIMEOUT_MS) until used == `used` and reserved == 0;
 * returns the last reading, for the caller to check. */
fx_limit fx_key_limit_settled(fx_cluster *c, const char *id, size_t i, int64_t used);
/* Decimal USD string → nano-USD, failing the test on a bad string. */
int64_t fx_usd(const char *s);
/* The demo's /demo/stats chat_requests counter. */
int64_t fx_demo_chat_requests(fx_cluster *c);

/* The demo's /demo/stats counters (demo/README.md). */
typedef struct fx_demo_stats {
    int64_t requests; /* every request, the stats requests included */
    int64_t api;      /* the four POST endpoints together */
    int64_t chat;
    int64_t completions;
    int64_t embeddings;
    int64_t responses;
    int64_t last_max_tokens; /* of the last API request; -1 = it named none */
} fx_demo_stats;
fx_demo_stats fx_demo_stats_get(fx_cluster *c);
/* Requests that reached any of the demo's four API endpoints. */
int64_t fx_demo_api_requests(fx_cluster *c);

/* ---- more admin helpers (issue 3; each fails the test on an unexpected status) ---- */

/* Any admin call: fails unless the status is want; returns the parsed body
 * (caller frees with cJSON_Delete; NULL if the body was not JSON). */
cJSON *fx_admin_expect(fx_cluster *c, long want, const char *method, const char *path,
                       const char *body);
/* POST /admin/v1/orgs/{org}/groups; expects 201. */
void fx_group_create(fx_cluster *c, const char *org, const char *body);
/* PATCH /admin/v1/orgs/{org}/groups/{group}; expects 200. */
void fx_group_patch(fx_cluster *c, const char *org, const char *group, const char *body);
/* PATCH /admin/v1/orgs/{org}; expects 200. */
void fx_org_patch(fx_cluster *c, const char *org, const char *body);
/* PUT /admin/v1/orgs/{org}/customers/{customer}; expects 200 or 201. */
void fx_customer_put(fx_cluster *c, const char *org, const char *customer, const char *body);
/* PATCH /admin/v1/keys/{id}; expects 200. */
void fx_key_patch(fx_cluster *c, const char *id, const char *body);
/* POST /admin/v1/keys/{id}/revoke; expects 200 or 204. */
void fx_key_revoke(fx_cluster *c, const char *id);

typedef struct fx_usage {
    int64_t requests;
    int64_t prompt_tokens;
    int64_t completion_tokens;
    int64_t cost; /* nano-USD */
} fx_usage;
/* GET /admin/v1/usage?<query> ("org=acme&key=k_..."); expects 200. */
fx_usage fx_usage_totals(fx_cluster *c, const char *query);

/* The admin path of a scope's record, whose GET shows its limits with state. */
typedef enum fx_scope { FX_SCOPE_KEY, FX_SCOPE_GROUP, FX_SCOPE_CUSTOMER, FX_SCOPE_ORG } fx_scope;
/* "key" / "group" / "customer" / "org" as in the `limit` object. */
const char *fx_scope_name(fx_scope s);
/* /admin/v1/keys/{id}, /admin/v1/orgs/{org}/groups/{id}, .../customers/{id},
 * /admin/v1/orgs/{org} (id ignored). */
void fx_scope_path(char out[256], fx_scope s, const char *org, const char *id);
/* GET path, the limit with this metric and window ("cost", "month");
 * fails the test if the GET fails or no such limit is listed. */
fx_limit fx_scope_limit(fx_cluster *c, const char *path, const char *metric, const char *window);
/* Poll (up to FX_SETTLE_TIMEOUT_MS) until used == `used` and reserved == 0. */
fx_limit fx_scope_limit_settled(fx_cluster *c, const char *path, const char *metric,
                                const char *window, int64_t used);
/* The gateway answers before its settles commit (issue 4): poll (up to
 * FX_SETTLE_TIMEOUT_MS) until reserved == 0, i.e. every request answered so far
 * has settled or released here; returns the last reading, for the caller to check. */
fx_limit fx_scope_limit_idle(fx_cluster *c, const char *path, const char *metric,
                             const char *window);
/* fx_usage_totals, polled (up to FX_SETTLE_TIMEOUT_MS) until requests == `requests`;
 * returns the last reading, for the caller to check. */
fx_usage fx_usage_totals_settled(fx_cluster *c, const char *query, int64_t requests);

/* Sum the key and org money operations (RESERVE/SETTLE/RELEASE) of every "ledger ops"
 * line a gateway logged at shutdown (gw_ledger.c) in p's log (all its runs). */
void fx_ledger_ops(const fx_proc *p, long long *org, long long *key, int *lines);

/* ---- the test clock ---- */

/* Move the clock of every process (and of the fixture's calendar helpers)
 * forward by seconds: rewrite the clock file atomically, then wait long
 * enough (~120 ms) for every process to re-read it. Main thread only. */
void fx_clock_advance(int64_t seconds);
/* Total offset so far, in seconds. */
int64_t fx_clock_offset_s(void);
/* The processes' wall clock: time(NULL) + offset. */
int64_t fx_clock_now_s(void);

/* RFC 3339 (UTC, seconds) of unix time t: "2026-12-01T00:00:00Z". */
void fx_time_format(int64_t t, char out[32]);
/* Parse an RFC 3339 UTC time "YYYY-MM-DDTHH:MM:SSZ"; fails the test otherwise. */
int64_t fx_time_parse(const char *s);
/* First instant of the next / current calendar period, in the processes'
 * clock (fx_clock_now_s), UTC, RFC 3339. Weeks start on Monday; months on
 * the 1st (billing anchor 1). */
void fx_next_month(char out[32]);
void fx_this_month(char out[32]);
void fx_next_day(char out[32]);
void fx_next_monday(char out[32]);

/* Sleep ms milliseconds. Monotonic milliseconds. */
void fx_sleep_ms(int64_t ms);
int64_t fx_now_ms(void);

/* GET path on the alerter's listener, with the admin token (for /admin/...).
 * Returns the status. */
long fx_alerter_get(fx_cluster *c, fx_resp *r, const char *path);
/* Value of the Prometheus sample `series` (name with labels exactly as
 * rendered, e.g. `capgate_x_total{a="b"}`) in a /metrics body; -1 if absent. */
double fx_metric_value(const char *body, const char *series);

/* ---- webhook receiver (fixture_hook.c) ---- */

typedef struct fx_hook fx_hook;

typedef struct fx_hook_req {
    char method[16];
    char path[256];
    fx_header *headers; /* lower-cased names */
    size_t header_n;
    char *body;
    size_t body_len;
    int64_t at_ms; /* fx_now_ms() when it arrived */
} fx_hook_req;

/* Start a receiver on 127.0.0.1 (free port) on its own thread and uv loop.
 * It answers the i-th request with statuses[i] (the last one repeats;
 * statuses NULL or n 0 = always 200). */
fx_hook *fx_hook_start(const int *statuses, size_t n);
int fx_hook_port(const fx_hook *h);
/* Number of requests received so far. */
size_t fx_hook_count(fx_hook *h);
/* Wait until at least n requests arrived or timeout_ms passed; returns the count. */
size_t fx_hook_wait(fx_hook *h, size_t n, int64_t timeout_ms);
/* Deep copy of request i (< count); free with fx_hook_req_free. */
void fx_hook_get(fx_hook *h, size_t i, fx_hook_req *out);
void fx_hook_req_free(fx_hook_req *r);
const char *fx_hook_req_header(const fx_hook_req *r, const char *name);
/* Stop the loop, join the thread, free everything. */
void fx_hook_stop(fx_hook *h);
/* Every request is tallied by its webhook-id (also beyond the first requests that
 * are stored in full): distinct ids answered 2xx, and how many ids were answered
 * 2xx more than once (a receiver would have to de-duplicate those). */
typedef struct fx_hook_tally {
    size_t requests;   /* all requests */
    size_t ok_ids;     /* distinct webhook-ids answered 2xx */
    size_t ok_dup_ids; /* of those, answered 2xx more than once */
    size_t ok_answers; /* 2xx answers in all */
    size_t bad_sigs;   /* requests whose signature did not verify (see fx_hook_set_secret) */
} fx_hook_tally;
fx_hook_tally fx_hook_tally_get(fx_hook *h);
/* Verify every request's signature with this secret as it arrives (counted in
 * bad_sigs; never fails the test from the hook thread). */
void fx_hook_set_secret(fx_hook *h, const char *secret);
/* From now on answer every request with status (overrides the sequence);
 * 0 = back to the sequence. Thread-safe. */
void fx_hook_force_status(fx_hook *h, int status);
/* Add the header "name: value" to every answer from now on (NULL = none). */
void fx_hook_set_header(fx_hook *h, const char *name, const char *value);
/* POST org id (named name) with one webhook to h's /hook signed with secret; expects 201. */
void fx_org_with_hook(fx_cluster *c, const char *id, const char *name, const fx_hook *h,
                      const char *secret);
/* Check a request's Standard Webhooks signature without failing: 1 if it
 * verifies against secret (fixture_sig.c, OpenSSL directly). */
int fx_sig_verifies(const fx_hook_req *req, const char *secret);

/* ---- Standard Webhooks, verified independently (fixture_sig.c) ---- */

/* A fresh endpoint secret: "whsec_" + base64 of 24 random bytes. */
void fx_webhook_secret(char out[64]);
/* Check webhook-id/-timestamp/-signature of req against secret with OpenSSL
 * (not capgate's signing code); the timestamp must be within 5 minutes of
 * now. Fails the test otherwise. */
void fx_hook_check_signature(const fx_hook_req *req, const char *secret);

#endif
