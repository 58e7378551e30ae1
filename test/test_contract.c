/* Tests of the stage gates, the contract (dropping the old model after a
 * checked backup) and the restore that puts it back. */
#include "fault.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- fixture ------------------------------------------------------------ */

/* The corrupting VFS is registered for the process; the tear-down takes it
 * away again. */
static int g_vfs_registered;

static void corrupt_vfs_unregister(void);

static int teardown(void **state)
{
    fixture_teardown(state);
    if (g_vfs_registered)
        corrupt_vfs_unregister();
    g_vfs_registered = 0;
    return 0;
}

/* A path inside the test database's private directory. */
static const char *in_dir(const test_fixture *f, const char *name, char *buf,
                          size_t size)
{
    snprintf(buf, size, "%s/%s", f->t.dir, name);
    return buf;
}

static int file_exists(const char *path) { return access(path, F_OK) == 0; }

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

static void read_file(const char *path, char *buf, size_t size)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    size_t n = fread(buf, 1, size - 1, fp);
    buf[n] = '\0';
    fclose(fp);
}

/* A plain connection on a backup file, without the library. */
static sqlite3 *open_plain(const char *path, int writable)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db,
                             writable ? SQLITE_OPEN_READWRITE
                                      : SQLITE_OPEN_READONLY,
                             NULL);
    if (rc != SQLITE_OK)
        print_error("opening %s: %s\n", path, sqlite3_errmsg(db));
    assert_int_equal(rc, SQLITE_OK);
    return db;
}

static void assert_msg_has(dw_migration *h, const char *needle)
{
    const char *m = dw_errmsg(h);
    if (!m || !strstr(m, needle))
        fail_msg("message \"%s\" does not contain \"%s\"", m ? m : "(null)",
                 needle);
}

/* ---- history ------------------------------------------------------------ */

typedef struct hist_entry {
    char event[32];
    int from, to, forced;
    int has_reason;
    char reason[128];
    int has_detail;
    char detail[1024];
} hist_entry;

typedef struct hist {
    int n;
    hist_entry last;
    int ncontract, nrestore;
    hist_entry last_contract;
    hist_entry last_restore;
} hist;

static void copy_entry(hist_entry *e, const dw_history_entry *in)
{
    memset(e, 0, sizeof *e);
    snprintf(e->event, sizeof e->event, "%s", in->event ? in->event : "");
    e->from = in->from_stage;
    e->to = in->to_stage;
    e->forced = in->forced;
    e->has_reason = in->reason != NULL;
    snprintf(e->reason, sizeof e->reason, "%s", in->reason ? in->reason : "");
    e->has_detail = in->detail != NULL;
    snprintf(e->detail, sizeof e->detail, "%s", in->detail ? in->detail : "");
}

static int collect(const dw_history_entry *entry, void *payload)
{
    hist *hs = payload;
    hs->n++;
    copy_entry(&hs->last, entry);
    if (entry->event && strcmp(entry->event, "contract") == 0) {
        hs->ncontract++;
        copy_entry(&hs->last_contract, entry);
    }
    if (entry->event && strcmp(entry->event, "restore") == 0) {
        hs->nrestore++;
        copy_entry(&hs->last_restore, entry);
    }
    return 0;
}

static void get_history(hist *hs, dw_migration *h)
{
    memset(hs, 0, sizeof *hs);
    assert_dw_ok(h, dw_history(h, collect, hs));
}

static int history_len(dw_migration *h)
{
    hist hs;
    get_history(&hs, h);
    return hs.n;
}

/* The last history entry is a stage move from -> to with this forced flag
 * and, when `gate_forced`, a detail starting with "gate forced:"; otherwise
 * no detail. */
static void assert_last_move(dw_migration *h, int from, int to, int forced,
                             int gate_forced, const char *reason)
{
    hist hs;
    get_history(&hs, h);
    assert_string_equal(hs.last.event, "stage");
    assert_int_equal(hs.last.from, from);
    assert_int_equal(hs.last.to, to);
    assert_int_equal(hs.last.forced, forced);
    if (reason) {
        assert_true(hs.last.has_reason);
        assert_string_equal(hs.last.reason, reason);
    }
    if (gate_forced) {
        assert_true(hs.last.has_detail);
        if (strncmp(hs.last.detail, "gate forced:", 12) != 0)
            fail_msg("detail \"%s\" does not start with \"gate forced:\"",
                     hs.last.detail);
    } else if (hs.last.has_detail) {
        fail_msg("a move through an open gate has detail \"%s\"",
                 hs.last.detail);
    }
}

/* A forward move refused by a closed gate: DW_EGATE, the message names
 * what is missing, and nothing changed. */
static void assert_gate_closed(dw_migration *h, int to, const char *needle)
{
    int before = stage_of(h);
    int n = history_len(h);
    assert_dw(h, dw_stage_set(h, to, "try", 0), DW_EGATE);
    assert_msg_has(h, needle);
    assert_int_equal(stage_of(h), before);
    assert_int_equal(history_len(h), n);
}

/* ---- the two-table migration: items -> items_v2 -------------------------- */

static const char *const KEY[] = {"id"};
static const char *const OLD_COLS[] = {"name", "qty", "note"};
static const char *const NEW_COLS[] = {"title", "quantity", "note"};
static const dw_column_map UP[] = {
    {"title", "upper(name)"}, {"quantity", "qty"}, {"note", "note"}};
static const dw_column_map DOWN[] = {
    {"name", "lower(title)"}, {"qty", "quantity"}, {"note", "note"}};

#define ITEMS_OLD_SQL                                                          \
    "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL,"           \
    " qty INTEGER DEFAULT 0 CHECK (qty >= 0), note TEXT)"
#define NITEMS 20

/* The old table with three indexes (one unique, one partial) and NITEMS
 * rows of varied types -- a REAL, a NULL, a BLOB -- whose note holds the
 * text MARKER; the new table empty. */
static void create_items(sqlite3 *db)
{
    exec_ok(db, ITEMS_OLD_SQL ";"
                "CREATE INDEX items_name ON items(name);"
                "CREATE UNIQUE INDEX items_name_qty ON items(name, qty);"
                "CREATE INDEX items_big ON items(qty) WHERE qty > 10;"
                "CREATE TABLE items_v2(id INTEGER PRIMARY KEY,"
                " title TEXT NOT NULL, quantity INTEGER, note TEXT);");
    exec_ok(db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
                "FROM n WHERE i < 20) INSERT INTO items(id, name, qty, note) "
                "SELECT i, 'item ' || i, i * 2, 'MARKER row ' || i FROM n;"
                "UPDATE items SET qty = 2.5 WHERE id = 9;"
                "UPDATE items SET note = NULL WHERE id = 7;"
                "UPDATE items SET note = x'00ff10' WHERE id = 11;");
}

static void items_options(dw_options *o, const char *name)
{
    *o = options_for(name, TEST_SIDE("items", KEY, OLD_COLS),
                     TEST_SIDE("items_v2", KEY, NEW_COLS));
    o->up = UP;
    o->nup = 3;
    o->down = DOWN;
    o->ndown = 3;
    o->reason = "initial";
}

static dw_migration *open_items(sqlite3 *db)
{
    dw_options o;
    items_options(&o, "items_rename");
    return open_migration_ok(db, &o);
}

/* A row of the new model written by the application at COMPLETE (or the
 * old model before). */
typedef struct item_write {
    const char *text; /* title (new) or name (old) */
    int64_t qty;
    const char *note;
    int remove;
} item_write;

static int write_item_new(void *db, const dw_value *key, int nkey,
                          void *payload)
{
    const item_write *w = payload;
    assert_int_equal(nkey, 1);
    return callback_exec(
        db,
        w->remove ? "DELETE FROM items_v2 WHERE id = ?1"
                  : "INSERT INTO items_v2(id, title, quantity, note) "
                    "VALUES(?1, ?2, ?3, ?4) ON CONFLICT(id) DO UPDATE SET "
                    "title = excluded.title, quantity = excluded.quantity, "
                    "note = excluded.note",
        "itit", key[0].i, w->text, w->qty, w->note);
}

static int write_item_old(void *db, const dw_value *key, int nkey,
                          void *payload)
{
    const item_write *w = payload;
    assert_int_equal(nkey, 1);
    return callback_exec(
        db,
        w->remove ? "DELETE FROM items WHERE id = ?1"
                  : "INSERT INTO items(id, name, qty, note) "
                    "VALUES(?1, ?2, ?3, ?4) ON CONFLICT(id) DO UPDATE SET "
                    "name = excluded.name, qty = excluded.qty, "
                    "note = excluded.note",
        "itit", key[0].i, w->text, w->qty, w->note);
}

static void put_new(dw_migration *h, int64_t id, const char *title,
                    int64_t qty, const char *note)
{
    item_write w = {title, qty, note, 0};
    dw_value key = dw_int(id);
    assert_dw_ok(h, dw_write(h, &key, 1, NULL, write_item_new, &w));
}

static void delete_new(dw_migration *h, int64_t id)
{
    item_write w = {NULL, 0, NULL, 1};
    dw_value key = dw_int(id);
    assert_dw_ok(h, dw_write(h, &key, 1, NULL, write_item_new, &w));
}

/* Every item row as one text, for before/after comparisons. */
#define ITEMS_SNAPSHOT                                                         \
    "SELECT group_concat(r, '|') FROM (SELECT id || ':' || quote(name) || "   \
    "':' || quote(qty) || ':' || typeof(qty) || ':' || quote(note) AS r "     \
    "FROM items ORDER BY id)"

/* The stored definitions of the old table and its indexes, as one text. */
#define ITEMS_SCHEMA                                                           \
    "SELECT group_concat(type || ':' || name || ':' || sql, '|') FROM "       \
    "(SELECT type, name, sql FROM sqlite_schema WHERE tbl_name = 'items' "    \
    "AND sql IS NOT NULL ORDER BY name)"

static int64_t schema_count(sqlite3 *db, const char *table)
{
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM sqlite_schema WHERE tbl_name = '%s' "
             "COLLATE NOCASE",
             table);
    return query_int(db, sql);
}

static int64_t attached_backups(sqlite3 *db)
{
    return query_int(db, "SELECT count(*) FROM pragma_database_list WHERE "
                         "name <> 'main' AND name <> 'temp'");
}

/* Moves through every stage to COMPLETE, opening the gates properly. */
static void reach_complete(dw_migration *h)
{
    stage_walk_ok(h, DW_STAGE_COMPLETE);
    assert_int_equal(stage_of(h), DW_STAGE_COMPLETE);
}

/* Creates the items tables, opens f->h on them and takes it to COMPLETE. */
static dw_migration *items_complete(test_fixture *f)
{
    create_items(f->t.db);
    f->h = open_items(f->t.db);
    reach_complete(f->h);
    return f->h;
}

static int stop_after_first(const dw_backfill_progress *p, void *payload)
{
    int *calls = payload;
    (*calls)++;
    (void)p;
    return 1;
}

/* Starts a backfill and stops it after its first batch of `rows`. */
static void partial_backfill(dw_migration *h, unsigned int flags, int rows,
                             dw_backfill_progress *out)
{
    int calls = 0;
    dw_backfill_options o = DW_BACKFILL_OPTIONS_INIT;
    o.batch_rows = rows;
    o.batch_ms = -1;
    o.flags = flags;
    o.progress = stop_after_first;
    o.payload = &calls;
    assert_dw(h, dw_backfill(out, h, &o), DW_MORE);
    assert_int_equal(calls, 1);
    assert_int_equal(out->finished, 0);
    assert_int_equal(out->rows_done, rows);
}

static void verify_full(dw_migration *h, dw_verify_result *r)
{
    assert_dw_ok(h, dw_verify(r, h, NULL));
    assert_int_equal(r->full, 1);
    assert_int_equal(r->finished, 1);
}

static void verify_ranged(dw_migration *h, int64_t lo, int64_t hi,
                          dw_verify_result *r)
{
    dw_value from = dw_int(lo), to = dw_int(hi);
    dw_verify_options o = DW_VERIFY_OPTIONS_INIT;
    o.from = &from;
    o.nfrom = 1;
    o.to = &to;
    o.nto = 1;
    assert_dw_ok(h, dw_verify(r, h, &o));
    assert_int_equal(r->full, 0);
    assert_int_equal(r->finished, 1);
}

/* ---- gates ---------------------------------------------------------------- */

/* SHADOW -> LIVE and RAMPDOWN -> COMPLETE, refused for each missing piece
 * with a message naming it, and allowed after a finished backfill and a
 * clean full verification that began after it. */
static void test_gate_states(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    fixture_exec(f, "DELETE FROM items");
    f->h = open_items(f->t.db);
    dw_migration *h = f->h;
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, NULL, 0));
    /* Rows written through the migration: both sides agree from the
     * start, so even verifications before the backfill come out clean. */
    for (int i = 1; i <= NITEMS; i++) {
        char name[32];
        snprintf(name, sizeof name, "item %d", i);
        item_write w = {name, i, NULL, 0};
        dw_value key = dw_int(i);
        assert_dw_ok(h, dw_write(h, &key, 1, write_item_old, NULL, &w));
    }
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items_v2"), NITEMS);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_SHADOW, NULL, 0));

    /* No backfill at all, even with a clean full verification. */
    assert_gate_closed(h, DW_STAGE_LIVE, "no backfill");
    dw_verify_result r;
    verify_full(h, &r);
    assert_true(r.clean);
    assert_gate_closed(h, DW_STAGE_LIVE, "no backfill");

    /* A backfill stopped early by its progress callback. */
    dw_backfill_progress p;
    partial_backfill(h, 0, 5, &p);
    assert_int_equal(p.source, DW_SIDE_OLD);
    assert_gate_closed(h, DW_STAGE_LIVE, "has not finished");
    /* A clean full verification while it runs does not count... */
    verify_full(h, &r);
    assert_true(r.clean);
    assert_gate_closed(h, DW_STAGE_LIVE, "has not finished");

    /* ... not even once the backfill is finished. */
    assert_dw_ok(h, dw_backfill(&p, h, NULL));
    assert_int_equal(p.finished, 1);
    assert_int_equal(p.rows_done, NITEMS);
    assert_gate_closed(h, DW_STAGE_LIVE, "no verification of every key");

    /* A clean verification over a range (here every key) opens nothing. */
    verify_ranged(h, 1, NITEMS, &r);
    assert_true(r.clean);
    assert_int_equal(r.keys, NITEMS);
    assert_gate_closed(h, DW_STAGE_LIVE, "no verification of every key");

    /* A dirty verification: one missing, one extra, one different; the
     * message gives the counts. */
    fixture_exec(f, "UPDATE items_v2 SET title = 'WRONG' WHERE id = 3;"
                    "DELETE FROM items_v2 WHERE id = 4;"
                    "INSERT INTO items_v2 VALUES(99, 'EXTRA', 1, NULL);");
    verify_full(h, &r);
    assert_false(r.clean);
    assert_int_equal(r.missing, 1);
    assert_int_equal(r.extra, 1);
    assert_int_equal(r.different, 1);
    char want[128];
    snprintf(want, sizeof want,
             "(run %lld) found 1 missing, 1 extra and 1 different keys",
             (long long)r.run_id);
    assert_gate_closed(h, DW_STAGE_LIVE, want);

    /* Repaired and verified clean: the gate opens, and the move is an
     * ordinary one. */
    dw_repair_result rr;
    assert_dw_ok(h, dw_repair_divergent(&rr, h));
    assert_int_equal(rr.repaired, 3);
    verify_full(h, &r);
    assert_true(r.clean);

    /* The latest full verification decides: a dirty run after the clean
     * one closes the gate again, the next clean one reopens it. */
    fixture_exec(f, "UPDATE items_v2 SET quantity = -1 WHERE id IN (6, 8)");
    verify_full(h, &r);
    assert_int_equal(r.different, 2);
    snprintf(want, sizeof want,
             "(run %lld) found 0 missing, 0 extra and 2 different keys",
             (long long)r.run_id);
    assert_gate_closed(h, DW_STAGE_LIVE, want);
    fixture_exec(f, "UPDATE items_v2 SET quantity = id WHERE id IN (6, 8)");
    verify_full(h, &r);
    assert_true(r.clean);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_LIVE, "gate open", 0));
    assert_int_equal(stage_of(h), DW_STAGE_LIVE);
    assert_last_move(h, DW_STAGE_SHADOW, DW_STAGE_LIVE, 0, 0, "gate open");
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_RAMPDOWN, NULL, 0));

    /* RAMPDOWN -> COMPLETE: the same gate. A new backfill (new to old)
     * stopped early closes it... */
    partial_backfill(h, DW_BACKFILL_RESTART, 4, &p);
    assert_int_equal(p.source, DW_SIDE_NEW);
    assert_int_equal(p.target, DW_SIDE_OLD);
    assert_gate_closed(h, DW_STAGE_COMPLETE, "has not finished");
    verify_full(h, &r);
    assert_true(r.clean);
    assert_gate_closed(h, DW_STAGE_COMPLETE, "has not finished");
    assert_dw_ok(h, dw_backfill(&p, h, NULL));
    assert_int_equal(p.finished, 1);
    assert_gate_closed(h, DW_STAGE_COMPLETE, "no verification of every key");
    verify_ranged(h, 1, 1000, &r);
    assert_true(r.clean);
    assert_gate_closed(h, DW_STAGE_COMPLETE, "no verification of every key");
    fixture_exec(f, "UPDATE items SET qty = 1000 WHERE id = 5");
    verify_full(h, &r);
    assert_int_equal(r.missing, 0);
    assert_int_equal(r.extra, 0);
    assert_int_equal(r.different, 1);
    snprintf(want, sizeof want,
             "(run %lld) found 0 missing, 0 extra and 1 different keys",
             (long long)r.run_id);
    assert_gate_closed(h, DW_STAGE_COMPLETE, want);
    assert_dw_ok(h, dw_repair_divergent(&rr, h));
    assert_int_equal(fixture_int(f, "SELECT qty FROM items WHERE id = 5"), 5);
    verify_full(h, &r);
    assert_true(r.clean);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_COMPLETE, "done", 0));
    assert_last_move(h, DW_STAGE_RAMPDOWN, DW_STAGE_COMPLETE, 0, 0, "done");
}

/* Forcing a closed gate needs a reason and is recorded as forced, with the
 * gate in the detail; a move through an open gate is not forced. */
static void test_gate_forced(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    f->h = open_items(f->t.db);
    dw_migration *h = f->h;
    stage_walk_ok(h, DW_STAGE_SHADOW);
    assert_last_move(h, DW_STAGE_DUAL_WRITE, DW_STAGE_SHADOW, 0, 0, NULL);

    int n = history_len(h);
    assert_dw(h, dw_stage_set(h, DW_STAGE_LIVE, NULL, DW_STAGE_FORCE),
              DW_EMISUSE);
    assert_msg_has(h, "reason");
    assert_dw(h, dw_stage_set(h, DW_STAGE_LIVE, "", DW_STAGE_FORCE),
              DW_EMISUSE);
    assert_msg_has(h, "reason");
    assert_int_equal(stage_of(h), DW_STAGE_SHADOW);
    assert_int_equal(history_len(h), n);

    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_LIVE, "incident 42",
                                 DW_STAGE_FORCE));
    assert_int_equal(stage_of(h), DW_STAGE_LIVE);
    assert_last_move(h, DW_STAGE_SHADOW, DW_STAGE_LIVE, 1, 1, "incident 42");
    hist hs;
    get_history(&hs, h);
    assert_non_null(strstr(hs.last.detail, "no backfill"));

    /* LIVE -> RAMPDOWN has no gate. */
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_RAMPDOWN, NULL, 0));
    assert_last_move(h, DW_STAGE_LIVE, DW_STAGE_RAMPDOWN, 0, 0, NULL);

    /* The COMPLETE gate is closed too; the same rules. */
    assert_gate_closed(h, DW_STAGE_COMPLETE, "no backfill");
    n = history_len(h);
    assert_dw(h, dw_stage_set(h, DW_STAGE_COMPLETE, NULL, DW_STAGE_FORCE),
              DW_EMISUSE);
    assert_dw(h, dw_stage_set(h, DW_STAGE_COMPLETE, "", DW_STAGE_FORCE),
              DW_EMISUSE);
    assert_int_equal(stage_of(h), DW_STAGE_RAMPDOWN);
    assert_int_equal(history_len(h), n);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_COMPLETE, "deadline",
                                 DW_STAGE_FORCE));
    assert_last_move(h, DW_STAGE_RAMPDOWN, DW_STAGE_COMPLETE, 1, 1,
                     "deadline");

    /* A jump over a closed gate needs a reason as well. (Going back from
     * COMPLETE to trusting the old model passes a gate too.) */
    assert_gate_closed(h, DW_STAGE_OFF, "missed the writes made at COMPLETE");
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_OFF, "back", DW_STAGE_FORCE));
    assert_last_move(h, DW_STAGE_COMPLETE, DW_STAGE_OFF, 1, 1, "back");
    n = history_len(h);
    assert_dw(h, dw_stage_set(h, DW_STAGE_LIVE, NULL, DW_STAGE_FORCE),
              DW_EMISUSE);
    assert_int_equal(stage_of(h), DW_STAGE_OFF);
    assert_int_equal(history_len(h), n);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_LIVE, "jump", DW_STAGE_FORCE));
    assert_last_move(h, DW_STAGE_OFF, DW_STAGE_LIVE, 1, 1, "jump");

    /* Opened properly, the gate lets an ordinary move through: not forced,
     * no detail. */
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_SHADOW, NULL, 0));
    backfill_and_verify(h);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_LIVE, "ready", 0));
    assert_last_move(h, DW_STAGE_SHADOW, DW_STAGE_LIVE, 0, 0, "ready");

    /* A forced jump through an open gate is a forced jump, not a forced
     * gate. */
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, NULL, 0));
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_LIVE, "skip shadow",
                                 DW_STAGE_FORCE));
    assert_last_move(h, DW_STAGE_DUAL_WRITE, DW_STAGE_LIVE, 1, 0,
                     "skip shadow");
}

/* A finished backfill goes stale when the stage enters OFF or COMPLETE;
 * backward moves never need a gate. */
static void test_gate_staleness(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    f->h = open_items(f->t.db);
    dw_migration *h = f->h;
    stage_walk_ok(h, DW_STAGE_SHADOW);
    backfill_and_verify(h);
    dw_backfill_progress p;
    assert_dw_ok(h, dw_backfill_status(&p, h));
    assert_int_equal(p.finished, 1);
    assert_int_equal(p.stale, 0);

    /* Entering OFF: stale. */
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_OFF, "roll back", 0));
    assert_dw_ok(h, dw_backfill_status(&p, h));
    assert_int_equal(p.stale, 1);
    assert_int_equal(p.finished, 0);
    stage_walk_ok(h, DW_STAGE_SHADOW);
    assert_gate_closed(h, DW_STAGE_LIVE, "stale");
    /* A verification alone does not help... */
    dw_verify_result r;
    verify_full(h, &r);
    assert_true(r.clean);
    assert_gate_closed(h, DW_STAGE_LIVE, "stale");
    /* ... the backfill starts over by itself, and then needs its own
     * verification. */
    assert_dw_ok(h, dw_backfill(&p, h, NULL));
    assert_int_equal(p.finished, 1);
    assert_int_equal(p.stale, 0);
    assert_int_equal(p.rows_done, NITEMS);
    assert_gate_closed(h, DW_STAGE_LIVE, "no verification of every key");
    verify_full(h, &r);
    assert_true(r.clean);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_LIVE, NULL, 0));
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_RAMPDOWN, NULL, 0));
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_COMPLETE, NULL, 0));

    /* Entering COMPLETE: stale. */
    assert_dw_ok(h, dw_backfill_status(&p, h));
    assert_int_equal(p.stale, 1);

    /* At COMPLETE only the new side is written. */
    put_new(h, 2, "CHANGED", 7, "n2");
    put_new(h, 50, "FIFTY", 50, NULL);
    delete_new(h, 3);
    char buf[64];
    assert_string_equal(fixture_text(f,
                                     "SELECT name FROM items WHERE "
                                     "id = 2",
                                     buf, sizeof buf),
                        "item 2");
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items WHERE "
                                    "id IN (3, 50)"),
                     1);

    /* Back to RAMPDOWN (no gate), forward again: the gate is closed. */
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_RAMPDOWN, "undo", 0));
    assert_last_move(h, DW_STAGE_COMPLETE, DW_STAGE_RAMPDOWN, 0, 0, "undo");
    assert_gate_closed(h, DW_STAGE_COMPLETE, "stale");
    /* The new backfill copies new -> old. */
    assert_dw_ok(h, dw_backfill(&p, h, NULL));
    assert_int_equal(p.finished, 1);
    assert_int_equal(p.source, DW_SIDE_NEW);
    assert_int_equal(p.target, DW_SIDE_OLD);
    assert_int_equal(p.rows_deleted, 1);
    assert_string_equal(fixture_text(f,
                                     "SELECT name || '/' || qty || "
                                     "'/' || note FROM items WHERE "
                                     "id = 2",
                                     buf, sizeof buf),
                        "changed/7/n2");
    assert_string_equal(fixture_text(f,
                                     "SELECT name || '/' || qty FROM "
                                     "items WHERE id = 50",
                                     buf, sizeof buf),
                        "fifty/50");
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items WHERE "
                                    "id = 3"),
                     0);
    assert_gate_closed(h, DW_STAGE_COMPLETE, "no verification of every key");
    verify_full(h, &r);
    assert_true(r.clean);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_COMPLETE, NULL, 0));
    assert_last_move(h, DW_STAGE_RAMPDOWN, DW_STAGE_COMPLETE, 0, 0, NULL);

    /* Stale again, and the old model missed the writes made at COMPLETE:
     * backward moves that keep trusting the new model go, but trusting
     * the old one again waits for a backfill from the new model. */
    put_new(h, 4, "LATE", 4, NULL);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_RAMPDOWN, "back", 0));
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_LIVE, "back", 0));
    assert_last_move(h, DW_STAGE_RAMPDOWN, DW_STAGE_LIVE, 0, 0, "back");
    assert_gate_closed(h, DW_STAGE_SHADOW, "missed the writes made at COMPLETE");
    assert_gate_closed(h, DW_STAGE_OFF, "missed the writes made at COMPLETE");
    assert_dw_ok(h, dw_backfill(&p, h, NULL));
    assert_int_equal(p.source, DW_SIDE_NEW);
    assert_string_equal(fixture_text(f,
                                     "SELECT name FROM items WHERE "
                                     "id = 4",
                                     buf, sizeof buf),
                        "late");
    /* No verification is needed to go back: flipping back stays a plain
     * move once the old model has every row. */
    for (int s = DW_STAGE_SHADOW; s >= DW_STAGE_OFF; s--) {
        assert_dw_ok(h, dw_stage_set(h, s, "back", 0));
        assert_last_move(h, s + 1, s, 0, 0, "back");
    }
    /* A jump back from COMPLETE passes the gate only by force. */
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_COMPLETE, "force",
                                 DW_STAGE_FORCE));
    assert_gate_closed(h, DW_STAGE_DUAL_WRITE, "missed the writes");
    assert_dw(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, NULL, DW_STAGE_FORCE),
              DW_EMISUSE);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, "far back",
                                 DW_STAGE_FORCE));
    assert_last_move(h, DW_STAGE_COMPLETE, DW_STAGE_DUAL_WRITE, 1, 1,
                     "far back");
}

/* ---- contract ------------------------------------------------------------- */

/* The checks that a failed or refused contract left everything as it was. */
static void assert_not_contracted(test_fixture *f, dw_migration *h,
                                  const char *snapshot, const char *schema)
{
    char buf[4096];
    assert_string_equal(fixture_text(f, ITEMS_SNAPSHOT, buf, sizeof buf),
                        snapshot);
    assert_string_equal(fixture_text(f, ITEMS_SCHEMA, buf, sizeof buf), schema);
    assert_int_equal(attached_backups(f->t.db), 0);
    hist hs;
    get_history(&hs, h);
    assert_int_equal(hs.ncontract, 0);
    /* Operations that need the old model still work. */
    dw_verify_result r;
    assert_dw_ok(h, dw_verify(&r, h, NULL));
    assert_true(r.clean);
}

static void test_contract_refusals(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    f->h = open_items(f->t.db);
    dw_migration *h = f->h;
    char snapshot[4096], schema[4096], path[400], other[400];
    fixture_text(f, ITEMS_SNAPSHOT, snapshot, sizeof snapshot);
    fixture_text(f, ITEMS_SCHEMA, schema, sizeof schema);
    in_dir(f, "items.bak", path, sizeof path);

    /* Before COMPLETE: at OFF, and at RAMPDOWN reached properly. */
    assert_dw(h, dw_contract(h, path, "too early"), DW_EGATE);
    assert_msg_has(h, "COMPLETE");
    assert_false(file_exists(path));
    stage_walk_ok(h, DW_STAGE_RAMPDOWN);
    assert_dw(h, dw_contract(h, path, "too early"), DW_EGATE);
    assert_msg_has(h, "COMPLETE");
    assert_false(file_exists(path));
    assert_not_contracted(f, h, snapshot, schema);
    assert_int_equal(stage_of(h), DW_STAGE_RAMPDOWN);

    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_COMPLETE, NULL, 0));

    /* The backup path exists: never overwritten. */
    in_dir(f, "precious.bak", other, sizeof other);
    write_file(other, "precious bytes");
    assert_dw(h, dw_contract(h, other, NULL), DW_EMISUSE);
    char content[64];
    read_file(other, content, sizeof content);
    assert_string_equal(content, "precious bytes");
    assert_not_contracted(f, h, snapshot, schema);

    /* NULL or empty path. */
    assert_dw(h, dw_contract(h, NULL, NULL), DW_EMISUSE);
    assert_dw(h, dw_contract(h, "", NULL), DW_EMISUSE);

    /* Inside the caller's transaction. */
    fixture_exec(f, "BEGIN");
    assert_dw(h, dw_contract(h, path, NULL), DW_EMISUSE);
    assert_int_equal(outside_transaction(f->t.db), 0);
    fixture_exec(f, "ROLLBACK");
    assert_false(file_exists(path));

    /* A backup that cannot be created (no such directory). */
    in_dir(f, "no-such-dir/items.bak", other, sizeof other);
    assert_dw(h, dw_contract(h, other, NULL), DW_ERROR);
    assert_false(file_exists(other));
    assert_not_contracted(f, h, snapshot, schema);
    assert_int_equal(stage_of(h), DW_STAGE_COMPLETE);

    /* None of that got in the way: the contract itself goes through. */
    assert_dw_ok(h, dw_contract(h, path, "now"));
    assert_true(file_exists(path));
    assert_int_equal(schema_count(f->t.db, "items"), 0);
}

/* Fails the nth commit on the connection from now on (SQLite then rolls it
 * back: a COMMIT that did not go through). */
static int commits_to_fail;
static int fail_nth_commit(void *payload)
{
    (void)payload;
    return --commits_to_fail == 0;
}

/* A contract whose final COMMIT fails keeps its backup, since such a commit
 * may still prove durable (WAL); the next contract to that path uses the
 * file when it is a backup of the old model exactly as it is now, and
 * refuses it otherwise. */
static void test_contract_failed_commit_keeps_backup(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = items_complete(f);
    char snapshot[4096], schema[4096], path[400];
    fixture_text(f, ITEMS_SNAPSHOT, snapshot, sizeof snapshot);
    fixture_text(f, ITEMS_SCHEMA, schema, sizeof schema);
    in_dir(f, "items.bak", path, sizeof path);

    /* Commit 1 writes the backup, commit 2 drops the old table. */
    commits_to_fail = 2;
    sqlite3_commit_hook(f->t.db, fail_nth_commit, NULL);
    assert_int_not_equal(dw_contract(h, path, "first try"), DW_OK);
    sqlite3_commit_hook(f->t.db, NULL, NULL);
    assert_msg_has(h, "was kept");
    assert_true(file_exists(path));
    assert_not_contracted(f, h, snapshot, schema);
    assert_int_equal(attached_backups(f->t.db), 0);

    /* The old model changed since: the file is not its backup. */
    fixture_exec(f, "UPDATE items SET name = 'changed' WHERE id = 2");
    assert_dw(h, dw_contract(h, path, "changed"), DW_EMISUSE);
    assert_msg_has(h, "not a backup of the old model as it is now");
    assert_true(file_exists(path));
    assert_int_not_equal(schema_count(f->t.db, "items"), 0);

    /* As it was: the kept backup is used, and the contract goes through. */
    fixture_exec(f, "UPDATE items SET name = 'item 2' WHERE id = 2");
    fixture_text(f, ITEMS_SNAPSHOT, schema, sizeof schema);
    assert_string_equal(schema, snapshot);
    assert_dw_ok(h, dw_contract(h, path, "second try"));
    assert_int_equal(schema_count(f->t.db, "items"), 0);
    assert_true(file_exists(path));

    /* And it restores. */
    assert_dw_ok(h, dw_restore(h, path, "back"));
    fixture_text(f, ITEMS_SNAPSHOT, schema, sizeof schema);
    assert_string_equal(schema, snapshot);
}

/* The contracted migration, from any handle: reads and writes of the new
 * model work, everything that needs the old model says it was dropped. */
static void assert_contracted(test_fixture *f, dw_migration *h, int64_t id)
{
    assert_int_equal(stage_of(h), DW_STAGE_COMPLETE);
    assert_int_equal(schema_count(f->t.db, "items"), 0);

    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    dw_value k5 = dw_int(5);
    assert_dw_ok(h, dw_read(row, h, &k5, 1, NULL, NULL, NULL));
    const dw_value *title = dw_row_get(row, "title");
    assert_non_null(title);
    assert_int_equal(title->type, DW_TYPE_TEXT);
    assert_string_equal((const char *)title->p, "ITEM 5");
    dw_row_free(row);

    put_new(h, id, "WRITTEN AFTER", 3, "late");
    char sql[128], buf[64];
    snprintf(sql, sizeof sql, "SELECT title FROM items_v2 WHERE id = %lld",
             (long long)id);
    assert_string_equal(fixture_text(f, sql, buf, sizeof buf), "WRITTEN AFTER");
    assert_int_equal(schema_count(f->t.db, "items"), 0);

    assert_dw(h, dw_backfill(NULL, h, NULL), DW_EMISUSE);
    assert_msg_has(h, "contract");
    dw_verify_result r;
    assert_dw(h, dw_verify(&r, h, NULL), DW_EMISUSE);
    assert_msg_has(h, "contract");
    dw_value key = dw_int(1);
    dw_repair_result rr;
    assert_dw(h, dw_repair_keys(&rr, h, &key, 1, 1), DW_EMISUSE);
    assert_msg_has(h, "contract");

    for (int s = DW_STAGE_OFF; s < DW_STAGE_COMPLETE; s++) {
        assert_dw(h, dw_stage_set(h, s, "back", 0), DW_EMISUSE);
        assert_msg_has(h, "contract");
        assert_dw(h, dw_stage_set(h, s, "back", DW_STAGE_FORCE), DW_EMISUSE);
    }
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_COMPLETE, "same", 0));
    assert_int_equal(stage_of(h), DW_STAGE_COMPLETE);

    char again[400];
    in_dir(f, "again.bak", again, sizeof again);
    assert_dw(h, dw_contract(h, again, NULL), DW_EMISUSE);
    assert_false(file_exists(again));
    assert_int_equal(attached_backups(f->t.db), 0);
}

static void test_contract_two_tables(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    f->h = open_items(f->t.db);
    dw_migration *h = f->h;
    /* A second connection's handle, opened before the contract. */
    fixture_connect_second(f);
    f->h2 = open_items(f->db2);
    reach_complete(h);

    char snapshot[4096], table_sql[512], path[400], buf[4096];
    fixture_text(f, ITEMS_SNAPSHOT, snapshot, sizeof snapshot);
    fixture_text(f, "SELECT sql FROM sqlite_schema WHERE name = 'items'",
                 table_sql, sizeof table_sql);
    in_dir(f, "items.bak", path, sizeof path);
    int n = history_len(h);

    assert_dw_ok(h, dw_contract(h, path, "old model retired"));

    /* The old table and its indexes are gone; the new one is whole. */
    assert_int_equal(schema_count(f->t.db, "items"), 0);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items_v2"), NITEMS);
    assert_int_equal(attached_backups(f->t.db), 0);
    char journal[420];
    snprintf(journal, sizeof journal, "%s-journal", path);
    assert_false(file_exists(journal));

    /* The history: one contract event naming the file, rows and digest. */
    hist hs;
    get_history(&hs, h);
    assert_int_equal(hs.n, n + 1);
    assert_int_equal(hs.ncontract, 1);
    assert_string_equal(hs.last.event, "contract");
    assert_int_equal(hs.last.from, DW_STAGE_COMPLETE);
    assert_int_equal(hs.last.to, DW_STAGE_COMPLETE);
    assert_int_equal(hs.last.forced, 0);
    assert_string_equal(hs.last.reason, "old model retired");
    assert_true(hs.last.has_detail);
    assert_non_null(strstr(hs.last.detail, path));
    assert_non_null(strstr(hs.last.detail, "20 rows"));
    const char *sha = strstr(hs.last.detail, "sha256 ");
    assert_non_null(sha);
    sha += 7;
    char digest[65];
    snprintf(digest, sizeof digest, "%s", sha);
    assert_int_equal(strlen(digest), 64);
    assert_int_equal(strspn(digest, "0123456789abcdef"), 64);

    /* The backup, read without the library. */
    sqlite3 *b = open_plain(path, 0);
    assert_int_equal(query_int(b, "SELECT count(*) FROM items"), NITEMS);
    assert_string_equal(query_text(b, ITEMS_SNAPSHOT, buf, sizeof buf),
                        snapshot);
    assert_string_equal(query_text(b, "SELECT name FROM items WHERE id = 12",
                                   buf, sizeof buf),
                        "item 12");
    assert_string_equal(query_text(b, "SELECT typeof(qty) || qty FROM items "
                                      "WHERE id = 9",
                                   buf, sizeof buf),
                        "real2.5");
    assert_string_equal(query_text(b, "SELECT quote(note) FROM items WHERE "
                                      "id = 11",
                                   buf, sizeof buf),
                        "X'00FF10'");
    assert_string_equal(query_text(b, "SELECT value FROM dw_backup_meta "
                                      "WHERE key = 'migration'",
                                   buf, sizeof buf),
                        "items_rename");
    assert_string_equal(query_text(b, "SELECT value FROM dw_backup_meta "
                                      "WHERE key = 'table_sql'",
                                   buf, sizeof buf),
                        table_sql);
    assert_string_equal(query_text(b, "SELECT value FROM dw_backup_meta "
                                      "WHERE key = 'rows'",
                                   buf, sizeof buf),
                        "20");
    assert_string_equal(query_text(b, "SELECT value FROM dw_backup_meta "
                                      "WHERE key = 'sha256'",
                                   buf, sizeof buf),
                        digest);
    /* Each index definition is stored, and nothing else. */
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(
                         b,
                         "SELECT value FROM json_each((SELECT value FROM "
                         "dw_backup_meta WHERE key = 'index_sql')) ORDER BY "
                         "value",
                         -1, &st, NULL),
                     SQLITE_OK);
    static const char *const want_ix[] = {
        "CREATE INDEX items_big ON items(qty) WHERE qty > 10",
        "CREATE INDEX items_name ON items(name)",
        "CREATE UNIQUE INDEX items_name_qty ON items(name, qty)"};
    int nix = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        assert_true(nix < 3);
        assert_string_equal((const char *)sqlite3_column_text(st, 0),
                            want_ix[nix]);
        nix++;
    }
    assert_int_equal(nix, 3);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_close(b), SQLITE_OK);

    /* The contracted migration works on the new model alone. */
    assert_contracted(f, h, 101);
    /* The other connection's handle follows. */
    assert_contracted(f, f->h2, 102);

    /* A new handle on the same options opens and behaves the same. */
    dw_close(h);
    f->h = h = open_items(f->t.db);
    assert_contracted(f, h, 103);
    get_history(&hs, h);
    assert_int_equal(hs.ncontract, 1);
}

/* ---- damage to what is written to "...corrupt.bak" ------------------------ */

static int damaged_writes;

/* A fault_vfs write hook: every "MARKER" written becomes "BROKEN". */
static void damage_markers(char *buf, int n, void *payload)
{
    (void)payload;
    int changed = 0;
    for (int i = 0; i + 6 <= n; i++)
        if (memcmp(buf + i, "MARKER", 6) == 0) {
            memcpy(buf + i, "BROKEN", 6);
            changed = 1;
        }
    damaged_writes += changed;
}

/* The fault VFS, as the default one (so the attached backup and the
 * contract's own read-back go through it too), damaging the backup. */
static void corrupt_vfs_register(void)
{
    damaged_writes = 0;
    fault_vfs_write_hook("corrupt.bak", damage_markers, NULL);
    fault_vfs_default(1);
    g_vfs_registered = 1;
}

static void corrupt_vfs_unregister(void)
{
    fault_vfs_default(0);
    fault_vfs_write_hook(NULL, NULL, NULL);
}

/* The backup written does not read back as it was written: the contract
 * fails, drops nothing and removes the file. */
static void test_contract_backup_does_not_check_out(void **state)
{
    test_fixture *f = *state;
    /* The test's connection is reopened through the damaging VFS, so the
     * backup (written through it, attached) is damaged too. */
    assert_int_equal(sqlite3_close(f->t.db), SQLITE_OK);
    corrupt_vfs_register();
    f->t.db = test_db_connect(&f->t);
    char name[64];
    assert_string_equal(
        fixture_text(f, "PRAGMA journal_mode", name, sizeof name), "wal");

    dw_migration *h = items_complete(f);
    char snapshot[4096], schema[4096], path[400];
    fixture_text(f, ITEMS_SNAPSHOT, snapshot, sizeof snapshot);
    fixture_text(f, ITEMS_SCHEMA, schema, sizeof schema);
    in_dir(f, "items-corrupt.bak", path, sizeof path);
    assert_int_equal(damaged_writes, 0);

    /* The digest check catches it (were SQLite to notice the damage
     * first, that would be DW_ERROR as well). */
    assert_dw(h, dw_contract(h, path, "should not happen"), DW_ERROR);
    assert_true(damaged_writes > 0); /* the VFS did damage the backup */
    assert_msg_has(h, "removed");
    assert_false(file_exists(path));

    assert_int_equal(stage_of(h), DW_STAGE_COMPLETE);
    char buf[4096];
    assert_string_equal(fixture_text(f, ITEMS_SNAPSHOT, buf, sizeof buf),
                        snapshot);
    assert_string_equal(fixture_text(f, ITEMS_SCHEMA, buf, sizeof buf), schema);
    assert_int_equal(attached_backups(f->t.db), 0);
    hist hs;
    get_history(&hs, h);
    assert_int_equal(hs.ncontract, 0);
    /* Not contracted: a verification still runs, and the stage can still
     * move back. */
    dw_verify_result r;
    assert_dw_ok(h, dw_verify(&r, h, NULL));
    assert_true(r.clean);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_RAMPDOWN, "not dropped", 0));
    backfill_and_verify(h);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_COMPLETE, NULL, 0));

    /* A path the VFS leaves alone works. */
    in_dir(f, "items-good.bak", path, sizeof path);
    assert_dw_ok(h, dw_contract(h, path, NULL));
    assert_int_equal(schema_count(f->t.db, "items"), 0);
}

/* ---- SQLite refuses the drop ----------------------------------------------- */

static void contract_refused_by_foreign_key(test_fixture *f, int deferred)
{
    create_items(f->t.db);
    fixture_exec(f, "PRAGMA foreign_keys = ON");
    fixture_exec(f, deferred
                        ? "CREATE TABLE orders(id INTEGER PRIMARY KEY, "
                          "item_id INTEGER REFERENCES items(id) DEFERRABLE "
                          "INITIALLY DEFERRED)"
                        : "CREATE TABLE orders(id INTEGER PRIMARY KEY, "
                          "item_id INTEGER REFERENCES items(id))");
    fixture_exec(f, "INSERT INTO orders VALUES(1, 4), (2, 9)");
    f->h = open_items(f->t.db);
    dw_migration *h = f->h;
    reach_complete(h);
    char snapshot[4096], schema[4096], path[400];
    fixture_text(f, ITEMS_SNAPSHOT, snapshot, sizeof snapshot);
    fixture_text(f, ITEMS_SCHEMA, schema, sizeof schema);
    in_dir(f, "items.bak", path, sizeof path);

    /* A foreign key to the old table refuses the contract (the drop could
     * cascade into the other table): DW_ECONSTRAINT naming the table. */
    assert_dw(h, dw_contract(h, path, NULL), DW_ECONSTRAINT);
    assert_msg_has(h, "FOREIGN KEY");
    assert_msg_has(h, "orders");
    assert_false(file_exists(path));
    assert_int_equal(outside_transaction(f->t.db), 1);
    assert_int_equal(fixture_int(f, "PRAGMA foreign_keys"), 1);
    assert_not_contracted(f, h, snapshot, schema);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM orders"), 2);
    assert_int_equal(stage_of(h), DW_STAGE_COMPLETE);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_RAMPDOWN, "not dropped", 0));
    backfill_and_verify(h);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_COMPLETE, NULL, 0));

    /* Even with no row referring to it, the declared key refuses. Without
     * the key the drop goes through. */
    fixture_exec(f, "DELETE FROM orders");
    assert_dw(h, dw_contract(h, path, NULL), DW_ECONSTRAINT);
    assert_false(file_exists(path));
    fixture_exec(f, "DROP TABLE orders");
    assert_dw_ok(h, dw_contract(h, path, NULL));
    assert_int_equal(schema_count(f->t.db, "items"), 0);
}

static void test_contract_drop_refused_foreign_key(void **state)
{
    contract_refused_by_foreign_key(*state, 0);
}

static void test_contract_drop_refused_deferred_foreign_key(void **state)
{
    contract_refused_by_foreign_key(*state, 1);
}

/* ---- one table ----------------------------------------------------------- */

static const char *const T_OLD[] = {"status", "prio"};
static const char *const T_NEW[] = {"status_code", "priority"};
static const dw_column_map T_UP[] = {
    {"status_code",
     "CASE status WHEN 'open' THEN 1 WHEN 'closed' THEN 2 END"},
    {"priority", "prio"}};
static const dw_column_map T_DOWN[] = {
    {"status", "CASE status_code WHEN 1 THEN 'open' WHEN 2 THEN 'closed' END"},
    {"prio", "priority"}};

#define TICKETS_SNAPSHOT                                                       \
    "SELECT group_concat(r, '|') FROM (SELECT id || ':' || quote(owner) || "  \
    "':' || quote(status) || ':' || quote(prio) || ':' || "                   \
    "quote(status_code) || ':' || quote(priority) AS r FROM tickets ORDER "   \
    "BY id)"

static void create_tickets(sqlite3 *db)
{
    exec_ok(db, "CREATE TABLE tickets(id INTEGER PRIMARY KEY,"
                " owner TEXT NOT NULL,"
                " status TEXT NOT NULL DEFAULT 'open',"
                " prio INTEGER DEFAULT 3,"
                " status_code INTEGER, priority INTEGER);"
                "INSERT INTO tickets(id, owner, status, prio) VALUES"
                " (1, 'ann', 'open', 1), (2, 'bob', 'closed', 2),"
                " (3, 'cy', 'open', NULL), (4, 'di', 'closed', 5),"
                " (5, 'ed', 'open', 3), (6, 'flo', 'closed', 4);");
}

static dw_migration *open_tickets(sqlite3 *db)
{
    dw_options o = options_for("ticket_codes", TEST_SIDE("tickets", KEY, T_OLD),
                               TEST_SIDE("tickets", KEY, T_NEW));
    o.up = T_UP;
    o.nup = 2;
    o.down = T_DOWN;
    o.ndown = 2;
    return open_migration_ok(db, &o);
}

/* How many of the tickets table's old columns (status, prio) exist. */
static int64_t old_ticket_columns(sqlite3 *db)
{
    return query_int(db, "SELECT count(*) FROM pragma_table_xinfo('tickets') "
                         "WHERE name IN ('status', 'prio')");
}

/* Creates the tickets table, opens f->h on it and takes it to COMPLETE. */
static dw_migration *tickets_complete(test_fixture *f)
{
    create_tickets(f->t.db);
    f->h = open_tickets(f->t.db);
    reach_complete(f->h);
    return f->h;
}

typedef struct ticket_write {
    const char *owner;
    int code;
    int priority;
    int remove;
} ticket_write;

static int write_ticket_new(void *db, const dw_value *key, int nkey,
                            void *payload)
{
    const ticket_write *w = payload;
    assert_int_equal(nkey, 1);
    return callback_exec(
        db,
        w->remove ? "DELETE FROM tickets WHERE id = ?1"
                  : "INSERT INTO tickets(id, owner, status_code, priority) "
                    "VALUES(?1, ?2, ?3, ?4) ON CONFLICT(id) DO UPDATE SET "
                    "status_code = excluded.status_code, "
                    "priority = excluded.priority",
        "itii", key[0].i, w->owner, (int64_t)w->code, (int64_t)w->priority);
}

static void put_ticket(dw_migration *h, int64_t id, const char *owner,
                       int code, int priority, int remove)
{
    ticket_write w = {owner, code, priority, remove};
    dw_value key = dw_int(id);
    assert_dw_ok(h, dw_write(h, &key, 1, NULL, write_ticket_new, &w));
}

/* The table's columns as "name type notnull default|..." */
#define TICKETS_COLUMNS                                                        \
    "SELECT group_concat(name || ' ' || type || ' ' || \"notnull\" || ' ' "   \
    "|| ifnull(dflt_value, '-'), '|') FROM (SELECT * FROM "                   \
    "pragma_table_xinfo('tickets') ORDER BY cid)"

static void test_contract_one_table(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = tickets_complete(f);
    char before[1024], buf[1024], path[400];
    fixture_text(f, TICKETS_SNAPSHOT, before, sizeof before);
    assert_string_equal(before,
                        "1:'ann':'open':1:1:1|2:'bob':'closed':2:2:2|"
                        "3:'cy':'open':NULL:1:NULL|4:'di':'closed':5:2:5|"
                        "5:'ed':'open':3:1:3|6:'flo':'closed':4:2:4");
    in_dir(f, "tickets.bak", path, sizeof path);

    assert_dw_ok(h, dw_contract(h, path, "drop the text status"));
    /* The old columns are gone; the key, the new columns, the column no
     * side owns and every row stay. */
    assert_string_equal(fixture_text(f, TICKETS_COLUMNS, buf, sizeof buf),
                        "id INTEGER 0 -|owner TEXT 1 -|status_code INTEGER 0 "
                        "-|priority INTEGER 0 -");
    assert_string_equal(
        query_text(f->t.db,
                   "SELECT group_concat(id || owner || status_code || "
                   "ifnull(priority, '-'), ',') FROM (SELECT * FROM tickets "
                   "ORDER BY id)",
                   buf, sizeof buf),
        "1ann11,2bob22,3cy1-,4di25,5ed13,6flo24");
    hist hs;
    get_history(&hs, h);
    assert_int_equal(hs.ncontract, 1);
    assert_non_null(strstr(hs.last_contract.detail, path));
    assert_non_null(strstr(hs.last_contract.detail, "6 rows"));

    /* The backup holds the key and the old columns. */
    sqlite3 *b = open_plain(path, 0);
    assert_string_equal(
        query_text(b,
                   "SELECT group_concat(id || ':' || quote(status) || ':' || "
                   "quote(prio), '|') FROM (SELECT * FROM tickets ORDER BY "
                   "id)",
                   buf, sizeof buf),
        "1:'open':1|2:'closed':2|3:'open':NULL|4:'closed':5|5:'open':3|"
        "6:'closed':4");
    assert_int_equal(sqlite3_close(b), SQLITE_OK);

    /* The contracted one-table migration: new-model writes work, the old
     * model is refused. */
    dw_verify_result r;
    assert_dw(h, dw_verify(&r, h, NULL), DW_EMISUSE);
    assert_msg_has(h, "contract");
    assert_dw(h, dw_stage_set(h, DW_STAGE_RAMPDOWN, NULL, 0), DW_EMISUSE);
    put_ticket(h, 7, "gus", 2, 9, 0); /* a new row */
    put_ticket(h, 3, "cy", 2, 8, 0);  /* a changed row */
    put_ticket(h, 2, NULL, 0, 0, 1);  /* a deleted row */
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    dw_value k3 = dw_int(3);
    assert_dw_ok(h, dw_read(row, h, &k3, 1, NULL, NULL, NULL));
    assert_int_equal(dw_row_get(row, "status_code")->i, 2);
    assert_int_equal(dw_row_get(row, "priority")->i, 8);
    assert_int_equal(dw_row_find(row, "status"), -1);
    dw_row_free(row);

    /* Restore: the old columns come back with their types and defaults
     * (NOT NULL left off), holding the backed-up values where the row is
     * still there; the row added since gets the defaults. */
    assert_dw_ok(h, dw_restore(h, path, "put it back"));
    assert_int_equal(stage_of(h), DW_STAGE_RAMPDOWN);
    assert_string_equal(fixture_text(f, TICKETS_COLUMNS, buf, sizeof buf),
                        "id INTEGER 0 -|owner TEXT 1 -|status_code INTEGER 0 "
                        "-|priority INTEGER 0 -|status TEXT 0 'open'|"
                        "prio INTEGER 0 3");
    assert_string_equal(
        fixture_text(f, TICKETS_SNAPSHOT, buf, sizeof buf),
        "1:'ann':'open':1:1:1|3:'cy':'open':NULL:2:8|4:'di':'closed':5:2:5|"
        "5:'ed':'open':3:1:3|6:'flo':'closed':4:2:4|7:'gus':'open':3:2:9");
    get_history(&hs, h);
    assert_int_equal(hs.nrestore, 1);
    assert_string_equal(hs.last.event, "restore");
    assert_int_equal(hs.last.from, DW_STAGE_COMPLETE);
    assert_int_equal(hs.last.to, DW_STAGE_RAMPDOWN);
    assert_string_equal(hs.last.reason, "put it back");

    /* At RAMPDOWN the backfill brings the old columns up to date. */
    dw_backfill_progress p;
    assert_dw_ok(h, dw_backfill(&p, h, NULL));
    assert_int_equal(p.source, DW_SIDE_NEW);
    assert_string_equal(
        fixture_text(f, TICKETS_SNAPSHOT, buf, sizeof buf),
        "1:'ann':'open':1:1:1|3:'cy':'closed':8:2:8|4:'di':'closed':5:2:5|"
        "5:'ed':'open':3:1:3|6:'flo':'closed':4:2:4|7:'gus':'closed':9:2:9");
    assert_dw_ok(h, dw_verify(&r, h, NULL));
    assert_true(r.clean);
    assert_int_equal(r.keys, 6);
}

/* An index or a view that needs an old column makes ALTER TABLE DROP
 * COLUMN fail: the contract fails whole (no column dropped, not even the
 * first), and removes its backup. */
static void test_contract_one_table_drop_refused(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = tickets_complete(f);
    char before[1024], cols[1024], buf[1024], path[400];
    fixture_text(f, TICKETS_SNAPSHOT, before, sizeof before);
    fixture_text(f, TICKETS_COLUMNS, cols, sizeof cols);
    in_dir(f, "tickets.bak", path, sizeof path);

    static const char *const blockers[][2] = {
        /* prio is dropped second: status must come back too. */
        {"CREATE INDEX tickets_prio ON tickets(prio)",
         "DROP INDEX tickets_prio"},
        {"CREATE VIEW open_tickets AS SELECT id FROM tickets WHERE status = "
         "'open'",
         "DROP VIEW open_tickets"},
    };
    for (size_t i = 0; i < sizeof blockers / sizeof blockers[0]; i++) {
        fixture_exec(f, blockers[i][0]);
        int rc = dw_contract(h, path, NULL);
        if (rc != DW_ERROR)
            print_error("dw_contract returned %d: %s\n", rc, dw_errmsg(h));
        assert_int_equal(rc, DW_ERROR);
        assert_false(file_exists(path));
        assert_string_equal(fixture_text(f, TICKETS_COLUMNS, buf, sizeof buf),
                            cols);
        assert_string_equal(fixture_text(f, TICKETS_SNAPSHOT, buf, sizeof buf),
                            before);
        assert_int_equal(outside_transaction(f->t.db), 1);
        assert_int_equal(attached_backups(f->t.db), 0);
        hist hs;
        get_history(&hs, h);
        assert_int_equal(hs.ncontract, 0);
        dw_verify_result r;
        assert_dw_ok(h, dw_verify(&r, h, NULL));
        assert_true(r.clean);
        fixture_exec(f, blockers[i][1]);
    }
    assert_dw_ok(h, dw_contract(h, path, NULL));
    assert_int_equal(old_ticket_columns(f->t.db),
                     0);
}

/* A one-table migration contracted, then opened again on a new handle,
 * which then restores. */
static void test_one_table_reopen_and_restore(void **state)
{
    test_fixture *f = *state;
    tickets_complete(f);
    char before[1024], buf[1024], path[400];
    fixture_text(f, TICKETS_SNAPSHOT, before, sizeof before);
    in_dir(f, "tickets.bak", path, sizeof path);
    assert_dw_ok(f->h, dw_contract(f->h, path, NULL));
    dw_close(f->h);
    f->h = open_tickets(f->t.db);
    dw_migration *h = f->h;
    assert_int_equal(stage_of(h), DW_STAGE_COMPLETE);
    assert_dw(h, dw_backfill(NULL, h, NULL), DW_EMISUSE);
    assert_msg_has(h, "contract");
    put_ticket(h, 1, "ann", 2, 1, 0);
    assert_dw_ok(h, dw_restore(h, path, NULL));
    assert_int_equal(stage_of(h), DW_STAGE_RAMPDOWN);
    /* Row 1's old columns are as backed up ('open'), before the backfill. */
    assert_string_equal(fixture_text(f, TICKETS_SNAPSHOT, buf, sizeof buf),
                        "1:'ann':'open':1:2:1|2:'bob':'closed':2:2:2|"
                        "3:'cy':'open':NULL:1:NULL|4:'di':'closed':5:2:5|"
                        "5:'ed':'open':3:1:3|6:'flo':'closed':4:2:4");
    assert_dw_ok(h, dw_backfill(NULL, h, NULL));
    dw_verify_result r;
    assert_dw_ok(h, dw_verify(&r, h, NULL));
    assert_true(r.clean);
    assert_string_equal(fixture_text(f,
                                     "SELECT status FROM tickets "
                                     "WHERE id = 1",
                                     buf, sizeof buf),
                        "closed");
}

/* ---- restore -------------------------------------------------------------- */

static void test_restore_two_tables(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    /* A trigger belongs to the old table too: it comes back, and does not
     * fire on the rows the restore copies. */
    fixture_exec(f, "CREATE TABLE audit(id);"
                    "CREATE TRIGGER items_audit AFTER INSERT ON items BEGIN "
                    "INSERT INTO audit VALUES(new.id); END;");
    f->h = open_items(f->t.db);
    dw_migration *h = f->h;
    reach_complete(h);
    char snapshot[4096], schema[4096], path[400], buf[4096];
    fixture_text(f, ITEMS_SNAPSHOT, snapshot, sizeof snapshot);
    fixture_text(f, ITEMS_SCHEMA, schema, sizeof schema);
    in_dir(f, "items.bak", path, sizeof path);
    assert_dw_ok(h, dw_contract(h, path, NULL));
    assert_int_equal(schema_count(f->t.db, "items"), 0);

    /* Writes at COMPLETE go to the new model only. */
    put_new(h, 2, "RENAMED", 40, "changed");
    put_new(h, 100, "BRAND NEW", 1, NULL);
    delete_new(h, 3);

    assert_dw_ok(h, dw_restore(h, path, "roll back the contract"));
    /* The table as it was defined, its indexes, exactly the backed-up
     * rows. */
    assert_string_equal(fixture_text(f, ITEMS_SCHEMA, buf, sizeof buf), schema);
    assert_string_equal(fixture_text(f, ITEMS_SNAPSHOT, buf, sizeof buf),
                        snapshot);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items"), NITEMS);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM sqlite_schema "
                                    "WHERE name = 'items_audit'"),
                     1);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM audit"), 0);
    assert_string_equal(
        fixture_text(f, "PRAGMA integrity_check", buf, sizeof buf), "ok");
    assert_int_equal(attached_backups(f->t.db), 0);
    assert_int_equal(stage_of(h), DW_STAGE_RAMPDOWN);
    hist hs;
    get_history(&hs, h);
    assert_int_equal(hs.nrestore, 1);
    assert_string_equal(hs.last.event, "restore");
    assert_int_equal(hs.last.from, DW_STAGE_COMPLETE);
    assert_int_equal(hs.last.to, DW_STAGE_RAMPDOWN);
    assert_string_equal(hs.last.reason, "roll back the contract");
    assert_true(hs.last.has_detail);
    assert_non_null(strstr(hs.last.detail, path));

    /* The gate into COMPLETE is closed (the backfill went stale), and so
     * is the way back to trusting the restored old model, which lacks the
     * writes made at COMPLETE: a shadow read would serve "item 2". */
    assert_gate_closed(h, DW_STAGE_COMPLETE, "stale");
    assert_gate_closed(h, DW_STAGE_SHADOW, "missed the writes made at COMPLETE");
    /* The backfill, at RAMPDOWN, brings the old side up to date. */
    dw_verify_result r;
    assert_dw_ok(h, dw_verify(&r, h, NULL));
    assert_int_equal(r.different, 1);
    assert_int_equal(r.missing, 1);
    assert_int_equal(r.extra, 1);
    dw_backfill_progress p;
    assert_dw_ok(h, dw_backfill(&p, h, NULL));
    assert_int_equal(p.source, DW_SIDE_NEW);
    assert_int_equal(p.finished, 1);
    assert_string_equal(fixture_text(f,
                                     "SELECT name || '/' || qty || "
                                     "'/' || note FROM items WHERE "
                                     "id = 2",
                                     buf, sizeof buf),
                        "renamed/40/changed");
    assert_string_equal(fixture_text(f,
                                     "SELECT name FROM items WHERE "
                                     "id = 100",
                                     buf, sizeof buf),
                        "brand new");
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items WHERE "
                                    "id = 3"),
                     0);
    assert_dw_ok(h, dw_verify(&r, h, NULL));
    assert_true(r.clean);
    /* And the migration goes on as before: forward again, or back. */
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_COMPLETE, NULL, 0));
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_LIVE, NULL, 0));
}

/* The second pair: tags (a rowid table with a TEXT key) -> tags_v2. */
static const char *const TAG_KEY[] = {"tag"};
static const dw_column_map TAG_UP[] = {{"colour", "color"}};
static const dw_column_map TAG_DOWN[] = {{"color", "colour"}};

static void create_tags(sqlite3 *db)
{
    exec_ok(db, "CREATE TABLE tags(tag TEXT PRIMARY KEY, color TEXT);"
                "CREATE TABLE tags_v2(tag TEXT PRIMARY KEY, colour TEXT);");
}

/* tags -> tags_v2, both ways; both sides' columns left NULL: the
 * defaults. */
static void tags_options(dw_options *o, const char *name)
{
    dw_options init = DW_OPTIONS_INIT;
    *o = init;
    o->name = name;
    o->old_side.table = "tags";
    o->old_side.key_columns = TAG_KEY;
    o->old_side.nkey_columns = 1;
    o->new_side.table = "tags_v2";
    o->new_side.key_columns = TAG_KEY;
    o->new_side.nkey_columns = 1;
    o->up = TAG_UP;
    o->nup = 1;
    o->down = TAG_DOWN;
    o->ndown = 1;
}

static dw_migration *open_tags(sqlite3 *db)
{
    dw_options o =
        options_for("tag_colour", TEST_SIDE_UNLISTED("tags", TAG_KEY),
                    TEST_SIDE_UNLISTED("tags_v2", TAG_KEY));
    o.up = TAG_UP;
    o.nup = 1;
    o.down = TAG_DOWN;
    o.ndown = 1;
    return open_migration_ok(db, &o);
}

/* The migration is still contracted, and nothing of the old table came
 * back. */
static void assert_still_contracted(test_fixture *f, dw_migration *h)
{
    assert_int_equal(schema_count(f->t.db, "items"), 0);
    assert_int_equal(stage_of(h), DW_STAGE_COMPLETE);
    assert_int_equal(attached_backups(f->t.db), 0);
    assert_int_equal(outside_transaction(f->t.db), 1);
    dw_verify_result r;
    assert_dw(h, dw_verify(&r, h, NULL), DW_EMISUSE);
    assert_msg_has(h, "contract");
    assert_dw(h, dw_stage_set(h, DW_STAGE_RAMPDOWN, NULL, 0), DW_EMISUSE);
    hist hs;
    get_history(&hs, h);
    assert_int_equal(hs.nrestore, 0);
}

static void test_restore_refusals(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    f->h = open_items(f->t.db);
    dw_migration *h = f->h;
    char snapshot[4096], path[400], copy[400], other[400], buf[4096];
    in_dir(f, "items.bak", path, sizeof path);
    in_dir(f, "items-copy.bak", copy, sizeof copy);
    in_dir(f, "tags.bak", other, sizeof other);

    /* Another migration, contracted to its own backup. */
    create_tags(f->t.db);
    f->h2 = open_tags(f->t.db);
    fixture_exec(f, "INSERT INTO tags VALUES('red', 'ff0000'), "
                    "('green', '00ff00')");
    reach_complete(f->h2);
    assert_dw_ok(f->h2, dw_contract(f->h2, other, NULL));
    assert_int_equal(schema_count(f->t.db, "tags"), 0);

    reach_complete(h);
    fixture_text(f, ITEMS_SNAPSHOT, snapshot, sizeof snapshot);
    assert_dw_ok(h, dw_contract(h, path, NULL));
    assert_true(test_copy_file(path, copy));

    /* NULL, empty, inside a transaction. */
    assert_dw(h, dw_restore(h, NULL, NULL), DW_EMISUSE);
    assert_dw(h, dw_restore(h, "", NULL), DW_EMISUSE);
    fixture_exec(f, "BEGIN");
    assert_dw(h, dw_restore(h, path, NULL), DW_EMISUSE);
    fixture_exec(f, "ROLLBACK");
    assert_still_contracted(f, h);

    /* A missing file: an error, and no file is created. */
    char missing[400];
    in_dir(f, "missing.bak", missing, sizeof missing);
    assert_dw(h, dw_restore(h, missing, NULL), DW_ERROR);
    assert_false(file_exists(missing));
    assert_still_contracted(f, h);

    /* A backup of another migration. */
    assert_dw(h, dw_restore(h, other, NULL), DW_EMISUSE);
    assert_msg_has(h, "tag_colour");
    assert_still_contracted(f, h);
    assert_int_equal(schema_count(f->t.db, "tags"), 0);

    /* A tampered backup: one value changed. */
    sqlite3 *b = open_plain(path, 1);
    exec_ok(b, "UPDATE items SET qty = 999 WHERE id = 4");
    assert_int_equal(sqlite3_close(b), SQLITE_OK);
    assert_dw(h, dw_restore(h, path, NULL), DW_ERROR);
    assert_msg_has(h, "does not check out");
    assert_still_contracted(f, h);
    /* The old table made again by hand (in another case): the restore will
     * not replace it. */
    fixture_exec(f, "CREATE TABLE Items(x); INSERT INTO Items VALUES(42)");
    assert_dw(h, dw_restore(h, copy, NULL), DW_EMISUSE);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items"), 1);
    assert_int_equal(fixture_int(f, "SELECT x FROM items"), 42);
    assert_int_equal(stage_of(h), DW_STAGE_COMPLETE);
    assert_int_equal(attached_backups(f->t.db), 0);
    fixture_exec(f, "DROP TABLE Items");
    assert_still_contracted(f, h);

    /* The untouched copy restores. */
    assert_dw_ok(h, dw_restore(h, copy, NULL));
    assert_string_equal(fixture_text(f, ITEMS_SNAPSHOT, buf, sizeof buf),
                        snapshot);
    assert_int_equal(stage_of(h), DW_STAGE_RAMPDOWN);

    /* Not contracted (any more): refused, nothing touched. */
    assert_dw(h, dw_restore(h, copy, NULL), DW_EMISUSE);
    assert_string_equal(fixture_text(f, ITEMS_SNAPSHOT, buf, sizeof buf),
                        snapshot);
    assert_int_equal(stage_of(h), DW_STAGE_RAMPDOWN);
    hist hs;
    get_history(&hs, h);
    assert_int_equal(hs.nrestore, 1);

    /* The other migration is still contracted, and its own backup still
     * restores it. */
    dw_verify_result r;
    assert_dw(f->h2, dw_verify(&r, f->h2, NULL), DW_EMISUSE);
    assert_dw_ok(f->h2, dw_restore(f->h2, other, NULL));
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM tags"), 2);
}

/* The header promises the backup keeps a rowid table's rowids; a restore
 * must give each row back its rowid, gaps included. */
static void test_restore_keeps_rowids(void **state)
{
    test_fixture *f = *state;
    create_tags(f->t.db);
    f->h = open_tags(f->t.db);
    dw_migration *h = f->h;
    fixture_exec(f, "INSERT INTO tags VALUES('a', '1'), ('b', '2'), "
                    "('c', '3'), ('d', '4'), ('e', '5'), ('f', '6');"
                    "DELETE FROM tags WHERE tag IN ('b', 'd');");
    char before[256], buf[256], path[400];
    const char *rowids = "SELECT group_concat(rowid || tag, ',') FROM "
                         "(SELECT rowid, tag FROM tags ORDER BY rowid)";
    fixture_text(f, rowids, before, sizeof before);
    assert_string_equal(before, "1a,3c,5e,6f");
    reach_complete(h);
    in_dir(f, "tags.bak", path, sizeof path);
    assert_dw_ok(h, dw_contract(h, path, NULL));

    sqlite3 *b = open_plain(path, 0);
    query_text(b, rowids, buf, sizeof buf);
    assert_int_equal(sqlite3_close(b), SQLITE_OK);
    if (strcmp(buf, before) != 0)
        print_error("backup rowids: %s, table had %s\n", buf, before);

    assert_dw_ok(h, dw_restore(h, path, NULL));
    assert_string_equal(fixture_text(f, rowids, buf, sizeof buf), before);
}

/* A migration with default column lists, contracted, opened again on a
 * new handle (its old columns then come from the stored spec), and
 * restored through that handle. */
static void test_reopen_default_columns_and_restore(void **state)
{
    test_fixture *f = *state;
    create_tags(f->t.db);
    fixture_exec(f, "INSERT INTO tags VALUES('red', 'ff0000'), "
                    "('green', '00ff00'), ('blue', NULL)");
    f->h = open_tags(f->t.db);
    char digest[65], path[400], buf[256];
    snprintf(digest, sizeof digest, "%s", dw_spec_digest(f->h));
    reach_complete(f->h);
    in_dir(f, "tags.bak", path, sizeof path);
    assert_dw_ok(f->h, dw_contract(f->h, path, NULL));
    dw_close(f->h);
    f->h = NULL;

    f->h = open_tags(f->t.db);
    dw_migration *h = f->h;
    assert_string_equal(dw_spec_digest(h), digest);
    assert_int_equal(stage_of(h), DW_STAGE_COMPLETE);
    assert_int_equal(schema_count(f->t.db, "tags"), 0);
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    dw_value k = dw_text("red");
    assert_dw_ok(h, dw_read(row, h, &k, 1, NULL, NULL, NULL));
    assert_string_equal((const char *)dw_row_get(row, "colour")->p, "ff0000");
    dw_row_free(row);
    dw_verify_result r;
    assert_dw(h, dw_verify(&r, h, NULL), DW_EMISUSE);
    assert_msg_has(h, "contract");
    assert_dw(h, dw_stage_set(h, DW_STAGE_RAMPDOWN, NULL, 0), DW_EMISUSE);
    fixture_exec(f, "UPDATE tags_v2 SET colour = '0000ff' WHERE tag = "
                    "'blue'");

    assert_dw_ok(h, dw_restore(h, path, NULL));
    assert_int_equal(stage_of(h), DW_STAGE_RAMPDOWN);
    assert_string_equal(
        query_text(f->t.db,
                   "SELECT group_concat(tag || '=' || ifnull(color, '-'), "
                   "',') FROM (SELECT * FROM tags ORDER BY tag)",
                   buf, sizeof buf),
        "blue=-,green=00ff00,red=ff0000");
    assert_dw_ok(h, dw_backfill(NULL, h, NULL));
    assert_dw_ok(h, dw_verify(&r, h, NULL));
    assert_true(r.clean);
    assert_string_equal(fixture_text(f,
                                     "SELECT color FROM tags WHERE "
                                     "tag = 'blue'",
                                     buf, sizeof buf),
                        "0000ff");
}

/* After the contract the old side is read from the stored spec: one whose
 * old side does not say its table and columns (not JSON, no columns, a
 * column that is no name) is refused at open, naming the migration, and
 * nothing of the stored state changes. */
static void test_reopen_stored_old_side_unreadable(void **state)
{
    test_fixture *f = *state;
    create_tags(f->t.db);
    fixture_exec(f, "INSERT INTO tags VALUES('red', 'ff0000')");
    f->h = open_tags(f->t.db);
    char path[400], buf[4096];
    reach_complete(f->h);
    in_dir(f, "tags.bak", path, sizeof path);
    assert_dw_ok(f->h, dw_contract(f->h, path, NULL));
    dw_close(f->h);
    f->h = NULL;
    char *spec = strdup(fixture_text(f, "SELECT spec FROM dw_migrations",
                                     buf, sizeof buf));
    static const char *const damage[] = {
        "UPDATE dw_migrations SET spec = 'garbage'",
        "UPDATE dw_migrations SET spec = json_remove(spec, '$.old.columns')",
        "UPDATE dw_migrations SET spec = json_set(spec, '$.old.columns[0]', "
        "7)",
        "UPDATE dw_migrations SET spec = json_set(spec, '$.old.table', "
        "json('[1]'))",
    };
    dw_options o;
    tags_options(&o, "tag_colour");
    for (size_t i = 0; i < sizeof damage / sizeof *damage; i++) {
        fixture_exec(f, damage[i]);
        dw_migration *h = NULL;
        char *err = NULL;
        assert_int_equal(dw_sqlite_open(&h, f->t.db, &o, &err), DW_ERROR);
        assert_null(h);
        assert_non_null(err);
        if (!strstr(err, "old side: the stored spec of \"tag_colour\" "
                         "cannot be read"))
            fail_msg("%s: %s", damage[i], err);
        dw_free(err);
        sqlite3_stmt *st;
        assert_int_equal(sqlite3_prepare_v2(f->t.db,
                                            "UPDATE dw_migrations SET spec "
                                            "= ?1",
                                            -1, &st, NULL),
                         SQLITE_OK);
        sqlite3_bind_text(st, 1, spec, -1, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_finalize(st);
    }
    free(spec);
    f->h = open_tags(f->t.db);
    assert_int_equal(stage_of(f->h), DW_STAGE_COMPLETE);
}

/* ON DELETE CASCADE from another table: dropping the old table would delete
 * that table's rows, which no backup holds -- refused, nothing changed,
 * whether or not foreign keys are enforced on the connection. */
static void test_contract_refuses_cascading_key(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    fixture_exec(f, "CREATE TABLE notes(id INTEGER PRIMARY KEY, item_id "
                    "INTEGER REFERENCES items(id) ON DELETE CASCADE);"
                    "INSERT INTO notes VALUES(1, 4), (2, 9);"
                    "PRAGMA foreign_keys = ON");
    f->h = open_items(f->t.db);
    dw_migration *h = f->h;
    reach_complete(h);
    char path[400];
    in_dir(f, "items.bak", path, sizeof path);
    for (int enforced = 1; enforced >= 0; enforced--) {
        fixture_exec(f, enforced ? "PRAGMA foreign_keys = ON"
                                 : "PRAGMA foreign_keys = OFF");
        assert_dw(h, dw_contract(h, path, NULL), DW_ECONSTRAINT);
        assert_msg_has(h, "notes");
        assert_false(file_exists(path));
        assert_int_equal(fixture_int(f, "SELECT count(*) FROM notes"), 2);
        assert_int_equal(fixture_int(f, "SELECT count(*) FROM items"), NITEMS);
    }
}

/* One table, an old column whose default is an expression: ALTER TABLE
 * cannot re-add that default, so the restore re-adds the column without
 * it (documented) instead of failing for good. */
static void test_restore_expression_default(void **state)
{
    test_fixture *f = *state;
    fixture_exec(f, "CREATE TABLE events(id INTEGER PRIMARY KEY, created "
                    "TEXT DEFAULT CURRENT_TIMESTAMP, size INTEGER DEFAULT 7,"
                    " kind TEXT, kind_code INTEGER);"
                    "INSERT INTO events(id, created, kind) VALUES"
                    "(1, '2026-01-01', 'a'), (2, '2026-02-02', 'b');");
    static const char *const key[] = {"id"};
    static const char *const old_cols[] = {"created", "size", "kind"};
    static const char *const new_cols[] = {"kind_code"};
    static const dw_column_map up[] = {{"kind_code", "unicode(kind)"}};
    dw_options o = DW_OPTIONS_INIT;
    o.name = "events";
    o.old_side.table = "events";
    o.old_side.key_columns = key;
    o.old_side.nkey_columns = 1;
    o.old_side.columns = old_cols;
    o.old_side.ncolumns = 3;
    o.new_side = o.old_side;
    o.new_side.columns = new_cols;
    o.new_side.ncolumns = 1;
    o.up = up;
    o.nup = 1;
    f->h = open_migration_ok(f->t.db, &o);
    dw_migration *h = f->h;
    reach_complete(h);
    char path[400], buf[256];
    in_dir(f, "events.bak", path, sizeof path);
    assert_dw_ok(h, dw_contract(h, path, NULL));
    assert_dw_ok(h, dw_restore(h, path, "back"));
    assert_string_equal(
        query_text(f->t.db,
                   "SELECT group_concat(id || ':' || created || ':' || size "
                   "|| ':' || kind, '|') FROM (SELECT * FROM events ORDER BY "
                   "id)",
                   buf, sizeof buf),
        "1:2026-01-01:7:a|2:2026-02-02:7:b");
    /* The constant default came back, the expression did not. */
    assert_string_equal(
        query_text(f->t.db,
                   "SELECT group_concat(name || '=' || ifnull(dflt_value, "
                   "'-'), ',') FROM pragma_table_info('events') WHERE name "
                   "IN ('created', 'size')",
                   buf, sizeof buf),
        "created=-,size=7");
    assert_int_equal(stage_of(h), DW_STAGE_RAMPDOWN);
}

/* ---- changes by another connection between the contract's steps ---------- */

/* The contract writes and checks its backup without the write lock, then
 * takes it to drop the old model. What another connection does in
 * between is simulated from a trace hook on the contract's connection:
 * just before the last step's BEGIN IMMEDIATE (the second one of the
 * call), another handle on another connection acts. */
enum { RACE_CONTRACT, RACE_LEAVE_COMPLETE, RACE_OLD_ROW, RACE_DEFINE };

typedef struct race {
    test_fixture *f;
    int action;
    int begins;
    int acted;
    char other_path[400];
} race;

static dw_migration *open_items_copy(sqlite3 *db);

static int race_trace(unsigned type, void *ctx, void *p, void *x)
{
    race *r = ctx;
    (void)p;
    if (type != SQLITE_TRACE_STMT || r->acted ||
        strcmp((const char *)x, "BEGIN IMMEDIATE") != 0 || ++r->begins != 2)
        return 0;
    r->acted = 1;
    dw_migration *h2 = r->f->h2;
    switch (r->action) {
    case RACE_CONTRACT:
        assert_dw_ok(h2, dw_contract(h2, r->other_path, "the other one"));
        break;
    case RACE_LEAVE_COMPLETE:
        assert_dw_ok(h2, dw_stage_set(h2, DW_STAGE_RAMPDOWN, "trouble",
                                      DW_STAGE_FORCE));
        break;
    case RACE_DEFINE:
        /* Another migration of the old table, defined meanwhile. */
        dw_close(open_items_copy(r->f->db2));
        break;
    default:
        exec_ok(r->f->db2, "UPDATE items SET note = 'late' WHERE id = 1");
        break;
    }
    return 0;
}

/* Runs the contract with the race; returns its result code. */
static int contract_with_race(test_fixture *f, race *r, const char *path)
{
    sqlite3_trace_v2(f->t.db, SQLITE_TRACE_STMT, race_trace, r);
    int rc = dw_contract(f->h, path, "race");
    sqlite3_trace_v2(f->t.db, 0, NULL, NULL);
    assert_int_equal(r->acted, 1);
    return rc;
}

static void race_setup(test_fixture *f, race *r, int action)
{
    items_complete(f);
    fixture_connect_second(f);
    f->h2 = open_items(f->db2);
    memset(r, 0, sizeof *r);
    r->f = f;
    r->action = action;
    in_dir(f, "other.bak", r->other_path, sizeof r->other_path);
}

/* Another connection contracted meanwhile: nothing more is dropped, this
 * call's backup is removed, the other's stays, one contract is recorded. */
static void test_contract_race_contracted_elsewhere(void **state)
{
    test_fixture *f = *state;
    race r;
    race_setup(f, &r, RACE_CONTRACT);
    char path[400];
    in_dir(f, "items.bak", path, sizeof path);
    assert_dw(f->h, contract_with_race(f, &r, path), DW_EMISUSE);
    assert_msg_has(f->h, "was contracted by another connection");
    assert_msg_has(f->h, "nothing was dropped");
    /* Kept: the other contract might have been to this very path. */
    assert_msg_has(f->h, "was kept");
    assert_true(file_exists(path));
    assert_true(file_exists(r.other_path));
    assert_int_equal(schema_count(f->t.db, "items"), 0);
    assert_int_equal(attached_backups(f->t.db), 0);
    assert_int_equal(outside_transaction(f->t.db), 1);
    hist hs;
    get_history(&hs, f->h);
    assert_int_equal(hs.ncontract, 1);
    assert_non_null(strstr(hs.last_contract.detail, r.other_path));
    /* The other's backup restores it. */
    assert_dw_ok(f->h, dw_restore(f->h, r.other_path, NULL));
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items"), NITEMS);
}

/* The same, the other contract to the same path: it finds this call's
 * complete backup, uses it and drops the old model. The file is the only
 * backup of the dropped model: this call must not remove it. */
static void test_contract_race_same_path(void **state)
{
    test_fixture *f = *state;
    race r;
    race_setup(f, &r, RACE_CONTRACT);
    char path[400];
    in_dir(f, "items.bak", path, sizeof path);
    snprintf(r.other_path, sizeof r.other_path, "%s", path);
    assert_dw(f->h, contract_with_race(f, &r, path), DW_EMISUSE);
    assert_msg_has(f->h, "was kept");
    assert_true(file_exists(path));
    assert_int_equal(schema_count(f->t.db, "items"), 0);
    assert_dw_ok(f->h, dw_restore(f->h, path, "from the shared backup"));
    assert_int_not_equal(schema_count(f->t.db, "items"), 0);
}

/* The stage left COMPLETE meanwhile: refused by the gate, nothing
 * dropped, the backup removed. */
static void test_contract_race_left_complete(void **state)
{
    test_fixture *f = *state;
    race r;
    race_setup(f, &r, RACE_LEAVE_COMPLETE);
    char snapshot[4096], schema[4096], path[400];
    fixture_text(f, ITEMS_SNAPSHOT, snapshot, sizeof snapshot);
    fixture_text(f, ITEMS_SCHEMA, schema, sizeof schema);
    in_dir(f, "items.bak", path, sizeof path);
    assert_dw(f->h, contract_with_race(f, &r, path), DW_EGATE);
    assert_msg_has(f->h, "left COMPLETE while the backup was written");
    assert_false(file_exists(path));
    assert_int_equal(stage_of(f->h), DW_STAGE_RAMPDOWN);
    assert_int_equal(outside_transaction(f->t.db), 1);
    assert_not_contracted(f, f->h, snapshot, schema);
}

/* An old row changed meanwhile: the backup no longer holds the old model
 * as it is, so nothing is dropped and the backup is removed. */
static void test_contract_race_old_row_changed(void **state)
{
    test_fixture *f = *state;
    race r;
    race_setup(f, &r, RACE_OLD_ROW);
    char schema[4096], path[400];
    fixture_text(f, ITEMS_SCHEMA, schema, sizeof schema);
    in_dir(f, "items.bak", path, sizeof path);
    assert_dw(f->h, contract_with_race(f, &r, path), DW_ERROR);
    assert_msg_has(f->h, "the old model changed while the backup was being "
                         "written");
    assert_msg_has(f->h, "nothing was dropped");
    assert_false(file_exists(path));
    assert_int_equal(outside_transaction(f->t.db), 1);
    char snapshot[4096];
    fixture_text(f, ITEMS_SNAPSHOT, snapshot, sizeof snapshot);
    assert_non_null(strstr(snapshot, "'late'"));
    assert_int_equal(stage_of(f->h), DW_STAGE_COMPLETE);
    /* Tried again, the contract goes through with the row as it is now. */
    assert_dw_ok(f->h, dw_contract(f->h, path, "again"));
    assert_int_equal(schema_count(f->t.db, "items"), 0);
    assert_dw_ok(f->h, dw_restore(f->h, path, NULL));
    assert_string_equal(fixture_text(f, ITEMS_SNAPSHOT, schema, sizeof schema),
                        snapshot);
}

/* ---- a kept backup of the old model as it was described ------------------- */

/* A backup kept by a failed commit no longer matches once the old table's
 * definition changed (an index added): the contract refuses it without
 * touching it, and uses it again once the definition is as it was. */
static void test_contract_kept_backup_other_definition(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = items_complete(f);
    char path[400];
    in_dir(f, "items.bak", path, sizeof path);
    commits_to_fail = 2;
    sqlite3_commit_hook(f->t.db, fail_nth_commit, NULL);
    assert_int_not_equal(dw_contract(h, path, "first try"), DW_OK);
    sqlite3_commit_hook(f->t.db, NULL, NULL);
    assert_true(file_exists(path));

    fixture_exec(f, "CREATE INDEX items_note ON items(note)");
    char schema[4096], snapshot[4096];
    fixture_text(f, ITEMS_SCHEMA, schema, sizeof schema);
    fixture_text(f, ITEMS_SNAPSHOT, snapshot, sizeof snapshot);
    assert_dw(h, dw_contract(h, path, "index added"), DW_EMISUSE);
    assert_msg_has(h, "describes the old model otherwise than it is now");
    assert_msg_has(h, "never overwrites a file");
    assert_true(file_exists(path));
    assert_not_contracted(f, h, snapshot, schema);

    fixture_exec(f, "DROP INDEX items_note");
    assert_dw_ok(h, dw_contract(h, path, "as it was"));
    assert_int_equal(schema_count(f->t.db, "items"), 0);
}

/* ---- reopening a contracted migration with another spec ------------------- */

/* After the contract the old side is taken from the stored spec: naming
 * another old table is refused (DW_ESPEC) and stores nothing. A spec
 * redefined since the contract does not match the backup, so the restore
 * refuses it; redefined back, the backup restores. */
static void test_restore_needs_the_contracted_spec(void **state)
{
    test_fixture *f = *state;
    items_complete(f);
    char snapshot[4096], buf[4096], path[400];
    fixture_text(f, ITEMS_SNAPSHOT, snapshot, sizeof snapshot);
    in_dir(f, "items.bak", path, sizeof path);
    assert_dw_ok(f->h, dw_contract(f->h, path, NULL));
    dw_close(f->h);
    f->h = NULL;
    int n = fixture_int(f, "SELECT count(*) FROM dw_history");

    dw_options o;
    items_options(&o, "items_rename");
    o.old_side.table = "items_gone";
    dw_migration *h = NULL;
    char *err = NULL;
    assert_int_equal(dw_sqlite_open(&h, f->t.db, &o, &err), DW_ESPEC);
    assert_null(h);
    assert_non_null(err);
    assert_non_null(strstr(err, "contracted with old table \"items\""));
    dw_free(err);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM dw_history"), n);

    /* Redefined: the note is no longer copied as it is. */
    static const dw_column_map up2[] = {
        {"title", "upper(name)"}, {"quantity", "qty"}, {"note", "'-'"}};
    items_options(&o, "items_rename");
    o.up = up2;
    o.flags = DW_OPEN_REDEFINE;
    o.reason = "notes dropped";
    f->h = open_migration_ok(f->t.db, &o);
    assert_dw(f->h, dw_restore(f->h, path, NULL), DW_EMISUSE);
    assert_msg_has(f->h, "was taken under spec");
    assert_msg_has(f->h, "redefined since");
    assert_still_contracted(f, f->h);
    dw_close(f->h);

    items_options(&o, "items_rename");
    o.flags = DW_OPEN_REDEFINE;
    o.reason = "back to the contracted spec";
    f->h = open_migration_ok(f->t.db, &o);
    assert_dw_ok(f->h, dw_restore(f->h, path, NULL));
    assert_string_equal(fixture_text(f, ITEMS_SNAPSHOT, buf, sizeof buf),
                        snapshot);
}

/* ---- restoring old columns that were re-added by hand ---------------------- */

/* One table: after the contract the application re-added a column under
 * an old column's name. The restore cannot put that column back: it fails
 * with SQLite's reason, adds no column, and the migration stays
 * contracted; with the stray column gone it restores. */
static void test_restore_column_exists_again(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = tickets_complete(f);
    char before[1024], buf[1024], cols[1024], path[400];
    fixture_text(f, TICKETS_SNAPSHOT, before, sizeof before);
    in_dir(f, "tickets.bak", path, sizeof path);
    assert_dw_ok(h, dw_contract(h, path, NULL));

    fixture_exec(f, "ALTER TABLE tickets ADD COLUMN prio TEXT");
    fixture_text(f, TICKETS_COLUMNS, cols, sizeof cols);
    assert_dw(h, dw_restore(h, path, "put it back"), DW_ERROR);
    assert_msg_has(h, "re-adding an old column");
    assert_msg_has(h, "prio");
    assert_string_equal(fixture_text(f, TICKETS_COLUMNS, buf, sizeof buf),
                        cols);
    assert_int_equal(stage_of(h), DW_STAGE_COMPLETE);
    assert_int_equal(attached_backups(f->t.db), 0);
    assert_int_equal(outside_transaction(f->t.db), 1);
    hist hs;
    get_history(&hs, h);
    assert_int_equal(hs.nrestore, 0);
    dw_verify_result r;
    assert_dw(h, dw_verify(&r, h, NULL), DW_EMISUSE);
    assert_msg_has(h, "contract");

    fixture_exec(f, "ALTER TABLE tickets DROP COLUMN prio");
    assert_dw_ok(h, dw_restore(h, path, "put it back"));
    assert_string_equal(fixture_text(f, TICKETS_SNAPSHOT, buf, sizeof buf),
                        before);
}


/* ---- two migrations over one old model ------------------------------------ */

/* One side of a migration built by pair_open(). */
typedef struct side_spec {
    const char *table;
    const char *const *cols;
    int ncols;
} side_spec;

/* Opens (defining, or with `flags` redefining) migration `name` from
 * `old_s` to `new_s`, keyed by `key`, mapped up by `up` alone. */
static void pair_options(dw_options *o, const char *name,
                         const char *const *key, side_spec old_s,
                         side_spec new_s, const dw_column_map *up, int nup)
{
    dw_options init = DW_OPTIONS_INIT;
    *o = init;
    o->name = name;
    o->old_side.table = old_s.table;
    o->old_side.key_columns = key;
    o->old_side.nkey_columns = 1;
    o->old_side.columns = old_s.cols;
    o->old_side.ncolumns = old_s.ncols;
    o->new_side.table = new_s.table;
    o->new_side.key_columns = key;
    o->new_side.nkey_columns = 1;
    o->new_side.columns = new_s.cols;
    o->new_side.ncolumns = new_s.ncols;
    o->up = up;
    o->nup = nup;
}

static int pair_open(dw_migration **out, sqlite3 *db, const char *name,
                     const char *const *key, side_spec old_s,
                     side_spec new_s, const dw_column_map *up, int nup,
                     unsigned flags)
{
    dw_options o;
    pair_options(&o, name, key, old_s, new_s, up, nup);
    o.flags = flags;
    char *err = NULL;
    int rc = dw_sqlite_open(out, db, &o, &err);
    if (rc != DW_OK)
        print_error("dw_open %s: %d %s\n", name, rc,
                    err ? err : "(no message)");
    dw_free(err);
    return rc;
}

/* A second migration of the items table: items -> items_v3. */
static dw_migration *open_items_copy_as(sqlite3 *db, const char *name,
                                        const char *table)
{
    static const char *const OLD[] = {"name", "qty"};
    static const char *const NEW[] = {"label", "amount"};
    static const dw_column_map COPY_UP[] = {{"label", "name"},
                                            {"amount", "qty"}};
    dw_migration *h = NULL;
    assert_int_equal(pair_open(&h, db, name, KEY,
                               (side_spec){"items", OLD, 2},
                               (side_spec){table, NEW, 2}, COPY_UP, 2, 0),
                     DW_OK);
    return h;
}

static dw_migration *open_items_copy(sqlite3 *db)
{
    return open_items_copy_as(db, "items_copy", "items_v3");
}

/* The contract refuses while another migration still uses its old table
 * below COMPLETE; once that one is at COMPLETE too, the first contract
 * keeps the table for it, and the second drops it. Both restore. */
static void test_contract_old_table_shared(void **state)
{
    test_fixture *f = *state;
    dw_migration *a = items_complete(f);
    fixture_exec(f, "CREATE TABLE items_v3(id INTEGER PRIMARY KEY, "
                    "label TEXT, amount)");
    dw_migration *b = f->h2 = open_items_copy(f->t.db);
    stage_walk_ok(b, DW_STAGE_SHADOW);
    char path_a[400], path_b[400], buf[4096], before[4096];
    in_dir(f, "a.bak", path_a, sizeof path_a);
    in_dir(f, "b.bak", path_b, sizeof path_b);

    /* Refused, naming the other migration and what it uses; nothing
     * dropped, no backup left. */
    fixture_text(f, ITEMS_SNAPSHOT, before, sizeof before);
    int n = history_len(a);
    assert_dw(a, dw_contract(a, path_a, NULL), DW_EGATE);
    assert_msg_has(a, "\"items_copy\"");
    assert_msg_has(a, "old side");
    assert_msg_has(a, "\"items\"");
    assert_msg_has(a, "SHADOW");
    assert_false(file_exists(path_a));
    assert_string_equal(fixture_text(f, ITEMS_SNAPSHOT, buf, sizeof buf),
                        before);
    assert_int_equal(history_len(a), n);
    /* The other still reads and writes its old table. */
    item_write w = {"kept", 4, NULL, 0};
    dw_value k3 = dw_int(3);
    assert_dw_ok(b, dw_write(b, &k3, 1, write_item_old, NULL, &w));
    assert_int_equal(fixture_int(f, "SELECT amount FROM items_v3 WHERE id = 3"),
                     4);

    /* The other at COMPLETE: the first contract backs the table up and
     * keeps it, for the other's contract, which drops it. */
    stage_walk_ok(b, DW_STAGE_COMPLETE);
    fixture_text(f, ITEMS_SNAPSHOT, before, sizeof before);
    assert_dw_ok(a, dw_contract(a, path_a, "first"));
    assert_int_equal(schema_count(f->t.db, "items"), 4); /* and indexes */
    hist hs;
    get_history(&hs, a);
    assert_int_equal(hs.ncontract, 1);
    assert_non_null(strstr(hs.last_contract.detail, "kept"));
    assert_non_null(strstr(hs.last_contract.detail, "\"items_copy\""));
    dw_verify_result r;
    assert_dw(a, dw_verify(&r, a, NULL), DW_EMISUSE); /* contracted */
    assert_int_equal(stage_of(b), DW_STAGE_COMPLETE);
    assert_dw_ok(b, dw_contract(b, path_b, "second"));
    assert_int_equal(schema_count(f->t.db, "items"), 0);
    get_history(&hs, b);
    assert_null(strstr(hs.last_contract.detail, "kept"));

    /* Both still open, from what is stored. */
    dw_close(f->h);
    dw_close(f->h2);
    f->h = f->h2 = NULL;
    char *err = NULL;
    assert_int_equal(dw_sqlite_open_stored(&f->h, f->t.db, "items_rename", 0, &err),
                     DW_OK);
    assert_int_equal(dw_sqlite_open_stored(&f->h2, f->t.db, "items_copy", 0, &err),
                     DW_OK);
    a = f->h;
    b = f->h2;

    /* Restore: the first recreates the table from its backup; the second
     * then finds it in place, as its backup holds it. */
    assert_dw_ok(a, dw_restore(a, path_a, "back"));
    assert_string_equal(fixture_text(f, ITEMS_SNAPSHOT, buf, sizeof buf),
                        before);
    assert_dw_ok(b, dw_restore(b, path_b, "back too"));
    assert_int_equal(stage_of(a), DW_STAGE_RAMPDOWN);
    assert_int_equal(stage_of(b), DW_STAGE_RAMPDOWN);
    get_history(&hs, b);
    assert_non_null(strstr(hs.last_restore.detail, "in place"));
    assert_string_equal(fixture_text(f, ITEMS_SNAPSHOT, buf, sizeof buf),
                        before);
}

/* The table is another migration's new side: never dropped. And one-table
 * columns another migration reads: refused while it is below COMPLETE. */
static void test_contract_shared_new_side_and_columns(void **state)
{
    test_fixture *f = *state;
    dw_migration *a = tickets_complete(f);
    fixture_exec(f, "CREATE TABLE ticket_log(id INTEGER PRIMARY KEY, "
                    "state TEXT)");
    static const char *const LOG_OLD[] = {"status"};
    static const char *const LOG_NEW[] = {"state"};
    static const dw_column_map LOG_UP[] = {{"state", "status"}};
    assert_int_equal(pair_open(&f->h2, f->t.db, "ticket_log", KEY,
                               (side_spec){"tickets", LOG_OLD, 1},
                               (side_spec){"ticket_log", LOG_NEW, 1}, LOG_UP,
                               1, 0),
                     DW_OK);
    char path[400], cols[1024], buf[1024];
    in_dir(f, "t.bak", path, sizeof path);
    fixture_text(f, TICKETS_COLUMNS, cols, sizeof cols);
    assert_dw(a, dw_contract(a, path, NULL), DW_EGATE);
    assert_msg_has(a, "\"ticket_log\"");
    assert_msg_has(a, "status");
    assert_msg_has(a, "OFF");
    assert_string_equal(fixture_text(f, TICKETS_COLUMNS, buf, sizeof buf),
                        cols);
    assert_false(file_exists(path));
    dw_close(f->h2);
    f->h2 = NULL;

    /* A migration into the old columns (its new side): refused at any
     * stage, and named first. */
    fixture_exec(f, "CREATE TABLE legacy(id INTEGER PRIMARY KEY, st TEXT)");
    static const char *const IN_OLD[] = {"st"};
    static const dw_column_map IN_UP[] = {{"status", "st"}};
    assert_int_equal(pair_open(&f->h2, f->t.db, "into_tickets", KEY,
                               (side_spec){"legacy", IN_OLD, 1},
                               (side_spec){"tickets", LOG_OLD, 1}, IN_UP, 1,
                               0),
                     DW_OK);
    assert_dw(a, dw_contract(a, path, NULL), DW_EGATE);
    assert_msg_has(a, "\"into_tickets\"");
    assert_msg_has(a, "new side");
    assert_false(file_exists(path));
}


/* Another migration's mapping reads the old table in a subquery: refused
 * until that migration is redefined without it. */
static void test_contract_table_named_by_other_mapping(void **state)
{
    test_fixture *f = *state;
    dw_migration *a = items_complete(f);
    create_tags(f->t.db);
    static const dw_column_map LOOKUP[] = {
        {"colour", "coalesce(color, (SELECT min(name) FROM \"items\"))"}};
    static const dw_column_map PLAIN[] = {{"colour", "color"}};
    side_spec old_s = {"tags", NULL, 0}, new_s = {"tags_v2", NULL, 0};
    assert_int_equal(pair_open(&f->h2, f->t.db, "tag_lookup", TAG_KEY, old_s,
                               new_s, LOOKUP, 1, 0),
                     DW_OK);
    char path[400];
    in_dir(f, "a.bak", path, sizeof path);
    assert_dw(a, dw_contract(a, path, NULL), DW_EGATE);
    assert_msg_has(a, "mapping of migration \"tag_lookup\"");
    assert_msg_has(a, "\"items\"");
    assert_int_equal(schema_count(f->t.db, "items"), 4);
    assert_false(file_exists(path));

    dw_close(f->h2);
    f->h2 = NULL;
    assert_int_equal(pair_open(&f->h2, f->t.db, "tag_lookup", TAG_KEY, old_s,
                               new_s, PLAIN, 1, DW_OPEN_REDEFINE),
                     DW_OK);
    assert_dw_ok(a, dw_contract(a, path, NULL));
    assert_int_equal(schema_count(f->t.db, "items"), 0);
}


/* One-table migrations sharing one old column of two: kept for the one
 * with only the shared column, the other column would stay for good, and
 * the restore would meet it. Refused, naming the one to contract first;
 * that one keeps its column for this one, whose contract drops both. */
static void test_contract_partial_column_overlap(void **state)
{
    test_fixture *f = *state;
    dw_migration *a = tickets_complete(f);
    fixture_exec(f, "ALTER TABLE tickets ADD COLUMN urgency INTEGER");
    static const char *const U_OLD[] = {"prio"};
    static const char *const U_NEW[] = {"urgency"};
    static const dw_column_map U_UP[] = {{"urgency", "prio"}};
    assert_int_equal(pair_open(&f->h2, f->t.db, "urgency", KEY,
                               (side_spec){"tickets", U_OLD, 1},
                               (side_spec){"tickets", U_NEW, 1}, U_UP, 1, 0),
                     DW_OK);
    dw_migration *b = f->h2;
    reach_complete(b);
    char path_a[400], path_b[400], before[1024], buf[1024];
    in_dir(f, "a.bak", path_a, sizeof path_a);
    in_dir(f, "b.bak", path_b, sizeof path_b);
    fixture_text(f, TICKETS_SNAPSHOT, before, sizeof before);
    assert_dw(a, dw_contract(a, path_a, NULL), DW_EGATE);
    assert_msg_has(a, "\"urgency\"");
    assert_msg_has(a, "prio");
    assert_msg_has(a, "first");
    assert_false(file_exists(path_a));
    assert_string_equal(fixture_text(f, TICKETS_SNAPSHOT, buf, sizeof buf),
                        before);

    assert_dw_ok(b, dw_contract(b, path_b, NULL)); /* kept for a */
    assert_dw_ok(a, dw_contract(a, path_a, NULL));
    assert_int_equal(old_ticket_columns(f->t.db),
                     0);
    /* Either restores first: here the one whose column the other's
     * restore then finds in place, as backed up, and keeps. */
    assert_dw_ok(b, dw_restore(b, path_b, NULL));
    /* Written since, the column is not as backed up: refused, and the
     * write is not undone. */
    fixture_exec(f, "UPDATE tickets SET prio = 9 WHERE id = 1");
    assert_dw(a, dw_restore(a, path_a, NULL), DW_ERROR);
    assert_msg_has(a, "do not match the backup");
    assert_int_equal(fixture_int(f, "SELECT prio FROM tickets WHERE "
                                    "id = 1"),
                     9);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM "
                                    "pragma_table_xinfo('tickets') WHERE "
                                    "name = 'status'"),
                     0);
    fixture_exec(f, "UPDATE tickets SET prio = 1 WHERE id = 1");
    assert_dw_ok(a, dw_restore(a, path_a, NULL));
    assert_string_equal(fixture_text(f, TICKETS_SNAPSHOT, buf, sizeof buf),
                        before);
    assert_int_equal(old_ticket_columns(f->t.db),
                     2);
}

/* Another stored migration whose spec is damaged: the contract refuses
 * with DW_ECORRUPT naming it (damaged stored state, as dw_sqlite_open_stored()
 * says of it), rather than crash or fail as a database error. */
static void test_contract_other_spec_damaged(void **state)
{
    test_fixture *f = *state;
    dw_migration *a = items_complete(f);
    fixture_exec(f, "CREATE TABLE items_v3(id INTEGER PRIMARY KEY, "
                    "label TEXT, amount)");
    f->h2 = open_items_copy(f->t.db);
    fixture_exec(f, "UPDATE dw_migrations SET spec = '{\"old\": ' WHERE "
                    "name = 'items_copy'");
    char path[400];
    in_dir(f, "a.bak", path, sizeof path);
    assert_dw(a, dw_contract(a, path, NULL), DW_ECORRUPT);
    assert_msg_has(a, "spec of migration \"items_copy\" is damaged");
    assert_msg_has(a, "nothing was dropped");
    assert_false(file_exists(path));
    assert_int_equal(schema_count(f->t.db, "items"), 4);
    assert_int_equal(stage_of(a), DW_STAGE_COMPLETE);
}


/* Another connection defines a migration of the old table between the
 * contract's first check and its drop: the check under the write lock
 * sees it, and nothing is dropped. */
static void test_contract_race_other_defined(void **state)
{
    test_fixture *f = *state;
    race r;
    race_setup(f, &r, RACE_DEFINE);
    fixture_exec(f, "CREATE TABLE items_v3(id INTEGER PRIMARY KEY, "
                    "label TEXT, amount)");
    char path[400];
    in_dir(f, "items.bak", path, sizeof path);
    assert_dw(f->h, contract_with_race(f, &r, path), DW_EGATE);
    assert_msg_has(f->h, "\"items_copy\"");
    assert_msg_has(f->h, "nothing was dropped");
    assert_int_equal(schema_count(f->t.db, "items"), 4);
    assert_int_equal(stage_of(f->h), DW_STAGE_COMPLETE);
    hist hs;
    get_history(&hs, f->h);
    assert_int_equal(hs.ncontract, 0);
}


/* Three migrations of one old table: refused while the third is below
 * COMPLETE, naming it; then each contract but the last keeps the table,
 * and the last drops it. */
static void test_contract_three_of_one_table(void **state)
{
    test_fixture *f = *state;
    dw_migration *a = items_complete(f);
    fixture_exec(f, "CREATE TABLE items_v3(id INTEGER PRIMARY KEY, "
                    "label TEXT, amount);"
                    "CREATE TABLE items_v4(id INTEGER PRIMARY KEY, "
                    "label TEXT, amount)");
    dw_migration *b = f->h2 = open_items_copy(f->t.db);
    dw_migration *c = open_items_copy_as(f->t.db, "items_copy2", "items_v4");
    reach_complete(b);
    assert_dw_ok(c, dw_stage_set(c, DW_STAGE_DUAL_WRITE, NULL, 0));
    char pa[400], pb[400], pc[400];
    in_dir(f, "a.bak", pa, sizeof pa);
    in_dir(f, "b.bak", pb, sizeof pb);
    in_dir(f, "c.bak", pc, sizeof pc);
    assert_dw(a, dw_contract(a, pa, NULL), DW_EGATE);
    assert_msg_has(a, "\"items_copy2\"");
    assert_msg_has(a, "DUAL_WRITE");
    assert_dw(b, dw_contract(b, pb, NULL), DW_EGATE);
    assert_msg_has(b, "\"items_copy2\"");
    assert_false(file_exists(pa));
    assert_false(file_exists(pb));

    assert_dw_ok(c, dw_stage_set(c, DW_STAGE_OFF, NULL, 0));
    reach_complete(c);
    assert_dw_ok(a, dw_contract(a, pa, NULL));
    assert_dw_ok(b, dw_contract(b, pb, NULL));
    assert_int_equal(schema_count(f->t.db, "items"), 4);
    assert_dw_ok(c, dw_contract(c, pc, NULL));
    assert_int_equal(schema_count(f->t.db, "items"), 0);
    dw_close(c);
}

/* Another migration's setup SQL, and its cohort while not contracted, name
 * the old table: each refuses the contract, named by what holds the name;
 * a contracted migration's cohort no longer does. */
static void test_contract_table_named_by_other_setup_and_cohort(void **state)
{
    test_fixture *f = *state;
    dw_migration *a = items_complete(f);
    create_tags(f->t.db);
    char path[400];
    in_dir(f, "a.bak", path, sizeof path);

    dw_options o;
    tags_options(&o, "tag_setup");
    o.setup_sql = "INSERT INTO tags_v2(tag) SELECT name FROM \"items\"";
    char *err = NULL;
    int rc = dw_sqlite_open(&f->h2, f->t.db, &o, &err);
    if (rc != DW_OK)
        print_error("dw_open: %s\n", err ? err : "(no message)");
    dw_free(err);
    err = NULL;
    assert_int_equal(rc, DW_OK);
    assert_dw(a, dw_contract(a, path, NULL), DW_EGATE);
    assert_msg_has(a, "setup SQL of migration \"tag_setup\"");
    assert_msg_has(a, "\"items\"");
    assert_false(file_exists(path));
    dw_close(f->h2);
    f->h2 = NULL;
    assert_int_equal(dw_sqlite_remove(f->t.db, "tag_setup", 0, NULL, &err), DW_OK);

    /* dw_routing_set() takes no subquery in a cohort; one stored before
     * that rule, or by hand, is still looked at. */
    f->h2 = open_tags(f->t.db);
    exec_ok(f->t.db, "UPDATE dw_migrations SET canary_cohort = 'color IN "
                     "(SELECT name FROM items)' WHERE name = 'tag_colour'");
    assert_dw(a, dw_contract(a, path, NULL), DW_EGATE);
    assert_msg_has(a, "cohort of migration \"tag_colour\"");
    assert_int_equal(schema_count(f->t.db, "items"), 4);
    assert_false(file_exists(path));

    /* Contracted, its cohort is no longer used. */
    exec_ok(f->t.db, "UPDATE dw_migrations SET contracted = 1 WHERE name = "
                     "'tag_colour'");
    assert_dw_ok(a, dw_contract(a, path, NULL));
    assert_int_equal(schema_count(f->t.db, "items"), 0);
}

/* Another migration of the old table at COMPLETE, but with a key
 * overridden below it: it still uses the table, and the contract says so;
 * with the override cleared, the table is kept for it. */
static void test_contract_other_key_routed_below(void **state)
{
    test_fixture *f = *state;
    dw_migration *a = items_complete(f);
    exec_ok(f->t.db, "CREATE TABLE items_v3(id INTEGER PRIMARY KEY, "
                     "label TEXT, amount)");
    /* Both ways, so a key can be moved back below COMPLETE. */
    static const char *const OLD[] = {"name", "qty"};
    static const char *const NEW[] = {"label", "amount"};
    static const dw_column_map TO_V3[] = {{"label", "name"},
                                          {"amount", "qty"}};
    static const dw_column_map FROM_V3[] = {{"name", "label"},
                                            {"qty", "amount"}};
    dw_options o;
    pair_options(&o, "items_copy", KEY, (side_spec){"items", OLD, 2},
                 (side_spec){"items_v3", NEW, 2}, TO_V3, 2);
    o.down = FROM_V3;
    o.ndown = 2;
    char *err = NULL;
    assert_int_equal(dw_sqlite_open(&f->h2, f->t.db, &o, &err), DW_OK);
    dw_migration *b = f->h2;
    reach_complete(b);
    dw_value k = dw_int(2);
    assert_dw_ok(b, dw_override_set(b, &k, 1, 1, DW_STAGE_LIVE, "hold"));
    char path[400];
    in_dir(f, "a.bak", path, sizeof path);
    assert_dw(a, dw_contract(a, path, NULL), DW_EGATE);
    assert_msg_has(a, "\"items_copy\"");
    assert_msg_has(a, "with keys routed below it");
    assert_false(file_exists(path));
    int cleared = 0;
    assert_dw_ok(b, dw_override_clear(&cleared, b, &k, 1, 1, "release"));
    assert_int_equal(cleared, 1);
    assert_dw_ok(a, dw_contract(a, path, NULL));
    assert_int_equal(schema_count(f->t.db, "items"), 4); /* kept for b */
}

/* A backup whose record was tampered with: refused before anything is
 * touched, each with what is wrong. */
static void test_restore_damaged_record(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = items_complete(f);
    char path[400], copy[400];
    in_dir(f, "items.bak", path, sizeof path);
    in_dir(f, "tampered.bak", copy, sizeof copy);
    assert_dw_ok(h, dw_contract(h, path, NULL));
    static const struct {
        const char *sql;
        int code;
        const char *says;
    } cases[] = {
        {"UPDATE dw_backup_meta SET value = '2' WHERE key = 'format'",
         DW_ERROR, "not a libdualwrite backup this version can read"},
        {"DELETE FROM dw_backup_meta WHERE key = 'sha256'", DW_ERROR,
         "not a libdualwrite backup this version can read"},
        {"DELETE FROM dw_backup_meta WHERE key = 'spec_digest'", DW_EMISUSE,
         "was taken under spec (none)"},
        {"DELETE FROM dw_backup_meta WHERE key = 'table_sql'", DW_ERROR,
         "its metadata is incomplete"},
        {"UPDATE dw_backup_meta SET value = '[\"nope\"]' WHERE key = "
         "'columns'",
         DW_ERROR, "reading the rows to check them"},
        {"UPDATE dw_backup_meta SET value = 'DROP TABLE items' WHERE key = "
         "'table_sql'",
         DW_ERROR, "not a definition"},
        {"UPDATE dw_backup_meta SET value = '7' WHERE key = 'rows'", DW_ERROR,
         "its record says 7 rows"},
        /* the right digest with more after it is no digest */
        {"UPDATE dw_backup_meta SET value = value || 'ffff' WHERE key = "
         "'sha256'",
         DW_ERROR, "does not check out"},
        /* whose backup it is comes first, before any damage further on */
        {"UPDATE dw_backup_meta SET value = 'someone_else' WHERE key = "
         "'migration'; DELETE FROM dw_backup_meta WHERE key = 'table_sql'",
         DW_EMISUSE, "belongs to migration \"someone_else\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        assert_true(test_copy_file(path, copy));
        sqlite3 *b = open_plain(copy, 1);
        exec_ok(b, cases[i].sql);
        assert_int_equal(sqlite3_close(b), SQLITE_OK);
        assert_dw(h, dw_restore(h, copy, NULL), cases[i].code);
        assert_msg_has(h, cases[i].says);
        assert_still_contracted(f, h);
        remove(copy);
    }
    assert_dw_ok(h, dw_restore(h, path, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_gate_states, fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(test_contract_refuses_cascading_key, fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_expression_default, fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(test_gate_forced, fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(test_gate_staleness, fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(test_contract_failed_commit_keeps_backup,
                                        fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(test_contract_refusals, fixture_setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_contract_two_tables, fixture_setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_contract_backup_does_not_check_out, fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(test_contract_drop_refused_foreign_key,
                                        fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_contract_drop_refused_deferred_foreign_key, fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(test_contract_one_table, fixture_setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_contract_one_table_drop_refused,
                                        fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_table_reopen_and_restore,
                                        fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_two_tables, fixture_setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_restore_refusals, fixture_setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_reopen_default_columns_and_restore, fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_reopen_stored_old_side_unreadable, fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_keeps_rowids, fixture_setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_contract_race_contracted_elsewhere, fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_contract_table_named_by_other_setup_and_cohort, fixture_setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_contract_other_key_routed_below,
                                        fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_damaged_record,
                                        fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(test_contract_race_same_path,
                                        fixture_setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_contract_race_left_complete,
                                        fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(test_contract_race_old_row_changed,
                                        fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_contract_kept_backup_other_definition, fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_restore_needs_the_contracted_spec, fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_column_exists_again,
                                        fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(test_contract_old_table_shared, fixture_setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_contract_shared_new_side_and_columns, fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_contract_table_named_by_other_mapping, fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_contract_partial_column_overlap, fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_contract_other_spec_damaged, fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_contract_race_other_defined, fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_contract_three_of_one_table, fixture_setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
