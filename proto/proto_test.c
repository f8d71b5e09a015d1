/*
 * proto_test.c — unit tests of the ledger wire protocol: round trips of every
 * request and reply op and of every record at their bounds, strict rejection
 * of malformed input (built by hand with msgpack-c's packer, independently of
 * the encoders), and 200k deterministic mutated inputs that must never crash.
 * Issue 3 (groups, customers, key rules, self-describing states) has its
 * own rejection tests near the end, one per documented bound.
 */
#include "proto.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cg_cidr.h"
#include "cg_test.h"
#include "proto_fuzz_check.h"
#include "proto_test_raw.h"

#define FUZZ_ITERATIONS 200000
#define REQS_N PROTO_OP_GET_ORG_STATE /* one request per op */
#define CIDR_BYTES 16

/*
 * Byte equality of two records. Fixtures are memset to zero before their fields
 * are set and decoders zero their output first, so padding and unused tail
 * entries compare equal too: a field the decoder forgot shows up here.
 */
static bool mem_eq(const void *a, const void *b, size_t n)
{
    return memcmp(a, b, n) == 0;
}

/*
 * Decoded batch entries are defined only in their header and their op's union
 * member (the decoders zero exactly those, then decode into them): compare those
 * bytes. The sizes are listed here independently of proto.c's.
 */
#define REQ_M(m) sizeof(((proto_req *)0)->u.m)
#define REP_M(m) sizeof(((proto_rep *)0)->u.m)
static size_t req_member_bytes(uint8_t op)
{
    static const size_t sz[] = {
        [PROTO_OP_AUTH] = REQ_M(auth),
        [PROTO_OP_RESERVE] = REQ_M(reserve),
        [PROTO_OP_SETTLE] = REQ_M(settle),
        [PROTO_OP_RELEASE] = REQ_M(release),
        [PROTO_OP_PUT_ORG] = REQ_M(put_org),
        [PROTO_OP_PUT_KEY] = REQ_M(put_key),
        [PROTO_OP_EVENTS_SINCE] = REQ_M(events_since),
        [PROTO_OP_PUT_GROUP] = REQ_M(put_group),
        [PROTO_OP_PUT_CUSTOMER] = REQ_M(put_customer),
        [PROTO_OP_GET_CUSTOMER] = REQ_M(get_customer),
        [PROTO_OP_USAGE_QUERY] = REQ_M(usage_query),
        [PROTO_OP_GET_ORG_STATE] = 0,
    };
    return op < sizeof(sz) / sizeof(sz[0]) ? sz[op] : 0;
}

static size_t rep_member_bytes(uint8_t op)
{
    static const size_t sz[] = {
        [PROTO_OP_PING] = REP_M(ping),
        [PROTO_OP_AUTH] = REP_M(auth),
        [PROTO_OP_RESERVE] = REP_M(reserve),
        [PROTO_OP_SETTLE] = REP_M(settle),
        [PROTO_OP_GET_ORG] = REP_M(get_org),
        [PROTO_OP_GET_KEY] = REP_M(get_key),
        [PROTO_OP_EVENTS_SINCE] = REP_M(events),
        [PROTO_OP_GET_GROUP] = REP_M(get_group),
        [PROTO_OP_GET_CUSTOMER] = REP_M(get_customer),
        [PROTO_OP_USAGE_QUERY] = REP_M(usage),
        [PROTO_OP_GET_ORG_STATE] = REP_M(get_org_state),
    };
    return op < sizeof(sz) / sizeof(sz[0]) ? sz[op] : 0;
}
#undef REQ_M
#undef REP_M

/* Entries a..a+n and b..b+n equal in every defined byte (see above). */
static bool reqs_eq(const proto_req *a, const proto_req *b, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (!mem_eq(&a[i], &b[i], offsetof(proto_req, u)) ||
            !mem_eq(&a[i].u, &b[i].u, req_member_bytes(a[i].op))) {
            return false;
        }
    }
    return true;
}

static bool reps_eq(const proto_rep *a, const proto_rep *b, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (!mem_eq(&a[i], &b[i], offsetof(proto_rep, u)) ||
            !mem_eq(&a[i].u, &b[i].u, rep_member_bytes(a[i].op))) {
            return false;
        }
    }
    return true;
}

/* ---- fixtures: fully populated records at their bounds ---- */

static void fill_str(char *dst, size_t max, char c)
{
    memset(dst, c, max);
    dst[max] = '\0';
}

static void fill_limit(proto_limit *l, uint32_t id, uint8_t warn_n)
{
    l->id = id;
    l->metric = (uint8_t)(id % PROTO_METRIC_COUNT_);
    l->window.kind = (uint8_t)(id % 5);
    l->window.sliding_s = l->window.kind == CG_WIN_SLIDING ? CG_WINDOW_SLIDING_MAX_S : 0;
    l->max = id == 1 ? INT64_MAX : (int64_t)id * 1000000007;
    l->action = (uint8_t)(id % 2);
    l->warn_n = warn_n;
    for (uint8_t i = 0; i < warn_n; i++) {
        l->warn_bp[i] = (uint16_t)(10000 - (warn_n - 1 - i) * 7);
    }
}

/* n customer limits: distinct (metric, window), natural ids, every warn slot used. */
static void fill_natural_limits(proto_limit *ls, uint8_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        proto_limit *l = &ls[i];
        l->metric = (uint8_t)(i % PROTO_METRIC_COUNT_);
        l->window.kind = (uint8_t)(i / 3 < CG_WIN_SLIDING ? i / 3 : CG_WIN_SLIDING);
        l->window.sliding_s = l->window.kind == CG_WIN_SLIDING ? CG_WINDOW_SLIDING_MAX_S - i : 0;
        l->id = proto_limit_natural_id(l->metric, l->window);
        l->max = (int64_t)i * 999999937;
        l->action = (uint8_t)(i % 2);
        l->warn_n = PROTO_WARN_MAX;
        for (uint8_t j = 0; j < PROTO_WARN_MAX; j++) {
            l->warn_bp[j] = (uint16_t)(1 + j * 1000);
        }
    }
}

/* n networks mixing families and prefix lengths, both ends of each range included. */
static void fill_cidrs(cg_cidr *c, uint8_t n, int salt)
{
    static const char *const fixed[] = {"0.0.0.0/0",
                                        "::/0",
                                        "255.255.255.255",
                                        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                                        "10.0.0.0/8",
                                        "2001:db8:8000::/33",
                                        "::ffff:192.168.0.0/112"};
    for (uint32_t i = 0; i < n; i++) {
        char text[64];
        if (i < sizeof(fixed) / sizeof(fixed[0])) {
            snprintf(text, sizeof(text), "%s", fixed[i]);
        } else if (i % 2) {
            snprintf(text, sizeof(text), "10.%d.%u.0/24", salt, i);
        } else {
            snprintf(text, sizeof(text), "2001:db8:%x:%x::/64", (unsigned)salt, i);
        }
        cg_err err = cg_cidr_parse(text, &c[i]);
        assert(err == CG_ERR_OK);
        (void)err;
    }
}

static void fill_models(char (*models)[PROTO_MODEL_MAX + 1], uint8_t *n)
{
    *n = PROTO_MODELS_MAX;
    for (uint32_t i = 0; i < PROTO_MODELS_MAX; i++) {
        fill_str(models[i], i % 2 ? PROTO_MODEL_MAX : 1 + i, (char)('A' + i));
    }
}

static void fill_org(proto_org *o)
{
    memset(o, 0, sizeof(*o));
    fill_str(o->id, PROTO_ID_MAX, 'o');
    fill_str(o->name, PROTO_NAME_MAX, 'N');
    o->billing_anchor_day = 28;
    o->created_ms = 1767225600123;
    o->limit_n = PROTO_LIMITS_MAX;
    for (uint32_t i = 0; i < PROTO_LIMITS_MAX; i++) {
        fill_limit(&o->limits[i], i + 1, PROTO_WARN_MAX);
    }
    o->webhook_n = PROTO_WEBHOOKS_MAX;
    for (uint32_t i = 0; i < PROTO_WEBHOOKS_MAX; i++) {
        fill_str(o->webhooks[i].url, PROTO_URL_MAX, (char)('a' + i));
        fill_str(o->webhooks[i].secret, PROTO_SECRET_MAX, (char)('A' + i));
    }
    o->customer_limit_n = PROTO_LIMITS_MAX;
    fill_natural_limits(o->customer_limits, PROTO_LIMITS_MAX);
    o->on_low_budget = PROTO_LOW_BUDGET_CLAMP;
    o->email_n = PROTO_EMAILS_MAX;
    for (uint32_t i = 0; i < PROTO_EMAILS_MAX; i++) {
        fill_str(o->emails[i], PROTO_EMAIL_MAX, (char)('a' + i));
        o->emails[i][PROTO_EMAIL_MAX - 8] = '@';
    }
}

static void fill_key(proto_key *k)
{
    memset(k, 0, sizeof(*k));
    fill_str(k->id, PROTO_ID_MAX, 'k');
    fill_str(k->org, PROTO_ID_MAX, 'o');
    fill_str(k->name, PROTO_NAME_MAX, 'n');
    for (int i = 0; i < HASH_BYTES; i++) {
        k->hash[i] = (uint8_t)(i * 37 + 1);
    }
    k->created_ms = -1;
    k->expires_ms = INT64_MIN;
    k->revoked = 1;
    k->billing_anchor_day = 1;
    k->limit_n = PROTO_LIMITS_MAX;
    for (uint32_t i = 0; i < PROTO_LIMITS_MAX; i++) {
        fill_limit(&k->limits[i], UINT32_MAX - i, (uint8_t)(i % (PROTO_WARN_MAX + 1)));
    }
    fill_str(k->group, PROTO_ID_MAX, 'g');
    fill_str(k->customer, PROTO_ID_MAX, 'c');
    fill_models(k->models, &k->model_n);
    k->ip_allow_n = PROTO_CIDRS_MAX;
    fill_cidrs(k->ip_allow, PROTO_CIDRS_MAX, 1);
    k->ip_deny_n = PROTO_CIDRS_MAX;
    fill_cidrs(k->ip_deny, PROTO_CIDRS_MAX, 2);
    k->max_tokens_per_request = INT64_MAX;
    k->on_low_budget = PROTO_LOW_BUDGET_CLAMP;
    k->rotated_ms = INT64_MAX;
    for (int i = 0; i < HASH_BYTES; i++) {
        k->prev_hash[i] = (uint8_t)(i * 11 + 3);
    }
    k->prev_expires_ms = INT64_MAX;
}

static void fill_group(proto_group *g)
{
    memset(g, 0, sizeof(*g));
    fill_str(g->id, PROTO_ID_MAX, 'g');
    fill_str(g->org, PROTO_ID_MAX, 'o');
    fill_str(g->name, PROTO_NAME_MAX, 'n');
    g->created_ms = INT64_MIN;
    g->billing_anchor_day = 15;
    fill_models(g->models, &g->model_n);
    g->limit_n = PROTO_LIMITS_MAX;
    for (uint32_t i = 0; i < PROTO_LIMITS_MAX; i++) {
        fill_limit(&g->limits[i], 100 + i, PROTO_WARN_MAX);
    }
}

static void fill_customer(proto_customer *c)
{
    memset(c, 0, sizeof(*c));
    fill_str(c->id, PROTO_ID_MAX, 'c');
    fill_str(c->org, PROTO_ID_MAX, 'o');
    c->created_ms = INT64_MAX;
    c->limit_n = PROTO_LIMITS_MAX;
    fill_natural_limits(c->limits, PROTO_LIMITS_MAX);
}

static void fill_usage(proto_usage *u)
{
    memset(u, 0, sizeof(*u));
    u->ts_ms = 1767225600999;
    fill_str(u->org, PROTO_ID_MAX, 'o');
    fill_str(u->key_id, PROTO_ID_MAX, 'k');
    fill_str(u->model, PROTO_MODEL_MAX, 'm');
    u->prompt_tokens = 128000;
    u->completion_tokens = INT64_MAX;
    u->cost_nusd = -5;
    u->status = INT32_MIN;
    u->latency_ms = INT32_MAX;
    u->estimated = 1;
    fill_str(u->group, PROTO_ID_MAX, 'g');
    fill_str(u->customer, PROTO_ID_MAX, 'c');
    fill_str(u->provider, PROTO_PROVIDER_MAX, 'p');
    fill_str(u->request_id, PROTO_REQID_MAX, 'r');
}

static void fill_event(proto_event *e, uint64_t seq)
{
    memset(e, 0, sizeof(*e));
    e->seq = seq;
    fill_str(e->id, PROTO_EVENT_ID_MAX, 'e');
    e->metric = (uint8_t)(seq % PROTO_METRIC_COUNT_);
    e->type = (uint8_t)proto_event_type_for(e->metric, (int)(seq % 2));
    e->created_ms = 1767225600000 + (int64_t)seq;
    fill_str(e->org, PROTO_ID_MAX, 'o');
    e->scope = (uint8_t)(seq % 4);
    fill_str(e->scope_id, PROTO_ID_MAX, 's');
    e->limit_id = (uint32_t)seq;
    e->window.kind = CG_WIN_SLIDING;
    e->window.sliding_s = 3600;
    e->period_start_ms = 1764547200000;
    e->period_end_ms = 0;
    e->threshold_bp = seq % 2 ? 10000 : 8000;
    e->max = 1000000000000;
    e->used = 801200000000;
}

static void fill_states(proto_limit_state *s, uint8_t *n)
{
    *n = PROTO_LIMITS_MAX;
    for (uint32_t i = 0; i < PROTO_LIMITS_MAX; i++) {
        s[i].limit_id = i + 1;
        s[i].used = INT64_MAX - i;
        s[i].reserved = -(int64_t)i;
        s[i].period_start_ms = 1764547200000;
        s[i].period_end_ms = i % 2 ? 0 : 1767225600000;
        s[i].metric = (uint8_t)(i % PROTO_METRIC_COUNT_);
        s[i].window.kind = (uint8_t)(i % 5);
        s[i].window.sliding_s = s[i].window.kind == CG_WIN_SLIDING ? 1 + i : 0;
        s[i].max = i == 0 ? INT64_MAX : (int64_t)i;
        s[i].action = (uint8_t)(i % 2);
    }
}

/* The issue-3 ops of fill_reqs. */
static void fill_reqs_records(proto_req r[REQS_N])
{
    proto_req *q = &r[PROTO_OP_PUT_GROUP - 1];
    q->u.put_group.create_only = 1;
    fill_group(&q->u.put_group.group);
    fill_customer(&r[PROTO_OP_PUT_CUSTOMER - 1].u.put_customer.customer);
    q = &r[PROTO_OP_GET_CUSTOMER - 1];
    q->u.get_customer.anchor_day = 1;
    q->u.get_customer.inline_n = PROTO_LIMITS_MAX;
    fill_natural_limits(q->u.get_customer.inline_limits, PROTO_LIMITS_MAX);
    q = &r[PROTO_OP_USAGE_QUERY - 1];
    fill_str(q->u.usage_query.org, PROTO_ID_MAX, 'o');
    fill_str(q->u.usage_query.key_id, PROTO_ID_MAX, 'k');
    fill_str(q->u.usage_query.group, PROTO_ID_MAX, 'g');
    fill_str(q->u.usage_query.customer, PROTO_ID_MAX, 'c');
    fill_str(q->u.usage_query.model, PROTO_MODEL_MAX, 'm');
    q->u.usage_query.from_ms = INT64_MIN;
    q->u.usage_query.to_ms = INT64_MAX;
}

/* One request of every op, every field set. */
static void fill_reqs(proto_req r[REQS_N])
{
    memset(r, 0, sizeof(proto_req) * REQS_N);
    for (int i = 0; i < REQS_N; i++) {
        r[i].op = (uint8_t)(i + 1);
        fill_str(r[i].route, PROTO_ROUTE_MAX, (char)('a' + i));
    }
    memset(r[0].route, 0, sizeof(r[0].route)); /* ping: empty route */
    for (int i = 0; i < HASH_BYTES; i++) {
        r[PROTO_OP_AUTH - 1].u.auth.hash[i] = (uint8_t)(255 - i);
    }
    proto_req *q = &r[PROTO_OP_RESERVE - 1];
    fill_str(q->u.reserve.request_id, PROTO_REQID_MAX, 'r');
    q->u.reserve.lease_ms = 30000;
    q->u.reserve.worst = (proto_amounts){INT64_MAX, 128000, 1};
    q->u.reserve.anchor_day = 28;
    q->u.reserve.inline_n = PROTO_LIMITS_MAX;
    fill_natural_limits(q->u.reserve.inline_limits, PROTO_LIMITS_MAX);
    q = &r[PROTO_OP_SETTLE - 1];
    fill_str(q->u.settle.request_id, PROTO_REQID_MAX, 's');
    q->u.settle.actual = (proto_amounts){-1, 0, INT64_MIN};
    q->u.settle.has_usage = 1;
    fill_usage(&q->u.settle.usage);
    fill_str(r[PROTO_OP_RELEASE - 1].u.release.request_id, PROTO_REQID_MAX, 'l');
    r[PROTO_OP_PUT_ORG - 1].u.put_org.create_only = 1;
    fill_org(&r[PROTO_OP_PUT_ORG - 1].u.put_org.org);
    fill_key(&r[PROTO_OP_PUT_KEY - 1].u.put_key.key);
    r[PROTO_OP_EVENTS_SINCE - 1].u.events_since.after_seq = UINT64_MAX;
    r[PROTO_OP_EVENTS_SINCE - 1].u.events_since.max_n = PROTO_EVENTS_MAX;
    fill_reqs_records(r);
}

#define REPS_N 22
#define REPS_EVENTS 3

/* Replies 12..20 of fill_reps: the issue-3 ops, with and without bodies. */
static void fill_reps_records(proto_rep r[REPS_N])
{
    r[12].op = PROTO_OP_GET_GROUP;
    fill_group(&r[12].u.get_group.group);
    fill_states(r[12].u.get_group.states, &r[12].u.get_group.state_n);
    r[13].op = PROTO_OP_GET_CUSTOMER;
    r[13].u.get_customer.found = 1;
    fill_customer(&r[13].u.get_customer.customer);
    fill_states(r[13].u.get_customer.states, &r[13].u.get_customer.state_n);
    r[14].op = PROTO_OP_GET_CUSTOMER; /* no override record: effective defaults only */
    fill_states(r[14].u.get_customer.states, &r[14].u.get_customer.state_n);
    r[15].op = PROTO_OP_GET_ORG_STATE;
    fill_org(&r[15].u.get_org_state.org);
    fill_states(r[15].u.get_org_state.states, &r[15].u.get_org_state.state_n);
    r[16].op = PROTO_OP_USAGE_QUERY;
    r[16].u.usage.totals = (proto_usage_totals){INT64_MAX, 1, -1, INT64_MIN};
    r[17].op = PROTO_OP_PUT_GROUP;
    r[17].status = CG_ERR_EXISTS;
    r[18].op = PROTO_OP_PUT_CUSTOMER;
    r[19].op = PROTO_OP_DELETE;
    r[19].status = CG_ERR_NOTFOUND;
    r[20].op = PROTO_OP_GET_GROUP;
    r[20].status = CG_ERR_NOTFOUND;
}

/* One reply of every op with a body, plus bare ones; reps[REPS_N - 1] is the events reply. */
static void fill_reps(proto_rep r[REPS_N], proto_event ev[REPS_EVENTS])
{
    memset(r, 0, sizeof(proto_rep) * REPS_N);
    r[0].op = PROTO_OP_PING;
    fill_str(r[0].u.ping.shard, PROTO_SHARD_MAX, 'S');
    r[0].u.ping.last_seq = UINT64_MAX;
    r[1].op = PROTO_OP_AUTH;
    fill_key(&r[1].u.auth.key);
    r[2].op = PROTO_OP_RESERVE;
    fill_states(r[2].u.reserve.states, &r[2].u.reserve.state_n);
    r[3].op = PROTO_OP_RESERVE;
    r[3].status = CG_ERR_BUDGET;
    fill_states(r[3].u.reserve.states, &r[3].u.reserve.state_n);
    r[3].u.reserve.refusal = (proto_refusal){
        7, PROTO_METRIC_TOKENS, {CG_WIN_SLIDING, 60}, 100, 99, 2, 1767225600000, INT64_MAX};
    r[4].op = PROTO_OP_SETTLE;
    r[4].u.settle.late = 1;
    r[5].op = PROTO_OP_RELEASE;
    r[5].status = CG_ERR_NOTFOUND;
    r[6].op = PROTO_OP_PUT_ORG;
    r[6].status = CG_ERR_EXISTS;
    r[7].op = PROTO_OP_GET_ORG;
    fill_org(&r[7].u.get_org.org);
    r[8].op = PROTO_OP_PUT_KEY;
    r[9].op = PROTO_OP_GET_KEY;
    fill_key(&r[9].u.get_key.key);
    fill_states(r[9].u.get_key.states, &r[9].u.get_key.state_n);
    r[10].op = PROTO_OP_AUTH;
    r[10].status = CG_ERR_UNAUTHORIZED;
    r[11].op = PROTO_OP_EVENTS_SINCE;
    r[11].status = CG_ERR_UNAVAILABLE;
    fill_reps_records(r);
    r[REPS_N - 1].op = PROTO_OP_EVENTS_SINCE;
    r[REPS_N - 1].u.events.last_seq = 99;
    r[REPS_N - 1].u.events.n = REPS_EVENTS;
    r[REPS_N - 1].u.events.events = ev;
    for (uint32_t i = 0; i < REPS_EVENTS; i++) {
        fill_event(&ev[i], 10 + i * 3);
    }
}

/* ---- hand-built messages, independent of the encoders (proto_test_raw.h) ---- */

static void raw_limit(raw *r, uint32_t id, uint8_t kind, uint32_t sliding_s, uint32_t warn_n,
                      const uint16_t *bp)
{
    raw_arr(r, 7);
    raw_u(r, id);
    raw_u(r, PROTO_METRIC_COST);
    raw_u(r, kind);
    raw_u(r, sliding_s);
    raw_i(r, 100);
    raw_u(r, PROTO_ACTION_BLOCK);
    raw_arr(r, warn_n);
    for (uint32_t i = 0; i < warn_n; i++) {
        raw_u(r, bp != NULL ? bp[i] : (i + 1) * 10);
    }
}

/* [1, org] with limit_n day limits (ids 1..n) of warn_n thresholds each. */
static void raw_org(raw *r, uint32_t limit_n, uint32_t warn_n, uint32_t webhook_n, uint64_t anchor)
{
    raw_org_start(r, 8, 4, anchor);
    raw_arr(r, limit_n);
    for (uint32_t i = 0; i < limit_n; i++) {
        raw_limit(r, i + 1, CG_WIN_DAY, 0, warn_n, NULL);
    }
    raw_arr(r, webhook_n);
    for (uint32_t i = 0; i < webhook_n; i++) {
        raw_arr(r, 2);
        raw_str(r, 20, 'u');
        raw_str(r, 20, 's');
    }
    raw_arr(r, 0); /* customer limits */
    raw_u(r, PROTO_LOW_BUDGET_REJECT);
}

static void raw_event(raw *r, uint64_t seq, uint64_t type, uint64_t metric, uint64_t bp)
{
    raw_arr(r, 16);
    raw_u(r, seq);
    raw_str(r, PROTO_EVENT_ID_MAX, 'e');
    raw_u(r, type);
    raw_i(r, 0);
    raw_str(r, 3, 'o');
    raw_u(r, PROTO_SCOPE_ORG);
    raw_str(r, 3, 'o');
    raw_u(r, 1);
    raw_u(r, metric);
    raw_u(r, CG_WIN_DAY);
    raw_u(r, 0);
    raw_i(r, 0);
    raw_i(r, 0);
    raw_u(r, bp);
    raw_i(r, 1);
    raw_i(r, 1);
}

/* ---- round trips ---- */

CG_TEST(req_round_trip_every_op)
{
    static proto_req in[REQS_N];
    fill_reqs(in);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_sbuffer_write(&sb, "xy", 2); /* encoders append */
    CG_CHECK_EQ_INT(proto_req_encode(in, REQS_N, &sb), CG_ERR_OK);
    CG_CHECK(memcmp(sb.data, "xy", 2) == 0);
    proto_req *out = NULL;
    uint32_t n = 0;
    CG_CHECK_EQ_INT(proto_req_decode(sb.data + 2, sb.size - 2, &out, &n), CG_ERR_OK);
    CG_CHECK_EQ_INT(n, REQS_N);
    for (uint32_t i = 0; i < n; i++) {
        CG_CHECK_EQ_INT(out[i].op, in[i].op);
        CG_CHECK(reqs_eq(&out[i], &in[i], 1));
    }
    const proto_org *o = &out[PROTO_OP_PUT_ORG - 1].u.put_org.org;
    CG_CHECK_EQ_STR(o->webhooks[PROTO_WEBHOOKS_MAX - 1].secret,
                    in[PROTO_OP_PUT_ORG - 1].u.put_org.org.webhooks[PROTO_WEBHOOKS_MAX - 1].secret);
    proto_req_free(out, n);
    msgpack_sbuffer_destroy(&sb);
}

CG_TEST(req_round_trip_max_batch)
{
    proto_req *in = calloc(PROTO_BATCH_MAX, sizeof(*in));
    CG_CHECK(in != NULL);
    for (uint32_t i = 0; i < PROTO_BATCH_MAX; i++) {
        in[i].op = PROTO_OP_PUT_ORG;
        fill_str(in[i].route, PROTO_ROUTE_MAX, 'r');
        fill_org(&in[i].u.put_org.org);
        in[i].u.put_org.org.created_ms = i;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    CG_CHECK_EQ_INT(proto_req_encode(in, PROTO_BATCH_MAX, &sb), CG_ERR_OK);
    CG_CHECK(sb.size <= PROTO_MSG_MAX_BYTES);
    proto_req *out = NULL;
    uint32_t n = 0;
    CG_CHECK_EQ_INT(proto_req_decode(sb.data, sb.size, &out, &n), CG_ERR_OK);
    CG_CHECK_EQ_INT(n, PROTO_BATCH_MAX);
    CG_CHECK(reqs_eq(out, in, PROTO_BATCH_MAX));
    proto_req_free(out, n);
    msgpack_sbuffer_destroy(&sb);
    free(in);
}

CG_TEST(rep_round_trip_every_op)
{
    static proto_rep in[REPS_N];
    static proto_event ev[REPS_EVENTS];
    fill_reps(in, ev);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    CG_CHECK_EQ_INT(proto_rep_encode(in, REPS_N, &sb), CG_ERR_OK);
    proto_rep *out = NULL;
    uint32_t n = 0;
    CG_CHECK_EQ_INT(proto_rep_decode(sb.data, sb.size, &out, &n), CG_ERR_OK);
    CG_CHECK_EQ_INT(n, REPS_N);
    for (uint32_t i = 0; i < REPS_N - 1; i++) {
        CG_CHECK(reps_eq(&out[i], &in[i], 1));
    }
    const proto_rep *e = &out[REPS_N - 1];
    CG_CHECK_EQ_INT(e->op, PROTO_OP_EVENTS_SINCE);
    CG_CHECK_EQ_INT(e->u.events.last_seq, 99);
    CG_CHECK_EQ_INT(e->u.events.n, REPS_EVENTS);
    CG_CHECK(mem_eq(e->u.events.events, ev, sizeof(ev)));
    CG_CHECK(out[11].u.events.events == NULL && out[11].u.events.n == 0);
    proto_rep_free(out, n);
    msgpack_sbuffer_destroy(&sb);
}

/* A body is sent only for the statuses that give it meaning; others decode as zero. */
CG_TEST(rep_body_follows_status)
{
    static proto_rep in[4];
    memset(in, 0, sizeof(in));
    in[0].op = PROTO_OP_PING;
    in[0].status = CG_ERR_UNAVAILABLE;
    fill_str(in[0].u.ping.shard, PROTO_SHARD_MAX, 'S');
    in[1].op = PROTO_OP_RESERVE; /* OK: states, no refusal */
    fill_states(in[1].u.reserve.states, &in[1].u.reserve.state_n);
    in[1].u.reserve.refusal.limit_id = 5;
    in[2].op = PROTO_OP_RESERVE;
    in[2].status = CG_ERR_WRONG_SHARD;
    fill_states(in[2].u.reserve.states, &in[2].u.reserve.state_n);
    in[3].op = PROTO_OP_SETTLE;
    in[3].status = CG_ERR_BUDGET;
    in[3].u.settle.late = 1;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    CG_CHECK_EQ_INT(proto_rep_encode(in, 4, &sb), CG_ERR_OK);
    proto_rep *out = NULL;
    uint32_t n = 0;
    CG_CHECK_EQ_INT(proto_rep_decode(sb.data, sb.size, &out, &n), CG_ERR_OK);
    CG_CHECK_EQ_INT(out[0].status, CG_ERR_UNAVAILABLE);
    CG_CHECK_EQ_STR(out[0].u.ping.shard, "");
    CG_CHECK_EQ_INT(out[1].u.reserve.state_n, PROTO_LIMITS_MAX);
    CG_CHECK_EQ_INT(out[1].u.reserve.refusal.limit_id, 0);
    CG_CHECK_EQ_INT(out[2].u.reserve.state_n, 0);
    CG_CHECK_EQ_INT(out[3].u.settle.late, 0);
    proto_rep_free(out, n);
    msgpack_sbuffer_destroy(&sb);
}

CG_TEST(rep_round_trip_max_events)
{
    proto_rep in;
    memset(&in, 0, sizeof(in));
    proto_event *ev = calloc(PROTO_EVENTS_MAX, sizeof(*ev));
    CG_CHECK(ev != NULL);
    for (uint32_t i = 0; i < PROTO_EVENTS_MAX; i++) {
        fill_event(&ev[i], i + 1);
    }
    in.op = PROTO_OP_EVENTS_SINCE;
    in.u.events.n = PROTO_EVENTS_MAX;
    in.u.events.events = ev;
    in.u.events.last_seq = PROTO_EVENTS_MAX;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    CG_CHECK_EQ_INT(proto_rep_encode(&in, 1, &sb), CG_ERR_OK);
    proto_rep *out = NULL;
    uint32_t n = 0;
    CG_CHECK_EQ_INT(proto_rep_decode(sb.data, sb.size, &out, &n), CG_ERR_OK);
    CG_CHECK_EQ_INT(out[0].u.events.n, PROTO_EVENTS_MAX);
    CG_CHECK(mem_eq(out[0].u.events.events, ev, sizeof(*ev) * PROTO_EVENTS_MAX));
    proto_rep_free(out, n);
    msgpack_sbuffer_destroy(&sb);
    free(ev);
}

CG_TEST(records_round_trip)
{
    static proto_org o, o2;
    static proto_key k, k2;
    proto_event e, e2;
    proto_usage u, u2;
    char shard[PROTO_SHARD_MAX + 1], long_shard[PROTO_SHARD_MAX + 1];
    fill_org(&o);
    fill_key(&k);
    fill_event(&e, UINT64_MAX);
    fill_usage(&u);
    memset(&e2, 0, sizeof(e2));
    memset(&u2, 0, sizeof(u2));
    fill_str(long_shard, PROTO_SHARD_MAX, 'z');
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    CG_CHECK_EQ_INT(proto_org_encode(&o, &sb), CG_ERR_OK);
    CG_CHECK_EQ_INT(proto_org_decode(sb.data, sb.size, &o2), CG_ERR_OK);
    CG_CHECK(mem_eq(&o, &o2, sizeof(o)));
    msgpack_sbuffer_clear(&sb);
    CG_CHECK_EQ_INT(proto_key_encode(&k, &sb), CG_ERR_OK);
    CG_CHECK_EQ_INT(proto_key_decode(sb.data, sb.size, &k2), CG_ERR_OK);
    CG_CHECK(mem_eq(&k, &k2, sizeof(k)));
    msgpack_sbuffer_clear(&sb);
    static proto_group g, g2;
    fill_group(&g);
    CG_CHECK_EQ_INT(proto_group_encode(&g, &sb), CG_ERR_OK);
    CG_CHECK_EQ_INT(proto_group_decode(sb.data, sb.size, &g2), CG_ERR_OK);
    CG_CHECK(mem_eq(&g, &g2, sizeof(g)));
    msgpack_sbuffer_clear(&sb);
    static proto_customer c, c2;
    fill_customer(&c);
    CG_CHECK_EQ_INT(proto_customer_encode(&c, &sb), CG_ERR_OK);
    CG_CHECK_EQ_INT(proto_customer_decode(sb.data, sb.size, &c2), CG_ERR_OK);
    CG_CHECK(mem_eq(&c, &c2, sizeof(c)));
    CG_CHECK_EQ_INT(proto_group_decode(sb.data, sb.size, &g2), CG_ERR_PROTO); /* not a group */
    msgpack_sbuffer_clear(&sb);
    CG_CHECK_EQ_INT(proto_event_encode(&e, &sb), CG_ERR_OK);
    CG_CHECK_EQ_INT(proto_event_decode(sb.data, sb.size, &e2), CG_ERR_OK);
    CG_CHECK(mem_eq(&e, &e2, sizeof(e)));
    msgpack_sbuffer_clear(&sb);
    CG_CHECK_EQ_INT(proto_usage_encode(&u, &sb), CG_ERR_OK);
    CG_CHECK_EQ_INT(proto_usage_decode(sb.data, sb.size, &u2), CG_ERR_OK);
    CG_CHECK(mem_eq(&u, &u2, sizeof(u)));
    msgpack_sbuffer_clear(&sb);
    memset(&e2, 0, sizeof(e2));
    CG_CHECK_EQ_INT(proto_pub_encode(long_shard, &e, &sb), CG_ERR_OK);
    CG_CHECK_EQ_INT(proto_pub_decode(sb.data, sb.size, shard, &e2), CG_ERR_OK);
    CG_CHECK_EQ_STR(shard, long_shard);
    CG_CHECK(mem_eq(&e, &e2, sizeof(e)));
    /* A record is not a pub message, nor the other way round. */
    CG_CHECK_EQ_INT(proto_event_decode(sb.data, sb.size, &e2), CG_ERR_PROTO);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- seeds: one valid encoding per decoder, full-size or small ---- */

typedef cg_err (*dec_fn)(const void *b, size_t len);

#define SEEDS_N 14

typedef struct seed {
    msgpack_sbuffer sb;
    dec_fn dec;
} seed;

/* Shrink a full fixture so mutations reach every field quickly. */
static void shrink_org(proto_org *o)
{
    o->customer_limit_n = 2;
    o->customer_limits[1].warn_n = 1;
    o->limit_n = 2;
    o->limits[1].warn_n = 2;
    o->webhook_n = 1;
    o->name[3] = '\0';
    o->webhooks[0].url[9] = '\0';
    o->webhooks[0].secret[9] = '\0';
    o->email_n = 1;
    o->emails[0][PROTO_EMAIL_MAX - 8 + 3] = '\0';
}

static void shrink_key(proto_key *k)
{
    k->limit_n = 2;
    k->name[3] = '\0';
    k->group[2] = k->customer[2] = '\0';
    k->model_n = 2;
    k->ip_allow_n = 2;
    k->ip_deny_n = 1;
}

static void shrink_group(proto_group *g)
{
    g->limit_n = 2;
    g->model_n = 1;
    g->name[3] = '\0';
}

static void shrink_customer(proto_customer *c)
{
    c->limit_n = 2;
    c->limits[0].warn_n = 1;
}

/* The issue-3 parts of a small seed set. */
static void shrink_records(proto_req *reqs, proto_rep *reps)
{
    shrink_group(&reqs[PROTO_OP_PUT_GROUP - 1].u.put_group.group);
    shrink_customer(&reqs[PROTO_OP_PUT_CUSTOMER - 1].u.put_customer.customer);
    reqs[PROTO_OP_RESERVE - 1].u.reserve.inline_n = 2;
    reqs[PROTO_OP_GET_CUSTOMER - 1].u.get_customer.inline_n = 1;
    shrink_group(&reps[12].u.get_group.group);
    shrink_customer(&reps[13].u.get_customer.customer);
    shrink_org(&reps[15].u.get_org_state.org);
    reps[12].u.get_group.state_n = reps[13].u.get_customer.state_n = 1;
    reps[14].u.get_customer.state_n = reps[15].u.get_org_state.state_n = 1;
}

static void seeds_make(seed s[SEEDS_N], bool small)
{
    static proto_req reqs[REQS_N];
    static proto_rep reps[REPS_N];
    static proto_org o;
    static proto_key k;
    static proto_group g;
    static proto_customer c;
    static proto_event ev[REPS_EVENTS];
    proto_event e;
    proto_usage u;
    fill_reqs(reqs);
    fill_reps(reps, ev);
    fill_org(&o);
    fill_key(&k);
    fill_event(&e, 42);
    fill_usage(&u);
    fill_group(&g);
    fill_customer(&c);
    if (small) {
        shrink_records(reqs, reps);
        shrink_group(&g);
        shrink_customer(&c);
        shrink_org(&reqs[PROTO_OP_PUT_ORG - 1].u.put_org.org);
        shrink_key(&reqs[PROTO_OP_PUT_KEY - 1].u.put_key.key);
        shrink_key(&reps[1].u.auth.key);
        shrink_org(&reps[7].u.get_org.org);
        shrink_key(&reps[9].u.get_key.key);
        reps[2].u.reserve.state_n = reps[3].u.reserve.state_n = reps[9].u.get_key.state_n = 2;
        shrink_org(&o);
        shrink_key(&k);
    }
    dec_fn decs[SEEDS_N] = {dec_req, dec_req,   dec_rep,      dec_rep, dec_org,
                            dec_key, dec_event, dec_usage,    dec_pub, dec_group,
                            dec_req, dec_rep,   dec_customer, dec_req};
    for (int i = 0; i < SEEDS_N; i++) {
        msgpack_sbuffer_init(&s[i].sb);
        s[i].dec = decs[i];
    }
    proto_req_encode(reqs, REQS_N, &s[0].sb);
    proto_req_encode(&reqs[PROTO_OP_RESERVE - 1], 1, &s[1].sb);
    proto_rep_encode(reps, REPS_N, &s[2].sb);
    proto_rep_encode(&reps[3], 1, &s[3].sb);
    proto_org_encode(&o, &s[4].sb);
    proto_key_encode(&k, &s[5].sb);
    proto_event_encode(&e, &s[6].sb);
    proto_usage_encode(&u, &s[7].sb);
    proto_pub_encode("shard-a", &e, &s[8].sb);
    proto_group_encode(&g, &s[9].sb);
    proto_req_encode(&reqs[PROTO_OP_GET_CUSTOMER - 1], 2, &s[10].sb); /* + delete */
    proto_rep_encode(&reps[12], 5, &s[11].sb);                        /* issue-3 bodies */
    proto_customer_encode(&c, &s[12].sb);
    /* A partial SETTLE with two usage records (key leases). */
    static proto_usage srecs[2];
    proto_req settle = reqs[PROTO_OP_SETTLE - 1];
    fill_usage(&srecs[0]);
    fill_usage(&srecs[1]);
    srecs[1].request_id[3] = '\0';
    settle.u.settle.partial = 1;
    settle.u.settle.charge_seq = 2;
    settle.u.settle.lease_ms = 1000;
    settle.u.settle.rec_n = 2;
    settle.u.settle.recs = srecs;
    proto_req_encode(&settle, 1, &s[13].sb);
}

static void seeds_free(seed s[SEEDS_N])
{
    for (int i = 0; i < SEEDS_N; i++) {
        msgpack_sbuffer_destroy(&s[i].sb);
    }
}

/* ---- rejection ---- */

CG_TEST(every_truncation_rejected)
{
    seed s[SEEDS_N];
    seeds_make(s, false);
    for (int i = 0; i < SEEDS_N; i++) {
        CG_CHECK_EQ_INT(s[i].dec(s[i].sb.data, s[i].sb.size), CG_ERR_OK);
        for (size_t len = 0; len < s[i].sb.size; len++) {
            CG_CHECK_EQ_INT(s[i].dec(s[i].sb.data, len), CG_ERR_PROTO);
        }
    }
    seeds_free(s);
}

CG_TEST(trailing_bytes_rejected)
{
    seed s[SEEDS_N];
    seeds_make(s, true);
    for (int i = 0; i < SEEDS_N; i++) {
        msgpack_sbuffer_write(&s[i].sb, "\xc0", 1);
        CG_CHECK_EQ_INT(s[i].dec(s[i].sb.data, s[i].sb.size), CG_ERR_PROTO);
    }
    seeds_free(s);
}

CG_TEST(wrong_version_rejected)
{
    static const uint8_t v2[] = {0x92, 0x02, 0x91, 0x92, 0x01, 0xa0};
    static const uint8_t v0[] = {0x92, 0x00, 0x91, 0x92, 0x01, 0xa0};
    static const uint8_t vneg[] = {0x92, 0xff, 0x91, 0x92, 0x01, 0xa0};
    static const uint8_t vbig[] = {0x92, 0xcf, 1, 0, 0, 0, 0, 0, 0, 1, 0x91, 0x92, 0x01, 0xa0};
    static const uint8_t v2_arity3[] = {0x93, 0x02, 0xc0, 0xc0}; /* a future layout */
    static const uint8_t vstr[] = {0x92, 0xa1, '1', 0x91, 0x92, 0x01, 0xa0};
    static const uint8_t v1_int8[] = {0x92, 0xd0, 0x01, 0x91, 0x92, 0x01, 0xa0};
    CG_CHECK_EQ_INT(dec_req(v2, sizeof(v2)), CG_ERR_VERSION);
    CG_CHECK_EQ_INT(dec_req(v0, sizeof(v0)), CG_ERR_VERSION);
    CG_CHECK_EQ_INT(dec_req(vneg, sizeof(vneg)), CG_ERR_VERSION);
    CG_CHECK_EQ_INT(dec_req(vbig, sizeof(vbig)), CG_ERR_VERSION);
    CG_CHECK_EQ_INT(dec_req(v2_arity3, sizeof(v2_arity3)), CG_ERR_VERSION);
    CG_CHECK_EQ_INT(dec_rep(v2, sizeof(v2)), CG_ERR_VERSION);
    CG_CHECK_EQ_INT(dec_org(v2, sizeof(v2)), CG_ERR_VERSION);
    CG_CHECK_EQ_INT(dec_pub(v2_arity3, sizeof(v2_arity3)), CG_ERR_VERSION);
    CG_CHECK_EQ_INT(dec_req(vstr, sizeof(vstr)), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(dec_req(v1_int8, sizeof(v1_int8)), CG_ERR_OK); /* any int format */
}

CG_TEST(oversized_rejected)
{
    static uint8_t big[PROTO_MSG_MAX_BYTES + 1];
    static const uint8_t ping[] = {0x92, 0x01, 0x91, 0x92, 0x01, 0xa0};
    memcpy(big, ping, sizeof(ping));
    CG_CHECK_EQ_INT(dec_req(big, (size_t)PROTO_MSG_MAX_BYTES + 1), CG_ERR_TOOBIG);
    CG_CHECK_EQ_INT(dec_rep(big, (size_t)PROTO_MSG_MAX_BYTES + 1), CG_ERR_TOOBIG);
    CG_CHECK_EQ_INT(dec_org(big, (size_t)PROTO_MSG_MAX_BYTES + 1), CG_ERR_TOOBIG);
    CG_CHECK_EQ_INT(dec_pub(big, (size_t)PROTO_MSG_MAX_BYTES + 1), CG_ERR_TOOBIG);
    CG_CHECK_EQ_INT(dec_req(big, PROTO_MSG_MAX_BYTES), CG_ERR_PROTO); /* at the cap: trailing */
    CG_CHECK_EQ_INT(dec_req(big, sizeof(ping)), CG_ERR_OK);
}

/* The route of a ping of `len` bytes. */
static cg_err route_of_len(size_t len)
{
    raw r;
    raw_init(&r);
    raw_batch(&r, 1);
    raw_arr(&r, 2);
    raw_u(&r, PROTO_OP_PING);
    raw_str(&r, len, 'x');
    cg_err err = dec_raw_req(&r);
    raw_fini(&r);
    return err;
}

/* A release whose request id has `len` bytes. */
static cg_err reqid_of_len(size_t len)
{
    raw r;
    raw_init(&r);
    raw_batch(&r, 1);
    raw_arr(&r, 3);
    raw_u(&r, PROTO_OP_RELEASE);
    raw_str(&r, 3, 'x');
    raw_str(&r, len, 'r');
    cg_err err = dec_raw_req(&r);
    raw_fini(&r);
    return err;
}

static cg_err pub_shard_of_len(size_t len)
{
    raw r;
    raw_init(&r);
    raw_arr(&r, 3);
    raw_u(&r, PROTO_VERSION);
    raw_str(&r, len, 's');
    raw_event(&r, 1, PROTO_EVT_SPEND_REACHED, PROTO_METRIC_COST, 10000);
    cg_err err = dec_pub(r.sb.data, r.sb.size);
    raw_fini(&r);
    return err;
}

/* An auth whose hash is a bin of `len` bytes. */
static cg_err hash_of_len(size_t len)
{
    uint8_t hash[HASH_BYTES + 1] = {0};
    raw r;
    raw_init(&r);
    raw_batch(&r, 1);
    raw_arr(&r, 3);
    raw_u(&r, PROTO_OP_AUTH);
    raw_str(&r, 4, 'k');
    msgpack_pack_bin(&r.pk, len);
    msgpack_pack_bin_body(&r.pk, hash, len);
    cg_err err = dec_raw_req(&r);
    raw_fini(&r);
    return err;
}

CG_TEST(string_bounds)
{
    CG_CHECK_EQ_INT(hash_of_len(HASH_BYTES), CG_ERR_OK);
    CG_CHECK_EQ_INT(hash_of_len(HASH_BYTES - 1), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(hash_of_len(HASH_BYTES + 1), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(route_of_len(PROTO_ROUTE_MAX), CG_ERR_OK);
    CG_CHECK_EQ_INT(route_of_len(PROTO_ROUTE_MAX + 1), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(reqid_of_len(PROTO_REQID_MAX), CG_ERR_OK);
    CG_CHECK_EQ_INT(reqid_of_len(PROTO_REQID_MAX + 1), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(pub_shard_of_len(PROTO_SHARD_MAX), CG_ERR_OK);
    CG_CHECK_EQ_INT(pub_shard_of_len(PROTO_SHARD_MAX + 1), CG_ERR_PROTO);
    /* str8/str16 encodings of a short route are fine; a NUL byte inside is not. */
    static const uint8_t str16[] = {0x92, 0x01, 0x91, 0x92, 0x01, 0xda, 0x00, 0x01, 'a'};
    static const uint8_t nul[] = {0x92, 0x01, 0x91, 0x92, 0x01, 0xa3, 'a', 0x00, 'b'};
    CG_CHECK_EQ_INT(dec_req(str16, sizeof(str16)), CG_ERR_OK);
    CG_CHECK_EQ_INT(dec_req(nul, sizeof(nul)), CG_ERR_PROTO);
}

static cg_err pings(uint32_t n)
{
    raw r;
    raw_init(&r);
    raw_batch(&r, n);
    for (uint32_t i = 0; i < n; i++) {
        raw_arr(&r, 2);
        raw_u(&r, PROTO_OP_PING);
        raw_str(&r, 0, 'x');
    }
    cg_err err = dec_raw_req(&r);
    raw_fini(&r);
    return err;
}

CG_TEST(batch_bounds)
{
    CG_CHECK_EQ_INT(pings(0), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(pings(1), CG_ERR_OK);
    CG_CHECK_EQ_INT(pings(PROTO_BATCH_MAX), CG_ERR_OK);
    CG_CHECK_EQ_INT(pings(PROTO_BATCH_MAX + 1), CG_ERR_PROTO);
}

CG_TEST(unknown_op_rejected)
{
    static const uint8_t op0[] = {0x92, 0x01, 0x91, 0x92, 0x00, 0xa0};
    static const uint8_t op18[] = {0x92, 0x01, 0x91, 0x92, 0x12, 0xa0};
    static const uint8_t op17[] = {0x92, 0x01, 0x91, 0x92, 0x11, 0xa0}; /* get_org_state */
    static const uint8_t op256[] = {0x92, 0x01, 0x91, 0x92, 0xcd, 0x01, 0x00, 0xa0};
    static const uint8_t opneg[] = {0x92, 0x01, 0x91, 0x92, 0xff, 0xa0};
    static const uint8_t rep127[] = {0x92, 0x01, 0x91, 0x92, 0x7f, 0x05}; /* no such op */
    static const uint8_t rep15[] = {0x92, 0x01, 0x91, 0x92, 0x0f, 0x00};  /* delete: bare */
    static const uint8_t op_u64[] = {0x92, 0x01, 0x91, 0x92, 0xcf, 0, 0, 0, 0, 0, 0, 0, 1, 0xa0};
    CG_CHECK_EQ_INT(dec_req(op0, sizeof(op0)), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(dec_req(op18, sizeof(op18)), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(dec_req(op17, sizeof(op17)), CG_ERR_OK);
    CG_CHECK_EQ_INT(dec_req(op256, sizeof(op256)), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(dec_req(opneg, sizeof(opneg)), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(dec_rep(rep127, sizeof(rep127)), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(dec_rep(rep15, sizeof(rep15)), CG_ERR_OK);
    CG_CHECK_EQ_INT(dec_req(op_u64, sizeof(op_u64)), CG_ERR_OK);
}

CG_TEST(hostile_lengths_rejected)
{
    static const uint8_t top[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t batch[] = {0x92, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t batch16[] = {0x92, 0x01, 0xdc, 0x00, 0x02, 0x92, 0x01, 0xa0};
    static const uint8_t route[] = {0x92, 0x01, 0x91, 0x92, 0x01, 0xdb, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t hash[] = {0x92, 0x01, 0x91, 0x93, 0x02, 0xa0,
                                   0xc6, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t warn[] = {0x92, 0x01, 0x98, 0xa1, 'o',  0xa1, 'n',  0x01,
                                   0x00, 0x91, 0x97, 0x01, 0x00, 0x01, 0x00, 0x00,
                                   0x00, 0xdd, 0x7f, 0xff, 0xff, 0xff};
    CG_CHECK_EQ_INT(dec_req(top, sizeof(top)), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(dec_rep(top, sizeof(top)), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(dec_org(top, sizeof(top)), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(dec_req(batch, sizeof(batch)), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(dec_rep(batch, sizeof(batch)), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(dec_req(batch16, sizeof(batch16)), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(dec_req(route, sizeof(route)), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(dec_req(hash, sizeof(hash)), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(dec_org(warn, sizeof(warn)), CG_ERR_PROTO);
}

CG_TEST(deep_nesting_rejected)
{
    enum { DEPTH = 100000 };
    static uint8_t b[DEPTH + 3];
    b[0] = 0x92;
    b[1] = 0x01;
    memset(b + 2, 0x91, DEPTH);
    b[DEPTH + 2] = 0xc0;
    CG_CHECK_EQ_INT(dec_req(b, DEPTH + 3), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(dec_rep(b, DEPTH + 3), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(dec_org(b, DEPTH + 3), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(dec_event(b, DEPTH + 3), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(dec_pub(b, DEPTH + 3), CG_ERR_PROTO);
    memset(b, 0x91, DEPTH + 3);
    CG_CHECK_EQ_INT(dec_req(b, DEPTH + 3), CG_ERR_PROTO);
}

static cg_err org_counts(uint32_t limit_n, uint32_t warn_n, uint32_t webhook_n, uint64_t anchor)
{
    raw r;
    raw_init(&r);
    raw_org(&r, limit_n, warn_n, webhook_n, anchor);
    cg_err err = dec_raw_org(&r);
    raw_fini(&r);
    return err;
}

/* An events reply with n events of the given seq step (0 = repeating seqs). */
static cg_err events_reply(uint32_t n, int64_t step)
{
    raw r;
    raw_init(&r);
    raw_batch(&r, 1);
    raw_arr(&r, 4);
    raw_u(&r, PROTO_OP_EVENTS_SINCE);
    raw_u(&r, CG_ERR_OK);
    raw_u(&r, 7);
    raw_arr(&r, n);
    for (uint32_t i = 0; i < n; i++) {
        raw_event(&r, (uint64_t)(1000 + step * i), PROTO_EVT_TOKEN_WARNING, PROTO_METRIC_TOKENS,
                  5000);
    }
    cg_err err = dec_raw_rep(&r);
    raw_fini(&r);
    return err;
}

/* A reserve reply (status OK) with n limit states. */
static cg_err states_reply(uint32_t n)
{
    raw r;
    raw_init(&r);
    raw_batch(&r, 1);
    raw_arr(&r, 3);
    raw_u(&r, PROTO_OP_RESERVE);
    raw_u(&r, CG_ERR_OK);
    raw_arr(&r, n);
    for (uint32_t i = 0; i < n; i++) {
        raw_arr(&r, 10); /* [id, used, reserved, start, end, cost, day, 0, max, block] */
        for (int j = 0; j < 10; j++) {
            raw_i(&r, j == 6 ? CG_WIN_DAY : j < 5 || j == 8 ? j : 0);
        }
    }
    cg_err err = dec_raw_rep(&r);
    raw_fini(&r);
    return err;
}

CG_TEST(count_bounds)
{
    CG_CHECK_EQ_INT(org_counts(1, PROTO_WARN_MAX, 0, 1), CG_ERR_OK);
    CG_CHECK_EQ_INT(org_counts(1, PROTO_WARN_MAX + 1, 0, 1), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(org_counts(PROTO_LIMITS_MAX, 0, 0, 1), CG_ERR_OK);
    CG_CHECK_EQ_INT(org_counts(PROTO_LIMITS_MAX + 1, 0, 0, 1), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(org_counts(0, 0, PROTO_WEBHOOKS_MAX, 1), CG_ERR_OK);
    CG_CHECK_EQ_INT(org_counts(0, 0, PROTO_WEBHOOKS_MAX + 1, 1), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(events_reply(0, 1), CG_ERR_OK);
    CG_CHECK_EQ_INT(events_reply(PROTO_EVENTS_MAX, 1), CG_ERR_OK);
    CG_CHECK_EQ_INT(events_reply(PROTO_EVENTS_MAX + 1, 1), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(events_reply(2, 0), CG_ERR_PROTO);  /* repeated seq */
    CG_CHECK_EQ_INT(events_reply(2, -1), CG_ERR_PROTO); /* descending seq */
    CG_CHECK_EQ_INT(states_reply(PROTO_LIMITS_MAX), CG_ERR_OK);
    CG_CHECK_EQ_INT(states_reply(PROTO_LIMITS_MAX + 1), CG_ERR_PROTO);
}

/* Documented bounds of record fields (proto.h) are enforced on decode. */
CG_TEST(record_bounds)
{
    CG_CHECK_EQ_INT(org_counts(0, 0, 0, 28), CG_ERR_OK);
    CG_CHECK_EQ_INT(org_counts(0, 0, 0, 0), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(org_counts(0, 0, 0, 29), CG_ERR_PROTO);
    static const struct {
        uint32_t id;
        uint8_t kind;
        uint32_t sliding_s;
        uint16_t bp[2];
        uint32_t dup; /* a second limit with this id */
        cg_err want;
    } cases[] = {
        {1, CG_WIN_MONTH, 0, {1, 10000}, 2, CG_ERR_OK},
        {1, CG_WIN_SLIDING, 1, {1, 2}, 2, CG_ERR_OK},
        {1, CG_WIN_SLIDING, CG_WINDOW_SLIDING_MAX_S, {1, 2}, 2, CG_ERR_OK},
        {1, CG_WIN_SLIDING, CG_WINDOW_SLIDING_MAX_S + 1, {1, 2}, 2, CG_ERR_PROTO},
        {1, CG_WIN_SLIDING, 0, {1, 2}, 2, CG_ERR_PROTO},
        {1, CG_WIN_DAY, 60, {1, 2}, 2, CG_ERR_PROTO},
        {1, CG_WIN_SLIDING + 1, 0, {1, 2}, 2, CG_ERR_PROTO},
        {0, CG_WIN_DAY, 0, {1, 2}, 2, CG_ERR_PROTO},
        {1, CG_WIN_DAY, 0, {1, 2}, 1, CG_ERR_PROTO},
        {1, CG_WIN_DAY, 0, {0, 2}, 2, CG_ERR_PROTO},
        {1, CG_WIN_DAY, 0, {2, 2}, 2, CG_ERR_PROTO},
        {1, CG_WIN_DAY, 0, {3, 2}, 2, CG_ERR_PROTO},
        {1, CG_WIN_DAY, 0, {1, 10001}, 2, CG_ERR_PROTO},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        raw r;
        raw_init(&r);
        raw_org_start(&r, 8, 1, 1);
        raw_arr(&r, 2);
        raw_limit(&r, cases[i].id, cases[i].kind, cases[i].sliding_s, 2, cases[i].bp);
        raw_limit(&r, cases[i].dup, CG_WIN_LIFETIME, 0, 0, NULL);
        raw_arr(&r, 0);
        raw_arr(&r, 0);
        raw_u(&r, 0);
        cg_err err = dec_raw_org(&r);
        raw_fini(&r);
        if (err != cases[i].want) {
            fprintf(stderr, "  record_bounds case %zu\n", i);
        }
        CG_CHECK_EQ_INT(err, cases[i].want);
    }
}

static cg_err event_with(uint64_t type, uint64_t metric, uint64_t bp)
{
    raw r;
    raw_init(&r);
    raw_arr(&r, 2);
    raw_u(&r, PROTO_VERSION);
    raw_event(&r, 1, type, metric, bp);
    cg_err err = dec_event(r.sb.data, r.sb.size);
    raw_fini(&r);
    return err;
}

CG_TEST(event_bounds)
{
    CG_CHECK_EQ_INT(event_with(PROTO_EVT_REQUEST_REACHED, PROTO_METRIC_REQUESTS, 10000), CG_ERR_OK);
    CG_CHECK_EQ_INT(event_with(PROTO_EVT_SPEND_WARNING, PROTO_METRIC_COST, 1), CG_ERR_OK);
    CG_CHECK_EQ_INT(event_with(PROTO_EVT_SPEND_WARNING, PROTO_METRIC_TOKENS, 1), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(event_with(0, PROTO_METRIC_COST, 1), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(event_with(7, PROTO_METRIC_COUNT_, 1), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(event_with(PROTO_EVT_SPEND_WARNING, PROTO_METRIC_COST, 0), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(event_with(PROTO_EVT_SPEND_WARNING, PROTO_METRIC_COST, 10001), CG_ERR_PROTO);
}

/* The reserve op [3, "", "r", <lease bytes>, [1, 2, 3], 0, []] with a hand-encoded lease. */
static cg_err reserve_lease(const uint8_t *lease, size_t n, int64_t *out)
{
    raw r;
    raw_init(&r);
    raw_batch(&r, 1);
    raw_arr(&r, 7);
    raw_u(&r, PROTO_OP_RESERVE);
    raw_str(&r, 0, 'x');
    raw_str(&r, 1, 'r');
    raw_bytes(&r, lease, n);
    raw_arr(&r, 3);
    raw_i(&r, 1);
    raw_i(&r, 2);
    raw_i(&r, 3);
    raw_u(&r, 0);
    raw_arr(&r, 0);
    proto_req *q = NULL;
    uint32_t cnt = 0;
    cg_err err = proto_req_decode(r.sb.data, r.sb.size, &q, &cnt);
    if (err == CG_ERR_OK) {
        *out = q[0].u.reserve.lease_ms;
        proto_req_free(q, cnt);
    }
    raw_fini(&r);
    return err;
}

CG_TEST(integer_formats)
{
    static const struct {
        uint8_t b[9];
        size_t n;
        cg_err want;
        int64_t v;
    } cases[] = {
        {{0x7f}, 1, CG_ERR_OK, 127},
        {{0xe0}, 1, CG_ERR_OK, -32},
        {{0xd0, 0xff}, 2, CG_ERR_OK, -1},
        {{0xd0, 0x05}, 2, CG_ERR_OK, 5},
        {{0xd1, 0x80, 0x00}, 3, CG_ERR_OK, -32768},
        {{0xd2, 0x80, 0, 0, 0}, 5, CG_ERR_OK, INT32_MIN},
        {{0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}, 9, CG_ERR_OK, INT64_MIN},
        {{0xd3, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, CG_ERR_OK, INT64_MAX},
        {{0xcc, 0xff}, 2, CG_ERR_OK, 255},
        {{0xcf, 0, 0, 0, 0, 0, 0, 0, 5}, 9, CG_ERR_OK, 5},
        {{0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, CG_ERR_OK, INT64_MAX},
        {{0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0}, 9, CG_ERR_PROTO, 0},
        {{0xca, 0, 0, 0, 0}, 5, CG_ERR_PROTO, 0}, /* float32 */
        {{0xc0}, 1, CG_ERR_PROTO, 0},             /* nil */
        {{0xc3}, 1, CG_ERR_PROTO, 0},             /* true */
        {{0xa1, '1'}, 2, CG_ERR_PROTO, 0},        /* "1" */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t v = 0;
        CG_CHECK_EQ_INT(reserve_lease(cases[i].b, cases[i].n, &v), cases[i].want);
        CG_CHECK_EQ_INT(v, cases[i].v);
    }
}

CG_TEST(wrong_types_and_arity_rejected)
{
    static const struct {
        const char *what;
        uint8_t b[16];
        size_t n;
        cg_err want;
        bool rep;
    } cases[] = {
        {"ping ok", {0x92, 0x01, 0x91, 0x92, 0x01, 0xa0}, 6, CG_ERR_OK, false},
        {"ping extra", {0x92, 0x01, 0x91, 0x93, 0x01, 0xa0, 0xc0}, 7, CG_ERR_PROTO, false},
        {"op alone", {0x92, 0x01, 0x91, 0x91, 0x01}, 5, CG_ERR_PROTO, false},
        {"route int", {0x92, 0x01, 0x91, 0x92, 0x01, 0x00}, 6, CG_ERR_PROTO, false},
        {"route bin", {0x92, 0x01, 0x91, 0x92, 0x01, 0xc4, 0x00}, 7, CG_ERR_PROTO, false},
        {"batch map", {0x92, 0x01, 0x80}, 3, CG_ERR_PROTO, false},
        {"top extra", {0x93, 0x01, 0x91, 0x92, 0x01, 0xa0, 0xc0}, 7, CG_ERR_PROTO, false},
        {"hash str", {0x92, 0x01, 0x91, 0x93, 0x02, 0xa0, 0xa0}, 7, CG_ERR_PROTO, false},
        {"max_n 0", {0x92, 0x01, 0x91, 0x94, 0x0a, 0xa0, 0x00, 0x00}, 8, CG_ERR_PROTO, false},
        {"max_n 256", {0x92, 0x01, 0x91, 0x94, 0x0a, 0xa0, 0x00, 0xcd, 1, 0}, 10, CG_ERR_OK, false},
        {"max_n 257",
         {0x92, 0x01, 0x91, 0x94, 0x0a, 0xa0, 0x00, 0xcd, 1, 1},
         10,
         CG_ERR_PROTO,
         false},
        {"create_only int",
         {0x92, 0x01, 0x91, 0x94, 0x06, 0xa0, 0x01, 0xc0},
         8,
         CG_ERR_PROTO,
         false},
        {"release ok", {0x92, 0x01, 0x91, 0x92, 0x05, 0x05}, 6, CG_ERR_OK, true},
        {"status 65535", {0x92, 0x01, 0x91, 0x92, 0x05, 0xcd, 0xff, 0xff}, 8, CG_ERR_OK, true},
        {"status 65536", {0x92, 0x01, 0x91, 0x92, 0x05, 0xce, 0, 1, 0, 0}, 10, CG_ERR_PROTO, true},
        {"auth ok bare", {0x92, 0x01, 0x91, 0x92, 0x02, 0x00}, 6, CG_ERR_PROTO, true},
        {"settle ok", {0x92, 0x01, 0x91, 0x93, 0x04, 0x00, 0xc2}, 7, CG_ERR_OK, true},
        {"settle late int", {0x92, 0x01, 0x91, 0x93, 0x04, 0x00, 0x01}, 7, CG_ERR_PROTO, true},
        {"settle budget body", {0x92, 0x01, 0x91, 0x93, 0x04, 0x0c, 0xc2}, 7, CG_ERR_PROTO, true},
        {"reserve budget no refusal",
         {0x92, 0x01, 0x91, 0x93, 0x03, 0x0c, 0x90},
         7,
         CG_ERR_PROTO,
         true},
        {"reserve ok", {0x92, 0x01, 0x91, 0x93, 0x03, 0x00, 0x90}, 7, CG_ERR_OK, true},
        {"release body", {0x92, 0x01, 0x91, 0x93, 0x05, 0x00, 0xc0}, 7, CG_ERR_PROTO, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cg_err err =
            cases[i].rep ? dec_rep(cases[i].b, cases[i].n) : dec_req(cases[i].b, cases[i].n);
        if (err != cases[i].want) {
            fprintf(stderr, "  case \"%s\"\n", cases[i].what);
        }
        CG_CHECK_EQ_INT(err, cases[i].want);
    }
}

CG_TEST(settle_without_usage)
{
    proto_req in;
    memset(&in, 0, sizeof(in));
    in.op = PROTO_OP_SETTLE;
    strcpy(in.route, "customer:acme/c1");
    strcpy(in.u.settle.request_id, "req_1");
    in.u.settle.actual = (proto_amounts){1, 2, 3};
    in.u.settle.usage.ts_ms = 5; /* ignored: has_usage == 0 */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    CG_CHECK_EQ_INT(proto_req_encode(&in, 1, &sb), CG_ERR_OK);
    proto_req *out = NULL;
    uint32_t n = 0;
    CG_CHECK_EQ_INT(proto_req_decode(sb.data, sb.size, &out, &n), CG_ERR_OK);
    CG_CHECK_EQ_INT(out[0].u.settle.has_usage, 0);
    CG_CHECK_EQ_INT(out[0].u.settle.usage.ts_ms, 0);
    CG_CHECK_EQ_INT(out[0].u.settle.actual.requests, 3);
    CG_CHECK_EQ_STR(out[0].route, "customer:acme/c1");
    proto_req_free(out, n);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- usage records of a SETTLE on a key lease (issue 4) ---- */

/* The head of a SETTLE op, hand-built: [4, "kkkk", "rrrr", [1, 2, 3], nil, false, 7, 30000]
 * with `arity` elements announced; the caller appends the elements past 8. */
static void raw_settle(raw *r, uint32_t arity)
{
    raw_arr(r, arity);
    raw_u(r, PROTO_OP_SETTLE);
    raw_str(r, 4, 'k');
    raw_str(r, 4, 'r');
    raw_arr(r, 3);
    raw_i(r, 1);
    raw_i(r, 2);
    raw_i(r, 3);
    raw_bytes(r, "\xc0\xc2", 2); /* nil usage, partial false */
    raw_u(r, 7);
    raw_i(r, 30000);
}

/* A usage record, hand-built: [1, "oooo", "kk", "m", 1, 2, 3, 200, 5, false, "", "", "",
 * request id of rid_len 'q's]; arity 13 leaves the request id out. */
static void raw_usage(raw *r, uint32_t arity, size_t rid_len)
{
    raw_arr(r, arity);
    raw_i(r, 1);
    raw_str(r, 4, 'o');
    raw_str(r, 2, 'k');
    raw_str(r, 1, 'm');
    raw_i(r, 1);
    raw_i(r, 2);
    raw_i(r, 3);
    raw_i(r, 200);
    raw_i(r, 5);
    raw_bytes(r, "\xc2", 1);
    raw_str(r, 0, 'g');
    raw_str(r, 0, 'c');
    raw_str(r, 0, 'p');
    if (arity > 13) {
        raw_str(r, rid_len, 'q');
    }
}

/* The proto_req and proto_usage raw_settle and raw_usage(14, 3) describe. */
static proto_req settle_fixture(proto_usage *u)
{
    proto_req q;
    memset(&q, 0, sizeof(q));
    q.op = PROTO_OP_SETTLE;
    strcpy(q.route, "kkkk");
    strcpy(q.u.settle.request_id, "rrrr");
    q.u.settle.actual = (proto_amounts){1, 2, 3};
    q.u.settle.charge_seq = 7;
    q.u.settle.lease_ms = 30000;
    memset(u, 0, sizeof(*u));
    u->ts_ms = 1;
    strcpy(u->org, "oooo");
    strcpy(u->key_id, "kk");
    strcpy(u->model, "m");
    u->prompt_tokens = 1;
    u->completion_tokens = 2;
    u->cost_nusd = 3;
    u->status = 200;
    u->latency_ms = 5;
    strcpy(u->request_id, "qqq");
    return q;
}

/* The settle member of a and b equal in every byte but the recs pointer, and their records. */
static bool settles_eq(const proto_req *a, const proto_req *b)
{
    proto_req x = *a;
    x.u.settle.recs = b->u.settle.recs;
    if (!reqs_eq(&x, b, 1)) {
        return false;
    }
    return a->u.settle.rec_n == 0 ||
           mem_eq(a->u.settle.recs, b->u.settle.recs, a->u.settle.rec_n * sizeof(proto_usage));
}

CG_TEST(settle_records_wire)
{
    proto_usage u;
    proto_req in = settle_fixture(&u);
    in.u.settle.recs = &u; /* rec_n 0: ignored, nothing sent */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    raw want;
    raw_init(&want);
    raw_batch(&want, 1);
    raw_settle(&want, 8);
    /* Without records: the arity-8 SETTLE of before, byte for byte. */
    CG_CHECK_EQ_INT(proto_req_encode(&in, 1, &sb), CG_ERR_OK);
    CG_CHECK(sb.size == want.sb.size && mem_eq(sb.data, want.sb.data, sb.size));
    proto_req *out = NULL;
    uint32_t n = 0;
    CG_CHECK_EQ_INT(proto_req_decode(sb.data, sb.size, &out, &n), CG_ERR_OK);
    CG_CHECK_EQ_INT(out[0].u.settle.rec_n, 0);
    CG_CHECK(out[0].u.settle.recs == NULL);
    proto_req_free(out, n);
    raw_fini(&want);

    /* One record: arity 9, the records array last, each record in the usage encoding. */
    in.u.settle.rec_n = 1;
    msgpack_sbuffer_clear(&sb);
    raw_init(&want);
    raw_batch(&want, 1);
    raw_settle(&want, 9);
    raw_arr(&want, 1);
    raw_usage(&want, 14, 3);
    CG_CHECK_EQ_INT(proto_req_encode(&in, 1, &sb), CG_ERR_OK);
    CG_CHECK(sb.size == want.sb.size && mem_eq(sb.data, want.sb.data, sb.size));
    CG_CHECK_EQ_INT(proto_req_decode(sb.data, sb.size, &out, &n), CG_ERR_OK);
    CG_CHECK_EQ_INT(out[0].u.settle.rec_n, 1);
    CG_CHECK(out[0].u.settle.recs != NULL && out[0].u.settle.recs != &u);
    CG_CHECK(settles_eq(&out[0], &in));
    proto_req_free(out, n);
    raw_fini(&want);
    msgpack_sbuffer_destroy(&sb);
}

CG_TEST(settle_records_round_trip_max)
{
    proto_usage *recs = calloc(PROTO_SETTLE_RECS_MAX, sizeof(*recs));
    CG_CHECK(recs != NULL);
    for (uint32_t i = 0; i < PROTO_SETTLE_RECS_MAX; i++) {
        char tag[8];
        fill_usage(&recs[i]); /* every field at its bound */
        snprintf(tag, sizeof(tag), "%04u", i);
        memcpy(recs[i].request_id, tag, 4);
        recs[i].ts_ms = 1767225600000 + i;
    }
    static proto_req in[3];
    proto_usage one;
    in[0] = settle_fixture(&one);
    in[0].u.settle.partial = 1;
    in[0].u.settle.charge_seq = UINT32_MAX;
    in[0].u.settle.rec_n = PROTO_SETTLE_RECS_MAX;
    in[0].u.settle.recs = recs;
    in[1] = settle_fixture(&one);
    in[2] = settle_fixture(&one);
    in[2].u.settle.rec_n = 1;
    in[2].u.settle.recs = &one;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    /* The largest SETTLE alone: well within one message. */
    CG_CHECK_EQ_INT(proto_req_encode(in, 1, &sb), CG_ERR_OK);
    printf("  a SETTLE with %u records of the largest size: %zu bytes\n", PROTO_SETTLE_RECS_MAX,
           sb.size);
    CG_CHECK(sb.size <= PROTO_MSG_MAX_BYTES / 8);
    msgpack_sbuffer_clear(&sb);
    CG_CHECK_EQ_INT(proto_req_encode(in, 3, &sb), CG_ERR_OK);
    proto_req *out = NULL;
    uint32_t n = 0;
    CG_CHECK_EQ_INT(proto_req_decode(sb.data, sb.size, &out, &n), CG_ERR_OK);
    CG_CHECK_EQ_INT(n, 3);
    for (uint32_t i = 0; i < n; i++) {
        CG_CHECK(settles_eq(&out[i], &in[i]));
    }
    CG_CHECK_EQ_STR(out[0].u.settle.recs[PROTO_SETTLE_RECS_MAX - 1].request_id,
                    recs[PROTO_SETTLE_RECS_MAX - 1].request_id);
    /* What decoded re-encodes to the same bytes. */
    msgpack_sbuffer again;
    msgpack_sbuffer_init(&again);
    CG_CHECK_EQ_INT(proto_req_encode(out, n, &again), CG_ERR_OK);
    CG_CHECK(again.size == sb.size && mem_eq(again.data, sb.data, sb.size));
    msgpack_sbuffer_destroy(&again);
    proto_req_free(out, n);
    msgpack_sbuffer_destroy(&sb);
    free(recs);
}

/* What one message may make the decoder allocate is bounded: PROTO_MSG_RECS_MAX usage
 * records in all, however small each is on the wire. */
CG_TEST(settle_records_bounded_per_message)
{
    enum { OPS = PROTO_MSG_RECS_MAX / PROTO_SETTLE_RECS_MAX + 1 };
    proto_usage one;
    proto_req *in = calloc(OPS, sizeof(*in));
    proto_usage *recs = calloc(PROTO_SETTLE_RECS_MAX, sizeof(*recs));
    CG_CHECK(in != NULL && recs != NULL);
    for (uint32_t i = 0; i < OPS; i++) {
        in[i] = settle_fixture(&one);
        in[i].u.settle.rec_n = PROTO_SETTLE_RECS_MAX;
        in[i].u.settle.recs = recs;
    }
    for (uint32_t i = 0; i < PROTO_SETTLE_RECS_MAX; i++) {
        recs[i] = one;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    CG_CHECK_EQ_INT(proto_req_encode(in, OPS - 1, &sb), CG_ERR_OK); /* exactly the bound */
    CG_CHECK_EQ_INT(dec_req(sb.data, sb.size), CG_ERR_OK);
    msgpack_sbuffer_clear(&sb);
    CG_CHECK_EQ_INT(proto_req_encode(in, OPS, &sb), CG_ERR_OK);
    CG_CHECK(sb.size < PROTO_MSG_MAX_BYTES);
    CG_CHECK_EQ_INT(dec_req(sb.data, sb.size), CG_ERR_TOOBIG);
    msgpack_sbuffer_destroy(&sb);
    free(recs);
    free(in);
}

/* A one-op batch: the SETTLE head of `arity`, then rec_n records of raw_usage(rec_arity,
 * rid_len) announced as arr_n (the last record with last_rid_len instead). */
static cg_err settle_with(uint32_t arity, uint32_t arr_n, uint32_t rec_n, uint32_t rec_arity,
                          size_t rid_len, size_t last_rid_len)
{
    raw r;
    raw_init(&r);
    raw_batch(&r, 1);
    raw_settle(&r, arity);
    if (arity > 8) {
        raw_arr(&r, arr_n);
        for (uint32_t i = 0; i < rec_n; i++) {
            raw_usage(&r, rec_arity, i + 1 == rec_n ? last_rid_len : rid_len);
        }
    }
    cg_err err = dec_req(r.sb.data, r.sb.size);
    raw_fini(&r);
    return err;
}

CG_TEST(settle_records_rejected)
{
    uint32_t max = PROTO_SETTLE_RECS_MAX;
    CG_CHECK_EQ_INT(settle_with(8, 0, 0, 14, 3, 3), CG_ERR_OK);
    CG_CHECK_EQ_INT(settle_with(9, 1, 1, 14, 3, 3), CG_ERR_OK);
    CG_CHECK_EQ_INT(settle_with(9, 3, 3, 14, 3, 3), CG_ERR_OK);
    CG_CHECK_EQ_INT(settle_with(9, max, max, 14, 3, PROTO_REQID_MAX), CG_ERR_OK);
    CG_CHECK_EQ_INT(settle_with(9, 0, 0, 14, 3, 3), CG_ERR_PROTO);             /* empty array */
    CG_CHECK_EQ_INT(settle_with(9, max + 1, max + 1, 14, 3, 3), CG_ERR_PROTO); /* over max */
    CG_CHECK_EQ_INT(settle_with(9, 3, 2, 14, 3, 3), CG_ERR_PROTO);             /* count lie */
    CG_CHECK_EQ_INT(settle_with(9, 2, 2, 13, 3, 3), CG_ERR_PROTO);             /* record arity 13 */
    CG_CHECK_EQ_INT(settle_with(9, 1, 1, 14, 3, 0), CG_ERR_PROTO); /* empty request id */
    CG_CHECK_EQ_INT(settle_with(9, 3, 3, 14, 3, 0), CG_ERR_PROTO); /* ... the third one */
    CG_CHECK_EQ_INT(settle_with(9, 1, 1, 14, 3, PROTO_REQID_MAX + 1), CG_ERR_PROTO); /* long */
    CG_CHECK_EQ_INT(settle_with(10, 1, 1, 14, 3, 3), CG_ERR_PROTO); /* an element too many */
    /* The records element is an array, nothing else. */
    raw r;
    raw_init(&r);
    raw_batch(&r, 1);
    raw_settle(&r, 9);
    raw_bytes(&r, "\xc0", 1);
    CG_CHECK_EQ_INT(dec_req(r.sb.data, r.sb.size), CG_ERR_PROTO);
    raw_fini(&r);
    /* A record with a string where the status belongs. */
    raw_init(&r);
    raw_batch(&r, 1);
    raw_settle(&r, 9);
    raw_arr(&r, 1);
    raw_arr(&r, 14);
    raw_i(&r, 1);
    raw_str(&r, 4, 'o');
    raw_str(&r, 2, 'k');
    raw_str(&r, 1, 'm');
    raw_i(&r, 1);
    raw_i(&r, 2);
    raw_i(&r, 3);
    raw_str(&r, 3, '2');
    raw_i(&r, 5);
    raw_bytes(&r, "\xc2", 1);
    raw_str(&r, 0, 'g');
    raw_str(&r, 0, 'c');
    raw_str(&r, 0, 'p');
    raw_str(&r, 3, 'q');
    CG_CHECK_EQ_INT(dec_req(r.sb.data, r.sb.size), CG_ERR_PROTO);
    raw_fini(&r);
}

/* Batches failing after an earlier op decoded records: everything freed once (ASan/LSan). */
CG_TEST(settle_records_failed_batch_frees)
{
    raw r;
    /* Op 2's third record has an empty request id. */
    raw_init(&r);
    raw_batch(&r, 2);
    raw_settle(&r, 9);
    raw_arr(&r, 3);
    for (int i = 0; i < 3; i++) {
        raw_usage(&r, 14, 3);
    }
    raw_settle(&r, 9);
    raw_arr(&r, 3);
    raw_usage(&r, 14, 3);
    raw_usage(&r, 14, 3);
    raw_usage(&r, 14, 0);
    CG_CHECK_EQ_INT(dec_req(r.sb.data, r.sb.size), CG_ERR_PROTO);
    raw_fini(&r);
    /* Op 2 is a SETTLE of the wrong arity: it fails before its body is read. */
    raw_init(&r);
    raw_batch(&r, 2);
    raw_settle(&r, 9);
    raw_arr(&r, 1);
    raw_usage(&r, 14, 3);
    raw_arr(&r, 3);
    raw_u(&r, PROTO_OP_SETTLE);
    raw_str(&r, 1, 'x');
    raw_str(&r, 1, 'y');
    CG_CHECK_EQ_INT(dec_req(r.sb.data, r.sb.size), CG_ERR_PROTO);
    raw_fini(&r);
    /* The same as the first op of a batch (its memory never written by a decoder). */
    for (uint32_t arity = 3; arity <= 7; arity += 4) {
        raw_init(&r);
        raw_batch(&r, 1);
        raw_arr(&r, arity);
        raw_u(&r, PROTO_OP_SETTLE);
        for (uint32_t i = 1; i < arity; i++) {
            raw_str(&r, 1, 'x');
        }
        CG_CHECK_EQ_INT(dec_req(r.sb.data, r.sb.size), CG_ERR_PROTO);
        raw_fini(&r);
    }
    /* Op 2 is cut short; then a whole batch with trailing bytes. */
    raw_init(&r);
    raw_batch(&r, 2);
    raw_settle(&r, 9);
    raw_arr(&r, 2);
    raw_usage(&r, 14, 3);
    raw_usage(&r, 14, 3);
    raw_settle(&r, 9);
    raw_arr(&r, 2);
    raw_usage(&r, 14, 3);
    CG_CHECK_EQ_INT(dec_req(r.sb.data, r.sb.size), CG_ERR_PROTO);
    raw_fini(&r);
    raw_init(&r);
    raw_batch(&r, 1);
    raw_settle(&r, 9);
    raw_arr(&r, 2);
    raw_usage(&r, 14, 3);
    raw_usage(&r, 14, 3);
    raw_bytes(&r, "\xc0", 1);
    CG_CHECK_EQ_INT(dec_req(r.sb.data, r.sb.size), CG_ERR_PROTO);
    raw_fini(&r);
}

CG_TEST(names)
{
    CG_CHECK_EQ_STR(proto_metric_name(PROTO_METRIC_COST), "cost");
    CG_CHECK_EQ_STR(proto_metric_name(PROTO_METRIC_REQUESTS), "requests");
    CG_CHECK(proto_metric_name(3) == NULL && proto_metric_name(-1) == NULL);
    CG_CHECK_EQ_STR(proto_action_name(PROTO_ACTION_WARN), "warn");
    CG_CHECK(proto_action_name(2) == NULL);
    CG_CHECK_EQ_STR(proto_scope_name(PROTO_SCOPE_CUSTOMER), "customer");
    CG_CHECK(proto_scope_name(4) == NULL);
    CG_CHECK_EQ_STR(proto_event_type_name(PROTO_EVT_SPEND_WARNING),
                    "spend_cap_warning_threshold_reached");
    CG_CHECK_EQ_STR(proto_event_type_name(PROTO_EVT_TOKEN_REACHED), "token_quota_reached");
    CG_CHECK_EQ_STR(proto_event_type_name(PROTO_EVT_REQUEST_WARNING),
                    "request_quota_warning_threshold_reached");
    CG_CHECK(proto_event_type_name(0) == NULL && proto_event_type_name(7) == NULL);
    CG_CHECK_EQ_STR(proto_op_name(PROTO_OP_EVENTS_SINCE), "events_since");
    CG_CHECK_EQ_STR(proto_op_name(PROTO_OP_PUT_GROUP), "put_group");
    CG_CHECK_EQ_STR(proto_op_name(PROTO_OP_GET_ORG_STATE), "get_org_state");
    CG_CHECK_EQ_STR(proto_op_name(PROTO_OP_DELETE), "delete");
    CG_CHECK(proto_op_name(0) == NULL && proto_op_name(127) == NULL);
    CG_CHECK_EQ_STR(proto_op_name(PROTO_OP_LIST_KEYS), "list_keys");
    CG_CHECK_EQ_STR(proto_op_name(PROTO_OP_LIST_PRICING), "list_pricing");
    for (int op = PROTO_OP_PING; op <= PROTO_OP_GET_ORG_STATE; op++) {
        CG_CHECK(proto_op_name(op) != NULL);
    }
    CG_CHECK_EQ_STR(proto_low_budget_name(PROTO_LOW_BUDGET_INHERIT), "inherit");
    CG_CHECK_EQ_STR(proto_low_budget_name(PROTO_LOW_BUDGET_REJECT), "reject");
    CG_CHECK_EQ_STR(proto_low_budget_name(PROTO_LOW_BUDGET_CLAMP), "clamp");
    CG_CHECK(proto_low_budget_name(3) == NULL && proto_low_budget_name(-1) == NULL);
    CG_CHECK_EQ_INT(proto_low_budget_parse("clamp"), PROTO_LOW_BUDGET_CLAMP);
    CG_CHECK_EQ_INT(proto_low_budget_parse("inherit"), PROTO_LOW_BUDGET_INHERIT);
    CG_CHECK_EQ_INT(proto_low_budget_parse("Clamp"), -1);
    CG_CHECK_EQ_INT(proto_low_budget_parse(NULL), -1);
    CG_CHECK_EQ_INT(proto_metric_parse("tokens"), PROTO_METRIC_TOKENS);
    CG_CHECK_EQ_INT(proto_metric_parse("Tokens"), -1);
    CG_CHECK_EQ_INT(proto_metric_parse(NULL), -1);
    CG_CHECK_EQ_INT(proto_action_parse("block"), PROTO_ACTION_BLOCK);
    CG_CHECK_EQ_INT(proto_action_parse(""), -1);
    CG_CHECK_EQ_INT(proto_event_type_for(PROTO_METRIC_COST, 0), PROTO_EVT_SPEND_WARNING);
    CG_CHECK_EQ_INT(proto_event_type_for(PROTO_METRIC_TOKENS, 1), PROTO_EVT_TOKEN_REACHED);
    CG_CHECK_EQ_INT(proto_event_type_for(PROTO_METRIC_REQUESTS, 5), PROTO_EVT_REQUEST_REACHED);
    CG_CHECK_EQ_INT(proto_event_type_for(3, 0), -1);
    CG_CHECK_EQ_INT(proto_event_type_for(-1, 1), -1);
}

/* The largest reply: a full batch of org states, each org and state list at its bounds. */
CG_TEST(rep_round_trip_max_org_states)
{
    proto_rep *in = calloc(PROTO_BATCH_MAX, sizeof(*in));
    CG_CHECK(in != NULL);
    for (uint32_t i = 0; i < PROTO_BATCH_MAX; i++) {
        in[i].op = PROTO_OP_GET_ORG_STATE;
        fill_org(&in[i].u.get_org_state.org);
        fill_states(in[i].u.get_org_state.states, &in[i].u.get_org_state.state_n);
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    CG_CHECK_EQ_INT(proto_rep_encode(in, PROTO_BATCH_MAX, &sb), CG_ERR_OK);
    CG_CHECK(sb.size <= PROTO_MSG_MAX_BYTES);
    proto_rep *out = NULL;
    uint32_t n = 0;
    CG_CHECK_EQ_INT(proto_rep_decode(sb.data, sb.size, &out, &n), CG_ERR_OK);
    CG_CHECK_EQ_INT(n, PROTO_BATCH_MAX);
    CG_CHECK(reps_eq(out, in, PROTO_BATCH_MAX));
    proto_rep_free(out, n);
    msgpack_sbuffer_destroy(&sb);
    free(in);
}

/* ---- mutation loop ---- */

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

#define MUT_BUF_MAX 65536

/* Apply 1..4 random edits (overwrite, special byte, insert, delete, truncate) in place. */
static size_t mutate(uint8_t *b, size_t len, uint64_t *rng)
{
    static const uint8_t special[] = {0x00, 0x01, 0x7f, 0x80, 0x90, 0x9f, 0xa0, 0xbf,
                                      0xc0, 0xc2, 0xc3, 0xc4, 0xcc, 0xcf, 0xd0, 0xd3,
                                      0xd9, 0xdb, 0xdc, 0xdd, 0xe0, 0xff};
    int edits = 1 + (int)(xorshift(rng) % 4);
    for (int i = 0; i < edits && len > 0; i++) {
        size_t at = xorshift(rng) % len;
        switch (xorshift(rng) % 6) {
        case 0:
            b[at] ^= (uint8_t)(1u << (xorshift(rng) % 8));
            break;
        case 1:
            b[at] = (uint8_t)xorshift(rng);
            break;
        case 2:
            b[at] = special[xorshift(rng) % sizeof(special)];
            break;
        case 3:
            if (len < MUT_BUF_MAX) {
                memmove(b + at + 1, b + at, len - at);
                b[at] = (uint8_t)xorshift(rng);
                len++;
            }
            break;
        case 4:
            memmove(b + at, b + at + 1, len - at - 1);
            len--;
            break;
        default:
            len = at;
            break;
        }
    }
    return len;
}

CG_TEST(mutated_inputs_never_crash)
{
    seed s[SEEDS_N];
    seeds_make(s, true);
    uint8_t *buf = malloc(MUT_BUF_MAX);
    CG_CHECK(buf != NULL);
    uint64_t rng = 0x9e3779b97f4a7c15u;
    uint32_t decoded = 0;
    for (uint32_t it = 0; it < FUZZ_ITERATIONS; it++) {
        size_t len;
        if (it % 16 == 0) { /* now and then pure noise */
            len = xorshift(&rng) % 64;
            for (size_t i = 0; i < len; i++) {
                buf[i] = (uint8_t)xorshift(&rng);
            }
        } else {
            const seed *sd = &s[xorshift(&rng) % SEEDS_N];
            len = sd->sb.size < MUT_BUF_MAX - 8 ? sd->sb.size : MUT_BUF_MAX - 8;
            memcpy(buf, sd->sb.data, len);
            len = mutate(buf, len, &rng);
        }
        CG_CHECK(proto_fuzz_check(buf, len));
        for (int i = 0; i < SEEDS_N; i++) {
            decoded += s[i].dec(buf, len) == CG_ERR_OK;
        }
    }
    printf("  %u of %u mutated inputs still decoded\n", decoded, FUZZ_ITERATIONS);
    free(buf);
    seeds_free(s);
}

/* PROTO_TEST_SEED_DIR=dir: write the seeds there, as a corpus for proto_fuzz. */
static void write_seeds(void)
{
    const char *dir = getenv("PROTO_TEST_SEED_DIR");
    if (dir == NULL) {
        return;
    }
    seed s[SEEDS_N];
    seeds_make(s, true);
    for (int i = 0; i < SEEDS_N; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/seed-%d", dir, i);
        FILE *f = fopen(path, "wb");
        if (f != NULL) {
            fwrite(s[i].sb.data, 1, s[i].sb.size, f);
            fclose(f);
        }
    }
    seeds_free(s);
}

/* Issue 5: key lists, pricing, definition-change notices, keys written before rotation. */
CG_TEST(issue5_codecs)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    proto_rep *out = NULL;
    uint32_t n = 0;

    /* A full page of the largest keys fits one message and round-trips. */
    static proto_rep rep;
    memset(&rep, 0, sizeof(rep));
    rep.op = PROTO_OP_LIST_KEYS;
    rep.u.list_keys.n = PROTO_LIST_KEYS_MAX;
    rep.u.list_keys.has_more = 1;
    rep.u.list_keys.keys = calloc(PROTO_LIST_KEYS_MAX, sizeof(proto_key));
    CG_CHECK(rep.u.list_keys.keys != NULL);
    for (uint32_t i = 0; i < PROTO_LIST_KEYS_MAX; i++) {
        fill_key(&rep.u.list_keys.keys[i]);
        memset(rep.u.list_keys.keys[i].id, 0, sizeof(rep.u.list_keys.keys[i].id));
        snprintf(rep.u.list_keys.keys[i].id, sizeof(rep.u.list_keys.keys[i].id), "k_%04u", i);
    }
    CG_CHECK_EQ_INT(proto_rep_encode(&rep, 1, &sb), CG_ERR_OK);
    CG_CHECK(sb.size <= PROTO_MSG_MAX_BYTES);
    CG_CHECK_EQ_INT(proto_rep_decode(sb.data, sb.size, &out, &n), CG_ERR_OK);
    CG_CHECK_EQ_INT(out[0].u.list_keys.n, PROTO_LIST_KEYS_MAX);
    CG_CHECK_EQ_INT(out[0].u.list_keys.has_more, 1);
    CG_CHECK(mem_eq(out[0].u.list_keys.keys, rep.u.list_keys.keys,
                    sizeof(proto_key) * PROTO_LIST_KEYS_MAX));
    proto_rep_free(out, n);
    /* Out of order ids are refused. */
    msgpack_sbuffer_clear(&sb);
    snprintf(rep.u.list_keys.keys[1].id, sizeof(rep.u.list_keys.keys[1].id), "k_0000");
    CG_CHECK_EQ_INT(proto_rep_encode(&rep, 1, &sb), CG_ERR_OK);
    CG_CHECK_EQ_INT(proto_rep_decode(sb.data, sb.size, &out, &n), CG_ERR_PROTO);
    proto_rep_owned_free(&rep);
    CG_CHECK(rep.u.list_keys.keys == NULL && rep.u.list_keys.n == 0);

    /* Pricing: request and listing. */
    static proto_req rq[2];
    memset(rq, 0, sizeof(rq));
    rq[0].op = PROTO_OP_PUT_PRICING;
    snprintf(rq[0].route, sizeof(rq[0].route), "pricing:gpt-x");
    snprintf(rq[0].u.put_pricing.pricing.model, PROTO_MODEL_MAX + 1, "gpt-x");
    rq[0].u.put_pricing.pricing.input_nusd_per_mtok = 2500000000;
    rq[0].u.put_pricing.pricing.output_nusd_per_mtok = INT64_MAX;
    rq[1].op = PROTO_OP_LIST_KEYS;
    snprintf(rq[1].u.list_keys.org, PROTO_ID_MAX + 1, "acme");
    snprintf(rq[1].u.list_keys.after, PROTO_ID_MAX + 1, "k_00");
    rq[1].u.list_keys.limit = PROTO_LIST_KEYS_MAX;
    msgpack_sbuffer_clear(&sb);
    CG_CHECK_EQ_INT(proto_req_encode(rq, 2, &sb), CG_ERR_OK);
    proto_req *rout = NULL;
    CG_CHECK_EQ_INT(proto_req_decode(sb.data, sb.size, &rout, &n), CG_ERR_OK);
    CG_CHECK(mem_eq(&rout[0].u.put_pricing, &rq[0].u.put_pricing, sizeof(rq[0].u.put_pricing)));
    CG_CHECK(mem_eq(&rout[1].u.list_keys, &rq[1].u.list_keys, sizeof(rq[1].u.list_keys)));
    proto_req_free(rout, n);
    proto_pricing items[2] = {rq[0].u.put_pricing.pricing, rq[0].u.put_pricing.pricing};
    memset(&rep, 0, sizeof(rep));
    rep.op = PROTO_OP_LIST_PRICING;
    rep.u.list_pricing.n = 2;
    rep.u.list_pricing.items = items;
    msgpack_sbuffer_clear(&sb);
    CG_CHECK_EQ_INT(proto_rep_encode(&rep, 1, &sb), CG_ERR_OK);
    CG_CHECK_EQ_INT(proto_rep_decode(sb.data, sb.size, &out, &n), CG_ERR_OK);
    CG_CHECK_EQ_INT(out[0].u.list_pricing.n, 2);
    CG_CHECK(mem_eq(out[0].u.list_pricing.items, items, sizeof(items)));
    proto_rep_free(out, n);

    /* Notices carry topic "d"; events start with PROTO_PUB_TOPIC_EVENT; neither decodes as
     * the other. */
    char shard[PROTO_SHARD_MAX + 1], route[PROTO_ROUTE_MAX + 1];
    proto_event e;
    msgpack_sbuffer_clear(&sb);
    CG_CHECK_EQ_INT(proto_notice_encode("s1", "group:acme/team", &sb), CG_ERR_OK);
    CG_CHECK(sb.size > 1 && sb.data[0] == 'd');
    CG_CHECK_EQ_INT(proto_notice_decode(sb.data, sb.size, shard, route), CG_ERR_OK);
    CG_CHECK_EQ_STR(shard, "s1");
    CG_CHECK_EQ_STR(route, "group:acme/team");
    CG_CHECK(proto_pub_decode(sb.data, sb.size, shard, &e) != CG_ERR_OK);
    CG_CHECK(proto_notice_decode(sb.data, sb.size - 1, shard, route) != CG_ERR_OK);
    fill_event(&e, 7);
    msgpack_sbuffer_clear(&sb);
    CG_CHECK_EQ_INT(proto_pub_encode("s1", &e, &sb), CG_ERR_OK);
    CG_CHECK(memcmp(sb.data, PROTO_PUB_TOPIC_EVENT, sizeof(PROTO_PUB_TOPIC_EVENT) - 1) == 0);
    CG_CHECK(proto_notice_decode(sb.data, sb.size, shard, route) != CG_ERR_OK);

    /* A key stored before issue 5 (15 elements) reads as never rotated. */
    static proto_key k, k2;
    fill_key(&k);
    k.rotated_ms = 0;
    memset(k.prev_hash, 0, sizeof(k.prev_hash));
    k.prev_expires_ms = 0;
    msgpack_sbuffer_clear(&sb);
    CG_CHECK_EQ_INT(proto_key_encode(&k, &sb), CG_ERR_OK);
    /* [1, array16(18) ...] → [1, fixarray(15) ...] without the last 3 elements (0, bin32, 0). */
    CG_CHECK((uint8_t)sb.data[2] == 0xdc && (uint8_t)sb.data[4] == 18);
    size_t v1n = sb.size - 2 - (1 + 34 + 1);
    uint8_t *v1 = malloc(v1n);
    CG_CHECK(v1 != NULL);
    v1[0] = 0x92;
    v1[1] = 0x01;
    v1[2] = 0x9f;
    memcpy(v1 + 3, sb.data + 5, v1n - 3);
    CG_CHECK_EQ_INT(proto_key_decode(v1, v1n, &k2), CG_ERR_OK);
    CG_CHECK(mem_eq(&k, &k2, sizeof(k)));
    v1[2] = 0x9e; /* any other arity is refused */
    CG_CHECK(proto_key_decode(v1, v1n, &k2) != CG_ERR_OK);
    free(v1);
    msgpack_sbuffer_destroy(&sb);
}

/* An org record of arity elements: the 8 of before, then what the caller appends. */
static void raw_org_head(raw *r, uint32_t arity)
{
    raw_org_start(r, arity, 4, 1);
    raw_arr(r, 0); /* limits */
    raw_arr(r, 0); /* webhooks */
    raw_arr(r, 0); /* customer limits */
    raw_u(r, PROTO_LOW_BUDGET_REJECT);
}

static void raw_email(raw *r, const char *s)
{
    msgpack_pack_str(&r->pk, strlen(s));
    msgpack_pack_str_body(&r->pk, s, strlen(s));
}

/* Org emails: appended after the revision, only when present; old layouts still read. */
CG_TEST(org_emails_codec)
{
    static proto_org o, back;
    msgpack_sbuffer sb;
    raw r;

    memset(&o, 0, sizeof(o));
    snprintf(o.id, sizeof(o.id), "acme");
    o.billing_anchor_day = 1;
    msgpack_sbuffer_init(&sb);
    /* No emails, no revision: the 8 elements of before. */
    CG_CHECK_EQ_INT(proto_org_encode(&o, &sb), CG_ERR_OK);
    CG_CHECK((uint8_t)sb.data[2] == 0x98);
    msgpack_sbuffer_clear(&sb);
    /* Emails with revision 0 (a create): the revision slot is written as 0. */
    o.email_n = 2;
    snprintf(o.emails[0], sizeof(o.emails[0]), "finance@example.com");
    snprintf(o.emails[1], sizeof(o.emails[1]), "ops+alerts@acme.test");
    CG_CHECK_EQ_INT(proto_org_encode(&o, &sb), CG_ERR_OK);
    CG_CHECK((uint8_t)sb.data[2] == 0x9a);
    memset(&back, 0x55, sizeof(back));
    CG_CHECK_EQ_INT(proto_org_decode(sb.data, sb.size, &back), CG_ERR_OK);
    CG_CHECK_EQ_INT((int)back.revision, 0);
    CG_CHECK_EQ_INT(back.email_n, 2);
    CG_CHECK_EQ_STR(back.emails[1], "ops+alerts@acme.test");
    msgpack_sbuffer_clear(&sb);
    o.revision = 9;
    CG_CHECK_EQ_INT(proto_org_encode(&o, &sb), CG_ERR_OK);
    CG_CHECK_EQ_INT(proto_org_decode(sb.data, sb.size, &back), CG_ERR_OK);
    CG_CHECK_EQ_INT((int)back.revision, 9);
    CG_CHECK_EQ_STR(back.emails[0], "finance@example.com");
    msgpack_sbuffer_destroy(&sb);

    /* Hand-made: 8 and 9 elements read with no emails. */
    raw_init(&r);
    raw_org_head(&r, 9);
    raw_u(&r, 3);
    back.email_n = 7;
    CG_CHECK_EQ_INT(proto_org_decode(r.sb.data, r.sb.size, &back), CG_ERR_OK);
    CG_CHECK(back.email_n == 0 && back.revision == 3);
    raw_fini(&r);
    /* 10 elements: the list must hold 1..16 valid addresses. */
    static const struct {
        uint32_t n;
        const char *addr;
        cg_err want;
    } cases[] = {
        {1, "a@b.c", CG_ERR_OK},
        {0, "a@b.c", CG_ERR_PROTO},
        {PROTO_EMAILS_MAX, "a@b.c", CG_ERR_OK},
        {PROTO_EMAILS_MAX + 1, "a@b.c", CG_ERR_PROTO},
        {1, "no-at.example", CG_ERR_PROTO},
        {1, "a@b@c", CG_ERR_PROTO},
        {1, "@b.c", CG_ERR_PROTO},
        {1, "a@", CG_ERR_PROTO},
        {1, "a b@c.d", CG_ERR_PROTO},
        {1, "a@c.d\r\nRCPT TO:<x@y>", CG_ERR_PROTO},
        {1, "a,b@c.d", CG_ERR_PROTO},
        {1, "<a@c.d>", CG_ERR_PROTO},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        raw_init(&r);
        raw_org_head(&r, 10);
        raw_u(&r, 0);
        raw_arr(&r, cases[i].n);
        for (uint32_t j = 0; j < cases[i].n; j++) {
            raw_email(&r, cases[i].addr);
        }
        CG_CHECK_EQ_INT(proto_org_decode(r.sb.data, r.sb.size, &back), cases[i].want);
        raw_fini(&r);
    }
    /* 11 elements, or a 9-element record whose revision is 0: refused. */
    raw_init(&r);
    raw_org_head(&r, 11);
    raw_u(&r, 1);
    raw_arr(&r, 1);
    raw_email(&r, "a@b.c");
    raw_u(&r, 1);
    CG_CHECK_EQ_INT(proto_org_decode(r.sb.data, r.sb.size, &back), CG_ERR_PROTO);
    raw_fini(&r);
    raw_init(&r);
    raw_org_head(&r, 9);
    raw_u(&r, 0);
    CG_CHECK_EQ_INT(proto_org_decode(r.sb.data, r.sb.size, &back), CG_ERR_PROTO);
    raw_fini(&r);
    /* Address bounds. */
    char big[PROTO_EMAIL_MAX + 2];
    memset(big, 'x', sizeof(big));
    big[PROTO_EMAIL_MAX + 1] = '\0';
    big[5] = '@';
    CG_CHECK(!proto_email_ok(big));
    big[PROTO_EMAIL_MAX] = '\0';
    CG_CHECK(proto_email_ok(big));
}

int main(void)
{
    write_seeds();
    return CG_TEST_RUN(req_round_trip_every_op, req_round_trip_max_batch, rep_round_trip_every_op,
                       rep_body_follows_status, rep_round_trip_max_events, records_round_trip,
                       every_truncation_rejected, trailing_bytes_rejected, wrong_version_rejected,
                       oversized_rejected, string_bounds, batch_bounds, unknown_op_rejected,
                       hostile_lengths_rejected, deep_nesting_rejected, count_bounds, record_bounds,
                       event_bounds, integer_formats, wrong_types_and_arity_rejected,
                       settle_without_usage, names, rep_round_trip_max_org_states,
                       mutated_inputs_never_crash, issue5_codecs, org_emails_codec,
                       settle_records_wire, settle_records_round_trip_max, settle_records_rejected,
                       settle_records_bounded_per_message, settle_records_failed_batch_frees);
}
