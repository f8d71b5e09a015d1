/*
 * gw_cache.c — per-worker org and group definition caches (see gw_cache.h).
 */
#include "gw_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

void gw_cache_org_put(gw_cache *c, const gw_org_info *info, int64_t now_ms)
{
    if (c->ttl_ms == 0) {
        return;
    }
    size_t i = cg_hash64(info->id, strlen(info->id)) % GW_CACHE_ORG_SLOTS;
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
    if (c->groups[i] == NULL && (c->groups[i] = malloc(sizeof(gw_cache_group))) == NULL) {
        return;
    }
    c->groups[i]->info = *info;
    c->groups[i]->fetched_ms = now_ms;
}
