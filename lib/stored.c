/* Migrations as a database stores them, for tools that lack the
 * application's options: dw_list() reads them, dw_open_json() and
 * dw_open_stored() open one from its spec as JSON. The JSON is taken apart
 * by SQLite's own JSON functions, on the caller's connection; the options
 * built from it go to dw_open(), the one place a spec is checked and
 * stored. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* ---- small helpers ------------------------------------------------------ */

/* A growable array of fixed-size items (dw__realloc). */
typedef struct list {
    void *v;
    int n, cap;
} list;

static int list_push(list *l, size_t size, const void *item)
{
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 8;
        void *v = dw__realloc(l->v, size * (size_t)cap);
        if (!v)
            return DW_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    memcpy((char *)l->v + size * (size_t)l->n++, item, size);
    return DW_OK;
}

/* Sets *errmsg (when asked for) to a message the caller frees with
 * dw_free(), as dw_open() does; returns code. */
static int say(char **errmsg, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int say(char **errmsg, int code, const char *fmt, ...)
{
    if (errmsg) {
        va_list ap;
        va_start(ap, fmt);
        *errmsg = dw__vmprintf(fmt, ap);
        va_end(ap);
    }
    return code;
}

/* An SQLite failure as a result code, with the connection's message. */
static int say_sqlite(char **errmsg, sqlite3 *db, int rc, const char *what)
{
    int code = dw__from_sqlite(rc);
    if (code == DW_ENOMEM)
        return say(errmsg, code, "out of memory");
    return say(errmsg, code == DW_OK ? DW_ERROR : code, "%s: %s", what,
               sqlite3_errmsg(db));
}

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    /* Our SQL uses single-quoted strings only: the connection's
     * double-quoted-string setting does not matter and is left alone. */
    return sqlite3_prepare_v2(db, sql, -1, st, NULL);
}

/* Whether db's main database has the library's table of migrations (a
 * database the library never opened has none: nothing is created): 0 no,
 * 1 yes, 2 yes with the column `contracted` (0.1 had none; dw_open()
 * adds it). */
static int have_migrations(sqlite3 *db, int *have, char **errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(db,
                     "SELECT (SELECT count(*) FROM main.sqlite_schema WHERE "
                     "type = 'table' AND name = 'dw_migrations'), "
                     "(SELECT count(*) FROM pragma_table_info("
                     "'dw_migrations', 'main') WHERE name = 'contracted')",
                     &st);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *have = sqlite3_column_int(st, 0) == 0   ? 0
                : sqlite3_column_int(st, 1) == 0 ? 1
                                                 : 2;
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK
               ? DW_OK
               : say_sqlite(errmsg, db, rc, "looking for stored migrations");
}

/* ---- the spec as JSON ---------------------------------------------------- */

/* Members of the spec, as bits, to refuse a member given twice. */
enum {
    M_FORMAT = 1 << 0,
    M_OLD = 1 << 1,
    M_NEW = 1 << 2,
    M_UP = 1 << 3,
    M_DOWN = 1 << 4,
    M_SETUP = 1 << 5,
    M_TABLE = 1 << 6,
    M_KEY = 1 << 7,
    M_COLUMNS = 1 << 8,
    M_SQL = 1 << 9,
    M_CALLBACK = 1 << 10
};

/* One container member as json_each() gives it: its name, its JSON type,
 * and a copy of its text when it is a string. */
typedef struct member {
    const char *key;
    const char *type;
    const char *text;
} member;

typedef struct parse {
    sqlite3 *db;
    const char *json;
    sqlite3_stmt *each; /* the members of the container at path ?2 */
    int rc;
    char *msg;
    list strings; /* every string copied (char *), freed at the end */
    /* What was found, per side (DW_SIDE_OLD, DW_SIDE_NEW) and per mapping
     * target ([DW_SIDE_NEW] is up, [DW_SIDE_OLD] down). */
    const char *table[3];
    list key[3], cols[3]; /* const char * */
    int has_cols[3];
    list map[3];          /* dw_column_map */
    int has_sql[3], has_callback[3];
    const char *version[3];
    const char *setup;
} parse;

/* The first failure wins; later calls see p->rc and do nothing. */
static int fail(parse *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(parse *p, int code, const char *fmt, ...)
{
    if (p->rc != DW_OK)
        return p->rc;
    va_list ap;
    va_start(ap, fmt);
    p->msg = dw__vmprintf(fmt, ap);
    va_end(ap);
    p->rc = code;
    return code;
}

static int nomem(parse *p) { return fail(p, DW_ENOMEM, "out of memory"); }

static int sqlite_failed(parse *p, int rc)
{
    int code = dw__from_sqlite(rc);
    if (code == DW_ENOMEM)
        return nomem(p);
    return fail(p, code == DW_OK ? DW_ERROR : code,
                "spec: reading the JSON: %s", sqlite3_errmsg(p->db));
}

/* A copy of column c of the current row, kept until the parse ends. NULL
 * after a failure (an embedded NUL would shorten the name silently: it is
 * refused). */
static const char *keep(parse *p, int c, const char *path)
{
    const char *s = (const char *)sqlite3_column_text(p->each, c);
    if (!s) {
        nomem(p);
        return NULL;
    }
    size_t n = (size_t)sqlite3_column_bytes(p->each, c);
    if (strlen(s) != n) {
        fail(p, DW_EMISUSE, "spec: a string in \"%s\" contains a NUL "
                            "character",
             path[1] ? path + 2 : "(the spec)");
        return NULL;
    }
    char *copy = dw__strndup(s, n);
    if (!copy || list_push(&p->strings, sizeof copy, &copy) != DW_OK) {
        dw__free(copy);
        nomem(p);
        return NULL;
    }
    return copy;
}

/* The JSON type in column c of st, as a static name: SQLite's text is
 * valid only while the row is. NULL, with the failure set, for none. */
static const char *column_type(parse *p, sqlite3_stmt *st, int c)
{
    static const char *const types[] = {"null",    "true", "false", "integer",
                                        "real",    "text", "array", "object"};
    const char *t = (const char *)sqlite3_column_text(st, c);
    if (!t) {
        if (sqlite3_column_type(st, c) != SQLITE_NULL)
            nomem(p);
        return NULL;
    }
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        if (strcmp(t, types[i]) == 0)
            return types[i];
    return "unknown";
}

static const char *type_of(parse *p, int c)
{
    const char *t = column_type(p, p->each, c);
    if (!t && p->rc == DW_OK)
        fail(p, DW_ERROR, "spec: reading the JSON: a member without a type");
    return t;
}

typedef int (*member_fn)(parse *p, const member *m, void *arg);

/* Calls fn for each member of the object or array at `path` (a fixed path
 * of ours, so no quoting), in document order. */
static int each(parse *p, const char *path, member_fn fn, void *arg)
{
    if (p->rc != DW_OK)
        return p->rc;
    sqlite3_bind_text(p->each, 2, path, -1, SQLITE_STATIC);
    int rc = SQLITE_DONE;
    while (p->rc == DW_OK && (rc = sqlite3_step(p->each)) == SQLITE_ROW) {
        member m = {NULL, type_of(p, 1), NULL};
        if (!m.type)
            break;
        /* Object members have a name; array entries have none we use. */
        if (sqlite3_column_type(p->each, 0) == SQLITE_TEXT &&
            !(m.key = keep(p, 0, path)))
            break;
        if (strcmp(m.type, "text") == 0 && !(m.text = keep(p, 2, path)))
            break;
        fn(p, &m, arg);
    }
    if (p->rc == DW_OK && rc != SQLITE_DONE)
        sqlite_failed(p, rc);
    sqlite3_reset(p->each);
    return p->rc;
}

/* Marks member `bit` seen, refusing it the second time. */
static int once(parse *p, int *seen, int bit, const char *where,
                const char *key)
{
    if (*seen & bit)
        return fail(p, DW_EMISUSE, "spec: member \"%s%s\" appears twice",
                    where, key);
    *seen |= bit;
    return DW_OK;
}

static int is(const member *m, const char *type)
{
    return strcmp(m->type, type) == 0;
}

/* ---- one side: {"table": T, "key": [...], "columns": [...] | null} ---- */

typedef struct side_arg {
    int side;
    const char *word; /* "old" or "new" */
    int seen;
    const char *key_type, *cols_type;
} side_arg;

static int side_member(parse *p, const member *m, void *arg)
{
    side_arg *a = arg;
    if (strcmp(m->key, "table") == 0) {
        if (once(p, &a->seen, M_TABLE, a->word, ".table") == DW_OK &&
            !m->text)
            return fail(p, DW_EMISUSE, "spec: \"%s.table\" must be a string",
                        a->word);
        p->table[a->side] = m->text;
    } else if (strcmp(m->key, "key") == 0) {
        once(p, &a->seen, M_KEY, a->word, ".key");
        a->key_type = is(m, "array") ? "array" : "other";
    } else if (strcmp(m->key, "columns") == 0) {
        once(p, &a->seen, M_COLUMNS, a->word, ".columns");
        a->cols_type = is(m, "array")  ? "array"
                       : is(m, "null") ? "null"
                                       : "other";
    } else {
        return fail(p, DW_EMISUSE, "spec: unknown member \"%s.%s\"", a->word,
                    m->key);
    }
    return p->rc;
}

typedef struct names_arg {
    list *names;
    const char *path; /* for messages: "old.key" */
    const char *rule; /* "an array of strings" */
} names_arg;

static int name_entry(parse *p, const member *m, void *arg)
{
    names_arg *a = arg;
    if (!m->text)
        return fail(p, DW_EMISUSE, "spec: \"%s\" must be %s (entry %d is %s)",
                    a->path, a->rule, a->names->n,
                    is(m, "null") ? "null" : m->type);
    if (list_push(a->names, sizeof m->text, &m->text) != DW_OK)
        return nomem(p);
    return DW_OK;
}

static int parse_side(parse *p, int side, const char *type)
{
    const char *word = side == DW_SIDE_OLD ? "old" : "new";
    if (!type)
        return fail(p, DW_EMISUSE, "spec: \"%s\" is required", word);
    if (strcmp(type, "object") != 0)
        return fail(p, DW_EMISUSE, "spec: \"%s\" must be an object", word);
    side_arg a = {side, word, 0, NULL, NULL};
    if (each(p, side == DW_SIDE_OLD ? "$.old" : "$.new", side_member, &a) !=
        DW_OK)
        return p->rc;
    if (!p->table[side])
        return fail(p, DW_EMISUSE, "spec: \"%s.table\" is required", word);
    if (!a.key_type)
        return fail(p, DW_EMISUSE, "spec: \"%s.key\" is required", word);
    if (strcmp(a.key_type, "array") != 0)
        return fail(p, DW_EMISUSE, "spec: \"%s.key\" must be an array of "
                                   "strings",
                    word);
    names_arg keys = {&p->key[side], side == DW_SIDE_OLD ? "old.key" : "new.key",
                      "an array of strings"};
    each(p, side == DW_SIDE_OLD ? "$.old.key" : "$.new.key", name_entry,
         &keys);
    if (a.cols_type && strcmp(a.cols_type, "other") == 0)
        return fail(p, DW_EMISUSE,
                    "spec: \"%s.columns\" must be an array of strings or "
                    "null",
                    word);
    if (a.cols_type && strcmp(a.cols_type, "array") == 0) {
        p->has_cols[side] = 1;
        names_arg cols = {&p->cols[side],
                          side == DW_SIDE_OLD ? "old.columns" : "new.columns",
                          "an array of strings or null"};
        each(p, side == DW_SIDE_OLD ? "$.old.columns" : "$.new.columns",
             name_entry, &cols);
    }
    return p->rc;
}

/* ---- a mapping: {"sql": {...}} or {"callback": V} ------------------------ */

typedef struct map_arg {
    int target;
    const char *word; /* "up" or "down" */
    int seen;
} map_arg;

static int map_member(parse *p, const member *m, void *arg)
{
    map_arg *a = arg;
    if (strcmp(m->key, "sql") == 0) {
        if (once(p, &a->seen, M_SQL, a->word, ".sql") == DW_OK &&
            !is(m, "object"))
            return fail(p, DW_EMISUSE,
                        "spec: \"%s.sql\" must be an object of strings",
                        a->word);
        p->has_sql[a->target] = 1;
    } else if (strcmp(m->key, "callback") == 0) {
        if (once(p, &a->seen, M_CALLBACK, a->word, ".callback") == DW_OK &&
            !m->text && !is(m, "null"))
            return fail(p, DW_EMISUSE,
                        "spec: \"%s.callback\" must be a string (the "
                        "map_version) or null",
                        a->word);
        p->has_callback[a->target] = 1;
        p->version[a->target] = m->text;
    } else {
        return fail(p, DW_EMISUSE, "spec: unknown member \"%s.%s\"", a->word,
                    m->key);
    }
    return p->rc;
}

static int expression(parse *p, const member *m, void *arg)
{
    map_arg *a = arg;
    if (!m->text)
        return fail(p, DW_EMISUSE, "spec: \"%s.sql.%s\" must be a string",
                    a->word, m->key);
    dw_column_map cm = {m->key, m->text};
    if (list_push(&p->map[a->target], sizeof cm, &cm) != DW_OK)
        return nomem(p);
    return DW_OK;
}

static int parse_map(parse *p, int target, const char *type)
{
    const char *word = target == DW_SIDE_NEW ? "up" : "down";
    if (!type || strcmp(type, "null") == 0) {
        if (target == DW_SIDE_OLD)
            return DW_OK; /* no down mapping */
        return fail(p, DW_EMISUSE, "spec: \"up\" is required");
    }
    if (strcmp(type, "object") != 0)
        return fail(p, DW_EMISUSE,
                    "spec: \"%s\" must be {\"sql\":{...}} or "
                    "{\"callback\":...}%s",
                    word, target == DW_SIDE_OLD ? " or null" : "");
    map_arg a = {target, word, 0};
    if (each(p, target == DW_SIDE_NEW ? "$.up" : "$.down", map_member, &a) !=
        DW_OK)
        return p->rc;
    if (p->has_sql[target] == p->has_callback[target])
        return fail(p, DW_EMISUSE,
                    "spec: \"%s\" must have one member, \"sql\" or "
                    "\"callback\"",
                    word);
    if (p->has_sql[target])
        each(p, target == DW_SIDE_NEW ? "$.up.sql" : "$.down.sql",
             expression, &a);
    return p->rc;
}

/* ---- the whole spec ------------------------------------------------------ */

typedef struct top_arg {
    int seen;
    const char *type[3]; /* of "old" and "new" */
    const char *map_type[3];
} top_arg;

static int top_member(parse *p, const member *m, void *arg)
{
    top_arg *a = arg;
    static const struct {
        const char *name;
        int bit;
    } known[] = {{"format", M_FORMAT}, {"old", M_OLD},   {"new", M_NEW},
                 {"up", M_UP},         {"down", M_DOWN}, {"setup", M_SETUP}};
    int bit = 0;
    for (size_t i = 0; i < sizeof known / sizeof *known && !bit; i++)
        if (strcmp(m->key, known[i].name) == 0)
            bit = known[i].bit;
    if (!bit)
        return fail(p, DW_EMISUSE, "spec: unknown member \"%s\"", m->key);
    if (once(p, &a->seen, bit, "", m->key) != DW_OK)
        return p->rc;
    switch (bit) {
    case M_FORMAT:
        if (!is(m, "integer") || sqlite3_column_int64(p->each, 2) != 1)
            return fail(p, DW_EMISUSE, "spec: \"format\" must be 1");
        break;
    case M_OLD: a->type[DW_SIDE_OLD] = m->type; break;
    case M_NEW: a->type[DW_SIDE_NEW] = m->type; break;
    case M_UP: a->map_type[DW_SIDE_NEW] = m->type; break;
    case M_DOWN: a->map_type[DW_SIDE_OLD] = m->type; break;
    case M_SETUP:
        if (!m->text)
            return fail(p, DW_EMISUSE, "spec: \"setup\" must be a string");
        p->setup = m->text;
        break;
    }
    return DW_OK;
}

/* Whether a string of the (valid) JSON text escapes a NUL, \u0000: some
 * SQLite versions cut the string there, and a name cut short would name
 * something else. An escape is a backslash preceded by an even number of
 * backslashes. */
static int escapes_nul(const char *json)
{
    for (const char *s = json; (s = strstr(s, "\\u0000")) != NULL; s++) {
        size_t at = (size_t)(s - json), run = 1;
        while (run <= at && json[at - run] == '\\')
            run++;
        if (run % 2)
            return 1;
    }
    return 0;
}

/* Checks the text is one JSON object, then reads every member into p. */
static int parse_spec(parse *p)
{
    /* json_type() fails on text it cannot read, saying whether memory ran
     * out; json_valid() then holds the text to strict JSON (SQLite 3.42
     * and later read JSON5 too). json_valid() answers 0 when memory runs
     * out, so a 0 for text json_type() read is asked once more. */
    sqlite3_stmt *st = NULL;
    const char *type = NULL;
    int valid = 0;
    int rc = prepare(p->db, "SELECT json_type(?1), json_valid(?1)", &st);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(st);
        return sqlite_failed(p, rc);
    }
    sqlite3_bind_text(st, 1, p->json, -1, SQLITE_STATIC);
    for (int tries = 0; rc == SQLITE_OK && !valid && tries < 2; tries++) {
        if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            valid = sqlite3_column_int(st, 1);
            type = valid ? column_type(p, st, 0) : NULL;
            rc = SQLITE_OK;
        }
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    if (p->rc != DW_OK)
        return p->rc;
    if (rc == SQLITE_ERROR || (rc == SQLITE_OK && !valid))
        fail(p, DW_EMISUSE, "spec: not valid JSON");
    else if (rc != SQLITE_OK)
        sqlite_failed(p, rc);
    else if (!type || strcmp(type, "object") != 0)
        fail(p, DW_EMISUSE, "spec: must be a JSON object, not %s",
             type && strcmp(type, "array") == 0 ? "an array"
                                                : "a single value");
    if (p->rc == DW_OK && escapes_nul(p->json))
        fail(p, DW_EMISUSE, "spec: a string contains \\u0000 (a NUL "
                            "character)");
    if (p->rc != DW_OK)
        return p->rc;

    rc = prepare(p->db, "SELECT key, type, value FROM json_each(?1, ?2)",
                 &p->each);
    if (rc != SQLITE_OK)
        return sqlite_failed(p, rc);
    sqlite3_bind_text(p->each, 1, p->json, -1, SQLITE_STATIC);
    top_arg a;
    memset(&a, 0, sizeof a);
    if (each(p, "$", top_member, &a) != DW_OK)
        return p->rc;
    parse_side(p, DW_SIDE_OLD, a.type[DW_SIDE_OLD]);
    parse_side(p, DW_SIDE_NEW, a.type[DW_SIDE_NEW]);
    parse_map(p, DW_SIDE_NEW, a.map_type[DW_SIDE_NEW]);
    parse_map(p, DW_SIDE_OLD, a.map_type[DW_SIDE_OLD]);
    /* One map_version names both callbacks (dw_options.map_version). */
    const char *u = p->version[DW_SIDE_NEW], *d = p->version[DW_SIDE_OLD];
    if (p->has_callback[DW_SIDE_NEW] && p->has_callback[DW_SIDE_OLD] &&
        (!u != !d || (u && strcmp(u, d) != 0)))
        fail(p, DW_EMISUSE,
             "spec: \"up.callback\" and \"down.callback\" must name the same "
             "map_version");
    return p->rc;
}

static void parse_free(parse *p)
{
    sqlite3_finalize(p->each);
    for (int i = 0; i < p->strings.n; i++)
        dw__free(((char **)p->strings.v)[i]);
    dw__free(p->strings.v);
    for (int s = DW_SIDE_OLD; s <= DW_SIDE_NEW; s++) {
        dw__free(p->key[s].v);
        dw__free(p->cols[s].v);
        dw__free(p->map[s].v);
    }
    dw__free(p->msg);
}

/* An empty list given as [] is a list, not an absent one. */
static const char *const no_names[1] = {NULL};

static void side_options(const parse *p, int side, dw_side_spec *s)
{
    s->table = p->table[side];
    s->key_columns = p->key[side].n ? p->key[side].v : no_names;
    s->nkey_columns = p->key[side].n;
    if (p->has_cols[side]) {
        s->columns = p->cols[side].n ? p->cols[side].v : no_names;
        s->ncolumns = p->cols[side].n;
    }
}

/* {"sql":{}} maps into no column: what dw_open() stores for a side of the
 * key alone, which is given no mapping (into a side with columns, it is
 * refused). */
static void map_options(const parse *p, int target, const dw_column_map **map,
                        int *n, dw_map_fn *fn)
{
    if (p->has_sql[target]) {
        *map = p->map[target].n ? p->map[target].v : dw__no_expressions;
        *n = p->map[target].n;
    } else if (p->has_callback[target]) {
        *fn = dw__unbound_map;
    }
}

/* dw_open_json(), or with `stored_only` what dw_open_stored() opens: a
 * migration stored under this name, never a definition. */
static int open_json(dw_migration **out, sqlite3 *db, const char *name,
                     const char *spec_json, unsigned int flags,
                     const char *reason, int stored_only, char **errmsg)
{
    parse p;
    memset(&p, 0, sizeof p);
    p.db = db;
    p.json = spec_json;
    int rc = parse_spec(&p);
    if (rc != DW_OK) {
        if (errmsg) {
            *errmsg = p.msg;
            p.msg = NULL;
        }
        parse_free(&p);
        return rc;
    }
    /* dw_open() copies everything, checks everything, and keeps the
     * callbacks' stand-in from defining or redefining anything. */
    dw_options o = DW_OPTIONS_INIT;
    o.name = name;
    side_options(&p, DW_SIDE_OLD, &o.old_side);
    side_options(&p, DW_SIDE_NEW, &o.new_side);
    map_options(&p, DW_SIDE_NEW, &o.up, &o.nup, &o.up_fn);
    map_options(&p, DW_SIDE_OLD, &o.down, &o.ndown, &o.down_fn);
    o.map_version = p.has_callback[DW_SIDE_NEW] ? p.version[DW_SIDE_NEW]
                                                : p.version[DW_SIDE_OLD];
    o.flags = flags;
    o.reason = reason;
    o.setup_sql = p.setup;
    rc = dw__open(out, db, &o, stored_only, errmsg);
    parse_free(&p);
    return rc;
}

int dw_open_json(dw_migration **out, sqlite3 *db, const char *name,
                 const char *spec_json, unsigned int flags,
                 const char *reason, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (!out)
        return say(errmsg, DW_EMISUSE, "dw_open_json: out is NULL");
    *out = NULL;
    if (!db || !spec_json)
        return say(errmsg, DW_EMISUSE, "dw_open_json: %s is NULL",
                   !db ? "the connection" : "the spec");
    return open_json(out, db, name, spec_json, flags, reason, 0, errmsg);
}

/* ---- stored migrations ------------------------------------------------------ */

/* Whether a stored spec is the text its digest was taken of. */
static int spec_intact(const char *spec, const char *digest)
{
    dw_sha256 s;
    unsigned char d[32];
    char hex[65];
    dw_sha256_init(&s);
    dw_sha256_update(&s, spec, strlen(spec));
    dw_sha256_final(&s, d);
    dw_hex(hex, d, 32);
    return strcmp(hex, digest) == 0;
}

/* The spec stored under `name`, copied into *spec (NULL when there is
 * none: DW_ENOTFOUND); DW_ECORRUPT when it is not the text its digest was
 * taken of (truncated or edited by hand). */
static int read_stored_spec(sqlite3 *db, const char *name, char **spec,
                            char **errmsg)
{
    *spec = NULL;
    int have = 0;
    int rc = have_migrations(db, &have, errmsg);
    if (rc != DW_OK)
        return rc;
    if (have) {
        sqlite3_stmt *st = NULL;
        int src = prepare(db,
                          "SELECT spec, spec_digest, json_valid(spec) FROM "
                          "main.dw_migrations WHERE name = ?1",
                          &st);
        if (src == SQLITE_OK) {
            sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
            src = sqlite3_step(st);
        }
        if (src == SQLITE_ROW) {
            const char *text = (const char *)sqlite3_column_text(st, 0);
            const char *digest = (const char *)sqlite3_column_text(st, 1);
            if (!text || !digest)
                rc = say(errmsg, DW_ENOMEM, "out of memory");
            else if (!spec_intact(text, digest))
                rc = say(errmsg, DW_ECORRUPT,
                         "migration \"%s\": its stored spec is damaged: the "
                         "text in table dw_migrations %s and does not match "
                         "its digest (%.12s); define the migration again "
                         "from the application",
                         name,
                         sqlite3_column_int(st, 2) ? "parses as JSON, but "
                                                     "was changed"
                                                   : "does not parse as JSON",
                         digest);
            else if (!(*spec = dw__strdup(text)))
                rc = say(errmsg, DW_ENOMEM, "out of memory");
        } else if (src != SQLITE_DONE) {
            rc = say_sqlite(errmsg, db, src, "reading the stored spec");
        }
        sqlite3_finalize(st);
    }
    if (rc == DW_OK && !*spec)
        rc = say(errmsg, DW_ENOTFOUND, "no migration named \"%s\" in this "
                                       "database",
                 name);
    return rc;
}

int dw_open_stored(dw_migration **out, sqlite3 *db, const char *name,
                   unsigned int flags, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (!out)
        return say(errmsg, DW_EMISUSE, "dw_open_stored: out is NULL");
    *out = NULL;
    if (!db || !name)
        return say(errmsg, DW_EMISUSE, "dw_open_stored: %s is NULL",
                   !db ? "the connection" : "the name");
    if (flags & DW_OPEN_REDEFINE)
        return say(errmsg, DW_EMISUSE,
                   "dw_open_stored: DW_OPEN_REDEFINE has nothing to "
                   "redefine with: the spec is the stored one");
    /* The spec is read, then opened in a transaction of dw_open()'s: one
     * redefined in between is read again, one removed in between is not
     * found -- never defined again. The same text read twice that still
     * does not match means the schema changed under it. */
    char *last = NULL;
    int rc = DW_ESPEC, attempt;
    for (attempt = 0; rc == DW_ESPEC && attempt < 3; attempt++) {
        if (errmsg) {
            dw__free(*errmsg);
            *errmsg = NULL;
        }
        char *spec = NULL;
        rc = read_stored_spec(db, name, &spec, errmsg);
        if (rc == DW_OK && last && strcmp(last, spec) == 0)
            rc = say(errmsg, DW_ESCHEMA,
                     "migration \"%s\": the schema no longer reads as its "
                     "stored spec (a table or column renamed or respelled?); "
                     "the application that defined it must redefine it",
                     name);
        else if (rc == DW_OK)
            rc = open_json(out, db, name, spec, flags, NULL, 1, errmsg);
        dw__free(last);
        last = spec;
    }
    dw__free(last);
    if (rc == DW_ESPEC) {
        if (errmsg)
            dw__free(*errmsg);
        rc = say(errmsg, DW_ESPEC,
                 "migration \"%s\" was redefined by another connection "
                 "each of the %d times it was read; try again",
                 name, attempt);
    }
    return rc;
}

/* Rolls back what the library began (`sql`: a ROLLBACK, or a ROLLBACK TO
 * and RELEASE of its savepoint) after a failure rc. When even that lacks
 * memory and the transaction stays open, the message says so (see the
 * header's conventions) and the result is DW_ENOMEM. */
static int roll_back(sqlite3 *db, const char *sql, int own, int rc,
                     char **errmsg)
{
    /* SQLite may have ended the transaction itself. */
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ||
        sqlite3_get_autocommit(db))
        return rc;
    if (errmsg) {
        dw__free(*errmsg);
        *errmsg = NULL;
    }
    return say(errmsg, DW_ENOMEM,
               own ? "out of memory; the library's transaction is still "
                     "open: run ROLLBACK"
                   : "out of memory; the library's savepoint is still open "
                     "in your transaction: run ROLLBACK");
}

/* Ends the listing's own read transaction (COMMIT prepared before BEGIN,
 * so ending needs no allocation); DW_OK, or DW_ENOMEM when it stays open. */
static int end_read(sqlite3 *db, sqlite3_stmt *commit, int rc, char **errmsg)
{
    if (sqlite3_get_autocommit(db))
        return rc; /* fn ended it */
    int end = sqlite3_step(commit);
    sqlite3_reset(commit);
    if (end == SQLITE_DONE)
        return rc;
    /* What fn wrote joined this transaction, and goes with it: say so. */
    if (rc == DW_OK)
        rc = say_sqlite(errmsg, db, end,
                        "dw_list: committing (what the callback wrote is "
                        "rolled back)");
    return roll_back(db, "ROLLBACK", 1, rc, errmsg);
}

/* Column c as a stage, or -1 when it holds no stage (edited by hand). */
static int stored_stage(sqlite3_stmt *st, int c)
{
    int64_t v = sqlite3_column_int64(st, c);
    return sqlite3_column_type(st, c) == SQLITE_INTEGER &&
                   v >= DW_STAGE_OFF && v <= DW_STAGE_COMPLETE
               ? (int)v
               : -1;
}

/* A callback mapping names itself in the spec, as "callback"; NULL when
 * the spec is not JSON -- damaged, or json_valid() ran out of memory,
 * which an intact spec then tells. */
#define LIST_SQL(contracted)                                                   \
    "SELECT name, stage, spec, spec_digest, CASE WHEN json_valid(spec) THEN "  \
    "json_type(spec, '$.up.callback') IS NOT NULL OR "                         \
    "json_type(spec, '$.down.callback') IS NOT NULL END, "                     \
    contracted ", created, updated FROM main.dw_migrations ORDER BY name"

int dw_list(sqlite3 *db, dw_list_fn fn, void *payload, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (!db || !fn)
        return say(errmsg, DW_EMISUSE, "dw_list: %s is NULL",
                   !db ? "the connection" : "the callback");
    /* The caller's transaction, or a read transaction of ours, so the
     * check for the table and the rows agree. */
    sqlite3_stmt *begin = NULL, *commit = NULL, *st = NULL;
    int own = sqlite3_get_autocommit(db);
    int rc = SQLITE_OK;
    if (own && ((rc = prepare(db, "BEGIN", &begin)) != SQLITE_OK ||
                (rc = prepare(db, "COMMIT", &commit)) != SQLITE_OK ||
                (rc = sqlite3_step(begin)) != SQLITE_DONE)) {
        int code = say_sqlite(errmsg, db, rc, "dw_list: beginning a read");
        sqlite3_finalize(begin);
        sqlite3_finalize(commit);
        /* A BEGIN can fail after opening the transaction. */
        if (!sqlite3_get_autocommit(db))
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return code;
    }
    sqlite3_finalize(begin);
    int have = 0;
    int result = have_migrations(db, &have, errmsg);
    if (result == DW_OK && have) {
        rc = prepare(db, have == 2 ? LIST_SQL("contracted") : LIST_SQL("0"),
                     &st);
        while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            dw_stored_migration m;
            m.name = (const char *)sqlite3_column_text(st, 0);
            m.stage = stored_stage(st, 1);
            m.spec = (const char *)sqlite3_column_text(st, 2);
            m.spec_digest = (const char *)sqlite3_column_text(st, 3);
            m.callbacks = sqlite3_column_int(st, 4) != 0;
            m.contracted = sqlite3_column_int(st, 5) != 0;
            m.created = sqlite3_column_double(st, 6);
            m.updated = sqlite3_column_double(st, 7);
            if (!m.name || !m.spec || !m.spec_digest ||
                (sqlite3_column_type(st, 4) == SQLITE_NULL &&
                 spec_intact(m.spec, m.spec_digest))) {
                rc = SQLITE_NOMEM;
                break;
            }
            rc = fn(&m, payload) ? SQLITE_DONE : SQLITE_OK;
            if (rc == SQLITE_DONE)
                break;
        }
        if (rc != SQLITE_DONE)
            result = say_sqlite(errmsg, db, rc, "dw_list: reading migrations");
        sqlite3_finalize(st);
    }
    if (own)
        result = end_read(db, commit, result, errmsg);
    sqlite3_finalize(commit);
    return result;
}

/* ---- removing a stored migration ---------------------------------------- */

/* What a removal needs to know of the stored migration. */
typedef struct removal {
    const char *name;
    int64_t id;
    int stage;
    int contracted;
    int canary;       /* a canary whose keys run at another stage than OFF */
    int canary_stage;
    int64_t routed;   /* overrides at another stage than OFF */
    int intact;       /* stage, contracted and canary_stage as written */
    char digest[65];
} removal;

/* Runs one statement of the removal with ?1 bound to the migration's id
 * and ?2 on to the texts given (NULL ones bound as NULL). */
static int removal_step(sqlite3 *db, const char *sql, int64_t id,
                        const char *const *texts, int ntexts, char **errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(db, sql, &st);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, id);
        for (int i = 0; i < ntexts; i++)
            sqlite3_bind_text(st, 2 + i, texts[i], -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? DW_OK
                             : say_sqlite(errmsg, db, rc, "dw_remove");
}

static int read_removal(sqlite3 *db, removal *r, char **errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(db,
                     "SELECT id, stage, contracted, spec_digest, "
                     "(canary_buckets > 0 OR canary_cohort IS NOT NULL) AND "
                     "canary_stage <> 0, canary_stage, (SELECT count(*) FROM "
                     "dw_overrides o WHERE o.migration_id = m.id AND "
                     "o.stage <> 0), typeof(stage) = 'integer' AND stage "
                     "BETWEEN 0 AND 5 AND typeof(contracted) = 'integer' AND "
                     "contracted IN (0, 1) AND typeof(canary_stage) = "
                     "'integer' AND canary_stage BETWEEN 0 AND 5 "
                     "FROM main.dw_migrations m WHERE name = ?1",
                     &st);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, r->name, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    int result = DW_OK;
    if (rc == SQLITE_ROW) {
        r->id = sqlite3_column_int64(st, 0);
        r->stage = sqlite3_column_int(st, 1);
        r->contracted = sqlite3_column_int(st, 2);
        const char *digest = (const char *)sqlite3_column_text(st, 3);
        snprintf(r->digest, sizeof r->digest, "%s", digest ? digest : "");
        r->canary = sqlite3_column_int(st, 4);
        r->canary_stage = sqlite3_column_int(st, 5);
        r->routed = sqlite3_column_int64(st, 6);
        r->intact = sqlite3_column_int(st, 7);
    } else if (rc == SQLITE_DONE) {
        result = say(errmsg, DW_ENOTFOUND,
                     "no migration named \"%s\" in this database", r->name);
    } else {
        result = say_sqlite(errmsg, db, rc, "dw_remove: reading the migration");
    }
    sqlite3_finalize(st);
    return result;
}

/* Whether removing now would leave data half-moved: the message says why
 * and what to do first. Removable are a migration at OFF with no key
 * routed elsewhere (every key trusts the old model, written all along),
 * and one contracted at COMPLETE (the old model is gone: an application
 * still opening it fails instead of trusting it). */
static int removal_refused(const removal *r, char **errmsg)
{
    /* A forged stage must not read as OFF (or as any stage). */
    if (!r->intact)
        return say(errmsg, DW_ECORRUPT,
                   "dw_remove: the stored state of migration \"%s\" is "
                   "damaged: table dw_migrations, row with id %lld: column "
                   "stage, contracted or canary_stage holds a value no "
                   "operation writes, so whether its data is half-moved "
                   "cannot be told; nothing was removed: repair the row by "
                   "hand first",
                   r->name, (long long)r->id);
    if (r->stage == DW_STAGE_COMPLETE && r->contracted)
        return DW_OK;
    if (r->stage == DW_STAGE_COMPLETE)
        return say(errmsg, DW_EMISUSE,
                   "dw_remove: migration \"%s\" is at COMPLETE, where the "
                   "old model is no longer written: removed, an application "
                   "that opens it again would define it anew at OFF and "
                   "trust that stale model; contract it first (backup and "
                   "drop of the old model)",
                   r->name);
    if (r->stage != DW_STAGE_OFF)
        return say(errmsg, DW_EMISUSE,
                   "dw_remove: migration \"%s\" is at %s, with its data "
                   "half-moved between the models; move it back to OFF "
                   "first, or finish it (COMPLETE and contract)",
                   r->name, dw_stage_name(r->stage));
    if (r->routed)
        return say(errmsg, DW_EMISUSE,
                   "dw_remove: migration \"%s\" is at OFF, but %lld keys "
                   "have overrides at other stages (their data is "
                   "half-moved); remove their overrides first",
                   r->name, (long long)r->routed);
    if (r->canary)
        return say(errmsg, DW_EMISUSE,
                   "dw_remove: migration \"%s\" is at OFF, but its canary "
                   "runs keys at %s (their data is half-moved); clear the "
                   "canary first",
                   r->name, dw_stage_name(r->canary_stage));
    return DW_OK;
}

/* Every state row of the migration goes, so a later definition under the
 * same name starts clean; what was removed is noted in dw_meta, where the
 * next definition of the name finds it for its history. */
static int remove_rows(sqlite3 *db, const removal *r, const char *reason,
                       char **errmsg)
{
    static const char *const deletes[] = {
        "DELETE FROM dw_verify_keys WHERE run_id IN (SELECT id FROM "
        "dw_verify_runs WHERE migration_id = ?1)",
        "DELETE FROM dw_verify_runs WHERE migration_id = ?1",
        "DELETE FROM dw_backfill WHERE migration_id = ?1",
        "DELETE FROM dw_overrides WHERE migration_id = ?1",
        "DELETE FROM dw_mismatch_log WHERE migration_id = ?1",
        "DELETE FROM dw_repair_queue WHERE migration_id = ?1",
        "DELETE FROM dw_history WHERE migration_id = ?1",
        "DELETE FROM dw_migrations WHERE id = ?1"};
    int rc = DW_OK;
    for (size_t i = 0; rc == DW_OK && i < sizeof deletes / sizeof *deletes;
         i++)
        rc = removal_step(db, deletes[i], r->id, NULL, 0, errmsg);
    const char *const texts[] = {r->name, dw_stage_name(r->stage), r->digest,
                                 reason};
    /* The note, and apart from it the time (a number, as every time the
     * library stores). */
    if (rc == DW_OK)
        rc = removal_step(
            db,
            "INSERT INTO dw_meta(key, value) VALUES('removed:' || ?2, "
            "'at ' || ?3 || ' (spec ' || substr(?4, 1, 12) || ')' || "
            "coalesce(': ' || ?5, '')), ('removed_at:' || ?2, "
            "(julianday('now') - 2440587.5) * 86400.0) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            r->id, texts, 4, errmsg);
    /* The id is never given again (see ST_MIGRATION_INSERT): a handle
     * still open on the removed migration must not find another's state
     * under it. */
    if (rc == DW_OK)
        rc = removal_step(db,
                          "INSERT INTO dw_meta(key, value) VALUES("
                          "'removed_max_id', ?1) ON CONFLICT(key) DO UPDATE "
                          "SET value = max(CAST(value AS INTEGER), "
                          "excluded.value)",
                          r->id, NULL, 0, errmsg);
    return rc;
}

/* The state tables as this library writes them, or a message saying how
 * to get there: the removal touches every one of them. */
static int state_current(sqlite3 *db, char **errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(db,
                     "SELECT value FROM main.dw_meta WHERE key = "
                     "'schema_version'",
                     &st);
    int version = 0;
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return say_sqlite(errmsg, db, rc, "dw_remove: reading the state "
                                          "schema version");
    if (version != dw__state_schema_version())
        return say(errmsg, DW_EMISUSE,
                   "dw_remove: the state tables are at version %d, this "
                   "library (%s) writes version %d; open a migration of "
                   "this database once (dw_open_stored()) to upgrade them",
                   version, DW_VERSION, dw__state_schema_version());
    return DW_OK;
}

static int remove_in_transaction(sqlite3 *db, removal *r, const char *reason,
                                 char **errmsg)
{
    int have = 0;
    int rc = have_migrations(db, &have, errmsg);
    if (rc == DW_OK && !have)
        rc = say(errmsg, DW_ENOTFOUND,
                 "no migration named \"%s\" in this database", r->name);
    if (rc == DW_OK)
        rc = state_current(db, errmsg);
    if (rc == DW_OK)
        rc = read_removal(db, r, errmsg);
    if (rc == DW_OK)
        rc = removal_refused(r, errmsg);
    if (rc == DW_OK)
        rc = remove_rows(db, r, reason, errmsg);
    return rc;
}

/* rc, or DW_EROLLEDBACK when the database rolled back the caller's whole
 * transaction on the failure (see the header's conventions), the message
 * then naming the failure. */
static int caller_txn_kept(sqlite3 *db, int rc, char **errmsg)
{
    if (!sqlite3_get_autocommit(db))
        return rc;
    if (errmsg) {
        char *text =
            dw__txn_lost_text(*errmsg ? *errmsg : dw_errstr(rc));
        dw__free(*errmsg);
        *errmsg = text;
    }
    return DW_EROLLEDBACK;
}

int dw_remove(sqlite3 *db, const char *name, unsigned int flags,
              const char *reason, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (!db || !name)
        return say(errmsg, DW_EMISUSE, "dw_remove: %s is NULL",
                   !db ? "the connection" : "the name");
    if (flags)
        return say(errmsg, DW_EMISUSE, "dw_remove: unknown flags 0x%x",
                   flags);
    /* Its own write transaction, or a savepoint in the caller's: the
     * check and the removal see the same state, and go whole or not. */
    int own = sqlite3_get_autocommit(db);
    int rc = sqlite3_exec(db, own ? "BEGIN IMMEDIATE" : "SAVEPOINT dw_remove",
                          NULL, NULL, NULL);
    /* A BEGIN can fail after opening the transaction. */
    if (rc != SQLITE_OK)
        return own ? roll_back(db, "ROLLBACK", 1,
                               say_sqlite(errmsg, db, rc,
                                          "dw_remove: beginning"),
                               errmsg)
                   : say_sqlite(errmsg, db, rc, "dw_remove: beginning");
    removal r;
    memset(&r, 0, sizeof r);
    r.name = name;
    int result = remove_in_transaction(db, &r, reason, errmsg);
    if (result == DW_OK) {
        rc = sqlite3_exec(db, own ? "COMMIT" : "RELEASE dw_remove", NULL,
                          NULL, NULL);
        if (rc == SQLITE_OK)
            return DW_OK;
        result = say_sqlite(errmsg, db, rc, "dw_remove: committing");
    }
    result = roll_back(db,
                       own ? "ROLLBACK"
                           : "ROLLBACK TO dw_remove; RELEASE dw_remove",
                       own, result, errmsg);
    return own ? result : caller_txn_kept(db, result, errmsg);
}
