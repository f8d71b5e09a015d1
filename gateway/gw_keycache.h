/*
 * gw_keycache.h — per-worker cache of authenticated API keys.
 *
 * Maps a key id to the key record the ledger returned and the HMAC of the key
 * string that authenticated it, for key_cache_ms. A hit needs the same id AND
 * the same HMAC (compared in constant time), so a wrong secret for a cached id
 * is never accepted from the cache; failures are never cached, so a revoked or
 * unknown key is looked up every time. An entry authenticated by a rotated
 * key's previous secret is a hit only until that secret's prev_expires_ms
 * (wall clock), whatever the TTL. Definition-change notices drop entries
 * (gw_notify.c) so a revoke or PATCH is seen before the TTL ends. Direct-mapped (GW_KEYCACHE_SLOTS slots,
 * a colliding id replaces the entry): bounded memory, no eviction logic.
 *
 * One cache per worker loop; not thread-safe.
 */
#ifndef GW_KEYCACHE_H
#define GW_KEYCACHE_H
#include <stdint.h>
#include "proto.h"

#define GW_KEYCACHE_SLOTS 1024

typedef struct gw_keycache_entry {
    proto_key key;
    uint8_t hash[32];
    int64_t fetched_ms; /* cg_mono_ms() when the ledger answered */
} gw_keycache_entry;

typedef struct gw_keycache {
    uint32_t ttl_ms; /* 0 = caching off */
    gw_keycache_entry *slots[GW_KEYCACHE_SLOTS];
    /* Invalidation (gw_keycache_drop / _clear): for guard_ms after a drop of a slot (or a
     * clear) puts to it are ignored, since a lookup started before the drop may answer
     * with the old record; guard_ms >= the ledger timeout makes that exact. 0 = off. */
    uint32_t guard_ms;
    int64_t cleared_ms;                    /* cg_mono_ms() of the last clear; 0 = never */
    int64_t dropped_ms[GW_KEYCACHE_SLOTS]; /* of the last drop per slot; 0 = never */
} gw_keycache;

void gw_keycache_init(gw_keycache *kc, uint32_t ttl_ms);
void gw_keycache_fini(gw_keycache *kc);

/* The cached key for (id, hash) if fresh at now_ms (monotonic); NULL otherwise.
 * The pointer is valid until the next put or fini. */
const proto_key *gw_keycache_get(gw_keycache *kc, const char *id, const uint8_t hash[32],
                                 int64_t now_ms);

/*
 * The entry for (id, hash) whatever its age; NULL if none. Only a hint: the
 * org and group a key had when it was last seen, so their definitions can be
 * fetched in parallel with the key's re-authentication. Never authenticates.
 */
const proto_key *gw_keycache_hint(gw_keycache *kc, const char *id, const uint8_t hash[32]);

/* Remember a successful authentication (no-op when caching is off or out of memory). */
void gw_keycache_put(gw_keycache *kc, const proto_key *key, const uint8_t hash[32], int64_t now_ms);

/* Drop the entry of key id (a definition-change notice named it); no-op when absent. */
void gw_keycache_drop(gw_keycache *kc, const char *id);
/* Drop every entry (notices may have been missed). */
void gw_keycache_clear(gw_keycache *kc);
/* Set guard_ms (see gw_keycache); kept across gw_keycache_clear. */
void gw_keycache_set_guard(gw_keycache *kc, uint32_t guard_ms);

#endif
