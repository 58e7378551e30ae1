/* Reads: dw_read() returns the authoritative row and, at SHADOW and LIVE,
 * runs compare(key) -- both sides read in one comparison shape, diffed, any
 * disagreement reported -- without ever letting the other side change what
 * is returned. dw_compare() runs compare(key) on its own. */
#include <string.h>

#include "internal.h"

int dw_set_read_options(dw_migration *h, const dw_read_options *opts)
{
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    dw_read_options defaults = DW_READ_OPTIONS_INIT;
    if (!opts)
        opts = &defaults;
    if (opts->version == 1)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "read options version 1 is 0.x's, with the "
                         "progress handler: rebuild with this header "
                         "(DW_READ_OPTIONS_INIT) and name the handler with "
                         "dw_sqlite_set_progress_handler()");
    if (opts->version != DW_READ_OPTIONS_VERSION)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "read options version %u is not %d (use "
                         "DW_READ_OPTIONS_INIT)",
                         opts->version, DW_READ_OPTIONS_VERSION);
    if (!(opts->sample_ratio >= 0.0 && opts->sample_ratio <= 1.0))
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "sample_ratio must be between 0 and 1");
    if (opts->budget_ms < 0)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "budget_ms must not be negative");
    if (opts->order != DW_ORDER_AUTHORITATIVE_FIRST &&
        opts->order != DW_ORDER_RANDOM)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE, "unknown read order %d",
                         opts->order);
    if (opts->nignore_columns < 0 ||
        (opts->nignore_columns > 0 && !opts->ignore_columns))
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "bad list of ignored columns");

    /* Build the new copy completely before replacing the old one. */
    dw_name_set ignore = {NULL};
    char **names = NULL;
    int n = opts->nignore_columns;
    if (n > 0 && !(names = dw__calloc(sizeof(char *) * (size_t)n)))
        goto nomem;
    for (int i = 0; i < n; i++) {
        if (!opts->ignore_columns[i]) {
            for (int j = 0; j < i; j++)
                dw__free(names[j]);
            dw__free(names);
            dw_name_set_free(&ignore);
            return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                             "ignored column %d is NULL", i);
        }
        if (!(names[i] = dw__strdup(opts->ignore_columns[i])) ||
            dw_name_set_add(&ignore, names[i]) != DW_OK) {
            for (int j = 0; j <= i; j++)
                dw__free(names[j]);
            goto nomem;
        }
    }
    for (int i = 0; i < h->ropts.nignore_columns; i++)
        dw__free((char *)h->ropts.ignore_columns[i]);
    dw__free((void *)h->ropts.ignore_columns);
    dw_name_set_free(&h->ignore);
    h->ropts = *opts;
    h->ropts.ignore_columns = (const char *const *)names;
    h->ignore = ignore;
    return DW_OK;
nomem:
    dw__free(names);
    dw_name_set_free(&ignore);
    return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
}

/* What one dw_read() is working with. */
typedef struct read_ctx {
    dw_key key;
    dw_read_fn fn[3]; /* by side; NULL to read through the spec */
    void *payload;
} read_ctx;

/* Reads one side's row in the shape the caller gets back (callbacks, or
 * the side as stored). Returns DW_OK, DW_ENOTFOUND or an error. */
static int read_returned(dw_migration *h, const read_ctx *c, int side,
                         dw_row *out)
{
    if (!c->fn[side])
        return h->ops->read_side(h, side, c->key.v, out);
    h->ops->callback_begin(h);
    int r = c->fn[side](out, h->db, c->key.v, c->key.n, c->payload);
    if (r == DW_OK || r == DW_ENOTFOUND)
        return r;
    return dw__callback_failed(h, side, "read", r);
}

/* Reads one side in the comparison shape: with callbacks, their rows; else
 * the new model's shape (the old row mapped up). */
static int read_compared(dw_migration *h, const read_ctx *c, int side,
                         dw_row *out)
{
    if (c->fn[side] || side == DW_SIDE_NEW)
        return read_returned(h, c, side, out);
    return dw__map_old_up(h, c->key.v, out);
}

static int read_ok(int rc) { return rc == DW_OK || rc == DW_ENOTFOUND; }

/* Counts one side's read. */
static int counted(dw_migration *h, int side, int rc)
{
    dw_side_metrics *m = dw__side_metrics(h, side);
    m->reads++;
    if (rc != DW_OK && rc != DW_ENOTFOUND)
        m->read_errors++;
    return rc;
}

/* Counts one side's read begun at t0, with its time. */
static int timed(dw_migration *h, int side, int rc, uint64_t t0)
{
    dw__side_latency(dw__side_metrics(h, side), dw__now_ns() - t0);
    return counted(h, side, rc);
}

static int sampled(dw_migration *h)
{
    double r = h->ropts.sample_ratio;
    if (r >= 1.0)
        return 1;
    if (r <= 0.0)
        return 0;
    return (double)(dw__random(h) >> 11) * (1.0 / 9007199254740992.0) < r;
}

/* What the reads of one plan found. */
typedef struct read_done {
    int rc, rc_other, rc_cmp;
    /* Through the spec with old authoritative, the returned row (as
     * stored) is not the comparison shape: it is mapped up separately. */
    int auth_reshaped;
    /* Why the sides could not be compared: the first failure met (code,
     * side, message owned), for test mode to report. */
    dw_error_stash why;
} read_done;

/* Takes the handle's error for failure rc as why nothing was compared
 * (when it is the first reason) and clears it: only test mode passes it
 * on. */
static void keep_why(dw_migration *h, read_done *d, int rc)
{
    if (d->why.code == DW_OK) {
        dw__error_stash(h, &d->why);
        if (d->why.code == DW_OK)
            d->why.code = rc;
    }
    dw__clear_error(h);
}

static void forget_why(read_done *d)
{
    dw__free(d->why.msg);
    memset(&d->why, 0, sizeof d->why);
}

/* The non-authoritative read, within the time budget. Its failure must not
 * reach the caller: it is counted, kept in d as why nothing was compared,
 * and the handle's message is left as it was. */
static int read_other(dw_migration *h, const read_ctx *c, int side,
                      dw_row *out, read_done *d)
{
    dw_error_stash before;
    dw__error_stash(h, &before);
    dw__clear_error(h);
    int budget = h->ropts.budget_ms;
    uint64_t t0 = dw__now_ns();
    if (budget > 0)
        h->ops->budget_start(h, budget);
    int rc = read_compared(h, c, side, out);
    int interrupted = budget > 0 && h->ops->budget_stop(h);
    uint64_t ns = dw__now_ns() - t0;
    /* SQLite interrupts only its own statements: a callback's time spent
     * elsewhere runs to its end, and is over budget all the same. Whatever
     * the read made of it, a read over budget is not an answer: never
     * compare it. */
    if (interrupted || (budget > 0 && ns >= (uint64_t)budget * 1000000u)) {
        dw__side_metrics(h, side)->read_timeouts++;
        rc = dw__error(h, DW_ERROR, side,
                       "%s side: the read took longer than its %d ms budget",
                       dw__side_word(side), budget);
    }
    dw__side_latency(dw__side_metrics(h, side), ns);
    counted(h, side, rc);
    if (!read_ok(rc))
        keep_why(h, d, rc);
    dw__error_unstash(h, &before);
    return rc;
}

static int compares_at(int stage)
{
    return stage == DW_STAGE_SHADOW || stage == DW_STAGE_LIVE;
}

/* What one read does for its key at a stage: which side answers and
 * whether the other is read and compared. */
typedef struct read_plan {
    int auth;
    int compare;
    int skipped; /* the stage compares, but not this read (sampling) */
} read_plan;

static int make_plan(dw_migration *h, read_ctx *c, int stage, int sample,
                     read_plan *p)
{
    /* Each key reads as its own stage says (override, canary). */
    int rc = dw__route(h, &c->key, stage, &stage, NULL);
    p->auth = dw__authoritative(stage);
    p->compare = compares_at(stage) && sample;
    p->skipped = compares_at(stage) && !sample;
    /* A comparison through the spec maps the old row up: a handle without
     * the up callback refuses rather than count every read an error. */
    if (rc == DW_OK && p->compare && !c->fn[DW_SIDE_OLD])
        rc = dw__need_callback(h, DW_SIDE_NEW);
    return rc;
}

/* The handle's scratch row i, empty. */
static dw_row *scratch(dw_migration *h, int i)
{
    if (!h->scratch[i] && dw_row_new(&h->scratch[i]) != DW_OK)
        return NULL;
    dw_row_clear(h->scratch[i]);
    return h->scratch[i];
}

/* A locked database or memory running out: a failure of the moment, not
 * of a side's read, which says nothing about the models. */
static int locked_or_no_memory(int rc)
{
    return rc == DW_EBUSY || rc == DW_ENOMEM;
}

/* After a failed authoritative read the other side is still read, for its
 * counters and its time, as Scientist and LaunchDarkly's Migrator do --
 * unless the database is locked or memory ran out, which would only fail
 * it too (and make the caller wait twice). */
static int reads_other_after(int rc) { return !locked_or_no_memory(rc); }

/* Runs a plan's reads: the authoritative one into out, and when it
 * compares, the other side (and the reshaped authoritative row) into the
 * scratch rows. d->rc is the authoritative read's result, with its
 * message on the handle. */
static void run_plan(dw_migration *h, const read_ctx *c, const read_plan *p,
                     dw_row *out, read_done *d)
{
    int other = dw__other_side(p->auth);
    forget_why(d);
    d->rc_other = DW_ENOTFOUND;
    d->rc_cmp = DW_OK;
    d->auth_reshaped = p->compare && !c->fn[DW_SIDE_OLD] &&
                       p->auth == DW_SIDE_OLD;
    dw_row_clear(out);
    dw_row *other_row = p->compare ? scratch(h, 0) : NULL;
    dw_row *auth_cmp = d->auth_reshaped ? scratch(h, 1) : NULL;
    if ((p->compare && !other_row) || (d->auth_reshaped && !auth_cmp)) {
        d->rc = dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
        return;
    }
    int other_first = p->compare && h->ropts.order == DW_ORDER_RANDOM &&
                      (dw__random(h) & 1);
    if (other_first)
        d->rc_other = read_other(h, c, other, other_row, d);
    uint64_t t0 = dw__now_ns();
    d->rc = timed(h, p->auth, read_returned(h, c, p->auth, out), t0);
    if (d->auth_reshaped && read_ok(d->rc)) {
        d->rc_cmp = read_compared(h, c, p->auth, auth_cmp);
        if (!read_ok(d->rc_cmp))
            keep_why(h, d, d->rc_cmp);
    }
    if (p->compare && !other_first && reads_other_after(d->rc))
        d->rc_other = read_other(h, c, other, other_row, d);
}

/* Outside any transaction, with the stage cached and no key routed, a read
 * that compares nothing is the application's own read and no more: no
 * transaction of ours around it. The cache is checked after it, against
 * the snapshot it read; when anything was committed since the cache was
 * filled, *done stays 0 and the read is done again the careful way. */
static int read_alone(dw_migration *h, const read_ctx *c, int sample,
                      dw_row *out, int *auth, int *done)
{
    *done = 0;
    if (!dw__idle(h) || dw__route_active(h) ||
        (compares_at(h->stage) && sample))
        return DW_OK;
    *auth = dw__authoritative(h->stage);
    int timing = h->untimed++ % DW_TIME_EVERY == 0;
    uint64_t t0 = timing ? dw__now_ns() : 0;
    int rc = read_returned(h, c, *auth, out);
    if (!h->ops->state_seen_unchanged(h)) {
        dw__clear_error(h);
        return DW_OK;
    }
    *done = 1;
    if (timing)
        timed(h, *auth, rc, t0);
    else
        counted(h, *auth, rc);
    if (compares_at(h->stage))
        h->metrics.skipped++;
    if (rc != DW_OK)
        dw_row_clear(out); /* NOTFOUND and errors return an empty row */
    return rc;
}

/* How a compared read came out. */
enum { SIDES_AGREE, SIDES_DIFFER, SIDES_UNCOMPARED };

/* Compares what a plan read and reports a disagreement; returns one of
 * SIDES_... (d->why says why when uncompared). */
static int compare_done(dw_migration *h, read_ctx *c, const read_plan *p,
                        read_done *d, const dw_row *out)
{
    if (!read_ok(d->rc_other) || !read_ok(d->rc_cmp)) {
        h->metrics.compare_errors++;
        return SIDES_UNCOMPARED;
    }
    const dw_row *other_row = h->scratch[0];
    const dw_row *auth_row = d->auth_reshaped ? h->scratch[1] : out;
    int auth_found = d->auth_reshaped ? d->rc_cmp == DW_OK : d->rc == DW_OK;
    int old_auth = p->auth == DW_SIDE_OLD;
    dw_outcome o;
    int rc = dw__compare_rows(h, &o, old_auth ? auth_row : other_row,
                              old_auth ? auth_found : d->rc_other == DW_OK,
                              old_auth ? other_row : auth_row,
                              old_auth ? d->rc_other == DW_OK : auth_found);
    if (rc != DW_OK) {
        h->metrics.compare_errors++;
        keep_why(h, d, rc);
        return SIDES_UNCOMPARED;
    }
    h->metrics.comparisons++;
    int mismatch = o.kind != 0;
    if (mismatch) {
        h->metrics.mismatches++;
        /* The report points into the scratch rows; a read the sink makes on
         * this handle gets rows of its own. */
        dw_row *kept[2] = {h->scratch[0], h->scratch[1]};
        h->scratch[0] = h->scratch[1] = NULL;
        dw__report(h, &c->key, &o);
        dw_row_free(h->scratch[0]);
        dw_row_free(h->scratch[1]);
        h->scratch[0] = kept[0];
        h->scratch[1] = kept[1];
    } else {
        h->metrics.matches++;
    }
    dw__outcome_free(&o);
    return mismatch ? SIDES_DIFFER : SIDES_AGREE;
}

/* Test mode fails a compared read whose sides disagree or could not be
 * compared -- a new model whose reads fail must not pass a test -- with
 * the authoritative row left in place. A locked database or memory
 * running out fails it as such, as it fails any call: with its own code
 * and message and an empty row, to be retried. */
static int test_mode_rc(dw_migration *h, int verdict, read_done *d, int rc,
                        dw_row *out)
{
    if (verdict == SIDES_DIFFER)
        return dw__error(h, DW_EMISMATCH, DW_SIDE_NONE,
                         "test mode: the old and new models disagree at "
                         "this key (see the mismatch log)");
    if (verdict == SIDES_UNCOMPARED && locked_or_no_memory(d->why.code)) {
        dw_row_clear(out);
        dw__error_unstash(h, &d->why);
        return h->errcode;
    }
    if (verdict == SIDES_UNCOMPARED)
        return dw__error(h, DW_ENOCOMPARE, d->why.side,
                         "test mode: the old and new models could not be "
                         "compared at this key: %s",
                         d->why.msg ? d->why.msg : dw_errstr(d->why.code));
    return rc;
}

/* dw_read() of a checked key. */
static int read_key(dw_row *out, dw_migration *h, read_ctx *c)
{
    dw_row_clear(out);
    h->metrics.reads++;
    /* Whether this read is in the compared share, decided once. */
    int sample = sampled(h);
    int done, auth;
    int rc = read_alone(h, c, sample, out, &auth, &done);
    if (done)
        goto finish;

    int scope, stage;
    rc = dw__begin(h, 0, &scope);
    if (rc != DW_OK)
        return rc;
    /* A cached stage is taken on trust and checked once the reads have
     * opened the snapshot: the check needs one, and a BEGIN opens none. */
    int guessed = h->stage_cached;
    stage = h->stage;
    if (!guessed)
        rc = dw__stage_current(h, &stage);
    read_plan p;
    read_done d = {0};
    if (rc == DW_OK)
        rc = make_plan(h, c, stage, sample, &p);
    if (rc != DW_OK && guessed) {
        /* The guess may be why: a stale routing (a cohort since repaired)
         * would fail every read. Plan again from the stored state. */
        guessed = 0;
        h->stage_cached = 0;
        dw__clear_error(h);
        if ((rc = dw__stage_current(h, &stage)) == DW_OK)
            rc = make_plan(h, c, stage, sample, &p);
    }
    if (rc != DW_OK)
        return dw__rollback(h, scope, rc);
    run_plan(h, c, &p, out, &d);
    /* Also after a failed read: the stage may be why it failed. */
    if (guessed && !h->ops->state_unchanged(h)) {
        read_plan now;
        rc = dw__stage_current(h, &stage);
        if (rc == DW_OK)
            rc = make_plan(h, c, stage, sample, &now);
        if (rc != DW_OK) {
            forget_why(&d);
            return dw__rollback(h, scope, rc);
        }
        if (now.auth != p.auth || now.compare != p.compare) {
            p = now;
            run_plan(h, c, &p, out, &d);
        }
    }
    if (p.skipped)
        h->metrics.skipped++;
    auth = p.auth;
    rc = d.rc;
    if (rc == DW_OK || rc == DW_ENOTFOUND) {
        int end = dw__commit(h, scope);
        if (end != DW_OK)
            rc = end;
    } else {
        rc = dw__rollback(h, scope, rc);
    }
    if (rc != DW_OK)
        dw_row_clear(out); /* NOTFOUND and errors return an empty row */
    if (!read_ok(rc)) {
        /* The authoritative failure is returned as it is; whatever was
         * planned for comparison was not compared. */
        if (p.compare)
            h->metrics.compare_errors++;
        forget_why(&d);
        return rc;
    }

    if (p.compare) {
        int verdict = compare_done(h, c, &p, &d, out);
        if (h->flags & DW_OPEN_TEST_MODE)
            rc = test_mode_rc(h, verdict, &d, rc, out);
    }
    forget_why(&d);
    /* The mismatch log's own transaction may be what was left open, or
     * its write what lost the caller's. */
    if (h->left_open || h->txn_lost) {
        dw_row_clear(out);
        rc = dw__left_open_rc(h, dw__txn_lost_rc(h, rc));
    }
finish:
    /* A missing row is common on a hot path: the fixed text, allocated
     * nowhere. */
    if (rc == DW_ENOTFOUND && h->errcode == DW_OK) {
        h->errcode = DW_ENOTFOUND;
        h->errside = auth;
    }
    return rc;
}

int dw_read(dw_row *out, dw_migration *h, const dw_value *key, int nkey,
            dw_read_fn read_old, dw_read_fn read_new, void *payload)
{
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    if (!out)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "dw_read: the result row is NULL");
    if (!read_old != !read_new)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "dw_read: give both read callbacks or neither; the "
                         "comparison needs one shape");
    read_ctx c = {.fn = {NULL, read_old, read_new}, .payload = payload};
    int rc = dw__key_take(h, &c.key, key, nkey);
    if (rc != DW_OK)
        return rc;
    rc = read_key(out, h, &c);
    dw__key_free(&c.key);
    return rc;
}

int dw_compare(int *equal, dw_migration *h, const dw_value *key, int nkey)
{
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    if (!equal)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "dw_compare: equal is NULL");
    read_ctx c = {.payload = NULL};
    int rc = dw__key_take(h, &c.key, key, nkey);
    if (rc != DW_OK)
        return rc;
    dw_row *old_row = NULL, *new_row = NULL;
    if (dw_row_new(&old_row) != DW_OK || dw_row_new(&new_row) != DW_OK) {
        dw_row_free(old_row);
        return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    }
    int scope, stage, rc_old = DW_OK, rc_new = DW_OK;
    rc = dw__begin(h, 0, &scope);
    /* Compared through this handle's mapping: only while it is the
     * stored one. */
    if (rc == DW_OK && (rc = dw__stage_current(h, &stage)) != DW_OK)
        rc = dw__rollback(h, scope, rc);
    if (rc == DW_OK) {
        rc_old = read_compared(h, &c, DW_SIDE_OLD, old_row);
        if (rc_old == DW_OK || rc_old == DW_ENOTFOUND)
            rc_new = read_compared(h, &c, DW_SIDE_NEW, new_row);
        if (rc_old != DW_OK && rc_old != DW_ENOTFOUND)
            rc = rc_old;
        else if (rc_new != DW_OK && rc_new != DW_ENOTFOUND)
            rc = rc_new;
        if (rc == DW_OK)
            rc = dw__commit(h, scope);
        else
            rc = dw__rollback(h, scope, rc);
    }
    if (rc == DW_OK) {
        dw_outcome o;
        rc = dw__compare_rows(h, &o, old_row, rc_old == DW_OK, new_row,
                              rc_new == DW_OK);
        if (rc == DW_OK) {
            h->metrics.comparisons++;
            *equal = o.kind == 0;
            if (o.kind) {
                h->metrics.mismatches++;
                dw__report(h, &c.key, &o);
            } else {
                h->metrics.matches++;
            }
            dw__outcome_free(&o);
        }
    }
    dw_row_free(old_row);
    dw_row_free(new_row);
    dw__key_free(&c.key);
    /* The mismatch log's own transaction may be what was left open, or
     * its write what lost the caller's. */
    return dw__left_open_rc(h, dw__txn_lost_rc(h, rc));
}
