/* Crash tests: a process dies at each sync of an operation, and what it
 * leaves must be whole.
 *
 * The model is a process crash, not a power loss: the child opens the
 * database through the fault VFS and ends itself with _exit() at its Nth
 * xSync, before that sync runs. Everything it wrote with write() before
 * that point is kept by the operating system (the page cache survives a
 * process), so the file holds exactly what a program killed at that
 * instant leaves behind: written but unsynced pages, hot journals, WAL
 * frames of an uncommitted transaction. SQLite recovers them when the
 * parent opens the file again; the library's promises must then hold.
 * (So in rollback-journal mode every crash point lands before the commit,
 * whose moment is the journal's deletion, not a sync; in WAL mode the
 * commit's own sync already lands after it, its frames being written.)
 *
 * For each operation (dual writes at every two-model stage, backfills,
 * stage moves, the contract and the restore), in WAL mode and in
 * rollback-journal mode (journal_mode=DELETE), synchronous FULL so that
 * every commit syncs: the child first runs it without a crash (its result
 * is the "after" picture and its sync count the number of points to walk),
 * then for N = 1, 2, ... it runs again on a fresh copy of the same starting
 * file and dies at sync N, until a run ends without reaching sync N. After
 * each run the parent, with the child gone, opens the file normally and
 * checks it: the whole picture (both sides, the setup data, every state
 * table but timestamps, the schema) equals the one before or the one after
 * -- or, for a backfill, a committed prefix of batches whose counters and
 * cursor agree with the rows; then it finishes the operation itself (a
 * redo, a resumed backfill, a contract after removing a leftover backup
 * file) and must reach exactly the "after" picture.
 *
 * The fault VFS is made the child's default VFS, so the contract's own
 * connection that creates the backup file crashes at its syncs too.
 *
 * Children are this program re-executed with CHILD_FLAG: a fresh process
 * carries no SQLite state across fork(), and under valgrind children run
 * natively. */
#include "fault.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHILD_FLAG "--dw-crash-child"

/* Exit codes of a child. */
enum {
    CHILD_DONE = 40,    /* the operation and the close ran to the end */
    CHILD_CRASHED = 41, /* _exit() at the armed sync */
    CHILD_USAGE = 42,
    CHILD_OPEN = 43,
    CHILD_OP = 44, /* the operation returned an unexpected code */
    CHILD_CLOSE = 45
};

/* No walk should come near this; a runaway one fails instead of looping. */
#define MAX_POINTS 400


/* ---- operations (run by the child, and by the parent to finish) -------- */

enum { OP_WRITE = 1, OP_BACKFILL, OP_STAGE, OP_CONTRACT, OP_RESTORE };
enum { W_INSERT, W_UPDATE, W_DELETE, W_TX };
enum { S_PLAIN, S_LEAVE_OFF, S_FORCED };

/* The keys the writes touch in a 20-row world. */
#define KEY_INSERT 41
#define KEY_UPDATE 5
#define KEY_DELETE 9

/* An insert gives both callbacks; an update and a delete only the trusted
 * side's, so the other side goes through the mapping (and a mapped delete). */
static int write_key(dw_migration *h, int auth, int64_t id, world_item it,
                     int both)
{
    dw_value k = dw_int(id);
    dw_write_fn wo = auth == DW_SIDE_OLD || both ? world_write_old : NULL;
    dw_write_fn wn = auth == DW_SIDE_NEW || both ? world_write_new : NULL;
    return dw_write(h, &k, 1, wo, wn, &it);
}

static int run_write(dw_migration *h, sqlite3 *db, int kind)
{
    int stage;
    int rc = dw_stage_get(&stage, h);
    if (rc != DW_OK)
        return rc;
    int auth = stage <= DW_STAGE_SHADOW ? DW_SIDE_OLD : DW_SIDE_NEW;
    world_item ins = {"fresh", 41, 0}, upd = {"renamed", 55, 0},
               del = {NULL, 0, 1};
    switch (kind) {
    case W_INSERT:
        return write_key(h, auth, KEY_INSERT, ins, 1);
    case W_UPDATE:
        return write_key(h, auth, KEY_UPDATE, upd, 0);
    case W_DELETE:
        return write_key(h, auth, KEY_DELETE, del, 0);
    default:
        /* Three keys in the application's transaction: one commit. */
        if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
            return DW_ERROR;
        rc = write_key(h, auth, KEY_INSERT, ins, 1);
        if (rc == DW_OK)
            rc = write_key(h, auth, KEY_UPDATE, upd, 0);
        if (rc == DW_OK)
            rc = write_key(h, auth, KEY_DELETE, del, 0);
        if (rc == DW_OK &&
            sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
            rc = DW_ERROR;
        if (rc != DW_OK && !sqlite3_get_autocommit(db))
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
}

/* Fixed batches (batch_ms < 0), so every run cuts the keys alike. */
static dw_backfill_options batches_of(int rows)
{
    dw_backfill_options o = DW_BACKFILL_OPTIONS_INIT;
    o.batch_rows = rows;
    o.batch_ms = -1;
    return o;
}

static int run_op(dw_migration *h, sqlite3 *db, int op, int arg,
                  const char *backup)
{
    switch (op) {
    case OP_WRITE:
        return run_write(h, db, arg % 10);
    case OP_BACKFILL: {
        dw_backfill_options o = batches_of(arg);
        return dw_backfill(NULL, h, &o);
    }
    case OP_STAGE:
        if (arg == S_PLAIN)
            return dw_stage_set(h, DW_STAGE_SHADOW, "crash: plain", 0);
        if (arg == S_LEAVE_OFF)
            return dw_stage_set(h, DW_STAGE_DUAL_WRITE, "crash: leave OFF", 0);
        return dw_stage_set(h, DW_STAGE_COMPLETE, "crash: forced",
                            DW_STAGE_FORCE);
    case OP_CONTRACT:
        return dw_contract(h, backup, "crash: contract");
    case OP_RESTORE:
        return dw_restore(h, backup, "crash: restore");
    default:
        return DW_EMISUSE;
    }
}

/* ---- the child ------------------------------------------------------------ */

/* argv: self CHILD_FLAG path n op arg backup. n = 0: no crash. Writes the
 * number of syncs it made to path.syncs when it ends without crashing.
 * Failures leave with _exit(): the exit code is the diagnosis, and a
 * sanitizer's leak report must not replace it. */
static int child_main(int argc, char **argv)
{
    if (argc != 7)
        _exit(CHILD_USAGE);
    test_db t;
    memset(&t, 0, sizeof t);
    snprintf(t.path, sizeof t.path, "%s", argv[2]);
    int n = atoi(argv[3]), op = atoi(argv[4]), arg = atoi(argv[5]);
    const char *backup = argv[6];

    /* Default VFS too: the contract opens the backup file itself. */
    fault_vfs_register();
    if (sqlite3_vfs_register(sqlite3_vfs_find(FAULT_VFS), 1) != SQLITE_OK)
        _exit(CHILD_OPEN);
    sqlite3 *db = test_db_connect_vfs(&t);
    if (sqlite3_exec(db, "PRAGMA synchronous=FULL", NULL, NULL, NULL) !=
        SQLITE_OK)
        _exit(CHILD_OPEN);
    dw_migration *h = NULL;
    char *err = NULL;
    if (world_open(&h, db, &err) != DW_OK) {
        fprintf(stderr, "crash child: world_open: %s\n", err ? err : "?");
        _exit(CHILD_OPEN);
    }
    /* Counted from here: the operation, then the close (a WAL checkpoint). */
    fault_vfs_crash_at_sync(n, CHILD_CRASHED);
    int rc = run_op(h, db, op, arg, backup);
    if (rc != DW_OK) {
        fprintf(stderr, "crash child: op %d/%d returned %d (%s): %s\n", op,
                arg, rc, dw_errstr(rc), dw_errmsg(h));
        _exit(CHILD_OP);
    }
    dw_close(h);
    if (sqlite3_close(db) != SQLITE_OK)
        _exit(CHILD_CLOSE);
    int syncs = fault_vfs_calls(FAULT_SYNC);
    fault_vfs_disarm();
    char p[320];
    snprintf(p, sizeof p, "%s.syncs", t.path);
    FILE *f = fopen(p, "w");
    if (!f || fprintf(f, "%d\n", syncs) < 0 || fclose(f) != 0)
        _exit(CHILD_CLOSE);
    return CHILD_DONE;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Runs a child and returns 1 when it crashed at the armed sync, 0 when it
 * ran to the end; anything else fails the test. */
static int run_child(const char *path, int n, int op, int arg,
                     const char *backup)
{
    char ns[16], ops[16], args[16];
    snprintf(ns, sizeof ns, "%d", n);
    snprintf(ops, sizeof ops, "%d", op);
    snprintf(args, sizeof args, "%d", arg);
    char *argv[] = {test_self,        (char *)CHILD_FLAG, (char *)path, ns, ops,
                    args,          (char *)backup,     NULL};
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        execv(test_self, argv);
        _exit(127);
    }
    assert_true(pid > 0);
    int status = 0;
    int ms = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        assert_true(r == 0 || (r < 0 && errno == EINTR));
        if (++ms > 120000) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("crash child (op %d/%d, N %d) did not end", op, arg, n);
        }
        sleep_ms(1);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == CHILD_CRASHED && n > 0)
        return 1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == CHILD_DONE)
        return 0;
    print_error("crash child (op %d/%d, N %d) ended with %s %d\n", op, arg, n,
                WIFEXITED(status) ? "exit code" : "signal",
                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    fail();
    return -1;
}

/* ---- files ------------------------------------------------------------------ */

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* The whole file, malloc'd (NULL when it does not exist), size in *n. */
static char *read_all(const char *path, size_t *n)
{
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096;
    char *p = malloc(cap);
    assert_non_null(p);
    size_t got;
    while ((got = fread(p + *n, 1, cap - *n, f)) > 0) {
        *n += got;
        if (*n == cap) {
            cap *= 2;
            p = realloc(p, cap);
            assert_non_null(p);
        }
    }
    assert_int_equal(ferror(f), 0);
    fclose(f);
    return p;
}

/* A database file and whatever SQLite keeps beside it. */
static void remove_db(const char *path)
{
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal",
                                         ".syncs"};
    char p[340];
    for (size_t i = 0; i < sizeof suffix / sizeof *suffix; i++) {
        snprintf(p, sizeof p, "%s%s", path, suffix[i]);
        unlink(p);
    }
}

static int same_file(const char *a, const char *b)
{
    size_t na, nb;
    char *pa = read_all(a, &na), *pb = read_all(b, &nb);
    int same = pa && pb && na == nb && memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return same;
}

/* ---- pictures ------------------------------------------------------------- */

typedef struct text {
    char *p;
    size_t len, cap;
} text;

static void text_add(text *t, const char *s)
{
    size_t n = strlen(s);
    if (t->len + n + 1 > t->cap) {
        while (t->len + n + 1 > t->cap)
            t->cap = t->cap ? t->cap * 2 : 256;
        t->p = realloc(t->p, t->cap);
        assert_non_null(t->p);
    }
    memcpy(t->p + t->len, s, n + 1);
    t->len += n;
}

/* Every row of a query: columns joined by '|', one row a line. */
static void dump_into(text *t, sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        print_error("prepare failed: %s\n  in: %s\n", sqlite3_errmsg(db), sql);
    assert_int_equal(rc, SQLITE_OK);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (int i = 0; i < sqlite3_column_count(st); i++) {
            const char *v = (const char *)sqlite3_column_text(st, i);
            text_add(t, i ? "|" : "");
            text_add(t, v ? v : "NULL");
        }
        text_add(t, "\n");
    }
    if (rc != SQLITE_DONE)
        print_error("query failed: %s\n  in: %s\n", sqlite3_errmsg(db), sql);
    assert_int_equal(rc, SQLITE_DONE);
    sqlite3_finalize(st);
}

static char *dump(sqlite3 *db, const char *sql)
{
    text t = {NULL, 0, 0};
    text_add(&t, "");
    dump_into(&t, db, sql);
    return t.p;
}

static int old_table_exists(sqlite3 *db)
{
    return query_int(db, "SELECT count(*) FROM sqlite_schema WHERE type ="
                         " 'table' AND name = 'items'") == 1;
}

/* Everything an operation may change, without the timestamps (which differ
 * from run to run): the whole database, as fault_db_dump() writes it. Two
 * pictures are equal when the databases hold the same data and state. */
static char *picture(sqlite3 *db) { return fault_db_dump(db); }

/* Prints the first line where two pictures part. */
static void print_difference(const char *name, const char *a, const char *b)
{
    int line = 1;
    const char *pa = a, *pb = b;
    while (*pa && *pa == *pb) {
        if (*pa == '\n') {
            line++;
            a = pa + 1;
            b = pb + 1;
        }
        pa++;
        pb++;
    }
    print_error("  vs %s, line %d: now \"%.*s\", %s \"%.*s\"\n", name, line,
                (int)strcspn(a, "\n"), a, name, (int)strcspn(b, "\n"), b);
}

static void check_integrity(sqlite3 *db, const char *where)
{
    char ok[128];
    query_text(db, "PRAGMA integrity_check", ok, sizeof ok);
    if (strcmp(ok, "ok") != 0) {
        print_error("%s: integrity_check: %s\n", where, ok);
        fail();
    }
}

/* ---- fixture: one directory, a template and the file each child crashes - */

typedef struct crash_fixture {
    int wal; /* 1: WAL, 0: rollback journal (DELETE) */
    char dir[256];
    char tmpl[300];        /* the starting file, copied for every run */
    char tmpl_backup[300]; /* a backup file for the restore's template */
    test_db work;          /* work.path: the file the child crashes on */
    char backup[300];      /* the contract's and the restore's backup path */
} crash_fixture;

static const int MODE_WAL = 1, MODE_DELETE = 0;

static int setup(void **state)
{
    crash_fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    fx->wal = *(const int *)*state;
    const char *base = getenv("TMPDIR");
    snprintf(fx->dir, sizeof fx->dir, "%s/dwcrash.XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->tmpl, sizeof fx->tmpl, "%s/template.db", fx->dir);
    snprintf(fx->tmpl_backup, sizeof fx->tmpl_backup, "%s/template-backup.db",
             fx->dir);
    snprintf(fx->work.path, sizeof fx->work.path, "%s/work.db", fx->dir);
    snprintf(fx->work.dir, sizeof fx->work.dir, "%s", fx->dir);
    snprintf(fx->backup, sizeof fx->backup, "%s/backup.db", fx->dir);
    *state = fx;
    return 0;
}

/* Every file of the directory goes: a crash can leave SQLite's orphaned
 * super-journals (work.db-mj...) beside the known ones. */
static int teardown(void **state)
{
    crash_fixture *fx = *state;
    DIR *d = opendir(fx->dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        char p[600];
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(p, sizeof p, "%s/%s", fx->dir, e->d_name);
            unlink(p);
        }
    }
    if (d)
        closedir(d);
    rmdir(fx->dir);
    free(fx);
    return 0;
}

/* The parent's connection on the crashed file, opened normally once the
 * child is gone. Its own writes (finishing an operation) need no
 * durability: only the child's syncs are crash points. */
static sqlite3 *parent_connect(crash_fixture *fx)
{
    sqlite3 *db = test_db_connect(&fx->work);
    exec_ok(db, "PRAGMA synchronous=OFF");
    return db;
}

static const char *mode_name(const crash_fixture *fx)
{
    return fx->wal ? "WAL" : "DELETE";
}

/* ---- templates ------------------------------------------------------------ */

/* Rows of the backfill world, and the new-side rows whose old row is gone:
 * one inside the key range, one past its end. */
#define BF_ROWS 60
#define BF_OLD_ROWS 58 /* 13 and 40 deleted */
static const int64_t BF_ORPHANS[] = {40, 500};
#define BF_BATCH 7

enum {
    T_WORLD,       /* 20 rows, moved to the given stage, backfilled */
    T_BACKFILL,    /* BF_ROWS with gaps, strays and orphans, at DUAL_WRITE */
    T_BF_RESUMED,  /* the same with three batches of BF_BATCH done */
    T_GATE_CLOSED, /* 20 rows at DUAL_WRITE, backfilled, never verified */
    T_CONTRACTED,  /* 20 rows contracted, backup in tmpl_backup */
    T_SHARED       /* 20 rows at COMPLETE, SHARING_NAME at COMPLETE too */
};

/* OP_CONTRACT's arg: the old table is shared with SHARING_NAME, whose use
 * keeps it (see world_share_old_table). */
enum { C_ALONE, C_SHARED };

static void move_to(dw_migration *h, int stage)
{
    assert_dw_ok(h, dw_stage_set(h, stage, "template", 0));
}

static int stop_after_three(const dw_backfill_progress *p, void *payload)
{
    (void)payload;
    return p->batches >= 3;
}

/* Builds the template file from scratch and closes it: a WAL template is
 * checkpointed into one file by the close. */
static void build_template(crash_fixture *fx, int kind, int stage)
{
    remove_db(fx->tmpl);
    remove_db(fx->tmpl_backup);
    test_db t;
    memset(&t, 0, sizeof t);
    snprintf(t.path, sizeof t.path, "%s", fx->tmpl);
    sqlite3 *db = test_db_connect(&t);
    exec_ok(db, "PRAGMA synchronous=OFF"); /* closed before any copy */
    exec_ok(db, fx->wal ? "PRAGMA journal_mode=WAL"
                        : "PRAGMA journal_mode=DELETE");
    world_create(db, kind == T_BACKFILL || kind == T_BF_RESUMED ? BF_ROWS
                                                                : 20);
    dw_migration *h = world_open_ok(db);
    if (kind == T_BACKFILL || kind == T_BF_RESUMED) {
        move_to(h, DW_STAGE_DUAL_WRITE);
        /* Behind the library's back: a gap, a row already equal, a stale
         * one, and orphans the backfill must delete. */
        exec_ok(db, "DELETE FROM items WHERE id IN (13, 40);"
                    "INSERT INTO items_v2 VALUES(3, 'ITEM3', 3),"
                    "  (20, 'WRONG', 7), (40, 'ORPHAN', 1),"
                    "  (500, 'ORPHAN', 2)");
        if (kind == T_BF_RESUMED) {
            dw_backfill_options o = batches_of(BF_BATCH);
            o.progress = stop_after_three;
            assert_dw(h, dw_backfill(NULL, h, &o), DW_MORE);
        }
    } else if (kind == T_GATE_CLOSED) {
        move_to(h, DW_STAGE_DUAL_WRITE);
        assert_dw_ok(h, dw_backfill(NULL, h, NULL));
    } else {
        if (kind == T_CONTRACTED || kind == T_SHARED)
            stage = DW_STAGE_COMPLETE;
        for (int s = DW_STAGE_DUAL_WRITE; s <= stage; s++) {
            move_to(h, s);
            if (s == DW_STAGE_DUAL_WRITE)
                backfill_and_verify(h);
        }
        if (kind == T_CONTRACTED)
            assert_dw_ok(h, dw_contract(h, fx->tmpl_backup, "template"));
        if (kind == T_SHARED)
            world_share_old_table(db);
    }
    dw_close(h);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    char p[340];
    snprintf(p, sizeof p, "%s-wal", fx->tmpl);
    assert_false(file_exists(p));
    snprintf(p, sizeof p, "%s-journal", fx->tmpl);
    assert_false(file_exists(p));
}

/* ---- the walk ------------------------------------------------------------- */

typedef struct walk {
    crash_fixture *fx;
    char label[96];
    int op, arg;
    char *before_pic, *after_pic;
    world_snapshot before, after; /* when the old table exists */
    int before_has_old, after_has_old;
    char *before_old; /* the old rows before (contract: what must be kept) */
    int syncs;        /* of the run without a crash */
    int points;
    int landed[3]; /* crash points found as before, as after, between */
    /* contract: crash points that left a backup file behind uncontracted */
    int leftover_backups;
    int leftover_whole; /* of them complete: the finishing contract used it */
    char *reused;       /* such a backup's bytes, until the finish checks */
    size_t reused_size;
} walk;

static void reset_work(walk *w)
{
    crash_fixture *fx = w->fx;
    remove_db(fx->work.path);
    remove_db(fx->backup);
    assert_true(test_copy_file(fx->tmpl, fx->work.path));
    if (w->op == OP_RESTORE)
        assert_true(test_copy_file(fx->tmpl_backup, fx->backup));
}

static int read_syncs(const char *path)
{
    char p[340];
    snprintf(p, sizeof p, "%s.syncs", path);
    size_t n;
    char *s = read_all(p, &n);
    assert_non_null(s);
    int v = atoi(s);
    free(s);
    return v;
}

static void take_picture(sqlite3 *db, char **pic, world_snapshot *snap,
                         int *has_old)
{
    *pic = picture(db);
    *has_old = old_table_exists(db);
    if (*has_old)
        world_snapshot_take(snap, db);
}

static int authoritative(int stage)
{
    return stage <= DW_STAGE_SHADOW ? DW_SIDE_OLD : DW_SIDE_NEW;
}

static int stored_stage(sqlite3 *db)
{
    return (int)query_int(db, "SELECT stage FROM dw_migrations WHERE name = '"
                              WORLD_NAME "'");
}

/* ---- contract and restore checks ------------------------------------------ */

/* A backup the contract relied on: a whole SQLite file holding every old
 * row, with its record. */
static void check_backup_file(const char *path, const char *old_rows,
                              const char *where)
{
    sqlite3 *b = NULL;
    int rc = sqlite3_open_v2(path, &b, SQLITE_OPEN_READONLY, NULL);
    if (rc != SQLITE_OK)
        print_error("%s: the backup does not open: %s\n", where,
                    sqlite3_errstr(rc));
    assert_int_equal(rc, SQLITE_OK);
    check_integrity(b, where);
    char *rows = dump(b, "SELECT id, name, qty FROM items ORDER BY id");
    /* world_dump() separates rows with newlines and ends without one. */
    size_t n = strlen(rows);
    if (n && rows[n - 1] == '\n')
        rows[n - 1] = '\0';
    if (strcmp(rows, old_rows) != 0) {
        print_error("%s: the backup's rows differ from the old model:\n"
                    "--- backup\n%s\n--- old\n%s\n",
                    where, rows, old_rows);
        fail();
    }
    free(rows);
    char v[128];
    query_text(b, "SELECT value FROM dw_backup_meta WHERE key = 'migration'",
               v, sizeof v);
    assert_string_equal(v, WORLD_NAME);
    assert_int_equal(query_int(b, "SELECT value FROM dw_backup_meta"
                                  " WHERE key = 'rows'"),
                     query_int(b, "SELECT count(*) FROM items"));
    query_text(b, "SELECT value FROM dw_backup_meta WHERE key = 'sha256'", v,
               sizeof v);
    assert_int_equal(strlen(v), 64);
    assert_int_equal(sqlite3_close(b), SQLITE_OK);
}

/* dw_restore from the backup brings the old table back identical. */
static void check_restore_round_trip(walk *w, const char *where)
{
    sqlite3 *db = parent_connect(w->fx);
    dw_migration *h = world_open_ok(db);
    assert_dw_ok(h, dw_restore(h, w->fx->backup, "crash: round trip"));
    char *old = world_dump(db, DW_SIDE_OLD);
    if (strcmp(old, w->before_old) != 0) {
        print_error("%s: restored rows differ:\n--- now\n%s\n--- then\n%s\n",
                    where, old, w->before_old);
        fail();
    }
    free(old);
    assert_int_equal(stored_stage(db), DW_STAGE_RAMPDOWN);
    char *dis = world_disagreeing(db);
    assert_string_equal(dis, "");
    free(dis);
    dw_close(h);
    world_state_check(db, where);
    check_integrity(db, where);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* ---- backfill checks -------------------------------------------------------- */

typedef struct bf_row {
    int present;
    char state[16];
    int64_t source, cursor_key, rows_done, rows_total, rows_written,
        rows_deleted, batches;
    char end_key[32];
} bf_row;

static void read_bf(sqlite3 *db, bf_row *r)
{
    memset(r, 0, sizeof *r);
    sqlite3_stmt *st = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(db,
                           "SELECT state, source, json_extract(cursor, '$[0]'),"
                           " end_key, rows_done, rows_total, rows_written,"
                           " rows_deleted, batches, cursor IS NULL"
                           " FROM dw_backfill",
                           -1, &st, NULL),
        SQLITE_OK);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        r->present = 1;
        snprintf(r->state, sizeof r->state, "%s",
                 (const char *)sqlite3_column_text(st, 0));
        r->source = sqlite3_column_int64(st, 1);
        r->cursor_key = sqlite3_column_int(st, 9) ? -1
                                                  : sqlite3_column_int64(st, 2);
        const char *e = (const char *)sqlite3_column_text(st, 3);
        snprintf(r->end_key, sizeof r->end_key, "%s", e ? e : "");
        r->rows_done = sqlite3_column_int64(st, 4);
        r->rows_total = sqlite3_column_int64(st, 5);
        r->rows_written = sqlite3_column_int64(st, 6);
        r->rows_deleted = sqlite3_column_int64(st, 7);
        r->batches = sqlite3_column_int64(st, 8);
        rc = sqlite3_step(st);
    }
    assert_int_equal(rc, SQLITE_DONE);
    sqlite3_finalize(st);
}

/* The lines of a world_dump() whose key is above k, in order. */
static char *rows_above(const char *d, int64_t k)
{
    text t = {NULL, 0, 0};
    text_add(&t, "");
    for (const char *p = d; *p;) {
        size_t n = strcspn(p, "\n");
        if (strtoll(p, NULL, 10) > k) {
            char line[256];
            snprintf(line, sizeof line, "%.*s\n", (int)n, p);
            text_add(&t, line);
        }
        p += n;
        if (*p)
            p++;
    }
    return t.p;
}

static int is_orphan(int64_t id)
{
    for (size_t i = 0; i < sizeof BF_ORPHANS / sizeof *BF_ORPHANS; i++)
        if (BF_ORPHANS[i] == id)
            return 1;
    return 0;
}

/* A backfill stopped between two committed batches: the cursor, the
 * counters and the rows must tell the same story. */
static void check_backfill_between(walk *w, sqlite3 *db, const char *where)
{
    int batch = w->arg ? w->arg : 1000;
    bf_row r;
    read_bf(db, &r);
    if (!r.present || strcmp(r.state, "running") != 0 || r.cursor_key < 0) {
        print_error("%s: neither before nor after, and no running backfill "
                    "(state '%s')\n",
                    where, r.state);
        fail();
    }
    assert_int_equal(r.source, DW_SIDE_OLD);
    assert_string_equal(r.end_key, "[60]");
    int64_t k = r.cursor_key;
    char sql[160];
    /* Source keys passed: exactly the old keys up to the cursor, each batch
     * a full one (only the last is short). */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM items WHERE id <= %lld",
             (long long)k);
    int64_t passed = query_int(db, sql);
    if (r.rows_done != passed || r.rows_done % batch != 0 ||
        r.batches != r.rows_done / batch) {
        print_error("%s: cursor [%lld] passes %lld old keys; stored rows_done "
                    "%lld, batches %lld (batch of %d)\n",
                    where, (long long)k, (long long)passed,
                    (long long)r.rows_done, (long long)r.batches, batch);
        fail();
    }
    /* Integer keys: the total is the rows passed and an estimate of the
     * rows among the integers after the cursor up to the end key (at
     * least the end key's, at most all of them). */
    if (k < 60) {
        assert_true(r.rows_total > r.rows_done);
        assert_true(r.rows_total <= r.rows_done + 60 - k);
    }
    /* Written: no more than the keys passed, no fewer than those passed
     * that disagreed at the start. */
    int64_t must_write = 0, deleted = 0;
    char *list = strdup(w->before.disagreeing);
    assert_non_null(list);
    for (char *tok = strtok(list, ", "); tok; tok = strtok(NULL, ", ")) {
        int64_t id = strtoll(tok, NULL, 10);
        if (id <= k && !is_orphan(id))
            must_write++;
    }
    free(list);
    for (size_t i = 0; i < sizeof BF_ORPHANS / sizeof *BF_ORPHANS; i++)
        deleted += BF_ORPHANS[i] <= k;
    if (r.rows_written > r.rows_done || r.rows_written < must_write ||
        r.rows_deleted != deleted) {
        print_error("%s: at cursor [%lld]: rows_written %lld (between %lld "
                    "and %lld), rows_deleted %lld (want %lld)\n",
                    where, (long long)k, (long long)r.rows_written,
                    (long long)must_write, (long long)r.rows_done,
                    (long long)r.rows_deleted, (long long)deleted);
        fail();
    }
    /* Up to the cursor the new side is level with the old; past it, it is
     * as the template left it. */
    char *dis = world_disagreeing(db);
    char *copy = strdup(dis);
    assert_non_null(copy);
    for (char *tok = strtok(copy, ", "); tok; tok = strtok(NULL, ", "))
        if (strtoll(tok, NULL, 10) <= k) {
            print_error("%s: key %s is behind the cursor [%lld] but not "
                        "copied (disagreeing: %s)\n",
                        where, tok, (long long)k, dis);
            fail();
        }
    free(copy);
    free(dis);
    char *now = world_dump(db, DW_SIDE_NEW);
    char *a = rows_above(now, k), *b = rows_above(w->before.new_side, k);
    if (strcmp(a, b) != 0) {
        print_error("%s: new rows past the cursor [%lld] changed:\n--- now\n"
                    "%s--- template\n%s",
                    where, (long long)k, a, b);
        fail();
    }
    free(a);
    free(b);
    free(now);
    /* No history entry until the last batch. */
    assert_int_equal(query_int(db, "SELECT count(*) FROM dw_history WHERE"
                                   " event = 'backfill'"),
                     0);
}

/* ---- one crash point -------------------------------------------------------- */

enum { AT_BEFORE, AT_AFTER, AT_BETWEEN };

static int classify(walk *w, sqlite3 *db, const char *where)
{
    char *pic = picture(db);
    int at = strcmp(pic, w->before_pic) == 0  ? AT_BEFORE
             : strcmp(pic, w->after_pic) == 0 ? AT_AFTER
                                              : AT_BETWEEN;
    if (at == AT_BETWEEN && w->op != OP_BACKFILL) {
        print_error("%s: the database is neither as before nor as after "
                    "the operation\n",
                    where);
        print_difference("before", pic, w->before_pic);
        print_difference("after", pic, w->after_pic);
        fail();
    }
    free(pic);
    return at;
}

static void expect_after(walk *w, sqlite3 *db, const char *where)
{
    char *pic = picture(db);
    if (strcmp(pic, w->after_pic) != 0) {
        print_error("%s: finishing the operation did not reach the state "
                    "of the run without a crash\n",
                    where);
        print_difference("after", pic, w->after_pic);
        fail();
    }
    free(pic);
}

/* Whether a backup file opens read-only and carries its digest record:
 * reported only, the tests require nothing of a file left behind. */
static int backup_is_whole(const char *path)
{
    sqlite3 *b = NULL;
    sqlite3_stmt *st = NULL;
    int whole = 0;
    if (sqlite3_open_v2(path, &b, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(b,
                           "SELECT count(*) FROM dw_backup_meta"
                           " WHERE key = 'sha256'",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        whole = sqlite3_column_int(st, 0) == 1;
    sqlite3_finalize(st);
    sqlite3_close(b);
    return whole;
}

/* The contract crashed before its commit: the old table is whole and the
 * migration not contracted. A backup file left behind is either complete
 * (the crash came after the backup's own commit): a backup of the old
 * model exactly as it is, which the finishing contract to that path then
 * uses, unchanged; or partial, and refused by the contract and the restore
 * alike, neither changing it, and removed (what an operator does next). */
static void contract_not_done(walk *w, sqlite3 *db, dw_migration *h,
                              const char *where)
{
    crash_fixture *fx = w->fx;
    if (!file_exists(fx->backup))
        return;
    w->leftover_backups++;
    if (backup_is_whole(fx->backup)) {
        w->leftover_whole++;
        w->reused = read_all(fx->backup, &w->reused_size);
        return;
    }
    size_t n0, n1;
    char *was = read_all(fx->backup, &n0);
    int rc = dw_contract(h, fx->backup, "crash: again");
    if (rc != DW_EMISUSE || !strstr(dw_errmsg(h), "exists")) {
        print_error("%s: dw_contract on the partial backup file a crash "
                    "left behind returned %d (%s): %s\n",
                    where, rc, dw_errstr(rc), dw_errmsg(h));
        fail();
    }
    rc = dw_restore(h, fx->backup, "crash: left behind");
    if (rc == DW_OK) {
        print_error("%s: dw_restore trusted the partial backup file a crash "
                    "left behind\n",
                    where);
        fail();
    }
    char *is = read_all(fx->backup, &n1);
    assert_true(is && n0 == n1 && memcmp(was, is, n0) == 0);
    free(was);
    free(is);
    classify(w, db, where); /* still as before */
    remove_db(fx->backup);
}

static void check_point(walk *w, int n, int crashed)
{
    crash_fixture *fx = w->fx;
    char where[200];
    snprintf(where, sizeof where, "%s [%s] %s at sync %d", w->label,
             mode_name(fx), crashed ? "crash" : "no crash", n);
    sqlite3 *db = parent_connect(fx);
    int has_old = old_table_exists(db);
    int stage = stored_stage(db);
    if (has_old) {
        /* Compared with the side the stage trusts, against the picture it
         * matched; old and new agree wherever they agreed. */
        const world_snapshot *base =
            w->before_has_old ? &w->before : &w->after;
        world_check(db, where, authoritative(stage), base,
                    w->before_has_old && w->after_has_old ? &w->after : NULL,
                    NULL);
    } else {
        check_integrity(db, where);
        world_state_check(db, where);
    }
    /* Dropped exactly when contracted; kept for the migration sharing it. */
    int contracted = (int)query_int(db, "SELECT contracted FROM dw_migrations"
                                        " WHERE name = '" WORLD_NAME "'");
    if (w->op == OP_CONTRACT && w->arg == C_SHARED)
        assert_true(has_old);
    else
        assert_int_equal(contracted, !has_old);
    /* Then the whole picture: as before or as after (a backfill may also
     * stand between two batches). */
    int at = classify(w, db, where);
    if (!crashed && at != AT_AFTER) {
        print_error("%s: ran to the end but is not as after\n", where);
        fail();
    }
    if (crashed)
        w->landed[at]++;
    if (w->op == OP_BACKFILL && at == AT_BETWEEN)
        check_backfill_between(w, db, where);

    dw_migration *h = world_open_ok(db);
    if (w->op == OP_BACKFILL) {
        /* What the library reports agrees with what is stored. */
        bf_row r;
        read_bf(db, &r);
        dw_backfill_progress p;
        assert_dw_ok(h, dw_backfill_status(&p, h));
        assert_int_equal(p.rows_done, r.rows_done);
        assert_int_equal(p.rows_written, r.rows_written);
        assert_int_equal(p.rows_deleted, r.rows_deleted);
        assert_int_equal(p.batches, r.batches);
        assert_true(p.rows_done <= p.rows_total);
        assert_int_equal(p.finished, strcmp(r.state, "done") == 0);
        assert_int_equal(p.stale, 0);
        assert_int_equal(p.source, r.present ? DW_SIDE_OLD : DW_SIDE_NONE);
    }
    if (w->op == OP_CONTRACT && at == AT_BEFORE)
        contract_not_done(w, db, h, where);
    if (w->op == OP_RESTORE && at == AT_BEFORE)
        assert_true(same_file(fx->backup, fx->tmpl_backup));
    if (w->op == OP_RESTORE && at == AT_AFTER) {
        /* Restored: a second restore is refused and changes nothing. */
        assert_int_not_equal(run_op(h, db, w->op, w->arg, fx->backup), DW_OK);
        expect_after(w, db, where);
    }
    if (at != AT_AFTER) {
        /* Finish (redo, resume) without faults: the same end state. */
        int rc = run_op(h, db, w->op, w->arg, fx->backup);
        if (rc != DW_OK)
            print_error("%s: finishing: %d (%s): %s\n", where, rc,
                        dw_errstr(rc), dw_errmsg(h));
        assert_int_equal(rc, DW_OK);
        expect_after(w, db, where);
        if (w->reused) {
            /* The contract used the complete backup as it was. */
            size_t size;
            char *is = read_all(fx->backup, &size);
            assert_true(is && size == w->reused_size &&
                        memcmp(is, w->reused, size) == 0);
            free(is);
            free(w->reused);
            w->reused = NULL;
        }
    }
    if (w->op == OP_BACKFILL) {
        dw_verify_result v;
        assert_dw_ok(h, dw_verify(&v, h, NULL));
        assert_true(v.clean && v.full && v.finished);
        assert_int_equal(v.keys, BF_OLD_ROWS);
    }
    dw_close(h);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    if (w->op == OP_CONTRACT) {
        check_backup_file(fx->backup, w->before_old, where);
        check_restore_round_trip(w, where);
    }
}

/* The run without a crash did what the operation is for: the other
 * checks compare against it. */
static void check_after_run(walk *w)
{
    sqlite3 *db = parent_connect(w->fx);
    switch (w->op) {
    case OP_WRITE:
        assert_string_equal(w->after.disagreeing, "");
        assert_int_equal(query_int(db, "SELECT count(*) FROM items WHERE id"
                                       " IN (41, 9) OR name = 'renamed'"),
                         w->arg % 10 == W_DELETE ? 0 : 2);
        break;
    case OP_BACKFILL:
        assert_string_equal(w->after.disagreeing, "");
        assert_int_equal(query_int(db, "SELECT count(*) FROM dw_history"
                                       " WHERE event = 'backfill'"),
                         1);
        break;
    case OP_STAGE:
        assert_int_equal(stored_stage(db), w->arg == S_PLAIN ? DW_STAGE_SHADOW
                                           : w->arg == S_LEAVE_OFF
                                               ? DW_STAGE_DUAL_WRITE
                                               : DW_STAGE_COMPLETE);
        assert_int_equal(query_int(db, "SELECT count(*) FROM item_tags"), 1);
        if (w->arg == S_FORCED) {
            assert_int_equal(query_int(db, "SELECT forced FROM dw_history"
                                           " ORDER BY id DESC LIMIT 1"),
                             1);
            char st[16];
            query_text(db, "SELECT state FROM dw_backfill", st, sizeof st);
            assert_string_equal(st, "stale");
        }
        break;
    case OP_CONTRACT:
        assert_int_equal(w->after_has_old, w->arg == C_SHARED);
        assert_int_equal(query_int(db, "SELECT contracted FROM dw_migrations"
                                       " WHERE name = '" WORLD_NAME "'"),
                         1);
        break;
    case OP_RESTORE:
        assert_true(w->after_has_old);
        assert_string_equal(w->after.old_side, w->before_old);
        assert_int_equal(stored_stage(db), DW_STAGE_RAMPDOWN);
        break;
    }
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* Walks every sync of one operation on the current template. */
static void walk_op(crash_fixture *fx, const char *label, int op, int arg)
{
    walk w;
    memset(&w, 0, sizeof w);
    w.fx = fx;
    w.op = op;
    w.arg = arg;
    snprintf(w.label, sizeof w.label, "%s", label);

    reset_work(&w);
    sqlite3 *db = parent_connect(fx);
    take_picture(db, &w.before_pic, &w.before, &w.before_has_old);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    if (op == OP_RESTORE) {
        /* The old rows to come back: the contract's template kept them
         * in the backup. */
        sqlite3 *b = NULL;
        assert_int_equal(sqlite3_open_v2(fx->tmpl_backup, &b,
                                         SQLITE_OPEN_READONLY, NULL),
                         SQLITE_OK);
        w.before_old = world_dump(b, DW_SIDE_OLD);
        sqlite3_close(b);
    } else if (w.before_has_old) {
        w.before_old = strdup(w.before.old_side);
    }

    /* The run without a crash gives the after picture and the sync count. */
    reset_work(&w);
    assert_int_equal(run_child(fx->work.path, 0, op, arg, fx->backup), 0);
    w.syncs = read_syncs(fx->work.path);
    db = parent_connect(fx);
    take_picture(db, &w.after_pic, &w.after, &w.after_has_old);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    assert_true(strcmp(w.before_pic, w.after_pic) != 0);
    check_after_run(&w);

    int n;
    for (n = 1; n <= MAX_POINTS; n++) {
        reset_work(&w);
        int crashed = run_child(fx->work.path, n, op, arg, fx->backup);
        check_point(&w, n, crashed);
        if (!crashed) {
            assert_int_equal(read_syncs(fx->work.path), w.syncs);
            break;
        }
    }
    assert_true(n <= MAX_POINTS);
    w.points = n - 1;
    printf("crash walk: %-44s %-6s %3d crash points (%d as before, ",
           w.label, mode_name(fx), w.points, w.landed[AT_BEFORE]);
    if (op == OP_BACKFILL)
        printf("%d between batches, ", w.landed[AT_BETWEEN]);
    printf("%d as after)", w.landed[AT_AFTER]);
    if (op == OP_CONTRACT)
        printf("; %d left a backup file, %d of them whole (used by the next contract)",
               w.leftover_backups, w.leftover_whole);
    printf("\n");
    /* Every sync of the run was a crash point, and there was one at least. */
    assert_int_equal(w.points, w.syncs);
    assert_true(w.points >= 1);

    remove_db(fx->work.path);
    remove_db(fx->backup);
    free(w.before_pic);
    free(w.after_pic);
    free(w.before_old);
    if (w.before_has_old)
        world_snapshot_free(&w.before);
    if (w.after_has_old)
        world_snapshot_free(&w.after);
}

/* ---- tests ------------------------------------------------------------------- */

static void test_dual_writes(void **state)
{
    crash_fixture *fx = *state;
    static const char *const kinds[] = {"insert", "update", "delete",
                                        "insert+update+delete in one tx"};
    for (int stage = DW_STAGE_DUAL_WRITE; stage <= DW_STAGE_RAMPDOWN;
         stage++) {
        build_template(fx, T_WORLD, stage);
        for (int kind = W_INSERT; kind <= W_TX; kind++) {
            char label[96];
            snprintf(label, sizeof label, "dw_write %s at %s", kinds[kind],
                     dw_stage_name(stage));
            walk_op(fx, label, OP_WRITE, stage * 10 + kind);
        }
    }
}

static void test_backfill(void **state)
{
    crash_fixture *fx = *state;
    build_template(fx, T_BACKFILL, 0);
    walk_op(fx, "dw_backfill, one batch", OP_BACKFILL, 0);
    walk_op(fx, "dw_backfill, 9 batches of 7", OP_BACKFILL, BF_BATCH);
    build_template(fx, T_BF_RESUMED, 0);
    walk_op(fx, "dw_backfill resumed after 3 of 9 batches", OP_BACKFILL,
            BF_BATCH);
}

static void test_stage_moves(void **state)
{
    crash_fixture *fx = *state;
    build_template(fx, T_WORLD, DW_STAGE_DUAL_WRITE);
    walk_op(fx, "dw_stage_set DUAL_WRITE -> SHADOW", OP_STAGE, S_PLAIN);
    build_template(fx, T_WORLD, DW_STAGE_OFF);
    walk_op(fx, "dw_stage_set OFF -> DUAL_WRITE (setup SQL)", OP_STAGE,
            S_LEAVE_OFF);
    build_template(fx, T_GATE_CLOSED, 0);
    walk_op(fx, "dw_stage_set DUAL_WRITE -> COMPLETE forced", OP_STAGE,
            S_FORCED);
}

static void test_contract_restore(void **state)
{
    crash_fixture *fx = *state;
    build_template(fx, T_WORLD, DW_STAGE_COMPLETE);
    walk_op(fx, "dw_contract with a backup", OP_CONTRACT, C_ALONE);
    build_template(fx, T_SHARED, 0);
    walk_op(fx, "dw_contract, old table shared", OP_CONTRACT, C_SHARED);
    build_template(fx, T_CONTRACTED, 0);
    walk_op(fx, "dw_restore", OP_RESTORE, 0);
}

#define CRASH_TEST(fn, mode)                                                   \
    {#fn " (" #mode ")", fn, setup, teardown, (void *)&(mode)}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], CHILD_FLAG) == 0)
        return child_main(argc, argv);
    test_self_init(argv[0]);

    const struct CMUnitTest tests[] = {
        CRASH_TEST(test_dual_writes, MODE_WAL),
        CRASH_TEST(test_dual_writes, MODE_DELETE),
        CRASH_TEST(test_backfill, MODE_WAL),
        CRASH_TEST(test_backfill, MODE_DELETE),
        CRASH_TEST(test_stage_moves, MODE_WAL),
        CRASH_TEST(test_stage_moves, MODE_DELETE),
        CRASH_TEST(test_contract_restore, MODE_WAL),
        CRASH_TEST(test_contract_restore, MODE_DELETE),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
