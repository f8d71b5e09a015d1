/*
 * ledger_usage_test.c — unit tests of the shard's usage reads and retention
 * (ledger_usage.c) on a real store, and of the USAGE_SERIES / USAGE_RECORDS
 * wire codecs: UTC hour/day/month buckets across a day and a month boundary,
 * group_by with ordering, filters, record pages with a cursor (ties broken by
 * request id), retention deleting exactly the records past it, and decoders
 * refusing unordered or oversized replies.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_clock.h"
#include "cg_period.h"
#include "cg_test.h"
#include "ledger_test_fx.h"

#define HOUR_MS (3600LL * 1000)

/* A settled request of key `key` with a usage record stamped ts. */
static int settle_at(fx *f, const char *rid, const char *key, const char *model,
                     const char *provider, int64_t ts, int64_t tokens)
{
    char route[80];
    proto_rep rep;
    snprintf(route, sizeof(route), "key:%s", key);
    proto_req r = reserve_req(route, rid, 60000, tokens, tokens);
    if (apply1(f, &r, &rep) != CG_ERR_OK) {
        return -1;
    }
    proto_req s = settle_req(route, rid, tokens, tokens);
    proto_usage *u = &s.u.settle.usage;
    s.u.settle.has_usage = 1;
    u->ts_ms = ts;
    snprintf(u->org, sizeof(u->org), "acme");
    snprintf(u->key_id, sizeof(u->key_id), "%s", key);
    snprintf(u->model, sizeof(u->model), "%s", model);
    snprintf(u->provider, sizeof(u->provider), "%s", provider);
    snprintf(u->request_id, sizeof(u->request_id), "%s", rid);
    u->prompt_tokens = tokens;
    u->completion_tokens = 2 * tokens;
    u->cost_nusd = 3 * tokens;
    u->status = 200;
    return apply1(f, &s, &rep);
}

static int series(fx *f, uint8_t gran, uint8_t by, const char *provider, proto_rep *rep)
{
    proto_req r = simple_req(PROTO_OP_USAGE_SERIES, "", NULL);
    snprintf(r.u.usage_series.f.org, sizeof(r.u.usage_series.f.org), "acme");
    snprintf(r.u.usage_series.f.provider, sizeof(r.u.usage_series.f.provider), "%s", provider);
    r.u.usage_series.granularity = gran;
    r.u.usage_series.group_by = by;
    ledger_rep_clear(rep); /* apply1 only zeroes it: free the last reply's points */
    return apply1(f, &r, rep);
}

static int64_t at(const char *rfc3339)
{
    int64_t t = 0;
    cg_time_parse(rfc3339, &t);
    return t;
}

CG_TEST(series_buckets_and_group_by)
{
    fx f;
    proto_rep rep = {0};
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_key(&f, "k1", NULL, 0), CG_ERR_OK);
    CG_CHECK_EQ_INT(put_key(&f, "k2", NULL, 0), CG_ERR_OK);
    /* 23:30 on Jan 31, 00:10 and 01:00 on Feb 1: two days, two months, three hours. */
    CG_CHECK_EQ_INT(settle_at(&f, "r1", "k1", "m-b", "openai", at("2026-01-31T23:30:00Z"), 1), 0);
    CG_CHECK_EQ_INT(settle_at(&f, "r2", "k2", "m-a", "openai", at("2026-02-01T00:10:00Z"), 2), 0);
    CG_CHECK_EQ_INT(settle_at(&f, "r3", "k1", "m-a", "other", at("2026-02-01T01:00:00Z"), 4), 0);

    CG_CHECK_EQ_INT(series(&f, PROTO_GRAN_HOUR, PROTO_BY_NONE, "", &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.usage_series.n, 3);
    CG_CHECK_EQ_INT(rep.u.usage_series.points[0].start_ms, at("2026-01-31T23:00:00Z"));
    CG_CHECK_EQ_INT(rep.u.usage_series.points[2].start_ms, at("2026-02-01T01:00:00Z"));

    CG_CHECK_EQ_INT(series(&f, PROTO_GRAN_DAY, PROTO_BY_NONE, "", &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.usage_series.n, 2);
    CG_CHECK_EQ_INT(rep.u.usage_series.points[0].start_ms, at("2026-01-31"));
    CG_CHECK_EQ_INT(rep.u.usage_series.points[0].totals.requests, 1);
    CG_CHECK_EQ_INT(rep.u.usage_series.points[1].start_ms, at("2026-02-01"));
    CG_CHECK_EQ_INT(rep.u.usage_series.points[1].totals.requests, 2);
    CG_CHECK_EQ_INT(rep.u.usage_series.points[1].totals.prompt_tokens, 6);
    CG_CHECK_EQ_INT(rep.u.usage_series.points[1].totals.completion_tokens, 12);
    CG_CHECK_EQ_INT(rep.u.usage_series.points[1].totals.cost_nusd, 18);

    CG_CHECK_EQ_INT(series(&f, PROTO_GRAN_MONTH, PROTO_BY_NONE, "", &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.usage_series.n, 2);
    CG_CHECK_EQ_INT(rep.u.usage_series.points[0].start_ms, at("2026-01-01"));
    CG_CHECK_EQ_INT(rep.u.usage_series.points[1].start_ms, at("2026-02-01"));

    /* Whole range by model: ordered by value, start 0. */
    CG_CHECK_EQ_INT(series(&f, PROTO_GRAN_NONE, PROTO_BY_MODEL, "", &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.usage_series.n, 2);
    CG_CHECK_EQ_STR(rep.u.usage_series.points[0].value, "m-a");
    CG_CHECK_EQ_INT(rep.u.usage_series.points[0].start_ms, 0);
    CG_CHECK_EQ_INT(rep.u.usage_series.points[0].totals.requests, 2);
    CG_CHECK_EQ_STR(rep.u.usage_series.points[1].value, "m-b");

    /* Day x key, and a provider filter. */
    CG_CHECK_EQ_INT(series(&f, PROTO_GRAN_DAY, PROTO_BY_KEY, "", &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.usage_series.n, 3);
    CG_CHECK_EQ_STR(rep.u.usage_series.points[1].value, "k1");
    CG_CHECK_EQ_STR(rep.u.usage_series.points[2].value, "k2");
    CG_CHECK_EQ_INT(series(&f, PROTO_GRAN_NONE, PROTO_BY_NONE, "other", &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.usage_series.n, 1);
    CG_CHECK_EQ_INT(rep.u.usage_series.points[0].totals.requests, 1);
    CG_CHECK_EQ_INT(series(&f, PROTO_GRAN_NONE, PROTO_BY_NONE, "nope", &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.usage_series.n, 0);
    ledger_rep_clear(&rep);
    fx_fini(&f);
}

static int records(fx *f, int64_t after_ts, const char *after, uint32_t limit, proto_rep *rep)
{
    proto_req r = simple_req(PROTO_OP_USAGE_RECORDS, "", NULL);
    snprintf(r.u.usage_records.f.org, sizeof(r.u.usage_records.f.org), "acme");
    r.u.usage_records.after_ts_ms = after_ts;
    snprintf(r.u.usage_records.after_rid, sizeof(r.u.usage_records.after_rid), "%s", after);
    r.u.usage_records.limit = limit;
    ledger_rep_clear(rep); /* apply1 only zeroes it: free the last reply's records */
    return apply1(f, &r, rep);
}

CG_TEST(records_pages_with_cursor)
{
    fx f;
    proto_rep rep = {0};
    char rid[16], seen[8][PROTO_REQID_MAX + 1];
    int n = 0;
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_key(&f, "k1", NULL, 0), CG_ERR_OK);
    /* Seven records; r4..r6 share one timestamp (ordered by request id). */
    int64_t t0 = at("2026-03-01T10:00:00Z");
    for (int i = 0; i < 7; i++) {
        snprintf(rid, sizeof(rid), "r%d", i);
        CG_CHECK_EQ_INT(settle_at(&f, rid, "k1", "m", "p", t0 + (i < 4 ? i : 4) * 1000, 1), 0);
    }
    int64_t ts = 0;
    char after[PROTO_REQID_MAX + 1] = "";
    static const uint32_t want_n[] = {3, 3, 1};
    for (int page = 0; page < 3; page++) {
        CG_CHECK_EQ_INT(records(&f, ts, after, 3, &rep), CG_ERR_OK);
        CG_CHECK_EQ_INT(rep.u.usage_records.n, want_n[page]);
        CG_CHECK_EQ_INT(rep.u.usage_records.has_more, page < 2);
        for (uint32_t i = 0; i < rep.u.usage_records.n; i++) {
            snprintf(seen[n++], sizeof(seen[0]), "%s", rep.u.usage_records.records[i].request_id);
        }
        ts = rep.u.usage_records.records[rep.u.usage_records.n - 1].ts_ms;
        snprintf(after, sizeof(after), "%s", seen[n - 1]);
        ledger_rep_clear(&rep);
    }
    CG_CHECK_EQ_INT(n, 7);
    for (int i = 0; i < 7; i++) {
        snprintf(rid, sizeof(rid), "r%d", i);
        CG_CHECK_EQ_STR(seen[i], rid);
    }
    /* After the last one: nothing, no more. */
    CG_CHECK_EQ_INT(records(&f, ts, after, 3, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.usage_records.n, 0);
    CG_CHECK_EQ_INT(rep.u.usage_records.has_more, 0);
    /* A limit out of bounds is refused. */
    CG_CHECK_EQ_INT(records(&f, 0, "", PROTO_USAGE_RECORDS_MAX + 1, &rep), CG_ERR_INVAL);
    ledger_rep_clear(&rep);
    fx_fini(&f);
}

CG_TEST(retention_deletes_only_past_it)
{
    fx f;
    proto_rep rep = {0};
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_key(&f, "k1", NULL, 0), CG_ERR_OK);
    int64_t now = cg_now_ms();
    CG_CHECK_EQ_INT(settle_at(&f, "old", "k1", "m", "p", now - 3 * DAY_MS, 1), 0);
    CG_CHECK_EQ_INT(settle_at(&f, "mid", "k1", "m", "p", now - DAY_MS - HOUR_MS, 1), 0);
    CG_CHECK_EQ_INT(settle_at(&f, "new", "k1", "m", "p", now - HOUR_MS, 1), 0);
    /* Forever by default: all three. */
    CG_CHECK_EQ_INT(records(&f, 0, "", 10, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.usage_records.n, 3);
    ledger_rep_clear(&rep);
    /* Two days: the next batch's sweep deletes "old" only. */
    ledger_store_set_usage_retention(f.s, 2 * DAY_MS);
    CG_CHECK_EQ_INT(records(&f, 0, "", 10, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.usage_records.n, 2);
    CG_CHECK_EQ_STR(rep.u.usage_records.records[0].request_id, "mid");
    ledger_rep_clear(&rep);
    /* A day later (test clock) "mid" is past it too. */
    cg_clock_set_offset_ms(DAY_MS);
    CG_CHECK_EQ_INT(records(&f, 0, "", 10, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.usage_records.n, 1);
    CG_CHECK_EQ_STR(rep.u.usage_records.records[0].request_id, "new");
    ledger_rep_clear(&rep);
    fx_fini(&f);
}

CG_TEST(codecs_round_trip_and_refuse_disorder)
{
    msgpack_sbuffer sb;
    proto_rep in[2], *out = NULL;
    proto_usage_point pts[2];
    proto_usage recs[2];
    uint32_t n = 0;
    msgpack_sbuffer_init(&sb);
    memset(in, 0, sizeof(in));
    memset(pts, 0, sizeof(pts));
    memset(recs, 0, sizeof(recs));
    pts[0].start_ms = 1000;
    snprintf(pts[0].value, sizeof(pts[0].value), "a");
    pts[0].totals.requests = 7;
    pts[1].start_ms = 1000;
    snprintf(pts[1].value, sizeof(pts[1].value), "b");
    pts[1].totals.cost_nusd = INT64_MAX;
    in[0].op = PROTO_OP_USAGE_SERIES;
    in[0].u.usage_series.n = 2;
    in[0].u.usage_series.points = pts;
    for (int i = 0; i < 2; i++) {
        recs[i].ts_ms = 5;
        snprintf(recs[i].org, sizeof(recs[i].org), "acme");
        snprintf(recs[i].request_id, sizeof(recs[i].request_id), "r%d", i);
    }
    in[1].op = PROTO_OP_USAGE_RECORDS;
    in[1].u.usage_records.n = 2;
    in[1].u.usage_records.has_more = 1;
    in[1].u.usage_records.records = recs;
    CG_CHECK_EQ_INT(proto_rep_encode(in, 2, &sb), CG_ERR_OK);
    CG_CHECK_EQ_INT(proto_rep_decode(sb.data, sb.size, &out, &n), CG_ERR_OK);
    CG_CHECK_EQ_INT(n, 2);
    CG_CHECK(memcmp(out[0].u.usage_series.points, pts, sizeof(pts)) == 0);
    CG_CHECK(memcmp(out[1].u.usage_records.records, recs, sizeof(recs)) == 0);
    CG_CHECK_EQ_INT(out[1].u.usage_records.has_more, 1);
    proto_rep_free(out, n);
    /* Points out of order are refused. The encoder asserts order, so encode them in order
     * and swap the two value strings ("a" and "b") in the bytes. */
    msgpack_sbuffer_clear(&sb);
    CG_CHECK_EQ_INT(proto_rep_encode(in, 1, &sb), CG_ERR_OK);
    char *a = memchr(sb.data, 0xa1, sb.size); /* fixstr of length 1: "a" */
    CG_CHECK(a != NULL && a[1] == 'a');
    char *b = memchr(a + 2, 0xa1, sb.size - (size_t)(a + 2 - sb.data));
    CG_CHECK(b != NULL && b[1] == 'b');
    a[1] = 'b';
    b[1] = 'a';
    CG_CHECK_EQ_INT(proto_rep_decode(sb.data, sb.size, &out, &n), CG_ERR_PROTO);
    /* A request: granularity out of range is refused. */
    proto_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.op = PROTO_OP_USAGE_SERIES;
    snprintf(rq.u.usage_series.f.org, sizeof(rq.u.usage_series.f.org), "acme");
    rq.u.usage_series.granularity = PROTO_GRAN_MONTH;
    rq.u.usage_series.group_by = PROTO_BY_GROUP;
    msgpack_sbuffer_clear(&sb);
    CG_CHECK_EQ_INT(proto_req_encode(&rq, 1, &sb), CG_ERR_OK);
    proto_req *rout = NULL;
    CG_CHECK_EQ_INT(proto_req_decode(sb.data, sb.size, &rout, &n), CG_ERR_OK);
    CG_CHECK(memcmp(&rout[0].u.usage_series, &rq.u.usage_series, sizeof(rq.u.usage_series)) == 0);
    proto_req_free(rout, n);
    CG_CHECK((uint8_t)sb.data[sb.size - 2] == PROTO_GRAN_MONTH);
    sb.data[sb.size - 2] = 4; /* no such granularity */
    CG_CHECK_EQ_INT(proto_req_decode(sb.data, sb.size, &rout, &n), CG_ERR_PROTO);
    msgpack_sbuffer_destroy(&sb);
}

int main(void)
{
    return CG_TEST_RUN(series_buckets_and_group_by, records_pages_with_cursor,
                       retention_deletes_only_past_it, codecs_round_trip_and_refuse_disorder);
}
