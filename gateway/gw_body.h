/*
 * gw_body.h — request bodies of the proxied endpoints: which endpoint a path
 * is, the checks a body must pass before anything is estimated or reserved,
 * and the rewrite of the body the upstream receives.
 *
 * The gateway forwards the client's bytes untouched unless it must change
 * them (DESIGN.md): to fill in the completion bound a request does not name
 * (so the worst case reserved is what the upstream may produce), to lower it
 * (on_low_budget: clamp), or to ask for stream usage
 * (stream_options.include_usage). Members that are entirely absent are
 * spliced in right after the opening brace, leaving every other byte as sent;
 * anything else (a member present as null, an existing stream_options) is
 * done on the parsed tree and re-serialised.
 *
 * Pure functions; thread-safe.
 */
#ifndef GW_BODY_H
#define GW_BODY_H
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "cg_err.h"
#include "gw_estimate.h"

/* The endpoint (gw_endpoint) served at client path for method, or -1; *known is set
 * to 1 when the path exists with another method (405). */
int gw_endpoint_of(const char *method, const char *path, int *known);

/* Path appended to a provider's base_url ("/chat/completions", ...); NULL for GET /v1/models. */
const char *gw_endpoint_upstream_path(int ep);

/*
 * Check a parsed body for endpoint ep: a JSON object; "model" a string;
 * "stream" a boolean or null (embeddings: not true); the endpoint's input
 * member present ("messages" array; "prompt" / "input" present); no member
 * named twice at the top level (the upstream's parser might take the other
 * one than the estimate did). When strict (reservation: strict), a
 * /v1/responses body referring to content the gateway cannot see
 * ("previous_response_id", "conversation", "prompt") is refused, because its
 * prompt cannot be bounded. CG_ERR_OK, or CG_ERR_INVAL with a message naming
 * the field in msg.
 */
cg_err gw_body_check(int ep, const cJSON *j, int strict, char *msg, size_t msgcap);

/* Changes to make to a body. */
typedef struct gw_body_edit {
    int64_t set_max;       /* >= 0: every completion-bound member present (not null) gets this
                              value; if none is, the endpoint's fill member is set; -1: none */
    uint8_t include_usage; /* set stream_options.include_usage = true, keeping other options */
} gw_body_edit;

/*
 * The body to send upstream: body[0..len) with edit applied (a copy when
 * there is nothing to change). j is the parsed body (may be NULL: parsed
 * here). On success *out (malloc'd, NUL-terminated, owned by the caller) and
 * *out_len. CG_ERR_NOMEM, or CG_ERR_INVAL if body does not parse.
 */
cg_err gw_body_rewrite(int ep, const char *body, size_t len, const cJSON *j,
                       const gw_body_edit *edit, char **out, size_t *out_len);

#endif
