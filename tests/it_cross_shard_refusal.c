/*
 * it_cross_shard_refusal.c — integration: a request whose scopes live on
 * different shards reserves on all of them in parallel; when one refuses,
 * the others' reservations are released before the client gets its answer
 * (SPEC §3, contracts "Gateway order of checks" 7).
 *
 * Three shards. The fixture computes the same ring as the processes, so the
 * test picks scopes that land on different shards (keys are created until one
 * lands away from its org). Cases:
 *   - the org's requests cap is spent: 402 naming scope org; at once (no
 *     waiting) the key's limits show reserved 0 and used unchanged;
 *   - the key's cap is spent: 402 naming the key; the org's reserved is 0;
 *   - the group's cap is spent: 402 naming the group; key and org reserved 0;
 *   - the org's sliding-window rate is spent: 429; the key's reserved is 0.
 * Each refusal is repeated, reading the other scopes right after every one,
 * and none reaches the upstream.
 */
#include <stdio.h>
#include <string.h>
#include "fixture.h"

#define REPEAT 5

static const char body[] = "{\"model\":\"demo-gpt-4o-mini\",\"max_tokens\":4,"
                           "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
#define COST_NUSD 2550LL /* "hi": 1 prompt token x 150 + 4 completion tokens x 600 */

static fx_cluster c;

/* Create keys in org (body) until one lands on a shard other than avoid[0..n). */
static uint32_t key_away(const char *org, const char *kbody, const uint32_t *avoid, size_t n,
                         char id[64], char key[128])
{
    for (int attempt = 0; attempt < 40; attempt++) {
        fx_key_create(&c, org, kbody, id, key);
        uint32_t s = fx_shard_of(&c, "key:%s", id);
        int clash = 0;
        for (size_t i = 0; i < n; i++) {
            clash |= s == avoid[i];
        }
        if (!clash) {
            return s;
        }
    }
    fx_fail(__FILE__, __LINE__, "no key landed away from its org in 40 attempts");
}

/* A limit the test watches on another scope while one scope refuses. */
typedef struct watch {
    char path[256];
    const char *metric;
    const char *window;
    int64_t used; /* expected, unchanged by refusals */
} watch;

static void check_watch(const watch *w, int settled)
{
    fx_limit l = settled ? fx_scope_limit_settled(&c, w->path, w->metric, w->window, w->used)
                         : fx_scope_limit(&c, w->path, w->metric, w->window);
    FX_CHECK(l.reserved == 0 && l.used == w->used,
             "%s %s/%s right after the refusal: reserved %lld (want 0), used %lld (want %lld)",
             w->path, w->metric, w->window, (long long)l.reserved, (long long)l.used,
             (long long)w->used);
}

/* REPEAT refusals naming scope/scope_id with status want; after each, every
 * watched limit is read at once: nothing reserved, nothing more used. */
static void refuse(const char *key, long want, const char *scope, const char *scope_id,
                   const watch *w, size_t wn)
{
    for (size_t i = 0; i < wn; i++) {
        check_watch(&w[i], 1); /* the admitted requests have settled */
    }
    int64_t api0 = fx_demo_api_requests(&c);
    for (int i = 0; i < REPEAT; i++) {
        fx_resp r;
        long st = fx_chat(&c, 0, &r, key, body);
        FX_CHECK(st == want, "refusal %d: want %ld, got %ld %s", i, want, st, r.body);
        const cJSON *limit = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(r.json, "error"), "limit");
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(limit, "scope");
        const cJSON *sid = cJSON_GetObjectItemCaseSensitive(limit, "scope_id");
        FX_CHECK(cJSON_IsString(sc) && strcmp(sc->valuestring, scope) == 0 && cJSON_IsString(sid) &&
                     strcmp(sid->valuestring, scope_id) == 0,
                 "refusal should name %s %s: %s", scope, scope_id, r.body);
        fx_resp_free(&r);
        for (size_t k = 0; k < wn; k++) {
            check_watch(&w[k], 0);
        }
    }
    FX_CHECK_EQ_INT(fx_demo_api_requests(&c), api0);
}

static void pass(const char *key, int n)
{
    for (int i = 0; i < n; i++) {
        fx_resp r;
        long st = fx_chat(&c, 0, &r, key, body);
        FX_CHECK(st == 200, "admitted request %d: %ld %s", i, st, r.body);
        fx_resp_free(&r);
    }
}

/* The org's requests cap refuses; the key (another shard) is released. */
static void org_refuses(void)
{
    fx_org_create(&c, "{\"id\":\"org-cap\",\"name\":\"Org cap\",\"limits\":[{\"metric\":"
                      "\"requests\",\"window\":\"lifetime\",\"max\":2}]}");
    uint32_t so = fx_shard_of(&c, "org:org-cap");
    char id[64], key[128];
    uint32_t sk = key_away("org-cap",
                           "{\"name\":\"k\",\"limits\":[{\"metric\":\"cost\",\"window\":\"month\","
                           "\"max\":1},{\"metric\":\"requests\",\"window\":\"day\",\"max\":100}]}",
                           &so, 1, id, key);
    pass(key, 2);
    watch w[2] = {{.metric = "cost", .window = "month", .used = 2 * COST_NUSD},
                  {.metric = "requests", .window = "day", .used = 2}};
    fx_scope_path(w[0].path, FX_SCOPE_KEY, "org-cap", id);
    fx_scope_path(w[1].path, FX_SCOPE_KEY, "org-cap", id);
    refuse(key, 402, "org", "org-cap", w, 2);
    fx_log("org on shard s%u refuses, key on s%u released at once", so, sk);
}

/* The key's cap refuses; the org (another shard) is released. */
static void key_refuses(void)
{
    fx_org_create(&c, "{\"id\":\"key-cap\",\"name\":\"Key cap\",\"limits\":[{\"metric\":"
                      "\"cost\",\"window\":\"month\",\"max\":1}]}");
    uint32_t so = fx_shard_of(&c, "org:key-cap");
    char id[64], key[128];
    uint32_t sk = key_away("key-cap",
                           "{\"name\":\"k\",\"limits\":[{\"metric\":\"requests\",\"window\":"
                           "\"month\",\"max\":1}]}",
                           &so, 1, id, key);
    pass(key, 1);
    watch w = {.metric = "cost", .window = "month", .used = COST_NUSD};
    fx_scope_path(w.path, FX_SCOPE_ORG, "key-cap", NULL);
    refuse(key, 402, "key", id, &w, 1);
    fx_log("key on shard s%u refuses, org on s%u released at once", sk, so);
}

/* The group's cap refuses; key and org are released. */
static void group_refuses(void)
{
    fx_org_create(&c, "{\"id\":\"grp-cap\",\"name\":\"Group cap\",\"limits\":[{\"metric\":"
                      "\"cost\",\"window\":\"month\",\"max\":1}]}");
    fx_group_create(&c, "grp-cap",
                    "{\"id\":\"team\",\"name\":\"Team\",\"limits\":[{\"metric\":\"requests\","
                    "\"window\":\"week\",\"max\":1}]}");
    uint32_t avoid[2] = {fx_shard_of(&c, "org:grp-cap"), fx_shard_of(&c, "group:grp-cap/team")};
    char id[64], key[128];
    uint32_t sk = key_away("grp-cap",
                           "{\"name\":\"k\",\"group\":\"team\",\"limits\":[{\"metric\":\"cost\","
                           "\"window\":\"month\",\"max\":1}]}",
                           avoid, avoid[0] == avoid[1] ? 1 : 2, id, key);
    pass(key, 1);
    watch w[2] = {{.metric = "cost", .window = "month", .used = COST_NUSD},
                  {.metric = "cost", .window = "month", .used = COST_NUSD}};
    fx_scope_path(w[0].path, FX_SCOPE_KEY, "grp-cap", id);
    fx_scope_path(w[1].path, FX_SCOPE_ORG, "grp-cap", NULL);
    refuse(key, 402, "group", "team", w, 2);
    fx_log("group on s%u refuses; key on s%u and org on s%u released at once", avoid[1], sk,
           avoid[0]);
}

/* A sliding-window refusal (429) on the org releases the key too. */
static void org_rate_refuses(void)
{
    fx_org_create(&c, "{\"id\":\"org-rate\",\"name\":\"Org rate\",\"limits\":[{\"metric\":"
                      "\"requests\",\"window\":\"1m\",\"max\":2}]}");
    uint32_t so = fx_shard_of(&c, "org:org-rate");
    char id[64], key[128];
    key_away("org-rate",
             "{\"name\":\"k\",\"limits\":[{\"metric\":\"tokens\",\"window\":\"day\",\"max\":"
             "100000}]}",
             &so, 1, id, key);
    pass(key, 2);
    watch w = {.metric = "tokens", .window = "day", .used = 10}; /* 2 x (1 + 4) tokens */
    fx_scope_path(w.path, FX_SCOPE_KEY, "org-rate", id);
    refuse(key, 429, "org", "org-rate", &w, 1);
    fx_log("org rate limit on s%u: 429, key released at once", so);
}

int main(void)
{
    fx_init("it_cross_shard_refusal");
    fx_opts o = {.shard_n = 3};
    fx_cluster_start(&c, &o);
    org_refuses();
    key_refuses();
    group_refuses();
    org_rate_refuses();
    return fx_done();
}
