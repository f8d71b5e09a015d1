/*
 * gw_cache.c — per-worker org and group definition caches (see gw_cache.h).
 */
#include "gw_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cg_clock.h"
#include "cg_ring.h"

void gw_cache_init(gw_cache *c, uint32_t ttl_ms)
{
    memset(c, 0, sizeof(*c));
    c->ttl_ms = ttl_ms;
}

void gw_cache_fini(gw_cache *c)
{
    for (size_t i = 0; i < GW_CACHE_ORG_SLOTS; i++) {
        free(c->orgs[i]);
        c->orgs[i] = NULL;
    }
    for (size_t i = 0; i < GW_CACHE_GROUP_SLOTS; i++) {
        free(c->groups[i]);
        c->groups[i] = NULL;
    }
}

void gw_org_info_from(const proto_org *o, gw_org_info *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->id, sizeof(out->id), "%s", o->id);
    out->anchor_day = o->billing_anchor_day;
    out->on_low_budget = o->on_low_budget;
    out->customer_limit_n = o->customer_limit_n <= PROTO_LIMITS_MAX ? o->customer_limit_n : 0;
    memcpy(out->customer_limits, o->customer_limits,
           sizeof(out->customer_limits[0]) * out->customer_limit_n);
}

void gw_group_info_from(const char *org, const char *id, const proto_group *g, gw_group_info *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->org, sizeof(out->org), "%s", org);
    snprintf(out->id, sizeof(out->id), "%s", id);
    if (g == NULL) {
        return;
    }
    out->found = 1;
    out->model_n = g->model_n <= PROTO_MODELS_MAX ? g->model_n : 0;
    memcpy(out->models, g->models, sizeof(out->models[0]) * out->model_n);
}

static size_t gw_cache_hash2(const char *a, const char *b, size_t slots)
{
    /* Hash "a/b" without building it: the ids never contain '/'. */
    uint64_t h = cg_hash64(a, strlen(a)) * 31u + cg_hash64(b, strlen(b));
    return (size_t)(h % slots);
}

const gw_org_info *gw_cache_org_get(gw_cache *c, const char *org, int64_t now_ms)
{
    if (c->ttl_ms == 0) {
        return NULL;
    }
    gw_cache_org *e = c->orgs[cg_hash64(org, strlen(org)) % GW_CACHE_ORG_SLOTS];
    if (e == NULL || strcmp(e->info.id, org) != 0 || now_ms - e->fetched_ms >= c->ttl_ms) {
        return NULL;
    }
    return &e->info;
}

const gw_group_info *gw_cache_group_get(gw_cache *c, const char *org, const char *id,
                                        int64_t now_ms)
{
    if (c->ttl_ms == 0) {
        return NULL;
    }
    gw_cache_group *e = c->groups[gw_cache_hash2(org, id, GW_CACHE_GROUP_SLOTS)];
    if (e == NULL || strcmp(e->info.org, org) != 0 || strcmp(e->info.id, id) != 0 ||
        now_ms - e->fetched_ms >= c->ttl_ms) {
        return NULL;
    }
    return &e->info;
}

/* A drop of this slot (dropped_ms) or a clear so recent that a lookup may predate it. */
static int gw_cache_guarded(const gw_cache *c, int64_t dropped_ms, int64_t now_ms)
{
    return c->guard_ms != 0 && ((c->cleared_ms != 0 && now_ms - c->cleared_ms < c->guard_ms) ||
                                (dropped_ms != 0 && now_ms - dropped_ms < c->guard_ms));
}

void gw_cache_org_put(gw_cache *c, const gw_org_info *info, int64_t now_ms)
{
    if (c->ttl_ms == 0) {
        return;
    }
    size_t i = cg_hash64(info->id, strlen(info->id)) % GW_CACHE_ORG_SLOTS;
    if (gw_cache_guarded(c, c->org_dropped_ms[i], now_ms)) {
        return;
    }
    if (c->orgs[i] == NULL && (c->orgs[i] = malloc(sizeof(gw_cache_org))) == NULL) {
        return;
    }
    c->orgs[i]->info = *info;
    c->orgs[i]->fetched_ms = now_ms;
}

void gw_cache_group_put(gw_cache *c, const gw_group_info *info, int64_t now_ms)
{
    if (c->ttl_ms == 0) {
        return;
    }
    size_t i = gw_cache_hash2(info->org, info->id, GW_CACHE_GROUP_SLOTS);
    if (gw_cache_guarded(c, c->group_dropped_ms[i], now_ms)) {
        return;
    }
    if (c->groups[i] == NULL && (c->groups[i] = malloc(sizeof(gw_cache_group))) == NULL) {
        return;
    }
    c->groups[i]->info = *info;
    c->groups[i]->fetched_ms = now_ms;
}

/* ---- invalidation by definition-change notices (gw_notify.c) ---- */

void gw_cache_drop_org(gw_cache *c, const char *org)
{
    size_t i = cg_hash64(org, strlen(org)) % GW_CACHE_ORG_SLOTS;
    c->org_dropped_ms[i] = cg_mono_ms();
    if (c->orgs[i] != NULL && strcmp(c->orgs[i]->info.id, org) == 0) {
        free(c->orgs[i]);
        c->orgs[i] = NULL;
    }
}

void gw_cache_drop_group(gw_cache *c, const char *org, const char *id)
{
    size_t i = gw_cache_hash2(org, id, GW_CACHE_GROUP_SLOTS);
    gw_cache_group *e = c->groups[i];
    c->group_dropped_ms[i] = cg_mono_ms();
    if (e != NULL && strcmp(e->info.org, org) == 0 && strcmp(e->info.id, id) == 0) {
        free(e);
        c->groups[i] = NULL;
    }
}

void gw_cache_clear(gw_cache *c)
{
    uint32_t ttl = c->ttl_ms, guard = c->guard_ms;
    int had = 0;
    for (size_t i = 0; i < GW_CACHE_ORG_SLOTS && !had; i++) {
        had = c->orgs[i] != NULL;
    }
    for (size_t i = 0; i < GW_CACHE_GROUP_SLOTS && !had; i++) {
        had = c->groups[i] != NULL;
    }
    gw_cache_fini(c);
    gw_cache_init(c, ttl);
    c->guard_ms = guard;
    c->cleared_ms = had ? cg_mono_ms() : 0; /* as gw_keycache_clear */
}

void gw_cache_set_guard(gw_cache *c, uint32_t guard_ms)
{
    c->guard_ms = guard_ms;
}
