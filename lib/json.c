/* A strict JSON parser (RFC 8259) for the text the library owns: specs
 * given by tools and specs read back from the database. It builds a tree
 * in one arena, keeps members in document order (duplicates too, for the
 * caller to refuse), and says where the text went wrong. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* ---- the arena ------------------------------------------------------------ */

/* What the arena's pieces are aligned for: dw__malloc() (SQLite's
 * allocator) promises 8 bytes, not max_align_t's 16. */
typedef union arena_align {
    void *p;
    double d;
    int64_t i;
} arena_align;

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    arena_align data[]; /* the block's bytes */
} arena_block;

struct dw_json_doc {
    dw_json *root;
    arena_block *blocks;
    /* The first string or member name that holds a NUL character. */
    const dw_json *nul;
};

#define ARENA_MIN 4096

static void *arena_alloc(dw_json_doc *doc, size_t n)
{
    n = (n + sizeof(arena_align) - 1) / sizeof(arena_align) *
        sizeof(arena_align);
    arena_block *b = doc->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > ARENA_MIN ? n : ARENA_MIN;
        if (b && b->cap * 2 > cap)
            cap = b->cap * 2;
        b = dw__malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->next = doc->blocks;
        b->used = 0;
        b->cap = cap;
        doc->blocks = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    return p;
}

void dw_json_free(dw_json_doc *doc)
{
    if (!doc)
        return;
    for (arena_block *b = doc->blocks, *next; b; b = next) {
        next = b->next;
        dw__free(b);
    }
    dw__free(doc);
}

const dw_json *dw_json_root(const dw_json_doc *doc)
{
    return doc ? doc->root : NULL;
}

const dw_json *dw_json_nul(const dw_json_doc *doc)
{
    return doc ? doc->nul : NULL;
}

/* ---- the parser -------------------------------------------------------------- */

typedef struct parser {
    const unsigned char *s, *end, *at;
    const unsigned char *line_start;
    int line;
    int depth, max_depth;
    dw_json_doc *doc;
    dw_json_error *err;
    int failed;
    /* Bytes of 0x80 and over in strings are taken as they are. */
    int raw_bytes;
} parser;

static size_t offset_of(const parser *p, const unsigned char *at)
{
    return (size_t)(at - p->s);
}

/* The first failure is the one told; it names where it happened. */
static int fail_at(parser *p, const unsigned char *at, int code,
                   const char *what)
{
    if (p->failed)
        return -1;
    p->failed = 1;
    p->err->code = code;
    p->err->offset = offset_of(p, at);
    p->err->line = p->line;
    p->err->column = (int)(at - p->line_start) + 1;
    if (code == DW_ENOMEM)
        snprintf(p->err->msg, sizeof p->err->msg, "out of memory");
    else
        snprintf(p->err->msg, sizeof p->err->msg,
                 "%s at line %d, column %d", what, p->err->line,
                 p->err->column);
    return -1;
}

static int fail(parser *p, const char *what)
{
    return fail_at(p, p->at, DW_EMISUSE, what);
}

static int nomem(parser *p) { return fail_at(p, p->at, DW_ENOMEM, NULL); }

static void skip_space(parser *p)
{
    while (p->at < p->end) {
        unsigned char c = *p->at;
        if (c == '\n') {
            p->line++;
            p->line_start = p->at + 1;
        } else if (c != ' ' && c != '\t' && c != '\r') {
            return;
        }
        p->at++;
    }
}

static dw_json *new_node(parser *p, dw_json_type type)
{
    dw_json *v = arena_alloc(p->doc, sizeof *v);
    if (!v) {
        nomem(p);
        return NULL;
    }
    memset(v, 0, sizeof *v);
    v->type = type;
    v->offset = offset_of(p, p->at);
    v->line = p->line;
    v->column = (int)(p->at - p->line_start) + 1;
    return v;
}

/* Checks a word (true, false, null) in full: "nul" or "nullx" are not
 * it. */
static int literal(parser *p, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(p->end - p->at) < n || memcmp(p->at, word, n) != 0)
        return fail(p, "unexpected character");
    p->at += n;
    return 0;
}

static int digits(parser *p)
{
    const unsigned char *from = p->at;
    while (p->at < p->end && *p->at >= '0' && *p->at <= '9')
        p->at++;
    return p->at > from;
}

/* -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?, kept as written
 * so that integers past 2^53 lose nothing. */
static int number(parser *p, dw_json *v)
{
    const unsigned char *from = p->at;
    if (p->at < p->end && *p->at == '-')
        p->at++;
    if (p->at < p->end && *p->at == '0') {
        p->at++;
        if (p->at < p->end && *p->at >= '0' && *p->at <= '9')
            return fail(p, "a number with a leading zero");
    } else if (!digits(p)) {
        return fail(p, "a number without digits");
    }
    if (p->at < p->end && *p->at == '.') {
        p->at++;
        if (!digits(p))
            return fail(p, "a number without digits after '.'");
    }
    if (p->at < p->end && (*p->at == 'e' || *p->at == 'E')) {
        p->at++;
        if (p->at < p->end && (*p->at == '+' || *p->at == '-'))
            p->at++;
        if (!digits(p))
            return fail(p, "a number without digits in its exponent");
    }
    size_t n = (size_t)(p->at - from);
    char *text = arena_alloc(p->doc, n + 1);
    if (!text)
        return nomem(p);
    memcpy(text, from, n);
    text[n] = '\0';
    v->text = text;
    v->len = n;
    return 0;
}

static int hex4(parser *p, unsigned *out)
{
    unsigned u = 0;
    for (int i = 0; i < 4; i++, p->at++) {
        int c = p->at < p->end ? *p->at : -1;
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return fail(p, "a \\u escape without four hex digits");
        u = u * 16 + (unsigned)d;
    }
    *out = u;
    return 0;
}

/* \uXXXX, a surrogate pair taken whole; p->at is past the 'u'. */
static int unicode_escape(parser *p, unsigned *cp)
{
    const unsigned char *start = p->at - 2;
    if (hex4(p, cp) != 0)
        return -1;
    if (*cp >= 0xdc00 && *cp <= 0xdfff)
        return fail_at(p, start, DW_EMISUSE,
                       "a low surrogate escape without a high one before it");
    if (*cp < 0xd800 || *cp > 0xdbff)
        return 0;
    unsigned low;
    if (p->end - p->at < 2 || p->at[0] != '\\' || p->at[1] != 'u')
        return fail_at(p, start, DW_EMISUSE,
                       "a high surrogate escape without a low one after it");
    p->at += 2;
    if (hex4(p, &low) != 0)
        return -1;
    if (low < 0xdc00 || low > 0xdfff)
        return fail_at(p, start, DW_EMISUSE,
                       "a high surrogate escape without a low one after it");
    *cp = 0x10000 + ((*cp - 0xd800) << 10) + (low - 0xdc00);
    return 0;
}

static size_t put_utf8(unsigned char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xc0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xe0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (unsigned char)(0xf0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/* One escape after the backslash, decoded into out; *n its bytes. */
static int escape(parser *p, unsigned char *out, size_t *n)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    if (p->at >= p->end)
        return fail(p, "an unterminated string");
    const char *e = *p->at ? strchr(from, *p->at) : NULL;
    if (e) {
        p->at++;
        out[0] = (unsigned char)to[e - from];
        *n = 1;
        return 0;
    }
    if (*p->at != 'u')
        return fail_at(p, p->at - 1, DW_EMISUSE, "an unknown escape");
    p->at++;
    unsigned cp;
    if (unicode_escape(p, &cp) != 0)
        return -1;
    *n = put_utf8(out, cp);
    return 0;
}

/* The length of the well-formed UTF-8 sequence at p->at (a byte of 0x80
 * or more), or 0. */
static size_t utf8_length(const parser *p)
{
    unsigned c = *p->at;
    size_t n = c >= 0xc2 && c <= 0xdf   ? 2
               : c >= 0xe0 && c <= 0xef ? 3
               : c >= 0xf0 && c <= 0xf4 ? 4
                                        : 0;
    if (!n || (size_t)(p->end - p->at) < n ||
        !dw_utf8_valid((const char *)p->at, n))
        return 0;
    return n;
}

/* A string, p->at on its opening quote: decoded (NUL-terminated, though it
 * may hold NUL characters) into *text and *len. */
static int string(parser *p, const char **text, size_t *len)
{
    const unsigned char *open = p->at++;
    /* Decoded text is never longer than the raw text. */
    const unsigned char *close = p->at;
    while (close < p->end && *close != '"')
        close += *close == '\\' && close + 1 < p->end ? 2 : 1;
    unsigned char *out = arena_alloc(p->doc, (size_t)(close - p->at) + 1);
    if (!out)
        return nomem(p);
    size_t n = 0;
    for (;;) {
        if (p->at >= p->end)
            return fail_at(p, open, DW_EMISUSE, "an unterminated string");
        unsigned char c = *p->at;
        if (c == '"')
            break;
        if (c < 0x20)
            return fail(p, "a control character in a string");
        if (c == '\\') {
            p->at++;
            size_t k = 0;
            if (escape(p, out + n, &k) != 0)
                return -1;
            n += k;
            continue;
        }
        size_t k = c < 0x80 ? 1 : utf8_length(p);
        if (!k && p->raw_bytes)
            k = 1;
        if (!k)
            return fail(p, "invalid UTF-8 in a string");
        memcpy(out + n, p->at, k);
        n += k;
        p->at += k;
    }
    p->at++;
    out[n] = '\0';
    *text = (const char *)out;
    *len = n;
    return 0;
}

/* Notes v as the first holder of a NUL character when its text is. */
static void note_nul(parser *p, const dw_json *v, const char *text,
                     size_t len)
{
    if (!p->doc->nul && memchr(text, '\0', len))
        p->doc->nul = v;
}

static int value(parser *p, dw_json **out);

/* Appends v to the container's entries (tail kept in *last). */
static void append(dw_json *container, dw_json **last, dw_json *v)
{
    if (*last)
        (*last)->next = v;
    else
        container->first = v;
    *last = v;
    container->count++;
}

static int nest(parser *p)
{
    if (++p->depth > p->max_depth) {
        char what[64];
        snprintf(what, sizeof what, "nested deeper than %d levels",
                 p->max_depth);
        return fail(p, what);
    }
    return 0;
}

/* The separator after an entry: ',' (1, more follow) or the closing
 * character (0). */
static int after_entry(parser *p, char close, const char *expected)
{
    skip_space(p);
    if (p->at < p->end && *p->at == ',') {
        p->at++;
        return 1;
    }
    if (p->at < p->end && *p->at == close) {
        p->at++;
        return 0;
    }
    return fail(p, expected);
}

static int member(parser *p, dw_json *o, dw_json **last)
{
    skip_space(p);
    if (p->at >= p->end || *p->at != '"')
        return fail(p, "expected a member name in double quotes");
    const unsigned char *at = p->at;
    const char *name;
    size_t len;
    /* A NUL in the name comes before any in the value, but is noted once
     * the member exists. */
    const dw_json *nul_before = p->doc->nul;
    if (string(p, &name, &len) != 0)
        return -1;
    skip_space(p);
    if (p->at >= p->end || *p->at != ':')
        return fail(p, "expected ':' after a member name");
    p->at++;
    dw_json *v;
    if (value(p, &v) != 0)
        return -1;
    v->name = name;
    v->name_len = len;
    v->name_offset = offset_of(p, at);
    if (!nul_before && memchr(name, '\0', len))
        p->doc->nul = v;
    append(o, last, v);
    return 0;
}

static int array_entry(parser *p, dw_json *a, dw_json **last)
{
    dw_json *v;
    if (value(p, &v) != 0)
        return -1;
    append(a, last, v);
    return 0;
}

/* An array or object, p->at on its opening character: entries read by
 * `entry`, separated by commas, up to `close`. */
static int container(parser *p, dw_json *c, char close,
                     int (*entry)(parser *, dw_json *, dw_json **),
                     const char *expected)
{
    if (nest(p) != 0)
        return -1;
    p->at++;
    skip_space(p);
    dw_json *last = NULL;
    int more = 1;
    if (p->at < p->end && *p->at == close) {
        p->at++;
        more = 0;
    }
    while (more == 1) {
        if (entry(p, c, &last) != 0)
            return -1;
        more = after_entry(p, close, expected);
    }
    p->depth--;
    return more;
}

static int value(parser *p, dw_json **out)
{
    skip_space(p);
    if (p->at >= p->end)
        return fail(p, "expected a value, found the end of the text");
    unsigned char c = *p->at;
    dw_json_type type = c == '{'   ? DW_JSON_OBJECT
                        : c == '[' ? DW_JSON_ARRAY
                        : c == '"' ? DW_JSON_STRING
                        : c == 't' ? DW_JSON_TRUE
                        : c == 'f' ? DW_JSON_FALSE
                        : c == 'n' ? DW_JSON_NULL
                                   : DW_JSON_NUMBER;
    if (type == DW_JSON_NUMBER && c != '-' && !(c >= '0' && c <= '9'))
        return fail(p, "unexpected character");
    dw_json *v = *out = new_node(p, type);
    if (!v)
        return -1;
    switch (type) {
    case DW_JSON_OBJECT:
        return container(p, v, '}', member, "expected ',' or '}' in an object");
    case DW_JSON_ARRAY:
        return container(p, v, ']', array_entry,
                         "expected ',' or ']' in an array");
    case DW_JSON_STRING:
        if (string(p, &v->text, &v->len) != 0)
            return -1;
        note_nul(p, v, v->text, v->len);
        return 0;
    case DW_JSON_TRUE: return literal(p, "true");
    case DW_JSON_FALSE: return literal(p, "false");
    case DW_JSON_NULL: return literal(p, "null");
    case DW_JSON_NUMBER: break;
    }
    return number(p, v);
}

static int parse(const char *text, size_t len, int max_depth, int raw_bytes,
                 dw_json_doc **out, dw_json_error *err)
{
    memset(err, 0, sizeof *err);
    *out = NULL;
    parser p;
    memset(&p, 0, sizeof p);
    p.s = p.at = p.line_start = (const unsigned char *)text;
    p.end = p.s + len;
    p.line = 1;
    p.max_depth = max_depth > 0 ? max_depth : DW_JSON_MAX_DEPTH;
    p.raw_bytes = raw_bytes;
    p.err = err;
    p.doc = dw__calloc(sizeof *p.doc);
    if (!p.doc) {
        fail_at(&p, p.at, DW_ENOMEM, NULL);
        return DW_ENOMEM;
    }
    dw_json *root = NULL;
    if (value(&p, &root) == 0) {
        skip_space(&p);
        if (p.at < p.end)
            fail(&p, "unexpected text after the value");
    }
    if (p.failed) {
        dw_json_free(p.doc);
        return err->code;
    }
    p.doc->root = root;
    *out = p.doc;
    return DW_OK;
}

int dw_json_parse(const char *text, size_t len, int max_depth,
                  dw_json_doc **out, dw_json_error *err)
{
    return parse(text, len, max_depth, 0, out, err);
}

int dw_json_parse_bytes(const char *text, size_t len, int max_depth,
                        dw_json_doc **out, dw_json_error *err)
{
    return parse(text, len, max_depth, 1, out, err);
}

/* ---- reading the tree ------------------------------------------------------------ */

const dw_json *dw_json_get(const dw_json *object, const char *name)
{
    if (!object || object->type != DW_JSON_OBJECT)
        return NULL;
    size_t n = strlen(name);
    for (const dw_json *m = object->first; m; m = m->next)
        if (m->name_len == n && memcmp(m->name, name, n) == 0)
            return m;
    return NULL;
}

const dw_json *dw_json_duplicate(const dw_json *object)
{
    if (!object || object->type != DW_JSON_OBJECT)
        return NULL;
    for (const dw_json *m = object->first; m; m = m->next)
        for (const dw_json *e = object->first; e != m; e = e->next)
            if (e->name_len == m->name_len &&
                memcmp(e->name, m->name, m->name_len) == 0)
                return m;
    return NULL;
}

int dw_json_int64(const dw_json *v, int64_t *out)
{
    if (!v || v->type != DW_JSON_NUMBER || strpbrk(v->text, ".eE"))
        return 0;
    const char *s = v->text;
    int negative = *s == '-';
    s += negative;
    /* Accumulated negative, so INT64_MIN fits. */
    int64_t n = 0;
    for (; *s; s++) {
        int d = *s - '0';
        if (n < (INT64_MIN + d) / 10)
            return 0;
        n = n * 10 - d;
    }
    if (!negative && n == INT64_MIN)
        return 0;
    *out = negative ? n : -n;
    return 1;
}
