/* Stages: names, the stored stage and its history, and the cheap check that
 * keeps the hot path from reading the stage on every call. */
#include "internal.h"

static const char *const stage_names[] = {"OFF",  "DUAL_WRITE", "SHADOW",
                                          "LIVE", "RAMPDOWN",   "COMPLETE"};

const char *dw_stage_name(int stage)
{
    return stage >= DW_STAGE_OFF && stage <= DW_STAGE_COMPLETE
               ? stage_names[stage]
               : NULL;
}

int dw_stage_parse(int *out, const char *name)
{
    if (!out || !name)
        return DW_EMISUSE;
    for (int i = DW_STAGE_OFF; i <= DW_STAGE_COMPLETE; i++)
        if (dw__stricmp(name, stage_names[i]) == 0) {
            *out = i;
            return DW_OK;
        }
    return DW_EMISUSE;
}

/* The stored stage and what comes with it, into the handle. */
static int stage_load(dw_migration *h)
{
    dw_stage_facts f = {0};
    int rc = h->ops->stage_load(h, &f);
    if (rc == DW_OK) {
        h->stage = f.stage;
        h->contracted = f.contracted;
        h->redefined = !f.spec_same;
        rc = dw__route_loaded(h, f.route.buckets, f.route.canary_stage,
                              f.route.cohort, f.route.promote_stage,
                              f.route.overrides);
    }
    dw__free(f.route.cohort);
    return rc;
}

int dw__stage_current(dw_migration *h, int *stage)
{
    if (h->stage_cached && h->ops->state_unchanged(h)) {
        *stage = h->stage;
        return DW_OK;
    }
    int rc = stage_load(h);
    if (rc == DW_OK && h->redefined)
        rc = dw__error(h, DW_ESPEC, DW_SIDE_NONE,
                       "migration \"%s\" was redefined since this handle "
                       "was opened (the stored spec is no longer its spec "
                       "%.12s); nothing was done: close this handle and "
                       "open the migration again, with the new spec or "
                       "with dw_%s_open_stored()",
                       h->spec.name, h->digest, h->ops->name);
    if (rc != DW_OK) {
        h->stage_cached = 0;
        return rc;
    }
    h->ops->state_remember(h);
    h->stage_cached = 1;
    *stage = h->stage;
    return DW_OK;
}

static int current_stage(dw_migration *h, void *out)
{
    return dw__stage_current(h, out);
}

int dw_stage_get(int *out, dw_migration *h)
{
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    if (!out)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "dw_stage_get: out is NULL");
    return dw__in_scope(h, 0, current_stage, out);
}

int dw__gate_open(dw_migration *h, int *open, char **why)
{
    dw_gate_facts g;
    *open = 0;
    *why = NULL;
    int rc = h->ops->gate_facts(h, &g);
    if (rc != DW_OK)
        return rc;
    /* The latest full verification since the backfill decides: a later
     * dirty run closes the gate an earlier clean one opened. */
    if (g.backfill == DW_BF_DONE && g.last.run_id && g.last.clean) {
        *open = 1;
        return DW_OK;
    }
    if (g.backfill == DW_BF_NONE)
        *why = dw__mprintf("no backfill has run (dw_backfill)");
    else if (g.backfill == DW_BF_RUNNING)
        *why = dw__mprintf("the backfill has not finished");
    else if (g.backfill == DW_BF_STALE)
        *why = dw__mprintf("the backfill went stale when the stage "
                           "entered OFF or COMPLETE; run it again");
    else if (!g.last.run_id)
        *why = dw__mprintf("no verification of every key since the "
                           "backfill finished (dw_verify)");
    else
        *why =
            dw__mprintf("the last verification since the backfill "
                        "(run %lld) found %lld missing, %lld extra "
                        "and %lld different keys",
                        (long long)g.last.run_id, (long long)g.last.missing,
                        (long long)g.last.extra, (long long)g.last.different);
    return *why ? DW_OK : dw__error(h, DW_ENOMEM, DW_SIDE_NONE,
                                    "out of memory");
}

/* The gate of a move back to trusting the old model: closed while the old
 * model may lack writes made at COMPLETE (no backfill, which at RAMPDOWN
 * or LIVE copies from the new model, has finished since). A clean
 * verification is not required, so that flipping back at the first sign of
 * trouble in the new model stays a plain move. */
static int old_model_gate(dw_migration *h, int *open, char **why)
{
    dw_gate_facts g;
    int rc = h->ops->gate_facts(h, &g);
    if (rc != DW_OK)
        return rc;
    *open = !g.old_behind;
    if (*open)
        return DW_OK;
    *why = dw__mprintf("the old model missed the writes made at "
                       "COMPLETE and no backfill has finished since "
                       "(at RAMPDOWN or LIVE, dw_backfill copies from "
                       "the new model)");
    return *why ? DW_OK : dw__error(h, DW_ENOMEM, DW_SIDE_NONE,
                                    "out of memory");
}

/* Checks a move and stores it with its history entry. */
static int move_stage(dw_migration *h, int stage, const char *reason,
                      unsigned int flags)
{
    int from = 0, force = (flags & DW_STAGE_FORCE) != 0;
    int rc = dw__stage_current(h, &from);
    if (rc != DW_OK || stage == from)
        return rc;
    if (h->contracted)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "the old model of %s was dropped by the contract; "
                         "it stays at COMPLETE until dw_restore() puts the "
                         "old model back",
                         h->spec.name);
    if (stage > from + 1 && !force)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "moving %s from %s to %s skips a stage; move one "
                         "stage at a time or pass DW_STAGE_FORCE",
                         h->spec.name, dw_stage_name(from),
                         dw_stage_name(stage));
    int forced = stage > from + 1;
    char *detail = NULL;
    int open = 1;
    char *why = NULL;
    /* The gates sit before LIVE and before COMPLETE; a forced jump over
     * one still passes it. Going back to trusting the old model has its
     * own gate: the old model must not have missed writes at COMPLETE. */
    if (stage > from && (stage == DW_STAGE_COMPLETE ||
                         (from < DW_STAGE_LIVE && stage >= DW_STAGE_LIVE)))
        rc = dw__gate_open(h, &open, &why);
    else if (dw__authoritative(from) == DW_SIDE_NEW &&
             dw__authoritative(stage) == DW_SIDE_OLD)
        rc = old_model_gate(h, &open, &why);
    if (rc != DW_OK)
        return rc;
    if (!open && !force) {
        rc = dw__error(h, DW_EGATE, DW_SIDE_NONE,
                       "the gate into %s is closed for %s: %s; or pass "
                       "DW_STAGE_FORCE with a reason",
                       dw_stage_name(stage), h->spec.name, why);
        dw__free(why);
        return rc;
    }
    if (!open && (!reason || !reason[0])) {
        dw__free(why);
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "forcing %s into %s past a closed gate needs a "
                         "reason",
                         h->spec.name, dw_stage_name(stage));
    }
    if (!open) {
        forced = 1;
        detail = dw__mprintf("gate forced: %s", why);
        dw__free(why);
        if (!detail)
            return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    }
    if (flags & DW_STAGE_CHECK) {
        dw__free(detail);
        return DW_OK;
    }
    /* Dependent data first, then dual writes (DESIGN: the new model's
     * writes may need it from the first one). */
    if (from == DW_STAGE_OFF && stage != DW_STAGE_OFF &&
        (rc = h->ops->run_setup(h)) != DW_OK) {
        dw__free(detail);
        return rc;
    }
    rc = h->ops->stage_store(h, from, stage, reason, forced, detail);
    dw__free(detail);
    if (rc == DW_OK) {
        h->stage = stage;
        h->ops->state_remember(h);
    }
    return rc;
}

int dw_stage_set(dw_migration *h, int stage, const char *reason,
                 unsigned int flags)
{
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    if (!dw_stage_name(stage))
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "%d is not a stage (0 to 5)", stage);
    if (flags & ~(unsigned int)(DW_STAGE_FORCE | DW_STAGE_CHECK))
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "unknown flags 0x%x for dw_stage_set", flags);
    int scope;
    int rc = dw__begin(h, !(flags & DW_STAGE_CHECK), &scope);
    if (rc != DW_OK)
        return rc;
    rc = move_stage(h, stage, reason, flags);
    if (rc == DW_OK)
        rc = dw__commit(h, scope);
    else
        rc = dw__rollback(h, scope, rc);
    if (rc != DW_OK)
        h->stage_cached = 0;
    return rc;
}

typedef struct history_args {
    dw_history_fn fn;
    void *payload;
} history_args;

static int list_history(dw_migration *h, void *arg)
{
    history_args *a = arg;
    return h->ops->history(h, a->fn, a->payload);
}

int dw_history(dw_migration *h, dw_history_fn fn, void *payload)
{
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    if (!fn)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "dw_history: no callback");
    history_args a = {fn, payload};
    return dw__in_scope(h, 0, list_history, &a);
}
