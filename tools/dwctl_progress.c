/* dwctl's progress display for the long commands (backfill, verify): on a
 * terminal a bar redrawn in place, fitted to the terminal's width; else a
 * line about once a second. */
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "dwctl.h"

enum { BAR_MAX = 40, BAR_MIN = 10, DEFAULT_COLUMNS = 80 };

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The terminal's width: asked of the terminal itself, else $COLUMNS, else
 * 80. */
static int terminal_columns(FILE *f)
{
    struct winsize ws;
    if (ioctl(fileno(f), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    const char *env = getenv("COLUMNS");
    int n = env ? atoi(env) : 0;
    return n > 0 ? n : DEFAULT_COLUMNS;
}

/* "42s", "3m05s", "2h07m"; "--" when not known yet, or beyond a year (an
 * estimate from a total far too high: keys spread over a huge range). */
#define YEAR_S (365.0 * 24 * 3600)

static void time_left(char *buf, size_t size, const progress_view *v)
{
    double seconds = v->seconds_left;
    long s = seconds > 0 && seconds < YEAR_S ? (long)(seconds + 0.5) : 0;
    if (v->finished)
        snprintf(buf, size, "0s");
    else if (!(seconds > 0) || seconds >= YEAR_S)
        snprintf(buf, size, "--");
    else if (s < 60)
        snprintf(buf, size, "%lds", s);
    else if (s < 3600)
        snprintf(buf, size, "%ldm%02lds", s / 60, s % 60);
    else
        snprintf(buf, size, "%ldh%02ldm", s / 3600, s % 3600 / 60);
}

/* "1234 rows/s", or "-- rows/s" when not known yet. */
static void rate_text(char *buf, size_t size, const progress_view *v,
                      const char *unit)
{
    if (v->per_second > 0)
        snprintf(buf, size, "%.0f %s/s", v->per_second, unit);
    else
        snprintf(buf, size, "-- %s/s", unit);
}

static double share_done(const progress_view *v)
{
    double share = v->total > 0 ? (double)v->done / (double)v->total
                                : (v->finished ? 1.0 : 0.0);
    return share > 1.0 ? 1.0 : share;
}

void progress_bar_text(char *buf, size_t size, int columns,
                       const progress_view *v, const char *unit)
{
    double share = share_done(v);
    char left[32], rate[48], tail[160];
    time_left(left, sizeof left, v);
    rate_text(rate, sizeof rate, v, unit);
    snprintf(tail, sizeof tail, " %5.1f%%  %lld/%lld %s  %s  %s left",
             share * 100.0, (long long)v->done, (long long)v->total, unit,
             rate, left);
    /* The last column stays empty: writing there wraps on some
     * terminals, and every redraw would leave a line behind. */
    int room = columns - 1;
    int width = room - 2 - (int)strlen(tail);
    if (width > BAR_MAX)
        width = BAR_MAX;
    if (width < BAR_MIN) {
        snprintf(buf, size, "%.*s", room > 0 ? room : 0, tail + 1);
        return;
    }
    char bar[BAR_MAX + 1];
    int full = (int)(share * width + 0.5);
    memset(bar, '#', (size_t)full);
    memset(bar + full, '.', (size_t)(width - full));
    bar[width] = '\0';
    snprintf(buf, size, "[%s]%s", bar, tail);
}

static void draw_bar(progress *p, const progress_view *v)
{
    char line[512];
    progress_bar_text(line, sizeof line, terminal_columns(p->out), v,
                      p->unit);
    /* \r and erase-line: the bar is redrawn in place. */
    fprintf(p->out, "\r\033[K%s", line);
    fflush(p->out);
}

static void print_line(progress *p, const progress_view *v)
{
    char left[32], rate[48];
    time_left(left, sizeof left, v);
    rate_text(rate, sizeof rate, v, p->unit);
    fprintf(p->out, "%s %s: %lld/%lld %s (%.1f%%), %s, %s left\n", p->verb,
            p->name, (long long)v->done, (long long)v->total, p->unit,
            share_done(v) * 100.0, rate, left);
    fflush(p->out);
}

void progress_start(progress *p, const dwctl *c, const char *verb,
                    const char *name, const char *unit)
{
    memset(p, 0, sizeof *p);
    p->verb = verb;
    p->name = name;
    p->unit = unit;
    /* stdout, or stderr when stdout carries JSON; nowhere for JSON when
     * stderr is no terminal. */
    p->out = c->json ? stderr : stdout;
    p->tty = isatty(fileno(p->out));
    if (c->json && !p->tty)
        p->out = NULL;
}

void progress_show(progress *p, const progress_view *v)
{
    double t = now_seconds();
    /* A bar redrawn ten times a second, a line about once a second (and
     * always the first one, so a log shows the run began). */
    double every = p->tty ? 0.1 : 1.0;
    if (p->drawn && t - p->last_print < every && !v->finished)
        return;
    if (p->out && p->tty)
        draw_bar(p, v);
    else if (p->out)
        print_line(p, v);
    p->last_print = t;
    p->drawn = 1;
}

void progress_clear(progress *p)
{
    if (!p->out || !p->tty || !p->drawn)
        return;
    fputs("\r\033[K", p->out);
    fflush(p->out);
    p->last_print = 0; /* drawn again at the next step */
}

void progress_end(progress *p, const progress_view *v)
{
    if (!p->out || !p->tty || !p->drawn)
        return;
    if (v)
        draw_bar(p, v);
    fputc('\n', p->out);
}
