/* Key text read back into typed values: the inverse of dw__key_text(),
 * parsed by the core's JSON parser, so no backend needs its database's
 * JSON functions to read the library's own keys. */
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Longest number literal read as a REAL: "%!.17g" writes at most 24
 * bytes. */
#define REAL_TEXT 64

/* A literal with a fraction or exponent as a double, whatever the
 * process's locale says the decimal point is. 0 when it does not fit. */
static int real_of(const dw_json *j, double *out)
{
    if (j->len >= REAL_TEXT)
        return 0;
    const char *point = localeconv()->decimal_point;
    char text[REAL_TEXT + 8];
    size_t n = 0;
    for (size_t i = 0; i < j->len; i++) {
        if (j->text[i] == '.' && strlen(point) < 8) {
            memcpy(text + n, point, strlen(point));
            n += strlen(point);
        } else {
            text[n++] = j->text[i];
        }
    }
    text[n] = '\0';
    char *end;
    *out = strtod(text, &end);
    return *end == '\0' && isfinite(*out);
}

/* Value i of the key as a typed value (TEXT pointing into j); NULL, or
 * why it is none. */
static const char *scalar(const dw_json *j, dw_value *out)
{
    if (j->type == DW_JSON_STRING) {
        if (memchr(j->text, '\0', j->len))
            return "is TEXT holding a NUL, which keys cannot hold";
        *out = dw_text_n(j->text, (int)j->len);
        return NULL;
    }
    if (j->type != DW_JSON_NUMBER)
        return "is not a number or a string";
    if (!strpbrk(j->text, ".eE")) {
        int64_t i;
        if (!dw_json_int64(j, &i))
            return "is an integer beyond 64 bits";
        *out = dw_int(i);
        return NULL;
    }
    double d;
    if (!real_of(j, &d))
        return "is a number beyond the range of a REAL";
    *out = dw_float(d);
    return NULL;
}

/* Points the TEXT values of v at copies of their bytes made from tail on
 * (each NUL-terminated). */
static void own_texts(dw_value *v, int n, char *tail)
{
    for (int i = 0; i < n; i++) {
        if (v[i].type != DW_TYPE_TEXT)
            continue;
        int len = dw__value_len(&v[i]);
        memcpy(tail, v[i].p ? v[i].p : "", (size_t)len);
        tail[len] = '\0';
        v[i] = dw_text_n(tail, len);
        tail += len + 1;
    }
}

/* The key's values in *vals, their texts copied after them in the same
 * block. */
static int take_values(const dw_json *root, int nkey, dw_value **vals,
                       char *why, size_t why_size)
{
    dw_value scratch[64];
    size_t bytes = sizeof(dw_value) * (size_t)nkey;
    int i = 0;
    for (const dw_json *j = root->first; j; j = j->next, i++) {
        const char *problem = scalar(j, &scratch[i]);
        if (problem) {
            snprintf(why, why_size, "value %d %s", i + 1, problem);
            return DW_ERROR;
        }
        if (j->type == DW_JSON_STRING)
            bytes += j->len + 1;
    }
    char *block = dw__malloc(bytes ? bytes : 1);
    if (!block)
        return DW_ENOMEM;
    dw_value *v = (dw_value *)block;
    memcpy(v, scratch, sizeof(dw_value) * (size_t)nkey);
    own_texts(v, nkey, (char *)(v + nkey));
    *vals = v;
    return DW_OK;
}

int dw__key_parse(const char *text, size_t len, int nkey, dw_value **vals,
                  char *why, size_t why_size)
{
    *vals = NULL;
    snprintf(why, why_size, "out of memory");
    if (nkey < 1 || nkey > 64) {
        snprintf(why, why_size, "a key has 1 to 64 values, not %d", nkey);
        return DW_ERROR;
    }
    dw_json_doc *doc = NULL;
    dw_json_error err;
    int rc = dw_json_parse_bytes(text, len, 2, &doc, &err);
    if (rc != DW_OK) {
        if (rc != DW_ENOMEM)
            snprintf(why, why_size, "it is not JSON: %s", err.msg);
        return rc == DW_ENOMEM ? DW_ENOMEM : DW_ERROR;
    }
    const dw_json *root = dw_json_root(doc);
    rc = DW_ERROR;
    if (root->type != DW_JSON_ARRAY)
        snprintf(why, why_size, "it is not a JSON array");
    else if (root->count != nkey)
        snprintf(why, why_size, "it has %d values, the key has %d",
                 root->count, nkey);
    else
        rc = take_values(root, nkey, vals, why, why_size);
    dw_json_free(doc);
    return rc;
}

int dw__stored_key(dw_migration *h, const char *text, dw_value **vals)
{
    char why[128];
    int rc = dw__key_parse(text, strlen(text), h->spec.side[DW_SIDE_OLD].nkey,
                           vals, why, sizeof why);
    if (rc == DW_ENOMEM)
        return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    if (rc != DW_OK)
        return dw__error(h, DW_ERROR, DW_SIDE_NONE,
                         "stored key %s is not a key of migration \"%s\" (%s)",
                         text, h->spec.name, why);
    return DW_OK;
}

void dw__held_key_clear(dw_held_key *k)
{
    dw__free(k->v);
    dw__free(k->text);
    k->v = NULL;
    k->text = NULL;
}

int dw__held_key_set(dw_held_key *k, const dw_value *v, int nkey)
{
    dw__held_key_clear(k);
    dw_buf b;
    dw_buf_init(&b);
    dw__key_text(&b, v, nkey);
    size_t bytes = sizeof(dw_value) * (size_t)nkey;
    for (int i = 0; i < nkey; i++)
        if (v[i].type == DW_TYPE_TEXT)
            bytes += (size_t)dw__value_len(&v[i]) + 1;
    k->text = dw_buf_take(&b);
    k->v = k->text ? dw__malloc(bytes) : NULL;
    if (!k->v) {
        dw__held_key_clear(k);
        return DW_ENOMEM;
    }
    memcpy(k->v, v, sizeof(dw_value) * (size_t)nkey);
    own_texts(k->v, nkey, (char *)(k->v + nkey));
    return DW_OK;
}

int dw__held_key_read(dw_migration *h, dw_held_key *k, const char *text)
{
    dw__held_key_clear(k);
    dw_value *v = NULL;
    int rc = dw__stored_key(h, text, &v);
    /* The text written again from the values, not the stored spelling:
     * keys are compared by their text ("[ 20 ]" is the key [20]). */
    if (rc == DW_OK &&
        dw__held_key_set(k, v, h->spec.side[DW_SIDE_OLD].nkey) != DW_OK)
        rc = dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    dw__free(v);
    return rc;
}
