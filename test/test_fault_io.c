/* I/O errors: every operation of the fault catalogue (fault.c) that writes
 * to the file, with the failing VFS failing the Nth xWrite, xSync or
 * xTruncate -- with SQLITE_IOERR and with SQLITE_FULL, once and from the
 * Nth on -- in WAL mode and in rollback-journal mode, for N = 1, 2, ...
 * until no call failed. After each point the faulted connection is closed
 * and a fresh one checks the file: the operation took effect entirely or
 * not at all, old and new agree where they agreed, integrity_check is ok,
 * the state tables hold together; then the operation, repeated without
 * faults, reaches the same end (see "the walk" in fault.h).
 *
 * What "committed" means here: a commit may fail after its data is safe
 * (in WAL mode the log write went through and a sync or a checkpoint
 * failed), so an error is allowed to leave the operation applied -- but
 * only whole. DW_OK must always leave it applied.
 *
 * DW_FAULT_STRIDE=k walks every kth N only (for slow runs under valgrind);
 * DW_FAULT_ONLY=text walks only the operations whose name contains it. */
#include "fault.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    unsigned kind;
    const char *name;
} KINDS[] = {
    {FAULT_WRITE, "write"}, {FAULT_SYNC, "sync"}, {FAULT_TRUNCATE, "truncate"}};

/* One operation in one journal mode: a test each, so that the workers
 * share the walks out evenly. Points per kind, summed over both errors and
 * both persistences. */
typedef struct slot {
    const fault_op *op;
    int wal;
    char name[128];
    int points[3];
    fault_stats stats;
    int done;
} slot;

static slot slots[2 * 64];

static void test_io(void **state)
{
    slot *s = *state;
    fault_world *w = fault_world_build(s->op, s->wal);
    for (int k = 0; k < 3; k++) {
        static const int errs[] = {SQLITE_IOERR, SQLITE_FULL};
        for (int e = 0; e < 2; e++) {
            for (int persistent = 0; persistent < 2; persistent++) {
                fault_plan p = {1, KINDS[k].kind, errs[e], persistent,
                                fault_stride()};
                s->points[k] += fault_walk(w, &p);
            }
        }
    }
    fault_world_stats(w, &s->stats);
    s->done = 1;
    fault_world_free(w);
}

static int selected(const fault_op *op, const char *only)
{
    return (op->flags & FAULT_OP_IO) && (!only || strstr(op->name, only));
}

int main(void)
{
    /* The counting allocator too, so that leaks show. */
    fault_mem_install();
    fault_vfs_register();
    fault_vfs_real_sync(0);
    struct CMUnitTest tests[2 * 64];
    assert_true(fault_nops <= 64);
    const char *only = getenv("DW_FAULT_ONLY");
    size_t n = 0;
    for (int i = 0; i < 2 * fault_nops; i++) {
        slot *s = &slots[i];
        s->op = &fault_ops[i / 2];
        s->wal = i % 2 == 0;
        snprintf(s->name, sizeof s->name, "%s [%s]", s->op->name,
                 s->wal ? "wal" : "rollback");
        if (!selected(s->op, only))
            continue;
        struct CMUnitTest t = {s->name, test_io, NULL, NULL, s};
        tests[n++] = t;
    }
    int failed = fault_run_tests("fault_io", tests, n, slots, sizeof *slots);

    long total[2] = {0, 0};
    int nops = 0;
    for (int i = 0; i < fault_nops; i++) {
        if (!selected(&fault_ops[i], only))
            continue;
        nops++;
        for (int m = 0; m < 2; m++) {
            const slot *s = &slots[2 * i + m];
            const char *mode = s->wal ? "wal" : "rollback";
            if (!s->done) {
                printf("io: %s %s not walked to the end (failed)\n",
                       s->op->name, mode);
                continue;
            }
            for (int k = 0; k < 3; k++) {
                printf("io: %s %s %s %d points\n", s->op->name, mode,
                       KINDS[k].name, s->points[k]);
                total[s->wal] += s->points[k];
            }
            /* How they came out: the call succeeded anyway, failed with
             * nothing applied, failed after its commit was safe (applied
             * whole), or (several transactions) failed part way; and how
             * many failed calls a crash right after would have applied. */
            const fault_stats *st = &s->stats;
            printf("io: %s %s outcomes [ok %d, undone %d, applied %d, part "
                   "%d; applied after a crash %d",
                   s->op->name, mode, st->ok, st->failed_before,
                   st->failed_after, st->failed_other, st->crash_applied);
            if (st->skipped)
                printf("; %d hit a known defect", st->skipped);
            printf("]\n");
        }
    }
    printf("io: total %ld points over %d operations (%ld wal, %ld "
           "rollback)%s\n",
           total[0] + total[1], nops, total[1], total[0],
           fault_stride() > 1 ? " (thinned by DW_FAULT_STRIDE)" : "");
    return failed;
}
