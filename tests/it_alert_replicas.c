/*
 * it_alert_replicas.c — integration: two gateway replicas crossing the same
 * threshold at the same moment produce one event.
 *
 * Ten keys, each with a 0.01 USD monthly cap warning at 50%. For each key, two
 * threads — one per gateway replica — released together by a barrier send four
 * requests each (7 completion tokens x 100,000 nano-USD = 0.0007 USD per
 * request), so together they spend 0.0056 USD and cross 50% exactly once, in
 * whichever settle lands on the key's shard first. The receiver must see
 * exactly ten deliveries, ten distinct webhook-ids, one per key, all warnings.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include "fixture.h"

#define KEYS 10
#define PER_THREAD 4
#define DELIVERY_MS 15000
#define QUIET_MS 2000

static const fx_model models[] = {
    {"demo-flat", "0", "100", 1000},
};

static fx_cluster c;
static pthread_barrier_t barrier;
static atomic_int failed;

typedef struct job {
    uint32_t gw;
    const char *key;
} job;

static void *client(void *arg)
{
    const job *j = arg;
    static const char body[] = "{\"model\":\"demo-flat\",\"max_tokens\":7,"
                               "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    pthread_barrier_wait(&barrier);
    for (int i = 0; i < PER_THREAD; i++) {
        fx_resp r;
        if (fx_chat(&c, j->gw, &r, j->key, body) != 200) {
            atomic_fetch_add(&failed, 1);
        }
        fx_resp_free(&r);
    }
    return NULL;
}

int main(void)
{
    fx_init("it_alert_replicas");
    fx_hook *h = fx_hook_start(NULL, 0);
    fx_opts o = {.shard_n = 2, .gateway_n = 2, .models = models, .model_n = 1, .start_alerter = 1};
    fx_cluster_start(&c, &o);
    char body[512], ids[KEYS][64], keys[KEYS][128];
    snprintf(body, sizeof(body),
             "{\"id\":\"twin\",\"name\":\"Twin\",\"webhooks\":[{\"url\":"
             "\"http://127.0.0.1:%d/hook\"}]}",
             fx_hook_port(h));
    fx_org_create(&c, body);
    for (int k = 0; k < KEYS; k++) {
        fx_key_create(&c, "twin",
                      "{\"name\":\"k\",\"limits\":[{\"metric\":\"cost\",\"window\":\"month\","
                      "\"max\":\"0.01\",\"warn_at\":[0.5]}]}",
                      ids[k], keys[k]);
    }
    FX_CHECK(pthread_barrier_init(&barrier, NULL, 2) == 0, "barrier");
    for (int k = 0; k < KEYS; k++) {
        pthread_t t[2];
        job j[2] = {{0, keys[k]}, {1, keys[k]}};
        for (int i = 0; i < 2; i++) {
            FX_CHECK(pthread_create(&t[i], NULL, client, &j[i]) == 0, "pthread_create");
        }
        for (int i = 0; i < 2; i++) {
            pthread_join(t[i], NULL);
        }
    }
    pthread_barrier_destroy(&barrier);
    FX_CHECK_EQ_INT(atomic_load(&failed), 0);
    size_t got = fx_hook_wait(h, KEYS, DELIVERY_MS);
    FX_CHECK(got >= KEYS, "%zu of %d events", got, KEYS);
    fx_sleep_ms(QUIET_MS);
    FX_CHECK_EQ_INT(fx_hook_count(h), KEYS);
    fx_hook_tally t = fx_hook_tally_get(h);
    FX_CHECK_EQ_INT(t.ok_ids, KEYS);
    int per_key[KEYS] = {0};
    for (size_t i = 0; i < KEYS; i++) {
        fx_hook_req req;
        fx_hook_get(h, i, &req);
        cJSON *ev = cJSON_ParseWithLength(req.body, req.body_len);
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(ev, "data");
        FX_CHECK_EQ_STR(cJSON_GetObjectItemCaseSensitive(ev, "type")->valuestring,
                        "spend_cap_warning_threshold_reached");
        const char *sid = cJSON_GetObjectItemCaseSensitive(d, "scope_id")->valuestring;
        for (int k = 0; k < KEYS; k++) {
            per_key[k] += strcmp(sid, ids[k]) == 0;
        }
        cJSON_Delete(ev);
        fx_hook_req_free(&req);
    }
    for (int k = 0; k < KEYS; k++) {
        FX_CHECK(per_key[k] == 1, "key %s: %d events", ids[k], per_key[k]);
    }
    fx_log("%d keys crossed 50%% from two replicas at once: one event each", KEYS);
    int rc = fx_done();
    fx_hook_stop(h);
    return rc;
}
