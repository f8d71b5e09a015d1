/*
 * rules_test.c — unit tests of the key's static rules (gw_rules): the client
 * address behind trusted proxies (IPv4, IPv6, IPv4-mapped, chains, spoofed
 * and malformed X-Forwarded-For), the allow/deny decision table, allowed
 * models inherited from the group, and customer ids.
 */
#include <string.h>
#include "cg_test.h"
#include "gw_rules.h"

static cg_cidr trusted[4];
static uint32_t trusted_n;

static void trust(const char *const *nets, uint32_t n)
{
    trusted_n = n;
    for (uint32_t i = 0; i < n; i++) {
        if (cg_cidr_parse(nets[i], &trusted[i]) != CG_ERR_OK) {
            trusted_n = 0;
        }
    }
}

/* The client address as text, "ERR" when unknown. */
static const char *client(const char *peer, const char *const *xff, size_t n)
{
    static char out[64];
    cg_cidr ip;
    if (gw_client_ip(peer, xff, n, trusted, trusted_n, &ip) != CG_ERR_OK) {
        return "ERR";
    }
    cg_cidr_format(&ip, out, sizeof(out));
    char *slash = strchr(out, '/');
    if (slash != NULL) {
        *slash = '\0';
    }
    return out;
}

CG_TEST(xff_untrusted_peer)
{
    const char *nets[] = {"10.0.0.0/8"};
    trust(nets, 1);
    const char *xff[] = {"1.2.3.4"};
    /* A client speaking directly cannot choose its address by header. */
    CG_CHECK_EQ_STR(client("203.0.113.5", xff, 1), "203.0.113.5");
    CG_CHECK_EQ_STR(client("203.0.113.5", NULL, 0), "203.0.113.5");
    /* Without trusted proxies, X-Forwarded-For is never believed. */
    trust(NULL, 0);
    CG_CHECK_EQ_STR(client("10.0.0.1", xff, 1), "10.0.0.1");
}

CG_TEST(xff_trusted_chain)
{
    const char *nets[] = {"10.0.0.0/8", "::1/128"};
    trust(nets, 2);
    const char *one[] = {"1.2.3.4"};
    CG_CHECK_EQ_STR(client("10.0.0.1", one, 1), "1.2.3.4");
    /* The client's own (spoofed) entries on the left are ignored. */
    const char *chain[] = {"6.6.6.6, 1.2.3.4, 10.0.0.2"};
    CG_CHECK_EQ_STR(client("10.0.0.1", chain, 1), "1.2.3.4");
    /* Several headers are one list, in order. */
    const char *two[] = {"6.6.6.6", "1.2.3.4 ,\t10.0.0.3"};
    CG_CHECK_EQ_STR(client("10.0.0.1", two, 2), "1.2.3.4");
    /* Every hop trusted: the left-most is the client. */
    const char *all[] = {"10.0.0.5, 10.0.0.6"};
    CG_CHECK_EQ_STR(client("10.0.0.1", all, 1), "10.0.0.5");
    /* A trusted peer without the header is the client itself. */
    CG_CHECK_EQ_STR(client("10.0.0.1", NULL, 0), "10.0.0.1");
    const char *empty[] = {""};
    CG_CHECK_EQ_STR(client("10.0.0.1", empty, 1), "10.0.0.1");
}

CG_TEST(xff_v6_mapped_ports)
{
    const char *nets[] = {"10.0.0.0/8", "2001:db8:ffff::/48"};
    trust(nets, 2);
    const char *v6[] = {"2001:db8::7"};
    CG_CHECK_EQ_STR(client("2001:db8:ffff::1", v6, 1), "2001:db8::7");
    /* An IPv4-mapped peer is judged as the IPv4 address it carries. */
    CG_CHECK_EQ_STR(client("::ffff:10.0.0.1", v6, 1), "2001:db8::7");
    const char *mapped[] = {"::ffff:1.2.3.4"};
    CG_CHECK_EQ_STR(client("10.0.0.1", mapped, 1), "1.2.3.4");
    const char *ports[] = {"[2001:db8::9]:443, 1.2.3.4:5678"};
    CG_CHECK_EQ_STR(client("10.0.0.1", ports, 1), "1.2.3.4");
    const char *bracket[] = {"[2001:db8::9]:443"};
    CG_CHECK_EQ_STR(client("10.0.0.1", bracket, 1), "2001:db8::9");
    const char *bare6[] = {"[2001:db8::9]"};
    CG_CHECK_EQ_STR(client("10.0.0.1", bare6, 1), "2001:db8::9");
}

CG_TEST(xff_malformed)
{
    const char *nets[] = {"10.0.0.0/8"};
    trust(nets, 1);
    /* Garbage where the walk stops: the address is unknown. */
    const char *garbage[] = {"1.2.3.4, garbage"};
    CG_CHECK_EQ_STR(client("10.0.0.1", garbage, 1), "ERR");
    const char *hole[] = {"1.2.3.4, , 10.0.0.2"};
    CG_CHECK_EQ_STR(client("10.0.0.1", hole, 1), "ERR");
    const char *bad[] = {"[2001:db8::1]x"};
    CG_CHECK_EQ_STR(client("10.0.0.1", bad, 1), "ERR");
    /* Garbage left of the client is never reached. */
    const char *left[] = {"garbage, 1.2.3.4"};
    CG_CHECK_EQ_STR(client("10.0.0.1", left, 1), "1.2.3.4");
    CG_CHECK_EQ_STR(client("not-an-ip", NULL, 0), "ERR");
    /* An endless chain of trusted hops is cut, not walked. */
    static char longv[GW_XFF_HOPS_MAX * 12 + 16];
    size_t n = 0;
    for (int i = 0; i < GW_XFF_HOPS_MAX + 2; i++) {
        n += (size_t)snprintf(longv + n, sizeof(longv) - n, "%s10.0.0.%d", i ? "," : "", i + 1);
    }
    const char *lv[] = {longv};
    CG_CHECK_EQ_STR(client("10.0.0.1", lv, 1), "ERR");
}

static proto_key key_with(const char *const *allow, uint8_t an, const char *const *deny, uint8_t dn)
{
    proto_key k;
    memset(&k, 0, sizeof(k));
    for (uint8_t i = 0; i < an; i++) {
        cg_cidr_parse(allow[i], &k.ip_allow[i]);
    }
    for (uint8_t i = 0; i < dn; i++) {
        cg_cidr_parse(deny[i], &k.ip_deny[i]);
    }
    k.ip_allow_n = an;
    k.ip_deny_n = dn;
    return k;
}

static int allowed(const proto_key *k, const char *ip)
{
    cg_cidr a;
    if (ip == NULL) {
        return gw_ip_allowed(k, NULL);
    }
    if (cg_ip_parse(ip, &a) != CG_ERR_OK) {
        return -1;
    }
    return gw_ip_allowed(k, &a);
}

CG_TEST(ip_decision_table)
{
    proto_key none = key_with(NULL, 0, NULL, 0);
    CG_CHECK_EQ_INT(allowed(&none, "1.2.3.4"), 1);
    CG_CHECK_EQ_INT(allowed(&none, NULL), 1);

    const char *a10[] = {"10.0.0.0/8"};
    proto_key allow = key_with(a10, 1, NULL, 0);
    CG_CHECK_EQ_INT(allowed(&allow, "10.1.2.3"), 1);
    CG_CHECK_EQ_INT(allowed(&allow, "11.0.0.1"), 0);
    CG_CHECK_EQ_INT(allowed(&allow, "::ffff:10.9.9.9"), 1);
    CG_CHECK_EQ_INT(allowed(&allow, "2001:db8::1"), 0);
    CG_CHECK_EQ_INT(allowed(&allow, NULL), 0);

    /* Deny wins over allow. */
    const char *d101[] = {"10.1.0.0/16"};
    proto_key both = key_with(a10, 1, d101, 1);
    CG_CHECK_EQ_INT(allowed(&both, "10.1.2.3"), 0);
    CG_CHECK_EQ_INT(allowed(&both, "10.2.0.1"), 1);

    /* A deny list alone lets every other address through, but not an unknown one. */
    const char *d1[] = {"1.2.3.0/24", "2001:db8::/32"};
    proto_key deny = key_with(NULL, 0, d1, 2);
    CG_CHECK_EQ_INT(allowed(&deny, "1.2.3.4"), 0);
    CG_CHECK_EQ_INT(allowed(&deny, "2001:db8:1::5"), 0);
    CG_CHECK_EQ_INT(allowed(&deny, "5.6.7.8"), 1);
    CG_CHECK_EQ_INT(allowed(&deny, "2001:db9::1"), 1);
    CG_CHECK_EQ_INT(allowed(&deny, NULL), 0);

    const char *a6[] = {"2001:db8::/32", "192.168.1.7"};
    proto_key v6 = key_with(a6, 2, NULL, 0);
    CG_CHECK_EQ_INT(allowed(&v6, "2001:db8::1"), 1);
    CG_CHECK_EQ_INT(allowed(&v6, "192.168.1.7"), 1);
    CG_CHECK_EQ_INT(allowed(&v6, "192.168.1.8"), 0);
}

CG_TEST(models_inheritance)
{
    proto_key k;
    memset(&k, 0, sizeof(k));
    char group[2][PROTO_MODEL_MAX + 1] = {"gpt-4o-mini", "gpt-4o"};
    /* Neither list: every model. */
    CG_CHECK(gw_model_allowed(&k, NULL, 0, "anything"));
    /* The group's list when the key has none. */
    CG_CHECK(gw_model_allowed(&k, group, 2, "gpt-4o"));
    CG_CHECK(!gw_model_allowed(&k, group, 2, "o1"));
    /* The key's own list wins over the group's, both ways. */
    strcpy(k.models[0], "o1");
    k.model_n = 1;
    CG_CHECK(gw_model_allowed(&k, group, 2, "o1"));
    CG_CHECK(!gw_model_allowed(&k, group, 2, "gpt-4o"));
    CG_CHECK(!gw_model_allowed(&k, NULL, 0, "gpt-4o"));
    /* Exact names. */
    CG_CHECK(!gw_model_allowed(&k, NULL, 0, "O1"));
    CG_CHECK(!gw_model_allowed(&k, NULL, 0, "o1-mini"));
}

CG_TEST(customer_ids)
{
    CG_CHECK(gw_customer_id_valid("cust-42"));
    CG_CHECK(gw_customer_id_valid("a.b_c:d@e-F9"));
    CG_CHECK(!gw_customer_id_valid(""));
    CG_CHECK(!gw_customer_id_valid("has space"));
    CG_CHECK(!gw_customer_id_valid("slash/no"));
    CG_CHECK(!gw_customer_id_valid("é"));
    char id[80];
    memset(id, 'x', 64);
    id[64] = '\0';
    CG_CHECK(gw_customer_id_valid(id));
    id[64] = 'x';
    id[65] = '\0';
    CG_CHECK(!gw_customer_id_valid(id));
}

static gw_customer_verdict resolve(const char *h, const char *u, int is_str, const char *bound,
                                   char *out, const char **param)
{
    *param = NULL;
    return gw_customer_resolve(h, u, is_str, bound, out, param);
}

CG_TEST(customer_resolve)
{
    char out[GW_CUSTOMER_ID_MAX + 1];
    const char *param;
    CG_CHECK_EQ_INT(resolve(NULL, NULL, 1, "", out, &param), GW_CUSTOMER_OK);
    CG_CHECK_EQ_STR(out, "");
    CG_CHECK_EQ_INT(resolve(NULL, "u1", 1, "", out, &param), GW_CUSTOMER_OK);
    CG_CHECK_EQ_STR(out, "u1");
    /* The header wins over the body's user. */
    CG_CHECK_EQ_INT(resolve("h1", "u1", 1, "", out, &param), GW_CUSTOMER_OK);
    CG_CHECK_EQ_STR(out, "h1");
    CG_CHECK_EQ_INT(resolve("bad id", NULL, 1, "", out, &param), GW_CUSTOMER_INVALID);
    CG_CHECK_EQ_STR(param, GW_CUSTOMER_HEADER);
    CG_CHECK_EQ_INT(resolve(NULL, "bad id", 1, "", out, &param), GW_CUSTOMER_INVALID);
    CG_CHECK_EQ_STR(param, "user");
    CG_CHECK_EQ_INT(resolve(NULL, NULL, 0, "", out, &param), GW_CUSTOMER_INVALID);
    CG_CHECK_EQ_STR(param, "user");
    /* A bound key always counts as its customer... */
    CG_CHECK_EQ_INT(resolve(NULL, NULL, 1, "c9", out, &param), GW_CUSTOMER_OK);
    CG_CHECK_EQ_STR(out, "c9");
    CG_CHECK_EQ_INT(resolve("c9", "other", 1, "c9", out, &param), GW_CUSTOMER_OK);
    CG_CHECK_EQ_STR(out, "c9");
    /* ...and may not name another. */
    CG_CHECK_EQ_INT(resolve("c8", NULL, 1, "c9", out, &param), GW_CUSTOMER_NOT_ALLOWED);
    CG_CHECK_EQ_INT(resolve(NULL, "c8", 1, "c9", out, &param), GW_CUSTOMER_NOT_ALLOWED);
}

int main(void)
{
    return CG_TEST_RUN(xff_untrusted_peer, xff_trusted_chain, xff_v6_mapped_ports, xff_malformed,
                       ip_decision_table, models_inheritance, customer_ids, customer_resolve);
}
