/* Compiled by `make check-header`: the cmocka helper header compiles on its
 * own, after cmocka's prerequisites, as strict C11. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dualwrite_cmocka.h>
