/*
 * ledger_rollup_test.c — unit tests of the hourly usage rollups (db_usage_hour) on a real
 * store: USAGE_QUERY and USAGE_SERIES answers compared with a brute-force sum over the
 * records the test wrote, for random ranges (aligned to hours or not, from 0, to 0) and every
 * filter / group_by / granularity; a re-put of a stored record changing nothing; a month with
 * more than LEDGER_USAGE_SCAN_MAX records (the bug: that used to be CG_ERR_TOOBIG); retention
 * floored to a whole UTC hour for records and rollups alike; and the upgrade of a store
 * written before rollups (rebuilt from the raw log at open, exactly once).
 *
 * Records are written the way a key lease's settle carries them (SETTLE with usage records),
 * up to PROTO_SETTLE_RECS_MAX per settle, many settles per batch.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_clock.h"
#include "cg_period.h"
#include "cg_test.h"
#include "ledger_test_fx.h"

#define HOUR_MS (3600LL * 1000)
#define OPS_PER_APPLY 32

static const char *const keys[] = {"k0", "k1", "k2", "k3"};
static const char *const models[] = {"m-a", "m-b", "m-c"};
static const char *const providers[] = {"openai", "other"};
static const char *const groups[] = {"", "g0", "g1"};
static const char *const customers[] = {"", "c0", "c1"};
static const char *const orgs[] = {"acme", "beta"};
#define NOF(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static uint64_t rnd_below(uint64_t n)
{
    return rnd() % n;
}

static int64_t at(const char *rfc3339)
{
    int64_t t = 0;
    cg_time_parse(rfc3339, &t);
    return t;
}

/* Put keys k0..k3 (org "acme": a record's org field is what usage reads filter on). */
static int put_keys(fx *f)
{
    for (size_t i = 0; i < NOF(keys); i++) {
        if (put_key(f, keys[i], NULL, 0) != CG_ERR_OK) {
            return -1;
        }
    }
    return 0;
}

/*
 * Write recs through the store: grouped into settles of one key each (a lease settle's
 * records all belong to its key), PROTO_SETTLE_RECS_MAX records per settle at most,
 * OPS_PER_APPLY settles per batch. Settle ids are unique per call via tag.
 */
static int write_recs(fx *f, const proto_usage *recs, size_t n, const char *tag)
{
    proto_req *reqs = calloc(OPS_PER_APPLY, sizeof(*reqs));
    proto_rep *reps = calloc(OPS_PER_APPLY, sizeof(*reps));
    proto_usage *bufs = calloc((size_t)OPS_PER_APPLY * PROTO_SETTLE_RECS_MAX, sizeof(*bufs));
    ledger_op ops[OPS_PER_APPLY];
    int rc = reqs != NULL && reps != NULL && bufs != NULL ? 0 : -1;
    unsigned seq = 0;
    for (size_t ki = 0; rc == 0 && ki < NOF(keys); ki++) {
        size_t i = 0;
        while (rc == 0) {
            uint32_t nops = 0;
            while (nops < OPS_PER_APPLY) {
                proto_usage *b = bufs + (size_t)nops * PROTO_SETTLE_RECS_MAX;
                uint32_t m = 0;
                for (; i < n && m < PROTO_SETTLE_RECS_MAX; i++) {
                    if (strcmp(recs[i].key_id, keys[ki]) == 0) {
                        b[m++] = recs[i];
                    }
                }
                if (m == 0) {
                    break;
                }
                char route[16], rid[48];
                snprintf(route, sizeof(route), "key:%s", keys[ki]);
                snprintf(rid, sizeof(rid), "lease-%s-%u", tag, seq++);
                reqs[nops] = settle_req(route, rid, 0, 0);
                reqs[nops].u.settle.rec_n = m;
                reqs[nops].u.settle.recs = b;
                memset(&reps[nops], 0, sizeof(reps[nops]));
                ops[nops] = (ledger_op){.req = &reqs[nops], .rep = &reps[nops]};
                nops++;
            }
            if (nops == 0) {
                break;
            }
            if (ledger_store_apply(f->s, ops, nops) != CG_ERR_OK) {
                rc = -1;
            }
            for (uint32_t j = 0; j < nops; j++) {
                if (reps[j].status != CG_ERR_OK) {
                    fprintf(stderr, "  settle status %u\n", reps[j].status);
                    rc = -1;
                }
            }
        }
    }
    free(reqs);
    free(reps);
    free(bufs);
    return rc;
}

/* A random record stamped in [base, base + span). Every 10th lies on an hour boundary. */
static void rand_rec(proto_usage *u, size_t i, int64_t base, int64_t span)
{
    memset(u, 0, sizeof(*u));
    u->ts_ms = base + (int64_t)rnd_below((uint64_t)span);
    if (i % 10 == 0) {
        u->ts_ms = u->ts_ms / HOUR_MS * HOUR_MS - (i % 20 == 0 ? 1 : 0);
    }
    snprintf(u->org, sizeof(u->org), "%s", orgs[rnd_below(10) == 0 ? 1 : 0]);
    snprintf(u->key_id, sizeof(u->key_id), "%s", keys[rnd_below(NOF(keys))]);
    snprintf(u->model, sizeof(u->model), "%s", models[rnd_below(NOF(models))]);
    snprintf(u->provider, sizeof(u->provider), "%s", providers[rnd_below(NOF(providers))]);
    snprintf(u->group, sizeof(u->group), "%s", groups[rnd_below(NOF(groups))]);
    snprintf(u->customer, sizeof(u->customer), "%s", customers[rnd_below(NOF(customers))]);
    snprintf(u->request_id, sizeof(u->request_id), "r%zu", i);
    u->prompt_tokens = (int64_t)rnd_below(5000);
    u->completion_tokens = (int64_t)rnd_below(3000);
    u->cost_nusd = (int64_t)rnd_below(1000000);
    u->status = 200;
}

/* ---- brute force over the records the test wrote ---- */

static int bf_match(const proto_usage *u, const proto_usage_filter *f)
{
    int64_t to = f->to_ms == 0 ? INT64_MAX : f->to_ms;
    return u->ts_ms >= f->from_ms && u->ts_ms < to && strcmp(u->org, f->org) == 0 &&
           (f->key_id[0] == '\0' || strcmp(u->key_id, f->key_id) == 0) &&
           (f->group[0] == '\0' || strcmp(u->group, f->group) == 0) &&
           (f->customer[0] == '\0' || strcmp(u->customer, f->customer) == 0) &&
           (f->model[0] == '\0' || strcmp(u->model, f->model) == 0) &&
           (f->provider[0] == '\0' || strcmp(u->provider, f->provider) == 0);
}

static void bf_add(proto_usage_totals *t, const proto_usage *u)
{
    t->requests++;
    t->prompt_tokens += u->prompt_tokens;
    t->completion_tokens += u->completion_tokens;
    t->cost_nusd += u->cost_nusd;
}

static proto_usage_totals bf_totals(const proto_usage *recs, size_t n, const proto_usage_filter *f)
{
    proto_usage_totals t = {0};
    for (size_t i = 0; i < n; i++) {
        if (bf_match(&recs[i], f)) {
            bf_add(&t, &recs[i]);
        }
    }
    return t;
}

static int64_t bf_period(uint8_t gran, int64_t ts)
{
    int64_t day = ts / DAY_MS, y;
    unsigned m, d;
    switch (gran) {
    case PROTO_GRAN_HOUR:
        return ts / HOUR_MS * HOUR_MS;
    case PROTO_GRAN_DAY:
        return day * DAY_MS;
    case PROTO_GRAN_MONTH:
        cg_civil_from_days(day, &y, &m, &d);
        return cg_days_from_civil(y, m, 1) * DAY_MS;
    default:
        return 0;
    }
}

static const char *bf_by(const proto_usage *u, uint8_t by)
{
    switch (by) {
    case PROTO_BY_KEY:
        return u->key_id;
    case PROTO_BY_MODEL:
        return u->model;
    case PROTO_BY_PROVIDER:
        return u->provider;
    case PROTO_BY_CUSTOMER:
        return u->customer;
    case PROTO_BY_GROUP:
        return u->group;
    default:
        return "";
    }
}

static int point_cmp(const void *a, const void *b)
{
    const proto_usage_point *x = a, *y = b;
    if (x->start_ms != y->start_ms) {
        return x->start_ms < y->start_ms ? -1 : 1;
    }
    return strcmp(x->value, y->value);
}

/* The expected series, sorted like the reply; *n points (cap: max). */
static void bf_series(const proto_usage *recs, size_t n, const proto_usage_filter *f, uint8_t gran,
                      uint8_t by, proto_usage_point *pts, size_t max, size_t *np)
{
    *np = 0;
    for (size_t i = 0; i < n; i++) {
        if (!bf_match(&recs[i], f)) {
            continue;
        }
        int64_t start = bf_period(gran, recs[i].ts_ms);
        const char *v = bf_by(&recs[i], by);
        size_t j = 0;
        while (j < *np && !(pts[j].start_ms == start && strcmp(pts[j].value, v) == 0)) {
            j++;
        }
        if (j == *np) {
            if (*np == max) {
                continue;
            }
            memset(&pts[j], 0, sizeof(pts[j]));
            pts[j].start_ms = start;
            snprintf(pts[j].value, sizeof(pts[j].value), "%s", v);
            (*np)++;
        }
        bf_add(&pts[j].totals, &recs[i]);
    }
    qsort(pts, *np, sizeof(*pts), point_cmp);
}

/* ---- the ops under test ---- */

static int query(fx *f, const proto_usage_filter *flt, proto_usage_totals *out)
{
    proto_rep rep;
    proto_req r = simple_req(PROTO_OP_USAGE_QUERY, "", NULL);
    memcpy(r.u.usage_query.org, flt->org, sizeof(r.u.usage_query.org));
    memcpy(r.u.usage_query.key_id, flt->key_id, sizeof(r.u.usage_query.key_id));
    memcpy(r.u.usage_query.group, flt->group, sizeof(r.u.usage_query.group));
    memcpy(r.u.usage_query.customer, flt->customer, sizeof(r.u.usage_query.customer));
    memcpy(r.u.usage_query.model, flt->model, sizeof(r.u.usage_query.model));
    r.u.usage_query.from_ms = flt->from_ms;
    r.u.usage_query.to_ms = flt->to_ms;
    int st = apply1(f, &r, &rep);
    *out = rep.u.usage.totals;
    return st;
}

static int series(fx *f, const proto_usage_filter *flt, uint8_t gran, uint8_t by, proto_rep *rep)
{
    proto_req r = simple_req(PROTO_OP_USAGE_SERIES, "", NULL);
    r.u.usage_series.f = *flt;
    r.u.usage_series.granularity = gran;
    r.u.usage_series.group_by = by;
    ledger_rep_clear(rep);
    return apply1(f, &r, rep);
}

static int totals_eq(const proto_usage_totals *a, const proto_usage_totals *b)
{
    return a->requests == b->requests && a->prompt_tokens == b->prompt_tokens &&
           a->completion_tokens == b->completion_tokens && a->cost_nusd == b->cost_nusd;
}

/* A random time in [base - HOUR, base + span + HOUR): aligned to an hour half of the time. */
static int64_t rand_time(int64_t base, int64_t span)
{
    int64_t t = base - HOUR_MS + (int64_t)rnd_below((uint64_t)(span + 2 * HOUR_MS));
    return rnd_below(2) == 0 ? t / HOUR_MS * HOUR_MS : t;
}

/* A random filter over [base, base + span): from 0 / to 0 sometimes, same-hour ranges too. */
static void rand_filter(proto_usage_filter *flt, int64_t base, int64_t span, int with_provider)
{
    memset(flt, 0, sizeof(*flt));
    snprintf(flt->org, sizeof(flt->org), "%s", orgs[rnd_below(4) == 0 ? 1 : 0]);
    switch (rnd_below(6)) {
    case 0:
        flt->from_ms = 0;
        flt->to_ms = rnd_below(2) == 0 ? 0 : rand_time(base, span);
        break;
    case 1:
        flt->from_ms = rand_time(base, span);
        flt->to_ms = 0;
        break;
    case 2: /* inside one hour, or crossing one boundary */
        flt->from_ms = rand_time(base, span) + (int64_t)rnd_below(HOUR_MS);
        flt->to_ms = flt->from_ms + (int64_t)rnd_below(2 * HOUR_MS);
        break;
    default:
        flt->from_ms = rand_time(base, span);
        flt->to_ms = rand_time(base, span); /* sometimes before from: an empty range */
        break;
    }
    if (rnd_below(3) == 0) {
        snprintf(flt->key_id, sizeof(flt->key_id), "%s", keys[rnd_below(NOF(keys))]);
    }
    if (rnd_below(3) == 0) {
        snprintf(flt->model, sizeof(flt->model), "%s", models[rnd_below(NOF(models))]);
    }
    if (rnd_below(3) == 0) {
        snprintf(flt->group, sizeof(flt->group), "%s", groups[1 + rnd_below(NOF(groups) - 1)]);
    }
    if (rnd_below(3) == 0) {
        snprintf(flt->customer, sizeof(flt->customer), "%s",
                 customers[1 + rnd_below(NOF(customers) - 1)]);
    }
    if (with_provider && rnd_below(3) == 0) {
        snprintf(flt->provider, sizeof(flt->provider), "%s", providers[rnd_below(NOF(providers))]);
    }
}

/* Check USAGE_QUERY against the brute force for nq random filters; 0 when all agree. */
static int check_queries(fx *f, const proto_usage *recs, size_t n, int64_t base, int64_t span,
                         int nq)
{
    for (int q = 0; q < nq; q++) {
        proto_usage_filter flt;
        proto_usage_totals got, want;
        rand_filter(&flt, base, span, 0);
        want = bf_totals(recs, n, &flt);
        int st = query(f, &flt, &got);
        if (st != CG_ERR_OK || !totals_eq(&got, &want)) {
            fprintf(
                stderr,
                "  query %d [%lld, %lld) org %s key %s model %s group %s customer %s: status %d,"
                " requests %lld (want %lld), cost %lld (want %lld)\n",
                q, (long long)flt.from_ms, (long long)flt.to_ms, flt.org, flt.key_id, flt.model,
                flt.group, flt.customer, st, (long long)got.requests, (long long)want.requests,
                (long long)got.cost_nusd, (long long)want.cost_nusd);
            return -1;
        }
    }
    return 0;
}

/* Check USAGE_SERIES (every granularity x group_by) for nq random filters; 0 when all agree. */
static int check_series(fx *f, const proto_usage *recs, size_t n, int64_t base, int64_t span,
                        int nq)
{
    size_t max = n + 1, np;
    proto_usage_point *pts = malloc(max * sizeof(*pts));
    proto_rep rep = {0};
    int rc = pts != NULL ? 0 : -1;
    for (int q = 0; rc == 0 && q < nq; q++) {
        proto_usage_filter flt;
        rand_filter(&flt, base, span, 1);
        for (uint8_t gran = PROTO_GRAN_NONE; rc == 0 && gran <= PROTO_GRAN_MONTH; gran++) {
            for (uint8_t by = PROTO_BY_NONE; rc == 0 && by <= PROTO_BY_GROUP; by++) {
                bf_series(recs, n, &flt, gran, by, pts, max, &np);
                int st = series(f, &flt, gran, by, &rep);
                int same = st == CG_ERR_OK && rep.u.usage_series.n == np;
                for (size_t i = 0; same && i < np; i++) {
                    const proto_usage_point *g = &rep.u.usage_series.points[i];
                    same = g->start_ms == pts[i].start_ms && strcmp(g->value, pts[i].value) == 0 &&
                           totals_eq(&g->totals, &pts[i].totals);
                }
                if (!same) {
                    fprintf(stderr,
                            "  series %d gran %u by %u [%lld, %lld): status %d, %u points (want "
                            "%zu)\n",
                            q, gran, by, (long long)flt.from_ms, (long long)flt.to_ms, st,
                            rep.u.usage_series.n, np);
                    rc = -1;
                }
            }
        }
    }
    ledger_rep_clear(&rep);
    free(pts);
    return rc;
}

/* ---- tests ---- */

#define RAND_N 4000

CG_TEST(random_ranges_match_brute_force)
{
    fx f;
    int64_t base = at("2026-03-30T00:00:00Z"), span = 3 * DAY_MS; /* crosses a month end */
    proto_usage *recs = calloc(RAND_N, sizeof(*recs));
    CG_CHECK(recs != NULL);
    CG_CHECK(fx_init(&f, 1 << 26) == 0);
    CG_CHECK_EQ_INT(put_keys(&f), 0);
    for (size_t i = 0; i < RAND_N; i++) {
        rand_rec(&recs[i], i, base, span);
    }
    CG_CHECK_EQ_INT(write_recs(&f, recs, RAND_N, "a"), 0);
    CG_CHECK_EQ_INT(check_queries(&f, recs, RAND_N, base, span, 1500), 0);
    /* Extreme bounds: the hour arithmetic must neither overflow nor lose a record. */
    const int64_t ext[][2] = {{INT64_MIN, 0},
                              {INT64_MIN, INT64_MAX},
                              {-HOUR_MS / 2, base + HOUR_MS + 5},
                              {INT64_MIN + 1, base + DAY_MS},
                              {base + 5, INT64_MAX},
                              {INT64_MAX - 1, 0}};
    for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
        proto_usage_filter flt = {.from_ms = ext[i][0], .to_ms = ext[i][1]};
        proto_usage_totals got, want;
        snprintf(flt.org, sizeof(flt.org), "acme");
        want = bf_totals(recs, RAND_N, &flt);
        CG_CHECK_EQ_INT(query(&f, &flt, &got), CG_ERR_OK);
        CG_CHECK(totals_eq(&got, &want));
    }
    CG_CHECK_EQ_INT(check_series(&f, recs, RAND_N, base, span, 40), 0);
    fx_fini(&f);
    free(recs);
}

CG_TEST(reput_of_a_stored_record_changes_nothing)
{
    fx f;
    int64_t base = at("2026-05-10T10:00:00Z");
    proto_usage recs[3];
    proto_usage_filter whole = {.from_ms = base - DAY_MS, .to_ms = base + DAY_MS};
    proto_usage_filter part = {.from_ms = base + 1, .to_ms = base + 2 * HOUR_MS + 7};
    proto_usage_totals t1, t2, want;
    snprintf(whole.org, sizeof(whole.org), "acme");
    snprintf(part.org, sizeof(part.org), "acme");
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_keys(&f), 0);
    for (size_t i = 0; i < 3; i++) {
        rand_rec(&recs[i], i + 1, base + 1, 2 * HOUR_MS);
        snprintf(recs[i].org, sizeof(recs[i].org), "acme");
    }
    CG_CHECK_EQ_INT(write_recs(&f, recs, 3, "first"), 0);
    want = bf_totals(recs, 3, &whole);
    CG_CHECK_EQ_INT(want.requests, 3);
    CG_CHECK_EQ_INT(query(&f, &whole, &t1), CG_ERR_OK);
    CG_CHECK(totals_eq(&t1, &want));
    CG_CHECK_EQ_INT(query(&f, &part, &t1), CG_ERR_OK);
    /* The same records again (same ts and request id) in other settles, amounts changed: the
     * stored records stand and no rollup counts them twice. */
    for (size_t i = 0; i < 3; i++) {
        recs[i].cost_nusd += 1000;
    }
    CG_CHECK_EQ_INT(write_recs(&f, recs, 3, "again"), 0);
    CG_CHECK_EQ_INT(query(&f, &whole, &t2), CG_ERR_OK);
    CG_CHECK(totals_eq(&t2, &want));
    CG_CHECK_EQ_INT(query(&f, &part, &t2), CG_ERR_OK);
    CG_CHECK(totals_eq(&t1, &t2));
    fx_fini(&f);
}

#define BIG_N (LEDGER_USAGE_SCAN_MAX + 50000)

/* The bug: more than LEDGER_USAGE_SCAN_MAX records of one org in a month. */
CG_TEST(a_month_past_the_raw_scan_cap_answers_exactly)
{
    fx f;
    int64_t base = at("2026-04-01T00:00:00Z"), span = 30 * DAY_MS;
    proto_usage *recs = calloc(BIG_N, sizeof(*recs));
    proto_usage_totals got, want;
    proto_rep rep = {0};
    CG_CHECK(recs != NULL);
    CG_CHECK(fx_init(&f, 1ULL << 30) == 0);
    CG_CHECK_EQ_INT(put_keys(&f), 0);
    for (size_t i = 0; i < BIG_N; i++) {
        rand_rec(&recs[i], i, base, span);
        snprintf(recs[i].org, sizeof(recs[i].org), "bench");
    }
    int64_t t0 = cg_mono_ms();
    CG_CHECK_EQ_INT(write_recs(&f, recs, BIG_N, "big"), 0);
    int64_t t1 = cg_mono_ms();
    proto_usage_filter month = {.from_ms = base, .to_ms = base + span};
    snprintf(month.org, sizeof(month.org), "bench");
    want = bf_totals(recs, BIG_N, &month);
    CG_CHECK(want.requests > LEDGER_USAGE_SCAN_MAX);
    CG_CHECK_EQ_INT(query(&f, &month, &got), CG_ERR_OK);
    int64_t t2 = cg_mono_ms();
    CG_CHECK(totals_eq(&got, &want));
    /* Everything (from 0 to "now"), and a range with partial hours at both ends. */
    proto_usage_filter all = {.from_ms = 0, .to_ms = 0};
    snprintf(all.org, sizeof(all.org), "bench");
    CG_CHECK_EQ_INT(query(&f, &all, &got), CG_ERR_OK);
    want = bf_totals(recs, BIG_N, &all);
    CG_CHECK_EQ_INT(got.requests, BIG_N);
    CG_CHECK(totals_eq(&got, &want));
    proto_usage_filter odd = {.from_ms = base + 1234567, .to_ms = base + span - 7654321};
    snprintf(odd.org, sizeof(odd.org), "bench");
    snprintf(odd.key_id, sizeof(odd.key_id), "k2");
    CG_CHECK_EQ_INT(query(&f, &odd, &got), CG_ERR_OK);
    want = bf_totals(recs, BIG_N, &odd);
    CG_CHECK(totals_eq(&got, &want));
    /* The series by day over the month: 30 points summing to the month. */
    want = bf_totals(recs, BIG_N, &month);
    CG_CHECK_EQ_INT(series(&f, &month, PROTO_GRAN_DAY, PROTO_BY_NONE, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.usage_series.n, 30);
    int64_t sum = 0;
    for (uint32_t i = 0; i < rep.u.usage_series.n; i++) {
        sum += rep.u.usage_series.points[i].totals.requests;
    }
    CG_CHECK_EQ_INT(sum, want.requests);
    ledger_rep_clear(&rep);
    fprintf(stderr, "  %d records written in %lld ms; month USAGE_QUERY %lld ms\n", BIG_N,
            (long long)(t1 - t0), (long long)(t2 - t1));
    /* The same log as a pre-rollup store: the rebuild at open gives the same month. */
    CG_CHECK_EQ_INT(ledger_store_test_pre_rollup(f.s, 0), CG_ERR_OK);
    ledger_store_close(f.s);
    f.s = NULL;
    int64_t t3 = cg_mono_ms();
    CG_CHECK_EQ_INT(fx_open(&f, 1ULL << 30), 0);
    int64_t t4 = cg_mono_ms();
    CG_CHECK_EQ_INT(query(&f, &month, &got), CG_ERR_OK);
    want = bf_totals(recs, BIG_N, &month);
    CG_CHECK(totals_eq(&got, &want));
    fprintf(stderr, "  open with a rebuild of %d records: %lld ms\n", BIG_N, (long long)(t4 - t3));
    fx_fini(&f);
    free(recs);
}

/* One busy hour past the raw scan cap: a range ending inside it (as "now" does: the gateway
 * sends to = now) is the hour's rollup minus the few records after the end. */
CG_TEST(a_busy_partial_hour_answers_exactly)
{
    fx f;
    int64_t h = at("2026-04-02T10:00:00Z");
    proto_usage *recs = calloc(BIG_N, sizeof(*recs));
    proto_usage_totals got, want;
    CG_CHECK(recs != NULL);
    CG_CHECK(fx_init(&f, 1ULL << 30) == 0);
    CG_CHECK_EQ_INT(put_keys(&f), 0);
    for (size_t i = 0; i < BIG_N; i++) {
        rand_rec(&recs[i], i, h, 50 * 60 * 1000); /* 10:00 .. 10:50 */
        snprintf(recs[i].org, sizeof(recs[i].org), "bench");
        if (i % 1000 == 0) {
            recs[i].ts_ms = h + 55 * 60 * 1000 + (int64_t)i; /* a few after the ranges' end */
        }
    }
    CG_CHECK_EQ_INT(write_recs(&f, recs, BIG_N, "busy"), 0);
    int64_t ends[] = {h + 50 * 60 * 1000, h + 52 * 60 * 1000 + 17, h + 30 * 60 * 1000};
    int64_t froms[] = {0, h, h + 1, h + 20 * 60 * 1000 + 3};
    for (size_t e = 0; e < sizeof(ends) / sizeof(ends[0]); e++) {
        for (size_t b = 0; b < sizeof(froms) / sizeof(froms[0]); b++) {
            proto_usage_filter flt = {.from_ms = froms[b], .to_ms = ends[e]};
            snprintf(flt.org, sizeof(flt.org), "bench");
            want = bf_totals(recs, BIG_N, &flt);
            int st = query(&f, &flt, &got);
            if (st != CG_ERR_OK || !totals_eq(&got, &want)) {
                fprintf(stderr, "  [%lld, %lld): status %d, %lld requests (want %lld)\n",
                        (long long)flt.from_ms, (long long)flt.to_ms, st, (long long)got.requests,
                        (long long)want.requests);
            }
            CG_CHECK_EQ_INT(st, CG_ERR_OK);
            CG_CHECK(totals_eq(&got, &want));
        }
    }
    /* The same through USAGE_SERIES, by key, hourly: every point exact, none empty. */
    proto_usage_filter flt = {.from_ms = h, .to_ms = ends[0]};
    snprintf(flt.org, sizeof(flt.org), "bench");
    size_t np, max = NOF(keys) + 1;
    proto_usage_point pts[16];
    CG_CHECK(max <= 16);
    bf_series(recs, BIG_N, &flt, PROTO_GRAN_HOUR, PROTO_BY_KEY, pts, max, &np);
    proto_rep rep = {0};
    CG_CHECK_EQ_INT(series(&f, &flt, PROTO_GRAN_HOUR, PROTO_BY_KEY, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.usage_series.n, np);
    for (size_t i = 0; i < np && i < rep.u.usage_series.n; i++) {
        CG_CHECK_EQ_STR(rep.u.usage_series.points[i].value, pts[i].value);
        CG_CHECK(totals_eq(&rep.u.usage_series.points[i].totals, &pts[i].totals));
    }
    ledger_rep_clear(&rep);
    fx_fini(&f);
    free(recs);
}

CG_TEST(retention_floors_to_the_hour_for_records_and_rollups)
{
    fx f;
    proto_usage recs[4];
    proto_usage_totals got;
    proto_rep rep = {0};
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_keys(&f), 0);
    /* The test clock at H + 30 min: the cutoff (now - 2 days) floors to H - 2 days. */
    int64_t h = at("2026-06-15T12:00:00Z");
    cg_clock_set_offset_ms(h + 30 * 60 * 1000 - cg_now_ms());
    int64_t cut = h - 2 * DAY_MS;
    int64_t ts[4] = {cut - 1, cut, cut + 10 * 60 * 1000, h - HOUR_MS};
    for (size_t i = 0; i < 4; i++) {
        rand_rec(&recs[i], i + 1, 0, 1);
        recs[i].ts_ms = ts[i];
        snprintf(recs[i].org, sizeof(recs[i].org), "acme");
    }
    CG_CHECK_EQ_INT(write_recs(&f, recs, 4, "ret"), 0);
    proto_usage_filter hour_before = {.from_ms = cut - HOUR_MS, .to_ms = cut};
    snprintf(hour_before.org, sizeof(hour_before.org), "acme");
    CG_CHECK_EQ_INT(query(&f, &hour_before, &got), CG_ERR_OK);
    CG_CHECK_EQ_INT(got.requests, 1); /* its rollup, before the sweep */
    ledger_store_set_usage_retention(f.s, 2 * DAY_MS);
    /* The next batch sweeps: the record before the hour goes, with its hour's rollup; the two
     * records of the cutoff's hour stay (one is 20 minutes past the retention: the floor). */
    CG_CHECK_EQ_INT(query(&f, &hour_before, &got), CG_ERR_OK);
    CG_CHECK_EQ_INT(got.requests, 0);
    proto_usage_filter whole = {.from_ms = h - 3 * DAY_MS, .to_ms = h};
    snprintf(whole.org, sizeof(whole.org), "acme");
    proto_usage_totals want = bf_totals(recs + 1, 3, &whole);
    CG_CHECK_EQ_INT(want.requests, 3);
    CG_CHECK_EQ_INT(query(&f, &whole, &got), CG_ERR_OK);
    CG_CHECK(totals_eq(&got, &want));
    proto_usage_filter all = {0};
    snprintf(all.org, sizeof(all.org), "acme");
    CG_CHECK_EQ_INT(query(&f, &all, &got), CG_ERR_OK);
    CG_CHECK(totals_eq(&got, &want));
    proto_req r = simple_req(PROTO_OP_USAGE_RECORDS, "", NULL);
    r.u.usage_records.f = all;
    r.u.usage_records.limit = 10;
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.usage_records.n, 3);
    CG_CHECK_EQ_INT(rep.u.usage_records.records[0].ts_ms, cut);
    ledger_rep_clear(&rep);
    fx_fini(&f);
}

#define UPG_N 3000
#define UPG_BULK_N 45000 /* > 2 rebuild chunks of 20,000 */

CG_TEST(upgrade_builds_rollups_from_the_raw_log_once)
{
    fx f;
    int64_t base = at("2026-07-30T05:00:00Z"), span = 3 * DAY_MS;
    proto_usage *recs = calloc(UPG_N, sizeof(*recs));
    proto_usage_totals got;
    CG_CHECK(recs != NULL);
    CG_CHECK(fx_init(&f, 1 << 26) == 0);
    CG_CHECK_EQ_INT(put_keys(&f), 0);
    for (size_t i = 0; i < UPG_N; i++) {
        rand_rec(&recs[i], i, base, span);
    }
    CG_CHECK_EQ_INT(write_recs(&f, recs, UPG_N, "old"), 0);
    /* Another org's records, enough for the rebuild to take several chunks (transactions). */
    proto_usage *bulk = calloc(UPG_BULK_N, sizeof(*bulk));
    CG_CHECK(bulk != NULL);
    for (size_t i = 0; i < UPG_BULK_N; i++) {
        rand_rec(&bulk[i], UPG_N + 100 + i, base, span);
        snprintf(bulk[i].org, sizeof(bulk[i].org), "bulk");
    }
    CG_CHECK_EQ_INT(write_recs(&f, bulk, UPG_BULK_N, "bulk"), 0);
    proto_usage_filter bulk_all = {0};
    snprintf(bulk_all.org, sizeof(bulk_all.org), "bulk");
    proto_usage_totals bulk_want = bf_totals(bulk, UPG_BULK_N, &bulk_all);
    free(bulk);
    /* Act out a store written before rollups: schema 1, raw records only. */
    CG_CHECK_EQ_INT(ledger_store_test_pre_rollup(f.s, 0), CG_ERR_OK);
    proto_usage_filter days = {.from_ms = base - DAY_MS, .to_ms = base + 4 * DAY_MS};
    snprintf(days.org, sizeof(days.org), "acme");
    CG_CHECK_EQ_INT(query(&f, &days, &got), CG_ERR_OK);
    CG_CHECK_EQ_INT(got.requests, 0); /* whole hours only: no rollups to read */
    for (int reopen = 0; reopen < 2; reopen++) {
        ledger_store_close(f.s);
        f.s = NULL;
        CG_CHECK_EQ_INT(fx_open(&f, 1 << 26), 0); /* 1st: rebuilds; 2nd: nothing to do */
        proto_usage_totals want = bf_totals(recs, UPG_N, &days);
        CG_CHECK(want.requests > 0);
        CG_CHECK_EQ_INT(query(&f, &days, &got), CG_ERR_OK);
        CG_CHECK(totals_eq(&got, &want));
        CG_CHECK_EQ_INT(check_queries(&f, recs, UPG_N, base, span, 300), 0);
        CG_CHECK_EQ_INT(check_series(&f, recs, UPG_N, base, span, 5), 0);
        CG_CHECK_EQ_INT(query(&f, &bulk_all, &got), CG_ERR_OK);
        CG_CHECK_EQ_INT(got.requests, UPG_BULK_N);
        CG_CHECK(totals_eq(&got, &bulk_want));
    }
    /* New records after the upgrade are rolled up as they are written. */
    proto_usage more[50];
    for (size_t i = 0; i < 50; i++) {
        rand_rec(&more[i], UPG_N + i, base, span);
    }
    CG_CHECK_EQ_INT(write_recs(&f, more, 50, "new"), 0);
    proto_usage_totals want = bf_totals(recs, UPG_N, &days), w2 = bf_totals(more, 50, &days);
    want.requests += w2.requests;
    want.prompt_tokens += w2.prompt_tokens;
    want.completion_tokens += w2.completion_tokens;
    want.cost_nusd += w2.cost_nusd;
    CG_CHECK_EQ_INT(query(&f, &days, &got), CG_ERR_OK);
    CG_CHECK(totals_eq(&got, &want));
    fx_fini(&f);
    free(recs);
}

/* A rebuild that stopped part-way (a crash) resumes after its last record: no record is
 * counted twice or missed. */
CG_TEST(an_interrupted_upgrade_resumes_without_double_counting)
{
    fx f;
    int64_t base = at("2026-08-10T00:00:00Z"), span = 2 * DAY_MS;
    proto_usage recs[1500];
    proto_usage_totals got;
    CG_CHECK(fx_init(&f, 1 << 26) == 0);
    CG_CHECK_EQ_INT(put_keys(&f), 0);
    for (size_t i = 0; i < 1500; i++) {
        rand_rec(&recs[i], i, base, span);
        snprintf(recs[i].org, sizeof(recs[i].org), "acme");
    }
    CG_CHECK_EQ_INT(write_recs(&f, recs, 1500, "part"), 0);
    proto_usage_filter days = {.from_ms = base - DAY_MS, .to_ms = base + 3 * DAY_MS};
    snprintf(days.org, sizeof(days.org), "acme");
    proto_usage_totals want = bf_totals(recs, 1500, &days);
    CG_CHECK_EQ_INT(want.requests, 1500);
    CG_CHECK_EQ_INT(ledger_store_test_pre_rollup(f.s, 600), CG_ERR_OK);
    CG_CHECK_EQ_INT(query(&f, &days, &got), CG_ERR_OK);
    CG_CHECK_EQ_INT(got.requests, 600); /* the first 600 log records are rolled up */
    ledger_store_close(f.s);
    f.s = NULL;
    CG_CHECK_EQ_INT(fx_open(&f, 1 << 26), 0);
    CG_CHECK_EQ_INT(query(&f, &days, &got), CG_ERR_OK);
    CG_CHECK(totals_eq(&got, &want));
    CG_CHECK_EQ_INT(check_queries(&f, recs, 1500, base, span, 200), 0);
    fx_fini(&f);
}

int main(void)
{
    const char *seed = getenv("CG_TEST_SEED");
    if (seed != NULL && seed[0] != '\0') {
        rng_state = strtoull(seed, NULL, 0) | 1;
    }
    fprintf(stderr, "ledger_rollup_test seed 0x%llx (CG_TEST_SEED)\n",
            (unsigned long long)rng_state);
    return CG_TEST_RUN(random_ranges_match_brute_force, reput_of_a_stored_record_changes_nothing,
                       a_busy_partial_hour_answers_exactly,
                       a_month_past_the_raw_scan_cap_answers_exactly,
                       retention_floors_to_the_hour_for_records_and_rollups,
                       upgrade_builds_rollups_from_the_raw_log_once,
                       an_interrupted_upgrade_resumes_without_double_counting);
}
