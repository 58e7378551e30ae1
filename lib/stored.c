/* Migrations as a database stores them, for tools that lack the
 * application's options: dw_list() reads them, dw_open_json() and
 * dw_open_stored() open one from its spec as JSON, dw_remove() takes one
 * away. The JSON is taken apart by the core's parser (lib/json.c); the
 * options built from it go to dw__open(), the one place a spec is checked
 * and stored. The database is reached through a connection-level driver
 * (dw_driver): what is refused, and the messages, are decided here. */
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
 * dw_free(), as the open functions do; returns code. */
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

/* A driver's failure code with what failed and the database's message;
 * fn, when not NULL, names the public function (dw_<driver>_<fn>) the
 * message starts with. */
static int say_driver(char **errmsg, const dw_driver *drv, void *conn,
                      int code, const char *fn, const char *what)
{
    if (code == DW_ENOMEM)
        return say(errmsg, code, "out of memory");
    if (!fn)
        return say(errmsg, code, "%s: %s", what, drv->native_error(conn));
    return say(errmsg, code, "dw_%s_%s: %s: %s", drv->name, fn, what,
               drv->native_error(conn));
}

static int not_stored(char **errmsg, const char *name)
{
    return say(errmsg, DW_ENOTFOUND,
               "no migration named \"%s\" in this database", name);
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

typedef struct parse {
    dw_json_doc *doc; /* every string below points into it */
    int rc;
    char *msg;
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

/* A value's type in words, for messages. */
static const char *type_word(const dw_json *v)
{
    static const char *const words[] = {
        [DW_JSON_NULL] = "null",       [DW_JSON_FALSE] = "false",
        [DW_JSON_TRUE] = "true",       [DW_JSON_NUMBER] = "a number",
        [DW_JSON_STRING] = "a string", [DW_JSON_ARRAY] = "an array",
        [DW_JSON_OBJECT] = "an object"};
    return words[v->type];
}

/* The text of a string value; NULL for any other. */
static const char *text_of(const dw_json *v)
{
    return v && v->type == DW_JSON_STRING ? v->text : NULL;
}

static int is(const dw_json *v, dw_json_type type)
{
    return v && v->type == type;
}

typedef int (*member_fn)(parse *p, const dw_json *m, void *arg);

/* Calls fn for each entry of an object or array, in document order, until
 * the first failure. */
static int each(parse *p, const dw_json *container, member_fn fn, void *arg)
{
    for (const dw_json *m = container->first; m && p->rc == DW_OK;
         m = m->next)
        fn(p, m, arg);
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

/* ---- one side: {"table": T, "key": [...], "columns": [...] | null} ---- */

typedef struct side_arg {
    int side;
    const char *word; /* "old" or "new" */
    int seen;
    const dw_json *key, *cols;
} side_arg;

static int side_member(parse *p, const dw_json *m, void *arg)
{
    side_arg *a = arg;
    if (strcmp(m->name, "table") == 0) {
        if (once(p, &a->seen, M_TABLE, a->word, ".table") == DW_OK &&
            !text_of(m))
            return fail(p, DW_EMISUSE, "spec: \"%s.table\" must be a string",
                        a->word);
        p->table[a->side] = m->text;
    } else if (strcmp(m->name, "key") == 0) {
        once(p, &a->seen, M_KEY, a->word, ".key");
        a->key = m;
    } else if (strcmp(m->name, "columns") == 0) {
        once(p, &a->seen, M_COLUMNS, a->word, ".columns");
        a->cols = m;
    } else {
        return fail(p, DW_EMISUSE, "spec: unknown member \"%s.%s\"", a->word,
                    m->name);
    }
    return p->rc;
}

typedef struct names_arg {
    list *names;
    const char *path; /* for messages: "old.key" */
    const char *rule; /* "an array of strings" */
} names_arg;

static int name_entry(parse *p, const dw_json *m, void *arg)
{
    names_arg *a = arg;
    if (!text_of(m))
        return fail(p, DW_EMISUSE, "spec: \"%s\" must be %s (entry %d is %s)",
                    a->path, a->rule, a->names->n, type_word(m));
    if (list_push(a->names, sizeof m->text, &m->text) != DW_OK)
        return nomem(p);
    return DW_OK;
}

static int parse_side(parse *p, int side, const dw_json *v)
{
    const char *word = side == DW_SIDE_OLD ? "old" : "new";
    if (!v)
        return fail(p, DW_EMISUSE, "spec: \"%s\" is required", word);
    if (!is(v, DW_JSON_OBJECT))
        return fail(p, DW_EMISUSE, "spec: \"%s\" must be an object", word);
    side_arg a = {side, word, 0, NULL, NULL};
    if (each(p, v, side_member, &a) != DW_OK)
        return p->rc;
    if (!p->table[side])
        return fail(p, DW_EMISUSE, "spec: \"%s.table\" is required", word);
    if (!a.key)
        return fail(p, DW_EMISUSE, "spec: \"%s.key\" is required", word);
    if (!is(a.key, DW_JSON_ARRAY))
        return fail(p, DW_EMISUSE, "spec: \"%s.key\" must be an array of "
                                   "strings",
                    word);
    names_arg keys = {&p->key[side], side == DW_SIDE_OLD ? "old.key" : "new.key",
                      "an array of strings"};
    each(p, a.key, name_entry, &keys);
    if (a.cols && !is(a.cols, DW_JSON_ARRAY) && !is(a.cols, DW_JSON_NULL))
        return fail(p, DW_EMISUSE,
                    "spec: \"%s.columns\" must be an array of strings or "
                    "null",
                    word);
    if (is(a.cols, DW_JSON_ARRAY)) {
        p->has_cols[side] = 1;
        names_arg cols = {&p->cols[side],
                          side == DW_SIDE_OLD ? "old.columns" : "new.columns",
                          "an array of strings or null"};
        each(p, a.cols, name_entry, &cols);
    }
    return p->rc;
}

/* ---- a mapping: {"sql": {...}} or {"callback": V} ------------------------ */

typedef struct map_arg {
    int target;
    const char *word; /* "up" or "down" */
    int seen;
    const dw_json *sql;
} map_arg;

static int map_member(parse *p, const dw_json *m, void *arg)
{
    map_arg *a = arg;
    if (strcmp(m->name, "sql") == 0) {
        if (once(p, &a->seen, M_SQL, a->word, ".sql") == DW_OK &&
            !is(m, DW_JSON_OBJECT))
            return fail(p, DW_EMISUSE,
                        "spec: \"%s.sql\" must be an object of strings",
                        a->word);
        p->has_sql[a->target] = 1;
        a->sql = m;
    } else if (strcmp(m->name, "callback") == 0) {
        if (once(p, &a->seen, M_CALLBACK, a->word, ".callback") == DW_OK &&
            !text_of(m) && !is(m, DW_JSON_NULL))
            return fail(p, DW_EMISUSE,
                        "spec: \"%s.callback\" must be a string (the "
                        "map_version) or null",
                        a->word);
        p->has_callback[a->target] = 1;
        p->version[a->target] = text_of(m);
    } else {
        return fail(p, DW_EMISUSE, "spec: unknown member \"%s.%s\"", a->word,
                    m->name);
    }
    return p->rc;
}

static int expression(parse *p, const dw_json *m, void *arg)
{
    map_arg *a = arg;
    if (!text_of(m))
        return fail(p, DW_EMISUSE, "spec: \"%s.sql.%s\" must be a string",
                    a->word, m->name);
    dw_column_map cm = {m->name, m->text};
    if (list_push(&p->map[a->target], sizeof cm, &cm) != DW_OK)
        return nomem(p);
    return DW_OK;
}

static int parse_map(parse *p, int target, const dw_json *v)
{
    const char *word = target == DW_SIDE_NEW ? "up" : "down";
    if (!v || is(v, DW_JSON_NULL)) {
        if (target == DW_SIDE_OLD)
            return DW_OK; /* no down mapping */
        return fail(p, DW_EMISUSE, "spec: \"up\" is required");
    }
    if (!is(v, DW_JSON_OBJECT))
        return fail(p, DW_EMISUSE,
                    "spec: \"%s\" must be {\"sql\":{...}} or "
                    "{\"callback\":...}%s",
                    word, target == DW_SIDE_OLD ? " or null" : "");
    map_arg a = {target, word, 0, NULL};
    if (each(p, v, map_member, &a) != DW_OK)
        return p->rc;
    if (p->has_sql[target] == p->has_callback[target])
        return fail(p, DW_EMISUSE,
                    "spec: \"%s\" must have one member, \"sql\" or "
                    "\"callback\"",
                    word);
    if (a.sql)
        each(p, a.sql, expression, &a);
    return p->rc;
}

/* ---- the whole spec ------------------------------------------------------ */

typedef struct top_arg {
    int seen;
    const dw_json *side[3]; /* "old" and "new" */
    const dw_json *map[3];  /* [DW_SIDE_NEW] "up", [DW_SIDE_OLD] "down" */
} top_arg;

static int top_member(parse *p, const dw_json *m, void *arg)
{
    top_arg *a = arg;
    static const struct {
        const char *name;
        int bit;
    } known[] = {{"format", M_FORMAT}, {"old", M_OLD},   {"new", M_NEW},
                 {"up", M_UP},         {"down", M_DOWN}, {"setup", M_SETUP}};
    int bit = 0;
    for (size_t i = 0; i < sizeof known / sizeof *known && !bit; i++)
        if (strcmp(m->name, known[i].name) == 0)
            bit = known[i].bit;
    if (!bit)
        return fail(p, DW_EMISUSE, "spec: unknown member \"%s\"", m->name);
    if (once(p, &a->seen, bit, "", m->name) != DW_OK)
        return p->rc;
    int64_t format_version = 0;
    switch (bit) {
    case M_FORMAT:
        if (!dw_json_int64(m, &format_version) || format_version != 1)
            return fail(p, DW_EMISUSE, "spec: \"format\" must be 1");
        break;
    case M_OLD: a->side[DW_SIDE_OLD] = m; break;
    case M_NEW: a->side[DW_SIDE_NEW] = m; break;
    case M_UP: a->map[DW_SIDE_NEW] = m; break;
    case M_DOWN: a->map[DW_SIDE_OLD] = m; break;
    case M_SETUP:
        if (!text_of(m))
            return fail(p, DW_EMISUSE, "spec: \"setup\" must be a string");
        p->setup = m->text;
        break;
    }
    return DW_OK;
}

/* Parses the text as JSON into p->doc: one object, no string holding a
 * NUL (a name cut short there would name something else). */
static int parse_document(parse *p, const char *json)
{
    dw_json_error err;
    int rc = dw_json_parse(json, strlen(json), 0, &p->doc, &err);
    if (rc == DW_ENOMEM)
        return nomem(p);
    if (rc != DW_OK)
        return fail(p, DW_EMISUSE, "spec: not valid JSON: %s", err.msg);
    const dw_json *root = dw_json_root(p->doc);
    if (!is(root, DW_JSON_OBJECT))
        return fail(p, DW_EMISUSE, "spec: must be a JSON object, not %s",
                    is(root, DW_JSON_ARRAY) ? "an array" : "a single value");
    if (dw_json_nul(p->doc))
        return fail(p, DW_EMISUSE, "spec: a string contains \\u0000 (a NUL "
                                   "character)");
    return DW_OK;
}

/* Checks the text is one JSON object, then reads every member into p. */
static int parse_spec(parse *p, const char *json)
{
    if (parse_document(p, json) != DW_OK)
        return p->rc;
    top_arg a;
    memset(&a, 0, sizeof a);
    if (each(p, dw_json_root(p->doc), top_member, &a) != DW_OK)
        return p->rc;
    parse_side(p, DW_SIDE_OLD, a.side[DW_SIDE_OLD]);
    parse_side(p, DW_SIDE_NEW, a.side[DW_SIDE_NEW]);
    parse_map(p, DW_SIDE_NEW, a.map[DW_SIDE_NEW]);
    parse_map(p, DW_SIDE_OLD, a.map[DW_SIDE_OLD]);
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
    dw_json_free(p->doc);
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

/* {"sql":{}} maps into no column: what opening stores for a side of the
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
static int open_json(dw_migration **out, const dw_driver *drv, void *conn,
                     const char *name, const char *spec_json,
                     unsigned int flags, const char *reason, int stored_only,
                     char **errmsg)
{
    parse p;
    memset(&p, 0, sizeof p);
    int rc = parse_spec(&p, spec_json);
    if (rc != DW_OK) {
        if (errmsg) {
            *errmsg = p.msg;
            p.msg = NULL;
        }
        parse_free(&p);
        return rc;
    }
    /* dw__open() copies everything, checks everything, and keeps the
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
    rc = dw__open(out, drv, conn, &o, stored_only, errmsg);
    parse_free(&p);
    return rc;
}

int dw__open_json(dw_migration **out, const dw_driver *drv, void *conn,
                  const char *name, const char *spec_json, unsigned int flags,
                  const char *reason, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (!out)
        return say(errmsg, DW_EMISUSE, "dw_%s_open_json: out is NULL",
                   drv->name);
    *out = NULL;
    if (!conn || !spec_json)
        return say(errmsg, DW_EMISUSE, "dw_%s_open_json: %s is NULL",
                   drv->name,
                   !conn ? "the connection" : "the spec");
    return open_json(out, drv, conn, name, spec_json, flags, reason, 0,
                     errmsg);
}

/* ---- stored migrations ------------------------------------------------------ */

/* Whether a stored spec is the text its digest was taken of. */
static int spec_intact(const char *spec, const char *digest)
{
    char hex[65];
    dw__text_digest(spec, hex);
    return strcmp(hex, digest) == 0;
}

/* *parses: whether the text is JSON; DW_ENOMEM when that could not be
 * told. */
static int parses_as_json(const char *text, int *parses)
{
    dw_json_doc *doc = NULL;
    dw_json_error err;
    int rc = dw_json_parse(text, strlen(text), 0, &doc, &err);
    dw_json_free(doc);
    *parses = rc == DW_OK;
    return rc == DW_ENOMEM ? rc : DW_OK;
}

/* The spec stored under `name`, copied into *spec; DW_ENOTFOUND when there
 * is none; DW_ECORRUPT when it is not the text its digest was taken of
 * (truncated or edited by hand). */
static int read_stored_spec(const dw_driver *drv, void *conn,
                            const char *name, char **spec, char **errmsg)
{
    char *digest = NULL;
    int rc = drv->stored_spec(conn, name, spec, &digest);
    if (rc == DW_ENOTFOUND)
        return not_stored(errmsg, name);
    if (rc != DW_OK)
        return say_driver(errmsg, drv, conn, rc, NULL,
                          "reading the stored spec");
    int parses = 0;
    if (!spec_intact(*spec, digest) &&
        (rc = parses_as_json(*spec, &parses)) == DW_OK)
        rc = say(errmsg, DW_ECORRUPT,
                 "migration \"%s\": its stored spec is damaged: the text in "
                 "table dw_migrations %s and does not match its digest "
                 "(%.12s); define the migration again from the application",
                 name,
                 parses ? "parses as JSON, but was changed"
                        : "does not parse as JSON",
                 digest);
    else if (rc == DW_ENOMEM)
        rc = say(errmsg, rc, "out of memory");
    dw__free(digest);
    if (rc != DW_OK) {
        dw__free(*spec);
        *spec = NULL;
    }
    return rc;
}

int dw__open_stored(dw_migration **out, const dw_driver *drv, void *conn,
                    const char *name, unsigned int flags, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (!out)
        return say(errmsg, DW_EMISUSE, "dw_%s_open_stored: out is NULL",
                   drv->name);
    *out = NULL;
    if (!conn || !name)
        return say(errmsg, DW_EMISUSE, "dw_%s_open_stored: %s is NULL",
                   drv->name,
                   !conn ? "the connection" : "the name");
    if (flags & DW_OPEN_REDEFINE)
        return say(errmsg, DW_EMISUSE,
                   "dw_%s_open_stored: DW_OPEN_REDEFINE has nothing to "
                   "redefine with: the spec is the stored one", drv->name);
    /* The spec is read, then opened in a transaction of dw__open()'s: one
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
        rc = read_stored_spec(drv, conn, name, &spec, errmsg);
        if (rc == DW_OK && last && strcmp(last, spec) == 0)
            rc = say(errmsg, DW_ESCHEMA,
                     "migration \"%s\": the schema no longer reads as its "
                     "stored spec (a table or column renamed or respelled?); "
                     "the application that defined it must redefine it",
                     name);
        else if (rc == DW_OK)
            rc = open_json(out, drv, conn, name, spec, flags, NULL, 1,
                           errmsg);
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

/* Rolls back the scope the library began after a failure rc. When even
 * that lacks memory and the scope stays open, the message says so (see
 * the header's conventions) and the result is DW_ENOMEM. */
static int roll_back(const dw_driver *drv, void *conn, void *scope, int own,
                     int rc, char **errmsg)
{
    if (drv->scope_end(conn, scope, 0) == DW_OK)
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

/* Ends the listing's own read scope (made so that ending needs no
 * memory); rc, or the failure to commit, or DW_ENOMEM when the scope
 * stays open. */
static int end_read(const dw_driver *drv, void *conn, void *scope, int rc,
                    char **errmsg)
{
    int end = drv->scope_end(conn, scope, 1);
    if (end == DW_OK)
        return rc;
    /* What fn wrote joined this transaction, and goes with it: say so. */
    if (rc == DW_OK)
        rc = say_driver(errmsg, drv, conn, end,
                        "list", "committing (what the callback wrote is "
                        "rolled back)");
    return roll_back(drv, conn, scope, 1, rc, errmsg);
}

/* Whether a spec's mappings include a C callback: the spec names it, as
 * "callback". A spec that is not JSON (damaged) has none. */
static int spec_callbacks(const char *spec, int *callbacks)
{
    dw_json_doc *doc = NULL;
    dw_json_error err;
    int rc = dw_json_parse(spec, strlen(spec), 0, &doc, &err);
    const dw_json *root = dw_json_root(doc);
    *callbacks =
        rc == DW_OK &&
        (dw_json_get(dw_json_get(root, "up"), "callback") ||
         dw_json_get(dw_json_get(root, "down"), "callback"));
    dw_json_free(doc);
    return rc == DW_ENOMEM ? rc : DW_OK;
}

typedef struct list_arg {
    dw_list_fn fn;
    void *payload;
    int rc; /* DW_ENOMEM when a spec could not be looked at */
} list_arg;

static int list_row(const dw_stored_row *r, void *arg)
{
    list_arg *a = arg;
    dw_stored_migration m;
    m.name = r->name;
    /* A stage edited by hand into no stage is -1, never read as one. */
    m.stage = r->stage_integer && r->stage >= DW_STAGE_OFF &&
                      r->stage <= DW_STAGE_COMPLETE
                  ? (int)r->stage
                  : -1;
    m.spec = r->spec;
    m.spec_digest = r->spec_digest;
    m.contracted = r->contracted;
    m.created = r->created;
    m.updated = r->updated;
    if ((a->rc = spec_callbacks(r->spec, &m.callbacks)) != DW_OK)
        return 1;
    return a->fn(&m, a->payload);
}

int dw__list(const dw_driver *drv, void *conn, dw_list_fn fn, void *payload,
             char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (!conn || !fn)
        return say(errmsg, DW_EMISUSE, "dw_%s_list: %s is NULL", drv->name,
                   !conn ? "the connection" : "the callback");
    /* The caller's transaction, or a read transaction of ours, so the
     * check for the table and the rows agree. */
    void *scope = NULL;
    int own = !drv->in_transaction(conn);
    int rc = own ? drv->scope_begin(conn, DW_SCOPE_READ, &scope) : DW_OK;
    if (rc != DW_OK) {
        rc = say_driver(errmsg, drv, conn, rc, "list", "beginning a read");
        return scope ? roll_back(drv, conn, scope, 1, rc, errmsg) : rc;
    }
    list_arg a = {fn, payload, DW_OK};
    rc = drv->list(conn, list_row, &a);
    if (a.rc != DW_OK)
        rc = say(errmsg, a.rc, "out of memory");
    else if (rc != DW_OK)
        rc = say_driver(errmsg, drv, conn, rc, "list", "reading migrations");
    return own ? end_read(drv, conn, scope, rc, errmsg) : rc;
}

/* ---- removing a stored migration ---------------------------------------- */

/* Whether removing now would leave data half-moved: the message says why
 * and what to do first. Removable are a migration at OFF with no key
 * routed elsewhere (every key trusts the old model, written all along),
 * and one contracted at COMPLETE (the old model is gone: an application
 * still opening it fails instead of trusting it). */
static int removal_refused(const dw_driver *drv, const char *name,
                           const dw_removal *r, char **errmsg)
{
    /* A forged stage must not read as OFF (or as any stage). */
    if (!r->intact)
        return say(errmsg, DW_ECORRUPT,
                   "dw_%s_remove: the stored state of migration \"%s\" is "
                   "damaged: table dw_migrations, row with id %lld: column "
                   "stage, contracted or canary_stage holds a value no "
                   "operation writes, so whether its data is half-moved "
                   "cannot be told; nothing was removed: repair the row by "
                   "hand first", drv->name,
                   name, (long long)r->id);
    if (r->stage == DW_STAGE_COMPLETE && r->contracted)
        return DW_OK;
    if (r->stage == DW_STAGE_COMPLETE)
        return say(errmsg, DW_EMISUSE,
                   "dw_%s_remove: migration \"%s\" is at COMPLETE, where the "
                   "old model is no longer written: removed, an application "
                   "that opens it again would define it anew at OFF and "
                   "trust that stale model; contract it first (backup and "
                   "drop of the old model)", drv->name,
                   name);
    if (r->stage != DW_STAGE_OFF)
        return say(errmsg, DW_EMISUSE,
                   "dw_%s_remove: migration \"%s\" is at %s, with its data "
                   "half-moved between the models; move it back to OFF "
                   "first, or finish it (COMPLETE and contract)", drv->name,
                   name, dw_stage_name(r->stage));
    if (r->routed)
        return say(errmsg, DW_EMISUSE,
                   "dw_%s_remove: migration \"%s\" is at OFF, but %lld keys "
                   "have overrides at other stages (their data is "
                   "half-moved); remove their overrides first", drv->name,
                   name, (long long)r->routed);
    if (r->canary)
        return say(errmsg, DW_EMISUSE,
                   "dw_%s_remove: migration \"%s\" is at OFF, but its canary "
                   "runs keys at %s (their data is half-moved); clear the "
                   "canary first", drv->name,
                   name, dw_stage_name(r->canary_stage));
    return DW_OK;
}

/* The state tables as this library writes them, or a message saying how
 * to get there: the removal touches every one of them. DW_ENOTFOUND when
 * the database has no stored migrations at all. */
static int state_current(const dw_driver *drv, void *conn, const char *name,
                         char **errmsg)
{
    int version = 0;
    int rc = drv->state_version(conn, &version);
    if (rc != DW_OK)
        return say_driver(errmsg, drv, conn, rc,
                          "remove", "reading the state schema version");
    if (version < 0)
        return not_stored(errmsg, name);
    if (version != dw__state_schema_version())
        return say(errmsg, DW_EMISUSE,
                   "dw_%s_remove: the state tables are at version %d, this "
                   "library (%s) writes version %d; open a migration of "
                   "this database once (dw_%s_open_stored()) to upgrade "
                   "them", drv->name,
                   version, DW_VERSION, dw__state_schema_version(),
                   drv->name);
    return DW_OK;
}

/* Every state row of the migration goes, so a later definition under the
 * same name starts clean; what was removed is noted, where the next
 * definition of the name finds it for its history. */
static int remove_rows(const dw_driver *drv, void *conn, const char *name,
                       const dw_removal *r, const char *reason,
                       char **errmsg)
{
    char *note =
        dw__mprintf("at %s (spec %.12s)%s%s", dw_stage_name(r->stage),
                    r->digest, reason ? ": " : "", reason ? reason : "");
    if (!note)
        return say(errmsg, DW_ENOMEM, "out of memory");
    int rc = drv->removal_apply(conn, r->id, name, note);
    dw__free(note);
    return rc == DW_OK ? DW_OK
                       : say_driver(errmsg, drv, conn, rc, "remove",
                                    "writing");
}

static int remove_in_scope(const dw_driver *drv, void *conn,
                           const char *name, const char *reason,
                           char **errmsg)
{
    dw_removal r;
    memset(&r, 0, sizeof r);
    int rc = state_current(drv, conn, name, errmsg);
    if (rc == DW_OK && (rc = drv->removal_read(conn, name, &r)) != DW_OK)
        rc = rc == DW_ENOTFOUND
                 ? not_stored(errmsg, name)
                 : say_driver(errmsg, drv, conn, rc,
                              "remove", "reading the migration");
    if (rc == DW_OK)
        rc = removal_refused(drv, name, &r, errmsg);
    if (rc == DW_OK)
        rc = remove_rows(drv, conn, name, &r, reason, errmsg);
    return rc;
}

/* rc, or DW_EROLLEDBACK when the database rolled back the caller's whole
 * transaction on the failure (see the header's conventions), the message
 * then naming the failure. */
static int caller_txn_kept(const dw_driver *drv, void *conn, int rc,
                           char **errmsg)
{
    if (drv->in_transaction(conn))
        return rc;
    if (errmsg) {
        char *text =
            dw__txn_lost_text(*errmsg ? *errmsg : dw_errstr(rc));
        dw__free(*errmsg);
        *errmsg = text;
    }
    return DW_EROLLEDBACK;
}

int dw__remove(const dw_driver *drv, void *conn, const char *name,
               unsigned int flags, const char *reason, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (!conn || !name)
        return say(errmsg, DW_EMISUSE, "dw_%s_remove: %s is NULL", drv->name,
                   !conn ? "the connection" : "the name");
    if (flags)
        return say(errmsg, DW_EMISUSE, "dw_%s_remove: unknown flags 0x%x",
                   drv->name,
                   flags);
    /* Its own write transaction, or a savepoint in the caller's: the
     * check and the removal see the same state, and go whole or not. */
    int own = !drv->in_transaction(conn);
    void *scope = NULL;
    int rc = drv->scope_begin(conn, own ? DW_SCOPE_WRITE : DW_SCOPE_NESTED,
                              &scope);
    if (rc != DW_OK) {
        rc = say_driver(errmsg, drv, conn, rc, "remove", "beginning");
        return scope ? roll_back(drv, conn, scope, own, rc, errmsg) : rc;
    }
    rc = remove_in_scope(drv, conn, name, reason, errmsg);
    if (rc == DW_OK) {
        int end = drv->scope_end(conn, scope, 1);
        if (end == DW_OK)
            return DW_OK;
        rc = say_driver(errmsg, drv, conn, end, "remove", "committing");
    }
    rc = roll_back(drv, conn, scope, own, rc, errmsg);
    return own ? rc : caller_txn_kept(drv, conn, rc, errmsg);
}
