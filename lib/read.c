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
    if (opts->app_progress && opts->app_progress_ops <= 0)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "app_progress_ops must be positive");

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
    const dw_value *key;
    int nkey;
    dw_read_fn fn[3]; /* by side; NULL to read through the spec */
    void *payload;
} read_ctx;

/* Reads one side's row in the shape the caller gets back (callbacks, or
 * the side as stored). Returns DW_OK, DW_ENOTFOUND or an error. */
static int read_returned(dw_migration *h, const read_ctx *c, int side,
                         dw_row *out)
{
    if (!c->fn[side])
        return h->ops->read_side(h, side, c->key, out);
    int r = c->fn[side](out, h->db, c->key, c->nkey, c->payload);
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
    return dw__map_old_up(h, c->key, out);
}

static int timed(dw_migration *h, int side, int rc, uint64_t t0)
{
    dw_side_metrics *m = dw__side_metrics(h, side);
    dw__side_latency(m, dw__now_ns() - t0);
    m->reads++;
    if (rc != DW_OK && rc != DW_ENOTFOUND)
        m->read_errors++;
    return rc;
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

/* The non-authoritative read, within the time budget. Its failure is
 * counted and forgotten: it must not reach the caller. */
static int read_other(dw_migration *h, const read_ctx *c, int side,
                      dw_row *out)
{
    int budget = h->ropts.budget_ms;
    uint64_t t0 = dw__now_ns();
    if (budget > 0)
        h->ops->budget_start(h, budget);
    int rc = read_compared(h, c, side, out);
    if (budget > 0 && h->ops->budget_stop(h)) {
        /* Whatever the interrupted read made of it, a read over budget is
         * not an answer: never compare it. */
        dw__side_metrics(h, side)->read_timeouts++;
        if (rc == DW_OK || rc == DW_ENOTFOUND)
            rc = dw__error(h, DW_ERROR, side, "over the time budget");
    }
    timed(h, side, rc, t0);
    if (rc != DW_OK && rc != DW_ENOTFOUND)
        dw__clear_error(h);
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
    int rc = dw__check_key(h, key, nkey);
    if (rc != DW_OK)
        return rc;
    dw_row_clear(out);
    h->metrics.reads++;

    read_ctx c = {key, nkey, {NULL, read_old, read_new}, payload};
    dw_row *other_row = NULL, *auth_cmp = NULL;
    int scope, stage;
    rc = h->ops->begin(h, 0, &scope);
    if (rc != DW_OK)
        return rc;
    rc = dw__stage_current(h, &stage);
    /* Each key reads as its own stage says (override, canary). */
    if (rc == DW_OK)
        rc = dw__key_route(h, key, stage, &stage, NULL);
    if (rc != DW_OK)
        return dw__rollback(h, scope, rc);
    int auth = dw__authoritative(stage);
    int other = dw__other_side(auth);
    int compare = stage == DW_STAGE_SHADOW || stage == DW_STAGE_LIVE;
    if (compare && !sampled(h)) {
        compare = 0;
        h->metrics.skipped++;
    }
    /* Through the spec with old authoritative, the returned row (as
     * stored) is not the comparison shape: map it up separately. */
    int auth_reshaped = compare && !read_old && auth == DW_SIDE_OLD;
    if (compare && (dw_row_new(&other_row) != DW_OK ||
                    (auth_reshaped && dw_row_new(&auth_cmp) != DW_OK))) {
        dw_row_free(other_row);
        dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
        return dw__rollback(h, scope, DW_ENOMEM);
    }

    int other_first = compare && h->ropts.order == DW_ORDER_RANDOM &&
                      (dw__random(h) & 1);
    int rc_other = DW_ENOTFOUND, rc_cmp = DW_OK;
    if (other_first)
        rc_other = read_other(h, &c, other, other_row);
    uint64_t t0 = dw__now_ns();
    rc = timed(h, auth, read_returned(h, &c, auth, out), t0);
    if (auth_reshaped && (rc == DW_OK || rc == DW_ENOTFOUND)) {
        rc_cmp = read_compared(h, &c, auth, auth_cmp);
        if (rc_cmp != DW_OK && rc_cmp != DW_ENOTFOUND)
            dw__clear_error(h);
    }
    if (compare && !other_first && (rc == DW_OK || rc == DW_ENOTFOUND))
        rc_other = read_other(h, &c, other, other_row);

    if (rc == DW_OK || rc == DW_ENOTFOUND) {
        int end = h->ops->commit(h, scope);
        if (end != DW_OK)
            rc = end;
    } else {
        rc = dw__rollback(h, scope, rc);
    }
    if (rc != DW_OK)
        dw_row_clear(out); /* NOTFOUND and errors return an empty row */
    if (rc != DW_OK && rc != DW_ENOTFOUND)
        goto done;

    int mismatch = 0;
    if (compare) {
        int cmp_ok = (rc_other == DW_OK || rc_other == DW_ENOTFOUND) &&
                     (rc_cmp == DW_OK || rc_cmp == DW_ENOTFOUND);
        if (!cmp_ok) {
            h->metrics.compare_errors++;
        } else {
            const dw_row *auth_row = auth_reshaped ? auth_cmp : out;
            int auth_found = auth_reshaped ? rc_cmp == DW_OK : rc == DW_OK;
            const dw_row *old_row = auth == DW_SIDE_OLD ? auth_row : other_row;
            const dw_row *new_row = auth == DW_SIDE_OLD ? other_row : auth_row;
            int old_found = auth == DW_SIDE_OLD ? auth_found : rc_other == DW_OK;
            int new_found = auth == DW_SIDE_OLD ? rc_other == DW_OK : auth_found;
            dw_outcome o;
            if (dw__compare_rows(h, &o, old_row, old_found, new_row,
                                 new_found) != DW_OK) {
                h->metrics.compare_errors++;
            } else {
                h->metrics.comparisons++;
                if (o.kind) {
                    mismatch = 1;
                    h->metrics.mismatches++;
                    dw__report(h, key, nkey, &o);
                } else {
                    h->metrics.matches++;
                }
                dw__outcome_free(&o);
            }
        }
    }
    if (mismatch && (h->flags & DW_OPEN_TEST_MODE))
        rc = dw__error(h, DW_EMISMATCH, DW_SIDE_NONE,
                       "test mode: the old and new models disagree at this "
                       "key (see the mismatch log)");
    /* The mismatch log's own transaction may be what was left open. */
    if (h->left_open) {
        dw_row_clear(out);
        rc = dw__left_open_rc(h, rc);
    }
    /* A missing row is common on a hot path: the fixed text, allocated
     * nowhere. */
    if (rc == DW_ENOTFOUND && h->errcode == DW_OK) {
        h->errcode = DW_ENOTFOUND;
        h->errside = auth;
    }
done:
    dw_row_free(other_row);
    dw_row_free(auth_cmp);
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
    int rc = dw__check_key(h, key, nkey);
    if (rc != DW_OK)
        return rc;
    dw_row *old_row = NULL, *new_row = NULL;
    if (dw_row_new(&old_row) != DW_OK || dw_row_new(&new_row) != DW_OK) {
        dw_row_free(old_row);
        return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    }
    read_ctx c = {key, nkey, {NULL, NULL, NULL}, NULL};
    int scope, rc_old = DW_OK, rc_new = DW_OK;
    rc = h->ops->begin(h, 0, &scope);
    if (rc == DW_OK) {
        rc_old = read_compared(h, &c, DW_SIDE_OLD, old_row);
        if (rc_old == DW_OK || rc_old == DW_ENOTFOUND)
            rc_new = read_compared(h, &c, DW_SIDE_NEW, new_row);
        if (rc_old != DW_OK && rc_old != DW_ENOTFOUND)
            rc = rc_old;
        else if (rc_new != DW_OK && rc_new != DW_ENOTFOUND)
            rc = rc_new;
        if (rc == DW_OK)
            rc = h->ops->commit(h, scope);
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
                dw__report(h, key, nkey, &o);
            } else {
                h->metrics.matches++;
            }
            dw__outcome_free(&o);
        } else {
            dw__error(h, rc, DW_SIDE_NONE, "comparing: %s", dw_errstr(rc));
        }
    }
    dw_row_free(old_row);
    dw_row_free(new_row);
    /* The mismatch log's own transaction may be what was left open. */
    return dw__left_open_rc(h, rc);
}
