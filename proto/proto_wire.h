/*
 * proto_wire.h — internal to proto/: the strict msgpack cursor reader, the
 * failure-latching writer, and the record codecs shared by proto.c and
 * proto_rec.c. Nothing outside proto/ includes this file.
 *
 * Reader invariants: rd->p never passes rd->end; every length read from the
 * wire is checked against the bytes remaining before it is used, so a hostile
 * length can neither over-read nor cause an allocation larger than the input;
 * on error the cursor position is unspecified and the caller abandons it.
 * Every reader function returns CG_ERR_OK or CG_ERR_PROTO (proto_rd_header
 * also CG_ERR_VERSION).
 *
 * Writer invariants: the first failed append latches w->failed and makes the
 * rest no-ops; proto_wr_finish then truncates the buffer back to its size at
 * proto_wr_init, so an encoder either appends a whole message or nothing.
 */
#ifndef PROTO_WIRE_H
#define PROTO_WIRE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>
#include "proto.h"

/* Propagate a non-OK cg_err to the caller. */
#define PROTO_TRY(expr)                  \
    do {                                 \
        cg_err proto_try_e_ = (expr);    \
        if (proto_try_e_ != CG_ERR_OK) { \
            return proto_try_e_;         \
        }                                \
    } while (0)

/* Largest warn_at threshold in basis points (100%). */
#define PROTO_BP_MAX 10000u
/* Billing anchor days accepted (SPEC §3: day 1..28 exists in every month). */
#define PROTO_ANCHOR_MIN 1u
#define PROTO_ANCHOR_MAX 28u

typedef struct proto_rd {
    const uint8_t *p;   /* next unread byte */
    const uint8_t *end; /* one past the last byte */
} proto_rd;

typedef struct proto_wr {
    msgpack_packer pk;
    msgpack_sbuffer *sb;
    size_t start; /* sb->size at init: the rollback point */
    bool failed;
} proto_wr;

/* ---- reader (proto_wire.c) ---- */
void proto_rd_init(proto_rd *rd, const void *buf, size_t len);
/* Top-level [version, ...] of exactly `arity` elements: CG_ERR_VERSION if the first element is
 * an integer other than PROTO_VERSION (checked before the arity, so a future layout still reads
 * as a version mismatch). */
cg_err proto_rd_header(proto_rd *rd, uint32_t arity);
/* An array header of 0..max elements (max <= bytes remaining is also enforced). */
cg_err proto_rd_array(proto_rd *rd, uint32_t max, uint32_t *n);
/* An array header of exactly n elements. */
cg_err proto_rd_array_n(proto_rd *rd, uint32_t n);
cg_err proto_rd_u64(proto_rd *rd, uint64_t max, uint64_t *out);
cg_err proto_rd_u32(proto_rd *rd, uint32_t max, uint32_t *out);
cg_err proto_rd_u16(proto_rd *rd, uint16_t max, uint16_t *out);
cg_err proto_rd_u8(proto_rd *rd, uint8_t max, uint8_t *out);
cg_err proto_rd_i64(proto_rd *rd, int64_t *out);
cg_err proto_rd_i32(proto_rd *rd, int32_t *out);
/* A msgpack bool into 0/1. */
cg_err proto_rd_bool(proto_rd *rd, uint8_t *out);
/* A str of at most max bytes without NUL bytes, copied into dst[max + 1] NUL-terminated. */
cg_err proto_rd_str(proto_rd *rd, char *dst, size_t max);
/* A bin of exactly len bytes into dst. */
cg_err proto_rd_bin(proto_rd *rd, uint8_t *dst, size_t len);
/* If the next value is nil, consume it and return true. */
bool proto_rd_nil(proto_rd *rd);
/* CG_ERR_PROTO if any byte is left. */
cg_err proto_rd_end(const proto_rd *rd);

/* ---- writer (proto_wire.c) ---- */
void proto_wr_init(proto_wr *w, msgpack_sbuffer *sb);
void proto_wr_array(proto_wr *w, uint32_t n);
void proto_wr_u64(proto_wr *w, uint64_t v);
void proto_wr_i64(proto_wr *w, int64_t v);
void proto_wr_bool(proto_wr *w, bool v);
void proto_wr_nil(proto_wr *w);
/* Asserts that s is NUL-terminated within max + 1 bytes. */
void proto_wr_str(proto_wr *w, const char *s, size_t max);
void proto_wr_bin(proto_wr *w, const uint8_t *b, size_t len);
/* CG_ERR_OK, or CG_ERR_NOMEM after rolling the buffer back to its size at init. */
cg_err proto_wr_finish(proto_wr *w);

/* ---- record codecs (proto_rec.c) ----
 * Each writer asserts the record is valid (the same check the reader applies after
 * decoding), so whatever an encoder accepts its decoder accepts too. */
bool proto_window_ok(cg_window w);
void proto_wr_amounts(proto_wr *w, const proto_amounts *a);
cg_err proto_rd_amounts(proto_rd *rd, proto_amounts *a);
void proto_wr_org(proto_wr *w, const proto_org *o);
cg_err proto_rd_org(proto_rd *rd, proto_org *o);
void proto_wr_key(proto_wr *w, const proto_key *k);
cg_err proto_rd_key(proto_rd *rd, proto_key *k);
void proto_wr_group(proto_wr *w, const proto_group *g);
cg_err proto_rd_group(proto_rd *rd, proto_group *g);
void proto_wr_customer(proto_wr *w, const proto_customer *c);
cg_err proto_rd_customer(proto_rd *rd, proto_customer *c);
/* Inline customer defaults (reserve, get_customer): two elements, anchor_day and
 * [limit, ...] with natural ids; anchor_day is 0 when n == 0, else 1..28. */
void proto_wr_inline(proto_wr *w, uint8_t anchor_day, const proto_limit *ls, uint8_t n);
cg_err proto_rd_inline(proto_rd *rd, uint8_t *anchor_day, proto_limit *ls, uint8_t *n);
void proto_wr_usage(proto_wr *w, const proto_usage *u);
cg_err proto_rd_usage(proto_rd *rd, proto_usage *u);
void proto_wr_event(proto_wr *w, const proto_event *e);
cg_err proto_rd_event(proto_rd *rd, proto_event *e);
/* Limit states: an array of n (<= PROTO_LIMITS_MAX) states (layout in proto.c). */
void proto_wr_states(proto_wr *w, const proto_limit_state *s, uint8_t n);
cg_err proto_rd_states(proto_rd *rd, proto_limit_state *s, uint8_t *n);
void proto_wr_refusal(proto_wr *w, const proto_refusal *r);
cg_err proto_rd_refusal(proto_rd *rd, proto_refusal *r);
void proto_wr_totals(proto_wr *w, const proto_usage_totals *t);
cg_err proto_rd_totals(proto_rd *rd, proto_usage_totals *t);

#endif
