/*
 * ledger_main_test.c — the capgate-ledger binary: exit 2 for a bad config or
 * an unknown shard, creates <data_dir>/<shard>/, answers PING on its req_url,
 * exits 0 on SIGTERM — also while clients keep it busy, and then every settle
 * it acknowledged is in its store. LEDGER_BIN is the built binary (set by CMake).
 */
#include <fcntl.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cg_ring.h"
#include "cg_test.h"
#include "ledger_store.h"
#include "ledger_test_call.h"
#include "proto.h"

static char g_dir[64];

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    if (fp != NULL) {
        fputs(text, fp);
        fclose(fp);
    }
}

static pid_t spawn(const char *config, const char *shard)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, 2);
        }
        execl(LEDGER_BIN, LEDGER_BIN, "--config", config, "--shard", shard, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Exit status of pid, waiting up to timeout_ms; -1 if it did not exit. */
static int wait_exit(pid_t pid, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        int st = 0;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        usleep(10 * 1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static int ping(const char *url)
{
    nng_socket s;
    msgpack_sbuffer sb;
    proto_req req;
    proto_rep *reps = NULL;
    uint32_t n = 0;
    void *buf = NULL;
    size_t len = 0;
    int ok = 0;
    memset(&req, 0, sizeof(req));
    req.op = PROTO_OP_PING;
    msgpack_sbuffer_init(&sb);
    if (nng_req0_open(&s) != 0) {
        return 0;
    }
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 500);
    if (nng_dial(s, url, NULL, 0) == 0 && proto_req_encode(&req, 1, &sb) == CG_ERR_OK &&
        nng_send(s, sb.data, sb.size, 0) == 0 && nng_recv(s, &buf, &len, NNG_FLAG_ALLOC) == 0) {
        if (proto_rep_decode(buf, len, &reps, &n) == CG_ERR_OK) {
            ok = n == 1 && reps[0].status == CG_ERR_OK && strcmp(reps[0].u.ping.shard, "s1") == 0;
            proto_rep_free(reps, n);
        }
        nng_free(buf, len);
    }
    msgpack_sbuffer_destroy(&sb);
    nng_close(s);
    return ok;
}

static void config_paths(char *cfg, char *bad, size_t cap)
{
    char text[1024];
    snprintf(cfg, cap, "%s/capgate.conf", g_dir);
    snprintf(bad, cap, "%s/bad.conf", g_dir);
    snprintf(text, sizeof(text),
             "shard s0 ipc://%s/s0.req ipc://%s/s0.pub\n"
             "shard s1 ipc://%s/s1.req ipc://%s/s1.pub\n"
             "data_dir %s/data\n"
             "lmdb_map_bytes 16777216\n"
             "ledger_contexts 4\n",
             g_dir, g_dir, g_dir, g_dir, g_dir);
    write_file(cfg, text);
    write_file(bad, "ledger_contexts 0\n");
}

CG_TEST(bad_config_and_unknown_shard_exit_2)
{
    char cfg[256], bad[256];
    config_paths(cfg, bad, sizeof(cfg));
    CG_CHECK_EQ_INT(wait_exit(spawn(cfg, "nope"), 5000), 2);
    CG_CHECK_EQ_INT(wait_exit(spawn(bad, "s0"), 5000), 2);
}

CG_TEST(serves_and_exits_0_on_sigterm)
{
    char cfg[256], bad[256], url[256], data[256];
    struct stat st;
    config_paths(cfg, bad, sizeof(cfg));
    snprintf(url, sizeof(url), "ipc://%s/s1.req", g_dir);
    pid_t pid = spawn(cfg, "s1");
    CG_CHECK(pid > 0);
    int up = 0;
    for (int i = 0; i < 100 && !up; i++) {
        up = ping(url);
        if (!up) {
            usleep(50 * 1000);
        }
    }
    snprintf(data, sizeof(data), "%s/data/s1/data.mdb", g_dir);
    int have_data = stat(data, &st) == 0;
    kill(pid, SIGTERM);
    int rc = wait_exit(pid, 10000);
    CG_CHECK(up);
    CG_CHECK(have_data);
    CG_CHECK_EQ_INT(rc, 0);
}

#define HAMMERS 8

/* Send a batch without ever blocking in send (REQ with no peer would), wait for the reply. */
static int call_nb(nng_socket s, const proto_req *reqs, uint32_t n, proto_rep **reps, uint32_t *rn)
{
    return ledger_test_call(s, NNG_FLAG_NONBLOCK, reqs, n, reps, rn);
}

typedef struct hammer {
    nng_socket req;
    int id;
    _Atomic int *stop;
    int acked;    /* settles answered OK */
    int attempts; /* settles sent */
} hammer;

static proto_req mk_op(int op, const char *rid, int64_t cost)
{
    proto_req r;
    memset(&r, 0, sizeof(r));
    r.op = (uint8_t)op;
    snprintf(r.route, sizeof(r.route), "key:hot");
    if (op == PROTO_OP_RESERVE) {
        snprintf(r.u.reserve.request_id, sizeof(r.u.reserve.request_id), "%s", rid);
        r.u.reserve.lease_ms = 60000;
        r.u.reserve.worst.cost_nusd = cost;
    } else if (op == PROTO_OP_SETTLE) {
        snprintf(r.u.settle.request_id, sizeof(r.u.settle.request_id), "%s", rid);
        r.u.settle.actual.cost_nusd = cost;
    } else if (op == PROTO_OP_PUT_KEY) {
        proto_key *k = &r.u.put_key.key;
        snprintf(k->id, sizeof(k->id), "hot");
        snprintf(k->org, sizeof(k->org), "acme");
        k->billing_anchor_day = 1;
        k->limit_n = 1;
        k->limits[0].id = 1;
        k->limits[0].window.kind = CG_WIN_LIFETIME;
    }
    return r;
}

static void *hammer_main(void *p)
{
    hammer *h = p;
    for (int i = 0; !atomic_load(h->stop) && i < 1000000; i++) {
        char rid[32];
        proto_rep *reps = NULL;
        uint32_t n = 0;
        snprintf(rid, sizeof(rid), "h%d-%d", h->id, i);
        proto_req reqs[2] = {mk_op(PROTO_OP_RESERVE, rid, 1), mk_op(PROTO_OP_SETTLE, rid, 1)};
        h->attempts++;
        if (call_nb(h->req, reqs, 2, &reps, &n) != 0) {
            usleep(1000);
            continue;
        }
        if (n == 2 && reps[1].status == CG_ERR_OK) {
            h->acked++;
        }
        proto_rep_free(reps, n);
    }
    return NULL;
}

static int64_t hot_used(const char *dir)
{
    const char *names[] = {"s0"};
    cg_ring ring;
    ledger_store *st = NULL;
    int64_t used = -1;
    if (cg_ring_init(&ring, names, 1) != CG_ERR_OK) {
        return -1;
    }
    ledger_store_cfg cfg = {
        .dir = dir, .map_bytes = 16777216, .ring = &ring, .shard_index = 0, .shard_name = "s0"};
    if (ledger_store_open(&cfg, &st) == CG_ERR_OK) {
        proto_req get = mk_op(PROTO_OP_GET_KEY, NULL, 0);
        proto_rep rep;
        ledger_op op = {.req = &get, .rep = &rep};
        memset(&rep, 0, sizeof(rep));
        if (ledger_store_apply(st, &op, 1) == CG_ERR_OK && rep.status == CG_ERR_OK) {
            used = rep.u.get_key.states[0].used;
        }
        ledger_store_close(st);
    }
    cg_ring_fini(&ring);
    return used;
}

CG_TEST(sigterm_under_load_exits_0_and_keeps_acknowledged_settles)
{
    char cfg[256], url[256], text[512], data[256];
    hammer hs[HAMMERS];
    pthread_t th[HAMMERS];
    _Atomic int stop = 0;
    snprintf(cfg, sizeof(cfg), "%s/load.conf", g_dir);
    snprintf(url, sizeof(url), "ipc://%s/l0.req", g_dir);
    snprintf(text, sizeof(text),
             "shard s0 %s ipc://%s/l0.pub\ndata_dir %s/load\nlmdb_map_bytes 16777216\n"
             "ledger_contexts 8\n",
             url, g_dir, g_dir);
    write_file(cfg, text);
    pid_t pid = spawn(cfg, "s0");
    CG_CHECK(pid > 0);
    nng_socket req;
    CG_CHECK(nng_req0_open(&req) == 0);
    nng_socket_set_ms(req, NNG_OPT_RECVTIMEO, 500);
    CG_CHECK(nng_dial(req, url, NULL, NNG_FLAG_NONBLOCK) == 0);
    proto_req put = mk_op(PROTO_OP_PUT_KEY, NULL, 0);
    proto_rep *reps = NULL;
    uint32_t n = 0;
    int up = 0;
    for (int i = 0; i < 100 && !up; i++) {
        up = call_nb(req, &put, 1, &reps, &n) == 0 && reps[0].status == CG_ERR_OK;
        if (reps != NULL) {
            proto_rep_free(reps, n);
            reps = NULL;
        }
        if (!up) {
            usleep(50 * 1000);
        }
    }
    nng_close(req);
    CG_CHECK(up);
    for (int i = 0; i < HAMMERS; i++) {
        hs[i] = (hammer){.id = i, .stop = &stop};
        CG_CHECK(nng_req0_open(&hs[i].req) == 0);
        nng_socket_set_ms(hs[i].req, NNG_OPT_RECVTIMEO, 300);
        CG_CHECK(nng_dial(hs[i].req, url, NULL, NNG_FLAG_NONBLOCK) == 0);
        CG_CHECK(pthread_create(&th[i], NULL, hammer_main, &hs[i]) == 0);
    }
    usleep(300 * 1000);
    kill(pid, SIGTERM);
    /* Drain (<= 5 s) plus two bounded socket closes (<= 2 s each), with margin. */
    int rc = wait_exit(pid, 15000);
    atomic_store(&stop, 1);
    int acked = 0, attempts = 0;
    for (int i = 0; i < HAMMERS; i++) {
        pthread_join(th[i], NULL);
        nng_close(hs[i].req);
        acked += hs[i].acked;
        attempts += hs[i].attempts;
    }
    CG_CHECK_EQ_INT(rc, 0);
    CG_CHECK(acked > 0);
    snprintf(data, sizeof(data), "%s/load/s0", g_dir);
    int64_t used = hot_used(data);
    CG_CHECK(used >= acked);    /* every acknowledged settle is durable */
    CG_CHECK(used <= attempts); /* and none counted twice */
}

int main(void)
{
    snprintf(g_dir, sizeof(g_dir), "/tmp/ledger_main_test.XXXXXX");
    if (mkdtemp(g_dir) == NULL) {
        return 1;
    }
    unsetenv("CAPGATE_CONFIG");
    int rc = CG_TEST_RUN(bad_config_and_unknown_shard_exit_2, serves_and_exits_0_on_sigterm,
                         sigterm_under_load_exits_0_and_keeps_acknowledged_settles);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "could not remove %s\n", g_dir);
    }
    return rc;
}
