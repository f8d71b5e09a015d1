/*
 * proto_rules_test.c — strict decoding of the issue-3 records and fields,
 * one case per documented bound (proto.c's layouts): key rules (groups,
 * customers, allowed models, IP networks, per-request max_tokens,
 * on_low_budget), groups, customer overrides and their natural limit ids,
 * inline customer defaults, usage records and queries, self-describing limit
 * states, refusals with retry_after, and the shapes of the new replies. All
 * input is built by hand; proto_test.c covers round trips and mutations.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cg_test.h"
#include "proto.h"
#include "proto_test_raw.h"

#define CIDR_BYTES 16

/* A limit with no thresholds, any metric. */
static void raw_limit_m(raw *r, uint32_t id, uint8_t metric, uint8_t kind, uint32_t sliding_s)
{
    raw_arr(r, 7);
    raw_u(r, id);
    raw_u(r, metric);
    raw_u(r, kind);
    raw_u(r, sliding_s);
    raw_i(r, 5);
    raw_u(r, PROTO_ACTION_BLOCK);
    raw_arr(r, 0);
}

/* n customer limits (metric i % 3, day/week/..., natural ids); id_delta is added to limit 0. */
static void raw_natural_limits(raw *r, uint32_t n, uint32_t id_delta)
{
    raw_arr(r, n);
    for (uint32_t i = 0; i < n; i++) {
        cg_window w = {(uint8_t)(i / 3 < CG_WIN_SLIDING ? i / 3 : CG_WIN_SLIDING), 0};
        w.sliding_s = w.kind == CG_WIN_SLIDING ? 60 + i : 0;
        uint8_t metric = (uint8_t)(i % PROTO_METRIC_COUNT_);
        uint32_t id = proto_limit_natural_id(metric, w) + (i == 0 ? id_delta : 0);
        raw_limit_m(r, id, metric, w.kind, w.sliding_s);
    }
}

/* Knobs of a hand-built key record; key_knobs_ok() decodes. */
typedef struct key_knobs {
    size_t group_len, customer_len;
    uint32_t model_n;
    size_t model_len;
    uint32_t cidr_n; /* networks in ip_allow (deny_too: in ip_deny as well) */
    bool deny_too;
    uint64_t family, prefix;
    uint8_t addr[CIDR_BYTES + 1];
    size_t addr_len;
    int64_t max_tokens;
    uint64_t low_budget;
} key_knobs;

static key_knobs key_knobs_ok(void)
{
    return (key_knobs){1, 1, 1, 5, 1, false, 4, 8, {10}, CIDR_BYTES, 0, 0};
}

static void raw_cidr_list(raw *r, const key_knobs *k, uint32_t n)
{
    raw_arr(r, n);
    for (uint32_t i = 0; i < n; i++) {
        raw_arr(r, 3);
        raw_u(r, k->family);
        raw_u(r, k->prefix);
        msgpack_pack_bin(&r->pk, k->addr_len);
        msgpack_pack_bin_body(&r->pk, k->addr, k->addr_len);
    }
}

static cg_err key_with(const key_knobs *k)
{
    uint8_t hash[HASH_BYTES] = {0};
    raw r;
    raw_init(&r);
    raw_arr(&r, 2);
    raw_u(&r, PROTO_VERSION);
    raw_arr(&r, 15);
    raw_str(&r, 4, 'k');
    raw_str(&r, 4, 'o');
    raw_str(&r, 4, 'n');
    msgpack_pack_bin(&r.pk, HASH_BYTES);
    msgpack_pack_bin_body(&r.pk, hash, HASH_BYTES);
    raw_i(&r, 0);
    raw_i(&r, 0);
    msgpack_pack_false(&r.pk);
    raw_u(&r, 1);
    raw_arr(&r, 0);
    raw_str(&r, k->group_len, 'g');
    raw_str(&r, k->customer_len, 'c');
    raw_arr(&r, k->model_n);
    for (uint32_t i = 0; i < k->model_n; i++) {
        raw_str(&r, k->model_len, 'm');
    }
    raw_cidr_list(&r, k, k->cidr_n);
    raw_cidr_list(&r, k, k->deny_too ? k->cidr_n : 0);
    raw_i(&r, k->max_tokens);
    raw_u(&r, k->low_budget);
    cg_err err = dec_key(r.sb.data, r.sb.size);
    raw_fini(&r);
    return err;
}

enum key_field {
    KF_GROUP,
    KF_CUSTOMER,
    KF_MODEL_N,
    KF_MODEL_LEN,
    KF_CIDR_N,
    KF_MAX_TOKENS,
    KF_LOW_BUDGET,
    KF_FAMILY,
    KF_PREFIX,
    KF_ADDR_LEN,
};

static void key_knob_set(key_knobs *k, enum key_field f, int64_t v)
{
    switch (f) {
    case KF_GROUP:
        k->group_len = (size_t)v;
        break;
    case KF_CUSTOMER:
        k->customer_len = (size_t)v;
        break;
    case KF_MODEL_N:
        k->model_n = (uint32_t)v;
        break;
    case KF_MODEL_LEN:
        k->model_len = (size_t)v;
        break;
    case KF_CIDR_N:
        k->cidr_n = (uint32_t)v;
        break;
    case KF_MAX_TOKENS:
        k->max_tokens = v;
        break;
    case KF_LOW_BUDGET:
        k->low_budget = (uint64_t)v;
        break;
    case KF_FAMILY:
        k->family = (uint64_t)v;
        break;
    case KF_PREFIX:
        k->prefix = (uint64_t)v;
        break;
    case KF_ADDR_LEN:
        k->addr_len = (size_t)v;
        break;
    }
}

CG_TEST(key_rule_bounds)
{
    static const struct {
        enum key_field f;
        int64_t v;
        cg_err want;
    } cases[] = {
        {KF_GROUP, PROTO_ID_MAX, CG_ERR_OK},
        {KF_GROUP, PROTO_ID_MAX + 1, CG_ERR_PROTO},
        {KF_CUSTOMER, PROTO_ID_MAX, CG_ERR_OK},
        {KF_CUSTOMER, PROTO_ID_MAX + 1, CG_ERR_PROTO},
        {KF_MODEL_N, 0, CG_ERR_OK},
        {KF_MODEL_N, PROTO_MODELS_MAX, CG_ERR_OK},
        {KF_MODEL_N, PROTO_MODELS_MAX + 1, CG_ERR_PROTO},
        {KF_MODEL_LEN, 0, CG_ERR_PROTO},
        {KF_MODEL_LEN, PROTO_MODEL_MAX, CG_ERR_OK},
        {KF_MODEL_LEN, PROTO_MODEL_MAX + 1, CG_ERR_PROTO},
        {KF_CIDR_N, 0, CG_ERR_OK},
        {KF_CIDR_N, PROTO_CIDRS_MAX, CG_ERR_OK},
        {KF_CIDR_N, PROTO_CIDRS_MAX + 1, CG_ERR_PROTO},
        {KF_MAX_TOKENS, -1, CG_ERR_PROTO},
        {KF_MAX_TOKENS, INT64_MAX, CG_ERR_OK},
        {KF_LOW_BUDGET, 2, CG_ERR_OK},
        {KF_LOW_BUDGET, 3, CG_ERR_PROTO},
        {KF_FAMILY, 0, CG_ERR_PROTO},
        {KF_FAMILY, 5, CG_ERR_PROTO},
        {KF_PREFIX, 32, CG_ERR_OK},
        {KF_PREFIX, 33, CG_ERR_PROTO},
        {KF_PREFIX, 7, CG_ERR_OK},
        {KF_PREFIX, 6, CG_ERR_PROTO}, /* 10 = 0b00001010: bit 6 is past a /6 */
        {KF_ADDR_LEN, 4, CG_ERR_PROTO},
        {KF_ADDR_LEN, CIDR_BYTES + 1, CG_ERR_PROTO},
    };
    key_knobs k = key_knobs_ok();
    CG_CHECK_EQ_INT(key_with(&k), CG_ERR_OK);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int deny = 0; deny < 2; deny++) {
            k = key_knobs_ok();
            k.deny_too = deny;
            key_knob_set(&k, cases[i].f, cases[i].v);
            cg_err err = key_with(&k);
            if (err != cases[i].want) {
                fprintf(stderr, "  key_rule_bounds case %zu (deny %d)\n", i, deny);
            }
            CG_CHECK_EQ_INT(err, cases[i].want);
        }
    }
}

/* A key with one network of this family, prefix and address in ip_allow and ip_deny. */
static cg_err key_cidr(uint64_t family, uint64_t prefix, const uint8_t addr[CIDR_BYTES])
{
    key_knobs k = key_knobs_ok();
    k.deny_too = true;
    k.family = family;
    k.prefix = prefix;
    memcpy(k.addr, addr, CIDR_BYTES);
    return key_with(&k);
}

CG_TEST(cidr_bounds)
{
    static const struct {
        uint8_t family, prefix;
        uint8_t addr[CIDR_BYTES];
        cg_err want;
    } cases[] = {
        {4, 0, {0}, CG_ERR_OK},
        {4, 32, {255, 255, 255, 255}, CG_ERR_OK},
        {4, 8, {10, 1}, CG_ERR_PROTO},          /* host bits */
        {4, 32, {1, 2, 3, 4, 5}, CG_ERR_PROTO}, /* bytes past IPv4 */
        {4, 24, {1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, CG_ERR_PROTO},
        {6, 0, {0}, CG_ERR_OK},
        {6,
         128,
         {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
          0xff},
         CG_ERR_OK},
        {6, 129, {0}, CG_ERR_PROTO},
        {6, 33, {0x20, 0x01, 0x0d, 0xb8, 0x80}, CG_ERR_OK},
        {6, 33, {0x20, 0x01, 0x0d, 0xb8, 0x40}, CG_ERR_PROTO}, /* host bit */
        {6, 127, {[15] = 1}, CG_ERR_PROTO},
        {6, 96, {[10] = 0xff, [11] = 0xff}, CG_ERR_PROTO}, /* mapped: must travel as IPv4 */
        {6, 104, {[10] = 0xff, [11] = 0xff, [12] = 10}, CG_ERR_PROTO},
        {6, 95, {[10] = 0xff, [11] = 0xfe}, CG_ERR_OK}, /* not inside the mapped range */
        {6, 80, {0}, CG_ERR_OK},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cg_err err = key_cidr(cases[i].family, cases[i].prefix, cases[i].addr);
        if (err != cases[i].want) {
            fprintf(stderr, "  cidr_bounds case %zu\n", i);
        }
        CG_CHECK_EQ_INT(err, cases[i].want);
    }
}

/* [1, org] with n customer limits (id_delta added to the first id) and on_low_budget. */
static cg_err org_customer_limits(uint32_t n, uint32_t id_delta, uint64_t low_budget)
{
    raw r;
    raw_init(&r);
    raw_org_start(&r, 8, 1, 1);
    raw_arr(&r, 0);
    raw_arr(&r, 0);
    raw_natural_limits(&r, n, id_delta);
    raw_u(&r, low_budget);
    cg_err err = dec_raw_org(&r);
    raw_fini(&r);
    return err;
}

/* [1, customer] with n natural limits (id_delta added to the first id), id of id_len bytes. */
static cg_err customer_with(uint32_t n, uint32_t id_delta, size_t id_len)
{
    raw r;
    raw_init(&r);
    raw_arr(&r, 2);
    raw_u(&r, PROTO_VERSION);
    raw_arr(&r, 4);
    raw_str(&r, id_len, 'c');
    raw_str(&r, 1, 'o');
    raw_i(&r, 0);
    raw_natural_limits(&r, n, id_delta);
    cg_err err = dec_customer(r.sb.data, r.sb.size);
    raw_fini(&r);
    return err;
}

CG_TEST(customer_limit_bounds)
{
    CG_CHECK_EQ_INT(org_customer_limits(0, 0, PROTO_LOW_BUDGET_INHERIT), CG_ERR_OK);
    CG_CHECK_EQ_INT(org_customer_limits(PROTO_LIMITS_MAX, 0, PROTO_LOW_BUDGET_CLAMP), CG_ERR_OK);
    CG_CHECK_EQ_INT(org_customer_limits(PROTO_LIMITS_MAX + 1, 0, 0), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(org_customer_limits(2, 1, 0), CG_ERR_PROTO); /* not the natural id */
    CG_CHECK_EQ_INT(org_customer_limits(1, 0, PROTO_LOW_BUDGET_CLAMP + 1), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(customer_with(0, 0, 1), CG_ERR_OK);
    CG_CHECK_EQ_INT(customer_with(PROTO_LIMITS_MAX, 0, PROTO_ID_MAX), CG_ERR_OK);
    CG_CHECK_EQ_INT(customer_with(PROTO_LIMITS_MAX + 1, 0, 1), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(customer_with(3, 7, 1), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(customer_with(1, 0, PROTO_ID_MAX + 1), CG_ERR_PROTO);
    /* Two limits of the same (metric, window) share a natural id: refused. */
    raw r;
    raw_init(&r);
    raw_arr(&r, 2);
    raw_u(&r, PROTO_VERSION);
    raw_arr(&r, 4);
    raw_str(&r, 1, 'c');
    raw_str(&r, 1, 'o');
    raw_i(&r, 0);
    raw_arr(&r, 2);
    cg_window day = {CG_WIN_DAY, 0};
    for (int i = 0; i < 2; i++) {
        raw_limit_m(&r, proto_limit_natural_id(PROTO_METRIC_COST, day), PROTO_METRIC_COST,
                    CG_WIN_DAY, 0);
    }
    CG_CHECK_EQ_INT(dec_customer(r.sb.data, r.sb.size), CG_ERR_PROTO);
    raw_fini(&r);
}

/* [1, group] with the given anchor day, model count and length, and limit count. */
static cg_err group_with(uint64_t anchor, uint32_t model_n, size_t model_len, uint32_t limit_n)
{
    raw r;
    raw_init(&r);
    raw_arr(&r, 2);
    raw_u(&r, PROTO_VERSION);
    raw_arr(&r, 7);
    raw_str(&r, PROTO_ID_MAX, 'g');
    raw_str(&r, PROTO_ID_MAX, 'o');
    raw_str(&r, PROTO_NAME_MAX, 'n');
    raw_i(&r, -1);
    raw_u(&r, anchor);
    raw_arr(&r, model_n);
    for (uint32_t i = 0; i < model_n; i++) {
        raw_str(&r, model_len, 'm');
    }
    raw_arr(&r, limit_n);
    for (uint32_t i = 0; i < limit_n; i++) {
        raw_limit_m(&r, 1 + i, PROTO_METRIC_TOKENS, CG_WIN_SLIDING, 60);
    }
    cg_err err = dec_group(r.sb.data, r.sb.size);
    raw_fini(&r);
    return err;
}

CG_TEST(group_bounds)
{
    CG_CHECK_EQ_INT(group_with(1, 0, 1, 0), CG_ERR_OK);
    CG_CHECK_EQ_INT(group_with(28, PROTO_MODELS_MAX, PROTO_MODEL_MAX, PROTO_LIMITS_MAX), CG_ERR_OK);
    CG_CHECK_EQ_INT(group_with(0, 0, 1, 0), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(group_with(29, 0, 1, 0), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(group_with(1, PROTO_MODELS_MAX + 1, 1, 0), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(group_with(1, 1, 0, 0), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(group_with(1, 1, PROTO_MODEL_MAX + 1, 0), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(group_with(1, 0, 1, PROTO_LIMITS_MAX + 1), CG_ERR_PROTO);
}

/* A reserve (get_customer = false) or get_customer request with inline defaults. */
static cg_err inline_req(bool get_customer, uint64_t anchor, uint32_t n, uint32_t id_delta)
{
    raw r;
    raw_init(&r);
    raw_batch(&r, 1);
    raw_arr(&r, get_customer ? 4 : 7);
    raw_u(&r, get_customer ? PROTO_OP_GET_CUSTOMER : PROTO_OP_RESERVE);
    raw_str(&r, 12, 'c');
    if (!get_customer) {
        raw_str(&r, 1, 'r');
        raw_i(&r, 1000);
        raw_arr(&r, 3);
        raw_i(&r, 1);
        raw_i(&r, 2);
        raw_i(&r, 3);
    }
    raw_u(&r, anchor);
    raw_natural_limits(&r, n, id_delta);
    cg_err err = dec_raw_req(&r);
    raw_fini(&r);
    return err;
}

CG_TEST(inline_limit_bounds)
{
    for (int gc = 0; gc < 2; gc++) {
        CG_CHECK_EQ_INT(inline_req(gc, 0, 0, 0), CG_ERR_OK);
        CG_CHECK_EQ_INT(inline_req(gc, 1, 1, 0), CG_ERR_OK);
        CG_CHECK_EQ_INT(inline_req(gc, 28, PROTO_LIMITS_MAX, 0), CG_ERR_OK);
        /* An anchor without defaults: a customer's overrides still need a calendar. */
        CG_CHECK_EQ_INT(inline_req(gc, 1, 0, 0), CG_ERR_OK);
        CG_CHECK_EQ_INT(inline_req(gc, 0, 1, 0), CG_ERR_PROTO); /* limits without anchor */
        CG_CHECK_EQ_INT(inline_req(gc, 29, 1, 0), CG_ERR_PROTO);
        CG_CHECK_EQ_INT(inline_req(gc, 1, PROTO_LIMITS_MAX + 1, 0), CG_ERR_PROTO);
        CG_CHECK_EQ_INT(inline_req(gc, 1, 2, 1), CG_ERR_PROTO); /* not the natural id */
    }
}

/* A usage query with the given org and model lengths and time range. */
static cg_err usage_query_with(size_t org_len, size_t model_len, int64_t from_ms, int64_t to_ms)
{
    raw r;
    raw_init(&r);
    raw_batch(&r, 1);
    raw_arr(&r, 9);
    raw_u(&r, PROTO_OP_USAGE_QUERY);
    raw_str(&r, 0, 'x');
    raw_str(&r, org_len, 'o');
    raw_str(&r, PROTO_ID_MAX, 'k');
    raw_str(&r, 0, 'g');
    raw_str(&r, PROTO_ID_MAX, 'c');
    raw_str(&r, model_len, 'm');
    raw_i(&r, from_ms);
    raw_i(&r, to_ms);
    cg_err err = dec_raw_req(&r);
    raw_fini(&r);
    return err;
}

/* [1, usage] with the issue-3 strings of the given lengths. */
static cg_err usage_with(size_t group_len, size_t provider_len, size_t reqid_len)
{
    raw r;
    raw_init(&r);
    raw_arr(&r, 2);
    raw_u(&r, PROTO_VERSION);
    raw_arr(&r, 14);
    raw_i(&r, 0);
    raw_str(&r, 1, 'o');
    raw_str(&r, 1, 'k');
    raw_str(&r, 1, 'm');
    for (int i = 0; i < 5; i++) {
        raw_i(&r, i);
    }
    msgpack_pack_true(&r.pk);
    raw_str(&r, group_len, 'g');
    raw_str(&r, PROTO_ID_MAX, 'c');
    raw_str(&r, provider_len, 'p');
    raw_str(&r, reqid_len, 'r');
    cg_err err = dec_usage(r.sb.data, r.sb.size);
    raw_fini(&r);
    return err;
}

CG_TEST(usage_bounds)
{
    CG_CHECK_EQ_INT(usage_query_with(1, 0, 0, 0), CG_ERR_OK);
    CG_CHECK_EQ_INT(usage_query_with(PROTO_ID_MAX, PROTO_MODEL_MAX, 5, 5), CG_ERR_OK);
    CG_CHECK_EQ_INT(usage_query_with(1, 0, 1767225600000, 0), CG_ERR_OK); /* to = now */
    CG_CHECK_EQ_INT(usage_query_with(0, 0, 0, 0), CG_ERR_PROTO);          /* org required */
    CG_CHECK_EQ_INT(usage_query_with(PROTO_ID_MAX + 1, 0, 0, 0), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(usage_query_with(1, PROTO_MODEL_MAX + 1, 0, 0), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(usage_query_with(1, 0, 6, 5), CG_ERR_PROTO); /* to before from */
    CG_CHECK_EQ_INT(usage_with(0, 0, 0), CG_ERR_OK);
    CG_CHECK_EQ_INT(usage_with(PROTO_ID_MAX, PROTO_PROVIDER_MAX, PROTO_REQID_MAX), CG_ERR_OK);
    CG_CHECK_EQ_INT(usage_with(PROTO_ID_MAX + 1, 0, 0), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(usage_with(0, PROTO_PROVIDER_MAX + 1, 0), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(usage_with(0, 0, PROTO_REQID_MAX + 1), CG_ERR_PROTO);
}

/* A reserve reply: OK with one state, or BUDGET with no states and a refusal. */
static cg_err state_reply(uint64_t metric, uint64_t kind, uint64_t sliding_s, uint64_t action)
{
    raw r;
    raw_init(&r);
    raw_batch(&r, 1);
    raw_arr(&r, 3);
    raw_u(&r, PROTO_OP_RESERVE);
    raw_u(&r, CG_ERR_OK);
    raw_arr(&r, 1);
    raw_arr(&r, 10);
    raw_u(&r, 1);
    raw_i(&r, 2);
    raw_i(&r, 3);
    raw_i(&r, 4);
    raw_i(&r, 5);
    raw_u(&r, metric);
    raw_u(&r, kind);
    raw_u(&r, sliding_s);
    raw_i(&r, 100);
    raw_u(&r, action);
    cg_err err = dec_raw_rep(&r);
    raw_fini(&r);
    return err;
}

static cg_err refusal_reply(uint64_t metric, int64_t retry_after_ms)
{
    raw r;
    raw_init(&r);
    raw_batch(&r, 1);
    raw_arr(&r, 4);
    raw_u(&r, PROTO_OP_RESERVE);
    raw_u(&r, CG_ERR_BUDGET);
    raw_arr(&r, 0);
    raw_arr(&r, 9);
    raw_u(&r, 1);
    raw_u(&r, metric);
    raw_u(&r, CG_WIN_SLIDING);
    raw_u(&r, 3600);
    raw_i(&r, 10);
    raw_i(&r, 9);
    raw_i(&r, 2);
    raw_i(&r, 0);
    raw_i(&r, retry_after_ms);
    cg_err err = dec_raw_rep(&r);
    raw_fini(&r);
    return err;
}

CG_TEST(state_and_refusal_bounds)
{
    CG_CHECK_EQ_INT(state_reply(PROTO_METRIC_REQUESTS, CG_WIN_SLIDING, 60, PROTO_ACTION_WARN),
                    CG_ERR_OK);
    CG_CHECK_EQ_INT(state_reply(PROTO_METRIC_COST, CG_WIN_MONTH, 0, PROTO_ACTION_BLOCK), CG_ERR_OK);
    CG_CHECK_EQ_INT(state_reply(PROTO_METRIC_COUNT_, CG_WIN_DAY, 0, 0), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(state_reply(0, CG_WIN_SLIDING + 1, 0, 0), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(state_reply(0, CG_WIN_SLIDING, 0, 0), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(state_reply(0, CG_WIN_SLIDING, CG_WINDOW_SLIDING_MAX_S + 1, 0), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(state_reply(0, CG_WIN_DAY, 60, 0), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(state_reply(0, CG_WIN_DAY, 0, PROTO_ACTION_WARN + 1), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(refusal_reply(PROTO_METRIC_TOKENS, 0), CG_ERR_OK);
    CG_CHECK_EQ_INT(refusal_reply(PROTO_METRIC_TOKENS, INT64_MAX), CG_ERR_OK);
    CG_CHECK_EQ_INT(refusal_reply(PROTO_METRIC_TOKENS, -1), CG_ERR_PROTO);
    CG_CHECK_EQ_INT(refusal_reply(PROTO_METRIC_COUNT_, 0), CG_ERR_PROTO);
}

CG_TEST(record_replies_shape)
{
    static const struct {
        const char *what;
        uint8_t b[16];
        size_t n;
        cg_err want;
    } cases[] = {
        {"customer nil", {0x92, 0x01, 0x91, 0x94, 0x0e, 0x00, 0xc0, 0x90}, 8, CG_ERR_OK},
        {"customer int", {0x92, 0x01, 0x91, 0x94, 0x0e, 0x00, 0x05, 0x90}, 8, CG_ERR_PROTO},
        {"customer no states", {0x92, 0x01, 0x91, 0x93, 0x0e, 0x00, 0xc0}, 7, CG_ERR_PROTO},
        {"customer notfound bare", {0x92, 0x01, 0x91, 0x92, 0x0e, 0x05}, 6, CG_ERR_OK},
        {"usage ok", {0x92, 0x01, 0x91, 0x93, 0x10, 0x00, 0x94, 1, 2, 3, 4}, 11, CG_ERR_OK},
        {"usage short", {0x92, 0x01, 0x91, 0x93, 0x10, 0x00, 0x93, 1, 2, 3}, 10, CG_ERR_PROTO},
        {"usage ok bare", {0x92, 0x01, 0x91, 0x92, 0x10, 0x00}, 6, CG_ERR_PROTO},
        {"group nil", {0x92, 0x01, 0x91, 0x94, 0x0c, 0x00, 0xc0, 0x90}, 8, CG_ERR_PROTO},
        {"org state nil", {0x92, 0x01, 0x91, 0x94, 0x11, 0x00, 0xc0, 0x90}, 8, CG_ERR_PROTO},
        {"put_group body", {0x92, 0x01, 0x91, 0x93, 0x0b, 0x00, 0xc0}, 7, CG_ERR_PROTO},
        {"delete bare", {0x92, 0x01, 0x91, 0x92, 0x0f, 0x00}, 6, CG_ERR_OK},
        {"put_customer bare", {0x92, 0x01, 0x91, 0x92, 0x0d, 0x00}, 6, CG_ERR_OK},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cg_err err = dec_rep(cases[i].b, cases[i].n);
        if (err != cases[i].want) {
            fprintf(stderr, "  case \"%s\"\n", cases[i].what);
        }
        CG_CHECK_EQ_INT(err, cases[i].want);
    }
    proto_rep *out = NULL;
    uint32_t n = 0;
    CG_CHECK_EQ_INT(proto_rep_decode(cases[0].b, cases[0].n, &out, &n), CG_ERR_OK);
    CG_CHECK_EQ_INT(out[0].u.get_customer.found, 0);
    CG_CHECK_EQ_INT(out[0].u.get_customer.state_n, 0);
    proto_rep_free(out, n);
}

CG_TEST(natural_ids)
{
    cg_window life = {CG_WIN_LIFETIME, 0}, day = {CG_WIN_DAY, 0};
    cg_window min1 = {CG_WIN_SLIDING, 60}, longest = {CG_WIN_SLIDING, CG_WINDOW_SLIDING_MAX_S};
    CG_CHECK_EQ_INT(proto_limit_natural_id(PROTO_METRIC_COST, life), 1u << 28);
    CG_CHECK_EQ_INT(proto_limit_natural_id(PROTO_METRIC_TOKENS, day), (2u << 28) | (1u << 25));
    CG_CHECK_EQ_INT(proto_limit_natural_id(PROTO_METRIC_REQUESTS, min1),
                    (3u << 28) | (4u << 25) | 60u);
    CG_CHECK_EQ_INT(proto_limit_natural_id(PROTO_METRIC_COST, longest),
                    (1u << 28) | (4u << 25) | CG_WINDOW_SLIDING_MAX_S);
    cg_window huge = {CG_WIN_SLIDING, 1u << 26};
    CG_CHECK_EQ_INT(proto_limit_natural_id(PROTO_METRIC_COST, huge),
                    (1u << 28) | (4u << 25) | ((1u << 25) - 1));
    cg_window sloppy = {CG_WIN_DAY, 77}; /* only a sliding window's length counts */
    CG_CHECK_EQ_INT(proto_limit_natural_id(PROTO_METRIC_TOKENS, sloppy),
                    proto_limit_natural_id(PROTO_METRIC_TOKENS, day));
    CG_CHECK(proto_limit_natural_id(PROTO_METRIC_COST, life) != 0);
}

int main(void)
{
    return CG_TEST_RUN(key_rule_bounds, cidr_bounds, customer_limit_bounds, group_bounds,
                       inline_limit_bounds, usage_bounds, state_and_refusal_bounds,
                       record_replies_shape, natural_ids);
}
