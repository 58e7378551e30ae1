/* The SQLite backend's private state and helpers, shared by the
 * files of lib/sqlite/. Nothing outside them includes this. */
#ifndef DW_SQLITE_BACKEND_H
#define DW_SQLITE_BACKEND_H

#include <sqlite3.h>

#include "../internal.h"
#include "dualwrite/sqlite.h"

/* The backend's tables: per handle, and for the connection. */
extern const dw_backend_ops dw__sqlite_backend;
extern const dw_driver dw__sqlite_driver;

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
    ST_LOG_ADDED,
    ST_LOG_DROPPED,
    ST_LOG_LIST,
    ST_LOG_COUNT,
    ST_LOG_CLEAR,
    ST_LOG_CLEAR_DROPPED,
    ST_OVERRIDE_GET,
    ST_OVERRIDE_PUT,
    ST_OVERRIDE_DELETE,
    ST_OVERRIDE_LIST,
    ST_OVERRIDE_STATS,
    ST_OVERRIDES_BUMP,
    ST_ROUTING_STORE,
    ST_BACKFILL_LOAD,
    ST_BACKFILL_STORE,
    /* Row statements, generated from the spec; [side] offsets. */
    ST_READ_SIDE,            /* + side: key and columns of one side */
    ST_READ_MAPPED = ST_READ_SIDE + 3, /* + target: source mapped by SQL */
    ST_SYNC = ST_READ_MAPPED + 3,      /* + target: upsert from source */
    ST_UPSERT = ST_SYNC + 3,           /* + side: upsert bound values */
    ST_DELETE = ST_UPSERT + 3,         /* + side */
    /* + side: the upsert that leaves an equal row alone */
    ST_UPSERT_CHANGED = ST_DELETE + 3,
    ST_COUNT = ST_UPSERT_CHANGED + 3
};

/* Key-range statements, generated on first use per (kind, side, bounds). */
enum range_kind {
    RK_KEY_AT,
    RK_LAST,
    RK_COUNT,
    RK_NULLS,
    RK_UNPAGED, /* the first key holding a NUL text or an infinite real */
    RK_COPY,
    RK_DELETE,
    RK_KEYS,
    RK_ROWS, /* key and columns of a side, in key order */
    RK_VERIFY,
    RK_VERIFY_SAME, /* verification that leaves out plainly equal rows */
    RK_VERIFY_SAME_TYPED, /* the same, the keys' types known */
    RK_CHUNK_END, /* where a verification chunk of two tables ends */
    RK_VERIFY_LIMITED, /* RK_VERIFY's old pass, LIMIT ?1 keys */
    RK_COVERED, /* old keys that have a new row */
    RK_SKIPPED, /* keys of the skip set in range that either side has */
    RK_KINDS
};
/* Bounds of a range statement: which of ?1 (lo) and ?2 (hi) it has, and
 * whether it leaves out the keys of the backfill's skip set. */
enum {
    RB_LO = 1,
    RB_LO_INCL = 2,
    RB_HI = 4,
    RB_SKIP = 8,
    RB_VARIANTS = 16
};

typedef struct sqlite_backend {
    sqlite3_stmt *st[ST_COUNT];
    sqlite3_stmt *range[RK_KINDS][3][RB_VARIANTS];
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
    /* The caller had a transaction open when the operation began: if it is
     * gone at the end, SQLite rolled it back (DW_EROLLEDBACK). */
    int caller_txn;
    /* The main database's transaction state (SQLITE_TXN_READ or _WRITE)
     * of a transaction of ours left open (h->left_open): how the next call
     * tells it from one the application began since. */
    int left_state;
    /* Time budget. */
    uint64_t deadline_ns;
    int expired;
    dw_sqlite_progress_fn app_progress;
    void *app_progress_payload;
    int app_every;
    int app_calls;
    /* The cohort test for one key, and the predicate it was built from. */
    sqlite3_stmt *cohort;
    char *cohort_pred;
    /* checkpoint_hold(): the automatic checkpoint's page count while held
     * (0 when not), and whether a commit since has reached it. */
    int ckpt_every;
    int ckpt_due;
    /* The files of the backup being created (backup_create()): its file
     * and the journals SQLite may leave beside it, named before anything
     * is made, so removing them needs no memory. */
    char *backup_file[4];
    /* The backfill's skip set (range.c): making its TEMP table, emptying
     * it, adding a key; and the override keys of a range of stages. */
    sqlite3_stmt *skip_make;
    sqlite3_stmt *skip_empty;
    sqlite3_stmt *skip_insert;
    sqlite3_stmt *override_keys;
    /* Whether one key comes before another (range.c). */
    sqlite3_stmt *key_before;
} sqlite_backend;

/* Virtual machine steps between two looks at the clock under a budget. */
#define BUDGET_OPS 1000

#define BK(h) ((sqlite_backend *)(h)->backend)

/* The statement for id, prepared on first use. The library's own SQL
 * quotes every name with backticks and turns the spec's double-quoted
 * identifiers into backticks, so it never depends on the connection's
 * double-quoted-string setting -- and never changes that setting while
 * statements may be running (a change aborts running compound statements,
 * the application's included). NULL on failure (error set on h). */
sqlite3_stmt *dw__stmt(dw_migration *h, int id);
/* Where a stored value sits, for a message about damaged state: the
 * table, and the column and value that pick the row. */
typedef struct state_row {
    const char *table;
    const char *id_column;
    int64_t id;
    const char *key; /* the row's key text too, when the table has keys */
} state_row;
/* DW_ECORRUPT with a message naming the migration, the table and the row,
 * then the detail. */
int dw__damaged(dw_migration *h, const state_row *at, const char *fmt, ...);
/* Column c of the current row when it is an INTEGER from lo to hi; else
 * DW_ECORRUPT naming the column, its value and the row. */
int dw__column_int_in(dw_migration *h, sqlite3_stmt *st, int c, int64_t lo,
                      int64_t hi, int64_t *out, const state_row *at);
/* The same for a stage (0 to 5). */
int dw__column_stage(dw_migration *h, sqlite3_stmt *st, int c, int *out,
                     const state_row *at);
/* Prepares the library's SQL (caller finalizes). */
int dw__prepare(dw_migration *h, const char *sql, sqlite3_stmt **out,
                const char **tail);
/* Prepares SQL from the spec, as written, with double-quoted string
 * literals off, so a misspelled "name" is an error: only while opening
 * checks the spec. */
int dw__prepare_strict(dw_migration *h, const char *sql, sqlite3_stmt **out,
                       const char **tail);
/* Steps a statement that returns no rows to completion and resets it.
 * Returns an SQLite code; on failure the error is set on h. */
int dw__run(dw_migration *h, sqlite3_stmt *st, int side, const char *what);
/* Sets h's error from an SQLite failure, naming the side and what failed. */
int dw__sqlite_error(dw_migration *h, int rc, int side, const char *what);
/* Ends a listing loop: SQLITE_DONE (run out, or stopped by the callback)
 * is success, anything else an error (naming `what`); resets st. */
int dw__end_listing(dw_migration *h, sqlite3_stmt *st, int rc,
                    const char *what);
/* Binds a key to parameters 1..nkey. */
int dw__bind_key(sqlite3_stmt *st, const dw_value *key, int nkey);
/* Binds a key's text (static storage) as parameter i. A bind that fails --
 * the text is longer than the connection's SQLITE_LIMIT_LENGTH -- would
 * leave the parameter NULL and the statement matching nothing: it is an
 * error instead (set on h; `what` names the statement's purpose). */
int dw__bind_key_text(dw_migration *h, sqlite3_stmt *st, int i,
                      const char *text, int side, const char *what);
/* How key column i of a side compares: its affinity class ('N', 'T' or
 * 'B') and the collation of a unique index over it. */
int dw__sqlite_key_traits(dw_migration *h, int side, int i, char cls[2],
                          char coll[32]);
/* Whether key a comes before key b in the old side's key order (both
 * keys of the migration). */
int dw__sqlite_key_before(dw_migration *h, const dw_value *a,
                          const dw_value *b, int *before);
/* Builds the row statements' SQL from a validated spec. */
int dw__sqlite_build_row_sql(dw_migration *h);
/* An upsert's " ON CONFLICT(key) DO UPDATE SET c = excluded.c, ..." for
 * side d; DO NOTHING for a side of the key alone. The target is the key
 * alone either way, so any other UNIQUE constraint still fails. */
void dw__add_conflict_update(dw_buf *b, const dw_side_def *d);
/* After dw__add_conflict_update(): " WHERE t.c IS NOT excluded.c COLLATE
 * BINARY OR ...", so a row equal already is left alone (and not counted
 * as changed). BINARY: under the column's NOCASE or RTRIM, 'abc' and
 * 'ABC' would count as equal, and verification, comparing bytes, would
 * find the row left different. */
void dw__add_changed_only(dw_buf *b, const dw_side_def *d);

/* Double-quoted string literals off, and back, for our own SQL. */
typedef struct dqs_saved {
    int dml;
    int ddl;
} dqs_saved;
void dw__dqs_off(sqlite3 *db, dqs_saved *saved);
void dw__dqs_restore(sqlite3 *db, const dqs_saved *saved);


/* Entry points of the files of lib/sqlite/, gathered into the ops table. */
int dw__sqlite_state_init(dw_migration *h);
/* catalog.c: the catalog and the checks of lib/validate.c (see
 * dw_backend_ops). */
extern const char *const dw__sqlite_state_tables[];
int dw__sqlite_describe_table(dw_migration *h, int side, const char *name,
                              dw_table_desc *t);
int dw__sqlite_check_expr(dw_migration *h, const char *source,
                          const char *expr, dw_sql_check *out);
int dw__sqlite_check_statement(dw_migration *h, const char *sql,
                               dw_sql_check *out, const char **tail);
int dw__sqlite_stored_spec(dw_migration *h, char **spec);
int dw__sqlite_rows_prepare(dw_migration *h);
void dw__sqlite_rows_forget(dw_migration *h);
int dw__sqlite_migration_find(dw_migration *h, const char *digest,
                              dw_stored_facts *f);
int dw__sqlite_migration_define(dw_migration *h, const char *spec_text,
                                const char *digest, const char *reason,
                                int64_t *id);
int dw__sqlite_migration_redefine(dw_migration *h, const char *spec_text,
                                  const char *digest, const char *reason,
                                  int stage);
int dw__sqlite_stage_load(dw_migration *h, dw_stage_facts *f);
int dw__sqlite_stage_store(dw_migration *h, int from, int to,
                           const char *reason, int forced, const char *detail);
int dw__sqlite_stage_write(dw_migration *h, int stage);
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
int dw__sqlite_upsert_changed(dw_migration *h, int side,
                              const dw_value *key, const dw_row *row,
                              const int *slots, int *changed);
int dw__sqlite_delete_row(dw_migration *h, int side, const dw_value *key);
int dw__sqlite_migration_peek(dw_migration *h, int *contracted);
int dw__sqlite_history_add(dw_migration *h, const char *event, int from,
                           int to, int forced, const char *reason,
                           const char *detail);

/* range.c */
int dw__sqlite_range_key_at(dw_migration *h, int side, const dw_value *lo,
                            int lo_incl, const dw_value *hi, int offset,
                            dw_held_key *key);
int dw__sqlite_range_last(dw_migration *h, int side, dw_held_key *key);
int dw__sqlite_range_count(dw_migration *h, int side, const dw_value *lo,
                           const dw_value *hi, int64_t *n);
int dw__sqlite_null_keys(dw_migration *h, int side, int64_t *n);
int dw__sqlite_integer_keys(dw_migration *h, int side, int *yes);
int dw__sqlite_unpaged_key(dw_migration *h, int side, dw_held_key *key);
int dw__sqlite_range_copy(dw_migration *h, int target, const dw_value *lo,
                          const dw_value *hi, int skip, int64_t *written);
int dw__sqlite_range_delete_orphans(dw_migration *h, int target,
                                    const dw_value *lo, const dw_value *hi,
                                    int skip, int64_t *deleted);
int dw__sqlite_range_keys(dw_migration *h, int side, const dw_value *lo,
                          const dw_value *hi, dw_key_fn fn, void *arg);
int dw__sqlite_range_rows(dw_migration *h, int side, const dw_value *lo,
                          const dw_value *hi, dw_row *row,
                          dw_range_row_fn fn, void *arg);
int dw__sqlite_skip_reset(dw_migration *h);
int dw__sqlite_skip_add(dw_migration *h, const dw_value *key);
int dw__sqlite_skip_keys(dw_migration *h, const dw_value *lo,
                         const dw_value *hi, dw_key_fn fn, void *arg);
int dw__sqlite_override_keys(dw_migration *h, int first, int last,
                             dw_keytext_fn fn, void *arg);
int dw__sqlite_verify_chunk(dw_migration *h, const dw_value *lo,
                            int lo_incl, const dw_value *hi, int limit,
                            dw_held_key *end, int64_t *nold);
int dw__sqlite_verify_range(dw_migration *h, int side, const dw_value *lo,
                            int lo_incl, const dw_value *hi, int flags,
                            int limit, dw_held_key *end, dw_verify_row_fn fn,
                            void *arg, int64_t *rows);
int dw__sqlite_run_setup(dw_migration *h);
/* Typed key values of columns first..first+n-1 of the current row;
 * DW_EMISUSE for a NULL or BLOB key value. */
int dw__stmt_key(dw_migration *h, sqlite3_stmt *st, int first, int n,
                 dw_value *out, int side);
void dw__range_finalize(sqlite_backend *bk);
/* A column of the current row as a dw_value pointing into the statement
 * (valid until it steps again); DW_ENOMEM when SQLite could not convert. */
int dw__column_value(sqlite3_stmt *st, int c, dw_value *v);

/* runs.c */
int dw__sqlite_backfill_load(dw_migration *h, dw_backfill_state *st);
int dw__sqlite_backfill_store(dw_migration *h, const dw_backfill_state *st);
int dw__sqlite_backfill_stale(dw_migration *h);
int dw__sqlite_gate_facts(dw_migration *h, dw_gate_facts *g);
int dw__sqlite_verify_start(dw_migration *h, int full, const char *from,
                            const char *to, dw_verify_result *r);
int dw__sqlite_verify_key(dw_migration *h, int64_t run, const char *key,
                          int kind, const char *detail);
int dw__sqlite_verify_finish(dw_migration *h, const dw_verify_result *r);
int dw__sqlite_verify_last(dw_migration *h, dw_verify_result *r);
int dw__sqlite_divergent_list(dw_migration *h, const char *after, int limit,
                              dw_keytext_fn fn, void *arg);
int dw__sqlite_divergent_done(dw_migration *h, const char *key);
int dw__sqlite_queue_list(dw_migration *h, const char *after, int limit,
                          dw_keytext_fn fn, void *arg);
int dw__sqlite_queue_remove(dw_migration *h, const char *key);

/* route.c */
int dw__sqlite_override_get(dw_migration *h, const char *key, int *stage,
                            int *promoted);
int dw__sqlite_override_put(dw_migration *h, const char *key, int stage,
                            int promoted);
int dw__sqlite_override_delete(dw_migration *h, const char *key,
                               int *deleted);
int dw__sqlite_override_list(dw_migration *h, dw_override_fn fn,
                             void *payload);
int dw__sqlite_override_stats(dw_migration *h, int64_t by_stage[6],
                              int64_t *promoted);
int dw__sqlite_overrides_bump(dw_migration *h, int64_t delta);
int dw__sqlite_routing_store(dw_migration *h, const dw_route_state *r);
int dw__sqlite_cohort_check(dw_migration *h, const char *pred);
int dw__sqlite_cohort_member(dw_migration *h, const char *pred,
                             const dw_value *key, int *member);
int dw__sqlite_covered(dw_migration *h, int64_t *n);

/* api.c: the message dw_sqlite_result() kept on this thread for its last
 * failure on db that gave `code`, taken (NULL when none). */
const char *dw__sqlite_kept_message(sqlite3 *db, int code);
/* Forgets it (before each application callback). */
void dw__sqlite_forget_message(void);

/* values.c */
/* Binds a value to a statement parameter (its bytes borrowed, not copied:
 * they must outlive the binding); returns an SQLite code. */
int dw__bind_value(sqlite3_stmt *stmt, int idx, const dw_value *v);
/* The value SQLite holds in cv, as a dw_value pointing into it (valid until
 * the statement moves on). Call with the connection's mutex held: cv comes
 * from sqlite3_column_value(). DW_ENOMEM when SQLite could not make the
 * text or blob. */
static inline int dw__value_of(dw_value *out, sqlite3_value *cv)
{
    /* Inline, and filled field by field: this runs for every value of
     * every row read, and the constructors are calls into the library. */
    out->i = 0;
    out->f = 0.0;
    out->p = NULL;
    out->n = 0;
    switch (sqlite3_value_type(cv)) {
    case SQLITE_INTEGER:
        out->type = DW_TYPE_INTEGER;
        out->i = sqlite3_value_int64(cv);
        break;
    case SQLITE_FLOAT:
        out->type = DW_TYPE_FLOAT;
        out->f = sqlite3_value_double(cv);
        break;
    case SQLITE_TEXT: {
        const char *t = (const char *)sqlite3_value_text(cv);
        if (!t)
            return DW_ENOMEM;
        out->type = DW_TYPE_TEXT;
        out->p = t;
        out->n = sqlite3_value_bytes(cv);
        break;
    }
    case SQLITE_BLOB: {
        const void *p = sqlite3_value_blob(cv);
        int n = sqlite3_value_bytes(cv);
        if (!p && n > 0)
            return DW_ENOMEM;
        out->type = DW_TYPE_BLOB;
        out->p = p;
        out->n = p ? n : 0;
        break;
    }
    default: out->type = DW_TYPE_NULL; break;
    }
    return DW_OK;
}

/* contract.c: the ops members of the same names (see internal.h) */
int dw__sqlite_model_describe(dw_migration *h, dw_old_model *m);
int dw__sqlite_model_digest(dw_migration *h, const dw_old_model *m,
                            int64_t *rows, char hex[65]);
int dw__sqlite_model_present(dw_migration *h, const dw_old_model *m,
                             int *present);
int dw__sqlite_name_taken(dw_migration *h, const char *name, int *taken);
int dw__sqlite_table_columns(dw_migration *h, const char *table,
                             char ***names, int *n);
int dw__sqlite_table_referenced(dw_migration *h, const char *table,
                                char **by);
int dw__sqlite_model_drop(dw_migration *h, const dw_old_model *m);
int dw__sqlite_backup_exists(dw_migration *h, const char *target,
                             int *exists);
int dw__sqlite_backup_create(dw_migration *h, const dw_old_model *m,
                             const char *target);
void dw__sqlite_backup_discard(dw_migration *h, int remove);
int dw__sqlite_backup_attach(dw_migration *h, const char *target);
void dw__sqlite_backup_detach(dw_migration *h);
int dw__sqlite_backup_copy(dw_migration *h, const dw_old_model *m,
                           const char *target, int64_t *rows, char hex[65]);
int dw__sqlite_backup_record(dw_migration *h, const dw_old_model *m,
                             const char *target, const dw_backup_record *r);
int dw__sqlite_backup_read_record(dw_migration *h, const char *target,
                                  dw_backup_record *r);
int dw__sqlite_backup_read_model(dw_migration *h, const char *target,
                                 dw_old_model *m, int64_t *rows,
                                 char hex[65]);
int dw__sqlite_restore_table(dw_migration *h, const dw_old_model *m,
                             const char *target);
int dw__sqlite_restore_columns(dw_migration *h, const dw_old_model *m,
                               const char *target, char *const *kept,
                               int nkept);
int dw__sqlite_restored_columns_check(dw_migration *h, const dw_old_model *m,
                                      int64_t *rows, int64_t *same);
int dw__sqlite_others_list(dw_migration *h, dw_other_fn fn, void *arg);
int dw__sqlite_contracted_store(dw_migration *h, int contracted);

#endif
