/* The SQLite backend's contract and restore: the old model written to a
 * separate SQLite file, checked through a connection of its own, and only
 * then dropped; and put back from such a file. The library opens these
 * backup connections itself and closes them before returning. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"

#define BACKUP_FORMAT 1
#define BACKUP_SCHEMA "dw_backup"

/* What is backed up: `cols` of `table`, ordered by `key` (a prefix of
 * cols for one table, the old side's key for two). */
typedef struct model {
    char *table;
    char **cols;
    int ncols;
    char **key;
    int nkey;
    char *table_sql;   /* two tables: the CREATE TABLE text */
    char *index_sql;   /* two tables: JSON array of its CREATE INDEX and
                          CREATE TRIGGER texts, run after the rows */
    char *coldefs;     /* one table: JSON [[name, type, notnull, default]] */
} model;

static void model_free(model *m)
{
    for (int i = 0; i < m->ncols; i++)
        dw__free(m->cols[i]);
    dw__free(m->cols);
    for (int i = 0; i < m->nkey; i++)
        dw__free(m->key[i]);
    dw__free(m->key);
    dw__free(m->table);
    dw__free(m->table_sql);
    dw__free(m->index_sql);
    dw__free(m->coldefs);
    memset(m, 0, sizeof *m);
}

static int nomem(dw_migration *h)
{
    return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
}

/* An error on a connection of our own (the backup's). */
static int db_error(dw_migration *h, sqlite3 *db, int rc, const char *what,
                    const char *path)
{
    int code = dw__from_sqlite(rc);
    return dw__error(h, code == DW_OK ? DW_ERROR : code, DW_SIDE_NONE,
                     "%s (backup \"%s\"): %s", what, path,
                     db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
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
                  const model *m, int64_t *rows, char hex[65],
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
static int describe_model(dw_migration *h, model *m)
{
    const dw_spec *s = &h->spec;
    const dw_side_def *o = &s->side[DW_SIDE_OLD];
    memset(m, 0, sizeof *m);
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
                rc = j && (m->coldefs = dw__strdup(j)) ? SQLITE_OK
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
            m->table_sql = t ? dw__strdup(t) : NULL;
            m->index_sql = ix ? dw__strdup(ix) : NULL;
            rc = m->table_sql && m->index_sql ? SQLITE_OK : SQLITE_NOMEM;
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
static void backup_table_sql(dw_buf *b, const model *m)
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

/* The backup's file and the journals SQLite may leave beside it, named
 * before anything is created: removing them must not need memory. */
#define BACKUP_FILES 4
typedef struct backup_files {
    char *name[BACKUP_FILES];
} backup_files;

static int backup_files_name(dw_migration *h, const char *path,
                             backup_files *f)
{
    static const char *const suffixes[BACKUP_FILES] = {"", "-journal", "-wal",
                                                       "-shm"};
    int rc = DW_OK;
    for (int i = 0; i < BACKUP_FILES; i++)
        if (!(f->name[i] = sqlite3_mprintf("%s%s", path, suffixes[i])))
            rc = nomem(h);
    return rc;
}

static void backup_files_remove(const backup_files *f)
{
    for (int i = 0; i < BACKUP_FILES; i++)
        if (f->name[i])
            remove(f->name[i]);
}

static void backup_files_free(backup_files *f)
{
    for (int i = 0; i < BACKUP_FILES; i++)
        sqlite3_free(f->name[i]);
}

static int detach_once(dw_migration *h)
{
    return exec1(h, h->db, "DETACH " BACKUP_SCHEMA, NULL, NULL,
                 "detaching the backup", "");
}

/* The schema name is the library's own; one still attached is what a
 * DETACH that lacked memory left behind, and goes first. */
static int attach(dw_migration *h, const char *path)
{
    if (sqlite3_db_filename(h->db, BACKUP_SCHEMA)) {
        int rc = detach_once(h);
        if (rc != DW_OK)
            return rc;
    }
    return exec1(h, h->db, "ATTACH ?1 AS " BACKUP_SCHEMA, path, NULL,
                 "attaching the backup", path);
}

static void detach(dw_migration *h)
{
    /* Keep the error that brought us here. A DETACH that fails (it must be
     * prepared, ATTACH having expired every statement) is tried again;
     * if it still fails, the next attach() ends it. */
    dw_error_stash saved;
    dw__error_stash(h, &saved);
    for (int tries = 0;
         tries < 3 && sqlite3_db_filename(h->db, BACKUP_SCHEMA) &&
         detach_once(h) != DW_OK;
         tries++)
        ;
    dw__error_unstash(h, &saved);
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

/* Step 1: the file, its table and its metadata, copied in one transaction
 * that only reads main. */
static int write_backup(dw_migration *h, const model *m, const char *path,
                        int64_t *rows, char hex[65])
{
    sqlite3 *bdb = NULL;
    int rc = sqlite3_open_v2(path, &bdb,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        rc = db_error(h, bdb, rc, "creating the backup file", path);
        sqlite3_close(bdb);
        return rc;
    }
    rc = exec1(h, bdb,
               "CREATE TABLE dw_backup_meta(key TEXT PRIMARY KEY, value)",
               NULL, NULL, "creating the backup", path);
    if (rc == DW_OK && m->table_sql) {
        rc = exec1(h, bdb, m->table_sql, NULL, NULL,
                   "creating the backup table", path);
    } else if (rc == DW_OK) {
        dw_buf b;
        dw_buf_init(&b);
        backup_table_sql(&b, m);
        rc = exec_buf(h, bdb, &b, "creating the backup table", path);
    }
    sqlite3_close(bdb);
    if (rc != DW_OK || (rc = attach(h, path)) != DW_OK)
        return rc;

    char *cols = NULL, *key = NULL, *count = NULL;
    int scope;
    rc = h->ops->begin(h, 1, &scope);
    if (rc == DW_OK) {
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
        rc = exec_buf(h, h->db, &b, "copying the old model", path);
    }
    char copy_hex[65];
    int64_t copy_rows = 0;
    if (rc == DW_OK)
        rc = digest(h, h->db, "main", m, rows, hex, path);
    if (rc == DW_OK)
        rc = digest(h, h->db, BACKUP_SCHEMA, m, &copy_rows, copy_hex, path);
    if (rc == DW_OK && (copy_rows != *rows || strcmp(copy_hex, hex) != 0))
        rc = dw__error(h, DW_ERROR, DW_SIDE_NONE,
                       "the backup's copy differs from the old model");
    if (rc == DW_OK && ((rc = names_json(h, m->cols, m->ncols, &cols)) ==
                            DW_OK &&
                        (rc = names_json(h, m->key, m->nkey, &key)) == DW_OK &&
                        !(count = sqlite3_mprintf("%lld", (long long)*rows))))
        rc = nomem(h);
    char format[16];
    snprintf(format, sizeof format, "%d", BACKUP_FORMAT);
    const char *const meta[][2] = {
        {"format", format},
        {"migration", h->spec.name},
        {"spec_digest", h->digest},
        {"kind", m->table_sql ? "table" : "columns"},
        {"table", m->table},
        {"columns", cols},
        {"key", key},
        {"table_sql", m->table_sql},
        {"index_sql", m->index_sql},
        {"column_defs", m->coldefs},
        {"rows", count},
        {"sha256", hex},
    };
    for (size_t i = 0; rc == DW_OK && i < sizeof meta / sizeof *meta; i++)
        if (meta[i][1])
            rc = meta_put(h, meta[i][0], meta[i][1], path);
    if (rc == DW_OK)
        rc = h->ops->commit(h, scope);
    else if (scope)
        rc = dw__rollback(h, scope, rc);
    detach(h);
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

/* Names from a JSON array, through db. */
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

/* Step 2 of the contract, step 1 of a restore: the file alone, through a
 * read-only connection of its own -- its metadata, and its rows against
 * the stored count and digest. Fills m from the file when `load`. */
static int check_backup(dw_migration *h, const char *path, model *m, int load,
                        int64_t *rows, char hex[65])
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
    if (rc != SQLITE_OK) {
        rc = db_error(h, db, rc, "opening the backup", path);
        sqlite3_close(db);
        return rc;
    }
    char *format = NULL, *name = NULL, *count = NULL, *sha = NULL;
    char *kind = NULL, *cols = NULL, *key = NULL;
    rc = meta_get(h, db, "format", &format, path);
    if (rc == DW_OK)
        rc = meta_get(h, db, "migration", &name, path);
    if (rc == DW_OK)
        rc = meta_get(h, db, "rows", &count, path);
    if (rc == DW_OK)
        rc = meta_get(h, db, "sha256", &sha, path);
    if (rc == DW_OK && (!format || !name || !count || !sha ||
                        atoi(format) != BACKUP_FORMAT))
        rc = dw__error(h, DW_ERROR, DW_SIDE_NONE,
                       "\"%s\" is not a libdualwrite backup this version "
                       "can read",
                       path);
    if (rc == DW_OK && strcmp(name, h->spec.name) != 0)
        rc = dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                       "backup \"%s\" belongs to migration \"%s\", not "
                       "\"%s\"",
                       path, name, h->spec.name);
    char *spec = NULL;
    if (rc == DW_OK && load)
        rc = meta_get(h, db, "spec_digest", &spec, path);
    if (rc == DW_OK && load && (!spec || strcmp(spec, h->digest) != 0))
        rc = dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                       "backup \"%s\" was taken under spec %.12s; migration "
                       "\"%s\" now has spec %.12s (redefined since)",
                       path, spec ? spec : "(none)", h->spec.name, h->digest);
    dw__free(spec);
    if (rc == DW_OK && load) {
        memset(m, 0, sizeof *m);
        rc = meta_get(h, db, "kind", &kind, path);
        if (rc == DW_OK)
            rc = meta_get(h, db, "table", &m->table, path);
        if (rc == DW_OK)
            rc = meta_get(h, db, "columns", &cols, path);
        if (rc == DW_OK)
            rc = meta_get(h, db, "key", &key, path);
        if (rc == DW_OK)
            rc = meta_get(h, db, "table_sql", &m->table_sql, path);
        if (rc == DW_OK)
            rc = meta_get(h, db, "index_sql", &m->index_sql, path);
        if (rc == DW_OK)
            rc = meta_get(h, db, "column_defs", &m->coldefs, path);
        if (rc == DW_OK && (!kind || !m->table || !cols || !key ||
                            (strcmp(kind, "table") == 0
                                 ? !m->table_sql || !m->index_sql
                                 : !m->coldefs)))
            rc = dw__error(h, DW_ERROR, DW_SIDE_NONE,
                           "backup \"%s\": its metadata is incomplete", path);
        if (rc == DW_OK)
            rc = json_names(h, db, cols, &m->cols, &m->ncols, path);
        if (rc == DW_OK)
            rc = json_names(h, db, key, &m->key, &m->nkey, path);
    }
    int64_t found_rows = 0;
    char found[65];
    if (rc == DW_OK)
        rc = digest(h, db, "main", m, &found_rows, found, path);
    if (rc == DW_OK && (strtoll(count, NULL, 10) != found_rows ||
                        strcmp(sha, found) != 0))
        rc = dw__error(h, DW_ERROR, DW_SIDE_NONE,
                       "backup \"%s\" does not check out: it holds %lld rows "
                       "with digest %.16s, its record says %s rows with "
                       "digest %.16s",
                       path, (long long)found_rows, found, count, sha);
    if (rc == DW_OK) {
        *rows = found_rows;
        memcpy(hex, found, 65);
    }
    sqlite3_close(db);
    dw__free(format);
    dw__free(name);
    dw__free(count);
    dw__free(sha);
    dw__free(kind);
    dw__free(cols);
    dw__free(key);
    return rc;
}

static int set_contracted(dw_migration *h, int value)
{
    return exec1(h, h->db,
                 value ? "UPDATE dw_migrations SET contracted = 1 WHERE name "
                         "= ?1"
                       : "UPDATE dw_migrations SET contracted = 0 WHERE name "
                         "= ?1",
                 h->spec.name, NULL, "recording the contract", "");
}

/* A foreign key pointing at the old table would make DROP TABLE delete or
 * change the other table's rows (ON DELETE CASCADE / SET NULL), which the
 * backup does not hold -- refused whatever PRAGMA foreign_keys says. */
static int no_references(dw_migration *h, const char *table)
{
    sqlite3_stmt *st = NULL;
    int rc = dw__prepare(h,
                         "SELECT m.name FROM main.sqlite_schema AS m, "
                         "pragma_foreign_key_list(m.name) AS f WHERE m.type = "
                         "'table' AND f.`table` = ?1 COLLATE NOCASE AND "
                         "m.name <> ?1 COLLATE NOCASE LIMIT 1",
                         &st, NULL);
    int result = DW_OK;
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            result = dw__error(h, DW_ECONSTRAINT, DW_SIDE_OLD,
                               "table \"%s\" has a FOREIGN KEY to the old "
                               "table \"%s\"; dropping it would change that "
                               "table's rows, so nothing was dropped",
                               (const char *)sqlite3_column_text(st, 0),
                               table);
        else if (rc != SQLITE_DONE)
            result = dw__sqlite_error(h, rc, DW_SIDE_OLD,
                                      "looking for foreign keys");
    } else {
        result = dw__sqlite_error(h, rc, DW_SIDE_OLD,
                                  "looking for foreign keys");
    }
    sqlite3_finalize(st);
    return result;
}

/* Another stored migration that uses what the contract would drop (the old
 * table, or the old columns when old and new share a table): one that has
 * it as its new side, at any stage, contracted or not; one not contracted
 * that has it as its old side. Such a use at COMPLETE with every key
 * there no longer reads or writes it, so the contract keeps the old model
 * for that migration's own contract (*kept_for, its name; dw__free), which
 * drops it in turn -- unless it has only some of the old columns, which
 * its contract would leave behind; any other use refuses the contract
 * (DW_EGATE). */
static int other_users(dw_migration *h, char **kept_for)
{
    static const char sql[] =
        "WITH dropped(name) AS (SELECT lower(value) FROM json_each(?3)), "
        "uses AS (SELECT m.name AS name, s.side AS side, m.stage AS stage, "
        "(SELECT group_concat(c.value, ', ') FROM json_each(m.spec, '$.' || "
        "s.side || '.key') AS c WHERE lower(c.value) IN dropped) AS keys, "
        "(SELECT group_concat(c.value, ', ') FROM json_each(m.spec, '$.' || "
        "s.side || '.columns') AS c WHERE lower(c.value) IN dropped) AS cols, "
        "s.side = 'old' AND m.stage = ?4 AND ((m.canary_buckets = 0 AND "
        "m.canary_cohort IS NULL) OR m.canary_stage = ?4) AND NOT EXISTS "
        "(SELECT 1 FROM dw_overrides AS o WHERE o.migration_id = m.id AND "
        "o.stage < ?4) AS done, (SELECT count(*) FROM json_each(m.spec, '$.' "
        "|| s.side || '.columns') AS c WHERE lower(c.value) IN dropped) < "
        "(SELECT count(*) FROM dropped) AS partial FROM dw_migrations AS m, "
        "(SELECT 'old' AS side "
        "UNION ALL SELECT 'new') AS s WHERE m.id <> ?1 AND (s.side = 'new' "
        "OR m.contracted = 0) AND json_extract(m.spec, '$.' || s.side || "
        "'.table') = ?2 COLLATE NOCASE) "
        "SELECT name, side, stage, done AND NOT partial, coalesce(keys || ', ' "
        "|| cols, keys, cols), done FROM uses WHERE ?3 IS NULL OR keys IS NOT "
        "NULL OR cols IS NOT NULL ORDER BY done AND NOT partial, name LIMIT 1";
    const dw_side_def *o = &h->spec.side[DW_SIDE_OLD];
    char *cols = NULL;
    *kept_for = NULL;
    if (h->spec.same_table && names_json(h, o->cols, o->ncols, &cols) != DW_OK)
        return h->errcode;
    sqlite3_stmt *st = NULL;
    int rc = dw__prepare(h, sql, &st, NULL);
    int result = DW_OK;
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, h->id);
        sqlite3_bind_text(st, 2, o->table, -1, SQLITE_STATIC);
        if (cols)
            sqlite3_bind_text(st, 3, cols, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, DW_STAGE_COMPLETE);
        rc = sqlite3_step(st);
    }
    if (rc == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        const char *side = (const char *)sqlite3_column_text(st, 1);
        const char *used = (const char *)sqlite3_column_text(st, 4);
        int stage = sqlite3_column_int(st, 2);
        if (!name || !side || (cols && !used))
            result = nomem(h);
        else if (sqlite3_column_int(st, 3))
            result = (*kept_for = dw__strdup(name)) ? DW_OK : nomem(h);
        else if (sqlite3_column_int(st, 5))
            /* Kept for it, the columns it does not use would stay for
             * good: its contract drops only its own. */
            result = dw__error(
                h, DW_EGATE, DW_SIDE_OLD,
                "migration \"%s\" at COMPLETE still has columns %s of table "
                "\"%s\" as its old side, not all of those this contract "
                "drops; nothing was dropped: contract \"%s\" first (it "
                "keeps them for this migration, whose contract then drops "
                "them all)",
                name, used, o->table, name);
        else
            result = dw__error(
                h, DW_EGATE, DW_SIDE_OLD,
                "migration \"%s\" still uses %s%s%stable \"%s\" as its %s "
                "side (at %s%s); nothing was dropped: %s",
                name, cols ? "columns " : "", cols ? used : "",
                cols ? " of " : "", o->table, side,
                dw_stage_name(stage) ? dw_stage_name(stage) : "?",
                stage == DW_STAGE_COMPLETE ? ", with keys routed below it"
                                           : "",
                strcmp(side, "new") == 0
                    ? "it is that migration's model"
                    : "take it to COMPLETE first, and the contract keeps "
                      "the old model for that migration's own contract");
    } else if (rc != SQLITE_DONE) {
        result = dw__sqlite_error(h, rc, DW_SIDE_NONE,
                                  "looking for other migrations of the old "
                                  "model");
    }
    sqlite3_finalize(st);
    dw__free(cols);
    return result;
}

/* Another stored migration whose mapping expressions, setup SQL or cohort
 * (not contracted) name the old table, which would then no longer prepare:
 * DW_EGATE. Only with two tables, and for migrations whose sides are other
 * tables (for those of the old table, other_users() decides). */
static int named_by_others(dw_migration *h)
{
    static const char sql[] =
        "WITH others AS (SELECT * FROM dw_migrations WHERE id <> ?1 AND "
        "json_extract(spec, '$.old.table') <> ?2 COLLATE NOCASE AND "
        "json_extract(spec, '$.new.table') <> ?2 COLLATE NOCASE) "
        "SELECT m.name, 'mapping', j.value FROM others AS m, "
        "json_each(m.spec, '$.up.sql') AS j UNION ALL "
        "SELECT m.name, 'mapping', j.value FROM others AS m, "
        "json_each(m.spec, '$.down.sql') AS j UNION ALL "
        "SELECT name, 'setup SQL', json_extract(spec, '$.setup') FROM others "
        "UNION ALL SELECT name, 'cohort', canary_cohort FROM others WHERE "
        "contracted = 0";
    const char *table = h->spec.side[DW_SIDE_OLD].table;
    if (h->spec.same_table)
        return DW_OK;
    sqlite3_stmt *st = NULL;
    int rc = dw__prepare(h, sql, &st, NULL);
    int result = DW_OK;
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, h->id);
        sqlite3_bind_text(st, 2, table, -1, SQLITE_STATIC);
    }
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(st, 2);
        rc = SQLITE_OK;
        if (text && dw_sql_names(text, table)) {
            result = dw__error(h, DW_EGATE, DW_SIDE_OLD,
                               "the %s of migration \"%s\" names table "
                               "\"%s\"; nothing was dropped: redefine that "
                               "migration without it first",
                               (const char *)sqlite3_column_text(st, 1),
                               (const char *)sqlite3_column_text(st, 0),
                               table);
            break;
        }
    }
    if (result == DW_OK && rc != SQLITE_DONE)
        result = dw__sqlite_error(h, rc, DW_SIDE_NONE,
                                  "looking for other migrations of the old "
                                  "model");
    sqlite3_finalize(st);
    return result;
}

/* Every other migration's stored spec parses: one that does not would
 * only fail the searches through the specs (DW_ERROR), and could not be
 * told to use the old model or not. DW_ECORRUPT naming it. */
static int others_intact(dw_migration *h, const char *what)
{
    sqlite3_stmt *st = NULL;
    int rc = dw__prepare(h,
                         "SELECT name, id FROM dw_migrations WHERE id <> ?1 "
                         "AND NOT json_valid(spec) ORDER BY name LIMIT 1",
                         &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, h->id);
        rc = sqlite3_step(st);
    }
    int result = DW_OK;
    if (rc == SQLITE_ROW)
        result = dw__error(h, DW_ECORRUPT, DW_SIDE_NONE,
                           "the stored spec of migration \"%s\" is damaged "
                           "(table dw_migrations, row with id %lld: it does "
                           "not parse as JSON), so whether it uses the old "
                           "model cannot be told; nothing was %s",
                           (const char *)sqlite3_column_text(st, 0),
                           (long long)sqlite3_column_int64(st, 1), what);
    else if (rc != SQLITE_DONE)
        result = dw__sqlite_error(h, rc, DW_SIDE_NONE,
                                  "looking for other migrations of the old "
                                  "model");
    sqlite3_finalize(st);
    return result;
}

/* What other migrations allow: DW_EGATE, or the old model dropped, or kept
 * for the one in *kept_for. */
static int others_allow_drop(dw_migration *h, char **kept_for)
{
    *kept_for = NULL;
    int rc = others_intact(h, "dropped");
    if (rc == DW_OK)
        rc = named_by_others(h);
    return rc == DW_OK ? other_users(h, kept_for) : rc;
}

/* Drops the old table, or the old columns. */
static int drop_model(dw_migration *h, const char *path)
{
    const dw_side_def *o = &h->spec.side[DW_SIDE_OLD];
    int rc = DW_OK;
    if (!h->spec.same_table && (rc = no_references(h, o->table)) != DW_OK)
        return rc;
    if (!h->spec.same_table) {
        dw_buf b;
        dw_buf_init(&b);
        dw_buf_puts(&b, "DROP TABLE main.");
        dw_buf_ident(&b, o->table);
        rc = exec_buf(h, h->db, &b, "dropping the old table", path);
    }
    for (int i = 0; rc == DW_OK && h->spec.same_table && i < o->ncols; i++) {
        dw_buf b;
        dw_buf_init(&b);
        dw_buf_puts(&b, "ALTER TABLE main.");
        dw_buf_ident(&b, o->table);
        dw_buf_puts(&b, " DROP COLUMN ");
        dw_buf_ident(&b, o->cols[i]);
        rc = exec_buf(h, h->db, &b, "dropping an old column", path);
    }
    return rc;
}

/* Step 3: under the write lock, the source once more, then the drop. */
static int drop_old(dw_migration *h, const model *m, const char *path,
                    int64_t rows, const char *hex, const char *reason)
{
    int stage;
    int rc = dw__stage_current(h, &stage);
    if (rc == DW_OK && h->contracted)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "%s was contracted by another connection while the "
                         "backup was written; nothing was dropped",
                         h->spec.name);
    if (rc == DW_OK && stage != DW_STAGE_COMPLETE)
        return dw__error(h, DW_EGATE, DW_SIDE_NONE,
                         "%s left COMPLETE while the backup was written; "
                         "nothing was dropped",
                         h->spec.name);
    /* Checked again under the write lock: routing may have changed. */
    if (rc == DW_OK)
        rc = dw__route_allows_contract(h);
    int64_t now_rows = 0;
    char now[65];
    if (rc == DW_OK)
        rc = digest(h, h->db, "main", m, &now_rows, now, path);
    if (rc == DW_OK && (now_rows != rows || strcmp(now, hex) != 0))
        return dw__error(h, DW_ERROR, DW_SIDE_NONE,
                         "the old model changed while the backup was being "
                         "written (%lld rows now, %lld backed up); nothing "
                         "was dropped",
                         (long long)now_rows, (long long)rows);
    char *kept_for = NULL;
    if (rc == DW_OK)
        rc = others_allow_drop(h, &kept_for);
    if (rc == DW_OK && !kept_for)
        rc = drop_model(h, path);
    if (rc == DW_OK)
        rc = set_contracted(h, 1);
    char *detail =
        rc == DW_OK
            ? sqlite3_mprintf("backup %s: %lld rows, sha256 %s%s%s%s", path,
                              (long long)rows, hex,
                              kept_for ? "; the old model was kept: it is "
                                         "still the old model of \""
                                       : "",
                              kept_for ? kept_for : "", kept_for ? "\"" : "")
            : NULL;
    dw__free(kept_for);
    if (rc == DW_OK && !detail)
        rc = nomem(h);
    if (rc == DW_OK)
        rc = dw__sqlite_history_add(h, "contract", stage, stage, 0, reason,
                                    detail);
    sqlite3_free(detail);
    return rc;
}

static int read_model(dw_migration *h, void *arg)
{
    int stage;
    int rc = dw__stage_current(h, &stage);
    if (rc != DW_OK)
        return rc;
    if (h->contracted)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "the old model of %s was already dropped by a "
                         "contract",
                         h->spec.name);
    if (stage != DW_STAGE_COMPLETE)
        return dw__error(h, DW_EGATE, DW_SIDE_NONE,
                         "the contract drops the old model only at COMPLETE; "
                         "%s is at %s",
                         h->spec.name, dw_stage_name(stage));
    /* Keys routed below COMPLETE still use the old model, and so may other
     * migrations. */
    char *kept_for = NULL;
    int rc2 = dw__route_allows_contract(h);
    if (rc2 == DW_OK)
        rc2 = others_allow_drop(h, &kept_for);
    dw__free(kept_for);
    return rc2 == DW_OK ? describe_model(h, arg) : rc2;
}

/* What the last step of a contract or a restore works from. */
typedef struct step_args {
    const model *m;
    const char *path, *reason, *hex;
    int64_t rows;
} step_args;

static int same_text(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int same_names(char **a, int na, char **b, int nb)
{
    if (na != nb)
        return 0;
    for (int i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return 0;
    return 1;
}

/* An existing file at the backup path is used only when it is a complete
 * backup of this migration's old model exactly as described now -- what a
 * contract whose commit failed leaves behind (drop_old() then checks the
 * rows against it once more, under the write lock). Anything else is
 * refused: the contract never overwrites a file. */
static int existing_backup(dw_migration *h, const model *m, const char *path,
                           int64_t *rows, char hex[65])
{
    model found;
    memset(&found, 0, sizeof found);
    int rc = check_backup(h, path, &found, 1, rows, hex);
    if (rc == DW_OK &&
        !(same_text(found.table, m->table) &&
          same_text(found.table_sql, m->table_sql) &&
          same_text(found.index_sql, m->index_sql) &&
          same_text(found.coldefs, m->coldefs) &&
          same_names(found.cols, found.ncols, m->cols, m->ncols) &&
          same_names(found.key, found.nkey, m->key, m->nkey)))
        rc = dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                       "it describes the old model otherwise than it is now");
    int64_t now_rows = 0;
    char now[65];
    if (rc == DW_OK)
        rc = digest(h, h->db, "main", m, &now_rows, now, path);
    if (rc == DW_OK && (now_rows != *rows || strcmp(now, hex) != 0))
        rc = dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                       "it holds %lld rows with digest %.16s, the old model "
                       "now %lld rows with digest %.16s",
                       (long long)*rows, hex, (long long)now_rows, now);
    model_free(&found);
    /* A locked file or no memory is not a verdict on the file. */
    if (rc == DW_OK || rc == DW_ENOMEM || rc == DW_EBUSY)
        return rc;
    char *why = dw__strdup(dw_errmsg(h));
    rc = dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                   "backup \"%s\" exists and is not a backup of the old "
                   "model as it is now (%s); the contract never overwrites a "
                   "file: remove it or choose another path",
                   path, why ? why : "out of memory");
    dw__free(why);
    return rc;
}

int dw__sqlite_contract(dw_migration *h, const char *path, const char *reason)
{
    model m;
    memset(&m, 0, sizeof m);
    backup_files files;
    memset(&files, 0, sizeof files);
    int rc = backup_files_name(h, path, &files);
    if (rc == DW_OK)
        rc = dw__in_scope(h, 0, read_model, &m);
    int64_t rows = 0, checked_rows = 0;
    char hex[65] = "", checked[65] = "";
    int created = 0;
    if (rc == DW_OK && access(path, F_OK) == 0) {
        rc = existing_backup(h, &m, path, &rows, hex);
    } else if (rc == DW_OK) {
        created = 1;
        rc = write_backup(h, &m, path, &rows, hex);
        if (rc == DW_OK)
            rc = check_backup(h, path, &m, 0, &checked_rows, checked);
        if (rc == DW_OK &&
            (checked_rows != rows || strcmp(checked, hex) != 0))
            rc = dw__error(h, DW_ERROR, DW_SIDE_NONE,
                           "backup \"%s\" does not match the old model",
                           path);
    }
    /* The drop and its record, in one transaction. */
    int committing = 0, dropping = 0;
    if (rc == DW_OK) {
        dropping = 1;
        int scope;
        rc = h->ops->begin(h, 1, &scope);
        if (rc == DW_OK)
            rc = drop_old(h, &m, path, rows, hex, reason);
        if (rc == DW_OK) {
            committing = 1;
            rc = h->ops->commit(h, scope);
            if (rc == DW_OK)
                h->contracted = 1;
        } else if (scope) {
            rc = dw__rollback(h, scope, rc);
        }
    }
    if (rc != DW_OK && committing) {
        /* A commit that failed may still reach the disk (in WAL mode its
         * frames can be in the log): the old model may be dropped after a
         * crash, and its backup must then be there. */
        dw__error_append(h,
                         "; backup \"%s\" was kept, as the failed commit may "
                         "still prove durable: a dw_contract() to the same "
                         "path uses it",
                         path);
    } else if (rc != DW_OK && dropping &&
               (rc == DW_EBUSY || h->contracted)) {
        /* Another connection's contract to the same path may have taken
         * this file as its backup (it uses an existing complete one) and
         * dropped the old model meanwhile. */
        dw__error_append(h,
                         "; backup \"%s\" was kept: another connection "
                         "may have contracted with it",
                         path);
    } else if (rc != DW_OK && created) {
        backup_files_remove(&files);
        dw__error_append(h, "; backup \"%s\" was removed", path);
    }
    backup_files_free(&files);
    model_free(&m);
    return rc;
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

static int restore_table(dw_migration *h, const model *m, const char *path,
                         int64_t rows, const char *hex)
{
    int64_t n = 0;
    sqlite3_stmt *st = NULL;
    int rc = dw__prepare(h,
                         "SELECT count(*) FROM main.sqlite_schema WHERE name "
                         "= ?1 COLLATE NOCASE",
                         &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, m->table, -1, SQLITE_STATIC);
        if ((rc = sqlite3_step(st)) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0), rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK)
        return dw__sqlite_error(h, rc, DW_SIDE_OLD, "reading the schema");
    if (n)
        return dw__error(h, DW_EMISUSE, DW_SIDE_OLD,
                         "table \"%s\" exists again, and not as backed up "
                         "(created again, or kept by the contract for "
                         "another migration and written since); a restore "
                         "will not replace it",
                         m->table);
    rc = run_stored_ddl(h, m->table_sql, path);
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
        rc = exec_buf(h, h->db, &b, "copying the rows back", path);
    }
    /* Indexes and triggers after the rows, so no trigger fires on them. */
    char **ix = NULL;
    int nix = 0;
    if (rc == DW_OK)
        rc = json_names(h, h->db, m->index_sql, &ix, &nix, path);
    for (int i = 0; rc == DW_OK && i < nix; i++)
        rc = run_stored_ddl(h, ix[i], path);
    for (int i = 0; i < nix; i++)
        dw__free(ix[i]);
    dw__free(ix);
    int64_t got = 0;
    char found[65];
    if (rc == DW_OK)
        rc = digest(h, h->db, "main", m, &got, found, path);
    if (rc == DW_OK && (got != rows || strcmp(found, hex) != 0))
        rc = dw__error(h, DW_ERROR, DW_SIDE_NONE,
                       "the restored table does not match the backup");
    return rc;
}

/* The old columns in place that another stored migration, not contracted,
 * has as old columns too: put back by its restore (or kept for it by a
 * contract). A restore leaves them as they are -- re-adding would fail,
 * copying over would undo its writes -- and its final check finds whether
 * they still hold what the backup does. Fills *names (n of them; each and
 * the array dw__free). */
static int shared_in_place(dw_migration *h, const model *m, char ***names,
                           int *n)
{
    *names = NULL;
    *n = 0;
    int intact = others_intact(h, "restored");
    if (intact != DW_OK)
        return intact;
    sqlite3_stmt *st = NULL;
    int rc = dw__prepare(
        h,
        "SELECT x.name FROM pragma_table_xinfo(?1, 'main') AS x WHERE "
        "EXISTS (SELECT 1 FROM dw_migrations AS m, json_each(m.spec, "
        "'$.old.columns') AS c WHERE m.id <> ?2 AND m.contracted = 0 AND "
        "json_extract(m.spec, '$.old.table') = ?1 COLLATE NOCASE AND "
        "c.value = x.name COLLATE NOCASE)",
        &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, m->table, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, h->id);
        rc = step_names(st, names, n);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE
               ? DW_OK
               : dw__sqlite_error(h, rc, DW_SIDE_OLD,
                                  "looking for other migrations of the old "
                                  "model");
}

static int listed(const char *name, char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (sqlite3_stricmp(name, names[i]) == 0)
            return 1;
    return 0;
}

static void free_names(char **names, int n)
{
    for (int i = 0; i < n; i++)
        dw__free(names[i]);
    dw__free(names);
}

/* Re-adds the old columns but those in `kept`, copies the backup's values
 * into them, and checks all of them against the backup. */
static int readd_columns(dw_migration *h, const model *m, char *const *kept,
                         int nkept, const char *path)
{
    /* Re-add each old column as declared; ALTER TABLE cannot re-add NOT
     * NULL without a default, so that constraint is left off. */
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
        sqlite3_bind_text(st, 1, m->coldefs, -1, SQLITE_STATIC);
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
    if (result != DW_OK)
        return result;

    /* Copy the values back by key, then check every backed-up row whose key
     * still exists now holds them. */
    dw_buf b, join;
    dw_buf_init(&b);
    dw_buf_init(&join);
    for (int i = 0; i < m->nkey; i++) {
        dw_buf_puts(&join, i ? " AND " : "");
        dw_buf_puts(&join, "dw_t.");
        dw_buf_ident(&join, m->key[i]);
        dw_buf_puts(&join, " = dw_b.");
        dw_buf_ident(&join, m->key[i]);
    }
    dw_buf_puts(&b, "UPDATE main.");
    dw_buf_ident(&b, m->table);
    dw_buf_puts(&b, " AS dw_t SET ");
    int set = 0;
    for (int i = m->nkey; i < m->ncols; i++) {
        if (listed(m->cols[i], kept, nkept))
            continue;
        dw_buf_puts(&b, set++ ? ", " : "");
        dw_buf_ident(&b, m->cols[i]);
        dw_buf_puts(&b, " = dw_b.");
        dw_buf_ident(&b, m->cols[i]);
    }
    dw_buf_puts(&b, " FROM " BACKUP_SCHEMA ".");
    dw_buf_ident(&b, m->table);
    dw_buf_puts(&b, " AS dw_b WHERE ");
    dw_buf_add(&b, join.p ? join.p : "", join.len);
    result = join.oom ? nomem(h)
             : set    ? exec_buf(h, h->db, &b, "copying the columns back",
                                 path)
                      : DW_OK;
    dw_buf_free(&b); /* when not run: exec_buf() frees what it runs */
    if (result == DW_OK) {
        dw_buf_init(&b);
        dw_buf_puts(&b, "SELECT count(*), coalesce(sum(");
        for (int i = m->nkey; i < m->ncols; i++) {
            dw_buf_puts(&b, i > m->nkey ? " AND " : "");
            dw_buf_puts(&b, "dw_t.");
            dw_buf_ident(&b, m->cols[i]);
            dw_buf_puts(&b, " IS dw_b.");
            dw_buf_ident(&b, m->cols[i]);
        }
        dw_buf_puts(&b, "), 0) FROM " BACKUP_SCHEMA ".");
        dw_buf_ident(&b, m->table);
        dw_buf_puts(&b, " AS dw_b JOIN main.");
        dw_buf_ident(&b, m->table);
        dw_buf_puts(&b, " AS dw_t ON ");
        dw_buf_add(&b, join.p ? join.p : "", join.len);
        st = NULL;
        rc = b.oom ? SQLITE_NOMEM : dw__prepare(h, b.p, &st, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (sqlite3_column_int64(st, 0) != sqlite3_column_int64(st, 1))
                result = dw__error(h, DW_ERROR, DW_SIDE_NONE,
                                   "the restored columns do not match the "
                                   "backup");
            rc = SQLITE_OK;
        }
        if (rc != SQLITE_OK)
            result = dw__sqlite_error(h, rc, DW_SIDE_OLD,
                                      "checking the restored columns");
        sqlite3_finalize(st);
        dw_buf_free(&b);
    }
    dw_buf_free(&join);
    return result;
}

static int restore_columns(dw_migration *h, const model *m, const char *path)
{
    char **kept = NULL;
    int nkept = 0;
    int result = shared_in_place(h, m, &kept, &nkept);
    if (result == DW_OK)
        result = readd_columns(h, m, kept, nkept, path);
    free_names(kept, nkept);
    return result;
}

/* Whether the old model is there already, exactly as backed up: what a
 * contract that kept it for another migration leaves, until that one's
 * contract drops it (or what another's restore put back). Then the
 * restore has nothing to recreate or copy. */
static int in_place(dw_migration *h, const model *m, const char *path,
                    int64_t rows, const char *hex, int *same)
{
    *same = 0;
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
    int present = 0;
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, m->table, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, cols, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, m->table_sql != NULL);
        if ((rc = sqlite3_step(st)) == SQLITE_ROW)
            present = sqlite3_column_int(st, 0), rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    dw__free(cols);
    if (rc != SQLITE_OK)
        return dw__sqlite_error(h, rc, DW_SIDE_OLD, "reading the schema");
    int64_t got = 0;
    char found[65];
    int result = present ? digest(h, h->db, "main", m, &got, found, path)
                         : DW_OK;
    /* Rows that do not read as the backup's are not it: the restore goes
     * on, and refuses to replace them. */
    if (result != DW_OK && result != DW_ENOMEM && result != DW_EBUSY) {
        dw__clear_error(h);
        return DW_OK;
    }
    *same = result == DW_OK && present && got == rows &&
            strcmp(found, hex) == 0;
    return result;
}

static int restore_in_scope(dw_migration *h, void *arg)
{
    step_args *a = arg;
    int stage;
    int rc = dw__stage_current(h, &stage);
    if (rc != DW_OK)
        return rc;
    if (!h->contracted)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "%s was not contracted: its old model is in place",
                         h->spec.name);
    int same = 0;
    rc = in_place(h, a->m, a->path, a->rows, a->hex, &same);
    if (rc == DW_OK && !same)
        rc = a->m->table_sql
                 ? restore_table(h, a->m, a->path, a->rows, a->hex)
                 : restore_columns(h, a->m, a->path);
    if (rc == DW_OK)
        rc = set_contracted(h, 0);
    sqlite3_stmt *st = rc == DW_OK ? dw__stmt(h, ST_STAGE_STORE) : NULL;
    if (rc == DW_OK && !st)
        rc = h->errcode;
    if (rc == DW_OK) {
        sqlite3_bind_int64(st, 1, h->id);
        sqlite3_bind_int(st, 2, DW_STAGE_RAMPDOWN);
        sqlite3_bind_double(st, 3, dw__wall_time());
        if (dw__run(h, st, DW_SIDE_NONE, "storing the stage") != SQLITE_OK)
            rc = h->errcode;
    }
    char *detail =
        rc == DW_OK
            ? sqlite3_mprintf("from backup %s: %lld rows, sha256 %s%s",
                              a->path, (long long)a->rows, a->hex,
                              same ? "; the old model was in place, as "
                                     "backed up: nothing copied"
                                   : "")
            : NULL;
    if (rc == DW_OK && !detail)
        rc = nomem(h);
    if (rc == DW_OK)
        rc = dw__sqlite_history_add(h, "restore", stage, DW_STAGE_RAMPDOWN,
                                    0, a->reason, detail);
    sqlite3_free(detail);
    if (rc == DW_OK) {
        h->contracted = 0;
        h->stage = DW_STAGE_RAMPDOWN;
        h->ops->state_remember(h);
    }
    return rc;
}

int dw__sqlite_restore(dw_migration *h, const char *path, const char *reason)
{
    model m;
    memset(&m, 0, sizeof m);
    int64_t rows = 0;
    char hex[65] = "";
    int rc = check_backup(h, path, &m, 1, &rows, hex);
    if (rc == DW_OK)
        rc = attach(h, path);
    if (rc == DW_OK) {
        step_args a = {&m, path, reason, hex, rows};
        rc = dw__in_scope(h, 1, restore_in_scope, &a);
        detach(h);
    }
    model_free(&m);
    return rc;
}
