/*
 * dualwrite_cmocka.h -- assertions for cmocka tests of code that uses
 * libdualwrite.
 *
 * Include it after <cmocka.h> (which itself needs <stdarg.h>, <stddef.h>,
 * <stdint.h> and <setjmp.h>). Everything here is static inline and uses only
 * the public API of dualwrite.h.
 *
 *   assert_dw_no_divergence(h);
 *       Fails the test when the migration has seen any disagreement: a
 *       mismatch counted by this handle, a comparison this handle could
 *       not make (a side's read failed or ran over the time budget, or the
 *       normaliser failed: a new model whose reads fail never passes), or
 *       an entry in its mismatch log (written by any handle, any process).
 *       Prints the first differences.
 *
 *   assert_dw_key_agrees(h, key, nkey);
 *       Compares one key now (dw_compare) and fails, printing the
 *       difference, when the old and new models disagree.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef DUALWRITE_CMOCKA_H
#define DUALWRITE_CMOCKA_H

#include <stdio.h>
#include <string.h>

#include "dualwrite.h"

#ifdef __cplusplus
extern "C" {
#endif

/** How many log entries a failing assertion prints. */
#define DW_CMOCKA_SHOWN 5

typedef struct dw_cmocka_report_ {
    char *buf;
    size_t size;
    size_t used;
} dw_cmocka_report_;

static inline void dw_cmocka_append_(dw_cmocka_report_ *r, const char *text)
{
    size_t n = strlen(text);
    if (!r->buf || r->size == 0 || r->used + 1 >= r->size)
        return;
    if (n > r->size - r->used - 1)
        n = r->size - r->used - 1;
    memcpy(r->buf + r->used, text, n);
    r->used += n;
    r->buf[r->used] = '\0';
}

static inline int dw_cmocka_entry_(const dw_mismatch_entry *e, void *payload)
{
    char line[1024];
    snprintf(line, sizeof line, "  key %s seen %lld time(s): %s\n", e->key,
             (long long)e->count, e->detail);
    dw_cmocka_append_((dw_cmocka_report_ *)payload, line);
    return 0;
}

/**
 * Counts the divergence a migration has seen: mismatches and comparisons
 * that could not be made (dw_metrics.compare_errors), counted by this
 * handle, plus entries in its mismatch log (0 means none), and writes a
 * readable report of the first DW_CMOCKA_SHOWN entries into report (which
 * may be NULL). Returns a negative DW_ code when the log cannot be read.
 */
static inline int64_t dw_cmocka_divergence(dw_migration *h, char *report,
                                           size_t size)
{
    dw_metrics m;
    int64_t entries = 0, dropped = 0;
    dw_cmocka_report_ r;
    char line[256];
    int rc;
    r.buf = report;
    r.size = size;
    r.used = 0;
    if (report && size)
        report[0] = '\0';
    memset(&m, 0, sizeof m);
    if ((rc = dw_metrics_get(&m, h)) != DW_OK)
        return rc;
    if ((rc = dw_mismatch_log_count(&entries, &dropped, h)) != DW_OK)
        return rc;
    if (m.mismatches == 0 && m.compare_errors == 0 && entries == 0 &&
        dropped == 0)
        return 0;
    snprintf(line, sizeof line,
             "migration %s diverges: %llu mismatch(es) and %llu "
             "comparison(s) that could not be made (a read failed or ran "
             "over its budget, or the normaliser failed), counted by this "
             "handle; %lld logged entr%s, %lld dropped\n",
             dw_name(h), (unsigned long long)m.mismatches,
             (unsigned long long)m.compare_errors, (long long)entries,
             entries == 1 ? "y" : "ies", (long long)dropped);
    dw_cmocka_append_(&r, line);
    if ((rc = dw_mismatch_log(h, DW_CMOCKA_SHOWN, dw_cmocka_entry_, &r)) !=
        DW_OK)
        return rc;
    return (int64_t)(m.mismatches + m.compare_errors) + entries + dropped;
}

static inline void dw_cmocka_no_divergence_(dw_migration *h,
                                            const char *file, int line)
{
    char report[4096];
    int64_t n = dw_cmocka_divergence(h, report, sizeof report);
    if (n == 0)
        return;
    if (n < 0)
        print_error("%s:%d: cannot read the divergence of %s: %s\n", file,
                    line, dw_name(h), dw_errmsg(h));
    else
        print_error("%s:%d: %s", file, line, report);
    _fail(file, line);
}

static inline void dw_cmocka_key_agrees_(dw_migration *h, const dw_value *key,
                                         int nkey, const char *file, int line)
{
    char report[4096];
    int equal = 0;
    int rc = dw_compare(&equal, h, key, nkey);
    if (rc != DW_OK) {
        print_error("%s:%d: dw_compare failed: %s\n", file, line,
                    dw_errmsg(h));
        _fail(file, line);
    }
    if (equal)
        return;
    dw_cmocka_divergence(h, report, sizeof report);
    print_error("%s:%d: the old and new models disagree at this key\n%s",
                file, line, report);
    _fail(file, line);
}

#define assert_dw_no_divergence(h)                                             \
    dw_cmocka_no_divergence_((h), __FILE__, __LINE__)
#define assert_dw_key_agrees(h, key, nkey)                                     \
    dw_cmocka_key_agrees_((h), (key), (nkey), __FILE__, __LINE__)

#ifdef __cplusplus
}
#endif

#endif /* DUALWRITE_CMOCKA_H */
