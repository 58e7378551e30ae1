/* Memory: every allocation of the library goes through one allocator,
 * malloc() and friends unless the application installs its own with
 * dw_set_allocator(). SQLite's memory is SQLite's: the backend frees what
 * SQLite hands it, and nothing SQLite allocated reaches the core. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void *default_malloc(size_t n, void *payload)
{
    (void)payload;
    return malloc(n);
}

static void *default_realloc(void *p, size_t n, void *payload)
{
    (void)payload;
    return realloc(p, n);
}

static void default_free(void *p, void *payload)
{
    (void)payload;
    free(p);
}

static const dw_allocator default_allocator = {
    DW_ALLOCATOR_VERSION, default_malloc, default_realloc, default_free, NULL};

static dw_allocator current = {
    DW_ALLOCATOR_VERSION, default_malloc, default_realloc, default_free, NULL};

/* Blocks made and not yet freed: an allocator is only swapped while none
 * is held, so no block is ever freed by an allocator that did not make
 * it. */
static atomic_long live_blocks;

void *dw__malloc(size_t n)
{
    void *p = current.malloc(n ? n : 1, current.payload);
    if (p)
        atomic_fetch_add_explicit(&live_blocks, 1, memory_order_relaxed);
    return p;
}

void *dw__calloc(size_t n)
{
    void *p = dw__malloc(n);
    if (p)
        memset(p, 0, n ? n : 1);
    return p;
}

void *dw__realloc(void *p, size_t n)
{
    if (!p)
        return dw__malloc(n);
    return current.realloc(p, n ? n : 1, current.payload);
}

void dw__free(void *p)
{
    if (!p)
        return;
    atomic_fetch_sub_explicit(&live_blocks, 1, memory_order_relaxed);
    current.free(p, current.payload);
}

void dw_free(void *p) { dw__free(p); }

/* Why the allocator cannot be installed, or NULL when it can. */
static const char *allocator_problem(const dw_allocator *a)
{
    if (a && a->version != DW_ALLOCATOR_VERSION)
        return "dw_set_allocator: unknown version (set it to "
               "DW_ALLOCATOR_VERSION, or start from DW_ALLOCATOR_INIT)";
    if (a && (!a->malloc || !a->realloc || !a->free))
        return !a->malloc    ? "dw_set_allocator: the malloc function is NULL"
               : !a->realloc ? "dw_set_allocator: the realloc function is NULL"
                             : "dw_set_allocator: the free function is NULL";
    if (atomic_load(&live_blocks) != 0)
        return "dw_set_allocator: memory the library allocated is still "
               "held (an open handle, a message not yet given to dw_free()): "
               "the allocator is only replaced while the library holds "
               "none";
    return NULL;
}

int dw_set_allocator(const dw_allocator *a, const char **why)
{
    const char *problem = allocator_problem(a);
    if (why)
        *why = problem;
    if (problem)
        return DW_EMISUSE;
    current = a ? *a : default_allocator;
    return DW_OK;
}

char *dw__strndup(const char *s, size_t n)
{
    char *p = dw__malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

char *dw__strdup(const char *s) { return s ? dw__strndup(s, strlen(s)) : NULL; }
