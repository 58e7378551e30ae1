/* The fault harness's tools, shared by the fault test programs:
 *
 *   - a failing allocator, installed under SQLite with SQLITE_CONFIG_MALLOC,
 *     so that SQLite's allocations and the library's (which all go through
 *     sqlite3_malloc) fail alike;
 *   - a pass-through VFS that fails the Nth xWrite, xSync or xTruncate with an
 *     I/O error or "disk full", or ends the process at the Nth sync (a crash);
 *   - a small "world": a two-table migration with known contents, and the
 *     checks every failure point must pass (the authoritative side holds what
 *     it held or what was written, old and new agree where they agreed, the
 *     state tables are consistent, the file is intact).
 *
 * The walk, as in SQLite's own malloc and I/O tests: for N = 1, 2, ... make
 * the Nth call fail (once only, then again failing every call from the Nth
 * on), run the operation, check; stop at the first N where no fault fired.
 */
#ifndef DW_TEST_FAULT_H
#define DW_TEST_FAULT_H

#include "support.h"

/* ---- failing allocator ---------------------------------------------------- */

/* Installs the counting allocator (once per process, before any connection
 * is opened: it calls sqlite3_shutdown()). Idempotent. */
void fault_mem_install(void);
/* From now on, allocation number n (1-based, counted from this call) fails;
 * with persistent, every later one fails too. */
void fault_mem_arm(int n, int persistent);
/* Stops failing; returns how many allocations failed since the arm. */
int fault_mem_disarm(void);
/* Allocations made and not yet freed, through the installed allocator. */
int64_t fault_mem_outstanding(void);

/* ---- failing VFS ---------------------------------------------------------- */

#define FAULT_VFS "faultvfs"

enum {
    FAULT_WRITE = 1u << 0,
    FAULT_SYNC = 1u << 1,
    FAULT_TRUNCATE = 1u << 2
};

/* Registers the VFS named FAULT_VFS over the default one (not as default).
 * Idempotent. Open connections with test_db_connect_vfs(). */
void fault_vfs_register(void);
/* Calls of the kinds in `kinds` are counted from now; number n fails with
 * `err` (SQLITE_IOERR, which becomes the matching extended code, or
 * SQLITE_FULL); with persistent, every later one fails too. */
void fault_vfs_arm(unsigned kinds, int n, int persistent, int err);
/* From now on, the nth xSync ends the process at once with _exit(code): the
 * crash of a process that had written its pages but not yet synced them. */
void fault_vfs_crash_at_sync(int n, int code);
/* Stops failing; returns how many calls failed since the arm. */
int fault_vfs_disarm(void);
/* Calls of the kinds counted since the last arm (or since registration). */
int fault_vfs_calls(unsigned kinds);

/* A connection on t's file through FAULT_VFS, with a busy timeout. */
sqlite3 *test_db_connect_vfs(const test_db *t);

/* ---- the world -------------------------------------------------------------
 *
 * old:  items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER NOT NULL)
 * new:  items_v2(id INTEGER PRIMARY KEY, label TEXT NOT NULL,
 *                qty INTEGER NOT NULL CHECK (qty >= 0))
 * up:   label = upper(name), qty = qty     down: name = lower(label), qty = qty
 * setup SQL: one row in item_tags per item (idempotent). Names are lower
 * case, so down(up(row)) == row.
 */

#define WORLD_NAME "items_v2"

/* Creates the tables and `rows` old rows: id 1..rows, name 'item<id>',
 * qty id. */
void world_create(sqlite3 *db, int rows);
/* Opens (defining on first use) the world's migration; returns the dw code
 * (may fail under a fault). */
int world_open(dw_migration **out, sqlite3 *db, char **errmsg);
/* dw_open that must succeed. */
dw_migration *world_open_ok(sqlite3 *db);

/* What a write does, for the dw_write_fn callbacks below: upsert the row
 * (name, qty), or delete it. */
typedef struct world_item {
    const char *name; /* lower case; the new side stores upper(name) */
    int64_t qty;
    int delete_row;
} world_item;

/* dw_write_fn callbacks writing a world_item (the payload) to the old or the
 * new side; return the SQLite result code. */
int world_write_old(sqlite3 *db, const dw_value *key, int nkey, void *payload);
int world_write_new(sqlite3 *db, const dw_value *key, int nkey, void *payload);

/* What a check compares: the contents of one side, one row per line in key
 * order ("id|name|qty"), and the keys where old and new disagree (", "
 * separated, in order; "" when they agree everywhere). Both malloc'd, free()
 * them. */
char *world_dump(sqlite3 *db, int side);
char *world_disagreeing(sqlite3 *db);

/* A picture of a database taken before an operation. */
typedef struct world_snapshot {
    char *old_side;
    char *new_side;
    char *disagreeing;
} world_snapshot;

void world_snapshot_take(world_snapshot *s, sqlite3 *db);
void world_snapshot_free(world_snapshot *s);

/* The checks after a failure point, on a fresh connection's view:
 *  - the side `authoritative` (DW_SIDE_OLD or DW_SIDE_NEW) equals its
 *    dump in `before` or in `after` (nothing half-done: all or nothing);
 *    `after` may be NULL when the operation cannot change that side;
 *  - every key that disagrees now disagreed before, or is in `may_diverge`
 *    (a comma-separated key list, for operations that are allowed to leave
 *    keys unsynced, such as a repair-queue policy; NULL for none);
 *  - PRAGMA integrity_check says ok;
 *  - the state tables are consistent (world_state_check).
 * Fails the test, printing `where`, on the first broken rule. */
void world_check(sqlite3 *db, const char *where, int authoritative,
                 const world_snapshot *before, const world_snapshot *after,
                 const char *may_diverge);

/* The library's state tables hold together: one row per migration with a
 * stage in range, the history's last stage move ends at the stored stage, a
 * backfill cursor only while running, counters not negative, override
 * counts matching dw_overrides, no verification keys without their run.
 * Fails the test, printing `where`, otherwise. */
void world_state_check(sqlite3 *db, const char *where);

#endif
