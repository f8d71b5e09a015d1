/*
 * it_concurrency.c — integration: the no-overspend promise under concurrency.
 *
 * Two gateway processes and two ledger shards; 64 requests start at once from
 * 64 client threads (a barrier releases them together), alternating between
 * the two gateways, against one key whose cap admits at most 16 of them. The
 * demo upstream holds each request 100 ms so reservations overlap. Afterwards:
 * every answer is 200 or 402 budget_exceeded, used <= max, nothing stays
 * reserved, and used == (number of 200s) x (cost of one request) exactly.
 *
 * One request: "hi" (1 prompt token) with max_tokens 8 at 0.15 / 0.60 USD per
 * 1M tokens = 150 + 8 x 600 = 4,950 nano-USD. Cap: 16 x 4,950 = 79,200.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "fixture.h"

#define CLIENTS 64
#define COST_NUSD 4950LL
#define CAP_NUSD (16 * COST_NUSD)

static const char body[] =
    "{\"model\":\"demo-gpt-4o-mini\",\"max_tokens\":8,\"demo\":{\"delay_ms\":100},"
    "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

typedef struct client {
    pthread_t thread;
    fx_cluster *c;
    uint32_t gw;
    const char *key;
    pthread_barrier_t *start;
    long status;
    char code[64];
    char err[512];
} client;

static void *client_main(void *arg)
{
    client *cl = arg;
    pthread_barrier_wait(cl->start);
    fx_resp r;
    cl->status = fx_chat(cl->c, cl->gw, &r, cl->key, body);
    snprintf(cl->code, sizeof(cl->code), "%s", fx_resp_error_code(&r));
    snprintf(cl->err, sizeof(cl->err), "%s %.200s", r.err, r.body);
    fx_resp_free(&r);
    return NULL;
}

int main(void)
{
    fx_init("it_concurrency");
    fx_cluster c;
    fx_opts o = {.shard_n = 2, .gateway_n = 2, .workers = 2};
    fx_cluster_start(&c, &o);
    fx_org_create(&c, "{\"id\":\"acme\",\"name\":\"Acme Inc.\"}");
    char id[64], key[128], kb[256];
    snprintf(kb, sizeof(kb),
             "{\"name\":\"hot\",\"limits\":[{\"metric\":\"cost\",\"window\":\"month\","
             "\"max\":\"%lld.%09lld\"}]}",
             CAP_NUSD / 1000000000LL, CAP_NUSD % 1000000000LL);
    fx_key_create(&c, "acme", kb, id, key);

    static client clients[CLIENTS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, CLIENTS);
    int64_t t0 = fx_now_ms();
    for (int i = 0; i < CLIENTS; i++) {
        clients[i] = (client){.c = &c, .gw = (uint32_t)(i % 2), .key = key, .start = &start};
        FX_CHECK(pthread_create(&clients[i].thread, NULL, client_main, &clients[i]) == 0,
                 "pthread_create %d", i);
    }
    int n200 = 0, n402 = 0;
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(clients[i].thread, NULL);
    }
    pthread_barrier_destroy(&start);
    for (int i = 0; i < CLIENTS; i++) {
        client *cl = &clients[i];
        if (cl->status == 200) {
            n200++;
        } else {
            FX_CHECK(cl->status == 402 && strcmp(cl->code, "budget_exceeded") == 0,
                     "client %d via gateway-%u: %ld %s %s", i, cl->gw, cl->status, cl->code,
                     cl->err);
            n402++;
        }
    }
    fx_log("%d concurrent requests in %lld ms: %d x 200, %d x 402", CLIENTS,
           (long long)(fx_now_ms() - t0), n200, n402);
    FX_CHECK(n200 >= 1 && n402 >= 1, "cap should admit a fraction: %d x 200", n200);
    fx_limit l = fx_key_limit_settled(&c, id, 0, n200 * COST_NUSD);
    FX_CHECK_EQ_INT(l.max, CAP_NUSD);
    FX_CHECK(l.used <= l.max, "overspent: used %lld > max %lld", (long long)l.used,
             (long long)l.max);
    FX_CHECK_EQ_INT(l.reserved, 0);
    FX_CHECK_EQ_INT(l.used, n200 * COST_NUSD);
    return fx_done();
}
