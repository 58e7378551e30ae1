/* The version of the library actually linked. */
#include "internal.h"

const char *dw_version(void) { return DW_VERSION; }

int dw_version_number(void) { return DW_VERSION_NUMBER; }
