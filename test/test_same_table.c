/* One table with new columns: the old and the new model share each row, so
 * syncing one side must update that side's columns and never insert a row
 * (which would trip NOT NULL on the other side's columns). */
#include "support.h"

#include <string.h>

static const char *const key_cols[] = {"id"};
static const char *const old_cols[] = {"status"};
static const char *const new_cols[] = {"status_code"};
static const dw_column_map up[] = {
    {"status_code", "CASE status WHEN 'open' THEN 1 WHEN 'closed' THEN 2 END"}};
static const dw_column_map down[] = {
    {"status", "CASE status_code WHEN 1 THEN 'open' WHEN 2 THEN 'closed' END"}};

static int map_up(dw_row *out, const dw_row *in, void *payload)
{
    (void)payload;
    const dw_value *s = dw_row_get(in, "status");
    int code = s && s->type == DW_TYPE_TEXT &&
                       strcmp((const char *)s->p, "closed") == 0
                   ? 2
                   : 1;
    return dw_row_set_int(out, "status_code", code);
}

static dw_migration *open_one_table(sqlite3 *db, int with_callback)
{
    dw_options o =
        options_for("status_codes", TEST_SIDE("tickets", key_cols, old_cols),
                    TEST_SIDE("tickets", key_cols, new_cols));
    if (with_callback) {
        o.up_fn = map_up;
        o.map_version = "map_up v1";
    } else {
        o.up = up;
        o.nup = 1;
    }
    o.down = down;
    o.ndown = 1;
    dw_migration *h = open_migration_ok(db, &o);
    return h;
}

static void sync_keeps_not_null_columns(int with_callback)
{
    test_db t;
    test_db_open(&t);
    /* owner and status are NOT NULL: a sync that inserted a row would fail. */
    exec_ok(t.db, "CREATE TABLE tickets(id INTEGER PRIMARY KEY,"
                  " owner TEXT NOT NULL, status TEXT NOT NULL,"
                  " status_code INTEGER);"
                  "INSERT INTO tickets VALUES(1, 'ann', 'open', NULL),"
                  " (2, 'bob', 'closed', NULL);");
    dw_migration *h = open_one_table(t.db, with_callback);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, NULL, 0));
    for (int id = 1; id <= 2; id++) {
        dw_value key = dw_int(id);
        assert_dw_ok(h, dw_mirror(h, &key, 1));
    }
    assert_int_equal(query_int(t.db, "SELECT status_code FROM tickets "
                                     "WHERE id = 1"),
                     1);
    assert_int_equal(query_int(t.db, "SELECT status_code FROM tickets "
                                     "WHERE id = 2"),
                     2);
    /* Everything else in the rows is untouched. */
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM tickets WHERE "
                                     "(id, owner, status) IN (VALUES(1, "
                                     "'ann', 'open'), (2, 'bob', 'closed'))"),
                     2);
    /* A key with no row: the sync finds nothing and creates nothing. */
    dw_value missing = dw_int(99);
    assert_dw_ok(h, dw_mirror(h, &missing, 1));
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM tickets"), 2);

    /* And down, at LIVE: the old column follows the new one. */
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_SHADOW, NULL, 0));
    backfill_and_verify(h);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_LIVE, NULL, 0));
    exec_ok(t.db, "UPDATE tickets SET status_code = 2 WHERE id = 1");
    dw_value key = dw_int(1);
    assert_dw_ok(h, dw_mirror(h, &key, 1));
    char buf[16];
    assert_string_equal(query_text(t.db, "SELECT status FROM tickets WHERE "
                                         "id = 1",
                                   buf, sizeof buf),
                        "closed");
    int equal = 0;
    assert_dw_ok(h, dw_compare(&equal, h, &key, 1));
    assert_int_equal(equal, 1);
    dw_close(h);
    test_db_close(&t);
}

static void test_sql_mapping_updates_in_place(void **state)
{
    (void)state;
    sync_keeps_not_null_columns(0);
}

static void test_callback_mapping_updates_in_place(void **state)
{
    (void)state;
    sync_keeps_not_null_columns(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sql_mapping_updates_in_place),
        cmocka_unit_test(test_callback_mapping_updates_in_place),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
