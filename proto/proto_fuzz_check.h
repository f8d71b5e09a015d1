/*
 * proto_fuzz_check.h — the property both proto_fuzz (libFuzzer) and
 * proto_test's mutation loop check on arbitrary bytes: every decoder returns
 * OK or one of its documented errors without crashing, and whatever decodes
 * re-encodes (the encoders assert validity, so this proves decoded values
 * satisfy their documented bounds) into bytes that decode and re-encode to
 * the same bytes. Internal to proto/ tests; static functions only.
 */
#ifndef PROTO_FUZZ_CHECK_H
#define PROTO_FUZZ_CHECK_H
#include <stdbool.h>
#include <string.h>
#include "proto.h"

static bool proto_fuzz_err_ok(cg_err e)
{
    return e == CG_ERR_OK || e == CG_ERR_PROTO || e == CG_ERR_VERSION || e == CG_ERR_TOOBIG ||
           e == CG_ERR_NOMEM;
}

static bool proto_fuzz_same(const msgpack_sbuffer *a, const msgpack_sbuffer *b)
{
    return a->size == b->size && memcmp(a->data, b->data, a->size) == 0;
}

static bool proto_fuzz_req(const uint8_t *d, size_t len)
{
    proto_req *q = NULL, *q2 = NULL;
    uint32_t n = 0, n2 = 0;
    cg_err err = proto_req_decode(d, len, &q, &n);
    if (err != CG_ERR_OK) {
        return proto_fuzz_err_ok(err);
    }
    msgpack_sbuffer a, b;
    msgpack_sbuffer_init(&a);
    msgpack_sbuffer_init(&b);
    bool ok = proto_req_encode(q, n, &a) == CG_ERR_OK &&
              proto_req_decode(a.data, a.size, &q2, &n2) == CG_ERR_OK;
    ok = ok && n2 == n && proto_req_encode(q2, n2, &b) == CG_ERR_OK && proto_fuzz_same(&a, &b);
    proto_req_free(q2, n2);
    proto_req_free(q, n);
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
    return ok;
}

static bool proto_fuzz_rep(const uint8_t *d, size_t len)
{
    proto_rep *r = NULL, *r2 = NULL;
    uint32_t n = 0, n2 = 0;
    cg_err err = proto_rep_decode(d, len, &r, &n);
    if (err != CG_ERR_OK) {
        return proto_fuzz_err_ok(err);
    }
    msgpack_sbuffer a, b;
    msgpack_sbuffer_init(&a);
    msgpack_sbuffer_init(&b);
    bool ok = proto_rep_encode(r, n, &a) == CG_ERR_OK &&
              proto_rep_decode(a.data, a.size, &r2, &n2) == CG_ERR_OK;
    ok = ok && n2 == n && proto_rep_encode(r2, n2, &b) == CG_ERR_OK && proto_fuzz_same(&a, &b);
    proto_rep_free(r2, n2);
    proto_rep_free(r, n);
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
    return ok;
}

/* A record decoder/encoder pair: decode, encode, decode again, encode again, compare. */
#define PROTO_FUZZ_RECORD(name, type)                                                    \
    static bool proto_fuzz_##name(const uint8_t *d, size_t len)                          \
    {                                                                                    \
        static type x, y; /* static: orgs are large */                                   \
        cg_err err = proto_##name##_decode(d, len, &x);                                  \
        if (err != CG_ERR_OK) {                                                          \
            return proto_fuzz_err_ok(err);                                               \
        }                                                                                \
        msgpack_sbuffer a, b;                                                            \
        msgpack_sbuffer_init(&a);                                                        \
        msgpack_sbuffer_init(&b);                                                        \
        bool ok = proto_##name##_encode(&x, &a) == CG_ERR_OK &&                          \
                  proto_##name##_decode(a.data, a.size, &y) == CG_ERR_OK &&              \
                  proto_##name##_encode(&y, &b) == CG_ERR_OK && proto_fuzz_same(&a, &b); \
        msgpack_sbuffer_destroy(&a);                                                     \
        msgpack_sbuffer_destroy(&b);                                                     \
        return ok;                                                                       \
    }

PROTO_FUZZ_RECORD(org, proto_org)
PROTO_FUZZ_RECORD(key, proto_key)
PROTO_FUZZ_RECORD(event, proto_event)
PROTO_FUZZ_RECORD(usage, proto_usage)
PROTO_FUZZ_RECORD(group, proto_group)
PROTO_FUZZ_RECORD(customer, proto_customer)

static bool proto_fuzz_pub(const uint8_t *d, size_t len)
{
    char shard[PROTO_SHARD_MAX + 1], shard2[PROTO_SHARD_MAX + 1];
    proto_event e, e2;
    cg_err err = proto_pub_decode(d, len, shard, &e);
    if (err != CG_ERR_OK) {
        return proto_fuzz_err_ok(err);
    }
    msgpack_sbuffer a, b;
    msgpack_sbuffer_init(&a);
    msgpack_sbuffer_init(&b);
    bool ok = proto_pub_encode(shard, &e, &a) == CG_ERR_OK &&
              proto_pub_decode(a.data, a.size, shard2, &e2) == CG_ERR_OK &&
              proto_pub_encode(shard2, &e2, &b) == CG_ERR_OK && proto_fuzz_same(&a, &b);
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
    return ok;
}

/* Every decoder on the same bytes; false if any property fails. */
static bool proto_fuzz_check(const uint8_t *d, size_t len)
{
    return proto_fuzz_req(d, len) && proto_fuzz_rep(d, len) && proto_fuzz_org(d, len) &&
           proto_fuzz_key(d, len) && proto_fuzz_event(d, len) && proto_fuzz_usage(d, len) &&
           proto_fuzz_group(d, len) && proto_fuzz_customer(d, len) && proto_fuzz_pub(d, len);
}

#endif
