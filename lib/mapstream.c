/* A backfill batch through a C mapping, streamed: the source rows of the
 * range read by one statement, each mapped by the callback and written by
 * one prepared upsert, the rows reused from row to row -- no statement
 * and no allocation per key. */
#include "internal.h"

typedef struct map_stream {
    int target;
    dw_row *out;      /* the mapped row, reused */
    int64_t read;     /* source rows mapped */
    int64_t written;  /* rows the upserts changed */
} map_stream;

static int map_one(dw_migration *h, const dw_value *key, const dw_row *in,
                   void *arg)
{
    map_stream *s = arg;
    int changed = 0;
    const int *slots = NULL;
    /* Written from the callback's own row, its columns where the
     * callback set them. */
    int rc = dw__map_callback_into(h, s->target, in, s->out, &slots);
    if (rc == DW_OK)
        rc = h->ops->upsert_changed(h, s->target, key, s->out, slots,
                                    &changed);
    if (rc != DW_OK) {
        dw__error_at_key(h, key, h->spec.side[s->target].nkey);
        return rc;
    }
    s->read++;
    s->written += changed;
    return DW_OK;
}

int dw__copy_mapped_range(dw_migration *h, int target, const dw_value *lo,
                          const dw_value *hi, int64_t *read,
                          int64_t *written)
{
    *read = 0;
    *written = 0;
    map_stream s = {target, NULL, 0, 0};
    dw_row *in = NULL;
    int rc = DW_OK;
    if (dw_row_new(&in) != DW_OK || dw_row_new(&s.out) != DW_OK)
        rc = dw__error(h, DW_ENOMEM, target, "out of memory");
    if (rc == DW_OK)
        rc = h->ops->range_rows(h, dw__other_side(target), lo, hi, in,
                                map_one, &s);
    if (rc == DW_OK) {
        *read = s.read;
        *written = s.written;
    }
    dw_row_free(in);
    dw_row_free(s.out);
    return rc;
}
