/* dwctl's JSON output: one small writer, so every reading command prints
 * the same well-formed JSON that scripts parse back. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dwctl.h"

/* The length of the valid UTF-8 sequence at p, or 0 when it is not one
 * (a stray byte, a truncated or overlong sequence, a surrogate). */
static int utf8_length(const unsigned char *p)
{
    if (p[0] < 0x80)
        return 1;
    int n;
    unsigned char lo = 0x80, hi = 0xbf;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        n = 2;
    else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;
        if (p[0] == 0xe0)
            lo = 0xa0;
        else if (p[0] == 0xed)
            hi = 0x9f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
        if (p[0] == 0xf0)
            lo = 0x90;
        else if (p[0] == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (int i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return n;
}

int utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = utf8_length(p);
        if (!n)
            return 0;
        p += n;
    }
    return 1;
}

void json_quote(sqlite3_str *out, const char *s)
{
    sqlite3_str_appendchar(out, 1, '"');
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = utf8_length(p);
        if (*p == '"' || *p == '\\')
            sqlite3_str_appendf(out, "\\%c", *p);
        else if (*p == '\n')
            sqlite3_str_appendall(out, "\\n");
        else if (*p == '\t')
            sqlite3_str_appendall(out, "\\t");
        else if (*p < 0x20 || *p == 0x7f || n == 0)
            /* Control characters, and bytes that are not UTF-8 (key text
             * and reasons are not checked), as the code point of the same
             * number: the document stays valid JSON. */
            sqlite3_str_appendf(out, "\\u%04x", *p);
        else
            sqlite3_str_append(out, (const char *)p, n);
        p += n ? n : 1;
    }
    sqlite3_str_appendchar(out, 1, '"');
}

static void put_string(FILE *f, const char *s)
{
    sqlite3_str *q = sqlite3_str_new(NULL);
    json_quote(q, s);
    char *text = sqlite3_str_finish(q);
    /* Out of memory: the document would be wrong, so say so loudly. */
    fputs(text ? text : "\"(out of memory)\"", f);
    sqlite3_free(text);
}

/* The comma before a member and its key. */
static void member(json_out *j, const char *key)
{
    if (j->depth > 0 && j->count[j->depth]++ > 0)
        fputc(',', j->f);
    if (key) {
        put_string(j->f, key);
        fputc(':', j->f);
    }
}

void json_start(json_out *j)
{
    memset(j, 0, sizeof *j);
    /* The document is built in memory and printed whole by json_finish():
     * a command that fails halfway prints no broken JSON. */
    j->f = open_memstream(&j->text, &j->size);
    if (!j->f)
        j->f = stdout;
}

void json_drop(json_out *j)
{
    if (j->f && j->f != stdout)
        fclose(j->f);
    free(j->text);
    memset(j, 0, sizeof *j);
}

static void open_level(json_out *j, const char *key, char c)
{
    member(j, key);
    fputc(c, j->f);
    if (j->depth < 31)
        j->count[++j->depth] = 0;
}

void json_object(json_out *j, const char *key) { open_level(j, key, '{'); }

void json_array(json_out *j, const char *key) { open_level(j, key, '['); }

void json_end(json_out *j, char close)
{
    fputc(close, j->f);
    if (j->depth > 0)
        j->depth--;
}

void json_str(json_out *j, const char *key, const char *v)
{
    if (!v) {
        json_null(j, key);
        return;
    }
    member(j, key);
    put_string(j->f, v);
}

void json_int(json_out *j, const char *key, int64_t v)
{
    member(j, key);
    fprintf(j->f, "%lld", (long long)v);
}

void json_num(json_out *j, const char *key, double v)
{
    member(j, key);
    /* JSON has no infinities or NaN. */
    if (isfinite(v))
        fprintf(j->f, "%.17g", v);
    else
        fputs("null", j->f);
}

void json_bool(json_out *j, const char *key, int v)
{
    member(j, key);
    fputs(v ? "true" : "false", j->f);
}

void json_null(json_out *j, const char *key)
{
    member(j, key);
    fputs("null", j->f);
}

void json_raw(json_out *j, const char *key, const char *json)
{
    member(j, key);
    fputs(json, j->f);
}

void json_finish(json_out *j)
{
    fputc('\n', j->f);
    if (j->f != stdout && fclose(j->f) == 0)
        fwrite(j->text, 1, j->size, stdout);
    else if (j->f != stdout)
        fputs("dwctl: out of memory for the JSON output\n", stderr);
    j->f = NULL;
    json_drop(j);
}

void json_close(json_out *j, int rc)
{
    if (rc == DW_OK)
        json_finish(j);
    else
        json_drop(j);
}
