/*
 * alerter_webhook.h — the pure parts of webhook delivery: the SPEC §7 payload,
 * Standard Webhooks signing, the URL and connect-address guards, and the retry
 * schedule.
 *
 * Nothing here does I/O or keeps state, so every rule is unit-tested directly
 * (alerter/webhook_test.c). All functions are thread-safe.
 */
#ifndef ALERTER_WEBHOOK_H
#define ALERTER_WEBHOOK_H
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "cg_err.h"
#include "proto.h"

/* "v1," + base64 of 32 bytes + NUL. */
#define ALERTER_SIG_MAX 64
/* Decoded signing keys longer than this are refused (Standard Webhooks keys are 24..64 bytes). */
#define ALERTER_KEY_MAX 96

/*
 * Build the SPEC §7 JSON for event e into buf (NUL-terminated):
 *   {"id","type","created_at","data":{"org","scope","scope_id","metric","window",
 *    "period_start","period_end","threshold","max","used"}}
 * period_end is null when the period never ends (lifetime); threshold is the exact
 * decimal of threshold_bp / 10000 (0.8, 1); max and used are USD decimal strings with
 * at least two fractional digits for cost, integers for tokens and requests.
 * Returns CG_ERR_OK and *len (bytes, without the NUL); CG_ERR_INVAL for an event with
 * an unknown type, scope, metric or window; CG_ERR_TOOBIG if cap is too small. buf is
 * unspecified on failure.
 */
cg_err alerter_payload_build(const proto_event *e, char *buf, size_t cap, size_t *len);

/*
 * The alert email for event e to one recipient: an RFC 5322 message with CRLF line
 * ends (From, To, Subject, Date of the event, Message-ID "<event id@capgate>" so every
 * retry and copy is recognisably the same message, MIME headers for UTF-8 plain text)
 * and a plain-text body saying which scope, which limit, used vs max, the period and
 * what happens next. action: PROTO_ACTION_BLOCK / PROTO_ACTION_WARN when known, -1 when
 * not (the text then covers both). Control bytes in header values become '?'.
 * Returns CG_ERR_OK and *len; CG_ERR_INVAL for an event that cannot be described;
 * CG_ERR_TOOBIG if cap is too small.
 */
cg_err alerter_email_build(const proto_event *e, const char *from, const char *to, int action,
                           char *buf, size_t cap, size_t *len);

/*
 * An email address acceptable for SMTP: 3..254 bytes, one '@' with text on both sides,
 * no spaces, control bytes, quotes, commas, '<', '>' or ';'. Returns 1 if acceptable.
 */
int alerter_email_ok(const char *addr);

/*
 * Standard Webhooks signature: "v1," + base64(HMAC-SHA256(key, id "." ts "." body)),
 * key = base64-decoded secret after an optional "whsec_" prefix. Writes a
 * NUL-terminated string into out (cap >= ALERTER_SIG_MAX). Returns CG_ERR_INVAL for a
 * secret that is not valid base64 (or empty, or over ALERTER_KEY_MAX bytes),
 * CG_ERR_INTERNAL if OpenSSL fails.
 */
cg_err alerter_sign(const char *secret, const char *msg_id, int64_t ts_s, const void *body,
                    size_t body_len, char *out, size_t cap);

/*
 * Strict standard base64 (RFC 4648 §4) decode; '=' padding optional but, if present,
 * correct. Returns CG_ERR_OK and *out_len, CG_ERR_PARSE on a bad character or length,
 * CG_ERR_TOOBIG if cap is too small.
 */
cg_err alerter_b64_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len);

/*
 * Webhook URL policy: https:// always, http:// only when allow_http, nothing else
 * (case-insensitive scheme), and a non-empty host. Returns CG_ERR_OK or CG_ERR_INVAL.
 */
cg_err alerter_url_check(const char *url, int allow_http);

/*
 * The printable part of url that is safe to log: "scheme://host[:port]", without
 * user-info, path or query (which may carry tokens). Always NUL-terminates out.
 */
void alerter_url_origin(const char *url, char *out, size_t cap);

/*
 * SSRF guard for an address about to be connected: NULL if it may be used, else a
 * static reason ("loopback", "private", "link-local", "cgnat", "multicast",
 * "unspecified", "reserved", "unique-local", ...). Refused: IPv4 0/8, 10/8, 100.64/10,
 * 127/8, 169.254/16, 172.16/12, 192.0.0/24, 192.168/16, 198.18/15, 224/4, 240/4; IPv6
 * ::, ::1, fc00::/7, fe80::/10, fec0::/10, ff00::/8; and any IPv4 address embedded in
 * IPv6 as IPv4-mapped (::ffff:0:0/96), IPv4-translated (::ffff:0:0:0/96), IPv4-compatible
 * (::/96), NAT64 (64:ff9b::/96) or 6to4 (2002::/16) is judged as that IPv4 address.
 * Families other than AF_INET/AF_INET6 are refused ("family").
 */
const char *alerter_addr_refusal(const struct sockaddr *sa, socklen_t len);

/*
 * The retry schedule. attempts is the number of attempts made so far, all failed
 * (>= 1). sched_s[0..n) are the delays in seconds before attempt 2, 3, ..., n+1
 * (config alert_retry_s); they add up to the total time a delivery is tried.
 * rnd is a uniformly random number that picks the jitter (± ALERTER_JITTER_PCT %).
 * retry_after_s (0 = none) is the receiver's Retry-After; it wins when larger
 * (clamped to ALERTER_RETRY_AFTER_MAX_S).
 * Returns 1 and *delay_ms when another attempt is due, 0 when the schedule is
 * exhausted (attempts > n) and the delivery has failed for good.
 */
int alerter_backoff(const uint32_t *sched_s, uint32_t n, uint32_t attempts, int64_t retry_after_s,
                    uint32_t rnd, int64_t *delay_ms);

#endif
