/*
 * cg_err.c — names, messages and library-code translation for cg_err.
 *
 * The tables are generated from CG_ERR_MAP, so a new code needs no edit here.
 * Each library's codes (errno, LMDB, NNG) are folded in by meaning in exactly
 * one function; callers keep and log the original code next to the cg_err.
 */
#include "cg_err.h"

#include <errno.h>
#include <lmdb.h>
#include <nng/nng.h>

static const char *const cg_err_names_[] = {
#define CG_ERR_NAME_(name, val, msg) [val] = #name,
    CG_ERR_MAP(CG_ERR_NAME_)
#undef CG_ERR_NAME_
};

static const char *const cg_err_msgs_[] = {
#define CG_ERR_MSG_(name, val, msg) [val] = msg,
    CG_ERR_MAP(CG_ERR_MSG_)
#undef CG_ERR_MSG_
};

const char *cg_err_name(int err)
{
    if (err < 0 || err >= CG_ERR_COUNT_ || cg_err_names_[err] == NULL) {
        return "UNKNOWN";
    }
    return cg_err_names_[err];
}

const char *cg_err_msg(int err)
{
    if (err < 0 || err >= CG_ERR_COUNT_ || cg_err_msgs_[err] == NULL) {
        return "unknown error";
    }
    return cg_err_msgs_[err];
}

cg_err cg_err_from_errno(int e)
{
    switch (e) {
    case 0:
        return CG_ERR_OK;
    case ENOMEM:
        return CG_ERR_NOMEM;
    case EINVAL:
        return CG_ERR_INVAL;
    case ERANGE:
        return CG_ERR_RANGE;
    case EOVERFLOW:
        return CG_ERR_OVERFLOW;
    case E2BIG:
    case EFBIG:
    case EMSGSIZE:
    case ENAMETOOLONG:
        return CG_ERR_TOOBIG;
    case ENOENT:
        return CG_ERR_NOTFOUND;
    case EEXIST:
        return CG_ERR_EXISTS;
    case ETIMEDOUT:
        return CG_ERR_TIMEOUT;
    case EACCES:
    case EPERM:
        return CG_ERR_UNAUTHORIZED;
    case ECONNREFUSED:
    case ECONNRESET:
    case ECONNABORTED:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case ENETDOWN:
    case EPIPE:
    case EAGAIN:
        return CG_ERR_UNAVAILABLE;
    case ECANCELED:
        return CG_ERR_SHUTDOWN;
    default:
        return CG_ERR_IO;
    }
}

cg_err cg_err_from_lmdb(int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return CG_ERR_OK;
    case MDB_NOTFOUND:
        return CG_ERR_NOTFOUND;
    case MDB_KEYEXIST:
        return CG_ERR_EXISTS;
    case MDB_MAP_FULL:
        return CG_ERR_MAP_FULL;
    case ENOMEM:
        return CG_ERR_NOMEM;
    case EIO:
    case ENOSPC:
    case EACCES:
    case ENOENT:
        return CG_ERR_IO;
    default:
        return CG_ERR_DB;
    }
}

cg_err cg_err_from_nng(int rc)
{
    if (rc == 0) {
        return CG_ERR_OK;
    }
    if (rc & NNG_ESYSERR) {
        return cg_err_from_errno(rc & ~NNG_ESYSERR);
    }
    if (rc & NNG_ETRANERR) {
        return CG_ERR_UNAVAILABLE;
    }
    switch (rc) {
    case NNG_ETIMEDOUT:
        return CG_ERR_TIMEOUT;
    case NNG_ECONNREFUSED:
    case NNG_ECLOSED:
    case NNG_ECONNSHUT:
    case NNG_EUNREACHABLE:
    case NNG_ECONNABORTED:
    case NNG_ECONNRESET:
    case NNG_EAGAIN:
    case NNG_EBUSY:
        return CG_ERR_UNAVAILABLE;
    case NNG_ENOMEM:
    case NNG_ENOFILES:
        return CG_ERR_NOMEM;
    case NNG_ECANCELED:
    case NNG_EINTR:
        return CG_ERR_SHUTDOWN;
    case NNG_EINVAL:
    case NNG_EADDRINVAL:
    case NNG_ENOARG:
    case NNG_EAMBIGUOUS:
    case NNG_EBADTYPE:
    case NNG_ENOTSUP:
        return CG_ERR_INVAL;
    case NNG_EMSGSIZE:
        return CG_ERR_TOOBIG;
    case NNG_EPROTO:
        return CG_ERR_PROTO;
    case NNG_ENOENT:
        return CG_ERR_NOTFOUND;
    case NNG_EEXIST:
    case NNG_EADDRINUSE:
        return CG_ERR_EXISTS;
    case NNG_EPERM:
    case NNG_ECRYPTO:
    case NNG_EPEERAUTH:
        return CG_ERR_UNAUTHORIZED;
    case NNG_ENOSPC:
        return CG_ERR_IO;
    default:
        return CG_ERR_INTERNAL;
    }
}
