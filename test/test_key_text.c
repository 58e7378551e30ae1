/* Tests for the core's key-text parser (lib/keytext.c): every text
 * dw__key_text() writes reads back as the same typed values, and every
 * text that is no key is refused with the reason. */
#include "fault.h"
#include "support.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t next_random(void)
{
    /* xorshift64*: reproducible from run to run. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717u;
}

/* The key's text, parsed back: the same values, type for type. */
static void round_trip(const dw_value *key, int nkey)
{
    dw_buf b;
    dw_buf_init(&b);
    dw__key_text(&b, key, nkey);
    assert_false(b.oom);
    dw_value *back = NULL;
    char why[128];
    int rc = dw__key_parse(b.p, b.len, nkey, &back, why, sizeof why);
    if (rc != DW_OK)
        fail_msg("%s: %s", b.p, why);
    for (int i = 0; i < nkey; i++) {
        assert_int_equal(back[i].type, key[i].type);
        if (!dw_value_equal(&back[i], &key[i]))
            fail_msg("%s: value %d read back differs", b.p, i + 1);
    }
    dw__free(back);
    dw_buf_free(&b);
}

static void test_integers(void **state)
{
    (void)state;
    const int64_t edges[] = {0, 1, -1, 42, 9007199254740992LL,
                             9007199254740993LL, -9007199254740993LL,
                             INT64_MAX, INT64_MIN, INT64_MIN + 1};
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) {
        dw_value v = dw_int(edges[i]);
        round_trip(&v, 1);
    }
    for (int i = 0; i < 20000; i++) {
        dw_value v[3] = {dw_int((int64_t)next_random()),
                         dw_int((int64_t)(next_random() >> (i % 64))),
                         dw_int(-(int64_t)(next_random() >> 11))};
        round_trip(v, 3);
    }
}

/* Texts of every byte but NUL that a string may hold: quotes,
 * backslashes, control characters, UTF-8 of one to four bytes, and bytes
 * that are not UTF-8 (SQLite keeps TEXT as given). */
static void test_texts(void **state)
{
    (void)state;
    static const char *const pieces[] = {
        "\"", "\\", "/", "\b", "\f", "\n", "\r", "\t", "\x01", "\x1f", "\x7f",
        "a", "org-7", " ", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
        "\xef\xbf\xbf", "\\u0000", "[1]", ",",
        /* Bytes that are no UTF-8: a key holds them all the same. */
        "\xff", "\xc3", "\xed\xa0\x80", "\xc0\xaf"};
    const int npieces = (int)(sizeof pieces / sizeof *pieces);
    dw_value empty = dw_text("");
    round_trip(&empty, 1);
    for (int i = 0; i < 5000; i++) {
        char text[3][128];
        dw_value key[3];
        for (int k = 0; k < 3; k++) {
            text[k][0] = '\0';
            int n = (int)(next_random() % 12);
            for (int j = 0; j < n; j++)
                strcat(text[k], pieces[next_random() % (uint64_t)npieces]);
            key[k] = dw_text(text[k]);
        }
        key[1] = dw_int((int64_t)next_random());
        round_trip(key, 3);
    }
}

/* Every finite REAL reads back to the last bit: a stored backfill cursor
 * pages on exactly the key it names. (Was a defect: key text took its
 * digits from dw__format_double(), whose long double arithmetic writes a
 * few values past about 1e200 one unit off -- and most values where long
 * double is no wider than double; a backfill whose end key was such a
 * value stopped short of it and reported itself finished.) */
static void test_reals(void **state)
{
    (void)state;
    const double reals[] = {1.5,   2.25,   -0.5, 1e100, 0.1,
                            1e-300, -1e150, 3.0, 5e-324, -2.5e-310,
                            1.0700946103531657e+304, 1.5163051143870499e-05,
                            DBL_MAX, -DBL_MIN, -0.0};
    for (size_t i = 0; i < sizeof reals / sizeof *reals; i++) {
        dw_value v[2] = {dw_float(reals[i]), dw_text("r")};
        round_trip(v, 2);
    }
    for (int i = 0; i < 20000; i++) {
        int64_t m = (int64_t)(next_random() >> 11) - (1LL << 52);
        dw_value v = dw_float((double)m / (double)(1LL << (i % 60)));
        round_trip(&v, 1);
    }
    /* Any bit pattern that is a finite double, huge and tiny included. */
    for (int i = 0; i < 200000; i++) {
        uint64_t bits = next_random();
        double d;
        memcpy(&d, &bits, sizeof d);
        if (!isfinite(d))
            continue;
        dw_value v = dw_float(d);
        round_trip(&v, 1);
    }
}

/* The text is refused as a key of nkey values, saying `needle`. */
static void refused(const char *text, int nkey, const char *needle)
{
    dw_value *vals = (dw_value *)&vals;
    char why[128];
    int rc = dw__key_parse(text, strlen(text), nkey, &vals, why, sizeof why);
    if (rc != DW_ERROR)
        fail_msg("%s: %d, not DW_ERROR", text, rc);
    assert_null(vals);
    if (!strstr(why, needle))
        fail_msg("%s: \"%s\" lacks \"%s\"", text, why, needle);
}

static void test_refusals(void **state)
{
    (void)state;
    refused("", 1, "it is not JSON: expected a value");
    refused("garbage", 1, "it is not JSON: unexpected character");
    refused("[1,]", 1, "it is not JSON");
    refused("[1] x", 1, "unexpected text after the value");
    refused("[[[1]]]", 1, "nested deeper");
    refused("{}", 1, "it is not a JSON array");
    refused("42", 1, "it is not a JSON array");
    refused("\"a\"", 1, "it is not a JSON array");
    refused("[]", 1, "it has 0 values, the key has 1");
    refused("[1,2]", 1, "it has 2 values, the key has 1");
    refused("[\"o\"]", 2, "it has 1 values, the key has 2");
    refused("[null]", 1, "value 1 is not a number or a string");
    refused("[1,true]", 2, "value 2 is not a number or a string");
    refused("[false]", 1, "value 1 is not a number or a string");
    refused("[[1]]", 1, "value 1 is not a number or a string");
    refused("[{}]", 1, "value 1 is not a number or a string");
    refused("[9223372036854775808]", 1, "value 1 is an integer beyond 64 bits");
    refused("[-9223372036854775809]", 1, "is an integer beyond 64 bits");
    refused("[1,99999999999999999999]", 2, "value 2 is an integer beyond");
    refused("[1e999]", 1, "value 1 is a number beyond the range of a REAL");
    refused("[-1.0e400]", 1, "beyond the range of a REAL");
    refused("[1.000000000000000000000000000000000000000000000000000000000000"
            "000001]",
            1, "beyond the range of a REAL");
    refused("[\"a\\u0000b\"]", 1, "value 1 is TEXT holding a NUL");
    refused("[1,\"\\u0000\"]", 2, "value 2 is TEXT holding a NUL");
    refused("[\"\\ud800\"]", 1, "surrogate");
    refused("[1]", 0, "a key has 1 to 64 values, not 0");
    refused("[1]", 65, "a key has 1 to 64 values, not 65");
}

/* Exactly the values written, whatever the JSON around them. */
static void test_values_read(void **state)
{
    (void)state;
    dw_value *v = NULL;
    char why[128];
    const char *text = " [ -7 , \"x\\\"y\" , 0.5 , 1E2 , -0 ] ";
    assert_int_equal(dw__key_parse(text, strlen(text), 5, &v, why, sizeof why),
                     DW_OK);
    assert_int_equal(v[0].type, DW_TYPE_INTEGER);
    assert_int_equal(v[0].i, -7);
    assert_int_equal(v[1].type, DW_TYPE_TEXT);
    assert_int_equal(v[1].n, 3);
    assert_memory_equal(v[1].p, "x\"y", 4); /* NUL-terminated */
    assert_int_equal(v[2].type, DW_TYPE_FLOAT);
    assert_true(v[2].f == 0.5);
    assert_int_equal(v[3].type, DW_TYPE_FLOAT);
    assert_true(v[3].f == 100.0);
    assert_int_equal(v[4].type, DW_TYPE_INTEGER);
    assert_int_equal(v[4].i, 0);
    dw__free(v);
    /* Only len bytes are read. */
    assert_int_equal(dw__key_parse("[12]xyz", 4, 1, &v, why, sizeof why),
                     DW_OK);
    assert_int_equal(v[0].i, 12);
    dw__free(v);
}

/* Every allocation may fail: DW_ENOMEM, nothing returned or kept. */
static void test_out_of_memory(void **state)
{
    (void)state;
    const char *text = "[\"org-7\",3,\"caf\\u00e9\"]";
    fault_mem_install();
    int failures = 0;
    for (int k = 1;; k++) {
        dw_value *v = (dw_value *)&v;
        char why[128];
        int64_t before = fault_mem_outstanding();
        fault_mem_arm(k, 0);
        int rc = dw__key_parse(text, strlen(text), 3, &v, why, sizeof why);
        int fired = fault_mem_disarm();
        if (!fired) {
            assert_int_equal(rc, DW_OK);
            assert_string_equal(v[2].p, "caf\xc3\xa9");
            dw__free(v);
            assert_int_equal(fault_mem_outstanding(), before);
            break;
        }
        assert_int_equal(rc, DW_ENOMEM);
        assert_null(v);
        assert_string_equal(why, "out of memory");
        assert_int_equal(fault_mem_outstanding(), before);
        failures++;
    }
    assert_true(failures >= 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_texts),
        cmocka_unit_test(test_reals),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_values_read),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
