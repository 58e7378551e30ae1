/* compare(key)'s second half: two rows in one comparison shape, diffed field
 * by field -- used by shadow reads and dw_compare(), later by verification.
 * Produces the differences, their safe descriptions and a digest. */
#include <string.h>

#include "internal.h"

void dw__outcome_free(dw_outcome *o)
{
    for (int i = 0; o->descs && i < 2 * o->ndiffs; i++)
        dw__free(o->descs[i]);
    dw__free(o->descs);
    dw__free(o->diffs);
    dw_row_free(o->norm[DW_SIDE_OLD]);
    dw_row_free(o->norm[DW_SIDE_NEW]);
    memset(o, 0, sizeof *o);
}

static int may_show_raw(const dw_migration *h, const char *column)
{
    return (h->flags & DW_OPEN_LOG_RAW_VALUES) &&
           !dw_name_set_has(&h->redact, column);
}

static char *describe(const dw_migration *h, const char *column,
                      const dw_value *v)
{
    dw_buf b;
    dw_buf_init(&b);
    if (may_show_raw(h, column))
        dw__value_desc_raw(&b, v);
    else
        dw__value_desc_digest(&b, v);
    return dw_buf_take(&b);
}

static int equal_values(dw_migration *h, const char *column,
                        const dw_value *a, const dw_value *b)
{
    if (h->ropts.compare) {
        int r = h->ropts.compare(column, a, b, h->ropts.compare_payload);
        if (r == 0 || r == 1)
            return r == 0;
    }
    return dw_value_equal(a, b);
}

static int add_diff(dw_migration *h, dw_outcome *o, int *cap,
                    const char *column, const dw_value *ov,
                    const dw_value *nv)
{
    if (o->ndiffs == *cap) {
        int ncap = *cap ? *cap * 2 : 4;
        dw_diff *d = dw__realloc(o->diffs, sizeof(dw_diff) * (size_t)ncap);
        if (!d)
            return DW_ENOMEM;
        o->diffs = d;
        char **descs = dw__realloc(o->descs, sizeof(char *) * 2 * (size_t)ncap);
        if (!descs)
            return DW_ENOMEM;
        o->descs = descs;
        *cap = ncap;
    }
    char *od = describe(h, column, ov);
    char *nd = od ? describe(h, column, nv) : NULL;
    if (!nd) {
        dw__free(od);
        return DW_ENOMEM;
    }
    int raw = may_show_raw(h, column);
    dw_diff *d = &o->diffs[o->ndiffs];
    d->column = column;
    d->old_value = raw ? ov : NULL;
    d->new_value = raw ? nv : NULL;
    d->old_desc = od;
    d->new_desc = nd;
    o->descs[2 * o->ndiffs] = od;
    o->descs[2 * o->ndiffs + 1] = nd;
    o->ndiffs++;
    dw_sha256_update(&o->hash, column, strlen(column) + 1);
    dw_sha256_value(&o->hash, ov);
    dw_sha256_value(&o->hash, nv);
    return DW_OK;
}

/* The digest identifies the difference itself (kind, columns, values), the
 * same whether or not raw values may be shown. */
static void digest_start(dw_outcome *o, int kind)
{
    unsigned char tag = (unsigned char)kind;
    dw_sha256_init(&o->hash);
    dw_sha256_update(&o->hash, &tag, 1);
}

static void digest_finish(dw_outcome *o)
{
    unsigned char d[32];
    dw_sha256_final(&o->hash, d);
    dw_hex(o->digest, d, 8);
}

static int normalise(dw_migration *h, dw_outcome *o, int side,
                     const dw_row **row)
{
    if (dw_row_new(&o->norm[side]) != DW_OK ||
        dw__row_copy(o->norm[side], *row) != DW_OK)
        return DW_ENOMEM;
    int r = h->ropts.normalize(o->norm[side], side, h->ropts.compare_payload);
    if (r != DW_OK)
        return dw__error(h, DW_ECALLBACK, side,
                         "the read options' normaliser failed on the %s "
                         "row (returned %d)",
                         dw__side_word(side), r);
    *row = o->norm[side];
    return DW_OK;
}

static const dw_value null_value = {DW_TYPE_NULL, 0, 0.0, NULL, 0};

int dw__compare_rows(dw_migration *h, dw_outcome *o, const dw_row *old_row,
                     int old_found, const dw_row *new_row, int new_found)
{
    memset(o, 0, sizeof *o);
    if (!old_found && !new_found)
        return DW_OK;
    if (!new_found || !old_found) {
        o->kind = new_found ? DW_MISMATCH_EXTRA_NEW : DW_MISMATCH_MISSING_NEW;
        digest_start(o, o->kind);
        digest_finish(o);
        return DW_OK;
    }
    int rc = DW_OK, cap = 0;
    digest_start(o, DW_MISMATCH_DIFFERENT);
    if (h->ropts.normalize) {
        rc = normalise(h, o, DW_SIDE_OLD, &old_row);
        if (rc == DW_OK)
            rc = normalise(h, o, DW_SIDE_NEW, &new_row);
    }
    /* Every column of the new row, then the old row's columns the new one
     * lacks; a column on one side only compares against NULL. */
    for (int i = 0; rc == DW_OK && i < dw_row_count(new_row); i++) {
        const char *name = dw_row_name(new_row, i);
        if (dw_name_set_has(&h->ignore, name))
            continue;
        const dw_value *nv = dw_row_value(new_row, i);
        const dw_value *ov = dw_row_get(old_row, name);
        if (!ov)
            ov = &null_value;
        if (!equal_values(h, name, ov, nv))
            rc = add_diff(h, o, &cap, name, ov, nv);
    }
    for (int i = 0; rc == DW_OK && i < dw_row_count(old_row); i++) {
        const char *name = dw_row_name(old_row, i);
        if (dw_name_set_has(&h->ignore, name) ||
            dw_row_find(new_row, name) >= 0)
            continue;
        const dw_value *ov = dw_row_value(old_row, i);
        if (!equal_values(h, name, ov, &null_value))
            rc = add_diff(h, o, &cap, name, ov, &null_value);
    }
    if (rc == DW_ENOMEM)
        dw__error(h, rc, DW_SIDE_NONE, "out of memory");
    if (rc != DW_OK) {
        dw__outcome_free(o);
        return rc;
    }
    o->kind = o->ndiffs ? DW_MISMATCH_DIFFERENT : 0;
    if (o->kind)
        digest_finish(o);
    return DW_OK;
}
