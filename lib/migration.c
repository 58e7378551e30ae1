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

/* A stored spec other than the handle's: the core compares them, and
 * stores the handle's when asked to redefine (in a write scope). */
static int spec_kept(dw_migration *h, const dw_stored_facts *f,
                     const char *text, int write, int redefine,
                     const char *reason)
{
    if (!f->spec)
        return DW_OK;
    int same = 0;
    int rc = dw__compare_stored(h, f->digest, f->spec, text, redefine, &same);
    if (rc != DW_OK || same)
        return rc;
    /* dw_open()'s read-only attempt stores nothing. */
    if (!write)
        return DW__NEED_WRITE;
    return h->ops->migration_redefine(h, text, h->digest, reason, h->stage);
}

/* The migration as stored, into the handle; without `define`, a name not
 * stored yet is DW_ENOTFOUND (nothing stored, no message) instead of a
 * definition. */
static int migration_load(dw_migration *h, const char *text, int write,
                          int redefine, int define, const char *reason)
{
    dw_stored_facts f = {0};
    int rc = h->ops->migration_find(h, h->digest, &f);
    if (rc == DW_OK) {
        h->id = f.id;
        h->stage = f.stage;
        h->contracted = f.contracted;
        rc = spec_kept(h, &f, text, write, redefine, reason);
    } else if (rc == DW_ENOTFOUND && define && !write) {
        rc = DW__NEED_WRITE;
    } else if (rc == DW_ENOTFOUND && define) {
        int64_t id = 0;
        rc = h->ops->migration_define(h, text, h->digest, reason, &id);
        h->id = id;
        h->stage = DW_STAGE_OFF;
    }
    dw__free(f.spec);
    return rc;
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
            *errmsg = dw__mprintf("dw_%s_open: %s is NULL", drv->name,
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
        rc = dw__begin(h, write, &scope);
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
            rc = migration_load(h, text, write,
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
            rc = dw__commit(h, scope);
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
        dw__settle(h);
    set_errmsg(errmsg, h, rc);
    dw_close(h);
    return rc;
}

void dw_close(dw_migration *h)
{
    if (!h)
        return;
    /* Nobody is left to end it later. */
    if (h->ops) {
        dw__settle(h);
        h->ops->detach(h);
    }
    dw__spec_free(&h->spec);
    dw__route_free(h);
    dw_name_set_free(&h->redact);
    dw_name_set_free(&h->ignore);
    for (int i = 0; i < h->ropts.nignore_columns; i++)
        dw__free((char *)h->ropts.ignore_columns[i]);
    dw__free((void *)h->ropts.ignore_columns);
    dw_row_free(h->scratch[0]);
    dw_row_free(h->scratch[1]);
    dw_row_free(h->mapped);
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
    int rc = dw__begin(h, write, &scope);
    if (rc != DW_OK)
        return rc;
    rc = fn(h, arg);
    if (rc == DW_OK)
        rc = dw__commit(h, scope);
    else
        rc = dw__rollback(h, scope, rc);
    return rc;
}
