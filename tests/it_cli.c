/*
 * it_cli.c — the `capgate` CLI binary (FX_CLI_BIN) against a real cluster:
 * the lifecycle org → group → keys → traffic (two models) → usage by key /
 * model / day (JSON, table, CSV parsed back) → rotate (old secret works during
 * the grace period, fails after it, test clock) → revoke; usage totals equal
 * the ledger counters shown by `keys show`; keys list (table, CSV, paging),
 * pricing, customers; `--help` on every command; every exit code of the
 * contract (0, 1 refused, 2 bad command line, 3 not found, 4 conflict,
 * 5 unreachable) with the "capgate: <code>: <message>" error line.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"

#ifndef FX_CLI_BIN
#error "FX_CLI_BIN (path of the capgate binary) must be defined by the build"
#endif

#define ARGS_MAX 32
#define OUT_MAX (1u << 20)
#define CLI_WAIT_MS 20000

static fx_cluster cl;
static char admin_url[64];

typedef struct run {
    int rc;
    char out[OUT_MAX];
    char err[8192];
} run;

static run R; /* the last run (large: static) */

static void slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n = f != NULL ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = '\0';
    if (f != NULL) {
        fclose(f);
    }
}

/* Run capgate with the NULL-terminated args; with_env: URL and token from the environment. */
static int cli_v(int with_env, const char *const *args)
{
    char outp[FX_PATH_MAX], errp[FX_PATH_MAX];
    const char *argv[ARGS_MAX + 2];
    int n = 0;
    argv[n++] = FX_CLI_BIN;
    for (; args[n - 1] != NULL && n < ARGS_MAX; n++) {
        argv[n] = args[n - 1];
    }
    argv[n] = NULL;
    snprintf(outp, sizeof(outp), "%s/cli.out", fx_dir());
    snprintf(errp, sizeof(errp), "%s/cli.err", fx_dir());
    pid_t pid = fork();
    FX_CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0) {
            _exit(127);
        }
        unsetenv("CAPGATE_ADMIN_URL");
        unsetenv("CAPGATE_ADMIN_TOKEN");
        if (with_env) {
            setenv("CAPGATE_ADMIN_URL", admin_url, 1);
            setenv("CAPGATE_ADMIN_TOKEN", cl.admin_token, 1);
        }
        execv(FX_CLI_BIN, (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    int64_t deadline = fx_now_ms() + CLI_WAIT_MS;
    pid_t w;
    while ((w = waitpid(pid, &st, WNOHANG)) == 0 && fx_now_ms() < deadline) {
        fx_sleep_ms(5);
    }
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        FX_CHECK(0, "capgate %s did not finish in %d ms", args[0], CLI_WAIT_MS);
    }
    FX_CHECK(WIFEXITED(st), "capgate %s died (status %d)", args[0], st);
    slurp(outp, R.out, sizeof(R.out));
    slurp(errp, R.err, sizeof(R.err));
    R.rc = WEXITSTATUS(st);
    return R.rc;
}

#define CLI(...) cli_v(1, (const char *const[]){__VA_ARGS__, NULL})
#define CLI_NOENV(...) cli_v(0, (const char *const[]){__VA_ARGS__, NULL})

/* The last run's stdout as JSON (the test fails if it is not). */
static cJSON *out_json(void)
{
    cJSON *j = cJSON_Parse(R.out);
    FX_CHECK(j != NULL, "capgate output is not JSON: %.300s (stderr %.300s)", R.out, R.err);
    return j;
}

static void expect_rc(int rc, int want, const char *what)
{
    FX_CHECK(rc == want, "%s: exit %d, want %d; stdout %.300s stderr %.300s", what, rc, want, R.out,
             R.err);
}

/* Exit code want and stderr "capgate: <code>: ..." */
static void expect_fail(int rc, int want, const char *code, const char *what)
{
    char pre[96];
    expect_rc(rc, want, what);
    snprintf(pre, sizeof(pre), "capgate: %s: ", code);
    FX_CHECK(strncmp(R.err, pre, strlen(pre)) == 0, "%s: stderr %.300s, want %s...", what, R.err,
             pre);
}

static const char *jstr(const cJSON *o, const char *f)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, f);
    FX_CHECK(cJSON_IsString(v), "field %s missing", f);
    return v->valuestring;
}

static int64_t jnum(const cJSON *o, const char *f)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, f);
    if (cJSON_IsString(v)) {
        return fx_usd(v->valuestring);
    }
    FX_CHECK(cJSON_IsNumber(v), "field %s missing", f);
    return (int64_t)v->valuedouble;
}

static long chat(const char *key, const char *model, int max_tokens)
{
    fx_resp r;
    char body[256];
    snprintf(body, sizeof(body),
             "{\"model\":\"%s\",\"max_tokens\":%d,\"messages\":[{\"role\":\"user\","
             "\"content\":\"hello there\"}]}",
             model, max_tokens);
    long st = fx_chat(&cl, 0, &r, key, body);
    fx_resp_free(&r);
    return st;
}

/* `keys show` → the used amount of the limit with this metric. */
static int64_t key_used(const char *id, const char *metric)
{
    int64_t deadline = fx_now_ms() + FX_SETTLE_TIMEOUT_MS;
    for (;;) {
        expect_rc(CLI("keys", "show", id, "--format", "json"), 0, "keys show");
        cJSON *j = out_json();
        const cJSON *l;
        int64_t used = -1, reserved = -1;
        cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(j, "limits"))
        {
            if (strcmp(jstr(l, "metric"), metric) == 0) {
                used = jnum(l, "used");
                reserved = jnum(l, "reserved");
            }
        }
        cJSON_Delete(j);
        FX_CHECK(used >= 0, "key %s has no %s limit", id, metric);
        if (reserved == 0 || fx_now_ms() > deadline) {
            return used;
        }
        fx_sleep_ms(20);
    }
}

/* Count CRLF-terminated lines and check every line has `fields` fields (no quoting used). */
static int csv_lines(const char *s, int fields)
{
    int n = 0;
    while (*s != '\0') {
        const char *e = strstr(s, "\r\n");
        FX_CHECK(e != NULL, "CSV line without CRLF: %.100s", s);
        int f = 1;
        for (const char *p = s; p < e; p++) {
            f += *p == ',';
        }
        FX_CHECK(f == fields, "CSV line with %d fields (want %d): %.*s", f, fields, (int)(e - s),
                 s);
        n++;
        s = e + 2;
    }
    return n;
}

static void check_help(void)
{
    static const char *const cmds[][2] = {
        {"orgs", "create"},    {"orgs", "show"},        {"orgs", "update"},   {"orgs", "delete"},
        {"keys", "create"},    {"keys", "list"},        {"keys", "show"},     {"keys", "update"},
        {"keys", "rotate"},    {"keys", "revoke"},      {"keys", "delete"},   {"groups", "create"},
        {"groups", "show"},    {"groups", "update"},    {"groups", "delete"}, {"customers", "set"},
        {"customers", "show"}, {"customers", "delete"}, {"pricing", "list"},  {"pricing", "set"},
        {"usage", "records"},
    };
    expect_rc(CLI_NOENV("--help"), 0, "--help");
    FX_CHECK(strncmp(R.out, "usage: capgate", 14) == 0, "top help: %.100s", R.out);
    static const char *const nouns[] = {"orgs", "keys", "groups", "customers", "pricing"};
    for (size_t i = 0; i < 5; i++) {
        expect_rc(CLI_NOENV(nouns[i], "--help"), 0, nouns[i]);
        FX_CHECK(strstr(R.out, nouns[i]) != NULL, "%s --help: %.100s", nouns[i], R.out);
    }
    expect_rc(CLI_NOENV("usage", "--help"), 0, "usage --help");
    FX_CHECK(strstr(R.out, "--granularity") != NULL, "usage --help: %.200s", R.out);
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        expect_rc(CLI_NOENV(cmds[i][0], cmds[i][1], "--help"), 0, cmds[i][1]);
        FX_CHECK(strncmp(R.out, "usage: capgate ", 15) == 0 && strstr(R.out, cmds[i][1]) != NULL,
                 "%s %s --help: %.100s", cmds[i][0], cmds[i][1], R.out);
    }
}

static void check_exit_codes(void)
{
    /* 2: bad command lines, before any request. */
    expect_fail(CLI("keys", "create", "--org", "acme", "--bogus"), 2, "usage", "unknown flag");
    expect_fail(CLI("keys", "create", "--org", "acme", "--limit", "cost:month"), 2, "usage",
                "bad limit");
    expect_fail(CLI("keys", "create", "--org", "acme", "--limit", "cash:month:5"), 2, "usage",
                "bad metric");
    expect_fail(CLI("keys", "create", "--org", "acme", "--warn-at", "0.8"), 2, "usage",
                "warn-at without limit");
    expect_fail(CLI("keys", "create", "--org", "acme", "--limit", "cost:month:5", "--warn-at", "2"),
                2, "usage", "warn-at > 1");
    expect_fail(CLI("keys", "create", "--name", "x"), 2, "usage", "no org");
    expect_fail(CLI("keys", "show"), 2, "usage", "no key id");
    expect_fail(CLI("keys", "show", "a", "b"), 2, "usage", "extra argument");
    expect_fail(CLI("--format", "xml", "pricing", "list"), 2, "usage", "bad format");
    expect_fail(CLI("usage", "--from", "2026-01-01"), 2, "usage", "usage without org");
    expect_fail(CLI("widgets", "list"), 2, "usage", "unknown noun");
    expect_fail(CLI("keys", "frobnicate"), 2, "usage", "unknown verb");
    expect_fail(CLI("keys", "list", "--org", "acme", "--limit", "0"), 2, "usage", "limit 0");
    expect_fail(CLI_NOENV("--url", admin_url, "pricing", "list"), 2, "usage", "no token");
    /* 3: not found. */
    expect_fail(CLI("keys", "show", "k_0000000000000000"), 3, "key_not_found", "unknown key");
    expect_fail(CLI("orgs", "show", "nosuch"), 3, "org_not_found", "unknown org");
    expect_fail(CLI("keys", "create", "--org", "nosuch", "--name", "x"), 3, "org_not_found",
                "key in unknown org");
    expect_fail(CLI("pricing", "set", "no-such-model", "--input", "1", "--output", "1"), 3,
                "model_not_found", "price of an unknown model");
    /* 4: conflicts. */
    expect_fail(CLI("orgs", "create", "--id", "acme"), 4, "org_exists", "duplicate org");
    /* 1: the API refused (400, 401). */
    expect_fail(CLI("usage", "--org", "acme", "--granularity", "week"), 1, "invalid_request",
                "bad granularity");
    expect_fail(CLI("keys", "create", "--org", "acme", "--expires-at", "yesterday"), 1,
                "invalid_request", "bad expires_at");
    expect_fail(CLI_NOENV("--url", admin_url, "--token", "wrong", "pricing", "list"), 1,
                "invalid_api_key", "wrong token");
    /* 5: unreachable. */
    char dead[64];
    snprintf(dead, sizeof(dead), "http://127.0.0.1:%d", fx_free_port());
    expect_fail(CLI("--url", dead, "pricing", "list"), 5, "connection_failed", "unreachable");
}

int main(void)
{
    static const fx_model models[] = {{"m-alpha", "0.001", "0.002", 1000},
                                      {"m-beta", "0.003", "0.005", 1000}};
    fx_init("it_cli");
    fx_opts o = {.shard_n = 2, .models = models, .model_n = 2};
    fx_cluster_start(&cl, &o);
    snprintf(admin_url, sizeof(admin_url), "http://127.0.0.1:%d", cl.admin_port[0]);

    check_help();

    /* org → group → keys */
    expect_rc(CLI("orgs", "create", "--id", "acme", "--name", "Acme Inc", "--limit",
                  "cost:month:1000", "--warn-at", "0.5,0.8", "--email", "finance@acme.test",
                  "--email", "ops@acme.test", "--format", "json"),
              0, "orgs create");
    cJSON *j = out_json();
    const cJSON *em = cJSON_GetObjectItemCaseSensitive(j, "emails");
    FX_CHECK(cJSON_GetArraySize(em) == 2, "orgs create: emails");
    FX_CHECK_EQ_STR(cJSON_GetArrayItem(em, 1)->valuestring, "ops@acme.test");
    const cJSON *l0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "limits"), 0);
    FX_CHECK(jnum(l0, "max") == 1000000000000LL, "org limit max");
    FX_CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(l0, "warn_at")) == 2, "warn_at");
    cJSON_Delete(j);
    expect_rc(CLI("orgs", "show", "acme"), 0, "orgs show (table)");
    FX_CHECK(strstr(R.out, "Acme Inc") != NULL && strstr(R.out, "limits:") != NULL,
             "orgs show table: %.300s", R.out);
    expect_rc(CLI("orgs", "update", "acme", "--name", "Acme Corp"), 0, "orgs update");
    expect_rc(CLI("groups", "create", "--org", "acme", "--id", "team-search", "--name", "Search",
                  "--limit", "cost:month:200"),
              0, "groups create");
    expect_fail(CLI("groups", "create", "--org", "acme", "--id", "team-search"), 4, "group_exists",
                "duplicate group");
    expect_rc(CLI("groups", "show", "--org", "acme", "team-search", "--format", "json"), 0,
              "groups show");

    char id[2][64], key[2][160];
    for (int i = 0; i < 2; i++) {
        expect_rc(CLI("keys", "create", "--org", "acme", "--name", i ? "k-beta" : "k-alpha",
                      "--group", "team-search", "--limit", "cost:lifetime:100", "--limit",
                      "tokens:lifetime:100000000", "--format", "json"),
                  0, "keys create");
        j = out_json();
        snprintf(id[i], sizeof(id[i]), "%s", jstr(j, "id"));
        snprintf(key[i], sizeof(key[i]), "%s", jstr(j, "key"));
        cJSON_Delete(j);
    }

    /* traffic: both keys, both models */
    int n_req = 0;
    for (int i = 0; i < 3; i++) {
        FX_CHECK(chat(key[0], "m-alpha", 4 + i) == 200, "chat");
        FX_CHECK(chat(key[1], i ? "m-beta" : "m-alpha", 6) == 200, "chat");
        n_req += 2;
    }
    char count[16];
    snprintf(count, sizeof(count), "%d", n_req);
    fx_usage_totals_settled(&cl, "org=acme", n_req);

    /* usage by key (JSON) equals each key's ledger counters */
    expect_rc(CLI("usage", "--org", "acme", "--group-by", "key", "--format", "json"), 0,
              "usage by key");
    j = out_json();
    FX_CHECK(jnum(j, "requests") == n_req, "usage requests %lld", (long long)jnum(j, "requests"));
    const cJSON *p;
    int seen = 0;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(j, "series"))
    {
        int k = strcmp(jstr(p, "key"), id[0]) == 0 ? 0 : 1;
        FX_CHECK_EQ_STR(jstr(p, "key"), id[k]);
        FX_CHECK(jnum(p, "cost") == key_used(id[k], "cost"), "key %d: usage cost != counter", k);
        FX_CHECK(jnum(p, "prompt_tokens") + jnum(p, "completion_tokens") ==
                     key_used(id[k], "tokens"),
                 "key %d: usage tokens != counter", k);
        seen++;
    }
    FX_CHECK(seen == 2, "usage by key: %d points", seen);
    cJSON_Delete(j);

    /* usage by model and day: table for people, CSV for scripts (same numbers) */
    expect_rc(CLI("usage", "--org", "acme", "--granularity", "day", "--group-by", "model"), 0,
              "usage table");
    FX_CHECK(strstr(R.out, "START") != NULL && strstr(R.out, "MODEL") != NULL &&
                 strstr(R.out, "m-alpha") != NULL && strstr(R.out, "m-beta") != NULL &&
                 strstr(R.out, "total: requests") != NULL,
             "usage table: %.500s", R.out);
    expect_rc(CLI("usage", "--org", "acme", "--granularity", "day", "--group-by", "model",
                  "--format", "csv"),
              0, "usage csv");
    FX_CHECK(strncmp(R.out, "period_start,period_end,org,model,requests,", 43) == 0, "csv: %.200s",
             R.out);
    FX_CHECK(csv_lines(R.out, 8) == 3, "usage csv: header + 2 models");
    int64_t csv_req = 0;
    for (const char *s = strstr(R.out, "\r\n") + 2; *s != '\0'; s = strstr(s, "\r\n") + 2) {
        const char *f = s;
        for (int k = 0; k < 4; k++) {
            f = strchr(f, ',') + 1;
        }
        csv_req += atoll(f);
    }
    FX_CHECK(csv_req == n_req, "csv requests sum %lld", (long long)csv_req);
    expect_rc(CLI("usage", "--org", "acme", "--model", "m-beta", "--format", "json"), 0,
              "usage model");
    j = out_json();
    FX_CHECK(jnum(j, "requests") == 2, "m-beta requests");
    cJSON_Delete(j);

    /* raw records */
    expect_rc(CLI("usage", "records", "--org", "acme", "--limit", "2", "--format", "json"), 0,
              "records");
    j = out_json();
    FX_CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "data")) == 2, "2 records");
    FX_CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "has_more")), "has_more");
    cJSON_Delete(j);
    expect_rc(CLI("usage", "records", "--org", "acme", "--format", "csv"), 0, "records csv");
    FX_CHECK(csv_lines(R.out, 14) == n_req + 1, "records csv lines");
    expect_rc(CLI("usage", "records", "--org", "acme", "--key", id[1]), 0, "records table");
    FX_CHECK(strstr(R.out, "TIME") != NULL && strstr(R.out, id[1]) != NULL &&
                 strstr(R.out, id[0]) == NULL,
             "records table: %.300s", R.out);

    /* keys list: table, CSV, paging */
    expect_rc(CLI("keys", "list", "--org", "acme"), 0, "keys list");
    FX_CHECK(strstr(R.out, "ID") != NULL && strstr(R.out, id[0]) != NULL &&
                 strstr(R.out, id[1]) != NULL && strstr(R.out, "cg-") == NULL,
             "keys list table: %.300s", R.out);
    expect_rc(CLI("keys", "list", "--org", "acme", "--format", "csv"), 0, "keys list csv");
    FX_CHECK(strncmp(R.out, "id,name,group,customer,revoked,expires_at,created_at\r\n", 54) == 0,
             "keys csv: %.200s", R.out);
    FX_CHECK(csv_lines(R.out, 7) == 3, "keys csv lines");
    expect_rc(CLI("keys", "list", "--org", "acme", "--limit", "1", "--all", "--format", "json"), 0,
              "keys list --all");
    j = out_json();
    FX_CHECK(cJSON_GetArraySize(j) == 2, "keys list --all: %d", cJSON_GetArraySize(j));
    cJSON_Delete(j);
    expect_rc(CLI("keys", "update", id[1], "--name", "renamed", "--format", "json"), 0,
              "keys update");
    j = out_json();
    FX_CHECK_EQ_STR(jstr(j, "name"), "renamed");
    cJSON_Delete(j);

    /* pricing and customers */
    expect_rc(CLI("pricing", "set", "m-beta", "--input", "0.004", "--output", "0.006"), 0,
              "pricing set");
    expect_rc(CLI("pricing", "list", "--format", "csv"), 0, "pricing list");
    FX_CHECK(strstr(R.out, "m-beta,demo,") != NULL, "pricing csv: %.300s", R.out);
    expect_rc(CLI("customers", "set", "--org", "acme", "cust-9", "--limit", "requests:day:5"), 0,
              "customers set");
    expect_rc(CLI("customers", "show", "--org", "acme", "cust-9", "--format", "json"), 0,
              "customers show");
    expect_rc(CLI("customers", "delete", "--org", "acme", "cust-9"), 0, "customers delete");

    /* rotate: both secrets during the grace period, only the new one after it */
    expect_rc(CLI("keys", "rotate", id[0], "--grace-s", "60", "--format", "json"), 0, "rotate");
    j = out_json();
    char newkey[160];
    snprintf(newkey, sizeof(newkey), "%s", jstr(j, "key"));
    FX_CHECK(strcmp(newkey, key[0]) != 0, "rotate gave the same secret");
    cJSON_Delete(j);
    FX_CHECK(chat(key[0], "m-alpha", 2) == 200, "old secret during grace");
    FX_CHECK(chat(newkey, "m-alpha", 2) == 200, "new secret during grace");
    fx_clock_advance(61);
    FX_CHECK(chat(key[0], "m-alpha", 2) == 401, "old secret after grace");
    FX_CHECK(chat(newkey, "m-alpha", 2) == 200, "new secret after grace");

    /* revoke */
    expect_rc(CLI("keys", "revoke", id[0]), 0, "revoke");
    FX_CHECK(chat(newkey, "m-alpha", 2) == 401, "revoked key");
    expect_fail(CLI("keys", "rotate", id[0]), 4, "key_revoked", "rotate a revoked key");
    expect_rc(CLI("keys", "delete", id[1]), 0, "keys delete");
    expect_fail(CLI("keys", "show", id[1]), 3, "key_not_found", "deleted key");

    /* token from a file, URL from a flag */
    char tf[FX_PATH_MAX];
    snprintf(tf, sizeof(tf), "%s/token", fx_dir());
    FILE *f = fopen(tf, "w");
    FX_CHECK(f != NULL, "token file");
    fprintf(f, "%s\n", cl.admin_token);
    fclose(f);
    expect_rc(CLI_NOENV("--url", admin_url, "--token-file", tf, "orgs", "show", "acme"), 0,
              "--token-file");
    FX_CHECK(strstr(R.out, cl.admin_token) == NULL && strstr(R.err, cl.admin_token) == NULL,
             "token printed");

    check_exit_codes();

    /* orgs delete: refused while the org has a key (a revoked one counts), then done */
    expect_fail(CLI("orgs", "create", "--id", "bad-mail", "--email", "not-an-address"), 1,
                "invalid_request", "bad email");
    FX_CHECK(strstr(R.err, "emails[0]") != NULL, "bad email: %.300s", R.err);
    expect_fail(CLI("orgs", "delete", "acme"), 4, "org_not_empty", "delete an org with keys");
    expect_rc(CLI("orgs", "show", "acme"), 0, "org kept by a refused delete");
    expect_rc(CLI("keys", "delete", id[0]), 0, "keys delete (the last one)");
    expect_rc(CLI("orgs", "delete", "acme", "--format", "json"), 0, "orgs delete");
    j = out_json();
    FX_CHECK_EQ_STR(jstr(j, "id"), "acme");
    FX_CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "deleted")), "deleted: %.200s",
             R.out);
    cJSON_Delete(j);
    expect_fail(CLI("orgs", "show", "acme"), 3, "org_not_found", "deleted org");
    expect_fail(CLI("orgs", "delete", "acme"), 3, "org_not_found", "delete twice");
    return fx_done();
}
