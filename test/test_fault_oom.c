/* Out of memory: every public operation of the fault catalogue (fault.c),
 * with the Nth allocation failing -- once, then from the Nth on -- for
 * N = 1, 2, ... until the operation runs without meeting a failure. After
 * each point the walk checks the result code, that nothing leaked, that the
 * database is as before or as after the operation, and that the same handle
 * then does the operation without faults (see "the walk" in fault.h).
 *
 * DW_FAULT_STRIDE=k walks every kth N only (for slow runs under valgrind);
 * DW_FAULT_ONLY=text walks only the operations whose name contains it. */
#include "fault.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
    const fault_op *op;
    int once, persistent;
    fault_stats stats;
    int done;
} slot;

static slot slots[64];

static void test_oom(void **state)
{
    slot *s = *state;
    fault_world *w = fault_world_build(s->op, 1);
    fault_plan p = {0, 0, 0, 0, fault_stride()};
    s->once = fault_walk(w, &p);
    p.persistent = 1;
    s->persistent = fault_walk(w, &p);
    fault_world_stats(w, &s->stats);
    s->done = 1;
    fault_world_free(w);
}

int main(void)
{
    /* Before any connection: the allocator is installed process-wide. */
    fault_mem_install();
    fault_vfs_real_sync(0);
    struct CMUnitTest tests[64];
    assert_true(fault_nops <= 64);
    /* DW_FAULT_ONLY=text walks the operations whose name contains it. */
    const char *only = getenv("DW_FAULT_ONLY");
    size_t n = 0;
    for (int i = 0; i < fault_nops; i++) {
        slots[i].op = &fault_ops[i];
        if (only && !strstr(fault_ops[i].name, only))
            continue;
        struct CMUnitTest t = {fault_ops[i].name, test_oom, NULL, NULL,
                               &slots[i]};
        tests[n++] = t;
    }
    /* Each operation's walks in a worker process of their own. */
    int failed = fault_run_tests("fault_oom", tests, n, slots, sizeof *slots);
    long total = 0;
    int nops = 0;
    for (int i = 0; i < fault_nops; i++) {
        const slot *s = &slots[i];
        if (only && !strstr(s->op->name, only))
            continue;
        nops++;
        if (!s->done) {
            printf("oom: %s not walked to the end (failed)\n", s->op->name);
            continue;
        }
        /* How the points came out: the call succeeded anyway, failed with
         * nothing applied, failed after applying all, or (operations of
         * several transactions) failed part way. */
        printf("oom: %s %d points (%d once, %d persistent) [ok %d, undone "
               "%d, applied %d, part %d",
               s->op->name, s->once + s->persistent, s->once, s->persistent,
               s->stats.ok, s->stats.failed_before, s->stats.failed_after,
               s->stats.failed_other);
        if (s->stats.skipped)
            printf("; %d hit a known defect", s->stats.skipped);
        printf("]\n");
        total += s->once + s->persistent;
    }
    printf("oom: total %ld points over %d operations%s\n", total, nops,
           fault_stride() > 1 ? " (thinned by DW_FAULT_STRIDE)" : "");
    return failed;
}
