/* The SQLite backend's contract and restore mechanism: the old model read
 * from the catalog, written to a separate SQLite file (checked through a
 * connection of its own), dropped, and put back from such a file; and the
 * facts about other stored migrations that lib/contract.c decides on.
 * Nothing here decides whether a contract or restore may run. The library
 * opens the backup connections itself and closes them before returning. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"

#define BACKUP_FORMAT 1
#define BACKUP_SCHEMA "dw_backup"

static int nomem(dw_migration *h)
{
    return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
}

/* An error on a connection of our own (the backup's), or on the handle's
 * about the backup (path, when given). */
static int db_error(dw_migration *h, sqlite3 *db, int rc, const char *what,
                    const char *path)
{
    int code = dw__from_sqlite(rc);
    const char *text = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    if (!path || !path[0])
        return dw__error(h, code == DW_OK ? DW_ERROR : code, DW_SIDE_NONE,
                         "%s: %s", what, text);
    return dw__error(h, code == DW_OK ? DW_ERROR : code, DW_SIDE_NONE,
                     "%s (backup \"%s\"): %s", what, path, text);
}
/* Runs one statement of SQL text on db, with parameters bound as text. */
static int exec1(dw_migration *h, sqlite3 *db, const char *sql,
                 const char *a1, const char *a2, const char *what,
                 const char *path)
{
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, &tail);
    if (rc == SQLITE_OK && tail && *tail) {
        sqlite3_finalize(st);
        return dw__error(h, DW_ERROR, DW_SIDE_NONE,
                         "%s: not one statement: %s", what, sql);
    }
    if (rc == SQLITE_OK && a1)
        rc = sqlite3_bind_text(st, 1, a1, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && a2)
        rc = sqlite3_bind_text(st, 2, a2, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) {
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            ;
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    int result = rc == SQLITE_OK ? DW_OK : db_error(h, db, rc, what, path);
    sqlite3_finalize(st);
    return result;
}

/* Runs a statement built in b on db. */
static int exec_buf(dw_migration *h, sqlite3 *db, dw_buf *b, const char *what,
                    const char *path)
{
    int rc = b->oom ? nomem(h) : exec1(h, db, b->p, NULL, NULL, what, path);
    dw_buf_free(b);
    return rc;
}

/* Row count and SHA-256 (hex) of the model's rows in schema.table, in key
 * order (BINARY, so every copy sorts alike), values typed. */
static int digest(dw_migration *h, sqlite3 *db, const char *schema,
                  const dw_old_model *m, int64_t *rows, char hex[65],
                  const char *path)
{
    dw_buf b;
    dw_buf_init(&b);
    dw_buf_puts(&b, "SELECT ");
    dw_buf_ident_list(&b, NULL, m->cols, m->ncols, 1);
    dw_buf_puts(&b, " FROM ");
    dw_buf_ident(&b, schema);
    dw_buf_puts(&b, ".");
    dw_buf_ident(&b, m->table);
    dw_buf_puts(&b, " ORDER BY ");
    for (int i = 0; i < m->nkey; i++) {
        dw_buf_puts(&b, i ? ", " : "");
        dw_buf_ident(&b, m->key[i]);
        dw_buf_puts(&b, " COLLATE BINARY");
    }
    if (b.oom) {
        dw_buf_free(&b);
        return nomem(h);
    }
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, b.p, -1, &st, NULL);
    dw_buf_free(&b);
    dw_sha256 s;
    dw_sha256_init(&s);
    *rows = 0;
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        static const unsigned char row_mark = 0x1e;
        dw_sha256_update(&s, &row_mark, 1);
        for (int i = 0; rc == SQLITE_ROW && i < m->ncols; i++) {
            dw_value v;
            if (dw__column_value(st, i, &v) != DW_OK)
                rc = SQLITE_NOMEM;
            else
                dw_sha256_value(&s, &v);
        }
        if (rc != SQLITE_ROW)
            break;
        (*rows)++;
        rc = SQLITE_OK;
    }
    int result = rc == SQLITE_DONE || rc == SQLITE_OK
                     ? DW_OK
                     : db_error(h, db, rc, "reading the rows to check them",
                                path);
    sqlite3_finalize(st);
    unsigned char d[32];
    dw_sha256_final(&s, d);
    dw_hex(hex, d, 32);
    return result;
}

int dw__sqlite_model_digest(dw_migration *h, const dw_old_model *m,
                            int64_t *rows, char hex[65])
{
    return digest(h, h->db, "main", m, rows, hex, NULL);
}

/* ---- what the old model is -------------------------------------------------- */

static int push(char ***list, int *n, const char *s)
{
    char **l = dw__realloc(*list, sizeof(char *) * (size_t)(*n + 1));
    if (!l)
        return DW_ENOMEM;
    *list = l;
    if (!(l[*n] = dw__strdup(s)))
        return DW_ENOMEM;
    (*n)++;
    return DW_OK;
}

/* From the live schema of main, before the contract. */
int dw__sqlite_model_describe(dw_migration *h, dw_old_model *m)
{
    const dw_spec *s = &h->spec;
    const dw_side_def *o = &s->side[DW_SIDE_OLD];
    memset(m, 0, sizeof *m);
    m->whole_table = !s->same_table;
    if (!(m->table = dw__strdup(o->table)))
        return nomem(h);
    for (int i = 0; i < o->nkey; i++)
        if (push(&m->key, &m->nkey, o->key[i]) != DW_OK)
            return nomem(h);
    sqlite3_stmt *st = NULL;
    int rc;
    if (s->same_table) {
        /* The key and the old columns, with their declarations. */
        for (int i = 0; i < o->nkey; i++)
            if (push(&m->cols, &m->ncols, o->key[i]) != DW_OK)
                return nomem(h);
        for (int i = 0; i < o->ncols; i++)
            if (push(&m->cols, &m->ncols, o->cols[i]) != DW_OK)
                return nomem(h);
        rc = dw__prepare(h,
                         "SELECT json_group_array(json_array(name, type, "
                         "`notnull`, dflt_value)) FROM "
                         "pragma_table_xinfo(?1) WHERE name IN (SELECT value "
                         "FROM json_each(?2))",
                         &st, NULL);
        dw_buf names;
        dw_buf_init(&names);
        dw_buf_puts(&names, "[");
        for (int i = 0; i < m->ncols; i++) {
            dw_buf_puts(&names, i ? "," : "");
            dw_buf_json(&names, m->cols[i], strlen(m->cols[i]));
        }
        dw_buf_puts(&names, "]");
        if (rc == SQLITE_OK && !names.oom) {
            sqlite3_bind_text(st, 1, m->table, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, names.p, -1, SQLITE_STATIC);
            if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *j = (const char *)sqlite3_column_text(st, 0);
                rc = j && (m->column_defs = dw__strdup(j)) ? SQLITE_OK
                                                       : SQLITE_NOMEM;
            }
        }
        if (names.oom)
            rc = SQLITE_NOMEM;
        dw_buf_free(&names);
        sqlite3_finalize(st);
        return rc == SQLITE_OK ? DW_OK
                               : dw__sqlite_error(h, rc, DW_SIDE_OLD,
                                                  "reading the old columns");
    }
    /* Two tables: the whole table -- its rowids when they are not a column
     * (other data may point at them), every stored column, its definition,
     * its indexes and triggers. */
    rc = dw__prepare(h,
                     "SELECT (SELECT wr FROM pragma_table_list WHERE schema = "
                     "'main' AND name = ?1) = 0 AND NOT (SELECT count(*) = 1 "
                     "AND sum(upper(type) = 'INTEGER') = 1 FROM "
                     "pragma_table_xinfo(?1) WHERE pk > 0), (SELECT value "
                     "FROM json_each('[\"rowid\",\"_rowid_\",\"oid\"]') "
                     "WHERE value NOT IN (SELECT lower(name) FROM "
                     "pragma_table_xinfo(?1)) LIMIT 1)",
                     &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, m->table, -1, SQLITE_STATIC);
        if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            const char *name = (const char *)sqlite3_column_text(st, 1);
            rc = SQLITE_OK;
            if (sqlite3_column_int(st, 0) && name &&
                push(&m->cols, &m->ncols, name) != DW_OK)
                rc = SQLITE_NOMEM;
        }
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc == SQLITE_OK)
        rc = dw__prepare(h,
                     "SELECT name FROM pragma_table_xinfo(?1) WHERE hidden "
                     "= 0 ORDER BY cid",
                     &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, m->table, -1, SQLITE_STATIC);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            const char *name = (const char *)sqlite3_column_text(st, 0);
            if (!name || push(&m->cols, &m->ncols, name) != DW_OK) {
                rc = SQLITE_NOMEM;
                break;
            }
        }
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc == SQLITE_OK)
        rc = dw__prepare(h,
                         "SELECT (SELECT sql FROM main.sqlite_schema WHERE "
                         "type = 'table' AND name = ?1), (SELECT "
                         "json_group_array(sql) FROM main.sqlite_schema "
                         "WHERE type IN ('index', 'trigger') AND tbl_name = "
                         "?1 AND sql IS NOT NULL)",
                         &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, m->table, -1, SQLITE_STATIC);
        if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(st, 0);
            const char *ix = (const char *)sqlite3_column_text(st, 1);
            m->table_def = t ? dw__strdup(t) : NULL;
            m->after_rows = ix ? dw__strdup(ix) : NULL;
            rc = m->table_def && m->after_rows ? SQLITE_OK : SQLITE_NOMEM;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? DW_OK
                           : dw__sqlite_error(h, rc, DW_SIDE_OLD,
                                              "reading the old table");
}

/* The backup table's definition for one table: key and old columns, with
 * no declared type (so no affinity changes a value) and no constraints --
 * it holds copies. The declarations are kept in the metadata. */
static void backup_table_sql(dw_buf *b, const dw_old_model *m)
{
    dw_buf_puts(b, "CREATE TABLE ");
    dw_buf_ident(b, m->table);
    dw_buf_puts(b, "(");
    for (int i = 0; i < m->ncols; i++) {
        dw_buf_puts(b, i ? ", " : "");
        dw_buf_ident(b, m->cols[i]);
    }
    dw_buf_puts(b, ")");
}

/* ---- the backup file ----------------------------------------------------------- */

int dw__sqlite_backup_exists(dw_migration *h, const char *target,
                             int *exists)
{
    (void)h;
    *exists = access(target, F_OK) == 0;
    return DW_OK;
}

/* The backup's file and the journals SQLite may leave beside it. */
static int backup_files_name(dw_migration *h, const char *path)
{
    static const char *const suffixes[] = {"", "-journal", "-wal", "-shm"};
    char **name = BK(h)->backup_file;
    int rc = DW_OK;
    for (int i = 0; i < 4; i++)
        if (!(name[i] = sqlite3_mprintf("%s%s", path, suffixes[i])))
            rc = nomem(h);
    return rc;
}

void dw__sqlite_backup_discard(dw_migration *h, int remove_files)
{
    char **name = BK(h)->backup_file;
    for (int i = 0; i < 4; i++) {
        if (name[i] && remove_files)
            remove(name[i]);
        sqlite3_free(name[i]);
        name[i] = NULL;
    }
}

/* The file, its metadata table and its table, through a connection of
 * its own. */
int dw__sqlite_backup_create(dw_migration *h, const dw_old_model *m,
                             const char *target)
{
    dw__sqlite_backup_discard(h, 0);
    int rc = backup_files_name(h, target);
    if (rc != DW_OK)
        return rc;
    sqlite3 *bdb = NULL;
    rc = sqlite3_open_v2(target, &bdb,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        rc = db_error(h, bdb, rc, "creating the backup file", target);
        sqlite3_close(bdb);
        return rc;
    }
    rc = exec1(h, bdb,
               "CREATE TABLE dw_backup_meta(key TEXT PRIMARY KEY, value)",
               NULL, NULL, "creating the backup", target);
    if (rc == DW_OK && m->table_def) {
        rc = exec1(h, bdb, m->table_def, NULL, NULL,
                   "creating the backup table", target);
    } else if (rc == DW_OK) {
        dw_buf b;
        dw_buf_init(&b);
        backup_table_sql(&b, m);
        rc = exec_buf(h, bdb, &b, "creating the backup table", target);
    }
    sqlite3_close(bdb);
    return rc;
}

static int detach_once(dw_migration *h)
{
    return exec1(h, h->db, "DETACH " BACKUP_SCHEMA, NULL, NULL,
                 "detaching the backup", "");
}

/* The schema name is the library's own; one still attached is what a
 * DETACH that lacked memory left behind, and goes first. */
int dw__sqlite_backup_attach(dw_migration *h, const char *target)
{
    if (sqlite3_db_filename(h->db, BACKUP_SCHEMA)) {
        int rc = detach_once(h);
        if (rc != DW_OK)
            return rc;
    }
    return exec1(h, h->db, "ATTACH ?1 AS " BACKUP_SCHEMA, target, NULL,
                 "attaching the backup", target);
}

void dw__sqlite_backup_detach(dw_migration *h)
{
    /* Keep the error that brought us here. A DETACH that fails (it must be
     * prepared, ATTACH having expired every statement) is tried again;
     * if it still fails, the next attach ends it. */
    dw_error_stash saved;
    dw__error_stash(h, &saved);
    for (int tries = 0;
         tries < 3 && sqlite3_db_filename(h->db, BACKUP_SCHEMA) &&
         detach_once(h) != DW_OK;
         tries++)
        ;
    dw__error_unstash(h, &saved);
}

/* The rows of the model copied into the attached backup, and its digest. */
int dw__sqlite_backup_copy(dw_migration *h, const dw_old_model *m,
                           const char *target, int64_t *rows, char hex[65])
{
    dw_buf b;
    dw_buf_init(&b);
    dw_buf_puts(&b, "INSERT INTO " BACKUP_SCHEMA ".");
    dw_buf_ident(&b, m->table);
    dw_buf_puts(&b, "(");
    dw_buf_ident_list(&b, NULL, m->cols, m->ncols, 1);
    dw_buf_puts(&b, ") SELECT ");
    dw_buf_ident_list(&b, NULL, m->cols, m->ncols, 1);
    dw_buf_puts(&b, " FROM main.");
    dw_buf_ident(&b, m->table);
    int rc = exec_buf(h, h->db, &b, "copying the old model", target);
    return rc == DW_OK ? digest(h, h->db, BACKUP_SCHEMA, m, rows, hex, target)
                       : rc;
}

static int meta_put(dw_migration *h, const char *key, const char *value,
                    const char *path)
{
    return exec1(h, h->db,
                 "INSERT INTO " BACKUP_SCHEMA ".dw_backup_meta(key, value) "
                 "VALUES(?1, ?2)",
                 key, value, "writing the backup", path);
}

static int names_json(dw_migration *h, char **names, int n, char **out)
{
    dw_buf b;
    dw_buf_init(&b);
    dw_buf_puts(&b, "[");
    for (int i = 0; i < n; i++) {
        dw_buf_puts(&b, i ? "," : "");
        dw_buf_json(&b, names[i], strlen(names[i]));
    }
    dw_buf_puts(&b, "]");
    return (*out = dw_buf_take(&b)) ? DW_OK : nomem(h);
}

int dw__sqlite_backup_record(dw_migration *h, const dw_old_model *m,
                             const char *target, const dw_backup_record *r)
{
    char *cols = NULL, *key = NULL, *count = NULL;
    int rc = names_json(h, m->cols, m->ncols, &cols);
    if (rc == DW_OK)
        rc = names_json(h, m->key, m->nkey, &key);
    if (rc == DW_OK && !(count = sqlite3_mprintf("%lld", (long long)r->rows)))
        rc = nomem(h);
    char format[16];
    snprintf(format, sizeof format, "%d", BACKUP_FORMAT);
    const char *const meta[][2] = {
        {"format", format},
        {"migration", r->migration},
        {"spec_digest", r->spec_digest},
        {"kind", m->whole_table ? "table" : "columns"},
        {"table", m->table},
        {"columns", cols},
        {"key", key},
        {"table_sql", m->table_def},
        {"index_sql", m->after_rows},
        {"column_defs", m->column_defs},
        {"rows", count},
        {"sha256", r->sha256},
    };
    for (size_t i = 0; rc == DW_OK && i < sizeof meta / sizeof *meta; i++)
        if (meta[i][1])
            rc = meta_put(h, meta[i][0], meta[i][1], target);
    dw__free(cols);
    dw__free(key);
    sqlite3_free(count);
    return rc;
}

/* Reads one metadata value of a backup (owned by the caller). */
static int meta_get(dw_migration *h, sqlite3 *db, const char *key,
                    char **out, const char *path)
{
    sqlite3_stmt *st = NULL;
    *out = NULL;
    int rc = sqlite3_prepare_v2(
        db, "SELECT value FROM dw_backup_meta WHERE key = ?1", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const char *v = (const char *)sqlite3_column_text(st, 0);
            rc = v && (*out = dw__strdup(v)) ? SQLITE_DONE : SQLITE_NOMEM;
        }
    }
    int result = rc == SQLITE_DONE
                     ? DW_OK
                     : db_error(h, db, rc, "reading the backup's metadata",
                                path);
    sqlite3_finalize(st);
    return result;
}

/* Steps st to the end, pushing its first column's texts: SQLITE_DONE, or
 * the error. */
static int step_names(sqlite3_stmt *st, char ***out, int *n)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        if (!v || push(out, n, v) != DW_OK)
            return SQLITE_NOMEM;
    }
    return rc;
}

/* Names from a JSON array, through db. */
static int json_names(dw_migration *h, sqlite3 *db, const char *json,
                      char ***out, int *n, const char *path)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT value FROM json_each(?1)", -1,
                                &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, json, -1, SQLITE_STATIC);
        rc = step_names(st, out, n);
    }
    int result = rc == SQLITE_DONE
                     ? DW_OK
                     : db_error(h, db, rc, "reading the backup's metadata",
                                path);
    sqlite3_finalize(st);
    return result;
}

/* The record: what identifies the backup, then (with `kind`) the model. */
static int load_record(dw_migration *h, sqlite3 *db, const char *path,
                       dw_backup_record *r, char **count, char **sha)
{
    char *format = NULL;
    int rc = meta_get(h, db, "format", &format, path);
    if (rc == DW_OK)
        rc = meta_get(h, db, "migration", &r->migration, path);
    if (rc == DW_OK)
        rc = meta_get(h, db, "rows", count, path);
    if (rc == DW_OK)
        rc = meta_get(h, db, "sha256", sha, path);
    if (rc == DW_OK && (!format || !r->migration || !*count || !*sha ||
                        atoi(format) != BACKUP_FORMAT))
        rc = dw__error(h, DW_ERROR, DW_SIDE_NONE,
                       "\"%s\" is not a libdualwrite backup this version "
                       "can read",
                       path);
    if (rc == DW_OK)
        rc = meta_get(h, db, "spec_digest", &r->spec_digest, path);
    if (rc == DW_OK) {
        r->rows = strtoll(*count, NULL, 10);
        /* Whole or not at all: a cut digest must not match. */
        if (strlen(*sha) == sizeof r->sha256 - 1)
            memcpy(r->sha256, *sha, sizeof r->sha256);
    }
    dw__free(format);
    return rc;
}

static int load_model(dw_migration *h, sqlite3 *db, const char *path,
                      dw_old_model *m)
{
    char *kind = NULL, *cols = NULL, *key = NULL;
    int rc = meta_get(h, db, "kind", &kind, path);
    if (rc == DW_OK)
        rc = meta_get(h, db, "table", &m->table, path);
    if (rc == DW_OK)
        rc = meta_get(h, db, "columns", &cols, path);
    if (rc == DW_OK)
        rc = meta_get(h, db, "key", &key, path);
    if (rc == DW_OK)
        rc = meta_get(h, db, "table_sql", &m->table_def, path);
    if (rc == DW_OK)
        rc = meta_get(h, db, "index_sql", &m->after_rows, path);
    if (rc == DW_OK)
        rc = meta_get(h, db, "column_defs", &m->column_defs, path);
    m->whole_table = kind && strcmp(kind, "table") == 0;
    if (rc == DW_OK && (!kind || !m->table || !cols || !key ||
                        (m->whole_table ? !m->table_def || !m->after_rows
                                        : !m->column_defs)))
        rc = dw__error(h, DW_ERROR, DW_SIDE_NONE,
                       "backup \"%s\": its metadata is incomplete", path);
    if (rc == DW_OK)
        rc = json_names(h, db, cols, &m->cols, &m->ncols, path);
    if (rc == DW_OK)
        rc = json_names(h, db, key, &m->key, &m->nkey, path);
    dw__free(kind);
    dw__free(cols);
    dw__free(key);
    return rc;
}

/* Through a read-only connection of its own: the file alone. */
/* The backup at target, opened read-only through a connection of its own
 * (closed by the caller). */
static int backup_open(dw_migration *h, const char *target, sqlite3 **db)
{
    *db = NULL;
    int rc = sqlite3_open_v2(target, db, SQLITE_OPEN_READONLY, NULL);
    if (rc == SQLITE_OK)
        return DW_OK;
    rc = db_error(h, *db, rc, "opening the backup", target);
    sqlite3_close(*db);
    *db = NULL;
    return rc;
}

int dw__sqlite_backup_read_record(dw_migration *h, const char *target,
                                  dw_backup_record *r)
{
    memset(r, 0, sizeof *r);
    sqlite3 *db;
    int rc = backup_open(h, target, &db);
    if (rc != DW_OK)
        return rc;
    char *count = NULL, *sha = NULL;
    rc = load_record(h, db, target, r, &count, &sha);
    sqlite3_close(db);
    dw__free(count);
    dw__free(sha);
    return rc;
}

int dw__sqlite_backup_read_model(dw_migration *h, const char *target,
                                 dw_old_model *m, int64_t *rows, char hex[65])
{
    memset(m, 0, sizeof *m);
    sqlite3 *db;
    int rc = backup_open(h, target, &db);
    if (rc == DW_OK)
        rc = load_model(h, db, target, m);
    if (rc == DW_OK)
        rc = digest(h, db, "main", m, rows, hex, target);
    sqlite3_close(db);
    return rc;
}

/* ---- the live schema --------------------------------------------------------------- */

int dw__sqlite_contracted_store(dw_migration *h, int contracted)
{
    return exec1(h, h->db,
                 contracted ? "UPDATE dw_migrations SET contracted = 1 WHERE "
                              "name = ?1"
                            : "UPDATE dw_migrations SET contracted = 0 WHERE "
                              "name = ?1",
                 h->spec.name, NULL, "recording the contract", "");
}

/* Runs st (its parameter 1 bound to text) for its first row's first
 * column as an integer (0 when no row). */
static int query_int(dw_migration *h, sqlite3_stmt *st, const char *text,
                     int64_t *out, const char *what)
{
    *out = 0;
    int rc = sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? DW_OK
                           : dw__sqlite_error(h, rc, DW_SIDE_OLD, what);
}

int dw__sqlite_name_taken(dw_migration *h, const char *name, int *taken)
{
    sqlite3_stmt *st = NULL;
    int rc = dw__prepare(h,
                         "SELECT count(*) FROM main.sqlite_schema WHERE name "
                         "= ?1 COLLATE NOCASE",
                         &st, NULL);
    if (rc != SQLITE_OK)
        return dw__sqlite_error(h, rc, DW_SIDE_OLD, "reading the schema");
    int64_t n = 0;
    rc = query_int(h, st, name, &n, "reading the schema");
    *taken = n > 0;
    return rc;
}

int dw__sqlite_model_present(dw_migration *h, const dw_old_model *m,
                             int *present)
{
    *present = 0;
    char *cols = NULL;
    if (names_json(h, m->cols, m->ncols, &cols) != DW_OK)
        return h->errcode;
    sqlite3_stmt *st = NULL;
    int rc = dw__prepare(h,
                         "SELECT CASE WHEN ?3 THEN (SELECT count(*) FROM "
                         "main.sqlite_schema WHERE type = 'table' AND name = "
                         "?1 COLLATE NOCASE) ELSE (SELECT count(*) = "
                         "json_array_length(?2) FROM pragma_table_xinfo(?1, "
                         "'main') WHERE lower(name) IN (SELECT lower(value) "
                         "FROM json_each(?2))) END",
                         &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, m->table, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, cols, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, m->whole_table);
        if ((rc = sqlite3_step(st)) == SQLITE_ROW)
            *present = sqlite3_column_int(st, 0) != 0, rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    dw__free(cols);
    return rc == SQLITE_OK
               ? DW_OK
               : dw__sqlite_error(h, rc, DW_SIDE_OLD, "reading the schema");
}

int dw__sqlite_table_columns(dw_migration *h, const char *table,
                             char ***names, int *n)
{
    *names = NULL;
    *n = 0;
    sqlite3_stmt *st = NULL;
    int rc = dw__prepare(h, "SELECT name FROM pragma_table_xinfo(?1, 'main')",
                         &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
        rc = step_names(st, names, n);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? DW_OK
                             : dw__sqlite_error(h, rc, DW_SIDE_OLD,
                                                "reading the old columns");
}

/* Any FOREIGN KEY of another table naming the table, whatever PRAGMA
 * foreign_keys says. */
int dw__sqlite_table_referenced(dw_migration *h, const char *table,
                                char **by)
{
    *by = NULL;
    sqlite3_stmt *st = NULL;
    int rc = dw__prepare(h,
                         "SELECT m.name FROM main.sqlite_schema AS m, "
                         "pragma_foreign_key_list(m.name) AS f WHERE m.type = "
                         "'table' AND f.`table` = ?1 COLLATE NOCASE AND "
                         "m.name <> ?1 COLLATE NOCASE LIMIT 1",
                         &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const char *name = (const char *)sqlite3_column_text(st, 0);
            rc = name && (*by = dw__strdup(name)) ? SQLITE_DONE
                                                  : SQLITE_NOMEM;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? DW_OK
                             : dw__sqlite_error(h, rc, DW_SIDE_OLD,
                                                "looking for foreign keys");
}

int dw__sqlite_model_drop(dw_migration *h, const dw_old_model *m)
{
    int rc = DW_OK;
    if (m->whole_table) {
        dw_buf b;
        dw_buf_init(&b);
        dw_buf_puts(&b, "DROP TABLE main.");
        dw_buf_ident(&b, m->table);
        return exec_buf(h, h->db, &b, "dropping the old table", NULL);
    }
    for (int i = m->nkey; rc == DW_OK && i < m->ncols; i++) {
        dw_buf b;
        dw_buf_init(&b);
        dw_buf_puts(&b, "ALTER TABLE main.");
        dw_buf_ident(&b, m->table);
        dw_buf_puts(&b, " DROP COLUMN ");
        dw_buf_ident(&b, m->cols[i]);
        rc = exec_buf(h, h->db, &b, "dropping an old column", NULL);
    }
    return rc;
}

/* ---- other stored migrations ------------------------------------------------------ */

static void free_names(char **names, int n)
{
    for (int i = 0; i < n; i++)
        dw__free(names[i]);
    dw__free(names);
}

/* One other migration from the row of st (see others_list). */
static int report_other(dw_migration *h, sqlite3_stmt *st, dw_other_fn fn,
                        void *arg)
{
    dw_other_migration m;
    memset(&m, 0, sizeof m);
    m.id = sqlite3_column_int64(st, 0);
    m.name = (const char *)sqlite3_column_text(st, 1);
    m.spec = (const char *)sqlite3_column_text(st, 2);
    m.stage = sqlite3_column_int(st, 3);
    m.contracted = sqlite3_column_int(st, 4);
    m.canary = sqlite3_column_int(st, 5);
    m.canary_stage = sqlite3_column_int(st, 6);
    m.cohort = (const char *)sqlite3_column_text(st, 7);
    m.lowest_override = sqlite3_column_type(st, 8) == SQLITE_NULL
                            ? INT_MAX
                            : sqlite3_column_int(st, 8);
    if (!m.name || (!m.spec && sqlite3_column_type(st, 2) != SQLITE_NULL) ||
        (!m.cohort && sqlite3_column_type(st, 7) != SQLITE_NULL))
        return nomem(h);
    return fn(h, &m, arg);
}

int dw__sqlite_others_list(dw_migration *h, dw_other_fn fn, void *arg)
{
    static const char sql[] =
        "SELECT m.id, m.name, m.spec, m.stage, m.contracted, "
        "m.canary_buckets <> 0 OR m.canary_cohort IS NOT NULL, "
        "m.canary_stage, m.canary_cohort, (SELECT min(o.stage) FROM "
        "dw_overrides AS o WHERE o.migration_id = m.id) FROM dw_migrations "
        "AS m WHERE m.id <> ?1 ORDER BY m.name";
    sqlite3_stmt *st = NULL;
    int rc = dw__prepare(h, sql, &st, NULL);
    int result = DW_OK;
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, h->id);
        while (result == DW_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
            result = report_other(h, st, fn, arg);
    }
    if (result == DW_OK && rc != SQLITE_DONE)
        result = dw__sqlite_error(h, rc, DW_SIDE_NONE,
                                  "looking for other migrations of the old "
                                  "model");
    sqlite3_finalize(st);
    return result;
}

/* ---- restore ------------------------------------------------------------------- */

/* Runs one stored CREATE statement, refusing anything else. */
static int run_stored_ddl(dw_migration *h, const char *sql, const char *path)
{
    if (sqlite3_strnicmp(sql, "CREATE TABLE ", 13) != 0 &&
        sqlite3_strnicmp(sql, "CREATE INDEX ", 13) != 0 &&
        sqlite3_strnicmp(sql, "CREATE UNIQUE INDEX ", 20) != 0 &&
        sqlite3_strnicmp(sql, "CREATE TRIGGER ", 15) != 0)
        return dw__error(h, DW_ERROR, DW_SIDE_NONE,
                         "backup \"%s\": not a definition: %.60s", path, sql);
    return exec1(h, h->db, sql, NULL, NULL, "recreating the old model", path);
}

int dw__sqlite_restore_table(dw_migration *h, const dw_old_model *m,
                             const char *target)
{
    int rc = run_stored_ddl(h, m->table_def, target);
    if (rc == DW_OK) {
        dw_buf b;
        dw_buf_init(&b);
        dw_buf_puts(&b, "INSERT INTO main.");
        dw_buf_ident(&b, m->table);
        dw_buf_puts(&b, "(");
        dw_buf_ident_list(&b, NULL, m->cols, m->ncols, 1);
        dw_buf_puts(&b, ") SELECT ");
        dw_buf_ident_list(&b, NULL, m->cols, m->ncols, 1);
        dw_buf_puts(&b, " FROM " BACKUP_SCHEMA ".");
        dw_buf_ident(&b, m->table);
        rc = exec_buf(h, h->db, &b, "copying the rows back", target);
    }
    /* Indexes and triggers after the rows, so no trigger fires on them. */
    char **ix = NULL;
    int nix = 0;
    if (rc == DW_OK)
        rc = json_names(h, h->db, m->after_rows, &ix, &nix, target);
    for (int i = 0; rc == DW_OK && i < nix; i++)
        rc = run_stored_ddl(h, ix[i], target);
    free_names(ix, nix);
    return rc;
}

static int listed(const char *name, char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (sqlite3_stricmp(name, names[i]) == 0)
            return 1;
    return 0;
}

/* Re-adds each old column as declared but those kept; ALTER TABLE cannot
 * re-add NOT NULL without a default, so that constraint is left off. */
static int readd_columns(dw_migration *h, const dw_old_model *m,
                         char *const *kept, int nkept, const char *path)
{
    sqlite3_stmt *st = NULL;
    int rc = dw__prepare(h,
                         "SELECT json_extract(value, '$[0]'), "
                         "json_extract(value, '$[1]'), json_extract(value, "
                         "'$[3]') FROM json_each(?1) WHERE "
                         "json_extract(value, '$[0]') NOT IN (SELECT value "
                         "FROM json_each(?2))",
                         &st, NULL);
    char *key = NULL;
    if (rc == SQLITE_OK && names_json(h, m->key, m->nkey, &key) != DW_OK)
        rc = SQLITE_NOMEM;
    int result = DW_OK;
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, m->column_defs, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
        while (result == DW_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            const char *name = (const char *)sqlite3_column_text(st, 0);
            const char *type = (const char *)sqlite3_column_text(st, 1);
            const char *dflt = (const char *)sqlite3_column_text(st, 2);
            if (name && listed(name, kept, nkept))
                continue;
            dw_buf b;
            dw_buf_init(&b);
            dw_buf_puts(&b, "ALTER TABLE main.");
            dw_buf_ident(&b, m->table);
            dw_buf_puts(&b, " ADD COLUMN ");
            dw_buf_ident(&b, name ? name : "");
            if (type && *type)
                dw_buf_printf(&b, " %s", type);
            /* ALTER TABLE takes only a constant default: an expression
             * (CURRENT_TIMESTAMP, "(...)") is left off, as NOT NULL is. */
            if (dflt && dflt[0] != '(' &&
                sqlite3_strnicmp(dflt, "CURRENT_", 8) != 0)
                dw_buf_printf(&b, " DEFAULT %s", dflt);
            result = exec_buf(h, h->db, &b, "re-adding an old column", path);
        }
        if (result == DW_OK && rc != SQLITE_DONE)
            result = dw__sqlite_error(h, rc, DW_SIDE_OLD,
                                      "reading the backup's columns");
    } else {
        result = dw__sqlite_error(h, rc, DW_SIDE_OLD,
                                  "reading the backup's columns");
    }
    sqlite3_finalize(st);
    dw__free(key);
    return result;
}

/* `<alias>c <op> dw_b.c` for each of names[from..n-1] not kept,
 * separated by sep; how many. */
static int column_pairs(dw_buf *b, char *const *names, int from, int n,
                        const char *alias, const char *op, const char *sep,
                        char *const *kept, int nkept)
{
    int count = 0;
    for (int i = from; i < n; i++) {
        if (listed(names[i], kept, nkept))
            continue;
        dw_buf_puts(b, count++ ? sep : "");
        dw_buf_puts(b, alias);
        dw_buf_ident(b, names[i]);
        dw_buf_puts(b, op);
        dw_buf_puts(b, "dw_b.");
        dw_buf_ident(b, names[i]);
    }
    return count;
}

/* A backed-up row and the table's, by key. */
static void key_join(dw_buf *b, const dw_old_model *m)
{
    column_pairs(b, m->key, 0, m->nkey, "dw_t.", " = ", " AND ", NULL, 0);
}

/* The backup's values copied into the columns re-added, by key. */
static int copy_columns_back(dw_migration *h, const dw_old_model *m,
                             char *const *kept, int nkept, const char *path)
{
    dw_buf b;
    dw_buf_init(&b);
    dw_buf_puts(&b, "UPDATE main.");
    dw_buf_ident(&b, m->table);
    dw_buf_puts(&b, " AS dw_t SET ");
    int set = column_pairs(&b, m->cols, m->nkey, m->ncols, "", " = ", ", ",
                           kept, nkept);
    dw_buf_puts(&b, " FROM " BACKUP_SCHEMA ".");
    dw_buf_ident(&b, m->table);
    dw_buf_puts(&b, " AS dw_b WHERE ");
    key_join(&b, m);
    if (!set) {
        dw_buf_free(&b);
        return DW_OK;
    }
    return exec_buf(h, h->db, &b, "copying the columns back", path);
}

int dw__sqlite_restore_columns(dw_migration *h, const dw_old_model *m,
                               const char *target, char *const *kept,
                               int nkept)
{
    int rc = readd_columns(h, m, kept, nkept, target);
    return rc == DW_OK ? copy_columns_back(h, m, kept, nkept, target) : rc;
}

int dw__sqlite_restored_columns_check(dw_migration *h, const dw_old_model *m,
                                      int64_t *rows, int64_t *same)
{
    *rows = *same = 0;
    dw_buf b;
    dw_buf_init(&b);
    dw_buf_puts(&b, "SELECT count(*), coalesce(sum(");
    column_pairs(&b, m->cols, m->nkey, m->ncols, "dw_t.", " IS ", " AND ",
                 NULL, 0);
    dw_buf_puts(&b, "), 0) FROM " BACKUP_SCHEMA ".");
    dw_buf_ident(&b, m->table);
    dw_buf_puts(&b, " AS dw_b JOIN main.");
    dw_buf_ident(&b, m->table);
    dw_buf_puts(&b, " AS dw_t ON ");
    key_join(&b, m);
    sqlite3_stmt *st = NULL;
    int rc = b.oom ? SQLITE_NOMEM : dw__prepare(h, b.p, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *rows = sqlite3_column_int64(st, 0);
        *same = sqlite3_column_int64(st, 1);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    dw_buf_free(&b);
    return rc == SQLITE_OK ? DW_OK
                           : dw__sqlite_error(h, rc, DW_SIDE_OLD,
                                              "checking the restored "
                                              "columns");
}
