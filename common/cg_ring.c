/*
 * cg_ring.c — ketama-style consistent-hash ring over the shard names.
 *
 * Invariants: points are sorted by (hash, shard name), so the ring — and the
 * owner of every key — depends only on the set of names, never on their order
 * in the list (equal hashes are astronomically rare, but even then the name
 * decides). The shard index stored in each point refers to the caller's list.
 * Immutable after cg_ring_init; lookups are lock-free reads.
 */
#include "cg_ring.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* "<name>#<i>": 31-byte name, '#', up to 3 digits, NUL. */
#define CG_RING_POINT_KEY_MAX (CG_SHARD_NAME_MAX + 8)

typedef struct cg_ring_sort_point {
    uint64_t hash;
    uint16_t shard;
    const char *name;
} cg_ring_sort_point;

uint64_t cg_hash64(const void *p, size_t n)
{
    return XXH3_64bits(p, n);
}

static int cg_ring_point_cmp_(const void *a, const void *b)
{
    const cg_ring_sort_point *x = a, *y = b;
    if (x->hash != y->hash) {
        return x->hash < y->hash ? -1 : 1;
    }
    return strcmp(x->name, y->name);
}

static cg_err cg_ring_check_names_(const char *const *names, size_t n)
{
    if (names == NULL || n < 1 || n > CG_SHARDS_MAX) {
        return CG_ERR_INVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (names[i] == NULL || names[i][0] == '\0' || strlen(names[i]) > CG_SHARD_NAME_MAX) {
            return CG_ERR_INVAL;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(names[i], names[j]) == 0) {
                return CG_ERR_INVAL;
            }
        }
    }
    return CG_ERR_OK;
}

cg_err cg_ring_init(cg_ring *r, const char *const *names, size_t n)
{
    cg_err err = cg_ring_check_names_(names, n);
    if (err != CG_ERR_OK) {
        return err;
    }
    size_t pn = n * CG_RING_POINTS_PER_SHARD;
    cg_ring_sort_point *tmp = calloc(pn, sizeof(*tmp));
    cg_ring_point *pts = calloc(pn, sizeof(*pts));
    if (tmp == NULL || pts == NULL) {
        err = CG_ERR_NOMEM;
        goto fail;
    }
    for (size_t s = 0; s < n; s++) {
        for (size_t i = 0; i < CG_RING_POINTS_PER_SHARD; i++) {
            char key[CG_RING_POINT_KEY_MAX];
            int kn = snprintf(key, sizeof(key), "%s#%zu", names[s], i);
            cg_ring_sort_point *p = &tmp[s * CG_RING_POINTS_PER_SHARD + i];
            p->hash = cg_hash64(key, (size_t)kn);
            p->shard = (uint16_t)s;
            p->name = names[s];
        }
    }
    qsort(tmp, pn, sizeof(*tmp), cg_ring_point_cmp_);
    for (size_t i = 0; i < pn; i++) {
        pts[i].hash = tmp[i].hash;
        pts[i].shard = tmp[i].shard;
    }
    free(tmp);
    r->shard_n = (uint16_t)n;
    r->points = pts;
    r->point_n = pn;
    return CG_ERR_OK;
fail:
    free(tmp);
    free(pts);
    return err;
}

void cg_ring_fini(cg_ring *r)
{
    if (r == NULL) {
        return;
    }
    free(r->points);
    r->points = NULL;
    r->point_n = 0;
    r->shard_n = 0;
}

uint16_t cg_ring_lookup(const cg_ring *r, const char *key, size_t len)
{
    assert(r != NULL && r->point_n > 0 && "ring used before cg_ring_init");
    uint64_t h = cg_hash64(key, len);
    /* First point with hash >= h; past the last point the ring wraps to the first. */
    size_t lo = 0, hi = r->point_n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->points[mid].hash < h) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return r->points[lo == r->point_n ? 0 : lo].shard;
}
