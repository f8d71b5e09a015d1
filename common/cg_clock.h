/*
 * cg_clock.h — the one wall clock of every capgate process.
 *
 * All period, lease, expiry and retry arithmetic reads cg_now_ms(). Tests (and
 * only tests) shift it through the `clock_offset_s` directive so roll-overs are
 * tested in seconds, not days. cg_mono_ms() is for measuring durations only.
 * Thread-safe; the offset is set once at start-up before threads exist.
 */
#ifndef CG_CLOCK_H
#define CG_CLOCK_H
#include <stdint.h>

/* Unix time in milliseconds, plus the configured test offset. */
int64_t cg_now_ms(void);
/* Monotonic milliseconds / microseconds since an arbitrary point. */
int64_t cg_mono_ms(void);
int64_t cg_mono_us(void);
/* Set the offset added to cg_now_ms(); call before starting threads. */
void cg_clock_set_offset_ms(int64_t offset_ms);
/*
 * Tests only: take the offset from a file holding a decimal number of seconds
 * (added to the static offset), re-read at most every 50 ms by whichever
 * thread calls cg_now_ms first after that. A missing or unreadable file
 * counts as 0. Call before starting threads; path is copied.
 */
void cg_clock_set_file(const char *path);

#endif
