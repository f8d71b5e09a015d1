/*
 * cli_out.c — how `capgate` prints answers: aligned tables and "field: value"
 * blocks for people, the server's JSON (pretty-printed) or RFC 4180 CSV for
 * scripts. Tables never truncate a value; nested lists (a key's limits) print
 * as their own small table under their field name.
 */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLI_COLS_MAX 32
#define CLI_CELL_MAX 256

void cli_scalar(const cJSON *v, char *buf, size_t cap, int csv)
{
    if (v == NULL || cJSON_IsNull(v)) {
        snprintf(buf, cap, "%s", csv ? "" : "-");
    } else if (cJSON_IsString(v)) {
        snprintf(buf, cap, "%s", v->valuestring);
    } else if (cJSON_IsBool(v)) {
        snprintf(buf, cap, "%s", cJSON_IsTrue(v) ? "true" : "false");
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0) {
            snprintf(buf, cap, "%lld", (long long)d);
        } else {
            snprintf(buf, cap, "%g", d);
        }
    } else if (cJSON_IsArray(v)) {
        size_t o = 0;
        const cJSON *it;
        buf[0] = '\0';
        cJSON_ArrayForEach(it, v)
        {
            char one[CLI_CELL_MAX];
            cli_scalar(it, one, sizeof(one), csv);
            o += (size_t)snprintf(buf + o, o < cap ? cap - o : 0, "%s%s", o ? "," : "", one);
            if (o >= cap) {
                break;
            }
        }
        if (o == 0) {
            snprintf(buf, cap, "%s", csv ? "" : "-");
        }
    } else {
        char *s = cJSON_PrintUnformatted(v);
        snprintf(buf, cap, "%s", s != NULL ? s : "");
        cJSON_free(s);
    }
}

static void cli_csv_field(const char *s, int first)
{
    if (!first) {
        putchar(',');
    }
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, stdout);
        return;
    }
    putchar('"');
    for (; *s; s++) {
        if (*s == '"') {
            putchar('"');
        }
        putchar(*s);
    }
    putchar('"');
}

static int cli_is_scalarish(const cJSON *v)
{
    if (!cJSON_IsArray(v)) {
        return !cJSON_IsObject(v);
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, v)
    {
        if (cJSON_IsObject(it) || cJSON_IsArray(it)) {
            return 0;
        }
    }
    return 1;
}

/* Columns: cols if given, else every scalar field of the first element. */
static int cli_columns(const cJSON *arr, const char *const *cols, const char **out)
{
    int n = 0;
    if (cols != NULL) {
        for (; cols[n] != NULL && n < CLI_COLS_MAX; n++) {
            out[n] = cols[n];
        }
        return n;
    }
    const cJSON *first = cJSON_GetArrayItem(arr, 0), *f;
    cJSON_ArrayForEach(f, first)
    {
        if (n < CLI_COLS_MAX && cli_is_scalarish(f)) {
            out[n++] = f->string;
        }
    }
    return n;
}

static void cli_table(const cJSON *arr, const char *const *cols, int indent, int csv)
{
    const char *c[CLI_COLS_MAX];
    size_t w[CLI_COLS_MAX];
    char cell[CLI_CELL_MAX];
    int n = cli_columns(arr, cols, c);
    const cJSON *row;
    for (int i = 0; i < n; i++) {
        w[i] = strlen(c[i]);
    }
    if (csv) {
        for (int i = 0; i < n; i++) {
            cli_csv_field(c[i], i == 0);
        }
        fputs("\r\n", stdout);
        cJSON_ArrayForEach(row, arr)
        {
            for (int i = 0; i < n; i++) {
                cli_scalar(cJSON_GetObjectItemCaseSensitive(row, c[i]), cell, sizeof(cell), 1);
                cli_csv_field(cell, i == 0);
            }
            fputs("\r\n", stdout);
        }
        return;
    }
    cJSON_ArrayForEach(row, arr)
    {
        for (int i = 0; i < n; i++) {
            cli_scalar(cJSON_GetObjectItemCaseSensitive(row, c[i]), cell, sizeof(cell), 0);
            if (strlen(cell) > w[i]) {
                w[i] = strlen(cell);
            }
        }
    }
    printf("%*s", indent, "");
    for (int i = 0; i < n; i++) {
        char up[CLI_CELL_MAX];
        size_t k;
        for (k = 0; c[i][k] != '\0' && k + 1 < sizeof(up); k++) {
            up[k] = (char)(c[i][k] >= 'a' && c[i][k] <= 'z' ? c[i][k] - 32 : c[i][k]);
        }
        up[k] = '\0';
        printf("%-*s%s", i + 1 < n ? (int)w[i] : 0, up, i + 1 < n ? "  " : "\n");
    }
    cJSON_ArrayForEach(row, arr)
    {
        printf("%*s", indent, "");
        for (int i = 0; i < n; i++) {
            cli_scalar(cJSON_GetObjectItemCaseSensitive(row, c[i]), cell, sizeof(cell), 0);
            printf("%-*s%s", i + 1 < n ? (int)w[i] : 0, cell, i + 1 < n ? "  " : "\n");
        }
    }
}

static void cli_block(const cJSON *o, int indent)
{
    size_t w = 0;
    const cJSON *f;
    char cell[4096];
    cJSON_ArrayForEach(f, o)
    {
        if (cli_is_scalarish(f) && strlen(f->string) > w) {
            w = strlen(f->string);
        }
    }
    cJSON_ArrayForEach(f, o)
    {
        if (cli_is_scalarish(f)) {
            cli_scalar(f, cell, sizeof(cell), 0);
            printf("%*s%-*s  %s\n", indent, "", (int)w + 1, f->string, cell);
        }
    }
    cJSON_ArrayForEach(f, o)
    {
        if (cli_is_scalarish(f)) {
            continue;
        }
        printf("%*s%s:\n", indent, "", f->string);
        if (cJSON_IsArray(f)) {
            if (cJSON_GetArraySize(f) == 0) {
                printf("%*s(none)\n", indent + 2, "");
            } else {
                cli_table(f, NULL, indent + 2, 0);
            }
        } else {
            cli_block(f, indent + 2);
        }
    }
}

void cli_out_object(const cli *c, const cJSON *o)
{
    if (c->format == CLI_FMT_JSON) {
        char *s = cJSON_Print(o);
        printf("%s\n", s != NULL ? s : "null");
        cJSON_free(s);
        return;
    }
    if (c->format == CLI_FMT_CSV) {
        /* One row: the scalar fields of the object. */
        cJSON *arr = cJSON_CreateArray();
        cJSON_AddItemReferenceToArray(arr, (cJSON *)o);
        cli_table(arr, NULL, 0, 1);
        cJSON_Delete(arr);
        return;
    }
    cli_block(o, 0);
}

void cli_out_list(const cli *c, const cJSON *arr, const char *const *cols)
{
    if (c->format == CLI_FMT_JSON) {
        char *s = cJSON_Print(arr);
        printf("%s\n", s != NULL ? s : "[]");
        cJSON_free(s);
        return;
    }
    if (cJSON_GetArraySize(arr) == 0 && c->format == CLI_FMT_TABLE) {
        printf("(none)\n");
        return;
    }
    cli_table(arr, cols, 0, c->format == CLI_FMT_CSV);
}
