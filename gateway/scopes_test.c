/*
 * scopes_test.c — unit tests of the arithmetic over a request's scopes
 * (gw_scopes): which refusal is reported, the on_low_budget clamp, the
 * x-ratelimit-* / budget headers and OpenAI's reset format.
 */
#include <string.h>
#include "cg_test.h"
#include "gw_scopes.h"

static proto_limit_state st_of(uint8_t metric, uint8_t kind, int64_t max, int64_t used,
                               int64_t reserved)
{
    proto_limit_state s;
    memset(&s, 0, sizeof(s));
    s.metric = metric;
    s.window.kind = kind;
    if (kind == CG_WIN_SLIDING) {
        s.window.sliding_s = 60;
    }
    s.max = max;
    s.used = used;
    s.reserved = reserved;
    s.action = PROTO_ACTION_BLOCK;
    return s;
}

static gw_scope scope_of(uint8_t kind, cg_err st)
{
    gw_scope s;
    memset(&s, 0, sizeof(s));
    s.kind = kind;
    s.done = 1;
    s.st = (uint16_t)st;
    s.reserved = st == CG_ERR_OK;
    return s;
}

static void add_state(gw_scope *s, proto_limit_state st)
{
    s->states[s->state_n++] = st;
}

CG_TEST(reset_format)
{
    char b[32];
    const struct {
        int64_t ms;
        const char *want;
    } cases[] = {{0, "0s"},           {-5, "0s"},          {1, "1s"},
                 {1000, "1s"},        {1001, "2s"},        {59000, "59s"},
                 {60000, "1m0s"},     {360000, "6m0s"},    {3599000, "59m59s"},
                 {3600000, "1h0m0s"}, {3723000, "1h2m3s"}, {86400000, "24h0m0s"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CG_CHECK(gw_reset_format(cases[i].ms, b, sizeof(b)) == strlen(cases[i].want));
        CG_CHECK_EQ_STR(b, cases[i].want);
    }
    CG_CHECK_EQ_INT(gw_reset_format(3723000, b, 4), 0);
}

CG_TEST(first_refusal_in_order)
{
    gw_scope s[4] = {scope_of(PROTO_SCOPE_KEY, CG_ERR_OK), scope_of(PROTO_SCOPE_GROUP, CG_ERR_OK),
                     scope_of(PROTO_SCOPE_CUSTOMER, CG_ERR_BUDGET),
                     scope_of(PROTO_SCOPE_ORG, CG_ERR_BUDGET)};
    CG_CHECK_EQ_INT(gw_scopes_first_refusal(s, 4), 2);
    s[1].st = CG_ERR_BUDGET;
    CG_CHECK_EQ_INT(gw_scopes_first_refusal(s, 4), 1);
    s[1].skip = 1;
    CG_CHECK_EQ_INT(gw_scopes_first_refusal(s, 4), 2);
    s[2].st = s[3].st = CG_ERR_OK;
    CG_CHECK_EQ_INT(gw_scopes_first_refusal(s, 4), -1);
}

/* Prices of the clamp tests: 1000 nano-USD per prompt and per completion token, no fee. */
static gw_clamp_in clamp_in(int64_t prompt, int64_t max_tokens, int64_t choices)
{
    gw_clamp_in in = {
        .prompt_tokens = prompt,
        .prompt_cost_nusd = prompt * 1000,
        .fee_nusd = 0,
        .completion_rate = 1000000000, /* $1000 per 1M tokens: 1000 nano-USD a token */
        .choices = choices,
    };
    in.worst_tokens = prompt + max_tokens * choices;
    in.worst_cost_nusd = in.worst_tokens * 1000;
    return in;
}

CG_TEST(clamp_cost_and_tokens)
{
    /* Worst case: prompt 10 + 100 completion = 110 tokens, 110000 nano-USD. */
    gw_clamp_in in = clamp_in(10, 100, 1);
    gw_scope s[2] = {scope_of(PROTO_SCOPE_KEY, CG_ERR_BUDGET),
                     scope_of(PROTO_SCOPE_ORG, CG_ERR_OK)};
    /* Key: cost cap 60000 with 0 used → room for 50 completion tokens. */
    add_state(&s[0], st_of(PROTO_METRIC_COST, CG_WIN_MONTH, 60000, 0, 0));
    s[0].refusal.metric = PROTO_METRIC_COST;
    /* Org accepted: its reserved count includes this request's 110 tokens, given back. */
    add_state(&s[1], st_of(PROTO_METRIC_TOKENS, CG_WIN_DAY, 1000, 900, 110 + 50));
    CG_CHECK_EQ_INT(gw_clamp_max_tokens(s, 2, &in), 40); /* 1000 - 900 - 50 - 10 prompt */
    s[1].states[0].reserved = 110;
    CG_CHECK_EQ_INT(gw_clamp_max_tokens(s, 2, &in), 50);
    /* Two choices share the room. */
    in = clamp_in(10, 100, 2);
    s[1].states[0].reserved = 210;
    CG_CHECK_EQ_INT(gw_clamp_max_tokens(s, 2, &in), 25);
    /* Warn limits and unlimited ones do not bound. */
    in = clamp_in(10, 100, 1);
    s[1].states[0].reserved = 110;
    proto_limit_state warn = st_of(PROTO_METRIC_COST, CG_WIN_MONTH, 1, 1000, 0);
    warn.action = PROTO_ACTION_WARN;
    add_state(&s[1], warn);
    add_state(&s[1], st_of(PROTO_METRIC_COST, CG_WIN_MONTH, 0, 1000, 0));
    CG_CHECK_EQ_INT(gw_clamp_max_tokens(s, 2, &in), 50);
}

CG_TEST(clamp_rounding_and_fee)
{
    /* 600000 nano-USD per 1M tokens: C tokens cost ceil(0.6 C) nano-USD. */
    gw_clamp_in in = {.prompt_tokens = 0,
                      .prompt_cost_nusd = 0,
                      .fee_nusd = 100,
                      .completion_rate = 600000,
                      .choices = 1};
    in.worst_cost_nusd = 10000;
    in.worst_tokens = 10000;
    gw_scope s = scope_of(PROTO_SCOPE_KEY, CG_ERR_BUDGET);
    s.refusal.metric = PROTO_METRIC_COST;
    add_state(&s, st_of(PROTO_METRIC_COST, CG_WIN_LIFETIME, 160, 0, 0));
    /* 60 nano-USD left after the fee: ceil(0.6 × 100) = 60 fits, 101 → 61 does not. */
    CG_CHECK_EQ_INT(gw_clamp_max_tokens(&s, 1, &in), 100);
    s.states[0].max = 99;
    CG_CHECK_EQ_INT(gw_clamp_max_tokens(&s, 1, &in), -1); /* not even the fee fits */
}

CG_TEST(clamp_not_possible)
{
    gw_clamp_in in = clamp_in(10, 100, 1);
    gw_scope s = scope_of(PROTO_SCOPE_KEY, CG_ERR_BUDGET);
    add_state(&s, st_of(PROTO_METRIC_REQUESTS, CG_WIN_SLIDING, 5, 5, 0));
    s.refusal.metric = PROTO_METRIC_REQUESTS;
    CG_CHECK_EQ_INT(gw_clamp_max_tokens(&s, 1, &in), -1); /* a requests refusal never clamps */
    /* A cost refusal, but a requests limit elsewhere has no room either. */
    s.refusal.metric = PROTO_METRIC_COST;
    s.states[0] = st_of(PROTO_METRIC_COST, CG_WIN_MONTH, 60000, 0, 0);
    gw_scope o = scope_of(PROTO_SCOPE_ORG, CG_ERR_OK);
    add_state(&o, st_of(PROTO_METRIC_REQUESTS, CG_WIN_DAY, 10, 9, 1));
    gw_scope both[2] = {s, o};
    CG_CHECK_EQ_INT(gw_clamp_max_tokens(both, 2, &in), 50);
    both[1].states[0].used = 10;
    CG_CHECK_EQ_INT(gw_clamp_max_tokens(both, 2, &in), -1);
    /* The prompt alone does not fit. */
    s.states[0] = st_of(PROTO_METRIC_TOKENS, CG_WIN_MONTH, 9, 0, 0);
    CG_CHECK_EQ_INT(gw_clamp_max_tokens(&s, 1, &in), -1);
    /* A scope that failed otherwise (transport) never clamps. */
    s.states[0] = st_of(PROTO_METRIC_TOKENS, CG_WIN_MONTH, 90, 0, 0);
    gw_scope down = scope_of(PROTO_SCOPE_ORG, CG_ERR_TIMEOUT);
    gw_scope pair[2] = {s, down};
    CG_CHECK_EQ_INT(gw_clamp_max_tokens(pair, 2, &in), -1);
    CG_CHECK_EQ_INT(gw_clamp_max_tokens(&s, 1, &in), 80);
}

CG_TEST(rate_headers_least_remaining)
{
    gw_scope s[3] = {scope_of(PROTO_SCOPE_KEY, CG_ERR_OK),
                     scope_of(PROTO_SCOPE_CUSTOMER, CG_ERR_OK),
                     scope_of(PROTO_SCOPE_ORG, CG_ERR_OK)};
    proto_limit_state a = st_of(PROTO_METRIC_REQUESTS, CG_WIN_SLIDING, 600, 100, 1);
    a.period_end_ms = 10000 + 1500;
    proto_limit_state b = st_of(PROTO_METRIC_REQUESTS, CG_WIN_SLIDING, 60, 40, 3);
    b.period_end_ms = 10000 + 360000;
    add_state(&s[0], a);
    add_state(&s[1], b);
    /* A calendar requests limit is not a rate limit. */
    add_state(&s[2], st_of(PROTO_METRIC_REQUESTS, CG_WIN_DAY, 20, 19, 1));
    proto_limit_state t = st_of(PROTO_METRIC_TOKENS, CG_WIN_SLIDING, 1000, 100, 300);
    t.period_end_ms = 10000;
    add_state(&s[2], t);
    add_state(&s[0], st_of(PROTO_METRIC_COST, CG_WIN_MONTH, 5000000000, 1000000000, 10000000));
    add_state(&s[2], st_of(PROTO_METRIC_COST, CG_WIN_SLIDING, 2000000000, 0, 10000000));
    gw_charge_adj adj = {.cost_nusd = 4000000, .tokens = 200};
    char buf[1024] = "x: y\r\n";
    size_t n = gw_scopes_headers(s, 3, 10000, &adj, buf, strlen(buf), sizeof(buf));
    CG_CHECK(n == strlen(buf));
    CG_CHECK_EQ_STR(buf, "x: y\r\n"
                         "x-ratelimit-limit-requests: 60\r\n"
                         "x-ratelimit-remaining-requests: 17\r\n"
                         "x-ratelimit-reset-requests: 6m0s\r\n"
                         "x-ratelimit-limit-tokens: 1000\r\n"
                         "x-ratelimit-remaining-tokens: 800\r\n"
                         "x-ratelimit-reset-tokens: 0s\r\n"
                         "x-capgate-budget-remaining-usd: 1.994\r\n");
    /* Only this request's reservation counted so far: it resets a whole window later. */
    gw_scope first = scope_of(PROTO_SCOPE_KEY, CG_ERR_OK);
    proto_limit_state f = st_of(PROTO_METRIC_REQUESTS, CG_WIN_SLIDING, 10, 0, 1);
    f.period_end_ms = 10000;
    add_state(&first, f);
    gw_rate_pick fp = gw_scopes_rate_pick(&first, 1, PROTO_METRIC_REQUESTS, 10000, NULL);
    CG_CHECK(fp.found && fp.remaining == 9 && fp.reset_ms == 60000);
    /* A refused or skipped scope does not count; no sliding limits → no rate headers. */
    s[1].st = CG_ERR_BUDGET;
    gw_rate_pick pk = gw_scopes_rate_pick(s, 3, PROTO_METRIC_REQUESTS, 10000, NULL);
    CG_CHECK(pk.found && pk.remaining == 499 && pk.reset_ms == 1500);
    gw_scope bare = scope_of(PROTO_SCOPE_KEY, CG_ERR_OK);
    buf[0] = '\0';
    CG_CHECK_EQ_INT(gw_scopes_headers(&bare, 1, 0, NULL, buf, 0, sizeof(buf)), 0);
    /* Headers that do not fit are left out whole. */
    char small[40] = "";
    n = gw_scopes_headers(s, 1, 10000, NULL, small, 0, sizeof(small));
    CG_CHECK(n == strlen(small));
    CG_CHECK(n == 0 || small[n - 1] == '\n');
}

CG_TEST(budget_left_never_negative)
{
    gw_scope s = scope_of(PROTO_SCOPE_KEY, CG_ERR_OK);
    add_state(&s, st_of(PROTO_METRIC_COST, CG_WIN_LIFETIME, 100, 90, 50));
    int found = 0;
    CG_CHECK_EQ_INT(gw_scopes_budget_left(&s, 1, NULL, &found), 0);
    CG_CHECK(found);
    gw_charge_adj adj = {.cost_nusd = 45};
    CG_CHECK_EQ_INT(gw_scopes_budget_left(&s, 1, &adj, &found), 5);
}

int main(void)
{
    return CG_TEST_RUN(reset_format, first_refusal_in_order, clamp_cost_and_tokens,
                       clamp_rounding_and_fee, clamp_not_possible, rate_headers_least_remaining,
                       budget_left_never_negative);
}
