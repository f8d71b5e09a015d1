/*
 * it_rate_window.c — integration: a sliding-window rate limit and Retry-After.
 *
 * A key limited to 10 requests per sliding minute: a burst of 10 passes, each
 * answer carrying OpenAI's x-ratelimit-*-requests headers (limit 10, the
 * remaining count going down, the reset 1..61 s away since every request
 * holds quota for a minute); the 11th gets 429 rate_limit_error /
 * rate_limit_exceeded with `Retry-After: N` (whole seconds, >= 1) and never
 * reaches the upstream. A client that honours Retry-After succeeds: with the
 * test clock moved 2 s short of N the request is still refused, moved the
 * full N seconds it passes. The window really slides: the admin API shows
 * the counter counting only what is still inside the minute.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fixture.h"

#define BURST 10

static const char body[] = "{\"model\":\"demo-gpt-4o-mini\",\"max_tokens\":4,"
                           "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

/* OpenAI's reset duration ("1s", "6m0s", "1h2m3s", "20ms") in milliseconds. */
static int64_t duration_ms(const char *v)
{
    FX_CHECK(v != NULL && *v != '\0', "no duration");
    int64_t total = 0;
    const char *p = v;
    while (*p != '\0') {
        char *end;
        double n = strtod(p, &end);
        FX_CHECK(end != p && n >= 0, "bad duration \"%s\"", v);
        int64_t unit = strncmp(end, "ms", 2) == 0 ? 1
                       : *end == 'h'              ? 3600000
                       : *end == 'm'              ? 60000
                       : *end == 's'              ? 1000
                                                  : 0;
        FX_CHECK(unit != 0, "bad duration unit in \"%s\"", v);
        total += (int64_t)(n * (double)unit);
        p = end + (unit == 1 ? 2 : 1);
    }
    return total;
}

static long header_int(const fx_resp *r, const char *name)
{
    const char *v = fx_resp_header(r, name);
    FX_CHECK(v != NULL, "no %s header (status %ld)", name, r->status);
    char *end;
    long n = strtol(v, &end, 10);
    FX_CHECK(end != v && *end == '\0', "%s: \"%s\" is not an integer", name, v);
    return n;
}

static fx_cluster c;
static char key[128], path[256];

/* BURST requests pass, each with its x-ratelimit-*-requests headers. */
static void burst(void)
{
    fx_resp r;
    for (int i = 1; i <= BURST; i++) {
        long st = fx_chat(&c, 0, &r, key, body);
        FX_CHECK(st == 200, "burst request %d: %ld %s", i, st, r.body);
        FX_CHECK_EQ_INT(header_int(&r, "x-ratelimit-limit-requests"), BURST);
        FX_CHECK_EQ_INT(header_int(&r, "x-ratelimit-remaining-requests"), BURST - i);
        /* Time until the limit is back to its initial state (OpenAI's meaning): this
         * request's own quota returns only when it leaves the window, a minute on. */
        int64_t reset = duration_ms(fx_resp_header(&r, "x-ratelimit-reset-requests"));
        FX_CHECK(reset >= 1000 && reset <= 61000, "request %d: x-ratelimit-reset-requests %s", i,
                 fx_resp_header(&r, "x-ratelimit-reset-requests"));
        fx_resp_free(&r);
        fx_scope_limit_settled(&c, path, "requests", "1m", i);
    }
    fx_log("burst of %d passed", BURST);
}

/* The next request: 429 with Retry-After (returned, in seconds). */
static long refused(void)
{
    fx_resp r;
    long st = fx_chat(&c, 0, &r, key, body);
    FX_CHECK(st == 429, "request %d: want 429, got %ld %s", BURST + 1, st, r.body);
    FX_CHECK_EQ_STR(fx_resp_error_type(&r), "rate_limit_error");
    FX_CHECK_EQ_STR(fx_resp_error_code(&r), "rate_limit_exceeded");
    long retry = header_int(&r, "retry-after");
    FX_CHECK(retry >= 1 && retry <= 61, "Retry-After %ld not in 1..61", retry);
    const cJSON *limit = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(r.json, "error"), "limit");
    const cJSON *win = cJSON_GetObjectItemCaseSensitive(limit, "window");
    FX_CHECK(cJSON_IsString(win) && strcmp(win->valuestring, "1m") == 0, "limit: %s", r.body);
    fx_resp_free(&r);
    fx_log("request %d: 429, Retry-After %ld", BURST + 1, retry);
    return retry;
}

/* A client honouring Retry-After: 2 s short of it still 429, after it 200. */
static void honour(long retry)
{
    fx_resp r;
    long st;
    if (retry > 2) {
        fx_clock_advance(retry - 2);
        st = fx_chat(&c, 0, &r, key, body);
        FX_CHECK(st == 429, "2 s before Retry-After: want 429, got %ld %s", st, r.body);
        long again = header_int(&r, "retry-after");
        FX_CHECK(again >= 1 && again <= 3, "Retry-After 2 s before the end: %ld", again);
        fx_resp_free(&r);
        fx_clock_advance(2);
    } else {
        fx_clock_advance(retry);
    }
    st = fx_chat(&c, 0, &r, key, body);
    FX_CHECK(st == 200, "after Retry-After %ld s: %ld %s", retry, st, r.body);
    fx_resp_free(&r);
    fx_limit l = fx_scope_limit_idle(&c, path, "requests", "1m"); /* its settle may trail */
    FX_CHECK(l.used <= BURST && l.reserved == 0, "window after sliding: used %lld reserved %lld",
             (long long)l.used, (long long)l.reserved);
}

int main(void)
{
    fx_init("it_rate_window");
    fx_opts o = {.shard_n = 2};
    fx_cluster_start(&c, &o);
    fx_org_create(&c, "{\"id\":\"acme\",\"name\":\"Acme Inc.\"}");
    char id[64];
    fx_key_create(&c, "acme",
                  "{\"name\":\"rate\",\"limits\":[{\"metric\":\"requests\",\"window\":\"1m\","
                  "\"max\":10}]}",
                  id, key);
    fx_scope_path(path, FX_SCOPE_KEY, "acme", id);
    int64_t api0 = fx_demo_api_requests(&c);
    burst();
    long retry = refused();
    FX_CHECK_EQ_INT(fx_demo_api_requests(&c), api0 + BURST);
    honour(retry);
    FX_CHECK_EQ_INT(fx_demo_api_requests(&c), api0 + BURST + 1);

    /* A whole window (and a bucket) later everything has slid out: a full burst again. */
    fx_clock_advance(62);
    fx_limit l = fx_scope_limit(&c, path, "requests", "1m");
    FX_CHECK_EQ_INT(l.used, 0);
    burst();
    refused();
    fx_log("a minute later the window admits a full burst again, then 429");
    return fx_done();
}
