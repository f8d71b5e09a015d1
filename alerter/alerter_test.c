/*
 * alerter_test.c — the alerter loop against a fake shard in the same process
 * (inproc REP + PUB sockets serving EVENTS_SINCE / GET_ORG from an in-memory
 * event log).
 *
 * Checked through the outbox the alerter leaves behind: events logged before
 * start-up are fetched; a gap in pub messages is caught up; a last event whose
 * pub message was never sent is found by the routine poll; failing org lookups
 * delay events but lose none; every event yields exactly one record per webhook;
 * a restart creates nothing twice. Webhooks point at a refused address so no
 * attempt ever succeeds and records stay PENDING for counting.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/reqrep0/rep.h>

#include "alerter.h"
#include "alerter_outbox.h"
#include "cg_clock.h"
#include "cg_log.h"
#include "cg_test.h"

#define LOG_MAX 32
#define WEBHOOKS 2

typedef struct fake_shard {
    nng_socket rep, pub;
    pthread_t thread;
    pthread_mutex_t mu;
    proto_event log[LOG_MAX];
    uint32_t log_n;
    atomic_int stop;
    atomic_int org_failures_left; /* GET_ORG answers UNAVAILABLE while > 0 */
    atomic_int org_calls;
    atomic_ullong max_after_seq; /* highest after_seq seen in EVENTS_SINCE */
} fake_shard;

static fake_shard fs;

static void event_make(proto_event *e, uint64_t seq)
{
    memset(e, 0, sizeof *e);
    e->seq = seq;
    snprintf(e->id, sizeof e->id, "evt_%032llx", (unsigned long long)seq);
    e->type = PROTO_EVT_SPEND_WARNING;
    e->created_ms = 1795255445000LL;
    snprintf(e->org, sizeof e->org, "acme");
    e->scope = PROTO_SCOPE_ORG;
    snprintf(e->scope_id, sizeof e->scope_id, "acme");
    e->metric = PROTO_METRIC_COST;
    e->window.kind = CG_WIN_MONTH;
    e->period_start_ms = 1793491200000LL;
    e->period_end_ms = 1796083200000LL;
    e->threshold_bp = 8000;
    e->max = 1000000000;
    e->used = 800000000;
}

/* Append the next event; publish it unless dropped. */
static void fake_append(int publish)
{
    pthread_mutex_lock(&fs.mu);
    proto_event *e = &fs.log[fs.log_n];
    event_make(e, fs.log_n + 1);
    fs.log_n++;
    pthread_mutex_unlock(&fs.mu);
    if (publish) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        if (proto_pub_encode("s0", e, &sb) == CG_ERR_OK) {
            nng_send(fs.pub, sb.data, sb.size, 0);
        }
        msgpack_sbuffer_destroy(&sb);
    }
}

static void fake_answer(const proto_req *q, proto_rep *r)
{
    r->op = q->op;
    if (q->op == PROTO_OP_EVENTS_SINCE) {
        unsigned long long after = q->u.events_since.after_seq;
        if (after > atomic_load(&fs.max_after_seq)) {
            atomic_store(&fs.max_after_seq, after);
        }
        pthread_mutex_lock(&fs.mu);
        r->u.events.last_seq = fs.log_n > 0 ? fs.log[fs.log_n - 1].seq : 0;
        uint32_t from = 0;
        while (from < fs.log_n && fs.log[from].seq <= after) {
            from++;
        }
        r->u.events.n = fs.log_n - from;
        if (r->u.events.n > q->u.events_since.max_n) {
            r->u.events.n = q->u.events_since.max_n;
        }
        r->u.events.events = r->u.events.n > 0 ? &fs.log[from] : NULL;
        pthread_mutex_unlock(&fs.mu);
    } else if (q->op == PROTO_OP_GET_ORG) {
        atomic_fetch_add(&fs.org_calls, 1);
        if (atomic_fetch_sub(&fs.org_failures_left, 1) > 0) {
            r->status = CG_ERR_UNAVAILABLE;
            return;
        }
        proto_org *o = &r->u.get_org.org;
        snprintf(o->id, sizeof o->id, "acme");
        o->billing_anchor_day = 1;
        o->webhook_n = WEBHOOKS;
        for (int i = 0; i < WEBHOOKS; i++) {
            /* Port 1 on a refused (loopback) address: every attempt fails fast. */
            snprintf(o->webhooks[i].url, sizeof o->webhooks[i].url, "https://127.0.0.1:1/h%d", i);
            snprintf(o->webhooks[i].secret, sizeof o->webhooks[i].secret, "whsec_c2VjcmV0");
        }
    } else {
        r->status = CG_ERR_INVAL;
    }
}

static void *fake_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&fs.stop)) {
        char *buf = NULL;
        size_t len = 0;
        if (nng_recv(fs.rep, &buf, &len, NNG_FLAG_ALLOC) != 0) {
            continue; /* receive timeout: look at stop again */
        }
        proto_req *reqs = NULL;
        uint32_t n = 0;
        static proto_rep rep; /* large; this thread only */
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        if (proto_req_decode(buf, len, &reqs, &n) == CG_ERR_OK && n == 1) {
            memset(&rep, 0, sizeof rep);
            fake_answer(&reqs[0], &rep);
            if (proto_rep_encode(&rep, 1, &sb) == CG_ERR_OK) {
                nng_send(fs.rep, sb.data, sb.size, 0);
            }
            proto_req_free(reqs, n);
        }
        msgpack_sbuffer_destroy(&sb);
        nng_free(buf, len);
    }
    return NULL;
}

static int fake_start(void)
{
    memset(&fs, 0, sizeof fs);
    pthread_mutex_init(&fs.mu, NULL);
    if (nng_rep0_open(&fs.rep) != 0 || nng_pub0_open(&fs.pub) != 0 ||
        nng_socket_set_ms(fs.rep, NNG_OPT_RECVTIMEO, 50) != 0 ||
        nng_listen(fs.rep, "inproc://alerter_test_req", NULL, 0) != 0 ||
        nng_listen(fs.pub, "inproc://alerter_test_pub", NULL, 0) != 0) {
        return -1;
    }
    return pthread_create(&fs.thread, NULL, fake_main, NULL);
}

static void fake_stop(void)
{
    atomic_store(&fs.stop, 1);
    pthread_join(fs.thread, NULL);
    nng_close(fs.rep);
    nng_close(fs.pub);
    pthread_mutex_destroy(&fs.mu);
}

/* ---- running the alerter in a thread ------------------------------------------------- */

static cg_config cfg;
static volatile sig_atomic_t stop_flag;

static void *alerter_thread(void *arg)
{
    alerter *a = arg;
    alerter_run(a, &stop_flag);
    return NULL;
}

/* Wait until the alerter has asked for events after seq (its cursor reached seq). */
static int wait_cursor(unsigned long long seq, int timeout_ms)
{
    for (int64_t end = cg_mono_ms() + timeout_ms; cg_mono_ms() < end;) {
        if (atomic_load(&fs.max_after_seq) >= seq) {
            return 1;
        }
        usleep(20 * 1000);
    }
    return 0;
}

static void config_make(const char *dir)
{
    cg_config_defaults(&cfg);
    cfg.shard_n = 1;
    snprintf(cfg.shards[0].name, sizeof cfg.shards[0].name, "s0");
    snprintf(cfg.shards[0].req_url, sizeof cfg.shards[0].req_url, "inproc://alerter_test_req");
    snprintf(cfg.shards[0].pub_url, sizeof cfg.shards[0].pub_url, "inproc://alerter_test_pub");
    snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s", dir);
    cfg.lmdb_map_bytes = 1 << 24;
    cfg.alert_poll_ms = 200;
    cfg.ledger_timeout_ms = 500;
    cfg.alert_retry_s[0] = 3600; /* one retry, an hour away: records stay PENDING */
    cfg.alert_retry_n = 1;
    cfg.alerter_listen[0] = '\0'; /* no HTTP listener in unit tests */
}

static int run_until(unsigned long long seq, void (*during)(void))
{
    alerter *a = NULL;
    pthread_t t;
    if (alerter_new(&cfg, &a) != CG_ERR_OK) {
        return 0;
    }
    stop_flag = 0;
    pthread_create(&t, NULL, alerter_thread, a);
    if (during != NULL) {
        during();
    }
    int ok = wait_cursor(seq, 10000);
    usleep(300 * 1000); /* let attempts finish and be recorded */
    stop_flag = 1;
    pthread_join(t, NULL);
    alerter_free(a);
    return ok;
}

/* A fresh scratch data dir /tmp/alerter_test<tag>.<pid>; cmd is left holding the
 * command that removes it. Returns system()'s status for the initial removal. */
static int scratch_fresh(const char *tag, char *dir, size_t dir_n, char *cmd, size_t cmd_n)
{
    snprintf(dir, dir_n, "/tmp/alerter_test%s.%d", tag, (int)getpid());
    snprintf(cmd, cmd_n, "rm -rf '%s'", dir);
    return system(cmd);
}

/* Opens the outbox the alerter left under dir and checks shard s0's cursor and the
 * PENDING count (counts gets all three). *out is the open outbox, or NULL when a
 * check failed. */
static void outbox_expect(const char *dir, uint64_t cursor_want, uint64_t pending_want,
                          uint64_t counts[3], alerter_outbox **out)
{
    char adir[160];
    alerter_outbox *ob = NULL;
    uint64_t cursor = 0;
    *out = NULL;
    snprintf(adir, sizeof adir, "%s/alerter", dir);
    CG_CHECK_EQ_INT(alerter_outbox_open(adir, 1 << 24, &ob), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_cursor_get(ob, "s0", &cursor), CG_ERR_OK);
    CG_CHECK_EQ_INT(cursor, cursor_want);
    CG_CHECK_EQ_INT(alerter_outbox_count(ob, counts), CG_ERR_OK);
    CG_CHECK_EQ_INT(counts[ALERTER_PENDING], pending_want);
    *out = ob;
}

static void publish_with_gaps(void)
{
    usleep(300 * 1000);
    fake_append(1); /* 4: in order */
    fake_append(0); /* 5: pub lost */
    fake_append(1); /* 6: reveals the gap */
    fake_append(0); /* 7: the last one lost; only the poll finds it */
}

CG_TEST(never_misses_an_event)
{
    char dir[128], cmd[160];
    CG_CHECK(scratch_fresh("", dir, sizeof dir, cmd, sizeof cmd) == 0);
    config_make(dir);
    CG_CHECK(fake_start() == 0);
    for (int i = 0; i < 3; i++) {
        fake_append(0); /* before the alerter exists */
    }
    atomic_store(&fs.org_failures_left, 3);
    int ok1 = run_until(7, publish_with_gaps);
    int org_calls = atomic_load(&fs.org_calls);
    /* Restart on the same data: nothing new, nothing twice. */
    atomic_store(&fs.max_after_seq, 0);
    int ok2 = run_until(7, NULL);
    fake_stop();
    CG_CHECK(ok1 && ok2);
    CG_CHECK(org_calls >= 4);

    alerter_outbox *ob = NULL;
    uint64_t counts[3];
    outbox_expect(dir, 7, 7 * WEBHOOKS, counts, &ob);
    CG_CHECK(ob != NULL);
    CG_CHECK_EQ_INT(counts[ALERTER_DELIVERED] + counts[ALERTER_FAILED], 0);
    /* Each record was attempted once (refused), and waits for its one retry. */
    alerter_record *r = calloc(1, sizeof *r);
    uint8_t key[ALERTER_KEY_BYTES];
    alerter_record_key("evt_00000000000000000000000000000005", "https://127.0.0.1:1/h1", key);
    CG_CHECK_EQ_INT(alerter_outbox_get(ob, key, r), CG_ERR_OK);
    CG_CHECK_EQ_INT(r->attempts, 1);
    CG_CHECK_EQ_STR(r->last_error, "address refused: loopback");
    CG_CHECK(strstr(r->body, "\"id\":\"evt_00000000000000000000000000000005\"") != NULL);
    free(r);
    alerter_outbox_close(ob);
    CG_CHECK(system(cmd) == 0);
}

static void publish_gap_only(void)
{
    usleep(300 * 1000);
    fake_append(1); /* 4: in order, written at once */
    fake_append(0); /* 5: pub lost */
    fake_append(1); /* 6: reveals the gap: EVENTS_SINCE(4) fetches 5 and 6 */
}

/* With the routine poll a minute away, only the start-up fetch (after 0) and a gap
 * catch-up can ask for events, so EVENTS_SINCE(>= 3) and a cursor of 6 within seconds
 * prove the pub path and the gap detection. */
CG_TEST(gap_in_pub_messages_is_caught_up)
{
    char dir[128], cmd[160];
    CG_CHECK(scratch_fresh("_gap", dir, sizeof dir, cmd, sizeof cmd) == 0);
    config_make(dir);
    cfg.alert_poll_ms = 60000;
    CG_CHECK(fake_start() == 0);
    for (int i = 0; i < 3; i++) {
        fake_append(0);
    }
    /* after_seq 3 or 4, depending on whether pub 4 arrived: either is a catch-up. */
    int ok = run_until(3, publish_gap_only);
    fake_stop();
    CG_CHECK(ok);

    alerter_outbox *ob = NULL;
    uint64_t counts[3];
    outbox_expect(dir, 6, 6 * WEBHOOKS, counts, &ob);
    CG_CHECK(ob != NULL);
    alerter_outbox_close(ob);
    CG_CHECK(system(cmd) == 0);
}

/* A shard whose log lacks seq 3 and 4 (it cannot give them, however often asked): the
 * alerter logs the hole, moves past it, and keeps delivering later events. */
CG_TEST(hole_in_shard_log_is_skipped)
{
    char dir[128], cmd[160];
    CG_CHECK(scratch_fresh("_hole", dir, sizeof dir, cmd, sizeof cmd) == 0);
    config_make(dir);
    CG_CHECK(fake_start() == 0);
    const uint64_t seqs[] = {1, 2, 5, 6};
    pthread_mutex_lock(&fs.mu);
    for (int i = 0; i < 4; i++) {
        event_make(&fs.log[i], seqs[i]);
    }
    fs.log_n = 4;
    pthread_mutex_unlock(&fs.mu);
    int ok = run_until(6, NULL);
    fake_stop();
    CG_CHECK(ok);

    alerter_outbox *ob = NULL;
    uint64_t counts[3];
    outbox_expect(dir, 6, 4 * WEBHOOKS, counts, &ob);
    CG_CHECK(ob != NULL);
    alerter_outbox_close(ob);
    CG_CHECK(system(cmd) == 0);
}

int main(void)
{
    cg_log_init("alerter_test", CG_LOG_ERROR);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = CG_TEST_RUN(never_misses_an_event, gap_in_pub_messages_is_caught_up,
                         hole_in_shard_log_is_skipped);
    curl_global_cleanup();
    return rc;
}
