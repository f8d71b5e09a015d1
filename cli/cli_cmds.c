/*
 * cli_cmds.c — the `capgate` commands: each turns its flags into one admin
 * API request (docs/contracts.md, SPEC §5) and prints the answer.
 *
 * Request bodies are built with cJSON from the flags; `--json '{...}'` gives a
 * base object that the flags then override, so every field of the API is
 * reachable even without a dedicated flag. Limits are written as
 * `--limit METRIC:WINDOW:MAX[:ACTION]` (cost:month:200, requests:1m:600,
 * tokens:day:100000:warn); a `--warn-at 0.5,0.8` applies to the `--limit`
 * just before it. Local validation covers only the command line's own syntax
 * (exit 2); everything else is the server's to judge (its 400 names the
 * field, exit 1).
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLI_PATH_MAX 2048
#define CLI_SEG_MAX 600 /* an escaped path segment / query value */

const char *cli_flag_get(const cli_args *a, const char *name)
{
    const char *v = NULL;
    for (int i = 0; i < a->flag_n; i++) {
        if (strcmp(a->flags[i].name, name) == 0) {
            v = a->flags[i].value != NULL ? a->flags[i].value : "";
        }
    }
    return v;
}

int cli_flag_has(const cli_args *a, const char *name)
{
    return cli_flag_get(a, name) != NULL;
}

/* ---- building bodies ---- */

static int cli_int(const char *flag, const char *v, long long min, long long max, long long *out)
{
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (v[0] == '\0' || *end != '\0' || errno != 0 || n < min || n > max) {
        return cli_usage_error("--%s: must be an integer %lld..%lld", flag, min, max) != 0;
    }
    *out = n;
    return 0;
}

/* "0.5,0.8" → [0.5, 0.8]; 1 after printing an error. */
static int cli_warn_at(const char *v, cJSON **out)
{
    cJSON *arr = cJSON_CreateArray();
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", v);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t != NULL;
         t = strtok_r(NULL, ",", &save)) {
        char *end = NULL;
        double d = strtod(t, &end);
        if (*end != '\0' || end == t || !(d > 0 && d <= 1)) {
            cJSON_Delete(arr);
            cli_usage_error("--warn-at: fractions in (0, 1] separated by commas, e.g. 0.5,0.8");
            return 1;
        }
        cJSON_AddItemToArray(arr, cJSON_CreateNumber(d));
    }
    *out = arr;
    return 0;
}

/* METRIC:WINDOW:MAX[:ACTION] → a limit object; 1 after printing an error. */
static int cli_limit_spec(const char *flag, const char *spec, cJSON **out)
{
    char buf[256], *part[5];
    int n = 0;
    snprintf(buf, sizeof(buf), "%s", spec);
    for (char *p = buf; n < 5;) {
        part[n++] = p;
        p = strchr(p, ':');
        if (p == NULL) {
            break;
        }
        *p++ = '\0';
    }
    if (n < 3 || n > 4 || part[1][0] == '\0' ||
        (strcmp(part[0], "cost") != 0 && strcmp(part[0], "tokens") != 0 &&
         strcmp(part[0], "requests") != 0) ||
        (n == 4 && strcmp(part[3], "block") != 0 && strcmp(part[3], "warn") != 0)) {
        cli_usage_error("--%s: METRIC:WINDOW:MAX[:ACTION] with METRIC cost|tokens|requests, "
                        "WINDOW lifetime|day|week|month|<N>s|m|h|d, ACTION block|warn "
                        "(e.g. cost:month:200)",
                        flag);
        return 1;
    }
    cJSON *l = cJSON_CreateObject();
    cJSON_AddStringToObject(l, "metric", part[0]);
    cJSON_AddStringToObject(l, "window", part[1]);
    if (strcmp(part[0], "cost") == 0) {
        char *end = NULL;
        strtod(part[2], &end);
        if (part[2][0] == '\0' || *end != '\0') {
            cJSON_Delete(l);
            cli_usage_error("--%s: MAX of a cost limit is a USD amount (e.g. 200 or 0.50)", flag);
            return 1;
        }
        cJSON_AddStringToObject(l, "max", part[2]);
    } else {
        long long m = 0;
        if (cli_int(flag, part[2], 0, 9007199254740992LL, &m)) {
            cJSON_Delete(l);
            return 1;
        }
        cJSON_AddNumberToObject(l, "max", (double)m);
    }
    if (n == 4) {
        cJSON_AddStringToObject(l, "action", part[3]);
    }
    *out = l;
    return 0;
}

/* Every --<flag> limit (with the --warn-at after each) into body[field] (or into
 * body[parent][field]). Returns 1 after an error. */
static int cli_limits(const cli_args *a, const char *flag, cJSON *body, const char *field)
{
    cJSON *arr = NULL, *last = NULL;
    for (int i = 0; i < a->flag_n; i++) {
        const cli_flag *f = &a->flags[i];
        if (strcmp(f->name, flag) == 0) {
            cJSON *l;
            if (cli_limit_spec(flag, f->value, &l)) {
                cJSON_Delete(arr);
                return 1;
            }
            if (arr == NULL) {
                arr = cJSON_CreateArray();
            }
            cJSON_AddItemToArray(arr, l);
            last = l;
        } else if (strcmp(f->name, "warn-at") == 0 && strcmp(flag, "limit") == 0) {
            cJSON *w;
            if (last == NULL) {
                cJSON_Delete(arr);
                return cli_usage_error("--warn-at applies to the --limit before it") != 0;
            }
            if (cli_warn_at(f->value, &w)) {
                cJSON_Delete(arr);
                return 1;
            }
            cJSON_DeleteItemFromObjectCaseSensitive(last, "warn_at");
            cJSON_AddItemToObject(last, "warn_at", w);
        }
    }
    if (strcmp(flag, "limit") == 0 && cli_flag_has(a, "no-limits")) {
        if (arr != NULL) {
            cJSON_Delete(arr);
            return cli_usage_error("--no-limits and --limit together") != 0;
        }
        arr = cJSON_CreateArray();
    }
    if (arr != NULL) {
        cJSON_DeleteItemFromObjectCaseSensitive(body, field);
        cJSON_AddItemToObject(body, field, arr);
    }
    return 0;
}

/* "a,b,c" → ["a","b","c"] ("" → []). */
static cJSON *cli_list(const char *v)
{
    cJSON *arr = cJSON_CreateArray();
    char *buf = strdup(v);
    for (char *save = NULL, *t = buf != NULL ? strtok_r(buf, ",", &save) : NULL; t != NULL;
         t = strtok_r(NULL, ",", &save)) {
        cJSON_AddItemToArray(arr, cJSON_CreateString(t));
    }
    free(buf);
    return arr;
}

static void cli_set(cJSON *body, const char *field, cJSON *v)
{
    cJSON_DeleteItemFromObjectCaseSensitive(body, field);
    cJSON_AddItemToObject(body, field, v);
}

/* A string flag into body[field] ("" or "none" → null when nullable). */
static void cli_str(const cli_args *a, const char *flag, cJSON *body, const char *field,
                    int nullable)
{
    const char *v = cli_flag_get(a, flag);
    if (v != NULL) {
        int null = nullable && (v[0] == '\0' || strcmp(v, "none") == 0);
        cli_set(body, field, null ? cJSON_CreateNull() : cJSON_CreateString(v));
    }
}

static int cli_num(const cli_args *a, const char *flag, cJSON *body, const char *field,
                   long long min, long long max)
{
    const char *v = cli_flag_get(a, flag);
    long long n = 0;
    if (v == NULL) {
        return 0;
    }
    if (cli_int(flag, v, min, max, &n)) {
        return 1;
    }
    cli_set(body, field, cJSON_CreateNumber((double)n));
    return 0;
}

/* The --json base object (or {}); NULL after an error. */
static cJSON *cli_body_base(const cli_args *a)
{
    const char *j = cli_flag_get(a, "json");
    if (j == NULL) {
        return cJSON_CreateObject();
    }
    cJSON *o = cJSON_Parse(j);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        cli_usage_error("--json: must be a JSON object");
        return NULL;
    }
    return o;
}

/* The key fields shared by create and update. */
static int cli_key_fields(const cli_args *a, cJSON *b)
{
    cli_str(a, "name", b, "name", 0);
    cli_str(a, "group", b, "group", 1);
    cli_str(a, "customer", b, "customer", 1);
    cli_str(a, "expires-at", b, "expires_at", 1);
    cli_str(a, "on-low-budget", b, "on_low_budget", 0);
    const char *lists[][2] = {
        {"allowed-models", "allowed_models"}, {"ip-allow", "ip_allow"}, {"ip-deny", "ip_deny"}};
    for (size_t i = 0; i < 3; i++) {
        const char *v = cli_flag_get(a, lists[i][0]);
        if (v != NULL) {
            cli_set(b, lists[i][1], cli_list(v));
        }
    }
    return cli_num(a, "expires-in-days", b, "expires_in_days", 1, 36500) ||
           cli_num(a, "max-tokens-per-request", b, "max_tokens_per_request", 0, 100000000) ||
           cli_limits(a, "limit", b, "limits");
}

static int cli_org_fields(const cli_args *a, cJSON *b)
{
    cli_str(a, "name", b, "name", 0);
    cli_str(a, "on-low-budget", b, "on_low_budget", 0);
    if (cli_num(a, "billing-anchor-day", b, "billing_anchor_day", 1, 28) ||
        cli_limits(a, "limit", b, "limits")) {
        return 1;
    }
    if (cli_flag_has(a, "customer-limit")) {
        cJSON *cd = cJSON_CreateObject();
        if (cli_limits(a, "customer-limit", cd, "limits")) {
            cJSON_Delete(cd);
            return 1;
        }
        cli_set(b, "customer_defaults", cd);
    }
    if (cli_flag_has(a, "webhook")) {
        cJSON *arr = cJSON_CreateArray();
        cJSON *last = NULL;
        for (int i = 0; i < a->flag_n; i++) {
            if (strcmp(a->flags[i].name, "webhook") == 0) {
                last = cJSON_CreateObject();
                cJSON_AddStringToObject(last, "url", a->flags[i].value);
                cJSON_AddItemToArray(arr, last);
            } else if (strcmp(a->flags[i].name, "webhook-secret") == 0 && last != NULL) {
                cJSON_AddStringToObject(last, "secret", a->flags[i].value);
            }
        }
        cli_set(b, "webhooks", arr);
    }
    if (cli_flag_has(a, "email")) {
        cJSON *arr = cJSON_CreateArray();
        for (int i = 0; i < a->flag_n; i++) {
            if (strcmp(a->flags[i].name, "email") == 0) {
                cJSON_AddItemToArray(arr, cJSON_CreateString(a->flags[i].value));
            }
        }
        cli_set(b, "emails", arr);
    }
    return 0;
}

/* ---- requests ---- */

/* Format a path whose %s arguments are escaped first (at most 3). */
static int cli_path(char *out, size_t cap, const char *fmt, const char *s1, const char *s2,
                    const char *s3)
{
    char e[3][CLI_SEG_MAX];
    const char *in[3] = {s1, s2, s3};
    for (int i = 0; i < 3; i++) {
        e[i][0] = '\0';
        if (in[i] != NULL && !cli_escape(in[i], e[i], sizeof(e[i]))) {
            return cli_usage_error("argument too long: %.40s...", in[i]);
        }
    }
    if ((size_t)snprintf(out, cap, fmt, e[0], e[1], e[2]) >= cap) {
        return cli_usage_error("request too long");
    }
    return 0;
}

/* Send, and on 2xx print the answer as an object; returns the exit code. */
static int cli_do(cli *c, const char *method, const char *path, cJSON *body)
{
    char *s = body != NULL ? cJSON_PrintUnformatted(body) : NULL;
    cli_resp r;
    int rc = cli_http(c, method, path, s, &r);
    cJSON_free(s);
    cJSON_Delete(body);
    if (rc == CLI_EXIT_OK && (r.status < 200 || r.status > 299)) {
        rc = cli_fail(&r);
    } else if (rc == CLI_EXIT_OK) {
        cJSON *j = cJSON_Parse(r.body != NULL ? r.body : "");
        if (j == NULL) {
            fprintf(stderr, "capgate: bad_response: the server's answer is not JSON\n");
            rc = CLI_EXIT_SERVER;
        } else {
            cli_out_object(c, j);
            cJSON_Delete(j);
        }
    }
    cli_resp_free(&r);
    return rc;
}

/* Require --org; NULL after the error. */
static const char *cli_org(const cli_args *a)
{
    const char *o = cli_flag_get(a, "org");
    if (o == NULL || o[0] == '\0') {
        cli_usage_error("--org ORG is required");
        return NULL;
    }
    return o;
}

/* The body: --json with the fields flags set on it; NULL after a usage error. */
static cJSON *cli_body_with(const cli_args *a, int (*fields)(const cli_args *, cJSON *))
{
    cJSON *b = cli_body_base(a);
    if (b != NULL && fields(a, b)) {
        cJSON_Delete(b);
        return NULL;
    }
    return b;
}

/* The body of a create: as cli_body_with, and --id (or "id" of --json) is required. */
static cJSON *cli_body_create(const cli_args *a, int (*fields)(const cli_args *, cJSON *))
{
    cJSON *b = cli_body_base(a);
    if (b == NULL) {
        return NULL;
    }
    cli_str(a, "id", b, "id", 0);
    if (cJSON_GetObjectItemCaseSensitive(b, "id") == NULL) {
        cJSON_Delete(b);
        cli_usage_error("--id ID is required");
        return NULL;
    }
    if (fields(a, b)) {
        cJSON_Delete(b);
        return NULL;
    }
    return b;
}

/* method on fmt with the positional argument in its %s; consumes body. */
static int cmd_pos(cli *c, const cli_args *a, const char *method, const char *fmt, cJSON *body)
{
    char p[CLI_PATH_MAX];
    if (cli_path(p, sizeof(p), fmt, a->pos[0], NULL, NULL)) {
        cJSON_Delete(body);
        return CLI_EXIT_USAGE;
    }
    return cli_do(c, method, p, body);
}

/* ---- orgs ---- */

static int cmd_orgs_create(cli *c, const cli_args *a)
{
    cJSON *b = cli_body_create(a, cli_org_fields);
    return b == NULL ? CLI_EXIT_USAGE : cli_do(c, "POST", "/admin/v1/orgs", b);
}

static int cmd_orgs_show(cli *c, const cli_args *a)
{
    return cmd_pos(c, a, "GET", "/admin/v1/orgs/%s", NULL);
}

static int cmd_orgs_update(cli *c, const cli_args *a)
{
    cJSON *b = cli_body_with(a, cli_org_fields);
    return b == NULL ? CLI_EXIT_USAGE : cmd_pos(c, a, "PATCH", "/admin/v1/orgs/%s", b);
}

static int cmd_orgs_delete(cli *c, const cli_args *a)
{
    return cmd_pos(c, a, "DELETE", "/admin/v1/orgs/%s", NULL);
}

/* ---- keys ---- */

static int cmd_keys_create(cli *c, const cli_args *a)
{
    char p[CLI_PATH_MAX];
    const char *org = cli_org(a);
    cJSON *b = org != NULL ? cli_body_with(a, cli_key_fields) : NULL;
    if (b == NULL || cli_path(p, sizeof(p), "/admin/v1/orgs/%s/keys", org, NULL, NULL)) {
        cJSON_Delete(b);
        return CLI_EXIT_USAGE;
    }
    int rc = cli_do(c, "POST", p, b);
    if (rc == CLI_EXIT_OK && c->format == CLI_FMT_TABLE) {
        fprintf(stderr, "capgate: the key above is shown only once; store it now\n");
    }
    return rc;
}

static const char *const cli_key_cols[] = {"id",      "name",       "group",      "customer",
                                           "revoked", "expires_at", "created_at", NULL};

/* GET one page of keys; *next receives next_after (heap) or NULL. */
static int cli_keys_page(cli *c, const char *org, const char *after, long long limit, cJSON *all,
                         char **next)
{
    char p[CLI_PATH_MAX], q[CLI_SEG_MAX + 64] = "";
    cli_resp r;
    *next = NULL;
    if (after != NULL) {
        char e[CLI_SEG_MAX];
        if (!cli_escape(after, e, sizeof(e))) {
            return cli_usage_error("--after: too long");
        }
        snprintf(q, sizeof(q), "&after=%s", e);
    }
    char lim[32];
    snprintf(lim, sizeof(lim), "?limit=%lld", limit);
    if (cli_path(p, sizeof(p), "/admin/v1/orgs/%s/keys", org, NULL, NULL) ||
        strlen(p) + strlen(lim) + strlen(q) >= sizeof(p)) {
        return CLI_EXIT_USAGE;
    }
    strcat(p, lim);
    strcat(p, q);
    int rc = cli_http(c, "GET", p, NULL, &r);
    if (rc == CLI_EXIT_OK && r.status != 200) {
        rc = cli_fail(&r);
    } else if (rc == CLI_EXIT_OK) {
        cJSON *j = cJSON_Parse(r.body != NULL ? r.body : "");
        cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
        cJSON *na = cJSON_GetObjectItemCaseSensitive(j, "next_after");
        cJSON *more = cJSON_GetObjectItemCaseSensitive(j, "has_more");
        if (!cJSON_IsArray(data)) {
            fprintf(stderr, "capgate: bad_response: no key list in the answer\n");
            rc = CLI_EXIT_SERVER;
        } else {
            cJSON *it;
            while ((it = cJSON_DetachItemFromArray(data, 0)) != NULL) {
                cJSON_AddItemToArray(all, it);
            }
            if (cJSON_IsTrue(more) && cJSON_IsString(na)) {
                *next = strdup(na->valuestring);
            }
        }
        cJSON_Delete(j);
    }
    cli_resp_free(&r);
    return rc;
}

static int cmd_keys_list(cli *c, const cli_args *a)
{
    const char *org = cli_org(a);
    long long limit = 100;
    const char *lv = cli_flag_get(a, "limit");
    if (org == NULL || (lv != NULL && cli_int("limit", lv, 1, 1000, &limit))) {
        return CLI_EXIT_USAGE;
    }
    cJSON *all = cJSON_CreateArray();
    char *after = cli_flag_get(a, "after") != NULL ? strdup(cli_flag_get(a, "after")) : NULL;
    char *next = NULL;
    int rc;
    for (;;) {
        rc = cli_keys_page(c, org, after, limit, all, &next);
        free(after);
        after = next;
        if (rc != CLI_EXIT_OK || next == NULL || !cli_flag_has(a, "all")) {
            break;
        }
    }
    if (rc == CLI_EXIT_OK) {
        cli_out_list(c, all, cli_key_cols);
        if (after != NULL) {
            fprintf(stderr, "capgate: more keys: --after %s (or --all)\n", after);
        }
    }
    free(after);
    cJSON_Delete(all);
    return rc;
}

static int cmd_keys_show(cli *c, const cli_args *a)
{
    return cmd_pos(c, a, "GET", "/admin/v1/keys/%s", NULL);
}

static int cmd_keys_update(cli *c, const cli_args *a)
{
    cJSON *b = cli_body_with(a, cli_key_fields);
    return b == NULL ? CLI_EXIT_USAGE : cmd_pos(c, a, "PATCH", "/admin/v1/keys/%s", b);
}

static int cmd_keys_rotate(cli *c, const cli_args *a)
{
    cJSON *b = cJSON_CreateObject();
    if (cli_num(a, "grace-s", b, "grace_s", 0, 2592000)) {
        cJSON_Delete(b);
        return CLI_EXIT_USAGE;
    }
    int rc = cmd_pos(c, a, "POST", "/admin/v1/keys/%s/rotate", b);
    if (rc == CLI_EXIT_OK && c->format == CLI_FMT_TABLE) {
        fprintf(stderr, "capgate: the new key above is shown only once; store it now\n");
    }
    return rc;
}

static int cmd_keys_revoke(cli *c, const cli_args *a)
{
    return cmd_pos(c, a, "POST", "/admin/v1/keys/%s/revoke", NULL);
}

static int cmd_keys_delete(cli *c, const cli_args *a)
{
    return cmd_pos(c, a, "DELETE", "/admin/v1/keys/%s", NULL);
}

/* ---- groups and customers ---- */

static int cmd_org_sub(cli *c, const cli_args *a, const char *method, const char *fmt, cJSON *body)
{
    char p[CLI_PATH_MAX];
    const char *org = cli_org(a);
    if (org == NULL || cli_path(p, sizeof(p), fmt, org, a->pos_n > 0 ? a->pos[0] : NULL, NULL)) {
        cJSON_Delete(body);
        return CLI_EXIT_USAGE;
    }
    return cli_do(c, method, p, body);
}

static int cli_group_fields(const cli_args *a, cJSON *b)
{
    cli_str(a, "name", b, "name", 0);
    if (cli_flag_has(a, "allowed-models")) {
        cli_set(b, "allowed_models", cli_list(cli_flag_get(a, "allowed-models")));
    }
    return cli_limits(a, "limit", b, "limits");
}

static int cmd_groups_create(cli *c, const cli_args *a)
{
    cJSON *b = cli_body_create(a, cli_group_fields);
    return b == NULL ? CLI_EXIT_USAGE : cmd_org_sub(c, a, "POST", "/admin/v1/orgs/%s/groups", b);
}

static int cmd_groups_show(cli *c, const cli_args *a)
{
    return cmd_org_sub(c, a, "GET", "/admin/v1/orgs/%s/groups/%s", NULL);
}

static int cmd_groups_update(cli *c, const cli_args *a)
{
    cJSON *b = cli_body_with(a, cli_group_fields);
    return b == NULL ? CLI_EXIT_USAGE
                     : cmd_org_sub(c, a, "PATCH", "/admin/v1/orgs/%s/groups/%s", b);
}

static int cmd_groups_delete(cli *c, const cli_args *a)
{
    return cmd_org_sub(c, a, "DELETE", "/admin/v1/orgs/%s/groups/%s", NULL);
}

/* A customer override's only field: its limits. */
static int cli_customer_fields(const cli_args *a, cJSON *b)
{
    return cli_limits(a, "limit", b, "limits");
}

static int cmd_customers_set(cli *c, const cli_args *a)
{
    cJSON *b = cli_body_with(a, cli_customer_fields);
    return b == NULL ? CLI_EXIT_USAGE
                     : cmd_org_sub(c, a, "PUT", "/admin/v1/orgs/%s/customers/%s", b);
}

static int cmd_customers_show(cli *c, const cli_args *a)
{
    return cmd_org_sub(c, a, "GET", "/admin/v1/orgs/%s/customers/%s", NULL);
}

static int cmd_customers_delete(cli *c, const cli_args *a)
{
    return cmd_org_sub(c, a, "DELETE", "/admin/v1/orgs/%s/customers/%s", NULL);
}

/* ---- pricing ---- */

static int cli_get_list(cli *c, const char *path, const char *const *cols, int csv_raw)
{
    cli_resp r;
    int rc = cli_http(c, "GET", path, NULL, &r);
    if (rc == CLI_EXIT_OK && r.status != 200) {
        rc = cli_fail(&r);
    } else if (rc == CLI_EXIT_OK && csv_raw) {
        fwrite(r.body != NULL ? r.body : "", 1, r.len, stdout);
    } else if (rc == CLI_EXIT_OK) {
        cJSON *j = cJSON_Parse(r.body != NULL ? r.body : "");
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
        if (c->format == CLI_FMT_JSON && j != NULL) {
            cli_out_object(c, j);
        } else if (!cJSON_IsArray(data)) {
            fprintf(stderr, "capgate: bad_response: no list in the answer\n");
            rc = CLI_EXIT_SERVER;
        } else {
            cli_out_list(c, data, cols);
            if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "has_more"))) {
                fprintf(stderr, "capgate: more records match: raise --limit or narrow "
                                "--from/--to\n");
            }
        }
        cJSON_Delete(j);
    }
    cli_resp_free(&r);
    return rc;
}

static int cmd_pricing_list(cli *c, const cli_args *a)
{
    static const char *const cols[] = {
        "model",  "provider", "input_per_mtok", "output_per_mtok", "max_output_tokens",
        "source", NULL};
    (void)a;
    return cli_get_list(c, "/admin/v1/pricing", cols, 0);
}

static int cmd_pricing_set(cli *c, const cli_args *a)
{
    const char *in = cli_flag_get(a, "input"), *out = cli_flag_get(a, "output");
    if (in == NULL || out == NULL) {
        return cli_usage_error("--input USD and --output USD (per million tokens) are required");
    }
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "input_per_mtok", in);
    cJSON_AddStringToObject(b, "output_per_mtok", out);
    return cmd_pos(c, a, "PUT", "/admin/v1/pricing/%s", b);
}

/* ---- usage ---- */

/* The filters as a query string (format added when csv). */
static int cli_usage_query(const cli *c, const cli_args *a, const char *base, int records,
                           char *out, size_t cap)
{
    static const char *const names[][2] = {
        {"org", "org"},           {"key", "key"},     {"group", "group"},
        {"customer", "customer"}, {"model", "model"}, {"provider", "provider"},
        {"from", "from"},         {"to", "to"},       {"granularity", "granularity"},
        {"group-by", "group_by"}, {"limit", "limit"},
    };
    size_t o = (size_t)snprintf(out, cap, "%s", base);
    char sep = '?';
    if (cli_org(a) == NULL) {
        return CLI_EXIT_USAGE;
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = cli_flag_get(a, names[i][0]);
        char e[CLI_SEG_MAX];
        if (v == NULL || (records && i >= 8 && i <= 9) || (!records && i == 10)) {
            continue;
        }
        if (!cli_escape(v, e, sizeof(e))) {
            return cli_usage_error("--%s: too long", names[i][0]);
        }
        o += (size_t)snprintf(out + o, o < cap ? cap - o : 0, "%c%s=%s", sep, names[i][1], e);
        sep = '&';
    }
    if (c->format == CLI_FMT_CSV) {
        o += (size_t)snprintf(out + o, o < cap ? cap - o : 0, "%cformat=csv", sep);
    }
    return o < cap ? CLI_EXIT_OK : cli_usage_error("request too long");
}

static void cli_usage_table(const cJSON *j)
{
    const cJSON *series = cJSON_GetObjectItemCaseSensitive(j, "series");
    const cJSON *gran = cJSON_GetObjectItemCaseSensitive(j, "granularity");
    const cJSON *by = cJSON_GetObjectItemCaseSensitive(j, "group_by");
    const char *cols[8];
    int n = 0;
    char buf[64];
    if (!cJSON_IsArray(series)) {
        static const char *const keep[] = {
            "org", "from", "to", "requests", "prompt_tokens", "completion_tokens", "cost"};
        for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
            cli_scalar(cJSON_GetObjectItemCaseSensitive(j, keep[i]), buf, sizeof(buf), 0);
            printf("%-18s %s\n", keep[i], buf);
        }
        return;
    }
    if (cJSON_IsString(gran)) {
        cols[n++] = "start";
    }
    if (cJSON_IsString(by)) {
        cols[n++] = by->valuestring;
    }
    cols[n++] = "requests";
    cols[n++] = "prompt_tokens";
    cols[n++] = "completion_tokens";
    cols[n++] = "cost";
    cols[n] = NULL;
    cli t = {.format = CLI_FMT_TABLE};
    cli_out_list(&t, series, cols);
    printf("total: requests %s",
           (cli_scalar(cJSON_GetObjectItemCaseSensitive(j, "requests"), buf, sizeof(buf), 0), buf));
    cli_scalar(cJSON_GetObjectItemCaseSensitive(j, "prompt_tokens"), buf, sizeof(buf), 0);
    printf(", prompt_tokens %s", buf);
    cli_scalar(cJSON_GetObjectItemCaseSensitive(j, "completion_tokens"), buf, sizeof(buf), 0);
    printf(", completion_tokens %s", buf);
    cli_scalar(cJSON_GetObjectItemCaseSensitive(j, "cost"), buf, sizeof(buf), 0);
    printf(", cost %s USD\n", buf);
}

static int cmd_usage(cli *c, const cli_args *a)
{
    char q[CLI_PATH_MAX * 2];
    cli_resp r;
    int rc = cli_usage_query(c, a, "/admin/v1/usage", 0, q, sizeof(q));
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    rc = cli_http(c, "GET", q, NULL, &r);
    if (rc == CLI_EXIT_OK && r.status != 200) {
        rc = cli_fail(&r);
    } else if (rc == CLI_EXIT_OK && c->format == CLI_FMT_CSV) {
        fwrite(r.body != NULL ? r.body : "", 1, r.len, stdout);
    } else if (rc == CLI_EXIT_OK) {
        cJSON *j = cJSON_Parse(r.body != NULL ? r.body : "");
        if (j == NULL) {
            fprintf(stderr, "capgate: bad_response: the server's answer is not JSON\n");
            rc = CLI_EXIT_SERVER;
        } else if (c->format == CLI_FMT_JSON) {
            cli_out_object(c, j);
        } else {
            cli_usage_table(j);
        }
        cJSON_Delete(j);
    }
    cli_resp_free(&r);
    return rc;
}

static int cmd_usage_records(cli *c, const cli_args *a)
{
    static const char *const cols[] = {"time",
                                       "key",
                                       "model",
                                       "provider",
                                       "customer",
                                       "prompt_tokens",
                                       "completion_tokens",
                                       "cost",
                                       "status",
                                       "latency_ms",
                                       "estimated",
                                       NULL};
    char q[CLI_PATH_MAX * 2];
    long long lim;
    const char *lv = cli_flag_get(a, "limit");
    if (lv != NULL && cli_int("limit", lv, 1, 100000, &lim)) {
        return CLI_EXIT_USAGE;
    }
    int rc = cli_usage_query(c, a, "/admin/v1/usage/records", 1, q, sizeof(q));
    return rc != CLI_EXIT_OK ? rc : cli_get_list(c, q, cols, c->format == CLI_FMT_CSV);
}

/* ---- the table ---- */

#define LIMIT_HELP                                                                            \
    "  --limit METRIC:WINDOW:MAX[:ACTION]  repeatable; METRIC cost|tokens|requests, WINDOW\n" \
    "                      lifetime|day|week|month|<N>s|m|h|d, MAX in USD for cost,\n"        \
    "                      ACTION block (default) or warn. e.g. --limit cost:month:200\n"     \
    "  --warn-at F[,F...]  warning thresholds of the --limit just before, e.g. 0.8\n"         \
    "  --json OBJECT       base request body; the flags override its fields\n"

#define FILTER_HELP                                                                \
    "  --org ORG           required\n"                                             \
    "  --key ID --group ID --customer ID --model NAME --provider NAME   filters\n" \
    "  --from T --to T     RFC 3339 time or YYYY-MM-DD (UTC); [from, to), to = now\n"

static const char *const f_org[] = {"id=",
                                    "name=",
                                    "billing-anchor-day=",
                                    "limit=",
                                    "warn-at=",
                                    "no-limits",
                                    "customer-limit=",
                                    "on-low-budget=",
                                    "webhook=",
                                    "webhook-secret=",
                                    "email=",
                                    "json=",
                                    NULL};
static const char *const f_key[] = {"org=",
                                    "name=",
                                    "group=",
                                    "customer=",
                                    "expires-at=",
                                    "expires-in-days=",
                                    "allowed-models=",
                                    "ip-allow=",
                                    "ip-deny=",
                                    "max-tokens-per-request=",
                                    "on-low-budget=",
                                    "limit=",
                                    "warn-at=",
                                    "no-limits",
                                    "json=",
                                    NULL};
static const char *const f_none[] = {NULL};
static const char *const f_list[] = {"org=", "limit=", "after=", "all", NULL};
static const char *const f_rotate[] = {"grace-s=", NULL};
static const char *const f_orgonly[] = {"org=", NULL};
static const char *const f_group[] = {
    "org=", "id=", "name=", "allowed-models=", "limit=", "warn-at=", "no-limits", "json=", NULL};
static const char *const f_cust[] = {"org=", "limit=", "no-limits", "json=", NULL};
static const char *const f_price[] = {"input=", "output=", NULL};
static const char *const f_usage[] = {
    "org=",  "key=", "group=",       "customer=", "model=", "provider=",
    "from=", "to=",  "granularity=", "group-by=", NULL};
static const char *const f_records[] = {
    "org=", "key=", "group=", "customer=", "model=", "provider=", "from=", "to=", "limit=", NULL};

const cli_cmd cli_cmds[] = {
    {"orgs", "create", "orgs create --id ID [--name NAME] [flags]",
     "  --id ID --name NAME --billing-anchor-day 1..28 --on-low-budget reject|clamp\n"
     "  --customer-limit SPEC  customer_defaults limit (repeatable, same syntax as --limit)\n"
     "  --webhook URL [--webhook-secret whsec_...]  (repeatable) --email ADDR "
     "(repeatable)\n" LIMIT_HELP,
     f_org, 0, 0, cmd_orgs_create},
    {"orgs", "show", "orgs show ORG", "", f_none, 1, 1, cmd_orgs_show},
    {"orgs", "update", "orgs update ORG [flags]",
     "  the flags of `orgs create` (but --id); --no-limits removes every limit\n" LIMIT_HELP, f_org,
     1, 1, cmd_orgs_update},
    {"orgs", "delete", "orgs delete ORG",
     "  refused (exit 4, org_not_empty) while the org has keys, revoked ones too\n", f_none, 1, 1,
     cmd_orgs_delete},
    {"keys", "create", "keys create --org ORG [--name NAME] [flags]",
     "  --name NAME --group ID --customer ID --expires-at T | --expires-in-days N\n"
     "  --allowed-models M1,M2 --ip-allow CIDR,.. --ip-deny CIDR,..\n"
     "  --max-tokens-per-request N --on-low-budget inherit|reject|clamp\n" LIMIT_HELP,
     f_key, 0, 0, cmd_keys_create},
    {"keys", "list", "keys list --org ORG [--limit N] [--after KEY_ID] [--all]",
     "  --limit 1..1000 keys per page (100); --all follows every page\n", f_list, 0, 0,
     cmd_keys_list},
    {"keys", "show", "keys show KEY_ID", "", f_none, 1, 1, cmd_keys_show},
    {"keys", "update", "keys update KEY_ID [flags]",
     "  the flags of `keys create` (but --org); an empty value clears group, customer,\n"
     "  expires-at; --allowed-models \"\" clears the list; --no-limits removes every "
     "limit\n" LIMIT_HELP,
     f_key, 1, 1, cmd_keys_update},
    {"keys", "rotate", "keys rotate KEY_ID [--grace-s SECONDS]",
     "  --grace-s N  how long the previous secret keeps working (server default 86400)\n", f_rotate,
     1, 1, cmd_keys_rotate},
    {"keys", "revoke", "keys revoke KEY_ID", "", f_none, 1, 1, cmd_keys_revoke},
    {"keys", "delete", "keys delete KEY_ID", "", f_none, 1, 1, cmd_keys_delete},
    {"groups", "create", "groups create --org ORG --id ID [--name NAME] [flags]",
     "  --allowed-models M1,M2\n" LIMIT_HELP, f_group, 0, 0, cmd_groups_create},
    {"groups", "show", "groups show --org ORG GROUP", "", f_orgonly, 1, 1, cmd_groups_show},
    {"groups", "update", "groups update --org ORG GROUP [flags]",
     "  --name NAME --allowed-models M1,M2 --no-limits\n" LIMIT_HELP, f_group, 1, 1,
     cmd_groups_update},
    {"groups", "delete", "groups delete --org ORG GROUP", "", f_orgonly, 1, 1, cmd_groups_delete},
    {"customers", "set", "customers set --org ORG CUSTOMER --limit SPEC...",
     "  replaces the customer's override limits (--no-limits: an empty override)\n" LIMIT_HELP,
     f_cust, 1, 1, cmd_customers_set},
    {"customers", "show", "customers show --org ORG CUSTOMER", "", f_orgonly, 1, 1,
     cmd_customers_show},
    {"customers", "delete", "customers delete --org ORG CUSTOMER", "", f_orgonly, 1, 1,
     cmd_customers_delete},
    {"pricing", "list", "pricing list", "", f_none, 0, 0, cmd_pricing_list},
    {"pricing", "set", "pricing set MODEL --input USD --output USD",
     "  USD per million prompt (input) / completion (output) tokens\n", f_price, 1, 1,
     cmd_pricing_set},
    {"usage", NULL, "usage --org ORG [filters] [--granularity G] [--group-by F]",
     FILTER_HELP "  --granularity hour|day|month   a time series\n"
                 "  --group-by key|model|provider|customer|group\n",
     f_usage, 0, 0, cmd_usage},
    {"usage", "records", "usage records --org ORG [filters] [--limit N]",
     FILTER_HELP "  --limit 1..100000 records, oldest first (1000)\n", f_records, 0, 0,
     cmd_usage_records},
};

const int cli_cmd_n = (int)(sizeof(cli_cmds) / sizeof(cli_cmds[0]));
