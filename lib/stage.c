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
        if (sqlite3_stricmp(name, stage_names[i]) == 0) {
            *out = i;
            return DW_OK;
        }
    return DW_EMISUSE;
}

int dw__stage_current(dw_migration *h, int *stage)
{
    if (h->stage_cached && h->ops->state_unchanged(h)) {
        *stage = h->stage;
        return DW_OK;
    }
    int rc = h->ops->stage_load(h, &h->stage);
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

int dw_stage_set(dw_migration *h, int stage, const char *reason,
                 unsigned int flags)
{
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    if (!dw_stage_name(stage))
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "%d is not a stage (0 to 5)", stage);
    if (flags & ~(unsigned int)DW_STAGE_FORCE)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "unknown flags 0x%x for dw_stage_set", flags);
    int scope, from = 0;
    int rc = h->ops->begin(h, 1, &scope);
    if (rc != DW_OK)
        return rc;
    rc = dw__stage_current(h, &from);
    if (rc == DW_OK && stage > from + 1 && !(flags & DW_STAGE_FORCE))
        rc = dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                       "moving %s from %s to %s skips a stage; move one stage "
                       "at a time or pass DW_STAGE_FORCE",
                       h->spec.name, dw_stage_name(from), dw_stage_name(stage));
    if (rc == DW_OK && stage != from) {
        int forced = stage > from + 1;
        rc = h->ops->stage_store(h, from, stage, reason, forced);
        if (rc == DW_OK) {
            h->stage = stage;
            h->ops->state_remember(h);
        }
    }
    if (rc == DW_OK)
        rc = h->ops->commit(h, scope);
    else
        h->ops->rollback(h, scope);
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
