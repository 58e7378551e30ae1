/* The migration spec: checks the options, keeps owned copies, and writes the
 * canonical text whose digest tells one spec from another. */
#include <string.h>

#include "internal.h"

#define NAME_MAX_BYTES 200

static char **copy_names(const char *const *names, int n, int *ok)
{
    if (n == 0)
        return NULL;
    char **out = dw__calloc(sizeof(char *) * (size_t)n);
    if (!out) {
        *ok = DW_ENOMEM;
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        out[i] = dw__strdup(names[i]);
        if (!out[i]) {
            *ok = DW_ENOMEM;
            for (int j = 0; j < i; j++)
                dw__free(out[j]);
            dw__free(out);
            return NULL;
        }
    }
    return out;
}

static void free_names(char **names, int n)
{
    if (!names)
        return;
    for (int i = 0; i < n; i++)
        dw__free(names[i]);
    dw__free(names);
}

static int check_names(dw_migration *h, const char *what,
                       const char *const *names, int n)
{
    if (n < 0)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE, "%s: count %d is negative",
                         what, n);
    if (n > 0 && !names)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "%s: count is %d but the list is NULL", what, n);
    for (int i = 0; i < n; i++)
        if (!names[i] || !names[i][0])
            return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                             "%s: entry %d is NULL or empty", what, i);
    return DW_OK;
}

static int check_side(dw_migration *h, const char *which, const dw_side_spec *s)
{
    if (!s->table || !s->table[0])
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "%s side: no table named", which);
    if (s->nkey_columns <= 0 || !s->key_columns)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "%s side: no key columns named", which);
    int rc = check_names(h, which, s->key_columns, s->nkey_columns);
    if (rc == DW_OK)
        rc = check_names(h, which, s->columns, s->columns ? s->ncolumns : 0);
    if (rc == DW_OK && !s->columns && s->ncolumns != 0)
        rc = dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                       "%s side: ncolumns is set but columns is NULL", which);
    return rc;
}

/* Whether a mapping is required depends on the target's columns, which
 * only validation knows: a target of the key alone needs none. */
static int check_mapping(dw_migration *h, const char *which,
                         const dw_column_map *map, int n, dw_map_fn fn)
{
    if (map && fn)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "%s mapping: give SQL expressions or a callback, "
                         "not both",
                         which);
    if (!map && n != 0)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "%s mapping: a count without expressions", which);
    if (map && n <= 0 && map != dw__no_expressions)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "%s mapping: no expressions", which);
    for (int i = 0; map && i < n; i++) {
        if (!map[i].column || !map[i].column[0] || !map[i].expr ||
            !map[i].expr[0])
            return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                             "%s mapping: entry %d has no column or no "
                             "expression",
                             which, i);
    }
    return DW_OK;
}

static int copy_side(dw_side_def *d, const dw_side_spec *s)
{
    int rc = DW_OK;
    d->table = dw__strdup(s->table);
    if (!d->table)
        return DW_ENOMEM;
    d->nkey = s->nkey_columns;
    d->key = copy_names(s->key_columns, s->nkey_columns, &rc);
    if (rc != DW_OK)
        return rc;
    if (s->columns) {
        d->ncols = s->ncolumns;
        d->cols = copy_names(s->columns, s->ncolumns, &rc);
    } else {
        d->ncols = -1; /* filled in by validation */
        d->cols_default = 1;
    }
    return rc;
}

const dw_column_map dw__no_expressions[1] = {{NULL, NULL}};

static int copy_raw_map(dw_spec *s, int target, const dw_column_map *m, int n)
{
    if (!m || m == dw__no_expressions)
        return DW_OK;
    s->raw_map[target] = dw__calloc(sizeof(dw_column_map) * (size_t)n);
    if (!s->raw_map[target])
        return DW_ENOMEM;
    s->nraw_map[target] = n;
    for (int i = 0; i < n; i++) {
        s->raw_map[target][i].column = dw__strdup(m[i].column);
        s->raw_map[target][i].expr = dw__strdup(m[i].expr);
        if (!s->raw_map[target][i].column || !s->raw_map[target][i].expr)
            return DW_ENOMEM;
    }
    return DW_OK;
}

/* No expressions given is no mapping, remembered for validation. */
static void set_map(dw_map_def *m, const dw_column_map *map, dw_map_fn fn)
{
    m->fn = fn;
    m->none_given = map == dw__no_expressions;
    m->present = (map && !m->none_given) || fn;
}

int dw__spec_copy(dw_migration *h, const dw_options *o)
{
    int rc;
    if (o->version != 1 && o->version != DW_OPTIONS_VERSION)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "options version %u is not 1 or %d (use "
                         "DW_OPTIONS_INIT)",
                         o->version, DW_OPTIONS_VERSION);
    const unsigned int known = DW_OPEN_REDEFINE | DW_OPEN_TEST_MODE |
                               DW_OPEN_REPAIR_QUEUE | DW_OPEN_LOG_STDERR |
                               DW_OPEN_LOG_RAW_VALUES | DW_OPEN_NO_LOG_TABLE;
    if (o->flags & ~known)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "unknown flags 0x%x in the options",
                         o->flags & ~known);
    if (!o->name || !o->name[0])
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "the migration needs a name");
    if (strlen(o->name) > NAME_MAX_BYTES)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "migration name longer than %d bytes", NAME_MAX_BYTES);
    if (!dw_utf8_valid(o->name, strlen(o->name)))
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "the migration name is not valid UTF-8");
    if ((rc = check_side(h, "old", &o->old_side)) != DW_OK ||
        (rc = check_side(h, "new", &o->new_side)) != DW_OK ||
        (rc = check_mapping(h, "up", o->up, o->nup, o->up_fn)) != DW_OK ||
        (rc = check_mapping(h, "down", o->down, o->ndown, o->down_fn)) !=
            DW_OK)
        return rc;
    if (o->old_side.nkey_columns != o->new_side.nkey_columns)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "the old side has %d key columns and the new side %d; "
                         "they must correspond one to one",
                         o->old_side.nkey_columns, o->new_side.nkey_columns);
    if ((rc = check_names(h, "redact_columns", o->redact_columns,
                          o->nredact_columns)) != DW_OK)
        return rc;
    if (o->log_cap < 0)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE, "log_cap is negative");

    dw_spec *s = &h->spec;
    s->name = dw__strdup(o->name);
    if (!s->name)
        goto nomem;
    if (copy_side(&s->side[DW_SIDE_OLD], &o->old_side) != DW_OK ||
        copy_side(&s->side[DW_SIDE_NEW], &o->new_side) != DW_OK ||
        copy_raw_map(s, DW_SIDE_NEW, o->up, o->nup) != DW_OK ||
        copy_raw_map(s, DW_SIDE_OLD, o->down, o->ndown) != DW_OK)
        goto nomem;
    set_map(&s->map[DW_SIDE_NEW], o->up, o->up_fn);
    set_map(&s->map[DW_SIDE_OLD], o->down, o->down_fn);
    s->map_payload = o->map_payload;
    if (o->map_version && !(s->map_version = dw__strdup(o->map_version)))
        goto nomem;
    s->same_table = dw__stricmp(o->old_side.table, o->new_side.table) == 0;
    /* Version 1 structs end before setup_sql. Trailing white space is
     * not part of it: "...;\n" and "...;" are one spec. */
    if (o->version >= 2 && o->setup_sql && dw__setup_len(o->setup_sql) &&
        !(s->setup_sql = dw__strndup(o->setup_sql,
                                     dw__setup_len(o->setup_sql))))
        goto nomem;
    for (int i = 0; o->redact_columns && i < o->nredact_columns; i++)
        if (dw_name_set_add(&h->redact, o->redact_columns[i]) != DW_OK)
            goto nomem;
    return DW_OK;
nomem:
    return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
}

void dw__spec_free(dw_spec *s)
{
    dw__free(s->name);
    for (int side = DW_SIDE_OLD; side <= DW_SIDE_NEW; side++) {
        dw_side_def *d = &s->side[side];
        dw__free(d->table);
        free_names(d->key, d->nkey);
        if (s->map[side].exprs)
            free_names(s->map[side].exprs, d->ncols);
        free_names(d->cols, d->ncols);
        for (int i = 0; i < s->nraw_map[side]; i++) {
            dw__free((char *)s->raw_map[side][i].column);
            dw__free((char *)s->raw_map[side][i].expr);
        }
        dw__free(s->raw_map[side]);
    }
    dw__free(s->map_version);
    dw__free(s->setup_sql);
    memset(s, 0, sizeof *s);
}

void dw__spec_unvalidate(dw_spec *s)
{
    for (int side = DW_SIDE_OLD; side <= DW_SIDE_NEW; side++) {
        dw_side_def *d = &s->side[side];
        /* The aligned expressions first: their count is the columns'. */
        if (s->map[side].exprs)
            free_names(s->map[side].exprs, d->ncols);
        s->map[side].exprs = NULL;
        if (s->map[side].implied)
            s->map[side].present = s->map[side].implied = 0;
        if (d->cols_default) {
            free_names(d->cols, d->ncols);
            d->cols = NULL;
            d->ncols = -1;
        }
    }
}

static void json_names(dw_buf *b, char **names, int n)
{
    dw_buf_add(b, "[", 1);
    for (int i = 0; i < n; i++) {
        if (i)
            dw_buf_add(b, ",", 1);
        dw_buf_json(b, names[i], strlen(names[i]));
    }
    dw_buf_add(b, "]", 1);
}

static void json_side(dw_buf *b, const dw_side_def *d)
{
    dw_buf_puts(b, "{\"table\":");
    dw_buf_json(b, d->table, strlen(d->table));
    dw_buf_puts(b, ",\"key\":");
    json_names(b, d->key, d->nkey);
    dw_buf_puts(b, ",\"columns\":");
    json_names(b, d->cols, d->ncols);
    dw_buf_puts(b, "}");
}

static void json_map(dw_buf *b, const dw_spec *s, int target)
{
    const dw_map_def *m = &s->map[target];
    if (!m->present) {
        dw_buf_puts(b, "null");
    } else if (m->exprs) {
        dw_buf_puts(b, "{\"sql\":{");
        const dw_side_def *d = &s->side[target];
        for (int i = 0; i < d->ncols; i++) {
            if (i)
                dw_buf_add(b, ",", 1);
            dw_buf_json(b, d->cols[i], strlen(d->cols[i]));
            dw_buf_add(b, ":", 1);
            dw_buf_json(b, m->exprs[i], strlen(m->exprs[i]));
        }
        dw_buf_puts(b, "}}");
    } else {
        dw_buf_puts(b, "{\"callback\":");
        if (s->map_version)
            dw_buf_json(b, s->map_version, strlen(s->map_version));
        else
            dw_buf_puts(b, "null");
        dw_buf_puts(b, "}");
    }
}

size_t dw__setup_len(const char *sql)
{
    size_t n = strlen(sql);
    while (n > 0 && strchr(" \t\n\r\f\v", sql[n - 1]))
        n--;
    return n;
}

char *dw__spec_text(const dw_spec *s)
{
    return dw__spec_text_with_setup(s, s->setup_sql);
}

void dw__text_digest(const char *text, char hex[65])
{
    dw_sha256 sha;
    unsigned char d[32];
    dw_sha256_init(&sha);
    dw_sha256_update(&sha, text, strlen(text));
    dw_sha256_final(&sha, d);
    dw_hex(hex, d, 32);
}

char *dw__spec_text_with_setup(const dw_spec *s, const char *setup)
{
    dw_buf b;
    dw_buf_init(&b);
    dw_buf_puts(&b, "{\"format\":1,\"old\":");
    json_side(&b, &s->side[DW_SIDE_OLD]);
    dw_buf_puts(&b, ",\"new\":");
    json_side(&b, &s->side[DW_SIDE_NEW]);
    dw_buf_puts(&b, ",\"up\":");
    json_map(&b, s, DW_SIDE_NEW);
    dw_buf_puts(&b, ",\"down\":");
    json_map(&b, s, DW_SIDE_OLD);
    /* Only when present, so specs without it keep their 0.1 digests. */
    if (setup) {
        dw_buf_puts(&b, ",\"setup\":");
        dw_buf_json(&b, setup, strlen(setup));
    }
    dw_buf_puts(&b, "}");
    return dw_buf_take(&b);
}
