/* A stored spec whose digest is not this handle's: the same spec but for
 * white space a 0.3 setup kept, or a different one, refused with a message
 * saying what differs. Both specs are read with the core's JSON parser. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Specs stored before setup SQL lost its trailing white space (0.3) keep
 * it in their text and digest: such a spec is this one when, with its
 * setup as stored, this spec has the stored digest. */
static int same_but_setup_space(dw_migration *h, const char *digest,
                                const char *setup, int *same)
{
    const char *ours = h->spec.setup_sql ? h->spec.setup_sql : "";
    size_t n = dw__setup_len(setup);
    *same = 0;
    if (!setup[n] || n != strlen(ours) || memcmp(setup, ours, n) != 0)
        return DW_OK;
    char *text = dw__spec_text_with_setup(&h->spec, setup);
    if (!text)
        return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    char hex[65];
    dw__text_digest(text, hex);
    dw__free(text);
    *same = strcmp(hex, digest) == 0;
    return DW_OK;
}

/* A spec path in words: "$.up.sql.label" is the up mapping of column
 * label, "$.old.columns[2]" the old model's columns. */
static void describe_path(dw_buf *b, const char *path)
{
    static const struct {
        const char *prefix, *words;
    } parts[] = {
        {"$.old.table", "the old table"},
        {"$.old.key", "the old key columns"},
        {"$.old.columns", "the old model's columns"},
        {"$.new.table", "the new table"},
        {"$.new.key", "the new key columns"},
        {"$.new.columns", "the new model's columns"},
        {"$.up.sql.", "the up mapping of column "},
        {"$.down.sql.", "the down mapping of column "},
        {"$.up.callback", "the up callback's map_version"},
        {"$.down.callback", "the down callback's map_version"},
        {"$.up", "the up mapping"},
        {"$.down", "the down mapping"},
        {"$.setup", "the setup SQL"},
    };
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        size_t n = strlen(parts[i].prefix);
        if (strncmp(path, parts[i].prefix, n) == 0) {
            dw_buf_puts(b, parts[i].words);
            if (parts[i].prefix[n - 1] == '.')
                dw_buf_puts(b, path + n);
            return;
        }
    }
    dw_buf_puts(b, path + (path[0] == '$' && path[1] == '.' ? 2 : 0));
}

/* One leaf of a spec (a value that is no array or object) and its path,
 * spelled as SQLite's JSON functions spell a full key: $.up.sql.label,
 * $.old.columns[2], a name that is not a bare word in double quotes. */
typedef struct leaf {
    char *path;
    const dw_json *v;
} leaf;

typedef struct leaves {
    leaf *v;
    int n, cap;
    int oom;
} leaves;

static void leaf_add(leaves *l, dw_buf *path, const dw_json *v)
{
    if (l->oom || path->oom) {
        l->oom = 1;
        return;
    }
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 32;
        leaf *grown = dw__realloc(l->v, sizeof *grown * (size_t)cap);
        if (!grown) {
            l->oom = 1;
            return;
        }
        l->v = grown;
        l->cap = cap;
    }
    char *copy = dw__strdup(path->p);
    if (!copy) {
        l->oom = 1;
        return;
    }
    l->v[l->n++] = (leaf){copy, v};
}

static void leaves_free(leaves *l)
{
    for (int i = 0; i < l->n; i++)
        dw__free(l->v[i].path);
    dw__free(l->v);
}

static int bare_word(const char *s)
{
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
        return 0;
    for (s++; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9')))
            return 0;
    return 1;
}

static void collect(leaves *l, dw_buf *path, const dw_json *v)
{
    if (v->type != DW_JSON_ARRAY && v->type != DW_JSON_OBJECT) {
        leaf_add(l, path, v);
        return;
    }
    size_t len = path->len;
    int i = 0;
    for (const dw_json *e = v->first; e; e = e->next, i++) {
        if (v->type == DW_JSON_ARRAY)
            dw_buf_printf(path, "[%d]", i);
        else if (bare_word(e->name))
            dw_buf_printf(path, ".%s", e->name);
        else
            dw_buf_printf(path, ".\"%s\"", e->name);
        collect(l, path, e);
        path->len = len;
        if (path->p)
            path->p[len] = '\0';
    }
}

/* The leaves of a spec text, pointing into *doc (the caller frees it);
 * l->oom when they could not all be had. */
static void spec_leaves(leaves *l, const char *text, dw_json_doc **doc)
{
    dw_json_error err;
    if (dw_json_parse(text, strlen(text), 0, doc, &err) != DW_OK) {
        l->oom = err.code == DW_ENOMEM;
        return;
    }
    dw_buf path;
    dw_buf_init(&path);
    dw_buf_puts(&path, "$");
    collect(l, &path, dw_json_root(*doc));
    dw_buf_free(&path);
}

static int same_leaf(const dw_json *a, const dw_json *b)
{
    return a->type == b->type && a->len == b->len &&
           (!a->text || memcmp(a->text, b->text, a->len) == 0);
}

/* Whether `of` has the leaf (same path, same type and value). */
static int has_leaf(const leaves *of, const leaf *x)
{
    for (int i = 0; i < of->n; i++)
        if (strcmp(of->v[i].path, x->path) == 0 && same_leaf(of->v[i].v, x->v))
            return 1;
    return 0;
}

/* Sides first, then mappings, then the rest; by path within each. */
static int part_rank(const char *path)
{
    static const char *const parts[] = {"$.ol", "$.ne", "$.up", "$.do"};
    for (int i = 0; i < 4; i++)
        if (strncmp(path, parts[i], 4) == 0)
            return i;
    return 4;
}

static int path_order(const void *x, const void *y)
{
    const char *a = *(const char *const *)x, *b = *(const char *const *)y;
    int ra = part_rank(a), rb = part_rank(b);
    return ra != rb ? ra - rb : strcmp(a, b);
}

/* The paths of leaves in one text and not (the same) in the other,
 * sorted, each once; NULL-free array of *n entries pointing into a and b. */
static const char **differing_paths(const leaves *a, const leaves *b, int *n)
{
    const char **paths = dw__malloc(sizeof *paths * (size_t)(a->n + b->n));
    *n = 0;
    if (!paths)
        return NULL;
    for (int i = 0; i < a->n; i++)
        if (!has_leaf(b, &a->v[i]))
            paths[(*n)++] = a->v[i].path;
    for (int i = 0; i < b->n; i++)
        if (!has_leaf(a, &b->v[i]))
            paths[(*n)++] = b->v[i].path;
    qsort(paths, (size_t)*n, sizeof *paths, path_order);
    int kept = 0;
    for (int i = 0; i < *n; i++)
        if (!kept || strcmp(paths[kept - 1], paths[i]) != 0)
            paths[kept++] = paths[i];
    *n = kept;
    return paths;
}

/* The parts the paths name, in words, each once ("the old model's
 * columns, the up mapping of column label"), at most four. */
static char *describe_paths(const char **paths, int n)
{
    dw_buf out, one, last;
    dw_buf_init(&out);
    dw_buf_init(&one);
    dw_buf_init(&last);
    int shown = 0;
    for (int i = 0; i < n; i++) {
        dw_buf_reset(&one);
        describe_path(&one, paths[i]);
        /* Once per part: a mapping added names none of its columns. */
        if (one.oom || (last.len && strncmp(one.p, last.p, last.len) == 0 &&
                        (one.p[last.len] == '\0' || one.p[last.len] == ' ')))
            continue;
        dw_buf_reset(&last);
        dw_buf_puts(&last, one.p);
        if (shown++ == 4) {
            dw_buf_puts(&out, ", and more");
            break;
        }
        dw_buf_printf(&out, "%s%s", shown > 1 ? ", " : "", one.p);
    }
    dw_buf_free(&one);
    dw_buf_free(&last);
    if (out.len)
        return dw_buf_take(&out);
    dw_buf_free(&out);
    return NULL;
}

/* What differs between two spec texts, in words; NULL when it cannot
 * tell. */
static char *spec_difference(const char *a, const char *b)
{
    leaves la, lb;
    memset(&la, 0, sizeof la);
    memset(&lb, 0, sizeof lb);
    dw_json_doc *da = NULL, *db = NULL;
    spec_leaves(&la, a, &da);
    spec_leaves(&lb, b, &db);
    char *diff = NULL;
    if (!la.oom && !lb.oom) {
        int n = 0;
        const char **paths = differing_paths(&la, &lb, &n);
        diff = paths ? describe_paths(paths, n) : NULL;
        dw__free((void *)paths);
    }
    leaves_free(&la);
    leaves_free(&lb);
    dw_json_free(da);
    dw_json_free(db);
    return diff;
}

/* The setup SQL of a stored spec text (pointing into *doc, which the
 * caller frees), or NULL when it has none or is not JSON; DW_ENOMEM when
 * that could not be told. */
static int stored_setup(const char *text, dw_json_doc **doc,
                        const char **setup)
{
    dw_json_error err;
    *setup = NULL;
    int rc = dw_json_parse(text, strlen(text), 0, doc, &err);
    if (rc == DW_ENOMEM)
        return rc;
    const dw_json *s = dw_json_get(dw_json_root(*doc), "setup");
    if (s && s->type == DW_JSON_STRING)
        *setup = s->text;
    return DW_OK;
}

int dw__compare_stored(dw_migration *h, const char *digest,
                       const char *stored_text, const char *spec_text,
                       int redefine, int *same)
{
    dw_json_doc *doc = NULL;
    const char *setup = NULL;
    *same = 0;
    int rc = stored_setup(stored_text, &doc, &setup);
    if (rc != DW_OK)
        rc = dw__error(h, rc, DW_SIDE_NONE, "out of memory");
    if (rc == DW_OK && setup)
        rc = same_but_setup_space(h, digest, setup, same);
    dw_json_free(doc);
    if (rc == DW_OK && *same)
        memcpy(h->digest, digest, sizeof h->digest);
    if (rc == DW_OK && !*same && !redefine) {
        char *diff = spec_difference(stored_text, spec_text);
        rc = dw__error(h, DW_ESPEC, DW_SIDE_NONE,
                       "migration \"%s\" is stored with a different spec "
                       "(stored digest %.12s, this spec %.12s)%s%s; %s%s%s",
                       h->spec.name, digest, h->digest,
                       diff ? ": they differ in " : "", diff ? diff : "",
                       dw__unbound(h, DW_SIDE_NONE)
                           ? "its mappings are C callbacks: the "
                             "application that has them redefines it, "
                             "with dw_"
                           : "open with DW_OPEN_REDEFINE to replace it",
                       dw__unbound(h, DW_SIDE_NONE) ? h->ops->name : "",
                       dw__unbound(h, DW_SIDE_NONE) ? "_open()" : "");
        dw__free(diff);
    }
    return rc;
}
