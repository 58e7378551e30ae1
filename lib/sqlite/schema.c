/* The SQLite backend's schema work: the library's state tables, created,
 * upgraded and put back. (The application's tables are described in
 * catalog.c.) */
#include <stdio.h>

#include "backend.h"

/* Version 2 (0.2) added the backfill, verification and contract state;
 * version 3 (0.3) the key routing; version 4 the mismatch log's entry
 * count and who runs a backfill. */
#define STATE_SCHEMA_VERSION 4

/* The columns version 4 added to dw_backfill: the process that stored the
 * last batch. */
#define STATE_RUNNER_COLUMNS                                                   \
    ",  runner_pid INTEGER NOT NULL DEFAULT 0,"                                \
    "  runner_host TEXT NOT NULL DEFAULT ''"

/* The tables version 2 added; created by the upgrade from version 1 too
 * (as version 2 had them: later columns come with later upgrades, and with
 * a fresh creation). Keys are stored as key text ([42], ["org-7",3]) and
 * read back typed by the core (dw__key_parse(), lib/keytext.c). */
#define STATE_DDL_V2_TABLES STATE_DDL_V2_TABLES_WITH("")
#define STATE_DDL_V2_TABLES_WITH(backfill_columns)                             \
    "CREATE TABLE IF NOT EXISTS dw_backfill("                                  \
    "  migration_id INTEGER PRIMARY KEY REFERENCES dw_migrations(id),"         \
    "  source INTEGER NOT NULL,"                                               \
    "  state TEXT NOT NULL CHECK (state IN ('running', 'done', 'stale')),"     \
    "  cursor TEXT,"                                                           \
    "  end_key TEXT,"                                                          \
    "  rows_done INTEGER NOT NULL DEFAULT 0,"                                  \
    "  rows_total INTEGER NOT NULL DEFAULT 0,"                                 \
    "  rows_written INTEGER NOT NULL DEFAULT 0,"                               \
    "  rows_deleted INTEGER NOT NULL DEFAULT 0,"                               \
    "  batches INTEGER NOT NULL DEFAULT 0,"                                    \
    "  started REAL NOT NULL,"                                                 \
    "  updated REAL NOT NULL,"                                                 \
    "  finished REAL,"                                                         \
    "  verify_after INTEGER NOT NULL DEFAULT 0" backfill_columns ");"          \
    "CREATE TABLE IF NOT EXISTS dw_verify_runs("                               \
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"                                  \
    "  migration_id INTEGER NOT NULL REFERENCES dw_migrations(id),"            \
    "  started REAL NOT NULL,"                                                 \
    "  seconds REAL,"                                                          \
    "  full INTEGER NOT NULL,"                                                 \
    "  range_from TEXT,"                                                       \
    "  range_to TEXT,"                                                         \
    "  finished INTEGER NOT NULL DEFAULT 0,"                                   \
    "  keys INTEGER NOT NULL DEFAULT 0,"                                       \
    "  missing INTEGER NOT NULL DEFAULT 0,"                                    \
    "  extra INTEGER NOT NULL DEFAULT 0,"                                      \
    "  different INTEGER NOT NULL DEFAULT 0);"                                 \
    "CREATE INDEX IF NOT EXISTS dw_verify_runs_by_migration"                   \
    "  ON dw_verify_runs(migration_id, id);"                                   \
    "CREATE TABLE IF NOT EXISTS dw_verify_keys("                               \
    "  run_id INTEGER NOT NULL REFERENCES dw_verify_runs(id),"                 \
    "  key TEXT NOT NULL,"                                                     \
    "  kind INTEGER NOT NULL,"                                                 \
    "  detail TEXT,"                                                           \
    "  repaired INTEGER NOT NULL DEFAULT 0,"                                   \
    "  PRIMARY KEY (run_id, key)) WITHOUT ROWID;"

/* The table version 3 added: per-key stage overrides (promoted = 1 when a
 * write set it). */
#define STATE_DDL_V3_TABLES                                                    \
    "CREATE TABLE IF NOT EXISTS dw_overrides("                                 \
    "  migration_id INTEGER NOT NULL REFERENCES dw_migrations(id),"            \
    "  key TEXT NOT NULL,"                                                     \
    "  stage INTEGER NOT NULL CHECK (stage BETWEEN 0 AND 5),"                  \
    "  promoted INTEGER NOT NULL DEFAULT 0,"                                   \
    "  time REAL NOT NULL,"                                                    \
    "  PRIMARY KEY (migration_id, key)) WITHOUT ROWID;"

/* The routing columns of dw_migrations (version 3). */
#define STATE_ROUTING_COLUMNS                                                  \
    "  canary_buckets INTEGER NOT NULL DEFAULT 0,"                             \
    "  canary_stage INTEGER NOT NULL DEFAULT 0,"                               \
    "  canary_cohort TEXT,"                                                    \
    "  promote_stage INTEGER NOT NULL DEFAULT -1,"                             \
    "  overrides INTEGER NOT NULL DEFAULT 0"

/* From version 1 (0.1): new columns, then the new tables. */
static const char state_upgrade_v1[] =
    "ALTER TABLE dw_migrations ADD COLUMN contracted INTEGER NOT NULL "
    "  DEFAULT 0;"
    "ALTER TABLE dw_history ADD COLUMN detail TEXT;" STATE_DDL_V2_TABLES
    "UPDATE dw_meta SET value = 2 WHERE key = 'schema_version';";

/* From version 2 (0.2): the routing columns and the overrides table. */
static const char state_upgrade_v2[] =
    "ALTER TABLE dw_migrations ADD COLUMN canary_buckets INTEGER NOT NULL "
    "  DEFAULT 0;"
    "ALTER TABLE dw_migrations ADD COLUMN canary_stage INTEGER NOT NULL "
    "  DEFAULT 0;"
    "ALTER TABLE dw_migrations ADD COLUMN canary_cohort TEXT;"
    "ALTER TABLE dw_migrations ADD COLUMN promote_stage INTEGER NOT NULL "
    "  DEFAULT -1;"
    "ALTER TABLE dw_migrations ADD COLUMN overrides INTEGER NOT NULL "
    "  DEFAULT 0;" STATE_DDL_V3_TABLES
    "UPDATE dw_meta SET value = 3 WHERE key = 'schema_version';";

/* From version 3 (0.3): the log's entry count, kept with each insert and
 * clear, so that the cap is checked without counting the log; and who runs
 * a backfill. */
static const char state_upgrade_v3[] =
    "ALTER TABLE dw_migrations ADD COLUMN mismatch_entries INTEGER NOT NULL "
    "  DEFAULT 0;"
    "UPDATE dw_migrations SET mismatch_entries = (SELECT count(*) FROM "
    "  dw_mismatch_log WHERE migration_id = dw_migrations.id);"
    "ALTER TABLE dw_backfill ADD COLUMN runner_pid INTEGER NOT NULL "
    "  DEFAULT 0;"
    "ALTER TABLE dw_backfill ADD COLUMN runner_host TEXT NOT NULL "
    "  DEFAULT '';"
    "UPDATE dw_meta SET value = 4 WHERE key = 'schema_version';";

static const char state_ddl[] =
    "CREATE TABLE IF NOT EXISTS dw_meta("
    "  key TEXT PRIMARY KEY, value NOT NULL);"
    "INSERT INTO dw_meta(key, value) VALUES('schema_version', 4)"
    "  ON CONFLICT(key) DO NOTHING;"
    "CREATE TABLE IF NOT EXISTS dw_migrations("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  stage INTEGER NOT NULL CHECK (stage BETWEEN 0 AND 5),"
    "  spec TEXT NOT NULL,"
    "  spec_digest TEXT NOT NULL,"
    "  created REAL NOT NULL,"
    "  updated REAL NOT NULL,"
    "  mismatch_dropped INTEGER NOT NULL DEFAULT 0,"
    "  contracted INTEGER NOT NULL DEFAULT 0," STATE_ROUTING_COLUMNS ","
    "  mismatch_entries INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS dw_history("
    "  id INTEGER PRIMARY KEY,"
    "  migration_id INTEGER NOT NULL REFERENCES dw_migrations(id),"
    "  time REAL NOT NULL,"
    "  event TEXT NOT NULL,"
    "  from_stage INTEGER,"
    "  to_stage INTEGER,"
    "  forced INTEGER NOT NULL DEFAULT 0,"
    "  reason TEXT,"
    "  detail TEXT);"
    "CREATE INDEX IF NOT EXISTS dw_history_by_migration"
    "  ON dw_history(migration_id, id);"
    "CREATE TABLE IF NOT EXISTS dw_repair_queue("
    "  migration_id INTEGER NOT NULL REFERENCES dw_migrations(id),"
    "  key TEXT NOT NULL,"
    "  side INTEGER NOT NULL,"
    "  error TEXT,"
    "  attempts INTEGER NOT NULL,"
    "  first_seen REAL NOT NULL,"
    "  last_seen REAL NOT NULL,"
    "  PRIMARY KEY (migration_id, key)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS dw_mismatch_log("
    "  migration_id INTEGER NOT NULL REFERENCES dw_migrations(id),"
    "  key TEXT NOT NULL,"
    "  digest TEXT NOT NULL,"
    "  kind INTEGER NOT NULL,"
    "  detail TEXT NOT NULL,"
    "  count INTEGER NOT NULL,"
    "  first_seen REAL NOT NULL,"
    "  last_seen REAL NOT NULL,"
    "  PRIMARY KEY (migration_id, key, digest)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS dw_mismatch_log_by_time"
    "  ON dw_mismatch_log(migration_id, last_seen);"
    STATE_DDL_V2_TABLES_WITH(STATE_RUNNER_COLUMNS) STATE_DDL_V3_TABLES;

const char *const dw__sqlite_state_tables[] = {
    "dw_meta",        "dw_migrations", "dw_history",     "dw_repair_queue",
    "dw_mismatch_log", "dw_backfill",  "dw_verify_runs", "dw_verify_keys",
    "dw_overrides",   NULL};

#define NSTATE_TABLES                                                          \
    ((int)(sizeof dw__sqlite_state_tables / sizeof *dw__sqlite_state_tables) - \
     1)

/* Runs a script of the library's own DDL (no double-quoted tokens in it, so
 * the connection's setting does not matter and is left alone). */
static int run_script(dw_migration *h, const char *sql, const char *what)
{
    int rc = sqlite3_exec(h->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? DW_OK
                           : dw__sqlite_error(h, rc, DW_SIDE_NONE, what);
}

int dw__sqlite_state_init(dw_migration *h)
{
    /* Creating a table that exists changes nothing, so only create when
     * one is missing: a fully set-up database sees no DDL at all. */
    sqlite3_stmt *st = NULL;
    int rc = dw__prepare(h,
                         "SELECT count(*) FROM sqlite_schema WHERE type = "
                         "'table' AND name IN ('dw_meta', 'dw_migrations', "
                         "'dw_history', 'dw_repair_queue', 'dw_mismatch_log', "
                         "'dw_backfill', 'dw_verify_runs', 'dw_verify_keys', "
                         "'dw_overrides')",
                         &st, NULL);
    int present = 0;
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        present = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK)
        return dw__sqlite_error(h, rc, DW_SIDE_NONE,
                                "reading the schema");
    /* dw_open()'s read-only attempt: anything to create, upgrade or put
     * back takes its write attempt. */
    int read_only = !BK(h)->write;
    /* A version 1 database has five of them; its upgrade adds the rest. */
    if (present == 0) {
        if (read_only)
            return DW__NEED_WRITE;
        if ((rc = run_script(h, state_ddl, "creating the state tables")) !=
            DW_OK)
            return rc;
        present = NSTATE_TABLES;
    }
    /* Upgrades run one version at a time, each in the caller's write
     * transaction (dw_open's write attempt holds one), so a failure keeps
     * the old version. */
    static const char *const upgrades[] = {NULL, state_upgrade_v1,
                                           state_upgrade_v2, state_upgrade_v3};
    int version = 0;
    for (;;) {
        st = dw__stmt(h, ST_SCHEMA_VERSION);
        if (!st)
            return h->errcode;
        rc = sqlite3_step(st);
        version = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
        sqlite3_reset(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return dw__sqlite_error(h, rc, DW_SIDE_NONE,
                                    "reading the state schema version");
        if (version >= 1 && version < STATE_SCHEMA_VERSION) {
            if (read_only)
                return DW__NEED_WRITE;
            char what[64];
            snprintf(what, sizeof what,
                     "upgrading the state tables from version %d", version);
            if ((rc = run_script(h, upgrades[version], what)) != DW_OK)
                return rc;
            present = -1; /* recount after the upgrade */
            continue;
        }
        break;
    }
    if (version == STATE_SCHEMA_VERSION && present != NSTATE_TABLES &&
        present != -1) {
        /* Some were dropped by hand: put back what is missing. */
        if (read_only)
            return DW__NEED_WRITE;
        if ((rc = run_script(h, state_ddl, "creating the state tables")) !=
            DW_OK)
            return rc;
    }
    if (version != STATE_SCHEMA_VERSION)
        return dw__error(h, DW_ERROR, DW_SIDE_NONE,
                         "the state tables are at schema version %d; this "
                         "library (%s) knows version %d",
                         version, DW_VERSION, STATE_SCHEMA_VERSION);
    return DW_OK;
}

int dw__state_schema_version(void) { return STATE_SCHEMA_VERSION; }

