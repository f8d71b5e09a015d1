/*
 * gw_sse.h — incremental scanner of an upstream Server-Sent Events stream.
 *
 * The gateway relays a streamed response to the client as it arrives, and
 * scans it on the way only to find the usage (SPEC §3, streaming):
 *  - chat and legacy completions: the event whose `data:` JSON has a non-null
 *    "usage" object. When the gateway itself added
 *    `stream_options.include_usage` (the client did not ask), the usage-only
 *    event (no choices) is stripped; everything else passes untouched,
 *    including `data: [DONE]`. Relayed text is counted from choices[].delta
 *    (chat) and choices[].text (completions).
 *  - /v1/responses (GW_SSE_RESPONSES): the usage is response.usage of the
 *    final event ("response.completed", also "response.incomplete" /
 *    "response.failed", which carry it too); nothing is ever stripped.
 *    Relayed text is counted from the "delta" string of "*.delta" events.
 *
 * Events are split by blank lines; lines end in LF, CRLF or CR, and an event
 * (or a CRLF pair) may be split anywhere across feeds. Invariants:
 *  - the bytes emitted are exactly the bytes fed, in order, minus stripped
 *    events (each with its terminating blank line);
 *  - without stripping, every feed is emitted at once, unchanged; with it, the
 *    bytes of an incomplete event are held until the event completes;
 *  - memory is bounded: an event longer than GW_SSE_EVENT_MAX is passed through
 *    unparsed (it cannot be the usage chunk of any real provider).
 *
 * Not thread-safe; one scanner per stream, used on the stream's loop.
 */
#ifndef GW_SSE_H
#define GW_SSE_H
#include <stddef.h>
#include <stdint.h>
#include "cg_err.h"
#include "gw_estimate.h"

/* Longest event (bytes, incl. its field names) that is held back and parsed. */
#define GW_SSE_EVENT_MAX (1u << 20)

typedef struct gw_sse {
    uint8_t strip_usage;  /* drop the usage-only event (the client did not ask for usage) */
    uint8_t responses;    /* a /v1/responses stream (GW_SSE_RESPONSES) */
    uint8_t have_usage;   /* a usage object was seen; usage is valid */
    uint8_t saw_done;     /* "data: [DONE]" was seen */
    uint8_t last_cr;      /* the previous byte was CR: an LF now completes that line end */
    uint8_t skipping;     /* the current event overflowed: pass it through unparsed */
    uint8_t dropped_prev; /* the previous event was stripped (its trailing LF goes too) */
    gw_usage usage;
    uint64_t content_bytes; /* UTF-8 bytes of relayed text (choices[].delta / .text, "delta") */
    uint64_t events;        /* complete events seen */

    char *line; /* current line (without terminator), line_len bytes */
    size_t line_len, line_cap;
    char *data; /* the current event's data field, lines joined by '\n' */
    size_t data_len, data_cap;
    uint8_t has_data;
    char *raw; /* strip mode: [complete events to emit][current event] */
    size_t raw_len, raw_cap;
    size_t ev_start; /* offset in raw where the current event starts */
} gw_sse;

/* Receives bytes to forward to the client, in order. */
typedef void (*gw_sse_emit_cb)(void *ud, const char *p, size_t n);

/* gw_sse_init flags. */
#define GW_SSE_STRIP_USAGE 1u /* drop the usage-only event (chat/completions only) */
#define GW_SSE_RESPONSES 2u   /* a /v1/responses event stream */

/* Initialise with GW_SSE_* flags (no allocation until the first feed). */
void gw_sse_init(gw_sse *s, unsigned flags);
/* Free buffers. */
void gw_sse_fini(gw_sse *s);

/*
 * Scan n bytes of stream and emit what is to be forwarded (possibly nothing,
 * possibly bytes held from earlier feeds). Returns CG_ERR_NOMEM if a buffer
 * could not grow; the scanner then degrades to pass-through (every byte still
 * emitted, usage possibly missed), so the caller may ignore it after logging.
 */
cg_err gw_sse_feed(gw_sse *s, const char *p, size_t n, gw_sse_emit_cb emit, void *ud);

/*
 * End of stream: an unterminated final event is scanned as if a blank line
 * followed, and whatever is still held is emitted (an incomplete event that is
 * not the usage-only one is forwarded as received).
 */
void gw_sse_finish(gw_sse *s, gw_sse_emit_cb emit, void *ud);

#endif
