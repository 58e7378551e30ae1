/* The backend's side of validation, through the ops table: the neutral
 * description of a table (columns, unique indexes with their collations,
 * foreign keys), a table that is not there or is a view, and what the
 * database says of a mapping expression, a setup statement and the stored
 * old side. The rules themselves are tested through dw_sqlite_open() (test_spec,
 * test_bad_input, ...). */
#include "support.h"

#include <string.h>

#include "internal.h"

#define SCHEMA                                                                 \
    "CREATE TABLE items(id INTEGER PRIMARY KEY, v TEXT);"                      \
    "CREATE TABLE items_v2(id INTEGER PRIMARY KEY, v TEXT);"                   \
    "CREATE TABLE parent(a INTEGER, b TEXT, PRIMARY KEY(a, b));"               \
    "CREATE TABLE child("                                                      \
    "  code varchar(8) NOT NULL COLLATE NOCASE UNIQUE,"                        \
    "  n bigint,"                                                              \
    "  blob_col,"                                                              \
    "  pa INTEGER, pb TEXT,"                                                   \
    "  twice INTEGER GENERATED ALWAYS AS (n * 2),"                             \
    "  amount DECIMAL(10,2),"                                                  \
    "  FOREIGN KEY(pa, pb) REFERENCES parent(a, b),"                           \
    "  FOREIGN KEY(n) REFERENCES items);"                                      \
    "CREATE UNIQUE INDEX child_pair ON child(pb, pa);"                         \
    "CREATE UNIQUE INDEX child_some ON child(n) WHERE n > 0;"                  \
    "CREATE UNIQUE INDEX child_lower ON child(lower(code));"                   \
    "CREATE VIEW items_view AS SELECT * FROM items;"

typedef struct fixture {
    test_db t;
    dw_migration *h;
} fixture;

static int setup(void **state)
{
    static fixture f;
    memset(&f, 0, sizeof f);
    test_db_open(&f.t);
    exec_ok(f.t.db, SCHEMA);
    static const char *const key[] = {"id"};
    static const dw_column_map up[] = {{"v", "v"}};
    dw_options o = DW_OPTIONS_INIT;
    o.name = "catalog";
    o.old_side.table = "items";
    o.old_side.key_columns = key;
    o.old_side.nkey_columns = 1;
    o.new_side.table = "items_v2";
    o.new_side.key_columns = key;
    o.new_side.nkey_columns = 1;
    o.up = up;
    o.nup = 1;
    char *err = NULL;
    int rc = dw_sqlite_open(&f.h, f.t.db, &o, &err);
    if (rc != DW_OK)
        print_error("dw_open: %s\n", err ? err : dw_errstr(rc));
    sqlite3_free(err);
    assert_int_equal(rc, DW_OK);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    dw_close(f->h);
    test_db_close(&f->t);
    return 0;
}

static const dw_col_desc *column(const dw_table_desc *t, const char *name)
{
    for (int i = 0; i < t->ncols; i++)
        if (strcmp(t->cols[i].name, name) == 0)
            return &t->cols[i];
    fail_msg("no column %s", name);
    return NULL;
}

static const dw_unique_desc *unique_on(const dw_table_desc *t,
                                       const char *first)
{
    for (int i = 0; i < t->nuniques; i++)
        if (t->uniques[i].cols[0] && strcmp(t->uniques[i].cols[0], first) == 0)
            return &t->uniques[i];
    fail_msg("no unique index on %s", first);
    return NULL;
}

/* Columns in order, spelled as the schema spells them whatever the case
 * asked, with their declared types and neutral classes. */
static void test_describe_columns(void **state)
{
    fixture *f = *state;
    dw_table_desc t;
    memset(&t, 0, sizeof t);
    assert_dw_ok(f->h, f->h->ops->describe_table(f->h, DW_SIDE_NEW, "CHILD",
                                                 &t));
    assert_string_equal(t.name, "child");
    assert_false(t.view);
    assert_int_equal(t.ncols, 7);
    assert_string_equal(t.cols[0].name, "code");
    assert_string_equal(t.cols[6].name, "amount");
    const dw_col_desc *code = column(&t, "code");
    assert_string_equal(code->type, "varchar(8)");
    assert_int_equal(code->type_class, DW_CLASS_TEXT);
    assert_true(code->not_null);
    assert_int_equal(code->pk, 0);
    assert_int_equal(column(&t, "n")->type_class, DW_CLASS_NUMERIC);
    assert_false(column(&t, "n")->not_null);
    assert_string_equal(column(&t, "blob_col")->type, "");
    assert_int_equal(column(&t, "blob_col")->type_class, DW_CLASS_NONE);
    assert_int_equal(column(&t, "amount")->type_class, DW_CLASS_NUMERIC);
    assert_true(column(&t, "twice")->generated);
    assert_false(column(&t, "n")->generated);
    dw__table_desc_free(&t);

    /* Primary key positions, in the key's order. */
    assert_dw_ok(f->h, f->h->ops->describe_table(f->h, DW_SIDE_NEW, "parent",
                                                 &t));
    assert_int_equal(column(&t, "a")->pk, 1);
    assert_int_equal(column(&t, "b")->pk, 2);
    dw__table_desc_free(&t);
}

/* Every unique index or constraint, with its columns in order, their
 * collations, whether partial, and an expression column as NULL. */
static void test_describe_uniques(void **state)
{
    fixture *f = *state;
    dw_table_desc t;
    memset(&t, 0, sizeof t);
    assert_dw_ok(f->h, f->h->ops->describe_table(f->h, DW_SIDE_NEW, "child",
                                                 &t));
    assert_int_equal(t.nuniques, 4);
    const dw_unique_desc *code = unique_on(&t, "code");
    assert_int_equal(code->ncols, 1);
    assert_string_equal(code->colls[0], "NOCASE");
    assert_false(code->partial);
    const dw_unique_desc *pair = unique_on(&t, "pb");
    assert_int_equal(pair->ncols, 2);
    assert_string_equal(pair->cols[1], "pa");
    assert_string_equal(pair->colls[0], "BINARY");
    assert_true(unique_on(&t, "n")->partial);
    int expressions = 0;
    for (int i = 0; i < t.nuniques; i++)
        expressions += t.uniques[i].ncols == 1 && !t.uniques[i].cols[0];
    assert_int_equal(expressions, 1);
    dw__table_desc_free(&t);
}

/* Foreign keys: columns in order, the table referenced, and its columns
 * (NULL where the reference names none: its primary key). */
static void test_describe_foreign_keys(void **state)
{
    fixture *f = *state;
    dw_table_desc t;
    memset(&t, 0, sizeof t);
    assert_dw_ok(f->h, f->h->ops->describe_table(f->h, DW_SIDE_NEW, "child",
                                                 &t));
    assert_int_equal(t.nfks, 2);
    int pair = strcmp(t.fks[0].ref_table, "parent") == 0 ? 0 : 1;
    const dw_fk_desc *p = &t.fks[pair], *items = &t.fks[1 - pair];
    assert_string_equal(p->ref_table, "parent");
    assert_int_equal(p->ncols, 2);
    assert_string_equal(p->cols[0], "pa");
    assert_string_equal(p->cols[1], "pb");
    assert_string_equal(p->ref_cols[0], "a");
    assert_string_equal(p->ref_cols[1], "b");
    assert_string_equal(items->ref_table, "items");
    assert_int_equal(items->ncols, 1);
    assert_string_equal(items->cols[0], "n");
    assert_null(items->ref_cols[0]);
    dw__table_desc_free(&t);
}

/* No such table: DW_ENOTFOUND and no message (the rule words it); a view
 * is described as one, and nothing more. */
static void test_describe_missing_and_view(void **state)
{
    fixture *f = *state;
    dw_table_desc t;
    memset(&t, 0, sizeof t);
    dw__clear_error(f->h);
    assert_int_equal(f->h->ops->describe_table(f->h, DW_SIDE_OLD, "nothing",
                                               &t),
                     DW_ENOTFOUND);
    assert_int_equal(f->h->errcode, DW_OK);
    dw__table_desc_free(&t);
    assert_dw_ok(f->h, f->h->ops->describe_table(f->h, DW_SIDE_OLD,
                                                 "Items_View", &t));
    assert_true(t.view);
    assert_string_equal(t.name, "items_view");
    assert_int_equal(t.ncols, 0);
    dw__table_desc_free(&t);
}

static void check_expr(fixture *f, const char *expr, dw_sql_check *c)
{
    assert_dw_ok(f->h, f->h->ops->check_expr(f->h, "items", expr, c));
}

/* A mapping expression: prepared over the source table or not, and what
 * the rules look at -- the database's words, aggregates, parameters. */
static void test_check_expr(void **state)
{
    fixture *f = *state;
    dw_sql_check c;
    check_expr(f, "upper(v) || id", &c);
    assert_true(c.prepared);
    assert_null(c.errmsg);
    assert_true(c.readonly);
    assert_int_equal(c.columns, 1);
    assert_int_equal(c.params, 0);
    assert_false(c.trailing);
    dw__sql_check_free(&c);

    /* Double-quoted string literals are off: a misspelled name fails. */
    check_expr(f, "\"vv\"", &c);
    assert_false(c.prepared);
    assert_non_null(strstr(c.errmsg, "no such column"));
    assert_false(c.aggregate);
    dw__sql_check_free(&c);

    check_expr(f, "max(v)", &c);
    assert_false(c.prepared);
    assert_true(c.aggregate);
    dw__sql_check_free(&c);

    check_expr(f, "v || ?1", &c);
    assert_true(c.prepared);
    assert_int_equal(c.params, 1);
    dw__sql_check_free(&c);
}

/* One setup statement at a time: kind (read-only or not), emptiness, an
 * error in the database's words, and where the next one starts. */
static void test_check_statement(void **state)
{
    fixture *f = *state;
    dw_sql_check c;
    const char *tail = NULL;
    const char *sql = "DELETE FROM items WHERE id < 0; SELECT 1";
    assert_dw_ok(f->h, f->h->ops->check_statement(f->h, sql, &c, &tail));
    assert_true(c.prepared);
    assert_false(c.readonly);
    assert_false(c.empty);
    assert_string_equal(tail, " SELECT 1");
    dw__sql_check_free(&c);

    assert_dw_ok(f->h, f->h->ops->check_statement(f->h, tail, &c, &tail));
    assert_true(c.readonly);
    assert_int_equal(c.columns, 1);
    dw__sql_check_free(&c);

    assert_dw_ok(f->h, f->h->ops->check_statement(f->h, "  -- nothing", &c,
                                                  &tail));
    assert_true(c.prepared);
    assert_true(c.empty);
    dw__sql_check_free(&c);

    assert_dw_ok(f->h, f->h->ops->check_statement(f->h, "DELETE FROM nowhere",
                                                  &c, &tail));
    assert_false(c.prepared);
    assert_non_null(strstr(c.errmsg, "no such table"));
    dw__sql_check_free(&c);
}

/* The stored spec, as stored (the core reads the old side from it after
 * the contract); NULL when no migration of the handle's name is stored. */
static void test_stored_spec(void **state)
{
    fixture *f = *state;
    char *spec = NULL;
    assert_dw_ok(f->h, f->h->ops->stored_spec(f->h, &spec));
    assert_non_null(spec);
    assert_non_null(strstr(spec, "\"old\":{\"table\":\"items\""));
    dw__free(spec);

    exec_ok(f->t.db, "UPDATE dw_migrations SET spec = '{}'");
    assert_dw_ok(f->h, f->h->ops->stored_spec(f->h, &spec));
    assert_string_equal(spec, "{}");
    dw__free(spec);

    exec_ok(f->t.db, "UPDATE dw_migrations SET name = 'another'");
    spec = (char *)&spec;
    assert_dw_ok(f->h, f->h->ops->stored_spec(f->h, &spec));
    assert_null(spec);
}

/* ---- which unique index a key's collation is checked against ------------ */

/* Keys that order one way under BINARY and another under NOCASE ('Z'
 * comes before 'g' in one, after it in the other). */
#define MIXED_CASE_KEYS \
    "('a'), ('B'), ('c'), ('D'), ('e'), ('F'), ('g'), ('Z')"

static int stop_after_batch(const dw_backfill_progress *progress,
                            void *payload)
{
    (void)progress;
    ++*(int *)payload;
    return 1;
}

/* Migration "keycoll" of key id from t_old (value v) to t_new, or within
 * t_old from v to w; 0 or the code dw_sqlite_open() returned (*err set). */
static int open_keycoll(dw_migration **h, sqlite3 *db, int one_table,
                        char **err)
{
    static const char *const key[] = {"id"};
    static const char *const vcol[] = {"v"};
    static const char *const wcol[] = {"w"};
    static const dw_column_map up_v[] = {{"v", "v"}};
    static const dw_column_map up_w[] = {{"w", "v"}};
    dw_options o = DW_OPTIONS_INIT;
    o.name = "keycoll";
    o.old_side = (dw_side_spec){"t_old", key, 1, vcol, 1};
    o.new_side = one_table ? (dw_side_spec){"t_old", key, 1, wcol, 1}
                           : (dw_side_spec){"t_new", key, 1, vcol, 1};
    o.up = one_table ? up_w : up_v;
    o.nup = 1;
    *h = NULL;
    *err = NULL;
    return dw_sqlite_open(h, db, &o, err);
}

/* A schema with other unique indexes beside the key's opens, and opens
 * again once stored; the backfill, a row a call (each call checks the
 * stored cursor is before the end key), copies every key and a
 * verification in chunks of two counts each once: ranges, ORDER BY and
 * the cursors compared in C agree on the column's collation. */
static void key_schema_works(const char *schema, int one_table,
                             int64_t nkeys)
{
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, schema);
    exec_ok(t.db, "UPDATE t_old SET v = 'v' || id");
    for (int pass = 0; pass < 2; pass++) {
        dw_migration *h;
        char *err;
        int rc = open_keycoll(&h, t.db, one_table, &err);
        if (rc != DW_OK)
            print_error("%s\n%s: %s\n", schema, pass ? "reopen" : "open",
                        err ? err : dw_errstr(rc));
        dw_free(err);
        assert_int_equal(rc, DW_OK);
        if (pass == 0) {
            dw_backfill_options bo = DW_BACKFILL_OPTIONS_INIT;
            int batches = 0;
            bo.batch_rows = 1;
            bo.batch_ms = -1;
            bo.progress = stop_after_batch;
            bo.payload = &batches;
            stage_force_ok(h, DW_STAGE_DUAL_WRITE);
            while ((rc = dw_backfill(NULL, h, &bo)) == DW_MORE)
                assert_true(batches <= nkeys);
            assert_dw(h, rc, DW_OK);
            assert_true(batches >= nkeys);
        }
        dw_verify_options vo = DW_VERIFY_OPTIONS_INIT;
        vo.chunk_rows = 2;
        dw_verify_result r;
        assert_dw_ok(h, dw_verify(&r, h, &vo));
        if (!r.clean || r.keys != nkeys)
            print_error("%s\n%lld keys, %lld missing, %lld extra, %lld "
                        "different\n",
                        schema, (long long)r.keys, (long long)r.missing,
                        (long long)r.extra, (long long)r.different);
        assert_true(r.clean);
        assert_int_equal(r.keys, nkeys);
        assert_int_equal(query_int(t.db, one_table
                                             ? "SELECT count(*) FROM t_old "
                                               "WHERE w IS v"
                                             : "SELECT count(*) FROM t_new"),
                         nkeys);
        dw_close(h);
    }
    test_db_close(&t);
}

static void test_key_collation_other_indexes(void **state)
{
    (void)state;
    /* A BINARY primary key beside a NOCASE unique index on it (one
     * address per mailbox whatever its case). */
    key_schema_works(
        "CREATE TABLE t_old(id TEXT PRIMARY KEY, v TEXT, w TEXT);"
        "CREATE UNIQUE INDEX t_old_ci ON t_old(id COLLATE NOCASE);"
        "CREATE TABLE t_new(id TEXT PRIMARY KEY, v TEXT);"
        "CREATE UNIQUE INDEX t_new_ci ON t_new(id COLLATE NOCASE);"
        "INSERT INTO t_old(id) VALUES " MIXED_CASE_KEYS ";",
        0, 8);
    /* A partial NOCASE one: 'a' and 'A' are both keys. */
    key_schema_works(
        "CREATE TABLE t_old(id TEXT PRIMARY KEY, v TEXT, w TEXT);"
        "CREATE UNIQUE INDEX t_old_ci ON t_old(id COLLATE NOCASE) "
        "  WHERE v = 'x';"
        "CREATE TABLE t_new(id TEXT PRIMARY KEY, v TEXT);"
        "INSERT INTO t_old(id) VALUES " MIXED_CASE_KEYS ", ('A'), ('b');",
        0, 10);
    /* One table, a unique index over another column and the key. */
    key_schema_works(
        "CREATE TABLE t_old(id TEXT PRIMARY KEY, v TEXT, w TEXT);"
        "CREATE UNIQUE INDEX t_old_wid ON t_old(w, id COLLATE NOCASE);"
        "INSERT INTO t_old(id) VALUES " MIXED_CASE_KEYS ", ('A'), ('b');",
        1, 10);
    /* A NOCASE primary key beside a BINARY index over more columns. */
    key_schema_works(
        "CREATE TABLE t_old(id TEXT COLLATE NOCASE PRIMARY KEY, v TEXT, "
        "  w TEXT);"
        "CREATE UNIQUE INDEX t_old_vid ON t_old(v, id COLLATE BINARY);"
        "CREATE TABLE t_new(id TEXT COLLATE NOCASE PRIMARY KEY, v TEXT);"
        "INSERT INTO t_old(id) VALUES " MIXED_CASE_KEYS ";",
        0, 8);
}

/* A NOCASE key column whose only unique index compares it with BINARY
 * holds 'a' and 'A' apart but ranges it with NOCASE: refused, naming the
 * index and the collations. */
static void test_key_collation_mismatch_named(void **state)
{
    (void)state;
    for (int one_table = 0; one_table <= 1; one_table++) {
        test_db t;
        test_db_open(&t);
        exec_ok(t.db,
                "CREATE TABLE t_old(id TEXT COLLATE NOCASE NOT NULL, v TEXT, "
                "  w TEXT);"
                "CREATE UNIQUE INDEX t_old_bin ON t_old(id COLLATE BINARY);"
                "CREATE UNIQUE INDEX t_old_part ON t_old(id) WHERE v = 'x';"
                "CREATE TABLE t_new(id TEXT COLLATE NOCASE NOT NULL, v TEXT);"
                "CREATE UNIQUE INDEX t_new_k ON t_new(id);");
        dw_migration *h;
        char *err;
        int rc = open_keycoll(&h, t.db, one_table, &err);
        if (rc != DW_ESCHEMA)
            print_error("%d: %s\n", rc, err ? err : "");
        assert_int_equal(rc, DW_ESCHEMA);
        assert_null(h);
        assert_non_null(err);
        assert_non_null(strstr(err, "\"t_old_bin\""));
        assert_non_null(strstr(err, "NOCASE"));
        assert_non_null(strstr(err, "BINARY"));
        assert_null(strstr(err, "t_old_part"));
        dw_free(err);
        test_db_close(&t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_describe_columns, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_describe_uniques, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_describe_foreign_keys, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_describe_missing_and_view, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_check_expr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_statement, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stored_spec, setup, teardown),
        cmocka_unit_test(test_key_collation_other_indexes),
        cmocka_unit_test(test_key_collation_mismatch_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
