/* The contract: dropping the old model after a checked backup, and the
 * restore that puts it back. The work is the backend's; this checks the
 * arguments every backend shares. */
#include <string.h>

#include "internal.h"

static int check_call(dw_migration *h, const char *path, const char *what)
{
    dw__clear_error(h);
    if (!path || !path[0])
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "%s: the backup path is NULL or empty", what);
    /* SQLite may read these as names of something else than the file the
     * path names (a URI, or a database in memory), so the checks on the
     * file would be about another one. */
    if (strncmp(path, "file:", 5) == 0 || strcmp(path, ":memory:") == 0)
        return dw__error(h, DW_EMISUSE, DW_SIDE_NONE,
                         "%s: backup path \"%s\" would be read by SQLite as "
                         "a URI or an in-memory database; give a plain file "
                         "path (\"./%s\" names the file of that name)",
                         what, path, path);
    return dw__need_autocommit(h, what);
}

int dw_contract(dw_migration *h, const char *backup_path, const char *reason)
{
    if (!h)
        return DW_EMISUSE;
    int rc = check_call(h, backup_path, "dw_contract");
    return rc == DW_OK ? h->ops->contract(h, backup_path, reason) : rc;
}

int dw_restore(dw_migration *h, const char *backup_path, const char *reason)
{
    if (!h)
        return DW_EMISUSE;
    int rc = check_call(h, backup_path, "dw_restore");
    return rc == DW_OK ? h->ops->restore(h, backup_path, reason) : rc;
}
