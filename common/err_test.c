/*
 * err_test.c — error names and messages, and the library-code translations.
 */
#include <errno.h>
#include <lmdb.h>
#include <nng/nng.h>

#include "cg_err.h"
#include "cg_test.h"

CG_TEST(err_names)
{
    CG_CHECK_EQ_STR(cg_err_name(CG_ERR_OK), "OK");
    CG_CHECK_EQ_STR(cg_err_name(CG_ERR_WRONG_SHARD), "WRONG_SHARD");
    CG_CHECK_EQ_STR(cg_err_name(CG_ERR_RATE), "RATE");
    CG_CHECK_EQ_STR(cg_err_msg(CG_ERR_WRONG_SHARD), "routing key not owned by this shard");
    CG_CHECK_EQ_STR(cg_err_name(-1), "UNKNOWN");
    CG_CHECK_EQ_STR(cg_err_name(CG_ERR_COUNT_), "UNKNOWN");
    CG_CHECK(cg_err_msg(1000) != NULL);
    for (int e = 0; e < CG_ERR_COUNT_; e++) {
        CG_CHECK(cg_err_name(e) != NULL && cg_err_msg(e) != NULL);
    }
}

CG_TEST(err_translate)
{
    CG_CHECK_EQ_INT(cg_err_from_errno(0), CG_ERR_OK);
    CG_CHECK_EQ_INT(cg_err_from_errno(ENOMEM), CG_ERR_NOMEM);
    CG_CHECK_EQ_INT(cg_err_from_errno(ETIMEDOUT), CG_ERR_TIMEOUT);
    CG_CHECK_EQ_INT(cg_err_from_errno(EIO), CG_ERR_IO);
    CG_CHECK_EQ_INT(cg_err_from_lmdb(MDB_SUCCESS), CG_ERR_OK);
    CG_CHECK_EQ_INT(cg_err_from_lmdb(MDB_NOTFOUND), CG_ERR_NOTFOUND);
    CG_CHECK_EQ_INT(cg_err_from_lmdb(MDB_KEYEXIST), CG_ERR_EXISTS);
    CG_CHECK_EQ_INT(cg_err_from_lmdb(MDB_MAP_FULL), CG_ERR_MAP_FULL);
    CG_CHECK_EQ_INT(cg_err_from_lmdb(MDB_CORRUPTED), CG_ERR_DB);
    CG_CHECK_EQ_INT(cg_err_from_nng(0), CG_ERR_OK);
    CG_CHECK_EQ_INT(cg_err_from_nng(NNG_ETIMEDOUT), CG_ERR_TIMEOUT);
    CG_CHECK_EQ_INT(cg_err_from_nng(NNG_ECONNREFUSED), CG_ERR_UNAVAILABLE);
    CG_CHECK_EQ_INT(cg_err_from_nng(NNG_ECLOSED), CG_ERR_UNAVAILABLE);
    CG_CHECK_EQ_INT(cg_err_from_nng(NNG_ECONNSHUT), CG_ERR_UNAVAILABLE);
    CG_CHECK_EQ_INT(cg_err_from_nng(NNG_EUNREACHABLE), CG_ERR_UNAVAILABLE);
    CG_CHECK_EQ_INT(cg_err_from_nng(NNG_ENOMEM), CG_ERR_NOMEM);
    CG_CHECK_EQ_INT(cg_err_from_nng(NNG_ECANCELED), CG_ERR_SHUTDOWN);
    CG_CHECK_EQ_INT(cg_err_from_nng(NNG_EMSGSIZE), CG_ERR_TOOBIG);
    CG_CHECK_EQ_INT(cg_err_from_nng(NNG_ESYSERR | ENOMEM), CG_ERR_NOMEM);
    CG_CHECK_EQ_INT(cg_err_from_nng(NNG_ETRANERR | 5), CG_ERR_UNAVAILABLE);
}

int main(void)
{
    return CG_TEST_RUN(err_names, err_translate);
}
