/*
 * gw_proxy_up.c — last part of the proxy flow: the upstream transfer,
 * streaming relay, settlement on every scope and the client's answer.
 *
 * Outcomes (SPEC §3, §4):
 *   upstream 2xx, buffered   → settle actual usage (worst case, estimated, when
 *                              the body has none) and answer with the body at once
 *   upstream 2xx, streamed   → relayed as it arrives (usage chunk stripped if
 *                              the gateway asked for it); at the end settle the
 *                              usage, or an estimate if the stream broke, then end
 *   upstream non-2xx         → pass the upstream's status and body on; settle the
 *                              usage its body reports, if any, else settle nothing
 *   cannot connect / timeout → settle nothing; 502 upstream_error / 504 upstream_timeout
 *   client left mid-stream   → stop the transfer, settle the estimate
 * Every scope that was reserved is settled with the same request id and the
 * same actual amounts; only the key scope's settle carries the usage record.
 * "Settle nothing" (a request that reached the upstream and consumed nothing):
 * the key scope is settled with zero amounts (requests 0 too), so the usage
 * record (status, latency, model, provider, zero cost) is kept, and every
 * other scope is released; the counters end exactly as a release leaves them.
 * A request that never reached the upstream is released and has no record.
 * The answer never waits for a settle (issue 4): the settles are submitted, the
 * client is answered in the same loop turn, and the settles complete in the
 * background; the proxy (and so a SIGTERM drain) lives until each is confirmed.
 * Settles still unconfirmed are retried with backoff; if every try fails the
 * usage is lost for good on that scope (logged as an error; the reservation's
 * lease then expires).
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cg_str.h"
#include "cg_clock.h"
#include "cg_log.h"
#include "cg_money.h"
#include "gw_body.h"
#include "gw_proxy_int.h"
#include "gw_metrics.h"

/* Status recorded for a request whose client went away (nginx's convention). */
#define GW_STATUS_CLIENT_GONE 499
/* Room for the response headers the gateway adds (request id, cost, rate limits, budget). */
#define GW_PROXY_HEADERS_MAX 1024

static void gw_proxy_settle(gw_proxy *p);

/* ---- the answer ---- */

static void gw_proxy_answer(gw_proxy *p)
{
    if (p->answered) {
        return;
    }
    p->answered = 1;
    gw_metrics_request(p->err_status ? p->err_status : p->client_status,
                       p->err_status ? p->err_code : NULL, p->t0_ms);
    cg_http_conn *c = p->conn;
    if (c == NULL) {
        return;
    }
    p->conn = NULL;
    p->req = NULL;
    if (p->stream_started) {
        cg_http_stream_end(c);
        return;
    }
    char hdr[GW_PROXY_HEADERS_MAX];
    gw_proxy_rid_header(p, hdr, sizeof(hdr));
    if (p->err_status != 0) {
        cg_http_respond_error(c, p->err_status, p->err_type, p->err_code, p->err_msg, hdr);
        return;
    }
    size_t n = strlen(hdr);
    if (p->charged) {
        char money[40];
        cg_money_format(p->cost_nusd, 2, money, sizeof(money));
        n += (size_t)snprintf(hdr + n, sizeof(hdr) - n, "x-capgate-cost-usd: %s\r\n", money);
        if (p->client_status >= 200 && p->client_status < 300) {
            gw_proxy_success_headers(p, hdr, n, sizeof(hdr));
        }
    }
    const char *ctype = p->up_ctype[0] ? p->up_ctype : "application/json";
    cg_http_respond(c, p->client_status, hdr, ctype, p->buf, p->buf_len);
}

/* Answer later (after the settle) with an OpenAI error. */
static void gw_proxy_set_error(gw_proxy *p, int status, const char *type, const char *code,
                               const char *msg)
{
    p->err_status = status;
    p->err_type = type;
    p->err_code = code;
    snprintf(p->err_msg, sizeof(p->err_msg), "%s", msg);
    p->client_status = status;
}

/* ---- settle ---- */

static void gw_proxy_retry_cb(uv_timer_t *t);

static int gw_settle_retriable(cg_err st)
{
    return st == CG_ERR_TIMEOUT || st == CG_ERR_UNAVAILABLE;
}

/* Every settle of the attempt has answered: end, or retry what failed. */
static void gw_proxy_settle_round_end(gw_proxy *p)
{
    cg_err st = (cg_err)p->settle_err;
    if (st == CG_ERR_OK) {
        gw_proxy_answer(p);
        gw_proxy_done(p);
        return;
    }
    int retry = gw_settle_retriable(st) && p->settle_tries < GW_SETTLE_TRIES_MAX &&
                !p->env->closing && p->env->ledger != NULL;
    char tries[8];
    snprintf(tries, sizeof(tries), "%u", p->settle_tries);
    cg_log(CG_LOG_ERROR, retry ? "settle failed; retrying" : "SETTLE FAILED: usage not recorded",
           "request_id", p->rid, "key", p->key.id, "error", cg_err_name(st), "attempt", tries,
           NULL);
    gw_proxy_answer(p);
    if (!retry) {
        gw_proxy_done(p);
        return;
    }
    if (!p->retry_open) {
        uv_timer_init(p->env->loop, &p->retry);
        p->retry.data = p;
        p->retry_open = 1;
        gw_proxy_ref(p); /* dropped by the timer's close callback */
    }
    uv_timer_start(&p->retry, gw_proxy_retry_cb,
                   (uint64_t)GW_SETTLE_BACKOFF_MS << (p->settle_tries - 1), 0);
}

/* Record one scope's settle outcome. */
static void gw_proxy_settle_outcome(gw_proxy *p, gw_scope *s, cg_err st, int late)
{
    if (st == CG_ERR_OK) {
        s->settled = 1;
        if (late) {
            cg_log(CG_LOG_WARN, "settled after the lease expired; recorded as spend", "request_id",
                   p->rid, "route", s->route, NULL);
        }
    } else if (!gw_settle_retriable(st)) {
        /* A retry cannot help (refused, or shutting down): give this scope up. */
        s->settled = 1;
        cg_log(CG_LOG_ERROR, "SETTLE FAILED: usage not recorded on this scope", "request_id",
               p->rid, "route", s->route, "error", cg_err_name(st), NULL);
        if (p->settle_err == CG_ERR_OK) {
            p->settle_err = (uint16_t)st;
        }
    } else {
        p->settle_err = (uint16_t)st;
    }
}

static void gw_proxy_settle_cb(cg_err err, const proto_rep *rep, void *ud)
{
    gw_proxy_slot *sl = ud;
    gw_proxy *p = sl->p;
    assert(p->refs >= 2); /* this operation's reference and the flow's */
    cg_err st = err == CG_ERR_OK ? (cg_err)rep->status : err;
    gw_proxy_settle_outcome(p, &p->scopes[sl->idx], st, st == CG_ERR_OK ? rep->u.settle.late : 0);
    assert(p->settle_wait > 0);
    if (--p->settle_wait == 0) {
        gw_proxy_settle_round_end(p);
    }
    gw_proxy_unref(p);
}

static void gw_proxy_retry_cb(uv_timer_t *t)
{
    gw_proxy *p = t->data;
    if (p->env->closing || p->env->ledger == NULL) {
        p->settle_err = CG_ERR_SHUTDOWN;
        gw_proxy_settle_round_end(p);
        return;
    }
    gw_proxy_settle(p);
}

/* The usage record, carried by the key scope's settle only. */
static void gw_proxy_usage_record(const gw_proxy *p, proto_usage *u)
{
    const cg_config *cfg = p->env->cfg;
    u->ts_ms = p->settle_ts_ms;
    snprintf(u->org, sizeof(u->org), "%s", p->key.org);
    snprintf(u->key_id, sizeof(u->key_id), "%s", p->key.id);
    snprintf(u->model, sizeof(u->model), "%s", p->model->name);
    u->prompt_tokens = p->usage.prompt_tokens;
    u->completion_tokens = p->usage.completion_tokens;
    u->cost_nusd = p->cost_nusd;
    u->status = p->client_gone ? GW_STATUS_CLIENT_GONE : p->client_status;
    u->latency_ms = p->latency_ms;
    u->estimated = p->estimated;
    if (p->group.found) {
        snprintf(u->group, sizeof(u->group), "%s", p->key.group);
    }
    snprintf(u->customer, sizeof(u->customer), "%s", p->customer);
    snprintf(u->provider, sizeof(u->provider), "%s", cfg->providers[p->model->provider].name);
    snprintf(u->request_id, sizeof(u->request_id), "%s", p->rid);
}

static void gw_proxy_settle_req(const gw_proxy *p, const gw_scope *s, proto_req *rq)
{
    memset(rq, 0, sizeof(*rq));
    rq->op = PROTO_OP_SETTLE;
    snprintf(rq->route, sizeof(rq->route), "%s", s->route);
    snprintf(rq->u.settle.request_id, sizeof(rq->u.settle.request_id), "%s", p->rid);
    rq->u.settle.actual.cost_nusd = p->cost_nusd;
    rq->u.settle.actual.tokens = p->tokens;
    rq->u.settle.actual.requests = p->nothing_used ? 0 : 1;
    if (s->kind == PROTO_SCOPE_KEY) {
        rq->u.settle.has_usage = 1;
        gw_proxy_usage_record(p, &rq->u.settle.usage);
    }
}

/* Settle every scope not yet confirmed (one attempt). */
static void gw_proxy_settle(gw_proxy *p)
{
    p->phase = GW_PH_SETTLE;
    if (p->settle_tries++ == 0) {
        p->settle_ts_ms = cg_now_ms();
        int64_t lat = cg_mono_ms() - p->t0_ms;
        p->latency_ms = lat > INT32_MAX ? INT32_MAX : (int32_t)lat;
    }
    p->settle_err = CG_ERR_OK;
    p->settle_wait = 1; /* held while submitting */
    gw_proxy_ref(p);
    for (uint8_t i = 0; i < p->scope_n; i++) {
        gw_scope *s = &p->scopes[i];
        if (s->skip || s->settled) {
            continue;
        }
        if (p->lease[i] != NULL) {
            /* Admitted on a budget lease: charged locally, settled in a batch. */
            proto_amounts actual = {.cost_nusd = p->cost_nusd,
                                    .tokens = p->tokens,
                                    .requests = p->nothing_used ? 0 : 1};
            proto_usage rec;
            if (s->kind == PROTO_SCOPE_KEY) {
                memset(&rec, 0, sizeof(rec));
                gw_proxy_usage_record(p, &rec);
            }
            gw_lease_charge(p->lease[i], &p->lease_worst[i], &actual,
                            s->kind == PROTO_SCOPE_KEY ? &rec : NULL);
            p->lease[i] = NULL;
            s->settled = 1;
            continue;
        }
        proto_req rq;
        gw_proxy_settle_req(p, s, &rq);
        p->settle_wait++;
        cg_err err = gw_proxy_submit(p, &rq, gw_proxy_settle_cb, &p->slots[i]);
        if (err != CG_ERR_OK) {
            p->settle_wait--;
            gw_proxy_settle_outcome(p, s, err == CG_ERR_SHUTDOWN ? err : CG_ERR_UNAVAILABLE, 0);
        }
    }
    /* The client never waits for a settle: its answer goes out now, while the settles
     * (already encoded into their shards' batches) commit in the background. The
     * reservations hold until the shard confirms each settle, so every cap still holds;
     * the proxy stays active (SIGTERM's drain waits for it) until every scope is
     * confirmed or given up. */
    gw_proxy_answer(p);
    if (--p->settle_wait == 0) {
        gw_proxy_settle_round_end(p);
    }
    gw_proxy_unref(p);
}

/* Charge usage u (estimated or not) and settle. */
static void gw_proxy_charge(gw_proxy *p, const gw_usage *u, int estimated)
{
    p->usage = *u;
    p->estimated = (uint8_t)estimated;
    p->cost_nusd = gw_cost_of(p->env->cfg, p->model, u);
    __int128 t = (__int128)u->prompt_tokens + u->completion_tokens;
    p->tokens = t > INT64_MAX ? INT64_MAX : (int64_t)t;
    p->charged = 1;
    gw_proxy_settle(p);
}

/* Charge the reservation's worst case (usage unknown). */
static void gw_proxy_charge_worst(gw_proxy *p)
{
    p->usage.prompt_tokens = p->est.prompt_tokens;
    p->usage.completion_tokens = p->est.completion_tokens;
    p->usage.cached_tokens = 0;
    p->estimated = 1;
    p->cost_nusd = p->est.cost_nusd;
    __int128 t = (__int128)p->est.prompt_tokens + p->est.completion_tokens;
    p->tokens = t > INT64_MAX ? INT64_MAX : (int64_t)t;
    p->charged = 1;
    gw_proxy_settle(p);
}

/*
 * The upstream failed and reported nothing consumed: a zero settle of the key
 * scope carries the usage record (status = what the client gets); every other
 * scope is released. Counters end as after a release (used + 0, reserved back).
 */
static void gw_proxy_settle_nothing(gw_proxy *p)
{
    memset(&p->usage, 0, sizeof(p->usage));
    p->estimated = 0;
    p->cost_nusd = 0;
    p->tokens = 0;
    p->nothing_used = 1;
    gw_proxy_release_but_key(p);
    gw_proxy_settle(p);
}

/*
 * Usage of a stream: the upstream's usage chunk, or the documented estimate
 * when it never came: the prompt bound, and one token per byte of delta text
 * relayed (a token is at least one byte), capped by the completion bound.
 */
static void gw_proxy_charge_stream(gw_proxy *p)
{
    if (p->sse.have_usage) {
        gw_proxy_charge(p, &p->sse.usage, 0);
        return;
    }
    gw_usage u = {.prompt_tokens = p->est.prompt_tokens};
    u.completion_tokens = (int64_t)p->sse.content_bytes;
    if (p->sse.content_bytes > (uint64_t)p->est.completion_tokens) {
        u.completion_tokens = p->est.completion_tokens;
    }
    gw_proxy_charge(p, &u, 1);
}

/* ---- upstream transfer ---- */

static void gw_proxy_emit(void *ud, const char *d, size_t n)
{
    gw_proxy *p = ud;
    if (p->conn != NULL && n > 0) {
        p->pending = cg_http_stream_write(p->conn, d, n);
    }
}

static int gw_proxy_buffer(gw_proxy *p, const char *d, size_t n)
{
    if (n > GW_UPSTREAM_BODY_MAX - p->buf_len) {
        p->too_big = 1;
        return GW_XFER_ABORT;
    }
    if (p->buf_len + n > p->buf_cap) {
        size_t cap = p->buf_cap ? p->buf_cap : 4096;
        while (cap < p->buf_len + n) {
            cap *= 2;
        }
        char *nb = realloc(p->buf, cap);
        if (nb == NULL) {
            return GW_XFER_ABORT;
        }
        p->buf = nb;
        p->buf_cap = cap;
    }
    memcpy(p->buf + p->buf_len, d, n);
    p->buf_len += n;
    return GW_XFER_CONSUMED;
}

static int gw_proxy_data_cb(void *ud, int status, const char *ctype, const char *d, size_t n)
{
    (void)ctype;
    gw_proxy *p = ud;
    if (!p->stream || status < 200 || status >= 300) {
        return gw_proxy_buffer(p, d, n);
    }
    if (p->pending > GW_STREAM_PENDING_MAX) {
        p->paused = 1;
        return GW_XFER_PAUSE;
    }
    gw_proxy_ref(p); /* the client may abort inside a write */
    p->in_data = 1;
    if (!p->stream_started) {
        p->stream_started = 1;
        p->client_status = 200;
        if (p->conn != NULL) {
            char hdr[GW_PROXY_HEADERS_MAX];
            int hn = snprintf(hdr, sizeof(hdr),
                              "x-capgate-request-id: %s\r\ncache-control: no-cache\r\n", p->rid);
            gw_proxy_success_headers(p, hdr, (size_t)hn, sizeof(hdr));
            cg_http_stream_begin(p->conn, 200, hdr, "text/event-stream");
        }
    }
    if (gw_sse_feed(&p->sse, d, n, gw_proxy_emit, p) != CG_ERR_OK) {
        cg_log(CG_LOG_WARN, "sse scanner out of memory; relaying unparsed", "request_id", p->rid,
               NULL);
    }
    p->in_data = 0;
    if (p->gone_in_data) {
        /* Deferred from the abort callback so the scanner is not re-entered mid-feed. */
        p->gone_in_data = 0;
        gw_proxy_client_gone(p);
    }
    gw_proxy_unref(p);
    return GW_XFER_CONSUMED;
}

/* The transfer ended (done_cb): decide release or settle. */
static void gw_proxy_upstream_finished(gw_proxy *p, cg_err err, const char *detail)
{
    int ok2xx = p->up_status >= 200 && p->up_status < 300;
    if (p->stream_started) {
        gw_sse_finish(&p->sse, gw_proxy_emit, p);
        if (!p->sse.have_usage) {
            cg_log(CG_LOG_WARN, "stream ended without usage; charging the estimate", "request_id",
                   p->rid, "error", cg_err_name(err), "detail",
                   err == CG_ERR_OK ? "no usage chunk" : detail, NULL);
        }
        gw_proxy_charge_stream(p);
    } else if (p->too_big || (err == CG_ERR_IO && ok2xx)) {
        /* The upstream produced (and will bill) a response we cannot relay. */
        cg_log(CG_LOG_WARN, "upstream response unusable; charging the worst case", "request_id",
               p->rid, "detail", p->too_big ? "response too large" : detail, NULL);
        gw_proxy_set_error(p, 502, "upstream_error", "upstream_error",
                           p->too_big ? "The upstream response was too large."
                                      : "The upstream connection broke mid-response.");
        gw_proxy_charge_worst(p);
    } else if (err == CG_ERR_TIMEOUT) {
        gw_proxy_set_error(p, 504, "upstream_error", "upstream_timeout",
                           "The upstream provider did not answer in time.");
        gw_proxy_settle_nothing(p);
    } else if (err != CG_ERR_OK) {
        cg_log(CG_LOG_WARN, "upstream request failed", "request_id", p->rid, "error",
               cg_err_name(err), "detail", detail, NULL);
        gw_proxy_set_error(p, 502, "upstream_error", "upstream_error",
                           "The upstream provider could not be reached.");
        gw_proxy_settle_nothing(p);
    } else if (!ok2xx) {
        /* An error the upstream may still bill: its reported usage is charged. */
        p->client_status = p->up_status;
        gw_usage u;
        if (gw_usage_from_body(p->buf ? p->buf : "", p->buf_len, &u) &&
            (u.prompt_tokens > 0 || u.completion_tokens > 0)) {
            gw_proxy_charge(p, &u, 0);
        } else {
            gw_proxy_settle_nothing(p);
        }
    } else {
        p->client_status = p->up_status;
        gw_usage u;
        if (gw_usage_from_body(p->buf ? p->buf : "", p->buf_len, &u)) {
            gw_proxy_charge(p, &u, 0);
        } else {
            gw_proxy_charge_worst(p);
        }
    }
}

static void gw_proxy_xfer_done_cb(void *ud, cg_err err, int status, const char *ctype,
                                  const char *detail)
{
    gw_proxy *p = ud;
    p->xfer = NULL;
    p->up_status = status;
    snprintf(p->up_ctype, sizeof(p->up_ctype), "%s", ctype ? ctype : "");
    gw_proxy_upstream_finished(p, err, detail);
    gw_proxy_unref(p); /* the transfer's reference */
}

void gw_proxy_upstream_start(gw_proxy *p)
{
    gw_proxy_env *env = p->env;
    const cg_provider_cfg *pv = &env->cfg->providers[p->model->provider];
    char url[GW_UPSTREAM_URL_MAX + 1];
    p->phase = GW_PH_UPSTREAM;
    const char *path = gw_endpoint_upstream_path(p->ep);
    if (CG_STR_CAT(url, sizeof(url), pv->base_url, path) != strlen(pv->base_url) + strlen(path)) {
        gw_proxy_release(p);
        gw_proxy_fail(p, 500, "server_error", "internal_error", "Provider URL too long.");
        return;
    }
    if (env->upstream == NULL || env->closing) {
        gw_proxy_release(p);
        gw_proxy_fail(p, 503, "service_unavailable", "shutting_down",
                      "The gateway is shutting down; please retry.");
        return;
    }
    gw_xfer_opts o = {.url = url,
                      .bearer = pv->api_key,
                      .body = p->up_body,
                      .body_len = p->up_len,
                      .timeout_ms = env->cfg->upstream_timeout_ms};
    p->phase = GW_PH_UPSTREAM;
    p->req = NULL; /* the body was copied; the request is not needed any more */
    gw_proxy_ref(p);
    cg_err err =
        gw_xfer_start(env->upstream, &o, gw_proxy_data_cb, gw_proxy_xfer_done_cb, p, &p->xfer);
    if (err != CG_ERR_OK) {
        p->refs--; /* the flow reference is still held */
        cg_log(CG_LOG_ERROR, "cannot start upstream transfer", "request_id", p->rid, "error",
               cg_err_name(err), NULL);
        gw_proxy_release(p);
        gw_proxy_fail(p, 502, "upstream_error", "upstream_error",
                      "The upstream request could not be started.");
    }
}

/* ---- client events and shutdown ---- */

/* Stop the running transfer and settle what is known (stream) or the worst case. */
static void gw_proxy_stop_transfer(gw_proxy *p)
{
    gw_xfer_cancel(p->xfer);
    p->xfer = NULL;
    if (p->stream) {
        gw_sse_finish(&p->sse, gw_proxy_emit, p);
        if (!p->stream_started && p->conn != NULL) {
            gw_proxy_set_error(p, 503, "service_unavailable", "shutting_down",
                               "The gateway is shutting down; please retry.");
        }
        gw_proxy_charge_stream(p);
    } else {
        gw_proxy_set_error(p, 503, "service_unavailable", "shutting_down",
                           "The gateway is shutting down; please retry.");
        gw_proxy_charge_worst(p);
    }
}

void gw_proxy_client_gone(gw_proxy *p)
{
    /* A buffered request keeps running so its real usage can be settled; a
     * stream is stopped at once (the provider stops generating too). */
    if (p->phase != GW_PH_UPSTREAM || p->xfer == NULL || !p->stream) {
        return;
    }
    if (p->in_data) {
        p->gone_in_data = 1;
        return;
    }
    gw_proxy_stop_transfer(p);
    gw_proxy_unref(p); /* the transfer's reference; the settle holds its own */
}

void gw_proxy_client_drained(gw_proxy *p)
{
    p->pending = 0;
    if (p->paused && p->xfer != NULL) {
        p->paused = 0;
        gw_xfer_resume(p->xfer);
    }
}

void gw_proxy_force(gw_proxy *p)
{
    if (p->xfer != NULL) {
        cg_log(CG_LOG_WARN, "shutdown: stopping upstream transfer", "request_id", p->rid, NULL);
        gw_proxy_stop_transfer(p);
        gw_proxy_unref(p); /* the transfer's reference */
    } else if (p->retry_open && uv_is_active((uv_handle_t *)&p->retry)) {
        /* Waiting for a settle retry (an attempt in flight is left to finish). */
        cg_log(CG_LOG_ERROR, "SETTLE FAILED: shutdown before the retry; usage not recorded",
               "request_id", p->rid, "key", p->key.id, NULL);
        uv_timer_stop(&p->retry);
        gw_proxy_done(p);
    }
}
