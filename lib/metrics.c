/* Counters, clocks and the per-handle random numbers. */
#include <string.h>
#include <time.h>

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
