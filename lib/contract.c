/* The contract: dropping the old model after a checked backup, and the
 * restore that puts it back. Every decision and message is here -- the
 * stage and routing gates, what other migrations' use of the old model
 * allows, what an existing backup means, the history entries, the scopes
 * each step runs in; the backend's ops do the work they name (the old
 * model from the catalog, the backup, the drop, the facts about other
 * migrations). */
#include <limits.h>
#include <string.h>

#include "internal.h"

static int nomem(dw_migration *h)
{
    return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
}

static void free_names(char **names, int n)
{
    for (int i = 0; i < n; i++)
        dw__free(names[i]);
    dw__free(names);
}

void dw__old_model_free(dw_old_model *m)
{
    free_names(m->cols, m->ncols);
    free_names(m->key, m->nkey);
    dw__free(m->table);
    dw__free(m->table_def);
    dw__free(m->after_rows);
    dw__free(m->column_defs);
    memset(m, 0, sizeof *m);
}

/* Names as the schema compares them: ASCII letters in any case. */
static int same_name(const char *a, const char *b)
{
    return dw__stricmp(a, b) == 0;
}

static int named_in(const char *name, char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (same_name(name, names[i]))
            return 1;
    return 0;
}

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

static int same_model(const dw_old_model *a, const dw_old_model *b)
{
    return a->whole_table == b->whole_table &&
           same_text(a->table, b->table) &&
           same_text(a->table_def, b->table_def) &&
           same_text(a->after_rows, b->after_rows) &&
           same_text(a->column_defs, b->column_defs) &&
           same_names(a->cols, a->ncols, b->cols, b->ncols) &&
           same_names(a->key, a->nkey, b->key, b->nkey);
}

static int check_call(dw_migration *h, const char *path, const char *what)
{
    dw__clear_error(h);
    if (!path || !path[0])
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "%s: the backup path is NULL or empty", what);
    /* SQLite may read these as names of something else than the file the
     * path names (a URI, or a database in memory), so the checks on the
     * file would be about another one. */
    if (strncmp(path, "file:", 5) == 0 || strcmp(path, ":memory:") == 0)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "%s: backup path \"%s\" would be read by SQLite as "
                         "a URI or an in-memory database; give a plain file "
                         "path (\"./%s\" names the file of that name)",
                         what, path, path);
    return dw__need_autocommit(h, what);
}

/* ---- other migrations of the old model ---------------------------------------- */

/* The stored specs of the other migrations (ops->others_list) are parsed
 * here: what each uses and names is read from its spec. */

/* Another migration's spec parsed into *doc; *doc NULL when it has none
 * or it does not parse (others_intact() refuses that first). DW_OK, or
 * DW_ENOMEM with the error set. */
static int other_spec(dw_migration *h, const dw_other_migration *m,
                      dw_json_doc **doc)
{
    *doc = NULL;
    dw_json_error err;
    if (m->spec &&
        dw_json_parse_bytes(m->spec, strlen(m->spec), 0, doc, &err) ==
            DW_ENOMEM)
        return nomem(h);
    return DW_OK;
}

static const char *json_string(const dw_json *object, const char *name)
{
    const dw_json *v = dw_json_get(object, name);
    return v && v->type == DW_JSON_STRING ? v->text : NULL;
}

/* The strings of a JSON array as names (none when it is no array). DW_OK
 * or DW_ENOMEM (nothing kept). */
static int json_names(const dw_json *array, char ***names, int *n)
{
    *names = NULL;
    *n = 0;
    if (!array || array->type != DW_JSON_ARRAY || !array->count)
        return DW_OK;
    if (!(*names = dw__calloc(sizeof(char *) * (size_t)array->count)))
        return DW_ENOMEM;
    for (const dw_json *e = array->first; e; e = e->next) {
        if (e->type != DW_JSON_STRING)
            continue;
        if (!((*names)[*n] = dw__strdup(e->text))) {
            free_names(*names, *n);
            *names = NULL;
            *n = 0;
            return DW_ENOMEM;
        }
        ++*n;
    }
    return DW_OK;
}

/* The first other migration by name whose stored spec does not parse:
 * DW_ECORRUPT naming it (`arg`: what was not done). */
static int refuse_damaged(dw_migration *h, const dw_other_migration *m,
                          void *arg)
{
    dw_json_doc *doc = NULL;
    int rc = other_spec(h, m, &doc);
    if (rc == DW_OK && m->spec && !doc)
        rc = dw__error(h, DW_ECORRUPT, DW_SIDE_NONE,
                       "the stored spec of migration \"%s\" is damaged "
                       "(table dw_migrations, row with id %lld: it does not "
                       "parse as JSON), so whether it uses the old model "
                       "cannot be told; nothing was %s",
                       m->name, (long long)m->id, (const char *)arg);
    dw_json_free(doc);
    return rc;
}

/* Every other migration's stored spec parses: one that does not could not
 * be told to use the old model or not. DW_ECORRUPT naming it. */
static int others_intact(dw_migration *h, const char *what)
{
    return h->ops->others_list(h, refuse_damaged, (void *)what);
}

/* One side of another stored migration whose table is the old model's. */
typedef struct dw_table_use {
    const char *migration;
    int side; /* DW_SIDE_OLD or DW_SIDE_NEW */
    int stage;
    int contracted;
    int canary;          /* canary buckets or a cohort are set */
    int canary_stage;
    int lowest_override; /* lowest stage of a key override; INT_MAX: none */
    char **key;          /* that side's key and columns as stored */
    int nkey;
    char **cols;
    int ncols;
} dw_table_use;
typedef int (*dw_table_use_fn)(dw_migration *h, const dw_table_use *u,
                               void *arg);

typedef struct uses_walk {
    const char *table;
    dw_table_use_fn fn;
    void *arg;
} uses_walk;

/* fn for the side of m its spec (root) gives `table` (any case). */
static int side_use(dw_migration *h, const dw_other_migration *m,
                    const dw_json *root, int side, const uses_walk *w)
{
    const dw_json *s = dw_json_get(root, side == DW_SIDE_OLD ? "old" : "new");
    const char *table = json_string(s, "table");
    if (!table || !same_name(table, w->table))
        return DW_OK;
    dw_table_use u = {m->name, side, m->stage, m->contracted, m->canary,
                      m->canary_stage, m->lowest_override, NULL, 0, NULL, 0};
    int rc = json_names(dw_json_get(s, "key"), &u.key, &u.nkey);
    if (rc == DW_OK)
        rc = json_names(dw_json_get(s, "columns"), &u.cols, &u.ncols);
    rc = rc == DW_OK ? w->fn(h, &u, w->arg) : nomem(h);
    free_names(u.key, u.nkey);
    free_names(u.cols, u.ncols);
    return rc;
}

static int each_use(dw_migration *h, const dw_other_migration *m, void *arg)
{
    dw_json_doc *doc = NULL;
    int rc = other_spec(h, m, &doc);
    if (rc == DW_OK && doc)
        rc = side_use(h, m, dw_json_root(doc), DW_SIDE_NEW, arg);
    if (rc == DW_OK && doc)
        rc = side_use(h, m, dw_json_root(doc), DW_SIDE_OLD, arg);
    dw_json_free(doc);
    return rc;
}

/* fn for each side of another migration whose table is `table` (any
 * case), by migration name, its new side first; fn's non-zero return stops
 * the walk and is returned. */
static int other_uses(dw_migration *h, const char *table, dw_table_use_fn fn,
                      void *arg)
{
    uses_walk w = {table, fn, arg};
    return h->ops->others_list(h, each_use, &w);
}

/* SQL text another stored migration holds. */
enum { DW_SQL_MAPPING, DW_SQL_SETUP, DW_SQL_COHORT };
typedef struct dw_other_sql_text {
    const char *migration;
    const char *old_table, *new_table;
    int contracted;
    int kind; /* DW_SQL_... */
    const char *text;
} dw_other_sql_text;
typedef int (*dw_other_sql_fn)(dw_migration *h, const dw_other_sql_text *t,
                               void *arg);

typedef struct sql_walk {
    dw_other_sql_fn fn;
    void *arg;
} sql_walk;

/* fn for a mapping's expressions: a string, or the strings of an array or
 * object. */
static int mapping_sql(dw_migration *h, dw_other_sql_text *t,
                       const dw_json *sql, const sql_walk *w)
{
    if (sql && sql->type == DW_JSON_STRING) {
        t->text = sql->text;
        return w->fn(h, t, w->arg);
    }
    int rc = DW_OK;
    int entries = sql && (sql->type == DW_JSON_ARRAY ||
                          sql->type == DW_JSON_OBJECT);
    for (const dw_json *e = entries ? sql->first : NULL; rc == DW_OK && e;
         e = e->next)
        if (e->type == DW_JSON_STRING) {
            t->text = e->text;
            rc = w->fn(h, t, w->arg);
        }
    return rc;
}

static int each_sql(dw_migration *h, const dw_other_migration *m, void *arg)
{
    const sql_walk *w = arg;
    dw_json_doc *doc = NULL;
    int rc = other_spec(h, m, &doc);
    const dw_json *root = dw_json_root(doc);
    dw_other_sql_text t = {m->name,
                           json_string(dw_json_get(root, "old"), "table"),
                           json_string(dw_json_get(root, "new"), "table"),
                           m->contracted, DW_SQL_MAPPING, NULL};
    if (rc == DW_OK)
        rc = mapping_sql(h, &t, dw_json_get(dw_json_get(root, "up"), "sql"),
                         w);
    if (rc == DW_OK)
        rc = mapping_sql(h, &t,
                         dw_json_get(dw_json_get(root, "down"), "sql"), w);
    t.kind = DW_SQL_SETUP;
    if (rc == DW_OK && (t.text = json_string(root, "setup")))
        rc = w->fn(h, &t, w->arg);
    t.kind = DW_SQL_COHORT;
    if (rc == DW_OK && (t.text = m->cohort))
        rc = w->fn(h, &t, w->arg);
    dw_json_free(doc);
    return rc;
}

/* fn for each SQL text of each other migration (mapping expressions,
 * setup SQL, cohort), by migration name. */
static int other_sql(dw_migration *h, dw_other_sql_fn fn, void *arg)
{
    sql_walk w = {fn, arg};
    return h->ops->others_list(h, each_sql, &w);
}

static const char *const sql_kind_words[] = {
    [DW_SQL_MAPPING] = "mapping",
    [DW_SQL_SETUP] = "setup SQL",
    [DW_SQL_COHORT] = "cohort",
};

/* A mapping, setup SQL or cohort (while not contracted) of a migration of
 * other tables that names the old table would no longer prepare. */
static int refuse_naming(dw_migration *h, const dw_other_sql_text *t,
                         void *arg)
{
    const char *table = arg;
    if (!t->old_table || !t->new_table || same_name(t->old_table, table) ||
        same_name(t->new_table, table) ||
        (t->kind == DW_SQL_COHORT && t->contracted))
        return DW_OK;
    if (!dw_sql_names(t->text, table))
        return DW_OK;
    return dw__error(h, DW_EGATE, DW_SIDE_OLD,
                     "the %s of migration \"%s\" names table \"%s\"; "
                     "nothing was dropped: redefine that migration without "
                     "it first",
                     sql_kind_words[t->kind % 3], t->migration, table);
}

/* Only with two tables: for migrations of the old table, other_users()
 * decides. */
static int named_by_others(dw_migration *h)
{
    if (h->spec.same_table)
        return DW_OK;
    return other_sql(h, refuse_naming,
                             h->spec.side[DW_SIDE_OLD].table);
}

/* The use of the old model that decides the contract: a refusal before a
 * keep, then the first by name. */
typedef struct use_verdict {
    char *const *dropped; /* the old columns; NULL: the whole table */
    int ndropped;
    int found;
    int keep;  /* at COMPLETE with every key, using all that is dropped */
    int done;  /* at COMPLETE with every key */
    int side, stage;
    char *name;
    char *used; /* the dropped key and columns it uses, ", "-separated */
} use_verdict;

/* Appends the names of `names` that are dropped; counts them. */
static int add_dropped(dw_buf *b, const use_verdict *v, char *const *names,
                       int n)
{
    int count = 0;
    for (int i = 0; i < n; i++) {
        if (!named_in(names[i], v->dropped, v->ndropped))
            continue;
        dw_buf_puts(b, b->len ? ", " : "");
        dw_buf_puts(b, names[i]);
        count++;
    }
    return count;
}

static int every_key_complete(const dw_table_use *u)
{
    return u->stage == DW_STAGE_COMPLETE &&
           (!u->canary || u->canary_stage == DW_STAGE_COMPLETE) &&
           u->lowest_override >= DW_STAGE_COMPLETE;
}

static int weigh_use(dw_migration *h, const dw_table_use *u, void *arg)
{
    use_verdict *v = arg;
    /* A contracted migration no longer has the table as its old side. */
    if (u->side == DW_SIDE_OLD && u->contracted)
        return DW_OK;
    dw_buf used;
    dw_buf_init(&used);
    int nkeys = add_dropped(&used, v, u->key, u->nkey);
    int ncols = add_dropped(&used, v, u->cols, u->ncols);
    if (used.oom) {
        dw_buf_free(&used);
        return nomem(h);
    }
    if (v->dropped && !nkeys && !ncols) {
        dw_buf_free(&used);
        return DW_OK;
    }
    int done = u->side == DW_SIDE_OLD && every_key_complete(u);
    int keep = done && ncols >= v->ndropped;
    if (v->found && (keep > v->keep ||
                     (keep == v->keep && strcmp(u->migration, v->name) >= 0))) {
        dw_buf_free(&used);
        return DW_OK;
    }
    char *name = dw__strdup(u->migration);
    if (!name) {
        dw_buf_free(&used);
        return nomem(h);
    }
    dw__free(v->name);
    dw__free(v->used);
    v->name = name;
    v->used = used.p;
    v->found = 1, v->keep = keep, v->done = done;
    v->side = u->side, v->stage = u->stage;
    return DW_OK;
}

/* The verdict of the use that decides: DW_EGATE, or the old model kept
 * for it (*kept_for, its name). */
static int use_refusal(dw_migration *h, use_verdict *v, char **kept_for)
{
    const char *table = h->spec.side[DW_SIDE_OLD].table;
    int cols = v->dropped != NULL;
    const char *used = v->used ? v->used : "";
    if (v->keep) {
        *kept_for = v->name;
        v->name = NULL;
        return DW_OK;
    }
    if (v->done)
        /* Kept for it, the columns it does not use would stay for good:
         * its contract drops only its own. */
        return dw__error(
            h, DW_EGATE, DW_SIDE_OLD,
            "migration \"%s\" at COMPLETE still has columns %s of table "
            "\"%s\" as its old side, not all of those this contract drops; "
            "nothing was dropped: contract \"%s\" first (it keeps them for "
            "this migration, whose contract then drops them all)",
            v->name, used, table, v->name);
    return dw__error(
        h, DW_EGATE, DW_SIDE_OLD,
        "migration \"%s\" still uses %s%s%stable \"%s\" as its %s side (at "
        "%s%s); nothing was dropped: %s",
        v->name, cols ? "columns " : "", cols ? used : "", cols ? " of " : "",
        table, v->side == DW_SIDE_NEW ? "new" : "old",
        dw_stage_name(v->stage) ? dw_stage_name(v->stage) : "?",
        v->stage == DW_STAGE_COMPLETE ? ", with keys routed below it" : "",
        v->side == DW_SIDE_NEW
            ? "it is that migration's model"
            : "take it to COMPLETE first, and the contract keeps the old "
              "model for that migration's own contract");
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
    const dw_side_def *o = &h->spec.side[DW_SIDE_OLD];
    use_verdict v;
    memset(&v, 0, sizeof v);
    if (h->spec.same_table) {
        v.dropped = o->cols;
        v.ndropped = o->ncols;
    }
    int rc = other_uses(h, o->table, weigh_use, &v);
    if (rc == DW_OK && v.found)
        rc = use_refusal(h, &v, kept_for);
    dw__free(v.name);
    dw__free(v.used);
    return rc;
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

/* ---- the backup ---------------------------------------------------------------- */

/* Reads the backup at target into *m (dw__old_model_free it): a backup of
 * this migration, under its spec, whose rows are what its record says. */
static int backup_check(dw_migration *h, const char *target, dw_old_model *m,
                        int64_t *rows, char hex[65])
{
    dw_backup_record r;
    memset(m, 0, sizeof *m);
    /* Whose backup it is, before any of its rows is read. */
    int rc = h->ops->backup_read_record(h, target, &r);
    if (rc == DW_OK && strcmp(r.migration, h->spec.name) != 0)
        rc = dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                       "backup \"%s\" belongs to migration \"%s\", not "
                       "\"%s\"",
                       target, r.migration, h->spec.name);
    if (rc == DW_OK &&
        (!r.spec_digest || strcmp(r.spec_digest, h->digest) != 0))
        rc = dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                       "backup \"%s\" was taken under spec %.12s; migration "
                       "\"%s\" now has spec %.12s (redefined since)",
                       target, r.spec_digest ? r.spec_digest : "(none)",
                       h->spec.name, h->digest);
    if (rc == DW_OK)
        rc = h->ops->backup_read_model(h, target, m, rows, hex);
    if (rc == DW_OK && (r.rows != *rows || strcmp(r.sha256, hex) != 0))
        rc = dw__error(h, DW_ERROR, DW_SIDE_NONE,
                       "backup \"%s\" does not check out: it holds %lld rows "
                       "with digest %.16s, its record says %lld rows with "
                       "digest %.16s",
                       target, (long long)*rows, hex, (long long)r.rows,
                       r.sha256);
    dw__free(r.migration);
    dw__free(r.spec_digest);
    return rc;
}

/* The file, its rows and its record, copied in one transaction that only
 * reads the old model, with the copy's digest checked against it. */
static int write_backup(dw_migration *h, const dw_old_model *m,
                        const char *target, int64_t *rows, char hex[65])
{
    int rc = h->ops->backup_create(h, m, target);
    if (rc == DW_OK)
        rc = h->ops->backup_attach(h, target);
    if (rc != DW_OK)
        return rc;
    int scope;
    rc = dw__begin(h, 1, &scope);
    if (rc == DW_OK)
        rc = h->ops->model_digest(h, m, rows, hex);
    int64_t copy_rows = 0;
    char copy_hex[65];
    if (rc == DW_OK)
        rc = h->ops->backup_copy(h, m, target, &copy_rows, copy_hex);
    if (rc == DW_OK && (copy_rows != *rows || strcmp(copy_hex, hex) != 0))
        rc = dw__error(h, DW_ERROR, DW_SIDE_NONE,
                       "the backup's copy differs from the old model");
    dw_backup_record r = {h->spec.name, h->digest, *rows, ""};
    memcpy(r.sha256, hex, sizeof r.sha256);
    if (rc == DW_OK)
        rc = h->ops->backup_record(h, m, target, &r);
    if (rc == DW_OK)
        rc = dw__commit(h, scope);
    else if (scope)
        rc = dw__rollback(h, scope, rc);
    h->ops->backup_detach(h);
    return rc;
}

/* Written, then read back alone: it must hold what was written. */
static int write_checked_backup(dw_migration *h, const dw_old_model *m,
                                const char *target, int64_t *rows,
                                char hex[65])
{
    int rc = write_backup(h, m, target, rows, hex);
    if (rc != DW_OK)
        return rc;
    dw_old_model found;
    int64_t found_rows = 0;
    char found_hex[65] = "";
    rc = backup_check(h, target, &found, &found_rows, found_hex);
    dw__old_model_free(&found);
    if (rc == DW_OK && (found_rows != *rows || strcmp(found_hex, hex) != 0))
        rc = dw__error(h, DW_ERROR, DW_SIDE_NONE,
                       "backup \"%s\" does not match the old model", target);
    return rc;
}

/* An existing backup is used only when it is a complete backup of this
 * migration's old model exactly as described now -- what a contract whose
 * commit failed leaves behind (drop_old() then checks the rows against it
 * once more, under the write lock). Anything else is refused: the
 * contract never overwrites one. */
static int existing_backup(dw_migration *h, const dw_old_model *m,
                           const char *target, int64_t *rows, char hex[65])
{
    dw_old_model found;
    int rc = backup_check(h, target, &found, rows, hex);
    if (rc == DW_OK && !same_model(&found, m))
        rc = dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                       "it describes the old model otherwise than it is now");
    dw__old_model_free(&found);
    int64_t now_rows = 0;
    char now[65];
    if (rc == DW_OK)
        rc = h->ops->model_digest(h, m, &now_rows, now);
    if (rc == DW_OK && (now_rows != *rows || strcmp(now, hex) != 0))
        rc = dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                       "it holds %lld rows with digest %.16s, the old model "
                       "now %lld rows with digest %.16s",
                       (long long)*rows, hex, (long long)now_rows, now);
    /* A locked file or no memory is not a verdict on the file. */
    if (rc == DW_OK || rc == DW_ENOMEM || rc == DW_EBUSY)
        return rc;
    char *why = dw__strdup(dw_errmsg(h));
    rc = dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                   "backup \"%s\" exists and is not a backup of the old "
                   "model as it is now (%s); the contract never overwrites a "
                   "file: remove it or choose another path",
                   target, why ? why : "out of memory");
    dw__free(why);
    return rc;
}

/* ---- the contract ----------------------------------------------------------------- */

/* Step 1, in a read scope: the gates, then the old model described. */
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
    rc = dw__route_allows_contract(h);
    if (rc == DW_OK)
        rc = others_allow_drop(h, &kept_for);
    dw__free(kept_for);
    return rc == DW_OK ? h->ops->model_describe(h, arg) : rc;
}

/* A foreign key pointing at the old table would make dropping it delete or
 * change the other table's rows (ON DELETE CASCADE / SET NULL), which the
 * backup does not hold. */
static int drop_model(dw_migration *h, const dw_old_model *m)
{
    char *by = NULL;
    int rc = m->whole_table ? h->ops->table_referenced(h, m->table, &by)
                            : DW_OK;
    if (rc == DW_OK && by)
        rc = dw__error(h, DW_ECONSTRAINT, DW_SIDE_OLD,
                       "table \"%s\" has a FOREIGN KEY to the old table "
                       "\"%s\"; dropping it would change that table's rows, "
                       "so nothing was dropped",
                       by, m->table);
    dw__free(by);
    return rc == DW_OK ? h->ops->model_drop(h, m) : rc;
}

/* What the last step of a contract or a restore works from. */
typedef struct step_args {
    const dw_old_model *m;
    const char *target, *reason, *hex;
    int64_t rows;
} step_args;

static int contract_entry(dw_migration *h, const step_args *a, int stage,
                          const char *kept_for)
{
    dw_buf d;
    dw_buf_init(&d);
    dw_buf_printf(&d, "backup %s: %lld rows, sha256 %s", a->target,
                  (long long)a->rows, a->hex);
    if (kept_for) {
        dw_buf_puts(&d, "; the old model was kept: it is still the old "
                        "model of \"");
        dw_buf_puts(&d, kept_for);
        dw_buf_puts(&d, "\"");
    }
    char *detail = dw_buf_take(&d);
    int rc = detail ? h->ops->history_add(h, "contract", stage, stage, 0,
                                          a->reason, detail)
                    : nomem(h);
    dw__free(detail);
    return rc;
}

/* Step 3: under the write lock, the gates and the source once more, then
 * the drop and its record. */
static int drop_old(dw_migration *h, const step_args *a)
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
        rc = h->ops->model_digest(h, a->m, &now_rows, now);
    if (rc == DW_OK && (now_rows != a->rows || strcmp(now, a->hex) != 0))
        return dw__error(h, DW_ERROR, DW_SIDE_NONE,
                         "the old model changed while the backup was being "
                         "written (%lld rows now, %lld backed up); nothing "
                         "was dropped",
                         (long long)now_rows, (long long)a->rows);
    char *kept_for = NULL;
    if (rc == DW_OK)
        rc = others_allow_drop(h, &kept_for);
    if (rc == DW_OK && !kept_for)
        rc = drop_model(h, a->m);
    if (rc == DW_OK)
        rc = h->ops->contracted_store(h, 1);
    if (rc == DW_OK)
        rc = contract_entry(h, a, stage, kept_for);
    dw__free(kept_for);
    return rc;
}

/* The drop and its record, in one transaction; *committing says the
 * commit was tried. */
static int drop_in_txn(dw_migration *h, const step_args *a, int *committing)
{
    int scope;
    int rc = dw__begin(h, 1, &scope);
    if (rc == DW_OK)
        rc = drop_old(h, a);
    if (rc != DW_OK)
        return scope ? dw__rollback(h, scope, rc) : rc;
    *committing = 1;
    rc = dw__commit(h, scope);
    if (rc == DW_OK)
        h->contracted = 1;
    return rc;
}

int dw_contract(dw_migration *h, const char *backup_path, const char *reason)
{
    if (!h)
        return DW_EMISUSE;
    int rc = check_call(h, backup_path, "dw_contract");
    if (rc != DW_OK)
        return rc;
    const char *target = backup_path;
    dw_old_model m;
    memset(&m, 0, sizeof m);
    rc = dw__in_scope(h, 0, read_model, &m);
    int64_t rows = 0;
    char hex[65] = "";
    int exists = 0, created = 0;
    if (rc == DW_OK)
        rc = h->ops->backup_exists(h, target, &exists);
    if (rc == DW_OK && exists) {
        rc = existing_backup(h, &m, target, &rows, hex);
    } else if (rc == DW_OK) {
        created = 1;
        rc = write_checked_backup(h, &m, target, &rows, hex);
    }
    int committing = 0, dropping = rc == DW_OK;
    if (rc == DW_OK) {
        step_args a = {&m, target, reason, hex, rows};
        rc = drop_in_txn(h, &a, &committing);
    }
    int remove = 0;
    if (rc != DW_OK && committing) {
        /* A commit that failed may still reach the disk (in WAL mode its
         * frames can be in the log): the old model may be dropped after a
         * crash, and its backup must then be there. */
        dw__error_append(h,
                         "; backup \"%s\" was kept, as the failed commit may "
                         "still prove durable: a dw_contract() to the same "
                         "path uses it",
                         target);
    } else if (rc != DW_OK && dropping &&
               (rc == DW_EBUSY || h->contracted)) {
        /* Another connection's contract to the same path may have taken
         * this backup as its own (it uses an existing complete one) and
         * dropped the old model meanwhile. */
        dw__error_append(h,
                         "; backup \"%s\" was kept: another connection "
                         "may have contracted with it",
                         target);
    } else if (rc != DW_OK && created) {
        remove = 1;
        dw__error_append(h, "; backup \"%s\" was removed", target);
    }
    if (created)
        h->ops->backup_discard(h, remove);
    dw__old_model_free(&m);
    return rc;
}

/* ---- restore ------------------------------------------------------------------- */

/* The table made again as backed up, never over one of its name. */
static int restore_table(dw_migration *h, const step_args *a)
{
    int taken = 0;
    int rc = h->ops->name_taken(h, a->m->table, &taken);
    if (rc == DW_OK && taken)
        return dw__error(h, DW_EMISUSE, DW_SIDE_OLD,
                         "table \"%s\" exists again, and not as backed up "
                         "(created again, or kept by the contract for "
                         "another migration and written since); a restore "
                         "will not replace it",
                         a->m->table);
    if (rc == DW_OK)
        rc = h->ops->restore_table(h, a->m, a->target);
    int64_t got = 0;
    char found[65];
    if (rc == DW_OK)
        rc = h->ops->model_digest(h, a->m, &got, found);
    if (rc == DW_OK && (got != a->rows || strcmp(found, a->hex) != 0))
        rc = dw__error(h, DW_ERROR, DW_SIDE_NONE,
                       "the restored table does not match the backup");
    return rc;
}

/* Marks the columns of the table that another stored migration, not
 * contracted, has as old columns too. */
typedef struct shared_columns {
    char **names; /* the table's columns now */
    int n;
    int *shared;
} shared_columns;

static int mark_shared(dw_migration *h, const dw_table_use *u, void *arg)
{
    (void)h;
    shared_columns *s = arg;
    if (u->side != DW_SIDE_OLD || u->contracted)
        return DW_OK;
    for (int i = 0; i < s->n; i++)
        s->shared[i] |= named_in(s->names[i], u->cols, u->ncols);
    return DW_OK;
}

/* The old columns in place that another stored migration, not contracted,
 * has as old columns too: put back by its restore (or kept for it by a
 * contract). A restore leaves them as they are -- re-adding would fail,
 * copying over would undo its writes -- and its final check finds whether
 * they still hold what the backup does. Fills *names (n of them). */
static int shared_in_place(dw_migration *h, const char *table, char ***names,
                           int *n)
{
    *names = NULL;
    *n = 0;
    shared_columns s = {NULL, 0, NULL};
    int rc = others_intact(h, "restored");
    if (rc == DW_OK)
        rc = h->ops->table_columns(h, table, &s.names, &s.n);
    if (rc == DW_OK && s.n && !(s.shared = dw__calloc(sizeof(int) * (size_t)s.n)))
        rc = nomem(h);
    if (rc == DW_OK && s.n)
        rc = other_uses(h, table, mark_shared, &s);
    /* The shared names move to the front; the rest are freed. */
    int kept = 0;
    for (int i = 0; rc == DW_OK && i < s.n; i++) {
        char *name = s.names[i];
        s.names[i] = NULL;
        if (s.shared[i])
            s.names[kept++] = name;
        else
            dw__free(name);
    }
    if (rc == DW_OK) {
        *names = s.names;
        *n = kept;
    } else {
        free_names(s.names, s.n);
    }
    dw__free(s.shared);
    return rc;
}

/* Re-adds the old columns but those shared, copies the backup's values
 * into them, and checks all of them against the backup. */
static int restore_columns(dw_migration *h, const step_args *a)
{
    char **kept = NULL;
    int nkept = 0;
    int rc = shared_in_place(h, a->m->table, &kept, &nkept);
    if (rc == DW_OK)
        rc = h->ops->restore_columns(h, a->m, a->target, kept, nkept);
    free_names(kept, nkept);
    int64_t rows = 0, same = 0;
    if (rc == DW_OK)
        rc = h->ops->restored_columns_check(h, a->m, &rows, &same);
    if (rc == DW_OK && rows != same)
        rc = dw__error(h, DW_ERROR, DW_SIDE_NONE,
                       "the restored columns do not match the backup");
    return rc;
}

/* Whether the old model is there already, exactly as backed up: what a
 * contract that kept it for another migration leaves, until that one's
 * contract drops it (or what another's restore put back). Then the
 * restore has nothing to recreate or copy. */
static int in_place(dw_migration *h, const step_args *a, int *same)
{
    *same = 0;
    int present = 0;
    int rc = h->ops->model_present(h, a->m, &present);
    if (rc != DW_OK || !present)
        return rc;
    int64_t got = 0;
    char found[65];
    rc = h->ops->model_digest(h, a->m, &got, found);
    /* Rows that do not read as the backup's are not it: the restore goes
     * on, and refuses to replace them. */
    if (rc != DW_OK && rc != DW_ENOMEM && rc != DW_EBUSY) {
        dw__clear_error(h);
        return DW_OK;
    }
    *same = rc == DW_OK && got == a->rows && strcmp(found, a->hex) == 0;
    return rc;
}

static int restore_entry(dw_migration *h, const step_args *a, int stage,
                         int same)
{
    dw_buf d;
    dw_buf_init(&d);
    dw_buf_printf(&d, "from backup %s: %lld rows, sha256 %s", a->target,
                  (long long)a->rows, a->hex);
    if (same)
        dw_buf_puts(&d, "; the old model was in place, as backed up: "
                        "nothing copied");
    char *detail = dw_buf_take(&d);
    int rc = detail ? h->ops->history_add(h, "restore", stage,
                                          DW_STAGE_RAMPDOWN, 0, a->reason,
                                          detail)
                    : nomem(h);
    dw__free(detail);
    return rc;
}

/* In one write scope: the old model back, the contract flag cleared, and
 * the stage at RAMPDOWN (the old model is written again, and trusted). */
static int restore_in_scope(dw_migration *h, void *arg)
{
    const step_args *a = arg;
    int stage;
    int rc = dw__stage_current(h, &stage);
    if (rc != DW_OK)
        return rc;
    if (!h->contracted)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "%s was not contracted: its old model is in place",
                         h->spec.name);
    int same = 0;
    rc = in_place(h, a, &same);
    if (rc == DW_OK && !same)
        rc = a->m->whole_table ? restore_table(h, a) : restore_columns(h, a);
    if (rc == DW_OK)
        rc = h->ops->contracted_store(h, 0);
    if (rc == DW_OK)
        rc = h->ops->stage_write(h, DW_STAGE_RAMPDOWN);
    if (rc == DW_OK)
        rc = restore_entry(h, a, stage, same);
    if (rc == DW_OK) {
        h->contracted = 0;
        h->stage = DW_STAGE_RAMPDOWN;
        h->ops->state_remember(h);
    }
    return rc;
}

int dw_restore(dw_migration *h, const char *backup_path, const char *reason)
{
    if (!h)
        return DW_EMISUSE;
    int rc = check_call(h, backup_path, "dw_restore");
    if (rc != DW_OK)
        return rc;
    const char *target = backup_path;
    dw_old_model m;
    int64_t rows = 0;
    char hex[65] = "";
    rc = backup_check(h, target, &m, &rows, hex);
    if (rc == DW_OK)
        rc = h->ops->backup_attach(h, target);
    if (rc == DW_OK) {
        step_args a = {&m, target, reason, hex, rows};
        rc = dw__in_scope(h, 1, restore_in_scope, &a);
        h->ops->backup_detach(h);
    }
    dw__old_model_free(&m);
    return rc;
}
