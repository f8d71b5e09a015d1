/*
 * gw_upstream.h — HTTP(S) requests to upstream providers, libcurl multi driven
 * by a libuv loop, or for http:// providers capgate's own HTTP/1.1 client
 * (gw_h1.h; config upstream_client).
 *
 * One gw_upstream per worker loop: CURLM handles whose sockets are watched with
 * uv_poll_t and whose timers are uv_timer_t (CURLMOPT_SOCKETFUNCTION /
 * CURLMOPT_TIMERFUNCTION → curl_multi_socket_action, the documented libcurl +
 * libuv pattern). Connections stay in a multi's cache and are reused by the
 * worker's later requests to the same upstream. A new transfer goes to the first
 * multi holding fewer than 256 transfers (more multis are made as needed, up to
 * 32), which keeps libcurl 7.88's per-host connection walks short when thousands
 * of streams are open; at low load every transfer uses the first.
 *
 * A transfer (gw_xfer) is one POST. Its body bytes are handed to data_cb as
 * they arrive; data_cb may ask to pause (back-pressure) and gw_xfer_resume
 * continues. done_cb runs exactly once at the end unless the transfer was
 * cancelled. Invariants: callbacks run on the loop thread only; libcurl is never
 * re-entered from one of its own callbacks (removals and resumes asked for from
 * inside one are deferred to an idle callback).
 */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "cg_err.h"

/*
 * Least size of each multi's connection cache (CURLMOPT_MAXCONNECTS);
 * gw_upstream_new raises it to the worker's conns_max. libcurl 7.x counts the
 * connections in use in that cache too, and while more exist than MAXCONNECTS
 * every finished transfer scans all of them for the oldest idle one (O(n) per
 * transfer, O(n^2) per wave of streams) and closes it, so the next request
 * dials again. At or above conns_max (one upstream transfer per client
 * connection at most) the cache never overflows.
 */
#define GW_UPSTREAM_CONNS_CACHE 256
/* Longest content-type kept from the upstream response. */
#define GW_UPSTREAM_CTYPE_MAX 127
/* Longest URL accepted. */
#define GW_UPSTREAM_URL_MAX 511

typedef struct gw_upstream gw_upstream;
typedef struct gw_xfer gw_xfer;

/* data_cb results. */
enum { GW_XFER_CONSUMED = 0, GW_XFER_PAUSE = 1, GW_XFER_ABORT = 2 };

/*
 * n bytes of response body (after the headers; status and content type are
 * known). Return GW_XFER_CONSUMED, GW_XFER_PAUSE (the same bytes are delivered
 * again after gw_xfer_resume; nothing was consumed) or GW_XFER_ABORT (the
 * transfer ends; done_cb gets CG_ERR_IO). May call gw_xfer_cancel on its own
 * transfer (then no done_cb follows).
 */
typedef int (*gw_xfer_data_cb)(void *ud, int status, const char *ctype, const char *p, size_t n);

/*
 * End of the transfer. err: CG_ERR_OK (complete response), CG_ERR_TIMEOUT
 * (upstream_timeout reached), CG_ERR_UNAVAILABLE (could not resolve/connect),
 * CG_ERR_IO (broken connection, truncated body, or GW_XFER_ABORT), CG_ERR_NOMEM.
 * status is the HTTP status if a response head arrived, else 0. detail is a
 * human description of a failure (curl's), valid during the callback. The
 * transfer is freed after the callback returns.
 */
typedef void (*gw_xfer_done_cb)(void *ud, cg_err err, int status, const char *ctype,
                                const char *detail);

typedef struct gw_xfer_opts {
    const char *url;    /* full URL, e.g. "http://127.0.0.1:9090/v1/chat/completions" */
    const char *bearer; /* Authorization: Bearer value, NULL or "" for none */
    const char *body;   /* borrowed: must stay valid until done_cb or cancel */
    size_t body_len;
    uint32_t timeout_ms; /* whole transfer */
} gw_xfer_opts;

/*
 * Create for loop. Call on the loop thread. conns_max: the worker's client
 * connection bound (cfg conns_max); the connection cache holds
 * max(GW_UPSTREAM_CONNS_CACHE, conns_max). builtin: http:// URLs go through
 * the builtin HTTP/1.1 client (gw_h1.h, config upstream_client builtin);
 * https:// (and any URL it does not take) through libcurl.
 */
cg_err gw_upstream_new(uv_loop_t *loop, uint32_t conns_max, int builtin, gw_upstream **out);

/*
 * Cancel every transfer (no callbacks), clean up the multi handle and close the
 * loop handles; the memory is freed by the last close callback, so the loop must
 * run afterwards. Must not be called from a data or done callback.
 */
void gw_upstream_close(gw_upstream *u);

/* Number of transfers in progress. */
uint32_t gw_upstream_active(const gw_upstream *u);

/*
 * Start a POST. On success *out identifies the transfer and data_cb/done_cb
 * will be called on the loop (never before this returns). Errors: CG_ERR_NOMEM,
 * CG_ERR_INVAL (URL too long), CG_ERR_INTERNAL (curl refused the handle).
 */
cg_err gw_xfer_start(gw_upstream *u, const gw_xfer_opts *o, gw_xfer_data_cb data_cb,
                     gw_xfer_done_cb done_cb, void *ud, gw_xfer **out);

/* Continue a transfer that data_cb paused. Safe from any callback on the loop. */
void gw_xfer_resume(gw_xfer *x);

/*
 * Stop the transfer; no callback of it runs afterwards and x is invalid.
 * Safe from any callback on the loop except the transfer's own done_cb.
 */
void gw_xfer_cancel(gw_xfer *x);

#endif
