/* The transaction scope policy of the core (lib/scope.c) on a scripted
 * backend: the facts a backend reports of its transactions -- the caller's
 * transaction gone, a scope of ours left open -- and the codes, messages
 * and refusals the core makes of them, with no database at all. */
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
    dw_txn_facts rolled;   /* what rollback() reports */
    dw_txn_facts settled;  /* what settle() reports */
    int begins, commits, rollbacks, settles;
    int rolled_scope;      /* the scope rollback() was given */
    int settled_left;      /* the `left` settle() was given */
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

static const dw_backend_ops fake_ops = {
    .name = "scripted",
    .begin = fake_begin,
    .settle = fake_settle,
    .commit = fake_commit,
    .rollback = fake_rollback,
    .in_transaction = fake_in_transaction,
    .idle = fake_idle,
};

static int setup(void **state)
{
    memset(&sc, 0, sizeof sc);
    sc.begin_scope = 1;
    dw_migration *h = dw__calloc(sizeof *h);
    assert_non_null(h);
    h->ops = &fake_ops;
    *state = h;
    return 0;
}

static int teardown(void **state)
{
    dw_migration *h = *state;
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_plain_scope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_caller_gone_at_commit, setup,
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
