/*
 * ledger_rev_test.c — record revisions (issue 5, optimistic concurrency):
 * every PUT of an org, key, group or customer stores the stored revision + 1;
 * a PUT whose expect_rev is stale is refused with CG_ERR_CONFLICT and leaves
 * the record unchanged; records and PUTs without a revision keep their old
 * wire layout (and old records read as revision 0).
 */
#include <stdio.h>
#include <string.h>

#include "cg_log.h"
#include "cg_test.h"
#include "ledger_store.h"
#include "ledger_test_fx.h"

#define MAP_BYTES (64u << 20)

static proto_key get_key(fx *f, const char *id, int *status)
{
    proto_req r;
    proto_rep rep;
    char route[PROTO_ROUTE_MAX + 1];
    snprintf(route, sizeof(route), "key:%s", id);
    r = simple_req(PROTO_OP_GET_KEY, route, NULL);
    *status = apply1(f, &r, &rep);
    return rep.u.get_key.key;
}

/* A PUT_KEY of k (route from its id) with expect_rev. */
static int put_key_rev(fx *f, const proto_key *k, uint64_t expect_rev)
{
    proto_req r;
    proto_rep rep;
    memset(&r, 0, sizeof(r));
    r.op = PROTO_OP_PUT_KEY;
    snprintf(r.route, sizeof(r.route), "key:%s", k->id);
    r.u.put_key.key = *k;
    r.u.put_key.expect_rev = expect_rev;
    return apply1(f, &r, &rep);
}

CG_TEST(key_stale_revision_refused_record_unchanged)
{
    fx f;
    int st;
    CG_CHECK(fx_init(&f, MAP_BYTES) == 0);
    CG_CHECK_EQ_INT(put_key(&f, "k_1", NULL, 0), CG_ERR_OK);
    proto_key k = get_key(&f, "k_1", &st);
    CG_CHECK_EQ_INT(st, CG_ERR_OK);
    CG_CHECK_EQ_INT((int)k.revision, 1);

    /* Two writers read revision 1; the first PUT wins and bumps it. */
    proto_key a = k, b = k;
    snprintf(a.name, sizeof(a.name), "renamed by a");
    b.hash[0] ^= 0xff; /* b "rotates" from the stale read */
    CG_CHECK_EQ_INT(put_key_rev(&f, &a, 1), CG_ERR_OK);
    CG_CHECK_EQ_INT(put_key_rev(&f, &b, 1), CG_ERR_CONFLICT);
    proto_key now = get_key(&f, "k_1", &st);
    CG_CHECK_EQ_INT(st, CG_ERR_OK);
    CG_CHECK_EQ_INT((int)now.revision, 2);
    CG_CHECK_EQ_STR(now.name, "renamed by a");
    CG_CHECK(memcmp(now.hash, k.hash, sizeof(k.hash)) == 0); /* b's change was not written */

    /* b starts over from the fresh record: accepted. */
    b = now;
    b.hash[0] ^= 0xff;
    CG_CHECK_EQ_INT(put_key_rev(&f, &b, now.revision), CG_ERR_OK);
    now = get_key(&f, "k_1", &st);
    CG_CHECK_EQ_INT((int)now.revision, 3);
    CG_CHECK_EQ_STR(now.name, "renamed by a");
    CG_CHECK(now.hash[0] != k.hash[0]);

    /* A revision from the future is as stale as one from the past. */
    CG_CHECK_EQ_INT(put_key_rev(&f, &now, 99), CG_ERR_CONFLICT);
    /* The revision inside the record is ignored: the shard assigns it. */
    a = now;
    a.revision = 1000;
    CG_CHECK_EQ_INT(put_key_rev(&f, &a, 0), CG_ERR_OK); /* 0 = unconditional */
    now = get_key(&f, "k_1", &st);
    CG_CHECK_EQ_INT((int)now.revision, 4);

    /* create_only still answers EXISTS and changes nothing. */
    proto_req c = put_key_req("k_1", NULL, 0);
    proto_rep rep;
    c.u.put_key.create_only = 1;
    snprintf(c.u.put_key.key.name, sizeof(c.u.put_key.key.name), "clobber");
    CG_CHECK_EQ_INT(apply1(&f, &c, &rep), CG_ERR_EXISTS);
    now = get_key(&f, "k_1", &st);
    CG_CHECK_EQ_INT((int)now.revision, 4);
    CG_CHECK_EQ_STR(now.name, "renamed by a");

    /* A conditional PUT of a record that is gone (deleted) does not recreate it. */
    proto_req d = simple_req(PROTO_OP_DELETE, "key:k_1", NULL);
    CG_CHECK_EQ_INT(apply1(&f, &d, &rep), CG_ERR_OK);
    CG_CHECK_EQ_INT(put_key_rev(&f, &now, 4), CG_ERR_NOTFOUND);
    (void)get_key(&f, "k_1", &st);
    CG_CHECK_EQ_INT(st, CG_ERR_NOTFOUND);
    fx_fini(&f);
}

CG_TEST(org_group_customer_stale_revision_refused)
{
    fx f;
    proto_req r;
    proto_rep rep;
    CG_CHECK(fx_init(&f, MAP_BYTES) == 0);

    memset(&r, 0, sizeof(r));
    r.op = PROTO_OP_PUT_ORG;
    snprintf(r.route, sizeof(r.route), "org:acme");
    snprintf(r.u.put_org.org.id, sizeof(r.u.put_org.org.id), "acme");
    snprintf(r.u.put_org.org.name, sizeof(r.u.put_org.org.name), "first");
    r.u.put_org.org.billing_anchor_day = 1;
    r.u.put_org.create_only = 1;
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    r.u.put_org.create_only = 0;
    r.u.put_org.expect_rev = 1;
    snprintf(r.u.put_org.org.name, sizeof(r.u.put_org.org.name), "second");
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    snprintf(r.u.put_org.org.name, sizeof(r.u.put_org.org.name), "stale");
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_CONFLICT);
    proto_req g = simple_req(PROTO_OP_GET_ORG, "org:acme", NULL);
    CG_CHECK_EQ_INT(apply1(&f, &g, &rep), CG_ERR_OK);
    CG_CHECK_EQ_STR(rep.u.get_org.org.name, "second");
    CG_CHECK_EQ_INT((int)rep.u.get_org.org.revision, 2);

    memset(&r, 0, sizeof(r));
    r.op = PROTO_OP_PUT_GROUP;
    snprintf(r.route, sizeof(r.route), "group:acme/team");
    snprintf(r.u.put_group.group.id, sizeof(r.u.put_group.group.id), "team");
    snprintf(r.u.put_group.group.org, sizeof(r.u.put_group.group.org), "acme");
    snprintf(r.u.put_group.group.name, sizeof(r.u.put_group.group.name), "first");
    r.u.put_group.group.billing_anchor_day = 1;
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    r.u.put_group.expect_rev = 1;
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    snprintf(r.u.put_group.group.name, sizeof(r.u.put_group.group.name), "stale");
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_CONFLICT);
    g = simple_req(PROTO_OP_GET_GROUP, "group:acme/team", NULL);
    CG_CHECK_EQ_INT(apply1(&f, &g, &rep), CG_ERR_OK);
    CG_CHECK_EQ_STR(rep.u.get_group.group.name, "first");
    CG_CHECK_EQ_INT((int)rep.u.get_group.group.revision, 2);

    memset(&r, 0, sizeof(r));
    r.op = PROTO_OP_PUT_CUSTOMER;
    snprintf(r.route, sizeof(r.route), "customer:acme/alice");
    snprintf(r.u.put_customer.customer.id, sizeof(r.u.put_customer.customer.id), "alice");
    snprintf(r.u.put_customer.customer.org, sizeof(r.u.put_customer.customer.org), "acme");
    r.u.put_customer.expect_rev = 1; /* no record yet: nothing to be conditional on */
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_NOTFOUND);
    r.u.put_customer.expect_rev = 0;
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_OK);
    r.u.put_customer.expect_rev = 2;
    r.u.put_customer.customer.created_ms = 42;
    CG_CHECK_EQ_INT(apply1(&f, &r, &rep), CG_ERR_CONFLICT);
    g = simple_req(PROTO_OP_GET_CUSTOMER, "customer:acme/alice", NULL);
    CG_CHECK_EQ_INT(apply1(&f, &g, &rep), CG_ERR_OK);
    CG_CHECK(rep.u.get_customer.found);
    CG_CHECK_EQ_INT((int)rep.u.get_customer.customer.revision, 1);
    CG_CHECK(rep.u.get_customer.customer.created_ms != 42);
    fx_fini(&f);
}

/* Records without a revision keep the old layout, so old records read as revision 0. */
CG_TEST(records_without_revision_keep_old_layout)
{
    msgpack_sbuffer sb;
    proto_org o, back;
    memset(&o, 0, sizeof(o));
    snprintf(o.id, sizeof(o.id), "acme");
    o.billing_anchor_day = 1;
    msgpack_sbuffer_init(&sb);
    CG_CHECK_EQ_INT(proto_org_encode(&o, &sb), CG_ERR_OK);
    /* record = [1, org]; an org without revision is the 8-element array of before. */
    CG_CHECK(sb.size > 3 && (uint8_t)sb.data[0] == 0x92 && (uint8_t)sb.data[2] == 0x98);
    back.revision = 77;
    CG_CHECK_EQ_INT(proto_org_decode(sb.data, sb.size, &back), CG_ERR_OK);
    CG_CHECK_EQ_INT((int)back.revision, 0);
    msgpack_sbuffer_clear(&sb);
    o.revision = 5;
    CG_CHECK_EQ_INT(proto_org_encode(&o, &sb), CG_ERR_OK);
    CG_CHECK((uint8_t)sb.data[2] == 0x99);
    CG_CHECK_EQ_INT(proto_org_decode(sb.data, sb.size, &back), CG_ERR_OK);
    CG_CHECK_EQ_INT((int)back.revision, 5);
    msgpack_sbuffer_destroy(&sb);

    /* A request: expect_rev travels as one more element, only when set. */
    proto_req q = put_key_req("k_1", NULL, 0), *dec = NULL;
    uint32_t n = 0;
    size_t plain;
    msgpack_sbuffer_init(&sb);
    CG_CHECK_EQ_INT(proto_req_encode(&q, 1, &sb), CG_ERR_OK);
    plain = sb.size;
    CG_CHECK_EQ_INT(proto_req_decode(sb.data, sb.size, &dec, &n), CG_ERR_OK);
    CG_CHECK(n == 1 && dec[0].u.put_key.expect_rev == 0);
    proto_req_free(dec, n);
    msgpack_sbuffer_clear(&sb);
    q.u.put_key.expect_rev = 300;
    q.u.put_key.key.revision = 299;
    CG_CHECK_EQ_INT(proto_req_encode(&q, 1, &sb), CG_ERR_OK);
    CG_CHECK(sb.size > plain);
    CG_CHECK_EQ_INT(proto_req_decode(sb.data, sb.size, &dec, &n), CG_ERR_OK);
    CG_CHECK(n == 1 && dec[0].u.put_key.expect_rev == 300 && dec[0].u.put_key.key.revision == 299);
    proto_req_free(dec, n);
    msgpack_sbuffer_destroy(&sb);
}

int main(void)
{
    cg_log_init("ledger_rev_test", CG_LOG_ERROR);
    return CG_TEST_RUN(key_stale_revision_refused_record_unchanged,
                       org_group_customer_stale_revision_refused,
                       records_without_revision_keep_old_layout);
}
