/* The cmocka assertions of dualwrite_cmocka.h, as an application's unit
 * tests would use them. */
#include "support.h"

#include <string.h>

#include "dualwrite_cmocka.h"

typedef struct fixture {
    test_db t;
    dw_migration *h;
} fixture;

static const char *const key_cols[] = {"id"};
static const dw_column_map up[] = {{"title", "upper(name)"}};

static void open_fixture(fixture *f)
{
    test_db_open(&f->t);
    exec_ok(f->t.db,
            "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);"
            "CREATE TABLE items_v2(id INTEGER PRIMARY KEY, title TEXT);"
            "INSERT INTO items VALUES(1, 'lamp'), (2, 'desk');"
            "INSERT INTO items_v2 VALUES(1, 'LAMP'), (2, 'DESK');");
    dw_options o = DW_OPTIONS_INIT;
    o.name = "items_v2";
    o.old_side.table = "items";
    o.old_side.key_columns = key_cols;
    o.old_side.nkey_columns = 1;
    o.new_side.table = "items_v2";
    o.new_side.key_columns = key_cols;
    o.new_side.nkey_columns = 1;
    o.up = up;
    o.nup = 1;
    assert_int_equal(dw_open(&f->h, f->t.db, &o, NULL), DW_OK);
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_DUAL_WRITE, NULL, 0));
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_SHADOW, NULL, 0));
}

static void close_fixture(fixture *f)
{
    dw_close(f->h);
    test_db_close(&f->t);
}

static void test_agreeing_models_pass(void **state)
{
    (void)state;
    fixture f;
    open_fixture(&f);
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    for (int id = 1; id <= 2; id++) {
        dw_value key = dw_int(id);
        assert_dw_ok(f.h, dw_read(row, f.h, &key, 1, NULL, NULL, NULL));
        assert_dw_key_agrees(f.h, &key, 1);
    }
    assert_int_equal(dw_cmocka_divergence(f.h, NULL, 0), 0);
    assert_dw_no_divergence(f.h);
    dw_row_free(row);
    close_fixture(&f);
}

static void test_divergence_is_counted_and_described(void **state)
{
    (void)state;
    fixture f;
    open_fixture(&f);
    exec_ok(f.t.db, "UPDATE items_v2 SET title = 'LAMPS' WHERE id = 1");
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    dw_value key = dw_int(1);
    assert_dw_ok(f.h, dw_read(row, f.h, &key, 1, NULL, NULL, NULL));
    /* The caller still got the old model's row. */
    assert_string_equal(dw_row_get(row, "name")->p, "lamp");

    char report[2048];
    int64_t n = dw_cmocka_divergence(f.h, report, sizeof report);
    /* One mismatch counted by the handle and one log entry. */
    assert_int_equal(n, 2);
    assert_non_null(strstr(report, "items_v2 diverges"));
    assert_non_null(strstr(report, "key [1]"));
    assert_non_null(strstr(report, "title: old=text(4):"));
    /* Redacted by default: the raw values are not in the report. */
    assert_null(strstr(report, "LAMPS"));

    /* A report longer than the buffer is cut, never overrun. */
    char tiny[16];
    memset(tiny, 'x', sizeof tiny);
    assert_int_equal(dw_cmocka_divergence(f.h, tiny, sizeof tiny), 2);
    assert_int_equal(strlen(tiny), sizeof tiny - 1);

    /* Another handle (another process, say) sees it through the log. */
    sqlite3 *db2 = test_db_connect(&f.t);
    dw_options o = DW_OPTIONS_INIT;
    o.name = "items_v2";
    o.old_side.table = "items";
    o.old_side.key_columns = key_cols;
    o.old_side.nkey_columns = 1;
    o.new_side.table = "items_v2";
    o.new_side.key_columns = key_cols;
    o.new_side.nkey_columns = 1;
    o.up = up;
    o.nup = 1;
    dw_migration *h2 = NULL;
    assert_int_equal(dw_open(&h2, db2, &o, NULL), DW_OK);
    assert_int_equal(dw_cmocka_divergence(h2, NULL, 0), 1);

    /* Once repaired and the log cleared, both agree again. */
    assert_dw_ok(f.h, dw_mirror(f.h, &key, 1));
    assert_dw_ok(h2, dw_mismatch_log_clear(h2));
    assert_dw_key_agrees(h2, &key, 1);
    assert_dw_no_divergence(h2);
    dw_close(h2);
    sqlite3_close(db2);
    dw_row_free(row);
    close_fixture(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agreeing_models_pass),
        cmocka_unit_test(test_divergence_is_counted_and_described),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
