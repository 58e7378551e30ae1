/* dwctl's reading commands: list, status, history, mismatches. Each prints
 * text for people or, with --json, one JSON document for scripts. */
#include <string.h>
#include <time.h>

#include "dwctl.h"

static double now_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Where one migration stands, read once and shown by list and status. */
typedef struct standing {
    int stage;
    int callbacks;
    int contracted;
    dw_backfill_progress backfill;
    dw_verify_result verify;
    int64_t mismatches;
    int64_t mismatches_dropped;
    int64_t repair_queue;
    dw_routing routing;
    char *cohort; /* the routing's cohort, copied: the handle's copy lasts
                     only until its next call */
    int64_t overrides;
    int64_t overrides_below_complete;
} standing;

static int count_override(const dw_override_entry *e, void *payload)
{
    standing *s = payload;
    s->overrides++;
    if (e->stage < DW_STAGE_COMPLETE)
        s->overrides_below_complete++;
    return 0;
}

static void standing_free(standing *s)
{
    sqlite3_free(s->cohort);
    s->cohort = NULL;
    s->routing.canary_cohort = NULL;
}

static int read_standing(standing *s, dw_migration *h)
{
    memset(s, 0, sizeof *s);
    int rc;
    if ((rc = dw_stage_get(&s->stage, h)) != DW_OK ||
        (rc = dw_backfill_status(&s->backfill, h)) != DW_OK ||
        (rc = dw_verify_last(&s->verify, h)) != DW_OK ||
        (rc = dw_mismatch_log_count(&s->mismatches, &s->mismatches_dropped,
                                    h)) != DW_OK ||
        (rc = dw_repair_count(&s->repair_queue, h)) != DW_OK ||
        (rc = dw_routing_get(&s->routing, h)) != DW_OK)
        return rc;
    if (s->routing.canary_cohort &&
        !(s->cohort = sqlite3_mprintf("%s", s->routing.canary_cohort)))
        return DW_ENOMEM;
    s->routing.canary_cohort = s->cohort;
    return dw_override_list(h, count_override, s);
}

static const char *backfill_state(const dw_backfill_progress *b)
{
    if (b->source == DW_SIDE_NONE)
        return "not started";
    if (b->stale)
        return "stale";
    if (b->finished)
        return "finished";
    return b->activity == DW_BACKFILL_RUNNING ? "running" : "stopped";
}

static const char *activity_name(int activity)
{
    return activity == DW_BACKFILL_RUNNING   ? "running"
           : activity == DW_BACKFILL_STOPPED ? "stopped"
           : activity == DW_BACKFILL_SILENT  ? "silent"
                                             : "idle";
}

/* A span of seconds in words: "40 s", "12 min", "3.5 h", "2.0 days". */
static char *span_text(double seconds)
{
    if (seconds < 0)
        seconds = 0;
    if (seconds < 120)
        return sqlite3_mprintf("%.0f s", seconds);
    if (seconds < 120 * 60)
        return sqlite3_mprintf("%.0f min", seconds / 60);
    if (seconds < 48 * 3600)
        return sqlite3_mprintf("%.1f h", seconds / 3600);
    return sqlite3_mprintf("%.1f days", seconds / 86400);
}

/* Who runs a backfill under way, and whether it still does: "stopped
 * 5 min ago (process 123 on web1 is gone)"; NULL when none is under
 * way. */
static char *runner_text(const dw_backfill_progress *b)
{
    if (b->activity == DW_BACKFILL_IDLE || b->finished || b->stale)
        return NULL;
    char *ago = span_text(now_wall() - b->last_progress);
    char *who = b->runner_pid
                    ? sqlite3_mprintf("process %lld on %s",
                                      (long long)b->runner_pid,
                                      b->runner_host[0] ? b->runner_host
                                                        : "an unnamed host")
                    : sqlite3_mprintf("a process not recorded");
    char *text = NULL;
    if (ago && who && b->activity == DW_BACKFILL_STOPPED)
        text = sqlite3_mprintf("stopped %s ago (%s is gone)", ago, who);
    else if (ago && who && b->activity == DW_BACKFILL_SILENT)
        text = sqlite3_mprintf("stopped: no batch for %s (%s)", ago, who);
    else if (ago && who)
        text = sqlite3_mprintf("running (%s; last batch %s ago)", who, ago);
    sqlite3_free(ago);
    sqlite3_free(who);
    return text;
}

static double percent_done(const dw_backfill_progress *b)
{
    return b->rows_total > 0 ? 100.0 * (double)b->rows_done /
                                   (double)b->rows_total
                             : (b->finished ? 100.0 : 0.0);
}

/* One line: what needs attention first, or "ok". */
static char *health(const standing *s)
{
    sqlite3_str *out = sqlite3_str_new(NULL);
    const char *sep = "";
#define NOTE(...)                                                              \
    do {                                                                       \
        sqlite3_str_appendf(out, "%s", sep);                                   \
        sqlite3_str_appendf(out, __VA_ARGS__);                                 \
        sep = "; ";                                                            \
    } while (0)
    if (s->verify.run_id && s->verify.finished && !s->verify.clean)
        NOTE("last verification found %lld divergent keys",
             (long long)(s->verify.missing + s->verify.extra +
                         s->verify.different));
    if (s->mismatches)
        NOTE("%lld mismatches logged", (long long)s->mismatches);
    if (s->repair_queue)
        NOTE("%lld keys queued for repair", (long long)s->repair_queue);
    if (s->backfill.source != DW_SIDE_NONE && !s->backfill.finished &&
        !s->backfill.stale) {
        char *runner = s->backfill.activity == DW_BACKFILL_RUNNING
                           ? NULL
                           : runner_text(&s->backfill);
        NOTE("backfill at %.1f%%%s%s", percent_done(&s->backfill),
             runner ? ", " : "", runner ? runner : "");
        sqlite3_free(runner);
    }
    if (s->contracted)
        NOTE("old model dropped (contracted)");
    if (s->callbacks)
        NOTE("C callback mappings (backfill and verify run in the "
             "application)");
#undef NOTE
    if (!sqlite3_str_length(out))
        sqlite3_str_appendall(out, "ok");
    return sqlite3_str_finish(out);
}

static void json_backfill(json_out *j, const dw_backfill_progress *b)
{
    json_object(j, "backfill");
    json_str(j, "state", backfill_state(b));
    json_str(j, "source",
             b->source == DW_SIDE_OLD   ? "old"
             : b->source == DW_SIDE_NEW ? "new"
                                        : NULL);
    json_int(j, "rows_done", b->rows_done);
    json_int(j, "rows_total", b->rows_total);
    json_int(j, "rows_written", b->rows_written);
    json_int(j, "rows_deleted", b->rows_deleted);
    json_int(j, "batches", b->batches);
    json_bool(j, "finished", b->finished);
    json_bool(j, "stale", b->stale);
    json_object(j, "runner");
    json_str(j, "activity", activity_name(b->activity));
    if (b->runner_pid)
        json_int(j, "pid", b->runner_pid);
    else
        json_null(j, "pid");
    json_str(j, "host", b->runner_host[0] ? b->runner_host : NULL);
    json_num(j, "last_progress", b->last_progress);
    json_end(j, '}');
    json_end(j, '}');
}

static void json_verify(json_out *j, const dw_verify_result *v)
{
    if (!v->run_id) {
        json_null(j, "verify");
        return;
    }
    json_object(j, "verify");
    json_int(j, "run_id", v->run_id);
    json_num(j, "started", v->started);
    json_num(j, "seconds", v->seconds);
    json_int(j, "keys", v->keys);
    json_int(j, "missing", v->missing);
    json_int(j, "extra", v->extra);
    json_int(j, "different", v->different);
    json_bool(j, "full", v->full);
    json_bool(j, "clean", v->clean);
    json_bool(j, "finished", v->finished);
    json_end(j, '}');
}

/* ---- list ---------------------------------------------------------------- */

typedef struct list_state {
    dwctl *c;
    json_out j;
    int count;
    int code;
} list_state;

static int list_one(const dw_stored_migration *m, void *payload)
{
    list_state *ls = payload;
    dw_migration *h = NULL;
    char *err = NULL;
    standing s;
    memset(&s, 0, sizeof s);
    int rc = dw_sqlite_open_stored(&h, ls->c->db, m->name, 0, &err);
    if (rc == DW_OK)
        rc = read_standing(&s, h);
    char *line;
    if (rc != DW_OK) {
        /* One migration that cannot be opened (say, a table renamed under
         * it) does not hide the others: it is listed with the reason, and
         * the exit code says something failed. */
        char *msg = sqlite3_mprintf("%s: %s", m->name,
                                    err ? err : dw_errmsg(h));
        int code = fail(rc, msg);
        /* The listing itself was not refused: a stored spec the schema no
         * longer fits is a failure here, not a refusal. */
        if (ls->code == EXIT_DONE)
            ls->code = code == EXIT_USAGE ? EXIT_ERROR : code;
        line = sqlite3_mprintf("cannot open: %s", err ? err : dw_errmsg(h));
        sqlite3_free(msg);
        standing_free(&s);
        memset(&s, 0, sizeof s);
        s.stage = m->stage;
    } else {
        s.callbacks = m->callbacks;
        s.contracted = m->contracted;
        line = health(&s);
    }
    dw_free(err);
    if (ls->c->json) {
        json_out *j = &ls->j;
        json_object(j, NULL);
        json_str(j, "name", m->name);
        json_str(j, "stage", dw_stage_name(s.stage));
        json_bool(j, "callbacks", m->callbacks);
        json_bool(j, "contracted", m->contracted);
        if (rc == DW_OK) {
            json_backfill(j, &s.backfill);
            json_verify(j, &s.verify);
            json_int(j, "mismatches", s.mismatches);
            json_int(j, "repair_queue", s.repair_queue);
        }
        json_bool(j, "opened", rc == DW_OK);
        json_str(j, "health", line ? line : "(out of memory)");
        json_end(j, '}');
    } else {
        if (ls->count == 0)
            printf("%-24s %-10s %s\n", "NAME", "STAGE", "HEALTH");
        printf("%-24s %-10s %s\n", m->name, stage_word(s.stage),
               line ? line : "(out of memory)");
    }
    sqlite3_free(line);
    standing_free(&s);
    dw_close(h);
    ls->count++;
    return 0;
}

int cmd_list(dwctl *c)
{
    list_state ls;
    memset(&ls, 0, sizeof ls);
    ls.c = c;
    if (c->json) {
        json_start(&ls.j);
        json_object(&ls.j, NULL);
        json_array(&ls.j, "migrations");
    }
    char *err = NULL;
    int rc = dw_sqlite_list(c->db, list_one, &ls, &err);
    if (rc != DW_OK) {
        if (c->json)
            json_drop(&ls.j);
        int code = fail(rc, err);
        dw_free(err);
        return code;
    }
    if (c->json) {
        json_end(&ls.j, ']');
        json_end(&ls.j, '}');
        json_finish(&ls.j);
    } else if (ls.count == 0) {
        printf("no migrations in %s\n", c->db_path);
    }
    return ls.code;
}

/* ---- status -------------------------------------------------------------- */

/* The spec as stored, for showing what the migration maps. */
typedef struct found_spec {
    const char *name;
    char *spec;
    int callbacks;
    int contracted;
    double updated;
} found_spec;

static int find_spec(const dw_stored_migration *m, void *payload)
{
    found_spec *f = payload;
    if (strcmp(m->name, f->name) != 0)
        return 0;
    f->spec = sqlite3_mprintf("%s", m->spec);
    f->callbacks = m->callbacks;
    f->contracted = m->contracted;
    f->updated = m->updated;
    return 1;
}

/* What to do next and whether the library would allow it now. */
typedef struct next_step {
    /* "stage", "backfill", "verify", "repair" (then verify), "canary" (its
     * keys hold the contract back), "contract", or "done". */
    const char *action;
    int stage;          /* the stage the next move goes to, or -1 */
    int gate_open;
    char *why;          /* what closes the gate, when it is closed */
} next_step;

/* The contract's own gate, beside being at COMPLETE: no key routed below
 * it (the library checks the same, and says so when asked to contract). */
static char *contract_blocked(const standing *s)
{
    const dw_routing *r = &s->routing;
    if (s->overrides_below_complete)
        return sqlite3_mprintf("the contract is held back: %lld keys have "
                               "overrides below COMPLETE (canary "
                               "--remove-keys)",
                               (long long)s->overrides_below_complete);
    if ((r->canary_percent > 0 || r->canary_cohort) &&
        r->canary_stage != DW_STAGE_COMPLETE)
        return sqlite3_mprintf("the contract is held back: the canary runs "
                               "at %s (canary --clear)",
                               stage_word(r->canary_stage));
    return NULL;
}

static int plan_next(next_step *n, dw_migration *h, const standing *s)
{
    memset(n, 0, sizeof *n);
    n->stage = -1;
    n->gate_open = 1;
    if (s->contracted) {
        n->action = "done";
        return DW_OK;
    }
    if (s->stage == DW_STAGE_COMPLETE) {
        n->why = contract_blocked(s);
        n->gate_open = !n->why;
        n->action = n->gate_open ? "contract" : "canary";
        return DW_OK;
    }
    n->stage = s->stage + 1;
    int rc = dw_stage_set(h, n->stage, "check", DW_STAGE_CHECK);
    if (rc == DW_EGATE) {
        n->gate_open = 0;
        n->why = tool_message(dw_errmsg(h));
    } else if (rc != DW_OK) {
        return rc;
    }
    int bf_done = s->backfill.finished && !s->backfill.stale;
    int dirty = s->verify.run_id && s->verify.finished && !s->verify.clean;
    /* At DUAL_WRITE the move to SHADOW has no gate, but comparing before
     * the backfill would only report the rows not copied yet. Callback
     * migrations backfill and verify in the application. */
    if (s->callbacks || s->stage == DW_STAGE_OFF)
        n->action = "stage";
    else if (!bf_done)
        n->action = "backfill";
    else if (!n->gate_open && dirty)
        n->action = "repair";
    else if (!n->gate_open)
        n->action = "verify";
    else
        n->action = "stage";
    return DW_OK;
}

static void print_next(const char *db_path, const char *migration,
                       const next_step *n)
{
    char *db = shell_word(db_path), *name = shell_word(migration);
    if (!db || !name) {
        sqlite3_free(db);
        sqlite3_free(name);
        return;
    }
    const char *a = n->action;
    if (strcmp(a, "done") == 0)
        printf("next        nothing: the old model was dropped (restore puts "
               "it back)\n");
    else if (strcmp(a, "contract") == 0)
        printf("next        dwctl %s contract %s --backup FILE\n", db, name);
    else if (strcmp(a, "canary") == 0)
        printf("next        dwctl %s canary %s, then contract\n", db, name);
    else if (strcmp(a, "stage") == 0)
        printf("next        dwctl %s stage %s %s --reason TEXT\n", db, name,
               stage_word(n->stage));
    else if (strcmp(a, "repair") == 0)
        printf("next        dwctl %s repair %s (if not done since the last "
               "verification), then verify %s\n",
               db, name, name);
    else
        printf("next        dwctl %s %s %s, then stage %s\n", db, a, name,
               stage_word(n->stage));
    const char *into = n->stage >= 0 ? stage_word(n->stage) : "contract";
    if (strcmp(a, "done") != 0 && n->gate_open)
        printf("gate        open into %s\n", into);
    else if (strcmp(a, "done") != 0)
        printf("gate        %s\n", n->why ? n->why : "closed");
    sqlite3_free(db);
    sqlite3_free(name);
}

static int print_mismatch_line(const dw_mismatch_entry *e, void *payload)
{
    (void)payload;
    char when[64];
    printf("            %s %s x%lld, last %s: %s\n", e->key,
           kind_words(e->kind), (long long)e->count,
           format_time(when, sizeof when, e->last_seen), e->detail);
    return 0;
}

static int json_mismatch(const dw_mismatch_entry *e, void *payload)
{
    json_out *j = payload;
    json_object(j, NULL);
    json_str(j, "key", e->key);
    json_str(j, "kind", kind_name(e->kind));
    json_str(j, "digest", e->digest);
    json_str(j, "detail", e->detail);
    json_int(j, "count", e->count);
    json_num(j, "first_seen", e->first_seen);
    json_num(j, "last_seen", e->last_seen);
    json_end(j, '}');
    return 0;
}

/* A side of the stored spec, "table(key) [columns]", through SQLite's JSON
 * functions; a side of the key alone says so. */
static char *describe_side(sqlite3 *db, const char *spec, const char *side)
{
    char *sql = sqlite3_mprintf(
        "SELECT json_extract(?1, '$.%s.table') || '(' || "
        "(SELECT group_concat(value, ', ') FROM json_each(?1, '$.%s.key')) "
        "|| ') columns: ' || "
        "coalesce((SELECT group_concat(value, ', ') FROM "
        "json_each(?1, '$.%s.columns')), 'none, the key alone')",
        side, side, side);
    sqlite3_stmt *st = NULL;
    char *out = NULL;
    if (sql && sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_bind_text(st, 1, spec, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        out = sqlite3_mprintf("%s", sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_free(sql);
    return out;
}

static const char *map_kind(sqlite3 *db, const char *spec, const char *dir)
{
    char *sql = sqlite3_mprintf(
        "SELECT CASE WHEN json_type(?1, '$.%s.sql') IS NOT NULL THEN 'SQL' "
        "WHEN json_type(?1, '$.%s.callback') IS NOT NULL THEN 'C callback' "
        "ELSE 'none' END",
        dir, dir);
    sqlite3_stmt *st = NULL;
    const char *kind = "?";
    if (sql && sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_bind_text(st, 1, spec, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(st, 0);
        kind = strcmp(k, "SQL") == 0          ? "SQL"
               : strcmp(k, "C callback") == 0 ? "C callback"
                                              : "none";
    }
    sqlite3_finalize(st);
    sqlite3_free(sql);
    return kind;
}

static void print_routing(const standing *s)
{
    char *canary = canary_text(&s->routing);
    const char *promote = promote_name(&s->routing);
    printf("canary      %s\n", canary ? canary : "(out of memory)");
    printf("promote     %s\n", promote ? promote : "none");
    printf("overrides   %lld keys\n", (long long)s->overrides);
    sqlite3_free(canary);
}

/* The routing settings as members of the open JSON object. */
static void json_routing_members(json_out *j, const dw_routing *r)
{
    json_num(j, "percent", r->canary_percent);
    json_str(j, "cohort", r->canary_cohort);
    json_str(j, "stage", dw_stage_name(r->canary_stage));
    json_str(j, "promote", promote_name(r));
}

static void json_routing(json_out *j, const standing *s)
{
    json_object(j, "canary");
    json_routing_members(j, &s->routing);
    json_int(j, "overrides", s->overrides);
    json_end(j, '}');
}

static int list_override(const dw_override_entry *e, void *payload)
{
    json_out *j = payload;
    if (j) {
        json_object(j, NULL);
        json_str(j, "key", e->key);
        json_str(j, "stage", dw_stage_name(e->stage));
        json_bool(j, "promoted", e->promoted);
        json_num(j, "time", e->time);
        json_end(j, '}');
    } else {
        printf("  %s at %s%s\n", e->key, stage_word(e->stage),
               e->promoted ? " (promoted on write)" : "");
    }
    return 0;
}

int show_canary(dwctl *c, dw_migration *h)
{
    dw_routing r;
    int rc = dw_routing_get(&r, h);
    if (rc != DW_OK)
        return fail_h(rc, h);
    if (c->json) {
        json_out j;
        json_start(&j);
        json_object(&j, NULL);
        json_str(&j, "name", dw_name(h));
        json_routing_members(&j, &r);
        json_array(&j, "overrides");
        rc = dw_override_list(h, list_override, &j);
        json_end(&j, ']');
        json_end(&j, '}');
        json_close(&j, rc);
        return fail_h(rc, h);
    }
    char *canary = canary_text(&r);
    const char *promote = promote_name(&r);
    printf("%s: canary %s; promote on write: %s\noverrides:\n", dw_name(h),
           canary ? canary : "(out of memory)", promote ? promote : "none");
    sqlite3_free(canary);
    rc = dw_override_list(h, list_override, NULL);
    return fail_h(rc, h);
}

static int print_status(dwctl *c, dw_migration *h, const found_spec *f,
                        const standing *s, const next_step *n)
{
    int rc = DW_OK;
    char when[64];
    char *old_side = describe_side(c->db, f->spec, "old");
    char *new_side = describe_side(c->db, f->spec, "new");
    printf("migration   %s\n", dw_name(h));
    printf("stage       %s\n", stage_word(s->stage));
    printf("old model   %s%s\n", old_side ? old_side : "?",
           f->contracted ? " (dropped by the contract)" : "");
    printf("new model   %s\n", new_side ? new_side : "?");
    printf("mappings    up: %s, down: %s\n", map_kind(c->db, f->spec, "up"),
           map_kind(c->db, f->spec, "down"));
    sqlite3_free(old_side);
    sqlite3_free(new_side);
    print_routing(s);
    const dw_backfill_progress *b = &s->backfill;
    char *runner = runner_text(b);
    if (b->source == DW_SIDE_NONE)
        printf("backfill    not started\n");
    else
        printf("backfill    %s, %s to %s: %lld of %lld rows (%.1f%%), %lld "
               "written, %lld deleted, %lld batches\n",
               runner ? runner : backfill_state(b),
               b->source == DW_SIDE_OLD ? "old" : "new",
               b->target == DW_SIDE_OLD ? "old" : "new",
               (long long)b->rows_done, (long long)b->rows_total,
               percent_done(b), (long long)b->rows_written,
               (long long)b->rows_deleted, (long long)b->batches);
    sqlite3_free(runner);
    const dw_verify_result *v = &s->verify;
    if (!v->run_id)
        printf("verify      never run\n");
    else if (!v->finished)
        printf("verify      run %lld at %s did not finish\n",
               (long long)v->run_id,
               format_time(when, sizeof when, v->started));
    else
        printf("verify      run %lld at %s: %s, %lld keys, %lld missing, "
               "%lld extra, %lld different%s (%.2f s)\n",
               (long long)v->run_id,
               format_time(when, sizeof when, v->started),
               v->clean ? "clean" : "DIVERGENT", (long long)v->keys,
               (long long)v->missing, (long long)v->extra,
               (long long)v->different, v->full ? "" : ", over a range",
               v->seconds);
    printf("mismatches  %lld logged, %lld dropped by the cap\n",
           (long long)s->mismatches, (long long)s->mismatches_dropped);
    if (s->mismatches)
        rc = dw_mismatch_log(h, 3, print_mismatch_line, NULL);
    printf("repairs     %lld keys queued\n", (long long)s->repair_queue);
    if (f->callbacks)
        printf("note        the mappings are C callbacks: backfill, verify "
               "and repair run inside the application\n");
    print_next(c->db_path, dw_name(h), n);
    return rc;
}

static int json_status(dwctl *c, dw_migration *h, const found_spec *f,
                       const standing *s, const next_step *n)
{
    (void)c;
    json_out j;
    json_start(&j);
    json_object(&j, NULL);
    json_str(&j, "name", dw_name(h));
    json_str(&j, "stage", dw_stage_name(s->stage));
    json_str(&j, "spec_digest", dw_spec_digest(h));
    json_bool(&j, "callbacks", f->callbacks);
    json_bool(&j, "contracted", f->contracted);
    /* The stored spec is JSON already: parsed back, not quoted. */
    json_raw(&j, "spec", f->spec);
    json_routing(&j, s);
    json_backfill(&j, &s->backfill);
    json_verify(&j, &s->verify);
    json_object(&j, "mismatches");
    json_int(&j, "entries", s->mismatches);
    json_int(&j, "dropped", s->mismatches_dropped);
    json_array(&j, "latest");
    int rc = dw_mismatch_log(h, 3, json_mismatch, &j);
    json_end(&j, ']');
    json_end(&j, '}');
    json_int(&j, "repair_queue", s->repair_queue);
    json_object(&j, "next");
    json_str(&j, "action", n->action);
    json_str(&j, "stage", n->stage >= 0 ? dw_stage_name(n->stage) : NULL);
    json_bool(&j, "gate_open", n->gate_open);
    json_str(&j, "gate", n->why);
    json_end(&j, '}');
    json_end(&j, '}');
    json_close(&j, rc);
    return rc;
}

int cmd_status(dwctl *c)
{
    dw_migration *h = NULL;
    int code = open_migration(&h, c);
    if (code != EXIT_DONE)
        return code;
    found_spec f;
    memset(&f, 0, sizeof f);
    f.name = c->args[0];
    char *err = NULL;
    int rc = dw_sqlite_list(c->db, find_spec, &f, &err);
    if (rc == DW_OK && !f.spec)
        rc = DW_ENOMEM;
    standing s;
    memset(&s, 0, sizeof s);
    next_step n;
    memset(&n, 0, sizeof n);
    if (rc == DW_OK && (rc = read_standing(&s, h)) == DW_OK) {
        s.callbacks = f.callbacks;
        s.contracted = f.contracted;
        rc = plan_next(&n, h, &s);
    }
    if (rc == DW_OK)
        rc = c->json ? json_status(c, h, &f, &s, &n)
                     : print_status(c, h, &f, &s, &n);
    code = err ? fail(rc, err) : fail_h(rc, h);
    standing_free(&s);
    dw_free(err);
    sqlite3_free(f.spec);
    sqlite3_free(n.why);
    dw_close(h);
    return code;
}

/* ---- history ------------------------------------------------------------- */

typedef struct history_state {
    dwctl *c;
    json_out j;
    int64_t skip;
} history_state;

static int count_entry(const dw_history_entry *e, void *payload)
{
    (void)e;
    (*(int64_t *)payload)++;
    return 0;
}

static int show_entry(const dw_history_entry *e, void *payload)
{
    history_state *hs = payload;
    if (hs->skip > 0) {
        hs->skip--;
        return 0;
    }
    if (hs->c->json) {
        json_out *j = &hs->j;
        json_object(j, NULL);
        json_int(j, "id", e->id);
        json_num(j, "time", e->time);
        json_str(j, "event", e->event);
        json_str(j, "from", dw_stage_name(e->from_stage));
        json_str(j, "to", dw_stage_name(e->to_stage));
        json_bool(j, "forced", e->forced);
        json_str(j, "reason", e->reason);
        json_str(j, "detail", e->detail);
        json_end(j, '}');
        return 0;
    }
    char when[64];
    printf("%s  %-9s", format_time(when, sizeof when, e->time), e->event);
    if (strcmp(e->event, "stage") == 0 || strcmp(e->event, "restore") == 0)
        printf(" %s -> %s", stage_word(e->from_stage),
               stage_word(e->to_stage));
    else
        printf(" at %s", stage_word(e->to_stage));
    if (e->forced)
        printf(" FORCED");
    if (e->reason)
        printf(": %s", e->reason);
    if (e->detail)
        printf(" [%s]", e->detail);
    printf("\n");
    return 0;
}

int cmd_history(dwctl *c)
{
    int limit = 0;
    if (opt_int(c, "limit", 0, 1000000000, &limit) != 0)
        return EXIT_USAGE;
    dw_migration *h = NULL;
    int code = open_migration(&h, c);
    if (code != EXIT_DONE)
        return code;
    history_state hs;
    memset(&hs, 0, sizeof hs);
    hs.c = c;
    int rc = DW_OK;
    /* The last N: count first, then skip the rest (oldest first). */
    if (limit > 0) {
        int64_t total = 0;
        rc = dw_history(h, count_entry, &total);
        hs.skip = total > limit ? total - limit : 0;
    }
    if (c->json) {
        json_start(&hs.j);
        json_object(&hs.j, NULL);
        json_str(&hs.j, "name", dw_name(h));
        json_array(&hs.j, "history");
    }
    if (rc == DW_OK)
        rc = dw_history(h, show_entry, &hs);
    if (c->json) {
        json_end(&hs.j, ']');
        json_end(&hs.j, '}');
        json_close(&hs.j, rc);
    }
    code = fail_h(rc, h);
    dw_close(h);
    return code;
}

/* ---- mismatches ---------------------------------------------------------- */

int cmd_mismatches(dwctl *c)
{
    int limit = 20;
    if (opt_int(c, "limit", 0, 1000000000, &limit) != 0)
        return EXIT_USAGE;
    dw_migration *h = NULL;
    int code = open_migration(&h, c);
    if (code != EXIT_DONE)
        return code;
    int64_t entries = 0, dropped = 0;
    int rc = dw_mismatch_log_count(&entries, &dropped, h);
    int clear = opt_given(c, "clear");
    if (rc == DW_OK && c->json) {
        json_out j;
        json_start(&j);
        json_object(&j, NULL);
        json_str(&j, "name", dw_name(h));
        json_int(&j, "entries", entries);
        json_int(&j, "dropped", dropped);
        json_array(&j, "mismatches");
        rc = dw_mismatch_log(h, limit, json_mismatch, &j);
        json_end(&j, ']');
        json_end(&j, '}');
        json_close(&j, rc);
    } else if (rc == DW_OK) {
        printf("%s: %lld mismatches logged, %lld dropped by the cap\n",
               dw_name(h), (long long)entries, (long long)dropped);
        rc = dw_mismatch_log(h, limit, print_mismatch_line, NULL);
    }
    if (rc == DW_OK && clear) {
        rc = dw_mismatch_log_clear(h);
        if (rc == DW_OK && !c->json)
            printf("%s: the mismatch log is cleared\n", dw_name(h));
    }
    code = fail_h(rc, h);
    dw_close(h);
    /* Cleared as asked: nothing is left logged to report. */
    if (code == EXIT_DONE && entries > 0 && !clear)
        code = EXIT_DIVERGED;
    return code;
}
