/* The library's own state tables: a database written by 0.1 (state schema
 * version 1) is upgraded in place, keeping its migrations, stages and
 * history; a version from the future is refused. */
#include "support.h"

#include <string.h>
#include <unistd.h>

static const char *const key_cols[] = {"id"};
static const dw_column_map up[] = {{"title", "upper(name)"}};

static int open_items_capped(dw_migration **h, sqlite3 *db, int log_cap)
{
    dw_options o =
        options_for("items_v2", TEST_SIDE_UNLISTED("items", key_cols),
                    TEST_SIDE_UNLISTED("items_v2", key_cols));
    o.log_cap = log_cap;
    o.up = up;
    o.nup = 1;
    return dw_sqlite_open(h, db, &o, NULL);
}

static int open_items(dw_migration **h, sqlite3 *db)
{
    return open_items_capped(h, db, 0);
}

/* Turns the state tables back into what 0.3 created. */
static void downgrade_to_v3(sqlite3 *db)
{
    exec_ok(db, "ALTER TABLE dw_migrations DROP COLUMN mismatch_entries;"
                "ALTER TABLE dw_backfill DROP COLUMN runner_pid;"
                "ALTER TABLE dw_backfill DROP COLUMN runner_host;"
                "UPDATE dw_meta SET value = 3 WHERE key = 'schema_version'");
}

/* Turns the state tables back into what 0.2 created. */
static void downgrade_to_v2(sqlite3 *db)
{
    downgrade_to_v3(db);
    exec_ok(db, "DROP TABLE dw_overrides;"
                "ALTER TABLE dw_migrations DROP COLUMN canary_buckets;"
                "ALTER TABLE dw_migrations DROP COLUMN canary_stage;"
                "ALTER TABLE dw_migrations DROP COLUMN canary_cohort;"
                "ALTER TABLE dw_migrations DROP COLUMN promote_stage;"
                "ALTER TABLE dw_migrations DROP COLUMN overrides;"
                "UPDATE dw_meta SET value = 2 WHERE key = 'schema_version'");
}

/* Turns the state tables back into what 0.1 created. */
static void downgrade_to_v1(sqlite3 *db)
{
    downgrade_to_v2(db);
    exec_ok(db, "DROP TABLE dw_backfill; DROP TABLE dw_verify_keys;"
                "DROP TABLE dw_verify_runs;"
                "ALTER TABLE dw_migrations DROP COLUMN contracted;"
                "ALTER TABLE dw_history DROP COLUMN detail;"
                "UPDATE dw_meta SET value = 1 WHERE key = 'schema_version'");
}

static void test_version_1_is_upgraded(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);"
                  "CREATE TABLE items_v2(id INTEGER PRIMARY KEY, title TEXT);"
                  "INSERT INTO items VALUES(1, 'lamp'), (2, 'desk');");
    dw_migration *h = NULL;
    assert_int_equal(open_items(&h, t.db), DW_OK);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, "go", 0));
    char digest[65];
    strcpy(digest, dw_spec_digest(h));
    dw_close(h);
    downgrade_to_v1(t.db);

    assert_int_equal(open_items(&h, t.db), DW_OK);
    /* Same migration, same spec digest, same stage and history. */
    assert_string_equal(dw_spec_digest(h), digest);
    int stage = -1;
    assert_dw_ok(h, dw_stage_get(&stage, h));
    assert_int_equal(stage, DW_STAGE_DUAL_WRITE);
    assert_int_equal(query_int(t.db, "SELECT value FROM dw_meta WHERE key = "
                                     "'schema_version'"),
                     4);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM dw_history"), 2);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM dw_history WHERE "
                                     "detail IS NULL"),
                     2);
    /* The new work runs on the upgraded tables. */
    backfill_and_verify(h);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM items_v2"), 2);
    dw_close(h);
    test_db_close(&t);
}

static void test_version_2_is_upgraded(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);"
                  "CREATE TABLE items_v2(id INTEGER PRIMARY KEY, title TEXT);"
                  "INSERT INTO items VALUES(1, 'lamp'), (2, 'desk');");
    dw_migration *h = NULL;
    assert_int_equal(open_items(&h, t.db), DW_OK);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, "go", 0));
    backfill_and_verify(h);
    dw_close(h);
    downgrade_to_v2(t.db);

    assert_int_equal(open_items(&h, t.db), DW_OK);
    int stage = -1;
    assert_dw_ok(h, dw_stage_get(&stage, h));
    assert_int_equal(stage, DW_STAGE_DUAL_WRITE);
    assert_int_equal(query_int(t.db, "SELECT value FROM dw_meta WHERE key = "
                                     "'schema_version'"),
                     4);
    /* No routing after the upgrade; the backfill done before still counts
     * and overrides work on the new table. */
    dw_routing r;
    assert_dw_ok(h, dw_routing_get(&r, h));
    assert_int_equal(r.promote_stage, DW_PROMOTE_NONE);
    assert_null(r.canary_cohort);
    assert_true(r.canary_percent == 0.0);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_SHADOW, "on", 0));
    dw_value key = dw_int(1);
    assert_dw_ok(h, dw_override_set(h, &key, 1, 1, DW_STAGE_DUAL_WRITE,
                                    "hold"));
    int route = -1;
    assert_dw_ok(h, dw_key_stage(&stage, &route, h, &key, 1));
    assert_int_equal(stage, DW_STAGE_DUAL_WRITE);
    assert_int_equal(route, DW_ROUTE_OVERRIDE);
    dw_close(h);
    test_db_close(&t);
}

static int64_t schema_version(sqlite3 *db)
{
    return query_int(db, "SELECT value FROM dw_meta WHERE key = "
                         "'schema_version'");
}

/* 0.3 counted the log for its cap on every insert; the upgrade stores
 * each migration's entry count, which the cap then reads. */
static void test_version_3_is_upgraded(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);"
                  "CREATE TABLE items_v2(id INTEGER PRIMARY KEY, title TEXT);"
                  "INSERT INTO items VALUES(1, 'lamp'), (2, 'desk');"
                  "INSERT INTO items_v2 VALUES(1, 'lamp'), (2, 'rug');");
    dw_migration *h = NULL;
    assert_int_equal(open_items(&h, t.db), DW_OK);
    dw_close(h);
    downgrade_to_v3(t.db);
    exec_ok(t.db, "INSERT INTO dw_mismatch_log(migration_id, key, digest, "
                  "kind, detail, count, first_seen, last_seen) "
                  "SELECT id, '[' || n || ']', 'd', 3, 'x', 1, 0, 0 FROM "
                  "dw_migrations, (SELECT 10 AS n UNION ALL SELECT 11)");

    assert_int_equal(open_items_capped(&h, t.db, 3), DW_OK);
    assert_int_equal(schema_version(t.db), 4);
    assert_int_equal(query_int(t.db, "SELECT mismatch_entries FROM "
                                     "dw_migrations"),
                     2);
    /* The cap of 3 holds one more entry; the next is dropped. */
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, "go", 0));
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_SHADOW, "go", 0));
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    for (int id = 1; id <= 2; id++) {
        dw_value key = dw_int(id);
        assert_dw_ok(h, dw_read(row, h, &key, 1, NULL, NULL, NULL));
    }
    dw_row_free(row);
    int64_t entries = -1, dropped = -1;
    assert_dw_ok(h, dw_mismatch_log_count(&entries, &dropped, h));
    assert_int_equal(entries, 3);
    assert_int_equal(dropped, 1);
    dw_close(h);
    test_db_close(&t);
}

static int stop_after_one(const dw_backfill_progress *p, void *payload)
{
    (void)p;
    (void)payload;
    return 1;
}

/* A backfill half done by 0.3, which stored no runner: after the upgrade it
 * reads back with its counts and no runner, resumes, and from then on each
 * batch stores who ran it. */
static void test_version_3_backfill_is_upgraded(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);"
                  "CREATE TABLE items_v2(id INTEGER PRIMARY KEY, title TEXT);"
                  "INSERT INTO items VALUES(1, 'lamp'), (2, 'desk'),"
                  " (3, 'rug');");
    dw_migration *h = NULL;
    assert_int_equal(open_items(&h, t.db), DW_OK);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, "go", 0));
    dw_backfill_options o = DW_BACKFILL_OPTIONS_INIT;
    o.batch_rows = 1;
    o.batch_ms = -1;
    o.progress = stop_after_one;
    assert_dw(h, dw_backfill(NULL, h, &o), DW_MORE);
    dw_close(h);
    downgrade_to_v3(t.db);

    assert_int_equal(open_items(&h, t.db), DW_OK);
    assert_int_equal(query_int(t.db, "SELECT value FROM dw_meta WHERE key = "
                                     "'schema_version'"),
                     4);
    dw_backfill_progress p;
    assert_dw_ok(h, dw_backfill_status(&p, h));
    assert_int_equal(p.rows_done, 1);
    assert_int_equal(p.batches, 1);
    assert_int_equal(p.runner_pid, 0);
    assert_string_equal(p.runner_host, "");
    assert_true(p.last_progress > 0);
    /* Nobody known to be gone, and a batch a moment ago. */
    assert_int_equal(p.activity, DW_BACKFILL_RUNNING);

    assert_dw(h, dw_backfill(NULL, h, &o), DW_MORE);
    assert_dw_ok(h, dw_backfill_status(&p, h));
    assert_int_equal(p.rows_done, 2);
    assert_int_equal(p.runner_pid, (int64_t)getpid());
    char host[64];
    assert_int_equal(gethostname(host, sizeof host), 0);
    host[sizeof host - 1] = '\0';
    assert_string_equal(p.runner_host, host);
    assert_dw_ok(h, dw_backfill(&p, h, NULL));
    assert_true(p.finished);
    assert_int_equal(p.activity, DW_BACKFILL_IDLE);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM items_v2"), 3);
    dw_close(h);
    test_db_close(&t);
}

static void test_missing_table_is_put_back(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);"
                  "CREATE TABLE items_v2(id INTEGER PRIMARY KEY, title TEXT);");
    dw_migration *h = NULL;
    assert_int_equal(open_items(&h, t.db), DW_OK);
    dw_close(h);
    exec_ok(t.db, "DROP TABLE dw_verify_keys");
    assert_int_equal(open_items(&h, t.db), DW_OK);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM sqlite_schema "
                                     "WHERE name = 'dw_verify_keys'"),
                     1);
    dw_close(h);
    test_db_close(&t);
}

static void test_future_version_is_refused(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);"
                  "CREATE TABLE items_v2(id INTEGER PRIMARY KEY, title TEXT);");
    dw_migration *h = NULL;
    assert_int_equal(open_items(&h, t.db), DW_OK);
    dw_close(h);
    exec_ok(t.db, "UPDATE dw_meta SET value = 5 WHERE key = "
                  "'schema_version'");
    char *err = NULL;
    dw_options o =
        options_for("items_v2", TEST_SIDE_UNLISTED("items", key_cols),
                    TEST_SIDE_UNLISTED("items_v2", key_cols));
    o.up = up;
    o.nup = 1;
    assert_int_equal(dw_sqlite_open(&h, t.db, &o, &err), DW_ERROR);
    assert_null(h);
    assert_non_null(err);
    assert_non_null(strstr(err, "version 5"));
    dw_free(err);
    test_db_close(&t);
}

/* Creating, upgrading or putting back state tables takes the write lock,
 * in one transaction with the rest of the open: while another connection
 * holds it, DW_EBUSY and nothing changed; once it is free, the open does
 * it all. */
static void test_state_work_takes_the_write_lock(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);"
                  "CREATE TABLE items_v2(id INTEGER PRIMARY KEY, title TEXT);");
    sqlite3 *other = test_db_connect(&t);
    sqlite3_busy_timeout(t.db, 0);
    const char *count_state =
        "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'dw\\_%' "
        "ESCAPE '\\'";

    /* No state tables yet. */
    exec_ok(other, "BEGIN IMMEDIATE; INSERT INTO items VALUES(1, 'lamp')");
    dw_migration *h = NULL;
    assert_int_equal(open_items(&h, t.db), DW_EBUSY);
    assert_null(h);
    assert_true(sqlite3_get_autocommit(t.db));
    assert_int_equal(query_int(t.db, count_state), 0);
    exec_ok(other, "COMMIT");
    assert_int_equal(open_items(&h, t.db), DW_OK);
    dw_close(h);
    int64_t tables = query_int(t.db, count_state);

    /* Version 2: the upgrade waits for the lock. */
    downgrade_to_v2(t.db);
    int64_t downgraded = query_int(t.db, count_state);
    exec_ok(other, "BEGIN IMMEDIATE; INSERT INTO items VALUES(2, 'desk')");
    assert_int_equal(open_items(&h, t.db), DW_EBUSY);
    assert_null(h);
    assert_int_equal(dw_sqlite_open_stored(&h, t.db, "items_v2", 0, NULL), DW_EBUSY);
    assert_null(h);
    assert_true(sqlite3_get_autocommit(t.db));
    assert_int_equal(schema_version(t.db), 2);
    assert_int_equal(query_int(t.db, count_state), downgraded);
    exec_ok(other, "COMMIT");
    h = NULL;
    char *err = NULL;
    int rc = dw_sqlite_open_stored(&h, t.db, "items_v2", 0, &err);
    if (rc != DW_OK)
        print_error("dw_open_stored: %s\n", err ? err : "(no message)");
    assert_int_equal(rc, DW_OK);
    dw_close(h);
    assert_int_equal(schema_version(t.db), 4);
    assert_int_equal(query_int(t.db, count_state), tables);

    /* A table dropped by hand is put back under the lock too. */
    exec_ok(t.db, "DROP TABLE dw_verify_keys");
    exec_ok(other, "BEGIN IMMEDIATE; INSERT INTO items VALUES(3, 'rug')");
    assert_int_equal(open_items(&h, t.db), DW_EBUSY);
    assert_int_equal(query_int(t.db, count_state), tables - 1);
    exec_ok(other, "COMMIT");
    assert_int_equal(open_items(&h, t.db), DW_OK);
    assert_int_equal(query_int(t.db, count_state), tables);
    /* Current tables, a stored spec: opens beside the writer. */
    exec_ok(other, "BEGIN IMMEDIATE; INSERT INTO items VALUES(4, 'cup')");
    dw_migration *h2 = NULL;
    assert_int_equal(open_items(&h2, t.db), DW_OK);
    exec_ok(other, "COMMIT");
    dw_close(h2);
    dw_close(h);
    sqlite3_close(other);
    test_db_close(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_1_is_upgraded),
        cmocka_unit_test(test_version_2_is_upgraded),
        cmocka_unit_test(test_version_3_is_upgraded),
        cmocka_unit_test(test_version_3_backfill_is_upgraded),
        cmocka_unit_test(test_missing_table_is_put_back),
        cmocka_unit_test(test_future_version_is_refused),
        cmocka_unit_test(test_state_work_takes_the_write_lock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
