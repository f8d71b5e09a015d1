/*
 * cg_err.h — the one error enum of capgate.
 *
 * Every fallible function in the project returns a cg_err. The X-macro below
 * generates the enum, its stable names (used in logs and on the wire) and
 * human messages. Codes from libraries (errno, LMDB, NNG, curl) are folded in
 * here, in exactly one place each; callers log the original code next to it.
 * Values are part of the ledger wire protocol: append only, never renumber.
 */
#ifndef CG_ERR_H
#define CG_ERR_H

#define CG_ERR_MAP(X)                                         \
    X(OK, 0, "ok")                                            \
    X(NOMEM, 1, "out of memory")                              \
    X(INVAL, 2, "invalid argument")                           \
    X(RANGE, 3, "value out of range")                         \
    X(OVERFLOW, 4, "arithmetic overflow")                     \
    X(PARSE, 5, "parse error")                                \
    X(TOOBIG, 6, "too large")                                 \
    X(IO, 7, "i/o error")                                     \
    X(NOTFOUND, 8, "not found")                               \
    X(EXISTS, 9, "already exists")                            \
    X(CONFLICT, 10, "conflict")                               \
    X(WRONG_SHARD, 11, "routing key not owned by this shard") \
    X(BUDGET, 12, "budget exceeded")                          \
    X(UNAUTHORIZED, 13, "unauthorized")                       \
    X(TIMEOUT, 14, "timed out")                               \
    X(UNAVAILABLE, 15, "unavailable")                         \
    X(PROTO, 16, "malformed protocol message")                \
    X(VERSION, 17, "unsupported protocol version")            \
    X(DB, 18, "database error")                               \
    X(MAP_FULL, 19, "database map full")                      \
    X(INTERNAL, 20, "internal error")                         \
    X(SHUTDOWN, 21, "shutting down")                          \
    X(RATE, 22, "rate limit exceeded")

typedef enum cg_err {
#define CG_ERR_ENUM_(name, val, msg) CG_ERR_##name = val,
    CG_ERR_MAP(CG_ERR_ENUM_)
#undef CG_ERR_ENUM_
        CG_ERR_COUNT_
} cg_err;

/* Stable upper-case name without prefix ("WRONG_SHARD"); "UNKNOWN" if out of range. */
const char *cg_err_name(int err);
/* Human message ("routing key not owned by this shard"). */
const char *cg_err_msg(int err);

/* Library code translation: each library is mapped here and nowhere else. */
cg_err cg_err_from_errno(int e);
cg_err cg_err_from_lmdb(int rc);
cg_err cg_err_from_nng(int rc);

#endif
