/*
 * dualwrite.h -- the public interface of libdualwrite.
 *
 * libdualwrite makes zero-downtime schema migrations routine. An
 * application keeps using its own SQL; it calls the library around each write
 * and read of the data being migrated:
 *
 *   - dw_write() runs the application's write for the old model and for the
 *     new model (or mirrors the key through the mapping) inside one
 *     transaction or SAVEPOINT, in the order the migration's stage says, and
 *     keeps both writes or neither;
 *   - dw_read() reads the side the stage trusts, and at SHADOW and LIVE also
 *     the other side, compares the two field by field and reports every
 *     disagreement, while always returning the trusted answer;
 *   - the stage (one of six, see dw_stage) is stored in the application's own
 *     database, so every connection and every process follows one switch.
 *
 * This header names no database: a migration is opened on a connection
 * through a backend's header -- dualwrite/sqlite.h for SQLite, the embedded
 * default, which is part of the library. Where this header says what
 * SQLite does, that is the SQLite backend's behaviour.
 *
 * This header is the contract. For each function it states what each argument
 * means, what NULL means, the result codes, who owns returned memory and what
 * may be called from which thread.
 *
 * Conventions
 *   - Every name starts with dw_ or DW_.
 *   - Functions return an int result code: DW_OK (0) on success, a negative
 *     DW_E... code on failure. dw_errmsg() gives the handle's message for the
 *     last failure, dw_errstr() a fixed text for a code.
 *   - Every function that reads the library's stored state (the dw_*
 *     tables) checks what it reads, and returns DW_ECORRUPT, the message
 *     naming the table and row, for a value none of its operations writes
 *     (a stage of 99, a backfill cursor past its end); the return lists
 *     below leave it out. Nothing is changed by such a call.
 *   - Output parameters come first, callbacks take `void *payload` last.
 *   - Options structs begin with a `version` field and have a ..._INIT macro;
 *     a NULL options pointer means the defaults.
 *   - The library borrows the caller's connection (on SQLite an sqlite3 *):
 *     it never closes it, never changes the database library's global
 *     configuration (sqlite3_config()), and puts back any per-connection
 *     setting it changes while it works.
 *   - All memory the library allocates comes from its own allocator:
 *     malloc(), realloc() and free() unless the application installs
 *     another with dw_set_allocator(). Memory the library hands out (the
 *     errmsg of dw_sqlite_open() and its kin) is freed with dw_free(). SQLite's
 *     own allocations stay SQLite's: an allocator installed with
 *     sqlite3_config(SQLITE_CONFIG_MALLOC) governs SQLite alone.
 *   - A failed call leaves the connection as it found it: outside a
 *     transaction, or inside the caller's with the library's savepoint
 *     rolled back -- unless the database itself rolled back the caller's
 *     whole transaction during the call. SQLite does so on some errors
 *     (SQLITE_IOERR, SQLITE_FULL, SQLITE_NOMEM, SQLITE_INTERRUPT, and
 *     SQLITE_BUSY in some cases), also on errors the library tolerates
 *     (the compared side's read, a mismatch-log write), and SQL a callback
 *     runs may end the transaction too. Every call that can run inside
 *     the caller's transaction (writes, mirrors, reads and comparisons,
 *     repairs, overrides and routing, stage moves, dw_sqlite_open(),
 *     dw_sqlite_remove()) then
 *     returns DW_EROLLEDBACK, whatever else went wrong, and dw_errmsg()
 *     names the error that caused it. The connection is then outside any
 *     transaction and all the transaction did is gone (unless SQL a
 *     callback ran ended it with a COMMIT: what it did up to there is then
 *     committed, this call's work perhaps only in part; the library cannot
 *     tell the two apart, and dw_errmsg() says so): do not go on with
 *     it -- every statement run now would commit on its own, and your
 *     COMMIT would fail with "no transaction is active" --, but start it
 *     over from BEGIN, or give it up. As a guard for code that goes on
 *     regardless, the handle's next call made outside any transaction is
 *     refused with DW_EROLLEDBACK too, nothing done (once: the call after
 *     it runs; a call made inside a transaction, one begun since, runs at
 *     once). Other handles on the connection know nothing of it.
 *   - When memory runs out for good, even the
 *     library's ROLLBACK can fail (SQLite must prepare it again and
 *     cannot). The call then returns DW_ENOMEM, dw_errmsg() says that the
 *     library's transaction (or savepoint) is still open, and the handle's
 *     next call that reaches the database, dw_close() included, rolls it
 *     back before doing anything else (another handle on the same
 *     connection does not know of it). Until then the application's own statements on
 *     the connection would join that transaction and be rolled back with
 *     it: run ROLLBACK first (inside your own transaction: roll it back
 *     rather than commit it). After your ROLLBACK, the next call leaves
 *     alone a transaction you began since when it can tell it from its
 *     own: by its savepoint's name, or by the transaction's state (one of
 *     yours in the state the library's was left in -- not yet read, read,
 *     or written -- looks like it and would be rolled back). Safest: make a call on the handle, or run ROLLBACK,
 *     before anything else on the connection. dw_sqlite_open() has no handle to
 *     do this later and may lack the memory for a message: after
 *     DW_ENOMEM from dw_sqlite_open(), check sqlite3_get_autocommit().
 *   - "Nothing applied" after a failure holds for the database as the
 *     connection sees it. When the final COMMIT itself fails with an I/O
 *     error (DW_ERROR naming it), its pages may already be in the WAL, and
 *     a crash before the next write can bring the transaction back:
 *     whole, never in part. Treat such a write as "unknown" and read it
 *     back.
 *
 * Thread safety
 *   A dw_migration handle and every dw_row are used by one thread at a time,
 *   exactly as the sqlite3 connection they sit on (SQLite's "multi-thread"
 *   mode). Different handles, on different connections, may be used from
 *   different threads at once. dw_sqlite_open(), dw_sqlite_open_json(), dw_sqlite_open_stored(),
 *   dw_sqlite_list() and dw_sqlite_remove() use the connection they are given as any call
 *   on it does: one thread at a time. dw_version(), dw_version_number(), dw_errstr(),
 *   dw_stage_name(), dw_stage_parse(), dw_free() and the dw_value
 *   constructors are safe from any thread; dw_set_allocator() is not (see
 *   there).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef DUALWRITE_H
#define DUALWRITE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && (__GNUC__ >= 4)
#define DW_API __attribute__((visibility("default")))
#else
#define DW_API
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                   */
/* ------------------------------------------------------------------------ */

#define DW_VERSION_MAJOR 1
#define DW_VERSION_MINOR 0
#define DW_VERSION_PATCH 0
/** The version this header belongs to, as text. */
#define DW_VERSION "1.0.0"
/** MAJOR * 1000000 + MINOR * 1000 + PATCH. */
#define DW_VERSION_NUMBER                                                      \
    (DW_VERSION_MAJOR * 1000000 + DW_VERSION_MINOR * 1000 + DW_VERSION_PATCH)

/** The version of the library actually linked, e.g. "0.1.0". Static string. */
DW_API const char *dw_version(void);
/** The linked library's DW_VERSION_NUMBER. */
DW_API int dw_version_number(void);

/* ------------------------------------------------------------------------ */
/* Result codes                                                              */
/* ------------------------------------------------------------------------ */

typedef enum dw_result {
    DW_OK = 0,
    /** A database error or an error no other code describes; dw_errmsg()
     *  carries SQLite's message. */
    DW_ERROR = -1,
    /** A bad argument or a call out of order (NULL where a value is needed,
     *  an unknown stage, a callback the stage needs is missing). */
    DW_EMISUSE = -2,
    /** An allocation failed. Nothing was half-applied (see the conventions
     *  above for the one case where a transaction is left open). */
    DW_ENOMEM = -3,
    /** The database was locked (SQLITE_BUSY or SQLITE_LOCKED). Nothing was
     *  applied; the same call may be retried. */
    DW_EBUSY = -4,
    /** No such row (dw_read, and read callbacks). */
    DW_ENOTFOUND = -5,
    /** The spec does not fit the schema: unknown table or column, key that
     *  is not unique, a mapping expression that does not prepare. */
    DW_ESCHEMA = -6,
    /** A migration of that name is stored with a different spec; open it
     *  with DW_OPEN_REDEFINE to replace the stored spec. From a handle that
     *  is already open: the migration was redefined (by another connection
     *  or another handle) since this handle was opened, and every call that
     *  reads the stage -- writes, mirrors, reads, comparisons, repairs, key
     *  moves, stage moves, backfill, verification, contract -- refuses with
     *  nothing done rather than map rows through the outdated spec. Close
     *  the handle and open the migration again. */
    DW_ESPEC = -7,
    /** Test mode only: the two sides disagree. The authoritative row was
     *  still returned. */
    DW_EMISMATCH = -8,
    /** A write violated a constraint (UNIQUE, NOT NULL, CHECK, FOREIGN KEY);
     *  dw_errside() names the side, dw_errmsg() the constraint. */
    DW_ECONSTRAINT = -9,
    /** An application callback returned a failure. */
    DW_ECALLBACK = -10,
    /** A gate refused the operation: a stage move to LIVE or COMPLETE
     *  without a finished backfill and a clean verification since (see
     *  dw_stage_set()), or a contract before COMPLETE. dw_errmsg() says
     *  what is missing. Nothing was changed. */
    DW_EGATE = -11,
    /** The library's stored state is damaged: a value no operation of the
     *  library writes (a stage outside 0 to 5 or not a number, a routing
     *  setting out of range, a cohort dw_routing_set() would refuse, a
     *  mismatch log entry count that disagrees with the log (told by
     *  dw_mismatch_log_count()), an override count that disagrees with the
     *  overrides stored, a backfill cursor that is not a key of the
     *  migration or lies past its end, a stored spec that does not parse or
     *  does not match its digest). dw_errmsg() names the table and the row.
     *  Nothing was changed; the state needs repair by hand (or the
     *  migration defined again). */
    DW_ECORRUPT = -12,
    /** The database rolled back the caller's whole transaction during a
     *  call made inside it (SQLite does so on an I/O error, a full disk,
     *  running out of memory, and some interrupts and busy errors): what
     *  the transaction did before the call is gone too, and the connection
     *  is outside any transaction. Do not go on with that transaction --
     *  statements run now would each commit on their own: start it over
     *  (BEGIN, then all of its work again), or give it up. The handle's
     *  next call made outside a transaction is refused with this code too,
     *  once (see the conventions at the top). */
    DW_EROLLEDBACK = -13,
    /** Test mode only: a read could not compare the two sides -- the other
     *  side's read failed or ran over the time budget, the old row did not
     *  map up, or the normaliser failed. dw_errmsg() says why and
     *  dw_errside() names the side; the authoritative row was still
     *  returned, as with DW_EMISMATCH. (A locked database or memory
     *  running out is returned as DW_EBUSY or DW_ENOMEM instead.) */
    DW_ENOCOMPARE = -14,
    /** Not an error: a long operation (dw_backfill()) stopped before the
     *  end because its time limit ran out or a callback asked it to stop.
     *  Its work so far is committed; call again to go on. */
    DW_MORE = 1
} dw_result;

/** A fixed English text for a result code (DW_MORE included); "unknown
 *  error" for other values. Never NULL, static storage. */
DW_API const char *dw_errstr(int code);

/* ------------------------------------------------------------------------ */
/* Memory                                                                    */
/* ------------------------------------------------------------------------ */

/** The library's allocator: three functions, each given `payload` last.
 *  realloc is never called with a NULL pointer, and no size is ever 0. */
typedef struct dw_allocator {
    unsigned int version; /* DW_ALLOCATOR_VERSION */
    void *(*malloc)(size_t n, void *payload);
    void *(*realloc)(void *p, size_t n, void *payload);
    void (*free)(void *p, void *payload);
    void *payload;
} dw_allocator;

#define DW_ALLOCATOR_VERSION 1
/** Version set, functions NULL: fill in all three. */
#define DW_ALLOCATOR_INIT {DW_ALLOCATOR_VERSION, NULL, NULL, NULL, NULL}

/**
 * Replaces the allocator every allocation of the library goes through
 * (SQLite's are not: see sqlite3_config(SQLITE_CONFIG_MALLOC)). The struct
 * is copied. NULL puts the default back: malloc(), realloc(), free().
 *
 * Call it before any other call of the library, and never while another
 * thread makes one (the allocator in use is read without a lock: a
 * concurrent call may use either allocator, and memory may be freed by the
 * one that did not make it). The library counts the memory it holds and
 * refuses to switch while it holds any -- an open handle, a dw_row, a
 * message not yet given to dw_free() -- so what one allocator made is
 * never given to another.
 *
 * @param a    the allocator, or NULL for the default.
 * @param why  if not NULL, receives NULL on success, else a static text
 *             saying why the allocator was refused (never freed).
 * @return DW_OK; DW_EMISUSE for an unknown version, a NULL function, or
 *         memory of the library still held (nothing is changed).
 */
DW_API int dw_set_allocator(const dw_allocator *a, const char **why);

/** Frees memory the library handed out (the errmsg of dw_sqlite_open(),
 *  dw_sqlite_open_json(), dw_sqlite_open_stored(), dw_sqlite_list(), dw_sqlite_remove()), through the
 *  allocator it came from. NULL is a harmless no-op. */
DW_API void dw_free(void *p);

/* ------------------------------------------------------------------------ */
/* Stages                                                                    */
/* ------------------------------------------------------------------------ */

/**
 * The six stages of a migration.
 *
 * | stage      | reads run    | returned | compared | writes, in order | trusted |
 * |------------|--------------|----------|----------|------------------|---------|
 * | OFF        | old          | old      | no       | old              | old     |
 * | DUAL_WRITE | old          | old      | no       | old, then new    | old     |
 * | SHADOW     | old and new  | old      | yes      | old, then new    | old     |
 * | LIVE       | new and old  | new      | yes      | new, then old    | new     |
 * | RAMPDOWN   | new          | new      | no       | new, then old    | new     |
 * | COMPLETE   | new          | new      | no       | new              | new     |
 */
typedef enum dw_stage {
    DW_STAGE_OFF = 0,
    DW_STAGE_DUAL_WRITE = 1,
    DW_STAGE_SHADOW = 2,
    DW_STAGE_LIVE = 3,
    DW_STAGE_RAMPDOWN = 4,
    DW_STAGE_COMPLETE = 5
} dw_stage;

/** The upper-case name of a stage ("OFF", "DUAL_WRITE", ...), or NULL for a
 *  value that is not a stage. Static storage. */
DW_API const char *dw_stage_name(int stage);

/** Parses a stage name, case-insensitively, into *out. DW_EMISUSE if either
 *  pointer is NULL or the name is not a stage. */
DW_API int dw_stage_parse(int *out, const char *name);

/** The two sides of a migration. */
typedef enum dw_side {
    DW_SIDE_NONE = 0,
    DW_SIDE_OLD = 1,
    DW_SIDE_NEW = 2
} dw_side;

/* ------------------------------------------------------------------------ */
/* Values                                                                    */
/* ------------------------------------------------------------------------ */

/** Storage classes; the numbers are SQLite's (SQLITE_INTEGER ...). */
typedef enum dw_type {
    DW_TYPE_INTEGER = 1,
    DW_TYPE_FLOAT = 2,
    DW_TYPE_TEXT = 3,
    DW_TYPE_BLOB = 4,
    DW_TYPE_NULL = 5
} dw_type;

/**
 * One typed value: a key column, or a column of a dw_row.
 *
 * `i` holds an INTEGER, `f` a FLOAT; `p` points at the bytes of a TEXT
 * (UTF-8) or BLOB and `n` counts them. A value passed in by the caller may set
 * `n` to -1 for a NUL-terminated text. A dw_value never owns its bytes: the
 * one who made it does (see dw_row_value() for values inside a row).
 */
typedef struct dw_value {
    int type;
    int64_t i;
    double f;
    const void *p;
    int n;
} dw_value;

/** Value constructors. They copy nothing: text and blob values point at the
 *  caller's bytes, which must outlive the value's use. Thread safe. */
DW_API dw_value dw_int(int64_t v);
DW_API dw_value dw_float(double v);
/** A NUL-terminated text; NULL gives a NULL value. */
DW_API dw_value dw_text(const char *s);
/** A text of n bytes (need not be NUL-terminated); NULL gives a NULL value. */
DW_API dw_value dw_text_n(const char *s, int n);
/** A blob of n bytes; NULL with n == 0 gives an empty blob. */
DW_API dw_value dw_blob(const void *p, int n);
DW_API dw_value dw_null(void);

/**
 * Type-aware equality, the rule every comparison in the library uses unless
 * a custom comparator says otherwise: NULL equals NULL; INTEGER and FLOAT are
 * equal when numerically equal (as SQLite's IS operator); otherwise the
 * storage classes must match and so must the bytes (TEXT is compared byte by
 * byte, no collation). So NULL differs from empty text, 5 differs from '5',
 * and a TEXT differs from a BLOB holding the same bytes. Returns 1 when
 * equal, 0 otherwise; two NULL pointers are equal, one NULL pointer is not.
 */
DW_API int dw_value_equal(const dw_value *a, const dw_value *b);

/* ------------------------------------------------------------------------ */
/* Rows                                                                      */
/* ------------------------------------------------------------------------ */

/**
 * A row of named, typed values. Rows are what read callbacks fill, what
 * mapping callbacks take and produce, and what dw_read() returns. A row owns
 * copies of its names and of its text and blob bytes. Column names are
 * matched exactly (case-sensitively); setting a name that is present replaces
 * its value in place.
 */
typedef struct dw_row dw_row;

/** Creates an empty row in *out. DW_EMISUSE if out is NULL, DW_ENOMEM. The
 *  caller owns the row and frees it with dw_row_free(). */
DW_API int dw_row_new(dw_row **out);
/** Frees a row and everything in it. NULL is a harmless no-op. */
DW_API void dw_row_free(dw_row *row);
/** Removes every column, keeping the row for reuse: its names and value
 *  buffers (up to 4 KiB each) are kept for the next values set, so a row
 *  filled again and again allocates nothing. NULL is a no-op. */
DW_API void dw_row_clear(dw_row *row);
/** Number of columns; 0 for NULL. */
DW_API int dw_row_count(const dw_row *row);
/** Name of column i (0-based), or NULL when out of range. Owned by the row,
 *  valid until the row is changed or freed. */
DW_API const char *dw_row_name(const dw_row *row, int i);
/** Index of the column named `name`, or -1 when absent or an argument is
 *  NULL. */
DW_API int dw_row_find(const dw_row *row, const char *name);
/** Value of column i, or NULL when out of range. The value and its bytes are
 *  owned by the row (a mapping callback's `in` excepted: see dw_map_fn),
 *  valid until the row is changed or freed. Text values are NUL-terminated
 *  (n does not count the terminator). */
DW_API const dw_value *dw_row_value(const dw_row *row, int i);
/** Value of the column named `name`, or NULL when absent. Same lifetime as
 *  dw_row_value(). */
DW_API const dw_value *dw_row_get(const dw_row *row, const char *name);

/** Sets the column `name` to a copy of *v (NULL v sets SQL NULL). Appends
 *  the column when absent. DW_EMISUSE for a NULL row or name, an empty name,
 *  or a value whose type is not a dw_type; DW_ENOMEM (the row is then
 *  unchanged). */
DW_API int dw_row_set(dw_row *row, const char *name, const dw_value *v);
DW_API int dw_row_set_int(dw_row *row, const char *name, int64_t v);
DW_API int dw_row_set_float(dw_row *row, const char *name, double v);
/** NULL text sets SQL NULL. */
DW_API int dw_row_set_text(dw_row *row, const char *name, const char *s);
DW_API int dw_row_set_blob(dw_row *row, const char *name, const void *p,
                           int n);
DW_API int dw_row_set_null(dw_row *row, const char *name);
/* Filling a row from an SQLite statement, and binding key values to one:
 * dw_sqlite_row_set_columns() and dw_sqlite_bind_values() in
 * dualwrite/sqlite.h. */

/* ------------------------------------------------------------------------ */
/* Migration spec                                                            */
/* ------------------------------------------------------------------------ */

/**
 * One side of a migration: a table, its key columns and the columns that make
 * up this side's model.
 *
 * The key columns must be exactly the columns of the table's PRIMARY KEY or
 * of a UNIQUE index (not partial), INTEGER or TEXT, on rowid and WITHOUT
 * ROWID tables alike. Both sides name their key columns in the same order and
 * hold the same key values: old key column i corresponds to new key column i.
 * A TEXT key value must not hold a NUL byte (SQLite reads text up to one, so
 * such a key could not be paged through): every call that takes a key
 * refuses one with DW_EMISUSE, writing nothing, and dw_backfill() and
 * dw_verify() refuse a table whose rows hold one, naming the first such
 * key, before their first batch.
 *
 * `columns` lists this side's non-key columns. NULL means: for the new side
 * with an SQL up mapping, the columns the mapping names; otherwise every
 * non-key, non-generated column of the table. When both sides are one table,
 * each side must list its own columns and the lists must not overlap.
 *
 * A side may be its key alone -- a many-to-many link table such as
 * tag_item(tag_id, item_id), or a list given with ncolumns 0: its row is
 * its key, so reads, dw_compare() and dw_verify() compare presence (a row
 * on one side only), and a mapping into it needs no expressions (give none;
 * the stored spec shows it as {"sql":{}}). Rows are written into it with
 * INSERT ... ON CONFLICT(key) DO NOTHING, so a violation of any other
 * constraint (a UNIQUE index over part of the key, say) still fails the
 * write with DW_ECONSTRAINT. Every stage, the backfill, repairs, routing,
 * dw_contract() and dw_restore() work on such a side. When both sides are
 * one table the row is shared, so a side of the key alone would have
 * nothing of its own: dw_sqlite_open() refuses it with DW_EMISUSE.
 */
typedef struct dw_side_spec {
    const char *table;
    const char *const *key_columns;
    int nkey_columns;
    const char *const *columns;
    int ncolumns;
} dw_side_spec;

/** One target column of an SQL mapping and the SQL expression, over the
 *  source side's row, that computes it. The expression is evaluated as a
 *  result column of `SELECT ... FROM "source_table" WHERE key`, so it may
 *  name the source's columns (qualified with the table name where a subquery
 *  needs it), call functions and contain scalar subqueries. It must be one
 *  read-only expression over one row: no parameters, and no aggregate or
 *  window function outside a scalar subquery (dw_sqlite_open() refuses them with
 *  DW_ESCHEMA). */
typedef struct dw_column_map {
    const char *column;
    const char *expr;
} dw_column_map;

/**
 * A C mapping callback, for transforms SQL cannot express. `in` holds the
 * source side's key columns and model columns, in the spec's order (key
 * columns first, so dw_row_value(in, i) reads them by position); the
 * callback sets every target model column in `out` (an empty row it does
 * not own). Key columns it leaves out are copied by the library. Both
 * rows, and the bytes of their values, are valid only during the call:
 * the library reuses them for the next row. Return DW_OK, or any other
 * value to fail the operation (reported as DW_ECALLBACK).
 */
typedef int (*dw_map_fn)(dw_row *out, const dw_row *in, void *payload);

/** Flags for dw_options.flags. */
enum {
    /** Replace a stored spec that differs from this one; the change is
     *  recorded in the history with `reason`. */
    DW_OPEN_REDEFINE = 1u << 0,
    /** Test mode: dw_read() returns DW_EMISMATCH when the sides disagree,
     *  and DW_ENOCOMPARE when they could not be compared (the other side's
     *  read failed or ran over the time budget, the normaliser failed),
     *  after filling the result row with the authoritative answer. */
    DW_OPEN_TEST_MODE = 1u << 1,
    /** Repair-queue policy: when the non-authoritative write fails, keep the
     *  authoritative one, roll back only the failed side and record the key
     *  in the durable repair queue (dw_repair_count()); dw_write() then
     *  returns DW_OK. Without it, both writes or neither. */
    DW_OPEN_REPAIR_QUEUE = 1u << 2,
    /** Print each mismatch as one line on stderr (as logged: redacted by
     *  default), for development. */
    DW_OPEN_LOG_STDERR = 1u << 3,
    /** Log raw values of differing columns instead of their type, length
     *  and digest, except for columns listed in `redact_columns`. */
    DW_OPEN_LOG_RAW_VALUES = 1u << 4,
    /** Do not write mismatches to the built-in log table. */
    DW_OPEN_NO_LOG_TABLE = 1u << 5
};

/** A mismatch reported to the sink; see dw_mismatch. */
typedef struct dw_mismatch dw_mismatch;
/** Called once for each mismatch found by a comparison, after the read's
 *  transaction has ended. The mismatch and everything it points to are valid
 *  only during the call. */
typedef void (*dw_mismatch_fn)(const dw_mismatch *mismatch, void *payload);

/** Version 2 added `setup_sql`. A version 1 struct (without it) is still
 *  accepted. */
#define DW_OPTIONS_VERSION 2

/**
 * Everything dw_sqlite_open() needs. Start from DW_OPTIONS_INIT and set fields.
 * Every string and array is copied by dw_sqlite_open(); none need outlive it.
 */
typedef struct dw_options {
    /** DW_OPTIONS_VERSION (or 1, for a struct without setup_sql). */
    unsigned int version;
    /** The migration's name: 1 to 200 bytes of UTF-8, no NUL. */
    const char *name;
    dw_side_spec old_side;
    dw_side_spec new_side;
    /** The up mapping (old row to new row): either `up` with `nup` entries,
     *  one per new model column, or `up_fn`. Exactly one is required,
     *  unless the new side is its key alone (see dw_side_spec), which needs
     *  neither. */
    const dw_column_map *up;
    int nup;
    dw_map_fn up_fn;
    /** The optional down mapping (new row to old row), same rules; needed
     *  to mirror writes to the old side at LIVE and RAMPDOWN when no
     *  old-side write callback is given. An old side of the key alone has
     *  one without being given it: its row is the key. */
    const dw_column_map *down;
    int ndown;
    dw_map_fn down_fn;
    /** Payload for up_fn and down_fn. */
    void *map_payload;
    /** Identifies what C mapping callbacks do; stored in the spec digest, so
     *  changing it marks the spec as changed. NULL when no callbacks. */
    const char *map_version;
    /** DW_OPEN_... flags. */
    unsigned int flags;
    /** Why the spec is (re)defined; recorded in the history. May be NULL. */
    const char *reason;
    /** Columns whose values are never logged raw, even with
     *  DW_OPEN_LOG_RAW_VALUES. Matched as SQLite matches names (ASCII case
     *  ignored). */
    const char *const *redact_columns;
    int nredact_columns;
    /** Most distinct (key, difference) entries kept in the log table for
     *  this migration; further new entries are counted and dropped.
     *  0 means the default, 1000. */
    int log_cap;
    /** Optional sink for every mismatch, with its payload. */
    dw_mismatch_fn mismatch_fn;
    void *mismatch_payload;
    /** Optional idempotent SQL (one or more statements) for dependent data
     *  the new model needs first, such as one status row per organisation.
     *  It runs in the transaction of the stage move that leaves OFF (before
     *  the first dual write) and again in the transaction of a backfill's
     *  first batch, before copying any row (rows added since are covered).
     *  It runs again whenever a backfill starts over, so it must be safe to
     *  repeat (INSERT ... ON CONFLICT DO
     *  NOTHING, not a plain INSERT). Part of the spec and its digest,
     *  without its trailing white space (so "...;\n" and "...;" are one
     *  spec; a spec stored by 0.3 with that white space in its digest still
     *  opens, either way, and keeps its stored digest). Each
     *  statement is prepared at dw_sqlite_open(), so it must name existing tables;
     *  each must be an INSERT (or REPLACE), UPDATE or DELETE, with or
     *  without a WITH clause: anything else (CREATE, DROP, ALTER, PRAGMA,
     *  ATTACH, VACUUM, BEGIN, COMMIT, SAVEPOINT, a SELECT...) is refused
     *  with DW_EMISUSE naming the statement, and nothing is stored; a
     *  stored spec with such setup SQL no longer opens until redefined.
     *  Double-quoted string literals are off, as for mappings. NULL or ""
     *  for none. */
    const char *setup_sql;
} dw_options;

#define DW_OPTIONS_INIT                                                        \
    {                                                                          \
        DW_OPTIONS_VERSION, NULL, {NULL, NULL, 0, NULL, 0},                    \
            {NULL, NULL, 0, NULL, 0}, NULL, 0, NULL, NULL, 0, NULL, NULL,      \
            NULL, 0u, NULL, NULL, 0, 0, NULL, NULL, NULL                       \
    }

/* ------------------------------------------------------------------------ */
/* Migration handle                                                          */
/* ------------------------------------------------------------------------ */

/** A migration opened on a borrowed connection. */
typedef struct dw_migration dw_migration;

/*
 * Opening a migration. dw_sqlite_open() (in dualwrite/sqlite.h) -- each
 * backend has its open function -- opens, and on first use defines, a
 * migration on the caller's connection.
 *
 * Creates the library's state tables (named dw_*) on first use. Checks the
 * spec against the schema: both tables exist, every named column exists
 * (PRAGMA table_xinfo), the key columns are unique, every mapping
 * expression prepares -- with double-quoted string literals disabled, so a
 * misspelled column is an error rather than a string. The spec's digest is
 * then compared with the stored one: a new name stores the spec at stage OFF;
 * the same spec opens it; a different spec fails with DW_ESPEC, the message
 * saying which parts differ (a side's table, key or columns, a mapping or
 * one of its columns, the map_version, the setup SQL), unless
 * DW_OPEN_REDEFINE is set, which replaces it (keeping the stage) and records
 * the redefinition in the history. Handles opened earlier, on any
 * connection, then refuse with DW_ESPEC (see there): the check travels with
 * the stage, read in the same statement, so it costs a write or a read
 * nothing more.
 *
 * Locking: opening a migration already stored with the same spec, on state
 * tables that are current, takes only a read transaction (no write lock):
 * in WAL mode it runs beside another connection's write transaction (in
 * rollback-journal mode a reader still waits while a writer commits). Defining, redefining, or creating or upgrading the
 * state tables takes the write lock (BEGIN IMMEDIATE, all in one
 * transaction); when the database is locked, that is DW_EBUSY once the
 * connection's busy timeout runs out, and nothing is stored. Inside the
 * caller's transaction the open is part of it (what it stores, in a
 * savepoint of the library's).
 *
 * @param out   receives the handle; set to NULL on failure. Must not be NULL.
 * @param db    the caller's open connection; borrowed, never closed. It must
 *              outlive the handle.
 * @param opts  the spec and policies; must not be NULL.
 * @param errmsg if not NULL, receives a message on failure (NULL on success),
 *              to be freed with dw_free() -- there is no handle yet to
 *              ask.
 * @return DW_OK; DW_EMISUSE (bad options), DW_ESCHEMA, DW_ESPEC, DW_EBUSY,
 *         DW_ENOMEM, DW_ERROR; DW_EROLLEDBACK (inside the caller's
 *         transaction, which the database rolled back meanwhile: see the
 *         conventions at the top). On failure nothing is stored.
 */

/** Closes a handle, freeing everything it holds (not the connection, not the
 *  stored migration). A transaction a failed call left open (see the
 *  conventions at the top) is rolled back first, when memory allows. NULL
 *  is a harmless no-op. */
DW_API void dw_close(dw_migration *h);

/** The message for the last failure on this handle, or "not an error" after
 *  a success. Owned by the handle, valid until its next call. NULL handle
 *  gives a static message. */
DW_API const char *dw_errmsg(const dw_migration *h);

/** The side the last failure on this handle concerned (DW_SIDE_NONE when it
 *  concerned neither, or after a success). */
DW_API int dw_errside(const dw_migration *h);

/** The migration's name, owned by the handle. NULL for a NULL handle. */
DW_API const char *dw_name(const dw_migration *h);

/** The spec's digest as 64 lower-case hex digits, owned by the handle. */
DW_API const char *dw_spec_digest(const dw_migration *h);

/* ------------------------------------------------------------------------ */
/* Stored migrations                                                         */
/* ------------------------------------------------------------------------ */

/*
 * A database holds each migration's spec, as JSON, beside its stage. A
 * program without the application's dw_options -- an operator's tool, a
 * dashboard -- lists the migrations (dw_sqlite_list()) and opens one from its
 * stored spec (dw_sqlite_open_stored()), or from a spec written by hand
 * (dw_sqlite_open_json()).
 *
 * The spec as JSON. dw_sqlite_open() stores exactly this text, and its SHA-256 is
 * dw_spec_digest(): no white space, the members in this order, every
 * string a JSON string escaped as key text escapes it (see "Key text"):
 *
 *   {"format":1,"old":SIDE,"new":SIDE,"up":MAP,"down":MAP,"setup":S}
 *
 *   SIDE  {"table":T,"key":[K,...],"columns":[C,...]}: the table, the key
 *         columns in order, and the model columns dw_sqlite_open() settled on
 *         (those given, or the default), named as the schema spells them.
 *   MAP   {"sql":{"column":"expression",...}}: one member per target
 *         column, in the target side's column order; {"sql":{}} into a
 *         side of the key alone (read back, it stands for no mapping
 *         given, which is all such a side needs; into a side with model
 *         columns it maps none of them, and dw_sqlite_open_json() refuses it with
 *         DW_EMISUSE, the down mapping as the up one);
 *         {"callback":"map_version"}: a C mapping callback, with the
 *         options' map_version (null for a NULL one; up and down name the
 *         same);
 *         null: no mapping (down only).
 *   S     setup_sql without its trailing white space; the member is left
 *         out when there is none.
 *
 * dw_sqlite_open_json() also reads a spec written by hand, in a looser form:
 * members in any order, white space anywhere; "format" may be left out (if
 * present it must be the number 1); "columns" may be left out or null,
 * meaning what a NULL dw_side_spec.columns means; "down" and "setup" may
 * be left out. Anything else is refused with DW_EMISUSE and a message
 * naming the member's path: text that is not JSON, a spec that is not an
 * object, a member not listed here at any level (`spec: unknown member
 * "new.colums"`), a member given twice, a value of another JSON type
 * (`spec: "old.key" must be an array of strings`), a missing "old", "new",
 * table, key or "up", a mapping with both or neither of "sql" and
 * "callback", two callbacks naming different map_versions, a string with a
 * NUL character. What the JSON says is then checked by dw_sqlite_open() as its
 * options are (the same rules, the same messages).
 *
 * Callback mappings. A mapping {"callback":...} is C code inside the
 * application and cannot run elsewhere. A handle opened from such a spec
 * opens only a migration already stored with exactly that spec (the same
 * digest), and refuses with DW_EMISUSE, and a message saying to open the
 * migration with dw_sqlite_open() in the application that has the callbacks:
 *   - to define the migration (no migration of that name is stored) or to
 *     redefine it (DW_OPEN_REDEFINE); nothing is stored;
 *   - dw_write() and dw_mirror() at a stage where the other side is synced
 *     through a callback mapping (no write callback for that side given);
 *   - dw_read() that compares with no read callbacks (the old row is mapped
 *     up), and dw_compare() of a key whose old row exists;
 *   - dw_backfill() and the repairs (dw_repair_keys(), dw_repair_divergent(),
 *     dw_repair_queue()) when the mapping they copy through at the current
 *     stage is a callback -- or either mapping, when keys are routed to
 *     stages of their own (see "Key routing") -- and dw_verify() when the
 *     up mapping is; these refuse before doing anything: no backfill
 *     started, no verification run stored, no setup_sql run;
 *   - dw_override_set(), dw_override_clear() and promotions on write whose
 *     sync of a key goes through a callback (the call is rolled back
 *     whole).
 * Everything else works as on a handle dw_sqlite_open() gave: the stage, its
 * gates and history, dw_backfill_status(), dw_verify_last(), the mismatch
 * log, the routing settings and overrides, dw_contract(), dw_restore(), and
 * reads that compare nothing.
 */

/** One migration stored in a database (dw_sqlite_list()). Strings are valid only
 *  during the callback. */
typedef struct dw_stored_migration {
    const char *name;
    /** A dw_stage; -1 when the stored stage is no stage (edited by
     *  hand: dw_sqlite_open_stored() on it says what is damaged). */
    int stage;
    /** The stored spec as JSON (the format dw_sqlite_open_json() reads). */
    const char *spec;
    /** Its digest, 64 lower-case hex digits, as dw_spec_digest(). */
    const char *spec_digest;
    /** 1 when a mapping (up or down) is a C callback: see "Callback
     *  mappings" above. */
    int callbacks;
    /** 1 when dw_contract() dropped the old model (and no dw_restore()
     *  since). */
    int contracted;
    /** When the migration was defined, and when its spec, stage or routing
     *  settings last changed: seconds since the Unix epoch. */
    double created;
    double updated;
} dw_stored_migration;

/** Return non-zero to stop the iteration early. */
typedef int (*dw_list_fn)(const dw_stored_migration *m, void *payload);

/*
 * Listing stored migrations. dw_sqlite_list() (and each backend's list
 * function) calls fn for each migration stored in the database, in name order
 * (bytewise), inside one read transaction of its own -- or the caller's
 * transaction, when one is open. fn may read on the connection; what it
 * writes joins that transaction, and in dw_sqlite_list()'s own is committed at the
 * end -- or, when that COMMIT fails (DW_EBUSY, DW_ERROR), rolled back with
 * it. fn must not commit or roll back. A
 * database without the library's state
 * tables has no migrations: DW_OK without a call, and nothing is created.
 * Stops early (returning DW_OK) when fn returns non-zero. A migration whose
 * stored spec is damaged (not JSON) is listed all the same, with
 * `callbacks` 0, and one whose stored stage is no stage with `stage` -1;
 * dw_sqlite_open_stored() on it says what is damaged.
 *
 * @param db      the connection; borrowed. Must not be NULL.
 * @param fn      called for each migration; must not be NULL.
 * @param payload passed to fn.
 * @param errmsg  if not NULL, receives a message on failure (NULL on
 *                success), to be freed with dw_free().
 * @return DW_OK; DW_EMISUSE (NULL db or fn); DW_EBUSY (the database is
 *         locked; retry); DW_ERROR; DW_ENOMEM. When even ending its read
 *         transaction lacked memory, the message says that it is still
 *         open: run ROLLBACK (see the conventions at the top).
 */

/*
 * Opening from JSON. dw_sqlite_open_json() (and each backend's) is like
 * dw_sqlite_open(), with the spec given as JSON text (see "The spec as JSON"
 * above) instead of dw_options: the library parses the JSON, then checks, stores or opens the migration
 * exactly as it would from the equivalent options. The options not in the
 * JSON are the defaults of DW_OPTIONS_INIT: no mismatch sink, redacted
 * logging, the default log cap, no mapping payload. A spec with callback
 * mappings opens only what is stored (see "Callback mappings").
 *
 * @param out       receives the handle; set to NULL on failure. Must not be
 *                  NULL.
 * @param db        the caller's connection, as for dw_sqlite_open(). Must not be
 *                  NULL.
 * @param name      the migration's name, as dw_options.name.
 * @param spec_json the spec, NUL-terminated; must not be NULL. Not kept.
 * @param flags     DW_OPEN_... flags, as dw_options.flags.
 * @param reason    why the spec is (re)defined, as dw_options.reason; may be
 *                  NULL.
 * @param errmsg    as for dw_sqlite_open().
 * @return as dw_sqlite_open(): DW_OK; DW_EMISUSE (a NULL argument, a malformed
 *         spec, bad options, defining or redefining with callback
 *         mappings); DW_ESCHEMA; DW_ESPEC; DW_EBUSY; DW_ENOMEM; DW_ERROR.
 *         On failure nothing is stored.
 */

/*
 * Opening a stored migration. dw_sqlite_open_stored() (and each backend's)
 * opens a migration already stored in db, from its stored spec, without
 * the application's options: reads the spec stored under `name`, then
 * opens it as dw_sqlite_open_json() does (the digest is then the stored one).
 * With callback mappings the handle has no callbacks to run: see
 * "Callback mappings" above for what it refuses. Never stores a spec: a
 * migration another connection removes between the read and the open is
 * DW_ENOTFOUND, and one it redefines meanwhile is read again (up to three
 * times, then DW_ESPEC). It does create or upgrade the state tables, as
 * dw_sqlite_open() does, once there is a migration to open.
 *
 * @param out    receives the handle; set to NULL on failure. Must not be
 *               NULL.
 * @param db     the caller's connection, as for dw_sqlite_open(). Must not be NULL.
 * @param name   the stored migration's name (matched exactly); must not be
 *               NULL.
 * @param flags  DW_OPEN_... flags for this handle, except DW_OPEN_REDEFINE.
 * @param errmsg as for dw_sqlite_open().
 * @return DW_OK; DW_ENOTFOUND (no migration of that name stored, or no
 *         state tables: `no migration named "x" in this database`);
 *         DW_EMISUSE (a NULL argument, DW_OPEN_REDEFINE, an unknown flag);
 *         DW_ESCHEMA (the schema no longer fits the stored spec); DW_ESPEC
 *         (redefined by others at each of three reads); DW_ECORRUPT (the
 *         stored spec is not the text its digest was taken of: truncated
 *         or edited by hand; the message says whether it parses as JSON);
 *         DW_EBUSY; DW_ENOMEM; DW_ERROR.
 */

/*
 * Removing a stored migration. dw_sqlite_remove() (and each backend's)
 * removes a stored migration, such as one defined by mistake: every state
 * row of it -- the stage and spec, the history, the backfill, verification
 * runs, overrides, the mismatch log and the repair queue -- in one
 * transaction of its own (BEGIN IMMEDIATE), or a savepoint in the
 * caller's. A later definition under the same name starts clean, at OFF;
 * its first history entry ("define") notes what was removed before it
 * (when, at which stage, the spec digest, the reason). The application's
 * tables are not touched.
 *
 * Refused (DW_EMISUSE, the message naming why and what to do first) while
 * removing would leave data half-moved. Removable are:
 *   - a migration at OFF with no key routed to another stage (no override
 *     above OFF, no canary running keys elsewhere): every key trusts the
 *     old model, which was written all along;
 *   - a migration contracted at COMPLETE: the old model is gone, so an
 *     application still opening the old spec fails (DW_ESCHEMA) instead of
 *     trusting it.
 * Any other stage is refused, COMPLETE before its contract included: an
 * application opening the migration again would define it anew at OFF and
 * read the old model, no longer written. A stored stage, contract flag or
 * canary stage that is no value the library writes is DW_ECORRUPT, not
 * taken for OFF: whether data is half-moved cannot be told.
 *
 * A handle open on the migration (any connection, any process) fails its
 * next call that reads the stage: the migration is no longer stored. Its
 * id is never given to a later migration, so such a handle never finds
 * another migration's state.
 *
 * @param db     the connection; borrowed. Must not be NULL.
 * @param name   the stored migration's name (matched exactly); must not be
 *               NULL.
 * @param flags  0 (none defined yet).
 * @param reason why; kept in the note the next definition reads. May be
 *               NULL.
 * @param errmsg as for dw_sqlite_list().
 * @return DW_OK; DW_ENOTFOUND (no migration of that name); DW_EMISUSE (a
 *         NULL argument, unknown flags, a removal refused as above, state
 *         tables of an older library: open a migration once to upgrade
 *         them); DW_ECORRUPT (the stored stage, contract flag or canary
 *         stage is damaged); DW_EBUSY (locked; nothing removed, retry);
 *         DW_ERROR; DW_ENOMEM; DW_EROLLEDBACK (inside the caller's transaction,
 *         which the database rolled back meanwhile: see the conventions at
 *         the top). On failure nothing is removed. When even the rollback
 *         lacked memory, the message says that the transaction (or the
 *         savepoint in yours) is still open: run ROLLBACK.
 */

/* ------------------------------------------------------------------------ */
/* Stage                                                                     */
/* ------------------------------------------------------------------------ */

/** Reads the stored stage into *out, seeing any change committed by any
 *  connection. DW_EMISUSE for NULL arguments, DW_EBUSY, DW_ERROR. */
DW_API int dw_stage_get(int *out, dw_migration *h);

/** Flags for dw_stage_set(). */
enum {
    /** Allow a forward move of more than one stage; recorded as forced. */
    DW_STAGE_FORCE = 1u << 0,
    /** Only check: apply every rule and gate below and return what the move
     *  would return (DW_EGATE with the message saying what is missing, and
     *  so on), but move nothing, record nothing and run no setup_sql. For
     *  tools that show whether the next step is open. */
    DW_STAGE_CHECK = 1u << 1
};

/**
 * Moves the migration to `stage`, recording time, from, to, reason and
 * whether it was forced in the history (the move and its record commit
 * together). Every other connection and process sees the change on its next
 * operation. If called inside the caller's transaction, it becomes part of
 * it. Setting the current stage is a no-op that records nothing.
 *
 * Rules:
 *   - Forward moves go one stage at a time; DW_STAGE_FORCE allows a jump.
 *     Backward moves may go any distance, through one gate (below).
 *   - Gates: a forward move to LIVE or to COMPLETE needs a finished backfill
 *     (dw_backfill()) and a verification of every key (dw_verify() without a
 *     range) that began after the backfill finished, the latest of which
 *     found the two models equal (a later dirty run closes the gate again).
 *     A closed gate
 *     refuses with DW_EGATE and a message saying what is missing, unless
 *     DW_STAGE_FORCE is given together with a non-empty reason; the history
 *     then records the move as forced, with the reason and the gate passed.
 *   - Entering OFF or COMPLETE stops writes to one side, so a finished
 *     backfill no longer counts: the next move through a gate needs a new
 *     backfill and verification.
 *   - Going back to trusting the old model (from LIVE, RAMPDOWN or
 *     COMPLETE to SHADOW, DUAL_WRITE or OFF) is gated only after the stage
 *     entered COMPLETE, where the old model stopped being written (a
 *     dw_restore() puts back the rows as backed up, not the writes made
 *     since): it then needs a backfill finished since, which at RAMPDOWN or
 *     LIVE copies the new model into the old one. No verification is
 *     required, so flipping LIVE back to SHADOW at the first sign of
 *     trouble stays a plain move. DW_STAGE_FORCE with a reason passes it
 *     as it passes the other gates.
 *   - Leaving OFF runs the spec's setup_sql first, in the same transaction,
 *     so dependent data exists before the first dual write.
 *   - A migration whose old model was dropped by dw_contract() stays at
 *     COMPLETE until dw_restore() puts the old model back.
 *
 * @param reason why, recorded; may be NULL except when forcing a gate.
 * @param flags  0, or DW_STAGE_FORCE and DW_STAGE_CHECK, alone or together.
 * @return DW_OK; DW_EGATE (a gate is closed); DW_EMISUSE (NULL handle, not a
 *         stage, a jump without DW_STAGE_FORCE, forcing a gate without a
 *         reason, leaving COMPLETE after the contract); DW_EBUSY; DW_ERROR;
 *         DW_ESPEC (the migration was redefined since the handle was
 *         opened: nothing moved, reopen); DW_EROLLEDBACK (inside the
 *         caller's transaction, which the database rolled back meanwhile:
 *         see the conventions at the top).
 */
DW_API int dw_stage_set(dw_migration *h, int stage, const char *reason,
                        unsigned int flags);

/** One entry of the history. Strings are valid only during the callback. */
typedef struct dw_history_entry {
    int64_t id;
    /** Seconds since the Unix epoch, with milliseconds. */
    double time;
    /** "stage", "define", "redefine", "backfill" (one finished), "contract",
     *  "restore", "override" (a dw_override_set() or dw_override_clear()
     *  call; promotions on write are not recorded here but in the
     *  overrides) or "routing" (dw_routing_set()). */
    const char *event;
    /** Stages before and after (both the current stage for define events). */
    int from_stage;
    int to_stage;
    int forced;
    /** The reason given, or NULL. */
    const char *reason;
    /** What the library adds, or NULL: the gate a forced move passed, the
     *  rows a backfill copied, the backup file and digest of a contract. */
    const char *detail;
} dw_history_entry;

/** Return non-zero to stop the iteration early. */
typedef int (*dw_history_fn)(const dw_history_entry *entry, void *payload);

/** Calls fn for each history entry of this migration, oldest first. Stops
 *  early (returning DW_OK) when fn returns non-zero. */
DW_API int dw_history(dw_migration *h, dw_history_fn fn, void *payload);

/* ------------------------------------------------------------------------ */
/* Writes                                                                    */
/* ------------------------------------------------------------------------ */

/**
 * An application write for one side: runs the SQL that writes (inserts,
 * updates or deletes) the row of `key` on that side, on `db`, the
 * handle's native connection (an sqlite3 * on SQLite). Return DW_OK on
 * success, a DW_ code on failure: DW_ECONSTRAINT, DW_EBUSY and DW_ENOMEM
 * are returned by dw_write() as they are; any other failure (DW_ERROR, or
 * a value that is no DW_ code) becomes DW_ECALLBACK. Each backend header
 * has a helper that maps its native error to a DW_ code and keeps its
 * message for dw_errmsg() (dw_sqlite_result() on SQLite). It must not
 * commit, roll back or release the library's savepoint.
 */
typedef int (*dw_write_fn)(void *db, const dw_value *key, int nkey,
                           void *payload);

/**
 * Writes one key through the migration.
 *
 * Follows the stage table at the key's effective stage (see "Key routing":
 * its override, else the canary's stage, else the migration's; with no
 * routing configured, the migration's): the authoritative side's write runs
 * first, then
 * (at DUAL_WRITE, SHADOW, LIVE and RAMPDOWN) the other side's. The
 * authoritative side's callback is required; the other side's may be NULL,
 * in which case the library syncs that side from the authoritative row
 * through the mapping (up at DUAL_WRITE and SHADOW, down at LIVE and
 * RAMPDOWN) -- and when the authoritative row no longer exists (the write
 * deleted it), the other side's row is deleted too.
 *
 * Everything runs in one transaction: outside a transaction the call begins
 * one with BEGIN IMMEDIATE (so a busy database is met before anything is
 * written) and commits it; inside the caller's transaction it runs in a
 * SAVEPOINT that nests in it. If either side fails, both are rolled back and
 * the error names the side (dw_errside()), unless the migration was opened
 * with DW_OPEN_REPAIR_QUEUE, in which case a failure of the non-authoritative
 * side keeps the authoritative write and queues the key for repair.
 *
 * After the write, in the same transaction: when promotion on write is set
 * and the key has no override and a lower effective stage, the key moves to
 * the promotion stage (synced, override stored); when a cohort is set and
 * the write moved the old row into or out of it, the key is synced for its
 * new effective stage. A failure there rolls the whole write back.
 *
 * @param key, nkey the key values, one per key column, in order.
 * @param write_old the old side's write, or NULL (see above).
 * @param write_new the new side's write, or NULL (see above).
 * @param payload   passed to both callbacks.
 * @return DW_OK; DW_EMISUSE (NULL handle or key, wrong key count or type, a
 *         callback the stage needs is missing, no down mapping when one is
 *         needed); DW_EBUSY (nothing applied); DW_ESPEC (the migration was
 *         redefined since the handle was opened: nothing written, reopen);
 *         DW_ECONSTRAINT, DW_ECALLBACK, DW_ERROR, DW_ENOMEM (nothing
 *         applied, dw_errside() says which side failed); DW_EROLLEDBACK
 *         (inside the caller's transaction, which the database rolled
 *         back meanwhile: see the conventions at the top).
 */
DW_API int dw_write(dw_migration *h, const dw_value *key, int nkey,
                    dw_write_fn write_old, dw_write_fn write_new,
                    void *payload);

/**
 * Mirrors one key for code that already wrote the authoritative side itself:
 * syncs the other side from the authoritative row through the mapping (or
 * deletes it when the authoritative row is gone). The authoritative side
 * is the one the key's effective stage trusts (dw_key_stage()). Syncs
 * nothing at OFF and COMPLETE, but promotion on write and cohort moves
 * apply as for dw_write(). Atomic as dw_write(), with the same result
 * codes.
 */
DW_API int dw_mirror(dw_migration *h, const dw_value *key, int nkey);

/** Number of keys waiting in the repair queue for this migration, in *out. */
DW_API int dw_repair_count(int64_t *out, dw_migration *h);

/* ------------------------------------------------------------------------ */
/* Reads and comparison                                                      */
/* ------------------------------------------------------------------------ */

/**
 * An application read for one side: fills `out` (an empty row) with the row
 * of `key` in the comparison shape -- both sides' read callbacks must name
 * the same columns for the same data. `db` is the handle's native
 * connection, as for dw_write_fn. Return DW_OK when the row exists,
 * DW_ENOTFOUND when it does not, a DW_ code on failure (as dw_write_fn).
 */
typedef int (*dw_read_fn)(dw_row *out, void *db, const dw_value *key,
                          int nkey, void *payload);

/** A custom comparator for one column: return 0 when the two values are
 *  equal, 1 when they differ, -1 to use dw_value_equal(). */
typedef int (*dw_compare_fn)(const char *column, const dw_value *old_value,
                             const dw_value *new_value, void *payload);

/** A normaliser, applied to a copy of each side's row before comparing
 *  (trim text, round floats, drop columns...). `side` says which row it is.
 *  Return DW_OK, or anything else to skip the comparison (counted in
 *  compare_errors; in test mode dw_read() then returns DW_ENOCOMPARE). It
 *  never changes the row dw_read() returns. */
typedef int (*dw_normalize_fn)(dw_row *row, int side, void *payload);

/** Orders for dw_read_options.order. There is no concurrent order: both
 *  reads run on the caller's one connection, which runs one statement at a
 *  time, inside one read transaction so that both see the same snapshot
 *  (reads on a second connection could see another commit between them
 *  and report a difference that is not there). */
enum {
    /** Read the authoritative side first (the default). */
    DW_ORDER_AUTHORITATIVE_FIRST = 0,
    /** Pick the order at random on each read, so neither side always reads
     *  from a cache the other warmed. */
    DW_ORDER_RANDOM = 1
};

/** Version 2 (1.0) dropped the progress-handler fields of version 1:
 *  dw_sqlite_set_progress_handler() names the application's handler. */
#define DW_READ_OPTIONS_VERSION 2

/** How dw_read() compares; set per handle with dw_set_read_options(). */
typedef struct dw_read_options {
    unsigned int version;
    /** Columns left out of the comparison (ASCII case ignored). */
    const char *const *ignore_columns;
    int nignore_columns;
    /** Optional custom comparator and normaliser, with compare_payload. */
    dw_compare_fn compare;
    dw_normalize_fn normalize;
    void *compare_payload;
    /** Share of reads at SHADOW and LIVE that also read and compare the
     *  other side, from 0.0 (never) to 1.0 (always, the default). A read
     *  left out does not read the other side at all (unlike LaunchDarkly's
     *  check ratio, which reads both sides and skips only the comparison):
     *  the other side's counters and latency then cover only the sampled
     *  reads. */
    double sample_ratio;
    /** DW_ORDER_AUTHORITATIVE_FIRST or DW_ORDER_RANDOM. */
    int order;
    /** Time budget in milliseconds for the non-authoritative read; 0 means
     *  none. A read that took longer than its budget is counted in
     *  read_timeouts and never compared. Only time spent in the database's
     *  statements can be interrupted (on SQLite with its progress handler:
     *  see dw_sqlite_set_progress_handler()): a read callback's time
     *  outside them (sleeping, waiting on a lock or a network, computing)
     *  runs to its end before it is found over budget, so the caller waits
     *  for it. */
    int budget_ms;
} dw_read_options;

#define DW_READ_OPTIONS_INIT                                                   \
    {                                                                          \
        DW_READ_OPTIONS_VERSION, NULL, 0, NULL, NULL, NULL, 1.0,               \
            DW_ORDER_AUTHORITATIVE_FIRST, 0                                    \
    }

/** Sets how this handle's reads compare; the struct and its arrays are
 *  copied. NULL restores the defaults. DW_EMISUSE for a NULL handle, an
 *  unknown version, a ratio outside [0, 1], a negative budget or an unknown
 *  order; DW_ENOMEM. */
DW_API int dw_set_read_options(dw_migration *h, const dw_read_options *opts);

/**
 * Reads one key through the migration and returns the authoritative answer.
 *
 * Reads the side(s) the stage table names for the key's effective stage (see
 * "Key routing"). A read that compares both sides runs them in one read
 * transaction (or in the caller's). A read that compares nothing -- at OFF,
 * DUAL_WRITE, RAMPDOWN and COMPLETE, and the share sampling leaves out --
 * adds no transaction of its own when the stage is cached and no key is
 * routed: the callback runs as the application's own read would, so a
 * callback that runs several statements and needs them to agree opens a
 * transaction around dw_read() itself. The stage is checked against the
 * snapshot the read saw; when another connection or handle changed the
 * migration since, the read is done again in a transaction, so a read
 * callback may be called twice in one dw_read().
 *
 * At SHADOW and LIVE (for the sampled share) it also reads the other side,
 * within the time budget, and compares the two rows field by field; every
 * disagreement -- a row on one side only, or a column whose values
 * differ -- is counted and reported (sink, log table, stderr). What
 * is returned never depends on the other side: its failure, slowness or
 * disagreement is counted, never returned -- except in test mode, where a
 * disagreement returns DW_EMISMATCH and a comparison that could not be
 * made (the other read failed or ran over budget, the old row did not map
 * up, the normaliser failed) returns DW_ENOCOMPARE, saying why, both with
 * `out` filled as without test mode. A comparison left undone by a locked
 * database or by memory running out says nothing about the models: test
 * mode returns that DW_EBUSY or DW_ENOMEM, `out` empty, as for a failed
 * read (the call may be retried). When the authoritative read fails,
 * the other side is still read, for its counters and its time (as
 * Scientist and LaunchDarkly's Migrator do), nothing is compared, and the
 * authoritative failure is returned unchanged, its message and side
 * included; after DW_EBUSY or DW_ENOMEM it is not read (it would only fail
 * too, and make the caller wait twice).
 *
 * With NULL callbacks the library reads through the spec: the old side's row
 * as stored (key and old model columns) when old is authoritative, the new
 * side's (key and new model columns) when new is; the comparison then runs in
 * the new model's shape, the old row mapped up.
 *
 * @param out  a row the caller owns; cleared, then filled with the
 *             authoritative row. Must not be NULL.
 * @param read_old, read_new the sides' reads, or NULL to read through the
 *             spec. Give both or neither: the comparison needs one shape.
 * @return DW_OK; DW_ENOTFOUND (the authoritative side has no such row, `out`
 *         is empty); DW_EMISMATCH, DW_ENOCOMPARE (test mode); DW_EMISUSE;
 *         DW_EBUSY; DW_ESPEC (the migration was redefined since the handle
 *         was opened: nothing compared or logged, reopen); DW_EROLLEDBACK
 *         (inside the caller's transaction, which the database rolled back
 *         meanwhile, perhaps on the compared side's read or the mismatch
 *         log's write; `out` is empty); DW_ECALLBACK, DW_ERROR, DW_ENOMEM
 *         for a failure of the authoritative read (and DW_EBUSY, DW_ENOMEM
 *         in test mode for one of the other read or the comparison).
 */
DW_API int dw_read(dw_row *out, dw_migration *h, const dw_value *key,
                   int nkey, dw_read_fn read_old, dw_read_fn read_new,
                   void *payload);

/**
 * Compares one key through the spec now, whatever the stage: the old row
 * mapped up against the new row. Sets *equal to 1 when they agree, 0 when
 * not; a disagreement is reported like a shadow read's (sink, log, stderr,
 * counters). The same mechanism as dw_read()'s comparison, for tests and
 * spot checks. A side's read, the up mapping or the normaliser failing is
 * returned, in test mode or not: DW_EMISUSE, DW_EBUSY, DW_ESPEC (redefined
 * since the handle was opened: nothing compared, reopen), DW_ECALLBACK (the
 * up callback or the normaliser failed; dw_errmsg() says which), DW_ERROR,
 * DW_ENOMEM.
 */
DW_API int dw_compare(int *equal, dw_migration *h, const dw_value *key,
                      int nkey);

/* ------------------------------------------------------------------------ */
/* Mismatches                                                                */
/* ------------------------------------------------------------------------ */

/** Kinds of mismatch. */
typedef enum dw_mismatch_kind {
    /** The old side has the row, the new side does not. */
    DW_MISMATCH_MISSING_NEW = 1,
    /** The new side has the row, the old side does not. */
    DW_MISMATCH_EXTRA_NEW = 2,
    /** Both have the row; some columns differ. */
    DW_MISMATCH_DIFFERENT = 3
} dw_mismatch_kind;

/** One differing column. */
typedef struct dw_diff {
    const char *column;
    /** The values, only when raw values may be shown for this column
     *  (DW_OPEN_LOG_RAW_VALUES and not redacted); NULL otherwise. A column
     *  present on one side only has a NULL-typed value on the other. */
    const dw_value *old_value;
    const dw_value *new_value;
    /** Always set: "type(length):digest" of each value, e.g.
     *  "text(9):3f2a91c07b5d4e18", or the raw value when it may be shown. */
    const char *old_desc;
    const char *new_desc;
} dw_diff;

/** A mismatch, as given to the sink and kept in the log. */
struct dw_mismatch {
    const char *migration;
    /** The key as JSON-style text: [42] or ["org-7",3]. */
    const char *key;
    int kind;
    /** 16 hex digits identifying this key's difference; the log's
     *  de-duplication uses (key, digest). */
    const char *digest;
    const dw_diff *diffs;
    int ndiffs;
};

/** One entry of the mismatch log table. Valid only during the callback. */
typedef struct dw_mismatch_entry {
    const char *key;
    const char *digest;
    int kind;
    /** The redacted (or raw, if allowed) differences as one line of text. */
    const char *detail;
    int64_t count;
    double first_seen;
    double last_seen;
} dw_mismatch_entry;

typedef int (*dw_mismatch_entry_fn)(const dw_mismatch_entry *entry,
                                    void *payload);

/** Calls fn for up to `limit` logged mismatches of this migration (limit <= 0
 *  means all), most recently seen first; stops early when fn returns
 *  non-zero. */
DW_API int dw_mismatch_log(dw_migration *h, int limit,
                           dw_mismatch_entry_fn fn, void *payload);

/** Counts of the log: distinct entries kept, and new entries dropped because
 *  the cap was reached. Either out pointer may be NULL. DW_ECORRUPT when
 *  the entry count the cap is checked against (kept in dw_migrations)
 *  disagrees with the entries stored, or is below zero: edited by hand.
 *  While it is, the cap still holds (a new entry is counted as dropped
 *  when the kept count is not below the cap); dw_mismatch_log_clear()
 *  repairs it. */
DW_API int dw_mismatch_log_count(int64_t *entries, int64_t *dropped,
                                 dw_migration *h);

/** Empties this migration's mismatch log and its dropped count. */
DW_API int dw_mismatch_log_clear(dw_migration *h);

/* ------------------------------------------------------------------------ */
/* Backfill                                                                  */
/* ------------------------------------------------------------------------ */

/** Flags for dw_backfill_options.flags. */
enum {
    /** Start over from the first key (and run setup_sql again), whatever
     *  was done before. A backfill is always safe to run again. */
    DW_BACKFILL_RESTART = 1u << 0
};

/** What is known of the process that runs a backfill begun and not
 *  finished (dw_backfill_progress.activity). */
enum {
    /** Nothing is under way: never started, finished, or stale. */
    DW_BACKFILL_IDLE = 0,
    /** Its last batch committed less than DW_BACKFILL_SILENT_SECONDS ago,
     *  and its process is not known to be gone. */
    DW_BACKFILL_RUNNING = 1,
    /** Stopped: its process is gone (checked when it ran on this host, by
     *  name) -- killed, crashed, or ended after DW_MORE --; run
     *  dw_backfill() again to resume. */
    DW_BACKFILL_STOPPED = 2,
    /** Silent: no batch for longer than DW_BACKFILL_SILENT_SECONDS, and its
     *  process cannot be checked (another host) or lives on without
     *  backfilling (a long throttle or pause, or it stopped calling). */
    DW_BACKFILL_SILENT = 3
};

/** How long a backfill's runner may go without committing a batch before
 *  it counts as DW_BACKFILL_SILENT. */
#define DW_BACKFILL_SILENT_SECONDS 60

/** The layout of dw_backfill_progress, for code that must build against
 *  several versions of this header: version 2 (0.4) added the fields from
 *  runner_pid on. Fields are only ever added at the end; the library fills
 *  the whole struct of its own version, so a program runs with the
 *  library whose header it was built with (the shared library's soname
 *  changes when a layout does, once past 0.x). */
#define DW_BACKFILL_PROGRESS_VERSION 2

/** Where a backfill stands: given to the progress callback after each batch
 *  and returned by dw_backfill() and dw_backfill_status(). Counts cover the
 *  whole backfill since it (re)started, across calls and processes. */
typedef struct dw_backfill_progress {
    /** The side copied from (the authoritative side when it started) and
     *  the side written; DW_SIDE_NONE when no backfill was ever started. */
    int source;
    int target;
    /** Source keys passed so far, and the estimated total (never less
     *  than rows_done). A rowid key (a lone INTEGER PRIMARY KEY), read
     *  without counting the table first: rows_done plus the integers after
     *  the last batch up to the largest key when the backfill started,
     *  times the share of the integers passed that held a row (the last
     *  batch's or the call's, the larger) -- exact where keys are dense
     *  or evenly spread; all of them (an upper bound) after a call's first
     *  batch from the start or one that passed no row. Other keys: the
     *  source's row count when it started. 0 until a first batch has
     *  committed over a rowid key. Once finished, exactly rows_done (rows
     *  deleted while it ran are not counted). */
    int64_t rows_done;
    int64_t rows_total;
    /** Target rows inserted or changed, and target rows deleted because
     *  their source row was gone. */
    int64_t rows_written;
    int64_t rows_deleted;
    /** Batches committed. */
    int64_t batches;
    /** Rate of this call in source keys per second, averaged from the end
     *  of its first batch (which carries one-time costs), and the
     *  estimated seconds left at that rate; both 0 until a second has
     *  passed since that batch (an estimate from one batch would be a
     *  guess). */
    double rows_per_second;
    double seconds_left;
    /** How long the last batch held the write lock and the longest of
     *  this call, in milliseconds (from its BEGIN IMMEDIATE's return to its
     *  COMMIT's), and the size chosen for the next batch. In WAL mode with
     *  SQLite's automatic checkpoint on, dw_backfill() starts that
     *  checkpoint itself once a batch's commit has released the lock,
     *  where the commit would have run it (the checkpoint does not hold
     *  the write lock, and it is not counted here); the connection's
     *  setting is as before when dw_backfill() returns. */
    double last_batch_ms;
    double max_batch_ms;
    int next_batch_rows;
    /** 1 when every key has been copied. */
    int finished;
    /** 1 when the stage left the backfill's range since: it must start
     *  over (the next dw_backfill() does so by itself). */
    int stale;
    /* Version 2. */
    /** Who committed the last batch: its process id and its host's name
     *  (gethostname(), cut to 63 bytes); 0 and "" when not known (no batch
     *  yet, or the last one was run by a library before 0.4). Stored with
     *  each batch's cursor, in its transaction. */
    int64_t runner_pid;
    char runner_host[64];
    /** Seconds since the Unix epoch when the stored state last changed:
     *  the last batch's commit (or the moment the backfill went stale);
     *  0 when nothing is stored. */
    double last_progress;
    /** A DW_BACKFILL_IDLE, _RUNNING, _STOPPED or _SILENT, judged from the
     *  above when the struct is filled. */
    int activity;
} dw_backfill_progress;

/** Called after each committed batch. Return 0 to go on, non-zero to stop
 *  (dw_backfill() then returns DW_MORE; the batch is kept). */
typedef int (*dw_backfill_progress_fn)(const dw_backfill_progress *progress,
                                       void *payload);

/** Called before each batch after the first of a call. Return 0 to go on,
 *  a positive number of milliseconds to hold (the library sleeps, without
 *  any lock, then asks again), or a negative value to stop (DW_MORE). */
typedef int (*dw_throttle_fn)(void *payload);

#define DW_BACKFILL_OPTIONS_VERSION 1

typedef struct dw_backfill_options {
    unsigned int version;
    /** Rows in the first batch; later batches adapt towards batch_ms.
     *  0 means the default, 1000. */
    int batch_rows;
    /** The batch time not to exceed, in milliseconds: the size grows (at
     *  most twofold per batch, by a quarter near the aim) or shrinks (at
     *  most by half) so a batch holds the write lock for about 70% of this
     *  at the per-row time of the recent batches (the second slowest of
     *  the last four), leaving room for a slower moment. 0 means the
     *  default, 20; negative keeps batch_rows. */
    int batch_ms;
    /** Upper bound for the adapted size; 0 means the default, 100000. */
    int max_batch_rows;
    /** Sleep between batches, in milliseconds, without any lock. */
    int pause_ms;
    /** Stop, returning DW_MORE, once this many milliseconds have passed
     *  (checked between batches; at least one batch runs per call): the
     *  incremental form for programs with their own event loop. 0 means
     *  no limit. */
    int time_limit_ms;
    /** DW_BACKFILL_... flags. */
    unsigned int flags;
    dw_backfill_progress_fn progress;
    dw_throttle_fn throttle;
    void *payload;
} dw_backfill_options;

#define DW_BACKFILL_OPTIONS_INIT                                               \
    {                                                                          \
        DW_BACKFILL_OPTIONS_VERSION, 0, 0, 0, 0, 0, 0u, NULL, NULL, NULL       \
    }

/**
 * Copies the existing rows from the authoritative side to the other through
 * the mapping (old to new up to SHADOW; new to old at LIVE and RAMPDOWN, to
 * rebuild the old model for a rollback). Keys routed to stages of their
 * own (see "Key routing") whose stage trusts the same side are copied with
 * the others. Keys whose effective stage trusts the side the backfill
 * writes (an override at such a stage, or the canary's keys when its stage
 * does) are left out of the set-based copy and delete, and each is synced
 * on its own from the side its own stage trusts (one held at OFF or
 * COMPLETE is left alone), so its data is never overwritten from the side
 * it does not trust. When more such overrides are stored than the
 * batch's size in rows, or the mapping is a C callback and some key's
 * stage trusts the side written, every key of either side in the batch's
 * range is synced on its own that way (slower: one sync per key).
 *
 * The source is read in key order, in pages of keys after a stored cursor.
 * Each batch is one short BEGIN IMMEDIATE transaction that makes the
 * target's rows for those keys equal to the mapped source rows, deletes the
 * target's rows in that key range whose source row is gone, and stores the
 * cursor -- all committed together, so a crash, a kill or a stop resumes
 * exactly after the last committed batch. Live writes go on between batches;
 * because they are mirrored (the stage is at least DUAL_WRITE), a key the
 * backfill already passed stays in agreement. The work ends at the largest
 * source key present when the backfill started: later keys were written to
 * both sides, so a steady stream of inserts cannot keep it running.
 *
 * It never uses INSERT OR IGNORE or REPLACE: a constraint violation on the
 * target (say, a UNIQUE column of the new model that two old rows share)
 * stops it with DW_ECONSTRAINT and a message naming the constraint and the
 * key; that batch is rolled back, nothing is dropped or replaced, and the
 * cursor stays where it was. (A batch deletes its range's orphaned target
 * rows before copying, so a value they held is free again; a value held by a
 * target row of a later range, or two values swapped between keys, still
 * stops it: fix that row and call again.) With an SQL mapping a batch is a
 * few set-based statements; with a C mapping callback, one statement
 * reading the batch's source rows and one prepared upsert per row, which
 * leaves a row whose values are already the same bytes alone.
 *
 * A backfill that finished is done: calling again returns DW_OK at once,
 * unless DW_BACKFILL_RESTART is given or the stage moved to OFF or COMPLETE
 * since (the backfill went stale and starts over by itself). One that was
 * begun under the other authoritative side (the stage crossed SHADOW/LIVE)
 * is refused: restart it.
 *
 * @param out  if not NULL, receives where the backfill stands on return
 *             (also on failure).
 * @param opts NULL for the defaults.
 * @return DW_OK (finished); DW_MORE (stopped early by time_limit_ms, the
 *         progress callback or the throttle; committed work is kept);
 *         DW_EBUSY (another connection holds the write lock: nothing of the
 *         batch applied, the cursor unchanged, retry); DW_ECONSTRAINT;
 *         DW_ECALLBACK (a mapping callback failed); DW_EMISUSE (bad options,
 *         a stage without two models -- OFF or COMPLETE --, called inside a
 *         transaction, a backfill begun under the other authoritative side,
 *         a key column holding NULL or a value that is not INTEGER, REAL or
 *         TEXT, or a key that cannot be paged through: a text with a NUL
 *         byte, an infinite or NaN real); DW_ESPEC (the spec was
 *         redefined since the handle was opened: reopen); DW_ERROR; DW_ENOMEM. Redefining the
 *         spec (DW_OPEN_REDEFINE) makes a finished backfill stale, as
 *         entering OFF or COMPLETE does. */
DW_API int dw_backfill(dw_backfill_progress *out, dw_migration *h,
                       const dw_backfill_options *opts);

/** Reads where the stored backfill stands into *out, without doing any
 *  work (rate fields 0), with who ran it last and whether that process
 *  still runs it (activity). A tool tells a live backfill from a dead one
 *  this way. DW_EMISUSE for NULL arguments; DW_EBUSY; DW_ERROR. */
DW_API int dw_backfill_status(dw_backfill_progress *out, dw_migration *h);

/* ------------------------------------------------------------------------ */
/* Verification                                                              */
/* ------------------------------------------------------------------------ */

/** Where a verification run stands: given to the progress callback after
 *  each chunk of keys. */
typedef struct dw_verify_progress {
    /** Keys compared so far (distinct keys of either side), and the
     *  estimated total: the larger side's row count when the run began
     *  (never less than keys; exactly keys once finished). */
    int64_t keys;
    int64_t keys_total;
    /** Divergent keys found so far (missing, extra and different). */
    int64_t divergent;
    /** Keys per second, averaged from the end of the first chunk, and the
     *  estimated seconds left at that rate; both 0 until a second has
     *  passed since that chunk. */
    double keys_per_second;
    double seconds_left;
    /** 1 on the call after the last chunk. */
    int finished;
} dw_verify_progress;

/** Called after each chunk, outside any transaction; it must not call the
 *  handle. */
typedef void (*dw_verify_progress_fn)(const dw_verify_progress *progress,
                                      void *payload);

/** Version 2 added `progress` and `progress_payload`. A version 1 struct
 *  (without them) is still accepted. */
#define DW_VERIFY_OPTIONS_VERSION 2

typedef struct dw_verify_options {
    unsigned int version;
    /** An optional key range, both ends inclusive: `from` with nfrom values
     *  (one per key column) or NULL for the first key, `to` with nto values
     *  or NULL for the last. A run over a range is stored but opens no
     *  gate. */
    const dw_value *from;
    int nfrom;
    const dw_value *to;
    int nto;
    /** Keys compared per read transaction; 0 means the default, 1000. */
    int chunk_rows;
    /** How many divergent keys are passed to `fn` and stored with their
     *  differences; 0 means the default, 10; negative means none. Every
     *  divergent key is stored for dw_repair_divergent() regardless. */
    int report_limit;
    /** Called for each of the first report_limit divergences, with the
     *  differences described as the mismatch log describes them (redacted
     *  unless DW_OPEN_LOG_RAW_VALUES), once the chunk's read transaction
     *  has ended -- so it may write on the connection. May be NULL. */
    dw_mismatch_fn fn;
    void *payload;
    /** Version 2: called after each chunk with where the run stands, for
     *  a progress display; may be NULL. When set, the run begins by
     *  counting both sides' rows (a scan of each key index, in a read
     *  transaction) for the estimated total. */
    dw_verify_progress_fn progress;
    void *progress_payload;
} dw_verify_options;

#define DW_VERIFY_OPTIONS_INIT                                                 \
    {                                                                          \
        DW_VERIFY_OPTIONS_VERSION, NULL, 0, NULL, 0, 0, 0, NULL, NULL, NULL,   \
            NULL                                                               \
    }

/** The outcome of one verification run. */
typedef struct dw_verify_result {
    /** The stored run's id; 0 when no run is stored (dw_verify_last()). */
    int64_t run_id;
    /** Seconds since the Unix epoch when it began, and how long it took. */
    double started;
    double seconds;
    /** Distinct keys seen on either side. */
    int64_t keys;
    /** Keys the old side has and the new side lacks, the reverse, and keys
     *  on both sides whose rows differ. */
    int64_t missing;
    int64_t extra;
    int64_t different;
    /** 1 when the range covered every key. */
    int full;
    /** 1 when missing, extra and different are all 0. */
    int clean;
    /** 1 when the run ran to the end (a stored run cut short by a failure
     *  or a crash has 0 and counts nothing). */
    int finished;
    /** Room for fields a later 1.x adds, set to zero until then. */
    int64_t reserved[6];
} dw_verify_result;

/**
 * Compares every key of both sides -- the old row mapped up against the new
 * row, with the handle's read options (ignored columns, comparator,
 * normaliser) -- and counts keys missing on the new side, extra on the new
 * side and different. The same comparison as dw_read()'s shadow reads and
 * dw_compare(); divergences are not written to the mismatch log.
 *
 * It streams: each chunk of keys is read in one short read transaction
 * (which never blocks writers in WAL mode), memory does not grow with the
 * table, and the data is joined inside SQLite. Each run is stored (when,
 * how long, the counts, every divergent key) and a clean run over every key
 * is what the LIVE and COMPLETE gates look for. Works at any stage while
 * both models exist.
 *
 * @param out  receives the counts; must not be NULL.
 * @param opts NULL for the defaults.
 * @return DW_OK whether or not divergences were found (see out->clean);
 *         DW_EMISUSE (bad options or range, called inside a transaction,
 *         the old model dropped by the contract, a row of either side with
 *         NULL in a key column, a key that cannot be paged through -- a text
 *         with a NUL byte, an infinite or NaN real); DW_ESPEC (the spec was
 *         redefined since the handle was opened); DW_EBUSY; DW_ECALLBACK (a mapping
 *         callback or the normaliser failed); DW_ERROR; DW_ENOMEM.
 */
DW_API int dw_verify(dw_verify_result *out, dw_migration *h,
                     const dw_verify_options *opts);

/** The last stored verification run of this migration, ranged or not, in
 *  *out; all zero (run_id 0) when there is none. DW_EMISUSE, DW_EBUSY,
 *  DW_ERROR. */
DW_API int dw_verify_last(dw_verify_result *out, dw_migration *h);

/* ------------------------------------------------------------------------ */
/* Repair                                                                    */
/* ------------------------------------------------------------------------ */

/** What a repair did. */
typedef struct dw_repair_result {
    /** Keys synced from the authoritative side. */
    int64_t repaired;
    /** Keys whose sync failed; they stay listed (queue entries get another
     *  attempt and the new error). */
    int64_t failed;
    /** Room for fields a later 1.x adds, set to zero until then. */
    int64_t reserved[6];
} dw_repair_result;

/**
 * Re-syncs `count` keys from the authoritative side -- the side the key's
 * effective stage trusts (see "Key routing"): the other side's row
 * is made equal to the mapped authoritative row, or deleted when that row
 * is gone -- the same sync dual writes use. `keys` holds count * nkey
 * values, one key after another. All in one transaction (or a SAVEPOINT in
 * the caller's): a failure rolls every key of the call back.
 *
 * @param out if not NULL, receives the counts.
 * @return DW_OK; DW_EMISUSE (bad keys, a stage without two models, the old
 *         model dropped); DW_EBUSY; DW_ECONSTRAINT, DW_ECALLBACK, DW_ERROR,
 *         DW_ENOMEM (nothing applied; the message names the key); DW_ESPEC
 *         (redefined since the handle was opened); DW_EROLLEDBACK (inside
 *         the caller's transaction, which the database rolled back
 *         meanwhile: see the conventions at the top).
 */
DW_API int dw_repair_keys(dw_repair_result *out, dw_migration *h,
                          const dw_value *keys, int nkey, int count);

/**
 * Re-syncs every key the last verification run found divergent and has not
 * repaired yet, in batches of short transactions (so it resumes after a
 * stop), marking each as repaired. A key whose sync fails is left listed and
 * the others go on; the call then returns the first failure's code, with a
 * message naming its key. Verify again afterwards: a gate needs a clean run.
 * Outside a transaction only. `out`, if not NULL, receives the counts
 * (also on failure). Result codes as dw_repair_keys().
 */
DW_API int dw_repair_divergent(dw_repair_result *out, dw_migration *h);

/**
 * Drains the repair queue (keys whose mirror write failed under
 * DW_OPEN_REPAIR_QUEUE): each key is re-synced from the authoritative side
 * and removed from the queue in the same transaction. A key whose sync
 * fails again stays queued with attempts + 1 and the new error; the others
 * go on, and the call returns the first failure's code. Outside a
 * transaction only. `out`, if not NULL, receives the counts (also on
 * failure). Result codes as dw_repair_keys().
 */
DW_API int dw_repair_queue(dw_repair_result *out, dw_migration *h);

/* ------------------------------------------------------------------------ */
/* Contract: dropping the old model, and putting it back                     */
/* ------------------------------------------------------------------------ */

/**
 * Drops the old model once the migration is COMPLETE, after a backup that
 * was written and checked.
 *
 * The backup target is the backend's: on SQLite a file path (below); on a
 * server database it will name a place in that database.
 *
 * 1. Writes the old model to a new SQLite file at `backup_target`: for two
 *    tables, the whole old table (its definition, indexes and triggers and,
 *    for a rowid table whose rowid is not a column, its rowids); for one
 *    table, the key and the old model's columns. Also stores what dw_restore() needs: the definitions, the
 *    migration and the row count and content digest (SHA-256 over every
 *    row in key order, values typed).
 * 2. Reads the file back through a connection of its own and checks the
 *    row count and digest against the source.
 * 3. In one transaction on the caller's connection: checks the stage is
 *    still COMPLETE and the source still has that count and digest, drops
 *    the old table (two tables) or the old columns (ALTER TABLE DROP
 *    COLUMN, one table), and records the contract -- file, rows, digest --
 *    in the history. If anything fails, nothing is dropped.
 *
 * Afterwards the migration stays at COMPLETE and works on the new model
 * alone; dw_sqlite_open() still opens it (the old side's names come from the
 * stored spec), and operations that need the old model say it was dropped.
 *
 * Refused while routing keeps any key below COMPLETE: an override at an
 * earlier stage, or a canary whose stage is not COMPLETE (checked before the
 * backup and again in step 3).
 *
 * Other migrations stored in the database (checked before the backup and
 * again in step 3), for what the contract would drop -- the old table, or
 * with one table the old columns:
 *   - one that has it (or one of those columns, key included) as its new
 *     side, at any stage, contracted or not: refused (DW_EGATE), as it is
 *     that migration's model;
 *   - one not contracted that has it as its old side below COMPLETE, or at
 *     COMPLETE with keys routed below it: refused (DW_EGATE), as it still
 *     reads and writes it; the message names that migration, what it uses
 *     and its stage;
 *   - one not contracted that has it as its old side at COMPLETE, every key
 *     there: it no longer reads or writes the old model, but its own
 *     contract will back it up. The contract goes on, with its backup, and
 *     keeps the old model in place for that migration (the history entry
 *     says so); that migration's contract, the last, drops it. With one
 *     table, when that migration has only some of the old columns: refused
 *     (DW_EGATE), as its contract would leave the others behind; contract
 *     that one first, which keeps them for this one.
 *   - with two tables, one of other tables whose mapping expressions, setup
 *     SQL or cohort (not contracted) name the old table (a subquery):
 *     refused (DW_EGATE), as they would no longer prepare; redefine it
 *     without the old table first. (The text is searched for the name as
 *     an identifier, bare or quoted; with one table, such texts are not
 *     searched for the old columns.)
 * So two migrations of one old model are contracted in turn once both are
 * at COMPLETE. Another migration whose stored spec does not parse cannot
 * be told to use the old model or not: DW_ECORRUPT naming it (dw_restore()
 * too), nothing dropped.
 *
 * @param backup_target on SQLite a new file; never overwritten. An existing file there
 *                    is used only when it is a complete backup of this
 *                    migration's old model exactly as it is now (what a
 *                    contract whose commit failed leaves, see below); any
 *                    other is refused. A plain path: one starting with
 *                    "file:" (which SQLite may read as a URI) and ":memory:"
 *                    are refused.
 * @param reason      recorded in the history; may be NULL.
 * @return DW_OK; DW_EGATE (not at COMPLETE, keys routed below it, or
 *         another migration still uses the old model, see above);
 *         DW_EMISUSE (NULL arguments,
 *         another file exists there, called inside a transaction, already
 *         contracted); DW_ERROR (the backup could not be written or does
 *         not check out, or SQLite refused to drop, e.g. an index or view
 *         still needs a column); DW_ECONSTRAINT (another table has a
 *         foreign key to the old table: dropping it could cascade into that
 *         table, whatever PRAGMA foreign_keys says); DW_EBUSY; DW_ENOMEM.
 *         On any failure the old model is untouched and the backup file
 *         this call wrote is removed -- except when the final COMMIT itself
 *         failed: that commit may still prove durable (in WAL mode its pages
 *         can be in the log, and a crash then leaves the old model
 *         dropped), so the backup is kept and dw_errmsg() says so; calling
 *         dw_contract() again with the same path uses it. The backup is
 *         kept too when the drop met a busy database or found the old
 *         model contracted by another connection, whose contract may have
 *         used this very file.
 */
DW_API int dw_contract(dw_migration *h, const char *backup_target,
                       const char *reason);

/**
 * Puts the old model back from a backup dw_contract() wrote: checks the
 * file (it must be this migration's, and its rows must match its stored
 * count and digest), recreates the old table with its indexes and triggers
 * (or re-adds the old columns with their declared types and constant
 * defaults -- ALTER TABLE cannot re-add NOT NULL without a default, an
 * expression default, COLLATE, CHECK or REFERENCES, so those are left off),
 * copies
 * the rows back, checks the count and digest again, and moves the migration
 * to RAMPDOWN -- all in one transaction, recorded in the history.
 *
 * When the old model is there already, exactly as the backup holds it --
 * the contract kept it for another migration, or the restore of another
 * migration of the same old model put it back --, it is taken as it is and
 * nothing is copied (the history entry says so); there in any other form,
 * the restore is refused. With one table, old columns that another
 * migration, not contracted, has among its own old columns (its restore put
 * them back) are left as they are, and the restore is refused unless they
 * hold the backup's values. So of two migrations of one old model,
 * contracted in turn, either is restored first (from its own backup), and
 * the other then too while nothing has written the old model since.
 *
 * The restored rows are those of the contract; writes since went to the new
 * model only. At RAMPDOWN dw_backfill() copies new to old, so run it and
 * dw_verify() before moving further back (dw_stage_set() refuses to trust
 * the old model again until a backfill has finished).
 *
 * @param backup_target the backup, as for dw_contract().
 * @return DW_OK; DW_EMISUSE (NULL arguments, a "file:" or ":memory:" path,
 *         not contracted, called inside
 *         a transaction, a backup of another migration or of this one under
 *         a spec redefined since, the old table exists again); DW_ERROR (unreadable file, or its rows do not
 *         match its digest); DW_EBUSY; DW_ENOMEM.
 */
DW_API int dw_restore(dw_migration *h, const char *backup_target,
                      const char *reason);

/* ------------------------------------------------------------------------ */
/* Key routing: per-key overrides, canaries, promote on write                */
/* ------------------------------------------------------------------------ */

/*
 * The stage can differ per key. The *effective stage* of a key is
 *   1. its override, when one is set (dw_override_set(), or promote on
 *      write);
 *   2. else the canary stage, when the key is in the canary (its bucket is
 *      below the canary percentage, or its old row matches the cohort
 *      predicate);
 *   3. else the migration's stage.
 * dw_write(), dw_mirror() and dw_read() follow the key's effective stage,
 * row by row of the stage table. With no override stored and no canary
 * configured, nothing extra is read: the routing settings are loaded with
 * the stage, from the same row, only when something was committed.
 *
 * Moving a key. A side the new stage writes or trusts may not have been
 * written for the key before (the new model at OFF, the old one at
 * COMPLETE). So whenever a key changes effective stage by an explicit act
 * -- an override set or cleared, a promotion on write, a write that moves
 * its old row into or out of the cohort -- the library syncs it in the same
 * transaction: when the stage it leaves trusts one side and the stage it
 * enters writes the other, that other side is made equal to the trusted
 * row mapped (or deleted when that row is gone), exactly as a dual write
 * would. Carrying a row needs a mapping in that direction (up, or down),
 * else the move is refused with DW_EMISUSE: moves use the spec's mappings,
 * never the application's write callbacks. A key whose trusted row is gone
 * (a delete took it out of the cohort, say) has nothing to carry and moves
 * without one. The rule is applied as stated even when
 * the other side was written at the stage left too (LIVE to RAMPDOWN
 * re-copies the old row), so a write queued for repair is not lost. So
 * swapping a key back to OFF carries its latest data, as the trusted side
 * holds it, into the old model.
 *
 * Only writes through the library are watched: an application that changes
 * an old row itself, moving it into or out of the cohort, moves the key
 * without a sync, and when the two stages trust different models nothing
 * can tell afterwards which side is current. So change the cohort's
 * columns only through dw_write(); dw_mirror() refuses (DW_EMISUSE) a key
 * that is not overridden while a cohort is set and the canary and the
 * migration trust different models.
 *
 * Changing the canary (dw_routing_set()) moves whole sets of keys at once
 * and syncs none of them, so it is checked instead: every side a moved key
 * will trust must have been written for it where it was, and when keys
 * move between stages that trust different sides, the gate of the
 * migration must be open (a finished backfill and a clean verification
 * since, as for LIVE), or DW_STAGE_FORCE be given with a reason -- in both
 * directions: unlike the migration's own stage, moving canary keys back to
 * a stage that trusts the old model is gated too, since keys that went
 * through COMPLETE left the old model behind. A change
 * that starts writing a side some keys did not get before makes the
 * backfill stale, so the gates want a new backfill and verification.
 *
 * Setup SQL. While the migration is at OFF its setup_sql has not run; an
 * override, a canary or a promotion stage that writes the new model runs it
 * first (dw_override_set(), dw_routing_set()), so dependent data exists
 * before any key is copied. It must be safe to run again.
 *
 * Callbacks. With routing, which side a key trusts varies per key: give
 * dw_write() both sides' callbacks (or mappings), and code that writes a
 * side itself before dw_mirror() must write the side dw_key_stage() says the
 * key trusts -- dw_mirror() makes the other side equal to it (and see the
 * cohort rule above).
 *
 * The backfill brings every key's other side level with the side its
 * effective stage trusts (a key held at OFF or COMPLETE on the other model
 * than the migration's is left alone); repairs sync each key from that
 * side too. Both
 * still need the migration's own stage to have two models (not OFF or
 * COMPLETE), whatever the keys' stages.
 * Verification compares every key whatever its stage, so a key held at OFF
 * or COMPLETE by routing and written since shows as divergent (only one
 * side is written there); a repair brings it level, and the gates see it.
 * dw_contract() refuses while an override or the canary keeps any key
 * below COMPLETE.
 *
 * Key text. Keys are shown, stored and hashed as text: "[" the key values
 * separated by "," "]". An INTEGER is written in decimal ("-" for negative
 * numbers, no "+", no leading zeros); a TEXT as a JSON string: a double
 * quote, then each byte of the value -- '"' and '\' each preceded by '\',
 * a byte below 0x20 as \u00 and two lower-case hex digits, every other
 * byte as it is (UTF-8 is not checked) -- then a double quote. No spaces.
 * Examples: [42]  [-7]  ["org-7",3]  ["a\"b"].
 *
 * Buckets. The bucket of a key is a number from 0 to 9999: the first 8
 * bytes of the SHA-256 digest of its key text, read as an unsigned
 * big-endian 64-bit number, modulo 10000. A key is in a canary of P
 * percent when its bucket is below round(P * 100), so raising P only adds
 * keys. Pinned vectors (any SHA-256 tool can check them):
 *   [1]                    -> 5302
 *   [42]                   -> 9599
 *   [-7]                   -> 4876
 *   [9223372036854775807]  -> 8833
 *   ["org-7",3]            -> 892
 *   ["a\"b"]               -> 6810   (the text a"b)
 *   ["a\u000ab"]           -> 5251   (a, a newline, b)
 *   the one-letter text U+00E9, whose key text is the 6 bytes
 *   5B 22 C3 A9 22 5D     -> 8354
 */

/** The number of buckets: a bucket is 0 to DW_BUCKETS - 1. */
#define DW_BUCKETS 10000

/** Where a key's effective stage comes from (dw_key_stage()). */
typedef enum dw_route {
    DW_ROUTE_MIGRATION = 0,
    DW_ROUTE_CANARY = 1,
    DW_ROUTE_OVERRIDE = 2
} dw_route;

/** dw_routing.promote_stage when writes promote nothing. */
#define DW_PROMOTE_NONE (-1)

#define DW_ROUTING_VERSION 1

/**
 * A migration's routing settings, stored with it (every connection and
 * process follows them). Start from DW_ROUTING_INIT.
 */
typedef struct dw_routing {
    unsigned int version;
    /** Share of keys in the canary by bucket, 0 to 100 in steps of 0.01
     *  (rounded to the nearest step). 0: none by percentage. */
    double canary_percent;
    /** A cohort: an SQL expression over the old table's columns (e.g.
     *  "organisation_id = 'org-7'"); keys whose old row makes it true are in
     *  the canary. NULL or "": none. It is SQL run as given, like a mapping:
     *  one read-only expression, no parameters, no second statement, no
     *  subquery; names in double quotes are identifiers, strings take
     *  single quotes. It must depend on the old row alone (no random(), no
     *  time): the library watches writes through it to move keys, and
     *  cannot see anything else change. dw_routing_set() refuses a call
     *  to a function SQLite does not know as deterministic (random(),
     *  randomblob(), changes(), last_insert_rowid(), CURRENT_TIMESTAMP, an
     *  application function registered without SQLITE_DETERMINISTIC) and
     *  a date or time function given 'now' or no time value (julianday(),
     *  strftime('%s')), naming it. A key with no old row is not in the
     *  cohort. */
    const char *canary_cohort;
    /** The effective stage of keys in the canary. */
    int canary_stage;
    /** When a key without an override, whose effective stage is below this
     *  stage, is written through dw_write() or dw_mirror(), it moves to this
     *  stage (synced as above) and gets an override recording it was
     *  promoted -- in the write's transaction, after the write.
     *  DW_PROMOTE_NONE (the default): no promotion. */
    int promote_stage;
} dw_routing;

#define DW_ROUTING_INIT                                                        \
    {                                                                          \
        DW_ROUTING_VERSION, 0.0, NULL, DW_STAGE_OFF, DW_PROMOTE_NONE           \
    }

/**
 * The bucket of a key (see "Buckets" above) into *out. Needs no handle: any
 * program can compute it. A pure function: safe from any thread. DW_OK; DW_EMISUSE (NULL out or key, nkey < 1, a
 * value that is not INTEGER or TEXT, a TEXT holding a NUL byte); DW_ENOMEM.
 */
DW_API int dw_key_bucket(int *out, const dw_value *key, int nkey);

/**
 * The effective stage of one key now, into *stage, and where it comes from
 * (a dw_route) into *route, which may be NULL. Reads in its own read
 * transaction or the caller's. DW_OK; DW_EMISUSE (NULL handle or stage, a
 * bad key); DW_EBUSY; DW_ERROR; DW_ENOMEM.
 */
DW_API int dw_key_stage(int *stage, int *route, dw_migration *h,
                        const dw_value *key, int nkey);

/**
 * Sets the override of `count` keys to `stage`: a published list of records
 * to move ahead (or hold back, or swap back). `keys` holds count * nkey
 * values, one key after another. Each key whose effective stage changes is
 * synced as described above. All in one transaction (or a SAVEPOINT in the
 * caller's): on any failure nothing of the call is kept. Recorded in the
 * history (event "override", detail "N keys to STAGE").
 *
 * @param reason recorded; may be NULL.
 * @return DW_OK; DW_EMISUSE (NULL handle or keys, count < 1, a bad key, not
 *         a stage, no mapping for a sync the move needs, the old model
 *         dropped); DW_EBUSY; DW_ECONSTRAINT, DW_ECALLBACK, DW_ERROR,
 *         DW_ENOMEM (nothing applied; the message names the key); DW_ESPEC
 *         (redefined since the handle was opened); DW_EROLLEDBACK (inside
 *         the caller's transaction, which the database rolled back
 *         meanwhile: see the conventions at the top).
 */
DW_API int dw_override_set(dw_migration *h, const dw_value *keys, int nkey,
                           int count, int stage, const char *reason);

/**
 * Removes the override of `count` keys; each then follows the canary or the
 * migration again, and is synced if its effective stage changes. Keys
 * without an override are left alone. Atomic as dw_override_set(), with
 * the same result codes; recorded in the history as event "override" with
 * detail "N overrides cleared".
 *
 * @param cleared if not NULL, receives how many overrides were removed.
 */
DW_API int dw_override_clear(int *cleared, dw_migration *h,
                             const dw_value *keys, int nkey, int count,
                             const char *reason);

/** One stored override. Strings are valid only during the callback. */
typedef struct dw_override_entry {
    /** The key text. */
    const char *key;
    int stage;
    /** 1 when a write promoted the key, 0 when dw_override_set() set it. */
    int promoted;
    /** Seconds since the Unix epoch when it was set. */
    double time;
} dw_override_entry;

/** Return non-zero to stop the iteration early. */
typedef int (*dw_override_fn)(const dw_override_entry *entry, void *payload);

/** Calls fn for each override of this migration, in key text order. Stops
 *  early (returning DW_OK) when fn returns non-zero. DW_EMISUSE for a NULL
 *  handle or fn; DW_EBUSY; DW_ERROR. */
DW_API int dw_override_list(dw_migration *h, dw_override_fn fn,
                            void *payload);

/**
 * Replaces the migration's routing settings (canary and promotion) and
 * records the change in the history (event "routing"). The checks of
 * "Changing the canary" above apply. Inside the caller's transaction it
 * becomes part of it.
 *
 * @param r      the settings; NULL means none (DW_ROUTING_INIT).
 * @param reason recorded; required when DW_STAGE_FORCE passes a closed gate.
 * @param flags  0 or DW_STAGE_FORCE.
 * @return DW_OK; DW_EGATE (the gate is closed); DW_EMISUSE (NULL handle,
 *         unknown version or flags, a percentage outside 0..100, not a
 *         stage, a cohort that is not one read-only expression over the old
 *         table or that calls a non-deterministic function, a move that
 *         would trust a side not written for the keys,
 *         forcing without a reason, the old model dropped); DW_EBUSY;
 *         DW_ERROR; DW_ENOMEM; DW_ESPEC (redefined since the handle was
 *         opened); DW_EROLLEDBACK (inside the caller's transaction, which
 *         the database rolled back meanwhile: see the conventions at the
 *         top).
 */
DW_API int dw_routing_set(dw_migration *h, const dw_routing *r,
                          const char *reason, unsigned int flags);

/**
 * The stored routing settings into *out. out->canary_cohort points into the
 * handle and stays valid until the next call on the handle (NULL when there
 * is none). DW_OK; DW_EMISUSE; DW_EBUSY; DW_ERROR.
 */
DW_API int dw_routing_get(dw_routing *out, dw_migration *h);

/** Where the keys stand (dw_routing_count()). */
typedef struct dw_routing_progress {
    /** Distinct keys on either side. */
    int64_t keys;
    /** Those keys by effective stage, indexed by dw_stage. */
    int64_t by_stage[6];
    /** Those keys by where their stage comes from: overridden (promoted
     *  ones included), overridden by a promotion on write, in the
     *  canary. */
    int64_t overridden;
    int64_t promoted;
    int64_t in_canary;
    /** Overrides stored for keys present on neither side (deleted rows). */
    int64_t overrides_without_row;
    /** Rows of the old model, and how many of them have a row in the new
     *  model (by key; verification says whether they are equal). */
    int64_t old_rows;
    int64_t covered;
    /** Rows of the new model. */
    int64_t new_rows;
    /** Room for fields a later 1.x adds, set to zero until then. */
    int64_t reserved[6];
} dw_routing_progress;

/**
 * Counts keys per effective stage and how much of the old model the new one
 * covers. Reads every key of both sides in one read transaction (or the
 * caller's): it does not block writers in WAL mode, but its cost grows with
 * the table (a hash per key, a lookup per key when overrides exist, the
 * cohort per key when one is set). DW_OK; DW_EMISUSE (NULL arguments, the
 * old model dropped); DW_EBUSY; DW_ERROR; DW_ENOMEM.
 */
DW_API int dw_routing_count(dw_routing_progress *out, dw_migration *h);

/* ------------------------------------------------------------------------ */
/* Metrics                                                                   */
/* ------------------------------------------------------------------------ */

/** Counters for one side. */
typedef struct dw_side_metrics {
    uint64_t reads;
    uint64_t read_errors;
    /** Non-authoritative reads that took longer than the time budget
     *  (interrupted in SQLite, or over it when they ended); also counted
     *  in read_errors. */
    uint64_t read_timeouts;
    uint64_t writes;
    uint64_t write_errors;
    /** The operations timed on this side, their total and their longest
     *  time, in nanoseconds. Every write and every read of a comparison is
     *  timed; of the reads that compare nothing (the stage compares
     *  nothing, or sampling left the read out), one in 16: two clock
     *  readings are a measurable share of a read served from SQLite's
     *  cache. The mean latency_total_ns / latency_count stands for all. */
    uint64_t latency_count;
    uint64_t latency_total_ns;
    uint64_t latency_max_ns;
} dw_side_metrics;

#define DW_METRICS_VERSION 1

/** The handle's counters since it was opened or last reset. In memory, per
 *  handle (not shared between processes). */
typedef struct dw_metrics {
    unsigned int version;
    /** dw_read() calls. */
    uint64_t reads;
    /** Reads that compared both sides, and how they came out. */
    uint64_t comparisons;
    uint64_t matches;
    uint64_t mismatches;
    /** Reads at SHADOW or LIVE left uncompared by the sampling ratio. */
    uint64_t skipped;
    /** Reads that were to compare but could not: a side's read failed
     *  (the authoritative one included) or ran over the time budget, the
     *  old row did not map up, or the normaliser failed. */
    uint64_t compare_errors;
    /** dw_write() and dw_mirror() calls that succeeded. */
    uint64_t writes;
    /** Non-authoritative writes that failed (rolled back or queued). */
    uint64_t mirror_failures;
    /** Keys put in the repair queue. */
    uint64_t repairs_queued;
    /** Mismatches the log table could not record (busy, full). */
    uint64_t log_errors;
    dw_side_metrics old_side;
    dw_side_metrics new_side;
} dw_metrics;

/** Every counter zero and the version set: `dw_metrics m = DW_METRICS_INIT;`
 *  before dw_metrics_get(). */
#define DW_METRICS_INIT                                                        \
    {                                                                          \
        DW_METRICS_VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,                      \
            {0, 0, 0, 0, 0, 0, 0, 0}, {0, 0, 0, 0, 0, 0, 0, 0}                 \
    }

/** Copies the counters into *out (whose version must be
 *  DW_METRICS_VERSION or 0). */
DW_API int dw_metrics_get(dw_metrics *out, const dw_migration *h);
/** Sets every counter to zero. NULL is a no-op. */
DW_API void dw_metrics_reset(dw_migration *h);

#ifdef __cplusplus
}
#endif

#endif /* DUALWRITE_H */
