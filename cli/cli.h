/*
 * cli.h — internals of `capgate`, the admin API's command-line client
 * (docs/contracts.md "capgate CLI", cli/README.md).
 *
 *   cli_main.c  global options, command table, help, exit codes
 *   cli_cmds.c  one function per NOUN VERB: flags → request → output
 *   cli_http.c  the admin API over libcurl
 *   cli_out.c   table / JSON / CSV rendering of answers
 *
 * Exit codes (contract): 0 success; 1 the API refused the request (4xx other
 * than 404/409); 2 bad command line; 3 not found (404); 4 conflict (409); 5
 * the server failed or could not be reached (5xx, connection, timeout).
 * Errors go to stderr as "capgate: <code>: <message>". The admin token is never
 * printed.
 *
 * Single-threaded; everything is freed before exit (the process is short-lived,
 * but ASan runs in the tests keep us honest).
 */
#ifndef CLI_H
#define CLI_H
#include <stddef.h>
#include <cjson/cJSON.h>

#define CLI_EXIT_OK 0
#define CLI_EXIT_REFUSED 1
#define CLI_EXIT_USAGE 2
#define CLI_EXIT_NOT_FOUND 3
#define CLI_EXIT_CONFLICT 4
#define CLI_EXIT_SERVER 5

#define CLI_FLAGS_MAX 64          /* flags on one command line */
#define CLI_ARGS_MAX 8            /* positional arguments */
#define CLI_URL_MAX 4096          /* a request URL */
#define CLI_BODY_MAX (256u << 20) /* bytes of an answer kept in memory */
#define CLI_TIMEOUT_S 60          /* whole request */
#define CLI_CONNECT_TIMEOUT_S 5

typedef enum cli_format { CLI_FMT_TABLE = 0, CLI_FMT_JSON = 1, CLI_FMT_CSV = 2 } cli_format;

/* One parsed flag: "--name value" or "--name=value" (value NULL for switches). */
typedef struct cli_flag {
    const char *name; /* without the leading "--" */
    const char *value;
} cli_flag;

/* A command line after the global options were taken out. */
typedef struct cli_args {
    cli_flag flags[CLI_FLAGS_MAX];
    int flag_n;
    const char *pos[CLI_ARGS_MAX]; /* positional arguments after NOUN VERB */
    int pos_n;
} cli_args;

typedef struct cli {
    const char *url;  /* admin base URL, no trailing slash needed */
    char token[4096]; /* admin token ("" = none) */
    cli_format format;
    int format_given;
} cli;

/* An HTTP answer. */
typedef struct cli_resp {
    long status; /* 0 if no answer (transport error) */
    char *body;  /* NUL-terminated, heap (may be NULL) */
    size_t len;
    char err[256]; /* transport error text when status == 0 */
} cli_resp;

/* ---- cli_http.c ---- */
/* method path (starting with '/', query included) with an optional JSON body. Returns
 * CLI_EXIT_OK when an HTTP answer came (any status), CLI_EXIT_SERVER on transport failure
 * (message printed). r is filled either way; free with cli_resp_free. */
int cli_http(const cli *c, const char *method, const char *path, const char *body, cli_resp *r);
void cli_resp_free(cli_resp *r);
/* Percent-encode s for a path segment or query value into out; 0 if it does not fit. */
int cli_escape(const char *s, char *out, size_t cap);
/* Map a non-2xx answer to its exit code, printing "capgate: <code>: <message>". */
int cli_fail(const cli_resp *r);
/* Print "capgate: usage: <msg>" and return CLI_EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- cli_out.c ---- */
/* Print an object answer (table: "field: value" lines, nested lists as tables). */
void cli_out_object(const cli *c, const cJSON *o);
/* Print a list of objects; cols (NULL-terminated, may be NULL = every scalar field) picks the
 * table/CSV columns. */
void cli_out_list(const cli *c, const cJSON *arr, const char *const *cols);
/* A scalar as text ("-" for null / absent in tables, "" in CSV when csv). */
void cli_scalar(const cJSON *v, char *buf, size_t cap, int csv);

/* ---- cli_cmds.c ---- */
/* Value of flag name (the last one given), or NULL. */
const char *cli_flag_get(const cli_args *a, const char *name);
int cli_flag_has(const cli_args *a, const char *name);

typedef int (*cli_cmd_fn)(cli *c, const cli_args *a);
typedef struct cli_cmd {
    const char *noun;
    const char *verb; /* NULL: the noun alone (usage) */
    const char *synopsis;
    const char *help;         /* flag descriptions */
    const char *const *flags; /* accepted flag names; a trailing '=' marks a value flag */
    int pos_min, pos_max;
    cli_cmd_fn fn;
} cli_cmd;

extern const cli_cmd cli_cmds[];
extern const int cli_cmd_n;

#endif
