/* Memory: every allocation goes through sqlite3_malloc64() so that one
 * allocator (and one failing allocator, in tests) governs SQLite and us. */
#include <string.h>

#include "internal.h"

void *dw__malloc(size_t n) { return sqlite3_malloc64(n ? n : 1); }

void *dw__calloc(size_t n)
{
    void *p = dw__malloc(n);
    if (p)
        memset(p, 0, n ? n : 1);
    return p;
}

void *dw__realloc(void *p, size_t n) { return sqlite3_realloc64(p, n ? n : 1); }

void dw__free(void *p) { sqlite3_free(p); }

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
