/*
 * it_netns.c — integration, multi-host: the cluster spread over network
 * namespaces the way docker-compose places containers (issue 7).
 *
 * Layout (all names unique per run: the test's PID is in every name):
 *
 *   netns SW   a bridge (the "switch"); every other namespace plugs into it
 *              with a veth pair, like a container into a compose network
 *   netns DEMO 10.A.B.2   capgate-demo-upstream
 *   netns L0   10.A.B.10  capgate-ledger --shard s0
 *   netns L1   10.A.B.11  capgate-ledger --shard s1
 *   netns GW   10.A.B.20  capgate-gateway
 *   host       10.A.B.1   this test (admin calls, client requests)
 *
 * Every process finds the others only through the addresses in the config.
 * The test proves that (1) requests work across the namespaces for keys on
 * both shards; (2) with shard s0's cable pulled (its switch port set down)
 * requests for keys (and orgs) on s0 fail closed with 503 ledger_unavailable
 * while keys on s1 keep working; (3) with the port up again, s0's keys work
 * again, without restarting anything. Finally every process stops with
 * SIGTERM and must exit 0.
 *
 * Needs root and iproute2 (`ip netns`); otherwise it exits 77, which ctest
 * reports as skipped, with the reason. Cleanup: processes by PID and every
 * namespace (`ip netns del`) from an atexit hook, so also after a failed
 * check; namespaces left by a run that was killed outright are removed by
 * the next run (their names carry a PID that no longer exists).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include "cg_ring.h"
#include "fixture.h"

#define NS_SKIP 77
#define NS_LEDGER_TIMEOUT_MS 1000
#define NS_READY_MS 20000
#define NS_RECOVER_MS 20000
#define NS_PREFIX "cgnet"

enum { N_DEMO, N_L0, N_L1, N_GW, N_COUNT };
static const char *const ns_role[N_COUNT] = {"demo", "l0", "l1", "gw"};
static const int ns_host[N_COUNT] = {2, 10, 11, 20};

static struct {
    int id; /* our PID: part of every name */
    int net_a, net_b;
    char sw[32];
    char ns[N_COUNT][32];
    int ns_made[N_COUNT];
    int sw_made;
    char host_if[16];
    pid_t pid[N_COUNT];
    char log[N_COUNT][FX_PATH_MAX];
    int passed;
} nt;

static void ns_ip(char out[32], int host)
{
    snprintf(out, 32, "10.%d.%d.%d", nt.net_a, nt.net_b, host);
}

/* Run a shell command; its exit status (-1 if it could not run). */
static int ns_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int ns_sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return st == -1 ? -1 : (WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

#define NS_SH(...)                                                                      \
    do {                                                                                \
        int ns_st_ = ns_sh(__VA_ARGS__);                                                \
        FX_CHECK(ns_st_ == 0, "command failed (%d): %s", ns_st_, fx_fmt_(__VA_ARGS__)); \
    } while (0)

static void ns_tail(int i)
{
    FILE *f = fopen(nt.log[i], "r");
    if (f == NULL) {
        return;
    }
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = buf;
    for (int lines = 0, k = (int)n - 1; k >= 0; k--) {
        if (buf[k] == '\n' && ++lines > 15) {
            p = buf + k + 1;
            break;
        }
    }
    fprintf(stderr, "---- %s log (%s) ----\n%s", ns_role[i], nt.log[i], p);
}

/* atexit: stop our processes by PID, then delete our namespaces (also after a failure). */
static void ns_cleanup(void)
{
    for (int i = 0; i < N_COUNT; i++) {
        if (nt.pid[i] > 0) {
            if (!nt.passed) {
                ns_tail(i);
            }
            kill(nt.pid[i], SIGKILL);
            waitpid(nt.pid[i], NULL, 0);
            nt.pid[i] = 0;
        }
    }
    for (int i = 0; i < N_COUNT; i++) {
        if (nt.ns_made[i]) {
            ns_sh("ip netns del %s 2>/dev/null", nt.ns[i]);
        }
    }
    if (nt.sw_made) {
        /* Deleting SW also deletes the host's veth (its peer lives in SW). */
        ns_sh("ip netns del %s 2>/dev/null", nt.sw);
    }
}

/* Namespaces of earlier runs that were killed before their cleanup ran. */
static void ns_remove_stale(void)
{
    DIR *d = opendir("/run/netns");
    if (d == NULL) {
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int pid = 0;
        char rest[32];
        if (sscanf(e->d_name, NS_PREFIX "%d-%31s", &pid, rest) == 2 && pid > 0 &&
            kill(pid, 0) != 0 && errno == ESRCH) {
            fx_log("removing stale namespace %s", e->d_name);
            ns_sh("ip netns del %s 2>/dev/null", e->d_name);
        }
    }
    closedir(d);
}

/* Exit 77 (skipped) with the reason when namespaces cannot be created here. */
static void ns_skip_unless_possible(void)
{
    const char *why = NULL;
    char probe[48];
    snprintf(probe, sizeof(probe), NS_PREFIX "%d-probe", nt.id);
    if (geteuid() != 0) {
        why = "not root";
    } else if (ns_sh("command -v ip >/dev/null 2>&1") != 0) {
        why = "no `ip` command (iproute2)";
    } else if (ns_sh("ip netns add %s 2>/dev/null", probe) != 0) {
        why = "`ip netns add` failed (no CAP_SYS_ADMIN or no netns support)";
    } else {
        int ok =
            ns_sh("ip -n %s link add cg%dpb type bridge 2>/dev/null", probe, nt.id % 100000) == 0;
        ns_sh("ip netns del %s", probe);
        if (!ok) {
            why = "cannot create a bridge inside a namespace";
        }
    }
    if (why != NULL) {
        printf("it_netns: SKIPPED: network namespaces cannot be created here: %s\n", why);
        fflush(stdout);
        exit(NS_SKIP);
    }
}

/* The switch namespace with its bridge, each node namespace plugged in, and the host port. */
static void ns_build(void)
{
    int s = nt.id % 100000; /* interface names must stay under 16 bytes */
    snprintf(nt.sw, sizeof(nt.sw), NS_PREFIX "%d-sw", nt.id);
    NS_SH("ip netns add %s", nt.sw);
    nt.sw_made = 1;
    NS_SH("ip -n %s link add br0 type bridge && ip -n %s link set br0 up && "
          "ip -n %s link set lo up",
          nt.sw, nt.sw, nt.sw);
    for (int i = 0; i < N_COUNT; i++) {
        char ip[32];
        ns_ip(ip, ns_host[i]);
        snprintf(nt.ns[i], sizeof(nt.ns[i]), NS_PREFIX "%d-%s", nt.id, ns_role[i]);
        NS_SH("ip netns add %s", nt.ns[i]);
        nt.ns_made[i] = 1;
        NS_SH("ip link add cg%d%s type veth peer name cg%d%sp", s, ns_role[i], s, ns_role[i]);
        NS_SH("ip link set cg%d%s netns %s && ip link set cg%d%sp netns %s", s, ns_role[i],
              nt.ns[i], s, ns_role[i], nt.sw);
        NS_SH("ip -n %s link set lo up && ip -n %s addr add %s/24 dev cg%d%s && "
              "ip -n %s link set cg%d%s up",
              nt.ns[i], nt.ns[i], ip, s, ns_role[i], nt.ns[i], s, ns_role[i]);
        NS_SH("ip -n %s link set cg%d%sp master br0 && ip -n %s link set cg%d%sp up", nt.sw, s,
              ns_role[i], nt.sw, s, ns_role[i]);
    }
    char hip[32];
    ns_ip(hip, 1);
    snprintf(nt.host_if, sizeof(nt.host_if), "cg%dh", s);
    NS_SH("ip link add %s type veth peer name %sp && ip link set %sp netns %s", nt.host_if,
          nt.host_if, nt.host_if, nt.sw);
    NS_SH("ip addr add %s/24 dev %s && ip link set %s up", hip, nt.host_if, nt.host_if);
    NS_SH("ip -n %s link set %sp master br0 && ip -n %s link set %sp up", nt.sw, nt.host_if, nt.sw,
          nt.host_if);
    fx_log("namespaces ready: switch %s, subnet 10.%d.%d.0/24", nt.sw, nt.net_a, nt.net_b);
}

/* Pull (up = 0) or plug back (up = 1) node i's cable: its port on the switch. */
static void ns_link(int i, int up)
{
    NS_SH("ip -n %s link set cg%d%sp %s", nt.sw, nt.id % 100000, ns_role[i], up ? "up" : "down");
}

static void ns_write_config(const char *path)
{
    char demo[32], l0[32], l1[32], gw[32];
    ns_ip(demo, ns_host[N_DEMO]);
    ns_ip(l0, ns_host[N_L0]);
    ns_ip(l1, ns_host[N_L1]);
    ns_ip(gw, ns_host[N_GW]);
    FILE *f = fopen(path, "w");
    FX_CHECK(f != NULL, "fopen %s", path);
    fprintf(f,
            "# written by it_netns: every address is another namespace's\n"
            "listen %s:8080\nadmin_listen %s:8081\nworkers 2\n"
            "shard s0 tcp://%s:7100 tcp://%s:7101 %s:7102\n"
            "shard s1 tcp://%s:7100 tcp://%s:7101 %s:7102\n"
            "provider demo http://%s:9090/v1\n"
            "model demo-gpt-4o-mini demo prompt=0.15 completion=0.60 max_output=16384\n"
            "admin_token netns-admin-token\nkey_pepper netns-pepper-0123456789abcdef\n"
            "data_dir %s/data\nledger_timeout_ms %d\nkey_cache_ms 0\n"
            "shutdown_timeout_ms 5000\n",
            gw, gw, l0, l0, l0, l1, l1, l1, demo, fx_dir(), NS_LEDGER_TIMEOUT_MS);
    fclose(f);
}

/* Start node i's process inside its namespace; stdout+stderr to its log. */
static void ns_start(int i, const char *const *argv)
{
    snprintf(nt.log[i], sizeof(nt.log[i]), "%s/%s.log", fx_dir(), ns_role[i]);
    pid_t pid = fork();
    FX_CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(nt.log[i], O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        const char *args[16] = {"ip", "netns", "exec", nt.ns[i]};
        size_t n = 4;
        for (size_t k = 0; argv[k] != NULL && n < 15; k++) {
            args[n++] = argv[k];
        }
        args[n] = NULL;
        /* ip netns exec execs the binary in place: this PID becomes the process's. */
        execvp("ip", (char *const *)args);
        _exit(127);
    }
    nt.pid[i] = pid;
}

/* Poll url until it answers 200 (bounded); the process must stay alive meanwhile. */
static void ns_wait_200(int i, const char *url)
{
    int64_t deadline = fx_now_ms() + NS_READY_MS;
    for (;;) {
        fx_resp r;
        long st = fx_http(&r, "GET", url, NULL, NULL, 1000);
        fx_resp_free(&r);
        if (st == 200) {
            return;
        }
        int ws;
        FX_CHECK(waitpid(nt.pid[i], &ws, WNOHANG) == 0, "%s exited while starting", ns_role[i]);
        FX_CHECK(fx_now_ms() < deadline, "%s not ready: GET %s -> %ld", ns_role[i], url, st);
        fx_sleep_ms(50);
    }
}

static long ns_admin(fx_resp *r, const char *method, const char *path, const char *body)
{
    char gw[32];
    ns_ip(gw, ns_host[N_GW]);
    const char *hdrs[] = {"Authorization: Bearer netns-admin-token",
                          "Content-Type: application/json", NULL};
    char url[512]; /* not fx_fmt_: path or body may be in its buffer */
    snprintf(url, sizeof(url), "http://%s:8081%s", gw, path);
    return fx_http(r, method, url, hdrs, body, 0);
}

static long ns_chat(fx_resp *r, const char *key)
{
    char gw[32];
    ns_ip(gw, ns_host[N_GW]);
    char auth[192];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
    const char *hdrs[] = {auth, "Content-Type: application/json", NULL};
    char url[128];
    snprintf(url, sizeof(url), "http://%s:8080/v1/chat/completions", gw);
    return fx_http(r, "POST", url, hdrs,
                   "{\"model\":\"demo-gpt-4o-mini\",\"max_tokens\":4,"
                   "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                   0);
}

/* An org and a key of it that both live on shard want (so a request touches only it). */
static void ns_key_on(const cg_ring *ring, uint16_t want, char key[128])
{
    char org[32], route[96];
    int n = 0;
    do {
        snprintf(org, sizeof(org), "org%d", n++);
        snprintf(route, sizeof(route), "org:%s", org);
    } while (cg_ring_lookup(ring, route, strlen(route)) != want);
    fx_resp r;
    char body[96], path[96];
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"name\":\"netns\"}", org);
    long st = ns_admin(&r, "POST", "/admin/v1/orgs", body);
    FX_CHECK(st == 201, "create org %s: %ld %s %s", org, st, r.err, r.body);
    fx_resp_free(&r);
    for (int tries = 0; tries < 64; tries++) {
        snprintf(path, sizeof(path), "/admin/v1/orgs/%s/keys", org);
        st = ns_admin(&r, "POST", path,
                      "{\"name\":\"k\",\"limits\":[{\"metric\":\"cost\",\"window\":\"month\","
                      "\"max\":\"1\"}]}");
        FX_CHECK(st == 201, "create key: %ld %s %s", st, r.err, r.body);
        const cJSON *jid = cJSON_GetObjectItemCaseSensitive(r.json, "id");
        const cJSON *jkey = cJSON_GetObjectItemCaseSensitive(r.json, "key");
        FX_CHECK(cJSON_IsString(jid) && cJSON_IsString(jkey), "key reply: %s", r.body);
        snprintf(route, sizeof(route), "key:%s", jid->valuestring);
        if (cg_ring_lookup(ring, route, strlen(route)) == want) {
            snprintf(key, 128, "%s", jkey->valuestring);
            fx_log("org %s and key %s live on s%u", org, jid->valuestring, want);
            fx_resp_free(&r);
            return;
        }
        fx_resp_free(&r);
    }
    FX_CHECK(0, "no key landed on s%u in 64 tries", want);
}

static void ns_expect(const char *key, long want, const char *what)
{
    fx_resp r;
    long st = ns_chat(&r, key);
    FX_CHECK(st == want, "%s: want %ld, got %ld %s %s", what, want, st, r.err, r.body);
    if (want == 503) {
        FX_CHECK_EQ_STR(fx_resp_error_code(&r), "ledger_unavailable");
        FX_CHECK(r.elapsed_ms < NS_LEDGER_TIMEOUT_MS + 2000, "%s: 503 took %lld ms", what,
                 (long long)r.elapsed_ms);
    }
    fx_log("%s: %ld in %lld ms", what, st, (long long)r.elapsed_ms);
    fx_resp_free(&r);
}

static void ns_stop_all(void)
{
    for (int i = N_GW; i >= 0; i--) {
        if (nt.pid[i] <= 0) {
            continue;
        }
        kill(nt.pid[i], SIGTERM);
        int ws = 0;
        int64_t deadline = fx_now_ms() + 15000;
        pid_t got;
        while ((got = waitpid(nt.pid[i], &ws, WNOHANG)) == 0 && fx_now_ms() < deadline) {
            fx_sleep_ms(20);
        }
        FX_CHECK(got == nt.pid[i], "%s did not exit within 15 s of SIGTERM", ns_role[i]);
        nt.pid[i] = 0;
        FX_CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "%s exit status %d", ns_role[i], ws);
        fx_log("%s stopped cleanly", ns_role[i]);
    }
}

int main(void)
{
    nt.id = (int)getpid();
    ns_skip_unless_possible();
    fx_init("it_netns");
    atexit(ns_cleanup); /* runs before the fixture's own hook */
    ns_remove_stale();
    srand((unsigned)(nt.id ^ fx_now_ms()));
    nt.net_a = 100 + rand() % 150;
    nt.net_b = rand() % 250;
    ns_build();

    char conf[FX_PATH_MAX], data[FX_PATH_MAX];
    snprintf(conf, sizeof(conf), "%s/capgate.conf", fx_dir());
    snprintf(data, sizeof(data), "%s/data", fx_dir());
    FX_CHECK(mkdir(data, 0700) == 0, "mkdir %s", data);
    ns_write_config(conf);
    char url[128], ip[32];

    ns_ip(ip, ns_host[N_DEMO]);
    char listen[48];
    snprintf(listen, sizeof(listen), "%s:9090", ip);
    ns_start(N_DEMO, (const char *const[]){NETNS_DEMO_BIN, "--listen", listen, NULL});
    snprintf(url, sizeof(url), "http://%s:9090/healthz", ip);
    ns_wait_200(N_DEMO, url);
    for (int s = 0; s < 2; s++) {
        int i = N_L0 + s;
        ns_start(i, (const char *const[]){NETNS_LEDGER_BIN, "--config", conf, "--shard",
                                          s == 0 ? "s0" : "s1", NULL});
        ns_ip(ip, ns_host[i]);
        snprintf(url, sizeof(url), "http://%s:7102/readyz", ip);
        ns_wait_200(i, url);
    }
    ns_start(N_GW, (const char *const[]){NETNS_GATEWAY_BIN, "--config", conf, NULL});
    ns_ip(ip, ns_host[N_GW]);
    snprintf(url, sizeof(url), "http://%s:8081/readyz", ip);
    ns_wait_200(N_GW, url); /* every shard answered a PING across the bridge */
    fx_log("cluster up across %d namespaces", N_COUNT + 1);

    cg_ring ring;
    const char *names[] = {"s0", "s1"};
    FX_CHECK(cg_ring_init(&ring, names, 2) == CG_ERR_OK, "ring");
    char k0[128], k1[128];
    ns_key_on(&ring, 0, k0);
    ns_key_on(&ring, 1, k1);
    cg_ring_fini(&ring);

    ns_expect(k0, 200, "key on s0, all links up");
    ns_expect(k1, 200, "key on s1, all links up");

    ns_link(N_L0, 0);
    fx_log("s0's link is down");
    ns_expect(k0, 503, "key on s0, s0 cut off");
    ns_expect(k1, 200, "key on s1, s0 cut off");
    ns_expect(k0, 503, "key on s0, s0 still cut off");

    ns_link(N_L0, 1);
    fx_log("s0's link is up again");
    int64_t t0 = fx_now_ms();
    for (;;) {
        fx_resp r;
        long st = ns_chat(&r, k0);
        fx_resp_free(&r);
        if (st == 200) {
            break;
        }
        FX_CHECK(st == 503 && fx_now_ms() - t0 < NS_RECOVER_MS,
                 "key on s0 after the link came back: %ld", st);
        fx_sleep_ms(100);
    }
    fx_log("key on s0 works again %lld ms after the link came back, no restart",
           (long long)(fx_now_ms() - t0));
    ns_expect(k1, 200, "key on s1 after recovery");
    for (int i = 0; i < N_COUNT; i++) {
        int ws;
        FX_CHECK(waitpid(nt.pid[i], &ws, WNOHANG) == 0, "%s restarted or died", ns_role[i]);
    }

    ns_stop_all();
    nt.passed = 1;
    return fx_done();
}
