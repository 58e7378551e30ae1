/* Internal declarations shared by the files of lib/. Not installed. */
#ifndef DW_INTERNAL_H
#define DW_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "dualwrite.h"

/* ---- memory: everything goes through the sqlite3_malloc family ---------- */

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
/* sqlite3_mprintf() formats, so %q and %!g work (hence no printf check). */
void dw_buf_printf(dw_buf *b, const char *fmt, ...);
/* An SQL identifier in double quotes, embedded double quotes doubled. */
void dw_buf_ident(dw_buf *b, const char *name);
/* A JSON string literal. */
void dw_buf_json(dw_buf *b, const char *s, size_t n);
/* Hands the text over (caller frees with dw__free); NULL after OOM. */
char *dw_buf_take(dw_buf *b);

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
/* Byte length of a text or blob value, resolving n == -1. */
int dw__value_len(const dw_value *v);
/* Appends the key as JSON-style text: [42] or ["org-7",3]. */
void dw__key_text(dw_buf *b, const dw_value *key, int nkey);
/* "text(9):3f2a91c07b5d4e18" -- type, length and digest. */
void dw__value_desc_digest(dw_buf *b, const dw_value *v);
/* The value itself, SQL-literal style, long values shortened. */
void dw__value_desc_raw(dw_buf *b, const dw_value *v);
/* Binds a value to a statement parameter. */
int dw__bind_value(void *stmt, int idx, const dw_value *v);
/* Deep copy of a row into an empty row. */
int dw__row_copy(dw_row *dst, const dw_row *src);

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
} dw_side_def;

/* A mapping into one target side: SQL expressions aligned with the target's
 * columns, or a C callback. */
typedef struct dw_map_def {
    char **exprs; /* exprs[i] computes target cols[i]; NULL when none */
    dw_map_fn fn;
    int present;
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
} dw_spec;

/* ---- the backend seam ------------------------------------------------------------
 * Every SQL statement and every database call of the library sits behind this
 * table, so that another database is an added file, not a rewrite. */

typedef struct dw_backend_ops {
    const char *name;
    int (*attach)(dw_migration *h);
    void (*detach)(dw_migration *h);
    /* Creates the state tables if needed and checks their version. */
    int (*state_init)(dw_migration *h);
    /* Checks the spec against the schema, filling default column lists and
     * aligning SQL mappings with target columns. */
    int (*validate)(dw_migration *h);
    /* Transactions: begin a write (BEGIN IMMEDIATE or SAVEPOINT) or read
     * scope; *own says whether a top-level transaction was begun. */
    int (*begin)(dw_migration *h, int write, int *own);
    int (*commit)(dw_migration *h, int own);
    void (*rollback)(dw_migration *h, int own);
    /* A nested savepoint around one side's write (repair-queue policy). */
    int (*side_savepoint)(dw_migration *h);
    int (*side_release)(dw_migration *h, int rollback);
    /* Cheap check that nothing was committed since the stage was cached. */
    int (*state_unchanged)(dw_migration *h);
    void (*state_remember)(dw_migration *h);
    /* The stored migration. */
    int (*migration_load)(dw_migration *h, const char *spec_text,
                          const char *digest, int redefine,
                          const char *reason);
    int (*stage_load)(dw_migration *h, int *stage);
    int (*stage_store)(dw_migration *h, int from, int to, const char *reason,
                       int forced);
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
    int (*upsert_row)(dw_migration *h, int side, const dw_value *key,
                      const dw_row *row);
    int (*delete_row)(dw_migration *h, int side, const dw_value *key);
    /* Time budget on the connection for the non-authoritative read. */
    void (*budget_start)(dw_migration *h, int ms);
    int (*budget_stop)(dw_migration *h); /* 1 when the budget ran out */
} dw_backend_ops;

extern const dw_backend_ops dw__sqlite_backend;

/* ---- the handle ------------------------------------------------------------------ */

struct dw_migration {
    sqlite3 *db;
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

    /* Read options, deep-copied. */
    dw_read_options ropts;
    dw_name_set ignore;

    dw_metrics metrics;
    uint64_t rng;

    /* Last error. */
    int errcode;
    int errside;
    char *errmsg;
};

/* ---- errors ------------------------------------------------------------------- */

int dw__error(dw_migration *h, int code, int side, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void dw__clear_error(dw_migration *h);
/* Maps an SQLite result code to a DW_ code. */
int dw__from_sqlite(int rc);
const char *dw__side_word(int side);

/* ---- spec ---------------------------------------------------------------------- */

int dw__spec_copy(dw_migration *h, const dw_options *o);
void dw__spec_free(dw_spec *s);
/* Canonical text of a validated spec (for the digest and for storage). */
char *dw__spec_text(const dw_spec *s);

/* Runs fn(h, arg) inside a read (write = 0) or write scope: the caller's
 * transaction, or one of our own, committed when fn succeeds. */
int dw__in_scope(dw_migration *h, int write, int (*fn)(dw_migration *, void *),
                 void *arg);

/* ---- stage, sync, compare, report ---------------------------------------------------- */

/* The stage in force for this operation (cached unless something changed);
 * call inside the operation's transaction. */
int dw__stage_current(dw_migration *h, int *stage);
int dw__check_key(dw_migration *h, const dw_value *key, int nkey);
/* Makes `target` equal map(source row), or deletes it when the source row
 * is gone: dual-write mirroring and, later, backfill and repair. */
int dw__sync(dw_migration *h, int target, const dw_value *key);
int dw__has_mapping(const dw_migration *h, int target);
/* Sets the error for an application callback's failure code, naming the
 * side, and returns the DW_ code it maps to. */
int dw__callback_failed(dw_migration *h, int side, const char *what, int cbrc);
/* The old row mapped up into the new model's shape (SQL or callback). */
int dw__map_old_up(dw_migration *h, const dw_value *key, dw_row *out);

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

int dw__compare_rows(dw_migration *h, dw_outcome *out, const dw_row *old_row,
                     int old_found, const dw_row *new_row, int new_found);
void dw__outcome_free(dw_outcome *o);
/* Sink, log table, stderr. */
void dw__report(dw_migration *h, const dw_value *key, int nkey,
                const dw_outcome *o);

/* ---- metrics ---------------------------------------------------------------------- */

uint64_t dw__now_ns(void);
double dw__wall_time(void);
void dw__side_latency(dw_side_metrics *m, uint64_t ns);
dw_side_metrics *dw__side_metrics(dw_migration *h, int side);
uint64_t dw__random(dw_migration *h);

#endif
