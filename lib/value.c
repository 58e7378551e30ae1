/* Typed values: constructors, equality, key text and log descriptions. */
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
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

/* Digits drawn one at a time from a long double scaled into [1, 10), as
 * SQLite's printf draws them for "%!.17g": the texts keys and values were
 * shown as before stay the same, digit for digit. At most 26 digits are
 * drawn from the value, the rest are '0'. */
typedef struct digit_source {
    long double x;
    int left;
} digit_source;

static char next_digit(digit_source *d)
{
    if (d->left <= 0)
        return '0';
    d->left--;
    int digit = (int)d->x;
    d->x = (d->x - digit) * 10.0;
    return (char)('0' + digit);
}

/* Scales x (> 0) into [1, 10), its power of ten into *exp (past 350:
 * infinite). */
static long double scale_down(long double x, int *exp)
{
    long double scale = 1.0;
    while (x >= 1e100 * scale && *exp <= 350) {
        scale *= 1e100;
        *exp += 100;
    }
    while (x >= 1e10 * scale && *exp <= 350) {
        scale *= 1e10;
        *exp += 10;
    }
    while (x >= 10.0 * scale && *exp <= 350) {
        scale *= 10.0;
        (*exp)++;
    }
    x /= scale;
    while (x < 1e-8) {
        x *= 1e8;
        *exp -= 8;
    }
    while (x < 1.0) {
        x *= 10.0;
        (*exp)--;
    }
    return x;
}

/* Digits after the first of the 17 significant ones. */
#define MORE_DIGITS 16

void dw__format_double(char out[DW__DOUBLE_TEXT], double v)
{
    char *o = out;
    if (isnan(v)) {
        strcpy(out, "NaN");
        return;
    }
    long double x = v;
    if (x < 0) {
        *o++ = '-';
        x = -x;
    }
    int exp = 0;
    if (x > 0)
        x = scale_down(x, &exp);
    if (exp > 350) {
        strcpy(o, "Inf");
        return;
    }
    long double half = 5.0e-7; /* half a unit of the last digit shown */
    half *= 1.0e-10;
    x += half;
    if (x >= 10.0) {
        x *= 0.1;
        exp++;
    }
    int scientific = exp < -4 || exp > MORE_DIGITS;
    int after = scientific ? MORE_DIGITS : MORE_DIGITS - exp;
    int before = scientific ? 0 : exp;
    digit_source d = {x, 26};
    if (before < 0)
        *o++ = '0';
    for (; before >= 0; before--)
        *o++ = next_digit(&d);
    *o++ = '.';
    for (before++; before < 0; before++, after--)
        *o++ = '0';
    for (; after > 0; after--)
        *o++ = next_digit(&d);
    while (o[-1] == '0')
        o--;
    if (o[-1] == '.')
        *o++ = '0';
    if (scientific)
        o += sprintf(o, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    *o = '\0';
}

static void buf_double(dw_buf *b, double v)
{
    char text[DW__DOUBLE_TEXT];
    dw__format_double(text, v);
    dw_buf_puts(b, text);
}

/* A REAL in key text: the first of 15, 16 and 17 significant digits that
 * reads back as the same double -- a stored backfill cursor must page on
 * exactly the key it names -- with ".0" when it would read as an integer. */
static void key_double(dw_buf *b, double v)
{
    char text[DW__DOUBLE_TEXT];
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(text, sizeof text, "%.*g", digits, v);
        if (strtod(text, NULL) == v)
            break;
    }
    /* printf and strtod speak the locale's decimal point; key text is
     * JSON's, as the reader (keytext.c) expects. */
    const char *point = localeconv()->decimal_point;
    size_t n = strlen(point);
    char *at = n && strcmp(point, ".") != 0 ? strstr(text, point) : NULL;
    if (at) {
        *at = '.';
        memmove(at + 1, at + n, strlen(at + n) + 1);
    }
    if (!strpbrk(text, ".eEn")) /* n: inf, nan */
        strcat(text, ".0");
    dw_buf_puts(b, text);
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
            key_double(b, v->f);
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
    case DW_TYPE_FLOAT: buf_double(b, v->f); break;
    case DW_TYPE_TEXT: {
        int n = dw__value_len(v);
        int shown = n > RAW_LIMIT ? RAW_LIMIT : n;
        dw_buf_add(b, "'", 1);
        dw_buf_quoted(b, (const char *)v->p, (size_t)shown);
        dw_buf_add(b, "'", 1);
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
