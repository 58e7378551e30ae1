/* For the tests that measure the library's memory with SQLite's statistics
 * (sqlite3_memory_used(), SQLITE_STATUS_MALLOC_COUNT): the library's
 * allocator set to SQLite's, so that those count the library's
 * allocations together with SQLite's. Call first in main(), before any
 * other call of the library. */
#ifndef DW_TEST_SQLITE_MEMORY_H
#define DW_TEST_SQLITE_MEMORY_H

#include <stdio.h>
#include <stdlib.h>

#include <sqlite3.h>

#include "dualwrite/sqlite.h"

static void *via_sqlite_malloc(size_t n, void *payload)
{
    (void)payload;
    return sqlite3_malloc64(n);
}

static void *via_sqlite_realloc(void *p, size_t n, void *payload)
{
    (void)payload;
    return sqlite3_realloc64(p, n);
}

static void via_sqlite_free(void *p, void *payload)
{
    (void)payload;
    sqlite3_free(p);
}

static void library_memory_in_sqlite(void)
{
    dw_allocator a = {DW_ALLOCATOR_VERSION, via_sqlite_malloc,
                      via_sqlite_realloc, via_sqlite_free, NULL};
    const char *why = NULL;
    if (dw_set_allocator(&a, &why) != DW_OK) {
        fprintf(stderr, "dw_set_allocator: %s\n", why);
        exit(1);
    }
}

#endif
