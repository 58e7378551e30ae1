/* Tests of the write side of the stage table: dw_write() and dw_mirror(). */
#include "support.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- call log ----------------------------------------------------------- */

static char g_log[64];

static void log_call(char c)
{
    size_t n = strlen(g_log);
    if (n + 1 < sizeof g_log) {
        g_log[n] = c;
        g_log[n + 1] = '\0';
    }
}

static void log_reset(void)
{
    g_log[0] = '\0';
}

/* ---- items / items_v2 --------------------------------------------------- */

static const char *const ITEM_KEY[] = {"id"};
static const char *const OLD_COLS[] = {"name", "qty"};
static const char *const NEW_COLS[] = {"title", "quantity"};
static const dw_column_map UP[] = {{"title", "upper(name)"},
                                   {"quantity", "qty"}};
static const dw_column_map DOWN[] = {{"name", "lower(title)"},
                                     {"qty", "quantity"}};

static void create_items(sqlite3 *db)
{
    exec_ok(db, "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                " qty INTEGER);"
                "CREATE TABLE items_v2(id INTEGER PRIMARY KEY,"
                " title TEXT NOT NULL UNIQUE, quantity INTEGER);");
}

/* The items migration's two sides, with no mapping yet. */
static dw_options items_options(void)
{
    return options_for("items_v2", TEST_SIDE("items", ITEM_KEY, OLD_COLS),
                       TEST_SIDE("items_v2", ITEM_KEY, NEW_COLS));
}

static int open_items(test_fixture *f, unsigned flags, int with_down)
{
    dw_options o = items_options();
    o.up = UP;
    o.nup = 2;
    if (with_down) {
        o.down = DOWN;
        o.ndown = 2;
    }
    o.flags = flags;
    o.reason = "test";
    return open_migration(&f->h, f->t.db, &o);
}

/* Creates the tables, opens the migration and moves it to `stage`. */
static void items_at(test_fixture *f, int stage, unsigned flags, int with_down)
{
    create_items(f->t.db);
    assert_int_equal(open_items(f, flags, with_down), DW_OK);
    assert_dw_ok(f->h, dw_stage_set(f->h, stage, "test", DW_STAGE_FORCE));
}

/* What the write callbacks write. A NULL name or title violates NOT NULL;
 * a non-zero *_ret is returned after the write succeeded (a plain callback
 * failure). */
typedef struct wctx {
    const char *name;
    int64_t qty;
    const char *title;
    int64_t quantity;
    int old_ret;
    int new_ret;
} wctx;

/* When set, w_old and w_new return their ret as an SQLite code, through
 * dw_sqlite_result(). */
static int rets_native;

/* Upserts through `sql` (?1 id, ?2 text, ?3 number). */
static int run_upsert(sqlite3 *db, const char *sql, int64_t id,
                      const char *text, int64_t num)
{
    return callback_exec(db, sql, "iti", id, text, num);
}

static int w_old(void *db, const dw_value *key, int nkey, void *payload)
{
    const wctx *c = payload;
    log_call('o');
    if (nkey != 1 || key[0].type != DW_TYPE_INTEGER)
        return 99;
    int rc = run_upsert(db,
                        "INSERT INTO items(id, name, qty) VALUES(?1, ?2, ?3)"
                        " ON CONFLICT(id) DO UPDATE SET name = excluded.name,"
                        " qty = excluded.qty",
                        key[0].i, c->name, c->qty);
    return rc            ? rc
           : rets_native ? dw_sqlite_result(db, c->old_ret)
                         : c->old_ret;
}

static int w_new(void *db, const dw_value *key, int nkey, void *payload)
{
    const wctx *c = payload;
    log_call('n');
    if (nkey != 1 || key[0].type != DW_TYPE_INTEGER)
        return 99;
    int rc = run_upsert(db,
                        "INSERT INTO items_v2(id, title, quantity)"
                        " VALUES(?1, ?2, ?3) ON CONFLICT(id) DO UPDATE SET"
                        " title = excluded.title, quantity = excluded.quantity",
                        key[0].i, c->title, c->quantity);
    return rc            ? rc
           : rets_native ? dw_sqlite_result(db, c->new_ret)
                         : c->new_ret;
}

static int d_old(void *db, const dw_value *key, int nkey, void *payload)
{
    (void)payload;
    log_call('o');
    if (nkey != 1)
        return 99;
    return callback_exec(db, "DELETE FROM items WHERE id = ?1", "i", key[0].i);
}

static int d_new(void *db, const dw_value *key, int nkey, void *payload)
{
    (void)payload;
    log_call('n');
    if (nkey != 1)
        return 99;
    return callback_exec(db, "DELETE FROM items_v2 WHERE id = ?1", "i",
                         key[0].i);
}

/* Full table contents as one line of text. */
static const char *dump_old(sqlite3 *db, char *buf, size_t n)
{
    return query_text(db,
                      "SELECT group_concat(id || ',' || quote(name) || ',' ||"
                      " quote(qty), ';') FROM (SELECT * FROM items ORDER BY id)",
                      buf, n);
}

static const char *dump_new(sqlite3 *db, char *buf, size_t n)
{
    return query_text(db,
                      "SELECT group_concat(id || ',' || quote(title) || ',' ||"
                      " quote(quantity), ';') FROM (SELECT * FROM items_v2"
                      " ORDER BY id)",
                      buf, n);
}

static int contains_ci(const char *hay, const char *needle)
{
    if (!hay)
        return 0;
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++) {
        size_t i = 0;
        while (i < n && p[i] &&
               tolower((unsigned char)p[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return 1;
    }
    return 0;
}

static int old_is_authoritative(int stage)
{
    return stage <= DW_STAGE_SHADOW;
}

/* ---- tests -------------------------------------------------------------- */

/* Which callbacks run, in which order, at every stage. */
static void test_order_every_stage(void **state)
{
    test_fixture *f = *state;
    static const char *const order[] = {"o", "on", "on", "no", "no", "n"};
    for (int s = 0; s < 6; s++) {
        fixture_reset(f);
        items_at(f, s, 0, 1);
        log_reset();
        wctx c = {"Widget", 5, "WIDGET", 6, 0, 0};
        dw_value k = dw_int(10);
        int rc = dw_write(f->h, &k, 1, w_old, w_new, &c);
        char o[128], n[128], got[400], want[400];
        dump_old(f->t.db, o, sizeof o);
        dump_new(f->t.db, n, sizeof n);
        snprintf(got, sizeof got, "%s rc=%d calls=%s old=[%s] new=[%s]",
                 dw_stage_name(s), rc, g_log, o, n);
        int writes_old = s <= DW_STAGE_RAMPDOWN;
        int writes_new = s >= DW_STAGE_DUAL_WRITE;
        snprintf(want, sizeof want, "%s rc=0 calls=%s old=[%s] new=[%s]",
                 dw_stage_name(s), order[s], writes_old ? "10,'Widget',5" : "",
                 writes_new ? "10,'WIDGET',6" : "");
        if (rc != DW_OK)
            print_error("%s\n", dw_errmsg(f->h));
        assert_string_equal(got, want);
        assert_int_equal(outside_transaction(f->t.db), 1);
        assert_int_equal(dw_errside(f->h), DW_SIDE_NONE);
    }
}

/* Old authoritative, write_new NULL: the new side follows through `up`. */
static void test_mirror_up(void **state)
{
    test_fixture *f = *state;
    for (int s = DW_STAGE_DUAL_WRITE; s <= DW_STAGE_SHADOW; s++) {
        fixture_reset(f);
        items_at(f, s, 0, 1);
        fixture_exec(f, "INSERT INTO items VALUES(2, 'other', 1);"
                        "INSERT INTO items_v2 VALUES(2, 'ZZZ', 9);");
        char o[128], n[128];
        dw_value k = dw_int(1);

        log_reset();
        wctx c = {"Widget", 5, NULL, 0, 0, 0};
        assert_dw_ok(f->h, dw_write(f->h, &k, 1, w_old, NULL, &c));
        assert_string_equal(g_log, "o");
        assert_string_equal(dump_old(f->t.db, o, sizeof o),
                            "1,'Widget',5;2,'other',1");
        assert_string_equal(dump_new(f->t.db, n, sizeof n),
                            "1,'WIDGET',5;2,'ZZZ',9");

        /* An update of the old row updates the new row. */
        wctx c2 = {"Gadget", 7, NULL, 0, 0, 0};
        assert_dw_ok(f->h, dw_write(f->h, &k, 1, w_old, NULL, &c2));
        assert_string_equal(dump_new(f->t.db, n, sizeof n),
                            "1,'GADGET',7;2,'ZZZ',9");
    }
}

/* New authoritative, write_old NULL: the old side follows through `down`. */
static void test_mirror_down(void **state)
{
    test_fixture *f = *state;
    for (int s = DW_STAGE_LIVE; s <= DW_STAGE_RAMPDOWN; s++) {
        fixture_reset(f);
        items_at(f, s, 0, 1);
        fixture_exec(f, "INSERT INTO items VALUES(2, 'other', 1);"
                        "INSERT INTO items_v2 VALUES(2, 'ZZZ', 9);");
        char o[128], n[128];
        dw_value k = dw_int(1);

        log_reset();
        wctx c = {NULL, 0, "WIDGET", 5, 0, 0};
        assert_dw_ok(f->h, dw_write(f->h, &k, 1, NULL, w_new, &c));
        assert_string_equal(g_log, "n");
        assert_string_equal(dump_new(f->t.db, n, sizeof n),
                            "1,'WIDGET',5;2,'ZZZ',9");
        assert_string_equal(dump_old(f->t.db, o, sizeof o),
                            "1,'widget',5;2,'other',1");

        wctx c2 = {NULL, 0, "GADGET", 7, 0, 0};
        assert_dw_ok(f->h, dw_write(f->h, &k, 1, NULL, w_new, &c2));
        assert_string_equal(dump_old(f->t.db, o, sizeof o),
                            "1,'gadget',7;2,'other',1");
    }
}

/* The authoritative callback is required; the down mapping is required to
 * mirror to the old side. */
static void test_missing_callback_is_misuse(void **state)
{
    test_fixture *f = *state;
    items_at(f, DW_STAGE_OFF, 0, 1);
    wctx c = {"Widget", 5, "WIDGET", 5, 0, 0};
    dw_value k = dw_int(1);
    char o[128], n[128];
    for (int s = 0; s < 6; s++) {
        stage_force_ok(f->h, s);
        log_reset();
        int rc;
        if (old_is_authoritative(s))
            rc = dw_write(f->h, &k, 1, NULL, w_new, &c);
        else
            rc = dw_write(f->h, &k, 1, w_old, NULL, &c);
        if (rc != DW_EMISUSE)
            fail_msg("%s: authoritative callback NULL gave %d, want %d",
                     dw_stage_name(s), rc, DW_EMISUSE);
        assert_int_equal(dw_write(f->h, &k, 1, NULL, NULL, &c), DW_EMISUSE);
        assert_string_equal(dump_old(f->t.db, o, sizeof o), "");
        assert_string_equal(dump_new(f->t.db, n, sizeof n), "");
        assert_int_equal(outside_transaction(f->t.db), 1);
    }
    assert_int_equal(dw_write(NULL, &k, 1, w_old, w_new, &c), DW_EMISUSE);

    /* No down mapping: mirroring to the old side is impossible. */
    fixture_reset(f);
    items_at(f, DW_STAGE_LIVE, 0, 0);
    for (int s = DW_STAGE_LIVE; s <= DW_STAGE_RAMPDOWN; s++) {
        stage_force_ok(f->h, s);
        log_reset();
        assert_dw(f->h, dw_write(f->h, &k, 1, NULL, w_new, &c), DW_EMISUSE);
        assert_string_equal(dump_old(f->t.db, o, sizeof o), "");
        assert_string_equal(dump_new(f->t.db, n, sizeof n), "");
        assert_int_equal(outside_transaction(f->t.db), 1);
    }
    /* ... but with both callbacks given it works. */
    log_reset();
    stage_force_ok(f->h, DW_STAGE_LIVE);
    assert_dw_ok(f->h, dw_write(f->h, &k, 1, w_old, w_new, &c));
    assert_string_equal(g_log, "no");
    assert_string_equal(dump_old(f->t.db, o, sizeof o), "1,'Widget',5");
    assert_string_equal(dump_new(f->t.db, n, sizeof n), "1,'WIDGET',5");
    /* And at COMPLETE no down mapping is needed. */
    stage_force_ok(f->h, DW_STAGE_COMPLETE);
    wctx c2 = {NULL, 0, "DONE", 1, 0, 0};
    assert_dw_ok(f->h, dw_write(f->h, &k, 1, NULL, w_new, &c2));
    assert_string_equal(dump_new(f->t.db, n, sizeof n), "1,'DONE',1");
    assert_string_equal(dump_old(f->t.db, o, sizeof o), "1,'Widget',5");
}

/* Deletes mirror as deletes, in both directions. */
static void test_delete_mirrors(void **state)
{
    test_fixture *f = *state;
    items_at(f, DW_STAGE_DUAL_WRITE, 0, 1);
    fixture_exec(f, "INSERT INTO items VALUES(1, 'a', 1), (2, 'b', 2),"
                    " (3, 'c', 3);"
                    "INSERT INTO items_v2 VALUES(1, 'A', 1), (2, 'B', 2),"
                    " (3, 'C', 3);");
    char o[128], n[128];
    dw_value k1 = dw_int(1);
    log_reset();
    assert_dw_ok(f->h, dw_write(f->h, &k1, 1, d_old, NULL, NULL));
    assert_string_equal(g_log, "o");
    assert_string_equal(dump_old(f->t.db, o, sizeof o), "2,'b',2;3,'c',3");
    assert_string_equal(dump_new(f->t.db, n, sizeof n), "2,'B',2;3,'C',3");

    stage_force_ok(f->h, DW_STAGE_LIVE);
    dw_value k2 = dw_int(2);
    log_reset();
    assert_dw_ok(f->h, dw_write(f->h, &k2, 1, NULL, d_new, NULL));
    assert_string_equal(g_log, "n");
    assert_string_equal(dump_old(f->t.db, o, sizeof o), "3,'c',3");
    assert_string_equal(dump_new(f->t.db, n, sizeof n), "3,'C',3");

    /* Deleting a key absent on both sides is fine and changes nothing. */
    dw_value k9 = dw_int(9);
    assert_dw_ok(f->h, dw_write(f->h, &k9, 1, NULL, d_new, NULL));
    stage_force_ok(f->h, DW_STAGE_SHADOW);
    assert_dw_ok(f->h, dw_write(f->h, &k9, 1, d_old, NULL, NULL));
    assert_string_equal(dump_old(f->t.db, o, sizeof o), "3,'c',3");
    assert_string_equal(dump_new(f->t.db, n, sizeof n), "3,'C',3");
}

/* dw_mirror for code that wrote the authoritative side itself. */
static void test_dw_mirror(void **state)
{
    test_fixture *f = *state;
    items_at(f, DW_STAGE_SHADOW, 0, 1);
    char o[128], n[128];
    dw_value k = dw_int(1);

    fixture_exec(f, "INSERT INTO items VALUES(1, 'Apple', 3)");
    assert_dw_ok(f->h, dw_mirror(f->h, &k, 1));
    assert_string_equal(dump_new(f->t.db, n, sizeof n), "1,'APPLE',3");
    fixture_exec(f, "UPDATE items SET name = 'Pear', qty = NULL WHERE id = 1");
    assert_dw_ok(f->h, dw_mirror(f->h, &k, 1));
    assert_string_equal(dump_new(f->t.db, n, sizeof n), "1,'PEAR',NULL");
    fixture_exec(f, "DELETE FROM items WHERE id = 1");
    assert_dw_ok(f->h, dw_mirror(f->h, &k, 1));
    assert_string_equal(dump_new(f->t.db, n, sizeof n), "");

    /* At OFF: a no-op, the stale new row stays. */
    stage_force_ok(f->h, DW_STAGE_OFF);
    fixture_exec(f, "INSERT INTO items VALUES(1, 'Apple', 3);"
                    "INSERT INTO items_v2 VALUES(1, 'STALE', 0);");
    assert_dw_ok(f->h, dw_mirror(f->h, &k, 1));
    assert_string_equal(dump_old(f->t.db, o, sizeof o), "1,'Apple',3");
    assert_string_equal(dump_new(f->t.db, n, sizeof n), "1,'STALE',0");
    fixture_exec(f, "DELETE FROM items");
    assert_dw_ok(f->h, dw_mirror(f->h, &k, 1));
    assert_string_equal(dump_new(f->t.db, n, sizeof n), "1,'STALE',0");

    /* At COMPLETE: a no-op as well, both sides untouched. */
    stage_force_ok(f->h, DW_STAGE_COMPLETE);
    fixture_exec(f, "INSERT INTO items VALUES(1, 'old', 1)");
    assert_dw_ok(f->h, dw_mirror(f->h, &k, 1));
    assert_string_equal(dump_old(f->t.db, o, sizeof o), "1,'old',1");
    assert_string_equal(dump_new(f->t.db, n, sizeof n), "1,'STALE',0");

    /* At LIVE it syncs the old side down. */
    stage_force_ok(f->h, DW_STAGE_LIVE);
    assert_dw_ok(f->h, dw_mirror(f->h, &k, 1));
    assert_string_equal(dump_old(f->t.db, o, sizeof o), "1,'stale',0");
    assert_string_equal(dump_new(f->t.db, n, sizeof n), "1,'STALE',0");

    assert_int_equal(dw_mirror(NULL, &k, 1), DW_EMISUSE);
    assert_int_equal(dw_mirror(f->h, NULL, 1), DW_EMISUSE);
    assert_int_equal(dw_mirror(f->h, &k, 0), DW_EMISUSE);
}

/* Both writes or neither, at every stage that writes two sides. */
static void test_both_or_neither(void **state)
{
    test_fixture *f = *state;
    enum { SECOND_CONSTRAINT, SECOND_PLAIN, FIRST_CONSTRAINT, FIRST_PLAIN };
    static const char *const case_names[] = {
        "second-constraint", "second-plain", "first-constraint", "first-plain"};
    items_at(f, DW_STAGE_OFF, 0, 1);
    fixture_exec(f, "INSERT INTO items VALUES(1, 'apple', 1), (2, 'plum', 2);"
                    "INSERT INTO items_v2 VALUES(1, 'APPLE', 1),"
                    " (2, 'PLUM', 2);");
    char o0[256], n0[256], o1[256], n1[256];
    dump_old(f->t.db, o0, sizeof o0);
    dump_new(f->t.db, n0, sizeof n0);

    for (int s = DW_STAGE_DUAL_WRITE; s <= DW_STAGE_RAMPDOWN; s++) {
        stage_force_ok(f->h, s);
        int old_first = old_is_authoritative(s);
        for (int cs = 0; cs < 4; cs++) {
            /* Updates of key 1 that would change both rows. */
            wctx c = {"pear", 5, "PEAR", 5, 0, 0};
            int fail_old = (cs == SECOND_CONSTRAINT || cs == SECOND_PLAIN)
                               ? !old_first
                               : old_first;
            int constraint = cs == SECOND_CONSTRAINT || cs == FIRST_CONSTRAINT;
            if (fail_old) {
                if (constraint)
                    c.name = NULL;
                else
                    c.old_ret = 1;
            } else {
                if (constraint)
                    c.title = NULL;
                else
                    c.new_ret = 1;
            }
            int second_fails = cs == SECOND_CONSTRAINT || cs == SECOND_PLAIN;
            log_reset();
            dw_value k = dw_int(1);
            int rc = dw_write(f->h, &k, 1, w_old, w_new, &c);
            const char *msg = dw_errmsg(f->h);
            dump_old(f->t.db, o1, sizeof o1);
            dump_new(f->t.db, n1, sizeof n1);

            char got[300], want[300];
            snprintf(got, sizeof got,
                     "%s %s rc=%d side=%d msg_names_side=%d calls=%s"
                     " old_same=%d new_same=%d autocommit=%d",
                     dw_stage_name(s), case_names[cs], rc, dw_errside(f->h),
                     contains_ci(msg, fail_old ? "old" : "new"), g_log,
                     strcmp(o0, o1) == 0, strcmp(n0, n1) == 0,
                     outside_transaction(f->t.db));
            const char *calls = old_first ? (second_fails ? "on" : "o")
                                          : (second_fails ? "no" : "n");
            snprintf(want, sizeof want,
                     "%s %s rc=%d side=%d msg_names_side=1 calls=%s"
                     " old_same=1 new_same=1 autocommit=1",
                     dw_stage_name(s), case_names[cs],
                     constraint ? DW_ECONSTRAINT : DW_ECALLBACK,
                     fail_old ? DW_SIDE_OLD : DW_SIDE_NEW, calls);
            if (strcmp(got, want) != 0)
                print_error("errmsg: %s\n", msg ? msg : "(null)");
            assert_string_equal(got, want);
        }

        /* A mirror (NULL callback) failing on the new side's UNIQUE
         * title: key 1 renamed to 'plum' maps to 'PLUM', taken by key 2. */
        if (old_first) {
            wctx c = {"plum", 9, NULL, 0, 0, 0};
            dw_value k = dw_int(1);
            log_reset();
            int rc = dw_write(f->h, &k, 1, w_old, NULL, &c);
            const char *msg = dw_errmsg(f->h);
            dump_old(f->t.db, o1, sizeof o1);
            dump_new(f->t.db, n1, sizeof n1);
            char got[300], want[300];
            snprintf(got, sizeof got,
                     "%s mirror-unique rc=%d side=%d msg_names_side=%d"
                     " old_same=%d new_same=%d autocommit=%d",
                     dw_stage_name(s), rc, dw_errside(f->h),
                     contains_ci(msg, "new"), strcmp(o0, o1) == 0,
                     strcmp(n0, n1) == 0, outside_transaction(f->t.db));
            snprintf(want, sizeof want,
                     "%s mirror-unique rc=%d side=%d msg_names_side=1"
                     " old_same=1 new_same=1 autocommit=1",
                     dw_stage_name(s), DW_ECONSTRAINT, DW_SIDE_NEW);
            if (strcmp(got, want) != 0)
                print_error("errmsg: %s\n", msg ? msg : "(null)");
            assert_string_equal(got, want);
        }
    }

    /* After all the failures a good write still works and resets the
     * error state. */
    stage_force_ok(f->h, DW_STAGE_DUAL_WRITE);
    wctx ok = {"kiwi", 4, "KIWI", 4, 0, 0};
    dw_value k3 = dw_int(3);
    assert_dw_ok(f->h, dw_write(f->h, &k3, 1, w_old, w_new, &ok));
    assert_int_equal(dw_errside(f->h), DW_SIDE_NONE);
    assert_string_equal(dw_errmsg(f->h), "not an error");
}

/* dw_write nests in the caller's transaction as a SAVEPOINT. */
static void test_nesting_in_caller_transaction(void **state)
{
    test_fixture *f = *state;
    items_at(f, DW_STAGE_DUAL_WRITE, 0, 1);
    char o[128], n[128];
    sqlite3 *db = f->t.db;

    exec_ok(db, "BEGIN");
    wctx c1 = {"one", 1, "ONE", 1, 0, 0};
    dw_value k1 = dw_int(1);
    assert_dw_ok(f->h, dw_write(f->h, &k1, 1, w_old, w_new, &c1));
    assert_int_equal(outside_transaction(db), 0);
    assert_string_equal(dump_old(db, o, sizeof o), "1,'one',1");
    exec_ok(db, "ROLLBACK");
    assert_string_equal(dump_old(db, o, sizeof o), "");
    assert_string_equal(dump_new(db, n, sizeof n), "");

    /* Same with the mirror. */
    exec_ok(db, "BEGIN");
    assert_dw_ok(f->h, dw_write(f->h, &k1, 1, w_old, NULL, &c1));
    assert_int_equal(outside_transaction(db), 0);
    exec_ok(db, "ROLLBACK");
    assert_string_equal(dump_old(db, o, sizeof o), "");
    assert_string_equal(dump_new(db, n, sizeof n), "");

    exec_ok(db, "BEGIN");
    assert_dw_ok(f->h, dw_write(f->h, &k1, 1, w_old, w_new, &c1));
    wctx c2 = {"two", 2, NULL, 2, 0, 0}; /* new side violates NOT NULL */
    dw_value k2 = dw_int(2);
    assert_dw(f->h, dw_write(f->h, &k2, 1, w_old, w_new, &c2), DW_ECONSTRAINT);
    assert_int_equal(dw_errside(f->h), DW_SIDE_NEW);
    assert_int_equal(outside_transaction(db), 0);
    /* A plain callback failure inside the transaction, too. */
    wctx c3 = {"three", 3, "THREE", 3, 0, 1};
    dw_value k3 = dw_int(3);
    assert_dw(f->h, dw_write(f->h, &k3, 1, w_old, w_new, &c3), DW_ECALLBACK);
    assert_int_equal(outside_transaction(db), 0);
    assert_string_equal(dump_old(db, o, sizeof o), "1,'one',1");
    assert_string_equal(dump_new(db, n, sizeof n), "1,'ONE',1");
    exec_ok(db, "COMMIT");
    assert_string_equal(dump_old(db, o, sizeof o), "1,'one',1");
    assert_string_equal(dump_new(db, n, sizeof n), "1,'ONE',1");

    /* Inside the caller's own SAVEPOINT too. */
    exec_ok(db, "SAVEPOINT app");
    wctx c4 = {"four", 4, "FOUR", 4, 0, 0};
    dw_value k4 = dw_int(4);
    assert_dw_ok(f->h, dw_write(f->h, &k4, 1, w_old, NULL, &c4));
    exec_ok(db, "ROLLBACK TO app; RELEASE app");
    assert_string_equal(dump_old(db, o, sizeof o), "1,'one',1");
    assert_string_equal(dump_new(db, n, sizeof n), "1,'ONE',1");
}

/* ---- composite and text keys -------------------------------------------- */

static const char *const ACCT_KEY[] = {"org", "num"};
static const char *const ACCT_OLD_COLS[] = {"balance"};
static const char *const ACCT_NEW_COLS[] = {"balance_cents"};

static int acct_put(void *db, const dw_value *key, int nkey, void *payload)
{
    const int64_t *balance = payload;
    log_call('o');
    if (nkey != 2 || key[0].type != DW_TYPE_TEXT ||
        key[1].type != DW_TYPE_INTEGER)
        return 99;
    return callback_exec(
        db,
        "INSERT INTO acct(org, num, balance) VALUES(?1, ?2, ?3)"
        " ON CONFLICT(org, num) DO UPDATE SET balance = excluded.balance",
        "vii", &key[0], key[1].i, *balance);
}

static int acct_del(void *db, const dw_value *key, int nkey, void *payload)
{
    (void)payload;
    log_call('o');
    if (nkey != 2)
        return 99;
    return callback_exec(db, "DELETE FROM acct WHERE org=?1 AND num=?2", "vi",
                         &key[0], key[1].i);
}

static int acct_v2_put(void *db, const dw_value *key, int nkey,
                       void *payload)
{
    const int64_t *cents = payload;
    log_call('n');
    if (nkey != 2)
        return 99;
    return callback_exec(
        db,
        "INSERT INTO acct_v2(org, num, balance_cents) VALUES(?1, ?2, ?3)"
        " ON CONFLICT(org, num) DO UPDATE SET"
        " balance_cents = excluded.balance_cents",
        "vii", &key[0], key[1].i, *cents);
}

static const char *dump_acct(sqlite3 *db, const char *table, char *buf,
                             size_t n)
{
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT group_concat(org || ',' || num || ',' || quote(%s), ';')"
             " FROM (SELECT * FROM %s ORDER BY org, num)",
             strcmp(table, "acct") == 0 ? "balance" : "balance_cents", table);
    return query_text(db, sql, buf, n);
}

#define ACCT_TABLES                                                            \
    "CREATE TABLE acct(org TEXT, num INTEGER, balance INTEGER,"                \
    " PRIMARY KEY(org, num)) WITHOUT ROWID;"                                   \
    "CREATE TABLE acct_v2(org TEXT, num INTEGER,"                              \
    " balance_cents INTEGER, PRIMARY KEY(org, num)) WITHOUT ROWID;"

/* Opens f->h as migration name on the acct tables (a composite text and
 * integer key, balance to cents), with the down mapping when with_down,
 * and moves it to DUAL_WRITE. */
static void acct_at_dual_write(test_fixture *f, const char *name, int with_down)
{
    static const dw_column_map up[] = {{"balance_cents", "balance * 100"}};
    static const dw_column_map down[] = {{"balance", "balance_cents / 100"}};
    dw_options o = options_for(name, TEST_SIDE("acct", ACCT_KEY, ACCT_OLD_COLS),
                               TEST_SIDE("acct_v2", ACCT_KEY, ACCT_NEW_COLS));
    o.up = up;
    o.nup = 1;
    if (with_down) {
        o.down = down;
        o.ndown = 1;
    }
    assert_int_equal(open_migration(&f->h, f->t.db, &o), DW_OK);
    stage_force_ok(f->h, DW_STAGE_DUAL_WRITE);
}

static void test_composite_text_key(void **state)
{
    test_fixture *f = *state;
    sqlite3 *db = f->t.db;
    exec_ok(db, ACCT_TABLES
                "INSERT INTO acct VALUES('org-7', 4, 1), ('org-8', 3, 2);"
                "INSERT INTO acct_v2 VALUES('org-7', 4, 100), ('org-8', 3, 200);");
    acct_at_dual_write(f, "acct_cents", 1);

    char a[256], b[256];
    dw_value key[2] = {dw_text("org-7"), dw_int(3)};
    int64_t bal = 12;
    log_reset();
    assert_dw_ok(f->h, dw_write(f->h, key, 2, acct_put, NULL, &bal));
    assert_string_equal(g_log, "o");
    assert_string_equal(dump_acct(db, "acct", a, sizeof a),
                        "org-7,3,12;org-7,4,1;org-8,3,2");
    assert_string_equal(dump_acct(db, "acct_v2", b, sizeof b),
                        "org-7,3,1200;org-7,4,100;org-8,3,200");
    bal = 15;
    assert_dw_ok(f->h, dw_write(f->h, key, 2, acct_put, NULL, &bal));
    assert_string_equal(dump_acct(db, "acct_v2", b, sizeof b),
                        "org-7,3,1500;org-7,4,100;org-8,3,200");

    /* dw_mirror, with a text key that is not NUL-terminated. */
    exec_ok(db, "UPDATE acct SET balance = 20 WHERE org = 'org-7' AND num = 3");
    dw_value key_n[2] = {dw_text_n("org-7xyz", 5), dw_int(3)};
    assert_dw_ok(f->h, dw_mirror(f->h, key_n, 2));
    assert_string_equal(dump_acct(db, "acct_v2", b, sizeof b),
                        "org-7,3,2000;org-7,4,100;org-8,3,200");

    /* Wrong key counts and a NULL key are misuse; nothing runs. */
    log_reset();
    assert_dw(f->h, dw_write(f->h, key, 1, acct_put, NULL, &bal), DW_EMISUSE);
    dw_value key3[3] = {dw_text("org-7"), dw_int(3), dw_int(1)};
    assert_dw(f->h, dw_write(f->h, key3, 3, acct_put, NULL, &bal), DW_EMISUSE);
    assert_dw(f->h, dw_write(f->h, NULL, 2, acct_put, NULL, &bal), DW_EMISUSE);
    assert_dw(f->h, dw_write(f->h, NULL, 0, acct_put, NULL, &bal), DW_EMISUSE);
    assert_dw(f->h, dw_mirror(f->h, key, 1), DW_EMISUSE);
    assert_dw(f->h, dw_mirror(f->h, NULL, 2), DW_EMISUSE);
    assert_string_equal(g_log, "");
    assert_string_equal(dump_acct(db, "acct", a, sizeof a),
                        "org-7,3,20;org-7,4,1;org-8,3,2");
    assert_string_equal(dump_acct(db, "acct_v2", b, sizeof b),
                        "org-7,3,2000;org-7,4,100;org-8,3,200");

    /* Delete through the old callback removes only that key's new row. */
    assert_dw_ok(f->h, dw_write(f->h, key, 2, acct_del, NULL, NULL));
    assert_string_equal(dump_acct(db, "acct", a, sizeof a),
                        "org-7,4,1;org-8,3,2");
    assert_string_equal(dump_acct(db, "acct_v2", b, sizeof b),
                        "org-7,4,100;org-8,3,200");

    /* At LIVE the old side follows the new one down. */
    stage_force_ok(f->h, DW_STAGE_LIVE);
    dw_value k9[2] = {dw_text("org-9"), dw_int(1)};
    int64_t cents = 700;
    log_reset();
    assert_dw_ok(f->h, dw_write(f->h, k9, 2, NULL, acct_v2_put, &cents));
    assert_string_equal(g_log, "n");
    assert_string_equal(dump_acct(db, "acct", a, sizeof a),
                        "org-7,4,1;org-8,3,2;org-9,1,7");
    assert_string_equal(dump_acct(db, "acct_v2", b, sizeof b),
                        "org-7,4,100;org-8,3,200;org-9,1,700");
}

/* ---- one table with new columns ------------------------------------------ */

typedef struct incident {
    const char *status;
} incident;

static int inc_put(void *db, const dw_value *key, int nkey, void *payload)
{
    const incident *in = payload;
    log_call('o');
    if (nkey != 1)
        return 99;
    return callback_exec(
        db,
        "INSERT INTO incidents(id, status) VALUES(?1, ?2)"
        " ON CONFLICT(id) DO UPDATE SET status = excluded.status",
        "it", key[0].i, in->status);
}

static int inc_del(void *db, const dw_value *key, int nkey, void *payload)
{
    (void)payload;
    log_call('o');
    if (nkey != 1)
        return 99;
    return callback_exec(db, "DELETE FROM incidents WHERE id = ?1", "i",
                         key[0].i);
}

static const char *dump_incidents(sqlite3 *db, char *buf, size_t n)
{
    return query_text(db,
                      "SELECT group_concat(id || ',' || quote(status) || ',' ||"
                      " quote(status_code), ';') FROM (SELECT * FROM incidents"
                      " ORDER BY id)",
                      buf, n);
}

static void test_same_table_new_columns(void **state)
{
    test_fixture *f = *state;
    sqlite3 *db = f->t.db;
    exec_ok(db, "CREATE TABLE incidents(id INTEGER PRIMARY KEY, status TEXT,"
                " status_code INTEGER)");
    static const char *const key[] = {"id"};
    static const char *const oldc[] = {"status"};
    static const char *const newc[] = {"status_code"};
    static const dw_column_map up[] = {
        {"status_code",
         "CASE status WHEN 'open' THEN 1 WHEN 'closed' THEN 2 END"}};
    dw_options o =
        options_for("incident_codes", TEST_SIDE("incidents", key, oldc),
                    TEST_SIDE("incidents", key, newc));
    o.up = up;
    o.nup = 1;
    assert_int_equal(open_migration(&f->h, db, &o), DW_OK);

    char buf[256];
    incident open_ = {"open"}, closed = {"closed"};
    dw_value k1 = dw_int(1), k2 = dw_int(2);

    /* At OFF only the old column is written. */
    assert_dw_ok(f->h, dw_write(f->h, &k1, 1, inc_put, NULL, &open_));
    assert_string_equal(dump_incidents(db, buf, sizeof buf), "1,'open',NULL");

    stage_force_ok(f->h, DW_STAGE_DUAL_WRITE);
    assert_dw_ok(f->h, dw_write(f->h, &k2, 1, inc_put, NULL, &open_));
    assert_string_equal(dump_incidents(db, buf, sizeof buf),
                        "1,'open',NULL;2,'open',1");
    assert_dw_ok(f->h, dw_write(f->h, &k2, 1, inc_put, NULL, &closed));
    assert_dw_ok(f->h, dw_write(f->h, &k1, 1, inc_put, NULL, &closed));
    assert_string_equal(dump_incidents(db, buf, sizeof buf),
                        "1,'closed',2;2,'closed',2");

    /* A delete through the old callback removes the row. */
    assert_dw_ok(f->h, dw_write(f->h, &k2, 1, inc_del, NULL, NULL));
    assert_string_equal(dump_incidents(db, buf, sizeof buf), "1,'closed',2");
    assert_int_equal(query_int(db, "SELECT count(*) FROM incidents"), 1);

    /* dw_mirror fills the new column from the old one. */
    exec_ok(db, "UPDATE incidents SET status = 'open' WHERE id = 1");
    assert_dw_ok(f->h, dw_mirror(f->h, &k1, 1));
    assert_string_equal(dump_incidents(db, buf, sizeof buf), "1,'open',1");
}

/* ---- repair-queue policy ------------------------------------------------- */

static void get_metrics(dw_metrics *m, dw_migration *h)
{
    memset(m, 0, sizeof *m);
    m->version = DW_METRICS_VERSION;
    assert_dw_ok(h, dw_metrics_get(m, h));
}

static int64_t repair_count(dw_migration *h)
{
    int64_t n = -1;
    assert_dw_ok(h, dw_repair_count(&n, h));
    return n;
}

static void test_repair_queue(void **state)
{
    test_fixture *f = *state;
    items_at(f, DW_STAGE_DUAL_WRITE, DW_OPEN_REPAIR_QUEUE, 1);
    sqlite3 *db = f->t.db;
    exec_ok(db, "INSERT INTO items VALUES(1, 'apple', 1);"
                "INSERT INTO items_v2 VALUES(1, 'APPLE', 1);");
    char o[256], n[256], n0[256];
    dump_new(db, n0, sizeof n0);
    assert_int_equal(repair_count(f->h), 0);

    /* The new-side write fails: the old write is kept, the key queued. */
    wctx c = {"pear", 2, NULL, 2, 0, 0};
    dw_value k2 = dw_int(2);
    assert_dw_ok(f->h, dw_write(f->h, &k2, 1, w_old, w_new, &c));
    assert_string_equal(dump_old(db, o, sizeof o), "1,'apple',1;2,'pear',2");
    assert_string_equal(dump_new(db, n, sizeof n), n0);
    assert_int_equal(repair_count(f->h), 1);
    /* Queued by its key text, with the side and what failed there. */
    char q[256];
    assert_string_equal(query_text(db,
                                   "SELECT key || ' ' || side || ' ' || "
                                   "(error LIKE 'new side: %') FROM "
                                   "dw_repair_queue",
                                   q, sizeof q),
                        "[2] 2 1");
    assert_int_equal(outside_transaction(db), 1);
    dw_metrics m;
    get_metrics(&m, f->h);
    assert_int_equal(m.mirror_failures, 1);
    assert_int_equal(m.repairs_queued, 1);

    /* The same key failing again is not queued twice. */
    wctx c2 = {"plum", 3, NULL, 3, 0, 1};
    assert_dw_ok(f->h, dw_write(f->h, &k2, 1, w_old, w_new, &c2));
    assert_string_equal(dump_old(db, o, sizeof o), "1,'apple',1;2,'plum',3");
    assert_string_equal(dump_new(db, n, sizeof n), n0);
    assert_int_equal(repair_count(f->h), 1);
    get_metrics(&m, f->h);
    assert_int_equal(m.mirror_failures, 2);

    /* A failing mirror (NULL callback, UNIQUE title) is queued too. */
    wctx c3 = {"apple", 3, NULL, 0, 0, 0};
    dw_value k3 = dw_int(3);
    assert_dw_ok(f->h, dw_write(f->h, &k3, 1, w_old, NULL, &c3));
    assert_string_equal(dump_old(db, o, sizeof o),
                        "1,'apple',1;2,'plum',3;3,'apple',3");
    assert_string_equal(dump_new(db, n, sizeof n), n0);
    assert_int_equal(repair_count(f->h), 2);

    /* The authoritative side failing still fails the whole write. */
    wctx bad = {NULL, 4, "FIG", 4, 0, 0};
    dw_value k4 = dw_int(4);
    assert_dw(f->h, dw_write(f->h, &k4, 1, w_old, w_new, &bad), DW_ECONSTRAINT);
    assert_int_equal(dw_errside(f->h), DW_SIDE_OLD);
    assert_string_equal(dump_old(db, o, sizeof o),
                        "1,'apple',1;2,'plum',3;3,'apple',3");
    assert_string_equal(dump_new(db, n, sizeof n), n0);
    assert_int_equal(repair_count(f->h), 2);

    /* At LIVE the old side is the one that may fail and be queued. */
    stage_force_ok(f->h, DW_STAGE_LIVE);
    wctx c5 = {NULL, 5, "KIWI", 5, 0, 0};
    dw_value k5 = dw_int(5);
    assert_dw_ok(f->h, dw_write(f->h, &k5, 1, w_old, w_new, &c5));
    assert_string_equal(dump_new(db, n, sizeof n), "1,'APPLE',1;5,'KIWI',5");
    assert_int_equal(query_int(db, "SELECT count(*) FROM items WHERE id=5"), 0);
    assert_int_equal(repair_count(f->h), 3);

    /* Without the flag the same failure rolls back both sides. */
    fixture_reset(f);
    items_at(f, DW_STAGE_DUAL_WRITE, 0, 1);
    db = f->t.db;
    exec_ok(db, "INSERT INTO items VALUES(1, 'apple', 1);"
                "INSERT INTO items_v2 VALUES(1, 'APPLE', 1);");
    assert_dw(f->h, dw_write(f->h, &k2, 1, w_old, w_new, &c), DW_ECONSTRAINT);
    assert_int_equal(dw_errside(f->h), DW_SIDE_NEW);
    assert_string_equal(dump_old(db, o, sizeof o), "1,'apple',1");
    assert_string_equal(dump_new(db, n, sizeof n), "1,'APPLE',1");
    assert_int_equal(repair_count(f->h), 0);
    get_metrics(&m, f->h);
    assert_int_equal(m.mirror_failures, 1);
    assert_int_equal(m.repairs_queued, 0);
}

/* ---- busy ---------------------------------------------------------------- */

static void test_busy(void **state)
{
    test_fixture *f = *state;
    items_at(f, DW_STAGE_DUAL_WRITE, 0, 1);
    sqlite3 *db = f->t.db;
    sqlite3_busy_timeout(db, 50);
    fixture_connect_second(f);
    exec_ok(f->db2, "BEGIN IMMEDIATE");

    char o[128], n[128];
    wctx c = {"apple", 1, "APPLE", 1, 0, 0};
    dw_value k = dw_int(1);
    log_reset();
    assert_dw(f->h, dw_write(f->h, &k, 1, w_old, w_new, &c), DW_EBUSY);
    assert_string_equal(g_log, "");
    assert_int_equal(outside_transaction(db), 1);
    assert_dw(f->h, dw_write(f->h, &k, 1, w_old, NULL, &c), DW_EBUSY);
    assert_string_equal(g_log, "");
    assert_dw(f->h, dw_mirror(f->h, &k, 1), DW_EBUSY);
    assert_int_equal(outside_transaction(db), 1);
    assert_string_equal(dump_old(db, o, sizeof o), "");
    assert_string_equal(dump_new(db, n, sizeof n), "");

    /* Once the other connection commits, the same write succeeds. */
    exec_ok(f->db2, "COMMIT");
    log_reset();
    assert_dw_ok(f->h, dw_write(f->h, &k, 1, w_old, w_new, &c));
    assert_string_equal(g_log, "on");
    assert_string_equal(dump_old(db, o, sizeof o), "1,'apple',1");
    assert_string_equal(dump_new(db, n, sizeof n), "1,'APPLE',1");
}

/* ---- metrics ------------------------------------------------------------- */

static void test_metrics(void **state)
{
    test_fixture *f = *state;
    items_at(f, DW_STAGE_DUAL_WRITE, 0, 1);
    dw_metrics m;
    wctx c = {"apple", 1, "APPLE", 1, 0, 0};
    dw_value k1 = dw_int(1), k2 = dw_int(2);

    get_metrics(&m, f->h);
    assert_int_equal(m.writes, 0);
    assert_int_equal(m.old_side.writes, 0);
    assert_int_equal(m.new_side.writes, 0);

    assert_dw_ok(f->h, dw_write(f->h, &k1, 1, w_old, w_new, &c));
    wctx c2 = {"pear", 2, "PEAR", 2, 0, 0};
    assert_dw_ok(f->h, dw_write(f->h, &k2, 1, w_old, w_new, &c2));
    get_metrics(&m, f->h);
    assert_int_equal(m.writes, 2);
    assert_int_equal(m.old_side.writes, 2);
    assert_int_equal(m.new_side.writes, 2);
    assert_int_equal(m.old_side.write_errors, 0);
    assert_int_equal(m.new_side.write_errors, 0);
    assert_int_equal(m.mirror_failures, 0);

    /* OFF writes only the old side. */
    stage_force_ok(f->h, DW_STAGE_OFF);
    assert_dw_ok(f->h, dw_write(f->h, &k1, 1, w_old, w_new, &c));
    get_metrics(&m, f->h);
    assert_int_equal(m.writes, 3);
    assert_int_equal(m.old_side.writes, 3);
    assert_int_equal(m.new_side.writes, 2);

    /* COMPLETE writes only the new side. */
    stage_force_ok(f->h, DW_STAGE_COMPLETE);
    assert_dw_ok(f->h, dw_write(f->h, &k1, 1, w_old, w_new, &c));
    get_metrics(&m, f->h);
    assert_int_equal(m.writes, 4);
    assert_int_equal(m.old_side.writes, 3);
    assert_int_equal(m.new_side.writes, 3);

    /* A failing new side at DUAL_WRITE. */
    stage_force_ok(f->h, DW_STAGE_DUAL_WRITE);
    wctx bad_new = {"fig", 3, "FIG", 3, 0, 1};
    dw_value k3 = dw_int(3);
    assert_dw(f->h, dw_write(f->h, &k3, 1, w_old, w_new, &bad_new),
              DW_ECALLBACK);
    assert_int_equal(dw_errside(f->h), DW_SIDE_NEW);
    get_metrics(&m, f->h);
    assert_int_equal(m.writes, 4);
    assert_int_equal(m.new_side.write_errors, 1);
    assert_int_equal(m.old_side.write_errors, 0);
    assert_int_equal(m.mirror_failures, 1);

    /* A failing old (authoritative) side. */
    wctx bad_old = {NULL, 3, "FIG", 3, 0, 0};
    assert_dw(f->h, dw_write(f->h, &k3, 1, w_old, w_new, &bad_old),
              DW_ECONSTRAINT);
    assert_int_equal(dw_errside(f->h), DW_SIDE_OLD);
    get_metrics(&m, f->h);
    assert_int_equal(m.writes, 4);
    assert_int_equal(m.old_side.write_errors, 1);
    assert_int_equal(m.new_side.write_errors, 1);
    assert_int_equal(m.mirror_failures, 1);

    /* dw_mirror counts as a write. */
    assert_dw_ok(f->h, dw_mirror(f->h, &k1, 1));
    get_metrics(&m, f->h);
    assert_int_equal(m.writes, 5);

    /* Version 0 is accepted too; reset zeroes everything. */
    dw_metrics m0;
    memset(&m0, 0xff, sizeof m0);
    m0.version = 0;
    assert_dw_ok(f->h, dw_metrics_get(&m0, f->h));
    assert_int_equal(m0.writes, 5);
    dw_metrics_reset(f->h);
    dw_metrics_reset(NULL);
    get_metrics(&m, f->h);
    assert_int_equal(m.writes, 0);
    assert_int_equal(m.mirror_failures, 0);
    assert_int_equal(m.old_side.writes, 0);
    assert_int_equal(m.new_side.writes, 0);
    assert_int_equal(m.old_side.write_errors, 0);
    assert_int_equal(m.new_side.write_errors, 0);
}

/* ---- regressions --------------------------------------------------------- */

/* A new-side write whose statement makes SQLite itself roll back the whole
 * transaction (INSERT OR ROLLBACK meeting a PRIMARY KEY conflict). */
static int w_new_or_rollback(void *db, const dw_value *key, int nkey,
                             void *payload)
{
    (void)payload;
    log_call('n');
    if (nkey != 1)
        return 99;
    return callback_exec(db,
                         "INSERT OR ROLLBACK INTO items_v2(id, title, quantity)"
                         " VALUES(?1, ?2, ?3)",
                         "iti", key[0].i, "CLASH", (int64_t)1);
}

/* With the repair-queue policy, a non-authoritative failure that SQLite
 * answered by rolling back the transaction cannot keep the authoritative
 * write nor queue the key: the write fails, and nothing is left behind. */
static void test_repair_queue_sqlite_rollback(void **state)
{
    test_fixture *f = *state;
    items_at(f, DW_STAGE_DUAL_WRITE, DW_OPEN_REPAIR_QUEUE, 1);
    sqlite3 *db = f->t.db;
    exec_ok(db, "INSERT INTO items_v2 VALUES(5, 'PRE5', 0);"
                "INSERT INTO items_v2 VALUES(6, 'PRE6', 0);");
    wctx c = {"pear", 2, NULL, 0, 0, 0};

    /* At the top level. */
    dw_value k5 = dw_int(5);
    int rc = dw_write(f->h, &k5, 1, w_old, w_new_or_rollback, &c);
    assert_int_not_equal(rc, DW_OK);
    assert_int_equal(outside_transaction(db), 1);
    assert_int_equal(query_int(db, "SELECT count(*) FROM items WHERE id=5"), 0);
    assert_int_equal(repair_count(f->h), 0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM dw_repair_queue"), 0);

    /* Inside the caller's transaction: that transaction is gone too, and
     * the call says so; the next call outside a transaction is refused. */
    exec_ok(db, "BEGIN");
    exec_ok(db, "INSERT INTO items VALUES(100, 'caller', 1)");
    dw_value k6 = dw_int(6);
    assert_dw(f->h, dw_write(f->h, &k6, 1, w_old, w_new_or_rollback, &c),
              DW_EROLLEDBACK);
    assert_int_equal(outside_transaction(db), 1);
    int64_t n = -1;
    assert_dw(f->h, dw_repair_count(&n, f->h), DW_EROLLEDBACK);
    assert_int_equal(query_int(db, "SELECT count(*) FROM items WHERE id=6"), 0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM items WHERE id=100"), 0);
    assert_int_equal(repair_count(f->h), 0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM dw_repair_queue"), 0);

    /* The handle still writes. */
    dw_value k7 = dw_int(7);
    wctx ok = {"plum", 3, NULL, 0, 0, 0};
    assert_dw_ok(f->h, dw_write(f->h, &k7, 1, w_old, NULL, &ok));
    assert_int_equal(query_int(db, "SELECT count(*) FROM items_v2 WHERE id=7"), 1);
}

/* A key SQLite refuses to bind (longer than SQLITE_LIMIT_LENGTH) is an
 * error, not a silent success. */
static void test_mirror_bind_failure(void **state)
{
    test_fixture *f = *state;
    sqlite3 *db = f->t.db;
    exec_ok(db, ACCT_TABLES);
    acct_at_dual_write(f, "acct_bind", 0);

    enum { BIG = 5000 };
    char *big = malloc(BIG + 1);
    assert_non_null(big);
    memset(big, 'k', BIG);
    big[BIG] = '\0';
    /* The row exists on the old side. */
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO acct VALUES(?1, 1, 7)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, big, BIG, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);

    int old_limit = sqlite3_limit(db, SQLITE_LIMIT_LENGTH, 1000);
    dw_value key[2] = {dw_text(big), dw_int(1)};
    int rc = dw_mirror(f->h, key, 2);
    char msg[256];
    snprintf(msg, sizeof msg, "%s", dw_errmsg(f->h));
    sqlite3_limit(db, SQLITE_LIMIT_LENGTH, old_limit);
    free(big);

    if (rc == DW_OK)
        print_error("dw_mirror of an unbindable key returned DW_OK\n");
    assert_int_not_equal(rc, DW_OK);
    assert_string_not_equal(msg, "not an error");
    assert_true(msg[0] != '\0');
    assert_int_equal(outside_transaction(db), 1);
    assert_int_equal(query_int(db, "SELECT count(*) FROM acct_v2"), 0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM acct"), 1);
}

/* A TEXT key that a numeric key column would convert names another row
 * than the one given; every call refuses it. Which texts convert is asked of
 * SQLite itself, so the library's rule cannot drift from it. */
static void test_numeric_text_keys_follow_sqlite(void **state)
{
    test_fixture *f = *state;
    fixture_exec(f, "CREATE TABLE codes(code NUMERIC PRIMARY KEY, v TEXT);"
                    "CREATE TABLE codes_v2(code NUMERIC PRIMARY KEY, v TEXT);"
                    "CREATE TABLE probe(k NUMERIC);");
    static const char *const CODE[] = {"code"};
    static const dw_column_map UPV[] = {{"v", "v"}};
    dw_options o = options_for("codes", TEST_SIDE_UNLISTED("codes", CODE),
                               TEST_SIDE_UNLISTED("codes_v2", CODE));
    o.up = UPV;
    o.nup = 1;
    char *err = NULL;
    assert_int_equal(dw_sqlite_open(&f->h, f->t.db, &o, &err), DW_OK);
    static const char *const TEXTS[] = {
        "12",   " 12 ", "+4",   "-3",   "1.5",  ".5",   "5.",  "1e5",
        "1E+5", "2e-3", " -7.25e2 ", "1e",  "1e+", "e5",   "1.2.3", "abc",
        "12a",  "",     " ",    "+",    "-",    ".",   "0x10", "1 2", "١٢"};
    int refused = 0;
    for (size_t i = 0; i < sizeof TEXTS / sizeof *TEXTS; i++) {
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(f->t.db,
                                            "INSERT INTO probe VALUES(?1) "
                                            "RETURNING typeof(k)",
                                            -1, &st, NULL),
                         SQLITE_OK);
        sqlite3_bind_text(st, 1, TEXTS[i], -1, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        int converts = strcmp((const char *)sqlite3_column_text(st, 0),
                              "text") != 0;
        sqlite3_finalize(st);
        dw_value k = dw_text(TEXTS[i]);
        int stage, route;
        int rc = dw_key_stage(&stage, &route, f->h, &k, 1);
        if (rc != (converts ? DW_EMISUSE : DW_OK))
            print_error("key '%s': SQLite %s it, dw_key_stage gave %d: %s\n",
                        TEXTS[i], converts ? "converts" : "keeps", rc,
                        dw_errmsg(f->h));
        assert_int_equal(rc, converts ? DW_EMISUSE : DW_OK);
        if (converts) {
            assert_non_null(strstr(dw_errmsg(f->h), "numeric"));
            refused++;
        }
    }
    /* Both kinds were tried. */
    assert_true(refused >= 8);
    assert_true(refused <= (int)(sizeof TEXTS / sizeof *TEXTS) - 8);
}

/* An INTEGER key on a TEXT key column would be converted to text, naming
 * another key than the one given ([1], not ["1"]): refused, saying what to
 * pass, while a TEXT key and an INTEGER key on an INTEGER column pass. */
static void test_integer_key_on_text_column(void **state)
{
    test_fixture *f = *state;
    fixture_exec(f, "CREATE TABLE tags(tag TEXT PRIMARY KEY, v TEXT);"
                    "CREATE TABLE tags_v2(tag TEXT PRIMARY KEY, v TEXT);"
                    "INSERT INTO tags VALUES('1', 'one');");
    static const char *const TAG[] = {"tag"};
    static const dw_column_map UPV[] = {{"v", "v"}};
    dw_options o = options_for("tags", TEST_SIDE_UNLISTED("tags", TAG),
                               TEST_SIDE_UNLISTED("tags_v2", TAG));
    o.up = UPV;
    o.nup = 1;
    char *err = NULL;
    assert_int_equal(dw_sqlite_open(&f->h, f->t.db, &o, &err), DW_OK);
    int stage, route;
    dw_value k = dw_int(1);
    assert_int_equal(dw_key_stage(&stage, &route, f->h, &k, 1), DW_EMISUSE);
    assert_non_null(strstr(dw_errmsg(f->h), "text affinity"));
    assert_non_null(strstr(dw_errmsg(f->h), "pass a TEXT"));
    k = dw_text("1");
    assert_dw_ok(f->h, dw_key_stage(&stage, &route, f->h, &k, 1));
}

/* ---- C mapping callbacks ------------------------------------------------ */

/* An up mapping callback: in mode 0 it forgets to set "quantity"; in mode 1
 * it sets "title" to a BLOB and "quantity" to NULL. */
static int up_fn_modes(dw_row *out, const dw_row *in, void *payload)
{
    const int *mode = payload;
    (void)in;
    if (*mode == 0)
        return dw_row_set_text(out, "title", "ONLY TITLE");
    int rc = dw_row_set_blob(out, "title", "HI", 2);
    return rc != DW_OK ? rc : dw_row_set_null(out, "quantity");
}

static void open_items_up_fn(test_fixture *f, int *mode)
{
    create_items(f->t.db);
    dw_options o = items_options();
    o.up_fn = up_fn_modes;
    o.map_payload = mode;
    o.map_version = "up_fn_modes v1";
    assert_int_equal(open_migration(&f->h, f->t.db, &o), DW_OK);
    stage_force_ok(f->h, DW_STAGE_DUAL_WRITE);
}

/* A mapping callback that leaves a new-model column unset fails the dual
 * write as a callback failure naming the column, on the new side, and
 * neither side keeps anything. */
static void test_mapping_callback_leaves_column_unset(void **state)
{
    test_fixture *f = *state;
    int mode = 0;
    open_items_up_fn(f, &mode);
    fixture_exec(f, "INSERT INTO items VALUES(1, 'apple', 1);"
                    "INSERT INTO items_v2 VALUES(1, 'APPLE', 1);");
    char o0[256], n0[256], o1[256], n1[256];
    dump_old(f->t.db, o0, sizeof o0);
    dump_new(f->t.db, n0, sizeof n0);

    for (int64_t id = 1; id <= 2; id++) { /* an update, then an insert */
        wctx c = {"pear", 5, NULL, 0, 0, 0};
        dw_value k = dw_int(id);
        assert_dw(f->h, dw_write(f->h, &k, 1, w_old, NULL, &c), DW_ECALLBACK);
        assert_int_equal(dw_errside(f->h), DW_SIDE_NEW);
        assert_non_null(strstr(dw_errmsg(f->h), "up mapping callback"));
        assert_non_null(strstr(dw_errmsg(f->h), "did not set column"));
        assert_non_null(strstr(dw_errmsg(f->h), "\"quantity\""));
        assert_string_equal(dump_old(f->t.db, o1, sizeof o1), o0);
        assert_string_equal(dump_new(f->t.db, n1, sizeof n1), n0);
        assert_int_equal(outside_transaction(f->t.db), 1);
    }
    /* dw_mirror() of the stored row fails the same way. */
    dw_value k1 = dw_int(1);
    assert_dw(f->h, dw_mirror(f->h, &k1, 1), DW_ECALLBACK);
    assert_non_null(strstr(dw_errmsg(f->h), "\"quantity\""));
    assert_string_equal(dump_new(f->t.db, n1, sizeof n1), n0);
}

/* What a mapping callback sets is written as it is: a BLOB stays a BLOB,
 * NULL stays NULL. */
static void test_mapping_callback_blob_and_null(void **state)
{
    test_fixture *f = *state;
    int mode = 1;
    open_items_up_fn(f, &mode);
    wctx c = {"kiwi", 3, NULL, 0, 0, 0};
    dw_value k = dw_int(2);
    assert_dw_ok(f->h, dw_write(f->h, &k, 1, w_old, NULL, &c));
    char buf[64];
    assert_string_equal(query_text(f->t.db,
                                   "SELECT typeof(title) || ':' || hex(title) "
                                   "|| ':' || typeof(quantity) FROM items_v2 "
                                   "WHERE id = 2",
                                   buf, sizeof buf),
                        "blob:4849:null");
    assert_int_equal(fixture_int(f, "SELECT qty FROM items WHERE id = 2"), 3);
}

/* A write that meets a UNIQUE failure, keeps SQLite's message with
 * dw_sqlite_result(), handles it, and then succeeds. */
static int w_old_handles_failure(void *db, const dw_value *key, int nkey,
                                 void *payload)
{
    (void)nkey;
    (void)payload;
    int rc = callback_exec(db, "INSERT INTO items(id, name, qty) VALUES(1, "
                               "'dup', 1)", "");
    assert_int_equal(rc, DW_ECONSTRAINT); /* kept, then handled */
    return callback_exec(db, "UPDATE items SET qty = qty + 1 WHERE id = ?1",
                         "v", &key[0]);
}

/* Fails with DW_ECONSTRAINT of its own, without SQLite. */
static int w_new_refuses(void *db, const dw_value *key, int nkey,
                         void *payload)
{
    (void)db;
    (void)key;
    (void)nkey;
    (void)payload;
    return DW_ECONSTRAINT;
}

/* A message dw_sqlite_result() kept for a failure the callback handled is
 * forgotten when the next callback starts: the new side's own refusal is
 * not told the old side's UNIQUE failure. */
static void test_kept_message_not_stale(void **state)
{
    test_fixture *f = *state;
    items_at(f, DW_STAGE_DUAL_WRITE, 0, 1);
    fixture_exec(f, "INSERT INTO items VALUES(1, 'apple', 1);"
                    "INSERT INTO items_v2 VALUES(1, 'APPLE', 1);");
    dw_value k = dw_int(1);
    assert_dw(f->h,
              dw_write(f->h, &k, 1, w_old_handles_failure, w_new_refuses,
                       NULL),
              DW_ECONSTRAINT);
    assert_int_equal(dw_errside(f->h), DW_SIDE_NEW);
    assert_null(strstr(dw_errmsg(f->h), "UNIQUE"));
    assert_non_null(strstr(dw_errmsg(f->h), "constraint violated"));
    assert_int_equal(fixture_int(f, "SELECT qty FROM items WHERE id = 1"), 1);
}

/* ---- what a write callback returns -------------------------------------- */

/* Each kind of value a write callback may return, on either side: the
 * library's own failure codes keep their meaning when they have one
 * (busy, constraint, out of memory) and are a callback failure otherwise;
 * SQLite codes mapped by dw_sqlite_result() likewise, with SQLite's
 * message; any other value is a callback failure -- an SQLite code
 * returned as it is with a hint to map it.
 * The message names the side, the table and what was returned, and
 * nothing of the write is kept. */
static void test_callback_result_codes(void **state)
{
    test_fixture *f = *state;
    items_at(f, DW_STAGE_DUAL_WRITE, 0, 1);
    fixture_exec(f, "INSERT INTO items VALUES(1, 'apple', 1);"
                    "INSERT INTO items_v2 VALUES(1, 'APPLE', 1);");
    char o0[256], n0[256], o1[256], n1[256];
    dump_old(f->t.db, o0, sizeof o0);
    dump_new(f->t.db, n0, sizeof n0);
    static const struct {
        int ret, native, code;
        const char *detail;
    } cases[] = {
        {DW_EBUSY, 0, DW_EBUSY, "database is busy"},
        {DW_ECONSTRAINT, 0, DW_ECONSTRAINT, "constraint violated"},
        {DW_ENOMEM, 0, DW_ENOMEM, "out of memory"},
        {DW_ERROR, 0, DW_ECALLBACK, "database error"},
        {DW_EMISUSE, 0, DW_ECALLBACK, "bad argument"},
        {DW_ENOTFOUND, 0, DW_ECALLBACK, "not found"},
        {DW_ECALLBACK, 0, DW_ECALLBACK, "an application callback failed"},
        {SQLITE_BUSY, 1, DW_EBUSY, "database is locked"},
        {SQLITE_LOCKED, 1, DW_EBUSY, "database table is locked"},
        {SQLITE_BUSY_SNAPSHOT, 1, DW_EBUSY, "database is locked"},
        {SQLITE_NOMEM, 1, DW_ENOMEM, "out of memory"},
        {SQLITE_CONSTRAINT_CHECK, 1, DW_ECONSTRAINT, "constraint"},
        {SQLITE_IOERR, 1, DW_ECALLBACK, "disk I/O error"},
        {SQLITE_BUSY, 0, DW_ECALLBACK, "map it with dw_sqlite_result()"},
        {SQLITE_CONSTRAINT, 0, DW_ECALLBACK, "not a DW_ result code"},
        {DW_EGATE, 0, DW_ECALLBACK, "callback failed"},
        {-42, 0, DW_ECALLBACK, "callback failed"},
        {INT32_MIN, 0, DW_ECALLBACK, "callback failed"},
    };
    for (int side = DW_SIDE_OLD; side <= DW_SIDE_NEW; side++) {
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            wctx c = {"pear", 5, "PEAR", 5, 0, 0};
            rets_native = cases[i].native;
            if (side == DW_SIDE_OLD)
                c.old_ret = cases[i].ret;
            else
                c.new_ret = cases[i].ret;
            dw_value k = dw_int(1);
            int rc = dw_write(f->h, &k, 1, w_old, w_new, &c);
            const char *msg = dw_errmsg(f->h);
            char returned[32];
            snprintf(returned, sizeof returned, "(returned %d)",
                     cases[i].native ? dw_sqlite_result(NULL, cases[i].ret)
                                     : cases[i].ret);
            if (rc != cases[i].code || !strstr(msg, cases[i].detail) ||
                !strstr(msg, returned))
                print_error("side %d, callback returned %d: dw_write gave %d "
                            "(%s), expected %d with \"%s\"\n",
                            side, cases[i].ret, rc, msg, cases[i].code,
                            cases[i].detail);
            assert_int_equal(rc, cases[i].code);
            assert_int_equal(dw_errside(f->h), side);
            assert_non_null(strstr(msg, cases[i].detail));
            assert_non_null(strstr(msg, returned));
            assert_non_null(strstr(msg, side == DW_SIDE_OLD
                                            ? "old side: the write callback"
                                            : "new side: the write callback"));
            assert_non_null(strstr(msg, side == DW_SIDE_OLD ? "\"items\""
                                                            : "\"items_v2\""));
            assert_string_equal(dump_old(f->t.db, o1, sizeof o1), o0);
            assert_string_equal(dump_new(f->t.db, n1, sizeof n1), n0);
            assert_int_equal(outside_transaction(f->t.db), 1);
        }
    }
    rets_native = 0;
}

/* ---- a callback that ends the library's transaction ---------------------- */

/* A new-side write that treats a conflict as harmless: its INSERT OR
 * ROLLBACK meets the primary key, SQLite rolls back the whole transaction,
 * and the callback ignores the error and reports success -- which the
 * header forbids (a callback must not end the library's transaction). */
static int w_new_rollback_ignored(void *db, const dw_value *key, int nkey,
                                  void *payload)
{
    (void)payload;
    log_call('n');
    if (nkey != 1)
        return 99;
    (void)callback_exec(db,
                        "INSERT OR ROLLBACK INTO items_v2(id, title, quantity)"
                        " VALUES(?1, ?2, ?3)",
                        "iti", key[0].i, "CLASH", (int64_t)1);
    return 0;
}

/* The write cannot be reported as done when its transaction is gone: it
 * fails with DW_ERROR saying so at the top level, with DW_EROLLEDBACK
 * inside the caller's transaction (which went too), and nothing is
 * applied. */
static void test_callback_ends_transaction(void **state)
{
    test_fixture *f = *state;
    items_at(f, DW_STAGE_DUAL_WRITE, 0, 1);
    sqlite3 *db = f->t.db;
    exec_ok(db, "INSERT INTO items_v2 VALUES(5, 'PRE5', 0);");
    char n0[256], n1[256];
    dump_new(db, n0, sizeof n0);
    wctx c = {"pear", 2, NULL, 0, 0, 0};

    dw_value k5 = dw_int(5);
    log_reset();
    assert_dw(f->h, dw_write(f->h, &k5, 1, w_old, w_new_rollback_ignored, &c),
              DW_ERROR);
    assert_string_equal(g_log, "on");
    assert_non_null(strstr(dw_errmsg(f->h), "rolled back the transaction"));
    assert_non_null(strstr(dw_errmsg(f->h), "nothing was applied"));
    assert_int_equal(outside_transaction(db), 1);
    assert_int_equal(query_int(db, "SELECT count(*) FROM items"), 0);
    assert_string_equal(dump_new(db, n1, sizeof n1), n0);

    /* Inside the caller's transaction, which went too: DW_EROLLEDBACK,
     * and the next call outside a transaction is refused once. */
    exec_ok(db, "BEGIN");
    exec_ok(db, "INSERT INTO items VALUES(100, 'caller', 1)");
    assert_dw(f->h, dw_write(f->h, &k5, 1, w_old, w_new_rollback_ignored, &c),
              DW_EROLLEDBACK);
    assert_non_null(strstr(dw_errmsg(f->h), "your transaction ended"));
    assert_non_null(strstr(dw_errmsg(f->h), "rolled back"));
    assert_int_equal(outside_transaction(db), 1);
    assert_int_equal(query_int(db, "SELECT count(*) FROM items"), 0);
    assert_string_equal(dump_new(db, n1, sizeof n1), n0);
    wctx ok = {"plum", 3, NULL, 0, 0, 0};
    dw_value k7 = dw_int(7);
    assert_dw(f->h, dw_write(f->h, &k7, 1, w_old, NULL, &ok), DW_EROLLEDBACK);
    assert_int_equal(query_int(db, "SELECT count(*) FROM items"), 0);

    /* The handle still writes. */
    assert_dw_ok(f->h, dw_write(f->h, &k7, 1, w_old, NULL, &ok));
    assert_int_equal(query_int(db, "SELECT count(*) FROM items_v2 WHERE id=7"),
                     1);
}


/* A new-side callback that commits the caller's transaction. */
static int w_new_commits(void *db, const dw_value *key, int nkey,
                         void *payload)
{
    (void)payload;
    (void)key;
    log_call('n');
    if (nkey != 1)
        return 99;
    return sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
}

/* A callback that commits the caller's transaction: DW_EROLLEDBACK all
 * the same (the transaction is gone), but the message must not claim that
 * everything it did was rolled back: the old side's write was committed. */
static void test_callback_commits_caller_transaction(void **state)
{
    test_fixture *f = *state;
    items_at(f, DW_STAGE_DUAL_WRITE, 0, 1);
    sqlite3 *db = f->t.db;
    wctx c = {"pear", 2, NULL, 0, 0, 0};
    dw_value k5 = dw_int(5);
    exec_ok(db, "BEGIN");
    exec_ok(db, "INSERT INTO items VALUES(100, 'caller', 1)");
    assert_dw(f->h, dw_write(f->h, &k5, 1, w_old, w_new_commits, &c),
              DW_EROLLEDBACK);
    assert_int_equal(outside_transaction(db), 1);
    /* Committed, the old side's write with it: the message says it may be
     * so, not that all is gone. */
    assert_int_equal(query_int(db, "SELECT count(*) FROM items"), 2);
    assert_non_null(strstr(dw_errmsg(f->h), "committed it"));
    assert_non_null(strstr(dw_errmsg(f->h), "in part"));
}

/* Busy inside the caller's transaction: SQLite keeps the transaction, so
 * the write is DW_EBUSY, not DW_EROLLEDBACK, what the caller did stays,
 * and the handle's next call outside a transaction is not refused. */
static void test_busy_in_caller_transaction(void **state)
{
    test_fixture *f = *state;
    items_at(f, DW_STAGE_DUAL_WRITE, 0, 1);
    sqlite3 *db = f->t.db;
    sqlite3_busy_timeout(db, 20);
    fixture_connect_second(f);
    wctx c = {"apple", 1, "APPLE", 1, 0, 0};
    dw_value k = dw_int(1);
    exec_ok(db, "BEGIN");
    assert_int_equal(query_int(db, "SELECT count(*) FROM items"), 0);
    exec_ok(f->db2, "BEGIN IMMEDIATE");
    assert_dw(f->h, dw_write(f->h, &k, 1, w_old, w_new, &c), DW_EBUSY);
    assert_int_equal(outside_transaction(db), 0);
    exec_ok(f->db2, "COMMIT");
    exec_ok(db, "COMMIT");
    assert_dw_ok(f->h, dw_write(f->h, &k, 1, w_old, w_new, &c));

    /* The caller's write lock taken, another connection reading: the
     * write goes through inside the transaction. */
    exec_ok(db, "BEGIN IMMEDIATE");
    exec_ok(db, "INSERT INTO items VALUES(100, 'caller', 1)");
    exec_ok(f->db2, "BEGIN");
    assert_int_equal(query_int(f->db2, "SELECT count(*) FROM items"), 1);
    dw_value k2 = dw_int(2);
    wctx c2 = {"pear", 2, "PEAR", 2, 0, 0};
    assert_dw_ok(f->h, dw_write(f->h, &k2, 1, w_old, w_new, &c2));
    exec_ok(f->db2, "COMMIT");
    exec_ok(db, "COMMIT");
    assert_int_equal(query_int(db, "SELECT count(*) FROM items"), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_every_stage, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_mirror_up, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_mirror_down, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_missing_callback_is_misuse, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_delete_mirrors, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_dw_mirror, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_both_or_neither, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_nesting_in_caller_transaction, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_composite_text_key, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_same_table_new_columns, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_repair_queue, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_busy, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_metrics, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_repair_queue_sqlite_rollback, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_mirror_bind_failure, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_numeric_text_keys_follow_sqlite, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_integer_key_on_text_column,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_mapping_callback_leaves_column_unset, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_mapping_callback_blob_and_null, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_callback_result_codes, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_kept_message_not_stale,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_callback_ends_transaction, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_callback_commits_caller_transaction, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_busy_in_caller_transaction, fixture_setup, fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
