/*
 * it_admin_keys.c — integration (issue 5, part A): key listing across shards,
 * key rotation with a grace period, pricing overrides, validation errors and
 * the admin access log, all through the real HTTP APIs of a 3-shard cluster
 * with two gateway replicas.
 *
 * Model demo-pricey costs 10 / 100 USD per 1M tokens, so a request "hi"
 * (1 prompt token) with max_tokens 5 (5 completion tokens) costs exactly
 * 10 + 500 = 510 micro-USD (510,000 nano-USD); after the override to 20 / 200
 * it costs 1,020,000 nano-USD.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fixture.h"

#define ACME_KEYS 9
#define PAGE 3
#define OLD_COST_NUSD 510000LL
#define NEW_COST_NUSD 1020000LL
#define PRICE_WAIT_MS 3000 /* the override reaches every worker by a notice: well below this */

static const fx_model models[] = {
    {"demo-pricey", "10", "100", 1000},
    {"demo-cheap", "0.1", "0.2", 1000},
};

static const char small_body[] = "{\"model\":\"demo-pricey\",\"max_tokens\":5,"
                                 "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

static const char *jstr(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A 400 invalid_request whose message starts with the field name. */
static void expect_400(fx_cluster *c, const char *method, const char *path, const char *body,
                       const char *field)
{
    fx_resp r;
    fx_admin(c, &r, method, path, body);
    FX_CHECK(r.status == 400, "%s %s %s: want 400, got %ld %s", method, path, body ? body : "",
             r.status, r.body);
    FX_CHECK_EQ_STR(fx_resp_error_code(&r), "invalid_request");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(r.json, "error"), "message");
    FX_CHECK(cJSON_IsString(msg) && strncmp(msg->valuestring, field, strlen(field)) == 0,
             "message should name %s: %s", field, r.body);
    fx_resp_free(&r);
}

static void expect_error(fx_cluster *c, long status, const char *code, const char *method,
                         const char *path, const char *body)
{
    fx_resp r;
    fx_admin(c, &r, method, path, body);
    FX_CHECK(r.status == status, "%s %s: want %ld, got %ld %s", method, path, status, r.status,
             r.body);
    FX_CHECK_EQ_STR(fx_resp_error_code(&r), code);
    fx_resp_free(&r);
}

static long chat_status(fx_cluster *c, uint32_t gw, const char *key, const char **code)
{
    static char last_code[64];
    fx_resp r;
    long st = fx_chat(c, gw, &r, key, small_body);
    snprintf(last_code, sizeof(last_code), "%s", fx_resp_error_code(&r));
    fx_resp_free(&r);
    if (code != NULL) {
        *code = last_code;
    }
    return st;
}

static int id_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- listing ---- */

static void test_list(fx_cluster *c)
{
    char ids[ACME_KEYS][64], key[128], other_id[64];
    char *sorted[ACME_KEYS];
    int shard_seen[FX_SHARDS_MAX] = {0}, shards = 0;

    for (int i = 0; i < ACME_KEYS; i++) {
        char body[64];
        snprintf(body, sizeof(body), "{\"name\":\"k%d\"}", i);
        fx_key_create(c, "acme", body, ids[i], key);
        sorted[i] = ids[i];
        uint32_t s = fx_shard_of(c, "key:%s", ids[i]);
        shards += shard_seen[s]++ == 0;
    }
    fx_key_create(c, "other", "{}", other_id, key);
    FX_CHECK(shards >= 2, "keys landed on %d shard(s); the list must gather several", shards);
    qsort(sorted, ACME_KEYS, sizeof(sorted[0]), id_cmp);

    /* Page through with limit 3: every acme key exactly once, ascending, nothing else. */
    char after[64] = "";
    int got = 0, pages = 0;
    for (;;) {
        char path[256];
        if (after[0] == '\0') {
            snprintf(path, sizeof(path), "/admin/v1/orgs/acme/keys?limit=%d", PAGE);
        } else {
            snprintf(path, sizeof(path), "/admin/v1/orgs/acme/keys?limit=%d&after=%s", PAGE, after);
        }
        cJSON *j = fx_admin_expect(c, 200, "GET", path, NULL);
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
        const cJSON *more = cJSON_GetObjectItemCaseSensitive(j, "has_more");
        FX_CHECK(cJSON_IsArray(data) && cJSON_IsBool(more), "bad page shape");
        FX_CHECK(cJSON_GetArraySize(data) <= PAGE, "page over the limit");
        const cJSON *k;
        cJSON_ArrayForEach(k, data)
        {
            FX_CHECK(got < ACME_KEYS, "more keys listed than created");
            FX_CHECK_EQ_STR(jstr(k, "id"), sorted[got]);
            FX_CHECK_EQ_STR(jstr(k, "org"), "acme");
            FX_CHECK(cJSON_GetObjectItemCaseSensitive(k, "key") == NULL &&
                         cJSON_GetObjectItemCaseSensitive(k, "hash") == NULL,
                     "a listing must never show a secret or hash");
            FX_CHECK(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(k, "limits")), "no limits");
            got++;
        }
        pages++;
        FX_CHECK(pages <= ACME_KEYS + 1, "paging does not end");
        if (!cJSON_IsTrue(more)) {
            FX_CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "next_after")),
                     "next_after must be null on the last page");
            cJSON_Delete(j);
            break;
        }
        const char *na = jstr(j, "next_after");
        FX_CHECK(na != NULL, "has_more without next_after");
        snprintf(after, sizeof(after), "%s", na);
        cJSON_Delete(j);
    }
    FX_CHECK_EQ_INT(got, ACME_KEYS);
    fx_log("listed %d keys on %d shards in %d pages", got, shards, pages);

    /* One page with the default limit holds them all. */
    cJSON *j = fx_admin_expect(c, 200, "GET", "/admin/v1/orgs/acme/keys", NULL);
    FX_CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "data")), ACME_KEYS);
    FX_CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(j, "has_more")), "has_more");
    cJSON_Delete(j);

    expect_400(c, "GET", "/admin/v1/orgs/acme/keys?limit=0", NULL, "limit");
    expect_400(c, "GET", "/admin/v1/orgs/acme/keys?limit=1001", NULL, "limit");
    expect_400(c, "GET", "/admin/v1/orgs/acme/keys?limit=x", NULL, "limit");
    expect_400(c, "GET", "/admin/v1/orgs/acme/keys?after=BAD%20ID", NULL, "after");
    expect_400(c, "GET", "/admin/v1/orgs/acme/keys?color=red", NULL, "color");
    expect_error(c, 404, "org_not_found", "GET", "/admin/v1/orgs/nobody/keys", NULL);
}

/* ---- rotation ---- */

static void test_rotate(fx_cluster *c)
{
    char id[64], old_key[128], new_key[128], path[256];
    const char *code;

    fx_key_create(c, "acme", "{\"name\":\"rot\"}", id, old_key);
    FX_CHECK_EQ_INT(chat_status(c, 1, old_key, NULL), 200);
    snprintf(path, sizeof(path), "/admin/v1/keys/%s/rotate", id);
    expect_400(c, "POST", path, "{\"grace_s\":-1}", "grace_s");
    expect_400(c, "POST", path, "{\"grace_s\":2592001}", "grace_s");
    expect_400(c, "POST", path, "{\"grace_s\":\"1h\"}", "grace_s");
    expect_400(c, "POST", path, "{\"grace\":10}", "grace");
    expect_error(c, 404, "key_not_found", "POST", "/admin/v1/keys/k_0000000000000000/rotate", NULL);

    cJSON *j = fx_admin_expect(c, 200, "POST", path, "{\"grace_s\":3600}");
    FX_CHECK_EQ_STR(jstr(j, "id"), id);
    FX_CHECK(jstr(j, "key") != NULL, "no new key");
    snprintf(new_key, sizeof(new_key), "%s", jstr(j, "key"));
    FX_CHECK(strcmp(new_key, old_key) != 0, "rotation must change the secret");
    FX_CHECK(strstr(new_key, id) != NULL, "the key id is part of the new key");
    char pe[40];
    FX_CHECK(jstr(j, "previous_expires_at") != NULL, "no previous_expires_at");
    snprintf(pe, sizeof(pe), "%s", jstr(j, "previous_expires_at"));
    int64_t exp_s = fx_time_parse(pe);
    FX_CHECK(exp_s >= fx_clock_now_s() + 3590 && exp_s <= fx_clock_now_s() + 3601,
             "previous_expires_at %s is not now + 3600 s", pe);
    cJSON_Delete(j);

    snprintf(path, sizeof(path), "/admin/v1/keys/%s", id);
    j = fx_admin_expect(c, 200, "GET", path, NULL);
    FX_CHECK(jstr(j, "rotated_at") != NULL, "GET shows rotated_at");
    FX_CHECK_EQ_STR(jstr(j, "previous_expires_at"), pe);
    cJSON_Delete(j);

    /* During the grace period both secrets work, on both replicas. */
    for (uint32_t gw = 0; gw < 2; gw++) {
        FX_CHECK_EQ_INT(chat_status(c, gw, old_key, NULL), 200);
        FX_CHECK_EQ_INT(chat_status(c, gw, new_key, NULL), 200);
    }
    /* After it the old one is refused, the new one still works. */
    fx_clock_advance(3601);
    for (uint32_t gw = 0; gw < 2; gw++) {
        FX_CHECK_EQ_INT(chat_status(c, gw, old_key, &code), 401);
        FX_CHECK_EQ_STR(code, "invalid_api_key");
        FX_CHECK_EQ_INT(chat_status(c, gw, new_key, NULL), 200);
    }

    /* Rotating again replaces the previous secret: only the latest two ever work. */
    snprintf(path, sizeof(path), "/admin/v1/keys/%s/rotate", id);
    j = fx_admin_expect(c, 200, "POST", path, NULL); /* default grace: key_rotate_grace_s */
    char third[128];
    snprintf(third, sizeof(third), "%s", jstr(j, "key"));
    exp_s = fx_time_parse(jstr(j, "previous_expires_at"));
    FX_CHECK(exp_s >= fx_clock_now_s() + 86390 && exp_s <= fx_clock_now_s() + 86401,
             "default grace is key_rotate_grace_s (86400)");
    cJSON_Delete(j);
    FX_CHECK_EQ_INT(chat_status(c, 1, third, NULL), 200);
    FX_CHECK_EQ_INT(chat_status(c, 1, new_key, NULL), 200);
    FX_CHECK_EQ_INT(chat_status(c, 1, old_key, NULL), 401);
    /* grace_s 0: the previous secret stops at once. */
    j = fx_admin_expect(c, 200, "POST", path, "{\"grace_s\":0}");
    char fourth[128];
    snprintf(fourth, sizeof(fourth), "%s", jstr(j, "key"));
    FX_CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "previous_expires_at")),
             "grace 0 leaves no previous secret");
    cJSON_Delete(j);
    FX_CHECK_EQ_INT(chat_status(c, 1, third, NULL), 401);
    FX_CHECK_EQ_INT(chat_status(c, 1, fourth, NULL), 200);

    /* Revoked: the current secret fails, and a revoked key cannot be rotated. */
    fx_key_revoke(c, id);
    FX_CHECK_EQ_INT(chat_status(c, 1, fourth, &code), 401);
    FX_CHECK_EQ_STR(code, "invalid_api_key");
    expect_error(c, 409, "key_revoked", "POST", path, NULL);
}

/* ---- pricing ---- */

static int64_t key_cost(fx_cluster *c, const char *id)
{
    char q[128];
    snprintf(q, sizeof(q), "org=acme&key=%s", id);
    return fx_usage_totals(c, q).cost;
}

/* Cost of one request through gateway gw, from the usage records (settles land just after
 * the response: poll for the new record). */
static int64_t one_request_cost(fx_cluster *c, uint32_t gw, const char *id, const char *key)
{
    int64_t before = key_cost(c, id), after = before;
    int64_t n0 = 0;
    char q[128];
    snprintf(q, sizeof(q), "org=acme&key=%s", id);
    n0 = fx_usage_totals(c, q).requests;
    FX_CHECK_EQ_INT(chat_status(c, gw, key, NULL), 200);
    int64_t deadline = fx_now_ms() + FX_SETTLE_TIMEOUT_MS;
    while (fx_usage_totals(c, q).requests == n0 && fx_now_ms() < deadline) {
        fx_sleep_ms(20);
    }
    after = key_cost(c, id);
    return after - before;
}

static void test_pricing(fx_cluster *c)
{
    char id[64], key[128];

    cJSON *j = fx_admin_expect(c, 200, "GET", "/admin/v1/pricing", NULL);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
    FX_CHECK_EQ_INT(cJSON_GetArraySize(data), 2);
    /* Sorted by model. */
    FX_CHECK_EQ_STR(jstr(cJSON_GetArrayItem(data, 0), "model"), "demo-cheap");
    const cJSON *p = cJSON_GetArrayItem(data, 1);
    FX_CHECK_EQ_STR(jstr(p, "model"), "demo-pricey");
    FX_CHECK_EQ_STR(jstr(p, "provider"), "demo");
    FX_CHECK_EQ_INT(fx_usd(jstr(p, "input_per_mtok")), fx_usd("10"));
    FX_CHECK_EQ_INT(fx_usd(jstr(p, "output_per_mtok")), fx_usd("100"));
    FX_CHECK_EQ_STR(jstr(p, "source"), "config");
    cJSON_Delete(j);

    fx_key_create(c, "acme", "{\"name\":\"pricing\"}", id, key);
    FX_CHECK_EQ_INT(one_request_cost(c, 1, id, key), OLD_COST_NUSD);

    expect_error(c, 404, "model_not_found", "PUT", "/admin/v1/pricing/no-such-model",
                 "{\"input_per_mtok\":1,\"output_per_mtok\":1}");
    expect_400(c, "PUT", "/admin/v1/pricing/demo-pricey",
               "{\"input_per_mtok\":-1,"
               "\"output_per_mtok\":1}",
               "input_per_mtok");
    expect_400(c, "PUT", "/admin/v1/pricing/demo-pricey",
               "{\"input_per_mtok\":\"abc\","
               "\"output_per_mtok\":1}",
               "input_per_mtok");
    expect_400(c, "PUT", "/admin/v1/pricing/demo-pricey", "{\"input_per_mtok\":1}",
               "output_per_mtok");
    expect_400(c, "PUT", "/admin/v1/pricing/demo-pricey",
               "{\"input_per_mtok\":1,\"output_per_mtok\":1,\"cached\":1}", "cached");
    expect_400(c, "PUT", "/admin/v1/pricing/demo-pricey", "[1]", "");

    /* The override, through replica 0's admin API. */
    j = fx_admin_expect(c, 200, "PUT", "/admin/v1/pricing/demo-pricey",
                        "{\"input_per_mtok\":\"20\",\"output_per_mtok\":200}");
    FX_CHECK_EQ_STR(jstr(j, "source"), "admin");
    FX_CHECK_EQ_INT(fx_usd(jstr(j, "input_per_mtok")), fx_usd("20"));
    FX_CHECK_EQ_INT(fx_usd(jstr(j, "output_per_mtok")), fx_usd("200"));
    cJSON_Delete(j);
    j = fx_admin_expect(c, 200, "GET", "/admin/v1/pricing", NULL);
    p = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "data"), 1);
    FX_CHECK_EQ_STR(jstr(p, "source"), "admin");
    FX_CHECK_EQ_INT(fx_usd(jstr(p, "output_per_mtok")), fx_usd("200"));
    cJSON_Delete(j);

    /* Both replicas charge the new price: the notice reaches every worker within moments
     * (a request may race it), so poll until 6 requests in a row (new connections, spread
     * over both workers of both replicas) pay it, never any third price. */
    int64_t t0 = fx_now_ms(), cost = 0;
    for (int in_row = 0, i = 0; in_row < 6; i++) {
        cost = one_request_cost(c, (uint32_t)(1 - i % 2), id, key);
        FX_CHECK(cost == NEW_COST_NUSD || cost == OLD_COST_NUSD, "unexpected cost %lld",
                 (long long)cost);
        in_row = cost == NEW_COST_NUSD ? in_row + 1 : 0;
        FX_CHECK(fx_now_ms() - t0 < PRICE_WAIT_MS, "override not applied within %d ms",
                 PRICE_WAIT_MS);
    }
    fx_log("override applied on every worker within %lld ms", (long long)(fx_now_ms() - t0));

    /* It survives a gateway restart (loaded from the shards at start). */
    fx_proc_stop_clean(&c->gateways[1]);
    fx_proc_start(c, &c->gateways[1]);
    t0 = fx_now_ms();
    while ((cost = one_request_cost(c, 1, id, key)) != NEW_COST_NUSD) {
        FX_CHECK_EQ_INT(cost, OLD_COST_NUSD);
        FX_CHECK(fx_now_ms() - t0 < PRICE_WAIT_MS, "override not loaded after a restart");
    }
}

/* ---- access log ---- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    FX_CHECK(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    FX_CHECK(b != NULL && fread(b, 1, (size_t)n, f) == (size_t)n, "cannot read %s", path);
    b[n] = '\0';
    fclose(f);
    return b;
}

static void test_access_log(fx_cluster *c, const char *secret_key)
{
    fx_resp r;
    /* A request with a wrong token is logged too (401), and its token is not. */
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/admin/v1/pricing", c->admin_port[0]);
    const char *hdr[] = {"Authorization: Bearer wrong-token-XYZZY", NULL};
    fx_http(&r, "GET", url, hdr, NULL, 0);
    FX_CHECK_EQ_INT(r.status, 401);
    fx_resp_free(&r);
    fx_admin(c, &r, "GET", "/admin/v1/orgs/acme/keys?limit=2", NULL);
    FX_CHECK_EQ_INT(r.status, 200);
    fx_resp_free(&r);

    char *log = slurp(c->gateways[0].log_path);
    FX_CHECK(strstr(log, "\"msg\":\"admin\"") != NULL, "no admin access log line");
    FX_CHECK(strstr(log, "\"path\":\"/admin/v1/orgs/acme/keys\"") != NULL,
             "the access log names the path (without the query)");
    FX_CHECK(strstr(log, "limit=2") == NULL, "the query string is not logged");
    FX_CHECK(strstr(log, "\"status\":\"401\"") != NULL, "the refused request is logged");
    FX_CHECK(strstr(log, "\"peer\":\"127.0.0.1\"") != NULL, "the peer address is logged");
    FX_CHECK(strstr(log, "\"request_id\":\"adm_") != NULL, "a request id is logged");
    FX_CHECK(strstr(log, c->admin_token) == NULL, "the admin token must never be logged");
    FX_CHECK(strstr(log, "XYZZY") == NULL, "a presented token must never be logged");
    FX_CHECK(strstr(log, secret_key + 30) == NULL, "an API key secret must never be logged");
    free(log);
}

/* A shard down: the scatter-gathers answer 503, never a partial list. */
static void test_shard_down(fx_cluster *c)
{
    fx_proc_stop_clean(&c->ledgers[2]);
    expect_error(c, 503, "ledger_unavailable", "GET", "/admin/v1/orgs/acme/keys", NULL);
    expect_error(c, 503, "ledger_unavailable", "GET", "/admin/v1/pricing", NULL);
    fx_proc_start(c, &c->ledgers[2]);
    fx_wait_ready(c);
    cJSON_Delete(fx_admin_expect(c, 200, "GET", "/admin/v1/orgs/acme/keys", NULL));
}

int main(void)
{
    fx_cluster c;
    fx_opts o = {.shard_n = 3, .gateway_n = 2, .models = models, .model_n = 2};
    char id[64], key[128];

    fx_init("it_admin_keys");
    fx_cluster_start(&c, &o);
    fx_org_create(&c, "{\"id\":\"acme\",\"name\":\"Acme\"}");
    fx_org_create(&c, "{\"id\":\"other\",\"name\":\"Other\"}");

    test_list(&c);
    fx_log("list ok");
    fx_key_create(&c, "acme", "{\"name\":\"first\"}", id, key);
    test_rotate(&c);
    fx_log("rotate ok");
    test_pricing(&c);
    fx_log("pricing ok");
    test_access_log(&c, key);
    fx_log("access log ok");
    test_shard_down(&c);
    fx_log("shard down ok");
    return fx_done();
}
