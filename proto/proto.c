/*
 * proto.c — ledger protocol messages: request/reply batches, standalone
 * records (LMDB values) and PUB messages. The contract is proto.h; the msgpack
 * primitives are proto_wire.c, the record codecs proto_rec.c.
 *
 * Every value below is a msgpack array, positional. "bool" is msgpack
 * true/false, "binN" an N-byte bin, "str<=N" a str of at most N bytes without
 * NUL bytes, integers use any msgpack integer format that holds the value.
 *
 * Messages
 *   request = [1, [op, ...]]        1..PROTO_BATCH_MAX ops
 *   reply   = [1, [result, ...]]    1..PROTO_BATCH_MAX results, in request order
 *   pub     = [1, shard str<=PROTO_SHARD_MAX, event]
 *   record  = [1, org | key | group | customer | event | usage]       (LMDB values)
 *
 * Request ops: [opcode, route str<=PROTO_ROUTE_MAX, body...]
 *   1  PING          [1, route]
 *   2  AUTH          [2, route, hash bin32]
 *   3  RESERVE       [3, route, request_id str<=48, lease_ms, amounts, anchor_day, [limit, ...]]
 *                    (inline customer defaults, see "inline" below)
 *   4  SETTLE        [4, route, request_id, amounts, usage | nil, partial bool, charge_seq u32,
 *                     lease_ms]   (nil: has_usage = 0; + records, see "lease usage records")
 *   5  RELEASE       [5, route, request_id]
 *   6  PUT_ORG       [6, route, create_only bool, org]   (+ expect_rev, see "revisions")
 *   7  GET_ORG       [7, route]
 *   8  PUT_KEY       [8, route, create_only bool, key]   (+ expect_rev)
 *   9  GET_KEY       [9, route]
 *   10 EVENTS_SINCE  [10, route, after_seq u64, max_n 1..PROTO_EVENTS_MAX]
 *   11 PUT_GROUP     [11, route, create_only bool, group]   (+ expect_rev)
 *   12 GET_GROUP     [12, route]
 *   13 PUT_CUSTOMER  [13, route, customer]   (+ expect_rev)
 *   14 GET_CUSTOMER  [14, route, anchor_day, [limit, ...]]        (inline, as RESERVE)
 *   15 DELETE        [15, route]
 *   16 USAGE_QUERY   [16, route, org str<=64 non-empty, key_id, group, customer, model str<=64,
 *                     from_ms, to_ms]      to_ms 0 (= now) or >= from_ms
 *   17 GET_ORG_STATE [17, route]
 *   18 LIST_KEYS     [18, route, org str<=64 non-empty, after str<=64, limit 1..PROTO_LIST_KEYS_MAX]
 *   19 PUT_PRICING   [19, route, pricing]
 *   20 LIST_PRICING  [20, route]
 *   21 USAGE_SERIES  [21, route, filter, granularity 0..3, group_by 0..5]  (proto_usage_gran/_by)
 *   22 USAGE_RECORDS [22, route, filter, after_ts_ms, after_rid str<=48,
 *                     limit 1..PROTO_USAGE_RECORDS_MAX]
 *
 * Revisions (issue 5): the four PUTs above take one more element, expect_rev u64 >= 1,
 * only when expect_rev is non-zero (0 = unconditional = the element left out), so a
 * PUT without a condition is byte for byte what it was before. The records org, key,
 * group and customer likewise end with their revision u64 >= 1 only when it is non-zero.
 *
 * Lease usage records (issue 4, key leases, docs/leasing.md): SETTLE takes one more element,
 * [usage, ...] of 1..PROTO_SETTLE_RECS_MAX records, each with a non-empty request_id, only
 * when rec_n is non-zero (0 = the element left out), so a SETTLE without records is byte for
 * byte what it was before (arity 8; with records 9). Size: a record encodes to at most
 * USAGE_WIRE_MAX (469) bytes, so a SETTLE with the most records is at most SETTLE_WIRE_MAX
 * (~470 KiB, under an eighth of PROTO_MSG_MAX_BYTES; asserted below): a gateway batch,
 * flushed once it encodes 256 KiB, stays under 256 KiB + one op < 1 MiB.
 *
 * Reply results: [opcode, status u16 (cg_err), body...]; the body is present only
 * for the statuses where proto.h calls it meaningful, otherwise the result is
 * just [opcode, status]:
 *   PING          OK:     [1, 0, shard str<=PROTO_SHARD_MAX, last_seq u64]
 *   AUTH          OK:     [2, 0, key]
 *   RESERVE       OK:     [3, 0, [state, ...]]
 *                 BUDGET: [3, 12, [state, ...], refusal]
 *   SETTLE        OK:     [4, 0, late bool]
 *   GET_ORG       OK:     [7, 0, org]
 *   GET_KEY       OK:     [9, 0, key, [state, ...]]
 *   EVENTS_SINCE  OK:     [10, 0, last_seq u64, [event, ...]]  <= PROTO_EVENTS_MAX, seq ascending
 *   GET_GROUP     OK:     [12, 0, group, [state, ...]]
 *   GET_CUSTOMER  OK:     [14, 0, customer | nil, [state, ...]]  (nil: found = 0)
 *   USAGE_QUERY   OK:     [16, 0, totals]
 *   GET_ORG_STATE OK:     [17, 0, org, [state, ...]]
 *   LIST_KEYS     OK:     [18, 0, [key, ...] <= limit (ascending id), has_more bool]
 *   LIST_PRICING  OK:     [20, 0, [pricing, ...] <= PROTO_PRICING_MAX (ascending model)]
 *   USAGE_SERIES  OK:     [21, 0, [point, ...]]  <= PROTO_SERIES_MAX, (start_ms, value) ascending
 *   USAGE_RECORDS OK:     [22, 0, [usage, ...] <= limit, has_more bool]  (ts_ms, request_id)
 *                         ascending
 *   RELEASE, PUT_ORG, PUT_KEY, PUT_GROUP, PUT_CUSTOMER, DELETE: never a body.
 *
 * Records
 *   amounts  = [cost_nusd, tokens, requests]
 *   totals   = [requests, prompt_tokens, completion_tokens, cost_nusd]
 *   filter   = [org str<=64 non-empty, key_id, group, customer, model str<=64, provider str<=31,
 *               from_ms, to_ms]      to_ms 0 (no upper bound) or >= from_ms
 *   point    = [start_ms, value str<=64, totals]
 *   limit    = [id u32 >= 1, metric, window_kind, sliding_s, max, action, [warn_bp, ...]]
 *              sliding_s is 0 unless window_kind is sliding (1..CG_WINDOW_SLIDING_MAX_S);
 *              warn_bp 1..10000 strictly ascending, <= PROTO_WARN_MAX; ids distinct within
 *              the list. Customer limit lists (org customer_limits, customer, inline) also
 *              need id == proto_limit_natural_id(metric, window), so (metric, window) pairs
 *              are distinct there.
 *   inline   = anchor_day, [limit, ...]   (two elements of the op, not an array): customer
 *              limits; anchor_day 1..28 (the org's, so overrides have a calendar even
 *              without defaults), or 0 only when the list is empty
 *   cidr     = [family 4|6, prefix 0..32|0..128, addr bin16]   IPv4 in the first 4 bytes,
 *              every bit past the prefix zero (the rest of an IPv4 addr too); a network
 *              inside ::ffff:0:0/96 must be sent as IPv4 (cg_cidr.c normalises it)
 *   org      = [id, name, billing_anchor_day 1..28, created_ms, [limit, ...],
 *               [[url str<=512, secret str<=128], ...] <= 8, [customer limit, ...],
 *               on_low_budget 0..2]
 *              (+ revision, see "revisions"; + revision u64 >= 0 and [email str 3..254, ...]
 *              1..16 when the org has emails: the list is left out when empty)
 *   key      = [id, org, name, hash bin32, created_ms, expires_ms, revoked bool,
 *               billing_anchor_day 1..28, [limit, ...], group str<=64, customer str<=64,
 *               [model str 1..64, ...] <= 16, ip_allow [cidr, ...] <= 16,
 *               ip_deny [cidr, ...] <= 16, max_tokens_per_request >= 0, on_low_budget 0..2,
 *               rotated_ms >= 0, prev_hash bin32, prev_expires_ms >= 0]
 *              (records written before issue 5 have the first 15 elements only)
 *   pricing  = [model str 1..64, input_nusd_per_mtok >= 0, output_nusd_per_mtok >= 0, updated_ms]
 *   notice   = "d" [1, shard str<=PROTO_SHARD_MAX, route str<=PROTO_ROUTE_MAX]  (PUB only)
 *   group    = [id, org, name, created_ms, billing_anchor_day 1..28,
 *               [model str 1..64, ...] <= 16, [limit, ...]]
 *   customer = [id, org, created_ms, [customer limit, ...]]
 *   usage    = [ts_ms, org, key_id, model, prompt_tokens, completion_tokens, cost_nusd,
 *               status i32, latency_ms i32, estimated bool, group str<=64, customer str<=64,
 *               provider str<=31, request_id str<=48]
 *   event    = [seq, id, type 1..6, created_ms, org, scope, scope_id, limit_id, metric,
 *               window_kind, sliding_s, period_start_ms, period_end_ms, threshold_bp 1..10000,
 *               max, used]      type must agree with metric (type = 1 + 2 * metric + reached)
 *   state    = [limit_id, used, reserved, period_start_ms, period_end_ms, metric,
 *               window_kind, sliding_s, max, action]
 *   refusal  = [limit_id, metric, window_kind, sliding_s, max, used, reserved, resets_at_ms,
 *               retry_after_ms >= 0]
 *
 * Decoding invariants: input over PROTO_MSG_MAX_BYTES is CG_ERR_TOOBIG before a
 * byte is read; a first element other than 1 is CG_ERR_VERSION; anything else
 * that deviates from the layouts above (type, arity, bound, unknown opcode,
 * trailing bytes) is CG_ERR_PROTO. The only allocations are the result array
 * (bounded by PROTO_BATCH_MAX and by the input length), per SETTLE with records its
 * record array and, per events / keys / pricing / series / records reply, its item array
 * (each bounded by its max and by the input length); on failure nothing is returned and
 * everything is freed.
 */
#include "proto.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "proto_wire.h"

#define MSG_ARITY 2     /* [version, batch | record] */
#define PUB_ARITY 3     /* [version, shard, event] */
#define REQ_ARITY_MAX 9 /* longest request op (usage query, settle with records) */
#define REP_ARITY_MAX 4 /* longest reply result */
#define OP_ARITY_BARE 2 /* [opcode, route] or [opcode, status] */
#define OP_LAST PROTO_OP_USAGE_RECORDS
#define PRICING_ARITY 4

/*
 * Bounds of a SETTLE's usage records (key leases). A record is a fixarray of 14 elements,
 * each at least one byte (USAGE_WIRE_MIN), at most: 6 integers of 9 bytes (ts, tokens,
 * cost; status and latency take 5, counted as 9), a bool, the org, key, group and customer
 * ids and the model as str8 of <= 64 bytes, the provider <= 31 and the request id <= 48.
 * SETTLE_WIRE_MAX is the largest SETTLE op: its head (route, request id, amounts, a
 * usage record, partial, charge_seq, lease_ms) and PROTO_SETTLE_RECS_MAX records.
 */
#define USAGE_WIRE_MIN 15
#define USAGE_WIRE_MAX                                                                           \
    (1 + 6 * 9 + 1 + 4 * (2 + PROTO_ID_MAX) + (2 + PROTO_MODEL_MAX) + (2 + PROTO_PROVIDER_MAX) + \
     (2 + PROTO_REQID_MAX))
#define SETTLE_WIRE_MAX                                                                         \
    (1 + 1 + (2 + PROTO_ROUTE_MAX) + (2 + PROTO_REQID_MAX) + (1 + 3 * 9) + USAGE_WIRE_MAX + 1 + \
     5 + 9 + 3 + (size_t)PROTO_SETTLE_RECS_MAX * USAGE_WIRE_MAX)
_Static_assert(USAGE_WIRE_MAX == 469, "the header comment quotes 469 bytes");
_Static_assert(SETTLE_WIRE_MAX <= PROTO_MSG_MAX_BYTES / 8,
               "a full SETTLE must stay well under the message cap");

static const uint8_t req_arity[OP_LAST + 1] = {
    [PROTO_OP_PING] = 2,          [PROTO_OP_AUTH] = 3,          [PROTO_OP_RESERVE] = 7,
    [PROTO_OP_SETTLE] = 8,        [PROTO_OP_RELEASE] = 3,       [PROTO_OP_PUT_ORG] = 4,
    [PROTO_OP_GET_ORG] = 2,       [PROTO_OP_PUT_KEY] = 4,       [PROTO_OP_GET_KEY] = 2,
    [PROTO_OP_EVENTS_SINCE] = 4,  [PROTO_OP_PUT_GROUP] = 4,     [PROTO_OP_GET_GROUP] = 2,
    [PROTO_OP_PUT_CUSTOMER] = 3,  [PROTO_OP_GET_CUSTOMER] = 4,  [PROTO_OP_DELETE] = 2,
    [PROTO_OP_USAGE_QUERY] = 9,   [PROTO_OP_GET_ORG_STATE] = 2, [PROTO_OP_LIST_KEYS] = 5,
    [PROTO_OP_PUT_PRICING] = 3,   [PROTO_OP_LIST_PRICING] = 2,  [PROTO_OP_USAGE_SERIES] = 5,
    [PROTO_OP_USAGE_RECORDS] = 6,
};

/* The expected revision of a PUT of an org, key, group or customer (NULL for other ops). */
static const uint64_t *req_expect_rev(const proto_req *r)
{
    switch (r->op) {
    case PROTO_OP_PUT_ORG:
        return &r->u.put_org.expect_rev;
    case PROTO_OP_PUT_KEY:
        return &r->u.put_key.expect_rev;
    case PROTO_OP_PUT_GROUP:
        return &r->u.put_group.expect_rev;
    case PROTO_OP_PUT_CUSTOMER:
        return &r->u.put_customer.expect_rev;
    default:
        return NULL;
    }
}

/* Whether r's op has an optional trailing element: expect_rev, or a SETTLE's records. */
static bool req_has_tail(const proto_req *r)
{
    return r->op == PROTO_OP_SETTLE || req_expect_rev(r) != NULL;
}

/* Elements of r on the wire: its op's arity, plus expect_rev or records when set. */
static uint32_t req_arity_of(const proto_req *r)
{
    const uint64_t *rev = req_expect_rev(r);
    bool tail = (rev != NULL && *rev != 0) || (r->op == PROTO_OP_SETTLE && r->u.settle.rec_n > 0);
    return req_arity[r->op] + (tail ? 1u : 0u);
}

static bool op_ok(uint8_t op)
{
    return op >= PROTO_OP_PING && op <= OP_LAST;
}

/* Elements of a reply result for (op, status): 2 when it carries no body. */
static uint32_t rep_arity(uint8_t op, uint16_t status)
{
    switch (op) {
    case PROTO_OP_PING:
    case PROTO_OP_GET_KEY:
    case PROTO_OP_EVENTS_SINCE:
    case PROTO_OP_GET_GROUP:
    case PROTO_OP_GET_CUSTOMER:
    case PROTO_OP_GET_ORG_STATE:
        return status == CG_ERR_OK ? 4 : 2;
    case PROTO_OP_AUTH:
    case PROTO_OP_SETTLE:
    case PROTO_OP_GET_ORG:
    case PROTO_OP_USAGE_QUERY:
    case PROTO_OP_LIST_PRICING:
        return status == CG_ERR_OK ? 3 : 2;
    case PROTO_OP_LIST_KEYS:
        return status == CG_ERR_OK ? 4 : 2;
    case PROTO_OP_RESERVE:
        return status == CG_ERR_OK ? 3 : status == CG_ERR_BUDGET ? 4 : 2;
    case PROTO_OP_USAGE_SERIES:
        return status == CG_ERR_OK ? 3 : 2;
    case PROTO_OP_USAGE_RECORDS:
        return status == CG_ERR_OK ? 4 : 2;
    default:
        return OP_ARITY_BARE;
    }
}

/* ---- requests ---- */

static bool usage_query_ok(const proto_req *r)
{
    return r->u.usage_query.org[0] != '\0' &&
           (r->u.usage_query.to_ms == 0 || r->u.usage_query.to_ms >= r->u.usage_query.from_ms);
}

static void wr_usage_query(proto_wr *w, const proto_req *r)
{
    assert(usage_query_ok(r));
    proto_wr_str(w, r->u.usage_query.org, PROTO_ID_MAX);
    proto_wr_str(w, r->u.usage_query.key_id, PROTO_ID_MAX);
    proto_wr_str(w, r->u.usage_query.group, PROTO_ID_MAX);
    proto_wr_str(w, r->u.usage_query.customer, PROTO_ID_MAX);
    proto_wr_str(w, r->u.usage_query.model, PROTO_MODEL_MAX);
    proto_wr_i64(w, r->u.usage_query.from_ms);
    proto_wr_i64(w, r->u.usage_query.to_ms);
}

static cg_err rd_usage_query(proto_rd *rd, proto_req *r)
{
    PROTO_TRY(proto_rd_str(rd, r->u.usage_query.org, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, r->u.usage_query.key_id, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, r->u.usage_query.group, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, r->u.usage_query.customer, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, r->u.usage_query.model, PROTO_MODEL_MAX));
    PROTO_TRY(proto_rd_i64(rd, &r->u.usage_query.from_ms));
    PROTO_TRY(proto_rd_i64(rd, &r->u.usage_query.to_ms));
    return usage_query_ok(r) ? CG_ERR_OK : CG_ERR_PROTO;
}

/* ---- usage records of a SETTLE on a key lease (issue 4) ---- */

static void wr_settle_recs(proto_wr *w, const proto_req *r)
{
    uint32_t n = r->u.settle.rec_n;
    const proto_usage *u = r->u.settle.recs;
    assert(n >= 1 && n <= PROTO_SETTLE_RECS_MAX && u != NULL);
    proto_wr_array(w, n);
    for (uint32_t i = 0; i < n; i++) {
        assert(u[i].request_id[0] != '\0');
        proto_wr_usage(w, &u[i]);
    }
}

/* The records of a SETTLE; owned by r (proto_req_free) as soon as the array is set. */
static cg_err rd_settle_recs(proto_rd *rd, proto_req *r)
{
    uint32_t n;
    PROTO_TRY(proto_rd_array(rd, PROTO_SETTLE_RECS_MAX, &n));
    /* 0 is never sent (the element is left out); a count the input cannot hold is a lie. */
    if (n == 0 || (size_t)n * USAGE_WIRE_MIN > (size_t)(rd->end - rd->p)) {
        return CG_ERR_PROTO;
    }
    proto_usage *u = calloc(n, sizeof(*u));
    if (u == NULL) {
        return CG_ERR_NOMEM;
    }
    r->u.settle.recs = u;
    r->u.settle.rec_n = n;
    for (uint32_t i = 0; i < n; i++) {
        PROTO_TRY(proto_rd_usage(rd, &u[i]));
        if (u[i].request_id[0] == '\0') {
            return CG_ERR_PROTO;
        }
    }
    return CG_ERR_OK;
}

/* ---- usage series and records (USAGE_SERIES, USAGE_RECORDS) ---- */

#define FILTER_ARITY 8 /* [org, key_id, group, customer, model, provider, from_ms, to_ms] */
#define POINT_ARITY 3  /* [start_ms, value, totals] */

static bool usage_filter_ok(const proto_usage_filter *f)
{
    return f->org[0] != '\0' && (f->to_ms == 0 || f->to_ms >= f->from_ms);
}

static void wr_usage_filter(proto_wr *w, const proto_usage_filter *f)
{
    assert(usage_filter_ok(f));
    proto_wr_array(w, FILTER_ARITY);
    proto_wr_str(w, f->org, PROTO_ID_MAX);
    proto_wr_str(w, f->key_id, PROTO_ID_MAX);
    proto_wr_str(w, f->group, PROTO_ID_MAX);
    proto_wr_str(w, f->customer, PROTO_ID_MAX);
    proto_wr_str(w, f->model, PROTO_MODEL_MAX);
    proto_wr_str(w, f->provider, PROTO_PROVIDER_MAX);
    proto_wr_i64(w, f->from_ms);
    proto_wr_i64(w, f->to_ms);
}

static cg_err rd_usage_filter(proto_rd *rd, proto_usage_filter *f)
{
    PROTO_TRY(proto_rd_array_n(rd, FILTER_ARITY));
    PROTO_TRY(proto_rd_str(rd, f->org, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, f->key_id, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, f->group, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, f->customer, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, f->model, PROTO_MODEL_MAX));
    PROTO_TRY(proto_rd_str(rd, f->provider, PROTO_PROVIDER_MAX));
    PROTO_TRY(proto_rd_i64(rd, &f->from_ms));
    PROTO_TRY(proto_rd_i64(rd, &f->to_ms));
    return usage_filter_ok(f) ? CG_ERR_OK : CG_ERR_PROTO;
}

static void wr_usage_series_req(proto_wr *w, const proto_req *r)
{
    assert(r->u.usage_series.granularity <= PROTO_GRAN_MONTH &&
           r->u.usage_series.group_by <= PROTO_BY_GROUP);
    wr_usage_filter(w, &r->u.usage_series.f);
    proto_wr_u64(w, r->u.usage_series.granularity);
    proto_wr_u64(w, r->u.usage_series.group_by);
}

static cg_err rd_usage_series_req(proto_rd *rd, proto_req *r)
{
    PROTO_TRY(rd_usage_filter(rd, &r->u.usage_series.f));
    PROTO_TRY(proto_rd_u8(rd, PROTO_GRAN_MONTH, &r->u.usage_series.granularity));
    return proto_rd_u8(rd, PROTO_BY_GROUP, &r->u.usage_series.group_by);
}

static void wr_usage_records_req(proto_wr *w, const proto_req *r)
{
    assert(r->u.usage_records.limit >= 1 && r->u.usage_records.limit <= PROTO_USAGE_RECORDS_MAX);
    wr_usage_filter(w, &r->u.usage_records.f);
    proto_wr_i64(w, r->u.usage_records.after_ts_ms);
    proto_wr_str(w, r->u.usage_records.after_rid, PROTO_REQID_MAX);
    proto_wr_u64(w, r->u.usage_records.limit);
}

static cg_err rd_usage_records_req(proto_rd *rd, proto_req *r)
{
    PROTO_TRY(rd_usage_filter(rd, &r->u.usage_records.f));
    PROTO_TRY(proto_rd_i64(rd, &r->u.usage_records.after_ts_ms));
    PROTO_TRY(proto_rd_str(rd, r->u.usage_records.after_rid, PROTO_REQID_MAX));
    PROTO_TRY(proto_rd_u32(rd, PROTO_USAGE_RECORDS_MAX, &r->u.usage_records.limit));
    return r->u.usage_records.limit >= 1 ? CG_ERR_OK : CG_ERR_PROTO;
}

/* Order of series points: (start_ms, value) ascending; < 0, 0, > 0 like strcmp. */
static int point_cmp(const proto_usage_point *a, const proto_usage_point *b)
{
    if (a->start_ms != b->start_ms) {
        return a->start_ms < b->start_ms ? -1 : 1;
    }
    return strcmp(a->value, b->value);
}

/* Order of usage records: (ts_ms, request_id) ascending, the shard's log order. */
static int record_cmp(const proto_usage *a, const proto_usage *b)
{
    if (a->ts_ms != b->ts_ms) {
        return a->ts_ms < b->ts_ms ? -1 : 1;
    }
    return strcmp(a->request_id, b->request_id);
}

static void wr_usage_series_rep(proto_wr *w, const proto_rep *r)
{
    uint32_t n = r->u.usage_series.n;
    const proto_usage_point *pt = r->u.usage_series.points;
    assert(n <= PROTO_SERIES_MAX && (n == 0 || pt != NULL));
    proto_wr_array(w, n);
    for (uint32_t i = 0; i < n; i++) {
        assert(i == 0 || point_cmp(&pt[i - 1], &pt[i]) < 0);
        proto_wr_array(w, POINT_ARITY);
        proto_wr_i64(w, pt[i].start_ms);
        proto_wr_str(w, pt[i].value, PROTO_MODEL_MAX);
        proto_wr_totals(w, &pt[i].totals);
    }
}

/* The points of a series reply; owned by r as soon as the array is set. */
static cg_err rd_usage_series_rep(proto_rd *rd, proto_rep *r)
{
    uint32_t n;
    PROTO_TRY(proto_rd_array(rd, PROTO_SERIES_MAX, &n));
    if (n == 0) {
        return CG_ERR_OK;
    }
    proto_usage_point *pt = calloc(n, sizeof(*pt));
    if (pt == NULL) {
        return CG_ERR_NOMEM;
    }
    r->u.usage_series.points = pt;
    r->u.usage_series.n = n;
    for (uint32_t i = 0; i < n; i++) {
        PROTO_TRY(proto_rd_array_n(rd, POINT_ARITY));
        PROTO_TRY(proto_rd_i64(rd, &pt[i].start_ms));
        PROTO_TRY(proto_rd_str(rd, pt[i].value, PROTO_MODEL_MAX));
        PROTO_TRY(proto_rd_totals(rd, &pt[i].totals));
        if (i > 0 && point_cmp(&pt[i - 1], &pt[i]) >= 0) {
            return CG_ERR_PROTO;
        }
    }
    return CG_ERR_OK;
}

static void wr_usage_records_rep(proto_wr *w, const proto_rep *r)
{
    uint32_t n = r->u.usage_records.n;
    const proto_usage *u = r->u.usage_records.records;
    assert(n <= PROTO_USAGE_RECORDS_MAX && (n == 0 || u != NULL));
    proto_wr_array(w, n);
    for (uint32_t i = 0; i < n; i++) {
        assert(i == 0 || record_cmp(&u[i - 1], &u[i]) < 0);
        proto_wr_usage(w, &u[i]);
    }
    proto_wr_bool(w, r->u.usage_records.has_more != 0);
}

static cg_err rd_usage_records_rep(proto_rd *rd, proto_rep *r)
{
    uint32_t n;
    PROTO_TRY(proto_rd_array(rd, PROTO_USAGE_RECORDS_MAX, &n));
    if (n > 0) {
        proto_usage *u = calloc(n, sizeof(*u));
        if (u == NULL) {
            return CG_ERR_NOMEM;
        }
        r->u.usage_records.records = u;
        r->u.usage_records.n = n;
        for (uint32_t i = 0; i < n; i++) {
            PROTO_TRY(proto_rd_usage(rd, &u[i]));
            if (i > 0 && record_cmp(&u[i - 1], &u[i]) >= 0) {
                return CG_ERR_PROTO;
            }
        }
    }
    return proto_rd_bool(rd, &r->u.usage_records.has_more);
}

/* ---- issue 5: key lists and pricing overrides ---- */

static bool pricing_ok(const proto_pricing *p)
{
    return p->model[0] != '\0' && p->input_nusd_per_mtok >= 0 && p->output_nusd_per_mtok >= 0;
}

static void wr_pricing(proto_wr *w, const proto_pricing *p)
{
    assert(pricing_ok(p));
    proto_wr_array(w, PRICING_ARITY);
    proto_wr_str(w, p->model, PROTO_MODEL_MAX);
    proto_wr_i64(w, p->input_nusd_per_mtok);
    proto_wr_i64(w, p->output_nusd_per_mtok);
    proto_wr_i64(w, p->updated_ms);
}

static cg_err rd_pricing(proto_rd *rd, proto_pricing *p)
{
    PROTO_TRY(proto_rd_array_n(rd, PRICING_ARITY));
    PROTO_TRY(proto_rd_str(rd, p->model, PROTO_MODEL_MAX));
    PROTO_TRY(proto_rd_i64(rd, &p->input_nusd_per_mtok));
    PROTO_TRY(proto_rd_i64(rd, &p->output_nusd_per_mtok));
    PROTO_TRY(proto_rd_i64(rd, &p->updated_ms));
    return pricing_ok(p) ? CG_ERR_OK : CG_ERR_PROTO;
}

static bool list_keys_ok(const proto_req *r)
{
    return r->u.list_keys.org[0] != '\0' && r->u.list_keys.limit >= 1 &&
           r->u.list_keys.limit <= PROTO_LIST_KEYS_MAX;
}

static void wr_list_keys_req(proto_wr *w, const proto_req *r)
{
    assert(list_keys_ok(r));
    proto_wr_str(w, r->u.list_keys.org, PROTO_ID_MAX);
    proto_wr_str(w, r->u.list_keys.after, PROTO_ID_MAX);
    proto_wr_u64(w, r->u.list_keys.limit);
}

static cg_err rd_list_keys_req(proto_rd *rd, proto_req *r)
{
    PROTO_TRY(proto_rd_str(rd, r->u.list_keys.org, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, r->u.list_keys.after, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_u32(rd, PROTO_LIST_KEYS_MAX, &r->u.list_keys.limit));
    return list_keys_ok(r) ? CG_ERR_OK : CG_ERR_PROTO;
}

/* Bodies of the record ops (put/get of orgs, keys, groups, customers; usage query). */
static void wr_req_record(proto_wr *w, const proto_req *r)
{
    switch (r->op) {
    case PROTO_OP_PUT_ORG:
        proto_wr_bool(w, r->u.put_org.create_only != 0);
        proto_wr_org(w, &r->u.put_org.org);
        break;
    case PROTO_OP_PUT_KEY:
        proto_wr_bool(w, r->u.put_key.create_only != 0);
        proto_wr_key(w, &r->u.put_key.key);
        break;
    case PROTO_OP_PUT_GROUP:
        proto_wr_bool(w, r->u.put_group.create_only != 0);
        proto_wr_group(w, &r->u.put_group.group);
        break;
    case PROTO_OP_PUT_CUSTOMER:
        proto_wr_customer(w, &r->u.put_customer.customer);
        break;
    case PROTO_OP_GET_CUSTOMER:
        proto_wr_inline(w, r->u.get_customer.anchor_day, r->u.get_customer.inline_limits,
                        r->u.get_customer.inline_n);
        break;
    case PROTO_OP_USAGE_QUERY:
        wr_usage_query(w, r);
        break;
    case PROTO_OP_LIST_KEYS:
        wr_list_keys_req(w, r);
        break;
    case PROTO_OP_PUT_PRICING:
        wr_pricing(w, &r->u.put_pricing.pricing);
        break;
    case PROTO_OP_USAGE_SERIES:
        wr_usage_series_req(w, r);
        break;
    case PROTO_OP_USAGE_RECORDS:
        wr_usage_records_req(w, r);
        break;
    default: /* GET_ORG, GET_KEY, GET_GROUP, DELETE, GET_ORG_STATE: the route says it all */
        break;
    }
}

static void wr_req(proto_wr *w, const proto_req *r)
{
    assert(op_ok(r->op));
    proto_wr_array(w, req_arity_of(r));
    proto_wr_u64(w, r->op);
    proto_wr_str(w, r->route, PROTO_ROUTE_MAX);
    switch (r->op) {
    case PROTO_OP_AUTH:
        proto_wr_bin(w, r->u.auth.hash, sizeof(r->u.auth.hash));
        break;
    case PROTO_OP_RESERVE:
        proto_wr_str(w, r->u.reserve.request_id, PROTO_REQID_MAX);
        proto_wr_i64(w, r->u.reserve.lease_ms);
        proto_wr_amounts(w, &r->u.reserve.worst);
        proto_wr_inline(w, r->u.reserve.anchor_day, r->u.reserve.inline_limits,
                        r->u.reserve.inline_n);
        break;
    case PROTO_OP_SETTLE:
        proto_wr_str(w, r->u.settle.request_id, PROTO_REQID_MAX);
        proto_wr_amounts(w, &r->u.settle.actual);
        if (r->u.settle.has_usage) {
            proto_wr_usage(w, &r->u.settle.usage);
        } else {
            proto_wr_nil(w);
        }
        proto_wr_bool(w, r->u.settle.partial != 0);
        proto_wr_u64(w, r->u.settle.charge_seq);
        proto_wr_i64(w, r->u.settle.lease_ms);
        if (r->u.settle.rec_n > 0) {
            wr_settle_recs(w, r);
        }
        break;
    case PROTO_OP_RELEASE:
        proto_wr_str(w, r->u.release.request_id, PROTO_REQID_MAX);
        break;
    case PROTO_OP_EVENTS_SINCE:
        assert(r->u.events_since.max_n >= 1 && r->u.events_since.max_n <= PROTO_EVENTS_MAX);
        proto_wr_u64(w, r->u.events_since.after_seq);
        proto_wr_u64(w, r->u.events_since.max_n);
        break;
    default: /* PING: the route is the whole request; the rest are record ops */
        wr_req_record(w, r);
        break;
    }
    const uint64_t *rev = req_expect_rev(r);
    if (rev != NULL && *rev != 0) {
        proto_wr_u64(w, *rev);
    }
}

static cg_err rd_req_record(proto_rd *rd, proto_req *r)
{
    switch (r->op) {
    case PROTO_OP_PUT_ORG:
        PROTO_TRY(proto_rd_bool(rd, &r->u.put_org.create_only));
        return proto_rd_org(rd, &r->u.put_org.org);
    case PROTO_OP_PUT_KEY:
        PROTO_TRY(proto_rd_bool(rd, &r->u.put_key.create_only));
        return proto_rd_key(rd, &r->u.put_key.key);
    case PROTO_OP_PUT_GROUP:
        PROTO_TRY(proto_rd_bool(rd, &r->u.put_group.create_only));
        return proto_rd_group(rd, &r->u.put_group.group);
    case PROTO_OP_PUT_CUSTOMER:
        return proto_rd_customer(rd, &r->u.put_customer.customer);
    case PROTO_OP_GET_CUSTOMER:
        return proto_rd_inline(rd, &r->u.get_customer.anchor_day, r->u.get_customer.inline_limits,
                               &r->u.get_customer.inline_n);
    case PROTO_OP_USAGE_QUERY:
        return rd_usage_query(rd, r);
    case PROTO_OP_LIST_KEYS:
        return rd_list_keys_req(rd, r);
    case PROTO_OP_PUT_PRICING:
        return rd_pricing(rd, &r->u.put_pricing.pricing);
    case PROTO_OP_USAGE_SERIES:
        return rd_usage_series_req(rd, r);
    case PROTO_OP_USAGE_RECORDS:
        return rd_usage_records_req(rd, r);
    default:
        return CG_ERR_OK;
    }
}

static cg_err rd_req_body(proto_rd *rd, proto_req *r)
{
    switch (r->op) {
    case PROTO_OP_AUTH:
        return proto_rd_bin(rd, r->u.auth.hash, sizeof(r->u.auth.hash));
    case PROTO_OP_RESERVE:
        PROTO_TRY(proto_rd_str(rd, r->u.reserve.request_id, PROTO_REQID_MAX));
        PROTO_TRY(proto_rd_i64(rd, &r->u.reserve.lease_ms));
        PROTO_TRY(proto_rd_amounts(rd, &r->u.reserve.worst));
        return proto_rd_inline(rd, &r->u.reserve.anchor_day, r->u.reserve.inline_limits,
                               &r->u.reserve.inline_n);
    case PROTO_OP_SETTLE:
        PROTO_TRY(proto_rd_str(rd, r->u.settle.request_id, PROTO_REQID_MAX));
        PROTO_TRY(proto_rd_amounts(rd, &r->u.settle.actual));
        if (!proto_rd_nil(rd)) {
            r->u.settle.has_usage = 1;
            PROTO_TRY(proto_rd_usage(rd, &r->u.settle.usage));
        }
        PROTO_TRY(proto_rd_bool(rd, &r->u.settle.partial));
        PROTO_TRY(proto_rd_u32(rd, UINT32_MAX, &r->u.settle.charge_seq));
        return proto_rd_i64(rd, &r->u.settle.lease_ms);
    case PROTO_OP_RELEASE:
        return proto_rd_str(rd, r->u.release.request_id, PROTO_REQID_MAX);
    case PROTO_OP_EVENTS_SINCE:
        PROTO_TRY(proto_rd_u64(rd, UINT64_MAX, &r->u.events_since.after_seq));
        PROTO_TRY(proto_rd_u32(rd, PROTO_EVENTS_MAX, &r->u.events_since.max_n));
        return r->u.events_since.max_n >= 1 ? CG_ERR_OK : CG_ERR_PROTO;
    default:
        return rd_req_record(rd, r);
    }
}

/*
 * Bytes of the union member an op's body decodes into (0: the op has none).
 * The batch array is malloc'ed, not calloc'ed (a whole proto_req is ~11 KB, most
 * of it put_org's webhooks and emails), so each op zeroes its header and exactly this member
 * before decoding: every byte a consumer of that op may read is then defined,
 * whatever the decoder writes or skips. The rest of the union is never read.
 */
#define REQ_MEMBER(m) sizeof(((proto_req *)0)->u.m)
static size_t req_body_bytes(uint8_t op)
{
    switch (op) {
    case PROTO_OP_AUTH:
        return REQ_MEMBER(auth);
    case PROTO_OP_RESERVE:
        return REQ_MEMBER(reserve);
    case PROTO_OP_SETTLE:
        return REQ_MEMBER(settle);
    case PROTO_OP_RELEASE:
        return REQ_MEMBER(release);
    case PROTO_OP_PUT_ORG:
        return REQ_MEMBER(put_org);
    case PROTO_OP_PUT_KEY:
        return REQ_MEMBER(put_key);
    case PROTO_OP_EVENTS_SINCE:
        return REQ_MEMBER(events_since);
    case PROTO_OP_PUT_GROUP:
        return REQ_MEMBER(put_group);
    case PROTO_OP_PUT_CUSTOMER:
        return REQ_MEMBER(put_customer);
    case PROTO_OP_GET_CUSTOMER:
        return REQ_MEMBER(get_customer);
    case PROTO_OP_USAGE_QUERY:
        return REQ_MEMBER(usage_query);
    case PROTO_OP_LIST_KEYS:
        return REQ_MEMBER(list_keys);
    case PROTO_OP_PUT_PRICING:
        return REQ_MEMBER(put_pricing);
    case PROTO_OP_USAGE_SERIES:
        return REQ_MEMBER(usage_series);
    case PROTO_OP_USAGE_RECORDS:
        return REQ_MEMBER(usage_records);
    default: /* PING, GET_ORG, GET_KEY, GET_GROUP, DELETE, GET_ORG_STATE: route only */
        return 0;
    }
}
#undef REQ_MEMBER

/*
 * One op into *r (uninitialised memory): zeroes the header and, once the op is known to be
 * valid, the op's member — before r->op is set, so on any failure *r is safe for
 * proto_req_free (a SETTLE may own its records array).
 */
static cg_err rd_req(proto_rd *rd, proto_req *r)
{
    uint32_t n;
    uint8_t op;
    memset(r, 0, offsetof(proto_req, u));
    PROTO_TRY(proto_rd_array(rd, REQ_ARITY_MAX, &n));
    if (n < OP_ARITY_BARE) {
        return CG_ERR_PROTO;
    }
    PROTO_TRY(proto_rd_u8(rd, OP_LAST, &op));
    if (!op_ok(op)) {
        return CG_ERR_PROTO;
    }
    memset(&r->u, 0, req_body_bytes(op));
    r->op = op;
    if (n != req_arity[r->op] && !(n == req_arity[r->op] + 1u && req_has_tail(r))) {
        return CG_ERR_PROTO;
    }
    PROTO_TRY(proto_rd_str(rd, r->route, PROTO_ROUTE_MAX));
    PROTO_TRY(rd_req_body(rd, r));
    if (n > req_arity[r->op] && r->op == PROTO_OP_SETTLE) {
        return rd_settle_recs(rd, r);
    }
    if (n > req_arity[r->op]) { /* expect_rev, never 0 on the wire (0 = left out) */
        uint64_t *rev = (uint64_t *)req_expect_rev(r);
        PROTO_TRY(proto_rd_u64(rd, UINT64_MAX, rev));
        return *rev != 0 ? CG_ERR_OK : CG_ERR_PROTO;
    }
    return CG_ERR_OK;
}

/* Assert what an encoder promises: a message any decoder accepts by size. */
static cg_err wr_finish_msg(proto_wr *w)
{
    cg_err err = proto_wr_finish(w);
    assert(err != CG_ERR_OK || w->sb->size - w->start <= PROTO_MSG_MAX_BYTES);
    return err;
}

cg_err proto_req_encode(const proto_req *reqs, uint32_t n, msgpack_sbuffer *out)
{
    assert(reqs != NULL && n >= 1 && n <= PROTO_BATCH_MAX);
    proto_wr w;
    proto_wr_init(&w, out);
    proto_wr_array(&w, MSG_ARITY);
    proto_wr_u64(&w, PROTO_VERSION);
    proto_wr_array(&w, n);
    for (uint32_t i = 0; i < n; i++) {
        wr_req(&w, &reqs[i]);
    }
    return wr_finish_msg(&w);
}

cg_err proto_req_encode_op(const proto_req *req, msgpack_sbuffer *out)
{
    assert(req != NULL);
    proto_wr w;
    proto_wr_init(&w, out);
    wr_req(&w, req);
    return proto_wr_finish(&w);
}

cg_err proto_req_batch_prefix(uint32_t n, msgpack_sbuffer *out)
{
    assert(n >= 1 && n <= PROTO_BATCH_MAX);
    proto_wr w;
    proto_wr_init(&w, out);
    proto_wr_array(&w, MSG_ARITY);
    proto_wr_u64(&w, PROTO_VERSION);
    proto_wr_array(&w, n);
    return proto_wr_finish(&w);
}

/* The batch header shared by requests and replies: its op count, 1..PROTO_BATCH_MAX. */
static cg_err rd_batch_header(proto_rd *rd, const void *buf, size_t len, uint32_t *n)
{
    if (len > PROTO_MSG_MAX_BYTES) {
        return CG_ERR_TOOBIG;
    }
    proto_rd_init(rd, buf, len);
    PROTO_TRY(proto_rd_header(rd, MSG_ARITY));
    PROTO_TRY(proto_rd_array(rd, PROTO_BATCH_MAX, n));
    return *n >= 1 ? CG_ERR_OK : CG_ERR_PROTO;
}

cg_err proto_req_decode(const void *buf, size_t len, proto_req **out, uint32_t *n_out)
{
    proto_rd rd;
    uint32_t n;
    assert(out != NULL && n_out != NULL);
    PROTO_TRY(rd_batch_header(&rd, buf, len, &n));
    proto_req *reqs = malloc((size_t)n * sizeof(*reqs)); /* rd_req zeroes what it uses */
    if (reqs == NULL) {
        return CG_ERR_NOMEM;
    }
    cg_err err = CG_ERR_OK;
    uint32_t reached = 0; /* entries rd_req has initialised (the failed one included) */
    uint32_t recs = 0;    /* usage records decoded so far (memory bound, see proto.h) */
    while (reached < n && err == CG_ERR_OK) {
        proto_req *r = &reqs[reached++];
        err = rd_req(&rd, r);
        if (err == CG_ERR_OK && r->op == PROTO_OP_SETTLE &&
            (recs += r->u.settle.rec_n) > PROTO_MSG_RECS_MAX) {
            err = CG_ERR_TOOBIG;
        }
    }
    if (err == CG_ERR_OK) {
        err = proto_rd_end(&rd);
    }
    if (err != CG_ERR_OK) {
        goto fail;
    }
    *out = reqs;
    *n_out = n;
    return CG_ERR_OK;
fail:
    proto_req_free(reqs, reached); /* entries past it are uninitialised */
    return err;
}

void proto_req_free(proto_req *reqs, uint32_t n)
{
    if (reqs == NULL) {
        return;
    }
    /* A decoded SETTLE owns its records array (NULL when it has none). */
    for (uint32_t i = 0; i < n; i++) {
        if (reqs[i].op == PROTO_OP_SETTLE) {
            free(reqs[i].u.settle.recs);
        }
    }
    free(reqs);
}

/* ---- replies ---- */

static void wr_events(proto_wr *w, const proto_rep *r)
{
    uint32_t n = r->u.events.n;
    assert(n <= PROTO_EVENTS_MAX && (n == 0 || r->u.events.events != NULL));
    proto_wr_u64(w, r->u.events.last_seq);
    proto_wr_array(w, n);
    for (uint32_t i = 0; i < n; i++) {
        assert(i == 0 || r->u.events.events[i].seq > r->u.events.events[i - 1].seq);
        proto_wr_event(w, &r->u.events.events[i]);
    }
}

/* Bodies of the issue-3 record replies: a record (or nil) and its limit states. */
static void wr_rep_record(proto_wr *w, const proto_rep *r)
{
    switch (r->op) {
    case PROTO_OP_GET_GROUP:
        proto_wr_group(w, &r->u.get_group.group);
        proto_wr_states(w, r->u.get_group.states, r->u.get_group.state_n);
        break;
    case PROTO_OP_GET_CUSTOMER:
        if (r->u.get_customer.found) {
            proto_wr_customer(w, &r->u.get_customer.customer);
        } else {
            proto_wr_nil(w);
        }
        proto_wr_states(w, r->u.get_customer.states, r->u.get_customer.state_n);
        break;
    case PROTO_OP_GET_ORG_STATE:
        proto_wr_org(w, &r->u.get_org_state.org);
        proto_wr_states(w, r->u.get_org_state.states, r->u.get_org_state.state_n);
        break;
    case PROTO_OP_USAGE_QUERY:
        proto_wr_totals(w, &r->u.usage.totals);
        break;
    case PROTO_OP_LIST_KEYS:
        assert(r->u.list_keys.n <= PROTO_LIST_KEYS_MAX &&
               (r->u.list_keys.n == 0 || r->u.list_keys.keys != NULL));
        proto_wr_array(w, r->u.list_keys.n);
        for (uint32_t i = 0; i < r->u.list_keys.n; i++) {
            proto_wr_key(w, &r->u.list_keys.keys[i]);
        }
        proto_wr_bool(w, r->u.list_keys.has_more != 0);
        break;
    case PROTO_OP_LIST_PRICING:
        assert(r->u.list_pricing.n <= PROTO_PRICING_MAX &&
               (r->u.list_pricing.n == 0 || r->u.list_pricing.items != NULL));
        proto_wr_array(w, r->u.list_pricing.n);
        for (uint32_t i = 0; i < r->u.list_pricing.n; i++) {
            wr_pricing(w, &r->u.list_pricing.items[i]);
        }
        break;
    case PROTO_OP_USAGE_SERIES:
        wr_usage_series_rep(w, r);
        break;
    case PROTO_OP_USAGE_RECORDS:
        wr_usage_records_rep(w, r);
        break;
    default:
        assert(!"reply body for an op without one");
    }
}

static void wr_rep(proto_wr *w, const proto_rep *r)
{
    assert(op_ok(r->op));
    uint32_t arity = rep_arity(r->op, r->status);
    proto_wr_array(w, arity);
    proto_wr_u64(w, r->op);
    proto_wr_u64(w, r->status);
    if (arity == OP_ARITY_BARE) {
        return;
    }
    switch (r->op) {
    case PROTO_OP_PING:
        proto_wr_str(w, r->u.ping.shard, PROTO_SHARD_MAX);
        proto_wr_u64(w, r->u.ping.last_seq);
        break;
    case PROTO_OP_AUTH:
        proto_wr_key(w, &r->u.auth.key);
        break;
    case PROTO_OP_RESERVE:
        proto_wr_states(w, r->u.reserve.states, r->u.reserve.state_n);
        if (r->status == CG_ERR_BUDGET) {
            proto_wr_refusal(w, &r->u.reserve.refusal);
        }
        break;
    case PROTO_OP_SETTLE:
        proto_wr_bool(w, r->u.settle.late != 0);
        break;
    case PROTO_OP_GET_ORG:
        proto_wr_org(w, &r->u.get_org.org);
        break;
    case PROTO_OP_GET_KEY:
        proto_wr_key(w, &r->u.get_key.key);
        proto_wr_states(w, r->u.get_key.states, r->u.get_key.state_n);
        break;
    case PROTO_OP_EVENTS_SINCE:
        wr_events(w, r);
        break;
    default:
        wr_rep_record(w, r);
        break;
    }
}

/* The event array of an events reply; r->u.events.events is owned by r as soon as it is set. */
static cg_err rd_events(proto_rd *rd, proto_rep *r)
{
    uint32_t n;
    PROTO_TRY(proto_rd_u64(rd, UINT64_MAX, &r->u.events.last_seq));
    PROTO_TRY(proto_rd_array(rd, PROTO_EVENTS_MAX, &n));
    if (n == 0) {
        return CG_ERR_OK;
    }
    r->u.events.events = calloc(n, sizeof(proto_event));
    if (r->u.events.events == NULL) {
        return CG_ERR_NOMEM;
    }
    r->u.events.n = n;
    for (uint32_t i = 0; i < n; i++) {
        PROTO_TRY(proto_rd_event(rd, &r->u.events.events[i]));
        if (i > 0 && r->u.events.events[i].seq <= r->u.events.events[i - 1].seq) {
            return CG_ERR_PROTO;
        }
    }
    return CG_ERR_OK;
}

/* A key list; r->u.list_keys.keys is owned by r as soon as it is set. */
static cg_err rd_list_keys_rep(proto_rd *rd, proto_rep *r)
{
    uint32_t n;
    PROTO_TRY(proto_rd_array(rd, PROTO_LIST_KEYS_MAX, &n));
    if (n > 0) {
        r->u.list_keys.keys = calloc(n, sizeof(proto_key));
        if (r->u.list_keys.keys == NULL) {
            return CG_ERR_NOMEM;
        }
        r->u.list_keys.n = n;
        for (uint32_t i = 0; i < n; i++) {
            PROTO_TRY(proto_rd_key(rd, &r->u.list_keys.keys[i]));
            if (i > 0 && strcmp(r->u.list_keys.keys[i - 1].id, r->u.list_keys.keys[i].id) >= 0) {
                return CG_ERR_PROTO;
            }
        }
    }
    return proto_rd_bool(rd, &r->u.list_keys.has_more);
}

static cg_err rd_list_pricing_rep(proto_rd *rd, proto_rep *r)
{
    uint32_t n;
    PROTO_TRY(proto_rd_array(rd, PROTO_PRICING_MAX, &n));
    if (n == 0) {
        return CG_ERR_OK;
    }
    r->u.list_pricing.items = calloc(n, sizeof(proto_pricing));
    if (r->u.list_pricing.items == NULL) {
        return CG_ERR_NOMEM;
    }
    r->u.list_pricing.n = n;
    for (uint32_t i = 0; i < n; i++) {
        PROTO_TRY(rd_pricing(rd, &r->u.list_pricing.items[i]));
    }
    return CG_ERR_OK;
}

static cg_err rd_rep_record(proto_rd *rd, proto_rep *r)
{
    switch (r->op) {
    case PROTO_OP_GET_GROUP:
        PROTO_TRY(proto_rd_group(rd, &r->u.get_group.group));
        return proto_rd_states(rd, r->u.get_group.states, &r->u.get_group.state_n);
    case PROTO_OP_GET_CUSTOMER:
        if (!proto_rd_nil(rd)) {
            r->u.get_customer.found = 1;
            PROTO_TRY(proto_rd_customer(rd, &r->u.get_customer.customer));
        }
        return proto_rd_states(rd, r->u.get_customer.states, &r->u.get_customer.state_n);
    case PROTO_OP_GET_ORG_STATE:
        PROTO_TRY(proto_rd_org(rd, &r->u.get_org_state.org));
        return proto_rd_states(rd, r->u.get_org_state.states, &r->u.get_org_state.state_n);
    case PROTO_OP_USAGE_QUERY:
        return proto_rd_totals(rd, &r->u.usage.totals);
    case PROTO_OP_LIST_KEYS:
        return rd_list_keys_rep(rd, r);
    case PROTO_OP_LIST_PRICING:
        return rd_list_pricing_rep(rd, r);
    case PROTO_OP_USAGE_SERIES:
        return rd_usage_series_rep(rd, r);
    case PROTO_OP_USAGE_RECORDS:
        return rd_usage_records_rep(rd, r);
    default:
        return CG_ERR_PROTO; /* unreachable: rep_arity gives these ops no body */
    }
}

static cg_err rd_rep_body(proto_rd *rd, proto_rep *r)
{
    switch (r->op) {
    case PROTO_OP_PING:
        PROTO_TRY(proto_rd_str(rd, r->u.ping.shard, PROTO_SHARD_MAX));
        return proto_rd_u64(rd, UINT64_MAX, &r->u.ping.last_seq);
    case PROTO_OP_AUTH:
        return proto_rd_key(rd, &r->u.auth.key);
    case PROTO_OP_RESERVE:
        PROTO_TRY(proto_rd_states(rd, r->u.reserve.states, &r->u.reserve.state_n));
        if (r->status == CG_ERR_BUDGET) {
            return proto_rd_refusal(rd, &r->u.reserve.refusal);
        }
        return CG_ERR_OK;
    case PROTO_OP_SETTLE:
        return proto_rd_bool(rd, &r->u.settle.late);
    case PROTO_OP_GET_ORG:
        return proto_rd_org(rd, &r->u.get_org.org);
    case PROTO_OP_GET_KEY:
        PROTO_TRY(proto_rd_key(rd, &r->u.get_key.key));
        return proto_rd_states(rd, r->u.get_key.states, &r->u.get_key.state_n);
    case PROTO_OP_EVENTS_SINCE:
        return rd_events(rd, r);
    default:
        return rd_rep_record(rd, r);
    }
}

/* Bytes of the union member an op's reply decodes into (0: none); as req_body_bytes. */
#define REP_MEMBER(m) sizeof(((proto_rep *)0)->u.m)
static size_t rep_body_bytes(uint8_t op)
{
    switch (op) {
    case PROTO_OP_PING:
        return REP_MEMBER(ping);
    case PROTO_OP_AUTH:
        return REP_MEMBER(auth);
    case PROTO_OP_RESERVE:
        return REP_MEMBER(reserve);
    case PROTO_OP_SETTLE:
        return REP_MEMBER(settle);
    case PROTO_OP_GET_ORG:
        return REP_MEMBER(get_org);
    case PROTO_OP_GET_KEY:
        return REP_MEMBER(get_key);
    case PROTO_OP_EVENTS_SINCE:
        return REP_MEMBER(events);
    case PROTO_OP_GET_GROUP:
        return REP_MEMBER(get_group);
    case PROTO_OP_GET_CUSTOMER:
        return REP_MEMBER(get_customer);
    case PROTO_OP_GET_ORG_STATE:
        return REP_MEMBER(get_org_state);
    case PROTO_OP_USAGE_QUERY:
        return REP_MEMBER(usage);
    case PROTO_OP_LIST_KEYS:
        return REP_MEMBER(list_keys);
    case PROTO_OP_LIST_PRICING:
        return REP_MEMBER(list_pricing);
    case PROTO_OP_USAGE_SERIES:
        return REP_MEMBER(usage_series);
    case PROTO_OP_USAGE_RECORDS:
        return REP_MEMBER(usage_records);
    default: /* RELEASE, PUT_*, DELETE: status only */
        return 0;
    }
}
#undef REP_MEMBER

/*
 * One result into *r (uninitialised memory): zeroes the header and, once the op
 * is known to be valid, the op's member — before anything else can fail, so on
 * failure *r is safe for proto_rep_free (it may own an events array).
 */
static cg_err rd_rep(proto_rd *rd, proto_rep *r)
{
    uint32_t n;
    memset(r, 0, offsetof(proto_rep, u));
    PROTO_TRY(proto_rd_array(rd, REP_ARITY_MAX, &n));
    if (n < OP_ARITY_BARE) {
        return CG_ERR_PROTO;
    }
    uint8_t op;
    PROTO_TRY(proto_rd_u8(rd, OP_LAST, &op));
    if (!op_ok(op)) {
        return CG_ERR_PROTO;
    }
    memset(&r->u, 0, rep_body_bytes(op));
    r->op = op;
    PROTO_TRY(proto_rd_u16(rd, UINT16_MAX, &r->status));
    if (n != rep_arity(r->op, r->status)) {
        return CG_ERR_PROTO;
    }
    return n == OP_ARITY_BARE ? CG_ERR_OK : rd_rep_body(rd, r);
}

cg_err proto_rep_encode(const proto_rep *reps, uint32_t n, msgpack_sbuffer *out)
{
    assert(reps != NULL && n >= 1 && n <= PROTO_BATCH_MAX);
    proto_wr w;
    proto_wr_init(&w, out);
    proto_wr_array(&w, MSG_ARITY);
    proto_wr_u64(&w, PROTO_VERSION);
    proto_wr_array(&w, n);
    for (uint32_t i = 0; i < n; i++) {
        wr_rep(&w, &reps[i]);
    }
    return wr_finish_msg(&w);
}

cg_err proto_rep_decode(const void *buf, size_t len, proto_rep **out, uint32_t *n_out)
{
    proto_rd rd;
    uint32_t n;
    assert(out != NULL && n_out != NULL);
    PROTO_TRY(rd_batch_header(&rd, buf, len, &n));
    proto_rep *reps = malloc((size_t)n * sizeof(*reps)); /* rd_rep zeroes what it uses */
    if (reps == NULL) {
        return CG_ERR_NOMEM;
    }
    cg_err err = CG_ERR_OK;
    uint32_t reached = 0; /* entries rd_rep has initialised (the failed one included) */
    while (reached < n && err == CG_ERR_OK) {
        err = rd_rep(&rd, &reps[reached++]);
    }
    if (err == CG_ERR_OK) {
        err = proto_rd_end(&rd);
    }
    if (err != CG_ERR_OK) {
        goto fail;
    }
    *out = reps;
    *n_out = n;
    return CG_ERR_OK;
fail:
    proto_rep_free(reps, reached); /* entries past it are uninitialised */
    return err;
}

void proto_rep_free(proto_rep *reps, uint32_t n)
{
    if (reps == NULL) {
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        proto_rep_owned_free(&reps[i]);
    }
    free(reps);
}

void proto_rep_owned_free(proto_rep *rep)
{
    switch (rep->op) {
    case PROTO_OP_EVENTS_SINCE:
        free(rep->u.events.events);
        rep->u.events.events = NULL;
        rep->u.events.n = 0;
        break;
    case PROTO_OP_LIST_KEYS:
        free(rep->u.list_keys.keys);
        rep->u.list_keys.keys = NULL;
        rep->u.list_keys.n = 0;
        break;
    case PROTO_OP_LIST_PRICING:
        free(rep->u.list_pricing.items);
        rep->u.list_pricing.items = NULL;
        rep->u.list_pricing.n = 0;
        break;
    case PROTO_OP_USAGE_SERIES:
        free(rep->u.usage_series.points);
        rep->u.usage_series.points = NULL;
        rep->u.usage_series.n = 0;
        break;
    case PROTO_OP_USAGE_RECORDS:
        free(rep->u.usage_records.records);
        rep->u.usage_records.records = NULL;
        rep->u.usage_records.n = 0;
        break;
    default:
        break;
    }
}

/* ---- standalone records and PUB messages ---- */

/* Start [version, ...] of `arity` elements. */
static void wr_msg_begin(proto_wr *w, msgpack_sbuffer *out, uint32_t arity)
{
    proto_wr_init(w, out);
    proto_wr_array(w, arity);
    proto_wr_u64(w, PROTO_VERSION);
}

static cg_err rd_msg_begin(proto_rd *rd, const void *buf, size_t len, uint32_t arity)
{
    if (len > PROTO_MSG_MAX_BYTES) {
        return CG_ERR_TOOBIG;
    }
    proto_rd_init(rd, buf, len);
    return proto_rd_header(rd, arity);
}

/*
 * Standalone records ([1, record]: LMDB values) share one shape: encode wraps
 * the record's writer in a message; decode reads into a zeroed temporary and
 * copies out only on success (outputs are written only on success).
 */
#define PROTO_RECORD_CODEC(name, type)                                   \
    cg_err proto_##name##_encode(const type *rec, msgpack_sbuffer *out)  \
    {                                                                    \
        proto_wr w;                                                      \
        wr_msg_begin(&w, out, MSG_ARITY);                                \
        proto_wr_##name(&w, rec);                                        \
        return wr_finish_msg(&w);                                        \
    }                                                                    \
    cg_err proto_##name##_decode(const void *buf, size_t len, type *out) \
    {                                                                    \
        proto_rd rd;                                                     \
        type tmp;                                                        \
        memset(&tmp, 0, sizeof(tmp));                                    \
        PROTO_TRY(rd_msg_begin(&rd, buf, len, MSG_ARITY));               \
        PROTO_TRY(proto_rd_##name(&rd, &tmp));                           \
        PROTO_TRY(proto_rd_end(&rd));                                    \
        *out = tmp;                                                      \
        return CG_ERR_OK;                                                \
    }

PROTO_RECORD_CODEC(org, proto_org)
PROTO_RECORD_CODEC(key, proto_key)
PROTO_RECORD_CODEC(group, proto_group)
PROTO_RECORD_CODEC(customer, proto_customer)
PROTO_RECORD_CODEC(event, proto_event)
PROTO_RECORD_CODEC(usage, proto_usage)

cg_err proto_pub_encode(const char *shard, const proto_event *e, msgpack_sbuffer *out)
{
    proto_wr w;
    wr_msg_begin(&w, out, PUB_ARITY);
    proto_wr_str(&w, shard, PROTO_SHARD_MAX);
    proto_wr_event(&w, e);
    return wr_finish_msg(&w);
}

cg_err proto_pub_decode(const void *buf, size_t len, char shard[PROTO_SHARD_MAX + 1],
                        proto_event *out)
{
    proto_rd rd;
    char tmp_shard[PROTO_SHARD_MAX + 1];
    proto_event tmp;
    memset(&tmp, 0, sizeof(tmp));
    PROTO_TRY(rd_msg_begin(&rd, buf, len, PUB_ARITY));
    PROTO_TRY(proto_rd_str(&rd, tmp_shard, PROTO_SHARD_MAX));
    PROTO_TRY(proto_rd_event(&rd, &tmp));
    PROTO_TRY(proto_rd_end(&rd));
    memcpy(shard, tmp_shard, sizeof(tmp_shard));
    *out = tmp;
    return CG_ERR_OK;
}

cg_err proto_notice_encode(const char *shard, const char *route, msgpack_sbuffer *out)
{
    proto_wr w;
    size_t start = out->size;
    if (msgpack_sbuffer_write(out, PROTO_PUB_TOPIC_NOTICE, 1) != 0) {
        return CG_ERR_NOMEM;
    }
    wr_msg_begin(&w, out, PUB_ARITY);
    proto_wr_str(&w, shard, PROTO_SHARD_MAX);
    proto_wr_str(&w, route, PROTO_ROUTE_MAX);
    cg_err err = wr_finish_msg(&w);
    if (err != CG_ERR_OK) {
        out->size = start;
    }
    return err;
}

cg_err proto_notice_decode(const void *buf, size_t len, char shard[PROTO_SHARD_MAX + 1],
                           char route[PROTO_ROUTE_MAX + 1])
{
    proto_rd rd;
    char tmp_shard[PROTO_SHARD_MAX + 1];
    char tmp_route[PROTO_ROUTE_MAX + 1];
    if (len < 1 || ((const char *)buf)[0] != PROTO_PUB_TOPIC_NOTICE[0]) {
        return CG_ERR_PROTO;
    }
    PROTO_TRY(rd_msg_begin(&rd, (const char *)buf + 1, len - 1, PUB_ARITY));
    PROTO_TRY(proto_rd_str(&rd, tmp_shard, PROTO_SHARD_MAX));
    PROTO_TRY(proto_rd_str(&rd, tmp_route, PROTO_ROUTE_MAX));
    PROTO_TRY(proto_rd_end(&rd));
    memcpy(shard, tmp_shard, sizeof(tmp_shard));
    memcpy(route, tmp_route, sizeof(tmp_route));
    return CG_ERR_OK;
}

cg_err proto_pricing_encode(const proto_pricing *p, msgpack_sbuffer *out)
{
    proto_wr w;
    wr_msg_begin(&w, out, MSG_ARITY);
    wr_pricing(&w, p);
    return wr_finish_msg(&w);
}

cg_err proto_pricing_decode(const void *buf, size_t len, proto_pricing *out)
{
    proto_rd rd;
    proto_pricing tmp;
    memset(&tmp, 0, sizeof(tmp));
    PROTO_TRY(rd_msg_begin(&rd, buf, len, MSG_ARITY));
    PROTO_TRY(rd_pricing(&rd, &tmp));
    PROTO_TRY(proto_rd_end(&rd));
    *out = tmp;
    return CG_ERR_OK;
}
