/* Internal declarations shared by the files of lib/. Not installed. */
#ifndef DW_INTERNAL_H
#define DW_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "dualwrite.h"

/* ---- memory: everything goes through the allocator of dw_set_allocator() - */

void *dw__malloc(size_t n);
void *dw__calloc(size_t n);
void *dw__realloc(void *p, size_t n);
void dw__free(void *p);
char *dw__strdup(const char *s);
char *dw__strndup(const char *s, size_t n);

/* ---- growable strings ---------------------------------------------------- */

typedef struct dw_buf {
    char *p;
    size_t len;
    size_t cap;
    int oom; /* sticky: once an append fails, the buffer stays failed */
} dw_buf;

void dw_buf_init(dw_buf *b);
void dw_buf_free(dw_buf *b);
void dw_buf_reset(dw_buf *b);
void dw_buf_add(dw_buf *b, const char *s, size_t n);
void dw_buf_puts(dw_buf *b, const char *s);
/* C's printf formats (vsnprintf), checked by the compiler. */
void dw_buf_printf(dw_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void dw_buf_vprintf(dw_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* A formatted text in library memory (dw__free() it); NULL when memory ran
 * out. */
char *dw__mprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *dw__vmprintf(const char *fmt, va_list ap)
    __attribute__((format(printf, 1, 0)));
/* Up to n bytes of s (fewer at a NUL), each single quote doubled: the
 * inside of an SQL string literal. */
void dw_buf_quoted(dw_buf *b, const char *s, size_t n);
/* A double as SQLite's "%!.17g" shows it: 17 significant digits, at least
 * one after the point (1.0, 1.0e+300), Inf, -Inf, NaN; -0.0 as 0.0. out
 * holds DW__DOUBLE_TEXT bytes. */
#define DW__DOUBLE_TEXT 40
void dw__format_double(char out[DW__DOUBLE_TEXT], double v);
/* Case-insensitive compares folding ASCII letters only (as SQLite folds
 * names): <0, 0 or >0; the first stops after n bytes. */
int dw__strnicmp(const char *a, const char *b, size_t n);
int dw__stricmp(const char *a, const char *b);
/* An SQL identifier in backticks, embedded backticks doubled. */
void dw_buf_ident(dw_buf *b, const char *name);
/* A side's table, in the main schema that dw_open() checked it in: a TEMP
 * table of the same name must not take its place. */
void dw_buf_table(dw_buf *b, const char *name);
/* `alias`.`a`, `alias`.`b`, ... (alias may be NULL); `first` says the list
 * opens its clause, else a comma precedes its first name too. */
void dw_buf_ident_list(dw_buf *b, const char *alias, char *const *names,
                       int n, int first);
/* SQL text from the spec (a mapping expression, setup SQL), with every
 * double-quoted token turned into a backtick-quoted identifier. Only for
 * text that prepared with double-quoted string literals off, where such a
 * token can only be an identifier: the meaning is kept, and no later
 * re-prepare can turn a vanished name into a string. */
void dw_buf_sql(dw_buf *b, const char *sql);
/* 1 when SQL text is one self-contained piece: parentheses balanced and
 * never closing more than were opened, no ';', every quote and block
 * comment closed (so it cannot close or end what it is put inside). */
int dw_sql_balanced(const char *sql);
/* Where the first token of SQL text starts: past white space and
 * comments. */
const char *dw_sql_skip_space(const char *sql);
/* 1 when the n bytes are well-formed UTF-8 (no overlong forms, no
 * surrogates). */
int dw_utf8_valid(const char *s, size_t n);
/* Calls fn with the name of each function SQL text calls (a bare or
 * quoted name before '(', quotes left off; n bytes, not NUL-terminated)
 * and where its arguments start (past the '('), and with each
 * CURRENT_TIME, CURRENT_DATE and CURRENT_TIMESTAMP (args NULL); stops at
 * fn's first non-zero return, which it returns. */
typedef int (*dw_call_fn)(const char *name, size_t n, const char *args,
                          void *arg);
int dw_sql_each_call(const char *sql, dw_call_fn fn, void *arg);
/* The number of arguments of a call whose list starts at args (past its
 * '('; up to the matching ')'), and in *has_word whether one of them is,
 * whole, a string literal equal to word in any case ('now'). */
int dw_sql_call_args(const char *args, const char *word, int *has_word);
/* 1 when the keyword appears in SQL text outside quotes and comments. */
int dw_sql_has_word(const char *sql, const char *word);
/* 1 when the name appears in SQL text as an identifier, bare or quoted
 * ("name", `name`, [name]), case-insensitively, outside string literals
 * and comments. */
int dw_sql_names(const char *sql, const char *name);
/* before, dw_buf_sql(sql), after. */
void dw_buf_sql_in(dw_buf *b, const char *before, const char *sql,
                   const char *after);
/* A JSON string literal. */
void dw_buf_json(dw_buf *b, const char *s, size_t n);
/* Hands the text over (caller frees with dw__free); NULL after OOM. */
char *dw_buf_take(dw_buf *b);

/* ---- JSON -------------------------------------------------------------------
 * A strict RFC 8259 parser (lib/json.c) for the JSON the library owns: specs
 * given as text and specs read back from the database. Invalid UTF-8, lone
 * surrogate escapes, trailing text and nesting past the limit are refused;
 * members stay in document order, duplicates included (dw_json_duplicate()
 * finds them, for callers that refuse them with their own words). */

typedef enum dw_json_type {
    DW_JSON_NULL,
    DW_JSON_FALSE,
    DW_JSON_TRUE,
    DW_JSON_NUMBER,
    DW_JSON_STRING,
    DW_JSON_ARRAY,
    DW_JSON_OBJECT
} dw_json_type;

/* One value of a parsed text; everything lives in its dw_json_doc. */
typedef struct dw_json dw_json;
struct dw_json {
    dw_json_type type;
    /* A member of an object: its name, decoded (NUL-terminated; name_len
     * bytes, which may hold a NUL), and where its quote opens. NULL for an
     * array entry and the root. */
    const char *name;
    size_t name_len;
    size_t name_offset;
    /* A string: its text decoded from escapes (NUL-terminated; len bytes,
     * which may hold a NUL). A number: its literal as written. Else NULL. */
    const char *text;
    size_t len;
    /* An array's or object's entries, in document order, and their
     * number. */
    const dw_json *first;
    const dw_json *next;
    int count;
    /* Where the value starts: byte offset, line and column (from 1,
     * columns counted in bytes). */
    size_t offset;
    int line, column;
};

typedef struct dw_json_doc dw_json_doc;

/* What was wrong: code DW_EMISUSE (the text is not JSON) or DW_ENOMEM;
 * where (byte offset, line, column from 1); msg says what and where
 * ("expected ':' after a member name at line 1, column 9"), or "out of
 * memory". Filled without allocating. */
typedef struct dw_json_error {
    int code;
    size_t offset;
    int line, column;
    char msg[128];
} dw_json_error;

/* Nesting of arrays and objects refused past this (max_depth 0). */
#define DW_JSON_MAX_DEPTH 64

/* Parses len bytes of text (no NUL needed) into *out, which the caller
 * frees with dw_json_free(); returns DW_OK, or err's code with *out NULL.
 * max_depth 0 means DW_JSON_MAX_DEPTH. */
int dw_json_parse(const char *text, size_t len, int max_depth,
                  dw_json_doc **out, dw_json_error *err);
/* The same, but bytes of 0x80 and over in strings are taken as they are,
 * well-formed UTF-8 or not: for JSON the library wrote itself from bytes
 * it does not check -- key text of TEXT keys, stored specs naming tables
 * and columns as the catalog spells them -- which it must read back
 * whole. */
int dw_json_parse_bytes(const char *text, size_t len, int max_depth,
                        dw_json_doc **out, dw_json_error *err);
void dw_json_free(dw_json_doc *doc);
/* The top value (never NULL for a parsed document). */
const dw_json *dw_json_root(const dw_json_doc *doc);
/* The first value (in document order) whose string text or member name
 * holds a NUL character, or NULL. */
const dw_json *dw_json_nul(const dw_json_doc *doc);
/* The first member of the object named name, or NULL (also when object is
 * not an object). */
const dw_json *dw_json_get(const dw_json *object, const char *name);
/* The first member of the object whose name an earlier member has, or
 * NULL. */
const dw_json *dw_json_duplicate(const dw_json *object);
/* 1 with *out set when v is a number written as an integer (no fraction,
 * no exponent) that fits 64 bits; else 0. */
int dw_json_int64(const dw_json *v, int64_t *out);

/* ---- digests --------------------------------------------------------------- */

typedef struct dw_sha256 {
    uint32_t h[8];
    uint64_t total;
    unsigned char block[64];
    size_t used;
} dw_sha256;

void dw_sha256_init(dw_sha256 *s);
void dw_sha256_update(dw_sha256 *s, const void *data, size_t n);
void dw_sha256_final(dw_sha256 *s, unsigned char out[32]);
/* Lower-case hex of the first nbytes of a digest into out (2*nbytes+1). */
void dw_hex(char *out, const unsigned char *bytes, size_t nbytes);
/* Feeds a value in a form that tells types apart. */
void dw_sha256_value(dw_sha256 *s, const dw_value *v);

/* ---- values and rows --------------------------------------------------------- */

int dw__value_valid(const dw_value *v);
/* Why a value cannot be (part of) a key -- "is not INTEGER or TEXT", "is
 * malformed", a TEXT holding a NUL -- or NULL when it can: the one check
 * of every key a caller passes in. */
const char *dw__key_value_problem(const dw_value *v);
/* Byte length of a text or blob value, resolving n == -1. */
int dw__value_len(const dw_value *v);
/* Appends the key as JSON-style text: [42] or ["org-7",3]. */
void dw__key_text(dw_buf *b, const dw_value *key, int nkey);
/* Reads key text (len bytes) back into the nkey typed values it holds
 * (lib/keytext.c, on the JSON parser): an integer literal is INTEGER (64
 * bits), a number with a fraction or exponent a finite REAL, a string TEXT
 * (holding no NUL, as keys cannot). *vals is one block, the values then
 * their texts' bytes (NUL-terminated), freed with dw__free(). DW_OK;
 * DW_ENOMEM; DW_ERROR when the text is no key of nkey values, with `why`
 * ("it has 2 values, the key has 1") saying what is wrong. */
int dw__key_parse(const char *text, size_t len, int nkey, dw_value **vals,
                  char *why, size_t why_size);
/* dw__key_parse() of key text the library stored, as a key of the
 * handle's migration: DW_OK, or DW_ENOMEM or DW_ERROR ("stored key [\"o\",1]
 * is not a key of migration \"pairs\" (why)") with the handle's error
 * set. */
int dw__stored_key(dw_migration *h, const char *text, dw_value **vals);
/* A key the core holds, read from a range or from stored state (unlike
 * dw_key, which borrows the caller's values): its typed values (one block
 * with their texts' bytes) and its key text, both owned; v NULL when there
 * is no key. The range ops take the values as bounds and give keys back
 * this way. */
typedef struct dw_held_key {
    dw_value *v;
    char *text;
} dw_held_key;
/* Makes k (cleared first) a copy of the nkey values with their key text:
 * DW_OK or DW_ENOMEM (k then empty). */
int dw__held_key_set(dw_held_key *k, const dw_value *v, int nkey);
/* Makes k (cleared first) the key stored as `text` (dw__stored_key()): its
 * values, and their key text as dw__key_text() writes it (whatever the
 * stored spelling); errors as there. */
int dw__held_key_read(dw_migration *h, dw_held_key *k, const char *text);
void dw__held_key_clear(dw_held_key *k);
/* "text(9):3f2a91c07b5d4e18" -- type, length and digest. */
void dw__value_desc_digest(dw_buf *b, const dw_value *v);
/* The value itself, SQL-literal style, long values shortened. */
void dw__value_desc_raw(dw_buf *b, const dw_value *v);
/* Deep copy of a row into an empty row. */
int dw__row_copy(dw_row *dst, const dw_row *src);
/* dw_row_set() for a value known to be valid (a backend's row reader). */
int dw__row_put(dw_row *row, const char *name, const dw_value *v);
/* Puts valid *v in the next slot under the name it kept from before the
 * last clear: a row filled again in the same column order. DW_EMISUSE
 * when it kept no name there. */
int dw__row_put_next(dw_row *row, const dw_value *v);
/* dw__row_put_next() without copying: a TEXT or BLOB value's bytes stay
 * the caller's, who keeps them alive until the row is cleared, refilled
 * or freed (a statement's current row, read by a callback). */
int dw__row_ref_next(dw_row *row, const dw_value *v);
/* How many times a slot was looked for by name in row (dw_row_get(),
 * dw_row_find(), a put by name), since it was made: tests check that
 * rows filled by position, and columns found once, stay so. */
uint64_t dw__row_lookups(const dw_row *row);

/* ---- name sets (uthash) ------------------------------------------------------ */

typedef struct dw_name_entry dw_name_entry;
typedef struct dw_name_set {
    dw_name_entry *head;
} dw_name_set;

int dw_name_set_add(dw_name_set *set, const char *name);
int dw_name_set_has(const dw_name_set *set, const char *name);
void dw_name_set_free(dw_name_set *set);

/* ---- the migration spec (owned copies, names as the schema spells them) ---- */

typedef struct dw_side_def {
    char *table;
    char **key;
    int nkey;
    char **cols;
    int ncols;
    /* No columns were given: validation fills cols (ncols -1 until then). */
    int cols_default;
} dw_side_def;

/* A mapping into one target side: SQL expressions aligned with the target's
 * columns, or a C callback. */
typedef struct dw_map_def {
    char **exprs; /* exprs[i] computes target cols[i]; NULL when none */
    dw_map_fn fn;
    int present;
    /* None was given and the target is its key alone: validation made an
     * SQL mapping of no expressions (undone with the validation). */
    int implied;
    /* A JSON spec gave {"sql":{}}: no mapping, and a refusal unless the
     * target is its key alone. */
    int none_given;
} dw_map_def;

typedef struct dw_spec {
    char *name;
    dw_side_def side[3]; /* indexed by DW_SIDE_OLD, DW_SIDE_NEW */
    dw_map_def map[3];   /* indexed by target side: [NEW] = up, [OLD] = down */
    void *map_payload;
    char *map_version;
    int same_table;
    /* Mapping pairs as given, until validation aligns them with columns. */
    dw_column_map *raw_map[3];
    int nraw_map[3];
    char *setup_sql; /* NULL when none */
} dw_spec;

/* ---- a table as the database's catalog describes it ---------------------------
 * Filled by the backend's describe_table(), read by the validation rules of
 * lib/validate.c; every string is owned by the description. */

/* How a column's values compare and convert, whatever the database calls
 * it: numbers, text, or values kept as given. */
enum { DW_CLASS_NUMERIC = 'N', DW_CLASS_TEXT = 'T', DW_CLASS_NONE = 'B' };

typedef struct dw_col_desc {
    char *name;      /* as the schema spells it */
    char *type;      /* declared type as written, "" when none */
    char type_class; /* DW_CLASS_... */
    int not_null;
    int generated;   /* hidden or computed: no statement writes it */
    int pk;          /* position in the primary key from 1, 0 when not in it */
    char *coll; /* declared collation (BINARY by default); NULL: unknown */
} dw_col_desc;

/* A unique index or constraint: its key columns in order. */
typedef struct dw_unique_desc {
    char **cols;  /* NULL where a column is an expression */
    char **colls; /* each column's collation name */
    int ncols;
    int partial;
    char *name;   /* the index's name, for messages */
    int primary;  /* the PRIMARY KEY's index */
} dw_unique_desc;

typedef struct dw_fk_desc {
    char **cols;      /* in this table */
    char **ref_cols;  /* in ref_table, aligned with cols; NULL: its key */
    int ncols;
    char *ref_table;
} dw_fk_desc;

typedef struct dw_table_desc {
    char *name; /* as the schema spells it */
    int view;   /* a view, not a table (nothing else is described) */
    dw_col_desc *cols;
    int ncols;
    dw_unique_desc *uniques;
    int nuniques;
    dw_fk_desc *fks;
    int nfks;
} dw_table_desc;

void dw__table_desc_free(dw_table_desc *t);

/* What the database said of SQL text from the spec it was asked to check
 * (a mapping expression, one setup statement); errmsg is owned. */
typedef struct dw_sql_check {
    int prepared;  /* 0: refused, errmsg says why */
    char *errmsg;  /* the database's words; NULL when prepared */
    int aggregate; /* refused for an aggregate or window function */
    int empty;     /* nothing but white space and comments */
    int trailing;  /* text follows the one statement */
    int readonly;  /* prepared, and it changes nothing */
    int columns;   /* the columns it returns */
    int params;    /* the parameters it has */
} dw_sql_check;

void dw__sql_check_free(dw_sql_check *c);

/* Checks the spec against the schema (lib/validate.c): fills default column
 * lists, respells names as the schema does, aligns SQL mappings with target
 * columns, sets h->key_class and h->keys_fold, and has the backend build
 * its row statements. May run again on the same handle (dw_open's second
 * attempt): it starts over from the spec as given (dw__spec_unvalidate())
 * and from no row statements, so what the first run derived neither leaks
 * nor outlives a schema change. */
int dw__validate(dw_migration *h);

/* ---- stored state of the longer operations ----------------------------------- */

enum { DW_BF_NONE = 0, DW_BF_RUNNING = 1, DW_BF_DONE = 2, DW_BF_STALE = 3 };

/* The stored backfill. Keys are key text ([42], ["a",3]), owned. */
#define DW__HOST_SIZE 64

typedef struct dw_backfill_state {
    int state;     /* DW_BF_... */
    int source;
    char *cursor;  /* last key done; NULL before the first batch */
    char *end_key; /* largest source key at the start; NULL: source empty */
    int64_t rows_done, rows_total, rows_written, rows_deleted, batches;
    double started;
    double updated; /* when stored last (wall time) */
    /* The process that stored it last; 0 and "" when not known. */
    int64_t runner_pid;
    char runner_host[DW__HOST_SIZE];
} dw_backfill_state;

void dw__backfill_state_free(dw_backfill_state *s);

/* The version of the state tables this library writes. */
int dw__state_schema_version(void);

/* This process: its id and host name (cut to size). */
void dw__runner_self(int64_t *pid, char *host, size_t size);
/* A DW_BACKFILL_RUNNING, _STOPPED or _SILENT for a backfill under way,
 * last stored by pid on host at last_progress. */
int dw__runner_activity(int64_t pid, const char *host, double last_progress,
                        double now);

/* What the LIVE and COMPLETE gates look at. */
typedef struct dw_gate_facts {
    int backfill;           /* DW_BF_... */
    dw_verify_result last;  /* the last full finished run since, if any */
    /* The stage entered COMPLETE (the old model stopped being written)
     * after the last finished backfill: the old model may lack rows. */
    int old_behind;
} dw_gate_facts;

/* One key of a verification chunk: present on which sides, its values. */
typedef struct dw_verify_row {
    int in_old, in_new;
    const dw_value *key; /* nkey values */
    const dw_value *a;   /* old: mapped up (SQL mapping) or as stored */
    const dw_value *b;   /* new model columns */
} dw_verify_row;

typedef int (*dw_key_fn)(dw_migration *h, const dw_value *key, void *arg);
/* One row of a side in a range: its key, and the row itself. */
typedef int (*dw_range_row_fn)(dw_migration *h, const dw_value *key,
                               const dw_row *row, void *arg);
typedef int (*dw_keytext_fn)(dw_migration *h, const char *key, void *arg);
typedef int (*dw_verify_row_fn)(dw_migration *h, const dw_verify_row *row,
                                void *arg);
/* verify_range()'s flags. */
enum { DW_VR_SAME_IN_SQL = 1, DW_VR_KEYS_TYPED = 2 };

/* The routing settings, loaded with the stage. */
typedef struct dw_route_state {
    int buckets;       /* keys whose bucket is below are in the canary */
    int canary_stage;
    char *cohort;      /* predicate over the old row, owned; NULL: none */
    int promote_stage; /* DW_PROMOTE_NONE: none */
    int64_t overrides; /* overrides stored */
} dw_route_state;

/* The stored migration as migration_find() reads it. */
typedef struct dw_stored_facts {
    int64_t id;
    int stage;
    int contracted;
    char digest[65]; /* the stored spec's digest */
    /* The stored spec text (dw__free it) when its digest is not the one
     * asked about; NULL when it is. */
    char *spec;
} dw_stored_facts;

/* The stored stage and what is loaded with it (stage_load()). */
typedef struct dw_stage_facts {
    int stage;
    int contracted;
    /* The stored spec's digest is still h->digest (else the migration was
     * redefined since the handle was opened). */
    int spec_same;
    dw_route_state route; /* route.cohort owned by the caller */
} dw_stage_facts;

/* ---- the contract's facts, as the backend gives them --------------------------- */

/* The old model as a contract backs it up and drops it: `cols` of `table`
 * in rows ordered by `key`. A whole table (two tables), or the key and the
 * old columns of the table both sides share (cols[nkey..] are dropped). */
typedef struct dw_old_model {
    char *table;
    char **cols;
    int ncols;
    char **key;
    int nkey;
    int whole_table;
    /* How the backend recreates it, in its own terms: the core only
     * compares these and hands them back. NULL when not used. */
    char *table_def;   /* whole table: its definition */
    char *after_rows;  /* whole table: what is made after the rows */
    char *column_defs; /* columns: their declarations */
} dw_old_model;

void dw__old_model_free(dw_old_model *m);

/* What a backup records besides the model (owned when loaded: dw__free
 * the texts). */
typedef struct dw_backup_record {
    char *migration;
    char *spec_digest;
    int64_t rows;
    char sha256[65];
} dw_backup_record;

/* Another stored migration as the backend stores it (strings valid
 * during the callback only): the core parses its spec and decides what its
 * use of the old model means (lib/contract.c). */
typedef struct dw_other_migration {
    int64_t id;
    const char *name;
    const char *spec;    /* the stored spec text; NULL when none */
    int stage;
    int contracted;
    int canary;          /* canary buckets or a cohort are set */
    int canary_stage;
    const char *cohort;  /* the canary cohort's predicate; NULL: none */
    int lowest_override; /* lowest stage of a key override; INT_MAX: none */
} dw_other_migration;
typedef int (*dw_other_fn)(dw_migration *h, const dw_other_migration *m,
                           void *arg);

/* ---- the backend seam ------------------------------------------------------------
 * Every SQL statement and every database call of the library sits behind this
 * table, so that another database is an added file, not a rewrite. */

/* What a backend found of the transactions around begin, commit, rollback
 * and settle: the core (lib/scope.c) decides what they mean for the call. */
typedef struct dw_txn_facts {
    /* The caller's transaction, open when the call began, is gone: the
     * database rolled it back, or SQL a callback ran ended it. */
    int caller_gone;
    /* DW_LEFT_TXN or DW_LEFT_SAVEPOINT: our rollback could not run (it
     * lacked memory, every try) and this transaction or savepoint of ours
     * is still open on the connection; 0 when nothing of ours is. */
    int left_open;
    /* At a commit: the database ended the scope the call began (it rolled
     * our transaction back, or SQL a callback ran ended it), so nothing
     * of it is left to commit. */
    int scope_gone;
} dw_txn_facts;

typedef struct dw_backend_ops {
    const char *name;
    int (*attach)(dw_migration *h);
    void (*detach)(dw_migration *h);
    /* Creates the state tables if needed and checks their version. In a
     * read scope it writes nothing: DW__NEED_WRITE when it would create,
     * upgrade or put back a table. */
    int (*state_init)(dw_migration *h);
    /* The catalog, for the validation rules of lib/validate.c. Table names
     * no application table may have: those starting with reserved_prefix
     * (the database's own), and the state tables (NULL-terminated). */
    const char *reserved_prefix;
    const char *const *state_tables;
    /* Describes the table or view `name` (any case) of the schema dw_open()
     * works in into *desc (empty on entry; the caller frees it with
     * dw__table_desc_free() whatever the return). DW_OK, DW_ENOTFOUND with
     * no message when there is none, or an error with the message set,
     * naming `side`. */
    int (*describe_table)(dw_migration *h, int side, const char *name,
                          dw_table_desc *desc);
    /* Prepares, never runs, a mapping expression over one row of table
     * `source` (in the shape the row statements use it) with
     * double-quoted string literals off, and says what came of it in *out
     * (caller frees). DW_OK, or DW_ENOMEM with no message set. */
    int (*check_expr)(dw_migration *h, const char *source, const char *expr,
                      dw_sql_check *out);
    /* The same for the first statement of setup SQL; *tail is where the
     * next starts (NULL or sql itself: none). */
    int (*check_statement)(dw_migration *h, const char *sql,
                           dw_sql_check *out, const char **tail);
    /* The spec text stored for the handle's migration (h->spec.name), as
     * a copy the caller frees with dw__free(); *spec NULL when none is
     * stored. DW_OK, or an error with the message set. (After the
     * contract the core reads the old side from it: lib/validate.c.) */
    int (*stored_spec)(dw_migration *h, char **spec);
    /* Builds the row statements of the validated spec and (unless the old
     * model was contracted) prepares every one, so a problem shows at
     * open; DW_ESCHEMA with the database's message when one does not. */
    int (*rows_prepare)(dw_migration *h);
    /* Drops the row statements built so far (validation starts over). */
    void (*rows_forget)(dw_migration *h);
    /* Transactions. The core calls them through lib/scope.c, which turns
     * the facts they report (dw_txn_facts, zeroed by the caller) into
     * codes and messages; a member sets the handle's error only for a
     * statement of its own that failed.
     * begin: begins a write (BEGIN IMMEDIATE or SAVEPOINT) or read scope;
     * *scope says what was begun (0: nothing, inside the caller's
     * transaction for a read). On failure *scope may still be set: then
     * what the begin opened must be rolled back. */
    int (*begin)(dw_migration *h, int write, int *scope);
    /* Ends what an earlier call could not roll back, left open as `left`
     * (DW_LEFT_TXN or DW_LEFT_SAVEPOINT): nothing when the application
     * ended it meanwhile. f->left_open says what is still open. */
    void (*settle)(dw_migration *h, int left, dw_txn_facts *f);
    /* Commits (or releases the savepoint of) scope. With DW_OK and
     * nothing done: f->caller_gone when the caller's transaction, open
     * when the call began, is gone; f->scope_gone when the scope itself
     * is. Else DW_OK, or a code with the message set and the scope still
     * open for a rollback. */
    int (*commit)(dw_migration *h, int scope, dw_txn_facts *f);
    /* Rolls scope back, trying again when a try fails; sets no error of
     * its own (the handle's error is the core's to keep). f says whether
     * the caller's transaction is gone and what stayed open. */
    void (*rollback)(dw_migration *h, int scope, dw_txn_facts *f);
    /* A nested savepoint around one side's write (repair-queue policy). */
    int (*side_savepoint)(dw_migration *h);
    int (*side_release)(dw_migration *h, int rollback);
    /* 1 when a transaction is open on the connection (the caller's, or
     * one of ours), 0 outside any. */
    int (*in_transaction)(dw_migration *h);
    /* Cheap check that nothing was committed since the stage was cached. */
    int (*state_unchanged)(dw_migration *h);
    /* Outside any transaction: 1 when no transaction is open on the
     * connection and nothing was committed since the stage was last
     * remembered as cached (the core checks it is cached, and that no call
     * left anything to settle), so one statement may run without a
     * transaction of ours. */
    int (*idle)(dw_migration *h);
    /* After statements run outside any transaction: whether the snapshot
     * the last of them read still held the cached state. */
    int (*state_seen_unchanged)(dw_migration *h);
    void (*state_remember)(dw_migration *h);
    /* The stored migration named h->spec.name, as stored (lib/migration.c
     * decides what it means): *f filled, f->spec NULL unless the stored
     * digest differs from `digest`. DW_OK, DW_ENOTFOUND (no message) when
     * none is stored, DW_ECORRUPT naming the row when its stage or
     * contracted flag is no value operations write, or an error. */
    int (*migration_find)(dw_migration *h, const char *digest,
                          dw_stored_facts *f);
    /* Stores a new migration under h->spec.name with spec_text and digest,
     * at stage OFF, clears what a deleted one of the same id left, and
     * records the definition (with the note a removal left under the
     * name); *id: its id. */
    int (*migration_define)(dw_migration *h, const char *spec_text,
                            const char *digest, const char *reason,
                            int64_t *id);
    /* Stores spec_text and digest as migration h->id's spec, marks its
     * backfill stale and records the redefinition at `stage`. */
    int (*migration_redefine)(dw_migration *h, const char *spec_text,
                              const char *digest, const char *reason,
                              int stage);
    /* Whether a stored migration of this name was contracted (before
     * validation, which then takes the old side from the stored spec). */
    int (*migration_peek)(dw_migration *h, int *contracted);
    /* Reads the stage, the contracted flag, the routing settings and
     * whether the stored spec is still h->digest, in one statement, into
     * *f (f->route.cohort owned by the caller: dw__free it, also after a
     * failure). DW_ECORRUPT naming the row when a value is none that
     * operations write. */
    int (*stage_load)(dw_migration *h, dw_stage_facts *f);
    /* Stores the stage and its history entry; entering OFF or COMPLETE
     * marks a backfill stale. */
    int (*stage_store)(dw_migration *h, int from, int to, const char *reason,
                       int forced, const char *detail);
    /* Stores the stage alone (no history entry, no backfill marked
     * stale): for an operation that records its own entry (a restore). */
    int (*stage_write)(dw_migration *h, int stage);
    int (*history_add)(dw_migration *h, const char *event, int from, int to,
                       int forced, const char *reason, const char *detail);
    int (*history)(dw_migration *h, dw_history_fn fn, void *payload);
    int (*repair_enqueue)(dw_migration *h, const char *key, int side,
                          const char *error);
    int (*repair_count)(dw_migration *h, int64_t *out);
    /* 1 logged or counted, 0 dropped over the cap, < 0 error. */
    int (*log_mismatch)(dw_migration *h, const char *key, const char *digest,
                        int kind, const char *detail);
    int (*log_list)(dw_migration *h, int limit, dw_mismatch_entry_fn fn,
                    void *payload);
    int (*log_count)(dw_migration *h, int64_t *entries, int64_t *dropped);
    int (*log_clear)(dw_migration *h);
    /* Rows. read_side: key columns and the side's columns as stored.
     * read_mapped: the source side's row mapped (SQL) into target's shape.
     * Both return DW_OK, DW_ENOTFOUND or an error. */
    int (*read_side)(dw_migration *h, int side, const dw_value *key,
                     dw_row *out);
    int (*read_mapped)(dw_migration *h, int target, const dw_value *key,
                       dw_row *out);
    /* Sync target from its source through the SQL mapping in one statement;
     * *found says whether the source row existed. */
    int (*sync_sql)(dw_migration *h, int target, const dw_value *key,
                    int *found);
    /* Writes side's row of `key`: the side's columns found in row by
     * name (the key's, and any others, ignored). */
    int (*upsert_row)(dw_migration *h, int side, const dw_value *key,
                      const dw_row *row);
    /* upsert_row() that leaves a row whose values are already the same
     * bytes alone, as range_copy() does for two tables (one table: the
     * UPDATE changes only a row that differs, where range_copy() rewrites
     * and counts every row); *changed is 1 when the row was written, 0
     * when it was equal. The side's column i is row's value at slots[i]
     * (a C mapping's row, as dw__map_callback_into() leaves it). Its
     * statement is prepared once per handle and side. */
    int (*upsert_changed)(dw_migration *h, int side, const dw_value *key,
                          const dw_row *row, const int *slots, int *changed);
    int (*delete_row)(dw_migration *h, int side, const dw_value *key);
    /* Key ranges, bounds as typed key values (as many as the key has
     * columns; NULL: open): after lo (from lo when lo_incl), up to and
     * including hi. A key found is given back in *key (cleared first, v
     * NULL when none), made with dw__held_key_set(). */
    /* The key `offset` rows into the range in key order. */
    int (*range_key_at)(dw_migration *h, int side, const dw_value *lo,
                        int lo_incl, const dw_value *hi, int offset,
                        dw_held_key *key);
    /* The largest key of a side, or none when it is empty. */
    int (*range_last)(dw_migration *h, int side, dw_held_key *key);
    int (*range_count)(dw_migration *h, int side, const dw_value *lo,
                       const dw_value *hi, int64_t *n);
    /* Whether every key of `side` is an integer of one column, at most one
     * row each (SQLite: the rowid), known from the schema alone. */
    int (*integer_keys)(dw_migration *h, int side, int *yes);
    /* Rows of `side` whose key columns hold NULL (never addressable). */
    int (*null_keys)(dw_migration *h, int side, int64_t *n);
    /* The first key of `side` that cannot be paged through (a TEXT holding
     * a NUL byte, an infinite REAL), or none. */
    int (*unpaged_key)(dw_migration *h, int side, dw_held_key *key);
    /* Target rows in range := mapped source rows (SQL mapping, set-based),
     * never OR IGNORE or REPLACE; *written counts rows changed -- for one
     * table, an UPDATE of the range: every row in it. skip: the keys of
     * the skip set are left alone. */
    int (*range_copy)(dw_migration *h, int target, const dw_value *lo,
                      const dw_value *hi, int skip, int64_t *written);
    /* Deletes target rows in range whose source row is gone (skip: except
     * the keys of the skip set). */
    int (*range_delete_orphans)(dw_migration *h, int target,
                                const dw_value *lo, const dw_value *hi,
                                int skip, int64_t *deleted);
    /* Calls fn for each key of the side in range, in key order;
     * DW_SIDE_NONE: the keys of either side. */
    int (*range_keys)(dw_migration *h, int side, const dw_value *lo,
                      const dw_value *hi, dw_key_fn fn, void *arg);
    /* Calls fn for each row of the side in range, in key order, in one
     * statement: its key, and `row` (the caller's, cleared and filled
     * again for each: key columns then the side's columns as stored,
     * named as the side names them -- what read_side() gives), both
     * valid during the call only. Returns fn's first failure. */
    int (*range_rows)(dw_migration *h, int side, const dw_value *lo,
                      const dw_value *hi, dw_row *row, dw_range_row_fn fn,
                      void *arg);
    /* The skip set: keys a backfill batch syncs one by one, which its
     * set-based statements (range_copy, range_delete_orphans with skip)
     * must leave alone. It is written in the batch's transaction:
     * skip_reset empties it (call it in the batch before the first
     * skip_add); skip_add adds a key (one added twice is held once). */
    int (*skip_reset)(dw_migration *h);
    int (*skip_add)(dw_migration *h, const dw_value *key);
    /* Calls fn for each key of the skip set in range that either side
     * has a row of, in key order. */
    int (*skip_keys)(dw_migration *h, const dw_value *lo, const dw_value *hi,
                     dw_key_fn fn, void *arg);
    /* A verification chunk from lo (after it; from it when lo_incl) up to
     * hi (NULL: the range's end), all of it read in one read transaction
     * together with its two verify_range passes. *end: the chunk's last
     * key -- the smaller of the keys `limit` keys into the range on each
     * side (one table: of its one side), so the chunk holds at most
     * `limit` keys of either side -- or none when the chunk is the rest
     * of the range (no key of either side after it). The passes and the
     * next chunk are bounded by *end inclusively, so a chunk ends between
     * two keys, never inside a group that compares equal, and a writer
     * between chunks cannot make a key read twice or never. *nold: the
     * old side's keys in the chunk. */
    int (*verify_chunk)(dw_migration *h, const dw_value *lo, int lo_incl,
                        const dw_value *hi, int limit, dw_held_key *end,
                        int64_t *nold);
    /* A verification pass over the keys in range, in key order, calling fn
     * for each (rows in the comparison shape): DW_SIDE_OLD the old side's
     * keys, each joined with its new row; DW_SIDE_NEW the keys only on the
     * new side (none with one table). flags DW_VR_SAME_IN_SQL (an SQL
     * mapping only): an old key whose two rows are plainly equal -- each
     * column equal as dw_value_equal() has it -- is left out, so fn sees
     * only the keys that may differ, and those whose key is not INTEGER,
     * REAL or TEXT (the key check of fn's caller refuses them) unless
     * DW_VR_KEYS_TYPED says the schema rules such keys out
     * (integer_keys). *rows: how many keys fn got. limit > 0 (the old
     * pass without DW_VR_SAME_IN_SQL, so fn gets every key): the pass
     * stops after `limit` keys, and *end gets the last of them when the
     * range has keys after it (none otherwise) -- a chunk found by the
     * pass itself, in its read transaction, with no verify_chunk before
     * it; end is not touched when limit is 0, and limit must be 0 in
     * every other pass. */
    int (*verify_range)(dw_migration *h, int side, const dw_value *lo,
                        int lo_incl, const dw_value *hi, int flags,
                        int limit, dw_held_key *end, dw_verify_row_fn fn,
                        void *arg, int64_t *rows);
    int (*run_setup)(dw_migration *h);
    /* Backfill state (state DW_BF_NONE when none is stored). Storing with
     * state DW_BF_DONE also remembers the last verification run so far. */
    int (*backfill_load)(dw_migration *h, dw_backfill_state *st);
    int (*backfill_store)(dw_migration *h, const dw_backfill_state *st);
    /* Marks a stored backfill stale (no longer counts for the gates). */
    int (*backfill_stale)(dw_migration *h);
    int (*gate_facts)(dw_migration *h, dw_gate_facts *g);
    /* Verification runs. */
    int (*verify_start)(dw_migration *h, int full, const char *from,
                        const char *to, dw_verify_result *r);
    int (*verify_key)(dw_migration *h, int64_t run, const char *key,
                      int kind, const char *detail);
    int (*verify_finish)(dw_migration *h, const dw_verify_result *r);
    int (*verify_last)(dw_migration *h, dw_verify_result *r);
    /* Repair lists, in key-text order after `after` (NULL: from the
     * start), up to limit keys; then marking or removing one. */
    int (*divergent_list)(dw_migration *h, const char *after, int limit,
                          dw_keytext_fn fn, void *arg);
    int (*divergent_done)(dw_migration *h, const char *key);
    int (*queue_list)(dw_migration *h, const char *after, int limit,
                      dw_keytext_fn fn, void *arg);
    int (*queue_remove)(dw_migration *h, const char *key);
    /* Overrides: *stage of one key and whether a write promoted it
     * (promoted may be NULL; DW_ENOTFOUND when none), set, remove,
     * list, and counts by stage; overrides_bump keeps the count stored with
     * the routing settings. */
    int (*override_get)(dw_migration *h, const char *key, int *stage,
                        int *promoted);
    int (*override_put)(dw_migration *h, const char *key, int stage,
                        int promoted);
    int (*override_delete)(dw_migration *h, const char *key, int *deleted);
    int (*override_list)(dw_migration *h, dw_override_fn fn, void *payload);
    /* Calls fn with the stored key text of each override whose stage is
     * first..last, in no order; a non-DW_OK return from fn stops the
     * listing and is returned (no message added). */
    int (*override_keys)(dw_migration *h, int first, int last,
                         dw_keytext_fn fn, void *arg);
    int (*override_stats)(dw_migration *h, int64_t by_stage[6],
                          int64_t *promoted);
    int (*overrides_bump)(dw_migration *h, int64_t delta);
    /* Stores the canary and promotion settings. */
    int (*routing_store)(dw_migration *h, const dw_route_state *r);
    /* DW_EMISUSE with a message unless pred is one read-only expression
     * over the old table. */
    int (*cohort_check)(dw_migration *h, const char *pred);
    /* Whether the old row of key matches the stored cohort predicate pred
     * (0 when absent); DW_ECORRUPT naming the row when the stored
     * predicate is one cohort_check() refuses. */
    int (*cohort_member)(dw_migration *h, const char *pred,
                         const dw_value *key, int *member);
    /* Old rows whose key has a new row. */
    int (*covered)(dw_migration *h, int64_t *n);
    /* ---- contract and restore: mechanism only (lib/contract.c decides).
     * `target` names the backup as the backend knows it (SQLite: a file
     * path). Every member sets the handle's error when it fails. */
    /* Describes the old model from the catalog (call inside a scope): its
     * table, or the old columns of the table both sides share. Fills *m
     * (zeroed first; dw__old_model_free() it, also after a failure). */
    int (*model_describe)(dw_migration *h, dw_old_model *m);
    /* Row count and SHA-256 (hex) of the model's rows as they are now, in
     * key order, values typed: equal for equal copies. */
    int (*model_digest)(dw_migration *h, const dw_old_model *m, int64_t *rows,
                        char hex[65]);
    /* *present: the model's table (whole table) or every one of its
     * columns is in the schema now. */
    int (*model_present)(dw_migration *h, const dw_old_model *m,
                         int *present);
    /* *taken: something of the schema (table, index, view, trigger) has
     * this name, in any case. */
    int (*name_taken)(dw_migration *h, const char *name, int *taken);
    /* The columns a table has now (none when there is no such table);
     * *names and each name dw__free. */
    int (*table_columns)(dw_migration *h, const char *table, char ***names,
                         int *n);
    /* *by: another table with a FOREIGN KEY to `table` (dw__free), NULL
     * when none. */
    int (*table_referenced)(dw_migration *h, const char *table, char **by);
    /* Drops the model: the table, or its columns cols[nkey..]. */
    int (*model_drop)(dw_migration *h, const dw_old_model *m);
    /* *exists: something is at target already. */
    int (*backup_exists)(dw_migration *h, const char *target, int *exists);
    /* Creates an empty backup for m at target (where nothing is: see
     * backup_exists). What it made stays until backup_discard(), which
     * needs no memory to remove it. */
    int (*backup_create)(dw_migration *h, const dw_old_model *m,
                         const char *target);
    /* Ends what backup_create() began: removes the backup when `remove`,
     * and frees what the backend held for it. */
    void (*backup_discard)(dw_migration *h, int remove);
    /* Makes the backup at target reachable from the handle's connection
     * for backup_copy(), backup_record() and the restores, until
     * backup_detach() (which keeps the handle's error as it is). */
    int (*backup_attach)(dw_migration *h, const char *target);
    void (*backup_detach)(dw_migration *h);
    /* Copies the model's rows into the attached backup (inside the
     * caller's write scope) and digests the copy as model_digest() does. */
    int (*backup_copy)(dw_migration *h, const dw_old_model *m,
                       const char *target, int64_t *rows, char hex[65]);
    /* Writes the attached backup's record: the model and r. */
    int (*backup_record)(dw_migration *h, const dw_old_model *m,
                         const char *target, const dw_backup_record *r);
    /* Reads the record of the backup at target into *r (zeroed first; the
     * caller frees it, also after a failure), through a connection of its
     * own: what the core checks before reading any row. A digest that is
     * not 64 characters is given as "" (it matches no rows). DW_ERROR
     * when it is no backup the backend can read. */
    int (*backup_read_record)(dw_migration *h, const char *target,
                              dw_backup_record *r);
    /* Reads the model the backup at target holds into *m (zeroed first;
     * the caller frees it, also after a failure), and the count and
     * digest of its rows (*rows, hex). */
    int (*backup_read_model)(dw_migration *h, const char *target,
                             dw_old_model *m, int64_t *rows, char hex[65]);
    /* Recreates the model's table from the attached backup: its
     * definition, its rows, then what follows them (indexes, triggers). */
    int (*restore_table)(dw_migration *h, const dw_old_model *m,
                         const char *target);
    /* Re-adds the model's columns cols[nkey..] but those named in `kept`
     * (any case), and copies the attached backup's values into them by
     * key. */
    int (*restore_columns)(dw_migration *h, const dw_old_model *m,
                           const char *target, char *const *kept,
                           int nkept);
    /* Of the backup's rows whose key is in the table now: how many
     * (*rows) and how many hold the backup's values in all of the
     * model's columns (*same). */
    int (*restored_columns_check)(dw_migration *h, const dw_old_model *m,
                                  int64_t *rows, int64_t *same);
    /* Other stored migrations (facts; the core parses their specs and
     * decides what they mean): fn for each migration stored but the
     * handle's, in name order (bytewise); fn's non-zero return stops the
     * walk and is returned. */
    int (*others_list)(dw_migration *h, dw_other_fn fn, void *arg);
    /* Stores the migration's contracted flag. */
    int (*contracted_store)(dw_migration *h, int contracted);
    /* Time budget on the connection for the non-authoritative read. */
    void (*budget_start)(dw_migration *h, int ms);
    int (*budget_stop)(dw_migration *h); /* 1 when the budget ran out */
    /* While held, the checkpoint a commit would start (SQLite's automatic
     * one, in WAL mode) waits for checkpoint_run(): a backfill times how
     * long each batch holds the write lock, and the checkpoint, which runs
     * after the lock is released, is not part of that. */
    void (*checkpoint_hold)(dw_migration *h, int hold);
    void (*checkpoint_run)(dw_migration *h);
    /* An application callback failed, returning cbrc (anything but DW_OK):
     * the native message the backend's result helper kept for that
     * failure on this thread (taken: asked once), or a hint when cbrc is
     * no DW_ code but looks like a native one; NULL when there is
     * neither. Static or owned by the backend, valid until its next
     * call. The core decides the result code. */
    const char *(*callback_detail)(dw_migration *h, int cbrc);
    /* Before each application callback: forgets what the backend's result
     * helper kept for earlier failures on this thread, so a failure the
     * callback returns without one is not told another's message. */
    void (*callback_begin)(dw_migration *h);
} dw_backend_ops;

/* ---- the connection-level driver ------------------------------------------------
 * What the operations without a handle -- dw_list(), dw_open_json(),
 * dw_open_stored(), dw_remove() -- need of a database, given only its
 * connection (`conn`, borrowed). Every member returns a DW_ code; on a
 * failure other than DW_ENOMEM and DW_ENOTFOUND, native_error() says what
 * the database said. The checks and messages stay in the core
 * (lib/stored.c); the driver only reads and writes. */

/* The scope a handle-less operation runs in. */
enum {
    DW_SCOPE_READ,   /* a read transaction of its own */
    DW_SCOPE_WRITE,  /* a write transaction of its own, locked at once */
    DW_SCOPE_NESTED  /* a savepoint inside the caller's transaction */
};

/* A row of the stored migrations as dw_list() reads it; strings valid only
 * during the callback. */
typedef struct dw_stored_row {
    const char *name;
    const char *spec;
    const char *spec_digest;
    int64_t stage;
    int stage_integer; /* the stored stage is an integer at all */
    int contracted;    /* 0 in state tables that predate the column */
    double created, updated;
} dw_stored_row;

/* Return non-zero to stop the listing. */
typedef int (*dw_stored_row_fn)(const dw_stored_row *row, void *arg);

/* What dw_remove() decides on, read from the stored migration. */
typedef struct dw_removal {
    int64_t id;
    int stage;        /* as stored, meaningful only when intact */
    int contracted;
    int canary;       /* a canary whose keys run at another stage than OFF */
    int canary_stage;
    int64_t routed;   /* keys with overrides at another stage than OFF */
    /* stage, contracted and canary_stage hold values operations write */
    int intact;
    char digest[65];  /* the stored spec's digest ("" when none) */
} dw_removal;

typedef struct dw_driver {
    const char *name;
    /* The handle's operations, for what dw__open() opens on conn. */
    const dw_backend_ops *ops;
    /* 1 when a transaction is open on the connection (the caller's, or
     * one a failed call left open), else 0. */
    int (*in_transaction)(void *conn);
    /* The database's message for the connection's last failure; owned by
     * the connection, valid until its next call. */
    const char *(*native_error)(void *conn);
    /* Begins a scope of kind DW_SCOPE_*; *scope receives the driver's
     * record of it, ended by scope_end() (which frees it), and made so
     * that ending it needs no memory. On failure returns the code with
     * *scope NULL when nothing stayed open, or set when a transaction the
     * begin opened must still be rolled back with scope_end(). */
    int (*scope_begin)(void *conn, int kind, void **scope);
    /* commit: commits (or releases the savepoint); DW_OK, also when the
     * transaction ended already; on failure the scope stays open and
     * valid, for a rollback. !commit: rolls back (to and releasing the
     * savepoint) and frees the scope; DW_OK when nothing of the scope is
     * left open (rolled back, or the database ended the transaction),
     * else a code: the scope stayed open on the connection. */
    int (*scope_end)(void *conn, void *scope, int commit);
    /* Calls fn for each stored migration in name order (bytewise) until
     * fn returns non-zero; DW_OK then too, and without a call when the
     * database has no table of migrations (nothing is created). */
    int (*list)(void *conn, dw_stored_row_fn fn, void *arg);
    /* The spec text and digest stored under name, as copies the caller
     * frees with dw__free(); DW_ENOTFOUND (both NULL, no message) when the
     * database has no table of migrations or none of that name. */
    int (*stored_spec)(void *conn, const char *name, char **spec,
                       char **digest);
    /* The version of the state tables (0 when they carry none), or -1 when
     * the database has no table of migrations. */
    int (*state_version)(void *conn, int *version);
    /* Fills *r from the migration stored under name; DW_ENOTFOUND (no
     * message) when there is none. */
    int (*removal_read)(void *conn, const char *name, dw_removal *r);
    /* Deletes every state row of migration id, notes `note` (the text a
     * later definition of the name takes into its history) and the time
     * under the name, and keeps id from being given again. */
    int (*removal_apply)(void *conn, int64_t id, const char *name,
                         const char *note);
} dw_driver;

/* The handle-less operations, on any driver's connection (lib/stored.c);
 * each backend's public functions pass its driver (lib/sqlite/api.c).
 * Messages in *errmsg are freed with dw__free(). */
int dw__list(const dw_driver *drv, void *conn, dw_list_fn fn, void *payload,
             char **errmsg);
int dw__open_json(dw_migration **out, const dw_driver *drv, void *conn,
                  const char *name, const char *spec_json, unsigned int flags,
                  const char *reason, char **errmsg);
int dw__open_stored(dw_migration **out, const dw_driver *drv, void *conn,
                    const char *name, unsigned int flags, char **errmsg);
int dw__remove(const dw_driver *drv, void *conn, const char *name,
               unsigned int flags, const char *reason, char **errmsg);

/* ---- the handle ------------------------------------------------------------------ */

struct dw_migration {
    /* The backend's native connection: for lib/sqlite/, the caller's SQLite
     * connection. */
    void *db;
    const dw_backend_ops *ops;
    void *backend;

    dw_spec spec;
    int64_t id;
    char digest[65];
    unsigned int flags;
    int log_cap;
    dw_name_set redact;
    dw_mismatch_fn mismatch_fn;
    void *mismatch_payload;

    /* Stage cache, valid while ops->state_unchanged() says so. */
    int stage;
    int stage_cached;
    /* The old model was dropped by dw_contract() (loaded with the stage). */
    int contracted;
    /* The stored spec is no longer this handle's (loaded with the stage):
     * the migration was redefined since the handle was opened. */
    int redefined;
    /* Per key column: 'N' numeric affinity, 'T' text, 'B' none (a key
     * has at most 64 columns: the primary key's). */
    char key_class[64];
    /* A key column's collation is not BINARY (routing refuses). */
    int keys_fold;
    /* Key routing, loaded with the stage. */
    dw_route_state route;

    /* The rows a shadow read compares in, kept for the next read. */
    dw_row *scratch[2];
    /* What a C mapping callback writes into, kept for the next row (taken
     * off the handle while a callback runs). */
    dw_row *mapped;

    /* Read options, deep-copied. */
    dw_read_options ropts;
    dw_name_set ignore;

    dw_metrics metrics;
    uint64_t rng;
    /* Counts the reads that compare nothing: one in DW_TIME_EVERY is
     * timed. */
    unsigned int untimed;

    /* Last error. */
    int errcode;
    int errside;
    char *errmsg;
    /* DW_LEFT_TXN or DW_LEFT_SAVEPOINT while a transaction or savepoint of
     * ours that a failed call could not roll back (its rollback lacked
     * memory, every try) is still open on the caller's connection; the
     * message then says so, whatever else it said. */
    int left_open;
    /* The database rolled back the caller's transaction during the last
     * call, which returned DW_EROLLEDBACK: the next call made outside any
     * transaction is refused (once), as it would commit on its own. */
    int txn_lost;
    /* The scope dw__begin() began last is a write's. */
    int scope_write;
};

enum { DW_LEFT_TXN = 1, DW_LEFT_SAVEPOINT = 2 };

/* Internal, never returned to the caller: a step of dw_open() that runs in
 * its first, read-only attempt (a read scope) would have to write, so the
 * open starts over in a write scope. Positive, apart from DW_MORE. */
#define DW__NEED_WRITE 64

/* ---- errors ------------------------------------------------------------------- */

int dw__error(dw_migration *h, int code, int side, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void dw__clear_error(dw_migration *h);
/* Takes the handle's error aside while cleanup runs (which may fail on its
 * own), then puts it back, dropping whatever the cleanup set. */
typedef struct dw_error_stash {
    int code, side;
    char *msg;
} dw_error_stash;
void dw__error_stash(dw_migration *h, dw_error_stash *saved);
void dw__error_unstash(dw_migration *h, dw_error_stash *saved);
/* Appends to the handle's message, keeping its code and side. */
void dw__error_append(dw_migration *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The transaction scopes of the core's calls (lib/scope.c), around the
 * backend's begin, commit, rollback and settle, whose facts they turn into
 * codes and messages. dw__begin: ends what an earlier call left open,
 * refuses once after a lost transaction, and begins a write or read scope
 * (*scope: what was begun, 0 when nothing; nothing stays open when it
 * fails). dw__commit: commits it, rolling it back when that fails. */
int dw__begin(dw_migration *h, int write, int *scope);
int dw__commit(dw_migration *h, int scope);
/* Rolls back the scope begun for a failed call; returns rc, or DW_ENOMEM
 * when the rollback itself lacked memory and left it open, or
 * DW_EROLLEDBACK when the caller's transaction is gone. */
int dw__rollback(dw_migration *h, int scope, int rc);
/* Ends what an earlier call left open (h->left_open); DW_OK when nothing
 * is, DW_ENOMEM when it is still open. */
int dw__settle(dw_migration *h);
/* Outside any transaction, with the stage cached and nothing left open or
 * lost: one statement may run without a transaction of ours. */
int dw__idle(dw_migration *h);
/* rc, or DW_ENOMEM (the handle's code too) while h->left_open. */
int dw__left_open_rc(dw_migration *h, int rc);
/* The backend found the caller's transaction, open when the call began,
 * gone after it: sets DW_EROLLEDBACK, its message after the error that
 * caused it (if any), and h->txn_lost. */
int dw__txn_lost(dw_migration *h);
/* DW_EROLLEDBACK's message after the error `cause` (dw__free() it);
 * NULL when memory ran out. Also for dw_remove(), which has no handle. */
char *dw__txn_lost_text(const char *cause);
/* rc, or DW_EROLLEDBACK when this call lost the caller's transaction. */
int dw__txn_lost_rc(dw_migration *h, int rc);
/* DW_EROLLEDBACK, once, for the first call after one that lost the
 * caller's transaction when it runs outside any transaction (`own`: it
 * would begin its own); clears the mark. */
int dw__txn_lost_refuse(dw_migration *h, int own);
/* Maps an SQLite result code to a DW_ code. Defined by the SQLite backend
 * (lib/sqlite/values.c); declared here for lib/stored.c, whose SQLite part
 * has not moved into the backend yet. */
int dw__from_sqlite(int rc);
const char *dw__side_word(int side);

/* ---- spec ---------------------------------------------------------------------- */

/* A mapping of no expressions, {"sql":{}} in a JSON spec: dw_options'
 * up or down (count 0) from dw_open_json() only. */
extern const dw_column_map dw__no_expressions[1];
int dw__spec_copy(dw_migration *h, const dw_options *o);
void dw__spec_free(dw_spec *s);
/* Drops what validation derived from the schema (the mappings aligned with
 * columns, default column lists), for validating again. Names validation
 * respelled as the schema spells them stay: they match the same. */
void dw__spec_unvalidate(dw_spec *s);
/* Canonical text of a validated spec (for the digest and for storage). */
char *dw__spec_text(const dw_spec *s);
/* The same with `setup` (NULL: none) for its setup SQL. */
char *dw__spec_text_with_setup(const dw_spec *s, const char *setup);
/* SHA-256 of a spec's text, as dw_spec_digest() gives it. */
void dw__text_digest(const char *text, char hex[65]);
/* The stored spec (stored_text, with digest) differs from the handle's
 * (spec_text) by its digest (lib/respec.c): *same when only by the
 * trailing white space of a setup SQL stored by 0.3 (the handle then
 * takes the stored digest); else DW_ESPEC saying which parts differ,
 * unless `redefine`. */
int dw__compare_stored(dw_migration *h, const char *digest,
                       const char *stored_text, const char *spec_text,
                       int redefine, int *same);
/* The length of setup SQL without its trailing white space. */
size_t dw__setup_len(const char *sql);

/* Runs fn(h, arg) inside a read (write = 0) or write scope: the caller's
 * transaction, or one of our own, committed when fn succeeds. */
int dw__in_scope(dw_migration *h, int write, int (*fn)(dw_migration *, void *),
                 void *arg);

/* ---- stage, sync, compare, report ---------------------------------------------------- */

/* The stage in force for this operation (cached unless something changed);
 * call inside the operation's transaction. DW_ESPEC when the migration was
 * redefined since the handle was opened: the one check that keeps an
 * outdated mapping from writing or comparing. */
int dw__stage_current(dw_migration *h, int *stage);
int dw__check_key(dw_migration *h, const dw_value *key, int nkey);

/* A key on its way down (lib/key.c): checked once where it enters the
 * library, then passed down as this one value to routing (override lookups,
 * bucket, cohort), the moves that sync it, the repair queue, the mismatch
 * log and error messages; what binds only its values (dw__sync(), the
 * backend's row reads and writes, the application's callbacks) is handed
 * k->v. Its text ([42], ["org-7",3]) is made the first time one of them
 * needs it and kept: a write that routes nothing makes none. */
typedef struct dw_key {
    const dw_value *v; /* n values, borrowed from whoever handed the key in */
    int n;
    dw_buf text;       /* empty until dw__key_str() made it */
} dw_key;

/* A key of n values already checked (or read from the database); owns
 * nothing until its text is made. */
void dw__key_init(dw_key *k, const dw_value *v, int n);
/* The one check of a key a caller passes in (dw__check_key()), then
 * dw__key_init(): what every public entry point taking a key starts with.
 * DW_EMISUSE with the handle's message when the key is refused. */
int dw__key_take(dw_migration *h, dw_key *k, const dw_value *v, int n);
/* The key's text, made on first use and kept (owned by k); NULL when
 * memory ran out, with the handle untouched: the caller says what failed. */
const char *dw__key_str(dw_key *k);
/* Frees the text; k can be used again (its text is made anew). */
void dw__key_free(dw_key *k);

/* Makes `target` equal map(source row), or deletes it when the source row
 * is gone: dual-write mirroring and, later, backfill and repair. */
int dw__sync(dw_migration *h, int target, const dw_value *key);
int dw__has_mapping(const dw_migration *h, int target);
/* Sets the error for an application callback's failure code, naming the
 * side, and returns the DW_ code it maps to. */
int dw__callback_failed(dw_migration *h, int side, const char *what, int cbrc);
/* The old row mapped up into the new model's shape (SQL or callback). */
int dw__map_old_up(dw_migration *h, const dw_value *key, dw_row *out);
/* A source row already read (`in`: key and columns as the source names
 * them) mapped into target's shape by the C mapping callback, into out
 * (cleared first). */
int dw__map_callback_row(dw_migration *h, int target, const dw_value *key,
                         const dw_row *in, dw_row *out);
/* The same, in two steps. The first: out (emptied first) as the callback
 * left it: target's columns in any order, without the key; every one of
 * them is checked set (others the callback set are left in it). *slots
 * (when slots is not NULL): the slot in out of each of target's columns,
 * in the spec's order, valid until out changes. */
int dw__map_callback_into(dw_migration *h, int target, const dw_row *in,
                          dw_row *out, const int **slots);
/* The second: out cleared, then key's columns and the mapped columns at
 * slots, named and ordered as target's spec has them. */
int dw__mapped_shape(dw_migration *h, int target, const dw_value *key,
                     const dw_row *mapped, const int *slots, dw_row *out);
/* A backfill batch through the C mapping into target (lib/mapstream.c):
 * the source rows after lo (NULL: from the start) up to hi (NULL: to the
 * end), each mapped and upserted, a row equal already left alone;
 * *read counts the source rows, *written the rows changed. A failing row
 * names its key in the error; what was written stays for the caller to
 * roll back. */
int dw__copy_mapped_range(dw_migration *h, int target, const dw_value *lo,
                          const dw_value *hi, int64_t *read,
                          int64_t *written);
/* Appends " (at key [..])" to the handle's error (errors.c). */
void dw__error_at_key(dw_migration *h, const dw_value *key, int nkey);
/* dw_open(), and for dw_open_stored() with `stored_only`: then a name
 * not stored (any more) is DW_ENOTFOUND instead of a definition. */
int dw__open(dw_migration **out, const dw_driver *drv, void *conn,
             const dw_options *opts, int stored_only, char **errmsg);
/* Stands in for the C mapping callbacks of a spec read as JSON
 * (dw_open_json(), dw_open_stored()): it keeps the digest, and is never
 * called -- dw__map_callback_row() refuses first. */
int dw__unbound_map(dw_row *out, const dw_row *in, void *payload);
/* Whether the mapping into target (DW_SIDE_NONE: either one) is that
 * stand-in. */
int dw__unbound(const dw_migration *h, int target);
/* DW_EMISUSE, saying where to open the migration instead, when the
 * mapping into target (DW_SIDE_NONE: either one) is that stand-in; for
 * operations to refuse before doing anything. */
int dw__need_callback(dw_migration *h, int target);

/* A comparison's outcome. */
typedef struct dw_outcome {
    int kind; /* 0 when equal */
    dw_diff *diffs;
    int ndiffs;
    char **descs;     /* two per diff, owned */
    dw_row *norm[3];  /* normalised copies by side, owned */
    dw_sha256 hash;   /* over the differing columns and their values */
    char digest[17];
} dw_outcome;

/* DW_OK, or DW_ECALLBACK (the normaliser failed) or DW_ENOMEM with the
 * handle's message set. */
int dw__compare_rows(dw_migration *h, dw_outcome *out, const dw_row *old_row,
                     int old_found, const dw_row *new_row, int new_found);
void dw__outcome_free(dw_outcome *o);
/* Sink, log table, stderr; a failure (the key's text lacking memory, the
 * log's write) is counted in log_errors, never reported. */
void dw__report(dw_migration *h, dw_key *key, const dw_outcome *o);

/* One line describing an outcome's differences, as the log stores it. */
void dw__detail_line(dw_buf *b, const dw_outcome *o);
/* The public view of an outcome for a sink. */
void dw__mismatch_view(dw_mismatch *m, const dw_migration *h,
                       const char *key_text, const dw_outcome *o);

/* ---- the longer operations ------------------------------------------------------ */

/* DW_EMISUSE unless outside any transaction: for operations that run many
 * short transactions of their own. */
int dw__need_autocommit(dw_migration *h, const char *what);
/* DW_EMISUSE when the stage has no second model to work on, or the old
 * model was dropped. Call inside the operation's transaction. */
int dw__need_two_models(dw_migration *h, int stage, const char *what);
/* DW_EMISUSE, naming `what`, when rows of the side have a NULL key, or a
 * key that cannot be paged through (the first such is named). */
int dw__no_null_keys(dw_migration *h, int side, const char *what);
/* The side the stage trusts. */
int dw__authoritative(int stage);
/* The other of DW_SIDE_OLD and DW_SIDE_NEW. */
int dw__other_side(int side);
/* Syncs one key of the repair and backfill paths in a nested savepoint, so
 * a failure leaves the enclosing batch intact. */
/* dw__sync() in a savepoint of its own, undone on failure; *kept says the
 * undo failed too (its work is still in the transaction, which must then
 * be rolled back whole). */
int dw__sync_guarded(dw_migration *h, int target, const dw_value *key,
                     int *kept);
/* Sleeps without holding any lock. */
void dw__sleep_ms(int ms);

/* ---- key routing ----------------------------------------------------------------- */

/* Whether any key may have a stage other than the migration's. */
int dw__route_active(const dw_migration *h);
/* The canary's stage, or -1 when no canary is set. */
int dw__route_canary_stage(const dw_migration *h);
/* The effective stage of key given the migration's stage (call inside the
 * operation's transaction, after dw__stage_current()); route may be NULL.
 * The key's text is made only for an override lookup or its bucket. */
int dw__route(dw_migration *h, dw_key *key, int stage, int *eff, int *route);
/* dw__route() for callers still holding bare values (backfill, repair):
 * the key is made, and its text, for this one question. */
int dw__key_route(dw_migration *h, const dw_value *key, int stage, int *eff,
                  int *route);
/* After a write at effective stage eff: promotion, or a move into or out
 * of the cohort, synced. */
int dw__route_after_write(dw_migration *h, dw_key *key, int stage, int eff,
                          int route);
/* DW_EGATE unless every key is at COMPLETE whatever its route (call inside
 * the contract's transactions). */
int dw__route_allows_contract(dw_migration *h);
/* Whether the gates into LIVE and COMPLETE are open; when closed, *why
 * says what is missing (dw__free). */
int dw__gate_open(dw_migration *h, int *open, char **why);
/* Stores loaded routing settings in the handle (copies cohort). */
int dw__route_loaded(dw_migration *h, int buckets, int canary_stage,
                     const char *cohort, int promote_stage,
                     int64_t overrides);
void dw__route_free(dw_migration *h);

/* ---- metrics ---------------------------------------------------------------------- */

uint64_t dw__now_ns(void);
/* A read that compares nothing is timed once in this many (two clock reads
 * are a measurable share of a read served from the page cache). */
#define DW_TIME_EVERY 16
double dw__wall_time(void);

/* The rate of work done in steps (batches, chunks), for progress: measured
 * from the end of the first step, which carries the one-time costs
 * (counting, preparing), and told only once DW__RATE_WARMUP_S have passed
 * since, so the first estimate is not a wild guess from one step. */
#define DW__RATE_WARMUP_S 1.0
typedef struct dw_rate {
    uint64_t t0;
    int64_t done0;
    int started;
} dw_rate;
/* After each step, with the work done so far. */
void dw__rate_step(dw_rate *r, int64_t done);
/* Units per second and seconds left to `total`; both 0 when not known. */
void dw__rate_get(const dw_rate *r, int64_t done, int64_t total,
                  double *per_second, double *seconds_left);
void dw__side_latency(dw_side_metrics *m, uint64_t ns);
dw_side_metrics *dw__side_metrics(dw_migration *h, int side);
/* A seed for dw__random(), different for every call (where: an address of
 * the caller's, e.g. the handle); never 0. */
uint64_t dw__random_seed(const void *where);
uint64_t dw__random(dw_migration *h);

#endif
