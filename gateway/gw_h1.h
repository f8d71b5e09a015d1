/*
 * gw_h1.h — capgate's own HTTP/1.1 client for http:// providers (internal to
 * gw_upstream.c; docs/upstream.md).
 *
 * Why: with libcurl, each upstream request cost the gateway about a third of
 * its CPU (easy-handle bookkeeping, header formatting and re-parsing, an
 * epoll_ctl per readiness change; bench/GATEWAY_NOTES.md). This client does
 * the one thing the gateway needs — a POST with a JSON body over a pooled
 * keep-alive connection, the response parsed with http_parser — on libuv
 * streams, with no per-request handle besides the transfer itself.
 *
 * Behaviour (the contract of gw_upstream.h, same callbacks and errors):
 * - one pool of idle connections per origin (host:port) per worker, most
 *   recently used first, at most `cache` per origin; an idle connection the
 *   provider closes (or writes to) is dropped at once;
 * - a request that fails on a pooled connection before any byte of the answer
 *   (the provider had closed it) is sent once more on a new connection, as
 *   libcurl does;
 * - names are resolved with uv_getaddrinfo (off the loop) and the address
 *   kept for GW_H1_DNS_TTL_MS; IP literals are not resolved;
 * - whole-transfer deadline (timeout_ms): CG_ERR_TIMEOUT; resolve or connect
 *   failure: CG_ERR_UNAVAILABLE; a broken connection, a truncated body or a
 *   malformed answer: CG_ERR_IO; interim 1xx answers are skipped;
 * - data_cb → GW_XFER_PAUSE: reading stops, the bytes are kept and handed to
 *   data_cb again (with anything read after them) once resumed.
 */
#ifndef GW_H1_H
#define GW_H1_H
#include <uv.h>
#include "gw_upstream.h"

/* First member of both transfer kinds, so gw_xfer_cancel/resume can dispatch. */
typedef struct gw_xfer_base {
    uint8_t builtin; /* 1: a gw_h1 transfer */
} gw_xfer_base;

typedef struct gw_h1 gw_h1;

/* Create for loop (on the loop thread); cache = idle connections kept per origin. */
cg_err gw_h1_new(uv_loop_t *loop, uint32_t cache, gw_h1 **out);

/*
 * Cancel every transfer (no callbacks) and close every connection; memory is
 * freed once the loop has run the close callbacks (and any name lookup in
 * flight has come back).
 */
void gw_h1_close(gw_h1 *h);

/* Transfers in progress. */
uint32_t gw_h1_active(const gw_h1 *h);

/*
 * Start a POST of o->body to o->url (which must start with "http://"). Returns
 * CG_ERR_INVAL when this client does not take the URL (user info, bad port,
 * too many origins): the caller uses libcurl instead; CG_ERR_NOMEM.
 */
cg_err gw_h1_start(gw_h1 *h, const gw_xfer_opts *o, gw_xfer_data_cb data_cb,
                   gw_xfer_done_cb done_cb, void *ud, gw_xfer_base **out);

void gw_h1_resume(gw_xfer_base *x);
void gw_h1_cancel(gw_xfer_base *x);

#endif
