/* A side whose model is its key alone: a many-to-many link table. The old
 * side tag_item(tag_id, item_id) becomes tag_item_v2 (WITHOUT ROWID) with an
 * added position, and every stage, backfill, verify, repair, routing, the
 * contract and the restore work on it; presence is what is compared. Also a
 * key-only new side (a column dropped), the constraint a key-only upsert
 * must still report, and the one-table case that cannot be key-only. And a
 * key-only new side with TEXT in its key, by SQL and by C callbacks, at
 * every stage; promotion and a canary of the link table; a backfill into
 * it resumed; {"sql":{}} refused into a side with columns. */
#include "fault.h"

#include <stdio.h>
#include <string.h>

static const char *const link_key[] = {"tag_id", "item_id"};
static const dw_column_map link_up[] = {{"position", "0"}};

#define LINK_SCHEMA                                                            \
    "CREATE TABLE tag_item(tag_id INTEGER NOT NULL, item_id INTEGER NOT "     \
    "NULL, PRIMARY KEY(tag_id, item_id));"                                    \
    "CREATE TABLE tag_item_v2(tag_id INTEGER NOT NULL, item_id INTEGER NOT "  \
    "NULL, position INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(tag_id, "         \
    "item_id)) WITHOUT ROWID;"

/* A migration from table old to table new, both keyed by the two columns
 * of key, with no mapping yet. */
static dw_options two_key_opts(const char *name, const char *old,
                               const char *new, const char *const key[2])
{
    dw_options o = DW_OPTIONS_INIT;
    o.name = name;
    o.old_side.table = old;
    o.old_side.key_columns = key;
    o.old_side.nkey_columns = 2;
    o.new_side.table = new;
    o.new_side.key_columns = key;
    o.new_side.nkey_columns = 2;
    return o;
}

static dw_options link_opts(const char *name)
{
    dw_options o = two_key_opts(name, "tag_item", "tag_item_v2", link_key);
    o.up = link_up;
    o.nup = 1;
    return o;
}

/* The key (tag_id, item_id) as two values in k. */
static const dw_value *link(dw_value k[2], int tag, int item)
{
    k[0] = dw_int(tag);
    k[1] = dw_int(item);
    return k;
}

/* The write callback of either side: inserts or deletes the key's row of
 * one table by SQL (a new-side row takes its default position). */
typedef struct link_write {
    const char *table;
    int insert; /* 1 insert, 0 delete */
} link_write;

static int write_row(void *db, const dw_value *key, int nkey, void *p)
{
    const link_write *w = p;
    assert_int_equal(nkey, 2);
    char sql[128];
    snprintf(sql, sizeof sql,
             w->insert ? "INSERT INTO %s(tag_id, item_id) VALUES(?1, ?2)"
                       : "DELETE FROM %s WHERE tag_id = ?1 AND item_id = ?2",
             w->table);
    return callback_exec(db, sql, "ii", key[0].i, key[1].i);
}

enum { DROP = 0, ADD = 1 };

/* dw_write() of a link, the trusted side by write_row(), the other synced. */
static int write_through(dw_migration *h, int trusted, int tag, int item,
                         int insert)
{
    dw_value k[2];
    link_write w = {trusted == DW_SIDE_OLD ? "tag_item" : "tag_item_v2",
                    insert};
    return dw_write(h, link(k, tag, item), 2,
                    trusted == DW_SIDE_OLD ? write_row : NULL,
                    trusted == DW_SIDE_NEW ? write_row : NULL, &w);
}

static int has_row(sqlite3 *db, const char *table, int tag, int item)
{
    char sql[160];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM %s WHERE tag_id = %d AND item_id = %d",
             table, tag, item);
    return (int)query_int(db, sql);
}

/* Old and new hold the same links, every new row at position 0 (what the
 * up mapping gives). */
static void assert_level(sqlite3 *db)
{
    assert_int_equal(query_int(db, "SELECT count(*) FROM (SELECT tag_id, "
                                   "item_id FROM tag_item EXCEPT SELECT "
                                   "tag_id, item_id FROM tag_item_v2)"),
                     0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM (SELECT tag_id, "
                                   "item_id FROM tag_item_v2 EXCEPT SELECT "
                                   "tag_id, item_id FROM tag_item)"),
                     0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM tag_item_v2 WHERE "
                                   "position <> 0"),
                     0);
}

/* Writes a link through the migration, the trusted side by its callback
 * and the other synced, and checks both tables hold it after an insert and
 * neither after a delete. */
static void write_link(sqlite3 *db, dw_migration *h, int trusted, int tag,
                       int item, int insert)
{
    assert_dw_ok(h, write_through(h, trusted, tag, item, insert));
    assert_int_equal(has_row(db, "tag_item", tag, item), insert);
    assert_int_equal(has_row(db, "tag_item_v2", tag, item), insert);
}

/* Mirrors a link and checks the other table then holds it, or not. */
static void mirror_link(sqlite3 *db, dw_migration *h, const char *other,
                        int tag, int item, int present)
{
    dw_value k[2];
    assert_dw_ok(h, dw_mirror(h, link(k, tag, item), 2));
    assert_int_equal(has_row(db, other, tag, item), present);
}

/* Mismatch kinds the sink saw, by kind. */
typedef struct seen {
    int kinds[4];
} seen;

static void sink(const dw_mismatch *m, void *payload)
{
    seen *s = payload;
    assert_true(m->kind >= 1 && m->kind <= 3);
    s->kinds[m->kind]++;
}

static void verify_counts(dw_migration *h, int64_t missing, int64_t extra,
                          int64_t different)
{
    dw_verify_result r;
    assert_dw_ok(h, dw_verify(&r, h, NULL));
    assert_int_equal(r.missing, missing);
    assert_int_equal(r.extra, extra);
    assert_int_equal(r.different, different);
    assert_int_equal(r.clean, missing + extra + different == 0);
}

static void stage_to(dw_migration *h, int stage)
{
    assert_dw_ok(h, dw_stage_set(h, stage, "link table", 0));
}

/* The stored spec: the old side's columns are [] and the down mapping is
 * the key alone, an SQL mapping with no expressions. */
static void check_stored_spec(sqlite3 *db)
{
    char buf[512];
    query_text(db, "SELECT spec FROM dw_migrations WHERE name = 'links'",
               buf, sizeof buf);
    assert_non_null(strstr(buf, "\"old\":{\"table\":\"tag_item\",\"key\":"
                                "[\"tag_id\",\"item_id\"],\"columns\":[]}"));
    assert_non_null(strstr(buf, "\"down\":{\"sql\":{}}"));
}

/* Stages OFF to SHADOW: dual writes, mirror, backfill, shadow reads. */
static void expand(test_db *t, dw_migration *h, seen *s)
{
    dw_value k[2];
    stage_to(h, DW_STAGE_DUAL_WRITE);
    /* An insert reaches both sides; the new row gets the mapped position;
     * mirroring it again keeps it. A delete reaches both sides. */
    write_link(t->db, h, DW_SIDE_OLD, 4, 13, ADD);
    mirror_link(t->db, h, "tag_item_v2", 4, 13, 1);
    write_link(t->db, h, DW_SIDE_OLD, 4, 13, DROP);
    /* The application wrote the old side itself: dw_mirror() follows. */
    exec_ok(t->db, "INSERT INTO tag_item VALUES(6, 15)");
    mirror_link(t->db, h, "tag_item_v2", 6, 15, 1);
    exec_ok(t->db, "DELETE FROM tag_item WHERE tag_id = 6");
    mirror_link(t->db, h, "tag_item_v2", 6, 15, 0);

    /* The links from before are copied by the backfill. */
    assert_int_equal(query_int(t->db, "SELECT count(*) FROM tag_item_v2"), 0);
    dw_backfill_progress p;
    assert_dw_ok(h, dw_backfill(&p, h, NULL));
    assert_int_equal(query_int(t->db, "SELECT count(*) FROM tag_item_v2"), 4);
    assert_level(t->db);

    /* Shadow reads: the key alone is the old row; presence is compared. */
    stage_to(h, DW_STAGE_SHADOW);
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    assert_dw_ok(h, dw_read(row, h, link(k, 1, 10), 2, NULL, NULL, NULL));
    assert_int_equal(dw_row_count(row), 2);
    assert_int_equal(dw_row_get(row, "item_id")->i, 10);
    dw_metrics m;
    memset(&m, 0, sizeof m);
    assert_dw_ok(h, dw_metrics_get(&m, h));
    assert_int_equal(m.matches, 1);
    assert_int_equal(m.mismatches, 0);
    /* A link lost on the new side: the read still answers from the old
     * side, and reports the row missing. */
    exec_ok(t->db, "DELETE FROM tag_item_v2 WHERE tag_id = 2 AND item_id = "
                   "10");
    assert_dw_ok(h, dw_read(row, h, link(k, 2, 10), 2, NULL, NULL, NULL));
    assert_int_equal(dw_row_get(row, "tag_id")->i, 2);
    assert_int_equal(s->kinds[DW_MISMATCH_MISSING_NEW], 1);
    /* A link only the new side has: not found (old is trusted), reported
     * as extra. */
    exec_ok(t->db, "INSERT INTO tag_item_v2 VALUES(9, 99, 0)");
    assert_dw(h, dw_read(row, h, link(k, 9, 99), 2, NULL, NULL, NULL),
              DW_ENOTFOUND);
    assert_int_equal(s->kinds[DW_MISMATCH_EXTRA_NEW], 1);
    int equal = -1;
    assert_dw_ok(h, dw_compare(&equal, h, link(k, 9, 99), 2));
    assert_int_equal(equal, 0);
    assert_dw_ok(h, dw_compare(&equal, h, link(k, 1, 11), 2));
    assert_int_equal(equal, 1);
    /* A new column that disagrees with the mapping is a difference. */
    exec_ok(t->db, "UPDATE tag_item_v2 SET position = 5 WHERE tag_id = 1 AND "
                   "item_id = 11");
    assert_dw_ok(h, dw_compare(&equal, h, link(k, 1, 11), 2));
    assert_int_equal(equal, 0);
    assert_int_equal(s->kinds[DW_MISMATCH_DIFFERENT], 1);
    dw_row_free(row);
}

/* Verify finds the three divergences, repair mends them, verify is clean. */
static void verify_and_repair(test_db *t, dw_migration *h)
{
    verify_counts(h, 1, 1, 1);
    dw_repair_result rr;
    assert_dw_ok(h, dw_repair_divergent(&rr, h));
    assert_int_equal(rr.repaired, 3);
    assert_int_equal(rr.failed, 0);
    assert_int_equal(has_row(t->db, "tag_item_v2", 2, 10), 1);
    assert_int_equal(has_row(t->db, "tag_item_v2", 9, 99), 0);
    assert_level(t->db);
    verify_counts(h, 0, 0, 0);
}

/* One key routed ahead to LIVE while the migration is at SHADOW: the new
 * side is written first and the link table follows through the down
 * mapping (the key alone). */
static void routed_key(test_db *t, dw_migration *h)
{
    dw_value k[2];
    assert_dw_ok(h, dw_override_set(h, link(k, 3, 12), 2, 1, DW_STAGE_LIVE,
                                    "canary link"));
    int stage = -1, route = -1;
    assert_dw_ok(h, dw_key_stage(&stage, &route, h, link(k, 3, 12), 2));
    assert_int_equal(stage, DW_STAGE_LIVE);
    assert_int_equal(route, DW_ROUTE_OVERRIDE);
    write_link(t->db, h, DW_SIDE_NEW, 3, 12, DROP);
    write_link(t->db, h, DW_SIDE_NEW, 3, 12, ADD);
    /* Its reads are answered by the new side, with the new column. */
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    assert_dw_ok(h, dw_read(row, h, link(k, 3, 12), 2, NULL, NULL, NULL));
    assert_int_equal(dw_row_count(row), 3);
    assert_int_equal(dw_row_get(row, "position")->i, 0);
    dw_row_free(row);
    int cleared = 0;
    assert_dw_ok(h, dw_override_clear(&cleared, h, link(k, 3, 12), 2, 1,
                                      "canary done"));
    assert_int_equal(cleared, 1);
    assert_level(t->db);
}

/* LIVE and RAMPDOWN: the new side is written first, the link table follows
 * (inserts and deletes). */
static void trust_new(test_db *t, dw_migration *h)
{
    dw_value k[2];
    stage_to(h, DW_STAGE_LIVE);
    /* Mirroring an existing link again keeps it on the link table. */
    write_link(t->db, h, DW_SIDE_NEW, 7, 16, ADD);
    mirror_link(t->db, h, "tag_item", 7, 16, 1);
    write_link(t->db, h, DW_SIDE_NEW, 1, 10, DROP);
    dw_metrics before, after;
    memset(&before, 0, sizeof before);
    memset(&after, 0, sizeof after);
    assert_dw_ok(h, dw_metrics_get(&before, h));
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    assert_dw_ok(h, dw_read(row, h, link(k, 7, 16), 2, NULL, NULL, NULL));
    dw_row_free(row);
    assert_dw_ok(h, dw_metrics_get(&after, h));
    assert_int_equal(after.matches, before.matches + 1);
    assert_level(t->db);
    stage_to(h, DW_STAGE_RAMPDOWN);
    write_link(t->db, h, DW_SIDE_NEW, 8, 17, ADD);
    verify_counts(h, 0, 0, 0);
    stage_to(h, DW_STAGE_COMPLETE);
}

/* The contract backs the link table up and drops it; the restore puts it
 * back, and the backfill at RAMPDOWN brings it level with the new side. */
static void contract_and_restore(test_db *t, dw_migration *h)
{
    char backup[400];
    snprintf(backup, sizeof backup, "%s/links.backup", t->dir);
    int64_t links = query_int(t->db, "SELECT count(*) FROM tag_item");
    assert_dw_ok(h, dw_contract(h, backup, "drop the link table"));
    assert_int_equal(query_int(t->db, "SELECT count(*) FROM sqlite_schema "
                                      "WHERE name = 'tag_item'"),
                     0);
    /* The new side goes on alone; the handle reopens from the store. */
    assert_dw_ok(h, write_through(h, DW_SIDE_NEW, 5, 18, ADD));
    dw_close(h);
    dw_options o = link_opts("links");
    h = open_migration_ok(t->db, &o);

    assert_dw_ok(h, dw_restore(h, backup, "bring it back"));
    assert_int_equal(query_int(t->db, "SELECT count(*) FROM tag_item"), links);
    assert_int_equal(has_row(t->db, "tag_item", 5, 18), 0);
    int stage = -1;
    assert_dw_ok(h, dw_stage_get(&stage, h));
    assert_int_equal(stage, DW_STAGE_RAMPDOWN);
    backfill_and_verify(h);
    assert_int_equal(has_row(t->db, "tag_item", 5, 18), 1);
    assert_level(t->db);
    dw_close(h);
    remove(backup);
}

static void test_link_table_lifecycle(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, LINK_SCHEMA "INSERT INTO tag_item VALUES(1, 10), (1, 11), "
                              "(2, 10), (3, 12);");
    seen s;
    memset(&s, 0, sizeof s);
    dw_options o = link_opts("links");
    o.mismatch_fn = sink;
    o.mismatch_payload = &s;
    dw_migration *h = open_migration_ok(t.db, &o);
    check_stored_spec(t.db);
    /* The stored spec opens as it was stored (same digest). */
    dw_migration *stored = NULL;
    char *err = NULL;
    assert_int_equal(dw_sqlite_open_stored(&stored, t.db, "links", 0, &err), DW_OK);
    assert_string_equal(dw_spec_digest(stored), dw_spec_digest(h));
    dw_close(stored);

    expand(&t, h, &s);
    verify_and_repair(&t, h);
    routed_key(&t, h);
    trust_new(&t, h);
    contract_and_restore(&t, h);
    test_db_close(&t);
}

/* The link-table migration defined, backfilled, verified and at LIVE. */
static dw_migration *open_at_live(sqlite3 *db)
{
    dw_options o = link_opts("links");
    dw_migration *h = open_migration_ok(db, &o);
    stage_to(h, DW_STAGE_DUAL_WRITE);
    backfill_and_verify(h);
    stage_to(h, DW_STAGE_SHADOW);
    stage_to(h, DW_STAGE_LIVE);
    return h;
}

/* A key-only side's upsert absorbs only the conflict on its key: another
 * UNIQUE constraint is reported, in a dual write and in the backfill. */
static void test_key_only_upsert_reports_other_constraints(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    /* Each item has one tag at most on the old side. */
    exec_ok(t.db, LINK_SCHEMA "CREATE UNIQUE INDEX one_tag ON "
                              "tag_item(item_id);"
                              "INSERT INTO tag_item VALUES(1, 10);");
    dw_migration *h = open_at_live(t.db);
    /* The down mirror of (2, 10) meets one_tag: both writes roll back. */
    assert_dw(h, write_through(h, DW_SIDE_NEW, 2, 10, ADD), DW_ECONSTRAINT);
    assert_int_equal(dw_errside(h), DW_SIDE_OLD);
    assert_non_null(strstr(dw_errmsg(h), "UNIQUE"));
    assert_int_equal(has_row(t.db, "tag_item_v2", 2, 10), 0);
    /* Written past the library, the backfill (new to old at RAMPDOWN)
     * stops on it, naming the key. */
    stage_to(h, DW_STAGE_RAMPDOWN);
    exec_ok(t.db, "INSERT INTO tag_item_v2 VALUES(2, 10, 0)");
    dw_backfill_options bo = DW_BACKFILL_OPTIONS_INIT;
    bo.flags = DW_BACKFILL_RESTART;
    assert_dw(h, dw_backfill(NULL, h, &bo), DW_ECONSTRAINT);
    assert_non_null(strstr(dw_errmsg(h), "[2,10]"));
    assert_int_equal(has_row(t.db, "tag_item", 2, 10), 0);
    dw_close(h);
    test_db_close(&t);
}

/* tag_item_v1(tag_id, item_id, note) becomes tag_item, the key alone. */
#define DROP_NOTE_SCHEMA                                                       \
    "CREATE TABLE tag_item_v1(tag_id INTEGER NOT NULL, item_id INTEGER NOT "  \
    "NULL, note TEXT, PRIMARY KEY(tag_id, item_id));"                         \
    "CREATE TABLE tag_item(tag_id INTEGER NOT NULL, item_id INTEGER NOT "     \
    "NULL, PRIMARY KEY(tag_id, item_id)) WITHOUT ROWID;"

/* Into the key alone: no up mapping given. */
static dw_options drop_note_opts(const char *name)
{
    return two_key_opts(name, "tag_item_v1", "tag_item", link_key);
}

/* The new side can be the key alone too (a column dropped): no up mapping
 * is needed, and the down mapping fills the old column back. */
static void test_key_only_new_side(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, DROP_NOTE_SCHEMA "INSERT INTO tag_item_v1 VALUES(1, 10, "
                                  "'a'), (2, 20, 'b');");
    static const dw_column_map down[] = {{"note", "'restored'"}};
    dw_options o = drop_note_opts("drop_note");
    o.down = down;
    o.ndown = 1;
    dw_migration *h = open_migration_ok(t.db, &o);
    char buf[512];
    query_text(t.db, "SELECT spec FROM dw_migrations WHERE name = "
                     "'drop_note'",
               buf, sizeof buf);
    assert_non_null(strstr(buf, "\"up\":{\"sql\":{}}"));
    dw_migration *stored = NULL;
    assert_int_equal(dw_sqlite_open_stored(&stored, t.db, "drop_note", 0, NULL),
                     DW_OK);
    assert_string_equal(dw_spec_digest(stored), dw_spec_digest(h));
    dw_close(stored);

    stage_to(h, DW_STAGE_DUAL_WRITE);
    dw_value k[2];
    exec_ok(t.db, "INSERT INTO tag_item_v1 VALUES(3, 30, 'c')");
    mirror_link(t.db, h, "tag_item", 3, 30, 1);
    mirror_link(t.db, h, "tag_item", 3, 30, 1);
    backfill_and_verify(h);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM tag_item"), 3);
    stage_to(h, DW_STAGE_SHADOW);
    int equal = -1;
    assert_dw_ok(h, dw_compare(&equal, h, link(k, 2, 20), 2));
    assert_int_equal(equal, 1);
    stage_to(h, DW_STAGE_LIVE);
    exec_ok(t.db, "INSERT INTO tag_item VALUES(4, 40)");
    assert_dw_ok(h, dw_mirror(h, link(k, 4, 40), 2));
    char note[16];
    assert_string_equal(query_text(t.db, "SELECT note FROM tag_item_v1 WHERE "
                                         "tag_id = 4",
                                   note, sizeof note),
                        "restored");
    dw_close(h);

    /* Written by hand, {"sql":{}} is no mapping: enough for the key
     * alone, and refused for a new side with columns. */
    char *err = NULL;
    h = NULL;
    assert_int_equal(dw_sqlite_open_json(&h, t.db, "by_hand",
                                  "{\"old\":{\"table\":\"tag_item_v1\","
                                  "\"key\":[\"tag_id\",\"item_id\"]},"
                                  "\"new\":{\"table\":\"tag_item\","
                                  "\"key\":[\"tag_id\",\"item_id\"]},"
                                  "\"up\":{\"sql\":{}}}",
                                  0, NULL, &err),
                     DW_OK);
    dw_close(h);
    h = NULL;
    assert_int_equal(dw_sqlite_open_json(&h, t.db, "by_hand_bad",
                                  "{\"old\":{\"table\":\"tag_item\","
                                  "\"key\":[\"tag_id\",\"item_id\"]},"
                                  "\"new\":{\"table\":\"tag_item_v1\","
                                  "\"key\":[\"tag_id\",\"item_id\"]},"
                                  "\"up\":{\"sql\":{}}}",
                                  0, NULL, &err),
                     DW_EMISUSE);
    assert_non_null(strstr(err, "an up mapping is required"));
    dw_free(err);
    err = NULL;

    /* Without a down mapping the old side has columns to fill: an up
     * mapping missing for a new side with columns is still refused. */
    dw_options bad = o;
    bad.name = "needs_up";
    bad.new_side.table = "tag_item_v1";
    bad.old_side.table = "tag_item";
    bad.down = NULL;
    bad.ndown = 0;
    h = NULL;
    assert_int_equal(dw_sqlite_open(&h, t.db, &bad, &err), DW_EMISUSE);
    assert_non_null(err);
    assert_non_null(strstr(err, "an up mapping is required"));
    dw_free(err);
    test_db_close(&t);
}

/* An open refused with DW_EMISUSE and a message holding `reason` (err
 * freed), leaving nothing stored: not even the state tables. */
static void assert_refused(sqlite3 *db, int rc, const dw_migration *h,
                           char *err, const char *reason)
{
    assert_int_equal(rc, DW_EMISUSE);
    assert_null(h);
    assert_non_null(err);
    if (!strstr(err, reason))
        print_error("%s\n", err);
    assert_non_null(strstr(err, reason));
    dw_free(err);
    assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_schema "
                                   "WHERE name = 'dw_migrations'"),
                     0);
}

/* Both sides one table: the row is shared, so a side of the key alone
 * would have nothing of its own. Refused, saying why. */
static void test_one_table_side_needs_columns(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, "CREATE TABLE tag_item(tag_id INTEGER NOT NULL, item_id "
                  "INTEGER NOT NULL, position INTEGER, PRIMARY KEY(tag_id, "
                  "item_id));");
    static const char *const none[] = {"unused"};
    static const char *const position[] = {"position"};
    dw_options o = link_opts("one_table");
    o.new_side.table = "tag_item";
    o.old_side.columns = none;
    o.old_side.ncolumns = 0;
    o.new_side.columns = position;
    o.new_side.ncolumns = 1;
    dw_migration *h = NULL;
    char *err = NULL;
    int rc = dw_sqlite_open(&h, t.db, &o, &err);
    assert_refused(t.db, rc, h, err,
                   "old side: no model columns besides the key; both sides "
                   "are table \"tag_item\", which shares its rows");
    test_db_close(&t);
}

/* Opens the link-table migration and mirrors `key` into the link table
 * twice (the second sync finds the row there). */
static int open_and_mirror(void *db, const dw_value *key, int *first)
{
    dw_options o = link_opts("links");
    dw_migration *h = NULL;
    int rc = dw_sqlite_open(&h, db, &o, NULL);
    *first = rc;
    if (rc == DW_OK)
        rc = *first = dw_mirror(h, key, 2);
    if (rc == DW_OK)
        rc = dw_mirror(h, key, 2);
    dw_close(h);
    return rc;
}

/* Out of memory at each allocation, N = 1, 2, ..., of opening the
 * migration and mirroring into its side of the key alone (at LIVE): the
 * result is DW_ENOMEM or DW_OK, nothing leaks, and the link is in the
 * table exactly when a mirror succeeded -- a failed second sync never
 * takes it out. */
static void test_key_only_out_of_memory(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, LINK_SCHEMA "INSERT INTO tag_item VALUES(1, 10);");
    dw_close(open_at_live(t.db));
    /* One connection at a time: SQLite keeps a closed file's descriptor
     * (and an allocation) while another connection holds locks on it. */
    assert_int_equal(sqlite3_close(t.db), SQLITE_OK);
    t.db = NULL;
    int fired = 1, points = 0;
    for (int n = 1; fired; n += fault_stride()) {
        int64_t before = fault_mem_outstanding();
        sqlite3 *db = test_db_connect(&t);
        exec_ok(db, "PRAGMA synchronous = OFF"); /* hundreds of commits */
        char sql[96];
        snprintf(sql, sizeof sql, "INSERT INTO tag_item_v2 VALUES(%d, 1, 0)",
                 100 + n);
        exec_ok(db, sql);
        dw_value k[2];
        fault_mem_arm(n, n % 2);
        int first = DW_OK;
        int rc = open_and_mirror(db, link(k, 100 + n, 1), &first);
        fired = fault_mem_disarm() > 0;
        points = n;
        if (rc != DW_OK && rc != DW_ENOMEM)
            print_error("N = %d: %d (%s)\n", n, rc, dw_errstr(rc));
        assert_true(rc == DW_OK || rc == DW_ENOMEM);
        assert_int_equal(has_row(db, "tag_item", 100 + n, 1), first == DW_OK);
        assert_int_equal(sqlite3_close(db), SQLITE_OK);
        assert_int_equal(fault_mem_outstanding(), before);
    }
    assert_true(points > 100); /* the walk went through it all */
    test_db_close(&t);
}

/* ---- a key-only new side with TEXT keys, callbacks, routing, resume ---- */

/* member_v1(org, user_id, role) becomes member(org, user_id): a rowid table
 * whose key is a UNIQUE index, the role dropped; the down mapping fills it
 * back. */
#define MEMBER_SCHEMA                                                          \
    "CREATE TABLE member_v1(org TEXT NOT NULL, user_id INTEGER NOT NULL, "    \
    "role TEXT NOT NULL DEFAULT 'member', PRIMARY KEY(org, user_id)) "        \
    "WITHOUT ROWID;"                                                          \
    "CREATE TABLE member(org TEXT NOT NULL, user_id INTEGER NOT NULL, "       \
    "UNIQUE(org, user_id));"                                                   \
    "INSERT INTO member_v1 VALUES('acme', 1, 'owner'), ('acme', 2, "          \
    "'member'), ('beta', 1, 'member');"

static const char *const member_key[] = {"org", "user_id"};
static const dw_column_map member_down[] = {{"role", "'member'"}};

static dw_options member_opts(const char *name)
{
    dw_options o = two_key_opts(name, "member_v1", "member", member_key);
    o.down = member_down;
    o.ndown = 1;
    return o;
}

static const dw_value *member(dw_value k[2], const char *org, int user)
{
    k[0] = dw_text(org);
    k[1] = dw_int(user);
    return k;
}

/* Runs the SQL in payload with the key bound to ?1, ?2. */
static int sql_write(void *db, const dw_value *key, int nkey, void *p)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, p, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return dw_sqlite_result(db, rc);
    sqlite3_bind_text(st, 1, key[0].p, key[0].n, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, key[1].i);
    (void)nkey;
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return dw_sqlite_result(db, rc);
}

static int member_count(sqlite3 *db, const char *table, const char *org,
                        int user)
{
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM %s WHERE org = '%s' AND user_id = %d",
             table, org, user);
    return (int)query_int(db, sql);
}

/* DUAL_WRITE to COMPLETE over the key-only member table: writes each way,
 * a row on one side only at each trusted side through dw_read(),
 * dw_compare(), dw_verify() and the repair, and the gates. */
static void walk_member_stages(test_db *t, dw_migration *h)
{
    sqlite3 *db = t->db;
    dw_value k[2];
    stage_to(h, DW_STAGE_DUAL_WRITE);
    assert_dw_ok(h, dw_write(h, member(k, "gamma", 5), 2, sql_write, NULL,
                             "INSERT INTO member_v1(org, user_id) "
                             "VALUES(?1, ?2)"));
    assert_int_equal(member_count(db, "member", "gamma", 5), 1);
    /* Written again: the key-only row stays. */
    assert_dw_ok(h, dw_write(h, member(k, "gamma", 5), 2, sql_write, NULL,
                             "UPDATE member_v1 SET role = 'x' WHERE org = ?1 "
                             "AND user_id = ?2"));
    assert_int_equal(member_count(db, "member", "gamma", 5), 1);
    backfill_and_verify(h);
    assert_int_equal(query_int(db, "SELECT count(*) FROM member"), 4);
    /* One side only, each way: verify, repair. */
    exec_ok(db, "INSERT INTO member VALUES('zeta', 9);"
                "DELETE FROM member WHERE org = 'beta';");
    verify_counts(h, 1, 1, 0);
    dw_repair_result rr;
    assert_dw_ok(h, dw_repair_divergent(&rr, h));
    assert_int_equal(rr.repaired, 2);
    verify_counts(h, 0, 0, 0);
    assert_int_equal(member_count(db, "member", "zeta", 9), 0);
    assert_int_equal(member_count(db, "member", "beta", 1), 1);

    stage_to(h, DW_STAGE_SHADOW);
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    exec_ok(db, "INSERT INTO member VALUES('zeta', 9);");
    assert_dw(h, dw_read(row, h, member(k, "zeta", 9), 2, NULL, NULL, NULL),
              DW_ENOTFOUND);
    int equal = -1;
    assert_dw_ok(h, dw_compare(&equal, h, member(k, "zeta", 9), 2));
    assert_int_equal(equal, 0);
    assert_dw_ok(h, dw_compare(&equal, h, member(k, "acme", 1), 2));
    assert_int_equal(equal, 1);
    exec_ok(db, "DELETE FROM member WHERE org = 'zeta';");
    backfill_and_verify(h);

    stage_to(h, DW_STAGE_LIVE);
    assert_dw_ok(h, dw_write(h, member(k, "delta", 7), 2, NULL, sql_write,
                             "INSERT INTO member VALUES(?1, ?2)"));
    char buf[32];
    assert_string_equal(query_text(db, "SELECT role FROM member_v1 WHERE org "
                                       "= 'delta'",
                                   buf, sizeof buf),
                        "member");
    /* Rewriting an existing key-only row keeps the old row (re-synced). */
    assert_dw_ok(h, dw_mirror(h, member(k, "acme", 1), 2));
    assert_int_equal(member_count(db, "member_v1", "acme", 1), 1);
    assert_string_equal(query_text(db, "SELECT role FROM member_v1 WHERE org "
                                       "= 'acme' AND user_id = 1",
                                   buf, sizeof buf),
                        "member");
    assert_dw_ok(h, dw_write(h, member(k, "delta", 7), 2, NULL, sql_write,
                             "DELETE FROM member WHERE org = ?1 AND user_id "
                             "= ?2"));
    assert_int_equal(member_count(db, "member_v1", "delta", 7), 0);
    /* At LIVE the new side is trusted: reads answer from it. */
    exec_ok(db, "INSERT INTO member VALUES('eta', 3);"
                "INSERT INTO member_v1 VALUES('theta', 4, 'member');");
    assert_dw_ok(h, dw_read(row, h, member(k, "eta", 3), 2, NULL, NULL,
                            NULL));
    assert_int_equal(dw_row_count(row), 2);
    assert_dw(h, dw_read(row, h, member(k, "theta", 4), 2, NULL, NULL, NULL),
              DW_ENOTFOUND);
    verify_counts(h, 1, 1, 0);
    assert_dw_ok(h, dw_repair_divergent(&rr, h));
    assert_int_equal(rr.repaired, 2);
    assert_int_equal(member_count(db, "member_v1", "eta", 3), 1);
    assert_int_equal(member_count(db, "member_v1", "theta", 4), 0);
    backfill_and_verify(h);
    stage_to(h, DW_STAGE_RAMPDOWN);
    stage_to(h, DW_STAGE_COMPLETE);
    dw_row_free(row);
}

/* The contract drops member_v1 (which has the column); a write at COMPLETE
 * reaches the key-only side alone; the spec's digest is the same reopened,
 * opened from the store and restored; the backfill brings the role back. */
static void contract_and_restore_members(test_db *t, dw_migration **hp,
                                         const dw_options *o)
{
    dw_migration *h = *hp;
    dw_value k[2];
    char backup[400];
    snprintf(backup, sizeof backup, "%s/member.backup", t->dir);
    assert_dw_ok(h, dw_contract(h, backup, "drop roles"));
    assert_dw_ok(h, dw_write(h, member(k, "iota", 1), 2, NULL, sql_write,
                             "INSERT INTO member VALUES(?1, ?2)"));
    char saved[80];
    snprintf(saved, sizeof saved, "%s", dw_spec_digest(h));
    dw_close(h);
    h = open_migration_ok(t->db, o);
    assert_string_equal(dw_spec_digest(h), saved);
    dw_migration *stored = NULL;
    assert_int_equal(dw_sqlite_open_stored(&stored, t->db, o->name, 0, NULL),
                     DW_OK);
    assert_string_equal(dw_spec_digest(stored), saved);
    dw_close(stored);
    assert_dw_ok(h, dw_restore(h, backup, "bring roles back"));
    assert_string_equal(dw_spec_digest(h), saved);
    backfill_and_verify(h);
    assert_int_equal(member_count(t->db, "member_v1", "iota", 1), 1);
    remove(backup);
    *hp = h;
}

/* A new side of the key alone, TEXT in a composite key, a rowid table keyed
 * by a UNIQUE index, mapped down by SQL. */
static void test_key_only_new_side_every_stage(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, MEMBER_SCHEMA);
    dw_options o = member_opts("members");
    dw_migration *h = open_migration_ok(t.db, &o);
    /* Open twice: the same digest. */
    dw_migration *again = open_migration_ok(t.db, &o);
    assert_string_equal(dw_spec_digest(again), dw_spec_digest(h));
    dw_close(again);
    walk_member_stages(&t, h);
    contract_and_restore_members(&t, &h, &o);
    dw_close(h);
    test_db_close(&t);
}

/* C callbacks into and out of the key-only side. */
static int map_up_nothing(dw_row *out, const dw_row *in, void *payload)
{
    (void)out;
    (void)in;
    (void)payload;
    return DW_OK;
}

static int map_down_role(dw_row *out, const dw_row *in, void *payload)
{
    (void)in;
    (void)payload;
    return dw_row_set_text(out, "role", "member");
}

/* C callback mappings: into the key-only side too, or only out of it (the
 * up mapping then implied). The stored spec opens with the same digest;
 * every stage, the contract and the restore. */
static void test_key_only_side_callback_mappings(void **state)
{
    (void)state;
    for (int up_callback = 0; up_callback <= 1; up_callback++) {
        test_db t;
        test_db_open(&t);
        exec_ok(t.db, MEMBER_SCHEMA);
        dw_options o = member_opts("members_cb");
        o.down = NULL;
        o.ndown = 0;
        o.up_fn = up_callback ? map_up_nothing : NULL;
        o.down_fn = map_down_role;
        o.map_version = "v1";
        dw_migration *h = open_migration_ok(t.db, &o);
        dw_migration *stored = NULL;
        assert_int_equal(dw_sqlite_open_stored(&stored, t.db, "members_cb", 0, NULL),
                         DW_OK);
        assert_string_equal(dw_spec_digest(stored), dw_spec_digest(h));
        dw_close(stored);
        walk_member_stages(&t, h);
        contract_and_restore_members(&t, &h, &o);
        dw_close(h);
        test_db_close(&t);
    }
}

/* Promotion on write and a canary of the link table. */
static void test_link_table_promotion_and_canary(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, LINK_SCHEMA "INSERT INTO tag_item VALUES(1, 10), (1, 11), "
                              "(2, 10), (3, 12);");
    dw_options o = link_opts("links");
    dw_migration *h = open_migration_ok(t.db, &o);
    stage_to(h, DW_STAGE_DUAL_WRITE);
    backfill_and_verify(h);
    stage_to(h, DW_STAGE_SHADOW);
    dw_routing r = DW_ROUTING_INIT;
    r.promote_stage = DW_STAGE_LIVE;
    assert_dw_ok(h, dw_routing_set(h, &r, "promote", 0));
    /* Written at SHADOW, promoted to LIVE in the same write. */
    write_link(t.db, h, DW_SIDE_OLD, 5, 50, ADD);
    dw_value k[2];
    int stage = -1, route = -1;
    assert_dw_ok(h, dw_key_stage(&stage, &route, h, link(k, 5, 50), 2));
    assert_int_equal(stage, DW_STAGE_LIVE);
    write_link(t.db, h, DW_SIDE_NEW, 5, 50, DROP);
    write_link(t.db, h, DW_SIDE_NEW, 5, 50, ADD);
    assert_level(t.db);
    /* A cohort canary at LIVE over the link table's key. */
    r = (dw_routing)DW_ROUTING_INIT;
    r.canary_cohort = "tag_id = 1";
    r.canary_stage = DW_STAGE_LIVE;
    backfill_and_verify(h);
    assert_dw_ok(h, dw_routing_set(h, &r, "cohort", 0));
    assert_dw_ok(h, dw_key_stage(&stage, &route, h, link(k, 1, 10), 2));
    assert_int_equal(stage, DW_STAGE_LIVE);
    write_link(t.db, h, DW_SIDE_NEW, 1, 10, DROP);
    /* A new link joins the cohort by its write (no old row before). */
    write_link(t.db, h, DW_SIDE_OLD, 1, 12, ADD);
    assert_dw_ok(h, dw_key_stage(&stage, &route, h, link(k, 1, 12), 2));
    assert_int_equal(stage, DW_STAGE_LIVE);
    write_link(t.db, h, DW_SIDE_NEW, 1, 12, DROP);
    r.canary_percent = 100;
    r.canary_cohort = NULL;
    backfill_and_verify(h);
    assert_dw_ok(h, dw_routing_set(h, &r, "all", 0));
    write_link(t.db, h, DW_SIDE_NEW, 2, 20, ADD);
    assert_level(t.db);
    verify_counts(h, 0, 0, 0);
    dw_close(h);
    test_db_close(&t);
}

/* A backfill into the link table interrupted after some batches resumes and
 * finishes with every link copied once. */
static int stop_after_two(const dw_backfill_progress *p, void *payload)
{
    (void)p;
    int *batches = payload;
    return ++*batches >= 2 ? -1 : 0;
}

static void test_key_only_backfill_resumes(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, DROP_NOTE_SCHEMA "WITH RECURSIVE n(i) AS (SELECT 1 UNION "
                                  "ALL SELECT i + 1 FROM n WHERE i < 50) "
                                  "INSERT INTO tag_item_v1 SELECT i % 7, i, "
                                  "'n' FROM n;");
    dw_options o = drop_note_opts("resume");
    dw_migration *h = open_migration_ok(t.db, &o);
    stage_to(h, DW_STAGE_DUAL_WRITE);
    /* Some are there already. */
    exec_ok(t.db, "INSERT INTO tag_item SELECT tag_id, item_id FROM "
                  "tag_item_v1 WHERE item_id % 3 = 0");
    int batches = 0;
    dw_backfill_options bo = DW_BACKFILL_OPTIONS_INIT;
    bo.batch_rows = 5;
    bo.batch_ms = -1;
    bo.progress = stop_after_two;
    bo.payload = &batches;
    dw_backfill_progress p;
    assert_dw(h, dw_backfill(&p, h, &bo), DW_MORE);
    int64_t first = p.rows_written;
    assert_true(first > 0 && first <= 10);
    dw_close(h);
    h = open_migration_ok(t.db, &o);
    bo.progress = NULL;
    assert_dw_ok(h, dw_backfill(&p, h, &bo));
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM tag_item"), 50);
    assert_int_equal(p.rows_written, 50 - 16);
    verify_counts(h, 0, 0, 0);
    dw_close(h);
    test_db_close(&t);
}

/* {"sql":{}} in a JSON spec fits a side of the key alone only: into a side
 * with model columns it maps none of them, and is refused saying so, the
 * down mapping as the up one (never taken as no down mapping). Nothing is
 * stored. */
static void test_empty_sql_mapping_into_columns(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, LINK_SCHEMA);
    static const char *const spec[] = {
        /* down into tag_item_v2, which has position */
        "{\"old\":{\"table\":\"tag_item_v2\",\"key\":[\"tag_id\","
        "\"item_id\"]},\"new\":{\"table\":\"tag_item\",\"key\":"
        "[\"tag_id\",\"item_id\"]},\"up\":{\"sql\":{}},\"down\":"
        "{\"sql\":{}}}",
        /* up into tag_item_v2 */
        "{\"old\":{\"table\":\"tag_item\",\"key\":[\"tag_id\","
        "\"item_id\"]},\"new\":{\"table\":\"tag_item_v2\",\"key\":"
        "[\"tag_id\",\"item_id\"]},\"up\":{\"sql\":{}}}"};
    static const char *const reason[] = {
        "down mapping: {\"sql\":{}} gives no expression, but the old side "
        "has model columns besides the key (\"position\")",
        "up mapping: {\"sql\":{}} gives no expression, but the new side "
        "has model columns besides the key (\"position\")"};
    for (int i = 0; i < 2; i++) {
        dw_migration *h = NULL;
        char *err = NULL;
        int rc = dw_sqlite_open_json(&h, t.db, "empty", spec[i], 0, NULL, &err);
        assert_refused(t.db, rc, h, err, reason[i]);
    }
    test_db_close(&t);
}

/* Both sides of the key alone (a link table moved to another table, both
 * mappings implied), and an up C callback over the key-only old side:
 * redefined alike, one-side-only rows repaired, a failed down mirror
 * queued for repair and drained once the trigger refusing it is gone, the
 * contract and the restore. */
static int map_up_position(dw_row *out, const dw_row *in, void *payload)
{
    (void)in;
    (void)payload;
    return dw_row_set_int(out, "position", 0);
}

/* At LIVE under DW_OPEN_REPAIR_QUEUE: a down mirror the link table refuses
 * is queued, and drained once the trigger refusing it is gone. */
static void queue_and_drain(sqlite3 *db, dw_migration *h)
{
    exec_ok(db, "CREATE TRIGGER no7 BEFORE INSERT ON tag_item WHEN "
                "NEW.tag_id = 7 BEGIN SELECT RAISE(ABORT, 'no 7'); END;");
    assert_dw_ok(h, write_through(h, DW_SIDE_NEW, 7, 12, ADD));
    int64_t queued = 0;
    assert_dw_ok(h, dw_repair_count(&queued, h));
    assert_int_equal(queued, 1);
    assert_int_equal(has_row(db, "tag_item", 7, 12), 0);
    exec_ok(db, "DROP TRIGGER no7;");
    dw_repair_result rr;
    assert_dw_ok(h, dw_repair_queue(&rr, h));
    assert_int_equal(has_row(db, "tag_item", 7, 12), 1);
    write_link(db, h, DW_SIDE_NEW, 7, 12, DROP);
}

/* The migration of o over the link table: its stages, repairs, the
 * queue, the contract and the restore. */
static void walk_link_stages(test_db *t, dw_options *o)
{
    o->flags = DW_OPEN_REPAIR_QUEUE;
    dw_migration *h = open_migration_ok(t->db, o);
    /* Redefined with the same spec: the same digest. */
    o->flags |= DW_OPEN_REDEFINE;
    dw_migration *again = open_migration_ok(t->db, o);
    assert_string_equal(dw_spec_digest(again), dw_spec_digest(h));
    dw_close(again);
    stage_to(h, DW_STAGE_DUAL_WRITE);
    write_link(t->db, h, DW_SIDE_OLD, 4, 13, ADD);
    backfill_and_verify(h);
    exec_ok(t->db, "INSERT INTO tag_item_v2(tag_id, item_id) VALUES(9, 9);"
                   "DELETE FROM tag_item_v2 WHERE tag_id = 1 AND item_id = "
                   "10;");
    verify_counts(h, 1, 1, 0);
    dw_repair_result rr;
    assert_dw_ok(h, dw_repair_divergent(&rr, h));
    assert_int_equal(rr.repaired, 2);
    verify_counts(h, 0, 0, 0);
    stage_to(h, DW_STAGE_SHADOW);
    stage_to(h, DW_STAGE_LIVE);
    queue_and_drain(t->db, h);
    backfill_and_verify(h);
    stage_to(h, DW_STAGE_RAMPDOWN);
    stage_to(h, DW_STAGE_COMPLETE);
    char backup[400];
    snprintf(backup, sizeof backup, "%s/both.backup", t->dir);
    assert_dw_ok(h, dw_contract(h, backup, "drop"));
    assert_dw_ok(h, write_through(h, DW_SIDE_NEW, 8, 8, ADD));
    dw_close(h);
    o->flags = 0;
    h = open_migration_ok(t->db, o);
    assert_dw_ok(h, dw_restore(h, backup, "back"));
    backfill_and_verify(h);
    assert_int_equal(has_row(t->db, "tag_item", 8, 8), 1);
    dw_close(h);
    remove(backup);
}

static void test_key_only_old_side_variants(void **state)
{
    (void)state;
    for (int up_callback = 0; up_callback <= 1; up_callback++) {
        test_db t;
        test_db_open(&t);
        exec_ok(t.db, LINK_SCHEMA "INSERT INTO tag_item VALUES(1, 10), (1, "
                                  "11), (2, 10), (3, 12);");
        dw_options o = link_opts("links");
        o.up = NULL;
        o.nup = 0;
        if (up_callback) {
            o.up_fn = map_up_position;
            o.map_version = "p0";
        } else {
            exec_ok(t.db, "DROP TABLE tag_item_v2; CREATE TABLE tag_item_v2("
                          "tag_id INTEGER NOT NULL, item_id INTEGER NOT NULL, "
                          "UNIQUE(tag_id, item_id));");
        }
        walk_link_stages(&t, &o);
        test_db_close(&t);
    }
}

int main(void)
{
    /* Before any connection: the counting allocator, for the OOM walk. */
    fault_mem_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_link_table_lifecycle),
        cmocka_unit_test(test_key_only_upsert_reports_other_constraints),
        cmocka_unit_test(test_key_only_new_side),
        cmocka_unit_test(test_one_table_side_needs_columns),
        cmocka_unit_test(test_key_only_out_of_memory),
        cmocka_unit_test(test_key_only_new_side_every_stage),
        cmocka_unit_test(test_key_only_side_callback_mappings),
        cmocka_unit_test(test_link_table_promotion_and_canary),
        cmocka_unit_test(test_key_only_backfill_resumes),
        cmocka_unit_test(test_empty_sql_mapping_into_columns),
        cmocka_unit_test(test_key_only_old_side_variants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
