/*
 * ledger_client_test.c — gw_ledger against a tiny in-test REP server.
 *
 * The server is an NNG rep0 socket on 127.0.0.1 (port chosen by the kernel)
 * served by one thread; it answers every operation with status OK (PING
 * carries shard "s0", last_seq 7; a route containing "refuse" gets BUDGET,
 * "missing" NOTFOUND), optionally after a delay or with a wrong op code, and
 * counts messages and operations. Checks: callbacks run on the loop thread, many operations complete,
 * no server → CG_ERR_TIMEOUT within bounds, a slow reply → CG_ERR_TIMEOUT and
 * the client still works afterwards, a bad reply → CG_ERR_PROTO, and
 * gw_ledger_free completes pending operations with CG_ERR_SHUTDOWN. Batching:
 * operations submitted in one loop turn arrive as one message and their
 * callbacks run in order with their own results; a chain of one-at-a-time
 * operations sends one-operation messages; a batch that times out fails whole.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <sys/socket.h>

#include "cg_clock.h"
#include "cg_config.h"
#include "cg_test.h"
#include "gw_ledger.h"
#include "gw_test_port.h"

#define TEST_OPS_MANY 200
#define TEST_GUARD_MS 10000 /* a test that takes longer than this has hung */

/* ---- the REP server ---- */

typedef struct test_srv {
    nng_socket sock;
    pthread_t thr;
    int port;
    atomic_int delay_ms;
    atomic_int wrong_op;
    atomic_int served;  /* messages answered */
    atomic_int ops;     /* operations answered */
    atomic_int max_ops; /* largest batch seen */
} test_srv;

static void test_srv_answer(test_srv *s, nng_msg *m)
{
    proto_req *reqs = NULL;
    uint32_t n = 0;
    msgpack_sbuffer sb;
    nng_msg *out;

    if (proto_req_decode(nng_msg_body(m), nng_msg_len(m), &reqs, &n) != CG_ERR_OK) {
        return;
    }
    proto_rep *reps = calloc(n, sizeof(*reps));
    for (uint32_t i = 0; i < n; i++) {
        reps[i].op = atomic_load(&s->wrong_op) ? PROTO_OP_GET_ORG : reqs[i].op;
        reps[i].status = CG_ERR_OK;
        if (strstr(reqs[i].route, "refuse") != NULL) {
            reps[i].status = CG_ERR_BUDGET;
        } else if (strstr(reqs[i].route, "missing") != NULL) {
            reps[i].status = CG_ERR_NOTFOUND;
        }
        if (reps[i].op == PROTO_OP_PING) {
            strcpy(reps[i].u.ping.shard, "s0");
            reps[i].u.ping.last_seq = 7;
        } else if (reps[i].op == PROTO_OP_GET_ORG) {
            strcpy(reps[i].u.get_org.org.id, "acme");
            reps[i].u.get_org.org.billing_anchor_day = 1;
        }
    }
    int d = atomic_load(&s->delay_ms);
    if (d > 0) {
        usleep((useconds_t)d * 1000);
    }
    msgpack_sbuffer_init(&sb);
    if (proto_rep_encode(reps, n, &sb) == CG_ERR_OK && nng_msg_alloc(&out, sb.size) == 0) {
        memcpy(nng_msg_body(out), sb.data, sb.size);
        if (nng_sendmsg(s->sock, out, 0) != 0) {
            nng_msg_free(out);
        }
        atomic_fetch_add(&s->served, 1);
        atomic_fetch_add(&s->ops, (int)n);
        if ((int)n > atomic_load(&s->max_ops)) {
            atomic_store(&s->max_ops, (int)n);
        }
    }
    msgpack_sbuffer_destroy(&sb);
    free(reps);
    proto_req_free(reqs, n);
}

static void *test_srv_main(void *arg)
{
    test_srv *s = arg;
    nng_msg *m;

    while (nng_recvmsg(s->sock, &m, 0) == 0) {
        test_srv_answer(s, m);
        nng_msg_free(m);
    }
    return NULL;
}

static int test_srv_start(test_srv *s)
{
    nng_listener lst;

    memset(s, 0, sizeof(*s));
    if (nng_rep0_open(&s->sock) != 0 || nng_listen(s->sock, "tcp://127.0.0.1:0", &lst, 0) != 0 ||
        nng_listener_get_int(lst, NNG_OPT_TCP_BOUND_PORT, &s->port) != 0) {
        return -1;
    }
    return pthread_create(&s->thr, NULL, test_srv_main, s) == 0 ? 0 : -1;
}

static void test_srv_stop(test_srv *s)
{
    nng_close(s->sock);
    pthread_join(s->thr, NULL);
}

/* ---- the client side ---- */

typedef struct test_env {
    uv_loop_t loop;
    uv_timer_t guard;
    cg_config cfg;
    cg_ring ring;
    gw_ledger *l;
    pthread_t loop_thread;
    int64_t start_ms;
    /* results */
    int done;
    int want;
    int wrong_thread;
    cg_err last_err;
    uint8_t last_op;
    uint16_t last_status;
    char last_shard[PROTO_SHARD_MAX + 1];
    uint64_t last_seq;
    int64_t elapsed_ms;
    cg_err late_submit;
} test_env;

static void test_guard_cb(uv_timer_t *t)
{
    test_env *env = t->data;
    fprintf(stderr, "  guard timer fired: test hung\n");
    env->done = -1000;
    gw_ledger_free(env->l);
    uv_close((uv_handle_t *)&env->guard, NULL);
}

static int test_env_init(test_env *env, int port, uint32_t timeout_ms)
{
    memset(env, 0, sizeof(*env));
    cg_config_defaults(&env->cfg);
    env->cfg.shard_n = 1;
    strcpy(env->cfg.shards[0].name, "s0");
    snprintf(env->cfg.shards[0].req_url, sizeof(env->cfg.shards[0].req_url), "tcp://127.0.0.1:%d",
             port);
    strcpy(env->cfg.shards[0].pub_url, "tcp://127.0.0.1:1");
    env->cfg.ledger_timeout_ms = timeout_ms;
    if (uv_loop_init(&env->loop) != 0 || cg_config_ring(&env->cfg, &env->ring) != CG_ERR_OK) {
        return -1;
    }
    if (gw_ledger_new(&env->loop, &env->cfg, &env->ring, &env->l) != CG_ERR_OK) {
        return -1;
    }
    uv_timer_init(&env->loop, &env->guard);
    env->guard.data = env;
    uv_timer_start(&env->guard, test_guard_cb, TEST_GUARD_MS, 0);
    env->loop_thread = pthread_self();
    env->start_ms = cg_mono_ms();
    return 0;
}

/* Start the REP server and a client to it (timeout_ms per operation); 0 when both are up. */
static int test_start(test_srv *srv, test_env *env, uint32_t timeout_ms)
{
    if (test_srv_start(srv) != 0) {
        return -1;
    }
    return test_env_init(env, srv->port, timeout_ms);
}

/* Run until every handle closed (the last callback frees the client and the guard). */
static void test_env_run(test_env *env)
{
    uv_run(&env->loop, UV_RUN_DEFAULT);
    uv_loop_close(&env->loop);
    cg_ring_fini(&env->ring);
}

static void test_finish(test_env *env)
{
    gw_ledger_free(env->l);
    if (!uv_is_closing((uv_handle_t *)&env->guard)) {
        uv_close((uv_handle_t *)&env->guard, NULL);
    }
}

static void test_record_cb(cg_err err, const proto_rep *rep, void *ud)
{
    test_env *env = ud;

    if (!pthread_equal(pthread_self(), env->loop_thread)) {
        env->wrong_thread++;
    }
    env->last_err = err;
    env->elapsed_ms = cg_mono_ms() - env->start_ms;
    if (rep != NULL) {
        env->last_op = rep->op;
        env->last_status = rep->status;
        if (rep->op == PROTO_OP_PING) {
            memcpy(env->last_shard, rep->u.ping.shard, sizeof(env->last_shard));
            env->last_seq = rep->u.ping.last_seq;
        }
    }
    if (++env->done == env->want) {
        test_finish(env);
    }
}

static proto_req test_ping(void)
{
    proto_req r;
    memset(&r, 0, sizeof(r));
    r.op = PROTO_OP_PING;
    return r;
}

CG_TEST(ledger_ping_on_loop_thread)
{
    test_srv srv;
    test_env env;
    proto_req r = test_ping();

    CG_CHECK(test_start(&srv, &env, 2000) == 0);
    env.want = 1;
    CG_CHECK_EQ_INT(gw_ledger_submit_to(env.l, 0, &r, test_record_cb, &env), CG_ERR_OK);
    test_env_run(&env);
    test_srv_stop(&srv);
    CG_CHECK_EQ_INT(env.done, 1);
    CG_CHECK_EQ_INT(env.wrong_thread, 0);
    CG_CHECK_EQ_INT(env.last_err, CG_ERR_OK);
    CG_CHECK_EQ_INT(env.last_op, PROTO_OP_PING);
    CG_CHECK_EQ_INT(env.last_status, CG_ERR_OK);
    CG_CHECK_EQ_STR(env.last_shard, "s0");
    CG_CHECK_EQ_INT(env.last_seq, 7);
}

CG_TEST(ledger_many_by_route)
{
    test_srv srv;
    test_env env;
    proto_req r;

    memset(&r, 0, sizeof(r));
    r.op = PROTO_OP_GET_ORG;
    strcpy(r.route, "org:acme");
    CG_CHECK(test_start(&srv, &env, 5000) == 0);
    env.want = TEST_OPS_MANY;
    for (int i = 0; i < TEST_OPS_MANY; i++) {
        CG_CHECK_EQ_INT(gw_ledger_submit(env.l, &r, test_record_cb, &env), CG_ERR_OK);
    }
    test_env_run(&env);
    test_srv_stop(&srv);
    CG_CHECK_EQ_INT(env.done, TEST_OPS_MANY);
    CG_CHECK_EQ_INT(env.wrong_thread, 0);
    CG_CHECK_EQ_INT(env.last_err, CG_ERR_OK);
    CG_CHECK_EQ_INT(env.last_op, PROTO_OP_GET_ORG);
    CG_CHECK_EQ_INT(atomic_load(&srv.ops), TEST_OPS_MANY);
    /* Submitted in one loop turn: full batches plus the rest. */
    CG_CHECK_EQ_INT(atomic_load(&srv.served),
                    (TEST_OPS_MANY + GW_LEDGER_BATCH_OPS - 1) / GW_LEDGER_BATCH_OPS);
    CG_CHECK_EQ_INT(atomic_load(&srv.max_ops), GW_LEDGER_BATCH_OPS);
}

/* Several operations in one loop turn: one message; callbacks in order, own results. */
#define TEST_MIX_N 5
typedef struct test_mix {
    test_env env;
    int order[TEST_MIX_N];
    uint8_t op[TEST_MIX_N];
    uint16_t status[TEST_MIX_N];
    cg_err err[TEST_MIX_N];
    int n;
} test_mix;

typedef struct test_mix_slot {
    test_mix *m;
    int idx;
} test_mix_slot;

static void test_mix_cb(cg_err err, const proto_rep *rep, void *ud)
{
    test_mix_slot *sl = ud;
    test_mix *m = sl->m;

    if (m->n < TEST_MIX_N) {
        m->order[m->n] = sl->idx;
        m->err[m->n] = err;
        m->op[m->n] = rep != NULL ? rep->op : 0;
        m->status[m->n] = rep != NULL ? rep->status : 0;
    }
    m->n++;
    test_record_cb(err, rep, &m->env);
}

CG_TEST(ledger_batch_one_message_in_order)
{
    test_srv srv;
    test_mix m;
    test_mix_slot slots[TEST_MIX_N];
    proto_req r[TEST_MIX_N];
    static const uint8_t ops[TEST_MIX_N] = {PROTO_OP_GET_ORG, PROTO_OP_RESERVE, PROTO_OP_PING,
                                            PROTO_OP_RELEASE, PROTO_OP_SETTLE};
    static const char *const routes[TEST_MIX_N] = {"org:acme", "key:refuse1", "org:acme",
                                                   "key:missing2", "key:k3"};
    static const uint16_t want[TEST_MIX_N] = {CG_ERR_OK, CG_ERR_BUDGET, CG_ERR_OK, CG_ERR_NOTFOUND,
                                              CG_ERR_OK};

    memset(&m, 0, sizeof(m));
    CG_CHECK(test_start(&srv, &m.env, 2000) == 0);
    m.env.want = TEST_MIX_N;
    for (int i = 0; i < TEST_MIX_N; i++) {
        memset(&r[i], 0, sizeof(r[i]));
        r[i].op = ops[i];
        strcpy(r[i].route, routes[i]);
        if (ops[i] == PROTO_OP_RESERVE) {
            strcpy(r[i].u.reserve.request_id, "req_1");
            r[i].u.reserve.lease_ms = 1000;
        } else if (ops[i] == PROTO_OP_RELEASE) {
            strcpy(r[i].u.release.request_id, "req_1");
        } else if (ops[i] == PROTO_OP_SETTLE) {
            strcpy(r[i].u.settle.request_id, "req_1");
        }
        slots[i] = (test_mix_slot){.m = &m, .idx = i};
        CG_CHECK_EQ_INT(gw_ledger_submit(m.env.l, &r[i], test_mix_cb, &slots[i]), CG_ERR_OK);
    }
    test_env_run(&m.env);
    test_srv_stop(&srv);
    CG_CHECK_EQ_INT(m.n, TEST_MIX_N);
    CG_CHECK_EQ_INT(m.env.wrong_thread, 0);
    CG_CHECK_EQ_INT(atomic_load(&srv.served), 1);
    CG_CHECK_EQ_INT(atomic_load(&srv.max_ops), TEST_MIX_N);
    for (int i = 0; i < TEST_MIX_N; i++) {
        CG_CHECK_EQ_INT(m.order[i], i);
        CG_CHECK_EQ_INT(m.err[i], CG_ERR_OK);
        CG_CHECK_EQ_INT(m.op[i], ops[i]);
        CG_CHECK_EQ_INT(m.status[i], want[i]);
    }
}

/* One operation at a time (each submitted from the previous callback): one-operation
 * messages, each sent in the loop turn that submitted it. */
#define TEST_CHAIN_N 50
static void test_chain_cb(cg_err err, const proto_rep *rep, void *ud)
{
    test_env *env = ud;
    proto_req r = test_ping();

    test_record_cb(err, rep, env);
    if (env->done < env->want && err == CG_ERR_OK &&
        gw_ledger_submit_to(env->l, 0, &r, test_chain_cb, env) != CG_ERR_OK) {
        test_finish(env);
    }
}

CG_TEST(ledger_chain_sends_at_once)
{
    test_srv srv;
    test_env env;
    proto_req r = test_ping();

    CG_CHECK(test_start(&srv, &env, 2000) == 0);
    env.want = TEST_CHAIN_N;
    CG_CHECK_EQ_INT(gw_ledger_submit_to(env.l, 0, &r, test_chain_cb, &env), CG_ERR_OK);
    test_env_run(&env);
    test_srv_stop(&srv);
    CG_CHECK_EQ_INT(env.done, TEST_CHAIN_N);
    CG_CHECK_EQ_INT(env.last_err, CG_ERR_OK);
    CG_CHECK_EQ_INT(atomic_load(&srv.served), TEST_CHAIN_N);
    CG_CHECK_EQ_INT(atomic_load(&srv.max_ops), 1);
    CG_CHECK(env.elapsed_ms < 2000); /* no per-operation wait (loopback round trips) */
}

/* A batch past its deadline: every operation gets TIMEOUT, once. */
CG_TEST(ledger_batch_times_out_whole)
{
    test_env env;
    proto_req r = test_ping();

    CG_CHECK(test_env_init(&env, gw_test_free_port(), 300) == 0);
    env.want = 3;
    for (int i = 0; i < 3; i++) {
        CG_CHECK_EQ_INT(gw_ledger_submit_to(env.l, 0, &r, test_record_cb, &env), CG_ERR_OK);
    }
    test_env_run(&env);
    CG_CHECK_EQ_INT(env.done, 3);
    CG_CHECK_EQ_INT(env.last_err, CG_ERR_TIMEOUT);
    CG_CHECK(env.elapsed_ms >= 250 && env.elapsed_ms <= 2000);
}

CG_TEST(ledger_empty_route_refused)
{
    test_env env;
    proto_req r = test_ping();

    CG_CHECK(test_env_init(&env, gw_test_free_port(), 200) == 0);
    CG_CHECK_EQ_INT(gw_ledger_submit(env.l, &r, test_record_cb, &env), CG_ERR_INVAL);
    test_finish(&env);
    test_env_run(&env);
    CG_CHECK_EQ_INT(env.done, 0);
}

CG_TEST(ledger_no_server_times_out)
{
    test_env env;
    proto_req r = test_ping();

    CG_CHECK(test_env_init(&env, gw_test_free_port(), 300) == 0);
    env.want = 1;
    CG_CHECK_EQ_INT(gw_ledger_submit_to(env.l, 0, &r, test_record_cb, &env), CG_ERR_OK);
    test_env_run(&env);
    CG_CHECK_EQ_INT(env.done, 1);
    CG_CHECK_EQ_INT(env.wrong_thread, 0);
    CG_CHECK_EQ_INT(env.last_err, CG_ERR_TIMEOUT);
    CG_CHECK(env.elapsed_ms >= 250);
    CG_CHECK(env.elapsed_ms <= 2000);
}

/* Server answers after the deadline: TIMEOUT; once it has caught up, a prompt reply works. */
typedef struct test_slow {
    test_env env;
    test_srv *srv;
    uv_timer_t later;
    cg_err first;
    int64_t first_ms;
} test_slow;

static void test_slow_later_cb(uv_timer_t *t)
{
    test_slow *ts = t->data;
    proto_req r = test_ping();

    uv_close((uv_handle_t *)t, NULL);
    ts->env.want = 1;
    if (gw_ledger_submit_to(ts->env.l, 0, &r, test_record_cb, &ts->env) != CG_ERR_OK) {
        test_finish(&ts->env);
    }
}

static void test_slow_first_cb(cg_err err, const proto_rep *rep, void *ud)
{
    test_slow *ts = ud;

    (void)rep;
    ts->first = err;
    ts->first_ms = cg_mono_ms() - ts->env.start_ms;
    atomic_store(&ts->srv->delay_ms, 0);
    /* The single-threaded server is still asleep on the first request. */
    uv_timer_init(&ts->env.loop, &ts->later);
    ts->later.data = ts;
    uv_timer_start(&ts->later, test_slow_later_cb, 800, 0);
}

CG_TEST(ledger_slow_reply_times_out)
{
    test_srv srv;
    test_slow ts;
    proto_req r = test_ping();

    CG_CHECK(test_start(&srv, &ts.env, 250) == 0);
    atomic_store(&srv.delay_ms, 700);
    ts.srv = &srv;
    CG_CHECK_EQ_INT(gw_ledger_submit_to(ts.env.l, 0, &r, test_slow_first_cb, &ts), CG_ERR_OK);
    test_env_run(&ts.env);
    test_srv_stop(&srv);
    CG_CHECK_EQ_INT(ts.first, CG_ERR_TIMEOUT);
    CG_CHECK(ts.first_ms >= 200 && ts.first_ms <= 2000);
    CG_CHECK_EQ_INT(ts.env.done, 1);
    CG_CHECK_EQ_INT(ts.env.last_err, CG_ERR_OK);
    CG_CHECK_EQ_STR(ts.env.last_shard, "s0");
}

CG_TEST(ledger_wrong_op_is_proto_error)
{
    test_srv srv;
    test_env env;
    proto_req r = test_ping();

    CG_CHECK(test_start(&srv, &env, 2000) == 0);
    atomic_store(&srv.wrong_op, 1);
    env.want = 1;
    CG_CHECK_EQ_INT(gw_ledger_submit_to(env.l, 0, &r, test_record_cb, &env), CG_ERR_OK);
    test_env_run(&env);
    test_srv_stop(&srv);
    CG_CHECK_EQ_INT(env.done, 1);
    CG_CHECK_EQ_INT(env.last_err, CG_ERR_PROTO);
}

/* gw_ledger_free with operations pending: each gets SHUTDOWN; a submit then is refused. */
static void test_shutdown_cb(cg_err err, const proto_rep *rep, void *ud)
{
    test_env *env = ud;
    proto_req r = test_ping();

    (void)rep;
    if (err == CG_ERR_SHUTDOWN && rep == NULL) {
        env->done++;
    }
    env->late_submit = gw_ledger_submit_to(env->l, 0, &r, test_record_cb, env);
}

static void test_shutdown_timer_cb(uv_timer_t *t)
{
    test_env *env = t->data;
    gw_ledger_free(env->l);
    env->want = env->done; /* callbacks ran synchronously inside gw_ledger_free */
    uv_close((uv_handle_t *)&env->guard, NULL);
}

CG_TEST(ledger_free_completes_pending)
{
    test_env env;
    proto_req r = test_ping();

    CG_CHECK(test_env_init(&env, gw_test_free_port(), 5000) == 0);
    for (int i = 0; i < 3; i++) {
        CG_CHECK_EQ_INT(gw_ledger_submit_to(env.l, 0, &r, test_shutdown_cb, &env), CG_ERR_OK);
    }
    uv_timer_start(&env.guard, test_shutdown_timer_cb, 100, 0);
    test_env_run(&env);
    CG_CHECK_EQ_INT(env.want, 3);
    CG_CHECK_EQ_INT(env.done, 3);
    CG_CHECK_EQ_INT(env.late_submit, CG_ERR_SHUTDOWN);
}

int main(void)
{
    return CG_TEST_RUN(ledger_ping_on_loop_thread, ledger_many_by_route, ledger_empty_route_refused,
                       ledger_no_server_times_out, ledger_slow_reply_times_out,
                       ledger_wrong_op_is_proto_error, ledger_free_completes_pending,
                       ledger_batch_one_message_in_order, ledger_chain_sends_at_once,
                       ledger_batch_times_out_whole);
}
