/* The caller's transaction rolled back by the database. On an I/O error or
 * a full disk (and on running out of memory, some interrupts and busy
 * errors) SQLite rolls back the whole transaction, not only the statement
 * or the library's savepoint. A call made inside the caller's transaction
 * must then say so (DW_EROLLEDBACK), and the handle's next call, made
 * outside any transaction as if the lost one were still open, must not
 * commit on its own behind the caller's back.
 *
 * The failing VFS of the fault harness (fault.h) fails the first write
 * after the caller's own first write, in rollback-journal mode, where a
 * change to a page not yet journaled in the transaction writes the journal
 * at once. */
#include "fault.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fixture {
    test_db t;
    sqlite3 *db; /* through the failing VFS */
    dw_migration *h;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    test_db_open(&f->t);
    exec_ok(f->t.db, "PRAGMA journal_mode=DELETE");
    world_create(f->t.db, 8);
    f->db = test_db_connect_vfs(&f->t);
    f->h = world_open_ok(f->db);
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_DUAL_WRITE, NULL, 0));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    fault_vfs_disarm();
    dw_close(f->h);
    sqlite3_close(f->db);
    test_db_close(&f->t);
    free(f);
    return 0;
}

static world_item ITEM = {"fresh", 50, 0};

/* The caller's own write, before the call: on a table of its own, so that
 * the call's first change to the items tables writes the journal. */
#define CALLER_SQL "INSERT INTO item_tags(tag) VALUES('caller')"

static int write_key(fixture *f, int64_t id)
{
    dw_value k = dw_int(id);
    return dw_write(f->h, &k, 1, world_write_old, NULL, &ITEM);
}

/* The caller begins a transaction and writes in it; then the next write to
 * the file fails (once) with err while `op` runs. Checks that op reports
 * the lost transaction, that the handle's next call outside a transaction
 * is refused and commits nothing, that the caller's COMMIT then finds no
 * transaction, and that nothing of it all reached the database. */
static void lost_in(fixture *f, int err, int (*op)(fixture *f),
                    const char *what)
{
    char *before = fault_db_dump(f->t.db);
    exec_ok(f->db, "BEGIN");
    exec_ok(f->db, CALLER_SQL);
    fault_vfs_arm(FAULT_WRITE, 1, 0, err);
    int rc = op(f);
    int failed = fault_vfs_disarm();
    if (rc != DW_EROLLEDBACK)
        print_error("%s: %d (%s) after %d failed writes: %s\n", what, rc,
                    dw_errstr(rc), failed, dw_errmsg(f->h));
    assert_int_equal(failed, 1);
    assert_int_equal(rc, DW_EROLLEDBACK);
    assert_int_equal(sqlite3_get_autocommit(f->db), 1);
    const char *msg = dw_errmsg(f->h);
    assert_non_null(strstr(msg, "rolled back your transaction"));
    assert_non_null(strstr(msg, err == SQLITE_FULL ? "full" : "I/O"));

    /* The caller, not checking, goes on with its transaction. */
    assert_dw(f->h, write_key(f, 3), DW_EROLLEDBACK);
    assert_non_null(strstr(dw_errmsg(f->h), "previous call"));
    assert_int_equal(exec_err(f->db, "COMMIT"), SQLITE_ERROR);
    char *after = fault_db_dump(f->t.db);
    assert_string_equal(after, before);
    free(after);
    free(before);

    /* Started over, the transaction goes through. */
    exec_ok(f->db, "BEGIN");
    exec_ok(f->db, CALLER_SQL);
    assert_dw_ok(f->h, write_key(f, 3));
    exec_ok(f->db, "COMMIT");
    assert_int_equal(query_int(f->t.db, "SELECT qty FROM items_v2 WHERE "
                                        "id = 3"),
                     50);
    assert_int_equal(query_int(f->t.db, "SELECT count(*) FROM item_tags "
                                        "WHERE tag = 'caller'"),
                     1);
}

static int op_write(fixture *f) { return write_key(f, 2); }

static int op_mirror(fixture *f)
{
    dw_value k = dw_int(2);
    return dw_mirror(f->h, &k, 1);
}

static int op_stage(fixture *f)
{
    return dw_stage_set(f->h, DW_STAGE_SHADOW, "in the caller's", 0);
}

static int op_override(fixture *f)
{
    dw_value k = dw_int(4);
    return dw_override_set(f->h, &k, 1, 1, DW_STAGE_SHADOW, NULL);
}

/* Key 2 is on the old side only: a compared read (at SHADOW) or a
 * comparison finds it missing and logs it, and that write is what
 * fails. */
static int op_read(fixture *f)
{
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    dw_value k = dw_int(2);
    int rc = dw_read(row, f->h, &k, 1, NULL, NULL, NULL);
    assert_int_equal(dw_row_count(row), 0);
    dw_row_free(row);
    return rc;
}

static int op_compare(fixture *f)
{
    dw_value k = dw_int(2);
    int equal = -1;
    return dw_compare(&equal, f->h, &k, 1);
}

static void test_write_disk_full(void **state)
{
    lost_in(*state, SQLITE_FULL, op_write, "dw_write");
}

static void test_write_io_error(void **state)
{
    lost_in(*state, SQLITE_IOERR, op_write, "dw_write");
}

static void test_mirror_io_error(void **state)
{
    lost_in(*state, SQLITE_IOERR, op_mirror, "dw_mirror");
}

static void test_stage_set_io_error(void **state)
{
    lost_in(*state, SQLITE_IOERR, op_stage, "dw_stage_set");
}

static void test_override_io_error(void **state)
{
    lost_in(*state, SQLITE_IOERR, op_override, "dw_override_set");
}

static void test_read_log_io_error(void **state)
{
    fixture *f = *state;
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_SHADOW, NULL, 0));
    lost_in(f, SQLITE_IOERR, op_read, "dw_read");
}

static void test_compare_log_io_error(void **state)
{
    lost_in(*state, SQLITE_IOERR, op_compare, "dw_compare");
}

/* The refusal is the next call's only: a caller that read the code and
 * goes on outside a transaction is not held up further. */
static void test_refusal_once(void **state)
{
    fixture *f = *state;
    exec_ok(f->db, "BEGIN");
    exec_ok(f->db, CALLER_SQL);
    fault_vfs_arm(FAULT_WRITE, 1, 0, SQLITE_IOERR);
    assert_dw(f->h, write_key(f, 2), DW_EROLLEDBACK);
    fault_vfs_disarm();
    int stage = -1;
    assert_dw(f->h, dw_stage_get(&stage, f->h), DW_EROLLEDBACK);
    assert_dw_ok(f->h, dw_stage_get(&stage, f->h));
    assert_int_equal(stage, DW_STAGE_DUAL_WRITE);
    assert_dw_ok(f->h, write_key(f, 2));
    assert_int_equal(query_int(f->t.db, "SELECT qty FROM items_v2 WHERE "
                                        "id = 2"),
                     50);
}


static int op_repair(fixture *f)
{
    dw_value k = dw_int(2);
    return dw_repair_keys(NULL, f->h, &k, 1, 1);
}

static void test_repair_io_error(void **state)
{
    lost_in(*state, SQLITE_IOERR, op_repair, "dw_repair_keys");
}

/* dw_sqlite_open() defining a migration inside the caller's transaction: the
 * error says the transaction was rolled back, and no handle is made. */
static void test_open_io_error(void **state)
{
    fixture *f = *state;
    exec_ok(f->db, "BEGIN");
    exec_ok(f->db, CALLER_SQL);
    dw_options o;
    world_options(&o);
    o.name = "second";
    dw_migration *h = NULL;
    char *err = NULL;
    fault_vfs_arm(FAULT_WRITE, 1, 0, SQLITE_IOERR);
    int rc = dw_sqlite_open(&h, f->db, &o, &err);
    int failed = fault_vfs_disarm();
    assert_int_equal(failed, 1);
    assert_int_equal(rc, DW_EROLLEDBACK);
    assert_int_equal(sqlite3_get_autocommit(f->db), 1);
    assert_null(h);
    assert_non_null(err);
    assert_non_null(strstr(err, "rolled back your transaction"));
    dw_free(err);
}

/* dw_sqlite_remove() inside the caller's transaction: the error says the
 * transaction was rolled back, and the migration is still stored. */
static void test_remove_io_error(void **state)
{
    fixture *f = *state;
    dw_options o;
    world_options(&o);
    o.name = "second";
    dw_migration *h = open_migration_ok(f->db, &o);
    dw_close(h);
    exec_ok(f->db, "BEGIN");
    exec_ok(f->db, CALLER_SQL);
    char *err = NULL;
    fault_vfs_arm(FAULT_WRITE, 1, 0, SQLITE_IOERR);
    int rc = dw_sqlite_remove(f->db, "second", 0, "test", &err);
    int failed = fault_vfs_disarm();
    if (rc != DW_EROLLEDBACK)
        print_error("dw_remove: %d: %s\n", rc, err ? err : "");
    assert_int_equal(failed, 1);
    assert_int_equal(rc, DW_EROLLEDBACK);
    assert_int_equal(sqlite3_get_autocommit(f->db), 1);
    assert_non_null(err);
    assert_non_null(strstr(err, "rolled back your transaction"));
    assert_non_null(strstr(err, "I/O"));
    dw_free(err);
    assert_int_equal(query_int(f->t.db, "SELECT count(*) FROM dw_migrations "
                                        "WHERE name = 'second'"),
                     1);
}

int main(void)
{
    fault_vfs_register();
    fault_vfs_real_sync(0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_disk_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_io_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mirror_io_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stage_set_io_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_override_io_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_log_io_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compare_log_io_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repair_io_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_io_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_io_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusal_once, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
