/* Tests for the read side of the stage table: dw_read(), dw_compare() and the
 * read options (sampling, order, time budget, ignore, comparator,
 * normaliser), and test mode. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "support.h"
#include "sqlite_memory.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- helpers ---------------------------------------------------------------- */

static const char *const k_id[] = {"id"};

static dw_metrics metrics(dw_migration *h)
{
    dw_metrics m;
    memset(&m, 0, sizeof m);
    m.version = DW_METRICS_VERSION;
    assert_dw_ok(h, dw_metrics_get(&m, h));
    return m;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The sink: remembers the last mismatch. */
typedef struct sink_rec {
    int calls;
    int kind;
    int ndiffs;
    char key[64];
    char cols[8][32];
    int autocommit; /* sqlite3_get_autocommit() during the call */
    sqlite3 *db;
} sink_rec;

static void sink(const dw_mismatch *m, void *payload)
{
    sink_rec *s = payload;
    s->calls++;
    s->kind = m->kind;
    s->ndiffs = m->ndiffs;
    snprintf(s->key, sizeof s->key, "%s", m->key ? m->key : "(null)");
    for (int i = 0; i < 8; i++)
        s->cols[i][0] = '\0';
    for (int i = 0; i < m->ndiffs && i < 8; i++)
        snprintf(s->cols[i], sizeof s->cols[i], "%s",
                 m->diffs[i].column ? m->diffs[i].column : "(null)");
    if (s->db)
        s->autocommit = sqlite3_get_autocommit(s->db);
}

static int sink_has_col(const sink_rec *s, const char *col)
{
    for (int i = 0; i < s->ndiffs && i < 8; i++)
        if (strcmp(s->cols[i], col) == 0)
            return 1;
    return 0;
}

/* What the application read callbacks return for each side. */
typedef struct side_data {
    int rc;          /* returned instead of DW_OK when not DW_OK */
    const char *name;
    const char *note; /* column left out when NULL */
    int64_t qty;
    const char *updated; /* column left out when NULL */
    int slow;        /* run a slow query first */
    int idle_ms;     /* spend this long outside SQLite first */
} side_data;

typedef struct rd {
    char order[16];
    int n;
    int calls[3];
    side_data s[3];
    int autocommit_in_read; /* 1 if any read ran in autocommit mode */
} rd;

static void rd_init(rd *r)
{
    memset(r, 0, sizeof *r);
    r->s[DW_SIDE_OLD].name = "old-val";
    r->s[DW_SIDE_NEW].name = "new-val";
    r->s[DW_SIDE_OLD].qty = 1;
    r->s[DW_SIDE_NEW].qty = 1;
}

static void rd_begin(rd *r)
{
    r->n = 0;
    r->order[0] = '\0';
}

#define SLOW_SQL                                                               \
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c "           \
    "WHERE x < 100000000) SELECT count(*) FROM c"

static int fill(rd *r, int side, dw_row *out, sqlite3 *db, const dw_value *key,
                int nkey)
{
    r->calls[side]++;
    if (r->n < (int)sizeof r->order - 1) {
        r->order[r->n++] = side == DW_SIDE_OLD ? 'O' : 'N';
        r->order[r->n] = '\0';
    }
    if (sqlite3_get_autocommit(db))
        r->autocommit_in_read = 1;
    const side_data *d = &r->s[side];
    if (d->idle_ms) {
        struct timespec ts = {d->idle_ms / 1000, (d->idle_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (d->slow) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(db, SLOW_SQL, -1, &st, NULL);
        if (rc != SQLITE_OK)
            return rc;
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_ROW)
            return rc;
    }
    if (d->rc != DW_OK)
        return d->rc;
    if (nkey != 1 || !key)
        return 99;
    int rc = dw_row_set(out, "id", &key[0]);
    if (rc == DW_OK)
        rc = dw_row_set_text(out, "name", d->name);
    if (rc == DW_OK && d->note)
        rc = dw_row_set_text(out, "note", d->note);
    if (rc == DW_OK)
        rc = dw_row_set_int(out, "qty", d->qty);
    if (rc == DW_OK && d->updated)
        rc = dw_row_set_text(out, "updated_at", d->updated);
    return rc;
}

static int read_old(dw_row *out, void *db, const dw_value *key, int nkey,
                    void *payload)
{
    return fill(payload, DW_SIDE_OLD, out, db, key, nkey);
}

static int read_new(dw_row *out, void *db, const dw_value *key, int nkey,
                    void *payload)
{
    return fill(payload, DW_SIDE_NEW, out, db, key, nkey);
}

static const char *out_text(const dw_row *row, const char *col)
{
    const dw_value *v = dw_row_get(row, col);
    if (!v)
        return "(absent)";
    if (v->type != DW_TYPE_TEXT)
        return "(not text)";
    return (const char *)v->p;
}

/* A fixture: two tables, identity mapping on name; the callbacks ignore them. */
typedef struct fx {
    test_db t;
    dw_migration *h;
    sink_rec sr;
    rd r;
    dw_row *out;
} fx;

/* Opens the fixture with a sink of the test's own (NULL: the recording
 * sink, into f->sr). */
static void fx_open_sink(fx *f, unsigned int flags, dw_mismatch_fn fn,
                         void *payload)
{
    memset(f, 0, sizeof *f);
    test_db_open(&f->t);
    exec_ok(f->t.db, "PRAGMA synchronous=NORMAL");
    exec_ok(f->t.db,
            "CREATE TABLE r_old(id INTEGER PRIMARY KEY, name TEXT);"
            "CREATE TABLE r_new(id INTEGER PRIMARY KEY, name TEXT);");
    static const dw_column_map up[] = {{"name", "name"}};
    dw_options o = options_for("reads", TEST_SIDE_UNLISTED("r_old", k_id),
                               TEST_SIDE_UNLISTED("r_new", k_id));
    o.up = up;
    o.nup = 1;
    o.flags = flags;
    o.mismatch_fn = fn ? fn : sink;
    o.mismatch_payload = fn ? payload : &f->sr;
    f->h = open_migration_ok(f->t.db, &o);
    f->sr.db = f->t.db;
    rd_init(&f->r);
    assert_int_equal(dw_row_new(&f->out), DW_OK);
}

static void fx_open(fx *f, unsigned int flags)
{
    fx_open_sink(f, flags, NULL, NULL);
}

static void fx_close(fx *f)
{
    dw_row_free(f->out);
    dw_close(f->h);
    test_db_close(&f->t);
}

static int fx_read(fx *f, int64_t id)
{
    dw_value k = dw_int(id);
    rd_begin(&f->r);
    return dw_read(f->out, f->h, &k, 1, read_old, read_new, &f->r);
}

/* Opens the fixture at SHADOW with both sides' name "same" and the given
 * updated_at values (NULL leaves the column out of that side's read). */
static void fx_open_same_names(fx *f, const char *old_updated,
                               const char *new_updated)
{
    fx_open(f, 0);
    assert_dw_ok(f->h, stage_force(f->h, DW_STAGE_SHADOW));
    f->r.s[DW_SIDE_OLD].name = "same";
    f->r.s[DW_SIDE_NEW].name = "same";
    f->r.s[DW_SIDE_OLD].updated = old_updated;
    f->r.s[DW_SIDE_NEW].updated = new_updated;
}

/* Sets read options that ignore the given columns, and nothing else. */
static void fx_set_ignore(fx *f, const char *const *cols, int ncols)
{
    dw_read_options ro = DW_READ_OPTIONS_INIT;
    ro.ignore_columns = cols;
    ro.nignore_columns = ncols;
    assert_dw_ok(f->h, dw_set_read_options(f->h, &ro));
}

/* Sets read options with a time budget, and names the application's
 * progress handler, called every 1000 operations. */
static void fx_set_budget_app_progress(fx *f, int budget_ms,
                                       dw_sqlite_progress_fn fn,
                                       void *payload)
{
    dw_read_options ro = DW_READ_OPTIONS_INIT;
    ro.budget_ms = budget_ms;
    assert_dw_ok(f->h, dw_set_read_options(f->h, &ro));
    assert_dw_ok(f->h, dw_sqlite_set_progress_handler(f->h, fn, payload, 1000));
}

/* Makes the new side's name differ and checks that a read reports it, as
 * the sink's call number calls, with "name" the one column different. */
static void assert_name_still_counts(fx *f, int calls)
{
    f->r.s[DW_SIDE_NEW].name = "other";
    assert_dw_ok(f->h, fx_read(f, 1));
    assert_int_equal(f->sr.calls, calls);
    assert_int_equal(f->sr.ndiffs, 1);
    assert_string_equal(f->sr.cols[0], "name");
}

/* ---- the stage table ------------------------------------------------------------------- */

static void test_every_stage(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0);
    static const struct {
        int stage;
        const char *order;
        const char *returned;
        int compared;
    } want[] = {
        {DW_STAGE_OFF, "O", "old-val", 0},
        {DW_STAGE_DUAL_WRITE, "O", "old-val", 0},
        {DW_STAGE_SHADOW, "ON", "old-val", 1},
        {DW_STAGE_LIVE, "NO", "new-val", 1},
        {DW_STAGE_RAMPDOWN, "N", "new-val", 0},
        {DW_STAGE_COMPLETE, "N", "new-val", 0},
    };
    for (int i = 0; i < 6; i++) {
        if (i > 0)
            assert_dw_ok(f.h, stage_force(f.h, want[i].stage));
        int stage = -1;
        assert_dw_ok(f.h, dw_stage_get(&stage, f.h));
        assert_int_equal(stage, want[i].stage);
        dw_metrics_reset(f.h);
        f.sr.calls = 0;

        /* sides that differ */
        f.r.s[DW_SIDE_OLD].name = "old-val";
        f.r.s[DW_SIDE_NEW].name = "new-val";
        assert_dw_ok(f.h, fx_read(&f, 42));
        if (strcmp(f.r.order, want[i].order) != 0)
            print_error("stage %s: reads ran \"%s\", expected \"%s\"\n",
                        dw_stage_name(want[i].stage), f.r.order, want[i].order);
        assert_string_equal(f.r.order, want[i].order);
        assert_string_equal(out_text(f.out, "name"), want[i].returned);
        assert_non_null(dw_row_get(f.out, "id"));
        assert_true(dw_row_get(f.out, "id")->i == 42);
        dw_metrics m = metrics(f.h);
        assert_int_equal((int)m.reads, 1);
        assert_int_equal((int)m.comparisons, want[i].compared);
        assert_int_equal((int)m.mismatches, want[i].compared);
        assert_int_equal((int)m.matches, 0);
        assert_int_equal((int)m.skipped, 0);
        assert_int_equal((int)m.compare_errors, 0);
        assert_int_equal(f.sr.calls, want[i].compared);
        if (want[i].compared) {
            assert_int_equal(f.sr.kind, DW_MISMATCH_DIFFERENT);
            assert_string_equal(f.sr.key, "[42]");
            assert_int_equal(f.sr.ndiffs, 1);
            assert_string_equal(f.sr.cols[0], "name");
        }

        /* sides that agree */
        f.r.s[DW_SIDE_NEW].name = "old-val";
        assert_dw_ok(f.h, fx_read(&f, 42));
        assert_string_equal(f.r.order, want[i].order);
        assert_string_equal(out_text(f.out, "name"), "old-val");
        m = metrics(f.h);
        assert_int_equal((int)m.reads, 2);
        assert_int_equal((int)m.comparisons, 2 * want[i].compared);
        assert_int_equal((int)m.matches, want[i].compared);
        assert_int_equal((int)m.mismatches, want[i].compared);
        assert_int_equal(f.sr.calls, want[i].compared);
    }
    fx_close(&f);
}

static void test_read_transaction_and_sink_timing(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0);
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_SHADOW));
    f.sr.autocommit = -1;
    assert_dw_ok(f.h, fx_read(&f, 1));
    assert_string_equal(f.r.order, "ON");
    /* both reads in one read transaction */
    assert_int_equal(f.r.autocommit_in_read, 0);
    /* the sink runs after the read's transaction ended */
    assert_int_equal(f.sr.calls, 1);
    assert_int_equal(f.sr.autocommit, 1);
    assert_int_equal(sqlite3_get_autocommit(f.t.db), 1);

    /* inside the caller's transaction, it stays the caller's */
    exec_ok(f.t.db, "BEGIN");
    f.r.autocommit_in_read = 0;
    assert_dw_ok(f.h, fx_read(&f, 1));
    assert_int_equal(f.r.autocommit_in_read, 0);
    assert_int_equal(sqlite3_get_autocommit(f.t.db), 0);
    exec_ok(f.t.db, "COMMIT");
    fx_close(&f);
}

/* ---- the returned row never depends on the other side ------------------------------------ */

static void test_other_side_failures(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0);
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_SHADOW));

    /* the new read fails */
    dw_metrics_reset(f.h);
    f.r.s[DW_SIDE_NEW].rc = 1234;
    assert_dw_ok(f.h, fx_read(&f, 42));
    assert_string_equal(f.r.order, "ON");
    assert_string_equal(out_text(f.out, "name"), "old-val");
    dw_metrics m = metrics(f.h);
    assert_int_equal((int)m.compare_errors, 1);
    assert_int_equal((int)m.mismatches, 0);
    assert_int_equal((int)m.matches, 0);
    assert_int_equal((int)m.new_side.read_errors, 1);
    assert_int_equal((int)m.old_side.read_errors, 0);
    assert_int_equal(f.sr.calls, 0);

    /* the new side has no row */
    dw_metrics_reset(f.h);
    f.r.s[DW_SIDE_NEW].rc = DW_ENOTFOUND;
    assert_dw_ok(f.h, fx_read(&f, 42));
    assert_string_equal(out_text(f.out, "name"), "old-val");
    m = metrics(f.h);
    assert_int_equal((int)m.comparisons, 1);
    assert_int_equal((int)m.mismatches, 1);
    assert_int_equal(f.sr.calls, 1);
    assert_int_equal(f.sr.kind, DW_MISMATCH_MISSING_NEW);
    assert_string_equal(f.sr.key, "[42]");

    /* the old side has no row, the new one has */
    dw_metrics_reset(f.h);
    f.sr.calls = 0;
    f.r.s[DW_SIDE_NEW].rc = DW_OK;
    f.r.s[DW_SIDE_OLD].rc = DW_ENOTFOUND;
    assert_int_equal(dw_row_set_text(f.out, "junk", "x"), DW_OK);
    assert_dw(f.h, fx_read(&f, 43), DW_ENOTFOUND);
    assert_int_equal(dw_row_count(f.out), 0);
    m = metrics(f.h);
    assert_int_equal((int)m.mismatches, 1);
    assert_int_equal(f.sr.calls, 1);
    assert_int_equal(f.sr.kind, DW_MISMATCH_EXTRA_NEW);
    assert_string_equal(f.sr.key, "[43]");

    /* neither side: not found, no mismatch */
    dw_metrics_reset(f.h);
    f.sr.calls = 0;
    f.r.s[DW_SIDE_NEW].rc = DW_ENOTFOUND;
    assert_dw(f.h, fx_read(&f, 44), DW_ENOTFOUND);
    /* The message says so, and names the side read. */
    assert_string_equal(dw_errmsg(f.h), dw_errstr(DW_ENOTFOUND));
    assert_int_equal(dw_errside(f.h), DW_SIDE_OLD);
    m = metrics(f.h);
    assert_int_equal((int)m.mismatches, 0);
    assert_int_equal(f.sr.calls, 0);

    /* the authoritative read fails: that is returned */
    f.r.s[DW_SIDE_OLD].rc = 1234;
    f.r.s[DW_SIDE_NEW].rc = DW_OK;
    assert_dw(f.h, fx_read(&f, 45), DW_ECALLBACK);
    assert_int_equal(f.sr.calls, 0);

    /* at LIVE, the old side is the other side */
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_LIVE));
    dw_metrics_reset(f.h);
    assert_dw_ok(f.h, fx_read(&f, 46));
    assert_string_equal(f.r.order, "NO");
    assert_string_equal(out_text(f.out, "name"), "new-val");
    m = metrics(f.h);
    assert_int_equal((int)m.compare_errors, 1);
    assert_int_equal((int)m.old_side.read_errors, 1);
    assert_int_equal(f.sr.calls, 0);

    f.r.s[DW_SIDE_OLD].rc = DW_OK;
    f.r.s[DW_SIDE_NEW].rc = DW_ENOTFOUND;
    assert_dw(f.h, fx_read(&f, 47), DW_ENOTFOUND);
    assert_int_equal(dw_row_count(f.out), 0);
    assert_int_equal(f.sr.calls, 1);
    assert_int_equal(f.sr.kind, DW_MISMATCH_MISSING_NEW);
    assert_string_equal(f.sr.key, "[47]");
    fx_close(&f);
}

/* When the trusted side's read fails, the other side is still read, for
 * its counters and its time, as the peers (Scientist, LaunchDarkly's
 * Migrator) do; nothing is compared and the trusted failure comes back
 * unchanged, its message and side included, whatever the other read did.
 * A locked database or exhausted memory would only fail the other read
 * too: it is not tried then. */
static void test_trusted_read_failure_still_reads_other(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0);
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_SHADOW));
    dw_metrics_reset(f.h);
    f.r.s[DW_SIDE_OLD].rc = 1234;
    assert_dw(f.h, fx_read(&f, 1), DW_ECALLBACK);
    assert_string_equal(f.r.order, "ON");
    assert_int_equal(dw_errside(f.h), DW_SIDE_OLD);
    assert_non_null(strstr(dw_errmsg(f.h), "old side: the read callback"));
    assert_non_null(strstr(dw_errmsg(f.h), "returned 1234"));
    assert_int_equal(dw_row_count(f.out), 0);
    dw_metrics m = metrics(f.h);
    assert_int_equal((int)m.old_side.read_errors, 1);
    assert_int_equal((int)m.new_side.reads, 1);
    assert_int_equal((int)m.new_side.read_errors, 0);
    assert_int_equal((int)m.new_side.latency_count, 1);
    assert_int_equal((int)m.compare_errors, 1);
    assert_int_equal((int)m.comparisons, 0);
    assert_int_equal(f.sr.calls, 0);

    /* the other read failing as well changes nothing the caller sees */
    f.r.s[DW_SIDE_NEW].rc = 99;
    assert_dw(f.h, fx_read(&f, 1), DW_ECALLBACK);
    assert_int_equal(dw_errside(f.h), DW_SIDE_OLD);
    assert_non_null(strstr(dw_errmsg(f.h), "returned 1234"));
    assert_int_equal((int)metrics(f.h).new_side.read_errors, 1);

    /* at LIVE the new side is trusted and the old one still read */
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_LIVE));
    dw_metrics_reset(f.h);
    f.r.s[DW_SIDE_OLD].rc = DW_OK;
    assert_dw(f.h, fx_read(&f, 1), DW_ECALLBACK);
    assert_string_equal(f.r.order, "NO");
    assert_int_equal(dw_errside(f.h), DW_SIDE_NEW);
    assert_non_null(strstr(dw_errmsg(f.h), "returned 99"));
    assert_int_equal((int)metrics(f.h).old_side.reads, 1);

    /* busy: not tried again on the other side */
    f.r.s[DW_SIDE_NEW].rc = DW_EBUSY;
    assert_dw(f.h, fx_read(&f, 1), DW_EBUSY);
    assert_string_equal(f.r.order, "N");
    fx_close(&f);
}

/* ---- reads through the spec ---------------------------------------------------------------- */

typedef struct sfx {
    test_db t;
    dw_migration *h;
    sink_rec sr;
    dw_row *out;
} sfx;

/* The spec of the sfx fixture, for a second handle on it too. */
static dw_options sfx_options(void)
{
    static const dw_column_map up[] = {{"title", "name"},
                                       {"cents", "price * 100"}};
    dw_options o = options_for("spec_reads", TEST_SIDE_UNLISTED("s_old", k_id),
                               TEST_SIDE_UNLISTED("s_new", k_id));
    o.up = up;
    o.nup = 2;
    return o;
}

static void sfx_open(sfx *f, unsigned int flags)
{
    memset(f, 0, sizeof *f);
    test_db_open(&f->t);
    exec_ok(f->t.db,
            "CREATE TABLE s_old(id INTEGER PRIMARY KEY, name TEXT, price INTEGER);"
            "CREATE TABLE s_new(id INTEGER PRIMARY KEY, title TEXT, cents INTEGER);"
            "INSERT INTO s_old VALUES(1, 'widget', 5);"
            "INSERT INTO s_new VALUES(1, 'widget', 500);"
            "INSERT INTO s_new VALUES(2, 'ghost', 100);"
            "INSERT INTO s_old VALUES(3, 'lonely', 1);");
    dw_options o = sfx_options();
    o.flags = flags;
    o.mismatch_fn = sink;
    o.mismatch_payload = &f->sr;
    f->h = open_migration_ok(f->t.db, &o);
    assert_int_equal(dw_row_new(&f->out), DW_OK);
}

static void sfx_close(sfx *f)
{
    dw_row_free(f->out);
    dw_close(f->h);
    test_db_close(&f->t);
}

static void test_read_through_spec(void **state)
{
    (void)state;
    sfx f;
    sfx_open(&f, 0);
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_SHADOW));
    dw_value k = dw_int(1);
    assert_dw_ok(f.h, dw_read(f.out, f.h, &k, 1, NULL, NULL, NULL));
    assert_int_equal(dw_row_count(f.out), 3);
    assert_true(dw_row_get(f.out, "id")->i == 1);
    assert_string_equal(out_text(f.out, "name"), "widget");
    assert_non_null(dw_row_get(f.out, "price"));
    assert_true(dw_row_get(f.out, "price")->i == 5);
    dw_metrics m = metrics(f.h);
    assert_int_equal((int)m.comparisons, 1);
    assert_int_equal((int)m.matches, 1);
    assert_int_equal((int)m.mismatches, 0);
    assert_int_equal(f.sr.calls, 0);

    /* a divergence injected on the new side */
    exec_ok(f.t.db, "UPDATE s_new SET cents = 999 WHERE id = 1");
    assert_dw_ok(f.h, dw_read(f.out, f.h, &k, 1, NULL, NULL, NULL));
    assert_true(dw_row_get(f.out, "price")->i == 5);
    m = metrics(f.h);
    assert_int_equal((int)m.mismatches, 1);
    assert_int_equal(f.sr.calls, 1);
    assert_int_equal(f.sr.kind, DW_MISMATCH_DIFFERENT);
    assert_int_equal(f.sr.ndiffs, 1);
    assert_string_equal(f.sr.cols[0], "cents");
    assert_string_equal(f.sr.key, "[1]");

    /* a row only on the new side */
    dw_value k2 = dw_int(2);
    assert_dw(f.h, dw_read(f.out, f.h, &k2, 1, NULL, NULL, NULL), DW_ENOTFOUND);
    assert_int_equal(dw_row_count(f.out), 0);
    assert_int_equal(f.sr.calls, 2);
    assert_int_equal(f.sr.kind, DW_MISMATCH_EXTRA_NEW);
    /* a row only on the old side */
    dw_value k3 = dw_int(3);
    assert_dw_ok(f.h, dw_read(f.out, f.h, &k3, 1, NULL, NULL, NULL));
    assert_string_equal(out_text(f.out, "name"), "lonely");
    assert_int_equal(f.sr.calls, 3);
    assert_int_equal(f.sr.kind, DW_MISMATCH_MISSING_NEW);

    /* at LIVE the new row comes back, in the new shape */
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_LIVE));
    assert_dw_ok(f.h, dw_read(f.out, f.h, &k, 1, NULL, NULL, NULL));
    assert_int_equal(dw_row_count(f.out), 3);
    assert_string_equal(out_text(f.out, "title"), "widget");
    assert_true(dw_row_get(f.out, "cents")->i == 999);
    assert_null(dw_row_get(f.out, "price"));
    assert_int_equal(f.sr.calls, 4);
    assert_string_equal(f.sr.cols[0], "cents");
    assert_dw_ok(f.h, dw_read(f.out, f.h, &k2, 1, NULL, NULL, NULL));
    assert_string_equal(out_text(f.out, "title"), "ghost");
    assert_int_equal(f.sr.kind, DW_MISMATCH_EXTRA_NEW);
    sfx_close(&f);
}

static void test_compare_through_spec(void **state)
{
    (void)state;
    sfx f;
    sfx_open(&f, 0);
    dw_value k = dw_int(1);
    int equal = -1;
    /* whatever the stage: here OFF */
    assert_dw_ok(f.h, dw_compare(&equal, f.h, &k, 1));
    assert_int_equal(equal, 1);
    assert_int_equal(f.sr.calls, 0);
    exec_ok(f.t.db, "UPDATE s_new SET title = 'WIDGET' WHERE id = 1");
    equal = -1;
    assert_dw_ok(f.h, dw_compare(&equal, f.h, &k, 1));
    assert_int_equal(equal, 0);
    assert_int_equal(f.sr.calls, 1);
    assert_int_equal(f.sr.kind, DW_MISMATCH_DIFFERENT);
    assert_string_equal(f.sr.cols[0], "title");
    dw_metrics m = metrics(f.h);
    assert_int_equal((int)m.mismatches, 1);
    /* one side only */
    dw_value k3 = dw_int(3);
    assert_dw_ok(f.h, dw_compare(&equal, f.h, &k3, 1));
    assert_int_equal(equal, 0);
    assert_int_equal(f.sr.kind, DW_MISMATCH_MISSING_NEW);
    /* misuse */
    assert_int_equal(dw_compare(NULL, f.h, &k, 1), DW_EMISUSE);
    assert_int_equal(dw_compare(&equal, NULL, &k, 1), DW_EMISUSE);
    assert_int_equal(dw_compare(&equal, f.h, NULL, 1), DW_EMISUSE);
    assert_int_equal(dw_compare(&equal, f.h, &k, 2), DW_EMISUSE);
    sfx_close(&f);
}

/* ---- sampling and order --------------------------------------------------------------------- */

static void test_sampling(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0);
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_SHADOW));
    dw_read_options ro = DW_READ_OPTIONS_INIT;

    ro.sample_ratio = 0.0;
    assert_dw_ok(f.h, dw_set_read_options(f.h, &ro));
    dw_metrics_reset(f.h);
    for (int i = 0; i < 50; i++) {
        assert_dw_ok(f.h, fx_read(&f, i + 1));
        assert_string_equal(out_text(f.out, "name"), "old-val");
    }
    assert_int_equal(f.r.calls[DW_SIDE_NEW], 0);
    assert_int_equal(f.r.calls[DW_SIDE_OLD], 50);
    dw_metrics m = metrics(f.h);
    assert_int_equal((int)m.reads, 50);
    assert_int_equal((int)m.skipped, 50);
    assert_int_equal((int)m.comparisons, 0);
    assert_int_equal(f.sr.calls, 0);

    ro.sample_ratio = 1.0;
    assert_dw_ok(f.h, dw_set_read_options(f.h, &ro));
    dw_metrics_reset(f.h);
    f.r.calls[DW_SIDE_NEW] = 0;
    for (int i = 0; i < 50; i++)
        assert_dw_ok(f.h, fx_read(&f, i + 1));
    assert_int_equal(f.r.calls[DW_SIDE_NEW], 50);
    m = metrics(f.h);
    assert_int_equal((int)m.comparisons, 50);
    assert_int_equal((int)m.mismatches, 50);
    assert_int_equal((int)m.skipped, 0);

    /* a half share samples some and skips some */
    ro.sample_ratio = 0.5;
    assert_dw_ok(f.h, dw_set_read_options(f.h, &ro));
    dw_metrics_reset(f.h);
    for (int i = 0; i < 400; i++)
        assert_dw_ok(f.h, fx_read(&f, 7));
    m = metrics(f.h);
    assert_int_equal((int)(m.comparisons + m.skipped), 400);
    assert_true(m.comparisons > 100 && m.comparisons < 300);

    /* NULL restores the defaults: everything compared */
    ro.sample_ratio = 0.0;
    assert_dw_ok(f.h, dw_set_read_options(f.h, &ro));
    assert_dw_ok(f.h, dw_set_read_options(f.h, NULL));
    dw_metrics_reset(f.h);
    assert_dw_ok(f.h, fx_read(&f, 1));
    assert_int_equal((int)metrics(f.h).comparisons, 1);

    /* invalid options */
    ro = (dw_read_options)DW_READ_OPTIONS_INIT;
    ro.sample_ratio = -0.1;
    assert_int_equal(dw_set_read_options(f.h, &ro), DW_EMISUSE);
    ro.sample_ratio = 1.5;
    assert_int_equal(dw_set_read_options(f.h, &ro), DW_EMISUSE);
    ro.sample_ratio = 1.0;
    ro.budget_ms = -1;
    assert_int_equal(dw_set_read_options(f.h, &ro), DW_EMISUSE);
    ro.budget_ms = 0;
    ro.order = 7;
    assert_int_equal(dw_set_read_options(f.h, &ro), DW_EMISUSE);
    ro.order = DW_ORDER_AUTHORITATIVE_FIRST;
    ro.version = DW_READ_OPTIONS_VERSION + 50;
    assert_int_equal(dw_set_read_options(f.h, &ro), DW_EMISUSE);
    ro.version = DW_READ_OPTIONS_VERSION;
    assert_int_equal(dw_set_read_options(NULL, &ro), DW_EMISUSE);
    fx_close(&f);
}

static void test_random_order(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0);
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_SHADOW));
    dw_read_options ro = DW_READ_OPTIONS_INIT;
    ro.order = DW_ORDER_RANDOM;
    assert_dw_ok(f.h, dw_set_read_options(f.h, &ro));
    f.r.s[DW_SIDE_NEW].name = "old-val"; /* agree: no log writes */
    int old_first = 0, new_first = 0;
    for (int i = 0; i < 200; i++) {
        assert_dw_ok(f.h, fx_read(&f, 5));
        assert_int_equal(f.r.n, 2);
        assert_string_equal(out_text(f.out, "name"), "old-val");
        if (strcmp(f.r.order, "ON") == 0)
            old_first++;
        else if (strcmp(f.r.order, "NO") == 0)
            new_first++;
        else
            fail_msg("unexpected order %s", f.r.order);
    }
    assert_true(old_first > 0);
    assert_true(new_first > 0);
    assert_int_equal((int)metrics(f.h).comparisons, 200);
    assert_int_equal((int)metrics(f.h).matches, 200);

    /* the default order is authoritative first, always */
    assert_dw_ok(f.h, dw_set_read_options(f.h, NULL));
    for (int i = 0; i < 20; i++) {
        assert_dw_ok(f.h, fx_read(&f, 5));
        assert_string_equal(f.r.order, "ON");
    }
    fx_close(&f);
}

/* ---- time budget ----------------------------------------------------------------------------- */

#define LONGISH_SQL                                                            \
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c "           \
    "WHERE x < 3000000) SELECT count(*) FROM c"

static void test_time_budget(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0);
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_SHADOW));
    dw_read_options ro = DW_READ_OPTIONS_INIT;
    ro.budget_ms = 50;
    assert_dw_ok(f.h, dw_set_read_options(f.h, &ro));
    dw_metrics_reset(f.h);

    f.r.s[DW_SIDE_NEW].slow = 1;
    double t0 = now_s();
    assert_dw_ok(f.h, fx_read(&f, 42));
    double elapsed = now_s() - t0;
    if (elapsed >= 2.0)
        print_error("read took %.3f s\n", elapsed);
    assert_true(elapsed < 2.0);
    assert_string_equal(f.r.order, "ON");
    assert_string_equal(out_text(f.out, "name"), "old-val");
    dw_metrics m = metrics(f.h);
    assert_int_equal((int)m.new_side.read_timeouts, 1);
    assert_int_equal((int)m.old_side.read_timeouts, 0);
    assert_int_equal((int)m.compare_errors, 1);
    assert_int_equal((int)m.mismatches, 0);
    assert_int_equal(f.sr.calls, 0);

    /* no leftover progress handler: a long-ish query runs to the end */
    assert_int_equal((int)query_int(f.t.db, LONGISH_SQL), 3000000);
    sqlite3_sleep(120); /* well past the budget */
    assert_int_equal((int)query_int(f.t.db, LONGISH_SQL), 3000000);

    /* fast reads under the same budget compare normally */
    f.r.s[DW_SIDE_NEW].slow = 0;
    assert_dw_ok(f.h, fx_read(&f, 42));
    m = metrics(f.h);
    assert_int_equal((int)m.new_side.read_timeouts, 1);
    assert_int_equal((int)m.mismatches, 1);
    assert_int_equal((int)query_int(f.t.db, LONGISH_SQL), 3000000);
    fx_close(&f);
}

static int app_progress_calls;

static int app_progress(void *payload)
{
    int *n = payload;
    (*n)++;
    return 0;
}

static void test_time_budget_app_progress(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0);
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_SHADOW));
    app_progress_calls = 0;
    sqlite3_progress_handler(f.t.db, 1000, app_progress, &app_progress_calls);
    fx_set_budget_app_progress(&f, 50, app_progress, &app_progress_calls);
    f.r.s[DW_SIDE_NEW].slow = 1;
    double t0 = now_s();
    assert_dw_ok(f.h, fx_read(&f, 42));
    assert_true(now_s() - t0 < 2.0);
    assert_int_equal((int)metrics(f.h).new_side.read_timeouts, 1);
    /* the application's handler ran while the budget applied */
    assert_true(app_progress_calls > 0);
    /* and it is back afterwards */
    int before = app_progress_calls;
    assert_int_equal((int)query_int(f.t.db, LONGISH_SQL), 3000000);
    assert_true(app_progress_calls > before);
    sqlite3_progress_handler(f.t.db, 0, NULL, NULL);
    fx_close(&f);
}

/* The budget can interrupt only SQLite statements. A read callback that
 * spends its time elsewhere runs to its end, but a read that took longer
 * than its budget is still counted as over it and never compared. */
static void test_time_budget_counts_time_outside_sqlite(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0);
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_SHADOW));
    dw_read_options ro = DW_READ_OPTIONS_INIT;
    ro.budget_ms = 50;
    assert_dw_ok(f.h, dw_set_read_options(f.h, &ro));
    f.r.s[DW_SIDE_NEW].name = "old-val"; /* compared, the sides would agree */
    f.r.s[DW_SIDE_NEW].idle_ms = 200;
    dw_metrics_reset(f.h);
    assert_dw_ok(f.h, fx_read(&f, 1));
    assert_string_equal(out_text(f.out, "name"), "old-val");
    dw_metrics m = metrics(f.h);
    assert_int_equal((int)m.new_side.read_timeouts, 1);
    assert_int_equal((int)m.compare_errors, 1);
    assert_int_equal((int)m.comparisons, 0);
    assert_int_equal((int)m.matches, 0);
    assert_true(m.new_side.latency_max_ns >= 200000000u);

    /* at LIVE the old side's read is the one with the budget */
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_LIVE));
    dw_metrics_reset(f.h);
    assert_dw_ok(f.h, fx_read(&f, 1));
    m = metrics(f.h);
    assert_int_equal((int)m.new_side.read_timeouts, 0);
    assert_int_equal((int)m.matches, 1);
    f.r.s[DW_SIDE_NEW].idle_ms = 0;
    f.r.s[DW_SIDE_OLD].idle_ms = 200;
    assert_dw_ok(f.h, fx_read(&f, 1));
    m = metrics(f.h);
    assert_int_equal((int)m.old_side.read_timeouts, 1);
    assert_int_equal((int)m.matches, 1);
    assert_int_equal((int)m.compare_errors, 1);
    fx_close(&f);
}

/* ---- ignore, comparator, normaliser ---------------------------------------------------------- */

static void test_ignore_columns(void **state)
{
    (void)state;
    fx f;
    fx_open_same_names(&f, "2024-01-01", "2024-02-02");

    /* without ignore: a mismatch on updated_at */
    assert_dw_ok(f.h, fx_read(&f, 1));
    assert_int_equal(f.sr.calls, 1);
    assert_int_equal(f.sr.ndiffs, 1);
    assert_string_equal(f.sr.cols[0], "updated_at");

    static const char *const ignore[] = {"updated_at"};
    fx_set_ignore(&f, ignore, 1);
    dw_metrics_reset(f.h);
    assert_dw_ok(f.h, fx_read(&f, 1));
    dw_metrics m = metrics(f.h);
    assert_int_equal((int)m.comparisons, 1);
    assert_int_equal((int)m.matches, 1);
    assert_int_equal((int)m.mismatches, 0);
    assert_int_equal(f.sr.calls, 1);
    /* the ignored column is still returned */
    assert_string_equal(out_text(f.out, "updated_at"), "2024-01-01");

    /* another column still counts */
    assert_name_still_counts(&f, 2);
    fx_close(&f);
}

typedef struct cmp_ctx {
    int compare_calls;
    int normalize_sides;
    int normalize_fail;
} cmp_ctx;

static int ascii_ieq(const dw_value *a, const dw_value *b)
{
    if (a->n != b->n)
        return 0;
    const unsigned char *x = a->p, *y = b->p;
    for (int i = 0; i < a->n; i++) {
        unsigned char cx = x[i], cy = y[i];
        if (cx >= 'A' && cx <= 'Z')
            cx = (unsigned char)(cx - 'A' + 'a');
        if (cy >= 'A' && cy <= 'Z')
            cy = (unsigned char)(cy - 'A' + 'a');
        if (cx != cy)
            return 0;
    }
    return 1;
}

static int cmp_name_nocase(const char *column, const dw_value *old_value,
                           const dw_value *new_value, void *payload)
{
    cmp_ctx *c = payload;
    c->compare_calls++;
    if (strcmp(column, "name") != 0)
        return -1;
    if (old_value->type != DW_TYPE_TEXT || new_value->type != DW_TYPE_TEXT)
        return -1;
    return ascii_ieq(old_value, new_value) ? 0 : 1;
}

static int normalize_trim(dw_row *row, int side, void *payload)
{
    cmp_ctx *c = payload;
    c->normalize_sides |= 1 << side;
    if (c->normalize_fail)
        return 1;
    for (int i = 0; i < dw_row_count(row); i++) {
        const dw_value *v = dw_row_value(row, i);
        if (v->type != DW_TYPE_TEXT)
            continue;
        char buf[128];
        const char *s = v->p;
        int a = 0, b = v->n;
        while (a < b && s[a] == ' ')
            a++;
        while (b > a && s[b - 1] == ' ')
            b--;
        if (b - a >= (int)sizeof buf)
            return 2;
        memcpy(buf, s + a, (size_t)(b - a));
        buf[b - a] = '\0';
        char name[64];
        snprintf(name, sizeof name, "%s", dw_row_name(row, i));
        int rc = dw_row_set_text(row, name, buf);
        if (rc != DW_OK)
            return rc;
    }
    return DW_OK;
}

static void test_comparator_and_normaliser(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0);
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_SHADOW));
    cmp_ctx c;
    memset(&c, 0, sizeof c);
    f.r.s[DW_SIDE_OLD].name = "Widget";
    f.r.s[DW_SIDE_NEW].name = "WIDGET";
    f.r.s[DW_SIDE_OLD].note = "  hi  ";
    f.r.s[DW_SIDE_NEW].note = " hi";

    /* control: without them the rows differ in name and note */
    assert_dw_ok(f.h, fx_read(&f, 9));
    assert_int_equal(f.sr.calls, 1);
    assert_int_equal(f.sr.ndiffs, 2);
    assert_true(sink_has_col(&f.sr, "name"));
    assert_true(sink_has_col(&f.sr, "note"));

    dw_read_options ro = DW_READ_OPTIONS_INIT;
    ro.compare = cmp_name_nocase;
    ro.normalize = normalize_trim;
    ro.compare_payload = &c;
    assert_dw_ok(f.h, dw_set_read_options(f.h, &ro));
    dw_metrics_reset(f.h);
    assert_dw_ok(f.h, fx_read(&f, 9));
    dw_metrics m = metrics(f.h);
    assert_int_equal((int)m.matches, 1);
    assert_int_equal((int)m.mismatches, 0);
    assert_int_equal(f.sr.calls, 1);
    assert_true(c.compare_calls > 0);
    assert_int_equal(c.normalize_sides, (1 << DW_SIDE_OLD) | (1 << DW_SIDE_NEW));
    /* the returned row is not normalised */
    assert_string_equal(out_text(f.out, "name"), "Widget");
    assert_string_equal(out_text(f.out, "note"), "  hi  ");

    /* a column the comparator defers (-1) still differs by the default rule */
    f.r.s[DW_SIDE_NEW].qty = 2;
    assert_dw_ok(f.h, fx_read(&f, 9));
    assert_int_equal(f.sr.calls, 2);
    assert_int_equal(f.sr.ndiffs, 1);
    assert_string_equal(f.sr.cols[0], "qty");
    f.r.s[DW_SIDE_NEW].qty = 1;

    /* at LIVE the new row comes back, not normalised either */
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_LIVE));
    dw_metrics_reset(f.h);
    assert_dw_ok(f.h, fx_read(&f, 9));
    assert_string_equal(out_text(f.out, "name"), "WIDGET");
    assert_string_equal(out_text(f.out, "note"), " hi");
    assert_int_equal((int)metrics(f.h).matches, 1);

    /* a normaliser failure skips the comparison, counted as an error */
    c.normalize_fail = 1;
    dw_metrics_reset(f.h);
    assert_dw_ok(f.h, fx_read(&f, 9));
    assert_string_equal(out_text(f.out, "name"), "WIDGET");
    m = metrics(f.h);
    assert_int_equal((int)m.compare_errors, 1);
    assert_int_equal((int)m.matches, 0);
    assert_int_equal((int)m.mismatches, 0);
    assert_int_equal(f.sr.calls, 2);
    fx_close(&f);
}

/* ---- test mode ---------------------------------------------------------------------------------- */

static void test_test_mode(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, DW_OPEN_TEST_MODE);
    /* nothing compared at OFF: no mismatch to return */
    assert_dw_ok(f.h, fx_read(&f, 1));
    assert_string_equal(out_text(f.out, "name"), "old-val");

    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_SHADOW));
    assert_dw(f.h, fx_read(&f, 1), DW_EMISMATCH);
    assert_string_equal(out_text(f.out, "name"), "old-val");
    assert_true(dw_row_get(f.out, "id")->i == 1);
    assert_int_equal(f.sr.calls, 1);

    f.r.s[DW_SIDE_NEW].name = "old-val";
    assert_dw_ok(f.h, fx_read(&f, 1));
    assert_string_equal(out_text(f.out, "name"), "old-val");

    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_LIVE));
    f.r.s[DW_SIDE_NEW].name = "new-val";
    assert_dw(f.h, fx_read(&f, 1), DW_EMISMATCH);
    assert_string_equal(out_text(f.out, "name"), "new-val");
    fx_close(&f);
}

/* Opens the fixture in test mode at SHADOW, the sides agreeing. */
static void fx_open_test_mode_agreeing(fx *f)
{
    fx_open(f, DW_OPEN_TEST_MODE);
    assert_dw_ok(f->h, stage_force(f->h, DW_STAGE_SHADOW));
    f->r.s[DW_SIDE_NEW].name = "old-val";
}

/* In test mode a read whose other side fails cannot be compared, and a
 * test of a new model whose reads are broken must fail as a disagreement
 * does: DW_ENOCOMPARE, naming the side and why, with the trusted row still
 * returned. A failure of the trusted side is returned as it is. */
static void test_test_mode_other_read_fails(void **state)
{
    (void)state;
    fx f;
    fx_open_test_mode_agreeing(&f);
    f.r.s[DW_SIDE_NEW].rc = 1234;
    assert_dw(f.h, fx_read(&f, 1), DW_ENOCOMPARE);
    assert_string_equal(out_text(f.out, "name"), "old-val");
    assert_int_equal(dw_errside(f.h), DW_SIDE_NEW);
    assert_non_null(strstr(dw_errmsg(f.h), "could not be compared"));
    assert_non_null(strstr(dw_errmsg(f.h), "new side: the read callback"));
    assert_int_equal((int)metrics(f.h).compare_errors, 1);
    assert_int_equal(f.sr.calls, 0);
    /* the code has a text of its own */
    assert_string_not_equal(dw_errstr(DW_ENOCOMPARE), dw_errstr(12345));
    assert_string_not_equal(dw_errstr(DW_ENOCOMPARE), dw_errstr(DW_EMISMATCH));

    /* at LIVE the old side is the other one */
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_LIVE));
    f.r.s[DW_SIDE_NEW].rc = DW_OK;
    f.r.s[DW_SIDE_OLD].rc = 1234;
    assert_dw(f.h, fx_read(&f, 2), DW_ENOCOMPARE);
    assert_true(dw_row_get(f.out, "id")->i == 2);
    assert_int_equal(dw_errside(f.h), DW_SIDE_OLD);
    assert_non_null(strstr(dw_errmsg(f.h), "old side: the read callback"));

    /* the trusted side's own failure is what comes back */
    f.r.s[DW_SIDE_OLD].rc = DW_OK;
    f.r.s[DW_SIDE_NEW].rc = 4321;
    assert_dw(f.h, fx_read(&f, 3), DW_ECALLBACK);
    assert_int_equal(dw_errside(f.h), DW_SIDE_NEW);
    assert_non_null(strstr(dw_errmsg(f.h), "returned 4321"));
    assert_int_equal(dw_row_count(f.out), 0);

    /* a read over the budget is not compared either */
    f.r.s[DW_SIDE_NEW].rc = DW_OK;
    dw_read_options ro = DW_READ_OPTIONS_INIT;
    ro.budget_ms = 10;
    assert_dw_ok(f.h, dw_set_read_options(f.h, &ro));
    f.r.s[DW_SIDE_OLD].idle_ms = 40;
    assert_dw(f.h, fx_read(&f, 4), DW_ENOCOMPARE);
    assert_int_equal(dw_errside(f.h), DW_SIDE_OLD);
    assert_non_null(strstr(dw_errmsg(f.h), "10 ms budget"));

    /* once both sides read and agree, the read passes */
    f.r.s[DW_SIDE_OLD].idle_ms = 0;
    assert_dw_ok(f.h, dw_set_read_options(f.h, NULL));
    assert_dw_ok(f.h, fx_read(&f, 5));
    assert_int_equal(f.sr.calls, 0);
    fx_close(&f);
}

/* In test mode, memory running out or a locked database while reading the
 * other side says nothing about the models: the read fails as such
 * (DW_ENOMEM or DW_EBUSY, the message naming the side, the row empty), as
 * any call does when memory runs out, and may be retried; it is not
 * DW_ENOCOMPARE. */
static void test_test_mode_memory_or_lock_failure_is_returned(void **state)
{
    (void)state;
    fx f;
    fx_open_test_mode_agreeing(&f);
    const struct {
        int returned, expected;
    } cases[] = {{DW_ENOMEM, DW_ENOMEM},
                 {dw_sqlite_result(NULL, SQLITE_NOMEM), DW_ENOMEM},
                 {DW_EBUSY, DW_EBUSY},
                 {dw_sqlite_result(NULL, SQLITE_BUSY), DW_EBUSY}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        f.r.s[DW_SIDE_NEW].rc = cases[i].returned;
        assert_dw(f.h, fx_read(&f, 1), cases[i].expected);
        assert_int_equal(dw_errside(f.h), DW_SIDE_NEW);
        assert_non_null(strstr(dw_errmsg(f.h), "new side: the read callback"));
        assert_int_equal(dw_row_count(f.out), 0);
    }
    dw_metrics m = metrics(f.h);
    assert_int_equal((int)m.compare_errors, 4);
    assert_int_equal((int)m.new_side.read_errors, 4);

    /* at LIVE the old side is the other one */
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_LIVE));
    f.r.s[DW_SIDE_NEW].rc = DW_OK;
    f.r.s[DW_SIDE_OLD].rc = DW_ENOMEM;
    assert_dw(f.h, fx_read(&f, 2), DW_ENOMEM);
    assert_int_equal(dw_errside(f.h), DW_SIDE_OLD);
    assert_int_equal(dw_row_count(f.out), 0);

    /* once the other side reads, the read passes */
    f.r.s[DW_SIDE_OLD].rc = DW_OK;
    assert_dw_ok(f.h, fx_read(&f, 2));
    assert_true(dw_row_get(f.out, "id")->i == 2);
    fx_close(&f);
}

/* In test mode a normaliser that fails leaves the read uncompared: that
 * fails the read too, saying so, with the trusted row returned. */
static void test_test_mode_normaliser_fails(void **state)
{
    (void)state;
    fx f;
    fx_open_test_mode_agreeing(&f);
    cmp_ctx c;
    memset(&c, 0, sizeof c);
    c.normalize_fail = 1;
    dw_read_options ro = DW_READ_OPTIONS_INIT;
    ro.normalize = normalize_trim;
    ro.compare_payload = &c;
    assert_dw_ok(f.h, dw_set_read_options(f.h, &ro));
    assert_dw(f.h, fx_read(&f, 1), DW_ENOCOMPARE);
    assert_string_equal(out_text(f.out, "name"), "old-val");
    assert_non_null(strstr(dw_errmsg(f.h), "normaliser failed on the old row"));
    assert_int_equal(dw_errside(f.h), DW_SIDE_OLD);
    dw_metrics m = metrics(f.h);
    assert_int_equal((int)m.compare_errors, 1);
    assert_int_equal((int)m.comparisons, 0);

    /* dw_compare() returns the failure, test mode or not, saying so */
    exec_ok(f.t.db, "INSERT INTO r_old VALUES(1, 'a');"
                    "INSERT INTO r_new VALUES(1, 'a');");
    dw_value k = dw_int(1);
    int equal = -1;
    assert_dw(f.h, dw_compare(&equal, f.h, &k, 1), DW_ECALLBACK);
    assert_non_null(strstr(dw_errmsg(f.h), "normaliser failed on the old row"));
    assert_int_equal(dw_errside(f.h), DW_SIDE_OLD);

    c.normalize_fail = 0;
    assert_dw_ok(f.h, fx_read(&f, 1));
    assert_int_equal((int)metrics(f.h).matches, 1);
    fx_close(&f);
}

/* ---- misuse ---------------------------------------------------------------------------------------- */

static void test_read_misuse(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0);
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_SHADOW));
    dw_value k = dw_int(1);
    dw_value k2[2] = {dw_int(1), dw_int(2)};
    assert_int_equal(dw_read(NULL, f.h, &k, 1, read_old, read_new, &f.r), DW_EMISUSE);
    assert_int_equal(dw_read(f.out, NULL, &k, 1, read_old, read_new, &f.r), DW_EMISUSE);
    assert_dw(f.h, dw_read(f.out, f.h, NULL, 1, read_old, read_new, &f.r), DW_EMISUSE);
    assert_dw(f.h, dw_read(f.out, f.h, k2, 2, read_old, read_new, &f.r), DW_EMISUSE);
    assert_dw(f.h, dw_read(f.out, f.h, &k, 0, read_old, read_new, &f.r), DW_EMISUSE);
    assert_dw(f.h, dw_read(f.out, f.h, &k, 1, read_old, NULL, &f.r), DW_EMISUSE);
    assert_dw(f.h, dw_read(f.out, f.h, &k, 1, NULL, read_new, &f.r), DW_EMISUSE);
    assert_int_equal(f.r.calls[DW_SIDE_OLD], 0);
    assert_int_equal(f.r.calls[DW_SIDE_NEW], 0);
    assert_int_equal(f.sr.calls, 0);
    /* the handle still works */
    assert_dw_ok(f.h, fx_read(&f, 1));
    fx_close(&f);
}

/* ---- regressions ------------------------------------------------------------------------------- */

/* A new-side read whose query is interrupted by the budget, and that (like
 * many applications) maps every step result other than SQLITE_ROW to "not
 * found": the read is over budget, so it is a timeout and never compared --
 * not a "missing on the new side" mismatch. */
static int read_new_slow_notfound(dw_row *out, void *db,
                                  const dw_value *key, int nkey, void *payload)
{
    (void)payload;
    if (nkey != 1)
        return 99;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        db,
        "SELECT ?1 AS id, 'old-val' AS name, 1 AS qty"
        " WHERE (" SLOW_SQL ") > 0",
        -1, &st, NULL);
    if (rc != SQLITE_OK)
        return dw_sqlite_result(db, rc);
    sqlite3_bind_int64(st, 1, key[0].i);
    rc = sqlite3_step(st);
    int result = DW_ENOTFOUND;
    if (rc == SQLITE_ROW)
        result = dw_sqlite_row_set_columns(out, st);
    sqlite3_finalize(st);
    return result;
}

static void test_time_budget_notfound_is_timeout(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, DW_OPEN_TEST_MODE);
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_SHADOW));
    dw_read_options ro = DW_READ_OPTIONS_INIT;
    ro.budget_ms = 1;
    assert_dw_ok(f.h, dw_set_read_options(f.h, &ro));
    dw_metrics_reset(f.h);

    dw_value k = dw_int(7);
    double t0 = now_s();
    /* Test mode: a read left uncompared fails, saying why. */
    assert_dw(f.h, dw_read(f.out, f.h, &k, 1, read_old,
                           read_new_slow_notfound, &f.r),
              DW_ENOCOMPARE);
    assert_non_null(strstr(dw_errmsg(f.h), "budget"));
    assert_true(now_s() - t0 < 2.0);
    assert_true(dw_row_get(f.out, "id")->i == 7);
    assert_string_equal(out_text(f.out, "name"), "old-val");

    dw_metrics m = metrics(f.h);
    assert_int_equal((int)m.new_side.read_timeouts, 1);
    assert_int_equal((int)m.mismatches, 0);
    assert_int_equal((int)m.compare_errors, 1);
    assert_int_equal(f.sr.calls, 0);
    int64_t entries = -1;
    assert_dw_ok(f.h, dw_mismatch_log_count(&entries, NULL, f.h));
    assert_int_equal((int)entries, 0);
    assert_int_equal((int)query_int(f.t.db, "SELECT count(*) FROM dw_mismatch_log"), 0);
    fx_close(&f);
}

/* A rejected ignore list (a NULL entry) frees what was copied before the
 * NULL was met. */
static void test_read_options_null_ignore_no_leak(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0);
    static const char *const ig[] = {
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "b", NULL};
    dw_read_options ro = DW_READ_OPTIONS_INIT;
    ro.ignore_columns = ig;
    ro.nignore_columns = 3;
    /* once first, so the handle's error message is already allocated */
    assert_dw(f.h, dw_set_read_options(f.h, &ro), DW_EMISUSE);
    sqlite3_int64 before = sqlite3_memory_used();
    for (int i = 0; i < 1000; i++)
        assert_dw(f.h, dw_set_read_options(f.h, &ro), DW_EMISUSE);
    sqlite3_int64 after = sqlite3_memory_used();
    if (after != before)
        print_error("%lld bytes leaked over 1000 calls\n",
                    (long long)(after - before));
    assert_true(after == before);
    /* the handle still reads */
    assert_dw_ok(f.h, fx_read(&f, 1));
    fx_close(&f);
}

/* ---- reads that fail inside dw_compare() ------------------------------------------------ */

/* dw_compare() reads both sides; when either read fails it returns that
 * failure with SQLite's reason, counts no comparison, reports nothing and
 * leaves no transaction open: a mapping that fails on one row (malformed
 * JSON) and a new table whose model column was renamed away underneath. */
static void test_compare_read_failures(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db,
            "CREATE TABLE c_old(id INTEGER PRIMARY KEY, attrs TEXT);"
            "CREATE TABLE c_new(id INTEGER PRIMARY KEY, colour TEXT);"
            "INSERT INTO c_old VALUES(1, '{\"colour\":\"red\"}'),"
            " (2, 'not json');"
            "INSERT INTO c_new VALUES(1, 'red'), (2, 'blue');");
    static const dw_column_map up[] = {
        {"colour", "json_extract(attrs, '$.colour')"}};
    sink_rec sr;
    memset(&sr, 0, sizeof sr);
    dw_options o =
        options_for("compare_failures", TEST_SIDE_UNLISTED("c_old", k_id),
                    TEST_SIDE_UNLISTED("c_new", k_id));
    o.up = up;
    o.nup = 1;
    o.mismatch_fn = sink;
    o.mismatch_payload = &sr;
    dw_migration *h = NULL;
    assert_dw_ok(NULL, dw_sqlite_open(&h, t.db, &o, NULL));

    dw_value k1 = dw_int(1), k2 = dw_int(2);
    int equal = -1;
    assert_dw_ok(h, dw_compare(&equal, h, &k1, 1));
    assert_int_equal(equal, 1);

    /* The old row does not map. */
    dw_metrics_reset(h);
    equal = -1;
    assert_dw(h, dw_compare(&equal, h, &k2, 1), DW_ERROR);
    assert_non_null(strstr(dw_errmsg(h), "malformed JSON"));
    assert_int_equal(equal, -1);
    dw_metrics m = metrics(h);
    assert_int_equal((int)m.comparisons, 0);
    assert_int_equal((int)m.mismatches, 0);
    assert_int_equal(sr.calls, 0);
    assert_int_equal(sqlite3_get_autocommit(t.db), 1);

    /* The new side's column is gone: its read fails. */
    exec_ok(t.db, "ALTER TABLE c_new RENAME COLUMN colour TO color");
    assert_dw(h, dw_compare(&equal, h, &k1, 1), DW_ERROR);
    assert_non_null(strstr(dw_errmsg(h), "colour"));
    assert_int_equal(equal, -1);
    assert_int_equal((int)metrics(h).comparisons, 0);
    assert_int_equal(sr.calls, 0);
    assert_int_equal(sqlite3_get_autocommit(t.db), 1);

    /* Put back, the same handle compares again. */
    exec_ok(t.db, "ALTER TABLE c_new RENAME COLUMN color TO colour");
    assert_dw_ok(h, dw_compare(&equal, h, &k1, 1));
    assert_int_equal(equal, 1);
    dw_close(h);
    test_db_close(&t);
}

/* ---- columns present on one side only ----------------------------------------------------- */

/* A column only the new side's read returns compares against NULL: a value
 * there is a difference on that column, a NULL there is none. */
static void test_new_only_column_compares_against_null(void **state)
{
    (void)state;
    fx f;
    /* the old read leaves updated_at out */
    fx_open_same_names(&f, NULL, "2024-02-02");
    dw_metrics_reset(f.h);
    assert_dw_ok(f.h, fx_read(&f, 1));
    assert_string_equal(out_text(f.out, "name"), "same");
    assert_null(dw_row_get(f.out, "updated_at"));
    dw_metrics m = metrics(f.h);
    assert_int_equal((int)m.comparisons, 1);
    assert_int_equal((int)m.mismatches, 1);
    assert_int_equal(f.sr.calls, 1);
    assert_int_equal(f.sr.kind, DW_MISMATCH_DIFFERENT);
    assert_int_equal(f.sr.ndiffs, 1);
    assert_string_equal(f.sr.cols[0], "updated_at");

    /* The same at LIVE, where the new row is the one returned. */
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_LIVE));
    assert_dw_ok(f.h, fx_read(&f, 1));
    assert_string_equal(out_text(f.out, "updated_at"), "2024-02-02");
    assert_int_equal(f.sr.calls, 2);
    assert_string_equal(f.sr.cols[0], "updated_at");
    fx_close(&f);
}

/* ---- the application's progress handler under the budget -------------------------------- */

static int app_progress_stop(void *payload)
{
    int *n = payload;
    (*n)++;
    return 1;
}

/* An application progress handler that asks SQLite to interrupt stops the
 * non-authoritative read while the budget applies, as it would any other
 * statement: that read counts as failed (not as over the budget), nothing
 * is compared, and the authoritative answer is still returned. */
static void test_app_progress_interrupts_other_read(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0);
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_SHADOW));
    int calls = 0;
    fx_set_budget_app_progress(&f, 60000, app_progress_stop, &calls);
    dw_metrics_reset(f.h);
    f.r.s[DW_SIDE_NEW].slow = 1;
    double t0 = now_s();
    assert_dw_ok(f.h, fx_read(&f, 42));
    assert_true(now_s() - t0 < 2.0);
    assert_true(calls > 0);
    assert_string_equal(f.r.order, "ON");
    assert_string_equal(out_text(f.out, "name"), "old-val");
    dw_metrics m = metrics(f.h);
    assert_int_equal((int)m.new_side.read_timeouts, 0);
    assert_int_equal((int)m.new_side.read_errors, 1);
    assert_int_equal((int)m.compare_errors, 1);
    assert_int_equal((int)m.comparisons, 0);
    assert_int_equal(f.sr.calls, 0);
    sqlite3_progress_handler(f.t.db, 0, NULL, NULL);
    fx_close(&f);
}

/* ---- an ignore list naming a column twice ------------------------------------------------- */

/* Names in the ignore list match as SQLite matches names (ASCII case
 * ignored); naming one column twice, in two spellings, is accepted and
 * ignores it once. */
/* A read callback that fills its row, then fails. */
static int fill_then_fail(dw_row *out, void *db, const dw_value *key,
                          int nkey, void *payload)
{
    (void)db;
    (void)nkey;
    (void)payload;
    dw_row_set(out, "id", &key[0]);
    dw_row_set_text(out, "name", "half");
    return 77;
}

static void test_uncompared_read_failure_returns_empty_row(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0);
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_DUAL_WRITE));
    dw_value k = dw_int(1);
    assert_dw(f.h, dw_read(f.out, f.h, &k, 1, fill_then_fail, read_new,
                           &f.r),
              DW_ECALLBACK);
    assert_int_equal(dw_row_count(f.out), 0);
    assert_int_equal(dw_errside(f.h), DW_SIDE_OLD);
    /* Timed or not (one in 16 is), a failure is counted. */
    assert_dw(f.h, dw_read(f.out, f.h, &k, 1, fill_then_fail, read_new,
                           &f.r),
              DW_ECALLBACK);
    dw_metrics m = metrics(f.h);
    assert_int_equal((int)m.old_side.reads, 2);
    assert_int_equal((int)m.old_side.read_errors, 2);
    assert_int_equal((int)m.old_side.latency_count, 1);
    fx_close(&f);
}

/* A sink that reads through the same handle while it looks at the
 * mismatch it was given. */
typedef struct nested_sink {
    fx *f;
    int depth;
    char before[32], after[32];
} nested_sink;

static void sink_reading_again(const dw_mismatch *m, void *payload)
{
    nested_sink *n = payload;
    if (n->depth++ > 0)
        return;
    /* At SHADOW the new value is the other side's, in the library's own
     * row for it. */
    const dw_value *v = m->diffs[0].new_value;
    snprintf(n->before, sizeof n->before, "%s", v ? (const char *)v->p : "");
    n->f->r.s[DW_SIDE_OLD].name = "inner-old";
    n->f->r.s[DW_SIDE_NEW].name = "inner-new";
    dw_row *row = NULL;
    dw_row_new(&row);
    dw_value k = dw_int(2);
    rd_begin(&n->f->r);
    dw_read(row, n->f->h, &k, 1, read_old, read_new, &n->f->r);
    dw_row_free(row);
    v = m->diffs[0].new_value;
    snprintf(n->after, sizeof n->after, "%s", v ? (const char *)v->p : "");
}

static void test_sink_may_read_through_the_handle(void **state)
{
    (void)state;
    fx f;
    nested_sink n = {&f, 0, "", ""};
    fx_open_sink(&f, DW_OPEN_LOG_RAW_VALUES, sink_reading_again, &n);
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_SHADOW));
    assert_dw_ok(f.h, fx_read(&f, 1));
    assert_int_equal(n.depth, 2);
    /* What the sink was shown stayed put while it read again. */
    assert_string_equal(n.before, "new-val");
    assert_string_equal(n.after, "new-val");
    fx_close(&f);
}

/* ---- the stage cache on the read path ------------------------------------------------ */

static void test_uncompared_read_adds_no_transaction(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, 0);
    /* Sides that agree: a logged mismatch commits, and the next read
     * checks the stage again. */
    f.r.s[DW_SIDE_NEW].name = "old-val";
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_DUAL_WRITE));
    /* The stage is cached by the move: the read is the application's alone,
     * as it would run without the library. */
    f.r.autocommit_in_read = 0;
    assert_dw_ok(f.h, fx_read(&f, 1));
    assert_string_equal(f.r.order, "O");
    assert_int_equal(f.r.autocommit_in_read, 1);
    /* A read that compares runs both in one transaction of ours. */
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_SHADOW));
    f.r.autocommit_in_read = 0;
    assert_dw_ok(f.h, fx_read(&f, 1));
    assert_string_equal(f.r.order, "ON");
    assert_int_equal(f.r.autocommit_in_read, 0);
    /* The share left uncompared by sampling runs alone again. */
    dw_read_options ro = DW_READ_OPTIONS_INIT;
    ro.sample_ratio = 0.0;
    assert_dw_ok(f.h, dw_set_read_options(f.h, &ro));
    f.r.autocommit_in_read = 0;
    assert_dw_ok(f.h, fx_read(&f, 1));
    assert_string_equal(f.r.order, "O");
    assert_int_equal(f.r.autocommit_in_read, 1);
    dw_metrics m = metrics(f.h);
    assert_int_equal((int)m.reads, 3);
    assert_int_equal((int)m.skipped, 1);
    assert_int_equal((int)m.old_side.reads, 3);
    assert_int_equal((int)m.new_side.reads, 1);
    /* Reads that compare nothing are timed one in 16; compared ones
     * always. */
    dw_metrics_reset(f.h);
    for (int i = 0; i < 32; i++)
        assert_dw_ok(f.h, fx_read(&f, 1));
    m = metrics(f.h);
    assert_int_equal((int)m.old_side.reads, 32);
    assert_int_equal((int)m.old_side.latency_count, 2);
    assert_int_equal((int)m.new_side.latency_count, 0);
    ro.sample_ratio = 1.0;
    assert_dw_ok(f.h, dw_set_read_options(f.h, &ro));
    dw_metrics_reset(f.h);
    for (int i = 0; i < 4; i++)
        assert_dw_ok(f.h, fx_read(&f, 1));
    m = metrics(f.h);
    assert_int_equal((int)m.old_side.latency_count, 4);
    assert_int_equal((int)m.new_side.latency_count, 4);
    fx_close(&f);
}

/* A second handle on the fixture's migration: on a connection of its own
 * (*db2 is set; the caller closes it) or, with db2 NULL, on the same one. */
static dw_migration *sfx_second_handle(sfx *f, sqlite3 **db2)
{
    sqlite3 *db = f->t.db;
    if (db2)
        db = *db2 = test_db_connect(&f->t);
    dw_options o = sfx_options();
    dw_migration *h2 = open_migration_ok(db, &o);
    return h2;
}

/* Reads through h (which cached its stage) after `mover` moved the stage to
 * LIVE: the new row must come back, in the new shape. */
static void assert_read_follows_move(sfx *f, dw_migration *mover)
{
    dw_value k = dw_int(1);
    assert_dw_ok(f->h, dw_read(f->out, f->h, &k, 1, NULL, NULL, NULL));
    assert_string_equal(out_text(f->out, "name"), "widget");
    assert_dw_ok(mover, stage_force(mover, DW_STAGE_LIVE));
    assert_dw_ok(f->h, dw_read(f->out, f->h, &k, 1, NULL, NULL, NULL));
    assert_string_equal(out_text(f->out, "title"), "widget");
    assert_true(dw_row_get(f->out, "cents")->i == 500);
    assert_null(dw_row_get(f->out, "name"));
}

static void test_read_sees_stage_moved_by_another_connection(void **state)
{
    (void)state;
    for (int compared = 0; compared <= 1; compared++) {
        sfx f;
        sfx_open(&f, 0);
        sqlite3 *db2 = NULL;
        dw_migration *h2 = sfx_second_handle(&f, &db2);
        /* OFF reads alone; at SHADOW every read compares, in a
         * transaction that trusts the cached stage until it is checked. */
        assert_dw_ok(f.h, stage_force(f.h, compared ? DW_STAGE_SHADOW
                                                    : DW_STAGE_DUAL_WRITE));
        assert_read_follows_move(&f, h2);
        dw_close(h2);
        assert_int_equal(sqlite3_close(db2), SQLITE_OK);
        sfx_close(&f);
    }
}

static void test_read_sees_stage_moved_by_another_handle(void **state)
{
    (void)state;
    /* Two handles on one connection: the data version moves with this
     * connection's own commits too. */
    sfx f;
    sfx_open(&f, 0);
    dw_migration *h2 = sfx_second_handle(&f, NULL);
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_DUAL_WRITE));
    assert_read_follows_move(&f, h2);
    dw_close(h2);
    sfx_close(&f);
}

static void test_read_sees_move_keeping_the_trusted_side(void **state)
{
    (void)state;
    /* Cached at RAMPDOWN (new trusted); another connection moves to
     * COMPLETE: the read answers from the new side and the handle has
     * the new stage. */
    sfx f;
    sfx_open(&f, 0);
    dw_value k = dw_int(1);
    exec_ok(f.t.db, "UPDATE s_new SET cents = 500 WHERE id = 1;"
                    "DELETE FROM s_new WHERE id = 2;"
                    "INSERT INTO s_new VALUES(3, 'lonely', 100)");
    assert_dw_ok(f.h, stage_force(f.h, DW_STAGE_RAMPDOWN));
    assert_dw_ok(f.h, dw_read(f.out, f.h, &k, 1, NULL, NULL, NULL));
    assert_string_equal(out_text(f.out, "title"), "widget");
    sqlite3 *db2 = NULL;
    dw_migration *h2 = sfx_second_handle(&f, &db2);
    assert_dw_ok(h2, stage_force(h2, DW_STAGE_COMPLETE));
    assert_dw_ok(f.h, dw_read(f.out, f.h, &k, 1, NULL, NULL, NULL));
    assert_string_equal(out_text(f.out, "title"), "widget");
    int stage = -1;
    assert_dw_ok(f.h, dw_stage_get(&stage, f.h));
    assert_int_equal(stage, DW_STAGE_COMPLETE);
    dw_close(h2);
    assert_int_equal(sqlite3_close(db2), SQLITE_OK);
    sfx_close(&f);
}

static void test_ignore_column_named_twice(void **state)
{
    (void)state;
    fx f;
    fx_open_same_names(&f, "2024-01-01", "2024-02-02");
    static const char *const ignore[] = {"updated_at", "UPDATED_AT",
                                         "updated_at"};
    fx_set_ignore(&f, ignore, 3);
    dw_metrics_reset(f.h);
    assert_dw_ok(f.h, fx_read(&f, 1));
    dw_metrics m = metrics(f.h);
    assert_int_equal((int)m.matches, 1);
    assert_int_equal((int)m.mismatches, 0);
    assert_int_equal(f.sr.calls, 0);
    /* Other columns still count. */
    assert_name_still_counts(&f, 1);
    fx_close(&f);
}

int main(void)
{
    library_memory_in_sqlite();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_stage),
        cmocka_unit_test(test_read_transaction_and_sink_timing),
        cmocka_unit_test(test_other_side_failures),
        cmocka_unit_test(test_read_through_spec),
        cmocka_unit_test(test_compare_through_spec),
        cmocka_unit_test(test_sampling),
        cmocka_unit_test(test_random_order),
        cmocka_unit_test(test_time_budget),
        cmocka_unit_test(test_time_budget_app_progress),
        cmocka_unit_test(test_ignore_columns),
        cmocka_unit_test(test_comparator_and_normaliser),
        cmocka_unit_test(test_test_mode),
        cmocka_unit_test(test_test_mode_other_read_fails),
        cmocka_unit_test(test_test_mode_normaliser_fails),
        cmocka_unit_test(test_test_mode_memory_or_lock_failure_is_returned),
        cmocka_unit_test(test_time_budget_counts_time_outside_sqlite),
        cmocka_unit_test(test_trusted_read_failure_still_reads_other),
        cmocka_unit_test(test_read_misuse),
        cmocka_unit_test(test_time_budget_notfound_is_timeout),
        cmocka_unit_test(test_read_options_null_ignore_no_leak),
        cmocka_unit_test(test_compare_read_failures),
        cmocka_unit_test(test_new_only_column_compares_against_null),
        cmocka_unit_test(test_app_progress_interrupts_other_read),
        cmocka_unit_test(test_ignore_column_named_twice),
        cmocka_unit_test(test_uncompared_read_adds_no_transaction),
        cmocka_unit_test(test_uncompared_read_failure_returns_empty_row),
        cmocka_unit_test(test_sink_may_read_through_the_handle),
        cmocka_unit_test(test_read_sees_stage_moved_by_another_connection),
        cmocka_unit_test(test_read_sees_stage_moved_by_another_handle),
        cmocka_unit_test(test_read_sees_move_keeping_the_trusted_side),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
