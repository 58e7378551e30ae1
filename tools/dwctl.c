/*
 * dwctl -- the command-line tool for whoever moves a migration along.
 *
 *   dwctl [--busy-timeout MS] DATABASE COMMAND [ARGS] [OPTIONS]
 *
 * It opens the database file, opens each migration from the spec stored
 * in it (dw_sqlite_open_stored) and calls the library, so every move goes
 * through the same rules and gates as an application's. This file reads the command
 * line, prints help and maps results to exit codes; dwctl_show.c holds the
 * commands that read, dwctl_act.c those that change something.
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dwctl.h"

#define DEFAULT_BUSY_MS 5000

const command dwctl_commands[] = {
    {"list", cmd_list, 0, 0, "", 1, "list",
     "Lists every migration stored in the database with its stage and a\n"
     "one-line health summary: backfill, last verification, logged\n"
     "mismatches and queued repairs. A migration that cannot be opened\n"
     "(say, a table renamed under it) is listed with the reason, and the\n"
     "exit code is 1.\n"},
    {"status", cmd_status, 1, 1, "", 1, "status NAME",
     "Shows where one migration stands: stage, spec, canary and overrides,\n"
     "backfill progress (running, with its process, or stopped, with how\n"
     "long ago), the last verification, the mismatch log and the repair\n"
     "queue, and the next step with whether its gate is open.\n"},
    {"define", cmd_define, 1, 1,
     "file= old= old-key= old-columns= new= new-key= new-columns= up= down= "
     "setup= reason= redefine",
     0,
     "define NAME --file SPEC.json [--reason TEXT] [--redefine]\n"
     "  define NAME --old TABLE --old-key COLS [--old-columns COLS]\n"
     "              --new TABLE --new-key COLS [--new-columns COLS]\n"
     "              [--up COLUMN=EXPR...] [--down COLUMN=EXPR...]\n"
     "              [--setup SQL] [--reason TEXT] [--redefine]",
     "Defines a migration whose mappings are SQL, at stage OFF. Both\n"
     "tables and every named column must exist. COLS is a comma-separated\n"
     "list; key columns correspond in order. Each --up gives one new-model\n"
     "column and the SQL expression over the old row that computes it (the\n"
     "first '=' separates them; none into a new model of the key alone, such\n"
     "as a link table); --down does the same from new to old and is\n"
     "needed to write the old model back at LIVE and RAMPDOWN. --setup is\n"
     "idempotent SQL run before the first dual write (dependent data):\n"
     "INSERT, UPDATE or DELETE statements only.\n"
     "--file reads the same from a JSON spec:\n"
     "  {\"old\": {\"table\": \"t\", \"key\": [\"id\"], \"columns\": [\"a\"]},\n"
     "   \"new\": {\"table\": \"t2\", \"key\": [\"id\"]},\n"
     "   \"up\": {\"sql\": {\"b\": \"upper(a)\"}},\n"
     "   \"down\": {\"sql\": {\"a\": \"lower(b)\"}}, \"setup\": \"...\"}\n"
     "Defining an existing migration with the same spec changes nothing;\n"
     "a different spec is refused unless --redefine is given (the stage is\n"
     "kept and the change recorded in the history).\n"},
    {"remove", cmd_remove, 1, 1, "reason=", 0,
     "remove NAME --reason TEXT",
     "Removes a stored migration, such as one defined by mistake, with\n"
     "all of its state: stage, spec, history, backfill, verifications,\n"
     "overrides, mismatch log and repair queue. The tables are not\n"
     "touched. Refused (exit 2) while it would leave data half-moved: only\n"
     "a migration at OFF with no keys routed to another stage (overrides,\n"
     "canary), or one contracted at COMPLETE, can be removed. Defining the\n"
     "name again starts clean; its history notes the removal and the\n"
     "reason.\n"},
    {"stage", cmd_stage, 2, 2, "reason= force check", 0,
     "stage NAME STAGE --reason TEXT [--force] [--check]",
     "Moves the migration to STAGE (OFF, DUAL_WRITE, SHADOW, LIVE,\n"
     "RAMPDOWN, COMPLETE; any case), through the library's rules: forward\n"
     "one stage at a time, backward any distance. LIVE and COMPLETE need a\n"
     "finished backfill and a clean verification of every key since. A\n"
     "closed gate exits with 3 and says what is missing. --force jumps\n"
     "stages or passes a closed gate; the history records it with the\n"
     "reason. --check only says whether the move would be allowed.\n"},
    {"backfill", cmd_backfill, 1, 1,
     "batch= batch-ms= pause-ms= restart", 1,
     "backfill NAME [--batch N] [--batch-ms N] [--pause-ms N] [--restart]",
     "Copies the existing rows from the trusted model to the other, in\n"
     "short batches. On a terminal it shows a progress bar (rows, rate,\n"
     "time left) as wide as the terminal; otherwise it prints a progress\n"
     "line about once a second.\n"
     "Ctrl-C stops it after the current batch (exit 130); running it again\n"
     "resumes where it stopped. --batch sets the first batch's rows;\n"
     "--batch-ms the batch time aimed at (default 20; -1 keeps --batch\n"
     "fixed); --pause-ms a pause between batches; --restart starts over.\n"},
    {"verify", cmd_verify, 1, 1, "report=", 1,
     "verify NAME [--report N]",
     "Compares every key of both models and stores the run; a clean run\n"
     "opens the gates into LIVE and COMPLETE, showing its progress as the\n"
     "backfill does. Exits with 4 when the models differ. --report sets\n"
     "how many divergent keys are shown (default 10).\n"},
    {"repair", cmd_repair, 1, 1, "", 1, "repair NAME",
     "Re-syncs, from the trusted model, every key the last verification\n"
     "found divergent and every key in the repair queue. Verify again\n"
     "afterwards: a gate needs a clean run.\n"},
    {"mismatches", cmd_mismatches, 1, 1, "limit= clear", 1,
     "mismatches NAME [--limit N] [--clear]",
     "Lists the mismatch log, most recently seen first (default limit\n"
     "20; 0 for all). Exits with 4 when the log holds entries. --clear\n"
     "empties the log after showing it (and exits with 0).\n"},
    {"history", cmd_history, 1, 1, "limit=", 1, "history NAME [--limit N]",
     "Lists the migration's history, oldest first: definitions, stage\n"
     "moves (forced ones with the gate they passed), backfills, routing\n"
     "changes, contracts and restores. --limit N shows the last N (0, the\n"
     "default, shows all).\n"},
    {"canary", cmd_canary, 1, 1,
     "percent= cohort= stage= add-keys= remove-keys= promote= clear reason= "
     "force",
     1,
     "canary NAME [--percent P] [--cohort SQL] [--stage STAGE]\n"
     "              [--promote STAGE|none] [--clear] [--reason TEXT] [--force]\n"
     "  canary NAME --add-keys FILE [--stage STAGE] [--reason TEXT]\n"
     "  canary NAME --remove-keys FILE [--reason TEXT]",
     "Without options, shows the canary. --percent puts that share of keys\n"
     "(by a stable hash) in the canary, --cohort the keys whose old row\n"
     "makes the SQL expression true ('' removes it); --stage is the stage\n"
     "those keys run at (needed the first time). --promote moves a key to\n"
     "STAGE when it is written. --clear removes the canary and promotion.\n"
     "Moving the canary's keys between stages that trust different models\n"
     "(either way) needs the gate open (a finished backfill and a clean\n"
     "verification since), or --force with a reason.\n"
     "--add-keys gives each key listed in FILE ('-' for stdin) an override\n"
     "at --stage (default: the canary stage, when a canary is set), synced\n"
     "in one transaction; --remove-keys removes theirs.\n"
     "One key per line: [42], [\"org-7\",3], or a bare 42 or org-7 for a\n"
     "one-column key (write [\"42\"] for a text that looks like a number);\n"
     "empty lines and lines starting with # are skipped.\n"},
    {"contract", cmd_contract, 1, 1, "backup= reason=", 0,
     "contract NAME --backup FILE [--reason TEXT]",
     "At COMPLETE, writes the old model to a new backup FILE, checks it,\n"
     "and drops the old model. Nothing is dropped if anything fails.\n"},
    {"restore", cmd_restore, 1, 1, "backup= reason=", 0,
     "restore NAME --backup FILE [--reason TEXT]",
     "Puts the old model back from a contract's backup and moves the\n"
     "migration to RAMPDOWN; run backfill and verify before going back\n"
     "further.\n"},
    {NULL, NULL, 0, 0, NULL, 0, NULL, NULL}};

static const char exit_codes_help[] =
    "Exit codes:\n"
    "  0    done\n"
    "  1    the database or the library failed (the message says why)\n"
    "  2    bad usage: an unknown command or option, a missing or malformed\n"
    "       argument, or a request refused as given (a stage jump without\n"
    "       --force, a backfill at OFF, a malformed spec, a spec the schema\n"
    "       does not fit, a name defined with another spec, a removal that\n"
    "       would leave data half-moved)\n"
    "  3    a gate refused the move (stage, canary, contract)\n"
    "  4    divergence: verify found differences, or mismatches are logged\n"
    "       (and were not cleared)\n"
    "  5    the database stayed locked (busy); nothing was applied, retry\n"
    "  6    no migration by that name in the database\n"
    "  7    the stored state is damaged (the message names the table and\n"
    "       row, or the migration whose stored spec is damaged)\n"
    "  130  backfill interrupted after a committed batch; run it again\n";

static void usage(FILE *f)
{
    fputs("usage: dwctl [--busy-timeout MS] DATABASE COMMAND [ARGS] "
          "[OPTIONS]\n"
          "       dwctl help [COMMAND] | --help | --version\n\n"
          "Moves libdualwrite migrations stored in an SQLite database along\n"
          "and shows where they stand.\n\nCommands:\n",
          f);
    for (const command *cmd = dwctl_commands; cmd->name; cmd++)
        fprintf(f, "  %s\n", cmd->synopsis);
    fputs("\nOptions for every command:\n"
          "  --json             print the result as one JSON document\n"
          "                     (commands that read, and backfill)\n"
          "  --help, -h         this command's help\n"
          "  --busy-timeout MS  wait this long for a locked database\n"
          "                     (default 5000)\n\n"
          "Text in --json output is UTF-8; a byte that is not (key text and\n"
          "reasons are stored as given) appears as \\u00XX. The member names\n"
          "are listed in dwctl(1), under JSON OUTPUT, and kept stable.\n\n",
          f);
    fputs(exit_codes_help, f);
    fputs("\nMigrations whose mappings are C callbacks are listed and their\n"
          "stage can be moved; their backfill, verification and repairs run\n"
          "inside the application.\n",
          f);
}

static void command_help(const command *cmd)
{
    printf("usage: dwctl DATABASE %s\n\n%s", cmd->synopsis, cmd->help);
    if (cmd->reads)
        printf("\n--json prints the result as one JSON document.\n");
    printf("\n%s", exit_codes_help);
}

static const command *find_command(const char *name)
{
    for (const command *cmd = dwctl_commands; cmd->name; cmd++)
        if (strcmp(cmd->name, name) == 0)
            return cmd;
    return NULL;
}

void say_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("dwctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* The library's messages name its C flags and calls; an operator knows
 * the options and commands. */
static const char *const tool_words[][2] = {
    {"DW_STAGE_FORCE", "--force"},
    {"DW_OPEN_REDEFINE", "--redefine"},
    {"dw_backfill()", "dwctl backfill"},
    {"dw_backfill", "dwctl backfill"},
    {"dw_verify()", "dwctl verify"},
    {"dw_verify", "dwctl verify"},
    {"dw_restore()", "dwctl restore"},
};

char *tool_message(const char *msg)
{
    sqlite3_str *out = sqlite3_str_new(NULL);
    const char *p = msg;
    while (*p) {
        size_t i, n = sizeof tool_words / sizeof *tool_words;
        for (i = 0; i < n; i++) {
            size_t len = strlen(tool_words[i][0]);
            /* Whole names only: not dw_verify inside dw_verify_last. */
            if (strncmp(p, tool_words[i][0], len) == 0 &&
                !(p[len] == '_' || (p[len] >= 'a' && p[len] <= 'z'))) {
                sqlite3_str_appendall(out, tool_words[i][1]);
                p += len;
                break;
            }
        }
        if (i == n)
            sqlite3_str_appendchar(out, 1, *p++);
    }
    return sqlite3_str_finish(out);
}

int fail(int rc, const char *msg)
{
    if (rc == DW_OK || rc == DW_MORE)
        return EXIT_DONE;
    char *words = tool_message(msg && msg[0] ? msg : dw_errstr(rc));
    say_error("%s", words ? words : msg && msg[0] ? msg : dw_errstr(rc));
    sqlite3_free(words);
    switch (rc) {
    case DW_EGATE:
        return EXIT_GATE;
    case DW_EBUSY:
        return EXIT_BUSY;
    case DW_ENOTFOUND:
        return EXIT_NOT_FOUND;
    case DW_ECORRUPT:
        return EXIT_DAMAGED;
    case DW_EMISUSE:
    case DW_ESCHEMA:
    case DW_ESPEC:
        /* The request as given is refused: a jump without --force, a
         * backfill at OFF, a malformed spec, a spec the schema does not
         * fit, a name already defined otherwise. */
        return EXIT_USAGE;
    default:
        return EXIT_ERROR;
    }
}

char *shell_word(const char *s)
{
    int plain = s[0] != '\0';
    for (const char *p = s; *p && plain; p++)
        plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                (*p >= '0' && *p <= '9') || strchr("_-./:+,=@%", *p);
    if (plain)
        return sqlite3_mprintf("%s", s);
    sqlite3_str *out = sqlite3_str_new(NULL);
    sqlite3_str_appendchar(out, 1, '\'');
    for (const char *p = s; *p; p++) {
        if (*p == '\'')
            sqlite3_str_appendall(out, "'\\''");
        else
            sqlite3_str_appendchar(out, 1, *p);
    }
    sqlite3_str_appendchar(out, 1, '\'');
    return sqlite3_str_finish(out);
}

int fail_h(int rc, dw_migration *h)
{
    /* A failure of the tool's own (out of memory) leaves the handle's
     * message at "not an error". */
    const char *msg = dw_errmsg(h);
    return fail(rc, strcmp(msg, "not an error") != 0 ? msg : dw_errstr(rc));
}

int open_migration(dw_migration **out, dwctl *c)
{
    char *err = NULL;
    int rc = dw_sqlite_open_stored(out, c->db, c->args[0], 0, &err);
    int code = fail(rc, err);
    dw_free(err);
    return code;
}

const char *kind_words(int kind)
{
    return kind == DW_MISMATCH_MISSING_NEW ? "missing in new"
           : kind == DW_MISMATCH_EXTRA_NEW ? "extra in new"
                                           : "different";
}

const char *kind_name(int kind)
{
    return kind == DW_MISMATCH_MISSING_NEW ? "missing_new"
           : kind == DW_MISMATCH_EXTRA_NEW ? "extra_new"
                                           : "different";
}

char *canary_text(const dw_routing *r)
{
    if (!(r->canary_percent > 0) && !r->canary_cohort)
        return sqlite3_mprintf("none");
    if (!r->canary_cohort)
        return sqlite3_mprintf("%.2f%% of keys at %s", r->canary_percent,
                               stage_word(r->canary_stage));
    return sqlite3_mprintf("%.2f%% of keys and cohort \"%s\" at %s",
                           r->canary_percent, r->canary_cohort,
                           stage_word(r->canary_stage));
}

const char *stage_word(int stage)
{
    const char *name = dw_stage_name(stage);
    return name ? name : "(not a stage)";
}

const char *promote_name(const dw_routing *r)
{
    return r->promote_stage == DW_PROMOTE_NONE
               ? NULL
               : stage_word(r->promote_stage);
}

const char *format_time(char *buf, size_t size, double t)
{
    time_t s = (time_t)t;
    struct tm tm;
    if (t <= 0 || !gmtime_r(&s, &tm) ||
        !strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm))
        snprintf(buf, size, "-");
    return buf;
}

const char *opt_value(const dwctl *c, const char *name)
{
    const char *v = NULL;
    /* The last one given wins, as usual. */
    for (int i = 0; i < c->nopts; i++)
        if (strcmp(c->opts[i].name, name) == 0)
            v = c->opts[i].value;
    return v;
}

int opt_given(const dwctl *c, const char *name)
{
    for (int i = 0; i < c->nopts; i++)
        if (strcmp(c->opts[i].name, name) == 0)
            return 1;
    return 0;
}

/* Decimal digits, after a '-' when `sign`; `point`: then optionally a '.'
 * and more digits. No spaces, no '+', no hex, no exponent. */
static int plain_number(const char *v, int sign, int point)
{
    if (sign && *v == '-')
        v++;
    const char *digits = v;
    while (*v >= '0' && *v <= '9')
        v++;
    if (v == digits)
        return 0;
    if (point && *v == '.') {
        const char *fraction = ++v;
        while (*v >= '0' && *v <= '9')
            v++;
        if (v == fraction)
            return 0;
    }
    return *v == '\0';
}

int opt_int(const dwctl *c, const char *name, long min, long max, int *out)
{
    const char *v = opt_value(c, name);
    if (!v)
        return 0;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (!plain_number(v, min < 0, 0) || errno || n < min || n > max) {
        say_error("--%s wants a whole number from %ld to %ld, not \"%s\"",
                  name, min, max, v);
        return -1;
    }
    *out = (int)n;
    return 0;
}

int opt_percent(const dwctl *c, const char *name, double *out)
{
    const char *v = opt_value(c, name);
    if (!v)
        return 0;
    double p = plain_number(v, 0, 1) ? strtod(v, NULL) : -1;
    if (!(p >= 0 && p <= 100)) {
        say_error("--%s wants a decimal number from 0 to 100 (such as 5 or "
                  "12.5), not \"%s\"",
                  name, v);
        return -1;
    }
    *out = p;
    return 0;
}

/* Whether `name` is in a command's option list, and whether it takes a
 * value: 1 a switch, 2 with a value, 0 unknown. */
static int option_kind(const command *cmd, const char *name, size_t len)
{
    if (len == 4 && strncmp(name, "help", 4) == 0)
        return 1;
    if (len == 4 && strncmp(name, "json", 4) == 0)
        return cmd->reads;
    if (len == 12 && strncmp(name, "busy-timeout", 12) == 0)
        return 2;
    const char *p = cmd->options;
    while (*p) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " =");
        if (n == len && strncmp(p, name, len) == 0)
            return p[n] == '=' ? 2 : 1;
        p += n;
        if (*p == '=')
            p++;
    }
    return 0;
}

static int usage_error(const command *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const command *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("dwctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (cmd)
        fprintf(stderr, "\nTry 'dwctl DATABASE %s --help'.\n", cmd->name);
    else
        fputs("\nTry 'dwctl --help'.\n", stderr);
    return EXIT_USAGE;
}

/* Reads the command's arguments and options (after COMMAND). */
static int parse_command_line(dwctl *c, const command *cmd, int argc,
                              char **argv)
{
    int only_args = 0;
    for (int i = 0; i < argc; i++) {
        char *a = argv[i];
        if (only_args || a[0] != '-' || a[1] == '\0') {
            c->args[c->nargs++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_args = 1;
            continue;
        }
        if (a[1] != '-')
            return usage_error(cmd, "unknown option %s", a);
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int kind = option_kind(cmd, name, len);
        if (!kind)
            return usage_error(cmd, "%s takes no such option", a);
        opt *o = &c->opts[c->nopts++];
        /* The name is cut at '=' in place: argv is ours to edit. */
        if (eq)
            a[2 + len] = '\0';
        o->name = name;
        o->value = eq ? eq + 1 : NULL;
        if (kind == 1 && eq)
            return usage_error(cmd, "--%s takes no value", o->name);
        if (kind == 2 && !eq) {
            if (i + 1 >= argc)
                return usage_error(cmd, "--%s needs a value", o->name);
            o->value = argv[++i];
        }
    }
    if (c->nargs < cmd->min_args)
        return usage_error(cmd, "%s: an argument is missing", cmd->name);
    if (c->nargs > cmd->max_args)
        return usage_error(cmd, "unexpected argument \"%s\"",
                           c->args[cmd->max_args]);
    c->json = opt_given(c, "json");
    return EXIT_DONE;
}

/* --help anywhere: the help of the first command named, else the whole. */
static int wants_help(int argc, char **argv)
{
    int help = 0;
    const command *cmd = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            help = 1;
        else if (!cmd && argv[i][0] != '-')
            cmd = find_command(argv[i]);
    }
    if (!help)
        return 0;
    if (cmd)
        command_help(cmd);
    else
        usage(stdout);
    return 1;
}

static int open_database(dwctl *c, int busy_ms)
{
    /* Never create a file: a mistyped path should not become an empty
     * database. */
    int rc = sqlite3_open_v2(c->db_path, &c->db, SQLITE_OPEN_READWRITE, NULL);
    if (rc != SQLITE_OK) {
        say_error("cannot open %s: %s", c->db_path,
                  c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        return EXIT_ERROR;
    }
    sqlite3_busy_timeout(c->db, busy_ms);
    sqlite3_extended_result_codes(c->db, 1);
    return EXIT_DONE;
}

static int parse_busy_ms(const char *v, int *out)
{
    char *end;
    errno = 0;
    long ms = strtol(v, &end, 10);
    if (!plain_number(v, 0, 0) || errno || ms > 86400000)
        return usage_error(NULL,
                           "--busy-timeout wants milliseconds (0 to "
                           "86400000), not \"%s\"",
                           v);
    *out = (int)ms;
    return EXIT_DONE;
}

/* Runs the command on the database, once the command line is read. */
static int run(dwctl *c, const command *cmd, int busy_ms)
{
    const char *busy = opt_value(c, "busy-timeout");
    int code = busy ? parse_busy_ms(busy, &busy_ms) : EXIT_DONE;
    if (code == EXIT_DONE)
        code = open_database(c, busy_ms);
    if (code == EXIT_DONE)
        code = cmd->run(c);
    /* Output that did not reach its file is a failure, JSON included. */
    if ((fflush(stdout) != 0 || ferror(stdout)) && code == EXIT_DONE) {
        say_error("writing the output failed: %s", strerror(errno));
        code = EXIT_ERROR;
    }
    sqlite3_close(c->db);
    return code;
}

int main(int argc, char **argv)
{
    if (wants_help(argc, argv))
        return EXIT_DONE;
    int i = 1, busy_ms = DEFAULT_BUSY_MS;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        if (strcmp(argv[i], "--version") == 0) {
            printf("dwctl %s (libdualwrite %s, SQLite %s)\n", DW_VERSION,
                   dw_version(), sqlite3_libversion());
            return EXIT_DONE;
        } else if (strncmp(argv[i], "--busy-timeout=", 15) == 0) {
            if (parse_busy_ms(argv[i] + 15, &busy_ms) != EXIT_DONE)
                return EXIT_USAGE;
        } else if (strcmp(argv[i], "--busy-timeout") == 0 && i + 1 < argc) {
            if (parse_busy_ms(argv[++i], &busy_ms) != EXIT_DONE)
                return EXIT_USAGE;
        } else {
            return usage_error(NULL, "unknown option %s before DATABASE",
                               argv[i]);
        }
    }
    if (i < argc && strcmp(argv[i], "help") == 0) {
        const command *cmd = i + 1 < argc ? find_command(argv[i + 1]) : NULL;
        if (i + 1 < argc && !cmd)
            return usage_error(NULL, "no command \"%s\"", argv[i + 1]);
        if (cmd)
            command_help(cmd);
        else
            usage(stdout);
        return EXIT_DONE;
    }
    if (argc - i < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    dwctl c;
    memset(&c, 0, sizeof c);
    c.db_path = argv[i];
    const command *cmd = find_command(argv[i + 1]);
    if (!cmd)
        return usage_error(NULL, "no command \"%s\"", argv[i + 1]);
    /* No more arguments or options than words on the command line. */
    c.args = sqlite3_malloc64(sizeof *c.args * (size_t)argc);
    c.opts = sqlite3_malloc64(sizeof *c.opts * (size_t)argc);
    int code;
    if (!c.args || !c.opts) {
        say_error("out of memory");
        code = EXIT_ERROR;
    } else {
        code = parse_command_line(&c, cmd, argc - i - 2, argv + i + 2);
        if (code == EXIT_DONE)
            code = run(&c, cmd, busy_ms);
    }
    sqlite3_free(c.args);
    sqlite3_free(c.opts);
    return code;
}
