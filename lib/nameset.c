/* Sets of column names (ignored columns, redacted columns), on uthash. */
#include <string.h>

#include "hash.h"

_Thread_local int dw__hash_oom;

unsigned dw__hash_nocase(const void *key, unsigned len)
{
    /* FNV-1a over the ASCII-lower-cased bytes. */
    const unsigned char *p = key;
    unsigned h = 2166136261u;
    for (unsigned i = 0; i < len; i++) {
        unsigned char c = p[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c + ('a' - 'A'));
        h = (h ^ c) * 16777619u;
    }
    return h;
}

struct dw_name_entry {
    UT_hash_handle hh;
    char name[];
};

int dw_name_set_add(dw_name_set *set, const char *name)
{
    if (dw_name_set_has(set, name))
        return DW_OK;
    size_t n = strlen(name);
    dw_name_entry *e = dw__calloc(sizeof *e + n + 1);
    if (!e)
        return DW_ENOMEM;
    memcpy(e->name, name, n + 1);
    dw__hash_oom = 0;
    HASH_ADD_KEYPTR(hh, set->head, e->name, (unsigned)n, e);
    if (dw__hash_oom) {
        /* uthash left the entry out; the set is as it was. */
        dw__free(e);
        return DW_ENOMEM;
    }
    return DW_OK;
}

int dw_name_set_has(const dw_name_set *set, const char *name)
{
    dw_name_entry *e = NULL;
    if (!set->head)
        return 0;
    HASH_FIND_STR(set->head, name, e);
    return e != NULL;
}

void dw_name_set_free(dw_name_set *set)
{
    dw_name_entry *e, *tmp;
    HASH_ITER(hh, set->head, e, tmp) {
        HASH_DEL(set->head, e);
        dw__free(e);
    }
    set->head = NULL;
}
