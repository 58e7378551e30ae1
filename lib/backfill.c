/* The backfill: keyset-paged batches from the authoritative side to the
 * other, each one short write transaction that commits its rows and its
 * cursor together. The batch size adapts towards a target time, so no
 * batch holds the write lock for long. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define DEFAULT_BATCH_ROWS 1000
#define DEFAULT_BATCH_MS 20
#define DEFAULT_MAX_BATCH_ROWS 100000

int dw__authoritative(int stage)
{
    return stage <= DW_STAGE_SHADOW ? DW_SIDE_OLD : DW_SIDE_NEW;
}

int dw__need_autocommit(dw_migration *h, const char *what)
{
    int rc = dw__settle(h);
    if (rc != DW_OK)
        return rc;
    if (h->ops->in_transaction(h))
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "%s runs short transactions of its own; call it "
                         "outside a transaction",
                         what);
    return DW_OK;
}

int dw__need_two_models(dw_migration *h, int stage, const char *what)
{
    if (h->contracted)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "%s needs the old model of %s, which the contract "
                         "dropped; dw_restore() puts it back",
                         what, h->spec.name);
    if (stage == DW_STAGE_OFF || stage == DW_STAGE_COMPLETE)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "%s needs both models written: %s is at stage %s, "
                         "where only the %s model is",
                         what, h->spec.name, dw_stage_name(stage),
                         stage == DW_STAGE_OFF ? "old" : "new");
    return DW_OK;
}

void dw__sleep_ms(int ms)
{
    if (ms <= 0)
        return;
    struct timespec left = {ms / 1000, (long)(ms % 1000) * 1000000L};
    /* A signal cuts the sleep short: sleep the rest. */
    while (nanosleep(&left, &left) != 0 && errno == EINTR)
        ;
}

/* Batches whose per-row time sizes the next one. */
#define COST_WINDOW 4

typedef struct run {
    dw_backfill_options o;
    dw_backfill_progress p;
    dw_backfill_state st;
    int fresh;        /* start over in the next batch */
    /* The source's rows, counted before a fresh start (or, see
     * count_rest(), after its first batch). */
    int64_t counted;
    int batch_rows;
    /* The source's keys are integers holding one row each at most: the
     * total is estimated from them (see integer_total()), and batches may
     * end batch_rows integers on (see span_batch()); sparse: the last
     * batch passed too few rows for that, or none has yet. */
    int integer_keys;
    int sparse;
    /* The source side the survey looked at (its integer_keys and count). */
    int surveyed;
    /* Where integer_share() measures this call's share from: the first
     * key a batch of it started after, and rows_done then. */
    int est_set;
    int64_t est_key, est_done;
    /* The stage moved the source since the survey, to keys that are not
     * integers: the rows ahead are counted after the next batch. */
    int count_rest;
    /* Time per row of the last few batches (ms; 0: none yet), the newest
     * at cost[(ncost - 1) % COST_WINDOW]. */
    double cost[COST_WINDOW];
    int ncost;
    int64_t passed; /* source keys the last batch passed */
    uint64_t t0;
    dw_rate rate;
} run;

static int check_options(dw_migration *h, const dw_backfill_options *in,
                         dw_backfill_options *o)
{
    dw_backfill_options defaults = DW_BACKFILL_OPTIONS_INIT;
    *o = in ? *in : defaults;
    if (o->version != DW_BACKFILL_OPTIONS_VERSION)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "backfill options version %u is not %d (use "
                         "DW_BACKFILL_OPTIONS_INIT)",
                         o->version, DW_BACKFILL_OPTIONS_VERSION);
    if (o->batch_rows < 0 || o->max_batch_rows < 0 || o->pause_ms < 0 ||
        o->time_limit_ms < 0)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "backfill options: batch_rows, max_batch_rows, "
                         "pause_ms and time_limit_ms must not be negative");
    if (o->flags & ~(unsigned int)DW_BACKFILL_RESTART)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "unknown backfill flags 0x%x", o->flags);
    if (!o->batch_rows)
        o->batch_rows = DEFAULT_BATCH_ROWS;
    if (!o->max_batch_rows)
        o->max_batch_rows = DEFAULT_MAX_BATCH_ROWS;
    if (o->batch_rows > o->max_batch_rows)
        o->max_batch_rows = o->batch_rows;
    if (!o->batch_ms)
        o->batch_ms = DEFAULT_BATCH_MS;
    return DW_OK;
}

static void fill_progress(run *r, int finished)
{
    dw_backfill_progress *p = &r->p;
    const dw_backfill_state *st = &r->st;
    p->source = st->source;
    p->target = st->source == DW_SIDE_OLD   ? DW_SIDE_NEW
                : st->source == DW_SIDE_NEW ? DW_SIDE_OLD
                                            : DW_SIDE_NONE;
    p->rows_done = st->rows_done;
    p->rows_total = st->rows_total > st->rows_done ? st->rows_total
                                                   : st->rows_done;
    p->rows_written = st->rows_written;
    p->rows_deleted = st->rows_deleted;
    p->batches = st->batches;
    p->finished = finished || st->state == DW_BF_DONE;
    p->stale = st->state == DW_BF_STALE;
    p->next_batch_rows = r->batch_rows;
    dw__rate_get(&r->rate, p->rows_done, p->rows_total, &p->rows_per_second,
                 &p->seconds_left);
    if (p->finished)
        p->seconds_left = 0;
    p->runner_pid = st->runner_pid;
    snprintf(p->runner_host, sizeof p->runner_host, "%s", st->runner_host);
    p->last_progress = st->updated;
    p->activity = st->state == DW_BF_RUNNING && !p->finished
                      ? dw__runner_activity(st->runner_pid, st->runner_host,
                                            st->updated, dw__wall_time())
                      : DW_BACKFILL_IDLE;
}

int dw__no_null_keys(dw_migration *h, int side, const char *what)
{
    int64_t nulls = 0;
    int rc = h->ops->null_keys(h, side, &nulls);
    if (rc == DW_OK && nulls > 0)
        return dw__error(h, DW_EMISUSE, side,
                         "%s side: %lld rows of table \"%s\" have NULL in a "
                         "key column; they cannot be addressed, so %s will "
                         "not run",
                         dw__side_word(side), (long long)nulls,
                         h->spec.side[side].table, what);
    /* Found before the first batch, not where a page boundary happens to
     * fall on it. */
    dw_held_key key = {NULL, NULL};
    if (rc == DW_OK)
        rc = h->ops->unpaged_key(h, side, &key);
    if (rc == DW_OK && key.v)
        rc = dw__error(h, DW_EMISUSE, side,
                       "%s side: table \"%s\" has a row with key %s, which "
                       "cannot be paged through (a TEXT holding a NUL byte, "
                       "or an infinite REAL); change or delete that row, "
                       "%s will not run",
                       dw__side_word(side), h->spec.side[side].table,
                       key.text, what);
    dw__held_key_clear(&key);
    return rc;
}

static int null_key_check(dw_migration *h, int side)
{
    return dw__no_null_keys(h, side, "the backfill");
}

static int mapped_elsewhere(dw_migration *h, int source, int *found);

/* Before the batches: where the stored backfill stands, and for a fresh
 * start the NULL-key check and, unless the keys are integers holding one
 * row each, the row count (the total for progress) -- scans that must not
 * hold the write lock. */
static int survey(dw_migration *h, void *arg)
{
    run *r = arg;
    int stage;
    int rc = dw__stage_current(h, &stage);
    if (rc == DW_OK)
        rc = dw__need_two_models(h, stage, "the backfill");
    /* The mapping the batches would use (either one when routed keys
     * trust the other side and write both models), before any state or
     * setup SQL is touched. */
    int both = 0;
    if (rc == DW_OK)
        rc = mapped_elsewhere(h, dw__authoritative(stage), &both);
    if (rc == DW_OK)
        rc = dw__need_callback(
            h, both ? DW_SIDE_NONE : dw__other_side(dw__authoritative(stage)));
    dw__backfill_state_free(&r->st);
    if (rc == DW_OK)
        rc = h->ops->backfill_load(h, &r->st);
    if (rc == DW_OK)
        rc = h->ops->integer_keys(h, dw__authoritative(stage),
                                  &r->integer_keys);
    if (rc != DW_OK)
        return rc;
    int source = dw__authoritative(stage);
    r->surveyed = source;
    r->fresh = (r->o.flags & DW_BACKFILL_RESTART) ||
               r->st.state == DW_BF_NONE || r->st.state == DW_BF_STALE;
    if (!r->fresh)
        return DW_OK;
    rc = null_key_check(h, source);
    /* Integer keys give the total from the batches' keys (see
     * integer_total()): a count would read the whole table. */
    if (rc == DW_OK && !r->integer_keys)
        rc = h->ops->range_count(h, source, NULL, NULL, &r->counted);
    return rc;
}

typedef struct sync_args {
    int target;
    int64_t synced;
} sync_args;

static int sync_one(dw_migration *h, const dw_value *key, void *arg)
{
    sync_args *a = arg;
    int rc = dw__sync(h, a->target, key);
    if (rc == DW_OK) {
        a->synced++;
        return DW_OK;
    }
    dw__error_at_key(h, key, h->spec.side[a->target].nkey);
    return rc;
}

/* With keys routed to stages of their own, each key is brought level from
 * the side its own stage trusts, one by one. */
typedef struct routed_args {
    int stage;
    int64_t synced;
} routed_args;

static int sync_routed(dw_migration *h, const dw_value *key, void *arg)
{
    routed_args *a = arg;
    int eff;
    int rc = dw__key_route(h, key, a->stage, &eff, NULL);
    if (rc != DW_OK)
        return rc;
    /* A key held at OFF or COMPLETE uses one model: nothing to level, and
     * no mapping needed for it (unless that model is the source, which
     * the plain backfill would copy too). */
    if ((eff == DW_STAGE_OFF || eff == DW_STAGE_COMPLETE) &&
        dw__authoritative(eff) != dw__authoritative(a->stage))
        return DW_OK;
    sync_args one = {dw__other_side(dw__authoritative(eff)), 0};
    rc = sync_one(h, key, &one);
    a->synced += one.synced;
    return rc;
}

/* The stages trusting the side other than source: all of them (OFF and
 * COMPLETE included), or only those writing both models. */
static void stages_elsewhere(int source, int both_written, int *first,
                             int *last)
{
    if (source == DW_SIDE_OLD) {
        *first = DW_STAGE_LIVE;
        *last = both_written ? DW_STAGE_RAMPDOWN : DW_STAGE_COMPLETE;
    } else {
        *first = both_written ? DW_STAGE_DUAL_WRITE : DW_STAGE_OFF;
        *last = DW_STAGE_SHADOW;
    }
}

static int stop_at_first(dw_migration *h, const char *key, void *arg)
{
    (void)h;
    (void)key;
    *(int *)arg = 1;
    return DW_MORE;
}

static int key_found(dw_migration *h, const dw_value *key, void *arg)
{
    (void)h;
    (void)key;
    *(int *)arg = 1;
    return DW_MORE;
}

/* Whether some key may have a stage trusting the side the backfill writes
 * while writing both models: such a key is synced from that side, through
 * the mapping into the source. */
static int mapped_elsewhere(dw_migration *h, int source, int *found)
{
    *found = 0;
    if (!dw__route_active(h))
        return DW_OK;
    int first, last;
    stages_elsewhere(source, 1, &first, &last);
    int canary = dw__route_canary_stage(h);
    if (canary >= first && canary <= last) {
        *found = 1;
        return DW_OK;
    }
    if (h->route.overrides <= 0)
        return DW_OK;
    int rc = h->ops->override_keys(h, first, last, stop_at_first, found);
    return rc == DW_MORE && *found ? DW_OK : rc;
}

/* How a batch treats the keys whose own stage trusts the side it
 * writes. */
enum {
    ROUTED_NONE, /* there are none: every key set-based */
    ROUTED_SKIP, /* set-based except the skip set, whose keys go one by one */
    ROUTED_EACH  /* every key of the batch one by one */
};

typedef struct skip_args {
    int stage, source;
    int64_t n;     /* keys in the skip set */
    int64_t limit; /* more than this many: ROUTED_EACH */
} skip_args;

/* Adds a key to the skip set (emptied before the first). */
static int skip_add(dw_migration *h, skip_args *a, const dw_value *key)
{
    int rc = a->n == 0 ? h->ops->skip_reset(h) : DW_OK;
    if (rc == DW_OK)
        rc = h->ops->skip_add(h, key);
    if (rc == DW_OK)
        a->n++;
    return rc;
}

/* An override key of a stage trusting the other side. */
static int skip_override(dw_migration *h, const char *text, void *arg)
{
    skip_args *a = arg;
    if (a->n >= a->limit) {
        a->n = a->limit + 1;
        return DW_MORE;
    }
    dw_held_key key = {NULL, NULL};
    int rc = dw__held_key_read(h, &key, text);
    if (rc == DW_ERROR) {
        /* Stored text that is no key of this migration: no row's key
         * looks it up, so no key follows it. */
        dw__clear_error(h);
        return DW_OK;
    }
    if (rc == DW_OK)
        rc = skip_add(h, a, key.v);
    dw__held_key_clear(&key);
    return rc;
}

/* A key of the batch's range, when the canary's stage trusts the other
 * side: skipped when its own route (override or canary) does too. */
static int skip_routed(dw_migration *h, const dw_value *key, void *arg)
{
    skip_args *a = arg;
    int eff;
    int rc = dw__key_route(h, key, a->stage, &eff, NULL);
    if (rc == DW_OK && dw__authoritative(eff) != a->source)
        rc = skip_add(h, a, key);
    return rc;
}

/* Which keys of the batch's range (lo, hi] have a stage of their own
 * trusting the other side, in the skip set; *mode says how the batch goes
 * on. Past `limit` such keys (overrides anywhere, counted without their
 * range, which their stored text does not give), and for a C mapping,
 * every key goes one by one: the set of keys to skip would cost more than
 * it saves. */
static int plan_routed(dw_migration *h, int stage, const dw_value *lo,
                       const dw_value *hi, int64_t limit, int *mode)
{
    *mode = ROUTED_NONE;
    if (!dw__route_active(h))
        return DW_OK;
    int source = dw__authoritative(stage);
    int target = dw__other_side(source);
    skip_args a = {stage, source, 0, h->spec.map[target].exprs ? limit : 0};
    int canary = dw__route_canary_stage(h);
    int rc = DW_OK;
    if (canary >= 0 && dw__authoritative(canary) != source) {
        /* Each key's route, overrides included. */
        if (!a.limit) {
            *mode = ROUTED_EACH;
            return DW_OK;
        }
        rc = h->ops->range_keys(h, DW_SIDE_NONE, lo, hi, skip_routed, &a);
    } else if (h->route.overrides > 0) {
        int first, last;
        stages_elsewhere(source, 0, &first, &last);
        rc = h->ops->override_keys(h, first, last, skip_override, &a);
        if (rc == DW_MORE && a.n > a.limit) {
            *mode = ROUTED_EACH;
            return DW_OK;
        }
    }
    if (rc == DW_OK && a.n > 0)
        *mode = ROUTED_SKIP;
    /* Skipped keys all outside this batch (a few overrides spread over a
     * large table): the plain statements, without the skip set's lookup
     * per row. */
    int inside = 0;
    if (rc == DW_OK && *mode == ROUTED_SKIP) {
        rc = h->ops->skip_keys(h, lo, hi, key_found, &inside);
        if (rc == DW_MORE && inside)
            rc = DW_OK;
        if (rc == DW_OK && !inside)
            *mode = ROUTED_NONE;
    }
    return rc;
}

/* Names the key a set-based copy failed on: syncs the batch's keys one by
 * one, inside the doomed transaction, until one fails the same way. */
static int name_failing_key(dw_migration *h, int target, const dw_value *lo,
                            const dw_value *hi)
{
    char *msg = dw__strdup(dw_errmsg(h));
    int code = h->errcode;
    sync_args a = {target, 0};
    int source = target == DW_SIDE_NEW ? DW_SIDE_OLD : DW_SIDE_NEW;
    int rc = h->ops->range_keys(h, source, lo, hi, sync_one, &a);
    if (rc == DW_OK) {
        /* Not reproduced key by key: keep the set-based error. */
        if (msg)
            dw__error(h, code, target, "%s", msg);
        rc = code;
    }
    dw__free(msg);
    return rc;
}

/* Whether the batch after lo may end batch_rows integers on, found
 * without reading a key: the copy counts the rows it passed -- one UPDATE
 * over one table (its count), or a C mapping's stream (the rows it read)
 * -- of keys that are integers holding one row each at most -- so the
 * span holds batch_rows rows at most, and exactly that many where the
 * keys are dense. Where they are sparse (the last such batch passed fewer
 * than half) the batch end is found by counting keys instead. */
static int span_batch(const dw_migration *h, const run *r, int target,
                      const dw_value *lo, const dw_value *end)
{
    int counted = h->spec.map[target].exprs ? h->spec.same_table
                                            : dw__has_mapping(h, target);
    return r->integer_keys && !r->sparse && counted && lo &&
           lo->type == DW_TYPE_INTEGER && end->type == DW_TYPE_INTEGER;
}

/* The total for progress over integer keys holding one row each, set by
 * each batch but the last (which makes it rows_done; none is stored
 * before a batch), without a count reading the whole table: the rows
 * done, and the integers after the cursor up to the end times `share`,
 * the part of the integers passed that held a row (at least one row: the
 * end key's). With no share measured (<= 0), every integer counts: an
 * upper bound. Saturated at INT64_MAX (keys near both of INT64's ends). */
static int64_t integer_total(int64_t done, int64_t cursor, int64_t end,
                             double share)
{
    if (cursor >= end)
        return done;
    /* (Differences taken unsigned: they may not fit an int64_t.) */
    uint64_t ahead = (uint64_t)end - (uint64_t)cursor;
    if (share > 0.0 && share < 1.0) {
        double rows = (double)ahead * share + 0.5;
        ahead = rows < 1.0    ? 1
                : rows < 9e18 ? (uint64_t)rows
                              : ahead;
    }
    return ahead >= (uint64_t)INT64_MAX - (uint64_t)done
               ? INT64_MAX
               : done + (int64_t)ahead;
}

/* The part of the integers passed that held a row: the larger of this
 * batch's and this call's since its first batch started after a key --
 * the batch's follows a change of density at once, the call's keeps a
 * batch over a gap from taking it for the rest; 0 when unknown. */
static double integer_share(const run *r, const dw_value *lo, int64_t hi,
                            int64_t passed, int64_t done)
{
    double share = 0.0;
    if (r->est_set && hi > r->est_key)
        share = (double)(done - r->est_done) /
                (double)((uint64_t)hi - (uint64_t)r->est_key);
    if (lo && lo->type == DW_TYPE_INTEGER && hi > lo->i) {
        double batch = (double)passed /
                       (double)((uint64_t)hi - (uint64_t)lo->i);
        if (batch > share)
            share = batch;
    }
    return share;
}

/* A batch's keys: after the cursor (lo), up to hi, and the end. */
typedef struct batch_keys {
    dw_held_key lo, hi, end;
} batch_keys;

/* One batch, inside its own write transaction. */
static int batch_in(dw_migration *h, run *r, batch_keys *k, int *finished)
{
    int stage;
    int rc = dw__stage_current(h, &stage);
    if (rc == DW_OK)
        rc = dw__need_two_models(h, stage, "the backfill");
    if (rc != DW_OK)
        return rc;
    int source = dw__authoritative(stage);
    int target = dw__other_side(source);
    dw_backfill_state *st = &r->st;
    dw__backfill_state_free(st);
    if ((rc = h->ops->backfill_load(h, st)) != DW_OK)
        return rc;
    if (!r->fresh && st->state == DW_BF_DONE) {
        *finished = 1;
        return DW_OK;
    }
    if (r->fresh || st->state != DW_BF_RUNNING) {
        /* Start (over): the end is the largest key now; later keys are
         * written to both sides by the application. Went stale since the
         * survey: look for NULL keys here. */
        if (!r->fresh && (rc = null_key_check(h, source)) != DW_OK)
            return rc;
        dw__backfill_state_free(st);
        st->state = DW_BF_RUNNING;
        st->source = source;
        st->rows_total = r->counted; /* integer keys: set by the batch */
        st->started = dw__wall_time();
        /* The stage moved the source since the survey: its keys decide
         * how the total is found (counted, not here: under the write
         * lock, but once this batch has committed). */
        if (source != r->surveyed) {
            rc = h->ops->integer_keys(h, source, &r->integer_keys);
            if (rc != DW_OK)
                return rc;
            r->surveyed = source;
            r->count_rest = !r->integer_keys;
        }
        if ((rc = h->ops->range_last(h, source, &k->end)) != DW_OK ||
            (rc = h->ops->run_setup(h)) != DW_OK)
            return rc;
        if (k->end.v && !(st->end_key = dw__strdup(k->end.text)))
            return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    } else if (st->source != source) {
        return dw__error(h, DW_EMISUSE, target,
                         "this backfill copies from the %s side, but at "
                         "stage %s the %s side is authoritative; writing "
                         "into it is refused: restart the backfill "
                         "(DW_BACKFILL_RESTART)",
                         dw__side_word(st->source), dw_stage_name(stage),
                         dw__side_word(source));
    }

    /* The batch's range: after the cursor, up to the key batch_rows on,
     * or to the end. The stored keys are read back into their values. */
    if (st->end_key && !k->end.v)
        rc = dw__held_key_read(h, &k->end, st->end_key);
    if (rc == DW_OK && st->cursor)
        rc = dw__held_key_read(h, &k->lo, st->cursor);
    if (rc != DW_OK)
        return rc;
    const char *lo_text = st->cursor;
    const dw_value *lo = k->lo.v;
    int last = 1;
    if (!r->est_set && r->integer_keys && lo && lo->type == DW_TYPE_INTEGER) {
        r->est_set = 1;
        r->est_key = lo->i;
        r->est_done = st->rows_done;
    }
    int span = k->end.v && span_batch(h, r, target, lo, k->end.v);
    if (span) {
        int64_t from = lo->i, to = k->end.v->i;
        /* (The difference taken unsigned: it may not fit an int64_t.) */
        last = from >= to ||
               (uint64_t)to - (uint64_t)from <= (uint64_t)r->batch_rows;
        if (!last) {
            dw_value hi = dw_int(from + r->batch_rows);
            if (dw__held_key_set(&k->hi, &hi, 1) != DW_OK)
                return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
        }
    } else if (k->end.v) {
        rc = h->ops->range_key_at(h, source, lo, 0, k->end.v,
                                  r->batch_rows - 1, &k->hi);
        if (rc != DW_OK)
            return rc;
        last = !k->hi.v || strcmp(k->hi.text, k->end.text) == 0;
        if (k->hi.v && lo && strcmp(k->hi.text, lo_text) == 0)
            return dw__error(h, DW_ERROR, source,
                             "the backfill does not advance past key %s; "
                             "its text does not read back as the same key",
                             lo_text);
    }
    const dw_value *upper = last ? k->end.v : k->hi.v;
    int64_t passed = 0, written = 0, deleted = 0;
    int64_t read = 0; /* source rows a C mapping's stream read */
    /* The source keys this batch passes. */
    if (k->end.v && last)
        rc = h->ops->range_count(h, source, lo, upper, &passed);
    else if (k->end.v && !span)
        passed = r->batch_rows;
    /* Keys routed to a stage trusting the other side: in range, and past
     * the end on the last batch (where orphans go too). */
    const dw_value *routed_hi = last ? NULL : upper;
    int routed = ROUTED_NONE;
    if (rc == DW_OK)
        rc = plan_routed(h, stage, lo, routed_hi, r->batch_rows, &routed);
    if (rc == DW_OK && routed == ROUTED_EACH) {
        /* Every key of either side in range (and past the end on the last
         * batch), from the side its own stage trusts. */
        routed_args a = {stage, 0};
        rc = h->ops->range_keys(h, DW_SIDE_NONE, lo, routed_hi, sync_routed,
                                &a);
        written = a.synced;
    } else if (rc == DW_OK) {
        /* First the target's rows whose source is gone -- within the
         * batch's range, and past the end on the last batch -- so a value
         * they hold (a UNIQUE email, say) is free for the rows copied
         * next. The skipped keys are left to their own stage. */
        int skip = routed == ROUTED_SKIP;
        rc = h->ops->range_delete_orphans(h, target, lo, routed_hi, skip,
                                          &deleted);
        if (rc == DW_OK && k->end.v && h->spec.map[target].exprs) {
            rc = h->ops->range_copy(h, target, lo, upper, skip, &written);
            if (rc == DW_ECONSTRAINT)
                rc = name_failing_key(h, target, lo, upper);
        } else if (rc == DW_OK && k->end.v && dw__has_mapping(h, target)) {
            rc = dw__copy_mapped_range(h, target, lo, upper, &read,
                                       &written);
        } else if (rc == DW_OK && k->end.v) {
            /* No mapping into the target (LIVE without a down mapping):
             * the first key with a row to carry says so, and names it. */
            sync_args a = {target, 0};
            rc = h->ops->range_keys(h, source, lo, upper, sync_one, &a);
            written = a.synced;
        }
        if (rc == DW_OK && skip) {
            routed_args a = {stage, 0};
            rc = h->ops->skip_keys(h, lo, routed_hi, sync_routed, &a);
            written += a.synced;
        }
    }
    /* A span's rows: its UPDATE's count, or the rows a C mapping read,
     * unless keys were left out of it. */
    if (rc == DW_OK && span && !last && routed == ROUTED_NONE)
        passed = h->spec.map[target].exprs ? written : read;
    else if (rc == DW_OK && span && !last)
        rc = h->ops->range_count(h, source, lo, upper, &passed);
    /* How the next batch finds its end: a span again while its rows stay
     * dense; after a counted end, a span again once the keys it passed
     * span no more than twice as many integers (from the very start, with
     * no first key to measure from, a span is tried: one passing too few
     * rows turns back to counting). */
    if (rc == DW_OK && !last && span)
        r->sparse = 2 * passed < r->batch_rows;
    else if (rc == DW_OK && !last && !lo)
        r->sparse = 0;
    else if (rc == DW_OK && !last && lo && k->hi.v &&
             lo->type == DW_TYPE_INTEGER && k->hi.v->type == DW_TYPE_INTEGER)
        r->sparse = (uint64_t)k->hi.v->i - (uint64_t)lo->i >
                    2 * (uint64_t)r->batch_rows;
    if (rc != DW_OK && rc != DW_EBUSY && rc != DW_ENOMEM)
        dw__error_append(h,
                       lo ? "; the backfill stopped and kept nothing of "
                            "this batch; its cursor stays after key %s"
                          : "; the backfill stopped and kept nothing of "
                            "this batch; its cursor stays at the start%s",
                       lo ? lo_text : "");
    if (rc != DW_OK)
        return rc;
    dw__free(st->cursor);
    st->cursor = last ? NULL : k->hi.text;
    if (!last)
        k->hi.text = NULL; /* the cursor's now */
    st->state = last ? DW_BF_DONE : DW_BF_RUNNING;
    st->rows_done += passed;
    r->passed = passed;
    /* With integer keys the total is estimated again from the integers
     * left after the cursor; at the end the rows passed are the true
     * count (rows deleted meanwhile are not in it). */
    if (last)
        st->rows_total = st->rows_done;
    else if (r->integer_keys && k->hi.v->type == DW_TYPE_INTEGER &&
             k->end.v->type == DW_TYPE_INTEGER)
        st->rows_total = integer_total(
            st->rows_done, k->hi.v->i, k->end.v->i,
            integer_share(r, lo, k->hi.v->i, passed, st->rows_done));
    else if (r->counted > st->rows_total)
        st->rows_total = r->counted; /* counted after the first batch */
    st->rows_written += written;
    st->rows_deleted += deleted;
    st->batches++;
    /* Who made this progress and when, committed with the cursor: a
     * reader tells a live backfill from a dead one by them. */
    st->updated = dw__wall_time();
    dw__runner_self(&st->runner_pid, st->runner_host,
                    sizeof st->runner_host);
    rc = h->ops->backfill_store(h, st);
    if (rc == DW_OK && last) {
        char *detail = dw__mprintf(
            "%s to %s%s: %lld keys, %lld rows written, %lld deleted, %lld "
            "batches",
            dw__side_word(source), dw__side_word(target),
            routed ? " (routed keys from the side their stage trusts)" : "",
            (long long)st->rows_done, (long long)st->rows_written,
            (long long)st->rows_deleted, (long long)st->batches);
        rc = detail ? h->ops->history_add(h, "backfill", stage, stage, 0,
                                          NULL, detail)
                    : dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
        dw__free(detail);
    }
    *finished = last;
    return rc;
}

/* After a batch, when the source moved to keys that are not integers:
 * the rows after the cursor counted, in a read transaction of its own,
 * for the total (stored with the next batch). */
static int count_rest(dw_migration *h, void *arg)
{
    run *r = arg;
    dw_held_key cursor;
    memset(&cursor, 0, sizeof cursor);
    int64_t ahead = 0;
    int rc = r->st.cursor ? dw__held_key_read(h, &cursor, r->st.cursor)
                          : DW_OK;
    if (rc == DW_OK)
        rc = h->ops->range_count(h, r->st.source, cursor.v, NULL, &ahead);
    /* Stored with the next batch (batch_in() takes it up). */
    if (rc == DW_OK)
        r->st.rows_total = r->counted = r->st.rows_done + ahead;
    dw__held_key_clear(&cursor);
    return rc;
}

static int batch(dw_migration *h, run *r, int *finished)
{
    batch_keys k;
    memset(&k, 0, sizeof k);
    int rc = batch_in(h, r, &k, finished);
    dw__held_key_clear(&k.lo);
    dw__held_key_clear(&k.hi);
    dw__held_key_clear(&k.end);
    return rc;
}

/* One batch in its own write transaction; *ms is how long it held the
 * write lock (from the BEGIN's return to the commit's, the checkpoint
 * after it left out). */
static int batch_in_transaction(dw_migration *h, run *r, int *finished,
                                double *ms)
{
    int scope;
    int rc = dw__begin(h, 1, &scope);
    if (rc != DW_OK)
        return rc;
    uint64_t locked = dw__now_ns();
    rc = batch(h, r, finished);
    if (rc == DW_OK)
        rc = dw__commit(h, scope);
    else
        rc = dw__rollback(h, scope, rc);
    *ms = (double)(dw__now_ns() - locked) / 1e6;
    h->ops->checkpoint_run(h);
    if (rc == DW_OK)
        r->fresh = 0;
    return rc;
}

/* The next batch's size: as many rows as fit 70% of the target at the
 * second highest time per row (per row passed: a span over sparse keys
 * passes fewer than its size) of the last four batches -- one fast batch
 * (a quiet moment of a busy machine) must not double the next past the
 * target, one stalled batch is no measure, and rows cost more as the
 * table grows. It grows at most twice when far below the aim, a quarter
 * near it, and shrinks at most to half. */
static void adapt(run *r, double ms)
{
    if (r->o.batch_ms < 0)
        return;
    /* A batch that passed no row (keys sparse past a span) tells
     * nothing. */
    if (r->passed <= 0)
        return;
    double aim = r->o.batch_ms * 0.7;
    r->cost[r->ncost++ % COST_WINDOW] = ms / (double)r->passed;
    double cost = 0, top = 0;
    for (int i = 0; i < COST_WINDOW; i++) {
        double c = r->cost[i];
        if (c > top) {
            cost = top;
            top = c;
        } else if (c > cost) {
            cost = c;
        }
    }
    if (r->ncost == 1)
        cost = top;
    double next = cost > 0 ? aim / cost : 2.0 * r->batch_rows;
    double grow = ms < aim / 2 ? 2.0 : 1.25;
    if (next > r->batch_rows * grow)
        next = r->batch_rows * grow;
    if (next < r->batch_rows * 0.5)
        next = r->batch_rows * 0.5;
    if (next < 1)
        next = 1;
    if (next > r->o.max_batch_rows)
        next = r->o.max_batch_rows;
    r->batch_rows = (int)next;
}

static int time_left_ms(const run *r)
{
    if (!r->o.time_limit_ms)
        return -1;
    double spent = (double)(dw__now_ns() - r->t0) / 1e6;
    return spent >= r->o.time_limit_ms ? 0 : (int)(r->o.time_limit_ms - spent);
}

/* Between batches: the time limit, the throttle and the pause. 0 to go
 * on, 1 to stop. */
static int hold(run *r)
{
    if (time_left_ms(r) == 0)
        return 1;
    if (r->o.pause_ms)
        dw__sleep_ms(r->o.pause_ms);
    while (r->o.throttle) {
        int ms = r->o.throttle(r->o.payload);
        if (ms < 0)
            return 1;
        if (ms == 0)
            break;
        int left = time_left_ms(r);
        if (left == 0)
            return 1;
        dw__sleep_ms(left > 0 && left < ms ? left : ms);
    }
    return time_left_ms(r) == 0;
}

int dw_backfill(dw_backfill_progress *out, dw_migration *h,
                const dw_backfill_options *opts)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    run r;
    memset(&r, 0, sizeof r);
    int rc = check_options(h, opts, &r.o);
    if (rc == DW_OK)
        rc = dw__need_autocommit(h, "dw_backfill");
    if (rc != DW_OK)
        return rc;
    r.batch_rows = r.o.batch_rows;
    /* Whether the keys ahead are dense is not stored with the cursor: the
     * first batch of each call finds its end by counting, and only what
     * it passed lets the next span (a call a batch, as an event loop or a
     * time limit makes them, would otherwise span over any gap batch_rows
     * integers at a time). */
    r.sparse = 1;
    r.t0 = dw__now_ns();
    rc = dw__in_scope(h, 0, survey, &r);
    int finished = rc == DW_OK && !r.fresh && r.st.state == DW_BF_DONE;
    if (rc == DW_OK && !finished)
        h->ops->checkpoint_hold(h, 1);
    for (int first = 1; rc == DW_OK && !finished; first = 0) {
        if (!first && hold(&r)) {
            rc = DW_MORE;
            break;
        }
        double ms;
        rc = batch_in_transaction(h, &r, &finished, &ms);
        if (rc == DW_OK && r.count_rest && !finished) {
            r.count_rest = 0;
            rc = dw__in_scope(h, 0, count_rest, &r);
        }
        if (rc != DW_OK)
            break;
        r.p.last_batch_ms = ms;
        if (ms > r.p.max_batch_ms)
            r.p.max_batch_ms = ms;
        adapt(&r, ms);
        dw__rate_step(&r.rate, r.st.rows_done);
        fill_progress(&r, finished);
        if (r.o.progress && r.o.progress(&r.p, r.o.payload) && !finished)
            rc = DW_MORE;
    }
    h->ops->checkpoint_hold(h, 0);
    fill_progress(&r, finished);
    if (out)
        *out = r.p;
    dw__backfill_state_free(&r.st);
    return rc;
}

static int load_status(dw_migration *h, void *arg)
{
    return h->ops->backfill_load(h, arg);
}

int dw_backfill_status(dw_backfill_progress *out, dw_migration *h)
{
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    if (!out)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "dw_backfill_status: out is NULL");
    run r;
    memset(&r, 0, sizeof r);
    r.t0 = dw__now_ns();
    int rc = dw__in_scope(h, 0, load_status, &r.st);
    fill_progress(&r, 0);
    *out = r.p;
    dw__backfill_state_free(&r.st);
    return rc;
}
