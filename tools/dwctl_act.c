/* dwctl's commands that change something: define, remove, stage, backfill,
 * verify, repair, canary, contract and restore. Each is one or two library
 * calls; the library does the checking. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dwctl.h"

/* ---- define -------------------------------------------------------------- */

/* Appends a JSON array of the comma-separated names in `list`. */
static void json_name_list(sqlite3_str *out, const char *list)
{
    sqlite3_str_appendchar(out, 1, '[');
    const char *p = list;
    for (int n = 0;; n++) {
        size_t len = strcspn(p, ",");
        const char *s = p, *e = p + len;
        while (s < e && *s == ' ')
            s++;
        while (e > s && e[-1] == ' ')
            e--;
        char *name = sqlite3_mprintf("%.*s", (int)(e - s), s);
        if (n)
            sqlite3_str_appendchar(out, 1, ',');
        json_quote(out, name ? name : "");
        sqlite3_free(name);
        if (!p[len])
            break;
        p += len + 1;
    }
    sqlite3_str_appendchar(out, 1, ']');
}

static void json_side_spec(sqlite3_str *out, const dwctl *c, const char *side)
{
    char key_opt[16], cols_opt[16];
    snprintf(key_opt, sizeof key_opt, "%s-key", side);
    snprintf(cols_opt, sizeof cols_opt, "%s-columns", side);
    sqlite3_str_appendf(out, "\"%s\":{\"table\":", side);
    json_quote(out, opt_value(c, side));
    sqlite3_str_appendall(out, ",\"key\":");
    json_name_list(out, opt_value(c, key_opt));
    if (opt_value(c, cols_opt)) {
        sqlite3_str_appendall(out, ",\"columns\":");
        json_name_list(out, opt_value(c, cols_opt));
    }
    sqlite3_str_appendchar(out, 1, '}');
}

/* Every --up (or --down) COLUMN=EXPR as {"sql":{...}}; -1 after a bad one.
 * No --up gives {"sql":{}}: all a new model of the key alone needs, and
 * for one with columns the library says a mapping is required. */
static int json_mapping(sqlite3_str *out, const dwctl *c, const char *dir)
{
    sqlite3_str_appendf(out, ",\"%s\":{\"sql\":{", dir);
    int n = 0;
    for (int i = 0; i < c->nopts; i++) {
        if (strcmp(c->opts[i].name, dir) != 0)
            continue;
        const char *v = c->opts[i].value;
        const char *eq = strchr(v, '=');
        if (!eq || eq == v || !eq[1]) {
            say_error("--%s wants COLUMN=EXPRESSION, not \"%s\"", dir, v);
            return -1;
        }
        char *column = sqlite3_mprintf("%.*s", (int)(eq - v), v);
        if (n++)
            sqlite3_str_appendchar(out, 1, ',');
        json_quote(out, column ? column : "");
        sqlite3_str_appendchar(out, 1, ':');
        json_quote(out, eq + 1);
        sqlite3_free(column);
    }
    sqlite3_str_appendall(out, "}}");
    return n;
}

/* The options that describe a spec (instead of --file). */
static const char *const spec_options[] = {
    "old", "old-key", "old-columns", "new", "new-key",
    "new-columns", "up", "down", "setup"};

static int is_spec_option(const char *name)
{
    for (size_t i = 0; i < sizeof spec_options / sizeof *spec_options; i++)
        if (strcmp(name, spec_options[i]) == 0)
            return 1;
    return 0;
}

/* The spec the options describe, as the JSON dw_sqlite_open_json() reads. */
static char *spec_from_options(const dwctl *c)
{
    static const char *const needed[] = {"old", "old-key", "new",
                                         "new-key"};
    for (size_t i = 0; i < sizeof needed / sizeof *needed; i++)
        if (!opt_value(c, needed[i])) {
            say_error("define: --%s is missing (or give --file)", needed[i]);
            return NULL;
        }
    /* SQL text is UTF-8; JSON would carry another byte as another
     * character. */
    for (int i = 0; i < c->nopts; i++)
        if (is_spec_option(c->opts[i].name) &&
            !utf8_valid(c->opts[i].value)) {
            say_error("define: --%s is not UTF-8 text", c->opts[i].name);
            return NULL;
        }
    sqlite3_str *out = sqlite3_str_new(NULL);
    sqlite3_str_appendchar(out, 1, '{');
    json_side_spec(out, c, "old");
    sqlite3_str_appendchar(out, 1, ',');
    json_side_spec(out, c, "new");
    int ok = json_mapping(out, c, "up") >= 0;
    if (ok && opt_given(c, "down"))
        ok = json_mapping(out, c, "down") > 0;
    if (ok && opt_value(c, "setup")) {
        sqlite3_str_appendall(out, ",\"setup\":");
        json_quote(out, opt_value(c, "setup"));
    }
    sqlite3_str_appendchar(out, 1, '}');
    char *spec = sqlite3_str_finish(out);
    if (!ok) {
        sqlite3_free(spec);
        return NULL;
    }
    if (!spec)
        say_error("out of memory");
    return spec;
}

/* A whole file ("-": standard input) as a NUL-terminated string, for
 * text: a file holding a NUL byte is refused (the rest would be lost). */
static char *read_file(const char *path)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        say_error("cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    sqlite3_str *out = sqlite3_str_new(NULL);
    char buf[4096];
    size_t n;
    int nul = 0;
    errno = 0;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        nul |= memchr(buf, '\0', n) != NULL;
        sqlite3_str_append(out, buf, (int)n);
    }
    int err = ferror(f) ? (errno ? errno : EIO) : 0;
    if (f != stdin)
        fclose(f);
    int str_rc = sqlite3_str_errcode(out);
    char *text = sqlite3_str_finish(out);
    if (err || str_rc != SQLITE_OK || nul) {
        if (err)
            say_error("cannot read %s: %s", path, strerror(err));
        else if (str_rc != SQLITE_OK)
            say_error("cannot read %s: %s", path,
                      str_rc == SQLITE_TOOBIG ? "too big" : "out of memory");
        else
            say_error("%s holds a NUL byte: not a text file", path);
        sqlite3_free(text);
        return NULL;
    }
    /* An empty file gives NULL from an empty sqlite3_str. */
    return text ? text : sqlite3_mprintf("");
}

typedef struct stored_digest {
    const char *name;
    char digest[65];
} stored_digest;

static int find_digest(const dw_stored_migration *m, void *payload)
{
    stored_digest *d = payload;
    if (strcmp(m->name, d->name) != 0)
        return 0;
    snprintf(d->digest, sizeof d->digest, "%s", m->spec_digest);
    return 1;
}

int cmd_define(dwctl *c)
{
    char *spec = NULL;
    if (opt_value(c, "file")) {
        for (int i = 0; i < c->nopts; i++)
            if (is_spec_option(c->opts[i].name)) {
                say_error("define: --file and --%s do not go together",
                          c->opts[i].name);
                return EXIT_USAGE;
            }
        if (!(spec = read_file(opt_value(c, "file"))))
            return EXIT_ERROR;
    } else if (!(spec = spec_from_options(c))) {
        return EXIT_USAGE;
    }
    const char *name = c->args[0];
    stored_digest before = {name, ""};
    char *err = NULL;
    int rc = dw_sqlite_list(c->db, find_digest, &before, &err);
    dw_migration *h = NULL;
    if (rc == DW_OK)
        rc = dw_sqlite_open_json(&h, c->db, name, spec,
                          opt_given(c, "redefine") ? DW_OPEN_REDEFINE : 0,
                          opt_value(c, "reason"), &err);
    sqlite3_free(spec);
    if (rc != DW_OK) {
        int code = fail(rc, err);
        dw_free(err);
        return code;
    }
    const char *what = !before.digest[0] ? "defined"
                       : strcmp(before.digest, dw_spec_digest(h)) == 0
                           ? "unchanged"
                           : "redefined";
    int stage = 0;
    rc = dw_stage_get(&stage, h);
    if (rc == DW_OK)
        printf("%s: %s at %s (spec %.16s)\n", name, what,
               stage_word(stage), dw_spec_digest(h));
    int code = fail_h(rc, h);
    dw_close(h);
    return code;
}

/* ---- remove -------------------------------------------------------------- */

int cmd_remove(dwctl *c)
{
    const char *reason = opt_value(c, "reason");
    if (!reason || !reason[0]) {
        say_error("remove: say why with --reason TEXT (the next definition "
                  "of the name records it)");
        return EXIT_USAGE;
    }
    char *err = NULL;
    int rc = dw_sqlite_remove(c->db, c->args[0], 0, reason, &err);
    if (rc == DW_OK)
        printf("%s: removed, with all of its state\n", c->args[0]);
    int code = fail(rc, err);
    dw_free(err);
    return code;
}

/* ---- stage --------------------------------------------------------------- */

int cmd_stage(dwctl *c)
{
    int to;
    if (dw_stage_parse(&to, c->args[1]) != DW_OK) {
        say_error("\"%s\" is not a stage: OFF, DUAL_WRITE, SHADOW, LIVE, "
                  "RAMPDOWN or COMPLETE",
                  c->args[1]);
        return EXIT_USAGE;
    }
    const char *reason = opt_value(c, "reason");
    int check = opt_given(c, "check");
    if (!check && (!reason || !reason[0])) {
        say_error("stage: say why with --reason TEXT (it goes into the "
                  "history)");
        return EXIT_USAGE;
    }
    /* A check records nothing, so it needs no reason, even forced. */
    if (check && (!reason || !reason[0]))
        reason = "check";
    dw_migration *h = NULL;
    int code = open_migration(&h, c);
    if (code != EXIT_DONE)
        return code;
    int from = 0;
    unsigned int flags = (opt_given(c, "force") ? DW_STAGE_FORCE : 0) |
                         (check ? DW_STAGE_CHECK : 0);
    int rc = dw_stage_get(&from, h);
    if (rc == DW_OK)
        rc = dw_stage_set(h, to, reason, flags);
    if (rc == DW_OK) {
        if (from == to)
            printf("%s: already at %s\n", dw_name(h), stage_word(to));
        else if (check)
            printf("%s: the move from %s to %s is allowed\n", dw_name(h),
                   stage_word(from), stage_word(to));
        else
            printf("%s: %s -> %s\n", dw_name(h), stage_word(from),
                   stage_word(to));
    }
    code = fail_h(rc, h);
    dw_close(h);
    return code;
}

/* ---- backfill ------------------------------------------------------------ */

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
    (void)sig;
    interrupted = 1;
}

static progress_view backfill_view(const dw_backfill_progress *p)
{
    progress_view v = {p->rows_done, p->rows_total, p->rows_per_second,
                       p->seconds_left, p->finished};
    return v;
}

static int on_progress(const dw_backfill_progress *p, void *payload)
{
    progress_view v = backfill_view(p);
    progress_show(payload, &v);
    return interrupted;
}

static int on_throttle(void *payload)
{
    (void)payload;
    return interrupted ? -1 : 0;
}

static void json_progress(const char *name, const char *outcome,
                          const dw_backfill_progress *p)
{
    json_out j;
    json_start(&j);
    json_object(&j, NULL);
    json_str(&j, "name", name);
    json_str(&j, "outcome", outcome);
    json_int(&j, "rows_done", p->rows_done);
    json_int(&j, "rows_total", p->rows_total);
    json_int(&j, "rows_written", p->rows_written);
    json_int(&j, "rows_deleted", p->rows_deleted);
    json_int(&j, "batches", p->batches);
    json_num(&j, "max_batch_ms", p->max_batch_ms);
    json_bool(&j, "finished", p->finished);
    json_end(&j, '}');
    json_finish(&j);
}

/* Ctrl-C (or a TERM) stops the backfill after the batch in hand; a second
 * one kills at once, which is safe too: each batch commits whole. A signal
 * the caller ignores (a background job) stays ignored. */
static void catch_interrupts(struct sigaction old[2])
{
    static const int sigs[2] = {SIGINT, SIGTERM};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    sa.sa_flags = (int)SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 2; i++) {
        sigaction(sigs[i], NULL, &old[i]);
        if (old[i].sa_handler != SIG_IGN)
            sigaction(sigs[i], &sa, NULL);
    }
}

static void restore_interrupts(const struct sigaction old[2])
{
    sigaction(SIGINT, &old[0], NULL);
    sigaction(SIGTERM, &old[1], NULL);
}

int cmd_backfill(dwctl *c)
{
    dw_backfill_options o = DW_BACKFILL_OPTIONS_INIT;
    if (opt_int(c, "batch", 1, 100000000, &o.batch_rows) != 0 ||
        opt_int(c, "batch-ms", -1, 3600000, &o.batch_ms) != 0 ||
        opt_int(c, "pause-ms", 0, 3600000, &o.pause_ms) != 0)
        return EXIT_USAGE;
    if (o.batch_rows > o.max_batch_rows && o.batch_rows > 100000)
        o.max_batch_rows = o.batch_rows;
    if (opt_given(c, "restart"))
        o.flags |= DW_BACKFILL_RESTART;
    dw_migration *h = NULL;
    int code = open_migration(&h, c);
    if (code != EXIT_DONE)
        return code;
    progress ps;
    progress_start(&ps, c, "backfill", dw_name(h), "rows");
    o.progress = on_progress;
    o.throttle = on_throttle;
    o.payload = &ps;
    struct sigaction old[2];
    catch_interrupts(old);
    dw_backfill_progress p;
    memset(&p, 0, sizeof p);
    int rc = dw_backfill(&p, h, &o);
    restore_interrupts(old);
    progress_view end = backfill_view(&p);
    progress_end(&ps, rc == DW_OK ? &end : NULL);
    const char *name = dw_name(h);
    /* No batch ran: it had finished before (a backfill is done once). */
    int before = rc == DW_OK && !ps.drawn;
    if (rc == DW_OK && c->json)
        json_progress(name, before ? "already_finished" : "finished", &p);
    else if (rc == DW_OK)
        printf("backfill %s: %s, %lld rows (%lld written, %lld deleted) in "
               "%lld batches%s",
               name, before ? "already finished" : "finished",
               (long long)p.rows_done, (long long)p.rows_written,
               (long long)p.rows_deleted, (long long)p.batches,
               before ? "; --restart copies again\n" : "");
    if (rc == DW_OK && !c->json && !before)
        printf("; longest batch %.1f ms\n", p.max_batch_ms);
    if (rc == DW_MORE) {
        if (c->json)
            json_progress(name, "stopped", &p);
        else
            printf("backfill %s: stopped after batch %lld at %lld/%lld "
                   "rows; run it again to resume\n",
                   name, (long long)p.batches, (long long)p.rows_done,
                   (long long)p.rows_total);
        code = EXIT_STOPPED;
    } else {
        code = fail_h(rc, h);
    }
    dw_close(h);
    return code;
}

/* ---- verify -------------------------------------------------------------- */

/* "what: dwctl DB VERB NAME", quoted for a shell where needed. */
static void print_hint(const char *what, const char *db_path,
                       const char *verb, const char *migration)
{
    char *db = shell_word(db_path), *name = shell_word(migration);
    if (db && name)
        printf("%s: dwctl %s %s %s\n", what, db, verb, name);
    sqlite3_free(db);
    sqlite3_free(name);
}

typedef struct verify_report {
    int json;
    sqlite3_str *json_items;
    int n;
    progress *bar;
} verify_report;

static void on_divergence(const dw_mismatch *m, void *payload)
{
    verify_report *r = payload;
    if (!r->json) {
        progress_clear(r->bar);
        printf("  %s %s", m->key, kind_words(m->kind));
        for (int i = 0; i < m->ndiffs; i++)
            printf("%s %s: %s -> %s", i ? "," : ":", m->diffs[i].column,
                   m->diffs[i].old_desc, m->diffs[i].new_desc);
        printf("\n");
        return;
    }
    sqlite3_str *o = r->json_items;
    if (r->n++)
        sqlite3_str_appendchar(o, 1, ',');
    sqlite3_str_appendall(o, "{\"key\":");
    json_quote(o, m->key);
    sqlite3_str_appendf(o, ",\"kind\":\"%s\",\"diffs\":[",
                        kind_name(m->kind));
    for (int i = 0; i < m->ndiffs; i++) {
        sqlite3_str_appendall(o, i ? ",{\"column\":" : "{\"column\":");
        json_quote(o, m->diffs[i].column);
        sqlite3_str_appendall(o, ",\"old\":");
        json_quote(o, m->diffs[i].old_desc);
        sqlite3_str_appendall(o, ",\"new\":");
        json_quote(o, m->diffs[i].new_desc);
        sqlite3_str_appendchar(o, 1, '}');
    }
    sqlite3_str_appendall(o, "]}");
}

static void on_verify_progress(const dw_verify_progress *p, void *payload)
{
    progress_view v = {p->keys, p->keys_total, p->keys_per_second,
                       p->seconds_left, p->finished};
    progress_show(payload, &v);
}

int cmd_verify(dwctl *c)
{
    dw_verify_options o = DW_VERIFY_OPTIONS_INIT;
    int report = 10;
    if (opt_int(c, "report", 0, 1000000, &report) != 0)
        return EXIT_USAGE;
    o.report_limit = report > 0 ? report : -1;
    progress ps;
    verify_report r = {c->json, sqlite3_str_new(NULL), 0, &ps};
    o.fn = on_divergence;
    o.payload = &r;
    dw_migration *h = NULL;
    int code = open_migration(&h, c);
    if (code != EXIT_DONE) {
        sqlite3_free(sqlite3_str_finish(r.json_items));
        return code;
    }
    progress_start(&ps, c, "verify", dw_name(h), "keys");
    /* Asked for only when shown: it costs a count of both sides. */
    o.progress = ps.out ? on_verify_progress : NULL;
    o.progress_payload = &ps;
    dw_verify_result v;
    memset(&v, 0, sizeof v);
    int rc = dw_verify(&v, h, &o);
    progress_end(&ps, NULL);
    char *items = sqlite3_str_finish(r.json_items);
    if (rc == DW_OK && c->json) {
        json_out j;
        json_start(&j);
        json_object(&j, NULL);
        json_str(&j, "name", dw_name(h));
        json_int(&j, "run_id", v.run_id);
        json_int(&j, "keys", v.keys);
        json_int(&j, "missing", v.missing);
        json_int(&j, "extra", v.extra);
        json_int(&j, "different", v.different);
        json_bool(&j, "clean", v.clean);
        json_num(&j, "seconds", v.seconds);
        char *list = sqlite3_mprintf("[%s]", items ? items : "");
        json_raw(&j, "divergent", list ? list : "[]");
        sqlite3_free(list);
        json_end(&j, '}');
        json_finish(&j);
    } else if (rc == DW_OK) {
        printf("verify %s: run %lld, %lld keys in %.2f s: %s (%lld missing "
               "in new, %lld extra in new, %lld different)\n",
               dw_name(h), (long long)v.run_id, (long long)v.keys, v.seconds,
               v.clean ? "clean" : "DIVERGENT", (long long)v.missing,
               (long long)v.extra, (long long)v.different);
        if (!v.clean)
            print_hint("repair with", c->db_path, "repair", dw_name(h));
    }
    sqlite3_free(items);
    code = fail_h(rc, h);
    if (code == EXIT_DONE && !v.clean)
        code = EXIT_DIVERGED;
    dw_close(h);
    return code;
}

/* ---- repair -------------------------------------------------------------- */

int cmd_repair(dwctl *c)
{
    dw_migration *h = NULL;
    int code = open_migration(&h, c);
    if (code != EXIT_DONE)
        return code;
    dw_repair_result div, queue;
    memset(&div, 0, sizeof div);
    memset(&queue, 0, sizeof queue);
    int rc = dw_repair_divergent(&div, h);
    /* The queue too, even when a divergent key failed: each key stands
     * alone, and the first failure is reported. */
    char *first = rc != DW_OK ? sqlite3_mprintf("%s", dw_errmsg(h)) : NULL;
    int rc2 = dw_repair_queue(&queue, h);
    if (rc == DW_OK && rc2 != DW_OK) {
        rc = rc2;
        first = sqlite3_mprintf("%s", dw_errmsg(h));
    }
    if (c->json) {
        json_out j;
        json_start(&j);
        json_object(&j, NULL);
        json_str(&j, "name", dw_name(h));
        json_object(&j, "divergent");
        json_int(&j, "repaired", div.repaired);
        json_int(&j, "failed", div.failed);
        json_end(&j, '}');
        json_object(&j, "queue");
        json_int(&j, "repaired", queue.repaired);
        json_int(&j, "failed", queue.failed);
        json_end(&j, '}');
        json_end(&j, '}');
        json_finish(&j);
    } else {
        printf("repair %s: %lld divergent keys repaired (%lld failed), "
               "%lld queued keys repaired (%lld failed)\n",
               dw_name(h), (long long)div.repaired, (long long)div.failed,
               (long long)queue.repaired, (long long)queue.failed);
        if (rc == DW_OK && div.repaired)
            print_hint("verify again", c->db_path, "verify", dw_name(h));
    }
    code = fail(rc, first);
    sqlite3_free(first);
    dw_close(h);
    return code;
}

/* ---- canary -------------------------------------------------------------- */

/* Keys read from a file: values one key after another. */
typedef struct key_list {
    dw_value *values;
    char **texts; /* the text values' bytes, owned here */
    int nvalues;
    int cap;
    int ntexts;
    int nkey;
    int count;
} key_list;

static void key_list_free(key_list *k)
{
    for (int i = 0; i < k->ntexts; i++)
        sqlite3_free(k->texts[i]);
    sqlite3_free(k->texts);
    sqlite3_free(k->values);
    memset(k, 0, sizeof *k);
}

static int key_list_add(key_list *k, dw_value v, const char *text)
{
    if (k->nvalues == k->cap) {
        int cap = k->cap ? k->cap * 2 : 16;
        dw_value *nv = sqlite3_realloc64(k->values, sizeof *nv * (size_t)cap);
        char **nt = sqlite3_realloc64(k->texts, sizeof *nt * (size_t)cap);
        if (nv)
            k->values = nv;
        if (nt)
            k->texts = nt;
        if (!nv || !nt)
            return -1;
        k->cap = cap;
    }
    if (text) {
        char *copy = sqlite3_mprintf("%s", text);
        if (!copy)
            return -1;
        k->texts[k->ntexts++] = copy;
        v = dw_text(copy);
    }
    k->values[k->nvalues++] = v;
    return 0;
}

/* One line: a JSON array of integers and strings, or one bare value: a
 * whole number when it starts like one, else a text. Returns the number of
 * values, or -1 (message printed, naming the file and line). */
static int parse_key_line(key_list *k, sqlite3 *db, const char *line,
                          const char *path, int lineno)
{
    if (!utf8_valid(line)) {
        say_error("%s:%d: not UTF-8 text", path, lineno);
        return -1;
    }
    if (line[0] != '[') {
        int numeric = line[0] == '-' || line[0] == '+' ||
                      (line[0] >= '0' && line[0] <= '9');
        char *end = NULL;
        errno = 0;
        long long n = numeric ? strtoll(line, &end, 10) : 0;
        if (numeric && (errno || *end || line[0] == '+')) {
            say_error("%s:%d: %s is not a whole number from %lld to %lld "
                      "(for a text key, write [\"%s\"])",
                      path, lineno, line, (long long)INT64_MIN,
                      (long long)INT64_MAX, line);
            return -1;
        }
        if ((numeric ? key_list_add(k, dw_int(n), NULL)
                     : key_list_add(k, dw_null(), line)) != 0) {
            say_error("out of memory");
            return -1;
        }
        return 1;
    }
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        db,
        "SELECT type, atom FROM json_each(?1) "
        "WHERE json_valid(?1) AND json_type(?1) = 'array' ORDER BY id",
        -1, &st, NULL);
    int n = 0;
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 1, line, -1, SQLITE_STATIC);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *type = (const char *)sqlite3_column_text(st, 0);
        int bad;
        if (strcmp(type, "integer") == 0)
            bad = key_list_add(k, dw_int(sqlite3_column_int64(st, 1)), NULL);
        else if (strcmp(type, "text") == 0 &&
                 utf8_valid((const char *)sqlite3_column_text(st, 1)))
            bad = key_list_add(k, dw_null(),
                               (const char *)sqlite3_column_text(st, 1));
        else {
            say_error("%s:%d: a key value must be an integer or a UTF-8 "
                      "string, not %s",
                      path, lineno, type);
            sqlite3_finalize(st);
            return -1;
        }
        if (bad) {
            say_error("out of memory");
            sqlite3_finalize(st);
            return -1;
        }
        n++;
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE || n == 0) {
        say_error("%s:%d: not a key: %s (write [42] or [\"org-7\",3])", path,
                  lineno, line);
        return -1;
    }
    return n;
}

/* The keys listed in a file: 0; -1 for a line that is not a key (the
 * message names it); -2 when the file cannot be read. */
static int read_keys(key_list *k, sqlite3 *db, const char *path)
{
    memset(k, 0, sizeof *k);
    char *text = read_file(path);
    if (!text)
        return -2;
    int lineno = 0, ok = 0;
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        lineno++;
        /* Trim spaces and a CR. */
        while (*line == ' ' || *line == '\t')
            line++;
        /* A byte-order mark some editors write first. */
        if (lineno == 1 && strncmp(line, "\xEF\xBB\xBF", 3) == 0)
            line += 3;
        char *e = line + strlen(line);
        while (e > line && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
            *--e = '\0';
        if (!*line || *line == '#')
            continue;
        int n = parse_key_line(k, db, line, path, lineno);
        if (n < 0)
            goto done;
        if (k->count && n != k->nkey) {
            say_error("%s:%d: %d key values where the lines before have %d",
                      path, lineno, n, k->nkey);
            goto done;
        }
        k->nkey = n;
        k->count++;
    }
    if (!k->count) {
        say_error("%s lists no keys", path);
        goto done;
    }
    ok = 1;
done:
    sqlite3_free(text);
    if (!ok)
        key_list_free(k);
    return ok ? 0 : -1;
}

static int parse_stage_opt(const dwctl *c, const char *name, int *out)
{
    const char *v = opt_value(c, name);
    if (!v)
        return 0;
    if (strcmp(name, "promote") == 0 && strcmp(v, "none") == 0) {
        *out = DW_PROMOTE_NONE;
        return 0;
    }
    if (dw_stage_parse(out, v) != DW_OK) {
        say_error("--%s: \"%s\" is not a stage", name, v);
        return -1;
    }
    return 0;
}

/* --add-keys and --remove-keys: overrides for listed keys. */
static int canary_keys(dwctl *c, dw_migration *h, const dw_routing *r)
{
    int add = opt_given(c, "add-keys");
    int has_canary = r->canary_percent > 0 || r->canary_cohort;
    int stage = r->canary_stage;
    if (!add && opt_given(c, "stage")) {
        say_error("canary: --remove-keys takes no --stage: the keys follow "
                  "the canary or the migration again");
        return EXIT_USAGE;
    }
    if (add && !opt_given(c, "stage") && !has_canary) {
        say_error("canary: say which stage the keys move to with --stage "
                  "STAGE (there is no canary stage to follow)");
        return EXIT_USAGE;
    }
    if (add && parse_stage_opt(c, "stage", &stage) != 0)
        return EXIT_USAGE;
    key_list k;
    int bad = read_keys(&k, c->db,
                        opt_value(c, add ? "add-keys" : "remove-keys"));
    if (bad)
        return bad == -2 ? EXIT_ERROR : EXIT_USAGE;
    int rc, cleared = 0;
    const char *reason = opt_value(c, "reason");
    if (add) {
        rc = dw_override_set(h, k.values, k.nkey, k.count, stage, reason);
        if (rc == DW_OK && !c->json)
            printf("%s: %d keys now at %s\n", dw_name(h), k.count,
                   stage_word(stage));
    } else {
        rc = dw_override_clear(&cleared, h, k.values, k.nkey, k.count, reason);
        if (rc == DW_OK && !c->json)
            printf("%s: %d overrides removed\n", dw_name(h), cleared);
    }
    key_list_free(&k);
    /* With --json, the canary as it now stands. */
    return rc == DW_OK && c->json ? show_canary(c, h) : fail_h(rc, h);
}

int cmd_canary(dwctl *c)
{
    int keys = opt_given(c, "add-keys") + opt_given(c, "remove-keys");
    int settings = opt_given(c, "percent") + opt_given(c, "cohort") +
                   opt_given(c, "promote") + opt_given(c, "clear");
    if (keys > 1 || (keys && settings)) {
        say_error("canary: --add-keys, --remove-keys and the canary settings "
                  "go in separate calls");
        return EXIT_USAGE;
    }
    double percent = 0;
    if (opt_percent(c, "percent", &percent) != 0)
        return EXIT_USAGE;
    dw_migration *h = NULL;
    int code = open_migration(&h, c);
    if (code != EXIT_DONE)
        return code;
    dw_routing r;
    int rc = dw_routing_get(&r, h);
    if (rc != DW_OK)
        code = fail_h(rc, h);
    else if (keys)
        code = canary_keys(c, h, &r);
    else if (!settings && !opt_given(c, "stage"))
        code = show_canary(c, h);
    else {
        int had = r.canary_percent > 0 || r.canary_cohort;
        dw_routing next = r;
        char *cohort = r.canary_cohort ? sqlite3_mprintf("%s", r.canary_cohort)
                                       : NULL;
        next.canary_cohort = cohort;
        if (opt_given(c, "clear")) {
            dw_routing none = DW_ROUTING_INIT;
            next = none;
        }
        if (opt_value(c, "percent"))
            next.canary_percent = percent;
        if (opt_value(c, "cohort"))
            next.canary_cohort = opt_value(c, "cohort")[0]
                                     ? opt_value(c, "cohort")
                                     : NULL;
        code = EXIT_DONE;
        if (parse_stage_opt(c, "stage", &next.canary_stage) != 0 ||
            parse_stage_opt(c, "promote", &next.promote_stage) != 0)
            code = EXIT_USAGE;
        int has = next.canary_percent > 0 || next.canary_cohort;
        if (code == EXIT_DONE && has && !had && !opt_given(c, "stage")) {
            say_error("canary: say which stage the canary runs at with "
                      "--stage STAGE");
            code = EXIT_USAGE;
        }
        if (code == EXIT_DONE) {
            rc = dw_routing_set(h, &next, opt_value(c, "reason"),
                                opt_given(c, "force") ? DW_STAGE_FORCE : 0);
            char *canary = rc == DW_OK && !c->json ? canary_text(&next)
                                                   : NULL;
            if (canary)
                printf("%s: canary %s\n", dw_name(h), canary);
            sqlite3_free(canary);
            code = rc == DW_OK && c->json ? show_canary(c, h)
                                          : fail_h(rc, h);
        }
        sqlite3_free(cohort);
    }
    dw_close(h);
    return code;
}

/* ---- contract and restore ------------------------------------------------ */

static int backup_command(dwctl *c, int contract)
{
    const char *backup = opt_value(c, "backup");
    if (!backup || !backup[0]) {
        say_error("%s: name the backup file with --backup FILE",
                  contract ? "contract" : "restore");
        return EXIT_USAGE;
    }
    dw_migration *h = NULL;
    int code = open_migration(&h, c);
    if (code != EXIT_DONE)
        return code;
    const char *reason = opt_value(c, "reason");
    int rc = contract ? dw_contract(h, backup, reason)
                      : dw_restore(h, backup, reason);
    if (rc == DW_OK && contract)
        printf("%s: the old model is backed up to %s (checked) and "
               "dropped\n",
               dw_name(h), backup);
    else if (rc == DW_OK)
        printf("%s: the old model is back from %s, at RAMPDOWN; run backfill "
               "and verify before moving further back\n",
               dw_name(h), backup);
    code = fail_h(rc, h);
    dw_close(h);
    return code;
}

int cmd_contract(dwctl *c) { return backup_command(c, 1); }

int cmd_restore(dwctl *c) { return backup_command(c, 0); }
