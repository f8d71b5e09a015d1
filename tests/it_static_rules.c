/*
 * it_static_rules.c — integration: a key's static rules (SPEC §3), each
 * checked before any counter is touched and before the upstream is called.
 *
 *   - expiry (expires_at, expires_in_days) reached by moving the test clock:
 *     401 authentication_error / key_expired;
 *   - a revoked key: 401 invalid_api_key, like an unknown one;
 *   - ip_allow / ip_deny (deny wins): 403 permission_error / ip_not_allowed;
 *     X-Forwarded-For is believed only by gateway 1, whose trusted_proxies
 *     holds 127.0.0.1, and then its right-most untrusted address counts;
 *   - allowed_models (the key's, else its group's, else all):
 *     403 model_not_allowed, and GET /v1/models lists only allowed models;
 *   - max_tokens_per_request: 400 max_tokens_exceeds_limit above it, and a
 *     request naming no max_tokens goes upstream with min(cap, model max)
 *     filled in (the demo echoes what it received);
 *   - a key bound to a customer: naming another (header or body "user") is
 *     403 customer_not_allowed; naming none still counts as its customer;
 *   - the documented order of checks where two rules fail at once.
 * For every refusal, /demo/stats shows that the upstream received nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fixture.h"

static const fx_model models[] = {
    {"demo-gpt-4o-mini", "0.15", "0.60", 16384},
    {"demo-other", "0.15", "0.60", 2000},
};

static fx_cluster c;

#define BODY_SLOTS 8 /* chat_body results alive at once */

/* A chat body for model with an optional extra JSON member ("\"max_tokens\":8,").
 * The result stays valid for the next BODY_SLOTS - 1 calls. */
static const char *chat_body(const char *model, const char *extra)
{
    static char slots[BODY_SLOTS][512];
    static unsigned next;
    char *b = slots[next++ % BODY_SLOTS];
    snprintf(b, sizeof(slots[0]),
             "{\"model\":\"%s\",%s\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", model,
             extra != NULL ? extra : "");
    return b;
}

/*
 * POST path on gateway gw; the answer must be want (and, for errors, type
 * and code). A refusal must not reach the upstream. Returns the response for
 * more checks (caller frees).
 */
static fx_resp expect(uint32_t gw, const char *key, const char *const *headers, const char *path,
                      const char *body, long want, const char *type, const char *code)
{
    int64_t api0 = fx_demo_api_requests(&c);
    fx_resp r;
    long st = fx_post(&c, gw, &r, key, path, headers, body);
    FX_CHECK(st == want, "%s %.200s: want %ld, got %ld %s", path, body, want, st, r.body);
    if (want != 200) {
        FX_CHECK_EQ_STR(fx_resp_error_type(&r), type);
        FX_CHECK_EQ_STR(fx_resp_error_code(&r), code);
        FX_CHECK_EQ_INT(fx_demo_api_requests(&c), api0);
    } else {
        FX_CHECK_EQ_INT(fx_demo_api_requests(&c), api0 + 1);
    }
    return r;
}

/* A chat request that must get want/type/code (200: just passes). */
static void chat(uint32_t gw, const char *key, const char *const *headers, const char *body,
                 long want, const char *type, const char *code)
{
    fx_resp r = expect(gw, key, headers, "/v1/chat/completions", body, want, type, code);
    fx_resp_free(&r);
}

static void new_key(const char *body, char id[64], char key[128])
{
    fx_key_create(&c, "acme", body, id, key);
}

/* ---- expiry and revocation ---- */

static void expiry(void)
{
    char id1[64], k1[128], id2[64], k2[128], body[256], at[32];
    fx_time_format(fx_clock_now_s() + 86400, at);
    snprintf(body, sizeof(body), "{\"name\":\"expires-tomorrow\",\"expires_at\":\"%s\"}", at);
    new_key(body, id1, k1);
    new_key("{\"name\":\"expires-in-2-days\",\"expires_in_days\":2}", id2, k2);
    chat(0, k1, NULL, chat_body("demo-gpt-4o-mini", "\"max_tokens\":4,"), 200, NULL, NULL);
    chat(0, k2, NULL, chat_body("demo-gpt-4o-mini", "\"max_tokens\":4,"), 200, NULL, NULL);
    fx_clock_advance(86400 + 60);
    chat(0, k1, NULL, chat_body("demo-gpt-4o-mini", "\"max_tokens\":4,"), 401,
         "authentication_error", "key_expired");
    chat(0, k2, NULL, chat_body("demo-gpt-4o-mini", "\"max_tokens\":4,"), 200, NULL, NULL);
    fx_clock_advance(86400);
    chat(0, k2, NULL, chat_body("demo-gpt-4o-mini", "\"max_tokens\":4,"), 401,
         "authentication_error", "key_expired");
    /* An expired key is refused before its other rules are looked at. */
    fx_key_patch(&c, id1, "{\"ip_deny\":[\"127.0.0.0/8\"]}");
    chat(0, k1, NULL, chat_body("demo-gpt-4o-mini", "\"max_tokens\":4,"), 401,
         "authentication_error", "key_expired");
    fx_log("expiry: expires_at and expires_in_days end in 401 key_expired on time");
}

static void revocation(void)
{
    char id[64], key[128];
    new_key("{\"name\":\"to-revoke\"}", id, key);
    chat(0, key, NULL, chat_body("demo-gpt-4o-mini", "\"max_tokens\":4,"), 200, NULL, NULL);
    fx_key_revoke(&c, id);
    chat(0, key, NULL, chat_body("demo-gpt-4o-mini", "\"max_tokens\":4,"), 401,
         "authentication_error", "invalid_api_key");
    chat(1, key, NULL, chat_body("demo-gpt-4o-mini", "\"max_tokens\":4,"), 401,
         "authentication_error", "invalid_api_key");
    char path[256];
    fx_scope_path(path, FX_SCOPE_KEY, "acme", id);
    cJSON *j = fx_admin_expect(&c, 200, "GET", path, NULL);
    FX_CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "revoked")), "revoked not shown");
    cJSON_Delete(j);
    fx_log("revocation: 401 invalid_api_key on both gateways at once");
}

/* ---- client address ---- */

static void ip_rules(void)
{
    static const char *const b = "{\"model\":\"demo-gpt-4o-mini\",\"max_tokens\":4,"
                                 "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    char id[64], k_allow10[128], k_deny[128], k_allow_lo[128], k_both[128], k_v6[128], k_xff[128];
    new_key("{\"name\":\"allow-10\",\"ip_allow\":[\"10.0.0.0/8\"]}", id, k_allow10);
    new_key("{\"name\":\"deny-lo\",\"ip_deny\":[\"127.0.0.0/8\"]}", id, k_deny);
    new_key("{\"name\":\"allow-lo\",\"ip_allow\":[\"127.0.0.1/32\"]}", id, k_allow_lo);
    new_key(
        "{\"name\":\"deny-wins\",\"ip_allow\":[\"127.0.0.0/8\"],\"ip_deny\":[\"127.0.0.1/32\"]}",
        id, k_both);
    new_key("{\"name\":\"v6\",\"ip_allow\":[\"::1/128\",\"2001:db8::/32\",\"127.0.0.0/8\"]}", id,
            k_v6);
    new_key("{\"name\":\"xff\",\"ip_allow\":[\"203.0.113.0/24\"]}", id, k_xff);
    chat(0, k_allow10, NULL, b, 403, "permission_error", "ip_not_allowed");
    chat(0, k_deny, NULL, b, 403, "permission_error", "ip_not_allowed");
    chat(0, k_allow_lo, NULL, b, 200, NULL, NULL);
    chat(0, k_both, NULL, b, 403, "permission_error", "ip_not_allowed");
    chat(0, k_v6, NULL, b, 200, NULL, NULL);

    const char *const xff_ok[] = {"X-Forwarded-For: 203.0.113.7", NULL};
    const char *const xff_chain[] = {"X-Forwarded-For: 198.51.100.9, 203.0.113.7, 127.0.0.1", NULL};
    const char *const xff_other[] = {"X-Forwarded-For: 198.51.100.9", NULL};
    const char *const xff_spoof[] = {"X-Forwarded-For: 203.0.113.7, 198.51.100.9", NULL};
    /* Gateway 0 trusts no proxy: the header is ignored, the peer 127.0.0.1 counts. */
    chat(0, k_xff, xff_ok, b, 403, "permission_error", "ip_not_allowed");
    chat(0, k_deny, xff_ok, b, 403, "permission_error", "ip_not_allowed");
    /* Gateway 1 trusts 127.0.0.1: the right-most address not a trusted proxy counts. */
    chat(1, k_xff, xff_ok, b, 200, NULL, NULL);
    chat(1, k_xff, xff_chain, b, 200, NULL, NULL);
    chat(1, k_xff, xff_other, b, 403, "permission_error", "ip_not_allowed");
    chat(1, k_xff, xff_spoof, b, 403, "permission_error", "ip_not_allowed");
    chat(1, k_xff, NULL, b, 403, "permission_error", "ip_not_allowed");
    chat(1, k_deny, xff_ok, b, 200, NULL, NULL);
    chat(1, k_deny, NULL, b, 403, "permission_error", "ip_not_allowed");
    fx_log("ip rules: allow, deny (deny wins), IPv6 lists, X-Forwarded-For only via a trusted "
           "proxy");
}

/* ---- models ---- */

/* GET /v1/models with key: exactly the listed ids, in any order. */
static void check_models(const char *key, const char *const *want, size_t n)
{
    fx_resp r;
    long st = fx_get(&c, 0, &r, key, "/v1/models");
    FX_CHECK(st == 200, "GET /v1/models: %ld %s", st, r.body);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(r.json, "data");
    FX_CHECK(cJSON_IsArray(data) && (size_t)cJSON_GetArraySize(data) == n, "want %zu models: %s", n,
             r.body);
    for (size_t i = 0; i < n; i++) {
        int found = 0;
        const cJSON *m;
        cJSON_ArrayForEach(m, data)
        {
            const cJSON *mid = cJSON_GetObjectItemCaseSensitive(m, "id");
            found |= cJSON_IsString(mid) && strcmp(mid->valuestring, want[i]) == 0;
        }
        FX_CHECK(found, "model %s not listed: %s", want[i], r.body);
    }
    fx_resp_free(&r);
}

static void model_rules(void)
{
    const char *mini = chat_body("demo-gpt-4o-mini", "\"max_tokens\":4,");
    const char *other = chat_body("demo-other", "\"max_tokens\":4,");
    const char *unknown = chat_body("no-such-model", "\"max_tokens\":4,");
    char id[64], k_own[128], k_group[128], k_both[128], k_all[128], id_group[64];
    fx_group_create(&c, "acme",
                    "{\"id\":\"team\",\"name\":\"Team\",\"allowed_models\":[\"demo-other\"]}");
    new_key("{\"name\":\"own-list\",\"allowed_models\":[\"demo-gpt-4o-mini\"]}", id, k_own);
    new_key("{\"name\":\"group-list\",\"group\":\"team\"}", id_group, k_group);
    new_key("{\"name\":\"own-beats-group\",\"group\":\"team\","
            "\"allowed_models\":[\"demo-gpt-4o-mini\"]}",
            id, k_both);
    new_key("{\"name\":\"all-models\"}", id, k_all);

    chat(0, k_own, NULL, mini, 200, NULL, NULL);
    chat(0, k_own, NULL, other, 403, "permission_error", "model_not_allowed");
    chat(0, k_own, NULL, unknown, 400, "invalid_request_error", "model_not_found");
    chat(0, k_group, NULL, other, 200, NULL, NULL);
    chat(0, k_group, NULL, mini, 403, "permission_error", "model_not_allowed");
    chat(0, k_both, NULL, mini, 200, NULL, NULL);
    chat(0, k_both, NULL, other, 403, "permission_error", "model_not_allowed");
    chat(0, k_all, NULL, other, 200, NULL, NULL);
    chat(0, k_all, NULL, mini, 200, NULL, NULL);
    /* The other endpoints pass the same gate. */
    fx_resp r =
        expect(0, k_own, NULL, "/v1/embeddings", "{\"model\":\"demo-other\",\"input\":\"hello\"}",
               403, "permission_error", "model_not_allowed");
    fx_resp_free(&r);

    const char *const only_mini[] = {"demo-gpt-4o-mini"};
    const char *const only_other[] = {"demo-other"};
    const char *const both[] = {"demo-gpt-4o-mini", "demo-other"};
    check_models(k_own, only_mini, 1);
    check_models(k_group, only_other, 1);
    check_models(k_both, only_mini, 1);
    check_models(k_all, both, 2);

    /* The group's list changes: the next request sees it. */
    fx_group_patch(&c, "acme", "team", "{\"allowed_models\":[]}");
    chat(0, k_group, NULL, mini, 200, NULL, NULL);
    check_models(k_group, both, 2);
    /* The key's own list, set by PATCH. */
    fx_key_patch(&c, id_group, "{\"allowed_models\":[\"demo-other\"]}");
    chat(0, k_group, NULL, mini, 403, "permission_error", "model_not_allowed");
    fx_log("allowed_models: own list, group's list, none = all; /v1/models agrees");
}

/* ---- max tokens ---- */

/* The max tokens the demo received, from the answer body and from /demo/stats. */
static void check_seen(fx_resp *r, int64_t want)
{
    const cJSON *seen = cJSON_GetObjectItemCaseSensitive(r->json, "demo_seen_max_tokens");
    FX_CHECK(cJSON_IsNumber(seen) && (int64_t)seen->valuedouble == want,
             "upstream saw max tokens %s, want %lld: %.300s",
             seen == NULL         ? "(absent)"
             : cJSON_IsNull(seen) ? "null"
                                  : "other",
             (long long)want, r->body);
    FX_CHECK_EQ_INT(fx_demo_stats_get(&c).last_max_tokens, want);
    fx_resp_free(r);
}

static void max_tokens_rules(void)
{
    char id[64], k7[128], k5000[128];
    new_key("{\"name\":\"cap-7\",\"max_tokens_per_request\":7}", id, k7);
    new_key("{\"name\":\"cap-5000\",\"max_tokens_per_request\":5000}", id, k5000);
    const char *cc = "/v1/chat/completions";
    fx_resp r;
    r = expect(0, k7, NULL, cc, chat_body("demo-gpt-4o-mini", "\"max_tokens\":8,"), 400,
               "invalid_request_error", "max_tokens_exceeds_limit");
    fx_resp_free(&r);
    r = expect(0, k7, NULL, cc, chat_body("demo-gpt-4o-mini", "\"max_completion_tokens\":8,"), 400,
               "invalid_request_error", "max_tokens_exceeds_limit");
    fx_resp_free(&r);
    r = expect(0, k7, NULL, "/v1/responses",
               "{\"model\":\"demo-gpt-4o-mini\",\"input\":\"hi\",\"max_output_tokens\":8}", 400,
               "invalid_request_error", "max_tokens_exceeds_limit");
    fx_resp_free(&r);
    r = expect(0, k7, NULL, "/v1/completions",
               "{\"model\":\"demo-gpt-4o-mini\",\"prompt\":\"hi\",\"max_tokens\":8}", 400,
               "invalid_request_error", "max_tokens_exceeds_limit");
    fx_resp_free(&r);
    /* At the cap: passes as sent. */
    r = expect(0, k7, NULL, cc, chat_body("demo-gpt-4o-mini", "\"max_tokens\":7,"), 200, NULL,
               NULL);
    check_seen(&r, 7);
    /* Naming none: the cap is filled in (the model's max_output is larger). */
    r = expect(0, k7, NULL, cc, chat_body("demo-gpt-4o-mini", NULL), 200, NULL, NULL);
    check_seen(&r, 7);
    r = expect(0, k7, NULL, "/v1/responses", "{\"model\":\"demo-gpt-4o-mini\",\"input\":\"hi\"}",
               200, NULL, NULL);
    check_seen(&r, 7);
    r = expect(0, k7, NULL, "/v1/completions", "{\"model\":\"demo-gpt-4o-mini\",\"prompt\":\"hi\"}",
               200, NULL, NULL);
    check_seen(&r, 7);
    /* ... or the model's max_output when that is smaller: min(5000, 2000). */
    r = expect(0, k5000, NULL, cc, chat_body("demo-other", NULL), 200, NULL, NULL);
    check_seen(&r, 2000);
    fx_log("max_tokens_per_request: 400 above it, filled in when absent");
}

/* ---- customers ---- */

static void customer_rules(void)
{
    fx_org_create(&c, "{\"id\":\"shop\",\"name\":\"Shop\",\"customer_defaults\":{\"limits\":["
                      "{\"metric\":\"requests\",\"window\":\"month\",\"max\":100}]}}");
    char id[64], bound[128], free_key[128];
    fx_key_create(&c, "shop", "{\"name\":\"for-cust-1\",\"customer\":\"cust-1\"}", id, bound);
    fx_key_create(&c, "shop", "{\"name\":\"any-customer\"}", id, free_key);
    const char *const h_other[] = {"X-Capgate-Customer: cust-2", NULL};
    const char *const h_same[] = {"X-Capgate-Customer: cust-1", NULL};
    const char *const h_bad[] = {"X-Capgate-Customer: not a valid id!", NULL};
    const char *plain = chat_body("demo-gpt-4o-mini", "\"max_tokens\":4,");
    chat(0, bound, h_other, plain, 403, "permission_error", "customer_not_allowed");
    chat(0, bound, NULL, chat_body("demo-gpt-4o-mini", "\"max_tokens\":4,\"user\":\"cust-2\","),
         403, "permission_error", "customer_not_allowed");
    chat(0, bound, h_same, plain, 200, NULL, NULL);
    chat(0, bound, NULL, chat_body("demo-gpt-4o-mini", "\"max_tokens\":4,\"user\":\"cust-1\","),
         200, NULL, NULL);
    chat(0, bound, NULL, plain, 200, NULL, NULL);
    /* Naming none still counts as the bound customer: three requests. */
    char path[256];
    fx_scope_path(path, FX_SCOPE_CUSTOMER, "shop", "cust-1");
    fx_limit l = fx_scope_limit_settled(&c, path, "requests", "month", 3);
    FX_CHECK_EQ_INT(l.used, 3);
    fx_scope_path(path, FX_SCOPE_CUSTOMER, "shop", "cust-2");
    l = fx_scope_limit(&c, path, "requests", "month");
    FX_CHECK_EQ_INT(l.used, 0);
    /* A customer id that is not [A-Za-z0-9_.:@-]{1,64}: 400 before the upstream. */
    chat(0, free_key, h_bad, plain, 400, "invalid_request_error", "invalid_request");
    chat(0, free_key, NULL,
         chat_body("demo-gpt-4o-mini",
                   "\"max_tokens\":4,\"user\":\"x01234567890123456789012345678901234567890123"
                   "45678901234567890123456789\","),
         400, "invalid_request_error", "invalid_request");
    chat(0, free_key, h_other, plain, 200, NULL, NULL);
    fx_log("customer-bound key: other customers 403, its own (or none) counted as it");
}

/* ---- order of checks ---- */

static void check_order(void)
{
    char id[64], k1[128], k2[128], k3[128];
    fx_key_create(&c, "shop",
                  "{\"name\":\"o1\",\"ip_deny\":[\"127.0.0.0/8\"],"
                  "\"allowed_models\":[\"demo-other\"]}",
                  id, k1);
    fx_key_create(&c, "shop",
                  "{\"name\":\"o2\",\"allowed_models\":[\"demo-other\"],"
                  "\"max_tokens_per_request\":2,\"customer\":\"cust-1\"}",
                  id, k2);
    fx_key_create(&c, "shop",
                  "{\"name\":\"o3\",\"max_tokens_per_request\":2,\"customer\":\"cust-1\"}", id, k3);
    const char *const h_other[] = {"X-Capgate-Customer: cust-2", NULL};
    const char *big = chat_body("demo-gpt-4o-mini", "\"max_tokens\":8,");
    /* ip (2) before model (4); model (4) before customer (5) and max_tokens (6);
     * customer (5) before max_tokens (6). */
    chat(0, k1, NULL, big, 403, "permission_error", "ip_not_allowed");
    chat(0, k2, h_other, big, 403, "permission_error", "model_not_allowed");
    chat(0, k3, h_other, big, 403, "permission_error", "customer_not_allowed");
    chat(0, k3, NULL, big, 400, "invalid_request_error", "max_tokens_exceeds_limit");
    chat(0, k3, NULL, "{\"model\":", 400, "invalid_request_error", "invalid_json");
    fx_log("order of checks: ip, body, model, customer, max_tokens");
}

int main(void)
{
    fx_init("it_static_rules");
    fx_opts o = {.shard_n = 2, .gateway_n = 2, .models = models, .model_n = 2};
    fx_cluster_prepare(&c, &o);
    fx_proc_setenv(&c.gateways[1], "CAPGATE_TRUSTED_PROXIES", "127.0.0.1/32");
    fx_cluster_launch(&c);
    fx_org_create(&c, "{\"id\":\"acme\",\"name\":\"Acme Inc.\"}");
    revocation();
    ip_rules();
    model_rules();
    max_tokens_rules();
    customer_rules();
    check_order();
    expiry(); /* last: it moves the clock two days */
    return fx_done();
}
