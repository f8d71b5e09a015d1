/*
 * proto.h — the ledger wire protocol: versioned msgpack messages shared by
 * gateway, ledger and alerter.
 *
 * A request message carries a batch of 1..PROTO_BATCH_MAX operations for one
 * shard; the reply carries one result per operation, in the same order. Every
 * message starts with the protocol version; a decoder refuses other versions
 * (CG_ERR_VERSION), any message over PROTO_MSG_MAX_BYTES (CG_ERR_TOOBIG), and
 * anything malformed, truncated, of the wrong type or with a string/array over
 * its bound (CG_ERR_PROTO) — never a crash, never a partial result.
 *
 * Wire layout (msgpack arrays, positional, so decoding is cheap and strict):
 *   request  = [version, [op, ...]]          op    = [opcode, route, body...]
 *   reply    = [version, [result, ...]]      result = [opcode, status, body...]
 *   pub      = [version, shard_name, event]  (events on the shard's PUB socket)
 * The bodies per opcode are documented in proto.c.
 *
 * Records stored in LMDB (org, key, group, customer, event, usage) use the same
 * encoders, so a record read back from disk is checked exactly like one from the
 * network.
 *
 * All structs are fixed-size (bounded strings are NUL-terminated char arrays);
 * the only heap memory is the batch arrays, a decoded SETTLE's usage records and
 * the list replies' arrays (events, usage points and records), freed by
 * proto_req_free / proto_rep_free.
 */
#ifndef PROTO_H
#define PROTO_H
#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>
#include "cg_cidr.h"
#include "cg_err.h"
#include "cg_period.h"

#define PROTO_VERSION 1
#define PROTO_MSG_MAX_BYTES (4u << 20) /* receive cap for any message */
#define PROTO_BATCH_MAX 256            /* operations per message */
#define PROTO_SETTLE_RECS_MAX 1024     /* usage records per SETTLE (key leases) */
/* Usage records per request message: bounds what a decoder allocates for one message
 * (~470 bytes each) whatever the sender packs into PROTO_MSG_MAX_BYTES; a gateway batch
 * (closed at 256 KiB plus one op) never comes near it. */
#define PROTO_MSG_RECS_MAX 16384
#define PROTO_ID_MAX 64     /* org / key / group / customer id bytes */
#define PROTO_ROUTE_MAX 160 /* routing key bytes ("customer:<org>/<id>") */
#define PROTO_REQID_MAX 48  /* request id bytes */
#define PROTO_NAME_MAX 128
#define PROTO_LIMITS_MAX 16  /* limits per scope */
#define PROTO_WARN_MAX 8     /* warn_at thresholds per limit */
#define PROTO_WEBHOOKS_MAX 8 /* webhook endpoints per org */
#define PROTO_URL_MAX 512
#define PROTO_EMAILS_MAX 16 /* alert email addresses per org */
#define PROTO_EMAIL_MAX 254 /* bytes of one address (RFC 5321 path limit) */
#define PROTO_SECRET_MAX 128
#define PROTO_MODEL_MAX 64
#define PROTO_EVENTS_MAX 256  /* events per events-since reply */
#define PROTO_EVENT_ID_MAX 40 /* "evt_" + 32 hex */
#define PROTO_SHARD_MAX 31
#define PROTO_MODELS_MAX 16 /* allowed_models entries */
#define PROTO_CIDRS_MAX 16  /* ip_allow / ip_deny entries */
#define PROTO_PROVIDER_MAX 31
#define PROTO_LIST_KEYS_MAX 100      /* keys per LIST_KEYS reply */
#define PROTO_PRICING_MAX 256        /* entries per LIST_PRICING reply */
#define PROTO_SERIES_MAX 10000       /* points per USAGE_SERIES reply (more: CG_ERR_TOOBIG) */
#define PROTO_USAGE_RECORDS_MAX 2000 /* records per USAGE_RECORDS reply (a page) */
/* PUB topics (NNG SUB prefixes): every threshold event message starts with these two bytes
 * (msgpack fixarray 3, version 1); definition-change notices with "d". */
#define PROTO_PUB_TOPIC_EVENT "\x93\x01"
#define PROTO_PUB_TOPIC_NOTICE "d"

typedef enum proto_metric {
    PROTO_METRIC_COST = 0,     /* nano-USD */
    PROTO_METRIC_TOKENS = 1,   /* prompt + completion tokens */
    PROTO_METRIC_REQUESTS = 2, /* requests */
    PROTO_METRIC_COUNT_
} proto_metric;

typedef enum proto_action { PROTO_ACTION_BLOCK = 0, PROTO_ACTION_WARN = 1 } proto_action;

typedef enum proto_scope {
    PROTO_SCOPE_KEY = 0,
    PROTO_SCOPE_GROUP = 1,
    PROTO_SCOPE_CUSTOMER = 2,
    PROTO_SCOPE_ORG = 3,
} proto_scope;

/* Event types of SPEC §7; value = 1 + metric * 2 + (reached ? 1 : 0). */
typedef enum proto_event_type {
    PROTO_EVT_SPEND_WARNING = 1,   /* spend_cap_warning_threshold_reached */
    PROTO_EVT_SPEND_REACHED = 2,   /* spend_cap_reached */
    PROTO_EVT_TOKEN_WARNING = 3,   /* token_quota_warning_threshold_reached */
    PROTO_EVT_TOKEN_REACHED = 4,   /* token_quota_reached */
    PROTO_EVT_REQUEST_WARNING = 5, /* request_quota_warning_threshold_reached */
    PROTO_EVT_REQUEST_REACHED = 6, /* request_quota_reached */
} proto_event_type;

typedef enum proto_op {
    PROTO_OP_PING = 1,           /* route ""                          */
    PROTO_OP_AUTH = 2,           /* route "key:<id>": key by hash     */
    PROTO_OP_RESERVE = 3,        /* route = scope routing key         */
    PROTO_OP_SETTLE = 4,         /* route = scope routing key         */
    PROTO_OP_RELEASE = 5,        /* route = scope routing key         */
    PROTO_OP_PUT_ORG = 6,        /* route "org:<id>"                  */
    PROTO_OP_GET_ORG = 7,        /* route "org:<id>"                  */
    PROTO_OP_PUT_KEY = 8,        /* route "key:<id>"                  */
    PROTO_OP_GET_KEY = 9,        /* route "key:<id>": with limit state */
    PROTO_OP_EVENTS_SINCE = 10,  /* route ""                          */
    PROTO_OP_PUT_GROUP = 11,     /* route "group:<org>/<id>"          */
    PROTO_OP_GET_GROUP = 12,     /* route "group:<org>/<id>": with limit state */
    PROTO_OP_PUT_CUSTOMER = 13,  /* route "customer:<org>/<id>" (override record) */
    PROTO_OP_GET_CUSTOMER = 14,  /* route "customer:<org>/<id>": record (if any) + state */
    PROTO_OP_DELETE = 15,        /* route names the record: org/key/group/customer */
    PROTO_OP_USAGE_QUERY = 16,   /* route "": totals of this shard's usage records */
    PROTO_OP_GET_ORG_STATE = 17, /* route "org:<id>": org with limit state */
    PROTO_OP_LIST_KEYS = 18,     /* route "": keys of one org on this shard, by id */
    PROTO_OP_PUT_PRICING = 19,   /* route "pricing:<model>": pricing override */
    PROTO_OP_LIST_PRICING = 20,  /* route "": every pricing override on this shard */
    PROTO_OP_USAGE_SERIES = 21,  /* route "": usage totals per (period start, group_by value) */
    PROTO_OP_USAGE_RECORDS = 22, /* route "": raw usage records in time order, paged */
} proto_op;

typedef enum proto_low_budget {
    PROTO_LOW_BUDGET_INHERIT = 0, /* key: use the org's setting; org: reject */
    PROTO_LOW_BUDGET_REJECT = 1,
    PROTO_LOW_BUDGET_CLAMP = 2,
} proto_low_budget;

/* An IP network (see cg_cidr.h); on the wire [family, prefix, bin16]. */
typedef cg_cidr proto_cidr;

/* A limit of SPEC §3. */
typedef struct proto_limit {
    uint32_t id;    /* unique and stable within its scope (1, 2, ...); names its counters */
    uint8_t metric; /* proto_metric */
    cg_window window;
    int64_t max;                      /* nano-USD for cost, else a count; 0 = unlimited */
    uint8_t action;                   /* proto_action */
    uint8_t warn_n;                   /* 0..PROTO_WARN_MAX */
    uint16_t warn_bp[PROTO_WARN_MAX]; /* thresholds in basis points, 1..10000, strictly ascending */
} proto_limit;

typedef struct proto_webhook {
    char url[PROTO_URL_MAX + 1];
    char secret[PROTO_SECRET_MAX + 1]; /* "whsec_<base64>" */
} proto_webhook;

typedef struct proto_org {
    char id[PROTO_ID_MAX + 1];
    char name[PROTO_NAME_MAX + 1];
    uint8_t billing_anchor_day; /* 1..28 */
    int64_t created_ms;
    uint8_t limit_n;
    proto_limit limits[PROTO_LIMITS_MAX];
    uint8_t webhook_n;
    proto_webhook webhooks[PROTO_WEBHOOKS_MAX];
    uint8_t customer_limit_n; /* customer_defaults (ids: proto_limit_natural_id) */
    proto_limit customer_limits[PROTO_LIMITS_MAX];
    uint8_t on_low_budget; /* proto_low_budget: REJECT or CLAMP (INHERIT = REJECT) */
    /* Optimistic concurrency (issue 5): the shard stores its previous revision + 1 on every
     * PUT (the value sent is ignored); 0 = written before revisions existed. */
    uint64_t revision;
    /* Alert email addresses (issue 5 follow-up), each proto_email_ok; the alerter mails
     * the org's events to these plus smtp_to. */
    uint8_t email_n; /* 0..PROTO_EMAILS_MAX */
    char emails[PROTO_EMAILS_MAX][PROTO_EMAIL_MAX + 1];
} proto_org;

typedef struct proto_key {
    char id[PROTO_ID_MAX + 1]; /* "k_<hex>" */
    char org[PROTO_ID_MAX + 1];
    char name[PROTO_NAME_MAX + 1];
    uint8_t hash[32]; /* HMAC-SHA256(pepper, full key string) */
    int64_t created_ms;
    int64_t expires_ms; /* 0 = never */
    uint8_t revoked;
    uint8_t billing_anchor_day; /* copied from the org at creation, 1..28 */
    uint8_t limit_n;
    proto_limit limits[PROTO_LIMITS_MAX];
    char group[PROTO_ID_MAX + 1];    /* "" = no group */
    char customer[PROTO_ID_MAX + 1]; /* "" = not bound to a customer */
    uint8_t model_n;                 /* allowed_models; 0 = inherit the group's, else all */
    char models[PROTO_MODELS_MAX][PROTO_MODEL_MAX + 1];
    uint8_t ip_allow_n;
    proto_cidr ip_allow[PROTO_CIDRS_MAX];
    uint8_t ip_deny_n;
    proto_cidr ip_deny[PROTO_CIDRS_MAX];
    int64_t max_tokens_per_request; /* 0 = no per-request cap */
    uint8_t on_low_budget;          /* proto_low_budget */
    /* Rotation (issue 5): the previous secret's HMAC authenticates until prev_expires_ms. */
    int64_t rotated_ms;      /* 0 = never rotated */
    uint8_t prev_hash[32];   /* meaningful while prev_expires_ms != 0 */
    int64_t prev_expires_ms; /* 0 = no previous secret */
    /* Optimistic concurrency (issue 5): the shard stores its previous revision + 1 on every
     * PUT (the value sent is ignored); 0 = written before revisions existed. */
    uint64_t revision;
} proto_key;

/* A group (team / project / token group): one shared budget for several keys. */
typedef struct proto_group {
    char id[PROTO_ID_MAX + 1];
    char org[PROTO_ID_MAX + 1];
    char name[PROTO_NAME_MAX + 1];
    int64_t created_ms;
    uint8_t billing_anchor_day; /* copied from the org, 1..28 */
    uint8_t model_n;            /* allowed_models inherited by keys with none of their own */
    char models[PROTO_MODELS_MAX][PROTO_MODEL_MAX + 1];
    uint8_t limit_n;
    proto_limit limits[PROTO_LIMITS_MAX];
    /* Optimistic concurrency (issue 5): the shard stores its previous revision + 1 on every
     * PUT (the value sent is ignored); 0 = written before revisions existed. */
    uint64_t revision;
} proto_group;

/*
 * Per-customer overrides. A customer's effective limits are the org's
 * customer_defaults, each replaced by an override of the same (metric,
 * window) and completed by the overrides that match no default. Customer
 * limit ids are proto_limit_natural_id(metric, window), so replacing a default
 * by an override keeps the period's counter.
 */
typedef struct proto_customer {
    char id[PROTO_ID_MAX + 1];
    char org[PROTO_ID_MAX + 1];
    int64_t created_ms;
    uint8_t limit_n;
    proto_limit limits[PROTO_LIMITS_MAX];
    /* Optimistic concurrency (issue 5): the shard stores its previous revision + 1 on every
     * PUT (the value sent is ignored); 0 = written before revisions existed. */
    uint64_t revision;
} proto_customer;

/* A pricing override of one configured model (USD per million tokens, in nano-USD). */
typedef struct proto_pricing {
    char model[PROTO_MODEL_MAX + 1];
    int64_t input_nusd_per_mtok;  /* >= 0 */
    int64_t output_nusd_per_mtok; /* >= 0 */
    int64_t updated_ms;
} proto_pricing;

/* Counter state of one limit in its current period. */
typedef struct proto_limit_state {
    uint32_t limit_id;
    int64_t used;
    int64_t reserved;
    int64_t period_start_ms; /* sliding: now - window */
    int64_t period_end_ms;   /* reset time; 0 = never (lifetime); sliding: when the oldest
                                counted bucket leaves the window (now if none) */
    uint8_t metric;          /* self-describing, so callers need not know the definition */
    cg_window window;
    int64_t max;
    uint8_t action;
} proto_limit_state;

typedef struct proto_amounts {
    int64_t cost_nusd;
    int64_t tokens;
    int64_t requests;
} proto_amounts;

/* Which limit refused a reservation (CG_ERR_BUDGET), for the 402 `limit` object. */
typedef struct proto_refusal {
    uint32_t limit_id;
    uint8_t metric;
    cg_window window;
    int64_t max;
    int64_t used;
    int64_t reserved;
    int64_t resets_at_ms;   /* 0 = never */
    int64_t retry_after_ms; /* sliding windows: earliest time from now the request could fit
                               (0 for calendar/lifetime limits) */
} proto_refusal;

/* Usage record written with a settle (key scope only). */
typedef struct proto_usage {
    int64_t ts_ms;
    char org[PROTO_ID_MAX + 1];
    char key_id[PROTO_ID_MAX + 1];
    char model[PROTO_MODEL_MAX + 1];
    int64_t prompt_tokens;
    int64_t completion_tokens;
    int64_t cost_nusd;
    int32_t status; /* HTTP status returned to the client */
    int32_t latency_ms;
    uint8_t estimated;               /* usage estimated (stream broke before the usage chunk) */
    char group[PROTO_ID_MAX + 1];    /* "" = none */
    char customer[PROTO_ID_MAX + 1]; /* "" = none */
    char provider[PROTO_PROVIDER_MAX + 1];
    char request_id[PROTO_REQID_MAX + 1];
} proto_usage;

/* Totals of usage records matching a query. */
typedef struct proto_usage_totals {
    int64_t requests;
    int64_t prompt_tokens;
    int64_t completion_tokens;
    int64_t cost_nusd;
} proto_usage_totals;

/* Which usage records a USAGE_SERIES / USAGE_RECORDS query selects ("" = any). */
typedef struct proto_usage_filter {
    char org[PROTO_ID_MAX + 1]; /* required */
    char key_id[PROTO_ID_MAX + 1];
    char group[PROTO_ID_MAX + 1];
    char customer[PROTO_ID_MAX + 1];
    char model[PROTO_MODEL_MAX + 1];
    char provider[PROTO_PROVIDER_MAX + 1];
    int64_t from_ms; /* inclusive */
    int64_t to_ms;   /* exclusive; 0 = no upper bound */
} proto_usage_filter;

/* USAGE_SERIES: how records are bucketed (periods are UTC calendar periods). */
typedef enum proto_usage_gran {
    PROTO_GRAN_NONE = 0, /* one period: the whole range (start 0) */
    PROTO_GRAN_HOUR = 1,
    PROTO_GRAN_DAY = 2,
    PROTO_GRAN_MONTH = 3,
} proto_usage_gran;

/* USAGE_SERIES: which record field splits a period into several points. */
typedef enum proto_usage_by {
    PROTO_BY_NONE = 0,
    PROTO_BY_KEY = 1,
    PROTO_BY_MODEL = 2,
    PROTO_BY_PROVIDER = 3,
    PROTO_BY_CUSTOMER = 4,
    PROTO_BY_GROUP = 5,
} proto_usage_by;

/* One point of a usage series: totals of the records in (period, value). */
typedef struct proto_usage_point {
    int64_t start_ms;                /* period start (0 for PROTO_GRAN_NONE) */
    char value[PROTO_MODEL_MAX + 1]; /* the group_by field's value ("" = none / PROTO_BY_NONE) */
    proto_usage_totals totals;
} proto_usage_point;

typedef struct proto_event {
    uint64_t seq;                    /* per-shard sequence, from 1 */
    char id[PROTO_EVENT_ID_MAX + 1]; /* stable: derived from (scope, limit, period, threshold) */
    uint8_t type;                    /* proto_event_type */
    int64_t created_ms;
    char org[PROTO_ID_MAX + 1];
    uint8_t scope; /* proto_scope */
    char scope_id[PROTO_ID_MAX + 1];
    uint32_t limit_id;
    uint8_t metric;
    cg_window window;
    int64_t period_start_ms;
    int64_t period_end_ms; /* 0 = never */
    uint16_t threshold_bp; /* 10000 for *_reached */
    int64_t max;
    int64_t used;
} proto_event;

typedef struct proto_req {
    uint8_t op; /* proto_op */
    char route[PROTO_ROUTE_MAX + 1];
    union {
        struct {
            uint8_t hash[32];
        } auth;
        struct {
            char request_id[PROTO_REQID_MAX + 1];
            int64_t lease_ms;
            proto_amounts worst;
            /* Customer routes only: the org's customer_defaults, merged by the shard
             * with the stored override record (if any). */
            uint8_t anchor_day; /* 1..28; 0 when inline_n == 0 */
            uint8_t inline_n;
            proto_limit inline_limits[PROTO_LIMITS_MAX];
        } reserve;
        struct {
            char request_id[PROTO_REQID_MAX + 1];
            proto_amounts actual;
            uint8_t has_usage; /* write a usage record (key scope) */
            proto_usage usage;
            /* Budget leases (docs/leasing.md): partial = charge `actual` against the
             * reservation and keep it ACTIVE (reserved -= actual, at least 0), its lease
             * extended to now + lease_ms (1..LEDGER_LEASE_MAX_MS). Idempotent per
             * charge_seq (>= 1): a seq not above the last applied one is a no-op OK.
             * partial = 0: the ordinary final settle (charge_seq and lease_ms ignored). */
            uint8_t partial;
            uint32_t charge_seq;
            int64_t lease_ms;
            /* Usage records of requests admitted on a key-scope lease (docs/leasing.md): each is
             * written under its own request_id in the transaction that applies this settle, only
             * when the settle is applied (a partial settle whose charge_seq was already applied,
             * or a refused settle, writes none). Encoder: the caller's array (not owned).
             * Decoder: a heap array freed by proto_req_free. 0..PROTO_SETTLE_RECS_MAX. */
            uint32_t rec_n;
            proto_usage *recs;
        } settle;
        struct {
            char request_id[PROTO_REQID_MAX + 1];
        } release;
        struct {
            uint8_t create_only; /* CG_ERR_EXISTS if present */
            proto_org org;
            /* 0 = unconditional; else the shard refuses with CG_ERR_CONFLICT (nothing
             * written) unless the stored record's revision equals it (none: NOTFOUND). */
            uint64_t expect_rev;
        } put_org;
        struct {
            uint8_t create_only;
            proto_key key;
            /* 0 = unconditional; else the shard refuses with CG_ERR_CONFLICT (nothing
             * written) unless the stored record's revision equals it (none: NOTFOUND). */
            uint64_t expect_rev;
        } put_key;
        struct {
            uint64_t after_seq;
            uint32_t max_n; /* 1..PROTO_EVENTS_MAX */
        } events_since;
        struct {
            uint8_t create_only;
            proto_group group;
            /* 0 = unconditional; else the shard refuses with CG_ERR_CONFLICT (nothing
             * written) unless the stored record's revision equals it (none: NOTFOUND). */
            uint64_t expect_rev;
        } put_group;
        struct {
            proto_customer customer; /* replaces any existing override record */
            /* 0 = unconditional; else the shard refuses with CG_ERR_CONFLICT (nothing
             * written) unless the stored record's revision equals it (none: NOTFOUND). */
            uint64_t expect_rev;
        } put_customer;
        struct {
            /* Customer routes: defaults to merge for the returned state (as reserve). */
            uint8_t anchor_day;
            uint8_t inline_n;
            proto_limit inline_limits[PROTO_LIMITS_MAX];
        } get_customer;
        struct {
            char org[PROTO_ID_MAX + 1];      /* required */
            char key_id[PROTO_ID_MAX + 1];   /* "" = any */
            char group[PROTO_ID_MAX + 1];    /* "" = any */
            char customer[PROTO_ID_MAX + 1]; /* "" = any */
            char model[PROTO_MODEL_MAX + 1]; /* "" = any */
            int64_t from_ms;                 /* inclusive */
            int64_t to_ms;                   /* exclusive; 0 = now */
        } usage_query;
        struct {
            char org[PROTO_ID_MAX + 1];   /* required */
            char after[PROTO_ID_MAX + 1]; /* keys with id > after ("" = from the first) */
            uint32_t limit;               /* 1..PROTO_LIST_KEYS_MAX */
        } list_keys;
        struct {
            proto_pricing pricing; /* model must match the route */
        } put_pricing;
        struct {
            proto_usage_filter f;
            uint8_t granularity; /* proto_usage_gran */
            uint8_t group_by;    /* proto_usage_by */
        } usage_series;
        struct {
            proto_usage_filter f;
            /* Paging: records strictly after (after_ts_ms, after_rid) in (ts, request id)
             * order; after_rid "" = from f.from_ms. */
            int64_t after_ts_ms;
            char after_rid[PROTO_REQID_MAX + 1];
            uint32_t limit; /* 1..PROTO_USAGE_RECORDS_MAX */
        } usage_records;
    } u;
} proto_req;

typedef struct proto_rep {
    uint8_t op;      /* echoes the request's op */
    uint16_t status; /* cg_err; bodies below are meaningful only where noted */
    union {
        struct {
            char shard[PROTO_SHARD_MAX + 1];
            uint64_t last_seq;
        } ping; /* OK */
        struct {
            proto_key key;
        } auth; /* OK: the key (hash matched, not revoked); else UNAUTHORIZED */
        struct {
            proto_refusal refusal; /* BUDGET */
            uint8_t state_n;       /* OK and BUDGET: every limit after the operation */
            proto_limit_state states[PROTO_LIMITS_MAX];
        } reserve;
        struct {
            uint8_t late; /* OK: the lease had expired; recorded as spend anyway */
        } settle;
        struct {
            proto_org org;
        } get_org; /* OK */
        struct {
            proto_key key;
            uint8_t state_n;
            proto_limit_state states[PROTO_LIMITS_MAX];
        } get_key; /* OK */
        struct {
            uint64_t last_seq; /* the shard's newest seq */
            uint32_t n;
            proto_event *events; /* heap, n entries, ascending seq; freed by proto_rep_free */
        } events;
        struct {
            proto_group group;
            uint8_t state_n;
            proto_limit_state states[PROTO_LIMITS_MAX];
        } get_group; /* OK */
        struct {
            uint8_t found;           /* an override record exists */
            proto_customer customer; /* when found */
            uint8_t state_n;         /* effective limits (merged) */
            proto_limit_state states[PROTO_LIMITS_MAX];
        } get_customer; /* OK (also when no override record exists) */
        struct {
            proto_org org;
            uint8_t state_n;
            proto_limit_state states[PROTO_LIMITS_MAX];
        } get_org_state; /* OK */
        struct {
            proto_usage_totals totals;
        } usage; /* OK */
        struct {
            uint32_t n;       /* <= the request's limit */
            uint8_t has_more; /* more keys of the org after the last one on this shard */
            proto_key *keys;  /* heap, n entries, ascending id; freed by proto_rep_free */
        } list_keys;          /* OK */
        struct {
            uint32_t n;
            proto_pricing *items; /* heap, n entries, ascending model */
        } list_pricing;           /* OK */
        struct {
            uint32_t n;                /* <= PROTO_SERIES_MAX */
            proto_usage_point *points; /* heap, ascending (start_ms, value) */
        } usage_series;                /* OK */
        struct {
            uint32_t n;           /* <= the request's limit */
            uint8_t has_more;     /* more matching records after the last one */
            proto_usage *records; /* heap, ascending (ts_ms, request_id) */
        } usage_records;          /* OK */
    } u;
} proto_rep;

/* Encode a batch (1..PROTO_BATCH_MAX) into out (appended). Asserts on programmer errors. */
cg_err proto_req_encode(const proto_req *reqs, uint32_t n, msgpack_sbuffer *out);
/* Incremental encoding of a batch (the gateway's per-loop-iteration batching): append
 * ops one at a time with proto_req_encode_op (each appends all or nothing), then the
 * message is proto_req_batch_prefix(n) followed by those n encodings — byte for byte
 * what proto_req_encode gives for the same n ops. */
cg_err proto_req_encode_op(const proto_req *req, msgpack_sbuffer *out);
cg_err proto_req_batch_prefix(uint32_t n, msgpack_sbuffer *out);
/* Decode; on success *out is a heap array of *n entries (free with proto_req_free); each
 * entry's header and its op's union member are fully initialised, the rest is not. */
cg_err proto_req_decode(const void *buf, size_t len, proto_req **out, uint32_t *n);
void proto_req_free(proto_req *reqs, uint32_t n);

cg_err proto_rep_encode(const proto_rep *reps, uint32_t n, msgpack_sbuffer *out);
cg_err proto_rep_decode(const void *buf, size_t len, proto_rep **out, uint32_t *n);
/* Frees the array and every heap array inside it (proto_rep_owned_free of each). */
void proto_rep_free(proto_rep *reps, uint32_t n);
/* Free what one reply owns (EVENTS_SINCE, LIST_KEYS, LIST_PRICING, USAGE_SERIES,
 * USAGE_RECORDS arrays) and NULL it. */
void proto_rep_owned_free(proto_rep *rep);

/* Single records, for LMDB values and PUB messages. */
cg_err proto_org_encode(const proto_org *o, msgpack_sbuffer *out);
cg_err proto_org_decode(const void *buf, size_t len, proto_org *out);
cg_err proto_key_encode(const proto_key *k, msgpack_sbuffer *out);
cg_err proto_key_decode(const void *buf, size_t len, proto_key *out);
cg_err proto_event_encode(const proto_event *e, msgpack_sbuffer *out);
cg_err proto_event_decode(const void *buf, size_t len, proto_event *out);
cg_err proto_group_encode(const proto_group *g, msgpack_sbuffer *out);
cg_err proto_group_decode(const void *buf, size_t len, proto_group *out);
cg_err proto_customer_encode(const proto_customer *c, msgpack_sbuffer *out);
cg_err proto_customer_decode(const void *buf, size_t len, proto_customer *out);
cg_err proto_usage_encode(const proto_usage *u, msgpack_sbuffer *out);
cg_err proto_usage_decode(const void *buf, size_t len, proto_usage *out);
cg_err proto_pub_encode(const char *shard, const proto_event *e, msgpack_sbuffer *out);
cg_err proto_pub_decode(const void *buf, size_t len, char shard[PROTO_SHARD_MAX + 1],
                        proto_event *out);
/* Definition-change notice: PROTO_PUB_TOPIC_NOTICE followed by [1, shard, route]. */
cg_err proto_notice_encode(const char *shard, const char *route, msgpack_sbuffer *out);
cg_err proto_notice_decode(const void *buf, size_t len, char shard[PROTO_SHARD_MAX + 1],
                           char route[PROTO_ROUTE_MAX + 1]);
cg_err proto_pricing_encode(const proto_pricing *p, msgpack_sbuffer *out);
cg_err proto_pricing_decode(const void *buf, size_t len, proto_pricing *out);

/* Names as in SPEC: "cost"/"tokens"/"requests", "block"/"warn", "key"/"group"/"customer"/"org",
 * "spend_cap_warning_threshold_reached", ...; NULL for out-of-range values. */
const char *proto_metric_name(int metric);
const char *proto_action_name(int action);
const char *proto_scope_name(int scope);
const char *proto_event_type_name(int type);
const char *proto_op_name(int op);
/* Parse the names above; -1 if unknown. */
int proto_metric_parse(const char *s);
int proto_action_parse(const char *s);
/* Event type for a metric crossing a warning (reached = 0) or the cap (reached = 1). */
int proto_event_type_for(int metric, int reached);
/* "reject"/"clamp" (INHERIT prints as "inherit"); parse returns -1 if unknown. */
const char *proto_low_budget_name(int v);
int proto_low_budget_parse(const char *s);
/* Stable limit id derived from (metric, window), used for customer limits:
 * ((metric + 1) << 28) | (window.kind << 25) | min(sliding_s, 2^25 - 1). Never 0. */
uint32_t proto_limit_natural_id(uint8_t metric, cg_window window);
/* A plausible email address for alerts (org emails): 3..PROTO_EMAIL_MAX bytes, one '@'
 * with text on both sides, printable ASCII only, none of space "(),:;<>[]\ (so no
 * header or SMTP command injection, no list separators). */
bool proto_email_ok(const char *addr);

#endif
