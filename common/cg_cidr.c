/*
 * cg_cidr.c — IPv4/IPv6 networks and addresses for the key IP rules and the
 * trusted-proxy list. The contract is cg_cidr.h.
 *
 * Text goes through inet_pton only (no hand-written address parser): the part
 * before '/' must be a complete address in the syntax inet_pton accepts
 * (dotted quad, RFC 4291 text), the prefix a plain decimal 0..32 / 0..128
 * without sign, spaces or leading zeros.
 *
 * IPv4-mapped IPv6 (::ffff:0:0/96):
 *   - an address "::ffff:a.b.c.d" becomes the IPv4 /32 a.b.c.d;
 *   - a network inside the mapped range (prefix >= 96) becomes the IPv4
 *     network it describes: "::ffff:10.0.0.0/104" is stored as 10.0.0.0/8;
 *   - a wider IPv6 network (prefix < 96, e.g. "::/0") stays IPv6 and matches
 *     IPv6 addresses only. Families never mix: an IPv4 address is inside an
 *     IPv4 network or nothing, so "::/0" means "every IPv6 client".
 *
 * Invariant of every cg_cidr produced here: family 4 or 6, prefix within the
 * family's width, bits past the prefix zero (addr[4..15] zero for IPv4).
 */
#include "cg_cidr.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define CG_CIDR_V4_BYTES 4
#define CG_CIDR_V6_BYTES 16
#define CG_CIDR_V4_BITS 32
#define CG_CIDR_V6_BITS 128
#define CG_CIDR_MAPPED_BITS 96 /* ::ffff:0:0/96 */
#define CG_CIDR_TEXT_MAX 64    /* longest address text accepted (INET6_ADDRSTRLEN is 46) */
#define CG_CIDR_PREFIX_DIGITS_MAX 3
#define CG_CIDR_FORMAT_MIN 50 /* INET6_ADDRSTRLEN + "/128" */

static const uint8_t cg_cidr_mapped_head_[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static unsigned cg_cidr_bits_(uint8_t family)
{
    return family == 4 ? CG_CIDR_V4_BITS : CG_CIDR_V6_BITS;
}

/* Are the first `bits` bits of a and b equal? */
static bool cg_cidr_prefix_eq_(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, whole) != 0) {
        return false;
    }
    if (rest == 0) {
        return true;
    }
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

/* Are all bits of addr past `bits` (within `bytes`) zero? */
static bool cg_cidr_host_zero_(const uint8_t *addr, unsigned bits, unsigned bytes)
{
    for (unsigned i = bits / 8; i < bytes; i++) {
        uint8_t keep = i == bits / 8 && bits % 8 != 0 ? (uint8_t)(0xffu << (8 - bits % 8)) : 0;
        if ((addr[i] & (uint8_t)~keep) != 0) {
            return false;
        }
    }
    return true;
}

/* Parse a bare address into out (full-length prefix, mapped IPv6 folded to IPv4). */
static cg_err cg_cidr_addr_(const char *s, cg_cidr *out)
{
    cg_cidr c;
    memset(&c, 0, sizeof(c));
    if (inet_pton(AF_INET, s, c.addr) == 1) {
        c.family = 4;
        c.prefix = CG_CIDR_V4_BITS;
    } else if (inet_pton(AF_INET6, s, c.addr) == 1) {
        c.family = 6;
        c.prefix = CG_CIDR_V6_BITS;
    } else {
        return CG_ERR_INVAL;
    }
    *out = c;
    return CG_ERR_OK;
}

/* Fold an IPv6 network inside ::ffff:0:0/96 into the IPv4 network it describes. */
static void cg_cidr_fold_mapped_(cg_cidr *c)
{
    if (c->family != 6 || c->prefix < CG_CIDR_MAPPED_BITS ||
        memcmp(c->addr, cg_cidr_mapped_head_, sizeof(cg_cidr_mapped_head_)) != 0) {
        return;
    }
    uint8_t v4[CG_CIDR_V4_BYTES];
    memcpy(v4, c->addr + sizeof(cg_cidr_mapped_head_), sizeof(v4));
    memset(c->addr, 0, sizeof(c->addr));
    memcpy(c->addr, v4, sizeof(v4));
    c->family = 4;
    c->prefix = (uint8_t)(c->prefix - CG_CIDR_MAPPED_BITS);
}

cg_err cg_ip_parse(const char *s, cg_cidr *out)
{
    cg_cidr c;
    if (s == NULL || strnlen(s, CG_CIDR_TEXT_MAX + 1) > CG_CIDR_TEXT_MAX) {
        return CG_ERR_INVAL;
    }
    cg_err err = cg_cidr_addr_(s, &c);
    if (err != CG_ERR_OK) {
        return err;
    }
    cg_cidr_fold_mapped_(&c);
    *out = c;
    return CG_ERR_OK;
}

/* "0".."128": digits only, no leading zero, at most CG_CIDR_PREFIX_DIGITS_MAX of them. */
static bool cg_cidr_prefix_parse_(const char *s, unsigned *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > CG_CIDR_PREFIX_DIGITS_MAX || (n > 1 && s[0] == '0')) {
        return false;
    }
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return true;
}

cg_err cg_cidr_parse(const char *s, cg_cidr *out)
{
    if (s == NULL) {
        return CG_ERR_INVAL;
    }
    const char *slash = strchr(s, '/');
    if (slash == NULL) {
        return cg_ip_parse(s, out);
    }
    char text[CG_CIDR_TEXT_MAX + 1];
    size_t al = (size_t)(slash - s);
    unsigned prefix;
    if (al == 0 || al > CG_CIDR_TEXT_MAX || !cg_cidr_prefix_parse_(slash + 1, &prefix)) {
        return CG_ERR_INVAL;
    }
    memcpy(text, s, al);
    text[al] = '\0';
    cg_cidr c;
    cg_err err = cg_cidr_addr_(text, &c);
    if (err != CG_ERR_OK) {
        return err;
    }
    unsigned bytes = c.family == 4 ? CG_CIDR_V4_BYTES : CG_CIDR_V6_BYTES;
    if (prefix > cg_cidr_bits_(c.family) || !cg_cidr_host_zero_(c.addr, prefix, bytes)) {
        return CG_ERR_INVAL;
    }
    c.prefix = (uint8_t)prefix;
    cg_cidr_fold_mapped_(&c);
    *out = c;
    return CG_ERR_OK;
}

size_t cg_cidr_format(const cg_cidr *c, char *buf, size_t cap)
{
    char text[INET6_ADDRSTRLEN];
    if (cap < CG_CIDR_FORMAT_MIN || (c->family != 4 && c->family != 6)) {
        return 0;
    }
    int af = c->family == 4 ? AF_INET : AF_INET6;
    if (inet_ntop(af, c->addr, text, sizeof(text)) == NULL) {
        return 0;
    }
    int n = snprintf(buf, cap, "%s/%u", text, (unsigned)c->prefix);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

int cg_cidr_contains(const cg_cidr *c, const cg_cidr *ip)
{
    if (c->family != ip->family || c->prefix > cg_cidr_bits_(c->family) || ip->prefix < c->prefix) {
        return 0;
    }
    return cg_cidr_prefix_eq_(c->addr, ip->addr, c->prefix) ? 1 : 0;
}

int cg_cidr_list_contains(const cg_cidr *list, size_t n, const cg_cidr *ip)
{
    for (size_t i = 0; i < n; i++) {
        if (cg_cidr_contains(&list[i], ip)) {
            return 1;
        }
    }
    return 0;
}
