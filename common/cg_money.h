/*
 * cg_money.h — exact money arithmetic in nano-USD (1e-9 USD), int64.
 *
 * No floating point ever touches a balance. Parsing of decimal USD is exact;
 * where rounding cannot be avoided it is upward (a charge never rounds down).
 * Range: |value| <= 9.2e9 USD. Overflow is an error, never a wrap.
 */
#ifndef CG_MONEY_H
#define CG_MONEY_H
#include <stddef.h>
#include <stdint.h>
#include "cg_err.h"

#define CG_NUSD_PER_USD 1000000000LL

/*
 * Parse a decimal USD amount ("12", "12.345", "0.000000001", "-1.5" only if
 * allow_negative). Digits beyond the ninth fractional place round up (toward
 * +infinity). No exponent, no spaces, no leading '+'. len is the byte length.
 * Returns CG_ERR_PARSE on syntax error, CG_ERR_OVERFLOW beyond int64.
 */
cg_err cg_money_parse(const char *s, size_t len, int allow_negative, int64_t *out_nusd);

/*
 * Convert a double as JSON parsers produce it ("max": 0.01) exactly as written:
 * the value is printed with 15 significant digits and parsed as above, so any
 * decimal of up to 15 significant digits round-trips exactly.
 */
cg_err cg_money_from_double(double usd, int64_t *out_nusd);

/*
 * Format as decimal USD with at least min_frac (0..9) fractional digits and
 * trailing zeros beyond that trimmed: 12345000000 -> "12.345" (min_frac 2),
 * 10000000 -> "0.01". Writes a NUL-terminated string; returns its length, or
 * 0 if cap is too small (32 bytes always suffice).
 */
size_t cg_money_format(int64_t nusd, int min_frac, char *buf, size_t cap);

/* a + b with overflow check. */
cg_err cg_money_add(int64_t a, int64_t b, int64_t *out);

/*
 * Cost of `tokens` at `rate` nano-USD per million tokens, rounded up:
 * ceil(tokens * rate / 1e6). Saturates at INT64_MAX (never wraps). tokens and
 * rate must be >= 0.
 */
int64_t cg_money_token_cost(int64_t tokens, int64_t rate_nusd_per_mtok);

#endif
