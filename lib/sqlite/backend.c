/* The SQLite backend: statement cache, transactions, the stage-cache check,
 * the time budget, and the ops table that gathers the files of lib/sqlite/. */
#include <string.h>
#include <time.h>

#include "backend.h"

static const char *const fixed_sql[ST_READ_SIDE] = {
    [ST_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [ST_BEGIN] = "BEGIN",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT dw_op",
    [ST_RELEASE] = "RELEASE dw_op",
    [ST_ROLLBACK_TO] = "ROLLBACK TO dw_op",
    [ST_SIDE_SAVEPOINT] = "SAVEPOINT dw_side",
    [ST_SIDE_RELEASE] = "RELEASE dw_side",
    [ST_SIDE_ROLLBACK_TO] = "ROLLBACK TO dw_side",
    [ST_SCHEMA_VERSION] =
        "SELECT value FROM dw_meta WHERE key = 'schema_version'",
    [ST_MIGRATION_FIND] =
        "SELECT id, stage, spec_digest, contracted, spec FROM "
        "dw_migrations WHERE name = ?1",
    /* Past every id in use and every id dw_remove() took away: a handle
     * still open on a removed migration finds no other's state. */
    [ST_MIGRATION_INSERT] =
        "INSERT INTO dw_migrations(id, name, stage, spec, spec_digest, "
        "created, updated) SELECT max(coalesce(max(id), 0), coalesce(("
        "SELECT CAST(value AS INTEGER) FROM dw_meta WHERE key = "
        "'removed_max_id'), 0)) + 1, ?1, 0, ?2, ?3, ?4, ?4 "
        "FROM dw_migrations",
    [ST_MIGRATION_REDEFINE] =
        "UPDATE dw_migrations SET spec = ?2, spec_digest = ?3, updated = ?4 "
        "WHERE id = ?1",
    [ST_STAGE_LOAD] =
        "SELECT stage, contracted, canary_buckets, canary_stage, "
        "canary_cohort, promote_stage, overrides, EXISTS (SELECT 1 FROM "
        "dw_overrides WHERE migration_id = ?1), spec_digest = ?2 "
        "FROM dw_migrations WHERE id = ?1",
    [ST_STAGE_STORE] =
        "UPDATE dw_migrations SET stage = ?2, updated = ?3 WHERE id = ?1",
    [ST_HISTORY_ADD] =
        "INSERT INTO dw_history(migration_id, time, event, from_stage, "
        "to_stage, forced, reason, detail) "
        "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_HISTORY_LIST] =
        "SELECT id, time, event, from_stage, to_stage, forced, reason, "
        "detail FROM dw_history WHERE migration_id = ?1 ORDER BY id",
    [ST_REPAIR_ADD] =
        "INSERT INTO dw_repair_queue(migration_id, key, side, error, attempts, "
        "first_seen, last_seen) VALUES(?1, ?2, ?3, ?4, 1, ?5, ?5) "
        /* A failed repair that never learnt its side keeps the stored one */
        "ON CONFLICT(migration_id, key) DO UPDATE SET side = CASE WHEN "
        "excluded.side IN (1, 2) THEN excluded.side ELSE side END, "
        "error = excluded.error, attempts = attempts + 1, "
        "last_seen = excluded.last_seen",
    [ST_REPAIR_COUNT] =
        "SELECT count(*) FROM dw_repair_queue WHERE migration_id = ?1",
    [ST_LOG_BUMP] =
        "UPDATE dw_mismatch_log SET count = count + 1, last_seen = ?4 "
        "WHERE migration_id = ?1 AND key = ?2 AND digest = ?3",
    [ST_LOG_INSERT] =
        "INSERT INTO dw_mismatch_log(migration_id, key, digest, kind, detail, "
        "count, first_seen, last_seen) SELECT ?1, ?2, ?3, ?5, ?6, 1, ?4, ?4 "
        "WHERE (SELECT mismatch_entries BETWEEN 0 AND ?7 - 1 FROM "
        "dw_migrations WHERE id = ?1)",
    [ST_LOG_ADDED] = "UPDATE dw_migrations SET mismatch_entries = "
                     "mismatch_entries + 1 WHERE id = ?1",
    [ST_LOG_DROPPED] = "UPDATE dw_migrations SET mismatch_dropped = "
                       "mismatch_dropped + 1 WHERE id = ?1",
    [ST_LOG_LIST] =
        "SELECT key, digest, kind, detail, count, first_seen, last_seen "
        "FROM dw_mismatch_log WHERE migration_id = ?1 "
        "ORDER BY last_seen DESC, key LIMIT ?2",
    [ST_LOG_COUNT] =
        "SELECT (SELECT count(*) FROM dw_mismatch_log WHERE migration_id = "
        "?1), mismatch_dropped, mismatch_entries FROM dw_migrations "
        "WHERE id = ?1",
    [ST_LOG_CLEAR] = "DELETE FROM dw_mismatch_log WHERE migration_id = ?1",
    [ST_LOG_CLEAR_DROPPED] =
        "UPDATE dw_migrations SET mismatch_dropped = 0, mismatch_entries = 0 "
        "WHERE id = ?1",
    [ST_OVERRIDE_GET] =
        "SELECT stage, promoted FROM dw_overrides "
        "WHERE migration_id = ?1 AND key = ?2",
    [ST_OVERRIDE_PUT] =
        "INSERT INTO dw_overrides(migration_id, key, stage, promoted, time) "
        "VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(migration_id, key) DO UPDATE "
        "SET stage = excluded.stage, promoted = excluded.promoted, "
        "time = excluded.time",
    [ST_OVERRIDE_DELETE] =
        "DELETE FROM dw_overrides WHERE migration_id = ?1 AND key = ?2",
    [ST_OVERRIDE_LIST] =
        "SELECT key, stage, promoted, time FROM dw_overrides "
        "WHERE migration_id = ?1 ORDER BY key",
    [ST_OVERRIDE_STATS] =
        "SELECT stage, count(*), sum(promoted) FROM dw_overrides "
        "WHERE migration_id = ?1 GROUP BY stage",
    [ST_OVERRIDES_BUMP] =
        "UPDATE dw_migrations SET overrides = overrides + ?2 WHERE id = ?1",
    [ST_ROUTING_STORE] =
        "UPDATE dw_migrations SET canary_buckets = ?2, canary_stage = ?3, "
        "canary_cohort = ?4, promote_stage = ?5, updated = ?6 WHERE id = ?1",
    [ST_BACKFILL_LOAD] =
        "SELECT state, source, cursor, end_key, rows_done, rows_total, "
        "rows_written, rows_deleted, batches, started, updated, runner_pid, "
        "runner_host FROM dw_backfill WHERE migration_id = ?1",
    [ST_BACKFILL_STORE] =
        "INSERT INTO dw_backfill(migration_id, source, state, cursor, "
        "end_key, rows_done, rows_total, rows_written, rows_deleted, "
        "batches, started, updated, finished, verify_after, runner_pid, "
        "runner_host) "
        "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, "
        "CASE WHEN ?3 = 'done' THEN ?12 END, "
        "CASE WHEN ?3 = 'done' THEN (SELECT coalesce(max(id), 0) FROM "
        "dw_verify_runs WHERE migration_id = ?1) ELSE 0 END, ?13, ?14) "
        "ON CONFLICT(migration_id) DO UPDATE SET source = excluded.source, "
        "state = excluded.state, cursor = excluded.cursor, "
        "end_key = excluded.end_key, rows_done = excluded.rows_done, "
        "rows_total = excluded.rows_total, "
        "rows_written = excluded.rows_written, "
        "rows_deleted = excluded.rows_deleted, batches = excluded.batches, "
        "started = excluded.started, updated = excluded.updated, "
        "finished = excluded.finished, verify_after = excluded.verify_after, "
        "runner_pid = excluded.runner_pid, runner_host = excluded.runner_host",
};

void dw__dqs_off(sqlite3 *db, dqs_saved *saved)
{
    sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DML, -1, &saved->dml);
    sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DDL, -1, &saved->ddl);
    if (saved->dml)
        sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DML, 0, (int *)0);
    if (saved->ddl)
        sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DDL, 0, (int *)0);
}

void dw__dqs_restore(sqlite3 *db, const dqs_saved *saved)
{
    if (saved->dml)
        sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DML, 1, (int *)0);
    if (saved->ddl)
        sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DDL, 1, (int *)0);
}

int dw__sqlite_error(dw_migration *h, int rc, int side, const char *what)
{
    int code = dw__from_sqlite(rc);
    if (code == DW_OK)
        code = DW_ERROR;
    const char *msg = sqlite3_errmsg(h->db);
    if (side != DW_SIDE_NONE)
        return dw__error(h, code, side, "%s side: %s (table \"%s\"): %s",
                         dw__side_word(side), what,
                         h->spec.side[side].table, msg);
    return dw__error(h, code, side, "%s: %s", what, msg);
}

int dw__damaged(dw_migration *h, const state_row *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *detail = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    if (!detail)
        return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    dw__error(h, DW_ECORRUPT, DW_SIDE_NONE,
              "the stored state of migration \"%s\" is damaged: table %s, "
              "row with %s %lld%s%s: %s; nothing was changed",
              h->spec.name, at->table, at->id_column, (long long)at->id,
              at->key ? " and key " : "", at->key ? at->key : "", detail);
    sqlite3_free(detail);
    return DW_ECORRUPT;
}

/* A stored value as the message shows it: 99, 'LIVE', NULL. */
static char *value_words(sqlite3_stmt *st, int c)
{
    switch (sqlite3_column_type(st, c)) {
    case SQLITE_INTEGER:
        return sqlite3_mprintf("%lld", sqlite3_column_int64(st, c));
    case SQLITE_FLOAT:
        return sqlite3_mprintf("the real %!.15g", sqlite3_column_double(st, c));
    case SQLITE_TEXT:
        return sqlite3_mprintf("the text '%.40q'", sqlite3_column_text(st, c));
    case SQLITE_BLOB:
        return sqlite3_mprintf("a blob");
    default:
        return sqlite3_mprintf("NULL");
    }
}

int dw__column_int_in(dw_migration *h, sqlite3_stmt *st, int c, int64_t lo,
                      int64_t hi, int64_t *out, const state_row *at)
{
    int64_t v = sqlite3_column_int64(st, c);
    if (sqlite3_column_type(st, c) == SQLITE_INTEGER && v >= lo && v <= hi) {
        *out = v;
        return DW_OK;
    }
    char *words = value_words(st, c);
    int rc = words ? dw__damaged(h, at,
                                 "column %s holds %s, not a whole number "
                                 "from %lld to %lld",
                                 sqlite3_column_name(st, c), words,
                                 (long long)lo, (long long)hi)
                   : dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    sqlite3_free(words);
    return rc;
}

int dw__column_stage(dw_migration *h, sqlite3_stmt *st, int c, int *out,
                     const state_row *at)
{
    int64_t v;
    int rc = dw__column_int_in(h, st, c, DW_STAGE_OFF, DW_STAGE_COMPLETE, &v,
                               at);
    if (rc == DW_OK)
        *out = (int)v;
    return rc;
}

int dw__prepare(dw_migration *h, const char *sql, sqlite3_stmt **out,
                const char **tail)
{
    return sqlite3_prepare_v3(h->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out,
                              tail);
}

int dw__prepare_strict(dw_migration *h, const char *sql, sqlite3_stmt **out,
                       const char **tail)
{
    dqs_saved saved;
    dw__dqs_off(h->db, &saved);
    int rc = sqlite3_prepare_v2(h->db, sql, -1, out, tail);
    dw__dqs_restore(h->db, &saved);
    return rc;
}

sqlite3_stmt *dw__stmt(dw_migration *h, int id)
{
    sqlite_backend *bk = BK(h);
    if (bk->st[id])
        return bk->st[id];
    const char *sql = id < ST_READ_SIDE ? fixed_sql[id] : bk->sql[id];
    if (!sql) {
        dw__error(h, DW_ERROR, DW_SIDE_NONE,
                  "internal: statement %d has no SQL", id);
        return NULL;
    }
    int rc = dw__prepare(h, sql, &bk->st[id], NULL);
    if (rc != SQLITE_OK) {
        dw__sqlite_error(h, rc, DW_SIDE_NONE, "preparing the library's SQL");
        sqlite3_finalize(bk->st[id]);
        bk->st[id] = NULL;
    }
    return bk->st[id];
}

int dw__run(dw_migration *h, sqlite3_stmt *st, int side, const char *what)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    if (rc != SQLITE_DONE)
        dw__sqlite_error(h, rc, side, what);
    sqlite3_reset(st);
    /* Values are bound without copies: none may outlive the call. (BEGIN,
     * COMMIT and the like have none to drop.) */
    if (sqlite3_bind_parameter_count(st) > 0)
        sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int dw__bind_key_text(dw_migration *h, sqlite3_stmt *st, int i,
                      const char *text, int side, const char *what)
{
    int rc = sqlite3_bind_text(st, i, text, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        return DW_OK;
    /* The parameters bound so far go too: nothing is left half-bound. */
    sqlite3_clear_bindings(st);
    return dw__sqlite_error(h, rc, side, what);
}

int dw__bind_key(sqlite3_stmt *st, const dw_value *key, int nkey)
{
    for (int i = 0; i < nkey; i++) {
        int rc = dw__bind_value(st, i + 1, &key[i]);
        if (rc != SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}

/* ---- transactions --------------------------------------------------------- */

enum { SCOPE_NONE = 0, SCOPE_OWN = 1, SCOPE_SAVEPOINT = 2 };

static int run_fixed(dw_migration *h, int id, const char *what)
{
    sqlite3_stmt *st = dw__stmt(h, id);
    if (!st)
        return h->errcode;
    int rc = dw__run(h, st, DW_SIDE_NONE, what);
    return rc == SQLITE_OK ? DW_OK : h->errcode;
}

/* Rolls scope back, a failed try tried again: what it leaves open would be
 * taken for the caller's transaction later. Says what stayed open, and
 * whether the caller's transaction (`caller`: open when the call began) is
 * gone. */
static void rollback_scope(dw_migration *h, int scope, int caller,
                           dw_txn_facts *f)
{
    for (int tries = 0; tries < 3 && scope == SCOPE_OWN &&
                        !sqlite3_get_autocommit(h->db);
         tries++)
        run_fixed(h, ST_ROLLBACK, "rolling back");
    int released = 1;
    if (scope == SCOPE_SAVEPOINT && !sqlite3_get_autocommit(h->db)) {
        int rc = DW_ERROR;
        for (int tries = 0; tries < 3 && rc != DW_OK; tries++)
            rc = run_fixed(h, ST_ROLLBACK_TO, "rolling back to the savepoint");
        /* A savepoint not rolled back must not be released: that would
         * keep its half-done work in the caller's transaction. */
        released = rc == DW_OK;
        rc = released ? DW_ERROR : DW_OK;
        for (int tries = 0; tries < 3 && rc != DW_OK &&
                            !sqlite3_get_autocommit(h->db);
             tries++)
            rc = run_fixed(h, ST_RELEASE, "releasing the savepoint");
        released = released && rc == DW_OK;
    }
    BK(h)->version_valid = 0;
    int open = !sqlite3_get_autocommit(h->db);
    f->caller_gone = caller && !open;
    f->left_open = 0;
    /* Still open: the next call ends it (settle). */
    if (scope != SCOPE_NONE && open && (scope == SCOPE_OWN || !released)) {
        f->left_open = scope == SCOPE_OWN ? DW_LEFT_TXN : DW_LEFT_SAVEPOINT;
        BK(h)->left_state = sqlite3_txn_state(h->db, "main");
    }
}

/* Ends what an earlier call could not roll back, before anything else runs:
 * otherwise the open transaction would be taken for the caller's, and the
 * handle's writes would go into it and never commit. That call's
 * transaction, not this one's, is what the rollback ends: the caller's is
 * not this call's to lose. */
static void be_settle(dw_migration *h, int left, dw_txn_facts *f)
{
    f->caller_gone = 0;
    f->left_open = 0;
    /* Ended meanwhile by the application (a ROLLBACK of its own): the
     * savepoint went with the transaction. */
    if (!BK(h) || !left || sqlite3_get_autocommit(h->db))
        return;
    if (left == DW_LEFT_TXN) {
        /* A transaction in another state than ours was left in is one the
         * application began since (after a ROLLBACK of its own). */
        if (sqlite3_txn_state(h->db, "main") == BK(h)->left_state)
            rollback_scope(h, SCOPE_OWN, 0, f);
        return;
    }
    /* The savepoint is ours by name: when the application rolled its
     * transaction back (and began another), it is gone. */
    sqlite3_stmt *st = dw__stmt(h, ST_ROLLBACK_TO);
    if (st && sqlite3_step(st) != SQLITE_DONE &&
        strstr(sqlite3_errmsg(h->db), "no such savepoint")) {
        sqlite3_reset(st);
        return;
    }
    if (st)
        sqlite3_reset(st);
    rollback_scope(h, SCOPE_SAVEPOINT, 0, f);
}

static int be_begin(dw_migration *h, int write, int *scope)
{
    sqlite_backend *bk = BK(h);
    *scope = SCOPE_NONE;
    bk->scope = SCOPE_NONE;
    bk->write = write;
    bk->verified = 0;
    int own = sqlite3_get_autocommit(h->db);
    bk->caller_txn = !own;
    if (!own && !write)
        return DW_OK;
    /* The way out is prepared before the way in: a rollback that could not
     * be prepared (out of memory) would leave the transaction open on the
     * caller's connection. */
    if ((own && !dw__stmt(h, ST_ROLLBACK)) ||
        (!own && (!dw__stmt(h, ST_ROLLBACK_TO) || !dw__stmt(h, ST_RELEASE))))
        return h->errcode;
    if (own) {
        /* IMMEDIATE takes the write lock first, so a busy database is met
         * before anything is written. A BEGIN can fail after opening the
         * transaction: the scope is then said, for the rollback. */
        int rc = run_fixed(h, write ? ST_BEGIN_IMMEDIATE : ST_BEGIN,
                           "beginning a transaction");
        *scope = SCOPE_OWN;
        if (rc == DW_OK)
            bk->scope = SCOPE_OWN;
        return rc;
    }
    int rc = run_fixed(h, ST_SAVEPOINT, "opening a savepoint");
    if (rc == DW_OK)
        *scope = bk->scope = SCOPE_SAVEPOINT;
    return rc;
}

static void be_rollback(dw_migration *h, int scope, dw_txn_facts *f)
{
    rollback_scope(h, scope, BK(h)->caller_txn, f);
}

static int be_commit(dw_migration *h, int scope, dw_txn_facts *f)
{
    sqlite_backend *bk = BK(h);
    if (bk->caller_txn && sqlite3_get_autocommit(h->db)) {
        /* The caller's transaction, open when the call began, is gone:
         * SQLite rolled it back on an error the call tolerated (a read of
         * the other side), or a callback's SQL ended it. */
        bk->version_valid = 0;
        f->caller_gone = 1;
        return DW_OK;
    }
    if (scope != SCOPE_NONE && sqlite3_get_autocommit(h->db)) {
        /* SQLite itself rolled our transaction back (an interrupt, a full
         * disk, or ROLLBACK in the application's SQL). */
        bk->version_valid = 0;
        f->scope_gone = 1;
        return DW_OK;
    }
    if (scope == SCOPE_OWN) {
        int rc = run_fixed(h, ST_COMMIT, "committing");
        if (rc != DW_OK)
            return rc;
        /* When the stage was checked inside this transaction, our own commit
         * is the only change since (a write held the lock; a read commits
         * nothing), so the cache holds at the new data version. Otherwise
         * the commit may have absorbed other connections' changes. */
        if (bk->verified && bk->version_valid)
            sqlite3_file_control(h->db, NULL, SQLITE_FCNTL_DATA_VERSION,
                                 &bk->data_version);
        else
            bk->version_valid = 0;
        return DW_OK;
    }
    /* Not released, the work stays in the caller's transaction: it goes
     * (the core rolls it back), so that the failure leaves nothing. */
    if (scope == SCOPE_SAVEPOINT)
        return run_fixed(h, ST_RELEASE, "releasing the savepoint");
    return DW_OK;
}

static int be_side_savepoint(dw_migration *h)
{
    return run_fixed(h, ST_SIDE_SAVEPOINT, "opening a savepoint");
}

static int be_side_release(dw_migration *h, int rollback)
{
    if (sqlite3_get_autocommit(h->db))
        return DW_ERROR; /* SQLite rolled everything back: nothing to keep */
    if (rollback) {
        int rc = run_fixed(h, ST_SIDE_ROLLBACK_TO, "rolling back one side");
        if (rc != DW_OK)
            return rc;
    }
    return run_fixed(h, ST_SIDE_RELEASE, "releasing a savepoint");
}

/* ---- the stage cache check ------------------------------------------------ */

/* The data version does not move for this connection's own uncommitted
 * changes, nor when a transaction rolls back, so the cache is trusted only
 * inside a transaction of our own; inside the caller's, the stage is read. */
static int be_state_unchanged(dw_migration *h)
{
    sqlite_backend *bk = BK(h);
    unsigned int v;
    /* The pager's data version is current only inside a read transaction:
     * our BEGIN IMMEDIATE opened one (still open unless SQLite rolled it
     * back), a BEGIN opens none until a statement reads. */
    if (!bk->version_valid || bk->scope != SCOPE_OWN ||
        (bk->write ? sqlite3_get_autocommit(h->db)
                   : sqlite3_txn_state(h->db, "main") < SQLITE_TXN_READ) ||
        sqlite3_file_control(h->db, NULL, SQLITE_FCNTL_DATA_VERSION, &v) !=
            SQLITE_OK)
        return 0;
    if (v != bk->data_version)
        return 0;
    bk->verified = 1;
    return 1;
}

static int be_in_transaction(dw_migration *h)
{
    return !sqlite3_get_autocommit(h->db);
}

static int be_idle(dw_migration *h)
{
    return BK(h)->version_valid && sqlite3_get_autocommit(h->db);
}

/* Outside a transaction the pager's data version is the one its last read
 * transaction began with: equal to the cached one, nothing was committed
 * between the cache and the snapshot the last statement read. */
static int be_state_seen_unchanged(dw_migration *h)
{
    sqlite_backend *bk = BK(h);
    unsigned int v;
    /* NULL names the main database without a name lookup. */
    return bk->version_valid && sqlite3_get_autocommit(h->db) &&
           sqlite3_file_control(h->db, NULL, SQLITE_FCNTL_DATA_VERSION,
                                &v) == SQLITE_OK &&
           v == bk->data_version;
}

static void be_state_remember(dw_migration *h)
{
    sqlite_backend *bk = BK(h);
    bk->version_valid =
        bk->scope == SCOPE_OWN &&
        sqlite3_txn_state(h->db, "main") >= SQLITE_TXN_READ &&
        sqlite3_file_control(h->db, NULL, SQLITE_FCNTL_DATA_VERSION,
                             &bk->data_version) == SQLITE_OK;
    bk->verified = bk->version_valid;
}

/* ---- checkpoints held during a backfill ------------------------------------ */

/* In place of SQLite's automatic checkpoint while held: notes that one is
 * due, as the default hook would start it (frames at least the limit). */
static int note_checkpoint(void *arg, sqlite3 *db, const char *name,
                           int frames)
{
    sqlite_backend *bk = arg;
    (void)db;
    (void)name;
    if (frames >= bk->ckpt_every)
        bk->ckpt_due = 1;
    return SQLITE_OK;
}

static void be_checkpoint_run(dw_migration *h)
{
    sqlite_backend *bk = BK(h);
    if (!bk->ckpt_due)
        return;
    bk->ckpt_due = 0;
    /* As SQLite's own: passive, its failure ignored (the next one
     * retries). */
    sqlite3_wal_checkpoint_v2(h->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL,
                              NULL);
}

/* Only the automatic checkpoint is held: PRAGMA wal_autocheckpoint reads
 * 0 when it is off or the application set a WAL hook of its own, and then
 * nothing is touched. */
static void be_checkpoint_hold(dw_migration *h, int hold)
{
    sqlite_backend *bk = BK(h);
    if (!hold) {
        if (bk->ckpt_every > 0)
            sqlite3_wal_autocheckpoint(h->db, bk->ckpt_every);
        be_checkpoint_run(h);
        bk->ckpt_every = 0;
        return;
    }
    sqlite3_stmt *st = NULL;
    int every = 0;
    if (dw__prepare(h, "PRAGMA wal_autocheckpoint", &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        every = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (every <= 0)
        return;
    bk->ckpt_every = every;
    bk->ckpt_due = 0;
    sqlite3_wal_hook(h->db, note_checkpoint, bk);
}

/* ---- time budget ------------------------------------------------------------ */

static int budget_check(void *payload)
{
    sqlite_backend *bk = payload;
    /* The application's handler keeps its own cadence. */
    if (bk->app_progress && (bk->app_calls += BUDGET_OPS) >= bk->app_every) {
        bk->app_calls = 0;
        if (bk->app_progress(bk->app_progress_payload))
            return 1;
    }
    if (dw__now_ns() >= bk->deadline_ns) {
        bk->expired = 1;
        return 1;
    }
    return 0;
}


static void be_budget_start(dw_migration *h, int ms)
{
    sqlite_backend *bk = BK(h);
    bk->expired = 0;
    bk->deadline_ns = dw__now_ns() + (uint64_t)ms * 1000000u;
    bk->app_calls = 0;
    sqlite3_progress_handler(h->db, BUDGET_OPS, budget_check, bk);
}

static int be_budget_stop(dw_migration *h)
{
    sqlite_backend *bk = BK(h);
    /* SQLite cannot tell us the previous handler; put back the one the
     * application named (dw_sqlite_set_progress_handler()), or none. */
    if (bk->app_progress)
        sqlite3_progress_handler(h->db, bk->app_every, bk->app_progress,
                                 bk->app_progress_payload);
    else
        sqlite3_progress_handler(h->db, 0, NULL, NULL);
    return bk->expired;
}

/* ---- attach and detach ------------------------------------------------------ */

/* What a failing callback's return means here: the message
 * dw_sqlite_result() kept for it, or a hint when the callback returned what
 * looks like an SQLite code rather than a DW_ code. */
static const char *be_callback_detail(dw_migration *h, int cbrc)
{
    if (cbrc > 0)
        return "not a DW_ result code (an SQLite code? map it with "
               "dw_sqlite_result())";
    return dw__sqlite_kept_message(h->db, cbrc);
}

static void be_callback_begin(dw_migration *h)
{
    (void)h;
    dw__sqlite_forget_message();
}

static int be_attach(dw_migration *h)
{
    h->backend = dw__calloc(sizeof(sqlite_backend));
    return h->backend ? DW_OK : DW_ENOMEM;
}

static void be_detach(dw_migration *h)
{
    sqlite_backend *bk = BK(h);
    if (!bk)
        return;
    for (int i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(bk->st[i]);
        dw__free(bk->sql[i]);
    }
    dw__range_finalize(bk);
    sqlite3_finalize(bk->cohort);
    dw__free(bk->cohort_pred);
    dw__sqlite_backup_discard(h, 0);
    dw__free(bk);
    h->backend = NULL;
}

/* Named and grouped by concern, so a missing or swapped entry shows. */
const dw_backend_ops dw__sqlite_backend = {
    /* Handle life */
    .name = "sqlite",
    .attach = be_attach,
    .detach = be_detach,
    /* State tables and the spec */
    .state_init = dw__sqlite_state_init,
    .migration_find = dw__sqlite_migration_find,
    .migration_define = dw__sqlite_migration_define,
    .migration_redefine = dw__sqlite_migration_redefine,
    .migration_peek = dw__sqlite_migration_peek,
    /* The catalog, for the validation rules */
    .reserved_prefix = "sqlite_",
    .state_tables = dw__sqlite_state_tables,
    .describe_table = dw__sqlite_describe_table,
    .check_expr = dw__sqlite_check_expr,
    .check_statement = dw__sqlite_check_statement,
    .stored_spec = dw__sqlite_stored_spec,
    .rows_prepare = dw__sqlite_rows_prepare,
    .rows_forget = dw__sqlite_rows_forget,
    /* Transactions */
    .begin = be_begin,
    .settle = be_settle,
    .commit = be_commit,
    .rollback = be_rollback,
    .side_savepoint = be_side_savepoint,
    .side_release = be_side_release,
    .in_transaction = be_in_transaction,
    /* Stage cache */
    .state_unchanged = be_state_unchanged,
    .idle = be_idle,
    .state_seen_unchanged = be_state_seen_unchanged,
    .state_remember = be_state_remember,
    /* Stage and history */
    .stage_load = dw__sqlite_stage_load,
    .stage_store = dw__sqlite_stage_store,
    .stage_write = dw__sqlite_stage_write,
    .history_add = dw__sqlite_history_add,
    .history = dw__sqlite_history,
    /* Repair queue and mismatch log */
    .repair_enqueue = dw__sqlite_repair_enqueue,
    .repair_count = dw__sqlite_repair_count,
    .log_mismatch = dw__sqlite_log_mismatch,
    .log_list = dw__sqlite_log_list,
    .log_count = dw__sqlite_log_count,
    .log_clear = dw__sqlite_log_clear,
    /* Rows */
    .read_side = dw__sqlite_read_side,
    .read_mapped = dw__sqlite_read_mapped,
    .sync_sql = dw__sqlite_sync_sql,
    .upsert_row = dw__sqlite_upsert_row,
    .upsert_changed = dw__sqlite_upsert_changed,
    .delete_row = dw__sqlite_delete_row,
    /* Key ranges */
    .range_key_at = dw__sqlite_range_key_at,
    .range_last = dw__sqlite_range_last,
    .range_count = dw__sqlite_range_count,
    .null_keys = dw__sqlite_null_keys,
    .unpaged_key = dw__sqlite_unpaged_key,
    .integer_keys = dw__sqlite_integer_keys,
    .range_copy = dw__sqlite_range_copy,
    .range_delete_orphans = dw__sqlite_range_delete_orphans,
    .range_keys = dw__sqlite_range_keys,
    .range_rows = dw__sqlite_range_rows,
    .skip_reset = dw__sqlite_skip_reset,
    .skip_add = dw__sqlite_skip_add,
    .skip_keys = dw__sqlite_skip_keys,
    .verify_chunk = dw__sqlite_verify_chunk,
    .verify_range = dw__sqlite_verify_range,
    /* Setup SQL */
    .run_setup = dw__sqlite_run_setup,
    /* Backfill and verification runs */
    .backfill_load = dw__sqlite_backfill_load,
    .backfill_store = dw__sqlite_backfill_store,
    .backfill_stale = dw__sqlite_backfill_stale,
    .gate_facts = dw__sqlite_gate_facts,
    .verify_start = dw__sqlite_verify_start,
    .verify_key = dw__sqlite_verify_key,
    .verify_finish = dw__sqlite_verify_finish,
    .verify_last = dw__sqlite_verify_last,
    .divergent_list = dw__sqlite_divergent_list,
    .divergent_done = dw__sqlite_divergent_done,
    .queue_list = dw__sqlite_queue_list,
    .queue_remove = dw__sqlite_queue_remove,
    /* Key routing */
    .override_get = dw__sqlite_override_get,
    .override_put = dw__sqlite_override_put,
    .override_delete = dw__sqlite_override_delete,
    .override_list = dw__sqlite_override_list,
    .override_keys = dw__sqlite_override_keys,
    .override_stats = dw__sqlite_override_stats,
    .overrides_bump = dw__sqlite_overrides_bump,
    .routing_store = dw__sqlite_routing_store,
    .cohort_check = dw__sqlite_cohort_check,
    .cohort_member = dw__sqlite_cohort_member,
    .covered = dw__sqlite_covered,
    /* Contract and restore: the old model, its backup file, other
     * migrations' use of it */
    .model_describe = dw__sqlite_model_describe,
    .model_digest = dw__sqlite_model_digest,
    .model_present = dw__sqlite_model_present,
    .name_taken = dw__sqlite_name_taken,
    .table_columns = dw__sqlite_table_columns,
    .table_referenced = dw__sqlite_table_referenced,
    .model_drop = dw__sqlite_model_drop,
    .backup_exists = dw__sqlite_backup_exists,
    .backup_create = dw__sqlite_backup_create,
    .backup_discard = dw__sqlite_backup_discard,
    .backup_attach = dw__sqlite_backup_attach,
    .backup_detach = dw__sqlite_backup_detach,
    .backup_copy = dw__sqlite_backup_copy,
    .backup_record = dw__sqlite_backup_record,
    .backup_read_record = dw__sqlite_backup_read_record,
    .backup_read_model = dw__sqlite_backup_read_model,
    .restore_table = dw__sqlite_restore_table,
    .restore_columns = dw__sqlite_restore_columns,
    .restored_columns_check = dw__sqlite_restored_columns_check,
    .others_list = dw__sqlite_others_list,
    .contracted_store = dw__sqlite_contracted_store,
    /* Time budget and checkpoints */
    .budget_start = be_budget_start,
    .budget_stop = be_budget_stop,
    .checkpoint_hold = be_checkpoint_hold,
    .checkpoint_run = be_checkpoint_run,
    /* Application callbacks */
    .callback_detail = be_callback_detail,
    .callback_begin = be_callback_begin,
};
