/* The inside of a dw_row, for the few places that fill and read rows row
 * after row (verification, the backfill's stream): what runs once a row
 * is inline here; everything else about rows is in row.c. */
#ifndef DW_ROW_H
#define DW_ROW_H

#include "internal.h"

/* A row keeps its slots after dw_row_clear(): names and value buffers are
 * reused by the next values set in the same order, so a row read again and
 * again (a DAO's result row, the library's scratch rows) allocates nothing. */
typedef struct dw_column {
    char *name;
    dw_value v;    /* for TEXT and BLOB, v.p points into buf (or, put by
                      reference, at the caller's bytes) */
    char *buf;     /* owned; kept across clears up to KEEP_BYTES */
    size_t bufcap;
} dw_column;

/* The kept slots' names are distinct, so a value set under the name of
 * the slot at position n appends there without searching the row. */
struct dw_row {
    dw_column *cols;
    int n;    /* columns present */
    int kept; /* slots holding a name, n <= kept <= cap */
    int cap;
    int hint; /* where dw_row_find() looks first: after the last found */
    int big;  /* a slot may hold a buffer above KEEP_BYTES */
    unsigned gen; /* changes whenever a slot's name does */
    uint64_t lookups; /* names compared to find a slot (for tests) */
    /* dw__row_slots()'s last answer: the slots of memo_for's names, valid
     * while gen is memo_gen. */
    char *const *memo_for;
    int memo_n, memo_cap;
    unsigned memo_gen;
    int *memo;
};

/* A value buffer larger than this is freed by a clear, not kept. */
#define KEEP_BYTES 4096

/* Emptied for the next values, names kept: dw_row_clear() without a call
 * unless a big buffer is to be freed. */
static inline void dw__row_reset(dw_row *row)
{
    if (row->big) {
        dw_row_clear(row);
        return;
    }
    row->n = 0;
    row->hint = 0;
}

/* Value i of a row holding more than i values (no check). */
static inline const dw_value *dw__row_at(const dw_row *row, int i)
{
    return &row->cols[i].v;
}

/* The row emptied, then a[0..na-1] and b[0..nb-1] put by position as
 * dw__row_ref_next() puts them (bytes borrowed). DW_EMISUSE, the row left
 * empty, when it kept fewer names. */
static inline int dw__row_ref_fill(dw_row *row, const dw_value *a, int na,
                                   const dw_value *b, int nb)
{
    dw__row_reset(row);
    if (na + nb > row->kept)
        return DW_EMISUSE;
    dw_column *cols = row->cols;
    for (int i = 0; i < na; i++)
        cols[i].v = a[i];
    for (int i = 0; i < nb; i++)
        cols[na + i].v = b[i];
    row->n = na + nb;
    return DW_OK;
}

/* Whether the values of row at slots[0..n-1] are want[0..n-1]
 * (dw_value_equal()); two integers, the common case, compare here. */
static inline int dw__row_values_are(const dw_row *row, const int *slots,
                                     const dw_value *want, int n)
{
    for (int i = 0; i < n; i++) {
        const dw_value *a = &row->cols[slots[i]].v, *b = &want[i];
        if (a->type == DW_TYPE_INTEGER && b->type == DW_TYPE_INTEGER
                ? a->i != b->i
                : !dw_value_equal(a, b))
            return 0;
    }
    return 1;
}

int dw__row_slots_find(dw_row *row, char *const *names, int n,
                       const int **slots, int *missing);

/* *slots: the slot of each of names[0..n-1] in row, found by name the
 * first time and remembered while the row's names stay as they were
 * (names: an array that lives as long as the row's use, such as the
 * spec's). DW_ERROR with *missing the first name the row does not hold;
 * DW_ENOMEM. Valid until the row's next change. */
static inline int dw__row_slots(dw_row *row, char *const *names, int n,
                                const int **slots, int *missing)
{
    if (row->memo_for != names || row->memo_n != n ||
        row->memo_gen != row->gen)
        return dw__row_slots_find(row, names, n, slots, missing);
    for (int i = 0; i < n; i++)
        if ((unsigned)row->memo[i] >= (unsigned)row->n)
            return dw__row_slots_find(row, names, n, slots, missing);
    *slots = row->memo;
    return DW_OK;
}

#endif
