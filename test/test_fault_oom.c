/* Out of memory: every public operation of the fault catalogue (fault.c),
 * with the Nth allocation failing -- once, then from the Nth on -- for
 * N = 1, 2, ... until the operation runs without meeting a failure. After
 * each point the walk checks the result code, that nothing leaked, that the
 * database is as before or as after the operation, and that the same handle
 * then does the operation without faults (see "the walk" in fault.h).
 *
 * DW_FAULT_STRIDE=k walks every kth N only (for slow runs under valgrind);
 * DW_FAULT_ONLY=text walks only the operations whose name contains it. */
#include "fault.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One walk: an operation, failing once or from the Nth on. A test each, so
 * that the workers share the long walks out evenly. */
typedef struct slot {
    const fault_op *op;
    int persistent;
    char name[128];
    int points;
    fault_stats stats;
    int done;
} slot;

static slot slots[2 * 64];

/* ---- walked here only: reading what the database stores, and a spec
 * written by hand ---------------------------------------------------------- */

/* dw_sqlite_open_stored() of the world's stored migration: reads the spec, takes
 * the JSON apart through SQLite, then dw_sqlite_open(). It stores nothing. */
static int run_open_stored(fault_ctx *c)
{
    return dw_sqlite_open_stored(&c->h, c->db, WORLD_NAME, c->op->open_flags,
                          &c->open_err);
}

static int count_listed(const dw_stored_migration *m, void *payload)
{
    int *n = payload;
    if (strcmp(m->name, WORLD_NAME) == 0 && m->stage == DW_STAGE_OFF &&
        strlen(m->spec_digest) == 64 && !m->callbacks && !m->contracted)
        ++*n;
    return 0;
}

/* dw_sqlite_list() in its own read transaction; its message goes where dw_open's
 * does (no handle). */
static int run_list(fault_ctx *c)
{
    int n = 0;
    int rc = dw_sqlite_list(c->db, count_listed, &n, &c->open_err);
    if (rc == DW_OK)
        assert_int_equal(n, 1);
    return rc;
}

/* dw_sqlite_open_json() of a spec written by hand, defined beside the
 * world's (the state tables' creation is walked by dw_open already): the
 * core's JSON parser (escapes in strings and a reason among them), the
 * validation, then the spec stored. */
#define HAND_JSON                                                              \
    "{\"old\": {\"table\": \"it\\u0065ms\", \"key\": [\"id\"]},\n"              \
    " \"new\": {\"table\": \"items_v2\", \"key\": [\"\\u0069d\"]},\n"          \
    " \"up\": {\"sql\": {\"label\": \"upper(name)\\t\", \"qty\": \"\\u0071ty\"}},\n"  \
    " \"down\": {\"sql\": {\"name\": \"lower(label)\", \"qty\": \"qty\"}}}"

static int run_open_json(fault_ctx *c)
{
    return dw_sqlite_open_json(&c->h, c->db, "by_hand", HAND_JSON,
                               c->op->open_flags, "written \"by hand\"\t",
                               &c->open_err);
}

/* Hand-written specs with a mistake: refused under memory faults as
 * without them (or DW_ENOMEM), nothing stored. A trailing comma is the
 * parser's error; a column the old table lacks, the validation's. */
static int run_open_json_malformed(fault_ctx *c)
{
    return dw_sqlite_open_json(
        &c->h, c->db, "by_hand",
        "{\"old\": {\"table\": \"items\", \"key\": [\"id\"]},}",
        c->op->open_flags, NULL, &c->open_err);
}

static int run_open_json_unknown_column(fault_ctx *c)
{
    return dw_sqlite_open_json(
        &c->h, c->db, "by_hand",
        "{\"old\": {\"table\": \"items\", \"key\": [\"id\"],"
        "          \"columns\": [\"nme\", \"qty\"]},"
        " \"new\": {\"table\": \"items_v2\", \"key\": [\"id\"]},"
        " \"up\": {\"sql\": {\"label\": \"upper(nme)\", \"qty\": \"qty\"}}}",
        c->op->open_flags, NULL, &c->open_err);
}

/* The world's up mapping as a C callback: label = upper(name). */
static int world_up_fn(dw_row *out, const dw_row *in, void *payload)
{
    (void)payload;
    const dw_value *name = dw_row_get(in, "name");
    const dw_value *qty = dw_row_get(in, "qty");
    if (!name || !qty || name->type != DW_TYPE_TEXT || name->n >= 64)
        return 77;
    char label[64];
    for (int i = 0; i < name->n; i++)
        label[i] = (char)toupper((unsigned char)((const char *)name->p)[i]);
    label[name->n] = '\0';
    int rc = dw_row_set_text(out, "label", label);
    return rc != DW_OK ? rc : dw_row_set(out, "qty", qty);
}

static void callback_options(dw_options *o)
{
    world_options(o);
    o->up = NULL;
    o->nup = 0;
    o->up_fn = world_up_fn;
    o->map_version = "world_up_fn v1";
}

/* The world redefined with the callback, at DUAL_WRITE, its new side
 * holding a row equal already (2), a stale one (3) and an orphan (100). */
static void setup_callback_dual(fault_ctx *c)
{
    dw_options o;
    callback_options(&o);
    o.flags = DW_OPEN_REDEFINE;
    dw_close(c->h); /* the world's handle, with the SQL mapping */
    c->h = NULL;
    dw_migration *h = NULL;
    char *err = NULL;
    int rc = dw_sqlite_open(&h, c->db, &o, &err);
    if (rc != DW_OK)
        fail_msg("open with the callback: %s", err ? err : "?");
    assert_dw_ok(h, dw_stage_set(h, DW_STAGE_DUAL_WRITE, NULL, 0));
    dw_close(h);
    exec_ok(c->db, "INSERT INTO items_v2 VALUES(2, 'ITEM2', 2),"
                   " (3, 'stale', 3), (100, 'ORPHAN', 1)");
}

/* A backfill through the C mapping in one batch: the source rows read by
 * one statement, each mapped into reused rows and upserted. The run opens
 * its handle (the world's is the SQL mapping's); the repeat after a
 * failed backfill uses the one it opened. */
static int run_backfill_callback(fault_ctx *c)
{
    dw_options o;
    callback_options(&o);
    int rc = c->h ? DW_OK : dw_sqlite_open(&c->h, c->db, &o, &c->open_err);
    if (rc != DW_OK)
        return rc;
    dw_backfill_options b = DW_BACKFILL_OPTIONS_INIT;
    b.batch_rows = 100;
    b.batch_ms = -1;
    return dw_backfill(NULL, c->h, &b);
}

static const fault_op stored_ops[] = {
    {.name = "dw_backfill (C mapping, one batch)",
     .flags = FAULT_OP_OPENS | FAULT_OP_ATOMIC,
     .setup = setup_callback_dual, .run = run_backfill_callback,
     .authoritative = DW_SIDE_OLD},
    {.name = "dw_open_json (by hand, escapes)",
     .flags = FAULT_OP_OPENS | FAULT_OP_ATOMIC,
     .run = run_open_json, .authoritative = DW_SIDE_OLD},
    {.name = "dw_open_json (malformed)",
     .flags = FAULT_OP_OPENS | FAULT_OP_ATOMIC,
     .run = run_open_json_malformed, .ok_code = DW_EMISUSE,
     .authoritative = DW_SIDE_OLD},
    {.name = "dw_open_json (unknown column)",
     .flags = FAULT_OP_OPENS | FAULT_OP_ATOMIC,
     .run = run_open_json_unknown_column, .ok_code = DW_ESCHEMA,
     .authoritative = DW_SIDE_OLD},
    {.name = "dw_open_stored", .flags = FAULT_OP_OPENS | FAULT_OP_ATOMIC,
     .run = run_open_stored, .authoritative = DW_SIDE_OLD},
    {.name = "dw_list", .flags = FAULT_OP_OPENS | FAULT_OP_ATOMIC,
     .run = run_list, .authoritative = DW_SIDE_OLD},
};

#define NSTORED_OPS ((int)(sizeof stored_ops / sizeof *stored_ops))

static const fault_op *op_at(int i)
{
    return i < fault_nops ? &fault_ops[i] : &stored_ops[i - fault_nops];
}

static void test_oom(void **state)
{
    slot *s = *state;
    fault_world *w = fault_world_build(s->op, 1);
    fault_plan p = {0, 0, 0, s->persistent, fault_stride()};
    s->points = fault_walk(w, &p);
    fault_world_stats(w, &s->stats);
    s->done = 1;
    fault_world_free(w);
}

int main(void)
{
    /* Before any connection: the allocator is installed process-wide. */
    fault_mem_install();
    fault_vfs_real_sync(0);
    struct CMUnitTest tests[2 * 64];
    int nops_all = fault_nops + NSTORED_OPS;
    assert_true(nops_all <= 64);
    const char *only = getenv("DW_FAULT_ONLY");
    size_t n = 0;
    for (int i = 0; i < 2 * nops_all; i++) {
        slot *s = &slots[i];
        s->op = op_at(i / 2);
        s->persistent = i % 2;
        snprintf(s->name, sizeof s->name, "%s [%s]", s->op->name,
                 s->persistent ? "persistent" : "once");
        if (only && !strstr(s->op->name, only))
            continue;
        struct CMUnitTest t = {s->name, test_oom, NULL, NULL, s};
        tests[n++] = t;
    }
    int failed = fault_run_tests("fault_oom", tests, n, slots, sizeof *slots);

    long total = 0;
    int nops = 0;
    for (int i = 0; i < nops_all; i++) {
        const slot *once = &slots[2 * i], *pers = &slots[2 * i + 1];
        if (only && !strstr(once->op->name, only))
            continue;
        nops++;
        if (!once->done || !pers->done) {
            printf("oom: %s not walked to the end (failed)\n", once->op->name);
            continue;
        }
        /* How the points came out: the call succeeded anyway, failed with
         * nothing applied, failed after applying all, or (operations of
         * several transactions) failed part way. */
        const fault_stats *a = &once->stats, *b = &pers->stats;
        printf("oom: %s %d points (%d once, %d persistent) [ok %d, undone "
               "%d, applied %d, part %d",
               once->op->name, once->points + pers->points, once->points,
               pers->points, a->ok + b->ok, a->failed_before + b->failed_before,
               a->failed_after + b->failed_after,
               a->failed_other + b->failed_other);
        if (a->left_open + b->left_open)
            printf("; %d left the transaction open, as said, until the next "
                   "call",
                   a->left_open + b->left_open);
        if (a->skipped + b->skipped)
            printf("; %d hit a known defect", a->skipped + b->skipped);
        printf("]\n");
        total += once->points + pers->points;
    }
    printf("oom: total %ld points over %d operations%s\n", total, nops,
           fault_stride() > 1 ? " (thinned by DW_FAULT_STRIDE)" : "");
    return failed;
}
