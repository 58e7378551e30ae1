/* Checking a spec against the application's schema: every rule and every
 * message. The backend describes its catalog (dw_table_desc) and says
 * whether SQL from the spec prepares; what is acceptable is decided here. */
#include <string.h>

#include "internal.h"

/* Names compare as the schema compares them: ASCII letters in any case. */
static int fold(int c) { return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c; }

static int name_ncmp(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int d = fold((unsigned char)a[i]) - fold((unsigned char)b[i]);
        if (d || !a[i])
            return d;
    }
    return 0;
}

static int same_name(const char *a, const char *b)
{
    return name_ncmp(a, b, (size_t)-1) == 0;
}

static void free_names(char **names, int n)
{
    for (int i = 0; names && i < n; i++)
        dw__free(names[i]);
    dw__free(names);
}

void dw__table_desc_free(dw_table_desc *t)
{
    for (int i = 0; i < t->ncols; i++) {
        dw__free(t->cols[i].name);
        dw__free(t->cols[i].type);
        dw__free(t->cols[i].coll);
    }
    dw__free(t->cols);
    for (int i = 0; i < t->nuniques; i++) {
        free_names(t->uniques[i].cols, t->uniques[i].ncols);
        free_names(t->uniques[i].colls, t->uniques[i].ncols);
        dw__free(t->uniques[i].name);
    }
    dw__free(t->uniques);
    for (int i = 0; i < t->nfks; i++) {
        free_names(t->fks[i].cols, t->fks[i].ncols);
        free_names(t->fks[i].ref_cols, t->fks[i].ncols);
        dw__free(t->fks[i].ref_table);
    }
    dw__free(t->fks);
    dw__free(t->name);
    memset(t, 0, sizeof *t);
}

void dw__sql_check_free(dw_sql_check *c)
{
    dw__free(c->errmsg);
    memset(c, 0, sizeof *c);
}

/* ---- one side's table --------------------------------------------------------- */

static int reserved_name(dw_migration *h, int side, const char *table)
{
    const char *which = dw__side_word(side);
    const char *prefix = h->ops->reserved_prefix;
    if (prefix && name_ncmp(table, prefix, strlen(prefix)) == 0)
        return dw__error(h, DW_ESCHEMA, side,
                         "%s side: table \"%s\" has the reserved %s prefix",
                         which, table, prefix);
    for (const char *const *s = h->ops->state_tables; s && *s; s++)
        if (same_name(table, *s))
            return dw__error(h, DW_ESCHEMA, side,
                             "%s side: \"%s\" is one of libdualwrite's own "
                             "state tables",
                             which, table);
    return DW_OK;
}

static int load_table(dw_migration *h, int side, dw_table_desc *t)
{
    const char *table = h->spec.side[side].table;
    const char *which = dw__side_word(side);
    int rc = reserved_name(h, side, table);
    if (rc == DW_OK)
        rc = h->ops->describe_table(h, side, table, t);
    if (rc == DW_ENOTFOUND)
        return dw__error(h, DW_ESCHEMA, side, "%s side: no such table: \"%s\"",
                         which, table);
    if (rc == DW_OK && t->view)
        return dw__error(h, DW_ESCHEMA, side,
                         "%s side: \"%s\" is a view; a side must be a table",
                         which, table);
    return rc;
}

static int find_col(const dw_table_desc *t, const char *name)
{
    for (int i = 0; i < t->ncols; i++)
        if (same_name(t->cols[i].name, name))
            return i;
    return -1;
}

/* Replaces each name with the schema's spelling; fails on unknown names. */
static int canonical_names(dw_migration *h, int side, const dw_table_desc *t,
                           char **names, int n, const char *what)
{
    for (int i = 0; i < n; i++) {
        int c = find_col(t, names[i]);
        if (c < 0)
            return dw__error(h, DW_ESCHEMA, side,
                             "%s side: table \"%s\" has no %scolumn \"%s\"",
                             dw__side_word(side), t->name, what, names[i]);
        for (int j = 0; j < i; j++)
            if (same_name(names[j], t->cols[c].name))
                return dw__error(h, DW_EMISUSE, side,
                                 "%s side: column \"%s\" is named twice",
                                 dw__side_word(side), t->cols[c].name);
        char *copy = dw__strdup(t->cols[c].name);
        if (!copy)
            return dw__error(h, DW_ENOMEM, side, "out of memory");
        dw__free(names[i]);
        names[i] = copy;
    }
    return DW_OK;
}

/* Whether names a (na) and b (nb) are the same set; a NULL in b (an
 * expression) matches nothing. */
static int same_set(char *const *a, int na, char *const *b, int nb)
{
    if (na != nb)
        return 0;
    for (int i = 0; i < na; i++) {
        int found = 0;
        for (int j = 0; j < nb && !found; j++)
            found = b[j] && same_name(a[i], b[j]);
        if (!found)
            return 0;
    }
    return 1;
}

/* The key must be the primary key or a full (not partial) UNIQUE index, so
 * that it names one row and can be an upsert's conflict target. */
static int key_is_unique(const dw_side_def *d, const dw_table_desc *t)
{
    char *pk[64];
    int npk = 0, wide = 0;
    for (int i = 0; i < t->ncols; i++)
        if (t->cols[i].pk > 0 && !(wide = npk == 64))
            pk[npk++] = t->cols[i].name;
    /* A primary key wider than any key can be is never the key: comparing
     * its first 64 columns would take part of it for the whole. */
    if (npk > 0 && !wide && same_set(d->key, d->nkey, pk, npk))
        return 1;
    for (int i = 0; i < t->nuniques; i++)
        if (!t->uniques[i].partial &&
            same_set(d->key, d->nkey, t->uniques[i].cols, t->uniques[i].ncols))
            return 1;
    return 0;
}

/* Default columns: an SQL mapping's targets, else every non-key,
 * non-generated column. */
static int default_columns(dw_migration *h, int side, const dw_table_desc *t)
{
    dw_spec *s = &h->spec;
    dw_side_def *d = &s->side[side];
    int target_map = s->raw_map[side] != NULL;
    if (!target_map && s->same_table)
        return dw__error(h, DW_EMISUSE, side,
                         "%s side: when both sides are one table, list "
                         "each side's columns",
                         dw__side_word(side));
    int n = target_map ? s->nraw_map[side] : t->ncols;
    d->cols = dw__calloc(sizeof(char *) * (size_t)(n ? n : 1));
    if (!d->cols)
        return dw__error(h, DW_ENOMEM, side, "out of memory");
    d->ncols = 0;
    for (int i = 0; i < n; i++) {
        const char *name = target_map ? s->raw_map[side][i].column
                                      : t->cols[i].name;
        if (!target_map) {
            int is_key = 0;
            for (int k = 0; k < d->nkey; k++)
                is_key |= same_name(d->key[k], name);
            if (is_key || t->cols[i].generated)
                continue;
        }
        if (!(d->cols[d->ncols] = dw__strdup(name)))
            return dw__error(h, DW_ENOMEM, side, "out of memory");
        d->ncols++;
    }
    return DW_OK;
}

/* Model columns: not the key's, and not generated when a mapping writes
 * them. */
static int model_columns_ok(dw_migration *h, int side, const dw_table_desc *t)
{
    const dw_side_def *d = &h->spec.side[side];
    const char *which = dw__side_word(side);
    /* A side of the key alone (a link table) is compared by presence; in
     * one table the row is both sides', so that side would have nothing
     * of its own to write or compare. */
    if (d->ncols == 0 && h->spec.same_table)
        return dw__error(h, DW_EMISUSE, side,
                         "%s side: no model columns besides the key; both "
                         "sides are table \"%s\", which shares its rows "
                         "between them, so each side needs columns of its "
                         "own",
                         which, t->name);
    for (int i = 0; i < d->ncols; i++) {
        for (int k = 0; k < d->nkey; k++)
            if (same_name(d->cols[i], d->key[k]))
                return dw__error(h, DW_EMISUSE, side,
                                 "%s side: key column \"%s\" is also listed "
                                 "as a model column",
                                 which, d->cols[i]);
        int c = find_col(t, d->cols[i]);
        if (h->spec.map[side].present && t->cols[c].generated)
            return dw__error(h, DW_ESCHEMA, side,
                             "%s side: column \"%s\" is generated and cannot "
                             "be written by a mapping",
                             which, d->cols[i]);
    }
    return DW_OK;
}

static int check_side(dw_migration *h, int side, dw_table_desc *t)
{
    dw_side_def *d = &h->spec.side[side];
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
    if (!key_is_unique(d, t))
        return dw__error(h, DW_ESCHEMA, side,
                         "%s side: the key columns of table \"%s\" are not "
                         "unique: they must be its PRIMARY KEY or a UNIQUE "
                         "index (not partial)",
                         dw__side_word(side), t->name);
    if (d->ncols < 0 && (rc = default_columns(h, side, t)) != DW_OK)
        return rc;
    if ((rc = canonical_names(h, side, t, d->cols, d->ncols, "")) != DW_OK)
        return rc;
    return model_columns_ok(h, side, t);
}

/* The old side's table and columns as a stored spec names them: copies in
 * *table and *cols (*ncols), or *table NULL when the spec does not say
 * (not JSON, no "old" with a "table" string and a "columns" array of
 * strings). DW_OK or DW_ENOMEM. */
static int stored_old_names(const char *spec, char **table, char ***cols,
                            int *ncols)
{
    dw_json_doc *doc = NULL;
    dw_json_error err;
    int rc = dw_json_parse_bytes(spec, strlen(spec), 0, &doc, &err);
    const dw_json *old = dw_json_get(dw_json_root(doc), "old");
    const dw_json *t = dw_json_get(old, "table");
    const dw_json *c = dw_json_get(old, "columns");
    int ok = rc == DW_OK && !dw_json_nul(doc) && t &&
             t->type == DW_JSON_STRING && c && c->type == DW_JSON_ARRAY;
    for (const dw_json *e = ok ? c->first : NULL; e; e = e->next)
        ok = ok && e->type == DW_JSON_STRING;
    if (ok && !(*cols = dw__calloc(sizeof(char *) * (size_t)(c->count + 1))))
        rc = DW_ENOMEM;
    for (const dw_json *e = ok ? c->first : NULL; rc == DW_OK && e;
         e = e->next)
        if (!((*cols)[(*ncols)++] = dw__strdup(e->text)))
            rc = DW_ENOMEM;
    if (ok && rc == DW_OK && !(*table = dw__strdup(t->text)))
        rc = DW_ENOMEM;
    dw_json_free(doc);
    if (rc == DW_ENOMEM) {
        free_names(*cols, *ncols);
        *cols = NULL;
        *ncols = 0;
        return DW_ENOMEM;
    }
    return DW_OK;
}

/* After the contract the old table is gone: its side is taken from the
 * stored spec (names as the schema spelled them when it was defined). */
static int old_side_from_store(dw_migration *h)
{
    dw_side_def *d = &h->spec.side[DW_SIDE_OLD];
    char *spec = NULL, *table = NULL, **cols = NULL;
    int ncols = 0;
    int rc = h->ops->stored_spec(h, &spec);
    if (rc == DW_OK && spec &&
        stored_old_names(spec, &table, &cols, &ncols) != DW_OK)
        rc = dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    dw__free(spec);
    if (rc != DW_OK)
        return rc;
    if (!table)
        rc = dw__error(h, DW_ERROR, DW_SIDE_OLD,
                       "old side: the stored spec of \"%s\" cannot be read",
                       h->spec.name);
    else if (!same_name(table, d->table))
        rc = dw__error(h, DW_ESPEC, DW_SIDE_OLD,
                       "old side: migration \"%s\" was contracted with old "
                       "table \"%s\", not \"%s\"",
                       h->spec.name, table, d->table);
    if (rc != DW_OK) {
        dw__free(table);
        free_names(cols, ncols);
        return rc;
    }
    dw__free(d->table);
    d->table = table;
    if (d->ncols < 0) {
        /* Default columns: those stored. */
        d->cols = cols;
        d->ncols = ncols;
    } else {
        free_names(cols, ncols);
    }
    return DW_OK;
}

/* ---- keys ------------------------------------------------------------------------ */

/* Whether unique index u tells the side's keys apart: it is over exactly
 * the key columns (in any order) and not partial. */
static int is_key_index(const dw_side_def *d, const dw_unique_desc *u)
{
    return !u->partial && same_set(d->key, d->nkey, u->cols, u->ncols);
}

/* The first column of index u that it compares with a collation other
 * than the one the column declares; -1 when there is none. */
static int collation_differs(const dw_table_desc *t, const dw_unique_desc *u)
{
    for (int j = 0; j < u->ncols; j++) {
        int c = find_col(t, u->cols[j]);
        if (c >= 0 && t->cols[c].coll &&
            !same_name(t->cols[c].coll, u->colls[j]))
            return j;
    }
    return -1;
}

/* The unique index that tells the side's keys apart: of those over exactly
 * the key, one comparing each column as the column declares (other unique
 * indexes, a NOCASE one beside a BINARY primary key, are the schema's
 * business), else the first; NULL when the key is the rowid. */
static const dw_unique_desc *key_index(const dw_side_def *d,
                                       const dw_table_desc *t)
{
    const dw_unique_desc *found = NULL;
    for (int u = 0; u < t->nuniques; u++)
        if (is_key_index(d, &t->uniques[u])) {
            if (collation_differs(t, &t->uniques[u]) < 0)
                return &t->uniques[u];
            if (!found)
                found = &t->uniques[u];
        }
    return found;
}

/* How key column i of a described side compares: its class, and the
 * collation its ranges and ORDER BY use, the column's (which
 * key_collation_ok() checked its key index shares). A rowid key holds
 * integers alone: BINARY whatever it declares. */
static void key_traits(const dw_side_def *d, const dw_table_desc *t, int i,
                       char *cls, const char **coll)
{
    int c = find_col(t, d->key[i]);
    *cls = c < 0 ? DW_CLASS_NONE : t->cols[c].type_class;
    *coll = c >= 0 && t->cols[c].coll && key_index(d, t) ? t->cols[c].coll
                                                          : "BINARY";
}

/* Key ranges and their ORDER BY compare a key column with its own
 * collation, the unique index tells keys apart with its: where the two
 * differ, keys the index holds apart may compare equal in a range (a
 * NOCASE column under a BINARY index: 'a' and 'A'), so a chunk or batch
 * could end inside them and skip keys. */
static int key_collation_ok(dw_migration *h, int side,
                            const dw_table_desc *t)
{
    const dw_side_def *d = &h->spec.side[side];
    const dw_unique_desc *u = key_index(d, t);
    int j = u ? collation_differs(t, u) : -1;
    if (j < 0)
        return DW_OK;
    const dw_col_desc *c = &t->cols[find_col(t, u->cols[j])];
    return dw__error(h, DW_ESCHEMA, side,
                     "%s side: key column \"%s\" of table \"%s\" has "
                     "collation %s but %s%s%s, the unique index over the "
                     "key, compares it with %s; keys would not order as "
                     "they are told apart (declare the column COLLATE %s, "
                     "or make a unique index over the key with the "
                     "column's collation)",
                     dw__side_word(side), c->name, t->name, c->coll,
                     u->primary ? "the PRIMARY KEY (index \"" : "index \"",
                     u->name ? u->name : "?", u->primary ? "\")" : "\"",
                     u->colls[j], u->colls[j]);
}

static const char *class_word(char cls)
{
    return cls == DW_CLASS_NUMERIC ? "numeric"
           : cls == DW_CLASS_TEXT  ? "text"
                                   : "untyped";
}

/* The old side's key classes, and whether a key collation folds (routing
 * refuses such keys: one row, several key spellings). Key ranges and joins
 * are computed on each side with its own class and collation; with two
 * tables, keys that compare differently would page and join wrongly. */
static int key_classes(dw_migration *h, const dw_table_desc *t)
{
    const dw_side_def *o = &h->spec.side[DW_SIDE_OLD];
    const dw_side_def *n = &h->spec.side[DW_SIDE_NEW];
    int two = !h->spec.same_table;
    int rc = key_collation_ok(h, DW_SIDE_OLD, &t[DW_SIDE_OLD]);
    if (rc == DW_OK && two)
        rc = key_collation_ok(h, DW_SIDE_NEW, &t[DW_SIDE_NEW]);
    if (rc != DW_OK)
        return rc;
    for (int i = 0; i < o->nkey; i++) {
        char ca, cb;
        const char *la, *lb;
        key_traits(o, &t[DW_SIDE_OLD], i, &ca, &la);
        h->key_class[i] = ca;
        h->keys_fold |= !same_name(la, "BINARY");
        if (!two)
            continue;
        key_traits(n, &t[DW_SIDE_NEW], i, &cb, &lb);
        if (ca != cb || !same_name(la, lb))
            return dw__error(h, DW_ESCHEMA, DW_SIDE_NONE,
                             "key column %d compares differently on the two "
                             "sides: old \"%s\" is %s with collation %s, new "
                             "\"%s\" is %s with collation %s; keys must hold "
                             "and order the same values on both sides",
                             i + 1, o->key[i], class_word(ca), la, n->key[i],
                             class_word(cb), lb);
    }
    return DW_OK;
}

static int one_table_rules(dw_migration *h)
{
    const dw_side_def *o = &h->spec.side[DW_SIDE_OLD];
    const dw_side_def *n = &h->spec.side[DW_SIDE_NEW];
    if (!same_set(o->key, o->nkey, n->key, n->nkey))
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "both sides are table \"%s\" but name different key "
                         "columns",
                         o->table);
    for (int i = 0; i < o->ncols; i++)
        for (int j = 0; j < n->ncols; j++)
            if (same_name(o->cols[i], n->cols[j]))
                return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                                 "both sides are table \"%s\" and both list "
                                 "column \"%s\"; each column belongs to one "
                                 "side",
                                 o->table, o->cols[i]);
    return DW_OK;
}

/* ---- setup SQL --------------------------------------------------------------------- */

static int is_word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_';
}

/* Whether a prepared setup statement only changes rows. Prepared, its
 * first word is its kind; WITH leads only SELECT or the row changes, and
 * of those only a SELECT is read-only. */
static int setup_is_dml(const dw_sql_check *c, const char *text)
{
    static const char *const dml[] = {"INSERT", "REPLACE", "UPDATE",
                                      "DELETE", "WITH"};
    if (c->empty)
        return 1;
    for (size_t i = 0; i < sizeof dml / sizeof *dml; i++) {
        size_t n = strlen(dml[i]);
        if (name_ncmp(text, dml[i], n) == 0 && !is_word_char(text[n]))
            return !c->readonly;
    }
    return 0;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
           c == '\v';
}

static int setup_not_dml(dw_migration *h, int n, const char *text,
                         const char *tail)
{
    int len = (int)((tail ? tail : text + strlen(text)) - text);
    while (len > 0 && (is_space(text[len - 1]) || text[len - 1] == ';'))
        len--;
    return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                     "setup SQL statement %d (%.*s%s) is not an INSERT, "
                     "UPDATE or DELETE: the setup only changes rows, never "
                     "the schema, the connection or the transaction",
                     n, len > 80 ? 80 : len, text, len > 80 ? "..." : "");
}

/* Prepares each statement of the spec's setup SQL, so a typo shows at
 * open rather than at the first backfill, and refuses all but row
 * changes: it runs at stage moves, inside the library's transaction. */
static int check_setup(dw_migration *h)
{
    const char *sql = h->spec.setup_sql;
    for (int n = 1; sql && *sql; n++) {
        dw_sql_check c;
        const char *tail = NULL;
        int rc = h->ops->check_statement(h, sql, &c, &tail);
        if (rc == DW_OK && !c.prepared)
            rc = dw__error(h, DW_ESCHEMA, DW_SIDE_NONE, "setup SQL: %s",
                           c.errmsg);
        else if (rc == DW_OK && !setup_is_dml(&c, dw_sql_skip_space(sql)))
            rc = setup_not_dml(h, n, dw_sql_skip_space(sql), tail);
        dw__sql_check_free(&c);
        if (rc == DW_ENOMEM)
            return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
        if (rc != DW_OK)
            return rc;
        if (!tail || tail == sql)
            break;
        sql = tail;
    }
    return DW_OK;
}

/* ---- mappings ------------------------------------------------------------------------ */

static const char *map_word(int target)
{
    return target == DW_SIDE_NEW ? "up" : "down";
}

/* What the database said of one mapping expression, as a refusal. */
static int expr_refused(dw_migration *h, int target, const char *col,
                        const char *expr, const dw_sql_check *c)
{
    const char *which = map_word(target);
    if (!c->prepared)
        return dw__error(h, DW_ESCHEMA, target,
                         "%s mapping for column \"%s\": %s (in the "
                         "expression: %s)%s",
                         which, col, c->errmsg, expr,
                         c->aggregate ? "; a mapping is an expression over one "
                                        "row, without aggregate or window "
                                        "functions"
                                      : "");
    /* Every statement would bind a parameter to something else. */
    if (c->params)
        return dw__error(h, DW_ESCHEMA, target,
                         "%s mapping for column \"%s\": a parameter in the "
                         "expression (%s); a mapping is computed from the "
                         "row alone",
                         which, col, expr);
    if (c->trailing || c->empty || !c->readonly || c->columns != 1)
        return dw__error(h, DW_ESCHEMA, target,
                         "%s mapping for column \"%s\": not one read-only "
                         "expression: %s",
                         which, col, expr);
    return DW_OK;
}

/* One expression, put between parentheses in every row statement: it must
 * not close them, end the statement, or leave a quote or comment open to
 * swallow what follows; and it must prepare over one source row (unless
 * the contract dropped the source table). */
static int check_expr(dw_migration *h, int target, const char *col,
                      const char *expr)
{
    if (!dw_sql_balanced(expr))
        return dw__error(h, DW_ESCHEMA, target,
                         "%s mapping for column \"%s\": not one expression "
                         "(unbalanced parentheses, ';', or an unclosed quote "
                         "or comment): %s",
                         map_word(target), col, expr);
    int source = dw__other_side(target);
    if (h->contracted && source == DW_SIDE_OLD)
        return DW_OK;
    dw_sql_check c;
    int rc = h->ops->check_expr(h, h->spec.side[source].table, expr, &c);
    if (rc == DW_OK)
        rc = expr_refused(h, target, col, expr, &c);
    else
        rc = dw__error(h, DW_ENOMEM, target, "out of memory");
    dw__sql_check_free(&c);
    return rc;
}

/* The mapping's presence as the target needs it: none for a target of the
 * key alone (then an SQL mapping of no expressions), one for an up target
 * with columns. DW_MORE when expressions are to be aligned. */
static int mapping_present(dw_migration *h, int target)
{
    dw_spec *s = &h->spec;
    dw_side_def *d = &s->side[target];
    dw_map_def *map = &s->map[target];
    if (!map->present && d->ncols == 0) {
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
                         map_word(target), dw__side_word(target), d->cols[0],
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
    return s->raw_map[target] ? DW_MORE : DW_OK;
}

/* Names the first target column without an expression. */
static int expression_missing(dw_migration *h, int target)
{
    const dw_spec *s = &h->spec;
    const dw_side_def *d = &s->side[target];
    for (int i = 0; i < d->ncols; i++) {
        int found = 0;
        for (int j = 0; j < s->nraw_map[target] && !found; j++)
            found = same_name(s->raw_map[target][j].column, d->cols[i]);
        if (!found)
            return dw__error(h, DW_EMISUSE, target,
                             "%s mapping: no expression for %s column \"%s\"",
                             map_word(target), dw__side_word(target),
                             d->cols[i]);
    }
    return DW_OK;
}

/* Aligns SQL expressions with the target's columns and checks each. */
static int check_mapping(dw_migration *h, int target)
{
    dw_spec *s = &h->spec;
    dw_side_def *d = &s->side[target];
    int rc = mapping_present(h, target);
    if (rc != DW_MORE)
        return rc;
    if (s->nraw_map[target] != d->ncols &&
        (rc = expression_missing(h, target)) != DW_OK)
        return rc;
    char **exprs = dw__calloc(sizeof(char *) * (size_t)(d->ncols ? d->ncols : 1));
    if (!(s->map[target].exprs = exprs))
        return dw__error(h, DW_ENOMEM, target, "out of memory");
    for (int j = 0; j < s->nraw_map[target]; j++) {
        const dw_column_map *m = &s->raw_map[target][j];
        int i;
        for (i = 0; i < d->ncols; i++)
            if (same_name(m->column, d->cols[i]))
                break;
        if (i == d->ncols)
            return dw__error(h, DW_ESCHEMA, target,
                             "%s mapping: \"%s\" is not a column of the %s "
                             "side (table \"%s\")",
                             map_word(target), m->column,
                             dw__side_word(target), d->table);
        if (exprs[i])
            return dw__error(h, DW_EMISUSE, target,
                             "%s mapping: column \"%s\" has two expressions",
                             map_word(target), d->cols[i]);
        if (!(exprs[i] = dw__strdup(m->expr)))
            return dw__error(h, DW_ENOMEM, target, "out of memory");
        if ((rc = check_expr(h, target, d->cols[i], m->expr)) != DW_OK)
            return rc;
    }
    return DW_OK;
}

/* ---- the whole check ------------------------------------------------------------------- */

/* What an earlier validation on this handle derived from the schema goes:
 * dw_open() validates again in its write attempt, against the schema it
 * then commits with. */
static void unvalidate(dw_migration *h)
{
    dw__spec_unvalidate(&h->spec);
    h->ops->rows_forget(h);
    memset(h->key_class, 0, sizeof h->key_class);
    h->keys_fold = 0;
}

/* Both sides' tables, then what needs them both. */
static int check_tables(dw_migration *h, dw_table_desc t[3])
{
    int rc = h->contracted ? old_side_from_store(h)
                           : check_side(h, DW_SIDE_OLD, &t[DW_SIDE_OLD]);
    if (rc == DW_OK)
        rc = check_side(h, DW_SIDE_NEW, &t[DW_SIDE_NEW]);
    if (rc == DW_OK && !h->contracted)
        rc = key_classes(h, t);
    if (rc == DW_OK && !h->contracted)
        rc = check_setup(h);
    if (rc == DW_OK && h->spec.same_table)
        rc = one_table_rules(h);
    return rc;
}

int dw__validate(dw_migration *h)
{
    dw_table_desc t[3];
    memset(t, 0, sizeof t);
    unvalidate(h);
    int rc = check_tables(h, t);
    if (rc == DW_OK)
        rc = check_mapping(h, DW_SIDE_NEW);
    if (rc == DW_OK)
        rc = check_mapping(h, DW_SIDE_OLD);
    if (rc == DW_OK)
        rc = h->ops->rows_prepare(h);
    dw__table_desc_free(&t[DW_SIDE_OLD]);
    dw__table_desc_free(&t[DW_SIDE_NEW]);
    return rc;
}
