/*
 * gw_estimate.h — worst-case and actual usage of a request to one of the
 * proxied endpoints (chat completions, completions, embeddings, responses).
 *
 * Before a request goes upstream the gateway reserves its worst case on the
 * ledger (SPEC §3). The worst case must never be below what the upstream can
 * bill, or concurrent requests could pass a cap together. The bound is, with
 * A = prompt_message_tokens (the per-message allowance) and P =
 * prompt_part_tokens (the per-media-part allowance):
 *
 *   chat        prompt = Σ over messages of (UTF-8 bytes of every string value
 *               in the message (content strings, text parts, name, tool_calls
 *               arguments, ...) + P per non-text part (image_url, input_audio,
 *               file) + A) + for each of "tools", "functions",
 *               "response_format" present: its serialized byte length + A
 *   completions prompt = Σ over prompts of (bytes of a string prompt, or 1 per
 *               token id of a token-array prompt, + bytes of "suffix" + A)
 *   embeddings  prompt = Σ over inputs of (bytes of a string, or 1 per token id, + A)
 *   responses   prompt = bytes of "instructions" + A, + for a string "input"
 *               its bytes + A, for an array of items Σ (bytes of every string
 *               value of the item + P per media part + A), + for each of
 *               "tools", "text" present: its serialized length + A
 *
 *   completion = max_tokens × choices, where max_tokens is the bound the
 *               request names (chat: the larger of max_completion_tokens and
 *               max_tokens; completions: max_tokens; responses:
 *               max_output_tokens) or else the model's max_output_tokens, and
 *               choices is n (chat), max(n, best_of) × prompts (completions),
 *               1 (responses) or 0 (embeddings: no completion)
 *   cost       = prompt × max(prompt rate, cached rate) + completion × completion
 *                rate (each rounded up) + routing fee
 *
 * Why it never underestimates: the tokenizers of OpenAI-compatible models
 * (byte-level BPE) split text into tokens of at least one byte each, so a
 * string of B UTF-8 bytes becomes at most B tokens; a token-id prompt is
 * exactly its ids. Every piece of text the model sees is a string value of
 * the request — counted byte for byte — or formatting the provider adds
 * around each message (role markers, separators, a handful of tokens) or
 * around tool schemas, covered by the per-message allowance; media parts are
 * billed per part and bounded by the configured per-part allowance. Strings
 * are measured after JSON unescaping ("\u00e9" is the 2 bytes the model
 * sees, not 6). The completion cannot exceed the max tokens the request sends
 * upstream (the gateway fills one in when the request names none); every
 * choice and every prompt of a batch has its own completion. Rates round up
 * (cg_money). What the model sees but the gateway cannot (a stored
 * conversation behind /v1/responses' previous_response_id) is refused by the
 * caller in strict mode (gw_body_check).
 *
 * cJSON keeps strings NUL-terminated, so text after an escaped NUL ("\u0000")
 * would go uncounted: callers refuse such bodies first (gw_body_has_nul_escape).
 *
 * Pure functions over a parsed cJSON body; thread-safe.
 */
#ifndef GW_ESTIMATE_H
#define GW_ESTIMATE_H
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "cg_config.h"
#include "cg_err.h"

/* "n" (choices per request) accepted range; OpenAI allows 1..128. */
#define GW_ESTIMATE_N_MAX 128
/* Largest max_tokens accepted (2^53: exact in a JSON double). */
#define GW_ESTIMATE_MAX_TOKENS_MAX 9007199254740992LL

typedef struct gw_usage {
    int64_t prompt_tokens;     /* >= 0 */
    int64_t completion_tokens; /* >= 0 */
    int64_t cached_tokens;     /* prompt tokens served from cache, 0..prompt_tokens */
} gw_usage;

/* The proxied endpoints, and GET /v1/models (no body, no reservation). */
typedef enum gw_endpoint {
    GW_EP_CHAT = 0,        /* POST /v1/chat/completions */
    GW_EP_COMPLETIONS = 1, /* POST /v1/completions */
    GW_EP_EMBEDDINGS = 2,  /* POST /v1/embeddings */
    GW_EP_RESPONSES = 3,   /* POST /v1/responses */
    GW_EP_MODELS = 4,      /* GET /v1/models */
    GW_EP_COUNT_
} gw_endpoint;

/*
 * The body members that bound the completion of endpoint ep, in the order
 * they are read (chat: max_completion_tokens, max_tokens; completions:
 * max_tokens; responses: max_output_tokens; others: none). *out points to a
 * static array; returns its length.
 */
size_t gw_endpoint_max_fields(int ep, const char *const **out);
/* The member filled in when a request names no bound ("max_tokens" /
 * "max_output_tokens"); NULL when the endpoint has no completion. */
const char *gw_endpoint_fill_field(int ep);

typedef struct gw_estimate {
    int64_t prompt_tokens;     /* upper bound of the prompt */
    int64_t completion_tokens; /* upper bound of the completion: max_tokens × choices */
    int64_t cost_nusd;         /* worst-case cost incl. the routing fee */
    int64_t max_tokens;        /* per-choice completion bound in effect */
    int64_t named_max;         /* the bound the request names; -1 if none */
    int64_t choices;           /* completions the request may produce (0: embeddings) */
} gw_estimate;

/*
 * Prompt bound of body (a JSON object) for endpoint ep. The endpoint's input
 * member (messages / prompt / input) must have an accepted shape, else
 * CG_ERR_INVAL with a message naming the field in msg.
 */
cg_err gw_estimate_prompt(const cg_config *cfg, int ep, const cJSON *body, int64_t *out, char *msg,
                          size_t msgcap);

/*
 * Completion bound of body for ep (see the file comment): fills max_tokens,
 * named_max, choices and completion_tokens of *out. A bound or count that is
 * not a non-negative integer (n / best_of outside 1..GW_ESTIMATE_N_MAX) gives
 * CG_ERR_INVAL with a message naming the field.
 */
cg_err gw_estimate_completion(const cg_model_cfg *m, int ep, const cJSON *body, gw_estimate *out,
                              char *msg, size_t msgcap);

/* Both bounds and the worst-case cost. Errors as above; out written only on success. */
cg_err gw_estimate_request(const cg_config *cfg, const cg_model_cfg *m, int ep, const cJSON *body,
                           gw_estimate *out, char *msg, size_t msgcap);

/* Set the per-choice bound to max_tokens (>= 0) and recompute completion_tokens and cost. */
void gw_estimate_set_max(const cg_config *cfg, const cg_model_cfg *m, gw_estimate *e,
                         int64_t max_tokens);

/* prompt_tokens + completion_tokens, saturated at INT64_MAX. */
int64_t gw_estimate_tokens(const gw_estimate *e);

/* Cost of prompt tokens at the model's worst prompt rate (max of prompt and cached). */
int64_t gw_estimate_prompt_cost(const cg_model_cfg *m, int64_t prompt_tokens);

/*
 * Cost of actual usage: uncached prompt tokens at the prompt rate, cached ones at
 * the cached rate (the prompt rate when the model has none), completion tokens at
 * the completion rate, plus the routing fee. Saturates at INT64_MAX.
 */
int64_t gw_cost_of(const cg_config *cfg, const cg_model_cfg *m, const gw_usage *u);

/*
 * 1 if the raw JSON text contains the escape \u0000, at which cJSON
 * would silently truncate a string; the caller answers 400 instead of estimating.
 * May report an escaped backslash followed by "u0000" too (a harmless refusal).
 */
int gw_body_has_nul_escape(const char *body, size_t len);

/*
 * Usage from an OpenAI "usage" object: {prompt_tokens, completion_tokens,
 * prompt_tokens_details: {cached_tokens}} (chat, completions, embeddings) or
 * {input_tokens, output_tokens, input_tokens_details: {cached_tokens}}
 * (responses; used when prompt_tokens is absent). Missing or invalid numbers
 * count 0; cached_tokens is clamped to prompt_tokens. Returns 0 if usage is
 * not an object.
 */
int gw_usage_from_json(const cJSON *usage, gw_usage *out);
/*
 * The same for a whole response body: exactly
 * gw_usage_from_json(cJSON_GetObjectItemCaseSensitive(cJSON_ParseWithLength(body, len), "usage")),
 * but only the usage member is parsed with cJSON when the body is strict JSON
 * (gw_jw walker); anything else takes the full parse. body may be NULL if len is 0.
 */
int gw_usage_from_body(const char *body, size_t len, gw_usage *out);

/*
 * Pricing overrides (issue 5; docs/contracts.md "Pricing"). Each worker thread
 * has its own immutable snapshot of the model table: cfg's models with the
 * admin overrides applied. gw_pricing_install (on that thread's loop) builds a
 * new snapshot and makes it current; snapshots replaced are kept until
 * gw_pricing_thread_fini, so a request holding a pointer into one (its
 * reservation made at the old price) stays valid. Without a snapshot, the
 * config is the table.
 */
/* The thread's entry for model name (NULL if not configured). */
const cg_model_cfg *gw_pricing_model(const cg_config *cfg, const char *name);
/* cfg's models with every override whose model is configured applied (input → prompt rate,
 * output → completion rate; a cached-prompt rate above the new prompt rate is lowered to
 * it); made the calling thread's current snapshot. CG_ERR_NOMEM leaves the current one. */
typedef struct proto_pricing proto_pricing;
cg_err gw_pricing_install(const cg_config *cfg, const proto_pricing *items, uint32_t n);
/* Free the calling thread's snapshots (at the end of the worker thread). */
void gw_pricing_thread_fini(void);
/* Apply one override to a model entry (shared with the admin API's listing). */
void gw_pricing_apply(cg_model_cfg *m, int64_t input_nusd_per_mtok, int64_t output_nusd_per_mtok);

#endif
