/*
 * admin_api_real.c — admin_api_test's second setup: two real capgate-ledger
 * shards (CG_LEDGER_BIN, from CMake) started here by fork/exec on free
 * loopback ports, with a config and data directory in a fresh scratch
 * directory, and the tests that need real shard behaviour: org PATCH, group
 * CRUD, key PATCH (group move, limit id stability with a counter that must
 * survive), revoke, DELETE, customer overrides merged with the org's
 * defaults, usage totals summed over both shards, and a shard going down.
 *
 * Usage records and spend are put on the shards directly with SETTLE over an
 * NNG req0 socket (what the request path does after an upstream answer), so
 * this test does not depend on the proxy. Children get PR_SET_PDEATHSIG, so a
 * crashed test leaves no ledger behind; the scratch directory is removed on a
 * clean stop.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "admin_test.h"
#include "cg_config.h"
#include "cg_money.h"
#include "cg_period.h"
#include "cg_test.h"
#include "proto.h"

#ifndef CG_LEDGER_BIN
#error "CG_LEDGER_BIN must name the capgate-ledger binary"
#endif

#define T_SHARDS 2
#define T_READY_MS 30000  /* sanitizer builds start slowly */
#define T_KEYS_TRY_MAX 40 /* keys created until both shards hold one */

cg_ring t_real_ring;
char t_real_url[T_SHARDS][64];

static struct {
    char dir[128];
    char conf[192];
    pid_t pid[T_SHARDS];
    int killed[T_SHARDS];
} t_real;

/* ---- processes ---- */

static pid_t t_ledger_spawn(int i)
{
    char name[16], log[256];
    pid_t pid;

    snprintf(name, sizeof(name), "s%d", i);
    snprintf(log, sizeof(log), "%s/ledger-%s.log", t_real.dir, name);
    pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execl(CG_LEDGER_BIN, "capgate-ledger", "--config", t_real.conf, "--shard", name,
              (char *)NULL);
        _exit(127);
    }
    return pid;
}

int t_real_start(cg_config *cfg)
{
    const char *names[T_SHARDS] = {"s0", "s1"};
    FILE *f;

    snprintf(t_real.dir, sizeof(t_real.dir), "/tmp/admin_api_test.XXXXXX");
    if (mkdtemp(t_real.dir) == NULL) {
        return -1;
    }
    snprintf(t_real.conf, sizeof(t_real.conf), "%s/capgate.conf", t_real.dir);
    if ((f = fopen(t_real.conf, "w")) == NULL) {
        return -1;
    }
    cfg->shard_n = T_SHARDS;
    for (int i = 0; i < T_SHARDS; i++) {
        cg_shard_cfg *s = &cfg->shards[i];
        snprintf(s->name, sizeof(s->name), "%s", names[i]);
        snprintf(s->req_url, sizeof(s->req_url), "tcp://127.0.0.1:%d", t_free_port());
        snprintf(s->pub_url, sizeof(s->pub_url), "tcp://127.0.0.1:%d", t_free_port());
        snprintf(t_real_url[i], sizeof(t_real_url[i]), "%s", s->req_url);
        fprintf(f, "shard %s %s %s\n", s->name, s->req_url, s->pub_url);
    }
    fprintf(f, "data_dir %s/data\nlmdb_map_bytes 16777216\nlog_level warn\n", t_real.dir);
    fclose(f);
    for (int i = 0; i < T_SHARDS; i++) {
        if ((t_real.pid[i] = t_ledger_spawn(i)) <= 0) {
            return -1;
        }
    }
    return cg_ring_init(&t_real_ring, names, T_SHARDS) == CG_ERR_OK ? 0 : -1;
}

void t_real_kill(int i)
{
    if (t_real.pid[i] > 0) {
        kill(t_real.pid[i], SIGKILL);
        waitpid(t_real.pid[i], NULL, 0);
        t_real.pid[i] = 0;
        t_real.killed[i] = 1;
    }
}

static int t_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int t_real_stop(void)
{
    int bad = 0;

    for (int i = 0; i < T_SHARDS; i++) {
        int status = 0;
        if (t_real.pid[i] <= 0) {
            bad |= !t_real.killed[i] && t_real.pid[i] < 0;
            continue;
        }
        kill(t_real.pid[i], SIGTERM);
        if (waitpid(t_real.pid[i], &status, 0) != t_real.pid[i] || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0) {
            fprintf(stderr, "  ledger s%d did not exit cleanly (status 0x%x); logs in %s\n", i,
                    status, t_real.dir);
            bad = 1;
        }
        t_real.pid[i] = 0;
    }
    cg_ring_fini(&t_real_ring);
    if (!bad && t_real.dir[0] != '\0') {
        nftw(t_real.dir, t_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    }
    return bad ? -1 : 0;
}

/* ---- direct ledger access ---- */

static int t_shard_of(const char *route)
{
    return cg_ring_lookup(&t_real_ring, route, strlen(route));
}

/* One request to shard i over a fresh req0 socket; the reply's status, or -1. */
static int t_ledger_call(int i, const proto_req *q)
{
    nng_socket s;
    msgpack_sbuffer sb;
    void *buf = NULL;
    size_t len = 0;
    proto_rep *reps = NULL;
    uint32_t n = 0;
    int status = -1;

    msgpack_sbuffer_init(&sb);
    if (nng_req0_open(&s) != 0) {
        msgpack_sbuffer_destroy(&sb);
        return -1;
    }
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 5000);
    if (proto_req_encode(q, 1, &sb) == CG_ERR_OK && nng_dial(s, t_real_url[i], NULL, 0) == 0 &&
        nng_send(s, sb.data, sb.size, 0) == 0 && nng_recv(s, &buf, &len, NNG_FLAG_ALLOC) == 0 &&
        proto_rep_decode(buf, len, &reps, &n) == CG_ERR_OK && n == 1) {
        status = reps[0].status;
    }
    if (reps != NULL) {
        proto_rep_free(reps, n);
    }
    if (buf != NULL) {
        nng_free(buf, len);
    }
    nng_close(s);
    msgpack_sbuffer_destroy(&sb);
    return status;
}

/* Spend on key_id (of org) as the request path would: a SETTLE with a usage record. */
static int t_spend(const char *org, const char *key_id, const char *model, int64_t prompt,
                   int64_t completion, int64_t cost_nusd, const char *rid)
{
    proto_req q;
    proto_usage *u = &q.u.settle.usage;

    memset(&q, 0, sizeof(q));
    q.op = PROTO_OP_SETTLE;
    snprintf(q.route, sizeof(q.route), "key:%s", key_id);
    snprintf(q.u.settle.request_id, sizeof(q.u.settle.request_id), "%s", rid);
    q.u.settle.actual =
        (proto_amounts){.cost_nusd = cost_nusd, .tokens = prompt + completion, .requests = 1};
    q.u.settle.has_usage = 1;
    u->ts_ms = (int64_t)time(NULL) * 1000;
    snprintf(u->org, sizeof(u->org), "%s", org);
    snprintf(u->key_id, sizeof(u->key_id), "%s", key_id);
    snprintf(u->model, sizeof(u->model), "%s", model);
    snprintf(u->provider, sizeof(u->provider), "demo");
    snprintf(u->request_id, sizeof(u->request_id), "%s", rid);
    u->prompt_tokens = prompt;
    u->completion_tokens = completion;
    u->cost_nusd = cost_nusd;
    u->status = 200;
    return t_ledger_call(t_shard_of(q.route), &q);
}

/* ---- helpers ---- */

/* Create a key in org with body; its id into id (64 bytes). 1 on 201. */
static int t_key_new(const char *org, const char *body, char *id)
{
    char path[128];
    t_resp r;
    int ok;

    snprintf(path, sizeof(path), "/admin/v1/orgs/%s/keys", org);
    t_http(&r, "POST", path, AUTH, body);
    ok = t_status(&r, 201) && t_str(r.json, "id") != NULL;
    if (ok) {
        snprintf(id, 64, "%s", t_str(r.json, "id"));
    }
    t_done(&r);
    return ok;
}

/* A request with a formatted path. */
static void t_httpf(t_resp *r, const char *method, const char *body, const char *fmt,
                    const char *arg)
{
    char path[256];

    snprintf(path, sizeof(path), fmt, arg);
    t_http(r, method, path, AUTH, body);
}

static uint32_t t_natural(int metric, const char *window)
{
    cg_window w;

    return cg_window_parse(window, &w) == CG_ERR_OK ? proto_limit_natural_id((uint8_t)metric, w)
                                                    : 0;
}

/* ---- tests ---- */

/* Both shards answer: a usage query (every shard) gives 200. */
CG_TEST(real_ready)
{
    struct timespec ts = {.tv_nsec = 100 * 1000000L};
    t_resp r;
    int waited_ms = 0;

    for (;;) {
        t_http(&r, "GET", "/admin/v1/usage?org=nobody", AUTH, NULL);
        t_done(&r);
        if (r.status == 200 || waited_ms > T_READY_MS) {
            break;
        }
        nanosleep(&ts, NULL);
        waited_ms += 100;
    }
    CG_CHECK(t_status(&r, 200));
}

/* An org with sliding and calendar limits, customer defaults and clamp; GET with state. */
CG_TEST(real_org)
{
    t_resp r;

    t_http(&r, "POST", "/admin/v1/orgs", AUTH,
           "{\"id\":\"rorg\",\"name\":\"R\",\"on_low_budget\":\"clamp\","
           "\"limits\":[{\"metric\":\"cost\",\"window\":\"month\",\"max\":100,\"warn_at\":[0.8]},"
           "{\"metric\":\"requests\",\"window\":\"1m\",\"max\":600}],"
           "\"customer_defaults\":{\"limits\":[{\"metric\":\"cost\",\"window\":\"month\","
           "\"max\":5},{\"metric\":\"requests\",\"window\":\"1m\",\"max\":60}]},"
           "\"webhooks\":[{\"url\":\"https://h.example/a\"}]}");
    CG_CHECK(t_status(&r, 201));
    CG_CHECK_EQ_STR(t_str(r.json, "on_low_budget"), "clamp");
    CG_CHECK_EQ_STR(t_str(r.json, "limits.1.window"), "1m");
    CG_CHECK_EQ_STR(t_str(r.json, "limits.0.used"), "0.00");
    CG_CHECK(t_num(r.json, "customer_defaults.limits.0.id") ==
             t_natural(PROTO_METRIC_COST, "month"));
    CG_CHECK(t_get(r.json, "customer_defaults.limits.0.used") == NULL);
    CG_CHECK(t_str(r.json, "webhooks.0.secret") != NULL);
    t_done(&r);

    t_http(&r, "GET", "/admin/v1/orgs/rorg", AUTH, NULL);
    CG_CHECK(t_status(&r, 200));
    CG_CHECK_EQ_STR(t_str(r.json, "limits.0.used"), "0.00");
    CG_CHECK_EQ_STR(t_str(r.json, "limits.0.reserved"), "0.00");
    CG_CHECK(t_str(r.json, "limits.0.resets_at") != NULL);
    CG_CHECK(t_num(r.json, "limits.1.used") == 0);
    CG_CHECK(t_str(r.json, "limits.1.resets_at") != NULL);
    CG_CHECK(t_num(r.json, "customer_defaults.limits.1.max") == 60);
    CG_CHECK(t_str(r.json, "webhooks.0.secret") == NULL);
    t_done(&r);
    t_http(&r, "POST", "/admin/v1/orgs", AUTH, "{\"id\":\"rorg\"}");
    CG_CHECK(t_is_error(&r, 409, "org_exists", NULL));
}

CG_TEST(real_org_patch)
{
    static const struct {
        const char *body;
        const char *msg;
    } bad[] = {
        {"{\"id\":\"x\"}", "id: unknown field"},
        {"{\"on_low_budget\":\"inherit\"}", "on_low_budget: "},
        {"{\"billing_anchor_day\":30}", "billing_anchor_day: "},
        {"{\"limits\":[{\"metric\":\"requests\",\"window\":\"1m\",\"warn_at\":[0.5]}]}",
         "limits[0].warn_at: not allowed on sliding windows"},
        {"{\"customer_defaults\":{\"limits\":[{\"metric\":\"cost\",\"window\":\"day\"},"
         "{\"metric\":\"cost\",\"window\":\"day\"}]}}",
         "customer_defaults.limits[1]: same metric and window"},
        {"{\"webhooks\":[{\"url\":\"gopher://x\"}]}", "webhooks[0].url: "},
        {"{\"emails\":\"a@b.c\"}", "emails: must be an array"},
        {"{\"emails\":[\"a@b.c\",\"bad\"]}", "emails[1]: must be an email address"},
    };
    t_resp r;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        t_http(&r, "PATCH", "/admin/v1/orgs/rorg", AUTH, bad[i].body);
        CG_CHECK(t_is_error(&r, 400, "invalid_request", bad[i].msg));
    }
    t_http(&r, "PATCH", "/admin/v1/orgs/nobody", AUTH, "{\"name\":\"x\"}");
    CG_CHECK(t_is_error(&r, 404, "org_not_found", NULL));

    t_http(&r, "PATCH", "/admin/v1/orgs/rorg", AUTH,
           "{\"name\":\"R2\",\"on_low_budget\":\"reject\",\"billing_anchor_day\":15,"
           "\"limits\":[{\"metric\":\"requests\",\"window\":\"1m\",\"max\":100},"
           "{\"metric\":\"tokens\",\"window\":\"day\",\"max\":1000}],"
           "\"webhooks\":[{\"url\":\"https://h.example/a\"},{\"url\":\"https://h.example/b\"}]}");
    CG_CHECK(t_status(&r, 200));
    CG_CHECK_EQ_STR(t_str(r.json, "name"), "R2");
    CG_CHECK_EQ_STR(t_str(r.json, "on_low_budget"), "reject");
    CG_CHECK(t_num(r.json, "billing_anchor_day") == 15);
    CG_CHECK(t_num(r.json, "limits.0.id") == 2); /* requests/1m kept its id */
    CG_CHECK(t_num(r.json, "limits.0.max") == 100);
    CG_CHECK(t_num(r.json, "limits.1.id") == t_natural(PROTO_METRIC_TOKENS, "day"));
    CG_CHECK(t_str(r.json, "webhooks.0.secret") == NULL); /* same URL: secret kept */
    CG_CHECK(t_str(r.json, "webhooks.1.secret") != NULL); /* new: generated, shown once */
    CG_CHECK(t_num(r.json, "customer_defaults.limits.1.max") == 60); /* untouched */
    t_done(&r);

    t_http(&r, "GET", "/admin/v1/orgs/rorg", AUTH, NULL);
    CG_CHECK(t_status(&r, 200));
    CG_CHECK_EQ_STR(t_str(r.json, "name"), "R2");
    CG_CHECK(t_num(r.json, "limits.0.id") == 2);
    CG_CHECK_EQ_STR(t_str(r.json, "webhooks.1.url"), "https://h.example/b");
    CG_CHECK(t_get(r.json, "limits.2") == NULL);
    t_done(&r);
}

CG_TEST(real_groups)
{
    t_resp r;

    t_http(&r, "POST", "/admin/v1/orgs/rorg/groups", AUTH,
           "{\"id\":\"team.A-1\",\"name\":\"Team A\",\"allowed_models\":[\"demo-a\"],"
           "\"limits\":[{\"metric\":\"cost\",\"window\":\"month\",\"max\":200},"
           "{\"metric\":\"tokens\",\"window\":\"5h\",\"max\":100000}]}");
    CG_CHECK(t_status(&r, 201));
    CG_CHECK_EQ_STR(t_str(r.json, "id"), "team.A-1");
    CG_CHECK_EQ_STR(t_str(r.json, "org"), "rorg");
    CG_CHECK_EQ_STR(t_str(r.json, "allowed_models.0"), "demo-a");
    CG_CHECK_EQ_STR(t_str(r.json, "limits.1.window"), "5h");
    CG_CHECK(t_num(r.json, "limits.1.id") == 2);
    t_done(&r);
    t_http(&r, "POST", "/admin/v1/orgs/rorg/groups", AUTH, "{\"id\":\"team.A-1\"}");
    CG_CHECK(t_is_error(&r, 409, "group_exists", NULL));
    t_http(&r, "POST", "/admin/v1/orgs/nobody/groups", AUTH, "{\"id\":\"g\"}");
    CG_CHECK(t_is_error(&r, 404, "org_not_found", NULL));
    t_http(&r, "POST", "/admin/v1/orgs/rorg/groups", AUTH, "{\"id\":\"bad id\"}");
    CG_CHECK(t_is_error(&r, 400, "invalid_request", "id: "));
    t_http(&r, "POST", "/admin/v1/orgs/rorg/groups", AUTH, "{\"name\":\"no id\"}");
    CG_CHECK(t_is_error(&r, 400, "invalid_request", "id: required"));
    t_http(&r, "POST", "/admin/v1/orgs/rorg/groups", AUTH, "{\"id\":\"g2\",\"colour\":1}");
    CG_CHECK(t_is_error(&r, 400, "invalid_request", "colour: unknown field"));
    t_http(&r, "POST", "/admin/v1/orgs/rorg/groups", AUTH,
           "{\"id\":\"g2\",\"allowed_models\":[\"\"]}");
    CG_CHECK(t_is_error(&r, 400, "invalid_request", "allowed_models[0]: "));

    t_http(&r, "GET", "/admin/v1/orgs/rorg/groups/team.A-1", AUTH, NULL);
    CG_CHECK(t_status(&r, 200));
    CG_CHECK_EQ_STR(t_str(r.json, "name"), "Team A");
    CG_CHECK_EQ_STR(t_str(r.json, "limits.0.used"), "0.00");
    CG_CHECK(t_str(r.json, "limits.1.resets_at") != NULL);
    t_done(&r);

    t_http(&r, "PATCH", "/admin/v1/orgs/rorg/groups/team.A-1", AUTH,
           "{\"name\":\"Team A2\",\"limits\":[{\"metric\":\"tokens\",\"window\":\"5h\",\"max\":5},"
           "{\"metric\":\"requests\",\"window\":\"day\",\"max\":9}]}");
    CG_CHECK(t_status(&r, 200));
    CG_CHECK_EQ_STR(t_str(r.json, "name"), "Team A2");
    CG_CHECK(t_num(r.json, "limits.0.id") == 2);
    CG_CHECK(t_num(r.json, "limits.1.id") == t_natural(PROTO_METRIC_REQUESTS, "day"));
    CG_CHECK_EQ_STR(t_str(r.json, "allowed_models.0"), "demo-a"); /* untouched */
    t_done(&r);
    t_http(&r, "PATCH", "/admin/v1/orgs/rorg/groups/team.A-1", AUTH, "{\"id\":\"x\"}");
    CG_CHECK(t_is_error(&r, 400, "invalid_request", "id: unknown field"));
    t_http(&r, "PATCH", "/admin/v1/orgs/rorg/groups/nope", AUTH, "{\"name\":\"x\"}");
    CG_CHECK(t_is_error(&r, 404, "group_not_found", NULL));
    t_http(&r, "GET", "/admin/v1/orgs/rorg/groups/nope", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 404, "group_not_found", NULL));

    t_http(&r, "POST", "/admin/v1/orgs/rorg/groups", AUTH, "{\"id\":\"team-b\"}");
    CG_CHECK(t_status(&r, 201));
    t_done(&r);
    t_http(&r, "POST", "/admin/v1/orgs/rorg/groups", AUTH, "{\"id\":\"tmp\"}");
    CG_CHECK(t_status(&r, 201));
    t_done(&r);
    t_http(&r, "DELETE", "/admin/v1/orgs/rorg/groups/tmp", AUTH, NULL);
    CG_CHECK(t_status(&r, 200));
    CG_CHECK(cJSON_IsTrue(t_get(r.json, "deleted")));
    t_done(&r);
    t_http(&r, "GET", "/admin/v1/orgs/rorg/groups/tmp", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 404, "group_not_found", NULL));
    t_http(&r, "DELETE", "/admin/v1/orgs/rorg/groups/tmp", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 404, "group_not_found", NULL));
}

static char t_k1[64];

static const char t_k1_body[] =
    "{\"name\":\"k1\",\"group\":\"team.A-1\",\"customer\":\"cust:42@x\","
    "\"allowed_models\":[\"demo-a\",\"demo-b\"],"
    "\"ip_allow\":[\"10.0.0.0/8\",\"2001:db8::/32\",\"192.168.1.7\"],\"ip_deny\":[\"10.1.0.0/16\"],"
    "\"max_tokens_per_request\":4096,\"on_low_budget\":\"clamp\","
    "\"expires_at\":\"2099-01-01T00:00:00Z\","
    "\"limits\":[{\"metric\":\"cost\",\"window\":\"month\",\"max\":50},"
    "{\"metric\":\"requests\",\"window\":\"1m\",\"max\":600}]}";

/* Every key setting in, and out on 201 and GET. */
static int t_k1_shape(const cJSON *j)
{
    return t_str(j, "group") && strcmp(t_str(j, "group"), "team.A-1") == 0 &&
           t_str(j, "customer") && strcmp(t_str(j, "customer"), "cust:42@x") == 0 &&
           t_str(j, "allowed_models.1") && strcmp(t_str(j, "allowed_models.1"), "demo-b") == 0 &&
           t_str(j, "ip_allow.1") && strcmp(t_str(j, "ip_allow.1"), "2001:db8::/32") == 0 &&
           t_str(j, "ip_allow.2") && strcmp(t_str(j, "ip_allow.2"), "192.168.1.7/32") == 0 &&
           t_str(j, "ip_deny.0") && strcmp(t_str(j, "ip_deny.0"), "10.1.0.0/16") == 0 &&
           t_num(j, "max_tokens_per_request") == 4096 && t_str(j, "on_low_budget") &&
           strcmp(t_str(j, "on_low_budget"), "clamp") == 0 && t_str(j, "expires_at") &&
           strcmp(t_str(j, "expires_at"), "2099-01-01T00:00:00Z") == 0 &&
           cJSON_IsFalse(t_get(j, "revoked")) && t_num(j, "limits.1.id") == 2;
}

CG_TEST(real_key_fields)
{
    t_resp r;

    t_http(&r, "POST", "/admin/v1/orgs/rorg/keys", AUTH, t_k1_body);
    CG_CHECK(t_status(&r, 201));
    CG_CHECK(t_str(r.json, "key") != NULL && t_str(r.json, "id") != NULL);
    snprintf(t_k1, sizeof(t_k1), "%s", t_str(r.json, "id"));
    CG_CHECK(t_k1_shape(r.json));
    t_done(&r);
    t_httpf(&r, "GET", NULL, "/admin/v1/keys/%s", t_k1);
    CG_CHECK(t_status(&r, 200));
    CG_CHECK(t_k1_shape(r.json));
    CG_CHECK(t_get(r.json, "key") == NULL);
    CG_CHECK_EQ_STR(t_str(r.json, "limits.0.used"), "0.00");
    t_done(&r);
}

CG_TEST(real_key_validation)
{
    static const struct {
        const char *body;
        const char *msg;
    } bad[] = {
        {"{\"ip_allow\":[\"10.0.0.0/8\",\"::1\",\"10.1.2.3/8\"]}", "ip_allow[2]: "},
        {"{\"ip_allow\":[\"10.0.0.0/33\"]}", "ip_allow[0]: "},
        {"{\"ip_deny\":\"10.0.0.0/8\"}", "ip_deny: "},
        {"{\"ip_deny\":[7]}", "ip_deny[0]: "},
        {"{\"max_tokens_per_request\":0}", "max_tokens_per_request: "},
        {"{\"max_tokens_per_request\":1.5}", "max_tokens_per_request: "},
        {"{\"on_low_budget\":\"later\"}", "on_low_budget: "},
        {"{\"customer\":\"a b\"}", "customer: "},
        {"{\"customer\":5}", "customer: "},
        {"{\"group\":\"bad group\"}", "group: "},
        {"{\"allowed_models\":[\"m\",\"m\"]}", "allowed_models[1]: duplicate"},
        {"{\"allowed_models\":\"m\"}", "allowed_models: "},
        {"{\"limits\":[{\"metric\":\"cost\",\"window\":\"1h\",\"warn_at\":[0.5]}]}",
         "limits[0].warn_at: not allowed on sliding windows"},
        {"{\"revoked\":true}", "revoked: unknown field"},
    };
    t_resp r;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        t_http(&r, "POST", "/admin/v1/orgs/rorg/keys", AUTH, bad[i].body);
        CG_CHECK(t_is_error(&r, 400, "invalid_request", bad[i].msg));
        t_httpf(&r, "PATCH", bad[i].body, "/admin/v1/keys/%s", t_k1);
        CG_CHECK(t_is_error(&r, 400, "invalid_request", bad[i].msg));
    }
    t_http(&r, "POST", "/admin/v1/orgs/rorg/keys", AUTH, "{\"group\":\"nope\"}");
    CG_CHECK(t_is_error(&r, 404, "group_not_found", NULL));
    t_http(&r, "PATCH", "/admin/v1/keys/k_0000000000000000", AUTH, "{\"name\":\"x\"}");
    CG_CHECK(t_is_error(&r, 404, "key_not_found", NULL));
}

/* Moving a key between groups, unbinding, clearing lists. */
CG_TEST(real_key_patch)
{
    t_resp r;

    t_httpf(&r, "PATCH", "{\"group\":\"team-b\"}", "/admin/v1/keys/%s", t_k1);
    CG_CHECK(t_status(&r, 200));
    CG_CHECK_EQ_STR(t_str(r.json, "group"), "team-b");
    CG_CHECK_EQ_STR(t_str(r.json, "customer"), "cust:42@x"); /* untouched */
    t_done(&r);
    t_httpf(&r, "PATCH", "{\"group\":\"nope\"}", "/admin/v1/keys/%s", t_k1);
    CG_CHECK(t_is_error(&r, 404, "group_not_found", NULL));
    t_httpf(&r, "GET", NULL, "/admin/v1/keys/%s", t_k1);
    CG_CHECK_EQ_STR(t_str(r.json, "group"), "team-b");
    t_done(&r);

    t_httpf(&r, "PATCH",
            "{\"group\":null,\"customer\":null,\"ip_allow\":[],\"allowed_models\":null,"
            "\"max_tokens_per_request\":null,\"on_low_budget\":\"inherit\",\"name\":\"k1b\","
            "\"expires_at\":null}",
            "/admin/v1/keys/%s", t_k1);
    CG_CHECK(t_status(&r, 200));
    CG_CHECK(cJSON_IsNull(t_get(r.json, "group")));
    CG_CHECK(cJSON_IsNull(t_get(r.json, "customer")));
    CG_CHECK(cJSON_IsNull(t_get(r.json, "max_tokens_per_request")));
    CG_CHECK(cJSON_IsNull(t_get(r.json, "expires_at")));
    CG_CHECK_EQ_INT(cJSON_GetArraySize(t_get(r.json, "ip_allow")), 0);
    CG_CHECK_EQ_INT(cJSON_GetArraySize(t_get(r.json, "allowed_models")), 0);
    CG_CHECK_EQ_STR(t_str(r.json, "ip_deny.0"), "10.1.0.0/16"); /* untouched */
    CG_CHECK_EQ_STR(t_str(r.json, "on_low_budget"), "inherit");
    CG_CHECK_EQ_STR(t_str(r.json, "name"), "k1b");
    t_done(&r);
    t_httpf(&r, "GET", NULL, "/admin/v1/keys/%s", t_k1);
    CG_CHECK(cJSON_IsNull(t_get(r.json, "group")));
    CG_CHECK_EQ_STR(t_str(r.json, "name"), "k1b");
    t_done(&r);
}

/* A PATCH of limits keeps ids by (metric, window), so spend already counted survives. */
CG_TEST(real_key_limit_ids)
{
    t_resp r;

    CG_CHECK_EQ_INT(t_spend("rorg", t_k1, "demo-a", 100, 20, 1500000000LL, "ids-1"), CG_ERR_OK);
    t_httpf(&r, "GET", NULL, "/admin/v1/keys/%s", t_k1);
    CG_CHECK_EQ_STR(t_str(r.json, "limits.0.used"), "1.50");
    CG_CHECK(t_num(r.json, "limits.1.used") == 1);
    t_done(&r);
    t_httpf(&r, "PATCH",
            "{\"limits\":[{\"metric\":\"requests\",\"window\":\"1m\",\"max\":10},"
            "{\"metric\":\"cost\",\"window\":\"month\",\"max\":75},"
            "{\"metric\":\"tokens\",\"window\":\"day\",\"max\":1000}]}",
            "/admin/v1/keys/%s", t_k1);
    CG_CHECK(t_status(&r, 200));
    CG_CHECK(t_num(r.json, "limits.0.id") == 2);
    CG_CHECK(t_num(r.json, "limits.0.used") == 1);
    CG_CHECK(t_num(r.json, "limits.1.id") == 1);
    CG_CHECK_EQ_STR(t_str(r.json, "limits.1.used"), "1.50");
    CG_CHECK_EQ_STR(t_str(r.json, "limits.1.max"), "75.00");
    CG_CHECK(t_num(r.json, "limits.2.id") == t_natural(PROTO_METRIC_TOKENS, "day"));
    CG_CHECK(t_num(r.json, "limits.2.used") == 0);
    t_done(&r);
    t_httpf(&r, "GET", NULL, "/admin/v1/keys/%s", t_k1);
    CG_CHECK(t_num(r.json, "limits.1.id") == 1);
    CG_CHECK_EQ_STR(t_str(r.json, "limits.1.used"), "1.50");
    CG_CHECK(t_num(r.json, "limits.0.used") == 1);
    t_done(&r);
}

CG_TEST(real_revoke_delete)
{
    t_resp r;

    t_httpf(&r, "POST", NULL, "/admin/v1/keys/%s/revoke", t_k1);
    CG_CHECK(t_status(&r, 200));
    CG_CHECK(cJSON_IsTrue(t_get(r.json, "revoked")));
    CG_CHECK_EQ_STR(t_str(r.json, "limits.1.used"), "1.50");
    t_done(&r);
    t_httpf(&r, "POST", NULL, "/admin/v1/keys/%s/revoke", t_k1); /* idempotent */
    CG_CHECK(t_status(&r, 200));
    CG_CHECK(cJSON_IsTrue(t_get(r.json, "revoked")));
    t_done(&r);
    t_httpf(&r, "GET", NULL, "/admin/v1/keys/%s", t_k1);
    CG_CHECK(cJSON_IsTrue(t_get(r.json, "revoked")));
    t_done(&r);
    t_http(&r, "POST", "/admin/v1/keys/k_0000000000000000/revoke", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 404, "key_not_found", NULL));

    t_httpf(&r, "DELETE", NULL, "/admin/v1/keys/%s", t_k1);
    CG_CHECK(t_status(&r, 200));
    CG_CHECK(cJSON_IsTrue(t_get(r.json, "deleted")));
    t_done(&r);
    t_httpf(&r, "GET", NULL, "/admin/v1/keys/%s", t_k1);
    CG_CHECK(t_is_error(&r, 404, "key_not_found", NULL));
    t_httpf(&r, "DELETE", NULL, "/admin/v1/keys/%s", t_k1);
    CG_CHECK(t_is_error(&r, 404, "key_not_found", NULL));
}

/* Org emails: stored, echoed, replaced by PATCH, cleared by null; bad ones name their index. */
CG_TEST(real_org_emails)
{
    static const struct {
        const char *body;
        const char *msg;
    } bad[] = {
        {"{\"id\":\"eorg\",\"emails\":[\"ok@x.test\",\"no-at-sign\"]}", "emails[1]: "},
        {"{\"id\":\"eorg\",\"emails\":[\"a@x.test\\r\\nRCPT TO:<e@x.test>\"]}", "emails[0]: "},
        {"{\"id\":\"eorg\",\"emails\":[\"a b@x.test\"]}", "emails[0]: "},
        {"{\"id\":\"eorg\",\"emails\":[\"a@x.test,b@x.test\"]}", "emails[0]: "},
        {"{\"id\":\"eorg\",\"emails\":[\"<a@x.test>\"]}", "emails[0]: "},
        {"{\"id\":\"eorg\",\"emails\":[1]}", "emails[0]: "},
        {"{\"id\":\"eorg\",\"emails\":[\"a@x.test\",\"A@X.test\"]}", "emails[1]: duplicate"},
        {"{\"id\":\"eorg\",\"emails\":{}}", "emails: "},
    };
    char body[8192], *p = body;
    t_resp r;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        t_http(&r, "POST", "/admin/v1/orgs", AUTH, bad[i].body);
        CG_CHECK(t_is_error(&r, 400, "invalid_request", bad[i].msg));
    }
    /* 17 addresses: one too many; a 255-byte address: too long. */
    p += snprintf(p, sizeof(body), "{\"id\":\"eorg\",\"emails\":[");
    for (int i = 0; i <= PROTO_EMAILS_MAX; i++) {
        p += snprintf(p, sizeof(body) - (size_t)(p - body), "%s\"u%d@x.test\"", i ? "," : "", i);
    }
    snprintf(p, sizeof(body) - (size_t)(p - body), "]}");
    t_http(&r, "POST", "/admin/v1/orgs", AUTH, body);
    CG_CHECK(t_is_error(&r, 400, "invalid_request", "emails: "));
    char addr[PROTO_EMAIL_MAX + 2];
    memset(addr, 'a', sizeof(addr));
    addr[PROTO_EMAIL_MAX + 1] = '\0';
    memcpy(addr + PROTO_EMAIL_MAX + 1 - 7, "@x.test", 7);
    snprintf(body, sizeof(body), "{\"id\":\"eorg\",\"emails\":[\"%s\"]}", addr);
    t_http(&r, "POST", "/admin/v1/orgs", AUTH, body);
    CG_CHECK(t_is_error(&r, 400, "invalid_request", "emails[0]: "));
    t_http(&r, "GET", "/admin/v1/orgs/eorg", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 404, "org_not_found", NULL)); /* nothing was created */

    /* The longest address is fine; the list round-trips through the shard. */
    snprintf(body, sizeof(body), "{\"id\":\"eorg\",\"emails\":[\"finance@example.com\",\"%s\"]}",
             addr + 1);
    t_http(&r, "POST", "/admin/v1/orgs", AUTH, body);
    CG_CHECK(t_status(&r, 201));
    CG_CHECK_EQ_STR(t_str(r.json, "emails.0"), "finance@example.com");
    t_done(&r);
    t_http(&r, "GET", "/admin/v1/orgs/eorg", AUTH, NULL);
    CG_CHECK(t_status(&r, 200));
    CG_CHECK_EQ_STR(t_str(r.json, "emails.0"), "finance@example.com");
    CG_CHECK_EQ_STR(t_str(r.json, "emails.1"), addr + 1);
    CG_CHECK(t_get(r.json, "emails.2") == NULL);
    t_done(&r);

    /* PATCH of another field keeps them; a PATCH of emails replaces the list. */
    t_http(&r, "PATCH", "/admin/v1/orgs/eorg", AUTH, "{\"name\":\"E\"}");
    CG_CHECK(t_status(&r, 200));
    CG_CHECK_EQ_STR(t_str(r.json, "emails.0"), "finance@example.com");
    t_done(&r);
    t_http(&r, "PATCH", "/admin/v1/orgs/eorg", AUTH, "{\"emails\":[\"ops@acme.test\"]}");
    CG_CHECK(t_status(&r, 200));
    t_done(&r);
    t_http(&r, "GET", "/admin/v1/orgs/eorg", AUTH, NULL);
    CG_CHECK_EQ_STR(t_str(r.json, "emails.0"), "ops@acme.test");
    CG_CHECK(t_get(r.json, "emails.1") == NULL);
    CG_CHECK_EQ_STR(t_str(r.json, "name"), "E");
    t_done(&r);
    t_http(&r, "PATCH", "/admin/v1/orgs/eorg", AUTH, "{\"emails\":[\"ok@x.test\",\"x\"]}");
    CG_CHECK(t_is_error(&r, 400, "invalid_request", "emails[1]: "));
    t_http(&r, "PATCH", "/admin/v1/orgs/eorg", AUTH, "{\"emails\":null}");
    CG_CHECK(t_status(&r, 200));
    t_done(&r);
    t_http(&r, "GET", "/admin/v1/orgs/eorg", AUTH, NULL);
    CG_CHECK(cJSON_IsArray(t_get(r.json, "emails")) && t_get(r.json, "emails.0") == NULL);
    t_done(&r);
}

/* DELETE of an org: 409 while any shard holds one of its keys, then 200, then 404. */
CG_TEST(real_org_delete)
{
    char id[64], on[T_SHARDS][64];
    t_resp r;
    int have = 0;

    t_http(&r, "POST", "/admin/v1/orgs", AUTH, "{\"id\":\"dorg\",\"emails\":[\"a@x.test\"]}");
    CG_CHECK(t_status(&r, 201));
    t_done(&r);
    for (int i = 0; i < T_KEYS_TRY_MAX && have != 3; i++) {
        char route[96];
        CG_CHECK(t_key_new("dorg", "{}", id));
        snprintf(route, sizeof(route), "key:%s", id);
        int s = t_shard_of(route);
        if (!(have & (1 << s))) {
            snprintf(on[s], sizeof(on[s]), "%s", id);
            have |= 1 << s;
        } else {
            t_httpf(&r, "DELETE", NULL, "/admin/v1/keys/%s", id);
            CG_CHECK(t_status(&r, 200));
            t_done(&r);
        }
    }
    CG_CHECK_EQ_INT(have, 3);
    /* Delete first the key on the org's own shard: the one left is on the other shard. */
    int own = t_shard_of("org:dorg");
    t_http(&r, "DELETE", "/admin/v1/orgs/dorg", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 409, "org_not_empty", NULL));
    t_httpf(&r, "POST", NULL, "/admin/v1/keys/%s/revoke", on[own]);
    CG_CHECK(t_status(&r, 200));
    t_done(&r);
    t_http(&r, "DELETE", "/admin/v1/orgs/dorg", AUTH, NULL); /* revoked keys count */
    CG_CHECK(t_is_error(&r, 409, "org_not_empty", NULL));
    t_httpf(&r, "DELETE", NULL, "/admin/v1/keys/%s", on[own]);
    CG_CHECK(t_status(&r, 200));
    t_done(&r);
    t_http(&r, "DELETE", "/admin/v1/orgs/dorg", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 409, "org_not_empty", NULL));
    t_http(&r, "GET", "/admin/v1/orgs/dorg", AUTH, NULL);
    CG_CHECK(t_status(&r, 200)); /* refused: nothing deleted */
    t_done(&r);
    t_httpf(&r, "DELETE", NULL, "/admin/v1/keys/%s", on[1 - own]);
    CG_CHECK(t_status(&r, 200));
    t_done(&r);

    t_http(&r, "DELETE", "/admin/v1/orgs/dorg", AUTH, NULL);
    CG_CHECK(t_status(&r, 200));
    CG_CHECK_EQ_STR(t_str(r.json, "id"), "dorg");
    CG_CHECK(cJSON_IsTrue(t_get(r.json, "deleted")));
    t_done(&r);
    t_http(&r, "GET", "/admin/v1/orgs/dorg", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 404, "org_not_found", NULL));
    t_http(&r, "DELETE", "/admin/v1/orgs/dorg", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 404, "org_not_found", NULL));
    t_http(&r, "POST", "/admin/v1/orgs/dorg/keys", AUTH, "{}");
    CG_CHECK(t_is_error(&r, 404, "org_not_found", NULL));
    /* The id is free again; the new org starts without the old one's emails. */
    t_http(&r, "POST", "/admin/v1/orgs", AUTH, "{\"id\":\"dorg\"}");
    CG_CHECK(t_status(&r, 201));
    CG_CHECK(t_get(r.json, "emails.0") == NULL);
    t_done(&r);
    t_http(&r, "DELETE", "/admin/v1/orgs/Bad%20Id", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 404, "org_not_found", NULL));
}

/* Effective customer limits: org defaults merged with the override by (metric, window). */
static int t_customer_merged(const cJSON *j)
{
    return cJSON_IsTrue(t_get(j, "override")) && t_str(j, "id") &&
           strcmp(t_str(j, "id"), "cust:42@x") == 0 && t_str(j, "limits.0.max") &&
           strcmp(t_str(j, "limits.0.max"), "20.00") == 0 &&
           cJSON_IsTrue(t_get(j, "limits.0.override")) &&
           t_num(j, "limits.0.id") == t_natural(PROTO_METRIC_COST, "month") &&
           t_str(j, "limits.0.used") && strcmp(t_str(j, "limits.0.used"), "0.00") == 0 &&
           t_num(j, "limits.1.max") == 60 && cJSON_IsFalse(t_get(j, "limits.1.override")) &&
           t_num(j, "limits.2.max") == 1000 && cJSON_IsTrue(t_get(j, "limits.2.override")) &&
           t_num(j, "limits.2.id") == t_natural(PROTO_METRIC_TOKENS, "day") &&
           t_get(j, "limits.3") == NULL;
}

CG_TEST(real_customers)
{
    static const char over[] = "{\"limits\":[{\"metric\":\"cost\",\"window\":\"month\",\"max\":20},"
                               "{\"metric\":\"tokens\",\"window\":\"day\",\"max\":1000}]}";
    t_resp r;

    t_http(&r, "PUT", "/admin/v1/orgs/nobody/customers/c1", AUTH, "{\"limits\":[]}");
    CG_CHECK(t_is_error(&r, 404, "org_not_found", NULL));
    t_http(&r, "PUT", "/admin/v1/orgs/rorg/customers/c1", AUTH, "{\"x\":1}");
    CG_CHECK(t_is_error(&r, 400, "invalid_request", "x: unknown field"));
    t_http(&r, "PUT", "/admin/v1/orgs/rorg/customers/c1", AUTH,
           "{\"limits\":[{\"metric\":\"cost\",\"window\":\"month\"},"
           "{\"metric\":\"cost\",\"window\":\"month\"}]}");
    CG_CHECK(t_is_error(&r, 400, "invalid_request", "limits[1]: same metric and window"));

    t_http(&r, "PUT", "/admin/v1/orgs/rorg/customers/cust:42@x", AUTH, over);
    CG_CHECK(t_status(&r, 200));
    CG_CHECK(t_customer_merged(r.json));
    t_done(&r);
    t_http(&r, "GET", "/admin/v1/orgs/rorg/customers/cust%3A42%40x", AUTH, NULL);
    CG_CHECK(t_status(&r, 200));
    CG_CHECK(t_customer_merged(r.json));
    t_done(&r);

    t_http(&r, "GET", "/admin/v1/orgs/rorg/customers/someone", AUTH, NULL);
    CG_CHECK(t_status(&r, 200));
    CG_CHECK(cJSON_IsFalse(t_get(r.json, "override")));
    CG_CHECK_EQ_STR(t_str(r.json, "limits.0.max"), "5.00");
    CG_CHECK(cJSON_IsFalse(t_get(r.json, "limits.0.override")));
    CG_CHECK(t_get(r.json, "limits.2") == NULL);
    t_done(&r);
    t_http(&r, "GET", "/admin/v1/orgs/nobody/customers/someone", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 404, "org_not_found", NULL));

    t_http(&r, "DELETE", "/admin/v1/orgs/rorg/customers/cust:42@x", AUTH, NULL);
    CG_CHECK(t_status(&r, 200));
    t_done(&r);
    t_http(&r, "GET", "/admin/v1/orgs/rorg/customers/cust:42@x", AUTH, NULL);
    CG_CHECK(cJSON_IsFalse(t_get(r.json, "override")));
    CG_CHECK_EQ_STR(t_str(r.json, "limits.0.max"), "5.00");
    t_done(&r);
    t_http(&r, "DELETE", "/admin/v1/orgs/rorg/customers/cust:42@x", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 404, "customer_not_found", NULL));
}

static char t_key_on[T_SHARDS][64]; /* a key of org "uorg" on each shard */

/* The totals of one usage query; 1 on 200 with the wanted values. */
static int t_usage_is(const char *query, double requests, double prompt, double completion,
                      const char *cost)
{
    char path[256];
    t_resp r;
    int ok;

    snprintf(path, sizeof(path), "/admin/v1/usage?%s", query);
    t_http(&r, "GET", path, AUTH, NULL);
    ok = t_status(&r, 200) && t_num(r.json, "requests") == requests &&
         t_num(r.json, "prompt_tokens") == prompt &&
         t_num(r.json, "completion_tokens") == completion && t_str(r.json, "cost") &&
         strcmp(t_str(r.json, "cost"), cost) == 0;
    if (!ok) {
        fprintf(stderr, "  usage?%s: want %g/%g/%g/%s, got %s\n", query, requests, prompt,
                completion, cost, r.raw);
    }
    t_done(&r);
    return ok;
}

CG_TEST(real_usage_totals)
{
    char id[64], q[160];
    t_resp r;
    int have = 0;

    t_http(&r, "POST", "/admin/v1/orgs", AUTH, "{\"id\":\"uorg\"}");
    CG_CHECK(t_status(&r, 201));
    t_done(&r);
    for (int i = 0; i < T_KEYS_TRY_MAX && have != 3; i++) {
        char route[96];
        CG_CHECK(t_key_new("uorg", "{}", id));
        snprintf(route, sizeof(route), "key:%s", id);
        int s = t_shard_of(route);
        if (!(have & (1 << s))) {
            snprintf(t_key_on[s], sizeof(t_key_on[s]), "%s", id);
            have |= 1 << s;
        }
    }
    CG_CHECK_EQ_INT(have, 3);
    CG_CHECK_EQ_INT(t_spend("uorg", t_key_on[0], "m1", 10, 5, 1000000, "u-1"), CG_ERR_OK);
    CG_CHECK_EQ_INT(t_spend("uorg", t_key_on[0], "m1", 10, 5, 1000000, "u-2"), CG_ERR_OK);
    CG_CHECK_EQ_INT(t_spend("uorg", t_key_on[1], "m2", 100, 50, 10000000, "u-3"), CG_ERR_OK);
    CG_CHECK_EQ_INT(t_spend("rorg", t_key_on[1], "m2", 1, 1, 1, "u-4"), CG_ERR_OK); /* other org */

    CG_CHECK(t_usage_is("org=uorg", 3, 120, 60, "0.012"));
    snprintf(q, sizeof(q), "org=uorg&key=%s", t_key_on[1]);
    CG_CHECK(t_usage_is(q, 1, 100, 50, "0.01"));
    CG_CHECK(t_usage_is("org=uorg&model=m1", 2, 20, 10, "0.002"));
    CG_CHECK(t_usage_is("org=uorg&key=&group=&customer=&model=&from=&to=", 3, 120, 60, "0.012"));
    CG_CHECK(t_usage_is("org=uorg&from=2000-01-01&to=2000-01-02T00:00:00Z", 0, 0, 0, "0.00"));
    CG_CHECK(t_usage_is("org=uorg&from=2000-01-01", 3, 120, 60, "0.012"));
    CG_CHECK(t_usage_is("org=nobody", 0, 0, 0, "0.00"));
    t_http(&r, "GET", "/admin/v1/usage?org=uorg", AUTH, NULL);
    CG_CHECK(cJSON_IsNull(t_get(r.json, "from")) && t_str(r.json, "to") != NULL);
    t_done(&r);
}

/* A shard down: totals refuse (503), records on the other shard still answer. */
CG_TEST(real_shard_down)
{
    t_resp r;

    t_real_kill(1);
    t_http(&r, "GET", "/admin/v1/usage?org=uorg", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 503, "ledger_unavailable", NULL));
    t_httpf(&r, "GET", NULL, "/admin/v1/keys/%s", t_key_on[1]);
    CG_CHECK(t_is_error(&r, 503, "ledger_unavailable", NULL));
    t_httpf(&r, "PATCH", "{\"name\":\"x\"}", "/admin/v1/keys/%s", t_key_on[1]);
    CG_CHECK(t_is_error(&r, 503, "ledger_unavailable", NULL));
    t_httpf(&r, "GET", NULL, "/admin/v1/keys/%s", t_key_on[0]);
    CG_CHECK(t_status(&r, 200));
    t_done(&r);
    /* A shard that cannot say whether it holds keys: never delete on a partial view. */
    t_http(&r, "DELETE", "/admin/v1/orgs/uorg", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 503, "ledger_unavailable", NULL));
    if (t_shard_of("org:uorg") == 0) {
        t_http(&r, "GET", "/admin/v1/orgs/uorg", AUTH, NULL);
        CG_CHECK(t_status(&r, 200));
        t_done(&r);
    }
}

int t_real_run(void)
{
    return CG_TEST_RUN(real_ready, real_org, real_org_patch, real_groups, real_key_fields,
                       real_key_validation, real_key_patch, real_key_limit_ids, real_revoke_delete,
                       real_org_emails, real_org_delete, real_customers, real_usage_totals,
                       real_shard_down);
}
