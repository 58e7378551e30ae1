/* Typed values: constructors, equality, key text and log descriptions. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

dw_value dw_int(int64_t v)
{
    dw_value x = {DW_TYPE_INTEGER, v, 0.0, NULL, 0};
    return x;
}

dw_value dw_float(double v)
{
    dw_value x = {DW_TYPE_FLOAT, 0, v, NULL, 0};
    return x;
}

dw_value dw_text_n(const char *s, int n)
{
    if (!s)
        return dw_null();
    dw_value x = {DW_TYPE_TEXT, 0, 0.0, s, n < 0 ? (int)strlen(s) : n};
    return x;
}

dw_value dw_text(const char *s) { return dw_text_n(s, -1); }

dw_value dw_blob(const void *p, int n)
{
    dw_value x = {DW_TYPE_BLOB, 0, 0.0, p, p ? (n < 0 ? 0 : n) : 0};
    return x;
}

dw_value dw_null(void)
{
    dw_value x = {DW_TYPE_NULL, 0, 0.0, NULL, 0};
    return x;
}

int dw__value_valid(const dw_value *v)
{
    if (v->type < DW_TYPE_INTEGER || v->type > DW_TYPE_NULL)
        return 0;
    if ((v->type == DW_TYPE_TEXT || v->type == DW_TYPE_BLOB) && v->n != 0 &&
        !v->p)
        return 0;
    if (v->type == DW_TYPE_BLOB && v->n < 0)
        return 0;
    if (v->type == DW_TYPE_TEXT && v->n < -1)
        return 0;
    return 1;
}

const char *dw__key_value_problem(const dw_value *v)
{
    if (v->type != DW_TYPE_INTEGER && v->type != DW_TYPE_TEXT)
        return "is not INTEGER or TEXT";
    if (!dw__value_valid(v))
        return "is malformed";
    /* SQLite's text functions stop at a NUL, so the key could not be
     * paged through by the backfill or verification. */
    if (v->type == DW_TYPE_TEXT && v->p &&
        memchr(v->p, 0, (size_t)dw__value_len(v)))
        return "is TEXT holding a NUL byte, which keys cannot hold (SQLite "
               "reads text up to a NUL, so the key could not be paged "
               "through)";
    return NULL;
}

int dw__value_len(const dw_value *v)
{
    if (v->type != DW_TYPE_TEXT && v->type != DW_TYPE_BLOB)
        return 0;
    if (!v->p)
        return 0;
    if (v->type == DW_TYPE_TEXT && v->n < 0)
        return (int)strlen((const char *)v->p);
    return v->n;
}

int dw_value_equal(const dw_value *a, const dw_value *b)
{
    if (!a || !b)
        return a == b;
    int ta = a->type, tb = b->type;
    if (ta == DW_TYPE_INTEGER && tb == DW_TYPE_FLOAT) {
        /* Equal only when the float is exactly that integer; the range
         * check keeps the cast defined. */
        if (!(b->f >= -9223372036854775808.0 && b->f < 9223372036854775808.0))
            return 0;
        return (double)a->i == b->f && (int64_t)b->f == a->i;
    }
    if (ta == DW_TYPE_FLOAT && tb == DW_TYPE_INTEGER)
        return dw_value_equal(b, a);
    if (ta != tb)
        return 0;
    switch (ta) {
    case DW_TYPE_NULL: return 1;
    case DW_TYPE_INTEGER: return a->i == b->i;
    case DW_TYPE_FLOAT: return a->f == b->f || (isnan(a->f) && isnan(b->f));
    case DW_TYPE_TEXT:
    case DW_TYPE_BLOB: {
        int na = dw__value_len(a), nb = dw__value_len(b);
        return na == nb && (na == 0 || memcmp(a->p, b->p, (size_t)na) == 0);
    }
    default: return 0;
    }
}

void dw__key_text(dw_buf *b, const dw_value *key, int nkey)
{
    dw_buf_add(b, "[", 1);
    for (int i = 0; i < nkey; i++) {
        if (i)
            dw_buf_add(b, ",", 1);
        const dw_value *v = &key[i];
        if (v->type == DW_TYPE_INTEGER)
            dw_buf_printf(b, "%lld", (long long)v->i);
        else if (v->type == DW_TYPE_TEXT)
            dw_buf_json(b, (const char *)v->p, (size_t)dw__value_len(v));
        else if (v->type == DW_TYPE_FLOAT)
            dw_buf_printf(b, "%!.17g", v->f);
        else
            dw_buf_puts(b, "null");
    }
    dw_buf_add(b, "]", 1);
}

static const char *type_word(int type)
{
    switch (type) {
    case DW_TYPE_INTEGER: return "integer";
    case DW_TYPE_FLOAT: return "real";
    case DW_TYPE_TEXT: return "text";
    case DW_TYPE_BLOB: return "blob";
    default: return "null";
    }
}

void dw__value_desc_digest(dw_buf *b, const dw_value *v)
{
    if (v->type == DW_TYPE_NULL) {
        dw_buf_puts(b, "null");
        return;
    }
    dw_sha256 s;
    unsigned char d[32];
    char hex[17];
    dw_sha256_init(&s);
    dw_sha256_value(&s, v);
    dw_sha256_final(&s, d);
    dw_hex(hex, d, 8);
    int len = (v->type == DW_TYPE_TEXT || v->type == DW_TYPE_BLOB)
                  ? dw__value_len(v)
                  : 8;
    dw_buf_printf(b, "%s(%d):%s", type_word(v->type), len, hex);
}

/* Raw values are shortened so a huge value cannot bloat the log. */
#define RAW_LIMIT 200

void dw__value_desc_raw(dw_buf *b, const dw_value *v)
{
    switch (v->type) {
    case DW_TYPE_NULL: dw_buf_puts(b, "NULL"); break;
    case DW_TYPE_INTEGER: dw_buf_printf(b, "%lld", (long long)v->i); break;
    case DW_TYPE_FLOAT: dw_buf_printf(b, "%!.17g", v->f); break;
    case DW_TYPE_TEXT: {
        int n = dw__value_len(v);
        int shown = n > RAW_LIMIT ? RAW_LIMIT : n;
        dw_buf_printf(b, "'%.*q'", shown, (const char *)v->p);
        if (shown < n)
            dw_buf_printf(b, "...(%d bytes)", n);
        break;
    }
    case DW_TYPE_BLOB: {
        int n = dw__value_len(v);
        int shown = n > RAW_LIMIT / 2 ? RAW_LIMIT / 2 : n;
        char hex[RAW_LIMIT + 1];
        dw_hex(hex, v->p, (size_t)shown);
        dw_buf_printf(b, "x'%s'", hex);
        if (shown < n)
            dw_buf_printf(b, "...(%d bytes)", n);
        break;
    }
    default: dw_buf_puts(b, "?"); break;
    }
}

static int bind_one(sqlite3_stmt *stmt, int idx, const dw_value *v,
                    sqlite3_destructor_type bytes)
{
    switch (v->type) {
    case DW_TYPE_INTEGER: return sqlite3_bind_int64(stmt, idx, v->i);
    case DW_TYPE_FLOAT: return sqlite3_bind_double(stmt, idx, v->f);
    case DW_TYPE_TEXT:
        return sqlite3_bind_text(stmt, idx, v->p ? (const char *)v->p : "",
                                 dw__value_len(v), bytes);
    case DW_TYPE_BLOB:
        return sqlite3_bind_blob(stmt, idx, v->p ? v->p : "", dw__value_len(v),
                                 bytes);
    default: return sqlite3_bind_null(stmt, idx);
    }
}

int dw__bind_value(void *stmt, int idx, const dw_value *v)
{
    return bind_one(stmt, idx, v, SQLITE_STATIC);
}

int dw_bind_values(sqlite3_stmt *stmt, int first, const dw_value *v, int n)
{
    if (!stmt || (!v && n > 0) || n < 0 || first < 1 ||
        first - 1 > INT_MAX - n)
        return DW_EMISUSE;
    for (int i = 0; i < n; i++) {
        if (!dw__value_valid(&v[i]))
            return DW_EMISUSE;
        switch (bind_one(stmt, first + i, &v[i], SQLITE_TRANSIENT)) {
        case SQLITE_OK: break;
        case SQLITE_NOMEM: return DW_ENOMEM;
        case SQLITE_RANGE:
        case SQLITE_MISUSE: return DW_EMISUSE;
        default: return DW_ERROR;
        }
    }
    return DW_OK;
}
