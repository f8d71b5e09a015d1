/*
 * it_alert_crash.c — integration: 1,000 threshold crossings while the alerter
 * is killed with SIGKILL and restarted twice: every event is delivered, and no
 * webhook-id is answered 2xx twice.
 *
 * 250 keys, each with two tiny limits that one request crosses completely:
 * requests/month max 1 warn_at 0.5, and cost/month max 0.0007 USD warn_at 0.5
 * (demo-flat: 7 completion tokens x 100,000 nano-USD = exactly 0.0007). One
 * request per key yields four events (request warning + reached, spend warning
 * + reached): 1,000 in all, spread over both shards. Four client threads send
 * the requests at a steady pace while the main thread kills the alerter
 * (SIGKILL) once 200 and once 600 events have been delivered, restarting it
 * each time. The receiver (fixture_hook.c) verifies every signature with an
 * independent HMAC and tallies 2xx answers per webhook-id.
 *
 * The kill instant: a delivery whose 2xx is on the wire when the process dies
 * is, by design, sent again after the restart (at-least-once; Standard
 * Webhooks receivers de-duplicate by webhook-id). To assert that nothing
 * *else* is ever duplicated, each kill happens after the receiver has started
 * answering 503 and the alerter's delivery state shows every 2xx so far
 * recorded; retries scheduled by those 503s, events still in the shards' logs
 * and records written but not yet attempted all cross the kill. A long retry
 * schedule (20 x 1 s) keeps the 503 window from exhausting any delivery.
 *
 * CG_CRASH_UNPAUSED=1 in the environment (manual runs) kills without the 503
 * window and only logs how many ids were answered 2xx twice.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "fixture.h"

#define KEYS 250
#define EVENTS (KEYS * 4)
#define THREADS 4
#define PACE_MS 40
#define DELIVERY_MS 60000

static const fx_model models[] = {
    {"demo-flat", "0", "100", 1000},
};

static fx_cluster c;
static char keys[KEYS][128];
static atomic_int sent, failed;
static int unpaused; /* CG_CRASH_UNPAUSED: kill with deliveries in flight */

static void *client(void *arg)
{
    int t = (int)(intptr_t)arg;
    static const char body[] = "{\"model\":\"demo-flat\",\"max_tokens\":7,"
                               "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    for (int i = t; i < KEYS; i += THREADS) {
        fx_resp r;
        long st = fx_chat(&c, 0, &r, keys[i], body);
        if (st != 200) {
            atomic_fetch_add(&failed, 1);
            fprintf(stderr, "request for key %d: %ld %s %s\n", i, st, r.err, r.body);
        }
        fx_resp_free(&r);
        atomic_fetch_add(&sent, 1);
        fx_sleep_ms(PACE_MS);
    }
    return NULL;
}

/* Deliveries the alerter has recorded with this status (at most 1000 listed). */
static int recorded(const char *status)
{
    fx_resp r;
    char path[128];
    snprintf(path, sizeof(path), "/admin/v1/deliveries?org=bulk&status=%s&limit=1000", status);
    long st = fx_alerter_get(&c, &r, path);
    FX_CHECK(st == 200, "deliveries: %ld %s", st, r.body);
    int n = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.json, "data"));
    fx_resp_free(&r);
    return n;
}

static void wait_ok_ids(fx_hook *h, size_t n, int64_t timeout_ms)
{
    int64_t deadline = fx_now_ms() + timeout_ms;
    while (fx_hook_tally_get(h).ok_ids < n) {
        FX_CHECK(fx_now_ms() < deadline, "only %zu of %zu events delivered",
                 fx_hook_tally_get(h).ok_ids, n);
        fx_sleep_ms(20);
    }
}

/* Kill the alerter once every 2xx the receiver gave is recorded, then restart it. */
static void kill_and_restart(fx_hook *h)
{
    fx_hook_force_status(h, unpaused ? 0 : 503);
    int64_t deadline = fx_now_ms() + 20000;
    while (!unpaused) {
        size_t ok = fx_hook_tally_get(h).ok_answers;
        if ((size_t)recorded("delivered") == ok) {
            break;
        }
        FX_CHECK(fx_now_ms() < deadline, "alerter never recorded the %zu deliveries", ok);
        fx_sleep_ms(20);
    }
    int st = fx_proc_stop(&c.alerter, SIGKILL);
    FX_CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "alerter status %d", st);
    fx_log("alerter killed: %zu delivered, %d requests sent", fx_hook_tally_get(h).ok_ids,
           atomic_load(&sent));
    fx_hook_force_status(h, 0);
    fx_proc_start(&c, &c.alerter);
}

int main(void)
{
    fx_init("it_alert_crash");
    unpaused = getenv("CG_CRASH_UNPAUSED") != NULL;
    fx_hook *h = fx_hook_start(NULL, 0);
    fx_opts o = {.shard_n = 2,
                 .models = models,
                 .model_n = 1,
                 .start_alerter = 1,
                 .extra_config = "alert_retry_s 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1"};
    fx_cluster_start(&c, &o);
    char secret[64], id[64];
    fx_webhook_secret(secret);
    fx_hook_set_secret(h, secret);
    fx_org_with_hook(&c, "bulk", "Bulk", h, secret);
    for (int i = 0; i < KEYS; i++) {
        fx_key_create(&c, "bulk",
                      "{\"name\":\"tiny\",\"limits\":["
                      "{\"metric\":\"requests\",\"window\":\"month\",\"max\":1,\"warn_at\":[0.5]},"
                      "{\"metric\":\"cost\",\"window\":\"month\",\"max\":\"0.0007\","
                      "\"warn_at\":[0.5]}]}",
                      id, keys[i]);
    }
    fx_log("%d keys created", KEYS);

    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) {
        FX_CHECK(pthread_create(&th[t], NULL, client, (void *)(intptr_t)t) == 0, "pthread_create");
    }
    wait_ok_ids(h, 200, DELIVERY_MS);
    kill_and_restart(h);
    wait_ok_ids(h, 600, DELIVERY_MS);
    kill_and_restart(h);
    for (int t = 0; t < THREADS; t++) {
        pthread_join(th[t], NULL);
    }
    FX_CHECK_EQ_INT(atomic_load(&failed), 0);
    wait_ok_ids(h, EVENTS, DELIVERY_MS);
    /* The last answers get recorded (and, unpaused, the re-sends go out)... */
    int64_t settle = fx_now_ms() + DELIVERY_MS;
    while (recorded("pending") != 0) {
        FX_CHECK(fx_now_ms() < settle, "deliveries still pending");
        fx_sleep_ms(50);
    }
    /* ...then nothing more may come: no event twice, no extra event. */
    int64_t quiet = fx_now_ms() + 2000;
    while (fx_now_ms() < quiet) {
        FX_CHECK_EQ_INT(recorded("pending"), 0);
        fx_sleep_ms(200);
    }
    fx_hook_tally t = fx_hook_tally_get(h);
    fx_log("%zu requests, %zu events delivered, %zu delivered twice, %zu bad signatures",
           t.requests, t.ok_ids, t.ok_dup_ids, t.bad_sigs);
    FX_CHECK_EQ_INT(t.ok_ids, EVENTS);
    if (!unpaused) {
        FX_CHECK_EQ_INT(t.ok_dup_ids, 0);
    }
    FX_CHECK_EQ_INT(t.bad_sigs, 0);
    FX_CHECK_EQ_INT(recorded("delivered"), EVENTS);
    FX_CHECK_EQ_INT(recorded("failed"), 0);
    int rc = fx_done();
    fx_hook_stop(h);
    return rc;
}
