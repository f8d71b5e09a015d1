/*
 * gw_sse.c — incremental SSE scanner (see gw_sse.h for the contract).
 *
 * State machine over bytes: the current line accumulates in `line`; at each
 * line end a `data:` line is appended to `data`; a blank line ends the event,
 * which is then inspected (JSON parse of its data) and, in strip mode, either
 * kept for emission or cut out of `raw`. A CR followed by LF is one line end,
 * even when the two arrive in different feeds (`last_cr`).
 *
 * Fast path (chat / completions): most events are text deltas without usage.
 * An event is first walked in place by the allocation-free JSON walker of
 * gw_json.h (gw_sse_fast_count), which only sums the decoded string bytes under
 * choices[].delta / choices[].text; it gives up on a top-level "usage" member
 * (that event goes to cJSON, which reads the usage). The walker accepts a subset
 * of what cJSON accepts (strict JSON; here also no escaped keys) and gives the
 * same count there; anything else falls back to the cJSON inspection.
 */
#include "gw_sse.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "gw_json.h"

#define GW_SSE_BUF_MIN 256

void gw_sse_init(gw_sse *s, unsigned flags)
{
    memset(s, 0, sizeof(*s));
    s->responses = (flags & GW_SSE_RESPONSES) ? 1 : 0;
    /* A responses stream has no usage-only event to strip. */
    s->strip_usage = (flags & GW_SSE_STRIP_USAGE) && !s->responses ? 1 : 0;
}

void gw_sse_fini(gw_sse *s)
{
    free(s->line);
    free(s->data);
    free(s->raw);
    memset(s, 0, sizeof(*s));
}

/* Append to a bounded growable buffer; CG_ERR_TOOBIG past GW_SSE_EVENT_MAX. */
static cg_err gw_sse_buf_add(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
    if (n > GW_SSE_EVENT_MAX || *len > GW_SSE_EVENT_MAX - n) {
        return CG_ERR_TOOBIG;
    }
    if (*len + n > *cap) {
        size_t ncap = *cap ? *cap : GW_SSE_BUF_MIN;
        while (ncap < *len + n) {
            ncap *= 2;
        }
        char *nb = realloc(*buf, ncap);
        if (nb == NULL) {
            return CG_ERR_NOMEM;
        }
        *buf = nb;
        *cap = ncap;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    return CG_ERR_OK;
}

/* Emit complete events held in raw and keep only the current one. */
static void gw_sse_flush(gw_sse *s, gw_sse_emit_cb emit, void *ud)
{
    if (s->ev_start == 0) {
        return;
    }
    emit(ud, s->raw, s->ev_start);
    memmove(s->raw, s->raw + s->ev_start, s->raw_len - s->ev_start);
    s->raw_len -= s->ev_start;
    s->ev_start = 0;
}

/*
 * The current event cannot be held or parsed (too long, or no memory): emit
 * everything held and pass the rest of this event straight through.
 */
static void gw_sse_skip_event(gw_sse *s, gw_sse_emit_cb emit, void *ud)
{
    if (s->strip_usage && s->raw_len > 0) {
        emit(ud, s->raw, s->raw_len);
    }
    s->raw_len = 0;
    s->ev_start = 0;
    s->line_len = 0;
    s->data_len = 0;
    s->has_data = 0;
    s->skipping = 1;
}

/* Strip mode: hold event bytes (or emit them directly while skipping). */
static cg_err gw_sse_raw_add(gw_sse *s, const char *p, size_t n, gw_sse_emit_cb emit, void *ud)
{
    if (!s->strip_usage) {
        return CG_ERR_OK;
    }
    if (s->skipping) {
        emit(ud, p, n);
        return CG_ERR_OK;
    }
    if (s->raw_len - s->ev_start + n > GW_SSE_EVENT_MAX) {
        gw_sse_skip_event(s, emit, ud);
        emit(ud, p, n);
        return CG_ERR_OK;
    }
    cg_err err = gw_sse_buf_add(&s->raw, &s->raw_len, &s->raw_cap, p, n);
    if (err != CG_ERR_OK) {
        gw_sse_skip_event(s, emit, ud);
        emit(ud, p, n);
    }
    return err == CG_ERR_TOOBIG ? CG_ERR_OK : err;
}

/* UTF-8 bytes of every string under node. */
static uint64_t gw_sse_string_bytes(const cJSON *node)
{
    if (cJSON_IsString(node)) {
        return strlen(node->valuestring);
    }
    uint64_t sum = 0;
    const cJSON *child;
    if (cJSON_IsArray(node) || cJSON_IsObject(node)) {
        cJSON_ArrayForEach(child, node)
        {
            sum += gw_sse_string_bytes(child);
        }
    }
    return sum;
}

/* A /v1/responses event: usage from response.usage, text from "*.delta" events. */
static void gw_sse_inspect_responses(gw_sse *s, const cJSON *j)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    const cJSON *resp = cJSON_GetObjectItemCaseSensitive(j, "response");
    if (gw_usage_from_json(cJSON_GetObjectItemCaseSensitive(resp, "usage"), &s->usage)) {
        s->have_usage = 1;
    }
    const cJSON *delta = cJSON_GetObjectItemCaseSensitive(j, "delta");
    size_t tn = cJSON_IsString(type) ? strlen(type->valuestring) : 0;
    if (cJSON_IsString(delta) && tn >= 6 && strcmp(type->valuestring + tn - 6, ".delta") == 0) {
        s->content_bytes += strlen(delta->valuestring);
    }
}

/* ---- fast path: allocation-free walk of a chat / completions event (gw_json.h) ---- */

/* One element of choices[]: the bytes of its first "delta" and first "text". */
static int gw_jw_choice(gw_jw *w, uint64_t *bytes)
{
    if (w->p >= w->end || *w->p != '{') {
        return -1; /* not an object: cJSON decides */
    }
    w->p++;
    gw_jw_ws(w);
    if (w->p < w->end && *w->p == '}') {
        w->p++;
        return 0;
    }
    int seen_delta = 0, seen_text = 0;
    for (;;) {
        const char *k;
        size_t kn;
        if (gw_jw_key(w, &k, &kn) != 0) {
            return -1;
        }
        uint64_t *count = NULL;
        if (!seen_delta && gw_jw_is(k, kn, "delta")) {
            seen_delta = 1;
            count = bytes;
        } else if (!seen_text && gw_jw_is(k, kn, "text")) {
            seen_text = 1;
            count = bytes;
        }
        if (gw_jw_value(w, 2, count) != 0) {
            return -1;
        }
        int more = gw_jw_next(w, '}');
        if (more <= 0) {
            return more;
        }
    }
}

/*
 * Content bytes of an event's data without usage (see the file header): 0 and
 * *bytes set when the walk succeeded, -1 when cJSON must decide.
 */
static int gw_sse_fast_count(const char *data, size_t len, uint64_t *bytes)
{
    gw_jw w = {data, data + len};
    uint64_t sum = 0;
    int seen_choices = 0;
    int open = gw_jw_object_open(&w);
    if (open <= 0) {
        *bytes = 0;
        return open;
    }
    for (;;) {
        const char *k;
        size_t kn;
        if (gw_jw_key(&w, &k, &kn) != 0) {
            return -1;
        }
        if (gw_jw_is(k, kn, "usage")) {
            return -1; /* the usage event: cJSON reads it */
        }
        if (!seen_choices && gw_jw_is(k, kn, "choices")) {
            seen_choices = 1;
            if (w.p < w.end && *w.p == '[') {
                w.p++;
                gw_jw_ws(&w);
                int more = 1;
                if (w.p < w.end && *w.p == ']') {
                    w.p++;
                    more = 0;
                }
                while (more == 1) {
                    if (gw_jw_choice(&w, &sum) != 0) {
                        return -1;
                    }
                    more = gw_jw_next(&w, ']');
                }
                if (more < 0) {
                    return -1;
                }
            } else if (gw_jw_value(&w, 1, NULL) != 0) {
                return -1;
            }
        } else if (gw_jw_value(&w, 1, NULL) != 0) {
            return -1;
        }
        int more = gw_jw_next(&w, '}');
        if (more < 0) {
            return -1;
        }
        if (more == 0) {
            *bytes = sum; /* trailing bytes are ignored, as cJSON_ParseWithLength does */
            return 0;
        }
    }
}

/* Inspect the data of a complete event; returns 1 if the event is to be stripped. */
static int gw_sse_inspect(gw_sse *s)
{
    if (s->data_len == 6 && memcmp(s->data, "[DONE]", 6) == 0) {
        s->saw_done = 1;
        return 0;
    }
    if (!s->responses) {
        uint64_t bytes = 0;
        if (gw_sse_fast_count(s->data, s->data_len, &bytes) == 0) {
            s->content_bytes += bytes;
            return 0;
        }
    }
    cJSON *j = cJSON_ParseWithLength(s->data, s->data_len);
    if (j == NULL) {
        return 0;
    }
    if (s->responses) {
        gw_sse_inspect_responses(s, j);
        cJSON_Delete(j);
        return 0;
    }
    int drop = 0;
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(j, "usage");
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(j, "choices");
    if (gw_usage_from_json(usage, &s->usage)) {
        s->have_usage = 1;
        int no_choices = choices == NULL || cJSON_IsNull(choices) ||
                         (cJSON_IsArray(choices) && cJSON_GetArraySize(choices) == 0);
        drop = s->strip_usage && no_choices;
    }
    if (!drop && cJSON_IsArray(choices)) {
        const cJSON *c;
        cJSON_ArrayForEach(c, choices)
        {
            s->content_bytes += gw_sse_string_bytes(cJSON_GetObjectItemCaseSensitive(c, "delta"));
            s->content_bytes += gw_sse_string_bytes(cJSON_GetObjectItemCaseSensitive(c, "text"));
        }
    }
    cJSON_Delete(j);
    return drop;
}

static void gw_sse_end_event(gw_sse *s)
{
    int drop = 0;
    if (!s->skipping && s->has_data) {
        drop = gw_sse_inspect(s);
    }
    s->events++;
    if (s->strip_usage) {
        if (drop) {
            s->raw_len = s->ev_start;
        } else {
            s->ev_start = s->raw_len;
        }
    }
    s->dropped_prev = (uint8_t)drop;
    s->data_len = 0;
    s->has_data = 0;
    s->skipping = 0;
}

/* A line ended (terminator already consumed). */
static void gw_sse_end_line(gw_sse *s, gw_sse_emit_cb emit, void *ud)
{
    if (s->line_len == 0) {
        gw_sse_end_event(s);
        return;
    }
    if (!s->skipping && s->line_len >= 5 && memcmp(s->line, "data:", 5) == 0) {
        const char *v = s->line + 5;
        size_t vn = s->line_len - 5;
        if (vn > 0 && v[0] == ' ') {
            v++;
            vn--;
        }
        cg_err err = CG_ERR_OK;
        if (s->has_data) {
            err = gw_sse_buf_add(&s->data, &s->data_len, &s->data_cap, "\n", 1);
        }
        if (err == CG_ERR_OK) {
            err = gw_sse_buf_add(&s->data, &s->data_len, &s->data_cap, v, vn);
        }
        if (err != CG_ERR_OK) {
            gw_sse_skip_event(s, emit, ud);
        } else {
            s->has_data = 1;
        }
    }
    s->line_len = 0;
}

/* The LF of a CRLF pair: belongs with the CR (and with its event's fate). */
static cg_err gw_sse_crlf_tail(gw_sse *s, gw_sse_emit_cb emit, void *ud)
{
    if (!s->strip_usage || s->skipping) {
        return gw_sse_raw_add(s, "\n", 1, emit, ud);
    }
    if (s->raw_len == s->ev_start && s->line_len == 0 && s->data_len == 0) {
        /* The CR ended an event: the LF goes wherever that event went. */
        if (s->dropped_prev) {
            return CG_ERR_OK;
        }
        cg_err err = gw_sse_raw_add(s, "\n", 1, emit, ud);
        s->ev_start = s->raw_len;
        return err;
    }
    return gw_sse_raw_add(s, "\n", 1, emit, ud);
}

cg_err gw_sse_feed(gw_sse *s, const char *p, size_t n, gw_sse_emit_cb emit, void *ud)
{
    cg_err first = CG_ERR_OK;
    if (!s->strip_usage && n > 0) {
        emit(ud, p, n);
    }
    size_t i = 0;
    while (i < n) {
        cg_err err = CG_ERR_OK;
        if (s->last_cr && p[i] == '\n') {
            s->last_cr = 0;
            err = gw_sse_crlf_tail(s, emit, ud);
            i++;
        } else if (p[i] == '\r' || p[i] == '\n') {
            s->last_cr = p[i] == '\r';
            err = gw_sse_raw_add(s, p + i, 1, emit, ud);
            gw_sse_end_line(s, emit, ud);
            i++;
        } else {
            s->last_cr = 0;
            size_t j = i;
            while (j < n && p[j] != '\r' && p[j] != '\n') {
                j++;
            }
            err = gw_sse_raw_add(s, p + i, j - i, emit, ud);
            if (!s->skipping) {
                cg_err lerr = gw_sse_buf_add(&s->line, &s->line_len, &s->line_cap, p + i, j - i);
                if (lerr != CG_ERR_OK) {
                    gw_sse_skip_event(s, emit, ud);
                    err = lerr == CG_ERR_TOOBIG ? CG_ERR_OK : lerr;
                }
            }
            i = j;
        }
        if (first == CG_ERR_OK) {
            first = err;
        }
    }
    if (s->strip_usage) {
        gw_sse_flush(s, emit, ud);
    }
    return first;
}

void gw_sse_finish(gw_sse *s, gw_sse_emit_cb emit, void *ud)
{
    if (s->line_len > 0) {
        gw_sse_end_line(s, emit, ud);
    }
    if (s->has_data || (s->strip_usage && s->raw_len > s->ev_start)) {
        gw_sse_end_event(s);
    }
    s->last_cr = 0;
    if (s->strip_usage) {
        gw_sse_flush(s, emit, ud);
        if (s->raw_len > 0) {
            emit(ud, s->raw, s->raw_len);
            s->raw_len = 0;
        }
    }
}
