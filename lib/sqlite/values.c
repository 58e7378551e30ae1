/* Values between SQLite and the library: binding dw_values to statement
 * parameters, reading columns into dw_values and rows, and SQLite's result
 * codes as DW_ codes. */
#include <limits.h>

#include "backend.h"

int dw__from_sqlite(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE: return DW_OK;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return DW_EBUSY;
    case SQLITE_NOMEM: return DW_ENOMEM;
    case SQLITE_CONSTRAINT: return DW_ECONSTRAINT;
    case SQLITE_MISUSE: return DW_EMISUSE;
    default: return DW_ERROR;
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

int dw__bind_value(sqlite3_stmt *stmt, int idx, const dw_value *v)
{
    return bind_one(stmt, idx, v, SQLITE_STATIC);
}

int dw_sqlite_bind_values(sqlite3_stmt *stmt, int first, const dw_value *v,
                          int n)
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

int dw_sqlite_row_set_columns(dw_row *row, sqlite3_stmt *stmt)
{
    if (!row || !stmt)
        return DW_EMISUSE;
    /* The connection's mutex once for the whole row (NULL, a no-op, when
     * SQLite runs without): under it the values sqlite3_column_value()
     * returns are as safe to read as sqlite3_column_text()'s, and each
     * column takes two calls that lock instead of four. */
    sqlite3_mutex *mutex = sqlite3_db_mutex(sqlite3_db_handle(stmt));
    sqlite3_mutex_enter(mutex);
    int n = sqlite3_column_count(stmt), rc = DW_OK;
    for (int i = 0; rc == DW_OK && i < n; i++) {
        const char *name = sqlite3_column_name(stmt, i);
        sqlite3_value *cv = sqlite3_column_value(stmt, i);
        dw_value v;
        if (!name || !cv)
            rc = DW_ENOMEM;
        else if (!*name) /* dw_row_set() refuses an empty name */
            rc = DW_EMISUSE;
        else if ((rc = dw__value_of(&v, cv)) == DW_OK)
            rc = dw__row_put(row, name, &v);
    }
    sqlite3_mutex_leave(mutex);
    return rc;
}
