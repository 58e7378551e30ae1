/* dw_row: a row of named, typed values that owns its names and bytes. */
#include <string.h>

#include "internal.h"

typedef struct dw_column {
    char *name;
    dw_value v; /* v.p is owned for TEXT and BLOB */
} dw_column;

struct dw_row {
    dw_column *cols;
    int n;
    int cap;
};

int dw_row_new(dw_row **out)
{
    if (!out)
        return DW_EMISUSE;
    *out = dw__calloc(sizeof(dw_row));
    return *out ? DW_OK : DW_ENOMEM;
}

static void column_free(dw_column *c)
{
    dw__free(c->name);
    if (c->v.type == DW_TYPE_TEXT || c->v.type == DW_TYPE_BLOB)
        dw__free((void *)c->v.p);
}

void dw_row_clear(dw_row *row)
{
    if (!row)
        return;
    for (int i = 0; i < row->n; i++)
        column_free(&row->cols[i]);
    row->n = 0;
}

void dw_row_free(dw_row *row)
{
    if (!row)
        return;
    dw_row_clear(row);
    dw__free(row->cols);
    dw__free(row);
}

int dw_row_count(const dw_row *row) { return row ? row->n : 0; }

const char *dw_row_name(const dw_row *row, int i)
{
    return row && i >= 0 && i < row->n ? row->cols[i].name : NULL;
}

int dw_row_find(const dw_row *row, const char *name)
{
    if (!row || !name)
        return -1;
    for (int i = 0; i < row->n; i++)
        if (strcmp(row->cols[i].name, name) == 0)
            return i;
    return -1;
}

const dw_value *dw_row_value(const dw_row *row, int i)
{
    return row && i >= 0 && i < row->n ? &row->cols[i].v : NULL;
}

const dw_value *dw_row_get(const dw_row *row, const char *name)
{
    return dw_row_value(row, dw_row_find(row, name));
}

/* Copies a value's bytes; text gets a terminating NUL. */
static int value_copy(dw_value *dst, const dw_value *src)
{
    *dst = *src;
    dst->p = NULL;
    if (src->type == DW_TYPE_TEXT || src->type == DW_TYPE_BLOB) {
        int n = dw__value_len(src);
        char *p = dw__malloc((size_t)n + 1);
        if (!p)
            return DW_ENOMEM;
        if (n)
            memcpy(p, src->p, (size_t)n);
        p[n] = '\0';
        dst->p = p;
        dst->n = n;
    } else {
        dst->n = 0;
    }
    return DW_OK;
}

int dw_row_set(dw_row *row, const char *name, const dw_value *v)
{
    dw_value null_value = dw_null();
    if (!row || !name || !*name)
        return DW_EMISUSE;
    if (!v)
        v = &null_value;
    if (!dw__value_valid(v))
        return DW_EMISUSE;
    dw_value copy;
    if (value_copy(&copy, v) != DW_OK)
        return DW_ENOMEM;
    int i = dw_row_find(row, name);
    if (i >= 0) {
        dw_column *c = &row->cols[i];
        if (c->v.type == DW_TYPE_TEXT || c->v.type == DW_TYPE_BLOB)
            dw__free((void *)c->v.p);
        c->v = copy;
        return DW_OK;
    }
    char *name_copy = dw__strdup(name);
    if (!name_copy)
        goto nomem;
    if (row->n == row->cap) {
        int cap = row->cap ? row->cap * 2 : 8;
        dw_column *cols = dw__realloc(row->cols, sizeof(dw_column) * (size_t)cap);
        if (!cols)
            goto nomem;
        row->cols = cols;
        row->cap = cap;
    }
    row->cols[row->n].name = name_copy;
    row->cols[row->n].v = copy;
    row->n++;
    return DW_OK;
nomem:
    dw__free(name_copy);
    if (copy.type == DW_TYPE_TEXT || copy.type == DW_TYPE_BLOB)
        dw__free((void *)copy.p);
    return DW_ENOMEM;
}

int dw_row_set_int(dw_row *row, const char *name, int64_t v)
{
    dw_value x = dw_int(v);
    return dw_row_set(row, name, &x);
}

int dw_row_set_float(dw_row *row, const char *name, double v)
{
    dw_value x = dw_float(v);
    return dw_row_set(row, name, &x);
}

int dw_row_set_text(dw_row *row, const char *name, const char *s)
{
    dw_value x = dw_text(s);
    return dw_row_set(row, name, &x);
}

int dw_row_set_blob(dw_row *row, const char *name, const void *p, int n)
{
    if (n < 0 || (n > 0 && !p))
        return DW_EMISUSE;
    dw_value x = dw_blob(p, n);
    return dw_row_set(row, name, &x);
}

int dw_row_set_null(dw_row *row, const char *name)
{
    dw_value x = dw_null();
    return dw_row_set(row, name, &x);
}

int dw_row_set_columns(dw_row *row, sqlite3_stmt *stmt)
{
    if (!row || !stmt)
        return DW_EMISUSE;
    int n = sqlite3_column_count(stmt);
    for (int i = 0; i < n; i++) {
        const char *name = sqlite3_column_name(stmt, i);
        if (!name)
            return DW_ENOMEM;
        dw_value v = dw_null();
        switch (sqlite3_column_type(stmt, i)) {
        case SQLITE_INTEGER: v = dw_int(sqlite3_column_int64(stmt, i)); break;
        case SQLITE_FLOAT: v = dw_float(sqlite3_column_double(stmt, i)); break;
        case SQLITE_TEXT: {
            const char *t = (const char *)sqlite3_column_text(stmt, i);
            if (!t)
                return DW_ENOMEM;
            v = dw_text_n(t, sqlite3_column_bytes(stmt, i));
            break;
        }
        case SQLITE_BLOB: {
            const void *p = sqlite3_column_blob(stmt, i);
            int nb = sqlite3_column_bytes(stmt, i);
            if (!p && nb > 0)
                return DW_ENOMEM;
            v = dw_blob(p, nb);
            break;
        }
        default: break;
        }
        int rc = dw_row_set(row, name, &v);
        if (rc != DW_OK)
            return rc;
    }
    return DW_OK;
}

int dw__row_copy(dw_row *dst, const dw_row *src)
{
    for (int i = 0; i < src->n; i++) {
        int rc = dw_row_set(dst, src->cols[i].name, &src->cols[i].v);
        if (rc != DW_OK)
            return rc;
    }
    return DW_OK;
}
