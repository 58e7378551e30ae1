/* Result codes, their texts and the per-handle message. */
#include "internal.h"

const char *dw_errstr(int code)
{
    switch (code) {
    case DW_OK: return "not an error";
    case DW_ERROR: return "database error";
    case DW_EMISUSE: return "bad argument or call out of order";
    case DW_ENOMEM: return "out of memory";
    case DW_EBUSY: return "database is busy; nothing was applied, retry";
    case DW_ENOTFOUND: return "not found";
    case DW_ESCHEMA: return "the spec does not match the schema";
    case DW_ESPEC: return "a different spec is stored under this name";
    case DW_EMISMATCH: return "the old and new models disagree";
    case DW_ECONSTRAINT: return "constraint violated";
    case DW_ECALLBACK: return "an application callback failed";
    case DW_EGATE: return "refused by a gate (dw_errmsg says what is missing)";
    case DW_ECORRUPT: return "stored state is damaged";
    case DW_EROLLEDBACK:
        return "the database rolled back the caller's transaction; start it "
               "over";
    case DW_ENOCOMPARE:
        return "test mode: the old and new models could not be compared";
    case DW_MORE: return "stopped before the end; call again to go on";
    default: return "unknown error";
    }
}

const char *dw__side_word(int side)
{
    return side == DW_SIDE_OLD ? "old" : side == DW_SIDE_NEW ? "new" : "no";
}

int dw__error(dw_migration *h, int code, int side, const char *fmt, ...)
{
    if (!h)
        return code;
    va_list ap;
    va_start(ap, fmt);
    char *msg = dw__vmprintf(fmt, ap);
    va_end(ap);
    dw__free(h->errmsg);
    /* When even the message cannot be allocated, the code still stands. */
    h->errmsg = msg;
    h->errcode = code;
    h->errside = side;
    return code;
}

void dw__clear_error(dw_migration *h)
{
    if (h->errcode != DW_OK || h->errmsg) {
        dw__free(h->errmsg);
        h->errmsg = NULL;
        h->errcode = DW_OK;
        h->errside = DW_SIDE_NONE;
    }
}

const char *dw_errmsg(const dw_migration *h)
{
    if (!h)
        return "NULL migration handle";
    if (h->errcode == DW_OK)
        return "not an error";
    /* Static text: it must reach the caller when no memory is left. */
    if (h->left_open == DW_LEFT_TXN)
        return "out of memory, and the library's transaction could not be "
               "rolled back: it is still open on the connection. Run "
               "ROLLBACK, or make a call on the handle that reaches the "
               "database, which rolls it back first";
    if (h->left_open == DW_LEFT_SAVEPOINT)
        return "out of memory, and the library's savepoint could not be "
               "rolled back: it is still open in your transaction. Roll "
               "your transaction back rather than commit it (a call on the "
               "handle that reaches the database rolls the savepoint back "
               "first)";
    return h->errmsg ? h->errmsg : dw_errstr(h->errcode);
}

int dw_errside(const dw_migration *h) { return h ? h->errside : DW_SIDE_NONE; }

void dw__error_stash(dw_migration *h, dw_error_stash *saved)
{
    saved->code = h->errcode;
    saved->side = h->errside;
    saved->msg = h->errmsg;
    h->errmsg = NULL;
}

void dw__error_unstash(dw_migration *h, dw_error_stash *saved)
{
    dw__free(h->errmsg);
    h->errmsg = saved->msg;
    h->errcode = saved->code;
    h->errside = saved->side;
    saved->msg = NULL;
}

void dw__error_append(dw_migration *h, const char *fmt, ...)
{
    char *msg = dw__strdup(dw_errmsg(h));
    va_list ap;
    va_start(ap, fmt);
    char *more = dw__vmprintf(fmt, ap);
    va_end(ap);
    if (msg && more)
        dw__error(h, h->errcode, h->errside, "%s%s", msg, more);
    dw__free(msg);
    dw__free(more);
}

int dw__left_open_rc(dw_migration *h, int rc)
{
    if (!h->left_open)
        return rc;
    h->errcode = DW_ENOMEM; /* dw_errmsg() says what is left open */
    h->errside = DW_SIDE_NONE;
    return DW_ENOMEM;
}

static const char lost[] = "the database rolled back your transaction";
static const char why[] =
    " (SQLite does on an I/O error, a full disk, running out of memory, "
    "and some interrupts)";
static const char rest[] =
    "the connection is outside any transaction. Do not go on with it "
    "-- statements run now commit on their own --: start it over with "
    "BEGIN, or give it up";

char *dw__txn_lost_text(const char *cause)
{
    return dw__mprintf("%s; %s with it%s: what it did before this call "
                       "is gone too, and %s",
                       cause, lost, why, rest);
}

int dw__txn_lost(dw_migration *h)
{
    int side = h->errcode != DW_OK ? h->errside : DW_SIDE_NONE;
    char *text = h->errcode != DW_OK ? dw__txn_lost_text(dw_errmsg(h)) : NULL;
    /* With no error of ours, SQL a callback ran may have ended it, by a
     * COMMIT as well: then what it did is kept, this call's work in part. */
    if (h->errcode != DW_OK)
        dw__error(h, DW_EROLLEDBACK, side, "%s", text ? text : lost);
    else
        dw__error(h, DW_EROLLEDBACK, side,
                  "your transaction ended during this call, on no error of "
                  "the library's: %s%s, and what it did is gone; or SQL a "
                  "callback ran rolled it back, or committed it (what it "
                  "did is then kept, this call's work perhaps in part). "
                  "Either way %s",
                  lost, why, rest);
    dw__free(text);
    h->txn_lost = 1;
    return DW_EROLLEDBACK;
}

int dw__txn_lost_rc(dw_migration *h, int rc)
{
    return h->txn_lost ? DW_EROLLEDBACK : rc;
}

int dw__txn_lost_refuse(dw_migration *h, int own)
{
    if (!h->txn_lost)
        return DW_OK;
    h->txn_lost = 0;
    if (!own)
        return DW_OK; /* a transaction begun since: started over */
    return dw__error(h, DW_EROLLEDBACK, DW_SIDE_NONE,
                     "refused, nothing done: the previous call on this "
                     "handle returned DW_EROLLEDBACK (the database rolled "
                     "back your transaction), and this call, made outside "
                     "any transaction, would commit on its own. Start the "
                     "transaction over with BEGIN; this refusal is given "
                     "once");
}

void dw__error_at_key(dw_migration *h, const dw_value *key, int nkey)
{
    dw_buf text;
    dw_buf_init(&text);
    dw__key_text(&text, key, nkey);
    if (!text.oom)
        dw__error_append(h, " (at key %s)", text.p);
    dw_buf_free(&text);
}
