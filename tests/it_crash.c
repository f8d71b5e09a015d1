/*
 * it_crash.c — integration: `kill -9` of a shard loses no settled usage.
 *
 * Settle a few requests, SIGKILL the shard that owns the key, restart it on
 * the same data directory: the key shows exactly the same `used` (a settle is
 * confirmed only after its LMDB commit), nothing stays reserved, and further
 * requests are admitted and charged on top.
 *
 * One request: "hi" (1 prompt token), max_tokens 4 at 0.15 / 0.60 USD per 1M
 * tokens = 150 + 4 x 600 = 2,550 nano-USD.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include "fixture.h"

#define COST_NUSD 2550LL
#define BEFORE_N 5
#define AFTER_N 3
#define RECOVER_MS 15000

static const char body[] = "{\"model\":\"demo-gpt-4o-mini\",\"max_tokens\":4,"
                           "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

/* Send until n requests got 200; 503s (gateway still reconnecting) are
 * retried within RECOVER_MS, anything else fails. */
static void admit(fx_cluster *c, const char *key, int n)
{
    int64_t deadline = fx_now_ms() + RECOVER_MS;
    for (int ok = 0; ok < n;) {
        fx_resp r;
        long st = fx_chat(c, 0, &r, key, body);
        if (st == 200) {
            ok++;
        } else {
            FX_CHECK(st == 503 && fx_now_ms() < deadline, "chat: %ld %s %s", st, r.err, r.body);
            fx_sleep_ms(100);
        }
        fx_resp_free(&r);
    }
}

/* GET the key, retrying while the admin API's ledger link reconnects. */
static fx_limit key_limit_retry(fx_cluster *c, const char *id)
{
    int64_t deadline = fx_now_ms() + RECOVER_MS;
    fx_limit l;
    long st;
    while ((st = fx_key_limit_get(c, id, 0, &l)) != 200) {
        FX_CHECK(st == 503 && fx_now_ms() < deadline, "GET key after restart: %ld", st);
        fx_sleep_ms(100);
    }
    return l;
}

int main(void)
{
    fx_init("it_crash");
    fx_cluster c;
    fx_opts o = {.shard_n = 2};
    fx_cluster_start(&c, &o);
    char id[64], key[128], route[96];
    fx_acme_capped_key(&c, id, key);
    admit(&c, key, BEFORE_N);
    fx_limit before = fx_key_limit_settled(&c, id, 0, BEFORE_N * COST_NUSD);
    FX_CHECK_EQ_INT(before.used, BEFORE_N * COST_NUSD);
    FX_CHECK_EQ_INT(before.reserved, 0);

    snprintf(route, sizeof(route), "key:%s", id);
    fx_proc *owner = fx_ledger_of(&c, route);
    fx_log("key %s lives on %s; SIGKILL", id, owner->name);
    int st = fx_proc_stop(owner, SIGKILL);
    FX_CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "%s was not killed", owner->name);
    fx_proc_start(&c, owner);

    fx_limit after = key_limit_retry(&c, id);
    FX_CHECK_EQ_INT(after.used, before.used);
    FX_CHECK_EQ_INT(after.reserved, 0);
    FX_CHECK_EQ_INT(after.max, before.max);
    fx_log("after restart used %lld == before", (long long)after.used);

    admit(&c, key, AFTER_N);
    after = fx_key_limit_settled(&c, id, 0, (BEFORE_N + AFTER_N) * COST_NUSD);
    FX_CHECK_EQ_INT(after.used, (BEFORE_N + AFTER_N) * COST_NUSD);
    FX_CHECK_EQ_INT(after.reserved, 0);
    return fx_done();
}
