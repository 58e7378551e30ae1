/*
 * fuzz_spec.c -- a libFuzzer target over the migration spec.
 *
 * Each input is decoded, one byte per decision, into a dw_options spec
 * (names, key columns, columns, mappings, setup SQL, flags), then into a few
 * keys and operations run against a fresh in-memory database that holds a
 * handful of real tables. Names come from a dictionary of real (and a few
 * deliberately wrong) names most of the time, and from raw input bytes
 * otherwise, so inputs reach deep into validation and past it.
 *
 * Any call may fail. What must hold (else abort(), which libFuzzer reports):
 *   - every result is a code the header lists for that call, and a failure
 *     leaves a non-empty message (a success leaves "not an error");
 *   - a failed dw_sqlite_open() returns no handle, gives a message and stores
 *     nothing: the whole database is byte for byte what it was;
 *   - the calls that are atomic by contract (writes, stage moves, overrides,
 *     routing, repairs of given keys) change nothing when they fail;
 *   - the library never leaves a transaction open, and after dw_close()
 *     the connection closes cleanly (no statement left unfinalized);
 *   - mismatches reach the sink well formed.
 * Leaks and memory errors are the sanitizers' (and valgrind's) to report.
 *
 * Build and run it with `make fuzz` (fuzz/fuzz.mk). test/test_fuzz_corpus.c
 * includes this file to replay fuzz/corpus/ under `make test`.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "dualwrite/sqlite.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* -DFUZZ_TRACE prints each call and its result, to see what an input
 * does. */
#ifdef FUZZ_TRACE
#define fuzz_trace(call, rc, h)                                                \
    fprintf(stderr, "fuzz_spec: %-18s -> %d %s\n", call, rc, dw_errmsg(h))
#else
#define fuzz_trace(call, rc, h) ((void)0)
#endif

/* Set by the corpus replay test, so a failure names its input. */
static const char *fuzz_input_name;

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void fuzz_fail(const char *fmt, ...);

static void fuzz_fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "fuzz_spec: invariant violated%s%s: ",
            fuzz_input_name ? " on " : "",
            fuzz_input_name ? fuzz_input_name : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

/* ---- the starting database -------------------------------------------- */

static const char fuzz_schema[] =
    "CREATE TABLE statuses(code INTEGER PRIMARY KEY, label TEXT UNIQUE);"
    "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
    "  email TEXT UNIQUE, status INTEGER);"
    "CREATE TABLE users_v2(id INTEGER PRIMARY KEY, full_name TEXT,"
    "  email TEXT UNIQUE, status_label TEXT);"
    "CREATE TABLE orgs(org TEXT NOT NULL, num INTEGER NOT NULL, title TEXT,"
    "  PRIMARY KEY(org, num)) WITHOUT ROWID;"
    "CREATE TABLE orgs_v2(org TEXT NOT NULL, num INTEGER NOT NULL,"
    "  label TEXT, score REAL, UNIQUE(org, num));"
    "CREATE TABLE one(id INTEGER PRIMARY KEY, a TEXT, b TEXT, c_new TEXT,"
    "  d_new TEXT);"
    "CREATE TABLE \"we\"\"ird;--\"(\"id\" INTEGER PRIMARY KEY,"
    "  \"x y\" TEXT, \"we\"\"ird\" TEXT);"
    "CREATE TABLE gen(id INTEGER PRIMARY KEY, a TEXT,"
    "  g TEXT GENERATED ALWAYS AS (upper(a)));"
    "CREATE TABLE nocase(k TEXT PRIMARY KEY COLLATE NOCASE, v TEXT);"
    "CREATE TABLE texty(k TEXT PRIMARY KEY, v TEXT, w TEXT);"
    "CREATE TABLE fk_child(id INTEGER PRIMARY KEY,"
    "  user_id INTEGER REFERENCES users(id));"
    "CREATE VIEW v_users AS SELECT * FROM users;"
    "CREATE TRIGGER users_touch AFTER UPDATE ON users BEGIN"
    "  UPDATE statuses SET label = label WHERE code = NEW.status; END;"
    "INSERT INTO statuses VALUES(1, 'active'), (2, 'blocked');"
    "INSERT INTO users VALUES(1, 'ann', 'ann@x', 1), (2, 'bob', 'bob@x', 2),"
    "  (3, 'cy', NULL, NULL), (-5, 'neg', 'n@x', 1);"
    "INSERT INTO users_v2 VALUES(1, 'ANN', 'ann@x', 'active');"
    "INSERT INTO orgs VALUES('org-1', 1, 't1'), ('org-1', 2, 't2'),"
    "  ('org-2', 1, NULL);"
    "INSERT INTO orgs_v2 VALUES('org-1', 1, 'T1', 1.5);"
    "INSERT INTO one VALUES(1, 'a1', 'b1', NULL, NULL),"
    "  (2, 'a2', 'b2', 'c2', NULL);"
    "INSERT INTO \"we\"\"ird;--\" VALUES(1, 'xy', 'w');"
    "INSERT INTO gen(id, a) VALUES(1, 'g');"
    "INSERT INTO nocase VALUES('Ab', 'v');"
    "INSERT INTO texty VALUES('a', 'v', 'w'), ('1', 'one', NULL);";

/* ---- dictionaries ------------------------------------------------------- */

#define COUNT(a) (sizeof(a) / sizeof *(a))

static const char *const dict_migrations[] = {
    "m", "users_v2", "é-migration", "we\"ird", "m2", "", "a;b", "m",
};

static const char *const dict_tables[] = {
    "users", "users_v2", "orgs", "orgs_v2", "one", "statuses",
    "we\"ird;--", "gen", "nocase", "texty", "fk_child", "v_users",
    "USERS", "nope", "sqlite_master", "dw_migrations", "main.users", "",
};

static const char *const dict_columns[] = {
    "id", "name", "email", "status", "full_name", "status_label", "org",
    "num", "title", "label", "score", "code", "a", "b", "c_new", "d_new",
    "g", "k", "v", "w", "x y", "we\"ird", "user_id", "ID", "rowid", "nope",
    "",
};

static const char *const dict_exprs[] = {
    "name", "upper(name)", "\"name\"", "'lit'", "name || 'x'", "status",
    "status + 1", "CAST(status AS TEXT)",
    "(SELECT label FROM statuses WHERE code = status)", "NULL", "1/0",
    "email", "title", "label", "abs(num)", "randomblob(4)", "full_name",
    "lower(full_name)", "\"nope\"", "nope", "a", "b", "upper(a)", "c_new",
    "v", "w", "\"x y\"", "\"we\"\"ird\"", "org", "num * 2", "score",
    "coalesce(title, 'none')", "(SELECT 1", "1; SELECT 2", "count(*)",
    "zeroblob(3)", "'it''s'", "typeof(name)", "-- c", "",
    "name) FROM users_v2 WHERE id = ?1 --", "name), (name",
};

static const char *const dict_setup[] = {
    ("INSERT INTO statuses(code, label) VALUES(9, 'nine') "
     "ON CONFLICT DO NOTHING"),
    "DELETE FROM statuses WHERE code > 100",
    "UPDATE users SET status = status WHERE 0",
    "SELECT 1; SELECT 2",
    "INSERT INTO nope VALUES(1)",
    "BEGIN",
    "ROLLBACK",
    "INSERT INTO statuses(code, label) VALUES(3, 'x')",
    "",
    "/* a comment first */ COMMIT",
};

static const char *const dict_cohorts[] = {
    "status = 1", "name LIKE 'a%'", "org = 'org-1'", "1", "nope = 1",
    "status = 1) OR (1", "(SELECT 1)", "a = 'a1'", "",
};

static const char *const dict_reasons[] = {"test", "", "r\"'; --"};

static const char *const dict_texts[] = {
    "a", "org-1", "org-2", "1", "", "é", "x\"y", "Ab", "ab",
};

/* Statements the write callbacks run, the key values bound to ?1, ?2... */
static const char *const dict_writes[] = {
    "INSERT INTO users(id, name, email, status) VALUES(?1, 'n', NULL, 1) "
    "ON CONFLICT(id) DO UPDATE SET name = name || '+'",
    "DELETE FROM users WHERE id = ?1",
    "UPDATE users SET status = coalesce(status, 0) + 1 WHERE id = ?1",
    "INSERT INTO users_v2(id, full_name, email, status_label) "
    "VALUES(?1, 'N', NULL, 'one') "
    "ON CONFLICT(id) DO UPDATE SET full_name = full_name || '+'",
    "DELETE FROM users_v2 WHERE id = ?1",
    "INSERT INTO orgs(org, num, title) VALUES(?1, ?2, 't') "
    "ON CONFLICT DO UPDATE SET title = title || '+'",
    "INSERT INTO orgs_v2(org, num, label, score) VALUES(?1, ?2, 'l', 1) "
    "ON CONFLICT DO UPDATE SET score = score + 1",
    "DELETE FROM orgs WHERE org = ?1 AND num = ?2",
    "INSERT INTO one(id, a, b) VALUES(?1, 'a', 'b') "
    "ON CONFLICT(id) DO UPDATE SET a = a || '+'",
    "UPDATE one SET c_new = 'c' WHERE id = ?1",
    "INSERT INTO users(id, name, email) VALUES(?1, 'dup', 'ann@x')",
    "INSERT INTO texty(k, v) VALUES(?1, 'v') "
    "ON CONFLICT(k) DO UPDATE SET v = v || '+'",
    "SELECT 1",
    "INSERT INTO nope VALUES(1)",
};

static const char *const dict_reads[] = {
    "SELECT * FROM users WHERE id = ?1",
    "SELECT id, upper(name) AS full_name FROM users WHERE id = ?1",
    "SELECT * FROM users_v2 WHERE id = ?1",
    "SELECT org, num, title FROM orgs WHERE org = ?1 AND num = ?2",
    "SELECT * FROM one WHERE id = ?1",
    "SELECT ?1 AS k, 'same' AS v",
};

/* ---- the decoder ---------------------------------------------------------- */

#define FZ_MAX_STRINGS 256
#define FZ_MAX_NAMES 6
#define FZ_MAX_MAPS 5
#define FZ_MAX_KEYS 12

/* Prepared statements of the database digest (see fuzz_db_digest_of). */
typedef struct fz_digest {
    sqlite3_stmt *version, *schema;
    sqlite3_stmt **tables;
    int ntables, cap, seen;
} fz_digest;

typedef struct fz {
    const uint8_t *p;
    size_t n;
    char *strings[FZ_MAX_STRINGS];
    int nstrings;
    sqlite3 *db;
    fz_digest digest;
    int progress_calls;
    /* The spec and what it points at. */
    dw_options o;
    const char *okey[FZ_MAX_NAMES], *nkey[FZ_MAX_NAMES];
    const char *ocols[FZ_MAX_NAMES], *ncols[FZ_MAX_NAMES];
    const char *redact[FZ_MAX_NAMES];
    dw_column_map up[FZ_MAX_MAPS], down[FZ_MAX_MAPS];
    /* Callbacks. */
    int map_calls, map_fail_every;
    int mismatches;
    int write_sql[3]; /* indexed by side: dict_writes entry, or -1 fails */
    int read_sql[3];
    int read_fail;
} fz;

static unsigned fz_byte(fz *f)
{
    if (!f->n)
        return 0;
    f->n--;
    return *f->p++;
}

static unsigned fz_pick(fz *f, unsigned n) { return n ? fz_byte(f) % n : 0; }

static int64_t fz_int64(fz *f)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | fz_byte(f);
    return (int64_t)v;
}

/* Keeps a string for the rest of the input; the decoder owns them all. */
static char *fz_keep(fz *f, char *s)
{
    if (!s)
        return NULL;
    if (f->nstrings == FZ_MAX_STRINGS) {
        free(s);
        return NULL;
    }
    f->strings[f->nstrings++] = s;
    return s;
}

/* Raw bytes from the input: a length byte, then that many bytes (fewer
 * when the input ends). NUL-terminated; *len counts the bytes, which may
 * hold NULs. */
static const char *fz_raw(fz *f, size_t *len)
{
    size_t want = fz_byte(f);
    if (want > f->n)
        want = f->n;
    char *s = malloc(want + 1);
    if (!s)
        return "";
    if (want)
        memcpy(s, f->p, want);
    s[want] = '\0';
    f->p += want;
    f->n -= want;
    if (len)
        *len = want;
    s = fz_keep(f, s);
    return s ? s : "";
}

/* A dictionary entry most of the time, raw bytes sometimes. */
static const char *fz_str(fz *f, const char *const *dict, size_t n)
{
    unsigned b = fz_byte(f);
    if (b < 0xe0)
        return dict[b % n];
    return fz_raw(f, NULL);
}

/* ---- invariants ---------------------------------------------------------------- */

/* A digest of the whole database: its schema and every row of every table,
 * types and bytes. Nothing a failed atomic call did may show in it. Taken
 * before and after many calls, so its statements are prepared once per
 * schema version (parsing SQL would cost more than the calls). */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 1099511628211ull;
    return h;
}

static void fz_digest_free(fz_digest *d)
{
    for (int i = 0; i < d->ntables; i++)
        sqlite3_finalize(d->tables[i]);
    free(d->tables);
    sqlite3_finalize(d->version);
    sqlite3_finalize(d->schema);
    memset(d, 0, sizeof *d);
}

static sqlite3_stmt *fz_prepare(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st,
                           NULL) != SQLITE_OK)
        fuzz_fail("cannot prepare %s: %s", sql, sqlite3_errmsg(db));
    return st;
}

/* Prepares SELECT * for every table, when the schema changed. */
static void fz_digest_tables(sqlite3 *db, fz_digest *d)
{
    if (!d->version) {
        d->version = fz_prepare(db, "PRAGMA schema_version");
        d->schema = fz_prepare(db, "SELECT type, name, sql FROM "
                                   "sqlite_schema ORDER BY type, name");
        d->seen = -1;
    }
    if (sqlite3_step(d->version) != SQLITE_ROW)
        fuzz_fail("cannot read the schema version: %s", sqlite3_errmsg(db));
    int version = sqlite3_column_int(d->version, 0);
    sqlite3_reset(d->version);
    if (version == d->seen)
        return;
    for (int i = 0; i < d->ntables; i++)
        sqlite3_finalize(d->tables[i]);
    d->ntables = 0;
    while (sqlite3_step(d->schema) == SQLITE_ROW) {
        const char *type = (const char *)sqlite3_column_text(d->schema, 0);
        const char *name = (const char *)sqlite3_column_text(d->schema, 1);
        if (!type || !name || strcmp(type, "table") != 0 ||
            strncmp(name, "sqlite_", 7) == 0)
            continue;
        if (d->ntables == d->cap) {
            int cap = d->cap ? d->cap * 2 : 32;
            sqlite3_stmt **t = realloc(d->tables, sizeof *t * (size_t)cap);
            if (!t)
                fuzz_fail("out of memory");
            d->tables = t;
            d->cap = cap;
        }
        char *sql = sqlite3_mprintf("SELECT * FROM \"%w\"", name);
        if (!sql)
            fuzz_fail("out of memory");
        d->tables[d->ntables++] = fz_prepare(db, sql);
        sqlite3_free(sql);
    }
    sqlite3_reset(d->schema);
    d->seen = version;
}

static uint64_t fz_digest_stmt(uint64_t h, sqlite3_stmt *st)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (int c = 0; c < sqlite3_column_count(st); c++) {
            int type = sqlite3_column_type(st, c);
            h = fnv(h, &type, sizeof type);
            const void *v = sqlite3_column_blob(st, c);
            h = fnv(h, v ? v : "", (size_t)sqlite3_column_bytes(st, c));
        }
    }
    if (rc != SQLITE_DONE)
        fuzz_fail("cannot read the database: %s",
                  sqlite3_errmsg(sqlite3_db_handle(st)));
    sqlite3_reset(st);
    return h;
}

static uint64_t fuzz_db_digest_of(sqlite3 *db, fz_digest *d)
{
    fz_digest_tables(db, d);
    uint64_t h = fz_digest_stmt(14695981039346656037ull, d->schema);
    for (int i = 0; i < d->ntables; i++)
        h = fz_digest_stmt(h, d->tables[i]);
    return h;
}

static int known_code(int rc)
{
    return rc == DW_OK || rc == DW_MORE ||
           (rc <= DW_ERROR && rc >= DW_EGATE);
}

/* Checks a call's result: a code the call may give, and the message. */
static void fuzz_check(fz *f, dw_migration *h, const char *call, int rc,
                       int allow_more)
{
    fuzz_trace(call, rc, h);
    if (!known_code(rc) || (rc == DW_MORE && !allow_more))
        fuzz_fail("%s returned %d, not one of its result codes", call, rc);
    const char *msg = dw_errmsg(h);
    if (!msg)
        fuzz_fail("%s: dw_errmsg() is NULL", call);
    /* DW_ENOTFOUND is an answer (no such row), not a failure: dw_read()
     * leaves "not an error" with it. Every other negative code is. */
    if (rc < 0 && rc != DW_ENOTFOUND &&
        (!msg[0] || strcmp(msg, "not an error") == 0))
        fuzz_fail("%s failed with %d (%s) but left no message", call, rc,
                  dw_errstr(rc));
    if (rc >= 0 && strcmp(msg, "not an error") != 0)
        fuzz_fail("%s succeeded but the message is \"%s\"", call, msg);
    if (rc < 0 && rc != DW_ENOTFOUND && strstr(msg, "internal"))
        fuzz_fail("%s: an internal error: %s", call, msg);
    int side = dw_errside(h);
    if (side != DW_SIDE_NONE && side != DW_SIDE_OLD && side != DW_SIDE_NEW)
        fuzz_fail("%s: dw_errside() is %d", call, side);
    if (!sqlite3_get_autocommit(f->db))
        fuzz_fail("%s (%d: %s) left a transaction open", call, rc, msg);
}

/* For calls that apply all or nothing: a failure changed nothing. */
static void fuzz_check_atomic(fz *f, dw_migration *h, const char *call,
                              int rc, uint64_t before)
{
    fuzz_check(f, h, call, rc, 0);
    if (rc < 0 && fuzz_db_digest_of(f->db, &f->digest) != before)
        fuzz_fail("%s failed (%d: %s) but changed the database", call, rc,
                  dw_errmsg(h));
}

static int is_hex(const char *s, size_t n)
{
    if (!s || strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* ---- callbacks -------------------------------------------------------------------- */

/* Long statements (a runaway recursive expression) are cut off, so an input
 * costs milliseconds; the library sees an interrupted statement. */
static int fuzz_progress(void *payload)
{
    fz *f = payload;
    return ++f->progress_calls > 2000;
}

static void fuzz_sink(const dw_mismatch *m, void *payload)
{
    fz *f = payload;
    f->mismatches++;
    if (!m || !m->migration || !m->key || m->key[0] != '[' ||
        m->kind < DW_MISMATCH_MISSING_NEW || m->kind > DW_MISMATCH_DIFFERENT ||
        !is_hex(m->digest, 16) || m->ndiffs < 0 || (m->ndiffs && !m->diffs))
        fuzz_fail("a malformed mismatch reached the sink");
    for (int i = 0; i < m->ndiffs; i++)
        if (!m->diffs[i].column || !m->diffs[i].old_desc ||
            !m->diffs[i].new_desc)
            fuzz_fail("a mismatch difference lacks its column or "
                      "descriptions");
}

/* A C mapping: copies the source row and fills every dictionary column it
 * did not have, so any target model column named from the dictionary is
 * set. Fails on every map_fail_every-th call when asked to. */
static int fuzz_map(dw_row *out, const dw_row *in, void *payload)
{
    fz *f = payload;
    f->map_calls++;
    if (f->map_fail_every && f->map_calls % f->map_fail_every == 0)
        return 42;
    for (int i = 0; i < dw_row_count(in); i++) {
        int rc = dw_row_set(out, dw_row_name(in, i), dw_row_value(in, i));
        if (rc != DW_OK)
            return rc;
    }
    for (size_t i = 0; i < COUNT(dict_columns); i++)
        if (dict_columns[i][0] && dw_row_find(out, dict_columns[i]) < 0 &&
            dw_row_set_text(out, dict_columns[i], "m") != DW_OK)
            return DW_ENOMEM;
    return DW_OK;
}

/* Prepares a dictionary statement and binds the key to its parameters. */
static int fuzz_bind_stmt(sqlite3 *db, const char *sql, const dw_value *key,
                          int nkey, sqlite3_stmt **st)
{
    int rc = sqlite3_prepare_v2(db, sql, -1, st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    int params = sqlite3_bind_parameter_count(*st);
    for (int i = 0; i < nkey && i < params; i++) {
        const dw_value *v = &key[i];
        if (v->type == DW_TYPE_INTEGER)
            rc = sqlite3_bind_int64(*st, i + 1, v->i);
        else if (v->type == DW_TYPE_TEXT)
            rc = sqlite3_bind_text(*st, i + 1, v->p ? v->p : "",
                                   v->n < 0 ? -1 : v->n, SQLITE_TRANSIENT);
        else
            rc = sqlite3_bind_null(*st, i + 1);
        if (rc != SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}

static int fuzz_write(void *db, const dw_value *key, int nkey, int which)
{
    if (which < 0)
        return DW_ECALLBACK; /* an application failure */
    sqlite3_stmt *st = NULL;
    int rc = fuzz_bind_stmt(db, dict_writes[which], key, nkey, &st);
    if (rc == SQLITE_OK) {
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            ;
    }
    sqlite3_finalize(st);
    return dw_sqlite_result(db, rc);
}

static int fuzz_write_old(void *db, const dw_value *key, int nkey,
                          void *payload)
{
    return fuzz_write(db, key, nkey, ((fz *)payload)->write_sql[DW_SIDE_OLD]);
}

static int fuzz_write_new(void *db, const dw_value *key, int nkey,
                          void *payload)
{
    return fuzz_write(db, key, nkey, ((fz *)payload)->write_sql[DW_SIDE_NEW]);
}

static int fuzz_read(dw_row *out, void *db, const dw_value *key, int nkey,
                     int which, int fail)
{
    if (fail)
        return DW_ERROR;
    sqlite3_stmt *st = NULL;
    int rc = fuzz_bind_stmt(db, dict_reads[which], key, nkey, &st);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            rc = dw_sqlite_row_set_columns(out, st);
        else
            rc = rc == SQLITE_DONE ? DW_ENOTFOUND : DW_ERROR;
    } else {
        rc = DW_ERROR;
    }
    sqlite3_finalize(st);
    return rc;
}

static int fuzz_read_old(dw_row *out, void *db, const dw_value *key,
                         int nkey, void *payload)
{
    fz *f = payload;
    return fuzz_read(out, db, key, nkey, f->read_sql[DW_SIDE_OLD],
                     f->read_fail == 1);
}

static int fuzz_read_new(dw_row *out, void *db, const dw_value *key,
                         int nkey, void *payload)
{
    fz *f = payload;
    return fuzz_read(out, db, key, nkey, f->read_sql[DW_SIDE_NEW],
                     f->read_fail == 2);
}

/* ---- decoding the spec ---------------------------------------------------------- */

static int fuzz_names(fz *f, const char **out, const char *const *dict,
                      size_t ndict, int n)
{
    for (int i = 0; i < n && i < FZ_MAX_NAMES; i++)
        out[i] = fz_pick(f, 16) == 0 ? NULL : fz_str(f, dict, ndict);
    return n;
}

static void fuzz_side(fz *f, dw_side_spec *s, const char **keys,
                      const char **cols, int nkey)
{
    s->table = fz_pick(f, 32) == 0 ? NULL
                                   : fz_str(f, dict_tables, COUNT(dict_tables));
    s->nkey_columns = nkey;
    s->key_columns = nkey > 0 || fz_pick(f, 2)
                         ? keys
                         : NULL;
    fuzz_names(f, keys, dict_columns, COUNT(dict_columns),
               nkey > 0 ? nkey : 0);
    switch (fz_pick(f, 8)) {
    case 0: /* a count without a list */
        s->columns = NULL;
        s->ncolumns = (int)fz_pick(f, 3);
        break;
    case 1:
    case 2:
    case 3: {
        int n = (int)fz_pick(f, 5);
        s->columns = cols;
        s->ncolumns = fuzz_names(f, cols, dict_columns, COUNT(dict_columns),
                                 n);
        if (fz_pick(f, 16) == 0)
            s->ncolumns = -1;
        break;
    }
    default: /* the default columns */
        s->columns = NULL;
        s->ncolumns = 0;
        break;
    }
}

static void fuzz_mapping(fz *f, dw_column_map *maps, const dw_column_map **m,
                         int *n, dw_map_fn *fn, int none_weight)
{
    unsigned kind = fz_pick(f, 8);
    *m = NULL;
    *n = 0;
    *fn = NULL;
    if (kind < (unsigned)none_weight)
        return;
    if (kind == 7) {
        *fn = fuzz_map;
        if (fz_pick(f, 16) == 0) { /* both kinds: a misuse */
            *m = maps;
            *n = 1;
            maps[0].column = "name";
            maps[0].expr = "name";
        }
        return;
    }
    int count = 1 + (int)fz_pick(f, FZ_MAX_MAPS);
    for (int i = 0; i < count; i++) {
        maps[i].column = fz_pick(f, 32) == 0
                             ? NULL
                             : fz_str(f, dict_columns, COUNT(dict_columns));
        maps[i].expr = fz_pick(f, 32) == 0
                           ? NULL
                           : fz_str(f, dict_exprs, COUNT(dict_exprs));
    }
    *m = maps;
    *n = fz_pick(f, 16) == 0 ? -(int)fz_pick(f, 3) : count;
}


static void fuzz_spec(fz *f)
{
    dw_options init = DW_OPTIONS_INIT;
    dw_options *o = &f->o;
    *o = init;
    static const unsigned versions[] = {DW_OPTIONS_VERSION,
                                        DW_OPTIONS_VERSION,
                                        DW_OPTIONS_VERSION,
                                        DW_OPTIONS_VERSION,
                                        DW_OPTIONS_VERSION,
                                        1,
                                        0,
                                        99};
    o->version = versions[fz_pick(f, COUNT(versions))];
    o->name = fz_pick(f, 32) == 0
                  ? NULL
                  : fz_str(f, dict_migrations, COUNT(dict_migrations));
    static const int nkeys[] = {1, 1, 1, 1, 2, 2, 0, 3};
    int nkey = nkeys[fz_pick(f, COUNT(nkeys))];
    fuzz_side(f, &o->old_side, f->okey, f->ocols, nkey);
    if (fz_pick(f, 16) == 0)
        nkey = (int)fz_pick(f, 4) - 1; /* mismatched, or negative */
    fuzz_side(f, &o->new_side, f->nkey, f->ncols, nkey);
    fuzz_mapping(f, f->up, &o->up, &o->nup, &o->up_fn, 1);
    fuzz_mapping(f, f->down, &o->down, &o->ndown, &o->down_fn, 4);
    o->map_payload = f;
    o->map_version = (o->up_fn || o->down_fn) && fz_pick(f, 4) ? "v1" : NULL;
    f->map_fail_every = (int)fz_pick(f, 8);
    unsigned flags = fz_byte(f);
    /* Unknown flag bits now and then; stderr logging never (noise). */
    o->flags = (flags & 0x80 ? flags << 3 : flags & 0x3f) &
               ~(unsigned)DW_OPEN_LOG_STDERR;
    o->reason = fz_pick(f, 2) ? NULL
                              : fz_str(f, dict_reasons, COUNT(dict_reasons));
    if (fz_pick(f, 4) == 0) {
        int n = (int)fz_pick(f, 4);
        o->redact_columns = f->redact;
        o->nredact_columns = fuzz_names(f, f->redact, dict_columns,
                                        COUNT(dict_columns), n);
        if (fz_pick(f, 8) == 0)
            o->nredact_columns = -1;
    }
    static const int caps[] = {0, 0, 1, 2, 5, 1000, -1, 0};
    o->log_cap = caps[fz_pick(f, COUNT(caps))];
    if (fz_pick(f, 2)) {
        o->mismatch_fn = fuzz_sink;
        o->mismatch_payload = f;
    }
    if (fz_pick(f, 4) == 0) {
        o->setup_sql = fz_str(f, dict_setup, COUNT(dict_setup));
    }
}

/* ---- keys and operations ------------------------------------------------------------ */

static void fuzz_value(fz *f, dw_value *v)
{
    switch (fz_pick(f, 12)) {
    case 0:
    case 1:
    case 2:
    case 3: *v = dw_int((int8_t)fz_byte(f)); break;
    case 4: *v = dw_int(fz_int64(f)); break;
    case 5:
    case 6: *v = dw_text(dict_texts[fz_pick(f, COUNT(dict_texts))]); break;
    case 7: {
        size_t len = 0;
        const char *s = fz_raw(f, &len);
        *v = dw_text_n(s, (int)len); /* may hold NUL bytes */
        break;
    }
    case 8: *v = dw_null(); break;
    case 9: *v = dw_float((double)(int8_t)fz_byte(f) / 4.0); break;
    case 10: *v = dw_blob("ab", (int)fz_pick(f, 3)); break;
    default: /* malformed: an unknown type, or bytes without a pointer */
        *v = dw_null();
        v->type = (int)fz_pick(f, 8) - 1;
        v->n = (int)fz_pick(f, 8) - 2;
        v->p = NULL;
        if (v->type == DW_TYPE_TEXT && v->n == -1)
            v->p = "nul-terminated";
        break;
    }
}

/* count keys of the spec's width (sometimes not), one after another. */
static int fuzz_keys(fz *f, dw_value *keys, int count, int *nkey)
{
    int width = f->o.old_side.nkey_columns;
    if (width < 1 || fz_pick(f, 16) == 0)
        width = 1 + (int)fz_pick(f, 3);
    if (width * count > FZ_MAX_KEYS)
        count = FZ_MAX_KEYS / width;
    for (int i = 0; i < width * count; i++)
        fuzz_value(f, &keys[i]);
    *nkey = width;
    return count;
}

static int fuzz_stage(fz *f)
{
    unsigned b = fz_byte(f);
    if (b < 0xf0)
        return (int)(b % 6);
    static const int odd[] = {-1, 6, 1000, INT32_MIN, INT32_MAX, 7};
    return odd[b % COUNT(odd)];
}

static const char *fuzz_reason(fz *f)
{
    return fz_pick(f, 2) ? "fuzz" : fz_str(f, dict_reasons,
                                             COUNT(dict_reasons));
}

static void fuzz_callbacks(fz *f)
{
    for (int side = DW_SIDE_OLD; side <= DW_SIDE_NEW; side++) {
        unsigned b = fz_byte(f);
        f->write_sql[side] = b == 0xff ? -1 : (int)(b % COUNT(dict_writes));
        f->read_sql[side] = (int)fz_pick(f, COUNT(dict_reads));
    }
    f->read_fail = (int)fz_pick(f, 8);
}

static dw_write_fn fuzz_write_cb(fz *f, int side)
{
    if (fz_pick(f, 3) == 0)
        return NULL;
    return side == DW_SIDE_OLD ? fuzz_write_old : fuzz_write_new;
}

static void fuzz_op(fz *f, dw_migration **hp)
{
    dw_migration *h = *hp;
    dw_value keys[FZ_MAX_KEYS];
    int nkey = 0, rc;
    uint64_t before = fuzz_db_digest_of(f->db, &f->digest);
    switch (fz_pick(f, 16)) {
    case 0: {
        int stage = fuzz_stage(f);
        unsigned flags = fz_pick(f, 8) == 0 ? 1u << fz_pick(f, 32)
                                            : fz_pick(f, 2);
        rc = dw_stage_set(h, stage, fuzz_reason(f), flags);
        fuzz_check_atomic(f, h, "dw_stage_set", rc, before);
        break;
    }
    case 1:
    case 2: {
        fuzz_keys(f, keys, 1, &nkey);
        fuzz_callbacks(f);
        dw_write_fn wo = fuzz_write_cb(f, DW_SIDE_OLD);
        dw_write_fn wn = fuzz_write_cb(f, DW_SIDE_NEW);
        rc = dw_write(h, fz_pick(f, 32) ? keys : NULL, nkey, wo, wn, f);
        fuzz_check_atomic(f, h, "dw_write", rc, before);
        break;
    }
    case 3:
    case 4: {
        fuzz_keys(f, keys, 1, &nkey);
        fuzz_callbacks(f);
        dw_row *out = NULL;
        if (dw_row_new(&out) != DW_OK)
            fuzz_fail("dw_row_new failed");
        int cb = (int)fz_pick(f, 4);
        rc = dw_read(fz_pick(f, 32) ? out : NULL, h, keys, nkey,
                     cb & 1 ? fuzz_read_old : NULL,
                     cb & 2 ? fuzz_read_new : NULL, f);
        fuzz_check(f, h, "dw_read", rc, 0);
        if (rc == DW_ENOTFOUND && dw_row_count(out) != 0)
            fuzz_fail("dw_read: DW_ENOTFOUND with a non-empty row");
        dw_row_free(out);
        break;
    }
    case 5: {
        fuzz_keys(f, keys, 1, &nkey);
        int stage = -1, route = -1;
        rc = dw_key_stage(&stage, fz_pick(f, 2) ? &route : NULL, h, keys,
                          nkey);
        fuzz_check(f, h, "dw_key_stage", rc, 0);
        if (rc == DW_OK && !dw_stage_name(stage))
            fuzz_fail("dw_key_stage gave stage %d", stage);
        break;
    }
    case 6: {
        int count = fuzz_keys(f, keys, 1 + (int)fz_pick(f, 3), &nkey);
        if (fz_pick(f, 16) == 0)
            count = -count;
        /* One decision per statement: the order of arguments is the
         * compiler's, and gcc and clang must decode alike. */
        int stage = fuzz_stage(f);
        const char *reason = fuzz_reason(f);
        rc = dw_override_set(h, keys, nkey, count, stage, reason);
        fuzz_check_atomic(f, h, "dw_override_set", rc, before);
        break;
    }
    case 7: {
        int count = fuzz_keys(f, keys, 1 + (int)fz_pick(f, 3), &nkey);
        int cleared = -1;
        rc = dw_override_clear(&cleared, h, keys, nkey, count, NULL);
        fuzz_check_atomic(f, h, "dw_override_clear", rc, before);
        if (rc == DW_OK && (cleared < 0 || cleared > count))
            fuzz_fail("dw_override_clear cleared %d of %d", cleared, count);
        break;
    }
    case 8: {
        dw_backfill_options bo = DW_BACKFILL_OPTIONS_INIT;
        bo.batch_rows = (int)fz_pick(f, 4);
        bo.batch_ms = -1;
        bo.flags = fz_pick(f, 16) == 0 ? 1u << fz_pick(f, 32)
                                       : fz_pick(f, 2);
        if (fz_pick(f, 16) == 0)
            bo.version = fz_pick(f, 3) + 1;
        dw_backfill_progress p;
        rc = dw_backfill(&p, h, fz_pick(f, 4) ? &bo : NULL);
        fuzz_check(f, h, "dw_backfill", rc, 1);
        break;
    }
    case 9: {
        dw_verify_options vo = DW_VERIFY_OPTIONS_INIT;
        dw_value lo[FZ_MAX_KEYS];
        vo.chunk_rows = (int)fz_pick(f, 4);
        vo.report_limit = (int)fz_pick(f, 4) - 1;
        vo.fn = fz_pick(f, 2) ? fuzz_sink : NULL;
        vo.payload = f;
        if (fz_pick(f, 4) == 0) {
            fuzz_keys(f, lo, 1, &vo.nfrom);
            vo.from = lo;
        }
        dw_verify_result r;
        rc = dw_verify(&r, h, fz_pick(f, 4) ? &vo : NULL);
        fuzz_check(f, h, "dw_verify", rc, 0);
        if (rc == DW_OK && r.clean != (r.missing + r.extra + r.different == 0))
            fuzz_fail("dw_verify: clean is %d with %lld/%lld/%lld", r.clean,
                      (long long)r.missing, (long long)r.extra,
                      (long long)r.different);
        break;
    }
    case 10: {
        fuzz_keys(f, keys, 1, &nkey);
        rc = dw_mirror(h, keys, nkey);
        fuzz_check_atomic(f, h, "dw_mirror", rc, before);
        break;
    }
    case 11: {
        fuzz_keys(f, keys, 1, &nkey);
        int equal = -1;
        rc = dw_compare(&equal, h, keys, nkey);
        fuzz_check(f, h, "dw_compare", rc, 0);
        if (rc == DW_OK && equal != 0 && equal != 1)
            fuzz_fail("dw_compare: equal is %d", equal);
        break;
    }
    case 12: {
        int count = fuzz_keys(f, keys, 1 + (int)fz_pick(f, 3), &nkey);
        dw_repair_result r;
        rc = dw_repair_keys(&r, h, keys, nkey, count);
        fuzz_check_atomic(f, h, "dw_repair_keys", rc, before);
        break;
    }
    case 13: {
        dw_routing r = DW_ROUTING_INIT;
        static const double pct[] = {0, 0, 50, 100, 12.34, -1, 101, 0.01};
        r.canary_percent = pct[fz_pick(f, COUNT(pct))];
        r.canary_cohort = fz_pick(f, 2)
                              ? NULL
                              : fz_str(f, dict_cohorts, COUNT(dict_cohorts));
        r.canary_stage = fuzz_stage(f);
        r.promote_stage = fz_pick(f, 2) ? DW_PROMOTE_NONE : fuzz_stage(f);
        const char *reason = fuzz_reason(f);
        unsigned flags = fz_pick(f, 2);
        rc = dw_routing_set(h, &r, reason, flags);
        fuzz_check_atomic(f, h, "dw_routing_set", rc, before);
        break;
    }
    case 14: {
        dw_repair_result r;
        rc = fz_pick(f, 2) ? dw_repair_divergent(&r, h)
                           : dw_repair_queue(&r, h);
        fuzz_check(f, h, "dw_repair_divergent/queue", rc, 0);
        break;
    }
    default: {
        /* Open the same spec again, perhaps redefined or with other
         * flags; a failure must store nothing, a success replaces the
         * handle. */
        dw_options o = f->o;
        if (fz_pick(f, 2))
            o.flags ^= DW_OPEN_REDEFINE;
        if (fz_pick(f, 2))
            o.up = NULL, o.nup = 0, o.up_fn = fuzz_map;
        dw_migration *h2 = NULL;
        char *err = NULL;
        rc = dw_sqlite_open(&h2, f->db, &o, &err);
        fuzz_trace("dw_open (again)", rc, (dw_migration *)NULL);
        if (!known_code(rc) || rc == DW_MORE)
            fuzz_fail("dw_open (again) returned %d", rc);
        if (rc != DW_OK) {
            if (h2 || !err || !err[0])
                fuzz_fail("dw_open (again) failed without a message or "
                          "with a handle");
            if (fuzz_db_digest_of(f->db, &f->digest) != before)
                fuzz_fail("dw_open (again) failed (%s) but stored "
                          "something", err);
        } else {
            dw_close(h);
            *hp = h2;
        }
        dw_free(err);
        break;
    }
    }
}

/* ---- the entry point ------------------------------------------------------------------ */

/* Two starting databases, built once and copied per input: the tables
 * alone, and the tables with the state of a migration "m" already stored
 * (users to users_v2 at DUAL_WRITE, key [1] overridden to SHADOW), so an
 * input can meet a stored spec: the same one, a different one (DW_ESPEC),
 * a redefinition. */
static unsigned char *fz_template[2];
static sqlite3_int64 fz_template_size[2];

static void fz_templates_free(void)
{
    for (int i = 0; i < 2; i++) {
        sqlite3_free(fz_template[i]);
        fz_template[i] = NULL;
    }
}

static void fz_store_migration(sqlite3 *db)
{
    static const char *const id[] = {"id"};
    static const dw_column_map up[] = {
        {"full_name", "upper(name)"},
        {"email", "email"},
        {"status_label", "(SELECT label FROM statuses WHERE code = status)"}};
    dw_options o = DW_OPTIONS_INIT;
    o.name = "m";
    o.old_side.table = "users";
    o.old_side.key_columns = id;
    o.old_side.nkey_columns = 1;
    o.new_side.table = "users_v2";
    o.new_side.key_columns = id;
    o.new_side.nkey_columns = 1;
    o.up = up;
    o.nup = 3;
    dw_migration *h = NULL;
    dw_value key = dw_int(1);
    if (dw_sqlite_open(&h, db, &o, NULL) != DW_OK ||
        dw_stage_set(h, DW_STAGE_DUAL_WRITE, "template", 0) != DW_OK ||
        dw_override_set(h, &key, 1, 1, DW_STAGE_SHADOW, "template") != DW_OK)
        fuzz_fail("cannot store the template migration: %s", dw_errmsg(h));
    dw_close(h);
}

static void fz_build_templates(void)
{
    for (int t = 0; t < 2; t++) {
        sqlite3 *db = NULL;
        char *err = NULL;
        if (sqlite3_open(":memory:", &db) != SQLITE_OK ||
            sqlite3_exec(db, fuzz_schema, NULL, NULL, &err) != SQLITE_OK)
            fuzz_fail("the starting schema failed: %s", err ? err : "?");
        if (t == 1)
            fz_store_migration(db);
        fz_template[t] = sqlite3_serialize(db, "main", &fz_template_size[t],
                                           0);
        if (!fz_template[t])
            fuzz_fail("cannot serialize the starting database");
        sqlite3_close(db);
    }
    atexit(fz_templates_free);
}

static sqlite3 *fuzz_db(fz *f, int with_state)
{
    if (!fz_template[0])
        fz_build_templates();
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(":memory:", &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK)
        fuzz_fail("cannot open an in-memory database");
    sqlite3_int64 size = fz_template_size[with_state];
    unsigned char *copy = sqlite3_malloc64((sqlite3_uint64)size);
    if (!copy)
        fuzz_fail("out of memory");
    memcpy(copy, fz_template[with_state], (size_t)size);
    if (sqlite3_deserialize(db, "main", copy, size, size,
                            SQLITE_DESERIALIZE_FREEONCLOSE |
                                SQLITE_DESERIALIZE_RESIZEABLE) != SQLITE_OK)
        fuzz_fail("cannot load the starting database: %s",
                  sqlite3_errmsg(db));
    /* Spec SQL comes from the input: no files (ATTACH), no huge values,
     * no runaway statements. */
    sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0);
    sqlite3_limit(db, SQLITE_LIMIT_LENGTH, 1000000);
    sqlite3_progress_handler(db, 10000, fuzz_progress, f);
    return db;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz *f = calloc(1, sizeof *f);
    if (!f)
        return 0;
    f->p = data;
    f->n = size;
    f->db = fuzz_db(f, fz_pick(f, 4) == 3);
    fuzz_spec(f);

    uint64_t before = fuzz_db_digest_of(f->db, &f->digest);
    dw_migration *h = (dw_migration *)&before; /* must be reset */
    char *err = NULL;
    int want_err = fz_pick(f, 8) != 0;
    int rc = dw_sqlite_open(&h, f->db, &f->o, want_err ? &err : NULL);
#ifdef FUZZ_TRACE
    fprintf(stderr, "fuzz_spec: dw_open %s/%s -> %s: %d %s\n",
            f->o.old_side.table ? f->o.old_side.table : "(null)",
            f->o.new_side.table ? f->o.new_side.table : "(null)",
            f->o.name ? f->o.name : "(null)", rc, err ? err : "");
#endif
    if (!known_code(rc) || rc == DW_MORE)
        fuzz_fail("dw_open returned %d", rc);
    if (rc != DW_OK) {
        if (h)
            fuzz_fail("dw_open failed (%d) but gave a handle", rc);
        if (want_err && (!err || !err[0]))
            fuzz_fail("dw_open failed (%d) without a message", rc);
        if (fuzz_db_digest_of(f->db, &f->digest) != before)
            fuzz_fail("dw_open failed (%d: %s) but stored something", rc,
                      err ? err : "");
        if (!sqlite3_get_autocommit(f->db))
            fuzz_fail("dw_open failed and left a transaction open");
    } else {
        if (!h || (err && err[0]))
            fuzz_fail("dw_open succeeded without a handle or with a "
                      "message");
        if (!dw_name(h) || !f->o.name || strcmp(dw_name(h), f->o.name) != 0)
            fuzz_fail("dw_name() is not the name given");
        if (dw_sqlite_db(h) != f->db || !is_hex(dw_spec_digest(h), 64))
            fuzz_fail("dw_sqlite_db() or dw_spec_digest() is wrong");
        fuzz_check(f, h, "dw_open", rc, 0);
        for (int i = 0; i < 24 && f->n > 0; i++)
            fuzz_op(f, &h);
    }
    dw_free(err);
    dw_close(h);
    fz_digest_free(&f->digest);
    if (sqlite3_close(f->db) != SQLITE_OK)
        fuzz_fail("the connection does not close after dw_close(): a "
                  "statement was left unfinalized");
    for (int i = 0; i < f->nstrings; i++)
        free(f->strings[i]);
    free(f);
    return 0;
}
