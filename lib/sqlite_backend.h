/* The SQLite backend's private state and helpers, shared by the
 * sqlite_*.c files. Nothing outside them includes this. */
#ifndef DW_SQLITE_BACKEND_H
#define DW_SQLITE_BACKEND_H

#include "internal.h"

/* Every statement the backend runs, prepared once per handle on first use. */
enum stmt_id {
    ST_BEGIN_IMMEDIATE,
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_ROLLBACK_TO,
    ST_SIDE_SAVEPOINT,
    ST_SIDE_RELEASE,
    ST_SIDE_ROLLBACK_TO,
    ST_SCHEMA_VERSION,
    ST_MIGRATION_FIND,
    ST_MIGRATION_INSERT,
    ST_MIGRATION_REDEFINE,
    ST_STAGE_LOAD,
    ST_STAGE_STORE,
    ST_HISTORY_ADD,
    ST_HISTORY_LIST,
    ST_REPAIR_ADD,
    ST_REPAIR_COUNT,
    ST_LOG_BUMP,
    ST_LOG_INSERT,
    ST_LOG_DROPPED,
    ST_LOG_LIST,
    ST_LOG_COUNT,
    ST_LOG_CLEAR,
    ST_LOG_CLEAR_DROPPED,
    /* Row statements, generated from the spec; [side] offsets. */
    ST_READ_SIDE,            /* + side: key and columns of one side */
    ST_READ_MAPPED = ST_READ_SIDE + 3, /* + target: source mapped by SQL */
    ST_SYNC = ST_READ_MAPPED + 3,      /* + target: upsert from source */
    ST_UPSERT = ST_SYNC + 3,           /* + side: upsert bound values */
    ST_DELETE = ST_UPSERT + 3,         /* + side */
    ST_COUNT = ST_DELETE + 3
};

typedef struct sqlite_backend {
    sqlite3_stmt *st[ST_COUNT];
    char *sql[ST_COUNT]; /* generated SQL of the row statements */
    /* Stage cache validity: the main database's data version when the
     * stage was last read (SQLITE_FCNTL_DATA_VERSION). */
    unsigned int data_version;
    int version_valid;
    /* The current operation: its scope, whether it writes, and whether the
     * stage was checked inside it (only then may a commit keep the cache). */
    int scope;
    int write;
    int verified;
    /* Time budget. */
    uint64_t deadline_ns;
    int expired;
    dw_progress_fn app_progress;
    void *app_progress_payload;
    int app_every;
    int app_calls;
} sqlite_backend;

/* Virtual machine steps between two looks at the clock under a budget. */
#define BUDGET_OPS 1000

#define BK(h) ((sqlite_backend *)(h)->backend)

/* The statement for id, prepared on first use with double-quoted string
 * literals disabled. NULL on failure (error set on h). */
sqlite3_stmt *dw__stmt(dw_migration *h, int id);
/* Prepares arbitrary SQL the same way (caller finalizes). */
int dw__prepare(dw_migration *h, const char *sql, sqlite3_stmt **out,
                const char **tail);
/* Steps a statement that returns no rows to completion and resets it.
 * Returns an SQLite code; on failure the error is set on h. */
int dw__run(dw_migration *h, sqlite3_stmt *st, int side, const char *what);
/* Sets h's error from an SQLite failure, naming the side and what failed. */
int dw__sqlite_error(dw_migration *h, int rc, int side, const char *what);
/* Binds a key to parameters 1..nkey. */
int dw__bind_key(sqlite3_stmt *st, const dw_value *key, int nkey);
/* Builds the row statements' SQL from a validated spec. */
int dw__build_row_sql(dw_migration *h);

/* Double-quoted string literals off, and back, for our own SQL. */
typedef struct dqs_saved {
    int dml;
    int ddl;
} dqs_saved;
void dw__dqs_off(sqlite3 *db, dqs_saved *saved);
void dw__dqs_restore(sqlite3 *db, const dqs_saved *saved);
/* Around stepping a row statement: SQLite re-prepares a statement after any
 * schema change, under the connection's setting at that moment, so a column
 * dropped since would turn "col" into a string. Returns the DML setting to
 * hand back to dw__own_step_end(). */
int dw__own_step_begin(sqlite3 *db);
void dw__own_step_end(sqlite3 *db, int dml);

/* Entry points of the sqlite_*.c files, gathered into the ops table. */
int dw__sqlite_state_init(dw_migration *h);
int dw__sqlite_validate(dw_migration *h);
int dw__sqlite_migration_load(dw_migration *h, const char *spec_text,
                              const char *digest, int redefine,
                              const char *reason);
int dw__sqlite_stage_load(dw_migration *h, int *stage);
int dw__sqlite_stage_store(dw_migration *h, int from, int to,
                           const char *reason, int forced);
int dw__sqlite_history(dw_migration *h, dw_history_fn fn, void *payload);
int dw__sqlite_repair_enqueue(dw_migration *h, const char *key, int side,
                              const char *error);
int dw__sqlite_repair_count(dw_migration *h, int64_t *out);
int dw__sqlite_log_mismatch(dw_migration *h, const char *key,
                            const char *digest, int kind, const char *detail);
int dw__sqlite_log_list(dw_migration *h, int limit, dw_mismatch_entry_fn fn,
                        void *payload);
int dw__sqlite_log_count(dw_migration *h, int64_t *entries, int64_t *dropped);
int dw__sqlite_log_clear(dw_migration *h);
int dw__sqlite_read_side(dw_migration *h, int side, const dw_value *key,
                         dw_row *out);
int dw__sqlite_read_mapped(dw_migration *h, int target, const dw_value *key,
                           dw_row *out);
int dw__sqlite_sync_sql(dw_migration *h, int target, const dw_value *key,
                        int *found);
int dw__sqlite_upsert_row(dw_migration *h, int side, const dw_value *key,
                          const dw_row *row);
int dw__sqlite_delete_row(dw_migration *h, int side, const dw_value *key);

#endif
