/*
 * ring_test.c — balance, minimal movement and order independence of the ring.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_ring.h"
#include "cg_test.h"

#define RING_TEST_KEYS 100000

static size_t ring_test_key(int i, char *buf, size_t cap)
{
    return (size_t)snprintf(buf, cap, "key:k_%d", i);
}

/* owner[i] = shard name of key i under the ring built from names. */
static int ring_test_owners(const char *const *names, size_t n, const char **owner)
{
    cg_ring r;
    if (cg_ring_init(&r, names, n) != CG_ERR_OK) {
        return -1;
    }
    for (int i = 0; i < RING_TEST_KEYS; i++) {
        char k[32];
        size_t kl = ring_test_key(i, k, sizeof(k));
        uint16_t s = cg_ring_lookup(&r, k, kl);
        if (s >= n) {
            cg_ring_fini(&r);
            return -1;
        }
        owner[i] = names[s];
    }
    cg_ring_fini(&r);
    return 0;
}

CG_TEST(ring_balance)
{
    static const char *owner[RING_TEST_KEYS];
    const char *names[] = {"s0", "s1", "s2"};
    CG_CHECK(ring_test_owners(names, 3, owner) == 0);
    for (int s = 0; s < 3; s++) {
        int count = 0;
        for (int i = 0; i < RING_TEST_KEYS; i++) {
            count += owner[i] == names[s];
        }
        printf("  %s owns %d keys\n", names[s], count);
        CG_CHECK(count >= RING_TEST_KEYS * 28 / 100 && count <= RING_TEST_KEYS * 38 / 100);
    }
}

CG_TEST(ring_add_shard_moves_to_new_only)
{
    static const char *before[RING_TEST_KEYS], *after[RING_TEST_KEYS];
    const char *three[] = {"s0", "s1", "s2"};
    const char *four[] = {"s0", "s1", "s2", "s3"};
    CG_CHECK(ring_test_owners(three, 3, before) == 0);
    CG_CHECK(ring_test_owners(four, 4, after) == 0);
    int moved = 0;
    for (int i = 0; i < RING_TEST_KEYS; i++) {
        if (strcmp(before[i], after[i]) != 0) {
            moved++;
            CG_CHECK_EQ_STR(after[i], "s3");
        }
    }
    printf("  moved %d keys\n", moved);
    CG_CHECK(moved >= RING_TEST_KEYS * 20 / 100 && moved <= RING_TEST_KEYS * 30 / 100);
}

CG_TEST(ring_order_independent)
{
    static const char *a[RING_TEST_KEYS], *b[RING_TEST_KEYS], *c[RING_TEST_KEYS];
    const char *n1[] = {"s0", "s1", "s2", "s3"};
    const char *n2[] = {"s3", "s1", "s0", "s2"};
    const char *n3[] = {"s2", "s3", "s0", "s1"};
    CG_CHECK(ring_test_owners(n1, 4, a) == 0);
    CG_CHECK(ring_test_owners(n2, 4, b) == 0);
    CG_CHECK(ring_test_owners(n3, 4, c) == 0);
    for (int i = 0; i < RING_TEST_KEYS; i++) {
        CG_CHECK_EQ_STR(a[i], b[i]);
        CG_CHECK_EQ_STR(a[i], c[i]);
    }
}

CG_TEST(ring_points_sorted)
{
    const char *names[] = {"alpha", "beta"};
    cg_ring r;
    CG_CHECK(cg_ring_init(&r, names, 2) == CG_ERR_OK);
    CG_CHECK_EQ_INT(r.point_n, 2 * CG_RING_POINTS_PER_SHARD);
    CG_CHECK_EQ_INT(r.shard_n, 2);
    int sorted = 1;
    for (size_t i = 1; i < r.point_n; i++) {
        sorted &= r.points[i - 1].hash <= r.points[i].hash;
    }
    /* A key hashing past the last point wraps to the first. */
    uint16_t first = r.points[0].shard;
    cg_ring_fini(&r);
    CG_CHECK(sorted);
    CG_CHECK(first < 2);
}

CG_TEST(ring_rejects_bad_names)
{
    cg_ring r;
    const char *dup[] = {"s0", "s0"};
    const char *empty[] = {""};
    const char *longn[] = {"a-name-that-is-longer-than-31-chars"};
    CG_CHECK_EQ_INT(cg_ring_init(&r, dup, 2), CG_ERR_INVAL);
    CG_CHECK_EQ_INT(cg_ring_init(&r, empty, 1), CG_ERR_INVAL);
    CG_CHECK_EQ_INT(cg_ring_init(&r, longn, 1), CG_ERR_INVAL);
    CG_CHECK_EQ_INT(cg_ring_init(&r, dup, 0), CG_ERR_INVAL);
    const char *one[] = {"only"};
    CG_CHECK(cg_ring_init(&r, one, 1) == CG_ERR_OK);
    CG_CHECK_EQ_INT(cg_ring_lookup(&r, "key:x", 5), 0);
    cg_ring_fini(&r);
}

CG_TEST(ring_hash_is_xxh3)
{
    /* XXH3_64bits("") with the default secret, a published test vector. */
    CG_CHECK(cg_hash64("", 0) == 0x2D06800538D394C2ULL);
}

int main(void)
{
    return CG_TEST_RUN(ring_balance, ring_add_shard_moves_to_new_only, ring_order_independent,
                       ring_points_sorted, ring_rejects_bad_names, ring_hash_is_xxh3);
}
