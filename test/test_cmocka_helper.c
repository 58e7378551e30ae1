/* The cmocka assertions of dualwrite_cmocka.h, as an application's unit
 * tests would use them. */
#include "support.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dualwrite_cmocka.h"

/* Run as a child process: the tests whose assertions must fail. */
#define CHILD_FLAG "--child-broken-new-reads"

static const char *const key_cols[] = {"id"};
static const dw_column_map up[] = {{"title", "upper(name)"}};

static dw_options items_options(void)
{
    dw_options o =
        options_for("items_v2", TEST_SIDE_UNLISTED("items", key_cols),
                    TEST_SIDE_UNLISTED("items_v2", key_cols));
    o.up = up;
    o.nup = 1;
    return o;
}

/* Two rows that agree on both sides, the migration at SHADOW. */
static void open_fixture(test_fixture *f)
{
    memset(f, 0, sizeof *f);
    test_db_open(&f->t);
    fixture_exec(f,
            "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);"
            "CREATE TABLE items_v2(id INTEGER PRIMARY KEY, title TEXT);"
            "INSERT INTO items VALUES(1, 'lamp'), (2, 'desk');"
            "INSERT INTO items_v2 VALUES(1, 'LAMP'), (2, 'DESK');");
    dw_options o = items_options();
    f->h = open_migration_ok(f->t.db, &o);
    stage_walk_ok(f->h, DW_STAGE_SHADOW);
}

static void test_agreeing_models_pass(void **state)
{
    (void)state;
    test_fixture f;
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
    fixture_close(&f);
}

static void test_divergence_is_counted_and_described(void **state)
{
    (void)state;
    test_fixture f;
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
    fixture_connect_second(&f);
    dw_options o = items_options();
    dw_migration *h2 = f.h2 = open_migration_ok(f.db2, &o);
    assert_int_equal(dw_cmocka_divergence(h2, NULL, 0), 1);

    /* Once repaired and the log cleared, both agree again. */
    assert_dw_ok(f.h, dw_mirror(f.h, &key, 1));
    assert_dw_ok(h2, dw_mismatch_log_clear(h2));
    assert_dw_key_agrees(h2, &key, 1);
    assert_dw_no_divergence(h2);
    dw_row_free(row);
    fixture_close(&f);
}

/* ---- a new model whose reads fail ----------------------------------------- */

/* The application's read of the old model, in the new model's shape. */
static int read_old_items(dw_row *out, void *db, const dw_value *key,
                          int nkey, void *payload)
{
    (void)nkey;
    (void)payload;
    return read_row_by_id(
        out, db, "SELECT id, upper(name) AS title FROM items WHERE id = ?1",
        key[0].i);
}

/* The application's read of a new model that is broken. */
static int read_new_broken(dw_row *out, void *db, const dw_value *key,
                           int nkey, void *payload)
{
    (void)out;
    (void)db;
    (void)key;
    (void)nkey;
    (void)payload;
    return 1;
}

static int read_with_broken_new(test_fixture *f, int64_t id, dw_row *row)
{
    dw_value key = dw_int(id);
    return dw_read(row, f->h, &key, 1, read_old_items, read_new_broken,
                   NULL);
}

/* Reads through a broken new model count as comparisons that could not
 * be made, which the helpers count with the divergence: at SHADOW, where
 * the caller still gets the old row, and at LIVE, where the new read's
 * failure is the caller's. */
static void test_broken_new_reads_count_as_divergence(void **state)
{
    (void)state;
    test_fixture f;
    open_fixture(&f);
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    assert_dw_ok(f.h, read_with_broken_new(&f, 1, row));
    assert_string_equal(dw_row_get(row, "title")->p, "LAMP");
    char report[1024];
    assert_int_equal(dw_cmocka_divergence(f.h, report, sizeof report), 1);
    assert_non_null(strstr(report, "1 comparison(s) that could not be made"));

    assert_dw_ok(f.h, dw_stage_set(f.h, DW_STAGE_LIVE, "test",
                                   DW_STAGE_FORCE));
    assert_dw(f.h, read_with_broken_new(&f, 1, row), DW_ECALLBACK);
    assert_int_equal(dw_cmocka_divergence(f.h, NULL, 0), 2);
    dw_row_free(row);
    fixture_close(&f);
}

static int child_setup(void **state)
{
    test_fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    *state = f;
    open_fixture(f);
    return 0;
}

static int child_teardown(void **state)
{
    fixture_close(*state);
    free(*state);
    return 0;
}

/* Each must fail: the test reads through a broken new model, never looks
 * at what dw_read() returned, and trusts the helper. */
static void child_shadow_reads(void **state)
{
    test_fixture *f = *state;
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    read_with_broken_new(f, 1, row);
    dw_row_free(row);
    assert_dw_no_divergence(f->h);
}

static void child_live_reads(void **state)
{
    test_fixture *f = *state;
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_LIVE, "test",
                                    DW_STAGE_FORCE));
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    read_with_broken_new(f, 2, row);
    dw_row_free(row);
    assert_dw_no_divergence(f->h);
}

static int child_main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(child_shadow_reads, child_setup,
                                        child_teardown),
        cmocka_unit_test_setup_teardown(child_live_reads, child_setup,
                                        child_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Runs the child tests with their output in a file; returns the wait
 * status. */
static int run_child(const char *out_path)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(126);
        char *args[] = {test_self, (char *)CHILD_FLAG, NULL};
        execv(test_self, args);
        _exit(127);
    }
    int status = 0;
    pid_t r;
    while ((r = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
        ;
    assert_int_equal(r, pid);
    return status;
}

static char *read_file(const char *path)
{
    FILE *in = fopen(path, "rb");
    assert_non_null(in);
    static char text[16384];
    size_t n = fread(text, 1, sizeof text - 1, in);
    text[n] = '\0';
    fclose(in);
    return text;
}

/* Shows the child's output, each line indented so that the test runner
 * does not take the child's counts for ours. */
static void show_child_output(const char *text)
{
    const char *p = text;
    while (*p) {
        const char *end = strchr(p, '\n');
        int len = end ? (int)(end - p) : (int)strlen(p);
        print_error("  child| %.*s\n", len, p);
        p += len + (end ? 1 : 0);
    }
}

/* A test whose new-side reads fail is failed by assert_dw_no_divergence,
 * at SHADOW and at LIVE, with a message that says why. */
static void test_assertion_fails_on_broken_new_reads(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    char out_path[400];
    snprintf(out_path, sizeof out_path, "%s/child.out", t.dir);
    int status = run_child(out_path);
    const char *text = read_file(out_path);
    unlink(out_path);
    test_db_close(&t);
    int two_failed = WIFEXITED(status) && WEXITSTATUS(status) == 2;
    int explained =
        strstr(text, "[  FAILED  ] child_shadow_reads") &&
        strstr(text, "[  FAILED  ] child_live_reads") &&
        strstr(text, "1 comparison(s) that could not be made");
    if (!two_failed || !explained)
        show_child_output(text);
    assert_true(two_failed);
    assert_true(explained);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], CHILD_FLAG) == 0)
        return child_main();
    test_self_init(argv[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agreeing_models_pass),
        cmocka_unit_test(test_divergence_is_counted_and_described),
        cmocka_unit_test(test_broken_new_reads_count_as_divergence),
        cmocka_unit_test(test_assertion_fails_on_broken_new_reads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
