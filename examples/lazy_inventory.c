/*
 * lazy_inventory.c -- the second worked example of libdualwrite: key
 * routing, a lazy migration driven by the users.
 *
 * A warehouse keeps its stock in one SQLite file. Version 1 of the schema
 * stores where an item sits as free text, items.location, written by hand
 * as "aisle-3/bin-12". Version 2 wants numbers it can sort and route
 * pickers with: items_v2 has the columns aisle and bin. The up mapping
 * parses the text; the down mapping builds it back.
 *
 * Instead of copying the whole table first, this migration moves records
 * one by one, as people touch them, and sweeps the rest afterwards:
 *
 *   1. schema v1 with a thousand items, one of them typed by hand long ago
 *      in a format of its own ("Aisle 3 - Bin 7");
 *   2. dim launch: the migration stays at OFF, but its routing says
 *      "promote on write to LIVE": every record a user writes is copied to
 *      the new model in that write's transaction and pinned there by an
 *      override, while the others stay at OFF;
 *   3. a published canary list: five named records "we asked customers to
 *      check" are set to SHADOW with dw_override_set();
 *   4. shadow reads watched on the canary: one of the five does not parse,
 *      and the comparison catches it, in the application's own shape,
 *      while customers still get the old model's answer;
 *   5. that record is swapped back to OFF: its reads come from the old
 *      model, which holds its latest data;
 *   6. the background sweep does the rest: DUAL_WRITE, a backfill in
 *      batches, a clean verification, SHADOW, LIVE; the swapped-back record
 *      is fixed and released (its override cleared, the new model synced);
 *   7. the end: RAMPDOWN and COMPLETE; the contract refuses while overrides
 *      still hold keys on the old model; they are cleared, and the old
 *      table is backed up and dropped.
 *
 * dw_routing_count() prints where the keys stand along the way. As in the
 * first example, only the DAO (dao_...) calls dw_write() and dw_read(); the
 * story in main() calls the DAO plus what an operator does by hand.
 *
 * The program checks every result and exits non-zero on anything it did
 * not expect. Run it with `make demo`, or: lazy_inventory [DATABASE-FILE]
 * (default: an in-memory database; a file must not hold the inventory
 * already). The contract's backup goes to a fresh temporary directory,
 * removed at the end.
 *
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include <dualwrite/sqlite.h>

/* ------------------------------------------------------------------------ */
/* Failing loudly                                                            */
/* ------------------------------------------------------------------------ */

static void die(const char *what, const char *why)
{
    fprintf(stderr, "lazy_inventory: %s: %s\n", what, why);
    exit(EXIT_FAILURE);
}

/* Exits unless a dw_ call returned DW_OK, naming the call and the reason. */
static void check_dw(const dw_migration *h, int rc, const char *what)
{
    if (rc != DW_OK) {
        fprintf(stderr, "lazy_inventory: %s: %s: %s\n", what, dw_errstr(rc),
                dw_errmsg(h));
        exit(EXIT_FAILURE);
    }
}

/* Exits when something the story relies on did not happen. */
static void expect(int condition, const char *what)
{
    if (!condition)
        die("unexpected", what);
}

static void exec_sql(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        die(sql, err ? err : sqlite3_errmsg(db));
}

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK)
        die(sql, sqlite3_errmsg(db));
    return stmt;
}

static long long query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *stmt = prepare(db, sql);
    long long value;
    if (sqlite3_step(stmt) != SQLITE_ROW)
        die(sql, sqlite3_errmsg(db));
    value = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return value;
}

/* ------------------------------------------------------------------------ */
/* The data access layer                                                     */
/* ------------------------------------------------------------------------ */

/* An item as the application sees it, whichever model it came from. */
typedef struct item {
    long long id;
    char sku[32];
    long long qty;
    char location[48];  /* "aisle-3/bin-12", or "(none)" */
    char served_by[16]; /* "items" or "items_v2": the model that answered */
} item;

typedef struct dao {
    sqlite3 *db;
    dw_migration *mig;
    dw_row *row;   /* reused by dao_get_item() */
    char why[160]; /* the DAO's own reason for its last failure */
} dao;

/* What the DAO's writes hand their two callbacks. */
typedef struct item_change {
    dao *d;
    long long qty_delta;       /* dao_adjust_qty() */
    int aisle, bin;            /* dao_move_item(), dao_receive_item() */
    const char *sku;           /* dao_receive_item() */
    long long qty;             /* dao_receive_item() */
} item_change;

/* Runs one prepared write of one row. A statement that changed no row is
 * a failure (that side has no such item), except where missing_ok says the
 * row may legitimately not exist yet -- see adjust_qty_new(). */
static int write_one_row(sqlite3_stmt *stmt, item_change *c, long long id,
                         const char *table, int missing_ok)
{
    sqlite3 *db = sqlite3_db_handle(stmt);
    int rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return dw_sqlite_result(db, rc);
    if (sqlite3_changes(db) != 1 && !missing_ok) {
        snprintf(c->d->why, sizeof c->d->why, "no item %lld in %s", id,
                 table);
        return DW_ECALLBACK;
    }
    return DW_OK;
}

/* Stock taken or received. Each model keeps its own qty column.
 *
 * The new model's updates find no row for a key the backfill has not
 * reached yet (at DUAL_WRITE and SHADOW, the untrusted side). There is
 * nothing to update then: the backfill copies the row whole later, and a
 * promotion or an override copies it right after this write, in the same
 * transaction. A callback cannot tell whether its side is the trusted one
 * for this key, so it accepts a missing row everywhere; where the new model
 * is trusted every key has its row (the gate into LIVE, promotion and
 * overrides see to that), and a missing one would show in shadow reads and
 * dw_verify(). */
static int adjust_qty_old(void *db, const dw_value *key, int nkey,
                          void *payload)
{
    item_change *c = payload;
    sqlite3_stmt *stmt;
    int rc = sqlite3_prepare_v2(
        db, "UPDATE items SET qty = qty + ?1 WHERE id = ?2", -1, &stmt, NULL);
    (void)nkey;
    if (rc != SQLITE_OK)
        return dw_sqlite_result(db, rc);
    sqlite3_bind_int64(stmt, 1, c->qty_delta);
    sqlite3_bind_int64(stmt, 2, key[0].i);
    return write_one_row(stmt, c, key[0].i, "items", 0);
}

static int adjust_qty_new(void *db, const dw_value *key, int nkey,
                          void *payload)
{
    item_change *c = payload;
    sqlite3_stmt *stmt;
    int rc = sqlite3_prepare_v2(
        db, "UPDATE items_v2 SET qty = qty + ?1 WHERE id = ?2", -1, &stmt,
        NULL);
    (void)nkey;
    if (rc != SQLITE_OK)
        return dw_sqlite_result(db, rc);
    sqlite3_bind_int64(stmt, 1, c->qty_delta);
    sqlite3_bind_int64(stmt, 2, key[0].i);
    return write_one_row(stmt, c, key[0].i, "items_v2", 1);
}

/* An item moved to another bin: text in the old model, numbers in the
 * new. */
static int move_item_old(void *db, const dw_value *key, int nkey,
                         void *payload)
{
    item_change *c = payload;
    sqlite3_stmt *stmt;
    int rc = sqlite3_prepare_v2(db,
                                "UPDATE items SET location ="
                                " printf('aisle-%d/bin-%d', ?1, ?2)"
                                " WHERE id = ?3",
                                -1, &stmt, NULL);
    (void)nkey;
    if (rc != SQLITE_OK)
        return dw_sqlite_result(db, rc);
    sqlite3_bind_int(stmt, 1, c->aisle);
    sqlite3_bind_int(stmt, 2, c->bin);
    sqlite3_bind_int64(stmt, 3, key[0].i);
    return write_one_row(stmt, c, key[0].i, "items", 0);
}

static int move_item_new(void *db, const dw_value *key, int nkey,
                         void *payload)
{
    item_change *c = payload;
    sqlite3_stmt *stmt;
    int rc = sqlite3_prepare_v2(
        db, "UPDATE items_v2 SET aisle = ?1, bin = ?2 WHERE id = ?3", -1,
        &stmt, NULL);
    (void)nkey;
    if (rc != SQLITE_OK)
        return dw_sqlite_result(db, rc);
    sqlite3_bind_int(stmt, 1, c->aisle);
    sqlite3_bind_int(stmt, 2, c->bin);
    sqlite3_bind_int64(stmt, 3, key[0].i);
    return write_one_row(stmt, c, key[0].i, "items_v2", 1);
}

/* A new item received. */
static int receive_item_old(void *db, const dw_value *key, int nkey,
                            void *payload)
{
    item_change *c = payload;
    sqlite3_stmt *stmt;
    int rc = sqlite3_prepare_v2(db,
                                "INSERT INTO items (id, sku, qty, location)"
                                " VALUES (?1, ?2, ?3,"
                                "  printf('aisle-%d/bin-%d', ?4, ?5))",
                                -1, &stmt, NULL);
    (void)nkey;
    if (rc != SQLITE_OK)
        return dw_sqlite_result(db, rc);
    sqlite3_bind_int64(stmt, 1, key[0].i);
    sqlite3_bind_text(stmt, 2, c->sku, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 3, c->qty);
    sqlite3_bind_int(stmt, 4, c->aisle);
    sqlite3_bind_int(stmt, 5, c->bin);
    return write_one_row(stmt, c, key[0].i, "items", 0);
}

static int receive_item_new(void *db, const dw_value *key, int nkey,
                            void *payload)
{
    item_change *c = payload;
    sqlite3_stmt *stmt;
    int rc = sqlite3_prepare_v2(db,
                                "INSERT INTO items_v2 (id, sku, qty, aisle,"
                                " bin) VALUES (?1, ?2, ?3, ?4, ?5)",
                                -1, &stmt, NULL);
    (void)nkey;
    if (rc != SQLITE_OK)
        return dw_sqlite_result(db, rc);
    sqlite3_bind_int64(stmt, 1, key[0].i);
    sqlite3_bind_text(stmt, 2, c->sku, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 3, c->qty);
    sqlite3_bind_int(stmt, 4, c->aisle);
    sqlite3_bind_int(stmt, 5, c->bin);
    return write_one_row(stmt, c, key[0].i, "items_v2", 0);
}

/* Every DAO write goes through dw_write() with both callbacks: the key's
 * own stage (its override, or the migration's) decides which run and in
 * what order -- at OFF only the old one, at LIVE the new one first. */
static int dao_write(dao *d, long long id, dw_write_fn old_fn,
                     dw_write_fn new_fn, item_change *c)
{
    dw_value key = dw_int(id);
    c->d = d;
    d->why[0] = '\0';
    return dw_write(d->mig, &key, 1, old_fn, new_fn, c);
}

static int dao_adjust_qty(dao *d, long long id, long long delta)
{
    item_change c;
    memset(&c, 0, sizeof c);
    c.qty_delta = delta;
    return dao_write(d, id, adjust_qty_old, adjust_qty_new, &c);
}

static int dao_move_item(dao *d, long long id, int aisle, int bin)
{
    item_change c;
    memset(&c, 0, sizeof c);
    c.aisle = aisle;
    c.bin = bin;
    return dao_write(d, id, move_item_old, move_item_new, &c);
}

static int dao_receive_item(dao *d, long long id, const char *sku,
                            long long qty, int aisle, int bin)
{
    item_change c;
    memset(&c, 0, sizeof c);
    c.sku = sku;
    c.qty = qty;
    c.aisle = aisle;
    c.bin = bin;
    return dao_write(d, id, receive_item_old, receive_item_new, &c);
}

/*
 * The reads. Both return the application's shape -- sku, qty, location as
 * text -- so a shadow read compares what a customer would be shown, not
 * merely the new model against the mapped old row. That is what catches a
 * mapping that loses information: dw_compare() and dw_verify() compare
 * through the spec (the old row mapped up against the new row), and when
 * the mapping turns a location into NULL it does so on both sides alike.
 *
 * served_by names the model that answered; it is left out of the
 * comparison (dw_read_options.ignore_columns).
 */
static int read_row(dw_row *out, void *db, const char *sql,
                    const dw_value *key)
{
    sqlite3_stmt *stmt;
    int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
    if (rc != SQLITE_OK)
        return dw_sqlite_result(db, rc);
    sqlite3_bind_int64(stmt, 1, key[0].i);
    rc = sqlite3_step(stmt);
    rc = rc == SQLITE_ROW    ? dw_sqlite_row_set_columns(out, stmt)
         : rc == SQLITE_DONE ? DW_ENOTFOUND
                             : dw_sqlite_result(db, rc);
    sqlite3_finalize(stmt);
    return rc;
}

static int read_item_old(dw_row *out, void *db, const dw_value *key,
                         int nkey, void *payload)
{
    (void)nkey;
    (void)payload;
    return read_row(out, db,
                    "SELECT sku, qty, location, 'items' AS served_by"
                    " FROM items WHERE id = ?1",
                    key);
}

static int read_item_new(dw_row *out, void *db, const dw_value *key,
                         int nkey, void *payload)
{
    (void)nkey;
    (void)payload;
    return read_row(out, db,
                    "SELECT sku, qty,"
                    " 'aisle-' || aisle || '/bin-' || bin AS location,"
                    " 'items_v2' AS served_by"
                    " FROM items_v2 WHERE id = ?1",
                    key);
}

static void copy_text(char *dst, size_t size, const dw_value *v)
{
    snprintf(dst, size, "%s",
             v != NULL && v->type == DW_TYPE_TEXT ? (const char *)v->p
                                                  : "(none)");
}

/* Reads one item from the model its key's stage trusts; at SHADOW and
 * LIVE the library reads the other model too and compares. */
static int dao_get_item(dao *d, long long id, item *out)
{
    dw_value key = dw_int(id);
    const dw_value *qty;
    int rc = dw_read(d->row, d->mig, &key, 1, read_item_old, read_item_new,
                     NULL);
    if (rc != DW_OK)
        return rc;
    out->id = id;
    copy_text(out->sku, sizeof out->sku, dw_row_get(d->row, "sku"));
    qty = dw_row_get(d->row, "qty");
    out->qty = qty != NULL && qty->type == DW_TYPE_INTEGER ? qty->i : -1;
    copy_text(out->location, sizeof out->location,
              dw_row_get(d->row, "location"));
    copy_text(out->served_by, sizeof out->served_by,
              dw_row_get(d->row, "served_by"));
    return DW_OK;
}

/* ------------------------------------------------------------------------ */
/* Schema v1, its data, and the new model                                    */
/* ------------------------------------------------------------------------ */

#define NITEMS 1000
/* The one location typed by hand, long ago, in a format of its own. */
#define ODD_ITEM 303
#define ODD_LOCATION "Aisle 3 - Bin 7"

static void create_schema_v1(sqlite3 *db)
{
    sqlite3_stmt *stmt;

    exec_sql(db, "BEGIN");
    exec_sql(db, "CREATE TABLE items ("
                 "  id INTEGER PRIMARY KEY,"
                 "  sku TEXT NOT NULL,"
                 "  qty INTEGER NOT NULL,"
                 "  location TEXT)");
    stmt = prepare(db, "WITH RECURSIVE n (i) AS"
                       " (SELECT 1 UNION ALL SELECT i + 1 FROM n"
                       "  WHERE i < ?1)"
                       " INSERT INTO items (id, sku, qty, location)"
                       " SELECT i, printf('SKU-%05d', i), (i * 37) % 120,"
                       "  printf('aisle-%d/bin-%d', 1 + i % 24,"
                       "         1 + (i * 7) % 40) FROM n");
    sqlite3_bind_int(stmt, 1, NITEMS);
    if (sqlite3_step(stmt) != SQLITE_DONE)
        die("seeding items", sqlite3_errmsg(db));
    sqlite3_finalize(stmt);
    stmt = prepare(db, "UPDATE items SET location = ?1 WHERE id = ?2");
    sqlite3_bind_text(stmt, 1, ODD_LOCATION, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 2, ODD_ITEM);
    if (sqlite3_step(stmt) != SQLITE_DONE)
        die("seeding the odd item", sqlite3_errmsg(db));
    sqlite3_finalize(stmt);
    exec_sql(db, "COMMIT");
}

/* Expand: the new table beside the old one, empty. */
static void expand_schema(sqlite3 *db)
{
    exec_sql(db, "CREATE TABLE items_v2 ("
                 "  id INTEGER PRIMARY KEY,"
                 "  sku TEXT NOT NULL,"
                 "  qty INTEGER NOT NULL,"
                 "  aisle INTEGER,"
                 "  bin INTEGER)");
}

/* ------------------------------------------------------------------------ */
/* The migration                                                             */
/* ------------------------------------------------------------------------ */

/* What the mismatch sink saw: it runs after each comparing read whose two
 * sides disagree, and is where a service would page someone. */
typedef struct alerts {
    int count;
    char last_key[32];
} alerts;

static void mismatch_sink(const dw_mismatch *m, void *payload)
{
    alerts *a = payload;
    int i;

    a->count++;
    snprintf(a->last_key, sizeof a->last_key, "%s", m->key);
    printf("  ALERT from the mismatch sink: item %s differs\n", m->key);
    for (i = 0; i < m->ndiffs; i++)
        printf("    %s: old model %s, new model %s\n", m->diffs[i].column,
               m->diffs[i].old_desc, m->diffs[i].new_desc);
}

static dw_migration *open_migration(sqlite3 *db, alerts *a)
{
    static const char *const key[] = {"id"};
    /* Up: parse "aisle-N/bin-M"; anything else gives NULL. Down: build
     * the text back. Both run inside SQLite. */
#define LOCATION_OK "location GLOB 'aisle-[0-9]*/bin-[0-9]*'"
    static const dw_column_map up[] = {
        {"sku", "sku"},
        {"qty", "qty"},
        {"aisle", "CASE WHEN " LOCATION_OK " THEN CAST(substr(location, 7,"
                  " instr(location, '/') - 7) AS INTEGER) END"},
        {"bin", "CASE WHEN " LOCATION_OK " THEN CAST(substr(location,"
                " instr(location, '/') + 5) AS INTEGER) END"}};
#undef LOCATION_OK
    static const dw_column_map down[] = {
        {"sku", "sku"},
        {"qty", "qty"},
        {"location", "'aisle-' || aisle || '/bin-' || bin"}};
    static const char *const ignored[] = {"served_by"};
    dw_options opts = DW_OPTIONS_INIT;
    dw_read_options ro = DW_READ_OPTIONS_INIT;
    dw_migration *h = NULL;
    char *err = NULL;
    int rc;

    opts.name = "inventory_locations";
    opts.old_side.table = "items";
    opts.old_side.key_columns = key;
    opts.old_side.nkey_columns = 1;
    opts.new_side.table = "items_v2";
    opts.new_side.key_columns = key;
    opts.new_side.nkey_columns = 1;
    opts.up = up;
    opts.nup = (int)(sizeof up / sizeof up[0]);
    opts.down = down;
    opts.ndown = (int)(sizeof down / sizeof down[0]);
    /* Stock levels and bin numbers are not personal data: log them raw so
     * the alert says what differs (the default logs a digest). */
    opts.flags = DW_OPEN_LOG_RAW_VALUES;
    opts.mismatch_fn = mismatch_sink;
    opts.mismatch_payload = a;
    opts.reason = "locations as numbers: aisle and bin";
    rc = dw_sqlite_open(&h, db, &opts, &err);
    if (rc != DW_OK) {
        fprintf(stderr, "lazy_inventory: dw_open: %s: %s\n", dw_errstr(rc),
                err ? err : "(no message)");
        dw_free(err);
        exit(EXIT_FAILURE);
    }
    ro.ignore_columns = ignored;
    ro.nignore_columns = 1;
    check_dw(h, dw_set_read_options(h, &ro), "dw_set_read_options");
    return h;
}

/* ------------------------------------------------------------------------ */
/* Operator actions and printing                                             */
/* ------------------------------------------------------------------------ */

static void section(const char *title)
{
    printf("\n== %s\n", title);
}

static void move_stage(dw_migration *h, int to, const char *reason)
{
    int from;
    check_dw(h, dw_stage_get(&from, h), "dw_stage_get");
    check_dw(h, dw_stage_set(h, to, reason, 0), "dw_stage_set");
    printf("  stage %s -> %s (\"%s\")\n", dw_stage_name(from),
           dw_stage_name(to), reason);
}

static const char *route_name(int route)
{
    switch (route) {
    case DW_ROUTE_MIGRATION: return "the migration's stage";
    case DW_ROUTE_CANARY: return "canary";
    case DW_ROUTE_OVERRIDE: return "override";
    default: return "?";
    }
}

/* The key's effective stage and where it comes from, checked against what
 * the story expects. */
static void expect_route(dw_migration *h, long long id, int want_stage,
                         int want_route)
{
    dw_value key = dw_int(id);
    int stage, route;
    char what[96];

    check_dw(h, dw_key_stage(&stage, &route, h, &key, 1), "dw_key_stage");
    if (stage != want_stage || route != want_route) {
        snprintf(what, sizeof what, "item #%lld is at %s (%s), not %s (%s)",
                 id, dw_stage_name(stage), route_name(route),
                 dw_stage_name(want_stage), route_name(want_route));
        die("dw_key_stage", what);
    }
}

/* Is the key's override one a write made (promoted)? -1 when none. */
typedef struct find_override {
    char key[32];
    int stage, promoted;
} find_override;

static int match_override(const dw_override_entry *e, void *payload)
{
    find_override *f = payload;
    if (strcmp(e->key, f->key) != 0)
        return 0;
    f->stage = e->stage;
    f->promoted = e->promoted;
    return 1;
}

static int override_promoted(dw_migration *h, long long id)
{
    find_override f;
    snprintf(f.key, sizeof f.key, "[%lld]", id);
    f.stage = -1;
    f.promoted = -1;
    check_dw(h, dw_override_list(h, match_override, &f), "dw_override_list");
    return f.promoted;
}

static dw_metrics metrics_of(const dw_migration *h)
{
    dw_metrics m;
    memset(&m, 0, sizeof m);
    m.version = DW_METRICS_VERSION;
    check_dw(h, dw_metrics_get(&m, h), "dw_metrics_get");
    return m;
}

/* Reads one item through the DAO and prints what the customer got, from
 * which model, at which stage, and whether the read compared both. */
static item show_item(dao *d, long long id)
{
    dw_value key = dw_int(id);
    dw_metrics before, after;
    item it;
    int stage, route;

    check_dw(d->mig, dw_key_stage(&stage, &route, d->mig, &key, 1),
             "dw_key_stage");
    before = metrics_of(d->mig);
    check_dw(d->mig, dao_get_item(d, id, &it), "dao_get_item");
    after = metrics_of(d->mig);
    printf("    #%-4lld qty %3lld at %-16s %-8s %-12s from %-8s  %s\n", id,
           it.qty, it.location, dw_stage_name(stage),
           route == DW_ROUTE_OVERRIDE ? "(override)"
           : route == DW_ROUTE_CANARY ? "(canary)"
                                      : "(migration)",
           it.served_by,
           after.mismatches > before.mismatches     ? "compared: MISMATCH"
           : after.comparisons > before.comparisons ? "compared: equal"
                                                    : "not compared");
    /* The model that answered must be the one the stage trusts. */
    expect(strcmp(it.served_by, stage >= DW_STAGE_LIVE ? "items_v2"
                                                       : "items") == 0,
           "a read was answered by the model its stage does not trust");
    return it;
}

/* Both models of one item, straight from the tables. */
static void show_both_models(sqlite3 *db, long long id)
{
    sqlite3_stmt *stmt = prepare(
        db, "SELECT (SELECT qty FROM items WHERE id = ?1),"
            " (SELECT location FROM items WHERE id = ?1),"
            " (SELECT count(*) FROM items_v2 WHERE id = ?1),"
            " (SELECT qty FROM items_v2 WHERE id = ?1),"
            " (SELECT aisle FROM items_v2 WHERE id = ?1),"
            " (SELECT bin FROM items_v2 WHERE id = ?1)");
    char aisle[24], bin[24];

    sqlite3_bind_int64(stmt, 1, id);
    if (sqlite3_step(stmt) != SQLITE_ROW)
        die("inspecting an item", sqlite3_errmsg(db));
    printf("      items    #%lld: qty %lld, location '%s'\n", id,
           (long long)sqlite3_column_int64(stmt, 0),
           sqlite3_column_type(stmt, 1) == SQLITE_NULL
               ? "NULL"
               : (const char *)sqlite3_column_text(stmt, 1));
    if (sqlite3_column_int(stmt, 2) == 0) {
        printf("      items_v2 #%lld: no row\n", id);
    } else {
        snprintf(aisle, sizeof aisle, "%s",
                 sqlite3_column_type(stmt, 4) == SQLITE_NULL
                     ? "NULL"
                     : (const char *)sqlite3_column_text(stmt, 4));
        snprintf(bin, sizeof bin, "%s",
                 sqlite3_column_type(stmt, 5) == SQLITE_NULL
                     ? "NULL"
                     : (const char *)sqlite3_column_text(stmt, 5));
        printf("      items_v2 #%lld: qty %lld, aisle %s, bin %s\n", id,
               (long long)sqlite3_column_int64(stmt, 3), aisle, bin);
    }
    sqlite3_finalize(stmt);
}

/* Where the keys stand (dw_routing_count), printed and returned. */
static dw_routing_progress show_progress(dw_migration *h)
{
    dw_routing_progress p;
    int s, first = 1;

    check_dw(h, dw_routing_count(&p, h), "dw_routing_count");
    printf("  dw_routing_count: %lld keys;", (long long)p.keys);
    for (s = DW_STAGE_OFF; s <= DW_STAGE_COMPLETE; s++)
        if (p.by_stage[s]) {
            printf("%s %s %lld", first ? "" : ",", dw_stage_name(s),
                   (long long)p.by_stage[s]);
            first = 0;
        }
    printf("\n    overridden %lld (promoted by a write %lld), in a canary"
           " %lld; the new model covers %lld of %lld old rows (%lld new"
           " rows)\n",
           (long long)p.overridden, (long long)p.promoted,
           (long long)p.in_canary, (long long)p.covered,
           (long long)p.old_rows, (long long)p.new_rows);
    return p;
}

/* Checks the counts the story predicts at one point. */
static void expect_progress(const dw_routing_progress *p, long long keys,
                            const long long by_stage[6],
                            long long overridden, long long promoted,
                            long long covered)
{
    int s;
    expect(p->keys == keys, "dw_routing_count: keys");
    for (s = 0; s < 6; s++)
        expect(p->by_stage[s] == by_stage[s], "dw_routing_count: by_stage");
    expect(p->overridden == overridden, "dw_routing_count: overridden");
    expect(p->promoted == promoted, "dw_routing_count: promoted");
    expect(p->in_canary == 0, "dw_routing_count: in_canary");
    expect(p->overrides_without_row == 0,
           "dw_routing_count: overrides_without_row");
    expect(p->covered == covered, "dw_routing_count: covered");
}

static void write_or_die(dao *d, int rc, const char *what)
{
    if (rc != DW_OK) {
        fprintf(stderr, "lazy_inventory: %s: %s: %s%s%s\n", what,
                dw_errstr(rc), dw_errmsg(d->mig), d->why[0] ? "; " : "",
                d->why);
        exit(EXIT_FAILURE);
    }
}

static int print_log_entry(const dw_mismatch_entry *e, void *payload)
{
    int *n = payload;
    (*n)++;
    printf("  mismatch log: key %s, seen %lld time%s: %s\n", e->key,
           (long long)e->count, e->count == 1 ? "" : "s", e->detail);
    return 0;
}

/* ---- backfill ---- */

typedef struct backfill_watch {
    int64_t stop_after_batches; /* 0: run to the end */
} backfill_watch;

static int print_batch(const dw_backfill_progress *p, void *payload)
{
    const backfill_watch *w = payload;
    printf("    %4lld / %lld keys  %3d%%\n", (long long)p->rows_done,
           (long long)p->rows_total,
           p->rows_total ? (int)(100 * p->rows_done / p->rows_total) : 100);
    return w->stop_after_batches != 0 &&
           p->batches >= w->stop_after_batches;
}

static int run_backfill(dw_migration *h, dw_backfill_progress *out,
                        int64_t stop_after_batches)
{
    dw_backfill_options opts = DW_BACKFILL_OPTIONS_INIT;
    backfill_watch w;
    int rc;

    /* 250 keys a batch, every batch, so the demo prints the same lines on
     * every run; a service keeps the adaptive default, or sets
     * time_limit_ms to get DW_MORE back between turns of its event loop. */
    opts.batch_rows = 250;
    opts.batch_ms = -1;
    opts.progress = print_batch;
    w.stop_after_batches = stop_after_batches;
    opts.payload = &w;
    rc = dw_backfill(out, h, &opts);
    if (rc == DW_MORE && stop_after_batches == 0)
        die("dw_backfill", "stopped before the end without being asked to");
    if (rc != DW_MORE)
        check_dw(h, rc, "dw_backfill");
    return rc;
}

static dw_verify_result verify_clean(dw_migration *h)
{
    dw_verify_result r;
    check_dw(h, dw_verify(&r, h, NULL), "dw_verify");
    printf("  dw_verify (run %lld): %lld keys, %lld missing, %lld extra,"
           " %lld different: %s\n",
           (long long)r.run_id, (long long)r.keys, (long long)r.missing,
           (long long)r.extra, (long long)r.different,
           r.clean ? "clean" : "NOT clean");
    expect(r.clean && r.full, "the models were expected to agree");
    return r;
}

/* ---- overrides ---- */

/* Collects every override's key (all "[id]" here) to clear them. */
typedef struct override_keys {
    dw_value keys[64];
    int n;
} override_keys;

static int collect_override(const dw_override_entry *e, void *payload)
{
    override_keys *k = payload;
    long long id;
    if (sscanf(e->key, "[%lld]", &id) != 1 ||
        k->n == (int)(sizeof k->keys / sizeof k->keys[0]))
        die("dw_override_list", "an unexpected key text, or too many");
    k->keys[k->n++] = dw_int(id);
    printf("    %-7s %-8s %s\n", e->key, dw_stage_name(e->stage),
           e->promoted ? "promoted by a write" : "set by dw_override_set");
    return 0;
}

static int print_history(const dw_history_entry *e, void *payload)
{
    (void)payload;
    if (strcmp(e->event, "stage") == 0)
        printf("    %-9s %s -> %s", e->event, dw_stage_name(e->from_stage),
               dw_stage_name(e->to_stage));
    else if (strcmp(e->event, "contract") == 0)
        printf("    %-9s the old table backed up and dropped", e->event);
    else
        printf("    %-9s %s", e->event, e->detail ? e->detail : "");
    if (e->reason)
        printf("%s(\"%s\")", e->detail || strcmp(e->event, "define") != 0
                                  ? " " : "", e->reason);
    printf("\n");
    return 0;
}

/* A fresh directory for the contract's backup. */
static void make_backup_dir(char *dir, size_t size)
{
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0')
        tmp = "/tmp";
    snprintf(dir, size, "%s/dualwrite-lazy-XXXXXX", tmp);
    if (mkdtemp(dir) == NULL)
        die(dir, "cannot create a temporary directory");
}

/* ------------------------------------------------------------------------ */
/* The story                                                                 */
/* ------------------------------------------------------------------------ */

/* The records "we asked customers to check", published with the launch. */
static const long long canary_items[] = {101, 202, ODD_ITEM, 404, 505};
#define NCANARY ((int)(sizeof canary_items / sizeof canary_items[0]))

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : ":memory:";
    sqlite3 *db = NULL;
    dao d;
    alerts seen;
    item it;
    dw_routing routing = DW_ROUTING_INIT, got;
    dw_routing_progress p;
    dw_backfill_progress bf;
    dw_value keys[NCANARY];
    override_keys left;
    dw_metrics m0, m1;
    char dir[256], backup[320];
    long long odd_qty;
    int i, rc, equal, cleared, n, bucket;

    memset(&d, 0, sizeof d);
    memset(&seen, 0, sizeof seen);
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die(path, sqlite3_errmsg(db));
    sqlite3_busy_timeout(db, 5000);
    if (query_int(db, "SELECT count(*) FROM sqlite_master WHERE type ="
                      " 'table' AND name IN ('items', 'items_v2')") != 0)
        die(path, "already holds the inventory; remove it or name another"
                  " file");
    exec_sql(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL");

    printf("libdualwrite %s -- a lazy migration of warehouse locations\n",
           dw_version());
    printf("database: %s\n", path);

    /* 1 ----------------------------------------------------------------- */
    section("1. Schema v1: locations are free text");
    create_schema_v1(db);
    printf("  %d items; location is text like 'aisle-3/bin-12'\n", NITEMS);
    printf("  (one of them, #%d, was typed by hand long ago: '%s')\n",
           ODD_ITEM, ODD_LOCATION);
    expand_schema(db);
    printf("  expand: items_v2 (sku, qty, aisle INTEGER, bin INTEGER),"
           " empty\n");
    d.db = db;
    d.mig = open_migration(db, &seen);
    check_dw(d.mig, dw_row_new(&d.row), "dw_row_new");
    printf("  opened migration \"%s\" at stage OFF; up parses the text,"
           " down builds it back\n", dw_name(d.mig));

    /* 2 ----------------------------------------------------------------- */
    section("2. Dim launch: the stage stays OFF, writes promote their record");
    /*
     * Promote to LIVE, not RAMPDOWN: a promoted record is served from the
     * new model at once, and at LIVE every read of it still reads the old
     * model too and compares, and every write still writes both -- so a
     * record the mapping got wrong raises an alert, and swapping it back
     * to OFF stays cheap. RAMPDOWN would stop comparing, so a bad copy
     * would go unnoticed. (SHADOW would compare but keep serving the old
     * model: nobody would use the new one yet.)
     */
    routing.promote_stage = DW_STAGE_LIVE;
    check_dw(d.mig, dw_routing_set(d.mig, &routing, "dim launch", 0),
             "dw_routing_set");
    printf("  dw_routing_set: promote on write to LIVE; no canary\n");
    p = show_progress(d.mig);
    {
        static const long long want[6] = {NITEMS, 0, 0, 0, 0, 0};
        expect_progress(&p, NITEMS, want, 0, 0, 0);
    }

    printf("  users go about their work, through the DAO:\n");
    write_or_die(&d, dao_adjust_qty(&d, 17, -2), "dao_adjust_qty");
    printf("    a picker takes 2 of #17\n");
    write_or_die(&d, dao_move_item(&d, 42, 5, 9), "dao_move_item");
    printf("    #42 is moved to aisle 5, bin 9\n");
    write_or_die(&d, dao_adjust_qty(&d, 256, 50), "dao_adjust_qty");
    printf("    50 of #256 are received\n");
    write_or_die(&d, dao_receive_item(&d, NITEMS + 1, "SKU-01001", 12, 2, 4),
                 "dao_receive_item");
    printf("    a new item, #%d, is received into aisle 2, bin 4\n",
           NITEMS + 1);
    printf("  each write ran the old model's callback only (the key was at"
           " OFF), then the\n  library copied the row up and pinned the key"
           " at LIVE, in the same transaction:\n");
    show_both_models(db, 42);
    expect_route(d.mig, 17, DW_STAGE_LIVE, DW_ROUTE_OVERRIDE);
    expect_route(d.mig, 42, DW_STAGE_LIVE, DW_ROUTE_OVERRIDE);
    expect_route(d.mig, 256, DW_STAGE_LIVE, DW_ROUTE_OVERRIDE);
    expect_route(d.mig, NITEMS + 1, DW_STAGE_LIVE, DW_ROUTE_OVERRIDE);
    expect(override_promoted(d.mig, 42) == 1, "#42 is not marked promoted");
    expect_route(d.mig, 18, DW_STAGE_OFF, DW_ROUTE_MIGRATION);
    printf("  reads through the DAO:\n");
    show_item(&d, 17);
    show_item(&d, 42);
    show_item(&d, NITEMS + 1);
    show_item(&d, 18);
    write_or_die(&d, dao_adjust_qty(&d, 42, -1), "dao_adjust_qty");
    printf("  a second write to #42 runs at LIVE: the new model first, then"
           " the old:\n");
    show_both_models(db, 42);
    p = show_progress(d.mig);
    {
        static const long long want[6] = {NITEMS - 3, 0, 0, 4, 0, 0};
        expect_progress(&p, NITEMS + 1, want, 4, 4, 4);
    }

    /* 3 ----------------------------------------------------------------- */
    section("3. A published canary list, at SHADOW");
    for (i = 0; i < NCANARY; i++)
        keys[i] = dw_int(canary_items[i]);
    check_dw(d.mig,
             dw_override_set(d.mig, keys, 1, NCANARY, DW_STAGE_SHADOW,
                             "records we asked customers to check"),
             "dw_override_set");
    printf("  dw_override_set: #101, #202, #303, #404, #505 to SHADOW (each"
           " copied up as it moved)\n");
    for (i = 0; i < NCANARY; i++)
        expect_route(d.mig, canary_items[i], DW_STAGE_SHADOW,
                     DW_ROUTE_OVERRIDE);
    expect(override_promoted(d.mig, 101) == 0, "#101 is marked promoted");
    p = show_progress(d.mig);
    {
        static const long long want[6] = {NITEMS - 8, 0, 5, 4, 0, 0};
        expect_progress(&p, NITEMS + 1, want, 9, 4, 9);
    }
    /* Why a list of overrides and not a percentage: dw_routing_set()
     * moves whole sets of keys without copying any, so it refuses a
     * canary that would trust a model the keys were never written to. */
    {
        dw_routing bad = routing;
        bad.canary_percent = 5.0;
        bad.canary_stage = DW_STAGE_LIVE;
        rc = dw_routing_set(d.mig, &bad, "5% straight to LIVE", 0);
        expect(rc == DW_EMISUSE, "a 5% canary at LIVE from OFF was not"
                                 " refused");
        printf("  a 5%% canary at LIVE instead? dw_routing_set: refused"
               " (DW_EMISUSE)\n    %s\n", dw_errmsg(d.mig));
        check_dw(d.mig, dw_routing_get(&got, d.mig), "dw_routing_get");
        keys[0] = dw_int(101);
        check_dw(d.mig, dw_key_bucket(&bucket, keys, 1), "dw_key_bucket");
        printf("    (a 5%% canary holds the keys whose bucket, dw_key_bucket(),"
               " is below 500;\n    #101's is %d. Overrides move each key"
               " with a copy: they need no gate.)\n", bucket);
        expect(got.canary_percent == 0.0 &&
                   got.promote_stage == DW_STAGE_LIVE,
               "the refused routing change was applied");
    }

    /* 4 ----------------------------------------------------------------- */
    section("4. Shadow reads on the canary: customers still get the old"
            " model");
    m0 = metrics_of(d.mig);
    for (i = 0; i < NCANARY; i++)
        show_item(&d, canary_items[i]);
    m1 = metrics_of(d.mig);
    expect(m1.comparisons - m0.comparisons == NCANARY,
           "every canary read should have compared");
    expect(m1.mismatches - m0.mismatches == 1 && seen.count == 1 &&
               strcmp(seen.last_key, "[303]") == 0,
           "exactly one mismatch, on #303, was expected");
    printf("  %d reads compared, %d mismatched: the up mapping cannot"
           " parse '%s',\n  so items_v2 holds NULL aisle and bin for"
           " #%d:\n",
           (int)(m1.comparisons - m0.comparisons),
           (int)(m1.mismatches - m0.mismatches), ODD_LOCATION, ODD_ITEM);
    show_both_models(db, ODD_ITEM);
    n = 0;
    check_dw(d.mig, dw_mismatch_log(d.mig, 10, print_log_entry, &n),
             "dw_mismatch_log");
    expect(n == 1, "one entry in the mismatch log");
    {
        dw_value odd = dw_int(ODD_ITEM);
        check_dw(d.mig, dw_compare(&equal, d.mig, &odd, 1), "dw_compare");
        expect(equal == 1, "dw_compare through the spec should agree");
    }
    printf("  dw_compare(#%d) says equal: through the spec it compares the"
           " old row mapped up\n  with the new row, and the mapping loses"
           " the location on both alike. The\n  application-shaped reads"
           " (location as text on both sides) are what caught it.\n",
           ODD_ITEM);

    /* 5 ----------------------------------------------------------------- */
    section("5. #303 swapped back to OFF until its location is fixed");
    keys[0] = dw_int(ODD_ITEM);
    check_dw(d.mig,
             dw_override_set(d.mig, keys, 1, 1, DW_STAGE_OFF,
                             "location text the new model cannot parse"),
             "dw_override_set");
    expect_route(d.mig, ODD_ITEM, DW_STAGE_OFF, DW_ROUTE_OVERRIDE);
    printf("  dw_override_set(#%d, OFF): it leaves SHADOW, where the old"
           " model was trusted,\n  so nothing needs copying; only the old"
           " model is written from now on\n", ODD_ITEM);
    write_or_die(&d, dao_adjust_qty(&d, ODD_ITEM, -4), "dao_adjust_qty");
    printf("  a customer takes 4 of #%d:\n", ODD_ITEM);
    show_both_models(db, ODD_ITEM);
    it = show_item(&d, ODD_ITEM);
    odd_qty = query_int(db, "SELECT qty FROM items WHERE id = 303");
    expect(it.qty == odd_qty && strcmp(it.location, ODD_LOCATION) == 0,
           "#303 should read the old model's latest data");
    printf("  the read comes from the old model, with the latest qty, and"
           " compares nothing\n");

    /* 6 ----------------------------------------------------------------- */
    section("6. The background sweep: DUAL_WRITE, backfill, verify, SHADOW,"
            " LIVE");
    move_stage(d.mig, DW_STAGE_DUAL_WRITE, "sweep the records nobody"
                                           " touched");
    p = show_progress(d.mig);
    {
        static const long long want[6] = {1, NITEMS - 8, 4, 4, 0, 0};
        expect_progress(&p, NITEMS + 1, want, 9, 4, 9);
    }
    printf("  dw_backfill, 250 keys a batch; each key is brought level from"
           " the model its\n  own stage trusts (this call stops after 2"
           " batches):\n");
    rc = run_backfill(d.mig, &bf, 2);
    expect(rc == DW_MORE, "the first backfill call should stop early");
    printf("  returned DW_MORE; meanwhile a picker takes 1 of #640, which"
           " the backfill has not\n  reached: the DAO's new-side update"
           " finds no row, and the promotion (DUAL_WRITE\n  is below LIVE)"
           " copies it whole:\n");
    write_or_die(&d, dao_adjust_qty(&d, 640, -1), "dao_adjust_qty");
    expect_route(d.mig, 640, DW_STAGE_LIVE, DW_ROUTE_OVERRIDE);
    show_both_models(db, 640);
    expect(query_int(db, "SELECT count(*) FROM items i JOIN items_v2 n"
                         " USING (id) WHERE id = 640 AND i.qty = n.qty") == 1,
           "#640 should have been copied up by its promotion");
    printf("  dw_backfill again, resuming:\n");
    (void)run_backfill(d.mig, &bf, 0);
    expect(bf.finished, "the backfill should have finished");
    p = show_progress(d.mig);
    {
        static const long long want[6] = {1, NITEMS - 9, 4, 5, 0, 0};
        expect_progress(&p, NITEMS + 1, want, 10, 5, NITEMS + 1);
    }

    move_stage(d.mig, DW_STAGE_SHADOW, "backfill finished");
    m0 = metrics_of(d.mig);
    for (i = 1; i <= NITEMS + 1; i++)
        check_dw(d.mig, dao_get_item(&d, i, &it), "dao_get_item");
    m1 = metrics_of(d.mig);
    printf("  read every item through the DAO: %llu compared, %llu"
           " mismatched (#%d, at OFF, is not compared)\n",
           (unsigned long long)(m1.comparisons - m0.comparisons),
           (unsigned long long)(m1.mismatches - m0.mismatches), ODD_ITEM);
    expect(m1.comparisons - m0.comparisons == NITEMS &&
               m1.mismatches == m0.mismatches,
           "every item but #303 should compare, and equal");
    verify_clean(d.mig);
    move_stage(d.mig, DW_STAGE_LIVE, "verified clean");
    p = show_progress(d.mig);
    {
        static const long long want[6] = {1, 0, 4, NITEMS - 4, 0, 0};
        expect_progress(&p, NITEMS + 1, want, 10, 5, NITEMS + 1);
    }
    printf("  overrides stay when the stage moves: the canary list, pinned"
           " at SHADOW, is now\n  behind the migration, and #%d is still"
           " at OFF\n", ODD_ITEM);

    printf("  the warehouse relabels #%d's bin, through the DAO (at OFF:"
           " the old model only):\n", ODD_ITEM);
    write_or_die(&d, dao_move_item(&d, ODD_ITEM, 3, 7), "dao_move_item");
    show_both_models(db, ODD_ITEM);
    check_dw(d.mig,
             dw_override_clear(&cleared, d.mig, keys, 1, 1,
                               "location fixed"),
             "dw_override_clear");
    expect(cleared == 1, "one override should have been cleared");
    expect_route(d.mig, ODD_ITEM, DW_STAGE_LIVE, DW_ROUTE_MIGRATION);
    printf("  dw_override_clear(#%d): OFF -> LIVE, the new model made equal"
           " to the old row\n  mapped up, in the same transaction:\n",
           ODD_ITEM);
    show_both_models(db, ODD_ITEM);
    m0 = metrics_of(d.mig);
    show_item(&d, ODD_ITEM);
    m1 = metrics_of(d.mig);
    expect(m1.matches == m0.matches + 1, "#303 should now compare equal");
    expect(seen.count == 1, "no further alert was expected");

    /* 7 ----------------------------------------------------------------- */
    section("7. The end: RAMPDOWN, COMPLETE, and the overrides left");
    move_stage(d.mig, DW_STAGE_RAMPDOWN, "a week at LIVE without alerts");
    verify_clean(d.mig);
    move_stage(d.mig, DW_STAGE_COMPLETE, "nothing reads items any more");
    p = show_progress(d.mig);
    {
        static const long long want[6] = {0, 0, 4, 5, 0, NITEMS - 8};
        expect_progress(&p, NITEMS + 1, want, 9, 5, NITEMS + 1);
    }
    make_backup_dir(dir, sizeof dir);
    snprintf(backup, sizeof backup, "%s/items.db", dir);
    rc = dw_contract(d.mig, backup, "items_v2 is all we read");
    expect(rc == DW_EGATE, "the contract should refuse while overrides"
                           " hold keys on the old model");
    printf("  dw_contract: refused (DW_EGATE)\n    %s\n", dw_errmsg(d.mig));
    printf("  the overrides left (dw_override_list):\n");
    memset(&left, 0, sizeof left);
    check_dw(d.mig, dw_override_list(d.mig, collect_override, &left),
             "dw_override_list");
    expect(left.n == 9, "nine overrides should be left");
    check_dw(d.mig,
             dw_override_clear(&cleared, d.mig, left.keys, 1, left.n,
                               "the migration caught up"),
             "dw_override_clear");
    expect(cleared == 9, "nine overrides should have been cleared");
    printf("  dw_override_clear: %d cleared (the SHADOW ones copied up on"
           " the way)\n", cleared);
    check_dw(d.mig, dw_routing_set(d.mig, NULL, "lazy phase over", 0),
             "dw_routing_set");
    printf("  dw_routing_set(NULL): promotion off\n");
    p = show_progress(d.mig);
    {
        static const long long want[6] = {0, 0, 0, 0, 0, NITEMS + 1};
        expect_progress(&p, NITEMS + 1, want, 0, 0, NITEMS + 1);
    }
    check_dw(d.mig, dw_contract(d.mig, backup, "items_v2 is all we read"),
             "dw_contract");
    printf("  dw_contract: items backed up, checked and dropped\n");
    show_item(&d, ODD_ITEM);

    section("History of the migration");
    check_dw(d.mig, dw_history(d.mig, print_history, NULL), "dw_history");

    dw_row_free(d.row);
    dw_close(d.mig);
    if (sqlite3_close(db) != SQLITE_OK)
        die("closing the database", sqlite3_errmsg(db));
    if (remove(backup) != 0 || rmdir(dir) != 0)
        fprintf(stderr, "lazy_inventory: could not remove %s\n", dir);
    printf("\ndone.\n");
    return EXIT_SUCCESS;
}
