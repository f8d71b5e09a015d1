/*
 * money_test.c — exact parsing, upward rounding, formatting and overflow.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cg_money.h"
#include "cg_test.h"

static cg_err parse(const char *s, int neg, int64_t *out)
{
    return cg_money_parse(s, strlen(s), neg, out);
}

CG_TEST(money_parse_exact)
{
    int64_t v = 0;
    CG_CHECK(parse("12", 0, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, 12000000000LL);
    CG_CHECK(parse("12.345", 0, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, 12345000000LL);
    CG_CHECK(parse("0.000000001", 0, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, 1);
    CG_CHECK(parse("0", 0, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, 0);
    CG_CHECK(parse("0.15", 0, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, 150000000);
    CG_CHECK(parse("9223372036.854775807", 0, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, INT64_MAX);
    /* Only the first len bytes count. */
    CG_CHECK(cg_money_parse("1.25xyz", 4, 0, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, 1250000000);
}

CG_TEST(money_parse_rounds_up)
{
    int64_t v = 0;
    CG_CHECK(parse("0.0000000001", 0, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, 1);
    CG_CHECK(parse("1.0000000010", 0, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, 1000000001);
    CG_CHECK(parse("1.0000000010000", 0, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, 1000000001);
    CG_CHECK(parse("1.00000000100001", 0, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, 1000000002);
    /* Toward +infinity: a negative amount rounds toward zero. */
    CG_CHECK(parse("-1.0000000019", 1, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, -1000000001);
    CG_CHECK(parse("9223372036.8547758071", 0, &v) == CG_ERR_OVERFLOW);
}

CG_TEST(money_parse_rejects)
{
    int64_t v = 77;
    const char *bad[] = {"",    "-",   "+1",  " 1",    "1 ",  "1.",   ".5",
                         "1e3", "1,5", "abc", "1.2.3", "--1", "0x10", "1.5-"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CG_CHECK_EQ_INT(parse(bad[i], 1, &v), CG_ERR_PARSE);
    }
    CG_CHECK_EQ_INT(parse("-1", 0, &v), CG_ERR_PARSE);
    CG_CHECK_EQ_INT(parse("9223372037", 0, &v), CG_ERR_OVERFLOW);
    CG_CHECK_EQ_INT(parse("99999999999999999999999", 0, &v), CG_ERR_OVERFLOW);
    CG_CHECK_EQ_INT(v, 77); /* untouched on failure */
    CG_CHECK(parse("-9223372036.854775807", 1, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, -INT64_MAX);
}

CG_TEST(money_from_double)
{
    int64_t v = 0;
    CG_CHECK(cg_money_from_double(0.01, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, 10000000);
    CG_CHECK(cg_money_from_double(0.1 + 0.2, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, 300000000);
    CG_CHECK(cg_money_from_double(1000, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, 1000000000000LL);
    CG_CHECK(cg_money_from_double(123456.789012345, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, 123456789012345LL);
    CG_CHECK(cg_money_from_double(-2.5, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, -2500000000LL);
    CG_CHECK(cg_money_from_double(-0.0, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, 0);
    /* %.15g prints these with an exponent. */
    CG_CHECK(cg_money_from_double(1.5e-7, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, 150);
    CG_CHECK(cg_money_from_double(1e-9, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, 1);
    CG_CHECK(cg_money_from_double(2.5e-10, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, 1);
    CG_CHECK(cg_money_from_double(1e-300, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, 1);
    CG_CHECK(cg_money_from_double(4.9e-324, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, 1);
    CG_CHECK(cg_money_from_double(-1e-300, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, 0);
    CG_CHECK(cg_money_from_double(1e15, &v) == CG_ERR_OVERFLOW);
    CG_CHECK(cg_money_from_double(1.5e9, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, 1500000000000000000LL);
    CG_CHECK(cg_money_from_double(1e10, &v) == CG_ERR_OVERFLOW);
    CG_CHECK(cg_money_from_double(1e300, &v) == CG_ERR_OVERFLOW);
    CG_CHECK(cg_money_from_double(NAN, &v) == CG_ERR_RANGE);
    CG_CHECK(cg_money_from_double(INFINITY, &v) == CG_ERR_RANGE);
}

CG_TEST(money_format)
{
    char b[32];
    CG_CHECK(cg_money_format(12345000000LL, 2, b, sizeof(b)) == 6);
    CG_CHECK_EQ_STR(b, "12.345");
    cg_money_format(10000000, 2, b, sizeof(b));
    CG_CHECK_EQ_STR(b, "0.01");
    cg_money_format(10000000, 0, b, sizeof(b));
    CG_CHECK_EQ_STR(b, "0.01");
    cg_money_format(200000000000LL, 2, b, sizeof(b));
    CG_CHECK_EQ_STR(b, "200.00");
    cg_money_format(200000000000LL, 0, b, sizeof(b));
    CG_CHECK_EQ_STR(b, "200");
    cg_money_format(1, 2, b, sizeof(b));
    CG_CHECK_EQ_STR(b, "0.000000001");
    cg_money_format(0, 0, b, sizeof(b));
    CG_CHECK_EQ_STR(b, "0");
    cg_money_format(-1500000000LL, 2, b, sizeof(b));
    CG_CHECK_EQ_STR(b, "-1.50");
    cg_money_format(-1, 0, b, sizeof(b));
    CG_CHECK_EQ_STR(b, "-0.000000001");
    cg_money_format(INT64_MAX, 9, b, sizeof(b));
    CG_CHECK_EQ_STR(b, "9223372036.854775807");
    cg_money_format(INT64_MIN, 0, b, sizeof(b));
    CG_CHECK_EQ_STR(b, "-9223372036.854775808");
    CG_CHECK_EQ_INT(cg_money_format(12345000000LL, 2, b, 6), 0);
    CG_CHECK_EQ_INT(cg_money_format(12345000000LL, 2, b, 7), 6);
}

CG_TEST(money_format_parse_roundtrip)
{
    const int64_t vals[] = {0, 1, 999999999, 1000000000, 123456789012345LL, INT64_MAX, -7};
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        char b[32];
        size_t n = cg_money_format(vals[i], 0, b, sizeof(b));
        int64_t back = 0;
        CG_CHECK(n > 0);
        CG_CHECK(cg_money_parse(b, n, 1, &back) == CG_ERR_OK);
        CG_CHECK_EQ_INT(back, vals[i]);
    }
}

CG_TEST(money_add)
{
    int64_t v = 5;
    CG_CHECK(cg_money_add(1, 2, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, 3);
    CG_CHECK(cg_money_add(INT64_MAX, 1, &v) == CG_ERR_OVERFLOW);
    CG_CHECK(cg_money_add(INT64_MIN, -1, &v) == CG_ERR_OVERFLOW);
    CG_CHECK_EQ_INT(v, 3);
    CG_CHECK(cg_money_add(INT64_MAX, -1, &v) == CG_ERR_OK);
    CG_CHECK_EQ_INT(v, INT64_MAX - 1);
}

CG_TEST(money_token_cost)
{
    /* $0.15 per 1M tokens. */
    CG_CHECK_EQ_INT(cg_money_token_cost(1000000, 150000000), 150000000);
    CG_CHECK_EQ_INT(cg_money_token_cost(1, 150000000), 150);
    CG_CHECK_EQ_INT(cg_money_token_cost(1, 1), 1);       /* ceil(1e-6) */
    CG_CHECK_EQ_INT(cg_money_token_cost(1000001, 1), 2); /* ceil(1.000001) */
    CG_CHECK_EQ_INT(cg_money_token_cost(0, 150000000), 0);
    CG_CHECK_EQ_INT(cg_money_token_cost(7, 0), 0);
    CG_CHECK_EQ_INT(cg_money_token_cost(3, 333333), 1);
    /* Beyond int64 in the product, exact in __int128. */
    CG_CHECK_EQ_INT(cg_money_token_cost(INT64_MAX / 2, 2000000), INT64_MAX - 1);
    CG_CHECK_EQ_INT(cg_money_token_cost(INT64_MAX, INT64_MAX), INT64_MAX);
    CG_CHECK_EQ_INT(cg_money_token_cost(INT64_MAX, 1000001), INT64_MAX);
}

int main(void)
{
    return CG_TEST_RUN(money_parse_exact, money_parse_rounds_up, money_parse_rejects,
                       money_from_double, money_format, money_format_parse_roundtrip, money_add,
                       money_token_cost);
}
