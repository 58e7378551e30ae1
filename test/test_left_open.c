/* A rollback that cannot run. Under a lasting allocation failure even the
 * library's ROLLBACK can fail (SQLite must prepare it again, and cannot).
 * The transaction (or, inside the caller's transaction, the savepoint) of
 * the failed call is then still open on the caller's connection. Before the
 * fix the handle took that transaction for the caller's at its next call:
 * its writes went into it and were never committed.
 *
 * Each test walks N = 1, 2, ... with every allocation from the Nth on
 * failing, until the call no longer meets a failure, and checks at each N:
 * the call returns DW_ENOMEM and, when something was left open, the message
 * says so; the next call on the handle ends it first; then a write commits
 * for every connection to see. Each test also asserts that some N did leave
 * something open, so that it cannot pass without exercising the path. */
#include "fault.h"

#include <stdio.h>
#include <string.h>

static const world_item WRITTEN = {"written", 77, 0};

/* The old side's qty of key 3 as another connection sees it. */
static int64_t committed_qty(const test_db *t)
{
    sqlite3 *other = test_db_connect(t);
    int64_t qty = query_int(other, "SELECT qty FROM items WHERE id = 3");
    sqlite3_close(other);
    return qty;
}

static dw_migration *world_at_dual_write(test_db *t)
{
    test_db_open(t);
    world_create(t->db, 5);
    dw_migration *h = world_open_ok(t->db);
    assert_int_equal(dw_stage_set(h, DW_STAGE_DUAL_WRITE, "test", 0), DW_OK);
    return h;
}

/* Writes key 3 again, which ends what an earlier write left open and then
 * commits its own: others see qty 77. Closes h and the database. */
static void write_again_commits(test_db *t, dw_migration *h)
{
    dw_value key = dw_int(3);
    assert_int_equal(dw_write(h, &key, 1, world_write_old, NULL,
                              (void *)&WRITTEN),
                     DW_OK);
    assert_true(sqlite3_get_autocommit(t->db));
    assert_int_equal(committed_qty(t), 77);
    dw_close(h);
    test_db_close(t);
}

/* The write outside any transaction: the library's own transaction. */
static void test_own_transaction_left_open(void **state)
{
    (void)state;
    int left_open = 0, n;
    for (n = 1;; n++) {
        test_db t;
        dw_migration *h = world_at_dual_write(&t);
        dw_value key = dw_int(3);
        fault_mem_arm(n, 1);
        int rc = dw_write(h, &key, 1, world_write_old, NULL,
                          (void *)&WRITTEN);
        int fired = fault_mem_disarm();
        if (!fired) {
            assert_int_equal(rc, DW_OK);
            dw_close(h);
            test_db_close(&t);
            break;
        }
        assert_int_equal(rc, DW_ENOMEM);
        if (!sqlite3_get_autocommit(t.db)) {
            left_open++;
            assert_non_null(strstr(dw_errmsg(h), "still open"));
            assert_non_null(strstr(dw_errmsg(h), "ROLLBACK"));
            /* Nothing of it is visible to others. */
            assert_int_equal(committed_qty(&t), 3);
        }
        /* The next call ends it first, then commits its own write. */
        write_again_commits(&t, h);
    }
    printf("own transaction: %d points, %d left it open\n", n, left_open);
    assert_true(left_open > 0);
}

static void noop_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    (void)argv;
    sqlite3_result_null(ctx);
}

/* A write callback that fails after expiring every prepared statement
 * (defining a function does that) and making every allocation fail from
 * now on: the library's ROLLBACK TO must be prepared again, and cannot. */
static int expire_and_fail(void *db, const dw_value *key, int nkey,
                           void *payload)
{
    int rc = world_write_old(db, key, nkey, payload);
    if (rc != SQLITE_OK)
        return dw_sqlite_result(db, rc);
    /* Redefining a function expires the statements (the first
     * definition may not). */
    for (int i = 0; i < 2; i++)
        assert_int_equal(sqlite3_create_function(db, "dw_test_noop", 0,
                                                 SQLITE_UTF8, NULL, noop_fn,
                                                 NULL, NULL),
                         SQLITE_OK);
    fault_mem_arm(1, 1);
    return DW_ERROR;
}

/* At DUAL_WRITE, key 3 written through expire_and_fail -- inside a
 * transaction of the caller's that changed key 4 first, when asked: the
 * write's rollback cannot run, and the call says what it left open. */
static dw_migration *write_left_open(test_db *t, int in_caller_txn)
{
    dw_migration *h = world_at_dual_write(t);
    if (in_caller_txn) {
        exec_ok(t->db, "BEGIN");
        exec_ok(t->db, "UPDATE items SET qty = 55 WHERE id = 4");
    }
    dw_value key = dw_int(3);
    int rc = dw_write(h, &key, 1, expire_and_fail, NULL, (void *)&WRITTEN);
    assert_true(fault_mem_disarm() > 0);
    assert_int_equal(rc, DW_ENOMEM);
    assert_false(sqlite3_get_autocommit(t->db));
    assert_non_null(strstr(dw_errmsg(h), in_caller_txn
                                             ? "still open in your transaction"
                                             : "still open on the connection"));
    return h;
}

/* The write inside the caller's transaction: the library's savepoint.
 * SQLite itself rolls the caller's whole transaction back when a statement
 * meets an allocation failure, so a walk does not reach a savepoint left
 * open; the callback above does. */
static void test_savepoint_left_open(void **state)
{
    (void)state;
    test_db t;
    dw_migration *h = write_left_open(&t, 1);
    assert_non_null(strstr(dw_errmsg(h), "rather than commit"));
    dw_value key = dw_int(3);

    /* The next call rolls the savepoint back -- the half-done write goes,
     * the caller's work before it stays -- then writes inside the caller's
     * transaction, which commits whole. */
    assert_int_equal(dw_write(h, &key, 1, world_write_old, NULL,
                              (void *)&WRITTEN),
                     DW_OK);
    assert_false(sqlite3_get_autocommit(t.db));
    exec_ok(t.db, "COMMIT");
    sqlite3 *other = test_db_connect(&t);
    assert_int_equal(query_int(other, "SELECT qty FROM items WHERE id = 3"),
                     77);
    assert_int_equal(query_int(other, "SELECT qty FROM items WHERE id = 4"),
                     55);
    assert_int_equal(query_int(other, "SELECT qty FROM items_v2 WHERE id = 3"),
                     77);
    sqlite3_close(other);
    dw_close(h);
    test_db_close(&t);
}

/* The same through the library's own transaction, and the application
 * rolling it back itself, as the message says: the next call finds nothing
 * left to end. */
static void test_application_rolls_back(void **state)
{
    (void)state;
    test_db t;
    dw_migration *h = write_left_open(&t, 0);
    exec_ok(t.db, "ROLLBACK");
    assert_int_equal(committed_qty(&t), 3);
    int stage;
    assert_int_equal(dw_stage_get(&stage, h), DW_OK);
    assert_int_equal(stage, DW_STAGE_DUAL_WRITE);
    write_again_commits(&t, h);
}

/* The application rolled back itself and began a transaction of its own
 * before the handle's next call: that call must not take the new
 * transaction for the one it left, whether that was its own transaction
 * (the new one has not written) or its savepoint (gone with the rollback,
 * though the new transaction has written). The write joins the
 * application's transaction, which commits whole. */
static void app_rolls_back_and_begins(int in_caller_txn)
{
    test_db t;
    dw_migration *h = write_left_open(&t, in_caller_txn);
    exec_ok(t.db, "ROLLBACK");
    exec_ok(t.db, "BEGIN");
    if (in_caller_txn)
        exec_ok(t.db, "UPDATE items SET qty = 66 WHERE id = 5");
    else
        assert_int_equal(query_int(t.db, "SELECT count(*) FROM items"), 5);
    dw_value key = dw_int(3);
    assert_int_equal(dw_write(h, &key, 1, world_write_old, NULL,
                              (void *)&WRITTEN),
                     DW_OK);
    assert_false(sqlite3_get_autocommit(t.db));
    exec_ok(t.db, "COMMIT");
    assert_int_equal(committed_qty(&t), 77);
    if (in_caller_txn)
        assert_int_equal(query_int(t.db, "SELECT qty FROM items WHERE id = 5"),
                         66);
    dw_close(h);
    test_db_close(&t);
}

static void test_app_rolls_back_and_begins(void **state)
{
    (void)state;
    app_rolls_back_and_begins(0);
    app_rolls_back_and_begins(1);
}

/* dw_close ends what was left open: nobody would later. */
static void test_close_ends_it(void **state)
{
    (void)state;
    test_db t;
    dw_migration *h = write_left_open(&t, 0);
    dw_close(h);
    assert_true(sqlite3_get_autocommit(t.db));
    assert_int_equal(committed_qty(&t), 3);
    test_db_close(&t);
}

int main(void)
{
    fault_mem_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_own_transaction_left_open),
        cmocka_unit_test(test_savepoint_left_open),
        cmocka_unit_test(test_application_rolls_back),
        cmocka_unit_test(test_app_rolls_back_and_begins),
        cmocka_unit_test(test_close_ends_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
