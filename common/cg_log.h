/*
 * cg_log.h — JSON-lines logging to stderr, one object per line.
 *
 *   {"ts":"2026-11-21T10:04:05.123Z","level":"info","proc":"ledger","msg":"...","k":"v",...}
 *
 * Thread-safe (one write(2) per line). Never pass secrets: callers log key
 * ids, never keys, tokens or webhook secrets.
 */
#ifndef CG_LOG_H
#define CG_LOG_H

typedef enum cg_log_level { CG_LOG_DEBUG = 0, CG_LOG_INFO, CG_LOG_WARN, CG_LOG_ERROR } cg_log_level;

/* Name the process ("gateway", "ledger:s0", ...) and set the minimum level. */
void cg_log_init(const char *proc, int level);
/* Parse "debug|info|warn|error"; -1 if unknown. */
int cg_log_level_parse(const char *s);
/*
 * Log msg with extra string fields given as (const char *key, const char *value)
 * pairs terminated by NULL. Values are JSON-escaped.
 *   cg_log(CG_LOG_INFO, "shard started", "shard", name, "listen", url, NULL);
 */
void cg_log(int level, const char *msg, ...);
/* printf-style message without extra fields. */
void cg_logf(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
