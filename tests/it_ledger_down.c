/*
 * it_ledger_down.c — integration: a shard that cannot be reached makes the
 * gateway fail closed, fast: 503 ledger_unavailable within ledger_timeout_ms
 * plus slack, never a hang, and nothing reaches the upstream. When the shard
 * comes back, requests work again and only the admitted ones were charged.
 *
 * One request: "hi" (1 prompt token), max_tokens 4 at 0.15 / 0.60 USD per 1M
 * tokens = 150 + 4 x 600 = 2,550 nano-USD.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include "fixture.h"

#define COST_NUSD 2550LL
#define LEDGER_TIMEOUT_MS 1000
#define SLACK_MS 1500
#define RECOVER_MS 15000

static const char body[] = "{\"model\":\"demo-gpt-4o-mini\",\"max_tokens\":4,"
                           "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

static void expect_503(fx_cluster *c, const char *key)
{
    int64_t upstream0 = fx_demo_chat_requests(c);
    fx_resp r;
    long st = fx_chat(c, 0, &r, key, body);
    FX_CHECK(st == 503, "want 503, got %ld %s %s after %lld ms", st, r.err, r.body,
             (long long)r.elapsed_ms);
    FX_CHECK_EQ_STR(fx_resp_error_type(&r), "service_unavailable");
    FX_CHECK_EQ_STR(fx_resp_error_code(&r), "ledger_unavailable");
    FX_CHECK(r.elapsed_ms <= LEDGER_TIMEOUT_MS + SLACK_MS, "503 took %lld ms",
             (long long)r.elapsed_ms);
    fx_log("503 ledger_unavailable in %lld ms", (long long)r.elapsed_ms);
    fx_resp_free(&r);
    FX_CHECK_EQ_INT(fx_demo_chat_requests(c), upstream0);
}

/* After the shard returns, poll (bounded) until a request is admitted. */
static void expect_recovery(fx_cluster *c, const char *key)
{
    int64_t deadline = fx_now_ms() + RECOVER_MS;
    for (;;) {
        fx_resp r;
        long st = fx_chat(c, 0, &r, key, body);
        if (st == 200) {
            fx_resp_free(&r);
            return;
        }
        FX_CHECK(st == 503 && fx_now_ms() < deadline, "after restart: %ld %s %s", st, r.err,
                 r.body);
        fx_resp_free(&r);
        fx_sleep_ms(100);
    }
}

int main(void)
{
    fx_init("it_ledger_down");
    fx_cluster c;
    fx_opts o = {.shard_n = 2, .ledger_timeout_ms = LEDGER_TIMEOUT_MS};
    fx_cluster_start(&c, &o);
    char id[64], key[128], route[96];
    fx_acme_capped_key(&c, id, key);
    fx_resp r;
    long st = fx_chat(&c, 0, &r, key, body);
    FX_CHECK(st == 200, "before: %ld %s", st, r.body);
    fx_resp_free(&r);

    snprintf(route, sizeof(route), "key:%s", id);
    fx_proc *owner = fx_ledger_of(&c, route);
    fx_log("key %s lives on %s; stopping it", id, owner->name);
    fx_proc_stop_clean(owner);
    expect_503(&c, key);
    expect_503(&c, key); /* and again: no state left stuck by the first */

    fx_proc_start(&c, owner);
    expect_recovery(&c, key);
    fx_limit l = fx_key_limit_settled(&c, id, 0, 2 * COST_NUSD);
    FX_CHECK_EQ_INT(l.used, 2 * COST_NUSD);
    FX_CHECK_EQ_INT(l.reserved, 0);
    fx_log("recovered; only the two admitted requests were charged");
    return fx_done();
}
