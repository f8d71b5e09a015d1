/*
 * ledger_defs.c — the ledger's definition operations (PUT/GET of orgs, keys,
 * groups and customer overrides, GET with limit state, DELETE) and its reads
 * over the shard's logs (USAGE_QUERY, EVENTS_SINCE).
 *
 * A PUT names its record in its route ("org:<id>", "key:<id>",
 * "group:<org>/<id>", "customer:<org>/<id>") and is refused (CG_ERR_INVAL)
 * when the route and the record's ids disagree or a limit is invalid, so a
 * record always lives on the shard that owns its scope. Customer limits (an
 * org's customer_defaults, a customer override) are stored with their
 * natural ids (proto_limit_natural_id), so replacing a default by an override
 * of the same metric and window keeps counting in the same counter.
 *
 * DELETE removes the definition only: its counters stay (a record put again
 * under the same id continues them) and reservations in flight still settle.
 *
 * LIST_KEYS (issue 5) pages through one org's keys on this shard by id.
 *
 * Revisions (issue 5, optimistic concurrency): every PUT of an org, key,
 * group or customer stores the record with the stored revision + 1 (1 when
 * there was none), whatever revision the request's record carries. A PUT with
 * expect_rev != 0 is refused with CG_ERR_CONFLICT, nothing written, unless
 * the stored record's revision equals expect_rev (no record: CG_ERR_NOTFOUND),
 * so a read-modify-write whose read went stale can start over instead of
 * overwriting a concurrent change.
 *
 * Everything here runs on the writer thread inside the batch transaction, so
 * every read is bounded: EVENTS_SINCE by PROTO_EVENTS_MAX events, USAGE_QUERY
 * by LEDGER_ROLLUP_SCAN_MAX hourly rollup rows for the whole UTC hours of its
 * range plus LEDGER_USAGE_SCAN_MAX raw usage records for each partial hour at
 * its ends (past either: CG_ERR_TOOBIG). The rollups (db_usage_hour, kept by
 * ls_usage_put in the settle's transaction) key every filter field, so the
 * answer is exactly the raw log's sum (docs/contracts.md "Usage rollups").
 */
#include <stdlib.h>
#include <string.h>

#include "cg_log.h"
#include "ledger_int.h"

/* ---- helpers ---- */

/* Whether route is exactly "<prefix><id>" for a non-empty record id. */
static int ls_route_is(const char *route, const char *prefix, const char *id)
{
    size_t pn = strlen(prefix);
    return strncmp(route, prefix, pn) == 0 && strcmp(route + pn, id) == 0 && id[0] != '\0';
}

/* Whether route is exactly "<prefix><org>/<id>" for non-empty ids free of '/'. */
static int ls_route_is2(const char *route, const char *prefix, const char *org, const char *id)
{
    size_t pn = strlen(prefix);
    size_t on = strlen(org);
    if (org[0] == '\0' || id[0] == '\0' || strchr(org, '/') != NULL || strchr(id, '/') != NULL) {
        return 0;
    }
    return strncmp(route, prefix, pn) == 0 && strncmp(route + pn, org, on) == 0 &&
           route[pn + on] == '/' && strcmp(route + pn + on + 1, id) == 0;
}

/* The record id after prefix, or NULL when route has another prefix. */
static const char *ls_route_id(const char *route, const char *prefix)
{
    size_t pn = strlen(prefix);
    return strncmp(route, prefix, pn) == 0 ? route + pn : NULL;
}

/* Billing anchor days of stored records: 1..28 (the wire's bound too). */
static int ls_anchor_ok(uint8_t day)
{
    return day >= 1 && day <= 28;
}

/* Customer limits are stored with natural ids: normalise a copy, then validate it. */
static cg_err ls_customer_limits_prepare(proto_limit *limits, uint8_t n)
{
    if (n > PROTO_LIMITS_MAX) {
        return CG_ERR_INVAL;
    }
    ls_limits_naturalize(limits, n);
    return ls_limits_validate(limits, n);
}

/*
 * The revision a PUT stores (*rev), from the lookup of the stored record (get_err, and cur_rev
 * when found): EXISTS for create_only when found, NOTFOUND / CONFLICT for an expect_rev the
 * stored record does not have, the lookup's error if it failed and the PUT had a condition.
 */
static cg_err ls_put_revision(cg_err get_err, uint64_t cur_rev, uint8_t create_only,
                              uint64_t expect_rev, uint64_t *rev)
{
    int found = get_err == CG_ERR_OK;
    if (!found && get_err != CG_ERR_NOTFOUND && (create_only || expect_rev != 0)) {
        return get_err; /* a plain PUT still replaces a record it cannot read, as before */
    }
    if (create_only && found) {
        return CG_ERR_EXISTS;
    }
    if (expect_rev != 0 && !found) {
        return CG_ERR_NOTFOUND;
    }
    if (expect_rev != 0 && cur_rev != expect_rev) {
        return CG_ERR_CONFLICT;
    }
    if (found && cur_rev == UINT64_MAX) {
        return CG_ERR_OVERFLOW;
    }
    *rev = found ? cur_rev + 1 : 1;
    return CG_ERR_OK;
}

/* ---- PUT ---- */

cg_err ls_op_put_org(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    proto_org o = req->u.put_org.org;
    proto_org old;
    (void)rep;
    if (!ls_route_is(req->route, "org:", o.id) || !ls_anchor_ok(o.billing_anchor_day) ||
        o.on_low_budget > PROTO_LOW_BUDGET_CLAMP ||
        ls_limits_validate(o.limits, o.limit_n) != CG_ERR_OK ||
        ls_customer_limits_prepare(o.customer_limits, o.customer_limit_n) != CG_ERR_OK) {
        return CG_ERR_INVAL;
    }
    cg_err err = ls_org_get(t, o.id, &old);
    err = ls_put_revision(err, err == CG_ERR_OK ? old.revision : 0, req->u.put_org.create_only,
                          req->u.put_org.expect_rev, &o.revision);
    if (err != CG_ERR_OK) {
        return err;
    }
    return ls_org_put(t, &o);
}

cg_err ls_op_put_key(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    proto_key kv = req->u.put_key.key;
    const proto_key *k = &kv;
    proto_key old;
    (void)rep;
    if (!ls_route_is(req->route, "key:", k->id) || !ls_anchor_ok(k->billing_anchor_day) ||
        k->on_low_budget > PROTO_LOW_BUDGET_CLAMP || k->max_tokens_per_request < 0 ||
        ls_limits_validate(k->limits, k->limit_n) != CG_ERR_OK) {
        return CG_ERR_INVAL;
    }
    cg_err err = ls_apikey_get(t, k->id, &old);
    err = ls_put_revision(err, err == CG_ERR_OK ? old.revision : 0, req->u.put_key.create_only,
                          req->u.put_key.expect_rev, &kv.revision);
    if (err != CG_ERR_OK) {
        return err;
    }
    return ls_apikey_put(t, k);
}

cg_err ls_op_put_group(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    proto_group gv = req->u.put_group.group;
    const proto_group *g = &gv;
    proto_group old;
    (void)rep;
    if (!ls_route_is2(req->route, "group:", g->org, g->id) ||
        !ls_anchor_ok(g->billing_anchor_day) ||
        ls_limits_validate(g->limits, g->limit_n) != CG_ERR_OK) {
        return CG_ERR_INVAL;
    }
    cg_err err = ls_group_get(t, ls_route_id(req->route, "group:"), &old);
    err = ls_put_revision(err, err == CG_ERR_OK ? old.revision : 0, req->u.put_group.create_only,
                          req->u.put_group.expect_rev, &gv.revision);
    if (err != CG_ERR_OK) {
        return err;
    }
    return ls_group_put(t, g);
}

cg_err ls_op_put_customer(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    proto_customer c = req->u.put_customer.customer;
    proto_customer old;
    cg_err err;
    (void)rep;
    if (!ls_route_is2(req->route, "customer:", c.org, c.id) ||
        ls_customer_limits_prepare(c.limits, c.limit_n) != CG_ERR_OK) {
        return CG_ERR_INVAL;
    }
    err = ls_customer_get(t, ls_route_id(req->route, "customer:"), &old);
    err = ls_put_revision(err, err == CG_ERR_OK ? old.revision : 0, 0,
                          req->u.put_customer.expect_rev, &c.revision);
    if (err != CG_ERR_OK) {
        return err;
    }
    return ls_customer_put(t, &c);
}

/* ---- GET ---- */

cg_err ls_op_get_org(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    const char *id = ls_route_id(req->route, "org:");
    return id == NULL ? CG_ERR_NOTFOUND : ls_org_get(t, id, &rep->u.get_org.org);
}

cg_err ls_op_get_org_state(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    const char *id = ls_route_id(req->route, "org:");
    ls_scope sc;
    cg_err err = id == NULL ? CG_ERR_NOTFOUND : ls_org_get(t, id, &rep->u.get_org_state.org);
    if (err == CG_ERR_OK) {
        err = ls_scope_load(t, req->route, NULL, &sc);
    }
    if (err == CG_ERR_OK) {
        err = ls_states_read(t, req->route, &sc, rep->u.get_org_state.states,
                             &rep->u.get_org_state.state_n);
    }
    return err;
}

cg_err ls_op_get_key(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    const char *id = ls_route_id(req->route, "key:");
    ls_scope sc;
    cg_err err = id == NULL ? CG_ERR_NOTFOUND : ls_apikey_get(t, id, &rep->u.get_key.key);
    if (err == CG_ERR_OK) {
        err = ls_scope_load(t, req->route, NULL, &sc);
    }
    if (err == CG_ERR_OK) {
        err = ls_states_read(t, req->route, &sc, rep->u.get_key.states, &rep->u.get_key.state_n);
    }
    return err;
}

cg_err ls_op_get_group(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    const char *id = ls_route_id(req->route, "group:");
    ls_scope sc;
    cg_err err = id == NULL ? CG_ERR_NOTFOUND : ls_group_get(t, id, &rep->u.get_group.group);
    if (err == CG_ERR_OK) {
        err = ls_scope_load(t, req->route, NULL, &sc);
    }
    if (err == CG_ERR_OK) {
        err =
            ls_states_read(t, req->route, &sc, rep->u.get_group.states, &rep->u.get_group.state_n);
    }
    return err;
}

/* OK whether or not an override exists: the state is of the effective (merged) limits. */
cg_err ls_op_get_customer(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    const char *id = ls_route_id(req->route, "customer:");
    const ls_defaults cd = {.anchor_day = req->u.get_customer.anchor_day,
                            .n = req->u.get_customer.inline_n,
                            .limits = req->u.get_customer.inline_limits};
    ls_scope sc;
    if (id == NULL) {
        return CG_ERR_NOTFOUND;
    }
    cg_err err = ls_scope_load(t, req->route, &cd, &sc);
    if (err != CG_ERR_OK) {
        return err;
    }
    err = ls_customer_get(t, id, &rep->u.get_customer.customer);
    if (err == CG_ERR_OK) {
        rep->u.get_customer.found = 1;
    } else if (err == CG_ERR_NOTFOUND) {
        memset(&rep->u.get_customer.customer, 0, sizeof(rep->u.get_customer.customer));
    } else {
        return err;
    }
    return ls_states_read(t, req->route, &sc, rep->u.get_customer.states,
                          &rep->u.get_customer.state_n);
}

/* ---- DELETE ---- */

cg_err ls_op_delete(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    static const struct {
        const char *prefix;
        size_t dbi_off;
    } kinds[] = {
        {"org:", offsetof(ledger_store, db_orgs)},
        {"key:", offsetof(ledger_store, db_keys)},
        {"group:", offsetof(ledger_store, db_groups)},
        {"customer:", offsetof(ledger_store, db_customers)},
    };
    MDB_val v;
    (void)rep;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        const char *id = ls_route_id(req->route, kinds[i].prefix);
        if (id == NULL) {
            continue;
        }
        MDB_dbi dbi = *(const MDB_dbi *)((const char *)t->s + kinds[i].dbi_off);
        cg_err err = id[0] == '\0' ? CG_ERR_NOTFOUND : ls_get(t, dbi, id, strlen(id), &v);
        if (err != CG_ERR_OK) {
            return err;
        }
        return ls_del(t, dbi, id, strlen(id));
    }
    return CG_ERR_NOTFOUND;
}

/* ---- LIST_KEYS ---- */

/*
 * The org's keys with id > after, ascending, at most limit of them. The keys
 * database is keyed by key id alone, so this walks every key after `after`
 * on the shard and keeps the org's: one page costs a scan of the shard's keys
 * past the cursor (admin traffic; an org index would make it proportional).
 */
cg_err ls_op_list_keys(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    const char *org = req->u.list_keys.org;
    const char *after = req->u.list_keys.after;
    uint32_t limit = req->u.list_keys.limit;
    MDB_cursor *cur = NULL;
    MDB_val key, val;
    cg_err err = CG_ERR_OK;
    proto_key *keys;
    proto_key k;
    uint32_t n = 0;
    int rc;

    if (org[0] == '\0' || limit == 0 || limit > PROTO_LIST_KEYS_MAX) {
        return CG_ERR_INVAL;
    }
    if ((keys = calloc(limit, sizeof(*keys))) == NULL) {
        return CG_ERR_NOMEM;
    }
    if ((rc = mdb_cursor_open(t->txn, t->s->db_keys, &cur)) != MDB_SUCCESS) {
        free(keys);
        return ls_lmdb_fail(t, rc, "cursor open");
    }
    key.mv_size = strlen(after);
    key.mv_data = (void *)after;
    rc = key.mv_size == 0 ? mdb_cursor_get(cur, &key, &val, MDB_FIRST)
                          : mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
    for (; rc == MDB_SUCCESS; rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (key.mv_size == strlen(after) && memcmp(key.mv_data, after, key.mv_size) == 0) {
            continue; /* strictly after the cursor */
        }
        if (proto_key_decode(val.mv_data, val.mv_size, &k) != CG_ERR_OK) {
            cg_log(CG_LOG_ERROR, "corrupt key record", NULL);
            err = CG_ERR_DB;
            break;
        }
        if (strcmp(k.org, org) != 0) {
            continue;
        }
        if (n == limit) {
            rep->u.list_keys.has_more = 1;
            break;
        }
        keys[n++] = k;
    }
    if (err == CG_ERR_OK && rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        err = ls_lmdb_fail(t, rc, "cursor get");
    }
    mdb_cursor_close(cur);
    if (err != CG_ERR_OK || n == 0) {
        free(keys);
        rep->u.list_keys.has_more = err == CG_ERR_OK ? rep->u.list_keys.has_more : 0;
        return err;
    }
    rep->u.list_keys.keys = keys;
    rep->u.list_keys.n = n;
    return CG_ERR_OK;
}

/* ---- USAGE_QUERY ---- */

void ls_usage_add(proto_usage_totals *tot, const proto_usage *u)
{
    tot->requests = ls_sat_add(tot->requests, 1);
    tot->prompt_tokens =
        ls_sat_add(tot->prompt_tokens, u->prompt_tokens > 0 ? u->prompt_tokens : 0);
    tot->completion_tokens =
        ls_sat_add(tot->completion_tokens, u->completion_tokens > 0 ? u->completion_tokens : 0);
    tot->cost_nusd = ls_sat_add(tot->cost_nusd, u->cost_nusd > 0 ? u->cost_nusd : 0);
}

static cg_err ls_usage_query_visit(void *ud, const proto_usage *u, const proto_usage_totals *tot)
{
    (void)u;
    ls_totals_add(ud, tot);
    return CG_ERR_OK;
}

/*
 * Totals of the matching records with from_ms <= ts < to_ms (to_ms 0: "now", no upper bound:
 * a record stamped in this very millisecond, or by a gateway whose clock runs a little ahead,
 * has happened by now and counts). Whole UTC hours come from the hourly rollups, the partial
 * hours at the ends from the raw log (ls_usage_totals_walk, ledger_usage.c).
 */
cg_err ls_op_usage_query(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    proto_usage_filter f;
    proto_usage_totals tot = {0};
    if (req->u.usage_query.org[0] == '\0') {
        return CG_ERR_INVAL;
    }
    memset(&f, 0, sizeof(f)); /* provider "": any */
    memcpy(f.org, req->u.usage_query.org, sizeof(f.org));
    memcpy(f.key_id, req->u.usage_query.key_id, sizeof(f.key_id));
    memcpy(f.group, req->u.usage_query.group, sizeof(f.group));
    memcpy(f.customer, req->u.usage_query.customer, sizeof(f.customer));
    memcpy(f.model, req->u.usage_query.model, sizeof(f.model));
    f.from_ms = req->u.usage_query.from_ms;
    f.to_ms = req->u.usage_query.to_ms;
    cg_err err = ls_usage_totals_walk(t, &f, ls_usage_query_visit, &tot);
    if (err != CG_ERR_OK) {
        return err;
    }
    rep->u.usage.totals = tot;
    return CG_ERR_OK;
}

/* ---- EVENTS_SINCE ---- */

static cg_err ls_events_read(ls_txn *t, uint64_t after, uint32_t max_n, proto_event *out,
                             uint32_t *n)
{
    MDB_cursor *cur = NULL;
    ls_key k;
    MDB_val key, val;
    cg_err err = CG_ERR_OK;
    int rc = mdb_cursor_open(t->txn, t->s->db_events, &cur);
    if (rc != MDB_SUCCESS) {
        return ls_lmdb_fail(t, rc, "cursor open");
    }
    ls_key_u64(&k, after + 1);
    key.mv_size = k.n;
    key.mv_data = k.b;
    *n = 0;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); rc == MDB_SUCCESS && *n < max_n;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (proto_event_decode(val.mv_data, val.mv_size, &out[*n]) != CG_ERR_OK) {
            cg_log(CG_LOG_ERROR, "corrupt event record", NULL);
            err = CG_ERR_DB;
            break;
        }
        (*n)++;
    }
    if (err == CG_ERR_OK && rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        err = ls_lmdb_fail(t, rc, "cursor get");
    }
    mdb_cursor_close(cur);
    return err;
}

cg_err ls_op_events_since(ls_txn *t, const proto_req *req, proto_rep *rep)
{
    uint64_t last = t->p.next_seq - 1;
    uint64_t after = req->u.events_since.after_seq;
    uint32_t max_n = req->u.events_since.max_n;
    if (max_n == 0 || max_n > PROTO_EVENTS_MAX) {
        max_n = PROTO_EVENTS_MAX;
    }
    rep->u.events.last_seq = last;
    if (after >= last) {
        return CG_ERR_OK;
    }
    if (last - after < max_n) {
        max_n = (uint32_t)(last - after);
    }
    proto_event *ev = calloc(max_n, sizeof(*ev));
    if (ev == NULL) {
        return CG_ERR_NOMEM;
    }
    uint32_t n = 0;
    cg_err err = ls_events_read(t, after, max_n, ev, &n);
    if (err != CG_ERR_OK || n == 0) {
        free(ev);
        return err;
    }
    rep->u.events.events = ev;
    rep->u.events.n = n;
    return CG_ERR_OK;
}
