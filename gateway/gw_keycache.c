/*
 * gw_keycache.c — per-worker cache of authenticated API keys (see gw_keycache.h).
 */
#include "gw_keycache.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include "cg_clock.h"
#include "cg_ring.h"

void gw_keycache_init(gw_keycache *kc, uint32_t ttl_ms)
{
    memset(kc, 0, sizeof(*kc));
    kc->ttl_ms = ttl_ms;
}

void gw_keycache_fini(gw_keycache *kc)
{
    for (size_t i = 0; i < GW_KEYCACHE_SLOTS; i++) {
        free(kc->slots[i]);
        kc->slots[i] = NULL;
    }
}

static size_t gw_keycache_slot(const char *id)
{
    return (size_t)(cg_hash64(id, strlen(id)) % GW_KEYCACHE_SLOTS);
}

const proto_key *gw_keycache_get(gw_keycache *kc, const char *id, const uint8_t hash[32],
                                 int64_t now_ms)
{
    if (kc->ttl_ms == 0) {
        return NULL;
    }
    gw_keycache_entry *e = kc->slots[gw_keycache_slot(id)];
    if (e == NULL || strcmp(e->key.id, id) != 0 || now_ms - e->fetched_ms >= kc->ttl_ms) {
        return NULL;
    }
    if (CRYPTO_memcmp(e->hash, hash, 32) != 0) {
        return NULL;
    }
    /* Authenticated by the previous secret of a rotated key: only until its grace period
     * ends (wall clock, as the ledger judges it), whatever the cache's TTL. */
    if (CRYPTO_memcmp(e->hash, e->key.hash, 32) != 0 &&
        (e->key.prev_expires_ms == 0 || cg_now_ms() >= e->key.prev_expires_ms)) {
        return NULL;
    }
    return &e->key;
}

const proto_key *gw_keycache_hint(gw_keycache *kc, const char *id, const uint8_t hash[32])
{
    if (kc->ttl_ms == 0) {
        return NULL;
    }
    gw_keycache_entry *e = kc->slots[gw_keycache_slot(id)];
    if (e == NULL || strcmp(e->key.id, id) != 0 || CRYPTO_memcmp(e->hash, hash, 32) != 0) {
        return NULL;
    }
    return &e->key;
}

/* A drop (or clear) of slot i so recent that a lookup in flight may predate it. */
static int gw_keycache_guarded(const gw_keycache *kc, size_t i, int64_t now_ms)
{
    return kc->guard_ms != 0 &&
           ((kc->cleared_ms != 0 && now_ms - kc->cleared_ms < kc->guard_ms) ||
            (kc->dropped_ms[i] != 0 && now_ms - kc->dropped_ms[i] < kc->guard_ms));
}

void gw_keycache_put(gw_keycache *kc, const proto_key *key, const uint8_t hash[32], int64_t now_ms)
{
    if (kc->ttl_ms == 0) {
        return;
    }
    size_t i = gw_keycache_slot(key->id);
    if (gw_keycache_guarded(kc, i, now_ms)) {
        return;
    }
    gw_keycache_entry *e = kc->slots[i];
    if (e == NULL) {
        e = malloc(sizeof(*e));
        if (e == NULL) {
            return;
        }
        kc->slots[i] = e;
    }
    e->key = *key;
    memcpy(e->hash, hash, 32);
    e->fetched_ms = now_ms;
}

void gw_keycache_drop(gw_keycache *kc, const char *id)
{
    size_t i = gw_keycache_slot(id);
    kc->dropped_ms[i] = cg_mono_ms();
    if (kc->slots[i] != NULL && strcmp(kc->slots[i]->key.id, id) == 0) {
        OPENSSL_cleanse(kc->slots[i], sizeof(*kc->slots[i]));
        free(kc->slots[i]);
        kc->slots[i] = NULL;
    }
}

void gw_keycache_clear(gw_keycache *kc)
{
    uint32_t ttl = kc->ttl_ms, guard = kc->guard_ms;
    int had = 0;
    for (size_t i = 0; i < GW_KEYCACHE_SLOTS && !had; i++) {
        had = kc->slots[i] != NULL;
    }
    gw_keycache_fini(kc);
    gw_keycache_init(kc, ttl);
    kc->guard_ms = guard;
    /* Guard only a cache that held entries: the first connection of a fresh worker clears
     * an empty cache, and lookups before it saw no older definition than the ledger's. */
    kc->cleared_ms = had ? cg_mono_ms() : 0;
}

void gw_keycache_set_guard(gw_keycache *kc, uint32_t guard_ms)
{
    kc->guard_ms = guard_ms;
}
