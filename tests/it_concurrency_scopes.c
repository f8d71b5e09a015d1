/*
 * it_concurrency_scopes.c — integration: the no-overspend promise with every
 * scope at once, under concurrency, across shards and gateway replicas.
 *
 * Three shards, two gateway processes; 8 client threads send 25 requests each
 * (200 in all, alternating between the gateways, the demo holding each one
 * 20 ms so reservations overlap). One org, keys kA and kB in group "team",
 * kC and kD without a group, customers c1 (a per-customer override) and c2
 * (the org's customer_defaults). Caps, each binding for part of the traffic:
 *   key kA       requests/month 5      (traffic: kA, no customer)
 *   group team   requests/month 25     (kA + kB; kB has no cap of its own)
 *   customer c1  requests/month 6      (kC naming c1 by header; override)
 *   customer c2  requests/month 10     (kC naming c2 by body "user"; defaults)
 *   org          cost/month 0.01 USD   (kD's pricey requests fill it)
 * Small requests ("hi", max_tokens 8, demo-gpt-4o-mini) cost 150 + 8 x 600 =
 * 4,950 nano-USD; kD's (max_tokens 16, demo-pricey at 0.001 / 100 USD per 1M)
 * cost 1 + 16 x 100,000 = 1,600,001. At most 41 small requests can pass
 * (5 + 20 + 6 + 10) = 202,950, so the org admits exactly 6 of kD's: the 7th
 * would need 1.6 M of the <= 400 k left, and small requests always fit.
 * Every key also has a large cost/month limit, so its counter meters it.
 *
 * Afterwards: every answer is 200 or 402 budget_exceeded naming the scope
 * that binds for its traffic; no cap's used exceeds its max; every counter
 * equals what the 200s imply exactly and nothing stays reserved; the org's
 * cost counter and GET /admin/v1/usage totals equal the sum of the key
 * counters; the usage request count equals the number of 200s, which is also
 * what reached the upstream.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "fixture.h"

#define THREADS 8
#define PER_THREAD 25
#define SMALL_PER_THREAD 15 /* then kD's requests */
#define SMALL_NUSD 4950LL
#define PRICEY_NUSD 1600001LL
#define ORG_CAP_NUSD 10000000LL

static const fx_model models[] = {
    {"demo-gpt-4o-mini", "0.15", "0.60", 16384},
    {"demo-pricey", "0.001", "100", 1000},
};

enum { T_KA, T_KB, T_C1, T_C2, T_KD, T_N };
static const char *const traffic_name[T_N] = {"kA", "kB", "kC/c1", "kC/c2", "kD"};

static const char small_body[] =
    "{\"model\":\"demo-gpt-4o-mini\",\"max_tokens\":8,\"demo\":{\"delay_ms\":20},"
    "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
static const char c2_body[] =
    "{\"model\":\"demo-gpt-4o-mini\",\"max_tokens\":8,\"demo\":{\"delay_ms\":20},\"user\":\"c2\","
    "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
static const char pricey_body[] =
    "{\"model\":\"demo-pricey\",\"max_tokens\":16,\"demo\":{\"delay_ms\":20},"
    "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

typedef struct outcome {
    int traffic;
    long status;
    char code[48];
    char scope[16];
    char scope_id[64];
    char err[512];
} outcome;

static fx_cluster c;
static char keys[4][128]; /* kA kB kC kD */
static char key_ids[4][64];
static outcome outcomes[THREADS][PER_THREAD];
static pthread_barrier_t start;

static int traffic_of(int t, int i)
{
    return i < SMALL_PER_THREAD ? (i + t) % 4 : T_KD;
}

static void *client_main(void *arg)
{
    int t = *(const int *)arg;
    pthread_barrier_wait(&start);
    for (int i = 0; i < PER_THREAD; i++) {
        outcome *o = &outcomes[t][i];
        o->traffic = traffic_of(t, i);
        const char *key = keys[o->traffic == T_KA   ? 0
                               : o->traffic == T_KB ? 1
                               : o->traffic == T_KD ? 3
                                                    : 2];
        const char *body = o->traffic == T_KD   ? pricey_body
                           : o->traffic == T_C2 ? c2_body
                                                : small_body;
        const char *const h_c1[] = {"X-Capgate-Customer: c1", NULL};
        fx_resp r;
        o->status = fx_post(&c, (uint32_t)((t + i) % 2), &r, key, "/v1/chat/completions",
                            o->traffic == T_C1 ? h_c1 : NULL, body);
        snprintf(o->code, sizeof(o->code), "%s", fx_resp_error_code(&r));
        const cJSON *limit = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(r.json, "error"), "limit");
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(limit, "scope");
        const cJSON *sid = cJSON_GetObjectItemCaseSensitive(limit, "scope_id");
        snprintf(o->scope, sizeof(o->scope), "%s", cJSON_IsString(sc) ? sc->valuestring : "");
        snprintf(o->scope_id, sizeof(o->scope_id), "%s",
                 cJSON_IsString(sid) ? sid->valuestring : "");
        snprintf(o->err, sizeof(o->err), "%s %.200s", r.err, r.body);
        fx_resp_free(&r);
    }
    return NULL;
}

static void setup(void)
{
    fx_org_create(&c, "{\"id\":\"acme\",\"name\":\"Acme Inc.\",\"limits\":[{\"metric\":\"cost\","
                      "\"window\":\"month\",\"max\":\"0.01\"}],\"customer_defaults\":{\"limits\":"
                      "[{\"metric\":\"requests\",\"window\":\"month\",\"max\":10}]}}");
    fx_customer_put(&c, "acme", "c1",
                    "{\"limits\":[{\"metric\":\"requests\",\"window\":\"month\",\"max\":6}]}");
    fx_group_create(&c, "acme",
                    "{\"id\":\"team\",\"name\":\"Team\",\"limits\":[{\"metric\":\"requests\","
                    "\"window\":\"month\",\"max\":25}]}");
    static const char meter[] = "{\"metric\":\"cost\",\"window\":\"month\",\"max\":100}";
    fx_key_create(&c, "acme",
                  fx_fmt_("{\"name\":\"kA\",\"group\":\"team\",\"limits\":[{\"metric\":"
                          "\"requests\",\"window\":\"month\",\"max\":5},%s]}",
                          meter),
                  key_ids[0], keys[0]);
    fx_key_create(&c, "acme",
                  fx_fmt_("{\"name\":\"kB\",\"group\":\"team\",\"limits\":[%s]}", meter),
                  key_ids[1], keys[1]);
    fx_key_create(&c, "acme", fx_fmt_("{\"name\":\"kC\",\"limits\":[%s]}", meter), key_ids[2],
                  keys[2]);
    fx_key_create(&c, "acme", fx_fmt_("{\"name\":\"kD\",\"limits\":[%s]}", meter), key_ids[3],
                  keys[3]);
    fx_log("shards: org s%u, group s%u, c1 s%u, c2 s%u, keys s%u s%u s%u s%u",
           fx_shard_of(&c, "org:acme"), fx_shard_of(&c, "group:acme/team"),
           fx_shard_of(&c, "customer:acme/c1"), fx_shard_of(&c, "customer:acme/c2"),
           fx_shard_of(&c, "key:%s", key_ids[0]), fx_shard_of(&c, "key:%s", key_ids[1]),
           fx_shard_of(&c, "key:%s", key_ids[2]), fx_shard_of(&c, "key:%s", key_ids[3]));
}

/* The scope (and id) that must refuse each traffic once its cap is spent. */
static void binding_scope(int traffic, const char **scope, const char **id)
{
    static const char *const scopes[T_N] = {"key", "group", "customer", "customer", "org"};
    static const char *const ids[T_N] = {NULL, "team", "c1", "c2", "acme"};
    *scope = scopes[traffic];
    *id = traffic == T_KA ? key_ids[0] : ids[traffic];
}

/* Tally the answers; every refusal is a 402 naming the scope that binds. */
static void tally(int64_t n200[T_N], int64_t refused[T_N])
{
    for (int t = 0; t < THREADS; t++) {
        for (int i = 0; i < PER_THREAD; i++) {
            const outcome *o = &outcomes[t][i];
            if (o->status == 200) {
                n200[o->traffic]++;
                continue;
            }
            FX_CHECK(o->status == 402 && strcmp(o->code, "budget_exceeded") == 0,
                     "thread %d request %d (%s): %ld %s %s", t, i, traffic_name[o->traffic],
                     o->status, o->code, o->err);
            const char *scope, *id;
            binding_scope(o->traffic, &scope, &id);
            /* kA's requests can also meet a momentarily full group. */
            int ok = strcmp(o->scope, scope) == 0 && strcmp(o->scope_id, id) == 0;
            ok |= o->traffic == T_KA && strcmp(o->scope, "group") == 0;
            FX_CHECK(ok, "%s refused by %s %s, want %s %s: %s", traffic_name[o->traffic], o->scope,
                     o->scope_id, scope, id, o->err);
            refused[o->traffic] += strcmp(o->scope, scope) == 0;
        }
    }
}

/* A limit settled to `used` exactly, nothing reserved, within its max. */
static void check_limit(fx_scope s, const char *id, const char *metric, int64_t used, int64_t max)
{
    char path[256];
    fx_scope_path(path, s, "acme", id);
    fx_limit l = fx_scope_limit_settled(&c, path, metric, "month", used);
    FX_CHECK(l.used == used && l.reserved == 0 && l.max == max && l.used <= l.max,
             "%s %s: used %lld (want %lld) reserved %lld max %lld (want %lld)", path, metric,
             (long long)l.used, (long long)used, (long long)l.reserved, (long long)l.max,
             (long long)max);
}

/* Start every client at once (a barrier) and wait for all; returns the elapsed ms. */
static int64_t run_clients(void)
{
    static int idx[THREADS];
    pthread_t threads[THREADS];
    pthread_barrier_init(&start, NULL, THREADS);
    int64_t t0 = fx_now_ms();
    for (int t = 0; t < THREADS; t++) {
        idx[t] = t;
        FX_CHECK(pthread_create(&threads[t], NULL, client_main, &idx[t]) == 0, "pthread_create %d",
                 t);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
    }
    pthread_barrier_destroy(&start);
    return fx_now_ms() - t0;
}

/* Counters: exact, settled, within their caps; returns the sum of the key counters. */
static int64_t check_counters(const int64_t n200[T_N])
{
    int64_t small = n200[T_KA] + n200[T_KB] + n200[T_C1] + n200[T_C2];
    int64_t cost = small * SMALL_NUSD + n200[T_KD] * PRICEY_NUSD;
    check_limit(FX_SCOPE_KEY, key_ids[0], "requests", n200[T_KA], 5);
    check_limit(FX_SCOPE_GROUP, "team", "requests", n200[T_KA] + n200[T_KB], 25);
    check_limit(FX_SCOPE_CUSTOMER, "c1", "requests", n200[T_C1], 6);
    check_limit(FX_SCOPE_CUSTOMER, "c2", "requests", n200[T_C2], 10);
    check_limit(FX_SCOPE_ORG, NULL, "cost", cost, ORG_CAP_NUSD);
    const int64_t key_cost[4] = {n200[T_KA] * SMALL_NUSD, n200[T_KB] * SMALL_NUSD,
                                 (n200[T_C1] + n200[T_C2]) * SMALL_NUSD, n200[T_KD] * PRICEY_NUSD};
    int64_t key_sum = 0;
    for (int k = 0; k < 4; k++) {
        check_limit(FX_SCOPE_KEY, key_ids[k], "cost", key_cost[k], 100000000000LL);
        key_sum += key_cost[k];
    }
    FX_CHECK_EQ_INT(key_sum, cost);
    FX_CHECK(cost + PRICEY_NUSD > ORG_CAP_NUSD, "org cap not reached: %lld", (long long)cost);
    return key_sum;
}

/* Usage records agree with the counters and with the 200s. */
static void check_usage(const int64_t n200[T_N], int64_t total, int64_t key_sum)
{
    int64_t small = n200[T_KA] + n200[T_KB] + n200[T_C1] + n200[T_C2];
    fx_usage u = fx_usage_totals(&c, "org=acme");
    FX_CHECK_EQ_INT(u.cost, key_sum);
    FX_CHECK_EQ_INT(u.requests, total);
    FX_CHECK_EQ_INT(u.prompt_tokens, total);
    FX_CHECK_EQ_INT(u.completion_tokens, small * 8 + n200[T_KD] * 16);
    fx_usage ug = fx_usage_totals(&c, "org=acme&group=team");
    FX_CHECK_EQ_INT(ug.requests, n200[T_KA] + n200[T_KB]);
    fx_usage uc = fx_usage_totals(&c, "org=acme&customer=c1");
    FX_CHECK_EQ_INT(uc.requests, n200[T_C1]);
    FX_CHECK_EQ_INT(uc.cost, n200[T_C1] * SMALL_NUSD);
}

int main(void)
{
    fx_init("it_concurrency_scopes");
    fx_opts o = {.shard_n = 3, .gateway_n = 2, .workers = 2, .models = models, .model_n = 2};
    fx_cluster_start(&c, &o);
    setup();
    int64_t api0 = fx_demo_api_requests(&c);
    int64_t ms = run_clients();
    int64_t n200[T_N] = {0}, refused[T_N] = {0};
    tally(n200, refused);
    int64_t total = 0;
    for (int k = 0; k < T_N; k++) {
        total += n200[k];
        fx_log("%-6s %2lld x 200, %2lld refused by its own cap", traffic_name[k],
               (long long)n200[k], (long long)refused[k]);
    }
    fx_log("%d requests in %lld ms: %lld x 200", THREADS * PER_THREAD, (long long)ms,
           (long long)total);
    /* Each cap bound for some requests; the deterministic ones exactly at their max. */
    for (int k = 0; k < T_N; k++) {
        FX_CHECK(refused[k] >= 1, "the cap of %s never refused", traffic_name[k]);
    }
    FX_CHECK_EQ_INT(n200[T_C1], 6);
    FX_CHECK_EQ_INT(n200[T_C2], 10);
    FX_CHECK_EQ_INT(n200[T_KD], 6);
    FX_CHECK(n200[T_KA] <= 5 && n200[T_KA] + n200[T_KB] <= 25, "kA %lld, group %lld",
             (long long)n200[T_KA], (long long)(n200[T_KA] + n200[T_KB]));
    int64_t key_sum = check_counters(n200);
    check_usage(n200, total, key_sum);
    FX_CHECK_EQ_INT(fx_demo_api_requests(&c), api0 + total);
    fx_log("no cap exceeded; counters, usage totals and upstream count agree: %lld nano-USD",
           (long long)key_sum);
    return fx_done();
}
