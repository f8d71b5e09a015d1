/*
 * cg_config.c — the table-driven `directive value...` loader.
 *
 * One table (cg_cfg_dirs_) names every directive with its type, field,
 * default, bounds and flags, in the manner of redis' config.c: defaults, file
 * lines and CAPGATE_* overrides all go through the same setters, so a value
 * is validated identically wherever it comes from. Errors are written as
 * "<where>: <directive>: <message>" where <where> is "file:line" or the
 * environment variable's name. Models name their provider by name; names are
 * resolved after the file and the environment are read, so a model may name a
 * provider declared later or replaced through CAPGATE_PROVIDER.
 * Secrets are resolved here and never logged.
 *
 * Syntax: `#` starts a comment at the start of a line or after whitespace (so
 * a URL fragment "a#b" survives, but a literal secret cannot contain " #");
 * a value wrapped in double quotes has them removed (`metrics_listen ""`).
 * A directive given twice in the file keeps the last value, except the
 * repeatable ones, which accumulate. Lines are at most CG_CONFIG_LINE_MAX.
 */
#include "cg_config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_log.h"
#include "cg_money.h"

#define CG_CONFIG_LINE_MAX 4096
#define CG_CONFIG_MSG_MAX 256
#define CG_CONFIG_ENV_PREFIX "CAPGATE_"
#define CG_CONFIG_ENV_NAME_MAX 64
#define CG_CONFIG_TOKENS_MAX 8
#define CG_PROVIDER_NAME_MAX 31
#define CG_LEASE_EXTRA_MS 30000u
#define CG_MODEL_MAX_OUTPUT_DEFAULT 16384
#define CG_MODEL_MAX_OUTPUT_MAX 100000000
#define CG_ALERT_RETRY_S_MAX 86400

typedef enum cg_cfg_type {
    CG_CFG_ADDR,
    CG_CFG_U32,
    CG_CFG_U64,
    CG_CFG_I64,
    CG_CFG_MONEY,
    CG_CFG_BOOL,
    CG_CFG_ENUM,
    CG_CFG_SECRET,
    CG_CFG_PATH,
    CG_CFG_RETRY,
    CG_CFG_LOGLEVEL,
    CG_CFG_SHARD,
    CG_CFG_PROVIDER,
    CG_CFG_MODEL,
    CG_CFG_CIDRS,
} cg_cfg_type;

#define CG_CFG_REPEAT 0x1u   /* shard/provider/model: each line adds an entry */
#define CG_CFG_EMPTY_OK 0x2u /* an empty value is allowed (address "not configured") */

typedef struct cg_cfg_dir {
    const char *name;
    uint8_t type;  /* cg_cfg_type */
    uint8_t flags; /* CG_CFG_* */
    size_t off;    /* offset of the field in cg_config */
    size_t cap;    /* string fields: buffer size */
    const char *def;
    int64_t min, max;
    const char *const *choices; /* CG_CFG_ENUM: NULL-terminated, stored as the index */
} cg_cfg_dir;

/* A model's provider, by name until the whole configuration has been read. */
typedef struct cg_cfg_model_ref {
    char provider[CG_PROVIDER_NAME_MAX + 1];
    char where[CG_CONFIG_MSG_MAX]; /* location of the model line, for the error */
} cg_cfg_model_ref;

/* State of one load: where we are reading, the last message, pending model refs. */
typedef struct cg_cfg_load {
    const char *where; /* "file:line" or "CAPGATE_X" of the current value */
    char msg[CG_CONFIG_MSG_MAX];
    cg_cfg_model_ref *refs; /* CG_MODELS_MAX entries; NULL when only applying defaults */
} cg_cfg_load;

static const char *const cg_cfg_reservation_[] = {"strict", "estimate", NULL};
static const char *const cg_cfg_fail_mode_[] = {"closed", "open", NULL};
static const char *const cg_cfg_lease_scopes_[] = {"none", "org", "all", NULL};
static const char *const cg_cfg_upstream_client_[] = {"builtin", "curl", NULL};
static const char *const cg_cfg_smtp_tls_[] = {"off", "starttls", "implicit", NULL};

#define CG_F(field) offsetof(cg_config, field)
#define CG_S(field) offsetof(cg_config, field), sizeof(((cg_config *)0)->field)

static const cg_cfg_dir cg_cfg_dirs_[] = {
    {"listen", CG_CFG_ADDR, 0, CG_S(listen), "127.0.0.1:8080", 0, 0, NULL},
    {"admin_listen", CG_CFG_ADDR, 0, CG_S(admin_listen), "127.0.0.1:8081", 0, 0, NULL},
    {"workers", CG_CFG_U32, 0, CG_F(workers), 0, "2", 1, 64, NULL},
    {"shard", CG_CFG_SHARD, CG_CFG_REPEAT, 0, 0, NULL, 0, 0, NULL},
    {"provider", CG_CFG_PROVIDER, CG_CFG_REPEAT, 0, 0, NULL, 0, 0, NULL},
    {"model", CG_CFG_MODEL, CG_CFG_REPEAT, 0, 0, NULL, 0, 0, NULL},
    {"routing_fee", CG_CFG_MONEY, 0, CG_F(routing_fee_nusd), 0, "0", 0, INT64_MAX, NULL},
    {"reservation", CG_CFG_ENUM, 0, CG_F(reservation_estimate), 0, "strict", 0, 0,
     cg_cfg_reservation_},
    {"fail_mode", CG_CFG_ENUM, 0, CG_F(fail_open), 0, "closed", 0, 0, cg_cfg_fail_mode_},
    {"upstream_timeout_ms", CG_CFG_U32, 0, CG_F(upstream_timeout_ms), 0, "120000", 100, 3600000,
     NULL},
    {"ledger_timeout_ms", CG_CFG_U32, 0, CG_F(ledger_timeout_ms), 0, "2000", 10, 60000, NULL},
    {"lease_ms", CG_CFG_U32, 0, CG_F(lease_ms), 0, "0", 0, 86400000, NULL},
    {"key_cache_ms", CG_CFG_U32, 0, CG_F(key_cache_ms), 0, "1000", 0, 60000, NULL},
    {"key_rotate_grace_s", CG_CFG_U32, 0, CG_F(key_rotate_grace_s), 0, "86400", 0, 2592000, NULL},
    {"body_max_bytes", CG_CFG_U32, 0, CG_F(body_max_bytes), 0, "4194304", 1024, 67108864, NULL},
    {"header_max_bytes", CG_CFG_U32, 0, CG_F(header_max_bytes), 0, "16384", 1024, 1048576, NULL},
    {"request_timeout_ms", CG_CFG_U32, 0, CG_F(request_timeout_ms), 0, "30000", 100, 600000, NULL},
    {"conns_max", CG_CFG_U32, 0, CG_F(conns_max), 0, "10000", 1, 1000000, NULL},
    {"admin_token", CG_CFG_SECRET, CG_CFG_EMPTY_OK, CG_S(admin_token), "", 0, 0, NULL},
    {"key_pepper", CG_CFG_SECRET, CG_CFG_EMPTY_OK, CG_S(key_pepper), "", 0, 0, NULL},
    {"data_dir", CG_CFG_PATH, 0, CG_S(data_dir), "./data", 0, 0, NULL},
    {"lmdb_map_bytes", CG_CFG_U64, 0, CG_F(lmdb_map_bytes), 0, "1073741824", 1048576,
     1099511627776LL, NULL},
    {"ledger_contexts", CG_CFG_U32, 0, CG_F(ledger_contexts), 0, "16", 1, 256, NULL},
    {"prompt_message_tokens", CG_CFG_U32, 0, CG_F(prompt_message_tokens), 0, "8", 0, 1000000, NULL},
    {"prompt_part_tokens", CG_CFG_U32, 0, CG_F(prompt_part_tokens), 0, "2000", 0, 1000000, NULL},
    {"allow_unpriced_models", CG_CFG_BOOL, 0, CG_F(allow_unpriced_models), 0, "off", 0, 0, NULL},
    {"enforcement", CG_CFG_BOOL, 0, CG_F(enforcement), 0, "on", 0, 0, NULL},
    {"alert_retry_s", CG_CFG_RETRY, 0, CG_F(alert_retry_s), 0,
     "5 30 120 600 1800 3600 7200 14400 28800 43200", 1, CG_ALERT_RETRY_S_MAX, NULL},
    {"alert_allow_http", CG_CFG_BOOL, 0, CG_F(alert_allow_http), 0, "off", 0, 0, NULL},
    {"alert_allow_private", CG_CFG_BOOL, 0, CG_F(alert_allow_private), 0, "off", 0, 0, NULL},
    {"alert_poll_ms", CG_CFG_U32, 0, CG_F(alert_poll_ms), 0, "2000", 50, 60000, NULL},
    {"alerter_listen", CG_CFG_ADDR, CG_CFG_EMPTY_OK, CG_S(alerter_listen), "127.0.0.1:8082", 0, 0,
     NULL},
    {"smtp_url", CG_CFG_PATH, CG_CFG_EMPTY_OK, CG_S(smtp_url), "", 0, 0, NULL},
    {"smtp_from", CG_CFG_PATH, CG_CFG_EMPTY_OK, CG_S(smtp_from), "", 0, 0, NULL},
    {"smtp_to", CG_CFG_PATH, CG_CFG_EMPTY_OK, CG_S(smtp_to), "", 0, 0, NULL},
    {"smtp_user", CG_CFG_PATH, CG_CFG_EMPTY_OK, CG_S(smtp_user), "", 0, 0, NULL},
    {"smtp_password", CG_CFG_SECRET, CG_CFG_EMPTY_OK, CG_S(smtp_password), "", 0, 0, NULL},
    {"smtp_tls", CG_CFG_ENUM, 0, CG_F(smtp_tls), 0, "off", 0, 0, cg_cfg_smtp_tls_},
    {"smtp_ca_file", CG_CFG_PATH, CG_CFG_EMPTY_OK, CG_S(smtp_ca_file), "", 0, 0, NULL},
    {"metrics_listen", CG_CFG_ADDR, CG_CFG_EMPTY_OK, CG_S(metrics_listen), "", 0, 0, NULL},
    {"shutdown_timeout_ms", CG_CFG_U32, 0, CG_F(shutdown_timeout_ms), 0, "30000", 0, 600000, NULL},
    {"log_level", CG_CFG_LOGLEVEL, 0, CG_F(log_level), 0, "info", 0, 0, NULL},
    /* Tests only; bounded to +-100 years so cg_now_ms() cannot overflow. */
    {"clock_offset_s", CG_CFG_I64, 0, CG_F(clock_offset_s), 0, "0", -3155760000LL, 3155760000LL,
     NULL},
    {"clock_file", CG_CFG_PATH, CG_CFG_EMPTY_OK, CG_S(clock_file), "", 0, 0, NULL},
    {"trusted_proxies", CG_CFG_CIDRS, CG_CFG_EMPTY_OK, 0, 0, "", 0, 0, NULL},
    {"clamp_min_tokens", CG_CFG_U32, 0, CG_F(clamp_min_tokens), 0, "16", 1, 1000000, NULL},
    {"lease_scopes", CG_CFG_ENUM, 0, CG_F(lease_scopes), 0, "none", 0, 0, cg_cfg_lease_scopes_},
    {"upstream_client", CG_CFG_ENUM, 0, CG_F(upstream_client), 0, "builtin", 0, 0,
     cg_cfg_upstream_client_},
    {"lease_slice_pct", CG_CFG_U32, 0, CG_F(lease_slice_pct), 0, "10", 1, 100, NULL},
    {"demo_listen", CG_CFG_ADDR, 0, CG_S(demo_listen), "127.0.0.1:9090", 0, 0, NULL},
    {"usage_retention_days", CG_CFG_U32, 0, CG_F(usage_retention_days), 0, "400", 0, 36500, NULL},
};

#define CG_CFG_DIR_N (sizeof(cg_cfg_dirs_) / sizeof(cg_cfg_dirs_[0]))

/* ---- small helpers ---------------------------------------------------- */

static cg_err cg_cfg_fail_(cg_cfg_load *ld, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static cg_err cg_cfg_fail_(cg_cfg_load *ld, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ld->msg, sizeof(ld->msg), fmt, ap);
    va_end(ap);
    return CG_ERR_INVAL;
}

static char *cg_cfg_trim_(char *s)
{
    while (isspace((unsigned char)*s)) {
        s++;
    }
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) {
        s[--n] = '\0';
    }
    return s;
}

/* Split s in place on whitespace into at most max tokens; returns the count, max + 1 if more. */
static int cg_cfg_split_(char *s, char **tok, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(s, " \t", &save); t != NULL; t = strtok_r(NULL, " \t", &save)) {
        if (n == max) {
            return max + 1;
        }
        tok[n++] = t;
    }
    return n;
}

static bool cg_cfg_copy_(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) {
        return false;
    }
    memcpy(dst, src, n + 1);
    return true;
}

/* Parse a decimal integer (optional '-') fully; false on syntax error or int64 overflow. */
static bool cg_cfg_parse_i64_(const char *s, int64_t *out)
{
    if (*s == '\0' || isspace((unsigned char)*s) || *s == '+') {
        return false;
    }
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        return false;
    }
    *out = v;
    return true;
}

static bool cg_cfg_parse_bool_(const char *s, uint8_t *out)
{
    static const char *const yes[] = {"on", "true", "yes", "1"};
    static const char *const no[] = {"off", "false", "no", "0"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcmp(s, yes[i]) == 0) {
            *out = 1;
            return true;
        }
        if (strcmp(s, no[i]) == 0) {
            *out = 0;
            return true;
        }
    }
    return false;
}

/* ---- secrets -------------------------------------------------------- */

/* Read the first line of path (trailing "\n" or "\r\n" stripped) into out. */
static cg_err cg_cfg_secret_file_(cg_cfg_load *ld, const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return cg_cfg_fail_(ld, "cannot read secret file %s: %s", path, strerror(errno));
    }
    char line[CG_SECRET_MAX + 3];
    cg_err err = CG_ERR_OK;
    if (fgets(line, sizeof(line), f) == NULL) {
        line[0] = '\0';
        if (ferror(f)) {
            err = cg_cfg_fail_(ld, "cannot read secret file %s", path);
            goto done;
        }
    }
    size_t n = strlen(line);
    if (n > 0 && line[n - 1] == '\n') {
        line[--n] = '\0';
        if (n > 0 && line[n - 1] == '\r') {
            line[--n] = '\0';
        }
    } else if (!feof(f) && fgetc(f) != EOF) {
        err = cg_cfg_fail_(ld, "secret in %s longer than %d bytes", path, CG_SECRET_MAX);
        goto done;
    }
    if (!cg_cfg_copy_(out, cap, line)) {
        err = cg_cfg_fail_(ld, "secret in %s longer than %d bytes", path, CG_SECRET_MAX);
    }
done:
    fclose(f);
    return err;
}

/* Resolve `env:NAME`, `file:PATH` or a literal into out (cap bytes). */
static cg_err cg_cfg_secret_(cg_cfg_load *ld, const char *src, char *out, size_t cap)
{
    if (strncmp(src, "env:", 4) == 0) {
        const char *v = getenv(src + 4);
        if (src[4] == '\0' || v == NULL) {
            return cg_cfg_fail_(ld, "environment variable %s is not set", src + 4);
        }
        if (!cg_cfg_copy_(out, cap, v)) {
            return cg_cfg_fail_(ld, "secret in %s longer than %zu bytes", src + 4, cap - 1);
        }
        return CG_ERR_OK;
    }
    if (strncmp(src, "file:", 5) == 0) {
        return cg_cfg_secret_file_(ld, src + 5, out, cap);
    }
    if (!cg_cfg_copy_(out, cap, src)) {
        return cg_cfg_fail_(ld, "secret longer than %zu bytes", cap - 1);
    }
    return CG_ERR_OK;
}

/* ---- repeatable directives -------------------------------------------- */

/* Shard names become directory names (<data_dir>/<shard>): keep them to [A-Za-z0-9_.-]. */
static bool cg_cfg_shard_name_ok_(const char *name)
{
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        return false;
    }
    for (const char *p = name; *p != '\0'; p++) {
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' && *p != '-') {
            return false;
        }
    }
    return true;
}

static cg_err cg_cfg_shard_(cg_config *c, cg_cfg_load *ld, char *value)
{
    char *t[4];
    int tn = cg_cfg_split_(value, t, 4);
    if (tn != 3 && tn != 4) {
        return cg_cfg_fail_(ld, "expected NAME REQ_URL PUB_URL [HTTP_ADDR]");
    }
    if (c->shard_n >= CG_SHARDS_MAX) {
        return cg_cfg_fail_(ld, "too many shards (max %d)", CG_SHARDS_MAX);
    }
    if (strlen(t[0]) > CG_SHARD_NAME_MAX) {
        return cg_cfg_fail_(ld, "name %s longer than %d characters", t[0], CG_SHARD_NAME_MAX);
    }
    if (!cg_cfg_shard_name_ok_(t[0])) {
        return cg_cfg_fail_(ld, "name %s may only contain letters, digits, '_', '.', '-'", t[0]);
    }
    if (cg_config_shard_index(c, t[0]) >= 0) {
        return cg_cfg_fail_(ld, "duplicate shard name %s", t[0]);
    }
    cg_shard_cfg *s = &c->shards[c->shard_n];
    for (int i = 1; i < 3; i++) {
        char *dst = i == 1 ? s->req_url : s->pub_url;
        if (strstr(t[i], "://") == NULL || !cg_cfg_copy_(dst, CG_ADDR_MAX + 1, t[i])) {
            return cg_cfg_fail_(ld, "%s: bad url %s (scheme://address, at most %d bytes)", t[0],
                                t[i], CG_ADDR_MAX);
        }
    }
    /* Optional 4th field: the shard's HTTP listener (/metrics, /healthz, /readyz). */
    s->http_addr[0] = '\0';
    if (tn == 4 && (strstr(t[3], "://") != NULL || strchr(t[3], ':') == NULL ||
                    !cg_cfg_copy_(s->http_addr, CG_ADDR_MAX + 1, t[3]))) {
        return cg_cfg_fail_(ld, "%s: bad http address %s (host:port, at most %d bytes)", t[0], t[3],
                            CG_ADDR_MAX);
    }
    memcpy(s->name, t[0], strlen(t[0]) + 1);
    c->shard_n++;
    return CG_ERR_OK;
}

static int cg_cfg_provider_index_(const cg_config *c, const char *name)
{
    for (uint32_t i = 0; i < c->provider_n; i++) {
        if (strcmp(c->providers[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static cg_err cg_cfg_provider_(cg_config *c, cg_cfg_load *ld, char *value)
{
    char *t[3];
    int n = cg_cfg_split_(value, t, 3);
    if (n < 2 || n > 3) {
        return cg_cfg_fail_(ld, "expected NAME BASE_URL [KEY_SOURCE]");
    }
    if (c->provider_n >= CG_PROVIDERS_MAX) {
        return cg_cfg_fail_(ld, "too many providers (max %d)", CG_PROVIDERS_MAX);
    }
    cg_provider_cfg *p = &c->providers[c->provider_n];
    if (!cg_cfg_copy_(p->name, sizeof(p->name), t[0])) {
        return cg_cfg_fail_(ld, "name %s longer than %d characters", t[0], CG_PROVIDER_NAME_MAX);
    }
    if (cg_cfg_provider_index_(c, t[0]) >= 0) {
        return cg_cfg_fail_(ld, "duplicate provider name %s", t[0]);
    }
    size_t ul = strlen(t[1]);
    while (ul > 0 && t[1][ul - 1] == '/') {
        t[1][--ul] = '\0';
    }
    if ((strncmp(t[1], "http://", 7) != 0 && strncmp(t[1], "https://", 8) != 0) ||
        !cg_cfg_copy_(p->base_url, sizeof(p->base_url), t[1])) {
        return cg_cfg_fail_(ld, "%s: bad base url (http[s]://..., at most %d bytes)", t[0],
                            CG_URL_MAX);
    }
    p->api_key[0] = '\0';
    if (n == 3) {
        cg_err err = cg_cfg_secret_(ld, t[2], p->api_key, sizeof(p->api_key));
        if (err != CG_ERR_OK) {
            return err;
        }
    }
    c->provider_n++;
    return CG_ERR_OK;
}

/* One `key=USD` or `max_output=N` option of a model line. */
static cg_err cg_cfg_model_opt_(cg_model_cfg *m, cg_cfg_load *ld, const char *opt, bool *seen)
{
    static const char *const keys[] = {"prompt", "completion", "cached_prompt"};
    const char *eq = strchr(opt, '=');
    size_t kl = eq != NULL ? (size_t)(eq - opt) : 0;
    if (eq == NULL) {
        return cg_cfg_fail_(ld, "%s: expected key=value, got %s", m->name, opt);
    }
    if (kl == 10 && strncmp(opt, "max_output", kl) == 0) {
        int64_t v;
        if (!cg_cfg_parse_i64_(eq + 1, &v) || v < 1 || v > CG_MODEL_MAX_OUTPUT_MAX) {
            return cg_cfg_fail_(ld, "%s: max_output must be 1..%d", m->name,
                                CG_MODEL_MAX_OUTPUT_MAX);
        }
        m->max_output_tokens = v;
        return CG_ERR_OK;
    }
    int64_t *dst[] = {&m->prompt_nusd_per_mtok, &m->completion_nusd_per_mtok,
                      &m->cached_prompt_nusd_per_mtok};
    for (size_t i = 0; i < 3; i++) {
        if (strlen(keys[i]) != kl || strncmp(opt, keys[i], kl) != 0) {
            continue;
        }
        int64_t v;
        if (cg_money_parse(eq + 1, strlen(eq + 1), 0, &v) != CG_ERR_OK) {
            return cg_cfg_fail_(ld, "%s: %s must be a non-negative USD amount per 1M tokens",
                                m->name, keys[i]);
        }
        *dst[i] = v;
        seen[i] = true;
        return CG_ERR_OK;
    }
    return cg_cfg_fail_(ld, "%s: unknown option %.*s", m->name, (int)kl, opt);
}

static cg_err cg_cfg_model_(cg_config *c, cg_cfg_load *ld, char *value)
{
    char *t[CG_CONFIG_TOKENS_MAX];
    int n = cg_cfg_split_(value, t, CG_CONFIG_TOKENS_MAX);
    if (n < 4 || n > 6) {
        return cg_cfg_fail_(ld, "expected NAME PROVIDER prompt=USD completion=USD "
                                "[cached_prompt=USD] [max_output=N]");
    }
    if (c->model_n >= CG_MODELS_MAX) {
        return cg_cfg_fail_(ld, "too many models (max %d)", CG_MODELS_MAX);
    }
    cg_model_cfg *m = &c->models[c->model_n];
    memset(m, 0, sizeof(*m));
    if (!cg_cfg_copy_(m->name, sizeof(m->name), t[0])) {
        return cg_cfg_fail_(ld, "name %s longer than %d characters", t[0], CG_MODEL_NAME_MAX);
    }
    if (cg_config_model(c, t[0]) != NULL) {
        return cg_cfg_fail_(ld, "duplicate model %s", t[0]);
    }
    assert(ld->refs != NULL);
    cg_cfg_model_ref *ref = &ld->refs[c->model_n];
    if (!cg_cfg_copy_(ref->provider, sizeof(ref->provider), t[1])) {
        return cg_cfg_fail_(ld, "%s: unknown provider %s", t[0], t[1]);
    }
    m->cached_prompt_nusd_per_mtok = -1;
    m->max_output_tokens = CG_MODEL_MAX_OUTPUT_DEFAULT;
    bool seen[3] = {false, false, false};
    for (int i = 2; i < n; i++) {
        cg_err err = cg_cfg_model_opt_(m, ld, t[i], seen);
        if (err != CG_ERR_OK) {
            return err;
        }
    }
    if (!seen[0] || !seen[1]) {
        return cg_cfg_fail_(ld, "%s: prompt= and completion= are required", t[0]);
    }
    snprintf(ref->where, sizeof(ref->where), "%s", ld->where);
    c->model_n++;
    return CG_ERR_OK;
}

/* ---- scalar directives ------------------------------------------------ */

static cg_err cg_cfg_int_(cg_config *c, const cg_cfg_dir *d, cg_cfg_load *ld, const char *v)
{
    int64_t x;
    if (!cg_cfg_parse_i64_(v, &x) || x < d->min || x > d->max) {
        return cg_cfg_fail_(ld, "must be %lld..%lld", (long long)d->min, (long long)d->max);
    }
    char *field = (char *)c + d->off;
    if (d->type == CG_CFG_U32) {
        *(uint32_t *)(void *)field = (uint32_t)x;
    } else if (d->type == CG_CFG_U64) {
        *(uint64_t *)(void *)field = (uint64_t)x;
    } else {
        *(int64_t *)(void *)field = x;
    }
    return CG_ERR_OK;
}

static cg_err cg_cfg_retry_(cg_config *c, const cg_cfg_dir *d, cg_cfg_load *ld, char *v)
{
    char *t[CG_ALERT_RETRY_MAX];
    int n = cg_cfg_split_(v, t, CG_ALERT_RETRY_MAX);
    if (n < 1 || n > CG_ALERT_RETRY_MAX) {
        return cg_cfg_fail_(ld, "expected 1..%d delays in seconds", CG_ALERT_RETRY_MAX);
    }
    uint32_t tmp[CG_ALERT_RETRY_MAX];
    for (int i = 0; i < n; i++) {
        int64_t x;
        if (!cg_cfg_parse_i64_(t[i], &x) || x < d->min || x > d->max) {
            return cg_cfg_fail_(ld, "each delay must be %lld..%lld, got %s", (long long)d->min,
                                (long long)d->max, t[i]);
        }
        tmp[i] = (uint32_t)x;
    }
    memcpy(c->alert_retry_s, tmp, (size_t)n * sizeof(tmp[0]));
    c->alert_retry_n = (uint32_t)n;
    return CG_ERR_OK;
}

static cg_err cg_cfg_enum_(cg_config *c, const cg_cfg_dir *d, cg_cfg_load *ld, const char *v)
{
    for (size_t i = 0; d->choices[i] != NULL; i++) {
        if (strcmp(v, d->choices[i]) == 0) {
            *((uint8_t *)c + d->off) = (uint8_t)i;
            return CG_ERR_OK;
        }
    }
    char all[CG_CONFIG_MSG_MAX / 2] = "";
    for (size_t i = 0; d->choices[i] != NULL; i++) {
        size_t n = strlen(all);
        snprintf(all + n, sizeof(all) - n, "%s%s", i > 0 ? "|" : "", d->choices[i]);
    }
    return cg_cfg_fail_(ld, "must be %s", all);
}

static cg_err cg_cfg_string_(cg_config *c, const cg_cfg_dir *d, cg_cfg_load *ld, const char *v)
{
    char *field = (char *)c + d->off;
    if (d->type == CG_CFG_SECRET) {
        return cg_cfg_secret_(ld, v, field, d->cap);
    }
    if (d->type == CG_CFG_ADDR && v[0] != '\0') {
        char host[CG_ADDR_MAX + 1];
        int port;
        if (cg_addr_split(v, host, sizeof(host), &port) != CG_ERR_OK) {
            return cg_cfg_fail_(ld, "must be host:port or [v6addr]:port");
        }
    }
    if (!cg_cfg_copy_(field, d->cap, v)) {
        return cg_cfg_fail_(ld, "longer than %zu bytes", d->cap - 1);
    }
    return CG_ERR_OK;
}

/* A space-separated list of networks or addresses; replaces the whole list (empty = none). */
static cg_err cg_cfg_cidrs_(cg_config *c, cg_cfg_load *ld, char *v)
{
    char *t[CG_TRUSTED_PROXIES_MAX];
    int n = cg_cfg_split_(v, t, CG_TRUSTED_PROXIES_MAX);
    if (n > CG_TRUSTED_PROXIES_MAX) {
        return cg_cfg_fail_(ld, "too many entries (max %d)", CG_TRUSTED_PROXIES_MAX);
    }
    cg_cidr tmp[CG_TRUSTED_PROXIES_MAX];
    for (int i = 0; i < n; i++) {
        if (cg_cidr_parse(t[i], &tmp[i]) != CG_ERR_OK) {
            return cg_cfg_fail_(ld, "bad entry %s (an address or a network with zero host bits)",
                                t[i]);
        }
    }
    memcpy(c->trusted_proxies, tmp, (size_t)n * sizeof(tmp[0]));
    c->trusted_proxy_n = (uint32_t)n;
    return CG_ERR_OK;
}

/* Apply one value (already trimmed, comment removed) of directive d. v may be modified. */
static cg_err cg_cfg_set_(cg_config *c, const cg_cfg_dir *d, cg_cfg_load *ld, char *v)
{
    size_t n = strlen(v);
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
        v[n - 1] = '\0';
        v++;
    }
    bool list = d->type == CG_CFG_RETRY || d->type == CG_CFG_CIDRS || (d->flags & CG_CFG_REPEAT);
    if (!list && strpbrk(v, " \t") != NULL) {
        return cg_cfg_fail_(ld, "expects a single value");
    }
    if (v[0] == '\0' && !(d->flags & CG_CFG_EMPTY_OK)) {
        return cg_cfg_fail_(ld, "missing value");
    }
    uint8_t b;
    int64_t money;
    switch ((cg_cfg_type)d->type) {
    case CG_CFG_U32:
    case CG_CFG_U64:
    case CG_CFG_I64:
        return cg_cfg_int_(c, d, ld, v);
    case CG_CFG_MONEY:
        if (cg_money_parse(v, strlen(v), 0, &money) != CG_ERR_OK) {
            return cg_cfg_fail_(ld, "must be a non-negative USD amount");
        }
        *(int64_t *)(void *)((char *)c + d->off) = money;
        return CG_ERR_OK;
    case CG_CFG_BOOL:
        if (!cg_cfg_parse_bool_(v, &b)) {
            return cg_cfg_fail_(ld, "must be on|off");
        }
        *((uint8_t *)c + d->off) = b;
        return CG_ERR_OK;
    case CG_CFG_ENUM:
        return cg_cfg_enum_(c, d, ld, v);
    case CG_CFG_LOGLEVEL:
        c->log_level = cg_log_level_parse(v);
        return c->log_level < 0 ? cg_cfg_fail_(ld, "must be debug|info|warn|error") : CG_ERR_OK;
    case CG_CFG_RETRY:
        return cg_cfg_retry_(c, d, ld, v);
    case CG_CFG_SHARD:
        return cg_cfg_shard_(c, ld, v);
    case CG_CFG_PROVIDER:
        return cg_cfg_provider_(c, ld, v);
    case CG_CFG_MODEL:
        return cg_cfg_model_(c, ld, v);
    case CG_CFG_CIDRS:
        return cg_cfg_cidrs_(c, ld, v);
    case CG_CFG_ADDR:
    case CG_CFG_SECRET:
    case CG_CFG_PATH:
        return cg_cfg_string_(c, d, ld, v);
    }
    return cg_cfg_fail_(ld, "internal: unknown directive type");
}

static const cg_cfg_dir *cg_cfg_find_(const char *name)
{
    for (size_t i = 0; i < CG_CFG_DIR_N; i++) {
        if (strcmp(cg_cfg_dirs_[i].name, name) == 0) {
            return &cg_cfg_dirs_[i];
        }
    }
    return NULL;
}

static void cg_cfg_defaults_raw_(cg_config *c, cg_cfg_load *ld)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < CG_CFG_DIR_N; i++) {
        const cg_cfg_dir *d = &cg_cfg_dirs_[i];
        if (d->flags & CG_CFG_REPEAT) {
            continue;
        }
        char v[CG_CONFIG_MSG_MAX];
        snprintf(v, sizeof(v), "%s", d->def);
        ld->where = "default";
        cg_err err = cg_cfg_set_(c, d, ld, v);
        assert(err == CG_ERR_OK && "every default must pass its own directive's checks");
        (void)err;
    }
}

void cg_config_defaults(cg_config *c)
{
    cg_cfg_load ld = {.where = "default"};
    cg_cfg_defaults_raw_(c, &ld);
    c->lease_ms = c->upstream_timeout_ms + CG_LEASE_EXTRA_MS;
}

/* ---- the file, the environment, cross-checks ---------------------------- */

static void cg_cfg_error_(char *err, size_t errcap, const char *where, const char *name,
                          const char *msg)
{
    if (err != NULL && errcap > 0) {
        snprintf(err, errcap, "%s: %s: %s", where, name, msg);
    }
}

/* Cut a `#` comment: '#' at the start of the line or after whitespace. */
static void cg_cfg_strip_comment_(char *line)
{
    for (char *p = line; *p != '\0'; p++) {
        if (*p == '#' && (p == line || isspace((unsigned char)p[-1]))) {
            *p = '\0';
            return;
        }
    }
}

/* Apply one file line. On error writes the full message into err. */
static cg_err cg_cfg_line_(cg_config *c, cg_cfg_load *ld, char *line, char *err, size_t errcap)
{
    cg_cfg_strip_comment_(line);
    char *s = cg_cfg_trim_(line);
    if (*s == '\0') {
        return CG_ERR_OK;
    }
    char *v = s + strcspn(s, " \t");
    if (*v != '\0') {
        *v++ = '\0';
    }
    v = cg_cfg_trim_(v);
    const cg_cfg_dir *d = cg_cfg_find_(s);
    if (d == NULL) {
        cg_cfg_error_(err, errcap, ld->where, s, "unknown directive");
        return CG_ERR_INVAL;
    }
    cg_err e = cg_cfg_set_(c, d, ld, v);
    if (e != CG_ERR_OK) {
        cg_cfg_error_(err, errcap, ld->where, d->name, ld->msg);
    }
    return e;
}

static cg_err cg_cfg_file_(cg_config *c, cg_cfg_load *ld, const char *path, char *err,
                           size_t errcap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        if (err != NULL && errcap > 0) {
            snprintf(err, errcap, "%s: cannot open: %s", path, strerror(errno));
        }
        return CG_ERR_IO;
    }
    char line[CG_CONFIG_LINE_MAX];
    char where[CG_PATH_MAX + 32];
    cg_err e = CG_ERR_OK;
    for (unsigned lineno = 1; fgets(line, sizeof(line), f) != NULL; lineno++) {
        snprintf(where, sizeof(where), "%s:%u", path, lineno);
        ld->where = where;
        size_t n = strlen(line);
        if (n == sizeof(line) - 1 && line[n - 1] != '\n' && !feof(f)) {
            if (err != NULL && errcap > 0) {
                snprintf(err, errcap, "%s: line longer than %d bytes", where,
                         CG_CONFIG_LINE_MAX - 2);
            }
            e = CG_ERR_INVAL;
            goto done;
        }
        e = cg_cfg_line_(c, ld, line, err, errcap);
        if (e != CG_ERR_OK) {
            goto done;
        }
    }
    if (ferror(f)) {
        if (err != NULL && errcap > 0) {
            snprintf(err, errcap, "%s: read error", path);
        }
        e = CG_ERR_IO;
    }
done:
    fclose(f);
    return e;
}

/* Reset a repeatable directive's entries: an environment override replaces the file's. */
static void cg_cfg_clear_repeat_(cg_config *c, const cg_cfg_dir *d)
{
    if (d->type == CG_CFG_SHARD) {
        c->shard_n = 0;
    } else if (d->type == CG_CFG_PROVIDER) {
        c->provider_n = 0;
    } else {
        c->model_n = 0;
    }
}

static cg_err cg_cfg_env_one_(cg_config *c, cg_cfg_load *ld, const cg_cfg_dir *d, char *err,
                              size_t errcap)
{
    char name[CG_CONFIG_ENV_NAME_MAX];
    size_t pl = strlen(CG_CONFIG_ENV_PREFIX);
    memcpy(name, CG_CONFIG_ENV_PREFIX, pl);
    size_t i = 0;
    for (; d->name[i] != '\0' && pl + i < sizeof(name) - 1; i++) {
        name[pl + i] = (char)toupper((unsigned char)d->name[i]);
    }
    name[pl + i] = '\0';
    const char *env = getenv(name);
    if (env == NULL) {
        return CG_ERR_OK;
    }
    ld->where = name;
    char buf[CG_CONFIG_LINE_MAX];
    if (!cg_cfg_copy_(buf, sizeof(buf), env)) {
        cg_cfg_error_(err, errcap, name, d->name, "value too long");
        return CG_ERR_INVAL;
    }
    cg_err e = CG_ERR_OK;
    if (!(d->flags & CG_CFG_REPEAT)) {
        e = cg_cfg_set_(c, d, ld, cg_cfg_trim_(buf));
    } else {
        cg_cfg_clear_repeat_(c, d);
        char *save = NULL;
        for (char *it = strtok_r(buf, ";", &save); it != NULL && e == CG_ERR_OK;
             it = strtok_r(NULL, ";", &save)) {
            it = cg_cfg_trim_(it);
            if (*it != '\0') {
                e = cg_cfg_set_(c, d, ld, it);
            }
        }
    }
    if (e != CG_ERR_OK) {
        cg_cfg_error_(err, errcap, name, d->name, ld->msg);
    }
    return e;
}

/* Resolve model -> provider names and derived values once everything is read. */
static cg_err cg_cfg_resolve_(cg_config *c, cg_cfg_load *ld, char *err, size_t errcap)
{
    for (uint32_t i = 0; i < c->model_n; i++) {
        int p = cg_cfg_provider_index_(c, ld->refs[i].provider);
        if (p < 0) {
            snprintf(ld->msg, sizeof(ld->msg), "%s: unknown provider %s", c->models[i].name,
                     ld->refs[i].provider);
            cg_cfg_error_(err, errcap, ld->refs[i].where, "model", ld->msg);
            return CG_ERR_INVAL;
        }
        c->models[i].provider = (uint16_t)p;
    }
    if (c->lease_ms == 0) {
        c->lease_ms = c->upstream_timeout_ms + CG_LEASE_EXTRA_MS;
    }
    return CG_ERR_OK;
}

cg_err cg_config_load(cg_config *c, const char *path, char *err, size_t errcap)
{
    if (err != NULL && errcap > 0) {
        err[0] = '\0';
    }
    cg_cfg_load ld = {.where = "default"};
    ld.refs = calloc(CG_MODELS_MAX, sizeof(*ld.refs));
    if (ld.refs == NULL) {
        cg_cfg_error_(err, errcap, "config", "load", "out of memory");
        return CG_ERR_NOMEM;
    }
    cg_cfg_defaults_raw_(c, &ld);
    cg_err e = CG_ERR_OK;
    if (path != NULL) {
        e = cg_cfg_file_(c, &ld, path, err, errcap);
        if (e != CG_ERR_OK) {
            goto done;
        }
    }
    for (size_t i = 0; i < CG_CFG_DIR_N; i++) {
        e = cg_cfg_env_one_(c, &ld, &cg_cfg_dirs_[i], err, errcap);
        if (e != CG_ERR_OK) {
            goto done;
        }
    }
    e = cg_cfg_resolve_(c, &ld, err, errcap);
done:
    free(ld.refs);
    return e;
}

/* ---- queries ---------------------------------------------------------- */

const cg_model_cfg *cg_config_model(const cg_config *c, const char *name)
{
    for (uint32_t i = 0; i < c->model_n; i++) {
        if (strcmp(c->models[i].name, name) == 0) {
            return &c->models[i];
        }
    }
    return NULL;
}

int cg_config_shard_index(const cg_config *c, const char *name)
{
    for (uint32_t i = 0; i < c->shard_n; i++) {
        if (strcmp(c->shards[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

cg_err cg_config_ring(const cg_config *c, cg_ring *out)
{
    const char *names[CG_SHARDS_MAX];
    if (c->shard_n == 0 || c->shard_n > CG_SHARDS_MAX) {
        return CG_ERR_INVAL;
    }
    for (uint32_t i = 0; i < c->shard_n; i++) {
        names[i] = c->shards[i].name;
    }
    return cg_ring_init(out, names, c->shard_n);
}

static bool cg_addr_port_(const char *s, int *port)
{
    int64_t v;
    if (*s == '-' || !cg_cfg_parse_i64_(s, &v) || v < 0 || v > 65535) {
        return false;
    }
    *port = (int)v;
    return true;
}

cg_err cg_addr_split(const char *hostport, char *host, size_t hostcap, int *port)
{
    const char *h = hostport, *colon;
    size_t hl;
    if (hostport == NULL || hostport[0] == '\0') {
        return CG_ERR_INVAL;
    }
    if (hostport[0] == '[') {
        const char *rb = strchr(hostport, ']');
        if (rb == NULL || rb[1] != ':') {
            return CG_ERR_INVAL;
        }
        h = hostport + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strchr(hostport, ':');
        if (colon == NULL || strchr(colon + 1, ':') != NULL) {
            return CG_ERR_INVAL; /* no port, or an unbracketed IPv6 address */
        }
        hl = (size_t)(colon - hostport);
    }
    int p;
    if (hl == 0 || !cg_addr_port_(colon + 1, &p)) {
        return CG_ERR_INVAL;
    }
    if (hl >= hostcap) {
        return CG_ERR_TOOBIG;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = p;
    return CG_ERR_OK;
}
