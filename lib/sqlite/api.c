/* The public functions of dualwrite/sqlite.h: the ones that take an SQLite
 * connection hand it to the core with the SQLite driver; the rest are
 * SQLite's side of callbacks and of the read budget. */
#include <stdio.h>

#include "backend.h"

int dw_sqlite_open(dw_migration **out, sqlite3 *db, const dw_options *opts,
                   char **errmsg)
{
    return dw__open(out, &dw__sqlite_driver, db, opts, 0, errmsg);
}

int dw_sqlite_open_json(dw_migration **out, sqlite3 *db, const char *name,
                        const char *spec_json, unsigned int flags,
                        const char *reason, char **errmsg)
{
    return dw__open_json(out, &dw__sqlite_driver, db, name, spec_json, flags,
                         reason, errmsg);
}

int dw_sqlite_open_stored(dw_migration **out, sqlite3 *db, const char *name,
                          unsigned int flags, char **errmsg)
{
    return dw__open_stored(out, &dw__sqlite_driver, db, name, flags,
                           errmsg);
}

int dw_sqlite_list(sqlite3 *db, dw_list_fn fn, void *payload, char **errmsg)
{
    return dw__list(&dw__sqlite_driver, db, fn, payload, errmsg);
}

int dw_sqlite_remove(sqlite3 *db, const char *name, unsigned int flags,
                     const char *reason, char **errmsg)
{
    return dw__remove(&dw__sqlite_driver, db, name, flags, reason, errmsg);
}

static int is_sqlite(const dw_migration *h)
{
    return h && h->ops == &dw__sqlite_backend;
}

sqlite3 *dw_sqlite_db(const dw_migration *h)
{
    return is_sqlite(h) ? (sqlite3 *)h->db : NULL;
}

int dw_sqlite_set_progress_handler(dw_migration *h, dw_sqlite_progress_fn fn,
                                   void *payload, int every)
{
    if (!is_sqlite(h))
        return h ? dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                             "dw_sqlite_set_progress_handler: the handle is "
                             "not on SQLite")
                 : DW_EMISUSE;
    if (fn && every < 1)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "dw_sqlite_set_progress_handler: every must be at "
                         "least 1 (got %d)",
                         every);
    sqlite_backend *bk = BK(h);
    bk->app_progress = fn;
    bk->app_progress_payload = fn ? payload : NULL;
    bk->app_every = fn ? every : 0;
    dw__clear_error(h);
    return DW_OK;
}

/* ---- the message of a callback's failure ------------------------------------ */

/* What dw_sqlite_result() kept for the last failure it mapped on this
 * thread: the connection, the DW_ code it gave, and SQLite's message, cut
 * to size (no allocation: it runs on failure paths, out of memory
 * included). */
static _Thread_local struct {
    sqlite3 *db;
    int code;
    char msg[256];
} kept;

int dw_sqlite_result(sqlite3 *db, int rc)
{
    if (rc < 0) /* a DW_ code already (SQLite's are never negative) */
        return rc;
    int code = dw__from_sqlite(rc);
    if (code == DW_OK)
        return DW_OK;
    const char *msg = db && (sqlite3_errcode(db) & 0xff) == (rc & 0xff)
                          ? sqlite3_errmsg(db)
                          : sqlite3_errstr(rc);
    kept.db = db;
    kept.code = code;
    snprintf(kept.msg, sizeof kept.msg, "%s", msg ? msg : "");
    return code;
}

const char *dw__sqlite_kept_message(sqlite3 *db, int code)
{
    if (!kept.db || kept.db != db || kept.code != code)
        return NULL;
    kept.db = NULL; /* taken: a later failure without it quotes nothing old */
    return kept.msg;
}

void dw__sqlite_forget_message(void) { kept.db = NULL; }
