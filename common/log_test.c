/*
 * log_test.c — every cg_log call is one valid JSON line on fd 2.
 *
 * fd 2 is redirected to a temporary file around each call; the captured line
 * is parsed with cJSON and its fields compared with what was logged.
 */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cg_clock.h"
#include "cg_log.h"
#include "cg_period.h"
#include "cg_test.h"

#define CAP_MAX 65536

static char cap_buf[CAP_MAX];
static int cap_fd = -1, saved_fd = -1;

static void cap_begin(void)
{
    char path[] = "/tmp/cg_log_test_XXXXXX";
    cap_fd = mkstemp(path);
    unlink(path);
    fflush(stderr);
    saved_fd = dup(2);
    dup2(cap_fd, 2);
}

/* Restore fd 2 and return what was written (NUL-terminated), length in *n. */
static const char *cap_end(size_t *n)
{
    dup2(saved_fd, 2);
    close(saved_fd);
    lseek(cap_fd, 0, SEEK_SET);
    ssize_t r = read(cap_fd, cap_buf, sizeof(cap_buf) - 1);
    close(cap_fd);
    *n = r > 0 ? (size_t)r : 0;
    cap_buf[*n] = '\0';
    return cap_buf;
}

static size_t count_lines(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        k += s[i] == '\n';
    }
    return k;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

CG_TEST(log_fields)
{
    cg_log_init("ledger:s0", CG_LOG_INFO);
    int64_t before = cg_now_ms();
    cap_begin();
    cg_log(CG_LOG_WARN, "shard started", "shard", "s0", "listen", "tcp://127.0.0.1:7100", NULL);
    size_t n;
    const char *out = cap_end(&n);
    int64_t after = cg_now_ms();
    CG_CHECK_EQ_INT(count_lines(out, n), 1);
    CG_CHECK(out[0] == '{' && out[n - 1] == '\n');
    CG_CHECK(strncmp(out, "{\"ts\":\"", 7) == 0);
    cJSON *j = cJSON_Parse(out);
    CG_CHECK(j != NULL);
    const char *ts = jstr(j, "ts");
    int64_t t = 0;
    int ok = ts != NULL && strlen(ts) == 24 && ts[19] == '.' && cg_time_parse(ts, &t) == CG_ERR_OK;
    int order = ok && t >= before - 1 && t <= after + 1;
    int fields = jstr(j, "level") && strcmp(jstr(j, "level"), "warn") == 0 && jstr(j, "proc") &&
                 strcmp(jstr(j, "proc"), "ledger:s0") == 0 && jstr(j, "msg") &&
                 strcmp(jstr(j, "msg"), "shard started") == 0 && jstr(j, "shard") &&
                 strcmp(jstr(j, "shard"), "s0") == 0 && jstr(j, "listen") &&
                 strcmp(jstr(j, "listen"), "tcp://127.0.0.1:7100") == 0;
    cJSON_Delete(j);
    CG_CHECK(ok);
    CG_CHECK(order);
    CG_CHECK(fields);
    /* Field order is fixed: ts, level, proc, msg, extras. */
    CG_CHECK(strstr(out, "\",\"level\":\"warn\",\"proc\":\"ledger:s0\",\"msg\":\"shard started\","
                         "\"shard\":\"s0\",") != NULL);
}

CG_TEST(log_escaping)
{
    const char *nasty = "quote\" back\\slash\nnl\ttab\r\b\f\x01\x1f\x7f end";
    cap_begin();
    cg_log(CG_LOG_ERROR, nasty, "k\"ey", nasty, "nul", NULL, NULL);
    size_t n;
    const char *out = cap_end(&n);
    CG_CHECK_EQ_INT(count_lines(out, n), 1);
    CG_CHECK(strstr(out, "\\u0001") != NULL && strstr(out, "\\u001f") != NULL);
    CG_CHECK(strstr(out, "\\n") != NULL && strstr(out, "\\\"") != NULL);
    cJSON *j = cJSON_Parse(out);
    CG_CHECK(j != NULL);
    int same = jstr(j, "msg") && strcmp(jstr(j, "msg"), nasty) == 0 && jstr(j, "k\"ey") &&
               strcmp(jstr(j, "k\"ey"), nasty) == 0;
    int isnull = cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "nul"));
    cJSON_Delete(j);
    CG_CHECK(same);
    CG_CHECK(isnull);
}

CG_TEST(log_utf8)
{
    /* Valid: é, €, U+1F600. Invalid: lone 0xff, overlong "/", a surrogate, a cut sequence. */
    const char *in = "ok \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 bad "
                     "\xff|\xc0\xaf|\xed\xa0\x80|\xe2\x82";
    const char *want = "ok \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 bad \xef\xbf\xbd|"
                       "\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
                       "\xef\xbf\xbd\xef\xbf\xbd";
    cap_begin();
    cg_log(CG_LOG_ERROR, in, NULL);
    size_t n;
    const char *out = cap_end(&n);
    cJSON *j = cJSON_Parse(out);
    CG_CHECK(j != NULL);
    int same = jstr(j, "msg") && strcmp(jstr(j, "msg"), want) == 0;
    cJSON_Delete(j);
    CG_CHECK(same);
}

CG_TEST(log_levels)
{
    cg_log_init("gateway", CG_LOG_WARN);
    cap_begin();
    cg_log(CG_LOG_DEBUG, "hidden", NULL);
    cg_log(CG_LOG_INFO, "hidden", NULL);
    cg_logf(CG_LOG_INFO, "hidden %d", 1);
    cg_log(CG_LOG_WARN, "shown", NULL);
    cg_logf(CG_LOG_ERROR, "shown %d %s", 42, "x\"y");
    size_t n;
    const char *out = cap_end(&n);
    cg_log_init("gateway", CG_LOG_INFO);
    CG_CHECK_EQ_INT(count_lines(out, n), 2);
    CG_CHECK(strstr(out, "hidden") == NULL);
    CG_CHECK(strstr(out, "\"level\":\"error\",\"proc\":\"gateway\","
                         "\"msg\":\"shown 42 x\\\"y\"}\n") != NULL);
    CG_CHECK_EQ_INT(cg_log_level_parse("debug"), CG_LOG_DEBUG);
    CG_CHECK_EQ_INT(cg_log_level_parse("info"), CG_LOG_INFO);
    CG_CHECK_EQ_INT(cg_log_level_parse("warn"), CG_LOG_WARN);
    CG_CHECK_EQ_INT(cg_log_level_parse("error"), CG_LOG_ERROR);
    CG_CHECK_EQ_INT(cg_log_level_parse("INFO"), -1);
    CG_CHECK_EQ_INT(cg_log_level_parse(""), -1);
    CG_CHECK_EQ_INT(cg_log_level_parse(NULL), -1);
}

/* Log a line built from a long msg and/or value; check it is one valid, bounded, marked line. */
static int truncated_ok(size_t msg_len, size_t val_len, size_t pairs, char fill)
{
    static char msg[20000], val[20000];
    memset(msg, fill, msg_len);
    msg[msg_len] = '\0';
    memset(val, fill, val_len);
    val[val_len] = '\0';
    cap_begin();
    if (pairs == 0) {
        cg_log(CG_LOG_ERROR, msg, "k", val, "after", "x", NULL);
    } else {
        for (size_t i = 0; i < pairs; i++) {
            cg_log(CG_LOG_ERROR, msg, "a", val, "b", val, "c", val, "d", val, "e", val, "f", val,
                   "g", val, "h", val, NULL);
        }
    }
    size_t n;
    const char *out = cap_end(&n);
    cJSON *j = cJSON_Parse(out);
    int ok = j != NULL && n <= 8192 && count_lines(out, n) == 1 &&
             cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "truncated"));
    cJSON_Delete(j);
    if (!ok) {
        fprintf(stderr, "  bad truncated line (%zu bytes): %.200s...\n", n, out);
    }
    return ok;
}

CG_TEST(log_truncation)
{
    CG_CHECK(truncated_ok(19000, 0, 0, 'a'));
    CG_CHECK(truncated_ok(5000, 5000, 0, 'b'));
    CG_CHECK(truncated_ok(100, 1200, 1, 'c'));
    /* Escapes expand 1 byte to 6: the cut must not split an escape. */
    CG_CHECK(truncated_ok(19000, 0, 0, '\x01'));
    CG_CHECK(truncated_ok(3000, 3000, 0, '"'));
}

/*
 * Lengths around the limit, with 1-, 2- and 6-byte escapes and 3-byte
 * characters: always one valid JSON line of at most 8 KiB, holding either the
 * whole message or a prefix of it marked truncated.
 */
static int near_limit_ok(const char *unit, size_t count)
{
    static char msg[20000];
    size_t ul = strlen(unit), n = 0;
    for (size_t i = 0; i < count; i++, n += ul) {
        memcpy(msg + n, unit, ul);
    }
    msg[n] = '\0';
    cap_begin();
    cg_log(CG_LOG_ERROR, msg, "key", "value", NULL);
    size_t len;
    const char *out = cap_end(&len);
    cJSON *j = cJSON_Parse(out);
    const char *m = j != NULL ? jstr(j, "msg") : NULL;
    int trunc = j != NULL && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "truncated"));
    int ok = m != NULL && len <= 8192 && count_lines(out, len) == 1 &&
             (trunc ? strncmp(m, msg, strlen(m)) == 0 && strlen(m) % ul == 0
                    : strcmp(m, msg) == 0 && jstr(j, "key") != NULL);
    cJSON_Delete(j);
    if (!ok) {
        fprintf(stderr, "  unit \"%s\" x %zu: bad line (%zu bytes)\n", unit, count, len);
    }
    return ok;
}

CG_TEST(log_near_limit)
{
    for (size_t count = 8000; count < 8200; count++) {
        CG_CHECK(near_limit_ok("m", count));
    }
    for (size_t count = 4000; count < 4100; count++) {
        CG_CHECK(near_limit_ok("\"", count));
    }
    for (size_t count = 1320; count < 1380; count++) {
        CG_CHECK(near_limit_ok("\x02", count));
    }
    for (size_t count = 2650; count < 2750; count++) {
        CG_CHECK(near_limit_ok("\xe2\x82\xac", count));
    }
}

int main(void)
{
    return CG_TEST_RUN(log_fields, log_escaping, log_utf8, log_levels, log_truncation,
                       log_near_limit);
}
