/*
 * gw_keycache.c — per-worker cache of authenticated API keys (see gw_keycache.h).
 */
#include "gw_keycache.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
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

void gw_keycache_put(gw_keycache *kc, const proto_key *key, const uint8_t hash[32], int64_t now_ms)
{
    if (kc->ttl_ms == 0) {
        return;
    }
    size_t i = gw_keycache_slot(key->id);
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
