/*
 * it_many_streams.c — integration: one gateway worker relays STREAMS streaming
 * chat completions at once (issue 4: thousands of concurrent streams per
 * gateway process). Run twice: with the builtin upstream client (the default
 * for http:// providers, gateway/gw_h1.c) and as it_many_streams_curl with
 * `upstream_client curl`, where the gateway must also have spread its transfers
 * over several libcurl multi handles past 256 each (gw_upstream.c).
 *
 * The demo holds every stream DELAY_MS before answering, so all STREAMS are in
 * flight together (more than two multis' worth). Every client gets 200, a
 * complete SSE stream ending in [DONE] with the demo's words, and every request
 * leaves exactly one usage record; the key's request counter equals STREAMS and
 * nothing stays reserved.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "fixture.h"

#define STREAMS 700
#define DELAY_MS 1500

typedef struct stream {
    char *buf;
    size_t len;
} stream;

static size_t write_cb(char *p, size_t sz, size_t n, void *ud)
{
    stream *s = ud;
    char *nb = realloc(s->buf, s->len + sz * n + 1);
    if (nb == NULL) {
        return 0;
    }
    memcpy(nb + s->len, p, sz * n);
    s->len += sz * n;
    nb[s->len] = '\0';
    s->buf = nb;
    return sz * n;
}

int main(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max; /* STREAMS client sockets here, twice that in the gateway */
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    FX_CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0, "getrlimit");
    if (rl.rlim_cur < 3 * STREAMS) {
        fprintf(stderr, "it_many_streams: open files limited to %llu, need %d: skipped\n",
                (unsigned long long)rl.rlim_cur, 3 * STREAMS);
        return 0;
    }
    fx_init("it_many_streams");
    static fx_cluster c;
    fx_opts o = {.shard_n = 1, .workers = 1, .extra_config = "conns_max 2000\n"};
    fx_cluster_start(&c, &o);
    fx_org_create(&c, "{\"id\":\"acme\",\"name\":\"Acme Inc.\"}");
    char key_id[64], key[128];
    fx_key_create(&c, "acme",
                  "{\"name\":\"streams\",\"limits\":[{\"metric\":\"requests\",\"window\":"
                  "\"lifetime\",\"max\":100000}]}",
                  key_id, key);

    char url[128], auth[200], body[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/chat/completions", c.gw_port[0]);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
    snprintf(body, sizeof(body),
             "{\"model\":\"demo-gpt-4o-mini\",\"max_tokens\":8,\"stream\":true,"
             "\"demo\":{\"delay_ms\":%d},\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
             DELAY_MS);
    struct curl_slist *hdrs = curl_slist_append(NULL, auth);
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    static stream s[STREAMS];
    static CURL *e[STREAMS];
    for (int i = 0; i < STREAMS; i++) {
        e[i] = curl_easy_init();
        curl_easy_setopt(e[i], CURLOPT_URL, url);
        curl_easy_setopt(e[i], CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(e[i], CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e[i], CURLOPT_WRITEFUNCTION, write_cb);
        curl_easy_setopt(e[i], CURLOPT_WRITEDATA, &s[i]);
        curl_easy_setopt(e[i], CURLOPT_TIMEOUT_MS, 60000L);
        curl_easy_setopt(e[i], CURLOPT_FORBID_REUSE, 1L);
        curl_multi_add_handle(m, e[i]);
    }
    int64_t api0 = fx_demo_api_requests(&c);
    int64_t t0 = fx_now_ms();
    int running = STREAMS;
    while (running > 0 && fx_now_ms() - t0 < 90000) {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    int64_t ms = fx_now_ms() - t0;
    int ok = 0;
    long status = 0;
    for (int i = 0; i < STREAMS; i++) {
        curl_easy_getinfo(e[i], CURLINFO_RESPONSE_CODE, &status);
        int complete = s[i].buf != NULL && strstr(s[i].buf, "data: [DONE]") != NULL &&
                       strstr(s[i].buf, "\"content\"") != NULL;
        if (status == 200 && complete) {
            ok++;
        } else if (ok == i) {
            fx_log("stream %d: status %ld, %zu bytes: %.200s", i, status, s[i].len,
                   s[i].buf ? s[i].buf : "");
        }
        curl_multi_remove_handle(m, e[i]);
        curl_easy_cleanup(e[i]);
        free(s[i].buf);
    }
    curl_multi_cleanup(m);
    curl_slist_free_all(hdrs);
    fx_log("%d streams at once: %d complete in %lld ms (the demo holds each %d ms)", STREAMS, ok,
           (long long)ms, DELAY_MS);
    FX_CHECK_EQ_INT(ok, STREAMS);
    FX_CHECK_EQ_INT(fx_demo_api_requests(&c), api0 + STREAMS);
    fx_limit l = fx_key_limit_settled(&c, key_id, 0, STREAMS);
    FX_CHECK(l.used == STREAMS && l.reserved == 0, "key: used %lld reserved %lld",
             (long long)l.used, (long long)l.reserved);
    FX_CHECK_EQ_INT(fx_usage_totals_settled(&c, "org=acme", STREAMS).requests, STREAMS);
    fx_proc_stop_clean(&c.gateways[0]);
    const char *extra = getenv("FX_EXTRA_CONFIG");
    if (extra == NULL || strstr(extra, "upstream_client curl") == NULL) {
        return fx_done();
    }
    /* libcurl: more than two multis' worth were in flight: the gateway spread them. */
    FILE *f = fopen(c.gateways[0].log_path, "r");
    FX_CHECK(f != NULL, "open %s", c.gateways[0].log_path);
    char line[1024];
    int spread = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        spread |= strstr(line, "\"multis\":\"3\"") != NULL;
    }
    fclose(f);
    FX_CHECK(spread, "the gateway never used a third curl multi handle");
    return fx_done();
}
