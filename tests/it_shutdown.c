/*
 * it_shutdown.c — integration: operations endpoints and graceful shutdown
 * (SPEC §9, issue 7).
 *
 * 1. /metrics on the gateway's admin listener (no admin token) and on each
 *    shard's HTTP listener is Prometheus text with the SPEC §9 series, and the
 *    counters move with the traffic; /healthz and /readyz answer on both. A
 *    refused request's id (x-capgate-request-id) is on the gateway's log line
 *    and on the owning shard's, so the JSON logs join on it.
 * 2. SIGTERM to the gateway while a slow streaming request is in flight (demo
 *    delay_ms): new connections are refused at once, the in-flight stream
 *    completes with 200 and [DONE], its usage is recorded on the ledger (the
 *    cost computed from the usage chunk the client received), and the process
 *    exits 0.
 * 3. SIGTERM to the shard holding the key and to the alerter: both exit 0 and,
 *    restarted, serve the same data (the key's spend is intact).
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "fixture.h"

#define SLOW_MS 2500
#define REFUSED_WAIT_MS 5000

static const char fast_body[] = "{\"model\":\"demo-gpt-4o-mini\",\"max_tokens\":4,"
                                "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

typedef struct slow_call {
    fx_cluster *c;
    const char *key;
    fx_resp r;
    long status;
} slow_call;

static void *slow_main(void *arg)
{
    slow_call *s = arg;
    char body[512];
    snprintf(body, sizeof(body),
             "{\"model\":\"demo-gpt-4o-mini\",\"max_tokens\":8,\"stream\":true,"
             "\"stream_options\":{\"include_usage\":true},"
             "\"messages\":[{\"role\":\"user\",\"content\":\"tell me something\"}],"
             "\"demo\":{\"delay_ms\":%d,\"completion_tokens\":5}}",
             SLOW_MS);
    s->status = fx_chat(s->c, 0, &s->r, s->key, body);
    return NULL;
}

/* GET url; the body, or fail. */
static char *get_text(const char *url, long want)
{
    fx_resp r;
    long st = fx_http(&r, "GET", url, NULL, NULL, 0);
    FX_CHECK(st == want, "GET %s: want %ld, got %ld %s %s", url, want, st, r.err,
             r.body ? r.body : "");
    char *b = strdup(r.body ? r.body : "");
    fx_resp_free(&r);
    return b;
}

/* The value of the sample line starting with `series ` in a Prometheus text; -1 if absent. */
static double metric_value(const char *txt, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = txt; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            return strtod(p + n + 1, NULL);
        }
    }
    return -1;
}

static void check_metrics(fx_cluster *c, uint32_t shard)
{
    char *g = get_text(fx_fmt_("http://127.0.0.1:%d/metrics", c->admin_port[0]), 200);
    FX_CHECK(strstr(g, "# TYPE capgate_gateway_requests_total counter\n") != NULL, "%s", g);
    /* So far: one request answered 200, one 401 (exact: nothing counted twice). */
    FX_CHECK(metric_value(g, "capgate_gateway_requests_total{status=\"200\",reason=\"ok\"}") == 1,
             "gateway 200 count: %s", g);
    FX_CHECK(metric_value(g, "capgate_gateway_request_seconds_count") == 2, "%s", g);
    FX_CHECK(metric_value(g, "capgate_gateway_upstream_seconds_count") == 1, "%s", g);
    FX_CHECK(metric_value(g, "capgate_gateway_requests_in_flight") >= 0, "%s", g);
    FX_CHECK(metric_value(g, "capgate_gateway_up") == 1, "%s", g);
    FX_CHECK(
        metric_value(g, fx_fmt_("capgate_gateway_ledger_roundtrip_seconds_count{shard=\"s%u\"}",
                                shard)) >= 1,
        "%s", g);
    FX_CHECK(metric_value(g, "capgate_gateway_requests_total{status=\"401\","
                             "reason=\"invalid_api_key\"}") == 1,
             "401 count: %s", g);
    FX_CHECK(strstr(g, "capgate_gateway_request_seconds_bucket{le=\"+Inf\"}") != NULL, "%s", g);
    free(g);
    char *l = get_text(fx_fmt_("http://127.0.0.1:%d/metrics", c->shard_http_port[shard]), 200);
    FX_CHECK(metric_value(l, fx_fmt_("capgate_ledger_ops_total{shard=\"s%u\",op=\"settle\","
                                     "outcome=\"ok\"}",
                                     shard)) >= 1,
             "ledger settle count: %s", l);
    FX_CHECK(metric_value(l, fx_fmt_("capgate_ledger_lmdb_used_bytes{shard=\"s%u\"}", shard)) > 0,
             "%s", l);
    FX_CHECK(
        metric_value(l, fx_fmt_("capgate_ledger_commit_seconds_count{shard=\"s%u\"}", shard)) >= 1,
        "%s", l);
    FX_CHECK(strstr(l, "# TYPE capgate_ledger_batch_ops histogram\n") != NULL, "%s", l);
    free(l);
    free(get_text(fx_fmt_("http://127.0.0.1:%d/healthz", c->admin_port[0]), 200));
    free(get_text(fx_fmt_("http://127.0.0.1:%d/readyz", c->admin_port[0]), 200));
    free(get_text(fx_fmt_("http://127.0.0.1:%d/healthz", c->shard_http_port[shard]), 200));
    free(get_text(fx_fmt_("http://127.0.0.1:%d/readyz", c->shard_http_port[shard]), 200));
    /* The admin API itself still wants the token. */
    free(get_text(fx_fmt_("http://127.0.0.1:%d/admin/v1/orgs/acme", c->admin_port[0]), 401));
    fx_log("metrics, healthz, readyz ok on the gateway and shard s%u", shard);
}

/* The whole file, NUL-terminated (malloc'd), or NULL. */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = b ? fread(b, 1, (size_t)n, f) : 0;
    fclose(f);
    if (b) {
        b[got] = '\0';
    }
    return b;
}

/* A refused request's id (x-capgate-request-id) appears on the owning shard's log lines. */
static void check_log_join(fx_cluster *c)
{
    fx_org_create(c, "{\"id\":\"tiny\",\"name\":\"Tiny\"}");
    char id[64], key[128], route[96];
    fx_key_create(c, "tiny",
                  "{\"name\":\"t\",\"limits\":[{\"metric\":\"cost\","
                  "\"window\":\"month\",\"max\":\"0.000001\"}]}",
                  id, key);
    snprintf(route, sizeof(route), "key:%s", id);
    fx_proc *owner = fx_ledger_of(c, route);
    fx_resp r;
    long st = fx_chat(c, 0, &r, key, fast_body);
    FX_CHECK(st == 402, "tiny budget: want 402, got %ld %s", st, r.body);
    const char *rid = fx_resp_header(&r, "x-capgate-request-id");
    FX_CHECK(rid != NULL && rid[0] != '\0', "no request id header");
    char needle[160];
    snprintf(needle, sizeof(needle), "\"request_id\":\"%s\"", rid);
    fx_resp_free(&r);
    char *gw_log = read_file(c->gateways[0].log_path);
    int in_gw = gw_log != NULL && strstr(gw_log, needle) != NULL;
    free(gw_log);
    FX_CHECK(in_gw, "gateway log has no line with %s", needle);
    int64_t deadline = fx_now_ms() + 5000;
    for (;;) {
        char *l = read_file(owner->log_path);
        int found = l != NULL && strstr(l, needle) != NULL;
        free(l);
        if (found) {
            break;
        }
        FX_CHECK(fx_now_ms() < deadline, "%s log has no line with %s", owner->name, needle);
        fx_sleep_ms(20);
    }
    fx_log("request id %s on both the gateway's and %s's log lines", needle, owner->name);
}

/* Cost in nano-USD of the usage object in the last SSE chunk that has one. */
static int64_t stream_cost(const fx_resp *r, int *done)
{
    cJSON *arr = fx_sse_parse(r->body, done);
    int64_t cost = -1;
    cJSON *ev;
    cJSON_ArrayForEach(ev, arr)
    {
        cJSON *u = cJSON_GetObjectItem(ev, "usage");
        if (cJSON_IsObject(u)) {
            int64_t pt = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(u, "prompt_tokens"));
            int64_t ct = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(u, "completion_tokens"));
            cost = pt * 150 + ct * 600; /* 0.15 / 0.60 USD per 1M tokens */
        }
    }
    cJSON_Delete(arr);
    return cost;
}

static int refused(int port)
{
    fx_resp r;
    long st = fx_http(&r, "GET", fx_fmt_("http://127.0.0.1:%d/healthz", port), NULL, NULL, 1000);
    /* Refused, not merely slow: curl's "Failed to connect ... Connection refused". */
    int ok = st == 0 && (strstr(r.err, "refused") != NULL || strstr(r.err, "connect") != NULL);
    FX_CHECK(st == 0 || st == 200, "healthz during the drain: %ld", st);
    fx_resp_free(&r);
    return ok;
}

int main(void)
{
    fx_init("it_shutdown");
    fx_cluster c;
    fx_opts o = {.shard_n = 2, .start_alerter = 1, .extra_config = "shutdown_timeout_ms 20000\n"};
    fx_cluster_start(&c, &o);
    char id[64], key[128], route[96];
    fx_acme_capped_key(&c, id, key);
    snprintf(route, sizeof(route), "key:%s", id);
    fx_proc *owner = fx_ledger_of(&c, route);
    uint32_t shard = owner->idx;

    fx_resp r;
    long st = fx_chat(&c, 0, &r, key, fast_body);
    FX_CHECK(st == 200, "first request: %ld %s", st, r.body);
    fx_resp_free(&r);
    st = fx_chat(&c, 0, &r, "sk-cg-not-a-key", fast_body);
    FX_CHECK(st == 401, "bad key: %ld", st);
    fx_resp_free(&r);
    int64_t used0 = fx_key_limit_settled(&c, id, 0, 2550).used;
    FX_CHECK_EQ_INT(used0, 2550); /* 1 prompt token x 150 + 4 x 600 */
    check_metrics(&c, shard);
    check_log_join(&c);

    /* ---- gateway: SIGTERM with a slow stream in flight ---- */
    int64_t demo0 = fx_demo_chat_requests(&c);
    slow_call s = {.c = &c, .key = key};
    pthread_t th;
    FX_CHECK(pthread_create(&th, NULL, slow_main, &s) == 0, "pthread_create");
    int64_t deadline = fx_now_ms() + 10000;
    while (fx_demo_chat_requests(&c) == demo0) {
        FX_CHECK(fx_now_ms() < deadline, "the slow request never reached the upstream");
        fx_sleep_ms(20);
    }
    fx_proc *gw = &c.gateways[0];
    FX_CHECK(!refused(c.gw_port[0]), "the gateway refuses connections before SIGTERM");
    int64_t t_term = fx_now_ms();
    FX_CHECK(kill(gw->pid, SIGTERM) == 0, "kill");
    fx_log("SIGTERM sent to the gateway with one stream in flight");
    deadline = fx_now_ms() + REFUSED_WAIT_MS;
    while (!refused(c.gw_port[0])) {
        FX_CHECK(fx_now_ms() < deadline, "gateway still accepts connections after SIGTERM");
        fx_sleep_ms(20);
    }
    int64_t t_refused = fx_now_ms() - t_term;
    fx_log("new connections refused %lld ms after SIGTERM", (long long)t_refused);
    pthread_join(th, NULL);
    FX_CHECK(s.status == 200, "in-flight stream: %ld %s %s", s.status, s.r.err,
             s.r.body ? s.r.body : "");
    int done = 0;
    int64_t cost = stream_cost(&s.r, &done);
    FX_CHECK(done, "stream ended without [DONE]: %s", s.r.body);
    FX_CHECK(cost > 0, "no usage chunk in the stream: %s", s.r.body);
    FX_CHECK(s.r.elapsed_ms >= SLOW_MS, "the stream was not slow (%lld ms)",
             (long long)s.r.elapsed_ms);
    fx_log("in-flight stream completed: 200, [DONE], cost %lld nano-USD, %lld ms", (long long)cost,
           (long long)s.r.elapsed_ms);
    fx_resp_free(&s.r);
    int ws = fx_proc_stop(gw, SIGTERM);
    FX_CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "gateway exit status %d", ws);
    fx_log("gateway exited 0");
    fx_proc_start(&c, gw);
    fx_limit l = fx_key_limit_settled(&c, id, 0, used0 + cost);
    FX_CHECK_EQ_INT(l.used, used0 + cost);
    FX_CHECK_EQ_INT(l.reserved, 0);
    fx_log("usage of the drained stream recorded: used %lld", (long long)l.used);

    /* ---- shard and alerter: SIGTERM, exit 0, data intact ---- */
    fx_proc_stop_clean(owner);
    free(get_text(fx_fmt_("http://127.0.0.1:%d/readyz", c.admin_port[0]), 503));
    fx_proc_start(&c, owner);
    fx_wait_ready(&c);
    l = fx_key_limit(&c, id, 0);
    FX_CHECK_EQ_INT(l.used, used0 + cost);
    fx_log("shard %s exited 0 and came back with used %lld", owner->name, (long long)l.used);
    fx_proc_stop_clean(&c.alerter);
    fx_proc_start(&c, &c.alerter);
    free(get_text(fx_fmt_("http://127.0.0.1:%d/healthz", c.alerter_port), 200));
    st = fx_chat(&c, 0, &r, key, fast_body);
    FX_CHECK(st == 200, "after restarts: %ld %s", st, r.body);
    fx_resp_free(&r);
    fx_log("alerter exited 0 and came back; requests still work");
    return fx_done();
}
