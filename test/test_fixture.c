/* Tests of the test fixture itself (test/support.c): the backend setting,
 * the fixture's life cycle, the spec and open helpers, callback_exec()'s
 * bindings and the query helpers. A helper that silently did less than it
 * says would let every program built on it pass for the wrong reason. */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Run as a child: prints the backend this program chose, exits 0. */
#define PRINT_BACKEND_FLAG "--print-backend"

/* ---- the backend setting ------------------------------------------------ */

/* Runs this program as a child with DW_TEST_BACKEND set to `setting`
 * (unset when NULL); its output (stdout and stderr) into out, its exit
 * status returned. */
static int run_with_backend(const char *setting, char *out, size_t size)
{
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "%s%s%s '%s' " PRINT_BACKEND_FLAG " 2>&1",
             setting ? "DW_TEST_BACKEND='" : "unset DW_TEST_BACKEND; ",
             setting ? setting : "", setting ? "'" : "", test_self);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_backend_default_is_sqlite(void **state)
{
    (void)state;
    char out[512];
    assert_int_equal(run_with_backend(NULL, out, sizeof out), 0);
    assert_string_equal(out, "sqlite\n");
    assert_int_equal(run_with_backend("", out, sizeof out), 0);
    assert_string_equal(out, "sqlite\n");
    assert_int_equal(run_with_backend("sqlite", out, sizeof out), 0);
    assert_string_equal(out, "sqlite\n");
}

/* An unknown backend stops the program before any test runs, naming the
 * setting and the backends there are. */
static void test_backend_unknown_refused(void **state)
{
    (void)state;
    char out[512];
    assert_int_equal(run_with_backend("postgres", out, sizeof out), 2);
    assert_string_equal(
        out, "DW_TEST_BACKEND=postgres: no such test backend (known: sqlite)\n");
    /* Names are exact: no prefix, no other case. */
    assert_int_equal(run_with_backend("SQLite", out, sizeof out), 2);
    assert_int_equal(run_with_backend("sqlite3", out, sizeof out), 2);
}

/* ---- the fixture's life cycle ------------------------------------------- */

static void test_fixture_life_cycle(void **state)
{
    (void)state;
    void *s = NULL;
    assert_int_equal(fixture_setup(&s), 0);
    test_fixture *f = s;
    char dir[sizeof f->t.dir];
    snprintf(dir, sizeof dir, "%s", f->t.dir);
    assert_int_equal(access(dir, F_OK), 0);

    /* The second connection sees what the first committed. */
    fixture_exec(f, "CREATE TABLE t(x); INSERT INTO t VALUES(41)");
    fixture_connect_second(f);
    assert_int_equal(query_int(f->db2, "SELECT x + 1 FROM t"), 42);

    /* A reset gives an empty database in a new directory, the old one
     * removed. */
    fixture_reset(f);
    assert_int_not_equal(access(dir, F_OK), 0);
    assert_null(f->db2);
    assert_int_equal(
        fixture_int(f, "SELECT count(*) FROM sqlite_schema WHERE name = 't'"),
        0);
    snprintf(dir, sizeof dir, "%s", f->t.dir);

    assert_int_equal(fixture_teardown(&s), 0);
    assert_int_not_equal(access(dir, F_OK), 0);
}

/* ---- specs, opening and stages ------------------------------------------ */

static const char *const KEY[] = {"id"};
static const char *const OLD_COLS[] = {"name", "qty"};
static const char *const NEW_COLS[] = {"title"};

static void test_options_for_counts_sides(void **state)
{
    (void)state;
    dw_options init = DW_OPTIONS_INIT;
    dw_options o = options_for("m", TEST_SIDE("items", KEY, OLD_COLS),
                               TEST_SIDE_UNLISTED("items_v2", KEY));
    assert_string_equal(o.name, "m");
    assert_int_equal(o.version, init.version);
    assert_string_equal(o.old_side.table, "items");
    assert_ptr_equal(o.old_side.key_columns, KEY);
    assert_int_equal(o.old_side.nkey_columns, 1);
    assert_ptr_equal(o.old_side.columns, OLD_COLS);
    assert_int_equal(o.old_side.ncolumns, 2);
    assert_string_equal(o.new_side.table, "items_v2");
    assert_null(o.new_side.columns);
    assert_int_equal(o.new_side.ncolumns, 0);
    assert_null(o.up);
    assert_int_equal(o.nup, 0);
    assert_null(o.down);
    assert_int_equal(o.flags, init.flags);
}

/* items(id, name, qty) with rows 1 and 2, an empty items_v2(id, title),
 * and the options of migration `name` between them. */
static dw_options items_migration(test_fixture *f, const char *name)
{
    fixture_exec(f, "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT,"
                    " qty INTEGER);"
                    "CREATE TABLE items_v2(id INTEGER PRIMARY KEY,"
                    " title TEXT);"
                    "INSERT INTO items VALUES(1, 'a', 1), (2, 'b', 2)");
    static const dw_column_map up[] = {{"title", "upper(name)"}};
    dw_options o = options_for(name, TEST_SIDE("items", KEY, OLD_COLS),
                               TEST_SIDE("items_v2", KEY, NEW_COLS));
    o.up = up;
    o.nup = 1;
    return o;
}

static void test_open_helpers(void **state)
{
    test_fixture *f = *state;
    dw_options o = items_migration(f, "m");

    /* A refusal is returned, not asserted, and leaves no handle. */
    dw_options bad = o;
    bad.old_side.table = "no_such_table";
    dw_migration *h = NULL;
    assert_int_equal(open_migration(&h, f->t.db, &bad), DW_ESCHEMA);
    assert_null(h);

    f->h = open_migration_ok(f->t.db, &o);
    assert_string_equal(dw_name(f->h), "m");
    assert_int_equal(stage_of(f->h), DW_STAGE_OFF);
    stage_force_ok(f->h, DW_STAGE_LIVE);
    assert_int_equal(stage_of(f->h), DW_STAGE_LIVE);
    assert_int_equal(stage_force(f->h, 99), DW_EMISUSE);

    /* The stored spec opens again, and so does its JSON by hand. */
    f->h2 = open_stored_ok(f->t.db, "m", 0);
    assert_string_equal(dw_spec_digest(f->h2), dw_spec_digest(f->h));
    dw_close(f->h2);
    f->h2 = open_json_ok(f->t.db, "m_json",
                         "{\"old\":{\"table\":\"items\",\"key\":[\"id\"]},"
                         "\"new\":{\"table\":\"items_v2\",\"key\":[\"id\"]},"
                         "\"up\":{\"sql\":{\"title\":\"upper(name)\"}}}",
                         0);
    assert_string_equal(dw_name(f->h2), "m_json");
}

/* The walk moves unforced, so the gates into LIVE and COMPLETE open only
 * because it backfills and verifies on the way; a target at or below the
 * stage moves nothing. */
static void test_stage_walk(void **state)
{
    test_fixture *f = *state;
    dw_options o = items_migration(f, "walk");
    f->h = open_migration_ok(f->t.db, &o);
    stage_walk_ok(f->h, DW_STAGE_SHADOW);
    assert_int_equal(stage_of(f->h), DW_STAGE_SHADOW);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items_v2"), 0);
    stage_walk_ok(f->h, DW_STAGE_COMPLETE);
    assert_int_equal(stage_of(f->h), DW_STAGE_COMPLETE);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items_v2"), 2);
    stage_walk_ok(f->h, DW_STAGE_LIVE);
    assert_int_equal(stage_of(f->h), DW_STAGE_COMPLETE);
}

/* ---- callback_exec() ------------------------------------------------------ */

static void test_callback_exec_binds_each_type(void **state)
{
    test_fixture *f = *state;
    fixture_exec(f, "CREATE TABLE v(id INTEGER PRIMARY KEY, a, b, c, d, e)");
    const char slice[] = "textNOT-THIS";
    const unsigned char bytes[] = {0, 1, 255};
    dw_value t = dw_text_n(slice, 4), b = dw_blob(bytes, 3),
             r = dw_float(2.5), n = dw_null();
    assert_int_equal(callback_exec(f->t.db,
                                   "INSERT INTO v VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
                                   "itvvvv", (int64_t)7, (const char *)NULL, &t,
                                   &b, &r, &n),
                     0);
    char buf[128];
    assert_string_equal(
        fixture_text(f,
                     "SELECT quote(id) || ',' || quote(a) || ',' || quote(b) "
                     "|| ',' || quote(c) || ',' || quote(d) || ',' || "
                     "quote(e) FROM v",
                     buf, sizeof buf),
        "7,NULL,'text',X'0001FF',2.5,NULL");

    /* Arguments past the statement's parameters are not bound: one call
     * serves an upsert and a delete. */
    assert_int_equal(callback_exec(f->t.db, "DELETE FROM v WHERE id = ?1",
                                   "itt", (int64_t)7, "unused", "unused"),
                     0);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM v"), 0);
}

/* A failing statement gives its DW_ code, never DW_OK. */
static void test_callback_exec_reports_failure(void **state)
{
    test_fixture *f = *state;
    fixture_exec(f, "CREATE TABLE u(id INTEGER PRIMARY KEY, x NOT NULL)");
    assert_int_equal(callback_exec(f->t.db, "INSERT INTO nowhere VALUES(1)",
                                   ""),
                     DW_ERROR);
    assert_int_equal(callback_exec(f->t.db, "INSERT INTO u VALUES(?1, ?2)",
                                   "it", (int64_t)1, (const char *)NULL),
                     DW_ECONSTRAINT);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM u"), 0);
}

/* ---- queries and transactions --------------------------------------------- */

static void test_queries(void **state)
{
    test_fixture *f = *state;
    fixture_exec(f, "CREATE TABLE q(name TEXT, n INTEGER);"
                    "INSERT INTO q VALUES('a', 1), ('b', 2), ('b', 3)");
    assert_int_equal(
        query_int_with(f->t.db, "SELECT sum(n) FROM q WHERE name = ?1", "b"),
        5);
    /* Unbound, ?1 is NULL. */
    assert_int_equal(query_int_with(f->t.db,
                                    "SELECT count(*) FROM q WHERE name IS ?1",
                                    NULL),
                     0);
    /* No row: -1; a NULL text: the empty string. */
    assert_int_equal(fixture_int(f, "SELECT n FROM q WHERE name = 'z'"), -1);
    char buf[16] = "stale";
    assert_string_equal(fixture_text(f, "SELECT NULL", buf, sizeof buf), "");

    assert_int_equal(outside_transaction(f->t.db), 1);
    fixture_exec(f, "BEGIN");
    assert_int_equal(outside_transaction(f->t.db), 0);
    fixture_exec(f, "COMMIT");
    assert_int_equal(outside_transaction(f->t.db), 1);

    assert_true(is_hex16("0123456789abcdef"));
    assert_false(is_hex16("0123456789ABCDEF"));
    assert_false(is_hex16("0123456789abcde"));
    assert_false(is_hex16(NULL));
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], PRINT_BACKEND_FLAG) == 0) {
        printf("%s\n", test_backend_name());
        return 0;
    }
    test_self_init(argv[0]);
#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backend_default_is_sqlite),
        cmocka_unit_test(test_backend_unknown_refused),
        cmocka_unit_test(test_fixture_life_cycle),
        cmocka_unit_test(test_options_for_counts_sides),
        T(test_open_helpers),
        T(test_stage_walk),
        T(test_callback_exec_binds_each_type),
        T(test_callback_exec_reports_failure),
        T(test_queries),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
