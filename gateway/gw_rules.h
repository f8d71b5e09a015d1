/*
 * gw_rules.h — the key's static rules (SPEC §3, docs/contracts.md "Issue 3"):
 * the client address and the IP allow/deny lists, allowed models with their
 * inheritance from the group, and the end customer a request counts as.
 *
 * These are checked without touching any counter, in the order of the
 * contract (key, IP, body, model, customer, max_tokens), by gw_proxy.c. Every
 * function here is pure and thread-safe, so the decision tables are unit
 * tested directly (rules_test.c).
 */
#ifndef GW_RULES_H
#define GW_RULES_H
#include <stddef.h>
#include <stdint.h>
#include "cg_cidr.h"
#include "cg_err.h"
#include "proto.h"

/* X-Forwarded-For entries walked per request; a longer chain of trusted hops is unknown. */
#define GW_XFF_HOPS_MAX 32
/* Customer ids: [A-Za-z0-9_.:@-]{1,GW_CUSTOMER_ID_MAX}. */
#define GW_CUSTOMER_ID_MAX 64
/* Request header naming the end customer. */
#define GW_CUSTOMER_HEADER "X-Capgate-Customer"

/*
 * The client address of a request. The socket peer (peer, textual) is the
 * client unless it is one of the n trusted proxies; then the X-Forwarded-For
 * values (xff[0..xff_n), in the order the headers arrived, each a
 * comma-separated list) are walked from the right, skipping addresses that
 * are trusted proxies too: the first one that is not is the client. If every
 * entry is a trusted proxy, the left-most is the client. Entries may carry a
 * port ("1.2.3.4:5678", "[2001:db8::1]:443"); IPv4-mapped IPv6 counts as IPv4.
 *
 * Returns CG_ERR_OK with *out, or CG_ERR_INVAL when the address cannot be
 * known: the peer is unparsable, or the walk reaches an entry that is not an
 * address (the caller then refuses a key that has IP rules).
 */
cg_err gw_client_ip(const char *peer, const char *const *xff, size_t xff_n, const cg_cidr *trusted,
                    uint32_t trusted_n, cg_cidr *out);

/*
 * The IP rules of key k for client address ip (NULL = unknown): 1 = allowed,
 * 0 = refused. The deny list wins; a non-empty allow list must contain ip.
 * A key without rules allows every client, an unknown address included.
 */
int gw_ip_allowed(const proto_key *k, const cg_cidr *ip);

/*
 * Whether model may be used: the key's allowed_models if it has any, else the
 * group's (group_models[0..group_n); group_n 0 when there is no group), else
 * every model. Exact, case-sensitive names.
 */
int gw_model_allowed(const proto_key *k, const char (*group_models)[PROTO_MODEL_MAX + 1],
                     uint8_t group_n, const char *model);

/* Whether s is a valid customer id ([A-Za-z0-9_.:@-]{1,GW_CUSTOMER_ID_MAX}). */
int gw_customer_id_valid(const char *s);

/* Outcome of gw_customer_resolve. */
typedef enum gw_customer_verdict {
    GW_CUSTOMER_OK = 0,          /* *out is the customer ("" = none) */
    GW_CUSTOMER_INVALID = 1,     /* 400 invalid_request; *param names the field */
    GW_CUSTOMER_NOT_ALLOWED = 2, /* 403 customer_not_allowed */
} gw_customer_verdict;

/*
 * The customer a request counts as. header is the X-Capgate-Customer value
 * (NULL if absent); user the body's "user" member (NULL if absent or JSON
 * null; user_is_string 0 when present with another type); bound the key's
 * customer ("" if none). The header wins over "user". A key bound to a
 * customer always counts as it, and a request naming another (by header, or
 * by "user" without the header) is not allowed. A named id must be valid
 * (gw_customer_id_valid). out has GW_CUSTOMER_ID_MAX + 1 bytes; *param is set
 * for GW_CUSTOMER_INVALID ("user" or the header name).
 */
gw_customer_verdict gw_customer_resolve(const char *header, const char *user, int user_is_string,
                                        const char *bound, char *out, const char **param);

#endif
