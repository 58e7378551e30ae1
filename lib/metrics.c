/* Counters, clocks and the per-handle random numbers. */
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

uint64_t dw__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double dw__wall_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* Milliseconds are enough for the history and the logs. */
    return (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1000.0;
}

void dw__rate_step(dw_rate *r, int64_t done)
{
    if (r->started)
        return;
    r->t0 = dw__now_ns();
    r->done0 = done;
    r->started = 1;
}

void dw__rate_get(const dw_rate *r, int64_t done, int64_t total,
                  double *per_second, double *seconds_left)
{
    *per_second = 0;
    *seconds_left = 0;
    double secs = r->started ? (double)(dw__now_ns() - r->t0) / 1e9 : 0;
    if (secs < DW__RATE_WARMUP_S || done <= r->done0)
        return;
    *per_second = (double)(done - r->done0) / secs;
    if (total > done)
        *seconds_left = (double)(total - done) / *per_second;
}

void dw__side_latency(dw_side_metrics *m, uint64_t ns)
{
    m->latency_count++;
    m->latency_total_ns += ns;
    if (ns > m->latency_max_ns)
        m->latency_max_ns = ns;
}

dw_side_metrics *dw__side_metrics(dw_migration *h, int side)
{
    return side == DW_SIDE_OLD ? &h->metrics.old_side : &h->metrics.new_side;
}

/* splitmix64's finaliser: spreads every input bit over the output. */
static uint64_t mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t dw__random_seed(const void *where)
{
    /* The kernel's randomness when it can be read; else the clocks, the
     * process id and addresses (which ASLR varies), mixed: the seed only
     * keeps handles opened together from sampling the same reads, so it
     * must differ between handles, not be secret. */
    uint64_t seed = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &seed, sizeof seed) != (ssize_t)sizeof seed)
            seed = 0;
        close(fd);
    }
    static _Atomic uint64_t calls;
    seed ^= mix64(dw__now_ns() ^ mix64((uint64_t)(uintptr_t)where) ^
                  mix64((uint64_t)getpid() ^ (uint64_t)(uintptr_t)&calls) ^
                  ((uint64_t)time(NULL) << 20) ^ mix64(++calls));
    return seed | 1; /* xorshift never leaves 0 */
}

uint64_t dw__random(dw_migration *h)
{
    /* xorshift64*: sampling and read order need speed, not secrecy. */
    uint64_t x = h->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    h->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

int dw_metrics_get(dw_metrics *out, const dw_migration *h)
{
    if (!out || !h)
        return DW_EMISUSE;
    if (out->version != 0 && out->version != DW_METRICS_VERSION)
        return DW_EMISUSE;
    *out = h->metrics;
    out->version = DW_METRICS_VERSION;
    return DW_OK;
}

void dw_metrics_reset(dw_migration *h)
{
    if (!h)
        return;
    memset(&h->metrics, 0, sizeof h->metrics);
    h->metrics.version = DW_METRICS_VERSION;
}
