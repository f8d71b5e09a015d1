/*
 * gw_estimate.h — worst-case and actual usage of a chat completion request.
 *
 * Before a request goes upstream the gateway reserves its worst case on the
 * ledger (SPEC §3). The worst case must never be below what the upstream can
 * bill, or concurrent requests could pass a cap together. The bound is:
 *
 *   prompt     = Σ over messages of ( UTF-8 bytes of every string value in the
 *                message (content strings, text parts, name, tool_calls
 *                arguments, ...) + prompt_part_tokens per non-text part
 *                (image_url / input_audio / file) + prompt_message_tokens )
 *              + for each of "tools", "functions", "response_format" present:
 *                its serialized byte length + prompt_message_tokens
 *   completion = max(max_completion_tokens, max_tokens) when given, else the
 *                model's max_output_tokens; times "n" (choices, default 1)
 *   cost       = prompt × max(prompt rate, cached rate) + completion × completion
 *                rate (each rounded up) + routing fee
 *
 * Why it never underestimates: the tokenizers of OpenAI-compatible models
 * (byte-level BPE) split text into tokens of at least one byte each, so a
 * string of B UTF-8 bytes becomes at most B tokens. Every piece of text the
 * model sees is a string value of the request — counted byte for byte — or
 * formatting the provider adds around each message (role markers, separators,
 * a handful of tokens) or around tool schemas, covered by the per-message
 * allowance; media parts are billed per part and bounded by the configured
 * per-part allowance. Strings are measured after JSON unescaping ("\u00e9" is
 * the 2 bytes the model sees, not 6). The completion cannot exceed the max
 * tokens the request sends upstream; without one, the configured model maximum
 * is the operator's statement of that bound. Rates round up (cg_money).
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

typedef struct gw_estimate {
    int64_t prompt_tokens;     /* upper bound of the prompt */
    int64_t completion_tokens; /* upper bound of the completion (all choices) */
    int64_t cost_nusd;         /* worst-case cost incl. the routing fee */
} gw_estimate;

/*
 * Prompt bound of body (a JSON object). body["messages"] must be an array, else
 * CG_ERR_INVAL with a message naming the field in msg. Never fails otherwise.
 */
cg_err gw_estimate_prompt(const cg_config *cfg, const cJSON *body, int64_t *out, char *msg,
                          size_t msgcap);

/*
 * Completion bound: max_completion_tokens / max_tokens (the larger if both;
 * null = absent) or m->max_output_tokens, times n. A value that is not a
 * non-negative integer (or n outside 1..GW_ESTIMATE_N_MAX) gives CG_ERR_INVAL
 * with a message naming the field.
 */
cg_err gw_estimate_completion(const cg_model_cfg *m, const cJSON *body, int64_t *out, char *msg,
                              size_t msgcap);

/* Both bounds and the worst-case cost. Errors as above; out written only on success. */
cg_err gw_estimate_request(const cg_config *cfg, const cg_model_cfg *m, const cJSON *body,
                           gw_estimate *out, char *msg, size_t msgcap);

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
 * Usage from an OpenAI "usage" object {prompt_tokens, completion_tokens,
 * prompt_tokens_details: {cached_tokens}}. Missing or invalid numbers count 0;
 * cached_tokens is clamped to prompt_tokens. Returns 0 if usage is not an object.
 */
int gw_usage_from_json(const cJSON *usage, gw_usage *out);

#endif
