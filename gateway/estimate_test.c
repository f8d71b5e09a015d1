/*
 * estimate_test.c — unit tests of the worst-case estimate (gw_estimate).
 *
 * Checks the exact bound for small bodies (so a change to the formula is a
 * deliberate one), that it is an upper bound of a byte-per-token count for
 * text, parts and tools, and that bad max_tokens / n values are refused with
 * the field named.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include "cg_test.h"
#include "gw_estimate.h"

static cg_config cfg;
static cg_model_cfg model;

static void setup(void)
{
    memset(&cfg, 0, sizeof(cfg));
    cfg.prompt_message_tokens = 8;
    cfg.prompt_part_tokens = 2000;
    cfg.routing_fee_nusd = 100000; /* $0.0001 */
    memset(&model, 0, sizeof(model));
    strcpy(model.name, "m");
    model.prompt_nusd_per_mtok = 150000000;     /* $0.15 / 1M */
    model.completion_nusd_per_mtok = 600000000; /* $0.60 / 1M */
    model.cached_prompt_nusd_per_mtok = -1;
    model.max_output_tokens = 16384;
}

/* Prompt bound of a JSON text; -1 on error. */
static long long prompt_of(const char *json)
{
    char msg[128];
    int64_t v = -1;
    cJSON *j = cJSON_Parse(json);
    if (j == NULL || gw_estimate_prompt(&cfg, GW_EP_CHAT, j, &v, msg, sizeof(msg)) != CG_ERR_OK) {
        v = -1;
    }
    cJSON_Delete(j);
    return v;
}

/* Completion bound; -1 on error, msg receives the message. */
static long long completion_of(const char *json, char *msg, size_t cap)
{
    gw_estimate e;
    long long v = -1;
    cJSON *j = cJSON_Parse(json);
    if (j != NULL && gw_estimate_completion(&model, GW_EP_CHAT, j, &e, msg, cap) == CG_ERR_OK) {
        v = e.completion_tokens;
    }
    cJSON_Delete(j);
    return v;
}

CG_TEST(estimate_text)
{
    setup();
    /* "user" + "hello" + allowance */
    CG_CHECK_EQ_INT(prompt_of("{\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}"),
                    4 + 5 + 8);
    /* two messages; escapes count as the bytes the model sees */
    CG_CHECK_EQ_INT(prompt_of("{\"messages\":[{\"role\":\"system\",\"content\":\"a\\nb\"},"
                              "{\"role\":\"user\",\"content\":\"h\\u00e9\"}]}"),
                    6 + 3 + 8 + 4 + 3 + 8);
    CG_CHECK_EQ_INT(prompt_of("{\"messages\":[]}"), 0);
}

CG_TEST(estimate_bound_covers_bytes)
{
    setup();
    /* Whatever the text, the bound is at least its byte length (>= its tokens). */
    const char *texts[] = {"", "a", "hello world", "日本語のテキスト", "🙂🙂🙂"};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        cJSON *body = cJSON_CreateObject();
        cJSON *msgs = cJSON_AddArrayToObject(body, "messages");
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "user");
        cJSON_AddStringToObject(m, "content", texts[i]);
        cJSON_AddItemToArray(msgs, m);
        int64_t v = 0;
        char msg[64];
        CG_CHECK(gw_estimate_prompt(&cfg, GW_EP_CHAT, body, &v, msg, sizeof(msg)) == CG_ERR_OK);
        CG_CHECK(v >= (int64_t)strlen(texts[i]) + 8);
        cJSON_Delete(body);
    }
}

CG_TEST(estimate_parts)
{
    setup();
    const char *body =
        "{\"messages\":[{\"role\":\"user\",\"content\":["
        "{\"type\":\"text\",\"text\":\"abc\"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}},"
        "{\"type\":\"input_audio\",\"input_audio\":{\"data\":\"xx\",\"format\":\"wav\"}},"
        "{\"type\":\"file\",\"file\":{\"file_id\":\"f\"}}]}]}";
    /* "user" + "text" + "abc" + 3 media parts + allowance; the data URL is not text */
    CG_CHECK_EQ_INT(prompt_of(body), 4 + 4 + 3 + 3 * 2000 + 8);
}

CG_TEST(estimate_name_and_tool_calls)
{
    setup();
    const char *body = "{\"messages\":[{\"role\":\"assistant\",\"name\":\"bob\",\"content\":null,"
                       "\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":"
                       "{\"name\":\"f\",\"arguments\":\"{\\\"x\\\":1}\"}}]},"
                       "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"42\"}]}";
    long long want = (9 + 3 + 2 + 8 + 1 + 7 + 8) + (4 + 2 + 2 + 8);
    CG_CHECK_EQ_INT(prompt_of(body), want);
}

CG_TEST(estimate_tools_and_response_format)
{
    setup();
    const char *tools = "[{\"type\":\"function\",\"function\":{\"name\":\"get\",\"parameters\":"
                        "{\"type\":\"object\",\"properties\":{}}}}]";
    const char *rf = "{\"type\":\"json_object\"}";
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"tools\":%s,"
             "\"response_format\":%s,\"functions\":null}",
             tools, rf);
    long long want = (4 + 2 + 8) + ((long long)strlen(tools) + 8) + ((long long)strlen(rf) + 8);
    CG_CHECK_EQ_INT(prompt_of(body), want);
}

CG_TEST(estimate_missing_messages)
{
    setup();
    char msg[128] = "";
    int64_t v = 0;
    cJSON *j = cJSON_Parse("{\"messages\":\"hi\"}");
    CG_CHECK(gw_estimate_prompt(&cfg, GW_EP_CHAT, j, &v, msg, sizeof(msg)) == CG_ERR_INVAL);
    CG_CHECK(strncmp(msg, "messages", 8) == 0);
    cJSON_Delete(j);
    CG_CHECK_EQ_INT(prompt_of("{\"model\":\"m\"}"), -1);
}

CG_TEST(estimate_max_tokens_variants)
{
    setup();
    char msg[128];
    CG_CHECK_EQ_INT(completion_of("{}", msg, sizeof(msg)), 16384);
    CG_CHECK_EQ_INT(completion_of("{\"max_tokens\":100}", msg, sizeof(msg)), 100);
    CG_CHECK_EQ_INT(completion_of("{\"max_completion_tokens\":50}", msg, sizeof(msg)), 50);
    CG_CHECK_EQ_INT(
        completion_of("{\"max_completion_tokens\":50,\"max_tokens\":100}", msg, sizeof(msg)), 100);
    CG_CHECK_EQ_INT(completion_of("{\"max_tokens\":null}", msg, sizeof(msg)), 16384);
    CG_CHECK_EQ_INT(completion_of("{\"max_tokens\":0}", msg, sizeof(msg)), 0);
    CG_CHECK_EQ_INT(completion_of("{\"max_tokens\":100,\"n\":3}", msg, sizeof(msg)), 300);
    CG_CHECK_EQ_INT(completion_of("{\"max_tokens\":100.0}", msg, sizeof(msg)), 100);
}

CG_TEST(estimate_invalid_max_tokens)
{
    setup();
    const char *bad[] = {"{\"max_tokens\":-1}",      "{\"max_tokens\":1.5}",
                         "{\"max_tokens\":\"100\"}", "{\"max_tokens\":true}",
                         "{\"max_tokens\":1e300}",   "{\"max_completion_tokens\":[]}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char msg[128] = "";
        CG_CHECK_EQ_INT(completion_of(bad[i], msg, sizeof(msg)), -1);
        CG_CHECK(strstr(msg, "max_") == msg);
        CG_CHECK(strstr(msg, "non-negative integer") != NULL);
    }
    char msg[128] = "";
    CG_CHECK_EQ_INT(completion_of("{\"n\":0}", msg, sizeof(msg)), -1);
    CG_CHECK(strncmp(msg, "n:", 2) == 0);
    CG_CHECK_EQ_INT(completion_of("{\"n\":129}", msg, sizeof(msg)), -1);
}

CG_TEST(estimate_cost)
{
    setup();
    cJSON *j = cJSON_Parse("{\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],"
                           "\"max_tokens\":100}");
    gw_estimate e;
    char msg[128];
    CG_CHECK(gw_estimate_request(&cfg, &model, GW_EP_CHAT, j, &e, msg, sizeof(msg)) == CG_ERR_OK);
    CG_CHECK_EQ_INT(e.prompt_tokens, 17);
    CG_CHECK_EQ_INT(e.completion_tokens, 100);
    /* 17 * 0.15 / 1M + 100 * 0.60 / 1M + 0.0001, in nano-USD */
    CG_CHECK_EQ_INT(e.cost_nusd, 2550 + 60000 + 100000);
    /* A cached rate above the prompt rate is the worst case for the prompt. */
    model.cached_prompt_nusd_per_mtok = 300000000;
    CG_CHECK(gw_estimate_request(&cfg, &model, GW_EP_CHAT, j, &e, msg, sizeof(msg)) == CG_ERR_OK);
    CG_CHECK_EQ_INT(e.cost_nusd, 5100 + 60000 + 100000);
    cJSON_Delete(j);
}

CG_TEST(estimate_actual_cost)
{
    setup();
    gw_usage u = {.prompt_tokens = 1000, .completion_tokens = 10, .cached_tokens = 400};
    /* no cached rate: all prompt tokens at the prompt rate */
    CG_CHECK_EQ_INT(gw_cost_of(&cfg, &model, &u), 150000 + 6000 + 100000);
    model.cached_prompt_nusd_per_mtok = 75000000;
    CG_CHECK_EQ_INT(gw_cost_of(&cfg, &model, &u), 90000 + 30000 + 6000 + 100000);
    /* rounding is upward: 1 token at $0.15/M = 150 nano-USD exactly; 1 at 0.0000001 → 1 */
    model.completion_nusd_per_mtok = 1;
    gw_usage one = {.completion_tokens = 1};
    CG_CHECK_EQ_INT(gw_cost_of(&cfg, &model, &one), 1 + 100000);
}

CG_TEST(estimate_usage_json)
{
    cJSON *j = cJSON_Parse("{\"prompt_tokens\":7,\"completion_tokens\":3,"
                           "\"prompt_tokens_details\":{\"cached_tokens\":99}}");
    gw_usage u;
    CG_CHECK(gw_usage_from_json(j, &u) == 1);
    CG_CHECK_EQ_INT(u.prompt_tokens, 7);
    CG_CHECK_EQ_INT(u.completion_tokens, 3);
    CG_CHECK_EQ_INT(u.cached_tokens, 7);
    cJSON_Delete(j);
    cJSON *n = cJSON_CreateNull();
    CG_CHECK(gw_usage_from_json(n, &u) == 0);
    cJSON_Delete(n);
}

CG_TEST(estimate_nul_escape)
{
    const char *a = "{\"content\":\"ab\\u0000cd\"}";
    const char *b = "{\"content\":\"abcd\"}";
    CG_CHECK(gw_body_has_nul_escape(a, strlen(a)) == 1);
    CG_CHECK(gw_body_has_nul_escape(b, strlen(b)) == 0);
}

/* Full estimate of body at endpoint ep; e.prompt_tokens = -1 on error. */
static gw_estimate est_of(int ep, const char *json)
{
    gw_estimate e;
    char msg[192];
    memset(&e, 0, sizeof(e));
    cJSON *j = cJSON_Parse(json);
    if (j == NULL || gw_estimate_request(&cfg, &model, ep, j, &e, msg, sizeof(msg)) != CG_ERR_OK) {
        e.prompt_tokens = -1;
    }
    cJSON_Delete(j);
    return e;
}

CG_TEST(estimate_completions)
{
    setup();
    /* A string prompt: bytes + allowance; no max_tokens: the model maximum. */
    gw_estimate e = est_of(GW_EP_COMPLETIONS, "{\"prompt\":\"hello world\"}");
    CG_CHECK_EQ_INT(e.prompt_tokens, 11 + 8);
    CG_CHECK_EQ_INT(e.named_max, -1);
    CG_CHECK_EQ_INT(e.completion_tokens, 16384);
    /* Several prompts: each its own allowance and its own completion. */
    e = est_of(GW_EP_COMPLETIONS, "{\"prompt\":[\"hello world\",\"abc\"],\"max_tokens\":5}");
    CG_CHECK_EQ_INT(e.prompt_tokens, 11 + 8 + 3 + 8);
    CG_CHECK_EQ_INT(e.choices, 2);
    CG_CHECK_EQ_INT(e.completion_tokens, 10);
    /* Token ids count one each; the suffix belongs to every prompt; best_of multiplies. */
    e = est_of(GW_EP_COMPLETIONS, "{\"prompt\":[1,2,3],\"suffix\":\"xy\",\"max_tokens\":4,"
                                  "\"n\":2,\"best_of\":3}");
    CG_CHECK_EQ_INT(e.prompt_tokens, 3 + 2 + 8);
    CG_CHECK_EQ_INT(e.completion_tokens, 4 * 3);
    e = est_of(GW_EP_COMPLETIONS, "{\"prompt\":[[1,2],[3]],\"max_tokens\":1}");
    CG_CHECK_EQ_INT(e.prompt_tokens, 2 + 8 + 1 + 8);
    CG_CHECK_EQ_INT(e.completion_tokens, 2);
    /* Bad shapes are refused with the field named. */
    const char *bad[] = {"{\"prompt\":[]}",
                         "{\"prompt\":[\"a\",1]}",
                         "{\"prompt\":{}}",
                         "{\"prompt\":[[1,\"x\"]]}",
                         "{}",
                         "{\"prompt\":[1.5]}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CG_CHECK_EQ_INT(est_of(GW_EP_COMPLETIONS, bad[i]).prompt_tokens, -1);
    }
}

CG_TEST(estimate_embeddings)
{
    setup();
    gw_estimate e = est_of(GW_EP_EMBEDDINGS, "{\"input\":[\"hello world\",\"abc\"]}");
    CG_CHECK_EQ_INT(e.prompt_tokens, 11 + 8 + 3 + 8);
    CG_CHECK_EQ_INT(e.choices, 0);
    CG_CHECK_EQ_INT(e.completion_tokens, 0);
    /* Cost is the prompt only, plus the fee: 30 tokens at $0.15 / 1M. */
    CG_CHECK_EQ_INT(e.cost_nusd, 30 * 150 + 100000);
    /* A max_tokens member means nothing here. */
    e = est_of(GW_EP_EMBEDDINGS, "{\"input\":\"x\",\"max_tokens\":100}");
    CG_CHECK_EQ_INT(e.completion_tokens, 0);
    e = est_of(GW_EP_EMBEDDINGS, "{\"input\":[5,6,7,8]}");
    CG_CHECK_EQ_INT(e.prompt_tokens, 4 + 8);
    CG_CHECK_EQ_INT(est_of(GW_EP_EMBEDDINGS, "{\"input\":null}").prompt_tokens, -1);
}

CG_TEST(estimate_responses)
{
    setup();
    gw_estimate e = est_of(GW_EP_RESPONSES, "{\"instructions\":\"be brief\",\"input\":"
                                            "\"hello world\",\"max_output_tokens\":6}");
    CG_CHECK_EQ_INT(e.prompt_tokens, 8 + 8 + 11 + 8);
    CG_CHECK_EQ_INT(e.named_max, 6);
    CG_CHECK_EQ_INT(e.completion_tokens, 6);
    /* Items: every string of the item, media parts at the part allowance. */
    e = est_of(GW_EP_RESPONSES,
               "{\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":"
               "\"hi\"},{\"type\":\"input_image\",\"image_url\":\"data:...\"}]}]}");
    CG_CHECK_EQ_INT(e.prompt_tokens, 4 + (10 + 2) + 2000 + 8);
    CG_CHECK_EQ_INT(e.completion_tokens, 16384);
    /* max_tokens is not the responses bound. */
    e = est_of(GW_EP_RESPONSES, "{\"input\":\"x\",\"max_tokens\":5}");
    CG_CHECK_EQ_INT(e.completion_tokens, 16384);
    CG_CHECK_EQ_INT(est_of(GW_EP_RESPONSES, "{\"input\":3}").prompt_tokens, -1);
    CG_CHECK_EQ_INT(est_of(GW_EP_RESPONSES, "{\"input\":\"x\",\"instructions\":1}").prompt_tokens,
                    -1);
}

CG_TEST(estimate_set_max)
{
    setup();
    gw_estimate e = est_of(GW_EP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],"
                                       "\"n\":2}");
    CG_CHECK_EQ_INT(e.completion_tokens, 2 * 16384);
    gw_estimate_set_max(&cfg, &model, &e, 50);
    CG_CHECK_EQ_INT(e.max_tokens, 50);
    CG_CHECK_EQ_INT(e.completion_tokens, 100);
    CG_CHECK_EQ_INT(e.cost_nusd, 2550 + 60000 + 100000);
    CG_CHECK_EQ_INT(gw_estimate_tokens(&e), 117);
    e.prompt_tokens = INT64_MAX;
    CG_CHECK_EQ_INT(gw_estimate_tokens(&e), INT64_MAX);
}

CG_TEST(estimate_usage_responses_json)
{
    cJSON *j = cJSON_Parse("{\"input_tokens\":9,\"output_tokens\":4,"
                           "\"input_tokens_details\":{\"cached_tokens\":2},\"total_tokens\":13}");
    gw_usage u;
    CG_CHECK(gw_usage_from_json(j, &u) == 1);
    CG_CHECK_EQ_INT(u.prompt_tokens, 9);
    CG_CHECK_EQ_INT(u.completion_tokens, 4);
    CG_CHECK_EQ_INT(u.cached_tokens, 2);
    cJSON_Delete(j);
    /* Embeddings: prompt_tokens and total_tokens only. */
    j = cJSON_Parse("{\"prompt_tokens\":5,\"total_tokens\":5}");
    CG_CHECK(gw_usage_from_json(j, &u) == 1);
    CG_CHECK_EQ_INT(u.prompt_tokens, 5);
    CG_CHECK_EQ_INT(u.completion_tokens, 0);
    cJSON_Delete(j);
}

int main(void)
{
    return CG_TEST_RUN(
        estimate_text, estimate_bound_covers_bytes, estimate_parts, estimate_name_and_tool_calls,
        estimate_tools_and_response_format, estimate_missing_messages, estimate_max_tokens_variants,
        estimate_invalid_max_tokens, estimate_cost, estimate_actual_cost, estimate_usage_json,
        estimate_nul_escape, estimate_completions, estimate_embeddings, estimate_responses,
        estimate_set_max, estimate_usage_responses_json);
}
