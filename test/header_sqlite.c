/* Compiled by `make check-header` as strict C11 and as C++11: the SQLite
 * header of the library works whether sqlite3.h comes before it, after it,
 * or not at all (HEADER_ORDER 1, 2, 0). */
#if HEADER_ORDER == 1
#include <sqlite3.h>
#endif
#include <dualwrite/sqlite.h>
#if HEADER_ORDER == 2
#include <sqlite3.h>
#endif

int dw_header_sqlite_check(struct sqlite3 *db, struct sqlite3_stmt *st);
int dw_header_sqlite_check(struct sqlite3 *db, struct sqlite3_stmt *st)
{
    dw_migration *h = NULL;
    dw_row *row = NULL;
    dw_value v = dw_int(1);
    return dw_sqlite_open(&h, db, NULL, NULL) +
           dw_sqlite_row_set_columns(row, st) +
           dw_sqlite_bind_values(st, 1, &v, 1) + (dw_sqlite_db(h) == db);
}
