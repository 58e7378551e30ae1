/* What the core makes of the facts a backend reports, on a scripted
 * backend with no database at all: of its transactions (lib/scope.c) --
 * the caller's transaction gone, a scope of ours left open -- the codes,
 * messages and refusals; of the stored stage (lib/stage.c) -- the stage,
 * the contract flag, the routing and a redefinition -- the handle's state
 * and the refusal of a redefined migration. */
#include "support.h"

#include <string.h>

#include "internal.h"

/* What the scripted backend reports, and what it was asked. */
typedef struct script {
    int in_txn;            /* in_transaction()'s answer */
    int idle;              /* idle()'s answer */
    int begin_rc;          /* begin()'s return */
    int begin_scope;       /* the scope begin() says it opened */
    int commit_rc;         /* commit()'s return */
    int commit_gone;       /* commit() finds the caller's transaction gone */
    int scope_gone;        /* commit() finds its own scope gone */
    dw_txn_facts rolled;   /* what rollback() reports */
    dw_txn_facts settled;  /* what settle() reports */
    int begins, commits, rollbacks, settles;
    int rolled_scope;      /* the scope rollback() was given */
    int settled_left;      /* the `left` settle() was given */
    dw_stage_facts stage;  /* what stage_load() reads (cohort: static) */
    int stage_rc;          /* stage_load()'s return */
    int unchanged;         /* state_unchanged()'s answer */
    int loads, remembered;
} script;

static script sc;

static int fake_begin(dw_migration *h, int write, int *scope)
{
    (void)write;
    sc.begins++;
    *scope = sc.begin_scope;
    if (sc.begin_rc != DW_OK)
        return dw__error(h, sc.begin_rc, DW_SIDE_NONE, "begin failed");
    return DW_OK;
}

static int fake_commit(dw_migration *h, int scope, dw_txn_facts *f)
{
    (void)scope;
    sc.commits++;
    f->caller_gone = sc.commit_gone;
    f->scope_gone = sc.scope_gone;
    if (sc.commit_rc != DW_OK)
        return dw__error(h, sc.commit_rc, DW_SIDE_NONE, "commit failed");
    return DW_OK;
}

/* A rollback whose own statement fails sets an error of its own: the core
 * must keep the one that made it roll back. */
static void fake_rollback(dw_migration *h, int scope, dw_txn_facts *f)
{
    sc.rollbacks++;
    sc.rolled_scope = scope;
    *f = sc.rolled;
    dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "the rollback's own failure");
}

static void fake_settle(dw_migration *h, int left, dw_txn_facts *f)
{
    sc.settles++;
    sc.settled_left = left;
    *f = sc.settled;
    dw__error(h, DW_ENOMEM, DW_SIDE_NONE, "the settle's own failure");
}

static int fake_in_transaction(dw_migration *h)
{
    (void)h;
    return sc.in_txn;
}

static int fake_idle(dw_migration *h)
{
    (void)h;
    return sc.idle;
}

static int fake_stage_load(dw_migration *h, dw_stage_facts *f)
{
    sc.loads++;
    *f = sc.stage;
    /* The caller owns the cohort, as the backend hands it over. */
    f->route.cohort = sc.stage.route.cohort
                          ? dw__strdup(sc.stage.route.cohort)
                          : NULL;
    if (sc.stage_rc != DW_OK)
        return dw__error(h, sc.stage_rc, DW_SIDE_NONE, "stage damaged");
    return DW_OK;
}

static int fake_state_unchanged(dw_migration *h)
{
    (void)h;
    return sc.unchanged;
}

static void fake_state_remember(dw_migration *h)
{
    (void)h;
    sc.remembered++;
}

static const dw_backend_ops fake_ops = {
    .name = "scripted",
    .begin = fake_begin,
    .settle = fake_settle,
    .commit = fake_commit,
    .rollback = fake_rollback,
    .in_transaction = fake_in_transaction,
    .idle = fake_idle,
    .stage_load = fake_stage_load,
    .state_unchanged = fake_state_unchanged,
    .state_remember = fake_state_remember,
};

static int setup(void **state)
{
    memset(&sc, 0, sizeof sc);
    sc.begin_scope = 1;
    dw_migration *h = dw__calloc(sizeof *h);
    assert_non_null(h);
    h->ops = &fake_ops;
    h->spec.name = "m";
    memcpy(h->digest, "0123456789abcdef", 17);
    h->route.promote_stage = DW_PROMOTE_NONE;
    sc.stage.spec_same = 1;
    sc.stage.route.promote_stage = DW_PROMOTE_NONE;
    *state = h;
    return 0;
}

static int teardown(void **state)
{
    dw_migration *h = *state;
    dw__route_free(h);
    dw__free(h->errmsg);
    dw__free(h);
    return 0;
}

static void assert_msg_has(const dw_migration *h, const char *needle)
{
    if (!strstr(dw_errmsg(h), needle))
        fail_msg("message \"%s\" lacks \"%s\"", dw_errmsg(h), needle);
}

/* Nothing reported: begin and commit go through, nothing else runs. */
static void test_plain_scope(void **state)
{
    dw_migration *h = *state;
    int scope = -1;
    assert_int_equal(dw__begin(h, 1, &scope), DW_OK);
    assert_int_equal(scope, 1);
    assert_int_equal(dw__commit(h, scope), DW_OK);
    assert_int_equal(sc.begins, 1);
    assert_int_equal(sc.commits, 1);
    assert_int_equal(sc.rollbacks + sc.settles, 0);
    assert_int_equal(h->txn_lost + h->left_open, 0);
}

/* The caller's transaction gone at the commit, on no error of ours:
 * DW_EROLLEDBACK, saying so; the next call made outside any transaction is
 * refused once, before anything begins; the one after runs. */
static void test_caller_gone_at_commit(void **state)
{
    dw_migration *h = *state;
    int scope;
    assert_int_equal(dw__begin(h, 1, &scope), DW_OK);
    sc.commit_gone = 1;
    assert_int_equal(dw__commit(h, scope), DW_EROLLEDBACK);
    assert_msg_has(h, "your transaction ended during this call, on no "
                      "error of the library's");
    assert_true(h->txn_lost);
    assert_int_equal(sc.rollbacks, 0);

    assert_int_equal(dw__begin(h, 0, &scope), DW_EROLLEDBACK);
    assert_int_equal(scope, 0);
    assert_msg_has(h, "refused, nothing done");
    assert_int_equal(sc.begins, 1);
    assert_false(h->txn_lost);

    dw__clear_error(h);
    assert_int_equal(dw__begin(h, 0, &scope), DW_OK);
    assert_int_equal(sc.begins, 2);
}

/* Our own scope gone at the commit (the database rolled it back): a read
 * keeps what it read, a write fails saying nothing was applied; neither
 * rolls back what is gone. */
static void test_scope_gone_at_commit(void **state)
{
    dw_migration *h = *state;
    sc.scope_gone = 1;
    int scope;
    assert_int_equal(dw__begin(h, 0, &scope), DW_OK);
    assert_int_equal(dw__commit(h, scope), DW_OK);
    assert_int_equal(dw__begin(h, 1, &scope), DW_OK);
    assert_int_equal(dw__commit(h, scope), DW_ERROR);
    assert_msg_has(h, "rolled back the transaction during the operation; "
                      "nothing was applied");
    assert_int_equal(sc.rollbacks, 0);
    assert_false(h->txn_lost);
}

/* A transaction begun since the loss is the caller's start over: no
 * refusal, and the mark goes. */
static void test_caller_started_over(void **state)
{
    dw_migration *h = *state;
    h->txn_lost = 1;
    sc.in_txn = 1;
    int scope;
    assert_int_equal(dw__begin(h, 1, &scope), DW_OK);
    assert_int_equal(sc.begins, 1);
    assert_false(h->txn_lost);
}

/* The caller's transaction gone at the rollback of a failed call: the
 * call's own error is kept as the cause, the rollback's own failure is
 * dropped, and the code is DW_EROLLEDBACK. */
static void test_caller_gone_at_rollback(void **state)
{
    dw_migration *h = *state;
    dw__error(h, DW_ECONSTRAINT, DW_SIDE_NEW, "the new side refused");
    sc.rolled.caller_gone = 1;
    assert_int_equal(dw__rollback(h, 2, DW_ECONSTRAINT), DW_EROLLEDBACK);
    assert_int_equal(sc.rolled_scope, 2);
    assert_msg_has(h, "the new side refused; the database rolled back your "
                      "transaction with it");
    assert_null(strstr(dw_errmsg(h), "own failure"));
    assert_int_equal(dw_errside(h), DW_SIDE_NEW);
    assert_true(h->txn_lost);
}

/* A rollback that leaves our transaction open: DW_ENOMEM, the message
 * saying it is still open; the next call ends it first (settle, given
 * what was left), keeps no error of the settle's, and goes on. */
static void test_left_open_then_settled(void **state)
{
    dw_migration *h = *state;
    dw__error(h, DW_ERROR, DW_SIDE_NONE, "a write failed");
    sc.rolled.left_open = DW_LEFT_TXN;
    assert_int_equal(dw__rollback(h, 1, DW_ERROR), DW_ENOMEM);
    assert_int_equal(h->errcode, DW_ENOMEM);
    assert_msg_has(h, "still open on the connection");

    int scope;
    assert_int_equal(dw__begin(h, 1, &scope), DW_OK);
    assert_int_equal(sc.settles, 1);
    assert_int_equal(sc.settled_left, DW_LEFT_TXN);
    assert_int_equal(h->left_open, 0);
    assert_int_equal(sc.begins, 1);
    assert_null(strstr(dw_errmsg(h), "own failure"));
}

/* A savepoint the settle could not end either: DW_ENOMEM again, nothing
 * begun, the message saying where it is left. */
static void test_settle_still_open(void **state)
{
    dw_migration *h = *state;
    h->left_open = DW_LEFT_SAVEPOINT;
    sc.settled.left_open = DW_LEFT_SAVEPOINT;
    int scope = -1;
    assert_int_equal(dw__begin(h, 1, &scope), DW_ENOMEM);
    assert_int_equal(scope, 0);
    assert_int_equal(sc.begins, 0);
    assert_int_equal(h->left_open, DW_LEFT_SAVEPOINT);
    assert_msg_has(h, "still open in your transaction");
    /* Nothing left: dw__settle() asks the backend nothing. */
    h->left_open = 0;
    assert_int_equal(dw__settle(h), DW_OK);
    assert_int_equal(sc.settles, 1);
}

/* A failed commit is rolled back, its error returned; a begin that fails
 * after opening its scope is rolled back too, and says nothing is open. */
static void test_failures_rolled_back(void **state)
{
    dw_migration *h = *state;
    int scope;
    assert_int_equal(dw__begin(h, 1, &scope), DW_OK);
    sc.commit_rc = DW_EBUSY;
    assert_int_equal(dw__commit(h, scope), DW_EBUSY);
    assert_int_equal(sc.rollbacks, 1);
    assert_int_equal(sc.rolled_scope, 1);
    assert_msg_has(h, "commit failed");

    sc.begin_rc = DW_EBUSY;
    scope = -1;
    assert_int_equal(dw__begin(h, 1, &scope), DW_EBUSY);
    assert_int_equal(scope, 0);
    assert_int_equal(sc.rollbacks, 2);
    assert_msg_has(h, "begin failed");

    /* Nothing opened: nothing to roll back. */
    sc.begin_scope = 0;
    assert_int_equal(dw__begin(h, 1, &scope), DW_EBUSY);
    assert_int_equal(sc.rollbacks, 2);
}

/* One statement runs alone only when the stage is cached, nothing is left
 * open or lost, and the backend says the connection is idle. */
static void test_idle(void **state)
{
    dw_migration *h = *state;
    sc.idle = 1;
    assert_false(dw__idle(h)); /* stage not cached */
    h->stage_cached = 1;
    assert_true(dw__idle(h));
    h->left_open = DW_LEFT_TXN;
    assert_false(dw__idle(h));
    h->left_open = 0;
    h->txn_lost = 1;
    assert_false(dw__idle(h));
    h->txn_lost = 0;
    sc.idle = 0;
    assert_false(dw__idle(h));
}

/* The stored stage, the contract flag and the routing land in the handle
 * and the cache; the next call takes the cache while the backend says
 * nothing changed. */
static void test_stage_loaded(void **state)
{
    dw_migration *h = *state;
    sc.stage.stage = DW_STAGE_SHADOW;
    sc.stage.contracted = 1;
    sc.stage.route.buckets = 7;
    sc.stage.route.canary_stage = DW_STAGE_LIVE;
    sc.stage.route.cohort = "region = 'eu'";
    sc.stage.route.promote_stage = DW_STAGE_LIVE;
    sc.stage.route.overrides = 3;
    int stage = -1;
    assert_int_equal(dw__stage_current(h, &stage), DW_OK);
    assert_int_equal(stage, DW_STAGE_SHADOW);
    assert_int_equal(h->stage, DW_STAGE_SHADOW);
    assert_true(h->contracted);
    assert_false(h->redefined);
    assert_true(h->stage_cached);
    assert_int_equal(sc.remembered, 1);
    assert_int_equal(h->route.buckets, 7);
    assert_int_equal(h->route.canary_stage, DW_STAGE_LIVE);
    assert_string_equal(h->route.cohort, "region = 'eu'");
    assert_int_equal(h->route.promote_stage, DW_STAGE_LIVE);
    assert_int_equal(h->route.overrides, 3);

    sc.unchanged = 1;
    sc.stage.stage = DW_STAGE_LIVE;
    assert_int_equal(dw__stage_current(h, &stage), DW_OK);
    assert_int_equal(stage, DW_STAGE_SHADOW);
    assert_int_equal(sc.loads, 1);

    /* Changed: read again; an empty cohort is none. */
    sc.unchanged = 0;
    sc.stage.route.cohort = "";
    assert_int_equal(dw__stage_current(h, &stage), DW_OK);
    assert_int_equal(stage, DW_STAGE_LIVE);
    assert_null(h->route.cohort);
}

/* A stored spec that is no longer the handle's: DW_ESPEC, nothing cached,
 * the message naming the migration and the way out. */
static void test_stage_redefined(void **state)
{
    dw_migration *h = *state;
    sc.stage.spec_same = 0;
    int stage;
    assert_int_equal(dw__stage_current(h, &stage), DW_ESPEC);
    assert_true(h->redefined);
    assert_false(h->stage_cached);
    assert_int_equal(sc.remembered, 0);
    assert_msg_has(h, "migration \"m\" was redefined since this handle");
    assert_msg_has(h, "dw_scripted_open_stored()");
}

/* A load that fails (damage, no memory) keeps its message, caches
 * nothing, and leaves no cohort behind. */
static void test_stage_load_fails(void **state)
{
    dw_migration *h = *state;
    sc.stage_rc = DW_ECORRUPT;
    sc.stage.route.cohort = "x > 1";
    int stage;
    assert_int_equal(dw__stage_current(h, &stage), DW_ECORRUPT);
    assert_msg_has(h, "stage damaged");
    assert_false(h->stage_cached);
    assert_null(h->route.cohort);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_plain_scope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_caller_gone_at_commit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_scope_gone_at_commit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_caller_started_over, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_caller_gone_at_rollback, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_left_open_then_settled, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_settle_still_open, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failures_rolled_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stage_loaded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stage_redefined, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stage_load_fails, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
