/* The fault harness's tools, shared by the fault test programs:
 *
 *   - a failing allocator, installed under SQLite with SQLITE_CONFIG_MALLOC
 *     and under the library with dw_set_allocator(), one counter for both,
 *     so that SQLite's allocations and the library's fail alike;
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
/* Starts a new mark and returns it: allocations made from now on carry it. */
uint64_t fault_mem_mark(void);
/* Frees every live allocation made since `mark` (what a known leak lost,
 * so that the process ends clean under valgrind and LeakSanitizer);
 * returns how many. */
int fault_mem_reclaim(uint64_t mark);

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
/* Statement journals written to a file (SQLite spills one past 64 KiB)
 * since the last arm: what a statement that may abort midway costs. */
int fault_vfs_subjournals(void);

/* With 0, FAULT_VFS's xSync counts (and fails, crashes) as armed but does
 * not reach the disk: what a process crash leaves is the same (the kernel
 * keeps written pages), and walks of thousands of commits run in seconds
 * instead of minutes. 1 (the default) syncs for real. */
void fault_vfs_real_sync(int on);

/* Passes the bytes of every xWrite through FAULT_VFS, to files whose name
 * ends with `suffix` (among those opened from now on), to fn, which may
 * change them before they are written. fn NULL removes the hook. */
typedef void (*fault_write_fn)(char *buf, int n, void *payload);
void fault_vfs_write_hook(const char *suffix, fault_write_fn fn,
                          void *payload);

/* With 1, FAULT_VFS becomes the default VFS: every connection opened
 * without a VFS name, and every ATTACH, goes through it. 0 puts the real
 * default back. */
void fault_vfs_default(int on);

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
/* The world's spec alone (items -> items_v2 through the mappings above, no
 * setup SQL, no flags), for programs that build on it. */
void world_options(dw_options *o);
/* Opens (defining on first use) the world's migration; returns the dw code
 * (may fail under a fault). */
int world_open(dw_migration **out, sqlite3 *db, char **errmsg);
/* dw_open that must succeed. */
dw_migration *world_open_ok(sqlite3 *db);
/* world_open with DW_OPEN_... flags (DW_OPEN_REPAIR_QUEUE, ...): the same
 * spec and digest, another policy. */
int world_open_flags(dw_migration **out, sqlite3 *db, unsigned flags,
                     char **errmsg);

/* A second migration of the old table, SHARING_NAME: items -> items_copy
 * (a table it creates), a plain copy, taken to COMPLETE with every key
 * there on a handle of its own, closed. It no longer uses the old table,
 * so the world's contract keeps the table for that migration's own
 * contract (the core's other-migration policy over the backend's facts
 * about the other migrations). */
#define SHARING_NAME "items_copy"
void world_share_old_table(sqlite3 *db);

/* What a write does, for the dw_write_fn callbacks below: upsert the row
 * (name, qty), or delete it. */
typedef struct world_item {
    const char *name; /* lower case; the new side stores upper(name) */
    int64_t qty;
    int delete_row;
} world_item;

/* dw_write_fn callbacks writing a world_item (the payload) to the old or the
 * new side; return the SQLite result code. */
int world_write_old(void *db, const dw_value *key, int nkey, void *payload);
int world_write_new(void *db, const dw_value *key, int nkey, void *payload);

/* What a check compares: the contents of one side, one row per line in key
 * order ("id|name|qty"), and the keys where old and new disagree (", "
 * separated, in order; "" when they agree everywhere). Both malloc'd, free()
 * them. Once dw_contract() dropped the old table, its dump is "(dropped)"
 * and nothing is said to disagree (there is nothing to compare with). */
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

/* Every table of the database (the schema too) as text, rows in order, for
 * telling "as before" and "as after" apart from anything else. In the
 * library's dw_* tables a REAL value (always a time) shows as "R", so two
 * runs of one operation at different times dump alike. malloc'd. */
char *fault_db_dump(sqlite3 *db);

/* ---- the walk --------------------------------------------------------------
 *
 * One engine for every fault program: an operation (fault_op) runs on a
 * copy of a starting database (built once per operation and journal mode,
 * then copied for each failure point), under a plan (fault_plan) that fails
 * the Nth allocation or the Nth write, sync or truncate. For each N, until
 * no fault fired:
 *   1. the result is the faultless run's code or the fault's (DW_ENOMEM for
 *      memory, DW_ERROR naming the I/O problem), or one the operation lists,
 *      with a message; the connection is left outside any transaction;
 *   2. on a fresh connection (for I/O, after closing the faulted one): the
 *      whole database is as before or as after the faultless run (atomic
 *      operations; DW_OK means after; a memory failure means before), or
 *      else passes world_check() and the operation's own check; PRAGMA
 *      integrity_check says ok. In WAL mode a log still empty proves that
 *      nothing was committed, and the checks of the starting database
 *      stand. Under I/O faults, a copy of the files as a crash right after
 *      the error would leave them must hold the operation whole or not at
 *      all too (a failed commit may have reached the log);
 *   3. the failed operation, repeated without faults (memory: on the same
 *      handle; I/O: on a new connection through the VFS), gives the
 *      faultless code and the after state, and the operation's finish step
 *      passes;
 *   4. everything closed, the allocations outstanding are as before.
 *
 * Environment: DW_FAULT_STRIDE=k walks every kth N only (valgrind);
 * DW_FAULT_JOBS=n sets the worker processes (fault_run_tests);
 * DW_FAULT_KEEP_GOING=1 reports every broken rule and goes on, to survey
 * defects in one run; DW_FAULT_DUMP=text prints the database after the
 * points whose description contains the text (e.g. "N=129]").
 */

/* The engine's view of one run, given to an operation's callbacks. */
typedef struct fault_ctx {
    sqlite3 *db;      /* the connection the operation runs on */
    dw_migration *h;  /* its handle; NULL before a FAULT_OP_OPENS run */
    char *open_err;   /* dw_open's message (FAULT_OP_OPENS), dw_free'd */
    const char *dir;  /* the world's private directory (backups go there) */
    const struct fault_op *op;
    dw_row *row;      /* an empty row for reads, made before the fault */
    int stage_after;  /* the stored stage after the faultless run */
    int rerun;        /* 1 when the run repeats a failed one without faults */
    char *msg;        /* the faulted run's message, kept past the handle's
                         close (malloc'd; NULL when it had none) */
} fault_ctx;

/* Flags of a fault_op. */
enum {
    /* The run opens the handle itself (dw_open walks). */
    FAULT_OP_OPENS = 1u << 0,
    /* No migration is stored in the starting database (first dw_open). */
    FAULT_OP_BARE = 1u << 1,
    /* All or nothing: the whole database is as before or as after. */
    FAULT_OP_ATOMIC = 1u << 2,
    /* A read: DW_OK may leave the database as before (a log write that
     * failed is counted, not returned). */
    FAULT_OP_READS = 1u << 3,
    /* Writes to the file: walked by the I/O program too. */
    FAULT_OP_IO = 1u << 4,
    /* A stage move: the stored stage must be the old one or the new one. */
    FAULT_OP_STAGE = 1u << 5
};

/* Checks an operation may be excused from while a library defect is open
 * (fault_op.skip_mem, skip_io); the walk still counts and prints them. */
enum {
    FAULT_SKIP_CODE = 1u << 0,      /* an unexpected result code */
    FAULT_SKIP_STATE = 1u << 1,     /* the database after the fault */
    FAULT_SKIP_RERUN = 1u << 2,     /* the faultless repeat */
    FAULT_SKIP_LEAK = 1u << 3,      /* allocations outstanding */
    FAULT_SKIP_TXN = 1u << 4        /* a transaction left open */
};

/* A set of result codes, for fault_op.mem_codes and io_codes. */
#define FAULT_CODE(c) (1u << ((c) < 0 ? -(c) : 16 + (c)))

typedef struct fault_op {
    const char *name;
    unsigned flags;      /* FAULT_OP_... */
    unsigned open_flags; /* DW_OPEN_... of the operation's handle */
    /* Brings the starting database (the world, 8 rows, its migration
     * open in c->h unless FAULT_OP_BARE) to the operation's starting
     * state. NULL: the world as created, at OFF. */
    void (*setup)(fault_ctx *c);
    /* The operation; returns its result code. */
    int (*run)(fault_ctx *c);
    int ok_code;         /* what run returns without faults */
    int authoritative;   /* the side world_check compares */
    const char *may_diverge; /* keys allowed to disagree afterwards */
    unsigned mem_codes;  /* further codes allowed under a memory fault */
    unsigned io_codes;   /* ... under an I/O fault */
    /* Further checks of the state after a fault, on a fresh connection
     * (rc: what the faulted run returned). May be NULL. */
    void (*check)(fault_ctx *c, sqlite3 *fresh, const char *where, int rc);
    /* After the faultless repeat, on its handle: carries the operation
     * to its end (e.g. the rest of a backfill) and checks it. May be NULL. */
    void (*finish)(fault_ctx *c, const char *where);
    unsigned skip_mem, skip_io; /* FAULT_SKIP_... while a defect is open */
} fault_op;

/* What to fail. */
typedef struct fault_plan {
    int io;          /* 0: allocations; 1: VFS calls of `kinds` */
    unsigned kinds;  /* FAULT_WRITE, FAULT_SYNC, FAULT_TRUNCATE */
    int err;         /* SQLITE_IOERR or SQLITE_FULL */
    int persistent;  /* every call from the Nth on fails, not only the Nth */
    int stride;      /* walk N = 1, 1 + stride, ... (0 or 1: every N) */
} fault_plan;

/* The operations both fault programs walk (dw_open, writes at every stage,
 * reads, stage moves, backfill batches, verification, repairs, routing,
 * contract and restore, listings). */
extern const fault_op fault_ops[];
extern const int fault_nops;

/* The starting database of one operation, in WAL (wal = 1) or rollback
 * journal mode, with its before and after pictures. */
typedef struct fault_world fault_world;
fault_world *fault_world_build(const fault_op *op, int wal);
/* Walks one plan; returns the number of failure points (N where a fault
 * fired). Fails the test on the first broken rule, naming op, plan and N. */
int fault_walk(fault_world *w, const fault_plan *plan);
/* How the points of a world's walks so far came out. */
typedef struct fault_stats {
    int points;        /* failure points walked */
    int ok;            /* the call returned its faultless code anyway */
    int failed_before; /* it failed and nothing was applied */
    int failed_after;  /* it failed after applying the operation whole (a
                          commit already safe when the error came) */
    int failed_other;  /* it failed leaving another state (operations
                          that work in several transactions) */
    int crash_applied; /* I/O: it failed, and a crash right then would
                          leave the operation applied (whole) */
    int left_open;     /* memory: the rollback itself lacked memory, the
                          call said the transaction is still open, and
                          the handle's next call ended it */
    int skipped;       /* points that hit a check excused by a defect */
} fault_stats;
void fault_world_stats(const fault_world *w, fault_stats *out);
void fault_world_free(fault_world *w);

/* The stride the environment asks for: DW_FAULT_STRIDE (valgrind runs
 * thin the walk with it), else 1. */
int fault_stride(void);

/* Runs cmocka tests spread over worker processes, each taking the next test
 * as it frees up: DW_FAULT_JOBS of them, else one per processor (at most
 * 4; one under valgrind). Test i's initial_state must point at its own
 * `slot_size` bytes inside `results`, where it leaves what it found: the
 * worker's copy is brought back. The workers' output is printed in turn.
 * Returns the number of failed tests (a worker that dies fails the test it
 * was running). */
int fault_run_tests(const char *group, const struct CMUnitTest *tests,
                    size_t n, void *results, size_t slot_size);

#endif
