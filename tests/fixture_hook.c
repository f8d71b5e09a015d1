/*
 * fixture_hook.c — a webhook receiver for integration tests.
 *
 * A cg_http server (the project's own HTTP server) on its own thread and uv
 * loop, listening on 127.0.0.1 port 0 (the kernel picks a free port). It
 * records every request (method, path, headers, body) under a mutex and
 * answers from a configured status sequence. The test thread reads the
 * records; only the hook thread touches the loop. Stopping goes through a
 * uv_async so the loop closes its own handles.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>
#include "cg_http.h"
#include "fixture.h"

#define FX_HOOK_REQS_MAX 256
#define FX_HOOK_STATUSES_MAX 16

struct fx_hook {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uv_loop_t loop;
    uv_async_t stop;
    cg_http_server *server;
    int port;
    int state; /* 0 starting, 1 listening, -1 failed; under mu */
    int statuses[FX_HOOK_STATUSES_MAX];
    size_t status_n;
    fx_hook_req reqs[FX_HOOK_REQS_MAX]; /* under mu */
    size_t req_n;
};

static void fx_hook_copy(fx_hook_req *dst, const fx_hook_req *src)
{
    memset(dst, 0, sizeof(*dst));
    memcpy(dst->method, src->method, sizeof(dst->method));
    memcpy(dst->path, src->path, sizeof(dst->path));
    dst->headers = calloc(src->header_n ? src->header_n : 1, sizeof(fx_header));
    dst->body = malloc(src->body_len + 1);
    if (dst->headers == NULL || dst->body == NULL) {
        abort(); /* test process out of memory */
    }
    for (size_t i = 0; i < src->header_n; i++) {
        dst->headers[i].name = strdup(src->headers[i].name);
        dst->headers[i].value = strdup(src->headers[i].value);
    }
    dst->header_n = src->header_n;
    memcpy(dst->body, src->body, src->body_len);
    dst->body[src->body_len] = '\0';
    dst->body_len = src->body_len;
    dst->at_ms = src->at_ms;
}

/* On the hook loop: record the request, answer with the next status. */
static void fx_hook_handler_cb(cg_http_conn *conn, const cg_http_req *req, void *ud)
{
    fx_hook *h = ud;
    fx_hook_req rec;
    fx_header hs[CG_HTTP_HEADERS_MAX];
    memset(&rec, 0, sizeof(rec));
    snprintf(rec.method, sizeof(rec.method), "%s", req->method);
    snprintf(rec.path, sizeof(rec.path), "%s", req->path);
    for (uint32_t i = 0; i < req->header_n && i < CG_HTTP_HEADERS_MAX; i++) {
        hs[i].name = (char *)req->headers[i].name;
        hs[i].value = (char *)req->headers[i].value;
    }
    rec.headers = hs;
    rec.header_n = req->header_n;
    rec.body = (char *)req->body;
    rec.body_len = req->body_len;
    rec.at_ms = fx_now_ms();
    int status = 200;
    pthread_mutex_lock(&h->mu);
    size_t i = h->req_n;
    if (h->status_n > 0) {
        status = h->statuses[i < h->status_n ? i : h->status_n - 1];
    }
    if (i < FX_HOOK_REQS_MAX) {
        fx_hook_copy(&h->reqs[i], &rec);
        for (size_t k = 0; k < h->reqs[i].header_n; k++) {
            for (char *q = h->reqs[i].headers[k].name; *q != '\0'; q++) {
                *q = (char)(*q >= 'A' && *q <= 'Z' ? *q + 32 : *q);
            }
        }
        h->req_n++;
    }
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    cg_http_respond(conn, status, NULL, "text/plain", "ok\n", 3);
}

static void fx_hook_stop_cb(uv_async_t *a)
{
    fx_hook *h = a->data;
    if (h->server != NULL) {
        cg_http_server_close(h->server);
        h->server = NULL;
    }
    uv_close((uv_handle_t *)&h->stop, NULL);
}

static void fx_hook_set_state(fx_hook *h, int state)
{
    pthread_mutex_lock(&h->mu);
    h->state = state;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

static void *fx_hook_main(void *arg)
{
    fx_hook *h = arg;
    cg_http_opts o = {
        .body_max_bytes = 1u << 20,
        .header_max_bytes = 64u << 10,
        .request_timeout_ms = 10000,
        .idle_timeout_ms = 30000,
        .conns_max = 64,
    };
    /* Port 0: the kernel picks a free port, read back from the server. */
    cg_err err = cg_http_listen(&h->loop, "127.0.0.1:0", 0, &o, fx_hook_handler_cb, h, &h->server);
    if (err == CG_ERR_OK) {
        h->port = cg_http_server_port(h->server);
        if (h->port <= 0) {
            cg_http_server_close(h->server);
            h->server = NULL;
            err = CG_ERR_IO;
        }
    }
    if (err != CG_ERR_OK) {
        uv_close((uv_handle_t *)&h->stop, NULL);
        uv_run(&h->loop, UV_RUN_DEFAULT);
        fx_hook_set_state(h, -1);
        return NULL;
    }
    fx_hook_set_state(h, 1);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    return NULL;
}

fx_hook *fx_hook_start(const int *statuses, size_t n)
{
    fx_hook *h = calloc(1, sizeof(*h));
    FX_CHECK(h != NULL, "calloc");
    FX_CHECK(n <= FX_HOOK_STATUSES_MAX, "too many statuses");
    for (size_t i = 0; statuses != NULL && i < n; i++) {
        h->statuses[h->status_n++] = statuses[i];
    }
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    FX_CHECK(uv_loop_init(&h->loop) == 0, "uv_loop_init");
    FX_CHECK(uv_async_init(&h->loop, &h->stop, fx_hook_stop_cb) == 0, "uv_async_init");
    h->stop.data = h;
    FX_CHECK(pthread_create(&h->thread, NULL, fx_hook_main, h) == 0, "pthread_create");
    pthread_mutex_lock(&h->mu);
    while (h->state == 0) {
        pthread_cond_wait(&h->cv, &h->mu);
    }
    int state = h->state;
    pthread_mutex_unlock(&h->mu);
    if (state != 1) {
        pthread_join(h->thread, NULL);
        fx_fail(__FILE__, __LINE__, "webhook receiver could not listen");
    }
    fx_log("webhook receiver on 127.0.0.1:%d", h->port);
    return h;
}

int fx_hook_port(const fx_hook *h)
{
    return h->port;
}

size_t fx_hook_count(fx_hook *h)
{
    pthread_mutex_lock(&h->mu);
    size_t n = h->req_n;
    pthread_mutex_unlock(&h->mu);
    return n;
}

size_t fx_hook_wait(fx_hook *h, size_t n, int64_t timeout_ms)
{
    int64_t deadline = fx_now_ms() + timeout_ms;
    size_t got = fx_hook_count(h);
    while (got < n && fx_now_ms() < deadline) {
        fx_sleep_ms(20);
        got = fx_hook_count(h);
    }
    return got;
}

void fx_hook_get(fx_hook *h, size_t i, fx_hook_req *out)
{
    pthread_mutex_lock(&h->mu);
    int ok = i < h->req_n;
    if (ok) {
        fx_hook_copy(out, &h->reqs[i]);
    }
    pthread_mutex_unlock(&h->mu);
    FX_CHECK(ok, "webhook request %zu not received", i);
}

void fx_hook_req_free(fx_hook_req *r)
{
    for (size_t i = 0; i < r->header_n; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

const char *fx_hook_req_header(const fx_hook_req *r, const char *name)
{
    for (size_t i = 0; i < r->header_n; i++) {
        if (strcasecmp(r->headers[i].name, name) == 0) {
            return r->headers[i].value;
        }
    }
    return NULL;
}

void fx_hook_stop(fx_hook *h)
{
    uv_async_send(&h->stop);
    pthread_join(h->thread, NULL);
    uv_loop_close(&h->loop);
    for (size_t i = 0; i < h->req_n && i < FX_HOOK_REQS_MAX; i++) {
        fx_hook_req_free(&h->reqs[i]);
    }
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}
