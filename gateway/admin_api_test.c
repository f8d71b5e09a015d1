/*
 * admin_api_test.c — the admin API end to end over HTTP, against an in-test
 * ledger: an NNG rep0 server thread keeping orgs and keys in memory with the
 * shard's answers (EXISTS on create_only, NOTFOUND, limit state on GET_KEY),
 * able to stay silent (→ 503 after ledger_timeout_ms) or answer WRONG_SHARD.
 *
 * The admin server runs on its own loop thread with its own gw_ledger, as in
 * the gateway; the test thread is a blocking HTTP/1.1 client on loopback.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "cg_config.h"
#include "cg_money.h"
#include "cg_test.h"
#include "gw_admin.h"
#include "gw_json.h"
#include "gw_keys.h"

#define T_TOKEN "admin-token-for-tests"
#define T_PEPPER "pepper-for-tests"
#define T_STORE_MAX 16
#define T_RESP_MAX 65536

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
        if ((o = t_org_find(id)) == NULL) {
            p->status = CG_ERR_NOTFOUND;
        } else {
            p->u.get_org.org = *o;
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

/* ---- the admin loop thread ---- */

static struct {
    cg_config cfg;
    cg_ring ring;
    uv_loop_t loop;
    uv_async_t stop;
    gw_ledger *ledger;
    gw_admin *admin;
    pthread_t thr;
    atomic_int ready; /* 1 up, -1 failed */
    int port;
} t_gw;

static void t_stop_cb(uv_async_t *h)
{
    gw_admin_stop(t_gw.admin);
    gw_ledger_free(t_gw.ledger);
    uv_close((uv_handle_t *)h, NULL);
}

static void *t_gw_main(void *arg)
{
    (void)arg;
    if (uv_loop_init(&t_gw.loop) != 0 ||
        gw_ledger_new(&t_gw.loop, &t_gw.cfg, &t_gw.ring, &t_gw.ledger) != CG_ERR_OK ||
        gw_admin_start(&t_gw.loop, &t_gw.cfg, &t_gw.ring, t_gw.ledger, &t_gw.admin) != CG_ERR_OK ||
        uv_async_init(&t_gw.loop, &t_gw.stop, t_stop_cb) != 0) {
        atomic_store(&t_gw.ready, -1);
        return NULL;
    }
    atomic_store(&t_gw.ready, 1);
    uv_run(&t_gw.loop, UV_RUN_DEFAULT);
    uv_loop_close(&t_gw.loop);
    return NULL;
}

static int t_free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &alen) == 0) {
        port = ntohs(a.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

static int t_gw_start(void)
{
    cg_config_defaults(&t_gw.cfg);
    t_gw.cfg.shard_n = 1;
    strcpy(t_gw.cfg.shards[0].name, "s0");
    snprintf(t_gw.cfg.shards[0].req_url, sizeof(t_gw.cfg.shards[0].req_url), "tcp://127.0.0.1:%d",
             t_led.port);
    strcpy(t_gw.cfg.shards[0].pub_url, "tcp://127.0.0.1:1");
    strcpy(t_gw.cfg.admin_token, T_TOKEN);
    strcpy(t_gw.cfg.key_pepper, T_PEPPER);
    t_gw.cfg.ledger_timeout_ms = 400;
    t_gw.port = t_free_port();
    snprintf(t_gw.cfg.admin_listen, sizeof(t_gw.cfg.admin_listen), "127.0.0.1:%d", t_gw.port);
    if (cg_config_ring(&t_gw.cfg, &t_gw.ring) != CG_ERR_OK ||
        pthread_create(&t_gw.thr, NULL, t_gw_main, NULL) != 0) {
        return -1;
    }
    while (atomic_load(&t_gw.ready) == 0) {
        usleep(1000);
    }
    return atomic_load(&t_gw.ready) == 1 ? 0 : -1;
}

/* ---- a blocking HTTP client ---- */

typedef struct t_resp {
    int status;
    cJSON *json; /* parsed body, NULL if not JSON */
    char raw[T_RESP_MAX];
} t_resp;

static int t_io(int fd, const char *req, size_t len, char *buf, size_t cap)
{
    size_t got = 0;
    struct timeval tv = {.tv_sec = 5};

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (write(fd, req, len) != (ssize_t)len) {
        return -1;
    }
    for (;;) {
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
        buf[got] = '\0';
        const char *end = strstr(buf, "\r\n\r\n");
        const char *cl = strcasestr(buf, "\r\nContent-Length:");
        if (end != NULL && cl != NULL && cl < end &&
            got >= (size_t)(end + 4 - buf) + (size_t)strtoul(cl + 17, NULL, 10)) {
            break;
        }
    }
    buf[got] = '\0';
    return (int)got;
}

/* Send one request (auth NULL: no Authorization header) and parse the answer. */
static void t_http(t_resp *r, const char *method, const char *path, const char *auth,
                   const char *body)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)t_gw.port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char req[8192], hdr[256] = "";
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    size_t blen = body ? strlen(body) : 0;

    memset(r, 0, offsetof(t_resp, raw));
    r->raw[0] = '\0';
    if (auth != NULL) {
        snprintf(hdr, sizeof(hdr), "Authorization: %s\r\n", auth);
    }
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     method, path, hdr, blen, body ? body : "");
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        t_io(fd, req, (size_t)n, r->raw, sizeof(r->raw)) <= 0) {
        if (fd >= 0) {
            close(fd);
        }
        return;
    }
    close(fd);
    if (strncmp(r->raw, "HTTP/1.1 ", 9) == 0) {
        r->status = (int)strtol(r->raw + 9, NULL, 10);
    }
    const char *b = strstr(r->raw, "\r\n\r\n");
    if (b != NULL) {
        r->json = cJSON_Parse(b + 4);
    }
}

static void t_done(t_resp *r)
{
    cJSON_Delete(r->json);
    r->json = NULL;
}

/* The value at a dotted path ("limits.0.max"; digits index arrays), or NULL. */
static const cJSON *t_get(const cJSON *o, const char *path)
{
    char buf[128];
    const cJSON *v = o;
    char *save = NULL;

    snprintf(buf, sizeof(buf), "%s", path);
    for (char *tok = strtok_r(buf, ".", &save); tok != NULL && v != NULL;
         tok = strtok_r(NULL, ".", &save)) {
        if (tok[0] >= '0' && tok[0] <= '9') {
            v = cJSON_GetArrayItem(v, (int)strtol(tok, NULL, 10));
        } else {
            v = cJSON_GetObjectItemCaseSensitive(v, tok);
        }
    }
    return v;
}

static const char *t_str(const cJSON *o, const char *path)
{
    const cJSON *v = t_get(o, path);
    return v != NULL && cJSON_IsString(v) ? v->valuestring : NULL;
}

static double t_num(const cJSON *o, const char *path)
{
    const cJSON *v = t_get(o, path);
    return v != NULL && cJSON_IsNumber(v) ? v->valuedouble : -1;
}

#define AUTH "Bearer " T_TOKEN

/* An error answer: status, error.code, and the message starting with msg_prefix (may be NULL). */
static int t_is_error(t_resp *r, int status, const char *code, const char *msg_prefix)
{
    const char *c = t_str(r->json, "error.code"), *m = t_str(r->json, "error.message");
    int ok = r->status == status && c != NULL && strcmp(c, code) == 0 &&
             (msg_prefix == NULL || (m != NULL && strncmp(m, msg_prefix, strlen(msg_prefix)) == 0));
    if (!ok) {
        fprintf(stderr, "  want %d %s, got: %s\n", status, code, r->raw);
    }
    t_done(r);
    return ok;
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
        {"{\"id\":\"x1\",\"emails\":[\"a@b.c\"]}", "emails: not supported yet"},
        {"{\"id\":\"x1\",\"customer_defaults\":{\"limits\":[]}}", "customer_defaults: "},
        {"{\"id\":\"x1\",\"billing_anchor_day\":29}", "billing_anchor_day: "},
        {"{\"id\":\"x1\",\"billing_anchor_day\":0}", "billing_anchor_day: "},
        {"{\"id\":\"x1\",\"webhooks\":[{\"url\":\"ftp://x\"}]}", "webhooks[0].url: "},
        {"{\"id\":\"x1\",\"webhooks\":[{\"url\":\"https://x\",\"secret\":\"abc\"}]}",
         "webhooks[0].secret: "},
        {"{\"id\":\"x1\",\"webhooks\":[{\"url\":\"https://x\",\"secret\":\"whsec_a$==\"}]}",
         "webhooks[0].secret: "},
        {"{\"id\":\"x1\",\"webhooks\":[{\"url\":\"https://x\",\"extra\":1}]}",
         "webhooks[0].extra: unknown field"},
        {"{\"id\":\"x1\",\"limits\":[{\"metric\":\"requests\",\"window\":\"1m\",\"max\":60}]}",
         "limits[0].window: sliding windows are not supported yet"},
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
    t_http(&r, "POST", "/admin/v1/orgs/acme/keys", AUTH, "{\"group\":\"team\"}");
    CG_CHECK(t_is_error(&r, 400, "invalid_request", "group: not supported yet"));
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
    t_http(&r, "DELETE", "/admin/v1/keys/k_1", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 405, "method_not_allowed", NULL));
    t_http(&r, "GET", "/admin/v1/orgs/acme/groups", AUTH, NULL);
    CG_CHECK(t_is_error(&r, 404, "not_found", NULL));
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

int main(void)
{
    int rc;

    if (t_led_start() != 0 || t_gw_start() != 0) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    rc = CG_TEST_RUN(admin_auth, admin_create_org, admin_org_validation, admin_create_and_get_key,
                     admin_routing, admin_ledger_unavailable);
    uv_async_send(&t_gw.stop);
    pthread_join(t_gw.thr, NULL);
    cg_ring_fini(&t_gw.ring);
    nng_close(t_led.sock);
    pthread_join(t_led.thr, NULL);
    return rc;
}
