/* dw_row: a row of named, typed values that owns its names and bytes. */
#include <string.h>

#include "internal.h"
#include "row.h"

int dw_row_new(dw_row **out)
{
    if (!out)
        return DW_EMISUSE;
    *out = dw__calloc(sizeof(dw_row));
    return *out ? DW_OK : DW_ENOMEM;
}

void dw_row_clear(dw_row *row)
{
    if (!row)
        return;
    for (int i = 0; row->big && i < row->cap; i++) {
        dw_column *c = &row->cols[i];
        if (c->bufcap > KEEP_BYTES) {
            dw__free(c->buf);
            c->buf = NULL;
            c->bufcap = 0;
        }
    }
    row->big = 0;
    row->n = 0;
    row->hint = 0;
}

void dw_row_free(dw_row *row)
{
    if (!row)
        return;
    for (int i = 0; i < row->cap; i++) {
        dw__free(row->cols[i].name);
        dw__free(row->cols[i].buf);
    }
    dw__free(row->cols);
    dw__free(row->memo);
    dw__free(row);
}

int dw_row_count(const dw_row *row) { return row ? row->n : 0; }

const char *dw_row_name(const dw_row *row, int i)
{
    return row && i >= 0 && i < row->n ? row->cols[i].name : NULL;
}

/* Whether slot name a is name b; most names differ at their first byte,
 * which settles it without a call. */
static inline int same_name(const char *a, const char *b)
{
    return a[0] == b[0] && strcmp(a, b) == 0;
}

/* The slot of name, or -1. Names asked for in the order they were set
 * (a mapping reading its input, a statement binding its columns) are
 * found at the hint, or soon after it when some columns are skipped (a
 * mapping that reads no key): the search goes on from the hint, then
 * wraps. */
static inline int find_slot(const dw_row *row, const char *name)
{
    /* One thread at a time, as for the hint below. */
    ((dw_row *)row)->lookups++;
    int n = row->n, i = row->hint;
    const dw_column *cols = row->cols;
    for (int k = 0; k < n; k++, i++) {
        if (i >= n)
            i = 0;
        if (same_name(cols[i].name, name)) {
            /* A row is used by one thread at a time (dualwrite.h), and
             * none is made const at its definition: the hint may change
             * under a const view. */
            ((dw_row *)row)->hint = i + 1;
            return i;
        }
    }
    return -1;
}

int dw_row_find(const dw_row *row, const char *name)
{
    return row && name ? find_slot(row, name) : -1;
}

const dw_value *dw_row_value(const dw_row *row, int i)
{
    return row && i >= 0 && i < row->n ? &row->cols[i].v : NULL;
}

const dw_value *dw_row_get(const dw_row *row, const char *name)
{
    if (!row || !name)
        return NULL;
    int i = find_slot(row, name);
    return i >= 0 ? &row->cols[i].v : NULL;
}

/* Stores the bytes of TEXT or BLOB *v in slot c, copied into the slot's
 * buffer (text gets a terminating NUL). v may point into that same
 * buffer. On DW_ENOMEM the slot is unchanged. */
static int slot_store_bytes(dw_column *c, const dw_value *v)
{
    dw_value copy = *v;
    size_t n = (size_t)dw__value_len(v);
    if (n + 1 > c->bufcap) {
        char *buf = dw__malloc(n + 1);
        if (!buf)
            return DW_ENOMEM;
        if (n)
            memcpy(buf, v->p, n);
        dw__free(c->buf);
        c->buf = buf;
        c->bufcap = n + 1;
    } else if (n) {
        memmove(c->buf, v->p, n);
    }
    c->buf[n] = '\0';
    copy.p = c->buf;
    copy.n = (int)n;
    c->v = copy;
    return DW_OK;
}

/* Stores *v in slot c of row. A number or NULL is stored in place, with no
 * call: this runs for every value of every row read. */
static inline int slot_store(dw_row *row, dw_column *c, const dw_value *v)
{
    if (v->type != DW_TYPE_TEXT && v->type != DW_TYPE_BLOB) {
        c->v.type = v->type;
        c->v.i = v->i;
        c->v.f = v->f;
        c->v.p = NULL;
        c->v.n = 0;
        return DW_OK;
    }
    if (slot_store_bytes(c, v) != DW_OK)
        return DW_ENOMEM;
    /* dw_row_clear() looks for big buffers only in a row that has one. */
    if (c->bufcap > KEEP_BYTES)
        row->big = 1;
    return DW_OK;
}

/* *v into slot n, the next one, whose kept name is v's. */
static inline int put_at_n(dw_row *row, const dw_value *v)
{
    if (slot_store(row, &row->cols[row->n], v) != DW_OK)
        return DW_ENOMEM;
    row->n++;
    return DW_OK;
}

int dw__row_put_next(dw_row *row, const dw_value *v)
{
    return row->n < row->kept ? put_at_n(row, v) : DW_EMISUSE;
}

int dw__row_ref_next(dw_row *row, const dw_value *v)
{
    int n = row->n;
    if (n >= row->kept)
        return DW_EMISUSE;
    row->cols[n].v = *v;
    row->n = n + 1;
    return DW_OK;
}

uint64_t dw__row_lookups(const dw_row *row) { return row->lookups; }

int dw__row_slots_find(dw_row *row, char *const *names, int n,
                       const int **slots, int *missing)
{
    int *memo = row->memo;
    if (row->memo_for != names || row->memo_n != n ||
        row->memo_gen != row->gen) {
        if (n > row->memo_cap || !memo) {
            memo = dw__realloc(row->memo, sizeof(int) * (size_t)(n ? n : 1));
            if (!memo)
                return DW_ENOMEM;
            row->memo = memo;
            row->memo_cap = n ? n : 1;
        }
        row->memo_for = NULL;
        for (int i = 0; i < n; i++)
            memo[i] = dw_row_find(row, names[i]);
        row->memo_for = names;
        row->memo_n = n;
        row->memo_gen = row->gen;
    }
    /* A column the row does not hold is missing: its slot kept past n
     * (it stays there), or not found among the columns present (it may
     * be set into a kept slot next time: looked for again then). */
    for (int i = 0; i < n; i++)
        if (memo[i] < 0 || memo[i] >= row->n) {
            if (memo[i] < 0)
                row->memo_for = NULL;
            *missing = i;
            return DW_ERROR;
        }
    *slots = memo;
    return DW_OK;
}

int dw__row_put(dw_row *row, const char *name, const dw_value *v)
{
    int n = row->n;
    row->lookups++;
    /* The kept name is not among the columns before it. */
    if (n < row->kept && same_name(row->cols[n].name, name))
        return put_at_n(row, v);
    int i = dw_row_find(row, name);
    if (i >= 0)
        return slot_store(row, &row->cols[i], v);
    /* Appending: the next slot, whose name is reused when it matches. */
    if (row->n == row->cap) {
        int cap = row->cap ? row->cap * 2 : 8;
        dw_column *cols =
            dw__realloc(row->cols, sizeof(dw_column) * (size_t)cap);
        if (!cols)
            return DW_ENOMEM;
        memset(cols + row->cap, 0, sizeof(dw_column) * (size_t)(cap - row->cap));
        row->cols = cols;
        row->cap = cap;
    }
    dw_column *c = &row->cols[row->n];
    char *name_copy = dw__strdup(name);
    if (!name_copy || slot_store(row, c, v) != DW_OK) {
        dw__free(name_copy);
        return DW_ENOMEM;
    }
    /* A new name here: the kept names after it go, one of them may be
     * this name (kept names stay distinct). */
    for (int k = row->n; k < row->kept; k++) {
        dw__free(row->cols[k].name);
        row->cols[k].name = NULL;
    }
    c->name = name_copy;
    row->n++;
    row->kept = row->n;
    row->gen++;
    return DW_OK;
}

/* dw_row_set() of a value known valid: only the row and the name are
 * checked (a number or NULL is valid whatever its value). */
static int put_checked(dw_row *row, const char *name, const dw_value *v)
{
    if (!row || !name || !*name)
        return DW_EMISUSE;
    return dw__row_put(row, name, v);
}

int dw_row_set(dw_row *row, const char *name, const dw_value *v)
{
    dw_value null_value = dw_null();
    if (v && !dw__value_valid(v))
        return DW_EMISUSE;
    return put_checked(row, name, v ? v : &null_value);
}

int dw_row_set_int(dw_row *row, const char *name, int64_t v)
{
    dw_value x = dw_int(v);
    return put_checked(row, name, &x);
}

int dw_row_set_float(dw_row *row, const char *name, double v)
{
    dw_value x = dw_float(v);
    return put_checked(row, name, &x);
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
    return put_checked(row, name, &x);
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
