/* Growable strings for SQL text, keys, specs and log lines. */
#include <ctype.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

void dw_buf_init(dw_buf *b) { memset(b, 0, sizeof *b); }

void dw_buf_free(dw_buf *b)
{
    dw__free(b->p);
    dw_buf_init(b);
}

void dw_buf_reset(dw_buf *b)
{
    b->len = 0;
    b->oom = 0;
    if (b->p)
        b->p[0] = '\0';
}

static int grow(dw_buf *b, size_t extra)
{
    if (b->oom)
        return 0;
    if (b->len + extra + 1 <= b->cap)
        return 1;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = dw__realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return 0;
    }
    b->p = p;
    b->cap = cap;
    return 1;
}

void dw_buf_add(dw_buf *b, const char *s, size_t n)
{
    if (!grow(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void dw_buf_puts(dw_buf *b, const char *s) { dw_buf_add(b, s, strlen(s)); }

void dw_buf_vprintf(dw_buf *b, const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    if (n < 0 || !grow(b, (size_t)n)) {
        b->oom = 1;
        va_end(again);
        return;
    }
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, again);
    va_end(again);
    b->len += (size_t)n;
}

void dw_buf_printf(dw_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dw_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

char *dw__vmprintf(const char *fmt, va_list ap)
{
    dw_buf b;
    dw_buf_init(&b);
    dw_buf_vprintf(&b, fmt, ap);
    return dw_buf_take(&b);
}

char *dw__mprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = dw__vmprintf(fmt, ap);
    va_end(ap);
    return s;
}

void dw_buf_quoted(dw_buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n && s[i]; i++) {
        if (s[i] == '\'')
            dw_buf_add(b, "'", 1);
        dw_buf_add(b, s + i, 1);
    }
}

/* SQLite's folding: ASCII letters only, whatever the locale. */
static int ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

int dw__strnicmp(const char *a, const char *b, size_t n)
{
    for (; n > 0; n--, a++, b++) {
        int ca = ascii_lower((unsigned char)*a);
        int cb = ascii_lower((unsigned char)*b);
        if (ca != cb || !ca)
            return ca - cb;
    }
    return 0;
}

int dw__stricmp(const char *a, const char *b)
{
    if (!a || !b)
        return a ? 1 : b ? -1 : 0; /* NULL first, as SQLite's compare */
    return dw__strnicmp(a, b, SIZE_MAX);
}

/* Backticks, not double quotes: SQLite never reads a backtick-quoted token
 * as a string literal, whatever the connection's double-quoted-string
 * setting -- so a name that no longer exists is an error even when SQLite
 * re-prepares the statement after a schema change. */
void dw_buf_table(dw_buf *b, const char *name)
{
    dw_buf_puts(b, "main.");
    dw_buf_ident(b, name);
}

void dw_buf_ident(dw_buf *b, const char *name)
{
    dw_buf_add(b, "`", 1);
    for (const char *p = name; *p; p++) {
        if (*p == '`')
            dw_buf_add(b, "``", 2);
        else
            dw_buf_add(b, p, 1);
    }
    dw_buf_add(b, "`", 1);
}

void dw_buf_ident_list(dw_buf *b, const char *alias, char *const *names,
                       int n, int first)
{
    for (int i = 0; i < n; i++) {
        dw_buf_puts(b, first && i == 0 ? "" : ", ");
        if (alias) {
            dw_buf_ident(b, alias);
            dw_buf_puts(b, ".");
        }
        dw_buf_ident(b, names[i]);
    }
}

/* Where a quoted token or comment that starts at p ends; *closed says
 * whether it was closed before the text ran out (a line comment always
 * is). */
static const char *span_end(const char *p, int *closed)
{
    const char *q = p + 1;
    *closed = 1;
    if (p[0] == '-') {
        while (*q && *q != '\n')
            q++;
    } else if (p[0] == '/') {
        q++;
        while (*q && !(q[0] == '*' && q[1] == '/'))
            q++;
        *closed = *q != '\0';
        q += *q ? 2 : 0;
    } else {
        char close = p[0] == '[' ? ']' : p[0];
        for (; *q; q++)
            if (*q == close) {
                if (close != ']' && q[1] == close)
                    q++;
                else
                    break;
            }
        *closed = *q != '\0';
        q += *q ? 1 : 0;
    }
    return q;
}

static int span_start(const char *p)
{
    return *p == '\'' || *p == '"' || *p == '`' || *p == '[' ||
           (p[0] == '-' && p[1] == '-') || (p[0] == '/' && p[1] == '*');
}

/* Copies a quoted token or comment that starts at p, unchanged; returns
 * where it ends. */
static const char *copy_span(dw_buf *b, const char *p)
{
    int closed;
    const char *q = span_end(p, &closed);
    dw_buf_add(b, p, (size_t)(q - p));
    return q;
}

/* Whether word appears in SQL text as a bare word, or with `quoted` also
 * as a quoted identifier ("w", `w`, [w]), case-insensitively; never in a
 * string literal or a comment. */
static int find_word(const char *sql, const char *word, int quoted)
{
    size_t n = strlen(word);
    for (const char *p = sql; *p;) {
        if (span_start(p)) {
            int closed;
            const char *q = span_end(p, &closed);
            if (quoted && (*p == '"' || *p == '`' || *p == '[') && closed &&
                (size_t)(q - p) == n + 2 &&
                dw__strnicmp(p + 1, word, n) == 0)
                return 1;
            p = q;
            continue;
        }
        int starts = p == sql || !(isalnum((unsigned char)p[-1]) ||
                                   p[-1] == '_' || p[-1] == '$');
        if (starts && dw__strnicmp(p, word, n) == 0 &&
            !(isalnum((unsigned char)p[n]) || p[n] == '_' || p[n] == '$'))
            return 1;
        p++;
    }
    return 0;
}

int dw_sql_has_word(const char *sql, const char *word)
{
    return find_word(sql, word, 0);
}

int dw_sql_names(const char *sql, const char *name)
{
    return find_word(sql, name, 1);
}

static int word_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '$' ||
           (unsigned char)c >= 0x80;
}

/* The name of a function called at p (a bare word or a quoted name, then
 * '(' past any space and comments), or of a CURRENT_... keyword, into
 * *name and *n, and where its arguments start into *args (NULL for a
 * keyword); returns where the token ends. */
static const char *call_at(const char *p, const char **name, size_t *n,
                           const char **args)
{
    static const char *const clock_words[] = {"current_timestamp",
                                              "current_time", "current_date"};
    const char *end = p;
    *name = NULL;
    *args = NULL;
    if (span_start(p)) {
        int closed;
        end = span_end(p, &closed);
        if (*p == '\'' || *p == '-' || *p == '/' || !closed)
            return end;
        *name = p + 1;
        *n = (size_t)(end - p) - 2;
    } else {
        while (word_char(*end))
            end++;
        if (end == p)
            return p + 1;
        *name = p;
        *n = (size_t)(end - p);
        for (size_t i = 0; i < 3; i++)
            if (*n == strlen(clock_words[i]) &&
                dw__strnicmp(p, clock_words[i], *n) == 0)
                return end;
    }
    *args = dw_sql_skip_space(end) + 1;
    if (*dw_sql_skip_space(end) != '(')
        *name = *args = NULL;
    return end;
}

int dw_sql_each_call(const char *sql, dw_call_fn fn, void *arg)
{
    for (const char *p = sql; *p;) {
        const char *name, *args;
        size_t n;
        p = call_at(p, &name, &n, &args);
        int rc = name ? fn(name, n, args, arg) : 0;
        if (rc)
            return rc;
    }
    return 0;
}

/* Whether a string literal equal to `word` (any case) starts at p and is
 * a whole argument: a ',' or ')' follows it. */
static int literal_argument(const char *p, const char *word)
{
    size_t n = strlen(word);
    int closed;
    if (*p != '\'')
        return 0;
    const char *q = span_end(p, &closed);
    char next = *dw_sql_skip_space(q);
    return closed && (size_t)(q - p) == n + 2 &&
           dw__strnicmp(p + 1, word, n) == 0 &&
           (next == ',' || next == ')');
}

int dw_sql_call_args(const char *args, const char *word, int *has_word)
{
    const char *p = dw_sql_skip_space(args);
    *has_word = 0;
    if (*p == ')')
        return 0;
    int count = 1, depth = 0;
    *has_word = literal_argument(p, word);
    while (*p && !(*p == ')' && depth == 0)) {
        if (span_start(p)) {
            int closed;
            p = span_end(p, &closed);
            continue;
        }
        depth += *p == '(' ? 1 : *p == ')' ? -1 : 0;
        if (*p++ == ',' && depth == 0) {
            p = dw_sql_skip_space(p);
            count++;
            *has_word |= literal_argument(p, word);
        }
    }
    return count;
}

int dw_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        unsigned c = *p++;
        int more;
        unsigned min;
        if (c < 0x80)
            continue;
        if (c >= 0xc2 && c <= 0xdf)
            more = 1, min = 0x80, c &= 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            more = 2, min = 0x800, c &= 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            more = 3, min = 0x10000, c &= 0x07;
        else
            return 0;
        if (end - p < more)
            return 0;
        for (int i = 0; i < more; i++, p++) {
            if ((*p & 0xc0) != 0x80)
                return 0;
            c = (c << 6) | (*p & 0x3f);
        }
        /* No overlong forms, no surrogates, nothing past U+10FFFF. */
        if (c < min || (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
            return 0;
    }
    return 1;
}

const char *dw_sql_skip_space(const char *sql)
{
    for (;;) {
        while (*sql == ' ' || *sql == '\t' || *sql == '\n' || *sql == '\r' ||
               *sql == '\f' || *sql == '\v')
            sql++;
        if (!((sql[0] == '-' && sql[1] == '-') ||
              (sql[0] == '/' && sql[1] == '*')))
            return sql;
        int closed;
        sql = span_end(sql, &closed);
    }
}

int dw_sql_balanced(const char *sql)
{
    int depth = 0;
    for (const char *p = sql; *p;) {
        if (span_start(p)) {
            int closed;
            p = span_end(p, &closed);
            if (!closed)
                return 0;
            continue;
        }
        if (*p == '(')
            depth++;
        else if ((*p == ')' && --depth < 0) || *p == ';')
            return 0;
        p++;
    }
    return depth == 0;
}

void dw_buf_sql(dw_buf *b, const char *sql)
{
    const char *p = sql;
    while (*p) {
        if (*p != '"' && span_start(p)) {
            p = copy_span(b, p);
        } else if (*p == '"') {
            /* "name" becomes `name`: "" inside is one quote, a backtick
             * is doubled. */
            dw_buf_add(b, "`", 1);
            for (p++; *p; p++) {
                if (*p == '"' && p[1] == '"')
                    dw_buf_add(b, p++, 1);
                else if (*p == '"')
                    break;
                else if (*p == '`')
                    dw_buf_add(b, "``", 2);
                else
                    dw_buf_add(b, p, 1);
            }
            p += *p ? 1 : 0;
            dw_buf_add(b, "`", 1);
        } else {
            dw_buf_add(b, p++, 1);
        }
    }
}

void dw_buf_json(dw_buf *b, const char *s, size_t n)
{
    dw_buf_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            dw_buf_add(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            dw_buf_add(b, esc, 6);
        } else {
            dw_buf_add(b, (const char *)&s[i], 1);
        }
    }
    dw_buf_add(b, "\"", 1);
}

char *dw_buf_take(dw_buf *b)
{
    if (b->oom) {
        dw_buf_free(b);
        return NULL;
    }
    if (!b->p && !grow(b, 0))
        return NULL;
    if (b->len == 0)
        b->p[0] = '\0';
    char *p = b->p;
    dw_buf_init(b);
    return p;
}

void dw_buf_sql_in(dw_buf *b, const char *before, const char *sql,
                   const char *after)
{
    dw_buf_puts(b, before);
    dw_buf_sql(b, sql);
    dw_buf_puts(b, after);
}
