/*
 * sse_fast_test.c — the allocation-free JSON fast paths (gw_json.h walker) must
 * give exactly what the cJSON code they replace gives:
 *  - the SSE scanner (gw_sse.c, gw_sse_fast_count) counts the relayed-text bytes
 *    the cJSON inspection counts (the rule of gw_sse.h: UTF-8 bytes of every
 *    string under choices[].delta and .text);
 *  - gw_usage_from_body (gw_estimate.c) finds the usage cJSON finds in a whole
 *    response body.
 * Differential tests over hand-written documents (escapes, unicode, nesting,
 * duplicates, odd shapes, invalid JSON) and many random mutations of them.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cg_test.h"
#include "gw_estimate.h"
#include "gw_sse.h"

static void sink(void *ud, const char *p, size_t n)
{
    (void)ud;
    (void)p;
    (void)n;
}

static uint64_t ref_bytes(const cJSON *node)
{
    if (cJSON_IsString(node)) {
        return strlen(node->valuestring);
    }
    uint64_t sum = 0;
    const cJSON *c;
    if (cJSON_IsArray(node) || cJSON_IsObject(node)) {
        cJSON_ArrayForEach(c, node)
        {
            sum += ref_bytes(c);
        }
    }
    return sum;
}

/* The cJSON reference count of one event's data. */
static uint64_t ref_count(const char *data, size_t len)
{
    cJSON *j = cJSON_ParseWithLength(data, len);
    uint64_t sum = 0;
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(j, "choices");
    if (cJSON_IsArray(choices)) {
        const cJSON *c;
        cJSON_ArrayForEach(c, choices)
        {
            sum += ref_bytes(cJSON_GetObjectItemCaseSensitive(c, "delta"));
            sum += ref_bytes(cJSON_GetObjectItemCaseSensitive(c, "text"));
        }
    }
    cJSON_Delete(j);
    return sum;
}

/* What the scanner counts for one event with this data (one line). */
static uint64_t scan_count(const char *data, size_t len)
{
    char *ev = malloc(len + 9);
    memcpy(ev, "data: ", 6);
    memcpy(ev + 6, data, len);
    memcpy(ev + 6 + len, "\n\n", 2);
    gw_sse s;
    gw_sse_init(&s, 0);
    gw_sse_feed(&s, ev, len + 8, sink, NULL);
    gw_sse_finish(&s, sink, NULL);
    uint64_t n = s.content_bytes;
    gw_sse_fini(&s);
    free(ev);
    return n;
}

static const char *const seeds[] = {
    "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1732000000,"
    "\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},"
    "\"logprobs\":null,\"finish_reason\":null}]}",
    "{\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}",
    "{\"choices\":[{\"text\":\"caf\\u00e9 \\u20ac \\\"q\\\" \\\\ \\/ \\n\\t\\r\\b\\f\"}]}",
    "{\"choices\":[{\"delta\":{\"content\":\"\\ud83d\\ude00 smile\"}}]}",
    "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"f\","
    "\"arguments\":\"{\\\"a\\\":1}\"}}]}}]}",
    "{\"choices\":[{\"delta\":\"plain\",\"delta\":\"dup\",\"text\":\"t\",\"text\":\"t2\"}]}",
    "{\"choices\":[{\"delta\":{\"content\":\"a\"}},{\"delta\":{\"content\":\"bc\"}}],"
    "\"choices\":[{\"delta\":\"ignored\"}]}",
    "{\"choices\":null}",
    "{\"choices\":{\"delta\":\"not an array\"}}",
    "{\"choices\":[\"str\",[\"x\"],1,{\"delta\":\"y\"}]}",
    "{\"choices\":[]}",
    "{}",
    " \t{ \"choices\" : [ { \"delta\" : { \"content\" : \"ws\" } } ] } trailing",
    "{\"n\":[-0.5e+10,1E3,0,12.25,true,false,null],\"choices\":[{\"delta\":{\"c\":\"x\"}}]}",
    "{\"ch\\u006fices\":[{\"delta\":\"escaped key\"}]}",
    "{\"choices\":[{\"d\\u0065lta\":\"escaped key\"}]}",
    "{\"choices\":[{\"delta\":{\"k\\u00e9y\":\"v\"}}]}",
    "{\"choices\":[{\"delta\":\"nul\\u0000after\"}]}",
    "{\"choices\":[{\"delta\":\"lone \\ud800 surrogate\"}]}",
    "{\"choices\":[{\"delta\":\"bad \\x escape\"}]}",
    "{\"choices\":[{\"delta\":01}]}",
    "{\"choices\":[{\"delta\":\"unterminated}]}",
    "{\"choices\":[{\"delta\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"deep\"]]]]]]]]]]]]]]]]]]]]]]]]]"
    "]]]]]]]]]]}]}",
    "[1,2]",
    "{\"choices\":[{\"delta\":{\"content\":\"u\"}}],\"usage\":{\"prompt_tokens\":3,"
    "\"completion_tokens\":1,\"total_tokens\":4}}",
    "{\"usage\":null,\"choices\":[{\"delta\":{\"content\":\"before usage null\"}}]}",
    "{\"x\":{\"usage\":1},\"choices\":[{\"delta\":{\"usage\":\"nested is not usage\"}}]}",
    "\"just a string\"",
    "{\"choices\":[{\"delta\":{\"content\":\"raw \xc3\xa9 utf8\"}}]}",
};

CG_TEST(sse_fast_matches_cjson_on_seeds)
{
    for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
        size_t n = strlen(seeds[i]);
        uint64_t want = ref_count(seeds[i], n), got = scan_count(seeds[i], n);
        if (want != got) {
            fprintf(stderr, "seed %zu: want %llu got %llu: %s\n", i, (unsigned long long)want,
                    (unsigned long long)got, seeds[i]);
        }
        CG_CHECK_EQ_INT(got, want);
    }
    /* the seeds exercise counting at all (not everything 0) */
    CG_CHECK_EQ_INT(scan_count(seeds[0], strlen(seeds[0])), 5);
}

CG_TEST(sse_fast_matches_cjson_on_mutations)
{
    static const char alphabet[] = "{}[]\":,\\u0aZ -.eE+9tfn";
    unsigned seed = 12345;
    int mismatches = 0;
    char buf[1024];
    for (int round = 0; round < 20000; round++) {
        const char *src = seeds[(size_t)round % (sizeof(seeds) / sizeof(seeds[0]))];
        size_t n = strlen(src);
        memcpy(buf, src, n);
        int edits = 1 + round % 3;
        for (int e = 0; e < edits && n > 1; e++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % n;
            char ch = alphabet[(seed >> 20) % (sizeof(alphabet) - 1)];
            switch ((seed >> 4) % 3) {
            case 0: /* replace */
                buf[at] = ch;
                break;
            case 1: /* delete */
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
                break;
            default: /* insert */
                if (n + 1 < sizeof(buf)) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = ch;
                    n++;
                }
            }
        }
        uint64_t want = ref_count(buf, n), got = scan_count(buf, n);
        if (want != got && mismatches++ < 5) {
            fprintf(stderr, "mutation %d: want %llu got %llu: %.*s\n", round,
                    (unsigned long long)want, (unsigned long long)got, (int)n, buf);
        }
    }
    CG_CHECK_EQ_INT(mismatches, 0);
}

static const char *const bodies[] = {
    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,"
    "\"message\":{\"role\":\"assistant\",\"content\":\"Hi \\u00e9 \\\"there\\\"\"},"
    "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7,"
    "\"total_tokens\":19,\"prompt_tokens_details\":{\"cached_tokens\":4}}}",
    "{\"usage\":{\"input_tokens\":5,\"output_tokens\":9,\"input_tokens_details\":"
    "{\"cached_tokens\":99}},\"output\":[]}",
    "{\"usage\":\"first\",\"usage\":{\"prompt_tokens\":1}}",
    "{\"usage\":{\"prompt_tokens\":1},\"usage\":{\"prompt_tokens\":2}}",
    "{\"us\\u0061ge\":{\"prompt_tokens\":3}}",
    "{\"x\":{\"usage\":{\"prompt_tokens\":3}}}",
    "{\"usage\":null}",
    "{\"usage\":{\"prompt_tokens\":1.5e1,\"completion_tokens\":-2,\"total_tokens\":true}}",
    "{\"error\":{\"message\":\"bad\",\"type\":\"invalid_request_error\"},"
    "\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":0}}",
    "  {\"usage\" : { \"prompt_tokens\" : 8 } }  trailing text",
    "{\"usage\":{\"prompt_tokens\":8}",
    "[{\"usage\":{\"prompt_tokens\":8}}]",
    "{}",
    "",
    /* the usage object read without cJSON (gw_usage_walk): first of duplicate members,
     * details that are not objects, cached above prompt, huge and odd numbers, a null
     * prompt_tokens next to input_tokens, nested values skipped */
    "{\"usage\":{\"prompt_tokens\":4,\"prompt_tokens\":9,\"completion_tokens\":2,"
    "\"completion_tokens\":7,\"prompt_tokens_details\":[1,2]}}",
    "{\"usage\":{\"prompt_tokens\":3,\"prompt_tokens_details\":{\"cached_tokens\":50,"
    "\"cached_tokens\":1,\"x\":{\"y\":[{}]}}}}",
    "{\"usage\":{\"prompt_tokens\":1e30,\"completion_tokens\":0.2,\"total_tokens\":-0}}",
    "{\"usage\":{\"prompt_tokens\":null,\"input_tokens\":6,\"output_tokens\":2}}",
    "{\"usage\":{\"input_tokens\":\"6\",\"output_tokens\":{\"n\":2},"
    "\"input_tokens_details\":{\"cached_tokens\":-3}}}",
    "{\"usage\":{}}",
    "{\"usage\":[{\"prompt_tokens\":1}]}",
};

/* gw_usage_from_body vs the full cJSON parse; 1 if both agree. */
static int usage_agrees(const char *b, size_t n, int verbose)
{
    gw_usage want = {0}, got = {0};
    cJSON *j = cJSON_ParseWithLength(n > 0 ? b : "", n);
    int rw = gw_usage_from_json(cJSON_GetObjectItemCaseSensitive(j, "usage"), &want);
    cJSON_Delete(j);
    int rg = gw_usage_from_body(b, n, &got);
    int same = rw == rg && (!rw || (want.prompt_tokens == got.prompt_tokens &&
                                    want.completion_tokens == got.completion_tokens &&
                                    want.cached_tokens == got.cached_tokens));
    if (!same && verbose) {
        fprintf(stderr, "usage mismatch (%d/%d, %lld/%lld): %.*s\n", rw, rg,
                (long long)want.prompt_tokens, (long long)got.prompt_tokens, (int)n, b);
    }
    return same;
}

CG_TEST(usage_from_body_matches_cjson)
{
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        CG_CHECK(usage_agrees(bodies[i], strlen(bodies[i]), 1));
    }
    gw_usage u = {0};
    CG_CHECK_EQ_INT(gw_usage_from_body(bodies[0], strlen(bodies[0]), &u), 1);
    CG_CHECK_EQ_INT(u.prompt_tokens, 12);
    CG_CHECK_EQ_INT(u.completion_tokens, 7);
    CG_CHECK_EQ_INT(u.cached_tokens, 4);
    CG_CHECK_EQ_INT(gw_usage_from_body(NULL, 0, &u), 0);
    static const char alphabet[] = "{}[]\":,\\u0aZ -.eE+9tfn";
    unsigned seed = 777;
    int mismatches = 0;
    char buf[1024];
    for (int round = 0; round < 20000; round++) {
        const char *src = bodies[(size_t)round % (sizeof(bodies) / sizeof(bodies[0]))];
        size_t n = strlen(src);
        memcpy(buf, src, n);
        for (int e = 0; e < 1 + round % 3 && n > 1; e++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % n;
            char ch = alphabet[(seed >> 20) % (sizeof(alphabet) - 1)];
            if ((seed >> 4) % 2 == 0) {
                buf[at] = ch;
            } else {
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
            }
        }
        mismatches += !usage_agrees(buf, n, mismatches < 5);
    }
    CG_CHECK_EQ_INT(mismatches, 0);
}

int main(void)
{
    return CG_TEST_RUN(sse_fast_matches_cjson_on_seeds, sse_fast_matches_cjson_on_mutations,
                       usage_from_body_matches_cjson);
}
