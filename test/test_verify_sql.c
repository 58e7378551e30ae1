/* Verification's SQL as SQLite runs it: every statement dw_verify() runs
 * over a migration's tables traced, its full-scan steps counted and its
 * plan read back. A one-table migration reads its table once (no
 * self-join, no second pass for keys only on the new side, no second
 * full scan), and the common key shapes need no sort. */
#include "support.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const k_id[] = {"id"};

/* What ran on the connection while traced: each statement naming a
 * migration's table (its SQL, once), and the full-scan steps of all. */
#define MAX_SEEN 32

typedef struct trace_log {
    const char *tables[2];
    char *sql[MAX_SEEN];
    int nsql;
    int64_t fullscan_steps;
} trace_log;

static int names_table(const trace_log *l, const char *sql)
{
    for (int i = 0; i < 2; i++)
        if (l->tables[i] && strstr(sql, l->tables[i]))
            return 1;
    return 0;
}

static int on_trace(unsigned type, void *payload, void *p, void *x)
{
    (void)x;
    trace_log *l = payload;
    sqlite3_stmt *st = p;
    if (type == SQLITE_TRACE_PROFILE) {
        l->fullscan_steps +=
            sqlite3_stmt_status(st, SQLITE_STMTSTATUS_FULLSCAN_STEP, 1);
        return 0;
    }
    const char *sql = sqlite3_sql(st);
    if (!sql || !names_table(l, sql) || strncmp(sql, "SELECT", 6) != 0)
        return 0;
    for (int i = 0; i < l->nsql; i++)
        if (strcmp(l->sql[i], sql) == 0)
            return 0;
    if (l->nsql < MAX_SEEN)
        l->sql[l->nsql++] = sqlite3_mprintf("%s", sql);
    return 0;
}

static void trace_start(sqlite3 *db, trace_log *l, const char *t1,
                        const char *t2)
{
    memset(l, 0, sizeof *l);
    l->tables[0] = t1;
    l->tables[1] = t2;
    /* Counters of statements prepared before start at zero. */
    for (sqlite3_stmt *st = sqlite3_next_stmt(db, NULL); st;
         st = sqlite3_next_stmt(db, st))
        sqlite3_stmt_status(st, SQLITE_STMTSTATUS_FULLSCAN_STEP, 1);
    sqlite3_trace_v2(db, SQLITE_TRACE_STMT | SQLITE_TRACE_PROFILE, on_trace,
                     l);
}

static void trace_stop(sqlite3 *db)
{
    sqlite3_trace_v2(db, 0, NULL, NULL);
}

static void trace_free(trace_log *l)
{
    for (int i = 0; i < l->nsql; i++)
        sqlite3_free(l->sql[i]);
}

/* The plan of one traced statement: how many loops read a table (SCAN
 * or SEARCH lines, but not those over a co-routine, which reads no table
 * itself), and how many sort into a temporary B-tree. */
static void plan_of(sqlite3 *db, const char *sql, int *loops, int *sorts)
{
    char *eqp = sqlite3_mprintf("EXPLAIN QUERY PLAN %s", sql);
    assert_non_null(eqp);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, eqp, -1, &st, NULL) != SQLITE_OK)
        print_error("%s: %s\n", sqlite3_errmsg(db), eqp);
    assert_non_null(st);
    sqlite3_free(eqp);
    *loops = *sorts = 0;
    char coroutines[8][64];
    int ncoroutines = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *d = (const char *)sqlite3_column_text(st, 3);
        if (strncmp(d, "CO-ROUTINE ", 11) == 0 && ncoroutines < 8)
            snprintf(coroutines[ncoroutines++], 64, "SCAN %s", d + 11);
        int over_coroutine = 0;
        for (int i = 0; i < ncoroutines; i++)
            over_coroutine |= strcmp(d, coroutines[i]) == 0;
        if ((strncmp(d, "SCAN ", 5) == 0 || strncmp(d, "SEARCH ", 7) == 0) &&
            !over_coroutine)
            ++*loops;
        if (strstr(d, "TEMP B-TREE"))
            ++*sorts;
    }
    sqlite3_finalize(st);
}

static dw_verify_result verify_chunked(dw_migration *h, int chunk_rows)
{
    dw_verify_options o = DW_VERIFY_OPTIONS_INIT;
    o.chunk_rows = chunk_rows;
    dw_verify_result r;
    assert_dw_ok(h, dw_verify(&r, h, &o));
    return r;
}

#define NROWS 400

/* One table: each statement that reads it does so through one loop, and
 * the whole run steps through it at most twice: the comparison itself
 * and the chunk's end, found by stepping through its keys alone (a
 * rowid key needs no check of its keys at the start) -- a self-join, a
 * pass for keys only on the new side or a second comparison pass would
 * add more. */
static void test_one_table_read_once(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, "CREATE TABLE one_t(id INTEGER PRIMARY KEY, v TEXT, "
                  "w TEXT);"
                  "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
                  "FROM n WHERE i < 400) INSERT INTO one_t SELECT i, 'v' || i,"
                  " upper('v' || i) FROM n;"
                  "UPDATE one_t SET w = 'X' WHERE id IN (3, 300);");
    static const char *const ocols[] = {"v"};
    static const char *const ncols[] = {"w"};
    dw_options o = options_for("one", TEST_SIDE("one_t", k_id, ocols),
                               TEST_SIDE("one_t", k_id, ncols));
    static const dw_column_map up[] = {{"w", "upper(v)"}};
    o.up = up;
    o.nup = 1;
    dw_migration *h = open_migration_ok(t.db, &o);
    trace_log l;
    trace_start(t.db, &l, "one_t", NULL);
    dw_verify_result r = verify_chunked(h, 1000);
    trace_stop(t.db);
    assert_int_equal(r.keys, NROWS);
    assert_int_equal(r.different, 2);
    print_message("  full-scan steps: %lld for %d rows\n",
                  (long long)l.fullscan_steps, NROWS);
    assert_true(l.fullscan_steps <= 2 * NROWS + 10);
    assert_true(l.nsql > 0);
    for (int i = 0; i < l.nsql; i++) {
        int loops, sorts;
        plan_of(t.db, l.sql[i], &loops, &sorts);
        if (loops != 1 || sorts)
            print_error("%d loops, %d sorts: %s\n", loops, sorts, l.sql[i]);
        assert_int_equal(loops, 1);
        assert_int_equal(sorts, 0);
    }
    trace_free(&l);
    dw_close(h);
    test_db_close(&t);
}

/* Two tables: each side stepped through once for the comparison and
 * once for the chunk's end, keys alone (a rowid key needs no check of its
 * keys at the start); nothing reads a side more often. */
static void test_two_tables_no_prescan(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, "CREATE TABLE two_o(id INTEGER PRIMARY KEY, v TEXT);"
                  "CREATE TABLE two_n(id INTEGER PRIMARY KEY, v TEXT);"
                  "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
                  "FROM n WHERE i < 400) INSERT INTO two_o SELECT i, 'v' || i "
                  "FROM n;"
                  "INSERT INTO two_n SELECT id, v FROM two_o;");
    static const dw_column_map up[] = {{"v", "v"}};
    dw_options o = options_for("two", TEST_SIDE_UNLISTED("two_o", k_id),
                               TEST_SIDE_UNLISTED("two_n", k_id));
    o.up = up;
    o.nup = 1;
    dw_migration *h = open_migration_ok(t.db, &o);
    trace_log l;
    trace_start(t.db, &l, "two_o", "two_n");
    dw_verify_result r = verify_chunked(h, 1000);
    trace_stop(t.db);
    assert_int_equal(r.keys, NROWS);
    assert_true(r.clean);
    print_message("  full-scan steps: %lld for %d rows a side\n",
                  (long long)l.fullscan_steps, NROWS);
    assert_true(l.fullscan_steps <= 4 * NROWS + 10);
    trace_free(&l);
    dw_close(h);
    test_db_close(&t);
}

/* Key shapes: each verification statement walks the sides in key order
 * through their keys' own indexes, bounded or not, with no sort. */
typedef struct shape_case {
    const char *name;
    const char *schema; /* creates s_old and s_new (or only s_old) */
    const char *const *key;
    int nkey;
    int one_table;
} shape_case;

static const char *const k_ab[] = {"a", "b"};
static const char *const k_k[] = {"k"};

static const shape_case shapes[] = {
    {"INTEGER PRIMARY KEY",
     "CREATE TABLE s_old(id INTEGER PRIMARY KEY, v);"
     "CREATE TABLE s_new(id INTEGER PRIMARY KEY, v);",
     k_id, 1, 0},
    {"WITHOUT ROWID, composite, NOCASE",
     "CREATE TABLE s_old(a INTEGER, b TEXT COLLATE NOCASE, v,"
     " PRIMARY KEY(a, b)) WITHOUT ROWID;"
     "CREATE TABLE s_new(a INTEGER, b TEXT COLLATE NOCASE, v,"
     " PRIMARY KEY(a, b)) WITHOUT ROWID;",
     k_ab, 2, 0},
    {"rowid table, composite key",
     "CREATE TABLE s_old(a INTEGER, b TEXT, v, PRIMARY KEY(a, b));"
     "CREATE TABLE s_new(a INTEGER, b TEXT, v, PRIMARY KEY(a, b));",
     k_ab, 2, 0},
    {"TEXT NOCASE key",
     "CREATE TABLE s_old(k TEXT COLLATE NOCASE PRIMARY KEY, v);"
     "CREATE TABLE s_new(k TEXT COLLATE NOCASE PRIMARY KEY, v);",
     k_k, 1, 0},
    {"one table, WITHOUT ROWID, composite",
     "CREATE TABLE s_old(a INTEGER, b TEXT, v, w, PRIMARY KEY(a, b))"
     " WITHOUT ROWID;",
     k_ab, 2, 1},
};

static void run_shape(const shape_case *c)
{
    print_message("  %s\n", c->name);
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, c->schema);
    const char *new_t = c->one_table ? "s_old" : "s_new";
    char sql[512];
    for (int i = 1; i <= 9; i++) {
        if (c->nkey == 2)
            snprintf(sql, sizeof sql,
                     "INSERT INTO s_old(a, b, v) VALUES(%d, 'k%d', %d)",
                     i / 3, i, i);
        else if (c->key == k_k)
            snprintf(sql, sizeof sql,
                     "INSERT INTO s_old(k, v) VALUES('k%d', %d)", i, i);
        else
            snprintf(sql, sizeof sql,
                     "INSERT INTO s_old(id, v) VALUES(%d, %d)", i, i);
        exec_ok(t.db, sql);
    }
    if (!c->one_table)
        exec_ok(t.db, "INSERT INTO s_new SELECT * FROM s_old;");
    static const char *const vcol[] = {"v"};
    static const char *const wcol[] = {"w"};
    dw_side_spec os = {"s_old", c->key, c->nkey, vcol, 1};
    dw_side_spec ns = {new_t, c->key, c->nkey, c->one_table ? wcol : vcol, 1};
    dw_options o = options_for("shape", os, ns);
    static const dw_column_map up_v[] = {{"v", "v"}};
    static const dw_column_map up_w[] = {{"w", "v"}};
    o.up = c->one_table ? up_w : up_v;
    o.nup = 1;
    dw_migration *h = open_migration_ok(t.db, &o);
    trace_log l;
    trace_start(t.db, &l, "s_old", c->one_table ? NULL : "s_new");
    verify_chunked(h, 2); /* bounded chunks as well as open ones */
    dw_verify_options vo = DW_VERIFY_OPTIONS_INIT;
    dw_value from[2] = {dw_int(1), dw_text("k3")}, kfrom = dw_text("k3");
    vo.from = c->nkey == 2 ? from : (c->key == k_k ? &kfrom : from);
    vo.nfrom = c->nkey;
    vo.chunk_rows = 3;
    dw_verify_result r;
    assert_dw_ok(h, dw_verify(&r, h, &vo));
    trace_stop(t.db);
    assert_true(l.nsql >= 3);
    for (int i = 0; i < l.nsql; i++) {
        int loops, sorts;
        plan_of(t.db, l.sql[i], &loops, &sorts);
        /* Two tables: a chunk's end is the smaller of two keys, a sort
         * of two rows. */
        if (!c->one_table && strstr(l.sql[i], ") AS dw_e"))
            sorts = 0;
        if (sorts)
            print_error("a sort: %s\n", l.sql[i]);
        assert_int_equal(sorts, 0);
    }
    trace_free(&l);
    dw_close(h);
    test_db_close(&t);
}

static void test_key_shapes_need_no_sort(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        run_shape(&shapes[i]);
}

/* SQLite's mutexes, wrapped to count how often the connection's own is
 * taken from outside it (a take while held is a recursive one, cheap):
 * installed in main(), before any connection. */
typedef struct counted_mutex {
    sqlite3_mutex *real;
    int depth;
} counted_mutex;

static sqlite3_mutex_methods g_real_mutex;
static counted_mutex g_static_mutex[32];
static counted_mutex *g_counted; /* the connection's, while counting */
static int64_t g_takes;

static int cm_init(void) { return g_real_mutex.xMutexInit(); }
static int cm_end(void) { return g_real_mutex.xMutexEnd(); }

static sqlite3_mutex *cm_alloc(int type)
{
    sqlite3_mutex *real = g_real_mutex.xMutexAlloc(type);
    if (!real)
        return NULL;
    counted_mutex *m;
    if (type > SQLITE_MUTEX_RECURSIVE && type < 32) {
        m = &g_static_mutex[type]; /* the same one each time */
    } else if (!(m = calloc(1, sizeof *m))) {
        g_real_mutex.xMutexFree(real);
        return NULL;
    }
    m->real = real;
    return (sqlite3_mutex *)m;
}

static void cm_free(sqlite3_mutex *p)
{
    counted_mutex *m = (counted_mutex *)p;
    g_real_mutex.xMutexFree(m->real);
    if (m < g_static_mutex || m >= g_static_mutex + 32)
        free(m);
}

static void cm_enter(sqlite3_mutex *p)
{
    counted_mutex *m = (counted_mutex *)p;
    g_real_mutex.xMutexEnter(m->real);
    if (m->depth++ == 0 && m == g_counted)
        g_takes++;
}

static int cm_try(sqlite3_mutex *p)
{
    counted_mutex *m = (counted_mutex *)p;
    int rc = g_real_mutex.xMutexTry(m->real);
    if (rc == SQLITE_OK && m->depth++ == 0 && m == g_counted)
        g_takes++;
    return rc;
}

static void cm_leave(sqlite3_mutex *p)
{
    counted_mutex *m = (counted_mutex *)p;
    m->depth--;
    g_real_mutex.xMutexLeave(m->real);
}

static int cm_held(sqlite3_mutex *p)
{
    counted_mutex *m = (counted_mutex *)p;
    return !m || (g_real_mutex.xMutexHeld ? g_real_mutex.xMutexHeld(m->real)
                                          : m->depth > 0);
}

static int cm_notheld(sqlite3_mutex *p)
{
    counted_mutex *m = (counted_mutex *)p;
    return !m ||
           (g_real_mutex.xMutexNotheld ? g_real_mutex.xMutexNotheld(m->real)
                                       : m->depth == 0);
}

static int install_counted_mutexes(void)
{
    static const sqlite3_mutex_methods counted = {
        cm_init, cm_end,   cm_alloc, cm_free,   cm_enter,
        cm_try,  cm_leave, cm_held,  cm_notheld};
    /* SQLite fills in its methods when it starts: started and shut down
     * to read them. */
    return sqlite3_initialize() == SQLITE_OK &&
           sqlite3_shutdown() == SQLITE_OK &&
           sqlite3_config(SQLITE_CONFIG_GETMUTEX, &g_real_mutex) ==
               SQLITE_OK &&
           g_real_mutex.xMutexAlloc &&
           sqlite3_config(SQLITE_CONFIG_MUTEX, &counted) == SQLITE_OK;
}

static int g_mutexes_counted;

static int up_upper(dw_row *out, const dw_row *in, void *payload)
{
    (void)payload;
    const dw_value *v = dw_row_get(in, "v");
    if (!v || v->type != DW_TYPE_TEXT)
        return dw_row_set_null(out, "w");
    char buf[32];
    int n = v->n < 31 ? v->n : 31;
    for (int i = 0; i < n; i++)
        buf[i] = (char)toupper(((const unsigned char *)v->p)[i]);
    buf[n] = '\0';
    return dw_row_set_text(out, "w", buf);
}

/* One table of 400 rows whose column w is v in upper case through a C
 * mapping, but for keys 3 and 300. */
static dw_migration *open_upper_table(test_db *t)
{
    test_db_open(t);
    exec_ok(t->db, "CREATE TABLE cb_t(id INTEGER PRIMARY KEY, v TEXT, "
                   "w TEXT);"
                   "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
                   "FROM n WHERE i < 400) INSERT INTO cb_t SELECT i, "
                   "'v' || i, upper('v' || i) FROM n;"
                   "UPDATE cb_t SET w = 'X' WHERE id IN (3, 300);");
    static const char *const ocols[] = {"v"};
    static const char *const ncols[] = {"w"};
    dw_options o = options_for("cb", TEST_SIDE("cb_t", k_id, ocols),
                               TEST_SIDE("cb_t", k_id, ncols));
    o.up_fn = up_upper;
    o.map_version = "upper 1";
    return open_migration_ok(t->db, &o);
}

/* A C mapping sends every row of the table to C: the connection's mutex
 * is taken once a row, for the step and all its values together -- each
 * value read on its own would take it again (four times a row here). */
static void test_callback_rows_lock_once(void **state)
{
    (void)state;
    if (!g_mutexes_counted)
        skip();
    test_db t;
    dw_migration *h = open_upper_table(&t);
    g_counted = (counted_mutex *)sqlite3_db_mutex(t.db);
    if (!g_counted) {
        dw_close(h);
        test_db_close(&t);
        skip(); /* a build without mutexes */
    }
    g_takes = 0;
    dw_verify_result r = verify_chunked(h, 1000);
    int64_t takes = g_takes;
    g_counted = NULL;
    assert_int_equal(r.keys, NROWS);
    assert_int_equal(r.different, 2);
    print_message("  the connection's mutex taken %lld times for %d rows\n",
                  (long long)takes, NROWS);
    assert_true(takes <= NROWS + 100);
    dw_close(h);
    test_db_close(&t);
}

/* Collects the keys a verification reports. */
static void collect_key(const dw_mismatch *m, void *payload)
{
    char *keys = payload;
    size_t n = strlen(keys);
    snprintf(keys + n, 64 - n, "%s;", m->key);
}

/* One table whose every row goes to C: the comparison pass itself ends
 * each chunk (it stops chunk_rows keys in), so the table is stepped
 * through once -- a search for the chunk's end first would step through
 * its keys again -- and each key is compared once whatever the chunk
 * size, a chunk ending on the range's last key or not. */
static void test_callback_one_table_one_pass(void **state)
{
    (void)state;
    test_db t;
    dw_migration *h = open_upper_table(&t);
    trace_log l;
    trace_start(t.db, &l, "cb_t", NULL);
    dw_verify_result r = verify_chunked(h, 1000);
    trace_stop(t.db);
    assert_int_equal(r.keys, NROWS);
    assert_int_equal(r.different, 2);
    print_message("  full-scan steps: %lld for %d rows, %d statements\n",
                  (long long)l.fullscan_steps, NROWS, l.nsql);
    assert_true(l.fullscan_steps <= NROWS + 10);
    assert_int_equal(l.nsql, 1);
    trace_free(&l);
    static const int chunks[] = {1, 2, 7, 399, 400, 401};
    for (size_t i = 0; i < sizeof chunks / sizeof *chunks; i++) {
        char keys[64] = "";
        dw_verify_options vo = DW_VERIFY_OPTIONS_INIT;
        vo.chunk_rows = chunks[i];
        vo.fn = collect_key;
        vo.payload = keys;
        assert_dw_ok(h, dw_verify(&r, h, &vo));
        assert_int_equal(r.keys, NROWS);
        assert_int_equal(r.different, 2);
        assert_string_equal(keys, "[3];[300];");
    }
    dw_close(h);
    test_db_close(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_table_read_once),
        cmocka_unit_test(test_two_tables_no_prescan),
        cmocka_unit_test(test_key_shapes_need_no_sort),
        cmocka_unit_test(test_callback_rows_lock_once),
        cmocka_unit_test(test_callback_one_table_one_pass),
    };
    g_mutexes_counted = install_counted_mutexes();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
