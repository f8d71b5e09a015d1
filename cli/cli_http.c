/*
 * cli_http.c — `capgate`'s HTTP client: one libcurl easy request per call,
 * the admin token as a Bearer header, bounded answer size and time, and the
 * mapping of answers to exit codes (see cli.h).
 */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

typedef struct cli_buf {
    char *p;
    size_t n;
    size_t cap;
    int too_big;
} cli_buf;

static size_t cli_write_cb(char *d, size_t size, size_t nmemb, void *ud)
{
    cli_buf *b = ud;
    size_t n = size * nmemb;
    if (n > CLI_BODY_MAX - b->n) {
        b->too_big = 1;
        return 0; /* aborts the transfer */
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) {
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            return 0;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
    b->p[b->n] = '\0';
    return n;
}

int cli_escape(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        int plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || strchr("-_.~", ch) != NULL;
        if (o + (plain ? 1 : 3) >= cap) {
            return 0;
        }
        if (plain) {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
    return 1;
}

int cli_http(const cli *c, const char *method, const char *path, const char *body, cli_resp *r)
{
    char url[CLI_URL_MAX];
    cli_buf b = {0};
    struct curl_slist *h = NULL;
    size_t ul = strlen(c->url);
    memset(r, 0, sizeof(*r));
    while (ul > 0 && c->url[ul - 1] == '/') {
        ul--;
    }
    if ((size_t)snprintf(url, sizeof(url), "%.*s%s", (int)ul, c->url, path) >= sizeof(url)) {
        snprintf(r->err, sizeof(r->err), "URL too long");
        fprintf(stderr, "capgate: usage: URL too long\n");
        return CLI_EXIT_USAGE;
    }
    CURL *e = curl_easy_init();
    if (e == NULL) {
        snprintf(r->err, sizeof(r->err), "cannot initialise libcurl");
        fprintf(stderr, "capgate: internal_error: %s\n", r->err);
        return CLI_EXIT_SERVER;
    }
    /* The token goes in a header built here and wiped after use. */
    char auth[sizeof(c->token) + 32];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->token);
    h = curl_slist_append(h, auth);
    memset(auth, 0, sizeof(auth));
    h = curl_slist_append(h, "Accept: application/json, text/csv");
    if (body != NULL) {
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, cli_write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, (long)CLI_TIMEOUT_S);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)CLI_CONNECT_TIMEOUT_S);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode rc = curl_easy_perform(e);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
    } else {
        snprintf(r->err, sizeof(r->err), "%s",
                 b.too_big ? "answer too large" : curl_easy_strerror(rc));
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    r->body = b.p;
    r->len = b.n;
    if (rc != CURLE_OK) {
        fprintf(stderr, "capgate: connection_failed: %s (%.*s)\n", r->err, (int)ul, c->url);
        return CLI_EXIT_SERVER;
    }
    return CLI_EXIT_OK;
}

void cli_resp_free(cli_resp *r)
{
    free(r->body);
    r->body = NULL;
}

int cli_fail(const cli_resp *r)
{
    const char *code = "http_error", *msg = "";
    char fallback[64];
    cJSON *j = r->body != NULL ? cJSON_Parse(r->body) : NULL;
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
    const cJSON *jc = cJSON_GetObjectItemCaseSensitive(err, "code");
    const cJSON *jm = cJSON_GetObjectItemCaseSensitive(err, "message");
    if (cJSON_IsString(jc)) {
        code = jc->valuestring;
    }
    if (cJSON_IsString(jm)) {
        msg = jm->valuestring;
    } else {
        snprintf(fallback, sizeof(fallback), "HTTP %ld", r->status);
        msg = fallback;
    }
    fprintf(stderr, "capgate: %s: %s\n", code, msg);
    cJSON_Delete(j);
    if (r->status == 404) {
        return CLI_EXIT_NOT_FOUND;
    }
    if (r->status == 409) {
        return CLI_EXIT_CONFLICT;
    }
    return r->status >= 500 ? CLI_EXIT_SERVER : CLI_EXIT_REFUSED;
}

int cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("capgate: usage: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (see --help)\n", stderr);
    return CLI_EXIT_USAGE;
}
