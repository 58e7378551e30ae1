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
 *   1. schema v1, with a thousand incidents already in it;
 *   2. expand: add the new column and table, open the migration (stage OFF);
 *      the spec carries the SQL that creates each organisation's default
 *      statuses (the dependent data);
 *   3. DUAL_WRITE: every DAO write goes to both models, while dw_backfill()
 *      copies the incidents that existed before, in batches, resumably;
 *   4. SHADOW: reads still trust the old model but also compare the new one;
 *      the gate into LIVE stays shut until dw_verify() finds both models
 *      equal;
 *   5. a deliberate divergence, caught by a shadow read and by verification,
 *      repaired with dw_repair_divergent();
 *   6. LIVE: reads trust the new model; a flip back to SHADOW and forward;
 *   7. RAMPDOWN and COMPLETE: the old column stops being written;
 *   8. contract: incidents.status is backed up to a file of its own, the
 *      backup checked, and the column dropped;
 *   9. the way back: dw_restore() puts the column back, the backfill brings
 *      it up to date, and the contract runs again.
 *
 * The application talks to its data through a small DAO (dao_...). Only the
 * DAO calls dw_write(), dw_mirror() and dw_read(); the story in main() calls
 * the DAO, plus what an operator would do by hand: move the stage, run the
 * backfill, verify, repair, contract, and inspect the tables.
 *
 * Run it with `make demo`, or: incident_statuses [DATABASE-FILE]
 * (default incident_statuses.db; the file must not hold an incident tracker
 * already). The backups go to a fresh temporary directory, removed at the
 * end.
 *
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include <dualwrite/sqlite.h>

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
static int write_status_old(void *db, const dw_value *key, int nkey,
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
        return dw_sqlite_result(db, rc);
    sqlite3_bind_text(stmt, 1, a->status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, key[0].i);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return dw_sqlite_result(db, rc);
    if (sqlite3_changes(db) != 1) {
        snprintf(a->d->why, sizeof a->d->why, "no incident %lld",
                 (long long)key[0].i);
        return DW_ECALLBACK;
    }
    return DW_OK;
}

/* New model: incidents.incident_status_id points at the organisation's
 * status of that name. Refuses a name the organisation does not have. */
static int write_status_new(void *db, const dw_value *key, int nkey,
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
        return dw_sqlite_result(db, rc);
    sqlite3_bind_text(stmt, 1, a->status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, key[0].i);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return dw_sqlite_result(db, rc);
    if (sqlite3_changes(db) != 1) {
        snprintf(a->d->why, sizeof a->d->why,
                 "incident %lld's organisation has no status '%s'",
                 (long long)key[0].i, a->status);
        return DW_ECALLBACK;
    }
    return DW_OK;
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
static int read_row(dw_row *out, void *db, const char *sql,
                    const dw_value *key)
{
    sqlite3_stmt *stmt;
    int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
    if (rc != SQLITE_OK)
        return dw_sqlite_result(db, rc);
    rc = dw_sqlite_bind_values(stmt, 1, key, 1);
    if (rc == DW_OK) {
        rc = sqlite3_step(stmt);
        rc = rc == SQLITE_ROW    ? dw_sqlite_row_set_columns(out, stmt)
             : rc == SQLITE_DONE ? DW_ENOTFOUND
                                 : dw_sqlite_result(db, rc);
    }
    sqlite3_finalize(stmt);
    return rc;
}

static int read_incident_old(dw_row *out, void *db, const dw_value *key,
                             int nkey, void *payload)
{
    (void)nkey;
    (void)payload;
    return read_row(out, db,
                    "SELECT title, status FROM incidents WHERE id = ?1", key);
}

static int read_incident_new(dw_row *out, void *db, const dw_value *key,
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

/* A job that predates the migration writes the old column with its own SQL.
 * It calls dw_mirror() in the same transaction, so the new model follows.
 * (dw_mirror() syncs from the trusted side: this job must be ported to the
 * DAO before the new model is trusted at LIVE.) */
static int dao_job_resolve(dao *d, long long incident_id)
{
    dw_value key = dw_int(incident_id);
    sqlite3_stmt *stmt;
    int rc;

    exec_sql(d->db, "BEGIN IMMEDIATE");
    stmt = prepare(d->db, "UPDATE incidents SET status = 'resolved'"
                          " WHERE id = ?1 AND status = 'monitoring'");
    sqlite3_bind_int64(stmt, 1, incident_id);
    if (sqlite3_step(stmt) != SQLITE_DONE)
        die("resolving an incident", sqlite3_errmsg(d->db));
    sqlite3_finalize(stmt);
    rc = dw_mirror(d->mig, &key, 1);
    exec_sql(d->db, rc == DW_OK ? "COMMIT" : "ROLLBACK");
    return rc;
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

/* The recent incidents, ids 1 to 20; the story follows a few of them. */
static const struct {
    int organisation_id;
    const char *title;
    const char *status;
} recent_incidents[] = {
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

#define NRECENT ((int)(sizeof recent_incidents / sizeof recent_incidents[0]))
/* Ids NRECENT + 1 to NINCIDENTS: older incidents, all resolved. */
#define NINCIDENTS 1000

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
    for (i = 0; i < (size_t)NRECENT; i++) {
        sqlite3_bind_int(stmt, 1, recent_incidents[i].organisation_id);
        sqlite3_bind_text(stmt, 2, recent_incidents[i].title, -1,
                          SQLITE_STATIC);
        sqlite3_bind_text(stmt, 3, recent_incidents[i].status, -1,
                          SQLITE_STATIC);
        if (sqlite3_step(stmt) != SQLITE_DONE)
            die("seeding incidents", sqlite3_errmsg(db));
        sqlite3_reset(stmt);
    }
    sqlite3_finalize(stmt);
    stmt = prepare(db, "WITH RECURSIVE n (i) AS"
                       " (SELECT ?1 UNION ALL SELECT i + 1 FROM n"
                       "  WHERE i < ?2)"
                       " INSERT INTO incidents"
                       "  (id, organisation_id, title, status)"
                       " SELECT i, 1 + i % 3, 'Older incident ' || i,"
                       "  'resolved' FROM n");
    sqlite3_bind_int(stmt, 1, NRECENT + 1);
    sqlite3_bind_int(stmt, 2, NINCIDENTS);
    if (sqlite3_step(stmt) != SQLITE_DONE)
        die("seeding older incidents", sqlite3_errmsg(db));
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

/* ------------------------------------------------------------------------ */
/* The migration                                                             */
/* ------------------------------------------------------------------------ */

/* The dependent data: every organisation gets the four statuses the old
 * code hard-wired. dw_backfill() runs this before it copies any incident
 * (and again whenever a backfill starts over), so it must be safe to
 * repeat: ON CONFLICT DO NOTHING adds only what is missing. ("WHERE true"
 * tells SQLite's parser that ON starts the upsert, not a join constraint.) */
static const char default_statuses_sql[] =
    "WITH defaults (pos, name, category) AS (VALUES"
    "  (1, 'investigating', 'open'), (2, 'identified', 'open'),"
    "  (3, 'monitoring', 'open'), (4, 'resolved', 'closed'))"
    " INSERT INTO incident_statuses (organisation_id, name, category)"
    " SELECT o.id, d.name, d.category FROM organisations o, defaults d"
    " WHERE true ORDER BY o.id, d.pos"
    " ON CONFLICT (organisation_id, name) DO NOTHING";

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
    opts.setup_sql = default_statuses_sql;
    opts.reason = "customisable statuses per organisation";
    rc = dw_sqlite_open(&h, db, &opts, &err);
    if (rc != DW_OK) {
        fprintf(stderr, "incident_statuses: dw_open: %s: %s\n", dw_errstr(rc),
                err ? err : "(no message)");
        dw_free(err);
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

/* Asks for LIVE where the gate must refuse, and shows why it did. */
static void try_live(dw_migration *h)
{
    int rc = dw_stage_set(h, DW_STAGE_LIVE, "looks fine to me", 0);
    if (rc == DW_OK)
        die("dw_stage_set", "the gate into LIVE opened too early");
    if (rc != DW_EGATE)
        check_dw(h, rc, "dw_stage_set");
    printf("  ask for LIVE: refused (%s)\n", dw_errstr(rc));
    printf("    %s\n", dw_errmsg(h));
}

static int has_old_column(sqlite3 *db)
{
    return query_int(db, "SELECT count(*) FROM pragma_table_xinfo('incidents')"
                         " WHERE name = 'status'") != 0;
}

/* Shows both models of one incident, straight from the table. */
static void show_both_models(sqlite3 *db, long long incident_id)
{
    int old_column = has_old_column(db);
    sqlite3_stmt *stmt = prepare(
        db, old_column
                ? "SELECT i.status, i.incident_status_id, s.name"
                  " FROM incidents i LEFT JOIN incident_statuses s"
                  " ON s.id = i.incident_status_id WHERE i.id = ?1"
                : "SELECT NULL, i.incident_status_id, s.name"
                  " FROM incidents i LEFT JOIN incident_statuses s"
                  " ON s.id = i.incident_status_id WHERE i.id = ?1");
    char status[48];

    sqlite3_bind_int64(stmt, 1, incident_id);
    if (sqlite3_step(stmt) != SQLITE_ROW)
        die("inspecting an incident", sqlite3_errmsg(db));
    if (old_column)
        snprintf(status, sizeof status, "'%s'",
                 (const char *)sqlite3_column_text(stmt, 0));
    else
        snprintf(status, sizeof status, "(dropped)");
    if (sqlite3_column_type(stmt, 1) == SQLITE_NULL)
        printf("    #%lld: status = %s, incident_status_id = NULL\n",
               incident_id, status);
    else
        printf("    #%lld: status = %s, incident_status_id = %lld ('%s')\n",
               incident_id, status,
               (long long)sqlite3_column_int64(stmt, 1),
               (const char *)sqlite3_column_text(stmt, 2));
    sqlite3_finalize(stmt);
}

static long long count_new_model_rows(sqlite3 *db)
{
    return query_int(db, "SELECT count(*) FROM incidents"
                         " WHERE incident_status_id IS NOT NULL");
}

static long long count_statuses(sqlite3 *db)
{
    return query_int(db, "SELECT count(*) FROM incident_statuses");
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

/* ---- backfill ---- */

/* What the progress callback needs: where to stop, if anywhere. */
typedef struct backfill_watch {
    int64_t stop_after_batches; /* 0: run to the end */
} backfill_watch;

static int print_progress(const dw_backfill_progress *p, void *payload)
{
    const backfill_watch *w = payload;
    printf("    %4lld / %lld rows  %3d%%  %9.0f rows/s\n",
           (long long)p->rows_done, (long long)p->rows_total,
           p->rows_total ? (int)(100 * p->rows_done / p->rows_total) : 100,
           p->rows_per_second);
    return w->stop_after_batches != 0 &&
           p->batches >= w->stop_after_batches;
}

/* Runs dw_backfill() with the progress shown; stops after a given number of
 * batches (in all, across calls) when asked to. Returns DW_OK (finished) or
 * DW_MORE (stopped as asked; the next call resumes). */
static int run_backfill(dw_migration *h, dw_backfill_progress *out,
                        int64_t stop_after_batches)
{
    dw_backfill_options opts = DW_BACKFILL_OPTIONS_INIT;
    backfill_watch w;
    int rc;

    /* 250 rows a batch, every batch: a fixed size makes the demo print the
     * same lines on every run. A service keeps the default, batches that
     * adapt to hold the write lock about 20 ms each. */
    opts.batch_rows = 250;
    opts.batch_ms = -1;
    opts.progress = print_progress;
    w.stop_after_batches = stop_after_batches;
    opts.payload = &w;
    rc = dw_backfill(out, h, &opts);
    if (rc == DW_MORE && stop_after_batches == 0)
        die("dw_backfill", "stopped before the end without being asked to");
    if (rc != DW_MORE)
        check_dw(h, rc, "dw_backfill");
    return rc;
}

/* ---- verification ---- */

/* The divergences a verification reports, kept to print after its counts. */
typedef struct divergences {
    char text[1024];
    size_t len;
} divergences;

static void add_line(divergences *v, const char *line)
{
    size_t n = strlen(line);
    if (n < sizeof v->text - v->len) {
        memcpy(v->text + v->len, line, n + 1);
        v->len += n;
    }
}

/* dw_verify()'s report callback: the differences come described as the
 * mismatch log describes them, redacted. */
static void collect_divergence(const dw_mismatch *m, void *payload)
{
    divergences *v = payload;
    char line[320];
    int i;
    snprintf(line, sizeof line, "    key %s, %s\n", m->key,
             mismatch_kind_name(m->kind));
    add_line(v, line);
    for (i = 0; i < m->ndiffs; i++) {
        snprintf(line, sizeof line, "      %s: old=%s new=%s\n",
                 m->diffs[i].column, m->diffs[i].old_desc,
                 m->diffs[i].new_desc);
        add_line(v, line);
    }
}

static dw_verify_result verify(dw_migration *h)
{
    dw_verify_options opts = DW_VERIFY_OPTIONS_INIT;
    dw_verify_result r;
    divergences v;

    memset(&v, 0, sizeof v);
    opts.fn = collect_divergence;
    opts.payload = &v;
    check_dw(h, dw_verify(&r, h, &opts), "dw_verify");
    printf("  dw_verify (run %lld): %lld keys, %lld missing, %lld extra,"
           " %lld different: %s\n",
           (long long)r.run_id, (long long)r.keys, (long long)r.missing,
           (long long)r.extra, (long long)r.different,
           r.clean ? "clean" : "NOT clean");
    fputs(v.text, stdout);
    return r;
}

static dw_verify_result verify_clean(dw_migration *h)
{
    dw_verify_result r = verify(h);
    if (!r.clean)
        die("dw_verify", "the models were expected to agree");
    return r;
}

/* ---- history ---- */

static void format_time(char *out, size_t size, double t)
{
    time_t seconds = (time_t)t;
    int millis = (int)((t - (double)seconds) * 1000.0);
    struct tm *tm = gmtime(&seconds);
    char hms[16];

    if (tm == NULL || strftime(hms, sizeof hms, "%H:%M:%S", tm) == 0)
        snprintf(out, size, "?");
    else
        snprintf(out, size, "%s.%03d", hms, millis);
}

static int print_history(const dw_history_entry *e, void *payload)
{
    char when[32];

    (void)payload;
    format_time(when, sizeof when, e->time);
    if (strcmp(e->event, "stage") == 0 || strcmp(e->event, "restore") == 0)
        printf("  %s  %-10s -> %-10s %s%s%s\n", when,
               dw_stage_name(e->from_stage), dw_stage_name(e->to_stage),
               strcmp(e->event, "restore") == 0 ? "restore: " : "",
               e->forced ? "(forced) " : "", e->reason ? e->reason : "");
    else
        /* define, backfill (what it copied), contract (the reason; the
         * backup file is printed where the contract runs) */
        printf("  %s  %-24s %s\n", when, e->event,
               e->reason ? e->reason : e->detail ? e->detail : "");
    return 0;
}

/* Finds the newest history entry of one kind and prints its detail. */
typedef struct last_event {
    const char *event;
    char detail[512];
} last_event;

static int remember_event(const dw_history_entry *e, void *payload)
{
    last_event *l = payload;
    if (strcmp(e->event, l->event) == 0)
        snprintf(l->detail, sizeof l->detail, "%s",
                 e->detail ? e->detail : "(no detail)");
    return 0;
}

static void print_last_event(dw_migration *h, const char *event)
{
    last_event l;
    memset(&l, 0, sizeof l);
    l.event = event;
    check_dw(h, dw_history(h, remember_event, &l), "dw_history");
    printf("  history: %s\n    %s\n", event, l.detail);
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

/* A fresh directory for the backups, and the path of one file in it. */
static void make_backup_dir(char *dir, size_t size)
{
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0')
        tmp = "/tmp";
    snprintf(dir, size, "%s/dualwrite-demo-XXXXXX", tmp);
    if (mkdtemp(dir) == NULL)
        die(dir, "cannot create a temporary directory");
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
    dw_backfill_progress bf;
    dw_verify_result vr;
    dw_repair_result rr;
    char dir[256], backup1[320], backup2[320];
    int stage, rc;
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
    /* As a service would run: WAL, so readers (verification included) never
     * block the writer, and commits that wait for the disk only at
     * checkpoints. */
    exec_sql(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL");

    printf("libdualwrite %s -- customisable incident statuses, without"
           " downtime\n", dw_version());
    printf("database: %s\n", path);

    /* 1 ----------------------------------------------------------------- */
    section("1. Schema v1: the status is hard-coded text");
    create_schema_v1(db);
    printf("  %d organisations, %d incidents (#1-#%d recent, the rest"
           " older and resolved)\n",
           (int)(sizeof organisations / sizeof organisations[0]), NINCIDENTS,
           NRECENT);
    printf("  incidents.status is one of: investigating, identified,"
           " monitoring, resolved\n");

    /* 2 ----------------------------------------------------------------- */
    section("2. Expand: the new model beside the old one");
    expand_schema(db);
    printf("  added table incident_statuses and column"
           " incidents.incident_status_id\n");
    d.db = db;
    d.mig = open_migration(db);
    check_dw(d.mig, dw_row_new(&d.row), "dw_row_new");
    check_dw(d.mig, dw_stage_get(&stage, d.mig), "dw_stage_get");
    printf("  opened migration \"%s\" at stage %s (nothing changes yet)\n",
           dw_name(d.mig), dw_stage_name(stage));
    printf("  its spec carries the setup SQL for the dependent data (4"
           " statuses per organisation);\n"
           "  incident_statuses holds %lld rows until the backfill runs it\n",
           count_statuses(db));

    /* 3 ----------------------------------------------------------------- */
    section("3. DUAL_WRITE: write both models, backfill the older rows");
    /* The DAO's new-side write needs the statuses, and the backfill's first
     * batch creates them: run it right after the switch. */
    move_stage(d.mig, DW_STAGE_DUAL_WRITE, "expand is deployed everywhere");
    printf("  dw_backfill, 250 rows a batch (this call stops after 2"
           " batches):\n");
    rc = run_backfill(d.mig, &bf, 2);
    if (rc != DW_MORE)
        die("dw_backfill", "the first call was expected to stop early");
    printf("  returned DW_MORE: %lld rows committed with the cursor;"
           " the next call resumes\n", (long long)bf.rows_done);
    printf("  the first batch ran the setup SQL first: %lld statuses\n",
           count_statuses(db));

    printf("  meanwhile the service writes through the DAO:\n");
    set_status_or_die(&d, 4, "identified");
    printf("  incident #4 set to 'identified'\n");
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

    printf("  dw_backfill again, resuming after row %lld:\n",
           (long long)bf.rows_done);
    (void)run_backfill(d.mig, &bf, 0);
    printf("  finished: %lld rows written in %lld batches; longest batch"
           " %.1f ms\n",
           (long long)bf.rows_written, (long long)bf.batches,
           bf.max_batch_ms);
    printf("  incidents in the new model: %lld of %d\n",
           count_new_model_rows(db), NINCIDENTS);

    /* 4 ----------------------------------------------------------------- */
    section("4. SHADOW: compare on every read; verify before trusting");
    move_stage(d.mig, DW_STAGE_SHADOW, "backfill finished, start comparing");
    read_all(&d);
    printf("  read all %d incidents through the DAO\n", NINCIDENTS);
    print_metrics(d.mig);
    check_dw(d.mig, dao_job_resolve(&d, 3), "dao_job_resolve");
    printf("  an old job resolves #3 with its own SQL, then dw_mirror()"
           " in its transaction:\n");
    show_both_models(db, 3);
    try_live(d.mig);
    vr = verify_clean(d.mig);
    printf("  the gate into LIVE is open\n");

    /* 5 ----------------------------------------------------------------- */
    section("5. A divergence: caught, repaired, verified");
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
    vr = verify(d.mig);
    if (vr.clean || vr.different != 1)
        die("dw_verify", "the divergence was not found");
    printf("    (verification compares through the spec: the old row mapped"
           " up, against the new row)\n");
    check_dw(d.mig, dw_repair_divergent(&rr, d.mig), "dw_repair_divergent");
    printf("  dw_repair_divergent: %lld key re-synced from the trusted old"
           " model\n", (long long)rr.repaired);
    show_both_models(db, 7);
    vr = verify_clean(d.mig);
    before = metrics_of(d.mig);
    check_dw(d.mig, dao_get_incident(&d, 7, &inc), "dao_get_incident");
    after = metrics_of(d.mig);
    if (after.matches != before.matches + 1)
        die("shadow read", "the repaired incident did not match");
    printf("  the DAO reads #7 again: '%s', and the models match\n",
           inc.status);

    /* 6 ----------------------------------------------------------------- */
    section("6. LIVE: reads trust the new model; both are still written");
    move_stage(d.mig, DW_STAGE_LIVE, "verified clean after the repair");
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
    vr = verify_clean(d.mig);
    move_stage(d.mig, DW_STAGE_COMPLETE,
               "nothing reads incidents.status any more");
    set_status_or_die(&d, 12, "resolved");
    printf("  incident #12 set to 'resolved': only the new model is"
           " written\n");
    show_both_models(db, 12);

    /* 8 ----------------------------------------------------------------- */
    section("8. Contract: back up incidents.status, check it, drop it");
    make_backup_dir(dir, sizeof dir);
    snprintf(backup1, sizeof backup1, "%s/incidents.status.db", dir);
    snprintf(backup2, sizeof backup2, "%s/incidents.status-2.db", dir);
    check_dw(d.mig, dw_contract(d.mig, backup1, "statuses live in their own"
                                               " table now"),
             "dw_contract");
    printf("  dw_contract: backup written, read back and checked; then the"
           " column dropped\n");
    print_last_event(d.mig, "contract");
    show_both_models(db, 12);
    dao_add_status(&d, 1, "waiting on vendor", "open");
    set_status_or_die(&d, 13, "waiting on vendor");
    check_dw(d.mig, dao_get_incident(&d, 13, &inc), "dao_get_incident");
    printf("  Acme adds a status of its own; #13 is now '%s'\n", inc.status);
    show_both_models(db, 13);

    /* 9 ----------------------------------------------------------------- */
    section("9. The way back: restore, catch up, contract again");
    check_dw(d.mig, dw_restore(d.mig, backup1, "a report still reads"
                                              " incidents.status"),
             "dw_restore");
    check_dw(d.mig, dw_stage_get(&stage, d.mig), "dw_stage_get");
    printf("  dw_restore: the column is back as the backup had it; stage"
           " %s\n", dw_stage_name(stage));
    show_both_models(db, 13);
    printf("    (#13 changed after the contract: its old column is behind)\n");
    printf("  dw_backfill, from the trusted new model to the old this"
           " time:\n");
    (void)run_backfill(d.mig, &bf, 0);
    printf("  the setup SQL ran again and added nothing: %lld statuses\n",
           count_statuses(db));
    show_both_models(db, 13);
    vr = verify_clean(d.mig);
    move_stage(d.mig, DW_STAGE_COMPLETE, "the report reads the new table");
    check_dw(d.mig, dw_contract(d.mig, backup2, "the report moved too"),
             "dw_contract");
    printf("  dw_contract again, to a second file\n");
    print_last_event(d.mig, "contract");

    section("History of the migration");
    check_dw(d.mig, dw_history(d.mig, print_history, NULL), "dw_history");
    check_dw(d.mig, dw_verify_last(&vr, d.mig), "dw_verify_last");
    check_dw(d.mig, dw_backfill_status(&bf, d.mig), "dw_backfill_status");
    printf("  last verification: run %lld, %lld keys, %s; last backfill:"
           " %s\n",
           (long long)vr.run_id, (long long)vr.keys,
           vr.clean ? "clean" : "NOT clean",
           bf.stale ? "stale (the stage entered COMPLETE since)"
                    : bf.finished ? "finished" : "not finished");

    dw_row_free(d.row);
    dw_close(d.mig);
    if (sqlite3_close(db) != SQLITE_OK)
        die("closing the database", sqlite3_errmsg(db));
    if (remove(backup1) != 0 || remove(backup2) != 0 || rmdir(dir) != 0)
        fprintf(stderr, "incident_statuses: could not remove %s\n", dir);
    printf("\ndone.\n");
    return EXIT_SUCCESS;
}
