/* Helpers shared by the cmocka test programs. */
#ifndef DW_TEST_SUPPORT_H
#define DW_TEST_SUPPORT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "dualwrite.h"

/* A fresh database file in a private temporary directory, in WAL mode, with a
 * busy timeout. Returns the connection; the path is kept for test_reopen(). */
typedef struct test_db {
    char dir[256];
    char path[300];
    sqlite3 *db;
} test_db;

void test_db_open(test_db *t);
/* Opens another connection on the same file (caller closes it). */
sqlite3 *test_db_connect(const test_db *t);
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
/* The same as text, copied into buf (empty string when NULL or no row). */
const char *query_text(sqlite3 *db, const char *sql, char *buf, size_t size);
/* A read callback's body: the row that `sql` (with ?1 bound to id) returns,
 * into out. DW_ENOTFOUND when there is none, SQLite's own code when the
 * statement fails (so that an out-of-memory walk sees SQLITE_NOMEM). */
int read_row_by_id(dw_row *out, sqlite3 *db, const char *sql, int64_t id);

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

/* Copies file `from` over `to` (removed first); returns 0, leaving no `to`,
 * when `from` does not exist. Fails the test on an I/O error. */
int test_copy_file(const char *from, const char *to);

/* This program's own path, for re-running it as a child process: set by
 * test_self_init() from /proc/self/exe (argv0 where that is missing). */
extern char test_self[4096];
void test_self_init(const char *argv0);

#endif
