/*
 * error.h - the library's error reporting: telespool_rc from SQLite and
 * errno results, the message a handle keeps (telespool_errmsg), the
 * thread-local message of a failed open (telespool_open_errmsg) and
 * thread-safe errno texts.
 */
#ifndef TELESPOOL_ERROR_H
#define TELESPOOL_ERROR_H

#include <sqlite3.h>
#include <stddef.h>

#include "telespool.h"

#if defined(__GNUC__)
#define TELESPOOL__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define TELESPOOL__PRINTF(f, a)
#endif

/* Sets sp->errmsg (printf-style) and returns rc.  Called with the handle's
 * lock held: the text is part of the call's result. */
int telespool__fail(telespool *sp, int rc, const char *fmt, ...)
    TELESPOOL__PRINTF(3, 4);

/*
 * Maps an SQLite result to a telespool_rc and sets sp->errmsg with what,
 * sqlite3_errmsg() and a hint.  Returns TELESPOOL_OK (errmsg untouched)
 * for SQLITE_OK/ROW/DONE.
 */
int telespool__sqlite_fail(telespool *sp, int src, const char *what);

/* Maps an SQLite result code (primary or extended) to a telespool_rc. */
int telespool__rc_from_sqlite(int src);

/* As telespool__rc_from_sqlite(), and a write that failed for want of
 * space (ENOSPC, EFBIG, EDQUOT in sqlite3_system_errno(db)) is
 * TELESPOOL_EFULL.  db may be NULL. */
int telespool__rc_from_db(sqlite3 *db, int src);

/* Sets the calling thread's open-failure message (telespool_open_errmsg)
 * and returns rc. */
int telespool__open_fail(int rc, const char *fmt, ...) TELESPOOL__PRINTF(2, 3);

/* The calling thread's open-failure message, writable (open.c keeps the
 * first reason while it tries again). */
char *telespool__open_err(void);
#define TELESPOOL__OPEN_ERR_LEN 512

/* An SQLite failure while opening path, as telespool__open_fail():
 * "path: what: sqlite's message (hint)".  Never TELESPOOL_OK. */
int telespool__open_db_fail(sqlite3 *db, int src, const char *path,
			    const char *what, int busy_ms);

/* The text of errno value e in buf (strerror_r, XSI or GNU), returned;
 * thread-safe, unlike strerror(). */
const char *telespool__strerror(int e, char *buf, size_t len);

#endif
