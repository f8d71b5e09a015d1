/*
 * sse_test.c — unit tests of the incremental SSE scanner (gw_sse).
 *
 * The central property: whatever way a stream is cut into feeds (every split
 * position, byte by byte), the scanner emits exactly the expected bytes and
 * finds the same usage, for LF, CRLF and CR line ends.
 */
#include <stdlib.h>
#include <string.h>
#include "cg_test.h"
#include "gw_sse.h"

typedef struct out_buf {
    char *p;
    size_t n, cap;
} out_buf;

static void out_emit(void *ud, const char *p, size_t n)
{
    out_buf *o = ud;
    if (o->n + n + 1 > o->cap) {
        o->cap = (o->n + n + 1) * 2;
        o->p = realloc(o->p, o->cap);
    }
    memcpy(o->p + o->n, p, n);
    o->n += n;
    o->p[o->n] = '\0';
}

#define EV_FIRST                                                                                   \
    "data: "                                                                                       \
    "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}" \
    "}],\"usage\":null}"
#define EV_HELLO \
    "data: "     \
    "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}],\"usage\":null}"
#define EV_COMMENT ": keep-alive"
#define EV_STOP                                                                           \
    "data: "                                                                              \
    "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]," \
    "\"usage\":null}"
#define EV_USAGE                                                                             \
    "data: "                                                                                 \
    "{\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":2," \
    "\"total_tokens\":13,\"prompt_tokens_details\":{\"cached_tokens\":4}}}"
#define EV_DONE "data: [DONE]"

/* Build the test stream with line end `eol`; with_usage = 0 leaves the usage event out. */
static char *make_stream(const char *eol, int with_usage)
{
    const char *evs[] = {EV_FIRST, EV_HELLO, EV_COMMENT, EV_STOP, EV_USAGE, EV_DONE};
    size_t cap = 4096;
    char *s = calloc(1, cap);
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
        if (!with_usage && i == 4) { /* EV_USAGE */
            continue;
        }
        strcat(s, evs[i]);
        strcat(s, eol);
        strcat(s, eol);
    }
    return s;
}

/* Feed `in` in pieces cut at the given positions (ascending), then finish. */
static void run(gw_sse *s, const char *in, size_t n, const size_t *cuts, size_t cut_n, out_buf *o)
{
    size_t at = 0;
    for (size_t i = 0; i <= cut_n; i++) {
        size_t end = i < cut_n ? cuts[i] : n;
        gw_sse_feed(s, in + at, end - at, out_emit, o);
        at = end;
    }
    gw_sse_finish(s, out_emit, o);
}

/* Feed all of `in` at once to s, freshly set up with flags, into a fresh o
 * (the caller finishes with gw_sse_fini(s) and free(o->p)). */
static void run_whole(gw_sse *s, unsigned flags, const char *in, out_buf *o)
{
    memset(o, 0, sizeof(*o));
    gw_sse_init(s, flags);
    run(s, in, strlen(in), NULL, 0, o);
}

/* The output is exactly want. */
static int out_is(const out_buf *o, const char *want)
{
    return o->p != NULL && strcmp(o->p, want) == 0;
}

/* Every single split position, for one line-end style and mode; returns 0 on success. */
static int check_all_splits(const char *eol, int strip)
{
    char *in = make_stream(eol, 1);
    char *want = strip ? make_stream(eol, 0) : make_stream(eol, 1);
    size_t n = strlen(in);
    int bad = 0;
    for (size_t cut = 0; cut <= n && !bad; cut++) {
        gw_sse s;
        out_buf o = {0};
        gw_sse_init(&s, strip);
        run(&s, in, n, &cut, 1, &o);
        if (o.p == NULL || strcmp(o.p, want) != 0 || !s.have_usage || s.usage.prompt_tokens != 11 ||
            s.usage.completion_tokens != 2 || s.usage.cached_tokens != 4 || !s.saw_done ||
            s.content_bytes != 14) {
            fprintf(stderr, "  split at %zu (strip %d, eol %zu bytes) failed\n", cut, strip,
                    strlen(eol));
            bad = 1;
        }
        gw_sse_fini(&s);
        free(o.p);
    }
    free(in);
    free(want);
    return bad;
}

CG_TEST(sse_split_everywhere_lf)
{
    CG_CHECK(check_all_splits("\n", 0) == 0);
    CG_CHECK(check_all_splits("\n", 1) == 0);
}

CG_TEST(sse_split_everywhere_crlf)
{
    CG_CHECK(check_all_splits("\r\n", 0) == 0);
    CG_CHECK(check_all_splits("\r\n", 1) == 0);
}

CG_TEST(sse_split_everywhere_cr)
{
    CG_CHECK(check_all_splits("\r", 0) == 0);
    CG_CHECK(check_all_splits("\r", 1) == 0);
}

CG_TEST(sse_byte_by_byte)
{
    const char *eols[] = {"\n", "\r\n", "\r"};
    for (size_t e = 0; e < 3; e++) {
        for (int strip = 0; strip <= 1; strip++) {
            char *in = make_stream(eols[e], 1);
            char *want = make_stream(eols[e], !strip);
            size_t n = strlen(in);
            size_t *cuts = malloc(n * sizeof(size_t));
            for (size_t i = 0; i < n; i++) {
                cuts[i] = i;
            }
            gw_sse s;
            out_buf o = {0};
            gw_sse_init(&s, strip);
            run(&s, in, n, cuts, n, &o);
            int ok = out_is(&o, want) && s.have_usage && s.saw_done;
            gw_sse_fini(&s);
            free(o.p);
            free(cuts);
            free(in);
            free(want);
            CG_CHECK(ok);
        }
    }
}

CG_TEST(sse_usage_with_choices_not_stripped)
{
    const char *in = "data: {\"choices\":[{\"delta\":{\"content\":\"abc\"}}],"
                     "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}\n\n";
    gw_sse s;
    out_buf o;
    run_whole(&s, 1, in, &o);
    CG_CHECK(out_is(&o, in));
    CG_CHECK(s.have_usage);
    CG_CHECK_EQ_INT(s.usage.prompt_tokens, 5);
    CG_CHECK_EQ_INT(s.usage.completion_tokens, 1);
    CG_CHECK_EQ_INT(s.content_bytes, 3);
    gw_sse_fini(&s);
    free(o.p);
}

CG_TEST(sse_multiline_data)
{
    const char *in = "event: message\nid: 7\ndata: {\"choices\": [],\ndata: \"usage\": "
                     "{\"prompt_tokens\": 3, \"completion_tokens\": 9}}\n\ndata: [DONE]\n\n";
    gw_sse s;
    out_buf o;
    run_whole(&s, 1, in, &o);
    CG_CHECK(out_is(&o, "data: [DONE]\n\n"));
    CG_CHECK(s.have_usage);
    CG_CHECK_EQ_INT(s.usage.completion_tokens, 9);
    gw_sse_fini(&s);
    free(o.p);
}

CG_TEST(sse_null_usage_is_not_usage)
{
    const char *in = EV_HELLO "\n\n" EV_STOP "\n\n";
    gw_sse s;
    out_buf o;
    run_whole(&s, 1, in, &o);
    CG_CHECK(out_is(&o, in));
    CG_CHECK(!s.have_usage);
    CG_CHECK(!s.saw_done);
    CG_CHECK_EQ_INT(s.content_bytes, 5);
    gw_sse_fini(&s);
    free(o.p);
}

CG_TEST(sse_unterminated_final_event)
{
    const char *in = EV_HELLO "\n\n" EV_USAGE;
    for (int strip = 0; strip <= 1; strip++) {
        gw_sse s;
        out_buf o;
        run_whole(&s, strip, in, &o);
        const char *want = strip ? EV_HELLO "\n\n" : in;
        int ok = out_is(&o, want) && s.have_usage && s.usage.prompt_tokens == 11;
        gw_sse_fini(&s);
        free(o.p);
        CG_CHECK(ok);
    }
}

CG_TEST(sse_broken_stream_partial_event_forwarded)
{
    /* A stream cut mid-event (break_after): the partial bytes still reach the client. */
    const char *in = EV_HELLO "\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"wor";
    gw_sse s;
    out_buf o;
    run_whole(&s, 1, in, &o);
    CG_CHECK(out_is(&o, in));
    CG_CHECK(!s.have_usage);
    CG_CHECK_EQ_INT(s.content_bytes, 5);
    gw_sse_fini(&s);
    free(o.p);
}

CG_TEST(sse_oversized_event_passes_through)
{
    size_t big = GW_SSE_EVENT_MAX + 1000;
    char *in = malloc(big + 512);
    strcpy(in, "data: \"");
    size_t n = strlen(in);
    memset(in + n, 'x', big);
    n += big;
    memcpy(in + n, "\"\n\n" EV_USAGE "\n\n", strlen("\"\n\n" EV_USAGE "\n\n") + 1);
    n = strlen(in);
    size_t cuts[] = {1000, 600000, GW_SSE_EVENT_MAX + 10};
    gw_sse s;
    out_buf o = {0};
    gw_sse_init(&s, 1);
    run(&s, in, n, cuts, 3, &o);
    size_t want_n = n - strlen(EV_USAGE "\n\n");
    int ok = o.n == want_n && memcmp(o.p, in, want_n) == 0 && s.have_usage;
    gw_sse_fini(&s);
    free(o.p);
    free(in);
    CG_CHECK(ok);
}

CG_TEST(sse_mixed_line_ends)
{
    const char *in = EV_HELLO "\r\n\n" EV_USAGE "\n\r\n" EV_DONE "\r\r";
    const char *want = EV_HELLO "\r\n\n" EV_DONE "\r\r";
    gw_sse s;
    out_buf o;
    run_whole(&s, 1, in, &o);
    CG_CHECK(out_is(&o, want));
    CG_CHECK(s.have_usage && s.saw_done);
    gw_sse_fini(&s);
    free(o.p);
}

#define RS_CREATED              \
    "event: response.created\n" \
    "data: {\"type\":\"response.created\",\"response\":{\"id\":\"r1\",\"usage\":null}}\n\n"
#define RS_DELTA                          \
    "event: response.output_text.delta\n" \
    "data: {\"type\":\"response.output_text.delta\",\"delta\":\"Hello \"}\n\n"
#define RS_DONE_TEXT                     \
    "event: response.output_text.done\n" \
    "data: {\"type\":\"response.output_text.done\",\"text\":\"Hello world\"}\n\n"
#define RS_COMPLETED                                                                          \
    "event: response.completed\n"                                                             \
    "data: {\"type\":\"response.completed\",\"response\":{\"id\":\"r1\",\"usage\":"           \
    "{\"input_tokens\":5,\"output_tokens\":6,\"input_tokens_details\":{\"cached_tokens\":1}," \
    "\"total_tokens\":11}}}\n\n"

CG_TEST(sse_responses_usage)
{
    const char *in = RS_CREATED RS_DELTA RS_DELTA RS_DONE_TEXT RS_COMPLETED;
    size_t n = strlen(in);
    for (size_t cut = 1; cut < n; cut += 7) {
        gw_sse s;
        out_buf o = {0};
        /* Strip is ignored for responses streams: nothing is ever cut out. */
        gw_sse_init(&s, GW_SSE_RESPONSES | GW_SSE_STRIP_USAGE);
        size_t cuts[] = {cut};
        run(&s, in, n, cuts, 1, &o);
        int ok = out_is(&o, in) && s.have_usage && s.usage.prompt_tokens == 5 &&
                 s.usage.completion_tokens == 6 && s.usage.cached_tokens == 1 &&
                 s.content_bytes == 12;
        gw_sse_fini(&s);
        free(o.p);
        CG_CHECK(ok);
    }
}

CG_TEST(sse_responses_broken_counts_deltas)
{
    const char *in = RS_CREATED RS_DELTA RS_DELTA;
    gw_sse s;
    out_buf o;
    run_whole(&s, GW_SSE_RESPONSES, in, &o);
    CG_CHECK(!s.have_usage);
    CG_CHECK_EQ_INT(s.content_bytes, 12);
    gw_sse_fini(&s);
    free(o.p);
}

CG_TEST(sse_completions_text_counted)
{
    const char *in = "data: {\"choices\":[{\"text\":\"abc\",\"index\":0}]}\n\n";
    gw_sse s;
    out_buf o;
    run_whole(&s, 0, in, &o);
    CG_CHECK_EQ_INT(s.content_bytes, 3);
    gw_sse_fini(&s);
    free(o.p);
}

int main(void)
{
    return CG_TEST_RUN(sse_split_everywhere_lf, sse_split_everywhere_crlf, sse_split_everywhere_cr,
                       sse_byte_by_byte, sse_usage_with_choices_not_stripped, sse_multiline_data,
                       sse_null_usage_is_not_usage, sse_unterminated_final_event,
                       sse_broken_stream_partial_event_forwarded,
                       sse_oversized_event_passes_through, sse_mixed_line_ends, sse_responses_usage,
                       sse_responses_broken_counts_deltas, sse_completions_text_counted);
}
