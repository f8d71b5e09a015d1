/*
 * cli_main.c — `capgate`, the command-line client of the admin API:
 *
 *   capgate [--url URL] [--token TOKEN | --token-file FILE] [--format table|json|csv]
 *           NOUN VERB [flags] [args]
 *
 * The global options may appear anywhere on the line. URL and token default to
 * CAPGATE_ADMIN_URL (else http://127.0.0.1:8081) and CAPGATE_ADMIN_TOKEN. `--help`
 * (or -h) at any level prints that level's help and exits 0. Exit codes: cli.h.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#define CLI_DEFAULT_URL "http://127.0.0.1:8081"

static const char *const cli_nouns[] = {"orgs", "keys", "groups", "customers", "pricing", "usage"};
#define CLI_NOUN_N (sizeof(cli_nouns) / sizeof(cli_nouns[0]))

static void cli_help_top(void)
{
    printf("usage: capgate [--url URL] [--token TOKEN | --token-file FILE]\n"
           "               [--format table|json|csv] NOUN VERB [flags]\n\n"
           "The command-line client of capgate's admin API.\n\n"
           "Nouns:\n"
           "  orgs       create, show, update, delete\n"
           "  keys       create, list, show, update, rotate, revoke, delete\n"
           "  groups     create, show, update, delete\n"
           "  customers  set, show, delete (per-customer limit overrides)\n"
           "  pricing    list, set\n"
           "  usage      totals and time series; `usage records` for raw records\n\n"
           "Global options (anywhere on the line):\n"
           "  --url URL          admin API base URL (CAPGATE_ADMIN_URL, default %s)\n"
           "  --token TOKEN      admin token (CAPGATE_ADMIN_TOKEN)\n"
           "  --token-file FILE  read the admin token from FILE (first line)\n"
           "  --format F         table (default, for people), json or csv (for scripts)\n"
           "  --help, -h         help of any noun or command\n\n"
           "Exit codes: 0 ok, 1 refused by the API (4xx), 2 bad command line, 3 not found,\n"
           "4 conflict, 5 server error or unreachable.\n"
           "Example: capgate keys create --org acme --name team-search "
           "--limit cost:month:200 --warn-at 0.8\n",
           CLI_DEFAULT_URL);
}

static void cli_help_noun(const char *noun)
{
    printf("usage:\n");
    for (int i = 0; i < cli_cmd_n; i++) {
        if (strcmp(cli_cmds[i].noun, noun) == 0) {
            printf("  capgate %s\n", cli_cmds[i].synopsis);
        }
    }
    printf("\n`capgate %s VERB --help` describes a command's flags.\n", noun);
}

static void cli_help_cmd(const cli_cmd *cmd)
{
    printf("usage: capgate %s\n", cmd->synopsis);
    if (cmd->help[0] != '\0') {
        printf("\n%s", cmd->help);
    }
    printf("\nGlobal options: --url, --token, --token-file, --format table|json|csv "
           "(see capgate --help)\n");
}

/* Match "--name" or "--name=value" against flag spec s ("name" or "name="). */
static int cli_flag_match(const char *arg, const char *s, const char **inline_v, int *takes)
{
    size_t sl = strlen(s);
    *takes = sl > 0 && s[sl - 1] == '=';
    size_t nl = *takes ? sl - 1 : sl;
    const char *eq = strchr(arg, '=');
    size_t al = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
    if (al != nl || strncmp(arg, s, nl) != 0) {
        return 0;
    }
    *inline_v = eq != NULL ? eq + 1 : NULL;
    return 1;
}

/* Parse the command's flags and positionals from argv[0..argc). */
static int cli_parse(const cli_cmd *cmd, int argc, char **argv, cli_args *a)
{
    memset(a, 0, sizeof(*a));
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            if (a->pos_n == cmd->pos_max) {
                return cli_usage_error("unexpected argument '%s' for 'capgate %s%s%s'", arg,
                                       cmd->noun, cmd->verb ? " " : "", cmd->verb ? cmd->verb : "");
            }
            a->pos[a->pos_n++] = arg;
            continue;
        }
        const char *iv = NULL;
        int takes = 0, found = 0;
        for (const char *const *f = cmd->flags; *f != NULL && !found; f++) {
            if (cli_flag_match(arg + 2, *f, &iv, &takes)) {
                found = 1;
                if (a->flag_n == CLI_FLAGS_MAX) {
                    return cli_usage_error("too many flags");
                }
                cli_flag *fl = &a->flags[a->flag_n++];
                fl->name = *f; /* the spec string; its '=' is stripped below */
                if (takes) {
                    if (iv == NULL && i + 1 >= argc) {
                        return cli_usage_error("%s needs a value", arg);
                    }
                    fl->value = iv != NULL ? iv : argv[++i];
                } else if (iv != NULL) {
                    return cli_usage_error("%.*s takes no value", (int)(strchr(arg, '=') - arg),
                                           arg);
                }
            }
        }
        if (!found) {
            return cli_usage_error("unknown flag %s for 'capgate %s%s%s'", arg, cmd->noun,
                                   cmd->verb ? " " : "", cmd->verb ? cmd->verb : "");
        }
    }
    if (a->pos_n < cmd->pos_min) {
        return cli_usage_error("missing argument: capgate %s", cmd->synopsis);
    }
    return CLI_EXIT_OK;
}

/* Flag names are stored as their spec ("name="): compare without the '='. The lookup in
 * cli_cmds.c uses plain names, so strip here into a per-flag copy. */
static char cli_names[CLI_FLAGS_MAX][64];
static void cli_strip_names(cli_args *a)
{
    for (int i = 0; i < a->flag_n; i++) {
        snprintf(cli_names[i], sizeof(cli_names[i]), "%s", a->flags[i].name);
        size_t n = strlen(cli_names[i]);
        if (n > 0 && cli_names[i][n - 1] == '=') {
            cli_names[i][n - 1] = '\0';
        }
        a->flags[i].name = cli_names[i];
    }
}

static int cli_read_token_file(cli *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return cli_usage_error("--token-file: cannot read %s", path);
    }
    if (fgets(c->token, sizeof(c->token), f) == NULL) {
        c->token[0] = '\0';
    }
    fclose(f);
    c->token[strcspn(c->token, "\r\n")] = '\0';
    return CLI_EXIT_OK;
}

/* Take the global options out of argv (in place); *help set by --help/-h. */
static int cli_globals(cli *c, int *argc, char **argv, int *help)
{
    int o = 0;
    const char *token_file = NULL;
    for (int i = 0; i < *argc; i++) {
        const char *arg = argv[i];
        const char *names[] = {"url", "token", "token-file", "format"};
        int hit = -1;
        const char *v = NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            *help = 1;
            continue;
        }
        for (int k = 0; k < 4 && hit < 0 && strncmp(arg, "--", 2) == 0; k++) {
            size_t n = strlen(names[k]);
            if (strncmp(arg + 2, names[k], n) == 0 && (arg[2 + n] == '\0' || arg[2 + n] == '=')) {
                hit = k;
                v = arg[2 + n] == '=' ? arg + 3 + n : NULL;
            }
        }
        if (hit < 0) {
            argv[o++] = argv[i];
            continue;
        }
        if (v == NULL) {
            if (i + 1 >= *argc) {
                return cli_usage_error("--%s needs a value", names[hit]);
            }
            v = argv[++i];
        }
        if (hit == 0) {
            c->url = v;
        } else if (hit == 1) {
            snprintf(c->token, sizeof(c->token), "%s", v);
        } else if (hit == 2) {
            token_file = v;
        } else if (strcmp(v, "table") == 0 || strcmp(v, "json") == 0 || strcmp(v, "csv") == 0) {
            c->format = v[0] == 't' ? CLI_FMT_TABLE : v[0] == 'j' ? CLI_FMT_JSON : CLI_FMT_CSV;
            c->format_given = 1;
        } else {
            return cli_usage_error("--format: table, json or csv");
        }
    }
    *argc = o;
    if (token_file != NULL && cli_read_token_file(c, token_file) != CLI_EXIT_OK) {
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

static const cli_cmd *cli_find(const char *noun, const char *verb)
{
    for (int i = 0; i < cli_cmd_n; i++) {
        const cli_cmd *k = &cli_cmds[i];
        if (strcmp(k->noun, noun) == 0 && ((verb == NULL && k->verb == NULL) ||
                                           (verb && k->verb && strcmp(k->verb, verb) == 0))) {
            return k;
        }
    }
    return NULL;
}

static int cli_run(int argc, char **argv)
{
    cli c = {.format = CLI_FMT_TABLE};
    int help = 0, rc;
    cli_args a;
    const char *env_tok = getenv("CAPGATE_ADMIN_TOKEN");
    c.url = getenv("CAPGATE_ADMIN_URL");
    if (env_tok != NULL) {
        snprintf(c.token, sizeof(c.token), "%s", env_tok);
    }
    if ((rc = cli_globals(&c, &argc, argv, &help)) != CLI_EXIT_OK) {
        return rc;
    }
    if (c.url == NULL || c.url[0] == '\0') {
        c.url = CLI_DEFAULT_URL;
    }
    if (argc == 0) {
        cli_help_top();
        return help ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    }
    const char *noun = argv[0];
    size_t ni;
    for (ni = 0; ni < CLI_NOUN_N && strcmp(cli_nouns[ni], noun) != 0; ni++) {
    }
    if (ni == CLI_NOUN_N) {
        if (help) {
            cli_help_top();
            return CLI_EXIT_OK;
        }
        return cli_usage_error("unknown command '%s'", noun);
    }
    /* usage: the noun alone is a command; "usage records" is the other. */
    const char *verb = argc > 1 && strncmp(argv[1], "-", 1) != 0 ? argv[1] : NULL;
    const cli_cmd *cmd = cli_find(noun, verb);
    int skip = verb != NULL ? 2 : 1;
    if (cmd == NULL && strcmp(noun, "usage") == 0) {
        cmd = cli_find(noun, NULL);
        skip = 1;
    }
    if (cmd == NULL) {
        if (help || verb == NULL) {
            cli_help_noun(noun);
            return help ? CLI_EXIT_OK : CLI_EXIT_USAGE;
        }
        return cli_usage_error("unknown command 'capgate %s %s'", noun, verb);
    }
    if (help) {
        cli_help_cmd(cmd);
        return CLI_EXIT_OK;
    }
    if ((rc = cli_parse(cmd, argc - skip, argv + skip, &a)) != CLI_EXIT_OK) {
        return rc;
    }
    cli_strip_names(&a);
    if (c.token[0] == '\0') {
        return cli_usage_error("no admin token: --token, --token-file or CAPGATE_ADMIN_TOKEN");
    }
    return cmd->fn(&c, &a);
}

int main(int argc, char **argv)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "capgate: internal_error: cannot initialise libcurl\n");
        return CLI_EXIT_SERVER;
    }
    int rc = cli_run(argc - 1, argv + 1);
    curl_global_cleanup();
    fflush(stdout);
    return rc;
}
