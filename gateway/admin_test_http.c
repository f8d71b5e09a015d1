/*
 * admin_test_http.c — admin_api_test's blocking HTTP client and JSON lookups
 * (contract in admin_test.h). One connection per request ("Connection:
 * close"), a 5 s receive timeout, answers up to T_RESP_MAX bytes.
 */
#include "admin_test.h"
#include "gw_test_port.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

int t_port;

int t_free_port(void)
{
    return gw_test_free_port();
}

static int t_io(int fd, const char *req, size_t len, char *buf, size_t cap)
{
    size_t got = 0;
    struct timeval tv = {.tv_sec = 5};

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (write(fd, req, len) != (ssize_t)len) {
        return -1;
    }
    for (;;) {
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
        buf[got] = '\0';
        const char *end = strstr(buf, "\r\n\r\n");
        const char *cl = strcasestr(buf, "\r\nContent-Length:");
        if (end != NULL && cl != NULL && cl < end &&
            got >= (size_t)(end + 4 - buf) + (size_t)strtoul(cl + 17, NULL, 10)) {
            break;
        }
    }
    buf[got] = '\0';
    return (int)got;
}

void t_http(t_resp *r, const char *method, const char *path, const char *auth, const char *body)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)t_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char req[8192], hdr[256] = "";
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    size_t blen = body ? strlen(body) : 0;

    memset(r, 0, offsetof(t_resp, raw));
    r->raw[0] = '\0';
    if (auth != NULL) {
        snprintf(hdr, sizeof(hdr), "Authorization: %s\r\n", auth);
    }
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     method, path, hdr, blen, body ? body : "");
    if (fd < 0 || n < 0 || (size_t)n >= sizeof(req) ||
        connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        t_io(fd, req, (size_t)n, r->raw, sizeof(r->raw)) <= 0) {
        if (fd >= 0) {
            close(fd);
        }
        return;
    }
    close(fd);
    if (strncmp(r->raw, "HTTP/1.1 ", 9) == 0) {
        r->status = (int)strtol(r->raw + 9, NULL, 10);
    }
    const char *b = strstr(r->raw, "\r\n\r\n");
    if (b != NULL) {
        r->json = cJSON_Parse(b + 4);
    }
}

void t_done(t_resp *r)
{
    cJSON_Delete(r->json);
    r->json = NULL;
}

const cJSON *t_get(const cJSON *o, const char *path)
{
    char buf[128];
    const cJSON *v = o;
    char *save = NULL;

    snprintf(buf, sizeof(buf), "%s", path);
    for (char *tok = strtok_r(buf, ".", &save); tok != NULL && v != NULL;
         tok = strtok_r(NULL, ".", &save)) {
        if (tok[0] >= '0' && tok[0] <= '9') {
            v = cJSON_GetArrayItem(v, (int)strtol(tok, NULL, 10));
        } else {
            v = cJSON_GetObjectItemCaseSensitive(v, tok);
        }
    }
    return v;
}

const char *t_str(const cJSON *o, const char *path)
{
    const cJSON *v = t_get(o, path);
    return v != NULL && cJSON_IsString(v) ? v->valuestring : NULL;
}

double t_num(const cJSON *o, const char *path)
{
    const cJSON *v = t_get(o, path);
    return v != NULL && cJSON_IsNumber(v) ? v->valuedouble : -1;
}

int t_is_error(t_resp *r, int status, const char *code, const char *msg_prefix)
{
    const char *c = t_str(r->json, "error.code"), *m = t_str(r->json, "error.message");
    int ok = r->status == status && c != NULL && strcmp(c, code) == 0 &&
             (msg_prefix == NULL || (m != NULL && strncmp(m, msg_prefix, strlen(msg_prefix)) == 0));
    if (!ok) {
        fprintf(stderr, "  want %d %s \"%s\", got: %s\n", status, code,
                msg_prefix ? msg_prefix : "", r->raw);
    }
    t_done(r);
    return ok;
}

int t_status(const t_resp *r, int status)
{
    if (r->status != status) {
        fprintf(stderr, "  want %d, got: %s\n", status, r->raw);
        return 0;
    }
    return 1;
}
