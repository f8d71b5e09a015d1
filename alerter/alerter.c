/*
 * alerter.c — the alerter's loop: events in (SUB + EVENTS_SINCE), outbox records
 * written, webhook attempts out (libcurl multi).
 *
 * Threads. Everything runs on one loop thread. NNG completes aios on its own
 * threads; their callbacks only flag completion and call curl_multi_wakeup, which
 * interrupts curl_multi_poll, so the loop sleeps in exactly one place and reacts
 * at once to a pub message, a ledger reply or a finished transfer. A second
 * delivery thread would buy nothing: LMDB commits are the only slow step, and
 * both sides need them, so they would only contend for the one LMDB writer.
 *
 * Never missing an event. Per shard, a durable cursor = the last seq whose records
 * are in the outbox. Events (from a pub message or an EVENTS_SINCE reply) go to the
 * shard's pending list only if their seq is exactly one past its tail; an older seq
 * is a duplicate and dropped; a newer one reveals a gap and triggers a catch-up
 * (EVENTS_SINCE from the tail). Every shard is also asked every alert_poll_ms and at
 * start, because pub/sub may drop the last message with nothing after it to reveal
 * the gap. Pending events are written in order: for each, its org is looked up
 * (GET_ORG on the shard that owns "org:<id>", cached ALERTER_ORG_CACHE_MS), one
 * record per webhook is created if absent, and the cursor advances, all in one
 * LMDB transaction. A failed lookup leaves the cursor where it is and retries.
 *
 * Delivery. Records due (index by next attempt time) start attempts up to
 * ALERTER_INFLIGHT_MAX; finished attempts are written back in one transaction per
 * loop turn: delivered, rescheduled by the backoff, or failed. One record per
 * (event, webhook endpoint) and one per (event, email recipient: smtp_to and the org's
 * own `emails`, which come with the org from GET_ORG like its webhooks). A 410 disables
 * the endpoint (persisted in the outbox's `endpoint` table); a due record of a
 * disabled endpoint is marked failed ("endpoint disabled") without an attempt.
 *
 * State for people: counters and histograms in a cg_metrics registry, and the
 * listener of alerter_http.c (its own thread) reading the outbox.
 */
#include "alerter.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "alerter_deliver.h"
#include "alerter_http.h"
#include "alerter_ledger.h"
#include "alerter_limits.h"
#include "alerter_outbox.h"
#include "alerter_webhook.h"
#include "cg_clock.h"
#include "cg_log.h"
#include "cg_metrics.h"
#include "cg_ring.h"

/* Recipients of every alert email (smtp_to), parsed at start. */
#define ALERTER_EMAIL_TO_MAX 8

/* Metric series, registered once; cg_metrics updates are lock-free. */
typedef struct alerter_stats {
    cg_counter *events;     /* events written to the outbox */
    cg_counter *out[2][4];  /* [channel][delivered, retried, failed, disabled] */
    cg_histo *attempt_s[2]; /* one attempt's duration */
    cg_histo *latency_s[2]; /* event created -> delivered */
} alerter_stats;

enum { ALERTER_M_DELIVERED, ALERTER_M_RETRIED, ALERTER_M_FAILED, ALERTER_M_DISABLED };

typedef struct alerter_shard {
    const cg_shard_cfg *cfg;
    nng_socket req;
    int req_open;
    uint64_t cursor;   /* durable: last seq written to the outbox */
    proto_event *pend; /* ALERTER_PENDING_MAX; [pend_head, pend_head + pend_n) */
    uint32_t pend_head;
    uint32_t pend_n;
    int need_catchup;      /* a gap was seen or the last reply was not the end */
    int64_t next_poll_ms;  /* mono: next routine EVENTS_SINCE */
    int64_t hold_until_ms; /* mono: pause after a failed lookup or LMDB error */
    alerter_call ev;       /* EVENTS_SINCE to this shard */
    alerter_call org;      /* GET_ORG for this shard's head event, to the org's owner */
    char org_wanted[PROTO_ID_MAX + 1];
    uint8_t down; /* last EVENTS_SINCE failed; log on transitions only */
} alerter_shard;

typedef struct alerter_org_entry {
    int64_t fetched_ms; /* mono; 0 = empty slot */
    proto_org org;      /* webhook_n == 0 for an org that does not exist */
} alerter_org_entry;

struct alerter {
    const cg_config *cfg;
    cg_ring ring;
    int ring_ok;
    alerter_outbox *ob;
    alerter_deliver *dl;
    alerter_sub sub;
    alerter_shard *shards;   /* cfg->shard_n */
    alerter_org_entry *orgs; /* ALERTER_ORG_CACHE_N */
    alerter_record *recs;    /* ALERTER_INFLIGHT_MAX scratch records */
    alerter_result results[ALERTER_INFLIGHT_MAX];
    int due_dirty;         /* records created or rescheduled since the last scan */
    int64_t next_due_ms;   /* wall: when the outbox next has a record due */
    int64_t next_sweep_ms; /* mono */
    uint64_t rng;          /* xorshift64 state for the backoff jitter */
    char email_to[ALERTER_EMAIL_TO_MAX][PROTO_URL_MAX + 1];
    uint32_t email_to_n;
    cg_metrics *metrics;
    alerter_stats st;
    alerter_http *http;
    atomic_int ready; /* set once the loop runs; read by the HTTP thread */
    alerter_result skipped[ALERTER_INFLIGHT_MAX]; /* due records of disabled endpoints */
};

static void alerter_wake(void *arg)
{
    alerter_deliver_wakeup(arg);
}

static uint32_t alerter_rand(alerter *a)
{
    a->rng ^= a->rng << 13;
    a->rng ^= a->rng >> 7;
    a->rng ^= a->rng << 17;
    return (uint32_t)(a->rng >> 32);
}

/* ---- org cache ----------------------------------------------------------------------- */

static const proto_org *alerter_org_cached(alerter *a, const char *id, int64_t now)
{
    for (uint32_t i = 0; i < ALERTER_ORG_CACHE_N; i++) {
        alerter_org_entry *e = &a->orgs[i];
        if (e->fetched_ms != 0 && now - e->fetched_ms < ALERTER_ORG_CACHE_MS &&
            strcmp(e->org.id, id) == 0) {
            return &e->org;
        }
    }
    return NULL;
}

/* Replace the entry for the same id, else an empty or the oldest one. */
static void alerter_org_put(alerter *a, const proto_org *org, int64_t now)
{
    alerter_org_entry *victim = &a->orgs[0];
    for (uint32_t i = 0; i < ALERTER_ORG_CACHE_N; i++) {
        alerter_org_entry *e = &a->orgs[i];
        if (e->fetched_ms != 0 && strcmp(e->org.id, org->id) == 0) {
            victim = e;
            break;
        }
        if (e->fetched_ms < victim->fetched_ms) {
            victim = e;
        }
    }
    victim->org = *org;
    victim->fetched_ms = now;
}

/* ---- event intake -------------------------------------------------------------------- */

static uint64_t alerter_tail(const alerter_shard *s)
{
    return s->pend_n > 0 ? s->pend[s->pend_head + s->pend_n - 1].seq : s->cursor;
}

/*
 * Append e if it continues the shard's sequence; drop duplicates. A gap in pub
 * messages asks for a catch-up. A gap inside the shard's own log (from_log) cannot be
 * filled by asking again, so it is logged and skipped: waiting for events the shard
 * no longer has would block every later one.
 */
static void alerter_accept(alerter_shard *s, const proto_event *e, int from_log)
{
    uint64_t tail = alerter_tail(s);
    if (e->seq <= tail) {
        return;
    }
    if (e->seq != tail + 1) {
        if (!from_log) {
            s->need_catchup = 1;
            return;
        }
        char from[24], to[24];
        snprintf(from, sizeof from, "%" PRIu64, tail + 1);
        snprintf(to, sizeof to, "%" PRIu64, e->seq - 1);
        cg_log(CG_LOG_ERROR, "shard log is missing events; skipped", "shard", s->cfg->name,
               "from_seq", from, "to_seq", to, NULL);
    }
    if (s->pend_head + s->pend_n == ALERTER_PENDING_MAX) {
        if (s->pend_head == 0) {
            s->need_catchup = 1; /* full: fetched again once the list drains */
            return;
        }
        memmove(s->pend, s->pend + s->pend_head, s->pend_n * sizeof *s->pend);
        s->pend_head = 0;
    }
    s->pend[s->pend_head + s->pend_n++] = *e;
}

static void alerter_on_pub(alerter *a, nng_msg *m)
{
    char shard[PROTO_SHARD_MAX + 1];
    proto_event e;
    cg_err err = proto_pub_decode(nng_msg_body(m), nng_msg_len(m), shard, &e);
    if (err != CG_ERR_OK) {
        cg_log(CG_LOG_WARN, "bad pub message dropped", "error", cg_err_name(err), NULL);
        return;
    }
    int idx = cg_config_shard_index(a->cfg, shard);
    if (idx < 0) {
        cg_log(CG_LOG_WARN, "pub message from unknown shard", "shard", shard, NULL);
        return;
    }
    alerter_accept(&a->shards[idx], &e, 0);
}

static void alerter_take_pubs(alerter *a)
{
    nng_msg *m = NULL;
    while (alerter_sub_take(&a->sub, &m)) {
        if (m != NULL) {
            alerter_on_pub(a, m);
            nng_msg_free(m);
        }
    }
}

/* ---- EVENTS_SINCE -------------------------------------------------------------------- */

static void alerter_events_start(alerter *a, alerter_shard *s, int64_t now)
{
    if (alerter_call_state_get(&s->ev) != ALERTER_CALL_IDLE || s->pend_n != 0 ||
        now < s->hold_until_ms || (!s->need_catchup && now < s->next_poll_ms)) {
        return;
    }
    proto_req req;
    memset(&req, 0, sizeof req);
    req.op = PROTO_OP_EVENTS_SINCE;
    req.u.events_since.after_seq = s->cursor;
    req.u.events_since.max_n = ALERTER_PENDING_MAX;
    cg_err err = alerter_call_start(&s->ev, s->req, &req, a->cfg->ledger_timeout_ms);
    if (err != CG_ERR_OK) {
        cg_log(CG_LOG_ERROR, "cannot send events_since", "shard", s->cfg->name, "error",
               cg_err_name(err), NULL);
        s->next_poll_ms = now + a->cfg->alert_poll_ms;
        return;
    }
    s->need_catchup = 0; /* this call answers every gap seen so far */
}

static void alerter_events_reply(alerter_shard *s, const proto_rep *rep)
{
    uint64_t before = alerter_tail(s);
    for (uint32_t i = 0; i < rep->u.events.n; i++) {
        alerter_accept(s, &rep->u.events.events[i], 1);
    }
    uint64_t after = alerter_tail(s);
    char last[24], cur[24];
    snprintf(last, sizeof last, "%" PRIu64, rep->u.events.last_seq);
    snprintf(cur, sizeof cur, "%" PRIu64, s->cursor);
    if (rep->u.events.last_seq < s->cursor) {
        cg_log(CG_LOG_WARN, "shard log is behind the alerter cursor", "shard", s->cfg->name,
               "last_seq", last, "cursor", cur, NULL);
    }
    /* Keep fetching while the shard has more; but a reply that brought nothing new
     * waits for the next poll, so a confused shard is never asked in a tight loop. A
     * gap seen in pub messages while this call was out stays flagged. */
    if (after > before && rep->u.events.last_seq > after) {
        s->need_catchup = 1;
    }
    if (after > before) {
        cg_log(CG_LOG_DEBUG, "events fetched", "shard", s->cfg->name, "last_seq", last, NULL);
    }
}

static void alerter_events_done(alerter *a, alerter_shard *s, int64_t now)
{
    proto_rep *rep = NULL;
    cg_err err = alerter_call_finish(&s->ev, &rep);
    s->next_poll_ms = now + a->cfg->alert_poll_ms;
    if (err == CG_ERR_OK && rep->status != CG_ERR_OK) {
        err = (cg_err)rep->status;
    }
    if (err != CG_ERR_OK) {
        if (!s->down) {
            cg_log(CG_LOG_WARN, "shard not answering; will retry", "shard", s->cfg->name, "error",
                   cg_err_name(err), NULL);
        }
        s->down = 1;
    } else {
        if (s->down) {
            cg_log(CG_LOG_INFO, "shard answering again", "shard", s->cfg->name, NULL);
        }
        s->down = 0;
        alerter_events_reply(s, rep);
    }
    if (rep != NULL) {
        proto_rep_free(rep, 1);
    }
}

/* ---- GET_ORG ------------------------------------------------------------------------- */

static void alerter_org_start(alerter *a, alerter_shard *s, const char *org, int64_t now)
{
    proto_req req;
    memset(&req, 0, sizeof req);
    req.op = PROTO_OP_GET_ORG;
    snprintf(req.route, sizeof req.route, "org:%s", org);
    uint16_t owner = cg_ring_lookup(&a->ring, req.route, strlen(req.route));
    cg_err err = alerter_call_start(&s->org, a->shards[owner].req, &req, a->cfg->ledger_timeout_ms);
    if (err != CG_ERR_OK) {
        cg_log(CG_LOG_ERROR, "cannot send get_org", "org", org, "error", cg_err_name(err), NULL);
        s->hold_until_ms = now + a->cfg->alert_poll_ms;
        return;
    }
    snprintf(s->org_wanted, sizeof s->org_wanted, "%s", org);
}

static void alerter_org_done(alerter *a, alerter_shard *s, int64_t now)
{
    proto_rep *rep = NULL;
    cg_err err = alerter_call_finish(&s->org, &rep);
    if (err == CG_ERR_OK && rep->status == CG_ERR_OK) {
        if (strcmp(rep->u.get_org.org.id, s->org_wanted) == 0) {
            alerter_org_put(a, &rep->u.get_org.org, now);
        } else {
            err = CG_ERR_PROTO;
        }
    } else if (err == CG_ERR_OK && rep->status == CG_ERR_NOTFOUND) {
        /* A deleted org has no webhooks: its events are consumed without deliveries. */
        proto_org *none = calloc(1, sizeof *none);
        if (none == NULL) {
            err = CG_ERR_NOMEM;
        } else {
            snprintf(none->id, sizeof none->id, "%s", s->org_wanted);
            alerter_org_put(a, none, now);
            free(none);
            cg_log(CG_LOG_INFO, "events for unknown org: no webhooks", "org", s->org_wanted, NULL);
        }
    } else if (err == CG_ERR_OK) {
        err = (cg_err)rep->status;
    }
    if (err != CG_ERR_OK) {
        cg_log(CG_LOG_WARN, "org lookup failed; will retry", "org", s->org_wanted, "shard",
               s->cfg->name, "error", cg_err_name(err), NULL);
        s->hold_until_ms = now + a->cfg->alert_poll_ms;
    }
    if (rep != NULL) {
        proto_rep_free(rep, 1);
    }
}

/* ---- writing events to the outbox ---------------------------------------------------- */

/* The action of the org-scope limit the event is about, or -1 when not known here. */
static int alerter_event_action(const proto_event *e, const proto_org *org)
{
    if (org == NULL || e->scope != PROTO_SCOPE_ORG) {
        return -1;
    }
    for (uint32_t i = 0; i < org->limit_n; i++) {
        if (org->limits[i].id == e->limit_id) {
            return org->limits[i].action;
        }
    }
    return -1;
}

/* Recipient i of event e's emails: smtp_to first, then the org's own addresses; NULL for
 * an org address smtp_to already names (ignoring case). No email at all without smtp_url. */
static const char *alerter_email_rcpt(const alerter *a, const proto_org *org, uint32_t i)
{
    if (i < a->email_to_n) {
        return a->email_to[i];
    }
    const char *to = org->emails[i - a->email_to_n];
    for (uint32_t j = 0; j < a->email_to_n; j++) {
        if (strcasecmp(a->email_to[j], to) == 0) {
            return NULL;
        }
    }
    return to;
}

/* The fields of a new pending record r for event e shared by every channel (body of len
 * bytes already in r->body). */
static void alerter_record_head(alerter_record *r, const proto_event *e, size_t len,
                                uint8_t channel)
{
    r->body_len = (uint32_t)len;
    snprintf(r->event_id, sizeof r->event_id, "%s", e->id);
    snprintf(r->org, sizeof r->org, "%s", e->org);
    r->type = e->type;
    r->channel = channel;
    r->state = ALERTER_PENDING;
    r->created_ms = cg_now_ms();
    r->next_ms = r->created_ms;
}

/* One email record per recipient (smtp_to and the org's emails) for event e, created if
 * absent, inside t. */
static cg_err alerter_email_records(alerter *a, alerter_txn *t, const proto_event *e,
                                    const proto_org *org, uint32_t *created)
{
    alerter_record *r = &a->recs[0];
    int action = alerter_event_action(e, org);
    uint32_t n = a->email_to_n;
    if (a->cfg->smtp_url[0] != '\0' && org != NULL) {
        n += org->email_n;
    }
    for (uint32_t i = 0; i < n; i++) {
        size_t len = 0;
        int made = 0;
        const char *to = alerter_email_rcpt(a, org, i);
        if (to == NULL) {
            continue;
        }
        memset(r, 0, sizeof *r);
        cg_err err =
            alerter_email_build(e, a->cfg->smtp_from, to, action, r->body, sizeof r->body, &len);
        if (err != CG_ERR_OK) {
            cg_log(CG_LOG_ERROR, "alert email cannot be written; skipped", "event", e->id, "to", to,
                   "error", cg_err_name(err), NULL);
            continue;
        }
        alerter_record_head(r, e, len, ALERTER_CH_EMAIL);
        snprintf(r->url, sizeof r->url, "%s%s", ALERTER_MAILTO, to);
        alerter_record_key(r->event_id, r->url, r->key);
        if ((err = alerter_outbox_create(t, r, &made)) != CG_ERR_OK) {
            return err;
        }
        *created += (uint32_t)made;
    }
    return CG_ERR_OK;
}

/* One record per webhook of org for event e, created if absent, inside t. */
static cg_err alerter_event_records(alerter *a, alerter_txn *t, const proto_event *e,
                                    const proto_org *org, uint32_t *created)
{
    alerter_record *r = &a->recs[0];
    size_t len = 0;
    memset(r, 0, sizeof *r);
    cg_err err = alerter_payload_build(e, r->body, sizeof r->body, &len);
    if (err != CG_ERR_OK) {
        /* The ledger sent an event we cannot describe: skipping it is the only way on. */
        cg_log(CG_LOG_ERROR, "event cannot be rendered; skipped", "event", e->id, "error",
               cg_err_name(err), NULL);
        return CG_ERR_OK;
    }
    alerter_record_head(r, e, len, ALERTER_CH_WEBHOOK);
    for (uint32_t i = 0; org != NULL && i < org->webhook_n; i++) {
        int made = 0;
        snprintf(r->url, sizeof r->url, "%s", org->webhooks[i].url);
        snprintf(r->secret, sizeof r->secret, "%s", org->webhooks[i].secret);
        alerter_record_key(r->event_id, r->url, r->key);
        if ((err = alerter_outbox_create(t, r, &made)) != CG_ERR_OK ||
            (err = alerter_outbox_endpoint_seen(t, r->org, r->url)) != CG_ERR_OK) {
            return err;
        }
        *created += (uint32_t)made;
    }
    return alerter_email_records(a, t, e, org, created);
}

static void alerter_log_event(const alerter_shard *s, const proto_event *e, uint32_t created)
{
    char seq[24], n[16];
    snprintf(seq, sizeof seq, "%" PRIu64, e->seq);
    snprintf(n, sizeof n, "%" PRIu32, created);
    const char *type = proto_event_type_name(e->type);
    cg_log(CG_LOG_INFO, "event queued", "shard", s->cfg->name, "seq", seq, "event", e->id, "type",
           type != NULL ? type : "?", "org", e->org, "deliveries", n, NULL);
}

/* Write as many pending events as have their org at hand, in one transaction. Returns
 * how many were written; 0 with *err set on an LMDB failure. */
static uint32_t alerter_ingest_txn(alerter *a, alerter_shard *s, int64_t now, uint32_t *created,
                                   cg_err *err)
{
    alerter_txn t = {NULL, NULL};
    uint32_t n = 0;
    *err = CG_ERR_OK;
    for (; n < s->pend_n; n++) {
        const proto_event *e = &s->pend[s->pend_head + n];
        const proto_org *org = NULL;
        if (e->org[0] != '\0' && (org = alerter_org_cached(a, e->org, now)) == NULL) {
            alerter_org_start(a, s, e->org, now);
            break;
        }
        if (n == 0 && (*err = alerter_outbox_begin(a->ob, &t)) != CG_ERR_OK) {
            return 0;
        }
        created[n] = 0;
        if ((*err = alerter_event_records(a, &t, e, org, &created[n])) != CG_ERR_OK) {
            alerter_outbox_abort(&t);
            return 0;
        }
    }
    if (n == 0) {
        return 0;
    }
    *err = alerter_outbox_cursor_set(&t, s->cfg->name, s->pend[s->pend_head + n - 1].seq);
    if (*err != CG_ERR_OK) {
        alerter_outbox_abort(&t);
        return 0;
    }
    if ((*err = alerter_outbox_commit(&t)) != CG_ERR_OK) {
        return 0;
    }
    return n;
}

static void alerter_ingest(alerter *a, alerter_shard *s, int64_t now)
{
    uint32_t created[ALERTER_PENDING_MAX];
    cg_err err;
    if (s->pend_n == 0 || alerter_call_state_get(&s->org) != ALERTER_CALL_IDLE ||
        now < s->hold_until_ms) {
        return;
    }
    uint32_t n = alerter_ingest_txn(a, s, now, created, &err);
    if (err != CG_ERR_OK) {
        cg_log(CG_LOG_ERROR, "cannot write events to the outbox; will retry", "shard", s->cfg->name,
               "error", cg_err_name(err), NULL);
        s->hold_until_ms = now + ALERTER_DB_RETRY_MS;
        return;
    }
    cg_counter_add(a->st.events, n);
    for (uint32_t i = 0; i < n; i++) {
        alerter_log_event(s, &s->pend[s->pend_head + i], created[i]);
        if (created[i] > 0) {
            a->due_dirty = 1;
        }
    }
    if (n > 0) {
        s->cursor = s->pend[s->pend_head + n - 1].seq;
        s->pend_head += n;
        s->pend_n -= n;
        if (s->pend_n == 0) {
            s->pend_head = 0;
        }
    }
}

static void alerter_shard_step(alerter *a, alerter_shard *s, int64_t now)
{
    if (alerter_call_state_get(&s->ev) == ALERTER_CALL_DONE) {
        alerter_events_done(a, s, now);
    }
    if (alerter_call_state_get(&s->org) == ALERTER_CALL_DONE) {
        alerter_org_done(a, s, now);
    }
    alerter_ingest(a, s, now);
    alerter_events_start(a, s, now);
}

/* ---- deliveries ---------------------------------------------------------------------- */

/* Apply one attempt's result to its record r (read in the same transaction t). */
static cg_err alerter_result_apply(alerter *a, alerter_txn *t, alerter_record *r,
                                   const alerter_result *res, int64_t now_ms)
{
    char origin[96], ep[20], status[16], attempts[16], extra[32];
    int ch = r->channel == ALERTER_CH_EMAIL;
    if (res->outcome != ALERTER_OUT_DISABLED) {
        r->attempts++;
        r->last_ms = now_ms;
        cg_histo_observe(a->st.attempt_s[ch], (double)res->elapsed_ms / 1000.0);
    }
    /* The origin says where; the URL hash tells endpoints on one host apart. Neither
     * carries the path or query, which may hold a token. An email's target is its
     * recipient address (smtp_to or one of the org's emails): no secret in it. */
    if (ch) {
        snprintf(origin, sizeof origin, "%s", r->url + strlen(ALERTER_MAILTO));
    } else {
        alerter_url_origin(r->url, origin, sizeof origin);
    }
    for (int i = 0; i < 8; i++) {
        snprintf(ep + (size_t)i * 2, 3, "%02x", r->key[PROTO_EVENT_ID_MAX + i]);
    }
    snprintf(status, sizeof status, "%ld", res->status);
    snprintf(attempts, sizeof attempts, "%u", (unsigned)r->attempts);
    snprintf(r->last_error, sizeof r->last_error, "%s", res->error);
    if (res->outcome == ALERTER_OUT_DELIVERED) {
        r->state = ALERTER_DELIVERED;
        r->next_ms = now_ms;
        cg_counter_add(a->st.out[ch][ALERTER_M_DELIVERED], 1);
        cg_histo_observe(a->st.latency_s[ch], (double)(now_ms - r->created_ms) / 1000.0);
        cg_log(CG_LOG_INFO, ch ? "email delivered" : "webhook delivered", "event", r->event_id,
               "endpoint", origin, "endpoint_id", ep, "status", status, "attempts", attempts, NULL);
        return CG_ERR_OK;
    }
    int64_t delay_ms = 0;
    if (res->outcome == ALERTER_OUT_RETRY &&
        alerter_backoff(a->cfg->alert_retry_s, a->cfg->alert_retry_n, r->attempts,
                        res->retry_after_s, alerter_rand(a), &delay_ms)) {
        r->next_ms = now_ms + delay_ms;
        cg_counter_add(a->st.out[ch][ALERTER_M_RETRIED], 1);
        snprintf(extra, sizeof extra, "%" PRId64, delay_ms);
        cg_log(CG_LOG_WARN,
               ch ? "email attempt failed; will retry" : "webhook attempt failed; will retry",
               "event", r->event_id, "endpoint", origin, "endpoint_id", ep, "error", res->error,
               "attempts", attempts, "retry_in_ms", extra, NULL);
        return CG_ERR_OK;
    }
    r->state = ALERTER_FAILED;
    r->next_ms = now_ms;
    if (res->outcome == ALERTER_OUT_DISABLED) {
        cg_counter_add(a->st.out[ch][ALERTER_M_DISABLED], 1);
        cg_log(CG_LOG_WARN, "webhook not attempted: endpoint disabled", "event", r->event_id,
               "endpoint", origin, "endpoint_id", ep, NULL);
        return CG_ERR_OK;
    }
    cg_counter_add(a->st.out[ch][ALERTER_M_FAILED], 1);
    if (res->outcome == ALERTER_OUT_GONE_410) {
        cg_log(CG_LOG_WARN, "webhook endpoint answered 410: disabled", "endpoint", origin,
               "endpoint_id", ep, "event", r->event_id, NULL);
        return alerter_outbox_endpoint_disable(t, r->org, r->url, now_ms);
    }
    cg_log(CG_LOG_ERROR, ch ? "email delivery failed" : "webhook delivery failed", "event",
           r->event_id, "endpoint", origin, "endpoint_id", ep, "error", res->error, "attempts",
           attempts, NULL);
    return CG_ERR_OK;
}

/* Write n results back to their records in one transaction. */
static void alerter_apply(alerter *a, const alerter_result *res, uint32_t n)
{
    if (n == 0) {
        return;
    }
    alerter_txn t = {NULL, NULL};
    int64_t now_ms = cg_now_ms();
    cg_err err = alerter_outbox_begin(a->ob, &t);
    for (uint32_t i = 0; i < n && err == CG_ERR_OK; i++) {
        alerter_record *r = &a->recs[0];
        err = alerter_outbox_get_txn(&t, res[i].key, r);
        if (err == CG_ERR_NOTFOUND) {
            err = CG_ERR_OK; /* swept meanwhile: nothing to record */
            continue;
        }
        if (err == CG_ERR_OK) {
            err = alerter_result_apply(a, &t, r, &res[i], now_ms);
        }
        if (err == CG_ERR_OK) {
            err = alerter_outbox_update(&t, r);
        }
    }
    if (err == CG_ERR_OK) {
        err = alerter_outbox_commit(&t);
    } else {
        alerter_outbox_abort(&t);
    }
    if (err != CG_ERR_OK) {
        /* The records stay due as they were: the attempts are simply made again. */
        cg_log(CG_LOG_ERROR, "cannot record delivery results", "error", cg_err_name(err), NULL);
    }
    a->due_dirty = 1;
}

static void alerter_results(alerter *a)
{
    alerter_apply(a, a->results, alerter_deliver_collect(a->dl, a->results, ALERTER_INFLIGHT_MAX));
}

static int alerter_skip_busy(const uint8_t key[ALERTER_KEY_BYTES], void *arg)
{
    return alerter_deliver_busy(arg, key);
}

static void alerter_start_due(alerter *a)
{
    uint32_t free_n = ALERTER_INFLIGHT_MAX - alerter_deliver_inflight(a->dl), n = 0;
    int64_t now_ms = cg_now_ms(), next = INT64_MAX;
    if (free_n == 0 || (!a->due_dirty && now_ms < a->next_due_ms)) {
        return;
    }
    cg_err err =
        alerter_outbox_due(a->ob, now_ms, alerter_skip_busy, a->dl, a->recs, free_n, &n, &next);
    if (err != CG_ERR_OK) {
        cg_log(CG_LOG_ERROR, "cannot read due records", "error", cg_err_name(err), NULL);
        a->next_due_ms = now_ms + ALERTER_DB_RETRY_MS;
        return;
    }
    a->due_dirty = 0;
    a->next_due_ms = next;
    uint32_t skipped = 0;
    for (uint32_t i = 0; i < n; i++) {
        int64_t disabled_ms = 0;
        if (a->recs[i].channel == ALERTER_CH_WEBHOOK &&
            alerter_outbox_endpoint_state(a->ob, a->recs[i].url, &disabled_ms) == CG_ERR_OK &&
            disabled_ms != 0) {
            alerter_result *res = &a->skipped[skipped++];
            memset(res, 0, sizeof *res);
            memcpy(res->key, a->recs[i].key, ALERTER_KEY_BYTES);
            res->outcome = ALERTER_OUT_DISABLED;
            res->channel = ALERTER_CH_WEBHOOK;
            snprintf(res->error, sizeof res->error, "endpoint disabled");
            continue;
        }
        err = alerter_deliver_start(a->dl, &a->recs[i], now_ms / 1000);
        if (err != CG_ERR_OK) {
            cg_log(CG_LOG_ERROR, "cannot start webhook attempt", "event", a->recs[i].event_id,
                   "error", cg_err_name(err), NULL);
            a->next_due_ms = now_ms + ALERTER_DB_RETRY_MS;
            break;
        }
    }
    /* recs is scratch for alerter_apply too: the due batch is no longer needed. */
    alerter_apply(a, a->skipped, skipped);
}

static void alerter_sweep(alerter *a, int64_t now)
{
    uint32_t removed = 0;
    if (now < a->next_sweep_ms) {
        return;
    }
    a->next_sweep_ms = now + ALERTER_SWEEP_EVERY_MS;
    cg_err err =
        alerter_outbox_sweep(a->ob, cg_now_ms() - ALERTER_RETAIN_MS, ALERTER_SWEEP_BATCH, &removed);
    if (err != CG_ERR_OK) {
        cg_log(CG_LOG_ERROR, "outbox sweep failed", "error", cg_err_name(err), NULL);
    } else if (removed > 0) {
        cg_logf(CG_LOG_INFO, "outbox sweep removed %" PRIu32 " finished records", removed);
    }
}

/* ---- the loop ------------------------------------------------------------------------ */

/* When the shard next has something to do that no completion will announce: a
 * routine poll, a catch-up, or the end of a hold. INT64_MAX while a call is out. */
static int64_t alerter_shard_wake_at(alerter_shard *s, int64_t now)
{
    if (s->pend_n > 0) {
        return alerter_call_state_get(&s->org) == ALERTER_CALL_IDLE ? s->hold_until_ms : INT64_MAX;
    }
    if (alerter_call_state_get(&s->ev) != ALERTER_CALL_IDLE) {
        return INT64_MAX;
    }
    int64_t at = s->need_catchup ? now : s->next_poll_ms;
    return at > s->hold_until_ms ? at : s->hold_until_ms;
}

/* How long the loop may sleep: until the next routine poll or due record, bounded. */
static int alerter_wait_ms(alerter *a, int64_t now)
{
    int64_t wait = ALERTER_LOOP_WAIT_MS;
    for (uint32_t i = 0; i < a->cfg->shard_n; i++) {
        int64_t at = alerter_shard_wake_at(&a->shards[i], now);
        if (at != INT64_MAX && at - now < wait) {
            wait = at - now;
        }
    }
    if (alerter_deliver_inflight(a->dl) < ALERTER_INFLIGHT_MAX) {
        if (a->due_dirty) {
            wait = 0;
        } else if (a->next_due_ms != INT64_MAX && a->next_due_ms - cg_now_ms() < wait) {
            wait = a->next_due_ms - cg_now_ms();
        }
    }
    return wait < 0 ? 0 : (int)wait;
}

cg_err alerter_run(alerter *a, const volatile sig_atomic_t *stop)
{
    char shards[16];
    snprintf(shards, sizeof shards, "%" PRIu32, a->cfg->shard_n);
    cg_log(CG_LOG_INFO, "alerter running", "shards", shards, NULL);
    atomic_store(&a->ready, 1);
    while (!*stop) {
        int64_t now = cg_mono_ms();
        alerter_take_pubs(a);
        for (uint32_t i = 0; i < a->cfg->shard_n; i++) {
            alerter_shard_step(a, &a->shards[i], now);
        }
        alerter_results(a);
        alerter_start_due(a);
        alerter_sweep(a, now);
        cg_err err = alerter_deliver_poll(a->dl, alerter_wait_ms(a, cg_mono_ms()));
        if (err != CG_ERR_OK) {
            return err;
        }
    }
    /* Let attempts in flight finish and record them, for a bounded time, so a restart
     * does not send again what a receiver already took. No new attempts start. */
    int64_t drain_end = cg_mono_ms() + ALERTER_DRAIN_MS;
    while (alerter_deliver_inflight(a->dl) > 0 && cg_mono_ms() < drain_end) {
        if (alerter_deliver_poll(a->dl, ALERTER_LOOP_WAIT_MS) != CG_ERR_OK) {
            break;
        }
        alerter_results(a);
    }
    char inflight[16];
    snprintf(inflight, sizeof inflight, "%" PRIu32, alerter_deliver_inflight(a->dl));
    cg_log(CG_LOG_INFO, "alerter stopping", "abandoned_attempts", inflight, NULL);
    return CG_ERR_OK;
}

/* ---- set-up and tear-down ------------------------------------------------------------ */

static cg_err alerter_shard_open(alerter *a, uint32_t i)
{
    alerter_shard *s = &a->shards[i];
    s->cfg = &a->cfg->shards[i];
    s->pend = calloc(ALERTER_PENDING_MAX, sizeof *s->pend);
    if (s->pend == NULL) {
        return CG_ERR_NOMEM;
    }
    cg_err err = alerter_call_init(&s->ev, alerter_wake, a->dl);
    if (err == CG_ERR_OK) {
        err = alerter_call_init(&s->org, alerter_wake, a->dl);
    }
    if (err == CG_ERR_OK) {
        err = alerter_req_open(s->cfg->req_url, &s->req);
        s->req_open = err == CG_ERR_OK;
    }
    if (err == CG_ERR_OK) {
        err = alerter_outbox_cursor_get(a->ob, s->cfg->name, &s->cursor);
    }
    if (err == CG_ERR_OK) {
        char cur[24];
        snprintf(cur, sizeof cur, "%" PRIu64, s->cursor);
        cg_log(CG_LOG_INFO, "shard followed", "shard", s->cfg->name, "req", s->cfg->req_url, "pub",
               s->cfg->pub_url, "cursor", cur, NULL);
    }
    return err;
}

static void alerter_log_outbox(alerter *a)
{
    uint64_t counts[3];
    if (alerter_outbox_count(a->ob, counts) != CG_ERR_OK) {
        return;
    }
    cg_logf(CG_LOG_INFO, "outbox: %" PRIu64 " pending, %" PRIu64 " delivered, %" PRIu64 " failed",
            counts[ALERTER_PENDING], counts[ALERTER_DELIVERED], counts[ALERTER_FAILED]);
}

static double alerter_pending_cb(void *ud)
{
    uint64_t n = 0;
    return alerter_outbox_pending(ud, &n) == CG_ERR_OK ? (double)n : 0.0;
}

static cg_err alerter_metrics_open(alerter *a)
{
    static const char *const ch[2] = {"webhook", "email"};
    static const char *const oc[4] = {"delivered", "retried", "failed", "disabled"};
    /* Event to delivery: seconds to a day, as retries stretch it. */
    static const double lat[] = {0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400};
    cg_err err = cg_metrics_new(&a->metrics);
    if (err != CG_ERR_OK) {
        return err;
    }
    a->st.events =
        cg_metrics_counter(a->metrics, "capgate_alerter_events_total",
                           "Threshold events taken from the shards into the outbox.", NULL);
    for (int c = 0; c < 2; c++) {
        for (int o = 0; o < 4; o++) {
            a->st.out[c][o] = cg_metrics_counter(
                a->metrics, "capgate_alerter_deliveries_total",
                "Delivery attempts by outcome: delivered, retried (will try again), failed (given "
                "up), disabled (endpoint disabled, not attempted).",
                "channel", ch[c], "outcome", oc[o], NULL);
        }
    }
    cg_metrics_gauge_cb(a->metrics, "capgate_alerter_outbox_pending",
                        "Deliveries waiting for their next attempt.", alerter_pending_cb, a->ob,
                        NULL);
    for (int c = 0; c < 2; c++) {
        a->st.attempt_s[c] =
            cg_metrics_histo(a->metrics, "capgate_alerter_attempt_seconds",
                             "Duration of one delivery attempt.", NULL, 0, "channel", ch[c], NULL);
        a->st.latency_s[c] = cg_metrics_histo(
            a->metrics, "capgate_alerter_delivery_latency_seconds",
            "From the event's creation in the alerter's outbox to its successful delivery.", lat,
            sizeof lat / sizeof lat[0], "channel", ch[c], NULL);
    }
    return CG_ERR_OK;
}

/* smtp_to into email_to (validated by alerter_config_check). */
static void alerter_email_to_parse(alerter *a)
{
    char buf[CG_URL_MAX + 1];
    snprintf(buf, sizeof buf, "%s", a->cfg->smtp_to);
    a->email_to_n = 0;
    if (a->cfg->smtp_url[0] == '\0') {
        return;
    }
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save);
         tok != NULL && a->email_to_n < ALERTER_EMAIL_TO_MAX; tok = strtok_r(NULL, ",", &save)) {
        snprintf(a->email_to[a->email_to_n++], sizeof a->email_to[0], "%s", tok);
    }
}

cg_err alerter_config_check(const cg_config *cfg, char *msg, size_t cap)
{
    if (cfg->shard_n == 0) {
        snprintf(msg, cap, "shard: at least one shard is required");
        return CG_ERR_INVAL;
    }
    if (cfg->smtp_url[0] == '\0') {
        return CG_ERR_OK;
    }
    int smtps = strncasecmp(cfg->smtp_url, "smtps://", 8) == 0;
    if (!smtps && strncasecmp(cfg->smtp_url, "smtp://", 7) != 0) {
        snprintf(msg, cap, "smtp_url: must be smtp://host[:port] or smtps://host[:port]");
        return CG_ERR_INVAL;
    }
    if (cfg->smtp_tls == 2 && !smtps) {
        snprintf(msg, cap, "smtp_url: smtp_tls implicit needs an smtps:// URL");
        return CG_ERR_INVAL;
    }
    if (cfg->smtp_tls != 2 && smtps) {
        snprintf(msg, cap, "smtp_tls: an smtps:// URL needs smtp_tls implicit");
        return CG_ERR_INVAL;
    }
    if (!alerter_email_ok(cfg->smtp_from)) {
        snprintf(msg, cap, "smtp_from: must be an email address (required with smtp_url)");
        return CG_ERR_INVAL;
    }
    char buf[CG_URL_MAX + 1];
    uint32_t n = 0;
    snprintf(buf, sizeof buf, "%s", cfg->smtp_to);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        if (!alerter_email_ok(tok)) {
            snprintf(msg, cap, "smtp_to: \"%.64s\" is not an email address", tok);
            return CG_ERR_INVAL;
        }
        n++;
    }
    if (n == 0 || n > ALERTER_EMAIL_TO_MAX) {
        snprintf(msg, cap, "smtp_to: 1..%d comma-separated addresses are required with smtp_url",
                 ALERTER_EMAIL_TO_MAX);
        return CG_ERR_INVAL;
    }
    return CG_ERR_OK;
}

static cg_err alerter_open_parts(alerter *a)
{
    char dir[CG_PATH_MAX + 16];
    if ((size_t)snprintf(dir, sizeof dir, "%s/alerter", a->cfg->data_dir) >= sizeof dir) {
        return CG_ERR_INVAL;
    }
    cg_err err = cg_config_ring(a->cfg, &a->ring);
    if (err != CG_ERR_OK) {
        return err;
    }
    a->ring_ok = 1;
    if ((err = alerter_outbox_open(dir, a->cfg->lmdb_map_bytes, &a->ob)) != CG_ERR_OK) {
        cg_log(CG_LOG_ERROR, "cannot open the outbox", "dir", dir, "error", cg_err_name(err), NULL);
        return err;
    }
    alerter_log_outbox(a);
    alerter_smtp smtp = {.url = a->cfg->smtp_url,
                         .from = a->cfg->smtp_from,
                         .user = a->cfg->smtp_user,
                         .password = a->cfg->smtp_password,
                         .tls = a->cfg->smtp_tls,
                         .ca_file = a->cfg->smtp_ca_file};
    if ((err = alerter_deliver_new(a->cfg->alert_allow_http, a->cfg->alert_allow_private, &smtp,
                                   &a->dl)) != CG_ERR_OK) {
        return err;
    }
    if ((err = alerter_metrics_open(a)) != CG_ERR_OK) {
        return err;
    }
    for (uint32_t i = 0; i < a->cfg->shard_n && err == CG_ERR_OK; i++) {
        err = alerter_shard_open(a, i);
    }
    if (err == CG_ERR_OK) {
        err = alerter_sub_open(&a->sub, a->cfg->shards, a->cfg->shard_n, alerter_wake, a->dl);
    }
    if (err == CG_ERR_OK && a->cfg->alerter_listen[0] != '\0') {
        err = alerter_http_start(a->cfg, a->ob, a->metrics, &a->ready, &a->http);
    }
    return err;
}

cg_err alerter_new(const cg_config *cfg, alerter **out)
{
    if (cfg->shard_n == 0) {
        return CG_ERR_INVAL;
    }
    alerter *a = calloc(1, sizeof *a);
    if (a == NULL) {
        return CG_ERR_NOMEM;
    }
    a->cfg = cfg;
    a->shards = calloc(cfg->shard_n, sizeof *a->shards);
    a->orgs = calloc(ALERTER_ORG_CACHE_N, sizeof *a->orgs);
    a->recs = calloc(ALERTER_INFLIGHT_MAX, sizeof *a->recs);
    cg_err err = CG_ERR_NOMEM;
    if (a->shards == NULL || a->orgs == NULL || a->recs == NULL) {
        goto fail;
    }
    if (getrandom(&a->rng, sizeof a->rng, 0) != (ssize_t)sizeof a->rng || a->rng == 0) {
        a->rng = (uint64_t)cg_mono_ms() * 0x9e3779b97f4a7c15ull | 1u;
    }
    a->due_dirty = 1;
    char msg[160];
    if (alerter_config_check(cfg, msg, sizeof msg) != CG_ERR_OK) {
        cg_log(CG_LOG_ERROR, "bad config", "error", msg, NULL);
        err = CG_ERR_INVAL;
        goto fail;
    }
    alerter_email_to_parse(a);
    if ((err = alerter_open_parts(a)) != CG_ERR_OK) {
        goto fail;
    }
    *out = a;
    return CG_ERR_OK;
fail:
    alerter_free(a);
    return err;
}

void alerter_free(alerter *a)
{
    if (a == NULL) {
        return;
    }
    /* The listener reads the outbox and the registry: it goes first. */
    alerter_http_stop(a->http);
    /* NNG callbacks wake the curl multi: stop them all before the multi goes. */
    alerter_sub_close(&a->sub);
    for (uint32_t i = 0; a->shards != NULL && i < a->cfg->shard_n; i++) {
        alerter_call_fini(&a->shards[i].ev);
        alerter_call_fini(&a->shards[i].org);
    }
    for (uint32_t i = 0; a->shards != NULL && i < a->cfg->shard_n; i++) {
        if (a->shards[i].req_open) {
            nng_close(a->shards[i].req);
        }
        free(a->shards[i].pend);
    }
    alerter_deliver_free(a->dl);
    alerter_outbox_close(a->ob);
    cg_metrics_free(a->metrics);
    if (a->ring_ok) {
        cg_ring_fini(&a->ring);
    }
    free(a->shards);
    free(a->orgs);
    free(a->recs);
    free(a);
}
