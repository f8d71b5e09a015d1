/*
 * cg_test.h — the tiny shared unit-test harness (in the manner of nng's nuts.h).
 *
 *   CG_TEST(ring_balance) { CG_CHECK(x == 1); CG_CHECK_EQ_INT(a, b); }
 *   int main(void) { return CG_TEST_RUN(ring_balance, ring_stability); }
 *
 * Each check failure prints file:line and the expression, marks the test
 * failed and continues with the next test. The run prints one line per test
 * and a closing "N passed, N failed" line; it returns non-zero on any failure.
 */
#ifndef CG_TEST_H
#define CG_TEST_H
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int cg_test_failed_;

#define CG_TEST(name) static void name(void)

#define CG_CHECK(cond)                                                                 \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            cg_test_failed_ = 1;                                                       \
            return;                                                                    \
        }                                                                              \
    } while (0)

#define CG_CHECK_EQ_INT(a, b)                                                                   \
    do {                                                                                        \
        long long cg_a_ = (long long)(a), cg_b_ = (long long)(b);                               \
        if (cg_a_ != cg_b_) {                                                                   \
            fprintf(stderr, "  %s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, \
                    #b, cg_a_, cg_b_);                                                          \
            cg_test_failed_ = 1;                                                                \
            return;                                                                             \
        }                                                                                       \
    } while (0)

#define CG_CHECK_EQ_STR(a, b)                                                                   \
    do {                                                                                        \
        const char *cg_a_ = (a), *cg_b_ = (b);                                                  \
        if (cg_a_ == NULL || cg_b_ == NULL || strcmp(cg_a_, cg_b_) != 0) {                      \
            fprintf(stderr, "  %s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, \
                    #a, #b, cg_a_ ? cg_a_ : "(null)", cg_b_ ? cg_b_ : "(null)");                \
            cg_test_failed_ = 1;                                                                \
            return;                                                                             \
        }                                                                                       \
    } while (0)

typedef struct cg_test_case {
    const char *name;
    void (*fn)(void);
} cg_test_case;

static inline int cg_test_run_(const cg_test_case *cases, size_t n)
{
    int passed = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        cg_test_failed_ = 0;
        cases[i].fn();
        printf("%s %s\n", cg_test_failed_ ? "FAIL" : "ok  ", cases[i].name);
        fflush(stdout);
        if (cg_test_failed_) {
            failed++;
        } else {
            passed++;
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#define CG_TEST_ENTRY_(fn) {#fn, fn},
#define CG_TEST_RUN(...)                                                                     \
    cg_test_run_((const cg_test_case[]){CG_TEST_MAP_(CG_TEST_ENTRY_, __VA_ARGS__)},          \
                 sizeof((const cg_test_case[]){CG_TEST_MAP_(CG_TEST_ENTRY_, __VA_ARGS__)}) / \
                     sizeof(cg_test_case))

/* A bounded FOR_EACH over up to 32 arguments. */
#define CG_TEST_MAP_(m, ...)                                                                       \
    CG_TEST_MAPN_(__VA_ARGS__, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, \
                  15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1)                               \
    (m, __VA_ARGS__)
#define CG_TEST_MAPN_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17, \
                      _18, _19, _20, _21, _22, _23, _24, _25, _26, _27, _28, _29, _30, _31, _32,  \
                      N, ...)                                                                     \
    CG_TEST_M##N##_
#define CG_TEST_M1_(m, a) m(a)
#define CG_TEST_M2_(m, a, ...) m(a) CG_TEST_M1_(m, __VA_ARGS__)
#define CG_TEST_M3_(m, a, ...) m(a) CG_TEST_M2_(m, __VA_ARGS__)
#define CG_TEST_M4_(m, a, ...) m(a) CG_TEST_M3_(m, __VA_ARGS__)
#define CG_TEST_M5_(m, a, ...) m(a) CG_TEST_M4_(m, __VA_ARGS__)
#define CG_TEST_M6_(m, a, ...) m(a) CG_TEST_M5_(m, __VA_ARGS__)
#define CG_TEST_M7_(m, a, ...) m(a) CG_TEST_M6_(m, __VA_ARGS__)
#define CG_TEST_M8_(m, a, ...) m(a) CG_TEST_M7_(m, __VA_ARGS__)
#define CG_TEST_M9_(m, a, ...) m(a) CG_TEST_M8_(m, __VA_ARGS__)
#define CG_TEST_M10_(m, a, ...) m(a) CG_TEST_M9_(m, __VA_ARGS__)
#define CG_TEST_M11_(m, a, ...) m(a) CG_TEST_M10_(m, __VA_ARGS__)
#define CG_TEST_M12_(m, a, ...) m(a) CG_TEST_M11_(m, __VA_ARGS__)
#define CG_TEST_M13_(m, a, ...) m(a) CG_TEST_M12_(m, __VA_ARGS__)
#define CG_TEST_M14_(m, a, ...) m(a) CG_TEST_M13_(m, __VA_ARGS__)
#define CG_TEST_M15_(m, a, ...) m(a) CG_TEST_M14_(m, __VA_ARGS__)
#define CG_TEST_M16_(m, a, ...) m(a) CG_TEST_M15_(m, __VA_ARGS__)
#define CG_TEST_M17_(m, a, ...) m(a) CG_TEST_M16_(m, __VA_ARGS__)
#define CG_TEST_M18_(m, a, ...) m(a) CG_TEST_M17_(m, __VA_ARGS__)
#define CG_TEST_M19_(m, a, ...) m(a) CG_TEST_M18_(m, __VA_ARGS__)
#define CG_TEST_M20_(m, a, ...) m(a) CG_TEST_M19_(m, __VA_ARGS__)
#define CG_TEST_M21_(m, a, ...) m(a) CG_TEST_M20_(m, __VA_ARGS__)
#define CG_TEST_M22_(m, a, ...) m(a) CG_TEST_M21_(m, __VA_ARGS__)
#define CG_TEST_M23_(m, a, ...) m(a) CG_TEST_M22_(m, __VA_ARGS__)
#define CG_TEST_M24_(m, a, ...) m(a) CG_TEST_M23_(m, __VA_ARGS__)
#define CG_TEST_M25_(m, a, ...) m(a) CG_TEST_M24_(m, __VA_ARGS__)
#define CG_TEST_M26_(m, a, ...) m(a) CG_TEST_M25_(m, __VA_ARGS__)
#define CG_TEST_M27_(m, a, ...) m(a) CG_TEST_M26_(m, __VA_ARGS__)
#define CG_TEST_M28_(m, a, ...) m(a) CG_TEST_M27_(m, __VA_ARGS__)
#define CG_TEST_M29_(m, a, ...) m(a) CG_TEST_M28_(m, __VA_ARGS__)
#define CG_TEST_M30_(m, a, ...) m(a) CG_TEST_M29_(m, __VA_ARGS__)
#define CG_TEST_M31_(m, a, ...) m(a) CG_TEST_M30_(m, __VA_ARGS__)
#define CG_TEST_M32_(m, a, ...) m(a) CG_TEST_M31_(m, __VA_ARGS__)

#endif
