/*
 * cg_http.h — HTTP/1.1 server on a libuv loop, shared by the gateway's client
 * and admin listeners and by the demo upstream.
 *
 * Parsing is done by Debian's http-parser (nodejs/http-parser 2.9). One
 * connection serves requests one after another (keep-alive; pipelined requests
 * wait until the previous response is complete). The server enforces the
 * limits of its options itself and answers in OpenAI error shape: 413
 * body_too_large, 431 headers_too_large, 408 request_timeout (request not
 * received within request_timeout_ms), 400 invalid_request (unparsable HTTP).
 * When conns_max connections are open, new ones are accepted and closed at once.
 *
 * Threading: everything here runs on the loop that owns the server. A handler
 * may answer synchronously or later (after upstream/ledger I/O) from the same
 * loop. The request passed to the handler stays valid until the response is
 * complete (cg_http_respond or cg_http_stream_end) or the abort callback ran.
 */
#ifndef CG_HTTP_H
#define CG_HTTP_H
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "cg_err.h"

#define CG_HTTP_HEADERS_MAX 64

typedef struct cg_http_server cg_http_server;
typedef struct cg_http_conn cg_http_conn;

typedef struct cg_http_header {
    const char *name;  /* NUL-terminated, as received */
    const char *value; /* NUL-terminated, leading/trailing blanks trimmed */
} cg_http_header;

typedef struct cg_http_req {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* path without the query, NUL-terminated */
    const char *query;  /* query string without '?', "" if none */
    cg_http_header headers[CG_HTTP_HEADERS_MAX];
    uint32_t header_n;
    const char *body; /* NUL-terminated for convenience; body_len bytes */
    size_t body_len;
    char peer_ip[48]; /* textual socket peer address */
    uint64_t conn_id; /* unique per process */
} cg_http_req;

/* Called once per complete request, on the server's loop. */
typedef void (*cg_http_handler_cb)(cg_http_conn *c, const cg_http_req *req, void *ud);
/* Called if the client goes away while a response is still owed. After it
 * returns, c must not be used; the handler must cancel its pending work. */
typedef void (*cg_http_abort_cb)(cg_http_conn *c, void *ud);
/* Called when the bytes queued by cg_http_stream_write have been written. */
typedef void (*cg_http_drain_cb)(cg_http_conn *c, void *ud);

typedef struct cg_http_opts {
    uint32_t body_max_bytes;
    uint32_t header_max_bytes;
    uint32_t request_timeout_ms; /* whole request must arrive within this */
    uint32_t idle_timeout_ms;    /* keep-alive idle close; 0 = 75000 */
    uint32_t conns_max;
} cg_http_opts;

/*
 * Listen on "host:port" on loop. reuseport: set SO_REUSEPORT so several loops
 * (threads) can listen on the same address and the kernel spreads connections.
 * On success *out is the server; stop it with cg_http_server_close.
 * Zero fields of o take defaults (4 MiB body, 16 KiB headers, 30 s request
 * timeout, 75 s idle, 10000 conns). The first call sets SIGPIPE to ignored for
 * the process (a vanished peer must be an EPIPE, not a fatal signal).
 * Errors: CG_ERR_INVAL (bad or unresolvable address), errno-mapped socket errors.
 */
cg_err cg_http_listen(uv_loop_t *loop, const char *hostport, int reuseport, const cg_http_opts *o,
                      cg_http_handler_cb handler, void *ud, cg_http_server **out);
/* Stop accepting and close every idle connection; connections with a response
 * in progress close after it completes. Frees the server when all are closed. */
void cg_http_server_close(cg_http_server *s);
/* Number of open connections. */
uint32_t cg_http_server_conns(const cg_http_server *s);
/* The bound TCP port (useful after listening on port 0); -1 on error. */
int cg_http_server_port(const cg_http_server *s);

/* Case-insensitive header lookup; NULL if absent. */
const char *cg_http_req_header(const cg_http_req *r, const char *name);

/* Register abort/drain callbacks for the pending response of c. Without an
 * abort callback, a connection lost while its response is owed stays allocated
 * until the handler completes the response (which is then discarded). */
void cg_http_conn_set_callbacks(cg_http_conn *c, cg_http_abort_cb on_abort,
                                cg_http_drain_cb on_drain, void *ud);

/*
 * Send a complete response. extra_headers: zero or more "Name: value\r\n"
 * lines (may be NULL). content_type may be NULL (no Content-Type). Content-Length
 * and Connection are added here. Completes the request.
 */
void cg_http_respond(cg_http_conn *c, int status, const char *extra_headers,
                     const char *content_type, const void *body, size_t len);
/* Convenience: error in OpenAI shape {"error":{"message","type","code","param":null}}. */
void cg_http_respond_error(cg_http_conn *c, int status, const char *type, const char *code,
                           const char *message, const char *extra_headers);

/* Streaming (chunked transfer encoding). The head and the chunks written in one
 * loop iteration are coalesced into one socket write, made before the loop next
 * polls (or at once past 64 KiB, or by stream_end / conn_drop). */
void cg_http_stream_begin(cg_http_conn *c, int status, const char *extra_headers,
                          const char *content_type);
/* Queue n bytes as one chunk; returns the bytes queued and not yet written
 * (after this one, including those still being coalesced), so the caller can
 * apply back-pressure (see drain cb). */
size_t cg_http_stream_write(cg_http_conn *c, const void *p, size_t n);
/* Terminating chunk; completes the request. */
void cg_http_stream_end(cg_http_conn *c);
/* Complete the owed response abnormally: bytes already queued are still
 * written, then the connection is closed without a terminating chunk (the
 * client sees a truncated body). The abort callback is not called; c must not
 * be used afterwards. */
void cg_http_conn_drop(cg_http_conn *c);

/* Reason phrase for a status ("Payment Required"). */
const char *cg_http_reason(int status);

/*
 * A server on its own thread and loop (side listeners: /metrics, an admin API,
 * a test receiver). cg_http_thread_start listens on hostport with o (as
 * cg_http_listen) and returns once it listens: handler then runs on that
 * thread. Errors: the listen error (CG_ERR_IO if no port could be read back),
 * or CG_ERR_NOMEM when the thread or loop cannot be set up; nothing is left
 * running. hostport is only read during the call.
 */
typedef struct cg_http_thread cg_http_thread;
cg_err cg_http_thread_start(const char *hostport, const cg_http_opts *o, cg_http_handler_cb handler,
                            void *ud, cg_http_thread **out);
/* The bound TCP port (after listening on port 0). */
int cg_http_thread_port(const cg_http_thread *t);
/* Close the listener on its thread, join the thread, free. Safe on NULL. */
void cg_http_thread_stop(cg_http_thread *t);

/* The value of hex digit c (either case), -1 if c is not one. */
int cg_http_hex_digit(char c);
/*
 * Percent-decode s[0..len) into out (cap bytes, NUL-terminated); '+' becomes a
 * space when plus_space (query strings). 0 on a bad escape, a NUL byte or when
 * out is too small (out's content is then unspecified); 1 otherwise.
 */
int cg_http_pct_decode(const char *s, size_t len, int plus_space, char *out, size_t cap);

/* JSON-escape s (without quotes; at most max_in input bytes) into dst of cap bytes,
 * truncating at a whole character; dst is always terminated (nothing is written when
 * cap is 0). Returns the length written. */
size_t cg_http_json_escape(char *dst, size_t cap, const char *s, size_t max_in);

#endif
