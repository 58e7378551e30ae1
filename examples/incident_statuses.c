/*
 * incident_statuses.c -- the worked example of libdualwrite.
 *
 * An incident tracker keeps its data in one SQLite file. Version 1 of its
 * schema stores each incident's status as text in incidents.status, and the
 * code only knows four values: investigating, identified, monitoring and
 * resolved. Customers now want statuses of their own, per organisation. The
 * new model is a table incident_statuses (one row per organisation and status
 * name) and a column incidents.incident_status_id that points into it.
 *
 * This program moves the tracker from the old model to the new one without
 * stopping it, one reversible stage at a time:
 *
 *   1. schema v1 and some data;
 *   2. expand: add the new column and table, create every organisation's
 *      default statuses, open the migration (stage OFF);
 *   3. DUAL_WRITE: every write of the data access layer goes to both models;
 *   4. copy the incidents that existed before dual writing began;
 *   5. SHADOW: reads still trust the old model but also read and compare
 *      the new one -- a deliberate divergence is caught, logged and repaired;
 *   6. LIVE: reads trust the new model; a flip back to SHADOW and forward;
 *   7. RAMPDOWN and COMPLETE: the old column stops being written.
 *
 * The application talks to its data through a small DAO (dao_...). Only the
 * DAO calls dw_write() and dw_read(); the story in main() calls the DAO, plus
 * what an operator would do by hand: move the stage, run the copy, inspect
 * the tables.
 *
 * Run it with `make demo`, or: incident_statuses [DATABASE-FILE]
 * (default incident_statuses.db; the file must not hold an incident tracker
 * already).
 *
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include <dualwrite.h>

/* ------------------------------------------------------------------------ */
/* Failing loudly                                                            */
/* ------------------------------------------------------------------------ */

static void die(const char *what, const char *why)
{
    fprintf(stderr, "incident_statuses: %s: %s\n", what, why);
    exit(EXIT_FAILURE);
}

/* Exits unless a dw_ call returned DW_OK, naming the call and the reason. */
static void check_dw(const dw_migration *h, int rc, const char *what)
{
    if (rc != DW_OK) {
        fprintf(stderr, "incident_statuses: %s: %s: %s\n", what,
                dw_errstr(rc), dw_errmsg(h));
        exit(EXIT_FAILURE);
    }
}

/* Runs SQL without parameters (schema changes, BEGIN/COMMIT). */
static void exec_sql(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        die(sql, err ? err : sqlite3_errmsg(db));
}

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK)
        die(sql, sqlite3_errmsg(db));
    return stmt;
}

/* The first column of a one-row query that takes no values. */
static long long query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *stmt = prepare(db, sql);
    long long value;
    if (sqlite3_step(stmt) != SQLITE_ROW)
        die(sql, sqlite3_errmsg(db));
    value = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return value;
}

/* ------------------------------------------------------------------------ */
/* The data access layer                                                     */
/* ------------------------------------------------------------------------ */

typedef struct incident {
    long long id;
    char title[64];
    char status[32];
} incident;

typedef struct dao {
    sqlite3 *db;
    dw_migration *mig;
    dw_row *row;        /* reused by dao_get_incident() */
    char why[160];      /* the DAO's own reason for its last failure */
} dao;

/* What dao_set_status() hands its two write callbacks. */
typedef struct set_status_args {
    dao *d;
    const char *status;
} set_status_args;

/* Old model: the status is text in incidents.status. */
static int write_status_old(sqlite3 *db, const dw_value *key, int nkey,
                            void *payload)
{
    set_status_args *a = payload;
    sqlite3_stmt *stmt;
    int rc;

    (void)nkey;
    rc = sqlite3_prepare_v2(db,
                            "UPDATE incidents SET status = ?1 WHERE id = ?2",
                            -1, &stmt, NULL);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_bind_text(stmt, 1, a->status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, key[0].i);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return rc;
    if (sqlite3_changes(db) != 1) {
        snprintf(a->d->why, sizeof a->d->why, "no incident %lld",
                 (long long)key[0].i);
        return -1;
    }
    return 0;
}

/* New model: incidents.incident_status_id points at the organisation's
 * status of that name. Refuses a name the organisation does not have. */
static int write_status_new(sqlite3 *db, const dw_value *key, int nkey,
                            void *payload)
{
    set_status_args *a = payload;
    sqlite3_stmt *stmt;
    int rc;

    (void)nkey;
    rc = sqlite3_prepare_v2(
        db,
        "UPDATE incidents SET incident_status_id ="
        " (SELECT s.id FROM incident_statuses s"
        "   WHERE s.organisation_id = incidents.organisation_id"
        "     AND s.name = ?1)"
        " WHERE id = ?2 AND EXISTS"
        " (SELECT 1 FROM incident_statuses s"
        "   WHERE s.organisation_id = incidents.organisation_id"
        "     AND s.name = ?1)",
        -1, &stmt, NULL);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_bind_text(stmt, 1, a->status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, key[0].i);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return rc;
    if (sqlite3_changes(db) != 1) {
        snprintf(a->d->why, sizeof a->d->why,
                 "incident %lld's organisation has no status '%s'",
                 (long long)key[0].i, a->status);
        return -1;
    }
    return 0;
}

/* Sets an incident's status. The migration decides which model is written
 * first and whether the other is written too; both writes or neither. */
static int dao_set_status(dao *d, long long incident_id, const char *status)
{
    set_status_args a;
    dw_value key = dw_int(incident_id);

    a.d = d;
    a.status = status;
    d->why[0] = '\0';
    return dw_write(d->mig, &key, 1, write_status_old, write_status_new, &a);
}

/* Both reads return one shape: the columns "title" and "status". */
static int read_row(dw_row *out, sqlite3 *db, const char *sql,
                    const dw_value *key)
{
    sqlite3_stmt *stmt;
    int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_bind_int64(stmt, 1, key[0].i);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        rc = dw_row_set_columns(out, stmt);
    else if (rc == SQLITE_DONE)
        rc = DW_ENOTFOUND;
    sqlite3_finalize(stmt);
    return rc;
}

static int read_incident_old(dw_row *out, sqlite3 *db, const dw_value *key,
                             int nkey, void *payload)
{
    (void)nkey;
    (void)payload;
    return read_row(out, db,
                    "SELECT title, status FROM incidents WHERE id = ?1", key);
}

static int read_incident_new(dw_row *out, sqlite3 *db, const dw_value *key,
                             int nkey, void *payload)
{
    (void)nkey;
    (void)payload;
    return read_row(out, db,
                    "SELECT i.title AS title, s.name AS status"
                    " FROM incidents i"
                    " LEFT JOIN incident_statuses s"
                    "   ON s.id = i.incident_status_id"
                    " WHERE i.id = ?1",
                    key);
}

static void copy_text(char *dst, size_t size, const dw_value *v)
{
    snprintf(dst, size, "%s",
             v != NULL && v->type == DW_TYPE_TEXT ? (const char *)v->p
                                                  : "(none)");
}

/* Reads one incident from the model the stage trusts; at SHADOW and LIVE
 * the library also reads the other model and compares. */
static int dao_get_incident(dao *d, long long incident_id, incident *out)
{
    dw_value key = dw_int(incident_id);
    int rc = dw_read(d->row, d->mig, &key, 1, read_incident_old,
                     read_incident_new, NULL);
    if (rc != DW_OK)
        return rc;
    out->id = incident_id;
    copy_text(out->title, sizeof out->title, dw_row_get(d->row, "title"));
    copy_text(out->status, sizeof out->status, dw_row_get(d->row, "status"));
    return DW_OK;
}

typedef void (*incident_fn)(const incident *inc, void *payload);

/* Lists incidents with a given status, from the model the stage trusts: the
 * old column up to SHADOW, the new join from LIVE on. *model says which. */
static int dao_list_by_status(dao *d, const char *status, incident_fn fn,
                              void *payload, const char **model)
{
    static const char old_sql[] =
        "SELECT id, title, status FROM incidents"
        " WHERE status = ?1 ORDER BY id";
    static const char new_sql[] =
        "SELECT i.id, i.title, s.name FROM incidents i"
        " JOIN incident_statuses s ON s.id = i.incident_status_id"
        " WHERE s.name = ?1 ORDER BY i.id";
    sqlite3_stmt *stmt;
    int stage, rc;

    rc = dw_stage_get(&stage, d->mig);
    if (rc != DW_OK)
        return rc;
    *model = stage >= DW_STAGE_LIVE ? "new model (join)"
                                    : "old model (status column)";
    stmt = prepare(d->db, stage >= DW_STAGE_LIVE ? new_sql : old_sql);
    sqlite3_bind_text(stmt, 1, status, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        incident inc;
        inc.id = sqlite3_column_int64(stmt, 0);
        snprintf(inc.title, sizeof inc.title, "%s",
                 (const char *)sqlite3_column_text(stmt, 1));
        snprintf(inc.status, sizeof inc.status, "%s",
                 (const char *)sqlite3_column_text(stmt, 2));
        fn(&inc, payload);
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        die("listing incidents", sqlite3_errmsg(d->db));
    return DW_OK;
}

/* incident_statuses itself is not part of the migration: it is new, only
 * the new model uses it, and plain SQL writes it. */
static void dao_add_status(dao *d, long long organisation_id,
                           const char *name, const char *category)
{
    sqlite3_stmt *stmt = prepare(
        d->db, "INSERT INTO incident_statuses (organisation_id, name, category)"
               " VALUES (?1, ?2, ?3)");
    sqlite3_bind_int64(stmt, 1, organisation_id);
    sqlite3_bind_text(stmt, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, category, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE)
        die("adding a status", sqlite3_errmsg(d->db));
    sqlite3_finalize(stmt);
}

/* ------------------------------------------------------------------------ */
/* Schema v1 and its data                                                    */
/* ------------------------------------------------------------------------ */

static const char *const organisations[] = {"Acme", "Globex", "Initech"};

static const struct {
    int organisation_id;
    const char *title;
    const char *status;
} seed_incidents[] = {
    {1, "Checkout returns 502", "resolved"},
    {2, "Login emails delayed", "resolved"},
    {3, "Reports export times out", "monitoring"},
    {1, "Search results stale", "investigating"},
    {2, "API rate limiter too strict", "resolved"},
    {3, "Dashboard charts blank", "identified"},
    {1, "Card payments declined in EU", "investigating"},
    {2, "Webhook retries stuck", "identified"},
    {3, "Password reset link expired", "monitoring"},
    {1, "Mobile app crashes on launch", "resolved"},
    {2, "Invoice PDFs missing logo", "resolved"},
    {3, "SSO redirect loop", "monitoring"},
    {1, "Inventory counts drift", "identified"},
    {2, "Queue backlog growing", "investigating"},
    {3, "CSV import rejects UTF-8", "resolved"},
    {1, "Status page not updating", "monitoring"},
    {2, "Audit log gaps", "identified"},
    {3, "Slow first page load", "investigating"},
    {1, "Push notifications duplicated", "resolved"},
    {2, "Nightly backups late", "monitoring"},
};

#define NINCIDENTS ((int)(sizeof seed_incidents / sizeof seed_incidents[0]))

static void create_schema_v1(sqlite3 *db)
{
    sqlite3_stmt *stmt;
    size_t i;

    exec_sql(db, "BEGIN");
    exec_sql(db,
             "CREATE TABLE organisations ("
             "  id INTEGER PRIMARY KEY,"
             "  name TEXT NOT NULL);"
             "CREATE TABLE incidents ("
             "  id INTEGER PRIMARY KEY,"
             "  organisation_id INTEGER NOT NULL REFERENCES organisations(id),"
             "  title TEXT NOT NULL,"
             "  status TEXT NOT NULL)");
    stmt = prepare(db, "INSERT INTO organisations (name) VALUES (?1)");
    for (i = 0; i < sizeof organisations / sizeof organisations[0]; i++) {
        sqlite3_bind_text(stmt, 1, organisations[i], -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) != SQLITE_DONE)
            die("seeding organisations", sqlite3_errmsg(db));
        sqlite3_reset(stmt);
    }
    sqlite3_finalize(stmt);
    stmt = prepare(db, "INSERT INTO incidents (organisation_id, title, status)"
                       " VALUES (?1, ?2, ?3)");
    for (i = 0; i < (size_t)NINCIDENTS; i++) {
        sqlite3_bind_int(stmt, 1, seed_incidents[i].organisation_id);
        sqlite3_bind_text(stmt, 2, seed_incidents[i].title, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 3, seed_incidents[i].status, -1,
                          SQLITE_STATIC);
        if (sqlite3_step(stmt) != SQLITE_DONE)
            die("seeding incidents", sqlite3_errmsg(db));
        sqlite3_reset(stmt);
    }
    sqlite3_finalize(stmt);
    exec_sql(db, "COMMIT");
}

/* Expand: the new model beside the old one. Nothing reads it yet. */
static void expand_schema(sqlite3 *db)
{
    exec_sql(db, "BEGIN");
    exec_sql(db,
             "CREATE TABLE incident_statuses ("
             "  id INTEGER PRIMARY KEY,"
             "  organisation_id INTEGER NOT NULL REFERENCES organisations(id),"
             "  name TEXT NOT NULL,"
             "  category TEXT NOT NULL,"
             "  UNIQUE (organisation_id, name));"
             "ALTER TABLE incidents ADD COLUMN"
             "  incident_status_id INTEGER REFERENCES incident_statuses(id)");
    exec_sql(db, "COMMIT");
}

/* The dependent data: every organisation gets the four statuses the old
 * code hard-wired. Safe to run again: it only adds what is missing. */
static int create_default_statuses(sqlite3 *db)
{
    sqlite3_stmt *stmt = prepare(
        db,
        "WITH defaults (pos, name, category) AS (VALUES"
        "  (1, 'investigating', 'open'), (2, 'identified', 'open'),"
        "  (3, 'monitoring', 'open'), (4, 'resolved', 'closed'))"
        " INSERT INTO incident_statuses (organisation_id, name, category)"
        " SELECT o.id, d.name, d.category FROM organisations o, defaults d"
        " WHERE NOT EXISTS (SELECT 1 FROM incident_statuses s"
        "   WHERE s.organisation_id = o.id AND s.name = d.name)"
        " ORDER BY o.id, d.pos");
    if (sqlite3_step(stmt) != SQLITE_DONE)
        die("creating default statuses", sqlite3_errmsg(db));
    sqlite3_finalize(stmt);
    return sqlite3_changes(db);
}

/* ------------------------------------------------------------------------ */
/* The migration                                                             */
/* ------------------------------------------------------------------------ */

static dw_migration *open_migration(sqlite3 *db)
{
    static const char *const key[] = {"id"};
    static const char *const old_columns[] = {"status"};
    static const char *const new_columns[] = {"incident_status_id"};
    /* Old row to new row, and back; both run inside SQLite. */
    static const dw_column_map up[] = {
        {"incident_status_id",
         "(SELECT s.id FROM incident_statuses s"
         "  WHERE s.organisation_id = incidents.organisation_id"
         "    AND s.name = incidents.status)"}};
    static const dw_column_map down[] = {
        {"status", "(SELECT s.name FROM incident_statuses s"
                   "  WHERE s.id = incidents.incident_status_id)"}};
    dw_options opts = DW_OPTIONS_INIT;
    dw_migration *h = NULL;
    char *err = NULL;
    int rc;

    opts.name = "incident_statuses";
    opts.old_side.table = "incidents";
    opts.old_side.key_columns = key;
    opts.old_side.nkey_columns = 1;
    opts.old_side.columns = old_columns;
    opts.old_side.ncolumns = 1;
    opts.new_side.table = "incidents";
    opts.new_side.key_columns = key;
    opts.new_side.nkey_columns = 1;
    opts.new_side.columns = new_columns;
    opts.new_side.ncolumns = 1;
    opts.up = up;
    opts.nup = 1;
    opts.down = down;
    opts.ndown = 1;
    opts.reason = "customisable statuses per organisation";
    rc = dw_open(&h, db, &opts, &err);
    if (rc != DW_OK) {
        fprintf(stderr, "incident_statuses: dw_open: %s: %s\n", dw_errstr(rc),
                err ? err : "(no message)");
        sqlite3_free(err);
        exit(EXIT_FAILURE);
    }
    return h;
}

/* ------------------------------------------------------------------------ */
/* Operator actions and printing                                             */
/* ------------------------------------------------------------------------ */

static void section(const char *title)
{
    printf("\n== %s\n", title);
}

static void move_stage(dw_migration *h, int to, const char *reason)
{
    int from;
    check_dw(h, dw_stage_get(&from, h), "dw_stage_get");
    check_dw(h, dw_stage_set(h, to, reason, 0), "dw_stage_set");
    printf("  stage %s -> %s (\"%s\")\n", dw_stage_name(from),
           dw_stage_name(to), reason);
}

/* Shows both models of one incident, straight from the table. */
static void show_both_models(sqlite3 *db, long long incident_id)
{
    sqlite3_stmt *stmt = prepare(
        db, "SELECT i.status, i.incident_status_id, s.name FROM incidents i"
            " LEFT JOIN incident_statuses s ON s.id = i.incident_status_id"
            " WHERE i.id = ?1");
    sqlite3_bind_int64(stmt, 1, incident_id);
    if (sqlite3_step(stmt) != SQLITE_ROW)
        die("inspecting an incident", sqlite3_errmsg(db));
    if (sqlite3_column_type(stmt, 1) == SQLITE_NULL)
        printf("    row: status = '%s', incident_status_id = NULL\n",
               (const char *)sqlite3_column_text(stmt, 0));
    else
        printf("    row: status = '%s', incident_status_id = %lld"
               " ('%s')\n",
               (const char *)sqlite3_column_text(stmt, 0),
               (long long)sqlite3_column_int64(stmt, 1),
               (const char *)sqlite3_column_text(stmt, 2));
    sqlite3_finalize(stmt);
}

static long long count_new_model_rows(sqlite3 *db)
{
    return query_int(db, "SELECT count(*) FROM incidents"
                         " WHERE incident_status_id IS NOT NULL");
}

static dw_metrics metrics_of(const dw_migration *h)
{
    dw_metrics m;
    memset(&m, 0, sizeof m);
    m.version = DW_METRICS_VERSION;
    check_dw(h, dw_metrics_get(&m, h), "dw_metrics_get");
    return m;
}

static void print_metrics(const dw_migration *h)
{
    dw_metrics m = metrics_of(h);
    printf("  metrics: %llu reads, %llu compared, %llu matched,"
           " %llu mismatched\n",
           (unsigned long long)m.reads, (unsigned long long)m.comparisons,
           (unsigned long long)m.matches, (unsigned long long)m.mismatches);
}

static const char *mismatch_kind_name(int kind)
{
    switch (kind) {
    case DW_MISMATCH_MISSING_NEW: return "missing in the new model";
    case DW_MISMATCH_EXTRA_NEW: return "only in the new model";
    case DW_MISMATCH_DIFFERENT: return "values differ";
    default: return "unknown kind";
    }
}

static int print_mismatch(const dw_mismatch_entry *e, void *payload)
{
    (void)payload;
    printf("  mismatch log: key %s, %s, seen %lld time%s\n", e->key,
           mismatch_kind_name(e->kind), (long long)e->count,
           e->count == 1 ? "" : "s");
    printf("    %s\n", e->detail);
    return 0;
}

static int print_history(const dw_history_entry *e, void *payload)
{
    time_t seconds = (time_t)e->time;
    int millis = (int)((e->time - (double)seconds) * 1000.0);
    char when[32];
    struct tm *tm = gmtime(&seconds);

    (void)payload;
    if (tm == NULL || strftime(when, sizeof when, "%H:%M:%S", tm) == 0)
        snprintf(when, sizeof when, "?");
    if (strcmp(e->event, "stage") == 0)
        printf("  %s.%03d  %-10s -> %-10s %s%s\n", when, millis,
               dw_stage_name(e->from_stage), dw_stage_name(e->to_stage),
               e->forced ? "(forced) " : "", e->reason ? e->reason : "");
    else
        printf("  %s.%03d  %-24s %s\n", when, millis, e->event,
               e->reason ? e->reason : "");
    return 0;
}

/* Collects "#4, #6, ..." from dao_list_by_status(). */
typedef struct id_list {
    char text[256];
    size_t len;
} id_list;

static void collect_id(const incident *inc, void *payload)
{
    id_list *l = payload;
    int n = snprintf(l->text + l->len, sizeof l->text - l->len, "%s#%lld",
                     l->len ? ", " : "", inc->id);
    if (n > 0 && (size_t)n < sizeof l->text - l->len)
        l->len += (size_t)n;
}

static void list_status(dao *d, const char *status)
{
    id_list l;
    const char *model;
    memset(&l, 0, sizeof l);
    check_dw(d->mig, dao_list_by_status(d, status, collect_id, &l, &model),
             "dao_list_by_status");
    printf("  list '%s' from the %s: %s\n", status, model,
           l.len ? l.text : "none");
}

static const char *side_name(int side)
{
    return side == DW_SIDE_OLD ? "old" : side == DW_SIDE_NEW ? "new" : "no";
}

/* Reads every incident through the DAO, as traffic would. */
static void read_all(dao *d)
{
    int id;
    for (id = 1; id <= NINCIDENTS; id++) {
        incident inc;
        check_dw(d->mig, dao_get_incident(d, id, &inc), "dao_get_incident");
    }
}

static void set_status_or_die(dao *d, long long id, const char *status)
{
    int rc = dao_set_status(d, id, status);
    if (rc != DW_OK) {
        fprintf(stderr,
                "incident_statuses: dao_set_status(%lld, %s): %s: %s%s%s\n",
                id, status, dw_errstr(rc), dw_errmsg(d->mig),
                d->why[0] ? "; " : "", d->why);
        exit(EXIT_FAILURE);
    }
}

/* ------------------------------------------------------------------------ */
/* The story                                                                 */
/* ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "incident_statuses.db";
    sqlite3 *db = NULL;
    dao d;
    incident inc;
    dw_value key;
    long long ids[NINCIDENTS];
    int stage, i, n, rc;
    dw_metrics before, after;

    memset(&d, 0, sizeof d);
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die(path, sqlite3_errmsg(db));
    sqlite3_busy_timeout(db, 5000);
    if (query_int(db,
                  "SELECT count(*) FROM sqlite_master"
                  " WHERE type = 'table' AND name = 'incidents'") != 0)
        die(path, "already holds an incident tracker; remove it or name"
                  " another file");

    printf("libdualwrite %s -- customisable incident statuses, without"
           " downtime\n", dw_version());
    printf("database: %s\n", path);

    /* 1 ----------------------------------------------------------------- */
    section("1. Schema v1: the status is hard-coded text");
    create_schema_v1(db);
    printf("  %d organisations, %d incidents\n",
           (int)(sizeof organisations / sizeof organisations[0]), NINCIDENTS);
    printf("  incidents.status is one of: investigating, identified,"
           " monitoring, resolved\n");

    /* 2 ----------------------------------------------------------------- */
    section("2. Expand: the new model beside the old one");
    expand_schema(db);
    printf("  added table incident_statuses and column"
           " incidents.incident_status_id\n");
    n = create_default_statuses(db);
    printf("  created %d default statuses (4 per organisation)\n", n);
    n = create_default_statuses(db);
    printf("  ran it again: %d more (safe to re-run)\n", n);
    d.db = db;
    d.mig = open_migration(db);
    check_dw(d.mig, dw_row_new(&d.row), "dw_row_new");
    check_dw(d.mig, dw_stage_get(&stage, d.mig), "dw_stage_get");
    printf("  opened migration \"%s\" at stage %s (nothing changes yet)\n",
           dw_name(d.mig), dw_stage_name(stage));

    /* 3 ----------------------------------------------------------------- */
    section("3. DUAL_WRITE: every DAO write goes to both models");
    move_stage(d.mig, DW_STAGE_DUAL_WRITE, "expand is deployed everywhere");
    set_status_or_die(&d, 4, "identified");
    printf("  incident #4 set to 'identified' through the DAO\n");
    show_both_models(db, 4);
    rc = dao_set_status(&d, 9, "resloved");
    if (rc == DW_OK)
        die("dao_set_status", "a status the organisation lacks was accepted");
    printf("  incident #9 set to 'resloved' (a typo): refused, nothing"
           " written\n");
    printf("    dw_write: %s, on the %s side\n", dw_errstr(rc),
           side_name(dw_errside(d.mig)));
    printf("    the DAO's reason: %s\n", d.why[0] ? d.why : dw_errmsg(d.mig));
    show_both_models(db, 9);
    printf("  incidents already in the new model: %lld of %d\n",
           count_new_model_rows(db), NINCIDENTS);

    /* 4 ----------------------------------------------------------------- */
    section("4. Copy the existing incidents to the new model");
    {
        sqlite3_stmt *stmt =
            prepare(db, "SELECT id FROM incidents ORDER BY id");
        n = 0;
        while (n < NINCIDENTS && sqlite3_step(stmt) == SQLITE_ROW)
            ids[n++] = sqlite3_column_int64(stmt, 0);
        sqlite3_finalize(stmt);
    }
    for (i = 0; i < n; i++) {
        key = dw_int(ids[i]);
        check_dw(d.mig, dw_mirror(d.mig, &key, 1), "dw_mirror");
    }
    printf("  mirrored %d incidents one by one with dw_mirror()\n", n);
    printf("  incidents in the new model: %lld of %d\n",
           count_new_model_rows(db), NINCIDENTS);

    /* 5 ----------------------------------------------------------------- */
    section("5. SHADOW: reads trust the old model and compare the new one");
    move_stage(d.mig, DW_STAGE_SHADOW, "copy finished, start comparing");
    read_all(&d);
    printf("  read all %d incidents through the DAO\n", NINCIDENTS);
    print_metrics(d.mig);

    printf("  someone bypasses the DAO and marks #7 resolved in the new"
           " model only:\n");
    {
        sqlite3_stmt *stmt = prepare(
            db, "UPDATE incidents SET incident_status_id ="
                " (SELECT s.id FROM incident_statuses s"
                "   WHERE s.organisation_id = incidents.organisation_id"
                "     AND s.name = ?1)"
                " WHERE id = ?2");
        sqlite3_bind_text(stmt, 1, "resolved", -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 2, 7);
        if (sqlite3_step(stmt) != SQLITE_DONE)
            die("injecting a divergence", sqlite3_errmsg(db));
        sqlite3_finalize(stmt);
    }
    show_both_models(db, 7);
    check_dw(d.mig, dao_get_incident(&d, 7, &inc), "dao_get_incident");
    printf("  the DAO reads #7: '%s' (the old model's answer, still"
           " trusted)\n", inc.status);
    check_dw(d.mig, dw_mismatch_log(d.mig, 10, print_mismatch, NULL),
             "dw_mismatch_log");
    printf("    (values are redacted by default: type(length):digest)\n");
    print_metrics(d.mig);

    key = dw_int(7);
    check_dw(d.mig, dw_mirror(d.mig, &key, 1), "dw_mirror");
    printf("  repaired: dw_mirror(#7) copies the trusted row to the new"
           " model\n");
    show_both_models(db, 7);
    before = metrics_of(d.mig);
    check_dw(d.mig, dao_get_incident(&d, 7, &inc), "dao_get_incident");
    after = metrics_of(d.mig);
    if (after.matches != before.matches + 1)
        die("shadow read", "the repaired incident did not match");
    printf("  the DAO reads #7 again: '%s', and the models match\n",
           inc.status);
    print_metrics(d.mig);

    /* 6 ----------------------------------------------------------------- */
    section("6. LIVE: reads trust the new model; both are still written");
    move_stage(d.mig, DW_STAGE_LIVE, "no mismatches since the repair");
    check_dw(d.mig, dao_get_incident(&d, 7, &inc), "dao_get_incident");
    printf("  the DAO reads #7: '%s' (now the new model's answer)\n",
           inc.status);
    set_status_or_die(&d, 7, "identified");
    printf("  incident #7 set to 'identified' through the DAO\n");
    show_both_models(db, 7);
    list_status(&d, "identified");

    move_stage(d.mig, DW_STAGE_SHADOW, "on-call saw latency rise");
    list_status(&d, "identified");
    read_all(&d);
    printf("  read all %d incidents again while investigating\n",
           NINCIDENTS);
    print_metrics(d.mig);
    move_stage(d.mig, DW_STAGE_LIVE,
               "it was a noisy neighbour, not the join");

    /* 7 ----------------------------------------------------------------- */
    section("7. RAMPDOWN, then COMPLETE: stop writing the old model");
    move_stage(d.mig, DW_STAGE_RAMPDOWN, "a week at LIVE without mismatches");
    read_all(&d);
    printf("  read all %d incidents: from the new model only, no longer"
           " compared\n", NINCIDENTS);
    print_metrics(d.mig);
    move_stage(d.mig, DW_STAGE_COMPLETE,
               "nothing reads incidents.status any more");
    set_status_or_die(&d, 12, "resolved");
    printf("  incident #12 set to 'resolved': only the new model is"
           " written\n");
    show_both_models(db, 12);
    dao_add_status(&d, 1, "waiting on vendor", "open");
    set_status_or_die(&d, 13, "waiting on vendor");
    check_dw(d.mig, dao_get_incident(&d, 13, &inc), "dao_get_incident");
    printf("  Acme adds a status of its own; #13 is now '%s'\n", inc.status);
    printf("  next: back up incidents.status, then drop it\n");

    section("History of the migration");
    check_dw(d.mig, dw_history(d.mig, print_history, NULL), "dw_history");

    dw_row_free(d.row);
    dw_close(d.mig);
    if (sqlite3_close(db) != SQLITE_OK)
        die("closing the database", sqlite3_errmsg(db));
    printf("\ndone.\n");
    return EXIT_SUCCESS;
}
