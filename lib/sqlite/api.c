/* The public functions that take an SQLite connection: each hands it to
 * the core with the SQLite driver. */
#include "backend.h"

int dw_open(dw_migration **out, sqlite3 *db, const dw_options *opts,
            char **errmsg)
{
    return dw__open(out, &dw__sqlite_driver, db, opts, 0, errmsg);
}

int dw_open_json(dw_migration **out, sqlite3 *db, const char *name,
                 const char *spec_json, unsigned int flags,
                 const char *reason, char **errmsg)
{
    return dw__open_json(out, &dw__sqlite_driver, db, name, spec_json, flags,
                         reason, errmsg);
}

int dw_open_stored(dw_migration **out, sqlite3 *db, const char *name,
                   unsigned int flags, char **errmsg)
{
    return dw__open_stored(out, &dw__sqlite_driver, db, name, flags,
                           errmsg);
}

int dw_list(sqlite3 *db, dw_list_fn fn, void *payload, char **errmsg)
{
    return dw__list(&dw__sqlite_driver, db, fn, payload, errmsg);
}

int dw_remove(sqlite3 *db, const char *name, unsigned int flags,
              const char *reason, char **errmsg)
{
    return dw__remove(&dw__sqlite_driver, db, name, flags, reason, errmsg);
}

sqlite3 *dw_db(const dw_migration *h) { return h ? (sqlite3 *)h->db : NULL; }
