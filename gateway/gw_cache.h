/*
 * gw_cache.h — per-worker caches of the org and group definitions a request
 * needs before its reservation (SPEC §3 scopes; docs/contracts.md "Issue 3").
 *
 * Only the fields the request path uses are kept (gw_org_info, gw_group_info),
 * not the whole records: an org's webhooks and secrets never enter a client
 * worker's memory, and a proxy can copy what it needs cheaply. Entries live
 * key_cache_ms, like the key cache, so a change reaches every worker within
 * that time. A group that does not exist is cached too (found = 0): keys
 * still naming a deleted group then cost no lookup per request.
 *
 * Direct-mapped tables (a colliding id replaces the entry), allocated lazily:
 * bounded memory, no eviction logic. One cache per worker loop; not
 * thread-safe.
 */
#ifndef GW_CACHE_H
#define GW_CACHE_H
#include <stdint.h>
#include "proto.h"

#define GW_CACHE_ORG_SLOTS 256
#define GW_CACHE_GROUP_SLOTS 1024

/* What the request path needs of an org. */
typedef struct gw_org_info {
    char id[PROTO_ID_MAX + 1];
    uint8_t anchor_day;    /* billing anchor, 1..28 (customer reserves carry it inline) */
    uint8_t on_low_budget; /* proto_low_budget */
    uint8_t customer_limit_n;
    proto_limit customer_limits[PROTO_LIMITS_MAX]; /* customer_defaults, passed inline */
} gw_org_info;

/* What the request path needs of a group. */
typedef struct gw_group_info {
    char org[PROTO_ID_MAX + 1];
    char id[PROTO_ID_MAX + 1];
    uint8_t found; /* 0: no such group (deleted); treated as no group */
    uint8_t model_n;
    char models[PROTO_MODELS_MAX][PROTO_MODEL_MAX + 1];
} gw_group_info;

typedef struct gw_cache_org {
    gw_org_info info;
    int64_t fetched_ms; /* cg_mono_ms() when the ledger answered */
} gw_cache_org;

typedef struct gw_cache_group {
    gw_group_info info;
    int64_t fetched_ms;
} gw_cache_group;

typedef struct gw_cache {
    uint32_t ttl_ms; /* 0 = caching off */
    gw_cache_org *orgs[GW_CACHE_ORG_SLOTS];
    gw_cache_group *groups[GW_CACHE_GROUP_SLOTS];
    /* Invalidation guard, as in gw_keycache: puts to a slot dropped (or a cache cleared)
     * less than guard_ms ago are ignored. 0 = off. */
    uint32_t guard_ms;
    int64_t cleared_ms;
    int64_t org_dropped_ms[GW_CACHE_ORG_SLOTS];
    int64_t group_dropped_ms[GW_CACHE_GROUP_SLOTS];
} gw_cache;

void gw_cache_init(gw_cache *c, uint32_t ttl_ms);
void gw_cache_fini(gw_cache *c);

/* The info of org record o. */
void gw_org_info_from(const proto_org *o, gw_org_info *out);
/* The info of group record g (found = 1), or of a missing group (g NULL). */
void gw_group_info_from(const char *org, const char *id, const proto_group *g, gw_group_info *out);

/* Fresh entry at now_ms (monotonic) or NULL. Valid until the next put or fini. */
const gw_org_info *gw_cache_org_get(gw_cache *c, const char *org, int64_t now_ms);
const gw_group_info *gw_cache_group_get(gw_cache *c, const char *org, const char *id,
                                        int64_t now_ms);

/* Remember an answer of the ledger (no-op when caching is off or out of memory). */
void gw_cache_org_put(gw_cache *c, const gw_org_info *info, int64_t now_ms);
void gw_cache_group_put(gw_cache *c, const gw_group_info *info, int64_t now_ms);

/* Drop one entry (a definition-change notice named it); no-op when absent. */
void gw_cache_drop_org(gw_cache *c, const char *org);
void gw_cache_drop_group(gw_cache *c, const char *org, const char *id);
/* Drop every entry (notices may have been missed). */
void gw_cache_clear(gw_cache *c);
/* Set guard_ms; kept across gw_cache_clear. */
void gw_cache_set_guard(gw_cache *c, uint32_t guard_ms);

#endif
