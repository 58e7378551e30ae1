/* Repair: sync(key) from the authoritative side for chosen keys, for the
 * keys the last verification found divergent, and for the repair queue. */
#include <string.h>

#include "internal.h"

/* Keys taken from a stored list per transaction. */
#define REPAIR_BATCH 256

int dw__sync_guarded(dw_migration *h, int target, const dw_value *key,
                     int *kept)
{
    *kept = 0;
    int rc = h->ops->side_savepoint(h);
    if (rc != DW_OK)
        return rc;
    rc = dw__sync(h, target, key);
    int release = h->ops->side_release(h, rc != DW_OK);
    if (rc != DW_OK) {
        *kept = release != DW_OK; /* the failed sync could not be undone */
        return rc;
    }
    /* A sync whose release failed is a failure: undo it, or the key would
     * be queued again (or counted failed) with its sync kept. */
    if (release != DW_OK) {
        dw_error_stash saved;
        dw__error_stash(h, &saved);
        *kept = h->ops->side_release(h, 1) != DW_OK;
        dw__error_unstash(h, &saved);
    }
    return release;
}

/* The migration's stage, after checking there are two models and the
 * mapping the repairs would use (either one when keys are routed), before
 * any key is touched. */
static int repair_stage(dw_migration *h, int *stage)
{
    int rc = dw__stage_current(h, stage);
    if (rc == DW_OK)
        rc = dw__need_two_models(h, *stage, "a repair");
    if (rc == DW_OK)
        rc = dw__need_callback(h, dw__route_active(h)
                                      ? DW_SIDE_NONE
                                      : dw__other_side(
                                            dw__authoritative(*stage)));
    return rc;
}

/* The side a repair of this key writes: the one its own stage does not
 * trust. */
static int repair_target(dw_migration *h, int stage, const dw_value *key,
                         int *target)
{
    int eff;
    int rc = dw__key_route(h, key, stage, &eff, NULL);
    if (rc == DW_OK)
        *target = dw__other_side(dw__authoritative(eff));
    return rc;
}


typedef struct keys_args {
    const dw_value *keys;
    int nkey, count;
} keys_args;

static int repair_each(dw_migration *h, void *arg)
{
    keys_args *a = arg;
    int stage, target;
    int rc = repair_stage(h, &stage);
    for (int i = 0; rc == DW_OK && i < a->count; i++) {
        const dw_value *key = a->keys + (size_t)i * (size_t)a->nkey;
        rc = repair_target(h, stage, key, &target);
        if (rc == DW_OK)
            rc = dw__sync(h, target, key);
        if (rc != DW_OK) {
            dw_buf b;
            dw_buf_init(&b);
            dw__key_text(&b, key, a->nkey);
            if (!b.oom)
                dw__error_append(h, " (repairing key %s)", b.p);
            dw_buf_free(&b);
        }
    }
    return rc;
}

int dw_repair_keys(dw_repair_result *out, dw_migration *h,
                   const dw_value *keys, int nkey, int count)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    if (count < 0 || (count > 0 && !keys))
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "dw_repair_keys: %s",
                         count < 0 ? "count is negative" : "keys is NULL");
    for (int i = 0; i < count; i++) {
        int rc = dw__check_key(h, keys + (size_t)i * (size_t)nkey, nkey);
        if (rc != DW_OK)
            return rc;
    }
    keys_args a = {keys, nkey, count};
    int rc = dw__in_scope(h, 1, repair_each, &a);
    if (rc == DW_OK && out)
        out->repaired = count;
    return rc;
}

/* ---- repairs driven by a stored list ------------------------------------ */

typedef struct list_run {
    int queue; /* the repair queue, else the divergent keys */
    char *keys[REPAIR_BATCH];
    int nkeys;
    char *after;
    dw_repair_result res;
    int first_code;
    char *first_msg;
} list_run;

static int collect(dw_migration *h, const char *key, void *arg)
{
    list_run *l = arg;
    if (!(l->keys[l->nkeys] = dw__strdup(key)))
        return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    l->nkeys++;
    return DW_OK;
}

static void drop_keys(list_run *l)
{
    for (int i = 0; i < l->nkeys; i++)
        dw__free(l->keys[i]);
    l->nkeys = 0;
}

/* One key of the list: synced and struck off, or left with its error. */
static int repair_listed(dw_migration *h, list_run *l, int stage,
                         const char *text)
{
    dw_value *key = NULL;
    int target = DW_SIDE_NONE, kept = 0;
    int rc = dw__stored_key(h, text, &key);
    if (rc == DW_OK)
        rc = repair_target(h, stage, key, &target);
    if (rc == DW_OK)
        rc = dw__sync_guarded(h, target, key, &kept);
    dw__free(key);
    if (rc == DW_OK) {
        l->res.repaired++;
        return l->queue ? h->ops->queue_remove(h, text)
                        : h->ops->divergent_done(h, text);
    }
    /* Busy, SQLite gave up the whole transaction, or the failed sync could
     * not be undone (the batch must go whole): stop here. */
    if (rc == DW_EBUSY || kept || !h->ops->in_transaction(h))
        return rc;
    dw__error_append(h, " (repairing key %s)", text);
    l->res.failed++;
    if (!l->first_msg) {
        l->first_code = rc;
        l->first_msg = dw__strdup(dw_errmsg(h));
    }
    /* With the target unknown (the key did not parse), the queue keeps the
     * side it holds. */
    if (l->queue)
        return h->ops->repair_enqueue(h, text, target, dw_errmsg(h));
    return DW_OK;
}

static int list_batch(dw_migration *h, void *arg)
{
    list_run *l = arg;
    int stage;
    int rc = repair_stage(h, &stage);
    if (rc == DW_OK)
        rc = l->queue ? h->ops->queue_list(h, l->after, REPAIR_BATCH,
                                           collect, l)
                      : h->ops->divergent_list(h, l->after, REPAIR_BATCH,
                                               collect, l);
    for (int i = 0; rc == DW_OK && i < l->nkeys; i++)
        rc = repair_listed(h, l, stage, l->keys[i]);
    return rc;
}

static int repair_list(dw_repair_result *out, dw_migration *h, int queue,
                       const char *what)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    int rc = dw__need_autocommit(h, what);
    if (rc != DW_OK)
        return rc;
    list_run l;
    memset(&l, 0, sizeof l);
    l.queue = queue;
    for (;;) {
        dw_repair_result before = l.res;
        rc = dw__in_scope(h, 1, list_batch, &l);
        if (rc != DW_OK) {
            l.res = before; /* rolled back */
            drop_keys(&l);
            break;
        }
        int more = l.nkeys == REPAIR_BATCH;
        if (more) {
            dw__free(l.after);
            l.after = l.keys[l.nkeys - 1];
            l.keys[l.nkeys - 1] = NULL;
        }
        drop_keys(&l);
        if (!more)
            break;
    }
    if (rc == DW_OK && l.first_msg)
        rc = dw__error(h, l.first_code, DW_SIDE_NONE,
                       "%s; %lld keys repaired, %lld failed and stay listed",
                       l.first_msg, (long long)l.res.repaired,
                       (long long)l.res.failed);
    else if (rc == DW_OK && l.res.failed)
        rc = dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    dw__free(l.first_msg);
    dw__free(l.after);
    if (out)
        *out = l.res;
    return rc;
}

int dw_repair_divergent(dw_repair_result *out, dw_migration *h)
{
    return repair_list(out, h, 0, "dw_repair_divergent");
}

int dw_repair_queue(dw_repair_result *out, dw_migration *h)
{
    return repair_list(out, h, 1, "dw_repair_queue");
}
