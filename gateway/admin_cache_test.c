/*
 * admin_cache_test.c — unit tests of the gateway caches' issue-5 rules: drops
 * and clears by definition-change notices, the guard against an answer read
 * before a drop being cached after it, and a rotated key's previous secret
 * being a cache hit only until its grace period ends.
 */
#include <string.h>

#include "cg_clock.h"
#include "cg_test.h"
#include "gw_cache.h"
#include "gw_keycache.h"

#define TTL_MS 60000
#define GUARD_MS 1000

static proto_key mk_key(const char *id, uint8_t cur, uint8_t prev, int64_t prev_expires_ms)
{
    proto_key k;
    memset(&k, 0, sizeof(k));
    strcpy(k.id, id);
    strcpy(k.org, "acme");
    memset(k.hash, cur, sizeof(k.hash));
    memset(k.prev_hash, prev, sizeof(k.prev_hash));
    k.prev_expires_ms = prev_expires_ms;
    k.billing_anchor_day = 1;
    return k;
}

CG_TEST(keycache_previous_secret_until_expiry)
{
    static gw_keycache kc;
    uint8_t cur[32], prev[32];
    int64_t now = cg_mono_ms();
    memset(cur, 1, sizeof(cur));
    memset(prev, 2, sizeof(prev));
    gw_keycache_init(&kc, TTL_MS);

    /* Authenticated by the previous secret, grace still running: a hit. */
    proto_key k = mk_key("k_1", 1, 2, cg_now_ms() + 3600000);
    gw_keycache_put(&kc, &k, prev, now);
    CG_CHECK(gw_keycache_get(&kc, "k_1", prev, now + 1) != NULL);
    CG_CHECK(gw_keycache_get(&kc, "k_1", cur, now + 1) == NULL); /* other secret: ledger */

    /* The grace period is over (wall clock): a miss, whatever the TTL says. */
    k = mk_key("k_1", 1, 2, cg_now_ms() - 1);
    gw_keycache_put(&kc, &k, prev, now);
    CG_CHECK(gw_keycache_get(&kc, "k_1", prev, now + 1) == NULL);
    /* No previous secret at all (grace 0). */
    k = mk_key("k_1", 1, 0, 0);
    gw_keycache_put(&kc, &k, prev, now);
    CG_CHECK(gw_keycache_get(&kc, "k_1", prev, now + 1) == NULL);

    /* The current secret is a hit as before. */
    gw_keycache_put(&kc, &k, cur, now);
    CG_CHECK(gw_keycache_get(&kc, "k_1", cur, now + 1) != NULL);
    gw_keycache_fini(&kc);
}

CG_TEST(keycache_drop_clear_guard)
{
    static gw_keycache kc;
    uint8_t h[32];
    int64_t now = cg_mono_ms();
    memset(h, 1, sizeof(h));
    gw_keycache_init(&kc, TTL_MS);
    gw_keycache_set_guard(&kc, GUARD_MS);
    proto_key a = mk_key("k_a", 1, 0, 0), b = mk_key("k_b", 1, 0, 0);
    gw_keycache_put(&kc, &a, h, now);
    gw_keycache_put(&kc, &b, h, now);

    gw_keycache_drop(&kc, "k_a");
    CG_CHECK(gw_keycache_get(&kc, "k_a", h, now) == NULL);
    CG_CHECK(gw_keycache_get(&kc, "k_b", h, now) != NULL); /* only the named key */
    gw_keycache_drop(&kc, "k_unknown");                    /* no-op */

    /* An answer arriving within the guard may predate the drop: not cached. */
    gw_keycache_put(&kc, &a, h, cg_mono_ms());
    CG_CHECK(gw_keycache_get(&kc, "k_a", h, cg_mono_ms()) == NULL);
    /* After it, caching resumes. */
    int64_t later = cg_mono_ms() + GUARD_MS + 1;
    gw_keycache_put(&kc, &a, h, later);
    CG_CHECK(gw_keycache_get(&kc, "k_a", h, later) != NULL);

    /* A clear drops everything and guards every slot; the guard survives it. */
    gw_keycache_clear(&kc);
    CG_CHECK_EQ_INT(kc.guard_ms, GUARD_MS);
    CG_CHECK_EQ_INT(kc.ttl_ms, TTL_MS);
    CG_CHECK(gw_keycache_get(&kc, "k_b", h, now) == NULL);
    gw_keycache_put(&kc, &b, h, cg_mono_ms());
    CG_CHECK(gw_keycache_get(&kc, "k_b", h, cg_mono_ms()) == NULL);
    later = cg_mono_ms() + GUARD_MS + 1;
    gw_keycache_put(&kc, &b, h, later);
    CG_CHECK(gw_keycache_get(&kc, "k_b", h, later) != NULL);
    gw_keycache_fini(&kc);
}

CG_TEST(defs_cache_drop_clear_guard)
{
    static gw_cache c;
    gw_org_info o;
    gw_group_info g;
    int64_t now = cg_mono_ms();
    gw_cache_init(&c, TTL_MS);
    gw_cache_set_guard(&c, GUARD_MS);
    memset(&o, 0, sizeof(o));
    strcpy(o.id, "acme");
    o.anchor_day = 1;
    gw_group_info_from("acme", "team", NULL, &g);
    gw_cache_org_put(&c, &o, now);
    gw_cache_group_put(&c, &g, now);
    CG_CHECK(gw_cache_org_get(&c, "acme", now) != NULL);
    CG_CHECK(gw_cache_group_get(&c, "acme", "team", now) != NULL);

    gw_cache_drop_group(&c, "acme", "team");
    CG_CHECK(gw_cache_group_get(&c, "acme", "team", now) == NULL);
    CG_CHECK(gw_cache_org_get(&c, "acme", now) != NULL);
    gw_cache_drop_org(&c, "acme");
    CG_CHECK(gw_cache_org_get(&c, "acme", now) == NULL);

    gw_cache_org_put(&c, &o, cg_mono_ms()); /* within the guard: ignored */
    CG_CHECK(gw_cache_org_get(&c, "acme", cg_mono_ms()) == NULL);
    int64_t later = cg_mono_ms() + GUARD_MS + 1;
    gw_cache_org_put(&c, &o, later);
    gw_cache_group_put(&c, &g, later);
    CG_CHECK(gw_cache_org_get(&c, "acme", later) != NULL);
    CG_CHECK(gw_cache_group_get(&c, "acme", "team", later) != NULL);

    gw_cache_clear(&c);
    CG_CHECK_EQ_INT(c.guard_ms, GUARD_MS);
    CG_CHECK(gw_cache_org_get(&c, "acme", later) == NULL);
    CG_CHECK(gw_cache_group_get(&c, "acme", "team", later) == NULL);
    gw_cache_fini(&c);
}

int main(void)
{
    return CG_TEST_RUN(keycache_previous_secret_until_expiry, keycache_drop_clear_guard,
                       defs_cache_drop_clear_guard);
}
