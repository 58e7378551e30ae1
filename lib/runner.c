/* Who runs a backfill, and whether that process still does: each batch
 * stores its process id and host name with its cursor, and a reader tells
 * a live backfill from a dead one by them and by the time of the last
 * batch. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "internal.h"

void dw__runner_self(int64_t *pid, char *host, size_t size)
{
    *pid = (int64_t)getpid();
    if (gethostname(host, size) != 0)
        host[0] = '\0';
    /* POSIX leaves a name cut to size without its NUL. */
    host[size - 1] = '\0';
}

/* Whether the runner is known to be gone: only a process of this host
 * (by name) can be looked for. */
static int runner_gone(int64_t pid, const char *host)
{
    char here[DW__HOST_SIZE];
    int64_t self;
    dw__runner_self(&self, here, sizeof here);
    if (pid <= 0 || pid == self || !host[0] || strcmp(host, here) != 0)
        return 0;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

int dw__runner_activity(int64_t pid, const char *host, double last_progress,
                        double now)
{
    if (runner_gone(pid, host))
        return DW_BACKFILL_STOPPED;
    if (now - last_progress > DW_BACKFILL_SILENT_SECONDS)
        return DW_BACKFILL_SILENT;
    return DW_BACKFILL_RUNNING;
}
