/* Verification: every key of both sides compared in the comparison shape,
 * chunk by chunk, each chunk one short read transaction in which SQLite
 * joins the two sides; divergences are counted, the first few described,
 * and every divergent key stored for repair. */
#include <stddef.h>
#include <string.h>

#include "internal.h"
#include "row.h"

#define DEFAULT_CHUNK_ROWS 1000
#define DEFAULT_REPORT_LIMIT 10

/* A divergent key of the chunk. The first report_limit keep their outcome
 * and the rows it points into, for the callback after the chunk's read
 * transaction has ended (so it may write on the connection). */
typedef struct pending {
    char *key;
    char *detail;
    int kind;
    dw_outcome *outcome;
    dw_row *rows[2];
} pending;

typedef struct verify_run {
    dw_verify_options o;
    dw_verify_result r;
    dw_held_key from, to;     /* the range's bounds (v NULL: open) */
    int64_t reported;
    /* This chunk's divergent keys, written after its read transaction. */
    pending *pend;
    int npend, cappend;
    /* Rows reused from key to key; `mapped`: a C mapping's output. */
    dw_row *old_row, *new_row, *in_row, *mapped;
    /* in_row was named (by fill_row()) and its names are still in_gen's:
     * it is filled by position. */
    int in_named;
    unsigned in_gen;
    /* The chunk being compared: the keys after lo (from lo when lo_incl)
     * up to hi (none: to the range's end), in one read transaction. */
    dw_held_key lo, hi;
    int lo_incl;
    /* verify_range()'s flags for the old pass. */
    int flags;
    /* For the progress callback: the estimated total and the rate. */
    int64_t total;
    dw_rate rate;
} verify_run;

static void pending_clear(verify_run *v)
{
    for (int i = 0; i < v->npend; i++) {
        pending *p = &v->pend[i];
        dw__free(p->key);
        dw__free(p->detail);
        if (p->outcome)
            dw__outcome_free(p->outcome);
        dw__free(p->outcome);
        dw_row_free(p->rows[0]);
        dw_row_free(p->rows[1]);
    }
    v->npend = 0;
}

static int check_range_key(dw_migration *h, const dw_value *key, int nkey,
                           const char *which, dw_held_key *out)
{
    if (!key)
        return nkey == 0 ? DW_OK
                         : dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                                     "verify options: `%s` is NULL but its "
                                     "count is %d",
                                     which, nkey);
    int rc = dw__check_key(h, key, nkey);
    if (rc == DW_OK && dw__held_key_set(out, key, nkey) != DW_OK)
        rc = dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    return rc;
}

static int check_options(dw_migration *h, const dw_verify_options *in,
                         verify_run *v)
{
    dw_verify_options defaults = DW_VERIFY_OPTIONS_INIT;
    v->o = defaults;
    if (in && in->version != 1 && in->version != DW_VERIFY_OPTIONS_VERSION)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "verify options version %u is not 1 or %d (use "
                         "DW_VERIFY_OPTIONS_INIT)",
                         in->version, DW_VERIFY_OPTIONS_VERSION);
    /* A version 1 struct ends before `progress`: only that much is read. */
    if (in)
        memcpy(&v->o, in,
               in->version == 1 ? offsetof(dw_verify_options, progress)
                                : sizeof *in);
    if (v->o.chunk_rows < 0)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "verify options: chunk_rows is negative");
    if (!v->o.chunk_rows)
        v->o.chunk_rows = DEFAULT_CHUNK_ROWS;
    if (!v->o.report_limit)
        v->o.report_limit = DEFAULT_REPORT_LIMIT;
    int rc = check_range_key(h, v->o.from, v->o.nfrom, "from", &v->from);
    if (rc == DW_OK)
        rc = check_range_key(h, v->o.to, v->o.nto, "to", &v->to);
    return rc;
}

/* Fills `row` with the key (named as the new side names it) and values:
 * the backend's, valid as read, so stored without dw_row_set()'s checks;
 * in the same order each time, so each goes into the slot the last row
 * left under its name. */
static int fill_row(dw_migration *h, dw_row *row, const dw_value *key,
                    char **names, int n, const char *const *keynames,
                    const dw_value *vals)
{
    int nkey = h->spec.side[DW_SIDE_NEW].nkey;
    int rc = DW_OK;
    dw_row_clear(row);
    for (int i = 0; rc == DW_OK && i < nkey; i++)
        rc = dw__row_put(row, keynames[i], &key[i]);
    for (int i = 0; rc == DW_OK && i < n; i++)
        rc = dw__row_put(row, names[i], &vals[i]);
    return rc == DW_OK ? DW_OK
                       : dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
}

/* shape_rows(): the rows are equal already, nothing to compare. */
#define SHAPED_EQUAL 2

/* The callback's input: the old row as stored, by name the first time,
 * then by position while its names stay those, the values borrowed from
 * the pass's statement (valid until its next step, after the callback
 * has returned). */
static int fill_in_row(dw_migration *h, verify_run *v, const dw_verify_row *vr)
{
    const dw_side_def *o = &h->spec.side[DW_SIDE_OLD];
    dw_row *row = v->in_row;
    if (v->in_named && row->gen == v->in_gen &&
        dw__row_ref_fill(row, vr->key, o->nkey, vr->a, o->ncols) == DW_OK)
        return DW_OK;
    int rc = fill_row(h, row, vr->key, o->cols, o->ncols,
                      (const char *const *)o->key, vr->a);
    v->in_named = rc == DW_OK;
    v->in_gen = row->gen;
    return rc;
}

/* A C mapping: the old row through the callback into old_row -- key
 * columns then the new side's, in the spec's order -- unless, with the
 * new row present and no options that change what is equal, the mapped
 * values are the new side's (*equal). */
static int map_old(dw_migration *h, verify_run *v, const dw_verify_row *vr,
                   int *equal)
{
    *equal = 0;
    const int *slots = NULL;
    int rc = fill_in_row(h, v, vr);
    if (rc == DW_OK)
        rc = dw__map_callback_into(h, DW_SIDE_NEW, v->in_row, v->mapped,
                                   &slots);
    if (rc != DW_OK)
        return rc;
    if (vr->in_new && !h->ropts.normalize && !h->ropts.compare &&
        dw__row_values_are(v->mapped, slots, vr->b,
                           h->spec.side[DW_SIDE_NEW].ncols)) {
        *equal = 1;
        return DW_OK;
    }
    return dw__mapped_shape(h, DW_SIDE_NEW, vr->key, v->mapped, slots,
                            v->old_row);
}

/* Both rows of one key in the comparison shape; SHAPED_EQUAL when a
 * C mapping's row is plainly the new one. */
static int shape_rows(dw_migration *h, verify_run *v, const dw_verify_row *vr)
{
    const dw_spec *s = &h->spec;
    const dw_side_def *n = &s->side[DW_SIDE_NEW];
    int rc = DW_OK, equal = 0;
    if (vr->in_old && !s->map[DW_SIDE_NEW].exprs) {
        rc = map_old(h, v, vr, &equal);
        if (rc != DW_OK || equal)
            return rc != DW_OK ? rc : SHAPED_EQUAL;
    }
    if (vr->in_new)
        rc = fill_row(h, v->new_row, vr->key, n->cols, n->ncols,
                      (const char *const *)n->key, vr->b);
    if (rc != DW_OK || !vr->in_old || !s->map[DW_SIDE_NEW].exprs)
        return rc;
    return fill_row(h, v->old_row, vr->key, n->cols, n->ncols,
                    (const char *const *)n->key, vr->a);
}

/* Whether the backend may settle equal rows itself: the rows compared
 * as they are, by dw_value_equal(), so nothing in C needs to see them. */
static int equal_rows_in_backend(const dw_migration *h)
{
    return !h->ropts.normalize && !h->ropts.compare &&
           h->spec.map[DW_SIDE_NEW].exprs;
}

/* Keeps a divergent key for after the chunk; a reported one takes over the
 * outcome and the compared rows (the handle gets fresh ones). */
static int remember(dw_migration *h, verify_run *v, const dw_value *key,
                    dw_outcome *oc)
{
    if (v->npend == v->cappend) {
        int cap = v->cappend ? v->cappend * 2 : 64;
        pending *p = dw__realloc(v->pend, sizeof(pending) * (size_t)cap);
        if (!p)
            return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
        v->pend = p;
        v->cappend = cap;
    }
    int report = v->o.report_limit > 0 && v->reported < v->o.report_limit;
    pending *p = &v->pend[v->npend];
    memset(p, 0, sizeof *p);
    dw_buf kb, db;
    dw_buf_init(&kb);
    dw_buf_init(&db);
    dw__key_text(&kb, key, h->spec.side[DW_SIDE_NEW].nkey);
    if (report)
        dw__detail_line(&db, oc);
    p->kind = oc->kind;
    p->key = dw_buf_take(&kb);
    p->detail = report ? dw_buf_take(&db) : NULL;
    dw_buf_free(&db);
    dw_row *fresh[2] = {NULL, NULL};
    if (report && (!(p->outcome = dw__malloc(sizeof *p->outcome)) ||
                   dw_row_new(&fresh[0]) != DW_OK ||
                   dw_row_new(&fresh[1]) != DW_OK))
        report = -1;
    if (!p->key || (report && !p->detail) || report < 0) {
        /* Whatever was taken before the failure goes back. */
        dw_row_free(fresh[0]);
        dw_row_free(fresh[1]);
        dw__free(p->outcome);
        dw__free(p->key);
        dw__free(p->detail);
        memset(p, 0, sizeof *p);
        return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    }
    if (report) {
        *p->outcome = *oc;
        memset(oc, 0, sizeof *oc);
        p->rows[0] = v->old_row;
        p->rows[1] = v->new_row;
        v->old_row = fresh[0];
        v->new_row = fresh[1];
        v->reported++;
    }
    v->npend++;
    return DW_OK;
}

static int compare_one(dw_migration *h, const dw_verify_row *vr, void *arg)
{
    verify_run *v = arg;
    int rc = shape_rows(h, v, vr);
    if (rc != DW_OK)
        return rc == SHAPED_EQUAL ? DW_OK : rc;
    dw_outcome oc;
    rc = dw__compare_rows(h, &oc, v->old_row, vr->in_old, v->new_row,
                          vr->in_new);
    if (rc != DW_OK)
        return rc; /* the message says why */
    if (oc.kind == DW_MISMATCH_MISSING_NEW)
        v->r.missing++;
    else if (oc.kind == DW_MISMATCH_EXTRA_NEW)
        v->r.extra++;
    else if (oc.kind == DW_MISMATCH_DIFFERENT)
        v->r.different++;
    if (oc.kind)
        rc = remember(h, v, vr->key, &oc);
    dw__outcome_free(&oc); /* a no-op when remember() took it */
    return rc;
}

/* One read transaction: where the chunk ends, its old keys, then its keys
 * only on the new side -- each key of either side once, whatever writers
 * do between chunks. */
static int read_chunk(dw_migration *h, void *arg)
{
    verify_run *v = arg;
    int64_t nold = 0, nnew = 0, candidates = 0;
    /* Read options set since the start (from a progress callback) that
     * need every row in C take effect from this chunk on. */
    int flags = equal_rows_in_backend(h) ? v->flags : 0;
    /* One table whose every row goes to C: its one pass stops chunk_rows
     * keys in and says where, so nothing steps through the chunk's keys
     * first to find its end. */
    if (h->spec.same_table && !flags) {
        int rc = h->ops->verify_range(h, DW_SIDE_OLD, v->lo.v, v->lo_incl,
                                      v->to.v, 0, v->o.chunk_rows, &v->hi,
                                      compare_one, v, &nold);
        v->r.keys += nold;
        return rc;
    }
    int rc = h->ops->verify_chunk(h, v->lo.v, v->lo_incl, v->to.v,
                                  v->o.chunk_rows, &v->hi, &nold);
    const dw_value *hi = v->hi.v ? v->hi.v : v->to.v;
    if (rc == DW_OK)
        rc = h->ops->verify_range(h, DW_SIDE_OLD, v->lo.v, v->lo_incl, hi,
                                  flags, 0, NULL, compare_one, v,
                                  &candidates);
    if (rc == DW_OK)
        rc = h->ops->verify_range(h, DW_SIDE_NEW, v->lo.v, v->lo_incl, hi,
                                  0, 0, NULL, compare_one, v, &nnew);
    v->r.keys += nold + nnew;
    return rc;
}

static int write_pending(dw_migration *h, void *arg)
{
    verify_run *v = arg;
    int rc = DW_OK;
    for (int i = 0; rc == DW_OK && i < v->npend; i++)
        rc = h->ops->verify_key(h, v->r.run_id, v->pend[i].key,
                                v->pend[i].kind, v->pend[i].detail);
    return rc;
}

static int start_run(dw_migration *h, void *arg)
{
    verify_run *v = arg;
    int stage;
    int rc = dw__stage_current(h, &stage);
    if (rc == DW_OK && h->contracted)
        rc = dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                       "verification needs the old model of %s, which the "
                       "contract dropped; dw_restore() puts it back",
                       h->spec.name);
    if (rc == DW_OK)
        rc = dw__no_null_keys(h, DW_SIDE_OLD, "verification");
    /* One table: the new side's keys are the same columns of the same
     * rows, already read. */
    if (rc == DW_OK && !h->spec.same_table)
        rc = dw__no_null_keys(h, DW_SIDE_NEW, "verification");
    /* Equal rows left out in SQL must still have keys C would take: the
     * SQL checks their types unless the schema does. */
    int typed = 0;
    if (rc == DW_OK && equal_rows_in_backend(h))
        rc = h->ops->integer_keys(h, DW_SIDE_OLD, &typed);
    v->flags = equal_rows_in_backend(h)
                   ? DW_VR_SAME_IN_SQL | (typed ? DW_VR_KEYS_TYPED : 0)
                   : 0;
    if (rc == DW_OK)
        rc = h->ops->verify_start(h, !v->from.v && !v->to.v, v->from.text,
                                  v->to.text, &v->r);
    return rc;
}

/* The estimated total for progress: the larger side's keys in range. */
static int count_keys(dw_migration *h, void *arg)
{
    verify_run *v = arg;
    int64_t n[2] = {0, 0};
    int rc = h->ops->range_count(h, DW_SIDE_OLD, v->from.v, v->to.v, &n[0]);
    if (rc == DW_OK)
        rc = h->ops->range_count(h, DW_SIDE_NEW, v->from.v, v->to.v, &n[1]);
    v->total = n[0] > n[1] ? n[0] : n[1];
    return rc;
}

static void report_progress(verify_run *v, int finished)
{
    dw_verify_progress p;
    memset(&p, 0, sizeof p);
    p.keys = v->r.keys;
    p.keys_total = finished || v->total < p.keys ? p.keys : v->total;
    p.divergent = v->r.missing + v->r.extra + v->r.different;
    p.finished = finished;
    dw__rate_step(&v->rate, p.keys);
    dw__rate_get(&v->rate, p.keys, p.keys_total, &p.keys_per_second,
                 &p.seconds_left);
    v->o.progress(&p, v->o.progress_payload);
}

static int finish_run(dw_migration *h, void *arg)
{
    verify_run *v = arg;
    return h->ops->verify_finish(h, &v->r);
}

/* A pass must end beyond an exclusive start, or it would never end. */
static int check_advance(dw_migration *h, const dw_held_key *from,
                         int from_incl, const dw_held_key *end)
{
    if (from_incl || !from->v || !end->v || strcmp(end->text, from->text))
        return DW_OK;
    return dw__error(h, DW_ERROR, DW_SIDE_NONE,
                     "verification does not advance past key %s",
                     from->text);
}

/* After a read transaction: the next chunk starts after hi (none: the
 * range is done). */
static int advance(dw_migration *h, verify_run *v)
{
    int rc = check_advance(h, &v->lo, v->lo_incl, &v->hi);
    dw__held_key_clear(&v->lo);
    v->lo = v->hi;
    memset(&v->hi, 0, sizeof v->hi);
    v->lo_incl = 0;
    return rc;
}

static int run_chunks(dw_migration *h, verify_run *v)
{
    v->lo = v->from;
    memset(&v->from, 0, sizeof v->from); /* owned by lo from here */
    v->lo_incl = v->lo.v != NULL;
    int rc = DW_OK;
    for (;;) {
        rc = dw__in_scope(h, 0, read_chunk, v);
        /* Outside any transaction of ours: the callback, then the keys. */
        for (int i = 0; rc == DW_OK && v->o.fn && i < v->npend; i++)
            if (v->pend[i].outcome) {
                dw_mismatch m;
                dw__mismatch_view(&m, h, v->pend[i].key, v->pend[i].outcome);
                v->o.fn(&m, v->o.payload);
            }
        if (rc == DW_OK && v->npend)
            rc = dw__in_scope(h, 1, write_pending, v);
        pending_clear(v);
        if (rc == DW_OK)
            rc = advance(h, v);
        int done = !v->lo.v;
        if (rc == DW_OK && v->o.progress)
            report_progress(v, done);
        if (rc != DW_OK || done)
            break;
    }
    dw__held_key_clear(&v->lo);
    dw__held_key_clear(&v->hi);
    return rc;
}

int dw_verify(dw_verify_result *out, dw_migration *h,
              const dw_verify_options *opts)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    if (!out)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "dw_verify: out is NULL");
    verify_run v;
    memset(&v, 0, sizeof v);
    int rc = check_options(h, opts, &v);
    /* Every old row is mapped up: refused before a run is stored. */
    if (rc == DW_OK)
        rc = dw__need_callback(h, DW_SIDE_NEW);
    if (rc == DW_OK)
        rc = dw__need_autocommit(h, "dw_verify");
    if (rc == DW_OK && (dw_row_new(&v.old_row) != DW_OK ||
                        dw_row_new(&v.new_row) != DW_OK ||
                        dw_row_new(&v.in_row) != DW_OK ||
                        dw_row_new(&v.mapped) != DW_OK))
        rc = dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    uint64_t t0 = dw__now_ns();
    if (rc == DW_OK)
        rc = dw__in_scope(h, 1, start_run, &v);
    /* Counted after the checks of the start, in a read transaction. */
    if (rc == DW_OK && v.o.progress)
        rc = dw__in_scope(h, 0, count_keys, &v);
    if (rc == DW_OK)
        rc = run_chunks(h, &v);
    if (rc == DW_OK) {
        v.r.seconds = (double)(dw__now_ns() - t0) / 1e9;
        v.r.finished = 1;
        v.r.clean = !v.r.missing && !v.r.extra && !v.r.different;
        rc = dw__in_scope(h, 1, finish_run, &v);
    }
    if (rc == DW_OK)
        *out = v.r;
    pending_clear(&v);
    dw__free(v.pend);
    dw__held_key_clear(&v.from);
    dw__held_key_clear(&v.to);
    dw_row_free(v.old_row);
    dw_row_free(v.new_row);
    dw_row_free(v.in_row);
    dw_row_free(v.mapped);
    return rc;
}

static int last_run(dw_migration *h, void *arg)
{
    return h->ops->verify_last(h, arg);
}

int dw_verify_last(dw_verify_result *out, dw_migration *h)
{
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    if (!out)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "dw_verify_last: out is NULL");
    return dw__in_scope(h, 0, last_run, out);
}
