/* Compiled by `make check-header` as strict C11 and as C++11: the public
 * header must stand alone and its _INIT macros must initialise cleanly. */
#include <dualwrite.h>

int dw_header_check(void);
int dw_header_check(void)
{
    dw_options opts = DW_OPTIONS_INIT;
    dw_read_options ropts = DW_READ_OPTIONS_INIT;
    dw_backfill_options bopts = DW_BACKFILL_OPTIONS_INIT;
    dw_verify_options vopts = DW_VERIFY_OPTIONS_INIT;
    dw_routing routing = DW_ROUTING_INIT;
    dw_metrics metrics = DW_METRICS_INIT;
    dw_value v = {DW_TYPE_INTEGER, 1, 0.0, NULL, 0};
    return (int)opts.version + (int)ropts.version + (int)bopts.version +
           (int)vopts.version + (int)routing.version + (int)metrics.version +
           v.type;
}
