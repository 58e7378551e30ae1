#include "support.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void test_db_open(test_db *t)
{
    memset(t, 0, sizeof *t);
    const char *base = getenv("TMPDIR");
    snprintf(t->dir, sizeof t->dir, "%s/dwtest.XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof t->path, "%s/test.db", t->dir);
    t->db = test_db_connect(t);
    exec_ok(t->db, "PRAGMA journal_mode=WAL");
}

sqlite3 *test_db_connect(const test_db *t)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(t->path, &db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    assert_int_equal(rc, SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

void test_db_close(test_db *t)
{
    if (t->db) {
        assert_int_equal(sqlite3_close(t->db), SQLITE_OK);
        t->db = NULL;
    }
    /* The whole directory: a failed multi-database commit leaves SQLite's
     * super-journals (test.db-mj...) beside the database. */
    test_remove_tree(t->dir);
}

void test_remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char child[4096];
        snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        test_remove_tree(child);
    }
    closedir(d);
    rmdir(path);
}

void exec_ok(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        print_error("SQL failed: %s\n  in: %s\n", err ? err : "?", sql);
    sqlite3_free(err);
    assert_int_equal(rc, SQLITE_OK);
}

int exec_err(sqlite3 *db, const char *sql)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    assert_int_not_equal(rc, SQLITE_OK);
    return rc;
}

int64_t query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        print_error("prepare failed: %s\n  in: %s\n", sqlite3_errmsg(db), sql);
    assert_int_equal(rc, SQLITE_OK);
    int64_t v = -1;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else
        assert_int_equal(rc, SQLITE_DONE);
    sqlite3_finalize(st);
    return v;
}

const char *query_text(sqlite3 *db, const char *sql, char *buf, size_t size)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        print_error("prepare failed: %s\n  in: %s\n", sqlite3_errmsg(db), sql);
    assert_int_equal(rc, SQLITE_OK);
    buf[0] = '\0';
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        snprintf(buf, size, "%s", (const char *)sqlite3_column_text(st, 0));
    else if (rc != SQLITE_ROW)
        assert_int_equal(rc, SQLITE_DONE);
    sqlite3_finalize(st);
    return buf;
}

void backfill_and_verify(dw_migration *h)
{
    assert_dw_ok(h, dw_backfill(NULL, h, NULL));
    dw_verify_result r;
    assert_dw_ok(h, dw_verify(&r, h, NULL));
    if (!r.clean)
        print_error("verification: %lld missing, %lld extra, %lld different\n",
                    (long long)r.missing, (long long)r.extra,
                    (long long)r.different);
    assert_true(r.clean);
}

int test_copy_file(const char *from, const char *to)
{
    unlink(to);
    FILE *in = fopen(from, "rb");
    if (!in)
        return 0;
    FILE *out = fopen(to, "wb");
    assert_non_null(out);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    assert_int_equal(ferror(in), 0);
    fclose(in);
    assert_int_equal(fclose(out), 0);
    return 1;
}

char test_self[4096];

void test_self_init(const char *argv0)
{
    ssize_t n = readlink("/proc/self/exe", test_self, sizeof test_self - 1);
    if (n > 0)
        test_self[n] = '\0';
    else
        snprintf(test_self, sizeof test_self, "%s", argv0);
}

int read_row_by_id(dw_row *out, sqlite3 *db, const char *sql, int64_t id)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    int result = rc == SQLITE_ROW    ? dw_row_set_columns(out, st)
                 : rc == SQLITE_DONE ? DW_ENOTFOUND
                                     : rc;
    sqlite3_finalize(st);
    return result;
}
