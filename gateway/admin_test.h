/*
 * admin_test.h — the harness shared by admin_api_test's files: a blocking
 * HTTP/1.1 client on loopback for the admin API, JSON lookups by dotted path,
 * and the two-server fixture (an in-test ledger stand-in, and two real
 * capgate-ledger shards) defined in admin_api_test.c.
 *
 * Test thread only; nothing here is thread-safe.
 */
#ifndef ADMIN_TEST_H
#define ADMIN_TEST_H
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#include "cg_ring.h"

#define T_TOKEN "admin-token-for-tests"
#define T_PEPPER "pepper-for-tests"
#define T_RESP_MAX 65536
#define AUTH "Bearer " T_TOKEN

typedef struct t_resp {
    int status;
    cJSON *json; /* parsed body, NULL if not JSON */
    char raw[T_RESP_MAX];
} t_resp;

/* The admin port t_http talks to (set by the fixture per test group). */
extern int t_port;

/* A free loopback TCP port (bind to :0, read, close). */
int t_free_port(void);
/* Send one request to t_port (auth NULL: no Authorization header) and parse the answer. */
void t_http(t_resp *r, const char *method, const char *path, const char *auth, const char *body);
/* Free r's JSON. */
void t_done(t_resp *r);
/* The value at a dotted path ("limits.0.max"; digits index arrays), or NULL. */
const cJSON *t_get(const cJSON *o, const char *path);
/* String / number at path; NULL / -1 if absent or of another type. */
const char *t_str(const cJSON *o, const char *path);
double t_num(const cJSON *o, const char *path);
/* An error answer: status, error.code, and the message starting with msg_prefix (may be
 * NULL). Prints the answer when it does not match; frees r's JSON. */
int t_is_error(t_resp *r, int status, const char *code, const char *msg_prefix);
/* r->status == status; prints the answer otherwise (JSON kept). */
int t_status(const t_resp *r, int status);

/* ---- the real-ledger part (admin_api_real.c) ---- */

/* The ring of the two real shards (built by the fixture). */
extern cg_ring t_real_ring;
/* Their REQ URLs, by ring index. */
extern char t_real_url[2][64];
/* Run the real-ledger tests against the admin server on t_port; returns 0 if all pass. */
int t_real_run(void);
/* Kill shard i (SIGKILL); the fixture's stop then expects it gone. */
void t_real_kill(int i);

#endif
