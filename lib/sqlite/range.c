/* The SQLite backend's work over key ranges: paging through a side in key
 * order, set-based backfill batches and the join that verification
 * streams. Bounds arrive as typed key values and are bound as they are --
 * never through a function in the statement, which would make SQLite keep
 * a statement journal for every batch that writes. */
#include <string.h>

#include "backend.h"

/* "alias"."k" or ("alias"."k1", "alias"."k2"); alias may be NULL. */
static void add_key_tuple(dw_buf *b, const dw_side_def *d, const char *alias)
{
    if (d->nkey > 1)
        dw_buf_puts(b, "(");
    dw_buf_ident_list(b, alias, d->key, d->nkey, 1);
    if (d->nkey > 1)
        dw_buf_puts(b, ")");
}

/* Parameters of a range statement: ?1 the offset (paging), then the low
 * bound's key values, then the high bound's. */
#define P_OFFSET 1
#define P_LO 2
#define P_HI(nkey) (P_LO + (nkey))

/* The parameters ?first.. of one bound, as a tuple. */
static void add_key_param(dw_buf *b, int nkey, int first)
{
    if (nkey > 1)
        dw_buf_puts(b, "(");
    for (int i = 0; i < nkey; i++)
        dw_buf_printf(b, "%s?%d", i ? ", " : "", first + i);
    if (nkey > 1)
        dw_buf_puts(b, ")");
}

/* " WHERE <bounds>" (always a WHERE: an upsert's SELECT needs one). */
static void add_range(dw_buf *b, const dw_side_def *d, const char *alias,
                      int bounds)
{
    dw_buf_puts(b, " WHERE 1");
    if (bounds & RB_LO) {
        dw_buf_puts(b, " AND ");
        add_key_tuple(b, d, alias);
        dw_buf_puts(b, bounds & RB_LO_INCL ? " >= " : " > ");
        add_key_param(b, d->nkey, P_LO);
    }
    if (bounds & RB_HI) {
        dw_buf_puts(b, " AND ");
        add_key_tuple(b, d, alias);
        dw_buf_puts(b, " <= ");
        add_key_param(b, d->nkey, P_HI(d->nkey));
    }
}

static void add_order(dw_buf *b, const dw_side_def *d, const char *alias,
                      const char *dir)
{
    dw_buf_puts(b, " ORDER BY ");
    for (int i = 0; i < d->nkey; i++) {
        dw_buf_puts(b, i ? ", " : "");
        if (alias) {
            dw_buf_ident(b, alias);
            dw_buf_puts(b, ".");
        }
        dw_buf_ident(b, d->key[i]);
        dw_buf_puts(b, dir);
    }
}

/* a."k1" = b."k1" AND ... */
static void add_key_join(dw_buf *b, const dw_side_def *da, const char *a,
                         const dw_side_def *db, const char *bn)
{
    for (int i = 0; i < da->nkey; i++) {
        dw_buf_puts(b, i ? " AND " : "");
        dw_buf_ident(b, a);
        dw_buf_puts(b, ".");
        dw_buf_ident(b, da->key[i]);
        dw_buf_puts(b, " = ");
        dw_buf_ident(b, bn);
        dw_buf_puts(b, ".");
        dw_buf_ident(b, db->key[i]);
    }
}

/* The backfill's skip set: a TEMP table, its columns the old side's key
 * columns. Its name carries a digest of the migration's name (exactly: two
 * names SQLite would fold into one stay apart) and of its key columns, so
 * a migration defined again with another key, on a connection that still
 * holds the table of the earlier definition, makes a table of its own. */
static void add_skip_table(dw_buf *b, const dw_spec *s)
{
    const dw_side_def *o = &s->side[DW_SIDE_OLD];
    dw_buf shape;
    dw_buf_init(&shape);
    dw_buf_printf(&shape, "%zu:%s", strlen(s->name), s->name);
    for (int i = 0; i < o->nkey; i++)
        dw_buf_printf(&shape, ",%zu:%s", strlen(o->key[i]), o->key[i]);
    char hex[65];
    if (shape.oom) {
        b->oom = 1;
        hex[0] = '\0';
    } else {
        dw__text_digest(shape.p, hex);
    }
    dw_buf_free(&shape);
    dw_buf_printf(b, "temp.dw_backfill_skip_%.16s", hex);
}

/* " AND NOT EXISTS (<the key in the skip set>)" for rows of side d, named
 * by alias (the table's name when NULL: the skip table's columns have the
 * key's names too). */
static void add_skip(dw_buf *b, const dw_spec *s, const dw_side_def *d,
                     const char *alias, int bounds)
{
    if (!(bounds & RB_SKIP))
        return;
    dw_buf_puts(b, " AND NOT EXISTS (SELECT 1 FROM ");
    add_skip_table(b, s);
    dw_buf_puts(b, " AS dw_skip WHERE ");
    add_key_join(b, &s->side[DW_SIDE_OLD], "dw_skip", d,
                 alias ? alias : d->table);
    dw_buf_puts(b, ")");
}

/* The skip set's keys in range that either side has, in key order. */
static void build_skipped(dw_buf *b, const dw_spec *s, int bounds)
{
    const dw_side_def *o = &s->side[DW_SIDE_OLD];
    dw_buf_puts(b, "SELECT ");
    dw_buf_ident_list(b, "dw_skip", o->key, o->nkey, 1);
    dw_buf_puts(b, " FROM ");
    add_skip_table(b, s);
    dw_buf_puts(b, " AS dw_skip");
    add_range(b, o, "dw_skip", bounds & ~RB_SKIP);
    for (int sd = DW_SIDE_OLD; sd <= DW_SIDE_NEW; sd++) {
        dw_buf_puts(b, sd == DW_SIDE_OLD ? " AND (EXISTS (SELECT 1 FROM "
                                         : " OR EXISTS (SELECT 1 FROM ");
        dw_buf_table(b, s->side[sd].table);
        dw_buf_puts(b, " AS dw_row WHERE ");
        add_key_join(b, o, "dw_skip", &s->side[sd], "dw_row");
        dw_buf_puts(b, ")");
    }
    dw_buf_puts(b, ")");
    add_order(b, o, "dw_skip", "");
}

/* The old side in the comparison shape: key, then the up mapping's
 * expressions (SQL) or the old columns as stored (a C mapping). One table
 * holds both sides in a row: its new columns follow, and the key is on
 * both sides. */
static void add_old_shape(dw_buf *b, const dw_spec *s, int bounds)
{
    const dw_side_def *o = &s->side[DW_SIDE_OLD];
    const dw_side_def *n = &s->side[DW_SIDE_NEW];
    char **exprs = s->map[DW_SIDE_NEW].exprs;
    int na = exprs ? n->ncols : o->ncols;
    dw_buf_puts(b, "SELECT ");
    for (int i = 0; i < o->nkey; i++) {
        dw_buf_printf(b, "%s", i ? ", " : "");
        dw_buf_ident(b, o->key[i]);
        dw_buf_printf(b, " AS dw_k%d", i);
    }
    for (int i = 0; i < na; i++) {
        if (exprs)
            dw_buf_sql_in(b, ", (", exprs[i], ")");
        else {
            dw_buf_puts(b, ", ");
            dw_buf_ident(b, o->cols[i]);
        }
        dw_buf_printf(b, " AS dw_a%d", i);
    }
    if (s->same_table) {
        for (int i = 0; i < n->ncols; i++) {
            dw_buf_puts(b, ", ");
            dw_buf_ident(b, n->cols[i]);
            dw_buf_printf(b, " AS dw_b%d", i);
        }
    }
    dw_buf_puts(b, " FROM ");
    dw_buf_table(b, o->table);
    add_range(b, o, NULL, bounds);
}

/* Two tables: the old side's keys in range, each with its new row when
 * there is one. */
static void add_old_join(dw_buf *b, const dw_spec *s, int bounds)
{
    const dw_side_def *o = &s->side[DW_SIDE_OLD], *n = &s->side[DW_SIDE_NEW];
    int na = s->map[DW_SIDE_NEW].exprs ? n->ncols : o->ncols;
    dw_buf_puts(b, "SELECT ");
    for (int i = 0; i < o->nkey; i++)
        dw_buf_printf(b, "%sdw_o.dw_k%d", i ? ", " : "", i);
    for (int i = 0; i < na; i++)
        dw_buf_printf(b, ", dw_o.dw_a%d", i);
    for (int i = 0; i < n->ncols; i++) {
        dw_buf_puts(b, ", dw_n.");
        dw_buf_ident(b, n->cols[i]);
        dw_buf_printf(b, " AS dw_b%d", i);
    }
    dw_buf_puts(b, ", dw_n.");
    dw_buf_ident(b, n->key[0]);
    dw_buf_puts(b, " IS NOT NULL AS dw_in_new FROM (");
    add_old_shape(b, s, bounds);
    dw_buf_puts(b, ") AS dw_o LEFT JOIN ");
    dw_buf_table(b, n->table);
    dw_buf_puts(b, " AS dw_n ON ");
    for (int i = 0; i < n->nkey; i++) {
        dw_buf_puts(b, i ? " AND " : "");
        dw_buf_puts(b, "dw_n.");
        dw_buf_ident(b, n->key[i]);
        dw_buf_printf(b, " = dw_o.dw_k%d", i);
    }
}

/* A value of the old pass's row: key column i (DW_SIDE_NONE), old value
 * i in the comparison shape (DW_SIDE_OLD) or new column i (DW_SIDE_NEW).
 * One table names the row's columns and the mapping's expressions; two
 * name add_old_join()'s sides. */
static void add_pass_value(dw_buf *b, const dw_spec *s, int which, int i)
{
    const dw_side_def *o = &s->side[DW_SIDE_OLD], *n = &s->side[DW_SIDE_NEW];
    if (which == DW_SIDE_NONE && s->same_table)
        dw_buf_ident(b, o->key[i]);
    else if (which == DW_SIDE_NONE)
        dw_buf_printf(b, "dw_o.dw_k%d", i);
    else if (which == DW_SIDE_OLD && s->same_table)
        dw_buf_sql_in(b, "(", s->map[DW_SIDE_NEW].exprs[i], ")");
    else if (which == DW_SIDE_OLD)
        dw_buf_printf(b, "dw_o.dw_a%d", i);
    else {
        if (!s->same_table)
            dw_buf_puts(b, "dw_n.");
        dw_buf_ident(b, n->cols[i]);
    }
}

/* " AND (...)": the old pass's keys that may differ, for C to compare --
 * those with no new row, a key C must refuse (not INTEGER, REAL or TEXT:
 * NULL and BLOB sort outside [0-length text, empty blob), unless
 * keys_typed), or a column whose values are not plainly equal. `IS NOT`
 * with no affinity (unary +) and BINARY sees NULLs, types and bytes; it
 * takes an INTEGER and a REAL for equal when their values are, as
 * dw_value_equal() does, but SQLite may compare those through a long
 * double that rounds beyond 2^53 (under valgrind, 2^53 + 1 IS 2^53.0), so
 * a new number that large goes to C too. Each mapping expression is
 * written once: SQLite computes it once a row (and again only for the
 * rows returned). */
static void add_candidates(dw_buf *b, const dw_spec *s, int keys_typed)
{
    const dw_side_def *o = &s->side[DW_SIDE_OLD], *n = &s->side[DW_SIDE_NEW];
    dw_buf_puts(b, " AND (0");
    if (!s->same_table) {
        dw_buf_puts(b, " OR dw_n.");
        dw_buf_ident(b, n->key[0]);
        dw_buf_puts(b, " IS NULL");
    }
    for (int i = 0; !keys_typed && i < o->nkey; i++) {
        dw_buf_puts(b, " OR ");
        add_pass_value(b, s, DW_SIDE_NONE, i);
        dw_buf_puts(b, " IS NULL OR +");
        add_pass_value(b, s, DW_SIDE_NONE, i);
        dw_buf_puts(b, " >= x''");
    }
    for (int i = 0; i < n->ncols; i++) {
        dw_buf_puts(b, " OR +");
        add_pass_value(b, s, DW_SIDE_NEW, i);
        dw_buf_puts(b, " IS NOT +");
        add_pass_value(b, s, DW_SIDE_OLD, i);
        dw_buf_puts(b, " COLLATE BINARY OR ((+");
        add_pass_value(b, s, DW_SIDE_NEW, i);
        dw_buf_puts(b, " <= -9007199254740992 OR +");
        add_pass_value(b, s, DW_SIDE_NEW, i);
        dw_buf_puts(b, " >= 9007199254740992) AND +");
        add_pass_value(b, s, DW_SIDE_NEW, i);
        dw_buf_puts(b, " < '')");
    }
    dw_buf_puts(b, ")");
}

/* The old pass: the old side's keys in range, in key order, each with its
 * new row (one table: the same row, read once). Columns: the key, the old
 * row in the comparison shape, the new row, then (two tables) whether
 * there is one. RK_VERIFY returns every key, the others only those
 * add_candidates() picks. */
static void build_verify(dw_buf *b, const dw_spec *s, int bounds, int kind)
{
    const dw_side_def *o = &s->side[DW_SIDE_OLD];
    if (s->same_table) {
        add_old_shape(b, s, bounds);
    } else {
        add_old_join(b, s, bounds);
        dw_buf_puts(b, " WHERE 1");
    }
    if (kind != RK_VERIFY)
        add_candidates(b, s, kind == RK_VERIFY_SAME_TYPED);
    dw_buf_puts(b, " ORDER BY ");
    for (int i = 0; i < o->nkey; i++)
        dw_buf_printf(b, "%s%d", i ? ", " : "", i + 1);
}

/* The other pass: the keys in range only on the new side, in key order,
 * as build_verify() has them (the old row NULL, no flag). */
static void build_new_only(dw_buf *b, const dw_spec *s, int bounds)
{
    const dw_side_def *o = &s->side[DW_SIDE_OLD], *n = &s->side[DW_SIDE_NEW];
    int na = s->map[DW_SIDE_NEW].exprs ? n->ncols : o->ncols;
    dw_buf_puts(b, "SELECT ");
    dw_buf_ident_list(b, "dw_n", n->key, n->nkey, 1);
    for (int i = 0; i < na; i++)
        dw_buf_puts(b, ", NULL");
    dw_buf_ident_list(b, "dw_n", n->cols, n->ncols, 0);
    dw_buf_puts(b, " FROM ");
    dw_buf_table(b, n->table);
    dw_buf_puts(b, " AS dw_n LEFT JOIN ");
    dw_buf_table(b, o->table);
    dw_buf_puts(b, " AS dw_o ON ");
    add_key_join(b, o, "dw_o", n, "dw_n");
    add_range(b, n, "dw_n", bounds);
    dw_buf_puts(b, " AND dw_o.");
    dw_buf_ident(b, o->key[0]);
    dw_buf_puts(b, " IS NULL");
    add_order(b, n, "dw_n", "");
}

/* Where a verification chunk ends. One table: its keys ?1 and ?1 + 1
 * rows into the range (the second says the range goes on). Two: the
 * smaller of the sides' keys ?1 rows into the range (a sort of two rows),
 * the side it comes from (an error about it names that side), then
 * whether either side has a key after it in the range. */
static void build_chunk_end(dw_buf *b, const dw_spec *s, int bounds)
{
    if (s->same_table) {
        const dw_side_def *o = &s->side[DW_SIDE_OLD];
        dw_buf_puts(b, "SELECT ");
        dw_buf_ident_list(b, NULL, o->key, o->nkey, 1);
        dw_buf_puts(b, " FROM ");
        dw_buf_table(b, o->table);
        add_range(b, o, NULL, bounds);
        add_order(b, o, NULL, "");
        dw_buf_puts(b, " LIMIT 2 OFFSET ?1");
        return;
    }
    dw_buf_puts(b, "SELECT dw_e.*");
    for (int sd = DW_SIDE_OLD; sd <= DW_SIDE_NEW; sd++) {
        const dw_side_def *e = &s->side[sd];
        dw_buf_puts(b, sd == DW_SIDE_OLD ? ", EXISTS (SELECT 1 FROM "
                                         : " OR EXISTS (SELECT 1 FROM ");
        dw_buf_table(b, e->table);
        add_range(b, e, NULL, bounds & RB_HI);
        dw_buf_puts(b, " AND ");
        add_key_tuple(b, e, NULL);
        dw_buf_puts(b, e->nkey > 1 ? " > (" : " > ");
        for (int i = 0; i < e->nkey; i++)
            dw_buf_printf(b, "%sdw_e.dw_k%d", i ? ", " : "", i);
        dw_buf_puts(b, e->nkey > 1 ? "))" : ")");
    }
    dw_buf_puts(b, " FROM (SELECT * FROM (");
    for (int sd = DW_SIDE_OLD; sd <= DW_SIDE_NEW; sd++) {
        const dw_side_def *e = &s->side[sd];
        dw_buf_puts(b, sd == DW_SIDE_OLD ? "" : " UNION ALL ");
        dw_buf_puts(b, "SELECT * FROM (SELECT ");
        for (int i = 0; i < e->nkey; i++) {
            dw_buf_puts(b, i ? ", " : "");
            dw_buf_ident(b, e->key[i]);
            dw_buf_printf(b, " AS dw_k%d", i);
        }
        dw_buf_printf(b, ", %d AS dw_side FROM ", sd);
        dw_buf_table(b, e->table);
        add_range(b, e, NULL, bounds);
        add_order(b, e, NULL, "");
        dw_buf_puts(b, " LIMIT 1 OFFSET ?1)");
    }
    dw_buf_puts(b, ") ORDER BY ");
    for (int i = 0; i < s->side[DW_SIDE_OLD].nkey; i++)
        dw_buf_printf(b, "%s%d", i ? ", " : "", i + 1);
    dw_buf_puts(b, " LIMIT 1) AS dw_e");
}

/* Target rows in range := mapped source rows. Two tables: an upsert on the
 * key that leaves equal rows alone; one table: an UPDATE of the side's
 * columns. Never OR IGNORE or REPLACE. */
static void build_copy(dw_buf *b, const dw_spec *s, int target, int bounds)
{
    const dw_side_def *t = &s->side[target], *src = &s->side[dw__other_side(target)];
    char **exprs = s->map[target].exprs;
    if (s->same_table) {
        dw_buf_puts(b, "UPDATE ");
        dw_buf_table(b, t->table);
        dw_buf_puts(b, " SET ");
        for (int i = 0; i < t->ncols; i++) {
            dw_buf_puts(b, i ? ", " : "");
            dw_buf_ident(b, t->cols[i]);
            dw_buf_sql_in(b, " = (", exprs[i], ")");
        }
        add_range(b, t, NULL, bounds);
        add_skip(b, s, t, NULL, bounds);
        return;
    }
    dw_buf_puts(b, "INSERT INTO ");
    dw_buf_table(b, t->table);
    dw_buf_puts(b, "(");
    dw_buf_ident_list(b, NULL, t->key, t->nkey, 1);
    dw_buf_ident_list(b, NULL, t->cols, t->ncols, 0);
    dw_buf_puts(b, ") SELECT ");
    dw_buf_ident_list(b, NULL, src->key, src->nkey, 1);
    for (int i = 0; i < t->ncols; i++)
        dw_buf_sql_in(b, ", (", exprs[i], ")");
    dw_buf_puts(b, " FROM ");
    dw_buf_table(b, src->table);
    add_range(b, src, src->table, bounds);
    add_skip(b, s, src, src->table, bounds);
    dw__add_conflict_update(b, t);
    dw__add_changed_only(b, t);
}

/* The keys of either side in range, each once, in key order. */
static void build_keys_both(dw_buf *b, const dw_spec *s, int bounds)
{
    for (int sd = DW_SIDE_OLD; sd <= DW_SIDE_NEW; sd++) {
        const dw_side_def *d = &s->side[sd];
        dw_buf_puts(b, sd == DW_SIDE_OLD ? "SELECT " : " UNION SELECT ");
        dw_buf_ident_list(b, NULL, d->key, d->nkey, 1);
        dw_buf_puts(b, " FROM ");
        dw_buf_table(b, d->table);
        add_range(b, d, NULL, bounds);
    }
    dw_buf_puts(b, " ORDER BY ");
    for (int i = 0; i < s->side[DW_SIDE_OLD].nkey; i++)
        dw_buf_printf(b, "%s%d", i ? ", " : "", i + 1);
}

static void build_sql(dw_buf *b, const dw_spec *s, int kind, int side,
                      int bounds)
{
    if (side == DW_SIDE_NONE) {
        build_keys_both(b, s, bounds);
        return;
    }
    const dw_side_def *d = &s->side[side];
    switch (kind) {
    case RK_KEY_AT:
    case RK_KEYS:
    case RK_ROWS:
    case RK_LAST:
        dw_buf_puts(b, "SELECT ");
        dw_buf_ident_list(b, NULL, d->key, d->nkey, 1);
        if (kind == RK_ROWS)
            dw_buf_ident_list(b, NULL, d->cols, d->ncols, 0);
        dw_buf_puts(b, " FROM ");
        dw_buf_table(b, d->table);
        add_range(b, d, NULL, bounds);
        add_order(b, d, NULL, kind == RK_LAST ? " DESC" : "");
        if (kind == RK_KEY_AT)
            dw_buf_puts(b, " LIMIT 1 OFFSET ?1");
        else if (kind == RK_LAST)
            dw_buf_puts(b, " LIMIT 1");
        break;
    case RK_COUNT:
        dw_buf_puts(b, "SELECT count(*) FROM ");
        dw_buf_table(b, d->table);
        /* A whole table without WHERE: SQLite counts its pages' cells
         * without stepping through the rows. */
        if (bounds)
            add_range(b, d, NULL, bounds);
        break;
    case RK_NULLS:
        dw_buf_puts(b, "SELECT count(*) FROM ");
        dw_buf_table(b, d->table);
        dw_buf_puts(b, " WHERE ");
        for (int i = 0; i < d->nkey; i++) {
            dw_buf_puts(b, i ? " OR " : "");
            dw_buf_ident(b, d->key[i]);
            dw_buf_puts(b, " IS NULL");
        }
        break;
    case RK_UNPAGED:
        dw_buf_puts(b, "SELECT ");
        dw_buf_ident_list(b, NULL, d->key, d->nkey, 1);
        dw_buf_puts(b, " FROM ");
        dw_buf_table(b, d->table);
        dw_buf_puts(b, " WHERE ");
        for (int i = 0; i < d->nkey; i++) {
            dw_buf_puts(b, i ? " OR " : "");
            dw_buf_puts(b, "CASE typeof(");
            dw_buf_ident(b, d->key[i]);
            dw_buf_puts(b, ") WHEN 'text' THEN instr(CAST(");
            dw_buf_ident(b, d->key[i]);
            dw_buf_puts(b, " AS BLOB), x'00') > 0 WHEN 'real' THEN abs(");
            dw_buf_ident(b, d->key[i]);
            dw_buf_puts(b, ") > 1.7976931348623157e308 ELSE 0 END");
        }
        dw_buf_puts(b, " LIMIT 1");
        break;
    case RK_COPY:
        build_copy(b, s, side, bounds);
        break;
    case RK_SKIPPED:
        build_skipped(b, s, bounds);
        break;
    case RK_DELETE: {
        const dw_side_def *src = &s->side[dw__other_side(side)];
        dw_buf_puts(b, "DELETE FROM ");
        dw_buf_table(b, d->table);
        add_range(b, d, d->table, bounds);
        add_skip(b, s, d, d->table, bounds);
        dw_buf_puts(b, " AND NOT EXISTS (SELECT 1 FROM ");
        dw_buf_table(b, src->table);
        dw_buf_puts(b, " AS dw_src WHERE ");
        add_key_join(b, src, "dw_src", d, d->table);
        dw_buf_puts(b, ")");
        break;
    }
    case RK_VERIFY:
    case RK_VERIFY_SAME:
    case RK_VERIFY_SAME_TYPED:
        if (side == DW_SIDE_OLD)
            build_verify(b, s, bounds, kind);
        else
            build_new_only(b, s, bounds);
        break;
    case RK_CHUNK_END:
        build_chunk_end(b, s, bounds);
        break;
    case RK_VERIFY_LIMITED:
        build_verify(b, s, bounds, RK_VERIFY);
        dw_buf_puts(b, " LIMIT ?1");
        break;
    case RK_COVERED: {
        const dw_side_def *n = &s->side[DW_SIDE_NEW];
        dw_buf_puts(b, "SELECT count(*) FROM ");
        dw_buf_table(b, d->table);
        dw_buf_puts(b, " AS dw_o WHERE EXISTS (SELECT 1 FROM ");
        dw_buf_table(b, n->table);
        dw_buf_puts(b, " AS dw_n WHERE ");
        add_key_join(b, d, "dw_o", n, "dw_n");
        dw_buf_puts(b, ")");
        break;
    }
    }
}

/* Binds the key's values to ?first.. (copied: the caller's key may go
 * before the statement runs). On failure nothing stays bound. */
static int bind_bound(dw_migration *h, sqlite3_stmt *st, int first,
                      const dw_value *key, int side)
{
    int nkey = h->spec.side[DW_SIDE_OLD].nkey, src = SQLITE_OK;
    for (int i = 0; src == SQLITE_OK && i < nkey; i++) {
        const dw_value *v = &key[i];
        if (v->type == DW_TYPE_TEXT)
            src = sqlite3_bind_text(st, first + i, v->p ? v->p : "",
                                    dw__value_len(v), SQLITE_TRANSIENT);
        else
            src = dw__bind_value(st, first + i, v);
    }
    if (src == SQLITE_OK)
        return DW_OK;
    sqlite3_clear_bindings(st);
    return dw__sqlite_error(h, src, side, "binding a key range");
}

/* The statement for (kind, side, bounds), with the bounds bound; skip
 * (RB_SKIP or 0): whether it leaves out the skip set's keys. */
static sqlite3_stmt *range_stmt_skip(dw_migration *h, int kind, int side,
                                     const dw_value *lo, int lo_incl,
                                     const dw_value *hi, int skip)
{
    sqlite_backend *bk = BK(h);
    int bounds = (lo ? RB_LO | (lo_incl ? RB_LO_INCL : 0) : 0) |
                 (hi ? RB_HI : 0) | skip;
    sqlite3_stmt **slot = &bk->range[kind][side][bounds];
    if (!*slot) {
        dw_buf b;
        dw_buf_init(&b);
        build_sql(&b, &h->spec, kind, side, bounds);
        if (b.oom) {
            dw_buf_free(&b);
            dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
            return NULL;
        }
        int rc = dw__prepare(h, b.p, slot, NULL);
        dw_buf_free(&b);
        if (rc != SQLITE_OK) {
            dw__sqlite_error(h, rc, side, "preparing a key-range statement");
            sqlite3_finalize(*slot);
            *slot = NULL;
            return NULL;
        }
    }
    sqlite3_stmt *st = *slot;
    int nkey = h->spec.side[DW_SIDE_OLD].nkey;
    if ((lo && bind_bound(h, st, P_LO, lo, side)) ||
        (hi && bind_bound(h, st, P_HI(nkey), hi, side)))
        return NULL;
    return st;
}

static sqlite3_stmt *range_stmt(dw_migration *h, int kind, int side,
                                const dw_value *lo, int lo_incl,
                                const dw_value *hi)
{
    return range_stmt_skip(h, kind, side, lo, lo_incl, hi, 0);
}

/* SELECT (?2 COLLATE c1, ?3 COLLATE c2) < (?4, ?5): the tuples compared
 * with the key columns' collations (the affinities are the values' own:
 * both keys were checked against the key's types). */
static int key_before_sql(dw_migration *h, dw_buf *b)
{
    int nkey = h->spec.side[DW_SIDE_OLD].nkey;
    dw_buf_puts(b, "SELECT (");
    for (int i = 0; i < nkey; i++) {
        char cls[2], coll[32];
        int rc = dw__sqlite_key_traits(h, DW_SIDE_OLD, i, cls, coll);
        if (rc != DW_OK)
            return rc;
        dw_buf_printf(b, "%s?%d COLLATE ", i ? ", " : "", P_LO + i);
        dw_buf_ident(b, coll);
    }
    dw_buf_puts(b, ") < (");
    for (int i = 0; i < nkey; i++)
        dw_buf_printf(b, "%s?%d", i ? ", " : "", P_HI(nkey) + i);
    dw_buf_puts(b, ")");
    return b->oom ? dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory")
                  : DW_OK;
}

static sqlite3_stmt *cached_stmt(dw_migration *h, sqlite3_stmt **slot,
                                 int (*build)(dw_migration *h, dw_buf *b),
                                 const char *what);
static int finish(dw_migration *h, sqlite3_stmt *st, int rc, int side,
                  const char *what);

/* Each batch checks its stored cursor with it: prepared once (the key's
 * collations take a catalog query per column). */
int dw__sqlite_key_before(dw_migration *h, const dw_value *a,
                          const dw_value *b, int *before)
{
    const char *what = "comparing stored keys";
    sqlite3_stmt *st = cached_stmt(h, &BK(h)->key_before, key_before_sql,
                                   what);
    if (!st)
        return h->errcode;
    int nkey = h->spec.side[DW_SIDE_OLD].nkey;
    int rc = bind_bound(h, st, P_LO, a, DW_SIDE_NONE);
    if (rc == DW_OK)
        rc = bind_bound(h, st, P_HI(nkey), b, DW_SIDE_NONE);
    if (rc != DW_OK)
        return rc;
    int step = sqlite3_step(st);
    *before = step == SQLITE_ROW && sqlite3_column_int(st, 0);
    return finish(h, st, step == SQLITE_ROW ? SQLITE_DONE : step,
                  DW_SIDE_NONE, what);
}

void dw__range_finalize(sqlite_backend *bk)
{
    for (int k = 0; k < RK_KINDS; k++)
        for (int s = 0; s < 3; s++)
            for (int v = 0; v < RB_VARIANTS; v++)
                sqlite3_finalize(bk->range[k][s][v]);
    sqlite3_finalize(bk->skip_make);
    sqlite3_finalize(bk->skip_empty);
    sqlite3_finalize(bk->skip_insert);
    sqlite3_finalize(bk->override_keys);
    sqlite3_finalize(bk->key_before);
}


static int finish(dw_migration *h, sqlite3_stmt *st, int rc, int side,
                  const char *what)
{
    int result = rc == SQLITE_DONE || rc == SQLITE_OK
                     ? DW_OK
                     : (h->errcode != DW_OK && rc == SQLITE_ABORT
                            ? h->errcode
                            : dw__sqlite_error(h, rc, side, what));
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return result;
}

int dw__stmt_key(dw_migration *h, sqlite3_stmt *st, int first, int n,
                 dw_value *out, int side)
{
    for (int i = 0; i < n; i++) {
        int c = first + i;
        switch (sqlite3_column_type(st, c)) {
        case SQLITE_INTEGER:
            out[i] = dw_int(sqlite3_column_int64(st, c));
            break;
        case SQLITE_FLOAT:
            out[i] = dw_float(sqlite3_column_double(st, c));
            break;
        case SQLITE_TEXT: {
            const char *p = (const char *)sqlite3_column_text(st, c);
            if (!p)
                return dw__error(h, DW_ENOMEM, side, "out of memory");
            out[i] = dw_text_n(p, sqlite3_column_bytes(st, c));
            break;
        }
        default:
            if (side == DW_SIDE_NONE)
                return dw__error(h, DW_EMISUSE, side,
                                 "a row of either side has %s in key column "
                                 "%d; keys must be INTEGER, REAL or TEXT",
                                 sqlite3_column_type(st, c) == SQLITE_NULL
                                     ? "NULL"
                                     : "a BLOB",
                                 i + 1);
            return dw__error(h, DW_EMISUSE, side,
                             "%s side: table \"%s\" has a row whose key "
                             "column \"%s\" holds %s; keys must be INTEGER, "
                             "REAL or TEXT",
                             dw__side_word(side), h->spec.side[side].table,
                             h->spec.side[side].key[i],
                             sqlite3_column_type(st, c) == SQLITE_NULL
                                 ? "NULL"
                                 : "a BLOB");
        }
    }
    return DW_OK;
}

/* The key as the core holds it, in *out. */
static int key_out(dw_migration *h, const dw_value *key, int n, int side,
                   dw_held_key *out)
{
    return dw__held_key_set(out, key, n) == DW_OK
               ? DW_OK
               : dw__error(h, DW_ENOMEM, side, "out of memory");
}

/* Columns first.. of the current row as a key the core holds (*out,
 * cleared first), for a bound: DW_EMISUSE too for one that cannot be
 * paged through. */
static int stmt_key_paged(dw_migration *h, sqlite3_stmt *st, int first,
                          int n, int side, dw_held_key *out)
{
    dw_value key[64];
    dw__held_key_clear(out);
    int rc = dw__stmt_key(h, st, first, n, key, side);
    if (rc != DW_OK)
        return rc;
    /* A bound may be stored as key text (the backfill's cursor) and read
     * back: a NUL inside a text or an infinite or NaN real would not read
     * back as the same key. */
    for (int i = 0; i < n; i++)
        if ((key[i].type == DW_TYPE_TEXT &&
             memchr(key[i].p, 0, (size_t)key[i].n)) ||
            (key[i].type == DW_TYPE_FLOAT &&
             (key[i].f != key[i].f || key[i].f - key[i].f != 0)))
            return dw__error(h, DW_EMISUSE, side,
                             "%s side: table \"%s\" has a key in column "
                             "\"%s\" that cannot be paged through (a text "
                             "with a NUL byte, or an infinite or NaN real)",
                             dw__side_word(side), h->spec.side[side].table,
                             h->spec.side[side].key[i]);
    return key_out(h, key, n, side, out);
}

/* Steps a statement that yields at most one key; *key gets it, or none. */
static int one_key(dw_migration *h, sqlite3_stmt *st, int side, dw_held_key *key,
                   const char *what)
{
    dw__held_key_clear(key);
    if (!st)
        return h->errcode;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        int nkey = h->spec.side[side == DW_SIDE_NONE ? DW_SIDE_OLD : side].nkey;
        int r = stmt_key_paged(h, st, 0, nkey,
                               side == DW_SIDE_NONE ? DW_SIDE_OLD : side, key);
        if (r != DW_OK) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            return r;
        }
        rc = SQLITE_DONE;
    }
    return finish(h, st, rc, side, what);
}

int dw__sqlite_range_key_at(dw_migration *h, int side, const dw_value *lo,
                            int lo_incl, const dw_value *hi, int offset,
                            dw_held_key *key)
{
    sqlite3_stmt *st = range_stmt(h, RK_KEY_AT, side, lo, lo_incl, hi);
    if (st)
        sqlite3_bind_int(st, P_OFFSET, offset);
    return one_key(h, st, side, key, "paging through the keys");
}

int dw__sqlite_range_last(dw_migration *h, int side, dw_held_key *key)
{
    return one_key(h, range_stmt(h, RK_LAST, side, NULL, 0, NULL), side, key,
                   "finding the last key");
}

static int count_stmt(dw_migration *h, sqlite3_stmt *st, int side,
                      int64_t *n, const char *what)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *n = sqlite3_column_int64(st, 0);
        rc = SQLITE_DONE;
    }
    return finish(h, st, rc, side, what);
}

int dw__sqlite_range_count(dw_migration *h, int side, const dw_value *lo,
                           const dw_value *hi, int64_t *n)
{
    sqlite3_stmt *st = range_stmt(h, RK_COUNT, side, lo, 0, hi);
    return st ? count_stmt(h, st, side, n, "counting rows") : h->errcode;
}

int dw__sqlite_covered(dw_migration *h, int64_t *n)
{
    sqlite3_stmt *st = range_stmt(h, RK_COVERED, DW_SIDE_OLD, NULL, 0, NULL);
    return st ? count_stmt(h, st, DW_SIDE_NONE, n,
                           "counting old rows the new model covers")
              : h->errcode;
}

/* Whether the side's key is its table's rowid (a lone INTEGER PRIMARY
 * KEY of a rowid table, which has no index of origin 'pk'): it is never
 * NULL and always an integer, so the scans for keys that cannot be
 * addressed or paged through would read every row to find nothing. */
static int rowid_key(dw_migration *h, int side, int *yes)
{
    const dw_side_def *d = &h->spec.side[side];
    *yes = 0;
    if (d->nkey != 1)
        return DW_OK;
    sqlite3_stmt *st = NULL;
    int rc = dw__prepare(
        h,
        "SELECT (SELECT count(*) FROM pragma_table_info(?1, 'main') WHERE "
        "pk > 0) = 1 AND EXISTS (SELECT 1 FROM pragma_table_info(?1, "
        "'main') WHERE pk = 1 AND name = ?2 COLLATE NOCASE AND upper(type) "
        "= 'INTEGER') AND NOT EXISTS (SELECT 1 FROM pragma_index_list(?1, "
        "'main') WHERE origin = 'pk')",
        &st, NULL);
    if (rc == SQLITE_OK &&
        (rc = sqlite3_bind_text(st, 1, d->table, -1, SQLITE_STATIC)) ==
            SQLITE_OK &&
        (rc = sqlite3_bind_text(st, 2, d->key[0], -1, SQLITE_STATIC)) ==
            SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *yes = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    }
    int result = rc == SQLITE_OK
                     ? DW_OK
                     : dw__sqlite_error(h, rc, side,
                                        "reading whether the key is the "
                                        "rowid");
    sqlite3_finalize(st);
    return result;
}

int dw__sqlite_integer_keys(dw_migration *h, int side, int *yes)
{
    return rowid_key(h, side, yes);
}

int dw__sqlite_null_keys(dw_migration *h, int side, int64_t *n)
{
    int rowid;
    int rc = rowid_key(h, side, &rowid);
    if (rc != DW_OK || rowid) {
        *n = 0;
        return rc;
    }
    sqlite3_stmt *st = range_stmt(h, RK_NULLS, side, NULL, 0, NULL);
    return st ? count_stmt(h, st, side, n, "looking for NULL keys")
              : h->errcode;
}

int dw__sqlite_unpaged_key(dw_migration *h, int side, dw_held_key *key)
{
    dw__held_key_clear(key);
    int rowid;
    int rc0 = rowid_key(h, side, &rowid);
    if (rc0 != DW_OK || rowid)
        return rc0;
    sqlite3_stmt *st = range_stmt(h, RK_UNPAGED, side, NULL, 0, NULL);
    if (!st)
        return h->errcode;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        int nkey = h->spec.side[side].nkey;
        dw_value k[64];
        int r = dw__stmt_key(h, st, 0, nkey, k, side);
        if (r == DW_OK)
            r = key_out(h, k, nkey, side, key);
        if (r != DW_OK) {
            sqlite3_reset(st);
            return r;
        }
        rc = SQLITE_DONE;
    }
    return finish(h, st, rc, side, "looking for keys that cannot be paged");
}

static int run_changes(dw_migration *h, sqlite3_stmt *st, int side,
                       int64_t *changed, const char *what)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    if (rc == SQLITE_DONE)
        *changed = sqlite3_changes64(h->db);
    return finish(h, st, rc, side, what);
}

int dw__sqlite_range_copy(dw_migration *h, int target, const dw_value *lo,
                          const dw_value *hi, int skip, int64_t *written)
{
    sqlite3_stmt *st = range_stmt_skip(h, RK_COPY, target, lo, 0, hi,
                                       skip ? RB_SKIP : 0);
    return st ? run_changes(h, st, target, written,
                            "copying rows through the mapping")
              : h->errcode;
}

int dw__sqlite_range_delete_orphans(dw_migration *h, int target,
                                    const dw_value *lo, const dw_value *hi,
                                    int skip, int64_t *deleted)
{
    *deleted = 0;
    if (h->spec.same_table)
        return DW_OK; /* one row holds both sides: nothing can be orphaned */
    sqlite3_stmt *st = range_stmt_skip(h, RK_DELETE, target, lo, 0, hi,
                                       skip ? RB_SKIP : 0);
    return st ? run_changes(h, st, target, deleted,
                            "deleting rows whose source is gone")
              : h->errcode;
}

/* The statement's current row into row, cleared: by name the first time
 * (`named` 0), then by position into the slots that read kept -- the
 * columns do not change while the statement runs -- the values borrowed
 * from the statement: the row is read (by the callback, the upsert)
 * before the next step. */
static int fill_row(dw_row *row, sqlite3_stmt *st, int ncols, int named)
{
    dw_row_clear(row);
    if (!named)
        return dw_sqlite_row_set_columns(row, st);
    /* The connection's mutex once for the row (as in
     * dw_sqlite_row_set_columns()). */
    sqlite3_mutex *mutex = sqlite3_db_mutex(sqlite3_db_handle(st));
    sqlite3_mutex_enter(mutex);
    int rc = DW_OK;
    for (int i = 0; rc == DW_OK && i < ncols; i++) {
        sqlite3_value *cv = sqlite3_column_value(st, i);
        dw_value v;
        if (!cv)
            rc = DW_ENOMEM;
        else if ((rc = dw__value_of(&v, cv)) == DW_OK)
            rc = dw__row_ref_next(row, &v);
    }
    sqlite3_mutex_leave(mutex);
    return rc;
}

/* The key of a row read with it (its first columns), without reading
 * the statement again; a type no key has: dw__stmt_key()'s refusal. */
static int row_key(dw_migration *h, sqlite3_stmt *st, const dw_row *row,
                   int nkey, dw_value *key, int side)
{
    for (int i = 0; i < nkey; i++) {
        const dw_value *v = dw_row_value(row, i);
        if (!v || v->type == DW_TYPE_NULL || v->type == DW_TYPE_BLOB)
            return dw__stmt_key(h, st, 0, nkey, key, side);
        key[i] = *v;
    }
    return DW_OK;
}

/* Steps a statement of keys (then, with a row, the side's columns):
 * fn for each, until it fails. */
static int each_row(dw_migration *h, sqlite3_stmt *st, int side,
                    dw_row *row, dw_range_row_fn fn, void *arg,
                    const char *what)
{
    if (!st)
        return h->errcode;
    int nkey = h->spec.side[side ? side : DW_SIDE_OLD].nkey, rc;
    int result = DW_OK, named = 0, ncols = 0;
    dw_value key[64];
    while (result == DW_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int filled = row ? fill_row(row, st, ncols, named) : DW_OK;
        if (!row) {
            result = dw__stmt_key(h, st, 0, nkey, key, side);
        } else if (filled == DW_ENOMEM) {
            result = dw__error(h, DW_ENOMEM, side, "out of memory");
        } else if (filled != DW_OK) {
            /* Rows after the first fill the slots the first one named:
             * a statement whose columns share a name has fewer. */
            result = dw__error(h, DW_ERROR, side,
                               "%s: a row has more columns than the slots "
                               "its first row named (two columns of one "
                               "name?)",
                               what);
        } else {
            /* Counted once the first step prepared the statement. */
            ncols = named ? ncols : sqlite3_column_count(st);
            named = 1;
            result = row_key(h, st, row, nkey, key, side);
        }
        if (result == DW_OK)
            result = fn(h, key, row, arg);
    }
    if (result != DW_OK) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        return result;
    }
    return finish(h, st, rc, side, what);
}

typedef struct key_visit {
    dw_key_fn fn;
    void *arg;
} key_visit;

static int visit_key(dw_migration *h, const dw_value *key, const dw_row *row,
                     void *arg)
{
    const key_visit *k = arg;
    (void)row;
    return k->fn(h, key, k->arg);
}

int dw__sqlite_range_keys(dw_migration *h, int side, const dw_value *lo,
                          const dw_value *hi, dw_key_fn fn, void *arg)
{
    key_visit k = {fn, arg};
    return each_row(h, range_stmt(h, RK_KEYS, side, lo, 0, hi), side, NULL,
                    visit_key, &k, "listing keys");
}

int dw__sqlite_range_rows(dw_migration *h, int side, const dw_value *lo,
                          const dw_value *hi, dw_row *row,
                          dw_range_row_fn fn, void *arg)
{
    return each_row(h, range_stmt(h, RK_ROWS, side, lo, 0, hi), side, row,
                    fn, arg, "reading the rows of a range");
}

/* ---- the backfill's skip set ------------------------------------------- */

/* The statement in *slot, prepared from the SQL build() writes on first
 * use; NULL with the error set on failure. */
static sqlite3_stmt *cached_stmt(dw_migration *h, sqlite3_stmt **slot,
                               int (*build)(dw_migration *h, dw_buf *b),
                               const char *what)
{
    if (*slot)
        return *slot;
    dw_buf b;
    dw_buf_init(&b);
    int rc = build(h, &b);
    if (rc == DW_OK && b.oom)
        rc = dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    if (rc == DW_OK && dw__prepare(h, b.p, slot, NULL) != SQLITE_OK) {
        dw__sqlite_error(h, sqlite3_errcode(h->db), DW_SIDE_NONE, what);
        sqlite3_finalize(*slot);
        *slot = NULL;
    }
    dw_buf_free(&b);
    return *slot;
}

/* The TEMP table, keyed like the old side with its key's collations. A
 * TEMP table changes the connection's temp schema, which makes every
 * prepared statement prepare again: IF NOT EXISTS makes it once per
 * connection and key shape (again only when the transaction that made it
 * rolled back); it stays until the connection closes. */
static int build_skip_make(dw_migration *h, dw_buf *b)
{
    const dw_side_def *o = &h->spec.side[DW_SIDE_OLD];
    dw_buf_puts(b, "CREATE TABLE IF NOT EXISTS ");
    add_skip_table(b, &h->spec);
    dw_buf_puts(b, "(");
    for (int i = 0; i < o->nkey; i++) {
        char cls[2], coll[32];
        int rc = dw__sqlite_key_traits(h, DW_SIDE_OLD, i, cls, coll);
        if (rc != DW_OK)
            return rc;
        dw_buf_puts(b, i ? ", " : "");
        dw_buf_ident(b, o->key[i]);
        dw_buf_puts(b, " COLLATE ");
        dw_buf_ident(b, coll);
    }
    dw_buf_puts(b, ", PRIMARY KEY (");
    dw_buf_ident_list(b, NULL, o->key, o->nkey, 1);
    dw_buf_puts(b, ")) WITHOUT ROWID");
    return DW_OK;
}

static int build_skip_empty(dw_migration *h, dw_buf *b)
{
    dw_buf_puts(b, "DELETE FROM ");
    add_skip_table(b, &h->spec);
    return DW_OK;
}

static int build_skip_insert(dw_migration *h, dw_buf *b)
{
    const dw_side_def *o = &h->spec.side[DW_SIDE_OLD];
    dw_buf_puts(b, "INSERT OR IGNORE INTO ");
    add_skip_table(b, &h->spec);
    dw_buf_puts(b, "(");
    dw_buf_ident_list(b, NULL, o->key, o->nkey, 1);
    dw_buf_puts(b, ") VALUES (");
    for (int i = 0; i < o->nkey; i++)
        dw_buf_printf(b, "%s?%d", i ? ", " : "", 1 + i);
    dw_buf_puts(b, ")");
    return DW_OK;
}

static int step_once(dw_migration *h, sqlite3_stmt *st, const char *what)
{
    if (!st)
        return h->errcode;
    return finish(h, st, sqlite3_step(st), DW_SIDE_NONE, what);
}

int dw__sqlite_skip_reset(dw_migration *h)
{
    sqlite_backend *bk = BK(h);
    const char *what = "making the backfill's set of keys to skip";
    int rc = step_once(
        h, cached_stmt(h, &bk->skip_make, build_skip_make, what), what);
    what = "emptying the backfill's set of keys to skip";
    return rc != DW_OK ? rc
                       : step_once(h, cached_stmt(h, &bk->skip_empty,
                                                build_skip_empty, what),
                                   what);
}

int dw__sqlite_skip_add(dw_migration *h, const dw_value *key)
{
    const char *what = "adding a key to the backfill's set of keys to skip";
    sqlite3_stmt *st = cached_stmt(h, &BK(h)->skip_insert, build_skip_insert,
                                 what);
    if (!st)
        return h->errcode;
    int rc = bind_bound(h, st, 1, key, DW_SIDE_NONE);
    return rc != DW_OK ? rc : step_once(h, st, what);
}

int dw__sqlite_skip_keys(dw_migration *h, const dw_value *lo,
                         const dw_value *hi, dw_key_fn fn, void *arg)
{
    key_visit k = {fn, arg};
    return each_row(h, range_stmt(h, RK_SKIPPED, DW_SIDE_OLD, lo, 0, hi),
                    DW_SIDE_OLD, NULL, visit_key, &k, "listing skipped keys");
}

static int build_override_keys(dw_migration *h, dw_buf *b)
{
    (void)h;
    dw_buf_puts(b, "SELECT key FROM main.dw_overrides WHERE migration_id "
                   "= ?1 AND stage BETWEEN ?2 AND ?3");
    return DW_OK;
}

int dw__sqlite_override_keys(dw_migration *h, int first, int last,
                             dw_keytext_fn fn, void *arg)
{
    const char *what = "listing the overrides";
    sqlite3_stmt *st = cached_stmt(h, &BK(h)->override_keys,
                                 build_override_keys, what);
    if (!st)
        return h->errcode;
    sqlite3_bind_int64(st, 1, h->id);
    sqlite3_bind_int(st, 2, first);
    sqlite3_bind_int(st, 3, last);
    int rc, result = DW_OK;
    while (result == DW_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 0);
        result = key ? fn(h, key, arg)
                     : dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    }
    if (result != DW_OK) {
        sqlite3_reset(st);
        return result;
    }
    return finish(h, st, rc, DW_SIDE_NONE, what);
}

/* Columns first.. of the current row as values pointing into the
 * statement, under one hold of the connection's mutex. */
static int column_values(sqlite3_stmt *st, int first, int n, dw_value *v)
{
    sqlite3_mutex *mutex = sqlite3_db_mutex(sqlite3_db_handle(st));
    int rc = DW_OK;
    sqlite3_mutex_enter(mutex);
    for (int i = 0; rc == DW_OK && i < n; i++)
        rc = dw__value_of(&v[i], sqlite3_column_value(st, first + i));
    sqlite3_mutex_leave(mutex);
    return rc;
}

int dw__column_value(sqlite3_stmt *st, int c, dw_value *v)
{
    return column_values(st, c, 1, v);
}

int dw__sqlite_verify_chunk(dw_migration *h, const dw_value *lo,
                            int lo_incl, const dw_value *hi, int limit,
                            dw_held_key *end, int64_t *nold)
{
    const char *what = "dividing the keys into chunks";
    int nkey = h->spec.side[DW_SIDE_OLD].nkey;
    *nold = 0;
    dw__held_key_clear(end);
    sqlite3_stmt *st = range_stmt(h, RK_CHUNK_END, DW_SIDE_OLD, lo, lo_incl,
                                  hi);
    if (!st)
        return h->errcode;
    sqlite3_bind_int(st, P_OFFSET, limit - 1);
    int rc = sqlite3_step(st), found = rc == SQLITE_ROW, result = DW_OK;
    /* The last key of the range needs no bound: the chunk is the rest,
     * and no chunk after it is read to find nothing. */
    if (found)
        result = stmt_key_paged(h, st, 0, nkey,
                                h->spec.same_table
                                    ? DW_SIDE_OLD
                                    : sqlite3_column_int(st, nkey),
                                end);
    if (result == DW_OK && found &&
        !(h->spec.same_table ? (rc = sqlite3_step(st)) == SQLITE_ROW
                             : sqlite3_column_int(st, nkey + 1)))
        dw__held_key_clear(end);
    if (result != DW_OK) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        return result;
    }
    result = finish(h, st, rc == SQLITE_ROW ? SQLITE_DONE : rc, DW_SIDE_NONE,
                    what);
    if (result != DW_OK) {
        dw__held_key_clear(end);
        return result;
    }
    /* One table: the key `limit` keys in was there, so the chunk holds
     * that many. */
    if (found && h->spec.same_table) {
        *nold = limit;
        return DW_OK;
    }
    st = range_stmt(h, RK_COUNT, DW_SIDE_OLD, lo, lo_incl,
                    end->v ? end->v : hi);
    result = st ? count_stmt(h, st, DW_SIDE_OLD, nold, "counting rows")
                : h->errcode;
    if (result != DW_OK)
        dw__held_key_clear(end);
    return result;
}

/* Steps a verification pass to its next row and reads the row's n
 * columns into vals (pointing into the statement, valid until the next
 * step), the connection's mutex held once for the step and all the
 * reads (NULL, a no-op, when SQLite runs without): each
 * sqlite3_column_*() call takes it, and taken from outside it costs a
 * lock and an unlock per value. *key_ok: whether the first nkey columns
 * are keys C takes (INTEGER, REAL or TEXT). SQLITE_ROW, SQLITE_DONE or
 * the step's error; ROW_UNREAD when a value could not be read. */
#define ROW_UNREAD (-1)

static int step_row(sqlite3_stmt *st, sqlite3_mutex *mutex, int nkey, int n,
                    dw_value *vals, int *key_ok)
{
    sqlite3_mutex_enter(mutex);
    int rc = sqlite3_step(st);
    *key_ok = 1;
    for (int i = 0; rc == SQLITE_ROW && i < n; i++) {
        if (dw__value_of(&vals[i], sqlite3_column_value(st, i)) != DW_OK)
            rc = ROW_UNREAD;
        else if (i < nkey && (vals[i].type == DW_TYPE_NULL ||
                              vals[i].type == DW_TYPE_BLOB))
            *key_ok = 0;
    }
    sqlite3_mutex_leave(mutex);
    return rc;
}

int dw__sqlite_verify_range(dw_migration *h, int side, const dw_value *lo,
                            int lo_incl, const dw_value *hi, int flags,
                            int limit, dw_held_key *end, dw_verify_row_fn fn,
                            void *arg, int64_t *rows)
{
    const dw_spec *s = &h->spec;
    int nkey = s->side[DW_SIDE_OLD].nkey;
    int na = s->map[DW_SIDE_NEW].exprs ? s->side[DW_SIDE_NEW].ncols
                                       : s->side[DW_SIDE_OLD].ncols;
    int nb = s->side[DW_SIDE_NEW].ncols;
    int ncols = nkey + na + nb;
    *rows = 0;
    if (side == DW_SIDE_NEW && s->same_table)
        return DW_OK; /* one row holds both sides: none is new only */
    int kind = RK_VERIFY;
    if (side == DW_SIDE_OLD && (flags & DW_VR_SAME_IN_SQL))
        kind = flags & DW_VR_KEYS_TYPED ? RK_VERIFY_SAME_TYPED
                                        : RK_VERIFY_SAME;
    else if (limit > 0)
        kind = RK_VERIFY_LIMITED;
    if (kind == RK_VERIFY_LIMITED)
        dw__held_key_clear(end);
    sqlite3_stmt *st = range_stmt(h, kind, side, lo, lo_incl, hi);
    if (!st)
        return h->errcode;
    /* One key more than the chunk's: whether the range goes on after it. */
    if (kind == RK_VERIFY_LIMITED)
        sqlite3_bind_int64(st, P_OFFSET, (sqlite3_int64)limit + 1);
    /* Two tables' old pass: its last column says whether the key has a
     * new row (one table: always). */
    int flagged = side == DW_SIDE_OLD && !s->same_table;
    dw_value *vals =
        dw__malloc(sizeof(dw_value) * (size_t)(ncols + flagged));
    if (!vals) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    }
    dw_verify_row row;
    row.in_old = side == DW_SIDE_OLD;
    row.key = vals;
    row.a = vals + nkey;
    row.b = vals + nkey + na;
    sqlite3_mutex *mutex = sqlite3_db_mutex(h->db);
    int rc, key_ok, result = DW_OK;
    while (result == DW_OK &&
           (rc = step_row(st, mutex, nkey, ncols + flagged, vals, &key_ok)) ==
               SQLITE_ROW) {
        /* A key after the chunk's last: the range goes on. */
        if (kind == RK_VERIFY_LIMITED && *rows == limit)
            break;
        row.in_new = !flagged || vals[ncols].i;
        /* A key C refuses: read again for the message saying why. */
        if (!key_ok)
            result = dw__stmt_key(h, st, 0, nkey, vals, side);
        /* The chunk's last key, held once a chunk. */
        if (result == DW_OK && kind == RK_VERIFY_LIMITED &&
            *rows == limit - 1)
            result = stmt_key_paged(h, st, 0, nkey, DW_SIDE_OLD, end);
        if (result != DW_OK)
            break;
        ++*rows;
        result = fn(h, &row, arg);
    }
    /* The range ends within the chunk: none after it. */
    if (kind == RK_VERIFY_LIMITED && result == DW_OK && rc != SQLITE_ROW)
        dw__held_key_clear(end);
    if (result == DW_OK && rc == SQLITE_ROW)
        rc = SQLITE_DONE;
    if (result == DW_OK && rc == ROW_UNREAD)
        result = dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    dw__free(vals);
    if (result == DW_OK)
        result = finish(h, st, rc, DW_SIDE_NONE, "comparing the two sides");
    else {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    if (result != DW_OK && kind == RK_VERIFY_LIMITED)
        dw__held_key_clear(end);
    return result;
}

int dw__sqlite_run_setup(dw_migration *h)
{
    if (!h->spec.setup_sql)
        return DW_OK;
    dw_buf sql;
    dw_buf_init(&sql);
    dw_buf_sql(&sql, h->spec.setup_sql);
    if (sql.oom) {
        dw_buf_free(&sql);
        return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    }
    char *err = NULL;
    int rc = sqlite3_exec(h->db, sql.p, NULL, NULL, &err);
    dw_buf_free(&sql);
    if (rc == SQLITE_OK)
        return DW_OK;
    int code = dw__from_sqlite(rc);
    dw__error(h, code == DW_OK ? DW_ERROR : code, DW_SIDE_NONE,
              "the spec's setup SQL failed: %s",
              err ? err : sqlite3_errstr(rc));
    sqlite3_free(err);
    return h->errcode;
}
