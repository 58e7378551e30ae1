/* Tests for stored migrations: dw_sqlite_list(), dw_sqlite_open_json() and
 * dw_sqlite_open_stored() -- the spec read back from its JSON, hand-written specs
 * and their refusals, and handles whose C mapping callbacks live in
 * another program. */
#include "support.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------- */

/* Asserts a call that takes errmsg failed with `code`, left *out NULL and
 * said something containing `needle`. */
static void refused(int rc, dw_migration *out, char *err, int code,
                    const char *needle)
{
    if (rc != code || !err || !strstr(err, needle))
        print_error("returned %d (%s), expected %d; message \"%s\" should "
                    "mention \"%s\"\n",
                    rc, dw_errstr(rc), code, err ? err : "(none)", needle);
    assert_int_equal(rc, code);
    assert_null(out);
    assert_non_null(err);
    assert_non_null(strstr(err, needle));
    dw_free(err);
}

static void json_refused(sqlite3 *db, const char *name, const char *json,
                         unsigned flags, int code, const char *needle)
{
    int dummy = 0;
    dw_migration *h = (dw_migration *)(void *)&dummy;
    char *err = NULL;
    int rc = dw_sqlite_open_json(&h, db, name, json, flags, NULL, &err);
    if (rc != code)
        print_error("spec: %s\n", json ? json : "(NULL)");
    refused(rc, h, err, code, needle);
}

/* What dw_sqlite_list() reported, copied out of the callback. */
typedef struct seen {
    char name[64];
    int stage;
    char spec[1024];
    char digest[65];
    int callbacks;
    int contracted;
    double created, updated;
} seen;

typedef struct listing {
    seen m[8];
    int n;
    int stop_after; /* 0: never stop */
} listing;

static int collect(const dw_stored_migration *m, void *payload)
{
    listing *l = payload;
    assert_true(l->n < 8);
    seen *s = &l->m[l->n++];
    snprintf(s->name, sizeof s->name, "%s", m->name);
    s->stage = m->stage;
    snprintf(s->spec, sizeof s->spec, "%s", m->spec);
    snprintf(s->digest, sizeof s->digest, "%s", m->spec_digest);
    s->callbacks = m->callbacks;
    s->contracted = m->contracted;
    s->created = m->created;
    s->updated = m->updated;
    return l->stop_after && l->n >= l->stop_after;
}

static int list_count(sqlite3 *db)
{
    listing l;
    memset(&l, 0, sizeof l);
    char *err = NULL;
    int rc = dw_sqlite_list(db, collect, &l, &err);
    if (rc != DW_OK)
        print_error("dw_list: %s\n", err ? err : "(no message)");
    assert_int_equal(rc, DW_OK);
    assert_null(err);
    return l.n;
}

static int state_tables(sqlite3 *db)
{
    return (int)query_int(db, "SELECT count(*) FROM sqlite_master WHERE "
                              "type = 'table' AND name LIKE 'dw\\_%' "
                              "ESCAPE '\\'");
}

/* The stored spec of `name`, into buf. */
static const char *stored_spec(sqlite3 *db, const char *name, char *buf,
                               size_t size)
{
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT spec FROM dw_migrations WHERE name = '%s'", name);
    return query_text(db, sql, buf, size);
}

/* ---- an SQL spec over two tables, composite TEXT+INTEGER key ------------- */

static const char *const order_key[] = {"org", "n"};
static const dw_column_map orders_up[] = {{"cents", "amount * 100"},
                                          {"memo", "upper(note)"}};
static const dw_column_map orders_down[] = {{"amount", "cents / 100"},
                                            {"note", "lower(memo)"}};

static void make_orders(sqlite3 *db)
{
    exec_ok(db,
            "CREATE TABLE orgs(org TEXT PRIMARY KEY);"
            "CREATE TABLE orders(org TEXT NOT NULL, n INTEGER NOT NULL,"
            "  amount INTEGER, note TEXT, PRIMARY KEY (org, n)) WITHOUT ROWID;"
            "CREATE TABLE orders_v2(org TEXT NOT NULL, n INTEGER NOT NULL,"
            "  cents INTEGER, memo TEXT, PRIMARY KEY (org, n));"
            "INSERT INTO orders VALUES('acme', 1, 5, 'first'),"
            "  ('acme', 2, 7, 'second'), ('zeta', 1, 9, 'third');");
}

static dw_options orders_opts(int with_down)
{
    dw_options o =
        options_for("orders", TEST_SIDE_UNLISTED("orders", order_key),
                    TEST_SIDE_UNLISTED("orders_v2", order_key));
    o.up = orders_up;
    o.nup = 2;
    if (with_down) {
        o.down = orders_down;
        o.ndown = 2;
    }
    o.setup_sql = "INSERT INTO orgs(org) SELECT DISTINCT org FROM orders "
                  "WHERE true ON CONFLICT DO NOTHING";
    return o;
}

static void round_trip_orders(int with_down)
{
    test_db t;
    test_db_open(&t);
    make_orders(t.db);
    dw_options o = orders_opts(with_down);
    dw_migration *app = open_migration_ok(t.db, &o);
    dw_migration *h = open_stored_ok(t.db, "orders", 0);
    assert_string_equal(dw_name(h), "orders");
    assert_ptr_equal(dw_sqlite_db(h), t.db);
    assert_string_equal(dw_spec_digest(h), dw_spec_digest(app));

    /* The stored text read back is the canonical text: dw_sqlite_open_json()
     * of it, under the same name, opens the same spec. */
    char spec[1024];
    stored_spec(t.db, "orders", spec, sizeof spec);
    assert_non_null(strstr(spec, with_down ? "\"down\":{\"sql\":"
                                           : "\"down\":null"));
    dw_migration *j = open_json_ok(t.db, "orders", spec, 0);
    assert_string_equal(dw_spec_digest(j), dw_spec_digest(app));
    dw_close(j);

    /* Stage moves through the stored handle are the migration's. */
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, "from the tool", 0));
    int stage = -1;
    assert_dw_ok(app, dw_stage_get(&stage, app));
    assert_int_equal(stage, DW_STAGE_DUAL_WRITE);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM orgs"), 2);

    /* A backfill and a verification through it. */
    backfill_and_verify(h);
    char buf[64];
    assert_string_equal(query_text(t.db,
                                   "SELECT cents || '|' || memo FROM "
                                   "orders_v2 WHERE org = 'zeta' AND n = 1",
                                   buf, sizeof buf),
                        "900|THIRD");
    dw_verify_result last;
    assert_dw_ok(app, dw_verify_last(&last, app));
    assert_true(last.run_id > 0);
    assert_true(last.clean);

    /* The gate it opened is the migration's: the application's handle
     * goes on to LIVE (where, with a down mapping, writes mirror down). */
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_SHADOW, NULL, 0));
    assert_dw_ok(app, dw_stage_set(app, DW_STAGE_LIVE, NULL, 0));
    assert_dw_ok(h, dw_stage_get(&stage, h));
    assert_int_equal(stage, DW_STAGE_LIVE);

    /* Reads through the spec compare at LIVE: the mapping is SQL. */
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    dw_value k[2] = {dw_text("acme"), dw_int(2)};
    assert_dw_ok(h, dw_read(row, h, k, 2, NULL, NULL, NULL));
    assert_int_equal(dw_row_get(row, "cents")->i, 700);
    int equal = 0;
    assert_dw_ok(h, dw_compare(&equal, h, k, 2));
    assert_int_equal(equal, 1);
    dw_row_free(row);

    dw_close(h);
    dw_close(app);
    test_db_close(&t);
}

static void test_round_trip_two_tables(void **state)
{
    (void)state;
    round_trip_orders(1);
}

static void test_round_trip_without_down(void **state)
{
    (void)state;
    round_trip_orders(0);
}

/* One table: each side lists its own columns. */
static void test_round_trip_same_table(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, "CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT,"
                  " full_name TEXT);"
                  "INSERT INTO people VALUES(1, 'ann', NULL), (2, 'bob', NULL);");
    static const char *const k_id[] = {"id"};
    static const char *const oldc[] = {"name"};
    static const char *const newc[] = {"full_name"};
    static const dw_column_map up[] = {{"full_name", "name || '!'"}};
    dw_options o = options_for("people", TEST_SIDE("people", k_id, oldc),
                               TEST_SIDE("people", k_id, newc));
    o.up = up;
    o.nup = 1;
    dw_migration *app = open_migration_ok(t.db, &o);
    dw_migration *h = open_stored_ok(t.db, "people", 0);
    assert_string_equal(dw_spec_digest(h), dw_spec_digest(app));
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, NULL, 0));
    backfill_and_verify(h);
    char buf[64];
    assert_string_equal(query_text(t.db,
                                   "SELECT full_name FROM people WHERE id = 2",
                                   buf, sizeof buf),
                        "bob!");
    int stage = -1;
    assert_dw_ok(app, dw_stage_get(&stage, app));
    assert_int_equal(stage, DW_STAGE_DUAL_WRITE);
    dw_close(h);
    dw_close(app);
    test_db_close(&t);
}

/* ---- hand-written JSON ------------------------------------------------------ */

static void make_items(sqlite3 *db)
{
    exec_ok(db, "CREATE TABLE items_old(id INTEGER PRIMARY KEY, name TEXT,"
                " price INTEGER);"
                "CREATE TABLE items_new(id INTEGER PRIMARY KEY, title TEXT,"
                " cents INTEGER);"
                "CREATE TABLE tags(id INTEGER PRIMARY KEY);"
                "INSERT INTO items_old VALUES(1, 'widget', 5), (2, 'gadget', 7);");
}

static const char *const k_id[] = {"id"};
static const dw_column_map items_up[] = {{"title", "name"},
                                         {"cents", "price * 100"}};

static dw_options items_opts(const char *name)
{
    dw_options o = options_for(name, TEST_SIDE_UNLISTED("items_old", k_id),
                               TEST_SIDE_UNLISTED("items_new", k_id));
    o.up = items_up;
    o.nup = 2;
    return o;
}

/* Members in another order, white space, "format" and "columns" left out
 * (or null), "down" and "setup" absent: defines the migration, and what is
 * stored is the canonical text. */
static void test_json_defines(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);
    static const char hand[] =
        "{\n  \"up\": {\"sql\": {\"title\": \"name\", \"cents\": \"price * "
        "100\"}},\n"
        "  \"new\": {\"key\": [\"id\"], \"table\": \"items_new\"},\n"
        "  \"old\": {\"table\": \"items_old\", \"key\": [\"id\"], "
        "\"columns\": null}\n}\n";
    dw_migration *h = open_json_ok(t.db, "items", hand, 0);
    char spec[1024];
    assert_string_equal(
        stored_spec(t.db, "items", spec, sizeof spec),
        "{\"format\":1,\"old\":{\"table\":\"items_old\",\"key\":[\"id\"],"
        "\"columns\":[\"name\",\"price\"]},\"new\":{\"table\":\"items_new\","
        "\"key\":[\"id\"],\"columns\":[\"title\",\"cents\"]},\"up\":{\"sql\":"
        "{\"title\":\"name\",\"cents\":\"price * 100\"}},\"down\":null}");
    /* The equivalent options give the same digest: dw_sqlite_open() opens it. */
    dw_options o = items_opts("items");
    dw_migration *app = open_migration_ok(t.db, &o);
    assert_string_equal(dw_spec_digest(app), dw_spec_digest(h));
    /* The definition is in the history, with the reason given. */
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM dw_history WHERE "
                                     "event = 'define' AND reason = 'by hand'"),
                     1);
    dw_close(app);
    dw_close(h);

    /* Setup SQL and a down mapping, format given; then REDEFINE by JSON
     * (an SQL spec) replaces the stored one. */
    static const char more[] =
        "{\"format\":1,\"old\":{\"table\":\"items_old\",\"key\":[\"id\"]},"
        "\"new\":{\"table\":\"items_new\",\"key\":[\"id\"]},"
        "\"up\":{\"sql\":{\"title\":\"name\",\"cents\":\"price * 100\"}},"
        "\"down\":{\"sql\":{\"name\":\"title\",\"price\":\"cents / 100\"}},"
        "\"setup\":\"INSERT INTO tags(id) VALUES(1) ON CONFLICT DO "
        "NOTHING\"}";
    json_refused(t.db, "items", more, 0, DW_ESPEC, "different spec");
    h = open_json_ok(t.db, "items", more, DW_OPEN_REDEFINE);
    stored_spec(t.db, "items", spec, sizeof spec);
    assert_non_null(strstr(spec, ",\"setup\":\"INSERT INTO tags(id)"));
    o.down = (const dw_column_map[]){{"name", "title"}, {"price", "cents / 100"}};
    o.ndown = 2;
    o.setup_sql = "INSERT INTO tags(id) VALUES(1) ON CONFLICT DO NOTHING";
    app = open_migration_ok(t.db, &o);
    assert_string_equal(dw_spec_digest(app), dw_spec_digest(h));
    dw_close(app);
    dw_close(h);
    assert_int_equal(list_count(t.db), 1);

    /* A backslash escaped before "u0000" is no NUL: text as any other. */
    static const char backslash[] =
        "{\"old\":{\"table\":\"items_old\",\"key\":[\"id\"]},"
        "\"new\":{\"table\":\"items_new\",\"key\":[\"id\"]},"
        "\"up\":{\"sql\":{\"title\":\"name || '\\\\u0000'\","
        "\"cents\":\"price\"}}}";
    h = open_json_ok(t.db, "backslash", backslash, 0);
    assert_non_null(strstr(stored_spec(t.db, "backslash", spec, sizeof spec),
                           "\"name || '\\\\u0000'\""));
    dw_close(h);
    assert_int_equal(list_count(t.db), 2);
    test_db_close(&t);
}

/* Every malformed spec is refused with a message naming the member, and
 * nothing is stored. */
static void test_json_malformed(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);
#define OLD "\"old\":{\"table\":\"items_old\",\"key\":[\"id\"]}"
#define NEW "\"new\":{\"table\":\"items_new\",\"key\":[\"id\"]}"
#define UP "\"up\":{\"sql\":{\"title\":\"name\",\"cents\":\"price\"}}"
    static const struct {
        const char *json;
        const char *needle;
    } cases[] = {
        {"not json", "spec: not valid JSON"},
        {"{" OLD "," NEW "," UP "} trailing", "spec: not valid JSON"},
        {"{old:{}}", "spec: not valid JSON"},
        /* The parser's message says what and where. */
        {"{\n  \"old\": {},\n  \"new\" {}}",
         "spec: not valid JSON: expected ':' after a member name at line 3, "
         "column 9"},
        {"{" OLD "," NEW ",\"up\":{\"sql\":{\"title\":\"\xff\"}}}",
         "spec: not valid JSON: invalid UTF-8 in a string"},
        {"{" OLD "," NEW ",\"up\":{\"sql\":{\"title\":\"\\ud800\"}}}",
         "spec: not valid JSON: a high surrogate escape without a low one"},
        {"", "spec: not valid JSON"},
        {"[1,2]", "spec: must be a JSON object, not an array"},
        {"42", "spec: must be a JSON object"},
        {"{" OLD "," NEW "," UP ",\"colour\":1}",
         "spec: unknown member \"colour\""},
        {"{\"old\":{\"table\":\"items_old\",\"key\":[\"id\"],\"colums\":[]},"
         NEW "," UP "}",
         "spec: unknown member \"old.colums\""},
        {"{" OLD ",\"new\":{\"table\":\"items_new\",\"key\":[\"id\"],"
         "\"colums\":null}," UP "}",
         "spec: unknown member \"new.colums\""},
        {"{\"old\":{\"table\":\"items_old\",\"key\":\"id\"}," NEW "," UP "}",
         "spec: \"old.key\" must be an array of strings"},
        {"{\"old\":{\"table\":\"items_old\",\"key\":[1]}," NEW "," UP "}",
         "spec: \"old.key\" must be an array of strings"},
        {"{" OLD ",\"new\":{\"table\":\"items_new\",\"key\":[\"id\",null]},"
         UP "}",
         "spec: \"new.key\" must be an array of strings (entry 1 is null)"},
        {"{\"old\":{\"table\":\"items_old\"}," NEW "," UP "}",
         "spec: \"old.key\" is required"},
        {"{\"old\":{\"key\":[\"id\"]}," NEW "," UP "}",
         "spec: \"old.table\" is required"},
        {"{\"old\":{\"table\":7,\"key\":[\"id\"]}," NEW "," UP "}",
         "spec: \"old.table\" must be a string"},
        {"{\"old\":{\"table\":\"items_old\",\"key\":[\"id\"],\"columns\":"
         "\"name\"}," NEW "," UP "}",
         "spec: \"old.columns\" must be an array of strings or null"},
        {"{\"old\":{\"table\":\"items_old\",\"key\":[\"id\"],\"columns\":"
         "[\"name\",{}]}," NEW "," UP "}",
         "spec: \"old.columns\" must be an array of strings or null"},
        {"{\"old\":[]," NEW "," UP "}", "spec: \"old\" must be an object"},
        {"{" OLD "," UP "}", "spec: \"new\" is required"},
        {"{" OLD "," NEW "}", "spec: \"up\" is required"},
        {"{" OLD "," NEW ",\"up\":null}", "spec: \"up\" is required"},
        {"{" OLD "," NEW ",\"up\":\"name\"}", "spec: \"up\" must be"},
        {"{" OLD "," NEW ",\"up\":{\"sql\":[\"name\"]}}",
         "spec: \"up.sql\" must be an object of strings"},
        {"{" OLD "," NEW ",\"up\":{\"sql\":{\"title\":1}}}",
         "spec: \"up.sql.title\" must be a string"},
        {"{" OLD "," NEW ",\"up\":{}}",
         "spec: \"up\" must have one member, \"sql\" or \"callback\""},
        {"{" OLD "," NEW ",\"up\":{\"sql\":{},\"callback\":null}}",
         "spec: \"up\" must have one member"},
        {"{" OLD "," NEW ",\"up\":{\"sqll\":{}}}",
         "spec: unknown member \"up.sqll\""},
        {"{" OLD "," NEW ",\"up\":{\"callback\":2}}",
         "spec: \"up.callback\" must be a string"},
        {"{" OLD "," NEW "," UP ",\"down\":1}", "spec: \"down\" must be"},
        {"{" OLD "," NEW "," UP ",\"down\":{\"sql\":{\"name\":null}}}",
         "spec: \"down.sql.name\" must be a string"},
        {"{" OLD "," NEW ",\"up\":{\"callback\":\"v1\"},"
         "\"down\":{\"callback\":\"v2\"}}",
         "must name the same map_version"},
        {"{" OLD "," NEW ",\"up\":{\"callback\":\"v1\"},"
         "\"down\":{\"callback\":null}}",
         "must name the same map_version"},
        {"{\"format\":2," OLD "," NEW "," UP "}", "spec: \"format\" must be 1"},
        {"{\"format\":\"1\"," OLD "," NEW "," UP "}",
         "spec: \"format\" must be 1"},
        {"{\"format\":1.0," OLD "," NEW "," UP "}",
         "spec: \"format\" must be 1"},
        {"{" OLD "," NEW "," UP ",\"setup\":5}",
         "spec: \"setup\" must be a string"},
        {"{" OLD "," OLD "," NEW "," UP "}",
         "spec: member \"old\" appears twice"},
        {"{\"old\":{\"table\":\"items_old\",\"table\":\"x\",\"key\":[\"id\"]},"
         NEW "," UP "}",
         "spec: member \"old.table\" appears twice"},
        {"{\"old\":{\"table\":\"items\\u0000old\",\"key\":[\"id\"]}," NEW ","
         UP "}",
         "NUL character"},
    };
#undef OLD
#undef NEW
#undef UP
    /* One migration stored already, to see that none is added. */
    dw_options o = items_opts("already");
    dw_close(open_migration_ok(t.db, &o));
    assert_int_equal(list_count(t.db), 1);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_refused(t.db, "bad", cases[i].json, 0, DW_EMISUSE,
                     cases[i].needle);
        assert_int_equal(list_count(t.db), 1);
    }
    /* A NULL name or spec. */
    static const char good[] =
        "{\"old\":{\"table\":\"items_old\",\"key\":[\"id\"]},"
        "\"new\":{\"table\":\"items_new\",\"key\":[\"id\"]},"
        "\"up\":{\"sql\":{\"title\":\"name\",\"cents\":\"price\"}}}";
    json_refused(t.db, NULL, good, 0, DW_EMISUSE, "needs a name");
    json_refused(t.db, "bad", NULL, 0, DW_EMISUSE, "the spec is NULL");
    /* Well-formed JSON that dw_sqlite_open() refuses, with its own message. */
    static const char misspelled[] =
        "{\"old\":{\"table\":\"items_old\",\"key\":[\"id\"]},"
        "\"new\":{\"table\":\"items_new\",\"key\":[\"id\"]},"
        "\"up\":{\"sql\":{\"title\":\"nmae\",\"cents\":\"price\"}}}";
    json_refused(t.db, "bad", misspelled, 0, DW_ESCHEMA, "nmae");
    static const char no_table[] =
        "{\"old\":{\"table\":\"items_gone\",\"key\":[\"id\"]},"
        "\"new\":{\"table\":\"items_new\",\"key\":[\"id\"]},"
        "\"up\":{\"sql\":{\"title\":\"name\",\"cents\":\"price\"}}}";
    json_refused(t.db, "bad", no_table, 0, DW_ESCHEMA, "items_gone");
    static const char no_keys[] =
        "{\"old\":{\"table\":\"items_old\",\"key\":[]},"
        "\"new\":{\"table\":\"items_new\",\"key\":[]},"
        "\"up\":{\"sql\":{\"title\":\"name\",\"cents\":\"price\"}}}";
    json_refused(t.db, "bad", no_keys, 0, DW_EMISUSE, "no key columns");
    json_refused(t.db, "bad", good, 1u << 20, DW_EMISUSE, "unknown flags");
    assert_int_equal(list_count(t.db), 1);

    /* On a fresh database, a refused spec creates no state tables. */
    test_db f;
    test_db_open(&f);
    make_items(f.db);
    json_refused(f.db, "bad", "{\"old\":{}}", 0, DW_EMISUSE,
                 "spec: \"old.table\" is required");
    json_refused(f.db, "bad", misspelled, 0, DW_ESCHEMA, "nmae");
    assert_int_equal(state_tables(f.db), 0);
    test_db_close(&f);
    test_db_close(&t);
}

/* ---- callback mappings, without the callbacks -------------------------------- */

/* The application's callbacks: title is the name upper-cased, cents the
 * price * 100; down reverses it. */
static int up_fn(dw_row *out, const dw_row *in, void *payload)
{
    (void)payload;
    const dw_value *name = dw_row_get(in, "name");
    const dw_value *price = dw_row_get(in, "price");
    char buf[64];
    size_t n = 0;
    for (; name && name->p && n < (size_t)name->n && n < sizeof buf - 1; n++)
        buf[n] = (char)(((const char *)name->p)[n] & ~0x20);
    buf[n] = '\0';
    int rc = dw_row_set_text(out, "title", buf);
    return rc ? rc : dw_row_set_int(out, "cents", price ? price->i * 100 : 0);
}

static int down_fn(dw_row *out, const dw_row *in, void *payload)
{
    (void)payload;
    const dw_value *title = dw_row_get(in, "title");
    const dw_value *cents = dw_row_get(in, "cents");
    char buf[64];
    size_t n = 0;
    for (; title && title->p && n < (size_t)title->n && n < sizeof buf - 1;
         n++)
        buf[n] = (char)(((const char *)title->p)[n] | 0x20);
    buf[n] = '\0';
    int rc = dw_row_set_text(out, "name", buf);
    return rc ? rc : dw_row_set_int(out, "price", cents ? cents->i / 100 : 0);
}

typedef struct item {
    const char *name;
    int64_t price;
} item;

/* Upserts the item through `sql` (?1 id, ?2 name, ?3 price). */
static int write_item(sqlite3 *db, const char *sql, const dw_value *key,
                      const item *it)
{
    return callback_exec(db, sql, "iti", key[0].i, it->name, it->price);
}

static int write_old(void *db, const dw_value *key, int nkey, void *payload)
{
    (void)nkey;
    return write_item(db,
                      "INSERT INTO items_old(id, name, price) VALUES(?1, ?2, "
                      "?3) ON CONFLICT(id) DO UPDATE SET name = "
                      "excluded.name, price = excluded.price",
                      key, payload);
}

static int write_new(void *db, const dw_value *key, int nkey, void *payload)
{
    (void)nkey;
    return write_item(db,
                      "INSERT INTO items_new(id, title, cents) VALUES(?1, "
                      "upper(?2), ?3 * 100) ON CONFLICT(id) DO UPDATE SET "
                      "title = excluded.title, cents = excluded.cents",
                      key, payload);
}

static int read_old(dw_row *out, void *db, const dw_value *key, int nkey,
                    void *payload)
{
    (void)nkey;
    (void)payload;
    return read_row_by_id(out, db,
                          "SELECT upper(name) AS title, price * 100 AS cents "
                          "FROM items_old WHERE id = ?1",
                          key[0].i);
}

static int read_new(dw_row *out, void *db, const dw_value *key, int nkey,
                    void *payload)
{
    (void)nkey;
    (void)payload;
    return read_row_by_id(out, db,
                          "SELECT title, cents FROM items_new WHERE id = ?1",
                          key[0].i);
}

static dw_options callback_opts(const char *name)
{
    dw_options o = items_opts(name);
    o.up = NULL;
    o.nup = 0;
    o.up_fn = up_fn;
    o.down_fn = down_fn;
    o.map_version = "v2";
    o.setup_sql = "INSERT INTO tags DEFAULT VALUES"; /* counts its runs */
    return o;
}

/* h refused with DW_EMISUSE and exactly the message of a refusal up front
 * (a refusal part way would add where it stopped). */
static void unbound_refused(dw_migration *h, int rc)
{
    char want[300];
    snprintf(want, sizeof want,
             "migration \"%s\" maps rows with C callbacks (map_version "
             "\"v2\"), which run inside the application: open it there "
             "with dw_sqlite_open() to write, compare, backfill, verify or repair",
             dw_name(h));
    if (rc != DW_EMISUSE || strcmp(dw_errmsg(h), want) != 0)
        print_error("returned %d (%s): %s\n", rc, dw_errstr(rc),
                    dw_errmsg(h));
    assert_int_equal(rc, DW_EMISUSE);
    assert_string_equal(dw_errmsg(h), want);
}

static void test_callbacks_unbound(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);
    dw_options o = callback_opts("cb");
    dw_migration *app = open_migration_ok(t.db, &o);
    assert_dw_ok(app, dw_stage_set(app, DW_STAGE_DUAL_WRITE, NULL, 0));
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM tags"), 1);
    dw_value k1 = dw_int(1);
    item it1 = {"widget", 5};
    assert_dw_ok(app, dw_write(app, &k1, 1, write_old, NULL, &it1));

    dw_migration *h = open_stored_ok(t.db, "cb", DW_OPEN_REPAIR_QUEUE);
    assert_string_equal(dw_spec_digest(h), dw_spec_digest(app));
    int stage = -1;
    assert_dw_ok(h, dw_stage_get(&stage, h));
    assert_int_equal(stage, DW_STAGE_DUAL_WRITE);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_SHADOW, "tool", 0));
    assert_dw_ok(app, dw_stage_get(&stage, app));
    assert_int_equal(stage, DW_STAGE_SHADOW);

    /* The long operations refuse before touching anything. */
    dw_backfill_progress bp;
    unbound_refused(h, dw_backfill(&bp, h, NULL));
    assert_dw_ok(h, dw_backfill_status(&bp, h));
    assert_int_equal(bp.source, DW_SIDE_NONE);
    assert_int_equal(bp.batches, 0);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM dw_backfill"), 0);
    dw_verify_result vr;
    unbound_refused(h, dw_verify(&vr, h, NULL));
    assert_dw_ok(h, dw_verify_last(&vr, h));
    assert_int_equal(vr.run_id, 0);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM dw_verify_runs"), 0);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM tags"), 1);
    dw_repair_result rr;
    unbound_refused(h, dw_repair_keys(&rr, h, &k1, 1, 1));
    unbound_refused(h, dw_repair_divergent(&rr, h));
    unbound_refused(h, dw_repair_queue(&rr, h));

    /* Writes that sync through the missing mapping refuse, and are not
     * queued for repair (DW_OPEN_REPAIR_QUEUE) nor applied. */
    dw_value k2 = dw_int(2);
    item it2 = {"gizmo", 3};
    unbound_refused(h, dw_write(h, &k2, 1, write_old, NULL, &it2));
    unbound_refused(h, dw_mirror(h, &k1, 1));
    int64_t queued = -1;
    assert_dw_ok(h, dw_repair_count(&queued, h));
    assert_int_equal(queued, 0);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM items_old "
                                     "WHERE name = 'gizmo'"),
                     0);
    /* With both sides' write callbacks nothing is mapped: it works. */
    assert_dw_ok(h, dw_write(h, &k2, 1, write_old, write_new, &it2));
    assert_int_equal(query_int(t.db, "SELECT cents FROM items_new WHERE "
                                     "id = 2"),
                     300);

    /* Reads: comparing through the spec maps the old row up; with read
     * callbacks nothing is mapped. */
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    unbound_refused(h, dw_read(row, h, &k1, 1, NULL, NULL, NULL));
    int equal = -1;
    unbound_refused(h, dw_compare(&equal, h, &k1, 1));
    assert_dw_ok(h, dw_read(row, h, &k1, 1, read_old, read_new, NULL));
    assert_string_equal((const char *)dw_row_get(row, "title")->p, "WIDGET");
    dw_metrics m = {0};
    assert_dw_ok(h, dw_metrics_get(&m, h));
    assert_int_equal(m.comparisons, 1);
    assert_int_equal(m.matches, 1);
    /* A read that compares nothing reads the trusted side as stored. */
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, NULL, 0));
    assert_dw_ok(h, dw_read(row, h, &k1, 1, NULL, NULL, NULL));
    assert_string_equal((const char *)dw_row_get(row, "name")->p, "widget");
    dw_row_free(row);

    /* What else an operator does works: history, routing, the log. */
    dw_routing r = DW_ROUTING_INIT;
    r.canary_percent = 10;
    r.canary_stage = DW_STAGE_DUAL_WRITE;
    assert_dw_ok(h, dw_routing_set(h, &r, "tool", 0));
    dw_routing got;
    assert_dw_ok(app, dw_routing_get(&got, app));
    assert_true(got.canary_percent > 9.99 && got.canary_percent < 10.01);
    int64_t entries = -1, dropped = -1;
    assert_dw_ok(h, dw_mismatch_log_count(&entries, &dropped, h));
    assert_int_equal(entries, 0);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM dw_history WHERE "
                                     "reason = 'tool'"),
                     2);

    /* The application's own handle still does it all. */
    backfill_and_verify(app);
    dw_close(h);
    dw_close(app);
    test_db_close(&t);
}

/* dw_sqlite_open_json() never defines nor redefines a spec with callbacks. */
static void test_callbacks_not_defined(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);
    dw_options o = callback_opts("cb");
    dw_close(open_migration_ok(t.db, &o));
    char spec[1024];
    stored_spec(t.db, "cb", spec, sizeof spec);
    assert_non_null(strstr(spec, "\"up\":{\"callback\":\"v2\"},"
                                 "\"down\":{\"callback\":\"v2\"}"));
    /* The same spec opens what is stored... */
    dw_close(open_json_ok(t.db, "cb", spec, 0));
    /* ...but defines nothing under another name, */
    json_refused(t.db, "cb_other", spec, 0, DW_EMISUSE,
                 "must be defined by the application that has the callbacks");
    /* nor redefines it, with this spec or another. */
    json_refused(t.db, "cb", spec, DW_OPEN_REDEFINE, DW_EMISUSE,
                 "redefined by the application that has the callbacks");
    char other[1024];
    snprintf(other, sizeof other, "%s", spec);
    char *v = strstr(other, "\"v2\"");
    assert_non_null(v);
    v[2] = '3'; /* up names v3; down still v2 */
    json_refused(t.db, "cb", other, 0, DW_EMISUSE,
                 "must name the same map_version");
    v = strstr(other, "\"v2\"");
    v[2] = '3'; /* both v3 */
    json_refused(t.db, "cb", other, 0, DW_ESPEC, "different spec");
    json_refused(t.db, "cb", other, DW_OPEN_REDEFINE, DW_EMISUSE,
                 "redefined by the application");
    assert_int_equal(list_count(t.db), 1);
    char after[1024];
    assert_string_equal(stored_spec(t.db, "cb", after, sizeof after), spec);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM dw_history"), 1);

    /* A callback whose map_version is NULL is {"callback":null}. */
    o = callback_opts("cb_null");
    o.map_version = NULL;
    dw_close(open_migration_ok(t.db, &o));
    stored_spec(t.db, "cb_null", spec, sizeof spec);
    assert_non_null(strstr(spec, "\"up\":{\"callback\":null}"));
    dw_migration *h = open_stored_ok(t.db, "cb_null", 0);
    dw_value k = dw_int(1);
    dw_repair_result rr;
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, NULL, 0));
    int rc = dw_repair_keys(&rr, h, &k, 1, 1);
    assert_int_equal(rc, DW_EMISUSE);
    assert_non_null(strstr(dw_errmsg(h), "(map_version none)"));
    dw_close(h);

    /* On a fresh database nothing is created. */
    test_db f;
    test_db_open(&f);
    make_items(f.db);
    json_refused(f.db, "cb", spec, 0, DW_EMISUSE,
                 "must be defined by the application");
    assert_int_equal(state_tables(f.db), 0);
    test_db_close(&f);
    test_db_close(&t);
}

/* Only the mapping an operation would call matters: up in SQL, down a
 * callback. */
static void test_callback_down_only(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);
    dw_options o = items_opts("half");
    o.down_fn = down_fn;
    o.map_version = "v2";
    dw_migration *app = open_migration_ok(t.db, &o);
    dw_close(app);
    dw_migration *h = open_stored_ok(t.db, "half", 0);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, NULL, 0));
    /* Up to SHADOW the backfill and the verification map up, in SQL. */
    backfill_and_verify(h);
    dw_value k = dw_int(1);
    item it = {"thing", 4};
    assert_dw_ok(h, dw_write(h, &k, 1, write_old, NULL, &it));
    dw_repair_result rr;
    assert_dw_ok(h, dw_repair_keys(&rr, h, &k, 1, 1));
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_SHADOW, NULL, 0));
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_LIVE, NULL, 0));
    /* At LIVE they copy down: through the callback. Verification still
     * maps up. */
    dw_backfill_progress bp;
    unbound_refused(h, dw_backfill(&bp, h, NULL));
    unbound_refused(h, dw_repair_keys(&rr, h, &k, 1, 1));
    unbound_refused(h, dw_write(h, &k, 1, NULL, write_new, &it));
    dw_verify_result vr;
    assert_dw_ok(h, dw_verify(&vr, h, NULL));
    assert_true(vr.clean);
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    assert_dw_ok(h, dw_read(row, h, &k, 1, NULL, NULL, NULL));
    assert_string_equal((const char *)dw_row_get(row, "title")->p, "thing");
    dw_row_free(row);
    dw_close(h);
    test_db_close(&t);
}

/* ---- dw_list ------------------------------------------------------------------ */

static void test_list(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);

    /* No state tables: no call, and none created. */
    listing l;
    memset(&l, 0, sizeof l);
    char *err = NULL;
    assert_int_equal(dw_sqlite_list(t.db, collect, &l, &err), DW_OK);
    assert_null(err);
    assert_int_equal(l.n, 0);
    assert_int_equal(state_tables(t.db), 0);
    assert_true(sqlite3_get_autocommit(t.db));

    dw_options ob = items_opts("b_sql");
    dw_migration *b = open_migration_ok(t.db, &ob);
    dw_options oa = callback_opts("a_callbacks");
    dw_migration *a = open_migration_ok(t.db, &oa);
    /* Its own tables: the contract drops its old one. */
    exec_ok(t.db, "CREATE TABLE c_old(id INTEGER PRIMARY KEY, name TEXT,"
                  " price INTEGER);"
                  "CREATE TABLE c_new(id INTEGER PRIMARY KEY, title TEXT,"
                  " cents INTEGER);");
    dw_options oc = items_opts("c_contracted");
    oc.old_side.table = "c_old";
    oc.new_side.table = "c_new";
    dw_migration *c = open_migration_ok(t.db, &oc);
    assert_dw_ok(b, dw_stage_set(b, DW_STAGE_DUAL_WRITE, NULL, 0));
    assert_dw_ok(a, dw_stage_set(a, DW_STAGE_SHADOW, "jump", DW_STAGE_FORCE));
    assert_dw_ok(c, dw_stage_set(c, DW_STAGE_COMPLETE, "jump",
                                 DW_STAGE_FORCE));
    char backup[400];
    snprintf(backup, sizeof backup, "%s/backup.db", t.dir);
    assert_dw_ok(c, dw_contract(c, backup, "done"));

    memset(&l, 0, sizeof l);
    assert_int_equal(dw_sqlite_list(t.db, collect, &l, &err), DW_OK);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.m[0].name, "a_callbacks");
    assert_string_equal(l.m[1].name, "b_sql");
    assert_string_equal(l.m[2].name, "c_contracted");
    assert_int_equal(l.m[0].stage, DW_STAGE_SHADOW);
    assert_int_equal(l.m[1].stage, DW_STAGE_DUAL_WRITE);
    assert_int_equal(l.m[2].stage, DW_STAGE_COMPLETE);
    assert_int_equal(l.m[0].callbacks, 1);
    assert_int_equal(l.m[1].callbacks, 0);
    assert_int_equal(l.m[2].callbacks, 0);
    assert_int_equal(l.m[0].contracted, 0);
    assert_int_equal(l.m[1].contracted, 0);
    assert_int_equal(l.m[2].contracted, 1);
    assert_string_equal(l.m[0].digest, dw_spec_digest(a));
    assert_string_equal(l.m[1].digest, dw_spec_digest(b));
    assert_string_equal(l.m[2].digest, dw_spec_digest(c));
    char spec[1024];
    assert_string_equal(l.m[1].spec, stored_spec(t.db, "b_sql", spec,
                                                 sizeof spec));
    for (int i = 0; i < 3; i++) {
        assert_true(l.m[i].created > 1.6e9);
        assert_true(l.m[i].updated >= l.m[i].created);
    }
    assert_true(l.m[1].updated > l.m[1].created); /* a stage move since */

    /* A listed spec opens (the contracted one too, on the new model). */
    dw_migration *h = open_json_ok(t.db, l.m[1].name, l.m[1].spec, 0);
    assert_string_equal(dw_spec_digest(h), dw_spec_digest(b));
    dw_close(h);
    h = open_stored_ok(t.db, "c_contracted", 0);
    assert_string_equal(dw_spec_digest(h), dw_spec_digest(c));
    int stage = -1;
    assert_dw_ok(h, dw_stage_get(&stage, h));
    assert_int_equal(stage, DW_STAGE_COMPLETE);
    dw_close(h);

    /* Stopping early. */
    memset(&l, 0, sizeof l);
    l.stop_after = 2;
    assert_int_equal(dw_sqlite_list(t.db, collect, &l, NULL), DW_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.m[1].name, "b_sql");

    /* Inside the caller's transaction, which stays open. */
    exec_ok(t.db, "BEGIN");
    exec_ok(t.db, "UPDATE dw_migrations SET stage = 4 WHERE name = 'b_sql'");
    memset(&l, 0, sizeof l);
    assert_int_equal(dw_sqlite_list(t.db, collect, &l, NULL), DW_OK);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.m[1].stage, DW_STAGE_RAMPDOWN);
    assert_false(sqlite3_get_autocommit(t.db));
    exec_ok(t.db, "ROLLBACK");
    assert_true(sqlite3_get_autocommit(t.db));

    /* Its own read transaction: another connection's write lock does not
     * stop it (WAL), and it sees one snapshot. */
    sqlite3 *other = test_db_connect(&t);
    exec_ok(other, "BEGIN IMMEDIATE");
    memset(&l, 0, sizeof l);
    assert_int_equal(dw_sqlite_list(t.db, collect, &l, NULL), DW_OK);
    assert_int_equal(l.n, 3);
    exec_ok(other, "ROLLBACK");
    sqlite3_close(other);

    dw_close(a);
    dw_close(b);
    dw_close(c);
    unlink(backup);
    test_db_close(&t);
}

/* State tables of version 1 (0.1) have no column `contracted`: listed as
 * not contracted, and left as they are (dw_sqlite_open() upgrades them). */
static void test_list_version1_state(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db,
            "CREATE TABLE dw_migrations(id INTEGER PRIMARY KEY,"
            "  name TEXT NOT NULL UNIQUE, stage INTEGER NOT NULL,"
            "  spec TEXT NOT NULL, spec_digest TEXT NOT NULL,"
            "  created REAL NOT NULL, updated REAL NOT NULL,"
            "  mismatch_dropped INTEGER NOT NULL DEFAULT 0);"
            "INSERT INTO dw_migrations VALUES(1, 'old_one', 2, "
            "  '{\"format\":1,\"up\":{\"callback\":\"v1\"},"
            "\"down\":null}', 'abc', 1700000000, 1700000001, 0);");
    char before[2000], after[2000];
    query_text(t.db, "SELECT group_concat(sql, ';') FROM sqlite_master",
               before, sizeof before);
    listing l;
    memset(&l, 0, sizeof l);
    assert_int_equal(dw_sqlite_list(t.db, collect, &l, NULL), DW_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.m[0].name, "old_one");
    assert_int_equal(l.m[0].stage, DW_STAGE_SHADOW);
    assert_int_equal(l.m[0].callbacks, 1);
    assert_int_equal(l.m[0].contracted, 0);
    assert_true(l.m[0].updated > l.m[0].created);
    query_text(t.db, "SELECT group_concat(sql, ';') FROM sqlite_master",
               after, sizeof after);
    assert_string_equal(before, after);
    test_db_close(&t);
}

/* A database locked by another connection (rollback journal) is DW_EBUSY. */
static void test_list_busy(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, "PRAGMA journal_mode=DELETE");
    make_items(t.db);
    dw_options o = items_opts("m");
    dw_close(open_migration_ok(t.db, &o));
    sqlite3 *other = test_db_connect(&t);
    exec_ok(other, "BEGIN EXCLUSIVE");
    sqlite3_busy_timeout(t.db, 0);
    listing l;
    memset(&l, 0, sizeof l);
    char *err = NULL;
    int rc = dw_sqlite_list(t.db, collect, &l, &err);
    assert_int_equal(rc, DW_EBUSY);
    assert_non_null(err);
    dw_free(err);
    assert_int_equal(l.n, 0);
    assert_true(sqlite3_get_autocommit(t.db));
    dw_migration *h = (dw_migration *)(void *)&l;
    assert_int_equal(dw_sqlite_open_stored(&h, t.db, "m", 0, &err), DW_EBUSY);
    assert_null(h);
    dw_free(err);
    exec_ok(other, "ROLLBACK");
    sqlite3_close(other);
    assert_int_equal(list_count(t.db), 1);
    test_db_close(&t);
}

/* What an operator's tool does while the application writes (WAL mode,
 * another connection in a write transaction, busy timeout 0): every
 * migration stored opens from its stored spec -- SQL or callback mappings
 * -- in a read transaction, and reads; nothing waits, nothing is stored. */
static void test_open_stored_beside_writer(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);
    dw_options o = items_opts("items");
    dw_migration *app = open_migration_ok(t.db, &o);
    assert_dw_ok(app, dw_stage_set(app, DW_STAGE_DUAL_WRITE, "go", 0));
    dw_options c = callback_opts("with_callbacks");
    dw_close(open_migration_ok(t.db, &c));
    char spec[1024];
    stored_spec(t.db, "items", spec, sizeof spec);
    int64_t events = query_int(t.db, "SELECT count(*) FROM dw_history");

    sqlite3 *other = test_db_connect(&t);
    exec_ok(other, "BEGIN IMMEDIATE; INSERT INTO tags DEFAULT VALUES");
    sqlite3_busy_timeout(t.db, 0);

    dw_migration *h = open_stored_ok(t.db, "items", 0);
    assert_true(sqlite3_get_autocommit(t.db));
    assert_string_equal(dw_spec_digest(h), dw_spec_digest(app));
    int stage = -1;
    assert_dw_ok(h, dw_stage_get(&stage, h));
    assert_int_equal(stage, DW_STAGE_DUAL_WRITE);
    dw_backfill_progress p;
    assert_dw_ok(h, dw_backfill_status(&p, h));
    dw_close(h);
    h = open_stored_ok(t.db, "with_callbacks", 0);
    assert_dw_ok(h, dw_stage_get(&stage, h));
    assert_int_equal(stage, DW_STAGE_OFF);
    dw_close(h);
    h = open_json_ok(t.db, "items", spec, 0);
    assert_string_equal(dw_spec_digest(h), dw_spec_digest(app));
    dw_close(h);
    assert_int_equal(list_count(t.db), 2);
    /* Not stored: still not found, and nothing stored. */
    h = (dw_migration *)(void *)&stage;
    char *err = NULL;
    int rc = dw_sqlite_open_stored(&h, t.db, "nope", 0, &err);
    refused(rc, h, err, DW_ENOTFOUND, "no migration named \"nope\"");

    exec_ok(other, "COMMIT");
    sqlite3_close(other);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM dw_history"),
                     events);
    assert_int_equal(list_count(t.db), 2);
    dw_close(app);
    test_db_close(&t);
}

/* ---- dw_open_stored racing another connection ---------------------------- */

/* Between dw_sqlite_open_stored()'s read of the spec and the transaction that
 * opens it, another connection redefines or removes the migration: run
 * from a trace callback at that transaction's BEGIN. */
typedef struct race {
    sqlite3 *other;
    int redefine; /* else remove the migration's row */
    int fired;
} race;

static const dw_column_map items_up_upper[] = {{"title", "upper(name)"},
                                               {"cents", "price * 100"}};

static int race_at_begin(unsigned type, void *ctx, void *p, void *x)
{
    race *r = ctx;
    (void)type;
    (void)x;
    const char *sql = sqlite3_sql((sqlite3_stmt *)p);
    if (r->fired || !sql || strncmp(sql, "BEGIN", 5) != 0)
        return 0;
    r->fired = 1;
    if (r->redefine) {
        dw_options o = items_opts("m");
        o.up = items_up_upper;
        o.flags = DW_OPEN_REDEFINE;
        dw_close(open_migration_ok(r->other, &o));
    } else {
        exec_ok(r->other, "DELETE FROM dw_migrations WHERE name = 'm'");
    }
    return 0;
}

static void test_open_stored_races(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);
    dw_options o = items_opts("m");
    dw_close(open_migration_ok(t.db, &o));
    race r = {test_db_connect(&t), 1, 0};
    /* Redefined in between: the new spec is read again and opened. */
    sqlite3_trace_v2(t.db, SQLITE_TRACE_STMT, race_at_begin, &r);
    dw_migration *h = open_stored_ok(t.db, "m", 0);
    assert_true(r.fired);
    char buf[80];
    assert_string_equal(dw_spec_digest(h),
                        query_text(t.db, "SELECT spec_digest FROM "
                                         "dw_migrations WHERE name = 'm'",
                                   buf, sizeof buf));
    dw_close(h);
    /* Removed in between: not found, and not defined again. */
    r.redefine = 0;
    r.fired = 0;
    char *err = NULL;
    h = NULL;
    assert_int_equal(dw_sqlite_open_stored(&h, t.db, "m", 0, &err), DW_ENOTFOUND);
    assert_true(r.fired);
    assert_null(h);
    assert_non_null(err);
    assert_non_null(strstr(err, "no migration named \"m\""));
    dw_free(err);
    sqlite3_trace_v2(t.db, 0, NULL, NULL);
    assert_int_equal(list_count(t.db), 0);
    sqlite3_close(r.other);
    test_db_close(&t);
}

/* What a dw_sqlite_list() callback writes commits with the listing; when that
 * COMMIT fails, the write is rolled back and dw_sqlite_list() says so. */
typedef struct list_writer {
    dw_migration *h;
    int rc;
} list_writer;

static int move_stage_in_listing(const dw_stored_migration *m, void *payload)
{
    list_writer *w = payload;
    (void)m;
    w->rc = dw_stage_set(w->h, DW_STAGE_DUAL_WRITE, "from the listing", 0);
    return 0;
}

static void test_list_callback_write_lost_is_reported(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, "PRAGMA journal_mode=DELETE");
    make_items(t.db);
    dw_options o = items_opts("m");
    list_writer w = {open_migration_ok(t.db, &o), -1};
    /* A reader elsewhere holds its lock: the listing's COMMIT is busy. */
    sqlite3 *other = test_db_connect(&t);
    exec_ok(other, "BEGIN");
    assert_int_equal(query_int(other, "SELECT count(*) FROM dw_migrations"),
                     1);
    sqlite3_busy_timeout(t.db, 0);
    char *err = NULL;
    assert_int_equal(dw_sqlite_list(t.db, move_stage_in_listing, &w, &err),
                     DW_EBUSY);
    assert_int_equal(w.rc, DW_OK);
    assert_non_null(err);
    assert_non_null(strstr(err, "rolled back"));
    dw_free(err);
    assert_true(sqlite3_get_autocommit(t.db));
    exec_ok(other, "COMMIT");
    int stage = -1;
    assert_dw_ok(w.h, dw_stage_get(&stage, w.h));
    assert_int_equal(stage, DW_STAGE_OFF);
    /* Unlocked, the same write commits with the listing. */
    assert_int_equal(dw_sqlite_list(t.db, move_stage_in_listing, &w, &err), DW_OK);
    assert_dw_ok(w.h, dw_stage_get(&stage, w.h));
    assert_int_equal(stage, DW_STAGE_DUAL_WRITE);
    dw_close(w.h);
    sqlite3_close(other);
    test_db_close(&t);
}

/* A schema that no longer reads as the stored spec (a column respelled:
 * the spec names columns as the schema spells them) is DW_ESCHEMA, not a
 * redefinition by others. */
static void test_open_stored_schema_respelled(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);
    dw_options o = items_opts("m");
    dw_close(open_migration_ok(t.db, &o));
    exec_ok(t.db, "ALTER TABLE items_old RENAME COLUMN name TO tmp;"
                  "ALTER TABLE items_old RENAME COLUMN tmp TO NAME;");
    dw_migration *h = NULL;
    char *err = NULL;
    assert_int_equal(dw_sqlite_open_stored(&h, t.db, "m", 0, &err), DW_ESCHEMA);
    assert_null(h);
    assert_non_null(err);
    assert_non_null(strstr(err, "no longer reads as its stored spec"));
    dw_free(err);
    test_db_close(&t);
}

/* ---- dw_open_stored misuse ------------------------------------------------------- */

static int never(const dw_stored_migration *m, void *payload)
{
    (void)m;
    (void)payload;
    return 0;
}

static void test_open_stored_misuse(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    make_items(t.db);
    int dummy = 0;
    dw_migration *h = (dw_migration *)(void *)&dummy;
    char *err = NULL;

    /* No state tables: not found, and nothing created. */
    int rc = dw_sqlite_open_stored(&h, t.db, "items", 0, &err);
    refused(rc, h, err, DW_ENOTFOUND,
            "no migration named \"items\" in this database");
    assert_int_equal(state_tables(t.db), 0);

    dw_options o = items_opts("items");
    dw_close(open_migration_ok(t.db, &o));
    h = (dw_migration *)(void *)&dummy;
    rc = dw_sqlite_open_stored(&h, t.db, "itemz", 0, &err);
    refused(rc, h, err, DW_ENOTFOUND,
            "no migration named \"itemz\" in this database");
    h = (dw_migration *)(void *)&dummy;
    rc = dw_sqlite_open_stored(&h, t.db, "ITEMS", 0, &err); /* matched exactly */
    refused(rc, h, err, DW_ENOTFOUND, "no migration named \"ITEMS\"");
    h = (dw_migration *)(void *)&dummy;
    rc = dw_sqlite_open_stored(&h, t.db, "items", DW_OPEN_REDEFINE, &err);
    refused(rc, h, err, DW_EMISUSE, "DW_OPEN_REDEFINE");
    h = (dw_migration *)(void *)&dummy;
    rc = dw_sqlite_open_stored(&h, t.db, "items", 1u << 20, &err);
    refused(rc, h, err, DW_EMISUSE, "unknown flags");
    h = (dw_migration *)(void *)&dummy;
    rc = dw_sqlite_open_stored(&h, NULL, "items", 0, &err);
    refused(rc, h, err, DW_EMISUSE, "the connection is NULL");
    h = (dw_migration *)(void *)&dummy;
    rc = dw_sqlite_open_stored(&h, t.db, NULL, 0, &err);
    refused(rc, h, err, DW_EMISUSE, "the name is NULL");
    assert_int_equal(dw_sqlite_open_stored(NULL, t.db, "items", 0, &err),
                     DW_EMISUSE);
    assert_non_null(err);
    dw_free(err);
    /* Without errmsg. */
    assert_int_equal(dw_sqlite_open_stored(NULL, t.db, "items", 0, NULL), DW_EMISUSE);
    assert_int_equal(dw_sqlite_open_stored(&h, t.db, "nope", 0, NULL), DW_ENOTFOUND);
    assert_null(h);

    /* Flags other than REDEFINE are the handle's. */
    h = open_stored_ok(t.db, "items", DW_OPEN_TEST_MODE | DW_OPEN_NO_LOG_TABLE);
    dw_close(h);

    /* The schema changed since: the stored spec no longer fits. */
    exec_ok(t.db, "ALTER TABLE items_new RENAME COLUMN cents TO pennies");
    h = (dw_migration *)(void *)&dummy;
    rc = dw_sqlite_open_stored(&h, t.db, "items", 0, &err);
    refused(rc, h, err, DW_ESCHEMA, "cents");

    /* dw_list and dw_open_json NULL arguments. */
    assert_int_equal(dw_sqlite_list(NULL, never, NULL, &err), DW_EMISUSE);
    assert_non_null(strstr(err, "the connection is NULL"));
    dw_free(err);
    assert_int_equal(dw_sqlite_list(t.db, NULL, NULL, &err), DW_EMISUSE);
    assert_non_null(strstr(err, "the callback is NULL"));
    dw_free(err);
    assert_int_equal(dw_sqlite_list(NULL, NULL, NULL, NULL), DW_EMISUSE);
    assert_int_equal(dw_sqlite_open_json(NULL, t.db, "x", "{}", 0, NULL, &err),
                     DW_EMISUSE);
    assert_non_null(err);
    dw_free(err);
    h = (dw_migration *)(void *)&dummy;
    rc = dw_sqlite_open_json(&h, NULL, "x", "{}", 0, NULL, &err);
    refused(rc, h, err, DW_EMISUSE, "the connection is NULL");
    test_db_close(&t);
}

/* ---- dw_sqlite_remove() ------------------------------------------------------------ */

static const char items_spec[] =
    "{\"old\": {\"table\": \"items\", \"key\": [\"id\"], "
    "\"columns\": [\"name\"]}, \"new\": {\"table\": \"items_v2\", "
    "\"key\": [\"id\"]}, \"up\": {\"sql\": {\"title\": \"upper(name)\"}}, "
    "\"down\": {\"sql\": {\"name\": \"lower(title)\"}}}";

static void remove_refused(sqlite3 *db, const char *name, unsigned flags,
                           int code, const char *needle)
{
    char *err = NULL;
    int rc = dw_sqlite_remove(db, name, flags, "test", &err);
    refused(rc, NULL, err, code, needle);
}

static void remove_ok(sqlite3 *db, const char *name, const char *reason)
{
    char *err = NULL;
    int rc = dw_sqlite_remove(db, name, 0, reason, &err);
    if (rc != DW_OK)
        print_error("dw_sqlite_remove(%s): %d %s\n", name, rc, err ? err : "");
    assert_int_equal(rc, DW_OK);
    assert_null(err);
}

/* Rows of every state table that belong to migration id. */
static int64_t state_rows(sqlite3 *db, int64_t id)
{
    char sql[1024];
    snprintf(sql, sizeof sql,
             "SELECT (SELECT count(*) FROM dw_migrations WHERE id = %1$lld)"
             " + (SELECT count(*) FROM dw_history WHERE migration_id = %1$lld)"
             " + (SELECT count(*) FROM dw_backfill WHERE migration_id = %1$lld)"
             " + (SELECT count(*) FROM dw_verify_runs WHERE migration_id = "
             "%1$lld) + (SELECT count(*) FROM dw_verify_keys WHERE run_id IN "
             "(SELECT id FROM dw_verify_runs WHERE migration_id = %1$lld))"
             " + (SELECT count(*) FROM dw_overrides WHERE migration_id = "
             "%1$lld) + (SELECT count(*) FROM dw_mismatch_log WHERE "
             "migration_id = %1$lld) + (SELECT count(*) FROM dw_repair_queue "
             "WHERE migration_id = %1$lld)",
             (long long)id);
    return query_int(db, sql);
}

static int64_t items_id(sqlite3 *db)
{
    return query_int(db, "SELECT id FROM dw_migrations WHERE name = 'items'");
}

typedef struct first_history {
    int n;
    char event[32];
    char detail[512];
} first_history;

static int keep_first(const dw_history_entry *e, void *payload)
{
    first_history *f = payload;
    if (f->n++ == 0) {
        snprintf(f->event, sizeof f->event, "%s", e->event);
        snprintf(f->detail, sizeof f->detail, "%s",
                 e->detail ? e->detail : "");
    }
    return 0;
}

/* A migration is removed only where no data is half-moved: each refusal
 * says why and changes nothing; a removal takes every state row, an open
 * handle notices, and the name defined again starts clean, its history
 * noting what was removed. */
static void test_remove(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);"
                  "CREATE TABLE items_v2(id INTEGER PRIMARY KEY, title TEXT);"
                  "INSERT INTO items VALUES(1, 'lamp'), (2, 'desk'), "
                  "(3, 'rug');");
    /* Nothing stored yet, no state tables: not found, nothing created. */
    remove_refused(t.db, "items", 0, DW_ENOTFOUND, "\"items\"");
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM sqlite_schema "
                                     "WHERE name LIKE 'dw_%'"),
                     0);
    dw_migration *h = open_json_ok(t.db, "items", items_spec, 0);
    remove_refused(t.db, "itemz", 0, DW_ENOTFOUND, "\"itemz\"");
    remove_refused(NULL, "items", 0, DW_EMISUSE, "connection");
    remove_refused(t.db, NULL, 0, DW_EMISUSE, "name");
    remove_refused(t.db, "items", 1, DW_EMISUSE, "flags");

    /* Work at DUAL_WRITE and SHADOW: state in every table. */
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, "go", 0));
    backfill_and_verify(h);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_SHADOW, "read", 0));
    exec_ok(t.db, "UPDATE items_v2 SET title = 'X' WHERE id = 2");
    dw_verify_result v;
    assert_dw_ok(h, dw_verify(&v, h, NULL));
    assert_false(v.clean);
    int equal = 1;
    dw_value key = dw_int(2);
    assert_dw_ok(h, dw_compare(&equal, h, &key, 1));
    int64_t id = items_id(t.db);
    char sql[200];
    snprintf(sql, sizeof sql,
             "INSERT INTO dw_repair_queue VALUES(%lld, '[3]', 2, 'x', 1, 0, "
             "0)",
             (long long)id);
    exec_ok(t.db, sql);
    int64_t rows = state_rows(t.db, id);
    remove_refused(t.db, "items", 0, DW_EMISUSE, "at SHADOW");
    remove_refused(t.db, "items", 0, DW_EMISUSE, "half-moved");

    /* Back at OFF, keys routed elsewhere still hold it. */
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_OFF, "back", 0));
    dw_value one = dw_int(1);
    assert_dw_ok(h, dw_override_set(h, &one, 1, 1, DW_STAGE_DUAL_WRITE, "k"));
    remove_refused(t.db, "items", 0, DW_EMISUSE, "1 keys have overrides");
    assert_dw_ok(h, dw_override_clear(NULL, h, &one, 1, 1, "k"));
    dw_routing r = DW_ROUTING_INIT;
    r.canary_percent = 50;
    r.canary_stage = DW_STAGE_DUAL_WRITE;
    assert_dw_ok(h, dw_routing_set(h, &r, "canary", 0));
    remove_refused(t.db, "items", 0, DW_EMISUSE, "canary runs keys at "
                                                 "DUAL_WRITE");
    assert_dw_ok(h, dw_routing_set(h, NULL, "none", 0));
    /* Refusals changed nothing (the routing calls added history). */
    assert_true(state_rows(t.db, id) > rows);
    rows = state_rows(t.db, id);

    /* Inside the caller's transaction, it goes with it. */
    exec_ok(t.db, "BEGIN");
    remove_ok(t.db, "items", "not yet");
    exec_ok(t.db, "ROLLBACK");
    assert_int_equal(state_rows(t.db, id), rows);

    remove_ok(t.db, "items", "defined by mistake");
    assert_int_equal(state_rows(t.db, id), 0);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM dw_meta WHERE "
                                     "key = 'removed:items'"),
                     1);
    /* The application's tables are left alone. */
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM items_v2"), 3);
    /* The handle open on it finds it gone. */
    int stage = -1;
    assert_int_equal(dw_stage_get(&stage, h), DW_ERROR);
    assert_non_null(strstr(dw_errmsg(h), "no longer stored"));
    dw_close(h);
    remove_refused(t.db, "items", 0, DW_ENOTFOUND, "\"items\"");

    /* Defined again (another spec, no DW_OPEN_REDEFINE needed): clean. */
    h = open_json_ok(t.db, "items",
                     "{\"old\": {\"table\": \"items\", \"key\": [\"id\"], "
                     "\"columns\": [\"name\"]}, \"new\": {\"table\": "
                     "\"items_v2\", \"key\": [\"id\"]}, \"up\": {\"sql\": "
                     "{\"title\": \"name\"}}}",
                     0);
    assert_dw_ok(h, dw_stage_get(&stage, h));
    assert_int_equal(stage, DW_STAGE_OFF);
    dw_backfill_progress bp;
    assert_dw_ok(h, dw_backfill_status(&bp, h));
    assert_int_equal(bp.source, DW_SIDE_NONE);
    assert_dw_ok(h, dw_verify_last(&v, h));
    assert_int_equal(v.run_id, 0);
    int64_t entries = -1, queued = -1;
    assert_dw_ok(h, dw_mismatch_log_count(&entries, NULL, h));
    assert_int_equal(entries, 0);
    assert_dw_ok(h, dw_repair_count(&queued, h));
    assert_int_equal(queued, 0);
    first_history fh;
    memset(&fh, 0, sizeof fh);
    assert_dw_ok(h, dw_history(h, keep_first, &fh));
    assert_int_equal(fh.n, 1);
    assert_string_equal(fh.event, "define");
    assert_non_null(strstr(fh.detail, "defined again"));
    assert_non_null(strstr(fh.detail, " at OFF (spec "));
    assert_non_null(strstr(fh.detail, ": defined by mistake"));
    /* The note went into that history. */
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM dw_meta WHERE "
                                     "key = 'removed:items'"),
                     0);

    /* COMPLETE before the contract: refused; contracted: removed. */
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, "go", 0));
    backfill_and_verify(h);
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_SHADOW, "go", 0));
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_LIVE, "go", 0));
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_RAMPDOWN, "go", 0));
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_COMPLETE, "go", 0));
    remove_refused(t.db, "items", 0, DW_EMISUSE, "contract it first");
    char backup[400];
    snprintf(backup, sizeof backup, "%s/backup.db", t.dir);
    assert_dw_ok(h, dw_contract(h, backup, "done"));
    dw_close(h);
    remove_ok(t.db, "items", NULL);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM dw_migrations"),
                     0);
    unlink(backup);
    test_db_close(&t);
}

/* A handle open on a removed migration finds it gone even after another
 * migration is defined: the removed id is not given again, so the handle
 * neither takes the other's row for a redefinition of its own nor reads or
 * clears the other's state. */
static void test_remove_id_not_reused(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);"
                  "CREATE TABLE items_v2(id INTEGER PRIMARY KEY, title TEXT);");
    dw_migration *h = open_json_ok(t.db, "items", items_spec, 0);
    int64_t removed = items_id(t.db);
    remove_ok(t.db, "items", "by mistake");
    dw_close(open_json_ok(t.db, "other", items_spec, 0));
    int64_t other = query_int(t.db, "SELECT id FROM dw_migrations WHERE "
                                    "name = 'other'");
    assert_true(other > removed);
    /* The other migration's log holds an entry (as a comparison logs). */
    char sql[300];
    snprintf(sql, sizeof sql,
             "INSERT INTO dw_mismatch_log VALUES(%lld, '[1]', 'd', 3, 'x', "
             "1, 0, 0); UPDATE dw_migrations SET mismatch_entries = 1 "
             "WHERE id = %lld",
             (long long)other, (long long)other);
    exec_ok(t.db, sql);

    int stage = -1;
    assert_int_equal(dw_stage_get(&stage, h), DW_ERROR);
    assert_non_null(strstr(dw_errmsg(h), "no longer stored"));
    first_history fh;
    memset(&fh, 0, sizeof fh);
    assert_dw_ok(h, dw_history(h, keep_first, &fh));
    assert_int_equal(fh.n, 0);
    assert_dw_ok(h, dw_mismatch_log_clear(h));
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM dw_mismatch_log"),
                     1);
    dw_close(h);
    /* The name defined again gets a new id too, and starts clean. */
    h = open_json_ok(t.db, "items", items_spec, 0);
    assert_true(items_id(t.db) > other);
    memset(&fh, 0, sizeof fh);
    assert_dw_ok(h, dw_history(h, keep_first, &fh));
    assert_int_equal(fh.n, 1);
    assert_non_null(strstr(fh.detail, ": by mistake"));
    dw_close(h);
    test_db_close(&t);
}

/* A database whose state tables an older library wrote: dw_sqlite_remove() says
 * how to upgrade them, and removes nothing. */
static void test_remove_old_state(void **state)
{
    (void)state;
    test_db t;
    test_db_open(&t);
    exec_ok(t.db, "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);"
                  "CREATE TABLE items_v2(id INTEGER PRIMARY KEY, title TEXT);");
    dw_close(open_json_ok(t.db, "items", items_spec, 0));
    exec_ok(t.db, "ALTER TABLE dw_backfill DROP COLUMN runner_pid;"
                  "ALTER TABLE dw_backfill DROP COLUMN runner_host;"
                  "ALTER TABLE dw_migrations DROP COLUMN mismatch_entries;"
                  "UPDATE dw_meta SET value = 3 WHERE key = 'schema_version'");
    remove_refused(t.db, "items", 0, DW_EMISUSE, "dw_sqlite_open_stored()");
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM dw_migrations"),
                     1);
    dw_close(open_stored_ok(t.db, "items", 0));
    remove_ok(t.db, "items", NULL);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM dw_migrations"),
                     0);
    test_db_close(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_two_tables),
        cmocka_unit_test(test_round_trip_without_down),
        cmocka_unit_test(test_round_trip_same_table),
        cmocka_unit_test(test_json_defines),
        cmocka_unit_test(test_json_malformed),
        cmocka_unit_test(test_callbacks_unbound),
        cmocka_unit_test(test_callbacks_not_defined),
        cmocka_unit_test(test_callback_down_only),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_list_version1_state),
        cmocka_unit_test(test_list_busy),
        cmocka_unit_test(test_open_stored_beside_writer),
        cmocka_unit_test(test_open_stored_misuse),
        cmocka_unit_test(test_open_stored_races),
        cmocka_unit_test(test_list_callback_write_lost_is_reported),
        cmocka_unit_test(test_open_stored_schema_respelled),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_remove_old_state),
        cmocka_unit_test(test_remove_id_not_reused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
