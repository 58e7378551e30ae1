/* The library's stored state edited by hand: a stage, routing setting,
 * override or backfill cursor that no operation of the library writes is
 * DW_ECORRUPT, naming the table and the row -- never taken for some stage
 * or position. A migration deleted by hand and defined again starts with
 * no state of the old one. */
#include "support.h"

#include <stdio.h>
#include <string.h>

static const char *const key_cols[] = {"id"};
static const dw_column_map up[] = {{"title", "upper(name)"}};
static const dw_column_map down[] = {{"name", "lower(title)"}};

typedef struct fixture {
    test_db t;
    sqlite3 *other; /* edits the state, as a hand at the sqlite3 shell */
    dw_migration *h;
} fixture;

/* The migration with an up mapping and open flags. */
static int open_items_with(dw_migration **h, sqlite3 *db,
                           const dw_column_map *up_map, unsigned int flags,
                           char **err)
{
    dw_options o =
        options_for("items_v2", TEST_SIDE_UNLISTED("items", key_cols),
                    TEST_SIDE_UNLISTED("items_v2", key_cols));
    o.flags = flags;
    o.reason = flags ? "redefined" : NULL;
    o.up = up_map;
    o.nup = 1;
    o.down = down;
    o.ndown = 1;
    return dw_sqlite_open(h, db, &o, err);
}

static int open_items(dw_migration **h, sqlite3 *db, char **err)
{
    return open_items_with(h, db, up, 0, err);
}

static int setup(void **state)
{
    fixture *f = test_malloc(sizeof *f);
    memset(f, 0, sizeof *f);
    test_db_open(&f->t);
    exec_ok(f->t.db,
            "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);"
            "CREATE TABLE items_v2(id INTEGER PRIMARY KEY, title TEXT);"
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
            "  WHERE i < 20) INSERT INTO items SELECT i, 'n' || i FROM n;");
    assert_int_equal(open_items(&f->h, f->t.db, NULL), DW_OK);
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_DUAL_WRITE, "go", 0));
    f->other = test_db_connect(&f->t);
    /* The CHECK constraints would stop most of these edits: a hand that
     * forges state turns them off. */
    exec_ok(f->other, "PRAGMA ignore_check_constraints = 1");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    dw_close(f->h);
    sqlite3_close(f->other);
    test_db_close(&f->t);
    test_free(f);
    return 0;
}

static void assert_msg_has(const dw_migration *h, const char *needle)
{
    const char *m = dw_errmsg(h);
    if (!strstr(m, needle))
        fail_msg("message \"%s\" does not contain \"%s\"", m, needle);
}

/* DW_ECORRUPT from the call, the message naming the table, the row and
 * what is wrong. */
#define assert_damaged(h, call, table_row, what)                               \
    do {                                                                       \
        assert_dw((h), (call), DW_ECORRUPT);                                   \
        assert_msg_has((h), "is damaged");                                     \
        assert_msg_has((h), (table_row));                                      \
        assert_msg_has((h), (what));                                           \
    } while (0)

static int read_key(dw_migration *h, int64_t id)
{
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    dw_value key = dw_int(id);
    int rc = dw_read(row, h, &key, 1, NULL, NULL, NULL);
    dw_row_free(row);
    return rc;
}

/* ---- the stage -------------------------------------------------------------- */

/* A stage outside 0 to 5, or not a number, acts as no stage: the cached
 * check on the hot path, dw_stage_get() and dw_sqlite_open() all refuse it. */
static void test_forged_stage(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *value, *shown;
    } forged[] = {{"99", "column stage holds 99,"},
                  {"-1", "column stage holds -1,"},
                  {"'LIVE'", "column stage holds the text 'LIVE'"},
                  {"3.5", "column stage holds the real 3.5"},
                  {"x'03'", "column stage holds a blob"}};
    for (size_t i = 0; i < sizeof forged / sizeof *forged; i++) {
        assert_dw_ok(f->h, read_key(f->h, 1)); /* stage cached */
        char sql[128];
        snprintf(sql, sizeof sql, "UPDATE dw_migrations SET stage = %s",
                 forged[i].value);
        exec_ok(f->other, sql);
        assert_damaged(f->h, read_key(f->h, 1),
                       "table dw_migrations, row with id 1", forged[i].shown);
        int stage = -7;
        assert_damaged(f->h, dw_stage_get(&stage, f->h),
                       "table dw_migrations, row with id 1", forged[i].shown);
        assert_int_equal(stage, -7);
        dw_migration *h2 = NULL;
        char *err = NULL;
        assert_int_equal(open_items(&h2, f->t.db, &err), DW_ECORRUPT);
        assert_null(h2);
        assert_non_null(strstr(err, forged[i].shown));
        dw_free(err);
        exec_ok(f->other, "UPDATE dw_migrations SET stage = 1");
        assert_dw_ok(f->h, dw_stage_get(&stage, f->h));
        assert_int_equal(stage, DW_STAGE_DUAL_WRITE);
    }
}

/* A history row whose stages are not stages stops the listing, named. */
static int count_entry(const dw_history_entry *e, void *payload)
{
    (void)e;
    ++*(int *)payload;
    return 0;
}

static void test_forged_history(void **state)
{
    fixture *f = *state;
    exec_ok(f->other, "UPDATE dw_history SET from_stage = 42 WHERE id = 2");
    int n = 0;
    assert_damaged(f->h, dw_history(f->h, count_entry, &n),
                   "table dw_history, row with id 2",
                   "column from_stage holds 42");
    assert_int_equal(n, 1);
}

/* ---- routing ------------------------------------------------------------------ */

static void test_forged_routing(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *set, *shown;
    } forged[] = {
        {"canary_stage = 99", "column canary_stage holds 99"},
        {"canary_stage = 'SHADOW'", "column canary_stage holds the text"},
        {"canary_buckets = 10001", "column canary_buckets holds 10001"},
        {"canary_buckets = -5", "column canary_buckets holds -5"},
        {"promote_stage = 6", "column promote_stage holds 6"},
        {"promote_stage = -2", "column promote_stage holds -2"},
        {"contracted = 2", "column contracted holds 2"},
        {"overrides = -1", "column overrides holds -1"},
        {"canary_cohort = x'07'", "column canary_cohort holds no text"},
    };
    for (size_t i = 0; i < sizeof forged / sizeof *forged; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "UPDATE dw_migrations SET %s",
                 forged[i].set);
        exec_ok(f->other, "SAVEPOINT forged");
        exec_ok(f->other, sql);
        exec_ok(f->other, "RELEASE forged");
        dw_routing r;
        assert_damaged(f->h, dw_routing_get(&r, f->h),
                       "table dw_migrations, row with id 1", forged[i].shown);
        exec_ok(f->other, "UPDATE dw_migrations SET canary_stage = 0, "
                          "canary_buckets = 0, promote_stage = -1, "
                          "contracted = 0, overrides = 0, "
                          "canary_cohort = NULL");
        assert_dw_ok(f->h, dw_routing_get(&r, f->h));
    }
}

/* A stored cohort that dw_routing_set() would refuse (a chance or clock
 * call, a subquery, text that closes its parenthesis) is damage, not a
 * cohort: keys would move without a write. */
static void test_forged_cohort(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *cohort, *shown;
    } forged[] = {
        {"random() % 2 = 0", "random()"},
        {"julianday() > id", "julianday('now')"},
        {"id IN (SELECT id FROM items_v2)", "no subqueries"},
        {"1\n) OR (1", "parentheses do not balance"},
    };
    for (size_t i = 0; i < sizeof forged / sizeof *forged; i++) {
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(f->other,
                                            "UPDATE dw_migrations SET "
                                            "canary_cohort = ?1, "
                                            "canary_stage = 2",
                                            -1, &st, NULL),
                         SQLITE_OK);
        sqlite3_bind_text(st, 1, forged[i].cohort, -1, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_finalize(st);
        assert_damaged(f->h, read_key(f->h, 1),
                       "table dw_migrations, row with id 1",
                       "column canary_cohort");
        assert_msg_has(f->h, forged[i].shown);
    }
    exec_ok(f->other, "UPDATE dw_migrations SET canary_cohort = 'id = 1'");
    assert_dw_ok(f->h, read_key(f->h, 1));
}

/* ---- overrides ------------------------------------------------------------------ */

static int count_override(const dw_override_entry *e, void *payload)
{
    (void)e;
    ++*(int *)payload;
    return 0;
}

static void test_forged_override(void **state)
{
    fixture *f = *state;
    dw_value key = dw_int(3);
    assert_dw_ok(f->h, dw_override_set(f->h, &key, 1, 1, DW_STAGE_OFF, "x"));
    exec_ok(f->other, "UPDATE dw_overrides SET stage = 99");
    int stage = -1, route = -1;
    assert_damaged(f->h, dw_key_stage(&stage, &route, f->h, &key, 1),
                   "table dw_overrides, row with migration_id 1 and key [3]",
                   "column stage holds 99");
    int n = 0;
    assert_damaged(f->h, dw_override_list(f->h, count_override, &n),
                   "table dw_overrides, row with migration_id 1 and key [3]",
                   "column stage holds 99");
    assert_int_equal(n, 0);
    dw_routing_progress p;
    assert_damaged(f->h, dw_routing_count(&p, f->h),
                   "table dw_overrides, row with migration_id 1",
                   "column stage holds 99");
    exec_ok(f->other, "UPDATE dw_overrides SET stage = 'OFF'");
    assert_damaged(f->h, dw_key_stage(&stage, &route, f->h, &key, 1),
                   "key [3]", "column stage holds the text 'OFF'");
}

/* The stored override count is a fast path: a count of 0 beside stored
 * overrides must not hide them, a count without rows must not claim
 * them. */
static void test_override_count_disagrees(void **state)
{
    fixture *f = *state;
    dw_value key = dw_int(3);
    assert_dw_ok(f->h, dw_override_set(f->h, &key, 1, 1, DW_STAGE_OFF, "x"));
    exec_ok(f->other, "UPDATE dw_migrations SET overrides = 0");
    int stage = -1, route = -1;
    assert_damaged(f->h, dw_key_stage(&stage, &route, f->h, &key, 1),
                   "table dw_migrations, row with id 1",
                   "column overrides counts 0 overrides, but table "
                   "dw_overrides holds some");
    assert_damaged(f->h, read_key(f->h, 3), "row with id 1",
                   "column overrides counts 0");
    exec_ok(f->other, "UPDATE dw_migrations SET overrides = 1");
    assert_dw_ok(f->h, dw_key_stage(&stage, &route, f->h, &key, 1));
    assert_int_equal(stage, DW_STAGE_OFF);
    assert_int_equal(route, DW_ROUTE_OVERRIDE);
    exec_ok(f->other, "DELETE FROM dw_overrides");
    assert_damaged(f->h, dw_key_stage(&stage, &route, f->h, &key, 1),
                   "row with id 1",
                   "column overrides counts 1 overrides, but table "
                   "dw_overrides holds none");
}

/* ---- a migration deleted by hand and defined again -------------------------------- */

static void test_redefined_migration_starts_clean(void **state)
{
    fixture *f = *state;
    backfill_and_verify(f->h);
    dw_value key = dw_int(3);
    assert_dw_ok(f->h, dw_override_set(f->h, &key, 1, 1, DW_STAGE_OFF, "x"));
    dw_close(f->h);
    f->h = NULL;
    /* Deleted by hand with its new table's rows; defined again, it gets
     * the same id. */
    exec_ok(f->other, "DELETE FROM dw_migrations; DELETE FROM items_v2");
    assert_int_equal(open_items(&f->h, f->t.db, NULL), DW_OK);
    assert_int_equal(query_int(f->t.db, "SELECT id FROM dw_migrations"), 1);
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_DUAL_WRITE, "go", 0));
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_SHADOW, "go", 0));
    /* No backfill or verification of its own: the gate stays closed. */
    assert_dw(f->h, dw_stage_set(f->h, DW_STAGE_LIVE, "go", 0), DW_EGATE);
    assert_msg_has(f->h, "no backfill has run");
    dw_backfill_progress p;
    assert_dw_ok(f->h, dw_backfill_status(&p, f->h));
    assert_int_equal(p.finished, 0);
    assert_int_equal(p.rows_done, 0);
    int stage = -1, route = -1;
    assert_dw_ok(f->h, dw_key_stage(&stage, &route, f->h, &key, 1));
    assert_int_equal(route, DW_ROUTE_MIGRATION);
    assert_int_equal(query_int(f->t.db, "SELECT count(*) FROM dw_history"),
                     3);
    assert_int_equal(query_int(f->t.db, "SELECT count(*) FROM dw_verify_runs"),
                     0);
}

/* ---- the backfill cursor ------------------------------------------------------------ */

static int stop_after_one(const dw_backfill_progress *p, void *payload)
{
    (void)p;
    (void)payload;
    return 1;
}

/* A backfill stopped after its first batch of 5: cursor [5], end [20]. */
static void backfill_first_batch(fixture *f)
{
    dw_backfill_options o = DW_BACKFILL_OPTIONS_INIT;
    o.batch_rows = 5;
    o.batch_ms = -1;
    o.progress = stop_after_one;
    assert_dw(f->h, dw_backfill(NULL, f->h, &o), DW_MORE);
    char buf[64];
    assert_string_equal(query_text(f->t.db, "SELECT cursor FROM dw_backfill",
                                   buf, sizeof buf),
                        "[5]");
}

static void test_forged_backfill_cursor(void **state)
{
    fixture *f = *state;
    backfill_first_batch(f);
    static const struct {
        const char *set, *shown;
    } forged[] = {
        {"cursor = '[999]'",
         "column cursor holds [999], which is not before the end key [20]"},
        {"cursor = '[20]'",
         "column cursor holds [20], which is not before the end key [20]"},
        {"cursor = '[\"abc\"]'", "column cursor holds [\"abc\"], which is not "
                                 "before"},
        {"cursor = 'garbage'",
         "column cursor holds garbage, which is not a key of the migration"},
        {"cursor = '[1,2]'", "column cursor holds [1,2], which is not a key"},
        {"end_key = NULL", "column cursor holds [5], but end_key is NULL"},
        {"end_key = '{}'", "column end_key holds {}, which is not a key"},
        {"state = 'bogus'", "column state holds 'bogus', not running, done "
                            "or stale"},
        {"source = 7", "column source holds 7, not 1 or 2"},
    };
    for (size_t i = 0; i < sizeof forged / sizeof *forged; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "UPDATE dw_backfill SET %s", forged[i].set);
        exec_ok(f->other, sql);
        assert_damaged(f->h, dw_backfill(NULL, f->h, NULL),
                       "table dw_backfill, row with migration_id 1",
                       forged[i].shown);
        dw_backfill_progress p;
        assert_damaged(f->h, dw_backfill_status(&p, f->h),
                       "table dw_backfill", forged[i].shown);
        /* Nothing copied past the first batch, nothing marked done. */
        assert_int_equal(query_int(f->t.db, "SELECT count(*) FROM items_v2"),
                         5);
        exec_ok(f->other, "UPDATE dw_backfill SET cursor = '[5]', "
                          "end_key = '[20]', state = 'running', source = 1");
    }
    assert_dw_ok(f->h, dw_backfill(NULL, f->h, NULL));
    assert_int_equal(query_int(f->t.db, "SELECT count(*) FROM items_v2"), 20);
}

/* A stored key spelled otherwise -- "[ 20 ]" is the key [20] -- is that key:
 * the backfill reaches its end and finishes. (Was a defect: the last batch
 * was told by comparing texts, so the backfill stored the cursor [20],
 * refused it the next time as not before the end key "[ 20 ]", and never
 * finished.) */
static void test_end_key_spelled_otherwise(void **state)
{
    fixture *f = *state;
    backfill_first_batch(f);
    exec_ok(f->other, "UPDATE dw_backfill SET end_key = '[ 20 ]', "
                      "cursor = '[ 5 ]'");
    dw_backfill_options o = DW_BACKFILL_OPTIONS_INIT;
    o.batch_rows = 5; /* the last batch ends on the end key itself */
    o.batch_ms = -1;
    dw_backfill_progress p;
    assert_dw_ok(f->h, dw_backfill(&p, f->h, &o));
    assert_true(p.finished);
    assert_int_equal(query_int(f->t.db, "SELECT count(*) FROM items_v2"), 20);
    assert_dw_ok(f->h, dw_backfill(&p, f->h, &o)); /* and stays done */
    assert_true(p.finished);
}

/* The gate reads the backfill's state word too. */
static void test_forged_backfill_state_at_the_gate(void **state)
{
    fixture *f = *state;
    backfill_and_verify(f->h);
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_SHADOW, "go", 0));
    exec_ok(f->other, "UPDATE dw_backfill SET state = 'DONE'");
    assert_damaged(f->h, dw_stage_set(f->h, DW_STAGE_LIVE, "go", 0),
                   "table dw_backfill, row with migration_id 1",
                   "column state holds 'DONE'");
    int stage = -1;
    assert_dw_ok(f->h, dw_stage_get(&stage, f->h));
    assert_int_equal(stage, DW_STAGE_SHADOW);
}

/* The backfill's counters, below zero or not numbers, are not reported as
 * progress. */
static void test_forged_backfill_counters(void **state)
{
    fixture *f = *state;
    backfill_first_batch(f);
    static const struct {
        const char *set, *shown;
    } forged[] = {
        {"rows_done = -3", "column rows_done holds -3"},
        {"rows_total = 'many'", "column rows_total holds the text 'many'"},
        {"batches = 1.5", "column batches holds the real 1.5"},
    };
    for (size_t i = 0; i < sizeof forged / sizeof *forged; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "UPDATE dw_backfill SET %s", forged[i].set);
        exec_ok(f->other, sql);
        dw_backfill_progress p;
        assert_damaged(f->h, dw_backfill_status(&p, f->h),
                       "table dw_backfill, row with migration_id 1",
                       forged[i].shown);
        assert_damaged(f->h, dw_backfill(NULL, f->h, NULL),
                       "table dw_backfill", forged[i].shown);
        exec_ok(f->other, "UPDATE dw_backfill SET rows_done = 5, "
                          "rows_total = 20, batches = 1");
    }
    assert_dw_ok(f->h, dw_backfill(NULL, f->h, NULL));
}

/* The gate counts verifications after the backfill's verify_after; one
 * that is not a run id would let a verification older than the backfill
 * open it. */
static void test_forged_verify_after(void **state)
{
    fixture *f = *state;
    backfill_and_verify(f->h);
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_SHADOW, "go", 0));
    static const char *const forged[] = {"'x'", "-1", "0.5"};
    for (size_t i = 0; i < sizeof forged / sizeof *forged; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "UPDATE dw_backfill SET verify_after = %s",
                 forged[i]);
        exec_ok(f->other, sql);
        assert_damaged(f->h, dw_stage_set(f->h, DW_STAGE_LIVE, "go", 0),
                       "table dw_backfill, row with migration_id 1",
                       "column verify_after holds");
        int stage = -1;
        assert_dw_ok(f->h, dw_stage_get(&stage, f->h));
        assert_int_equal(stage, DW_STAGE_SHADOW);
    }
    exec_ok(f->other, "UPDATE dw_backfill SET verify_after = 0");
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_LIVE, "go", 0));
}

/* dw_sqlite_list() never hands out a damaged stage as a stage: -1. */
static int note_stage(const dw_stored_migration *m, void *payload)
{
    *(int *)payload = m->stage;
    return 0;
}

static void test_list_damaged_stage(void **state)
{
    fixture *f = *state;
    static const char *const forged[] = {"'LIVE'", "2.5", "x'03'", "99",
                                         "-4"};
    for (size_t i = 0; i < sizeof forged / sizeof *forged; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "UPDATE dw_migrations SET stage = %s",
                 forged[i]);
        exec_ok(f->other, sql);
        int stage = 42;
        char *err = NULL;
        assert_int_equal(dw_sqlite_list(f->t.db, note_stage, &stage, &err), DW_OK);
        if (stage != -1)
            print_error("stage %s listed as %d\n", forged[i], stage);
        assert_int_equal(stage, -1);
    }
    exec_ok(f->other, "UPDATE dw_migrations SET stage = 2");
    int stage = 42;
    assert_int_equal(dw_sqlite_list(f->t.db, note_stage, &stage, NULL), DW_OK);
    assert_int_equal(stage, DW_STAGE_SHADOW);
}

/* dw_sqlite_remove() goes by the stage, the contract flag and the canary's stage:
 * forged, none of them reads as one that lets the migration go (a text
 * stage reads as 0, OFF; a flag of 1.5 as contracted). Nothing is removed. */
static void test_remove_damaged_stage(void **state)
{
    fixture *f = *state;
    static const char *const forged[] = {
        "stage = 'LIVE'", "stage = 5, contracted = 1.5",
        "stage = 0, canary_buckets = 10, canary_stage = 'x'",
        "stage = 0, canary_stage = 9"};
    for (size_t i = 0; i < sizeof forged / sizeof *forged; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "UPDATE dw_migrations SET %s", forged[i]);
        exec_ok(f->other, sql);
        char *err = NULL;
        int rc = dw_sqlite_remove(f->other, "items_v2", 0, "x", &err);
        if (rc != DW_ECORRUPT)
            print_error("%s: %d %s\n", forged[i], rc, err ? err : "");
        assert_int_equal(rc, DW_ECORRUPT);
        assert_non_null(strstr(err, "\"items_v2\" is damaged: table "
                                    "dw_migrations"));
        dw_free(err);
        assert_int_equal(query_int(f->t.db, "SELECT count(*) FROM "
                                            "dw_migrations"),
                         1);
        exec_ok(f->other, "UPDATE dw_migrations SET stage = 1, "
                          "contracted = 0, canary_buckets = 0, "
                          "canary_stage = 0");
    }
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_OFF, "back", 0));
    assert_int_equal(dw_sqlite_remove(f->other, "items_v2", 0, "x", NULL), DW_OK);
}

/* A verification made under the spec before a redefinition does not open
 * the gate for the new one: the redefinition marks the backfill stale, and
 * the next backfill counts only verifications after it. */
static void test_redefinition_forgets_verification(void **state)
{
    fixture *f = *state;
    backfill_and_verify(f->h);
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_SHADOW, "go", 0));
    dw_close(f->h);
    f->h = NULL;
    static const dw_column_map up2[] = {{"title", "lower(name)"}};
    assert_int_equal(open_items_with(&f->h, f->t.db, up2, DW_OPEN_REDEFINE,
                                     NULL),
                     DW_OK);
    assert_dw(f->h, dw_stage_set(f->h, DW_STAGE_LIVE, "go", 0), DW_EGATE);
    assert_dw_ok(f->h, dw_backfill(NULL, f->h, NULL));
    assert_dw(f->h, dw_stage_set(f->h, DW_STAGE_LIVE, "go", 0), DW_EGATE);
    assert_msg_has(f->h, "no verification");
}

/* ---- the stored spec ------------------------------------------------------------- */

static int count_listed(const dw_stored_migration *m, void *payload)
{
    (void)m;
    ++*(int *)payload;
    return 0;
}

/* A spec truncated or edited by hand is not taken for a schema change:
 * dw_sqlite_open_stored() says it is damaged; dw_sqlite_list() still lists it. */
static void test_damaged_spec(void **state)
{
    fixture *f = *state;
    exec_ok(f->other, "UPDATE dw_migrations SET spec = substr(spec, 1, 30)");
    int listed = 0;
    char *err = NULL;
    assert_int_equal(dw_sqlite_list(f->t.db, count_listed, &listed, &err), DW_OK);
    assert_int_equal(listed, 1);
    dw_migration *h2 = NULL;
    assert_int_equal(dw_sqlite_open_stored(&h2, f->t.db, "items_v2", 0, &err),
                     DW_ECORRUPT);
    assert_null(h2);
    assert_non_null(strstr(err, "migration \"items_v2\": its stored spec is "
                                "damaged"));
    assert_non_null(strstr(err, "does not parse as JSON"));
    dw_free(err);
    exec_ok(f->other, "UPDATE dw_migrations SET spec = '{\"format\":1}'");
    err = NULL;
    assert_int_equal(dw_sqlite_open_stored(&h2, f->t.db, "items_v2", 0, &err),
                     DW_ECORRUPT);
    assert_non_null(strstr(err, "parses as JSON, but was changed"));
    assert_null(strstr(err, "renamed"));
    dw_free(err);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_forged_stage),
        T(test_forged_history),
        T(test_forged_routing),
        T(test_forged_cohort),
        T(test_forged_override),
        T(test_override_count_disagrees),
        T(test_redefined_migration_starts_clean),
        T(test_forged_backfill_cursor),
        T(test_end_key_spelled_otherwise),
        T(test_forged_backfill_state_at_the_gate),
        T(test_forged_backfill_counters),
        T(test_forged_verify_after),
        T(test_redefinition_forgets_verification),
        T(test_list_damaged_stage),
        T(test_damaged_spec),
        T(test_remove_damaged_stage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
