/* dwctl, driven as an operator drives it: the built binary run on a real
 * database file, its exit codes checked, its --json output parsed back with
 * SQLite's JSON functions, its progress bar read through a
 * pseudo-terminal. */
#define _XOPEN_SOURCE 700 /* posix_openpt and friends */

#include "support.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- running the tool ---------------------------------------------------- */

static char dwctl_path[4200];

typedef struct run_result {
    int code; /* exit code, or 128 + signal */
    char out[65536];
    char err[8192];
} run_result;

static void read_all(int fd, char *buf, size_t size)
{
    size_t used = 0;
    for (;;) {
        ssize_t n = read(fd, buf + used, size - 1 - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        used += (size_t)n;
        if (used == size - 1) {
            /* Drain the rest so the child never blocks on a full pipe. */
            char sink[4096];
            while (read(fd, sink, sizeof sink) > 0)
                ;
            break;
        }
    }
    buf[used] = '\0';
}

static int wait_code(pid_t pid)
{
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        assert_int_equal(errno, EINTR);
    return WIFEXITED(status) ? WEXITSTATUS(status)
                             : 128 + WTERMSIG(status);
}

/* The command line that runs dwctl with argv (NULL-terminated, without the
 * program name), behind DW_TOOL_WRAP when set (`make valgrind` runs the
 * tool under valgrind that way). `args` holds 64 entries; `words` keeps
 * the wrapper's words. */
static void tool_argv(const char **args, char *words, size_t size,
                      const char *const *argv)
{
    int n = 0;
    const char *wrap = getenv("DW_TOOL_WRAP");
    snprintf(words, size, "%s", wrap ? wrap : "");
    for (char *w = strtok(words, " "); w && n < 16; w = strtok(NULL, " "))
        args[n++] = w;
    args[n++] = dwctl_path;
    for (int i = 0; argv[i] && n < 63; i++)
        args[n++] = argv[i];
    args[n] = NULL;
}

/* Starts dwctl with argv (NULL-terminated, without the program name);
 * its stdout comes back on *out_fd, stderr goes to a file read later. */
static pid_t start(const char *const *argv, int *out_fd, const char *err_path,
                   const char *input)
{
    const char *args[64];
    char words[512];
    tool_argv(args, words, sizeof words, argv);
    int out[2], in[2];
    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(in), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int errfd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(errfd, 2);
        close(in[1]);
        close(out[0]);
        execvp(args[0], (char *const *)args);
        _exit(127);
    }
    close(out[1]);
    close(in[0]);
    if (input) {
        ssize_t w = write(in[1], input, strlen(input));
        assert_int_equal(w, (ssize_t)strlen(input));
    }
    close(in[1]);
    *out_fd = out[0];
    return pid;
}

static const char err_file[] = "dwctl.stderr";

static char *err_path(const test_db *t)
{
    static char path[400];
    snprintf(path, sizeof path, "%s/%s", t->dir, err_file);
    return path;
}

/* Runs dwctl to the end with optional standard input. */
static int run_in(run_result *r, const test_db *t, const char *input,
                  const char *const *argv)
{
    int fd;
    pid_t pid = start(argv, &fd, err_path(t), input);
    read_all(fd, r->out, sizeof r->out);
    close(fd);
    r->code = wait_code(pid);
    FILE *f = fopen(err_path(t), "r");
    size_t n = f ? fread(r->err, 1, sizeof r->err - 1, f) : 0;
    r->err[n] = '\0';
    if (f)
        fclose(f);
    unlink(err_path(t));
    return r->code;
}

#define RUN(r, t, ...) run_in((r), (t), NULL, (const char *[]){__VA_ARGS__, NULL})

/* Runs dwctl with its standard output on `out_path` (such as /dev/full);
 * returns the exit code. */
static int run_to(const char *out_path, const test_db *t,
                  const char *const *argv)
{
    const char *args[64];
    char words[512];
    tool_argv(args, words, sizeof words, argv);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int err = open(err_path(t), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(out, 1);
        dup2(err, 2);
        execvp(args[0], (char *const *)args);
        _exit(127);
    }
    int code = wait_code(pid);
    unlink(err_path(t));
    return code;
}

/* Asserts the exit code, showing what the tool said when it differs. */
#define assert_code(r, expected)                                               \
    do {                                                                       \
        if ((r)->code != (expected))                                           \
            print_error("dwctl exited %d, expected %d\nstdout:\n%s\nstderr:\n%s" \
                        "\n",                                                  \
                        (r)->code, (expected), (r)->out, (r)->err);            \
        assert_int_equal((r)->code, (expected));                               \
    } while (0)

#define assert_contains(haystack, needle)                                      \
    do {                                                                       \
        if (!strstr((haystack), (needle)))                                     \
            print_error("\"%s\" not found in:\n%s\n", (needle), (haystack));   \
        assert_non_null(strstr((haystack), (needle)));                         \
    } while (0)

/* A value out of a JSON document, by path, as text ("" for null or
 * missing); fails the test when the document is not valid JSON. */
static const char *json_at(sqlite3 *db, const char *doc, const char *path,
                           char *buf, size_t size)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT json_valid(?1), "
                                        "json_extract(?1, ?2)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, doc, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, path, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    if (!sqlite3_column_int(st, 0))
        print_error("not JSON:\n%s\n", doc);
    assert_int_equal(sqlite3_column_int(st, 0), 1);
    const unsigned char *v = sqlite3_column_text(st, 1);
    snprintf(buf, size, "%s", v ? (const char *)v : "");
    sqlite3_finalize(st);
    return buf;
}

static int64_t json_int_at(sqlite3 *db, const char *doc, const char *path)
{
    char buf[64];
    return strtoll(json_at(db, doc, path, buf, sizeof buf), NULL, 10);
}

/* The length of the JSON array at path. */
static int64_t json_len_at(sqlite3 *db, const char *doc, const char *path)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT json_array_length(?1, ?2)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, doc, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, path, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

#define assert_json(db, doc, path, expected)                                   \
    do {                                                                       \
        char b_[512];                                                          \
        assert_string_equal(json_at((db), (doc), (path), b_, sizeof b_),       \
                            (expected));                                       \
    } while (0)

/* ---- the fixture --------------------------------------------------------- */

/* items -> items_v2: label = 'item-' || name, tenths = qty * 10, and back.
 * 3000 rows. */
static void make_tables(test_db *t)
{
    test_db_open(t);
    exec_ok(t->db,
            "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "  qty INTEGER NOT NULL);"
            "CREATE TABLE items_v2(id INTEGER PRIMARY KEY, label TEXT, "
            "  tenths INTEGER);"
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
            "  WHERE i < 3000) "
            "INSERT INTO items SELECT i, 'n' || i, i % 17 FROM n;");
}

static void define_items(test_db *t)
{
    run_result r;
    RUN(&r, t, t->path, "define", "items", "--old", "items", "--old-key",
        "id", "--old-columns", "name, qty", "--new", "items_v2", "--new-key",
        "id", "--up", "label='item-' || name", "--up", "tenths=qty * 10",
        "--down", "name=substr(label, 6)", "--down", "qty=tenths / 10",
        "--reason", "split names");
    assert_code(&r, 0);
    assert_contains(r.out, "items: defined at OFF");
}

/* The items migration at DUAL_WRITE, backfilled or not, through the
 * tool. */
static void items_at_dual_write(test_db *t, int backfill)
{
    make_tables(t);
    define_items(t);
    run_result r;
    RUN(&r, t, t->path, "stage", "items", "DUAL_WRITE", "--reason", "x");
    assert_code(&r, 0);
    if (backfill) {
        RUN(&r, t, t->path, "backfill", "items");
        assert_code(&r, 0);
    }
}

static void done_tables(test_db *t)
{
    char path[400];
    snprintf(path, sizeof path, "%s/backup.db", t->dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/keys.txt", t->dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/spec.json", t->dir);
    unlink(path);
    test_db_close(t);
}

static void write_file(const test_db *t, const char *name, const char *text,
                       char *path, size_t size)
{
    snprintf(path, size, "%s/%s", t->dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* ---- help and usage ------------------------------------------------------ */

static void test_help_and_usage(void **state)
{
    (void)state;
    test_db t;
    make_tables(&t);
    run_result r;
    RUN(&r, &t, "--help");
    assert_code(&r, 0);
    static const char *const commands[] = {
        "list",   "status", "define",   "stage",      "backfill", "verify",
        "repair", "canary", "contract", "restore",    "history",  "mismatches",
        "remove"};
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        assert_contains(r.out, commands[i]);
    assert_contains(r.out, "Exit codes:");
    /* Each command's own help, whichever way it is asked for. */
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
        char synopsis[64];
        snprintf(synopsis, sizeof synopsis, "usage: dwctl DATABASE %s",
                 commands[i]);
        RUN(&r, &t, t.path, commands[i], "--help");
        assert_code(&r, 0);
        assert_contains(r.out, synopsis);
        RUN(&r, &t, "help", commands[i]);
        assert_code(&r, 0);
        assert_contains(r.out, synopsis);
    }
    RUN(&r, &t, "--version");
    assert_code(&r, 0);
    assert_contains(r.out, DW_VERSION);

    /* Bad usage exits 2 and says what is wrong. */
    RUN(&r, &t, t.path, "frobnicate");
    assert_code(&r, 2);
    assert_contains(r.err, "no command \"frobnicate\"");
    RUN(&r, &t, t.path, "stage", "items", "LIVE", "--reason", "x", "--bogus");
    assert_code(&r, 2);
    assert_contains(r.err, "--bogus");
    RUN(&r, &t, t.path, "stage", "items", "LIVE", "--reason", "x", "--json");
    assert_code(&r, 2);
    assert_contains(r.err, "--json");
    RUN(&r, &t, t.path, "status");
    assert_code(&r, 2);
    assert_contains(r.err, "argument is missing");
    RUN(&r, &t, t.path, "status", "a", "b");
    assert_code(&r, 2);
    RUN(&r, &t, t.path, "stage", "items", "SIDEWAYS", "--reason", "x");
    assert_code(&r, 2);
    assert_contains(r.err, "not a stage");
    RUN(&r, &t, t.path, "stage", "items", "LIVE");
    assert_code(&r, 2);
    assert_contains(r.err, "--reason");
    RUN(&r, &t, t.path, "backfill", "items", "--batch", "many");
    assert_code(&r, 2);
    assert_contains(r.err, "--batch wants a whole number");
    RUN(&r, &t, t.path, "history", "items", "--limit");
    assert_code(&r, 2);
    assert_contains(r.err, "needs a value");
    RUN(&r, &t, t.path);
    assert_code(&r, 2);
    done_tables(&t);
}

/* ---- define -------------------------------------------------------------- */

static void test_define_and_list(void **state)
{
    (void)state;
    test_db t;
    make_tables(&t);
    run_result r;
    RUN(&r, &t, t.path, "list");
    assert_code(&r, 0);
    assert_contains(r.out, "no migrations");
    define_items(&t);

    /* The same spec again changes nothing; another is refused without
     * --redefine, and taken with it (the stage is kept). */
    const char *const same[] = {
        t.path,          "define",       "items",      "--old",
        "items",         "--old-key",    "id",         "--old-columns",
        "name,qty",      "--new",        "items_v2",   "--new-key",
        "id",            "--up",         "label='item-' || name",
        "--up",          "tenths=qty * 10",            "--down",
        "name=substr(label, 6)",         "--down",     "qty=tenths / 10",
        NULL};
    run_in(&r, &t, NULL, same);
    assert_code(&r, 0);
    assert_contains(r.out, "items: unchanged at OFF");
    RUN(&r, &t, t.path, "define", "items", "--old", "items", "--old-key", "id",
        "--old-columns", "name,qty", "--new", "items_v2", "--new-key", "id",
        "--up", "label=name", "--up", "tenths=qty");
    /* A refusal of the request as given, not a failure of the database. */
    assert_code(&r, 2);
    assert_contains(r.err, "items");
    assert_contains(r.err, "--redefine");
    RUN(&r, &t, t.path, "define", "items", "--old", "items", "--old-key", "id",
        "--old-columns", "name,qty", "--new", "items_v2", "--new-key", "id",
        "--up", "label=name", "--up", "tenths=qty", "--redefine", "--reason",
        "plain labels");
    assert_code(&r, 0);
    assert_contains(r.out, "items: redefined at OFF");

    /* From a spec file: a same-table migration of its own. */
    exec_ok(t.db, "ALTER TABLE items ADD COLUMN qty_text TEXT");
    char spec[400];
    write_file(&t, "spec.json",
               "{\"old\": {\"table\": \"items\", \"key\": [\"id\"], "
               "\"columns\": [\"qty\"]},\n"
               " \"new\": {\"table\": \"items\", \"key\": [\"id\"], "
               "\"columns\": [\"qty_text\"]},\n"
               " \"up\": {\"sql\": {\"qty_text\": \"CAST(qty AS TEXT)\"}}}\n",
               spec, sizeof spec);
    RUN(&r, &t, t.path, "define", "qty_as_text", "--file", spec);
    assert_code(&r, 0);
    assert_contains(r.out, "qty_as_text: defined at OFF");

    /* Bad specs: each refused with a message, nothing stored. */
    RUN(&r, &t, t.path, "define", "broken", "--old", "items", "--old-key",
        "id", "--new", "items_v2", "--new-key", "id", "--up", "label=nmae");
    assert_code(&r, 2);
    assert_contains(r.err, "nmae");
    RUN(&r, &t, t.path, "define", "broken", "--old", "items", "--old-key",
        "id", "--new", "nowhere", "--new-key", "id", "--up", "label=name");
    assert_code(&r, 2);
    assert_contains(r.err, "nowhere");
    RUN(&r, &t, t.path, "define", "broken", "--old", "items", "--old-key",
        "qty", "--new", "items_v2", "--new-key", "id", "--up", "label=name");
    assert_code(&r, 2);
    assert_contains(r.err, "not unique");
    RUN(&r, &t, t.path, "define", "broken", "--old", "items", "--old-key",
        "id", "--new", "items_v2", "--new-key", "id", "--up", "label");
    assert_code(&r, 2);
    assert_contains(r.err, "COLUMN=EXPRESSION");
    RUN(&r, &t, t.path, "define", "broken", "--old", "items", "--new",
        "items_v2", "--new-key", "id", "--up", "label=name");
    assert_code(&r, 2);
    assert_contains(r.err, "--old-key is missing");
    write_file(&t, "spec.json", "{\"old\": {\"table\": \"items\"", spec,
               sizeof spec);
    RUN(&r, &t, t.path, "define", "broken", "--file", spec);
    assert_code(&r, 2);
    assert_contains(r.err, "not valid JSON");
    RUN(&r, &t, t.path, "define", "broken", "--file", spec, "--old", "items");
    assert_code(&r, 2);
    assert_contains(r.err, "do not go together");
    RUN(&r, &t, t.path, "define", "broken", "--old", "items", "--old-key",
        "id", "--new", "items_v2", "--new-key", "id", "--up",
        "label='caf\xe9'");
    assert_code(&r, 2);
    assert_contains(r.err, "--up is not UTF-8");

    /* list, as text and as JSON. */
    RUN(&r, &t, t.path, "list");
    assert_code(&r, 0);
    assert_contains(r.out, "items");
    assert_contains(r.out, "qty_as_text");
    assert_true(strstr(r.out, "broken") == NULL);
    RUN(&r, &t, t.path, "list", "--json");
    assert_code(&r, 0);
    assert_int_equal(json_len_at(t.db, r.out, "$.migrations"), 2);
    assert_json(t.db, r.out, "$.migrations[0].name", "items");
    assert_json(t.db, r.out, "$.migrations[0].stage", "OFF");
    assert_json(t.db, r.out, "$.migrations[0].health", "ok");
    assert_json(t.db, r.out, "$.migrations[1].name", "qty_as_text");
    assert_json(t.db, r.out, "$.migrations[0].backfill.state", "not started");

    /* A migration that cannot be opened any more is listed with the
     * reason, beside the others; the exit code says something failed. */
    exec_ok(t.db, "ALTER TABLE items DROP COLUMN qty_text");
    RUN(&r, &t, t.path, "list");
    assert_code(&r, 1);
    assert_contains(r.out, "items                    OFF        ok");
    assert_contains(r.out, "qty_as_text              OFF        cannot open: ");
    assert_contains(r.err, "table \"items\" has no column \"qty_text\"");
    RUN(&r, &t, t.path, "list", "--json");
    assert_code(&r, 1);
    assert_json(t.db, r.out, "$.migrations[0].opened", "1");
    assert_json(t.db, r.out, "$.migrations[1].opened", "0");
    assert_json(t.db, r.out, "$.migrations[1].backfill", "");
    /* Asked for by name, the stored spec the schema no longer fits is a
     * refusal. */
    RUN(&r, &t, t.path, "status", "qty_as_text");
    assert_code(&r, 2);
    assert_contains(r.err, "qty_text");

    /* No such migration, no such file: distinct codes, and no file is
     * created for a mistyped path. */
    RUN(&r, &t, t.path, "status", "itmes");
    assert_code(&r, 6);
    assert_contains(r.err, "itmes");
    char missing[400];
    snprintf(missing, sizeof missing, "%s/nothere.db", t.dir);
    RUN(&r, &t, missing, "list");
    assert_code(&r, 1);
    assert_int_equal(access(missing, F_OK), -1);
    done_tables(&t);
}

/* Setup SQL that is not a row change is refused at define (exit 2), with
 * the statement named; nothing is stored and the table survives. */
static void test_define_refuses_ddl_setup(void **state)
{
    (void)state;
    test_db t;
    make_tables(&t);
    exec_ok(t.db, "CREATE TABLE precious(a); INSERT INTO precious VALUES(1)");
    run_result r;
    RUN(&r, &t, t.path, "define", "items", "--old", "items", "--old-key",
        "id", "--new", "items_v2", "--new-key", "id", "--up",
        "label=name", "--up", "tenths=qty", "--setup",
        "INSERT INTO precious VALUES(2); DROP TABLE precious");
    assert_code(&r, 2);
    assert_contains(r.err, "DROP TABLE precious");
    RUN(&r, &t, t.path, "list");
    assert_code(&r, 0);
    assert_contains(r.out, "no migrations");
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM precious"), 1);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM sqlite_schema "
                                     "WHERE name LIKE 'dw\\_%' ESCAPE '\\'"),
                     0);
    done_tables(&t);
}

/* ---- a whole migration --------------------------------------------------- */

static void test_whole_migration(void **state)
{
    (void)state;
    test_db t;
    make_tables(&t);
    define_items(&t);
    run_result r;

    RUN(&r, &t, t.path, "status", "items", "--json");
    assert_code(&r, 0);
    assert_json(t.db, r.out, "$.stage", "OFF");
    assert_json(t.db, r.out, "$.next.action", "stage");
    assert_json(t.db, r.out, "$.next.stage", "DUAL_WRITE");
    assert_json(t.db, r.out, "$.spec.old.table", "items");

    RUN(&r, &t, t.path, "stage", "items", "DUAL_WRITE", "--reason", "expand");
    assert_code(&r, 0);
    assert_contains(r.out, "items: OFF -> DUAL_WRITE");
    /* A jump needs --force. */
    RUN(&r, &t, t.path, "stage", "items", "LIVE", "--reason", "hurry");
    assert_code(&r, 2);
    assert_contains(r.err, "skips a stage");
    /* In the tool's words, not the C API's. */
    assert_contains(r.err, "or pass --force");

    RUN(&r, &t, t.path, "status", "items");
    assert_code(&r, 0);
    assert_contains(r.out, "backfill    not started");
    assert_contains(r.out, "backfill items, then stage SHADOW");

    RUN(&r, &t, t.path, "backfill", "items", "--batch", "500");
    assert_code(&r, 0);
    /* Not a terminal: plain lines, no bar. */
    assert_contains(r.out, "backfill items: ");
    assert_contains(r.out, "rows/s");
    assert_contains(r.out, "finished, 3000 rows");
    assert_null(strchr(r.out, '\r'));
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM items_v2"), 3000);
    assert_int_equal(
        query_int(t.db, "SELECT count(*) FROM items_v2 WHERE label = "
                        "'item-n7' AND tenths = 70"),
        1);

    RUN(&r, &t, t.path, "stage", "items", "SHADOW", "--reason", "compare");
    assert_code(&r, 0);
    /* The gate into LIVE is closed until a verification. */
    RUN(&r, &t, t.path, "stage", "items", "LIVE", "--check");
    assert_code(&r, 3);
    assert_contains(r.err, "no verification");
    RUN(&r, &t, t.path, "stage", "items", "LIVE", "--reason", "go");
    assert_code(&r, 3);
    RUN(&r, &t, t.path, "status", "items", "--json");
    assert_json(t.db, r.out, "$.next.action", "verify");
    assert_json(t.db, r.out, "$.next.gate_open", "0");

    RUN(&r, &t, t.path, "verify", "items", "--json");
    assert_code(&r, 0);
    assert_json(t.db, r.out, "$.keys", "3000");
    assert_json(t.db, r.out, "$.clean", "1");
    RUN(&r, &t, t.path, "stage", "items", "LIVE", "--check");
    assert_code(&r, 0);
    assert_contains(r.out, "allowed");
    RUN(&r, &t, t.path, "stage", "items", "LIVE", "--reason", "go");
    assert_code(&r, 0);
    assert_contains(r.out, "SHADOW -> LIVE");

    /* Flipping back needs no gate. */
    RUN(&r, &t, t.path, "stage", "items", "SHADOW", "--reason", "flip back");
    assert_code(&r, 0);
    RUN(&r, &t, t.path, "stage", "items", "LIVE", "--reason", "again");
    assert_code(&r, 0);
    RUN(&r, &t, t.path, "stage", "items", "RAMPDOWN", "--reason", "stop old");
    assert_code(&r, 0);
    RUN(&r, &t, t.path, "stage", "items", "COMPLETE", "--reason", "done");
    assert_code(&r, 0);

    RUN(&r, &t, t.path, "status", "items", "--json");
    assert_json(t.db, r.out, "$.next.action", "contract");

    char backup[400];
    snprintf(backup, sizeof backup, "%s/backup.db", t.dir);
    RUN(&r, &t, t.path, "contract", "items");
    assert_code(&r, 2);
    RUN(&r, &t, t.path, "contract", "items", "--backup", backup, "--reason",
        "drop items");
    assert_code(&r, 0);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM sqlite_schema "
                                     "WHERE name = 'items'"),
                     0);
    assert_int_equal(access(backup, F_OK), 0);
    RUN(&r, &t, t.path, "list", "--json");
    assert_json(t.db, r.out, "$.migrations[0].contracted", "1");
    RUN(&r, &t, t.path, "stage", "items", "RAMPDOWN", "--reason", "no");
    assert_code(&r, 2);
    assert_contains(r.err, "dwctl restore");

    RUN(&r, &t, t.path, "restore", "items", "--backup", backup, "--reason",
        "need it back");
    assert_code(&r, 0);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM items"), 3000);
    RUN(&r, &t, t.path, "status", "items", "--json");
    assert_json(t.db, r.out, "$.stage", "RAMPDOWN");
    assert_json(t.db, r.out, "$.contracted", "0");

    /* The history tells the story, oldest first. */
    RUN(&r, &t, t.path, "history", "items", "--json");
    assert_code(&r, 0);
    assert_json(t.db, r.out, "$.history[0].event", "define");
    assert_json(t.db, r.out, "$.history[0].reason", "split names");
    assert_json(t.db, r.out, "$.history[1].event", "stage");
    assert_json(t.db, r.out, "$.history[1].to", "DUAL_WRITE");
    assert_json(t.db, r.out, "$.history[#-1].event", "restore");
    RUN(&r, &t, t.path, "history", "items", "--limit", "2");
    assert_code(&r, 0);
    assert_contains(r.out, "restore");
    assert_true(strstr(r.out, "define") == NULL);
    done_tables(&t);
}

/* Reads the tool's output until its first line (a progress line). */
static void first_line(int fd, char *line, size_t size)
{
    size_t used = 0;
    while (used < size - 1 && !memchr(line, '\n', used)) {
        ssize_t n = read(fd, line + used, size - 1 - used);
        assert_true(n > 0);
        used += (size_t)n;
    }
    line[used] = '\0';
}

/* ---- backfill: interrupted and resumed ----------------------------------- */

static void test_backfill_interrupted_and_resumed(void **state)
{
    (void)state;
    test_db t;
    items_at_dual_write(&t, 0);
    run_result r;

    /* Small fixed batches with pauses: the run takes about 3 s, and is
     * interrupted after its first progress line. */
    int fd;
    const char *const args[] = {t.path,       "backfill", "items",
                                "--batch",    "50",       "--batch-ms",
                                "-1",         "--pause-ms", "50",
                                NULL};
    pid_t pid = start(args, &fd, err_path(&t), NULL);
    char line[512];
    first_line(fd, line, sizeof line);
    assert_contains(line, "backfill items: 50/3000 rows");
    /* Under way (held still, so it cannot finish first on a slow run):
     * status names the live process that runs it. */
    assert_int_equal(kill(pid, SIGSTOP), 0);
    RUN(&r, &t, t.path, "status", "items", "--json");
    assert_json(t.db, r.out, "$.backfill.state", "running");
    assert_json(t.db, r.out, "$.backfill.runner.activity", "running");
    assert_int_equal(json_int_at(t.db, r.out, "$.backfill.runner.pid"), pid);
    assert_int_equal(kill(pid, SIGINT), 0);
    assert_int_equal(kill(pid, SIGCONT), 0);
    read_all(fd, r.out, sizeof r.out);
    close(fd);
    assert_int_equal(wait_code(pid), 130);
    assert_contains(r.out, "stopped after batch");
    assert_contains(r.out, "run it again to resume");
    unlink(err_path(&t));

    /* Part of the rows were copied, each batch whole. */
    int64_t copied = query_int(t.db, "SELECT count(*) FROM items_v2");
    assert_true(copied >= 50 && copied < 3000);
    assert_int_equal(copied % 50, 0);
    /* Its process is gone: the backfill is stopped, not running. */
    RUN(&r, &t, t.path, "status", "items", "--json");
    assert_json(t.db, r.out, "$.backfill.state", "stopped");
    assert_json(t.db, r.out, "$.backfill.runner.activity", "stopped");
    assert_int_equal(json_int_at(t.db, r.out, "$.backfill.runner.pid"), pid);
    assert_int_equal(json_int_at(t.db, r.out, "$.backfill.rows_done"),
                     copied);
    RUN(&r, &t, t.path, "status", "items");
    assert_contains(r.out, "backfill    stopped ");
    assert_contains(r.out, " s ago (process ");
    assert_contains(r.out, " is gone)");
    RUN(&r, &t, t.path, "list");
    assert_contains(r.out, "backfill at ");
    assert_contains(r.out, ", stopped ");

    /* Again: it resumes after the last batch, and finishes. */
    RUN(&r, &t, t.path, "backfill", "items", "--json");
    assert_code(&r, 0);
    assert_json(t.db, r.out, "$.outcome", "finished");
    assert_json(t.db, r.out, "$.rows_done", "3000");
    /* Counts cover the whole backfill, both runs. */
    assert_int_equal(json_int_at(t.db, r.out, "$.rows_written"), 3000);
    RUN(&r, &t, t.path, "stage", "items", "SHADOW", "--reason", "x");
    RUN(&r, &t, t.path, "verify", "items");
    assert_code(&r, 0);
    assert_contains(r.out, "clean");
    done_tables(&t);
}

/* SIGTERM stops a backfill as Ctrl-C does; a SIGINT the caller ignores (a
 * background job) stays ignored, and the backfill runs to the end. */
static void test_backfill_signals(void **state)
{
    (void)state;
    test_db t;
    items_at_dual_write(&t, 0);
    run_result r;
    const char *const args[] = {t.path,     "backfill",   "items",
                                "--batch",  "50",         "--batch-ms",
                                "-1",       "--pause-ms", "20",
                                "--restart", NULL};
    char line[512];
    int fd;
    pid_t pid = start(args, &fd, err_path(&t), NULL);
    first_line(fd, line, sizeof line);
    assert_int_equal(kill(pid, SIGTERM), 0);
    read_all(fd, r.out, sizeof r.out);
    close(fd);
    assert_int_equal(wait_code(pid), 130);
    assert_contains(r.out, "stopped after batch");

    /* Ignored before exec, ignored after. */
    struct sigaction ignore, old;
    memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    assert_int_equal(sigaction(SIGINT, &ignore, &old), 0);
    pid = start(args, &fd, err_path(&t), NULL);
    assert_int_equal(sigaction(SIGINT, &old, NULL), 0);
    first_line(fd, line, sizeof line);
    assert_int_equal(kill(pid, SIGINT), 0);
    read_all(fd, r.out, sizeof r.out);
    close(fd);
    assert_int_equal(wait_code(pid), 0);
    assert_contains(r.out, "finished, 3000 rows");
    unlink(err_path(&t));
    done_tables(&t);
}

/* ---- the progress bar on a terminal -------------------------------------- */

/* Runs dwctl with argv on a pseudo-terminal `columns` wide; its output (all
 * of it, stdout and stderr) into out. Returns the exit code. */
static int run_on_terminal(const char *const *argv, int columns, char *out,
                           size_t size)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    assert_true(master >= 0);
    assert_int_equal(grantpt(master), 0);
    assert_int_equal(unlockpt(master), 0);
    struct winsize ws;
    memset(&ws, 0, sizeof ws);
    ws.ws_row = 24;
    ws.ws_col = (unsigned short)columns;
    assert_int_equal(ioctl(master, TIOCSWINSZ, &ws), 0);
    char slave_name[256];
    snprintf(slave_name, sizeof slave_name, "%s", ptsname(master));
    const char *args[64];
    char words[512];
    tool_argv(args, words, sizeof words, argv);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setsid();
        int slave = open(slave_name, O_RDWR);
        dup2(slave, 1);
        dup2(slave, 2);
        close(master);
        /* The terminal's own width is what counts, not an inherited one. */
        unsetenv("COLUMNS");
        execvp(args[0], (char *const *)args);
        _exit(127);
    }
    /* Read until the child is gone (EIO on Linux once the slave closes). */
    size_t used = 0;
    for (;;) {
        struct pollfd p = {master, POLLIN, 0};
        int ready = poll(&p, 1, 10000);
        assert_true(ready > 0);
        ssize_t n = read(master, out + used, size - 1 - used);
        if (n <= 0)
            break;
        used += (size_t)n;
        if (used == size - 1)
            break;
    }
    out[used] = '\0';
    close(master);
    return wait_code(pid);
}

/* Every redraw of the bar fits in fewer columns than the terminal has: none
 * wraps and leaves a line behind. Returns how many there were. */
static int assert_fits(const char *out, int columns)
{
    int redraws = 0;
    for (const char *p = out; (p = strstr(p, "\r\033[K")); redraws++) {
        p += 4;
        size_t n = strcspn(p, "\r\n");
        if (n >= (size_t)columns)
            print_error("%zu columns on a terminal %d wide: \"%.*s\"\n", n,
                        columns, (int)n, p);
        assert_true(n < (size_t)columns);
    }
    return redraws;
}

static void test_progress_bar_on_a_terminal(void **state)
{
    (void)state;
    test_db t;
    items_at_dual_write(&t, 0);
    static char out[65536];
    /* A narrow terminal: the bar shrinks, then goes, the numbers stay. */
    const char *const narrow[] = {t.path,    "backfill", "items",
                                  "--batch", "300",      "--batch-ms",
                                  "-1",      "--restart", NULL};
    assert_int_equal(run_on_terminal(narrow, 60, out, sizeof out), 0);
    assert_contains(out, "\r\033[K[");
    assert_true(assert_fits(out, 60) >= 2);
    assert_int_equal(run_on_terminal(narrow, 40, out, sizeof out), 0);
    assert_true(assert_fits(out, 40) >= 2);
    assert_contains(out, "3000/3000 rows");

    /* 30 batches, 40 ms apart: over a second, so an estimate is told. */
    const char *const backfill[] = {t.path,       "backfill",   "items",
                                    "--batch",    "100",        "--batch-ms",
                                    "-1",         "--pause-ms", "40",
                                    "--restart",  NULL};
    assert_int_equal(run_on_terminal(backfill, 80, out, sizeof out), 0);
    /* The bar is redrawn in place, with rows, rate and time left. */
    assert_contains(out, "\r\033[K[");
    assert_contains(out, "##");
    assert_contains(out, "rows/s");
    assert_contains(out, "s left");
    assert_contains(out, "100.0%  3000/3000 rows");
    assert_contains(out, "finished, 3000 rows");
    assert_true(assert_fits(out, 80) >= 2);
    assert_null(strstr(out, "backfill items: 100/3000"));
    /* The first batch tells no time left: one batch is no estimate. */
    const char *first = strstr(out, "\r\033[K[");
    size_t first_len = strcspn(first + 4, "\r");
    char first_bar[256];
    snprintf(first_bar, sizeof first_bar, "%.*s", (int)first_len, first + 4);
    assert_contains(first_bar, "-- rows/s  -- left");
    /* Later, an estimate: digits before "s left". */
    const char *told = strstr(out, "rows/s  ");
    while (told && strncmp(told + 8, "--", 2) == 0)
        told = strstr(told + 1, "rows/s  ");
    assert_non_null(told);

    /* verify shows its progress too, in keys. */
    run_result r;
    RUN(&r, &t, t.path, "stage", "items", "SHADOW", "--reason", "x");
    assert_code(&r, 0);
    const char *const verify[] = {t.path, "verify", "items", NULL};
    assert_int_equal(run_on_terminal(verify, 80, out, sizeof out), 0);
    assert_contains(out, "\r\033[K[");
    assert_contains(out, "100.0%  3000/3000 keys");
    assert_contains(out, "clean");
    assert_true(assert_fits(out, 80) >= 2);
    /* Without a terminal, a line now and then. */
    RUN(&r, &t, t.path, "verify", "items");
    assert_code(&r, 0);
    assert_contains(r.out, "verify items: 1000/3000 keys (33.3%)");
    done_tables(&t);
}

/* ---- the --json member names, against the man page ----------------------- */

/* One section of the man page's JSON OUTPUT: the member names it documents
 * and the objects its members are (an "X object" section each). */
typedef struct doc_section {
    char title[32];
    char names[48][32];
    int nnames;
    char refs[8][32];
    int nrefs;
} doc_section;

typedef struct json_docs {
    doc_section s[24];
    int n;
} json_docs;

/* tools/dwctl.1, looked for upwards from the tool (BUILD/tools/dwctl,
 * whatever BUILD is). */
static FILE *open_man_page(void)
{
    char path[4400];
    snprintf(path, sizeof path, "%s", dwctl_path);
    for (int up = 0; up < 6; up++) {
        char *slash = strrchr(path, '/');
        if (!slash)
            break;
        *slash = '\0';
        char man[4500];
        snprintf(man, sizeof man, "%s/tools/dwctl.1", path);
        FILE *f = fopen(man, "r");
        if (f)
            return f;
    }
    fail_msg("tools/dwctl.1 not found above %s", dwctl_path);
    return NULL;
}

/* Reads the sections of JSON OUTPUT: each ".TP" then ".B name" is a
 * member; "\fIX\fR object" on the line after it names the object it is. */
static void read_json_docs(json_docs *d)
{
    memset(d, 0, sizeof *d);
    FILE *f = open_man_page();
    char line[512];
    int in_json = 0, tag = 0, described = 0;
    doc_section *cur = NULL;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, ".SH ", 4) == 0) {
            in_json = strcmp(line, ".SH JSON OUTPUT") == 0;
            cur = NULL;
            continue;
        }
        if (!in_json)
            continue;
        if (strncmp(line, ".SS ", 4) == 0) {
            assert_true(d->n < 24);
            cur = &d->s[d->n++];
            const char *t = line + 4;
            snprintf(cur->title, sizeof cur->title, "%.*s",
                     (int)strcspn(t + (*t == '"'), "\""), t + (*t == '"'));
            continue;
        }
        if (strcmp(line, ".TP") == 0) {
            tag = 1;
            continue;
        }
        if (cur && tag && strncmp(line, ".B ", 3) == 0) {
            assert_true(cur->nnames < 48);
            snprintf(cur->names[cur->nnames++], 32, "%.31s", line + 3);
            tag = 0;
            described = 1;
            continue;
        }
        tag = 0;
        const char *ref = described ? strstr(line, "\\fI") : NULL;
        if (cur && ref && strstr(ref, "\\fR object")) {
            assert_true(cur->nrefs < 8);
            snprintf(cur->refs[cur->nrefs++], 32, "%.*s object",
                     (int)strcspn(ref + 3, "\\"), ref + 3);
        }
        described = 0;
    }
    fclose(f);
}

static const doc_section *doc_find(const json_docs *d, const char *title)
{
    for (int i = 0; i < d->n; i++)
        if (strcmp(d->s[i].title, title) == 0)
            return &d->s[i];
    fail_msg("the man page documents no JSON for \"%s\"", title);
    return NULL;
}

/* Whether `name` is documented for the section, or an object it names. */
static int doc_has(const json_docs *d, const doc_section *s, const char *name,
                   int depth)
{
    for (int i = 0; i < s->nnames; i++)
        if (strcmp(s->names[i], name) == 0)
            return 1;
    for (int i = 0; depth < 3 && i < s->nrefs; i++)
        if (doc_has(d, doc_find(d, s->refs[i]), name, depth + 1))
            return 1;
    return 0;
}

/* The member names of a document (the stored spec's own left out: its
 * format is define's), each checked against the command's section and
 * added to `seen`. */
static void check_json_names(sqlite3 *db, const json_docs *d,
                             const char *command, const char *doc,
                             sqlite3_str *seen)
{
    const doc_section *s = doc_find(d, command);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT DISTINCT key FROM json_tree(?1) "
                                        "WHERE typeof(key) = 'text' AND "
                                        "path NOT LIKE '$.spec%'",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, doc, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        if (!doc_has(d, s, name, 0))
            print_error("dwctl %s --json prints \"%s\", which the man page "
                        "does not document\n",
                        command, name);
        assert_true(doc_has(d, s, name, 0));
        sqlite3_str_appendf(seen, "|%s|", name);
    }
    sqlite3_finalize(st);
}

/* Every name documented for the command was printed by one of its runs. */
static void check_all_printed(const json_docs *d, const char *command,
                              const char *seen, int depth)
{
    const doc_section *s = doc_find(d, command);
    for (int i = 0; i < s->nnames; i++) {
        char want[40];
        snprintf(want, sizeof want, "|%s|", s->names[i]);
        if (!strstr(seen, want))
            print_error("the man page documents \"%s\" for %s, which dwctl "
                        "%s --json did not print\n",
                        s->names[i], command, command);
        assert_non_null(strstr(seen, want));
    }
    for (int i = 0; depth < 3 && i < s->nrefs; i++)
        check_all_printed(d, s->refs[i], seen, depth + 1);
}

/* The --json member names of every command are the man page's: each name
 * printed is documented, each documented name is printed. */
static void test_json_names_documented(void **state)
{
    (void)state;
    json_docs d;
    read_json_docs(&d);
    test_db t;
    make_tables(&t);
    define_items(&t);
    run_result r;
    RUN(&r, &t, t.path, "stage", "items", "DUAL_WRITE", "--reason", "x");
    static const char *const commands[] = {
        "backfill", "verify", "mismatches", "status", "list",
        "history",  "canary", "repair"};
    enum { NCOMMANDS = sizeof commands / sizeof *commands };
    sqlite3_str *seen[NCOMMANDS];
    for (int i = 0; i < NCOMMANDS; i++)
        seen[i] = sqlite3_str_new(NULL);

    /* Something in every part: a backfill, divergences with differing
     * columns, a logged mismatch, an override. */
    RUN(&r, &t, t.path, "backfill", "items", "--json");
    assert_code(&r, 0);
    check_json_names(t.db, &d, "backfill", r.out, seen[0]);
    RUN(&r, &t, t.path, "stage", "items", "SHADOW", "--reason", "x");
    exec_ok(t.db, "UPDATE items_v2 SET tenths = -1 WHERE id = 7;"
                  "DELETE FROM items_v2 WHERE id = 8;");
    RUN(&r, &t, t.path, "verify", "items", "--json");
    assert_code(&r, 4);
    check_json_names(t.db, &d, "verify", r.out, seen[1]);
    dw_migration *h = NULL;
    assert_int_equal(dw_sqlite_open_stored(&h, t.db, "items", 0, NULL), DW_OK);
    int equal = 1;
    dw_value key = dw_int(7);
    assert_dw_ok(h, dw_compare(&equal, h, &key, 1));
    dw_close(h);
    char keys[400];
    write_file(&t, "keys.txt", "5\n", keys, sizeof keys);
    RUN(&r, &t, t.path, "canary", "items", "--add-keys", keys, "--stage",
        "DUAL_WRITE", "--json");
    assert_code(&r, 0);
    check_json_names(t.db, &d, "canary", r.out, seen[6]);
    const char *const reads[] = {"mismatches", "status", "list", "history",
                                 "canary"};
    for (int i = 0; i < 5; i++) {
        if (strcmp(reads[i], "list") == 0)
            RUN(&r, &t, t.path, "list", "--json");
        else
            RUN(&r, &t, t.path, reads[i], "items", "--json");
        int c = 0;
        while (strcmp(commands[c], reads[i]) != 0)
            c++;
        check_json_names(t.db, &d, reads[i], r.out, seen[c]);
    }
    RUN(&r, &t, t.path, "repair", "items", "--json");
    assert_code(&r, 0);
    check_json_names(t.db, &d, "repair", r.out, seen[7]);

    for (int i = 0; i < NCOMMANDS; i++) {
        char *text = sqlite3_str_finish(seen[i]);
        assert_non_null(text);
        check_all_printed(&d, commands[i], text, 0);
        sqlite3_free(text);
    }
    done_tables(&t);
}

/* ---- remove --------------------------------------------------------------- */

/* A migration is removed only where no data is half-moved; the name
 * defined again starts clean, its history noting the removal. */
static void test_remove(void **state)
{
    (void)state;
    test_db t;
    items_at_dual_write(&t, 1);
    run_result r;
    RUN(&r, &t, t.path, "remove", "items", "--reason", "mistake");
    assert_code(&r, 2);
    assert_contains(r.err, "DUAL_WRITE");
    assert_contains(r.err, "half-moved");
    RUN(&r, &t, t.path, "remove", "items");
    assert_code(&r, 2);
    assert_contains(r.err, "--reason");
    RUN(&r, &t, t.path, "remove", "itmes", "--reason", "mistake");
    assert_code(&r, 6);
    RUN(&r, &t, t.path, "status", "items");
    assert_code(&r, 0);

    RUN(&r, &t, t.path, "stage", "items", "OFF", "--reason", "back");
    assert_code(&r, 0);
    RUN(&r, &t, t.path, "remove", "items", "--reason", "wrong mapping");
    assert_code(&r, 0);
    assert_contains(r.out, "items: removed");
    RUN(&r, &t, t.path, "status", "items");
    assert_code(&r, 6);
    RUN(&r, &t, t.path, "list");
    assert_contains(r.out, "no migrations");
    /* The rows copied stay: the tables are the application's. */
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM items_v2"), 3000);

    define_items(&t);
    RUN(&r, &t, t.path, "history", "items", "--json");
    assert_code(&r, 0);
    assert_int_equal(json_len_at(t.db, r.out, "$.history"), 1);
    char detail[512];
    json_at(t.db, r.out, "$.history[0].detail", detail, sizeof detail);
    assert_contains(detail, "defined again");
    assert_contains(detail, ": wrong mapping");
    RUN(&r, &t, t.path, "status", "items", "--json");
    assert_json(t.db, r.out, "$.backfill.state", "not started");
    assert_json(t.db, r.out, "$.verify", "");
    done_tables(&t);
}

/* ---- divergence: verify, mismatches, repair ------------------------------ */

static void test_divergence_found_and_repaired(void **state)
{
    (void)state;
    test_db t;
    items_at_dual_write(&t, 1);
    run_result r;
    RUN(&r, &t, t.path, "stage", "items", "SHADOW", "--reason", "x");
    assert_code(&r, 0);

    /* Someone writes the new model behind the library's back. */
    exec_ok(t.db, "UPDATE items_v2 SET tenths = -1 WHERE id = 7;"
                  "DELETE FROM items_v2 WHERE id = 8;");
    RUN(&r, &t, t.path, "verify", "items", "--json");
    assert_code(&r, 4);
    assert_json(t.db, r.out, "$.clean", "0");
    assert_json(t.db, r.out, "$.different", "1");
    assert_json(t.db, r.out, "$.missing", "1");
    assert_json(t.db, r.out, "$.divergent[0].key", "[7]");
    assert_json(t.db, r.out, "$.divergent[0].kind", "different");
    assert_json(t.db, r.out, "$.divergent[0].diffs[0].column", "tenths");
    assert_json(t.db, r.out, "$.divergent[1].key", "[8]");
    assert_json(t.db, r.out, "$.divergent[1].kind", "missing_new");
    RUN(&r, &t, t.path, "verify", "items");
    assert_code(&r, 4);
    assert_contains(r.out, "DIVERGENT");
    assert_contains(r.out, "[7] different: tenths:");

    RUN(&r, &t, t.path, "status", "items", "--json");
    assert_json(t.db, r.out, "$.next.action", "repair");
    RUN(&r, &t, t.path, "list");
    assert_contains(r.out, "found 2 divergent keys");

    /* A shadow read in the application logs a mismatch. */
    dw_migration *h = NULL;
    char *err = NULL;
    int rc = dw_sqlite_open_stored(&h, t.db, "items", 0, &err);
    if (rc != DW_OK)
        print_error("%s\n", err);
    assert_int_equal(rc, DW_OK);
    int equal = 1;
    dw_value key = dw_int(7);
    assert_dw_ok(h, dw_compare(&equal, h, &key, 1));
    assert_int_equal(equal, 0);
    dw_close(h);
    RUN(&r, &t, t.path, "mismatches", "items", "--json");
    assert_code(&r, 4);
    assert_json(t.db, r.out, "$.entries", "1");
    assert_json(t.db, r.out, "$.mismatches[0].key", "[7]");
    assert_json(t.db, r.out, "$.mismatches[0].kind", "different");
    RUN(&r, &t, t.path, "mismatches", "items");
    assert_code(&r, 4);
    assert_contains(r.out, "[7] different x1");

    RUN(&r, &t, t.path, "repair", "items", "--json");
    assert_code(&r, 0);
    assert_json(t.db, r.out, "$.divergent.repaired", "2");
    assert_json(t.db, r.out, "$.divergent.failed", "0");
    assert_int_equal(
        query_int(t.db, "SELECT tenths FROM items_v2 WHERE id = 7"), 70);
    /* The gate still wants a clean verification after the repair. */
    RUN(&r, &t, t.path, "status", "items");
    assert_contains(r.out, "then verify items");
    assert_contains(r.out, "gate        the gate into LIVE is closed");
    RUN(&r, &t, t.path, "verify", "items");
    assert_code(&r, 0);
    RUN(&r, &t, t.path, "status", "items", "--json");
    assert_json(t.db, r.out, "$.next.action", "stage");
    assert_json(t.db, r.out, "$.next.gate_open", "1");
    /* Shown and cleared as asked: nothing is left to report. */
    RUN(&r, &t, t.path, "mismatches", "items", "--clear");
    assert_code(&r, 0);
    assert_contains(r.out, "[7] different x1");
    assert_contains(r.out, "cleared");
    RUN(&r, &t, t.path, "mismatches", "items");
    assert_code(&r, 0);
    assert_contains(r.out, "0 mismatches logged");
    done_tables(&t);
}

/* ---- canary -------------------------------------------------------------- */

static void test_canary(void **state)
{
    (void)state;
    test_db t;
    items_at_dual_write(&t, 1);
    run_result r;

    RUN(&r, &t, t.path, "canary", "items", "--percent", "10");
    assert_code(&r, 2);
    assert_contains(r.err, "--stage");
    RUN(&r, &t, t.path, "canary", "items", "--percent", "10", "--stage",
        "SHADOW", "--reason", "ten percent compare");
    assert_code(&r, 0);
    assert_contains(r.out, "canary 10.00% of keys at SHADOW");
    /* Onto the new model needs the gate: no verification yet. */
    RUN(&r, &t, t.path, "canary", "items", "--stage", "LIVE");
    assert_code(&r, 3);
    assert_contains(r.err, "--force");
    /* Forcing the gate needs a reason, and the history records it. */
    RUN(&r, &t, t.path, "canary", "items", "--stage", "LIVE", "--force");
    assert_code(&r, 2);
    RUN(&r, &t, t.path, "canary", "items", "--stage", "LIVE", "--force",
        "--reason", "the ten percent are staff");
    assert_code(&r, 0);
    assert_contains(r.out, "at LIVE");
    RUN(&r, &t, t.path, "history", "items", "--json", "--limit", "1");
    assert_json(t.db, r.out, "$.history[0].event", "routing");
    assert_json(t.db, r.out, "$.history[0].forced", "1");
    assert_json(t.db, r.out, "$.history[0].reason", "the ten percent are staff");
    /* Back to SHADOW is gated too (keys that went through COMPLETE left
     * the old model behind): forced again. */
    RUN(&r, &t, t.path, "canary", "items", "--stage", "SHADOW");
    assert_code(&r, 3);
    RUN(&r, &t, t.path, "canary", "items", "--stage", "SHADOW", "--force",
        "--reason", "back to comparing");
    assert_code(&r, 0);
    RUN(&r, &t, t.path, "canary", "items", "--cohort", "qty = 3");
    assert_code(&r, 0);
    assert_contains(r.out, "cohort \"qty = 3\" at SHADOW");
    RUN(&r, &t, t.path, "canary", "items", "--json");
    assert_code(&r, 0);
    assert_json(t.db, r.out, "$.percent", "10");
    assert_json(t.db, r.out, "$.cohort", "qty = 3");
    assert_json(t.db, r.out, "$.stage", "SHADOW");

    /* A list of keys moves ahead: synced into the new model. */
    char keys[400];
    write_file(&t, "keys.txt", "# first movers\n[5]\n6\n\n[ 7 ]\n", keys,
               sizeof keys);
    RUN(&r, &t, t.path, "canary", "items", "--add-keys", keys, "--stage",
        "LIVE", "--reason", "friendly customers");
    assert_code(&r, 0);
    assert_contains(r.out, "3 keys now at LIVE");
    RUN(&r, &t, t.path, "canary", "items", "--json");
    assert_int_equal(json_len_at(t.db, r.out, "$.overrides"), 3);
    assert_json(t.db, r.out, "$.overrides[0].key", "[5]");
    assert_json(t.db, r.out, "$.overrides[0].stage", "LIVE");
    RUN(&r, &t, t.path, "status", "items", "--json");
    assert_json(t.db, r.out, "$.canary.overrides", "3");

    /* Keys from standard input, and removal. */
    r.code = run_in(&r, &t, "[6]\n",
                    (const char *[]){t.path, "canary", "items",
                                     "--remove-keys", "-", NULL});
    assert_code(&r, 0);
    assert_contains(r.out, "1 overrides removed");

    /* A bad line names the file and the line; nothing is applied. */
    write_file(&t, "keys.txt", "[9]\n[1.5]\n", keys, sizeof keys);
    RUN(&r, &t, t.path, "canary", "items", "--add-keys", keys, "--stage",
        "SHADOW");
    assert_code(&r, 2);
    assert_contains(r.err, "keys.txt:2:");
    write_file(&t, "keys.txt", "[9]\n[9,1]\n", keys, sizeof keys);
    RUN(&r, &t, t.path, "canary", "items", "--add-keys", keys, "--stage",
        "SHADOW");
    assert_code(&r, 2);
    assert_contains(r.err, "keys.txt:2:");
    write_file(&t, "keys.txt", "[\"9\"]\n", keys, sizeof keys);
    RUN(&r, &t, t.path, "canary", "items", "--add-keys", keys, "--stage",
        "SHADOW");
    assert_code(&r, 2);
    assert_contains(r.err, "pass an INTEGER");
    RUN(&r, &t, t.path, "canary", "items", "--json");
    assert_int_equal(json_len_at(t.db, r.out, "$.overrides"), 2);

    RUN(&r, &t, t.path, "canary", "items", "--percent", "101");
    assert_code(&r, 2);
    RUN(&r, &t, t.path, "canary", "items", "--clear", "--reason", "done");
    assert_code(&r, 0);
    assert_contains(r.out, "items: canary none");
    RUN(&r, &t, t.path, "canary", "items", "--json");
    assert_json(t.db, r.out, "$.percent", "0");
    assert_json(t.db, r.out, "$.cohort", "");
    done_tables(&t);
}

/* ---- a migration whose mappings are C callbacks ------------------------- */

static int up_callback(dw_row *out, const dw_row *in, void *payload)
{
    (void)payload;
    const dw_value *qty = dw_row_get(in, "qty");
    int rc = dw_row_set_text(out, "label", "cb");
    if (rc == DW_OK)
        rc = dw_row_set_int(out, "tenths", qty ? qty->i * 10 : 0);
    return rc;
}

static void test_callback_migration(void **state)
{
    (void)state;
    test_db t;
    make_tables(&t);
    static const char *const key[] = {"id"};
    static const char *const old_cols[] = {"name", "qty"};
    static const char *const new_cols[] = {"label", "tenths"};
    dw_options o = options_for("in_app", TEST_SIDE("items", key, old_cols),
                               TEST_SIDE("items_v2", key, new_cols));
    o.up_fn = up_callback;
    o.map_version = "labels v1";
    dw_migration *h = NULL;
    char *err = NULL;
    assert_int_equal(dw_sqlite_open(&h, t.db, &o, &err), DW_OK);
    dw_close(h);

    run_result r;
    RUN(&r, &t, t.path, "list");
    assert_code(&r, 0);
    assert_contains(r.out, "in_app");
    assert_contains(r.out, "run in the application");
    RUN(&r, &t, t.path, "stage", "in_app", "DUAL_WRITE", "--reason", "go");
    assert_code(&r, 0);
    RUN(&r, &t, t.path, "status", "in_app");
    assert_code(&r, 0);
    assert_contains(r.out, "up: C callback");
    assert_contains(r.out, "inside the application");
    RUN(&r, &t, t.path, "backfill", "in_app");
    assert_code(&r, 2);
    assert_contains(r.err, "run inside the application");
    RUN(&r, &t, t.path, "verify", "in_app");
    assert_code(&r, 2);
    assert_contains(r.err, "run inside the application");
    RUN(&r, &t, t.path, "repair", "in_app");
    assert_code(&r, 2);
    assert_contains(r.err, "run inside the application");
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM items_v2"), 0);
    /* Defining one from the command line is SQL only. */
    char spec[400];
    write_file(&t, "spec.json",
               "{\"old\": {\"table\": \"items\", \"key\": [\"id\"]},"
               " \"new\": {\"table\": \"items_v2\", \"key\": [\"id\"]},"
               " \"up\": {\"callback\": \"v9\"}}",
               spec, sizeof spec);
    RUN(&r, &t, t.path, "define", "other", "--file", spec);
    assert_code(&r, 2);
    assert_contains(r.err, "dw_sqlite_open()");
    done_tables(&t);
}

/* ---- output that stays whole --------------------------------------------- */

static void test_json_stays_valid(void **state)
{
    (void)state;
    test_db t;
    make_tables(&t);
    run_result r;
    /* A name with quotes and a tab, a reason with a control character and
     * bytes that are not UTF-8: every document still parses, and the name
     * comes back as it went in. */
    static const char odd[] = "odd \"name\"\twith tab";
    RUN(&r, &t, t.path, "define", odd, "--old", "items", "--old-key", "id",
        "--old-columns", "name,qty", "--new", "items_v2", "--new-key", "id",
        "--up", "label=name", "--up", "tenths=qty", "--reason",
        "r\x02\xfe\"q\\");
    assert_code(&r, 0);
    RUN(&r, &t, t.path, "list", "--json");
    assert_code(&r, 0);
    assert_json(t.db, r.out, "$.migrations[0].name", odd);
    RUN(&r, &t, t.path, "history", odd, "--json");
    assert_code(&r, 0);
    assert_json(t.db, r.out, "$.history[0].reason",
                "r\x02\xc3\xbe\"q\\"); /* the stray byte as U+00FE */
    RUN(&r, &t, t.path, "status", odd);
    assert_code(&r, 0);
    assert_contains(r.out, "stage 'odd \"name\"\twith tab' DUAL_WRITE");

    /* Output that cannot be written is a failure, JSON or not. */
    assert_int_equal(run_to("/dev/full", &t,
                            (const char *[]){t.path, "status", odd, "--json",
                                             NULL}),
                     1);
    assert_int_equal(run_to("/dev/full", &t,
                            (const char *[]){t.path, "list", NULL}),
                     1);
    /* A command that fails prints no half document. */
    char notdb[400];
    write_file(&t, "spec.json", "this is not a database, just text\n", notdb,
               sizeof notdb);
    RUN(&r, &t, notdb, "list", "--json");
    assert_code(&r, 1);
    assert_string_equal(r.out, "");
    done_tables(&t);
}

/* ---- the next step at COMPLETE, and the contract's keys ------------------ */

static void test_contract_held_by_routed_keys(void **state)
{
    (void)state;
    test_db t;
    items_at_dual_write(&t, 1);
    run_result r;
    RUN(&r, &t, t.path, "stage", "items", "SHADOW", "--reason", "x");
    RUN(&r, &t, t.path, "verify", "items");
    assert_code(&r, 0);
    r.code = run_in(&r, &t, "[5]\n",
                    (const char *[]){t.path, "canary", "items", "--add-keys",
                                     "-", "--stage", "LIVE", NULL});
    assert_code(&r, 0);
    static const char *const stages[] = {"LIVE", "RAMPDOWN", "COMPLETE"};
    for (int i = 0; i < 3; i++) {
        RUN(&r, &t, t.path, "stage", "items", stages[i], "--reason", "on");
        assert_code(&r, 0);
    }
    RUN(&r, &t, t.path, "status", "items", "--json");
    assert_json(t.db, r.out, "$.next.action", "canary");
    assert_json(t.db, r.out, "$.next.gate_open", "0");
    assert_contains(r.out, "1 keys have overrides below COMPLETE");
    char backup[400];
    snprintf(backup, sizeof backup, "%s/backup.db", t.dir);
    RUN(&r, &t, t.path, "contract", "items", "--backup", backup);
    assert_code(&r, 3);
    r.code = run_in(&r, &t, "5\n",
                    (const char *[]){t.path, "canary", "items",
                                     "--remove-keys", "-", "--json", NULL});
    assert_code(&r, 0);
    assert_int_equal(json_len_at(t.db, r.out, "$.overrides"), 0);
    RUN(&r, &t, t.path, "status", "items", "--json");
    assert_json(t.db, r.out, "$.next.action", "contract");
    assert_json(t.db, r.out, "$.next.gate_open", "1");
    RUN(&r, &t, t.path, "contract", "items", "--backup", backup);
    assert_code(&r, 0);
    done_tables(&t);
}

/* ---- the command line's corners ------------------------------------------ */

static void test_command_line_corners(void **state)
{
    (void)state;
    test_db t;
    make_tables(&t);
    /* A wide table: one --up per column, 40 of them. */
    sqlite3_str *ddl = sqlite3_str_new(NULL);
    sqlite3_str_appendall(ddl, "CREATE TABLE wide(id INTEGER PRIMARY KEY");
    for (int i = 0; i < 40; i++)
        sqlite3_str_appendf(ddl, ", c%d", i);
    sqlite3_str_appendall(ddl, "); CREATE TABLE wide2(id INTEGER PRIMARY KEY");
    for (int i = 0; i < 40; i++)
        sqlite3_str_appendf(ddl, ", d%d", i);
    sqlite3_str_appendall(ddl, ");");
    char *sql = sqlite3_str_finish(ddl);
    exec_ok(t.db, sql);
    sqlite3_free(sql);
    const char *argv[100];
    char ups[40][32];
    int n = 0;
    argv[n++] = t.path;
    argv[n++] = "define";
    argv[n++] = "wide";
    argv[n++] = "--old=wide";
    argv[n++] = "--old-key=id";
    argv[n++] = "--new=wide2";
    argv[n++] = "--new-key=id";
    for (int i = 0; i < 40; i++) {
        snprintf(ups[i], sizeof ups[i], "--up=d%d=c%d", i, i);
        argv[n++] = ups[i];
    }
    argv[n] = NULL;
    run_result r;
    run_in(&r, &t, NULL, argv);
    assert_code(&r, 0);
    assert_contains(r.out, "wide: defined at OFF");

    /* --busy-timeout before DATABASE or after COMMAND, with = or not. */
    RUN(&r, &t, "--busy-timeout=100", t.path, "list");
    assert_code(&r, 0);
    RUN(&r, &t, t.path, "list", "--busy-timeout", "100");
    assert_code(&r, 0);
    RUN(&r, &t, t.path, "list", "--busy-timeout=-4");
    assert_code(&r, 2);

    /* A forced check needs no reason; a real forced jump does. */
    RUN(&r, &t, t.path, "stage", "wide", "SHADOW", "--check", "--force");
    assert_code(&r, 0);
    assert_contains(r.out, "allowed");
    RUN(&r, &t, t.path, "history", "wide", "--json");
    assert_int_equal(json_len_at(t.db, r.out, "$.history"), 1);

    /* Keys: a byte-order mark is skipped; a number out of range, a "+5"
     * and a NUL byte are refused with the file and the line. */
    define_items(&t);
    RUN(&r, &t, t.path, "stage", "items", "DUAL_WRITE", "--reason", "x");
    char keys[400];
    write_file(&t, "keys.txt", "\xEF\xBB\xBF" "5\n", keys, sizeof keys);
    RUN(&r, &t, t.path, "canary", "items", "--add-keys", keys);
    assert_code(&r, 2);
    assert_contains(r.err, "--stage");
    RUN(&r, &t, t.path, "canary", "items", "--add-keys", keys, "--stage",
        "SHADOW", "--json");
    assert_code(&r, 0);
    assert_json(t.db, r.out, "$.overrides[0].key", "[5]");
    write_file(&t, "keys.txt", "6\n99999999999999999999\n", keys,
               sizeof keys);
    RUN(&r, &t, t.path, "canary", "items", "--add-keys", keys, "--stage",
        "SHADOW");
    assert_code(&r, 2);
    assert_contains(r.err, "keys.txt:2: 99999999999999999999 is not a whole");
    write_file(&t, "keys.txt", "+5\n", keys, sizeof keys);
    RUN(&r, &t, t.path, "canary", "items", "--add-keys", keys, "--stage",
        "SHADOW");
    assert_code(&r, 2);
    assert_contains(r.err, "keys.txt:1:");
    r.code = run_in(&r, &t, "[6]\n",
                    (const char *[]){t.path, "canary", "items",
                                     "--remove-keys", "-", "--stage", "LIVE",
                                     NULL});
    assert_code(&r, 2);
    FILE *f = fopen(keys, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite("1\n\0" "2\n", 1, 5, f), 5);
    assert_int_equal(fclose(f), 0);
    RUN(&r, &t, t.path, "canary", "items", "--add-keys", keys, "--stage",
        "SHADOW");
    assert_code(&r, 1);
    assert_contains(r.err, "NUL byte");
    RUN(&r, &t, t.path, "canary", "items", "--json");
    assert_int_equal(json_len_at(t.db, r.out, "$.overrides"), 1);

    /* A finished backfill is not run again without --restart. */
    RUN(&r, &t, t.path, "backfill", "items");
    assert_code(&r, 0);
    assert_contains(r.out, "finished, 3000 rows");
    RUN(&r, &t, t.path, "backfill", "items");
    assert_code(&r, 0);
    assert_contains(r.out, "already finished");
    RUN(&r, &t, t.path, "backfill", "items", "--json");
    assert_json(t.db, r.out, "$.outcome", "already_finished");
    done_tables(&t);
}

/* ---- busy ---------------------------------------------------------------- */

static void test_busy_database(void **state)
{
    (void)state;
    test_db t;
    make_tables(&t);
    define_items(&t);
    run_result r;
    /* Another process holds the write lock: exit 5, nothing moved. */
    exec_ok(t.db, "BEGIN IMMEDIATE");
    RUN(&r, &t, "--busy-timeout", "50", t.path, "stage", "items",
        "DUAL_WRITE", "--reason", "x");
    assert_code(&r, 5);
    /* The reading commands only read: in WAL mode they run beside it. */
    RUN(&r, &t, "--busy-timeout", "0", t.path, "status", "items");
    assert_code(&r, 0);
    RUN(&r, &t, "--busy-timeout", "0", t.path, "list", "--json");
    assert_code(&r, 0);
    RUN(&r, &t, "--busy-timeout", "0", t.path, "history", "items");
    assert_code(&r, 0);
    exec_ok(t.db, "COMMIT");
    RUN(&r, &t, t.path, "status", "items", "--json");
    assert_json(t.db, r.out, "$.stage", "OFF");
    RUN(&r, &t, "--busy-timeout", "soon", t.path, "list");
    assert_code(&r, 2);
    done_tables(&t);
}

/* The tests signal the tool and expect its default reactions, so they must
 * not inherit a caller's: a shell starting `make test &` from a script
 * ignores SIGINT in it, and exec keeps that. The tests that want a signal
 * ignored say so themselves. */
static void reset_inherited_signals(void)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGPIPE};
    struct sigaction dfl;
    sigset_t none;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &dfl, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* ---- damaged state ------------------------------------------------------- */

/* Stored state edited by hand: every command that reads it says what is
 * damaged, naming the table and row, and exits 7 -- never a guess, never a
 * "(null)" stage, never "bad usage". */
static void test_damaged_state(void **state)
{
    (void)state;
    test_db t;
    items_at_dual_write(&t, 0);
    run_result r;
    exec_ok(t.db, "PRAGMA ignore_check_constraints = 1;"
                  "UPDATE dw_migrations SET stage = 99");
    RUN(&r, &t, t.path, "status", "items");
    assert_code(&r, 7);
    assert_contains(r.err, "damaged");
    assert_contains(r.err, "table dw_migrations, row with id 1");
    assert_contains(r.err, "column stage holds 99");
    RUN(&r, &t, t.path, "stage", "items", "SHADOW", "--reason", "x");
    assert_code(&r, 7);
    assert_true(strstr(r.out, "(null)") == NULL);
    RUN(&r, &t, t.path, "remove", "items", "--reason", "x");
    assert_code(&r, 7);
    assert_contains(r.err, "table dw_migrations, row with id 1");
    assert_true(strstr(r.err, "(null)") == NULL);
    RUN(&r, &t, t.path, "list");
    assert_code(&r, 7);
    assert_contains(r.out, "(not a stage)");
    assert_contains(r.out, "cannot open: the stored state of migration "
                           "\"items\" is damaged");
    RUN(&r, &t, t.path, "list", "--json");
    assert_code(&r, 7);
    assert_json(t.db, r.out, "$.migrations[0].stage", "");
    assert_json(t.db, r.out, "$.migrations[0].opened", "0");
    exec_ok(t.db, "UPDATE dw_migrations SET stage = 'LIVE'");
    RUN(&r, &t, t.path, "history", "items");
    assert_code(&r, 7);
    assert_contains(r.err, "column stage holds the text 'LIVE'");

    /* A history row: the listing stops at it, naming it. */
    exec_ok(t.db, "UPDATE dw_migrations SET stage = 1;"
                  "UPDATE dw_history SET to_stage = -1 WHERE id = 2");
    RUN(&r, &t, t.path, "history", "items");
    assert_code(&r, 7);
    assert_contains(r.err, "table dw_history, row with id 2");
    assert_contains(r.err, "column to_stage holds -1");
    assert_true(strstr(r.out, "(null)") == NULL);
    exec_ok(t.db, "UPDATE dw_history SET to_stage = 1 WHERE id = 2");
    RUN(&r, &t, t.path, "history", "items");
    assert_code(&r, 0);
    done_tables(&t);
}

/* A stored spec truncated or edited by hand: the commands on it exit 7
 * saying so; `list` lists the other migrations and marks it. */
static void test_damaged_spec(void **state)
{
    (void)state;
    test_db t;
    make_tables(&t);
    define_items(&t);
    exec_ok(t.db, "CREATE TABLE other(id INTEGER PRIMARY KEY, v TEXT);"
                  "CREATE TABLE other_v2(id INTEGER PRIMARY KEY, v TEXT);");
    run_result r;
    RUN(&r, &t, t.path, "define", "other", "--old", "other", "--old-key",
        "id", "--new", "other_v2", "--new-key", "id", "--up", "v=v");
    assert_code(&r, 0);
    exec_ok(t.db, "UPDATE dw_migrations SET spec = substr(spec, 1, 40) "
                  "WHERE name = 'items'");
    RUN(&r, &t, t.path, "status", "items");
    assert_code(&r, 7);
    assert_contains(r.err, "migration \"items\": its stored spec is damaged");
    assert_contains(r.err, "does not parse as JSON");
    RUN(&r, &t, t.path, "list");
    assert_code(&r, 7);
    assert_contains(r.out, "other ");
    assert_contains(r.out, "items ");
    assert_contains(r.out, "cannot open: migration \"items\": its stored "
                           "spec is damaged");
    RUN(&r, &t, t.path, "list", "--json");
    assert_code(&r, 7);
    assert_int_equal(json_len_at(t.db, r.out, "$.migrations"), 2);
    /* Valid JSON, but not what its digest was taken of. */
    exec_ok(t.db, "UPDATE dw_migrations SET spec = (SELECT spec FROM "
                  "dw_migrations WHERE name = 'other') WHERE name = 'items'");
    RUN(&r, &t, t.path, "status", "items");
    assert_code(&r, 7);
    assert_contains(r.err, "parses as JSON, but was changed");
    assert_true(strstr(r.err, "renamed") == NULL);
    RUN(&r, &t, t.path, "status", "other");
    assert_code(&r, 0);
    done_tables(&t);
}

/* Numbers on the command line are decimal as the docs say: no hex, sign,
 * exponent or spaces. */
static void test_strict_numbers(void **state)
{
    (void)state;
    test_db t;
    items_at_dual_write(&t, 1);
    run_result r;
    static const char *const bad[] = {"0x10", "1e1", " 5", "+5", "5 ",
                                      "inf",  "nan", "-0", "101", "5.",
                                      ".5",   ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        RUN(&r, &t, t.path, "canary", "items", "--percent", bad[i],
            "--stage", "DUAL_WRITE");
        assert_code(&r, 2);
        assert_contains(r.err, "--percent wants a decimal number");
    }
    RUN(&r, &t, t.path, "canary", "items", "--percent", "12.5", "--stage",
        "DUAL_WRITE", "--reason", "try");
    assert_code(&r, 0);
    RUN(&r, &t, t.path, "--busy-timeout", "0x10", "list");
    assert_code(&r, 2);
    RUN(&r, &t, t.path, "--busy-timeout", " 10", "list");
    assert_code(&r, 2);
    RUN(&r, &t, t.path, "backfill", "items", "--batch", "0x10");
    assert_code(&r, 2);
    RUN(&r, &t, t.path, "backfill", "items", "--batch", "+10");
    assert_code(&r, 2);
    done_tables(&t);
}

/* A new model of the key alone (a link table) is defined from options with
 * no --up: it needs no mapping, and the status shows it has no columns.
 * Into a new model with columns, no --up is refused with the library's
 * reason. */
static void test_define_key_only(void **state)
{
    (void)state;
    test_db t;
    make_tables(&t);
    exec_ok(t.db, "CREATE TABLE tag_item(tag_id INTEGER NOT NULL, item_id "
                  "INTEGER NOT NULL, PRIMARY KEY(tag_id, item_id));"
                  "CREATE TABLE tag_item_v2(tag_id INTEGER NOT NULL, item_id "
                  "INTEGER NOT NULL, PRIMARY KEY(tag_id, item_id)) WITHOUT "
                  "ROWID;"
                  "INSERT INTO tag_item VALUES(1, 10), (2, 10);");
    run_result r;
    RUN(&r, &t, t.path, "define", "links", "--old", "tag_item", "--old-key",
        "tag_id,item_id", "--new", "tag_item_v2", "--new-key",
        "tag_id,item_id");
    assert_code(&r, 0);
    assert_contains(r.out, "links: defined at OFF");
    RUN(&r, &t, t.path, "status", "links", "--json");
    assert_code(&r, 0);
    assert_json(t.db, r.out, "$.spec.up", "{\"sql\":{}}");
    /* The status says a side of the key alone has no columns. */
    RUN(&r, &t, t.path, "status", "links");
    assert_code(&r, 0);
    assert_contains(r.out, "tag_item(tag_id, item_id) columns: none, the "
                           "key alone\n");
    RUN(&r, &t, t.path, "define", "no_up", "--old", "items", "--old-key",
        "id", "--new", "items_v2", "--new-key", "id");
    assert_code(&r, 2);
    assert_contains(r.err, "an up mapping is required");
    test_db_close(&t);
}

int main(int argc, char **argv)
{
    (void)argc;
    reset_inherited_signals();
    test_self_init(argv[0]);
    /* The tool sits beside the tests: BUILD/tools/dwctl. */
    char *slash = strrchr(test_self, '/');
    assert_non_null(slash);
    snprintf(dwctl_path, sizeof dwctl_path, "%.*s/../tools/dwctl",
             (int)(slash - test_self), test_self);
    if (access(dwctl_path, X_OK) != 0) {
        fprintf(stderr, "test_dwctl: %s is not built\n", dwctl_path);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_usage),
        cmocka_unit_test(test_define_and_list),
        cmocka_unit_test(test_define_refuses_ddl_setup),
        cmocka_unit_test(test_whole_migration),
        cmocka_unit_test(test_backfill_interrupted_and_resumed),
        cmocka_unit_test(test_backfill_signals),
        cmocka_unit_test(test_progress_bar_on_a_terminal),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_json_names_documented),
        cmocka_unit_test(test_divergence_found_and_repaired),
        cmocka_unit_test(test_canary),
        cmocka_unit_test(test_callback_migration),
        cmocka_unit_test(test_busy_database),
        cmocka_unit_test(test_json_stays_valid),
        cmocka_unit_test(test_contract_held_by_routed_keys),
        cmocka_unit_test(test_command_line_corners),
        cmocka_unit_test(test_damaged_state),
        cmocka_unit_test(test_damaged_spec),
        cmocka_unit_test(test_strict_numbers),
        cmocka_unit_test(test_define_key_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
