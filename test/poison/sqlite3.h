/* Put first on the include path by `make check-header`: the public headers
 * must not include SQLite's header (dualwrite.h names no database, and
 * dualwrite/sqlite.h declares the SQLite types it uses itself). */
#error "a public header of libdualwrite included sqlite3.h"
