/* The SQLite driver: what the operations without a handle (dw_list(),
 * dw_open_json(), dw_open_stored(), dw_remove()) read and write, on the
 * caller's connection. Their checks and messages are the core's
 * (lib/stored.c). */
#include <stdio.h>
#include <string.h>

#include "backend.h"

/* An SQLite result as a failure code (a stray SQLITE_ROW or SQLITE_DONE
 * is no success). */
static int failure(int rc)
{
    int code = dw__from_sqlite(rc);
    return code == DW_OK ? DW_ERROR : code;
}

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    /* Our SQL uses single-quoted strings only: the connection's
     * double-quoted-string setting does not matter and is left alone. */
    return sqlite3_prepare_v2(db, sql, -1, st, NULL);
}

static int in_transaction(void *conn)
{
    return !sqlite3_get_autocommit((sqlite3 *)conn);
}

static const char *native_error(void *conn)
{
    return sqlite3_errmsg((sqlite3 *)conn);
}

/* ---- scopes --------------------------------------------------------------- */

/* The statements that end a scope, prepared when it begins: ending it
 * then needs no memory. */
typedef struct sqlite_scope {
    sqlite3 *db;
    int nested;
    sqlite3_stmt *commit;
    sqlite3_stmt *rollback[2]; /* ROLLBACK, or ROLLBACK TO and RELEASE */
} sqlite_scope;

static void scope_free(sqlite_scope *s)
{
    sqlite3_finalize(s->commit);
    sqlite3_finalize(s->rollback[0]);
    sqlite3_finalize(s->rollback[1]);
    dw__free(s);
}

static int step_once(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc;
}

static int scope_end(void *conn, void *scope, int commit)
{
    sqlite_scope *s = scope;
    sqlite3 *db = conn;
    if (commit) {
        /* A transaction of ours that SQL of the caller ended is over. */
        if (!s->nested && sqlite3_get_autocommit(db)) {
            scope_free(s);
            return DW_OK;
        }
        int rc = step_once(s->commit);
        if (rc != SQLITE_DONE)
            return failure(rc);
        scope_free(s);
        return DW_OK;
    }
    int rc = step_once(s->rollback[0]);
    if (rc == SQLITE_DONE && s->rollback[1])
        rc = step_once(s->rollback[1]);
    /* SQLite may have ended the transaction itself. */
    int left = rc != SQLITE_DONE && !sqlite3_get_autocommit(db);
    scope_free(s);
    return left ? failure(rc) : DW_OK;
}

static int scope_begin(void *conn, int kind, void **scope)
{
    static const char *const sql[][4] = {
        [DW_SCOPE_READ] = {"BEGIN", "COMMIT", "ROLLBACK", NULL},
        [DW_SCOPE_WRITE] = {"BEGIN IMMEDIATE", "COMMIT", "ROLLBACK", NULL},
        [DW_SCOPE_NESTED] = {"SAVEPOINT dw_scope", "RELEASE dw_scope",
                             "ROLLBACK TO dw_scope", "RELEASE dw_scope"}};
    sqlite3 *db = conn;
    *scope = NULL;
    sqlite_scope *s = dw__calloc(sizeof *s);
    if (!s)
        return DW_ENOMEM;
    s->db = db;
    s->nested = kind == DW_SCOPE_NESTED;
    sqlite3_stmt *begin = NULL;
    int rc = prepare(db, sql[kind][0], &begin);
    if (rc == SQLITE_OK)
        rc = prepare(db, sql[kind][1], &s->commit);
    if (rc == SQLITE_OK)
        rc = prepare(db, sql[kind][2], &s->rollback[0]);
    if (rc == SQLITE_OK && sql[kind][3])
        rc = prepare(db, sql[kind][3], &s->rollback[1]);
    if (rc == SQLITE_OK && (rc = sqlite3_step(begin)) == SQLITE_DONE)
        rc = SQLITE_OK;
    sqlite3_finalize(begin);
    if (rc == SQLITE_OK) {
        *scope = s;
        return DW_OK;
    }
    /* A BEGIN can fail after opening the transaction. */
    if (!s->nested && sqlite3_get_autocommit(db) == 0 && s->rollback[0])
        *scope = s;
    else
        scope_free(s);
    return failure(rc);
}

/* Prepares sql into *st (the caller finalizes), binds name to ?1 and steps
 * once; returns the step's (or the prepare's) result. */
static int step_by_name(sqlite3 *db, const char *sql, const char *name,
                        sqlite3_stmt **st)
{
    int rc = prepare(db, sql, st);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(*st, 1, name, -1, SQLITE_STATIC);
        rc = sqlite3_step(*st);
    }
    return rc;
}

/* ---- the table of migrations --------------------------------------------- */

/* Whether the main database has the library's table of migrations (a
 * database the library never opened has none: nothing is created): 0 no,
 * 1 yes, 2 yes with the column `contracted` (0.1 had none). */
static int migrations_table(sqlite3 *db, int *have)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(db,
                     "SELECT (SELECT count(*) FROM main.sqlite_schema WHERE "
                     "type = 'table' AND name = 'dw_migrations'), "
                     "(SELECT count(*) FROM pragma_table_info("
                     "'dw_migrations', 'main') WHERE name = 'contracted')",
                     &st);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *have = sqlite3_column_int(st, 0) == 0   ? 0
                : sqlite3_column_int(st, 1) == 0 ? 1
                                                 : 2;
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? DW_OK : failure(rc);
}

/* Column c as text: "" for NULL, NULL when SQLite lacked the memory. */
static const char *column_text(sqlite3_stmt *st, int c)
{
    const char *s = (const char *)sqlite3_column_text(st, c);
    return s || sqlite3_column_type(st, c) != SQLITE_NULL ? s : "";
}

#define LIST_SQL(contracted)                                                   \
    "SELECT name, stage, spec, spec_digest, " contracted ", created, "       \
    "updated FROM main.dw_migrations ORDER BY name"

static int list(void *conn, dw_stored_row_fn fn, void *arg)
{
    sqlite3 *db = conn;
    int have = 0;
    int code = migrations_table(db, &have);
    if (code != DW_OK || !have)
        return code;
    sqlite3_stmt *st = NULL;
    int rc = prepare(db, have == 2 ? LIST_SQL("contracted") : LIST_SQL("0"),
                     &st);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        dw_stored_row r;
        r.name = column_text(st, 0);
        r.stage = sqlite3_column_int64(st, 1);
        r.stage_integer = sqlite3_column_type(st, 1) == SQLITE_INTEGER;
        r.spec = column_text(st, 2);
        r.spec_digest = column_text(st, 3);
        r.contracted = sqlite3_column_int(st, 4) != 0;
        r.created = sqlite3_column_double(st, 5);
        r.updated = sqlite3_column_double(st, 6);
        if (!r.name || !r.spec || !r.spec_digest)
            rc = SQLITE_NOMEM;
        else
            rc = fn(&r, arg) ? SQLITE_DONE : SQLITE_OK;
        if (rc != SQLITE_OK)
            break;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? DW_OK : failure(rc);
}

static int stored_spec(void *conn, const char *name, char **spec,
                       char **digest)
{
    sqlite3 *db = conn;
    *spec = *digest = NULL;
    int have = 0;
    int code = migrations_table(db, &have);
    if (code != DW_OK)
        return code;
    if (!have)
        return DW_ENOTFOUND;
    sqlite3_stmt *st = NULL;
    int rc = step_by_name(db,
                          "SELECT spec, spec_digest FROM main.dw_migrations "
                          "WHERE name = ?1",
                          name, &st);
    if (rc == SQLITE_ROW) {
        const char *t = column_text(st, 0), *d = column_text(st, 1);
        *spec = t ? dw__strdup(t) : NULL;
        *digest = d ? dw__strdup(d) : NULL;
        rc = *spec && *digest ? SQLITE_OK : SQLITE_NOMEM;
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_OK)
        return DW_OK;
    dw__free(*spec);
    dw__free(*digest);
    *spec = *digest = NULL;
    return rc == SQLITE_DONE ? DW_ENOTFOUND : failure(rc);
}

static int state_version(void *conn, int *version)
{
    sqlite3 *db = conn;
    int have = 0;
    int code = migrations_table(db, &have);
    *version = -1;
    if (code != DW_OK || !have)
        return code;
    sqlite3_stmt *st = NULL;
    int rc = prepare(db,
                     "SELECT value FROM main.dw_meta WHERE key = "
                     "'schema_version'",
                     &st);
    *version = 0;
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
        *version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? DW_OK : failure(rc);
}

/* ---- removal ---------------------------------------------------------------- */

static int removal_read(void *conn, const char *name, dw_removal *r)
{
    sqlite3 *db = conn;
    sqlite3_stmt *st = NULL;
    int rc = step_by_name(
        db,
        "SELECT id, stage, contracted, spec_digest, (canary_buckets > 0 OR "
        "canary_cohort IS NOT NULL) AND canary_stage <> 0, canary_stage, "
        "(SELECT count(*) FROM dw_overrides o WHERE o.migration_id = m.id "
        "AND o.stage <> 0), typeof(stage) = 'integer' AND stage BETWEEN 0 "
        "AND 5 AND typeof(contracted) = 'integer' AND contracted IN (0, 1) "
        "AND typeof(canary_stage) = 'integer' AND canary_stage BETWEEN 0 AND "
        "5 FROM main.dw_migrations m WHERE name = ?1",
        name, &st);
    if (rc == SQLITE_ROW) {
        r->id = sqlite3_column_int64(st, 0);
        r->stage = sqlite3_column_int(st, 1);
        r->contracted = sqlite3_column_int(st, 2);
        const char *digest = (const char *)sqlite3_column_text(st, 3);
        snprintf(r->digest, sizeof r->digest, "%s", digest ? digest : "");
        r->canary = sqlite3_column_int(st, 4);
        r->canary_stage = sqlite3_column_int(st, 5);
        r->routed = sqlite3_column_int64(st, 6);
        r->intact = sqlite3_column_int(st, 7);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW    ? DW_OK
           : rc == SQLITE_DONE ? DW_ENOTFOUND
                               : failure(rc);
}

/* One statement of the removal with ?1 bound to the id and ?2 on to the
 * texts given. */
static int removal_step(sqlite3 *db, const char *sql, int64_t id,
                        const char *const *texts, int ntexts)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(db, sql, &st);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, id);
        for (int i = 0; i < ntexts; i++)
            sqlite3_bind_text(st, 2 + i, texts[i], -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? DW_OK : failure(rc);
}

static int removal_apply(void *conn, int64_t id, const char *name,
                         const char *note)
{
    static const char *const deletes[] = {
        "DELETE FROM dw_verify_keys WHERE run_id IN (SELECT id FROM "
        "dw_verify_runs WHERE migration_id = ?1)",
        "DELETE FROM dw_verify_runs WHERE migration_id = ?1",
        "DELETE FROM dw_backfill WHERE migration_id = ?1",
        "DELETE FROM dw_overrides WHERE migration_id = ?1",
        "DELETE FROM dw_mismatch_log WHERE migration_id = ?1",
        "DELETE FROM dw_repair_queue WHERE migration_id = ?1",
        "DELETE FROM dw_history WHERE migration_id = ?1",
        "DELETE FROM dw_migrations WHERE id = ?1"};
    sqlite3 *db = conn;
    int rc = DW_OK;
    for (size_t i = 0; rc == DW_OK && i < sizeof deletes / sizeof *deletes;
         i++)
        rc = removal_step(db, deletes[i], id, NULL, 0);
    const char *const texts[] = {name, note};
    /* The note, and apart from it the time (a number, as every time the
     * library stores). */
    if (rc == DW_OK)
        rc = removal_step(
            db,
            "INSERT INTO dw_meta(key, value) VALUES('removed:' || ?2, ?3), "
            "('removed_at:' || ?2, (julianday('now') - 2440587.5) * "
            "86400.0) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            id, texts, 2);
    /* The id is never given again (see ST_MIGRATION_INSERT): a handle
     * still open on the removed migration must not find another's state
     * under it. */
    if (rc == DW_OK)
        rc = removal_step(db,
                          "INSERT INTO dw_meta(key, value) VALUES("
                          "'removed_max_id', ?1) ON CONFLICT(key) DO UPDATE "
                          "SET value = max(CAST(value AS INTEGER), "
                          "excluded.value)",
                          id, NULL, 0);
    return rc;
}

const dw_driver dw__sqlite_driver = {
    .name = "sqlite",
    .ops = &dw__sqlite_backend,
    /* the connection */
    .in_transaction = in_transaction,
    .native_error = native_error,
    /* scopes */
    .scope_begin = scope_begin,
    .scope_end = scope_end,
    /* stored migrations */
    .list = list,
    .stored_spec = stored_spec,
    .state_version = state_version,
    /* removal */
    .removal_read = removal_read,
    .removal_apply = removal_apply,
};
