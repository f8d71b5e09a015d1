/*
 * proto_wire.c — the msgpack primitives of the ledger protocol: a strict
 * cursor reader over untrusted bytes and a writer over msgpack-c's packer.
 *
 * Why a cursor reader instead of msgpack_unpack: msgpack-c's unpacker builds
 * an object tree and allocates each container for its declared element count
 * before reading the elements, so a 6-byte message can ask for 2^32 elements.
 * Our layouts are fixed positional arrays, so the decoder always knows which
 * type comes next; reading it straight from the bytes (a) needs no allocation
 * at all, (b) rejects a wrong type at the first byte that has it, (c) bounds
 * nesting depth by the schema rather than by the input, and (d) checks every
 * declared length against the bytes remaining before using it. Integers are
 * accepted in any msgpack integer format that holds the value (the packer
 * picks the shortest, peers may not); the range is checked per field.
 *
 * Invariants: see proto_wire.h.
 */
#include "proto_wire.h"

#include <assert.h>
#include <string.h>

/* msgpack format bytes used here (msgpack spec, "formats"). */
enum {
    MP_NIL = 0xc0,
    MP_FALSE = 0xc2,
    MP_TRUE = 0xc3,
    MP_BIN8 = 0xc4,
    MP_BIN16 = 0xc5,
    MP_BIN32 = 0xc6,
    MP_UINT8 = 0xcc,
    MP_UINT16 = 0xcd,
    MP_UINT32 = 0xce,
    MP_UINT64 = 0xcf,
    MP_INT8 = 0xd0,
    MP_INT16 = 0xd1,
    MP_INT32 = 0xd2,
    MP_INT64 = 0xd3,
    MP_STR8 = 0xd9,
    MP_STR16 = 0xda,
    MP_STR32 = 0xdb,
    MP_ARRAY16 = 0xdc,
    MP_ARRAY32 = 0xdd,
};

static size_t rd_left(const proto_rd *rd)
{
    return (size_t)(rd->end - rd->p);
}

/* Consume an n-byte big-endian unsigned integer (n <= 8). */
static cg_err rd_be(proto_rd *rd, size_t n, uint64_t *out)
{
    if (rd_left(rd) < n) {
        return CG_ERR_PROTO;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v = (v << 8) | rd->p[i];
    }
    rd->p += n;
    *out = v;
    return CG_ERR_OK;
}

static cg_err rd_tag(proto_rd *rd, uint8_t *tag)
{
    if (rd->p >= rd->end) {
        return CG_ERR_PROTO;
    }
    *tag = *rd->p++;
    return CG_ERR_OK;
}

void proto_rd_init(proto_rd *rd, const void *buf, size_t len)
{
    assert(buf != NULL || len == 0);
    rd->p = buf;
    /* NULL + 0 is undefined behaviour, so an empty input never touches the arithmetic. */
    rd->end = len == 0 ? rd->p : rd->p + len;
}

/*
 * Any msgpack integer. A non-negative value lands in *u with *neg = false,
 * a negative one in *s with *neg = true (signed formats holding a
 * non-negative value count as non-negative).
 */
static cg_err rd_int(proto_rd *rd, bool *neg, uint64_t *u, int64_t *s)
{
    uint8_t tag;
    uint64_t v;
    PROTO_TRY(rd_tag(rd, &tag));
    if (tag <= 0x7f || tag >= 0xe0) {
        *neg = tag >= 0xe0;
        *u = tag;
        *s = tag >= 0xe0 ? (int64_t)tag - 256 : (int64_t)tag;
        return CG_ERR_OK;
    }
    if (tag >= MP_UINT8 && tag <= MP_UINT64) {
        PROTO_TRY(rd_be(rd, (size_t)1 << (tag - MP_UINT8), &v));
        *neg = false;
        *u = v;
        return CG_ERR_OK;
    }
    if (tag >= MP_INT8 && tag <= MP_INT64) {
        size_t n = (size_t)1 << (tag - MP_INT8);
        PROTO_TRY(rd_be(rd, n, &v));
        /* Sign-extend the n-byte two's complement value, then map it to int64 without an
         * implementation-defined conversion. */
        uint64_t x = v;
        if (n < 8 && (v >> (n * 8 - 1)) != 0) {
            x = v | ~((UINT64_C(1) << (n * 8)) - 1);
        }
        int64_t sv = x > (uint64_t)INT64_MAX ? -(int64_t)(~x) - 1 : (int64_t)x;
        *neg = sv < 0;
        *u = (uint64_t)sv;
        *s = sv;
        return CG_ERR_OK;
    }
    return CG_ERR_PROTO;
}

cg_err proto_rd_u64(proto_rd *rd, uint64_t max, uint64_t *out)
{
    bool neg;
    uint64_t u = 0;
    int64_t s = 0;
    PROTO_TRY(rd_int(rd, &neg, &u, &s));
    if (neg || u > max) {
        return CG_ERR_PROTO;
    }
    *out = u;
    return CG_ERR_OK;
}

cg_err proto_rd_u32(proto_rd *rd, uint32_t max, uint32_t *out)
{
    uint64_t v;
    PROTO_TRY(proto_rd_u64(rd, max, &v));
    *out = (uint32_t)v;
    return CG_ERR_OK;
}

cg_err proto_rd_u16(proto_rd *rd, uint16_t max, uint16_t *out)
{
    uint64_t v;
    PROTO_TRY(proto_rd_u64(rd, max, &v));
    *out = (uint16_t)v;
    return CG_ERR_OK;
}

cg_err proto_rd_u8(proto_rd *rd, uint8_t max, uint8_t *out)
{
    uint64_t v;
    PROTO_TRY(proto_rd_u64(rd, max, &v));
    *out = (uint8_t)v;
    return CG_ERR_OK;
}

cg_err proto_rd_i64(proto_rd *rd, int64_t *out)
{
    bool neg;
    uint64_t u = 0;
    int64_t s = 0;
    PROTO_TRY(rd_int(rd, &neg, &u, &s));
    if (neg) {
        *out = s;
        return CG_ERR_OK;
    }
    if (u > (uint64_t)INT64_MAX) {
        return CG_ERR_PROTO;
    }
    *out = (int64_t)u;
    return CG_ERR_OK;
}

cg_err proto_rd_i32(proto_rd *rd, int32_t *out)
{
    int64_t v;
    PROTO_TRY(proto_rd_i64(rd, &v));
    if (v < INT32_MIN || v > INT32_MAX) {
        return CG_ERR_PROTO;
    }
    *out = (int32_t)v;
    return CG_ERR_OK;
}

cg_err proto_rd_bool(proto_rd *rd, uint8_t *out)
{
    uint8_t tag;
    PROTO_TRY(rd_tag(rd, &tag));
    if (tag != MP_FALSE && tag != MP_TRUE) {
        return CG_ERR_PROTO;
    }
    *out = tag == MP_TRUE;
    return CG_ERR_OK;
}

bool proto_rd_nil(proto_rd *rd)
{
    if (rd->p < rd->end && *rd->p == MP_NIL) {
        rd->p++;
        return true;
    }
    return false;
}

cg_err proto_rd_array(proto_rd *rd, uint32_t max, uint32_t *n)
{
    uint8_t tag;
    uint64_t v;
    PROTO_TRY(rd_tag(rd, &tag));
    if (tag >= 0x90 && tag <= 0x9f) {
        v = tag & 0x0fu;
    } else if (tag == MP_ARRAY16 || tag == MP_ARRAY32) {
        PROTO_TRY(rd_be(rd, tag == MP_ARRAY16 ? 2 : 4, &v));
    } else {
        return CG_ERR_PROTO;
    }
    /* Every element takes at least one byte: a count beyond that is a lie. */
    if (v > max || v > rd_left(rd)) {
        return CG_ERR_PROTO;
    }
    *n = (uint32_t)v;
    return CG_ERR_OK;
}

cg_err proto_rd_array_n(proto_rd *rd, uint32_t n)
{
    uint32_t got;
    PROTO_TRY(proto_rd_array(rd, n, &got));
    return got == n ? CG_ERR_OK : CG_ERR_PROTO;
}

cg_err proto_rd_header(proto_rd *rd, uint32_t arity)
{
    uint32_t n;
    uint64_t version;
    PROTO_TRY(proto_rd_array(rd, UINT32_MAX, &n));
    if (n < 1) {
        return CG_ERR_PROTO;
    }
    bool neg;
    uint64_t u = 0;
    int64_t s = 0;
    PROTO_TRY(rd_int(rd, &neg, &u, &s));
    version = neg ? 0 : u;
    if (version != PROTO_VERSION) {
        return CG_ERR_VERSION;
    }
    return n == arity ? CG_ERR_OK : CG_ERR_PROTO;
}

/* A str or bin header: its byte length, checked against the bytes remaining. */
static cg_err rd_raw_len(proto_rd *rd, bool bin, size_t *len)
{
    uint8_t tag;
    uint64_t v;
    PROTO_TRY(rd_tag(rd, &tag));
    if (!bin && tag >= 0xa0 && tag <= 0xbf) {
        v = tag & 0x1fu;
    } else if (!bin && tag >= MP_STR8 && tag <= MP_STR32) {
        PROTO_TRY(rd_be(rd, (size_t)1 << (tag - MP_STR8), &v));
    } else if (bin && tag >= MP_BIN8 && tag <= MP_BIN32) {
        PROTO_TRY(rd_be(rd, (size_t)1 << (tag - MP_BIN8), &v));
    } else {
        return CG_ERR_PROTO;
    }
    if (v > rd_left(rd)) {
        return CG_ERR_PROTO;
    }
    *len = (size_t)v;
    return CG_ERR_OK;
}

cg_err proto_rd_str(proto_rd *rd, char *dst, size_t max)
{
    size_t len;
    PROTO_TRY(rd_raw_len(rd, false, &len));
    if (len > max || memchr(rd->p, '\0', len) != NULL) {
        return CG_ERR_PROTO;
    }
    memcpy(dst, rd->p, len);
    dst[len] = '\0';
    rd->p += len;
    return CG_ERR_OK;
}

cg_err proto_rd_bin(proto_rd *rd, uint8_t *dst, size_t len)
{
    size_t got;
    PROTO_TRY(rd_raw_len(rd, true, &got));
    if (got != len) {
        return CG_ERR_PROTO;
    }
    memcpy(dst, rd->p, len);
    rd->p += len;
    return CG_ERR_OK;
}

cg_err proto_rd_end(const proto_rd *rd)
{
    return rd->p == rd->end ? CG_ERR_OK : CG_ERR_PROTO;
}

/* ---- writer ---- */

void proto_wr_init(proto_wr *w, msgpack_sbuffer *sb)
{
    assert(sb != NULL);
    msgpack_packer_init(&w->pk, sb, msgpack_sbuffer_write);
    w->sb = sb;
    w->start = sb->size;
    w->failed = false;
}

/* Latch a packer failure (msgpack-c returns non-zero when the sbuffer cannot grow). */
static void wr_check(proto_wr *w, int rc)
{
    if (rc != 0) {
        w->failed = true;
    }
}

void proto_wr_array(proto_wr *w, uint32_t n)
{
    if (!w->failed) {
        wr_check(w, msgpack_pack_array(&w->pk, n));
    }
}

void proto_wr_u64(proto_wr *w, uint64_t v)
{
    if (!w->failed) {
        wr_check(w, msgpack_pack_uint64(&w->pk, v));
    }
}

void proto_wr_i64(proto_wr *w, int64_t v)
{
    if (!w->failed) {
        wr_check(w, msgpack_pack_int64(&w->pk, v));
    }
}

void proto_wr_bool(proto_wr *w, bool v)
{
    if (!w->failed) {
        wr_check(w, v ? msgpack_pack_true(&w->pk) : msgpack_pack_false(&w->pk));
    }
}

void proto_wr_nil(proto_wr *w)
{
    if (!w->failed) {
        wr_check(w, msgpack_pack_nil(&w->pk));
    }
}

void proto_wr_str(proto_wr *w, const char *s, size_t max)
{
    size_t len = strnlen(s, max + 1);
    assert(len <= max && "string over its field bound");
    if (!w->failed) {
        wr_check(w, msgpack_pack_str(&w->pk, len));
    }
    if (!w->failed && len > 0) {
        wr_check(w, msgpack_pack_str_body(&w->pk, s, len));
    }
}

void proto_wr_bin(proto_wr *w, const uint8_t *b, size_t len)
{
    if (!w->failed) {
        wr_check(w, msgpack_pack_bin(&w->pk, len));
    }
    if (!w->failed && len > 0) {
        wr_check(w, msgpack_pack_bin_body(&w->pk, b, len));
    }
}

cg_err proto_wr_finish(proto_wr *w)
{
    if (w->failed) {
        w->sb->size = w->start;
        return CG_ERR_NOMEM;
    }
    return CG_ERR_OK;
}
