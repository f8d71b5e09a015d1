/*
 * body_test.c — unit tests of the request bodies of the proxied endpoints
 * (gw_body): endpoint table, the body checks (duplicates, required inputs,
 * streaming, unboundable responses parameters) and the upstream rewrite
 * (bytes kept when splicing, re-serialised when a member exists).
 */
#include <stdlib.h>
#include <string.h>
#include "cg_test.h"
#include "gw_body.h"

CG_TEST(endpoint_table)
{
    int known = 0;
    CG_CHECK_EQ_INT(gw_endpoint_of("POST", "/v1/chat/completions", &known), GW_EP_CHAT);
    CG_CHECK_EQ_INT(gw_endpoint_of("POST", "/v1/completions", &known), GW_EP_COMPLETIONS);
    CG_CHECK_EQ_INT(gw_endpoint_of("POST", "/v1/embeddings", &known), GW_EP_EMBEDDINGS);
    CG_CHECK_EQ_INT(gw_endpoint_of("POST", "/v1/responses", &known), GW_EP_RESPONSES);
    CG_CHECK_EQ_INT(gw_endpoint_of("GET", "/v1/models", &known), GW_EP_MODELS);
    CG_CHECK_EQ_INT(gw_endpoint_of("GET", "/v1/embeddings", &known), -1);
    CG_CHECK_EQ_INT(known, 1);
    CG_CHECK_EQ_INT(gw_endpoint_of("POST", "/v1/nothing", &known), -1);
    CG_CHECK_EQ_INT(known, 0);
    CG_CHECK_EQ_STR(gw_endpoint_upstream_path(GW_EP_CHAT), "/chat/completions");
    CG_CHECK_EQ_STR(gw_endpoint_upstream_path(GW_EP_COMPLETIONS), "/completions");
    CG_CHECK_EQ_STR(gw_endpoint_upstream_path(GW_EP_EMBEDDINGS), "/embeddings");
    CG_CHECK_EQ_STR(gw_endpoint_upstream_path(GW_EP_RESPONSES), "/responses");
    CG_CHECK(gw_endpoint_upstream_path(GW_EP_MODELS) == NULL);
    CG_CHECK_EQ_STR(gw_endpoint_fill_field(GW_EP_CHAT), "max_tokens");
    CG_CHECK_EQ_STR(gw_endpoint_fill_field(GW_EP_RESPONSES), "max_output_tokens");
    CG_CHECK(gw_endpoint_fill_field(GW_EP_EMBEDDINGS) == NULL);
}

/* gw_body_check of a JSON text: "" when accepted, else the message. */
static const char *check(int ep, const char *json, int strict)
{
    static char msg[256];
    cJSON *j = cJSON_Parse(json);
    msg[0] = '\0';
    if (j == NULL) {
        return "unparsable";
    }
    if (gw_body_check(ep, j, strict, msg, sizeof(msg)) == CG_ERR_OK) {
        msg[0] = '\0';
    }
    cJSON_Delete(j);
    return msg;
}

CG_TEST(body_checks)
{
    CG_CHECK_EQ_STR(check(GW_EP_CHAT, "{\"model\":\"m\",\"messages\":[]}", 1), "");
    CG_CHECK(strncmp(check(GW_EP_CHAT, "{\"model\":\"m\"}", 1), "messages", 8) == 0);
    CG_CHECK(strncmp(check(GW_EP_CHAT, "{\"messages\":[]}", 1), "model", 5) == 0);
    CG_CHECK(strncmp(check(GW_EP_CHAT, "[]", 1), "Request body", 12) == 0);
    CG_CHECK(strncmp(check(GW_EP_CHAT, "{\"model\":\"m\",\"messages\":[],\"stream\":1}", 1),
                     "stream", 6) == 0);
    /* A member named twice could be read differently upstream. */
    CG_CHECK(
        strncmp(check(GW_EP_CHAT,
                      "{\"model\":\"m\",\"messages\":[],\"max_tokens\":1,\"max_tokens\":9}", 1),
                "max_tokens: member given more than once", 39) == 0);
    CG_CHECK_EQ_STR(check(GW_EP_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\"}", 1), "");
    CG_CHECK_EQ_STR(check(GW_EP_COMPLETIONS, "{\"model\":\"m\"}", 1), "prompt: required");
    CG_CHECK_EQ_STR(check(GW_EP_EMBEDDINGS, "{\"model\":\"m\",\"input\":\"x\"}", 1), "");
    CG_CHECK(
        strncmp(check(GW_EP_EMBEDDINGS, "{\"model\":\"m\",\"input\":\"x\",\"stream\":true}", 1),
                "stream", 6) == 0);
    CG_CHECK_EQ_STR(check(GW_EP_RESPONSES, "{\"model\":\"m\",\"input\":\"x\"}", 1), "");
    /* A stored conversation cannot be bounded: refused in strict mode only. */
    const char *prev = "{\"model\":\"m\",\"input\":\"x\",\"previous_response_id\":\"resp_1\"}";
    CG_CHECK(strncmp(check(GW_EP_RESPONSES, prev, 1), "previous_response_id", 20) == 0);
    CG_CHECK_EQ_STR(check(GW_EP_RESPONSES, prev, 0), "");
    CG_CHECK_EQ_STR(check(GW_EP_RESPONSES,
                          "{\"model\":\"m\",\"input\":\"x\",\"previous_response_id\":null}", 1),
                    "");
}

CG_TEST(body_duplicates_many_members)
{
    /* Past the linear bound the check sorts; a duplicate is still found. */
    size_t cap = 200 * 16 + 64;
    char *b = malloc(cap);
    size_t n = (size_t)snprintf(b, cap, "{\"model\":\"m\",\"messages\":[]");
    for (int i = 0; i < 200; i++) {
        n += (size_t)snprintf(b + n, cap - n, ",\"k%d\":1", i % 150);
    }
    snprintf(b + n, cap - n, "}");
    CG_CHECK(strstr(check(GW_EP_CHAT, b, 1), "more than once") != NULL);
    free(b);
}

/* Rewrite a JSON text; returns the new body (static) or "ERR". */
static const char *rewrite(int ep, const char *body, int64_t set_max, int usage)
{
    static char out[1024];
    gw_body_edit e = {.set_max = set_max, .include_usage = (uint8_t)usage};
    char *nb = NULL;
    size_t nl = 0;
    if (gw_body_rewrite(ep, body, strlen(body), NULL, &e, &nb, &nl) != CG_ERR_OK) {
        return "ERR";
    }
    snprintf(out, sizeof(out), "%s", nb);
    if (nl != strlen(nb)) {
        snprintf(out, sizeof(out), "length mismatch");
    }
    free(nb);
    return out;
}

CG_TEST(rewrite_splices_absent_members)
{
    const char *chat = " {\"model\": \"m\",  \"messages\": [] }";
    /* Nothing to change: the very same bytes. */
    CG_CHECK_EQ_STR(rewrite(GW_EP_CHAT, chat, -1, 0), chat);
    /* Absent members are spliced after the brace; every other byte stays. */
    CG_CHECK_EQ_STR(rewrite(GW_EP_CHAT, chat, 4096, 0),
                    " {\"max_tokens\":4096,\"model\": \"m\",  \"messages\": [] }");
    CG_CHECK_EQ_STR(
        rewrite(GW_EP_CHAT, chat, 7, 1),
        " {\"max_tokens\":7,\"stream_options\":{\"include_usage\":true},\"model\": \"m\","
        "  \"messages\": [] }");
    CG_CHECK_EQ_STR(rewrite(GW_EP_RESPONSES, "{\"model\":\"m\",\"input\":\"x\"}", 6, 0),
                    "{\"max_output_tokens\":6,\"model\":\"m\",\"input\":\"x\"}");
    /* Embeddings have no completion bound. */
    CG_CHECK_EQ_STR(rewrite(GW_EP_EMBEDDINGS, "{\"model\":\"m\",\"input\":\"x\"}", 6, 0),
                    "{\"model\":\"m\",\"input\":\"x\"}");
}

CG_TEST(rewrite_existing_members)
{
    /* A null bound would shadow a spliced one: the tree is edited instead. */
    CG_CHECK_EQ_STR(rewrite(GW_EP_CHAT, "{\"model\":\"m\",\"max_tokens\":null}", 5, 0),
                    "{\"model\":\"m\",\"max_tokens\":5}");
    /* Clamp: every bound the request names is lowered. */
    CG_CHECK_EQ_STR(rewrite(GW_EP_CHAT,
                            "{\"model\":\"m\",\"max_completion_tokens\":900,\"max_tokens\":800}",
                            49, 0),
                    "{\"model\":\"m\",\"max_completion_tokens\":49,\"max_tokens\":49}");
    CG_CHECK_EQ_STR(rewrite(GW_EP_CHAT, "{\"model\":\"m\",\"max_completion_tokens\":900}", 49, 0),
                    "{\"model\":\"m\",\"max_completion_tokens\":49}");
    CG_CHECK_EQ_STR(rewrite(GW_EP_RESPONSES, "{\"max_output_tokens\":100,\"input\":\"é\"}", 10, 0),
                    "{\"max_output_tokens\":10,\"input\":\"é\"}");
    /* Existing stream options are kept, include_usage forced on. */
    CG_CHECK_EQ_STR(
        rewrite(GW_EP_CHAT,
                "{\"model\":\"m\",\"stream_options\":{\"include_usage\":false,\"x\":1}}", -1, 1),
        "{\"model\":\"m\",\"stream_options\":{\"include_usage\":true,\"x\":1}}");
    CG_CHECK_EQ_STR(rewrite(GW_EP_CHAT, "{\"model\":\"m\",\"stream_options\":null}", -1, 1),
                    "{\"model\":\"m\",\"stream_options\":{\"include_usage\":true}}");
    CG_CHECK_EQ_STR(rewrite(GW_EP_CHAT, "{\"model\":", 5, 0), "ERR");
}

int main(void)
{
    return CG_TEST_RUN(endpoint_table, body_checks, body_duplicates_many_members,
                       rewrite_splices_absent_members, rewrite_existing_members);
}
