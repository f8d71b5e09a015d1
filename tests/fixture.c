/*
 * fixture.c — process control, config and failure handling of the
 * integration-test fixture (see fixture.h for the model).
 *
 * Invariants: every PID the fixture forks is in fx_pids until it is reaped,
 * so the atexit hook and the signal handlers can always SIGKILL what is left;
 * children are also tied to the test by PR_SET_PDEATHSIG. The child does
 * nothing but dup2 and execve after fork (the test may have threads), so its
 * argv and environment are built before fork.
 */
#include "fixture.h"
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>

extern char **environ;

#define FX_PIDS_MAX 32
#define FX_PORTS_MAX 64
#define FX_PORT_LOW 10000 /* lowest port drawn for a test process */
#define FX_LOG_TAIL_LINES 40

const fx_model fx_default_models[] = {
    {"demo-gpt-4o-mini", "0.15", "0.60", 16384},
};
const size_t fx_default_model_n = 1;

static char fx_name[64];
static char fx_scratch[FX_PATH_MAX / 2]; /* short enough for every path under it */
static int64_t fx_t0_ms;
static volatile pid_t fx_pids[FX_PIDS_MAX];
static fx_cluster *fx_clusters[4];
static size_t fx_cluster_n;
static int fx_ports[FX_PORTS_MAX];
static size_t fx_port_n;
static int fx_finished;
static int64_t fx_clock_s;              /* test clock offset written to the clock file */
static char fx_clock_path[FX_PATH_MAX]; /* "" until a cluster exists */

void fx_sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int64_t fx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *fx_dir(void)
{
    return fx_scratch;
}

const char *fx_fmt_(const char *fmt, ...)
{
    static _Thread_local char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return buf;
}

void fx_log(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    int64_t t = fx_now_ms() - fx_t0_ms;
    fprintf(stderr, "[%s +%lld.%03llds] %s\n", fx_name, (long long)(t / 1000),
            (long long)(t % 1000), msg);
}

/* ---- PID registry and emergency cleanup ---- */

static void fx_pid_add(pid_t pid)
{
    for (size_t i = 0; i < FX_PIDS_MAX; i++) {
        if (fx_pids[i] == 0) {
            fx_pids[i] = pid;
            return;
        }
    }
    kill(pid, SIGKILL);
    fx_fail(__FILE__, __LINE__, "too many processes (FX_PIDS_MAX %d)", FX_PIDS_MAX);
}

static void fx_pid_del(pid_t pid)
{
    for (size_t i = 0; i < FX_PIDS_MAX; i++) {
        if (fx_pids[i] == pid) {
            fx_pids[i] = 0;
        }
    }
}

/* Async-signal-safe: SIGKILL every child still registered. */
static void fx_kill_all(void)
{
    for (size_t i = 0; i < FX_PIDS_MAX; i++) {
        pid_t pid = fx_pids[i];
        if (pid > 0) {
            kill(pid, SIGKILL);
        }
    }
}

static void fx_reap_all(void)
{
    fx_kill_all();
    for (size_t i = 0; i < FX_PIDS_MAX; i++) {
        pid_t pid = fx_pids[i];
        if (pid > 0) {
            waitpid(pid, NULL, 0);
            fx_pids[i] = 0;
        }
    }
}

static void fx_atexit(void)
{
    fx_reap_all();
    if (!fx_finished && fx_scratch[0] != '\0') {
        fprintf(stderr, "[%s] exited without fx_done; scratch dir kept: %s\n", fx_name, fx_scratch);
    }
}

static void fx_signal_cb(int sig)
{
    static const char msg[] = "fixture: signal or watchdog, killing every started process\n";
    fx_kill_all();
    if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
        /* Nothing more can be done in a signal handler. */
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* ---- scratch directory ---- */

static int fx_rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void fx_init(const char *test_name)
{
    snprintf(fx_name, sizeof(fx_name), "%s", test_name);
    fx_t0_ms = fx_now_ms();
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0') {
        tmp = "/tmp";
    }
    int n = snprintf(fx_scratch, sizeof(fx_scratch), "%s/capgate-%s-XXXXXX", tmp, test_name);
    if (n <= 0 || (size_t)n >= sizeof(fx_scratch) || mkdtemp(fx_scratch) == NULL) {
        fprintf(stderr, "mkdtemp %s: %s\n", fx_scratch, strerror(errno));
        exit(1);
    }
    atexit(fx_atexit);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = fx_signal_cb;
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGALRM, SIGQUIT};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        sigaction(sigs[i], &sa, NULL);
    }
    signal(SIGPIPE, SIG_IGN);
    alarm(FX_WATCHDOG_S);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fx_fail(__FILE__, __LINE__, "curl_global_init failed");
    }
    fx_log("scratch dir %s", fx_scratch);
}

/* Print the last FX_LOG_TAIL_LINES lines of a process log. */
static void fx_log_tail(const fx_proc *p)
{
    FILE *f = fopen(p->log_path, "r");
    if (f == NULL) {
        return;
    }
    static char buf[1 << 16];
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > (long)sizeof(buf) - 1 ? size - (long)sizeof(buf) + 1 : 0;
    fseek(f, from, SEEK_SET);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    size_t lines = 0;
    size_t start = n;
    while (start > 0) {
        if (buf[start - 1] == '\n' && start != n && ++lines > FX_LOG_TAIL_LINES) {
            break;
        }
        start--;
    }
    fprintf(stderr, "---- %s (%s), last lines ----\n%s", p->name, p->log_path, buf + start);
    if (n > 0 && buf[n - 1] != '\n') {
        fputc('\n', stderr);
    }
}

static void fx_dump_logs(void)
{
    for (size_t k = 0; k < fx_cluster_n; k++) {
        fx_cluster *c = fx_clusters[k];
        fx_log_tail(&c->demo);
        for (uint32_t i = 0; i < c->opts.shard_n; i++) {
            fx_log_tail(&c->ledgers[i]);
        }
        for (uint32_t i = 0; i < c->opts.gateway_n; i++) {
            fx_log_tail(&c->gateways[i]);
        }
        fx_log_tail(&c->alerter);
    }
}

_Noreturn void fx_fail(const char *file, int line, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    alarm(0);
    fx_reap_all();
    fprintf(stderr, "\n[%s] FAIL %s:%d: %s\n", fx_name, file, line, msg);
    fx_dump_logs();
    fprintf(stderr, "[%s] scratch dir kept: %s\n", fx_name, fx_scratch);
    fx_finished = 1;
    exit(1);
}

static void fx_proc_fini(fx_proc *p)
{
    for (uint32_t i = 0; i < p->env_n; i++) {
        free(p->env[i]);
    }
    p->env_n = 0;
}

int fx_done(void)
{
    for (size_t k = 0; k < fx_cluster_n; k++) {
        fx_cluster *c = fx_clusters[k];
        /* Gateways first so nothing is in flight when the shards go. */
        fx_proc *order[2 + FX_GATEWAYS_MAX + FX_SHARDS_MAX];
        size_t n = 0;
        for (uint32_t i = 0; i < c->opts.gateway_n; i++) {
            order[n++] = &c->gateways[i];
        }
        order[n++] = &c->alerter;
        for (uint32_t i = 0; i < c->opts.shard_n; i++) {
            order[n++] = &c->ledgers[i];
        }
        order[n++] = &c->demo;
        for (size_t i = 0; i < n; i++) {
            if (order[i]->pid > 0) {
                fx_proc_stop_clean(order[i]);
            }
            fx_proc_fini(order[i]);
        }
        cg_ring_fini(&c->ring);
    }
    alarm(0);
    fx_cluster_n = 0;
    nftw(fx_scratch, fx_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    fx_log("passed");
    fx_finished = 1;
    curl_global_cleanup();
    return 0;
}

/* ---- ports ---- */

/* 1 if 127.0.0.1:port can be bound now (SO_REUSEADDR, as the servers do). */
static int fx_port_bindable(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    FX_CHECK(fd >= 0, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    int ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* Low end of the kernel's ephemeral port range (32768 if unreadable). */
static int fx_ephemeral_low(void)
{
    char buf[64] = "";
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f != NULL) {
        if (fgets(buf, sizeof(buf), f) == NULL) {
            buf[0] = '\0';
        }
        fclose(f);
    }
    long lo = strtol(buf, NULL, 10);
    return lo > 1024 && lo < 65536 ? (int)lo : 32768;
}

/*
 * Claim port for this test process among all fixtures on the machine: a write
 * lock on byte `port` of one shared lock file. The kernel drops the lock when
 * the process exits, however it exits, so nothing needs cleaning up. Returns
 * 1 if claimed (or if the lock file cannot be used at all), 0 if another
 * running test holds it.
 */
static int fx_port_claim(int port)
{
    static int fd = -2;
    if (fd == -2) {
        const char *tmp = getenv("TMPDIR");
        char path[FX_PATH_MAX];
        snprintf(path, sizeof(path), "%s/capgate-fixture-ports.lock",
                 tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
        /* Kept open for the life of the process: closing any descriptor of the
         * file would drop every POSIX lock this process holds on it. */
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    }
    if (fd < 0) {
        return 1;
    }
    struct flock l = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = port, .l_len = 1};
    return fcntl(fd, F_SETLK, &l) == 0;
}

/*
 * Ports are drawn at random below the kernel's ephemeral range: a port the
 * kernel handed out for "bind to port 0" is, once closed, immediately up for
 * grabs as the source port of any outgoing connection (curl clients, NNG
 * dialers, the gateway's upstream connections of every test running in
 * parallel), so the process that is to listen on it could find it taken.
 * Below that range, only another fixture could pick the same port between our
 * check and our process's bind; fx_port_claim rules that out.
 */
int fx_free_port(void)
{
    static unsigned seed;
    if (seed == 0) {
        seed = (unsigned)getpid() ^ (unsigned)fx_now_ms() * 2654435761u;
    }
    int lo = FX_PORT_LOW, hi = fx_ephemeral_low() - 1;
    for (int attempt = 0; attempt < 500 && hi - lo >= 1000; attempt++) {
        int port = lo + (int)(rand_r(&seed) % (unsigned)(hi - lo + 1));
        int seen = 0;
        for (size_t i = 0; i < fx_port_n; i++) {
            seen |= fx_ports[i] == port;
        }
        if (!seen && fx_port_n < FX_PORTS_MAX && fx_port_claim(port) && fx_port_bindable(port)) {
            fx_ports[fx_port_n++] = port;
            return port;
        }
    }
    /* No room below the ephemeral range (an unusual ip_local_port_range): let
     * the kernel choose, with the race described above. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    FX_CHECK(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    int ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
             getsockname(fd, (struct sockaddr *)&a, &len) == 0;
    close(fd);
    FX_CHECK(ok && fx_port_n < FX_PORTS_MAX, "no free port (%d..%d full): %s", lo, hi,
             strerror(errno));
    fx_ports[fx_port_n++] = ntohs(a.sin_port);
    return ntohs(a.sin_port);
}

static int fx_tcp_connect_ok(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return 0;
    }
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* ---- config ---- */

static void fx_random_hex(char *out, size_t bytes)
{
    unsigned char raw[64];
    FX_CHECK(bytes <= sizeof(raw), "random_hex %zu", bytes);
    int fd = open("/dev/urandom", O_RDONLY);
    FX_CHECK(fd >= 0 && read(fd, raw, bytes) == (ssize_t)bytes, "read /dev/urandom");
    close(fd);
    for (size_t i = 0; i < bytes; i++) {
        sprintf(out + 2 * i, "%02x", raw[i]);
    }
}

static void fx_config_write(fx_cluster *c)
{
    const fx_opts *o = &c->opts;
    FILE *f = fopen(c->config_path, "w");
    FX_CHECK(f != NULL, "fopen %s: %s", c->config_path, strerror(errno));
    char pepper[65];
    fx_random_hex(pepper, 32);
    fprintf(f, "# written by the integration-test fixture\n");
    fprintf(f, "listen 127.0.0.1:%d\nadmin_listen 127.0.0.1:%d\nworkers %u\n", c->gw_port[0],
            c->admin_port[0], o->workers);
    for (uint32_t i = 0; i < o->shard_n; i++) {
        fprintf(f, "shard s%u tcp://127.0.0.1:%d tcp://127.0.0.1:%d 127.0.0.1:%d\n", i,
                c->req_port[i], c->pub_port[i], c->shard_http_port[i]);
    }
    fprintf(f, "provider demo http://127.0.0.1:%d/v1\n", c->demo_port);
    for (size_t i = 0; i < o->model_n; i++) {
        const fx_model *m = &o->models[i];
        fprintf(f, "model %s demo prompt=%s completion=%s", m->name, m->prompt, m->completion);
        if (m->max_output > 0) {
            fprintf(f, " max_output=%lld", (long long)m->max_output);
        }
        fputc('\n', f);
    }
    if (o->routing_fee != NULL) {
        fprintf(f, "routing_fee %s\n", o->routing_fee);
    }
    fprintf(f, "admin_token %s\nkey_pepper %s\n", c->admin_token, pepper);
    fprintf(f, "data_dir %s\nledger_timeout_ms %u\n", c->data_dir, o->ledger_timeout_ms);
    fprintf(f, "alert_allow_http on\nalert_allow_private on\nalert_poll_ms 200\n");
    fprintf(f, "alert_retry_s 1 1 2\ndemo_listen 127.0.0.1:%d\n", c->demo_port);
    fprintf(f, "alerter_listen 127.0.0.1:%d\n", c->alerter_port);
    fprintf(f, "clock_file %s\nkey_cache_ms %u\n", c->clock_path, o->key_cache_ms);
    if (o->extra_config != NULL) {
        fprintf(f, "%s\n", o->extra_config);
    }
    /* A ctest variant of a test (tests/CMakeLists.txt, cg_add_integration_variant) appends
     * its directives here; the last value of a directive wins. */
    const char *variant = getenv("FX_EXTRA_CONFIG");
    if (variant != NULL && variant[0] != '\0') {
        fprintf(f, "%s\n", variant);
    }
    FX_CHECK(fclose(f) == 0, "write %s", c->config_path);
}

static void fx_proc_init(fx_cluster *c, fx_proc *p, fx_role role, uint32_t idx, const char *name)
{
    memset(p, 0, sizeof(*p));
    p->role = role;
    p->idx = idx;
    snprintf(p->name, sizeof(p->name), "%s", name);
    int n = snprintf(p->log_path, sizeof(p->log_path), "%s/%s.log", fx_scratch, name);
    FX_CHECK(n > 0 && (size_t)n < sizeof(p->log_path), "log path too long");
    (void)c;
}

void fx_proc_setenv(fx_proc *p, const char *name, const char *value)
{
    char line[FX_PATH_MAX + 64];
    snprintf(line, sizeof(line), "%s=%s", name, value);
    char *dup = strdup(line);
    FX_CHECK(dup != NULL, "strdup");
    size_t nl = strlen(name);
    for (uint32_t i = 0; i < p->env_n; i++) {
        if (strncmp(p->env[i], name, nl) == 0 && p->env[i][nl] == '=') {
            free(p->env[i]);
            p->env[i] = dup;
            return;
        }
    }
    FX_CHECK(p->env_n < FX_PROC_ENV_MAX, "too many env overrides for %s", p->name);
    p->env[p->env_n++] = dup;
}

static void fx_cluster_layout(fx_cluster *c, const fx_opts *o)
{
    memset(c, 0, sizeof(*c));
    c->opts = *o;
    fx_opts *co = &c->opts;
    co->shard_n = co->shard_n ? co->shard_n : 2;
    co->gateway_n = co->gateway_n ? co->gateway_n : 1;
    co->workers = co->workers ? co->workers : 2;
    co->ledger_timeout_ms = co->ledger_timeout_ms ? co->ledger_timeout_ms : 1000;
    if (co->models == NULL) {
        co->models = fx_default_models;
        co->model_n = fx_default_model_n;
    }
    FX_CHECK(co->shard_n <= FX_SHARDS_MAX && co->gateway_n <= FX_GATEWAYS_MAX, "bad opts");
    FX_CHECK(fx_cluster_n < sizeof(fx_clusters) / sizeof(fx_clusters[0]), "too many clusters");
    fx_clusters[fx_cluster_n++] = c;
    snprintf(c->config_path, sizeof(c->config_path), "%s/capgate.conf", fx_scratch);
    snprintf(c->data_dir, sizeof(c->data_dir), "%s/data", fx_scratch);
    snprintf(c->clock_path, sizeof(c->clock_path), "%s/clock", fx_scratch);
    FX_CHECK(mkdir(c->data_dir, 0700) == 0, "mkdir %s: %s", c->data_dir, strerror(errno));
    fx_random_hex(c->admin_token, 24);
    c->demo_port = fx_free_port();
    fx_proc_init(c, &c->demo, FX_DEMO, 0, "demo");
    const char *names[FX_SHARDS_MAX];
    char name_buf[FX_SHARDS_MAX][16];
    for (uint32_t i = 0; i < co->shard_n; i++) {
        c->req_port[i] = fx_free_port();
        c->pub_port[i] = fx_free_port();
        c->shard_http_port[i] = fx_free_port();
        snprintf(name_buf[i], sizeof(name_buf[i]), "s%u", i);
        names[i] = name_buf[i];
        fx_proc_init(c, &c->ledgers[i], FX_LEDGER, i, fx_fmt_("ledger-s%u", i));
    }
    FX_CHECK(cg_ring_init(&c->ring, names, co->shard_n) == CG_ERR_OK, "cg_ring_init");
    for (uint32_t i = 0; i < co->gateway_n; i++) {
        c->gw_port[i] = fx_free_port();
        c->admin_port[i] = fx_free_port();
        fx_proc_init(c, &c->gateways[i], FX_GATEWAY, i, fx_fmt_("gateway-%u", i));
        if (i > 0) {
            fx_proc_setenv(&c->gateways[i], "CAPGATE_LISTEN",
                           fx_fmt_("127.0.0.1:%d", c->gw_port[i]));
            fx_proc_setenv(&c->gateways[i], "CAPGATE_ADMIN_LISTEN",
                           fx_fmt_("127.0.0.1:%d", c->admin_port[i]));
        }
    }
    c->alerter_port = fx_free_port();
    fx_proc_init(c, &c->alerter, FX_ALERTER, 0, "alerter");
}

static void fx_clock_write(void)
{
    char tmp[FX_PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", fx_clock_path);
    FILE *f = fopen(tmp, "w");
    FX_CHECK(f != NULL, "fopen %s: %s", tmp, strerror(errno));
    fprintf(f, "%lld\n", (long long)fx_clock_s);
    FX_CHECK(fclose(f) == 0, "write %s", tmp);
    /* rename: a process re-reading the file never sees it half written. */
    FX_CHECK(rename(tmp, fx_clock_path) == 0, "rename %s: %s", tmp, strerror(errno));
}

void fx_clock_advance(int64_t seconds)
{
    FX_CHECK(fx_clock_path[0] != '\0', "fx_clock_advance before fx_cluster_start");
    FX_CHECK(seconds >= 0, "the test clock only moves forward (%lld)", (long long)seconds);
    fx_clock_s += seconds;
    fx_clock_write();
    /* Processes re-read the file at most every 50 ms; wait a little more than twice that. */
    fx_sleep_ms(120);
    fx_log("test clock +%llds (offset now %llds)", (long long)seconds, (long long)fx_clock_s);
}

int64_t fx_clock_offset_s(void)
{
    return fx_clock_s;
}

int64_t fx_clock_now_s(void)
{
    return (int64_t)time(NULL) + fx_clock_s;
}

void fx_cluster_prepare(fx_cluster *c, const fx_opts *o)
{
    fx_cluster_layout(c, o);
    snprintf(fx_clock_path, sizeof(fx_clock_path), "%s", c->clock_path);
    fx_clock_write();
    fx_config_write(c);
}

void fx_cluster_start(fx_cluster *c, const fx_opts *o)
{
    fx_cluster_prepare(c, o);
    fx_cluster_launch(c);
}

void fx_cluster_launch(fx_cluster *c)
{
    fx_proc_start(c, &c->demo);
    for (uint32_t i = 0; i < c->opts.shard_n; i++) {
        fx_proc_start(c, &c->ledgers[i]);
    }
    for (uint32_t i = 0; i < c->opts.gateway_n; i++) {
        fx_proc_start(c, &c->gateways[i]);
    }
    if (c->opts.start_alerter) {
        fx_proc_start(c, &c->alerter);
    }
    fx_log("cluster up: %u shard(s), %u gateway(s), demo :%d, gateway :%d, admin :%d",
           c->opts.shard_n, c->opts.gateway_n, c->demo_port, c->gw_port[0], c->admin_port[0]);
}

/* ---- process start / stop ---- */

/* Build envp: the inherited environment without CAPGATE_* (a developer's
 * shell may carry them), then p's overrides. Returns a malloc'd array. */
static char **fx_envp(const fx_proc *p, const fx_cluster *c)
{
    size_t n = 0;
    while (environ[n] != NULL) {
        n++;
    }
    char **envp = calloc(n + p->env_n + 2, sizeof(char *));
    FX_CHECK(envp != NULL, "calloc");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], "CAPGATE_", 8) != 0) {
            envp[k++] = environ[i];
        }
    }
    (void)c;
    for (uint32_t i = 0; i < p->env_n; i++) {
        envp[k++] = p->env[i];
    }
    envp[k] = NULL;
    return envp;
}

static void fx_argv(const fx_cluster *c, const fx_proc *p, const char *argv[8], char buf[2][64])
{
    size_t k = 0;
    switch (p->role) {
    case FX_DEMO:
        argv[k++] = FX_DEMO_BIN;
        argv[k++] = "--listen";
        snprintf(buf[0], 64, "127.0.0.1:%d", c->demo_port);
        argv[k++] = buf[0];
        break;
    case FX_LEDGER:
        argv[k++] = FX_LEDGER_BIN;
        argv[k++] = "--config";
        argv[k++] = c->config_path;
        argv[k++] = "--shard";
        snprintf(buf[1], 64, "s%u", p->idx);
        argv[k++] = buf[1];
        break;
    case FX_GATEWAY:
    case FX_ALERTER:
        argv[k++] = p->role == FX_GATEWAY ? FX_GATEWAY_BIN : FX_ALERTER_BIN;
        argv[k++] = "--config";
        argv[k++] = c->config_path;
        break;
    }
    argv[k] = NULL;
}

static pid_t fx_spawn(const fx_cluster *c, fx_proc *p)
{
    const char *argv[8];
    char buf[2][64];
    fx_argv(c, p, argv, buf);
    char **envp = fx_envp(p, c);
    int fd = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    FX_CHECK(fd >= 0, "open %s: %s", p->log_path, strerror(errno));
    dprintf(fd, "==== fixture: start #%u of %s ====\n", p->starts + 1, p->name);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* Child: only async-signal-safe calls until execve. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) {
            _exit(127);
        }
        execve(argv[0], (char *const *)argv, envp);
        _exit(127);
    }
    int saved = errno;
    close(fd);
    free(envp);
    FX_CHECK(pid > 0, "fork: %s", strerror(saved));
    fx_pid_add(pid);
    p->pid = pid;
    p->starts++;
    return pid;
}

/* If p already exited, fail the test naming its exit status. */
static void fx_proc_check_alive(fx_proc *p)
{
    int st = 0;
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == p->pid) {
        fx_pid_del(p->pid);
        p->pid = 0;
        fx_fail(__FILE__, __LINE__, "%s exited early (%s %d)", p->name,
                WIFSIGNALED(st) ? "signal" : "status",
                WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    }
}

static int fx_http_ok(const char *url)
{
    fx_resp r;
    long st = fx_http(&r, "GET", url, NULL, NULL, 1000);
    fx_resp_free(&r);
    return st == 200;
}

/* Poll until ok(p) or FX_READY_TIMEOUT_MS, checking p stays alive. */
static void fx_proc_wait(fx_cluster *c, fx_proc *p)
{
    int64_t deadline = fx_now_ms() + FX_READY_TIMEOUT_MS;
    for (;;) {
        fx_proc_check_alive(p);
        int ok = 0;
        switch (p->role) {
        case FX_DEMO:
            ok = fx_http_ok(fx_fmt_("http://127.0.0.1:%d/healthz", c->demo_port));
            break;
        case FX_LEDGER:
            ok = fx_tcp_connect_ok(c->req_port[p->idx]);
            break;
        case FX_GATEWAY:
            ok = fx_http_ok(fx_fmt_("http://127.0.0.1:%d/healthz", c->gw_port[p->idx])) &&
                 fx_tcp_connect_ok(c->admin_port[p->idx]);
            break;
        case FX_ALERTER: {
            /* Ready once its loop runs (a test may turn the listener off: then alive
             * after a short grace is ready). */
            int listens = c->alerter_port > 0;
            for (uint32_t e = 0; e < p->env_n; e++) {
                listens &= strncmp(p->env[e], "CAPGATE_ALERTER_LISTEN=", 23) != 0;
            }
            if (listens) {
                ok = fx_http_ok(fx_fmt_("http://127.0.0.1:%d/readyz", c->alerter_port));
            } else {
                fx_sleep_ms(300);
                fx_proc_check_alive(p);
                ok = 1;
            }
            break;
        }
        }
        if (ok) {
            return;
        }
        FX_CHECK(fx_now_ms() < deadline, "%s not ready within %d ms", p->name, FX_READY_TIMEOUT_MS);
        fx_sleep_ms(50);
    }
}

void fx_proc_start(fx_cluster *c, fx_proc *p)
{
    FX_CHECK(p->pid == 0, "%s already running", p->name);
    int64_t t = fx_now_ms();
    fx_spawn(c, p);
    fx_proc_wait(c, p);
    if (p->role == FX_LEDGER || p->role == FX_GATEWAY) {
        fx_wait_ready(c);
    }
    fx_log("%s started (pid %d, %lld ms)", p->name, (int)p->pid, (long long)(fx_now_ms() - t));
}

void fx_wait_ready(fx_cluster *c)
{
    int64_t deadline = fx_now_ms() + FX_READY_TIMEOUT_MS;
    for (uint32_t i = 0; i < c->opts.gateway_n; i++) {
        if (c->gateways[i].pid == 0) {
            continue;
        }
        for (;;) {
            fx_proc_check_alive(&c->gateways[i]);
            int all_up = 1;
            for (uint32_t s = 0; s < c->opts.shard_n; s++) {
                all_up &= c->ledgers[s].pid != 0;
            }
            fx_resp r;
            long st = fx_http(&r, "GET", fx_fmt_("http://127.0.0.1:%d/readyz", c->gw_port[i]), NULL,
                              NULL, 2000);
            fx_resp_free(&r);
            /* With a shard deliberately down /readyz must not say 200. */
            if ((all_up && st == 200) || (!all_up && st != 0)) {
                break;
            }
            FX_CHECK(fx_now_ms() < deadline, "gateway-%u /readyz: %ld", i, st);
            fx_sleep_ms(50);
        }
    }
}

int fx_proc_stop(fx_proc *p, int sig)
{
    FX_CHECK(p->pid > 0, "%s not running", p->name);
    int st = 0;
    kill(p->pid, sig);
    int64_t deadline = fx_now_ms() + FX_STOP_TIMEOUT_MS;
    pid_t r = 0;
    while ((r = waitpid(p->pid, &st, WNOHANG)) == 0 && fx_now_ms() < deadline) {
        fx_sleep_ms(5);
    }
    if (r == 0) {
        fx_log("%s did not stop within %d ms; SIGKILL", p->name, FX_STOP_TIMEOUT_MS);
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &st, 0);
        st = -1; /* report as unclean */
    }
    fx_pid_del(p->pid);
    p->pid = 0;
    return st;
}

void fx_proc_stop_clean(fx_proc *p)
{
    const char *name = p->name;
    int st = fx_proc_stop(p, SIGTERM);
    FX_CHECK(st != -1, "%s ignored SIGTERM for %d ms", name, FX_STOP_TIMEOUT_MS);
    FX_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s did not exit 0 on SIGTERM (%s %d)", name,
             WIFSIGNALED(st) ? "signal" : "status",
             WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    fx_log("%s stopped cleanly", name);
}

fx_proc *fx_ledger_of(fx_cluster *c, const char *route)
{
    uint16_t s = cg_ring_lookup(&c->ring, route, strlen(route));
    FX_CHECK(s < c->opts.shard_n, "ring lookup %s", route);
    return &c->ledgers[s];
}

uint32_t fx_shard_of(fx_cluster *c, const char *route_fmt, ...)
{
    char route[256];
    va_list ap;
    va_start(ap, route_fmt);
    int n = vsnprintf(route, sizeof(route), route_fmt, ap);
    va_end(ap);
    FX_CHECK(n > 0 && (size_t)n < sizeof(route), "route too long");
    return fx_ledger_of(c, route)->idx;
}

void fx_time_format(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
    FX_CHECK(n == 20, "time %lld out of range", (long long)t);
}

int64_t fx_time_parse(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = s != NULL ? strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
    FX_CHECK(end != NULL && *end == '\0', "not an RFC 3339 UTC time: \"%s\"", s ? s : "(null)");
    return (int64_t)timegm(&tm);
}

/* Midnight UTC of the day holding t, plus days. */
static int64_t fx_day_start(int64_t t, int64_t days)
{
    return (t - ((t % 86400) + 86400) % 86400) + days * 86400;
}

void fx_next_day(char out[32])
{
    fx_time_format(fx_day_start(fx_clock_now_s(), 1), out);
}

void fx_next_monday(char out[32])
{
    int64_t today = fx_day_start(fx_clock_now_s(), 0);
    int64_t wday = ((today / 86400) + 4) % 7; /* 1970-01-01 was a Thursday (4) */
    fx_time_format(today + (7 - (wday + 6) % 7) * 86400, out);
}

void fx_next_month(char out[32])
{
    time_t now = (time_t)fx_clock_now_s();
    struct tm tm;
    gmtime_r(&now, &tm);
    int y = tm.tm_year + 1900, m = tm.tm_mon + 2;
    if (m > 12) {
        m = 1;
        y++;
    }
    int n = snprintf(out, 32, "%04d-%02d-01T00:00:00Z", y, m);
    FX_CHECK(n == 20, "year %d", y);
}

void fx_this_month(char out[32])
{
    time_t now = (time_t)fx_clock_now_s();
    struct tm tm;
    gmtime_r(&now, &tm);
    int n = snprintf(out, 32, "%04d-%02d-01T00:00:00Z", tm.tm_year + 1900, tm.tm_mon + 1);
    FX_CHECK(n == 20, "year %d", tm.tm_year + 1900);
}

long fx_alerter_get(fx_cluster *c, fx_resp *r, const char *path)
{
    char auth[128];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->admin_token);
    const char *const hdrs[] = {auth, NULL};
    char url[1024]; /* path may be an fx_fmt_ buffer itself */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", c->alerter_port, path);
    return fx_http(r, "GET", url, hdrs, NULL, 0);
}

double fx_metric_value(const char *body, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = body; p != NULL && *p != '\0';) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            return strtod(p + n + 1, NULL);
        }
        p = strchr(p, '\n');
        p = p != NULL ? p + 1 : NULL;
    }
    return -1;
}

void fx_ledger_ops(const fx_proc *p, long long *org, long long *key, int *lines)
{
    FILE *f = fopen(p->log_path, "r");
    FX_CHECK(f != NULL, "open %s", p->log_path);
    char line[4096];
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strstr(line, "\"ledger ops\"") == NULL) {
            continue;
        }
        cJSON *j = cJSON_Parse(line);
        FX_CHECK(j != NULL, "bad log line %s", line);
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(j, "org");
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(j, "key");
        FX_CHECK(cJSON_IsString(o) && cJSON_IsString(k), "ledger ops line %s", line);
        *org += atoll(o->valuestring);
        *key += atoll(k->valuestring);
        (*lines)++;
        cJSON_Delete(j);
    }
    fclose(f);
}

long fx_proc_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) {
            break;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    FX_CHECK(kb > 0, "no VmRSS for pid %d", (int)pid);
    return kb;
}
