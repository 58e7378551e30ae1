/* The SQLite backend's row work: reading a side, reading a side mapped into
 * the other's shape, syncing, upserting and deleting one key. The SQL is
 * generated once per handle from the validated spec, every name quoted,
 * every value bound. */
#include <string.h>

#include "backend.h"

static void add_where_key(dw_buf *b, const dw_side_def *d)
{
    dw_buf_puts(b, " WHERE ");
    for (int i = 0; i < d->nkey; i++) {
        if (i)
            dw_buf_puts(b, " AND ");
        dw_buf_ident(b, d->key[i]);
        dw_buf_printf(b, " = ?%d", i + 1);
    }
}

void dw__add_conflict_update(dw_buf *b, const dw_side_def *d)
{
    dw_buf_puts(b, " ON CONFLICT(");
    dw_buf_ident_list(b, NULL, d->key, d->nkey, 1);
    if (d->ncols == 0) {
        dw_buf_puts(b, ") DO NOTHING");
        return;
    }
    dw_buf_puts(b, ") DO UPDATE SET ");
    for (int i = 0; i < d->ncols; i++) {
        if (i)
            dw_buf_add(b, ", ", 2);
        dw_buf_ident(b, d->cols[i]);
        dw_buf_puts(b, " = excluded.");
        dw_buf_ident(b, d->cols[i]);
    }
}

void dw__add_changed_only(dw_buf *b, const dw_side_def *d)
{
    if (d->ncols == 0)
        return; /* DO NOTHING: nothing to compare */
    dw_buf_puts(b, " WHERE ");
    for (int i = 0; i < d->ncols; i++) {
        dw_buf_puts(b, i ? " OR " : "");
        dw_buf_ident(b, d->table);
        dw_buf_puts(b, ".");
        dw_buf_ident(b, d->cols[i]);
        dw_buf_puts(b, " IS NOT excluded.");
        dw_buf_ident(b, d->cols[i]);
        dw_buf_puts(b, " COLLATE BINARY");
    }
}

/* INSERT INTO "side"("k", ..., "c", ...  -- the caller closes the list. */
static void add_insert_head(dw_buf *b, const dw_side_def *d)
{
    dw_buf_puts(b, "INSERT INTO ");
    dw_buf_table(b, d->table);
    dw_buf_puts(b, "(");
    dw_buf_ident_list(b, NULL, d->key, d->nkey, 1);
    dw_buf_ident_list(b, NULL, d->cols, d->ncols, 0);
}

/* Writes bound values: ?1.. the key, then the columns. When both sides
 * are one table the row is shared and already exists whenever its source
 * does, so it is an UPDATE of this side's columns (an INSERT would trip
 * NOT NULL on the other side's columns). With changed_only a row equal
 * already is left alone (and not counted as changed). */
static void add_upsert(dw_buf *b, const dw_spec *s, int side,
                       int changed_only)
{
    const dw_side_def *d = &s->side[side];
    if (s->same_table) {
        dw_buf_puts(b, "UPDATE ");
        dw_buf_table(b, d->table);
        dw_buf_puts(b, " SET ");
        for (int i = 0; i < d->ncols; i++) {
            dw_buf_puts(b, i ? ", " : "");
            dw_buf_ident(b, d->cols[i]);
            dw_buf_printf(b, " = ?%d", d->nkey + i + 1);
        }
        add_where_key(b, d);
        for (int i = 0; changed_only && i < d->ncols; i++) {
            dw_buf_puts(b, i ? " OR " : " AND (");
            dw_buf_ident(b, d->cols[i]);
            dw_buf_printf(b, " IS NOT ?%d COLLATE BINARY", d->nkey + i + 1);
        }
        if (changed_only && d->ncols > 0)
            dw_buf_puts(b, ")");
        return;
    }
    add_insert_head(b, d);
    dw_buf_puts(b, ") VALUES(");
    for (int i = 0; i < d->nkey + d->ncols; i++)
        dw_buf_printf(b, "%s?%d", i ? ", " : "", i + 1);
    dw_buf_puts(b, ")");
    dw__add_conflict_update(b, d);
    if (changed_only)
        dw__add_changed_only(b, d);
}

static int keep_sql(dw_migration *h, int id, dw_buf *b)
{
    char *sql = dw_buf_take(b);
    if (!sql)
        return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    BK(h)->sql[id] = sql;
    return DW_OK;
}

int dw__sqlite_build_row_sql(dw_migration *h)
{
    const dw_spec *s = &h->spec;
    dw_buf b;
    int rc = DW_OK;
    for (int side = DW_SIDE_OLD; rc == DW_OK && side <= DW_SIDE_NEW; side++) {
        const dw_side_def *d = &s->side[side];
        const dw_side_def *src = &s->side[side == DW_SIDE_OLD ? DW_SIDE_NEW
                                                               : DW_SIDE_OLD];
        /* SELECT key, cols FROM side WHERE key */
        dw_buf_init(&b);
        dw_buf_puts(&b, "SELECT ");
        dw_buf_ident_list(&b, NULL, d->key, d->nkey, 1);
        dw_buf_ident_list(&b, NULL, d->cols, d->ncols, 0);
        dw_buf_puts(&b, " FROM ");
        dw_buf_table(&b, d->table);
        add_where_key(&b, d);
        if ((rc = keep_sql(h, ST_READ_SIDE + side, &b)) != DW_OK)
            break;

        /* DELETE FROM side WHERE key */
        dw_buf_init(&b);
        dw_buf_puts(&b, "DELETE FROM ");
        dw_buf_table(&b, d->table);
        add_where_key(&b, d);
        if ((rc = keep_sql(h, ST_DELETE + side, &b)) != DW_OK)
            break;

        if (!s->map[side].present)
            continue; /* this side is never a mapping's target */

        dw_buf_init(&b);
        add_upsert(&b, s, side, 0);
        if ((rc = keep_sql(h, ST_UPSERT + side, &b)) != DW_OK)
            break;
        dw_buf_init(&b);
        add_upsert(&b, s, side, 1);
        if ((rc = keep_sql(h, ST_UPSERT_CHANGED + side, &b)) != DW_OK)
            break;

        char **exprs = s->map[side].exprs;
        if (!exprs)
            continue; /* a C mapping: no SQL to generate */

        /* SELECT src.key AS key, (expr) AS col FROM src WHERE key */
        dw_buf_init(&b);
        dw_buf_puts(&b, "SELECT ");
        for (int i = 0; i < d->nkey; i++) {
            dw_buf_puts(&b, i ? ", " : "");
            dw_buf_ident(&b, src->key[i]);
            dw_buf_puts(&b, " AS ");
            dw_buf_ident(&b, d->key[i]);
        }
        for (int i = 0; i < d->ncols; i++) {
            dw_buf_sql_in(&b, ", (", exprs[i], ") AS ");
            dw_buf_ident(&b, d->cols[i]);
        }
        dw_buf_puts(&b, " FROM ");
        dw_buf_table(&b, src->table);
        add_where_key(&b, src);
        if ((rc = keep_sql(h, ST_READ_MAPPED + side, &b)) != DW_OK)
            break;

        /* Sync in one statement. Two tables: INSERT ... SELECT ... ON
         * CONFLICT(key) DO UPDATE -- never OR IGNORE or REPLACE, which would
         * drop or delete rows on another UNIQUE key. One table: UPDATE the
         * side's columns from the same row. */
        dw_buf_init(&b);
        if (s->same_table) {
            dw_buf_puts(&b, "UPDATE ");
            dw_buf_table(&b, d->table);
            dw_buf_puts(&b, " SET ");
            for (int i = 0; i < d->ncols; i++) {
                dw_buf_puts(&b, i ? ", " : "");
                dw_buf_ident(&b, d->cols[i]);
                dw_buf_sql_in(&b, " = (", exprs[i], ")");
            }
            add_where_key(&b, d);
        } else {
            add_insert_head(&b, d);
            dw_buf_puts(&b, ") SELECT ");
            dw_buf_ident_list(&b, NULL, src->key, src->nkey, 1);
            for (int i = 0; i < d->ncols; i++)
                dw_buf_sql_in(&b, ", (", exprs[i], ")");
            dw_buf_puts(&b, " FROM ");
            dw_buf_table(&b, src->table);
            add_where_key(&b, src);
            dw__add_conflict_update(&b, d);
        }
        if ((rc = keep_sql(h, ST_SYNC + side, &b)) != DW_OK)
            break;
    }
    return rc;
}

/* A value could not be bound (too big, out of memory): an error, never a
 * silent "no such row". */
static int bind_failed(dw_migration *h, sqlite3_stmt *st, int rc, int side)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return dw__sqlite_error(h, rc, side, "binding a value");
}

/* Steps a keyed SELECT and copies its one row into out. */
static int read_row(dw_migration *h, int id, int side, const dw_value *key,
                    dw_row *out, const char *what)
{
    sqlite3_stmt *st = dw__stmt(h, id);
    if (!st)
        return h->errcode;
    int nkey = h->spec.side[side].nkey;
    int rc = dw__bind_key(st, key, nkey);
    int result = DW_OK;
    if (rc != SQLITE_OK)
        return bind_failed(h, st, rc, side);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        result = dw_sqlite_row_set_columns(out, st);
        if (result != DW_OK)
            dw__error(h, result, side, "%s side: out of memory",
                      dw__side_word(side));
    } else if (rc == SQLITE_DONE) {
        result = DW_ENOTFOUND;
    } else {
        result = dw__sqlite_error(h, rc, side, what);
    }
    sqlite3_reset(st);
    return result;
}

int dw__sqlite_read_side(dw_migration *h, int side, const dw_value *key,
                         dw_row *out)
{
    return read_row(h, ST_READ_SIDE + side, side, key, out, "reading the row");
}

int dw__sqlite_read_mapped(dw_migration *h, int target, const dw_value *key,
                           dw_row *out)
{
    int source = target == DW_SIDE_NEW ? DW_SIDE_OLD : DW_SIDE_NEW;
    return read_row(h, ST_READ_MAPPED + target, source, key, out,
                    "mapping the row");
}

/* Whether the source row of `key` exists, through the statement that maps
 * it into target's shape. */
static int source_exists(dw_migration *h, int target, const dw_value *key,
                         int *found)
{
    int source = dw__other_side(target);
    sqlite3_stmt *st = dw__stmt(h, ST_READ_MAPPED + target);
    if (!st)
        return h->errcode;
    int rc = dw__bind_key(st, key, h->spec.side[source].nkey);
    if (rc != SQLITE_OK)
        return bind_failed(h, st, rc, source);
    rc = sqlite3_step(st);
    *found = rc == SQLITE_ROW;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return dw__sqlite_error(h, rc, source, "reading the source row");
    return DW_OK;
}

int dw__sqlite_sync_sql(dw_migration *h, int target, const dw_value *key,
                        int *found)
{
    sqlite3_stmt *st = dw__stmt(h, ST_SYNC + target);
    if (!st)
        return h->errcode;
    int rc = dw__bind_key(st, key, h->spec.side[target].nkey);
    if (rc == SQLITE_OK)
        rc = dw__run(h, st, target, "syncing the row through the mapping");
    else
        bind_failed(h, st, rc, target);
    if (rc != SQLITE_OK)
        return h->errcode;
    /* The upsert (or the one-table UPDATE) changes exactly one row when the
     * source row exists -- except into a side of the key alone, whose
     * DO NOTHING leaves a row already there unchanged: then the source
     * is asked. */
    *found = sqlite3_changes(h->db) > 0;
    if (*found || h->spec.side[target].ncols > 0)
        return DW_OK;
    return source_exists(h, target, key, found);
}

/* The value of column i of side d in row: its slot when slots says
 * (a C mapping's row, as the callback left it), else taken by position
 * where the row holds the key then the columns in the spec's order (as
 * dw__mapped_shape() fills it); a row in another order is read by name. */
static const dw_value *column_of(const dw_row *row, const int *slots,
                                 const dw_side_def *d, int i)
{
    if (slots)
        return dw_row_value(row, slots[i]);
    int at = d->nkey + i;
    const char *name = dw_row_name(row, at);
    if (name && strcmp(name, d->cols[i]) == 0)
        return dw_row_value(row, at);
    return dw_row_get(row, d->cols[i]);
}

/* Runs upsert statement id with the key and the row's columns bound;
 * *changed (when not NULL) says whether it changed a row. */
static int write_row(dw_migration *h, int id, int side, const dw_value *key,
                     const dw_row *row, const int *slots, int *changed)
{
    const dw_side_def *d = &h->spec.side[side];
    sqlite3_stmt *st = dw__stmt(h, id);
    if (!st)
        return h->errcode;
    int rc = dw__bind_key(st, key, d->nkey);
    for (int i = 0; rc == SQLITE_OK && i < d->ncols; i++)
        rc = dw__bind_value(st, d->nkey + i + 1, column_of(row, slots, d, i));
    if (rc == SQLITE_OK)
        rc = dw__run(h, st, side, "writing the mapped row");
    else
        bind_failed(h, st, rc, side);
    if (rc == SQLITE_OK && changed)
        *changed = sqlite3_changes(h->db) > 0;
    return rc == SQLITE_OK ? DW_OK : h->errcode;
}

int dw__sqlite_upsert_row(dw_migration *h, int side, const dw_value *key,
                          const dw_row *row)
{
    return write_row(h, ST_UPSERT + side, side, key, row, NULL, NULL);
}

int dw__sqlite_upsert_changed(dw_migration *h, int side,
                              const dw_value *key, const dw_row *row,
                              const int *slots, int *changed)
{
    *changed = 0;
    return write_row(h, ST_UPSERT_CHANGED + side, side, key, row, slots,
                     changed);
}

int dw__sqlite_delete_row(dw_migration *h, int side, const dw_value *key)
{
    sqlite3_stmt *st = dw__stmt(h, ST_DELETE + side);
    if (!st)
        return h->errcode;
    int rc = dw__bind_key(st, key, h->spec.side[side].nkey);
    if (rc == SQLITE_OK)
        rc = dw__run(h, st, side, "deleting the row");
    else
        bind_failed(h, st, rc, side);
    return rc == SQLITE_OK ? DW_OK : h->errcode;
}
