/*
 * admin_api_test.c — the admin API end to end over HTTP, in two setups on one
 * admin loop thread (as in the gateway: its own loop, its own gw_ledger):
 *
 *  1. against an in-test ledger: an NNG rep0 server thread keeping orgs and
 *     keys in memory with the shard's answers (EXISTS on create_only,
 *     NOTFOUND, limit state on GET_KEY), able to stay silent (→ 503 after
 *     ledger_timeout_ms) or answer WRONG_SHARD — for auth, routing,
 *     validation, what is stored, and ledger failures;
 *  2. against two real capgate-ledger shards started by admin_api_real.c
 *     (groups, customers, PATCH, revoke, DELETE, limit state, usage totals
 *     summed over both shards, a shard down).
 *
 * The test thread is a blocking HTTP/1.1 client on loopback (admin_test_http.c).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "admin_test.h"
#include "cg_config.h"
#include "cg_money.h"
#include "cg_test.h"
#include "gw_admin.h"
#include "gw_json.h"
#include "gw_keys.h"

#define T_STORE_MAX 16

/* Real-ledger fixture (admin_api_real.c): start the shards and describe them in cfg. */
int t_real_start(cg_config *cfg);
/* Stop them (SIGTERM; each must exit 0 unless killed on purpose); 0 if clean. */
int t_real_stop(void);

/* ---- in-test ledger ---- */

enum { T_LEDGER_OK = 0, T_LEDGER_SILENT = 1, T_LEDGER_WRONG_SHARD = 2 };

static struct {
    nng_socket sock;
    pthread_t thr;
    int port;
    atomic_int mode;
    pthread_mutex_t mu; /* guards the store (read by test checks) */
    proto_org orgs[T_STORE_MAX];
    int org_n;
    proto_key keys[T_STORE_MAX];
    int key_n;
} t_led = {.mu = PTHREAD_MUTEX_INITIALIZER};

static proto_org *t_org_find(const char *id)
{
    for (int i = 0; i < t_led.org_n; i++) {
        if (strcmp(t_led.orgs[i].id, id) == 0) {
            return &t_led.orgs[i];
        }
    }
    return NULL;
}

static proto_key *t_key_find(const char *id)
{
    for (int i = 0; i < t_led.key_n; i++) {
        if (strcmp(t_led.keys[i].id, id) == 0) {
            return &t_led.keys[i];
        }
    }
    return NULL;
}

static void t_led_apply(const proto_req *q, proto_rep *p)
{
    const char *id = strchr(q->route, ':') ? strchr(q->route, ':') + 1 : "";
    proto_org *o;
    proto_key *k;

    p->op = q->op;
    p->status = CG_ERR_OK;
    pthread_mutex_lock(&t_led.mu);
    switch (q->op) {
    case PROTO_OP_PUT_ORG:
        if (t_org_find(id) != NULL) {
            p->status = CG_ERR_EXISTS;
        } else if (t_led.org_n < T_STORE_MAX) {
            t_led.orgs[t_led.org_n++] = q->u.put_org.org;
        }
        break;
    case PROTO_OP_GET_ORG:
    case PROTO_OP_GET_ORG_STATE: /* the org, no counters yet */
        if ((o = t_org_find(id)) == NULL) {
            p->status = CG_ERR_NOTFOUND;
        } else if (q->op == PROTO_OP_GET_ORG) {
            p->u.get_org.org = *o;
        } else {
            p->u.get_org_state.org = *o;
        }
        break;
    case PROTO_OP_PUT_KEY:
        if (t_key_find(id) != NULL) {
            p->status = CG_ERR_EXISTS;
        } else if (t_led.key_n < T_STORE_MAX) {
            t_led.keys[t_led.key_n++] = q->u.put_key.key;
        }
        break;
    case PROTO_OP_GET_KEY:
        if ((k = t_key_find(id)) == NULL) {
            p->status = CG_ERR_NOTFOUND;
            break;
        }
        p->u.get_key.key = *k;
        if (k->limit_n > 0) { /* a counter for the first limit only */
            p->u.get_key.state_n = 1;
            p->u.get_key.states[0] = (proto_limit_state){.limit_id = k->limits[0].id,
                                                         .used = 1500000000,
                                                         .reserved = 250000000,
                                                         .period_start_ms = 1,
                                                         .period_end_ms = 1796083200000LL};
        }
        break;
    default:
        p->status = CG_ERR_INVAL;
    }
    pthread_mutex_unlock(&t_led.mu);
}

static void t_led_answer(nng_msg *m)
{
    proto_req *reqs = NULL;
    uint32_t n = 0;
    msgpack_sbuffer sb;
    nng_msg *out;
    int mode = atomic_load(&t_led.mode);

    if (mode == T_LEDGER_SILENT ||
        proto_req_decode(nng_msg_body(m), nng_msg_len(m), &reqs, &n) != CG_ERR_OK) {
        return;
    }
    proto_rep *reps = calloc(n, sizeof(*reps));
    for (uint32_t i = 0; i < n; i++) {
        if (mode == T_LEDGER_WRONG_SHARD) {
            reps[i].op = reqs[i].op;
            reps[i].status = CG_ERR_WRONG_SHARD;
        } else {
            t_led_apply(&reqs[i], &reps[i]);
        }
    }
    msgpack_sbuffer_init(&sb);
    if (proto_rep_encode(reps, n, &sb) == CG_ERR_OK && nng_msg_alloc(&out, sb.size) == 0) {
        memcpy(nng_msg_body(out), sb.data, sb.size);
        if (nng_sendmsg(t_led.sock, out, 0) != 0) {
            nng_msg_free(out);
        }
    }
    msgpack_sbuffer_destroy(&sb);
    free(reps);
    proto_req_free(reqs, n);
}

static void *t_led_main(void *arg)
{
    nng_msg *m;

    (void)arg;
    while (nng_recvmsg(t_led.sock, &m, 0) == 0) {
        t_led_answer(m);
        nng_msg_free(m);
    }
    return NULL;
}

static int t_led_start(void)
{
    nng_listener lst;

    if (nng_rep0_open(&t_led.sock) != 0 ||
        nng_listen(t_led.sock, "tcp://127.0.0.1:0", &lst, 0) != 0 ||
        nng_listener_get_int(lst, NNG_OPT_TCP_BOUND_PORT, &t_led.port) != 0) {
        return -1;
    }
    return pthread_create(&t_led.thr, NULL, t_led_main, NULL) == 0 ? 0 : -1;
}

/* ---- the admin loop thread: one server per setup ---- */

typedef struct t_server {
    cg_config cfg;
    cg_ring ring;
    gw_ledger *ledger;
    gw_admin *admin;
    int port;
} t_server;

static struct {
    t_server srv[2]; /* 0: in-test ledger, 1: real shards */
    uv_loop_t loop;
    uv_async_t stop;
    pthread_t thr;
    atomic_int ready; /* 1 up, -1 failed */
} t_gw;

static void t_stop_cb(uv_async_t *h)
{
    for (int i = 0; i < 2; i++) {
        gw_admin_stop(t_gw.srv[i].admin);
        gw_ledger_free(t_gw.srv[i].ledger);
    }
    uv_close((uv_handle_t *)h, NULL);
}

static void *t_gw_main(void *arg)
{
    int ok;

    (void)arg;
    ok = uv_loop_init(&t_gw.loop) == 0;
    for (int i = 0; ok && i < 2; i++) {
        t_server *s = &t_gw.srv[i];
        ok = gw_ledger_new(&t_gw.loop, &s->cfg, &s->ring, &s->ledger) == CG_ERR_OK &&
             gw_admin_start(&t_gw.loop, &s->cfg, &s->ring, s->ledger, &s->admin) == CG_ERR_OK;
    }
    if (!ok || uv_async_init(&t_gw.loop, &t_gw.stop, t_stop_cb) != 0) {
        atomic_store(&t_gw.ready, -1);
        return NULL;
    }
    atomic_store(&t_gw.ready, 1);
    uv_run(&t_gw.loop, UV_RUN_DEFAULT);
    uv_loop_close(&t_gw.loop);
    return NULL;
}

/* Common settings of server i; its shards are set by the caller. */
static int t_server_init(t_server *s, uint32_t ledger_timeout_ms)
{
    strcpy(s->cfg.admin_token, T_TOKEN);
    strcpy(s->cfg.key_pepper, T_PEPPER);
    s->cfg.ledger_timeout_ms = ledger_timeout_ms;
    s->port = t_free_port();
    snprintf(s->cfg.admin_listen, sizeof(s->cfg.admin_listen), "127.0.0.1:%d", s->port);
    return cg_config_ring(&s->cfg, &s->ring) == CG_ERR_OK ? 0 : -1;
}

static int t_gw_start(void)
{
    t_server *stub = &t_gw.srv[0], *real = &t_gw.srv[1];

    cg_config_defaults(&stub->cfg);
    stub->cfg.shard_n = 1;
    strcpy(stub->cfg.shards[0].name, "s0");
    snprintf(stub->cfg.shards[0].req_url, sizeof(stub->cfg.shards[0].req_url), "tcp://127.0.0.1:%d",
             t_led.port);
    strcpy(stub->cfg.shards[0].pub_url, "tcp://127.0.0.1:1");
    cg_config_defaults(&real->cfg);
    /* Sanitizer builds answer slowly; the real shards get a generous deadline. */
    if (t_server_init(stub, 400) != 0 || t_real_start(&real->cfg) != 0 ||
        t_server_init(real, 3000) != 0 || pthread_create(&t_gw.thr, NULL, t_gw_main, NULL) != 0) {
        return -1;
    }
    while (atomic_load(&t_gw.ready) == 0) {
        usleep(1000);
    }
    return atomic_load(&t_gw.ready) == 1 ? 0 : -1;
}

/* ---- tests ---- */

CG_TEST(admin_auth)
{
    t_resp r;

    t_http(&r, "GET", "/admin/v1/orgs/acme", NULL, NULL);
    CG_CHECK(t_is_error(&r, 401, "invalid_api_key", NULL));
    t_http(&r, "GET", "/admin/v1/orgs/acme", "Bearer admin-token-for-testz", NULL);
    CG_CHECK(t_is_error(&r, 401, "invalid_api_key", NULL));
    t_http(&r, "GET", "/admin/v1/orgs/acme", "Bearer " T_TOKEN "x", NULL);
    CG_CHECK(t_is_error(&r, 401, "invalid_api_key", NULL));
    t_http(&r, "GET", "/admin/v1/orgs/acme", "Basic " T_TOKEN, NULL);
    CG_CHECK(t_is_error(&r, 401, "invalid_api_key", NULL));
    CG_CHECK(strstr(r.raw, "application/json") != NULL);
}

CG_TEST(admin_create_org)
{
    t_resp r;

    t_http(&r, "POST", "/admin/v1/orgs", AUTH,
           "{\"id\":\"acme\",\"name\":\"Acme Inc.\",\"billing_anchor_day\":15,"
           "\"limits\":[{\"metric\":\"cost\",\"window\":\"month\",\"max\":1000,\"warn_at\":[0.8]}],"
           "\"webhooks\":[{\"url\":\"https://hooks.example.com/a\"},"
           "{\"url\":\"http://h.example/b\",\"secret\":\"whsec_c2VjcmV0\"}],\"emails\":[]}");
    CG_CHECK_EQ_INT(r.status, 201);
    CG_CHECK_EQ_STR(t_str(r.json, "id"), "acme");
    CG_CHECK_EQ_STR(t_str(r.json, "limits.0.max"), "1000.00");
    CG_CHECK(t_num(r.json, "limits.0.id") == 1);
    CG_CHECK(t_num(r.json, "limits.0.warn_at.0") == 0.8);
    CG_CHECK(t_num(r.json, "billing_anchor_day") == 15);
    CG_CHECK(t_str(r.json, "created_at") != NULL);
    /* Generated secret shown once; a given one never echoed. */
    const char *gen = t_str(r.json, "webhooks.0.secret");
    CG_CHECK(gen != NULL && strncmp(gen, "whsec_", 6) == 0 && strlen(gen) == 6 + 44);
    CG_CHECK(t_str(r.json, "webhooks.1.secret") == NULL);
    CG_CHECK(strstr(r.raw, "whsec_c2VjcmV0") == NULL);
    pthread_mutex_lock(&t_led.mu);
    int stored = t_led.org_n == 1 && strcmp(t_led.orgs[0].webhooks[0].secret, gen) == 0 &&
                 strcmp(t_led.orgs[0].webhooks[1].secret, "whsec_c2VjcmV0") == 0 &&
                 t_led.orgs[0].limits[0].max == 1000 * CG_NUSD_PER_USD;
    pthread_mutex_unlock(&t_led.mu);
    t_done(&r);
    CG_CHECK(stored);

    t_http(&r, "POST", "/admin/v1/orgs", AUTH, "{\"id\":\"acme\"}");
    CG_CHECK(t_is_error(&r, 409, "org_exists", NULL));

    t_http(&r, "GET", "/admin/v1/orgs/acme", AUTH, NULL);
    CG_CHECK_EQ_INT(r.status, 200);
    CG_CHECK_EQ_STR(t_str(r.json, "name"), "Acme Inc.");
    CG_CHECK_EQ_STR(t_str(r.json, "webhooks.0.url"), "https://hooks.example.com/a");
    CG_CHECK(strstr(r.raw, "whsec_") == NULL);
    t_done(&r);
    t_http(&r, "GET", "/admin/v1/orgs/nobody", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 404, "org_not_found", NULL));
    t_http(&r, "GET", "/admin/v1/orgs/Bad%20Id", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 404, "org_not_found", NULL));
}

CG_TEST(admin_org_validation)
{
    static const struct {
        const char *body;
        const char *msg;
    } cases[] = {
        {"{\"id\":\"x1\",\"colour\":1}", "colour: unknown field"},
        {"{\"name\":\"x\"}", "id: "},
        {"{\"id\":\"Upper\"}", "id: "},
        {"{\"id\":\"x1\",\"emails\":[\"a@b.c\",\"nope\"]}", "emails[1]: "},
        {"{\"id\":\"x1\",\"customer_defaults\":{\"limits\":[],\"x\":1}}",
         "customer_defaults.x: unknown field"},
        {"{\"id\":\"x1\",\"customer_defaults\":[]}", "customer_defaults: "},
        {"{\"id\":\"x1\",\"customer_defaults\":{\"limits\":[{\"metric\":\"cost\"}]}}",
         "customer_defaults.limits[0].window: "},
        {"{\"id\":\"x1\",\"on_low_budget\":\"inherit\"}", "on_low_budget: "},
        {"{\"id\":\"x1\",\"on_low_budget\":1}", "on_low_budget: "},
        {"{\"id\":\"x1\",\"billing_anchor_day\":29}", "billing_anchor_day: "},
        {"{\"id\":\"x1\",\"billing_anchor_day\":0}", "billing_anchor_day: "},
        {"{\"id\":\"x1\",\"webhooks\":[{\"url\":\"ftp://x\"}]}", "webhooks[0].url: "},
        {"{\"id\":\"x1\",\"webhooks\":[{\"url\":\"https://x\",\"secret\":\"abc\"}]}",
         "webhooks[0].secret: "},
        {"{\"id\":\"x1\",\"webhooks\":[{\"url\":\"https://x\",\"secret\":\"whsec_a$==\"}]}",
         "webhooks[0].secret: "},
        {"{\"id\":\"x1\",\"webhooks\":[{\"url\":\"https://x\",\"extra\":1}]}",
         "webhooks[0].extra: unknown field"},
        {"{\"id\":\"x1\",\"limits\":[{\"metric\":\"requests\",\"window\":\"1m\",\"max\":60,"
         "\"warn_at\":[0.5]}]}",
         "limits[0].warn_at: not allowed on sliding windows"},
        {"{\"id\":\"x1\",\"limits\":[{\"metric\":\"cost\",\"window\":\"day\"},"
         "{\"metric\":\"cost\",\"window\":\"day\"}]}",
         "limits[1]: same metric and window as limits[0]"},
        {"[]", "the body must be a JSON object"},
    };
    t_resp r;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        t_http(&r, "POST", "/admin/v1/orgs", AUTH, cases[i].body);
        CG_CHECK(t_is_error(&r, 400, "invalid_request", cases[i].msg));
    }
    t_http(&r, "POST", "/admin/v1/orgs", AUTH, "{\"id\":");
    CG_CHECK(t_is_error(&r, 400, "invalid_json", NULL));
    pthread_mutex_lock(&t_led.mu);
    int n = t_led.org_n;
    pthread_mutex_unlock(&t_led.mu);
    CG_CHECK_EQ_INT(n, 1); /* only acme from the previous test */
}

CG_TEST(admin_create_and_get_key)
{
    char id[GW_KEY_ID_MAX + 1], path[128];
    uint8_t hash[32];
    t_resp r;

    t_http(&r, "POST", "/admin/v1/orgs/acme/keys", AUTH,
           "{\"name\":\"search-prod\",\"expires_in_days\":30,"
           "\"limits\":[{\"metric\":\"cost\",\"window\":\"month\",\"max\":\"50\"},"
           "{\"metric\":\"tokens\",\"window\":\"lifetime\",\"max\":1000}]}");
    CG_CHECK_EQ_INT(r.status, 201);
    const char *key = t_str(r.json, "key");
    CG_CHECK(key != NULL);
    CG_CHECK_EQ_INT(gw_key_parse(key, strlen(key), id, sizeof(id)), CG_ERR_OK);
    CG_CHECK_EQ_STR(t_str(r.json, "id"), id);
    CG_CHECK_EQ_STR(t_str(r.json, "org"), "acme");
    CG_CHECK(t_str(r.json, "expires_at") != NULL);
    CG_CHECK_EQ_STR(t_str(r.json, "limits.0.max"), "50.00");
    CG_CHECK(t_num(r.json, "limits.1.max") == 1000);
    gw_key_hash(T_PEPPER, key, strlen(key), hash);
    pthread_mutex_lock(&t_led.mu);
    proto_key *k = t_key_find(id);
    int stored = k != NULL && memcmp(k->hash, hash, 32) == 0 && k->billing_anchor_day == 15 &&
                 strcmp(k->org, "acme") == 0 && k->limit_n == 2 && k->limits[1].id == 2 &&
                 k->expires_ms > k->created_ms;
    pthread_mutex_unlock(&t_led.mu);
    CG_CHECK(stored);
    t_done(&r);

    snprintf(path, sizeof(path), "/admin/v1/keys/%s", id);
    t_http(&r, "GET", path, AUTH, NULL);
    CG_CHECK_EQ_INT(r.status, 200);
    CG_CHECK(strstr(r.raw, "cg-k_") == NULL);
    CG_CHECK_EQ_STR(t_str(r.json, "name"), "search-prod");
    CG_CHECK_EQ_STR(t_str(r.json, "limits.0.used"), "1.50");
    CG_CHECK_EQ_STR(t_str(r.json, "limits.0.reserved"), "0.25");
    CG_CHECK_EQ_STR(t_str(r.json, "limits.0.resets_at"), "2026-12-01T00:00:00Z");
    CG_CHECK(t_num(r.json, "limits.1.used") == 0);
    CG_CHECK(cJSON_IsNull(t_get(r.json, "limits.1.resets_at")));
    CG_CHECK(cJSON_IsFalse(t_get(r.json, "revoked")));
    t_done(&r);

    t_http(&r, "GET", "/admin/v1/keys/k_0000000000000000", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 404, "key_not_found", NULL));
    t_http(&r, "POST", "/admin/v1/orgs/nobody/keys", AUTH, "{\"name\":\"x\"}");
    CG_CHECK(t_is_error(&r, 404, "org_not_found", NULL));
    t_http(&r, "POST", "/admin/v1/orgs/acme/keys", AUTH,
           "{\"expires_in_days\":3,\"expires_at\":\"2099-01-01T00:00:00Z\"}");
    CG_CHECK(t_is_error(&r, 400, "invalid_request", "expires_in_days: "));
    t_http(&r, "POST", "/admin/v1/orgs/acme/keys", AUTH, "{\"expires_in_days\":3651}");
    CG_CHECK(t_is_error(&r, 400, "invalid_request", "expires_in_days: "));
    t_http(&r, "POST", "/admin/v1/orgs/acme/keys", AUTH, "{\"expires_at\":\"2001-01-01\"}");
    CG_CHECK(t_is_error(&r, 400, "invalid_request", "expires_at: "));
    t_http(&r, "POST", "/admin/v1/orgs/acme/keys", AUTH, "{\"group\":\"a team\"}");
    CG_CHECK(t_is_error(&r, 400, "invalid_request", "group: "));
    t_http(&r, "POST", "/admin/v1/orgs/acme/keys", AUTH, "{\"secret\":\"x\"}");
    CG_CHECK(t_is_error(&r, 400, "invalid_request", "secret: unknown field"));
}

CG_TEST(admin_routing)
{
    t_resp r;

    t_http(&r, "GET", "/admin/v1/nothing", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 404, "not_found", NULL));
    t_http(&r, "GET", "/admin/v1/orgs", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 405, "method_not_allowed", NULL));
    t_http(&r, "PUT", "/admin/v1/keys/k_1", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 405, "method_not_allowed",
                        "Method not allowed here; use GET, PATCH, DELETE"));
    t_http(&r, "GET", "/admin/v1/orgs/acme/groups", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 405, "method_not_allowed", "Method not allowed here; use POST"));
    t_http(&r, "GET", "/admin/v1/keys/k_1/rotate", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 405, "method_not_allowed", "Method not allowed here; use POST"));
    t_http(&r, "GET", "/admin/v1/keys/k_1/nothing", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 404, "not_found", NULL));
    t_http(&r, "GET", "/admin/v1/orgs/acme/groups/a%20b", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 404, "group_not_found", NULL));
    t_http(&r, "GET", "/admin/v1/orgs/acme/customers/a%2", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 404, "customer_not_found", NULL));
    t_http(&r, "PUT", "/admin/v1/orgs/acme/customers/a%20b", AUTH, "{}");
    CG_CHECK(t_is_error(&r, 400, "invalid_request", "customer: "));
    t_http(&r, "GET", "/admin/v1/orgs/a/b/c/d/e/f", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 404, "not_found", NULL));
    t_http(&r, "GET", "/admin/v1/usage", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 400, "invalid_request", "org: required"));
}

CG_TEST(admin_ledger_unavailable)
{
    t_resp r;

    atomic_store(&t_led.mode, T_LEDGER_SILENT);
    t_http(&r, "GET", "/admin/v1/orgs/acme", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 503, "ledger_unavailable", NULL));
    atomic_store(&t_led.mode, T_LEDGER_WRONG_SHARD);
    t_http(&r, "POST", "/admin/v1/orgs", AUTH, "{\"id\":\"other\"}");
    CG_CHECK(t_is_error(&r, 503, "ledger_unavailable", NULL));
    atomic_store(&t_led.mode, T_LEDGER_OK);
    usleep(500 * 1000); /* let the silent request's late reply drain */
    t_http(&r, "GET", "/admin/v1/orgs/acme", AUTH, NULL);
    CG_CHECK_EQ_INT(r.status, 200);
    t_done(&r);
}

/* Usage query validation (answered before any ledger I/O). */
CG_TEST(admin_usage_validation)
{
    static const struct {
        const char *query;
        const char *msg;
    } cases[] = {
        {"key=k_1", "org: required"},
        {"org=acme&org=acme", "org: given twice"},
        {"org=acme&colour=red", "colour: unknown parameter"},
        {"org=Acme", "org: "},
        {"org=acme&customer=a%20b", "customer: "},
        {"org=acme&group=a/b", "group: "},
        {"org=acme&from=yesterday", "from: "},
        {"org=acme&from=2026-02-01&to=2026-01-01", "from: must be before to"},
        {"org=acme&granularity=week", "granularity: "}, /* day and csv work since issue 5 */
        {"org=acme&format=xml", "format: "},
        {"org=acme&key=%zz", "key: malformed"},
    };
    char path[256];
    t_resp r;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(path, sizeof(path), "/admin/v1/usage?%s", cases[i].query);
        t_http(&r, "GET", path, AUTH, NULL);
        CG_CHECK(t_is_error(&r, 400, "invalid_request", cases[i].msg));
    }
}

int main(void)
{
    int rc;

    if (t_led_start() != 0 || t_gw_start() != 0) {
        fprintf(stderr, "setup failed\n");
        t_real_stop();
        return 1;
    }
    t_port = t_gw.srv[0].port;
    rc = CG_TEST_RUN(admin_auth, admin_create_org, admin_org_validation, admin_create_and_get_key,
                     admin_routing, admin_usage_validation, admin_ledger_unavailable);
    t_port = t_gw.srv[1].port;
    rc |= t_real_run();
    uv_async_send(&t_gw.stop);
    pthread_join(t_gw.thr, NULL);
    for (int i = 0; i < 2; i++) {
        cg_ring_fini(&t_gw.srv[i].ring);
    }
    rc |= t_real_stop() != 0;
    nng_close(t_led.sock);
    pthread_join(t_led.thr, NULL);
    return rc;
}
