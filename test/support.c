#include "support.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the backend -------------------------------------------------------- */

/* How a backend makes a test database in t->dir (setting t->db), connects
 * to it again, and closes a connection. test_db_close() removes t->dir. */
typedef struct test_backend {
    const char *name;
    void (*open)(test_db *t);
    sqlite3 *(*connect)(const test_db *t);
    void (*disconnect)(sqlite3 *db);
} test_backend;

static void sqlite_open(test_db *t);
static sqlite3 *sqlite_connect(const test_db *t);
static void sqlite_disconnect(sqlite3 *db);

/* The backends the tests can run on; the first is the default. */
static const test_backend BACKENDS[] = {
    {"sqlite", sqlite_open, sqlite_connect, sqlite_disconnect},
};
#define NBACKENDS (sizeof BACKENDS / sizeof BACKENDS[0])

static const test_backend *g_backend;

/* The backend DW_TEST_BACKEND names, or NULL when it names none we know. */
static const test_backend *backend_from_env(void)
{
    const char *name = getenv("DW_TEST_BACKEND");
    if (!name || !*name)
        return &BACKENDS[0];
    for (size_t i = 0; i < NBACKENDS; i++)
        if (strcmp(BACKENDS[i].name, name) == 0)
            return &BACKENDS[i];
    return NULL;
}

/* Before main(), so that a wrong setting stops the program before any test
 * runs (and before cmocka counts anything as passed). */
__attribute__((constructor)) static void backend_choose(void)
{
    g_backend = backend_from_env();
    if (g_backend)
        return;
    fprintf(stderr, "DW_TEST_BACKEND=%s: no such test backend (known:",
            getenv("DW_TEST_BACKEND"));
    for (size_t i = 0; i < NBACKENDS; i++)
        fprintf(stderr, " %s", BACKENDS[i].name);
    fprintf(stderr, ")\n");
    exit(2);
}

const char *test_backend_name(void)
{
    return g_backend->name;
}

void test_db_open(test_db *t)
{
    memset(t, 0, sizeof *t);
    const char *base = getenv("TMPDIR");
    snprintf(t->dir, sizeof t->dir, "%s/dwtest.XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(t->dir));
    g_backend->open(t);
}

sqlite3 *test_db_connect(const test_db *t)
{
    return g_backend->connect(t);
}

void test_db_disconnect(sqlite3 *db)
{
    if (db)
        g_backend->disconnect(db);
}

/* The whole directory: a failed multi-database commit leaves SQLite's
 * super-journals (test.db-mj...) beside the database. */
void test_db_close(test_db *t)
{
    test_db_disconnect(t->db);
    t->db = NULL;
    test_remove_tree(t->dir);
}

/* ---- the SQLite backend --------------------------------------------------- */

static void sqlite_open(test_db *t)
{
    snprintf(t->path, sizeof t->path, "%s/test.db", t->dir);
    t->db = sqlite_connect(t);
    exec_ok(t->db, "PRAGMA journal_mode=WAL");
}

static sqlite3 *sqlite_connect(const test_db *t)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(t->path, &db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    assert_int_equal(rc, SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static void sqlite_disconnect(sqlite3 *db)
{
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
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

/* The statement of sql, failing the test with SQLite's message when it does
 * not prepare. */
static sqlite3_stmt *prepare_ok(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        print_error("prepare failed: %s\n  in: %s\n", sqlite3_errmsg(db), sql);
    assert_int_equal(rc, SQLITE_OK);
    return st;
}

int64_t query_int(sqlite3 *db, const char *sql)
{
    return query_int_with(db, sql, NULL);
}

int64_t query_int_with(sqlite3 *db, const char *sql, const char *text)
{
    sqlite3_stmt *st = prepare_ok(db, sql);
    if (text)
        sqlite3_bind_text(st, 1, text, -1, SQLITE_TRANSIENT);
    int64_t v = -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else
        assert_int_equal(rc, SQLITE_DONE);
    sqlite3_finalize(st);
    return v;
}

const char *query_text(sqlite3 *db, const char *sql, char *buf, size_t size)
{
    sqlite3_stmt *st = prepare_ok(db, sql);
    buf[0] = '\0';
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        snprintf(buf, size, "%s", (const char *)sqlite3_column_text(st, 0));
    else if (rc != SQLITE_ROW)
        assert_int_equal(rc, SQLITE_DONE);
    sqlite3_finalize(st);
    return buf;
}

int is_hex16(const char *s)
{
    if (!s || strlen(s) != 16)
        return 0;
    for (int i = 0; i < 16; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

void backfill_and_verify(dw_migration *h)
{
    assert_dw_ok(h, dw_backfill(NULL, h, NULL));
    verify_clean(h);
}

dw_verify_result verify_clean(dw_migration *h)
{
    dw_verify_result r;
    assert_dw_ok(h, dw_verify(&r, h, NULL));
    if (!r.clean)
        print_error("verification: %lld missing, %lld extra, %lld different\n",
                    (long long)r.missing, (long long)r.extra,
                    (long long)r.different);
    assert_true(r.clean);
    return r;
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

int outside_transaction(sqlite3 *db)
{
    return sqlite3_get_autocommit(db);
}

int read_row_by_id(dw_row *out, void *db, const char *sql, int64_t id)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return dw_sqlite_result(db, rc);
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    int result = rc == SQLITE_ROW    ? dw_sqlite_row_set_columns(out, st)
                 : rc == SQLITE_DONE ? DW_ENOTFOUND
                                     : dw_sqlite_result(db, rc);
    sqlite3_finalize(st);
    return result;
}

int callback_exec(sqlite3 *db, const char *sql, const char *types, ...)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return dw_sqlite_result(db, rc);
    va_list ap;
    va_start(ap, types);
    for (int i = 0; types[i]; i++) {
        if (types[i] == 'i') {
            sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
        } else if (types[i] == 'v') {
            dw_sqlite_bind_values(st, i + 1, va_arg(ap, const dw_value *), 1);
        } else {
            const char *text = va_arg(ap, const char *);
            if (text)
                sqlite3_bind_text(st, i + 1, text, -1, SQLITE_TRANSIENT);
            else
                sqlite3_bind_null(st, i + 1);
        }
    }
    va_end(ap);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    sqlite3_finalize(st);
    return dw_sqlite_result(db, rc);
}

/* ---- the fixture ---------------------------------------------------------- */

int fixture_setup(void **state)
{
    test_fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    test_db_open(&f->t);
    *state = f;
    return 0;
}

void fixture_close(test_fixture *f)
{
    dw_close(f->h2);
    f->h2 = NULL;
    dw_close(f->h);
    f->h = NULL;
    test_db_disconnect(f->db2);
    f->db2 = NULL;
    test_db_close(&f->t);
}

int fixture_teardown(void **state)
{
    test_fixture *f = *state;
    fixture_close(f);
    free(f);
    return 0;
}

void fixture_reset(test_fixture *f)
{
    fixture_close(f);
    test_db_open(&f->t);
}

void fixture_connect_second(test_fixture *f)
{
    assert_null(f->db2);
    f->db2 = test_db_connect(&f->t);
}

void fixture_exec(test_fixture *f, const char *sql)
{
    exec_ok(f->t.db, sql);
}

int64_t fixture_int(test_fixture *f, const char *sql)
{
    return query_int(f->t.db, sql);
}

const char *fixture_text(test_fixture *f, const char *sql, char *buf,
                         size_t size)
{
    return query_text(f->t.db, sql, buf, size);
}

/* ---- specs and opening ---------------------------------------------------- */

dw_options options_for(const char *name, dw_side_spec old_side,
                       dw_side_spec new_side)
{
    dw_options o = DW_OPTIONS_INIT;
    o.name = name;
    o.old_side = old_side;
    o.new_side = new_side;
    return o;
}

dw_migration *opened_ok(const char *what, int rc, dw_migration *h, char *err)
{
    if (rc != DW_OK)
        print_error("%s returned %d (%s): %s\n", what, rc, dw_errstr(rc),
                    err ? err : "(no message)");
    assert_int_equal(rc, DW_OK);
    assert_non_null(h);
    assert_null(err);
    return h;
}

int open_migration(dw_migration **out, sqlite3 *db, const dw_options *o)
{
    char *err = NULL;
    int rc = dw_sqlite_open(out, db, o, &err);
    if (rc != DW_OK)
        print_error("dw_open returned %d (%s): %s\n", rc, dw_errstr(rc),
                    err ? err : "(no message)");
    dw_free(err);
    return rc;
}

dw_migration *open_migration_ok(sqlite3 *db, const dw_options *o)
{
    dw_migration *h = NULL;
    char *err = NULL;
    int rc = dw_sqlite_open(&h, db, o, &err);
    return opened_ok("dw_open", rc, h, err);
}

dw_migration *open_stored_ok(sqlite3 *db, const char *name, unsigned flags)
{
    dw_migration *h = NULL;
    char *err = NULL;
    int rc = dw_sqlite_open_stored(&h, db, name, flags, &err);
    return opened_ok("dw_open_stored", rc, h, err);
}

dw_migration *open_json_ok(sqlite3 *db, const char *name, const char *json,
                           unsigned flags)
{
    dw_migration *h = NULL;
    char *err = NULL;
    int rc = dw_sqlite_open_json(&h, db, name, json, flags, "by hand", &err);
    return opened_ok("dw_open_json", rc, h, err);
}

/* ---- stages --------------------------------------------------------------- */

int stage_force(dw_migration *h, int stage)
{
    return dw_stage_set(h, stage, "test", DW_STAGE_FORCE);
}

void stage_force_ok(dw_migration *h, int stage)
{
    assert_dw_ok(h, stage_force(h, stage));
}

void stage_walk_ok(dw_migration *h, int target)
{
    for (int next = stage_of(h) + 1; next <= target; next++) {
        if (next == DW_STAGE_LIVE)
            backfill_and_verify(h);
        assert_dw_ok(h, dw_stage_set(h, next, NULL, 0));
    }
}

int stage_of(dw_migration *h)
{
    int s = -99;
    assert_dw_ok(h, dw_stage_get(&s, h));
    return s;
}
