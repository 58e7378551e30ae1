/* Tests of key routing: per-key overrides, the percentage and cohort canary,
 * promote on write, and how writes, reads, backfill, repair, the gates and
 * the contract follow each key's effective stage (dualwrite.h, "Key
 * routing"). */
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- fixture ------------------------------------------------------------ */

/* The old model: items(org, name, qty). The new model renames name and qty
 * and adds `note`, which the old model cannot hold (the up mapping fills
 * 'none'). A CHECK on the new table lets a test make a sync into the new
 * model fail on purpose (a title of 'reject'). */
static void create_items(sqlite3 *db)
{
    exec_ok(db,
            "CREATE TABLE items(id INTEGER PRIMARY KEY, org TEXT NOT NULL,"
            " name TEXT NOT NULL, qty INTEGER);"
            "CREATE TABLE items_v2(id INTEGER PRIMARY KEY, org TEXT NOT NULL,"
            " title TEXT NOT NULL CHECK (title <> 'reject'), quantity INTEGER,"
            " note TEXT NOT NULL DEFAULT 'none');");
}

/* Old rows 1..n: org-7 for multiples of 3, org-1 otherwise. */
static void seed_old(sqlite3 *db, int n)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c "
             "WHERE i < %d) INSERT INTO items(id, org, name, qty) "
             "SELECT i, CASE WHEN i %% 3 = 0 THEN 'org-7' ELSE 'org-1' END, "
             "'item ' || i, i FROM c",
             n);
    exec_ok(db, sql);
}

static const char *const KEY[] = {"id"};
static const char *const OLD_COLS[] = {"org", "name", "qty"};
static const char *const NEW_COLS[] = {"org", "title", "quantity", "note"};

static int open_items_as(dw_migration **out, sqlite3 *db, const char *name,
                         int with_down, unsigned flags, char **err)
{
    static const dw_column_map up[] = {{"org", "org"},
                                       {"title", "name"},
                                       {"quantity", "qty"},
                                       {"note", "'none'"}};
    static const dw_column_map down[] = {
        {"org", "org"}, {"name", "title"}, {"qty", "quantity"}};
    dw_options o = options_for(name, TEST_SIDE("items", KEY, OLD_COLS),
                               TEST_SIDE("items_v2", KEY, NEW_COLS));
    o.up = up;
    o.nup = 4;
    if (with_down) {
        o.down = down;
        o.ndown = 3;
    }
    o.reason = "routing tests";
    o.flags = flags;
    return dw_sqlite_open(out, db, &o, err);
}

static int open_items(dw_migration **out, sqlite3 *db, char **err)
{
    return open_items_as(out, db, "items_routing", 1, 0, err);
}

static dw_migration *open_items_ok(sqlite3 *db)
{
    dw_migration *h = NULL;
    char *err = NULL;
    int rc = open_items(&h, db, &err);
    return opened_ok("dw_open", rc, h, err);
}

/* The usual start: both tables, n old rows, the migration at `stage`. */
static dw_migration *start(test_fixture *f, int n, int stage)
{
    create_items(f->t.db);
    if (n > 0)
        seed_old(f->t.db, n);
    f->h = open_items_ok(f->t.db);
    if (stage != DW_STAGE_OFF)
        assert_dw_ok(f->h, dw_stage_set(f->h, stage, "test setup",
                                        DW_STAGE_FORCE));
    return f->h;
}

static void assert_msg_has(const dw_migration *h, const char *needle)
{
    const char *m = dw_errmsg(h);
    if (!m || !strstr(m, needle))
        fail_msg("message \"%s\" does not contain \"%s\"", m ? m : "(null)",
                 needle);
}

/* ---- small queries ------------------------------------------------------ */

static int64_t count_where(sqlite3 *db, const char *table, int64_t id)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s WHERE id = %lld",
             table, (long long)id);
    return query_int(db, sql);
}

static int old_has(sqlite3 *db, int64_t id)
{
    return count_where(db, "items", id) == 1;
}

static int new_has(sqlite3 *db, int64_t id)
{
    return count_where(db, "items_v2", id) == 1;
}

/* One column of one row, as text ("" when absent or NULL). */
static const char *cell(sqlite3 *db, const char *table, const char *col,
                        int64_t id, char *buf, size_t size)
{
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT %s FROM %s WHERE id = %lld", col, table,
             (long long)id);
    return query_text(db, sql, buf, size);
}

#define OLD_CELL(db, col, id)                                                  \
    cell((db), "items", (col), (id), (char[128]){0}, 128)
#define NEW_CELL(db, col, id)                                                  \
    cell((db), "items_v2", (col), (id), (char[128]){0}, 128)

static dw_metrics metrics_of(dw_migration *h)
{
    dw_metrics m;
    memset(&m, 0, sizeof m);
    assert_dw_ok(h, dw_metrics_get(&m, h));
    return m;
}

/* ---- routing helpers ---------------------------------------------------- */

static int stage_of_key(dw_migration *h, int64_t id, int *route)
{
    dw_value k = dw_int(id);
    int stage = -99, r = -99;
    assert_dw_ok(h, dw_key_stage(&stage, &r, h, &k, 1));
    if (route)
        *route = r;
    return stage;
}

static void assert_key_stage(dw_migration *h, int64_t id, int stage,
                             int route)
{
    int r;
    int s = stage_of_key(h, id, &r);
    if (s != stage || r != route)
        fail_msg("key %lld: stage %d route %d, expected stage %d route %d",
                 (long long)id, s, r, stage, route);
}

static void override1(dw_migration *h, int64_t id, int stage)
{
    dw_value k = dw_int(id);
    assert_dw_ok(h, dw_override_set(h, &k, 1, 1, stage, "test"));
}

static int clear1(dw_migration *h, int64_t id)
{
    dw_value k = dw_int(id);
    int cleared = -1;
    assert_dw_ok(h, dw_override_clear(&cleared, h, &k, 1, 1, "test"));
    return cleared;
}

static int set_canary(dw_migration *h, double percent, const char *cohort,
                      int stage, int promote, unsigned flags,
                      const char *reason)
{
    dw_routing r = DW_ROUTING_INIT;
    r.canary_percent = percent;
    r.canary_cohort = cohort;
    r.canary_stage = stage;
    r.promote_stage = promote;
    return dw_routing_set(h, &r, reason, flags);
}

/* The stored cohort as text ("" when none), copied. */
static const char *stored_cohort(dw_migration *h, char *buf, size_t size)
{
    dw_routing r;
    memset(&r, 0x5a, sizeof r);
    assert_dw_ok(h, dw_routing_get(&r, h));
    snprintf(buf, size, "%s", r.canary_cohort ? r.canary_cohort : "");
    return buf;
}

/* ---- overrides listing -------------------------------------------------- */

typedef struct ov_entry {
    char key[64];
    int stage, promoted;
    double time;
} ov_entry;

typedef struct ov_list {
    ov_entry e[16];
    int n;
    int stop_after; /* 0: never */
} ov_list;

static int collect_override(const dw_override_entry *entry, void *payload)
{
    ov_list *l = payload;
    if (l->n < 16) {
        ov_entry *e = &l->e[l->n];
        snprintf(e->key, sizeof e->key, "%s", entry->key ? entry->key : "");
        e->stage = entry->stage;
        e->promoted = entry->promoted;
        e->time = entry->time;
    }
    l->n++;
    return l->stop_after > 0 && l->n >= l->stop_after;
}

static void list_overrides(dw_migration *h, ov_list *l)
{
    memset(l, 0, sizeof *l);
    assert_dw_ok(h, dw_override_list(h, collect_override, l));
}

static const ov_entry *find_override(const ov_list *l, const char *key)
{
    for (int i = 0; i < l->n && i < 16; i++)
        if (strcmp(l->e[i].key, key) == 0)
            return &l->e[i];
    return NULL;
}

/* ---- history ------------------------------------------------------------ */

typedef struct last_event {
    int n;
    char event[32];
    int forced;
    char reason[128];
    char detail[512];
} last_event;

static int collect_last(const dw_history_entry *e, void *payload)
{
    last_event *l = payload;
    l->n++;
    snprintf(l->event, sizeof l->event, "%s", e->event ? e->event : "");
    l->forced = e->forced;
    snprintf(l->reason, sizeof l->reason, "%s", e->reason ? e->reason : "");
    snprintf(l->detail, sizeof l->detail, "%s", e->detail ? e->detail : "");
    return 0;
}

static void last_history(dw_migration *h, last_event *l)
{
    memset(l, 0, sizeof *l);
    assert_dw_ok(h, dw_history(h, collect_last, l));
}

/* ---- application callbacks ---------------------------------------------- */

/* What a write puts in a row, and a log of the callbacks that ran: O/N for
 * writes to old/new, o/n for reads. */
typedef struct rec {
    char log[64];
    const char *org;  /* NULL: 'org-1' */
    const char *name; /* old name, new title */
    int qty;
    const char *note; /* new side only; NULL: 'none' */
    int fail_old;     /* the old write runs, then reports a failure */
} rec;

static rec make_rec(const char *org, const char *name, int qty)
{
    rec r;
    memset(&r, 0, sizeof r);
    r.org = org;
    r.name = name;
    r.qty = qty;
    return r;
}

static void log_char(rec *r, char c)
{
    size_t n = strlen(r->log);
    if (n + 1 < sizeof r->log) {
        r->log[n] = c;
        r->log[n + 1] = '\0';
    }
}

static int upsert(sqlite3 *db, const char *sql, int64_t id, const rec *r,
                  int with_note)
{
    const char *org = r->org ? r->org : "org-1";
    const char *name = r->name ? r->name : "unnamed";
    if (!with_note)
        return callback_exec(db, sql, "itti", id, org, name, (int64_t)r->qty);
    return callback_exec(db, sql, "ittit", id, org, name, (int64_t)r->qty,
                         r->note ? r->note : "none");
}

static int put_old(void *db, const dw_value *key, int nkey, void *payload)
{
    rec *r = payload;
    assert_int_equal(nkey, 1);
    log_char(r, 'O');
    int rc = upsert(db,
                    "INSERT INTO items(id, org, name, qty) VALUES(?1, ?2, ?3, "
                    "?4) ON CONFLICT(id) DO UPDATE SET org = excluded.org, "
                    "name = excluded.name, qty = excluded.qty",
                    key[0].i, r, 0);
    return rc ? rc : r->fail_old ? DW_ERROR : DW_OK;
}

static int put_new(void *db, const dw_value *key, int nkey, void *payload)
{
    rec *r = payload;
    assert_int_equal(nkey, 1);
    log_char(r, 'N');
    return upsert(db,
                  "INSERT INTO items_v2(id, org, title, quantity, note) "
                  "VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(id) DO UPDATE SET "
                  "org = excluded.org, title = excluded.title, quantity = "
                  "excluded.quantity, note = excluded.note",
                  key[0].i, r, 1);
}

static int get_old(dw_row *out, void *db, const dw_value *key, int nkey,
                   void *payload)
{
    (void)nkey;
    log_char(payload, 'o');
    return read_row_by_id(out, db,
                          "SELECT id, org, name AS title, qty AS quantity, "
                          "'none' AS note FROM items WHERE id = ?1",
                          key[0].i);
}

static int get_new(dw_row *out, void *db, const dw_value *key, int nkey,
                   void *payload)
{
    (void)nkey;
    log_char(payload, 'n');
    return read_row_by_id(out, db,
                          "SELECT id, org, title, quantity, note FROM items_v2 "
                          "WHERE id = ?1",
                          key[0].i);
}

static int write_key(dw_migration *h, int64_t id, rec *r)
{
    dw_value k = dw_int(id);
    return dw_write(h, &k, 1, put_old, put_new, r);
}

/* Reads through the spec; returns the result code and whether the row came
 * back in the new model's shape (it has "title") or the old one's
 * ("name"). */
static int read_shape(dw_migration *h, int64_t id, char *shape, size_t size)
{
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    dw_value k = dw_int(id);
    int rc = dw_read(row, h, &k, 1, NULL, NULL, NULL);
    const dw_value *title = dw_row_get(row, "title");
    const dw_value *name = dw_row_get(row, "name");
    const dw_value *v = title ? title : name;
    snprintf(shape, size, "%s:%s", title ? "new" : name ? "old" : "none",
             v && v->type == DW_TYPE_TEXT ? (const char *)v->p : "");
    dw_row_free(row);
    return rc;
}

/* ---- 1. resolution order and overrides ---------------------------------- */

/* Override beats canary beats the migration's stage; clearing an override
 * falls back to whichever of the two applies. */
static void test_resolution_order(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 6, DW_STAGE_OFF);

    /* No routing: every key follows the migration. */
    assert_key_stage(h, 3, DW_STAGE_OFF, DW_ROUTE_MIGRATION);
    assert_key_stage(h, 1, DW_STAGE_OFF, DW_ROUTE_MIGRATION);

    /* Keys 3 and 6 (org-7) are in the cohort canary at SHADOW. */
    assert_dw_ok(h, set_canary(h, 0, "org = 'org-7'", DW_STAGE_SHADOW,
                               DW_PROMOTE_NONE, 0, NULL));
    assert_key_stage(h, 3, DW_STAGE_SHADOW, DW_ROUTE_CANARY);
    assert_key_stage(h, 6, DW_STAGE_SHADOW, DW_ROUTE_CANARY);
    assert_key_stage(h, 1, DW_STAGE_OFF, DW_ROUTE_MIGRATION);

    /* Overrides win over both. */
    override1(h, 3, DW_STAGE_DUAL_WRITE);
    override1(h, 1, DW_STAGE_DUAL_WRITE);
    assert_key_stage(h, 3, DW_STAGE_DUAL_WRITE, DW_ROUTE_OVERRIDE);
    assert_key_stage(h, 1, DW_STAGE_DUAL_WRITE, DW_ROUTE_OVERRIDE);
    assert_key_stage(h, 6, DW_STAGE_SHADOW, DW_ROUTE_CANARY);

    /* The migration's stage moving does not move overridden keys. */
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, NULL, 0));
    assert_key_stage(h, 2, DW_STAGE_DUAL_WRITE, DW_ROUTE_MIGRATION);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_OFF, NULL, 0));
    assert_key_stage(h, 1, DW_STAGE_DUAL_WRITE, DW_ROUTE_OVERRIDE);

    /* Clearing falls back: key 3 to the canary, key 1 to the migration. */
    assert_int_equal(clear1(h, 3), 1);
    assert_key_stage(h, 3, DW_STAGE_SHADOW, DW_ROUTE_CANARY);
    assert_int_equal(clear1(h, 1), 1);
    assert_key_stage(h, 1, DW_STAGE_OFF, DW_ROUTE_MIGRATION);
    /* Clearing a key without an override is a no-op that counts nothing. */
    assert_int_equal(clear1(h, 1), 0);
    assert_key_stage(h, 1, DW_STAGE_OFF, DW_ROUTE_MIGRATION);

    /* Key 6 (in the canary, never synced into new) is held at OFF and
     * written there; clearing it enters the canary's SHADOW, which writes
     * new: the new side gets the row. */
    override1(h, 6, DW_STAGE_OFF);
    rec r = make_rec("org-7", "held", 6);
    assert_dw_ok(h, write_key(h, 6, &r));
    assert_string_equal(r.log, "O");
    assert_false(new_has(f->t.db, 6));
    assert_int_equal(clear1(h, 6), 1);
    assert_key_stage(h, 6, DW_STAGE_SHADOW, DW_ROUTE_CANARY);
    assert_string_equal(NEW_CELL(f->t.db, "title", 6), "held");

    /* A NULL route pointer is allowed. */
    dw_value k = dw_int(6);
    int s = -1;
    assert_dw_ok(h, dw_key_stage(&s, NULL, h, &k, 1));
    assert_int_equal(s, DW_STAGE_SHADOW);
}

/* The history records each override call; overriding a key with another
 * stage replaces its override. */
static void test_override_history_and_replace(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 4, DW_STAGE_DUAL_WRITE);
    dw_value ks[2] = {dw_int(1), dw_int(2)};
    assert_dw_ok(h, dw_override_set(h, ks, 1, 2, DW_STAGE_LIVE, "two keys"));
    last_event l;
    last_history(h, &l);
    assert_string_equal(l.event, "override");
    assert_string_equal(l.detail, "2 keys to LIVE");
    assert_string_equal(l.reason, "two keys");

    override1(h, 1, DW_STAGE_SHADOW);
    assert_key_stage(h, 1, DW_STAGE_SHADOW, DW_ROUTE_OVERRIDE);
    ov_list ol;
    list_overrides(h, &ol);
    assert_int_equal(ol.n, 2);
    /* In key text order, each with its stage and a time. */
    assert_string_equal(ol.e[0].key, "[1]");
    assert_int_equal(ol.e[0].stage, DW_STAGE_SHADOW);
    assert_int_equal(ol.e[0].promoted, 0);
    assert_string_equal(ol.e[1].key, "[2]");
    assert_int_equal(ol.e[1].stage, DW_STAGE_LIVE);
    assert_true(ol.e[0].time > 1.6e9);

    /* Early stop. */
    memset(&ol, 0, sizeof ol);
    ol.stop_after = 1;
    assert_dw_ok(h, dw_override_list(h, collect_override, &ol));
    assert_int_equal(ol.n, 1);

    last_event before;
    last_history(h, &before);
    int cleared = -1;
    assert_dw_ok(h, dw_override_clear(&cleared, h, ks, 1, 2, "done"));
    assert_int_equal(cleared, 2);
    last_history(h, &l);
    assert_int_equal(l.n, before.n + 1);
    assert_string_equal(l.event, "override");
    assert_string_equal(l.reason, "done");
    list_overrides(h, &ol);
    assert_int_equal(ol.n, 0);
}

/* All keys of one call or none: a key whose sync fails (the new model's
 * CHECK refuses its row) rolls back the keys before it too. */
static void test_override_set_is_atomic(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 3, DW_STAGE_OFF);
    fixture_exec(f, "UPDATE items SET name = 'reject' WHERE id = 2");
    last_event before, after;
    last_history(h, &before);

    dw_value ks[2] = {dw_int(1), dw_int(2)};
    assert_dw(h, dw_override_set(h, ks, 1, 2, DW_STAGE_LIVE, NULL),
              DW_ECONSTRAINT);
    assert_msg_has(h, "[2]");
    assert_false(new_has(f->t.db, 1));
    assert_false(new_has(f->t.db, 2));
    ov_list ol;
    list_overrides(h, &ol);
    assert_int_equal(ol.n, 0);
    assert_key_stage(h, 1, DW_STAGE_OFF, DW_ROUTE_MIGRATION);
    last_history(h, &after);
    assert_int_equal(after.n, before.n);

    /* Inside the caller's transaction the call is a savepoint: rolled back
     * with it. */
    fixture_exec(f, "BEGIN");
    override1(h, 1, DW_STAGE_LIVE);
    assert_true(new_has(f->t.db, 1));
    fixture_exec(f, "ROLLBACK");
    assert_false(new_has(f->t.db, 1));
    assert_key_stage(h, 1, DW_STAGE_OFF, DW_ROUTE_MIGRATION);
    list_overrides(h, &ol);
    assert_int_equal(ol.n, 0);
}

/* A move that needs a sync in a direction the spec has no mapping for is
 * refused, and the key stays where it was. */
static void test_override_needs_mapping(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    seed_old(f->t.db, 3);
    dw_migration *h = NULL;
    char *err = NULL;
    assert_int_equal(open_items_as(&h, f->t.db, "items_up_only", 0, 0, &err),
                     DW_OK);
    f->h = h;
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, NULL, 0));
    /* Ahead to LIVE syncs new from old: the up mapping is enough. */
    override1(h, 1, DW_STAGE_LIVE);
    assert_true(new_has(f->t.db, 1));
    /* Back to OFF, or cleared back to DUAL_WRITE, would copy new into old:
     * no down mapping. */
    dw_value k = dw_int(1);
    assert_dw(h, dw_override_set(h, &k, 1, 1, DW_STAGE_OFF, NULL),
              DW_EMISUSE);
    assert_msg_has(h, "down");
    assert_dw(h, dw_override_clear(NULL, h, &k, 1, 1, NULL), DW_EMISUSE);
    assert_key_stage(h, 1, DW_STAGE_LIVE, DW_ROUTE_OVERRIDE);
    /* LIVE to RAMPDOWN syncs old too (RAMPDOWN writes it): refused. */
    assert_dw(h, dw_override_set(h, &k, 1, 1, DW_STAGE_RAMPDOWN, NULL),
              DW_EMISUSE);
    /* A move that needs no sync is fine: COMPLETE does not write old. */
    override1(h, 1, DW_STAGE_COMPLETE);
    assert_key_stage(h, 1, DW_STAGE_COMPLETE, DW_ROUTE_OVERRIDE);
}

/* Deletes of the key on each side, for moves that have no row to carry. */
static int delete_by_key(sqlite3 *db, const char *sql, const dw_value *key)
{
    return callback_exec(db, sql, "v", key);
}

static int del_old(void *db, const dw_value *key, int nkey, void *payload)
{
    (void)nkey;
    (void)payload;
    return delete_by_key(db, "DELETE FROM items WHERE id = ?1", key);
}

static int del_new(void *db, const dw_value *key, int nkey, void *payload)
{
    (void)nkey;
    (void)payload;
    return delete_by_key(db, "DELETE FROM items_v2 WHERE id = ?1", key);
}

static int delete_key(dw_migration *h, int64_t id)
{
    dw_value k = dw_int(id);
    return dw_write(h, &k, 1, del_old, del_new, NULL);
}

/* Rows 1..6 backfilled and verified at DUAL_WRITE, with no down mapping. */
static dw_migration *start_up_only(test_fixture *f)
{
    create_items(f->t.db);
    seed_old(f->t.db, 6);
    char *err = NULL;
    int rc = open_items_as(&f->h, f->t.db, "items_up_only", 0, 0, &err);
    opened_ok("dw_open", rc, f->h, err);
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_DUAL_WRITE, NULL, 0));
    backfill_and_verify(f->h);
    return f->h;
}

/* A cohort at LIVE, promoting on write to `promote`: deleting key 6 moves
 * it to `stage` by `route`, a move that would copy new into old -- but the
 * row is gone: nothing to carry, so no down mapping is needed. Writing key
 * 3 keeps a row to carry: refused, rolled back. */
static void delete_moves_without_mapping(test_fixture *f, int promote,
                                         int stage, int route)
{
    dw_migration *h = start_up_only(f);
    assert_dw_ok(h, set_canary(h, 0, "org = 'org-7'", DW_STAGE_LIVE, promote,
                               0, NULL));
    assert_key_stage(h, 6, DW_STAGE_LIVE, DW_ROUTE_CANARY);
    assert_dw_ok(h, delete_key(h, 6));
    assert_false(old_has(f->t.db, 6));
    assert_false(new_has(f->t.db, 6));
    assert_key_stage(h, 6, stage, route);

    rec r = make_rec("org-1", "moved out", 33);
    assert_dw(h, write_key(h, 3, &r), DW_EMISUSE);
    assert_msg_has(h, "down mapping");
    assert_string_equal(OLD_CELL(f->t.db, "org", 3), "org-7");
    assert_key_stage(h, 3, DW_STAGE_LIVE, DW_ROUTE_CANARY);
}

/* Out of the cohort, back to the migration's DUAL_WRITE. */
static void test_cohort_delete_needs_no_mapping(void **state)
{
    delete_moves_without_mapping(*state, DW_PROMOTE_NONE,
                                 DW_STAGE_DUAL_WRITE, DW_ROUTE_MIGRATION);
}

/* Promoted on write from LIVE to RAMPDOWN. */
static void test_promote_delete_needs_no_mapping(void **state)
{
    delete_moves_without_mapping(*state, DW_STAGE_RAMPDOWN,
                                 DW_STAGE_RAMPDOWN, DW_ROUTE_OVERRIDE);
}

/* Overrides set and cleared for a key whose rows were deleted move it
 * back from LIVE without a down mapping. */
static void test_override_of_deleted_key_needs_no_mapping(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start_up_only(f);
    dw_value k1 = dw_int(1), k2 = dw_int(2);
    override1(h, 1, DW_STAGE_LIVE);
    override1(h, 2, DW_STAGE_LIVE);
    assert_dw_ok(h, delete_key(h, 1));
    assert_dw_ok(h, delete_key(h, 2));
    assert_dw_ok(h, dw_override_set(h, &k1, 1, 1, DW_STAGE_OFF, NULL));
    assert_key_stage(h, 1, DW_STAGE_OFF, DW_ROUTE_OVERRIDE);
    assert_false(old_has(f->t.db, 1));
    int cleared = 0;
    assert_dw_ok(h, dw_override_clear(&cleared, h, &k2, 1, 1, NULL));
    assert_int_equal(cleared, 1);
    assert_key_stage(h, 2, DW_STAGE_DUAL_WRITE, DW_ROUTE_MIGRATION);
    assert_false(old_has(f->t.db, 2));
}

/* A key is its values: one given as TEXT for an INTEGER key column either
 * is refused or means the same row as the INTEGER. Otherwise the override
 * syncs row 1 but is stored as ["1"], which no write of key 1 ever
 * finds. */
static void test_override_key_of_other_type(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 3, DW_STAGE_OFF);
    dw_value t1 = dw_text("1");
    int rc = dw_override_set(h, &t1, 1, 1, DW_STAGE_LIVE, NULL);
    if (rc == DW_EMISUSE) {
        assert_false(new_has(f->t.db, 1));
        return;
    }
    assert_dw_ok(h, rc);
    /* Accepted: row 1 was synced into new, so key 1 must be at LIVE. */
    assert_true(new_has(f->t.db, 1));
    int route;
    int s = stage_of_key(h, 1, &route);
    if (s != DW_STAGE_LIVE || route != DW_ROUTE_OVERRIDE)
        fail_msg("override of TEXT '1' synced row 1 into the new model, but "
                 "INTEGER key 1 is at stage %d route %d; the override is "
                 "stored under another key text",
                 s, route);
}

/* dw_routing_set inside the caller's transaction is part of it. */
static void test_routing_set_in_caller_transaction(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 6, DW_STAGE_OFF);
    fixture_exec(f, "BEGIN");
    assert_dw_ok(h, set_canary(h, 100, NULL, DW_STAGE_SHADOW,
                               DW_STAGE_LIVE, 0, NULL));
    assert_key_stage(h, 1, DW_STAGE_SHADOW, DW_ROUTE_CANARY);
    fixture_exec(f, "ROLLBACK");
    dw_routing got;
    assert_dw_ok(h, dw_routing_get(&got, h));
    assert_true(got.canary_percent == 0.0);
    assert_int_equal(got.promote_stage, DW_PROMOTE_NONE);
    assert_key_stage(h, 1, DW_STAGE_OFF, DW_ROUTE_MIGRATION);
    /* Nor does a write promote. */
    rec r = make_rec("org-1", "plain", 1);
    assert_dw_ok(h, write_key(h, 1, &r));
    assert_key_stage(h, 1, DW_STAGE_OFF, DW_ROUTE_MIGRATION);
    assert_false(new_has(f->t.db, 1));
}

/* ---- 2. changes made through another connection ------------------------- */

/* The first handle caches the stage and the routing settings; another
 * connection's commits must be seen by its next call. */
static void test_other_connection_changes_seen(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 6, DW_STAGE_OFF);
    fixture_connect_second(f);
    f->h2 = open_items_ok(f->db2);
    dw_migration *h2 = f->h2;

    rec r = make_rec("org-1", "first", 1);
    assert_dw_ok(h, write_key(h, 1, &r));
    assert_string_equal(r.log, "O");

    /* A stage change. */
    assert_dw_ok(h2, dw_stage_set(h2, DW_STAGE_DUAL_WRITE, NULL, 0));
    r = make_rec("org-1", "second", 2);
    assert_dw_ok(h, write_key(h, 1, &r));
    assert_string_equal(r.log, "ON");

    /* An override, while the first handle knows of none. */
    dw_value k1 = dw_int(1);
    assert_dw_ok(h2, dw_override_set(h2, &k1, 1, 1, DW_STAGE_OFF, NULL));
    r = make_rec("org-1", "third", 3);
    assert_dw_ok(h, write_key(h, 1, &r));
    assert_string_equal(r.log, "O");
    assert_key_stage(h, 1, DW_STAGE_OFF, DW_ROUTE_OVERRIDE);
    /* A second override, now that the first handle knows of one. */
    dw_value k2 = dw_int(2);
    assert_dw_ok(h2, dw_override_set(h2, &k2, 1, 1, DW_STAGE_LIVE, NULL));
    char shape[64];
    assert_dw_ok(h, read_shape(h, 2, shape, sizeof shape));
    assert_string_equal(shape, "new:item 2");
    r = make_rec("org-1", "two", 2);
    assert_dw_ok(h, write_key(h, 2, &r));
    assert_string_equal(r.log, "NO");

    /* A routing change: a canary of everyone at SHADOW. */
    assert_dw_ok(h2, set_canary(h2, 100, NULL, DW_STAGE_SHADOW,
                                DW_PROMOTE_NONE, 0, NULL));
    assert_key_stage(h, 4, DW_STAGE_SHADOW, DW_ROUTE_CANARY);
    dw_metrics m0 = metrics_of(h), m1;
    assert_dw_ok(h, read_shape(h, 4, shape, sizeof shape));
    m1 = metrics_of(h);
    assert_int_equal(m1.comparisons, m0.comparisons + 1);
    dw_routing got;
    assert_dw_ok(h, dw_routing_get(&got, h));
    assert_true(fabs(got.canary_percent - 100.0) < 1e-9);
    assert_int_equal(got.canary_stage, DW_STAGE_SHADOW);

    /* The canary becomes a cohort: the first handle's cohort test follows. */
    assert_dw_ok(h2, set_canary(h2, 0, "org = 'org-7'", DW_STAGE_SHADOW,
                                DW_PROMOTE_NONE, 0, NULL));
    assert_key_stage(h, 4, DW_STAGE_DUAL_WRITE, DW_ROUTE_MIGRATION);
    assert_key_stage(h, 6, DW_STAGE_SHADOW, DW_ROUTE_CANARY);
    assert_dw_ok(h2, set_canary(h2, 0, "org = 'org-1'", DW_STAGE_SHADOW,
                                DW_PROMOTE_NONE, 0, NULL));
    assert_key_stage(h, 4, DW_STAGE_SHADOW, DW_ROUTE_CANARY);
    assert_key_stage(h, 6, DW_STAGE_DUAL_WRITE, DW_ROUTE_MIGRATION);

    /* Clearing the override: key 1 (org-1) falls into the canary. */
    int cleared = -1;
    assert_dw_ok(h2, dw_override_clear(&cleared, h2, &k1, 1, 1, NULL));
    assert_int_equal(cleared, 1);
    assert_key_stage(h, 1, DW_STAGE_SHADOW, DW_ROUTE_CANARY);

    /* No routing left but key 2's override; key 1 writes old then new. */
    assert_dw_ok(h2, dw_routing_set(h2, NULL, NULL, 0));
    r = make_rec("org-1", "fourth", 4);
    assert_dw_ok(h, write_key(h, 1, &r));
    assert_string_equal(r.log, "ON");
    assert_key_stage(h, 1, DW_STAGE_DUAL_WRITE, DW_ROUTE_MIGRATION);
    assert_dw_ok(h2, dw_override_clear(&cleared, h2, &k2, 1, 1, NULL));
    r = make_rec("org-1", "two again", 2);
    assert_dw_ok(h, write_key(h, 2, &r));
    assert_string_equal(r.log, "ON");
}

/* Two handles on one connection: an override set through one is seen by
 * the other's next write (the commit is the handle's own connection's). */
static void test_other_handle_same_connection(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 3, DW_STAGE_DUAL_WRITE);
    f->h2 = open_items_ok(f->t.db);
    rec r = make_rec("org-1", "warm", 1);
    assert_dw_ok(h, write_key(h, 1, &r));
    assert_string_equal(r.log, "ON");
    override1(f->h2, 1, DW_STAGE_LIVE);
    r = make_rec("org-1", "after", 1);
    assert_dw_ok(h, write_key(h, 1, &r));
    assert_string_equal(r.log, "NO");
    assert_int_equal(clear1(f->h2, 1), 1);
    r = make_rec("org-1", "cleared", 1);
    assert_dw_ok(h, write_key(h, 1, &r));
    assert_string_equal(r.log, "ON");
}

/* ---- 3. buckets --------------------------------------------------------- */

static int bucket(const dw_value *key, int nkey)
{
    int b = -1;
    assert_int_equal(dw_key_bucket(&b, key, nkey), DW_OK);
    assert_true(b >= 0 && b < DW_BUCKETS);
    return b;
}

/* The vectors the header pins, so any program can compute buckets. */
static void test_bucket_pinned_vectors(void **state)
{
    (void)state;
    dw_value v;
    v = dw_int(1);
    assert_int_equal(bucket(&v, 1), 5302);
    v = dw_int(42);
    assert_int_equal(bucket(&v, 1), 9599);
    v = dw_int(-7);
    assert_int_equal(bucket(&v, 1), 4876);
    v = dw_int(INT64_MAX);
    assert_int_equal(bucket(&v, 1), 8833);
    dw_value two[2] = {dw_text("org-7"), dw_int(3)};
    assert_int_equal(bucket(two, 2), 892);
    v = dw_text("a\"b");
    assert_int_equal(bucket(&v, 1), 6810);
    v = dw_text("a\nb");
    assert_int_equal(bucket(&v, 1), 5251);
    v = dw_text_n("\xC3\xA9", 2);
    assert_int_equal(bucket(&v, 1), 8354);
    /* A text counted or NUL-terminated is the same key. */
    v = dw_text_n("a\"bXYZ", 3);
    assert_int_equal(bucket(&v, 1), 6810);
}

static void test_bucket_bad_input(void **state)
{
    (void)state;
    dw_value k = dw_int(1);
    int out = 12345;
    assert_int_equal(dw_key_bucket(NULL, &k, 1), DW_EMISUSE);
    assert_int_equal(dw_key_bucket(&out, NULL, 1), DW_EMISUSE);
    assert_int_equal(dw_key_bucket(&out, &k, 0), DW_EMISUSE);
    assert_int_equal(dw_key_bucket(&out, &k, -1), DW_EMISUSE);
    dw_value bad[] = {dw_float(1.0), dw_blob("ab", 2), dw_null()};
    for (int i = 0; i < 3; i++)
        assert_int_equal(dw_key_bucket(&out, &bad[i], 1), DW_EMISUSE);
    /* A bad value anywhere in a composite key. */
    dw_value mixed[2] = {dw_int(1), dw_float(2.5)};
    assert_int_equal(dw_key_bucket(&out, mixed, 2), DW_EMISUSE);
    /* Malformed text: bytes missing. */
    dw_value broken = {DW_TYPE_TEXT, 0, 0.0, NULL, 3};
    assert_int_equal(dw_key_bucket(&out, &broken, 1), DW_EMISUSE);
    assert_int_equal(out, 12345); /* untouched on failure */
}

/* ---- 4. percentages ----------------------------------------------------- */

#define NPCT_KEYS 2000

/* Marks which of keys 1..NPCT_KEYS are in the canary, checking each against
 * its bucket; returns how many. */
static int canary_members(dw_migration *h, double pct, unsigned char *in)
{
    int n = 0, threshold = (int)(pct * 100.0 + 0.5);
    for (int i = 1; i <= NPCT_KEYS; i++) {
        int route;
        int s = stage_of_key(h, i, &route);
        int member = route == DW_ROUTE_CANARY;
        assert_int_equal(s, member ? DW_STAGE_SHADOW : DW_STAGE_OFF);
        dw_value k = dw_int(i);
        if (member != (bucket(&k, 1) < threshold))
            fail_msg("key %d at %.2f%%: member %d, bucket %d", i, pct,
                     member, bucket(&k, 1));
        in[i] = (unsigned char)member;
        n += member;
    }
    return n;
}

/* Raising the percentage only adds keys; about P% of keys are in. */
static void test_percent_monotonic(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 0, DW_STAGE_OFF);
    static unsigned char at5[NPCT_KEYS + 1], at10[NPCT_KEYS + 1],
        at50[NPCT_KEYS + 1], all[NPCT_KEYS + 1];

    assert_dw_ok(h, set_canary(h, 5, NULL, DW_STAGE_SHADOW, DW_PROMOTE_NONE,
                               0, NULL));
    int n5 = canary_members(h, 5, at5);
    assert_dw_ok(h, set_canary(h, 10, NULL, DW_STAGE_SHADOW, DW_PROMOTE_NONE,
                               0, NULL));
    int n10 = canary_members(h, 10, at10);
    assert_dw_ok(h, set_canary(h, 50, NULL, DW_STAGE_SHADOW, DW_PROMOTE_NONE,
                               0, NULL));
    int n50 = canary_members(h, 50, at50);
    for (int i = 1; i <= NPCT_KEYS; i++) {
        assert_true(!at5[i] || at10[i]);
        assert_true(!at10[i] || at50[i]);
    }
    assert_true(n5 < n10 && n10 < n50);
    assert_in_range(n10, NPCT_KEYS * 7 / 100, NPCT_KEYS * 13 / 100);
    assert_in_range(n50, NPCT_KEYS * 45 / 100, NPCT_KEYS * 55 / 100);

    assert_dw_ok(h, set_canary(h, 100, NULL, DW_STAGE_SHADOW,
                               DW_PROMOTE_NONE, 0, NULL));
    assert_int_equal(canary_members(h, 100, all), NPCT_KEYS);
    assert_dw_ok(h, set_canary(h, 0, NULL, DW_STAGE_SHADOW, DW_PROMOTE_NONE,
                               0, NULL));
    assert_int_equal(canary_members(h, 0, all), 0);
}

/* The percentage is kept in steps of 0.01, rounded to the nearest. */
static void test_percent_rounding(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 0, DW_STAGE_OFF);
    dw_routing got;
    assert_dw_ok(h, set_canary(h, 12.344, NULL, DW_STAGE_SHADOW,
                               DW_PROMOTE_NONE, 0, NULL));
    assert_dw_ok(h, dw_routing_get(&got, h));
    assert_true(fabs(got.canary_percent - 12.34) < 1e-9);
    assert_dw_ok(h, set_canary(h, 12.346, NULL, DW_STAGE_SHADOW,
                               DW_PROMOTE_NONE, 0, NULL));
    assert_dw_ok(h, dw_routing_get(&got, h));
    assert_true(fabs(got.canary_percent - 12.35) < 1e-9);
    assert_int_equal(got.canary_stage, DW_STAGE_SHADOW);
    assert_int_equal(got.promote_stage, DW_PROMOTE_NONE);
    assert_null(got.canary_cohort);
    assert_int_equal(got.version, DW_ROUTING_VERSION);
}

/* members(org, uid) -> members_v2, a key of two columns (one TEXT), with
 * the rows `rows_sql` inserts; the migration opened as f->h, at OFF. */
static dw_migration *open_members(test_fixture *f, const char *rows_sql)
{
    exec_ok(f->t.db,
            "CREATE TABLE members(org TEXT NOT NULL, uid INTEGER NOT NULL,"
            " role TEXT, PRIMARY KEY(org, uid));"
            "CREATE TABLE members_v2(org TEXT NOT NULL, uid INTEGER NOT NULL,"
            " role_name TEXT, PRIMARY KEY(org, uid));");
    exec_ok(f->t.db, rows_sql);
    static const char *const keys[] = {"org", "uid"};
    static const char *const oc[] = {"role"};
    static const char *const nc[] = {"role_name"};
    static const dw_column_map up[] = {{"role_name", "role"}};
    static const dw_column_map down[] = {{"role", "role_name"}};
    dw_options o = DW_OPTIONS_INIT;
    o.name = "members";
    o.old_side = (dw_side_spec){"members", keys, 2, oc, 1};
    o.new_side = (dw_side_spec){"members_v2", keys, 2, nc, 1};
    o.up = up;
    o.nup = 1;
    o.down = down;
    o.ndown = 1;
    f->h = open_migration_ok(f->t.db, &o);
    dw_migration *h = f->h;
    return h;
}

/* Keys of two columns, and texts that need escaping: the key text, the
 * bucket threshold, the cohort's key test and the keys layout of
 * dw_override_set (count * nkey values). */
static void test_composite_and_text_keys(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = open_members(
        f, "INSERT INTO members VALUES('org-7', 3, 'admin'), "
           "('org-7', 4, 'user'), ('a\"b', 1, 'user'), "
           "('a' || char(10) || 'b', 1, 'admin')");
    dw_value k73[2] = {dw_text("org-7"), dw_int(3)};
    int s, route;

    /* ["org-7",3] is in bucket 892: in a canary of 8.93%, not of 8.92%. */
    assert_dw_ok(h, set_canary(h, 8.93, NULL, DW_STAGE_SHADOW,
                               DW_PROMOTE_NONE, 0, NULL));
    assert_dw_ok(h, dw_key_stage(&s, &route, h, k73, 2));
    assert_int_equal(route, DW_ROUTE_CANARY);
    assert_dw_ok(h, set_canary(h, 8.92, NULL, DW_STAGE_SHADOW,
                               DW_PROMOTE_NONE, 0, NULL));
    assert_dw_ok(h, dw_key_stage(&s, &route, h, k73, 2));
    assert_int_equal(route, DW_ROUTE_MIGRATION);
    assert_dw_ok(h, dw_routing_set(h, NULL, NULL, 0));

    /* Two keys of two values each, moved to DUAL_WRITE: both synced. */
    dw_value two[4] = {dw_text("org-7"), dw_int(4), dw_text("a\"b"),
                       dw_int(1)};
    assert_dw_ok(h, dw_override_set(h, two, 2, 2, DW_STAGE_DUAL_WRITE, NULL));
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM members_v2"), 2);
    assert_int_equal(query_int(f->t.db,
                               "SELECT count(*) FROM members_v2 WHERE "
                               "org = 'a\"b' AND uid = 1 AND role_name = "
                               "'user'"),
                     1);
    ov_list ol;
    list_overrides(h, &ol);
    assert_int_equal(ol.n, 2);
    assert_string_equal(ol.e[0].key, "[\"a\\\"b\",1]");
    assert_string_equal(ol.e[1].key, "[\"org-7\",4]");

    /* The cohort is tested on each key's own row. */
    assert_dw_ok(h, set_canary(h, 0, "role = 'admin'", DW_STAGE_SHADOW,
                               DW_PROMOTE_NONE, 0, NULL));
    dw_value knl[2] = {dw_text("a\nb"), dw_int(1)};
    assert_dw_ok(h, dw_key_stage(&s, &route, h, knl, 2));
    assert_int_equal(route, DW_ROUTE_CANARY);
    assert_dw_ok(h, dw_key_stage(&s, &route, h, k73, 2));
    assert_int_equal(route, DW_ROUTE_CANARY);
    dw_value k74[2] = {dw_text("org-7"), dw_int(4)};
    assert_dw_ok(h, dw_key_stage(&s, &route, h, k74, 2));
    assert_int_equal(route, DW_ROUTE_OVERRIDE);
    dw_value k75[2] = {dw_text("org-7"), dw_int(5)}; /* no row */
    assert_dw_ok(h, dw_key_stage(&s, &route, h, k75, 2));
    assert_int_equal(route, DW_ROUTE_MIGRATION);
    dw_value k83[2] = {dw_text("org-8"), dw_int(3)}; /* other org: no row */
    assert_dw_ok(h, dw_key_stage(&s, &route, h, k83, 2));
    assert_int_equal(route, DW_ROUTE_MIGRATION);

    dw_routing_progress p;
    assert_dw_ok(h, dw_routing_count(&p, h));
    assert_int_equal(p.keys, 4);
    assert_int_equal(p.overridden, 2);
    assert_int_equal(p.in_canary, 2);
    assert_int_equal(p.covered, 2);
}

/* ---- 5. cohort ---------------------------------------------------------- */

/* The cohort is tested against each key's own old row; a write that moves a
 * row into the cohort syncs the key into the stage it enters. */
static void test_cohort(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 6, DW_STAGE_OFF);
    /* Double-quoted names are identifiers. */
    assert_dw_ok(h, set_canary(h, 0, "\"org\" = 'org-7'", DW_STAGE_SHADOW,
                               DW_PROMOTE_NONE, 0, NULL));
    for (int i = 1; i <= 6; i++)
        assert_key_stage(h, i, i % 3 == 0 ? DW_STAGE_SHADOW : DW_STAGE_OFF,
                         i % 3 == 0 ? DW_ROUTE_CANARY : DW_ROUTE_MIGRATION);
    /* No old row, not in the cohort. */
    assert_key_stage(h, 99, DW_STAGE_OFF, DW_ROUTE_MIGRATION);

    /* Key 1 moves into org-7: written at OFF (old only), then synced into
     * SHADOW -- the new side holds it mapped up. */
    assert_false(new_has(f->t.db, 1));
    rec r = make_rec("org-7", "moved in", 11);
    assert_dw_ok(h, write_key(h, 1, &r));
    assert_string_equal(r.log, "O");
    assert_true(new_has(f->t.db, 1));
    assert_string_equal(NEW_CELL(f->t.db, "title", 1), "moved in");
    assert_string_equal(NEW_CELL(f->t.db, "org", 1), "org-7");
    assert_string_equal(NEW_CELL(f->t.db, "note", 1), "none");
    assert_key_stage(h, 1, DW_STAGE_SHADOW, DW_ROUTE_CANARY);

    /* A read now compares, and the sides agree. */
    dw_metrics m0 = metrics_of(h), m1;
    char shape[64];
    assert_dw_ok(h, read_shape(h, 1, shape, sizeof shape));
    assert_string_equal(shape, "old:moved in");
    m1 = metrics_of(h);
    assert_int_equal(m1.comparisons, m0.comparisons + 1);
    assert_int_equal(m1.matches, m0.matches + 1);
    assert_int_equal(m1.mismatches, m0.mismatches);

    /* A new key inserted straight into the cohort. */
    r = make_rec("org-7", "born in", 12);
    assert_dw_ok(h, write_key(h, 50, &r));
    assert_string_equal(r.log, "O");
    assert_true(new_has(f->t.db, 50));
    assert_key_stage(h, 50, DW_STAGE_SHADOW, DW_ROUTE_CANARY);

    /* Key 3 leaves org-7: written at SHADOW (old, then new), then at OFF. */
    r = make_rec("org-1", "moved out", 13);
    assert_dw_ok(h, write_key(h, 3, &r));
    assert_string_equal(r.log, "ON");
    assert_key_stage(h, 3, DW_STAGE_OFF, DW_ROUTE_MIGRATION);
    r = make_rec("org-1", "after", 14);
    assert_dw_ok(h, write_key(h, 3, &r));
    assert_string_equal(r.log, "O");
    assert_false(new_has(f->t.db, 2));
}

/* A cohort at LIVE: a key written out of it is synced from the side it
 * trusted (new) into the old model, the one the migration's stage trusts. */
static void test_cohort_leaving_live_syncs_old(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 6, DW_STAGE_DUAL_WRITE);
    backfill_and_verify(h);
    assert_dw_ok(h, set_canary(h, 0, "org = 'org-7'", DW_STAGE_LIVE,
                               DW_PROMOTE_NONE, 0, NULL));
    assert_key_stage(h, 6, DW_STAGE_LIVE, DW_ROUTE_CANARY);
    /* The new write runs first; the old one only moves the org. */
    rec r = make_rec("org-1", "renamed", 66);
    dw_value k = dw_int(6);
    assert_dw_ok(h, dw_write(h, &k, 1, NULL, put_new, &r));
    assert_string_equal(r.log, "N");
    assert_key_stage(h, 6, DW_STAGE_DUAL_WRITE, DW_ROUTE_MIGRATION);
    assert_string_equal(OLD_CELL(f->t.db, "name", 6), "renamed");
    assert_string_equal(OLD_CELL(f->t.db, "org", 6), "org-1");
    assert_string_equal(OLD_CELL(f->t.db, "qty", 6), "66");
}

/* ---- 6. invalid settings ------------------------------------------------ */

/* Every bad predicate is refused with a message, and nothing is stored. */
static void test_cohort_rejected(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 6, DW_STAGE_OFF);
    assert_dw_ok(h, set_canary(h, 0, "org = 'org-7'", DW_STAGE_DUAL_WRITE,
                               DW_PROMOTE_NONE, 0, NULL));
    last_event before, after;
    last_history(h, &before);
    static const char *const bad[] = {
        "org = ",                           /* syntax error */
        "no_such_column = 1",               /* unknown column */
        "org = \"org-7\"",                  /* "org-7" is an identifier */
        "1; DROP TABLE items",              /* two statements */
        "1) ; DELETE FROM items; SELECT (1", /* a write smuggled in */
        "(DELETE FROM items)",              /* not an expression */
        "id = ?",                           /* parameters */
        "id = :who",
        "org = 'x') --",                    /* unbalanced */
        "org = 'x' /*",                     /* comment swallowing the rest */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = set_canary(h, 0, bad[i], DW_STAGE_DUAL_WRITE,
                            DW_PROMOTE_NONE, 0, NULL);
        if (rc != DW_EMISUSE)
            fail_msg("cohort \"%s\": %d (%s), expected DW_EMISUSE", bad[i],
                     rc, dw_errmsg(h));
        const char *m = dw_errmsg(h);
        assert_true(strlen(m) > 10);
        assert_non_null(strstr(m, "cohort"));
        char buf[128];
        assert_string_equal(stored_cohort(h, buf, sizeof buf),
                            "org = 'org-7'");
    }
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items"), 6);
    last_history(h, &after);
    assert_int_equal(after.n, before.n);

    /* Specific messages. */
    assert_int_equal(set_canary(h, 0, "no_such_column = 1",
                                DW_STAGE_DUAL_WRITE, DW_PROMOTE_NONE, 0, NULL),
                     DW_EMISUSE);
    assert_msg_has(h, "no_such_column");
    assert_int_equal(set_canary(h, 0, "id = ?", DW_STAGE_DUAL_WRITE,
                                DW_PROMOTE_NONE, 0, NULL),
                     DW_EMISUSE);
    assert_msg_has(h, "parameter");

    /* A trailing line comment is fine, and the key test still applies. */
    assert_dw_ok(h, set_canary(h, 0, "org = 'org-1' -- the first org",
                               DW_STAGE_DUAL_WRITE, DW_PROMOTE_NONE, 0, NULL));
    assert_key_stage(h, 1, DW_STAGE_DUAL_WRITE, DW_ROUTE_CANARY);
    assert_key_stage(h, 3, DW_STAGE_OFF, DW_ROUTE_MIGRATION);
    assert_key_stage(h, 99, DW_STAGE_OFF, DW_ROUTE_MIGRATION);
    /* An empty cohort is none. */
    assert_dw_ok(h, set_canary(h, 0, "", DW_STAGE_DUAL_WRITE,
                               DW_PROMOTE_NONE, 0, NULL));
    char buf[128];
    assert_string_equal(stored_cohort(h, buf, sizeof buf), "");
    assert_key_stage(h, 1, DW_STAGE_OFF, DW_ROUTE_MIGRATION);
}

/* A predicate that closes the parenthesis around it must not escape the
 * key's row: either it is refused, or membership still depends on the
 * key's own old row (a key without one is never in the cohort). */
static void test_cohort_break_out(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 6, DW_STAGE_OFF);
    static const char *const tries[] = {
        "1) OR (1",
        "0) OR (org = 'org-7'",
        "1) UNION SELECT (1",
    };
    char failures[1024] = "";
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        assert_dw_ok(h, dw_routing_set(h, NULL, NULL, 0));
        int rc = set_canary(h, 0, tries[i], DW_STAGE_DUAL_WRITE,
                            DW_PROMOTE_NONE, 0, NULL);
        if (rc != DW_OK) {
            assert_int_equal(rc, DW_EMISUSE);
            char buf[128];
            assert_string_equal(stored_cohort(h, buf, sizeof buf), "");
            continue;
        }
        /* Accepted: a key with no old row is not in the cohort, nor (for
         * the org-7 one) a key whose row is in org-1. */
        int s, route99 = -1, route1 = -1;
        dw_value k99 = dw_int(99), k1 = dw_int(1);
        int rc99 = dw_key_stage(&s, &route99, h, &k99, 1);
        int rc1 = dw_key_stage(&s, &route1, h, &k1, 1);
        rec r = make_rec("org-1", "w", 1);
        int rcw = write_key(h, 1, &r);
        if (rc99 != DW_OK || rc1 != DW_OK || rcw != DW_OK ||
            route99 != DW_ROUTE_MIGRATION ||
            (i == 1 && route1 != DW_ROUTE_MIGRATION)) {
            size_t n = strlen(failures);
            snprintf(failures + n, sizeof failures - n,
                     "\n  \"%s\" accepted; then key 99 (no row): rc %d "
                     "route %d; key 1 (org-1): rc %d route %d; a write of "
                     "key 1: rc %d",
                     tries[i], rc99, route99, rc1, route1, rcw);
        }
    }
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items"), 6);
    if (failures[0])
        fail_msg("cohort predicates escape the key's row:%s", failures);
}

/* Stages, percentages, versions and flags out of range. */
static void test_routing_settings_rejected(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 3, DW_STAGE_OFF);
    dw_value k = dw_int(1);
    assert_dw(h, dw_override_set(h, &k, 1, 1, 6, NULL), DW_EMISUSE);
    assert_msg_has(h, "stage");
    assert_dw(h, dw_override_set(h, &k, 1, 1, -1, NULL), DW_EMISUSE);
    assert_msg_has(h, "stage");

    struct {
        double pct;
        int canary_stage, promote;
        unsigned version, flags;
        const char *needle;
    } bad[] = {
        {5, 9, DW_PROMOTE_NONE, DW_ROUTING_VERSION, 0, "stage"},
        {5, -1, DW_PROMOTE_NONE, DW_ROUTING_VERSION, 0, "stage"},
        {5, DW_STAGE_SHADOW, 7, DW_ROUTING_VERSION, 0, "promote"},
        {5, DW_STAGE_SHADOW, -2, DW_ROUTING_VERSION, 0, "promote"},
        {-1, DW_STAGE_SHADOW, DW_PROMOTE_NONE, DW_ROUTING_VERSION, 0,
         "percent"},
        {100.5, DW_STAGE_SHADOW, DW_PROMOTE_NONE, DW_ROUTING_VERSION, 0,
         "percent"},
        {NAN, DW_STAGE_SHADOW, DW_PROMOTE_NONE, DW_ROUTING_VERSION, 0,
         "percent"},
        {INFINITY, DW_STAGE_SHADOW, DW_PROMOTE_NONE, DW_ROUTING_VERSION, 0,
         "percent"},
        {5, DW_STAGE_SHADOW, DW_PROMOTE_NONE, DW_ROUTING_VERSION + 1, 0,
         "version"},
        {5, DW_STAGE_SHADOW, DW_PROMOTE_NONE, 0, 0, "version"},
        {5, DW_STAGE_SHADOW, DW_PROMOTE_NONE, DW_ROUTING_VERSION, 1u << 4,
         "flags"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dw_routing r = DW_ROUTING_INIT;
        r.version = bad[i].version;
        r.canary_percent = bad[i].pct;
        r.canary_stage = bad[i].canary_stage;
        r.promote_stage = bad[i].promote;
        int rc = dw_routing_set(h, &r, "bad", bad[i].flags);
        if (rc != DW_EMISUSE)
            fail_msg("case %zu: %d, expected DW_EMISUSE", i, rc);
        assert_msg_has(h, bad[i].needle);
        dw_routing got;
        assert_dw_ok(h, dw_routing_get(&got, h));
        assert_true(got.canary_percent == 0.0);
        assert_int_equal(got.promote_stage, DW_PROMOTE_NONE);
    }
    /* Nothing reached the keys. */
    assert_key_stage(h, 1, DW_STAGE_OFF, DW_ROUTE_MIGRATION);
    ov_list ol;
    list_overrides(h, &ol);
    assert_int_equal(ol.n, 0);
}

/* ---- 7. promote on write ------------------------------------------------ */

static void test_promote_on_write(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 6, DW_STAGE_OFF);
    assert_dw_ok(h, set_canary(h, 0, NULL, DW_STAGE_OFF, DW_STAGE_LIVE, 0,
                               NULL));
    /* Key 3 is held back at OFF before any write. */
    override1(h, 3, DW_STAGE_OFF);

    /* Writing key 1 at OFF writes old only, then promotes it to LIVE:
     * the new side gets the row mapped up. */
    rec r = make_rec("org-1", "promoted", 10);
    assert_dw_ok(h, write_key(h, 1, &r));
    assert_string_equal(r.log, "O");
    assert_true(new_has(f->t.db, 1));
    assert_string_equal(NEW_CELL(f->t.db, "title", 1), "promoted");
    assert_string_equal(NEW_CELL(f->t.db, "quantity", 1), "10");
    assert_key_stage(h, 1, DW_STAGE_LIVE, DW_ROUTE_OVERRIDE);
    ov_list ol;
    list_overrides(h, &ol);
    const ov_entry *e = find_override(&ol, "[1]");
    assert_non_null(e);
    assert_int_equal(e->stage, DW_STAGE_LIVE);
    assert_int_equal(e->promoted, 1);

    /* Its next write follows LIVE: new first, then old. */
    r = make_rec("org-1", "at live", 11);
    assert_dw_ok(h, write_key(h, 1, &r));
    assert_string_equal(r.log, "NO");

    /* Keys not written stay where they were. */
    assert_key_stage(h, 2, DW_STAGE_OFF, DW_ROUTE_MIGRATION);
    assert_false(new_has(f->t.db, 2));

    /* A key with an override is not promoted. */
    r = make_rec("org-7", "held back", 30);
    assert_dw_ok(h, write_key(h, 3, &r));
    assert_string_equal(r.log, "O");
    assert_key_stage(h, 3, DW_STAGE_OFF, DW_ROUTE_OVERRIDE);
    assert_false(new_has(f->t.db, 3));
    list_overrides(h, &ol);
    e = find_override(&ol, "[3]");
    assert_non_null(e);
    assert_int_equal(e->promoted, 0);

    /* A failed write promotes nothing: its old write, the sync and the
     * override all roll back. */
    r = make_rec("org-1", "doomed", 40);
    r.fail_old = 1;
    assert_dw(h, write_key(h, 4, &r), DW_ECALLBACK);
    assert_int_equal(dw_errside(h), DW_SIDE_OLD);
    assert_string_equal(OLD_CELL(f->t.db, "name", 4), "item 4");
    assert_false(new_has(f->t.db, 4));
    assert_key_stage(h, 4, DW_STAGE_OFF, DW_ROUTE_MIGRATION);

    /* A promotion whose sync fails fails the write, which rolls back. */
    r = make_rec("org-1", "reject", 50);
    assert_dw(h, write_key(h, 5, &r), DW_ECONSTRAINT);
    assert_msg_has(h, "(moving key [5] from OFF to LIVE)");
    assert_string_equal(OLD_CELL(f->t.db, "name", 5), "item 5");
    assert_false(new_has(f->t.db, 5));
    assert_key_stage(h, 5, DW_STAGE_OFF, DW_ROUTE_MIGRATION);
    list_overrides(h, &ol);
    assert_int_equal(ol.n, 2); /* [1] and [3] */

    /* dw_mirror promotes too (the application wrote old itself). */
    fixture_exec(f, "UPDATE items SET name = 'mirrored' WHERE id = 6");
    dw_value k6 = dw_int(6);
    assert_dw_ok(h, dw_mirror(h, &k6, 1));
    assert_string_equal(NEW_CELL(f->t.db, "title", 6), "mirrored");
    assert_key_stage(h, 6, DW_STAGE_LIVE, DW_ROUTE_OVERRIDE);

    /* Promotion to RAMPDOWN: same sync, new trusted and old still
     * written. */
    assert_dw_ok(h, set_canary(h, 0, NULL, DW_STAGE_OFF, DW_STAGE_RAMPDOWN, 0,
                               NULL));
    r = make_rec("org-1", "ramped", 20);
    assert_dw_ok(h, write_key(h, 2, &r));
    assert_string_equal(r.log, "O");
    assert_string_equal(NEW_CELL(f->t.db, "title", 2), "ramped");
    assert_key_stage(h, 2, DW_STAGE_RAMPDOWN, DW_ROUTE_OVERRIDE);
    /* Key 1 (LIVE) is below RAMPDOWN but has an override: left alone. */
    r = make_rec("org-1", "still live", 12);
    assert_dw_ok(h, write_key(h, 1, &r));
    assert_key_stage(h, 1, DW_STAGE_LIVE, DW_ROUTE_OVERRIDE);
}

/* A canary key below the promotion stage is promoted by its write. */
static void test_promote_from_canary(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 6, DW_STAGE_OFF);
    assert_dw_ok(h, set_canary(h, 0, "org = 'org-7'", DW_STAGE_DUAL_WRITE,
                               DW_STAGE_LIVE, 0, NULL));
    rec r = make_rec("org-7", "canary write", 3);
    assert_dw_ok(h, write_key(h, 3, &r));
    assert_string_equal(r.log, "ON"); /* at DUAL_WRITE */
    assert_key_stage(h, 3, DW_STAGE_LIVE, DW_ROUTE_OVERRIDE);
    assert_string_equal(NEW_CELL(f->t.db, "title", 3), "canary write");
}

/* ---- 8. swapping one record back ---------------------------------------- */

static void test_swap_back_to_off(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 6, DW_STAGE_DUAL_WRITE);
    dw_value ks[2] = {dw_int(1), dw_int(2)};
    assert_dw_ok(h, dw_override_set(h, ks, 1, 2, DW_STAGE_LIVE, "ahead"));
    assert_true(new_has(f->t.db, 1) && new_has(f->t.db, 2));

    /* Written at LIVE: new first, old mirrored down. */
    rec r = make_rec("org-1", "latest", 77);
    dw_value k1 = dw_int(1);
    assert_dw_ok(h, dw_write(h, &k1, 1, NULL, put_new, &r));
    assert_string_equal(r.log, "N");
    assert_string_equal(OLD_CELL(f->t.db, "name", 1), "latest");
    /* The old row drifts (say a mirror was lost): the swap must carry the
     * trusted row, not keep the old one. */
    fixture_exec(f, "UPDATE items SET name = 'drifted', qty = 0 WHERE id = 1");

    override1(h, 1, DW_STAGE_OFF);
    assert_string_equal(OLD_CELL(f->t.db, "name", 1), "latest");
    assert_string_equal(OLD_CELL(f->t.db, "qty", 1), "77");

    /* Reads of key 1 return the old row as stored; key 2 still reads new,
     * key 3 (DUAL_WRITE) old. */
    char shape[64];
    assert_dw_ok(h, read_shape(h, 1, shape, sizeof shape));
    assert_string_equal(shape, "old:latest");
    fixture_exec(f, "UPDATE items_v2 SET title = 'new two' WHERE id = 2");
    assert_dw_ok(h, read_shape(h, 2, shape, sizeof shape));
    assert_string_equal(shape, "new:new two");
    assert_dw_ok(h, read_shape(h, 3, shape, sizeof shape));
    assert_string_equal(shape, "old:item 3");

    /* And key 1's writes go to old only now. */
    r = make_rec("org-1", "back home", 1);
    assert_dw_ok(h, write_key(h, 1, &r));
    assert_string_equal(r.log, "O");
}

/* From COMPLETE (old not written at all) back to OFF: the old row is made
 * equal to the new one mapped down. */
static void test_swap_back_from_complete(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 4, DW_STAGE_DUAL_WRITE);
    override1(h, 4, DW_STAGE_COMPLETE);
    assert_true(new_has(f->t.db, 4));
    rec r = make_rec("org-7", "only new", 44);
    dw_value k4 = dw_int(4);
    assert_dw_ok(h, dw_write(h, &k4, 1, NULL, put_new, &r));
    assert_string_equal(r.log, "N");
    assert_string_equal(OLD_CELL(f->t.db, "name", 4), "item 4");

    override1(h, 4, DW_STAGE_OFF);
    assert_string_equal(OLD_CELL(f->t.db, "name", 4), "only new");
    assert_string_equal(OLD_CELL(f->t.db, "org", 4), "org-7");
    assert_string_equal(OLD_CELL(f->t.db, "qty", 4), "44");

    /* A key deleted while at COMPLETE is deleted from old on the way
     * back. */
    override1(h, 3, DW_STAGE_COMPLETE);
    fixture_exec(f, "DELETE FROM items_v2 WHERE id = 3");
    assert_true(old_has(f->t.db, 3));
    int cleared = clear1(h, 3); /* back to DUAL_WRITE, old written again */
    assert_int_equal(cleared, 1);
    assert_false(old_has(f->t.db, 3));
}

/* ---- 9. writes and reads follow each key's stage ------------------------ */

static void test_sides_per_key(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 0, DW_STAGE_DUAL_WRITE);
    /* A held at OFF, B ahead at LIVE, C follows DUAL_WRITE. */
    const int64_t A = 10, B = 20, C = 30;
    override1(h, A, DW_STAGE_OFF);
    override1(h, B, DW_STAGE_LIVE);
    dw_metrics_reset(h);

    rec ra = make_rec("org-1", "a", 1), rb = make_rec("org-1", "b", 2),
        rcc = make_rec("org-1", "c", 3);
    assert_dw_ok(h, write_key(h, A, &ra));
    assert_dw_ok(h, write_key(h, B, &rb));
    assert_dw_ok(h, write_key(h, C, &rcc));
    assert_string_equal(ra.log, "O");
    assert_string_equal(rb.log, "NO");
    assert_string_equal(rcc.log, "ON");
    assert_true(old_has(f->t.db, A) && !new_has(f->t.db, A));
    assert_true(old_has(f->t.db, B) && new_has(f->t.db, B));
    assert_true(old_has(f->t.db, C) && new_has(f->t.db, C));
    dw_metrics m = metrics_of(h);
    assert_int_equal(m.old_side.writes, 3);
    assert_int_equal(m.new_side.writes, 2);
    assert_int_equal(m.writes, 3);

    /* Reads with callbacks: A reads old, B reads new and then old and
     * compares, C reads old. */
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    rec log;
    int64_t ids[3] = {A, B, C};
    const char *want[3] = {"o", "no", "o"};
    for (int i = 0; i < 3; i++) {
        memset(&log, 0, sizeof log);
        dw_value k = dw_int(ids[i]);
        assert_dw_ok(h, dw_read(row, h, &k, 1, get_old, get_new, &log));
        assert_string_equal(log.log, want[i]);
        assert_non_null(dw_row_get(row, "title"));
    }
    dw_row_free(row);
    m = metrics_of(h);
    assert_int_equal(m.reads, 3);
    assert_int_equal(m.comparisons, 1);
    assert_int_equal(m.matches, 1);
    assert_int_equal(m.old_side.reads, 3);
    assert_int_equal(m.new_side.reads, 1);

    /* Through the spec: B returns the new row, A and C the old. */
    char shape[64];
    fixture_exec(f, "UPDATE items_v2 SET title = 'B new' WHERE id = 20;"
                    "UPDATE items_v2 SET title = 'C new' WHERE id = 30");
    assert_dw_ok(h, read_shape(h, A, shape, sizeof shape));
    assert_string_equal(shape, "old:a");
    assert_dw_ok(h, read_shape(h, B, shape, sizeof shape));
    assert_string_equal(shape, "new:B new");
    assert_dw_ok(h, read_shape(h, C, shape, sizeof shape));
    assert_string_equal(shape, "old:c");
}

/* ---- 10. backfill and repair follow routing ----------------------------- */

static void test_backfill_respects_overrides(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 8, DW_STAGE_DUAL_WRITE);
    /* `note` exists only in the new model: verification leaves it out, so
     * a clobbered note shows only in the table. */
    static const char *const ignore[] = {"note"};
    dw_read_options ro = DW_READ_OPTIONS_INIT;
    ro.ignore_columns = ignore;
    ro.nignore_columns = 1;
    assert_dw_ok(h, dw_set_read_options(h, &ro));

    dw_value ks[2] = {dw_int(2), dw_int(5)};
    assert_dw_ok(h, dw_override_set(h, ks, 1, 2, DW_STAGE_LIVE, NULL));
    rec r = make_rec("org-1", "B2", 7);
    r.note = "kept";
    assert_dw_ok(h, dw_write(h, &ks[0], 1, NULL, put_new, &r));
    assert_string_equal(NEW_CELL(f->t.db, "note", 2), "kept");
    /* Key 5's old row drifts; its new row is the truth. */
    fixture_exec(f, "UPDATE items SET name = 'stale' WHERE id = 5");
    /* A new-only row of a LIVE key must reach old, not be deleted. */
    dw_value k9 = dw_int(9);
    assert_dw_ok(h, dw_override_set(h, &k9, 1, 1, DW_STAGE_LIVE, NULL));
    r = make_rec("org-7", "nine", 9);
    r.note = "only new";
    assert_dw_ok(h, dw_write(h, &k9, 1, NULL, put_new, &r));
    fixture_exec(f, "DELETE FROM items WHERE id = 9");

    dw_backfill_progress p;
    assert_dw_ok(h, dw_backfill(&p, h, NULL));
    assert_true(p.finished);
    /* Overridden keys kept their new rows... */
    assert_string_equal(NEW_CELL(f->t.db, "note", 2), "kept");
    assert_string_equal(NEW_CELL(f->t.db, "title", 2), "B2");
    assert_string_equal(NEW_CELL(f->t.db, "title", 5), "item 5");
    assert_string_equal(NEW_CELL(f->t.db, "note", 9), "only new");
    /* ... and their old rows came level from new. */
    assert_string_equal(OLD_CELL(f->t.db, "name", 5), "item 5");
    assert_string_equal(OLD_CELL(f->t.db, "name", 9), "nine");
    /* Other keys were copied up as usual. */
    assert_string_equal(NEW_CELL(f->t.db, "title", 7), "item 7");
    assert_string_equal(NEW_CELL(f->t.db, "note", 7), "none");
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items_v2"), 9);

    dw_verify_result v;
    assert_dw_ok(h, dw_verify(&v, h, NULL));
    if (!v.clean)
        print_error("verify: %lld missing, %lld extra, %lld different\n",
                    (long long)v.missing, (long long)v.extra,
                    (long long)v.different);
    assert_true(v.clean);
    assert_int_equal(v.keys, 9);
}

/* Many routed keys over many batches: the routed backfill writes both
 * tables while it walks their keys, and must still visit each key once and
 * leave every key level with the side its stage trusts. */
static void test_backfill_many_routed_keys(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 3000, DW_STAGE_DUAL_WRITE);
    /* Every 7th key ahead at LIVE (one call, so one sync each). */
    static dw_value ks[3000 / 7];
    int n = 0;
    for (int i = 7; i <= 3000; i += 7)
        ks[n++] = dw_int(i);
    assert_dw_ok(h, dw_override_set(h, ks, 1, n, DW_STAGE_LIVE, NULL));
    /* LIVE keys: some only on new (old must be re-created), some only on
     * old (old must go). Other keys: some stray new-only rows (must go). */
    exec_ok(f->t.db,
            "DELETE FROM items WHERE id % 14 = 0;"
            "DELETE FROM items_v2 WHERE id % 21 = 0;"
            "INSERT INTO items_v2(id, org, title, quantity) "
            "SELECT id + 10000, 'org-1', 'stray', 0 FROM items "
            "WHERE id % 5 = 0 AND id % 7 <> 0");
    /* The expected keys: non-LIVE keys as old has them; LIVE keys as new
     * has them. */
    int64_t want = query_int(f->t.db,
                             "SELECT (SELECT count(*) FROM items WHERE id % 7 "
                             "<> 0) + (SELECT count(*) FROM items_v2 WHERE "
                             "id % 7 = 0 AND id <= 3000)");
    dw_backfill_options o = DW_BACKFILL_OPTIONS_INIT;
    o.batch_rows = 97;
    o.batch_ms = -1;
    dw_backfill_progress p;
    assert_dw_ok(h, dw_backfill(&p, h, &o));
    assert_true(p.finished);
    assert_true(p.batches > 10);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items"), want);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items_v2"), want);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items_v2 "
                                    "WHERE id > 3000"),
                     0);
    assert_false(old_has(f->t.db, 21));
    assert_false(new_has(f->t.db, 21));
    assert_true(old_has(f->t.db, 14) && new_has(f->t.db, 14));
    assert_false(old_has(f->t.db, 42) || new_has(f->t.db, 42));
    dw_verify_result v;
    assert_dw_ok(h, dw_verify(&v, h, NULL));
    assert_true(v.clean);
    assert_int_equal(v.keys, want);
}

/* ---- 10b. the backfill stays set-based around routed keys -------------- */

/* Statements the connection runs (SQLITE_TRACE_STMT), triggers' lines
 * left out. */
static int count_statement(unsigned type, void *ctx, void *p, void *x)
{
    (void)p;
    const char *sql = x;
    if (type == SQLITE_TRACE_STMT && sql && strncmp(sql, "--", 2) != 0)
        (*(int64_t *)ctx)++;
    return 0;
}

/* dw_backfill() restarted with fixed batches of `rows`; *statements: how
 * many statements it ran. */
static dw_backfill_progress backfill_counted(test_fixture *f, int rows,
                                             int64_t *statements)
{
    dw_backfill_options o = DW_BACKFILL_OPTIONS_INIT;
    o.batch_rows = rows;
    o.batch_ms = -1;
    o.flags = DW_BACKFILL_RESTART;
    int64_t n = 0;
    sqlite3_trace_v2(f->t.db, SQLITE_TRACE_STMT, count_statement, &n);
    dw_backfill_progress p;
    int rc = dw_backfill(&p, f->h, &o);
    sqlite3_trace_v2(f->t.db, 0, NULL, NULL);
    assert_dw_ok(f->h, rc);
    assert_true(p.finished);
    if (statements)
        *statements = n;
    return p;
}

/* Overrides at stages trusting the side the backfill copies from (OFF and
 * SHADOW while it copies old to new) change nothing for it: their keys go
 * through the same set-based statements as the others, not one
 * statement (or more) per key. It went key by key whenever any override
 * existed, 3.8 times slower with 100 of them. */
static void test_backfill_same_side_overrides_set_based(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 300, DW_STAGE_DUAL_WRITE);
    int64_t plain;
    backfill_counted(f, 1000, &plain);

    static dw_value ks[100];
    for (int i = 0; i < 100; i++)
        ks[i] = dw_int(3 * i + 1);
    assert_dw_ok(h, dw_override_set(h, ks, 1, 50, DW_STAGE_SHADOW, NULL));
    assert_dw_ok(h, dw_override_set(h, ks + 50, 1, 50, DW_STAGE_OFF, NULL));
    /* Both kinds of key drifted on new, and others: all copied up. */
    fixture_exec(f, "UPDATE items_v2 SET title = 'drift' WHERE id % 2 = 0;"
                    "INSERT INTO items_v2(id, org, title, quantity) "
                    "VALUES (1000, 'org-1', 'orphan', 0)");
    int64_t routed;
    dw_backfill_progress p = backfill_counted(f, 1000, &routed);
    /* One batch: a few statements more (the overrides' listing), never
     * one per key. */
    if (routed > plain + 10)
        fail_msg("%lld statements with 100 overrides at stages trusting "
                 "old, %lld without any",
                 (long long)routed, (long long)plain);
    assert_int_equal(p.rows_done, 300);
    assert_int_equal(p.rows_deleted, 1);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items_v2 WHERE "
                                    "title = 'drift' OR id > 300"),
                     0);
    verify_clean(h);
}

/* Statements that leave the skip set out (its lookup per row). */
static int count_skipping(unsigned type, void *ctx, void *p, void *x)
{
    (void)p;
    const char *sql = x;
    if (type == SQLITE_TRACE_STMT && sql &&
        strstr(sql, "NOT EXISTS (SELECT 1 FROM temp."))
        (*(int64_t *)ctx)++;
    return 0;
}

/* A key routed to a stage trusting the other side costs only the batch
 * that holds it: the other batches run the plain statements, without a
 * lookup in the skip set per row (with one such key over a large table,
 * every batch paid it, slower than going key by key). */
static void test_backfill_skip_only_where_skipped(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 300, DW_STAGE_DUAL_WRITE);
    override1(h, 290, DW_STAGE_LIVE);
    fixture_exec(f, "UPDATE items_v2 SET title = 'new truth' WHERE id = 290");
    dw_backfill_options o = DW_BACKFILL_OPTIONS_INIT;
    o.batch_rows = 50;
    o.batch_ms = -1;
    o.flags = DW_BACKFILL_RESTART;
    int64_t skipping = 0;
    sqlite3_trace_v2(f->t.db, SQLITE_TRACE_STMT, count_skipping, &skipping);
    dw_backfill_progress p;
    int rc = dw_backfill(&p, h, &o);
    sqlite3_trace_v2(f->t.db, 0, NULL, NULL);
    assert_dw_ok(h, rc);
    assert_int_equal(p.batches, 6);
    assert_int_equal(p.rows_done, 300);
    /* The last batch's delete and copy. */
    if (skipping > 2)
        fail_msg("%lld statements left the skip set out in 6 batches; only "
                 "the batch holding key 290 needs to",
                 (long long)skipping);
    assert_true(skipping > 0);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items_v2 WHERE "
                                    "id = 290 AND title = 'new truth'"),
                     1);
    verify_clean(h);
}

/* A migration of another key shape on a connection that still holds the
 * skip set of an earlier backfill: `name` is the items migration's own
 * name defined again with a TEXT key (DW_OPEN_REDEFINE), or a name SQLite
 * would fold into it. Its routed backfill gets a skip set of its own
 * shape; the earlier table made it fail with "no column named name". */
static void routed_backfill_of_tags(test_fixture *f, const char *name,
                                    unsigned int flags)
{
    dw_migration *h = start(f, 20, DW_STAGE_DUAL_WRITE);
    override1(h, 5, DW_STAGE_LIVE);
    backfill_counted(f, 10, NULL);
    fixture_exec(f, "CREATE TABLE tags(name TEXT PRIMARY KEY, colour TEXT);"
                    "CREATE TABLE tags_v2(name TEXT PRIMARY KEY, hex TEXT);"
                    "INSERT INTO tags VALUES('red', 'ff0000'),"
                    " ('blue', '0000ff')");
    static const char *const key[] = {"name"};
    static const dw_column_map up[] = {{"hex", "colour"}};
    static const dw_column_map down[] = {{"colour", "hex"}};
    dw_options o = options_for(name, TEST_SIDE_UNLISTED("tags", key),
                               TEST_SIDE_UNLISTED("tags_v2", key));
    o.up = up;
    o.nup = 1;
    o.down = down;
    o.ndown = 1;
    o.flags = flags;
    o.reason = "another key";
    char *err = NULL;
    int rc = dw_sqlite_open(&f->h2, f->t.db, &o, &err);
    if (rc != DW_OK)
        fail_msg("opening %s: %d %s", name, rc, err ? err : "");
    dw_migration *h2 = f->h2;
    if (!(flags & DW_OPEN_REDEFINE))
        assert_dw_ok(h2, dw_stage_set(h2, DW_STAGE_DUAL_WRITE, NULL, 0));
    dw_value k = dw_text("red");
    assert_dw_ok(h2, dw_override_set(h2, &k, 1, 1, DW_STAGE_LIVE, NULL));
    fixture_exec(f, "UPDATE tags_v2 SET hex = 'truth' WHERE name = 'red'");
    dw_backfill_progress p;
    assert_dw_ok(h2, dw_backfill(&p, h2, NULL));
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM tags_v2 WHERE "
                                    "name = 'blue' AND hex = '0000ff'"),
                     1);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM tags_v2 WHERE "
                                    "name = 'red' AND hex = 'truth'"),
                     1);
}

static void test_backfill_skip_set_redefined_key(void **state)
{
    routed_backfill_of_tags(*state, "items_routing", DW_OPEN_REDEFINE);
}

static void test_backfill_skip_set_folded_name(void **state)
{
    routed_backfill_of_tags(*state, "ITEMS_ROUTING", 0);
}

/* Keys routed to stages trusting new, while the backfill copies old to
 * new: the set-based copy and delete leave them alone, and each is synced
 * from the side its own stage trusts -- at a batch's first and last key,
 * at the end key and past it. */
static void test_backfill_skips_keys_trusting_other_side(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 40, DW_STAGE_DUAL_WRITE);
    backfill_and_verify(h);
    /* LIVE keys whose new row is the truth: the first and last key of a
     * 10-row batch, and the end key. */
    int64_t live[] = {10, 11, 20, 40};
    for (int i = 0; i < 4; i++) {
        override1(h, live[i], DW_STAGE_LIVE);
        char sql[128];
        snprintf(sql, sizeof sql,
                 "UPDATE items_v2 SET title = 'new truth %lld', note = "
                 "'kept' WHERE id = %lld",
                 (long long)live[i], (long long)live[i]);
        fixture_exec(f, sql);
    }
    /* A COMPLETE key lives on new alone: its new row, without an old one,
     * is no orphan; a new-only LIVE key past the end comes down to old. */
    override1(h, 30, DW_STAGE_COMPLETE);
    override1(h, 41, DW_STAGE_LIVE);
    fixture_exec(f, "DELETE FROM items WHERE id = 30;"
                    "UPDATE items_v2 SET title = 'complete' WHERE id = 30;"
                    "INSERT INTO items_v2(id, org, title, quantity, note) "
                    "VALUES (41, 'org-1', 'past the end', 41, 'new only')");
    /* Keys of the migration's own stage drifted on new: copied up. */
    fixture_exec(f, "UPDATE items_v2 SET title = 'drift' WHERE id IN "
                    "(9, 12, 21, 39)");

    dw_backfill_progress p = backfill_counted(f, 10, NULL);
    assert_int_equal(p.batches, 4);
    for (int i = 0; i < 4; i++) {
        char want[32];
        snprintf(want, sizeof want, "new truth %lld", (long long)live[i]);
        assert_string_equal(NEW_CELL(f->t.db, "title", live[i]), want);
        assert_string_equal(NEW_CELL(f->t.db, "note", live[i]), "kept");
        assert_string_equal(OLD_CELL(f->t.db, "name", live[i]), want);
    }
    assert_true(new_has(f->t.db, 30));
    assert_false(old_has(f->t.db, 30));
    assert_string_equal(NEW_CELL(f->t.db, "title", 30), "complete");
    assert_string_equal(OLD_CELL(f->t.db, "name", 41), "past the end");
    assert_string_equal(NEW_CELL(f->t.db, "note", 41), "new only");
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items_v2 WHERE "
                                    "title = 'drift'"),
                     0);
    assert_string_equal(NEW_CELL(f->t.db, "title", 12), "item 12");
}

/* A canary at a stage trusting new: its keys are found in each batch's
 * range and skipped by the set-based statements, the rest copied up. */
static void test_backfill_skips_canary_trusting_other_side(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 60, DW_STAGE_DUAL_WRITE);
    backfill_and_verify(h);
    assert_dw_ok(h, set_canary(h, 50, NULL, DW_STAGE_LIVE, DW_PROMOTE_NONE,
                               0, NULL));
    int in_canary[61] = {0}, members = 0;
    for (int id = 1; id <= 60; id++) {
        int route;
        stage_of_key(h, id, &route);
        in_canary[id] = route == DW_ROUTE_CANARY;
        members += in_canary[id];
        char sql[128];
        snprintf(sql, sizeof sql,
                 "UPDATE %s SET %s = 'drift %d' WHERE id = %d",
                 in_canary[id] ? "items_v2" : "items",
                 in_canary[id] ? "title" : "name", id, id);
        fixture_exec(f, sql);
    }
    assert_true(members > 10 && members < 50);
    /* One canary key is overridden back to the migration's stage: copied
     * up like the others. */
    int back = 1;
    while (!in_canary[back])
        back++;
    override1(h, back, DW_STAGE_DUAL_WRITE);
    in_canary[back] = 0;
    char sql[128];
    snprintf(sql, sizeof sql,
             "UPDATE items SET name = 'drift %d' WHERE id = %d", back, back);
    fixture_exec(f, sql);

    backfill_counted(f, 7, NULL);
    for (int id = 1; id <= 60; id++) {
        char want[32];
        snprintf(want, sizeof want, "drift %d", id);
        assert_string_equal(NEW_CELL(f->t.db, "title", id), want);
        assert_string_equal(OLD_CELL(f->t.db, "name", id), want);
    }
}

/* Keys of two columns (one of them TEXT), overridden to LIVE at batch
 * boundaries: skipped by key tuple, not by one column. */
static void test_backfill_skips_composite_keys(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = open_members(
        f, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c"
           " WHERE i < 5) INSERT INTO members SELECT o, i, 'r' || i FROM c,"
           " (SELECT 'a' AS o UNION ALL SELECT 'b' UNION ALL SELECT 'c')");
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, NULL, 0));
    backfill_and_verify(h);
    /* ["a",5] ends the first 5-row batch, ["b",1] starts the second; ["b",5]
     * shares its uid with ["a",5] and is not routed. */
    dw_value ks[4] = {dw_text("a"), dw_int(5), dw_text("b"), dw_int(1)};
    assert_dw_ok(h, dw_override_set(h, ks, 2, 2, DW_STAGE_LIVE, NULL));
    fixture_exec(f, "UPDATE members_v2 SET role_name = 'new truth' WHERE "
                    "(org, uid) IN (VALUES ('a', 5), ('b', 1));"
                    "UPDATE members_v2 SET role_name = 'drift' WHERE "
                    "(org, uid) IN (VALUES ('b', 5), ('a', 1))");
    backfill_counted(f, 5, NULL);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM members_v2 WHERE "
                                    "role_name = 'new truth'"),
                     2);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM members WHERE "
                                    "role = 'new truth' AND ((org = 'a' AND "
                                    "uid = 5) OR (org = 'b' AND uid = 1))"),
                     2);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM members_v2 WHERE "
                                    "role_name = 'drift'"),
                     0);
    verify_clean(h);
}

static int stop_after_one(const dw_backfill_progress *p, void *payload)
{
    (void)p;
    (void)payload;
    return 1;
}

/* An override set by another connection between two calls of a backfill
 * (the first stopped with DW_MORE): the next batch skips the key. */
static void test_backfill_key_overridden_between_batches(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 30, DW_STAGE_DUAL_WRITE);
    backfill_and_verify(h);
    fixture_connect_second(f);
    f->h2 = open_items_ok(f->db2);
    dw_backfill_options o = DW_BACKFILL_OPTIONS_INIT;
    o.batch_rows = 10;
    o.batch_ms = -1;
    o.flags = DW_BACKFILL_RESTART;
    o.progress = stop_after_one;
    dw_backfill_progress p;
    assert_int_equal(dw_backfill(&p, h, &o), DW_MORE);
    assert_int_equal(p.batches, 1);

    dw_value k = dw_int(25);
    assert_dw_ok(f->h2, dw_override_set(f->h2, &k, 1, 1, DW_STAGE_LIVE,
                                        NULL));
    exec_ok(f->db2, "UPDATE items_v2 SET title = 'new truth' WHERE id = 25");
    o.flags = 0;
    o.progress = NULL;
    assert_dw_ok(h, dw_backfill(&p, h, &o));
    assert_true(p.finished);
    assert_string_equal(NEW_CELL(f->t.db, "title", 25), "new truth");
    assert_string_equal(OLD_CELL(f->t.db, "name", 25), "new truth");
}

/* A repair syncs a key from the side its own stage trusts. */
static void test_repair_respects_overrides(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 4, DW_STAGE_DUAL_WRITE);
    backfill_and_verify(h);
    override1(h, 4, DW_STAGE_LIVE);
    fixture_exec(f, "UPDATE items_v2 SET title = 'NEWER' WHERE id IN (1, 4);"
                    "UPDATE items SET name = 'OLDER' WHERE id IN (1, 4)");
    dw_value ks[2] = {dw_int(1), dw_int(4)};
    dw_repair_result rr;
    assert_dw_ok(h, dw_repair_keys(&rr, h, ks, 1, 2));
    assert_int_equal(rr.repaired, 2);
    /* Key 4 (LIVE): old synced from new. */
    assert_string_equal(OLD_CELL(f->t.db, "name", 4), "NEWER");
    assert_string_equal(NEW_CELL(f->t.db, "title", 4), "NEWER");
    /* Key 1 (DUAL_WRITE): new synced from old. */
    assert_string_equal(NEW_CELL(f->t.db, "title", 1), "OLDER");
    assert_string_equal(OLD_CELL(f->t.db, "name", 1), "OLDER");

    /* The divergent-key repair does the same. */
    fixture_exec(f, "UPDATE items_v2 SET title = 'N4' WHERE id = 4;"
                    "UPDATE items_v2 SET title = 'N2' WHERE id = 2");
    dw_verify_result v;
    assert_dw_ok(h, dw_verify(&v, h, NULL));
    assert_int_equal(v.different, 2);
    assert_dw_ok(h, dw_repair_divergent(&rr, h));
    assert_int_equal(rr.repaired, 2);
    assert_string_equal(OLD_CELL(f->t.db, "name", 4), "N4");
    assert_string_equal(NEW_CELL(f->t.db, "title", 2), "item 2");
}

/* The repair queue: a key at LIVE whose old-side write failed is queued,
 * and draining the queue syncs old from new (its trusted side), keeping
 * the write that succeeded. */
static void test_repair_queue_respects_overrides(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    seed_old(f->t.db, 4);
    char *err = NULL;
    assert_int_equal(open_items_as(&f->h, f->t.db, "items_queue", 1,
                                   DW_OPEN_REPAIR_QUEUE, &err),
                     DW_OK);
    dw_migration *h = f->h;
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, NULL, 0));
    override1(h, 2, DW_STAGE_LIVE);
    fixture_exec(f, "CREATE TRIGGER no_boom BEFORE UPDATE ON items "
                    "WHEN NEW.name = 'boom' BEGIN SELECT RAISE(ABORT, "
                    "'no boom'); END");
    rec r = make_rec("org-1", "boom", 22);
    assert_dw_ok(h, write_key(h, 2, &r));
    assert_string_equal(r.log, "NO");
    assert_string_equal(NEW_CELL(f->t.db, "title", 2), "boom");
    assert_string_equal(OLD_CELL(f->t.db, "name", 2), "item 2");
    int64_t queued = -1;
    assert_dw_ok(h, dw_repair_count(&queued, h));
    assert_int_equal(queued, 1);

    fixture_exec(f, "DROP TRIGGER no_boom");
    dw_repair_result rr;
    assert_dw_ok(h, dw_repair_queue(&rr, h));
    assert_int_equal(rr.repaired, 1);
    assert_string_equal(NEW_CELL(f->t.db, "title", 2), "boom");
    assert_string_equal(OLD_CELL(f->t.db, "name", 2), "boom");
    assert_string_equal(OLD_CELL(f->t.db, "qty", 2), "22");
}

/* ---- 11. canary changes are checked ------------------------------------- */

static void test_canary_checks(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 20, DW_STAGE_OFF);

    /* At OFF the new model is not written: no key may trust it. */
    assert_dw(h, set_canary(h, 10, NULL, DW_STAGE_LIVE, DW_PROMOTE_NONE, 0,
                            "too soon"),
              DW_EMISUSE);
    assert_msg_has(h, "new model");
    assert_msg_has(h, "not write");
    assert_dw(h, set_canary(h, 10, NULL, DW_STAGE_COMPLETE, DW_PROMOTE_NONE,
                            DW_STAGE_FORCE, "forced"),
              DW_EMISUSE);
    dw_routing got;
    assert_dw_ok(h, dw_routing_get(&got, h));
    assert_true(got.canary_percent == 0.0);
    /* SHADOW and DUAL_WRITE still trust old: allowed. */
    assert_dw_ok(h, set_canary(h, 10, NULL, DW_STAGE_SHADOW, DW_PROMOTE_NONE,
                               0, NULL));
    assert_dw_ok(h, set_canary(h, 10, NULL, DW_STAGE_DUAL_WRITE,
                               DW_PROMOTE_NONE, 0, NULL));
    assert_dw_ok(h, dw_routing_set(h, NULL, NULL, 0));

    /* At DUAL_WRITE without a backfill: moving keys to LIVE needs the
     * gate. */
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, NULL, 0));
    assert_dw(h, set_canary(h, 10, NULL, DW_STAGE_LIVE, DW_PROMOTE_NONE, 0,
                            NULL),
              DW_EGATE);
    assert_msg_has(h, "backfill");
    assert_dw_ok(h, dw_routing_get(&got, h));
    assert_true(got.canary_percent == 0.0);
    /* Forcing needs a reason. */
    assert_dw(h, set_canary(h, 10, NULL, DW_STAGE_LIVE, DW_PROMOTE_NONE,
                            DW_STAGE_FORCE, NULL),
              DW_EMISUSE);
    assert_dw(h, set_canary(h, 10, NULL, DW_STAGE_LIVE, DW_PROMOTE_NONE,
                            DW_STAGE_FORCE, ""),
              DW_EMISUSE);
    assert_dw_ok(h, set_canary(h, 10, NULL, DW_STAGE_LIVE, DW_PROMOTE_NONE,
                               DW_STAGE_FORCE, "incident 42"));
    last_event l;
    last_history(h, &l);
    assert_string_equal(l.event, "routing");
    assert_int_equal(l.forced, 1);
    assert_string_equal(l.reason, "incident 42");
    assert_non_null(strstr(l.detail, "gate forced"));
    assert_dw_ok(h, dw_routing_set(h, NULL, "undo", DW_STAGE_FORCE));

    /* After a backfill and a clean verification, no force is needed. */
    backfill_and_verify(h);
    assert_dw_ok(h, set_canary(h, 10, NULL, DW_STAGE_LIVE, DW_PROMOTE_NONE, 0,
                               "open gate"));
    last_history(h, &l);
    assert_string_equal(l.event, "routing");
    assert_int_equal(l.forced, 0);
    assert_null(strstr(l.detail, "gate forced"));
    dw_backfill_progress bp;
    assert_dw_ok(h, dw_backfill_status(&bp, h));
    assert_true(bp.finished);
    assert_false(bp.stale);
}

/* A canary change that starts writing a side for some keys makes the
 * finished backfill stale: the gates want a new one. */
static void test_canary_makes_backfill_stale(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 20, DW_STAGE_DUAL_WRITE);
    backfill_and_verify(h);
    dw_backfill_progress bp;

    /* Same sides written (DUAL_WRITE -> SHADOW): still good. */
    assert_dw_ok(h, set_canary(h, 30, NULL, DW_STAGE_SHADOW, DW_PROMOTE_NONE,
                               0, NULL));
    assert_dw_ok(h, dw_backfill_status(&bp, h));
    assert_true(bp.finished);
    assert_false(bp.stale);

    /* Canary keys stop getting new writes (OFF), then start again. */
    assert_dw_ok(h, set_canary(h, 30, NULL, DW_STAGE_OFF, DW_PROMOTE_NONE, 0,
                               NULL));
    assert_dw_ok(h, set_canary(h, 30, NULL, DW_STAGE_SHADOW, DW_PROMOTE_NONE,
                               0, NULL));
    assert_dw_ok(h, dw_backfill_status(&bp, h));
    assert_true(bp.stale);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_SHADOW, NULL, 0));
    assert_dw(h, dw_stage_set(h, DW_STAGE_LIVE, NULL, 0), DW_EGATE);
    backfill_and_verify(h);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_LIVE, NULL, 0));
}

/* Moving canary keys back to the old model is gated too: keys that went
 * through COMPLETE left the old model behind, and only a backfill and a
 * clean verification show it complete again. */
static void test_canary_rollback_gated(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 10, DW_STAGE_DUAL_WRITE);
    backfill_and_verify(h);
    assert_dw_ok(h, set_canary(h, 40, NULL, DW_STAGE_LIVE, DW_PROMOTE_NONE, 0,
                               NULL));
    /* A dirty verification closes the gate. */
    fixture_exec(f, "UPDATE items_v2 SET title = 'drift' WHERE id = 1");
    dw_verify_result v;
    assert_dw_ok(h, dw_verify(&v, h, NULL));
    assert_false(v.clean);
    assert_dw(h, set_canary(h, 40, NULL, DW_STAGE_SHADOW, DW_PROMOTE_NONE, 0,
                            "roll back"),
              DW_EGATE);
    assert_msg_has(h, "different");
    dw_routing r;
    assert_dw_ok(h, dw_routing_get(&r, h));
    assert_int_equal(r.canary_stage, DW_STAGE_LIVE);
    /* Forced, with a reason, it passes and the history says so. */
    assert_dw_ok(h, set_canary(h, 40, NULL, DW_STAGE_SHADOW, DW_PROMOTE_NONE,
                               DW_STAGE_FORCE, "roll back"));
    last_event l;
    last_history(h, &l);
    assert_string_equal(l.event, "routing");
    assert_int_equal(l.forced, 1);
    /* Back between two stages that trust the old model: no gate. */
    assert_dw_ok(h, dw_routing_set(h, NULL, "all back", 0));
}

/* Cohort membership must follow the row alone: a subquery is refused,
 * and dw_mirror() refuses when the cohort could have moved the key between
 * models it cannot tell apart. */
static void test_cohort_row_alone_and_mirror(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 10, DW_STAGE_DUAL_WRITE);
    assert_dw(h, set_canary(h, 0, "id IN (SELECT id FROM items_v2)",
                            DW_STAGE_SHADOW, DW_PROMOTE_NONE, 0, NULL),
              DW_EMISUSE);
    assert_msg_has(h, "subquer");
    /* The word inside a string is data, not a subquery. */
    assert_dw_ok(h, set_canary(h, 0, "name <> 'select'", DW_STAGE_SHADOW,
                               DW_PROMOTE_NONE, 0, NULL));
    /* Canary at SHADOW and migration at DUAL_WRITE trust the same model:
     * dw_mirror works. */
    dw_value k = dw_int(3);
    assert_dw_ok(h, dw_mirror(h, &k, 1));
    backfill_and_verify(h);
    assert_dw_ok(h, set_canary(h, 0, "org = 'org-7'", DW_STAGE_LIVE,
                               DW_PROMOTE_NONE, 0, NULL));
    /* Now they differ: which side did the caller write? Refused, and the
     * caller's change is left as it was. */
    fixture_exec(f, "UPDATE items SET name = 'mine' WHERE id = 1");
    k = dw_int(1);
    assert_dw(h, dw_mirror(h, &k, 1), DW_EMISUSE);
    assert_msg_has(h, "dw_mirror cannot tell");
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items WHERE "
                                    "id = 1 AND name = 'mine'"),
                     1);
}

/* An application function registered without SQLITE_DETERMINISTIC. */
static void app_flip(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    (void)argv;
    sqlite3_result_int(ctx, 1);
}

/* A cohort that calls a function whose result is not the row's alone is
 * refused, naming the function; nothing is stored. Deterministic
 * functions, date functions over the row, and keywords that look like
 * calls pass. */
static void test_cohort_refuses_non_deterministic(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 10, DW_STAGE_DUAL_WRITE);
    assert_int_equal(sqlite3_create_function(f->t.db, "app_flip", 0,
                                             SQLITE_UTF8, NULL, app_flip,
                                             NULL, NULL),
                     SQLITE_OK);
    static const struct {
        const char *cohort, *named;
    } refused[] = {
        {"abs(random()) % 2 = 0", "random()"},
        {"length(randomblob(id)) > 3", "randomblob()"},
        {"id > changes()", "changes()"},
        {"id = last_insert_rowid()", "last_insert_rowid()"},
        {"org = 'org-7' AND \"RANDOM\" ( ) > 0", "RANDOM()"},
        {"name < CURRENT_TIMESTAMP", "CURRENT_TIMESTAMP()"},
        {"id < total_changes()", "total_changes()"},
        {"app_flip()", "app_flip()"},
        {"date('now') > '2020-01-01'", "date('now')"},
        {"julianday( 'NOW' ) - id > 0", "julianday('now')"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        assert_dw(h, set_canary(h, 0, refused[i].cohort, DW_STAGE_SHADOW,
                                DW_PROMOTE_NONE, 0, "try"),
                  DW_EMISUSE);
        if (!strstr(dw_errmsg(h), refused[i].named))
            print_error("%s: %s\n", refused[i].cohort, dw_errmsg(h));
        assert_msg_has(h, refused[i].named);
        assert_msg_has(h, "old row alone");
    }
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM dw_migrations "
                                    "WHERE canary_cohort IS NOT NULL"),
                     0);
    assert_dw_ok(h, set_canary(h, 0,
                               "abs(id) % 2 = 0 AND upper(org) LIKE 'ORG%' "
                               "AND id IN (1, 2, 3) AND CAST(id AS TEXT) "
                               "<> date(id, 'unixepoch') AND name <> 'now'",
                               DW_STAGE_SHADOW, DW_PROMOTE_NONE, 0, NULL));
}

/* How many of the cohorts dw_routing_set() does not answer with `want`,
 * each printed. */
static int cohorts_not_answered(dw_migration *h, const char *const *cohorts,
                                size_t n, int want)
{
    int wrong = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = set_canary(h, 0, cohorts[i], DW_STAGE_SHADOW,
                            DW_PROMOTE_NONE, 0, "try");
        if (rc != want)
            print_error("%s: %s (%s)\n", cohorts[i], dw_errstr(rc),
                        dw_errmsg(h));
        wrong += rc != want;
    }
    return wrong;
}

/* Calls that read the clock or chance however they are spelled: no
 * argument (the date functions then mean now), 'now' past the first
 * argument, comments or quotes between the name and its '('. Columns and
 * strings that merely say "random" or "now" pass, and so does an
 * application function registered as deterministic. */
static void test_cohort_refuses_hidden_clocks(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 10, DW_STAGE_DUAL_WRITE);
    static const char *const refused[] = {
        "julianday() > id",
        "date() > org",
        "time() <> org",
        "datetime() > org",
        "unixepoch() > id",
        "strftime('%Y') > org",
        "strftime('%s', 'now') > id",
        "strftime('%s','NOW') > id",
        "date(name, 'start of day') < date('2020-01-01') OR "
        "datetime(  'Now', '+1 day') > org",
        "random /* why not */ () > 0",
        "random -- a comment\n () > 0",
        "[random]() > 0",
        "`random`() > 0",
        "abs ( random ( ) ) % 2 = 0",
        "id IN (SELECT random())",
        "sum(id) OVER () > 3",
    };
    assert_int_equal(cohorts_not_answered(h, refused,
                                          sizeof refused / sizeof *refused,
                                          DW_EMISUSE),
                     0);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM dw_migrations "
                                    "WHERE canary_cohort IS NOT NULL"),
                     0);
    assert_int_equal(sqlite3_create_function(f->t.db, "app_same", 1,
                                             SQLITE_UTF8 |
                                                 SQLITE_DETERMINISTIC,
                                             NULL, app_flip, NULL, NULL),
                     SQLITE_OK);
    static const char *const passed[] = {
        "app_same(id) = 1",
        "name <> 'random()' AND org <> 'now'",
        "date(name) <> 'now' AND strftime('%Y', name) > '2000'",
        "/* random() */ id > 2 -- date('now')\n",
    };
    assert_int_equal(cohorts_not_answered(h, passed,
                                          sizeof passed / sizeof *passed,
                                          DW_OK),
                     0);
}

/* dw_routing_get() hands out the handle's own cohort string; passing the
 * struct back while the stored routing changes under it must not read
 * freed memory (ASan and valgrind watch this test). */
static void test_get_modify_set(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 10, DW_STAGE_OFF);
    assert_dw_ok(h, set_canary(h, 0, "org = 'org-7'", DW_STAGE_SHADOW,
                               DW_PROMOTE_NONE, 0, NULL));
    dw_routing r;
    assert_dw_ok(h, dw_routing_get(&r, h));
    /* Another handle changes the cohort: the next call reloads it. */
    dw_migration *h2 = open_items_ok(f->t.db);
    assert_dw_ok(h2, set_canary(h2, 0, "org = 'org-8'", DW_STAGE_SHADOW,
                                DW_PROMOTE_NONE, 0, NULL));
    r.canary_percent = 1.0;
    assert_dw_ok(h, dw_routing_set(h, &r, "widen", 0));
    dw_routing now;
    assert_dw_ok(h, dw_routing_get(&now, h));
    assert_string_equal(now.canary_cohort, "org = 'org-7'");
    dw_close(h2);
}

/* At OFF the setup SQL has not run; routing that makes keys write the new
 * model runs it first, before any key is copied. */
static int open_with_setup(dw_migration **out, sqlite3 *db)
{
    /* The new model's note comes from data the setup SQL provides: copied
     * before the setup, it would be NULL and the NOT NULL refuses it. */
    static const dw_column_map up[] = {
        {"org", "org"},
        {"title", "name"},
        {"quantity", "qty"},
        {"note", "(SELECT label FROM labels WHERE id = 1)"}};
    static const dw_column_map down[] = {
        {"org", "org"}, {"name", "title"}, {"qty", "quantity"}};
    dw_options o = options_for("items_setup", TEST_SIDE("items", KEY, OLD_COLS),
                               TEST_SIDE("items_v2", KEY, NEW_COLS));
    o.up = up;
    o.nup = 4;
    o.down = down;
    o.ndown = 3;
    o.setup_sql = "INSERT INTO labels(id, label) VALUES(1, 'from setup') "
                  "ON CONFLICT(id) DO NOTHING;"
                  "UPDATE setup_runs SET n = n + 1";
    return dw_sqlite_open(out, db, &o, NULL);
}

static void test_setup_sql_before_routed_writes(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    seed_old(f->t.db, 6);
    fixture_exec(f, "CREATE TABLE labels(id INTEGER PRIMARY KEY, label TEXT);"
                    "CREATE TABLE setup_runs(n INTEGER);"
                    "INSERT INTO setup_runs VALUES(0)");
    assert_int_equal(open_with_setup(&f->h, f->t.db), DW_OK);
    dw_migration *h = f->h;
    const char *runs = "SELECT n FROM setup_runs";

    /* An override that writes new: setup first, then the sync. */
    override1(h, 1, DW_STAGE_DUAL_WRITE);
    assert_true(fixture_int(f, runs) >= 1);
    assert_string_equal(NEW_CELL(f->t.db, "note", 1), "from setup");

    /* A canary or a promotion stage that writes new runs it too. */
    fixture_exec(f, "DELETE FROM labels; UPDATE setup_runs SET n = 0");
    assert_dw_ok(h, set_canary(h, 0, "org = 'org-7'", DW_STAGE_SHADOW,
                               DW_PROMOTE_NONE, 0, NULL));
    assert_true(fixture_int(f, runs) >= 1);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM labels"), 1);
    fixture_exec(f, "DELETE FROM labels; UPDATE setup_runs SET n = 0");
    assert_dw_ok(h, dw_routing_set(h, NULL, NULL, 0));
    assert_dw_ok(h, set_canary(h, 0, NULL, DW_STAGE_OFF, DW_STAGE_LIVE, 0,
                               NULL));
    assert_true(fixture_int(f, runs) >= 1);
    rec r = make_rec("org-1", "promoted", 4);
    assert_dw_ok(h, write_key(h, 4, &r));
    assert_string_equal(NEW_CELL(f->t.db, "note", 4), "from setup");
}

/* ---- 12. counting ------------------------------------------------------- */

static void test_routing_count(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 6, DW_STAGE_DUAL_WRITE);
    exec_ok(f->t.db,
            "UPDATE items SET org = CASE WHEN id IN (1, 3) THEN 'org-7' "
            "ELSE 'org-1' END;"
            "INSERT INTO items_v2(id, org, title, quantity) "
            "VALUES(9, 'org-1', 'new only', 9)");
    assert_dw_ok(h, set_canary(h, 0, "org = 'org-7'", DW_STAGE_SHADOW,
                               DW_STAGE_LIVE, 0, NULL));
    rec r = make_rec("org-1", "five", 5);
    dw_value k5 = dw_int(5);
    assert_dw_ok(h, dw_write(h, &k5, 1, put_old, NULL, &r)); /* promoted */
    override1(h, 2, DW_STAGE_RAMPDOWN);                      /* synced up */
    override1(h, 3, DW_STAGE_OFF);      /* out of the canary, no sync */
    override1(h, 100, DW_STAGE_COMPLETE); /* no rows at all */
    override1(h, 6, DW_STAGE_LIVE);
    fixture_exec(f, "DELETE FROM items WHERE id = 6;"
                    "DELETE FROM items_v2 WHERE id = 6");

    /* Keys 1..5 and 9: 1 canary SHADOW, 2 RAMPDOWN, 3 OFF, 4 and 9
     * DUAL_WRITE, 5 promoted LIVE. */
    dw_routing_progress p;
    memset(&p, 0x5a, sizeof p);
    assert_dw_ok(h, dw_routing_count(&p, h));
    assert_int_equal(p.keys, 6);
    assert_int_equal(p.by_stage[DW_STAGE_OFF], 1);
    assert_int_equal(p.by_stage[DW_STAGE_DUAL_WRITE], 2);
    assert_int_equal(p.by_stage[DW_STAGE_SHADOW], 1);
    assert_int_equal(p.by_stage[DW_STAGE_LIVE], 1);
    assert_int_equal(p.by_stage[DW_STAGE_RAMPDOWN], 1);
    assert_int_equal(p.by_stage[DW_STAGE_COMPLETE], 0);
    assert_int_equal(p.overridden, 3);
    assert_int_equal(p.promoted, 1);
    assert_int_equal(p.in_canary, 1);
    assert_int_equal(p.overrides_without_row, 2);
    assert_int_equal(p.old_rows, 5);
    assert_int_equal(p.covered, 2);
    assert_int_equal(p.new_rows, 3);

    /* Inside the caller's read transaction it sees what the caller sees. */
    fixture_exec(f, "BEGIN; DELETE FROM items WHERE id = 4");
    assert_dw_ok(h, dw_routing_count(&p, h));
    assert_int_equal(p.keys, 5);
    assert_int_equal(p.old_rows, 4);
    fixture_exec(f, "ROLLBACK");
}

/* `promoted` counts keys present on a side ("those keys"), like
 * `overridden`: a promoted key whose rows are gone counts only among the
 * overrides without a row. */
static void test_routing_count_promoted_without_row(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 3, DW_STAGE_OFF);
    assert_dw_ok(h, set_canary(h, 0, NULL, DW_STAGE_OFF, DW_STAGE_DUAL_WRITE,
                               0, NULL));
    rec r = make_rec("org-1", "one", 1);
    assert_dw_ok(h, write_key(h, 1, &r));
    assert_key_stage(h, 1, DW_STAGE_DUAL_WRITE, DW_ROUTE_OVERRIDE);
    fixture_exec(f, "DELETE FROM items WHERE id = 1;"
                    "DELETE FROM items_v2 WHERE id = 1");
    dw_routing_progress p;
    assert_dw_ok(h, dw_routing_count(&p, h));
    assert_int_equal(p.keys, 2);
    assert_int_equal(p.overridden, 0);
    assert_int_equal(p.overrides_without_row, 1);
    assert_true(p.promoted <= p.overridden);
}

/* ---- 13 and 15. the contract -------------------------------------------- */

static void test_contract_and_routing(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 4, DW_STAGE_DUAL_WRITE);
    backfill_and_verify(h);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_COMPLETE, "fast", DW_STAGE_FORCE));
    char path[400];
    snprintf(path, sizeof path, "%s/items.bak", f->t.dir);

    /* An override below COMPLETE keeps the old model in use. */
    override1(h, 1, DW_STAGE_RAMPDOWN);
    assert_dw(h, dw_contract(h, path, NULL), DW_EGATE);
    assert_msg_has(h, "overrid");
    assert_int_equal(access(path, F_OK), -1);
    override1(h, 1, DW_STAGE_COMPLETE);

    /* So does a canary below COMPLETE. */
    assert_dw_ok(h, set_canary(h, 50, NULL, DW_STAGE_RAMPDOWN,
                               DW_PROMOTE_NONE, 0, NULL));
    assert_dw(h, dw_contract(h, path, NULL), DW_EGATE);
    assert_msg_has(h, "canary");
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM sqlite_schema "
                                    "WHERE name = 'items'"),
                     1);

    /* Everything at COMPLETE: the contract goes through. */
    assert_dw_ok(h, set_canary(h, 50, NULL, DW_STAGE_COMPLETE,
                               DW_PROMOTE_NONE, 0, NULL));
    assert_dw_ok(h, dw_contract(h, path, "retired"));
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM sqlite_schema "
                                    "WHERE name = 'items'"),
                     0);

    /* 15: with the old model dropped, routing is refused. */
    dw_value k = dw_int(2);
    assert_dw(h, dw_override_set(h, &k, 1, 1, DW_STAGE_RAMPDOWN, NULL),
              DW_EMISUSE);
    assert_msg_has(h, "contract");
    assert_dw(h, set_canary(h, 10, NULL, DW_STAGE_LIVE, DW_PROMOTE_NONE, 0,
                            NULL),
              DW_EMISUSE);
    assert_msg_has(h, "contract");
    dw_routing_progress p;
    assert_dw(h, dw_routing_count(&p, h), DW_EMISUSE);
    /* Every key is at COMPLETE now, and writes go to new only. */
    assert_key_stage(h, 2, DW_STAGE_COMPLETE, DW_ROUTE_MIGRATION);
    rec r = make_rec("org-1", "after contract", 2);
    assert_dw_ok(h, dw_write(h, &k, 1, NULL, put_new, &r));
    assert_string_equal(r.log, "N");
}

/* ---- 14. misuse --------------------------------------------------------- */

static int never_called(const dw_override_entry *e, void *payload)
{
    (void)e;
    (void)payload;
    fail_msg("the callback must not be called");
    return 1;
}

static void test_misuse(void **state)
{
    test_fixture *f = *state;
    dw_value k = dw_int(1);
    int s = -1, route = -1, cleared = 77;
    dw_routing r = DW_ROUTING_INIT;
    dw_routing_progress p;

    /* NULL handle. */
    assert_int_equal(dw_key_stage(&s, &route, NULL, &k, 1), DW_EMISUSE);
    assert_int_equal(dw_override_set(NULL, &k, 1, 1, DW_STAGE_LIVE, NULL),
                     DW_EMISUSE);
    assert_int_equal(dw_override_clear(&cleared, NULL, &k, 1, 1, NULL),
                     DW_EMISUSE);
    assert_int_equal(cleared, 0);
    assert_int_equal(dw_override_list(NULL, never_called, NULL), DW_EMISUSE);
    assert_int_equal(dw_routing_set(NULL, &r, NULL, 0), DW_EMISUSE);
    assert_int_equal(dw_routing_get(&r, NULL), DW_EMISUSE);
    memset(&p, 0x5a, sizeof p);
    assert_int_equal(dw_routing_count(&p, NULL), DW_EMISUSE);
    assert_int_equal(p.keys, 0);

    dw_migration *h = start(f, 2, DW_STAGE_OFF);
    /* NULL outputs. */
    assert_dw(h, dw_key_stage(NULL, &route, h, &k, 1), DW_EMISUSE);
    assert_dw(h, dw_routing_get(NULL, h), DW_EMISUSE);
    assert_dw(h, dw_routing_count(NULL, h), DW_EMISUSE);
    assert_dw(h, dw_override_list(h, NULL, NULL), DW_EMISUSE);
    assert_msg_has(h, "callback");
    /* Bad keys. */
    assert_dw(h, dw_key_stage(&s, &route, h, NULL, 1), DW_EMISUSE);
    assert_dw(h, dw_key_stage(&s, &route, h, &k, 2), DW_EMISUSE);
    dw_value fk = dw_float(1.5);
    assert_dw(h, dw_key_stage(&s, &route, h, &fk, 1), DW_EMISUSE);
    assert_dw(h, dw_override_set(h, NULL, 1, 1, DW_STAGE_LIVE, NULL),
              DW_EMISUSE);
    assert_dw(h, dw_override_set(h, &k, 1, 0, DW_STAGE_LIVE, NULL),
              DW_EMISUSE);
    assert_dw(h, dw_override_set(h, &k, 1, -1, DW_STAGE_LIVE, NULL),
              DW_EMISUSE);
    assert_dw(h, dw_override_set(h, &k, 2, 1, DW_STAGE_LIVE, NULL),
              DW_EMISUSE);
    assert_dw(h, dw_override_set(h, &fk, 1, 1, DW_STAGE_LIVE, NULL),
              DW_EMISUSE);
    cleared = 77;
    assert_dw(h, dw_override_clear(&cleared, h, NULL, 1, 1, NULL),
              DW_EMISUSE);
    assert_int_equal(cleared, 0);
    assert_dw(h, dw_override_clear(NULL, h, &k, 1, 0, NULL), DW_EMISUSE);
    assert_dw(h, dw_override_clear(NULL, h, &k, 1, -3, NULL), DW_EMISUSE);
    ov_list ol;
    list_overrides(h, &ol);
    assert_int_equal(ol.n, 0);
    /* A NULL cleared pointer is fine on success. */
    assert_dw_ok(h, dw_override_clear(NULL, h, &k, 1, 1, NULL));
    /* NULL settings mean none. */
    assert_dw_ok(h, dw_routing_set(h, NULL, NULL, 0));
    assert_dw_ok(h, dw_routing_get(&r, h));
    assert_true(r.canary_percent == 0.0);
    assert_null(r.canary_cohort);
    assert_int_equal(r.promote_stage, DW_PROMOTE_NONE);
    /* After a failure, a success clears the message. */
    assert_dw(h, dw_override_list(h, NULL, NULL), DW_EMISUSE);
    assert_dw_ok(h, dw_routing_get(&r, h));
    assert_string_equal(dw_errmsg(h), "not an error");
}

/* ---- 16. no routing, no extra work -------------------------------------- */

typedef struct tracer {
    int statements;
    int overrides; /* statements naming dw_overrides */
} tracer;

static int trace_stmt(unsigned type, void *ctx, void *p, void *x)
{
    (void)x;
    tracer *t = ctx;
    if (type == SQLITE_TRACE_STMT) {
        const char *sql = sqlite3_sql((sqlite3_stmt *)p);
        t->statements++;
        if (sql && strstr(sql, "dw_overrides"))
            t->overrides++;
    }
    return 0;
}

/* The statements one dw_write runs, after a first write that warms the
 * stage cache. */
static tracer traced_write(test_fixture *f, dw_migration *h, int64_t warm,
                           int64_t id)
{
    rec r = make_rec("org-1", "traced", 1);
    dw_value w = dw_int(warm);
    assert_dw_ok(h, dw_write(h, &w, 1, put_old, NULL, &r));
    tracer t = {0, 0};
    sqlite3_trace_v2(f->t.db, SQLITE_TRACE_STMT, trace_stmt, &t);
    dw_value k = dw_int(id);
    assert_dw_ok(h, dw_write(h, &k, 1, put_old, NULL, &r));
    sqlite3_trace_v2(f->t.db, 0, NULL, NULL);
    return t;
}

static void test_no_routing_no_extra_work(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 0, DW_STAGE_DUAL_WRITE);
    tracer base = traced_write(f, h, 1, 2);
    assert_true(base.statements > 0);
    assert_int_equal(base.overrides, 0);

    /* A canary alone reads no override. */
    assert_dw_ok(h, set_canary(h, 50, NULL, DW_STAGE_SHADOW, DW_PROMOTE_NONE,
                               0, NULL));
    tracer t = traced_write(f, h, 3, 4);
    assert_int_equal(t.overrides, 0);

    /* An override makes writes look keys up (the tracer does see it). */
    override1(h, 1, DW_STAGE_LIVE);
    t = traced_write(f, h, 5, 6);
    assert_true(t.overrides > 0);
    assert_true(t.statements > base.statements);

    /* Routing emptied again: back to the same work as before. */
    assert_int_equal(clear1(h, 1), 1);
    assert_dw_ok(h, dw_routing_set(h, NULL, NULL, 0));
    t = traced_write(f, h, 7, 8);
    assert_int_equal(t.overrides, 0);
    assert_int_equal(t.statements, base.statements);

    /* The same after an override set and cleared by another connection. */
    fixture_connect_second(f);
    f->h2 = open_items_ok(f->db2);
    dw_value k = dw_int(9);
    assert_dw_ok(f->h2, dw_override_set(f->h2, &k, 1, 1, DW_STAGE_LIVE, NULL));
    assert_dw_ok(f->h2, dw_override_clear(NULL, f->h2, &k, 1, 1, NULL));
    t = traced_write(f, h, 10, 11);
    assert_int_equal(t.overrides, 0);
    assert_int_equal(t.statements, base.statements);
}

/* ---- 8. a cohort predicate that fails, or no longer compiles ------------ */

/* The cohort is SQL run against each key's old row; on a row where it
 * raises an error (malformed JSON here), everything that needs the key's
 * stage fails with SQLite's reason rather than guess: dw_key_stage(),
 * dw_read(), dw_write() (before any callback runs), dw_routing_count() and
 * a backfill that routes keys. Once the row is fixed, all of them work. */
static void test_cohort_fails_on_a_row(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 0, DW_STAGE_DUAL_WRITE);
    assert_dw_ok(h, set_canary(h, 0, "json_extract(org, '$.tier') = 'gold'",
                               DW_STAGE_LIVE, DW_PROMOTE_NONE,
                               DW_STAGE_FORCE, "gold customers first"));
    /* The application's own SQL stores an org that is not JSON. */
    fixture_exec(f, "INSERT INTO items(id, org, name, qty) "
                    "VALUES(2, 'org-1', 'plain', 2)");

    dw_value k2 = dw_int(2);
    int stage = -1;
    assert_dw(h, dw_key_stage(&stage, NULL, h, &k2, 1), DW_ERROR);
    assert_msg_has(h, "cohort");
    assert_msg_has(h, "malformed JSON");

    char shape[64];
    assert_int_equal(read_shape(h, 2, shape, sizeof shape), DW_ERROR);
    assert_msg_has(h, "malformed JSON");

    rec r = make_rec("{\"tier\":\"gold\"}", "renamed", 3);
    assert_dw(h, write_key(h, 2, &r), DW_ERROR);
    assert_msg_has(h, "malformed JSON");
    assert_string_equal(r.log, ""); /* no callback ran */
    assert_string_equal(OLD_CELL(f->t.db, "name", 2), "plain");
    assert_false(new_has(f->t.db, 2));
    assert_int_equal(outside_transaction(f->t.db), 1);

    dw_routing_progress p;
    assert_dw(h, dw_routing_count(&p, h), DW_ERROR);
    assert_msg_has(h, "malformed JSON");

    dw_backfill_progress bp;
    assert_dw(h, dw_backfill(&bp, h, NULL), DW_ERROR);
    assert_msg_has(h, "malformed JSON");
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items_v2"), 0);

    /* Fixed, the key follows the migration again. */
    fixture_exec(f, "UPDATE items SET org = '{\"tier\":\"silver\"}' "
                    "WHERE id = 2");
    assert_key_stage(h, 2, DW_STAGE_DUAL_WRITE, DW_ROUTE_MIGRATION);
    assert_dw_ok(h, dw_routing_count(&p, h));
    assert_int_equal(p.keys, 1);
    assert_int_equal(p.in_canary, 0);
    assert_dw_ok(h, dw_backfill(&bp, h, NULL));
    assert_true(bp.finished);
    assert_true(new_has(f->t.db, 2));
    r = make_rec("{\"tier\":\"gold\"}", "now gold", 3);
    assert_dw_ok(h, write_key(h, 2, &r));
    assert_key_stage(h, 2, DW_STAGE_LIVE, DW_ROUTE_CANARY);
}

/* The cohort names a column that was later dropped from the old table: a
 * handle that had the predicate prepared and a handle opened afterwards
 * both fail to route a key, naming the predicate and the column; clearing
 * the routing settings is the way out. */
static void test_stored_cohort_no_longer_compiles(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 3, DW_STAGE_DUAL_WRITE);
    fixture_exec(f, "ALTER TABLE items ADD COLUMN tier TEXT;"
                    "UPDATE items SET tier = 'gold' WHERE id = 3");
    assert_dw_ok(h, set_canary(h, 0, "tier = 'gold'", DW_STAGE_SHADOW,
                               DW_PROMOTE_NONE, 0, NULL));
    assert_key_stage(h, 3, DW_STAGE_SHADOW, DW_ROUTE_CANARY);
    assert_key_stage(h, 1, DW_STAGE_DUAL_WRITE, DW_ROUTE_MIGRATION);

    fixture_exec(f, "ALTER TABLE items DROP COLUMN tier");
    dw_value k1 = dw_int(1);
    int stage = -1;
    assert_dw(h, dw_key_stage(&stage, NULL, h, &k1, 1), DW_ERROR);
    assert_msg_has(h, "tier");

    fixture_connect_second(f);
    f->h2 = open_items_ok(f->db2);
    assert_dw(f->h2, dw_key_stage(&stage, NULL, f->h2, &k1, 1), DW_ERROR);
    assert_msg_has(f->h2, "preparing the stored cohort predicate");
    assert_msg_has(f->h2, "tier");
    rec r = make_rec("org-1", "renamed", 1);
    assert_dw(f->h2, write_key(f->h2, 1, &r), DW_ERROR);
    assert_string_equal(r.log, "");
    assert_string_equal(OLD_CELL(f->t.db, "name", 1), "item 1");

    /* Clearing the canary needs no predicate. */
    assert_dw_ok(f->h2, dw_routing_set(f->h2, NULL, "cohort column dropped",
                                       0));
    assert_key_stage(f->h2, 1, DW_STAGE_DUAL_WRITE, DW_ROUTE_MIGRATION);
    assert_key_stage(h, 3, DW_STAGE_DUAL_WRITE, DW_ROUTE_MIGRATION);
    assert_dw_ok(f->h2, write_key(f->h2, 1, &r));
    assert_string_equal(NEW_CELL(f->t.db, "title", 1), "renamed");
}

/* ---- 9. promotion that does not apply ----------------------------------- */

/* Promotion moves only keys whose stage is below the promotion stage: a
 * key already at it, or past it, is written as its stage says and gets no
 * override. */
static void test_promote_not_below(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 2, DW_STAGE_SHADOW);
    for (int promote = DW_STAGE_DUAL_WRITE; promote <= DW_STAGE_SHADOW;
         promote++) {
        assert_dw_ok(h, set_canary(h, 0, NULL, DW_STAGE_OFF, promote, 0,
                                   NULL));
        rec r = make_rec("org-1", promote == DW_STAGE_SHADOW ? "at" : "past",
                         promote);
        assert_dw_ok(h, write_key(h, 1, &r));
        assert_string_equal(r.log, "ON");
        assert_key_stage(h, 1, DW_STAGE_SHADOW, DW_ROUTE_MIGRATION);
        ov_list l;
        list_overrides(h, &l);
        assert_int_equal(l.n, 0);
        assert_string_equal(NEW_CELL(f->t.db, "title", 1), r.name);
    }
}

/* ---- 10. keys with a folding collation ---------------------------------- */

/* Opens f->h as migration name on the tables tags and tags_v2 (key name,
 * colour to hex, and hex back to colour when with_down) and moves it to
 * DUAL_WRITE. */
static dw_migration *tags_at_dual_write(test_fixture *f, const char *name,
                                        int with_down)
{
    static const char *const key[] = {"name"};
    static const dw_column_map up[] = {{"hex", "colour"}};
    static const dw_column_map down[] = {{"colour", "hex"}};
    dw_options o = options_for(name, TEST_SIDE_UNLISTED("tags", key),
                               TEST_SIDE_UNLISTED("tags_v2", key));
    o.up = up;
    o.nup = 1;
    if (with_down) {
        o.down = down;
        o.ndown = 1;
    }
    assert_dw_ok(NULL, dw_sqlite_open(&f->h, f->t.db, &o, NULL));
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_DUAL_WRITE, NULL, 0));
    return f->h;
}

/* A key column whose collation folds case ("Red" and "red" are one row)
 * would give one row two key texts, two overrides, two buckets: the
 * routing calls refuse with the reason, and change nothing; writes and
 * reads without routing go on. */
static void test_routing_refused_for_folding_keys(void **state)
{
    test_fixture *f = *state;
    exec_ok(f->t.db,
            "CREATE TABLE tags(name TEXT PRIMARY KEY COLLATE NOCASE,"
            " colour TEXT);"
            "CREATE TABLE tags_v2(name TEXT PRIMARY KEY COLLATE NOCASE,"
            " hex TEXT);"
            "INSERT INTO tags VALUES('Red', 'ff0000');");
    dw_migration *h = tags_at_dual_write(f, "tags_nocase", 0);

    dw_value k = dw_text("red");
    assert_dw(h, dw_override_set(h, &k, 1, 1, DW_STAGE_SHADOW, "try"),
              DW_EMISUSE);
    assert_msg_has(h, "collation other than BINARY");
    assert_dw(h, dw_override_clear(NULL, h, &k, 1, 1, "try"), DW_EMISUSE);
    assert_msg_has(h, "collation other than BINARY");
    assert_dw(h, set_canary(h, 50, NULL, DW_STAGE_SHADOW, DW_PROMOTE_NONE, 0,
                            NULL),
              DW_EMISUSE);
    assert_msg_has(h, "collation other than BINARY");
    dw_routing_progress p;
    assert_dw(h, dw_routing_count(&p, h), DW_EMISUSE);
    assert_msg_has(h, "collation other than BINARY");
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM dw_overrides"), 0);
    dw_routing r;
    assert_dw_ok(h, dw_routing_get(&r, h));
    assert_true(r.canary_percent == 0.0);

    /* Without routing, the key is the migration's. */
    int stage = -1, route = -1;
    assert_dw_ok(h, dw_key_stage(&stage, &route, h, &k, 1));
    assert_int_equal(stage, DW_STAGE_DUAL_WRITE);
    assert_int_equal(route, DW_ROUTE_MIGRATION);
    assert_dw_ok(h, dw_mirror(h, &k, 1));
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM tags_v2 WHERE "
                                    "hex = 'ff0000'"),
                     1);
}

/* ---- 11. the backfill and keys held on the other model ------------------ */

/* At LIVE the backfill copies new to old; a key held at OFF trusts (and
 * writes) the old model alone, so its old row is the truth and its new row
 * is left behind: the backfill leaves both alone, and verification shows
 * the key as divergent, as the header says. */
static void test_backfill_leaves_key_held_at_off(void **state)
{
    test_fixture *f = *state;
    dw_migration *h = start(f, 4, DW_STAGE_DUAL_WRITE);
    dw_backfill_progress bp;
    assert_dw_ok(h, dw_backfill(&bp, h, NULL));
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_LIVE, "test setup",
                                 DW_STAGE_FORCE));
    override1(h, 2, DW_STAGE_OFF);
    rec r = make_rec("org-1", "written at off", 22);
    dw_value k2 = dw_int(2);
    assert_dw_ok(h, dw_write(h, &k2, 1, put_old, NULL, &r));
    assert_string_equal(r.log, "O");
    /* Key 3's old row drifts: LIVE trusts its new row. */
    fixture_exec(f, "UPDATE items SET name = 'stale' WHERE id = 3");

    dw_backfill_options one_by_one = DW_BACKFILL_OPTIONS_INIT;
    one_by_one.batch_rows = 1;
    one_by_one.batch_ms = -1;
    one_by_one.flags = DW_BACKFILL_RESTART; /* the last one copied up */
    assert_dw_ok(h, dw_backfill(&bp, h, &one_by_one));
    assert_true(bp.finished);
    assert_string_equal(OLD_CELL(f->t.db, "name", 2), "written at off");
    assert_string_equal(NEW_CELL(f->t.db, "title", 2), "item 2");
    assert_string_equal(OLD_CELL(f->t.db, "name", 3), "item 3");

    dw_verify_result v;
    assert_dw_ok(h, dw_verify(&v, h, NULL));
    assert_int_equal(v.keys, 4);
    assert_int_equal(v.different, 1);
}

/* ---- 12. an override whose key text SQLite will not bind ------------------ */

/* The override functions bound the key text without checking
 * sqlite3_bind_text()'s result. When the key's text ("[\"kkk...\"]", four
 * bytes longer than the key) exceeds the connection's SQLITE_LIMIT_LENGTH,
 * the bind fails with SQLITE_TOOBIG; the parameter stayed NULL, the lookup
 * found no override, and the key silently followed the migration's stage:
 * dw_key_stage() answered DUAL_WRITE for a key overridden to LIVE, and
 * dw_write() would have written old first and copied it over the new row
 * the override trusts. Now an error naming the problem, and nothing
 * written. */
static void test_override_key_text_longer_than_length_limit(void **state)
{
    test_fixture *f = *state;
    fixture_exec(f, "CREATE TABLE tags(name TEXT PRIMARY KEY, colour TEXT);"
                    "CREATE TABLE tags_v2(name TEXT PRIMARY KEY, hex TEXT);");
    dw_migration *h = tags_at_dual_write(f, "tags_long_keys", 1);
    char text[151];
    memset(text, 'k', 150);
    text[150] = '\0';
    dw_value k = dw_text(text);
    assert_dw_ok(h, dw_override_set(h, &k, 1, 1, DW_STAGE_LIVE, NULL));
    int stage = -1, route = -1;
    assert_dw_ok(h, dw_key_stage(&stage, &route, h, &k, 1));
    assert_int_equal(stage, DW_STAGE_LIVE);

    /* The key (150 bytes) is within the limit, its text (154) is not. */
    int old_limit = sqlite3_limit(f->t.db, SQLITE_LIMIT_LENGTH, 152);
    int rc = dw_key_stage(&stage, &route, h, &k, 1);
    char msg[300];
    snprintf(msg, sizeof msg, "%s", dw_errmsg(h));
    int wrc = dw_write(h, &k, 1, NULL, NULL, NULL);
    sqlite3_limit(f->t.db, SQLITE_LIMIT_LENGTH, old_limit);
    if (rc == DW_OK)
        print_error("dw_key_stage: stage %d route %d\n", stage, route);
    assert_int_equal(rc, DW_ERROR);
    assert_non_null(strstr(msg, "override"));
    assert_non_null(strstr(msg, "too big"));
    /* A write of that key fails too, before touching either side. */
    assert_int_equal(wrc, DW_ERROR);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM tags_v2"), 0);
}

/* ---- main --------------------------------------------------------------- */

#define T(fn)                                                                  \
    cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_resolution_order),
        T(test_override_history_and_replace),
        T(test_override_set_is_atomic),
        T(test_override_needs_mapping),
        T(test_cohort_delete_needs_no_mapping),
        T(test_promote_delete_needs_no_mapping),
        T(test_override_of_deleted_key_needs_no_mapping),
        T(test_override_key_of_other_type),
        T(test_routing_set_in_caller_transaction),
        T(test_other_connection_changes_seen),
        T(test_other_handle_same_connection),
        cmocka_unit_test(test_bucket_pinned_vectors),
        cmocka_unit_test(test_bucket_bad_input),
        T(test_percent_monotonic),
        T(test_percent_rounding),
        T(test_composite_and_text_keys),
        T(test_cohort),
        T(test_cohort_leaving_live_syncs_old),
        T(test_cohort_rejected),
        T(test_cohort_break_out),
        T(test_routing_settings_rejected),
        T(test_promote_on_write),
        T(test_promote_from_canary),
        T(test_swap_back_to_off),
        T(test_swap_back_from_complete),
        T(test_sides_per_key),
        T(test_backfill_respects_overrides),
        T(test_backfill_many_routed_keys),
        T(test_backfill_same_side_overrides_set_based),
        T(test_backfill_skip_only_where_skipped),
        T(test_backfill_skip_set_redefined_key),
        T(test_backfill_skip_set_folded_name),
        T(test_backfill_skips_keys_trusting_other_side),
        T(test_backfill_skips_canary_trusting_other_side),
        T(test_backfill_skips_composite_keys),
        T(test_backfill_key_overridden_between_batches),
        T(test_repair_respects_overrides),
        T(test_repair_queue_respects_overrides),
        T(test_canary_checks),
        T(test_canary_makes_backfill_stale),
        T(test_canary_rollback_gated),
        T(test_get_modify_set),
        T(test_cohort_refuses_non_deterministic),
        T(test_cohort_refuses_hidden_clocks),
        T(test_cohort_row_alone_and_mirror),
        T(test_setup_sql_before_routed_writes),
        T(test_routing_count),
        T(test_routing_count_promoted_without_row),
        T(test_contract_and_routing),
        T(test_misuse),
        T(test_no_routing_no_extra_work),
        T(test_cohort_fails_on_a_row),
        T(test_stored_cohort_no_longer_compiles),
        T(test_promote_not_below),
        T(test_routing_refused_for_folding_keys),
        T(test_backfill_leaves_key_held_at_off),
        T(test_override_key_text_longer_than_length_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
