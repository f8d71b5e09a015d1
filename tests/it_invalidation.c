/*
 * it_invalidation.c — integration (issue 5, part A): definition changes made
 * through replica 0's admin API are honoured by replica 1 on its next requests
 * even though replica 1 caches keys, orgs and groups for a minute
 * (key_cache_ms 60000): every committed PUT/DELETE makes its shard publish a
 * notice (topic "d") and every gateway worker drops the cached entry.
 *
 * The notice travels asynchronously (shard → replica 1) while the admin answer
 * travels to the test, so the first request may race it: each check polls for
 * at most NOTICE_WAIT_MS — 30 times less than the cache TTL, so passing proves
 * the notice, not the TTL, did it — and logs how long it took.
 */
#include <stdio.h>
#include <string.h>
#include "fixture.h"

#define CACHE_MS 60000
#define NOTICE_WAIT_MS 2000
#define WARM_REQUESTS 6 /* new connections each: both workers of replica 1 cache the key */

static const char body_ok[] = "{\"model\":\"demo-gpt-4o-mini\",\"max_tokens\":5,"
                              "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

static long chat(fx_cluster *c, uint32_t gw, const char *key, const char *const *hdrs,
                 char code[64])
{
    fx_resp r;
    long st = fx_post(c, gw, &r, key, "/v1/chat/completions", hdrs, body_ok);
    if (code != NULL) {
        snprintf(code, 64, "%s", fx_resp_error_code(&r));
    }
    fx_resp_free(&r);
    return st;
}

/* Warm replica 1's caches: WARM_REQUESTS successful requests. */
static void warm(fx_cluster *c, const char *key, const char *const *hdrs)
{
    for (int i = 0; i < WARM_REQUESTS; i++) {
        char code[64];
        long st = chat(c, 1, key, hdrs, code);
        FX_CHECK(st == 200, "warm-up request: %ld %s", st, code);
    }
}

/*
 * After a change: poll replica 1 until WARM_REQUESTS requests in a row answer `status` with
 * `code` (every worker honours it), within NOTICE_WAIT_MS.
 */
static void expect_on_replica1(fx_cluster *c, const char *what, const char *key,
                               const char *const *hdrs, long status, const char *code)
{
    int64_t t0 = fx_now_ms();
    int in_row = 0;
    char got[64] = "";
    long st = 0;
    while (in_row < WARM_REQUESTS) {
        st = chat(c, 1, key, hdrs, got);
        if (st == status && strcmp(got, code) == 0) {
            in_row++;
            continue;
        }
        in_row = 0;
        FX_CHECK(fx_now_ms() - t0 < NOTICE_WAIT_MS,
                 "%s: replica 1 still answers %ld %s after %d ms (want %ld %s)", what, st, got,
                 NOTICE_WAIT_MS, status, code);
    }
    fx_log("%s: honoured by replica 1 after %lld ms", what, (long long)(fx_now_ms() - t0));
}

int main(void)
{
    fx_cluster c;
    fx_opts o = {.shard_n = 2, .gateway_n = 2, .key_cache_ms = CACHE_MS};
    char id[64], key[128], id2[64], key2[128], id3[64], key3[128];

    fx_init("it_invalidation");
    fx_cluster_start(&c, &o);
    fx_org_create(&c, "{\"id\":\"acme\",\"name\":\"Acme\"}");
    fx_group_create(&c, "acme", "{\"id\":\"team\",\"name\":\"Team\"}");

    /* Key revoke. */
    fx_key_create(&c, "acme", "{\"name\":\"a\"}", id, key);
    warm(&c, key, NULL);
    fx_key_revoke(&c, id);
    expect_on_replica1(&c, "key revoke", key, NULL, 401, "invalid_api_key");

    /* Key PATCH (allowed_models). */
    fx_key_create(&c, "acme", "{\"name\":\"b\"}", id2, key2);
    warm(&c, key2, NULL);
    fx_key_patch(&c, id2, "{\"allowed_models\":[\"some-other-model\"]}");
    expect_on_replica1(&c, "key patch", key2, NULL, 403, "model_not_allowed");

    /* Group PATCH (allowed_models inherited by the key). */
    fx_key_create(&c, "acme", "{\"name\":\"c\",\"group\":\"team\"}", id3, key3);
    warm(&c, key3, NULL);
    fx_group_patch(&c, "acme", "team", "{\"allowed_models\":[\"some-other-model\"]}");
    expect_on_replica1(&c, "group patch", key3, NULL, 403, "model_not_allowed");

    /* Org PATCH: customer_defaults (cached with the org) now allow no requests. */
    const char *const cust[] = {"X-Capgate-Customer: cust-1", NULL};
    fx_key_patch(&c, id2, "{\"allowed_models\":null}");
    expect_on_replica1(&c, "key patch back", key2, NULL, 200, "");
    warm(&c, key2, cust);
    fx_org_patch(&c, "acme",
                 "{\"customer_defaults\":{\"limits\":[{\"metric\":\"cost\",\"window\":\"month\","
                 "\"max\":\"0.000001\"}]}}");
    expect_on_replica1(&c, "org customer_defaults", key2, cust, 402, "budget_exceeded");

    /* Rotation under a warm cache: the old secret works during the grace period only. */
    char id4[64], old4[128], path[128];
    fx_key_create(&c, "acme", "{\"name\":\"d\"}", id4, old4);
    warm(&c, old4, NULL);
    snprintf(path, sizeof(path), "/admin/v1/keys/%s/rotate", id4);
    cJSON *j = fx_admin_expect(&c, 200, "POST", path, "{\"grace_s\":60}");
    const cJSON *nk = cJSON_GetObjectItemCaseSensitive(j, "key");
    FX_CHECK(cJSON_IsString(nk), "no new key");
    char new4[128];
    snprintf(new4, sizeof(new4), "%s", nk->valuestring);
    cJSON_Delete(j);
    expect_on_replica1(&c, "rotated key, new secret", new4, NULL, 200, "");
    warm(&c, old4, NULL); /* grace: old secret too (and cached again) */
    fx_clock_advance(61);
    expect_on_replica1(&c, "rotated key, old secret after grace", old4, NULL, 401,
                       "invalid_api_key");
    expect_on_replica1(&c, "rotated key, new secret after grace", new4, NULL, 200, "");

    /* A key DELETE. */
    snprintf(path, sizeof(path), "/admin/v1/keys/%s", id4);
    cJSON_Delete(fx_admin_expect(&c, 200, "DELETE", path, NULL));
    expect_on_replica1(&c, "key delete", new4, NULL, 401, "invalid_api_key");
    return fx_done();
}
