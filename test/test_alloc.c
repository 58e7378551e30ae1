/* The core's own primitives, free of SQLite: the allocator hook
 * (dw_set_allocator, dw_free), number formatting against SQLite's
 * "%!.17g", quoting against SQLite's "%q", ASCII case-insensitive
 * compares against sqlite3_strnicmp, and formatted text. */
#include "support.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- a counting allocator ------------------------------------------------ */

typedef struct counts {
    long mallocs, reallocs, frees, live;
    int fail; /* 1: every malloc fails */
} counts;

static void *count_malloc(size_t n, void *payload)
{
    counts *c = payload;
    if (c->fail)
        return NULL;
    c->mallocs++;
    c->live++;
    return malloc(n);
}

static void *count_realloc(void *p, size_t n, void *payload)
{
    counts *c = payload;
    assert_non_null(p); /* the library never reallocs NULL */
    c->reallocs++;
    return realloc(p, n);
}

static void count_free(void *p, void *payload)
{
    counts *c = payload;
    assert_non_null(p); /* dw_free(NULL) never reaches the allocator */
    c->frees++;
    c->live--;
    free(p);
}

static void install_counting(counts *c)
{
    const char *why = "not set";
    dw_allocator a = DW_ALLOCATOR_INIT;
    a.malloc = count_malloc;
    a.realloc = count_realloc;
    a.free = count_free;
    a.payload = c;
    assert_int_equal(dw_set_allocator(&a, &why), DW_OK);
    assert_null(why);
}

static void restore_default(void)
{
    const char *why = NULL;
    if (dw_set_allocator(NULL, &why) != DW_OK)
        fail_msg("dw_set_allocator(NULL): %s", why);
}

static void items_options(dw_options *o)
{
    static const char *const key[] = {"id"};
    static const dw_column_map up[] = {{"label", "upper(name)"}};
    static const dw_column_map down[] = {{"name", "lower(label)"}};
    dw_options init = DW_OPTIONS_INIT;
    *o = init;
    o->name = "items_v2";
    o->old_side.table = "items";
    o->old_side.key_columns = key;
    o->old_side.nkey_columns = 1;
    o->new_side.table = "items_v2";
    o->new_side.key_columns = key;
    o->new_side.nkey_columns = 1;
    o->up = up;
    o->nup = 1;
    o->down = down;
    o->ndown = 1;
}

static sqlite3 *items_db(void)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    exec_ok(db, "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT);"
                "CREATE TABLE items_v2 (id INTEGER PRIMARY KEY, label TEXT);"
                "INSERT INTO items VALUES (1, 'a'), (2, 'b');");
    return db;
}

/* Every allocation of a handle's life goes through the installed
 * allocator, and all of it comes back by dw_close() and dw_free(). */
static void test_counting_allocator_sees_the_library(void **state)
{
    (void)state;
    counts c = {0};
    install_counting(&c);
    sqlite3 *db = items_db();
    dw_options o;
    items_options(&o);
    dw_migration *h = NULL;
    char *err = NULL;
    assert_int_equal(dw_sqlite_open(&h, db, &o, &err), DW_OK);
    assert_null(err);
    assert_true(c.mallocs > 0);
    long opened = c.mallocs;
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    dw_value key = dw_int(1);
    assert_dw_ok(h, dw_read(row, h, &key, 1, NULL, NULL, NULL));
    assert_true(c.mallocs > opened);
    dw_row_free(row);
    dw_close(h);
    assert_int_equal(c.live, 0);

    /* A refusal's message is library memory: dw_free() hands it back. */
    o.new_side.table = "no_such_table";
    assert_int_equal(dw_sqlite_open(&h, db, &o, &err), DW_ESCHEMA);
    assert_non_null(err);
    assert_true(c.live > 0);
    long frees = c.frees;
    dw_free(err);
    assert_int_equal(c.frees, frees + 1);
    assert_int_equal(c.live, 0);
    dw_free(NULL); /* harmless, never reaches the allocator */
    assert_int_equal(c.frees, frees + 1);

    sqlite3_close(db);
    restore_default();
}

/* An allocator that gives nothing: the library says so, and holds
 * nothing afterwards. */
static void test_failing_allocator(void **state)
{
    (void)state;
    counts c = {0};
    c.fail = 1;
    install_counting(&c);
    sqlite3 *db = items_db();
    dw_options o;
    items_options(&o);
    dw_migration *h = NULL;
    assert_int_equal(dw_sqlite_open(&h, db, &o, NULL), DW_ENOMEM);
    assert_null(h);
    assert_int_equal(c.live, 0);
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_ENOMEM);
    sqlite3_close(db);
    restore_default();
}

/* Bad structs and a switch while memory is held are refused with their
 * reason, and the allocator in use stays. */
static void test_bad_allocators_refused(void **state)
{
    (void)state;
    counts c = {0};
    dw_allocator a = DW_ALLOCATOR_INIT;
    a.malloc = count_malloc;
    a.realloc = count_realloc;
    a.free = count_free;
    a.payload = &c;
    const char *why = NULL;
    static const struct {
        int field;
        const char *says;
    } missing[] = {{0, "the malloc function is NULL"},
                   {1, "the realloc function is NULL"},
                   {2, "the free function is NULL"}};
    for (size_t i = 0; i < sizeof missing / sizeof *missing; i++) {
        dw_allocator bad = a;
        if (missing[i].field == 0)
            bad.malloc = NULL;
        else if (missing[i].field == 1)
            bad.realloc = NULL;
        else
            bad.free = NULL;
        assert_int_equal(dw_set_allocator(&bad, &why), DW_EMISUSE);
        assert_non_null(strstr(why, missing[i].says));
    }
    dw_allocator old = a;
    old.version = 0;
    assert_int_equal(dw_set_allocator(&old, &why), DW_EMISUSE);
    assert_non_null(strstr(why, "unknown version"));
    assert_non_null(strstr(why, "DW_ALLOCATOR_VERSION"));

    /* Memory held: a row of the default allocator. */
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    assert_int_equal(dw_set_allocator(&a, &why), DW_EMISUSE);
    assert_non_null(strstr(why, "still held"));
    assert_int_equal(dw_row_set_text(row, "t", "kept"), DW_OK);
    assert_int_equal(c.mallocs, 0); /* never installed */
    dw_row_free(row);
    install_counting(&c); /* nothing held now */
    restore_default();
}

/* ---- formatting ------------------------------------------------------------ */

static void assert_double_as_sqlite(double v)
{
    char ours[DW__DOUBLE_TEXT];
    dw__format_double(ours, v);
    char *theirs = sqlite3_mprintf("%!.17g", v);
    assert_non_null(theirs);
    if (strcmp(ours, theirs) != 0)
        print_error("%a: ours %s, SQLite's %s\n", v, ours, theirs);
    assert_string_equal(ours, theirs);
    sqlite3_free(theirs);
}

static uint64_t next_bits(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* The double next to v (v > 0) downwards (-1) or upwards (1). */
static double neighbour(double v, int step)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    bits += (uint64_t)(int64_t)step;
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* The texts keys and values were shown in stay the same. */
static void test_format_double_matches_sqlite(void **state)
{
    (void)state;
    static const double fixed[] = {
        0.0, -0.0, 1.0, -1.0, 0.1, 0.5, 2.5, 1e300, -1e300, 1e-300, 1e16,
        1e17, 1e15, 123456789012345678.0, 1e-4, 1e-5, 0.000123, 100.0, 1e21,
        1e22, 1.0 / 3, 2.0 / 3, DBL_MAX, -DBL_MAX, DBL_MIN, 5e-324, 9.5, 99.5,
        9007199254740993.0, 3.14159, 1e100, 1.5e-300, 0.3, 1e308, 4.35,
        INFINITY, -INFINITY, NAN};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        assert_double_as_sqlite(fixed[i]);
    char nan_text[DW__DOUBLE_TEXT];
    dw__format_double(nan_text, -NAN);
    assert_string_equal(nan_text, "NaN");
    /* Powers of ten and their neighbours, where rounding carries. */
    for (int e = -320; e <= 308; e++) {
        char text[16];
        snprintf(text, sizeof text, "1e%d", e);
        double p = strtod(text, NULL);
        assert_double_as_sqlite(p);
        assert_double_as_sqlite(-neighbour(p, -1));
        assert_double_as_sqlite(neighbour(p, 1));
    }
    /* Random bit patterns (every exponent), and small decimals. */
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 200000; i++) {
        uint64_t bits = next_bits(&s);
        double v;
        memcpy(&v, &bits, sizeof v);
        if (!isnan(v))
            assert_double_as_sqlite(v);
        assert_double_as_sqlite((double)(int64_t)(bits % 2000001) / 1000.0 -
                                1000.0);
    }
}

static void test_quoted_matches_sqlite(void **state)
{
    (void)state;
    static const char *const texts[] = {"", "plain", "it's", "''", "a'b'c'",
                                        "\xc3\xa9t\xc3\xa9 'x'"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        for (int n = 0; n <= (int)strlen(texts[i]) + 1; n++) {
            dw_buf b;
            dw_buf_init(&b);
            dw_buf_quoted(&b, texts[i], (size_t)n);
            char *ours = dw_buf_take(&b);
            char *theirs = sqlite3_mprintf("%.*q", n, texts[i]);
            assert_string_equal(ours, theirs);
            dw__free(ours);
            sqlite3_free(theirs);
        }
}

static int sign(int x) { return (x > 0) - (x < 0); }

static void test_nocase_compare_matches_sqlite(void **state)
{
    (void)state;
    static const char *const words[] = {
        "", "a", "A", "abc", "ABC", "abd", "ab", "Z", "_", "[", "@",
        "\xc3\x89", "\xc3\xa9", "items", "ITEMS_v2", "Items_V2", "~"};
    size_t n = sizeof words / sizeof *words;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            assert_int_equal(sign(dw__stricmp(words[i], words[j])),
                             sign(sqlite3_stricmp(words[i], words[j])));
            for (int k = 0; k < 4; k++)
                assert_int_equal(
                    sign(dw__strnicmp(words[i], words[j], (size_t)k)),
                    sign(sqlite3_strnicmp(words[i], words[j], k)));
        }
    assert_int_equal(dw__stricmp(NULL, NULL), 0);
    assert_true(dw__stricmp(NULL, "a") < 0);
    assert_true(dw__stricmp("a", NULL) > 0);
}

static void test_printf_into_library_memory(void **state)
{
    (void)state;
    char *s = dw__mprintf("%s-%d-%05.1f%%", "k", 42, 2.25);
    assert_string_equal(s, "k-42-002.2%");
    dw__free(s);
    s = dw__mprintf("%s", "");
    assert_non_null(s);
    assert_string_equal(s, "");
    dw__free(s);
    dw_buf b;
    dw_buf_init(&b);
    for (int i = 0; i < 1000; i++)
        dw_buf_printf(&b, "%d,", i);
    assert_int_equal(b.len, 3890);
    assert_int_equal(strncmp(b.p + b.len - 4, "999,", 4), 0);
    dw_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counting_allocator_sees_the_library),
        cmocka_unit_test(test_failing_allocator),
        cmocka_unit_test(test_bad_allocators_refused),
        cmocka_unit_test(test_format_double_matches_sqlite),
        cmocka_unit_test(test_quoted_matches_sqlite),
        cmocka_unit_test(test_nocase_compare_matches_sqlite),
        cmocka_unit_test(test_printf_into_library_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
