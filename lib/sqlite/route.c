/* The SQLite backend's key routing: stored overrides, the routing settings
 * and the cohort predicate, tested against one key's old row. */
#include <string.h>

#include "backend.h"

int dw__sqlite_override_get(dw_migration *h, const char *key, int *stage,
                            int *promoted)
{
    sqlite3_stmt *st = dw__stmt(h, ST_OVERRIDE_GET);
    if (!st)
        return h->errcode;
    sqlite3_bind_int64(st, 1, h->id);
    if (dw__bind_key_text(h, st, 2, key, DW_SIDE_NONE,
                          "reading the key's override"))
        return h->errcode;
    int rc = sqlite3_step(st), result;
    if (rc == SQLITE_ROW) {
        state_row at = {"dw_overrides", "migration_id", h->id, key};
        result = dw__column_stage(h, st, 0, stage, &at);
        if (promoted)
            *promoted = sqlite3_column_int(st, 1) != 0;
    } else if (rc == SQLITE_DONE) {
        result = DW_ENOTFOUND;
    } else {
        result = dw__sqlite_error(h, rc, DW_SIDE_NONE,
                                  "reading the key's override");
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return result;
}

int dw__sqlite_override_put(dw_migration *h, const char *key, int stage,
                            int promoted)
{
    sqlite3_stmt *st = dw__stmt(h, ST_OVERRIDE_PUT);
    if (!st)
        return h->errcode;
    sqlite3_bind_int64(st, 1, h->id);
    if (dw__bind_key_text(h, st, 2, key, DW_SIDE_NONE,
                          "storing the key's override"))
        return h->errcode;
    sqlite3_bind_int(st, 3, stage);
    sqlite3_bind_int(st, 4, promoted);
    sqlite3_bind_double(st, 5, dw__wall_time());
    return dw__run(h, st, DW_SIDE_NONE, "storing the key's override") ==
                   SQLITE_OK
               ? DW_OK
               : h->errcode;
}

int dw__sqlite_override_delete(dw_migration *h, const char *key, int *deleted)
{
    sqlite3_stmt *st = dw__stmt(h, ST_OVERRIDE_DELETE);
    if (!st)
        return h->errcode;
    sqlite3_bind_int64(st, 1, h->id);
    if (dw__bind_key_text(h, st, 2, key, DW_SIDE_NONE,
                          "removing the key's override"))
        return h->errcode;
    if (dw__run(h, st, DW_SIDE_NONE, "removing the key's override") !=
        SQLITE_OK)
        return h->errcode;
    *deleted = sqlite3_changes(h->db) > 0;
    return DW_OK;
}

int dw__sqlite_override_list(dw_migration *h, dw_override_fn fn,
                             void *payload)
{
    sqlite3_stmt *st = dw__stmt(h, ST_OVERRIDE_LIST);
    if (!st)
        return h->errcode;
    sqlite3_bind_int64(st, 1, h->id);
    int rc;
    int result = DW_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        dw_override_entry e;
        e.key = (const char *)sqlite3_column_text(st, 0);
        if (!e.key) {
            rc = SQLITE_NOMEM;
            break;
        }
        state_row at = {"dw_overrides", "migration_id", h->id, e.key};
        if ((result = dw__column_stage(h, st, 1, &e.stage, &at)) != DW_OK)
            break;
        e.promoted = sqlite3_column_int(st, 2) != 0;
        e.time = sqlite3_column_double(st, 3);
        if (fn(&e, payload)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (result != DW_OK) {
        sqlite3_reset(st);
        return result;
    }
    return dw__end_listing(h, st, rc, "listing the overrides");
}

int dw__sqlite_override_stats(dw_migration *h, int64_t by_stage[6],
                              int64_t *promoted)
{
    sqlite3_stmt *st = dw__stmt(h, ST_OVERRIDE_STATS);
    if (!st)
        return h->errcode;
    memset(by_stage, 0, 6 * sizeof *by_stage);
    *promoted = 0;
    sqlite3_bind_int64(st, 1, h->id);
    int rc;
    int result = DW_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        state_row at = {"dw_overrides", "migration_id", h->id, NULL};
        int stage;
        if ((result = dw__column_stage(h, st, 0, &stage, &at)) != DW_OK)
            break;
        by_stage[stage] = sqlite3_column_int64(st, 1);
        *promoted += sqlite3_column_int64(st, 2);
    }
    if (result != DW_OK) {
        sqlite3_reset(st);
        return result;
    }
    return dw__end_listing(h, st, rc, "counting the overrides");
}

int dw__sqlite_overrides_bump(dw_migration *h, int64_t delta)
{
    sqlite3_stmt *st = dw__stmt(h, ST_OVERRIDES_BUMP);
    if (!st)
        return h->errcode;
    sqlite3_bind_int64(st, 1, h->id);
    sqlite3_bind_int64(st, 2, delta);
    return dw__run(h, st, DW_SIDE_NONE, "counting the overrides") ==
                   SQLITE_OK
               ? DW_OK
               : h->errcode;
}

int dw__sqlite_routing_store(dw_migration *h, const dw_route_state *r)
{
    sqlite3_stmt *st = dw__stmt(h, ST_ROUTING_STORE);
    if (!st)
        return h->errcode;
    sqlite3_bind_int64(st, 1, h->id);
    sqlite3_bind_int(st, 2, r->buckets);
    sqlite3_bind_int(st, 3, r->canary_stage);
    if (r->cohort)
        sqlite3_bind_text(st, 4, r->cohort, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 4);
    sqlite3_bind_int(st, 5, r->promote_stage);
    sqlite3_bind_double(st, 6, dw__wall_time());
    return dw__run(h, st, DW_SIDE_NONE, "storing the routing settings") ==
                   SQLITE_OK
               ? DW_OK
               : h->errcode;
}

/* SELECT 1 FROM old WHERE [key = ?1 AND ...] (pred). The predicate ends a
 * line before the closing parenthesis, so a trailing -- comment in it
 * cannot swallow what follows; dw_sql_balanced() keeps it from closing the
 * parenthesis itself. */
static char *cohort_sql(dw_migration *h, const char *pred, int keyed)
{
    const dw_side_def *d = &h->spec.side[DW_SIDE_OLD];
    dw_buf b;
    dw_buf_init(&b);
    dw_buf_puts(&b, "SELECT 1 FROM ");
    dw_buf_table(&b, d->table);
    dw_buf_puts(&b, " WHERE ");
    for (int i = 0; keyed && i < d->nkey; i++) {
        dw_buf_ident(&b, d->key[i]);
        dw_buf_printf(&b, " = ?%d AND ", i + 1);
    }
    dw_buf_sql_in(&b, "(", pred, "\n)");
    if (keyed)
        dw_buf_puts(&b, " LIMIT 1");
    return dw_buf_take(&b);
}

static int only_space(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
            return 0;
    return 1;
}

/* Prepares the unkeyed (keyed = 0) or keyed form and checks its shape:
 * one read-only statement with only the key's parameters. */
static int cohort_form_ok(dw_migration *h, const char *pred, int keyed)
{
    char *sql = cohort_sql(h, pred, keyed);
    if (!sql)
        return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    int rc = dw__prepare(h, sql, &st, &tail);
    int want = keyed ? h->spec.side[DW_SIDE_OLD].nkey : 0;
    int result = DW_OK;
    if (rc != SQLITE_OK)
        result = dw__error(h, rc == SQLITE_NOMEM ? DW_ENOMEM : DW_EMISUSE,
                           DW_SIDE_OLD,
                           "the cohort predicate does not compile as an "
                           "expression over table \"%s\": %s",
                           h->spec.side[DW_SIDE_OLD].table,
                           sqlite3_errmsg(h->db));
    else if (!st || (tail && !only_space(tail)))
        result = dw__error(h, DW_EMISUSE, DW_SIDE_OLD,
                           "the cohort predicate must be one expression, "
                           "not statements");
    else if (!sqlite3_stmt_readonly(st))
        result = dw__error(h, DW_EMISUSE, DW_SIDE_OLD,
                           "the cohort predicate must only read");
    else if (sqlite3_bind_parameter_count(st) != want)
        result = dw__error(h, DW_EMISUSE, DW_SIDE_OLD,
                           "the cohort predicate must not have parameters");
    sqlite3_finalize(st);
    dw__free(sql);
    return result;
}

/* Whether a call is to a date and time function reading the clock: given
 * 'now', or no time value at all, which means now (strftime's first
 * argument is its format). */
static int reads_clock(const char *name, size_t n, const char *args)
{
    static const char *const names[] = {"strftime", "date",     "time",
                                        "datetime", "julianday", "unixepoch",
                                        "timediff"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (n == strlen(names[i]) &&
            sqlite3_strnicmp(name, names[i], (int)n) == 0) {
            int now, count = dw_sql_call_args(args, "now", &now);
            return now || count < (i == 0 ? 2 : 1);
        }
    return 0;
}

typedef struct call_check {
    dw_migration *h;
    sqlite3_stmt *st;
    int rc;
} call_check;

/* Refuses a call to a function that SQLite does not know as
 * deterministic (every overload of it): random(), changes(),
 * current_timestamp, an application function registered without
 * SQLITE_DETERMINISTIC; and a date or time function given 'now' or no
 * time value. Names that are no function (IN, CAST) pass. */
static int deterministic_call(const char *name, size_t n, const char *args,
                              void *arg)
{
    call_check *c = arg;
    sqlite3_bind_text(c->st, 1, name, (int)n, SQLITE_STATIC);
    int rc = sqlite3_step(c->st);
    int known = rc == SQLITE_ROW && sqlite3_column_int(c->st, 0) > 0;
    int deterministic = rc == SQLITE_ROW && sqlite3_column_int(c->st, 1);
    sqlite3_reset(c->st);
    if (rc != SQLITE_ROW)
        c->rc = dw__sqlite_error(c->h, rc, DW_SIDE_OLD,
                                 "looking up the cohort's functions");
    else if (known && !deterministic)
        c->rc = dw__error(c->h, DW_EMISUSE, DW_SIDE_OLD,
                          "the cohort predicate calls %.*s(), which is not "
                          "deterministic; a cohort must depend on the old "
                          "row alone",
                          (int)n, name);
    else if (reads_clock(name, n, args))
        c->rc = dw__error(c->h, DW_EMISUSE, DW_SIDE_OLD,
                          "the cohort predicate calls %.*s('now') (given, "
                          "or meant by a missing time value), which is the "
                          "time, not the row; a cohort must depend on the "
                          "old row alone",
                          (int)n, name);
    return c->rc != DW_OK;
}

static int cohort_deterministic(dw_migration *h, const char *pred)
{
    call_check c = {h, NULL, DW_OK};
    if (dw__prepare(h,
                    "SELECT count(*), coalesce(min(flags & ?2), 0) FROM "
                    "pragma_function_list WHERE name = ?1 COLLATE NOCASE",
                    &c.st, NULL) != SQLITE_OK) {
        sqlite3_finalize(c.st);
        return dw__sqlite_error(h, sqlite3_errcode(h->db), DW_SIDE_OLD,
                                "looking up the cohort's functions");
    }
    sqlite3_bind_int(c.st, 2, SQLITE_DETERMINISTIC);
    dw_sql_each_call(pred, deterministic_call, &c);
    sqlite3_finalize(c.st);
    return c.rc;
}

/* The checks on the predicate's text, given or stored: one expression, no
 * subquery, deterministic calls. */
static int cohort_text_ok(dw_migration *h, const char *pred)
{
    if (!dw_sql_balanced(pred))
        return dw__error(h, DW_EMISUSE, DW_SIDE_OLD,
                         "the cohort predicate must be one expression: its "
                         "parentheses do not balance, a quote or comment is "
                         "not closed, or it has a ';'");
    /* Membership must follow the row alone: a subquery could read rows
     * that change without a write to this key, moving it unsynced. */
    if (dw_sql_has_word(pred, "SELECT"))
        return dw__error(h, DW_EMISUSE, DW_SIDE_OLD,
                         "the cohort predicate must depend on the old row "
                         "alone: no subqueries");
    return cohort_deterministic(h, pred);
}

int dw__sqlite_cohort_check(dw_migration *h, const char *pred)
{
    int rc = cohort_text_ok(h, pred);
    if (rc == DW_OK)
        rc = cohort_form_ok(h, pred, 0);
    return rc == DW_OK ? cohort_form_ok(h, pred, 1) : rc;
}

/* A stored predicate that dw_routing_set() refuses was written by a hand:
 * h's refusal, told as damage. */
static sqlite3_stmt *stored_cohort_refused(dw_migration *h)
{
    if (h->errcode != DW_EMISUSE)
        return NULL;
    /* Without its message, the refusal lacked memory. */
    char *why = h->errmsg ? sqlite3_mprintf("%s", h->errmsg) : NULL;
    state_row at = {"dw_migrations", "id", h->id, NULL};
    if (why)
        dw__damaged(h, &at,
                    "column canary_cohort holds a predicate dw_routing_set() "
                    "refuses (%s)",
                    why);
    else
        dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    sqlite3_free(why);
    return NULL;
}

/* The keyed cohort statement for the stored predicate, rebuilt (its text
 * checked again) when it changed. */
static sqlite3_stmt *cohort_stmt(dw_migration *h, const char *pred)
{
    sqlite_backend *bk = BK(h);
    if (bk->cohort && bk->cohort_pred && strcmp(bk->cohort_pred, pred) == 0)
        return bk->cohort;
    sqlite3_finalize(bk->cohort);
    bk->cohort = NULL;
    dw__free(bk->cohort_pred);
    bk->cohort_pred = NULL;
    if (cohort_text_ok(h, pred) != DW_OK)
        return stored_cohort_refused(h);
    bk->cohort_pred = dw__strdup(pred);
    char *sql = cohort_sql(h, pred, 1);
    if (!bk->cohort_pred || !sql) {
        dw__free(sql);
        dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
        return NULL;
    }
    int rc = dw__prepare(h, sql, &bk->cohort, NULL);
    dw__free(sql);
    if (rc != SQLITE_OK) {
        dw__sqlite_error(h, rc, DW_SIDE_OLD,
                         "preparing the stored cohort predicate");
        sqlite3_finalize(bk->cohort);
        bk->cohort = NULL;
    }
    return bk->cohort;
}

int dw__sqlite_cohort_member(dw_migration *h, const char *pred,
                             const dw_value *key, int *member)
{
    sqlite3_stmt *st = cohort_stmt(h, pred);
    if (!st)
        return h->errcode;
    int nkey = h->spec.side[DW_SIDE_OLD].nkey;
    int rc = dw__bind_key(st, key, nkey);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    *member = rc == SQLITE_ROW;
    int result = rc == SQLITE_ROW || rc == SQLITE_DONE
                     ? DW_OK
                     : dw__sqlite_error(h, rc, DW_SIDE_OLD,
                                        "testing the cohort predicate");
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return result;
}
