/* The application's schema changing under an open migration: SQLite
 * re-prepares the library's statements, and a vanished column must be an
 * error, never a string constant -- whatever the connection's own
 * double-quoted-string setting. */
#include "support.h"

#include <string.h>

static const char *const key_cols[] = {"id"};
static const dw_column_map up[] = {{"title", "upper(name)"}};

static dw_migration *open_items(sqlite3 *db, unsigned int flags, int *rc)
{
    dw_options o =
        options_for("items_v2", TEST_SIDE_UNLISTED("items", key_cols),
                    TEST_SIDE_UNLISTED("items_v2", key_cols));
    o.up = up;
    o.nup = 1;
    o.flags = flags;
    dw_migration *h = NULL;
    char *err = NULL;
    *rc = dw_sqlite_open(&h, db, &o, &err);
    dw_free(err);
    return h;
}

static void test_renamed_column_is_an_error_not_a_string(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    /* The application allows double-quoted strings (SQLite's legacy
     * default); the library must not inherit that. */
    assert_int_equal(
        sqlite3_db_config(t.db, SQLITE_DBCONFIG_DQS_DML, 1, (int *)0),
        SQLITE_OK);
    exec_ok(t.db, "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);"
                  "CREATE TABLE items_v2(id INTEGER PRIMARY KEY, title TEXT);"
                  "INSERT INTO items VALUES(1, 'lamp');"
                  "INSERT INTO items_v2 VALUES(1, 'LAMP');");
    int rc;
    dw_migration *h = open_items(t.db, 0, &rc);
    assert_int_equal(rc, DW_OK);
    for (int s = DW_STAGE_DUAL_WRITE; s <= DW_STAGE_LIVE; s++) {
        if (s == DW_STAGE_LIVE)
            backfill_and_verify(h);
        assert_dw_ok(h, dw_stage_set(h, s, NULL, 0));
    }

    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    dw_value key = dw_int(1);
    assert_dw_ok(h, dw_read(row, h, &key, 1, NULL, NULL, NULL));
    assert_string_equal(dw_row_get(row, "title")->p, "LAMP");

    /* The column the cached statements name goes away. */
    exec_ok(t.db, "ALTER TABLE items_v2 RENAME COLUMN title TO label");
    rc = dw_read(row, h, &key, 1, NULL, NULL, NULL);
    if (rc == DW_OK) {
        const dw_value *v = dw_row_get(row, "title");
        print_error("read succeeded after the rename; title = %s\n",
                    v && v->type == DW_TYPE_TEXT ? (const char *)v->p : "?");
    }
    assert_int_equal(rc, DW_ERROR);
    assert_non_null(strstr(dw_errmsg(h), "title"));
    /* The same for a mirrored write: nothing written, an error. */
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_SHADOW, NULL, 0));
    exec_ok(t.db, "UPDATE items SET name = 'desk' WHERE id = 1");
    assert_int_not_equal(dw_mirror(h, &key, 1), DW_OK);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM items_v2 WHERE "
                                     "label = 'title' OR label = 'DESK'"),
                     0);
    /* The connection's own setting is as the application left it. */
    int dqs = 0;
    sqlite3_db_config(t.db, SQLITE_DBCONFIG_DQS_DML, -1, &dqs);
    assert_int_equal(dqs, 1);

    dw_row_free(row);
    dw_close(h);
    test_db_close(&t);
}

static void test_unrelated_schema_change_is_harmless(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);"
                  "CREATE TABLE items_v2(id INTEGER PRIMARY KEY, title TEXT);");
    int rc;
    dw_migration *h = open_items(t.db, 0, &rc);
    assert_int_equal(rc, DW_OK);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, NULL, 0));
    exec_ok(t.db, "INSERT INTO items VALUES(7, 'chair')");
    dw_value key = dw_int(7);
    assert_dw_ok(h, dw_mirror(h, &key, 1));
    /* Any DDL makes SQLite re-prepare every statement. */
    exec_ok(t.db, "CREATE INDEX items_by_name ON items(name);"
                  "ALTER TABLE items_v2 ADD COLUMN note TEXT");
    exec_ok(t.db, "UPDATE items SET name = 'stool' WHERE id = 7");
    assert_dw_ok(h, dw_mirror(h, &key, 1));
    char buf[32];
    assert_string_equal(
        query_text(t.db, "SELECT title FROM items_v2 WHERE id = 7", buf,
                   sizeof buf),
        "STOOL");
    dw_close(h);
    test_db_close(&t);
}

static void test_unknown_open_flags_rejected(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);"
                  "CREATE TABLE items_v2(id INTEGER PRIMARY KEY, title TEXT);");
    int rc;
    dw_migration *h = open_items(t.db, 1u << 20, &rc);
    assert_null(h);
    assert_int_equal(rc, DW_EMISUSE);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM sqlite_schema "
                                     "WHERE name = 'dw_migrations'"),
                     0);
    test_db_close(&t);
}

/* Double-quoted names in the spec's own SQL are identifiers (the spec is
 * checked with double-quoted strings off); they must stay identifiers when
 * SQLite re-prepares under the application's setting, while quotes inside
 * string literals and comments are left alone. */
static void test_double_quoted_names_in_mappings(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    assert_int_equal(
        sqlite3_db_config(t.db, SQLITE_DBCONFIG_DQS_DML, 1, (int *)0),
        SQLITE_OK);
    exec_ok(t.db, "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);"
                  "CREATE TABLE items_v2(id INTEGER PRIMARY KEY, title TEXT);"
                  "INSERT INTO items VALUES(1, 'lamp');");
    static const dw_column_map quoted[] = {
        {"title", "'say \"' || upper(\"name\") /* \"not\" */ || '\"'"}};
    dw_options o =
        options_for("items_v2", TEST_SIDE_UNLISTED("items", key_cols),
                    TEST_SIDE_UNLISTED("items_v2", key_cols));
    o.up = quoted;
    o.nup = 1;
    dw_migration *h = open_migration_ok(t.db, &o);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, NULL, 0));
    dw_value key = dw_int(1);
    assert_dw_ok(h, dw_mirror(h, &key, 1));
    char buf[64];
    assert_string_equal(query_text(t.db, "SELECT title FROM items_v2", buf,
                                   sizeof buf),
                        "say \"LAMP\"");
    /* The name in the mapping goes away: an error, not the string "name". */
    exec_ok(t.db, "ALTER TABLE items RENAME COLUMN name TO label");
    assert_int_not_equal(dw_mirror(h, &key, 1), DW_OK);
    assert_non_null(strstr(dw_errmsg(h), "name"));
    assert_string_equal(query_text(t.db, "SELECT title FROM items_v2", buf,
                                   sizeof buf),
                        "say \"LAMP\"");
    dw_close(h);
    test_db_close(&t);
}

/* SQLite aborts a running compound statement when a connection setting
 * such as the double-quoted-string flag changes under it. The library used
 * to flip that flag around its own statements; an application looping over
 * a UNION and writing through the library must see every row. */
static void test_application_statement_survives_library_calls(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);"
                  "CREATE TABLE items_v2(id INTEGER PRIMARY KEY, title TEXT);"
                  "INSERT INTO items VALUES(1, 'a'), (2, 'b'), (3, 'c');"
                  "CREATE TABLE todo(id INTEGER PRIMARY KEY);"
                  "INSERT INTO todo VALUES(2), (3);");
    int rc;
    dw_migration *h = open_items(t.db, 0, &rc);
    assert_int_equal(rc, DW_OK);
    stage_walk_ok(h, DW_STAGE_SHADOW);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(t.db,
                                        "SELECT id FROM items WHERE id < 2 "
                                        "UNION ALL SELECT id FROM todo",
                                        -1, &st, NULL),
                     SQLITE_OK);
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    int seen = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        dw_value key = dw_int(sqlite3_column_int64(st, 0));
        assert_dw_ok(h, dw_mirror(h, &key, 1));
        assert_dw_ok(h, dw_read(row, h, &key, 1, NULL, NULL, NULL));
        seen++;
    }
    assert_int_equal(rc, SQLITE_DONE);
    assert_int_equal(seen, 3);
    sqlite3_finalize(st);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM items_v2"), 3);
    dw_row_free(row);
    dw_close(h);
    test_db_close(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_double_quoted_names_in_mappings),
        cmocka_unit_test(test_application_statement_survives_library_calls),
        cmocka_unit_test(test_renamed_column_is_an_error_not_a_string),
        cmocka_unit_test(test_unrelated_schema_change_is_harmless),
        cmocka_unit_test(test_unknown_open_flags_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
