/*
 * config_test.c — the directive table: good files, every kind of bad value,
 * environment overrides, secrets, defaults and the address splitter.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cg_config.h"
#include "cg_log.h"
#include "cg_test.h"

#define ERR_MAX 512

static char cfg_path[64];
static cg_config cfg; /* large: keep off the stack */

/* Write text to a fresh temporary file; its path goes to cfg_path. */
static int write_cfg(const char *text)
{
    snprintf(cfg_path, sizeof(cfg_path), "/tmp/cg_config_test_XXXXXX");
    int fd = mkstemp(cfg_path);
    if (fd < 0) {
        return -1;
    }
    size_t n = strlen(text);
    int rc = write(fd, text, n) == (ssize_t)n ? 0 : -1;
    close(fd);
    return rc;
}

/* Load text; returns the error code, message in err. */
static cg_err load_text(const char *text, char *err)
{
    if (write_cfg(text) != 0) {
        return CG_ERR_IO;
    }
    cg_err e = cg_config_load(&cfg, cfg_path, err, ERR_MAX);
    unlink(cfg_path);
    return e;
}

/* Expect a failure whose message starts with "<path>:<line>: <directive>: ". */
static int fails_at(const char *text, int line, const char *directive)
{
    char err[ERR_MAX], want[128];
    if (load_text(text, err) != CG_ERR_INVAL) {
        fprintf(stderr, "  expected failure for: %s", text);
        return 0;
    }
    snprintf(want, sizeof(want), "%s:%d: %s: ", cfg_path, line, directive);
    if (strncmp(err, want, strlen(want)) != 0) {
        fprintf(stderr, "  message \"%s\" does not start with \"%s\"\n", err, want);
        return 0;
    }
    return 1;
}

static const char good_cfg[] =
    "# a comment\n"
    "listen        0.0.0.0:8000\n"
    "admin_listen  [::1]:8001   # trailing comment\n"
    "\n"
    "workers 4\n"
    "shard  s0  tcp://127.0.0.1:7100  tcp://127.0.0.1:7101\n"
    "shard  s1  tcp://127.0.0.1:7110  tcp://127.0.0.1:7111\n"
    "model  gpt-4o-mini  openai  prompt=0.15  completion=0.60  max_output=4096\n"
    "model  cheap  local  prompt=0.0000000001 completion=0 cached_prompt=0.075\n"
    "provider  openai  https://api.openai.com/v1/  sk-literal\n"
    "provider  local   http://127.0.0.1:9090/v1\n"
    "routing_fee  0.0001\n"
    "reservation estimate\n"
    "fail_mode open\n"
    "upstream_timeout_ms 5000\n"
    "allow_unpriced_models yes\n"
    "alert_allow_http on\n"
    "alert_allow_private 1\n"
    "alert_retry_s 1 2 3\n"
    "metrics_listen 127.0.0.1:9100\n"
    "log_level debug\n"
    "clock_offset_s -3600\n"
    "data_dir /var/lib/capgate\n"
    "lmdb_map_bytes 1099511627776\n"
    "admin_token tok\n";

CG_TEST(config_good_file)
{
    char err[ERR_MAX];
    CG_CHECK(load_text(good_cfg, err) == CG_ERR_OK);
    CG_CHECK_EQ_STR(cfg.listen, "0.0.0.0:8000");
    CG_CHECK_EQ_STR(cfg.admin_listen, "[::1]:8001");
    CG_CHECK_EQ_INT(cfg.workers, 4);
    CG_CHECK_EQ_INT(cfg.shard_n, 2);
    CG_CHECK_EQ_STR(cfg.shards[1].name, "s1");
    CG_CHECK_EQ_STR(cfg.shards[1].req_url, "tcp://127.0.0.1:7110");
    CG_CHECK_EQ_STR(cfg.shards[1].pub_url, "tcp://127.0.0.1:7111");
    CG_CHECK_EQ_INT(cfg.provider_n, 2);
    CG_CHECK_EQ_STR(cfg.providers[0].base_url, "https://api.openai.com/v1");
    CG_CHECK_EQ_STR(cfg.providers[0].api_key, "sk-literal");
    CG_CHECK_EQ_STR(cfg.providers[1].api_key, "");
    CG_CHECK_EQ_INT(cfg.model_n, 2);
    const cg_model_cfg *m = cg_config_model(&cfg, "gpt-4o-mini");
    CG_CHECK(m != NULL);
    CG_CHECK_EQ_INT(m->provider, 0);
    CG_CHECK_EQ_INT(m->prompt_nusd_per_mtok, 150000000);
    CG_CHECK_EQ_INT(m->completion_nusd_per_mtok, 600000000);
    CG_CHECK_EQ_INT(m->cached_prompt_nusd_per_mtok, -1);
    CG_CHECK_EQ_INT(m->max_output_tokens, 4096);
    m = cg_config_model(&cfg, "cheap");
    CG_CHECK(m != NULL);
    CG_CHECK_EQ_INT(m->provider, 1);
    CG_CHECK_EQ_INT(m->prompt_nusd_per_mtok, 1);
    CG_CHECK_EQ_INT(m->completion_nusd_per_mtok, 0);
    CG_CHECK_EQ_INT(m->cached_prompt_nusd_per_mtok, 75000000);
    CG_CHECK_EQ_INT(m->max_output_tokens, 16384);
    CG_CHECK(cg_config_model(&cfg, "nope") == NULL);
    CG_CHECK_EQ_INT(cfg.routing_fee_nusd, 100000);
    CG_CHECK_EQ_INT(cfg.reservation_estimate, 1);
    CG_CHECK_EQ_INT(cfg.fail_open, 1);
    CG_CHECK_EQ_INT(cfg.upstream_timeout_ms, 5000);
    CG_CHECK_EQ_INT(cfg.lease_ms, 35000);
    CG_CHECK(cfg.allow_unpriced_models && cfg.alert_allow_http && cfg.alert_allow_private);
    CG_CHECK_EQ_INT(cfg.alert_retry_n, 3);
    CG_CHECK(cfg.alert_retry_s[0] == 1 && cfg.alert_retry_s[1] == 2 && cfg.alert_retry_s[2] == 3);
    CG_CHECK_EQ_STR(cfg.metrics_listen, "127.0.0.1:9100");
    CG_CHECK_EQ_INT(cfg.log_level, CG_LOG_DEBUG);
    CG_CHECK_EQ_INT(cfg.clock_offset_s, -3600);
    CG_CHECK_EQ_STR(cfg.data_dir, "/var/lib/capgate");
    CG_CHECK(cfg.lmdb_map_bytes == 1099511627776ULL);
    CG_CHECK_EQ_STR(cfg.admin_token, "tok");
    CG_CHECK_EQ_INT(cg_config_shard_index(&cfg, "s1"), 1);
    CG_CHECK_EQ_INT(cg_config_shard_index(&cfg, "s9"), -1);
    cg_ring r;
    CG_CHECK(cg_config_ring(&cfg, &r) == CG_ERR_OK);
    CG_CHECK_EQ_INT(r.shard_n, 2);
    cg_ring_fini(&r);
}

CG_TEST(config_defaults)
{
    char err[ERR_MAX];
    CG_CHECK(load_text("", err) == CG_ERR_OK);
    CG_CHECK_EQ_STR(cfg.listen, "127.0.0.1:8080");
    CG_CHECK_EQ_STR(cfg.admin_listen, "127.0.0.1:8081");
    CG_CHECK_EQ_STR(cfg.demo_listen, "127.0.0.1:9090");
    CG_CHECK_EQ_STR(cfg.metrics_listen, "");
    CG_CHECK_EQ_INT(cfg.workers, 2);
    CG_CHECK(cfg.shard_n == 0 && cfg.provider_n == 0 && cfg.model_n == 0);
    CG_CHECK_EQ_INT(cfg.routing_fee_nusd, 0);
    CG_CHECK(cfg.reservation_estimate == 0 && cfg.fail_open == 0);
    CG_CHECK_EQ_INT(cfg.upstream_timeout_ms, 120000);
    CG_CHECK_EQ_INT(cfg.ledger_timeout_ms, 2000);
    CG_CHECK_EQ_INT(cfg.lease_ms, 150000);
    CG_CHECK_EQ_INT(cfg.key_cache_ms, 1000);
    CG_CHECK_EQ_INT(cfg.body_max_bytes, 4194304);
    CG_CHECK_EQ_INT(cfg.header_max_bytes, 16384);
    CG_CHECK_EQ_INT(cfg.request_timeout_ms, 30000);
    CG_CHECK_EQ_INT(cfg.conns_max, 10000);
    CG_CHECK(cfg.admin_token[0] == '\0' && cfg.key_pepper[0] == '\0');
    CG_CHECK_EQ_STR(cfg.data_dir, "./data");
    CG_CHECK(cfg.lmdb_map_bytes == 1073741824ULL);
    CG_CHECK_EQ_INT(cfg.ledger_contexts, 16);
    CG_CHECK_EQ_INT(cfg.prompt_message_tokens, 8);
    CG_CHECK_EQ_INT(cfg.prompt_part_tokens, 2000);
    CG_CHECK(!cfg.allow_unpriced_models && !cfg.alert_allow_http && !cfg.alert_allow_private);
    CG_CHECK_EQ_INT(cfg.alert_retry_n, 10);
    CG_CHECK_EQ_INT(cfg.alert_retry_s[0], 5);
    CG_CHECK_EQ_INT(cfg.alert_retry_s[9], 43200);
    CG_CHECK_EQ_INT(cfg.alert_poll_ms, 2000);
    CG_CHECK_EQ_INT(cfg.log_level, CG_LOG_INFO);
    CG_CHECK_EQ_INT(cfg.clock_offset_s, 0);
    CG_CHECK_EQ_STR(cfg.clock_file, "");
    CG_CHECK_EQ_INT(cfg.trusted_proxy_n, 0);
    CG_CHECK_EQ_INT(cfg.clamp_min_tokens, 16);
    CG_CHECK_EQ_INT(cfg.lease_scopes, CG_LEASE_NONE);
    CG_CHECK_EQ_INT(cfg.lease_slice_pct, 10);
    cg_config d;
    cg_config_defaults(&d);
    CG_CHECK_EQ_INT(d.workers, 2);
    CG_CHECK_EQ_INT(d.lease_ms, 150000);
    CG_CHECK_EQ_INT(d.alert_retry_n, 10);
    CG_CHECK_EQ_INT(d.clamp_min_tokens, 16);
    /* No file at all is allowed too. */
    CG_CHECK(cg_config_load(&cfg, NULL, err, sizeof(err)) == CG_ERR_OK);
    CG_CHECK_EQ_INT(cfg.workers, 2);
}

CG_TEST(config_bad_values)
{
    CG_CHECK(fails_at("workers 0\n", 1, "workers"));
    CG_CHECK(fails_at("# c\nworkers 65\n", 2, "workers"));
    CG_CHECK(fails_at("workers two\n", 1, "workers"));
    CG_CHECK(fails_at("workers 2 3\n", 1, "workers"));
    CG_CHECK(fails_at("workers\n", 1, "workers"));
    CG_CHECK(fails_at("listen 127.0.0.1\n", 1, "listen"));
    CG_CHECK(fails_at("listen ::1:80\n", 1, "listen"));
    CG_CHECK(fails_at("listen 127.0.0.1:70000\n", 1, "listen"));
    CG_CHECK(fails_at("routing_fee -1\n", 1, "routing_fee"));
    CG_CHECK(fails_at("routing_fee 1e-3\n", 1, "routing_fee"));
    CG_CHECK(fails_at("reservation maybe\n", 1, "reservation"));
    CG_CHECK(fails_at("fail_mode half\n", 1, "fail_mode"));
    CG_CHECK(fails_at("alert_allow_http perhaps\n", 1, "alert_allow_http"));
    CG_CHECK(fails_at("alert_retry_s 5 0 10\n", 1, "alert_retry_s"));
    CG_CHECK(fails_at("alert_retry_s 86401\n", 1, "alert_retry_s"));
    CG_CHECK(fails_at("alert_retry_s 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 "
                      "24 25 26 27 28 29 30 31 32 33\n",
                      1, "alert_retry_s"));
    CG_CHECK(fails_at("log_level loud\n", 1, "log_level"));
    CG_CHECK(fails_at("lmdb_map_bytes 1024\n", 1, "lmdb_map_bytes"));
    CG_CHECK(fails_at("upstream_timeout_ms 99999999999999999999\n", 1, "upstream_timeout_ms"));
    CG_CHECK(fails_at("shard s0 tcp://a:1\n", 1, "shard"));
    CG_CHECK(fails_at("shard s0 tcp://a:1 tcp://a:2\nshard s0 tcp://b:1 tcp://b:2\n", 2, "shard"));
    CG_CHECK(fails_at("shard a-shard-name-longer-than-31-chars tcp://a:1 tcp://a:2\n", 1, "shard"));
    CG_CHECK(fails_at("shard s0 127.0.0.1:1 tcp://a:2\n", 1, "shard"));
    CG_CHECK(fails_at("shard ../s0 tcp://a:1 tcp://a:2\n", 1, "shard"));
    CG_CHECK(fails_at("shard .. tcp://a:1 tcp://a:2\n", 1, "shard"));
    CG_CHECK(fails_at("provider p ftp://x\n", 1, "provider"));
    CG_CHECK(fails_at("provider p\n", 1, "provider"));
    CG_CHECK(fails_at("provider p http://x\nprovider p http://y\n", 2, "provider"));
    CG_CHECK(fails_at("provider p http://x env:CG_CONFIG_TEST_UNSET_VAR\n", 1, "provider"));
    CG_CHECK(fails_at("provider p http://x\nmodel m p prompt=1\n", 2, "model"));
    CG_CHECK(fails_at("provider p http://x\nmodel m p prompt=x completion=1\n", 2, "model"));
    CG_CHECK(fails_at("provider p http://x\nmodel m p prompt=1 completion=-1\n", 2, "model"));
    CG_CHECK(fails_at("provider p http://x\nmodel m p prompt=1 completion=1 max_output=0\n", 2,
                      "model"));
    CG_CHECK(
        fails_at("provider p http://x\nmodel m p prompt=1 completion=1 colour=red\n", 2, "model"));
    CG_CHECK(fails_at("provider p http://x\nmodel m p prompt=1 completion=1\n"
                      "model m p prompt=1 completion=1\n",
                      3, "model"));
    CG_CHECK(fails_at("key_pepper file:/nonexistent/cg-pepper\n", 1, "key_pepper"));
}

CG_TEST(config_model_unknown_provider)
{
    char err[ERR_MAX];
    CG_CHECK(load_text("provider p http://x\n\nmodel gpt-x q prompt=1 completion=2\n", err) ==
             CG_ERR_INVAL);
    CG_CHECK(strstr(err, ":3: model: ") != NULL);
    CG_CHECK(strstr(err, "gpt-x") != NULL);
    CG_CHECK(strstr(err, "unknown provider q") != NULL);
}

CG_TEST(config_unknown_directive)
{
    char err[ERR_MAX];
    CG_CHECK(fails_at("workers 2\nwokers 3\n", 2, "wokers"));
    CG_CHECK(load_text("frobnicate\n", err) == CG_ERR_INVAL);
    CG_CHECK(strstr(err, "frobnicate: unknown directive") != NULL);
}

CG_TEST(config_missing_file)
{
    char err[ERR_MAX];
    CG_CHECK_EQ_INT(cg_config_load(&cfg, "/nonexistent/capgate.conf", err, sizeof(err)), CG_ERR_IO);
    CG_CHECK(strstr(err, "/nonexistent/capgate.conf") != NULL);
}

CG_TEST(config_env_overrides)
{
    char err[ERR_MAX];
    setenv("CAPGATE_WORKERS", "8", 1);
    setenv("CAPGATE_ALERT_RETRY_S", "7 70", 1);
    setenv("CAPGATE_ALLOW_UNPRICED_MODELS", "true", 1);
    cg_err e = load_text("workers 4\nalert_retry_s 1\n", err);
    unsetenv("CAPGATE_ALERT_RETRY_S");
    unsetenv("CAPGATE_ALLOW_UNPRICED_MODELS");
    CG_CHECK(e == CG_ERR_OK);
    CG_CHECK_EQ_INT(cfg.workers, 8);
    CG_CHECK_EQ_INT(cfg.alert_retry_n, 2);
    CG_CHECK_EQ_INT(cfg.alert_retry_s[1], 70);
    CG_CHECK_EQ_INT(cfg.allow_unpriced_models, 1);
    /* A bad environment value names the variable and the directive. */
    setenv("CAPGATE_WORKERS", "99", 1);
    e = load_text("workers 4\n", err);
    unsetenv("CAPGATE_WORKERS");
    CG_CHECK_EQ_INT(e, CG_ERR_INVAL);
    CG_CHECK(strncmp(err, "CAPGATE_WORKERS: workers: ", 26) == 0);
}

CG_TEST(config_env_repeatable)
{
    char err[ERR_MAX];
    setenv("CAPGATE_SHARD", "a tcp://h:1 tcp://h:2; b tcp://h:3 tcp://h:4 ;", 1);
    setenv("CAPGATE_PROVIDER", "late http://127.0.0.1:1/v1", 1);
    cg_err e = load_text("shard s0 tcp://x:1 tcp://x:2\nshard s1 tcp://x:3 tcp://x:4\n"
                         "shard s2 tcp://x:5 tcp://x:6\n"
                         "provider p http://x\nmodel m late prompt=1 completion=2\n",
                         err);
    unsetenv("CAPGATE_SHARD");
    unsetenv("CAPGATE_PROVIDER");
    CG_CHECK(e == CG_ERR_OK);
    CG_CHECK_EQ_INT(cfg.shard_n, 2);
    CG_CHECK_EQ_STR(cfg.shards[0].name, "a");
    CG_CHECK_EQ_STR(cfg.shards[1].pub_url, "tcp://h:4");
    CG_CHECK_EQ_INT(cfg.provider_n, 1);
    CG_CHECK_EQ_STR(cfg.providers[0].name, "late");
    CG_CHECK_EQ_INT(cfg.models[0].provider, 0);
    setenv("CAPGATE_MODEL", "x late prompt=1 completion=1;y late prompt=2 completion=2", 1);
    setenv("CAPGATE_PROVIDER", "late http://127.0.0.1:1/v1", 1);
    e = load_text("model m nowhere prompt=1 completion=2\n", err);
    unsetenv("CAPGATE_MODEL");
    unsetenv("CAPGATE_PROVIDER");
    CG_CHECK(e == CG_ERR_OK);
    CG_CHECK_EQ_INT(cfg.model_n, 2);
    CG_CHECK(cg_config_model(&cfg, "m") == NULL);
    CG_CHECK_EQ_INT(cg_config_model(&cfg, "y")->prompt_nusd_per_mtok, 2000000000);
    setenv("CAPGATE_SHARD", "a tcp://h:1", 1);
    e = load_text("", err);
    unsetenv("CAPGATE_SHARD");
    CG_CHECK_EQ_INT(e, CG_ERR_INVAL);
    CG_CHECK(strncmp(err, "CAPGATE_SHARD: shard: ", 22) == 0);
}

CG_TEST(config_secrets)
{
    char err[ERR_MAX];
    char spath[64] = "/tmp/cg_config_secret_XXXXXX";
    int fd = mkstemp(spath);
    CG_CHECK(fd >= 0);
    CG_CHECK(write(fd, "pepper-from-file\nsecond line\n", 29) == 29);
    close(fd);
    setenv("CG_CONFIG_TEST_TOKEN", "token-from-env", 1);
    char text[256];
    snprintf(text, sizeof(text),
             "admin_token env:CG_CONFIG_TEST_TOKEN\nkey_pepper file:%s\n"
             "provider p http://x/ env:CG_CONFIG_TEST_TOKEN\n",
             spath);
    cg_err e = load_text(text, err);
    unlink(spath);
    unsetenv("CG_CONFIG_TEST_TOKEN");
    CG_CHECK(e == CG_ERR_OK);
    CG_CHECK_EQ_STR(cfg.admin_token, "token-from-env");
    CG_CHECK_EQ_STR(cfg.key_pepper, "pepper-from-file");
    CG_CHECK_EQ_STR(cfg.providers[0].api_key, "token-from-env");
    CG_CHECK_EQ_STR(cfg.providers[0].base_url, "http://x");
    /* Environment override of a secret source. */
    setenv("CAPGATE_KEY_PEPPER", "literal-pepper", 1);
    e = load_text("key_pepper other\n", err);
    unsetenv("CAPGATE_KEY_PEPPER");
    CG_CHECK(e == CG_ERR_OK);
    CG_CHECK_EQ_STR(cfg.key_pepper, "literal-pepper");
}

CG_TEST(config_lease)
{
    char err[ERR_MAX];
    CG_CHECK(load_text("lease_ms 0\nupstream_timeout_ms 1000\n", err) == CG_ERR_OK);
    CG_CHECK_EQ_INT(cfg.lease_ms, 31000);
    CG_CHECK(load_text("lease_ms 5000\n", err) == CG_ERR_OK);
    CG_CHECK_EQ_INT(cfg.lease_ms, 5000);
}

CG_TEST(config_issue3_directives)
{
    char err[ERR_MAX], net[64];
    CG_CHECK(load_text("clock_file /tmp/capgate-clock\n"
                       "trusted_proxies 10.0.0.0/8  ::1 \t192.168.1.7 ::ffff:172.16.0.0/108\n"
                       "clamp_min_tokens 1000000\n"
                       "lease_scopes org\nlease_slice_pct 100\n",
                       err) == CG_ERR_OK);
    CG_CHECK_EQ_STR(cfg.clock_file, "/tmp/capgate-clock");
    CG_CHECK_EQ_INT(cfg.clamp_min_tokens, 1000000);
    CG_CHECK_EQ_INT(cfg.lease_scopes, CG_LEASE_ORG);
    CG_CHECK_EQ_INT(cfg.lease_slice_pct, 100);
    CG_CHECK_EQ_INT(cfg.trusted_proxy_n, 4);
    CG_CHECK(load_text("lease_scopes all\n", err) == CG_ERR_OK);
    CG_CHECK_EQ_INT(cfg.lease_scopes, CG_LEASE_ALL);
    CG_CHECK(load_text("lease_scopes key\n", err) != CG_ERR_OK);
    CG_CHECK(load_text("lease_scopes org\n"
                       "trusted_proxies 10.0.0.0/8  ::1 \t192.168.1.7 ::ffff:172.16.0.0/108\n",
                       err) == CG_ERR_OK);
    const char *want[] = {"10.0.0.0/8", "::1/128", "192.168.1.7/32", "172.16.0.0/12"};
    for (uint32_t i = 0; i < 4; i++) {
        CG_CHECK(cg_cidr_format(&cfg.trusted_proxies[i], net, sizeof(net)) > 0);
        CG_CHECK_EQ_STR(net, want[i]);
    }
    /* The last line wins; an empty list clears it. */
    CG_CHECK(load_text("trusted_proxies 10.0.0.0/8\ntrusted_proxies \"\"\nclamp_min_tokens 1\n",
                       err) == CG_ERR_OK);
    CG_CHECK_EQ_INT(cfg.trusted_proxy_n, 0);
    CG_CHECK_EQ_INT(cfg.clamp_min_tokens, 1);
    setenv("CAPGATE_TRUSTED_PROXIES", "127.0.0.1 ::1", 1);
    setenv("CAPGATE_CLOCK_FILE", "/tmp/other-clock", 1);
    cg_err e = load_text("trusted_proxies 10.0.0.0/8\n", err);
    unsetenv("CAPGATE_TRUSTED_PROXIES");
    unsetenv("CAPGATE_CLOCK_FILE");
    CG_CHECK(e == CG_ERR_OK);
    CG_CHECK_EQ_INT(cfg.trusted_proxy_n, 2);
    CG_CHECK_EQ_INT(cfg.trusted_proxies[1].family, 6);
    CG_CHECK_EQ_STR(cfg.clock_file, "/tmp/other-clock");
}

CG_TEST(config_enforcement)
{
    char err[ERR_MAX];
    CG_CHECK(load_text("workers 1\n", err) == CG_ERR_OK);
    CG_CHECK_EQ_INT(cfg.enforcement, 1);
    CG_CHECK(load_text("enforcement off\n", err) == CG_ERR_OK);
    CG_CHECK_EQ_INT(cfg.enforcement, 0);
    setenv("CAPGATE_ENFORCEMENT", "on", 1);
    cg_err e = load_text("enforcement off\n", err);
    unsetenv("CAPGATE_ENFORCEMENT");
    CG_CHECK(e == CG_ERR_OK);
    CG_CHECK_EQ_INT(cfg.enforcement, 1);
    CG_CHECK(fails_at("workers 2\nenforcement sometimes\n", 2, "enforcement"));
}

/* Load a trusted_proxies line of n networks; 1 if it loads. */
static int proxies_load(int n)
{
    char text[2048] = "trusted_proxies";
    char err[ERR_MAX];
    for (int i = 0; i <= n; i++) {
        size_t used = strlen(text);
        snprintf(text + used, sizeof(text) - used, i < n ? " 10.0.%d.0/24" : "\n", i);
    }
    return load_text(text, err) == CG_ERR_OK;
}

CG_TEST(config_issue3_bad_values)
{
    char err[ERR_MAX];
    CG_CHECK(fails_at("clamp_min_tokens 0\n", 1, "clamp_min_tokens"));
    CG_CHECK(fails_at("clamp_min_tokens 1000001\n", 1, "clamp_min_tokens"));
    CG_CHECK(fails_at("clamp_min_tokens many\n", 1, "clamp_min_tokens"));
    CG_CHECK(fails_at("trusted_proxies 10.0.0.0/8 10.1.2.3/8\n", 1, "trusted_proxies"));
    CG_CHECK(fails_at("trusted_proxies 10.0.0.0/33\n", 1, "trusted_proxies"));
    CG_CHECK(fails_at("trusted_proxies proxy.example.com\n", 1, "trusted_proxies"));
    CG_CHECK(fails_at("# x\ntrusted_proxies ::1 ::/129\n", 2, "trusted_proxies"));
    /* The message names the bad entry. */
    CG_CHECK(load_text("trusted_proxies 10.0.0.0/8 10.1.2.3/8\n", err) == CG_ERR_INVAL);
    CG_CHECK(strstr(err, "10.1.2.3/8") != NULL);
    CG_CHECK(load_text("trusted_proxies 10.0.0.0/8 10.1.0.0/16 300.0.0.0/8\n", err) ==
             CG_ERR_INVAL);
    CG_CHECK(strstr(err, "300.0.0.0/8") != NULL);
    CG_CHECK(proxies_load(CG_TRUSTED_PROXIES_MAX));
    CG_CHECK_EQ_INT(cfg.trusted_proxy_n, CG_TRUSTED_PROXIES_MAX);
    CG_CHECK(!proxies_load(CG_TRUSTED_PROXIES_MAX + 1));
    setenv("CAPGATE_CLAMP_MIN_TOKENS", "0", 1);
    cg_err e = load_text("", err);
    unsetenv("CAPGATE_CLAMP_MIN_TOKENS");
    CG_CHECK_EQ_INT(e, CG_ERR_INVAL);
    CG_CHECK(strncmp(err, "CAPGATE_CLAMP_MIN_TOKENS: clamp_min_tokens: ", 44) == 0);
}

CG_TEST(config_addr_split)
{
    char host[64];
    int port = -1;
    CG_CHECK(cg_addr_split("127.0.0.1:8080", host, sizeof(host), &port) == CG_ERR_OK);
    CG_CHECK_EQ_STR(host, "127.0.0.1");
    CG_CHECK_EQ_INT(port, 8080);
    CG_CHECK(cg_addr_split("[::1]:0", host, sizeof(host), &port) == CG_ERR_OK);
    CG_CHECK_EQ_STR(host, "::1");
    CG_CHECK_EQ_INT(port, 0);
    CG_CHECK(cg_addr_split("localhost:65535", host, sizeof(host), &port) == CG_ERR_OK);
    CG_CHECK_EQ_STR(host, "localhost");
    const char *bad[] = {"",        "host",   "host:",   ":80",   "host:-1", "host:65536",
                         "host:8x", "::1:80", "[::1]80", "[::1]", "[]:80",   "h:+80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CG_CHECK(cg_addr_split(bad[i], host, sizeof(host), &port) != CG_ERR_OK);
    }
    CG_CHECK_EQ_INT(cg_addr_split("127.0.0.1:80", host, 9, &port), CG_ERR_TOOBIG);
}

/* Make the run hermetic: no CAPGATE_* variable of the caller may leak into a load. */
static void clear_capgate_env(void)
{
    for (;;) {
        char name[128] = "";
        for (char **e = environ; *e != NULL; e++) {
            if (strncmp(*e, "CAPGATE_", 8) == 0) {
                size_t n = strcspn(*e, "=");
                snprintf(name, sizeof(name), "%.*s", (int)n, *e);
                break;
            }
        }
        if (name[0] == '\0') {
            return;
        }
        unsetenv(name);
    }
}

int main(void)
{
    clear_capgate_env();
    return CG_TEST_RUN(config_good_file, config_defaults, config_bad_values,
                       config_model_unknown_provider, config_unknown_directive, config_missing_file,
                       config_env_overrides, config_env_repeatable, config_secrets, config_lease,
                       config_issue3_directives, config_issue3_bad_values, config_addr_split,
                       config_enforcement);
}
