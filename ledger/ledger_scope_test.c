/*
 * ledger_scope_test.c — the ledger store's scopes and windows of issue 3
 * against real LMDB files: group, customer and org scopes (reserve, settle,
 * events with their scope fields, self-describing states), customer defaults
 * merged with an override, DELETE, usage totals and filters, and sliding
 * windows (a requests-per-minute rate limit, a tokens-per-5h window, retry
 * times, settles into the reservation's bucket, warn_at refused at PUT).
 *
 * Time is moved with cg_clock_set_offset_ms; every test starts at offset 0.
 */
#include <stdio.h>
#include <string.h>

#include "cg_clock.h"
#include "cg_log.h"
#include "cg_test.h"
#include "ledger_store.h"
#include "ledger_test_fx.h"

#define MIN_MS (60LL * 1000)
#define HOUR_MS (3600LL * 1000)

static proto_limit sliding(uint32_t id, int metric, uint32_t window_s, int64_t max)
{
    proto_limit l = limit(id, metric, CG_WIN_SLIDING, max, PROTO_ACTION_BLOCK);
    l.window.sliding_s = window_s;
    return l;
}

static proto_limit with_warn(proto_limit l, uint16_t bp)
{
    l.warn_n = 1;
    l.warn_bp[0] = bp;
    return l;
}

/* n limits from src (NULL when n is 0). */
static void copy_limits(proto_limit *dst, const proto_limit *src, uint8_t n)
{
    for (uint8_t i = 0; i < n; i++) {
        dst[i] = src[i];
    }
}

static proto_req put_group_req(const char *org, const char *id, const proto_limit *limits,
                               uint8_t n)
{
    proto_req r;
    memset(&r, 0, sizeof(r));
    r.op = PROTO_OP_PUT_GROUP;
    r.u.put_group.create_only = 1;
    snprintf(r.route, sizeof(r.route), "group:%s/%s", org, id);
    proto_group *g = &r.u.put_group.group;
    snprintf(g->id, sizeof(g->id), "%s", id);
    snprintf(g->org, sizeof(g->org), "%s", org);
    snprintf(g->name, sizeof(g->name), "team %s", id);
    g->billing_anchor_day = 1;
    g->limit_n = n;
    copy_limits(g->limits, limits, n);
    return r;
}

static proto_req put_org_req(const char *id, const proto_limit *limits, uint8_t n)
{
    proto_req r;
    memset(&r, 0, sizeof(r));
    r.op = PROTO_OP_PUT_ORG;
    snprintf(r.route, sizeof(r.route), "org:%s", id);
    proto_org *o = &r.u.put_org.org;
    snprintf(o->id, sizeof(o->id), "%s", id);
    o->billing_anchor_day = 1;
    o->on_low_budget = PROTO_LOW_BUDGET_REJECT;
    o->limit_n = n;
    copy_limits(o->limits, limits, n);
    return r;
}

/* A customer override; ids are made natural by the shard. */
static proto_req put_customer_req(const char *org, const char *id, const proto_limit *limits,
                                  uint8_t n)
{
    proto_req r;
    memset(&r, 0, sizeof(r));
    r.op = PROTO_OP_PUT_CUSTOMER;
    snprintf(r.route, sizeof(r.route), "customer:%s/%s", org, id);
    proto_customer *c = &r.u.put_customer.customer;
    snprintf(c->id, sizeof(c->id), "%s", id);
    snprintf(c->org, sizeof(c->org), "%s", org);
    c->limit_n = n;
    copy_limits(c->limits, limits, n);
    return r;
}

/* Inline customer defaults carry natural ids, as the gateway sends them. */
static void natural(proto_limit *limits, uint8_t n)
{
    for (uint8_t i = 0; i < n; i++) {
        limits[i].id = proto_limit_natural_id(limits[i].metric, limits[i].window);
    }
}

static proto_req cust_reserve_req(const char *route, const char *rid, int64_t cost, int64_t tokens,
                                  const proto_limit *defaults, uint8_t n)
{
    proto_req r = reserve_req(route, rid, 60000, cost, tokens);
    r.u.reserve.anchor_day = n > 0 ? 1 : 0;
    r.u.reserve.inline_n = n;
    copy_limits(r.u.reserve.inline_limits, defaults, n);
    return r;
}

static proto_req get_customer_req(const char *route, const proto_limit *defaults, uint8_t n)
{
    proto_req r = simple_req(PROTO_OP_GET_CUSTOMER, route, NULL);
    r.u.get_customer.anchor_day = n > 0 ? 1 : 0;
    r.u.get_customer.inline_n = n;
    copy_limits(r.u.get_customer.inline_limits, defaults, n);
    return r;
}

/* Reserve and settle the same amounts (cost, tokens, one request). */
static int use(fx *f, const proto_req *reserve, int64_t cost, int64_t tokens)
{
    proto_rep rep;
    int st = apply1(f, reserve, &rep);
    if (st != CG_ERR_OK) {
        return st;
    }
    proto_req s = settle_req(reserve->route, reserve->u.reserve.request_id, cost, tokens);
    return apply1(f, &s, &rep);
}

static const proto_limit_state *state_of(const proto_limit_state *st, uint8_t n, uint32_t id)
{
    for (uint8_t i = 0; i < n; i++) {
        if (st[i].limit_id == id) {
            return &st[i];
        }
    }
    return NULL;
}

/* ---- groups ---- */

CG_TEST(group_scope_reserve_settle_events)
{
    fx f;
    proto_rep rep;
    size_t n = 0;
    proto_limit lims[2] = {
        with_warn(limit(3, PROTO_METRIC_COST, CG_WIN_MONTH, 10 * USD, PROTO_ACTION_BLOCK), 5000),
        sliding(4, PROTO_METRIC_REQUESTS, 60, 100)};
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    proto_req g = put_group_req("acme", "team", lims, 2);
    CG_CHECK_EQ_INT(apply1(&f, &g, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(apply1(&f, &g, &rep), CG_ERR_EXISTS);
    snprintf(g.route, sizeof(g.route), "group:acme/other"); /* route must name the record */
    CG_CHECK_EQ_INT(apply1(&f, &g, &rep), CG_ERR_INVAL);
    snprintf(g.route, sizeof(g.route), "group:acme/team");
    g.u.put_group.create_only = 0;
    g.u.put_group.group.limits[1].warn_n = 1; /* warn_at on a sliding window */
    g.u.put_group.group.limits[1].warn_bp[0] = 5000;
    CG_CHECK_EQ_INT(apply1(&f, &g, &rep), CG_ERR_INVAL);

    proto_req r = reserve_req("group:acme/team", "g1", 60000, 6 * USD, 0);
    CG_CHECK_EQ_INT(use(&f, &r, 6 * USD, 0), CG_ERR_OK);
    const proto_event *ev = ledger_store_new_events(f.s, &n);
    CG_CHECK_EQ_INT(n, 1);
    CG_CHECK_EQ_INT(ev[0].scope, PROTO_SCOPE_GROUP);
    CG_CHECK_EQ_STR(ev[0].scope_id, "team");
    CG_CHECK_EQ_STR(ev[0].org, "acme");
    CG_CHECK_EQ_INT(ev[0].limit_id, 3);
    CG_CHECK_EQ_INT(ev[0].threshold_bp, 5000);

    r = reserve_req("group:acme/team", "g2", 60000, 5 * USD, 0);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_BUDGET);
    CG_CHECK_EQ_INT(rep.u.reserve.refusal.limit_id, 3);
    CG_CHECK_EQ_INT(rep.u.reserve.refusal.retry_after_ms, 0);

    proto_req get = simple_req(PROTO_OP_GET_GROUP, "group:acme/team", NULL);
    CG_CHECK_EQ_INT(apply1(&f, &get, &rep), CG_ERR_OK);
    CG_CHECK_EQ_STR(rep.u.get_group.group.name, "team team");
    CG_CHECK_EQ_INT(rep.u.get_group.state_n, 2);
    const proto_limit_state *st = &rep.u.get_group.states[0];
    CG_CHECK_EQ_INT(st->limit_id, 3);
    CG_CHECK_EQ_INT(st->metric, PROTO_METRIC_COST);
    CG_CHECK_EQ_INT(st->window.kind, CG_WIN_MONTH);
    CG_CHECK_EQ_INT(st->max, 10 * USD);
    CG_CHECK_EQ_INT(st->action, PROTO_ACTION_BLOCK);
    CG_CHECK_EQ_INT(st->used, 6 * USD);
    st = &rep.u.get_group.states[1];
    CG_CHECK_EQ_INT(st->metric, PROTO_METRIC_REQUESTS);
    CG_CHECK_EQ_INT(st->window.kind, CG_WIN_SLIDING);
    CG_CHECK_EQ_INT(st->window.sliding_s, 60);
    CG_CHECK_EQ_INT(st->max, 100);
    CG_CHECK_EQ_INT(st->used, 1);

    get = simple_req(PROTO_OP_GET_GROUP, "group:acme/nobody", NULL);
    CG_CHECK_EQ_INT(apply1(&f, &get, &rep), CG_ERR_NOTFOUND);
    fx_fini(&f);
}

/* ---- customers ---- */

CG_TEST(customer_defaults_merged_with_override)
{
    fx f;
    proto_rep rep;
    proto_limit defs[2] = {limit(0, PROTO_METRIC_COST, CG_WIN_MONTH, 10 * USD, PROTO_ACTION_BLOCK),
                           limit(0, PROTO_METRIC_TOKENS, CG_WIN_DAY, 1000, PROTO_ACTION_BLOCK)};
    natural(defs, 2);
    uint32_t cost_id = defs[0].id;
    const char *route = "customer:acme/alice";
    CG_CHECK(fx_init(&f, 1 << 24) == 0);

    proto_req r = cust_reserve_req(route, "c1", 6 * USD, 100, defs, 2);
    CG_CHECK_EQ_INT(use(&f, &r, 6 * USD, 100), CG_ERR_OK);
    r = cust_reserve_req(route, "c2", 5 * USD, 0, defs, 2);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_BUDGET);
    CG_CHECK_EQ_INT(rep.u.reserve.refusal.limit_id, cost_id);

    proto_req get = get_customer_req(route, defs, 2);
    CG_CHECK_EQ_INT(apply1(&f, &get, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.get_customer.found, 0);
    CG_CHECK_EQ_INT(rep.u.get_customer.state_n, 2);
    const proto_limit_state *st = state_of(rep.u.get_customer.states, 2, cost_id);
    CG_CHECK(st != NULL);
    CG_CHECK_EQ_INT(st->max, 10 * USD);
    CG_CHECK_EQ_INT(st->used, 6 * USD);

    /* The override raises the monthly cost cap and adds a request quota; ids it sends are
     * replaced by natural ones, so the cost counter continues. */
    proto_limit ov[2] = {limit(1, PROTO_METRIC_COST, CG_WIN_MONTH, 20 * USD, PROTO_ACTION_BLOCK),
                         limit(2, PROTO_METRIC_REQUESTS, CG_WIN_LIFETIME, 100, PROTO_ACTION_BLOCK)};
    proto_req put = put_customer_req("acme", "alice", ov, 2);
    CG_CHECK_EQ_INT(apply1(&f, &put, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(apply1(&f, &get, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.get_customer.found, 1);
    CG_CHECK_EQ_STR(rep.u.get_customer.customer.id, "alice");
    CG_CHECK_EQ_INT(rep.u.get_customer.customer.limits[0].id, cost_id);
    CG_CHECK_EQ_INT(rep.u.get_customer.state_n, 3);
    st = state_of(rep.u.get_customer.states, 3, cost_id);
    CG_CHECK(st != NULL);
    CG_CHECK_EQ_INT(st->max, 20 * USD);
    CG_CHECK_EQ_INT(st->used, 6 * USD);
    st = state_of(rep.u.get_customer.states, 3,
                  proto_limit_natural_id(PROTO_METRIC_REQUESTS, ov[1].window));
    CG_CHECK(st != NULL);
    CG_CHECK_EQ_INT(st->used, 0);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK); /* 6 + 5 <= 20 now */

    /* Without the defaults (a GET of the override alone), only the override's limits. */
    get = get_customer_req(route, NULL, 0);
    CG_CHECK_EQ_INT(apply1(&f, &get, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.get_customer.state_n, 2);

    /* A customer with neither defaults nor override has no limits: nothing is held. */
    r = cust_reserve_req("customer:acme/bob", "b1", USD, 10, NULL, 0);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.reserve.state_n, 0);
    proto_req s = settle_req("customer:acme/bob", "b1", USD, 10);
    CG_CHECK_EQ_INT(apply1(&f, &s, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.settle.late, 0);

    /* Invalid inline defaults (a sliding window with warn_at) are refused. */
    proto_limit bad = with_warn(sliding(0, PROTO_METRIC_TOKENS, 60, 10), 5000);
    natural(&bad, 1);
    r = cust_reserve_req("customer:acme/bob", "b2", 0, 1, &bad, 1);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_INVAL);
    fx_fini(&f);
}

CG_TEST(customer_events_from_defaults_and_override)
{
    fx f;
    proto_rep rep;
    size_t n = 0;
    proto_limit defs[1] = {
        with_warn(limit(0, PROTO_METRIC_COST, CG_WIN_MONTH, 10 * USD, PROTO_ACTION_BLOCK), 5000)};
    natural(defs, 1);
    CG_CHECK(fx_init(&f, 1 << 24) == 0);

    /* A default limit: the settle (which carries no defaults) judges it by the reservation's
     * snapshot. */
    proto_req r = cust_reserve_req("customer:acme/alice", "c1", 6 * USD, 0, defs, 1);
    CG_CHECK_EQ_INT(use(&f, &r, 6 * USD, 0), CG_ERR_OK);
    const proto_event *ev = ledger_store_new_events(f.s, &n);
    CG_CHECK_EQ_INT(n, 1);
    CG_CHECK_EQ_INT(ev[0].type, PROTO_EVT_SPEND_WARNING);
    CG_CHECK_EQ_INT(ev[0].scope, PROTO_SCOPE_CUSTOMER);
    CG_CHECK_EQ_STR(ev[0].scope_id, "alice");
    CG_CHECK_EQ_STR(ev[0].org, "acme");
    CG_CHECK_EQ_INT(ev[0].limit_id, defs[0].id);
    CG_CHECK_EQ_INT(ev[0].max, 10 * USD);

    /* An override limit fires from the stored record. */
    proto_limit ov =
        with_warn(limit(0, PROTO_METRIC_TOKENS, CG_WIN_LIFETIME, 100, PROTO_ACTION_WARN), 5000);
    proto_req put = put_customer_req("acme", "carol", &ov, 1);
    CG_CHECK_EQ_INT(apply1(&f, &put, &rep), CG_ERR_OK);
    r = cust_reserve_req("customer:acme/carol", "c2", 0, 150, defs, 1);
    CG_CHECK_EQ_INT(use(&f, &r, 0, 150), CG_ERR_OK);
    ev = ledger_store_new_events(f.s, &n);
    CG_CHECK_EQ_INT(n, 2); /* 50% and the cap, crossed by one settle */
    CG_CHECK_EQ_INT(ev[0].type, PROTO_EVT_TOKEN_WARNING);
    CG_CHECK_EQ_INT(ev[1].type, PROTO_EVT_TOKEN_REACHED);
    CG_CHECK_EQ_INT(ev[1].scope, PROTO_SCOPE_CUSTOMER);
    CG_CHECK_EQ_STR(ev[1].scope_id, "carol");
    CG_CHECK_EQ_STR(ev[1].org, "acme");
    CG_CHECK_EQ_INT(ev[1].used, 150);
    fx_fini(&f);
}

/* ---- orgs and DELETE ---- */

CG_TEST(org_state_and_delete)
{
    fx f;
    proto_rep rep;
    proto_limit l = limit(1, PROTO_METRIC_TOKENS, CG_WIN_DAY, 1000, PROTO_ACTION_WARN);
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    proto_req o = put_org_req("acme", &l, 1);
    CG_CHECK_EQ_INT(apply1(&f, &o, &rep), CG_ERR_OK);
    proto_req r = reserve_req("org:acme", "o1", 60000, 0, 300);
    CG_CHECK_EQ_INT(use(&f, &r, 0, 200), CG_ERR_OK);
    proto_req get = simple_req(PROTO_OP_GET_ORG_STATE, "org:acme", NULL);
    CG_CHECK_EQ_INT(apply1(&f, &get, &rep), CG_ERR_OK);
    CG_CHECK_EQ_STR(rep.u.get_org_state.org.id, "acme");
    CG_CHECK_EQ_INT(rep.u.get_org_state.state_n, 1);
    CG_CHECK_EQ_INT(rep.u.get_org_state.states[0].used, 200);
    CG_CHECK_EQ_INT(rep.u.get_org_state.states[0].metric, PROTO_METRIC_TOKENS);
    CG_CHECK_EQ_INT(rep.u.get_org_state.states[0].window.kind, CG_WIN_DAY);
    CG_CHECK_EQ_INT(rep.u.get_org_state.states[0].max, 1000);
    CG_CHECK_EQ_INT(rep.u.get_org_state.states[0].action, PROTO_ACTION_WARN);
    CG_CHECK(rep.u.get_org_state.states[0].period_end_ms > cg_now_ms());

    proto_req del = simple_req(PROTO_OP_DELETE, "org:acme", NULL);
    CG_CHECK_EQ_INT(apply1(&f, &del, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(apply1(&f, &del, &rep), CG_ERR_NOTFOUND);
    CG_CHECK_EQ_INT(apply1(&f, &get, &rep), CG_ERR_NOTFOUND);
    r = reserve_req("org:acme", "o2", 60000, 0, 1);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_NOTFOUND);

    proto_req g = put_group_req("acme", "team", &l, 1);
    CG_CHECK_EQ_INT(apply1(&f, &g, &rep), CG_ERR_OK);
    del = simple_req(PROTO_OP_DELETE, "group:acme/team", NULL);
    CG_CHECK_EQ_INT(apply1(&f, &del, &rep), CG_ERR_OK);
    r = reserve_req("group:acme/team", "g1", 60000, 0, 1);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_NOTFOUND);

    proto_req c = put_customer_req("acme", "alice", &l, 1);
    CG_CHECK_EQ_INT(apply1(&f, &c, &rep), CG_ERR_OK);
    del = simple_req(PROTO_OP_DELETE, "customer:acme/alice", NULL);
    CG_CHECK_EQ_INT(apply1(&f, &del, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(apply1(&f, &del, &rep), CG_ERR_NOTFOUND);
    get = get_customer_req("customer:acme/alice", NULL, 0);
    CG_CHECK_EQ_INT(apply1(&f, &get, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.get_customer.found, 0);
    CG_CHECK_EQ_INT(rep.u.get_customer.state_n, 0);

    CG_CHECK_EQ_INT(put_key(&f, "k1", &l, 1), CG_ERR_OK);
    del = simple_req(PROTO_OP_DELETE, "key:k1", NULL);
    CG_CHECK_EQ_INT(apply1(&f, &del, &rep), CG_ERR_OK);
    get = simple_req(PROTO_OP_GET_KEY, "key:k1", NULL);
    CG_CHECK_EQ_INT(apply1(&f, &get, &rep), CG_ERR_NOTFOUND);
    del = simple_req(PROTO_OP_DELETE, "team:x", NULL);
    CG_CHECK_EQ_INT(apply1(&f, &del, &rep), CG_ERR_NOTFOUND);
    fx_fini(&f);
}

/* ---- usage ---- */

typedef struct usage_row {
    const char *org, *key, *group, *customer, *model;
    int64_t prompt, completion, cost, age_ms;
} usage_row;

static int settle_usage(fx *f, const char *rid, const usage_row *u)
{
    char route[80];
    proto_rep rep;
    snprintf(route, sizeof(route), "key:%s", u->key);
    proto_req r = reserve_req(route, rid, 60000, u->cost, u->prompt + u->completion);
    if (apply1(f, &r, &rep) != CG_ERR_OK) {
        return -1;
    }
    proto_req s = settle_req(route, rid, u->cost, u->prompt + u->completion);
    proto_usage *us = &s.u.settle.usage;
    s.u.settle.has_usage = 1;
    us->ts_ms = cg_now_ms() - u->age_ms;
    snprintf(us->org, sizeof(us->org), "%s", u->org);
    snprintf(us->key_id, sizeof(us->key_id), "%s", u->key);
    snprintf(us->group, sizeof(us->group), "%s", u->group);
    snprintf(us->customer, sizeof(us->customer), "%s", u->customer);
    snprintf(us->model, sizeof(us->model), "%s", u->model);
    snprintf(us->provider, sizeof(us->provider), "openai");
    snprintf(us->request_id, sizeof(us->request_id), "%s", rid);
    us->prompt_tokens = u->prompt;
    us->completion_tokens = u->completion;
    us->cost_nusd = u->cost;
    us->status = 200;
    return apply1(f, &s, &rep);
}

static int usage_query(fx *f, const char *org, const char *key, const char *group,
                       const char *customer, const char *model, int64_t from_ms, int64_t to_ms,
                       proto_usage_totals *out)
{
    proto_rep rep;
    proto_req r = simple_req(PROTO_OP_USAGE_QUERY, "", NULL);
    snprintf(r.u.usage_query.org, sizeof(r.u.usage_query.org), "%s", org);
    snprintf(r.u.usage_query.key_id, sizeof(r.u.usage_query.key_id), "%s", key);
    snprintf(r.u.usage_query.group, sizeof(r.u.usage_query.group), "%s", group);
    snprintf(r.u.usage_query.customer, sizeof(r.u.usage_query.customer), "%s", customer);
    snprintf(r.u.usage_query.model, sizeof(r.u.usage_query.model), "%s", model);
    r.u.usage_query.from_ms = from_ms;
    r.u.usage_query.to_ms = to_ms;
    int st = apply1(f, &r, &rep);
    *out = rep.u.usage.totals;
    return st;
}

CG_TEST(usage_query_totals_and_filters)
{
    fx f;
    proto_usage_totals t;
    char rid[16];
    const usage_row rows[] = {
        {"acme", "k1", "g1", "c1", "m1", 10, 20, 100, 0},
        {"acme", "k1", "", "c2", "m2", 1, 2, 3, 0},
        {"acme", "k2", "g1", "", "m1", 5, 5, 5, 0},
        {"beta", "k3", "g1", "c1", "m1", 1000, 1000, 1000, 0},
        {"acme", "k1", "g1", "c1", "m1", 7, 7, 7, 2 * DAY_MS},
    };
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_key(&f, "k1", NULL, 0), CG_ERR_OK);
    CG_CHECK_EQ_INT(put_key(&f, "k2", NULL, 0), CG_ERR_OK);
    CG_CHECK_EQ_INT(put_key(&f, "k3", NULL, 0), CG_ERR_OK);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        snprintf(rid, sizeof(rid), "u%zu", i);
        CG_CHECK_EQ_INT(settle_usage(&f, rid, &rows[i]), CG_ERR_OK);
    }
    int64_t now = cg_now_ms();
    CG_CHECK_EQ_INT(usage_query(&f, "acme", "", "", "", "", 0, 0, &t), CG_ERR_OK);
    CG_CHECK_EQ_INT(t.requests, 4);
    CG_CHECK_EQ_INT(t.prompt_tokens, 23);
    CG_CHECK_EQ_INT(t.completion_tokens, 34);
    CG_CHECK_EQ_INT(t.cost_nusd, 115);
    CG_CHECK_EQ_INT(usage_query(&f, "acme", "k1", "", "", "", 0, 0, &t), CG_ERR_OK);
    CG_CHECK_EQ_INT(t.requests, 3);
    CG_CHECK_EQ_INT(usage_query(&f, "acme", "", "g1", "", "", 0, 0, &t), CG_ERR_OK);
    CG_CHECK_EQ_INT(t.requests, 3);
    CG_CHECK_EQ_INT(t.cost_nusd, 112);
    CG_CHECK_EQ_INT(usage_query(&f, "acme", "", "", "c1", "m1", 0, 0, &t), CG_ERR_OK);
    CG_CHECK_EQ_INT(t.requests, 2);
    CG_CHECK_EQ_INT(usage_query(&f, "acme", "", "", "", "m2", 0, 0, &t), CG_ERR_OK);
    CG_CHECK_EQ_INT(t.requests, 1);
    CG_CHECK_EQ_INT(t.completion_tokens, 2);
    /* [from, to): the two-day-old record alone, then everything but it. */
    CG_CHECK_EQ_INT(usage_query(&f, "acme", "", "", "", "", 0, now - DAY_MS, &t), CG_ERR_OK);
    CG_CHECK_EQ_INT(t.requests, 1);
    CG_CHECK_EQ_INT(t.cost_nusd, 7);
    CG_CHECK_EQ_INT(usage_query(&f, "acme", "", "", "", "", now - DAY_MS, 0, &t), CG_ERR_OK);
    CG_CHECK_EQ_INT(t.requests, 3);
    CG_CHECK_EQ_INT(usage_query(&f, "acme", "", "", "", "", now + 1, 0, &t), CG_ERR_OK);
    CG_CHECK_EQ_INT(t.requests, 0);
    CG_CHECK_EQ_INT(usage_query(&f, "beta", "", "", "", "", 0, 0, &t), CG_ERR_OK);
    CG_CHECK_EQ_INT(t.requests, 1);
    CG_CHECK_EQ_INT(usage_query(&f, "", "", "", "", "", 0, 0, &t), CG_ERR_INVAL);
    fx_fini(&f);
}

/* ---- sliding windows ---- */

CG_TEST(sliding_requests_per_minute)
{
    fx f;
    proto_rep rep;
    char rid[16];
    proto_limit l = sliding(1, PROTO_METRIC_REQUESTS, 60, 10);
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_key(&f, "k1", &l, 1), CG_ERR_OK);
    for (int i = 0; i < 10; i++) {
        snprintf(rid, sizeof(rid), "r%d", i);
        proto_req r = reserve_req("key:k1", rid, 60000, 0, 0);
        CG_CHECK_EQ_INT(use(&f, &r, 0, 0), CG_ERR_OK);
    }
    proto_req r = reserve_req("key:k1", "r10", 60000, 0, 0);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_BUDGET);
    int64_t now = cg_now_ms();
    const proto_refusal *rf = &rep.u.reserve.refusal;
    CG_CHECK_EQ_INT(rf->window.kind, CG_WIN_SLIDING);
    CG_CHECK_EQ_INT(rf->window.sliding_s, 60);
    CG_CHECK_EQ_INT(rf->used, 10);
    CG_CHECK_EQ_INT(rf->reserved, 0);
    CG_CHECK(rf->retry_after_ms > 0 && rf->retry_after_ms <= MIN_MS);
    CG_CHECK(rf->resets_at_ms > now - 100 && rf->resets_at_ms <= now + MIN_MS);
    const proto_limit_state *st = &rep.u.reserve.states[0];
    CG_CHECK_EQ_INT(st->used, 10);
    CG_CHECK(st->period_start_ms <= now - MIN_MS && st->period_start_ms > now - MIN_MS - 100);
    CG_CHECK(st->period_end_ms > now - 100 && st->period_end_ms <= now + MIN_MS);
    int64_t retry = rf->retry_after_ms;

    /* Just before the first bucket leaves: still refused. After: admitted again. */
    cg_clock_set_offset_ms(retry - 1000 > 0 ? retry - 1000 : 0);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_BUDGET);
    cg_clock_set_offset_ms(retry);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    CG_CHECK(rep.u.reserve.states[0].used < 10);
    CG_CHECK_EQ_INT(rep.u.reserve.states[0].reserved, 1);
    fx_fini(&f);
}

CG_TEST(sliding_held_reservations_count)
{
    fx f;
    proto_rep rep;
    proto_limit l = sliding(1, PROTO_METRIC_REQUESTS, 60, 2);
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_key(&f, "k1", &l, 1), CG_ERR_OK);
    proto_req a = reserve_req("key:k1", "a", 1000, 0, 0);
    proto_req b = reserve_req("key:k1", "b", 1000, 0, 0);
    proto_req c = reserve_req("key:k1", "c", 1000, 0, 0);
    CG_CHECK_EQ_INT(apply1(&f, &a, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(apply1(&f, &b, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(apply1(&f, &c, &rep), CG_ERR_BUDGET);
    /* Held reservations alone fill the cap: one bucket length. */
    CG_CHECK_EQ_INT(rep.u.reserve.refusal.retry_after_ms, 1000);
    CG_CHECK_EQ_INT(rep.u.reserve.refusal.reserved, 2);
    proto_req rel = simple_req(PROTO_OP_RELEASE, "key:k1", "a");
    CG_CHECK_EQ_INT(apply1(&f, &rel, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(apply1(&f, &c, &rep), CG_ERR_OK);
    /* Leases expire: reserved comes back. */
    cg_clock_set_offset_ms(2000);
    CG_CHECK(ledger_store_apply(f.s, NULL, 0) == CG_ERR_OK);
    proto_req get = simple_req(PROTO_OP_GET_KEY, "key:k1", NULL);
    CG_CHECK_EQ_INT(apply1(&f, &get, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.get_key.states[0].reserved, 0);
    CG_CHECK_EQ_INT(rep.u.get_key.states[0].used, 0);
    fx_fini(&f);
}

CG_TEST(sliding_tokens_per_5h)
{
    fx f;
    proto_rep rep;
    proto_limit l = sliding(2, PROTO_METRIC_TOKENS, 5 * 3600, 1000);
    int64_t bucket_ms = cg_window_bucket_ms(l.window);
    CG_CHECK_EQ_INT(bucket_ms, 300000);
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_key(&f, "k1", &l, 1), CG_ERR_OK);
    int64_t first_bucket = cg_now_ms() / bucket_ms * bucket_ms;
    proto_req r = reserve_req("key:k1", "t1", 60000, 0, 600);
    CG_CHECK_EQ_INT(use(&f, &r, 0, 600), CG_ERR_OK);
    /* (the reservation's bucket is first_bucket unless a 5-minute boundary just passed) */
    CG_CHECK(cg_now_ms() / bucket_ms * bucket_ms == first_bucket);
    cg_clock_set_offset_ms(HOUR_MS);
    r = reserve_req("key:k1", "t2", 60000, 0, 400);
    CG_CHECK_EQ_INT(use(&f, &r, 0, 400), CG_ERR_OK);

    r = reserve_req("key:k1", "t3", 60000, 0, 1);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_BUDGET);
    int64_t now = cg_now_ms();
    int64_t retry = rep.u.reserve.refusal.retry_after_ms;
    CG_CHECK_EQ_INT(rep.u.reserve.refusal.used, 1000);
    CG_CHECK(retry > 0 && retry <= first_bucket + 5 * HOUR_MS - now + 100);
    CG_CHECK(retry > 4 * HOUR_MS - bucket_ms - 1000 && retry <= 4 * HOUR_MS);
    CG_CHECK_EQ_INT(rep.u.reserve.states[0].period_end_ms, first_bucket + 5 * HOUR_MS);

    /* When the first bucket leaves, its 600 tokens are free again. */
    cg_clock_set_offset_ms(HOUR_MS + retry);
    r = reserve_req("key:k1", "t4", 60000, 0, 500);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.reserve.states[0].used, 400);

    /* A settle counts in the bucket of its reservation's creation: one that arrives after
     * that bucket left the window no longer counts. */
    r = reserve_req("key:k1", "t5", 7 * HOUR_MS, 0, 100);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    cg_clock_set_offset_ms(HOUR_MS + retry + 5 * HOUR_MS + bucket_ms);
    proto_req s = settle_req("key:k1", "t5", 0, 100);
    CG_CHECK_EQ_INT(apply1(&f, &s, &rep), CG_ERR_OK);
    s = settle_req("key:k1", "t4", 0, 600); /* late (lease of 1 min): same, dropped */
    CG_CHECK_EQ_INT(apply1(&f, &s, &rep), CG_ERR_OK);
    proto_req get = simple_req(PROTO_OP_GET_KEY, "key:k1", NULL);
    CG_CHECK_EQ_INT(apply1(&f, &get, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.get_key.states[0].used, 0);
    CG_CHECK_EQ_INT(rep.u.get_key.states[0].reserved, 0);
    CG_CHECK_EQ_INT(rep.u.get_key.states[0].period_end_ms,
                    rep.u.get_key.states[0].period_start_ms + 5 * HOUR_MS); /* = now: empty */
    fx_fini(&f);
}

CG_TEST(sliding_settle_counts_in_creation_bucket)
{
    fx f;
    proto_rep rep;
    proto_limit l = sliding(1, PROTO_METRIC_COST, 600, 10 * USD); /* 10 min, 10 s buckets */
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_key(&f, "k1", &l, 1), CG_ERR_OK);
    int64_t before = cg_now_ms() / 10000 * 10000;
    proto_req r = reserve_req("key:k1", "a", HOUR_MS, 4 * USD, 0);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    int64_t after = cg_now_ms() / 10000 * 10000;
    cg_clock_set_offset_ms(5 * MIN_MS);
    proto_req s = settle_req("key:k1", "a", 3 * USD, 0);
    CG_CHECK_EQ_INT(apply1(&f, &s, &rep), CG_ERR_OK);
    proto_req get = simple_req(PROTO_OP_GET_KEY, "key:k1", NULL);
    CG_CHECK_EQ_INT(apply1(&f, &get, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(rep.u.get_key.states[0].used, 3 * USD);
    CG_CHECK_EQ_INT(rep.u.get_key.states[0].reserved, 0);
    /* It leaves the window 10 minutes after its creation bucket, not after the settle. */
    int64_t end = rep.u.get_key.states[0].period_end_ms;
    CG_CHECK(end >= before + 10 * MIN_MS && end <= after + 10 * MIN_MS);
    fx_fini(&f);
}

CG_TEST(sliding_warn_refused_at_put)
{
    fx f;
    proto_rep rep;
    proto_limit ok = sliding(1, PROTO_METRIC_TOKENS, 3600, 100);
    proto_limit bad = with_warn(ok, 8000);
    CG_CHECK(fx_init(&f, 1 << 24) == 0);
    CG_CHECK_EQ_INT(put_key(&f, "k1", &ok, 1), CG_ERR_OK);
    CG_CHECK_EQ_INT(put_key(&f, "k2", &bad, 1), CG_ERR_INVAL);
    proto_req r = put_org_req("acme", &bad, 1);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_INVAL);
    r = put_org_req("acme", NULL, 0);
    r.u.put_org.org.customer_limit_n = 1;
    r.u.put_org.org.customer_limits[0] = bad;
    natural(r.u.put_org.org.customer_limits, 1);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_INVAL);
    r = put_group_req("acme", "team", &bad, 1);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_INVAL);
    r = put_customer_req("acme", "alice", &bad, 1);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_INVAL);
    r = put_customer_req("acme", "alice", &ok, 1);
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    r = put_customer_req("acme", "al/ice", &ok, 1); /* ids never hold '/' */
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_INVAL);
    fx_fini(&f);
}

int main(void)
{
    cg_log_init("ledger_scope_test", CG_LOG_ERROR);
    return CG_TEST_RUN(group_scope_reserve_settle_events, customer_defaults_merged_with_override,
                       customer_events_from_defaults_and_override, org_state_and_delete,
                       usage_query_totals_and_filters, sliding_requests_per_minute,
                       sliding_held_reservations_count, sliding_tokens_per_5h,
                       sliding_settle_counts_in_creation_bucket, sliding_warn_refused_at_put);
}
