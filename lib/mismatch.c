/* Reporting a mismatch: to the application's sink, to the de-duplicated and
 * capped log table, and to stderr for development -- redacted by default. */
#include <stdio.h>

#include "internal.h"

void dw__detail_line(dw_buf *b, const dw_outcome *o)
{
    if (o->kind == DW_MISMATCH_MISSING_NEW) {
        dw_buf_puts(b, "row missing on the new side");
        return;
    }
    if (o->kind == DW_MISMATCH_EXTRA_NEW) {
        dw_buf_puts(b, "row only on the new side");
        return;
    }
    for (int i = 0; i < o->ndiffs; i++) {
        const dw_diff *d = &o->diffs[i];
        dw_buf_printf(b, "%s%s: old=%s new=%s", i ? "; " : "", d->column,
                      d->old_desc, d->new_desc);
    }
}

void dw__mismatch_view(dw_mismatch *m, const dw_migration *h,
                       const char *key_text, const dw_outcome *o)
{
    m->migration = h->spec.name;
    m->key = key_text;
    m->kind = o->kind;
    m->digest = o->digest;
    m->diffs = o->diffs;
    m->ndiffs = o->ndiffs;
}

void dw__report(dw_migration *h, dw_key *key, const dw_outcome *o)
{
    dw_buf detail;
    dw_buf_init(&detail);
    const char *key_text = dw__key_str(key);
    dw__detail_line(&detail, o);
    if (!key_text || detail.oom) {
        h->metrics.log_errors++;
        goto done;
    }
    if (h->mismatch_fn) {
        dw_mismatch m;
        dw__mismatch_view(&m, h, key_text, o);
        h->mismatch_fn(&m, h->mismatch_payload);
    }
    if (h->flags & DW_OPEN_LOG_STDERR)
        fprintf(stderr, "libdualwrite: mismatch in %s at key %s: %s\n",
                h->spec.name, key_text, detail.p);
    if (!(h->flags & DW_OPEN_NO_LOG_TABLE)) {
        /* The log write must never change what the read returned: a
         * failure here is counted, not reported. */
        dw_error_stash saved;
        dw__error_stash(h, &saved);
        int scope;
        int rc = dw__begin(h, 1, &scope);
        if (rc == DW_OK) {
            rc = h->ops->log_mismatch(h, key_text, o->digest, o->kind,
                                      detail.p);
            if (rc >= 0)
                rc = dw__commit(h, scope);
            else
                rc = dw__rollback(h, scope, rc);
        }
        if (rc != DW_OK)
            h->metrics.log_errors++;
        /* Except when it lost the caller's transaction: that the caller
         * must hear (dw__txn_lost_rc()). */
        if (h->txn_lost)
            dw__free(saved.msg);
        else
            dw__error_unstash(h, &saved);
    }
done:
    dw_buf_free(&detail);
}

typedef struct list_args {
    int limit;
    dw_mismatch_entry_fn fn;
    void *payload;
    int64_t *entries, *dropped;
} list_args;

static int do_list(dw_migration *h, void *arg)
{
    list_args *a = arg;
    return h->ops->log_list(h, a->limit, a->fn, a->payload);
}

static int do_count(dw_migration *h, void *arg)
{
    list_args *a = arg;
    int64_t e = 0, d = 0;
    int rc = h->ops->log_count(h, &e, &d);
    if (a->entries)
        *a->entries = e;
    if (a->dropped)
        *a->dropped = d;
    return rc;
}

static int do_clear(dw_migration *h, void *arg)
{
    (void)arg;
    return h->ops->log_clear(h);
}

int dw_mismatch_log(dw_migration *h, int limit, dw_mismatch_entry_fn fn,
                    void *payload)
{
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    if (!fn)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "dw_mismatch_log: no callback");
    list_args a = {limit, fn, payload, NULL, NULL};
    return dw__in_scope(h, 0, do_list, &a);
}

int dw_mismatch_log_count(int64_t *entries, int64_t *dropped, dw_migration *h)
{
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    list_args a = {0, NULL, NULL, entries, dropped};
    return dw__in_scope(h, 0, do_count, &a);
}

int dw_mismatch_log_clear(dw_migration *h)
{
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    return dw__in_scope(h, 1, do_clear, NULL);
}
