/*
 * cidr_test.c — cg_cidr: parsing of networks and addresses (IPv4, IPv6,
 * IPv4-mapped IPv6), rejection of malformed text and non-zero host bits,
 * formatting round trips and containment at prefix edges.
 */
#include <string.h>

#include "cg_cidr.h"
#include "cg_test.h"

#define FMT_CAP 64

/* Parse s as a network and format it back; "" if it does not parse. */
static const char *norm(const char *s)
{
    static char buf[FMT_CAP];
    cg_cidr c;
    buf[0] = '\0';
    if (cg_cidr_parse(s, &c) == CG_ERR_OK && cg_cidr_format(&c, buf, sizeof(buf)) == 0) {
        strcpy(buf, "(format failed)");
    }
    return buf;
}

/* Does network net contain address ip? -1 if either does not parse. */
static int contains(const char *net, const char *ip)
{
    cg_cidr c, a;
    if (cg_cidr_parse(net, &c) != CG_ERR_OK || cg_ip_parse(ip, &a) != CG_ERR_OK) {
        return -1;
    }
    return cg_cidr_contains(&c, &a);
}

CG_TEST(parse_and_format)
{
    CG_CHECK_EQ_STR(norm("10.0.0.0/8"), "10.0.0.0/8");
    CG_CHECK_EQ_STR(norm("0.0.0.0/0"), "0.0.0.0/0");
    CG_CHECK_EQ_STR(norm("192.168.1.7"), "192.168.1.7/32");
    CG_CHECK_EQ_STR(norm("192.168.1.7/32"), "192.168.1.7/32");
    CG_CHECK_EQ_STR(norm("2001:db8::/32"), "2001:db8::/32");
    CG_CHECK_EQ_STR(norm("2001:DB8:0:0::/48"), "2001:db8::/48");
    CG_CHECK_EQ_STR(norm("::/0"), "::/0");
    CG_CHECK_EQ_STR(norm("::1"), "::1/128");
    CG_CHECK_EQ_STR(norm("fe80::1/128"), "fe80::1/128");
    CG_CHECK_EQ_STR(norm("10.0.0.0/31"), "10.0.0.0/31");
    CG_CHECK_EQ_STR(norm("2001:db8::8000/113"), "2001:db8::8000/113");
}

CG_TEST(mapped_normalised)
{
    CG_CHECK_EQ_STR(norm("::ffff:10.1.2.3"), "10.1.2.3/32");
    CG_CHECK_EQ_STR(norm("::ffff:10.0.0.0/104"), "10.0.0.0/8");
    CG_CHECK_EQ_STR(norm("::ffff:0.0.0.0/96"), "0.0.0.0/0");
    CG_CHECK_EQ_STR(norm("::ffff:10.1.2.3/128"), "10.1.2.3/32");
    /* Wider than the mapped range: stays IPv6. */
    CG_CHECK_EQ_STR(norm("::ffff:0.0.0.0/95"), ""); /* bit 95 (of the ffff) is a host bit */
    CG_CHECK_EQ_STR(norm("::/80"), "::/80");
    cg_cidr a;
    CG_CHECK_EQ_INT(cg_ip_parse("::ffff:127.0.0.1", &a), CG_ERR_OK);
    CG_CHECK_EQ_INT(a.family, 4);
    CG_CHECK_EQ_INT(a.prefix, 32);
    CG_CHECK(a.addr[0] == 127 && a.addr[3] == 1 && a.addr[4] == 0 && a.addr[15] == 0);
    CG_CHECK_EQ_INT(cg_ip_parse("2001:db8::1", &a), CG_ERR_OK);
    CG_CHECK_EQ_INT(a.family, 6);
    CG_CHECK_EQ_INT(a.prefix, 128);
}

CG_TEST(rejected)
{
    static const char *const bad[] = {
        "",
        "/8",
        "10.0.0.0/",
        "10.0.0.0/33",
        "10.0.0.0/-1",
        "10.0.0.0/+8",
        "10.0.0.0/08",
        "10.0.0.0/ 8",
        "10.0.0.0/8 ",
        " 10.0.0.0/8",
        "10.1.2.3/8",
        "10.0.0.1/31",
        "2001:db8::1/32",
        "::/129",
        "::1/1000",
        "10.0.0",
        "10.0.0.256",
        "1.2.3.4.5",
        "localhost",
        "2001:db8::/32/1",
        "::ffff:10.1.0.0/104",
        "fe80::1%eth0",
        "10.0.0.0/8x",
        "0x0a.0.0.0/8",
    };
    cg_cidr c;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (cg_cidr_parse(bad[i], &c) != CG_ERR_INVAL) {
            fprintf(stderr, "  accepted \"%s\"\n", bad[i]);
        }
        CG_CHECK_EQ_INT(cg_cidr_parse(bad[i], &c), CG_ERR_INVAL);
    }
    CG_CHECK_EQ_INT(cg_cidr_parse(NULL, &c), CG_ERR_INVAL);
    CG_CHECK_EQ_INT(cg_ip_parse(NULL, &c), CG_ERR_INVAL);
    CG_CHECK_EQ_INT(cg_ip_parse("10.0.0.0/8", &c), CG_ERR_INVAL);
    CG_CHECK_EQ_INT(cg_ip_parse("", &c), CG_ERR_INVAL);
    char longs[200];
    memset(longs, '1', sizeof(longs) - 1);
    longs[sizeof(longs) - 1] = '\0';
    CG_CHECK_EQ_INT(cg_ip_parse(longs, &c), CG_ERR_INVAL);
    CG_CHECK_EQ_INT(cg_cidr_parse(longs, &c), CG_ERR_INVAL);
    /* Output untouched on failure. */
    memset(&c, 0xab, sizeof(c));
    CG_CHECK_EQ_INT(cg_cidr_parse("10.1.2.3/8", &c), CG_ERR_INVAL);
    CG_CHECK(c.family == 0xab && c.prefix == 0xab);
}

CG_TEST(format_bounds)
{
    cg_cidr c;
    char buf[FMT_CAP];
    CG_CHECK_EQ_INT(cg_cidr_parse("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/128", &c), CG_ERR_OK);
    CG_CHECK_EQ_INT(cg_cidr_format(&c, buf, 49), 0);
    size_t n = cg_cidr_format(&c, buf, 50);
    CG_CHECK_EQ_INT(n, strlen("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/128"));
    CG_CHECK_EQ_STR(buf, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/128");
    c.family = 5;
    CG_CHECK_EQ_INT(cg_cidr_format(&c, buf, sizeof(buf)), 0);
}

CG_TEST(containment)
{
    CG_CHECK_EQ_INT(contains("10.0.0.0/8", "10.255.255.255"), 1);
    CG_CHECK_EQ_INT(contains("10.0.0.0/8", "11.0.0.0"), 0);
    CG_CHECK_EQ_INT(contains("10.0.0.0/8", "9.255.255.255"), 0);
    CG_CHECK_EQ_INT(contains("192.168.1.0/25", "192.168.1.127"), 1);
    CG_CHECK_EQ_INT(contains("192.168.1.0/25", "192.168.1.128"), 0);
    CG_CHECK_EQ_INT(contains("0.0.0.0/0", "1.2.3.4"), 1);
    CG_CHECK_EQ_INT(contains("1.2.3.4", "1.2.3.4"), 1);
    CG_CHECK_EQ_INT(contains("1.2.3.4", "1.2.3.5"), 0);
    CG_CHECK_EQ_INT(contains("2001:db8::/32", "2001:db8:ffff::1"), 1);
    CG_CHECK_EQ_INT(contains("2001:db8::/32", "2001:db9::1"), 0);
    CG_CHECK_EQ_INT(contains("2001:db8::8000/113", "2001:db8::ffff"), 1);
    CG_CHECK_EQ_INT(contains("2001:db8::8000/113", "2001:db8::7fff"), 0);
    CG_CHECK_EQ_INT(contains("::/0", "::1"), 1);
    /* Families never mix; a mapped client is judged as its IPv4 address. */
    CG_CHECK_EQ_INT(contains("::/0", "1.2.3.4"), 0);
    CG_CHECK_EQ_INT(contains("0.0.0.0/0", "::1"), 0);
    CG_CHECK_EQ_INT(contains("10.0.0.0/8", "::ffff:10.9.8.7"), 1);
    CG_CHECK_EQ_INT(contains("::ffff:10.0.0.0/104", "10.9.8.7"), 1);
    CG_CHECK_EQ_INT(contains("::/0", "::ffff:10.9.8.7"), 0);
    /* A network "contains" a narrower network of the same family only. */
    cg_cidr wide, narrow;
    CG_CHECK_EQ_INT(cg_cidr_parse("10.0.0.0/8", &wide), CG_ERR_OK);
    CG_CHECK_EQ_INT(cg_cidr_parse("10.1.0.0/16", &narrow), CG_ERR_OK);
    CG_CHECK_EQ_INT(cg_cidr_contains(&wide, &narrow), 1);
    CG_CHECK_EQ_INT(cg_cidr_contains(&narrow, &wide), 0);
}

CG_TEST(list_contains)
{
    cg_cidr list[3], ip;
    CG_CHECK_EQ_INT(cg_cidr_parse("10.0.0.0/8", &list[0]), CG_ERR_OK);
    CG_CHECK_EQ_INT(cg_cidr_parse("2001:db8::/32", &list[1]), CG_ERR_OK);
    CG_CHECK_EQ_INT(cg_cidr_parse("192.168.0.1", &list[2]), CG_ERR_OK);
    CG_CHECK_EQ_INT(cg_ip_parse("192.168.0.1", &ip), CG_ERR_OK);
    CG_CHECK_EQ_INT(cg_cidr_list_contains(list, 3, &ip), 1);
    CG_CHECK_EQ_INT(cg_cidr_list_contains(list, 2, &ip), 0);
    CG_CHECK_EQ_INT(cg_cidr_list_contains(list, 0, &ip), 0);
    CG_CHECK_EQ_INT(cg_ip_parse("2001:db8::5", &ip), CG_ERR_OK);
    CG_CHECK_EQ_INT(cg_cidr_list_contains(list, 3, &ip), 1);
}

int main(void)
{
    return CG_TEST_RUN(parse_and_format, mapped_normalised, rejected, format_bounds, containment,
                       list_contains);
}
