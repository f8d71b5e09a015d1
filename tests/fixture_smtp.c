/*
 * fixture_smtp.c — the SMTP sink of fixture_smtp.h: tests/smtp_sink.py run
 * with Debian's /usr/bin/python3 (where python3-aiosmtpd is installed), with
 * PR_SET_PDEATHSIG so it never outlives the test, readiness by a bounded TCP
 * connect poll, and messages read back from its directory.
 */
#include "fixture_smtp.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"

#ifndef FX_SMTP_SINK
#define FX_SMTP_SINK "tests/smtp_sink.py"
#endif
#define FX_SMTP_ARGS_MAX 16

static int fx_smtp_port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0) {
        close(fd);
    }
    return ok;
}

void fx_smtp_start(fx_smtp *s, const char *name, int port, const char *const *extra)
{
    memset(s, 0, sizeof(*s));
    s->port = port;
    snprintf(s->dir, sizeof(s->dir), "%s/%s", fx_dir(), name);
    FX_CHECK(mkdir(s->dir, 0700) == 0, "mkdir %s: %s", s->dir, strerror(errno));
    char port_s[16], log[600];
    snprintf(port_s, sizeof(port_s), "%d", port);
    snprintf(log, sizeof(log), "%s/%s.log", fx_dir(), name);
    const char *argv[FX_SMTP_ARGS_MAX + 6] = {"python3", FX_SMTP_SINK, port_s, s->dir};
    size_t n = 4;
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        FX_CHECK(i < FX_SMTP_ARGS_MAX, "too many sink options");
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    s->pid = fork();
    FX_CHECK(s->pid >= 0, "fork: %s", strerror(errno));
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (freopen(log, "w", stdout) != NULL) {
            dup2(STDOUT_FILENO, STDERR_FILENO);
        }
        execv("/usr/bin/python3", (char *const *)argv);
        _exit(127);
    }
    int64_t deadline = fx_now_ms() + FX_READY_TIMEOUT_MS;
    while (!fx_smtp_port_open(port)) {
        int st = 0;
        FX_CHECK(waitpid(s->pid, &st, WNOHANG) == 0,
                 "smtp_sink.py exited (is python3-aiosmtpd installed?), see %s", log);
        FX_CHECK(fx_now_ms() < deadline, "smtp sink not listening on %d", port);
        fx_sleep_ms(50);
    }
    fx_log("smtp sink %s on 127.0.0.1:%d (pid %d)", name, port, (int)s->pid);
}

void fx_smtp_stop(fx_smtp *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

size_t fx_smtp_count(const fx_smtp *s)
{
    size_t n = 0;
    DIR *d = opendir(s->dir);
    FX_CHECK(d != NULL, "opendir %s", s->dir);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        n += e->d_name[0] != '.' && strstr(e->d_name, ".eml") != NULL;
    }
    closedir(d);
    return n;
}

size_t fx_smtp_wait(const fx_smtp *s, size_t n, long timeout_ms)
{
    int64_t deadline = fx_now_ms() + timeout_ms;
    size_t got = fx_smtp_count(s);
    while (got < n && fx_now_ms() < deadline) {
        fx_sleep_ms(50);
        got = fx_smtp_count(s);
    }
    return got;
}

char *fx_smtp_read(const fx_smtp *s, size_t i)
{
    char path[640];
    snprintf(path, sizeof(path), "%s/%zu.eml", s->dir, i);
    FILE *f = fopen(path, "rb");
    FX_CHECK(f != NULL, "open %s", path);
    char *buf = calloc(1, 65536);
    FX_CHECK(buf != NULL, "calloc");
    size_t n = fread(buf, 1, 65535, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

void fx_smtp_header(const char *msg, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    out[0] = '\0';
    for (const char *p = msg; *p != '\0' && !(p[0] == '\r' && p[1] == '\n');) {
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ') {
                v++;
            }
            snprintf(out, cap, "%.*s", (int)strcspn(v, "\r\n"), v);
            return;
        }
        const char *e = strstr(p, "\r\n");
        if (e == NULL) {
            break;
        }
        p = e + 2;
    }
}
