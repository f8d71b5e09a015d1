/*
 * fixture_smtp.h — a real SMTP server on loopback for email tests: starts
 * tests/smtp_sink.py (Debian's python3-aiosmtpd) as a child process, reads the
 * messages it stores, and stops it by PID.
 */
#ifndef FX_FIXTURE_SMTP_H
#define FX_FIXTURE_SMTP_H
#include <stddef.h>
#include <sys/types.h>

typedef struct fx_smtp {
    pid_t pid;
    int port;
    char dir[512]; /* messages: <dir>/<n>.eml, n = 1, 2, ... */
} fx_smtp;

/* Start a sink on 127.0.0.1:port storing into <scratch>/<name>/; extra: NULL-terminated
 * smtp_sink.py options ("--starttls", cert, key, "--auth", "u:p", ...) or NULL. Waits
 * until it accepts connections; fails the test otherwise. Main thread only. */
void fx_smtp_start(fx_smtp *s, const char *name, int port, const char *const *extra);
/* SIGTERM and reap. Safe to call twice. */
void fx_smtp_stop(fx_smtp *s);
/* Messages stored so far. */
size_t fx_smtp_count(const fx_smtp *s);
/* Wait until at least n messages or timeout_ms; returns the count. */
size_t fx_smtp_wait(const fx_smtp *s, size_t n, long timeout_ms);
/* Message i (1-based) as stored, NUL-terminated; caller frees. */
char *fx_smtp_read(const fx_smtp *s, size_t i);
/* Header name's value in msg's head (before the blank line) into out; "" if absent. */
void fx_smtp_header(const char *msg, const char *name, char *out, size_t cap);

#endif
