/* The SQLite backend's record of the longer operations: the backfill's
 * cursor and counts, verification runs and their divergent keys, what the
 * gates look at, and the lists repairs work through. */
#include <stdio.h>
#include <string.h>

#include "backend.h"

static const char *const bf_state_names[] = {NULL, "running", "done",
                                             "stale"};

/* Prepared per call: these run a few times per batch or run, never on the
 * per-key hot path. */
static int prepare(dw_migration *h, const char *sql, sqlite3_stmt **st)
{
    int rc = dw__prepare(h, sql, st, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(*st);
        *st = NULL;
        return dw__sqlite_error(h, rc, DW_SIDE_NONE,
                                "preparing the library's SQL");
    }
    return DW_OK;
}

static int run_once(dw_migration *h, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    int result = rc == SQLITE_DONE || rc == SQLITE_ROW
                     ? DW_OK
                     : dw__sqlite_error(h, rc, DW_SIDE_NONE, what);
    sqlite3_finalize(st);
    return result;
}

static char *column_dup(sqlite3_stmt *st, int c, int *oom)
{
    if (sqlite3_column_type(st, c) == SQLITE_NULL)
        return NULL;
    const char *p = (const char *)sqlite3_column_text(st, c);
    char *copy = p ? dw__strdup(p) : NULL;
    if (!copy)
        *oom = 1;
    return copy;
}

void dw__backfill_state_free(dw_backfill_state *s)
{
    dw__free(s->cursor);
    dw__free(s->end_key);
    memset(s, 0, sizeof *s);
}

/* The backfill's state word (column c) as DW_BF_...; text the library
 * never writes is damage. */
static int bf_state_of(dw_migration *h, sqlite3_stmt *st, int c, int *state)
{
    const char *word = (const char *)sqlite3_column_text(st, c);
    for (int i = DW_BF_RUNNING; word && i <= DW_BF_STALE; i++)
        if (strcmp(word, bf_state_names[i]) == 0) {
            *state = i;
            return DW_OK;
        }
    if (!word && sqlite3_column_type(st, c) != SQLITE_NULL)
        return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    state_row at = {"dw_backfill", "migration_id", h->id, NULL};
    return dw__damaged(h, &at,
                       "column state holds %s%s%s, not running, done or "
                       "stale",
                       word ? "'" : "NULL", word ? word : "",
                       word ? "'" : "");
}

/* A stored key of the backfill (column `name`) must be a key of the
 * migration: its number of values, and text where the key column has text
 * affinity (which turns anything else into text). */
static int stored_key_ok(dw_migration *h, const char *text, const char *name,
                         dw_value **key)
{
    int rc = dw__stored_key(h, text, key);
    int col = -1;
    for (int i = 0; rc == DW_OK && i < h->spec.side[DW_SIDE_OLD].nkey; i++)
        if (h->key_class[i] == 'T' && (*key)[i].type != DW_TYPE_TEXT)
            col = col < 0 ? i : col;
    if ((rc == DW_OK && col < 0) || rc == DW_ENOMEM)
        return rc;
    state_row at = {"dw_backfill", "migration_id", h->id, NULL};
    return col < 0 ? dw__damaged(h, &at,
                                 "column %s holds %s, which is not a key of "
                                 "the migration",
                                 name, text)
                   : dw__damaged(h, &at,
                                 "column %s holds %s, whose value %d is not "
                                 "text, but key column \"%s\" has text "
                                 "affinity",
                                 name, text, col + 1,
                                 h->spec.side[DW_SIDE_OLD].key[col]);
}

/* A running backfill's cursor is a key before its end: one past the end
 * would finish it without copying anything. */
static int cursor_ok(dw_migration *h, const dw_backfill_state *s)
{
    if (s->state != DW_BF_RUNNING)
        return DW_OK;
    state_row at = {"dw_backfill", "migration_id", h->id, NULL};
    if (s->source != DW_SIDE_OLD && s->source != DW_SIDE_NEW)
        return dw__damaged(h, &at, "column source holds %d, not 1 or 2",
                           s->source);
    dw_value *end = NULL, *cursor = NULL;
    int rc = s->end_key ? stored_key_ok(h, s->end_key, "end_key", &end)
                        : DW_OK;
    if (rc == DW_OK && s->cursor && !s->end_key)
        rc = dw__damaged(h, &at,
                         "column cursor holds %s, but end_key is NULL "
                         "(the source was empty)",
                         s->cursor);
    int before = 1;
    if (rc == DW_OK && s->cursor &&
        (rc = stored_key_ok(h, s->cursor, "cursor", &cursor)) == DW_OK)
        rc = dw__sqlite_key_before(h, cursor, end, &before);
    if (rc == DW_OK && !before)
        rc = dw__damaged(h, &at,
                         "column cursor holds %s, which is not before the "
                         "end key %s",
                         s->cursor, s->end_key);
    dw__free(end);
    dw__free(cursor);
    return rc;
}

/* The backfill's counters (columns 4 to 8), each a count: below zero or
 * not a number is damage, not progress. */
static int counters_loaded(dw_migration *h, sqlite3_stmt *st,
                           dw_backfill_state *s)
{
    int64_t *const counters[] = {&s->rows_done, &s->rows_total,
                                 &s->rows_written, &s->rows_deleted,
                                 &s->batches};
    state_row at = {"dw_backfill", "migration_id", h->id, NULL};
    int rc = DW_OK;
    for (int i = 0; rc == DW_OK && i < 5; i++)
        rc = dw__column_int_in(h, st, 4 + i, 0, INT64_MAX, counters[i], &at);
    return rc;
}

int dw__sqlite_backfill_load(dw_migration *h, dw_backfill_state *s)
{
    memset(s, 0, sizeof *s);
    /* Kept prepared: a backfill reads and stores its state every batch. */
    sqlite3_stmt *st = dw__stmt(h, ST_BACKFILL_LOAD);
    if (!st)
        return h->errcode;
    sqlite3_bind_int64(st, 1, h->id);
    int rc = sqlite3_step(st);
    int oom = 0, result = DW_OK;
    if (rc == SQLITE_ROW) {
        result = bf_state_of(h, st, 0, &s->state);
        s->source = sqlite3_column_int(st, 1);
        s->cursor = column_dup(st, 2, &oom);
        s->end_key = column_dup(st, 3, &oom);
        if (result == DW_OK)
            result = counters_loaded(h, st, s);
        s->started = sqlite3_column_double(st, 9);
        s->updated = sqlite3_column_double(st, 10);
        s->runner_pid = sqlite3_column_int64(st, 11);
        const char *host = (const char *)sqlite3_column_text(st, 12);
        snprintf(s->runner_host, sizeof s->runner_host, "%s",
                 host ? host : "");
        rc = SQLITE_DONE;
    }
    if (rc != SQLITE_DONE)
        result = dw__sqlite_error(h, rc, DW_SIDE_NONE,
                                  "reading the backfill state");
    sqlite3_reset(st);
    if (result == DW_OK && oom)
        result = dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    if (result == DW_OK)
        result = cursor_ok(h, s);
    if (result != DW_OK)
        dw__backfill_state_free(s);
    return result;
}

int dw__sqlite_backfill_store(dw_migration *h, const dw_backfill_state *s)
{
    sqlite3_stmt *st = dw__stmt(h, ST_BACKFILL_STORE);
    if (!st)
        return h->errcode;
    sqlite3_bind_int64(st, 1, h->id);
    sqlite3_bind_int(st, 2, s->source);
    sqlite3_bind_text(st, 3, bf_state_names[s->state], -1, SQLITE_STATIC);
    if ((s->cursor && dw__bind_key_text(h, st, 4, s->cursor, DW_SIDE_NONE,
                                        "storing the backfill state")) ||
        (s->end_key && dw__bind_key_text(h, st, 5, s->end_key, DW_SIDE_NONE,
                                         "storing the backfill state")))
        return h->errcode;
    sqlite3_bind_int64(st, 6, s->rows_done);
    sqlite3_bind_int64(st, 7, s->rows_total);
    sqlite3_bind_int64(st, 8, s->rows_written);
    sqlite3_bind_int64(st, 9, s->rows_deleted);
    sqlite3_bind_int64(st, 10, s->batches);
    sqlite3_bind_double(st, 11, s->started);
    sqlite3_bind_double(st, 12, s->updated);
    sqlite3_bind_int64(st, 13, s->runner_pid);
    sqlite3_bind_text(st, 14, s->runner_host, -1, SQLITE_STATIC);
    return dw__run(h, st, DW_SIDE_NONE, "storing the backfill state") ==
                   SQLITE_OK
               ? DW_OK
               : h->errcode;
}

static void run_from_stmt(sqlite3_stmt *st, dw_verify_result *r)
{
    memset(r, 0, sizeof *r);
    r->run_id = sqlite3_column_int64(st, 0);
    r->started = sqlite3_column_double(st, 1);
    r->seconds = sqlite3_column_double(st, 2);
    r->full = sqlite3_column_int(st, 3);
    r->finished = sqlite3_column_int(st, 4);
    r->keys = sqlite3_column_int64(st, 5);
    r->missing = sqlite3_column_int64(st, 6);
    r->extra = sqlite3_column_int64(st, 7);
    r->different = sqlite3_column_int64(st, 8);
    r->clean = r->finished && !r->missing && !r->extra && !r->different;
}

#define RUN_COLUMNS                                                            \
    "id, started, coalesce(seconds, 0), full, finished, keys, missing, "       \
    "extra, different"

/* One run chosen by `where` (bound: ?1 the migration, ?2 a run id). */
static int load_run(dw_migration *h, const char *where, int64_t after,
                    dw_verify_result *r)
{
    sqlite3_stmt *st = NULL;
    dw_buf sql;
    dw_buf_init(&sql);
    dw_buf_printf(&sql,
                  "SELECT " RUN_COLUMNS " FROM dw_verify_runs WHERE "
                  "migration_id = ?1 AND id > ?2 %s ORDER BY id DESC LIMIT 1",
                  where);
    if (sql.oom) {
        dw_buf_free(&sql);
        return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    }
    int rc = prepare(h, sql.p, &st);
    dw_buf_free(&sql);
    if (rc != DW_OK)
        return rc;
    sqlite3_bind_int64(st, 1, h->id);
    sqlite3_bind_int64(st, 2, after);
    memset(r, 0, sizeof *r);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        run_from_stmt(st, r);
        rc = SQLITE_DONE;
    }
    int result = rc == SQLITE_DONE
                     ? DW_OK
                     : dw__sqlite_error(h, rc, DW_SIDE_NONE,
                                        "reading verification runs");
    sqlite3_finalize(st);
    return result;
}

/* Entering OFF or COMPLETE marks the backfill stale, so with no finished
 * backfill since, the latest of those entries says which model missed
 * writes: COMPLETE stops writing the old one. */
static int old_behind(dw_migration *h, int *behind)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(h,
                     "SELECT to_stage FROM dw_history WHERE migration_id = ?1 "
                     "AND event = 'stage' AND to_stage IN (0, 5) "
                     "ORDER BY id DESC LIMIT 1",
                     &st);
    if (rc != DW_OK)
        return rc;
    sqlite3_bind_int64(st, 1, h->id);
    rc = sqlite3_step(st);
    *behind = rc == SQLITE_ROW && sqlite3_column_int(st, 0) == DW_STAGE_COMPLETE;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE
               ? DW_OK
               : dw__sqlite_error(h, rc, DW_SIDE_NONE, "reading the history");
}

int dw__sqlite_gate_facts(dw_migration *h, dw_gate_facts *g)
{
    memset(g, 0, sizeof *g);
    sqlite3_stmt *st = NULL;
    int rc = prepare(h,
                     "SELECT state, verify_after FROM dw_backfill WHERE "
                     "migration_id = ?1",
                     &st);
    if (rc != DW_OK)
        return rc;
    sqlite3_bind_int64(st, 1, h->id);
    int64_t after = 0;
    rc = sqlite3_step(st);
    int result = DW_OK;
    if (rc == SQLITE_ROW) {
        state_row at = {"dw_backfill", "migration_id", h->id, NULL};
        result = bf_state_of(h, st, 0, &g->backfill);
        if (result == DW_OK)
            result = dw__column_int_in(h, st, 1, 0, INT64_MAX, &after, &at);
        rc = SQLITE_DONE;
    }
    if (rc != SQLITE_DONE)
        result = dw__sqlite_error(h, rc, DW_SIDE_NONE,
                                  "reading the backfill state");
    sqlite3_finalize(st);
    if (result != DW_OK)
        return result;
    if (g->backfill != DW_BF_DONE)
        return old_behind(h, &g->old_behind);
    return load_run(h, "AND full AND finished", after, &g->last);
}

int dw__sqlite_verify_start(dw_migration *h, int full, const char *from,
                            const char *to, dw_verify_result *r)
{
    /* Only the latest run's divergent keys are kept for repair. */
    sqlite3_stmt *st = NULL;
    int rc = prepare(h,
                     "DELETE FROM dw_verify_keys WHERE run_id IN (SELECT id "
                     "FROM dw_verify_runs WHERE migration_id = ?1)",
                     &st);
    if (rc != DW_OK)
        return rc;
    sqlite3_bind_int64(st, 1, h->id);
    if ((rc = run_once(h, st, "clearing old divergent keys")) != DW_OK)
        return rc;
    rc = prepare(h,
                 "INSERT INTO dw_verify_runs(migration_id, started, full, "
                 "range_from, range_to) VALUES(?1, ?2, ?3, ?4, ?5)",
                 &st);
    if (rc != DW_OK)
        return rc;
    memset(r, 0, sizeof *r);
    r->started = dw__wall_time();
    r->full = full;
    sqlite3_bind_int64(st, 1, h->id);
    sqlite3_bind_double(st, 2, r->started);
    sqlite3_bind_int(st, 3, full);
    if ((from && dw__bind_key_text(h, st, 4, from, DW_SIDE_NONE,
                                   "storing the verification run")) ||
        (to && dw__bind_key_text(h, st, 5, to, DW_SIDE_NONE,
                                 "storing the verification run"))) {
        sqlite3_finalize(st);
        return h->errcode;
    }
    if ((rc = run_once(h, st, "storing the verification run")) != DW_OK)
        return rc;
    r->run_id = sqlite3_last_insert_rowid(h->db);
    return DW_OK;
}

int dw__sqlite_verify_key(dw_migration *h, int64_t run, const char *key,
                          int kind, const char *detail)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(h,
                     "INSERT INTO dw_verify_keys(run_id, key, kind, detail) "
                     "VALUES(?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                     &st);
    if (rc != DW_OK)
        return rc;
    sqlite3_bind_int64(st, 1, run);
    if (dw__bind_key_text(h, st, 2, key, DW_SIDE_NONE,
                          "storing a divergent key")) {
        sqlite3_finalize(st);
        return h->errcode;
    }
    sqlite3_bind_int(st, 3, kind);
    if (detail)
        sqlite3_bind_text(st, 4, detail, -1, SQLITE_STATIC);
    return run_once(h, st, "storing a divergent key");
}

int dw__sqlite_verify_finish(dw_migration *h, const dw_verify_result *r)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(h,
                     "UPDATE dw_verify_runs SET seconds = ?2, finished = 1, "
                     "keys = ?3, missing = ?4, extra = ?5, different = ?6 "
                     "WHERE id = ?1",
                     &st);
    if (rc != DW_OK)
        return rc;
    sqlite3_bind_int64(st, 1, r->run_id);
    sqlite3_bind_double(st, 2, r->seconds);
    sqlite3_bind_int64(st, 3, r->keys);
    sqlite3_bind_int64(st, 4, r->missing);
    sqlite3_bind_int64(st, 5, r->extra);
    sqlite3_bind_int64(st, 6, r->different);
    return run_once(h, st, "storing the verification result");
}

int dw__sqlite_verify_last(dw_migration *h, dw_verify_result *r)
{
    return load_run(h, "", 0, r);
}

/* Lists key text in order after `after` from a query bound with the
 * migration (?1), the position (?2) and the limit (?3). */
static int list_keys(dw_migration *h, const char *sql, const char *after,
                     int limit, dw_keytext_fn fn, void *arg, const char *what)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(h, sql, &st);
    if (rc != DW_OK)
        return rc;
    sqlite3_bind_int64(st, 1, h->id);
    /* A NULL `after` would start the listing over from the first key. */
    if (after && dw__bind_key_text(h, st, 2, after, DW_SIDE_NONE, what)) {
        sqlite3_finalize(st);
        return h->errcode;
    }
    sqlite3_bind_int(st, 3, limit);
    int result = DW_OK;
    while (result == DW_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 0);
        result = key ? fn(h, key, arg)
                     : dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    }
    if (result == DW_OK && rc != SQLITE_DONE)
        result = dw__sqlite_error(h, rc, DW_SIDE_NONE, what);
    sqlite3_finalize(st);
    return result;
}

int dw__sqlite_divergent_list(dw_migration *h, const char *after, int limit,
                              dw_keytext_fn fn, void *arg)
{
    return list_keys(h,
                     "SELECT key FROM dw_verify_keys WHERE run_id = (SELECT "
                     "max(id) FROM dw_verify_runs WHERE migration_id = ?1) "
                     "AND NOT repaired AND (?2 IS NULL OR key > ?2) "
                     "ORDER BY key LIMIT ?3",
                     after, limit, fn, arg, "listing divergent keys");
}

int dw__sqlite_divergent_done(dw_migration *h, const char *key)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(h,
                     "UPDATE dw_verify_keys SET repaired = 1 WHERE run_id = "
                     "(SELECT max(id) FROM dw_verify_runs WHERE "
                     "migration_id = ?1) AND key = ?2",
                     &st);
    if (rc != DW_OK)
        return rc;
    sqlite3_bind_int64(st, 1, h->id);
    if (dw__bind_key_text(h, st, 2, key, DW_SIDE_NONE,
                          "marking a key repaired")) {
        sqlite3_finalize(st);
        return h->errcode;
    }
    return run_once(h, st, "marking a key repaired");
}

int dw__sqlite_queue_list(dw_migration *h, const char *after, int limit,
                          dw_keytext_fn fn, void *arg)
{
    return list_keys(h,
                     "SELECT key FROM dw_repair_queue WHERE migration_id = ?1 "
                     "AND (?2 IS NULL OR key > ?2) ORDER BY key LIMIT ?3",
                     after, limit, fn, arg, "listing the repair queue");
}

int dw__sqlite_queue_remove(dw_migration *h, const char *key)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(h,
                     "DELETE FROM dw_repair_queue WHERE migration_id = ?1 AND "
                     "key = ?2",
                     &st);
    if (rc != DW_OK)
        return rc;
    sqlite3_bind_int64(st, 1, h->id);
    if (dw__bind_key_text(h, st, 2, key, DW_SIDE_NONE,
                          "removing a key from the repair queue")) {
        sqlite3_finalize(st);
        return h->errcode;
    }
    return run_once(h, st, "removing a key from the repair queue");
}
