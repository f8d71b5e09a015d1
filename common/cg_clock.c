/*
 * cg_clock.c — wall and monotonic clocks.
 *
 * The offset is written once at start-up, before any thread exists, and only
 * read afterwards; a relaxed atomic keeps that race-free under TSan anyway.
 */
#include "cg_clock.h"

#include <stdatomic.h>
#include <time.h>

static _Atomic int64_t cg_clock_offset_ms_;

static int64_t cg_clock_read_ns_(clockid_t id)
{
    struct timespec ts;
    /* clock_gettime cannot fail for these clock ids on Linux. */
    (void)clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + (int64_t)ts.tv_nsec;
}

int64_t cg_now_ms(void)
{
    return cg_clock_read_ns_(CLOCK_REALTIME) / 1000000LL +
           atomic_load_explicit(&cg_clock_offset_ms_, memory_order_relaxed);
}

int64_t cg_mono_ms(void)
{
    return cg_clock_read_ns_(CLOCK_MONOTONIC) / 1000000LL;
}

int64_t cg_mono_us(void)
{
    return cg_clock_read_ns_(CLOCK_MONOTONIC) / 1000LL;
}

void cg_clock_set_offset_ms(int64_t offset_ms)
{
    atomic_store_explicit(&cg_clock_offset_ms_, offset_ms, memory_order_relaxed);
}
