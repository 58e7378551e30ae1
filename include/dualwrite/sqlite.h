/*
 * dualwrite/sqlite.h -- libdualwrite on SQLite.
 *
 * dualwrite.h is the library: stages, writes, reads and comparison,
 * backfill, verification, repair, routing, contract. It names no database.
 * This header adds what is SQLite's own: opening a migration on an sqlite3
 * connection, listing and removing stored migrations, the connection of a
 * handle, mapping SQLite result codes to DW_ codes for callbacks, filling a
 * row from a statement and binding key values, and the progress handler a
 * read's time budget shares with the application.
 *
 * The SQLite backend is part of libdualwrite itself (SQLite is the embedded
 * default): `pkg-config --cflags --libs dualwrite` covers SQLite too.
 *
 * The header names SQLite's two types by their struct tags (an sqlite3 * is
 * a struct sqlite3 *), so it compiles with or without sqlite3.h, in C99 as
 * well; a program that calls SQLite includes sqlite3.h itself.
 *
 * Ownership, NULL and threads follow dualwrite.h's conventions. Messages
 * returned through `errmsg` are freed with dw_free().
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef DUALWRITE_SQLITE_H
#define DUALWRITE_SQLITE_H

#include "../dualwrite.h"

#ifdef __cplusplus
extern "C" {
#endif

/* SQLite's connection and statement, as sqlite3.h names them (sqlite3 and
 * sqlite3_stmt are typedefs of these). */
struct sqlite3;
struct sqlite3_stmt;

/* ------------------------------------------------------------------------ */
/* Opening, listing and removing migrations                                  */
/* ------------------------------------------------------------------------ */

/**
 * Opens (and on first use defines) a migration on the caller's connection:
 * see "Opening a migration" in dualwrite.h for what is checked, stored and
 * locked, and for the result codes.
 *
 * @param out    receives the handle; set to NULL on failure. Must not be
 *               NULL.
 * @param db     the caller's open connection; borrowed, never closed. It
 *               must outlive the handle.
 * @param opts   the spec and policies; must not be NULL.
 * @param errmsg if not NULL, receives a message on failure (NULL on
 *               success), to be freed with dw_free() -- there is no handle
 *               yet to ask.
 */
DW_API int dw_sqlite_open(dw_migration **out, struct sqlite3 *db,
                          const dw_options *opts, char **errmsg);

/** Opens a migration from a spec written as JSON: see "Opening from JSON"
 *  in dualwrite.h. db and errmsg as for dw_sqlite_open(). */
DW_API int dw_sqlite_open_json(dw_migration **out, struct sqlite3 *db,
                               const char *name, const char *spec_json,
                               unsigned int flags, const char *reason,
                               char **errmsg);

/** Opens a migration already stored in db, from its stored spec: see
 *  "Opening a stored migration" in dualwrite.h. */
DW_API int dw_sqlite_open_stored(dw_migration **out, struct sqlite3 *db,
                                 const char *name, unsigned int flags,
                                 char **errmsg);

/** Calls fn for each migration stored in db's main database: see "Listing
 *  stored migrations" in dualwrite.h. */
DW_API int dw_sqlite_list(struct sqlite3 *db, dw_list_fn fn, void *payload,
                          char **errmsg);

/** Removes a stored migration: see "Removing a stored migration" in
 *  dualwrite.h. */
DW_API int dw_sqlite_remove(struct sqlite3 *db, const char *name,
                            unsigned int flags, const char *reason,
                            char **errmsg);

/** The connection a handle borrows; NULL for a NULL handle or a handle of
 *  another backend. */
DW_API struct sqlite3 *dw_sqlite_db(const dw_migration *h);

/* ------------------------------------------------------------------------ */
/* Helpers for callbacks                                                     */
/* ------------------------------------------------------------------------ */

/**
 * The DW_ code for an SQLite result code, for a write or read callback to
 * return: SQLITE_OK, SQLITE_ROW and SQLITE_DONE give DW_OK (a read
 * callback returns DW_ENOTFOUND itself when its statement found no row);
 * SQLITE_CONSTRAINT (any extended code) DW_ECONSTRAINT; SQLITE_BUSY and
 * SQLITE_LOCKED DW_EBUSY; SQLITE_NOMEM DW_ENOMEM; SQLITE_MISUSE
 * DW_EMISUSE; anything else DW_ERROR. A negative rc is taken for a DW_
 * code already and returned as it is. For a failure on db (not NULL) it
 * also keeps the message (sqlite3_errmsg(db) when db's last error is rc,
 * else SQLite's fixed text for rc, cut to 255 bytes) for the calling
 * thread: when the callback then returns that same code, the library's
 * message for the failed write or read quotes it, even when the callback
 * ran other statements since (a sqlite3_finalize(), say). What is kept is
 * forgotten when the next callback starts. Safe from any thread.
 *
 *     rc = sqlite3_step(stmt);
 *     sqlite3_finalize(stmt);
 *     return dw_sqlite_result(db, rc);
 */
DW_API int dw_sqlite_result(struct sqlite3 *db, int rc);

/** Appends every column of the statement's current result row, named by
 *  sqlite3_column_name(), with its value -- the usual way for a read
 *  callback to fill its row after sqlite3_step() returned SQLITE_ROW.
 *  DW_EMISUSE for a NULL argument or a column named "" (as dw_row_set());
 *  DW_ENOMEM. */
DW_API int dw_sqlite_row_set_columns(dw_row *row,
                                     struct sqlite3_stmt *stmt);

/**
 * Binds n values to a statement's parameters first, first + 1, ...,
 * first + n - 1 (1-based, as sqlite3_bind_*()), each by its type: INTEGER
 * with sqlite3_bind_int64(), FLOAT with sqlite3_bind_double(), TEXT and
 * BLOB by their bytes (n counts them; a TEXT with n = -1 up to its NUL),
 * NULL as NULL. The bytes are copied (SQLITE_TRANSIENT): the values may
 * go away before the statement runs. The usual way for a write callback
 * to bind its key, e.g. `dw_sqlite_bind_values(st, 1, key, nkey)`.
 *
 * @return DW_OK; DW_EMISUSE (NULL stmt, NULL v with n > 0, n < 0,
 *         first < 1, a value that is not a well-formed dw_value, a
 *         parameter index past the statement's last, or a statement that
 *         is running); DW_ENOMEM; DW_ERROR (a value too big for SQLite).
 *         On failure the parameters bound before the failing one stay
 *         bound (sqlite3_clear_bindings() clears them).
 */
DW_API int dw_sqlite_bind_values(struct sqlite3_stmt *stmt, int first,
                                 const dw_value *v, int n);

/* ------------------------------------------------------------------------ */
/* A read's time budget and the application's progress handler              */
/* ------------------------------------------------------------------------ */

/** A progress handler, as sqlite3_progress_handler() takes it. */
typedef int (*dw_sqlite_progress_fn)(void *payload);

/**
 * Names the progress handler the application uses on the handle's
 * connection, if any. A read's time budget (dw_read_options.budget_ms)
 * interrupts SQLite statements through the connection's progress handler,
 * and SQLite keeps no way to ask for the handler already installed: while
 * the budget applies the library calls fn itself (about every `every`
 * virtual machine steps, and never more often than every 1000), and puts
 * it back afterwards. SQLite keeps one handler per connection but this
 * setting is per handle: name it on every handle of the connection that
 * reads with a budget, or a budgeted read on a handle without it leaves
 * the connection with no progress handler.
 *
 * @param h       the handle; must not be NULL.
 * @param fn      the application's handler, or NULL for none.
 * @param payload passed to fn.
 * @param every   as sqlite3_progress_handler()'s N; at least 1 when fn is
 *                set, ignored when it is NULL.
 * @return DW_OK; DW_EMISUSE (NULL handle, a handle of another backend,
 *         every < 1 with fn set).
 */
DW_API int dw_sqlite_set_progress_handler(dw_migration *h,
                                          dw_sqlite_progress_fn fn,
                                          void *payload, int every);

#ifdef __cplusplus
}
#endif

#endif /* DUALWRITE_SQLITE_H */
