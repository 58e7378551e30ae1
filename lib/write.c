/* Writes: dw_write() and dw_mirror() orchestrate, in the stage table's order,
 * the application's writes and sync(key) -- the one mechanism that makes a
 * side equal map(authoritative row), or deletes it when that row is gone. */
#include <string.h>

#include "internal.h"
#include "row.h"

/* Whether numeric affinity would turn this text into a number: a decimal
 * literal, spaces around it allowed. */
static int converts_to_number(const dw_value *v)
{
    if (!v->p) /* an empty text given as (NULL, 0) */
        return 0;
    const char *p = v->p, *end = p + dw__value_len(v);
    int digits = 0;
    while (p < end && *p == ' ')
        p++;
    while (end > p && end[-1] == ' ')
        end--;
    if (p < end && (*p == '+' || *p == '-'))
        p++;
    for (; p < end && *p >= '0' && *p <= '9'; p++)
        digits++;
    if (p < end && *p == '.')
        for (p++; p < end && *p >= '0' && *p <= '9'; p++)
            digits++;
    if (digits && p < end && (*p == 'e' || *p == 'E')) {
        const char *q = p + 1;
        if (q < end && (*q == '+' || *q == '-'))
            q++;
        if (q < end && *q >= '0' && *q <= '9') {
            for (p = q; p < end && *p >= '0' && *p <= '9'; p++)
                ;
        }
    }
    return digits > 0 && p == end;
}

int dw__check_key(dw_migration *h, const dw_value *key, int nkey)
{
    int want = h->spec.side[DW_SIDE_OLD].nkey;
    if (!key)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE, "the key is NULL");
    if (nkey != want)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "the key has %d values; migration \"%s\" has %d key "
                         "columns",
                         nkey, h->spec.name, want);
    for (int i = 0; i < nkey; i++) {
        /* An INTEGER is a valid key value whatever it holds; only a TEXT
         * column's affinity would convert it (checked below). */
        if (key[i].type == DW_TYPE_INTEGER && h->key_class[i] != 'T')
            continue;
        const char *why = dw__key_value_problem(&key[i]);
        if (why)
            return dw__error(h, DW_EMISUSE, DW_SIDE_NONE, "key value %d %s",
                             i, why);
        /* The column's affinity would convert the value, so the row found
         * would not be the key given: one key, two texts ([1], ["1"]) in
         * overrides, buckets, queues and logs. */
        char cls = h->key_class[i];
        if ((cls == 'N' && key[i].type == DW_TYPE_TEXT &&
             converts_to_number(&key[i])) ||
            (cls == 'T' && key[i].type == DW_TYPE_INTEGER))
            return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                             "key value %d is %s, but key column \"%s\" has "
                             "%s affinity, which converts it: pass %s",
                             i, cls == 'N' ? "a numeric TEXT" : "INTEGER",
                             h->spec.side[DW_SIDE_OLD].key[i],
                             cls == 'N' ? "numeric" : "text",
                             cls == 'N' ? "an INTEGER" : "a TEXT");
    }
    return DW_OK;
}

int dw__has_mapping(const dw_migration *h, int target)
{
    return h->spec.map[target].present;
}

int dw__other_side(int side)
{
    return side == DW_SIDE_OLD ? DW_SIDE_NEW : DW_SIDE_OLD;
}

int dw__unbound_map(dw_row *out, const dw_row *in, void *payload)
{
    (void)out;
    (void)in;
    (void)payload;
    return DW_EMISUSE; /* never called: dw__map_callback_row() refuses */
}

int dw__unbound(const dw_migration *h, int target)
{
    if (target == DW_SIDE_NONE)
        return dw__unbound(h, DW_SIDE_NEW) || dw__unbound(h, DW_SIDE_OLD);
    return h->spec.map[target].fn == dw__unbound_map;
}

int dw__need_callback(dw_migration *h, int target)
{
    if (!dw__unbound(h, target))
        return DW_OK;
    const char *v = h->spec.map_version;
    return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                     "migration \"%s\" maps rows with C callbacks "
                     "(map_version %s%s%s), which run inside the "
                     "application: open it there with dw_%s_open() to "
                     "write, compare, backfill, verify or repair",
                     h->spec.name, v ? "\"" : "", v ? v : "none",
                     v ? "\"" : "", h->ops->name);
}

int dw__map_callback_into(dw_migration *h, int target, const dw_row *in,
                          dw_row *out, const int **slots)
{
    /* Every C mapping runs here: a handle opened from the stored spec has
     * none to run. */
    int rc = DW_OK;
    if (dw__unbound(h, target) && (rc = dw__need_callback(h, target)) != DW_OK)
        return rc;
    const dw_side_def *d = &h->spec.side[target];
    const char *dir = target == DW_SIDE_NEW ? "up" : "down";
    dw__row_reset(out);
    int cb = h->spec.map[target].fn(out, in, h->spec.map_payload);
    if (cb != DW_OK)
        return dw__error(h, cb == DW_ENOMEM ? DW_ENOMEM : DW_ECALLBACK,
                         target,
                         "%s side: the %s mapping callback failed (%d)",
                         dw__side_word(target), dir, cb);
    /* Found by name once, then where the callback set them last time. */
    const int *found;
    int missing;
    rc = dw__row_slots(out, d->cols, d->ncols, &found, &missing);
    if (rc == DW_ENOMEM)
        return dw__error(h, DW_ENOMEM, target, "out of memory");
    if (rc != DW_OK)
        return dw__error(h, DW_ECALLBACK, target,
                         "%s side: the %s mapping callback did not set "
                         "column \"%s\"",
                         dw__side_word(target), dir, d->cols[missing]);
    if (slots)
        *slots = found;
    return DW_OK;
}

int dw__mapped_shape(dw_migration *h, int target, const dw_value *key,
                     const dw_row *mapped, const int *slots, dw_row *out)
{
    /* The key, then the columns in the spec's order: values a backend
     * read, or the callback set through dw_row_set(), which checked
     * them. */
    const dw_side_def *d = &h->spec.side[target];
    int put = DW_OK;
    dw_row_clear(out);
    for (int i = 0; put == DW_OK && i < d->nkey; i++)
        put = dw__row_put(out, d->key[i], &key[i]);
    for (int i = 0; put == DW_OK && i < d->ncols; i++)
        put = dw__row_put(out, d->cols[i], dw__row_at(mapped, slots[i]));
    return put == DW_OK ? DW_OK
                        : dw__error(h, DW_ENOMEM, target, "out of memory");
}

int dw__map_callback_row(dw_migration *h, int target, const dw_value *key,
                         const dw_row *in, dw_row *out)
{
    /* The handle's row, reused from row to row (its names kept): taken
     * while the callback runs, so a mapping reached from inside it gets
     * a row of its own. */
    dw_row *mapped = h->mapped;
    h->mapped = NULL;
    if (!mapped && dw_row_new(&mapped) != DW_OK)
        return dw__error(h, DW_ENOMEM, target, "out of memory");
    const int *slots = NULL;
    int rc = dw__map_callback_into(h, target, in, mapped, &slots);
    if (rc == DW_OK)
        rc = dw__mapped_shape(h, target, key, mapped, slots, out);
    if (h->mapped)
        dw_row_free(mapped); /* one was put back meanwhile */
    else
        h->mapped = mapped;
    return rc;
}

/* The source row of `key` mapped into target's shape (key columns named as
 * the target names them) through a C mapping callback. */
static int map_callback(dw_migration *h, int target, const dw_value *key,
                        dw_row *out)
{
    dw_row *in = NULL;
    if (dw_row_new(&in) != DW_OK)
        return dw__error(h, DW_ENOMEM, target, "out of memory");
    int rc = h->ops->read_side(h, dw__other_side(target), key, in);
    if (rc == DW_OK)
        rc = dw__map_callback_row(h, target, key, in, out);
    dw_row_free(in);
    return rc;
}

/* The source row mapped into target's shape, through whichever kind of
 * mapping the spec has. DW_ENOTFOUND when the source row is absent. */
static int map_row(dw_migration *h, int target, const dw_value *key,
                   dw_row *out)
{
    if (h->spec.map[target].exprs)
        return h->ops->read_mapped(h, target, key, out);
    return map_callback(h, target, key, out);
}

int dw__map_old_up(dw_migration *h, const dw_value *key, dw_row *out)
{
    return map_row(h, DW_SIDE_NEW, key, out);
}

/* Syncs through a C mapping: map the source row, then upsert it, or delete
 * the target row when the source row is gone. */
static int sync_callback(dw_migration *h, int target, const dw_value *key)
{
    dw_row *row = NULL;
    if (dw_row_new(&row) != DW_OK)
        return dw__error(h, DW_ENOMEM, target, "out of memory");
    int rc = map_callback(h, target, key, row);
    if (rc == DW_ENOTFOUND)
        rc = h->ops->delete_row(h, target, key);
    else if (rc == DW_OK)
        rc = h->ops->upsert_row(h, target, key, row);
    dw_row_free(row);
    return rc;
}

/* A sync in a direction the spec has no mapping for: only a row to carry
 * needs one; with the source row gone (a delete, say) the sync is the
 * target row's delete. */
static int sync_unmapped(dw_migration *h, int target, const dw_value *key)
{
    dw_row *row = NULL;
    if (dw_row_new(&row) != DW_OK)
        return dw__error(h, DW_ENOMEM, target, "out of memory");
    int rc = h->ops->read_side(h, dw__other_side(target), key, row);
    dw_row_free(row);
    if (rc == DW_ENOTFOUND)
        return h->ops->delete_row(h, target, key);
    if (rc != DW_OK)
        return rc;
    return dw__error(h, DW_EMISUSE, target,
                     "copying a row into the %s model needs the %s mapping, "
                     "which the spec of %s does not have",
                     dw__side_word(target),
                     target == DW_SIDE_NEW ? "up" : "down", h->spec.name);
}

int dw__sync(dw_migration *h, int target, const dw_value *key)
{
    if (!dw__has_mapping(h, target))
        return sync_unmapped(h, target, key);
    if (!h->spec.map[target].exprs)
        return sync_callback(h, target, key);
    int found = 0;
    int rc = h->ops->sync_sql(h, target, key, &found);
    if (rc == DW_OK && !found)
        rc = h->ops->delete_row(h, target, key);
    return rc;
}

/* Maps what an application callback returned to a result code, with a
 * message naming the side: the codes a caller can act on (retry when busy,
 * a constraint, memory) pass through, every other failure is the
 * callback's. The message quotes what the backend kept for the failure. */
int dw__callback_failed(dw_migration *h, int side, const char *what, int cbrc)
{
    int code = cbrc == DW_ENOMEM || cbrc == DW_EBUSY || cbrc == DW_ECONSTRAINT
                   ? cbrc
                   : DW_ECALLBACK;
    const char *detail = h->ops->callback_detail(h, cbrc);
    if (!detail)
        detail = cbrc < 0 && cbrc >= DW_ECALLBACK ? dw_errstr(cbrc)
                                                  : "callback failed";
    return dw__error(h, code, side,
                     "%s side: the %s callback failed (table \"%s\"): %s "
                     "(returned %d)",
                     dw__side_word(side), what, h->spec.side[side].table,
                     detail, cbrc);
}

/* One side's write: the application's callback, or sync through the
 * mapping when there is none. */
static int write_side(dw_migration *h, int side, dw_write_fn fn,
                      const dw_value *key, int nkey, void *payload)
{
    dw_side_metrics *m = dw__side_metrics(h, side);
    uint64_t t0 = dw__now_ns();
    int rc;
    if (fn) {
        h->ops->callback_begin(h);
        int cbrc = fn(h->db, key, nkey, payload);
        rc = cbrc == 0 ? DW_OK : dw__callback_failed(h, side, "write", cbrc);
    } else {
        rc = dw__sync(h, side, key);
    }
    dw__side_latency(m, dw__now_ns() - t0);
    if (rc == DW_OK)
        m->writes++;
    else
        m->write_errors++;
    return rc;
}

/* Runs the non-authoritative side under the repair-queue policy: its own
 * savepoint, and on failure the key goes to the queue instead. */
static int write_other_or_queue(dw_migration *h, int side, dw_write_fn fn,
                                dw_key *key, void *payload)
{
    int rc = h->ops->side_savepoint(h);
    if (rc != DW_OK)
        return rc;
    rc = write_side(h, side, fn, key->v, key->n, payload);
    if (rc == DW_OK)
        return h->ops->side_release(h, 0);
    h->metrics.mirror_failures++;
    if (rc == DW_EBUSY || h->ops->side_release(h, 1) != DW_OK)
        return rc; /* nothing to keep: the whole write rolls back */
    char *error = dw__strdup(dw_errmsg(h));
    const char *key_text = dw__key_str(key);
    if (!error || !key_text) {
        dw__free(error);
        return dw__error(h, DW_ENOMEM, side, "out of memory");
    }
    rc = h->ops->repair_enqueue(h, key_text, side, error);
    dw__free(error);
    if (rc == DW_OK) {
        h->metrics.repairs_queued++;
        dw__clear_error(h);
    }
    return rc;
}

/* The common body of dw_write() and dw_mirror(), for a checked key. With
 * mirror_only the authoritative side was written by the caller. */
static int write_key(dw_migration *h, dw_key *key, dw_write_fn write_old,
                     dw_write_fn write_new, void *payload, int mirror_only)
{
    int rc;
    int scope, stage;
    rc = dw__begin(h, 1, &scope);
    if (rc != DW_OK)
        return rc;
    rc = dw__stage_current(h, &stage);
    if (rc != DW_OK)
        goto fail;
    /* The key's own stage: its override, the canary's, or the
     * migration's (no database work when no key is routed). */
    int migration_stage = stage, route;
    if ((rc = dw__route(h, key, migration_stage, &stage, &route)) != DW_OK)
        goto fail;

    /* The cohort is tested on the old row the caller already changed, so
     * when the canary and the migration trust different sides, the side
     * written is unknown: syncing from the wrong one would undo it. */
    if (mirror_only && h->route.cohort && route != DW_ROUTE_OVERRIDE &&
        dw__authoritative(h->route.canary_stage) !=
            dw__authoritative(migration_stage)) {
        rc = dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                       "dw_mirror cannot tell which model the caller wrote: "
                       "the cohort is tested on the changed old row, and "
                       "the canary (%s) and the migration (%s) trust "
                       "different models; write through dw_write()",
                       dw_stage_name(h->route.canary_stage),
                       dw_stage_name(migration_stage));
        goto fail;
    }
    int auth = dw__authoritative(stage);
    int other = dw__other_side(auth);
    int both = stage != DW_STAGE_OFF && stage != DW_STAGE_COMPLETE;
    dw_write_fn auth_fn = auth == DW_SIDE_OLD ? write_old : write_new;
    dw_write_fn other_fn = auth == DW_SIDE_OLD ? write_new : write_old;

    if (!mirror_only && !auth_fn) {
        rc = dw__error(h, DW_EMISUSE, auth,
                       "at stage %s the %s model is written first: a "
                       "%s-side write callback is required",
                       dw_stage_name(stage), dw__side_word(auth),
                       dw__side_word(auth));
        goto fail;
    }
    if (both && !other_fn && !dw__has_mapping(h, other)) {
        rc = dw__error(h, DW_EMISUSE, other,
                       "at stage %s the %s side is written too, and there is "
                       "neither a %s-side write callback nor a %s mapping",
                       dw_stage_name(stage), dw__side_word(other),
                       dw__side_word(other),
                       other == DW_SIDE_NEW ? "up" : "down");
        goto fail;
    }
    /* Before the first write: under DW_OPEN_REPAIR_QUEUE the mapping's
     * refusal would queue the key instead of failing. */
    if (both && !other_fn && (rc = dw__need_callback(h, other)) != DW_OK)
        goto fail;
    if (!mirror_only) {
        rc = write_side(h, auth, auth_fn, key->v, key->n, payload);
        if (rc != DW_OK)
            goto fail;
    }
    if (both) {
        if (h->flags & DW_OPEN_REPAIR_QUEUE) {
            rc = write_other_or_queue(h, other, other_fn, key, payload);
        } else {
            rc = write_side(h, other, other_fn, key->v, key->n, payload);
            if (rc != DW_OK)
                h->metrics.mirror_failures++;
        }
        if (rc != DW_OK)
            goto fail;
    }
    if ((h->route.promote_stage != DW_PROMOTE_NONE || h->route.cohort) &&
        (rc = dw__route_after_write(h, key, migration_stage, stage, route)) !=
            DW_OK)
        goto fail;
    rc = dw__commit(h, scope);
    if (rc == DW_OK)
        h->metrics.writes++;
    return rc;
fail:
    return dw__rollback(h, scope, rc);
}

static int do_write(dw_migration *h, const dw_value *values, int nkey,
                    dw_write_fn write_old, dw_write_fn write_new,
                    void *payload, int mirror_only)
{
    dw_key key;
    int rc = dw__key_take(h, &key, values, nkey);
    if (rc != DW_OK)
        return rc;
    rc = write_key(h, &key, write_old, write_new, payload, mirror_only);
    dw__key_free(&key);
    return rc;
}

int dw_write(dw_migration *h, const dw_value *key, int nkey,
             dw_write_fn write_old, dw_write_fn write_new, void *payload)
{
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    return do_write(h, key, nkey, write_old, write_new, payload, 0);
}

int dw_mirror(dw_migration *h, const dw_value *key, int nkey)
{
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    return do_write(h, key, nkey, NULL, NULL, NULL, 1);
}

static int count_repairs(dw_migration *h, void *out)
{
    return h->ops->repair_count(h, out);
}

int dw_repair_count(int64_t *out, dw_migration *h)
{
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    if (!out)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "dw_repair_count: out is NULL");
    return dw__in_scope(h, 0, count_repairs, out);
}
