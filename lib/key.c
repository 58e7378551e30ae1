/* A key on its way down: checked once where it enters the library, then one
 * value -- its typed values and, from the first use on, its key text -- for
 * routing, sync, the repair queue, the mismatch log and error messages. */
#include "internal.h"

void dw__key_init(dw_key *k, const dw_value *v, int n)
{
    k->v = v;
    k->n = n;
    dw_buf_init(&k->text);
}

int dw__key_take(dw_migration *h, dw_key *k, const dw_value *v, int n)
{
    int rc = dw__check_key(h, v, n);
    if (rc == DW_OK)
        dw__key_init(k, v, n);
    return rc;
}

const char *dw__key_str(dw_key *k)
{
    if (k->text.p)
        return k->text.p;
    dw__key_text(&k->text, k->v, k->n);
    if (!k->text.oom)
        return k->text.p;
    dw_buf_free(&k->text); /* a later use tries again */
    return NULL;
}

void dw__key_free(dw_key *k) { dw_buf_free(&k->text); }
