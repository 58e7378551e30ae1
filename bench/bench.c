/*
 * bench.c -- libdualwrite against the same SQL written by hand, in one run.
 *
 * Builds the incident tracker of examples/incident_statuses.c at a chosen
 * size (incidents.status as text, moving to incident_statuses plus
 * incidents.incident_status_id) in a WAL database (synchronous=NORMAL),
 * then measures each operation through the library and written by hand
 * with statements prepared once. Per-operation figures alternate the two
 * in slices of 500 operations (the side that goes first alternates too),
 * so that both meet the same cache and WAL state; each write slice ends
 * with a checkpoint of the pages it wrote, timed with it. Whole-table
 * figures alternate whole runs, each from the same starting state. Each
 * figure is the median over several rounds of library time / hand-written
 * time (for throughput, the inverse), printed as `name: value`, with the
 * median absolute times beside it (_us per operation, _s per run).
 *
 *   bench [--rows N] [--rounds N] [--ops N] [--db PATH] [--only LIST]
 *         [--batch-ms N] [--big-rows [N]] [--no-rss] [--verbose]
 *         [--side lib|raw]
 *
 * What each figure runs through the library, and by hand:
 *   off_write        dw_write() at OFF with the DAO's old-side write;
 *                    BEGIN IMMEDIATE; UPDATE incidents SET status; COMMIT
 *   dual_write       dw_write() at DUAL_WRITE, the new side through the
 *                    mapping; the same plus the mapping's UPDATE of
 *                    incident_status_id (the statement the library runs)
 *   shadow_read      dw_read() at SHADOW with the DAO's two read callbacks;
 *                    BEGIN; both reads; field comparison; COMMIT
 *   shadow_read_sampled   the same at a comparison ratio of 1%; one read
 *   backfill         dw_backfill() of every row; one UPDATE of the whole
 *                    table through the mapping (the one-table form of
 *                    INSERT ... SELECT) in one transaction.
 *                    backfill_max_batch_ms is the longest any batch held
 *                    the write lock, over every run
 *   verify           dw_verify(); SELECT count(*) over both EXCEPTs, in one
 *                    transaction
 *   rss_growth_ratio the peak resident memory of a fresh process running a
 *                    backfill and a verification of rows rows, against one
 *                    of rows / 10 rows
 *   mismatch_log_growth_ratio  the time of a dw_read() at SHADOW that logs
 *                    a new mismatch with rows entries in the migration's
 *                    log, against one with an empty log (its own database,
 *                    log_cap two million); no hand-written side
 *
 * Against the best a user could write by hand (run after the figures above,
 * which so meet the database as before):
 *   verify_best      dw_verify(); SELECT count(*) FROM incidents WHERE
 *                    incident_status_id IS NOT (the up mapping), in one
 *                    transaction: one scan of the one table
 *   dual_write_trigger  dw_write() at DUAL_WRITE, as dual_write; the old
 *                    side's write alone (as off_write), with AFTER INSERT
 *                    and AFTER UPDATE triggers running the mapping's UPDATE
 *                    of incident_status_id (a DELETE takes the column with
 *                    the row). The triggers exist only during the
 *                    hand-written slices: each slice starts, untimed, by
 *                    creating or dropping them and one operation of its
 *                    side, which recompiles the statements
 *   backfill_routed  both through the library: dw_backfill() with no
 *                    override, against one with 100 keys spread over the
 *                    table overridden to SHADOW (the migration at
 *                    DUAL_WRITE, trusting the same side); the ratio is the
 *                    unrouted time over the routed time
 *   backfill_callback  dw_backfill() of a second migration of the same
 *                    columns whose up mapping is a C callback (the status
 *                    id looked up in a C copy of incident_statuses); one
 *                    SELECT of the source rows, the same C transform, one
 *                    prepared UPDATE per row, all in one transaction
 *   verify_callback  dw_verify() of that migration; one SELECT of both
 *                    models, the C transform, a type-exact comparison
 *   backfill_max_batch_ms_5m  the longest any batch of one dw_backfill()
 *                    held the write lock, over a table of its own of
 *                    --big-rows rows (default five times rows: 5,000,000
 *                    by default, 15 to 35 s more here; 0 takes it from the
 *                    main table); _rows says how many; no hand-written side
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include <dualwrite/sqlite.h>

#define MAX_ROUNDS 51

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench: %s: %s\n", what, why);
    exit(EXIT_FAILURE);
}

static void check_dw(const dw_migration *h, int rc, const char *what)
{
    if (rc != DW_OK)
        die(what, h ? dw_errmsg(h) : dw_errstr(rc));
}

static void exec_sql(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        die(sql, err ? err : sqlite3_errmsg(db));
}

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st,
                           NULL) != SQLITE_OK)
        die(sql, sqlite3_errmsg(db));
    return st;
}

/* Steps a statement that returns no row, then resets it. */
static void run(sqlite3 *db, sqlite3_stmt *st)
{
    if (sqlite3_step(st) != SQLITE_DONE)
        die(sqlite3_sql(st), sqlite3_errmsg(db));
    sqlite3_reset(st);
}

static long long query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = prepare(db, sql);
    if (sqlite3_step(st) != SQLITE_ROW)
        die(sql, sqlite3_errmsg(db));
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ------------------------------------------------------------------------ */
/* The schema, the migration and the DAO's statements                        */
/* ------------------------------------------------------------------------ */

#define ORGANISATIONS 1000

static const char *const status_names[] = {"investigating", "identified",
                                           "monitoring", "resolved"};

/* The mapping's up expression, as the spec and the hand-written SQL use it. */
#define UP_EXPR                                                                \
    "(SELECT s.id FROM incident_statuses s"                                    \
    "  WHERE s.organisation_id = incidents.organisation_id"                    \
    "    AND s.name = incidents.status)"

static const char default_statuses_sql[] =
    "WITH defaults (pos, name, category) AS (VALUES"
    "  (1, 'investigating', 'open'), (2, 'identified', 'open'),"
    "  (3, 'monitoring', 'open'), (4, 'resolved', 'closed'))"
    " INSERT INTO incident_statuses (organisation_id, name, category)"
    " SELECT o.id, d.name, d.category FROM organisations o, defaults d"
    " WHERE true ORDER BY o.id, d.pos"
    " ON CONFLICT (organisation_id, name) DO NOTHING";

static sqlite3 *open_db(const char *path)
{
    sqlite3 *db = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die(path, db ? sqlite3_errmsg(db) : "out of memory");
    exec_sql(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL");
    return db;
}

/* Schema v1 with `rows` incidents, expanded with the new model (empty). */
static void build_db(const char *path, long long rows)
{
    char wal[4096];
    remove(path);
    snprintf(wal, sizeof wal, "%s-wal", path);
    remove(wal);
    snprintf(wal, sizeof wal, "%s-shm", path);
    remove(wal);
    sqlite3 *db = open_db(path);
    exec_sql(db, "BEGIN");
    exec_sql(db,
             "CREATE TABLE organisations ("
             "  id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
             "CREATE TABLE incidents ("
             "  id INTEGER PRIMARY KEY,"
             "  organisation_id INTEGER NOT NULL REFERENCES organisations(id),"
             "  title TEXT NOT NULL,"
             "  status TEXT NOT NULL);"
             "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
             "  WHERE i < 1000)"
             " INSERT INTO organisations SELECT i, 'Organisation ' || i FROM n");
    sqlite3_stmt *st =
        prepare(db, "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL"
                    "  SELECT i + 1 FROM n WHERE i < ?1)"
                    " INSERT INTO incidents (id, organisation_id, title, status)"
                    " SELECT i, 1 + i % 1000, 'Incident number ' || i,"
                    "  CASE i % 4 WHEN 0 THEN 'investigating'"
                    "   WHEN 1 THEN 'identified' WHEN 2 THEN 'monitoring'"
                    "   ELSE 'resolved' END FROM n");
    sqlite3_bind_int64(st, 1, rows);
    run(db, st);
    sqlite3_finalize(st);
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
    exec_sql(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    if (sqlite3_close(db) != SQLITE_OK)
        die("closing", sqlite3_errmsg(db));
}

static dw_migration *open_migration(sqlite3 *db)
{
    static const char *const key[] = {"id"};
    static const char *const old_columns[] = {"status"};
    static const char *const new_columns[] = {"incident_status_id"};
    static const dw_column_map up[] = {{"incident_status_id", UP_EXPR}};
    static const dw_column_map down[] = {
        {"status", "(SELECT s.name FROM incident_statuses s"
                   "  WHERE s.id = incidents.incident_status_id)"}};
    dw_options opts = DW_OPTIONS_INIT;
    dw_migration *h = NULL;
    char *err = NULL;

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
    opts.reason = "benchmark";
    if (dw_sqlite_open(&h, db, &opts, &err) != DW_OK)
        die("dw_open", err ? err : "(no message)");
    return h;
}

/* Everything prepared once: the DAO's statements (which the library's
 * callbacks use too) and the hand-written transactions. */
typedef struct bench {
    sqlite3 *db;
    dw_migration *h;
    dw_migration *h_fn;        /* the same migration with a C mapping */
    long long rows;
    sqlite3_stmt *begin, *begin_immediate, *commit;
    sqlite3_stmt *set_status;  /* ?1 status, ?2 id */
    sqlite3_stmt *sync_new;    /* the up mapping for one id, as the library */
    sqlite3_stmt *read_old;    /* title, status of ?1 */
    sqlite3_stmt *read_new;    /* title, status of ?1 through the join */
    const char *status;        /* what the next write sets */
    long long next;            /* the key walk */
} bench;

static const char read_old_sql[] =
    "SELECT title, status FROM incidents WHERE id = ?1";
static const char read_new_sql[] =
    "SELECT i.title AS title, s.name AS status FROM incidents i"
    " LEFT JOIN incident_statuses s ON s.id = i.incident_status_id"
    " WHERE i.id = ?1";

static void bench_prepare(bench *b)
{
    b->begin = prepare(b->db, "BEGIN");
    b->begin_immediate = prepare(b->db, "BEGIN IMMEDIATE");
    b->commit = prepare(b->db, "COMMIT");
    b->set_status =
        prepare(b->db, "UPDATE incidents SET status = ?1 WHERE id = ?2");
    b->sync_new = prepare(b->db, "UPDATE incidents SET incident_status_id = "
                                 UP_EXPR " WHERE id = ?1");
    b->read_old = prepare(b->db, read_old_sql);
    b->read_new = prepare(b->db, read_new_sql);
}

static void bench_finalize(bench *b)
{
    sqlite3_stmt **all[] = {&b->begin,    &b->begin_immediate, &b->commit,
                            &b->set_status, &b->sync_new,      &b->read_old,
                            &b->read_new};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        sqlite3_finalize(*all[i]);
        *all[i] = NULL;
    }
}

/* Keys spread over the table, so that neither side reads hot pages only. */
static long long next_key(bench *b)
{
    b->next = (b->next + 7919) % b->rows;
    return b->next + 1;
}

static const char *next_status(long long id)
{
    return status_names[(id / 7) % 4];
}

/* The DAO's old-side write, as an application gives it to dw_write(). */
static int write_status_old(void *db, const dw_value *key, int nkey,
                            void *payload)
{
    bench *b = payload;
    (void)nkey;
    sqlite3_bind_text(b->set_status, 1, b->status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(b->set_status, 2, key[0].i);
    int rc = sqlite3_step(b->set_status);
    sqlite3_reset(b->set_status);
    if (rc != SQLITE_DONE)
        return dw_sqlite_result(db, rc);
    return sqlite3_changes(db) == 1 ? DW_OK : DW_ECALLBACK;
}

static int read_with(sqlite3_stmt *st, dw_row *out, const dw_value *key)
{
    sqlite3_bind_int64(st, 1, key[0].i);
    int rc = sqlite3_step(st);
    rc = rc == SQLITE_ROW    ? dw_sqlite_row_set_columns(out, st)
         : rc == SQLITE_DONE ? DW_ENOTFOUND
                             : dw_sqlite_result(sqlite3_db_handle(st), rc);
    sqlite3_reset(st);
    return rc;
}

static int read_incident_old(dw_row *out, void *db, const dw_value *key,
                             int nkey, void *payload)
{
    (void)db;
    (void)nkey;
    return read_with(((bench *)payload)->read_old, out, key);
}

static int read_incident_new(dw_row *out, void *db, const dw_value *key,
                             int nkey, void *payload)
{
    (void)db;
    (void)nkey;
    return read_with(((bench *)payload)->read_new, out, key);
}

/* ------------------------------------------------------------------------ */
/* One operation, each way                                                   */
/* ------------------------------------------------------------------------ */

typedef void (*op_fn)(bench *b);

static void lib_write(bench *b)
{
    dw_value key = dw_int(next_key(b));
    b->status = next_status(key.i);
    check_dw(b->h, dw_write(b->h, &key, 1, write_status_old, NULL, b),
             "dw_write");
}

static void raw_write_off(bench *b)
{
    long long id = next_key(b);
    run(b->db, b->begin_immediate);
    sqlite3_bind_text(b->set_status, 1, next_status(id), -1, SQLITE_STATIC);
    sqlite3_bind_int64(b->set_status, 2, id);
    run(b->db, b->set_status);
    if (sqlite3_changes(b->db) != 1)
        die("raw write", "no such incident");
    run(b->db, b->commit);
}

static void raw_write_dual(bench *b)
{
    long long id = next_key(b);
    run(b->db, b->begin_immediate);
    sqlite3_bind_text(b->set_status, 1, next_status(id), -1, SQLITE_STATIC);
    sqlite3_bind_int64(b->set_status, 2, id);
    run(b->db, b->set_status);
    if (sqlite3_changes(b->db) != 1)
        die("raw write", "no such incident");
    sqlite3_bind_int64(b->sync_new, 1, id);
    run(b->db, b->sync_new);
    if (sqlite3_changes(b->db) != 1)
        die("raw write", "the mapped row was not written");
    run(b->db, b->commit);
}

static dw_row *lib_row; /* the DAO's reused result row */

static void lib_read(bench *b)
{
    dw_value key = dw_int(next_key(b));
    check_dw(b->h,
             dw_read(lib_row, b->h, &key, 1, read_incident_old,
                     read_incident_new, b),
             "dw_read");
}

/* What a DAO keeps of a read: the incident's title and status. */
typedef struct incident {
    char title[64];
    char status[32];
} incident;

static int raw_read_one(sqlite3_stmt *st, long long id, incident *out)
{
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        const char *s = (const char *)sqlite3_column_text(st, 1);
        snprintf(out->title, sizeof out->title, "%s", t ? t : "");
        snprintf(out->status, sizeof out->status, "%s", s ? s : "");
    }
    sqlite3_reset(st);
    return rc;
}

static long long raw_mismatches;

static void raw_read_compare(bench *b)
{
    long long id = next_key(b);
    incident old_row, new_row;
    run(b->db, b->begin);
    int rc_old = raw_read_one(b->read_old, id, &old_row);
    int rc_new = raw_read_one(b->read_new, id, &new_row);
    run(b->db, b->commit);
    if (rc_old != SQLITE_ROW)
        die("raw read", "no such incident");
    if (rc_new != SQLITE_ROW || strcmp(old_row.title, new_row.title) != 0 ||
        strcmp(old_row.status, new_row.status) != 0)
        raw_mismatches++;
}

static void raw_read(bench *b)
{
    incident row;
    if (raw_read_one(b->read_old, next_key(b), &row) != SQLITE_ROW)
        die("raw read", "no such incident");
}

/* ------------------------------------------------------------------------ */
/* Alternation                                                               */
/* ------------------------------------------------------------------------ */

typedef struct figure {
    double ratio;   /* median of library / hand-written */
    double lib_us;  /* median per-operation time, library */
    double raw_us;  /* the same, hand-written */
} figure;

#define SLICE 500

/* --side lib or --side raw: run one side only (for a profiler); the
 * ratios are then meaningless. --verbose: every round on stderr. */
static int skip_lib, skip_raw, verbose;

/* Called (untimed) before each slice of the side named by lib_now, to put
 * the database in that side's shape: say, triggers only the hand-written
 * side has. */
typedef void (*enter_fn)(bench *b, int lib_now);

static void enter_side(bench *b, enter_fn enter, op_fn op, int lib_now)
{
    enter(b, lib_now);
    op(b);
    sqlite3_wal_checkpoint_v2(b->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL,
                              NULL);
}

/* Runs `ops` operations each way per round, in slices of SLICE that take
 * turns (the side that goes first alternates), after one warm-up slice of
 * each. The ratio is library time over hand-written time. With `enter`,
 * each slice (and warm-up) is preceded by enter() and one untimed
 * operation of its side, so that statements recompiled after a schema
 * change are not timed. */
static figure compare_ops_entering(bench *b, op_fn lib, op_fn raw,
                                   enter_fn enter, int ops, int rounds)
{
    double ratios[MAX_ROUNDS], lib_us[MAX_ROUNDS], raw_us[MAX_ROUNDS];
    /* Each slice ends with a checkpoint of the pages it wrote, timed with
     * it: left automatic, a checkpoint would land on whichever slice
     * crossed the threshold and charge it for the other side's pages. */
    sqlite3_wal_autocheckpoint(b->db, 0);
    if (enter) {
        for (int k = 0; k < 2; k++) {
            enter_side(b, enter, k ? lib : raw, k);
            for (int w = 0; w < SLICE; w++)
                (k ? lib : raw)(b);
        }
    } else {
        for (int w = 0; w < SLICE; w++) {
            raw(b);
            lib(b);
        }
    }
    for (int r = 0; r < rounds; r++) {
        double t_lib = 0, t_raw = 0;
        for (int done = 0, turn = r; done < ops; done += SLICE, turn++) {
            for (int k = 0; k < 2; k++) {
                int lib_now = (turn + k) % 2 == 0;
                if ((lib_now && skip_lib) || (!lib_now && skip_raw))
                    continue;
                if (enter)
                    enter_side(b, enter, lib_now ? lib : raw, lib_now);
                double t0 = now_s();
                for (int i = 0; i < SLICE; i++)
                    (lib_now ? lib : raw)(b);
                sqlite3_wal_checkpoint_v2(b->db, NULL,
                                          SQLITE_CHECKPOINT_PASSIVE, NULL,
                                          NULL);
                double t = now_s() - t0;
                if (lib_now)
                    t_lib += t;
                else
                    t_raw += t;
            }
        }
        int n = ((ops + SLICE - 1) / SLICE) * SLICE;
        ratios[r] = t_lib / t_raw;
        lib_us[r] = t_lib / n * 1e6;
        raw_us[r] = t_raw / n * 1e6;
        if (verbose)
            fprintf(stderr,
                    "bench: round %d: library %.2f us, by hand %.2f us, "
                    "ratio %.3f\n",
                    r, lib_us[r], raw_us[r], ratios[r]);
    }
    sqlite3_wal_autocheckpoint(b->db, 1000);
    figure f = {median(ratios, rounds), median(lib_us, rounds),
                median(raw_us, rounds)};
    return f;
}

static figure compare_ops(bench *b, op_fn lib, op_fn raw, int ops,
                          int rounds)
{
    return compare_ops_entering(b, lib, raw, NULL, ops, rounds);
}

static void print_figure(const char *name, figure f)
{
    printf("%s_ratio: %.3f\n", name, f.ratio);
    printf("%s_us: %.2f\n", name, f.lib_us);
    printf("%s_raw_us: %.2f\n", name, f.raw_us);
    fflush(stdout);
}

/* ------------------------------------------------------------------------ */
/* Whole-table work: backfill and verification                               */
/* ------------------------------------------------------------------------ */

static void clear_new_model(bench *b)
{
    exec_sql(b->db, "UPDATE incidents SET incident_status_id = NULL");
    exec_sql(b->db, "PRAGMA wal_checkpoint(TRUNCATE)");
}

static double max_batch_ms;
static int batch_ms; /* --batch-ms: the backfill's batch target (0: default) */

/* A backfill of every row through `h`: its seconds, and in *run_max_ms
 * the longest any of its batches held the write lock. */
static double backfill_through(bench *b, dw_migration *h, double *run_max_ms)
{
    dw_backfill_options o = DW_BACKFILL_OPTIONS_INIT;
    dw_backfill_progress p;
    o.flags = DW_BACKFILL_RESTART;
    o.batch_ms = batch_ms;
    double t0 = now_s();
    check_dw(h, dw_backfill(&p, h, &o), "dw_backfill");
    double t = now_s() - t0;
    if (p.rows_done != b->rows)
        die("dw_backfill", "did not pass every row");
    *run_max_ms = p.max_batch_ms;
    return t;
}

static double lib_backfill(bench *b)
{
    double run_max_ms;
    double t = backfill_through(b, b->h, &run_max_ms);
    if (run_max_ms > max_batch_ms)
        max_batch_ms = run_max_ms;
    return t;
}

static double raw_backfill(bench *b)
{
    double t0 = now_s();
    exec_sql(b->db, "BEGIN IMMEDIATE;"
                    "UPDATE incidents SET incident_status_id = " UP_EXPR ";"
                    "COMMIT");
    return now_s() - t0;
}

static double verify_through(bench *b, dw_migration *h)
{
    dw_verify_result v;
    double t0 = now_s();
    check_dw(h, dw_verify(&v, h, NULL), "dw_verify");
    double t = now_s() - t0;
    if (!v.clean || v.keys != b->rows)
        die("dw_verify", "the models differ after the backfill");
    return t;
}

static double lib_verify(bench *b)
{
    return verify_through(b, b->h);
}

static double raw_verify(bench *b)
{
    double t0 = now_s();
    exec_sql(b->db, "BEGIN");
    long long n = query_int(
        b->db, "SELECT (SELECT count(*) FROM ("
               "  SELECT id, " UP_EXPR " FROM incidents"
               "  EXCEPT SELECT id, incident_status_id FROM incidents))"
               " + (SELECT count(*) FROM ("
               "  SELECT id, incident_status_id FROM incidents"
               "  EXCEPT SELECT id, " UP_EXPR " FROM incidents))");
    exec_sql(b->db, "COMMIT");
    if (n != 0)
        die("EXCEPT", "the models differ after the backfill");
    return now_s() - t0;
}

typedef double (*whole_fn)(bench *b);

/* Throughput: hand-written time over library time, per round; `reset`
 * (untimed) runs before each side. */
static figure compare_whole(bench *b, whole_fn lib, whole_fn raw,
                            void (*reset)(bench *), int rounds)
{
    double ratios[MAX_ROUNDS], lib_s[MAX_ROUNDS], raw_s[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < 2; k++) {
            int lib_now = (r + k) % 2 == 0;
            if ((lib_now && skip_lib) || (!lib_now && skip_raw)) {
                (lib_now ? lib_s : raw_s)[r] = 1;
                continue;
            }
            if (reset)
                reset(b);
            if (lib_now)
                lib_s[r] = lib(b);
            else
                raw_s[r] = raw(b);
        }
        ratios[r] = raw_s[r] / lib_s[r];
        if (verbose)
            fprintf(stderr,
                    "bench: round %d: library %.3f s, by hand %.3f s, "
                    "ratio %.3f\n",
                    r, lib_s[r], raw_s[r], ratios[r]);
    }
    figure f = {median(ratios, rounds), median(lib_s, rounds),
                median(raw_s, rounds)};
    return f;
}

static void print_whole(const char *name, figure f, const char *other)
{
    printf("%s_ratio: %.3f\n", name, f.ratio);
    printf("%s_s: %.3f\n%s_%s_s: %.3f\n", name, f.lib_us, name, other,
           f.raw_us);
    fflush(stdout);
}

/* ------------------------------------------------------------------------ */
/* The best hand-written verification, routed backfills, triggers           */
/* ------------------------------------------------------------------------ */

/* What a user who knows the migration touches one table would write: one
 * scan, the column against the mapping, NULL-safe and type-exact (IS NOT
 * equates 1 and 1.0 as the library's comparison does). */
static double raw_verify_best(bench *b)
{
    double t0 = now_s();
    exec_sql(b->db, "BEGIN");
    long long n = query_int(b->db,
                            "SELECT count(*) FROM incidents"
                            " WHERE incident_status_id IS NOT " UP_EXPR);
    exec_sql(b->db, "COMMIT");
    if (n != 0)
        die("IS NOT", "the models differ after the backfill");
    return now_s() - t0;
}

#define ROUTED_KEYS 100

/* Overrides to SHADOW for ROUTED_KEYS keys spread over the table (on), or
 * none (off); the migration is at DUAL_WRITE, which trusts the same side,
 * so only the backfill's routing differs. */
static void route_keys(bench *b, int on)
{
    dw_value keys[ROUTED_KEYS];
    long long step = b->rows / ROUTED_KEYS;
    for (int i = 0; i < ROUTED_KEYS; i++)
        keys[i] = dw_int(1 + i * step + step / 2);
    if (on)
        check_dw(b->h,
                 dw_override_set(b->h, keys, 1, ROUTED_KEYS, DW_STAGE_SHADOW,
                                 "bench"),
                 "dw_override_set");
    else
        check_dw(b->h,
                 dw_override_clear(NULL, b->h, keys, 1, ROUTED_KEYS, "bench"),
                 "dw_override_clear");
}

/* The overrides are set (or cleared) before the new model is cleared, so
 * both sides start from the same rows. */
static double lib_backfill_routed(bench *b)
{
    route_keys(b, 1);
    clear_new_model(b);
    return lib_backfill(b);
}

static double lib_backfill_unrouted(bench *b)
{
    route_keys(b, 0);
    clear_new_model(b);
    return lib_backfill(b);
}

/* The mirror a user would write instead of the library: the up mapping
 * after each write of the old columns, in the same row. (A deleted row
 * takes its new column with it: no DELETE trigger is needed on one
 * table.) */
#define MIRROR_BODY                                                            \
    " BEGIN UPDATE incidents SET incident_status_id = " UP_EXPR               \
    " WHERE id = NEW.id; END;"

static int mirror_triggers; /* whether they exist now */

/* Only the hand-written side's slices run with the triggers. */
static void enter_triggers(bench *b, int lib_now)
{
    if (lib_now && mirror_triggers)
        exec_sql(b->db, "DROP TRIGGER bench_mirror_insert;"
                        "DROP TRIGGER bench_mirror_update");
    else if (!lib_now && !mirror_triggers)
        exec_sql(b->db,
                 "CREATE TRIGGER bench_mirror_insert AFTER INSERT"
                 " ON incidents" MIRROR_BODY
                 "CREATE TRIGGER bench_mirror_update AFTER UPDATE OF"
                 " organisation_id, status ON incidents" MIRROR_BODY);
    mirror_triggers = !lib_now;
}

/* ------------------------------------------------------------------------ */
/* A C mapping: the library's callback against a hand-written C loop        */
/* ------------------------------------------------------------------------ */

/* The transform in C, for the callback and the hand-written loops alike:
 * the status id of (organisation, status name), from a copy of
 * incident_statuses read once; 0 when there is none (the SQL mapping's
 * NULL). */
static long long status_ids[ORGANISATIONS + 1][4];

static void load_status_ids(sqlite3 *db)
{
    sqlite3_stmt *st =
        prepare(db, "SELECT id, organisation_id, name FROM incident_statuses");
    memset(status_ids, 0, sizeof status_ids);
    while (sqlite3_step(st) == SQLITE_ROW) {
        long long org = sqlite3_column_int64(st, 1);
        const char *name = (const char *)sqlite3_column_text(st, 2);
        for (int i = 0; i < 4 && org >= 1 && org <= ORGANISATIONS; i++)
            if (name && strcmp(name, status_names[i]) == 0)
                status_ids[org][i] = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
}

static long long status_id_of(long long org, const void *name, int n)
{
    if (org < 1 || org > ORGANISATIONS || !name)
        return 0;
    for (int i = 0; i < 4; i++)
        if (strlen(status_names[i]) == (size_t)n &&
            memcmp(name, status_names[i], (size_t)n) == 0)
            return status_ids[org][i];
    return 0;
}

static int up_status_fn(dw_row *out, const dw_row *in, void *payload)
{
    const dw_value *org = dw_row_get(in, "organisation_id");
    const dw_value *status = dw_row_get(in, "status");
    long long id = 0;
    (void)payload;
    if (org && status && org->type == DW_TYPE_INTEGER &&
        status->type == DW_TYPE_TEXT)
        id = status_id_of(org->i, status->p, status->n);
    return id ? dw_row_set_int(out, "incident_status_id", id)
              : dw_row_set_null(out, "incident_status_id");
}

/* The same migration with the up mapping as a C callback (no down mapping:
 * it never goes past SHADOW), at DUAL_WRITE. */
static dw_migration *open_callback_migration(sqlite3 *db)
{
    static const char *const key[] = {"id"};
    static const char *const old_columns[] = {"organisation_id", "status"};
    static const char *const new_columns[] = {"incident_status_id"};
    dw_options opts = DW_OPTIONS_INIT;
    dw_migration *h = NULL;
    char *err = NULL;

    opts.name = "incident_statuses_c";
    opts.old_side.table = "incidents";
    opts.old_side.key_columns = key;
    opts.old_side.nkey_columns = 1;
    opts.old_side.columns = old_columns;
    opts.old_side.ncolumns = 2;
    opts.new_side.table = "incidents";
    opts.new_side.key_columns = key;
    opts.new_side.nkey_columns = 1;
    opts.new_side.columns = new_columns;
    opts.new_side.ncolumns = 1;
    opts.up_fn = up_status_fn;
    opts.map_version = "bench up_status_fn 1";
    opts.setup_sql = default_statuses_sql;
    opts.reason = "benchmark";
    if (dw_sqlite_open(&h, db, &opts, &err) != DW_OK)
        die("dw_open", err ? err : "(no message)");
    check_dw(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, "bench", 0),
             "dw_stage_set");
    load_status_ids(db);
    return h;
}

static double lib_backfill_callback(bench *b)
{
    double run_max_ms;
    return backfill_through(b, b->h_fn, &run_max_ms);
}

static double lib_verify_callback(bench *b)
{
    return verify_through(b, b->h_fn);
}

/* One SELECT over the source rows, the transform, one prepared UPDATE per
 * row, all in one transaction (the library commits batches of about 20 ms;
 * one transaction is the fastest a loop can be). Updating rows of the
 * table being scanned is safe here: rowids do not change, so no row is
 * met twice. */
static double raw_backfill_loop(bench *b)
{
    sqlite3_stmt *scan =
        prepare(b->db, "SELECT id, organisation_id, status FROM incidents");
    sqlite3_stmt *set_new = prepare(
        b->db, "UPDATE incidents SET incident_status_id = ?1 WHERE id = ?2");
    double t0 = now_s();
    run(b->db, b->begin_immediate);
    int rc;
    while ((rc = sqlite3_step(scan)) == SQLITE_ROW) {
        long long id = status_id_of(sqlite3_column_int64(scan, 1),
                                    sqlite3_column_text(scan, 2),
                                    sqlite3_column_bytes(scan, 2));
        if (id)
            sqlite3_bind_int64(set_new, 1, id);
        else
            sqlite3_bind_null(set_new, 1);
        sqlite3_bind_int64(set_new, 2, sqlite3_column_int64(scan, 0));
        run(b->db, set_new);
    }
    if (rc != SQLITE_DONE)
        die("raw backfill", sqlite3_errmsg(b->db));
    sqlite3_reset(scan);
    run(b->db, b->commit);
    double t = now_s() - t0;
    sqlite3_finalize(scan);
    sqlite3_finalize(set_new);
    return t;
}

/* One SELECT of both models, the transform, a type-exact comparison (an
 * INTEGER or a REAL of the same value, or NULL for no status). */
static double raw_verify_loop(bench *b)
{
    sqlite3_stmt *scan = prepare(b->db, "SELECT organisation_id, status,"
                                        " incident_status_id FROM incidents");
    double t0 = now_s();
    long long differ = 0;
    run(b->db, b->begin);
    int rc;
    while ((rc = sqlite3_step(scan)) == SQLITE_ROW) {
        long long want = status_id_of(sqlite3_column_int64(scan, 0),
                                      sqlite3_column_text(scan, 1),
                                      sqlite3_column_bytes(scan, 1));
        int type = sqlite3_column_type(scan, 2);
        int same = want == 0 ? type == SQLITE_NULL
                   : type == SQLITE_INTEGER
                       ? sqlite3_column_int64(scan, 2) == want
                   : type == SQLITE_FLOAT &&
                         sqlite3_column_double(scan, 2) == (double)want;
        differ += !same;
    }
    if (rc != SQLITE_DONE)
        die("raw verify", sqlite3_errmsg(b->db));
    sqlite3_reset(scan);
    run(b->db, b->commit);
    double t = now_s() - t0;
    sqlite3_finalize(scan);
    if (differ != 0)
        die("raw verify", "the models differ after the backfill");
    return t;
}

/* ------------------------------------------------------------------------ */
/* The longest lock hold of a backfill over a big table                     */
/* ------------------------------------------------------------------------ */

/* One backfill of a fresh table of `rows` rows at `path`: the longest any
 * batch held the write lock, in ms; *seconds receives its time. */
static double big_max_batch_ms(const char *path, long long rows,
                               double *seconds)
{
    double t0 = now_s();
    build_db(path, rows);
    fprintf(stderr, "bench: built %lld incidents in %.1f s\n", rows,
            now_s() - t0);
    bench big;
    memset(&big, 0, sizeof big);
    big.rows = rows;
    big.db = open_db(path);
    big.h = open_migration(big.db);
    check_dw(big.h, dw_stage_set(big.h, DW_STAGE_DUAL_WRITE, "bench", 0),
             "dw_stage_set");
    double run_max_ms;
    *seconds = backfill_through(&big, big.h, &run_max_ms);
    dw_close(big.h);
    if (sqlite3_close(big.db) != SQLITE_OK)
        die("closing", sqlite3_errmsg(big.db));
    char wal[4200];
    remove(path);
    snprintf(wal, sizeof wal, "%s-wal", path);
    remove(wal);
    snprintf(wal, sizeof wal, "%s-shm", path);
    remove(wal);
    return run_max_ms;
}

/* ------------------------------------------------------------------------ */
/* Memory: backfill plus verification in a fresh process                     */
/* ------------------------------------------------------------------------ */

/* The peak resident set of this process (VmHWM), in KiB. */
static long peak_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* Runs in the child: a full backfill and a verification of `path`, then
 * prints the peak resident set. */
static int rss_child(const char *path)
{
    bench b;
    memset(&b, 0, sizeof b);
    b.db = open_db(path);
    b.h = open_migration(b.db);
    b.rows = query_int(b.db, "SELECT count(*) FROM incidents");
    int stage;
    check_dw(b.h, dw_stage_get(&stage, b.h), "dw_stage_get");
    if (stage == DW_STAGE_OFF)
        check_dw(b.h, dw_stage_set(b.h, DW_STAGE_DUAL_WRITE, "bench", 0),
                 "dw_stage_set");
    lib_backfill(&b);
    lib_verify(&b);
    dw_close(b.h);
    sqlite3_close(b.db);
    printf("%ld\n", peak_rss_kib());
    return 0;
}

static long measure_rss(const char *self, const char *path)
{
    int fd[2];
    if (pipe(fd) != 0)
        die("pipe", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        die("fork", strerror(errno));
    if (pid == 0) {
        dup2(fd[1], STDOUT_FILENO);
        close(fd[0]);
        close(fd[1]);
        execl(self, self, "--rss-child", path, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    char buf[64] = {0};
    ssize_t n = read(fd[0], buf, sizeof buf - 1);
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    if (n <= 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("measuring memory", "the child process failed");
    return atol(buf);
}

/* ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------ */
/* The mismatch log: logging a new mismatch with a big log and an empty one */
/* ------------------------------------------------------------------------ */

static dw_migration *log_migration(sqlite3 *db, const char *name)
{
    static const char *const key[] = {"id"};
    static const dw_column_map up[] = {{"v", "v"}};
    dw_options opts = DW_OPTIONS_INIT;
    opts.name = name;
    opts.old_side.table = "log_old";
    opts.old_side.key_columns = key;
    opts.old_side.nkey_columns = 1;
    opts.new_side.table = "log_new";
    opts.new_side.key_columns = key;
    opts.new_side.nkey_columns = 1;
    opts.up = up;
    opts.nup = 1;
    opts.log_cap = 2000000;
    dw_migration *h = NULL;
    char *err = NULL;
    if (dw_sqlite_open(&h, db, &opts, &err) != DW_OK)
        die("dw_open", err ? err : "(no message)");
    check_dw(h, dw_stage_set(h, DW_STAGE_SHADOW, "bench", DW_STAGE_FORCE),
             "dw_stage_set");
    return h;
}

/* Seconds to read keys first..first+n-1, each logging a new mismatch. */
static double log_reads(dw_migration *h, dw_row *row, long long first, int n)
{
    double t0 = now_s();
    for (long long id = first; id < first + n; id++) {
        dw_value key = dw_int(id);
        check_dw(h, dw_read(row, h, &key, 1, NULL, NULL, NULL), "dw_read");
    }
    return now_s() - t0;
}

/* Two migrations over the same disagreeing tables: one whose log holds
 * `entries` entries, one whose log is cleared every round; each round logs
 * `n` new mismatches through each. */
static double mismatch_log_growth(const char *path, long long entries, int n,
                                  int rounds)
{
    char wal[4200];
    remove(path);
    snprintf(wal, sizeof wal, "%s-wal", path);
    remove(wal);
    sqlite3 *db = open_db(path);
    char sql[512];
    snprintf(sql, sizeof sql,
             "CREATE TABLE log_old(id INTEGER PRIMARY KEY, v TEXT);"
             "CREATE TABLE log_new(id INTEGER PRIMARY KEY, v TEXT);"
             "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
             " WHERE x < %d) INSERT INTO log_old SELECT x, 'old' FROM c;"
             "INSERT INTO log_new SELECT id, 'new' FROM log_old;",
             n * rounds);
    exec_sql(db, sql);
    dw_migration *small = log_migration(db, "log_small");
    dw_migration *big = log_migration(db, "log_big");
    /* Filled by hand, with the entry count the library keeps. */
    snprintf(sql, sizeof sql,
             "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
             " WHERE x < %lld) INSERT INTO dw_mismatch_log(migration_id, key,"
             " digest, kind, detail, count, first_seen, last_seen) SELECT"
             " m.id, '[' || -x || ']', 'd', 3, 'filled', 1, 0, 0 FROM c,"
             " dw_migrations m WHERE m.name = 'log_big';"
             "UPDATE dw_migrations SET mismatch_entries = %lld"
             " WHERE name = 'log_big';",
             entries, entries);
    exec_sql(db, sql);
    dw_row *row = NULL;
    check_dw(small, dw_row_new(&row), "dw_row_new");
    double ratios[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) {
        check_dw(small, dw_mismatch_log_clear(small), "dw_mismatch_log_clear");
        double t_small = log_reads(small, row, (long long)r * n + 1, n);
        double t_big = log_reads(big, row, (long long)r * n + 1, n);
        ratios[r] = t_big / t_small;
        if (verbose)
            fprintf(stderr,
                    "bench: round %d: logging with %lld entries %.2f us, "
                    "empty %.2f us\n",
                    r, entries, t_big / n * 1e6, t_small / n * 1e6);
    }
    dw_row_free(row);
    dw_close(small);
    dw_close(big);
    if (sqlite3_close(db) != SQLITE_OK)
        die("closing", sqlite3_errmsg(db));
    remove(path);
    remove(wal);
    return median(ratios, rounds);
}

static void print_max_batch(double ms, long long rows, double seconds)
{
    printf("backfill_max_batch_ms_5m: %.1f\n", ms);
    printf("backfill_max_batch_ms_5m_rows: %lld\n", rows);
    printf("backfill_max_batch_ms_5m_s: %.3f\n", seconds);
    fflush(stdout);
}

static const char *only; /* --only: a comma-separated list of figures */

static int wanted(const char *name)
{
    if (!only)
        return 1;
    size_t n = strlen(name);
    for (const char *p = only; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return 1;
        p += len + (end != NULL);
    }
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench [--rows N] [--rounds N] [--ops N] [--db PATH]"
            " [--only LIST]\n"
            "             [--batch-ms N] [--big-rows [N]] [--no-rss]"
            " [--verbose]\n             [--side lib|raw]\n"
            "  --rows N    incidents in the table (default 1000000)\n"
            "  --rounds N  rounds per figure, the median is printed"
            " (default 7)\n"
            "  --ops N     writes per round for each side, five times as many"
            " reads\n              (default 20000)\n"
            "  --db PATH   the database file (default bench.db; replaced)\n"
            "  --only LIST run only these figures, comma-separated: off_write,"
            " dual_write,\n"
            "              backfill, verify, shadow_read, shadow_read_sampled,"
            " rss,\n              mismatch_log_growth, verify_best,"
            " dual_write_trigger,\n              backfill_routed,"
            " backfill_callback, verify_callback,\n"
            "              backfill_max_batch_ms_5m\n"
            "  --batch-ms N    the backfill's batch target in ms (default:"
            " the library's, 20)\n"
            "  --big-rows [N]  rows of the table backfill_max_batch_ms_5m"
            " builds (default\n              five times rows; alone,"
            " 5000000; 0: the main table)\n"
            "  --verbose   every round's times on stderr\n"
            "  --side lib|raw  time one side only, for a profiler (ratios"
            " are then meaningless)\n"
            "  --no-rss    skip the memory figure (it builds a second"
            " database)\n");
    exit(2);
}

int main(int argc, char **argv)
{
    long long rows = 1000000, big_rows = -1; /* -1: five times rows */
    int rounds = 7, ops = 20000, want_rss = 1;
    const char *path = "bench.db";

    if (argc == 3 && strcmp(argv[1], "--rss-child") == 0)
        return rss_child(argv[2]);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--no-rss") == 0) {
            want_rss = 0;
            continue;
        }
        if (strcmp(a, "--verbose") == 0) {
            verbose = 1;
            continue;
        }
        if (strcmp(a, "--big-rows") == 0) {
            big_rows = 5000000;
            if (v && v[0] != '-') {
                big_rows = atoll(v);
                i++;
            }
            continue;
        }
        if (!v)
            usage();
        i++;
        if (strcmp(a, "--rows") == 0)
            rows = atoll(v);
        else if (strcmp(a, "--rounds") == 0)
            rounds = atoi(v);
        else if (strcmp(a, "--ops") == 0)
            ops = atoi(v);
        else if (strcmp(a, "--db") == 0)
            path = v;
        else if (strcmp(a, "--only") == 0)
            only = v;
        else if (strcmp(a, "--batch-ms") == 0)
            batch_ms = atoi(v);
        else if (strcmp(a, "--side") == 0 && strcmp(v, "lib") == 0)
            skip_raw = 1;
        else if (strcmp(a, "--side") == 0 && strcmp(v, "raw") == 0)
            skip_lib = 1;
        else
            usage();
    }
    if (rows < 1000 || rounds < 1 || rounds > MAX_ROUNDS || ops < SLICE ||
        (big_rows > 0 && big_rows < 1000))
        usage();
    if (big_rows < 0)
        big_rows = 5 * rows;

    printf("sqlite_version: %s\n", sqlite3_libversion());
    printf("rows: %lld\n", rows);
    fflush(stdout);
    double t0 = now_s();
    build_db(path, rows);
    fprintf(stderr, "bench: built %lld incidents in %.1f s\n", rows,
            now_s() - t0);

    bench b;
    memset(&b, 0, sizeof b);
    b.rows = rows;
    b.db = open_db(path);
    b.h = open_migration(b.db);
    bench_prepare(&b);
    check_dw(b.h, dw_row_new(&lib_row), "dw_row_new");

    /* OFF: the library only checks the stage around the application's
     * write. */
    if (wanted("off_write"))
        print_figure("off_write",
                     compare_ops(&b, lib_write, raw_write_off, ops, rounds));

    /* DUAL_WRITE: the old side by the DAO, the new through the mapping. */
    check_dw(b.h, dw_stage_set(b.h, DW_STAGE_DUAL_WRITE, "bench", 0),
             "dw_stage_set");
    if (wanted("dual_write"))
        print_figure("dual_write",
                     compare_ops(&b, lib_write, raw_write_dual, ops, rounds));

    /* Backfill and verification of the whole table. */
    if (wanted("backfill")) {
        figure f = compare_whole(&b, lib_backfill, raw_backfill,
                                 clear_new_model, rounds);
        printf("backfill_ratio: %.3f\n", f.ratio);
        printf("backfill_max_batch_ms: %.1f\n", max_batch_ms);
        printf("backfill_s: %.3f\nbackfill_raw_s: %.3f\n", f.lib_us,
               f.raw_us);
        fflush(stdout);
    }
    /* Everything after this needs both models equal. */
    lib_backfill(&b);
    if (wanted("verify")) {
        figure f =
            compare_whole(&b, lib_verify, raw_verify, NULL, rounds);
        printf("verify_ratio: %.3f\n", f.ratio);
        printf("verify_s: %.3f\nverify_raw_s: %.3f\n", f.lib_us, f.raw_us);
        fflush(stdout);
    }

    /* SHADOW: both models read and compared on every read, then 1%. */
    check_dw(b.h, dw_stage_set(b.h, DW_STAGE_SHADOW, "bench", 0),
             "dw_stage_set");
    /* Reads take a fifth of a write's time: five times as many of them
     * give each round as long a measurement. */
    if (wanted("shadow_read"))
        print_figure("shadow_read", compare_ops(&b, lib_read, raw_read_compare,
                                                5 * ops, rounds));
    dw_read_options ro = DW_READ_OPTIONS_INIT;
    ro.sample_ratio = 0.01;
    check_dw(b.h, dw_set_read_options(b.h, &ro), "dw_set_read_options");
    if (wanted("shadow_read_sampled"))
        print_figure("shadow_read_sampled",
                     compare_ops(&b, lib_read, raw_read, 5 * ops, rounds));
    dw_metrics m;
    memset(&m, 0, sizeof m);
    m.version = DW_METRICS_VERSION;
    check_dw(b.h, dw_metrics_get(&m, b.h), "dw_metrics_get");
    if (m.mismatches != 0 || m.compare_errors != 0 || raw_mismatches != 0)
        die("shadow reads", "the models disagreed");

    /* The figures below came later: they run after the others so that
     * those meet the database as they always did. The models are equal
     * here. */
    if (wanted("verify_best"))
        print_whole("verify_best",
                    compare_whole(&b, lib_verify, raw_verify_best, NULL,
                                  rounds),
                    "raw");
    check_dw(b.h, dw_stage_set(b.h, DW_STAGE_DUAL_WRITE, "bench", 0),
             "dw_stage_set");
    if (wanted("dual_write_trigger")) {
        print_figure("dual_write_trigger",
                     compare_ops_entering(&b, lib_write, raw_write_off,
                                          enter_triggers, ops, rounds));
        enter_triggers(&b, 1); /* dropped */
        raw_verify_best(&b);   /* both sides mirrored every write */
    }
    if (wanted("backfill_routed")) {
        /* Both sides through the library: "raw" is the backfill with no
         * override, so the ratio is unrouted time / routed time. */
        print_whole("backfill_routed",
                    compare_whole(&b, lib_backfill_routed,
                                  lib_backfill_unrouted, NULL, rounds),
                    "plain");
        route_keys(&b, 0);
        lib_backfill(&b);
    }
    if (wanted("backfill_callback") || wanted("verify_callback")) {
        b.h_fn = open_callback_migration(b.db);
        if (wanted("backfill_callback"))
            print_whole("backfill_callback",
                        compare_whole(&b, lib_backfill_callback,
                                      raw_backfill_loop, clear_new_model,
                                      rounds),
                        "raw");
        raw_verify_best(&b); /* whichever side ran last copied every row */
        /* Either side of the last round left the models equal. */
        if (wanted("verify_callback"))
            print_whole("verify_callback",
                        compare_whole(&b, lib_verify_callback,
                                      raw_verify_loop, NULL, rounds),
                        "raw");
        dw_close(b.h_fn);
        b.h_fn = NULL;
    }
    if (wanted("backfill_max_batch_ms_5m") && big_rows == 0) {
        /* --big-rows 0: from this table, not a table of its own. */
        double run_max_ms;
        clear_new_model(&b);
        double seconds = backfill_through(&b, b.h, &run_max_ms);
        print_max_batch(run_max_ms, rows, seconds);
    }

    dw_row_free(lib_row);
    bench_finalize(&b);
    dw_close(b.h);
    if (sqlite3_close(b.db) != SQLITE_OK)
        die("closing", sqlite3_errmsg(b.db));

    if (wanted("backfill_max_batch_ms_5m") && big_rows != 0) {
        char big_path[4096];
        double seconds;
        snprintf(big_path, sizeof big_path, "%s.big", path);
        double ms = big_max_batch_ms(big_path, big_rows, &seconds);
        print_max_batch(ms, big_rows, seconds);
    }

    if (wanted("mismatch_log_growth")) {
        char log_path[4096];
        snprintf(log_path, sizeof log_path, "%s.log", path);
        printf("mismatch_log_growth_ratio: %.3f\n",
               mismatch_log_growth(log_path, rows, ops / 10 > 0 ? ops / 10 : 1,
                                   rounds));
        fflush(stdout);
    }

    if (want_rss && wanted("rss")) {
        /* Backfill plus verification at rows / 10 and at rows, each in a
         * fresh process. */
        char small[4096];
        snprintf(small, sizeof small, "%s.small", path);
        build_db(small, rows / 10);
        long kib_1x = measure_rss("/proc/self/exe", small);
        build_db(path, rows);
        long kib_10x = measure_rss("/proc/self/exe", path);
        printf("rss_growth_ratio: %.3f\n", (double)kib_10x / (double)kib_1x);
        printf("rss_1x_kib: %ld\nrss_10x_kib: %ld\n", kib_1x, kib_10x);
        remove(small);
    }
    return EXIT_SUCCESS;
}
