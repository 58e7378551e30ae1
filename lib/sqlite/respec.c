/* The SQLite backend's look at a stored spec whose digest is not this
 * handle's: the same spec but for white space a 0.3 setup kept, or a
 * different one, refused with a message saying what differs. */
#include <string.h>

#include "backend.h"

/* The stored spec's text, and its setup SQL as stored (NULL when it has
 * none, or the text is not JSON). */
static int read_stored_spec(dw_migration *h, char **text, char **setup)
{
    *text = *setup = NULL;
    sqlite3_stmt *st = NULL;
    int rc = dw__prepare(h,
                         "SELECT spec, CASE WHEN json_valid(spec) THEN "
                         "json_extract(spec, '$.setup') END FROM "
                         "dw_migrations WHERE id = ?1",
                         &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, h->id);
        rc = sqlite3_step(st);
    }
    if (rc == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        const char *s = (const char *)sqlite3_column_text(st, 1);
        *text = dw__strdup(t ? t : "");
        *setup = s ? dw__strdup(s) : NULL;
        rc = !*text || (s && !*setup) ? SQLITE_NOMEM : SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_OK || rc == SQLITE_DONE)
        return DW_OK;
    dw__free(*text);
    dw__free(*setup);
    *text = *setup = NULL;
    return dw__sqlite_error(h, rc, DW_SIDE_NONE, "reading the stored spec");
}

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

/* What differs between two spec texts, in words ("the old model's
 * columns, the up mapping of column label"); NULL when it cannot tell. */
static char *spec_difference(dw_migration *h, const char *a, const char *b)
{
    sqlite3_stmt *st = NULL;
    if (dw__prepare(h,
                    "WITH a AS (SELECT fullkey, type, atom FROM json_tree(?1) "
                    "WHERE type NOT IN ('object', 'array')), "
                    "b AS (SELECT fullkey, type, atom FROM json_tree(?2) "
                    "WHERE type NOT IN ('object', 'array')), "
                    "d AS (SELECT fullkey FROM (SELECT * FROM a EXCEPT "
                    "SELECT * FROM b) UNION SELECT fullkey FROM (SELECT * "
                    "FROM b EXCEPT SELECT * FROM a)) "
                    "SELECT fullkey FROM d ORDER BY CASE substr(fullkey, 1, "
                    "4) WHEN '$.ol' THEN 1 WHEN '$.ne' THEN 2 WHEN '$.up' "
                    "THEN 3 WHEN '$.do' THEN 4 ELSE 5 END, fullkey",
                    &st, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return NULL;
    }
    sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
    dw_buf out, one, last;
    dw_buf_init(&out);
    dw_buf_init(&one);
    dw_buf_init(&last);
    int shown = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *path = (const char *)sqlite3_column_text(st, 0);
        dw_buf_reset(&one);
        describe_path(&one, path ? path : "?");
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
    sqlite3_finalize(st);
    dw_buf_free(&one);
    dw_buf_free(&last);
    if (out.len)
        return dw_buf_take(&out);
    dw_buf_free(&out);
    return NULL;
}

/* The stored spec differs from this one by its digest: *same when only by
 * the trailing white space of a setup stored before it was trimmed (the
 * stored digest is then this handle's); else refused without `redefine`,
 * saying what differs. */
int dw__sqlite_compare_stored(dw_migration *h, const char *digest,
                              const char *spec_text, int redefine, int *same)
{
    char *text = NULL, *setup = NULL;
    *same = 0;
    int rc = read_stored_spec(h, &text, &setup);
    if (rc == DW_OK && setup)
        rc = same_but_setup_space(h, digest, setup, same);
    if (rc == DW_OK && *same)
        memcpy(h->digest, digest, sizeof h->digest);
    if (rc == DW_OK && !*same && !redefine) {
        char *diff = text ? spec_difference(h, text, spec_text) : NULL;
        rc = dw__error(h, DW_ESPEC, DW_SIDE_NONE,
                       "migration \"%s\" is stored with a different spec "
                       "(stored digest %.12s, this spec %.12s)%s%s; %s",
                       h->spec.name, digest, h->digest,
                       diff ? ": they differ in " : "", diff ? diff : "",
                       dw__unbound(h, DW_SIDE_NONE)
                           ? "its mappings are C callbacks: the "
                             "application that has them redefines it, "
                             "with dw_open()"
                           : "open with DW_OPEN_REDEFINE to replace it");
        dw__free(diff);
    }
    dw__free(text);
    dw__free(setup);
    return rc;
}
