/* Opening and closing a migration handle. */
#include <string.h>

#include "internal.h"

#define DEFAULT_LOG_CAP 1000

static void set_errmsg(char **errmsg, const dw_migration *h, int rc)
{
    if (!errmsg)
        return;
    *errmsg = dw__mprintf("%s", h ? dw_errmsg(h) : dw_errstr(rc));
}

int dw__open(dw_migration **out, const dw_driver *drv, void *conn,
             const dw_options *opts, int stored_only, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (!out) {
        set_errmsg(errmsg, NULL, DW_EMISUSE);
        return DW_EMISUSE;
    }
    *out = NULL;
    if (!conn || !opts) {
        if (errmsg)
            *errmsg = dw__mprintf("dw_open: %s is NULL",
                                  !conn ? "the connection" : "the options");
        return DW_EMISUSE;
    }
    dw_migration *h = dw__calloc(sizeof *h);
    if (!h) {
        set_errmsg(errmsg, NULL, DW_ENOMEM);
        return DW_ENOMEM;
    }
    h->db = conn;
    h->ops = drv->ops;
    h->flags = opts->flags;
    h->log_cap = opts->log_cap > 0 ? opts->log_cap : DEFAULT_LOG_CAP;
    h->mismatch_fn = opts->mismatch_fn;
    h->mismatch_payload = opts->mismatch_payload;
    dw_read_options defaults = DW_READ_OPTIONS_INIT;
    h->ropts = defaults;
    h->metrics.version = DW_METRICS_VERSION;
    h->route.promote_stage = DW_PROMOTE_NONE;
    h->rng = dw__random_seed(h);

    int rc = dw__spec_copy(h, opts);
    /* A spec read as JSON whose mappings are C callbacks (dw_open_json())
     * opens what is stored, never more: only the application that has
     * the callbacks knows what they do. */
    int bound = !dw__unbound(h, DW_SIDE_NONE);
    if (rc == DW_OK && !bound && (h->flags & DW_OPEN_REDEFINE))
        rc = dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                       "migration \"%s\": a spec whose mappings are C "
                       "callbacks is redefined by the application that has "
                       "the callbacks, with dw_%s_open() and "
                       "DW_OPEN_REDEFINE",
                       h->spec.name, h->ops->name);
    if (rc == DW_OK)
        rc = h->ops->attach(h);
    if (rc != DW_OK) {
        if (rc == DW_ENOMEM && !h->errmsg)
            dw__error(h, rc, DW_SIDE_NONE, "out of memory");
        goto fail;
    }

    /* Creating the state tables, checking the spec and storing it is one
     * transaction: a failure leaves nothing behind. It is first tried in a
     * read scope, which opens a migration already stored with this spec
     * without the write lock; a step that would write (state tables to
     * create or upgrade, a spec to store) answers DW__NEED_WRITE, and the
     * whole open starts over in a write scope, on what is there then. */
    for (int write = 0; write <= 1; write++) {
        int scope;
        rc = h->ops->begin(h, write, &scope);
        if (rc != DW_OK)
            break;
        rc = h->ops->state_init(h);
        if (rc == DW_OK)
            rc = h->ops->migration_peek(h, &h->contracted);
        if (rc == DW_OK)
            rc = dw__validate(h);
        char *text = NULL;
        if (rc == DW_OK) {
            text = dw__spec_text(&h->spec);
            if (!text)
                rc = dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
        }
        if (rc == DW_OK) {
            dw__text_digest(text, h->digest);
            rc = h->ops->migration_load(h, text, h->digest,
                                        (h->flags & DW_OPEN_REDEFINE) != 0,
                                        bound && !stored_only, opts->reason);
            if (rc == DW_ENOTFOUND && stored_only)
                rc = dw__error(h, DW_ENOTFOUND, DW_SIDE_NONE,
                               "no migration named \"%s\" in this database",
                               h->spec.name);
            else if (rc == DW_ENOTFOUND)
                rc = dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                               "migration \"%s\" is not stored in this "
                               "database, and its spec maps rows with C "
                               "callbacks: it must be defined by the "
                               "application that has the callbacks, with "
                               "dw_%s_open()",
                               h->spec.name, h->ops->name);
        }
        dw__free(text);
        if (rc == DW__NEED_WRITE && write)
            rc = dw__error(h, DW_ERROR, DW_SIDE_NONE,
                           "internal: a write scope asked for a write "
                           "scope");
        if (rc == DW_OK)
            rc = h->ops->commit(h, scope);
        else
            rc = dw__rollback(h, scope, rc);
        if (rc != DW__NEED_WRITE)
            break;
    }
    if (rc != DW_OK)
        goto fail;
    dw__clear_error(h);
    *out = h;
    return DW_OK;

fail:
    /* The handle goes: what it left open is ended now, if it can be. */
    if (h->left_open)
        h->ops->settle(h);
    set_errmsg(errmsg, h, rc);
    dw_close(h);
    return rc;
}

void dw_close(dw_migration *h)
{
    if (!h)
        return;
    if (h->ops)
        h->ops->detach(h);
    dw__spec_free(&h->spec);
    dw__route_free(h);
    dw_name_set_free(&h->redact);
    dw_name_set_free(&h->ignore);
    for (int i = 0; i < h->ropts.nignore_columns; i++)
        dw__free((char *)h->ropts.ignore_columns[i]);
    dw__free((void *)h->ropts.ignore_columns);
    dw_row_free(h->scratch[0]);
    dw_row_free(h->scratch[1]);
    dw__free(h->errmsg);
    dw__free(h);
}

const char *dw_name(const dw_migration *h) { return h ? h->spec.name : NULL; }

const char *dw_spec_digest(const dw_migration *h)
{
    return h ? h->digest : NULL;
}

int dw__in_scope(dw_migration *h, int write, int (*fn)(dw_migration *, void *),
                 void *arg)
{
    int scope;
    int rc = h->ops->begin(h, write, &scope);
    if (rc != DW_OK)
        return rc;
    rc = fn(h, arg);
    if (rc == DW_OK)
        rc = h->ops->commit(h, scope);
    else
        rc = dw__rollback(h, scope, rc);
    return rc;
}
