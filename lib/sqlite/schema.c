/* The SQLite backend's schema work: the library's state tables, and checking
 * a spec against the application's schema. Every name is looked up with
 * bound parameters (pragma table-valued functions) and quoted when used. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

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
 * read back typed with json_each(). */
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

static const char *const state_tables[] = {
    "dw_meta",        "dw_migrations", "dw_history",     "dw_repair_queue",
    "dw_mismatch_log", "dw_backfill",  "dw_verify_runs", "dw_verify_keys",
    "dw_overrides"};

#define NSTATE_TABLES ((int)(sizeof state_tables / sizeof *state_tables))

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

/* ---- the application's schema ------------------------------------------------ */

typedef struct table_info {
    char *name; /* as the schema spells it */
    int ncols;
    char **cols;
    int *pk;     /* position in the primary key, 0 when not in it */
    int *hidden; /* 0 normal, 2 or 3 generated */
} table_info;

static void table_info_free(table_info *t)
{
    for (int i = 0; i < t->ncols; i++)
        dw__free(t->cols[i]);
    dw__free(t->cols);
    dw__free(t->pk);
    dw__free(t->hidden);
    dw__free(t->name);
    memset(t, 0, sizeof *t);
}

static int load_table(dw_migration *h, int side, table_info *t)
{
    const char *table = h->spec.side[side].table;
    const char *which = dw__side_word(side);
    sqlite3_stmt *st = NULL;
    int rc;

    if (sqlite3_strnicmp(table, "sqlite_", 7) == 0)
        return dw__error(h, DW_ESCHEMA, side,
                         "%s side: table \"%s\" has the reserved sqlite_ "
                         "prefix",
                         which, table);
    for (size_t i = 0; i < sizeof state_tables / sizeof *state_tables; i++)
        if (sqlite3_stricmp(table, state_tables[i]) == 0)
            return dw__error(h, DW_ESCHEMA, side,
                             "%s side: \"%s\" is one of libdualwrite's own "
                             "state tables",
                             which, table);

    rc = dw__prepare(h,
                     "SELECT name, type FROM main.sqlite_schema WHERE name = "
                     "?1 COLLATE NOCASE AND type IN ('table', 'view')",
                     &st, NULL);
    if (rc != SQLITE_OK)
        return dw__sqlite_error(h, rc, side, "reading the schema");
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_finalize(st);
        return dw__error(h, DW_ESCHEMA, side, "%s side: no such table: \"%s\"",
                         which, table);
    }
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return dw__sqlite_error(h, rc, side, "reading the schema");
    }
    const char *type = (const char *)sqlite3_column_text(st, 1);
    if (!type) {
        sqlite3_finalize(st);
        return dw__error(h, DW_ENOMEM, side, "out of memory");
    }
    if (strcmp(type, "view") == 0) {
        sqlite3_finalize(st);
        return dw__error(h, DW_ESCHEMA, side,
                         "%s side: \"%s\" is a view; a side must be a table",
                         which, table);
    }
    t->name = dw__strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    if (!t->name)
        return dw__error(h, DW_ENOMEM, side, "out of memory");

    rc = dw__prepare(h,
                     "SELECT name, pk, hidden FROM pragma_table_xinfo(?1) "
                     "ORDER BY cid",
                     &st, NULL);
    if (rc != SQLITE_OK)
        return dw__sqlite_error(h, rc, side, "reading the table's columns");
    sqlite3_bind_text(st, 1, t->name, -1, SQLITE_STATIC);
    int cap = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (t->ncols == cap) {
            cap = cap ? cap * 2 : 16;
            char **cols = dw__realloc(t->cols, sizeof(char *) * (size_t)cap);
            if (cols)
                t->cols = cols;
            int *pk = cols ? dw__realloc(t->pk, sizeof(int) * (size_t)cap) : NULL;
            if (pk)
                t->pk = pk;
            int *hid = pk ? dw__realloc(t->hidden, sizeof(int) * (size_t)cap)
                          : NULL;
            if (hid)
                t->hidden = hid;
            if (!hid) {
                sqlite3_finalize(st);
                return dw__error(h, DW_ENOMEM, side, "out of memory");
            }
        }
        t->cols[t->ncols] = dw__strdup((const char *)sqlite3_column_text(st, 0));
        if (!t->cols[t->ncols]) {
            sqlite3_finalize(st);
            return dw__error(h, DW_ENOMEM, side, "out of memory");
        }
        t->pk[t->ncols] = sqlite3_column_int(st, 1);
        t->hidden[t->ncols] = sqlite3_column_int(st, 2);
        t->ncols++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return dw__sqlite_error(h, rc, side, "reading the table's columns");
    return DW_OK;
}

static int find_col(const table_info *t, const char *name)
{
    for (int i = 0; i < t->ncols; i++)
        if (sqlite3_stricmp(t->cols[i], name) == 0)
            return i;
    return -1;
}

/* Replaces each name with the schema's spelling; fails on unknown names. */
static int canonical_names(dw_migration *h, int side, const table_info *t,
                           char **names, int n, const char *what)
{
    for (int i = 0; i < n; i++) {
        int c = find_col(t, names[i]);
        if (c < 0)
            return dw__error(h, DW_ESCHEMA, side,
                             "%s side: table \"%s\" has no %scolumn \"%s\"",
                             dw__side_word(side), t->name, what, names[i]);
        for (int j = 0; j < i; j++)
            if (sqlite3_stricmp(names[j], t->cols[c]) == 0)
                return dw__error(h, DW_EMISUSE, side,
                                 "%s side: column \"%s\" is named twice",
                                 dw__side_word(side), t->cols[c]);
        char *copy = dw__strdup(t->cols[c]);
        if (!copy)
            return dw__error(h, DW_ENOMEM, side, "out of memory");
        dw__free(names[i]);
        names[i] = copy;
    }
    return DW_OK;
}

static int same_set(char **a, int na, char **b, int nb)
{
    if (na != nb)
        return 0;
    for (int i = 0; i < na; i++) {
        int found = 0;
        for (int j = 0; j < nb && !found; j++)
            found = sqlite3_stricmp(a[i], b[j]) == 0;
        if (!found)
            return 0;
    }
    return 1;
}

/* The key must be the primary key or a full (not partial) UNIQUE index, so
 * that it names one row and can be an upsert's conflict target. */
static int key_is_unique(dw_migration *h, int side, const table_info *t,
                         int *unique)
{
    const dw_side_def *d = &h->spec.side[side];
    char *pk[64];
    int npk = 0, wide = 0;
    *unique = 0;
    for (int i = 0; i < t->ncols; i++)
        if (t->pk[i] > 0 && !(wide = npk == 64))
            pk[npk++] = t->cols[i];
    /* A primary key wider than any key can be is never the key: comparing
     * its first 64 columns would take part of it for the whole. */
    if (npk > 0 && !wide && same_set(d->key, d->nkey, pk, npk)) {
        *unique = 1;
        return DW_OK;
    }

    sqlite3_stmt *list = NULL, *info = NULL;
    int rc = dw__prepare(h,
                         "SELECT name FROM pragma_index_list(?1) WHERE "
                         "`unique` AND NOT partial",
                         &list, NULL);
    if (rc == SQLITE_OK)
        rc = dw__prepare(h, "SELECT name FROM pragma_index_info(?1)", &info,
                         NULL);
    if (rc != SQLITE_OK)
        goto fail;
    sqlite3_bind_text(list, 1, t->name, -1, SQLITE_STATIC);
    while (!*unique && (rc = sqlite3_step(list)) == SQLITE_ROW) {
        char *cols[64];
        int ncols = 0, expression = 0;
        sqlite3_bind_text(info, 1, (const char *)sqlite3_column_text(list, 0),
                          -1, SQLITE_TRANSIENT);
        while ((rc = sqlite3_step(info)) == SQLITE_ROW) {
            const char *name = (const char *)sqlite3_column_text(info, 0);
            if (!name || ncols == 64)
                expression = 1;
            else if (!(cols[ncols++] = dw__strdup(name)))
                expression = 1, rc = SQLITE_NOMEM;
        }
        sqlite3_reset(info);
        if (rc == SQLITE_DONE && !expression)
            *unique = same_set(d->key, d->nkey, cols, ncols);
        for (int i = 0; i < ncols; i++)
            dw__free(cols[i]);
        if (rc != SQLITE_DONE)
            goto fail;
        rc = SQLITE_ROW;
    }
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        rc = SQLITE_OK;
fail:
    sqlite3_finalize(list);
    sqlite3_finalize(info);
    if (rc != SQLITE_OK)
        return dw__sqlite_error(h, rc, side, "reading the table's indexes");
    return DW_OK;
}

static int check_side(dw_migration *h, int side, table_info *t)
{
    dw_spec *s = &h->spec;
    dw_side_def *d = &s->side[side];
    const char *which = dw__side_word(side);
    int rc = load_table(h, side, t);
    if (rc != DW_OK)
        return rc;
    char *table = dw__strdup(t->name);
    if (!table)
        return dw__error(h, DW_ENOMEM, side, "out of memory");
    dw__free(d->table);
    d->table = table;

    if ((rc = canonical_names(h, side, t, d->key, d->nkey, "key ")) != DW_OK)
        return rc;
    int unique;
    if ((rc = key_is_unique(h, side, t, &unique)) != DW_OK)
        return rc;
    if (!unique)
        return dw__error(h, DW_ESCHEMA, side,
                         "%s side: the key columns of table \"%s\" are not "
                         "unique: they must be its PRIMARY KEY or a UNIQUE "
                         "index (not partial)",
                         which, t->name);

    if (d->ncols < 0) {
        /* Default columns: an SQL mapping's targets, else every non-key,
         * non-generated column. */
        int target_map = s->raw_map[side] != NULL;
        if (!target_map && s->same_table)
            return dw__error(h, DW_EMISUSE, side,
                             "%s side: when both sides are one table, list "
                             "each side's columns",
                             which);
        int n = target_map ? s->nraw_map[side] : t->ncols;
        d->cols = dw__calloc(sizeof(char *) * (size_t)(n ? n : 1));
        if (!d->cols)
            return dw__error(h, DW_ENOMEM, side, "out of memory");
        d->ncols = 0;
        for (int i = 0; i < n; i++) {
            const char *name = target_map ? s->raw_map[side][i].column
                                          : t->cols[i];
            if (!target_map) {
                int is_key = 0;
                for (int k = 0; k < d->nkey; k++)
                    is_key |= sqlite3_stricmp(d->key[k], name) == 0;
                if (is_key || t->hidden[i] != 0)
                    continue;
            }
            if (!(d->cols[d->ncols] = dw__strdup(name)))
                return dw__error(h, DW_ENOMEM, side, "out of memory");
            d->ncols++;
        }
    }
    if ((rc = canonical_names(h, side, t, d->cols, d->ncols, "")) != DW_OK)
        return rc;
    /* A side of the key alone (a link table) is compared by presence; in
     * one table the row is both sides', so that side would have nothing
     * of its own to write or compare. */
    if (d->ncols == 0 && s->same_table)
        return dw__error(h, DW_EMISUSE, side,
                         "%s side: no model columns besides the key; both "
                         "sides are table \"%s\", which shares its rows "
                         "between them, so each side needs columns of its "
                         "own",
                         which, t->name);
    for (int i = 0; i < d->ncols; i++) {
        for (int k = 0; k < d->nkey; k++)
            if (sqlite3_stricmp(d->cols[i], d->key[k]) == 0)
                return dw__error(h, DW_EMISUSE, side,
                                 "%s side: key column \"%s\" is also listed "
                                 "as a model column",
                                 which, d->cols[i]);
        int c = find_col(t, d->cols[i]);
        if (s->map[side].present && t->hidden[c] != 0)
            return dw__error(h, DW_ESCHEMA, side,
                             "%s side: column \"%s\" is generated and cannot "
                             "be written by a mapping",
                             which, d->cols[i]);
    }
    return DW_OK;
}

/* After the contract the old table is gone: its side is taken from the
 * stored spec (names as the schema spelled them when it was defined). */
static int old_side_from_store(dw_migration *h)
{
    dw_side_def *d = &h->spec.side[DW_SIDE_OLD];
    sqlite3_stmt *st = NULL;
    int rc = dw__prepare(h,
                         "SELECT json_extract(spec, '$.old.table'), "
                         "json_extract(spec, '$.old.columns') FROM "
                         "dw_migrations WHERE name = ?1",
                         &st, NULL);
    if (rc != SQLITE_OK)
        return dw__sqlite_error(h, rc, DW_SIDE_OLD, "reading the stored spec");
    sqlite3_bind_text(st, 1, h->spec.name, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    const char *table = rc == SQLITE_ROW
                            ? (const char *)sqlite3_column_text(st, 0)
                            : NULL;
    const char *cols = rc == SQLITE_ROW
                           ? (const char *)sqlite3_column_text(st, 1)
                           : NULL;
    int result = DW_OK;
    if (!table || !cols)
        result = dw__error(h, DW_ERROR, DW_SIDE_OLD,
                           "old side: the stored spec of \"%s\" cannot be "
                           "read",
                           h->spec.name);
    else if (sqlite3_stricmp(table, d->table) != 0)
        result = dw__error(h, DW_ESPEC, DW_SIDE_OLD,
                           "old side: migration \"%s\" was contracted with "
                           "old table \"%s\", not \"%s\"",
                           h->spec.name, table, d->table);
    char *tcopy = result == DW_OK ? dw__strdup(table) : NULL;
    char *ccopy = result == DW_OK ? dw__strdup(cols) : NULL;
    sqlite3_finalize(st);
    if (result == DW_OK && (!tcopy || !ccopy))
        result = dw__error(h, DW_ENOMEM, DW_SIDE_OLD, "out of memory");
    if (result != DW_OK) {
        dw__free(tcopy);
        dw__free(ccopy);
        return result;
    }
    dw__free(d->table);
    d->table = tcopy;
    if (d->ncols < 0) {
        /* Default columns: those stored. */
        rc = dw__prepare(h, "SELECT value FROM json_each(?1)", &st, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_text(st, 1, ccopy, -1, SQLITE_STATIC);
            d->cols = dw__calloc(sizeof(char *) * (strlen(ccopy) + 1));
            d->ncols = 0;
            if (!d->cols)
                rc = SQLITE_NOMEM;
            while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *name = (const char *)sqlite3_column_text(st, 0);
                if (!name || !(d->cols[d->ncols] = dw__strdup(name)))
                    rc = SQLITE_NOMEM;
                else
                    d->ncols++, rc = SQLITE_OK;
            }
            if (rc == SQLITE_DONE)
                rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_OK) {
            dw__free(ccopy);
            return dw__sqlite_error(h, rc, DW_SIDE_OLD,
                                    "reading the stored spec");
        }
    }
    dw__free(ccopy);
    return DW_OK;
}

/* Whether a prepared setup statement only changes rows. Prepared, its
 * first word is its kind; WITH leads only SELECT or the row changes, and
 * of those only a SELECT is read-only. (An authorizer would see each
 * action, but the connection is the application's: installing one would
 * drop the application's own.) */
static int setup_is_dml(sqlite3_stmt *st, const char *text)
{
    static const char *const dml[] = {"INSERT", "REPLACE", "UPDATE",
                                      "DELETE", "WITH"};
    for (size_t i = 0; i < sizeof dml / sizeof *dml; i++) {
        int n = (int)strlen(dml[i]);
        if (sqlite3_strnicmp(text, dml[i], n) == 0 &&
            !(isalnum((unsigned char)text[n]) || text[n] == '_'))
            return !sqlite3_stmt_readonly(st);
    }
    return 0;
}

/* Prepares each statement of the spec's setup SQL, so a typo shows at
 * open rather than at the first backfill, and refuses all but row
 * changes: it runs at stage moves, inside the library's transaction. */
static int check_setup(dw_migration *h)
{
    const char *sql = h->spec.setup_sql;
    for (int n = 1; sql && *sql; n++) {
        sqlite3_stmt *st = NULL;
        const char *tail = NULL;
        int rc = dw__prepare_strict(h, sql, &st, &tail);
        if (rc == SQLITE_NOMEM)
            return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
        if (rc != SQLITE_OK)
            return dw__error(h, DW_ESCHEMA, DW_SIDE_NONE, "setup SQL: %s",
                             sqlite3_errmsg(h->db));
        const char *text = dw_sql_skip_space(sql);
        int dml = !st || setup_is_dml(st, text);
        sqlite3_finalize(st);
        if (!dml) {
            int len = (int)((tail ? tail : text + strlen(text)) - text);
            while (len > 0 && (isspace((unsigned char)text[len - 1]) ||
                               text[len - 1] == ';'))
                len--;
            return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                             "setup SQL statement %d (%.*s%s) is not an "
                             "INSERT, UPDATE or DELETE: the setup only "
                             "changes rows, never the schema, the "
                             "connection or the transaction",
                             n, len > 80 ? 80 : len, text,
                             len > 80 ? "..." : "");
        }
        if (!tail || tail == sql)
            break;
        sql = tail;
    }
    return DW_OK;
}

/* Aligns SQL expressions with the target's columns and checks that each
 * prepares on its own, read-only, as one expression (unless its source
 * table was dropped by the contract). */
static int check_mapping(dw_migration *h, int target)
{
    dw_spec *s = &h->spec;
    dw_side_def *d = &s->side[target];
    int source = target == DW_SIDE_NEW ? DW_SIDE_OLD : DW_SIDE_NEW;
    const char *which = target == DW_SIDE_NEW ? "up" : "down";
    dw_map_def *map = &s->map[target];
    if (!map->present && d->ncols == 0) {
        /* A target of the key alone: its row is the source's key, an SQL
         * mapping of no expressions. */
        if (!(map->exprs = dw__calloc(sizeof(char *))))
            return dw__error(h, DW_ENOMEM, target, "out of memory");
        map->present = map->implied = 1;
        return DW_OK;
    }
    if (map->none_given)
        return dw__error(h, DW_EMISUSE, target,
                         "%s mapping: {\"sql\":{}} gives no expression, but "
                         "the %s side has model columns besides the key "
                         "(\"%s\"%s); %s",
                         which, dw__side_word(target), d->cols[0],
                         d->ncols > 1 ? ", ..." : "",
                         target == DW_SIDE_NEW
                             ? "an up mapping is required (expressions or "
                               "callback)"
                             : "give an expression for each, or null for no "
                               "down mapping");
    if (!map->present && target == DW_SIDE_NEW)
        return dw__error(h, DW_EMISUSE, target,
                         "an up mapping is required (expressions or "
                         "callback): the new side has model columns "
                         "besides the key");
    if (!s->raw_map[target])
        return DW_OK;
    if (s->nraw_map[target] != d->ncols) {
        /* Name the first column without an expression, or the extra. */
        for (int i = 0; i < d->ncols; i++) {
            int found = 0;
            for (int j = 0; j < s->nraw_map[target] && !found; j++)
                found = sqlite3_stricmp(s->raw_map[target][j].column,
                                        d->cols[i]) == 0;
            if (!found)
                return dw__error(h, DW_EMISUSE, target,
                                 "%s mapping: no expression for %s column "
                                 "\"%s\"",
                                 which, dw__side_word(target), d->cols[i]);
        }
    }
    s->map[target].exprs =
        dw__calloc(sizeof(char *) * (size_t)(d->ncols ? d->ncols : 1));
    if (!s->map[target].exprs)
        return dw__error(h, DW_ENOMEM, target, "out of memory");
    for (int j = 0; j < s->nraw_map[target]; j++) {
        const dw_column_map *m = &s->raw_map[target][j];
        int i;
        for (i = 0; i < d->ncols; i++)
            if (sqlite3_stricmp(m->column, d->cols[i]) == 0)
                break;
        if (i == d->ncols)
            return dw__error(h, DW_ESCHEMA, target,
                             "%s mapping: \"%s\" is not a column of the %s "
                             "side (table \"%s\")",
                             which, m->column, dw__side_word(target),
                             d->table);
        if (s->map[target].exprs[i])
            return dw__error(h, DW_EMISUSE, target,
                             "%s mapping: column \"%s\" has two expressions",
                             which, d->cols[i]);
        if (!(s->map[target].exprs[i] = dw__strdup(m->expr)))
            return dw__error(h, DW_ENOMEM, target, "out of memory");

        /* The expression is put between parentheses in every row
         * statement: it must not close them, end the statement, or leave a
         * quote or comment open to swallow what follows. */
        if (!dw_sql_balanced(m->expr))
            return dw__error(h, DW_ESCHEMA, target,
                             "%s mapping for column \"%s\": not one "
                             "expression (unbalanced parentheses, ';', or an "
                             "unclosed quote or comment): %s",
                             which, d->cols[i], m->expr);
        if (h->contracted && source == DW_SIDE_OLD)
            continue;
        /* An expression over one row: in WHERE, SQLite itself refuses
         * aggregate and window functions (one inside a scalar subquery is
         * that subquery's business, and allowed). The statement is only
         * prepared, never run. */
        dw_buf sql;
        dw_buf_init(&sql);
        dw_buf_printf(&sql, "SELECT (%s) FROM ", m->expr);
        dw_buf_table(&sql, s->side[source].table);
        dw_buf_printf(&sql, " WHERE (%s) IS NOT NULL", m->expr);
        if (sql.oom) {
            dw_buf_free(&sql);
            return dw__error(h, DW_ENOMEM, target, "out of memory");
        }
        sqlite3_stmt *st = NULL;
        const char *tail = NULL;
        int rc = dw__prepare_strict(h, sql.p, &st, &tail);
        int extra = 0;
        if (rc == SQLITE_OK && tail)
            while (*tail == ' ' || *tail == '\t' || *tail == '\n' ||
                   *tail == '\r')
                tail++;
        if (rc == SQLITE_OK && tail && *tail)
            extra = 1;
        int readonly = rc == SQLITE_OK && st && sqlite3_stmt_readonly(st) &&
                       sqlite3_column_count(st) == 1;
        /* Every statement would bind a parameter to something else. */
        int params = rc == SQLITE_OK && st && sqlite3_bind_parameter_count(st);
        sqlite3_finalize(st);
        dw_buf_free(&sql);
        if (rc == SQLITE_NOMEM)
            return dw__error(h, DW_ENOMEM, target, "out of memory");
        if (rc != SQLITE_OK)
            return dw__error(h, DW_ESCHEMA, target,
                             "%s mapping for column \"%s\": %s (in the "
                             "expression: %s)%s",
                             which, d->cols[i], sqlite3_errmsg(h->db), m->expr,
                             strstr(sqlite3_errmsg(h->db), "misuse of")
                                 ? "; a mapping is an expression over one "
                                   "row, without aggregate or window "
                                   "functions"
                                 : "");
        if (params)
            return dw__error(h, DW_ESCHEMA, target,
                             "%s mapping for column \"%s\": a parameter in "
                             "the expression (%s); a mapping is computed "
                             "from the row alone",
                             which, d->cols[i], m->expr);
        if (extra || !readonly)
            return dw__error(h, DW_ESCHEMA, target,
                             "%s mapping for column \"%s\": not one read-only "
                             "expression: %s",
                             which, d->cols[i], m->expr);
    }
    return DW_OK;
}

/* How a key column compares: its affinity class (from the declared type,
 * by SQLite's rules) and the collation of a unique index over it. */
int dw__sqlite_key_traits(dw_migration *h, int side, int i, char cls[2],
                          char coll[32])
{
    const dw_side_def *d = &h->spec.side[side];
    sqlite3_stmt *st = NULL;
    int rc = dw__prepare(h,
                         "SELECT upper(coalesce((SELECT type FROM "
                         "pragma_table_xinfo(?1) WHERE name = ?2), '')), "
                         "coalesce((SELECT x.coll FROM pragma_index_list(?1) "
                         "AS l, pragma_index_xinfo(l.name) AS x WHERE "
                         "l.`unique` AND x.name = ?2 AND x.key LIMIT 1), "
                         "'BINARY')",
                         &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, d->table, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, d->key[i], -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    if (rc == SQLITE_ROW) {
        const char *type = (const char *)sqlite3_column_text(st, 0);
        const char *c = (const char *)sqlite3_column_text(st, 1);
        if (!type || !c) {
            rc = SQLITE_NOMEM;
        } else {
            /* Numbers order alike whatever their numeric affinity. */
            cls[0] = strstr(type, "INT")                          ? 'N'
                     : strstr(type, "CHAR") || strstr(type, "CLOB") ||
                               strstr(type, "TEXT")
                         ? 'T'
                     : !*type || strstr(type, "BLOB") ? 'B'
                                                      : 'N';
            cls[1] = '\0';
            sqlite3_snprintf(32, coll, "%s", c);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? DW_OK
                           : dw__sqlite_error(h, rc, side,
                                              "reading the key's type");
}

/* One table: its key columns' affinity classes and whether one folds. */
static int key_classes(dw_migration *h)
{
    for (int i = 0; i < h->spec.side[DW_SIDE_OLD].nkey; i++) {
        char c[2], coll[32];
        int rc = dw__sqlite_key_traits(h, DW_SIDE_OLD, i, c, coll);
        if (rc != DW_OK)
            return rc;
        h->key_class[i] = c[0];
        h->keys_fold |= sqlite3_stricmp(coll, "BINARY") != 0;
    }
    return DW_OK;
}

/* Key ranges and joins are computed on each side with its own affinity and
 * collation; keys that compare differently would page and join wrongly. */
static int keys_compare_alike(dw_migration *h)
{
    static const char *const class_word[] = {"numeric", "text", "untyped"};
    const dw_side_def *o = &h->spec.side[DW_SIDE_OLD];
    for (int i = 0; i < o->nkey; i++) {
        char ca[2], cb[2], la[32], lb[32];
        int rc = dw__sqlite_key_traits(h, DW_SIDE_OLD, i, ca, la);
        if (rc == DW_OK)
            rc = dw__sqlite_key_traits(h, DW_SIDE_NEW, i, cb, lb);
        if (rc != DW_OK)
            return rc;
        h->key_class[i] = ca[0];
        h->keys_fold |= sqlite3_stricmp(la, "BINARY") != 0;
        if (ca[0] != cb[0] || sqlite3_stricmp(la, lb) != 0) {
            int wa = ca[0] == 'N' ? 0 : ca[0] == 'T' ? 1 : 2;
            int wb = cb[0] == 'N' ? 0 : cb[0] == 'T' ? 1 : 2;
            return dw__error(h, DW_ESCHEMA, DW_SIDE_NONE,
                             "key column %d compares differently on the two "
                             "sides: old \"%s\" is %s with collation %s, new "
                             "\"%s\" is %s with collation %s; keys must hold "
                             "and order the same values on both sides",
                             i + 1, o->key[i], class_word[wa], la,
                             h->spec.side[DW_SIDE_NEW].key[i], class_word[wb],
                             lb);
        }
    }
    return DW_OK;
}

/* What an earlier validation on this handle derived from the schema goes:
 * dw_open() validates again in its write attempt, against the schema it
 * then commits with. */
static void unvalidate(dw_migration *h)
{
    sqlite_backend *bk = BK(h);
    dw__spec_unvalidate(&h->spec);
    for (int id = ST_READ_SIDE; id < ST_COUNT; id++) {
        sqlite3_finalize(bk->st[id]);
        bk->st[id] = NULL;
        dw__free(bk->sql[id]);
        bk->sql[id] = NULL;
    }
    for (int k = 0; k < RK_KINDS; k++)
        for (int side = 0; side < 3; side++)
            for (int v = 0; v < RB_VARIANTS; v++) {
                sqlite3_finalize(bk->range[k][side][v]);
                bk->range[k][side][v] = NULL;
            }
    memset(h->key_class, 0, sizeof h->key_class);
    h->keys_fold = 0;
}

int dw__sqlite_validate(dw_migration *h)
{
    dw_spec *s = &h->spec;
    table_info t[3];
    memset(t, 0, sizeof t);
    unvalidate(h);
    int rc = h->contracted ? old_side_from_store(h)
                           : check_side(h, DW_SIDE_OLD, &t[DW_SIDE_OLD]);
    if (rc == DW_OK)
        rc = check_side(h, DW_SIDE_NEW, &t[DW_SIDE_NEW]);
    if (rc == DW_OK && !h->contracted && !s->same_table)
        rc = keys_compare_alike(h);
    if (rc == DW_OK && !h->contracted && s->same_table)
        rc = key_classes(h);
    if (rc == DW_OK && !h->contracted)
        rc = check_setup(h);
    if (rc == DW_OK && s->same_table) {
        const dw_side_def *o = &s->side[DW_SIDE_OLD], *n = &s->side[DW_SIDE_NEW];
        if (!same_set(o->key, o->nkey, n->key, n->nkey))
            rc = dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                           "both sides are table \"%s\" but name different "
                           "key columns",
                           o->table);
        for (int i = 0; rc == DW_OK && i < o->ncols; i++)
            for (int j = 0; rc == DW_OK && j < n->ncols; j++)
                if (sqlite3_stricmp(o->cols[i], n->cols[j]) == 0)
                    rc = dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                                   "both sides are table \"%s\" and both list "
                                   "column \"%s\"; each column belongs to one "
                                   "side",
                                   o->table, o->cols[i]);
    }
    if (rc == DW_OK)
        rc = check_mapping(h, DW_SIDE_NEW);
    if (rc == DW_OK)
        rc = check_mapping(h, DW_SIDE_OLD);
    if (rc == DW_OK)
        rc = dw__build_row_sql(h);
    /* Prepare every row statement now, so a problem shows at open (not
     * after the contract: most of them name the dropped old model). */
    for (int id = ST_READ_SIDE; rc == DW_OK && !h->contracted && id < ST_COUNT;
         id++)
        if (BK(h)->sql[id] && !dw__stmt(h, id))
            rc = h->errcode == DW_ERROR ? DW_ESCHEMA : h->errcode;
    table_info_free(&t[DW_SIDE_OLD]);
    table_info_free(&t[DW_SIDE_NEW]);
    return rc;
}
