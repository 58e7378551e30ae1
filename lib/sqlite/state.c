/* The SQLite backend's stored state: the migration row, its stage and
 * history, the repair queue and the mismatch log. */
#include <stdio.h>
#include <string.h>

#include "backend.h"

/* A history entry of migration id (which the handle may not know yet). */
static int history_insert(dw_migration *h, int64_t id, const char *event,
                          int from, int to, int forced, const char *reason,
                          const char *detail)
{
    sqlite3_stmt *st = dw__stmt(h, ST_HISTORY_ADD);
    if (!st)
        return h->errcode;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_double(st, 2, dw__wall_time());
    sqlite3_bind_text(st, 3, event, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, from);
    sqlite3_bind_int(st, 5, to);
    sqlite3_bind_int(st, 6, forced);
    if (reason)
        sqlite3_bind_text(st, 7, reason, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 7);
    if (detail)
        sqlite3_bind_text(st, 8, detail, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 8);
    return dw__run(h, st, DW_SIDE_NONE, "recording the history") == SQLITE_OK
               ? DW_OK
               : h->errcode;
}

int dw__sqlite_history_add(dw_migration *h, const char *event, int from,
                           int to, int forced, const char *reason,
                           const char *detail)
{
    return history_insert(h, h->id, event, from, to, forced, reason, detail);
}

/* A backfill done before no longer holds: the stage entered OFF or
 * COMPLETE (writes to one side stopped), or the spec was redefined. */
int dw__sqlite_backfill_stale(dw_migration *h)
{
    sqlite3_stmt *st = NULL;
    int rc = dw__prepare(h,
                         "UPDATE dw_backfill SET state = 'stale', updated = ?2 "
                         "WHERE migration_id = ?1",
                         &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, h->id);
        sqlite3_bind_double(st, 2, dw__wall_time());
        rc = sqlite3_step(st);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? DW_OK
                           : dw__sqlite_error(h, rc, DW_SIDE_NONE,
                                              "marking the backfill stale");
}

/* A migration row deleted by hand leaves its state rows behind, and the
 * next definition may get its id back: a new migration starts with no
 * backfill, verification, overrides, queue, log or history of its own. */
static int forget_orphans(dw_migration *h, int64_t id)
{
    static const char *const sql[] = {
        "DELETE FROM dw_verify_keys WHERE run_id IN (SELECT id FROM "
        "dw_verify_runs WHERE migration_id = ?1)",
        "DELETE FROM dw_verify_runs WHERE migration_id = ?1",
        "DELETE FROM dw_backfill WHERE migration_id = ?1",
        "DELETE FROM dw_overrides WHERE migration_id = ?1",
        "DELETE FROM dw_repair_queue WHERE migration_id = ?1",
        "DELETE FROM dw_mismatch_log WHERE migration_id = ?1",
        "DELETE FROM dw_history WHERE migration_id = ?1"};
    for (size_t i = 0; i < sizeof sql / sizeof *sql; i++) {
        sqlite3_stmt *st = NULL;
        int rc = dw__prepare(h, sql[i], &st, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_int64(st, 1, id);
            rc = sqlite3_step(st);
            rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_OK)
            return dw__sqlite_error(h, rc, DW_SIDE_NONE,
                                    "clearing the state a deleted migration "
                                    "left");
    }
    return DW_OK;
}

/* The stage and contract flag of the migration's row (ST_MIGRATION_FIND). */
static int found_row_checked(dw_migration *h, sqlite3_stmt *st,
                             dw_stored_facts *f)
{
    state_row at = {"dw_migrations", "id", f->id, NULL};
    int64_t contracted;
    int rc = dw__column_stage(h, st, 1, &f->stage, &at);
    if (rc == DW_OK)
        rc = dw__column_int_in(h, st, 3, 0, 1, &contracted, &at);
    if (rc == DW_OK)
        f->contracted = (int)contracted;
    return rc;
}

/* dw_remove() leaves a note in dw_meta of the migration it removed; a new
 * definition under that name takes it into its first history entry, so
 * the history says what came before. *detail is NULL when there is none. */
static int take_removal_note(dw_migration *h, char **detail)
{
    *detail = NULL;
    sqlite3_stmt *st = NULL;
    int rc = dw__prepare(h,
                         "SELECT 'removed' || coalesce(' ' || strftime("
                         "'%Y-%m-%d %H:%M:%S UTC', t.value, 'unixepoch'), '') "
                         "|| ' ' || n.value "
                         "FROM dw_meta n LEFT JOIN dw_meta t ON t.key = "
                         "'removed_at:' || ?1 WHERE n.key = 'removed:' || ?1",
                         &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, h->spec.name, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    if (rc == SQLITE_ROW) {
        const char *note = (const char *)sqlite3_column_text(st, 0);
        *detail = note ? sqlite3_mprintf("defined again; the migration of "
                                         "this name before was %s",
                                         note)
                       : NULL;
        rc = *detail ? SQLITE_DONE : SQLITE_NOMEM;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc == SQLITE_DONE && *detail &&
        (rc = dw__prepare(h,
                          "DELETE FROM dw_meta WHERE key IN ('removed:' || "
                          "?1, 'removed_at:' || ?1)",
                          &st, NULL)) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, h->spec.name, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE)
        return DW_OK;
    sqlite3_free(*detail);
    *detail = NULL;
    return dw__sqlite_error(h, rc, DW_SIDE_NONE,
                            "reading the note of a removed migration");
}

/* The digest of the found row, and its spec text when the digest is not
 * `digest`. */
static int found_spec(dw_migration *h, sqlite3_stmt *st, const char *digest,
                      dw_stored_facts *f)
{
    const char *text = (const char *)sqlite3_column_text(st, 2);
    if (!text)
        return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    snprintf(f->digest, sizeof f->digest, "%s", text);
    if (strcmp(f->digest, digest) == 0)
        return DW_OK;
    const char *spec = (const char *)sqlite3_column_text(st, 4);
    f->spec = spec || sqlite3_column_type(st, 4) == SQLITE_NULL
                  ? dw__strdup(spec ? spec : "")
                  : NULL;
    return f->spec ? DW_OK
                   : dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
}

int dw__sqlite_migration_find(dw_migration *h, const char *digest,
                              dw_stored_facts *f)
{
    sqlite3_stmt *st = dw__stmt(h, ST_MIGRATION_FIND);
    if (!st)
        return h->errcode;
    sqlite3_bind_text(st, 1, h->spec.name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int result = DW_ENOTFOUND;
    if (rc == SQLITE_ROW) {
        f->id = sqlite3_column_int64(st, 0);
        result = found_row_checked(h, st, f);
        if (result == DW_OK)
            result = found_spec(h, st, digest, f);
    } else if (rc != SQLITE_DONE) {
        result = dw__sqlite_error(h, rc, DW_SIDE_NONE,
                                  "looking up the migration");
    }
    sqlite3_reset(st);
    return result;
}

int dw__sqlite_migration_redefine(dw_migration *h, const char *spec_text,
                                  const char *digest, const char *reason,
                                  int stage)
{
    sqlite3_stmt *st = dw__stmt(h, ST_MIGRATION_REDEFINE);
    if (!st)
        return h->errcode;
    sqlite3_bind_int64(st, 1, h->id);
    sqlite3_bind_text(st, 2, spec_text, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, digest, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 4, dw__wall_time());
    if (dw__run(h, st, DW_SIDE_NONE, "storing the new spec") != SQLITE_OK)
        return h->errcode;
    /* What was copied and verified was under the old mapping. */
    if (dw__sqlite_backfill_stale(h) != DW_OK)
        return h->errcode;
    return dw__sqlite_history_add(h, "redefine", stage, stage, 0, reason,
                                  NULL);
}

int dw__sqlite_migration_define(dw_migration *h, const char *spec_text,
                                const char *digest, const char *reason,
                                int64_t *id)
{
    sqlite3_stmt *st = dw__stmt(h, ST_MIGRATION_INSERT);
    if (!st)
        return h->errcode;
    sqlite3_bind_text(st, 1, h->spec.name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, spec_text, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, digest, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 4, dw__wall_time());
    if (dw__run(h, st, DW_SIDE_NONE, "storing the migration") != SQLITE_OK)
        return h->errcode;
    *id = sqlite3_last_insert_rowid(h->db);
    if (forget_orphans(h, *id) != DW_OK)
        return h->errcode;
    char *detail = NULL;
    int result = take_removal_note(h, &detail);
    if (result == DW_OK)
        result = history_insert(h, *id, "define", DW_STAGE_OFF, DW_STAGE_OFF,
                                0, reason, detail);
    sqlite3_free(detail);
    return result;
}

/* The stored override count is a fast path that every override change
 * keeps; the rows decide. A count that disagrees with them is damage. */
static int overrides_loaded(dw_migration *h, sqlite3_stmt *st, int64_t *n,
                            const state_row *at)
{
    int rc = dw__column_int_in(h, st, 6, 0, INT64_MAX, n, at);
    int stored = sqlite3_column_int(st, 7);
    if (rc == DW_OK && (*n > 0) != stored)
        rc = dw__damaged(h, at,
                         "column overrides counts %lld overrides, but table "
                         "dw_overrides holds %s for it",
                         (long long)*n, stored ? "some" : "none");
    return rc;
}

/* The stage and routing row, each value checked: a forged stage must not
 * act as some stage. */
static int stage_row_loaded(dw_migration *h, sqlite3_stmt *st,
                            dw_stage_facts *f)
{
    state_row at = {"dw_migrations", "id", h->id, NULL};
    int64_t contracted, buckets, promote;
    /* Column 8: whether the stored spec is still the one this handle
     * opened (see dw__stage_current). */
    f->spec_same = sqlite3_column_int(st, 8);
    int rc = dw__column_stage(h, st, 0, &f->stage, &at);
    if (rc == DW_OK)
        rc = dw__column_int_in(h, st, 1, 0, 1, &contracted, &at);
    if (rc == DW_OK)
        rc = dw__column_int_in(h, st, 2, 0, DW_BUCKETS, &buckets, &at);
    if (rc == DW_OK)
        rc = dw__column_stage(h, st, 3, &f->route.canary_stage, &at);
    if (rc == DW_OK)
        rc = dw__column_int_in(h, st, 5, DW_PROMOTE_NONE, DW_STAGE_COMPLETE,
                               &promote, &at);
    if (rc == DW_OK)
        rc = overrides_loaded(h, st, &f->route.overrides, &at);
    int type = sqlite3_column_type(st, 4);
    if (rc == DW_OK && type != SQLITE_TEXT && type != SQLITE_NULL)
        rc = dw__damaged(h, &at, "column canary_cohort holds no text");
    if (rc != DW_OK)
        return rc;
    const char *cohort = (const char *)sqlite3_column_text(st, 4);
    if ((!cohort && type != SQLITE_NULL) ||
        (cohort && *cohort && !(f->route.cohort = dw__strdup(cohort))))
        return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    f->contracted = (int)contracted;
    f->route.buckets = (int)buckets;
    f->route.promote_stage = (int)promote;
    return DW_OK;
}

int dw__sqlite_stage_load(dw_migration *h, dw_stage_facts *f)
{
    sqlite3_stmt *st = dw__stmt(h, ST_STAGE_LOAD);
    if (!st)
        return h->errcode;
    sqlite3_bind_int64(st, 1, h->id);
    sqlite3_bind_text(st, 2, h->digest, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int result = DW_OK;
    if (rc == SQLITE_ROW)
        result = stage_row_loaded(h, st, f);
    else if (rc == SQLITE_DONE)
        result = dw__error(h, DW_ERROR, DW_SIDE_NONE,
                           "migration \"%s\" is no longer stored in this "
                           "database",
                           h->spec.name);
    else
        result = dw__sqlite_error(h, rc, DW_SIDE_NONE, "reading the stage");
    sqlite3_reset(st);
    return result;
}

int dw__sqlite_migration_peek(dw_migration *h, int *contracted)
{
    sqlite3_stmt *st = dw__stmt(h, ST_MIGRATION_FIND);
    if (!st)
        return h->errcode;
    sqlite3_bind_text(st, 1, h->spec.name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    *contracted = rc == SQLITE_ROW && sqlite3_column_int(st, 3);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE
               ? DW_OK
               : dw__sqlite_error(h, rc, DW_SIDE_NONE,
                                  "looking up the migration");
}

int dw__sqlite_stage_write(dw_migration *h, int stage)
{
    sqlite3_stmt *st = dw__stmt(h, ST_STAGE_STORE);
    if (!st)
        return h->errcode;
    sqlite3_bind_int64(st, 1, h->id);
    sqlite3_bind_int(st, 2, stage);
    sqlite3_bind_double(st, 3, dw__wall_time());
    return dw__run(h, st, DW_SIDE_NONE, "storing the stage") == SQLITE_OK
               ? DW_OK
               : h->errcode;
}

int dw__sqlite_stage_store(dw_migration *h, int from, int to,
                           const char *reason, int forced, const char *detail)
{
    if (dw__sqlite_stage_write(h, to) != DW_OK)
        return h->errcode;
    if ((to == DW_STAGE_OFF || to == DW_STAGE_COMPLETE) &&
        dw__sqlite_backfill_stale(h) != DW_OK)
        return h->errcode;
    return dw__sqlite_history_add(h, "stage", from, to, forced, reason,
                                  detail);
}

int dw__end_listing(dw_migration *h, sqlite3_stmt *st, int rc,
                    const char *what)
{
    int result =
        rc == SQLITE_DONE ? DW_OK
                          : dw__sqlite_error(h, rc, DW_SIDE_NONE, what);
    sqlite3_reset(st);
    return result;
}

int dw__sqlite_history(dw_migration *h, dw_history_fn fn, void *payload)
{
    sqlite3_stmt *st = dw__stmt(h, ST_HISTORY_LIST);
    if (!st)
        return h->errcode;
    sqlite3_bind_int64(st, 1, h->id);
    int rc;
    int result = DW_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        dw_history_entry e;
        e.id = sqlite3_column_int64(st, 0);
        state_row at = {"dw_history", "id", e.id, NULL};
        if ((result = dw__column_stage(h, st, 3, &e.from_stage, &at)) !=
                DW_OK ||
            (result = dw__column_stage(h, st, 4, &e.to_stage, &at)) != DW_OK)
            break;
        e.time = sqlite3_column_double(st, 1);
        e.event = (const char *)sqlite3_column_text(st, 2);
        e.forced = sqlite3_column_int(st, 5);
        e.reason = (const char *)sqlite3_column_text(st, 6);
        e.detail = (const char *)sqlite3_column_text(st, 7);
        if (!e.event) {
            rc = SQLITE_NOMEM;
            break;
        }
        if (fn(&e, payload)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (result != DW_OK) {
        sqlite3_reset(st);
        return result;
    }
    return dw__end_listing(h, st, rc, "reading the history");
}

int dw__sqlite_repair_enqueue(dw_migration *h, const char *key, int side,
                              const char *error)
{
    sqlite3_stmt *st = dw__stmt(h, ST_REPAIR_ADD);
    if (!st)
        return h->errcode;
    sqlite3_bind_int64(st, 1, h->id);
    if (dw__bind_key_text(h, st, 2, key, DW_SIDE_NONE,
                          "queueing the key for repair"))
        return h->errcode;
    sqlite3_bind_int(st, 3, side);
    sqlite3_bind_text(st, 4, error, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 5, dw__wall_time());
    return dw__run(h, st, DW_SIDE_NONE, "queueing the key for repair") ==
                   SQLITE_OK
               ? DW_OK
               : h->errcode;
}

/* Runs a statement bound to the migration id that returns one row of
 * integers. */
static int query_ints(dw_migration *h, int id, int64_t *a, int64_t *b,
                      const char *what)
{
    sqlite3_stmt *st = dw__stmt(h, id);
    if (!st)
        return h->errcode;
    sqlite3_bind_int64(st, 1, h->id);
    int rc = sqlite3_step(st);
    int result = DW_OK;
    if (rc == SQLITE_ROW) {
        if (a)
            *a = sqlite3_column_int64(st, 0);
        if (b)
            *b = sqlite3_column_int64(st, 1);
    } else {
        result = dw__sqlite_error(h, rc == SQLITE_DONE ? SQLITE_ERROR : rc,
                                  DW_SIDE_NONE, what);
    }
    sqlite3_reset(st);
    return result;
}

int dw__sqlite_repair_count(dw_migration *h, int64_t *out)
{
    return query_ints(h, ST_REPAIR_COUNT, out, NULL,
                      "counting the repair queue");
}

int dw__sqlite_log_mismatch(dw_migration *h, const char *key,
                            const char *digest, int kind, const char *detail)
{
    double now = dw__wall_time();
    sqlite3_stmt *st = dw__stmt(h, ST_LOG_BUMP);
    if (!st)
        return h->errcode;
    sqlite3_bind_int64(st, 1, h->id);
    if (dw__bind_key_text(h, st, 2, key, DW_SIDE_NONE, "logging a mismatch"))
        return h->errcode;
    sqlite3_bind_text(st, 3, digest, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 4, now);
    if (dw__run(h, st, DW_SIDE_NONE, "logging a mismatch") != SQLITE_OK)
        return h->errcode;
    if (sqlite3_changes(h->db) > 0)
        return 1;

    st = dw__stmt(h, ST_LOG_INSERT);
    if (!st)
        return h->errcode;
    sqlite3_bind_int64(st, 1, h->id);
    if (dw__bind_key_text(h, st, 2, key, DW_SIDE_NONE, "logging a mismatch"))
        return h->errcode;
    sqlite3_bind_text(st, 3, digest, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 4, now);
    sqlite3_bind_int(st, 5, kind);
    sqlite3_bind_text(st, 6, detail, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 7, h->log_cap);
    if (dw__run(h, st, DW_SIDE_NONE, "logging a mismatch") != SQLITE_OK)
        return h->errcode;
    /* Logged: counted with the entries; over the cap: counted as dropped,
     * nothing else kept. */
    int logged = sqlite3_changes(h->db) > 0;
    st = dw__stmt(h, logged ? ST_LOG_ADDED : ST_LOG_DROPPED);
    if (!st)
        return h->errcode;
    sqlite3_bind_int64(st, 1, h->id);
    if (dw__run(h, st, DW_SIDE_NONE, "counting the mismatch log") !=
        SQLITE_OK)
        return h->errcode;
    return logged;
}

int dw__sqlite_log_list(dw_migration *h, int limit, dw_mismatch_entry_fn fn,
                        void *payload)
{
    sqlite3_stmt *st = dw__stmt(h, ST_LOG_LIST);
    if (!st)
        return h->errcode;
    sqlite3_bind_int64(st, 1, h->id);
    sqlite3_bind_int(st, 2, limit > 0 ? limit : -1);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        dw_mismatch_entry e;
        e.key = (const char *)sqlite3_column_text(st, 0);
        e.digest = (const char *)sqlite3_column_text(st, 1);
        e.kind = sqlite3_column_int(st, 2);
        e.detail = (const char *)sqlite3_column_text(st, 3);
        e.count = sqlite3_column_int64(st, 4);
        e.first_seen = sqlite3_column_double(st, 5);
        e.last_seen = sqlite3_column_double(st, 6);
        if (!e.key || !e.digest || !e.detail) {
            rc = SQLITE_NOMEM;
            break;
        }
        if (fn(&e, payload)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    return dw__end_listing(h, st, rc, "reading the mismatch log");
}

/* The log's counts from a row of ST_LOG_COUNT. The kept entry count that
 * the cap reads must be the number of entries: one forged short would let
 * the log pass its cap, one forged long drops what it has room for. */
static int log_counts_checked(dw_migration *h, sqlite3_stmt *st,
                              int64_t *entries, int64_t *dropped)
{
    state_row at = {"dw_migrations", "id", h->id, NULL};
    int64_t kept;
    *entries = sqlite3_column_int64(st, 0);
    int rc = dw__column_int_in(h, st, 1, 0, INT64_MAX, dropped, &at);
    if (rc == DW_OK)
        rc = dw__column_int_in(h, st, 2, 0, INT64_MAX, &kept, &at);
    if (rc == DW_OK && kept != *entries)
        rc = dw__damaged(h, &at,
                         "column mismatch_entries holds %lld, but table "
                         "dw_mismatch_log holds %lld entries for it (clear "
                         "the log to repair it)",
                         (long long)kept, (long long)*entries);
    return rc;
}

int dw__sqlite_log_count(dw_migration *h, int64_t *entries, int64_t *dropped)
{
    sqlite3_stmt *st = dw__stmt(h, ST_LOG_COUNT);
    if (!st)
        return h->errcode;
    sqlite3_bind_int64(st, 1, h->id);
    int rc = sqlite3_step(st);
    int result = rc == SQLITE_ROW
                     ? log_counts_checked(h, st, entries, dropped)
                     : dw__sqlite_error(h,
                                        rc == SQLITE_DONE ? SQLITE_ERROR : rc,
                                        DW_SIDE_NONE,
                                        "counting the mismatch log");
    sqlite3_reset(st);
    return result;
}

int dw__sqlite_log_clear(dw_migration *h)
{
    sqlite3_stmt *st = dw__stmt(h, ST_LOG_CLEAR);
    if (!st)
        return h->errcode;
    sqlite3_bind_int64(st, 1, h->id);
    if (dw__run(h, st, DW_SIDE_NONE, "clearing the mismatch log") !=
        SQLITE_OK)
        return h->errcode;
    st = dw__stmt(h, ST_LOG_CLEAR_DROPPED);
    if (!st)
        return h->errcode;
    sqlite3_bind_int64(st, 1, h->id);
    return dw__run(h, st, DW_SIDE_NONE, "clearing the mismatch log") ==
                   SQLITE_OK
               ? DW_OK
               : h->errcode;
}
