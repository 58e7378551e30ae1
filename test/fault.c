#include "fault.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- failing allocator ---------------------------------------------------- */

static sqlite3_mem_methods g_real_mem;
static int g_mem_installed;
static int64_t g_mem_count;       /* allocations attempted since the arm */
static int64_t g_mem_fail_at;     /* 0: not armed */
static int g_mem_persistent;
static int g_mem_failed;
static int64_t g_mem_outstanding;

static int mem_should_fail(void)
{
    if (!g_mem_fail_at)
        return 0;
    g_mem_count++;
    if (g_mem_count == g_mem_fail_at ||
        (g_mem_persistent && g_mem_count > g_mem_fail_at)) {
        g_mem_failed++;
        return 1;
    }
    return 0;
}

static void *mem_malloc(int n)
{
    if (mem_should_fail())
        return NULL;
    void *p = g_real_mem.xMalloc(n);
    if (p)
        g_mem_outstanding++;
    return p;
}

static void mem_free(void *p)
{
    if (p)
        g_mem_outstanding--;
    g_real_mem.xFree(p);
}

static void *mem_realloc(void *p, int n)
{
    if (mem_should_fail())
        return NULL;
    return g_real_mem.xRealloc(p, n);
}

static int mem_size(void *p) { return g_real_mem.xSize(p); }
static int mem_roundup(int n) { return g_real_mem.xRoundup(n); }
static int mem_init(void *a) { return g_real_mem.xInit(a); }
static void mem_shutdown(void *a) { g_real_mem.xShutdown(a); }

void fault_mem_install(void)
{
    if (g_mem_installed)
        return;
    sqlite3_shutdown();
    assert_int_equal(sqlite3_config(SQLITE_CONFIG_GETMALLOC, &g_real_mem),
                     SQLITE_OK);
    static sqlite3_mem_methods wrap;
    wrap = g_real_mem;
    wrap.xMalloc = mem_malloc;
    wrap.xFree = mem_free;
    wrap.xRealloc = mem_realloc;
    wrap.xSize = mem_size;
    wrap.xRoundup = mem_roundup;
    wrap.xInit = mem_init;
    wrap.xShutdown = mem_shutdown;
    assert_int_equal(sqlite3_config(SQLITE_CONFIG_MALLOC, &wrap), SQLITE_OK);
    /* Lookaside would satisfy small allocations without calling us, hiding
     * their failure points. */
    assert_int_equal(sqlite3_config(SQLITE_CONFIG_LOOKASIDE, 0, 0), SQLITE_OK);
    assert_int_equal(sqlite3_initialize(), SQLITE_OK);
    g_mem_installed = 1;
}

void fault_mem_arm(int n, int persistent)
{
    g_mem_count = 0;
    g_mem_failed = 0;
    g_mem_persistent = persistent;
    g_mem_fail_at = n;
}

int fault_mem_disarm(void)
{
    g_mem_fail_at = 0;
    return g_mem_failed;
}

int64_t fault_mem_outstanding(void) { return g_mem_outstanding; }

/* ---- failing VFS ---------------------------------------------------------- */

typedef struct fault_file {
    sqlite3_file base;
    sqlite3_file *real; /* follows this struct in the same allocation */
} fault_file;

static sqlite3_vfs *g_real_vfs;
static sqlite3_vfs g_fault_vfs;
static sqlite3_io_methods g_fault_io;
static unsigned g_io_kinds;
static int g_io_count;
static int g_io_fail_at;
static int g_io_persistent;
static int g_io_err;
static int g_io_failed;
static int g_crash_at; /* 0: no crash armed */
static int g_crash_code;
static int g_sync_count; /* syncs since the crash was armed */
static int g_calls[3];   /* write, sync, truncate since the arm */

#define REAL(f) (((fault_file *)(f))->real)

/* Counts a call of `kind` and says whether it must fail. */
static int io_should_fail(unsigned kind)
{
    g_calls[kind == FAULT_WRITE ? 0 : kind == FAULT_SYNC ? 1 : 2]++;
    if (kind == FAULT_SYNC && g_crash_at && ++g_sync_count == g_crash_at)
        _exit(g_crash_code);
    if (!g_io_fail_at || !(g_io_kinds & kind))
        return 0;
    g_io_count++;
    if (g_io_count == g_io_fail_at ||
        (g_io_persistent && g_io_count > g_io_fail_at)) {
        g_io_failed++;
        return 1;
    }
    return 0;
}

static int io_error(int extended)
{
    return g_io_err == SQLITE_FULL ? SQLITE_FULL : extended;
}

static int ff_close(sqlite3_file *f)
{
    int rc = REAL(f)->pMethods ? REAL(f)->pMethods->xClose(REAL(f)) : SQLITE_OK;
    return rc;
}

static int ff_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    return REAL(f)->pMethods->xRead(REAL(f), buf, n, off);
}

static int ff_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    if (io_should_fail(FAULT_WRITE))
        return io_error(SQLITE_IOERR_WRITE);
    return REAL(f)->pMethods->xWrite(REAL(f), buf, n, off);
}

static int ff_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    if (io_should_fail(FAULT_TRUNCATE))
        return io_error(SQLITE_IOERR_TRUNCATE);
    return REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int ff_sync(sqlite3_file *f, int flags)
{
    if (io_should_fail(FAULT_SYNC))
        return io_error(SQLITE_IOERR_FSYNC);
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int ff_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int ff_lock(sqlite3_file *f, int lock)
{
    return REAL(f)->pMethods->xLock(REAL(f), lock);
}

static int ff_unlock(sqlite3_file *f, int lock)
{
    return REAL(f)->pMethods->xUnlock(REAL(f), lock);
}

static int ff_check_reserved(sqlite3_file *f, int *out)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int ff_file_control(sqlite3_file *f, int op, void *arg)
{
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int ff_sector_size(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int ff_device_characteristics(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int ff_shm_map(sqlite3_file *f, int region, int size, int extend,
                      void volatile **out)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), region, size, extend, out);
}

static int ff_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}

static void ff_shm_barrier(sqlite3_file *f)
{
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int ff_shm_unmap(sqlite3_file *f, int delete_flag)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), delete_flag);
}

static int ff_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **out)
{
    return REAL(f)->pMethods->xFetch(REAL(f), off, n, out);
}

static int ff_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static int fv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f,
                   int flags, int *out_flags)
{
    (void)vfs;
    fault_file *ff = (fault_file *)f;
    ff->real = (sqlite3_file *)(ff + 1);
    memset(ff->real, 0, (size_t)g_real_vfs->szOsFile);
    int rc = g_real_vfs->xOpen(g_real_vfs, name, ff->real, flags, out_flags);
    /* SQLite calls xClose only when pMethods is set, so set it only on
     * success (the real file's own pMethods says whether it needs closing). */
    f->pMethods = rc == SQLITE_OK ? &g_fault_io : NULL;
    if (rc != SQLITE_OK && ff->real->pMethods)
        ff->real->pMethods->xClose(ff->real);
    return rc;
}

static int fv_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
    (void)v;
    return g_real_vfs->xDelete(g_real_vfs, name, sync_dir);
}

static int fv_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    (void)v;
    return g_real_vfs->xAccess(g_real_vfs, name, flags, out);
}

static int fv_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out)
{
    (void)v;
    return g_real_vfs->xFullPathname(g_real_vfs, name, n, out);
}

static void *fv_dlopen(sqlite3_vfs *v, const char *name)
{
    (void)v;
    return g_real_vfs->xDlOpen(g_real_vfs, name);
}

static void fv_dlerror(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    g_real_vfs->xDlError(g_real_vfs, n, out);
}

static void (*fv_dlsym(sqlite3_vfs *v, void *lib, const char *sym))(void)
{
    (void)v;
    return g_real_vfs->xDlSym(g_real_vfs, lib, sym);
}

static void fv_dlclose(sqlite3_vfs *v, void *lib)
{
    (void)v;
    g_real_vfs->xDlClose(g_real_vfs, lib);
}

static int fv_randomness(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return g_real_vfs->xRandomness(g_real_vfs, n, out);
}

static int fv_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return g_real_vfs->xSleep(g_real_vfs, us);
}

static int fv_current_time(sqlite3_vfs *v, double *out)
{
    (void)v;
    return g_real_vfs->xCurrentTime(g_real_vfs, out);
}

static int fv_get_last_error(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return g_real_vfs->xGetLastError(g_real_vfs, n, out);
}

static int fv_current_time_int64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    (void)v;
    return g_real_vfs->xCurrentTimeInt64(g_real_vfs, out);
}

void fault_vfs_register(void)
{
    if (g_real_vfs)
        return;
    g_real_vfs = sqlite3_vfs_find(NULL);
    assert_non_null(g_real_vfs);
    /* Version 3 methods: WAL needs the shared-memory calls. */
    sqlite3_io_methods io = {3,
                             ff_close,
                             ff_read,
                             ff_write,
                             ff_truncate,
                             ff_sync,
                             ff_file_size,
                             ff_lock,
                             ff_unlock,
                             ff_check_reserved,
                             ff_file_control,
                             ff_sector_size,
                             ff_device_characteristics,
                             ff_shm_map,
                             ff_shm_lock,
                             ff_shm_barrier,
                             ff_shm_unmap,
                             ff_fetch,
                             ff_unfetch};
    g_fault_io = io;
    sqlite3_vfs v = {2,
                     (int)sizeof(fault_file) + g_real_vfs->szOsFile,
                     g_real_vfs->mxPathname,
                     NULL,
                     FAULT_VFS,
                     NULL,
                     fv_open,
                     fv_delete,
                     fv_access,
                     fv_full_pathname,
                     fv_dlopen,
                     fv_dlerror,
                     fv_dlsym,
                     fv_dlclose,
                     fv_randomness,
                     fv_sleep,
                     fv_current_time,
                     fv_get_last_error,
                     fv_current_time_int64,
                     NULL,
                     NULL,
                     NULL};
    g_fault_vfs = v;
    assert_int_equal(sqlite3_vfs_register(&g_fault_vfs, 0), SQLITE_OK);
}

void fault_vfs_arm(unsigned kinds, int n, int persistent, int err)
{
    memset(g_calls, 0, sizeof g_calls);
    g_io_kinds = kinds;
    g_io_count = 0;
    g_io_failed = 0;
    g_io_persistent = persistent;
    g_io_err = err;
    g_io_fail_at = n;
}

void fault_vfs_crash_at_sync(int n, int code)
{
    memset(g_calls, 0, sizeof g_calls);
    g_sync_count = 0;
    g_crash_code = code;
    g_crash_at = n;
}

int fault_vfs_disarm(void)
{
    g_io_fail_at = 0;
    g_crash_at = 0;
    return g_io_failed;
}

int fault_vfs_calls(unsigned kinds)
{
    return ((kinds & FAULT_WRITE) ? g_calls[0] : 0) +
           ((kinds & FAULT_SYNC) ? g_calls[1] : 0) +
           ((kinds & FAULT_TRUNCATE) ? g_calls[2] : 0);
}

sqlite3 *test_db_connect_vfs(const test_db *t)
{
    fault_vfs_register();
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(t->path, &db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                             FAULT_VFS);
    assert_int_equal(rc, SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

/* ---- the world ------------------------------------------------------------ */

static const char *const WORLD_KEY[] = {"id"};
static const dw_column_map WORLD_UP[] = {{"label", "upper(name)"},
                                         {"qty", "qty"}};
static const dw_column_map WORLD_DOWN[] = {{"name", "lower(label)"},
                                           {"qty", "qty"}};

void world_create(sqlite3 *db, int rows)
{
    char sql[256];
    exec_ok(db,
            "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            "  qty INTEGER NOT NULL);"
            "CREATE TABLE items_v2(id INTEGER PRIMARY KEY, label TEXT NOT NULL,"
            "  qty INTEGER NOT NULL CHECK (qty >= 0));"
            "CREATE TABLE item_tags(tag TEXT PRIMARY KEY);");
    snprintf(sql, sizeof sql,
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
             "  WHERE i < %d) INSERT INTO items SELECT i, 'item' || i, i FROM n",
             rows);
    if (rows > 0)
        exec_ok(db, sql);
}

int world_open(dw_migration **out, sqlite3 *db, char **errmsg)
{
    dw_options o = DW_OPTIONS_INIT;
    o.name = WORLD_NAME;
    o.old_side.table = "items";
    o.old_side.key_columns = WORLD_KEY;
    o.old_side.nkey_columns = 1;
    o.new_side.table = "items_v2";
    o.new_side.key_columns = WORLD_KEY;
    o.new_side.nkey_columns = 1;
    o.up = WORLD_UP;
    o.nup = 2;
    o.down = WORLD_DOWN;
    o.ndown = 2;
    o.setup_sql = "INSERT INTO item_tags(tag) VALUES('default')"
                  "  ON CONFLICT(tag) DO NOTHING";
    return dw_open(out, db, &o, errmsg);
}

dw_migration *world_open_ok(sqlite3 *db)
{
    dw_migration *h = NULL;
    char *err = NULL;
    int rc = world_open(&h, db, &err);
    if (rc != DW_OK)
        print_error("world_open: %s: %s\n", dw_errstr(rc), err ? err : "?");
    sqlite3_free(err);
    assert_int_equal(rc, DW_OK);
    return h;
}

static int world_write(sqlite3 *db, const char *upsert, const char *del,
                       const dw_value *key, const world_item *it)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, it->delete_row ? del : upsert, -1, &st,
                                NULL);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_bind_int64(st, 1, key->i);
    if (!it->delete_row) {
        sqlite3_bind_text(st, 2, it->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, it->qty);
    }
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int world_write_old(sqlite3 *db, const dw_value *key, int nkey, void *payload)
{
    assert_int_equal(nkey, 1);
    return world_write(db,
                       "INSERT INTO items(id, name, qty) VALUES(?1, ?2, ?3)"
                       "  ON CONFLICT(id) DO UPDATE SET name = excluded.name,"
                       "  qty = excluded.qty",
                       "DELETE FROM items WHERE id = ?1", key, payload);
}

int world_write_new(sqlite3 *db, const dw_value *key, int nkey, void *payload)
{
    assert_int_equal(nkey, 1);
    return world_write(db,
                       "INSERT INTO items_v2(id, label, qty)"
                       "  VALUES(?1, upper(?2), ?3)"
                       "  ON CONFLICT(id) DO UPDATE SET label = excluded.label,"
                       "  qty = excluded.qty",
                       "DELETE FROM items_v2 WHERE id = ?1", key, payload);
}

/* Every row of a query, columns joined by '|', rows by '\n'. */
static char *query_all(sqlite3 *db, const char *sql, const char *row_sep)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        print_error("prepare failed: %s\n  in: %s\n", sqlite3_errmsg(db), sql);
    assert_int_equal(rc, SQLITE_OK);
    size_t cap = 256, len = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    out[0] = '\0';
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (int i = 0; i < sqlite3_column_count(st); i++) {
            const char *v = (const char *)sqlite3_column_text(st, i);
            const char *sep = i ? "|" : len ? row_sep : "";
            size_t need = len + strlen(sep) + (v ? strlen(v) : 4) + 1;
            if (need > cap) {
                while (need > cap)
                    cap *= 2;
                out = realloc(out, cap);
                assert_non_null(out);
            }
            len += (size_t)sprintf(out + len, "%s%s", sep, v ? v : "NULL");
        }
    }
    if (rc != SQLITE_DONE)
        print_error("query failed: %s\n  in: %s\n", sqlite3_errmsg(db), sql);
    assert_int_equal(rc, SQLITE_DONE);
    sqlite3_finalize(st);
    return out;
}

char *world_dump(sqlite3 *db, int side)
{
    return query_all(db,
                     side == DW_SIDE_OLD
                         ? "SELECT id, name, qty FROM items ORDER BY id"
                         : "SELECT id, label, qty FROM items_v2 ORDER BY id",
                     "\n");
}

char *world_disagreeing(sqlite3 *db)
{
    return query_all(
        db,
        "SELECT o.id FROM items o LEFT JOIN items_v2 n ON n.id = o.id"
        "  WHERE n.id IS NULL OR n.label IS NOT upper(o.name)"
        "     OR n.qty IS NOT o.qty"
        " UNION SELECT n.id FROM items_v2 n"
        "  WHERE NOT EXISTS (SELECT 1 FROM items o WHERE o.id = n.id)"
        " ORDER BY 1",
        ", ");
}

void world_snapshot_take(world_snapshot *s, sqlite3 *db)
{
    s->old_side = world_dump(db, DW_SIDE_OLD);
    s->new_side = world_dump(db, DW_SIDE_NEW);
    s->disagreeing = world_disagreeing(db);
}

void world_snapshot_free(world_snapshot *s)
{
    free(s->old_side);
    free(s->new_side);
    free(s->disagreeing);
    memset(s, 0, sizeof *s);
}

/* Whether `key` is in the ", "- or ","-separated list. */
static int list_has(const char *list, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = list; p && *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t m = strcspn(p, ", ");
        if (m == n && strncmp(p, key, n) == 0)
            return 1;
        p += m;
    }
    return 0;
}

void world_check(sqlite3 *db, const char *where, int authoritative,
                 const world_snapshot *before, const world_snapshot *after,
                 const char *may_diverge)
{
    char *now = world_dump(db, authoritative);
    const char *was = authoritative == DW_SIDE_OLD ? before->old_side
                                                   : before->new_side;
    const char *will = !after ? NULL
                       : authoritative == DW_SIDE_OLD ? after->old_side
                                                      : after->new_side;
    if (strcmp(now, was) != 0 && (!will || strcmp(now, will) != 0)) {
        print_error("%s: the %s side holds neither what it held nor what "
                    "was written:\n--- now\n%s\n--- before\n%s\n--- after\n%s\n",
                    where, authoritative == DW_SIDE_OLD ? "old" : "new", now,
                    was, will ? will : "(none)");
        fail();
    }
    free(now);

    char *disagreeing = world_disagreeing(db);
    char *copy = strdup(disagreeing);
    assert_non_null(copy);
    for (char *tok = strtok(copy, ", "); tok; tok = strtok(NULL, ", ")) {
        if (!list_has(before->disagreeing, tok) &&
            !list_has(may_diverge, tok)) {
            print_error("%s: key %s of old and new disagrees, and agreed "
                        "before (disagreeing now: %s; before: %s)\n",
                        where, tok, disagreeing, before->disagreeing);
            fail();
        }
    }
    free(copy);
    free(disagreeing);

    char ok[64];
    query_text(db, "PRAGMA integrity_check", ok, sizeof ok);
    if (strcmp(ok, "ok") != 0) {
        print_error("%s: integrity_check: %s\n", where, ok);
        fail();
    }
    world_state_check(db, where);
}

/* Each query returns a count of broken rows; its text says which rule. */
static const char *const STATE_RULES[] = {
    "SELECT count(*) FROM dw_migrations WHERE stage NOT BETWEEN 0 AND 5"
    "  OR canary_stage NOT BETWEEN 0 AND 5"
    "  OR canary_buckets NOT BETWEEN 0 AND 10000"
    "  OR promote_stage NOT BETWEEN -1 AND 5 OR mismatch_dropped < 0",
    /* The latest history entry ends at the stored stage. */
    "SELECT count(*) FROM dw_migrations m WHERE m.stage IS NOT"
    "  (SELECT to_stage FROM dw_history h WHERE h.migration_id = m.id"
    "   ORDER BY id DESC LIMIT 1)",
    "SELECT count(*) FROM dw_migrations m WHERE m.overrides !="
    "  (SELECT count(*) FROM dw_overrides o WHERE o.migration_id = m.id)",
    "SELECT count(*) FROM dw_backfill WHERE rows_done < 0 OR rows_total < 0"
    "  OR rows_written < 0 OR rows_deleted < 0 OR batches < 0"
    "  OR (state = 'done' AND finished IS NULL)",
    "SELECT count(*) FROM dw_backfill b WHERE NOT EXISTS"
    "  (SELECT 1 FROM dw_migrations m WHERE m.id = b.migration_id)",
    "SELECT count(*) FROM dw_verify_keys k WHERE NOT EXISTS"
    "  (SELECT 1 FROM dw_verify_runs r WHERE r.id = k.run_id)",
    "SELECT count(*) FROM dw_verify_runs WHERE missing < 0 OR extra < 0"
    "  OR different < 0 OR keys < 0"
    "  OR (finished AND missing + extra + different > keys)",
    "SELECT count(*) FROM dw_mismatch_log WHERE count < 1",
    "SELECT count(*) FROM dw_repair_queue WHERE attempts < 1"
    "  OR side NOT IN (1, 2)",
};

void world_state_check(sqlite3 *db, const char *where)
{
    /* Before the first dw_open nothing is stored: nothing to check. */
    if (query_int(db, "SELECT count(*) FROM sqlite_schema"
                      " WHERE name = 'dw_migrations'") == 0)
        return;
    for (size_t i = 0; i < sizeof STATE_RULES / sizeof *STATE_RULES; i++) {
        int64_t broken = query_int(db, STATE_RULES[i]);
        if (broken != 0) {
            print_error("%s: %lld state rows break the rule:\n  %s\n", where,
                        (long long)broken, STATE_RULES[i]);
            fail();
        }
    }
}
