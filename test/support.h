/* Helpers shared by the cmocka test programs. */
#ifndef DW_TEST_SUPPORT_H
#define DW_TEST_SUPPORT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "dualwrite/sqlite.h"

/* ---- the backend --------------------------------------------------------
 *
 * Every test program runs on the backend that DW_TEST_BACKEND names:
 * "sqlite" (the default, and for now the only one). Every program linking
 * this file checks the setting before main() and stops at once, naming the
 * backends it knows, when the setting names another. A second backend is
 * one more entry in support.c's backend table (how a fresh database is
 * made, connected to and disconnected from) and its branch in the few
 * helpers below that run statements (exec_ok, query_*, callback_exec,
 * read_row_by_id, outside_transaction), all in support.c. They take the
 * connection as the public API does today (sqlite3 *); when the API turns
 * neutral, so do they. Tests that are not about SQLite reach the database
 * only through the fixture and these helpers. */

/* The name of the backend this program runs on. */
const char *test_backend_name(void);

/* A fresh database in a private temporary directory (SQLite: a file in WAL
 * mode, with a busy timeout). The path is kept for test_db_connect(). */
typedef struct test_db {
    char dir[256];
    char path[300];
    sqlite3 *db;
} test_db;

void test_db_open(test_db *t);
/* Opens another connection on the same database (the caller closes it
 * with test_db_disconnect()). */
sqlite3 *test_db_connect(const test_db *t);
/* Closes a connection (nothing when NULL); fails the test when it will not
 * close. */
void test_db_disconnect(sqlite3 *db);
/* Closes the connection and removes the directory with all it holds. */
void test_db_close(test_db *t);
/* Removes a file, or a directory and everything under it. */
void test_remove_tree(const char *path);

/* Runs SQL (several statements allowed); fails the test on error. */
void exec_ok(sqlite3 *db, const char *sql);
/* Runs SQL expecting an error; returns the SQLite result code. */
int exec_err(sqlite3 *db, const char *sql);
/* The first column of the first row of a query as an integer (-1 when no
 * row); fails the test on error. */
int64_t query_int(sqlite3 *db, const char *sql);
/* query_int() with ?1 bound to `text` (nothing bound when NULL). */
int64_t query_int_with(sqlite3 *db, const char *sql, const char *text);
/* The same as text, copied into buf (empty string when NULL or no row). */
const char *query_text(sqlite3 *db, const char *sql, char *buf, size_t size);
/* 1 when the connection has no transaction open (SQLite's autocommit). */
int outside_transaction(sqlite3 *db);
/* A read callback's body: the row that `sql` (with ?1 bound to id) returns,
 * into out. DW_ENOTFOUND when there is none, the DW_ code of the failure
 * when the statement fails (DW_ENOMEM in an out-of-memory walk). */
int read_row_by_id(dw_row *out, void *db, const char *sql, int64_t id);

/* Asserts a dw_ call's result, printing dw_errmsg() when it differs. */
#define assert_dw(h, call, expected)                                           \
    do {                                                                       \
        int rc_ = (call);                                                      \
        if (rc_ != (expected))                                                 \
            print_error("%s returned %d (%s), expected %d: %s\n", #call, rc_,  \
                        dw_errstr(rc_), (int)(expected), dw_errmsg(h));        \
        assert_int_equal(rc_, (expected));                                     \
    } while (0)

#define assert_dw_ok(h, call) assert_dw(h, call, DW_OK)

/* Runs the whole backfill and a verification of every key, and asserts the
 * verification is clean: what opens the gates into LIVE and COMPLETE. */
void backfill_and_verify(dw_migration *h);
/* A verification of every key, asserted clean (the counts printed when it
 * is not); its result. */
dw_verify_result verify_clean(dw_migration *h);

/* 1 when s is 16 lower-case hex digits (a digest or fingerprint). */
int is_hex16(const char *s);

/* ---- the fixture ----------------------------------------------------------
 *
 * What most tests run against: a fresh database, an optional second
 * connection to it, and up to two migrations, all closed by
 * fixture_close(). */
typedef struct test_fixture {
    test_db t;
    sqlite3 *db2;    /* a second connection, when a test opens one */
    dw_migration *h; /* closed by fixture_close() */
    dw_migration *h2;
} test_fixture;

/* cmocka set-up and tear-down: *state is a test_fixture. */
int fixture_setup(void **state);
int fixture_teardown(void **state);
/* Closes the migrations and connections and removes the database. */
void fixture_close(test_fixture *f);
/* A fresh database for the next round of a loop. */
void fixture_reset(test_fixture *f);
/* Opens f->db2, a second connection to the fixture's database. */
void fixture_connect_second(test_fixture *f);

/* exec_ok(), query_int() and query_text() on the fixture's connection. */
void fixture_exec(test_fixture *f, const char *sql);
int64_t fixture_int(test_fixture *f, const char *sql);
const char *fixture_text(test_fixture *f, const char *sql, char *buf,
                         size_t size);

/* ---- specs and opening ---------------------------------------------------- */

/* One side of a migration: `table` keyed by the array `key`, with the
 * columns of the array `cols` (both arrays, not pointers: their lengths are
 * counted here). */
#define TEST_SIDE(table, key, cols)                                            \
    ((dw_side_spec){(table), (key), (int)(sizeof(key) / sizeof *(key)),        \
                    (cols), (int)(sizeof(cols) / sizeof *(cols))})

/* One side whose columns are not listed (NULL: the library finds them). */
#define TEST_SIDE_UNLISTED(table, key)                                         \
    ((dw_side_spec){(table), (key), (int)(sizeof(key) / sizeof *(key)), NULL,  \
                    0})

/* DW_OPTIONS_INIT with the migration's name and two sides, no mapping. */
dw_options options_for(const char *name, dw_side_spec old_side,
                       dw_side_spec new_side);

/* dw_sqlite_open(), printing the error message when the result is not DW_OK (the
 * message is freed here); returns dw_sqlite_open()'s result. */
int open_migration(dw_migration **out, sqlite3 *db, const dw_options *o);
/* The handle an open (`what`: dw_open, dw_open_stored...) gave with result
 * rc and message err, failing the test, printing them, unless it returned
 * DW_OK, a handle and no message. */
dw_migration *opened_ok(const char *what, int rc, dw_migration *h, char *err);
/* dw_sqlite_open(), dw_sqlite_open_stored() and dw_sqlite_open_json() that must succeed (and say
 * nothing): the handle, or the test fails printing the message.
 * open_json_ok() records the reason "by hand". */
dw_migration *open_migration_ok(sqlite3 *db, const dw_options *o);
dw_migration *open_stored_ok(sqlite3 *db, const char *name, unsigned flags);
dw_migration *open_json_ok(sqlite3 *db, const char *name, const char *json,
                           unsigned flags);

/* ---- stages --------------------------------------------------------------- */

/* Moves h to `stage` with DW_STAGE_FORCE (reason "test"): dw_stage_set()'s
 * result, or asserted DW_OK. */
int stage_force(dw_migration *h, int stage);
void stage_force_ok(dw_migration *h, int stage);
/* Moves h up one stage at a time, unforced and with no reason, from where it
 * is to `target`, running backfill_and_verify() just before the move into
 * LIVE (whose gate it opens, and COMPLETE's); asserts every move. */
void stage_walk_ok(dw_migration *h, int target);
/* The stage h is at, asserting dw_stage_get() succeeds. */
int stage_of(dw_migration *h);

/* ---- callbacks ------------------------------------------------------------ */

/* A write callback's body: runs `sql` to its end, binding the arguments
 * after `types` in order, one letter each: 'i' an int64_t, 't' a const
 * char * (NULL binds NULL), 'v' a const dw_value * (by its type). Arguments
 * past the statement's parameters are not bound, so one call serves an upsert
 * and a delete. Returns DW_OK, or the DW_ code of the failure (the backend's
 * result helper keeps its message for the library). */
int callback_exec(sqlite3 *db, const char *sql, const char *types, ...);

/* Copies file `from` over `to` (removed first); returns 0, leaving no `to`,
 * when `from` does not exist. Fails the test on an I/O error. */
int test_copy_file(const char *from, const char *to);

/* This program's own path, for re-running it as a child process: set by
 * test_self_init() from /proc/self/exe (argv0 where that is missing). */
extern char test_self[4096];
void test_self_init(const char *argv0);

#endif
