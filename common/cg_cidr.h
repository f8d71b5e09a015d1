/*
 * cg_cidr.h — IPv4/IPv6 networks: parse "10.0.0.0/8", "2001:db8::/32", a bare
 * address (a /32 or /128), and match an address against a list.
 *
 * IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are matched as the IPv4 address
 * they carry, so a client reaching a dual-stack listener is judged by its real
 * IPv4 address. Pure functions; thread-safe. Uses inet_pton (no hand parsing).
 */
#ifndef CG_CIDR_H
#define CG_CIDR_H
#include <stddef.h>
#include <stdint.h>
#include "cg_err.h"

/* An IP network: family 4 or 6, prefix 0..32 / 0..128, addr in network order
 * (IPv4 in the first 4 bytes), bits past the prefix zero. */
typedef struct cg_cidr {
    uint8_t family;
    uint8_t prefix;
    uint8_t addr[16];
} cg_cidr;

/* Parse a CIDR or bare address; host bits past the prefix must be zero
 * ("10.1.2.3/8" is CG_ERR_INVAL: it is almost always a typo). */
cg_err cg_cidr_parse(const char *s, cg_cidr *out);
/* Print as "10.0.0.0/8" / "2001:db8::/32". Returns length, 0 if cap < 50. */
size_t cg_cidr_format(const cg_cidr *c, char *buf, size_t cap);
/* Parse a textual address (v4, v6, v4-mapped v6 normalised to v4) into a /32 or /128. */
cg_err cg_ip_parse(const char *s, cg_cidr *out);
/* Does network c contain address ip (a /32 or /128 from cg_ip_parse)? */
int cg_cidr_contains(const cg_cidr *c, const cg_cidr *ip);
/* Does any of the n networks contain ip? */
int cg_cidr_list_contains(const cg_cidr *list, size_t n, const cg_cidr *ip);

#endif
