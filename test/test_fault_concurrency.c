/* Fault harness, concurrency: several processes on one WAL database file.
 *
 * Each round makes a fresh file with a few thousand rows in the old model
 * (items: id, name, qty; the new model items_v2: id, label = upper(name),
 * qty; down: name = lower(label)), moves the migration to DUAL_WRITE and
 * runs, each in its own process:
 *   - 2 or 3 writers, each on keys of its own, so the last acknowledged
 *     value of every key is known. They insert, update (whole rows or qty
 *     alone) and delete through dw_write() -- in its own transaction or
 *     nested in the caller's, with both sides' callbacks or the trusted
 *     side's alone -- and through the application's SQL plus dw_mirror().
 *     A write is acknowledged when the call (and the caller's COMMIT)
 *     returned DW_OK; DW_EBUSY means "not applied, retry". After every
 *     write, acknowledged or not, one SELECT reads the key on both sides:
 *     the old side must hold exactly the writer's model (so a busy write
 *     applied nothing), the new side the model mapped up (or, before the
 *     backfill has finished, no row). dw_read() must return the model, and
 *     the library must have run the callbacks in the order the stage
 *     stored at that moment prescribes (a stale cached stage shows here).
 *     After each acknowledged write the writer appends a line to its log.
 *   - a backfill in small batches, resumed after DW_MORE and DW_EBUSY;
 *   - a stage mover: DUAL_WRITE <-> SHADOW while the backfill runs, then
 *     round SHADOW, LIVE, RAMPDOWN and back down, a forced jump from
 *     DUAL_WRITE to LIVE among them; the closed LIVE gate is opened with
 *     dw_verify() (which must be clean) or forced with a reason, by round.
 *     It logs every move it made.
 *   - one or two readers: dw_read() of keys no writer touches (their value
 *     is known) and of any key; only DW_OK, DW_ENOTFOUND or DW_EBUSY.
 * Once the backfill has finished no read may report a mismatch: a read
 * sees both sides in one snapshot and every write changes both in one
 * transaction.
 * When every child has exited 0, the parent checks that the trusted side at
 * the final stage holds the last acknowledged value of every key, deleted
 * keys absent and nothing else; that the backfill is finished and
 * dw_verify() clean; that plain SQL finds new == map(old) row for row; that
 * the history lists exactly the stage moves made, forced ones as forced;
 * and PRAGMA integrity_check, before and after its checkpoint.
 *
 * The SQLite WAL-reset bug. SQLite 3.7.0 through 3.51.2 (3.40.1 here) has
 * a data race, fixed in 3.51.3 (2026-03-13; backports 3.44.6 and 3.50.7):
 * a checkpoint that starts on a WAL an earlier checkpoint had copied back
 * completely, while another connection commits the transaction that
 * restarts the WAL from its first frame, can read the WAL-index's frame
 * count from before the restart and the backfill count (nBackfill) after
 * it, and store a backfill count for the old, longer WAL. When later
 * commits grow the new WAL past that count, the next checkpoint takes the
 * frames below it for already copied and skips them: committed pages never
 * reach the database file -- lost writes and a corrupt file once the WAL
 * is restarted again (SQLite's test/walrestart.test;
 * https://sqlite.org/wal.html#walresetbug). It needs a checkpoint running
 * in one connection while another commits. A round here writes 3000 to
 * 5000 WAL frames, so the default automatic checkpoint (every 1000 frames,
 * run by whichever connection commits past the mark) would run several
 * times a round while other processes commit. So no checkpoint runs while
 * more than one connection is open: every connection of a round sets
 * wal_autocheckpoint=0, the library never checkpoints, the parent keeps its
 * connection open from before the first child starts until after the last
 * has exited (so no child's close is the last one, which would
 * checkpoint), and the parent checkpoints alone at the end.
 * DW_CONC_AUTOCHECKPOINT=N gives the children automatic checkpoints every N
 * pages again, to tell that bug from a library defect; DW_CONC_SEED=S
 * changes the seeds.
 *
 * Children are this program re-executed with CHILD_FLAG (a fresh process:
 * no SQLite state crosses fork(); under valgrind they run natively). */
#include "fault.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHILD_FLAG "--dw-concurrency-child"

/* Rows a writer inserts have ids NEW_BASE * (writer + 1) + j. */
#define NEW_BASE 1000000
#define NEW_PER_WRITER 48

/* Guards against a round that never ends, not timing assertions. */
#define CHILD_LIMIT_S 100
#define PARENT_LIMIT_S 150

enum {
    CHILD_USAGE = 20,
    CHILD_OPEN = 21,
    CHILD_ERROR = 22,  /* an unexpected result code */
    CHILD_DEFECT = 23, /* a check of the contract failed */
    CHILD_HUNG = 24
};


#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void sleep_ms(int ms) { sleep_us((long)ms * 1000L); }

/* ---- round parameters, passed to the children as one argument ----------- */

#define PARAMS(X)                                                              \
    X(round)                                                                   \
    X(seed)                                                                    \
    X(writers)                                                                 \
    X(readers)                                                                 \
    X(rows)        /* rows of the old model before the round */               \
    X(quota)       /* acknowledged writes each writer makes at least */       \
    X(reads)       /* dw_read() calls each reader makes at least */           \
    X(busy_ms)     /* busy timeout of writers and readers (0: none) */        \
    X(batch_rows)  /* backfill batch */                                       \
    X(pause_ms)    /* backfill pause between batches */                       \
    X(force_gate)  /* 1: force LIVE past the closed gate; 0: verify */        \
    X(final_stage) /* where the mover leaves the migration */                 \
    X(autockpt)    /* wal_autocheckpoint of the children; 0 = the sidestep */

typedef struct params {
#define FIELD(n) int n;
    PARAMS(FIELD)
#undef FIELD
} params;

static void params_format(const params *p, char *buf, size_t size)
{
    size_t used = 0;
#define PUT(n)                                                                 \
    if (used < size)                                                           \
        used += (size_t)snprintf(buf + used, size - used, "%d,", p->n);
    PARAMS(PUT)
#undef PUT
}

static int params_parse(params *p, const char *s)
{
    char *end;
#define GET(n)                                                                 \
    p->n = (int)strtol(s, &end, 10);                                           \
    if (end == s || *end != ',')                                               \
        return -1;                                                             \
    s = end + 1;
    PARAMS(GET)
#undef GET
    return 0;
}

/* ---- the migration ------------------------------------------------------ */

/* The fault world's spec (test/fault.h), without its setup SQL, reporting
 * mismatches to fn. */
static void fill_options(dw_options *o, dw_mismatch_fn fn, void *payload)
{
    world_options(o);
    o->mismatch_fn = fn;
    o->mismatch_payload = payload;
    o->reason = "concurrency test";
}

/* Names are lower-case letters and digits, so lower(upper(name)) == name
 * and both mappings are exact inverses. */
static void upper_copy(char *out, size_t size, const char *in)
{
    size_t i = 0;
    for (; in[i] && i + 1 < size; i++)
        out[i] = in[i] >= 'a' && in[i] <= 'z' ? (char)(in[i] - 'a' + 'A')
                                               : in[i];
    out[i] = '\0';
}

/* The value a row has before any writer touches it. */
static void initial_value(int64_t id, char *name, size_t size, int64_t *qty)
{
    snprintf(name, size, "item%lld", (long long)id);
    *qty = id % 97;
}

/* ---- a child's context ---------------------------------------------------- */

typedef struct rng {
    uint64_t s;
} rng;

static uint32_t rnd(rng *r)
{
    r->s = r->s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(r->s >> 33);
}

static int rnd_below(rng *r, int n) { return (int)(rnd(r) % (uint32_t)n); }

typedef struct child {
    const char *role;
    int index;
    const char *path;
    const char *dir;
    int stop_fd; /* read end: readable (EOF) once the parent closed it */
    int done_fd; /* one byte when the quota is done */
    params p;
    sqlite3 *db;
    dw_migration *h;
    rng r;
    FILE *log;
    time_t t0;
    int signalled;
    int bf_done; /* the backfill was seen finished (it stays so) */
    int64_t mismatches;
    char mismatch_key[64];
    int mismatch_kind;
} child;

static void child_fail(child *c, int code, const char *fmt, ...)
    PRINTF_LIKE(3, 4);

static void child_fail(child *c, int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* A writer run in the test's own process fails the test instead. */
    if (c->stop_fd < 0)
        fail_msg("%s %d: %s", c->role, c->index, msg);
    fprintf(stderr, "[round %d seed %d] %s %d: %s\n", c->p.round, c->p.seed,
            c->role, c->index, msg);
    fflush(stderr);
    _exit(code);
}

static void on_mismatch(const dw_mismatch *m, void *payload)
{
    child *c = payload;
    c->mismatches++;
    snprintf(c->mismatch_key, sizeof c->mismatch_key, "%s", m->key);
    c->mismatch_kind = m->kind;
}

static void child_open(child *c)
{
    if (sqlite3_open_v2(c->path, &c->db, SQLITE_OPEN_READWRITE, NULL) !=
        SQLITE_OK)
        child_fail(c, CHILD_OPEN, "cannot open %s", c->path);
    /* Writers and readers take the round's busy timeout (0: busy comes back
     * at once); the backfill and the mover wait a little. */
    int busy = strcmp(c->role, "writer") == 0 || strcmp(c->role, "reader") == 0
                   ? c->p.busy_ms
                   : 20;
    sqlite3_busy_timeout(c->db, busy);
    /* The sidestep of the WAL-reset bug: see the top of the file. */
    sqlite3_wal_autocheckpoint(c->db, c->p.autockpt);
    if (sqlite3_exec(c->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) !=
        SQLITE_OK)
        child_fail(c, CHILD_OPEN, "PRAGMA synchronous: %s",
                   sqlite3_errmsg(c->db));
    dw_options o;
    fill_options(&o, on_mismatch, c);
    for (;;) {
        char *err = NULL;
        int rc = dw_sqlite_open(&c->h, c->db, &o, &err);
        if (rc == DW_EBUSY) {
            dw_free(err);
            sleep_ms(1);
            continue;
        }
        if (rc != DW_OK)
            child_fail(c, CHILD_OPEN, "dw_open: %d %s", rc,
                       err ? err : "(no message)");
        dw_free(err);
        break;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/%s%d.log", c->dir, c->role, c->index);
    if (!(c->log = fopen(path, "w")))
        child_fail(c, CHILD_OPEN, "cannot write %s", path);
}

static void child_close(child *c)
{
    dw_close(c->h);
    c->h = NULL;
    if (sqlite3_close(c->db) != SQLITE_OK)
        child_fail(c, CHILD_ERROR, "sqlite3_close: %s", sqlite3_errmsg(c->db));
    c->db = NULL;
    if (fclose(c->log) != 0)
        child_fail(c, CHILD_ERROR, "cannot finish the log");
    c->log = NULL;
}

static int stop_requested(const child *c)
{
    if (c->stop_fd < 0)
        return 1; /* in the parent's process: stop at the quota */
    struct pollfd pf = {c->stop_fd, POLLIN, 0};
    return poll(&pf, 1, 0) > 0;
}

/* Reports the quota done once; then true when the parent says stop. */
static int quota_then_stop(child *c, int quota_done)
{
    if (quota_done && !c->signalled) {
        c->signalled = 1;
        if (c->done_fd >= 0 && write(c->done_fd, "d", 1) != 1)
            child_fail(c, CHILD_ERROR, "cannot report to the parent");
    }
    if (time(NULL) - c->t0 > CHILD_LIMIT_S)
        child_fail(c, CHILD_HUNG, "still running after %d s", CHILD_LIMIT_S);
    return c->signalled && stop_requested(c);
}

/* The backfill only moves towards finished while the stage has two models,
 * which it keeps all round: once seen finished, it stays so. */
static void refresh_backfill(child *c)
{
    if (c->bf_done)
        return;
    dw_backfill_progress bp;
    int rc = dw_backfill_status(&bp, c->h);
    if (rc == DW_OK && bp.finished)
        c->bf_done = 1;
    else if (rc != DW_OK && rc != DW_EBUSY)
        child_fail(c, CHILD_ERROR, "dw_backfill_status: %d %s", rc,
                   dw_errmsg(c->h));
}

/* ---- a key read back with plain SQL, both sides in one snapshot ----------- */

typedef struct sides {
    int old_n, new_n;
    char name[48], label[48];
    int64_t old_qty, new_qty;
} sides;

static const char READBACK_SQL[] =
    "SELECT (SELECT count(*) FROM items WHERE id = ?1),"
    " (SELECT name FROM items WHERE id = ?1),"
    " (SELECT qty FROM items WHERE id = ?1),"
    " (SELECT count(*) FROM items_v2 WHERE id = ?1),"
    " (SELECT label FROM items_v2 WHERE id = ?1),"
    " (SELECT qty FROM items_v2 WHERE id = ?1)";

static int read_sides(sqlite3 *db, int64_t id, sides *s)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, READBACK_SQL, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    memset(s, 0, sizeof *s);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        s->old_n = sqlite3_column_int(st, 0);
        const unsigned char *t = sqlite3_column_text(st, 1);
        snprintf(s->name, sizeof s->name, "%s", t ? (const char *)t : "");
        s->old_qty = sqlite3_column_int64(st, 2);
        s->new_n = sqlite3_column_int(st, 3);
        t = sqlite3_column_text(st, 4);
        snprintf(s->label, sizeof s->label, "%s", t ? (const char *)t : "");
        s->new_qty = sqlite3_column_int64(st, 5);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* ---- writers ---------------------------------------------------------------- */

typedef struct slot {
    int64_t id;
    int present;
    char name[48];
    int64_t qty;
} slot;

enum { OP_UPSERT, OP_QTY, OP_DELETE };

typedef struct wop {
    int kind;
    const char *name;
    int64_t qty;
    /* What the library did with the callbacks: calls by side, the side
     * called first, and the stage stored when it was called. */
    int calls[3];
    int first;
    int stored;
} wop;

/* By operation, for each side. */
static const char *const OLD_SQL[] = {
    ("INSERT INTO items(id, name, qty) VALUES(?1, ?2, ?3) ON CONFLICT(id)"
     " DO UPDATE SET name = excluded.name, qty = excluded.qty"),
    "UPDATE items SET qty = ?3 WHERE id = ?1",
    "DELETE FROM items WHERE id = ?1"};
static const char *const NEW_SQL[] = {
    ("INSERT INTO items_v2(id, label, qty) VALUES(?1, upper(?2), ?3)"
     " ON CONFLICT(id) DO UPDATE SET label = excluded.label,"
     " qty = excluded.qty"),
    "UPDATE items_v2 SET qty = ?3 WHERE id = ?1",
    "DELETE FROM items_v2 WHERE id = ?1"};

/* One statement of an operation; 0 or the SQLite code. */
static int run_op(sqlite3 *db, const char *sql, int64_t id, const wop *op)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    int n = sqlite3_bind_parameter_count(st);
    sqlite3_bind_int64(st, 1, id);
    if (n >= 2)
        sqlite3_bind_text(st, 2, op->name, -1, SQLITE_TRANSIENT);
    if (n >= 3)
        sqlite3_bind_int64(st, 3, op->qty);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    sqlite3_finalize(st);
    return dw_sqlite_result(db, rc);
}

/* The stage as stored, read with plain SQL on the connection (inside a
 * write transaction nobody can change it); -1 on error. */
static int stored_stage(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int stage = -1;
    if (sqlite3_prepare_v2(db,
                           "SELECT stage FROM dw_migrations"
                           " WHERE name = 'items_v2'",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        stage = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return stage;
}

static int side_write(void *db, const dw_value *key, int nkey, wop *op,
                      int side)
{
    if (nkey != 1 || key[0].type != DW_TYPE_INTEGER)
        return 99;
    if (!op->first) {
        op->first = side;
        op->stored = stored_stage(db);
    }
    op->calls[side]++;
    return run_op(db, side == DW_SIDE_OLD ? OLD_SQL[op->kind]
                                          : NEW_SQL[op->kind],
                  key[0].i, op);
}

static int cb_old(void *db, const dw_value *key, int nkey, void *payload)
{
    return side_write(db, key, nkey, payload, DW_SIDE_OLD);
}

static int cb_new(void *db, const dw_value *key, int nkey, void *payload)
{
    return side_write(db, key, nkey, payload, DW_SIDE_NEW);
}

/* How a writer writes. */
enum {
    M_LIBRARY,   /* dw_write(), both callbacks, its own transaction */
    M_NESTED,    /* the same inside the caller's BEGIN IMMEDIATE */
    M_AUTH_ONLY, /* caller's transaction; the trusted side's callback only,
                    the other side through the mapping */
    M_MIRROR,    /* caller's transaction; its own SQL on the trusted side,
                    then dw_mirror() */
    M_COUNT
};

static int busy_code(int rc) { return (rc & 0xff) == SQLITE_BUSY; }

/* The library called the callbacks as the stage stored at the time says:
 * the trusted side first, then the other (every stage of these rounds
 * writes both); or, given only the trusted side's, that one alone. */
static void check_callbacks(child *c, const wop *op, int method, int64_t id)
{
    int trusted = op->stored >= 0 && op->stored <= DW_STAGE_SHADOW
                      ? DW_SIDE_OLD
                      : DW_SIDE_NEW;
    int other = trusted == DW_SIDE_OLD ? DW_SIDE_NEW : DW_SIDE_OLD;
    int ok = op->stored >= DW_STAGE_DUAL_WRITE &&
             op->stored <= DW_STAGE_RAMPDOWN && op->first == trusted &&
             op->calls[trusted] == 1 &&
             op->calls[other] == (method == M_AUTH_ONLY ? 0 : 1);
    if (!ok)
        child_fail(c, CHILD_DEFECT,
                   "key %lld: at stored stage %s the library called the old "
                   "side's callback %d times, the new side's %d, the %s "
                   "side's first",
                   (long long)id,
                   op->stored >= 0 ? dw_stage_name(op->stored) : "?",
                   op->calls[DW_SIDE_OLD], op->calls[DW_SIDE_NEW],
                   op->first == DW_SIDE_OLD ? "old" : "new");
}

/* One write; DW_OK when acknowledged. *why gets a message otherwise. */
static int write_key(child *c, int64_t id, wop *op, int method, char *why,
                     size_t whysize)
{
    dw_value k = dw_int(id);
    why[0] = '\0';
    if (method == M_LIBRARY) {
        int rc = dw_write(c->h, &k, 1, cb_old, cb_new, op);
        if (rc != DW_OK)
            snprintf(why, whysize, "%s", dw_errmsg(c->h));
        return rc;
    }
    int src = sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (busy_code(src))
        return DW_EBUSY;
    if (src != SQLITE_OK) {
        snprintf(why, whysize, "BEGIN IMMEDIATE: %s", sqlite3_errmsg(c->db));
        return DW_ERROR;
    }
    int rc = DW_OK, stage = -1;
    if (method == M_NESTED) {
        rc = dw_write(c->h, &k, 1, cb_old, cb_new, op);
    } else if ((rc = dw_stage_get(&stage, c->h)) == DW_OK) {
        /* Inside our write transaction the stage cannot move: the side
         * read here is the one the library trusts for this write. */
        int stored = stored_stage(c->db);
        if (stage != stored)
            child_fail(c, CHILD_DEFECT,
                       "dw_stage_get says %s inside a write transaction, the "
                       "stored stage is %d",
                       dw_stage_name(stage), stored);
        int old_trusted = stage <= DW_STAGE_SHADOW;
        if (method == M_AUTH_ONLY) {
            rc = dw_write(c->h, &k, 1, old_trusted ? cb_old : NULL,
                          old_trusted ? NULL : cb_new, op);
        } else {
            src = run_op(c->db, old_trusted ? OLD_SQL[op->kind]
                                            : NEW_SQL[op->kind],
                         id, op);
            if (src) {
                snprintf(why, whysize, "application SQL: %s",
                         sqlite3_errmsg(c->db));
                rc = busy_code(src) ? DW_EBUSY : DW_ERROR;
            } else {
                rc = dw_mirror(c->h, &k, 1);
            }
        }
    }
    if (rc != DW_OK && !why[0])
        snprintf(why, whysize, "%s", dw_errmsg(c->h));
    if (rc == DW_OK) {
        src = sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
        if (src != SQLITE_OK) {
            snprintf(why, whysize, "COMMIT: %s", sqlite3_errmsg(c->db));
            rc = busy_code(src) ? DW_EBUSY : DW_ERROR;
        }
    }
    if (rc != DW_OK && !sqlite3_get_autocommit(c->db))
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static const char *const METHOD_NAMES[] = {"dw_write", "nested dw_write",
                                           "trusted-side dw_write",
                                           "SQL + dw_mirror"};
static const char *const OP_NAMES[] = {"upsert", "qty update", "delete"};

/* Both sides of the key against the writer's model. bf: the backfill was
 * finished before the write began (so the new row must exist). */
static void check_slot(child *c, const slot *s, int bf, const char *when)
{
    sides got;
    int rc;
    while ((rc = read_sides(c->db, s->id, &got)) != SQLITE_OK) {
        if (!busy_code(rc))
            child_fail(c, CHILD_ERROR, "reading back key %lld: %s",
                       (long long)s->id, sqlite3_errmsg(c->db));
        sleep_ms(1);
    }
    char label[48];
    upper_copy(label, sizeof label, s->name);
    int old_ok = s->present ? got.old_n == 1 && strcmp(got.name, s->name) == 0 &&
                                  got.old_qty == s->qty
                            : got.old_n == 0;
    int new_ok = s->present
                     ? (got.new_n == 1 && strcmp(got.label, label) == 0 &&
                        got.new_qty == s->qty) ||
                           (got.new_n == 0 && !bf)
                     : got.new_n == 0;
    if (!old_ok || !new_ok)
        child_fail(c, CHILD_DEFECT,
                   "key %lld %s: expected %s (%s, %lld), old side has %d row "
                   "(%s, %lld), new side %d row (%s, %lld)%s",
                   (long long)s->id, when, s->present ? "present" : "absent",
                   s->name, (long long)s->qty, got.old_n, got.name,
                   (long long)got.old_qty, got.new_n, got.label,
                   (long long)got.new_qty,
                   bf ? " (backfill finished before the write)" : "");
}

/* dw_read() of a key whose value is known: it must return that value, in
 * the shape of whichever side it trusted. */
static int read_known(child *c, dw_row *row, int64_t id, int present,
                      const char *name, int64_t qty, int bf)
{
    dw_value k = dw_int(id);
    int64_t before = c->mismatches;
    int rc = dw_read(row, c->h, &k, 1, NULL, NULL, NULL);
    if (rc == DW_EBUSY)
        return rc;
    const dw_value *vn = dw_row_get(row, "name");
    const dw_value *vl = dw_row_get(row, "label");
    const dw_value *vq = dw_row_get(row, "qty");
    const dw_value *text = vn ? vn : vl;
    char want[48];
    if (vn)
        snprintf(want, sizeof want, "%s", name);
    else
        upper_copy(want, sizeof want, name);
    int ok = present ? rc == DW_OK && text && text->type == DW_TYPE_TEXT &&
                           strcmp((const char *)text->p, want) == 0 && vq &&
                           vq->type == DW_TYPE_INTEGER && vq->i == qty
                     : rc == DW_ENOTFOUND;
    if (!ok)
        child_fail(c, CHILD_DEFECT,
                   "dw_read of key %lld returned %d (%s) %s%s%s, expected %s "
                   "(%s, %lld)",
                   (long long)id, rc, rc ? dw_errmsg(c->h) : "ok",
                   vn ? "name " : vl ? "label " : "",
                   text && text->type == DW_TYPE_TEXT ? (const char *)text->p
                                                      : "",
                   vq ? "" : " (no qty)", present ? "present" : "absent",
                   name, (long long)qty);
    if (bf && c->mismatches != before)
        child_fail(c, CHILD_DEFECT,
                   "dw_read of key %lld reported a mismatch (kind %d, key "
                   "%s) after the backfill had finished",
                   (long long)id, c->mismatch_kind, c->mismatch_key);
    return rc;
}

static int writer_main(child *c)
{
    const params *p = &c->p;
    int mod = p->writers + 1, nslots = 0;
    slot *slots = calloc((size_t)(p->rows / mod + 1 + NEW_PER_WRITER),
                         sizeof *slots);
    dw_row *row = NULL;
    if (!slots || dw_row_new(&row) != DW_OK)
        child_fail(c, CHILD_ERROR, "out of memory");
    for (int64_t id = 1; id <= p->rows; id++)
        if (id % mod == c->index) {
            slot *s = &slots[nslots++];
            s->id = id;
            s->present = 1;
            initial_value(id, s->name, sizeof s->name, &s->qty);
        }
    for (int j = 0; j < NEW_PER_WRITER; j++)
        slots[nslots++].id = (int64_t)NEW_BASE * (c->index + 1) + j;

    int64_t acked = 0, busy = 0, reads = 0, busy_reads = 0, early = 0;
    int64_t by_method[M_COUNT] = {0}, by_op[3] = {0};
    char why[512];
    for (int seq = 1; !quota_then_stop(c, acked >= p->quota); seq++) {
        refresh_backfill(c);
        int bf = c->bf_done;
        slot *s = &slots[rnd_below(&c->r, nslots)];
        char name[48];
        snprintf(name, sizeof name, "w%dn%d", c->index, seq);
        int r = rnd_below(&c->r, 10);
        wop op;
        memset(&op, 0, sizeof op);
        op.kind = !s->present ? OP_UPSERT
                  : r < 5     ? OP_UPSERT
                  : r < 8     ? OP_QTY
                              : OP_DELETE;
        op.name = name;
        op.qty = (int64_t)(c->index + 1) * 100000000 + seq;
        int method = rnd_below(&c->r, M_COUNT);
        int rc = write_key(c, s->id, &op, method, why, sizeof why);
        if (rc == DW_OK && method != M_MIRROR)
            check_callbacks(c, &op, method, s->id);
        if (rc == DW_OK) {
            if (op.kind == OP_DELETE) {
                s->present = 0;
                fprintf(c->log, "D %lld\n", (long long)s->id);
            } else if (op.kind == OP_QTY) {
                s->qty = op.qty;
                fprintf(c->log, "Q %lld %lld\n", (long long)s->id,
                        (long long)op.qty);
            } else {
                s->present = 1;
                snprintf(s->name, sizeof s->name, "%s", name);
                s->qty = op.qty;
                fprintf(c->log, "U %lld %s %lld\n", (long long)s->id, name,
                        (long long)op.qty);
            }
            acked++;
            early += !bf; /* while the backfill ran */
            by_method[method]++;
            by_op[op.kind]++;
        } else if (rc == DW_EBUSY) {
            busy++;
        } else {
            child_fail(c, CHILD_ERROR, "%s (%s) of key %lld returned %d: %s",
                       OP_NAMES[op.kind], METHOD_NAMES[method],
                       (long long)s->id, rc, why);
        }
        check_slot(c, s, bf,
                   rc == DW_OK ? "after an acknowledged write"
                               : "after a busy write (nothing may apply)");
        if (rnd_below(&c->r, 2) == 0) {
            if (read_known(c, row, s->id, s->present, s->name, s->qty, bf) ==
                DW_EBUSY)
                busy_reads++;
            else
                reads++;
        }
        if (rnd_below(&c->r, 4) == 0)
            sleep_us(rnd_below(&c->r, 300));
    }
    fprintf(c->log,
            "S %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld\n",
            (long long)acked, (long long)early, (long long)busy,
            (long long)reads,
            (long long)busy_reads, (long long)by_method[0],
            (long long)by_method[1], (long long)by_method[2],
            (long long)by_method[3], (long long)by_op[0], (long long)by_op[1],
            (long long)by_op[2]);
    dw_row_free(row);
    free(slots);
    return 0;
}

/* ---- readers -------------------------------------------------------------- */

static int reader_main(child *c)
{
    const params *p = &c->p;
    int mod = p->writers + 1;
    int nstatic = (p->rows - p->writers) / mod + 1; /* ids = writers mod mod */
    dw_row *row = NULL;
    if (dw_row_new(&row) != DW_OK)
        child_fail(c, CHILD_ERROR, "out of memory");
    int64_t reads = 0, busy = 0, found = 0;
    while (!quota_then_stop(c, reads >= p->reads)) {
        refresh_backfill(c);
        int bf = c->bf_done;
        if (rnd_below(&c->r, 2) == 0) {
            int64_t id = p->writers + (int64_t)mod * rnd_below(&c->r, nstatic);
            char name[48];
            int64_t qty;
            initial_value(id, name, sizeof name, &qty);
            if (read_known(c, row, id, 1, name, qty, bf) == DW_EBUSY) {
                busy++;
                continue;
            }
            reads++;
            found++;
            continue;
        }
        /* Any key: a writer's may change at any moment, so only the result
         * code and the row's shape are known. */
        int64_t id =
            rnd_below(&c->r, 4)
                ? 1 + rnd_below(&c->r, p->rows)
                : (int64_t)NEW_BASE * (1 + rnd_below(&c->r, p->writers)) +
                      rnd_below(&c->r, NEW_PER_WRITER);
        dw_value k = dw_int(id);
        int64_t before = c->mismatches;
        int rc = dw_read(row, c->h, &k, 1, NULL, NULL, NULL);
        if (rc == DW_EBUSY) {
            busy++;
            continue;
        }
        const dw_value *vid = dw_row_get(row, "id");
        int shaped = dw_row_count(row) == 3 && vid &&
                     vid->type == DW_TYPE_INTEGER && vid->i == id &&
                     dw_row_get(row, "qty") &&
                     (dw_row_get(row, "name") || dw_row_get(row, "label"));
        if (rc != DW_ENOTFOUND && !(rc == DW_OK && shaped))
            child_fail(c, CHILD_DEFECT,
                       "dw_read of key %lld returned %d (%s), %d columns",
                       (long long)id, rc, dw_errmsg(c->h), dw_row_count(row));
        if (bf && c->mismatches != before)
            child_fail(c, CHILD_DEFECT,
                       "dw_read of key %lld reported a mismatch (kind %d) "
                       "after the backfill had finished",
                       (long long)id, c->mismatch_kind);
        reads++;
        found += rc == DW_OK;
    }
    fprintf(c->log, "S %lld %lld %lld\n", (long long)reads, (long long)busy,
            (long long)found);
    dw_row_free(row);
    return 0;
}

/* ---- the backfill ------------------------------------------------------------ */

static int backfill_main(child *c)
{
    sleep_ms(5 + rnd_below(&c->r, 20)); /* let the writers start first */
    dw_backfill_options o = DW_BACKFILL_OPTIONS_INIT;
    o.batch_rows = c->p.batch_rows;
    o.batch_ms = -1; /* keep the batch small */
    o.pause_ms = c->p.pause_ms;
    o.time_limit_ms = 20; /* return DW_MORE now and then, and resume */
    int64_t calls = 0, more = 0, busy = 0;
    dw_backfill_progress bp;
    for (;;) {
        quota_then_stop(c, 0); /* the time guard only */
        int rc = dw_backfill(&bp, c->h, &o);
        calls++;
        if (rc == DW_OK)
            break;
        if (rc == DW_MORE) {
            more++;
        } else if (rc == DW_EBUSY) {
            busy++;
            sleep_ms(1);
        } else {
            child_fail(c, CHILD_ERROR, "dw_backfill returned %d: %s", rc,
                       dw_errmsg(c->h));
        }
    }
    if (!bp.finished)
        child_fail(c, CHILD_DEFECT, "dw_backfill returned DW_OK unfinished");
    fprintf(c->log, "S %lld %lld %lld %lld %lld %lld\n", (long long)calls,
            (long long)more, (long long)busy, (long long)bp.batches,
            (long long)bp.rows_done, (long long)bp.rows_written);
    return 0;
}

/* ---- the stage mover ------------------------------------------------------ */

/* While the backfill runs the mover stays between DUAL_WRITE and SHADOW:
 * forcing LIVE then would trust a new side still missing rows (dw_read
 * answering "not found" for them is then what the header promises) and
 * refuse the unfinished backfill (begun under the other side) -- a choice
 * the forcing caller makes, not a defect to look for. After it: up through
 * the gate, down, a forced jump from DUAL_WRITE to LIVE, back two. */
static const int AFTER_BACKFILL[] = {
    DW_STAGE_SHADOW,   DW_STAGE_LIVE,       DW_STAGE_RAMPDOWN,
    DW_STAGE_LIVE,     DW_STAGE_SHADOW,     DW_STAGE_DUAL_WRITE,
    DW_STAGE_LIVE,     DW_STAGE_RAMPDOWN,   DW_STAGE_SHADOW,
    DW_STAGE_DUAL_WRITE};
enum { N_AFTER = sizeof AFTER_BACKFILL / sizeof AFTER_BACKFILL[0] };

typedef struct mover {
    int cur;
    int64_t moves, early, forced, gate_forced, verifies, busy;
} mover;

static void mover_verify(child *c, mover *m)
{
    for (;;) {
        dw_verify_result r;
        int rc = dw_verify(&r, c->h, NULL);
        if (rc == DW_EBUSY) {
            m->busy++;
            sleep_ms(1);
            continue;
        }
        if (rc != DW_OK)
            child_fail(c, CHILD_ERROR, "dw_verify returned %d: %s", rc,
                       dw_errmsg(c->h));
        /* The backfill had finished before it began and every write since
         * changed both sides at once. */
        if (!r.clean || !r.full || !r.finished)
            child_fail(c, CHILD_DEFECT,
                       "dw_verify after the backfill finished: %lld missing, "
                       "%lld extra, %lld different of %lld keys",
                       (long long)r.missing, (long long)r.extra,
                       (long long)r.different, (long long)r.keys);
        m->verifies++;
        return;
    }
}

static void mover_move(child *c, mover *m, int target)
{
    char reason[64];
    snprintf(reason, sizeof reason, "round %d move %lld", c->p.round,
             (long long)m->moves + 1);
    int gate_forced = 0, verified = 0;
    for (;;) {
        int jump = target > m->cur + 1;
        unsigned flags = jump || gate_forced ? DW_STAGE_FORCE : 0;
        int rc = dw_stage_set(c->h, target, reason, flags);
        if (rc == DW_EGATE && !gate_forced && !verified) {
            /* The mover aims above SHADOW only once the backfill finished,
             * so only the verification is missing: force, or verify once
             * (after a clean one the gate must open). */
            if (c->p.force_gate) {
                gate_forced = 1;
            } else {
                mover_verify(c, m);
                verified = 1;
            }
            continue;
        }
        if (rc == DW_EBUSY) {
            m->busy++;
            sleep_ms(1);
            continue;
        }
        if (rc != DW_OK)
            child_fail(c, CHILD_ERROR, "dw_stage_set(%s -> %s) returned %d: %s",
                       dw_stage_name(m->cur), dw_stage_name(target), rc,
                       dw_errmsg(c->h));
        int forced = jump || gate_forced;
        fprintf(c->log, "M %d %d %d %s\n", m->cur, target, forced, reason);
        m->cur = target;
        m->moves++;
        m->early += !c->bf_done;
        m->forced += forced;
        m->gate_forced += gate_forced;
        return;
    }
}

static int mover_main(child *c)
{
    mover m;
    memset(&m, 0, sizeof m);
    m.cur = DW_STAGE_DUAL_WRITE; /* where the parent left it */
    int stored = -1, rc;
    while ((rc = dw_stage_get(&stored, c->h)) == DW_EBUSY)
        sleep_ms(1);
    if (rc != DW_OK || stored != m.cur)
        child_fail(c, CHILD_ERROR, "dw_stage_get: %d, stage %d", rc, stored);
    int pi = 0;
    while (!quota_then_stop(c, pi >= N_AFTER)) {
        refresh_backfill(c);
        int target;
        if (!c->bf_done) {
            target = m.cur == DW_STAGE_DUAL_WRITE ? DW_STAGE_SHADOW
                                                  : DW_STAGE_DUAL_WRITE;
        } else {
            target = AFTER_BACKFILL[pi++ % N_AFTER];
            if (target == m.cur)
                continue;
        }
        mover_move(c, &m, target);
        sleep_ms(1 + rnd_below(&c->r, 6));
    }
    if (m.cur != c->p.final_stage)
        mover_move(c, &m, c->p.final_stage);
    fprintf(c->log, "S %lld %lld %lld %lld %lld %lld\n", (long long)m.moves,
            (long long)m.early, (long long)m.forced, (long long)m.gate_forced,
            (long long)m.verifies, (long long)m.busy);
    return 0;
}

/* argv: self CHILD_FLAG role index path dir stop_fd done_fd params */
static int child_main(int argc, char **argv)
{
    if (argc != 9)
        _exit(CHILD_USAGE);
    child c;
    memset(&c, 0, sizeof c);
    c.role = argv[2];
    c.index = atoi(argv[3]);
    c.path = argv[4];
    c.dir = argv[5];
    c.stop_fd = atoi(argv[6]);
    c.done_fd = atoi(argv[7]);
    if (params_parse(&c.p, argv[8]) != 0)
        _exit(CHILD_USAGE);
    c.t0 = time(NULL);
    c.r.s = (uint64_t)(unsigned)c.p.seed * 1000003u +
            (uint64_t)(unsigned char)c.role[0] * 7919u + (uint64_t)c.index;
    int (*body)(child *) = strcmp(c.role, "writer") == 0   ? writer_main
                           : strcmp(c.role, "reader") == 0 ? reader_main
                           : strcmp(c.role, "backfill") == 0
                               ? backfill_main
                           : strcmp(c.role, "mover") == 0 ? mover_main
                                                          : NULL;
    if (!body)
        _exit(CHILD_USAGE);
    child_open(&c);
    int code = body(&c);
    child_close(&c);
    return code;
}

/* ===================================================================== */
/* The parent                                                             */
/* ===================================================================== */

typedef struct expect {
    int present;
    char name[48];
    int64_t qty;
} expect;

typedef struct move {
    int from, to, forced;
    char reason[64];
} move;

typedef struct round_state {
    params p;
    test_db t;
    dw_migration *h;
    expect *ex; /* by key index: old ids 1..rows, then each writer's new */
    int nex;
    move *moves; /* the parent's move, then the mover's */
    int nmoves, capmoves;
    /* From the children's closing lines. */
    int64_t acked, acked_early, busy_writes, writer_reads, reads,
        by_method[M_COUNT], by_op[3];
    int64_t bf_batches, bf_calls, bf_busy, gate_forced, verifies,
        moves_early;
} round_state;

static move *add_move(round_state *rs)
{
    if (rs->nmoves == rs->capmoves) {
        rs->capmoves = rs->capmoves ? 2 * rs->capmoves : 64;
        rs->moves = realloc(rs->moves, sizeof *rs->moves * (size_t)rs->capmoves);
        assert_non_null(rs->moves);
    }
    move *m = &rs->moves[rs->nmoves++];
    memset(m, 0, sizeof *m);
    return m;
}

static int key_index(const round_state *rs, int64_t id)
{
    if (id >= 1 && id <= rs->p.rows)
        return (int)(id - 1);
    int64_t w = id / NEW_BASE - 1, j = id % NEW_BASE;
    if (id >= NEW_BASE && w < rs->p.writers && j < NEW_PER_WRITER)
        return rs->p.rows + (int)(w * NEW_PER_WRITER + j);
    return -1;
}

static int64_t key_of(const round_state *rs, int i)
{
    if (i < rs->p.rows)
        return i + 1;
    i -= rs->p.rows;
    return (int64_t)NEW_BASE * (i / NEW_PER_WRITER + 1) + i % NEW_PER_WRITER;
}

static void log_path(char *buf, size_t size, const round_state *rs,
                     const char *role, int index)
{
    snprintf(buf, size, "%s/%s%d.log", rs->t.dir, role, index);
}

/* Replays a writer's log of acknowledged writes into the expected state. */
static void load_writer_log(round_state *rs, int w)
{
    char path[512], line[256];
    log_path(path, sizeof path, rs, "writer", w);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int stats = 0;
    while (fgets(line, sizeof line, f)) {
        long long id = 0, qty = 0, v[12];
        char name[48];
        int i;
        if (sscanf(line, "U %lld %47s %lld", &id, name, &qty) == 3) {
            i = key_index(rs, id);
            assert_true(i >= 0);
            rs->ex[i].present = 1;
            snprintf(rs->ex[i].name, sizeof rs->ex[i].name, "%s", name);
            rs->ex[i].qty = qty;
        } else if (sscanf(line, "Q %lld %lld", &id, &qty) == 2) {
            i = key_index(rs, id);
            assert_true(i >= 0);
            assert_true(rs->ex[i].present); /* acked on a present row */
            rs->ex[i].qty = qty;
        } else if (sscanf(line, "D %lld", &id) == 1) {
            i = key_index(rs, id);
            assert_true(i >= 0);
            rs->ex[i].present = 0;
        } else if (sscanf(line,
                          "S %lld %lld %lld %lld %lld %lld %lld %lld %lld "
                          "%lld %lld %lld",
                          &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                          &v[7], &v[8], &v[9], &v[10], &v[11]) == 12) {
            stats = 1;
            rs->acked += v[0];
            rs->acked_early += v[1];
            rs->busy_writes += v[2];
            rs->writer_reads += v[3];
            for (int m = 0; m < M_COUNT; m++)
                rs->by_method[m] += v[5 + m];
            for (int o = 0; o < 3; o++)
                rs->by_op[o] += v[9 + o];
        } else {
            fail_msg("unreadable line in %s: %s", path, line);
        }
    }
    fclose(f);
    assert_true(stats);
    assert_int_equal(unlink(path), 0);
}

static void load_logs(round_state *rs, int with_children)
{
    rs->nex = rs->p.rows + rs->p.writers * NEW_PER_WRITER;
    rs->ex = calloc((size_t)rs->nex, sizeof *rs->ex);
    assert_non_null(rs->ex);
    for (int i = 0; i < rs->p.rows; i++) {
        rs->ex[i].present = 1;
        initial_value(i + 1, rs->ex[i].name, sizeof rs->ex[i].name,
                      &rs->ex[i].qty);
    }
    for (int w = 0; w < rs->p.writers; w++)
        load_writer_log(rs, w);
    if (!with_children)
        return;
    char path[512], line[256];
    long long v[6];
    for (int r = 0; r < rs->p.readers; r++) {
        log_path(path, sizeof path, rs, "reader", r);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        assert_non_null(fgets(line, sizeof line, f));
        assert_int_equal(sscanf(line, "S %lld %lld %lld", &v[0], &v[1], &v[2]),
                         3);
        rs->reads += v[0];
        fclose(f);
        assert_int_equal(unlink(path), 0);
    }
    log_path(path, sizeof path, rs, "backfill", 0);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof line, f));
    assert_int_equal(sscanf(line, "S %lld %lld %lld %lld %lld %lld", &v[0],
                            &v[1], &v[2], &v[3], &v[4], &v[5]),
                     6);
    rs->bf_calls = v[0];
    rs->bf_busy = v[2];
    rs->bf_batches = v[3];
    fclose(f);
    assert_int_equal(unlink(path), 0);

    log_path(path, sizeof path, rs, "mover", 0);
    f = fopen(path, "r");
    assert_non_null(f);
    int stats = 0;
    while (fgets(line, sizeof line, f)) {
        int from, to, forced, n = 0;
        if (sscanf(line, "M %d %d %d %n", &from, &to, &forced, &n) == 3 && n) {
            move *m = add_move(rs);
            m->from = from;
            m->to = to;
            m->forced = forced;
            snprintf(m->reason, sizeof m->reason, "%s", line + n);
            m->reason[strcspn(m->reason, "\n")] = '\0';
        } else if (sscanf(line, "S %lld %lld %lld %lld %lld %lld", &v[0],
                          &v[1], &v[2], &v[3], &v[4], &v[5]) == 6) {
            stats = 1;
            rs->moves_early = v[1];
            rs->gate_forced = v[3];
            rs->verifies = v[4];
        } else {
            fail_msg("unreadable line in %s: %s", path, line);
        }
    }
    fclose(f);
    assert_true(stats);
    assert_int_equal(unlink(path), 0);
}

/* ---- the checks; each returns how many problems it found (printing the
 * first few), so the damage test can show they fail. ----------------------- */

/* Set while the damage test provokes problems on purpose. */
static int g_quiet;

static int problem(int n, const char *fmt, ...) PRINTF_LIKE(2, 3);

static int problem(int n, const char *fmt, ...)
{
    if (n < 10 && !g_quiet) {
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        print_error("%s\n", msg);
    }
    return n + 1;
}

/* The trusted side at `stage` holds every acknowledged value, no deleted
 * key and nothing else. */
static int check_trusted(const round_state *rs, int stage)
{
    int old = stage <= DW_STAGE_SHADOW, n = 0;
    const char *sql = old ? "SELECT id, name, qty FROM items ORDER BY id"
                          : "SELECT id, label, qty FROM items_v2 ORDER BY id";
    char *seen = calloc((size_t)rs->nex, 1);
    assert_non_null(seen);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(rs->t.db, sql, -1, &st, NULL),
                     SQLITE_OK);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        const char *text = (const char *)sqlite3_column_text(st, 1);
        int64_t qty = sqlite3_column_int64(st, 2);
        int i = key_index(rs, id);
        if (i < 0) {
            n = problem(n, "%s side: unexpected key %lld", old ? "old" : "new",
                        (long long)id);
            continue;
        }
        seen[i] = 1;
        const expect *e = &rs->ex[i];
        char want[48];
        if (old)
            snprintf(want, sizeof want, "%s", e->name);
        else
            upper_copy(want, sizeof want, e->name);
        if (!e->present)
            n = problem(n, "%s side: key %lld was deleted (acknowledged) but "
                           "holds (%s, %lld)",
                        old ? "old" : "new", (long long)id, text ? text : "",
                        (long long)qty);
        else if (!text || strcmp(text, want) != 0 || qty != e->qty)
            n = problem(n, "%s side: key %lld holds (%s, %lld), the last "
                           "acknowledged write gave (%s, %lld)",
                        old ? "old" : "new", (long long)id, text ? text : "",
                        (long long)qty, want, (long long)e->qty);
    }
    assert_int_equal(rc, SQLITE_DONE);
    sqlite3_finalize(st);
    for (int i = 0; i < rs->nex; i++)
        if (rs->ex[i].present && !seen[i])
            n = problem(n, "%s side: acknowledged key %lld is missing",
                        old ? "old" : "new", (long long)key_of(rs, i));
    free(seen);
    return n;
}

/* Plain SQL: every new row is its old row mapped up, and nothing else. */
static int check_mapping(sqlite3 *db)
{
    int64_t n_old = query_int(db, "SELECT count(*) FROM items");
    int64_t n_new = query_int(db, "SELECT count(*) FROM items_v2");
    int64_t n_join = query_int(db, "SELECT count(*) FROM items AS o JOIN"
                                   " items_v2 AS n ON n.id = o.id AND"
                                   " n.label IS upper(o.name) AND"
                                   " n.qty IS o.qty");
    int n = 0;
    if (n_old != n_join || n_new != n_join)
        n = problem(n, "%lld old rows, %lld new rows, %lld of them equal to "
                       "their old row mapped up",
                    (long long)n_old, (long long)n_new, (long long)n_join);
    return n;
}

typedef struct hist {
    const round_state *rs;
    int stage_events, backfills, problems;
} hist;

static int on_history(const dw_history_entry *e, void *payload)
{
    hist *hs = payload;
    if (strcmp(e->event, "backfill") == 0) {
        hs->backfills++;
        return 0;
    }
    if (strcmp(e->event, "stage") != 0)
        return 0;
    int i = hs->stage_events++;
    if (i >= hs->rs->nmoves) {
        hs->problems = problem(hs->problems,
                               "history: stage move %s -> %s (%s) was never "
                               "made",
                               dw_stage_name(e->from_stage),
                               dw_stage_name(e->to_stage),
                               e->reason ? e->reason : "");
        return 0;
    }
    const move *m = &hs->rs->moves[i];
    if (e->from_stage != m->from || e->to_stage != m->to ||
        !e->forced != !m->forced || !e->reason ||
        strcmp(e->reason, m->reason) != 0)
        hs->problems = problem(
            hs->problems,
            "history: stage event %d is %s -> %s forced %d (%s), the move "
            "made was %s -> %s forced %d (%s)",
            i + 1, dw_stage_name(e->from_stage), dw_stage_name(e->to_stage),
            e->forced, e->reason ? e->reason : "", dw_stage_name(m->from),
            dw_stage_name(m->to), m->forced, m->reason);
    return 0;
}

/* The history lists exactly the moves made, in order, and one finished
 * backfill. */
static int check_history(const round_state *rs)
{
    hist hs = {rs, 0, 0, 0};
    assert_dw_ok(rs->h, dw_history(rs->h, on_history, &hs));
    if (hs.stage_events < rs->nmoves)
        hs.problems = problem(hs.problems,
                              "history: %d stage events, %d moves were made",
                              hs.stage_events, rs->nmoves);
    if (hs.backfills != 1)
        hs.problems = problem(hs.problems,
                              "history: %d finished backfills, expected 1",
                              hs.backfills);
    return hs.problems;
}

/* ---- a round --------------------------------------------------------------- */

static void round_setup(round_state *rs, const params *p)
{
    memset(rs, 0, sizeof *rs);
    rs->p = *p;
    test_db_open(&rs->t);
    sqlite3 *db = rs->t.db;
    /* The sidestep (see the top of the file): this connection stays open
     * all round and never checkpoints while a child runs. */
    sqlite3_wal_autocheckpoint(db, 0);
    exec_ok(db, "PRAGMA synchronous=NORMAL");
    char sql[1024];
    snprintf(sql, sizeof sql,
             "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
             " qty INTEGER NOT NULL);"
             "CREATE TABLE items_v2(id INTEGER PRIMARY KEY,"
             " label TEXT NOT NULL, qty INTEGER NOT NULL);"
             "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c"
             " WHERE i < %d) INSERT INTO items SELECT i, 'item' || i, i %% 97"
             " FROM c;",
             p->rows);
    exec_ok(db, sql);
    dw_options o;
    fill_options(&o, NULL, NULL);
    char *err = NULL;
    int rc = dw_sqlite_open(&rs->h, db, &o, &err);
    if (rc != DW_OK)
        print_error("dw_open: %s\n", err ? err : "?");
    dw_free(err);
    assert_int_equal(rc, DW_OK);
    move *m = add_move(rs);
    m->from = DW_STAGE_OFF;
    m->to = DW_STAGE_DUAL_WRITE;
    m->forced = 0;
    snprintf(m->reason, sizeof m->reason, "round %d: dual writes", p->round);
    assert_dw_ok(rs->h, dw_stage_set(rs->h, m->to, m->reason, 0));
    /* Alone on the file: safe. */
    assert_int_equal(query_int(db, "PRAGMA wal_checkpoint(TRUNCATE)"), 0);
}

static void round_teardown(round_state *rs)
{
    dw_close(rs->h);
    rs->h = NULL;
    free(rs->ex);
    rs->ex = NULL;
    free(rs->moves);
    rs->moves = NULL;
    test_db_close(&rs->t);
}

typedef struct proc {
    const char *role;
    int index;
    pid_t pid;
    int status;
    int ended;
    int killed; /* by the parent, after another child failed */
} proc;

static void set_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFD);
    assert_true(fl >= 0);
    assert_int_equal(fcntl(fd, F_SETFD, fl | FD_CLOEXEC), 0);
}

static pid_t spawn(const round_state *rs, const char *role, int index,
                   int stop_fd, int done_fd)
{
    char idx[16], sfd[16], dfd[16], prm[256];
    snprintf(idx, sizeof idx, "%d", index);
    snprintf(sfd, sizeof sfd, "%d", stop_fd);
    snprintf(dfd, sizeof dfd, "%d", done_fd);
    params_format(&rs->p, prm, sizeof prm);
    char *args[] = {test_self, (char *)CHILD_FLAG, (char *)role, idx,
                    (char *)rs->t.path, (char *)rs->t.dir, sfd, dfd,
                    prm, NULL};
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        execv(test_self, args);
        _exit(127);
    }
    assert_true(pid > 0);
    return pid;
}

/* Collects children that ended; 1 when one of them failed. */
static int reap(proc *ps, int n)
{
    int failed = 0;
    for (int i = 0; i < n; i++) {
        if (ps[i].ended)
            continue;
        pid_t r = waitpid(ps[i].pid, &ps[i].status, WNOHANG);
        assert_true(r >= 0 || errno == EINTR);
        if (r == ps[i].pid)
            ps[i].ended = 1;
        if (ps[i].ended && !(WIFEXITED(ps[i].status) &&
                             WEXITSTATUS(ps[i].status) == 0))
            failed = 1;
    }
    return failed;
}

static void kill_all(proc *ps, int n)
{
    for (int i = 0; i < n; i++)
        if (!ps[i].ended) {
            kill(ps[i].pid, SIGKILL);
            waitpid(ps[i].pid, &ps[i].status, 0);
            ps[i].ended = 1;
            ps[i].killed = 1;
        }
}

/* Runs the children: all start, the parent waits until the backfill has
 * finished and every writer, reader and the mover reports its quota done,
 * then closes the stop pipe and waits for all. */
static void run_children(round_state *rs)
{
    int stop[2], done[2];
    assert_int_equal(pipe(stop), 0);
    assert_int_equal(pipe(done), 0);
    /* The children must see the stop pipe close when we close our end, so
     * they may not inherit it; nor our end of the done pipe. */
    set_cloexec(stop[1]);
    set_cloexec(done[0]);
    proc ps[16];
    int n = 0;
    for (int w = 0; w < rs->p.writers; w++)
        ps[n++] = (proc){"writer", w, 0, 0, 0, 0};
    for (int r = 0; r < rs->p.readers; r++)
        ps[n++] = (proc){"reader", r, 0, 0, 0, 0};
    ps[n++] = (proc){"mover", 0, 0, 0, 0, 0};
    int bf = n;
    ps[n++] = (proc){"backfill", 0, 0, 0, 0, 0};
    for (int i = 0; i < n; i++)
        ps[i].pid = spawn(rs, ps[i].role, ps[i].index, stop[0], done[1]);
    close(stop[0]);
    close(done[1]);

    int want = rs->p.writers + rs->p.readers + 1, got = 0, failed = 0;
    time_t t0 = time(NULL);
    while (!(failed = reap(ps, n)) && !(ps[bf].ended && got >= want)) {
        struct pollfd pf = {done[0], POLLIN, 0};
        if (poll(&pf, 1, 5) > 0) {
            char buf[64];
            ssize_t r = read(done[0], buf, sizeof buf);
            if (r > 0)
                got += (int)r;
        }
        if (time(NULL) - t0 > PARENT_LIMIT_S) {
            kill_all(ps, n);
            fail_msg("round %d: the children did not finish in %d s",
                     rs->p.round, PARENT_LIMIT_S);
        }
    }
    /* After a failure the others' work proves nothing more (and the mover
     * would wait for a backfill that may never finish). */
    if (failed)
        kill_all(ps, n);
    close(stop[1]); /* stop */
    for (;;) {
        reap(ps, n);
        int all = 1;
        for (int i = 0; i < n; i++)
            all &= ps[i].ended;
        if (all)
            break;
        if (time(NULL) - t0 > PARENT_LIMIT_S) {
            kill_all(ps, n);
            fail_msg("round %d: the children did not stop", rs->p.round);
        }
        sleep_ms(1);
    }
    close(done[0]);
    for (int i = 0; i < n; i++) {
        int st = ps[i].status;
        if ((WIFEXITED(st) && WEXITSTATUS(st) == 0) || ps[i].killed)
            continue;
        print_error("round %d (seed %d): %s %d ended with %s %d\n",
                    rs->p.round, rs->p.seed, ps[i].role, ps[i].index,
                    WIFEXITED(st) ? "exit code" : "signal",
                    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        failed = 1;
    }
    assert_false(failed);
}

static int round_seed(int round)
{
    const char *s = getenv("DW_CONC_SEED");
    return (s ? atoi(s) : 20260501) + round;
}

static int env_autockpt(void)
{
    const char *s = getenv("DW_CONC_AUTOCHECKPOINT");
    return s ? atoi(s) : 0;
}

static void run_round(const params *given)
{
    g_quiet = 0;
    params p = *given;
    p.seed = round_seed(p.round);
    p.autockpt = env_autockpt();
    round_state rs;
    round_setup(&rs, &p);
    run_children(&rs);
    load_logs(&rs, 1);
    sqlite3 *db = rs.t.db;

    /* The stage is where the mover left it. */
    int stage = -1;
    assert_dw_ok(rs.h, dw_stage_get(&stage, rs.h));
    assert_int_equal(stage, rs.moves[rs.nmoves - 1].to);
    assert_int_equal(stage, p.final_stage);

    /* Every acknowledged write, on the side the final stage trusts. */
    assert_int_equal(check_trusted(&rs, stage), 0);

    /* The other side agrees: the backfill is done (calling it again
     * finishes at once), the verification is clean, and plain SQL finds
     * new == map(old). */
    dw_backfill_progress bp;
    assert_dw_ok(rs.h, dw_backfill(&bp, rs.h, NULL));
    assert_int_equal(bp.finished, 1);
    int64_t present = 0;
    for (int i = 0; i < rs.nex; i++)
        present += rs.ex[i].present;
    dw_verify_result vr;
    assert_dw_ok(rs.h, dw_verify(&vr, rs.h, NULL));
    if (!vr.clean)
        print_error("verification: %lld missing, %lld extra, %lld different\n",
                    (long long)vr.missing, (long long)vr.extra,
                    (long long)vr.different);
    assert_true(vr.clean && vr.full && vr.finished);
    assert_int_equal(vr.keys, present);
    assert_int_equal(check_mapping(db), 0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM items"), present);

    /* Every stage move, and nothing else, in the history. */
    assert_int_equal(check_history(&rs), 0);

    /* The file: sound before and after the parent, alone now, checkpoints
     * the whole WAL into it, and the data survives the checkpoint. */
    char buf[64];
    assert_string_equal(query_text(db, "PRAGMA integrity_check", buf,
                                   sizeof buf),
                        "ok");
    assert_int_equal(query_int(db, "PRAGMA wal_checkpoint(TRUNCATE)"), 0);
    assert_string_equal(query_text(db, "PRAGMA integrity_check", buf,
                                   sizeof buf),
                        "ok");
    assert_int_equal(check_trusted(&rs, stage), 0);
    assert_int_equal(check_mapping(db), 0);

    print_message("round %d (seed %d%s): %d writers, %d readers, backfill, "
                  "mover; %lld acknowledged writes (%lld while the backfill "
                  "ran; %lld upserts, %lld qty updates, %lld deletes; by "
                  "method %lld/%lld/%lld/%lld), %lld busy; %lld reads by "
                  "writers, %lld by readers; %d stage moves (%lld while the "
                  "backfill ran, %lld past the closed gate, %lld "
                  "verifications); backfill %lld batches in %lld calls "
                  "(%lld busy); ends at %s\n",
                  p.round, p.seed, p.autockpt ? ", autocheckpoint on" : "",
                  p.writers, p.readers, (long long)rs.acked,
                  (long long)rs.acked_early,
                  (long long)rs.by_op[OP_UPSERT], (long long)rs.by_op[OP_QTY],
                  (long long)rs.by_op[OP_DELETE], (long long)rs.by_method[0],
                  (long long)rs.by_method[1], (long long)rs.by_method[2],
                  (long long)rs.by_method[3], (long long)rs.busy_writes,
                  (long long)rs.writer_reads, (long long)rs.reads,
                  rs.nmoves - 1, (long long)rs.moves_early,
                  (long long)rs.gate_forced,
                  (long long)rs.verifies, (long long)rs.bf_batches,
                  (long long)rs.bf_calls, (long long)rs.bf_busy,
                  dw_stage_name(stage));
    round_teardown(&rs);
}

/* round seed writers readers rows quota reads busy_ms batch_rows pause_ms
 * force_gate final_stage autockpt */
static void test_round_1(void **state)
{
    (void)state;
    params p = {1, 0, 3, 1, 3000, 250, 300, 5, 40, 2, 0, DW_STAGE_LIVE, 0};
    run_round(&p);
}

static void test_round_2(void **state)
{
    (void)state;
    params p = {2, 0, 2, 2, 2500, 300, 300, 0, 25, 1, 1, DW_STAGE_RAMPDOWN, 0};
    run_round(&p);
}

static void test_round_3(void **state)
{
    (void)state;
    params p = {3, 0, 3, 1, 4000, 250, 300, 1, 60, 3, 0, DW_STAGE_SHADOW, 0};
    run_round(&p);
}

static void test_round_4(void **state)
{
    (void)state;
    params p = {4, 0, 3, 1, 3000, 250, 300, 20, 30, 0, 1,
                DW_STAGE_DUAL_WRITE, 0};
    run_round(&p);
}

/* The checks can fail: a writer runs in this process (no other process on
 * the file), the checks pass, then damage the file or the expected history
 * in ways a defect would, and each check must see it. */
static void test_checks_see_damage(void **state)
{
    (void)state;
    params p = {9, 0, 1, 0, 300, 120, 0, 5, 50, 0, 0, DW_STAGE_LIVE, 0};
    p.seed = round_seed(p.round);
    round_state rs;
    round_setup(&rs, &p);
    sqlite3 *db = rs.t.db;

    child c;
    memset(&c, 0, sizeof c);
    c.role = "writer";
    c.path = rs.t.path;
    c.dir = rs.t.dir;
    c.stop_fd = -1;
    c.done_fd = -1;
    c.p = p;
    c.t0 = time(NULL);
    c.r.s = (uint64_t)p.seed;
    child_open(&c);
    assert_int_equal(writer_main(&c), 0);
    child_close(&c);

    load_logs(&rs, 0);
    assert_dw_ok(rs.h, dw_backfill(NULL, rs.h, NULL));
    move *m = add_move(&rs);
    *m = (move){DW_STAGE_DUAL_WRITE, DW_STAGE_LIVE, 1, "to live"};
    assert_dw_ok(rs.h, dw_stage_set(rs.h, m->to, m->reason, DW_STAGE_FORCE));
    assert_int_equal(check_trusted(&rs, DW_STAGE_LIVE), 0);
    assert_int_equal(check_trusted(&rs, DW_STAGE_DUAL_WRITE), 0);
    assert_int_equal(check_mapping(db), 0);
    assert_int_equal(check_history(&rs), 0);

    /* A key the writer changed, still present. */
    int64_t id = -1;
    for (int i = rs.nex - 1; i >= 0 && id < 0; i--)
        if (rs.ex[i].present && rs.ex[i].name[0] == 'w')
            id = key_of(&rs, i);
    assert_true(id > 0);
    char sql[256];

    g_quiet = 1;
    /* An acknowledged value lost on the trusted side. */
    snprintf(sql, sizeof sql,
             "UPDATE items_v2 SET qty = qty + 1 WHERE id = %lld;",
             (long long)id);
    exec_ok(db, sql);
    assert_int_equal(check_trusted(&rs, DW_STAGE_LIVE), 1);
    assert_int_equal(check_trusted(&rs, DW_STAGE_DUAL_WRITE), 0);
    assert_int_equal(check_mapping(db), 1);
    snprintf(sql, sizeof sql,
             "UPDATE items_v2 SET qty = qty - 1 WHERE id = %lld;",
             (long long)id);
    exec_ok(db, sql);

    /* An acknowledged key gone from both sides: the sides agree, the
     * trusted one lacks it. */
    snprintf(sql, sizeof sql,
             "DELETE FROM items WHERE id = %lld;"
             "DELETE FROM items_v2 WHERE id = %lld;",
             (long long)id, (long long)id);
    exec_ok(db, sql);
    assert_int_equal(check_mapping(db), 0);
    assert_int_equal(check_trusted(&rs, DW_STAGE_LIVE), 1);

    /* A deleted key back. */
    snprintf(sql, sizeof sql,
             "INSERT INTO items_v2 VALUES(%lld, 'GHOST', 1);",
             (long long)NEW_BASE + NEW_PER_WRITER - 1);
    int ghost = !rs.ex[key_index(&rs, NEW_BASE + NEW_PER_WRITER - 1)].present;
    if (ghost) {
        exec_ok(db, sql);
        assert_int_equal(check_trusted(&rs, DW_STAGE_LIVE), 2);
    }

    /* A move the history does not have, and one it has but not made. */
    *add_move(&rs) = (move){DW_STAGE_LIVE, DW_STAGE_SHADOW, 0, "x"};
    assert_int_equal(check_history(&rs), 1);
    rs.nmoves -= 2;
    assert_int_equal(check_history(&rs), 1);
    g_quiet = 0;
    round_teardown(&rs);
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], CHILD_FLAG) == 0)
        return child_main(argc, argv);
    test_self_init(argv[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checks_see_damage),
        cmocka_unit_test(test_round_1),
        cmocka_unit_test(test_round_2),
        cmocka_unit_test(test_round_3),
        cmocka_unit_test(test_round_4),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
