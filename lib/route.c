/* Key routing: the effective stage of a key (override, else canary, else
 * the migration's stage), moving keys between stages with sync(key), the
 * canary and promotion settings, and where the keys stand. */
#include <string.h>

#include "internal.h"

/* The sides a stage writes, as bits (1 << side). */
static unsigned written(int stage)
{
    unsigned m = 0;
    if (stage <= DW_STAGE_RAMPDOWN)
        m |= 1u << DW_SIDE_OLD;
    if (stage >= DW_STAGE_DUAL_WRITE)
        m |= 1u << DW_SIDE_NEW;
    return m;
}

static int canary_on(const dw_route_state *r)
{
    return r->buckets > 0 || r->cohort != NULL;
}

int dw__route_active(const dw_migration *h)
{
    return !h->contracted && (h->route.overrides > 0 || canary_on(&h->route));
}

int dw__route_canary_stage(const dw_migration *h)
{
    return canary_on(&h->route) ? h->route.canary_stage : -1;
}

int dw__route_loaded(dw_migration *h, int buckets, int canary_stage,
                     const char *cohort, int promote_stage, int64_t overrides)
{
    dw_route_state *r = &h->route;
    r->buckets = buckets;
    r->canary_stage = canary_stage;
    r->promote_stage = promote_stage;
    r->overrides = overrides;
    if (cohort && !*cohort)
        cohort = NULL;
    if (r->cohort && cohort && strcmp(r->cohort, cohort) == 0)
        return DW_OK;
    char *copy = NULL;
    if (cohort && !(copy = dw__strdup(cohort)))
        return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    dw__free(r->cohort);
    r->cohort = copy;
    return DW_OK;
}

void dw__route_free(dw_migration *h)
{
    dw__free(h->route.cohort);
    h->route.cohort = NULL;
}

/* ---- buckets --------------------------------------------------------------- */

static int bucket_of(const char *text, size_t n)
{
    dw_sha256 s;
    unsigned char d[32];
    dw_sha256_init(&s);
    dw_sha256_update(&s, text, n);
    dw_sha256_final(&s, d);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | d[i];
    return (int)(v % DW_BUCKETS);
}

static int key_values_ok(const dw_value *key, int nkey)
{
    for (int i = 0; i < nkey; i++)
        if (dw__key_value_problem(&key[i]))
            return 0;
    return 1;
}

int dw_key_bucket(int *out, const dw_value *key, int nkey)
{
    if (!out || !key || nkey < 1 || !key_values_ok(key, nkey))
        return DW_EMISUSE;
    dw_buf b;
    dw_buf_init(&b);
    dw__key_text(&b, key, nkey);
    if (b.oom) {
        dw_buf_free(&b);
        return DW_ENOMEM;
    }
    *out = bucket_of(b.p, b.len);
    dw_buf_free(&b);
    return DW_OK;
}

/* ---- the effective stage ------------------------------------------------------ */

/* The key's text for an override or its bucket, or DW_ENOMEM. */
static int key_text_of(dw_migration *h, dw_key *key, const char **text)
{
    *text = dw__key_str(key);
    return *text ? DW_OK
                 : dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
}

/* The key's stage without its override: the canary's or the migration's. */
static int base_route(dw_migration *h, dw_key *key, int stage, int *eff,
                      int *route)
{
    const dw_route_state *r = &h->route;
    int member = 0, rc = DW_OK;
    const char *text;
    if (r->buckets > 0 && (rc = key_text_of(h, key, &text)) == DW_OK)
        member = bucket_of(text, key->text.len) < r->buckets;
    if (rc == DW_OK && !member && r->cohort)
        rc = h->ops->cohort_member(h, r->cohort, key->v, &member);
    if (rc != DW_OK)
        return rc;
    *eff = member ? r->canary_stage : stage;
    *route = member ? DW_ROUTE_CANARY : DW_ROUTE_MIGRATION;
    return DW_OK;
}

int dw__route(dw_migration *h, dw_key *key, int stage, int *eff, int *route)
{
    int ignored;
    if (!route)
        route = &ignored;
    *eff = stage;
    *route = DW_ROUTE_MIGRATION;
    if (!dw__route_active(h))
        return DW_OK;
    if (h->route.overrides > 0) {
        const char *text;
        int rc = key_text_of(h, key, &text);
        if (rc == DW_OK)
            rc = h->ops->override_get(h, text, eff, NULL);
        if (rc == DW_OK) {
            *route = DW_ROUTE_OVERRIDE;
            return DW_OK;
        }
        *eff = stage;
        if (rc != DW_ENOTFOUND)
            return rc;
    }
    return canary_on(&h->route) ? base_route(h, key, stage, eff, route)
                                : DW_OK;
}

int dw__key_route(dw_migration *h, const dw_value *key, int stage, int *eff,
                  int *route)
{
    dw_key k;
    dw__key_init(&k, key, h->spec.side[DW_SIDE_OLD].nkey);
    int rc = dw__route(h, &k, stage, eff, route);
    dw__key_free(&k);
    return rc;
}

/* Moves a key from stage `from` to `to`: when `from` trusts one side and
 * `to` writes the other, that side is made equal to the trusted row. */
static int move_key(dw_migration *h, dw_key *key, int from, int to)
{
    int target = dw__other_side(dw__authoritative(from));
    if (from == to || !(written(to) & (1u << target)))
        return DW_OK;
    int rc = dw__sync(h, target, key->v);
    const char *text = rc != DW_OK ? dw__key_str(key) : NULL;
    if (text)
        dw__error_append(h, " (moving key %s from %s to %s)", text,
                         dw_stage_name(from), dw_stage_name(to));
    return rc;
}

/* Stores the in-memory override count with the routing settings. */
static int bump_overrides(dw_migration *h, int64_t delta)
{
    if (!delta)
        return DW_OK;
    int rc = h->ops->overrides_bump(h, delta);
    if (rc == DW_OK) {
        h->route.overrides += delta;
        h->ops->state_remember(h);
    }
    return rc;
}

int dw__route_after_write(dw_migration *h, dw_key *key, int stage, int eff,
                          int route)
{
    int promote = h->route.promote_stage;
    if (h->contracted || route == DW_ROUTE_OVERRIDE)
        return DW_OK;
    if (promote != DW_PROMOTE_NONE && eff < promote) {
        const char *text;
        int rc = key_text_of(h, key, &text);
        if (rc == DW_OK)
            rc = move_key(h, key, eff, promote);
        if (rc == DW_OK)
            rc = h->ops->override_put(h, text, promote, 1);
        return rc == DW_OK ? bump_overrides(h, 1) : rc;
    }
    if (!h->route.cohort)
        return DW_OK;
    /* The write may have moved the old row into or out of the cohort. */
    int now;
    int rc = dw__route(h, key, stage, &now, NULL);
    return rc == DW_OK ? move_key(h, key, eff, now) : rc;
}

/* ---- overrides ------------------------------------------------------------------ */

/* While the migration is at OFF no setup SQL has run; keys routed to a
 * stage that writes the new model need its dependent data first, as the
 * migration leaving OFF would. */
static int setup_before_new_writes(dw_migration *h, int stage, int to)
{
    if (stage != DW_STAGE_OFF || !(written(to) & (1u << DW_SIDE_NEW)))
        return DW_OK;
    return h->ops->run_setup(h);
}

typedef struct override_args {
    const dw_value *keys;
    int nkey, count, stage, clear;
    const char *reason;
    int changed;
} override_args;

/* Routing changes need the old model, and keys one spelling each: a
 * collation that makes "ANN" and "ann" one row would give it two texts,
 * two overrides and two buckets. */
static int need_old_model(dw_migration *h, const char *what)
{
    if (h->keys_fold)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "%s: a key column of %s has a collation other than "
                         "BINARY, so one row has several key spellings; "
                         "routing needs BINARY keys",
                         what, h->spec.name);
    if (!h->contracted)
        return DW_OK;
    return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                     "%s needs the old model of %s, which the contract "
                     "dropped; dw_restore() puts it back",
                     what, h->spec.name);
}

static int override_one(dw_migration *h, override_args *a, int stage,
                        dw_key *key)
{
    int from, to, route;
    const char *text;
    int rc = dw__route(h, key, stage, &from, &route);
    if (rc != DW_OK || (a->clear && route != DW_ROUTE_OVERRIDE))
        return rc;
    if ((rc = key_text_of(h, key, &text)) != DW_OK)
        return rc;
    if (a->clear) {
        int deleted = 0;
        rc = h->ops->override_delete(h, text, &deleted);
        if (rc != DW_OK)
            return rc;
        /* The key follows the canary or the migration again. */
        to = stage;
        if (canary_on(&h->route))
            rc = base_route(h, key, stage, &to, &route);
        if (rc == DW_OK)
            rc = move_key(h, key, from, to);
        if (rc == DW_OK && (rc = bump_overrides(h, -1)) == DW_OK)
            a->changed++;
        return rc;
    }
    to = a->stage;
    rc = move_key(h, key, from, to);
    if (rc == DW_OK)
        rc = h->ops->override_put(h, text, to, 0);
    if (rc == DW_OK && route != DW_ROUTE_OVERRIDE)
        rc = bump_overrides(h, 1);
    if (rc == DW_OK)
        a->changed++;
    return rc;
}

static int override_all(dw_migration *h, void *arg)
{
    override_args *a = arg;
    int stage;
    int rc = dw__stage_current(h, &stage);
    if (rc == DW_OK)
        rc = need_old_model(h, a->clear ? "dw_override_clear"
                                        : "dw_override_set");
    if (rc == DW_OK && !a->clear)
        rc = setup_before_new_writes(h, stage, a->stage);
    for (int i = 0; rc == DW_OK && i < a->count; i++) {
        dw_key key;
        dw__key_init(&key, a->keys + (size_t)i * (size_t)a->nkey, a->nkey);
        rc = override_one(h, a, stage, &key);
        dw__key_free(&key);
    }
    if (rc != DW_OK || !a->changed)
        return rc;
    const char *s = a->changed == 1 ? "" : "s";
    char *detail = a->clear
                       ? dw__mprintf("%d override%s cleared", a->changed, s)
                       : dw__mprintf("%d key%s to %s", a->changed, s,
                                     dw_stage_name(a->stage));
    if (!detail)
        return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    rc = h->ops->history_add(h, "override", stage, stage, 0, a->reason,
                             detail);
    dw__free(detail);
    return rc;
}

static int check_keys(dw_migration *h, const char *what, const dw_value *keys,
                      int nkey, int count)
{
    if (!keys || count < 1)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE, "%s: %s", what,
                         !keys ? "keys is NULL" : "count must be at least 1");
    for (int i = 0; i < count; i++) {
        int rc = dw__check_key(h, keys + (size_t)i * (size_t)nkey, nkey);
        if (rc != DW_OK)
            return rc;
    }
    return DW_OK;
}

int dw_override_set(dw_migration *h, const dw_value *keys, int nkey,
                    int count, int stage, const char *reason)
{
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    if (!dw_stage_name(stage))
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "dw_override_set: %d is not a stage (0 to 5)",
                         stage);
    int rc = check_keys(h, "dw_override_set", keys, nkey, count);
    if (rc != DW_OK)
        return rc;
    override_args a = {keys, nkey, count, stage, 0, reason, 0};
    rc = dw__in_scope(h, 1, override_all, &a);
    if (rc != DW_OK)
        h->stage_cached = 0;
    return rc;
}

int dw_override_clear(int *cleared, dw_migration *h, const dw_value *keys,
                      int nkey, int count, const char *reason)
{
    if (cleared)
        *cleared = 0;
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    int rc = check_keys(h, "dw_override_clear", keys, nkey, count);
    if (rc != DW_OK)
        return rc;
    override_args a = {keys, nkey, count, 0, 1, reason, 0};
    rc = dw__in_scope(h, 1, override_all, &a);
    if (rc != DW_OK)
        h->stage_cached = 0;
    else if (cleared)
        *cleared = a.changed;
    return rc;
}

typedef struct list_args {
    dw_override_fn fn;
    void *payload;
} list_args;

static int list_overrides(dw_migration *h, void *arg)
{
    list_args *a = arg;
    return h->ops->override_list(h, a->fn, a->payload);
}

int dw_override_list(dw_migration *h, dw_override_fn fn, void *payload)
{
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    if (!fn)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "dw_override_list: no callback");
    list_args a = {fn, payload};
    return dw__in_scope(h, 0, list_overrides, &a);
}

typedef struct stage_args {
    dw_key key;
    int stage, route;
} stage_args;

static int key_stage(dw_migration *h, void *arg)
{
    stage_args *a = arg;
    int stage;
    int rc = dw__stage_current(h, &stage);
    return rc == DW_OK ? dw__route(h, &a->key, stage, &a->stage, &a->route)
                       : rc;
}

int dw_key_stage(int *stage, int *route, dw_migration *h, const dw_value *key,
                 int nkey)
{
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    if (!stage)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "dw_key_stage: stage is NULL");
    stage_args a = {.stage = 0};
    int rc = dw__key_take(h, &a.key, key, nkey);
    if (rc != DW_OK)
        return rc;
    rc = dw__in_scope(h, 0, key_stage, &a);
    dw__key_free(&a.key);
    if (rc == DW_OK) {
        *stage = a.stage;
        if (route)
            *route = a.route;
    }
    return rc;
}

/* ---- the canary and promotion settings ------------------------------------------- */

typedef struct routing_args {
    dw_route_state want;
    const char *reason;
    int force;
} routing_args;

/* One set of keys moving from s0 to s1 without a per-key sync. Sets
 * *gate when the trusted side changes and *stale when a side starts being
 * written; refuses when the side to be trusted was not written at s0. */
static int check_bulk_move(dw_migration *h, int s0, int s1, const char *who,
                           int *gate, int *stale)
{
    if (s0 == s1)
        return DW_OK;
    int trust = dw__authoritative(s1);
    if (!(written(s0) & (1u << trust)))
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "%s would move keys from %s to %s, where the %s "
                         "model is trusted, but %s does not write it for "
                         "them; move them through the stages between, or "
                         "set overrides (which sync each key)",
                         who, dw_stage_name(s0), dw_stage_name(s1),
                         dw__side_word(trust), dw_stage_name(s0));
    /* The side to be trusted must be complete for the keys, which only a
     * finished backfill and a clean verification show -- going back too:
     * keys that passed through COMPLETE left the old model behind. */
    if (dw__authoritative(s0) != trust)
        *gate = 1;
    if (written(s1) & ~written(s0))
        *stale = 1;
    return DW_OK;
}

static int same_text(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* "canary 5.00% and cohort (...) at SHADOW; promote on write to LIVE". */
static char *describe(const dw_route_state *r)
{
    dw_buf b;
    dw_buf_init(&b);
    if (!canary_on(r))
        dw_buf_puts(&b, "no canary");
    if (r->buckets > 0)
        dw_buf_printf(&b, "canary %d.%02d%%", r->buckets / 100,
                      r->buckets % 100);
    if (r->cohort)
        dw_buf_printf(&b, "%scohort (%s)", r->buckets > 0 ? " and " : "",
                      r->cohort);
    if (canary_on(r))
        dw_buf_printf(&b, " at %s", dw_stage_name(r->canary_stage));
    if (r->promote_stage != DW_PROMOTE_NONE)
        dw_buf_printf(&b, "; promote on write to %s",
                      dw_stage_name(r->promote_stage));
    return dw_buf_take(&b);
}

static int apply_routing(dw_migration *h, void *arg)
{
    routing_args *a = arg;
    const dw_route_state *now = &h->route, *want = &a->want;
    int stage;
    int rc = dw__stage_current(h, &stage);
    if (rc == DW_OK)
        rc = need_old_model(h, "dw_routing_set");
    if (rc == DW_OK && want->cohort)
        rc = h->ops->cohort_check(h, want->cohort);
    if (rc == DW_OK && canary_on(want))
        rc = setup_before_new_writes(h, stage, want->canary_stage);
    if (rc == DW_OK && want->promote_stage != DW_PROMOTE_NONE)
        rc = setup_before_new_writes(h, stage, want->promote_stage);
    if (rc != DW_OK)
        return rc;

    /* Keys may enter the canary, stay in it, or leave it. */
    int m0 = canary_on(now), m1 = canary_on(want);
    int cohort_changed = !same_text(now->cohort, want->cohort);
    int entering = m1 && (!m0 || want->buckets > now->buckets ||
                          (want->cohort && cohort_changed));
    int leaving = m0 && (!m1 || want->buckets < now->buckets ||
                         (now->cohort && cohort_changed));
    int gate = 0, stale = 0;
    if (entering)
        rc = check_bulk_move(h, stage, want->canary_stage,
                             "adding keys to the canary", &gate, &stale);
    if (rc == DW_OK && m0 && m1)
        rc = check_bulk_move(h, now->canary_stage, want->canary_stage,
                             "moving the canary", &gate, &stale);
    if (rc == DW_OK && leaving)
        rc = check_bulk_move(h, now->canary_stage, stage,
                             "taking keys out of the canary", &gate, &stale);
    if (rc != DW_OK)
        return rc;

    char *why = NULL, *detail = NULL;
    int forced = 0;
    if (gate) {
        int open;
        if ((rc = dw__gate_open(h, &open, &why)) != DW_OK)
            return rc;
        if (!open && !a->force) {
            rc = dw__error(h, DW_EGATE, DW_SIDE_NONE,
                           "the canary change moves keys between stages that "
                           "trust different models, and the gate of %s is "
                           "closed: %s; or pass DW_STAGE_FORCE with a reason",
                           h->spec.name, why);
            dw__free(why);
            return rc;
        }
        if (!open && (!a->reason || !a->reason[0])) {
            dw__free(why);
            return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                             "forcing a canary change past a closed gate "
                             "needs a reason");
        }
        forced = !open;
    }
    char *settings = describe(want);
    if (settings)
        detail = forced ? dw__mprintf("%s; gate forced: %s", settings, why)
                        : dw__mprintf("%s", settings);
    dw__free(settings);
    dw__free(why);
    if (!detail)
        return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    rc = h->ops->routing_store(h, want);
    /* Keys now written on a side they were not: what the backfill and
     * verification found no longer covers them. */
    if (rc == DW_OK && stale)
        rc = h->ops->backfill_stale(h);
    if (rc == DW_OK)
        rc = h->ops->history_add(h, "routing", stage, stage, forced,
                                 a->reason, detail);
    dw__free(detail);
    if (rc == DW_OK)
        rc = dw__route_loaded(h, want->buckets, want->canary_stage,
                              want->cohort, want->promote_stage,
                              now->overrides);
    if (rc == DW_OK)
        h->ops->state_remember(h);
    return rc;
}

int dw_routing_set(dw_migration *h, const dw_routing *r, const char *reason,
                   unsigned int flags)
{
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    dw_routing defaults = DW_ROUTING_INIT;
    if (!r)
        r = &defaults;
    if (r->version != DW_ROUTING_VERSION)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "routing version %u is not %d (use "
                         "DW_ROUTING_INIT)",
                         r->version, DW_ROUTING_VERSION);
    if (flags & ~(unsigned int)DW_STAGE_FORCE)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "unknown flags 0x%x for dw_routing_set", flags);
    if (!(r->canary_percent >= 0.0 && r->canary_percent <= 100.0))
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "canary_percent must be between 0 and 100");
    if (!dw_stage_name(r->canary_stage))
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "canary_stage %d is not a stage (0 to 5)",
                         r->canary_stage);
    if (r->promote_stage != DW_PROMOTE_NONE &&
        !dw_stage_name(r->promote_stage))
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "promote_stage %d is neither a stage (0 to 5) nor "
                         "DW_PROMOTE_NONE",
                         r->promote_stage);
    routing_args a;
    memset(&a, 0, sizeof a);
    a.want.buckets = (int)(r->canary_percent * 100.0 + 0.5); /* rounded */
    a.want.canary_stage = r->canary_stage;
    /* A copy: r->canary_cohort may be the handle's own string (from
     * dw_routing_get()), which reloading the stage frees. */
    if (r->canary_cohort && r->canary_cohort[0] &&
        !(a.want.cohort = dw__strdup(r->canary_cohort)))
        return dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "out of memory");
    a.want.promote_stage = r->promote_stage;
    a.reason = reason;
    a.force = (flags & DW_STAGE_FORCE) != 0;
    int rc = dw__in_scope(h, 1, apply_routing, &a);
    dw__free(a.want.cohort);
    if (rc != DW_OK)
        h->stage_cached = 0;
    return rc;
}

static int load_routing(dw_migration *h, void *arg)
{
    (void)arg;
    int stage;
    return dw__stage_current(h, &stage);
}

int dw_routing_get(dw_routing *out, dw_migration *h)
{
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    if (!out)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "dw_routing_get: out is NULL");
    int rc = dw__in_scope(h, 0, load_routing, NULL);
    if (rc != DW_OK)
        return rc;
    dw_routing r = DW_ROUTING_INIT;
    r.canary_percent = h->route.buckets / 100.0;
    r.canary_cohort = h->route.cohort;
    r.canary_stage = h->route.canary_stage;
    r.promote_stage = h->route.promote_stage;
    *out = r;
    return DW_OK;
}

/* ---- where the keys stand ---------------------------------------------------------- */

typedef struct progress_args {
    dw_routing_progress *p;
    int stage;
} progress_args;

/* One key of the models, as the database handed it up. */
static int count_key(dw_migration *h, const dw_value *values, void *arg)
{
    progress_args *a = arg;
    int eff, route, promoted = 0;
    dw_key key;
    dw__key_init(&key, values, h->spec.side[DW_SIDE_OLD].nkey);
    int rc = dw__route(h, &key, a->stage, &eff, &route);
    if (rc == DW_OK) {
        a->p->keys++;
        a->p->by_stage[eff]++;
        a->p->in_canary += route == DW_ROUTE_CANARY;
        a->p->overridden += route == DW_ROUTE_OVERRIDE;
    }
    /* An override was found by the key's text, made once for both. */
    const char *text;
    if (rc == DW_OK && route == DW_ROUTE_OVERRIDE &&
        (rc = key_text_of(h, &key, &text)) == DW_OK)
        rc = h->ops->override_get(h, text, &eff, &promoted);
    a->p->promoted += promoted;
    dw__key_free(&key);
    return rc;
}

static int progress(dw_migration *h, void *arg)
{
    progress_args *a = arg;
    dw_routing_progress *p = a->p;
    int64_t by_stage[6] = {0}, stored = 0, promoted = 0;
    int rc = dw__stage_current(h, &a->stage);
    if (rc == DW_OK)
        rc = need_old_model(h, "dw_routing_count");
    if (rc == DW_OK)
        rc = h->ops->override_stats(h, by_stage, &promoted);
    for (int s = 0; s < 6; s++)
        stored += by_stage[s];
    if (rc == DW_OK)
        rc = h->ops->range_keys(h, DW_SIDE_NONE, NULL, NULL, count_key, a);
    if (rc == DW_OK)
        rc = h->ops->range_count(h, DW_SIDE_OLD, NULL, NULL, &p->old_rows);
    if (rc == DW_OK)
        rc = h->ops->range_count(h, DW_SIDE_NEW, NULL, NULL, &p->new_rows);
    if (rc == DW_OK)
        rc = h->ops->covered(h, &p->covered);
    p->overrides_without_row = stored - p->overridden;
    return rc;
}

int dw_routing_count(dw_routing_progress *out, dw_migration *h)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!h)
        return DW_EMISUSE;
    dw__clear_error(h);
    if (!out)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "dw_routing_count: out is NULL");
    progress_args a = {out, 0};
    int rc = dw__in_scope(h, 0, progress, &a);
    if (rc != DW_OK)
        memset(out, 0, sizeof *out);
    return rc;
}

/* ---- contract ------------------------------------------------------------------------ */

int dw__route_allows_contract(dw_migration *h)
{
    int stage;
    int64_t by_stage[6], promoted, below = 0;
    int rc = dw__stage_current(h, &stage);
    if (rc == DW_OK && canary_on(&h->route) &&
        h->route.canary_stage != DW_STAGE_COMPLETE)
        return dw__error(h, DW_EGATE, DW_SIDE_NONE,
                         "the canary keeps keys of %s at %s, which still "
                         "uses the old model; move the canary to COMPLETE "
                         "or clear it first",
                         h->spec.name, dw_stage_name(h->route.canary_stage));
    if (rc == DW_OK)
        rc = h->ops->override_stats(h, by_stage, &promoted);
    for (int s = DW_STAGE_OFF; rc == DW_OK && s < DW_STAGE_COMPLETE; s++)
        below += by_stage[s];
    if (rc == DW_OK && below > 0)
        rc = dw__error(h, DW_EGATE, DW_SIDE_NONE,
                       "%lld keys of %s are overridden to stages that still "
                       "use the old model; clear or move them to COMPLETE "
                       "first",
                       (long long)below, h->spec.name);
    return rc;
}
