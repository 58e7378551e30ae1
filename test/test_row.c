/* Tests for dw_row, dw_value, dw_errstr and the version functions. */
#include "support.h"
#include "sqlite_memory.h"

#include <stdio.h>
#include <string.h>

/* ---- rows ---------------------------------------------------------------- */

static void test_row_new_empty(void **state)
{
    (void)state;
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    assert_non_null(row);
    assert_int_equal(dw_row_count(row), 0);
    assert_null(dw_row_name(row, 0));
    assert_null(dw_row_value(row, 0));
    assert_null(dw_row_get(row, "a"));
    assert_int_equal(dw_row_find(row, "a"), -1);
    dw_row_free(row);
}

static void test_row_set_get_find(void **state)
{
    (void)state;
    dw_row *row = NULL;
    const unsigned char bytes[3] = {9, 8, 7};
    assert_int_equal(dw_row_new(&row), DW_OK);
    assert_int_equal(dw_row_set_int(row, "i", -1234567890123LL), DW_OK);
    assert_int_equal(dw_row_set_float(row, "f", 2.5), DW_OK);
    assert_int_equal(dw_row_set_text(row, "t", "hello"), DW_OK);
    assert_int_equal(dw_row_set_blob(row, "b", bytes, 3), DW_OK);
    assert_int_equal(dw_row_set_null(row, "n"), DW_OK);
    assert_int_equal(dw_row_count(row), 5);

    const char *names[5] = {"i", "f", "t", "b", "n"};
    for (int k = 0; k < 5; k++) {
        assert_string_equal(dw_row_name(row, k), names[k]);
        assert_int_equal(dw_row_find(row, names[k]), k);
        assert_ptr_equal(dw_row_get(row, names[k]), dw_row_value(row, k));
    }
    assert_null(dw_row_name(row, 5));
    assert_null(dw_row_name(row, -1));
    assert_null(dw_row_value(row, 5));
    assert_null(dw_row_value(row, -1));
    assert_int_equal(dw_row_find(row, "x"), -1);
    assert_int_equal(dw_row_find(row, NULL), -1);
    assert_int_equal(dw_row_find(NULL, "i"), -1);
    assert_null(dw_row_get(row, "x"));
    /* names are matched case-sensitively */
    assert_int_equal(dw_row_find(row, "I"), -1);
    assert_null(dw_row_get(row, "T"));

    const dw_value *v = dw_row_get(row, "i");
    assert_int_equal(v->type, DW_TYPE_INTEGER);
    assert_true(v->i == -1234567890123LL);
    v = dw_row_get(row, "f");
    assert_int_equal(v->type, DW_TYPE_FLOAT);
    assert_true(v->f == 2.5);
    v = dw_row_get(row, "t");
    assert_int_equal(v->type, DW_TYPE_TEXT);
    assert_int_equal(v->n, 5);
    assert_string_equal((const char *)v->p, "hello");
    v = dw_row_get(row, "b");
    assert_int_equal(v->type, DW_TYPE_BLOB);
    assert_int_equal(v->n, 3);
    assert_memory_equal(v->p, bytes, 3);
    assert_ptr_not_equal(v->p, bytes);
    v = dw_row_get(row, "n");
    assert_int_equal(v->type, DW_TYPE_NULL);

    dw_row_free(row);
}

static void test_row_set_generic_and_null_value(void **state)
{
    (void)state;
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    dw_value v = dw_int(7);
    assert_int_equal(dw_row_set(row, "a", &v), DW_OK);
    v = dw_text("xyz"); /* n may be -1: the row must count the bytes */
    assert_int_equal(dw_row_set(row, "b", &v), DW_OK);
    assert_int_equal(dw_row_set(row, "c", NULL), DW_OK); /* NULL v: SQL NULL */
    assert_int_equal(dw_row_set_text(row, "d", NULL), DW_OK);
    v = dw_float(0.25);
    assert_int_equal(dw_row_set(row, "e", &v), DW_OK);
    v = dw_null();
    assert_int_equal(dw_row_set(row, "f", &v), DW_OK);

    assert_int_equal(dw_row_count(row), 6);
    assert_int_equal(dw_row_get(row, "a")->type, DW_TYPE_INTEGER);
    assert_true(dw_row_get(row, "a")->i == 7);
    assert_int_equal(dw_row_get(row, "b")->type, DW_TYPE_TEXT);
    assert_int_equal(dw_row_get(row, "b")->n, 3);
    assert_string_equal((const char *)dw_row_get(row, "b")->p, "xyz");
    assert_int_equal(dw_row_get(row, "c")->type, DW_TYPE_NULL);
    assert_int_equal(dw_row_get(row, "d")->type, DW_TYPE_NULL);
    assert_int_equal(dw_row_get(row, "e")->type, DW_TYPE_FLOAT);
    assert_true(dw_row_get(row, "e")->f == 0.25);
    assert_int_equal(dw_row_get(row, "f")->type, DW_TYPE_NULL);
    dw_row_free(row);
}

static void test_row_set_replaces_in_place(void **state)
{
    (void)state;
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    assert_int_equal(dw_row_set_int(row, "a", 1), DW_OK);
    assert_int_equal(dw_row_set_int(row, "b", 2), DW_OK);
    assert_int_equal(dw_row_set_int(row, "c", 3), DW_OK);
    assert_int_equal(dw_row_set_text(row, "b", "two"), DW_OK);
    assert_int_equal(dw_row_count(row), 3);
    assert_string_equal(dw_row_name(row, 0), "a");
    assert_string_equal(dw_row_name(row, 1), "b");
    assert_string_equal(dw_row_name(row, 2), "c");
    assert_int_equal(dw_row_value(row, 1)->type, DW_TYPE_TEXT);
    assert_string_equal((const char *)dw_row_value(row, 1)->p, "two");
    /* replace again, with another type, then with NULL */
    assert_int_equal(dw_row_set_float(row, "b", 1.5), DW_OK);
    assert_int_equal(dw_row_count(row), 3);
    assert_int_equal(dw_row_find(row, "b"), 1);
    assert_int_equal(dw_row_value(row, 1)->type, DW_TYPE_FLOAT);
    assert_int_equal(dw_row_set_null(row, "b"), DW_OK);
    assert_int_equal(dw_row_count(row), 3);
    assert_int_equal(dw_row_value(row, 1)->type, DW_TYPE_NULL);
    /* a differently-cased name is another column */
    assert_int_equal(dw_row_set_int(row, "B", 9), DW_OK);
    assert_int_equal(dw_row_count(row), 4);
    assert_int_equal(dw_row_find(row, "B"), 3);
    assert_int_equal(dw_row_value(row, 1)->type, DW_TYPE_NULL);
    dw_row_free(row);
}

static void test_row_text_is_copied(void **state)
{
    (void)state;
    dw_row *row = NULL;
    char buf[16];
    char name[8];
    assert_int_equal(dw_row_new(&row), DW_OK);
    strcpy(buf, "hello");
    strcpy(name, "col");
    assert_int_equal(dw_row_set_text(row, name, buf), DW_OK);
    buf[0] = 'J';
    buf[4] = '!';
    name[0] = 'X';
    assert_int_equal(dw_row_find(row, "col"), 0);
    const dw_value *v = dw_row_get(row, "col");
    assert_non_null(v);
    assert_int_equal(v->n, 5);
    assert_memory_equal(v->p, "hello", 5);
    assert_int_equal(((const char *)v->p)[5], '\0');
    assert_ptr_not_equal(v->p, buf);

    /* a counted text that is not NUL-terminated in the source */
    char raw[6] = {'a', 'b', 'c', 'd', 'e', 'f'};
    dw_value tv = dw_text_n(raw, 3);
    assert_int_equal(dw_row_set(row, "n", &tv), DW_OK);
    raw[0] = 'z';
    v = dw_row_get(row, "n");
    assert_int_equal(v->type, DW_TYPE_TEXT);
    assert_int_equal(v->n, 3);
    assert_string_equal((const char *)v->p, "abc");

    /* the empty text is TEXT, not NULL */
    assert_int_equal(dw_row_set_text(row, "e", ""), DW_OK);
    v = dw_row_get(row, "e");
    assert_int_equal(v->type, DW_TYPE_TEXT);
    assert_int_equal(v->n, 0);
    assert_non_null(v->p);
    assert_int_equal(((const char *)v->p)[0], '\0');
    dw_row_free(row);
}

static void test_row_blob_embedded_zeros_and_empty(void **state)
{
    (void)state;
    dw_row *row = NULL;
    unsigned char src[7] = {0, 1, 0, 0, 2, 0, 0};
    const unsigned char want[7] = {0, 1, 0, 0, 2, 0, 0};
    assert_int_equal(dw_row_new(&row), DW_OK);
    assert_int_equal(dw_row_set_blob(row, "b", src, 7), DW_OK);
    memset(src, 0xAA, sizeof src);
    const dw_value *v = dw_row_get(row, "b");
    assert_int_equal(v->type, DW_TYPE_BLOB);
    assert_int_equal(v->n, 7);
    assert_memory_equal(v->p, want, 7);

    /* empty blob through both entry points */
    assert_int_equal(dw_row_set_blob(row, "e1", NULL, 0), DW_OK);
    v = dw_row_get(row, "e1");
    assert_int_equal(v->type, DW_TYPE_BLOB);
    assert_int_equal(v->n, 0);
    dw_value bv = dw_blob(NULL, 0);
    assert_int_equal(dw_row_set(row, "e2", &bv), DW_OK);
    v = dw_row_get(row, "e2");
    assert_int_equal(v->type, DW_TYPE_BLOB);
    assert_int_equal(v->n, 0);
    /* an empty blob equals an empty blob and differs from the empty text */
    dw_value et = dw_text("");
    assert_int_equal(dw_value_equal(dw_row_get(row, "e1"), dw_row_get(row, "e2")), 1);
    assert_int_equal(dw_value_equal(dw_row_get(row, "e1"), &et), 0);
    dw_row_free(row);
}

static void test_row_clear_and_reuse(void **state)
{
    (void)state;
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    assert_int_equal(dw_row_set_int(row, "a", 1), DW_OK);
    assert_int_equal(dw_row_set_text(row, "b", "x"), DW_OK);
    dw_row_clear(row);
    assert_int_equal(dw_row_count(row), 0);
    assert_int_equal(dw_row_find(row, "a"), -1);
    assert_null(dw_row_get(row, "b"));
    assert_int_equal(dw_row_set_text(row, "b", "again"), DW_OK);
    assert_int_equal(dw_row_count(row), 1);
    assert_string_equal(dw_row_name(row, 0), "b");
    assert_string_equal((const char *)dw_row_get(row, "b")->p, "again");
    dw_row_clear(NULL); /* no-op */
    dw_row_free(row);
}

/* A row refilled in another order: a name set again replaces its value
 * instead of appending a second column of that name, wherever the names
 * kept from the fill before stood; and names are found wherever asked. */
static void test_row_refill_other_order(void **state)
{
    (void)state;
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    assert_int_equal(dw_row_set_int(row, "a", 1), DW_OK);
    assert_int_equal(dw_row_set_int(row, "b", 2), DW_OK);
    assert_int_equal(dw_row_set_int(row, "c", 3), DW_OK);
    dw_row_clear(row);
    /* "c" where "a" was, "b" where it was, "c" again: replaced. */
    assert_int_equal(dw_row_set_int(row, "c", 30), DW_OK);
    assert_int_equal(dw_row_set_int(row, "b", 20), DW_OK);
    assert_int_equal(dw_row_set_int(row, "c", 31), DW_OK);
    assert_int_equal(dw_row_count(row), 2);
    assert_true(dw_row_get(row, "c")->i == 31);
    assert_true(dw_row_get(row, "b")->i == 20);
    assert_null(dw_row_get(row, "a"));
    /* The first order again, and one name more. */
    dw_row_clear(row);
    const char *names[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++)
        assert_int_equal(dw_row_set_int(row, names[i], i), DW_OK);
    for (int i = 0; i < 4; i++)
        assert_int_equal(dw_row_set_int(row, names[i], 10 + i), DW_OK);
    assert_int_equal(dw_row_count(row), 4);
    /* Found in order, backwards, skipping, and absent. */
    for (int i = 0; i < 4; i++)
        assert_int_equal(dw_row_find(row, names[i]), i);
    for (int i = 3; i >= 0; i--)
        assert_int_equal(dw_row_find(row, names[i]), i);
    assert_int_equal(dw_row_find(row, "c"), 2);
    assert_int_equal(dw_row_find(row, "a"), 0);
    assert_int_equal(dw_row_find(row, "e"), -1);
    assert_int_equal(dw_row_find(row, "b"), 1);
    assert_true(dw_row_get(row, "d")->i == 13);
    /* Fewer columns after a clear: the rest are not found. */
    dw_row_clear(row);
    assert_int_equal(dw_row_set_int(row, "a", 5), DW_OK);
    assert_int_equal(dw_row_find(row, "a"), 0);
    assert_int_equal(dw_row_find(row, "b"), -1);
    assert_int_equal(dw_row_count(row), 1);
    dw_row_free(row);
}

/* Outstanding allocations through SQLite's allocator (the library's go
 * there too); resets the high-water mark when `reset`. */
static sqlite3_int64 allocations(sqlite3_int64 *high, int reset)
{
    sqlite3_int64 cur = 0, hi = 0;
    sqlite3_status64(SQLITE_STATUS_MALLOC_COUNT, &cur, &hi, reset);
    if (high)
        *high = hi;
    return cur;
}

static void test_row_reuse_keeps_storage(void **state)
{
    (void)state;
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    assert_int_equal(dw_row_set_text(row, "title", "first title"), DW_OK);
    assert_int_equal(dw_row_set_text(row, "status", "resolved"), DW_OK);
    assert_int_equal(dw_row_set_int(row, "id", 7), DW_OK);
    /* Filled again in the same shape, with values no longer than before:
     * nothing is allocated, not even for a moment. */
    dw_row_clear(row);
    sqlite3_int64 before = allocations(NULL, 1), high;
    assert_int_equal(dw_row_set_text(row, "title", "second"), DW_OK);
    assert_int_equal(dw_row_set_text(row, "status", "open"), DW_OK);
    assert_int_equal(dw_row_set_int(row, "id", 8), DW_OK);
    assert_int_equal(allocations(&high, 0), before);
    assert_int_equal(high, before);
    assert_int_equal(dw_row_count(row), 3);
    assert_string_equal((const char *)dw_row_get(row, "title")->p, "second");
    assert_int_equal(dw_row_get(row, "title")->n, 6);
    assert_string_equal((const char *)dw_row_get(row, "status")->p, "open");
    assert_true(dw_row_get(row, "id")->i == 8);

    /* Another shape after a clear: names replaced, values right. */
    dw_row_clear(row);
    assert_int_equal(dw_row_set_int(row, "other", 1), DW_OK);
    assert_int_equal(dw_row_set_text(row, "status", "a longer status text"),
                     DW_OK);
    assert_int_equal(dw_row_count(row), 2);
    assert_string_equal(dw_row_name(row, 0), "other");
    assert_null(dw_row_get(row, "title"));
    assert_string_equal((const char *)dw_row_get(row, "status")->p,
                        "a longer status text");
    /* A value set from the row itself. */
    assert_int_equal(dw_row_set(row, "status", dw_row_get(row, "status")),
                     DW_OK);
    assert_string_equal((const char *)dw_row_get(row, "status")->p,
                        "a longer status text");
    /* A text that was a blob in the same slot, and the reverse. */
    dw_row_clear(row);
    assert_int_equal(dw_row_set_blob(row, "other", "\0\1\2", 3), DW_OK);
    assert_int_equal(dw_row_set_null(row, "status"), DW_OK);
    assert_int_equal(dw_row_get(row, "other")->type, DW_TYPE_BLOB);
    assert_int_equal(dw_row_get(row, "other")->n, 3);
    assert_memory_equal(dw_row_get(row, "other")->p, "\0\1\2", 3);
    assert_int_equal(dw_row_get(row, "status")->type, DW_TYPE_NULL);
    assert_null(dw_row_get(row, "status")->p);

    /* A large value is not kept by a clear. */
    static char big[10000];
    memset(big, 'x', sizeof big - 1);
    assert_int_equal(dw_row_set_text(row, "other", big), DW_OK);
    sqlite3_int64 with_big = sqlite3_memory_used();
    dw_row_clear(row);
    assert_true(sqlite3_memory_used() <= with_big - 9999);
    dw_row_free(row);
}

/* Names are looked up from where the last one was found, on past the
 * end and round to the start: every column is found in any order, a
 * mapping that skips the key finds the next one, a missing name is
 * missing however the search wraps. */
static void test_row_find_wraps_from_hint(void **state)
{
    (void)state;
    static const char *const names[] = {"id", "organisation_id", "status",
                                        "incident_status_id", "i"};
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    for (int round = 0; round < 2; round++) {
        dw_row_clear(row);
        for (int i = 0; i < 5; i++)
            assert_int_equal(dw_row_set_int(row, names[i], 10 * round + i),
                             DW_OK);
        /* Every order of lookups, from every starting point. */
        for (int start = 0; start < 5; start++)
            for (int step = 1; step < 5; step++)
                for (int k = 0, i = start; k < 5; k++, i = (i + step) % 5) {
                    assert_int_equal(dw_row_find(row, names[i]), i);
                    assert_true(dw_row_get(row, names[i])->i ==
                                10 * round + i);
                    assert_int_equal(dw_row_find(row, "in"), -1);
                    assert_int_equal(dw_row_find(row, ""), -1);
                }
    }
    /* A name sharing its first byte with every column but matching none. */
    assert_null(dw_row_get(row, "id2"));
    /* A clear leaves nothing to find, whatever the hint was. */
    assert_int_equal(dw_row_find(row, "i"), 4);
    dw_row_clear(row);
    assert_int_equal(dw_row_find(row, "i"), -1);
    assert_int_equal(dw_row_find(row, "id"), -1);
    dw_row_free(row);
}

/* A number or NULL stored where a text was leaves no bytes behind it, a
 * text stored after it has its own; a big text set again under a name
 * already in the row is still given back by the clear. */
static void test_row_slot_changes_kind(void **state)
{
    (void)state;
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    assert_int_equal(dw_row_set_text(row, "a", "some text"), DW_OK);
    assert_int_equal(dw_row_set_float(row, "b", 2.5), DW_OK);
    dw_row_clear(row);
    assert_int_equal(dw_row_set_int(row, "a", -3), DW_OK);
    assert_int_equal(dw_row_set_text(row, "b", "now text"), DW_OK);
    const dw_value *a = dw_row_get(row, "a"), *b = dw_row_get(row, "b");
    assert_int_equal(a->type, DW_TYPE_INTEGER);
    assert_true(a->i == -3);
    assert_null(a->p);
    assert_int_equal(a->n, 0);
    assert_int_equal(b->type, DW_TYPE_TEXT);
    assert_string_equal((const char *)b->p, "now text");
    assert_int_equal(b->n, 8);
    dw_row_clear(row);
    assert_int_equal(dw_row_set_float(row, "a", 0.25), DW_OK);
    assert_int_equal(dw_row_set_null(row, "b"), DW_OK);
    assert_true(dw_row_get(row, "a")->f == 0.25);
    assert_null(dw_row_get(row, "b")->p);
    assert_int_equal(dw_row_get(row, "b")->n, 0);

    static char big[10000];
    memset(big, 'y', sizeof big - 1);
    assert_int_equal(dw_row_set_text(row, "a", big), DW_OK); /* in place */
    assert_int_equal(dw_row_count(row), 2);
    sqlite3_int64 with_big = sqlite3_memory_used();
    dw_row_clear(row);
    assert_true(sqlite3_memory_used() <= with_big - 9999);
    dw_row_free(row);
}

static void test_row_set_columns_from_stmt(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, "CREATE TABLE s(i INTEGER, f REAL, t TEXT, b BLOB, n);"
                  "INSERT INTO s VALUES(42, 1.5, 'txt', x'00ff0001', NULL);");
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(t.db,
                         "SELECT i, f, t, b, n AS nul FROM s", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);

    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    assert_int_equal(dw_row_set_int(row, "pre", 1), DW_OK);
    assert_int_equal(dw_sqlite_row_set_columns(row, st), DW_OK);
    sqlite3_finalize(st); /* the row must not point into the statement */

    assert_int_equal(dw_row_count(row), 6);
    assert_string_equal(dw_row_name(row, 0), "pre");
    assert_string_equal(dw_row_name(row, 1), "i");
    assert_string_equal(dw_row_name(row, 5), "nul");
    const dw_value *v = dw_row_get(row, "i");
    assert_int_equal(v->type, DW_TYPE_INTEGER);
    assert_true(v->i == 42);
    v = dw_row_get(row, "f");
    assert_int_equal(v->type, DW_TYPE_FLOAT);
    assert_true(v->f == 1.5);
    v = dw_row_get(row, "t");
    assert_int_equal(v->type, DW_TYPE_TEXT);
    assert_int_equal(v->n, 3);
    assert_string_equal((const char *)v->p, "txt");
    v = dw_row_get(row, "b");
    assert_int_equal(v->type, DW_TYPE_BLOB);
    assert_int_equal(v->n, 4);
    assert_memory_equal(v->p, "\x00\xff\x00\x01", 4);
    v = dw_row_get(row, "nul");
    assert_int_equal(v->type, DW_TYPE_NULL);
    /* Filled again into the same row: the same values, nothing doubled. */
    assert_int_equal(sqlite3_prepare_v2(t.db,
                         "SELECT i, f, t, b, n AS nul FROM s", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    dw_row_clear(row);
    assert_int_equal(dw_sqlite_row_set_columns(row, st), DW_OK);
    sqlite3_finalize(st);
    assert_int_equal(dw_row_count(row), 5);
    assert_string_equal((const char *)dw_row_get(row, "t")->p, "txt");
    assert_memory_equal(dw_row_get(row, "b")->p, "\x00\xff\x00\x01", 4);
    /* A column without a name is refused, as dw_row_set() refuses one. */
    assert_int_equal(sqlite3_prepare_v2(t.db, "SELECT 1 AS \"\"", -1, &st,
                                        NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    dw_row_clear(row);
    assert_int_equal(dw_sqlite_row_set_columns(row, st), DW_EMISUSE);
    sqlite3_finalize(st);
    dw_row_free(row);
    test_db_close(&t);
}

/* dw_sqlite_bind_values() binds each value by its type from parameter `first`
 * on, copying the bytes; bad arguments are DW_EMISUSE and an index past
 * the last parameter too. */
static void test_bind_values(void **state)
{
    (void)state;
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT ?1, typeof(?2), ?2, ?3, "
                                        "hex(?4), length(CAST(?4 AS BLOB)), "
                                        "typeof(?5), ?6",
                                        -1, &st, NULL),
                     SQLITE_OK);
    char text[] = "temporary";
    dw_value v[5] = {dw_float(2.5), dw_text_n(text, 4), dw_blob("a\0b", 3),
                     dw_null(), dw_text(text)};
    dw_value first = dw_int(-7);
    assert_int_equal(dw_sqlite_bind_values(st, 1, &first, 1), DW_OK);
    assert_int_equal(dw_sqlite_bind_values(st, 2, v, 5), DW_OK);
    assert_int_equal(dw_sqlite_bind_values(st, 3, v, 0), DW_OK); /* nothing */
    memset(text, 'x', sizeof text - 1); /* copied: the bind keeps "temp" */
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(st, 0), -7);
    assert_string_equal((const char *)sqlite3_column_text(st, 1), "real");
    assert_true(sqlite3_column_double(st, 2) == 2.5);
    assert_string_equal((const char *)sqlite3_column_text(st, 3), "temp");
    assert_string_equal((const char *)sqlite3_column_text(st, 4), "610062");
    assert_int_equal(sqlite3_column_int(st, 5), 3);
    assert_string_equal((const char *)sqlite3_column_text(st, 6), "null");
    assert_string_equal((const char *)sqlite3_column_text(st, 7),
                        "temporary");
    /* A running statement is not rebound. */
    assert_int_equal(dw_sqlite_bind_values(st, 1, &first, 1), DW_EMISUSE);
    sqlite3_reset(st);

    dw_value bad = dw_int(1);
    bad.type = (dw_type)42;
    dw_value null_text = {DW_TYPE_TEXT, 0, 0.0, NULL, 5};
    assert_int_equal(dw_sqlite_bind_values(NULL, 1, &first, 1), DW_EMISUSE);
    assert_int_equal(dw_sqlite_bind_values(st, 1, NULL, 1), DW_EMISUSE);
    assert_int_equal(dw_sqlite_bind_values(st, 1, NULL, 0), DW_OK);
    assert_int_equal(dw_sqlite_bind_values(st, 1, &first, -1), DW_EMISUSE);
    assert_int_equal(dw_sqlite_bind_values(st, 0, &first, 1), DW_EMISUSE);
    assert_int_equal(dw_sqlite_bind_values(st, 1, &bad, 1), DW_EMISUSE);
    assert_int_equal(dw_sqlite_bind_values(st, 1, &null_text, 1), DW_EMISUSE);
    assert_int_equal(dw_sqlite_bind_values(st, 8, &first, 1), DW_EMISUSE);
    assert_int_equal(dw_sqlite_bind_values(st, 4, v, 5), DW_EMISUSE); /* ?4..?8 */
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static void test_row_misuse(void **state)
{
    (void)state;
    dw_row *row = NULL;
    dw_value v = dw_int(1);
    assert_int_equal(dw_row_new(NULL), DW_EMISUSE);
    assert_int_equal(dw_row_new(&row), DW_OK);
    assert_int_equal(dw_row_set_int(row, "keep", 5), DW_OK);

    assert_int_equal(dw_row_set(NULL, "a", &v), DW_EMISUSE);
    assert_int_equal(dw_row_set(row, NULL, &v), DW_EMISUSE);
    assert_int_equal(dw_row_set(row, "", &v), DW_EMISUSE);
    assert_int_equal(dw_row_set_int(NULL, "a", 1), DW_EMISUSE);
    assert_int_equal(dw_row_set_int(row, NULL, 1), DW_EMISUSE);
    assert_int_equal(dw_row_set_int(row, "", 1), DW_EMISUSE);
    assert_int_equal(dw_row_set_float(NULL, "a", 1.0), DW_EMISUSE);
    assert_int_equal(dw_row_set_float(row, "", 1.0), DW_EMISUSE);
    assert_int_equal(dw_row_set_text(NULL, "a", "x"), DW_EMISUSE);
    assert_int_equal(dw_row_set_text(row, NULL, "x"), DW_EMISUSE);
    assert_int_equal(dw_row_set_text(row, "", "x"), DW_EMISUSE);
    assert_int_equal(dw_row_set_blob(NULL, "a", "x", 1), DW_EMISUSE);
    assert_int_equal(dw_row_set_blob(row, "", "x", 1), DW_EMISUSE);
    assert_int_equal(dw_row_set_null(NULL, "a"), DW_EMISUSE);
    assert_int_equal(dw_row_set_null(row, NULL), DW_EMISUSE);
    assert_int_equal(dw_row_set_null(row, ""), DW_EMISUSE);

    dw_value bad = dw_int(1);
    bad.type = 0;
    assert_int_equal(dw_row_set(row, "a", &bad), DW_EMISUSE);
    bad.type = 6;
    assert_int_equal(dw_row_set(row, "a", &bad), DW_EMISUSE);
    bad.type = -3;
    assert_int_equal(dw_row_set(row, "a", &bad), DW_EMISUSE);
    /* a bad value for an existing column leaves it alone */
    bad.type = 99;
    assert_int_equal(dw_row_set(row, "keep", &bad), DW_EMISUSE);

    /* the row is unchanged by every failed call */
    assert_int_equal(dw_row_count(row), 1);
    assert_int_equal(dw_row_get(row, "keep")->type, DW_TYPE_INTEGER);
    assert_true(dw_row_get(row, "keep")->i == 5);

    /* NULL handling of the accessors */
    assert_int_equal(dw_row_count(NULL), 0);
    assert_null(dw_row_name(NULL, 0));
    assert_null(dw_row_value(NULL, 0));
    assert_null(dw_row_get(NULL, "keep"));
    assert_null(dw_row_get(row, NULL));
    dw_row_clear(NULL);
    dw_row_free(NULL);
    dw_row_free(row);
}

/* A BLOB has no terminator to count to: a negative length (which a TEXT
 * may give as -1) makes the value malformed. dw_row_set() and
 * dw_row_set_blob() refuse it and leave the row as it was; dw_blob() never
 * makes one. */
static void test_row_blob_negative_length(void **state)
{
    (void)state;
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    assert_int_equal(dw_row_set_blob(row, "keep", "ab", 2), DW_OK);
    static const int lengths[] = {-1, -2, INT32_MIN};
    for (size_t i = 0; i < sizeof lengths / sizeof *lengths; i++) {
        dw_value bad = dw_blob("abc", 3);
        bad.n = lengths[i];
        assert_int_equal(dw_row_set(row, "fresh", &bad), DW_EMISUSE);
        assert_int_equal(dw_row_set(row, "keep", &bad), DW_EMISUSE);
        assert_int_equal(dw_row_set_blob(row, "fresh", "abc", lengths[i]),
                         DW_EMISUSE);
        /* The constructor never makes one: it gives an empty blob. */
        assert_int_equal(dw_blob("abc", lengths[i]).n, 0);
    }
    assert_int_equal(dw_row_count(row), 1);
    const dw_value *v = dw_row_get(row, "keep");
    assert_int_equal(v->type, DW_TYPE_BLOB);
    assert_int_equal(v->n, 2);
    assert_memory_equal(v->p, "ab", 2);
    /* A text may say -1 (NUL-terminated); a blob saying so is refused. */
    dw_value text = {DW_TYPE_TEXT, 0, 0.0, "xyz", -1};
    assert_int_equal(dw_row_set(row, "t", &text), DW_OK);
    assert_int_equal(dw_row_get(row, "t")->n, 3);
    dw_row_free(row);
}

/* ---- values ---------------------------------------------------------------- */

static void test_value_constructors(void **state)
{
    (void)state;
    dw_value v = dw_int(-5);
    assert_int_equal(v.type, DW_TYPE_INTEGER);
    assert_true(v.i == -5);
    v = dw_int(INT64_MAX);
    assert_true(v.i == INT64_MAX);

    v = dw_float(3.25);
    assert_int_equal(v.type, DW_TYPE_FLOAT);
    assert_true(v.f == 3.25);

    const char *s = "abc";
    v = dw_text(s);
    assert_int_equal(v.type, DW_TYPE_TEXT);
    assert_ptr_equal(v.p, s); /* copies nothing */
    assert_true(v.n == 3 || v.n == -1);

    v = dw_text(NULL);
    assert_int_equal(v.type, DW_TYPE_NULL);

    v = dw_text_n("abcdef", 4);
    assert_int_equal(v.type, DW_TYPE_TEXT);
    assert_int_equal(v.n, 4);
    v = dw_text_n(NULL, 3);
    assert_int_equal(v.type, DW_TYPE_NULL);

    const unsigned char b[2] = {0, 1};
    v = dw_blob(b, 2);
    assert_int_equal(v.type, DW_TYPE_BLOB);
    assert_ptr_equal(v.p, b);
    assert_int_equal(v.n, 2);
    v = dw_blob(NULL, 0);
    assert_int_equal(v.type, DW_TYPE_BLOB);
    assert_int_equal(v.n, 0);

    v = dw_null();
    assert_int_equal(v.type, DW_TYPE_NULL);

    /* storage classes are SQLite's numbers */
    assert_int_equal(DW_TYPE_INTEGER, SQLITE_INTEGER);
    assert_int_equal(DW_TYPE_FLOAT, SQLITE_FLOAT);
    assert_int_equal(DW_TYPE_TEXT, SQLITE_TEXT);
    assert_int_equal(DW_TYPE_BLOB, SQLITE_BLOB);
    assert_int_equal(DW_TYPE_NULL, SQLITE_NULL);
}

static void test_value_equal(void **state)
{
    (void)state;
    dw_value n1 = dw_null(), n2 = dw_null();
    dw_value i1 = dw_int(1), i1b = dw_int(1), i2 = dw_int(2);
    dw_value f1 = dw_float(1.0), f15 = dw_float(1.5), f15b = dw_float(1.5);
    dw_value t1 = dw_text("1");
    dw_value empty = dw_text("");
    dw_value tab = dw_text("ab"), tab2 = dw_text_n("abc", 2), tabc = dw_text("abc");
    dw_value bab = dw_blob("ab", 2);
    dw_value bx = dw_blob("\x00\x01", 2), by = dw_blob("\x00\x02", 2);
    dw_value bx2 = dw_blob("\x00\x01", 2), bshort = dw_blob("\x00", 1);
    dw_value eb = dw_blob(NULL, 0);
    dw_value tA = dw_text("A"), ta = dw_text("a");

    assert_int_equal(dw_value_equal(&n1, &n2), 1);       /* NULL == NULL */
    assert_int_equal(dw_value_equal(&i1, &i1b), 1);
    assert_int_equal(dw_value_equal(&i1, &f1), 1);       /* 1 == 1.0 */
    assert_int_equal(dw_value_equal(&f1, &i1), 1);
    assert_int_equal(dw_value_equal(&f15, &f15b), 1);
    assert_int_equal(dw_value_equal(&i1, &f15), 0);
    assert_int_equal(dw_value_equal(&i1, &i2), 0);       /* int vs int */
    assert_int_equal(dw_value_equal(&i1, &t1), 0);       /* 1 != '1' */
    assert_int_equal(dw_value_equal(&t1, &i1), 0);
    assert_int_equal(dw_value_equal(&f1, &t1), 0);
    assert_int_equal(dw_value_equal(&n1, &empty), 0);    /* NULL != '' */
    assert_int_equal(dw_value_equal(&empty, &n1), 0);
    assert_int_equal(dw_value_equal(&n1, &i1), 0);
    assert_int_equal(dw_value_equal(&tab, &tab2), 1);    /* n -1 vs counted */
    assert_int_equal(dw_value_equal(&tab, &tabc), 0);
    assert_int_equal(dw_value_equal(&tab, &bab), 0);     /* text vs blob */
    assert_int_equal(dw_value_equal(&bab, &tab), 0);
    assert_int_equal(dw_value_equal(&bx, &bx2), 1);
    assert_int_equal(dw_value_equal(&bx, &by), 0);       /* blob bytes */
    assert_int_equal(dw_value_equal(&bx, &bshort), 0);
    assert_int_equal(dw_value_equal(&eb, &empty), 0);
    assert_int_equal(dw_value_equal(&eb, &n1), 0);
    assert_int_equal(dw_value_equal(&tA, &ta), 0);       /* no collation */
    assert_int_equal(dw_value_equal(NULL, NULL), 1);
    assert_int_equal(dw_value_equal(&i1, NULL), 0);
    assert_int_equal(dw_value_equal(NULL, &n1), 0);
}

/* ---- error strings and version --------------------------------------------- */

static void test_errstr(void **state)
{
    (void)state;
    const int codes[] = {DW_OK,         DW_ERROR,     DW_EMISUSE,   DW_ENOMEM,
                         DW_EBUSY,      DW_ENOTFOUND, DW_ESCHEMA,   DW_ESPEC,
                         DW_EMISMATCH,  DW_ECONSTRAINT, DW_ECALLBACK, DW_EGATE,
                         DW_ECORRUPT,   DW_EROLLEDBACK, DW_ENOCOMPARE,
                         DW_MORE};
    const int n = (int)(sizeof codes / sizeof codes[0]);
    const char *unknown = dw_errstr(12345);
    assert_non_null(unknown);
    assert_string_equal(unknown, "unknown error");
    assert_string_equal(dw_errstr(-99), "unknown error");
    assert_string_equal(dw_errstr(2), "unknown error");
    for (int a = 0; a < n; a++) {
        const char *s = dw_errstr(codes[a]);
        assert_non_null(s);
        assert_true(strlen(s) > 0);
        assert_string_not_equal(s, unknown);
        for (int b = 0; b < a; b++)
            assert_string_not_equal(s, dw_errstr(codes[b]));
    }
}

static void test_version(void **state)
{
    (void)state;
    assert_non_null(dw_version());
    assert_string_equal(dw_version(), DW_VERSION);
    assert_int_equal(dw_version_number(), DW_VERSION_NUMBER);
    char buf[32];
    snprintf(buf, sizeof buf, "%d.%d.%d", DW_VERSION_MAJOR, DW_VERSION_MINOR,
             DW_VERSION_PATCH);
    assert_string_equal(buf, DW_VERSION);
}

int main(void)
{
    library_memory_in_sqlite();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_row_new_empty),
        cmocka_unit_test(test_row_set_get_find),
        cmocka_unit_test(test_row_set_generic_and_null_value),
        cmocka_unit_test(test_row_set_replaces_in_place),
        cmocka_unit_test(test_row_text_is_copied),
        cmocka_unit_test(test_row_blob_embedded_zeros_and_empty),
        cmocka_unit_test(test_row_clear_and_reuse),
        cmocka_unit_test(test_row_reuse_keeps_storage),
        cmocka_unit_test(test_row_find_wraps_from_hint),
        cmocka_unit_test(test_row_slot_changes_kind),
        cmocka_unit_test(test_row_refill_other_order),
        cmocka_unit_test(test_row_set_columns_from_stmt),
        cmocka_unit_test(test_bind_values),
        cmocka_unit_test(test_row_misuse),
        cmocka_unit_test(test_row_blob_negative_length),
        cmocka_unit_test(test_value_constructors),
        cmocka_unit_test(test_value_equal),
        cmocka_unit_test(test_errstr),
        cmocka_unit_test(test_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
