/*
 * clock_test.c — cg_now_ms with the static offset and the test clock file:
 * the file's seconds are picked up within the re-read interval, garbage,
 * oversized or missing files count as 0, and many threads reading the clock
 * while the file changes all see a sane value.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cg_clock.h"
#include "cg_test.h"

#define REREAD_WAIT_MS 120 /* comfortably above the 50 ms re-read interval */
#define SLACK_MS 2000      /* scheduling noise tolerated around an expected offset */
#define DAY_MS 86400000LL
#define THREADS 8

static char clock_path[64];

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Replace the clock file's content atomically (write a temp file, rename). */
static int write_clock(const char *text)
{
    char tmp[80];
    snprintf(tmp, sizeof(tmp), "%s.tmp", clock_path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        return -1;
    }
    fputs(text, f);
    if (fclose(f) != 0) {
        return -1;
    }
    return rename(tmp, clock_path);
}

/* The current offset of cg_now_ms from the real clock, after the re-read interval. */
static int64_t offset_after_wait(void)
{
    sleep_ms(REREAD_WAIT_MS);
    (void)cg_now_ms(); /* this call may be the one that re-reads */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t real = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    return cg_now_ms() - real;
}

static int near(int64_t got, int64_t want)
{
    if (got < want - SLACK_MS || got > want + SLACK_MS) {
        fprintf(stderr, "  offset %lld, want %lld\n", (long long)got, (long long)want);
        return 0;
    }
    return 1;
}

CG_TEST(static_offset)
{
    cg_clock_set_offset_ms(DAY_MS);
    CG_CHECK(near(offset_after_wait(), DAY_MS));
    cg_clock_set_offset_ms(0);
    CG_CHECK(near(offset_after_wait(), 0));
}

CG_TEST(file_offsets)
{
    snprintf(clock_path, sizeof(clock_path), "/tmp/cg_clock_test_%ld", (long)getpid());
    CG_CHECK_EQ_INT(write_clock("86400\n"), 0);
    cg_clock_set_file(clock_path);
    CG_CHECK(near(cg_now_ms() - (int64_t)time(NULL) * 1000, DAY_MS)); /* read at once */
    CG_CHECK_EQ_INT(write_clock("  -3600  \n"), 0);
    CG_CHECK(near(offset_after_wait(), -3600000));
    CG_CHECK_EQ_INT(write_clock("+1.5"), 0);
    CG_CHECK(near(offset_after_wait(), 1500));
    cg_clock_set_offset_ms(DAY_MS); /* the file adds to the static offset */
    CG_CHECK_EQ_INT(write_clock("172800"), 0);
    CG_CHECK(near(offset_after_wait(), 3 * DAY_MS));
    cg_clock_set_offset_ms(0);
    CG_CHECK(near(offset_after_wait(), 2 * DAY_MS));
}

CG_TEST(file_garbage_is_zero)
{
    static const char *const garbage[] = {
        "abc",        "12abc", "",     "   ", "--5", "1.2.3", "9999999999999999999999",
        "3155760001", "1e5",   "0x10", "5 6",
    };
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        CG_CHECK_EQ_INT(write_clock("86400"), 0);
        CG_CHECK(near(offset_after_wait(), DAY_MS));
        CG_CHECK_EQ_INT(write_clock(garbage[i]), 0);
        if (!near(offset_after_wait(), 0)) {
            fprintf(stderr, "  garbage \"%s\" not read as 0\n", garbage[i]);
            CG_CHECK(0);
        }
    }
    char big[200];
    memset(big, ' ', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    big[0] = '7';
    CG_CHECK_EQ_INT(write_clock("86400"), 0);
    CG_CHECK(near(offset_after_wait(), DAY_MS));
    CG_CHECK_EQ_INT(write_clock(big), 0); /* too long to be a number of seconds */
    CG_CHECK(near(offset_after_wait(), 0));
    CG_CHECK_EQ_INT(write_clock("86400"), 0);
    CG_CHECK(near(offset_after_wait(), DAY_MS));
    CG_CHECK_EQ_INT(unlink(clock_path), 0); /* missing */
    CG_CHECK(near(offset_after_wait(), 0));
}

static atomic_int stop;
static atomic_int bad_reads;

/* Read the clock in a loop; every value must be within a day of the real clock or 2 days on. */
static void *reader(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        int64_t off = cg_now_ms() - (int64_t)time(NULL) * 1000;
        if (!(off > -SLACK_MS && off < SLACK_MS) &&
            !(off > DAY_MS - SLACK_MS && off < DAY_MS + SLACK_MS)) {
            atomic_fetch_add(&bad_reads, 1);
        }
    }
    return NULL;
}

CG_TEST(threads_share_the_file)
{
    pthread_t t[THREADS];
    CG_CHECK_EQ_INT(write_clock("0"), 0);
    CG_CHECK(near(offset_after_wait(), 0));
    for (int i = 0; i < THREADS; i++) {
        CG_CHECK_EQ_INT(pthread_create(&t[i], NULL, reader, NULL), 0);
    }
    for (int i = 0; i < 10; i++) {
        write_clock(i % 2 ? "0" : "86400");
        sleep_ms(30);
    }
    CG_CHECK_EQ_INT(write_clock("86400"), 0);
    sleep_ms(REREAD_WAIT_MS);
    atomic_store(&stop, 1);
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
    }
    CG_CHECK_EQ_INT(atomic_load(&bad_reads), 0);
    CG_CHECK(near(offset_after_wait(), DAY_MS));
    cg_clock_set_file(NULL);
    CG_CHECK(near(offset_after_wait(), 0));
    unlink(clock_path);
}

int main(void)
{
    return CG_TEST_RUN(static_offset, file_offsets, file_garbage_is_zero, threads_share_the_file);
}
