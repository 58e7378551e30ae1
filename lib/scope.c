/* The transaction scope policy: what the facts a backend reports of its
 * transactions mean for the call. The caller's transaction gone is
 * DW_EROLLEDBACK (and the next call outside any transaction is refused
 * once); a transaction or savepoint of ours that could not be rolled back
 * is DW_ENOMEM, dw_errmsg() saying it is still open, until a later call
 * ends it. */
#include "internal.h"

/* Runs the backend's rollback or settle (`end`) of scope or what was left
 * (`what`), keeping the handle's error -- the one that made us roll back
 * -- and makes rc what the facts it reports say. */
static int ended(dw_migration *h,
                 void (*end)(dw_migration *, int, dw_txn_facts *), int what,
                 int rc)
{
    dw_error_stash saved;
    dw__error_stash(h, &saved);
    dw_txn_facts f = {0, 0, 0};
    end(h, what, &f);
    dw__error_unstash(h, &saved);
    if (f.caller_gone)
        dw__txn_lost(h);
    if (f.left_open)
        h->left_open = f.left_open;
    return dw__left_open_rc(h, dw__txn_lost_rc(h, rc));
}

int dw__rollback(dw_migration *h, int scope, int rc)
{
    return ended(h, h->ops->rollback, scope, rc);
}

int dw__settle(dw_migration *h)
{
    int left = h->left_open;
    if (!left)
        return DW_OK;
    h->left_open = 0;
    return ended(h, h->ops->settle, left, DW_OK);
}

int dw__begin(dw_migration *h, int write, int *scope)
{
    *scope = 0;
    int rc = dw__settle(h);
    if (rc == DW_OK)
        rc = dw__txn_lost_refuse(h, !h->ops->in_transaction(h));
    if (rc != DW_OK)
        return rc;
    h->scope_write = write;
    rc = h->ops->begin(h, write, scope);
    if (rc != DW_OK && *scope)
        rc = dw__rollback(h, *scope, rc);
    if (rc != DW_OK)
        *scope = 0;
    return rc;
}

int dw__commit(dw_migration *h, int scope)
{
    dw_txn_facts f = {0, 0, 0};
    int rc = h->ops->commit(h, scope, &f);
    if (f.caller_gone)
        return dw__txn_lost(h);
    /* A read keeps what it read; a write has nothing left to keep. */
    if (f.scope_gone)
        return !h->scope_write
                   ? DW_OK
                   : dw__error(h, DW_ERROR, DW_SIDE_NONE,
                               "the database rolled back the transaction "
                               "during the operation; nothing was applied");
    return rc == DW_OK ? DW_OK : dw__rollback(h, scope, rc);
}

int dw__idle(dw_migration *h)
{
    return h->stage_cached && !h->left_open && !h->txn_lost &&
           h->ops->idle(h);
}
