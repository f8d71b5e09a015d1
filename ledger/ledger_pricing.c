/*
 * ledger_pricing.c — pricing overrides on their shard (issue 5): PUT_PRICING
 * stores one model's override on the shard owning "pricing:<model>",
 * LIST_PRICING returns every override this shard holds.
 *
 * Overrides live in the meta database under "pricing:<model>" (the same
 * string as the route), so no new LMDB database and no schema change is
 * needed; the meta database's other keys ("schema", "last_seq") never start
 * with that prefix. Runs on the writer thread inside the batch transaction.
 */
#include <stdlib.h>
#include <string.h>

#include "cg_log.h"
#include "ledger_int.h"

static const char ls_pricing_prefix[] = "pricing:";
#define LS_PRICING_PREFIX_LEN (sizeof(ls_pricing_prefix) - 1)

cg_err ls_op_put_pricing(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    proto_pricing p = req->u.put_pricing.pricing;
    (void)rep;
    if (strncmp(req->route, ls_pricing_prefix, LS_PRICING_PREFIX_LEN) != 0 ||
        strcmp(req->route + LS_PRICING_PREFIX_LEN, p.model) != 0 || p.model[0] == '\0' ||
        p.input_nusd_per_mtok < 0 || p.output_nusd_per_mtok < 0) {
        return CG_ERR_INVAL;
    }
    p.updated_ms = t->now_ms;
    msgpack_sbuffer_clear(&t->s->sbuf);
    cg_err err = proto_pricing_encode(&p, &t->s->sbuf);
    if (err != CG_ERR_OK) {
        return err;
    }
    return ls_put(t, t->s->db_meta, req->route, strlen(req->route), t->s->sbuf.data,
                  t->s->sbuf.size);
}

cg_err ls_op_list_pricing(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    MDB_cursor *cur = NULL;
    MDB_val key, val;
    proto_pricing *items;
    uint32_t n = 0;
    cg_err err = CG_ERR_OK;
    int rc;
    (void)req;

    if ((items = calloc(PROTO_PRICING_MAX, sizeof(*items))) == NULL) {
        return CG_ERR_NOMEM;
    }
    if ((rc = mdb_cursor_open(t->txn, t->s->db_meta, &cur)) != MDB_SUCCESS) {
        free(items);
        return ls_lmdb_fail(t, rc, "cursor open");
    }
    key.mv_size = LS_PRICING_PREFIX_LEN;
    key.mv_data = (void *)ls_pricing_prefix;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (key.mv_size < LS_PRICING_PREFIX_LEN ||
            memcmp(key.mv_data, ls_pricing_prefix, LS_PRICING_PREFIX_LEN) != 0) {
            break;
        }
        if (n == PROTO_PRICING_MAX) {
            cg_log(CG_LOG_WARN, "pricing overrides beyond the list bound ignored", NULL);
            break;
        }
        if (proto_pricing_decode(val.mv_data, val.mv_size, &items[n]) != CG_ERR_OK) {
            cg_log(CG_LOG_ERROR, "corrupt pricing record", NULL);
            err = CG_ERR_DB;
            break;
        }
        n++;
    }
    if (err == CG_ERR_OK && rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        err = ls_lmdb_fail(t, rc, "cursor get");
    }
    mdb_cursor_close(cur);
    if (err != CG_ERR_OK || n == 0) {
        free(items);
        return err;
    }
    rep->u.list_pricing.items = items;
    rep->u.list_pricing.n = n;
    return CG_ERR_OK;
}
