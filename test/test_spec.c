/* Tests for dw_sqlite_open(): validation of the spec against the schema, misuse,
 * hostile identifiers, C mapping callbacks. */
#include "support.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* ---- helpers ---------------------------------------------------------------- */

static const char *const k_id[] = {"id"};

/* Rows stored in dw_migrations under `name` (0 when the table is absent). */
static int64_t stored_count(sqlite3 *db, const char *name)
{
    if (query_int(db, "SELECT count(*) FROM sqlite_master WHERE type='table' "
                      "AND name='dw_migrations'") == 0)
        return 0;
    return query_int_with(
        db, "SELECT count(*) FROM dw_migrations WHERE name = ?1", name);
}

static int table_exists(sqlite3 *db, const char *name)
{
    return (int)query_int_with(db,
                               "SELECT count(*) FROM sqlite_master WHERE "
                               "type='table' AND name = ?1",
                               name);
}

/* dw_open must fail with code1 (or code2 when not 0), set *out to NULL, give
 * a message containing `needle` (when not NULL) and store nothing. */
static void open_fails2(sqlite3 *db, const dw_options *o, int code1, int code2,
                        const char *needle)
{
    int dummy = 0;
    dw_migration *h = (dw_migration *)(void *)&dummy;
    char *err = NULL;
    int rc = dw_sqlite_open(&h, db, o, &err);
    if (rc != code1 && (code2 == 0 || rc != code2))
        print_error("dw_open returned %d (%s), expected %d/%d: %s\n", rc,
                    dw_errstr(rc), code1, code2, err ? err : "(no message)");
    assert_true(rc == code1 || (code2 != 0 && rc == code2));
    assert_null(h);
    assert_non_null(err);
    assert_true(strlen(err) > 0);
    if (needle && !strstr(err, needle))
        print_error("message \"%s\" does not mention \"%s\"\n", err, needle);
    if (needle)
        assert_non_null(strstr(err, needle));
    dw_free(err);
    if (db && o && o->name)
        assert_int_equal(stored_count(db, o->name), 0);
}

static void open_fails(sqlite3 *db, const dw_options *o, int code,
                       const char *needle)
{
    open_fails2(db, o, code, 0, needle);
}

static void make_items(sqlite3 *db)
{
    exec_ok(db,
            "CREATE TABLE items_old(id INTEGER PRIMARY KEY, name TEXT, price INTEGER);"
            "CREATE TABLE items_new(id INTEGER PRIMARY KEY, title TEXT, cents INTEGER);"
            "INSERT INTO items_old VALUES(1, 'widget', 5);"
            "INSERT INTO items_new VALUES(1, 'widget', 500);");
}

static const dw_column_map items_up[] = {{"title", "name"},
                                         {"cents", "price * 100"}};

static dw_options items_opts(const char *name)
{
    dw_options o = options_for(name, TEST_SIDE_UNLISTED("items_old", k_id),
                               TEST_SIDE_UNLISTED("items_new", k_id));
    o.up = items_up;
    o.nup = 2;
    return o;
}

/* ---- a plain spec opens ------------------------------------------------------------ */

static void test_open_rowid_integer_pk(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);
    dw_options o = items_opts("items");
    dw_migration *h = open_migration_ok(t.db, &o);
    assert_string_equal(dw_name(h), "items");
    assert_ptr_equal(dw_sqlite_db(h), t.db);
    const char *d = dw_spec_digest(h);
    assert_non_null(d);
    assert_int_equal((int)strlen(d), 64);
    for (int i = 0; i < 64; i++)
        assert_true(isdigit((unsigned char)d[i]) || (d[i] >= 'a' && d[i] <= 'f'));
    int stage = -1;
    assert_dw_ok(h, dw_stage_get(&stage, h));
    assert_int_equal(stage, DW_STAGE_OFF);
    assert_int_equal(stored_count(t.db, "items"), 1);
    dw_close(h);
    /* the same spec opens again, and a NULL errmsg is fine */
    h = NULL;
    h = open_migration_ok(t.db, &o);
    assert_non_null(h);
    dw_close(h);
    assert_int_equal(stored_count(t.db, "items"), 1);
    dw_close(NULL);
    test_db_close(&t);
}

/* ---- unknown names ------------------------------------------------------------------- */

static void test_unknown_tables(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);
    dw_options o = items_opts("m_old_table");
    o.old_side.table = "nosuch_old_tbl";
    open_fails(t.db, &o, DW_ESCHEMA, "nosuch_old_tbl");

    o = items_opts("m_new_table");
    o.new_side.table = "nosuch_new_tbl";
    open_fails(t.db, &o, DW_ESCHEMA, "nosuch_new_tbl");
    test_db_close(&t);
}

static void test_unknown_key_column(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);
    static const char *const bad_key[] = {"idd_x"};
    dw_options o = items_opts("m_key_old");
    o.old_side.key_columns = bad_key;
    open_fails(t.db, &o, DW_ESCHEMA, "idd_x");

    o = items_opts("m_key_new");
    o.new_side.key_columns = bad_key;
    open_fails(t.db, &o, DW_ESCHEMA, "idd_x");
    test_db_close(&t);
}

static void test_unknown_model_column(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);
    static const char *const old_cols[] = {"name", "pricex_q"};
    dw_options o = items_opts("m_model_old");
    o.old_side.columns = old_cols;
    o.old_side.ncolumns = 2;
    open_fails(t.db, &o, DW_ESCHEMA, "pricex_q");

    static const char *const new_cols[] = {"title", "centz_q"};
    static const dw_column_map up2[] = {{"title", "name"}, {"centz_q", "price"}};
    o = items_opts("m_model_new");
    o.new_side.columns = new_cols;
    o.new_side.ncolumns = 2;
    o.up = up2;
    o.nup = 2;
    open_fails(t.db, &o, DW_ESCHEMA, "centz_q");
    test_db_close(&t);
}

static void test_unknown_mapping_target(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);
    static const dw_column_map up[] = {{"titlex_q", "name"},
                                       {"cents", "price * 100"}};
    dw_options o = items_opts("m_target");
    o.up = up;
    open_fails(t.db, &o, DW_ESCHEMA, "titlex_q");

    /* a down mapping into an unknown old column as well */
    static const dw_column_map down[] = {{"namez_q", "title"},
                                         {"price", "cents / 100"}};
    o = items_opts("m_target_down");
    o.down = down;
    o.ndown = 2;
    open_fails(t.db, &o, DW_ESCHEMA, "namez_q");
    test_db_close(&t);
}

/* ---- key uniqueness ----------------------------------------------------------------------- */

static void test_key_not_unique(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db,
            "CREATE TABLE a_old(id INTEGER, code TEXT, sub INTEGER, v TEXT);"
            "CREATE INDEX a_old_code ON a_old(code);"
            "CREATE UNIQUE INDEX a_old_partial ON a_old(sub) WHERE sub > 0;"
            "CREATE TABLE a_new(id INTEGER PRIMARY KEY, code TEXT UNIQUE,"
            "  sub INTEGER UNIQUE, v TEXT);"
            "CREATE TABLE c_old(org TEXT, num INTEGER, v TEXT,"
            "  PRIMARY KEY(org, num)) WITHOUT ROWID;"
            "CREATE TABLE c_new(org TEXT, num INTEGER, v TEXT,"
            "  PRIMARY KEY(org, num)) WITHOUT ROWID;");
    static const dw_column_map up[] = {{"v", "v"}};
    static const char *const kid[] = {"id"};
    static const char *const kcode[] = {"code"};
    static const char *const ksub[] = {"sub"};
    static const char *const korg[] = {"org"};
    static const char *const vcol[] = {"v"};

    dw_options o = DW_OPTIONS_INIT;
    o.old_side.table = "a_old";
    o.old_side.columns = vcol;
    o.old_side.ncolumns = 1;
    o.new_side.table = "a_new";
    o.new_side.columns = vcol;
    o.new_side.ncolumns = 1;
    o.up = up;
    o.nup = 1;
    o.old_side.nkey_columns = 1;
    o.new_side.nkey_columns = 1;

    /* no index at all */
    o.name = "nu_plain";
    o.old_side.key_columns = kid;
    o.new_side.key_columns = kid;
    open_fails(t.db, &o, DW_ESCHEMA, NULL);

    /* an index that is not unique */
    o.name = "nu_index";
    o.old_side.key_columns = kcode;
    o.new_side.key_columns = kcode;
    open_fails(t.db, &o, DW_ESCHEMA, NULL);

    /* a partial unique index does not make a key */
    o.name = "nu_partial";
    o.old_side.key_columns = ksub;
    o.new_side.key_columns = ksub;
    open_fails(t.db, &o, DW_ESCHEMA, NULL);

    /* part of a composite primary key is not unique */
    o.name = "nu_prefix";
    o.old_side.table = "c_old";
    o.new_side.table = "c_new";
    o.old_side.key_columns = korg;
    o.new_side.key_columns = korg;
    open_fails(t.db, &o, DW_ESCHEMA, NULL);
    test_db_close(&t);
}

static void test_composite_key_without_rowid(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db,
            "CREATE TABLE c_old(org TEXT, num INTEGER, body TEXT,"
            "  PRIMARY KEY(org, num)) WITHOUT ROWID;"
            "CREATE TABLE c_new(org TEXT, num INTEGER, body2 TEXT,"
            "  PRIMARY KEY(org, num)) WITHOUT ROWID;"
            "INSERT INTO c_old VALUES('org-7', 3, 'hello');"
            "INSERT INTO c_new VALUES('org-7', 3, 'HELLO');");
    static const char *const key[] = {"org", "num"};
    static const dw_column_map up[] = {{"body2", "upper(body)"}};
    dw_options o = options_for("composite", TEST_SIDE_UNLISTED("c_old", key),
                               TEST_SIDE_UNLISTED("c_new", key));
    o.up = up;
    o.nup = 1;
    dw_migration *h = open_migration_ok(t.db, &o);
    int equal = -1;
    dw_value kv[2] = {dw_text("org-7"), dw_int(3)};
    assert_dw_ok(h, dw_compare(&equal, h, kv, 2));
    assert_int_equal(equal, 1);
    dw_close(h);

    /* the key columns in the other order still name the primary key */
    static const char *const rkey[] = {"num", "org"};
    o.name = "composite_rev";
    o.old_side.key_columns = rkey;
    o.new_side.key_columns = rkey;
    h = open_migration_ok(t.db, &o);
    dw_close(h);

    /* key counts that differ between the sides */
    static const char *const one[] = {"org"};
    o.name = "composite_count";
    o.old_side.key_columns = key;
    o.new_side.key_columns = one;
    o.new_side.nkey_columns = 1;
    open_fails2(t.db, &o, DW_EMISUSE, DW_ESCHEMA, NULL);
    test_db_close(&t);
}

static void test_key_unique_index(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db,
            "CREATE TABLE u_old(id INTEGER PRIMARY KEY, code TEXT NOT NULL, v TEXT);"
            "CREATE UNIQUE INDEX u_old_code ON u_old(code);"
            "CREATE TABLE u_new(rid INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE,"
            "  w TEXT);"
            "INSERT INTO u_old VALUES(10, 'abc', 'x');"
            "INSERT INTO u_new VALUES(99, 'abc', 'x!');");
    static const char *const kcode[] = {"code"};
    static const char *const oldc[] = {"v"};
    static const char *const newc[] = {"w"};
    static const dw_column_map up[] = {{"w", "v || '!'"}};
    dw_options o = options_for("unique_index", TEST_SIDE("u_old", kcode, oldc),
                               TEST_SIDE("u_new", kcode, newc));
    o.up = up;
    o.nup = 1;
    dw_migration *h = open_migration_ok(t.db, &o);
    int equal = -1;
    dw_value kv = dw_text("abc");
    assert_dw_ok(h, dw_compare(&equal, h, &kv, 1));
    assert_int_equal(equal, 1);
    dw_close(h);
    test_db_close(&t);
}

/* ---- mapping expressions ------------------------------------------------------------------- */

static int dqs_get(sqlite3 *db, int op)
{
    int v = -7;
    assert_int_equal(sqlite3_db_config(db, op, -1, &v), SQLITE_OK);
    assert_true(v == 0 || v == 1);
    return v;
}

static void dqs_set(sqlite3 *db, int op, int on)
{
    int v = -7;
    assert_int_equal(sqlite3_db_config(db, op, on, &v), SQLITE_OK);
    assert_int_equal(v, on);
}

static void test_misspelled_expression(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);

    int dml0 = dqs_get(t.db, SQLITE_DBCONFIG_DQS_DML);
    int ddl0 = dqs_get(t.db, SQLITE_DBCONFIG_DQS_DDL);

    dw_column_map up[2] = {{"title", "upper(nmae)"}, {"cents", "price * 100"}};
    dw_options o = items_opts("m_typo");
    o.up = up;
    open_fails(t.db, &o, DW_ESCHEMA, "nmae");
    assert_int_equal(dqs_get(t.db, SQLITE_DBCONFIG_DQS_DML), dml0);
    assert_int_equal(dqs_get(t.db, SQLITE_DBCONFIG_DQS_DDL), ddl0);

    /* with double-quoted strings enabled on the connection, "nmae" would be
     * a string: the library must still reject it, and put the setting back */
    for (int on = 1; on >= 0; on--) {
        dqs_set(t.db, SQLITE_DBCONFIG_DQS_DML, on);
        dqs_set(t.db, SQLITE_DBCONFIG_DQS_DDL, on);
        up[0].expr = "\"nmae\"";
        o = items_opts(on ? "m_dq_on" : "m_dq_off");
        o.up = up;
        open_fails(t.db, &o, DW_ESCHEMA, "nmae");
        assert_int_equal(dqs_get(t.db, SQLITE_DBCONFIG_DQS_DML), on);
        assert_int_equal(dqs_get(t.db, SQLITE_DBCONFIG_DQS_DDL), on);

        up[0].expr = "upper(\"nmae\") || 'x'";
        o = items_opts(on ? "m_dq2_on" : "m_dq2_off");
        o.up = up;
        open_fails(t.db, &o, DW_ESCHEMA, "nmae");
        assert_int_equal(dqs_get(t.db, SQLITE_DBCONFIG_DQS_DML), on);

        /* a successful open restores it as well */
        up[0].expr = "upper(\"name\")";
        o = items_opts(on ? "m_ok_on" : "m_ok_off");
        o.up = up;
        dw_migration *h = open_migration_ok(t.db, &o);
        assert_int_equal(dqs_get(t.db, SQLITE_DBCONFIG_DQS_DML), on);
        assert_int_equal(dqs_get(t.db, SQLITE_DBCONFIG_DQS_DDL), on);
        int equal = -1;
        dw_value k = dw_int(1);
        assert_dw_ok(h, dw_compare(&equal, h, &k, 1));
        assert_int_equal(equal, 0); /* 'WIDGET' vs 'widget' */
        assert_int_equal(dqs_get(t.db, SQLITE_DBCONFIG_DQS_DML), on);
        dw_close(h);
    }
    /* the application's own double-quoted string still works when enabled */
    dqs_set(t.db, SQLITE_DBCONFIG_DQS_DML, 1);
    char buf[32];
    assert_string_equal(query_text(t.db, "SELECT \"nmae\"", buf, sizeof buf),
                        "nmae");

    /* an expression that is not SQL at all */
    up[0].expr = "name +* ) (";
    o = items_opts("m_syntax");
    o.up = up;
    open_fails(t.db, &o, DW_ESCHEMA, NULL);
    /* an empty expression */
    up[0].expr = "";
    o = items_opts("m_empty");
    o.up = up;
    open_fails2(t.db, &o, DW_ESCHEMA, DW_EMISUSE, NULL);
    test_db_close(&t);
}

static void test_expression_smuggling(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);
    const char *evil[] = {
        "1); DROP TABLE items_old; --",
        "1; DROP TABLE items_old",
        "1 FROM items_old; DROP TABLE items_old; SELECT 1",
        "(SELECT 1); DELETE FROM items_old",
        "name FROM items_old; DELETE FROM items_old; --",
        "1 /* */; DROP TABLE items_old",
    };
    for (size_t i = 0; i < sizeof evil / sizeof evil[0]; i++) {
        dw_column_map up[2] = {{"title", evil[i]}, {"cents", "price"}};
        char name[32];
        snprintf(name, sizeof name, "evil_%d", (int)i);
        dw_options o = items_opts(name);
        o.up = up;
        int dummy = 0;
        dw_migration *h = (dw_migration *)(void *)&dummy;
        char *err = NULL;
        int rc = dw_sqlite_open(&h, t.db, &o, &err);
        if (rc == DW_OK)
            print_error("expression accepted: %s\n", evil[i]);
        assert_true(rc < 0);
        assert_null(h);
        assert_non_null(err);
        dw_free(err);
        assert_int_equal(table_exists(t.db, "items_old"), 1);
        assert_int_equal(query_int(t.db, "SELECT count(*) FROM items_old"), 1);
        assert_int_equal(stored_count(t.db, name), 0);
    }
    test_db_close(&t);
}

/* ---- misuse --------------------------------------------------------------------------------- */

static int noop_map(dw_row *out, const dw_row *in, void *payload)
{
    (void)out;
    (void)in;
    (void)payload;
    return DW_OK;
}

static void test_open_misuse(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);

    dw_options o = items_opts("m_both");
    o.up_fn = noop_map;
    o.map_version = "v1";
    open_fails(t.db, &o, DW_EMISUSE, NULL);

    o = items_opts("m_neither");
    o.up = NULL;
    o.nup = 0;
    open_fails(t.db, &o, DW_EMISUSE, NULL);

    o = items_opts("m_nup_no_up");
    o.up = NULL;
    o.nup = 2;
    open_fails(t.db, &o, DW_EMISUSE, NULL);

    o = items_opts(NULL);
    open_fails(t.db, &o, DW_EMISUSE, NULL);
    o = items_opts("");
    open_fails(t.db, &o, DW_EMISUSE, NULL);
    char longname[202];
    memset(longname, 'n', 201);
    longname[201] = '\0';
    o = items_opts(longname);
    open_fails(t.db, &o, DW_EMISUSE, NULL);

    o = items_opts("m_null_db");
    open_fails(NULL, &o, DW_EMISUSE, NULL);
    assert_int_equal(stored_count(t.db, "m_null_db"), 0);

    open_fails(t.db, NULL, DW_EMISUSE, NULL);

    o = items_opts("m_version");
    o.version = DW_OPTIONS_VERSION + 100;
    open_fails(t.db, &o, DW_EMISUSE, NULL);
    o.version = 0;
    open_fails(t.db, &o, DW_EMISUSE, NULL);

    o = items_opts("m_null_out");
    char *err = NULL;
    assert_int_equal(dw_sqlite_open(NULL, t.db, &o, &err), DW_EMISUSE);
    dw_free(err);
    assert_int_equal(stored_count(t.db, "m_null_out"), 0);

    o = items_opts("m_null_table");
    o.old_side.table = NULL;
    open_fails2(t.db, &o, DW_EMISUSE, DW_ESCHEMA, NULL);

    o = items_opts("m_no_key");
    o.old_side.key_columns = NULL;
    o.old_side.nkey_columns = 0;
    o.new_side.key_columns = NULL;
    o.new_side.nkey_columns = 0;
    open_fails2(t.db, &o, DW_EMISUSE, DW_ESCHEMA, NULL);

    /* a 200-byte name is allowed */
    memset(longname, 'n', 200);
    longname[200] = '\0';
    o = items_opts(longname);
    dw_migration *h = open_migration_ok(t.db, &o);
    assert_string_equal(dw_name(h), longname);
    dw_close(h);
    test_db_close(&t);
}

/* ---- hostile identifiers -------------------------------------------------------------------- */

#define H_OLD_SQL "\"we\"\"ird;--old\""
#define H_NEW_SQL "\"new \"\"tbl\"\"; -- 名前\""
#define H_KEY_SQL "\"id\"\"; --\""

typedef struct hostile_row {
    const char *sel;
    const char *ord;
    int64_t size;
} hostile_row;

static int hostile_write_old(void *db, const dw_value *key, int nkey,
                             void *payload)
{
    const hostile_row *r = payload;
    assert_int_equal(nkey, 1);
    return callback_exec(
        db,
        "INSERT INTO " H_OLD_SQL "(" H_KEY_SQL ", \"select\", \"or\"\"der\", "
        "\"größe\") VALUES(?1, ?2, ?3, ?4) ON CONFLICT(" H_KEY_SQL
        ") DO UPDATE "
        "SET \"select\" = excluded.\"select\", \"or\"\"der\" = "
        "excluded.\"or\"\"der\", \"größe\" = excluded.\"größe\"",
        "itti", key[0].i, r->sel, r->ord, r->size);
}

typedef struct sink_rec {
    int calls;
    int kind;
    int ndiffs;
    char key[64];
    char migration[128];
    char col0[64];
} sink_rec;

static void sink(const dw_mismatch *m, void *payload)
{
    sink_rec *s = payload;
    s->calls++;
    s->kind = m->kind;
    s->ndiffs = m->ndiffs;
    snprintf(s->key, sizeof s->key, "%s", m->key);
    snprintf(s->migration, sizeof s->migration, "%s", m->migration);
    snprintf(s->col0, sizeof s->col0, "%s",
             m->ndiffs > 0 && m->diffs[0].column ? m->diffs[0].column : "");
}

static void test_hostile_identifiers(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db,
            "CREATE TABLE " H_OLD_SQL "(" H_KEY_SQL " INTEGER PRIMARY KEY,"
            " \"select\" TEXT, \"or\"\"der\" TEXT, \"größe\" INTEGER);"
            "CREATE TABLE " H_NEW_SQL "(" H_KEY_SQL " INTEGER PRIMARY KEY,"
            " \"名前\" TEXT, \"order\" TEXT, \"a;b--c\" INTEGER);");
    static const char *const key[] = {"id\"; --"};
    static const char *const old_cols[] = {"select", "or\"der", "größe"};
    static const dw_column_map up[] = {{"名前", "\"select\""},
                                       {"order", "\"or\"\"der\""},
                                       {"a;b--c", "\"größe\" * 2"}};
    const char *mname = "mig \"x\"; DROP TABLE y; --'";
    sink_rec sr;
    memset(&sr, 0, sizeof sr);
    dw_options o = DW_OPTIONS_INIT;
    o.name = mname;
    o.old_side.table = "we\"ird;--old";
    o.old_side.key_columns = key;
    o.old_side.nkey_columns = 1;
    o.old_side.columns = old_cols;
    o.old_side.ncolumns = 3;
    o.new_side.table = "new \"tbl\"; -- 名前";
    o.new_side.key_columns = key;
    o.new_side.nkey_columns = 1;
    o.up = up;
    o.nup = 3;
    o.mismatch_fn = sink;
    o.mismatch_payload = &sr;
    dw_migration *h = open_migration_ok(t.db, &o);
    assert_int_equal(stored_count(t.db, mname), 1);
    assert_string_equal(dw_name(h), mname);

    assert_dw_ok(h, stage_force(h, DW_STAGE_DUAL_WRITE));
    dw_value k = dw_int(1);
    hostile_row r = {"sel 'one'", "ord \"1\"", 21};
    assert_dw_ok(h, dw_write(h, &k, 1, hostile_write_old, NULL, &r));
    char buf[128];
    assert_string_equal(
        query_text(t.db,
                   "SELECT \"名前\" || '|' || \"order\" || '|' || \"a;b--c\" "
                   "FROM " H_NEW_SQL " WHERE " H_KEY_SQL " = 1",
                   buf, sizeof buf),
        "sel 'one'|ord \"1\"|42");
    /* an update mirrors too */
    r.sel = "größe; --";
    r.size = 50;
    assert_dw_ok(h, dw_write(h, &k, 1, hostile_write_old, NULL, &r));
    assert_string_equal(
        query_text(t.db,
                   "SELECT \"名前\" || '|' || \"order\" || '|' || \"a;b--c\" "
                   "FROM " H_NEW_SQL " WHERE " H_KEY_SQL " = 1",
                   buf, sizeof buf),
        "größe; --|ord \"1\"|100");
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM " H_NEW_SQL), 1);

    /* reads through the spec compare correctly */
    assert_dw_ok(h, stage_force(h, DW_STAGE_SHADOW));
    dw_row *out = NULL;
    assert_int_equal(dw_row_new(&out), DW_OK);
    dw_metrics_reset(h);
    assert_dw_ok(h, dw_read(out, h, &k, 1, NULL, NULL, NULL));
    assert_int_equal(dw_row_count(out), 4);
    assert_non_null(dw_row_get(out, "id\"; --"));
    assert_true(dw_row_get(out, "id\"; --")->i == 1);
    assert_non_null(dw_row_get(out, "select"));
    assert_string_equal((const char *)dw_row_get(out, "select")->p, "größe; --");
    assert_non_null(dw_row_get(out, "or\"der"));
    assert_string_equal((const char *)dw_row_get(out, "or\"der")->p, "ord \"1\"");
    assert_non_null(dw_row_get(out, "größe"));
    assert_true(dw_row_get(out, "größe")->i == 50);
    dw_metrics m;
    memset(&m, 0, sizeof m);
    m.version = DW_METRICS_VERSION;
    assert_dw_ok(h, dw_metrics_get(&m, h));
    assert_int_equal((int)m.comparisons, 1);
    assert_int_equal((int)m.matches, 1);
    assert_int_equal((int)m.mismatches, 0);
    assert_int_equal(sr.calls, 0);

    /* a divergence on the new side names the hostile column */
    exec_ok(t.db, "UPDATE " H_NEW_SQL " SET \"order\" = 'zzz'");
    assert_dw_ok(h, dw_read(out, h, &k, 1, NULL, NULL, NULL));
    assert_dw_ok(h, dw_metrics_get(&m, h));
    assert_int_equal((int)m.mismatches, 1);
    assert_int_equal(sr.calls, 1);
    assert_int_equal(sr.kind, DW_MISMATCH_DIFFERENT);
    assert_int_equal(sr.ndiffs, 1);
    assert_string_equal(sr.col0, "order");
    assert_string_equal(sr.key, "[1]");
    assert_string_equal(sr.migration, mname);
    int equal = -1;
    assert_dw_ok(h, dw_compare(&equal, h, &k, 1));
    assert_int_equal(equal, 0);
    dw_row_free(out);
    dw_close(h);

    assert_int_equal(table_exists(t.db, "we\"ird;--old"), 1);
    assert_int_equal(table_exists(t.db, "new \"tbl\"; -- 名前"), 1);
    test_db_close(&t);
}

/* ---- C mapping callbacks ------------------------------------------------------------------- */

typedef struct map_ctx {
    int calls;
    int saw_key;
    int fail;
} map_ctx;

static int items_up_fn(dw_row *out, const dw_row *in, void *payload)
{
    map_ctx *c = payload;
    c->calls++;
    if (c->fail)
        return 42;
    const dw_value *id = dw_row_get(in, "id");
    const dw_value *name = dw_row_get(in, "name");
    const dw_value *price = dw_row_get(in, "price");
    if (id && id->type == DW_TYPE_INTEGER)
        c->saw_key = 1;
    if (!name || !price)
        return 1;
    char buf[64];
    int rc;
    if (name->type == DW_TYPE_TEXT) {
        size_t n = 0;
        const char *s = name->p;
        for (; n < sizeof buf - 1 && n < (size_t)name->n; n++)
            buf[n] = (char)toupper((unsigned char)s[n]);
        buf[n] = '\0';
        rc = dw_row_set_text(out, "title", buf);
    } else {
        rc = dw_row_set_null(out, "title");
    }
    if (rc != DW_OK)
        return rc;
    return dw_row_set_int(out, "cents", price->i * 100 + 1);
}

typedef struct item {
    const char *name;
    int64_t price;
} item;

static int items_write_old(void *db, const dw_value *key, int nkey,
                           void *payload)
{
    const item *it = payload;
    (void)nkey;
    return callback_exec(
        db,
        "INSERT INTO items_old(id, name, price) VALUES(?1, ?2, ?3) "
        "ON CONFLICT(id) DO UPDATE SET name = excluded.name, "
        "price = excluded.price",
        "iti", key[0].i, it->name, it->price);
}

static void test_up_fn_and_map_version(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);
    map_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    dw_options o = items_opts("cmap");
    o.up = NULL;
    o.nup = 0;
    o.up_fn = items_up_fn;
    o.map_payload = &ctx;
    o.map_version = "v1";
    dw_migration *h = open_migration_ok(t.db, &o);
    assert_dw_ok(h, stage_force(h, DW_STAGE_DUAL_WRITE));

    dw_value k = dw_int(2);
    item it = {"gadget", 7};
    assert_dw_ok(h, dw_write(h, &k, 1, items_write_old, NULL, &it));
    assert_true(ctx.calls >= 1);
    assert_int_equal(ctx.saw_key, 1);
    char buf[64];
    assert_string_equal(query_text(t.db,
                                   "SELECT title || '|' || cents FROM items_new "
                                   "WHERE id = 2",
                                   buf, sizeof buf),
                        "GADGET|701");

    /* a failing callback fails the write, and nothing is applied */
    ctx.fail = 1;
    dw_value k3 = dw_int(3);
    item it3 = {"nope", 1};
    assert_dw(h, dw_write(h, &k3, 1, items_write_old, NULL, &it3), DW_ECALLBACK);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM items_old WHERE id = 3"), 0);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM items_new WHERE id = 3"), 0);
    ctx.fail = 0;

    /* the comparison uses the callback too */
    int equal = -1;
    assert_dw_ok(h, dw_compare(&equal, h, &k, 1));
    assert_int_equal(equal, 1);
    dw_close(h);

    /* same map_version reopens; another one is a different spec */
    h = open_migration_ok(t.db, &o);
    char digest_v1[65];
    snprintf(digest_v1, sizeof digest_v1, "%s", dw_spec_digest(h));
    dw_close(h);
    char stored_before[80], stored_after[80];
    query_text(t.db, "SELECT spec_digest FROM dw_migrations WHERE name = 'cmap'",
               stored_before, sizeof stored_before);
    o.map_version = "v2";
    int dummy = 0;
    h = (dw_migration *)(void *)&dummy;
    char *err = NULL;
    assert_int_equal(dw_sqlite_open(&h, t.db, &o, &err), DW_ESPEC);
    assert_null(h);
    assert_non_null(err);
    assert_true(strlen(err) > 0);
    dw_free(err);
    /* ... and it was not stored: the stored spec is v1's, which still opens */
    assert_int_equal(stored_count(t.db, "cmap"), 1);
    query_text(t.db, "SELECT spec_digest FROM dw_migrations WHERE name = 'cmap'",
               stored_after, sizeof stored_after);
    assert_string_equal(stored_before, stored_after);
    o.map_version = "v1";
    h = open_migration_ok(t.db, &o);
    assert_string_equal(dw_spec_digest(h), digest_v1);
    dw_close(h);
    test_db_close(&t);
}

/* ---- one table, new columns ------------------------------------------------------------------ */

static void test_same_table_overlap(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, "CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT,"
                  " full_name TEXT);"
                  "INSERT INTO people VALUES(1, 'ann', 'ann');");
    static const char *const both[] = {"name", "full_name"};
    static const char *const newc[] = {"full_name"};
    static const char *const oldc[] = {"name"};
    static const dw_column_map up[] = {{"full_name", "name"}};
    dw_options o = options_for("same_overlap", TEST_SIDE("people", k_id, both),
                               TEST_SIDE("people", k_id, newc));
    o.up = up;
    o.nup = 1;
    open_fails2(t.db, &o, DW_EMISUSE, DW_ESCHEMA, NULL);

    /* no lists at all: the old side's default takes every column */
    o.name = "same_default";
    o.old_side.columns = NULL;
    o.old_side.ncolumns = 0;
    o.new_side.columns = NULL;
    o.new_side.ncolumns = 0;
    open_fails2(t.db, &o, DW_EMISUSE, DW_ESCHEMA, NULL);

    /* disjoint lists work */
    o.name = "same_ok";
    o.old_side.columns = oldc;
    o.old_side.ncolumns = 1;
    o.new_side.columns = newc;
    o.new_side.ncolumns = 1;
    dw_migration *h = open_migration_ok(t.db, &o);
    int equal = -1;
    dw_value k = dw_int(1);
    assert_dw_ok(h, dw_compare(&equal, h, &k, 1));
    assert_int_equal(equal, 1);
    exec_ok(t.db, "UPDATE people SET full_name = 'Ann B' WHERE id = 1");
    assert_dw_ok(h, dw_compare(&equal, h, &k, 1));
    assert_int_equal(equal, 0);
    dw_close(h);
    test_db_close(&t);
}

/* Ranges and joins run on each side with that side's ordering: keys that
 * compare differently (a type change, a collation) are refused at open --
 * verification used to page round in circles over them. */
static void test_keys_must_compare_alike(void **state)
{
    (void)state;
    static const struct {
        const char *old_key, *new_key, *needle;
    } cases[] = {
        {"id INTEGER PRIMARY KEY", "id TEXT PRIMARY KEY", "numeric"},
        {"id TEXT COLLATE NOCASE PRIMARY KEY", "id TEXT PRIMARY KEY",
         "NOCASE"},
        {"id TEXT PRIMARY KEY", "id BLOB PRIMARY KEY", "untyped"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        test_db t;
        test_db_open(&t);
        char *sql = sqlite3_mprintf(
            "CREATE TABLE items_old(%s, name TEXT, price INTEGER);"
            "CREATE TABLE items_new(%s, title TEXT, cents INTEGER);",
            cases[i].old_key, cases[i].new_key);
        exec_ok(t.db, sql);
        sqlite3_free(sql);
        dw_options o = items_opts("keys");
        open_fails(t.db, &o, DW_ESCHEMA, cases[i].needle);
        test_db_close(&t);
    }
    /* Numbers order alike whatever their numeric affinity. */
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, "CREATE TABLE items_old(id INTEGER PRIMARY KEY, name TEXT,"
                  " price INTEGER);"
                  "CREATE TABLE items_new(id BIGINT PRIMARY KEY, title TEXT,"
                  " cents INTEGER) WITHOUT ROWID;");
    dw_options o = items_opts("keys");
    dw_close(open_migration_ok(t.db, &o));
    test_db_close(&t);
}

/* A mapping expression is one value: "a), (b" must not slip through and
 * shift every column after it. */
static void test_mapping_is_one_column(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);
    static const dw_column_map two[] = {{"title", "name), (price"},
                                        {"cents", "price * 100"}};
    dw_options o = items_opts("one_column");
    o.up = two;
    open_fails(t.db, &o, DW_ESCHEMA, "title");
    test_db_close(&t);
}

/* The setup SQL runs inside the library's transactions and must not end
 * them. */
static void test_setup_sql_cannot_end_transactions(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "COMMIT", "  rollback", "INSERT INTO items_new VALUES(9, 'x', 1); END",
        "SAVEPOINT s", "BEGIN; INSERT INTO items_new VALUES(9, 'x', 1)"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        test_db t;
        test_db_open(&t);
        make_items(t.db);
        dw_options o = items_opts("setup");
        o.setup_sql = bad[i];
        open_fails(t.db, &o, DW_EMISUSE, "setup SQL");
        test_db_close(&t);
    }
}

/* dw_sqlite_open() refused with DW_ESPEC, the message naming what differs. */
static void redefinition_says(sqlite3 *db, const dw_options *o,
                              const char *needle)
{
    dw_migration *h = NULL;
    char *err = NULL;
    int rc = dw_sqlite_open(&h, db, o, &err);
    if (rc != DW_ESPEC || !err || !strstr(err, needle))
        print_error("dw_open returned %d: %s (wanted \"%s\")\n", rc,
                    err ? err : "(no message)", needle);
    assert_int_equal(rc, DW_ESPEC);
    assert_null(h);
    assert_non_null(strstr(err, needle));
    assert_non_null(strstr(err, "DW_OPEN_REDEFINE"));
    dw_free(err);
}

/* A spec refused as different from the stored one says which part
 * differs, not only the two digests. */
static void test_redefinition_names_the_difference(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);
    dw_options o = items_opts("diff");
    dw_close(open_migration_ok(t.db, &o));

    static const dw_column_map cents_x10[] = {{"title", "name"},
                                              {"cents", "price * 10"}};
    dw_options up = o;
    up.up = cents_x10;
    redefinition_says(t.db, &up, "they differ in the up mapping of column "
                                 "cents;");
    static const char *const name_only[] = {"name"};
    static const dw_column_map title_only[] = {{"title", "name"}};
    static const char *const title_col[] = {"title"};
    dw_options cols = o;
    cols.old_side.columns = name_only;
    cols.old_side.ncolumns = 1;
    cols.new_side.columns = title_col;
    cols.new_side.ncolumns = 1;
    cols.up = title_only;
    cols.nup = 1;
    redefinition_says(t.db, &cols, "the old model's columns, the new "
                                   "model's columns, the up mapping of "
                                   "column cents");
    static const dw_column_map down[] = {{"name", "title"},
                                         {"price", "cents / 100"}};
    dw_options with_down = o;
    with_down.down = down;
    with_down.ndown = 2;
    redefinition_says(t.db, &with_down, "they differ in the down mapping;");
    dw_options setup = o;
    setup.setup_sql = "DELETE FROM items_new WHERE id < 0";
    redefinition_says(t.db, &setup, "they differ in the setup SQL;");
    test_db_close(&t);
}

/* Setup SQL with or without trailing white space is one spec; a spec
 * stored by 0.3, whose text and digest kept that white space, still opens
 * (and keeps its digest) whichever way the application spells it. */
static void test_setup_trailing_space_same_spec(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);
    static const char setup[] = "INSERT INTO items_new(id, title, cents) "
                                "VALUES(9, 'x', 1) ON CONFLICT DO NOTHING;";
    dw_options o = items_opts("ws");
    o.setup_sql = setup;
    dw_migration *h = open_migration_ok(t.db, &o);
    char digest[65];
    snprintf(digest, sizeof digest, "%s", dw_spec_digest(h));
    dw_close(h);
    o.setup_sql = "INSERT INTO items_new(id, title, cents) VALUES(9, 'x', 1) "
                  "ON CONFLICT DO NOTHING;\n \t\r\n";
    h = open_migration_ok(t.db, &o);
    assert_string_equal(dw_spec_digest(h), digest);
    dw_close(h);

    /* As 0.3 stored it: the newline escaped in the text and digested. */
    exec_ok(t.db,
            "UPDATE dw_migrations SET spec = '{\"format\":1,\"old\":{\"table\""
            ":\"items_old\",\"key\":[\"id\"],\"columns\":[\"name\",\"price\"]}"
            ",\"new\":{\"table\":\"items_new\",\"key\":[\"id\"],\"columns\":"
            "[\"title\",\"cents\"]},\"up\":{\"sql\":{\"title\":\"name\","
            "\"cents\":\"price * 100\"}},\"down\":null,\"setup\":\"INSERT "
            "INTO items_new(id, title, cents) VALUES(9, ''x'', 1) ON "
            "CONFLICT DO NOTHING;\\u000a\"}', spec_digest = "
            "'c0eaadcda1f4a45af6a604b352792ee5c2098fde16c0525f3feffb841ec69b31'"
            " WHERE name = 'ws'");
    static const char old_digest[] =
        "c0eaadcda1f4a45af6a604b352792ee5c2098fde16c0525f3feffb841ec69b31";
    for (int spelled = 0; spelled < 2; spelled++) {
        o.setup_sql = spelled ? setup
                              : "INSERT INTO items_new(id, title, cents) "
                                "VALUES(9, 'x', 1) ON CONFLICT DO NOTHING;\n";
        h = open_migration_ok(t.db, &o);
        assert_string_equal(dw_spec_digest(h), old_digest);
        /* The stored spec is current for this handle: it can work. */
        assert_dw_ok(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, "ws", 0));
        assert_dw_ok(h, dw_stage_set(h, DW_STAGE_OFF, "ws", 0));
        dw_close(h);
    }
    h = NULL;
    char *err = NULL;
    assert_int_equal(dw_sqlite_open_stored(&h, t.db, "ws", 0, &err), DW_OK);
    assert_string_equal(dw_spec_digest(h), old_digest);
    dw_close(h);
    /* Other setup SQL is still another spec. */
    o.setup_sql = "INSERT INTO items_new(id, title, cents) VALUES(8, 'x', 1) "
                  "ON CONFLICT DO NOTHING;\n";
    redefinition_says(t.db, &o, "the setup SQL");
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM dw_migrations "
                                     "WHERE spec_digest = '" "c0eaadcda1f4a45af6a604b352792ee5c2098fde16c0525f3feffb841ec69b31" "'"),
                     1);
    test_db_close(&t);
}

/* ---- model column lists ------------------------------------------------------------------- */

/* A side may be its key alone: an empty list (not NULL, count 0), or a
 * table whose only column is the key. An SQL mapping of no expressions is
 * still refused: a side of the key alone is given no mapping. */
static void test_key_only_sides(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);
    static const char *const none[] = {"name"};
    dw_options o = items_opts("m_empty_list");
    o.old_side.columns = none; /* a list, with no entries */
    o.old_side.ncolumns = 0;
    dw_close(open_migration_ok(t.db, &o));
    assert_int_equal(query_int(t.db, "SELECT json_array_length(spec, "
                                     "'$.old.columns') FROM dw_migrations "
                                     "WHERE name = 'm_empty_list'"),
                     0);

    exec_ok(t.db, "CREATE TABLE keys_only(id INTEGER PRIMARY KEY);");
    o = items_opts("m_keys_only");
    o.old_side.table = "keys_only";
    static const dw_column_map up[] = {{"title", "'t' || id"},
                                       {"cents", "id"}};
    o.up = up;
    dw_close(open_migration_ok(t.db, &o));

    o = items_opts("m_nup_0");
    o.nup = 0;
    open_fails(t.db, &o, DW_EMISUSE, "up mapping: no expressions");
    test_db_close(&t);
}

/* A view is not a side, even one with the right columns. */
static void test_side_is_a_view(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);
    exec_ok(t.db, "CREATE VIEW items_view AS SELECT id, title, cents FROM "
                  "items_new;");
    dw_options o = items_opts("m_view_new");
    o.new_side.table = "items_view";
    open_fails(t.db, &o, DW_ESCHEMA, "is a view");
    o = items_opts("m_view_old");
    o.old_side.table = "ITEMS_VIEW"; /* found whatever the case */
    open_fails(t.db, &o, DW_ESCHEMA, "is a view");
    test_db_close(&t);
}

/* One column named twice in a list -- the same name in another case is the
 * same column to SQLite -- and a key column listed among the model columns
 * are refused; nothing is stored. */
static void test_column_listed_twice(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);
    static const char *const twice[] = {"name", "price", "NAME"};
    dw_options o = items_opts("m_twice");
    o.old_side.columns = twice;
    o.old_side.ncolumns = 3;
    open_fails(t.db, &o, DW_EMISUSE, "named twice");

    exec_ok(t.db, "CREATE TABLE pairs_old(a INTEGER, b INTEGER, v TEXT,"
                  " PRIMARY KEY(a, b));"
                  "CREATE TABLE pairs_new(a INTEGER, b INTEGER, w TEXT,"
                  " PRIMARY KEY(a, b));");
    static const char *const key_twice[] = {"a", "A"};
    static const dw_column_map up[] = {{"w", "v"}};
    o = items_opts("m_key_twice");
    o.old_side.table = "pairs_old";
    o.old_side.key_columns = key_twice;
    o.old_side.nkey_columns = 2;
    o.new_side.table = "pairs_new";
    o.new_side.key_columns = key_twice;
    o.new_side.nkey_columns = 2;
    o.up = up;
    o.nup = 1;
    open_fails(t.db, &o, DW_EMISUSE, "named twice");

    static const char *const with_key[] = {"name", "ID", "price"};
    o = items_opts("m_key_as_model");
    o.old_side.columns = with_key;
    o.old_side.ncolumns = 3;
    open_fails(t.db, &o, DW_EMISUSE, "is also listed as a model column");
    test_db_close(&t);
}

/* A generated column cannot be a mapping's target: the mapping would have
 * to write it. Listed on the side without a mapping into it, it may be
 * compared. */
static void test_generated_column_not_a_target(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db,
            "CREATE TABLE items_old(id INTEGER PRIMARY KEY, name TEXT,"
            " price INTEGER);"
            "CREATE TABLE items_new(id INTEGER PRIMARY KEY, title TEXT,"
            " cents INTEGER, dollars INTEGER GENERATED ALWAYS AS"
            " (cents / 100) STORED);");
    static const char *const new_cols[] = {"title", "cents", "dollars"};
    static const dw_column_map up[] = {
        {"title", "name"}, {"cents", "price * 100"}, {"dollars", "price"}};
    dw_options o = items_opts("m_generated");
    o.new_side.columns = new_cols;
    o.new_side.ncolumns = 3;
    o.up = up;
    o.nup = 3;
    open_fails(t.db, &o, DW_ESCHEMA, "\"dollars\" is generated");
    test_db_close(&t);
}

/* An SQL mapping must give exactly one expression for each target column:
 * one missing, one for a column that is not in the side's list, one
 * column given two (in two spellings), and one too many are each refused
 * with a message naming the column. */
static void test_mapping_columns_must_align(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);
    static const char *const new_cols[] = {"title", "cents"};
    static const dw_column_map missing[] = {{"title", "name"}};
    static const dw_column_map stray[] = {{"title", "name"},
                                          {"price", "price"}};
    static const dw_column_map doubled[] = {{"title", "name"},
                                            {"TITLE", "upper(name)"}};
    static const dw_column_map extra[] = {
        {"title", "name"}, {"cents", "price * 100"}, {"price", "price"}};
    static const struct {
        const char *name;
        const dw_column_map *up;
        int nup, code;
        const char *needle;
    } cases[] = {
        {"m_missing", missing, 1, DW_EMISUSE,
         "no expression for new column \"cents\""},
        {"m_stray", stray, 2, DW_ESCHEMA,
         "\"price\" is not a column of the new side"},
        {"m_doubled", doubled, 2, DW_EMISUSE,
         "column \"title\" has two expressions"},
        {"m_extra", extra, 3, DW_ESCHEMA,
         "\"price\" is not a column of the new side"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        dw_options o = items_opts(cases[i].name);
        o.new_side.columns = new_cols;
        o.new_side.ncolumns = 2;
        o.up = cases[i].up;
        o.nup = cases[i].nup;
        open_fails(t.db, &o, cases[i].code, cases[i].needle);
    }
    /* The down mapping is held to the same rule. */
    static const char *const old_cols[] = {"name", "price"};
    static const dw_column_map down_missing[] = {{"name", "title"}};
    dw_options o = items_opts("m_down_missing");
    o.old_side.columns = old_cols;
    o.old_side.ncolumns = 2;
    o.down = down_missing;
    o.ndown = 1;
    open_fails(t.db, &o, DW_EMISUSE, "no expression for old column \"price\"");
    test_db_close(&t);
}

/* Both sides in one table must name the same key columns: a row is one key
 * for both models. */
static void test_same_table_different_keys(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, "CREATE TABLE people(id INTEGER PRIMARY KEY,"
                  " code TEXT NOT NULL UNIQUE, name TEXT, full_name TEXT);"
                  "INSERT INTO people VALUES(1, 'p1', 'ann', 'ann');");
    static const char *const code_key[] = {"code"};
    static const char *const newc[] = {"full_name"};
    static const char *const oldc[] = {"name"};
    static const dw_column_map up[] = {{"full_name", "name"}};
    dw_options o = options_for("same_keys", TEST_SIDE("people", k_id, oldc),
                               TEST_SIDE("people", code_key, newc));
    o.up = up;
    o.nup = 1;
    open_fails(t.db, &o, DW_EMISUSE, "name different key columns");
    test_db_close(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_rowid_integer_pk),
        cmocka_unit_test(test_unknown_tables),
        cmocka_unit_test(test_unknown_key_column),
        cmocka_unit_test(test_unknown_model_column),
        cmocka_unit_test(test_unknown_mapping_target),
        cmocka_unit_test(test_key_not_unique),
        cmocka_unit_test(test_composite_key_without_rowid),
        cmocka_unit_test(test_key_unique_index),
        cmocka_unit_test(test_misspelled_expression),
        cmocka_unit_test(test_expression_smuggling),
        cmocka_unit_test(test_open_misuse),
        cmocka_unit_test(test_hostile_identifiers),
        cmocka_unit_test(test_up_fn_and_map_version),
        cmocka_unit_test(test_same_table_overlap),
        cmocka_unit_test(test_keys_must_compare_alike),
        cmocka_unit_test(test_mapping_is_one_column),
        cmocka_unit_test(test_setup_sql_cannot_end_transactions),
        cmocka_unit_test(test_key_only_sides),
        cmocka_unit_test(test_side_is_a_view),
        cmocka_unit_test(test_column_listed_twice),
        cmocka_unit_test(test_generated_column_not_a_target),
        cmocka_unit_test(test_mapping_columns_must_align),
        cmocka_unit_test(test_same_table_different_keys),
        cmocka_unit_test(test_redefinition_names_the_difference),
        cmocka_unit_test(test_setup_trailing_space_same_spec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
