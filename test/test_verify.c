/* Tests for verification (dw_verify, dw_verify_last) and repair
 * (dw_repair_keys, dw_repair_divergent, dw_repair_queue): every kind of
 * divergence, redaction, the report limit, chunking against a brute-force
 * count in plain SQL, ranges, composite keys, C and one-table mappings, the
 * read options, stored runs, repairs that fail, and a large table. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "support.h"
#include "sqlite_memory.h"

#include "internal.h" /* the ops table, watched by test_equal_rows_stay */

#include <limits.h>
#include <stddef.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- helpers ---------------------------------------------------------------- */

static const char *const k_id[] = {"id"};

static void db_open(test_db *t)
{
    test_db_open(t);
    exec_ok(t->db, "PRAGMA synchronous=NORMAL");
}

/* Opens a two-table migration keyed on "id" with an SQL up mapping. */
static dw_migration *open_two(sqlite3 *db, const char *name, const char *old_t,
                              const char *new_t, const dw_column_map *up,
                              int nup, unsigned int flags)
{
    dw_options o = options_for(name, TEST_SIDE_UNLISTED(old_t, k_id),
                               TEST_SIDE_UNLISTED(new_t, k_id));
    o.up = up;
    o.nup = nup;
    o.flags = flags;
    return open_migration_ok(db, &o);
}

/* What the verification callback saw: the first few mismatches in detail,
 * every key in order. */
#define VS_DETAIL 8
#define VS_DIFFS 4

typedef struct vdiff {
    char column[32];
    int has_old, has_new;
    int old_type, new_type;
    char old_desc[256], new_desc[256];
} vdiff;

typedef struct vmis {
    char migration[64];
    char key[96];
    int kind;
    char digest[40];
    int ndiffs;
    vdiff d[VS_DIFFS];
} vmis;

typedef struct vsink {
    int calls;
    vmis m[VS_DETAIL];
    char **keys; /* every key reported, in order */
    int *kinds;
    int nkeys, capkeys;
} vsink;

static void vsink_reset(vsink *s)
{
    for (int i = 0; i < s->nkeys; i++)
        free(s->keys[i]);
    free(s->keys);
    free(s->kinds);
    memset(s, 0, sizeof *s);
}

static void vsink_fn(const dw_mismatch *m, void *payload)
{
    vsink *s = payload;
    if (s->calls < VS_DETAIL) {
        vmis *o = &s->m[s->calls];
        memset(o, 0, sizeof *o);
        snprintf(o->migration, sizeof o->migration, "%s",
                 m->migration ? m->migration : "(null)");
        snprintf(o->key, sizeof o->key, "%s", m->key ? m->key : "(null)");
        snprintf(o->digest, sizeof o->digest, "%s",
                 m->digest ? m->digest : "(null)");
        o->kind = m->kind;
        o->ndiffs = m->ndiffs;
        for (int i = 0; i < m->ndiffs && i < VS_DIFFS; i++) {
            const dw_diff *d = &m->diffs[i];
            vdiff *v = &o->d[i];
            snprintf(v->column, sizeof v->column, "%s",
                     d->column ? d->column : "(null)");
            v->has_old = d->old_value != NULL;
            v->has_new = d->new_value != NULL;
            v->old_type = d->old_value ? d->old_value->type : 0;
            v->new_type = d->new_value ? d->new_value->type : 0;
            snprintf(v->old_desc, sizeof v->old_desc, "%s",
                     d->old_desc ? d->old_desc : "(null)");
            snprintf(v->new_desc, sizeof v->new_desc, "%s",
                     d->new_desc ? d->new_desc : "(null)");
        }
    }
    s->calls++;
    if (s->nkeys == s->capkeys) {
        int cap = s->capkeys ? s->capkeys * 2 : 64;
        char **k = realloc(s->keys, sizeof(char *) * (size_t)cap);
        assert_non_null(k);
        s->keys = k;
        int *kd = realloc(s->kinds, sizeof(int) * (size_t)cap);
        assert_non_null(kd);
        s->kinds = kd;
        s->capkeys = cap;
    }
    s->keys[s->nkeys] = strdup(m->key ? m->key : "(null)");
    assert_non_null(s->keys[s->nkeys]);
    s->kinds[s->nkeys] = m->kind;
    s->nkeys++;
}

static int vsink_count_key(const vsink *s, const char *key)
{
    int n = 0;
    for (int i = 0; i < s->nkeys; i++)
        if (strcmp(s->keys[i], key) == 0)
            n++;
    return n;
}

static int vsink_has_dup(const vsink *s)
{
    for (int i = 0; i < s->nkeys; i++)
        for (int j = i + 1; j < s->nkeys; j++)
            if (strcmp(s->keys[i], s->keys[j]) == 0)
                return 1;
    return 0;
}

static const vdiff *find_diff(const vmis *m, const char *col)
{
    for (int i = 0; i < m->ndiffs && i < VS_DIFFS; i++)
        if (strcmp(m->d[i].column, col) == 0)
            return &m->d[i];
    return NULL;
}

/* Runs dw_verify with a fresh sink and the given chunk size, report limit
 * and range; asserts DW_OK. */
static dw_verify_result verify_with(dw_migration *h, vsink *s, int chunk_rows,
                                    int report_limit)
{
    dw_verify_options vo = DW_VERIFY_OPTIONS_INIT;
    vo.chunk_rows = chunk_rows;
    vo.report_limit = report_limit;
    if (s) {
        vsink_reset(s);
        vo.fn = vsink_fn;
        vo.payload = s;
    }
    dw_verify_result r;
    memset(&r, 0xab, sizeof r);
    assert_dw_ok(h, dw_verify(&r, h, &vo));
    return r;
}

static dw_verify_result verify_range(dw_migration *h, vsink *s,
                                     const dw_value *from, int nfrom,
                                     const dw_value *to, int nto,
                                     int chunk_rows)
{
    dw_verify_options vo = DW_VERIFY_OPTIONS_INIT;
    vo.from = from;
    vo.nfrom = nfrom;
    vo.to = to;
    vo.nto = nto;
    vo.chunk_rows = chunk_rows;
    vo.report_limit = 1000;
    if (s) {
        vsink_reset(s);
        vo.fn = vsink_fn;
        vo.payload = s;
    }
    dw_verify_result r;
    memset(&r, 0xab, sizeof r);
    assert_dw_ok(h, dw_verify(&r, h, &vo));
    return r;
}

static void assert_counts(const dw_verify_result *r, int64_t keys,
                          int64_t missing, int64_t extra, int64_t different)
{
    if (r->keys != keys || r->missing != missing || r->extra != extra ||
        r->different != different)
        print_error("verify: keys %lld missing %lld extra %lld different "
                    "%lld; expected %lld %lld %lld %lld\n",
                    (long long)r->keys, (long long)r->missing,
                    (long long)r->extra, (long long)r->different,
                    (long long)keys, (long long)missing, (long long)extra,
                    (long long)different);
    assert_int_equal(r->keys, keys);
    assert_int_equal(r->missing, missing);
    assert_int_equal(r->extra, extra);
    assert_int_equal(r->different, different);
    assert_int_equal(r->clean, !missing && !extra && !different);
    assert_int_equal(r->finished, 1);
    assert_true(r->run_id > 0);
}

/* The id of the migration's latest run, by SQL. */
static int64_t latest_run(sqlite3 *db, const char *name)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT coalesce(max(r.id), 0) FROM dw_verify_runs r JOIN "
             "dw_migrations m ON m.id = r.migration_id WHERE m.name = '%s'",
             name);
    return query_int(db, sql);
}

static int64_t stored_keys(sqlite3 *db, int64_t run, const char *extra_where)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM dw_verify_keys WHERE run_id = %lld%s%s",
             (long long)run, extra_where ? " AND " : "",
             extra_where ? extra_where : "");
    return query_int(db, sql);
}

/* The stored divergent key of the latest run whose key text is `key`:
 * its kind (-1 when absent). */
static int stored_kind(sqlite3 *db, const char *key)
{
    return (int)query_int_with(
        db,
        "SELECT coalesce((SELECT kind FROM dw_verify_keys "
        "WHERE key = ?1 AND run_id = (SELECT max(id) FROM "
        "dw_verify_runs)), -1)",
        key);
}

static void exec_fmt(sqlite3 *db, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void exec_fmt(sqlite3 *db, const char *fmt, ...)
{
    char sql[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    exec_ok(db, sql);
}

/* ---- 1. each kind of divergence ---------------------------------------------- */

typedef struct kind_case {
    const char *name;
    const char *old_a; /* SQL literal for key 3's column val, NULL: no row */
    const char *new_a;
    int kind; /* 0: equal */
    const char *old_prefix, *new_prefix; /* redacted description prefixes */
    const char *old_decl, *new_decl; /* column val's declaration; NULL: none */
} kind_case;

static const kind_case kind_cases[] = {
    {"missing on new", "'x'", NULL, DW_MISMATCH_MISSING_NEW, NULL, NULL, NULL,
     NULL},
    {"extra on new", NULL, "'x'", DW_MISMATCH_EXTRA_NEW, NULL, NULL, NULL,
     NULL},
    {"changed text", "'x'", "'y'", DW_MISMATCH_DIFFERENT, "text(1):",
     "text(1):", NULL, NULL},
    {"NULL vs empty text", "NULL", "''", DW_MISMATCH_DIFFERENT, NULL,
     "text(0)", NULL, NULL},
    {"empty text vs NULL", "''", "NULL", DW_MISMATCH_DIFFERENT, "text(0)",
     NULL, NULL, NULL},
    {"integer vs text", "5", "'5'", DW_MISMATCH_DIFFERENT, NULL, "text(1):",
     NULL, NULL},
    {"text vs integer", "'5'", "5", DW_MISMATCH_DIFFERENT, "text(1):", NULL,
     NULL, NULL},
    {"blob bytes", "x'0102'", "x'0103'", DW_MISMATCH_DIFFERENT, "blob(2):",
     "blob(2):", NULL, NULL},
    {"text vs blob, same bytes", "'ab'", "x'6162'", DW_MISMATCH_DIFFERENT,
     "text(2):", "blob(2):", NULL, NULL},
    {"real 1.5 vs integer 1", "1.5", "1", DW_MISMATCH_DIFFERENT, NULL, NULL,
     NULL, NULL},
    {"integer 2^53+1 vs real 2^53", "9007199254740993", "9007199254740992.0",
     DW_MISMATCH_DIFFERENT, NULL, NULL, NULL, NULL},
    {"integer max vs real 2^63", "9223372036854775807",
     "9223372036854775808.0", DW_MISMATCH_DIFFERENT, NULL, NULL, NULL, NULL},
    {"real 1.0 vs integer 1", "1.0", "1", 0, NULL, NULL, NULL, NULL},
    {"integer 2^53 vs real 2^53", "9007199254740992", "9007199254740992.0", 0,
     NULL, NULL, NULL, NULL},
    {"integer 1 vs real 1.0", "1", "1.0", 0, NULL, NULL, NULL, NULL},
    {"NULL vs NULL", "NULL", "NULL", 0, NULL, NULL, NULL, NULL},
    {"same blob", "x'00ff'", "x'00ff'", 0, NULL, NULL, NULL, NULL},
    /* Equality decided in SQL must be dw_value_equal()'s: no column's
     * collation or affinity may make two values equal. */
    {"NULL vs 0", "NULL", "0", DW_MISMATCH_DIFFERENT, NULL, NULL, NULL, NULL},
    {"-0.0 vs 0.0", "-0.0", "0.0", 0, NULL, NULL, NULL, NULL},
    {"integer 0 vs real -0.0", "0", "-0.0", 0, NULL, NULL, NULL, NULL},
    {"'a' vs 'A' in NOCASE columns", "'a'", "'A'", DW_MISMATCH_DIFFERENT,
     "text(1):", "text(1):", "TEXT COLLATE NOCASE", "TEXT COLLATE NOCASE"},
    {"'a' vs 'a' in NOCASE columns", "'a'", "'a'", 0, NULL, NULL,
     "TEXT COLLATE NOCASE", "TEXT COLLATE NOCASE"},
    {"text '5' vs integer 5 in a TEXT and an INTEGER column", "'5'", "5",
     DW_MISMATCH_DIFFERENT, "text(1):", NULL, "TEXT", "INTEGER"},
    {"integer 5 vs text '5' in an INTEGER and a TEXT column", "5", "'5'",
     DW_MISMATCH_DIFFERENT, NULL, "text(1):", "INTEGER", "TEXT"},
    {"real 1.0 vs integer 1 in a REAL and an INTEGER column", "1.5 - 0.5",
     "1", 0, NULL, NULL, "REAL", "INTEGER"},
    {"texts differing after a NUL byte", "CAST(x'610062' AS TEXT)",
     "CAST(x'610063' AS TEXT)", DW_MISMATCH_DIFFERENT, "text(3):",
     "text(3):", NULL, NULL},
    {"same text holding a NUL byte", "CAST(x'610062' AS TEXT)",
     "CAST(x'610062' AS TEXT)", 0, NULL, NULL, NULL, NULL},
    {"blob vs text in BLOB columns", "x'6162'", "'ab'",
     DW_MISMATCH_DIFFERENT, "blob(2):", "text(2):", "BLOB", "BLOB"},
};

/* A comparator that always defers to dw_value_equal(): forces the full
 * comparison path instead of any shortcut. */
static int defer_compare(const char *column, const dw_value *a,
                         const dw_value *b, void *payload)
{
    (void)column;
    (void)a;
    (void)b;
    int *calls = payload;
    (*calls)++;
    return -1;
}

static void run_kind_case(const kind_case *c, int slow_path)
{
    test_db t;
    db_open(&t);
    /* Column val has no declared type unless the case gives one: storage
     * classes survive as written. */
    exec_fmt(t.db,
             "CREATE TABLE k_old(id INTEGER PRIMARY KEY, val %s, b TEXT);"
             "CREATE TABLE k_new(id INTEGER PRIMARY KEY, val %s, b TEXT);"
             "INSERT INTO k_old VALUES(1, 'one', 'same'), (2, 'two', 'same');"
             "INSERT INTO k_new VALUES(1, 'one', 'same'), (2, 'two', 'same');",
             c->old_decl ? c->old_decl : "", c->new_decl ? c->new_decl : "");
    if (c->old_a)
        exec_fmt(t.db, "INSERT INTO k_old VALUES(3, %s, 'same')", c->old_a);
    if (c->new_a)
        exec_fmt(t.db, "INSERT INTO k_new VALUES(3, %s, 'same')", c->new_a);
    static const dw_column_map up[] = {{"val", "val"}, {"b", "b"}};
    vsink cs; /* what dw_compare() reports, through the handle's sink */
    memset(&cs, 0, sizeof cs);
    dw_options o = options_for("kinds", TEST_SIDE_UNLISTED("k_old", k_id),
                               TEST_SIDE_UNLISTED("k_new", k_id));
    o.up = up;
    o.nup = 2;
    o.mismatch_fn = vsink_fn;
    o.mismatch_payload = &cs;
    dw_migration *h = open_migration_ok(t.db, &o);
    assert_dw_ok(h, stage_force(h, DW_STAGE_SHADOW));
    int ncompare = 0;
    if (slow_path) {
        dw_read_options ro = DW_READ_OPTIONS_INIT;
        ro.compare = defer_compare;
        ro.compare_payload = &ncompare;
        assert_dw_ok(h, dw_set_read_options(h, &ro));
    }
    print_message("  case \"%s\" (%s path)\n", c->name,
                  slow_path ? "comparator" : "plain");
    vsink s;
    memset(&s, 0, sizeof s);
    dw_verify_result r = verify_with(h, &s, 0, 0);
    assert_counts(&r, 3, c->kind == DW_MISMATCH_MISSING_NEW,
                  c->kind == DW_MISMATCH_EXTRA_NEW,
                  c->kind == DW_MISMATCH_DIFFERENT);
    assert_int_equal(r.full, 1);
    if (slow_path)
        assert_true(ncompare > 0);
    int64_t run = latest_run(t.db, "kinds");
    assert_int_equal(run, r.run_id);
    if (!c->kind) {
        assert_int_equal(s.calls, 0);
        assert_int_equal(stored_keys(t.db, run, NULL), 0);
    } else {
        assert_int_equal(s.calls, 1);
        const vmis *m = &s.m[0];
        assert_string_equal(m->migration, "kinds");
        assert_string_equal(m->key, "[3]");
        assert_int_equal(m->kind, c->kind);
        assert_true(is_hex16(m->digest));
        assert_int_equal(stored_keys(t.db, run, NULL), 1);
        assert_int_equal(stored_kind(t.db, "[3]"), c->kind);
        char buf[512];
        query_text(t.db, "SELECT detail FROM dw_verify_keys", buf, sizeof buf);
        assert_true(buf[0] != '\0');
        if (c->kind == DW_MISMATCH_DIFFERENT) {
            assert_int_equal(m->ndiffs, 1);
            const vdiff *d = find_diff(m, "val");
            assert_non_null(d);
            /* redacted by default: no values, descriptions differ */
            assert_int_equal(d->has_old, 0);
            assert_int_equal(d->has_new, 0);
            assert_string_not_equal(d->old_desc, d->new_desc);
            if (c->old_prefix)
                assert_int_equal(strncmp(d->old_desc, c->old_prefix,
                                         strlen(c->old_prefix)),
                                 0);
            if (c->new_prefix)
                assert_int_equal(strncmp(d->new_desc, c->new_prefix,
                                         strlen(c->new_prefix)),
                                 0);
            assert_non_null(strstr(buf, "val"));
        } else {
            assert_int_equal(m->ndiffs, 0);
        }
    }
    /* Verification never writes the mismatch log. */
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM dw_mismatch_log"),
                     0);
    /* dw_compare() agrees with the verification on key 3: the same
     * comparison, the same kind, digest and descriptions. */
    assert_int_equal(cs.calls, 0); /* verification reports to opts.fn only */
    int equal = -1;
    dw_value k3 = dw_int(3);
    assert_dw_ok(h, dw_compare(&equal, h, &k3, 1));
    assert_int_equal(equal, c->kind == 0);
    assert_int_equal(cs.calls, c->kind != 0);
    if (c->kind) {
        assert_string_equal(cs.m[0].key, "[3]");
        assert_int_equal(cs.m[0].kind, c->kind);
        assert_string_equal(cs.m[0].digest, s.m[0].digest);
        assert_int_equal(cs.m[0].ndiffs, s.m[0].ndiffs);
        if (c->kind == DW_MISMATCH_DIFFERENT) {
            assert_string_equal(cs.m[0].d[0].old_desc, s.m[0].d[0].old_desc);
            assert_string_equal(cs.m[0].d[0].new_desc, s.m[0].d[0].new_desc);
        }
    }
    vsink_reset(&cs);
    vsink_reset(&s);
    dw_close(h);
    test_db_close(&t);
}

static void test_kinds_of_divergence(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof kind_cases / sizeof kind_cases[0]; i++)
        for (int slow = 0; slow <= 1; slow++)
            run_kind_case(&kind_cases[i], slow);
}

/* Several kinds at once, and several columns differing in one row. */
static void test_mixed_divergences_one_run(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    exec_ok(t.db, "CREATE TABLE k_old(id INTEGER PRIMARY KEY, val, b TEXT);"
                  "CREATE TABLE k_new(id INTEGER PRIMARY KEY, val, b TEXT);"
                  "INSERT INTO k_old VALUES(1, 1, 'p'), (2, 2, 'p'),"
                  " (3, 3, 'p'), (4, 4, 'p');"
                  "INSERT INTO k_new VALUES(1, 1, 'p'), (2, 'two', 'q'),"
                  " (4, 4.0, 'p'), (5, 5, 'p'), (6, 6, 'p');");
    static const dw_column_map up[] = {{"val", "val"}, {"b", "b"}};
    dw_migration *h = open_two(t.db, "mixed", "k_old", "k_new", up, 2, 0);
    vsink s;
    memset(&s, 0, sizeof s);
    dw_verify_result r = verify_with(h, &s, 0, 100);
    assert_counts(&r, 6, 1, 2, 1);
    assert_int_equal(s.calls, 4);
    assert_int_equal(vsink_has_dup(&s), 0);
    assert_int_equal(vsink_count_key(&s, "[2]"), 1);
    assert_int_equal(vsink_count_key(&s, "[3]"), 1);
    assert_int_equal(vsink_count_key(&s, "[5]"), 1);
    assert_int_equal(vsink_count_key(&s, "[6]"), 1);
    for (int i = 0; i < s.calls; i++) {
        if (strcmp(s.m[i].key, "[2]") == 0) {
            assert_int_equal(s.m[i].kind, DW_MISMATCH_DIFFERENT);
            assert_int_equal(s.m[i].ndiffs, 2);
            assert_non_null(find_diff(&s.m[i], "val"));
            assert_non_null(find_diff(&s.m[i], "b"));
        } else if (strcmp(s.m[i].key, "[3]") == 0) {
            assert_int_equal(s.m[i].kind, DW_MISMATCH_MISSING_NEW);
        } else {
            assert_int_equal(s.m[i].kind, DW_MISMATCH_EXTRA_NEW);
        }
    }
    assert_int_equal(stored_kind(t.db, "[2]"), DW_MISMATCH_DIFFERENT);
    assert_int_equal(stored_kind(t.db, "[3]"), DW_MISMATCH_MISSING_NEW);
    assert_int_equal(stored_kind(t.db, "[5]"), DW_MISMATCH_EXTRA_NEW);
    assert_int_equal(stored_kind(t.db, "[6]"), DW_MISMATCH_EXTRA_NEW);
    assert_int_equal(stored_kind(t.db, "[4]"), -1);
    assert_int_equal(stored_kind(t.db, "[1]"), -1);
    vsink_reset(&s);
    dw_close(h);
    test_db_close(&t);
}

/* ---- 2. redaction ----------------------------------------------------------- */

static const char *const redact_secret[] = {"secret"};

static dw_migration *open_redact(sqlite3 *db, const char *name,
                                 unsigned int flags, int redact)
{
    static const dw_column_map up[] = {{"nick", "nick"}, {"secret", "secret"}};
    dw_options o = options_for(name, TEST_SIDE_UNLISTED("p_old", k_id),
                               TEST_SIDE_UNLISTED("p_new", k_id));
    o.up = up;
    o.nup = 2;
    o.flags = flags;
    if (redact) {
        o.redact_columns = redact_secret;
        o.nredact_columns = 1;
    }
    dw_migration *h = open_migration_ok(db, &o);
    return h;
}

static int64_t detail_like(sqlite3 *db, const char *pattern)
{
    return query_int_with(
        db, "SELECT count(*) FROM dw_verify_keys WHERE detail LIKE ?1",
        pattern);
}

static void test_redaction(void **state)
{
    (void)state;
    for (int mode = 0; mode < 3; mode++) {
        /* 0: default; 1: raw values; 2: raw values, secret redacted */
        test_db t;
        db_open(&t);
        exec_ok(t.db,
                "CREATE TABLE p_old(id INTEGER PRIMARY KEY, nick TEXT, secret TEXT);"
                "CREATE TABLE p_new(id INTEGER PRIMARY KEY, nick TEXT, secret TEXT);"
                "INSERT INTO p_old VALUES(7, 'alpha', 'hunter2');"
                "INSERT INTO p_new VALUES(7, 'beta', 'swordfish');");
        dw_migration *h = open_redact(t.db, "redact",
                                      mode ? DW_OPEN_LOG_RAW_VALUES : 0,
                                      mode == 2);
        vsink s;
        memset(&s, 0, sizeof s);
        dw_verify_result r = verify_with(h, &s, 0, 0);
        assert_counts(&r, 1, 0, 0, 1);
        assert_int_equal(s.calls, 1);
        assert_string_equal(s.m[0].key, "[7]");
        assert_int_equal(s.m[0].ndiffs, 2);
        const vdiff *nick = find_diff(&s.m[0], "nick");
        const vdiff *sec = find_diff(&s.m[0], "secret");
        assert_non_null(nick);
        assert_non_null(sec);
        char detail[1024];
        query_text(t.db, "SELECT detail FROM dw_verify_keys", detail,
                   sizeof detail);
        assert_non_null(strstr(detail, "nick"));
        assert_non_null(strstr(detail, "secret"));
        assert_int_equal(detail_like(t.db, "%nick%"), 1);
        int raw_nick = mode >= 1, raw_secret = mode == 1;
        /* nick */
        assert_int_equal(nick->has_old, raw_nick);
        assert_int_equal(nick->has_new, raw_nick);
        assert_int_equal(strstr(nick->old_desc, "alpha") != NULL, raw_nick);
        assert_int_equal(strstr(nick->new_desc, "beta") != NULL, raw_nick);
        assert_int_equal(strstr(detail, "alpha") != NULL, raw_nick);
        assert_int_equal(strstr(detail, "beta") != NULL, raw_nick);
        assert_int_equal(detail_like(t.db, "%alpha%"), raw_nick);
        /* secret */
        assert_int_equal(sec->has_old, raw_secret);
        assert_int_equal(sec->has_new, raw_secret);
        assert_int_equal(strstr(sec->old_desc, "hunter2") != NULL, raw_secret);
        assert_int_equal(strstr(sec->new_desc, "swordfish") != NULL,
                         raw_secret);
        assert_int_equal(strstr(detail, "hunter2") != NULL, raw_secret);
        assert_int_equal(strstr(detail, "swordfish") != NULL, raw_secret);
        assert_int_equal(detail_like(t.db, "%hunter2%"), raw_secret);
        assert_int_equal(detail_like(t.db, "%swordfish%"), raw_secret);
        if (!raw_secret) {
            assert_int_equal(strncmp(sec->old_desc, "text(7):", 8), 0);
            assert_int_equal(strncmp(sec->new_desc, "text(9):", 8), 0);
        }
        /* nowhere else in the state tables either */
        assert_int_equal(query_int(t.db, "SELECT count(*) FROM dw_mismatch_log"),
                         0);
        assert_int_equal(query_int(t.db,
                                   "SELECT count(*) FROM dw_verify_runs WHERE "
                                   "coalesce(range_from, '') || "
                                   "coalesce(range_to, '') LIKE '%hunter2%'"),
                         0);
        vsink_reset(&s);
        dw_close(h);
        test_db_close(&t);
    }
}

/* ---- 3. report limit -------------------------------------------------------- */

static void make_divergent(sqlite3 *db, const char *old_t, const char *new_t,
                           int from, int to)
{
    exec_fmt(db,
             "WITH RECURSIVE c(x) AS (SELECT %d UNION ALL SELECT x+1 FROM c "
             "WHERE x < %d) INSERT INTO %s SELECT x, 'old' || x FROM c;"
             "WITH RECURSIVE c(x) AS (SELECT %d UNION ALL SELECT x+1 FROM c "
             "WHERE x < %d) INSERT INTO %s SELECT x, 'new' || x FROM c;",
             from, to, old_t, from, to, new_t);
}

static void test_report_limit(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    exec_ok(t.db, "CREATE TABLE l_old(id INTEGER PRIMARY KEY, a TEXT);"
                  "CREATE TABLE l_new(id INTEGER PRIMARY KEY, a TEXT);");
    make_divergent(t.db, "l_old", "l_new", 1, 50);
    static const dw_column_map up[] = {{"a", "a"}};
    dw_migration *h = open_two(t.db, "limit", "l_old", "l_new", up, 1, 0);
    vsink s;
    memset(&s, 0, sizeof s);

    static const int chunks[] = {0, 3};
    for (int ci = 0; ci < 2; ci++) {
        dw_verify_result r = verify_with(h, &s, chunks[ci], 5);
        assert_counts(&r, 50, 0, 0, 50);
        assert_int_equal(s.calls, 5);
        assert_int_equal(vsink_has_dup(&s), 0);
        assert_int_equal(stored_keys(t.db, r.run_id, NULL), 50);
        assert_int_equal(stored_keys(t.db, r.run_id, "detail IS NOT NULL"), 5);

        r = verify_with(h, &s, chunks[ci], -1);
        assert_counts(&r, 50, 0, 0, 50);
        assert_int_equal(s.calls, 0);
        assert_int_equal(stored_keys(t.db, r.run_id, NULL), 50);

        /* 0 means the default, 10 */
        r = verify_with(h, &s, chunks[ci], 0);
        assert_counts(&r, 50, 0, 0, 50);
        assert_int_equal(s.calls, 10);
        assert_int_equal(stored_keys(t.db, r.run_id, NULL), 50);

        /* a limit above the count reports every key once */
        r = verify_with(h, &s, chunks[ci], 1000);
        assert_int_equal(s.calls, 50);
        assert_int_equal(vsink_has_dup(&s), 0);
    }
    /* NULL callback with a limit: still counts and stores */
    dw_verify_options vo = DW_VERIFY_OPTIONS_INIT;
    vo.report_limit = 5;
    dw_verify_result r;
    assert_dw_ok(h, dw_verify(&r, h, &vo));
    assert_counts(&r, 50, 0, 0, 50);
    assert_int_equal(stored_keys(t.db, r.run_id, NULL), 50);
    vsink_reset(&s);
    dw_close(h);
    test_db_close(&t);
}

/* ---- 4. chunks against a brute-force count ------------------------------------ */

typedef struct bf {
    int64_t keys, missing, extra, different;
} bf;

/* The four counts for c_old / c_new (column a) in plain SQL. */
static bf brute_force(sqlite3 *db)
{
    bf b;
    b.keys = query_int(db, "SELECT count(*) FROM (SELECT id FROM c_old "
                           "UNION SELECT id FROM c_new)");
    b.missing = query_int(db, "SELECT count(*) FROM (SELECT id FROM c_old "
                              "EXCEPT SELECT id FROM c_new)");
    b.extra = query_int(db, "SELECT count(*) FROM (SELECT id FROM c_new "
                            "EXCEPT SELECT id FROM c_old)");
    b.different = query_int(db, "SELECT count(*) FROM (SELECT id, a FROM c_old "
                                "WHERE id IN (SELECT id FROM c_new) EXCEPT "
                                "SELECT id, a FROM c_new)");
    return b;
}

/* Every divergent key stored for the latest run, and only those: checked
 * against the brute-force sets by the typed key value. */
static void check_stored_keys(sqlite3 *db, const bf *b)
{
    exec_ok(db, "DROP TABLE IF EXISTS temp.exp;"
                "CREATE TEMP TABLE exp(id, kind);"
                "INSERT INTO exp SELECT id, 1 FROM (SELECT id FROM c_old "
                " EXCEPT SELECT id FROM c_new);"
                "INSERT INTO exp SELECT id, 2 FROM (SELECT id FROM c_new "
                " EXCEPT SELECT id FROM c_old);"
                "INSERT INTO exp SELECT id, 3 FROM (SELECT id, a FROM c_old "
                " WHERE id IN (SELECT id FROM c_new) EXCEPT SELECT id, a "
                " FROM c_new);");
    int64_t run = query_int(db, "SELECT max(id) FROM dw_verify_runs");
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM dw_verify_keys WHERE run_id = %lld",
             (long long)run);
    assert_int_equal(query_int(db, sql), b->missing + b->extra + b->different);
    /* each expected key is stored once with its kind */
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM exp WHERE (SELECT count(*) FROM "
             "dw_verify_keys v WHERE v.run_id = %lld AND v.kind = exp.kind "
             "AND json_extract(v.key, '$[0]') IS exp.id AND "
             "json_type(v.key, '$[0]') = CASE typeof(exp.id) WHEN 'integer' "
             "THEN 'integer' ELSE 'text' END) != 1",
             (long long)run);
    int64_t bad = query_int(db, sql);
    if (bad)
        print_error("%lld expected divergent keys not stored as expected\n",
                    (long long)bad);
    assert_int_equal(bad, 0);
    exec_ok(db, "DROP TABLE temp.exp");
}

static void chunk_check(sqlite3 *db, dw_migration *h, const char *what)
{
    static const int chunks[] = {1, 2, 3, 7, 0};
    bf b = brute_force(db);
    vsink s;
    memset(&s, 0, sizeof s);
    print_message("  %s: brute force %lld keys, %lld missing, %lld extra, "
                  "%lld different\n",
                  what, (long long)b.keys, (long long)b.missing,
                  (long long)b.extra, (long long)b.different);
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        dw_verify_result r = verify_with(h, &s, chunks[i], 100000);
        if (r.keys != b.keys || r.missing != b.missing || r.extra != b.extra ||
            r.different != b.different)
            print_error("  %s: wrong counts with chunk_rows %d\n", what,
                        chunks[i]);
        assert_counts(&r, b.keys, b.missing, b.extra, b.different);
        assert_int_equal(r.full, 1);
        assert_int_equal(s.calls, b.missing + b.extra + b.different);
        assert_int_equal(vsink_has_dup(&s), 0);
        int64_t per_kind[4] = {0, 0, 0, 0};
        for (int k = 0; k < s.nkeys; k++) {
            assert_in_range(s.kinds[k], 1, 3);
            per_kind[s.kinds[k]]++;
        }
        assert_int_equal(per_kind[DW_MISMATCH_MISSING_NEW], b.missing);
        assert_int_equal(per_kind[DW_MISMATCH_EXTRA_NEW], b.extra);
        assert_int_equal(per_kind[DW_MISMATCH_DIFFERENT], b.different);
        check_stored_keys(db, &b);
        dw_verify_result last;
        assert_dw_ok(h, dw_verify_last(&last, h));
        assert_int_equal(last.run_id, r.run_id);
        assert_int_equal(last.keys, b.keys);
    }
    vsink_reset(&s);
}

static dw_migration *open_chunks(test_db *t, int without_rowid)
{
    db_open(t);
    if (without_rowid)
        exec_ok(t->db, "CREATE TABLE c_old(id PRIMARY KEY, a) WITHOUT ROWID;"
                       "CREATE TABLE c_new(id PRIMARY KEY, a) WITHOUT ROWID;");
    else
        exec_ok(t->db, "CREATE TABLE c_old(id INTEGER PRIMARY KEY, a TEXT);"
                       "CREATE TABLE c_new(id INTEGER PRIMARY KEY, a TEXT);");
    static const dw_column_map up[] = {{"a", "a"}};
    return open_two(t->db, "chunks", "c_old", "c_new", up, 1, 0);
}

static void test_chunks_layout(void **state)
{
    (void)state;
    test_db t;
    dw_migration *h = open_chunks(&t, 0);
    /* old: 1..10, 20, 30; new: one extra before the first old key, 1..10
     * with divergences at every second or third key, many extras between
     * 10 and 20, 20, 30 changed, many extras after the last old key. */
    exec_ok(t.db,
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c "
            " WHERE x < 10) INSERT INTO c_old SELECT x, 'v' || x FROM c;"
            "INSERT INTO c_old VALUES(20, 'v20'), (30, 'v30');"
            "INSERT INTO c_new VALUES(-3, 'v-3');"
            "INSERT INTO c_new VALUES(1, 'X1'), (2, 'v2'), (3, 'X3'),"
            " (5, 'v5'), (6, 'X6'), (7, 'X7'), (8, 'v8'), (10, 'X10');"
            "WITH RECURSIVE c(x) AS (SELECT 11 UNION ALL SELECT x+1 FROM c "
            " WHERE x < 19) INSERT INTO c_new SELECT x, 'e' || x FROM c;"
            "INSERT INTO c_new VALUES(20, 'v20'), (30, 'X30');"
            "WITH RECURSIVE c(x) AS (SELECT 31 UNION ALL SELECT x+1 FROM c "
            " WHERE x < 45) INSERT INTO c_new SELECT x, 'e' || x FROM c;");
    bf b = brute_force(t.db);
    /* the layout is what the comment says */
    assert_int_equal(b.missing, 2);   /* 4, 9 */
    assert_int_equal(b.extra, 25);    /* -3, 11..19, 31..45 */
    assert_int_equal(b.different, 6); /* 1, 3, 6, 7, 10, 30 */
    assert_int_equal(b.keys, 37);
    chunk_check(t.db, h, "layout");

    /* the extremes of the integer range, and integers beyond a double's
     * precision: key text must carry them exactly */
    exec_ok(t.db,
            "INSERT INTO c_old VALUES(-9223372036854775807 - 1, 'min'),"
            " (9007199254740992, 'p53'), (9007199254740993, 'p53+1');"
            "INSERT INTO c_new VALUES(9007199254740992, 'p53'),"
            " (9007199254740993, 'X'), (9223372036854775807, 'max');");
    b = brute_force(t.db);
    assert_int_equal(b.missing, 3);
    assert_int_equal(b.extra, 26);
    assert_int_equal(b.different, 7);
    chunk_check(t.db, h, "layout with extreme keys");

    /* old side empty */
    exec_ok(t.db, "DELETE FROM c_old");
    chunk_check(t.db, h, "old side empty");
    /* both empty */
    exec_ok(t.db, "DELETE FROM c_new");
    chunk_check(t.db, h, "both empty");
    dw_verify_result r = verify_with(h, NULL, 1, 0);
    assert_counts(&r, 0, 0, 0, 0);
    /* new side empty */
    exec_ok(t.db, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 "
                  "FROM c WHERE x < 12) INSERT INTO c_old SELECT x, 'v' || x "
                  "FROM c;");
    chunk_check(t.db, h, "new side empty");
    /* agreeing sides, one row */
    exec_ok(t.db, "DELETE FROM c_old WHERE id > 1;"
                  "INSERT INTO c_new VALUES(1, 'v1');");
    chunk_check(t.db, h, "one row each, equal");
    dw_close(h);
    test_db_close(&t);
}

/* ---- progress ------------------------------------------------------------ */

typedef struct progress_log {
    int calls;
    int finished_calls;
    int bad;
    dw_verify_progress last;
    int64_t keys[8];
    int64_t totals[8];
} progress_log;

static void log_progress(const dw_verify_progress *p, void *payload)
{
    progress_log *l = payload;
    if (l->calls < 8) {
        l->keys[l->calls] = p->keys;
        l->totals[l->calls] = p->keys_total;
    }
    /* Keys only grow, the total is never below them, and no estimate
     * comes from the first chunk alone. */
    if ((l->calls && p->keys <= l->last.keys) || p->keys_total < p->keys ||
        (l->calls == 0 && (p->keys_per_second != 0 || p->seconds_left != 0)))
        l->bad++;
    l->finished_calls += p->finished;
    l->last = *p;
    l->calls++;
}

/* Keys compared per read transaction, from the progress callback: at
 * most `most`, and every call some. */
typedef struct chunk_log {
    int64_t last, most;
    int calls, bad;
} chunk_log;

static void log_chunk(const dw_verify_progress *p, void *payload)
{
    chunk_log *l = payload;
    if (p->keys - l->last > l->most || (p->keys == l->last && l->calls))
        l->bad++;
    l->last = p->keys;
    l->calls++;
}

static dw_verify_result verify_logged(dw_migration *h, vsink *s, int chunk,
                                      chunk_log *l)
{
    dw_verify_options o = DW_VERIFY_OPTIONS_INIT;
    o.chunk_rows = chunk;
    o.report_limit = 1000;
    o.fn = vsink_fn;
    o.payload = s;
    o.progress = log_chunk;
    o.progress_payload = l;
    vsink_reset(s);
    memset(l, 0, sizeof *l);
    l->most = 2 * (int64_t)chunk; /* a chunk's old keys, then new-only */
    dw_verify_result r;
    assert_dw_ok(h, dw_verify(&r, h, &o));
    return r;
}

/* Keys only on the new side, all of them or interleaved with old keys:
 * each compared once, and no read transaction takes more than a chunk of
 * each side, however the keys fall. */
static void test_chunks_new_only_bounded(void **state)
{
    (void)state;
    test_db t;
    dw_migration *h = open_chunks(&t, 0);
    exec_ok(t.db, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 "
                  "FROM c WHERE x < 60) INSERT INTO c_new SELECT x, 'v' || x "
                  "FROM c;");
    vsink s;
    memset(&s, 0, sizeof s);
    chunk_log l;
    static const int chunks[] = {1, 2, 3, 7, 60, 61, 1000};
    for (size_t ci = 0; ci < sizeof chunks / sizeof *chunks; ci++) {
        /* An empty old side. */
        dw_verify_result r = verify_logged(h, &s, chunks[ci], &l);
        assert_counts(&r, 60, 0, 60, 0);
        assert_int_equal(s.nkeys, 60);
        assert_false(vsink_has_dup(&s));
        assert_int_equal(l.bad, 0);
        assert_true(l.calls >= (60 + chunks[ci] - 1) / chunks[ci]);
    }
    /* Old keys 5, 10, ..., 60 (three changed); the new side has every key
     * but 20 and 40: new-only keys between every two old ones. */
    exec_ok(t.db, "INSERT INTO c_old SELECT id, a FROM c_new WHERE id % 5 = 0;"
                  "DELETE FROM c_new WHERE id IN (20, 40);"
                  "UPDATE c_new SET a = 'X' WHERE id IN (5, 35, 60);");
    for (size_t ci = 0; ci < sizeof chunks / sizeof *chunks; ci++) {
        dw_verify_result r = verify_logged(h, &s, chunks[ci], &l);
        assert_counts(&r, 60, 2, 48, 3);
        assert_int_equal(s.nkeys, 53);
        assert_false(vsink_has_dup(&s));
        assert_int_equal(vsink_count_key(&s, "[20]"), 1);
        assert_int_equal(vsink_count_key(&s, "[1]"), 1);
        assert_int_equal(vsink_count_key(&s, "[59]"), 1);
        assert_int_equal(l.bad, 0);
    }
    vsink_reset(&s);
    dw_close(h);
    test_db_close(&t);
}

/* The progress callback: after each chunk, with the keys compared, the
 * estimated total (the larger side counted at the start) and the
 * divergences so far; exact on the last call. A version 1 options struct,
 * which ends before the callback, is still taken. */
static void test_progress(void **state)
{
    (void)state;
    test_db t;
    dw_migration *h = open_chunks(&t, 0);
    /* old 1..2500; new the same but 2491..2500 missing and 5 extra past the
     * end, 3 different: 2505 keys, 2500 counted on the larger side. */
    exec_ok(t.db,
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c "
            " WHERE x < 2500) INSERT INTO c_old SELECT x, 'v' || x FROM c;"
            "INSERT INTO c_new SELECT id, a FROM c_old WHERE id <= 2490;"
            "UPDATE c_new SET a = 'X' WHERE id IN (7, 1500, 2400);"
            "INSERT INTO c_new VALUES(3001, 'e'), (3002, 'e'), (3003, 'e'),"
            " (3004, 'e'), (3005, 'e');");
    progress_log l;
    memset(&l, 0, sizeof l);
    dw_verify_options o = DW_VERIFY_OPTIONS_INIT;
    o.progress = log_progress;
    o.progress_payload = &l;
    dw_verify_result r;
    assert_dw_ok(h, dw_verify(&r, h, &o));
    assert_int_equal(r.keys, 2505);
    assert_int_equal(l.calls, 3);
    assert_int_equal(l.bad, 0);
    assert_int_equal(l.keys[0], 1000);
    assert_int_equal(l.totals[0], 2500);
    assert_int_equal(l.keys[1], 2000);
    assert_int_equal(l.totals[1], 2500);
    assert_int_equal(l.finished_calls, 1);
    assert_true(l.last.finished);
    assert_int_equal(l.last.keys, 2505);
    assert_int_equal(l.last.keys_total, 2505);
    assert_int_equal(l.last.divergent, 18);
    assert_true(l.last.seconds_left == 0);

    /* A version 1 struct, allocated to its own size (a sanitizer sees a
     * read past it): taken, and no progress is asked for. */
    size_t v1_size = offsetof(dw_verify_options, progress);
    dw_verify_options *v1 = malloc(v1_size);
    assert_non_null(v1);
    o.version = 1;
    memcpy(v1, &o, v1_size);
    memset(&l, 0, sizeof l);
    assert_dw_ok(h, dw_verify(&r, h, v1));
    free(v1);
    assert_int_equal(r.keys, 2505);
    assert_int_equal(l.calls, 0);
    dw_close(h);
    test_db_close(&t);
}

/* A deterministic pseudo-random layout. */
static uint32_t lcg(uint32_t *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return (*seed >> 16) & 0x7fff;
}

/* A writer between chunks (here the progress callback, outside the
 * read transactions) deletes an old key the new side also has and adds
 * one: every key of the sides is still compared once -- the first chunk
 * ends at the smaller of the sides' chunk_rows-th keys and its passes end
 * there, so nothing it read is read again and nothing after it is left
 * behind. */
typedef struct chunk_writer {
    sqlite3 *db;
    int calls;
} chunk_writer;

static void write_between_chunks(const dw_verify_progress *p, void *payload)
{
    (void)p;
    chunk_writer *w = payload;
    if (w->calls++ == 0)
        exec_ok(w->db, "DELETE FROM c_old WHERE id = 10;"
                       "INSERT INTO c_old VALUES(5, 'v5');");
}

static void test_chunks_writer_between(void **state)
{
    (void)state;
    test_db t;
    dw_migration *h = open_chunks(&t, 0);
    /* Old: 1 and 10; new: 1 to 10. */
    exec_ok(t.db, "INSERT INTO c_old VALUES(1, 'v1'), (10, 'v10');"
                  "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 "
                  "FROM c WHERE x < 10) INSERT INTO c_new SELECT x, 'v' || x "
                  "FROM c;");
    vsink s;
    memset(&s, 0, sizeof s);
    chunk_writer w = {t.db, 0};
    dw_verify_options o = DW_VERIFY_OPTIONS_INIT;
    o.chunk_rows = 2;
    o.report_limit = 1000;
    o.fn = vsink_fn;
    o.payload = &s;
    o.progress = write_between_chunks;
    o.progress_payload = &w;
    dw_verify_result r;
    assert_dw_ok(h, dw_verify(&r, h, &o));
    assert_true(w.calls > 1);
    /* Keys 2 to 10 but 5 only on the new side when compared. */
    assert_counts(&r, 10, 0, 8, 0);
    assert_false(vsink_has_dup(&s));
    assert_int_equal(vsink_count_key(&s, "[10]"), 1);
    assert_int_equal(vsink_count_key(&s, "[5]"), 0);
    vsink_reset(&s);
    dw_close(h);
    test_db_close(&t);
}

/* A key that is not INTEGER, REAL or TEXT on a row whose two sides are
 * equal is refused as on any other row: the SQL that leaves equal rows
 * out of C checks the key's type too, so the run never comes out clean. */
static void test_blob_key_on_equal_row(void **state)
{
    (void)state;
    for (int one = 0; one <= 1; one++) {
        test_db t;
        db_open(&t);
        dw_migration *h;
        if (one) {
            exec_ok(t.db, "CREATE TABLE b_one(k PRIMARY KEY, v TEXT, w TEXT);"
                          "INSERT INTO b_one VALUES(1, 'a', 'a'),"
                          " (x'01', 'b', 'b'), (3, 'c', 'c');");
            static const char *const key[] = {"k"};
            static const char *const ocols[] = {"v"};
            static const char *const ncols[] = {"w"};
            dw_options o = options_for("blob_one",
                                       TEST_SIDE("b_one", key, ocols),
                                       TEST_SIDE("b_one", key, ncols));
            static const dw_column_map up[] = {{"w", "v"}};
            o.up = up;
            o.nup = 1;
            h = open_migration_ok(t.db, &o);
        } else {
            exec_ok(t.db, "CREATE TABLE b_old(k PRIMARY KEY, v TEXT);"
                          "CREATE TABLE b_new(k PRIMARY KEY, v TEXT);"
                          "INSERT INTO b_old VALUES(1, 'a'), (x'01', 'b'),"
                          " (3, 'c');"
                          "INSERT INTO b_new SELECT * FROM b_old;");
            static const char *const key[] = {"k"};
            dw_options o = options_for("blob_two",
                                       TEST_SIDE_UNLISTED("b_old", key),
                                       TEST_SIDE_UNLISTED("b_new", key));
            static const dw_column_map up[] = {{"v", "v"}};
            o.up = up;
            o.nup = 1;
            h = open_migration_ok(t.db, &o);
        }
        dw_verify_result r;
        assert_int_equal(dw_verify(&r, h, NULL), DW_EMISUSE);
        assert_non_null(strstr(dw_errmsg(h), "BLOB"));
        assert_false(r.finished);
        dw_close(h);
        test_db_close(&t);
    }
}

/* A BLOB key only the new side holds is refused naming that side and its
 * table, whichever pass meets it first -- with one key a chunk, the end of
 * the first chunk is that key. */
static void test_blob_key_new_side_named(void **state)
{
    (void)state;
    static const int chunk_rows[] = {1, 1000};
    for (size_t i = 0; i < sizeof chunk_rows / sizeof *chunk_rows; i++) {
        test_db t;
        db_open(&t);
        exec_ok(t.db, "CREATE TABLE n_old(k PRIMARY KEY, v TEXT);"
                      "CREATE TABLE n_new(k PRIMARY KEY, v TEXT);"
                      "INSERT INTO n_old VALUES(1, 'a'), (2, 'b'), (3, 'c');"
                      "INSERT INTO n_new VALUES(1, 'a'), (x'01', 'b'),"
                      " (3, 'c');");
        static const char *const key[] = {"k"};
        dw_options o = options_for("blob_new",
                                   TEST_SIDE_UNLISTED("n_old", key),
                                   TEST_SIDE_UNLISTED("n_new", key));
        static const dw_column_map up[] = {{"v", "v"}};
        o.up = up;
        o.nup = 1;
        dw_migration *h = open_migration_ok(t.db, &o);
        dw_verify_options vo = DW_VERIFY_OPTIONS_INIT;
        vo.chunk_rows = chunk_rows[i];
        dw_verify_result r;
        assert_int_equal(dw_verify(&r, h, &vo), DW_EMISUSE);
        assert_non_null(strstr(dw_errmsg(h), "new side"));
        assert_non_null(strstr(dw_errmsg(h), "n_new"));
        assert_non_null(strstr(dw_errmsg(h), "BLOB"));
        dw_close(h);
        test_db_close(&t);
    }
}

static int every_value_differs(const char *column, const dw_value *a,
                               const dw_value *b, void *payload)
{
    (void)column;
    (void)a;
    (void)b;
    (void)payload;
    return 1;
}

/* Read options set from the progress callback after the first chunk: a
 * comparator needs every row in C, so the SQL that leaves equal rows out
 * stops doing so from the next chunk on. */
static void set_comparator_after_first(const dw_verify_progress *p,
                                       void *payload)
{
    dw_migration *h = payload;
    if (p->keys != 1)
        return;
    dw_read_options ro = DW_READ_OPTIONS_INIT;
    ro.compare = every_value_differs;
    assert_int_equal(dw_set_read_options(h, &ro), DW_OK);
}

static void test_read_options_set_mid_run(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    exec_ok(t.db, "CREATE TABLE m_old(id INTEGER PRIMARY KEY, v TEXT);"
                  "CREATE TABLE m_new(id INTEGER PRIMARY KEY, v TEXT);"
                  "INSERT INTO m_old VALUES(1, 'a'), (2, 'b'), (3, 'c');"
                  "INSERT INTO m_new SELECT * FROM m_old;");
    static const char *const key[] = {"id"};
    static const char *const cols[] = {"v"};
    dw_options o = options_for("mid_run", TEST_SIDE("m_old", key, cols),
                               TEST_SIDE("m_new", key, cols));
    static const dw_column_map up[] = {{"v", "v"}};
    o.up = up;
    o.nup = 1;
    dw_migration *h = open_migration_ok(t.db, &o);
    dw_verify_options vo = DW_VERIFY_OPTIONS_INIT;
    vo.chunk_rows = 1;
    vo.progress = set_comparator_after_first;
    vo.progress_payload = h;
    dw_verify_result r;
    assert_dw_ok(h, dw_verify(&r, h, &vo));
    assert_counts(&r, 3, 0, 0, 2);
    dw_close(h);
    test_db_close(&t);
}

/* A key column whose collation is not its unique index's is refused when
 * the migration opens: ranges would compare the keys one way and the
 * index tell them apart another (a NOCASE column under a BINARY index
 * holds 'a' and 'A', which a range cannot divide), either way round. */
static void test_key_collation_not_the_index(void **state)
{
    (void)state;
    static const struct {
        const char *col, *index;
    } cases[] = {
        {"TEXT COLLATE NOCASE", "k COLLATE BINARY"},
        {"TEXT", "k COLLATE NOCASE"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int one = 0; one <= 1; one++) {
            test_db t;
            db_open(&t);
            exec_fmt(t.db,
                     "CREATE TABLE l_old(k %s NOT NULL, v TEXT, w TEXT);"
                     "CREATE UNIQUE INDEX l_old_k ON l_old(%s);"
                     "CREATE TABLE l_new(k %s NOT NULL, v TEXT);"
                     "CREATE UNIQUE INDEX l_new_k ON l_new(%s);",
                     cases[i].col, cases[i].index, cases[i].col,
                     cases[i].index);
            static const char *const key[] = {"k"};
            static const char *const vcol[] = {"v"};
            static const char *const wcol[] = {"w"};
            dw_options o = options_for(
                "coll", TEST_SIDE("l_old", key, vcol),
                one ? TEST_SIDE("l_old", key, wcol)
                    : TEST_SIDE("l_new", key, vcol));
            static const dw_column_map up_v[] = {{"v", "v"}};
            static const dw_column_map up_w[] = {{"w", "v"}};
            o.up = one ? up_w : up_v;
            o.nup = 1;
            dw_migration *h = NULL;
            char *err = NULL;
            int rc = dw_sqlite_open(&h, t.db, &o, &err);
            if (rc != DW_ESCHEMA)
                print_error("%s / %s, %s: %d %s\n", cases[i].col,
                            cases[i].index, one ? "one table" : "two",
                            rc, err ? err : "");
            assert_int_equal(rc, DW_ESCHEMA);
            assert_null(h);
            assert_non_null(err);
            assert_non_null(strstr(err, "collation"));
            assert_non_null(strstr(err, "l_old"));
            dw_free(err);
            test_db_close(&t);
        }
}

static void test_chunks_random(void **state)
{
    (void)state;
    test_db t;
    dw_migration *h = open_chunks(&t, 0);
    uint32_t seed = 20240611u;
    sqlite3_stmt *ins_old = NULL, *ins_new = NULL;
    assert_int_equal(sqlite3_prepare_v2(t.db, "INSERT INTO c_old VALUES(?1, ?2)",
                                        -1, &ins_old, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(t.db, "INSERT INTO c_new VALUES(?1, ?2)",
                                        -1, &ins_new, NULL),
                     SQLITE_OK);
    exec_ok(t.db, "BEGIN");
    for (int id = 1; id <= 400; id++) {
        int in_old = lcg(&seed) % 10 < 7, in_new = lcg(&seed) % 10 < 7;
        int differ = lcg(&seed) % 10 < 3;
        char v[32];
        snprintf(v, sizeof v, "v%d", id);
        if (in_old) {
            sqlite3_bind_int(ins_old, 1, id);
            sqlite3_bind_text(ins_old, 2, v, -1, SQLITE_TRANSIENT);
            assert_int_equal(sqlite3_step(ins_old), SQLITE_DONE);
            sqlite3_reset(ins_old);
        }
        if (in_new) {
            if (differ)
                snprintf(v, sizeof v, "w%d", id);
            sqlite3_bind_int(ins_new, 1, id);
            sqlite3_bind_text(ins_new, 2, v, -1, SQLITE_TRANSIENT);
            assert_int_equal(sqlite3_step(ins_new), SQLITE_DONE);
            sqlite3_reset(ins_new);
        }
    }
    exec_ok(t.db, "COMMIT");
    sqlite3_finalize(ins_old);
    sqlite3_finalize(ins_new);
    bf b = brute_force(t.db);
    assert_true(b.missing > 10 && b.extra > 10 && b.different > 10);
    chunk_check(t.db, h, "random");
    dw_close(h);
    test_db_close(&t);
}

/* Keys of both storage classes in one untyped key column: integers sort
 * before text, 5 and '5' are different keys. */
static void test_chunks_mixed_key_types(void **state)
{
    (void)state;
    test_db t;
    dw_migration *h = open_chunks(&t, 1);
    exec_ok(t.db,
            "INSERT INTO c_old VALUES(1, 'a'), (2, 'b'), (5, 'five'),"
            " (9, 'n'), ('5', 'five'), ('a', 'x'), ('b', 'y'), ('z', 'z');"
            "INSERT INTO c_new VALUES(1, 'a'), (2, 'B'), (9, 'n'),"
            " ('5', 'five'), ('10', 't'), ('a', 'x'), ('b', 'Y'),"
            " ('m', 'm'), ('z', 'z');");
    bf b = brute_force(t.db);
    assert_int_equal(b.missing, 1);   /* 5 */
    assert_int_equal(b.extra, 2);     /* '10', 'm' */
    assert_int_equal(b.different, 2); /* 2, 'b' */
    chunk_check(t.db, h, "mixed key types");
    vsink s;
    memset(&s, 0, sizeof s);
    verify_with(h, &s, 1, 100);
    assert_int_equal(vsink_count_key(&s, "[5]"), 1);
    assert_int_equal(vsink_count_key(&s, "[\"5\"]"), 0);
    assert_int_equal(vsink_count_key(&s, "[\"10\"]"), 1);
    assert_int_equal(vsink_count_key(&s, "[\"b\"]"), 1);
    vsink_reset(&s);
    dw_close(h);
    test_db_close(&t);
}

/* ---- 5. ranges -------------------------------------------------------------- */

static void test_range(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    exec_ok(t.db, "CREATE TABLE g_old(id INTEGER PRIMARY KEY, a TEXT);"
                  "CREATE TABLE g_new(id INTEGER PRIMARY KEY, a TEXT);");
    /* 1..10 all different; then key 3 only on the new side (extra) and key
     * 7 only on the old side (missing): the range ends. */
    make_divergent(t.db, "g_old", "g_new", 1, 10);
    exec_ok(t.db, "DELETE FROM g_old WHERE id = 3; DELETE FROM g_new WHERE id = 7;");
    static const dw_column_map up[] = {{"a", "a"}};
    dw_migration *h = open_two(t.db, "range", "g_old", "g_new", up, 1, 0);
    vsink s;
    memset(&s, 0, sizeof s);
    static const int chunks[] = {1, 2, 0};
    for (int ci = 0; ci < 3; ci++) {
        dw_value from = dw_int(3), to = dw_int(7);
        dw_verify_result r = verify_range(h, &s, &from, 1, &to, 1, chunks[ci]);
        assert_counts(&r, 5, 1, 1, 3);
        assert_int_equal(r.full, 0);
        assert_int_equal(vsink_count_key(&s, "[3]"), 1);
        assert_int_equal(vsink_count_key(&s, "[7]"), 1);
        assert_int_equal(vsink_count_key(&s, "[2]"), 0);
        assert_int_equal(vsink_count_key(&s, "[8]"), 0);
        assert_int_equal(stored_keys(t.db, r.run_id, NULL), 5);
        assert_int_equal(stored_kind(t.db, "[3]"), DW_MISMATCH_EXTRA_NEW);
        assert_int_equal(stored_kind(t.db, "[7]"), DW_MISMATCH_MISSING_NEW);
        assert_int_equal(stored_kind(t.db, "[2]"), -1);
        assert_int_equal(stored_kind(t.db, "[8]"), -1);
        dw_verify_result last;
        assert_dw_ok(h, dw_verify_last(&last, h));
        assert_int_equal(last.run_id, r.run_id);
        assert_int_equal(last.full, 0);
        assert_int_equal(last.keys, 5);

        /* open upper end: 8, 9, 10 */
        from = dw_int(8);
        r = verify_range(h, &s, &from, 1, NULL, 0, chunks[ci]);
        assert_counts(&r, 3, 0, 0, 3);
        assert_int_equal(r.full, 0);
        assert_int_equal(vsink_count_key(&s, "[7]"), 0);
        assert_int_equal(vsink_count_key(&s, "[8]"), 1);
        assert_int_equal(vsink_count_key(&s, "[10]"), 1);

        /* open lower end: 1, 2, 3 */
        to = dw_int(3);
        r = verify_range(h, &s, NULL, 0, &to, 1, chunks[ci]);
        assert_counts(&r, 3, 0, 1, 2);
        assert_int_equal(r.full, 0);
        assert_int_equal(vsink_count_key(&s, "[3]"), 1);
        assert_int_equal(vsink_count_key(&s, "[4]"), 0);

        /* one key: from == to */
        from = dw_int(7);
        to = dw_int(7);
        r = verify_range(h, &s, &from, 1, &to, 1, chunks[ci]);
        assert_counts(&r, 1, 1, 0, 0);
        assert_int_equal(r.full, 0);

        /* a range with no keys in it */
        from = dw_int(100);
        to = dw_int(200);
        r = verify_range(h, &s, &from, 1, &to, 1, chunks[ci]);
        assert_counts(&r, 0, 0, 0, 0);
        assert_int_equal(r.full, 0);

        /* bounds that are not keys of either table */
        from = dw_int(-50);
        to = dw_int(50);
        r = verify_range(h, &s, &from, 1, &to, 1, chunks[ci]);
        assert_counts(&r, 10, 1, 1, 8);
        assert_int_equal(r.full, 0);

        /* no range: full */
        r = verify_range(h, &s, NULL, 0, NULL, 0, chunks[ci]);
        assert_counts(&r, 10, 1, 1, 8);
        assert_int_equal(r.full, 1);
    }

    /* bad ranges */
    int64_t runs = query_int(t.db, "SELECT count(*) FROM dw_verify_runs");
    dw_value two[2] = {dw_int(1), dw_int(2)};
    dw_value f = dw_float(3.0), ok = dw_int(3);
    dw_verify_result r;
    struct {
        const dw_value *from;
        int nfrom;
        const dw_value *to;
        int nto;
    } bad[] = {
        {two, 2, NULL, 0},  {NULL, 0, two, 2},  {&ok, 0, NULL, 0},
        {NULL, 1, NULL, 0}, {NULL, 0, NULL, 1}, {&f, 1, NULL, 0},
        {NULL, 0, &f, 1},   {&ok, 1, &f, 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dw_verify_options vo = DW_VERIFY_OPTIONS_INIT;
        vo.from = bad[i].from;
        vo.nfrom = bad[i].nfrom;
        vo.to = bad[i].to;
        vo.nto = bad[i].nto;
        memset(&r, 0x5a, sizeof r);
        assert_dw(h, dw_verify(&r, h, &vo), DW_EMISUSE);
        assert_string_not_equal(dw_errmsg(h), "not an error");
        assert_int_equal(r.run_id, 0);
    }
    /* refused ranges store no run */
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM dw_verify_runs"),
                     runs);
    vsink_reset(&s);
    dw_close(h);
    test_db_close(&t);
}

/* ---- 6. composite key ------------------------------------------------------- */

static const char *const k_comp[] = {"org", "num"};

static void test_composite_key(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    exec_ok(t.db,
            "CREATE TABLE o_old(org TEXT, num INTEGER, v TEXT,"
            " PRIMARY KEY(org, num)) WITHOUT ROWID;"
            "CREATE TABLE o_new(org TEXT, num INTEGER, v TEXT,"
            " PRIMARY KEY(org, num)) WITHOUT ROWID;"
            "INSERT INTO o_old VALUES('a', 1, 's'), ('a', 2, 'x'),"
            " ('a', 10, 's'), ('b', 1, 's'), ('b\"q', 3, 'x'),"
            " (char(9) || 'tab', 2, 'x'), ('\xc3\xa9', 1, 's');"
            "INSERT INTO o_new VALUES('a', 1, 's'), ('a', 2, 'y'),"
            " ('a', 10, 's'), ('b\"q', 3, 'y'), ('c\\d', 1, 's'),"
            " (char(9) || 'tab', 2, 'y'), ('\xc3\xa9', 1, 's');");
    static const dw_column_map up[] = {{"v", "v"}};
    dw_options o = options_for("composite", TEST_SIDE_UNLISTED("o_old", k_comp),
                               TEST_SIDE_UNLISTED("o_new", k_comp));
    o.up = up;
    o.nup = 1;
    dw_migration *h = open_migration_ok(t.db, &o);
    assert_dw_ok(h, stage_force(h, DW_STAGE_SHADOW));
    vsink s;
    memset(&s, 0, sizeof s);
    static const int chunks[] = {1, 2, 3, 0};
    for (int ci = 0; ci < 4; ci++) {
        dw_verify_result r = verify_with(h, &s, chunks[ci], 100);
        assert_counts(&r, 8, 1, 1, 3);
        assert_int_equal(s.calls, 5);
        assert_int_equal(vsink_has_dup(&s), 0);
        assert_int_equal(vsink_count_key(&s, "[\"a\",2]"), 1);
        assert_int_equal(vsink_count_key(&s, "[\"b\",1]"), 1);
        assert_int_equal(vsink_count_key(&s, "[\"b\\\"q\",3]"), 1);
        assert_int_equal(vsink_count_key(&s, "[\"c\\\\d\",1]"), 1);
        assert_int_equal(vsink_count_key(&s, "[\"\\u0009tab\",2]"), 1);
        assert_int_equal(stored_kind(t.db, "[\"b\",1]"),
                         DW_MISMATCH_MISSING_NEW);
        assert_int_equal(stored_kind(t.db, "[\"c\\\\d\",1]"),
                         DW_MISMATCH_EXTRA_NEW);
        assert_int_equal(stored_kind(t.db, "[\"a\",2]"), DW_MISMATCH_DIFFERENT);
    }
    /* A range over the composite key, both ends inclusive: ('a', 2) ..
     * ('b', 1) holds ('a', 2), ('a', 10) and ('b', 1); ('a', 1) and
     * ('b"q', 3) are just outside. */
    for (int ci = 0; ci < 4; ci++) {
        dw_value from[2] = {dw_text("a"), dw_int(2)};
        dw_value to[2] = {dw_text("b"), dw_int(1)};
        dw_verify_result r = verify_range(h, &s, from, 2, to, 2, chunks[ci]);
        assert_counts(&r, 3, 1, 0, 1);
        assert_int_equal(r.full, 0);
        assert_int_equal(vsink_count_key(&s, "[\"a\",2]"), 1);
        assert_int_equal(vsink_count_key(&s, "[\"b\",1]"), 1);
        assert_int_equal(vsink_count_key(&s, "[\"b\\\"q\",3]"), 0);
        /* the integer part orders numerically: ('a', 2) .. ('a', 10) */
        dw_value to2[2] = {dw_text("a"), dw_int(10)};
        r = verify_range(h, &s, from, 2, to2, 2, chunks[ci]);
        assert_counts(&r, 2, 0, 0, 1);
    }
    /* a key of the wrong shape */
    dw_value one = dw_text("a");
    dw_verify_options vo = DW_VERIFY_OPTIONS_INIT;
    vo.from = &one;
    vo.nfrom = 1;
    dw_verify_result r;
    assert_dw(h, dw_verify(&r, h, &vo), DW_EMISUSE);

    /* every divergent key repaired, escaped text keys included */
    verify_with(h, NULL, 0, 0);
    dw_repair_result rr;
    assert_dw_ok(h, dw_repair_divergent(&rr, h));
    assert_int_equal(rr.repaired, 5);
    assert_int_equal(rr.failed, 0);
    r = verify_with(h, &s, 2, 0);
    assert_counts(&r, 7, 0, 0, 0);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM o_new WHERE org = "
                                     "'c\\d'"),
                     0);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM o_new WHERE org = "
                                     "char(9) || 'tab' AND v = 'x'"),
                     1);
    vsink_reset(&s);
    dw_close(h);
    test_db_close(&t);
}

/* ---- 7. C mapping and one-table migrations ----------------------------------- */

typedef struct map_ctl {
    int calls;
    int fail; /* fail when the status is 'boom' */
} map_ctl;

static int status_up(dw_row *out, const dw_row *in, void *payload)
{
    map_ctl *c = payload;
    c->calls++;
    const dw_value *s = dw_row_get(in, "status");
    if (!s)
        return DW_ECALLBACK;
    if (s->type == DW_TYPE_TEXT && strcmp((const char *)s->p, "boom") == 0 &&
        c->fail)
        return DW_ECALLBACK;
    int code = s->type == DW_TYPE_TEXT &&
                       strcmp((const char *)s->p, "closed") == 0
                   ? 2
                   : 1;
    return dw_row_set_int(out, "status_code", code);
}

static void test_c_mapping(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    exec_ok(t.db,
            "CREATE TABLE s_old(id INTEGER PRIMARY KEY, status TEXT);"
            "CREATE TABLE s_new(id INTEGER PRIMARY KEY, status_code INTEGER);"
            "INSERT INTO s_old VALUES(1, 'open'), (2, 'closed'), (3, 'open'),"
            " (4, 'closed');"
            "INSERT INTO s_new VALUES(1, 1), (2, 1), (3, 1), (5, 2);");
    map_ctl ctl = {0, 0};
    dw_options o = options_for("c_map", TEST_SIDE_UNLISTED("s_old", k_id),
                               TEST_SIDE_UNLISTED("s_new", k_id));
    o.up_fn = status_up;
    o.map_payload = &ctl;
    o.map_version = "status_up v1";
    dw_migration *h = open_migration_ok(t.db, &o);
    assert_dw_ok(h, stage_force(h, DW_STAGE_SHADOW));
    vsink s;
    memset(&s, 0, sizeof s);
    static const int chunks[] = {1, 2, 0};
    for (int ci = 0; ci < 3; ci++) {
        ctl.calls = 0;
        dw_verify_result r = verify_with(h, &s, chunks[ci], 100);
        assert_counts(&r, 5, 1, 1, 1);
        assert_true(ctl.calls >= 3); /* every old row is mapped */
        assert_int_equal(s.calls, 3);
        assert_int_equal(vsink_count_key(&s, "[2]"), 1);
        assert_int_equal(vsink_count_key(&s, "[4]"), 1);
        assert_int_equal(vsink_count_key(&s, "[5]"), 1);
        for (int i = 0; i < s.calls; i++)
            if (strcmp(s.m[i].key, "[2]") == 0) {
                assert_int_equal(s.m[i].kind, DW_MISMATCH_DIFFERENT);
                assert_int_equal(s.m[i].ndiffs, 1);
                assert_string_equal(s.m[i].d[0].column, "status_code");
            }
    }
    /* a failing callback fails the run: DW_ECALLBACK, stored unfinished */
    exec_ok(t.db, "UPDATE s_old SET status = 'boom' WHERE id = 3");
    ctl.fail = 1;
    dw_verify_result before;
    assert_dw_ok(h, dw_verify_last(&before, h));
    dw_verify_result r;
    assert_dw(h, dw_verify(&r, h, NULL), DW_ECALLBACK);
    dw_verify_result last;
    assert_dw_ok(h, dw_verify_last(&last, h));
    assert_true(last.run_id > before.run_id);
    assert_int_equal(last.finished, 0);
    assert_int_equal(last.clean, 0);
    assert_int_equal(last.keys + last.missing + last.extra + last.different,
                     0);
    ctl.fail = 0;
    exec_ok(t.db, "UPDATE s_old SET status = 'open' WHERE id = 3");

    /* repair through the callback */
    r = verify_with(h, NULL, 0, 0);
    assert_counts(&r, 5, 1, 1, 1);
    dw_repair_result rr;
    assert_dw_ok(h, dw_repair_divergent(&rr, h));
    assert_int_equal(rr.repaired, 3);
    assert_int_equal(rr.failed, 0);
    r = verify_with(h, NULL, 0, 0);
    assert_counts(&r, 4, 0, 0, 0);
    assert_int_equal(query_int(t.db, "SELECT status_code FROM s_new WHERE id = 2"),
                     2);
    assert_int_equal(query_int(t.db, "SELECT status_code FROM s_new WHERE id = 4"),
                     2);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM s_new WHERE id = 5"),
                     0);
    vsink_reset(&s);
    dw_close(h);
    test_db_close(&t);
}

/* The new side's columns listed in another order than the mapping's
 * entries: each value is compared with its own column. */
static void test_mapping_order(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    exec_ok(t.db, "CREATE TABLE m_old(id INTEGER PRIMARY KEY, x TEXT, y TEXT);"
                  "CREATE TABLE m_new(id INTEGER PRIMARY KEY, a TEXT, b TEXT,"
                  " c TEXT);"
                  "INSERT INTO m_old VALUES(1, 'p', 'q'), (2, 'p', 'q'),"
                  " (3, 'p', 'q');"
                  "INSERT INTO m_new VALUES(1, 'P', 'q', 'n1'),"
                  " (2, 'P', 'Q', 'n2'), (3, 'q', 'q', 'n3');");
    static const char *const new_cols[] = {"b", "a"};
    static const dw_column_map up[] = {{"a", "upper(x)"}, {"b", "y"}};
    dw_options o = options_for("order", TEST_SIDE_UNLISTED("m_old", k_id),
                               TEST_SIDE("m_new", k_id, new_cols));
    o.up = up;
    o.nup = 2;
    dw_migration *h = open_migration_ok(t.db, &o);
    vsink s;
    memset(&s, 0, sizeof s);
    dw_verify_result r = verify_with(h, &s, 0, 100);
    /* 1 agrees; 2 differs in b; 3 differs in a; c is not in the model */
    assert_counts(&r, 3, 0, 0, 2);
    for (int i = 0; i < s.calls; i++) {
        assert_int_equal(s.m[i].ndiffs, 1);
        if (strcmp(s.m[i].key, "[2]") == 0)
            assert_string_equal(s.m[i].d[0].column, "b");
        else {
            assert_string_equal(s.m[i].key, "[3]");
            assert_string_equal(s.m[i].d[0].column, "a");
        }
    }
    assert_dw_ok(h, stage_force(h, DW_STAGE_SHADOW));
    dw_repair_result rr;
    assert_dw_ok(h, dw_repair_divergent(&rr, h));
    assert_int_equal(rr.repaired, 2);
    r = verify_with(h, NULL, 0, 0);
    assert_counts(&r, 3, 0, 0, 0);
    char buf[64];
    assert_string_equal(query_text(t.db,
                                   "SELECT group_concat(a || b || c, ',') FROM "
                                   "(SELECT * FROM m_new ORDER BY id)",
                                   buf, sizeof buf),
                        "Pqn1,Pqn2,Pqn3");
    vsink_reset(&s);
    dw_close(h);
    test_db_close(&t);
}

/* An SQL mapping with a scalar subquery into a lookup table that has a
 * column of the same name as the key, qualified with the old table's name
 * as the spec says. */
static void test_subquery_mapping(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    exec_ok(t.db,
            "CREATE TABLE statuses(id INTEGER PRIMARY KEY, name TEXT, code INTEGER);"
            "INSERT INTO statuses VALUES(1, 'open', 10), (2, 'closed', 20);"
            "CREATE TABLE s_old(id INTEGER PRIMARY KEY, status TEXT);"
            "CREATE TABLE s_new(id INTEGER PRIMARY KEY, status_code INTEGER);"
            "INSERT INTO s_old VALUES(1, 'open'), (2, 'closed'), (3, 'open'),"
            " (4, 'closed'), (5, 'unknown');"
            "INSERT INTO s_new VALUES(1, 10), (2, 10), (3, 10), (4, 20),"
            " (5, NULL);");
    static const dw_column_map up[] = {
        {"status_code",
         "(SELECT code FROM statuses WHERE statuses.name = s_old.status)"}};
    dw_migration *h = open_two(t.db, "lookup", "s_old", "s_new", up, 1, 0);
    assert_dw_ok(h, stage_force(h, DW_STAGE_SHADOW));
    vsink s;
    memset(&s, 0, sizeof s);
    static const int chunks[] = {1, 2, 0};
    for (int ci = 0; ci < 3; ci++) {
        dw_verify_result r = verify_with(h, &s, chunks[ci], 100);
        assert_counts(&r, 5, 0, 0, 1);
        assert_string_equal(s.m[0].key, "[2]");
        dw_value from = dw_int(2), to = dw_int(4);
        r = verify_range(h, &s, &from, 1, &to, 1, chunks[ci]);
        assert_counts(&r, 3, 0, 0, 1);
        from = dw_int(3);
        r = verify_range(h, &s, &from, 1, &to, 1, chunks[ci]);
        assert_counts(&r, 2, 0, 0, 0);
    }
    verify_with(h, NULL, 0, 0);
    dw_repair_result rr;
    assert_dw_ok(h, dw_repair_divergent(&rr, h));
    assert_int_equal(rr.repaired, 1);
    assert_int_equal(query_int(t.db, "SELECT status_code FROM s_new WHERE id = 2"),
                     20);
    dw_verify_result r = verify_with(h, NULL, 0, 0);
    assert_counts(&r, 5, 0, 0, 0);
    vsink_reset(&s);
    dw_close(h);
    test_db_close(&t);
}

static const char *const status_cols[] = {"status"};
static const char *const code_cols[] = {"status_code"};

static void one_table(int with_callback)
{
    test_db t;
    db_open(&t);
    exec_ok(t.db, "CREATE TABLE tickets(id INTEGER PRIMARY KEY,"
                  " owner TEXT NOT NULL, status TEXT NOT NULL,"
                  " status_code INTEGER);"
                  "INSERT INTO tickets VALUES(1, 'ann', 'open', 1),"
                  " (2, 'bob', 'closed', NULL), (3, 'cy', 'open', 2),"
                  " (4, 'di', 'closed', 2);");
    static const dw_column_map up[] = {
        {"status_code",
         "CASE status WHEN 'open' THEN 1 WHEN 'closed' THEN 2 END"}};
    map_ctl ctl = {0, 0};
    dw_options o =
        options_for("one_table", TEST_SIDE("tickets", k_id, status_cols),
                    TEST_SIDE("tickets", k_id, code_cols));
    if (with_callback) {
        o.up_fn = status_up;
        o.map_payload = &ctl;
        o.map_version = "status_up v1";
    } else {
        o.up = up;
        o.nup = 1;
    }
    dw_migration *h = open_migration_ok(t.db, &o);
    assert_dw_ok(h, stage_force(h, DW_STAGE_SHADOW));
    vsink s;
    memset(&s, 0, sizeof s);
    /* INT_MAX: a chunk of every key, its one more key past the end
     * counted without overflow. */
    static const int chunks[] = {1, 3, 0, INT_MAX};
    for (size_t ci = 0; ci < sizeof chunks / sizeof *chunks; ci++) {
        dw_verify_result r = verify_with(h, &s, chunks[ci], 100);
        assert_counts(&r, 4, 0, 0, 2);
        assert_int_equal(s.calls, 2);
        assert_int_equal(vsink_count_key(&s, "[2]"), 1);
        assert_int_equal(vsink_count_key(&s, "[3]"), 1);
        assert_int_equal(s.m[0].ndiffs, 1);
        assert_string_equal(s.m[0].d[0].column, "status_code");
    }
    dw_repair_result rr;
    assert_dw_ok(h, dw_repair_divergent(&rr, h));
    assert_int_equal(rr.repaired, 2);
    dw_verify_result r = verify_with(h, NULL, 0, 0);
    assert_counts(&r, 4, 0, 0, 0);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM tickets"), 4);
    char buf[64];
    assert_string_equal(query_text(t.db,
                                   "SELECT group_concat(id || ':' || "
                                   "status_code || ':' || owner, ',') FROM "
                                   "(SELECT * FROM tickets ORDER BY id)",
                                   buf, sizeof buf),
                        "1:1:ann,2:2:bob,3:1:cy,4:2:di");
    vsink_reset(&s);
    dw_close(h);
    test_db_close(&t);
}

static void test_one_table_sql(void **state)
{
    (void)state;
    one_table(0);
}

static void test_one_table_callback(void **state)
{
    (void)state;
    one_table(1);
}

/* ---- 7b. equal rows never reach the core -------------------------------- */

/* The backend's verification passes, watched: which sides, whether the
 * core let the backend settle equal rows, and how many rows it handed to
 * the core's comparison. */
typedef struct pass_spy {
    const dw_backend_ops *real;
    dw_backend_ops ops;
    dw_verify_row_fn fn;
    int passes[2], same_in_sql, rows;
} pass_spy;

static pass_spy spy;

static int spy_row(dw_migration *h, const dw_verify_row *row, void *arg)
{
    spy.rows++;
    return spy.fn(h, row, arg);
}

static int spy_verify_range(dw_migration *h, int side, const dw_value *lo,
                            int lo_incl, const dw_value *hi, int flags,
                            int limit, dw_held_key *end, dw_verify_row_fn fn,
                            void *arg, int64_t *rows)
{
    spy.passes[side == DW_SIDE_NEW]++;
    spy.same_in_sql += (flags & DW_VR_SAME_IN_SQL) != 0;
    spy.fn = fn;
    return spy.real->verify_range(h, side, lo, lo_incl, hi, flags, limit,
                                  end, spy_row, arg, rows);
}

static void spy_on(dw_migration *h)
{
    memset(&spy, 0, sizeof spy);
    spy.real = h->ops;
    spy.ops = *h->ops;
    spy.ops.verify_range = spy_verify_range;
    h->ops = &spy.ops;
}

static void spy_reset(void)
{
    memset(spy.passes, 0, sizeof spy.passes);
    spy.same_in_sql = spy.rows = 0;
}

/* 200 keys: 190 equal, then 3 different, 4 only on the old side and 3
 * only on the new, spread between them. */
static void fill_mostly_equal(sqlite3 *db, const char *old_t,
                              const char *new_t)
{
    exec_fmt(db,
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
             "WHERE i < 200) INSERT INTO %s SELECT i, 'v' || i FROM n "
             "WHERE i NOT IN (20, 90, 150)",
             old_t);
    exec_fmt(db,
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
             "WHERE i < 200) INSERT INTO %s SELECT i, CASE WHEN i IN (7, 70, "
             "170) THEN 'changed' ELSE 'v' || i END FROM n "
             "WHERE i NOT IN (10, 60, 110, 199)",
             new_t);
}

/* With an SQL mapping and nothing to normalise or compare in C, the
 * backend settles equal rows itself: only divergent keys reach the
 * core's comparison, while every key is still counted. A comparator (or
 * normaliser) needs every row in C again. */
static void test_equal_rows_stay_in_backend(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    exec_ok(t.db, "CREATE TABLE e_old(id INTEGER PRIMARY KEY, v TEXT);"
                  "CREATE TABLE e_new(id INTEGER PRIMARY KEY, v TEXT);");
    fill_mostly_equal(t.db, "e_old", "e_new");
    static const dw_column_map up[] = {{"v", "v"}};
    dw_migration *h = open_two(t.db, "eq_rows", "e_old", "e_new", up, 1, 0);
    spy_on(h);
    vsink s;
    memset(&s, 0, sizeof s);
    static const int chunks[] = {1, 2, 7, 1000};
    for (size_t ci = 0; ci < sizeof chunks / sizeof *chunks; ci++) {
        spy_reset();
        dw_verify_result r = verify_with(h, &s, chunks[ci], 1000);
        assert_counts(&r, 200, 4, 3, 3);
        assert_int_equal(s.calls, 10);
        assert_int_equal(spy.rows, 10);
        assert_int_equal(spy.same_in_sql, spy.passes[0]);
        assert_true(spy.passes[0] > 0 && spy.passes[1] > 0);
    }
    /* A comparator: every key is compared in C, with the same outcome. */
    int ncompare = 0;
    dw_read_options ro = DW_READ_OPTIONS_INIT;
    ro.compare = defer_compare;
    ro.compare_payload = &ncompare;
    assert_dw_ok(h, dw_set_read_options(h, &ro));
    spy_reset();
    dw_verify_result r = verify_with(h, &s, 0, 1000);
    assert_counts(&r, 200, 4, 3, 3);
    assert_int_equal(spy.rows, 200);
    assert_int_equal(spy.same_in_sql, 0);
    h->ops = spy.real;
    vsink_reset(&s);
    dw_close(h);
    test_db_close(&t);
}

/* One table: the same, and no pass looks for keys only on the new side
 * in SQL (a row holds both sides). */
static void test_equal_rows_stay_in_backend_one_table(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    exec_ok(t.db, "CREATE TABLE e_one(id INTEGER PRIMARY KEY, v TEXT, "
                  "w TEXT);"
                  "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
                  "FROM n WHERE i < 100) INSERT INTO e_one SELECT i, 'v' || i,"
                  " CASE WHEN i % 25 = 3 THEN NULL ELSE upper('v' || i) END "
                  "FROM n;");
    static const char *const ocols[] = {"v"};
    static const char *const ncols[] = {"w"};
    dw_options o = options_for("eq_one", TEST_SIDE("e_one", k_id, ocols),
                               TEST_SIDE("e_one", k_id, ncols));
    static const dw_column_map up[] = {{"w", "upper(v)"}};
    o.up = up;
    o.nup = 1;
    dw_migration *h = open_migration_ok(t.db, &o);
    spy_on(h);
    vsink s;
    memset(&s, 0, sizeof s);
    static const int chunks[] = {1, 3, 1000};
    for (size_t ci = 0; ci < sizeof chunks / sizeof *chunks; ci++) {
        spy_reset();
        dw_verify_result r = verify_with(h, &s, chunks[ci], 1000);
        assert_counts(&r, 100, 0, 0, 4);
        assert_int_equal(spy.rows, 4);
        assert_int_equal(s.calls, 4);
        assert_string_equal(s.keys[0], "[3]");
    }
    h->ops = spy.real;
    vsink_reset(&s);
    dw_close(h);
    test_db_close(&t);
}

/* ---- 8. read options -------------------------------------------------------- */

typedef struct norm_ctl {
    int calls[3];
    int fail;
} norm_ctl;

static int trim_text(dw_row *row, int side, void *payload)
{
    norm_ctl *c = payload;
    if (side == DW_SIDE_OLD || side == DW_SIDE_NEW)
        c->calls[side]++;
    if (c->fail)
        return DW_ECALLBACK;
    for (int i = 0; i < dw_row_count(row); i++) {
        const dw_value *v = dw_row_value(row, i);
        if (v->type != DW_TYPE_TEXT)
            continue;
        char buf[256];
        int n = v->n < (int)sizeof buf - 1 ? v->n : (int)sizeof buf - 1;
        memcpy(buf, v->p, (size_t)n);
        buf[n] = '\0';
        char *p = buf;
        while (*p == ' ')
            p++;
        size_t len = strlen(p);
        while (len && p[len - 1] == ' ')
            p[--len] = '\0';
        char name[64];
        snprintf(name, sizeof name, "%s", dw_row_name(row, i));
        int rc = dw_row_set_text(row, name, p);
        if (rc != DW_OK)
            return rc;
    }
    return DW_OK;
}

/* Column b: 'x' and 'y' count as equal. */
static int xy_equal(const char *column, const dw_value *a, const dw_value *b,
                    void *payload)
{
    (void)payload;
    if (strcmp(column, "b") != 0 || a->type != DW_TYPE_TEXT ||
        b->type != DW_TYPE_TEXT)
        return -1;
    int xa = a->n == 1 && (*(const char *)a->p == 'x' || *(const char *)a->p == 'y');
    int xb = b->n == 1 && (*(const char *)b->p == 'x' || *(const char *)b->p == 'y');
    return xa && xb ? 0 : -1;
}

/* Calls column a different, whatever it holds. */
static int always_differ(const char *column, const dw_value *a,
                         const dw_value *b, void *payload)
{
    (void)a;
    (void)b;
    (void)payload;
    return strcmp(column, "a") == 0 ? 1 : -1;
}

static void test_read_options_apply(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    exec_ok(t.db, "CREATE TABLE n_old(id INTEGER PRIMARY KEY, a TEXT, b TEXT);"
                  "CREATE TABLE n_new(id INTEGER PRIMARY KEY, a TEXT, b TEXT);"
                  "INSERT INTO n_old VALUES(1, 'a', 'x'), (2, 'b', 'x'),"
                  " (3, '  c', 'x'), (4, 'd ', 'x');"
                  "INSERT INTO n_new VALUES(1, 'a', 'y'), (2, 'b', 'y'),"
                  " (3, 'c', 'x'), (4, 'd', 'x');");
    static const dw_column_map up[] = {{"a", "a"}, {"b", "b"}};
    dw_migration *h = open_two(t.db, "ropts", "n_old", "n_new", up, 2, 0);
    vsink s;
    memset(&s, 0, sizeof s);
    dw_verify_result r = verify_with(h, &s, 0, 100);
    assert_counts(&r, 4, 0, 0, 4);

    /* ignore b (named in another case): keys 3 and 4 differ, in a only */
    static const char *const ignore_b[] = {"B"};
    dw_read_options ro = DW_READ_OPTIONS_INIT;
    ro.ignore_columns = ignore_b;
    ro.nignore_columns = 1;
    assert_dw_ok(h, dw_set_read_options(h, &ro));
    r = verify_with(h, &s, 2, 100);
    assert_counts(&r, 4, 0, 0, 2);
    assert_int_equal(vsink_count_key(&s, "[3]"), 1);
    assert_int_equal(vsink_count_key(&s, "[4]"), 1);
    for (int i = 0; i < s.calls; i++) {
        assert_int_equal(s.m[i].ndiffs, 1);
        assert_string_equal(s.m[i].d[0].column, "a");
    }

    /* ignore b and trim: clean */
    norm_ctl nc;
    memset(&nc, 0, sizeof nc);
    ro.normalize = trim_text;
    ro.compare_payload = &nc;
    assert_dw_ok(h, dw_set_read_options(h, &ro));
    r = verify_with(h, &s, 0, 100);
    assert_counts(&r, 4, 0, 0, 0);
    assert_int_equal(s.calls, 0);
    assert_true(nc.calls[DW_SIDE_OLD] > 0);
    assert_true(nc.calls[DW_SIDE_NEW] > 0);

    /* trim only: keys 1 and 2 differ, in b only */
    dw_read_options ro2 = DW_READ_OPTIONS_INIT;
    ro2.normalize = trim_text;
    ro2.compare_payload = &nc;
    assert_dw_ok(h, dw_set_read_options(h, &ro2));
    r = verify_with(h, &s, 1, 100);
    assert_counts(&r, 4, 0, 0, 2);
    assert_int_equal(vsink_count_key(&s, "[1]"), 1);
    assert_int_equal(vsink_count_key(&s, "[2]"), 1);
    assert_string_equal(s.m[0].d[0].column, "b");

    /* trim and a comparator calling 'x' and 'y' equal: clean */
    ro2.compare = xy_equal;
    assert_dw_ok(h, dw_set_read_options(h, &ro2));
    r = verify_with(h, &s, 0, 100);
    assert_counts(&r, 4, 0, 0, 0);

    /* a comparator may call equal values different: then they are */
    ro2.normalize = NULL;
    ro2.compare = always_differ;
    assert_dw_ok(h, dw_set_read_options(h, &ro2));
    r = verify_with(h, &s, 0, 100);
    assert_counts(&r, 4, 0, 0, 4);
    for (int i = 0; i < s.calls; i++)
        assert_non_null(find_diff(&s.m[i], "a"));
    ro2.normalize = trim_text;
    ro2.compare = xy_equal;
    assert_dw_ok(h, dw_set_read_options(h, &ro2));

    /* a failing normaliser fails the verification */
    nc.fail = 1;
    assert_dw(h, dw_verify(&r, h, NULL), DW_ECALLBACK);
    assert_non_null(strstr(dw_errmsg(h), "normaliser failed"));
    nc.fail = 0;

    /* the defaults again: everything differs */
    assert_dw_ok(h, dw_set_read_options(h, NULL));
    r = verify_with(h, &s, 0, 100);
    assert_counts(&r, 4, 0, 0, 4);
    vsink_reset(&s);
    dw_close(h);
    test_db_close(&t);
}

/* ---- 9. stored runs and misuse ---------------------------------------------- */

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_stored_runs(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    exec_ok(t.db, "CREATE TABLE l_old(id INTEGER PRIMARY KEY, a TEXT);"
                  "CREATE TABLE l_new(id INTEGER PRIMARY KEY, a TEXT);");
    make_divergent(t.db, "l_old", "l_new", 1, 4);
    static const dw_column_map up[] = {{"a", "a"}};
    dw_migration *h = open_two(t.db, "runs", "l_old", "l_new", up, 1, 0);
    dw_migration *other = open_two(t.db, "runs_other", "l_old", "l_new", up, 1,
                                   0);
    dw_verify_result last;
    memset(&last, 0x5a, sizeof last);
    assert_dw_ok(h, dw_verify_last(&last, h));
    assert_int_equal(last.run_id, 0);
    assert_true(last.started == 0 && last.seconds == 0);
    assert_int_equal(last.keys + last.missing + last.extra + last.different,
                     0);
    assert_int_equal(last.full + last.clean + last.finished, 0);

    /* misuse */
    dw_verify_result r;
    assert_int_equal(dw_verify(&r, NULL, NULL), DW_EMISUSE);
    assert_int_equal(dw_verify_last(&r, NULL), DW_EMISUSE);
    assert_dw(h, dw_verify(NULL, h, NULL), DW_EMISUSE);
    assert_string_not_equal(dw_errmsg(h), "not an error");
    assert_dw(h, dw_verify_last(NULL, h), DW_EMISUSE);
    dw_verify_options vo = DW_VERIFY_OPTIONS_INIT;
    vo.version = DW_VERIFY_OPTIONS_VERSION + 1;
    assert_dw(h, dw_verify(&r, h, &vo), DW_EMISUSE);
    assert_true(strlen(dw_errmsg(h)) > 0);
    assert_string_not_equal(dw_errmsg(h), "not an error");
    exec_ok(t.db, "BEGIN");
    assert_dw(h, dw_verify(&r, h, NULL), DW_EMISUSE);
    assert_string_not_equal(dw_errmsg(h), "not an error");
    exec_ok(t.db, "ROLLBACK");
    exec_ok(t.db, "BEGIN IMMEDIATE");
    assert_dw(h, dw_verify(&r, h, NULL), DW_EMISUSE);
    exec_ok(t.db, "ROLLBACK");
    assert_dw_ok(h, dw_verify_last(&last, h));
    assert_int_equal(last.run_id, 0);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM dw_verify_runs"), 0);

    /* a run, read back; started is wall-clock time (checked against the
     * same clock, with a margin for clock steps) */
    double t0 = wall_now();
    dw_verify_result r1 = verify_with(h, NULL, 0, 0);
    double t1 = wall_now();
    assert_counts(&r1, 4, 0, 0, 4);
    assert_int_equal(r1.full, 1);
    if (!(r1.started >= t0 - 5 && r1.started <= t1 + 5))
        print_error("started %.3f, wall clock %.3f .. %.3f\n", r1.started, t0,
                    t1);
    assert_true(r1.started >= t0 - 5 && r1.started <= t1 + 5);
    assert_true(r1.seconds >= 0 && r1.seconds < 60);
    assert_dw_ok(h, dw_verify_last(&last, h));
    assert_int_equal(last.run_id, r1.run_id);
    assert_true(last.started == r1.started);
    assert_true(last.seconds >= 0 && last.seconds < 60);
    assert_int_equal(last.keys, 4);
    assert_int_equal(last.missing, 0);
    assert_int_equal(last.extra, 0);
    assert_int_equal(last.different, 4);
    assert_int_equal(last.full, 1);
    assert_int_equal(last.finished, 1);
    assert_int_equal(last.clean, 0);
    /* the other migration has no run of its own */
    assert_dw_ok(other, dw_verify_last(&last, other));
    assert_int_equal(last.run_id, 0);

    /* a clean second run, ids increasing */
    exec_ok(t.db, "UPDATE l_new SET a = (SELECT a FROM l_old WHERE "
                  "l_old.id = l_new.id)");
    dw_verify_result r2 = verify_with(h, NULL, 0, 0);
    assert_counts(&r2, 4, 0, 0, 0);
    assert_true(r2.run_id > r1.run_id);
    assert_true(r2.started >= r1.started - 5);
    assert_dw_ok(h, dw_verify_last(&last, h));
    assert_int_equal(last.run_id, r2.run_id);
    assert_int_equal(last.clean, 1);
    assert_int_equal(last.finished, 1);

    /* the other migration's run does not show as this one's */
    dw_verify_result ro = verify_with(other, NULL, 0, 0);
    assert_true(ro.run_id > r2.run_id);
    assert_dw_ok(h, dw_verify_last(&last, h));
    assert_int_equal(last.run_id, r2.run_id);

    /* a ranged run is the last one too */
    dw_value from = dw_int(2);
    dw_verify_result r3 = verify_range(h, NULL, &from, 1, NULL, 0, 0);
    assert_counts(&r3, 3, 0, 0, 0);
    assert_true(r3.run_id > ro.run_id);
    assert_dw_ok(h, dw_verify_last(&last, h));
    assert_int_equal(last.run_id, r3.run_id);
    assert_int_equal(last.full, 0);
    assert_int_equal(last.keys, 3);

    /* verification works at every stage while both models exist */
    static const int stages[] = {DW_STAGE_OFF, DW_STAGE_DUAL_WRITE,
                                 DW_STAGE_SHADOW, DW_STAGE_LIVE,
                                 DW_STAGE_RAMPDOWN, DW_STAGE_COMPLETE};
    exec_ok(t.db, "UPDATE l_new SET a = 'changed' WHERE id = 2");
    for (int i = 0; i < 6; i++) {
        assert_dw_ok(h, stage_force(h, stages[i]));
        dw_verify_result rs = verify_with(h, NULL, 0, 0);
        assert_counts(&rs, 4, 0, 0, 1);
    }
    dw_close(other);
    dw_close(h);
    test_db_close(&t);
}

/* ---- 10. repair ------------------------------------------------------------- */

static const dw_column_map upper_up[] = {{"a", "upper(a)"}};
static const dw_column_map lower_down[] = {{"a", "lower(a)"}};

static dw_migration *open_repair(sqlite3 *db, const char *name)
{
    dw_options o = options_for(name, TEST_SIDE_UNLISTED("r_old", k_id),
                               TEST_SIDE_UNLISTED("r_new", k_id));
    o.up = upper_up;
    o.nup = 1;
    o.down = lower_down;
    o.ndown = 1;
    return open_migration_ok(db, &o);
}

/* old 1..6 ('a'..'f'); new: 1 equal, 2 wrong, 3 wrong, 4 equal, 5 absent,
 * 6 equal, 7 and 8 extra. */
static void repair_data(sqlite3 *db, int unique)
{
    exec_fmt(db,
             "CREATE TABLE r_old(id INTEGER PRIMARY KEY, a TEXT);"
             "CREATE TABLE r_new(id INTEGER PRIMARY KEY, a TEXT%s);"
             "INSERT INTO r_old VALUES(1, 'a'), (2, 'b'), (3, 'c'), (4, 'd'),"
             " (5, 'e'), (6, 'f');"
             "INSERT INTO r_new VALUES(1, 'A'), (2, 'wrong2'), (3, 'wrong3'),"
             " (4, 'D'), (6, 'F'), (7, 'G'), (8, 'H');",
             unique ? " UNIQUE" : "");
}

static int64_t rows_agree(sqlite3 *db)
{
    /* keys where the new row is not the mapped old row, either way */
    return query_int(db, "SELECT count(*) FROM (SELECT id, upper(a) FROM r_old "
                         "EXCEPT SELECT id, a FROM r_new)") +
           query_int(db, "SELECT count(*) FROM (SELECT id, a FROM r_new "
                         "EXCEPT SELECT id, upper(a) FROM r_old)");
}

static void test_repair_keys(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    repair_data(t.db, 0);
    dw_migration *h = open_repair(t.db, "repair_keys");
    dw_repair_result rr;
    dw_value keys[3] = {dw_int(2), dw_int(5), dw_int(7)};

    /* at OFF there is one model: refused */
    memset(&rr, 0x5a, sizeof rr);
    assert_dw(h, dw_repair_keys(&rr, h, keys, 1, 3), DW_EMISUSE);
    assert_int_equal(rr.repaired, 0);
    assert_int_equal(rr.failed, 0);
    assert_dw_ok(h, stage_force(h, DW_STAGE_SHADOW));

    /* bad arguments */
    dw_value fkey = dw_float(2.0), two[2] = {dw_int(2), dw_int(3)};
    assert_dw(h, dw_repair_keys(&rr, h, keys, 1, -1), DW_EMISUSE);
    assert_dw(h, dw_repair_keys(&rr, h, NULL, 1, 1), DW_EMISUSE);
    assert_dw(h, dw_repair_keys(&rr, h, &fkey, 1, 1), DW_EMISUSE);
    assert_dw(h, dw_repair_keys(&rr, h, two, 2, 1), DW_EMISUSE);
    assert_dw(h, dw_repair_keys(&rr, h, keys, 0, 1), DW_EMISUSE);
    assert_int_equal(dw_repair_keys(&rr, NULL, keys, 1, 1), DW_EMISUSE);
    /* nothing was touched by the refused calls */
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM r_new"), 7);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM r_new WHERE id = 7"),
                     1);
    /* no keys: nothing to do */
    assert_dw_ok(h, dw_repair_keys(&rr, h, NULL, 1, 0));
    assert_int_equal(rr.repaired, 0);

    dw_verify_result r = verify_with(h, NULL, 0, 0);
    assert_counts(&r, 8, 1, 2, 2);

    /* repair 2 (different), 5 (missing) and 7 (extra: its old row is gone) */
    assert_dw_ok(h, dw_repair_keys(&rr, h, keys, 1, 3));
    assert_int_equal(rr.repaired, 3);
    assert_int_equal(rr.failed, 0);
    char buf[32];
    assert_string_equal(query_text(t.db, "SELECT a FROM r_new WHERE id = 2",
                                   buf, sizeof buf),
                        "B");
    assert_string_equal(query_text(t.db, "SELECT a FROM r_new WHERE id = 5",
                                   buf, sizeof buf),
                        "E");
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM r_new WHERE id = 7"),
                     0);
    /* the keys not named are left alone */
    assert_string_equal(query_text(t.db, "SELECT a FROM r_new WHERE id = 3",
                                   buf, sizeof buf),
                        "wrong3");
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM r_new WHERE id = 8"),
                     1);
    r = verify_with(h, NULL, 0, 0);
    assert_counts(&r, 7, 0, 1, 1);
    int equal = 0;
    assert_dw_ok(h, dw_compare(&equal, h, &keys[0], 1));
    assert_int_equal(equal, 1);

    /* a key with no row on either side: nothing to do, no row appears */
    dw_value none = dw_int(99);
    assert_dw_ok(h, dw_repair_keys(&rr, h, &none, 1, 1));
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM r_new WHERE id = 99"),
                     0);

    /* inside the caller's transaction: part of it, undone by its rollback */
    dw_value k3 = dw_int(3);
    exec_ok(t.db, "BEGIN");
    assert_dw_ok(h, dw_repair_keys(&rr, h, &k3, 1, 1));
    assert_string_equal(query_text(t.db, "SELECT a FROM r_new WHERE id = 3",
                                   buf, sizeof buf),
                        "C");
    exec_ok(t.db, "ROLLBACK");
    assert_string_equal(query_text(t.db, "SELECT a FROM r_new WHERE id = 3",
                                   buf, sizeof buf),
                        "wrong3");
    exec_ok(t.db, "BEGIN");
    assert_dw_ok(h, dw_repair_keys(&rr, h, &k3, 1, 1));
    exec_ok(t.db, "COMMIT");
    assert_string_equal(query_text(t.db, "SELECT a FROM r_new WHERE id = 3",
                                   buf, sizeof buf),
                        "C");

    /* at LIVE the old side is repaired from the new one, through down */
    assert_dw_ok(h, stage_force(h, DW_STAGE_LIVE));
    exec_ok(t.db, "UPDATE r_new SET a = 'ZZ' WHERE id = 4");
    dw_value k48[2] = {dw_int(4), dw_int(8)};
    assert_dw_ok(h, dw_repair_keys(&rr, h, k48, 1, 2));
    assert_int_equal(rr.repaired, 2);
    assert_string_equal(query_text(t.db, "SELECT a FROM r_old WHERE id = 4",
                                   buf, sizeof buf),
                        "zz");
    assert_string_equal(query_text(t.db, "SELECT a FROM r_old WHERE id = 8",
                                   buf, sizeof buf),
                        "h");
    r = verify_with(h, NULL, 0, 0);
    assert_counts(&r, 7, 0, 0, 0);
    assert_int_equal(rows_agree(t.db), 0);

    /* at COMPLETE, one model again: refused */
    assert_dw_ok(h, stage_force(h, DW_STAGE_COMPLETE));
    assert_dw(h, dw_repair_keys(&rr, h, k48, 1, 2), DW_EMISUSE);
    dw_close(h);
    test_db_close(&t);
}

/* A failing key in dw_repair_keys rolls back the whole call. */
static void test_repair_keys_atomic(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    repair_data(t.db, 1);
    /* old 3 and old 4 map to the same new value: 'D' */
    exec_ok(t.db, "UPDATE r_old SET a = 'd' WHERE id = 3");
    dw_migration *h = open_repair(t.db, "repair_atomic");
    assert_dw_ok(h, stage_force(h, DW_STAGE_SHADOW));
    dw_value keys[3] = {dw_int(2), dw_int(3), dw_int(7)};
    dw_repair_result rr;
    memset(&rr, 0x5a, sizeof rr);
    assert_dw(h, dw_repair_keys(&rr, h, keys, 1, 3), DW_ECONSTRAINT);
    assert_non_null(strstr(dw_errmsg(h), "[3]"));
    assert_int_equal(rr.repaired, 0);
    char buf[32];
    /* key 2 came before the failure and was rolled back with it */
    assert_string_equal(query_text(t.db, "SELECT a FROM r_new WHERE id = 2",
                                   buf, sizeof buf),
                        "wrong2");
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM r_new WHERE id = 7"),
                     1);
    assert_int_equal(sqlite3_get_autocommit(t.db), 1);
    dw_close(h);
    test_db_close(&t);
}

static void test_repair_divergent(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    repair_data(t.db, 0);
    dw_migration *h = open_repair(t.db, "repair_div");
    dw_repair_result rr;
    /* at OFF: refused */
    assert_dw(h, dw_repair_divergent(&rr, h), DW_EMISUSE);
    assert_dw_ok(h, stage_force(h, DW_STAGE_SHADOW));
    assert_int_equal(dw_repair_divergent(&rr, NULL), DW_EMISUSE);
    /* before any verification: nothing listed */
    assert_dw_ok(h, dw_repair_divergent(&rr, h));
    assert_int_equal(rr.repaired, 0);
    assert_int_equal(rr.failed, 0);

    dw_verify_result r = verify_with(h, NULL, 0, 1);
    assert_counts(&r, 8, 1, 2, 2);
    /* another migration's run, after this one's, keeps this one's keys */
    exec_ok(t.db, "CREATE TABLE x_old(id INTEGER PRIMARY KEY, a TEXT);"
                  "CREATE TABLE x_new(id INTEGER PRIMARY KEY, a TEXT);"
                  "INSERT INTO x_old VALUES(1, 'p');"
                  "INSERT INTO x_new VALUES(1, 'q');");
    static const dw_column_map xup[] = {{"a", "a"}};
    dw_migration *h2 = open_two(t.db, "repair_div_other", "x_old", "x_new",
                                xup, 1, 0);
    assert_dw_ok(h2, stage_force(h2, DW_STAGE_SHADOW));
    dw_verify_result r2 = verify_with(h2, NULL, 0, 0);
    assert_counts(&r2, 1, 0, 0, 1);
    assert_int_equal(stored_keys(t.db, r.run_id, NULL), 5);
    /* inside a transaction: refused */
    exec_ok(t.db, "BEGIN");
    assert_dw(h, dw_repair_divergent(&rr, h), DW_EMISUSE);
    exec_ok(t.db, "ROLLBACK");

    memset(&rr, 0x5a, sizeof rr);
    assert_dw_ok(h, dw_repair_divergent(&rr, h));
    assert_int_equal(rr.repaired, r.missing + r.extra + r.different);
    assert_int_equal(rr.failed, 0);
    assert_int_equal(rows_agree(t.db), 0);
    assert_int_equal(stored_keys(t.db, r.run_id, "repaired"), 5);
    /* the other migration's key was not touched, and is its own to repair */
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM x_new WHERE a = 'q'"),
                     1);
    assert_dw_ok(h2, dw_repair_divergent(&rr, h2));
    assert_int_equal(rr.repaired, 1);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM x_new WHERE a = 'p'"),
                     1);
    dw_close(h2);
    /* a second call: nothing left */
    assert_dw_ok(h, dw_repair_divergent(&rr, h));
    assert_int_equal(rr.repaired, 0);
    assert_int_equal(rr.failed, 0);
    r = verify_with(h, NULL, 0, 0);
    assert_counts(&r, 6, 0, 0, 0);
    /* a clean run lists nothing */
    assert_dw_ok(h, dw_repair_divergent(&rr, h));
    assert_int_equal(rr.repaired, 0);

    /* a ranged run's keys are what is listed next */
    exec_ok(t.db, "UPDATE r_new SET a = 'x' WHERE id IN (1, 6)");
    dw_value from = dw_int(5);
    r = verify_range(h, NULL, &from, 1, NULL, 0, 0);
    assert_counts(&r, 2, 0, 0, 1);
    assert_dw_ok(h, dw_repair_divergent(&rr, h));
    assert_int_equal(rr.repaired, 1);
    char buf[16];
    assert_string_equal(query_text(t.db, "SELECT a FROM r_new WHERE id = 6",
                                   buf, sizeof buf),
                        "F");
    assert_string_equal(query_text(t.db, "SELECT a FROM r_new WHERE id = 1",
                                   buf, sizeof buf),
                        "x");
    dw_close(h);
    test_db_close(&t);
}

/* More divergent keys than one repair batch, at LIVE (old side repaired). */
static void test_repair_divergent_many_live(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    exec_ok(t.db, "CREATE TABLE r_old(id INTEGER PRIMARY KEY, a TEXT);"
                  "CREATE TABLE r_new(id INTEGER PRIMARY KEY, a TEXT);"
                  "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c "
                  " WHERE x < 1400) INSERT INTO r_new SELECT x, 'V' || x FROM c;"
                  "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c "
                  " WHERE x < 1400) INSERT INTO r_old SELECT x, 'v' || x FROM c"
                  " WHERE x % 7 <> 0;"
                  "UPDATE r_old SET a = 'bad' WHERE id % 5 = 0;"
                  "INSERT INTO r_old VALUES(1401, 'orphan'), (1402, 'orphan');");
    dw_migration *h = open_repair(t.db, "repair_live");
    assert_dw_ok(h, stage_force(h, DW_STAGE_LIVE));
    dw_verify_result r = verify_with(h, NULL, 0, 0);
    int64_t sevens = 200, fives = 280 - 40; /* multiples of 5 not of 7 */
    assert_counts(&r, 1402, 2, sevens, fives);
    assert_true(2 + sevens + fives > 256); /* more than one repair batch */
    dw_repair_result rr;
    assert_dw_ok(h, dw_repair_divergent(&rr, h));
    assert_int_equal(rr.repaired, 2 + sevens + fives);
    assert_int_equal(rr.failed, 0);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM r_old"), 1400);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM r_old WHERE a <> "
                                     "lower('V' || id)"),
                     0);
    r = verify_with(h, NULL, 0, 0);
    assert_counts(&r, 1400, 0, 0, 0);
    dw_close(h);
    test_db_close(&t);
}

/* A key whose repair fails stays listed; the others are repaired. */
static void test_repair_divergent_failure(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    repair_data(t.db, 1);
    /* old 5 (missing on the new side) maps to 'D', which new row 4 holds
     * under a UNIQUE constraint: its repair must fail. */
    exec_ok(t.db, "UPDATE r_old SET a = 'd' WHERE id = 5");
    dw_migration *h = open_repair(t.db, "repair_fail");
    assert_dw_ok(h, stage_force(h, DW_STAGE_SHADOW));
    dw_verify_result r = verify_with(h, NULL, 0, 0);
    assert_counts(&r, 8, 1, 2, 2);

    dw_repair_result rr;
    memset(&rr, 0x5a, sizeof rr);
    assert_dw(h, dw_repair_divergent(&rr, h), DW_ECONSTRAINT);
    assert_int_equal(rr.failed, 1);
    assert_int_equal(rr.repaired, 4);
    const char *msg = dw_errmsg(h);
    if (!strstr(msg, "[5]"))
        print_error("message does not name the key: %s\n", msg);
    assert_non_null(strstr(msg, "[5]"));
    assert_int_equal(sqlite3_get_autocommit(t.db), 1);
    /* the others were repaired, the failed one is still listed */
    assert_int_equal(stored_keys(t.db, r.run_id, "repaired"), 4);
    assert_int_equal(stored_keys(t.db, r.run_id, "NOT repaired AND key = '[5]'"),
                     1);
    char buf[16];
    assert_string_equal(query_text(t.db, "SELECT a FROM r_new WHERE id = 2",
                                   buf, sizeof buf),
                        "B");
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM r_new WHERE id IN "
                                     "(5, 7, 8)"),
                     0);
    /* again: the same key fails again, nothing else to do */
    memset(&rr, 0x5a, sizeof rr);
    assert_dw(h, dw_repair_divergent(&rr, h), DW_ECONSTRAINT);
    assert_int_equal(rr.failed, 1);
    assert_int_equal(rr.repaired, 0);
    r = verify_with(h, NULL, 0, 0);
    assert_counts(&r, 6, 1, 0, 0);

    /* the cause fixed: the listed key is repaired, then all is clean */
    exec_ok(t.db, "UPDATE r_old SET a = 'e' WHERE id = 5");
    assert_dw_ok(h, dw_repair_divergent(&rr, h));
    assert_int_equal(rr.repaired, 1);
    assert_int_equal(rr.failed, 0);
    r = verify_with(h, NULL, 0, 0);
    assert_counts(&r, 6, 0, 0, 0);
    assert_int_equal(rows_agree(t.db), 0);
    dw_close(h);
    test_db_close(&t);
}

/* ---- 11. repair queue ------------------------------------------------------- */

static int write_q_old(void *db, const dw_value *key, int nkey,
                       void *payload)
{
    (void)nkey;
    return callback_exec(db,
                         "INSERT INTO q_old(id, a) VALUES(?1, ?2) ON "
                         "CONFLICT(id) DO UPDATE SET a = excluded.a",
                         "it", key[0].i, (const char *)payload);
}

static int64_t queue_attempts(sqlite3 *db, const char *key)
{
    return query_int_with(
        db,
        "SELECT coalesce((SELECT attempts FROM dw_repair_queue "
        "WHERE key = ?1), -1)",
        key);
}

static int64_t queue_count(dw_migration *h)
{
    int64_t n = -1;
    assert_dw_ok(h, dw_repair_count(&n, h));
    return n;
}

static dw_migration *open_queue(sqlite3 *db, unsigned int flags)
{
    static const dw_column_map up[] = {{"a", "a"}};
    return open_two(db, "queue", "q_old", "q_new", up, 1, flags);
}

static void queue_schema(sqlite3 *db)
{
    exec_ok(db,
            "CREATE TABLE q_old(id INTEGER PRIMARY KEY, a TEXT);"
            "CREATE TABLE q_new(id INTEGER PRIMARY KEY, a TEXT);"
            "CREATE TABLE q_block(id INTEGER PRIMARY KEY);"
            "CREATE TRIGGER q_new_ins BEFORE INSERT ON q_new"
            " WHEN NEW.id IN (SELECT id FROM q_block)"
            " BEGIN SELECT RAISE(ABORT, 'blocked by the test'); END;"
            "CREATE TRIGGER q_new_upd BEFORE UPDATE ON q_new"
            " WHEN NEW.id IN (SELECT id FROM q_block)"
            " BEGIN SELECT RAISE(ABORT, 'blocked by the test'); END;");
}

static void test_repair_queue(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    queue_schema(t.db);
    dw_migration *h = open_queue(t.db, DW_OPEN_REPAIR_QUEUE);
    assert_dw_ok(h, stage_force(h, DW_STAGE_DUAL_WRITE));
    dw_repair_result rr;
    /* an empty queue */
    assert_int_equal(queue_count(h), 0);
    assert_dw(h, dw_repair_count(NULL, h), DW_EMISUSE);
    assert_dw_ok(h, dw_repair_queue(&rr, h));
    assert_int_equal(rr.repaired, 0);
    assert_int_equal(rr.failed, 0);

    /* the mirror writes of 1, 2, 3 fail: the old rows stay, keys queued */
    exec_ok(t.db, "INSERT INTO q_block VALUES(1), (2), (3)");
    for (int id = 1; id <= 4; id++) {
        dw_value k = dw_int(id);
        assert_dw_ok(h, dw_write(h, &k, 1, write_q_old, NULL, (void *)"one"));
    }
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM q_old"), 4);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM q_new"), 1);
    assert_int_equal(queue_count(h), 3);
    assert_int_equal(queue_attempts(t.db, "[1]"), 1);
    assert_int_equal(queue_attempts(t.db, "[2]"), 1);
    assert_int_equal(queue_attempts(t.db, "[3]"), 1);
    assert_int_equal(queue_attempts(t.db, "[4]"), -1);
    dw_verify_result r = verify_with(h, NULL, 0, 0);
    assert_counts(&r, 4, 3, 0, 0);

    /* the cause not fixed: all stay queued, attempts + 1 */
    memset(&rr, 0x5a, sizeof rr);
    assert_dw(h, dw_repair_queue(&rr, h), DW_ECONSTRAINT);
    assert_int_equal(rr.repaired, 0);
    assert_int_equal(rr.failed, 3);
    assert_int_equal(queue_count(h), 3);
    assert_int_equal(queue_attempts(t.db, "[1]"), 2);
    assert_int_equal(queue_attempts(t.db, "[2]"), 2);
    assert_int_equal(queue_attempts(t.db, "[3]"), 2);
    assert_int_equal(sqlite3_get_autocommit(t.db), 1);

    /* inside a transaction: refused */
    exec_ok(t.db, "BEGIN");
    assert_dw(h, dw_repair_queue(&rr, h), DW_EMISUSE);
    exec_ok(t.db, "ROLLBACK");

    char buf[256];
    query_text(t.db, "SELECT error FROM dw_repair_queue WHERE key = '[2]'", buf,
               sizeof buf);
    assert_non_null(strstr(buf, "blocked by the test"));

    /* fixed for 1 and 3: those drain, 2 stays with attempts + 1 and the new
     * error */
    exec_ok(t.db, "DELETE FROM q_block WHERE id IN (1, 3);"
                  "DROP TRIGGER q_new_ins; DROP TRIGGER q_new_upd;"
                  "CREATE TRIGGER q_new_ins BEFORE INSERT ON q_new"
                  " WHEN NEW.id IN (SELECT id FROM q_block)"
                  " BEGIN SELECT RAISE(ABORT, 'still blocked'); END;"
                  "CREATE TRIGGER q_new_upd BEFORE UPDATE ON q_new"
                  " WHEN NEW.id IN (SELECT id FROM q_block)"
                  " BEGIN SELECT RAISE(ABORT, 'still blocked'); END;");
    memset(&rr, 0x5a, sizeof rr);
    assert_dw(h, dw_repair_queue(&rr, h), DW_ECONSTRAINT);
    assert_int_equal(rr.repaired, 2);
    assert_int_equal(rr.failed, 1);
    assert_non_null(strstr(dw_errmsg(h), "[2]"));
    assert_int_equal(queue_count(h), 1);
    assert_int_equal(queue_attempts(t.db, "[2]"), 3);
    assert_int_equal(queue_attempts(t.db, "[1]"), -1);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM q_new WHERE id IN "
                                     "(1, 3) AND a = 'one'"),
                     2);
    query_text(t.db, "SELECT error FROM dw_repair_queue WHERE key = '[2]'", buf,
               sizeof buf);
    if (!strstr(buf, "still blocked"))
        print_error("queued error: %s\n", buf);
    assert_non_null(strstr(buf, "still blocked"));

    /* fixed for 2: the queue drains */
    exec_ok(t.db, "DELETE FROM q_block");
    memset(&rr, 0x5a, sizeof rr);
    assert_dw_ok(h, dw_repair_queue(&rr, h));
    assert_int_equal(rr.repaired, 1);
    assert_int_equal(rr.failed, 0);
    assert_int_equal(queue_count(h), 0);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM dw_repair_queue"), 0);
    r = verify_with(h, NULL, 0, 0);
    assert_counts(&r, 4, 0, 0, 0);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM (SELECT id, a FROM "
                                     "q_old EXCEPT SELECT id, a FROM q_new)"),
                     0);

    /* an update whose mirror fails queues the key; the repair copies the
     * value written since */
    exec_ok(t.db, "INSERT INTO q_block VALUES(4)");
    dw_value k4 = dw_int(4);
    assert_dw_ok(h, dw_write(h, &k4, 1, write_q_old, NULL, (void *)"two"));
    assert_int_equal(queue_count(h), 1);
    r = verify_with(h, NULL, 0, 0);
    assert_counts(&r, 4, 0, 0, 1);
    exec_ok(t.db, "DELETE FROM q_block");
    assert_dw_ok(h, dw_repair_queue(&rr, h));
    assert_int_equal(rr.repaired, 1);
    assert_string_equal(query_text(t.db, "SELECT a FROM q_new WHERE id = 4",
                                   buf, sizeof buf),
                        "two");
    assert_int_equal(queue_count(h), 0);

    /* at OFF there is nothing to repair into: refused */
    assert_dw_ok(h, stage_force(h, DW_STAGE_OFF));
    assert_dw(h, dw_repair_queue(&rr, h), DW_EMISUSE);
    dw_close(h);
    test_db_close(&t);
}

/* ---- queued keys from before the key columns were redefined --------------- */

static const char *const k_org_id[] = {"org", "id"};

/* p_old/p_new keyed on (org, id) and on id alone (every org is 'o'); p_new
 * refuses b = 'bad', so a mirror of such a row fails and its key is
 * queued. */
static void pairs_schema(sqlite3 *db)
{
    exec_ok(db, "CREATE TABLE p_old(org TEXT NOT NULL, id INTEGER NOT NULL"
                " UNIQUE, a TEXT, PRIMARY KEY(org, id));"
                "CREATE TABLE p_new(org TEXT NOT NULL DEFAULT 'o',"
                " id INTEGER NOT NULL"
                " UNIQUE, b TEXT CHECK (b <> 'bad'), PRIMARY KEY(org, id));");
}

static dw_migration *open_pairs(sqlite3 *db, int composite, unsigned flags)
{
    static const dw_column_map up[] = {{"b", "a"}};
    static const char *const old_cols[] = {"a"};
    static const char *const new_cols[] = {"b"};
    dw_options o = DW_OPTIONS_INIT;
    o.name = "pairs";
    o.old_side.table = "p_old";
    o.old_side.key_columns = composite ? k_org_id : k_id;
    o.old_side.nkey_columns = composite ? 2 : 1;
    o.old_side.columns = old_cols;
    o.old_side.ncolumns = 1;
    o.new_side.table = "p_new";
    o.new_side.key_columns = composite ? k_org_id : k_id;
    o.new_side.nkey_columns = composite ? 2 : 1;
    o.new_side.columns = new_cols;
    o.new_side.ncolumns = 1;
    o.up = up;
    o.nup = 1;
    o.flags = DW_OPEN_REPAIR_QUEUE | flags;
    o.reason = composite ? "keyed on (org, id)" : "keyed on id";
    return open_migration_ok(db, &o);
}

/* Writes the old row (org 'o', the key's id, a) through dw_write(); the
 * mirror runs through the mapping. */
static int write_pair_old(void *db, const dw_value *key, int nkey,
                          void *payload)
{
    return callback_exec(db,
                         "INSERT INTO p_old(org, id, a) VALUES('o', ?1,"
                         " ?2) ON CONFLICT(org, id) DO UPDATE SET"
                         " a = excluded.a",
                         "it", key[nkey - 1].i, payload);
}

static void queue_bad_write(dw_migration *h, const dw_value *key, int nkey)
{
    int64_t before = queue_count(h);
    assert_dw_ok(h, dw_write(h, key, nkey, write_pair_old, NULL,
                             (void *)"bad"));
    assert_int_equal(queue_count(h), before + 1);
}

/* The repair queue outlives a redefinition of the spec. Keys queued under
 * other key columns -- ["o",1] under (org, id), [3] under (id) -- are not
 * keys of the spec now: each is reported (DW_ERROR naming the stored key)
 * and stays queued for its side, while the others are repaired; under a
 * spec whose key they are, they repair. */
static void test_repair_queue_keys_of_another_spec(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    pairs_schema(t.db);
    dw_migration *h = open_pairs(t.db, 1, 0);
    assert_dw_ok(h, stage_force(h, DW_STAGE_DUAL_WRITE));
    dw_value k1[2] = {dw_text("o"), dw_int(1)};
    queue_bad_write(h, k1, 2);
    dw_close(h);

    /* Keyed on id alone now. */
    h = open_pairs(t.db, 0, DW_OPEN_REDEFINE);
    dw_value k2 = dw_int(2);
    queue_bad_write(h, &k2, 1);
    exec_ok(t.db, "UPDATE p_old SET a = 'good'");
    dw_repair_result rr;
    memset(&rr, 0x5a, sizeof rr);
    assert_dw(h, dw_repair_queue(&rr, h), DW_ERROR);
    assert_int_equal(rr.repaired, 1);
    assert_int_equal(rr.failed, 1);
    assert_non_null(strstr(dw_errmsg(h),
                           "stored key [\"o\",1] is not a key of migration "
                           "\"pairs\""));
    assert_int_equal(queue_count(h), 1);
    assert_int_equal(queue_attempts(t.db, "[\"o\",1]"), 2);
    assert_int_equal(query_int(t.db, "SELECT side FROM dw_repair_queue"),
                     DW_SIDE_NEW);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM p_new"), 1);
    assert_int_equal(sqlite3_get_autocommit(t.db), 1);

    dw_value k3 = dw_int(3);
    queue_bad_write(h, &k3, 1);
    exec_ok(t.db, "UPDATE p_old SET a = 'good'");
    dw_close(h);

    /* Back to (org, id): ["o",1] repairs, [3] is the stranger now. */
    h = open_pairs(t.db, 1, DW_OPEN_REDEFINE);
    assert_dw(h, dw_repair_queue(&rr, h), DW_ERROR);
    assert_int_equal(rr.repaired, 1);
    assert_int_equal(rr.failed, 1);
    assert_non_null(strstr(dw_errmsg(h), "stored key [3] is not a key"));
    assert_int_equal(queue_count(h), 1);
    assert_int_equal(queue_attempts(t.db, "[3]"), 2);
    dw_close(h);

    h = open_pairs(t.db, 0, DW_OPEN_REDEFINE);
    assert_dw_ok(h, dw_repair_queue(&rr, h));
    assert_int_equal(rr.repaired, 1);
    assert_int_equal(rr.failed, 0);
    assert_int_equal(queue_count(h), 0);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM p_new WHERE"
                                     " b = 'good'"),
                     3);
    dw_close(h);
    test_db_close(&t);
}

/* Without the queue policy a failed mirror fails the whole write. */
static void test_no_queue_without_flag(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    queue_schema(t.db);
    dw_migration *h = open_queue(t.db, 0);
    assert_dw_ok(h, stage_force(h, DW_STAGE_DUAL_WRITE));
    exec_ok(t.db, "INSERT INTO q_block VALUES(1)");
    dw_value k = dw_int(1);
    assert_dw(h, dw_write(h, &k, 1, write_q_old, NULL, (void *)"one"),
              DW_ECONSTRAINT);
    assert_int_equal(dw_errside(h), DW_SIDE_NEW);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM q_old"), 0);
    assert_int_equal(queue_count(h), 0);
    dw_close(h);
    test_db_close(&t);
}

/* ---- 12. a large table ------------------------------------------------------ */

#define BIG_ROWS 20000

static void test_big_table_flat(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    /* A small page cache, so the memory a run needs is the library's. */
    exec_ok(t.db, "PRAGMA cache_size = 64");
    exec_ok(t.db, "CREATE TABLE b_old(id INTEGER PRIMARY KEY, a TEXT);"
                  "CREATE TABLE b_new(id INTEGER PRIMARY KEY, a TEXT);");
    make_divergent(t.db, "b_old", "b_new", 1, BIG_ROWS);
    static const dw_column_map up[] = {{"a", "a"}};
    dw_migration *h = open_two(t.db, "big", "b_old", "b_new", up, 1, 0);

    /* A small run first, as a yardstick for memory. */
    vsink s;
    memset(&s, 0, sizeof s);
    dw_value to = dw_int(BIG_ROWS / 10);
    sqlite3_int64 base = sqlite3_memory_used();
    sqlite3_memory_highwater(1);
    dw_verify_options vo = DW_VERIFY_OPTIONS_INIT;
    vo.to = &to;
    vo.nto = 1;
    vo.report_limit = 1;
    dw_verify_result r;
    assert_dw_ok(h, dw_verify(&r, h, &vo));
    sqlite3_int64 small_peak = sqlite3_memory_highwater(1) - base;
    assert_counts(&r, BIG_ROWS / 10, 0, 0, BIG_ROWS / 10);

    base = sqlite3_memory_used();
    sqlite3_memory_highwater(1);
    r = verify_with(h, &s, 0, 1);
    sqlite3_int64 big_peak = sqlite3_memory_highwater(1) - base;
    assert_counts(&r, BIG_ROWS, 0, 0, BIG_ROWS);
    assert_int_equal(s.calls, 1);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM dw_verify_keys"),
                     BIG_ROWS);
    assert_int_equal(stored_keys(t.db, r.run_id, NULL), BIG_ROWS);
    assert_int_equal(stored_keys(t.db, r.run_id, "detail IS NOT NULL"), 1);
    print_message("  memory peak: %lld bytes for %d rows, %lld for %d\n",
                  (long long)small_peak, BIG_ROWS / 10, (long long)big_peak,
                  BIG_ROWS);
    if (small_peak > 0) /* 0: SQLite built without memory statistics */
        assert_true(big_peak < small_peak + 512 * 1024);

    /* a second run replaces the stored keys */
    exec_ok(t.db, "UPDATE b_new SET a = 'old' || id WHERE id <= 15000");
    dw_verify_result r2 = verify_with(h, &s, 0, 1);
    assert_counts(&r2, BIG_ROWS, 0, 0, BIG_ROWS - 15000);
    assert_true(r2.run_id > r.run_id);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM dw_verify_keys"),
                     BIG_ROWS - 15000);
    assert_int_equal(stored_keys(t.db, r2.run_id, NULL), BIG_ROWS - 15000);
    assert_int_equal(stored_keys(t.db, r.run_id, NULL), 0);
    vsink_reset(&s);
    dw_close(h);
    test_db_close(&t);
}


/* ---- more: names, gates, contract, writers ----------------------------------- */

/* Key and model columns named differently on the two sides, the new side
 * keyed on a UNIQUE column rather than its primary key. */
static void test_key_names_differ(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    exec_ok(t.db,
            "CREATE TABLE u_old(id INTEGER PRIMARY KEY, name TEXT);"
            "CREATE TABLE u_new(rid INTEGER PRIMARY KEY, user_id INTEGER NOT "
            " NULL UNIQUE, full_name TEXT);"
            "INSERT INTO u_old VALUES(1, 'ann'), (2, 'bob'), (3, 'cy'),"
            " (4, 'di'), (6, 'fi');"
            "INSERT INTO u_new(rid, user_id, full_name) VALUES(100, 1, 'ANN'),"
            " (99, 2, 'BOBBY'), (98, 4, 'DI'), (97, 5, 'EVE'), (96, 6, 'FI');");
    static const char *const old_key[] = {"id"};
    static const char *const new_key[] = {"user_id"};
    static const dw_column_map up[] = {{"full_name", "upper(name)"}};
    static const dw_column_map down[] = {{"name", "lower(full_name)"}};
    dw_options o = options_for("names", TEST_SIDE_UNLISTED("u_old", old_key),
                               TEST_SIDE_UNLISTED("u_new", new_key));
    o.up = up;
    o.nup = 1;
    o.down = down;
    o.ndown = 1;
    dw_migration *h = open_migration_ok(t.db, &o);
    assert_dw_ok(h, stage_force(h, DW_STAGE_SHADOW));
    vsink s;
    memset(&s, 0, sizeof s);
    static const int chunks[] = {1, 2, 0};
    for (int ci = 0; ci < 3; ci++) {
        dw_verify_result r = verify_with(h, &s, chunks[ci], 100);
        assert_counts(&r, 6, 1, 1, 1);
        assert_int_equal(vsink_count_key(&s, "[2]"), 1);
        assert_int_equal(vsink_count_key(&s, "[3]"), 1);
        assert_int_equal(vsink_count_key(&s, "[5]"), 1);
        for (int i = 0; i < s.calls; i++)
            if (s.m[i].kind == DW_MISMATCH_DIFFERENT) {
                assert_string_equal(s.m[i].key, "[2]");
                assert_int_equal(s.m[i].ndiffs, 1);
                assert_string_equal(s.m[i].d[0].column, "full_name");
            }
        dw_value from = dw_int(3), to = dw_int(5);
        r = verify_range(h, &s, &from, 1, &to, 1, chunks[ci]);
        assert_counts(&r, 3, 1, 1, 0);
    }
    verify_with(h, NULL, 0, 0);
    dw_repair_result rr;
    assert_dw_ok(h, dw_repair_divergent(&rr, h));
    assert_int_equal(rr.repaired, 3);
    dw_verify_result r = verify_with(h, NULL, 1, 0);
    assert_counts(&r, 5, 0, 0, 0);
    char buf[64];
    assert_string_equal(query_text(t.db, "SELECT group_concat(user_id || '=' "
                                         "|| full_name, ',') FROM (SELECT * "
                                         "FROM u_new ORDER BY user_id)",
                                   buf, sizeof buf),
                        "1=ANN,2=BOB,3=CY,4=DI,6=FI");
    vsink_reset(&s);
    dw_close(h);
    test_db_close(&t);
}

/* Table and column names that need quoting: spaces, a keyword, embedded
 * double quotes and backticks. */
static void test_awkward_identifiers(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    exec_ok(t.db,
            "CREATE TABLE \"odd \"\"old\"\"\"(\"the id\" INTEGER PRIMARY KEY,"
            " \"val`ue\" TEXT);"
            "CREATE TABLE \"new`table\"(\"key col\" INTEGER PRIMARY KEY,"
            " \"select\" TEXT);"
            "INSERT INTO \"odd \"\"old\"\"\" VALUES(1, 'a'), (2, 'b'), (3, 'c');"
            "INSERT INTO \"new`table\" VALUES(1, 'A'), (2, 'x'), (4, 'D');");
    static const char *const old_key[] = {"the id"};
    static const char *const new_key[] = {"key col"};
    static const dw_column_map up[] = {{"select", "upper(\"val`ue\")"}};
    dw_options o = options_for("awkward \"names\"",
                               TEST_SIDE_UNLISTED("odd \"old\"", old_key),
                               TEST_SIDE_UNLISTED("new`table", new_key));
    o.up = up;
    o.nup = 1;
    dw_migration *h = open_migration_ok(t.db, &o);
    assert_dw_ok(h, stage_force(h, DW_STAGE_SHADOW));
    vsink s;
    memset(&s, 0, sizeof s);
    static const int chunks[] = {1, 0};
    for (int ci = 0; ci < 2; ci++) {
        dw_verify_result r = verify_with(h, &s, chunks[ci], 100);
        assert_counts(&r, 4, 1, 1, 1);
        assert_int_equal(s.calls, 3);
        for (int i = 0; i < s.calls; i++)
            if (s.m[i].kind == DW_MISMATCH_DIFFERENT) {
                assert_string_equal(s.m[i].key, "[2]");
                assert_string_equal(s.m[i].d[0].column, "select");
            }
        dw_value from = dw_int(2), to = dw_int(3);
        r = verify_range(h, &s, &from, 1, &to, 1, chunks[ci]);
        assert_counts(&r, 2, 1, 0, 1);
    }
    verify_with(h, NULL, 0, 0);
    dw_repair_result rr;
    assert_dw_ok(h, dw_repair_divergent(&rr, h));
    assert_int_equal(rr.repaired, 3);
    dw_value k = dw_int(2);
    assert_dw_ok(h, dw_repair_keys(&rr, h, &k, 1, 1));
    dw_verify_result r = verify_with(h, NULL, 0, 0);
    assert_counts(&r, 3, 0, 0, 0);
    char buf[64];
    assert_string_equal(query_text(t.db,
                                   "SELECT group_concat(\"key col\" || '=' || "
                                   "\"select\", ',') FROM (SELECT * FROM "
                                   "\"new`table\" ORDER BY 1)",
                                   buf, sizeof buf),
                        "1=A,2=B,3=C");
    vsink_reset(&s);
    dw_close(h);
    test_db_close(&t);
}

/* Only a clean run over every key, after the backfill finished, opens the
 * gate into LIVE: a ranged run never does. */
static void test_ranged_run_opens_no_gate(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    exec_ok(t.db, "CREATE TABLE l_old(id INTEGER PRIMARY KEY, a TEXT);"
                  "CREATE TABLE l_new(id INTEGER PRIMARY KEY, a TEXT);"
                  "INSERT INTO l_old VALUES(1, 'a'), (2, 'b'), (3, 'c');");
    static const dw_column_map up[] = {{"a", "a"}};
    dw_migration *h = open_two(t.db, "gate", "l_old", "l_new", up, 1, 0);
    stage_walk_ok(h, DW_STAGE_SHADOW);
    /* a clean run before the backfill does not count */
    exec_ok(t.db, "INSERT INTO l_new SELECT * FROM l_old");
    dw_verify_result r = verify_with(h, NULL, 0, 0);
    assert_counts(&r, 3, 0, 0, 0);
    assert_dw_ok(h, dw_backfill(NULL, h, NULL));
    assert_dw(h, dw_stage_set(h, DW_STAGE_LIVE, NULL, 0), DW_EGATE);
    /* a clean ranged run covering every key: still closed */
    dw_value from = dw_int(1), to = dw_int(3);
    r = verify_range(h, NULL, &from, 1, &to, 1, 0);
    assert_counts(&r, 3, 0, 0, 0);
    assert_int_equal(r.full, 0);
    assert_dw(h, dw_stage_set(h, DW_STAGE_LIVE, NULL, 0), DW_EGATE);
    r = verify_range(h, NULL, &from, 1, NULL, 0, 0);
    assert_dw(h, dw_stage_set(h, DW_STAGE_LIVE, NULL, 0), DW_EGATE);
    /* a dirty full run: closed */
    exec_ok(t.db, "UPDATE l_new SET a = 'x' WHERE id = 2");
    r = verify_with(h, NULL, 0, 0);
    assert_counts(&r, 3, 0, 0, 1);
    assert_dw(h, dw_stage_set(h, DW_STAGE_LIVE, NULL, 0), DW_EGATE);
    /* repaired and verified in full: open */
    assert_dw_ok(h, dw_repair_divergent(NULL, h));
    r = verify_with(h, NULL, 0, 0);
    assert_counts(&r, 3, 0, 0, 0);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_LIVE, NULL, 0));
    dw_close(h);
    test_db_close(&t);
}

/* After the contract dropped the old model, verification and repairs say
 * so. */
static void test_after_contract(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    exec_ok(t.db, "CREATE TABLE l_old(id INTEGER PRIMARY KEY, a TEXT);"
                  "CREATE TABLE l_new(id INTEGER PRIMARY KEY, a TEXT);"
                  "INSERT INTO l_old VALUES(1, 'a'), (2, 'b');");
    static const dw_column_map up[] = {{"a", "a"}};
    dw_migration *h = open_two(t.db, "contracted", "l_old", "l_new", up, 1,
                               DW_OPEN_REPAIR_QUEUE);
    assert_dw_ok(h, stage_force(h, DW_STAGE_SHADOW));
    backfill_and_verify(h);
    assert_dw_ok(h, stage_force(h, DW_STAGE_COMPLETE));
    char path[400];
    snprintf(path, sizeof path, "%s/backup.db", t.dir);
    assert_dw_ok(h, dw_contract(h, path, "test"));
    dw_verify_result r;
    assert_dw(h, dw_verify(&r, h, NULL), DW_EMISUSE);
    assert_string_not_equal(dw_errmsg(h), "not an error");
    dw_repair_result rr;
    dw_value k = dw_int(1);
    assert_dw(h, dw_repair_keys(&rr, h, &k, 1, 1), DW_EMISUSE);
    assert_dw(h, dw_repair_divergent(&rr, h), DW_EMISUSE);
    assert_dw(h, dw_repair_queue(&rr, h), DW_EMISUSE);
    /* the last run is still there to read */
    assert_dw_ok(h, dw_verify_last(&r, h));
    assert_true(r.run_id > 0);
    assert_int_equal(r.clean, 1);
    dw_close(h);
    remove(path);
    test_db_close(&t);
}

/* Verification reads in short read transactions: another connection can
 * write while it runs (WAL), without waiting. */
typedef struct writer {
    sqlite3 *db;
    int attempts, failures;
} writer;

static void write_meanwhile(const dw_mismatch *m, void *payload)
{
    (void)m;
    writer *w = payload;
    w->attempts++;
    char *err = NULL;
    int rc = sqlite3_exec(w->db, "INSERT INTO side_log(note) VALUES('w')",
                          NULL, NULL, &err);
    if (rc != SQLITE_OK) {
        print_error("concurrent write failed: %s\n", err ? err : "?");
        w->failures++;
    }
    sqlite3_free(err);
}

static void test_verify_does_not_block_writers(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    exec_ok(t.db, "CREATE TABLE l_old(id INTEGER PRIMARY KEY, a TEXT);"
                  "CREATE TABLE l_new(id INTEGER PRIMARY KEY, a TEXT);"
                  "CREATE TABLE side_log(id INTEGER PRIMARY KEY, note TEXT);");
    make_divergent(t.db, "l_old", "l_new", 1, 20);
    static const dw_column_map up[] = {{"a", "a"}};
    dw_migration *h = open_two(t.db, "writers", "l_old", "l_new", up, 1, 0);
    writer w = {NULL, 0, 0};
    w.db = test_db_connect(&t);
    sqlite3_busy_timeout(w.db, 0); /* a blocked writer fails at once */
    static const int chunks[] = {1, 7, 0};
    for (int ci = 0; ci < 3; ci++) {
        dw_verify_options vo = DW_VERIFY_OPTIONS_INIT;
        vo.chunk_rows = chunks[ci];
        vo.report_limit = 1000;
        vo.fn = write_meanwhile;
        vo.payload = &w;
        dw_verify_result r;
        assert_dw_ok(h, dw_verify(&r, h, &vo));
        assert_counts(&r, 20, 0, 0, 20);
    }
    assert_int_equal(w.attempts, 60);
    assert_int_equal(w.failures, 0);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM side_log"), 60);
    assert_int_equal(sqlite3_close(w.db), SQLITE_OK);
    dw_close(h);
    test_db_close(&t);
}


/* The verification callback is a dw_mismatch_fn, which the header says is
 * "called ... after the read's transaction has ended": so it runs in
 * autocommit mode, and an application may record the divergence in a table
 * of its own on the same connection, even while other connections write. */
typedef struct app_log {
    sqlite3 *db, *other;
    int calls, in_txn, failures;
} app_log;

static void log_in_app_table(const dw_mismatch *m, void *payload)
{
    app_log *a = payload;
    a->calls++;
    if (!sqlite3_get_autocommit(a->db))
        a->in_txn++;
    /* another connection writes meanwhile (WAL: it does not wait) */
    char *err = NULL;
    if (sqlite3_exec(a->other, "INSERT INTO side_log(note) VALUES('other')",
                     NULL, NULL, &err) != SQLITE_OK) {
        print_error("other connection: %s\n", err ? err : "?");
        a->failures++;
    }
    sqlite3_free(err);
    /* the application records the divergence on the library's connection */
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(a->db,
                                "INSERT INTO side_log(note) VALUES(?1)", -1,
                                &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, m->key, -1, SQLITE_TRANSIENT);
        rc = sqlite3_step(st);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    if (rc != SQLITE_OK) {
        if (a->failures < 3)
            print_error("recording %s failed: %s (%d)\n", m->key,
                        sqlite3_errmsg(a->db), sqlite3_extended_errcode(a->db));
        a->failures++;
    }
    sqlite3_finalize(st);
}

static void test_verify_callback_outside_transaction(void **state)
{
    (void)state;
    test_db t;
    db_open(&t);
    exec_ok(t.db, "CREATE TABLE l_old(id INTEGER PRIMARY KEY, a TEXT);"
                  "CREATE TABLE l_new(id INTEGER PRIMARY KEY, a TEXT);"
                  "CREATE TABLE side_log(id INTEGER PRIMARY KEY, note TEXT);");
    make_divergent(t.db, "l_old", "l_new", 1, 6);
    static const dw_column_map up[] = {{"a", "a"}};
    dw_migration *h = open_two(t.db, "app_log", "l_old", "l_new", up, 1, 0);
    app_log a;
    memset(&a, 0, sizeof a);
    a.db = t.db;
    a.other = test_db_connect(&t);
    dw_verify_options vo = DW_VERIFY_OPTIONS_INIT;
    vo.chunk_rows = 2;
    vo.report_limit = 100;
    vo.fn = log_in_app_table;
    vo.payload = &a;
    dw_verify_result r;
    int rc = dw_verify(&r, h, &vo);
    int autocommit = sqlite3_get_autocommit(t.db);
    int64_t recorded = query_int(t.db, "SELECT count(*) FROM side_log WHERE "
                                       "note LIKE '[%'");
    /* Everything is closed before the verdict, so that a failure here
     * leaks nothing (sanitizers and valgrind stay quiet). */
    int close_other = sqlite3_close(a.other);
    dw_close(h);
    test_db_close(&t);
    assert_int_equal(close_other, SQLITE_OK);
    assert_int_equal(autocommit, 1);
    assert_int_equal(rc, DW_OK);
    assert_int_equal(r.different, 6);
    assert_int_equal(a.calls, 6);
    if (a.in_txn)
        print_error("the verification callback ran inside a transaction in "
                    "%d of %d calls\n",
                    a.in_txn, a.calls);
    assert_int_equal(a.in_txn, 0);
    assert_int_equal(a.failures, 0);
    assert_int_equal(recorded, 6);
}

int main(void)
{
    library_memory_in_sqlite();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds_of_divergence),
        cmocka_unit_test(test_mixed_divergences_one_run),
        cmocka_unit_test(test_redaction),
        cmocka_unit_test(test_report_limit),
        cmocka_unit_test(test_chunks_layout),
        cmocka_unit_test(test_progress),
        cmocka_unit_test(test_chunks_new_only_bounded),
        cmocka_unit_test(test_chunks_writer_between),
        cmocka_unit_test(test_blob_key_on_equal_row),
        cmocka_unit_test(test_blob_key_new_side_named),
        cmocka_unit_test(test_read_options_set_mid_run),
        cmocka_unit_test(test_key_collation_not_the_index),
        cmocka_unit_test(test_chunks_random),
        cmocka_unit_test(test_chunks_mixed_key_types),
        cmocka_unit_test(test_range),
        cmocka_unit_test(test_composite_key),
        cmocka_unit_test(test_c_mapping),
        cmocka_unit_test(test_subquery_mapping),
        cmocka_unit_test(test_mapping_order),
        cmocka_unit_test(test_one_table_sql),
        cmocka_unit_test(test_one_table_callback),
        cmocka_unit_test(test_equal_rows_stay_in_backend),
        cmocka_unit_test(test_equal_rows_stay_in_backend_one_table),
        cmocka_unit_test(test_read_options_apply),
        cmocka_unit_test(test_stored_runs),
        cmocka_unit_test(test_repair_keys),
        cmocka_unit_test(test_repair_keys_atomic),
        cmocka_unit_test(test_repair_divergent),
        cmocka_unit_test(test_repair_divergent_many_live),
        cmocka_unit_test(test_repair_divergent_failure),
        cmocka_unit_test(test_repair_queue),
        cmocka_unit_test(test_repair_queue_keys_of_another_spec),
        cmocka_unit_test(test_no_queue_without_flag),
        cmocka_unit_test(test_key_names_differ),
        cmocka_unit_test(test_awkward_identifiers),
        cmocka_unit_test(test_ranged_run_opens_no_gate),
        cmocka_unit_test(test_after_contract),
        cmocka_unit_test(test_verify_does_not_block_writers),
        cmocka_unit_test(test_verify_callback_outside_transaction),
        cmocka_unit_test(test_big_table_flat),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
