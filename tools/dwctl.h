/* dwctl -- what the parts of the command-line tool share: the parsed command
 * line, the exit codes, output in text or JSON, and the commands. */
#ifndef DWCTL_H
#define DWCTL_H

#include <stdint.h>
#include <stdio.h>

#include <sqlite3.h>

#include <dualwrite/sqlite.h>

/* Exit codes (the man page and `dwctl --help` list them). */
enum {
    EXIT_DONE = 0,
    EXIT_ERROR = 1,      /* the database or the library failed */
    EXIT_USAGE = 2,      /* a bad command line, or a request refused as
                            given (a spec the schema does not fit, ...) */
    EXIT_GATE = 3,       /* a gate refused the move */
    EXIT_DIVERGED = 4,   /* the models disagree */
    EXIT_BUSY = 5,       /* the database stayed locked; retry */
    EXIT_NOT_FOUND = 6,  /* no such migration */
    EXIT_DAMAGED = 7,    /* the stored state is damaged */
    EXIT_STOPPED = 130   /* interrupted after a committed batch; run again */
};

/* One option as given: "--name value" or "--name=value" (value NULL for a
 * switch). */
typedef struct opt {
    const char *name;
    const char *value;
} opt;

typedef struct dwctl {
    const char *db_path;
    sqlite3 *db;
    int json;
    /* The command's positional arguments, after DATABASE and COMMAND, and
     * its options (both arrays sized for the whole command line). */
    char **args;
    int nargs;
    opt *opts;
    int nopts;
} dwctl;

/* A command: its name, its handler, and which options it takes. */
typedef struct command {
    const char *name;
    int (*run)(dwctl *c);
    /* Positional arguments: at least min_args, at most max_args. */
    int min_args;
    int max_args;
    /* Options it accepts, "name" for a switch, "name=" for one taking a
     * value; space separated. --help is accepted everywhere, --json where
     * `reads` says. */
    const char *options;
    /* Whether it takes --json (the commands that read, and backfill). */
    int reads;
    const char *synopsis;
    const char *help;
} command;

extern const command dwctl_commands[];

/* The command line. */
const char *opt_value(const dwctl *c, const char *name);
int opt_given(const dwctl *c, const char *name);
/* Parses an option's integer value into *out (left alone when absent);
 * returns 0, or prints an error and returns -1. */
int opt_int(const dwctl *c, const char *name, long min, long max, int *out);
/* The same for a percentage: decimal digits, optionally a '.' and more,
 * from 0 to 100 (no sign, exponent, hex or spaces). */
int opt_percent(const dwctl *c, const char *name, double *out);

/* A word for a shell command line: as it is when it needs no quoting,
 * else in single quotes; to be freed with sqlite3_free(). */
char *shell_word(const char *s);

/* A library message with its names for flags and calls put in the tool's
 * words ("--force" for DW_STAGE_FORCE); to be freed with sqlite3_free(). */
char *tool_message(const char *msg);

/* Messages on stderr, prefixed "dwctl: ". */
void say_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The exit code for a library result, after printing msg for a failure
 * (with the library's names for its flags and calls put in the tool's
 * words). */
int fail(int rc, const char *msg);
/* The same, with the handle's message. */
int fail_h(int rc, dw_migration *h);

/* Opens the migration named by the first argument from its stored spec;
 * prints the error and returns its exit code on failure, 0 on success. */
int open_migration(dw_migration **out, dwctl *c);

/* A mismatch kind in words ("missing in new") and as a JSON name
 * ("missing_new"). */
const char *kind_words(int kind);
const char *kind_name(int kind);

/* The canary in one line: "10.00% of keys and cohort "x" at LIVE", or
 * "none"; to be freed with sqlite3_free() (NULL when out of memory). */
char *canary_text(const dw_routing *r);

/* A stage's name for text output, never NULL: a value that is no stage
 * (read from a damaged database) shows as "(not a stage)". (JSON output
 * shows it as null.) */
const char *stage_word(int stage);

/* The promotion stage's name, or NULL for none. */
const char *promote_name(const dw_routing *r);

/* Time as "2026-11-22 03:12:04 UTC" into buf. */
const char *format_time(char *buf, size_t size, double t);

/* JSON output: a writer that places commas and escapes strings. Nesting is
 * tracked per level; keys are given with the value (NULL inside arrays). */
typedef struct json_out {
    FILE *f;
    char *text;
    size_t size;
    int depth;
    int count[32];
} json_out;

/* Starts a document, built in memory; json_finish() prints it on stdout,
 * json_drop() forgets it (a command that failed halfway). */
void json_start(json_out *j);
void json_drop(json_out *j);
void json_object(json_out *j, const char *key);
void json_array(json_out *j, const char *key);
void json_end(json_out *j, char close);
void json_str(json_out *j, const char *key, const char *v);
void json_int(json_out *j, const char *key, int64_t v);
void json_num(json_out *j, const char *key, double v);
void json_bool(json_out *j, const char *key, int v);
void json_null(json_out *j, const char *key);
/* A member whose value is JSON text already (a stored spec). */
void json_raw(json_out *j, const char *key, const char *json);
/* Ends the document with a newline and prints it. */
void json_finish(json_out *j);
/* json_finish() after DW_OK, else json_drop(). */
void json_close(json_out *j, int rc);
/* Whether s is UTF-8 throughout. */
int utf8_valid(const char *s);
/* Appends a JSON string literal for s to a growing sqlite3_str (bytes that
 * are not UTF-8 as \u00XX, so the document stays valid JSON). */
void json_quote(sqlite3_str *out, const char *s);

/* Progress of a long command (backfill, verify): what it has done. */
typedef struct progress_view {
    int64_t done;
    int64_t total;
    double per_second;   /* 0 while not known */
    double seconds_left; /* 0 while not known */
    int finished;
} progress_view;

/* A progress display: on a terminal a bar redrawn in place, fitted to its
 * width (the terminal's, else $COLUMNS, else 80); otherwise a line about
 * once a second; with --json only on a terminal (stderr). */
typedef struct progress {
    const char *verb; /* "backfill" */
    const char *name; /* the migration */
    const char *unit; /* "rows" */
    FILE *out;        /* NULL: shown nowhere */
    int tty;
    double last_print;
    int drawn;
} progress;

void progress_start(progress *p, const dwctl *c, const char *verb,
                    const char *name, const char *unit);
/* After each step; draws when its time has come (always when finished). */
void progress_show(progress *p, const progress_view *v);
/* Erases a bar before other output on its terminal line. */
void progress_clear(progress *p);
/* Ends a bar that was drawn (drawn once more from v when not NULL). */
void progress_end(progress *p, const progress_view *v);
/* The bar's text for a terminal `columns` wide: at most columns - 1
 * characters, the bar dropped when too narrow. */
void progress_bar_text(char *buf, size_t size, int columns,
                       const progress_view *v, const char *unit);

/* The canary settings and overrides (canary without options). */
int show_canary(dwctl *c, dw_migration *h);

/* Commands (dwctl_show.c: what reads; dwctl_act.c: what changes). */
int cmd_list(dwctl *c);
int cmd_status(dwctl *c);
int cmd_history(dwctl *c);
int cmd_mismatches(dwctl *c);
int cmd_define(dwctl *c);
int cmd_remove(dwctl *c);
int cmd_stage(dwctl *c);
int cmd_backfill(dwctl *c);
int cmd_verify(dwctl *c);
int cmd_repair(dwctl *c);
int cmd_canary(dwctl *c);
int cmd_contract(dwctl *c);
int cmd_restore(dwctl *c);

#endif
