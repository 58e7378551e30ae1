/* The rows a C mapping callback gets from verification and the backfill:
 * its input filled by position once its names are set, its output's
 * columns found by name once and then where the callback set them -- no
 * name looked up per row by the library -- and the values right whatever
 * order the callback sets its columns in, or when it misses one. */
#include "support.h"

#include <stdio.h>
#include <string.h>

#include "internal.h"

static const char *const k_id[] = {"id"};
static const char *const c_v[] = {"v"};
static const char *const c_wx[] = {"w", "x"};

#define NROWS 400

/* What the callback saw: calls, and the name lookups its rows had had at
 * the second call and at the last. */
typedef struct seen {
    int calls;
    uint64_t in_second, in_last, out_second, out_last;
    int flip;        /* set x before w on odd keys */
    int64_t skip_at; /* leave x unset at this key (0: never) */
} seen;

static seen g_seen;

/* w = upper(v), x = length(v); `in` read by position (key, then v), so
 * the only name lookups are the library's and the two sets into out. */
static int up_wx(dw_row *out, const dw_row *in, void *payload)
{
    (void)payload;
    seen *s = &g_seen;
    const dw_value *id = dw_row_value(in, 0), *v = dw_row_value(in, 1);
    if (!id || id->type != DW_TYPE_INTEGER || !v || v->type != DW_TYPE_TEXT)
        return DW_ERROR;
    char up[32];
    int n = v->n < 31 ? v->n : 31;
    for (int i = 0; i < n; i++) {
        char c = ((const char *)v->p)[i];
        up[i] = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
    }
    up[n] = '\0';
    int rc = DW_OK;
    if (s->flip && id->i % 2) {
        if (id->i != s->skip_at)
            rc = dw_row_set_int(out, "x", n);
        if (rc == DW_OK)
            rc = dw_row_set_text(out, "w", up);
    } else {
        rc = dw_row_set_text(out, "w", up);
        if (rc == DW_OK && id->i != s->skip_at)
            rc = dw_row_set_int(out, "x", n);
    }
    s->calls++;
    if (s->calls == 2) {
        s->in_second = dw__row_lookups(in);
        s->out_second = dw__row_lookups(out);
    }
    s->in_last = dw__row_lookups(in);
    s->out_last = dw__row_lookups(out);
    return rc;
}

static void seen_reset(int flip, int64_t skip_at)
{
    memset(&g_seen, 0, sizeof g_seen);
    g_seen.flip = flip;
    g_seen.skip_at = skip_at;
}

/* The library's lookups between the second call and the last: none in
 * the input; in the output only the callback's own two sets a row. */
static void assert_found_once(void)
{
    const seen *s = &g_seen;
    print_message("  %d calls; lookups after the second: in %llu, out %llu\n",
                  s->calls, (unsigned long long)(s->in_last - s->in_second),
                  (unsigned long long)(s->out_last - s->out_second));
    assert_true(s->calls >= NROWS);
    assert_int_equal(s->in_last, s->in_second);
    assert_int_equal(s->out_last - s->out_second,
                     2 * (uint64_t)(s->calls - 2));
}

/* cb_new's rows holding what up_wx maps their cb_old rows to. */
static int64_t rows_mapped_right(sqlite3 *db)
{
    return query_int(db, "SELECT count(*) FROM cb_new WHERE w = upper('v' "
                         "|| id) AND x = length('v' || id)");
}

/* cb_old(id, v) into cb_new(id, w, x) through up_wx, at DUAL_WRITE. */
static dw_migration *open_two_tables(test_db *t)
{
    test_db_open(t);
    exec_ok(t->db, "CREATE TABLE cb_old(id INTEGER PRIMARY KEY, v TEXT);"
                   "CREATE TABLE cb_new(id INTEGER PRIMARY KEY, w TEXT, "
                   "x INTEGER);"
                   "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
                   "FROM n WHERE i < 400) INSERT INTO cb_old SELECT i, "
                   "'v' || i FROM n;");
    dw_options o = options_for("cb", TEST_SIDE("cb_old", k_id, c_v),
                               TEST_SIDE("cb_new", k_id, c_wx));
    o.up_fn = up_wx;
    o.map_version = "up_wx 1";
    dw_migration *h = open_migration_ok(t->db, &o);
    stage_walk_ok(h, DW_STAGE_DUAL_WRITE);
    return h;
}

static void backfill_all(dw_migration *h)
{
    dw_backfill_options bo = DW_BACKFILL_OPTIONS_INIT;
    bo.batch_rows = 10 * NROWS; /* one batch: one stream of rows */
    dw_backfill_progress p;
    assert_dw_ok(h, dw_backfill(&p, h, &bo));
    assert_true(p.finished);
}

static dw_verify_result verify_all(dw_migration *h)
{
    dw_verify_options vo = DW_VERIFY_OPTIONS_INIT;
    vo.chunk_rows = 10 * NROWS;
    dw_verify_result r;
    assert_dw_ok(h, dw_verify(&r, h, &vo));
    return r;
}

/* The backfill's stream and both verifications (two tables, one table)
 * look no name up per row, and their values are right. */
static void test_rows_by_position(void **state)
{
    (void)state;
    test_db t;
    dw_migration *h = open_two_tables(&t);
    seen_reset(0, 0);
    backfill_all(h);
    assert_found_once();
    assert_int_equal(rows_mapped_right(t.db), NROWS);

    /* A dual write's sync reads the source row into `in` in the same
     * order: key, then columns. */
    exec_ok(t.db, "UPDATE cb_old SET v = 'zz' WHERE id = 9");
    dw_value k9 = dw_int(9);
    assert_dw_ok(h, dw_mirror(h, &k9, 1));
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM cb_new WHERE "
                                     "id = 9 AND w = 'ZZ' AND x = 2"),
                     1);

    exec_ok(t.db, "UPDATE cb_new SET x = 0 WHERE id IN (7, 300)");
    seen_reset(0, 0);
    dw_verify_result r = verify_all(h);
    assert_found_once();
    assert_int_equal(r.keys, NROWS);
    assert_int_equal(r.different, 2);
    dw_close(h);
    test_db_close(&t);

    /* One table: the old and new columns side by side. */
    test_db_open(&t);
    exec_ok(t.db, "CREATE TABLE cb_t(id INTEGER PRIMARY KEY, v TEXT, w TEXT, "
                  "x INTEGER);"
                  "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
                  "FROM n WHERE i < 400) INSERT INTO cb_t SELECT i, "
                  "'v' || i, upper('v' || i), length('v' || i) FROM n;"
                  "UPDATE cb_t SET w = 'no' WHERE id = 5;");
    dw_options o = options_for("cb", TEST_SIDE("cb_t", k_id, c_v),
                               TEST_SIDE("cb_t", k_id, c_wx));
    o.up_fn = up_wx;
    o.map_version = "up_wx 1";
    h = open_migration_ok(t.db, &o);
    seen_reset(0, 0);
    r = verify_all(h);
    assert_found_once();
    assert_int_equal(r.keys, NROWS);
    assert_int_equal(r.different, 1);
    dw_close(h);
    test_db_close(&t);
}

/* Columns set in another order on every other row land in their own
 * columns: where the callback set them is found again when it changes. */
static void test_columns_in_any_order(void **state)
{
    (void)state;
    test_db t;
    dw_migration *h = open_two_tables(&t);
    seen_reset(1, 0);
    backfill_all(h);
    assert_int_equal(rows_mapped_right(t.db), NROWS);
    seen_reset(1, 0);
    dw_verify_result r = verify_all(h);
    assert_int_equal(r.keys, NROWS);
    assert_int_equal(r.different, 0);
    /* Mapped one way, compared the other: still equal row by row. */
    seen_reset(0, 0);
    r = verify_all(h);
    assert_int_equal(r.different, 0);
    dw_close(h);
    test_db_close(&t);
}

/* A column the callback leaves unset on one row, after rows that set it
 * (its slot kept from them): refused, naming the column and the key, the
 * batch rolled back. */
static void test_column_missing_after_rows_with_it(void **state)
{
    (void)state;
    test_db t;
    static const int64_t at[] = {250, 251};
    for (int i = 0; i < 2; i++) {
        dw_migration *h = open_two_tables(&t);
        seen_reset(1, at[i]); /* 250: x unset last; 251: first */
        dw_backfill_options bo = DW_BACKFILL_OPTIONS_INIT;
        bo.batch_rows = 10 * NROWS;
        dw_backfill_progress p;
        assert_int_equal(dw_backfill(&p, h, &bo), DW_ECALLBACK);
        const char *msg = dw_errmsg(h);
        char key[32];
        snprintf(key, sizeof key, "[%lld]", (long long)at[i]);
        print_message("  %s\n", msg);
        assert_non_null(strstr(msg, "did not set column \"x\""));
        assert_non_null(strstr(msg, key));
        assert_int_equal(query_int(t.db, "SELECT count(*) FROM cb_new"), 0);
        /* Verification says the same. */
        dw_verify_result r;
        dw_verify_options vo = DW_VERIFY_OPTIONS_INIT;
        assert_int_equal(dw_verify(&r, h, &vo), DW_ECALLBACK);
        assert_non_null(strstr(dw_errmsg(h), "did not set column \"x\""));
        dw_close(h);
        test_db_close(&t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_by_position),
        cmocka_unit_test(test_columns_in_any_order),
        cmocka_unit_test(test_column_missing_after_rows_with_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
