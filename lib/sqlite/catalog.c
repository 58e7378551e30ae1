/* The SQLite backend's answers to the validation rules of lib/validate.c:
 * what the catalog says of a table, whether SQL from the spec prepares,
 * and the row statements built from the validated spec. Nothing here
 * decides whether a spec is acceptable. Every name is looked up with bound
 * parameters (pragma table-valued functions) and quoted when used. */
#include <string.h>

#include "backend.h"

/* SQLite's affinity rules on a declared type, as a neutral class: numbers
 * order alike whatever their numeric affinity. */
static char type_class(const char *declared)
{
    char up[64];
    size_t n = 0;
    for (; declared[n] && n + 1 < sizeof up; n++)
        up[n] = (char)(declared[n] >= 'a' && declared[n] <= 'z'
                           ? declared[n] - 'a' + 'A'
                           : declared[n]);
    up[n] = '\0';
    if (strstr(up, "INT"))
        return DW_CLASS_NUMERIC;
    if (strstr(up, "CHAR") || strstr(up, "CLOB") || strstr(up, "TEXT"))
        return DW_CLASS_TEXT;
    return !*up || strstr(up, "BLOB") ? DW_CLASS_NONE : DW_CLASS_NUMERIC;
}

/* Room for one more element of *arr (of n); NULL when memory ran out. */
static void *grow(void *arr, int n, size_t size)
{
    return dw__realloc(arr, size * (size_t)(n + 1));
}

/* A copy of a text column; NULL column, NULL copy (the caller tells a
 * missing value from a lack of memory with sqlite3_column_type()). */
static int copy_text(sqlite3_stmt *st, int c, char **out)
{
    const char *t = (const char *)sqlite3_column_text(st, c);
    if (!t && sqlite3_column_type(st, c) != SQLITE_NULL)
        return SQLITE_NOMEM;
    *out = t ? dw__strdup(t) : NULL;
    return t && !*out ? SQLITE_NOMEM : SQLITE_OK;
}

/* Prepares a query of one name (?1) and steps it once: SQLITE_ROW,
 * SQLITE_DONE or an error; the caller finalizes *st. */
static int first_row(dw_migration *h, const char *sql, const char *name,
                     sqlite3_stmt **st)
{
    *st = NULL;
    int rc = dw__prepare(h, sql, st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_bind_text(*st, 1, name, -1, SQLITE_STATIC);
    return sqlite3_step(*st);
}

/* The name as the schema spells it, and whether it is a view;
 * SQLITE_DONE when there is no such table or view. */
static int find_table(dw_migration *h, const char *name, dw_table_desc *t)
{
    sqlite3_stmt *st;
    int rc = first_row(h,
                       "SELECT name, type = 'view' FROM main.sqlite_schema "
                       "WHERE name = ?1 COLLATE NOCASE AND type IN "
                       "('table', 'view')",
                       name, &st);
    if (rc == SQLITE_ROW) {
        t->view = sqlite3_column_int(st, 1);
        if (copy_text(st, 0, &t->name) != SQLITE_OK || !t->name)
            rc = SQLITE_NOMEM;
    }
    sqlite3_finalize(st);
    return rc;
}

/* A column's declared collation (BINARY when none), as SQLite compares
 * it in ranges and ORDER BY; *coll is SQLite's, valid until the schema
 * changes. Needs SQLite built with SQLITE_ENABLE_COLUMN_METADATA. */
static int declared_collation(dw_migration *h, const char *table,
                              const char *column, const char **coll)
{
    *coll = NULL;
    return sqlite3_table_column_metadata(h->db, "main", table, column, NULL,
                                         coll, NULL, NULL, NULL);
}

/* Left unknown (NULL) only where SQLite names no collation; a failure
 * (a locked schema, memory) is an error, not a skipped check. */
static int column_collation(dw_migration *h, const char *table,
                            dw_col_desc *c)
{
    const char *coll;
    int rc = declared_collation(h, table, c->name, &coll);
    if (rc != SQLITE_OK || !coll)
        return rc;
    c->coll = dw__strdup(coll);
    return c->coll ? SQLITE_OK : SQLITE_NOMEM;
}

static int read_columns(dw_migration *h, dw_table_desc *t)
{
    sqlite3_stmt *st = NULL;
    int rc = dw__prepare(h,
                         "SELECT name, coalesce(type, ''), \"notnull\", pk, "
                         "hidden FROM pragma_table_xinfo(?1) ORDER BY cid",
                         &st, NULL);
    if (rc == SQLITE_OK)
        sqlite3_bind_text(st, 1, t->name, -1, SQLITE_STATIC);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        dw_col_desc *cols = grow(t->cols, t->ncols, sizeof *cols);
        if (!cols) {
            rc = SQLITE_NOMEM;
            break;
        }
        t->cols = cols;
        dw_col_desc *c = &cols[t->ncols];
        memset(c, 0, sizeof *c);
        t->ncols++;
        if ((rc = copy_text(st, 0, &c->name)) == SQLITE_OK)
            rc = copy_text(st, 1, &c->type);
        if (rc == SQLITE_OK && (!c->name || !c->type))
            rc = SQLITE_NOMEM;
        if (rc != SQLITE_OK)
            break;
        c->type_class = type_class(c->type);
        c->not_null = sqlite3_column_int(st, 2);
        c->pk = sqlite3_column_int(st, 3);
        c->generated = sqlite3_column_int(st, 4) != 0;
        rc = column_collation(h, t->name, c);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* The key columns of one unique index, in order, with their collations;
 * an expression column is a NULL name. */
static int read_index(sqlite3_stmt *info, dw_unique_desc *u)
{
    int rc;
    while ((rc = sqlite3_step(info)) == SQLITE_ROW) {
        char **cols = grow(u->cols, u->ncols, sizeof *cols);
        if (cols)
            u->cols = cols;
        char **colls = cols ? grow(u->colls, u->ncols, sizeof *colls) : NULL;
        if (!colls)
            return SQLITE_NOMEM;
        u->colls = colls;
        u->cols[u->ncols] = u->colls[u->ncols] = NULL;
        u->ncols++;
        if ((rc = copy_text(info, 0, &u->cols[u->ncols - 1])) != SQLITE_OK ||
            (rc = copy_text(info, 1, &u->colls[u->ncols - 1])) != SQLITE_OK)
            return rc;
        if (!u->colls[u->ncols - 1])
            return SQLITE_NOMEM;
    }
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int read_uniques(dw_migration *h, dw_table_desc *t)
{
    sqlite3_stmt *list = NULL, *info = NULL;
    int rc = dw__prepare(h,
                         "SELECT name, partial, origin = 'pk' FROM "
                         "pragma_index_list(?1) WHERE `unique`",
                         &list, NULL);
    if (rc == SQLITE_OK)
        rc = dw__prepare(h,
                         "SELECT name, coll FROM pragma_index_xinfo(?1) "
                         "WHERE key ORDER BY seqno",
                         &info, NULL);
    if (rc == SQLITE_OK)
        sqlite3_bind_text(list, 1, t->name, -1, SQLITE_STATIC);
    while (rc == SQLITE_OK && (rc = sqlite3_step(list)) == SQLITE_ROW) {
        dw_unique_desc *u = grow(t->uniques, t->nuniques, sizeof *u);
        if (!u) {
            rc = SQLITE_NOMEM;
            break;
        }
        t->uniques = u;
        u = &u[t->nuniques++];
        memset(u, 0, sizeof *u);
        u->partial = sqlite3_column_int(list, 1);
        u->primary = sqlite3_column_int(list, 2);
        if ((rc = copy_text(list, 0, &u->name)) == SQLITE_OK && !u->name)
            rc = SQLITE_NOMEM;
        if (rc != SQLITE_OK)
            break;
        sqlite3_bind_text(info, 1, u->name, -1, SQLITE_STATIC);
        rc = read_index(info, u);
        sqlite3_reset(info);
    }
    sqlite3_finalize(list);
    sqlite3_finalize(info);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* One foreign key of a row of pragma_foreign_key_list: a new one when its
 * seq is 0, else the next column of the last. */
static int add_fk_column(sqlite3_stmt *st, dw_table_desc *t)
{
    if (sqlite3_column_int(st, 1) == 0) {
        dw_fk_desc *fk = grow(t->fks, t->nfks, sizeof *fk);
        if (!fk)
            return SQLITE_NOMEM;
        t->fks = fk;
        fk = &fk[t->nfks++];
        memset(fk, 0, sizeof *fk);
        int rc = copy_text(st, 2, &fk->ref_table);
        if (rc != SQLITE_OK || !fk->ref_table)
            return SQLITE_NOMEM;
    }
    dw_fk_desc *fk = &t->fks[t->nfks - 1];
    char **cols = grow(fk->cols, fk->ncols, sizeof *cols);
    if (cols)
        fk->cols = cols;
    char **refs = cols ? grow(fk->ref_cols, fk->ncols, sizeof *refs) : NULL;
    if (!refs)
        return SQLITE_NOMEM;
    fk->ref_cols = refs;
    fk->cols[fk->ncols] = fk->ref_cols[fk->ncols] = NULL;
    fk->ncols++;
    int rc = copy_text(st, 3, &fk->cols[fk->ncols - 1]);
    if (rc == SQLITE_OK)
        rc = copy_text(st, 4, &fk->ref_cols[fk->ncols - 1]);
    return rc == SQLITE_OK && !fk->cols[fk->ncols - 1] ? SQLITE_NOMEM : rc;
}

static int read_foreign_keys(dw_migration *h, dw_table_desc *t)
{
    sqlite3_stmt *st = NULL;
    int rc = dw__prepare(h,
                         "SELECT id, seq, \"table\", \"from\", \"to\" FROM "
                         "pragma_foreign_key_list(?1) ORDER BY id, seq",
                         &st, NULL);
    if (rc == SQLITE_OK)
        sqlite3_bind_text(st, 1, t->name, -1, SQLITE_STATIC);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
        rc = add_fk_column(st, t);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int dw__sqlite_describe_table(dw_migration *h, int side, const char *name,
                              dw_table_desc *t)
{
    int rc = find_table(h, name, t);
    if (rc == SQLITE_DONE)
        return DW_ENOTFOUND;
    if (rc != SQLITE_ROW)
        return dw__sqlite_error(h, rc, side, "reading the schema");
    if (t->view)
        return DW_OK;
    if ((rc = read_columns(h, t)) != SQLITE_OK)
        return dw__sqlite_error(h, rc, side, "reading the table's columns");
    if ((rc = read_uniques(h, t)) != SQLITE_OK)
        return dw__sqlite_error(h, rc, side, "reading the table's indexes");
    if ((rc = read_foreign_keys(h, t)) != SQLITE_OK)
        return dw__sqlite_error(h, rc, side,
                                "reading the table's foreign keys");
    return DW_OK;
}

/* How key column i of a side compares: its affinity class and its
 * declared collation, the one its ranges and ORDER BY use (validation
 * refused a key whose unique indexes all compare it otherwise). A column
 * that is not there (the old side after the contract) is BINARY. */
int dw__sqlite_key_traits(dw_migration *h, int side, int i, char cls[2],
                          char coll[32])
{
    const dw_side_def *d = &h->spec.side[side];
    sqlite3_stmt *st = NULL;
    const char *c = "BINARY", *type = "";
    int rc = dw__prepare(h,
                         "SELECT coalesce(type, '') FROM "
                         "pragma_table_xinfo(?1) WHERE name = ?2",
                         &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, d->table, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, d->key[i], -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    if (rc == SQLITE_ROW && !(type = (const char *)sqlite3_column_text(st, 0)))
        rc = SQLITE_NOMEM;
    if (rc == SQLITE_ROW &&
        (rc = declared_collation(h, d->table, d->key[i], &c)) == SQLITE_OK &&
        !c)
        c = "BINARY";
    if (rc == SQLITE_OK || rc == SQLITE_DONE) {
        cls[0] = type_class(rc == SQLITE_OK ? type : "");
        cls[1] = '\0';
        sqlite3_snprintf(32, coll, "%s", c);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? DW_OK
                           : dw__sqlite_error(h, rc, side,
                                              "reading the key's type");
}

/* ---- SQL from the spec ------------------------------------------------------ */

/* What preparing gave: rc and the statement (finalized here). */
static int checked(dw_migration *h, int rc, sqlite3_stmt *st,
                   const char *tail, dw_sql_check *out)
{
    if (rc == SQLITE_NOMEM) {
        sqlite3_finalize(st);
        return DW_ENOMEM;
    }
    if (rc != SQLITE_OK) {
        const char *why = sqlite3_errmsg(h->db);
        out->aggregate = strstr(why, "misuse of") != NULL;
        return (out->errmsg = dw__strdup(why)) ? DW_OK : DW_ENOMEM;
    }
    out->prepared = 1;
    out->empty = !st;
    while (tail && (*tail == ' ' || *tail == '\t' || *tail == '\n' ||
                    *tail == '\r'))
        tail++;
    out->trailing = tail && *tail;
    out->readonly = st && sqlite3_stmt_readonly(st);
    out->columns = st ? sqlite3_column_count(st) : 0;
    out->params = st ? sqlite3_bind_parameter_count(st) : 0;
    sqlite3_finalize(st);
    return DW_OK;
}

/* In WHERE, SQLite itself refuses aggregate and window functions (one
 * inside a scalar subquery is that subquery's business, and allowed). */
int dw__sqlite_check_expr(dw_migration *h, const char *source,
                          const char *expr, dw_sql_check *out)
{
    memset(out, 0, sizeof *out);
    dw_buf sql;
    dw_buf_init(&sql);
    dw_buf_printf(&sql, "SELECT (%s) FROM ", expr);
    dw_buf_table(&sql, source);
    dw_buf_printf(&sql, " WHERE (%s) IS NOT NULL", expr);
    if (sql.oom) {
        dw_buf_free(&sql);
        return DW_ENOMEM;
    }
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    int rc = dw__prepare_strict(h, sql.p, &st, &tail);
    rc = checked(h, rc, st, tail, out);
    dw_buf_free(&sql);
    return rc;
}

int dw__sqlite_check_statement(dw_migration *h, const char *sql,
                               dw_sql_check *out, const char **tail)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = NULL;
    *tail = NULL;
    int rc = dw__prepare_strict(h, sql, &st, tail);
    /* The next statement's start, not what follows this one's end. */
    return checked(h, rc, st, NULL, out);
}

/* ---- the stored spec after the contract ------------------------------------ */

int dw__sqlite_stored_spec(dw_migration *h, char **spec)
{
    *spec = NULL;
    sqlite3_stmt *st;
    int rc = first_row(h, "SELECT spec FROM dw_migrations WHERE name = ?1",
                       h->spec.name, &st);
    if (rc == SQLITE_ROW)
        rc = copy_text(st, 0, spec);
    sqlite3_finalize(st);
    if (rc == SQLITE_OK || rc == SQLITE_DONE)
        return DW_OK;
    return dw__sqlite_error(h, rc, DW_SIDE_OLD, "reading the stored spec");
}

/* ---- the row statements ------------------------------------------------------ */

void dw__sqlite_rows_forget(dw_migration *h)
{
    sqlite_backend *bk = BK(h);
    for (int id = ST_READ_SIDE; id < ST_COUNT; id++) {
        sqlite3_finalize(bk->st[id]);
        bk->st[id] = NULL;
        dw__free(bk->sql[id]);
        bk->sql[id] = NULL;
    }
    for (int k = 0; k < RK_KINDS; k++)
        for (int side = 0; side < 3; side++)
            for (int v = 0; v < RB_VARIANTS; v++) {
                sqlite3_finalize(bk->range[k][side][v]);
                bk->range[k][side][v] = NULL;
            }
}

/* Every row statement is prepared now, so a problem shows at open (not
 * after the contract: most of them name the dropped old model). */
int dw__sqlite_rows_prepare(dw_migration *h)
{
    int rc = dw__sqlite_build_row_sql(h);
    for (int id = ST_READ_SIDE; rc == DW_OK && !h->contracted && id < ST_COUNT;
         id++)
        if (BK(h)->sql[id] && !dw__stmt(h, id))
            rc = h->errcode == DW_ERROR ? DW_ESCHEMA : h->errcode;
    return rc;
}
