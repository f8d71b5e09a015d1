/*
 * alerter_deliver.h — webhook and email attempts over one libcurl multi handle.
 *
 * The alerter loop starts attempts for due outbox records, drives them with
 * alerter_deliver_poll (curl_multi_poll, which also sleeps the loop and is woken
 * by alerter_deliver_wakeup from NNG threads), and collects finished attempts as
 * alerter_result values that it writes back to the outbox.
 *
 * Each attempt: POST of the record's exact body bytes, Standard Webhooks headers
 * signed at this attempt's timestamp, no redirects, https only unless allow_http,
 * at most ALERTER_ATTEMPT_TIMEOUT_MS, response body read to ALERTER_RESP_BODY_MAX,
 * and (unless allow_private) every address curl is about to connect to checked by
 * alerter_addr_refusal in CURLOPT_OPENSOCKETFUNCTION, so DNS rebinding cannot reach
 * an internal host. Proxies from the environment are ignored for the same reason.
 *
 * An email record (channel ALERTER_CH_EMAIL) is sent over SMTP to smtp_url: MAIL
 * FROM smtp_from, RCPT TO the record's address, the record's body as the message;
 * STARTTLS required when smtp_tls is starttls, smtps:// when implicit; AUTH when
 * smtp_user is set. The SMTP server is the operator's, so no address guard applies.
 *
 * At most ALERTER_INFLIGHT_MAX attempts run at once. Everything except
 * alerter_deliver_wakeup is called on the loop thread only.
 */
#ifndef ALERTER_DELIVER_H
#define ALERTER_DELIVER_H
#include <stdint.h>
#include "alerter_outbox.h"
#include "cg_err.h"

typedef enum alerter_outcome {
    ALERTER_OUT_DELIVERED = 0, /* 2xx */
    ALERTER_OUT_RETRY = 1,     /* any other status, timeout, connect or TLS error */
    ALERTER_OUT_GONE = 2,      /* an error no retry can fix (bad secret, bad URL, no SMTP) */
    ALERTER_OUT_GONE_410 = 3,  /* the receiver answered 410: the endpoint is disabled */
    ALERTER_OUT_DISABLED = 4,  /* not attempted: the endpoint was disabled (made by the loop) */
} alerter_outcome;

typedef struct alerter_result {
    uint8_t key[ALERTER_KEY_BYTES];
    uint8_t outcome;       /* alerter_outcome */
    uint8_t channel;       /* alerter_channel of the record */
    long status;           /* HTTP status, 0 if none was received */
    int64_t retry_after_s; /* receiver's Retry-After in seconds, 0 if none */
    int64_t elapsed_ms;
    char error[ALERTER_ERR_MAX + 1]; /* "" when delivered; never contains secrets */
} alerter_result;

typedef struct alerter_deliver alerter_deliver;

/* SMTP settings (borrowed strings; must outlive the deliverer). url "" = no email. */
typedef struct alerter_smtp {
    const char *url;
    const char *from;
    const char *user;
    const char *password; /* never logged */
    int tls;              /* 0 off, 1 starttls, 2 implicit */
    const char *ca_file;  /* CA bundle for the server's certificate; "" = system CAs */
} alerter_smtp;

/* curl_global_init must have been called. Returns CG_ERR_NOMEM if curl cannot start. */
cg_err alerter_deliver_new(int allow_http, int allow_private, const alerter_smtp *smtp,
                           alerter_deliver **out);
/* Abandon attempts in flight (their records stay due and are retried later) and free. */
void alerter_deliver_free(alerter_deliver *d);

/* Wake a sleeping alerter_deliver_poll. Any thread. */
void alerter_deliver_wakeup(alerter_deliver *d);

/* Attempts in flight, and whether the record with key is one of them. */
uint32_t alerter_deliver_inflight(const alerter_deliver *d);
int alerter_deliver_busy(const alerter_deliver *d, const uint8_t key[ALERTER_KEY_BYTES]);

/*
 * Start an attempt for r (copied), signed with timestamp now_s. Returns CG_ERR_OK,
 * CG_ERR_RATE when ALERTER_INFLIGHT_MAX attempts already run, CG_ERR_NOMEM if curl
 * cannot set it up. A record whose URL or secret is unusable does not start: it is
 * queued as an ALERTER_OUT_GONE result at once (CG_ERR_OK is returned).
 */
cg_err alerter_deliver_start(alerter_deliver *d, const alerter_record *r, int64_t now_s);

/* Run transfers and wait up to timeout_ms for activity (or a wakeup). */
cg_err alerter_deliver_poll(alerter_deliver *d, int timeout_ms);

/* Move up to cap finished attempts into out; returns how many. */
uint32_t alerter_deliver_collect(alerter_deliver *d, alerter_result *out, uint32_t cap);

#endif
