/* uthash, configured for the library: allocations through the library's
 * family, and an allocation failure reported instead of exiting. */
#ifndef DW_HASH_H
#define DW_HASH_H

#include "internal.h"

#define HASH_NONFATAL_OOM 1
#define uthash_malloc(sz) dw__malloc(sz)
#define uthash_free(ptr, sz) dw__free(ptr)
/* Set by uthash when it could not grow; the caller undoes the insert. */
extern _Thread_local int dw__hash_oom;
#define uthash_nonfatal_oom(obj) (dw__hash_oom = 1)

/* Column names are matched as SQLite matches them: ASCII case folded. */
unsigned dw__hash_nocase(const void *key, unsigned len);
#define HASH_FUNCTION(keyptr, keylen, hashv)                                   \
    ((hashv) = dw__hash_nocase((keyptr), (unsigned)(keylen)))
#define HASH_KEYCMP(a, b, n)                                                   \
    dw__strnicmp((const char *)(a), (const char *)(b), (size_t)(n))

#include <uthash.h>

#endif
