/* Tests of the stored stage: names, moves, history, sharing between
 * connections, spec (re)definition and the state tables. */
#include "support.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- fixture ------------------------------------------------------------ */

static const char *const ITEM_KEY[] = {"id"};
static const char *const OLD_COLS[] = {"name", "qty"};
static const char *const NEW_COLS[] = {"title", "quantity"};

static void create_items(sqlite3 *db)
{
    exec_ok(db, "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                " qty INTEGER);"
                "CREATE TABLE items_v2(id INTEGER PRIMARY KEY,"
                " title TEXT NOT NULL, quantity INTEGER);");
}

/* Opens migration `name` over items -> items_v2 with the given expression
 * for the title column. */
static int open_items(dw_migration **out, sqlite3 *db, const char *name,
                      const char *title_expr, unsigned flags,
                      const char *reason, char **errmsg)
{
    dw_column_map up[2] = {{"title", title_expr}, {"quantity", "qty"}};
    dw_options o = options_for(name, TEST_SIDE("items", ITEM_KEY, OLD_COLS),
                               TEST_SIDE("items_v2", ITEM_KEY, NEW_COLS));
    o.up = up;
    o.nup = 2;
    o.flags = flags;
    o.reason = reason;
    return dw_sqlite_open(out, db, &o, errmsg);
}

static dw_migration *open_items_ok(sqlite3 *db, const char *name)
{
    dw_migration *h = NULL;
    char *err = NULL;
    int rc = open_items(&h, db, name, "upper(name)", 0, "initial", &err);
    return opened_ok("dw_open", rc, h, err);
}

/* ---- history collection ------------------------------------------------- */

#define MAX_EVENTS 32

typedef struct event {
    int64_t id;
    double time;
    char event[32];
    int from, to, forced;
    int has_reason;
    char reason[64];
} event;

typedef struct history {
    event e[MAX_EVENTS];
    int n;
    int stop_after; /* 0: never stop */
    int calls;
} history;

static int collect(const dw_history_entry *entry, void *payload)
{
    history *hs = payload;
    hs->calls++;
    if (hs->n < MAX_EVENTS) {
        event *e = &hs->e[hs->n++];
        e->id = entry->id;
        e->time = entry->time;
        snprintf(e->event, sizeof e->event, "%s",
                 entry->event ? entry->event : "(null)");
        e->from = entry->from_stage;
        e->to = entry->to_stage;
        e->forced = entry->forced;
        e->has_reason = entry->reason != NULL;
        snprintf(e->reason, sizeof e->reason, "%s",
                 entry->reason ? entry->reason : "");
    }
    return hs->stop_after > 0 && hs->calls >= hs->stop_after;
}

static void get_history(history *hs, dw_migration *h)
{
    memset(hs, 0, sizeof *hs);
    assert_dw_ok(h, dw_history(h, collect, hs));
}

static int history_len(dw_migration *h)
{
    history hs;
    get_history(&hs, h);
    return hs.n;
}

/* ---- write callback used to observe a handle's stage -------------------- */

static int put_old(void *db, const dw_value *key, int nkey, void *payload)
{
    (void)payload;
    assert_int_equal(nkey, 1);
    return callback_exec(
        db,
        "INSERT INTO items(id, name, qty) VALUES(?1, 'thing', 4)"
        " ON CONFLICT(id) DO UPDATE SET name = excluded.name, qty = "
        "excluded.qty",
        "i", key[0].i);
}

/* ---- tests -------------------------------------------------------------- */

static void test_new_migration_starts_off(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    f->h = open_items_ok(f->t.db, "items_title");
    assert_int_equal(stage_of(f->h), DW_STAGE_OFF);
    assert_string_equal(dw_name(f->h), "items_title");
    assert_ptr_equal(dw_sqlite_db(f->h), f->t.db);
    const char *d = dw_spec_digest(f->h);
    assert_non_null(d);
    assert_int_equal(strlen(d), 64);
    for (const char *p = d; *p; p++)
        assert_true(isdigit((unsigned char)*p) || (*p >= 'a' && *p <= 'f'));
}

static void test_stage_names_round_trip(void **state)
{
    (void)state;
    static const char *const names[] = {"OFF",  "DUAL_WRITE", "SHADOW",
                                        "LIVE", "RAMPDOWN",   "COMPLETE"};
    for (int s = 0; s < 6; s++) {
        const char *n = dw_stage_name(s);
        assert_non_null(n);
        assert_string_equal(n, names[s]);
        int out = -1;
        assert_int_equal(dw_stage_parse(&out, n), DW_OK);
        assert_int_equal(out, s);
    }
    assert_null(dw_stage_name(-1));
    assert_null(dw_stage_name(6));

    static const struct {
        const char *text;
        int stage;
    } mixed[] = {{"off", DW_STAGE_OFF},       {"dual_write", DW_STAGE_DUAL_WRITE},
                 {"Shadow", DW_STAGE_SHADOW}, {"lIvE", DW_STAGE_LIVE},
                 {"rampDown", DW_STAGE_RAMPDOWN}, {"complete", DW_STAGE_COMPLETE}};
    for (size_t i = 0; i < sizeof mixed / sizeof mixed[0]; i++) {
        int out = -1;
        assert_int_equal(dw_stage_parse(&out, mixed[i].text), DW_OK);
        assert_int_equal(out, mixed[i].stage);
    }

    int out = -1;
    assert_int_equal(dw_stage_parse(&out, "bogus"), DW_EMISUSE);
    assert_int_equal(dw_stage_parse(&out, ""), DW_EMISUSE);
    assert_int_equal(dw_stage_parse(&out, "DUAL-WRITE"), DW_EMISUSE);
    assert_int_equal(dw_stage_parse(&out, "LIVE "), DW_EMISUSE);
    assert_int_equal(dw_stage_parse(&out, NULL), DW_EMISUSE);
    assert_int_equal(dw_stage_parse(NULL, "LIVE"), DW_EMISUSE);
}

static void test_stage_forward_one_step(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    f->h = open_items_ok(f->t.db, "m");
    for (int s = DW_STAGE_DUAL_WRITE; s <= DW_STAGE_COMPLETE; s++) {
        if (s == DW_STAGE_LIVE)
            backfill_and_verify(f->h);
        assert_dw_ok(f->h, dw_stage_set(f->h, s, "next", 0));
        assert_int_equal(stage_of(f->h), s);
    }
    history hs;
    get_history(&hs, f->h);
    assert_int_equal(hs.n, 7); /* define + five moves + the backfill */
    assert_string_equal(hs.e[3].event, "backfill");
    memmove(&hs.e[3], &hs.e[4], sizeof hs.e[0] * 3);
    for (int i = 1; i < 6; i++) {
        assert_string_equal(hs.e[i].event, "stage");
        assert_int_equal(hs.e[i].from, i - 1);
        assert_int_equal(hs.e[i].to, i);
        assert_int_equal(hs.e[i].forced, 0);
    }
}

static void test_stage_forward_jump_needs_force(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    f->h = open_items_ok(f->t.db, "m");
    int before = history_len(f->h);

    assert_dw(f->h, dw_stage_set(f->h, DW_STAGE_SHADOW, "jump", 0), DW_EMISUSE);
    assert_int_equal(stage_of(f->h), DW_STAGE_OFF);
    assert_dw(f->h, dw_stage_set(f->h, DW_STAGE_COMPLETE, "jump", 0),
              DW_EMISUSE);
    assert_int_equal(stage_of(f->h), DW_STAGE_OFF);
    assert_int_equal(history_len(f->h), before);

    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_LIVE, "forced jump",
                                    DW_STAGE_FORCE));
    assert_int_equal(stage_of(f->h), DW_STAGE_LIVE);

    /* From LIVE, a jump of two is refused too. */
    assert_dw(f->h, dw_stage_set(f->h, DW_STAGE_COMPLETE, NULL, 0), DW_EMISUSE);
    assert_int_equal(stage_of(f->h), DW_STAGE_LIVE);

    history hs;
    get_history(&hs, f->h);
    assert_int_equal(hs.n, before + 1);
    event *e = &hs.e[hs.n - 1];
    assert_string_equal(e->event, "stage");
    assert_int_equal(e->from, DW_STAGE_OFF);
    assert_int_equal(e->to, DW_STAGE_LIVE);
    assert_int_equal(e->forced, 1);
    assert_string_equal(e->reason, "forced jump");
}

static void test_stage_backward_any_distance(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    f->h = open_items_ok(f->t.db, "m");
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_COMPLETE, "to the end",
                                    DW_STAGE_FORCE));
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_RAMPDOWN, "back one", 0));
    assert_int_equal(stage_of(f->h), DW_STAGE_RAMPDOWN);
    /* Trusting the old model again after COMPLETE passes a gate (the old
     * model missed COMPLETE's writes); the backfill, copying from the new
     * model, opens it. */
    assert_dw(f->h, dw_stage_set(f->h, DW_STAGE_DUAL_WRITE, "back three", 0),
              DW_EGATE);
    assert_non_null(strstr(dw_errmsg(f->h), "missed the writes"));
    assert_int_equal(stage_of(f->h), DW_STAGE_RAMPDOWN);
    assert_dw_ok(f->h, dw_backfill(NULL, f->h, NULL));
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_DUAL_WRITE, "back three", 0));
    assert_int_equal(stage_of(f->h), DW_STAGE_DUAL_WRITE);
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_OFF, "back one", 0));
    assert_int_equal(stage_of(f->h), DW_STAGE_OFF);
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_COMPLETE, "again",
                                    DW_STAGE_FORCE));
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_OFF, "all the way",
                                    DW_STAGE_FORCE));
    assert_int_equal(stage_of(f->h), DW_STAGE_OFF);

    history hs;
    get_history(&hs, f->h);
    event *e = &hs.e[hs.n - 1];
    assert_string_equal(e->event, "stage");
    assert_int_equal(e->from, DW_STAGE_COMPLETE);
    assert_int_equal(e->to, DW_STAGE_OFF);
    assert_int_equal(e->forced, 1);
    assert_string_equal(e->reason, "all the way");
}

static void test_stage_set_current_records_nothing(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    f->h = open_items_ok(f->t.db, "m");
    int n = history_len(f->h);
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_OFF, "same", 0));
    assert_int_equal(history_len(f->h), n);
    assert_int_equal(stage_of(f->h), DW_STAGE_OFF);

    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_DUAL_WRITE, NULL, 0));
    n = history_len(f->h);
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_DUAL_WRITE, "same", 0));
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_DUAL_WRITE, "same",
                                    DW_STAGE_FORCE));
    assert_int_equal(history_len(f->h), n);
    assert_int_equal(stage_of(f->h), DW_STAGE_DUAL_WRITE);
}

static void test_history_events(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    double now = (double)time(NULL);
    f->h = open_items_ok(f->t.db, "hist");
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_DUAL_WRITE, "start dual", 0));
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_SHADOW, NULL, 0));
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_OFF, "roll back", 0));

    history hs;
    get_history(&hs, f->h);
    assert_int_equal(hs.n, 4);

    assert_string_equal(hs.e[0].event, "define");
    assert_int_equal(hs.e[0].from, DW_STAGE_OFF);
    assert_int_equal(hs.e[0].to, DW_STAGE_OFF);
    assert_true(hs.e[0].has_reason);
    assert_string_equal(hs.e[0].reason, "initial");

    assert_string_equal(hs.e[1].event, "stage");
    assert_int_equal(hs.e[1].from, DW_STAGE_OFF);
    assert_int_equal(hs.e[1].to, DW_STAGE_DUAL_WRITE);
    assert_int_equal(hs.e[1].forced, 0);
    assert_true(hs.e[1].has_reason);
    assert_string_equal(hs.e[1].reason, "start dual");

    assert_string_equal(hs.e[2].event, "stage");
    assert_int_equal(hs.e[2].from, DW_STAGE_DUAL_WRITE);
    assert_int_equal(hs.e[2].to, DW_STAGE_SHADOW);
    assert_false(hs.e[2].has_reason);

    assert_string_equal(hs.e[3].event, "stage");
    assert_int_equal(hs.e[3].from, DW_STAGE_SHADOW);
    assert_int_equal(hs.e[3].to, DW_STAGE_OFF);
    assert_string_equal(hs.e[3].reason, "roll back");

    for (int i = 0; i < hs.n; i++) {
        if (hs.e[i].time < now - 60.0 || hs.e[i].time > now + 60.0)
            fail_msg("history entry %d time %.3f not within a minute of %.0f",
                     i, hs.e[i].time, now);
        if (i > 0) {
            assert_true(hs.e[i].id > hs.e[i - 1].id);
            assert_true(hs.e[i].time >= hs.e[i - 1].time);
        }
    }

    /* Another migration's history is not mixed in. */
    dw_migration *other = NULL;
    char *err = NULL;
    assert_int_equal(open_items(&other, f->t.db, "other", "lower(name)", 0,
                                NULL, &err),
                     DW_OK);
    dw_free(err);
    assert_dw_ok(other, dw_stage_set(other, DW_STAGE_DUAL_WRITE, "x", 0));
    assert_int_equal(history_len(f->h), 4);
    assert_int_equal(history_len(other), 2);
    dw_close(other);
}

static void test_history_early_stop(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    f->h = open_items_ok(f->t.db, "m");
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_DUAL_WRITE, "a", 0));
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_SHADOW, "b", 0));

    history hs;
    memset(&hs, 0, sizeof hs);
    hs.stop_after = 1;
    assert_dw_ok(f->h, dw_history(f->h, collect, &hs));
    assert_int_equal(hs.calls, 1);
    assert_string_equal(hs.e[0].event, "define");

    memset(&hs, 0, sizeof hs);
    hs.stop_after = 2;
    assert_dw_ok(f->h, dw_history(f->h, collect, &hs));
    assert_int_equal(hs.calls, 2);
    assert_string_equal(hs.e[1].reason, "a");
}

static void test_stage_seen_by_other_connection(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    fixture_connect_second(f);
    f->h = open_items_ok(f->t.db, "shared");  /* connection A */
    f->h2 = open_items_ok(f->db2, "shared");  /* connection B */
    assert_int_equal(stage_of(f->h2), DW_STAGE_OFF);

    /* At OFF, B writes only the old side. */
    dw_value k1 = dw_int(1);
    assert_dw_ok(f->h2, dw_write(f->h2, &k1, 1, put_old, NULL, NULL));
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items WHERE id=1"),
                     1);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items_v2"), 0);

    /* A moves forward; B's very next operation (a write) follows. */
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_DUAL_WRITE, "go", 0));
    dw_value k2 = dw_int(2);
    assert_dw_ok(f->h2, dw_write(f->h2, &k2, 1, put_old, NULL, NULL));
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items WHERE id=2"),
                     1);
    char buf[64];
    assert_string_equal(fixture_text(f, "SELECT title FROM items_v2 WHERE id=2",
                                     buf, sizeof buf),
                        "THING");
    assert_int_equal(fixture_int(f, "SELECT quantity FROM items_v2 WHERE id=2"),
                     4);
    assert_int_equal(stage_of(f->h2), DW_STAGE_DUAL_WRITE);

    /* A moves back; B's next write goes to the old side only again. */
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_OFF, "back", 0));
    dw_value k3 = dw_int(3);
    assert_dw_ok(f->h2, dw_write(f->h2, &k3, 1, put_old, NULL, NULL));
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items WHERE id=3"),
                     1);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items_v2 WHERE id=3"),
                     0);
    assert_int_equal(stage_of(f->h2), DW_STAGE_OFF);

    /* And stage_get alone sees the change too. */
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_DUAL_WRITE, "again", 0));
    assert_int_equal(stage_of(f->h2), DW_STAGE_DUAL_WRITE);
    /* B moving is seen by A as well. */
    assert_dw_ok(f->h2, dw_stage_set(f->h2, DW_STAGE_SHADOW, "from B", 0));
    assert_int_equal(stage_of(f->h), DW_STAGE_SHADOW);
    assert_dw_ok(f->h2, dw_stage_set(f->h2, DW_STAGE_OFF, "from B", 0));
    assert_int_equal(stage_of(f->h), DW_STAGE_OFF);
}

static void test_reopen_same_spec_keeps_stage(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    f->h = open_items_ok(f->t.db, "m");
    char digest[65];
    snprintf(digest, sizeof digest, "%s", dw_spec_digest(f->h));
    stage_walk_ok(f->h, DW_STAGE_SHADOW);
    int n = history_len(f->h);
    dw_close(f->h);
    f->h = NULL;

    f->h = open_items_ok(f->t.db, "m");
    assert_int_equal(stage_of(f->h), DW_STAGE_SHADOW);
    assert_string_equal(dw_spec_digest(f->h), digest);
    assert_int_equal(history_len(f->h), n); /* no new define event */
}

static void test_reopen_different_spec(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    f->h = open_items_ok(f->t.db, "m");
    char digest[65];
    snprintf(digest, sizeof digest, "%s", dw_spec_digest(f->h));
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_DUAL_WRITE, NULL, 0));
    int n = history_len(f->h);
    dw_close(f->h);
    f->h = NULL;

    /* A different up expression is a different spec. */
    dw_migration *h = (dw_migration *)&h; /* must be set to NULL */
    char *err = NULL;
    int rc = open_items(&h, f->t.db, "m", "lower(name)", 0, "changed", &err);
    assert_int_equal(rc, DW_ESPEC);
    assert_null(h);
    assert_non_null(err);
    assert_true(strlen(err) > 0);
    dw_free(err);

    /* Nothing was stored by the failed open. */
    f->h = open_items_ok(f->t.db, "m");
    assert_int_equal(stage_of(f->h), DW_STAGE_DUAL_WRITE);
    assert_string_equal(dw_spec_digest(f->h), digest);
    assert_int_equal(history_len(f->h), n);
    dw_close(f->h);
    f->h = NULL;

    /* With DW_OPEN_REDEFINE the new spec replaces the stored one. */
    err = NULL;
    rc = open_items(&f->h, f->t.db, "m", "lower(name)", DW_OPEN_REDEFINE,
                    "fix title case", &err);
    if (rc != DW_OK)
        print_error("redefine: %s\n", err ? err : "(no message)");
    assert_int_equal(rc, DW_OK);
    assert_null(err);
    assert_int_equal(stage_of(f->h), DW_STAGE_DUAL_WRITE);
    assert_string_not_equal(dw_spec_digest(f->h), digest);
    assert_int_equal(strlen(dw_spec_digest(f->h)), 64);

    history hs;
    get_history(&hs, f->h);
    assert_int_equal(hs.n, n + 1);
    event *e = &hs.e[hs.n - 1];
    assert_string_equal(e->event, "redefine");
    assert_string_equal(e->reason, "fix title case");
    assert_int_equal(e->from, DW_STAGE_DUAL_WRITE);
    assert_int_equal(e->to, DW_STAGE_DUAL_WRITE);

    /* The new spec is in force: the old one is now the different one. */
    dw_migration *h3 = NULL;
    err = NULL;
    rc = open_items(&h3, f->t.db, "m", "upper(name)", 0, NULL, &err);
    assert_int_equal(rc, DW_ESPEC);
    assert_null(h3);
    assert_non_null(err);
    dw_free(err);

    /* And the new spec is used by writes: title = lower(name). */
    dw_value k = dw_int(7);
    assert_dw_ok(f->h, dw_write(f->h, &k, 1, put_old, NULL, NULL));
    char buf[64];
    assert_string_equal(query_text(f->t.db,
                                   "SELECT title FROM items_v2 WHERE id=7",
                                   buf, sizeof buf),
                        "thing");
}

static void test_misuse(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    f->h = open_items_ok(f->t.db, "m");
    int n = history_len(f->h);

    assert_int_equal(dw_stage_set(NULL, DW_STAGE_DUAL_WRITE, NULL, 0),
                     DW_EMISUSE);
    assert_dw(f->h, dw_stage_set(f->h, -1, NULL, 0), DW_EMISUSE);
    assert_non_null(dw_errmsg(f->h));
    assert_dw(f->h, dw_stage_set(f->h, 6, NULL, DW_STAGE_FORCE), DW_EMISUSE);
    assert_dw(f->h, dw_stage_set(f->h, 6, NULL, 0), DW_EMISUSE);
    assert_int_equal(stage_of(f->h), DW_STAGE_OFF);
    assert_int_equal(history_len(f->h), n);

    int s = -1;
    assert_int_equal(dw_stage_get(NULL, f->h), DW_EMISUSE);
    assert_int_equal(dw_stage_get(&s, NULL), DW_EMISUSE);

    const char *m = dw_errmsg(NULL);
    assert_non_null(m);
    assert_null(dw_name(NULL));
    assert_null(dw_sqlite_db(NULL));

    /* After a success the message is "not an error". */
    assert_dw_ok(f->h, dw_stage_get(&s, f->h));
    assert_string_equal(dw_errmsg(f->h), "not an error");
    assert_int_equal(dw_errside(f->h), DW_SIDE_NONE);

    dw_close(NULL); /* harmless */
}

static void test_state_tables_exist(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM sqlite_schema"
                                    " WHERE name LIKE 'dw\\_%' ESCAPE '\\'"),
                     0);
    f->h = open_items_ok(f->t.db, "m");
    static const char *const tables[] = {"dw_meta", "dw_migrations",
                                         "dw_history", "dw_repair_queue",
                                         "dw_mismatch_log"};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        char sql[200];
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM sqlite_schema WHERE type='table'"
                 " AND name='%s'",
                 tables[i]);
        if (fixture_int(f, sql) != 1)
            fail_msg("state table %s missing", tables[i]);
    }
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM dw_meta"
                                    " WHERE key='schema_version'"),
                     1);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM dw_migrations"), 1);

    /* A second open (same or other migration) leaves one schema version. */
    dw_close(f->h);
    f->h = open_items_ok(f->t.db, "m");
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM dw_meta"
                                    " WHERE key='schema_version'"),
                     1);
}

/* ---- regression: the cached stage ---------------------------------------- */

typedef enum other_call {
    CALL_HISTORY,
    CALL_REPAIR_COUNT,
    CALL_MISMATCH_LOG_COUNT,
    CALL_COMPARE,
    NCALLS
} other_call;

static void run_other_call(dw_migration *h, other_call which)
{
    switch (which) {
    case CALL_HISTORY: {
        history hs;
        get_history(&hs, h);
        assert_true(hs.n > 0);
        break;
    }
    case CALL_REPAIR_COUNT: {
        int64_t n = -1;
        assert_dw_ok(h, dw_repair_count(&n, h));
        assert_int_equal(n, 0);
        break;
    }
    case CALL_MISMATCH_LOG_COUNT: {
        int64_t entries = -1, dropped = -1;
        assert_dw_ok(h, dw_mismatch_log_count(&entries, &dropped, h));
        break;
    }
    case CALL_COMPARE: {
        int equal = -1;
        dw_value none = dw_int(999999);
        assert_dw_ok(h, dw_compare(&equal, h, &none, 1));
        assert_int_equal(equal, 1);
        break;
    }
    default:
        fail();
    }
}

/* A handle's cached stage must not survive a call that reads state without
 * re-checking the stage: connection A writes at OFF (caching it), connection
 * B moves the migration to DUAL_WRITE, A makes some other call, and A's next
 * write must write the new side too. */
static void test_stage_cache_refreshed_after_other_calls(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    fixture_connect_second(f);
    char mode[16];
    assert_string_equal(
        fixture_text(f, "PRAGMA journal_mode", mode, sizeof mode), "wal");
    f->h = open_items_ok(f->t.db, "cached");  /* connection A */
    f->h2 = open_items_ok(f->db2, "cached");  /* connection B */

    for (int which = 0; which < NCALLS; which++) {
        int64_t base = 10 * (which + 1);
        char sql[128];

        /* A writes at OFF: only the old side, and the stage is cached. */
        dw_value k1 = dw_int(base + 1);
        assert_dw_ok(f->h, dw_write(f->h, &k1, 1, put_old, NULL, NULL));
        snprintf(sql, sizeof sql, "SELECT count(*) FROM items_v2 WHERE id=%lld",
                 (long long)(base + 1));
        assert_int_equal(fixture_int(f, sql), 0);

        /* B moves forward; A makes a non-stage call, then writes. */
        assert_dw_ok(f->h2, dw_stage_set(f->h2, DW_STAGE_DUAL_WRITE, "go", 0));
        run_other_call(f->h, (other_call)which);
        dw_value k2 = dw_int(base + 2);
        assert_dw_ok(f->h, dw_write(f->h, &k2, 1, put_old, NULL, NULL));
        snprintf(sql, sizeof sql, "SELECT count(*) FROM items WHERE id=%lld",
                 (long long)(base + 2));
        assert_int_equal(fixture_int(f, sql), 1);
        snprintf(sql, sizeof sql, "SELECT count(*) FROM items_v2 WHERE id=%lld",
                 (long long)(base + 2));
        if (fixture_int(f, sql) != 1)
            print_error("after call %d A still wrote at OFF\n", which);
        assert_int_equal(fixture_int(f, sql), 1);
        assert_int_equal(stage_of(f->h), DW_STAGE_DUAL_WRITE);

        /* B moves back for the next round. */
        assert_dw_ok(f->h2, dw_stage_set(f->h2, DW_STAGE_OFF, "back", 0));
    }
}

/* A stage set inside the caller's transaction that the caller rolls back is
 * not the stage: the next write follows the stored stage (OFF). */
static void test_stage_set_rolled_back_by_caller(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    f->h = open_items_ok(f->t.db, "rb");

    dw_value k1 = dw_int(1);
    assert_dw_ok(f->h, dw_write(f->h, &k1, 1, put_old, NULL, NULL));

    fixture_exec(f, "BEGIN");
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_DUAL_WRITE, "try", 0));
    fixture_exec(f, "ROLLBACK");

    assert_int_equal(fixture_int(f, "SELECT stage FROM dw_migrations"
                                    " WHERE name='rb'"),
                     DW_STAGE_OFF);
    /* The write comes first: nothing else may refresh the handle's view. */
    dw_value k2 = dw_int(2);
    assert_dw_ok(f->h, dw_write(f->h, &k2, 1, put_old, NULL, NULL));
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items WHERE id=2"),
                     1);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items_v2"), 0);
    assert_int_equal(stage_of(f->h), DW_STAGE_OFF);
}

/* Two handles on one connection inside one caller transaction: B moves the
 * stage, and A -- whose OFF is cached from an earlier write -- must then
 * write both sides. */
static void test_stage_two_handles_one_transaction(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    f->h = open_items_ok(f->t.db, "two");
    f->h2 = open_items_ok(f->t.db, "two");

    /* A caches OFF, once before and once inside the transaction. */
    dw_value k0 = dw_int(1);
    assert_dw_ok(f->h, dw_write(f->h, &k0, 1, put_old, NULL, NULL));
    fixture_exec(f, "BEGIN");
    dw_value k1 = dw_int(2);
    assert_dw_ok(f->h, dw_write(f->h, &k1, 1, put_old, NULL, NULL));
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items_v2"), 0);

    assert_dw_ok(f->h2, dw_stage_set(f->h2, DW_STAGE_DUAL_WRITE, "go", 0));
    dw_value k2 = dw_int(3);
    assert_dw_ok(f->h, dw_write(f->h, &k2, 1, put_old, NULL, NULL));
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items WHERE id=3"),
                     1);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items_v2 WHERE id=3"),
                     1);
    fixture_exec(f, "COMMIT");

    assert_int_equal(outside_transaction(f->t.db), 1);
    assert_int_equal(stage_of(f->h), DW_STAGE_DUAL_WRITE);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items_v2 WHERE id=3"),
                     1);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM items_v2 WHERE id<3"),
                     0);
}

/* A clean verification opens the LIVE gate; a later dirty one closes it
 * again, until the divergence is repaired and verified away. */
static void test_later_dirty_verification_closes_gate(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    fixture_exec(f, "INSERT INTO items VALUES(1, 'a', 1), (2, 'b', 2)");
    f->h = open_items_ok(f->t.db, "m");
    stage_walk_ok(f->h, DW_STAGE_SHADOW);
    backfill_and_verify(f->h);
    fixture_exec(f, "UPDATE items_v2 SET title = 'drift' WHERE id = 2");
    dw_verify_result r;
    assert_dw_ok(f->h, dw_verify(&r, f->h, NULL));
    assert_int_equal(r.different, 1);
    assert_dw(f->h, dw_stage_set(f->h, DW_STAGE_LIVE, NULL, 0), DW_EGATE);
    assert_non_null(strstr(dw_errmsg(f->h), "1 different"));
    assert_int_equal(stage_of(f->h), DW_STAGE_SHADOW);
    dw_repair_result rep;
    assert_dw_ok(f->h, dw_repair_divergent(&rep, f->h));
    assert_int_equal(rep.repaired, 1);
    assert_dw(f->h, dw_stage_set(f->h, DW_STAGE_LIVE, NULL, 0), DW_EGATE);
    assert_dw_ok(f->h, dw_verify(&r, f->h, NULL));
    assert_true(r.clean);
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_LIVE, NULL, 0));
}

/* DW_STAGE_CHECK answers what the move would return -- gates, jumps,
 * forcing without a reason -- and moves nothing, records nothing and runs
 * no setup SQL. */
static void test_stage_check_moves_nothing(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    fixture_exec(f, "INSERT INTO items VALUES(1, 'a', 1)");
    f->h = open_items_ok(f->t.db, "m");
    int before = history_len(f->h);
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_DUAL_WRITE, NULL,
                                    DW_STAGE_CHECK));
    assert_int_equal(stage_of(f->h), DW_STAGE_OFF);
    assert_int_equal(history_len(f->h), before);
    assert_dw(f->h, dw_stage_set(f->h, DW_STAGE_SHADOW, NULL, DW_STAGE_CHECK),
              DW_EMISUSE);
    assert_non_null(strstr(dw_errmsg(f->h), "skips a stage"));
    stage_walk_ok(f->h, DW_STAGE_SHADOW);
    assert_dw(f->h, dw_stage_set(f->h, DW_STAGE_LIVE, NULL, DW_STAGE_CHECK),
              DW_EGATE);
    assert_non_null(strstr(dw_errmsg(f->h), "no backfill has run"));
    assert_dw(f->h, dw_stage_set(f->h, DW_STAGE_LIVE, NULL,
                                 DW_STAGE_CHECK | DW_STAGE_FORCE),
              DW_EMISUSE);
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_LIVE, "because",
                                    DW_STAGE_CHECK | DW_STAGE_FORCE));
    assert_int_equal(stage_of(f->h), DW_STAGE_SHADOW);
    backfill_and_verify(f->h);
    before = history_len(f->h);
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_LIVE, NULL,
                                    DW_STAGE_CHECK));
    assert_int_equal(stage_of(f->h), DW_STAGE_SHADOW);
    assert_int_equal(history_len(f->h), before);
    /* Inside the caller's transaction it writes nothing either. */
    fixture_exec(f, "BEGIN");
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_LIVE, NULL,
                                    DW_STAGE_CHECK));
    assert_int_equal(sqlite3_txn_state(f->t.db, "main"), SQLITE_TXN_READ);
    fixture_exec(f, "COMMIT");
    assert_dw(f->h, dw_stage_set(f->h, DW_STAGE_LIVE, NULL, 1u << 7),
              DW_EMISUSE);
}

/* Dependent data exists before the first dual write: leaving OFF runs the
 * spec's setup SQL in the same transaction as the move. */
static void test_setup_sql_runs_when_leaving_off(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    fixture_exec(f, "CREATE TABLE units(name TEXT PRIMARY KEY);"
                    "INSERT INTO items VALUES(1, 'a', 1)");
    dw_column_map up[2] = {{"title", "upper(name)"}, {"quantity", "qty"}};
    dw_options o = options_for("m", TEST_SIDE("items", ITEM_KEY, OLD_COLS),
                               TEST_SIDE("items_v2", ITEM_KEY, NEW_COLS));
    o.up = up;
    o.nup = 2;
    o.setup_sql = "INSERT INTO units VALUES('each') ON CONFLICT DO NOTHING";
    f->h = open_migration_ok(f->t.db, &o);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM units"), 0);
    /* Rolled back with the move when the caller rolls back. */
    fixture_exec(f, "BEGIN");
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_DUAL_WRITE, NULL, 0));
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM units"), 1);
    fixture_exec(f, "ROLLBACK");
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM units"), 0);
    assert_int_equal(stage_of(f->h), DW_STAGE_OFF);
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_DUAL_WRITE, NULL, 0));
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM units"), 1);
    /* Idempotent: the backfill runs it again and nothing doubles. */
    assert_dw_ok(f->h, dw_backfill(NULL, f->h, NULL));
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM units"), 1);
    /* A failing setup refuses the move and leaves the stage at OFF. */
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_OFF, NULL, 0));
    fixture_exec(f, "CREATE TRIGGER no_units BEFORE INSERT ON units BEGIN "
                    "SELECT RAISE(ABORT, 'units are frozen'); END;"
                    "DELETE FROM units");
    assert_int_not_equal(dw_stage_set(f->h, DW_STAGE_DUAL_WRITE, NULL, 0),
                         DW_OK);
    assert_non_null(strstr(dw_errmsg(f->h), "units are frozen"));
    assert_int_equal(stage_of(f->h), DW_STAGE_OFF);
}

/* What was copied and verified under one mapping says nothing about
 * another: a redefinition makes the backfill stale (closing the gate), and
 * a handle still holding the old spec is refused. */
static void test_redefine_makes_backfill_stale(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    fixture_exec(f, "INSERT INTO items VALUES(1, 'a', 1), (2, 'b', 2)");
    f->h = open_items_ok(f->t.db, "m");
    stage_walk_ok(f->h, DW_STAGE_SHADOW);
    backfill_and_verify(f->h);
    dw_migration *h2 = NULL;
    char *err = NULL;
    assert_int_equal(open_items(&h2, f->t.db, "m", "lower(name)",
                                DW_OPEN_REDEFINE, "lower case", &err),
                     DW_OK);
    dw_backfill_progress p;
    assert_dw_ok(h2, dw_backfill_status(&p, h2));
    assert_int_equal(p.stale, 1);
    assert_dw(h2, dw_stage_set(h2, DW_STAGE_LIVE, NULL, 0), DW_EGATE);
    assert_non_null(strstr(dw_errmsg(h2), "stale"));
    /* The first handle copies with the old mapping: refused. */
    assert_dw(f->h, dw_backfill(NULL, f->h, NULL), DW_ESPEC);
    assert_dw(f->h, dw_verify(&(dw_verify_result){0}, f->h, NULL), DW_ESPEC);
    /* The new one backfills and verifies, and the gate opens. */
    backfill_and_verify(h2);
    char buf[16];
    assert_string_equal(fixture_text(f,
                                     "SELECT title FROM items_v2 "
                                     "WHERE id = 1",
                                     buf, sizeof buf),
                        "a");
    assert_dw_ok(h2, dw_stage_set(h2, DW_STAGE_LIVE, NULL, 0));
    dw_close(h2);
}

/* ---- opening beside another connection's write transaction -------------- */

/* A migration stored with the same spec opens in a read transaction: in WAL
 * mode it does not wait for another connection's write transaction (busy
 * timeout 0), and the handle reads. What must write -- a definition, a
 * redefinition -- still takes the write lock: DW_EBUSY, nothing stored. */
static void test_open_stored_spec_beside_writer(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    f->h = open_items_ok(f->t.db, "m");
    assert_dw_ok(f->h, dw_stage_set(f->h, DW_STAGE_DUAL_WRITE, "go", 0));
    char digest[65];
    snprintf(digest, sizeof digest, "%s", dw_spec_digest(f->h));
    int events = history_len(f->h);
    dw_close(f->h);
    f->h = NULL;

    fixture_connect_second(f);
    exec_ok(f->db2, "BEGIN IMMEDIATE;"
                    "INSERT INTO items VALUES(100, 'pending', 1)");
    sqlite3_busy_timeout(f->t.db, 0);

    /* The same spec: opens, and works. */
    char *err = NULL;
    int rc = open_items(&f->h, f->t.db, "m", "upper(name)", 0, NULL, &err);
    if (rc != DW_OK)
        print_error("dw_open beside a writer: %d %s\n", rc,
                    err ? err : "(no message)");
    assert_int_equal(rc, DW_OK);
    assert_null(err);
    assert_true(outside_transaction(f->t.db));
    assert_string_equal(dw_spec_digest(f->h), digest);
    assert_int_equal(stage_of(f->h), DW_STAGE_DUAL_WRITE);
    assert_int_equal(history_len(f->h), events);
    /* DW_OPEN_REDEFINE with the stored spec has nothing to store. */
    assert_int_equal(open_items(&f->h2, f->t.db, "m", "upper(name)",
                                DW_OPEN_REDEFINE, "same", NULL),
                     DW_OK);
    assert_int_equal(stage_of(f->h2), DW_STAGE_DUAL_WRITE);
    dw_close(f->h2);
    f->h2 = NULL;
    /* Another spec without DW_OPEN_REDEFINE is refused as before. */
    dw_migration *h = (dw_migration *)&h;
    rc = open_items(&h, f->t.db, "m", "lower(name)", 0, NULL, &err);
    assert_int_equal(rc, DW_ESPEC);
    assert_null(h);
    dw_free(err);
    err = NULL;

    /* Defining a new migration must write: busy, and nothing stored. */
    h = (dw_migration *)&h;
    rc = open_items(&h, f->t.db, "other", "upper(name)", 0, "new", &err);
    assert_int_equal(rc, DW_EBUSY);
    assert_null(h);
    assert_non_null(err);
    dw_free(err);
    err = NULL;
    assert_true(outside_transaction(f->t.db));
    /* So must a redefinition. */
    h = (dw_migration *)&h;
    rc = open_items(&h, f->t.db, "m", "lower(name)", DW_OPEN_REDEFINE,
                    "lower", &err);
    assert_int_equal(rc, DW_EBUSY);
    assert_null(h);
    dw_free(err);
    err = NULL;
    assert_true(outside_transaction(f->t.db));

    exec_ok(f->db2, "COMMIT");
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM dw_migrations"), 1);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM dw_history"), events);
    char buf[80];
    assert_string_equal(query_text(f->t.db,
                                   "SELECT spec_digest FROM dw_migrations "
                                   "WHERE name = 'm'",
                                   buf, sizeof buf),
                        digest);

    /* The lock released, both go through; the redefinition is recorded. */
    sqlite3_busy_timeout(f->t.db, 5000);
    assert_int_equal(open_items(&f->h2, f->t.db, "other", "upper(name)", 0,
                                "new", NULL),
                     DW_OK);
    assert_int_equal(stage_of(f->h2), DW_STAGE_OFF);
    dw_close(f->h2);
    f->h2 = NULL;
    assert_int_equal(open_items(&f->h2, f->t.db, "m", "lower(name)",
                                DW_OPEN_REDEFINE, "lower", NULL),
                     DW_OK);
    assert_string_not_equal(dw_spec_digest(f->h2), digest);
    history hs;
    get_history(&hs, f->h2);
    assert_int_equal(hs.n, events + 1);
    assert_string_equal(hs.e[hs.n - 1].event, "redefine");
    assert_string_equal(hs.e[hs.n - 1].reason, "lower");
}

/* Inside the caller's transaction the open is part of it: a stored spec is
 * only read, a definition is stored in it and goes with its rollback. */
static void test_open_inside_caller_transaction(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    f->h = open_items_ok(f->t.db, "m");
    dw_close(f->h);
    f->h = NULL;

    fixture_exec(f, "BEGIN");
    f->h = open_items_ok(f->t.db, "m");
    assert_false(outside_transaction(f->t.db));
    assert_int_equal(sqlite3_txn_state(f->t.db, "main"), SQLITE_TXN_READ);
    f->h2 = open_items_ok(f->t.db, "defined_inside");
    assert_int_equal(sqlite3_txn_state(f->t.db, "main"), SQLITE_TXN_WRITE);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM dw_migrations"), 2);
    fixture_exec(f, "ROLLBACK");
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM dw_migrations"), 1);
    assert_int_equal(stage_of(f->h), DW_STAGE_OFF);
}

/* Between the read attempt and the write attempt another connection may
 * commit: the write attempt starts over on what is there then. The busy
 * handler of the opening connection runs the other's SQL and commits it,
 * then lets the open take the lock. */
typedef struct meanwhile {
    sqlite3 *other;
    const char *sql;
    int calls;
} meanwhile;

static int commit_meanwhile(void *payload, int count)
{
    meanwhile *m = payload;
    (void)count;
    if (m->calls++ == 0)
        exec_ok(m->other, m->sql);
    return m->calls < 10;
}

static void test_open_redone_after_other_commit(void **state)
{
    test_fixture *f = *state;
    create_items(f->t.db);
    fixture_connect_second(f);
    meanwhile m = {f->db2, NULL, 0};

    /* Another connection defines the same migration meanwhile: it is
     * opened, defined once. */
    dw_migration *other = NULL;
    f->h2 = open_items_ok(f->db2, "seed"); /* the state tables */
    exec_ok(f->db2, "BEGIN IMMEDIATE");
    assert_int_equal(open_items(&other, f->db2, "m", "upper(name)", 0,
                                "by the other", NULL),
                     DW_OK);
    dw_close(other);
    m.sql = "COMMIT";
    sqlite3_busy_handler(f->t.db, commit_meanwhile, &m);
    f->h = open_items_ok(f->t.db, "m");
    assert_true(m.calls > 0);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM dw_history "
                                    "WHERE event = 'define' AND "
                                    "reason = 'by the other'"),
                     1);
    assert_int_equal(fixture_int(f, "SELECT count(*) FROM dw_history "
                                    "WHERE event = 'define'"),
                     2); /* seed and m */

    /* Another connection adds a column meanwhile: with default columns
     * the spec stored is checked against the schema of the write. */
    static const char *const key[] = {"id"};
    dw_options o = options_for("defaults", TEST_SIDE_UNLISTED("items", key),
                               TEST_SIDE_UNLISTED("items_v2", key));
    dw_column_map up[2] = {{"title", "name"}, {"quantity", "qty"}};
    o.up = up;
    o.nup = 2;
    exec_ok(f->db2, "BEGIN IMMEDIATE");
    m.sql = "ALTER TABLE items ADD COLUMN colour TEXT; COMMIT";
    m.calls = 0;
    dw_migration *h = open_migration_ok(f->t.db, &o);
    assert_true(m.calls > 0);
    char buf[400];
    query_text(f->t.db,
               "SELECT json_extract(spec, '$.old.columns') FROM "
               "dw_migrations WHERE name = 'defaults'",
               buf, sizeof buf);
    assert_string_equal(buf, "[\"name\",\"qty\",\"colour\"]");
    dw_close(h);
    sqlite3_busy_handler(f->t.db, NULL, NULL);
    sqlite3_busy_timeout(f->t.db, 5000);
}


/* What one outdated handle must refuse: a write, a mirror, a compared read
 * and a comparison, each with DW_ESPEC, a message saying to reopen, and
 * nothing written. `stale` was opened before the spec was redefined. */
static void outdated_handle_refuses(sqlite3 *db, dw_migration *stale)
{
    char before_old[256], before_new[256], after[256];
    static const char *const DUMP_OLD =
        "SELECT group_concat(id || ':' || name || ':' || qty, ',') FROM "
        "(SELECT * FROM items ORDER BY id)";
    static const char *const DUMP_NEW =
        "SELECT group_concat(id || ':' || title || ':' || quantity, ',') "
        "FROM (SELECT * FROM items_v2 ORDER BY id)";
    query_text(db, DUMP_OLD, before_old, sizeof before_old);
    query_text(db, DUMP_NEW, before_new, sizeof before_new);

    dw_value k = dw_int(7), k9 = dw_int(9);
    assert_dw(stale, dw_write(stale, &k9, 1, put_old, NULL, NULL), DW_ESPEC);
    assert_non_null(strstr(dw_errmsg(stale), "redefined"));
    assert_non_null(strstr(dw_errmsg(stale), "open"));
    assert_dw(stale, dw_mirror(stale, &k, 1), DW_ESPEC);
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    assert_dw(stale, dw_read(row, stale, &k, 1, NULL, NULL, NULL), DW_ESPEC);
    dw_row_free(row);
    int equal = -1;
    assert_dw(stale, dw_compare(&equal, stale, &k, 1), DW_ESPEC);
    assert_int_equal(equal, -1);

    assert_string_equal(query_text(db, DUMP_OLD, after, sizeof after),
                        before_old);
    assert_string_equal(query_text(db, DUMP_NEW, after, sizeof after),
                        before_new);
    assert_int_equal(query_int(db, "SELECT count(*) FROM dw_mismatch_log"),
                     0);
}

/* Migration "m" at SHADOW in f->h, with row 7 written through it. */
static void shadow_with_row(test_fixture *f)
{
    create_items(f->t.db);
    f->h = open_items_ok(f->t.db, "m");
    stage_walk_ok(f->h, DW_STAGE_SHADOW);
    dw_value k = dw_int(7);
    assert_dw_ok(f->h, dw_write(f->h, &k, 1, put_old, NULL, NULL));
}

/* A handle opened before another connection redefined the migration
 * mirrors through the old mapping no more: its writes and compared reads
 * are refused, while the stored spec's comparison finds the key changed. */
static void test_redefined_by_other_connection_refuses(void **state)
{
    test_fixture *f = *state;
    shadow_with_row(f);
    dw_value k = dw_int(7);

    fixture_connect_second(f);
    char *err = NULL;
    int rc = open_items(&f->h2, f->db2, "m", "lower(name)", DW_OPEN_REDEFINE,
                        "lower case titles", &err);
    if (rc != DW_OK)
        print_error("redefine: %s\n", err ? err : "(no message)");
    dw_free(err);
    assert_int_equal(rc, DW_OK);
    int equal = -1;
    assert_dw_ok(f->h2, dw_compare(&equal, f->h2, &k, 1));
    assert_int_equal(equal, 0);
    fixture_exec(f, "DELETE FROM dw_mismatch_log");

    outdated_handle_refuses(f->t.db, f->h);
    /* Inside the caller's transaction too, where the stage is read. */
    fixture_exec(f, "BEGIN");
    outdated_handle_refuses(f->t.db, f->h);
    fixture_exec(f, "COMMIT");
}

/* The same with both handles on one connection. */
static void test_redefined_by_other_handle_refuses(void **state)
{
    test_fixture *f = *state;
    shadow_with_row(f);
    dw_value k = dw_int(7);

    char *err = NULL;
    int rc = open_items(&f->h2, f->t.db, "m", "lower(name)",
                        DW_OPEN_REDEFINE, NULL, &err);
    dw_free(err);
    assert_int_equal(rc, DW_OK);
    outdated_handle_refuses(f->t.db, f->h);
    /* The handle that redefined writes through the new mapping. */
    assert_dw_ok(f->h2, dw_write(f->h2, &k, 1, put_old, NULL, NULL));
    char buf[64];
    assert_string_equal(query_text(f->t.db,
                                   "SELECT title FROM items_v2 WHERE id=7",
                                   buf, sizeof buf),
                        "thing");
}


/* Redefined by another handle inside the caller's transaction: the stale
 * handle refuses inside it; rolled back, the spec is its own again and it
 * writes; committed, it refuses outside any transaction, with its stage
 * cached from before. */
static void test_redefined_in_caller_transaction(void **state)
{
    test_fixture *f = *state;
    shadow_with_row(f);
    dw_value k = dw_int(7);
    int stage = -1;
    char *err = NULL;
    for (int commit = 0; commit < 2; commit++) {
        assert_dw_ok(f->h, dw_write(f->h, &k, 1, put_old, NULL, NULL));
        fixture_exec(f, "BEGIN");
        assert_int_equal(open_items(&f->h2, f->t.db, "m", "lower(name)",
                                    DW_OPEN_REDEFINE, NULL, &err),
                         DW_OK);
        assert_dw(f->h, dw_write(f->h, &k, 1, put_old, NULL, NULL),
                  DW_ESPEC);
        assert_int_equal(outside_transaction(f->t.db), 0);
        dw_close(f->h2);
        f->h2 = NULL;
        fixture_exec(f, commit ? "COMMIT" : "ROLLBACK");
    }
    /* Committed: refused with nothing in between but the COMMIT. */
    assert_dw(f->h, dw_write(f->h, &k, 1, put_old, NULL, NULL), DW_ESPEC);
    assert_dw(f->h, dw_stage_get(&stage, f->h), DW_ESPEC);
    outdated_handle_refuses(f->t.db, f->h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_new_migration_starts_off, fixture_setup, fixture_teardown),
        cmocka_unit_test(test_stage_names_round_trip),
        cmocka_unit_test_setup_teardown(test_stage_forward_one_step, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_stage_forward_jump_needs_force, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_stage_backward_any_distance, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_stage_set_current_records_nothing, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_history_events, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_history_early_stop, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_stage_seen_by_other_connection, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_reopen_same_spec_keeps_stage, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_reopen_different_spec, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_misuse, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_state_tables_exist, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_stage_cache_refreshed_after_other_calls, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_stage_set_rolled_back_by_caller, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_stage_two_handles_one_transaction, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_later_dirty_verification_closes_gate, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_stage_check_moves_nothing, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_setup_sql_runs_when_leaving_off, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_redefine_makes_backfill_stale, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_open_stored_spec_beside_writer, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_open_inside_caller_transaction, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_open_redone_after_other_commit, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_redefined_by_other_connection_refuses, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_redefined_by_other_handle_refuses, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_redefined_in_caller_transaction, fixture_setup, fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
