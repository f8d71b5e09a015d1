/*
 * cg_str.h — string building without printf for per-request paths (header
 * lines, ledger routes): glibc's snprintf costs ~0.1-0.2 µs even for "%s",
 * and a request formats a dozen such strings (perf, bench/GATEWAY_NOTES.md).
 */
#ifndef CG_STR_H
#define CG_STR_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Decimal digits of v at dst (no terminator); returns how many (1..20). */
static inline size_t cg_str_u64(char *dst, uint64_t v)
{
    char tmp[20];
    size_t k = sizeof(tmp);
    do {
        tmp[--k] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    memcpy(dst, tmp + k, sizeof(tmp) - k);
    return sizeof(tmp) - k;
}

/* dst = parts[0] + ... + parts[n-1], cut to cap - 1 bytes, always terminated (cap > 0).
 * Returns the length written. */
static inline size_t cg_str_cat(char *dst, size_t cap, const char *const *parts, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n && len + 1 < cap; i++) {
        size_t l = strlen(parts[i]);
        if (l > cap - 1 - len) {
            l = cap - 1 - len;
        }
        memcpy(dst + len, parts[i], l);
        len += l;
    }
    dst[len] = '\0';
    return len;
}

/* CG_STR_CAT(dst, cap, "a", b, ...): cg_str_cat over the listed strings. */
#define CG_STR_CAT(dst, cap, ...)                                \
    cg_str_cat((dst), (cap), (const char *const[]){__VA_ARGS__}, \
               sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

#endif
