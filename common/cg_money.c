/*
 * cg_money.c — exact decimal USD <-> nano-USD conversion and checked sums.
 *
 * Invariants: no floating-point value ever reaches a balance (doubles are only
 * printed to text and parsed like any other decimal); every rounding is toward
 * +infinity so a charge never rounds down; overflow is reported, never wrapped.
 */
#include "cg_money.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CG_MONEY_FRAC_DIGITS 9
#define CG_MONEY_TOKENS_PER_RATE 1000000LL
/* "%.15g" of a double has at most 15 digits and a 3-digit exponent. */
#define CG_MONEY_DBL_TEXT_MAX 32
/* A plain decimal expanded from it: up to 308 zeros plus digits, sign, dot. */
#define CG_MONEY_DBL_PLAIN_MAX 352

static bool cg_money_isdigit_(char c)
{
    return c >= '0' && c <= '9';
}

/* Accumulate the magnitude of "<int>[.<frac>]" in nano-USD; *inexact if digits were cut. */
static cg_err cg_money_parse_mag_(const char *s, size_t len, uint64_t *mag, bool *inexact)
{
    uint64_t v = 0;
    size_t i = 0;
    while (i < len && cg_money_isdigit_(s[i])) {
        uint64_t digit = (uint64_t)(s[i] - '0');
        if (__builtin_mul_overflow(v, 10u, &v) || __builtin_add_overflow(v, digit, &v)) {
            return CG_ERR_OVERFLOW;
        }
        i++;
    }
    if (i == 0) {
        return CG_ERR_PARSE;
    }
    uint64_t frac = 0;
    int frac_n = 0;
    *inexact = false;
    if (i < len && s[i] == '.') {
        i++;
        size_t start = i;
        for (; i < len && cg_money_isdigit_(s[i]); i++) {
            if (frac_n < CG_MONEY_FRAC_DIGITS) {
                frac = frac * 10u + (uint64_t)(s[i] - '0');
                frac_n++;
            } else if (s[i] != '0') {
                *inexact = true;
            }
        }
        if (i == start) {
            return CG_ERR_PARSE;
        }
    }
    if (i != len) {
        return CG_ERR_PARSE;
    }
    for (; frac_n < CG_MONEY_FRAC_DIGITS; frac_n++) {
        frac *= 10u;
    }
    if (__builtin_mul_overflow(v, (uint64_t)CG_NUSD_PER_USD, &v) ||
        __builtin_add_overflow(v, frac, &v)) {
        return CG_ERR_OVERFLOW;
    }
    *mag = v;
    return CG_ERR_OK;
}

cg_err cg_money_parse(const char *s, size_t len, int allow_negative, int64_t *out_nusd)
{
    if (s == NULL || len == 0) {
        return CG_ERR_PARSE;
    }
    bool neg = false;
    if (s[0] == '-') {
        if (!allow_negative) {
            return CG_ERR_PARSE;
        }
        neg = true;
        s++;
        len--;
    }
    uint64_t mag;
    bool inexact;
    cg_err err = cg_money_parse_mag_(s, len, &mag, &inexact);
    if (err != CG_ERR_OK) {
        return err;
    }
    /* Round toward +infinity: up for positive values, toward zero for negative ones. */
    if (inexact && !neg) {
        mag++;
    }
    if (mag > (uint64_t)INT64_MAX) {
        return CG_ERR_OVERFLOW;
    }
    *out_nusd = neg ? -(int64_t)mag : (int64_t)mag;
    return CG_ERR_OK;
}

/*
 * Rewrite "%.15g" output in exponent form ("1.5e-07", "-2e+20") as a plain
 * decimal ("0.00000015"). Returns false if the text is not of that form.
 */
static bool cg_money_expand_exp_(const char *txt, char *out, size_t cap)
{
    const char *e = strchr(txt, 'e');
    char digits[CG_MONEY_DBL_TEXT_MAX];
    size_t dn = 0;
    int point = -1; /* number of mantissa digits before the decimal point */
    const char *p = txt;
    size_t o = 0;
    if (*p == '-') {
        out[o++] = '-';
        p++;
    }
    for (; p < e; p++) {
        if (*p == '.') {
            point = (int)dn;
        } else if (cg_money_isdigit_(*p) && dn < sizeof(digits)) {
            digits[dn++] = *p;
        } else {
            return false;
        }
    }
    if (point < 0) {
        point = (int)dn;
    }
    char *end;
    long ex = strtol(e + 1, &end, 10);
    if (*end != '\0' || ex < -330 || ex > 30) {
        return false;
    }
    long ip = point + ex; /* digits before the point in the plain form */
    if (ip <= 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (long z = 0; z < -ip; z++) {
            out[o++] = '0';
        }
        memcpy(out + o, digits, dn);
        o += dn;
    } else {
        for (long k = 0; k < ip; k++) {
            out[o++] = k < (long)dn ? digits[k] : '0';
        }
        if (ip < (long)dn) {
            out[o++] = '.';
            memcpy(out + o, digits + ip, dn - (size_t)ip);
            o += dn - (size_t)ip;
        }
    }
    if (o >= cap) {
        return false;
    }
    out[o] = '\0';
    return true;
}

cg_err cg_money_from_double(double usd, int64_t *out_nusd)
{
    if (!isfinite(usd)) {
        return CG_ERR_RANGE;
    }
    /* Far beyond int64 nano-USD: no need to print 300 digits to find out. */
    if (fabs(usd) >= 1e19) {
        return CG_ERR_OVERFLOW;
    }
    char txt[CG_MONEY_DBL_TEXT_MAX];
    int n = snprintf(txt, sizeof(txt), "%.15g", usd);
    if (n <= 0 || (size_t)n >= sizeof(txt)) {
        return CG_ERR_RANGE;
    }
    if (strchr(txt, 'e') == NULL) {
        return cg_money_parse(txt, (size_t)n, 1, out_nusd);
    }
    char plain[CG_MONEY_DBL_PLAIN_MAX];
    if (!cg_money_expand_exp_(txt, plain, sizeof(plain))) {
        return CG_ERR_RANGE;
    }
    return cg_money_parse(plain, strlen(plain), 1, out_nusd);
}

size_t cg_money_format(int64_t nusd, int min_frac, char *buf, size_t cap)
{
    if (min_frac < 0) {
        min_frac = 0;
    }
    if (min_frac > CG_MONEY_FRAC_DIGITS) {
        min_frac = CG_MONEY_FRAC_DIGITS;
    }
    uint64_t mag = nusd < 0 ? (uint64_t)0 - (uint64_t)nusd : (uint64_t)nusd;
    uint64_t ip = mag / (uint64_t)CG_NUSD_PER_USD;
    uint64_t fp = mag % (uint64_t)CG_NUSD_PER_USD;
    char frac[CG_MONEY_FRAC_DIGITS + 1];
    for (int k = CG_MONEY_FRAC_DIGITS - 1; k >= 0; k--) {
        frac[k] = (char)('0' + fp % 10u);
        fp /= 10u;
    }
    int fn = CG_MONEY_FRAC_DIGITS;
    while (fn > min_frac && frac[fn - 1] == '0') {
        fn--;
    }
    frac[fn] = '\0';
    int n = snprintf(buf, cap, "%s%llu%s%s", nusd < 0 ? "-" : "", (unsigned long long)ip,
                     fn > 0 ? "." : "", frac);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0) {
            buf[0] = '\0';
        }
        return 0;
    }
    return (size_t)n;
}

cg_err cg_money_add(int64_t a, int64_t b, int64_t *out)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r)) {
        return CG_ERR_OVERFLOW;
    }
    *out = r;
    return CG_ERR_OK;
}

int64_t cg_money_token_cost(int64_t tokens, int64_t rate_nusd_per_mtok)
{
    /* Negative inputs violate the contract; charging nothing is the safe reading. */
    if (tokens <= 0 || rate_nusd_per_mtok <= 0) {
        return 0;
    }
    __int128 p = (__int128)tokens * (__int128)rate_nusd_per_mtok;
    __int128 c = (p + (CG_MONEY_TOKENS_PER_RATE - 1)) / CG_MONEY_TOKENS_PER_RATE;
    return c > (__int128)INT64_MAX ? INT64_MAX : (int64_t)c;
}
