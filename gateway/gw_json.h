/*
 * gw_json.h — small JSON helpers on cJSON shared by the gateway's admin API
 * and proxy: strict field checks, money as number or string, limits in and
 * out, RFC 3339 times, OpenAI-shaped error bodies; and an allocation-free
 * walker (gw_jw_*) for hot paths that need only a few bytes of a document.
 *
 * Money is never a double inside capgate: numbers are converted through
 * cg_money_from_double (exact for decimals of up to 15 significant digits),
 * strings through cg_money_parse; both are printed back as decimal strings.
 * Counts (tokens, requests) are JSON integers in 0..GW_JSON_INT_MAX, the
 * range a double holds exactly.
 *
 * Validation functions write a message naming the field, in the form
 * "limits[0].window: must be one of lifetime, day, week, month", into err
 * (NUL-terminated, truncated to errcap) and return CG_ERR_INVAL; the caller
 * answers 400 invalid_request_error with it.
 *
 * Pure functions on caller-owned data; thread-safe. Returned cJSON trees and
 * strings are owned by the caller (cJSON_Delete / cJSON_free).
 */
#ifndef GW_JSON_H
#define GW_JSON_H
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "cg_err.h"
#include "proto.h"

#define GW_JSON_INT_MAX 9007199254740992LL /* 2^53: largest integer a double holds exactly */
#define GW_JSON_FIELDS_MAX 32              /* allowed names per gw_json_check_fields call */
#define GW_JSON_PATH_MAX 96                /* bytes of a field path ("limits[15].warn_at[7]") */
#define GW_JSON_ERR_MAX 256                /* suggested size of an err buffer */

/* gw_json_limit_parse / gw_json_limits_parse flags. */
#define GW_JSON_LIMIT_ALLOW_SLIDING 1u /* accept "<N>s|m|h|d" windows (without: refused) */
#define GW_JSON_LIMIT_NATURAL_IDS 2u   /* ids = proto_limit_natural_id (customer limits) */

/*
 * Parse a request body. Returns the tree (caller frees with cJSON_Delete) or
 * NULL if the body is not exactly one JSON value (trailing bytes refused).
 */
cJSON *gw_json_parse(const char *body, size_t len);

/*
 * Check that obj (a JSON object) has only the fields named in allowed
 * (NULL-terminated, at most GW_JSON_FIELDS_MAX) and none twice. path names the
 * object in messages ("" for the top level, "limits[0]" for a nested one).
 * CG_ERR_OK, or CG_ERR_INVAL with "<path>.<field>: unknown field" /
 * "...: duplicate field" in err.
 */
cg_err gw_json_check_fields(const cJSON *obj, const char *path, const char *const *allowed,
                            char *err, size_t errcap);

/* "<path>.<field>" or "<field>" when path is empty; truncated to cap. */
void gw_json_path(char *buf, size_t cap, const char *path, const char *field);
/* "<path>[<i>]". */
void gw_json_path_index(char *buf, size_t cap, const char *path, uint32_t i);

/*
 * A non-negative USD amount given as a JSON number (0.01) or a decimal string
 * ("0.01"), into nano-USD. CG_ERR_INVAL for another type, a negative value or
 * bad syntax; CG_ERR_OVERFLOW beyond int64. Writes *out only on success.
 */
cg_err gw_json_get_money(const cJSON *v, int64_t *out_nusd);
/* An integral JSON number in 0..max (max <= GW_JSON_INT_MAX). CG_ERR_INVAL otherwise. */
cg_err gw_json_get_int(const cJSON *v, int64_t max, int64_t *out);
/* A JSON string of at most maxlen bytes copied into out (cap > maxlen). CG_ERR_INVAL otherwise. */
cg_err gw_json_get_string(const cJSON *v, size_t maxlen, char *out, size_t cap);

/*
 * One limit object {"metric","window","max","action","warn_at"} (SPEC §3):
 * metric and window required; max absent/null = 0 (unlimited), USD for cost,
 * an integer otherwise; action "block" (default) or "warn"; warn_at up to
 * PROTO_WARN_MAX fractions in (0, 1], strictly ascending, stored as basis
 * points, and refused on sliding windows ("once per period" has no meaning
 * there). out->id is set to 0 (the caller assigns ids). path names the object.
 */
cg_err gw_json_limit_parse(const cJSON *v, const char *path, unsigned flags, proto_limit *out,
                           char *err, size_t errcap);
/*
 * An array of up to PROTO_LIMITS_MAX limits (absent/null = none) at field
 * path. Two limits with the same (metric, window) are refused (ids and
 * counters follow that pair). Limit ids are assigned 1..n in array order, or
 * proto_limit_natural_id with GW_JSON_LIMIT_NATURAL_IDS. out has
 * PROTO_LIMITS_MAX entries; *out_n written on success.
 */
cg_err gw_json_limits_parse(const cJSON *arr, const char *path, unsigned flags, proto_limit *out,
                            uint8_t *out_n, char *err, size_t errcap);

/*
 * Assign ids to a replacement limit list nl (n entries, ids ignored) of a
 * scope whose current list is old (old_n entries): a limit with the same
 * (metric, window) as a current one keeps that id, so its counter survives;
 * every other one gets proto_limit_natural_id(metric, window) — an id that no
 * other (metric, window) can ever have, so a counter of a removed limit is
 * never inherited by a different kind of limit — or, should that id be taken
 * in nl already, one above the largest id in use. Ids in nl end up distinct
 * and non-zero. Pure.
 */
void gw_json_limits_keep_ids(const proto_limit *old, uint8_t old_n, proto_limit *nl, uint8_t n);

/*
 * A customer's effective limits (proto_customer): the defaults in order, each
 * replaced by the override of the same (metric, window), then the overrides
 * that match no default. Writes the first PROTO_LIMITS_MAX into out and, in
 * from_override[i], 1 when out[i] is an override (either may be NULL to only
 * count). Returns the total number, which may exceed PROTO_LIMITS_MAX. Pure.
 */
uint32_t gw_json_limits_merge(const proto_limit *defaults, uint8_t dn, const proto_limit *over,
                              uint8_t on, proto_limit *out, uint8_t *from_override);

/* USD string with at least 2 decimals ("200.00", "0.0001"). NULL on out-of-memory. */
cJSON *gw_json_money(int64_t nusd);
/* An amount of metric: money string for cost, integer number for tokens/requests. */
cJSON *gw_json_amount(int metric, int64_t value);
/* RFC 3339 UTC string, or JSON null when t_ms is 0 or INT64_MAX ("never"). */
cJSON *gw_json_time(int64_t t_ms);

/*
 * A limit as the admin API prints it: {"id","metric","window","max","action",
 * "warn_at"} plus, when st is non-NULL, "used", "reserved" and "resets_at"
 * (st->period_end_ms; null for never). NULL on out-of-memory.
 */
cJSON *gw_json_limit(const proto_limit *l, const proto_limit_state *st);

/*
 * The `limit` object of a 402/429 error (SPEC §4): {"scope","scope_id",
 * "metric","window","max","used","resets_at"}. NULL on out-of-memory.
 */
cJSON *gw_json_refusal(int scope, const char *scope_id, const proto_refusal *r);

/*
 * Serialise root without whitespace. Returns a string to free with
 * cJSON_free and its length in *len, or NULL on out-of-memory.
 */
char *gw_json_print(const cJSON *root, size_t *len);

/*
 * An OpenAI-shaped error body {"error":{"message","type","code","param"[,"limit"]}}.
 * param NULL prints null. limit (may be NULL) is consumed, also on failure.
 * Returns a string to free with cJSON_free and its length, or NULL on
 * out-of-memory.
 */
char *gw_json_error_body(const char *type, const char *code, const char *message, const char *param,
                         cJSON *limit, size_t *len);

/*
 * Allocation-free JSON walker for hot paths that only need a few bytes of a
 * document (the SSE scanner's text count, the usage member of a response). It
 * accepts strict JSON only, a subset of what cJSON_ParseWithLength accepts:
 * whitespace is space/tab/CR/LF, numbers are RFC 8259 numbers, no \u0000 or
 * surrogate escapes, nesting at most GW_JSON_WALK_DEPTH. Every function returns
 * 0 on success and -1 where it gives up: the caller then falls back to cJSON,
 * so a -1 is never an error by itself. w->p moves past what was read.
 */
#define GW_JSON_WALK_DEPTH 32
typedef struct gw_jw {
    const char *p, *end;
} gw_jw;
/* Skip whitespace. */
void gw_jw_ws(gw_jw *w);
/* The string at w->p ('"'): adds its decoded UTF-8 byte count to *bytes (if not
 * NULL); key/key_len (if not NULL) get its raw bytes, and then an escape gives -1. */
int gw_jw_string(gw_jw *w, uint64_t *bytes, const char **key, size_t *key_len);
/* One value at w->p (after whitespace), validated; the bytes of every string in
 * it (not object keys) are added to *bytes if not NULL. depth: of the value. */
int gw_jw_value(gw_jw *w, int depth, uint64_t *bytes);
/* An object member's "key" : (w->p at the key, after whitespace); w->p then at the value. */
int gw_jw_key(gw_jw *w, const char **key, size_t *key_len);
/* The start of a top-level object at w->p (whitespace allowed): -1 not an object,
 * 0 an empty one (w->p after it), 1 members follow (w->p at the first key). */
int gw_jw_object_open(gw_jw *w);
/* After a member / element: 1 another follows (w->p at it), 0 closed by close, -1 bad. */
int gw_jw_next(gw_jw *w, char close);
/* The raw key equals name. */
int gw_jw_is(const char *k, size_t kn, const char *name);

#endif
