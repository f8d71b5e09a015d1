/*
 * gw_rules.c — client address, IP rules, allowed models, customer id
 * (see gw_rules.h for the contracts).
 *
 * X-Forwarded-For is believed only as far as the chain of trusted proxies
 * reaches: each trusted proxy appends the address it received the request
 * from, so walking from the right and skipping trusted proxies stops at the
 * first address no trusted party vouches beyond. Anything left of it was
 * written by the client and is ignored.
 */
#include "gw_rules.h"

#include <string.h>

/* Longest X-Forwarded-For entry parsed (an address with brackets and a port). */
#define GW_XFF_ENTRY_MAX 64

/*
 * Parse one X-Forwarded-For entry (s[0..n), blanks trimmed by the caller):
 * "1.2.3.4", "1.2.3.4:80", "2001:db8::1", "[2001:db8::1]", "[2001:db8::1]:443".
 */
static cg_err gw_xff_entry_parse(const char *s, size_t n, cg_cidr *out)
{
    char buf[GW_XFF_ENTRY_MAX + 1];
    if (n == 0 || n > GW_XFF_ENTRY_MAX) {
        return CG_ERR_INVAL;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *addr = buf;
    if (buf[0] == '[') {
        char *close = strchr(buf, ']');
        if (close == NULL || (close[1] != '\0' && close[1] != ':')) {
            return CG_ERR_INVAL;
        }
        *close = '\0';
        addr = buf + 1;
    } else {
        char *colon = strchr(buf, ':');
        if (colon != NULL && strchr(colon + 1, ':') == NULL) {
            *colon = '\0'; /* one colon: IPv4 with a port */
        }
    }
    return cg_ip_parse(addr, out);
}

static int gw_is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/*
 * The entry ending at end (exclusive) in v: [*start, end) trimmed. Returns the
 * position of the separating comma before it, or NULL if it is the first entry.
 */
static const char *gw_xff_prev(const char *v, const char *end, const char **s, size_t *n)
{
    const char *p = end;
    while (p > v && p[-1] != ',') {
        p--;
    }
    const char *a = p, *b = end;
    while (a < b && gw_is_blank(*a)) {
        a++;
    }
    while (b > a && gw_is_blank(b[-1])) {
        b--;
    }
    *s = a;
    *n = (size_t)(b - a);
    return p > v ? p - 1 : NULL;
}

cg_err gw_client_ip(const char *peer, const char *const *xff, size_t xff_n, const cg_cidr *trusted,
                    uint32_t trusted_n, cg_cidr *out)
{
    cg_cidr ip;
    if (peer == NULL || cg_ip_parse(peer, &ip) != CG_ERR_OK) {
        return CG_ERR_INVAL;
    }
    uint32_t hops = 0;
    for (size_t h = xff_n; h > 0; h--) {
        const char *v = xff[h - 1];
        const char *end = v + strlen(v);
        while (end != NULL) {
            if (!cg_cidr_list_contains(trusted, trusted_n, &ip)) {
                *out = ip;
                return CG_ERR_OK;
            }
            if (++hops > GW_XFF_HOPS_MAX) {
                return CG_ERR_INVAL;
            }
            const char *s;
            size_t n;
            const char *comma = gw_xff_prev(v, end, &s, &n);
            if (n == 0 && comma == NULL && end == v) {
                break; /* an empty header value: nothing in it */
            }
            if (gw_xff_entry_parse(s, n, &ip) != CG_ERR_OK) {
                return CG_ERR_INVAL;
            }
            end = comma;
        }
    }
    /* The peer and every forwarded address are trusted proxies: the left-most is the client. */
    *out = ip;
    return CG_ERR_OK;
}

int gw_ip_allowed(const proto_key *k, const cg_cidr *ip)
{
    uint8_t deny_n = k->ip_deny_n <= PROTO_CIDRS_MAX ? k->ip_deny_n : PROTO_CIDRS_MAX;
    uint8_t allow_n = k->ip_allow_n <= PROTO_CIDRS_MAX ? k->ip_allow_n : PROTO_CIDRS_MAX;
    if (deny_n == 0 && allow_n == 0) {
        return 1;
    }
    if (ip == NULL) {
        return 0;
    }
    if (cg_cidr_list_contains(k->ip_deny, deny_n, ip)) {
        return 0;
    }
    return allow_n == 0 || cg_cidr_list_contains(k->ip_allow, allow_n, ip);
}

static int gw_model_in(const char (*list)[PROTO_MODEL_MAX + 1], uint8_t n, const char *model)
{
    for (uint8_t i = 0; i < n && i < PROTO_MODELS_MAX; i++) {
        if (strcmp(list[i], model) == 0) {
            return 1;
        }
    }
    return 0;
}

int gw_model_allowed(const proto_key *k, const char (*group_models)[PROTO_MODEL_MAX + 1],
                     uint8_t group_n, const char *model)
{
    if (k->model_n > 0) {
        return gw_model_in(k->models, k->model_n, model);
    }
    if (group_n > 0 && group_models != NULL) {
        return gw_model_in(group_models, group_n, model);
    }
    return 1;
}

int gw_customer_id_valid(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '.' || c == ':' || c == '@' || c == '-';
        if (!ok || n >= GW_CUSTOMER_ID_MAX) {
            return 0;
        }
    }
    return n > 0;
}

gw_customer_verdict gw_customer_resolve(const char *header, const char *user, int user_is_string,
                                        const char *bound, char *out, const char **param)
{
    const char *named = NULL;
    if (header != NULL) {
        named = header;
        *param = GW_CUSTOMER_HEADER;
    } else if (user != NULL || !user_is_string) {
        if (!user_is_string) {
            *param = "user";
            return GW_CUSTOMER_INVALID;
        }
        named = user;
        *param = "user";
    }
    if (named != NULL && !gw_customer_id_valid(named)) {
        return GW_CUSTOMER_INVALID;
    }
    if (bound[0] != '\0') {
        if (named != NULL && strcmp(named, bound) != 0) {
            return GW_CUSTOMER_NOT_ALLOWED;
        }
        named = bound;
    }
    if (named == NULL) {
        out[0] = '\0';
    } else {
        memcpy(out, named, strlen(named) + 1);
    }
    return GW_CUSTOMER_OK;
}
