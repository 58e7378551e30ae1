/* Tests for mismatch reporting: the sink, redaction, the de-duplicated and
 * capped log table, stderr logging. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- helpers ---------------------------------------------------------------- */

static const char *const k_id[] = {"id"};

typedef struct mdiff {
    char column[32];
    int has_old, has_new;
    int old_type, new_type;
    char old_raw[64], new_raw[64];
    char old_desc[256], new_desc[256];
} mdiff;

typedef struct msink {
    int calls;
    char migration[64];
    char key[64];
    int kind;
    char digest[40];
    int ndiffs;
    mdiff d[4];
} msink;

static void copy_raw(char *dst, size_t size, const dw_value *v)
{
    dst[0] = '\0';
    if (v && (v->type == DW_TYPE_TEXT || v->type == DW_TYPE_BLOB) && v->p) {
        int n = v->n < 0 ? (int)strlen(v->p) : v->n;
        if ((size_t)n >= size)
            n = (int)size - 1;
        memcpy(dst, v->p, (size_t)n);
        dst[n] = '\0';
    }
}

static void sink(const dw_mismatch *m, void *payload)
{
    msink *s = payload;
    s->calls++;
    snprintf(s->migration, sizeof s->migration, "%s", m->migration ? m->migration : "(null)");
    snprintf(s->key, sizeof s->key, "%s", m->key ? m->key : "(null)");
    snprintf(s->digest, sizeof s->digest, "%s", m->digest ? m->digest : "(null)");
    s->kind = m->kind;
    s->ndiffs = m->ndiffs;
    memset(s->d, 0, sizeof s->d);
    for (int i = 0; i < m->ndiffs && i < 4; i++) {
        const dw_diff *d = &m->diffs[i];
        mdiff *o = &s->d[i];
        snprintf(o->column, sizeof o->column, "%s", d->column ? d->column : "(null)");
        o->has_old = d->old_value != NULL;
        o->has_new = d->new_value != NULL;
        o->old_type = d->old_value ? d->old_value->type : 0;
        o->new_type = d->new_value ? d->new_value->type : 0;
        copy_raw(o->old_raw, sizeof o->old_raw, d->old_value);
        copy_raw(o->new_raw, sizeof o->new_raw, d->new_value);
        snprintf(o->old_desc, sizeof o->old_desc, "%s", d->old_desc ? d->old_desc : "(null)");
        snprintf(o->new_desc, sizeof o->new_desc, "%s", d->new_desc ? d->new_desc : "(null)");
    }
}

static const mdiff *find_diff(const msink *s, const char *col)
{
    for (int i = 0; i < s->ndiffs && i < 4; i++)
        if (strcmp(s->d[i].column, col) == 0)
            return &s->d[i];
    return NULL;
}

/* A fixture: m_old and m_new with nickname and secret, identity mapping. */
typedef struct mfx {
    test_db t;
    dw_migration *h;
    msink s;
    dw_row *out;
} mfx;

static const char *const redact_secret[] = {"secret"};

static dw_migration *mfx_migration(mfx *f, const char *name, unsigned int flags,
                                   int log_cap, int redact)
{
    static const dw_column_map up[] = {{"nickname", "nickname"},
                                       {"secret", "secret"}};
    dw_options o = options_for(name, TEST_SIDE_UNLISTED("m_old", k_id),
                               TEST_SIDE_UNLISTED("m_new", k_id));
    o.up = up;
    o.nup = 2;
    o.flags = flags;
    o.log_cap = log_cap;
    if (redact) {
        o.redact_columns = redact_secret;
        o.nredact_columns = 1;
    }
    o.mismatch_fn = sink;
    o.mismatch_payload = &f->s;
    dw_migration *h = open_migration_ok(f->t.db, &o);
    assert_dw_ok(h, stage_force(h, DW_STAGE_SHADOW));
    return h;
}

static void mfx_open(mfx *f, const char *name, unsigned int flags, int log_cap,
                     int redact)
{
    memset(f, 0, sizeof *f);
    test_db_open(&f->t);
    exec_ok(f->t.db, "PRAGMA synchronous=NORMAL");
    exec_ok(f->t.db,
            "CREATE TABLE m_old(id INTEGER PRIMARY KEY, nickname TEXT, secret TEXT);"
            "CREATE TABLE m_new(id INTEGER PRIMARY KEY, nickname TEXT, secret TEXT);"
            "INSERT INTO m_old VALUES(42, 'alpha', 'hunter2');"
            "INSERT INTO m_new VALUES(42, 'beta', 'hunter2');");
    f->h = mfx_migration(f, name, flags, log_cap, redact);
    assert_int_equal(dw_row_new(&f->out), DW_OK);
}

static void mfx_close(mfx *f)
{
    dw_row_free(f->out);
    dw_close(f->h);
    test_db_close(&f->t);
}

static int mfx_read_h(mfx *f, dw_migration *h, int64_t id)
{
    dw_value k = dw_int(id);
    return dw_read(f->out, h, &k, 1, NULL, NULL, NULL);
}

static int mfx_read(mfx *f, int64_t id)
{
    return mfx_read_h(f, f->h, id);
}

static void log_counts(dw_migration *h, int64_t *entries, int64_t *dropped)
{
    *entries = -1;
    *dropped = -1;
    assert_dw_ok(h, dw_mismatch_log_count(entries, dropped, h));
}

/* Entries seen through dw_mismatch_log(). */
typedef struct lentry {
    char key[64];
    char digest[40];
    char detail[512];
    int kind;
    int64_t count;
    double first_seen, last_seen;
} lentry;

typedef struct lrec {
    int n;
    int stop_after; /* 0: never */
    lentry e[16];
} lrec;

static int log_cb(const dw_mismatch_entry *e, void *payload)
{
    lrec *r = payload;
    if (r->n < 16) {
        lentry *o = &r->e[r->n];
        snprintf(o->key, sizeof o->key, "%s", e->key ? e->key : "(null)");
        snprintf(o->digest, sizeof o->digest, "%s", e->digest ? e->digest : "(null)");
        snprintf(o->detail, sizeof o->detail, "%s", e->detail ? e->detail : "(null)");
        o->kind = e->kind;
        o->count = e->count;
        o->first_seen = e->first_seen;
        o->last_seen = e->last_seen;
    }
    r->n++;
    return r->stop_after && r->n >= r->stop_after;
}

static int64_t log_rows_like(sqlite3 *db, const char *pattern)
{
    return query_int_with(
        db, "SELECT count(*) FROM dw_mismatch_log WHERE detail LIKE ?1",
        pattern);
}

/* ---- the sink ------------------------------------------------------------------- */

static void test_sink_default_redacted(void **state)
{
    (void)state;
    mfx f;
    mfx_open(&f, "mm", 0, 0, 0);
    assert_dw_ok(f.h, mfx_read(&f, 42));
    assert_int_equal(f.s.calls, 1);
    assert_string_equal(f.s.migration, "mm");
    assert_string_equal(f.s.key, "[42]");
    assert_int_equal(f.s.kind, DW_MISMATCH_DIFFERENT);
    assert_true(is_hex16(f.s.digest));
    assert_int_equal(f.s.ndiffs, 1);
    const mdiff *d = find_diff(&f.s, "nickname");
    assert_non_null(d);
    assert_int_equal(d->has_old, 0);
    assert_int_equal(d->has_new, 0);
    assert_null(strstr(d->old_desc, "alpha"));
    assert_null(strstr(d->new_desc, "beta"));
    if (strncmp(d->old_desc, "text(5):", 8) != 0)
        print_error("old_desc = %s\n", d->old_desc);
    assert_int_equal(strncmp(d->old_desc, "text(5):", 8), 0);
    assert_int_equal(strncmp(d->new_desc, "text(4):", 8), 0);
    assert_true(strlen(d->old_desc) > 8);
    assert_string_not_equal(d->old_desc, d->new_desc);

    /* the same difference gives the same digest; another a different one */
    char digest1[40];
    snprintf(digest1, sizeof digest1, "%s", f.s.digest);
    assert_dw_ok(f.h, mfx_read(&f, 42));
    assert_string_equal(f.s.digest, digest1);
    exec_ok(f.t.db, "UPDATE m_new SET nickname = 'gamma' WHERE id = 42");
    assert_dw_ok(f.h, mfx_read(&f, 42));
    assert_true(is_hex16(f.s.digest));
    assert_string_not_equal(f.s.digest, digest1);

    /* a row missing on the new side */
    exec_ok(f.t.db, "DELETE FROM m_new WHERE id = 42");
    assert_dw_ok(f.h, mfx_read(&f, 42));
    assert_int_equal(f.s.calls, 4);
    assert_int_equal(f.s.kind, DW_MISMATCH_MISSING_NEW);
    assert_string_equal(f.s.key, "[42]");
    assert_true(is_hex16(f.s.digest));
    mfx_close(&f);
}

static void test_sink_composite_text_key(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db,
            "CREATE TABLE c_old(org TEXT, num INTEGER, v TEXT,"
            "  PRIMARY KEY(org, num)) WITHOUT ROWID;"
            "CREATE TABLE c_new(org TEXT, num INTEGER, v TEXT,"
            "  PRIMARY KEY(org, num)) WITHOUT ROWID;"
            "INSERT INTO c_old VALUES('org-7', 3, 'x'), ('o\"q', 4, 'x');"
            "INSERT INTO c_new VALUES('org-7', 3, 'y'), ('o\"q', 4, 'y');");
    static const char *const key[] = {"org", "num"};
    static const dw_column_map up[] = {{"v", "v"}};
    msink s;
    memset(&s, 0, sizeof s);
    dw_options o = options_for("composite", TEST_SIDE_UNLISTED("c_old", key),
                               TEST_SIDE_UNLISTED("c_new", key));
    o.up = up;
    o.nup = 1;
    o.mismatch_fn = sink;
    o.mismatch_payload = &s;
    dw_migration *h = open_migration_ok(t.db, &o);
    assert_dw_ok(h, stage_force(h, DW_STAGE_SHADOW));
    dw_row *out = NULL;
    assert_int_equal(dw_row_new(&out), DW_OK);
    dw_value k[2] = {dw_text("org-7"), dw_int(3)};
    assert_dw_ok(h, dw_read(out, h, k, 2, NULL, NULL, NULL));
    assert_int_equal(s.calls, 1);
    assert_string_equal(s.key, "[\"org-7\",3]");
    dw_value k2[2] = {dw_text("o\"q"), dw_int(4)};
    assert_dw_ok(h, dw_read(out, h, k2, 2, NULL, NULL, NULL));
    assert_int_equal(s.calls, 2);
    assert_string_equal(s.key, "[\"o\\\"q\",4]");
    lrec r;
    memset(&r, 0, sizeof r);
    assert_dw_ok(h, dw_mismatch_log(h, 0, log_cb, &r));
    assert_int_equal(r.n, 2);
    dw_row_free(out);
    dw_close(h);
    test_db_close(&t);
}

static void test_sink_raw_values_with_redaction(void **state)
{
    (void)state;
    mfx f;
    mfx_open(&f, "mm_raw", DW_OPEN_LOG_RAW_VALUES, 0, 1);
    exec_ok(f.t.db, "UPDATE m_new SET secret = 'swordfish' WHERE id = 42");
    assert_dw_ok(f.h, mfx_read(&f, 42));
    assert_int_equal(f.s.calls, 1);
    assert_int_equal(f.s.ndiffs, 2);

    const mdiff *d = find_diff(&f.s, "nickname");
    assert_non_null(d);
    assert_int_equal(d->has_old, 1);
    assert_int_equal(d->has_new, 1);
    assert_int_equal(d->old_type, DW_TYPE_TEXT);
    assert_int_equal(d->new_type, DW_TYPE_TEXT);
    assert_string_equal(d->old_raw, "alpha");
    assert_string_equal(d->new_raw, "beta");
    assert_non_null(strstr(d->old_desc, "alpha"));
    assert_non_null(strstr(d->new_desc, "beta"));

    d = find_diff(&f.s, "secret");
    assert_non_null(d);
    assert_int_equal(d->has_old, 0);
    assert_int_equal(d->has_new, 0);
    assert_null(strstr(d->old_desc, "hunter2"));
    assert_null(strstr(d->new_desc, "swordfish"));
    assert_int_equal(strncmp(d->old_desc, "text(7):", 8), 0);
    assert_int_equal(strncmp(d->new_desc, "text(9):", 8), 0);
    mfx_close(&f);
}

/* Raw values of every type are logged in SQL literal form, and long ones
 * are cut (the log must not grow with the value). */
static void test_sink_raw_values_every_type(void **state)
{
    (void)state;
    mfx f;
    mfx_open(&f, "mm_raw_types", DW_OPEN_LOG_RAW_VALUES, 0, 0);
    /* Columns without a declared type keep every value as given. */
    dw_close(f.h);
    exec_ok(f.t.db, "DROP TABLE m_old; DROP TABLE m_new;"
                    "CREATE TABLE m_old(id INTEGER PRIMARY KEY, nickname, secret);"
                    "CREATE TABLE m_new(id INTEGER PRIMARY KEY, nickname, secret);");
    f.h = mfx_migration(&f, "mm_raw_untyped", DW_OPEN_LOG_RAW_VALUES, 0, 0);
    exec_ok(f.t.db, "INSERT INTO m_old VALUES(1, 1.5, x'00ff');"
                    "INSERT INTO m_new VALUES(1, 7, NULL);"
                    "INSERT INTO m_old VALUES(2, printf('%.300c', 'a'),"
                    "  zeroblob(150));"
                    "INSERT INTO m_new VALUES(2, 'short', x'01');");
    assert_dw_ok(f.h, mfx_read(&f, 1));
    const mdiff *d = find_diff(&f.s, "nickname");
    assert_non_null(d);
    assert_int_equal(d->old_type, DW_TYPE_FLOAT);
    assert_string_equal(d->old_desc, "1.5");
    assert_string_equal(d->new_desc, "7");
    d = find_diff(&f.s, "secret");
    assert_non_null(d);
    assert_string_equal(d->old_desc, "x'00ff'");
    assert_string_equal(d->new_desc, "NULL");

    assert_dw_ok(f.h, mfx_read(&f, 2));
    d = find_diff(&f.s, "nickname");
    assert_non_null(d);
    /* 200 characters shown, then the full length. */
    assert_int_equal(strlen(d->old_desc), 1 + 200 + 1 + strlen("...(300 bytes)"));
    assert_non_null(strstr(d->old_desc, "'...(300 bytes)"));
    d = find_diff(&f.s, "secret");
    assert_non_null(d);
    /* 100 bytes shown as 200 hex digits. */
    assert_int_equal(strncmp(d->old_desc, "x'0000", 6), 0);
    assert_int_equal(strlen(d->old_desc), 2 + 200 + 1 + strlen("...(150 bytes)"));
    assert_non_null(strstr(d->old_desc, "'...(150 bytes)"));
    assert_string_equal(d->new_desc, "x'01'");
    mfx_close(&f);
}

/* Read callbacks whose rows have different columns. */
static int read_old_extra(dw_row *out, void *db, const dw_value *key,
                          int nkey, void *payload)
{
    (void)db;
    (void)nkey;
    (void)payload;
    int rc = dw_row_set(out, "id", &key[0]);
    if (rc == DW_OK)
        rc = dw_row_set_text(out, "a", "same");
    if (rc == DW_OK)
        rc = dw_row_set_text(out, "only_old", "zzz");
    return rc;
}

static int read_new_plain(dw_row *out, void *db, const dw_value *key,
                          int nkey, void *payload)
{
    (void)db;
    (void)nkey;
    (void)payload;
    int rc = dw_row_set(out, "id", &key[0]);
    if (rc == DW_OK)
        rc = dw_row_set_text(out, "a", "same");
    return rc;
}

static void test_sink_column_on_one_side(void **state)
{
    (void)state;
    mfx f;
    mfx_open(&f, "mm_oneside", DW_OPEN_LOG_RAW_VALUES, 0, 0);
    dw_value k = dw_int(42);
    assert_dw_ok(f.h, dw_read(f.out, f.h, &k, 1, read_old_extra, read_new_plain, NULL));
    assert_int_equal(f.s.calls, 1);
    assert_int_equal(f.s.kind, DW_MISMATCH_DIFFERENT);
    assert_int_equal(f.s.ndiffs, 1);
    const mdiff *d = find_diff(&f.s, "only_old");
    assert_non_null(d);
    assert_int_equal(d->has_old, 1);
    assert_int_equal(d->old_type, DW_TYPE_TEXT);
    assert_string_equal(d->old_raw, "zzz");
    assert_int_equal(d->has_new, 1);
    assert_int_equal(d->new_type, DW_TYPE_NULL);
    mfx_close(&f);
}

/* ---- the log table ---------------------------------------------------------------- */

static void test_log_dedup(void **state)
{
    (void)state;
    mfx f;
    mfx_open(&f, "mm_dedup", 0, 0, 0);
    for (int i = 0; i < 5; i++)
        assert_dw_ok(f.h, mfx_read(&f, 42));
    assert_int_equal(f.s.calls, 5);
    char digest1[40];
    snprintf(digest1, sizeof digest1, "%s", f.s.digest);

    int64_t entries, dropped;
    log_counts(f.h, &entries, &dropped);
    assert_int_equal((int)entries, 1);
    assert_int_equal((int)dropped, 0);
    lrec r;
    memset(&r, 0, sizeof r);
    assert_dw_ok(f.h, dw_mismatch_log(f.h, 0, log_cb, &r));
    assert_int_equal(r.n, 1);
    assert_string_equal(r.e[0].key, "[42]");
    assert_string_equal(r.e[0].digest, digest1);
    assert_int_equal(r.e[0].kind, DW_MISMATCH_DIFFERENT);
    assert_int_equal((int)r.e[0].count, 5);
    assert_true(r.e[0].first_seen > 0);
    assert_true(r.e[0].first_seen <= r.e[0].last_seen);
    assert_non_null(strstr(r.e[0].detail, "nickname"));
    assert_int_equal(query_int(f.t.db, "SELECT count(*) FROM dw_mismatch_log"), 1);
    assert_int_equal(query_int(f.t.db, "SELECT \"count\" FROM dw_mismatch_log"), 5);
    assert_int_equal(query_int(f.t.db, "SELECT first_seen <= last_seen FROM dw_mismatch_log"), 1);

    /* a different divergence on the same key is a second entry */
    sqlite3_sleep(30);
    exec_ok(f.t.db, "UPDATE m_new SET nickname = 'gamma' WHERE id = 42");
    assert_dw_ok(f.h, mfx_read(&f, 42));
    assert_string_not_equal(f.s.digest, digest1);
    log_counts(f.h, &entries, &dropped);
    assert_int_equal((int)entries, 2);
    assert_int_equal((int)dropped, 0);
    memset(&r, 0, sizeof r);
    assert_dw_ok(f.h, dw_mismatch_log(f.h, 0, log_cb, &r));
    assert_int_equal(r.n, 2);
    /* most recently seen first */
    assert_string_equal(r.e[0].digest, f.s.digest);
    assert_int_equal((int)r.e[0].count, 1);
    assert_string_equal(r.e[1].digest, digest1);
    assert_int_equal((int)r.e[1].count, 5);
    assert_true(r.e[1].last_seen <= r.e[0].last_seen);
    for (int i = 0; i < 2; i++) {
        assert_string_equal(r.e[i].key, "[42]");
        assert_true(r.e[i].first_seen <= r.e[i].last_seen);
    }

    /* limit and early stop */
    memset(&r, 0, sizeof r);
    assert_dw_ok(f.h, dw_mismatch_log(f.h, 1, log_cb, &r));
    assert_int_equal(r.n, 1);
    memset(&r, 0, sizeof r);
    r.stop_after = 1;
    assert_dw_ok(f.h, dw_mismatch_log(f.h, 0, log_cb, &r));
    assert_int_equal(r.n, 1);

    /* the first divergence again: its entry counts up, no new entry */
    sqlite3_sleep(30);
    exec_ok(f.t.db, "UPDATE m_new SET nickname = 'beta' WHERE id = 42");
    assert_dw_ok(f.h, mfx_read(&f, 42));
    assert_string_equal(f.s.digest, digest1);
    log_counts(f.h, &entries, &dropped);
    assert_int_equal((int)entries, 2);
    memset(&r, 0, sizeof r);
    assert_dw_ok(f.h, dw_mismatch_log(f.h, 0, log_cb, &r));
    assert_string_equal(r.e[0].digest, digest1);
    assert_int_equal((int)r.e[0].count, 6);
    assert_true(r.e[0].first_seen < r.e[0].last_seen);
    mfx_close(&f);
}

static void diverge_keys(sqlite3 *db, int from, int to)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "WITH RECURSIVE c(x) AS (SELECT %d UNION ALL SELECT x+1 FROM c WHERE x < %d)"
             " INSERT INTO m_old SELECT x, 'old' || x, 's' FROM c;",
             from, to);
    exec_ok(db, sql);
    snprintf(sql, sizeof sql,
             "WITH RECURSIVE c(x) AS (SELECT %d UNION ALL SELECT x+1 FROM c WHERE x < %d)"
             " INSERT INTO m_new SELECT x, 'new' || x, 's' FROM c;",
             from, to);
    exec_ok(db, sql);
}

/* The virtual machine steps of every statement on the connection while
 * one read logs a new mismatch. */
static int64_t steps_of_logging_read(mfx *f, int64_t id)
{
    int64_t entries, dropped, before;
    log_counts(f->h, &before, &dropped);
    for (sqlite3_stmt *st = sqlite3_next_stmt(f->t.db, NULL); st;
         st = sqlite3_next_stmt(f->t.db, st))
        sqlite3_stmt_status(st, SQLITE_STMTSTATUS_VM_STEP, 1);
    assert_dw_ok(f->h, mfx_read(f, id));
    int64_t steps = 0;
    for (sqlite3_stmt *st = sqlite3_next_stmt(f->t.db, NULL); st;
         st = sqlite3_next_stmt(f->t.db, st))
        steps += sqlite3_stmt_status(st, SQLITE_STMTSTATUS_VM_STEP, 0);
    log_counts(f->h, &entries, &dropped);
    assert_int_equal((int)(entries - before), 1);
    return steps;
}

/* Logging a mismatch costs the same whatever the log holds: no statement
 * it runs walks the log (the cap reads a kept count). */
static void test_log_cost_flat(void **state)
{
    (void)state;
    mfx f;
    mfx_open(&f, "mm_flat", 0, 1000000, 0);
    diverge_keys(f.t.db, 1, 3);
    assert_dw_ok(f.h, mfx_read(&f, 1)); /* statements prepared */
    int64_t small = steps_of_logging_read(&f, 2);
    exec_ok(f.t.db,
            "WITH RECURSIVE c(x) AS (SELECT 1000 UNION ALL SELECT x + 1 FROM c "
            "WHERE x < 50999) INSERT INTO dw_mismatch_log(migration_id, key, "
            "digest, kind, detail, count, first_seen, last_seen) SELECT id, "
            "'[' || x || ']', 'd', 3, 'x', 1, 0, 0 FROM c, dw_migrations;"
            "UPDATE dw_migrations SET mismatch_entries = mismatch_entries + "
            "50000");
    int64_t big = steps_of_logging_read(&f, 3);
    if (big > small + 100)
        print_error("steps with an empty log %lld, with 50000 entries %lld\n",
                    (long long)small, (long long)big);
    assert_true(big <= small + 100);
    mfx_close(&f);
}

/* The log's kept entry count forged (below zero, past the cap, or short
 * of the entries) is not taken at face value: the cap still holds, what
 * is not stored is counted as dropped, and dw_mismatch_log_count() tells
 * the damage. Clearing the log repairs it. A caller's rollback takes the
 * count back with the entry. */
static void test_log_entry_count_forged(void **state)
{
    (void)state;
    mfx f;
    mfx_open(&f, "mm_forged", 0, 3, 0);
    diverge_keys(f.t.db, 1, 9);
    int64_t entries, dropped;
    exec_ok(f.t.db, "UPDATE dw_migrations SET mismatch_entries = -5");
    for (int id = 1; id <= 5; id++)
        assert_dw_ok(f.h, mfx_read(&f, id));
    assert_in_range(query_int(f.t.db, "SELECT count(*) FROM dw_mismatch_log"),
                    0, 3);
    assert_dw(f.h, dw_mismatch_log_count(&entries, &dropped, f.h),
              DW_ECORRUPT);
    assert_non_null(
        strstr(dw_errmsg(f.h), "table dw_migrations, row with id 1"));
    assert_non_null(strstr(dw_errmsg(f.h), "mismatch_entries"));

    assert_dw_ok(f.h, dw_mismatch_log_clear(f.h));
    exec_ok(f.t.db, "UPDATE dw_migrations SET mismatch_entries = 1000000");
    assert_dw_ok(f.h, mfx_read(&f, 6));
    assert_dw(f.h, dw_mismatch_log_count(&entries, &dropped, f.h),
              DW_ECORRUPT);
    assert_non_null(strstr(dw_errmsg(f.h), "1000000"));
    assert_int_equal(query_int(f.t.db, "SELECT mismatch_dropped FROM "
                                       "dw_migrations"),
                     1);
    assert_dw_ok(f.h, dw_mismatch_log_clear(f.h));
    log_counts(f.h, &entries, &dropped);
    assert_int_equal((int)entries, 0);

    exec_ok(f.t.db, "BEGIN");
    assert_dw_ok(f.h, mfx_read(&f, 7));
    exec_ok(f.t.db, "ROLLBACK");
    assert_dw_ok(f.h, mfx_read(&f, 8));
    log_counts(f.h, &entries, &dropped);
    assert_int_equal((int)entries, 1);
    assert_int_equal(query_int(f.t.db, "SELECT mismatch_entries FROM "
                                       "dw_migrations"),
                     1);
    mfx_close(&f);
}

static void test_log_cap(void **state)
{
    (void)state;
    mfx f;
    mfx_open(&f, "mm_cap", 0, 3, 0);
    diverge_keys(f.t.db, 1, 5);
    for (int id = 1; id <= 5; id++)
        assert_dw_ok(f.h, mfx_read(&f, id));
    assert_int_equal(f.s.calls, 5); /* the sink sees them all */
    int64_t entries, dropped;
    log_counts(f.h, &entries, &dropped);
    assert_int_equal((int)entries, 3);
    assert_int_equal((int)dropped, 2);
    assert_int_equal(query_int(f.t.db, "SELECT count(*) FROM dw_mismatch_log"), 3);

    /* repeats of kept keys still count */
    for (int rep = 0; rep < 2; rep++)
        for (int id = 1; id <= 3; id++)
            assert_dw_ok(f.h, mfx_read(&f, id));
    log_counts(f.h, &entries, &dropped);
    assert_int_equal((int)entries, 3);
    assert_int_equal((int)dropped, 2);
    lrec r;
    memset(&r, 0, sizeof r);
    assert_dw_ok(f.h, dw_mismatch_log(f.h, 0, log_cb, &r));
    assert_int_equal(r.n, 3);
    int seen[4] = {0, 0, 0, 0};
    for (int i = 0; i < 3; i++) {
        assert_int_equal((int)r.e[i].count, 3);
        int id = atoi(r.e[i].key + 1);
        assert_in_range(id, 1, 3);
        seen[id]++;
    }
    assert_int_equal(seen[1] + seen[2] + seen[3], 3);
    assert_true(seen[1] == 1 && seen[2] == 1 && seen[3] == 1);
    mfx_close(&f);
}

static void test_log_redaction(void **state)
{
    (void)state;
    /* default: no raw value anywhere in the log */
    mfx f;
    mfx_open(&f, "mm_red", 0, 0, 0);
    exec_ok(f.t.db, "UPDATE m_new SET secret = 'swordfish' WHERE id = 42");
    assert_dw_ok(f.h, mfx_read(&f, 42));
    assert_int_equal(query_int(f.t.db, "SELECT count(*) FROM dw_mismatch_log"), 1);
    assert_int_equal(log_rows_like(f.t.db, "%hunter2%"), 0);
    assert_int_equal(log_rows_like(f.t.db, "%swordfish%"), 0);
    assert_int_equal(log_rows_like(f.t.db, "%alpha%"), 0);
    assert_int_equal(log_rows_like(f.t.db, "%beta%"), 0);
    assert_int_equal(log_rows_like(f.t.db, "%nickname%"), 1);
    assert_int_equal(log_rows_like(f.t.db, "%secret%"), 1);
    assert_int_equal(query_int(f.t.db,
                               "SELECT count(*) FROM dw_mismatch_log WHERE key = '[42]'"),
                     1);
    lrec r;
    memset(&r, 0, sizeof r);
    assert_dw_ok(f.h, dw_mismatch_log(f.h, 0, log_cb, &r));
    assert_int_equal(r.n, 1);
    assert_null(strstr(r.e[0].detail, "hunter2"));
    assert_null(strstr(r.e[0].detail, "swordfish"));
    assert_null(strstr(r.e[0].detail, "alpha"));
    mfx_close(&f);

    /* raw values allowed: present */
    mfx_open(&f, "mm_raw", DW_OPEN_LOG_RAW_VALUES, 0, 0);
    exec_ok(f.t.db, "UPDATE m_new SET secret = 'swordfish' WHERE id = 42");
    assert_dw_ok(f.h, mfx_read(&f, 42));
    assert_int_equal(log_rows_like(f.t.db, "%alpha%"), 1);
    assert_int_equal(log_rows_like(f.t.db, "%beta%"), 1);
    assert_int_equal(log_rows_like(f.t.db, "%hunter2%"), 1);
    assert_int_equal(log_rows_like(f.t.db, "%swordfish%"), 1);
    memset(&r, 0, sizeof r);
    assert_dw_ok(f.h, dw_mismatch_log(f.h, 0, log_cb, &r));
    assert_non_null(strstr(r.e[0].detail, "alpha"));
    mfx_close(&f);

    /* raw values allowed, secret redacted: never the secret */
    mfx_open(&f, "mm_raw_red", DW_OPEN_LOG_RAW_VALUES, 0, 1);
    exec_ok(f.t.db, "UPDATE m_new SET secret = 'swordfish' WHERE id = 42");
    assert_dw_ok(f.h, mfx_read(&f, 42));
    assert_int_equal(log_rows_like(f.t.db, "%alpha%"), 1);
    assert_int_equal(log_rows_like(f.t.db, "%beta%"), 1);
    assert_int_equal(log_rows_like(f.t.db, "%hunter2%"), 0);
    assert_int_equal(log_rows_like(f.t.db, "%swordfish%"), 0);
    assert_int_equal(log_rows_like(f.t.db, "%secret%"), 1);
    mfx_close(&f);
}

static void test_no_log_table(void **state)
{
    (void)state;
    mfx f;
    mfx_open(&f, "mm_nolog", DW_OPEN_NO_LOG_TABLE, 0, 0);
    assert_dw_ok(f.h, mfx_read(&f, 42));
    assert_dw_ok(f.h, mfx_read(&f, 42));
    assert_int_equal(f.s.calls, 2);
    assert_string_equal(f.s.key, "[42]");
    if (query_int(f.t.db, "SELECT count(*) FROM sqlite_master WHERE name = 'dw_mismatch_log'") > 0)
        assert_int_equal(query_int(f.t.db, "SELECT count(*) FROM dw_mismatch_log"), 0);
    int64_t entries, dropped;
    log_counts(f.h, &entries, &dropped);
    assert_int_equal((int)entries, 0);
    assert_int_equal((int)dropped, 0);
    lrec r;
    memset(&r, 0, sizeof r);
    assert_dw_ok(f.h, dw_mismatch_log(f.h, 0, log_cb, &r));
    assert_int_equal(r.n, 0);
    dw_metrics m;
    memset(&m, 0, sizeof m);
    m.version = DW_METRICS_VERSION;
    assert_dw_ok(f.h, dw_metrics_get(&m, f.h));
    assert_int_equal((int)m.mismatches, 2);
    mfx_close(&f);
}

static void test_log_clear(void **state)
{
    (void)state;
    mfx f;
    mfx_open(&f, "mm_clear", 0, 3, 0);
    dw_migration *other = mfx_migration(&f, "mm_other", 0, 0, 0);
    diverge_keys(f.t.db, 1, 5);
    for (int id = 1; id <= 5; id++) {
        assert_dw_ok(f.h, mfx_read(&f, id));
        assert_dw_ok(other, mfx_read_h(&f, other, id));
    }
    int64_t entries, dropped;
    log_counts(f.h, &entries, &dropped);
    assert_int_equal((int)entries, 3);
    assert_int_equal((int)dropped, 2);
    log_counts(other, &entries, &dropped);
    assert_int_equal((int)entries, 5);
    assert_int_equal((int)dropped, 0);

    assert_dw_ok(f.h, dw_mismatch_log_clear(f.h));
    log_counts(f.h, &entries, &dropped);
    assert_int_equal((int)entries, 0);
    assert_int_equal((int)dropped, 0);
    assert_int_equal(query_int(f.t.db,
                               "SELECT count(*) FROM dw_mismatch_log WHERE migration_id = "
                               "(SELECT id FROM dw_migrations WHERE name = 'mm_clear')"),
                     0);
    lrec r;
    memset(&r, 0, sizeof r);
    assert_dw_ok(f.h, dw_mismatch_log(f.h, 0, log_cb, &r));
    assert_int_equal(r.n, 0);
    /* another migration's log is untouched */
    log_counts(other, &entries, &dropped);
    assert_int_equal((int)entries, 5);
    assert_int_equal(query_int(f.t.db, "SELECT count(*) FROM dw_mismatch_log"), 5);

    /* the cap applies afresh */
    for (int id = 5; id >= 1; id--)
        assert_dw_ok(f.h, mfx_read(&f, id));
    log_counts(f.h, &entries, &dropped);
    assert_int_equal((int)entries, 3);
    assert_int_equal((int)dropped, 2);
    dw_close(other);
    mfx_close(&f);
}

static void test_log_stderr(void **state)
{
    (void)state;
    mfx f;
    mfx_open(&f, "mm_stderr_x", DW_OPEN_LOG_STDERR, 0, 0);
    char path[300];
    const char *base = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/dwstderr.XXXXXX", base ? base : "/tmp");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_true(dup2(fd, 2) >= 0);
    int rc = mfx_read(&f, 42);
    fflush(stderr);
    assert_true(dup2(saved, 2) >= 0);
    close(saved);
    close(fd);
    assert_dw_ok(f.h, rc);
    assert_int_equal(f.s.calls, 1);

    char buf[4096];
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    unlink(path);
    buf[n] = '\0';
    int lines = 0;
    for (size_t i = 0; i < n; i++)
        if (buf[i] == '\n')
            lines++;
    if (lines != 1)
        print_error("stderr got %d lines: \"%s\"\n", lines, buf);
    assert_int_equal(lines, 1);
    assert_non_null(strstr(buf, "mm_stderr_x"));
    assert_non_null(strstr(buf, "[42]"));
    assert_null(strstr(buf, "alpha")); /* redacted by default */
    assert_null(strstr(buf, "beta"));
    mfx_close(&f);
}

static void test_flood(void **state)
{
    (void)state;
    mfx f;
    mfx_open(&f, "mm_flood", 0, 0, 0);
    diverge_keys(f.t.db, 1001, 3000); /* 2000 keys, not 42 */
    for (int id = 1001; id <= 3000; id++)
        assert_dw_ok(f.h, mfx_read(&f, id));
    assert_int_equal(f.s.calls, 2000);
    int64_t entries, dropped;
    log_counts(f.h, &entries, &dropped);
    assert_int_equal((int)entries, 1000);
    assert_int_equal((int)dropped, 1000);
    assert_int_equal(query_int(f.t.db, "SELECT count(*) FROM dw_mismatch_log"), 1000);
    lrec r;
    memset(&r, 0, sizeof r);
    assert_dw_ok(f.h, dw_mismatch_log(f.h, 5, log_cb, &r));
    assert_int_equal(r.n, 5);
    mfx_close(&f);
}

/* ---- regressions: names matched as SQLite matches them ---------------------------- */

/* Redaction and ignore lists name columns case-insensitively (ASCII), as
 * SQLite does: "FULL" redacts the column "full", "NICKNAME" ignores
 * "nickname". */
static void test_redact_and_ignore_case_insensitive(void **state)
{
    (void)state;
    mfx f;
    memset(&f, 0, sizeof f);
    test_db_open(&f.t);
    exec_ok(f.t.db,
            "CREATE TABLE c_old(id INTEGER PRIMARY KEY, nickname TEXT, full TEXT);"
            "CREATE TABLE c_new(id INTEGER PRIMARY KEY, nickname TEXT, full TEXT);"
            "INSERT INTO c_old VALUES(42, 'alpha', 'secret-ssn');"
            "INSERT INTO c_new VALUES(42, 'beta', 'other-ssn');");
    static const dw_column_map up[] = {{"nickname", "nickname"},
                                       {"full", "full"}};
    static const char *const redact_upper[] = {"FULL"};
    dw_options o = options_for("mm_case", TEST_SIDE_UNLISTED("c_old", k_id),
                               TEST_SIDE_UNLISTED("c_new", k_id));
    o.up = up;
    o.nup = 2;
    o.flags = DW_OPEN_LOG_RAW_VALUES;
    o.redact_columns = redact_upper;
    o.nredact_columns = 1;
    o.mismatch_fn = sink;
    o.mismatch_payload = &f.s;
    f.h = open_migration_ok(f.t.db, &o);
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_SHADOW));
    assert_int_equal(dw_row_new(&f.out), DW_OK);

    /* Redaction: "full" is never shown raw, "nickname" is. */
    assert_dw_ok(f.h, mfx_read(&f, 42));
    assert_int_equal(f.s.calls, 1);
    assert_int_equal(f.s.ndiffs, 2);
    const mdiff *d = find_diff(&f.s, "full");
    assert_non_null(d);
    assert_int_equal(d->has_old, 0);
    assert_int_equal(d->has_new, 0);
    assert_null(strstr(d->old_desc, "secret-ssn"));
    assert_null(strstr(d->new_desc, "other-ssn"));
    d = find_diff(&f.s, "nickname");
    assert_non_null(d);
    assert_string_equal(d->old_raw, "alpha");
    assert_int_equal(query_int(f.t.db, "SELECT count(*) FROM dw_mismatch_log"), 1);
    assert_int_equal(log_rows_like(f.t.db, "%secret-ssn%"), 0);
    assert_int_equal(log_rows_like(f.t.db, "%other-ssn%"), 0);
    assert_int_equal(log_rows_like(f.t.db, "%alpha%"), 1);
    lrec r;
    memset(&r, 0, sizeof r);
    assert_dw_ok(f.h, dw_mismatch_log(f.h, 0, log_cb, &r));
    assert_int_equal(r.n, 1);
    assert_null(strstr(r.e[0].detail, "secret-ssn"));
    assert_null(strstr(r.e[0].detail, "other-ssn"));

    /* Ignore: with "full" made equal, "NICKNAME" leaves nothing to differ. */
    exec_ok(f.t.db, "UPDATE c_new SET full = 'secret-ssn' WHERE id = 42");
    static const char *const ignore_upper[] = {"NICKNAME"};
    dw_read_options ro = DW_READ_OPTIONS_INIT;
    ro.ignore_columns = ignore_upper;
    ro.nignore_columns = 1;
    assert_dw_ok(f.h, dw_set_read_options(f.h, &ro));
    dw_metrics_reset(f.h);
    f.s.calls = 0;
    assert_dw_ok(f.h, mfx_read(&f, 42));
    dw_metrics m;
    memset(&m, 0, sizeof m);
    m.version = DW_METRICS_VERSION;
    assert_dw_ok(f.h, dw_metrics_get(&m, f.h));
    assert_int_equal((int)m.comparisons, 1);
    assert_int_equal((int)m.mismatches, 0);
    assert_int_equal((int)m.matches, 1);
    assert_int_equal(f.s.calls, 0);
    mfx_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sink_default_redacted),
        cmocka_unit_test(test_sink_composite_text_key),
        cmocka_unit_test(test_sink_raw_values_with_redaction),
        cmocka_unit_test(test_sink_column_on_one_side),
        cmocka_unit_test(test_log_dedup),
        cmocka_unit_test(test_log_cap),
        cmocka_unit_test(test_log_cost_flat),
        cmocka_unit_test(test_log_entry_count_forged),
        cmocka_unit_test(test_log_redaction),
        cmocka_unit_test(test_no_log_table),
        cmocka_unit_test(test_log_clear),
        cmocka_unit_test(test_log_stderr),
        cmocka_unit_test(test_flood),
        cmocka_unit_test(test_sink_raw_values_every_type),
        cmocka_unit_test(test_redact_and_ignore_case_insensitive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
