/*
 * proto_test_raw.h — helpers shared by the proto/ unit tests: a msgpack
 * builder for hand-made messages (msgpack-c's packer, independent of the
 * encoders under test) and decoders reduced to their error code. Internal to
 * the tests; static inline so each test uses what it needs.
 */
#ifndef PROTO_TEST_RAW_H
#define PROTO_TEST_RAW_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <msgpack.h>
#include "proto.h"

#define HASH_BYTES 32

/* ---- hand-built messages ---- */

typedef struct raw {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} raw;

static inline void raw_init(raw *r)
{
    msgpack_sbuffer_init(&r->sb);
    msgpack_packer_init(&r->pk, &r->sb, msgpack_sbuffer_write);
}

static inline void raw_fini(raw *r)
{
    msgpack_sbuffer_destroy(&r->sb);
}

static inline void raw_arr(raw *r, uint32_t n)
{
    msgpack_pack_array(&r->pk, n);
}

static inline void raw_u(raw *r, uint64_t v)
{
    msgpack_pack_uint64(&r->pk, v);
}

static inline void raw_i(raw *r, int64_t v)
{
    msgpack_pack_int64(&r->pk, v);
}

static inline void raw_bytes(raw *r, const void *b, size_t n)
{
    msgpack_sbuffer_write(&r->sb, b, n);
}

static inline void raw_str(raw *r, size_t len, char c)
{
    char buf[1024];
    memset(buf, c, sizeof(buf));
    msgpack_pack_str(&r->pk, len);
    msgpack_pack_str_body(&r->pk, buf, len);
}

/* [1, [ ... n ops follow ... ]] */
static inline void raw_batch(raw *r, uint32_t n)
{
    raw_arr(r, 2);
    raw_u(r, PROTO_VERSION);
    raw_arr(r, n);
}

/* [1, [id, name, anchor, 0, ...: the start of an org record of arity elements
 * (id and name of name_len bytes, revision-less head); the caller appends the
 * limits, webhooks, customer limits and on_low_budget. */
static inline void raw_org_start(raw *r, uint32_t arity, size_t name_len, uint64_t anchor)
{
    raw_arr(r, 2);
    raw_u(r, PROTO_VERSION);
    raw_arr(r, arity);
    raw_str(r, name_len, 'o');
    raw_str(r, name_len, 'n');
    raw_u(r, anchor);
    raw_i(r, 0);
}

/* ---- decode helpers: the error only, results freed ---- */

static inline cg_err dec_req(const void *b, size_t len)
{
    proto_req *q = NULL;
    uint32_t n = 0;
    cg_err err = proto_req_decode(b, len, &q, &n);
    if (err == CG_ERR_OK) {
        proto_req_free(q, n);
    }
    return err;
}

static inline cg_err dec_rep(const void *b, size_t len)
{
    proto_rep *p = NULL;
    uint32_t n = 0;
    cg_err err = proto_rep_decode(b, len, &p, &n);
    if (err == CG_ERR_OK) {
        proto_rep_free(p, n);
    }
    return err;
}

static inline cg_err dec_org(const void *b, size_t len)
{
    proto_org o;
    return proto_org_decode(b, len, &o);
}

static inline cg_err dec_raw_req(const raw *r)
{
    return dec_req(r->sb.data, r->sb.size);
}

static inline cg_err dec_raw_rep(const raw *r)
{
    return dec_rep(r->sb.data, r->sb.size);
}

static inline cg_err dec_raw_org(const raw *r)
{
    return dec_org(r->sb.data, r->sb.size);
}

static inline cg_err dec_key(const void *b, size_t len)
{
    proto_key k;
    return proto_key_decode(b, len, &k);
}

static inline cg_err dec_event(const void *b, size_t len)
{
    proto_event e;
    return proto_event_decode(b, len, &e);
}

static inline cg_err dec_usage(const void *b, size_t len)
{
    proto_usage u;
    return proto_usage_decode(b, len, &u);
}

static inline cg_err dec_pub(const void *b, size_t len)
{
    char shard[PROTO_SHARD_MAX + 1];
    proto_event e;
    return proto_pub_decode(b, len, shard, &e);
}

static inline cg_err dec_group(const void *b, size_t len)
{
    static proto_group g;
    return proto_group_decode(b, len, &g);
}

static inline cg_err dec_customer(const void *b, size_t len)
{
    static proto_customer c;
    return proto_customer_decode(b, len, &c);
}

#endif
