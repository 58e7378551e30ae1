#include "fault.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
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

/* Every live allocation with the mark it was made under, so that what a
 * known leak lost can be taken back (fault_mem_reclaim): open addressing,
 * linear probing, in memory of its own (libc's, not SQLite's). */
typedef struct live_entry {
    void *p;
    uint64_t mark;
} live_entry;

static live_entry *g_live;
static size_t g_live_cap; /* a power of two */
static size_t g_live_n;
static uint64_t g_mark = 1;

static size_t live_slot(const void *p)
{
    uint64_t h = (uint64_t)(uintptr_t)p >> 4;
    h *= 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 20) & (g_live_cap - 1);
}

static void live_put(void *p, uint64_t mark);

static void live_grow(void)
{
    live_entry *old = g_live;
    size_t cap = g_live_cap;
    g_live_cap = cap ? cap * 2 : 4096;
    g_live = calloc(g_live_cap, sizeof *g_live);
    if (!g_live)
        abort();
    g_live_n = 0;
    for (size_t i = 0; i < cap; i++)
        if (old[i].p)
            live_put(old[i].p, old[i].mark);
    free(old);
}

static void live_put(void *p, uint64_t mark)
{
    if (2 * (g_live_n + 1) > g_live_cap || !g_live)
        live_grow();
    size_t i = live_slot(p);
    while (g_live[i].p)
        i = (i + 1) & (g_live_cap - 1);
    g_live[i].p = p;
    g_live[i].mark = mark;
    g_live_n++;
}

/* Removes p; returns its mark (0 when it was not there). */
static uint64_t live_take(void *p)
{
    if (!g_live_cap)
        return 0;
    size_t i = live_slot(p);
    while (g_live[i].p && g_live[i].p != p)
        i = (i + 1) & (g_live_cap - 1);
    if (!g_live[i].p)
        return 0;
    uint64_t mark = g_live[i].mark;
    g_live[i].p = NULL;
    g_live_n--;
    /* Backward shift: entries after the hole that probed past it move in. */
    for (size_t j = (i + 1) & (g_live_cap - 1); g_live[j].p;
         j = (j + 1) & (g_live_cap - 1)) {
        size_t home = live_slot(g_live[j].p);
        if (((j - home) & (g_live_cap - 1)) >= ((j - i) & (g_live_cap - 1))) {
            g_live[i] = g_live[j];
            g_live[j].p = NULL;
            i = j;
        }
    }
    return mark;
}

/* At exit, so that valgrind finds nothing of ours still reachable. */
static void live_free(void)
{
    free(g_live);
    g_live = NULL;
    g_live_cap = g_live_n = 0;
}

static void *mem_malloc(int n)
{
    if (mem_should_fail())
        return NULL;
    void *p = g_real_mem.xMalloc(n);
    if (p) {
        g_mem_outstanding++;
        live_put(p, g_mark);
    }
    return p;
}

static void mem_free(void *p)
{
    if (p) {
        g_mem_outstanding--;
        live_take(p);
    }
    g_real_mem.xFree(p);
}

static void *mem_realloc(void *p, int n)
{
    if (mem_should_fail())
        return NULL;
    void *q = g_real_mem.xRealloc(p, n);
    if (q && p) {
        /* Keeps the mark it was first made under. */
        uint64_t mark = live_take(p);
        live_put(q, mark ? mark : g_mark);
    }
    return q;
}

static int mem_size(void *p) { return g_real_mem.xSize(p); }
static int mem_roundup(int n) { return g_real_mem.xRoundup(n); }
static int mem_init(void *a) { return g_real_mem.xInit(a); }
static void mem_shutdown(void *a) { g_real_mem.xShutdown(a); }

/* The library's allocator: the same counter, the same live table and
 * SQLite's underlying allocator, so one walk fails both alike. */
static void *lib_malloc(size_t n, void *payload)
{
    (void)payload;
    return n > INT_MAX ? NULL : mem_malloc((int)n);
}

static void *lib_realloc(void *p, size_t n, void *payload)
{
    (void)payload;
    return n > INT_MAX ? NULL : mem_realloc(p, (int)n);
}

static void lib_free(void *p, void *payload)
{
    (void)payload;
    mem_free(p);
}

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
    dw_allocator lib = {DW_ALLOCATOR_VERSION, lib_malloc, lib_realloc,
                        lib_free, NULL};
    const char *why = NULL;
    if (dw_set_allocator(&lib, &why) != DW_OK)
        fail_msg("dw_set_allocator: %s", why);
    atexit(live_free);
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


uint64_t fault_mem_mark(void) { return ++g_mark; }

int fault_mem_reclaim(uint64_t mark)
{
    int n = 0;
    for (size_t i = 0; i < g_live_cap;) {
        if (g_live[i].p && g_live[i].mark >= mark) {
            /* mem_free() shifts a later entry into slot i: look again. */
            mem_free(g_live[i].p);
            n++;
        } else {
            i++;
        }
    }
    return n;
}

/* ---- failing VFS ---------------------------------------------------------- */

typedef struct fault_file {
    sqlite3_file base;
    sqlite3_file *real; /* follows this struct in the same allocation */
    int hooked;         /* its writes go through the write hook */
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
static int g_subjournals; /* statement journals opened since the arm */
static int g_skip_sync;  /* xSync counts but does not reach the disk */
static char g_hook_suffix[64];
static fault_write_fn g_hook;
static void *g_hook_payload;

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
    if (!((fault_file *)f)->hooked || !g_hook)
        return REAL(f)->pMethods->xWrite(REAL(f), buf, n, off);
    char *copy = malloc((size_t)n);
    if (!copy)
        return SQLITE_IOERR_NOMEM;
    memcpy(copy, buf, (size_t)n);
    g_hook(copy, n, g_hook_payload);
    int rc = REAL(f)->pMethods->xWrite(REAL(f), copy, n, off);
    free(copy);
    return rc;
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
    if (g_skip_sync)
        return SQLITE_OK;
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
    size_t len = name ? strlen(name) : 0, slen = strlen(g_hook_suffix);
    ff->hooked = g_hook && slen && len >= slen &&
                 strcmp(name + len - slen, g_hook_suffix) == 0;
    memset(ff->real, 0, (size_t)g_real_vfs->szOsFile);
    if (flags & SQLITE_OPEN_SUBJOURNAL)
        g_subjournals++;
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

void fault_vfs_write_hook(const char *suffix, fault_write_fn fn,
                          void *payload)
{
    assert_true(!fn || (suffix && strlen(suffix) < sizeof g_hook_suffix));
    snprintf(g_hook_suffix, sizeof g_hook_suffix, "%s", fn ? suffix : "");
    g_hook = fn;
    g_hook_payload = payload;
}

void fault_vfs_default(int on)
{
    fault_vfs_register();
    assert_int_equal(
        sqlite3_vfs_register(on ? &g_fault_vfs : g_real_vfs, 1), SQLITE_OK);
}

void fault_vfs_arm(unsigned kinds, int n, int persistent, int err)
{
    memset(g_calls, 0, sizeof g_calls);
    g_subjournals = 0;
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

void fault_vfs_real_sync(int on) { g_skip_sync = !on; }

int fault_vfs_subjournals(void) { return g_subjournals; }

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
    return world_open_flags(out, db, 0, errmsg);
}

void world_options(dw_options *o)
{
    dw_options init = DW_OPTIONS_INIT;
    *o = init;
    o->name = WORLD_NAME;
    o->old_side.table = "items";
    o->old_side.key_columns = WORLD_KEY;
    o->old_side.nkey_columns = 1;
    o->new_side.table = "items_v2";
    o->new_side.key_columns = WORLD_KEY;
    o->new_side.nkey_columns = 1;
    o->up = WORLD_UP;
    o->nup = 2;
    o->down = WORLD_DOWN;
    o->ndown = 2;
}

int world_open_flags(dw_migration **out, sqlite3 *db, unsigned flags,
                     char **errmsg)
{
    dw_options o;
    world_options(&o);
    o.flags = flags;
    o.setup_sql = "INSERT INTO item_tags(tag) VALUES('default')"
                  "  ON CONFLICT(tag) DO NOTHING";
    return dw_sqlite_open(out, db, &o, errmsg);
}

dw_migration *world_open_ok(sqlite3 *db)
{
    dw_migration *h = NULL;
    char *err = NULL;
    int rc = world_open(&h, db, &err);
    if (rc != DW_OK)
        print_error("world_open: %s: %s\n", dw_errstr(rc), err ? err : "?");
    dw_free(err);
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
        return dw_sqlite_result(db, rc);
    sqlite3_bind_int64(st, 1, key->i);
    if (!it->delete_row) {
        sqlite3_bind_text(st, 2, it->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, it->qty);
    }
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return dw_sqlite_result(db, rc);
}

int world_write_old(void *db, const dw_value *key, int nkey, void *payload)
{
    assert_int_equal(nkey, 1);
    return world_write(db,
                       "INSERT INTO items(id, name, qty) VALUES(?1, ?2, ?3)"
                       "  ON CONFLICT(id) DO UPDATE SET name = excluded.name,"
                       "  qty = excluded.qty",
                       "DELETE FROM items WHERE id = ?1", key, payload);
}

int world_write_new(void *db, const dw_value *key, int nkey, void *payload)
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

static int table_exists(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT 1 FROM sqlite_schema"
                                        " WHERE type = 'table' AND name = ?1",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    assert_true(rc == SQLITE_ROW || rc == SQLITE_DONE);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW;
}

static char *dup_text(const char *s)
{
    char *p = strdup(s);
    assert_non_null(p);
    return p;
}

char *world_dump(sqlite3 *db, int side)
{
    /* After dw_contract() the old table is gone. */
    if (side == DW_SIDE_OLD && !table_exists(db, "items"))
        return dup_text("(dropped)");
    return query_all(db,
                     side == DW_SIDE_OLD
                         ? "SELECT id, name, qty FROM items ORDER BY id"
                         : "SELECT id, label, qty FROM items_v2 ORDER BY id",
                     "\n");
}

char *world_disagreeing(sqlite3 *db)
{
    if (!table_exists(db, "items"))
        return dup_text("");
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

/* A broken rule fails the test -- unless the walk excuses that check while
 * a library defect is open (fault_op.skip_mem, skip_io), or
 * DW_FAULT_KEEP_GOING is set (to survey every defect in one run): then it
 * is counted, and printed unless quiet. */
static int g_soft;
static int g_soft_quiet;
static int g_soft_broken;

static void rule_broken(const char *fmt, ...)
{
    int soft = g_soft || getenv("DW_FAULT_KEEP_GOING") != NULL;
    if (!soft || !g_soft_quiet) {
        char msg[4000];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        if (soft)
            print_message("  (known defect, check skipped) %s", msg);
        else
            print_error("%s", msg);
    }
    if (!soft)
        fail();
    g_soft_broken++;
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
        rule_broken("%s: the %s side holds neither what it held nor what "
                    "was written:\n--- now\n%s\n--- before\n%s\n--- after\n%s\n",
                    where, authoritative == DW_SIDE_OLD ? "old" : "new", now,
                    was, will ? will : "(none)");
    }
    free(now);

    char *disagreeing = world_disagreeing(db);
    char *copy = strdup(disagreeing);
    assert_non_null(copy);
    for (char *tok = strtok(copy, ", "); tok; tok = strtok(NULL, ", ")) {
        if (!list_has(before->disagreeing, tok) &&
            !list_has(may_diverge, tok)) {
            rule_broken("%s: key %s of old and new disagrees, and agreed "
                        "before (disagreeing now: %s; before: %s)\n",
                        where, tok, disagreeing, before->disagreeing);
        }
    }
    free(copy);
    free(disagreeing);

    char ok[64];
    query_text(db, "PRAGMA integrity_check", ok, sizeof ok);
    if (strcmp(ok, "ok") != 0) {
        rule_broken("%s: integrity_check: %s\n", where, ok);
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
            rule_broken("%s: %lld state rows break the rule:\n  %s\n", where,
                        (long long)broken, STATE_RULES[i]);
        }
    }
}

/* ---- the whole database as text ------------------------------------------ */

typedef struct text_list {
    char **items;
    size_t n, cap;
} text_list;

static void text_list_add(text_list *l, char *item)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->items = realloc(l->items, l->cap * sizeof *l->items);
        assert_non_null(l->items);
    }
    l->items[l->n++] = item;
}

static int text_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One row as text: values by type, '|' between them. */
static char *row_text(sqlite3_stmt *st, int state)
{
    size_t cap = 64, len = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    for (int i = 0; i < sqlite3_column_count(st); i++) {
        char num[32];
        const char *v;
        size_t n;
        switch (sqlite3_column_type(st, i)) {
        case SQLITE_NULL: v = "NULL"; n = 4; break;
        case SQLITE_INTEGER:
            n = (size_t)snprintf(num, sizeof num, "%lld",
                                 (long long)sqlite3_column_int64(st, i));
            v = num;
            break;
        case SQLITE_FLOAT:
            /* In the library's tables a REAL is a time, different from
             * run to run; its presence is what counts. */
            n = (size_t)snprintf(num, sizeof num, "%.17g",
                                 sqlite3_column_double(st, i));
            v = num;
            if (state) {
                v = "R";
                n = 1;
            }
            break;
        default:
            v = (const char *)sqlite3_column_text(st, i);
            n = (size_t)sqlite3_column_bytes(st, i);
            if (!v) {
                v = "";
                n = 0;
            }
            break;
        }
        /* The process that ran a backfill's batch differs from run to run
         * as a time does. */
        if (state && strcmp(sqlite3_column_name(st, i), "runner_pid") == 0) {
            v = "P";
            n = 1;
        }
        if (len + n + 8 > cap) {
            while (len + n + 8 > cap)
                cap *= 2;
            out = realloc(out, cap);
            assert_non_null(out);
        }
        if (i)
            out[len++] = '|';
        if (sqlite3_column_type(st, i) == SQLITE_TEXT)
            out[len++] = '\'';
        memcpy(out + len, v, n);
        len += n;
        if (sqlite3_column_type(st, i) == SQLITE_TEXT)
            out[len++] = '\'';
    }
    out[len] = '\0';
    return out;
}

char *fault_db_dump(sqlite3 *db)
{
    text_list lines = {NULL, 0, 0};
    sqlite3_stmt *schema = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT type, name, tbl_name, sql FROM"
                                        " sqlite_schema ORDER BY type, name",
                                        -1, &schema, NULL),
                     SQLITE_OK);
    text_list tables = {NULL, 0, 0};
    while (sqlite3_step(schema) == SQLITE_ROW) {
        text_list_add(&lines, row_text(schema, 0));
        const char *name = (const char *)sqlite3_column_text(schema, 1);
        if (strcmp((const char *)sqlite3_column_text(schema, 0), "table") ==
                0 &&
            strncmp(name, "sqlite_", 7) != 0)
            text_list_add(&tables, dup_text(name));
    }
    assert_int_equal(sqlite3_finalize(schema), SQLITE_OK);
    for (size_t t = 0; t < tables.n; t++) {
        char *sql = sqlite3_mprintf("SELECT * FROM \"%w\"", tables.items[t]);
        assert_non_null(sql);
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL),
                         SQLITE_OK);
        sqlite3_free(sql);
        int state = strncmp(tables.items[t], "dw_", 3) == 0;
        size_t first = lines.n;
        char head[300];
        snprintf(head, sizeof head, "== %s", tables.items[t]);
        text_list_add(&lines, dup_text(head));
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            text_list_add(&lines, row_text(st, state));
        assert_int_equal(rc, SQLITE_DONE);
        sqlite3_finalize(st);
        /* Rows in a stable order, whatever order the table gives. */
        qsort(lines.items + first + 1, lines.n - first - 1, sizeof *lines.items,
              text_cmp);
        free(tables.items[t]);
    }
    free(tables.items);
    size_t len = 0;
    for (size_t i = 0; i < lines.n; i++)
        len += strlen(lines.items[i]) + 1;
    char *out = malloc(len + 1);
    assert_non_null(out);
    char *p = out;
    for (size_t i = 0; i < lines.n; i++) {
        size_t n = strlen(lines.items[i]);
        memcpy(p, lines.items[i], n);
        p[n] = '\n';
        p += n + 1;
        free(lines.items[i]);
    }
    *p = '\0';
    free(lines.items);
    return out;
}

/* ---- the walk ------------------------------------------------------------ */

#define WORLD_ROWS 8

struct fault_world {
    const fault_op *op;
    int wal;
    test_db t;            /* t.dir private, t.path the working copy */
    unsigned char *image; /* the starting database file */
    size_t image_len;
    char *before, *after; /* fault_db_dump of each */
    world_snapshot sb, sa;
    int stage_before, stage_after;
    int wal_empty;        /* opening the handle leaves the log empty */
    fault_stats stats;
    int skipped;          /* points that hit a check excused by a defect */
};

int fault_stride(void)
{
    const char *s = getenv("DW_FAULT_STRIDE");
    int n = s ? atoi(s) : 1;
    return n > 1 ? n : 1;
}

static void unlink_suffixed(const char *path)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    char p[400];
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        snprintf(p, sizeof p, "%s%s", path, suffixes[i]);
        unlink(p);
    }
}

/* The backup file an operation writes, in the world's directory. */
static void backup_path(const char *dir, const char *name, char *buf,
                        size_t size)
{
    snprintf(buf, size, "%s/%s", dir, name);
}

#define OP_BACKUP "backup.db"
#define SETUP_BACKUP "setup-backup.db"

/* Puts the starting database back in place, and removes what a run left. */
static void world_restore_file(fault_world *w)
{
    char p[400];
    unlink_suffixed(w->t.path);
    backup_path(w->t.dir, OP_BACKUP, p, sizeof p);
    unlink_suffixed(p);
    FILE *f = fopen(w->t.path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(w->image, 1, w->image_len, f), w->image_len);
    assert_int_equal(fclose(f), 0);
}

static dw_migration *open_flags_ok(sqlite3 *db, unsigned flags)
{
    dw_migration *h = NULL;
    char *err = NULL;
    int rc = world_open_flags(&h, db, flags, &err);
    if (rc != DW_OK)
        print_error("world_open: %s: %s\n", dw_errstr(rc), err ? err : "?");
    dw_free(err);
    assert_int_equal(rc, DW_OK);
    return h;
}

static int stored_stage(sqlite3 *db)
{
    if (!table_exists(db, "dw_migrations"))
        return -1;
    return (int)query_int(db, "SELECT stage FROM dw_migrations");
}

/* Every connection of a walk goes through FAULT_VFS, so that its syncs
 * can skip the disk (fault_vfs_real_sync); it fails nothing unless armed. */
static sqlite3 *plain_connect(const fault_world *w)
{
    return test_db_connect_vfs(&w->t);
}

static void close_db(sqlite3 *db)
{
    if (db)
        assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* The first line where two dumps differ, for the report. */
static void difference(char *buf, size_t size, const char *what,
                       const char *now, const char *expected)
{
    const char *a = now, *b = expected;
    while (*a && *a == *b) {
        a++;
        b++;
    }
    while (a > now && a[-1] != '\n') {
        a--;
        b--;
    }
    int na = (int)strcspn(a, "\n"), nb = (int)strcspn(b, "\n");
    snprintf(buf, size, "\n  %s differs at:\n    now:      %.*s\n"
                        "    expected: %.*s",
             what, na > 300 ? 300 : na, a, nb > 300 ? 300 : nb, b);
}

/* Whether the working copy's WAL holds nothing (or is not there yet). */
static int log_empty(const fault_world *w)
{
    char log[400];
    snprintf(log, sizeof log, "%s-wal", w->t.path);
    struct stat sb;
    return stat(log, &sb) != 0 || sb.st_size == 0;
}

fault_world *fault_world_build(const fault_op *op, int wal)
{
    fault_world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    w->op = op;
    w->wal = wal;
    test_db_open(&w->t);
    close_db(w->t.db);
    unlink_suffixed(w->t.path);
    /* Small pages: the file is copied for every failure point. */
    w->t.db = plain_connect(w);
    exec_ok(w->t.db, "PRAGMA page_size=1024");
    exec_ok(w->t.db, wal ? "PRAGMA journal_mode=WAL"
                         : "PRAGMA journal_mode=DELETE");
    world_create(w->t.db, WORLD_ROWS);
    fault_ctx c;
    memset(&c, 0, sizeof c);
    c.db = w->t.db;
    c.dir = w->t.dir;
    c.op = op;
    assert_int_equal(dw_row_new(&c.row), DW_OK);
    if (!(op->flags & FAULT_OP_BARE))
        c.h = open_flags_ok(c.db, op->open_flags);
    if (op->setup)
        op->setup(&c);
    dw_close(c.h);
    dw_row_free(c.row);
    close_db(w->t.db);
    w->t.db = NULL;

    FILE *f = fopen(w->t.path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    assert_true(size > 0);
    rewind(f);
    w->image_len = (size_t)size;
    w->image = malloc(w->image_len);
    assert_non_null(w->image);
    assert_int_equal(fread(w->image, 1, w->image_len, f), w->image_len);
    fclose(f);

    sqlite3 *fresh = plain_connect(w);
    w->before = fault_db_dump(fresh);
    world_snapshot_take(&w->sb, fresh);
    w->stage_before = stored_stage(fresh);
    /* A point that leaves the database as before passes on that: so the
     * starting database must pass the checks itself. */
    char where[300];
    snprintf(where, sizeof where, "%s (starting database)", op->name);
    world_check(fresh, where, op->authoritative, &w->sb, NULL,
                op->may_diverge);
    if (op->check)
        op->check(&c, fresh, where, DW_OK);
    close_db(fresh);

    /* The faultless run gives "after" (and must leak nothing). */
    world_restore_file(w);
    int64_t base = fault_mem_outstanding();
    memset(&c, 0, sizeof c);
    c.dir = w->t.dir;
    c.op = op;
    c.db = plain_connect(w);
    assert_int_equal(dw_row_new(&c.row), DW_OK);
    if (!(op->flags & FAULT_OP_OPENS))
        c.h = open_flags_ok(c.db, op->open_flags);
    w->wal_empty = log_empty(w);
    int rc = op->run(&c);
    if (rc != op->ok_code)
        print_error("%s: the faultless run returned %d (%s): %s\n", op->name,
                    rc, dw_errstr(rc), c.h ? dw_errmsg(c.h) : c.open_err);
    assert_int_equal(rc, op->ok_code);
    fresh = plain_connect(w);
    w->after = fault_db_dump(fresh);
    world_snapshot_take(&w->sa, fresh);
    w->stage_after = stored_stage(fresh);
    snprintf(where, sizeof where, "%s (faultless run)", op->name);
    world_check(fresh, where, op->authoritative, &w->sb, &w->sa,
                op->may_diverge);
    if (op->check)
        op->check(&c, fresh, where, rc);
    close_db(fresh);
    c.stage_after = w->stage_after;
    if (op->finish)
        op->finish(&c, where);
    dw_close(c.h);
    dw_row_free(c.row);
    dw_free(c.open_err);
    close_db(c.db);
    if (fault_mem_outstanding() != base)
        print_error("%s: the faultless run leaked %lld allocations\n",
                    op->name, (long long)(fault_mem_outstanding() - base));
    assert_int_equal(fault_mem_outstanding(), base);
    return w;
}

void fault_world_free(fault_world *w)
{
    if (!w)
        return;
    test_db_close(&w->t); /* and the backups beside the database */
    free(w->image);
    free(w->before);
    free(w->after);
    world_snapshot_free(&w->sb);
    world_snapshot_free(&w->sa);
    free(w);
}

void fault_world_stats(const fault_world *w, fault_stats *out)
{
    *out = w->stats;
    out->skipped = w->skipped;
}

static const char *err_name(int err)
{
    return err == SQLITE_FULL ? "FULL" : "IOERR";
}

static void plan_name(char *buf, size_t size, const fault_plan *p, int wal)
{
    if (!p->io) {
        snprintf(buf, size, "oom %s", p->persistent ? "persistent" : "once");
        return;
    }
    snprintf(buf, size, "io %s %s%s%s %s %s", wal ? "wal" : "rollback",
             (p->kinds & FAULT_WRITE) ? "write" : "",
             (p->kinds & FAULT_SYNC) ? "sync" : "",
             (p->kinds & FAULT_TRUNCATE) ? "truncate" : "", err_name(p->err),
             p->persistent ? "persistent" : "once");
}

/* A broken rule: fails the test, unless the operation is excused from that
 * check while a defect is open -- then counted and the walk goes on. */
static void broken(fault_world *w, unsigned skip, unsigned check,
                   const char *where, const char *fmt, ...)
{
    (void)w;
    char msg[3000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int soft = g_soft;
    g_soft = soft || (skip & check);
    rule_broken("%s: %s\n", where, msg);
    g_soft = soft;
}

static void arm(const fault_plan *p, int n)
{
    if (p->io)
        fault_vfs_arm(p->kinds, n, p->persistent, p->err);
    else
        fault_mem_arm(n, p->persistent);
}

static int disarm(const fault_plan *p)
{
    return p->io ? fault_vfs_disarm() : fault_mem_disarm();
}

/* The operation's connection. Under I/O faults in WAL mode it checkpoints
 * after every commit and truncates the log when it restarts it, so that a
 * commit whose log write went through can meet a failing checkpoint, and
 * truncation gets walked too. */
static sqlite3 *op_connect(const fault_world *w, const fault_plan *p)
{
    sqlite3 *db = plain_connect(w);
    if (p->io && w->wal)
        exec_ok(db, "PRAGMA wal_autocheckpoint=1;"
                    "PRAGMA journal_size_limit=0");
    return db;
}

static int code_allowed(const fault_op *op, const fault_plan *p, int rc)
{
    unsigned allowed = FAULT_CODE(op->ok_code);
    allowed |= p->io ? FAULT_CODE(DW_ERROR) | op->io_codes
                     : FAULT_CODE(DW_ENOMEM) | op->mem_codes;
    return rc >= -15 && rc <= 15 && (allowed & FAULT_CODE(rc)) != 0;
}

/* Rule 2: the database after the fault, on a fresh connection. */
static int check_after_fault(fault_world *w, const fault_plan *p,
                             fault_ctx *c, const char *where, int rc,
                             unsigned skip)
{
    const fault_op *op = w->op;
    sqlite3 *fresh = plain_connect(w);
    char ok[64];
    query_text(fresh, "PRAGMA integrity_check", ok, sizeof ok);
    if (strcmp(ok, "ok") != 0)
        broken(w, skip, FAULT_SKIP_STATE, where, "integrity_check: %s", ok);
    char *now = fault_db_dump(fresh);
    int as_before = strcmp(now, w->before) == 0;
    int as_after = strcmp(now, w->after) == 0;
    int ok_rc = rc == op->ok_code;
    /* DW_FAULT_DUMP=text prints the database after points whose
     * description contains it (e.g. "N=129]"). */
    const char *dump = getenv("DW_FAULT_DUMP");
    if (dump && strstr(where, dump))
        fprintf(stderr, "%s: returned %d (%s)\n%s\n", where, rc,
                c->h ? dw_errmsg(c->h) : "", now);
    if (op->flags & FAULT_OP_ATOMIC) {
        if (!as_before && !as_after) {
            char d1[800], d2[800];
            difference(d1, sizeof d1, "from before", now, w->before);
            difference(d2, sizeof d2, "from after", now, w->after);
            broken(w, skip, FAULT_SKIP_STATE, where,
                   "returned %d (%s) and left the database neither as "
                   "before nor as after the operation (half applied)%s%s",
                   rc, dw_errstr(rc), d1, d2);
        } else if (ok_rc && !as_after && !(op->flags & FAULT_OP_READS)) {
            broken(w, skip, FAULT_SKIP_STATE, where,
                   "returned %d (%s) but nothing was applied", rc,
                   dw_errstr(rc));
        } else if (!ok_rc && !p->io && !as_before) {
            /* Memory cannot fail a commit that already happened: an
             * error must mean nothing was applied. */
            broken(w, skip, FAULT_SKIP_STATE, where,
                   "returned %d (%s: %s) but the operation was applied",
                   rc, dw_errstr(rc), c->h ? dw_errmsg(c->h) : "");
        }
    }
    g_soft = (skip & FAULT_SKIP_STATE) != 0;
    if (!as_before && !as_after) {
        world_check(fresh, where, op->authoritative, &w->sb, &w->sa,
                    op->may_diverge);
        if (ok_rc && !(op->flags & FAULT_OP_READS)) {
            char *side = world_dump(fresh, op->authoritative);
            const char *want = op->authoritative == DW_SIDE_OLD
                                   ? w->sa.old_side
                                   : w->sa.new_side;
            if (strcmp(side, want) != 0)
                broken(w, skip, FAULT_SKIP_STATE, where,
                       "returned %d (%s) but the %s side is not as the "
                       "faultless run left it",
                       rc, dw_errstr(rc),
                       op->authoritative == DW_SIDE_OLD ? "old" : "new");
            free(side);
        }
    } else {
        /* As before or after: those passed world_check when built. */
        world_state_check(fresh, where);
    }
    if (op->flags & FAULT_OP_STAGE) {
        int s = stored_stage(fresh);
        if (s != w->stage_before && s != w->stage_after)
            broken(w, skip, FAULT_SKIP_STATE, where,
                   "the stored stage is %d, neither %d nor %d", s,
                   w->stage_before, w->stage_after);
    }
    if (op->check)
        op->check(c, fresh, where, rc);
    g_soft = 0;
    free(now);
    close_db(fresh);
    return as_before ? 0 : as_after ? 1 : 2;
}

/* The database as a crash would leave it now, opened elsewhere (a hot
 * journal is rolled back, a log recovered): as before or as after, and as
 * after when the call said it was done. */
static void check_crash_copy(fault_world *w, fault_ctx *c,
                             const char *where, int rc, unsigned skip)
{
    static const char *const suffixes[] = {"", "-wal", "-journal"};
    const fault_op *op = w->op;
    char from[400], to[420], crash[300];
    snprintf(crash, sizeof crash, "%s/crash.db", w->t.dir);
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        snprintf(from, sizeof from, "%s%s", w->t.path, suffixes[i]);
        snprintf(to, sizeof to, "%s%s", crash, suffixes[i]);
        test_copy_file(from, to);
    }
    snprintf(to, sizeof to, "%s-shm", crash);
    unlink(to);
    test_db t = w->t;
    snprintf(t.path, sizeof t.path, "%s", crash);
    sqlite3 *db = test_db_connect(&t);
    char ok[64];
    query_text(db, "PRAGMA integrity_check", ok, sizeof ok);
    char *now = fault_db_dump(db);
    if (op->check) {
        char at[400];
        snprintf(at, sizeof at, "%s, after a crash", where);
        g_soft = (skip & FAULT_SKIP_STATE) != 0;
        op->check(c, db, at, rc);
        g_soft = 0;
    }
    close_db(db);
    unlink_suffixed(crash);
    int as_before = strcmp(now, w->before) == 0;
    int as_after = strcmp(now, w->after) == 0;
    if (strcmp(ok, "ok") != 0)
        broken(w, skip, FAULT_SKIP_STATE, where,
               "after a crash here, integrity_check: %s", ok);
    if (!as_before && !as_after)
        broken(w, skip, FAULT_SKIP_STATE, where,
               "returned %d (%s), and a crash here would leave the database "
               "neither as before nor as after",
               rc, dw_errstr(rc));
    else if (rc == op->ok_code && !as_after &&
             !(op->flags & FAULT_OP_READS))
        broken(w, skip, FAULT_SKIP_STATE, where,
               "returned %d (%s), but a crash here would lose the operation",
               rc, dw_errstr(rc));
    else if (rc != op->ok_code && as_after && !as_before)
        w->stats.crash_applied++;
    free(now);
}

/* One failure point. Returns 0 when no fault fired (the walk is over). */

static int walk_point(fault_world *w, const fault_plan *p, int n)
{
    const fault_op *op = w->op;
    unsigned skip = p->io ? op->skip_io : op->skip_mem;
    char plan[100], where[300];
    plan_name(plan, sizeof plan, p, w->wal);
    snprintf(where, sizeof where, "%s [%s, N=%d]", op->name, plan, n);

    world_restore_file(w);
    /* The first excused check of a walk is printed, the rest counted. */
    g_soft_quiet = w->skipped > 0;
    g_soft_broken = 0;
    int64_t base = fault_mem_outstanding();
    uint64_t mark = fault_mem_mark();
    fault_ctx c;
    memset(&c, 0, sizeof c);
    c.dir = w->t.dir;
    c.op = op;
    c.stage_after = w->stage_after;
    c.db = op_connect(w, p);
    assert_int_equal(dw_row_new(&c.row), DW_OK);
    if (!(op->flags & FAULT_OP_OPENS))
        c.h = open_flags_ok(c.db, op->open_flags);

    arm(p, n);
    int rc = op->run(&c);
    int fired = disarm(p);

    if (fired) {
        /* Rule 1: the result code and its message. */
        const char *msg = op->flags & FAULT_OP_OPENS
                              ? (c.h ? dw_errmsg(c.h) : c.open_err)
                              : dw_errmsg(c.h);
        c.msg = msg ? strdup(msg) : NULL;
        if (!code_allowed(op, p, rc))
            broken(w, skip, FAULT_SKIP_CODE, where,
                   "returned %d (%s): %s", rc, dw_errstr(rc),
                   msg ? msg : "(no message)");
        if (rc != op->ok_code && rc < 0) {
            /* dw_open may lack the memory for its message. */
            int may_lack = (op->flags & FAULT_OP_OPENS) && rc == DW_ENOMEM;
            if ((!msg && !may_lack) ||
                (msg && (!*msg || strcmp(msg, "not an error") == 0)))
                broken(w, skip, FAULT_SKIP_CODE, where,
                       "returned %d (%s) with no message", rc,
                       dw_errstr(rc));
            const char *words = p->err == SQLITE_FULL ? "full" : "I/O";
            if (p->io && msg && rc != DW_ENOMEM && !strstr(msg, words))
                broken(w, skip, FAULT_SKIP_CODE, where,
                       "returned %d (%s) with a message not naming the "
                       "I/O problem: %s",
                       rc, dw_errstr(rc), msg);
        }
        if (!sqlite3_get_autocommit(c.db)) {
            /* Only a rollback that itself lacks memory, every try of it
             * (a lasting failure), may leave the library's transaction
             * open; the call must say so, and the handle's next call
             * ends it before anything else (after dw_open there is no
             * handle: the application rolls back, as the message says). */
            int told = p->persistent && !p->io && rc == DW_ENOMEM &&
                       (msg ? strstr(msg, "is still open") 
                                  != NULL
                            /* dw_open may lack the memory for any message;
                             * its header says to check for this. */
                            : (op->flags & FAULT_OP_OPENS) != 0);
            if (!told)
                broken(w, skip, FAULT_SKIP_TXN, where,
                       "returned %d (%s) and left a transaction open "
                       "without saying so: %s",
                       rc, dw_errstr(rc), msg ? msg : "(no message)");
            int settled = 0;
            if (told && c.h) {
                int stage;
                settled = dw_stage_get(&stage, c.h) == DW_OK &&
                          sqlite3_get_autocommit(c.db);
                if (!settled)
                    broken(w, skip, FAULT_SKIP_TXN, where,
                           "the next call did not end the transaction left "
                           "open: %s",
                           dw_errmsg(c.h));
            }
            if (!settled)
                sqlite3_exec(c.db, "ROLLBACK", NULL, NULL, NULL);
            w->stats.left_open++;
        }

        /* Rule 2. In WAL mode every commit appends to the log, which the
         * starting database does not have: while it is still missing or
         * empty nothing was committed and the database is as before (the
         * checks on the starting database hold). */
        int untouched = w->wal && w->wal_empty && rc != op->ok_code &&
                        log_empty(w);
        /* What a crash right after the error would leave (the files as
         * they are, the log not yet given up by a clean close) must hold
         * the operation whole or not at all too. */
        if (p->io && !untouched && (op->flags & FAULT_OP_ATOMIC))
            check_crash_copy(w, &c, where, rc, skip);
        /* For I/O the faulted connection goes first: what counts is what
         * the file holds once nobody has it open. */
        if (p->io) {
            dw_close(c.h);
            c.h = NULL;
            close_db(c.db);
            c.db = NULL;
        }
        int state = untouched ? 0 : check_after_fault(w, p, &c, where, rc,
                                                      skip);
        w->stats.points++;
        if (rc == op->ok_code)
            w->stats.ok++;
        else if (state == 0)
            w->stats.failed_before++;
        else if (state == 1)
            w->stats.failed_after++;
        else
            w->stats.failed_other++;

        /* Rule 3: the same operation again, without faults. */
        if (p->io) {
            c.db = op_connect(w, p);
            if (!(op->flags & FAULT_OP_OPENS))
                c.h = open_flags_ok(c.db, op->open_flags);
        }
        if (rc != op->ok_code) {
            dw_free(c.open_err);
            c.open_err = NULL;
            dw_row_clear(c.row);
            c.rerun = 1;
            int again = op->run(&c);
            if (again != op->ok_code)
                broken(w, skip, FAULT_SKIP_RERUN, where,
                       "repeated without faults after returning %d, it "
                       "returned %d (%s): %s",
                       rc, again, dw_errstr(again),
                       c.h ? dw_errmsg(c.h) : c.open_err);
        }
        /* (A call that succeeded was checked as after in rule 2.) */
        if ((op->flags & FAULT_OP_ATOMIC) && c.rerun) {
            char *now = fault_db_dump(c.db);
            if (strcmp(now, w->after) != 0) {
                char d[800];
                difference(d, sizeof d, "the database", now, w->after);
                broken(w, skip, FAULT_SKIP_RERUN, where,
                       "after the faultless repeat the database is not as "
                       "after the faultless run%s",
                       d);
            }
            free(now);
        }
        if (op->finish) {
            g_soft = (skip & FAULT_SKIP_RERUN) != 0;
            op->finish(&c, where);
            g_soft = 0;
        }
    } else if (rc != op->ok_code) {
        broken(w, skip, FAULT_SKIP_CODE, where,
               "no fault fired, yet it returned %d (%s): %s", rc,
               dw_errstr(rc), c.h ? dw_errmsg(c.h) : c.open_err);
    }

    /* Rule 4. */
    dw_close(c.h);
    dw_row_free(c.row);
    dw_free(c.open_err);
    free(c.msg);
    close_db(c.db);
    int64_t left = fault_mem_outstanding() - base;
    if (left != 0) {
        broken(w, skip, FAULT_SKIP_LEAK, where,
               "%lld allocations outstanding after everything was closed",
               (long long)left);
        /* Excused: take it back, so the process still ends clean. */
        fault_mem_reclaim(mark);
    }
    if (g_soft_broken)
        w->skipped++;
    return fired != 0;
}

int fault_walk(fault_world *w, const fault_plan *p)
{
    int stride = p->stride > 1 ? p->stride : 1;
    int points = 0;
    for (int n = 1; walk_point(w, p, n); n += stride)
        points++;
    return points;
}

/* ---- the operations ------------------------------------------------------ */

static world_item CHANGED = {"changed", 33, 0};
static world_item DELETED = {NULL, 0, 1};

/* The keys of the world that disagree, as a subquery of ids. */
#define DISAGREEING_IDS                                                        \
    "SELECT o.id AS id FROM items o LEFT JOIN items_v2 n ON n.id = o.id"       \
    "  WHERE n.id IS NULL OR n.label IS NOT upper(o.name)"                     \
    "     OR n.qty IS NOT o.qty"                                               \
    " UNION SELECT n.id FROM items_v2 n"                                       \
    "  WHERE NOT EXISTS (SELECT 1 FROM items o WHERE o.id = n.id)"

static void op_failed(const fault_ctx *c, const char *what)
{
    rule_broken("%s%s: %s\n", c->op->name, c->rerun ? " (repeat)" : "", what);
}

/* Moves h forward one stage at a time, opening the gates on the way. */
static void handle_to_stage(dw_migration *h, int stage)
{
    int now;
    assert_dw_ok(h, dw_stage_get(&now, h));
    for (; now < stage; now++) {
        if (now + 1 == DW_STAGE_LIVE || now + 1 == DW_STAGE_COMPLETE)
            backfill_and_verify(h);
        assert_dw_ok(h, dw_stage_set(h, now + 1, "setup", 0));
    }
}

static void to_stage(fault_ctx *c, int stage) { handle_to_stage(c->h, stage); }

static void setup_dual(fault_ctx *c) { to_stage(c, DW_STAGE_DUAL_WRITE); }
static void setup_shadow(fault_ctx *c) { to_stage(c, DW_STAGE_SHADOW); }
static void setup_live(fault_ctx *c) { to_stage(c, DW_STAGE_LIVE); }
static void setup_rampdown(fault_ctx *c) { to_stage(c, DW_STAGE_RAMPDOWN); }
static void setup_complete(fault_ctx *c) { to_stage(c, DW_STAGE_COMPLETE); }

/* At SHADOW, both sides equal, the gate into LIVE open. */
static void setup_shadow_open(fault_ctx *c)
{
    to_stage(c, DW_STAGE_SHADOW);
    backfill_and_verify(c->h);
}

/* At SHADOW after a backfill, then key 4 changed and key 6 lost on the new
 * side behind the library's back. */
static void setup_divergent(fault_ctx *c)
{
    to_stage(c, DW_STAGE_SHADOW);
    assert_dw_ok(c->h, dw_backfill(NULL, c->h, NULL));
    exec_ok(c->db, "UPDATE items_v2 SET label = 'WRONG' WHERE id = 4;"
                   "DELETE FROM items_v2 WHERE id = 6");
}

/* ---- dw_open ---- */

static int run_open(fault_ctx *c)
{
    return world_open_flags(&c->h, c->db, c->op->open_flags, &c->open_err);
}

/* ---- writes ---- */

static int write_key(fault_ctx *c, int64_t id, dw_write_fn old_fn,
                     dw_write_fn new_fn, world_item *it)
{
    dw_value key = dw_int(id);
    return dw_write(c->h, &key, 1, old_fn, new_fn, it);
}

/* The authoritative side's callback only: the library syncs the other. */
static int run_write_old(fault_ctx *c)
{
    return write_key(c, 3, world_write_old, NULL, &CHANGED);
}

static int run_write_new(fault_ctx *c)
{
    return write_key(c, 3, NULL, world_write_new, &CHANGED);
}

static int run_delete_old(fault_ctx *c)
{
    return write_key(c, 5, world_write_old, NULL, &DELETED);
}

static int run_mirror(fault_ctx *c)
{
    dw_value key = dw_int(2);
    return dw_mirror(c->h, &key, 1);
}

/* The application changed key 2's old row itself. */
static void setup_mirror(fault_ctx *c)
{
    setup_shadow_open(c);
    exec_ok(c->db, "UPDATE items SET name = 'mirrored', qty = 22 WHERE id = 2");
}

/* Key 3 is queued for repair exactly when it disagrees. */
static void check_queue_3(fault_ctx *c, sqlite3 *fresh, const char *where,
                          int rc)
{
    (void)c;
    (void)rc;
    int64_t queued = query_int(
        fresh, "SELECT count(*) FROM dw_repair_queue WHERE key = '[3]'");
    int64_t differs = query_int(fresh, "SELECT count(*) FROM (" DISAGREEING_IDS
                                       ") WHERE id = 3");
    if (queued != differs) {
        rule_broken("%s: key 3 is %squeued for repair and %s\n", where,
                    queued ? "" : "not ", differs ? "disagrees" : "agrees");
    }
}

static int fail_write(void *db, const dw_value *key, int nkey,
                      void *payload)
{
    (void)db;
    (void)key;
    (void)nkey;
    (void)payload;
    return DW_ERROR;
}

/* Key 3 written to the old side and queued: its new-side write failed. */
static void setup_queued(fault_ctx *c)
{
    setup_shadow_open(c);
    assert_dw_ok(c->h, write_key(c, 3, world_write_old, fail_write, &CHANGED));
    int64_t n = 0;
    assert_dw_ok(c->h, dw_repair_count(&n, c->h));
    assert_int_equal(n, 1);
}

/* ---- reads ---- */

static int run_read(fault_ctx *c, int64_t id, int64_t qty)
{
    dw_value key = dw_int(id);
    int rc = dw_read(c->row, c->h, &key, 1, NULL, NULL, NULL);
    if (rc == DW_OK) {
        const dw_value *v = dw_row_get(c->row, "qty");
        if (!v || v->type != DW_TYPE_INTEGER || v->i != qty ||
            dw_row_count(c->row) != 3)
            op_failed(c, "dw_read returned DW_OK without the row");
    }
    return rc;
}

static int run_read_3(fault_ctx *c) { return run_read(c, 3, 3); }
static int run_read_4(fault_ctx *c) { return run_read(c, 4, 4); }

/* The application's read of the old model, failing. */
static int read_old_fails(dw_row *out, void *db, const dw_value *key,
                          int nkey, void *payload)
{
    (void)out;
    (void)db;
    (void)key;
    (void)nkey;
    (void)payload;
    return DW_ERROR;
}

/* The application's read of the new model. */
static int read_new_items(dw_row *out, void *db, const dw_value *key,
                          int nkey, void *payload)
{
    (void)nkey;
    (void)payload;
    return read_row_by_id(
        out, db, "SELECT id, label AS name, qty FROM items_v2 WHERE id = ?1",
        key[0].i);
}

/* The trusted read of key 3 fails; the other side is still read, and the
 * trusted failure is what comes back. */
static int run_read_trusted_fails(fault_ctx *c)
{
    dw_value key = dw_int(3);
    return dw_read(c->row, c->h, &key, 1, read_old_fails, read_new_items,
                   NULL);
}

/* Whatever the other read met, the failure returned is the trusted
 * side's. */
static void check_old_side_failure(fault_ctx *c, sqlite3 *fresh,
                                   const char *where, int rc)
{
    (void)fresh;
    if (rc == DW_ECALLBACK && c->h && dw_errside(c->h) != DW_SIDE_OLD)
        rule_broken("%s: DW_ECALLBACK names side %d, not the old side: %s\n",
                    where, dw_errside(c->h), dw_errmsg(c->h));
}

/* Key 4 disagrees: dw_compare() says so (and logs it). */
static int run_compare_4(fault_ctx *c)
{
    dw_value key = dw_int(4);
    int equal = -1;
    int rc = dw_compare(&equal, c->h, &key, 1);
    if (rc == DW_OK && equal != 0)
        op_failed(c, "dw_compare returned DW_OK and called key 4 equal");
    return rc;
}

/* Trims nothing, but makes the comparison work on copies of the rows. */
static int normalize_noop(dw_row *row, int side, void *payload)
{
    (void)row;
    (void)side;
    (void)payload;
    return DW_OK;
}

/* Read options with an ignore list and a normaliser, then a read of key 4
 * whose only difference (the label) is ignored. */
static int run_read_options(fault_ctx *c)
{
    static const char *const ignore[] = {"name", "label"};
    dw_read_options o = DW_READ_OPTIONS_INIT;
    o.ignore_columns = ignore;
    o.nignore_columns = 2;
    o.normalize = normalize_noop;
    int rc = dw_set_read_options(c->h, &o);
    return rc == DW_OK ? run_read(c, 4, 4) : rc;
}

static void setup_mismatch(fault_ctx *c)
{
    setup_shadow_open(c);
    exec_ok(c->db, "UPDATE items_v2 SET label = 'WRONG' WHERE id = 4");
}

/* The mismatch of key 4 is logged once or not at all (a failed log write
 * is counted, not returned). */
static void check_logged_once(fault_ctx *c, sqlite3 *fresh,
                              const char *where, int rc)
{
    (void)c;
    (void)rc;
    int64_t n = query_int(fresh, "SELECT count(*) FROM dw_mismatch_log"
                                 " WHERE key != '[4]' OR count != 1");
    if (n != 0) {
        rule_broken("%s: the mismatch log holds %lld entries other than one"
                    " sighting of key 4\n",
                    where, (long long)n);
    }
}

/* ---- stage moves ---- */

static int run_stage(fault_ctx *c, int stage, unsigned flags)
{
    return dw_stage_set(c->h, stage, "fault walk", flags);
}

static int run_to_dual(fault_ctx *c)
{
    return run_stage(c, DW_STAGE_DUAL_WRITE, 0);
}
static int run_to_shadow(fault_ctx *c)
{
    return run_stage(c, DW_STAGE_SHADOW, 0);
}
static int run_to_live(fault_ctx *c) { return run_stage(c, DW_STAGE_LIVE, 0); }
static int run_to_shadow_back(fault_ctx *c)
{
    return run_stage(c, DW_STAGE_SHADOW, 0);
}
static int run_to_complete(fault_ctx *c)
{
    return run_stage(c, DW_STAGE_COMPLETE, 0);
}

/* At RAMPDOWN with the gate into COMPLETE open. */
static void setup_rampdown_open(fault_ctx *c)
{
    setup_rampdown(c);
    backfill_and_verify(c->h);
}
static int run_to_live_forced(fault_ctx *c)
{
    return run_stage(c, DW_STAGE_LIVE, DW_STAGE_FORCE);
}

/* The handle follows the stored stage: it reports it, and a write with
 * the callback of the side that stage trusts goes through. */
static void finish_stage(fault_ctx *c, const char *where)
{
    int stage = -1;
    int rc = dw_stage_get(&stage, c->h);
    if (rc != DW_OK || stage != c->stage_after) {
        rule_broken("%s: the handle reports stage %d (rc %d), the database "
                    "holds %d\n",
                    where, stage, rc, c->stage_after);
    }
    int new_trusted = stage >= DW_STAGE_LIVE;
    rc = write_key(c, 3, new_trusted ? NULL : world_write_old,
                   new_trusted ? world_write_new : NULL, &CHANGED);
    if (rc != DW_OK) {
        rule_broken("%s: a write at the stage reached failed: %d (%s): %s\n",
                    where, rc, dw_errstr(rc), dw_errmsg(c->h));
    }
}

/* ---- backfill ---- */

static int stop_after_one(const dw_backfill_progress *p, void *payload)
{
    (void)p;
    (void)payload;
    return 1;
}

/* One batch of 3 rows: 8 rows make three batches. */
static int run_batch(fault_ctx *c)
{
    dw_backfill_options o = DW_BACKFILL_OPTIONS_INIT;
    o.batch_rows = 3;
    o.batch_ms = -1;
    o.progress = stop_after_one;
    return dw_backfill(NULL, c->h, &o);
}

static void setup_batches(fault_ctx *c, int batches)
{
    to_stage(c, DW_STAGE_DUAL_WRITE);
    for (int i = 0; i < batches; i++)
        assert_dw(c->h, run_batch(c), DW_MORE);
}

static void setup_batch_0(fault_ctx *c) { setup_batches(c, 0); }
static void setup_batch_1(fault_ctx *c) { setup_batches(c, 1); }
static void setup_batch_2(fault_ctx *c) { setup_batches(c, 2); }

/* The stored cursor never passes a key that was not copied. */
static void check_cursor(fault_ctx *c, sqlite3 *fresh, const char *where,
                         int rc)
{
    (void)c;
    (void)rc;
    char state[32], cursor[64];
    query_text(fresh, "SELECT state FROM dw_backfill", state, sizeof state);
    query_text(fresh, "SELECT cursor FROM dw_backfill", cursor, sizeof cursor);
    long long upto = -1;
    if (strcmp(state, "done") == 0)
        upto = WORLD_ROWS;
    else if (cursor[0] && sscanf(cursor, "[%lld]", &upto) != 1)
        upto = -2;
    if (upto == -2) {
        rule_broken("%s: the backfill cursor %s is not a key\n", where,
                    cursor);
    }
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM (" DISAGREEING_IDS ") WHERE id <= %lld",
             upto);
    int64_t behind = query_int(fresh, sql);
    if (behind != 0) {
        rule_broken("%s: the backfill (%s, cursor %s) has passed %lld keys "
                    "that were not copied\n",
                    where, state, cursor, (long long)behind);
    }
}

/* The rest of the backfill, then a clean verification. */
static void finish_backfill(fault_ctx *c, const char *where)
{
    int rc = dw_backfill(NULL, c->h, NULL);
    dw_verify_result r;
    if (rc == DW_OK)
        rc = dw_verify(&r, c->h, NULL);
    if (rc != DW_OK || !r.clean) {
        rule_broken("%s: resuming the backfill: %d (%s): %s\n", where, rc,
                    dw_errstr(rc), dw_errmsg(c->h));
    }
}

/* ---- verification ---- */

static int run_verify(fault_ctx *c, int64_t missing, int64_t different)
{
    dw_verify_result r;
    int rc = dw_verify(&r, c->h, NULL);
    if (rc == DW_OK &&
        (!r.finished || !r.full || r.missing != missing || r.extra != 0 ||
         r.different != different || r.keys != WORLD_ROWS))
        op_failed(c, "dw_verify returned DW_OK with wrong counts");
    return rc;
}

static int run_verify_clean(fault_ctx *c) { return run_verify(c, 0, 0); }

/* Keys 2 to 6 only, in two chunks. */
static int run_verify_range(fault_ctx *c)
{
    dw_value from = dw_int(2), to = dw_int(6);
    dw_verify_options o = DW_VERIFY_OPTIONS_INIT;
    o.from = &from;
    o.nfrom = 1;
    o.to = &to;
    o.nto = 1;
    o.chunk_rows = 3;
    dw_verify_result r;
    int rc = dw_verify(&r, c->h, &o);
    if (rc == DW_OK && (!r.finished || r.full || r.keys != 5 || !r.clean))
        op_failed(c, "a ranged dw_verify returned DW_OK with wrong counts");
    return rc;
}

static int count_queue(fault_ctx *c)
{
    int64_t n = -1, entries = -1, dropped = -1;
    int rc = dw_repair_count(&n, c->h);
    if (rc == DW_OK)
        rc = dw_mismatch_log_count(&entries, &dropped, c->h);
    if (rc == DW_OK && (n != 1 || entries != 0 || dropped != 0))
        op_failed(c, "the counts came back DW_OK and wrong");
    return rc;
}
static int run_verify_divergent(fault_ctx *c) { return run_verify(c, 1, 1); }

static void setup_backfilled(fault_ctx *c)
{
    to_stage(c, DW_STAGE_SHADOW);
    assert_dw_ok(c->h, dw_backfill(NULL, c->h, NULL));
}

/* A run cut short counts nothing; a finished one counts right. */
static void check_runs(sqlite3 *fresh, const char *where, int64_t missing,
                       int64_t different)
{
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM dw_verify_runs WHERE"
             " (NOT finished AND missing + extra + different > 0)"
             " OR (finished AND (missing != %lld OR different != %lld"
             "  OR extra != 0 OR keys != %d))",
             (long long)missing, (long long)different, WORLD_ROWS);
    int64_t bad = query_int(fresh, sql);
    if (bad != 0) {
        rule_broken("%s: %lld stored verification runs count wrong\n", where,
                    (long long)bad);
    }
}

static void check_runs_clean(fault_ctx *c, sqlite3 *fresh, const char *where,
                             int rc)
{
    (void)c;
    (void)rc;
    check_runs(fresh, where, 0, 0);
}

static void check_runs_divergent(fault_ctx *c, sqlite3 *fresh,
                                 const char *where, int rc)
{
    (void)c;
    (void)rc;
    check_runs(fresh, where, 1, 1);
}

/* ---- repairs ---- */

static int run_repair_keys(fault_ctx *c)
{
    dw_value keys[2] = {dw_int(4), dw_int(6)};
    dw_repair_result r;
    int rc = dw_repair_keys(&r, c->h, keys, 1, 2);
    if (rc == DW_OK && (r.repaired != 2 || r.failed != 0))
        op_failed(c, "dw_repair_keys returned DW_OK with wrong counts");
    return rc;
}

static void setup_verified_divergent(fault_ctx *c)
{
    setup_divergent(c);
    dw_verify_result r;
    assert_dw_ok(c->h, dw_verify(&r, c->h, NULL));
    assert_int_equal(r.missing + r.different, 2);
}

static int run_repair_divergent(fault_ctx *c)
{
    dw_repair_result r;
    int rc = dw_repair_divergent(&r, c->h);
    /* A repeat finds what the failed run left. */
    if (rc == DW_OK && !c->rerun && (r.repaired != 2 || r.failed != 0))
        op_failed(c, "dw_repair_divergent returned DW_OK with wrong counts");
    return rc;
}

/* A key marked repaired agrees. */
static void check_marked_repaired(fault_ctx *c, sqlite3 *fresh,
                                  const char *where, int rc)
{
    (void)c;
    (void)rc;
    int64_t bad = query_int(
        fresh, "SELECT count(*) FROM dw_verify_keys k WHERE k.repaired"
               " AND EXISTS (SELECT 1 FROM (" DISAGREEING_IDS ") d"
               " WHERE '[' || d.id || ']' = k.key)");
    if (bad != 0) {
        rule_broken("%s: %lld keys are marked repaired and disagree\n",
                    where, (long long)bad);
    }
}

static int run_repair_queue(fault_ctx *c)
{
    dw_repair_result r;
    int rc = dw_repair_queue(&r, c->h);
    if (rc == DW_OK && (r.repaired != 1 || r.failed != 0))
        op_failed(c, "dw_repair_queue returned DW_OK with wrong counts");
    return rc;
}

/* ---- routing ---- */

static int run_override_live(fault_ctx *c)
{
    dw_value keys[2] = {dw_int(2), dw_int(3)};
    return dw_override_set(c->h, keys, 1, 2, DW_STAGE_LIVE, "fault walk");
}

static int run_override_dual(fault_ctx *c)
{
    dw_value key = dw_int(2);
    return dw_override_set(c->h, &key, 1, 1, DW_STAGE_DUAL_WRITE,
                           "fault walk");
}

/* Keys 2 and 3 at LIVE, key 3 written there. */
static void setup_overridden(fault_ctx *c)
{
    setup_shadow_open(c);
    assert_dw_ok(c->h, run_override_live(c));
    assert_dw_ok(c->h, write_key(c, 3, NULL, world_write_new, &CHANGED));
}

static int run_override_clear(fault_ctx *c)
{
    dw_value keys[2] = {dw_int(2), dw_int(3)};
    int cleared = -1;
    int rc = dw_override_clear(&cleared, c->h, keys, 1, 2, "fault walk");
    if (rc == DW_OK && cleared != 2)
        op_failed(c, "dw_override_clear returned DW_OK with a wrong count");
    return rc;
}

static int run_routing(fault_ctx *c)
{
    dw_routing r = DW_ROUTING_INIT;
    r.canary_percent = 50;
    r.canary_stage = DW_STAGE_LIVE;
    r.promote_stage = DW_STAGE_LIVE;
    return dw_routing_set(c->h, &r, "fault walk", 0);
}

/* A canary chosen by a cohort predicate over the old row. */
static int run_routing_cohort(fault_ctx *c)
{
    dw_routing r = DW_ROUTING_INIT;
    r.canary_stage = DW_STAGE_LIVE;
    r.canary_cohort = "qty > 4";
    return dw_routing_set(c->h, &r, "fault walk", 0);
}

static void setup_cohort(fault_ctx *c)
{
    setup_shadow_open(c);
    assert_dw_ok(c->h, run_routing_cohort(c));
}

/* Key 3 moves into the cohort (qty 3 -> 30): its stage changes with it. */
static int run_write_into_cohort(fault_ctx *c)
{
    static const world_item into = {"item3", 30, 0};
    return write_key(c, 3, world_write_old, NULL, (world_item *)&into);
}

static int run_routing_get(fault_ctx *c)
{
    dw_routing r;
    int rc = dw_routing_get(&r, c->h);
    if (rc == DW_OK && (!r.canary_cohort || strcmp(r.canary_cohort, "qty > 4") != 0))
        op_failed(c, "dw_routing_get returned DW_OK without the cohort");
    return rc;
}

static int count_override(const dw_override_entry *e, void *payload)
{
    (void)e;
    (*(int *)payload)++;
    return 0;
}

static int run_override_list(fault_ctx *c)
{
    int n = 0;
    int rc = dw_override_list(c->h, count_override, &n);
    if (rc == DW_OK && n != 2)
        op_failed(c, "dw_override_list returned DW_OK without the overrides");
    return rc;
}

/* ---- contract and restore ---- */

static int run_contract(fault_ctx *c)
{
    char path[400];
    backup_path(c->dir, OP_BACKUP, path, sizeof path);
    return dw_contract(c->h, path, "fault walk");
}

/* The backup at path holds the old table's rows. */
static void check_backup_rows(const char *path, const char *where)
{
    sqlite3 *b = NULL;
    assert_int_equal(sqlite3_open_v2(path, &b, SQLITE_OPEN_READONLY, NULL),
                     SQLITE_OK);
    int64_t rows = query_int(b, "SELECT count(*) FROM items");
    close_db(b);
    if (rows != WORLD_ROWS)
        rule_broken("%s: the backup holds %lld rows\n", where,
                    (long long)rows);
}

/* Never contracted without the backup, which holds the rows. A backup
 * with the old table still there only after a failed commit (it may yet
 * prove durable), which the message says. */
static void check_backup(fault_ctx *c, sqlite3 *fresh, const char *where,
                         int rc)
{
    char path[400];
    backup_path(c->dir, OP_BACKUP, path, sizeof path);
    int contracted = !table_exists(fresh, "items");
    int present = access(path, F_OK) == 0;
    int kept = rc != DW_OK && c->msg && strstr(c->msg, "was kept");
    if (contracted != present && !(present && kept)) {
        rule_broken("%s: the old table is %s and the backup %s\n", where,
                    contracted ? "dropped" : "kept",
                    present ? "exists" : "is missing");
    }
    if (present)
        check_backup_rows(path, where);
}

static void setup_contracted(fault_ctx *c)
{
    to_stage(c, DW_STAGE_COMPLETE);
    char path[400];
    backup_path(c->dir, SETUP_BACKUP, path, sizeof path);
    assert_dw_ok(c->h, dw_contract(c->h, path, "setup"));
}

static int run_restore(fault_ctx *c)
{
    char path[400];
    backup_path(c->dir, SETUP_BACKUP, path, sizeof path);
    return dw_restore(c->h, path, "fault walk");
}

/* ---- contract and restore while another migration shares the old table ---- */

static const dw_column_map COPY_UP[] = {{"label", "name"}, {"qty", "qty"}};
static const dw_column_map COPY_DOWN[] = {{"name", "label"}, {"qty", "qty"}};

void world_share_old_table(sqlite3 *db)
{
    exec_ok(db, "CREATE TABLE items_copy(id INTEGER PRIMARY KEY,"
                "  label TEXT NOT NULL, qty INTEGER NOT NULL)");
    dw_options o;
    world_options(&o);
    o.name = SHARING_NAME;
    o.new_side.table = "items_copy";
    o.up = COPY_UP;
    o.down = COPY_DOWN;
    dw_migration *h = NULL;
    char *err = NULL;
    int rc = dw_sqlite_open(&h, db, &o, &err);
    if (rc != DW_OK)
        print_error("open %s: %s\n", SHARING_NAME, err ? err : "?");
    dw_free(err);
    assert_int_equal(rc, DW_OK);
    handle_to_stage(h, DW_STAGE_COMPLETE);
    dw_close(h);
}

static void setup_complete_shared(fault_ctx *c)
{
    world_share_old_table(c->db);
    to_stage(c, DW_STAGE_COMPLETE);
}

static void setup_contracted_shared(fault_ctx *c)
{
    world_share_old_table(c->db);
    setup_contracted(c);
}

/* The old table stays for the other migration; the world is contracted
 * exactly when its backup exists (or a failed commit's message says the
 * backup was kept), and the backup holds the rows. */
static void check_backup_kept(fault_ctx *c, sqlite3 *fresh,
                              const char *where, int rc)
{
    char path[400];
    backup_path(c->dir, OP_BACKUP, path, sizeof path);
    if (!table_exists(fresh, "items"))
        rule_broken("%s: the old table was dropped though %s uses it\n",
                    where, SHARING_NAME);
    int contracted = query_int(fresh, "SELECT contracted FROM dw_migrations"
                                      " WHERE name = '" WORLD_NAME "'") != 0;
    int present = access(path, F_OK) == 0;
    int kept = rc != DW_OK && c->msg && strstr(c->msg, "was kept");
    if (contracted != present && !(present && kept)) {
        rule_broken("%s: the migration is %scontracted and the backup %s\n",
                    where, contracted ? "" : "not ",
                    present ? "exists" : "is missing");
    }
    if (present)
        check_backup_rows(path, where);
}

/* ---- listings ---- */

typedef struct listing {
    int n;
    int last_to;
    int64_t count;
} listing;

static int count_history(const dw_history_entry *e, void *payload)
{
    listing *l = payload;
    l->n++;
    l->last_to = e->to_stage;
    return 0;
}

static int run_history(fault_ctx *c)
{
    listing l = {0, -1, 0};
    int rc = dw_history(c->h, count_history, &l);
    /* define, DUAL_WRITE, SHADOW */
    if (rc == DW_OK && (l.n != 3 || l.last_to != DW_STAGE_SHADOW))
        op_failed(c, "dw_history returned DW_OK with missing entries");
    return rc;
}

static int count_log(const dw_mismatch_entry *e, void *payload)
{
    listing *l = payload;
    l->n++;
    l->count += e->count;
    return 0;
}

/* Mismatches of keys 4 and 6 logged by shadow reads. */
static void setup_logged(fault_ctx *c)
{
    setup_shadow_open(c);
    exec_ok(c->db, "UPDATE items_v2 SET label = 'WRONG' WHERE id IN (4, 6)");
    assert_dw_ok(c->h, run_read_4(c));
    dw_row_clear(c->row);
    dw_value key = dw_int(6);
    dw_row *row = NULL;
    assert_int_equal(dw_row_new(&row), DW_OK);
    assert_dw_ok(c->h, dw_read(row, c->h, &key, 1, NULL, NULL, NULL));
    dw_row_free(row);
}

static int run_mismatch_log(fault_ctx *c)
{
    listing l = {0, -1, 0};
    int rc = dw_mismatch_log(c->h, 0, count_log, &l);
    if (rc == DW_OK && (l.n != 2 || l.count != 2))
        op_failed(c, "dw_mismatch_log returned DW_OK with missing entries");
    return rc;
}

/* ---- removing a stored migration ---- */

/* dw_sqlite_remove() of the world's stored migration: every state row of it
 * in one transaction, or nothing. */
static int run_remove(fault_ctx *c)
{
    return dw_sqlite_remove(c->db, WORLD_NAME, 0, "fault", &c->open_err);
}

/* Back at OFF, with state rows in every table remove() empties: history,
 * backfill, mismatches of keys 4 and 6 logged, a verification run with
 * its keys, key 3 queued for repair (needs DW_OPEN_REPAIR_QUEUE). */
static void setup_off_with_state(fault_ctx *c)
{
    setup_logged(c);
    dw_verify_result r;
    assert_dw_ok(c->h, dw_verify(&r, c->h, NULL));
    assert_dw_ok(c->h, write_key(c, 3, world_write_old, fail_write, &CHANGED));
    assert_dw_ok(c->h, dw_stage_set(c->h, DW_STAGE_OFF, "setup: back", 0));
}

/* ---- the catalogue ---- */

#define ATOMIC_IO (FAULT_OP_ATOMIC | FAULT_OP_IO)
#define STAGE_IO (FAULT_OP_ATOMIC | FAULT_OP_IO | FAULT_OP_STAGE)
#define READ (FAULT_OP_ATOMIC | FAULT_OP_READS)
/* Writes through application callbacks: an I/O error inside one is the
 * callback's failure (DW_ECALLBACK, the message names the error). */
#define CB_IO FAULT_CODE(DW_ECALLBACK)

const fault_op fault_ops[] = {
    {.name = "dw_open (first definition)",
     .flags = FAULT_OP_OPENS | FAULT_OP_BARE | FAULT_OP_ATOMIC,
     .run = run_open, .authoritative = DW_SIDE_OLD},
    {.name = "dw_open (stored migration)",
     .flags = FAULT_OP_OPENS | FAULT_OP_ATOMIC, .setup = setup_shadow_open,
     .run = run_open, .authoritative = DW_SIDE_OLD},

    /* The trusted side's callback only: the library syncs the other. */
    {.name = "dw_write@OFF", .flags = ATOMIC_IO, .run = run_write_old,
     .authoritative = DW_SIDE_OLD, .io_codes = CB_IO},
    {.name = "dw_write@DUAL_WRITE", .flags = ATOMIC_IO, .setup = setup_dual,
     .run = run_write_old, .authoritative = DW_SIDE_OLD, .io_codes = CB_IO},
    {.name = "dw_write@SHADOW", .flags = ATOMIC_IO,
     .setup = setup_shadow_open, .run = run_write_old,
     .authoritative = DW_SIDE_OLD, .io_codes = CB_IO},
    {.name = "dw_write@LIVE", .flags = ATOMIC_IO, .setup = setup_live,
     .run = run_write_new, .authoritative = DW_SIDE_NEW, .io_codes = CB_IO},
    {.name = "dw_write@RAMPDOWN", .flags = ATOMIC_IO, .setup = setup_rampdown,
     .run = run_write_new, .authoritative = DW_SIDE_NEW, .io_codes = CB_IO},
    /* Only the new side is written: key 3 leaves the old one behind. */
    {.name = "dw_write@COMPLETE", .flags = ATOMIC_IO, .setup = setup_complete,
     .run = run_write_new, .authoritative = DW_SIDE_NEW, .may_diverge = "3",
     .io_codes = CB_IO},
    {.name = "dw_write delete@SHADOW", .flags = ATOMIC_IO,
     .setup = setup_shadow_open, .run = run_delete_old,
     .authoritative = DW_SIDE_OLD, .io_codes = CB_IO},
    /* A failed mirror keeps the old side's write and queues the key. */
    {.name = "dw_write repair-queue@SHADOW", .flags = FAULT_OP_IO,
     .open_flags = DW_OPEN_REPAIR_QUEUE, .setup = setup_shadow_open,
     .run = run_write_old, .authoritative = DW_SIDE_OLD, .may_diverge = "3",
     .io_codes = CB_IO, .check = check_queue_3},
    {.name = "dw_mirror@SHADOW", .flags = ATOMIC_IO, .setup = setup_mirror,
     .run = run_mirror, .authoritative = DW_SIDE_OLD},

    {.name = "dw_read@OFF", .flags = READ, .run = run_read_3,
     .authoritative = DW_SIDE_OLD},
    {.name = "dw_read@DUAL_WRITE", .flags = READ, .setup = setup_dual,
     .run = run_read_3, .authoritative = DW_SIDE_OLD},
    {.name = "dw_read@SHADOW", .flags = READ, .setup = setup_shadow_open,
     .run = run_read_3, .authoritative = DW_SIDE_OLD},
    {.name = "dw_read@LIVE", .flags = READ, .setup = setup_live,
     .run = run_read_3, .authoritative = DW_SIDE_NEW},
    {.name = "dw_read@RAMPDOWN", .flags = READ, .setup = setup_rampdown,
     .run = run_read_3, .authoritative = DW_SIDE_NEW},
    {.name = "dw_read@COMPLETE", .flags = READ, .setup = setup_complete,
     .run = run_read_3, .authoritative = DW_SIDE_NEW},
    /* The mismatch is logged in a transaction of its own. */
    {.name = "dw_read mismatch@SHADOW", .flags = FAULT_OP_READS,
     .setup = setup_mismatch, .run = run_read_4,
     .authoritative = DW_SIDE_OLD, .check = check_logged_once},
    /* After the trusted read fails the other side is read, and forgotten. */
    {.name = "dw_read trusted read fails@SHADOW", .flags = READ,
     .ok_code = DW_ECALLBACK, .setup = setup_shadow_open,
     .run = run_read_trusted_fails, .authoritative = DW_SIDE_OLD,
     .check = check_old_side_failure},
    /* Test mode: memory running out is DW_ENOMEM there too, never taken
     * for a comparison that could not be made (DW_ENOCOMPARE). */
    {.name = "dw_read test-mode mismatch@SHADOW", .flags = FAULT_OP_READS,
     .open_flags = DW_OPEN_TEST_MODE, .ok_code = DW_EMISMATCH,
     .setup = setup_mismatch, .run = run_read_4,
     .authoritative = DW_SIDE_OLD, .check = check_logged_once},
    {.name = "dw_compare mismatch@SHADOW", .flags = FAULT_OP_READS,
     .setup = setup_mismatch, .run = run_compare_4,
     .authoritative = DW_SIDE_OLD, .check = check_logged_once},
    {.name = "dw_set_read_options + dw_read@SHADOW", .flags = READ,
     .setup = setup_mismatch, .run = run_read_options,
     .authoritative = DW_SIDE_OLD},

    {.name = "dw_stage_set OFF->DUAL_WRITE (setup SQL)", .flags = STAGE_IO,
     .run = run_to_dual, .authoritative = DW_SIDE_OLD,
     .finish = finish_stage},
    {.name = "dw_stage_set DUAL_WRITE->SHADOW", .flags = STAGE_IO,
     .setup = setup_dual, .run = run_to_shadow, .authoritative = DW_SIDE_OLD,
     .finish = finish_stage},
    {.name = "dw_stage_set SHADOW->LIVE (gate open)", .flags = STAGE_IO,
     .setup = setup_shadow_open, .run = run_to_live,
     .authoritative = DW_SIDE_OLD, .finish = finish_stage},
    {.name = "dw_stage_set SHADOW->LIVE (forced)", .flags = STAGE_IO,
     .setup = setup_shadow, .run = run_to_live_forced,
     .authoritative = DW_SIDE_OLD, .finish = finish_stage},
    /* Refused: it writes nothing, so the I/O walk finds no point. */
    {.name = "dw_stage_set SHADOW->LIVE (gate closed)", .flags = STAGE_IO,
     .setup = setup_shadow, .run = run_to_live, .ok_code = DW_EGATE,
     .authoritative = DW_SIDE_OLD, .finish = finish_stage},
    {.name = "dw_stage_set LIVE->SHADOW (back)", .flags = STAGE_IO,
     .setup = setup_live, .run = run_to_shadow_back,
     .authoritative = DW_SIDE_OLD, .finish = finish_stage},
    /* Entering COMPLETE marks the backfill stale. */
    {.name = "dw_stage_set RAMPDOWN->COMPLETE", .flags = STAGE_IO,
     .setup = setup_rampdown_open, .run = run_to_complete,
     .authoritative = DW_SIDE_NEW, .finish = finish_stage},

    {.name = "dw_backfill first batch", .flags = ATOMIC_IO,
     .setup = setup_batch_0, .run = run_batch, .ok_code = DW_MORE,
     .authoritative = DW_SIDE_OLD, .check = check_cursor,
     .finish = finish_backfill},
    {.name = "dw_backfill middle batch", .flags = ATOMIC_IO,
     .setup = setup_batch_1, .run = run_batch, .ok_code = DW_MORE,
     .authoritative = DW_SIDE_OLD, .check = check_cursor,
     .finish = finish_backfill},
    {.name = "dw_backfill last batch", .flags = ATOMIC_IO,
     .setup = setup_batch_2, .run = run_batch, .authoritative = DW_SIDE_OLD,
     .check = check_cursor, .finish = finish_backfill},

    /* Runs are stored as they go: a failed one stays, counting nothing. */
    {.name = "dw_verify clean", .flags = FAULT_OP_IO,
     .setup = setup_backfilled, .run = run_verify_clean,
     .authoritative = DW_SIDE_OLD, .check = check_runs_clean},
    {.name = "dw_verify divergent", .flags = FAULT_OP_IO,
     .setup = setup_divergent, .run = run_verify_divergent,
     .authoritative = DW_SIDE_OLD, .check = check_runs_divergent},
    {.name = "dw_verify range", .flags = FAULT_OP_IO,
     .setup = setup_backfilled, .run = run_verify_range,
     .authoritative = DW_SIDE_OLD},

    {.name = "dw_repair_keys", .flags = ATOMIC_IO, .setup = setup_divergent,
     .run = run_repair_keys, .authoritative = DW_SIDE_OLD},
    /* Batches of short transactions: some keys may be done. */
    {.name = "dw_repair_divergent", .flags = FAULT_OP_IO,
     .setup = setup_verified_divergent, .run = run_repair_divergent,
     .authoritative = DW_SIDE_OLD, .check = check_marked_repaired},
    {.name = "dw_repair_queue", .flags = FAULT_OP_IO,
     .open_flags = DW_OPEN_REPAIR_QUEUE, .setup = setup_queued,
     .run = run_repair_queue, .authoritative = DW_SIDE_OLD,
     .check = check_queue_3},

    {.name = "dw_override_set@SHADOW", .flags = ATOMIC_IO,
     .setup = setup_shadow_open, .run = run_override_live,
     .authoritative = DW_SIDE_OLD},
    {.name = "dw_override_set@OFF (setup SQL)", .flags = ATOMIC_IO,
     .run = run_override_dual, .authoritative = DW_SIDE_OLD},
    {.name = "dw_override_clear", .flags = ATOMIC_IO,
     .setup = setup_overridden, .run = run_override_clear,
     .authoritative = DW_SIDE_NEW},
    {.name = "dw_routing_set", .flags = ATOMIC_IO, .setup = setup_shadow_open,
     .run = run_routing, .authoritative = DW_SIDE_OLD},
    {.name = "dw_routing_set (cohort)", .flags = ATOMIC_IO,
     .setup = setup_shadow_open, .run = run_routing_cohort,
     .authoritative = DW_SIDE_OLD},
    {.name = "dw_write into the cohort@SHADOW", .flags = ATOMIC_IO,
     .setup = setup_cohort, .run = run_write_into_cohort,
     .authoritative = DW_SIDE_NEW, .io_codes = CB_IO},
    {.name = "dw_routing_get (cohort)", .flags = READ, .setup = setup_cohort,
     .run = run_routing_get, .authoritative = DW_SIDE_OLD},
    {.name = "dw_override_list", .flags = READ, .setup = setup_overridden,
     .run = run_override_list, .authoritative = DW_SIDE_NEW},

    {.name = "dw_contract", .flags = STAGE_IO, .setup = setup_complete,
     .run = run_contract, .authoritative = DW_SIDE_NEW,
     .check = check_backup, .finish = finish_stage},
    {.name = "dw_restore", .flags = STAGE_IO, .setup = setup_contracted,
     .run = run_restore, .authoritative = DW_SIDE_NEW,
     .finish = finish_stage},
    /* Another migration at COMPLETE shares the old table: kept for it.
     * (Found a defect: SQLite's json_valid() said a sound spec of the
     * other migration was damaged when its parser ran out of memory;
     * the core parses other migrations' specs itself now.) */
    {.name = "dw_contract (old table shared)", .flags = STAGE_IO,
     .setup = setup_complete_shared, .run = run_contract,
     .authoritative = DW_SIDE_NEW, .check = check_backup_kept,
     .finish = finish_stage},
    {.name = "dw_restore (old table shared)", .flags = STAGE_IO,
     .setup = setup_contracted_shared, .run = run_restore,
     .authoritative = DW_SIDE_NEW, .finish = finish_stage},

    /* At OFF, nothing routed: the old model was written all along. */
    {.name = "dw_remove", .flags = FAULT_OP_OPENS | ATOMIC_IO,
     .run = run_remove, .authoritative = DW_SIDE_OLD},
    {.name = "dw_remove@OFF (stored state)",
     .flags = FAULT_OP_OPENS | ATOMIC_IO, .open_flags = DW_OPEN_REPAIR_QUEUE,
     .setup = setup_off_with_state, .run = run_remove,
     .authoritative = DW_SIDE_OLD},
    /* Contracted at COMPLETE: the old model is gone. */
    {.name = "dw_remove (contracted)", .flags = FAULT_OP_OPENS | ATOMIC_IO,
     .setup = setup_contracted, .run = run_remove,
     .authoritative = DW_SIDE_NEW},

    {.name = "dw_history", .flags = READ, .setup = setup_shadow,
     .run = run_history, .authoritative = DW_SIDE_OLD},
    {.name = "dw_mismatch_log", .flags = READ, .setup = setup_logged,
     .run = run_mismatch_log, .authoritative = DW_SIDE_OLD},
    {.name = "dw_repair_count + dw_mismatch_log_count", .flags = READ,
     .open_flags = DW_OPEN_REPAIR_QUEUE, .setup = setup_queued,
     .run = count_queue, .authoritative = DW_SIDE_OLD},
};

const int fault_nops = (int)(sizeof fault_ops / sizeof *fault_ops);

/* ---- running the walks in parallel --------------------------------------- */

static int fault_jobs(void)
{
    const char *s = getenv("DW_FAULT_JOBS");
    if (s)
        return atoi(s) > 1 ? atoi(s) : 1;
    /* valgrind follows forks; one process keeps its leak report simple. */
    const char *preload = getenv("LD_PRELOAD");
    if (preload && strstr(preload, "vgpreload"))
        return 1;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 4 ? 4 : (int)n;
}

/* One worker: takes test numbers from the queue until it is empty; after
 * each, writes the number and the test's results to `out`. */
static int worker(int queue, FILE *out, const char *group,
                  const struct CMUnitTest *tests, size_t slot_size)
{
    int failed = 0;
    unsigned char i;
    while (read(queue, &i, 1) == 1) {
        failed += _cmocka_run_group_tests(group, &tests[i], 1, NULL, NULL);
        const char *slot = tests[i].initial_state;
        int index = i;
        assert_int_equal(fwrite(&index, sizeof index, 1, out), 1);
        assert_int_equal(fwrite(slot, slot_size, 1, out), 1);
        fflush(out);
    }
    return failed;
}

/* Runs the tests, in workers when there are several, which keep their
 * logs and results in `dir`. */
static int run_tests_in(const char *dir, const char *group,
                        const struct CMUnitTest *tests, size_t n,
                        void *results, size_t slot_size)
{
    int jobs = fault_jobs();
    if (jobs <= 1 || n <= 1)
        return _cmocka_run_group_tests(group, tests, n, NULL, NULL);
    assert_true(n <= 255);
    if ((size_t)jobs > n)
        jobs = (int)n;
    int queue[2];
    assert_int_equal(pipe(queue), 0);
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)i;
        assert_int_equal(write(queue[1], &b, 1), 1);
    }
    close(queue[1]);
    fflush(stdout);
    fflush(stderr);
    pid_t pids[8];
    for (int k = 0; k < jobs; k++) {
        char log[340], res[340];
        snprintf(log, sizeof log, "%s/%d.log", dir, k);
        snprintf(res, sizeof res, "%s/%d.res", dir, k);
        pids[k] = fork();
        assert_true(pids[k] >= 0);
        if (pids[k] == 0) {
            FILE *l = fopen(log, "w");
            FILE *r = fopen(res, "wb");
            if (!l || !r)
                _exit(125);
            dup2(fileno(l), 1);
            dup2(fileno(l), 2);
            int failed = worker(queue[0], r, group, tests, slot_size);
            fclose(r);
            fflush(stdout);
            fflush(stderr);
            exit(failed > 100 ? 100 : failed);
        }
    }
    close(queue[0]);
    int failed = 0;
    for (int k = 0; k < jobs; k++) {
        int status = 0;
        assert_int_equal(waitpid(pids[k], &status, 0), pids[k]);
        char path[340];
        snprintf(path, sizeof path, "%s/%d.log", dir, k);
        FILE *l = fopen(path, "r");
        if (l) {
            char buf[4096];
            size_t got;
            while ((got = fread(buf, 1, sizeof buf, l)) > 0)
                fwrite(buf, 1, got, stdout);
            fclose(l);
            unlink(path);
        }
        snprintf(path, sizeof path, "%s/%d.res", dir, k);
        FILE *r = fopen(path, "rb");
        int index;
        while (r && fread(&index, sizeof index, 1, r) == 1) {
            assert_true(index >= 0 && (size_t)index < n);
            char *slot = tests[index].initial_state;
            assert_true(slot >= (char *)results);
            assert_int_equal(fread(slot, slot_size, 1, r), 1);
        }
        if (r)
            fclose(r);
        unlink(path);
        if (WIFEXITED(status) && WEXITSTATUS(status) != 125) {
            failed += WEXITSTATUS(status);
        } else {
            printf("fault worker %d died (status %d)\n", k, status);
            failed++;
        }
    }
    fflush(stdout);
    return failed;
}

int fault_run_tests(const char *group, const struct CMUnitTest *tests,
                    size_t n, void *results, size_t slot_size)
{
    /* The tests' own directories go in the run's, which is removed whole
     * at the end: a test that fails half-way leaves its world behind. */
    const char *base = getenv("TMPDIR");
    char *saved = base ? strdup(base) : NULL;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/dwfault.XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(setenv("TMPDIR", dir, 1), 0);
    int failed = run_tests_in(dir, group, tests, n, results, slot_size);
    if (saved)
        setenv("TMPDIR", saved, 1);
    else
        unsetenv("TMPDIR");
    free(saved);
    test_remove_tree(dir);
    return failed;
}
