/* Tests for the core's JSON parser (lib/json.c): what it accepts, how it
 * decodes, and every refusal with its message and position. */
#include "fault.h"
#include "support.h"

#include <stdio.h>
#include <string.h>

#include "internal.h"

static dw_json_doc *parse_ok(const char *text)
{
    dw_json_doc *doc = NULL;
    dw_json_error err;
    int rc = dw_json_parse(text, strlen(text), 0, &doc, &err);
    if (rc != DW_OK)
        fail_msg("parsing %s: %s", text, err.msg);
    assert_non_null(doc);
    assert_non_null(dw_json_root(doc));
    return doc;
}

/* The text (len bytes) is refused with a message holding `needle`, at
 * line and column; *out stays NULL. */
static void refused_n(const char *text, size_t len, const char *needle,
                      int line, int column)
{
    dw_json_doc *doc = (dw_json_doc *)&doc;
    dw_json_error err;
    int rc = dw_json_parse(text, len, 0, &doc, &err);
    assert_int_equal(rc, DW_EMISUSE);
    assert_int_equal(err.code, DW_EMISUSE);
    assert_null(doc);
    if (!strstr(err.msg, needle))
        fail_msg("%s: message \"%s\" lacks \"%s\"", text, err.msg, needle);
    assert_int_equal(err.line, line);
    assert_int_equal(err.column, column);
    char where[64];
    snprintf(where, sizeof where, "at line %d, column %d", line, column);
    assert_non_null(strstr(err.msg, where));
}

static void refused(const char *text, const char *needle, int line,
                    int column)
{
    refused_n(text, strlen(text), needle, line, column);
}

static void test_scalars(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        dw_json_type type;
    } cases[] = {{"null", DW_JSON_NULL},   {"true", DW_JSON_TRUE},
                 {"false", DW_JSON_FALSE}, {" 0 ", DW_JSON_NUMBER},
                 {"\"\"", DW_JSON_STRING}, {"\n\t\r [] ", DW_JSON_ARRAY},
                 {"{}", DW_JSON_OBJECT}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        dw_json_doc *doc = parse_ok(cases[i].text);
        assert_int_equal(dw_json_root(doc)->type, cases[i].type);
        dw_json_free(doc);
    }
    dw_json_free(NULL);
    assert_null(dw_json_root(NULL));
}

static void test_empty_containers(void **state)
{
    (void)state;
    dw_json_doc *doc = parse_ok("{\"a\":[],\"b\":{},\"c\":[[],{}]}");
    const dw_json *root = dw_json_root(doc);
    assert_int_equal(root->count, 3);
    const dw_json *a = dw_json_get(root, "a"), *b = dw_json_get(root, "b");
    assert_int_equal(a->type, DW_JSON_ARRAY);
    assert_int_equal(a->count, 0);
    assert_null(a->first);
    assert_int_equal(b->type, DW_JSON_OBJECT);
    assert_int_equal(b->count, 0);
    const dw_json *c = dw_json_get(root, "c");
    assert_int_equal(c->count, 2);
    assert_int_equal(c->first->type, DW_JSON_ARRAY);
    assert_int_equal(c->first->next->type, DW_JSON_OBJECT);
    assert_null(c->first->name);
    assert_null(dw_json_get(root, "d"));
    assert_null(dw_json_get(a, "a")); /* not an object */
    dw_json_free(doc);
}

static void test_members_in_order_with_duplicates(void **state)
{
    (void)state;
    dw_json_doc *doc = parse_ok("{\"b\":1,\"a\":2,\"b\":3}");
    const dw_json *root = dw_json_root(doc);
    assert_int_equal(root->count, 3);
    assert_string_equal(root->first->name, "b");
    assert_string_equal(root->first->next->name, "a");
    /* The first of a name is the one found; the second is the duplicate. */
    assert_string_equal(dw_json_get(root, "b")->text, "1");
    const dw_json *dup = dw_json_duplicate(root);
    assert_non_null(dup);
    assert_string_equal(dup->text, "3");
    assert_int_equal(dup->name_offset, 13);
    dw_json_free(doc);

    doc = parse_ok("{\"a\":{\"x\":1,\"x\":2},\"b\":1}");
    /* Each object on its own. */
    assert_null(dw_json_duplicate(dw_json_root(doc)));
    assert_non_null(dw_json_duplicate(dw_json_get(dw_json_root(doc), "a")));
    assert_null(dw_json_duplicate(dw_json_get(dw_json_get(dw_json_root(doc),
                                                          "a"),
                                              "x")));
    dw_json_free(doc);
    /* Names are compared in full, NUL characters included. */
    doc = parse_ok("{\"a\\u0000b\":1,\"a\\u0000c\":2,\"a\":3}");
    assert_null(dw_json_duplicate(dw_json_root(doc)));
    dw_json_free(doc);
}

static void test_string_escapes(void **state)
{
    (void)state;
    dw_json_doc *doc = parse_ok(
        "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\", \"\\u0041\\u00e9\\u20AC\","
        "\"\\ud83d\\ude00\", \"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\","
        "\"a\\u0000b\"]");
    const dw_json *s = dw_json_root(doc)->first;
    assert_string_equal(s->text, "\"\\/\b\f\n\r\t");
    assert_int_equal(s->len, 8);
    s = s->next;
    assert_string_equal(s->text, "A\xc3\xa9\xe2\x82\xac");
    s = s->next;
    assert_string_equal(s->text, "\xf0\x9f\x98\x80"); /* U+1F600 */
    s = s->next;
    assert_string_equal(s->text, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    s = s->next;
    assert_int_equal(s->len, 3);
    assert_memory_equal(s->text, "a\0b", 4);
    /* The first string holding a NUL is told. */
    assert_ptr_equal(dw_json_nul(doc), s);
    dw_json_free(doc);

    doc = parse_ok("{\"k\":\"no nul\",\"a\\u0000\":1}");
    assert_ptr_equal(dw_json_nul(doc), dw_json_root(doc)->first->next);
    dw_json_free(doc);
    doc = parse_ok("{\"k\":\"\\\\u0000\"}"); /* an escaped backslash */
    assert_null(dw_json_nul(doc));
    assert_string_equal(dw_json_root(doc)->first->text, "\\u0000");
    dw_json_free(doc);
}

static void test_numbers(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int integer;
        int64_t value;
    } cases[] = {
        {"0", 1, 0},
        {"-0", 1, 0},
        {"42", 1, 42},
        {"-17", 1, -17},
        /* Past 2^53, where a double loses digits. */
        {"9007199254740993", 1, INT64_C(9007199254740993)},
        {"9223372036854775807", 1, INT64_MAX},
        {"-9223372036854775808", 1, INT64_MIN},
        {"9223372036854775808", 0, 0},
        {"-9223372036854775809", 0, 0},
        {"123456789012345678901234567890", 0, 0},
        {"1.0", 0, 0},
        {"1e0", 0, 0},
        {"1E+2", 0, 0},
        {"-2.5e-3", 0, 0},
        {"0.5", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        dw_json_doc *doc = parse_ok(cases[i].text);
        const dw_json *v = dw_json_root(doc);
        assert_int_equal(v->type, DW_JSON_NUMBER);
        /* The literal is kept as written. */
        assert_string_equal(v->text, cases[i].text);
        int64_t n = -99;
        assert_int_equal(dw_json_int64(v, &n), cases[i].integer);
        if (cases[i].integer)
            assert_true(n == cases[i].value);
        else
            assert_true(n == -99);
        dw_json_free(doc);
    }
    dw_json_doc *doc = parse_ok("\"1\"");
    int64_t n;
    assert_int_equal(dw_json_int64(dw_json_root(doc), &n), 0);
    assert_int_equal(dw_json_int64(NULL, &n), 0);
    dw_json_free(doc);
}

static void test_bad_numbers(void **state)
{
    (void)state;
    refused("01", "a number with a leading zero", 1, 2);
    refused("-", "a number without digits", 1, 2);
    refused("-a", "a number without digits", 1, 2);
    refused("1.", "a number without digits after '.'", 1, 3);
    refused("1.e5", "a number without digits after '.'", 1, 3);
    refused("1e", "a number without digits in its exponent", 1, 3);
    refused("1e+", "a number without digits in its exponent", 1, 4);
    refused("+1", "unexpected character", 1, 1);
    refused(".5", "unexpected character", 1, 1);
    refused("0x10", "unexpected text after the value", 1, 2);
    refused("NaN", "unexpected character", 1, 1);
    refused("[Infinity]", "unexpected character", 1, 2);
}

static void test_bad_structure(void **state)
{
    (void)state;
    refused("", "expected a value, found the end of the text", 1, 1);
    refused("   \n  ", "expected a value, found the end of the text", 2, 3);
    refused("nul", "unexpected character", 1, 1);
    refused("nullx", "unexpected text after the value", 1, 5);
    refused("tru", "unexpected character", 1, 1);
    refused("{} {}", "unexpected text after the value", 1, 4);
    refused("[1,]", "unexpected character", 1, 4);
    refused("[1 2]", "expected ',' or ']' in an array", 1, 4);
    refused("[1", "expected ',' or ']' in an array", 1, 3);
    refused("{\"a\":1,}", "expected a member name in double quotes", 1, 8);
    refused("{a:1}", "expected a member name in double quotes", 1, 2);
    refused("{'a':1}", "expected a member name in double quotes", 1, 2);
    refused("{\"a\" 1}", "expected ':' after a member name", 1, 6);
    refused("{\"a\":1 \"b\":2}", "expected ',' or '}' in an object", 1, 8);
    refused("{\"a\":", "expected a value, found the end of the text", 1, 6);
    refused("{\n  \"a\": [1,\n   2,, 3]\n}", "unexpected character", 3, 6);
    refused("/* no */ {}", "unexpected character", 1, 1);
    /* A byte order mark is no white space here. */
    refused("\xef\xbb\xbf{}", "unexpected character", 1, 1);
    /* Text after a NUL byte counts: the length is what was given. */
    refused_n("{}\0{}", 5, "unexpected text after the value", 1, 3);
}

static void test_bad_strings(void **state)
{
    (void)state;
    refused("\"abc", "an unterminated string", 1, 1);
    refused("[\"abc\\\"]", "an unterminated string", 1, 2);
    refused("\"a\\", "an unterminated string", 1, 4);
    refused("\"a\nb\"", "a control character in a string", 1, 3);
    refused("\"a\tb\"", "a control character in a string", 1, 3);
    refused("\"\\x41\"", "an unknown escape", 1, 2);
    refused("\"\\'\"", "an unknown escape", 1, 2);
    refused("\"\\u12\"", "a \\u escape without four hex digits", 1, 6);
    refused("\"\\u12G4\"", "a \\u escape without four hex digits", 1, 6);
    /* Lone surrogates. */
    refused("\"\\ud800\"", "a high surrogate escape without a low one", 1, 2);
    refused("\"x\\ud800y\"", "a high surrogate escape without a low one", 1,
            3);
    refused("\"\\ud800\\u0041\"", "a high surrogate escape without a low one",
            1, 2);
    refused("\"\\ud800\\ud800\"", "a high surrogate escape without a low one",
            1, 2);
    refused("\"\\udc00\"", "a low surrogate escape without a high one", 1, 2);
    refused("\"\\ud800\\u12\"", "a \\u escape without four hex digits", 1,
            12);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\"\xff\"",             /* never in UTF-8 */
        "\"\x80\"",             /* a lone continuation byte */
        "\"\xc3\"",             /* cut short */
        "\"\xc3(\"",            /* not followed by a continuation */
        "\"\xc0\xaf\"",         /* overlong */
        "\"\xe0\x80\xaf\"",     /* overlong */
        "\"\xed\xa0\x80\"",     /* a surrogate, encoded */
        "\"\xf4\x90\x80\x80\"", /* past U+10FFFF */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        refused(bad[i], "invalid UTF-8 in a string", 1, 2);
    /* Outside strings, any byte past ASCII is unexpected. */
    refused("[\xc3\xa9]", "unexpected character", 1, 2);
}

static void test_nesting_limit(void **state)
{
    (void)state;
    char text[2 * (DW_JSON_MAX_DEPTH + 1) + 1];
    /* As deep as allowed. */
    memset(text, '[', DW_JSON_MAX_DEPTH);
    memset(text + DW_JSON_MAX_DEPTH, ']', DW_JSON_MAX_DEPTH);
    text[2 * DW_JSON_MAX_DEPTH] = '\0';
    dw_json_doc *doc = parse_ok(text);
    const dw_json *v = dw_json_root(doc);
    int depth = 0;
    for (; v; v = v->first)
        depth++;
    assert_int_equal(depth, DW_JSON_MAX_DEPTH);
    dw_json_free(doc);
    /* One deeper. */
    memset(text, '[', DW_JSON_MAX_DEPTH + 1);
    memset(text + DW_JSON_MAX_DEPTH + 1, ']', DW_JSON_MAX_DEPTH + 1);
    text[2 * (DW_JSON_MAX_DEPTH + 1)] = '\0';
    char needle[64];
    snprintf(needle, sizeof needle, "nested deeper than %d levels",
             DW_JSON_MAX_DEPTH);
    refused(text, needle, 1, DW_JSON_MAX_DEPTH + 1);
    /* A limit of the caller's, objects counting as arrays do. */
    dw_json_error err;
    assert_int_equal(dw_json_parse("{\"a\":[{}]}", 10, 2, &doc, &err),
                     DW_EMISUSE);
    assert_non_null(strstr(err.msg, "nested deeper than 2 levels"));
    assert_int_equal(dw_json_parse("{\"a\":[]}", 8, 2, &doc, &err), DW_OK);
    dw_json_free(doc);
}

static void test_positions(void **state)
{
    (void)state;
    dw_json_doc *doc = parse_ok("{\n  \"a\": [1,\n    true]\n}");
    const dw_json *a = dw_json_get(dw_json_root(doc), "a");
    assert_int_equal(a->line, 2);
    assert_int_equal(a->column, 8);
    assert_int_equal(a->offset, 9);
    assert_int_equal(a->name_offset, 4);
    const dw_json *t = a->first->next;
    assert_int_equal(t->type, DW_JSON_TRUE);
    assert_int_equal(t->line, 3);
    assert_int_equal(t->column, 5);
    dw_json_free(doc);
}

/* dw_json_parse_bytes() takes the bytes of strings as they are, UTF-8 or
 * not (key text and stored specs hold what the database held), and refuses
 * all else as dw_json_parse() does. */
static void test_parse_bytes(void **state)
{
    (void)state;
    const char text[] = "[\"a\xff\xc3\", \"\xed\xa0\x80\"]";
    dw_json_doc *doc = NULL;
    dw_json_error err;
    assert_int_equal(dw_json_parse(text, strlen(text), 0, &doc, &err),
                     DW_EMISUSE);
    assert_non_null(strstr(err.msg, "invalid UTF-8"));
    assert_int_equal(dw_json_parse_bytes(text, strlen(text), 0, &doc, &err),
                     DW_OK);
    const dw_json *a = dw_json_root(doc)->first;
    assert_int_equal(a->len, 3);
    assert_memory_equal(a->text, "a\xff\xc3", 4);
    assert_string_equal(a->next->text, "\xed\xa0\x80");
    dw_json_free(doc);
    const char bad[] = "[\"\xff\x01\"]";
    assert_int_equal(dw_json_parse_bytes(bad, strlen(bad), 0, &doc, &err),
                     DW_EMISUSE);
    assert_null(doc);
    assert_non_null(strstr(err.msg, "a control character in a string"));
}

/* Every allocation the parser makes may fail: each failure is DW_ENOMEM,
 * "out of memory", with nothing returned and nothing left allocated. */
static void test_out_of_memory(void **state)
{
    (void)state;
    /* Big enough for several arena blocks. */
    static char text[40000];
    size_t n = 0;
    text[n++] = '[';
    for (int i = 0; i < 2000; i++)
        n += (size_t)snprintf(text + n, sizeof text - n,
                              "%s{\"k%d\":\"v\"}", i ? "," : "", i);
    text[n++] = ']';
    text[n] = '\0';
    fault_mem_install();
    int failures = 0;
    for (int k = 1;; k++) {
        dw_json_doc *doc = (dw_json_doc *)&doc;
        dw_json_error err;
        int64_t before = fault_mem_outstanding();
        fault_mem_arm(k, 0);
        int rc = dw_json_parse(text, n, 0, &doc, &err);
        int fired = fault_mem_disarm();
        if (!fired) {
            assert_int_equal(rc, DW_OK);
            assert_int_equal(dw_json_root(doc)->count, 2000);
            dw_json_free(doc);
            assert_int_equal(fault_mem_outstanding(), before);
            break;
        }
        assert_int_equal(rc, DW_ENOMEM);
        assert_int_equal(err.code, DW_ENOMEM);
        assert_null(doc);
        assert_string_equal(err.msg, "out of memory");
        assert_int_equal(fault_mem_outstanding(), before);
        failures++;
    }
    /* The document, and arena blocks that grew more than once. */
    assert_true(failures >= 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_empty_containers),
        cmocka_unit_test(test_members_in_order_with_duplicates),
        cmocka_unit_test(test_string_escapes),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_bad_numbers),
        cmocka_unit_test(test_bad_structure),
        cmocka_unit_test(test_bad_strings),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_positions),
        cmocka_unit_test(test_parse_bytes),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
