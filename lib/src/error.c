/*
 * error.c - telespool_rc from SQLite and errno results, the handle's
 * message, the thread-local open-failure message and the public texts
 * (telespool_strerror, telespool_errmsg, telespool_open_errmsg).
 */
#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "spool.h"

static _Thread_local char open_err[TELESPOOL__OPEN_ERR_LEN];

static void vformat(char *buf, size_t len, const char *fmt, va_list ap)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 0)))
#endif
    ;

static void vformat(char *buf, size_t len, const char *fmt, va_list ap)
{
	int n = vsnprintf(buf, len, fmt, ap);
	if (n < 0)
		buf[0] = '\0';
}

int telespool__fail(telespool *sp, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vformat(sp->errmsg, sizeof(sp->errmsg), fmt, ap);
	va_end(ap);
	return rc;
}

int telespool__open_fail(int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vformat(open_err, sizeof(open_err), fmt, ap);
	va_end(ap);
	return rc;
}

char *telespool__open_err(void)
{
	return open_err;
}

int telespool__rc_from_sqlite(int src)
{
	switch (src & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return TELESPOOL_OK;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return TELESPOOL_EBUSY;
	case SQLITE_FULL:
		return TELESPOOL_EFULL;
	case SQLITE_NOTADB:
	case SQLITE_CORRUPT:
		return TELESPOOL_ECORRUPT;
	case SQLITE_CANTOPEN:
	case SQLITE_IOERR:
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return TELESPOOL_EIO;
	case SQLITE_NOMEM:
		return TELESPOOL_ENOMEM;
	default:
		return TELESPOOL_ERROR;
	}
}

/* SQLite reports a write past RLIMIT_FSIZE or a quota as an I/O error;
 * for the caller it is the same as a full disk.  The OS error is not always
 * kept until we look (a failed COMMIT rolls back first), so a failed write
 * with no recorded cause counts as full too. */
int telespool__rc_from_db(sqlite3 *db, int src)
{
	int rc = telespool__rc_from_sqlite(src);
	if (rc == TELESPOOL_EIO && db != NULL) {
		int e = sqlite3_system_errno(db);
		if (e == ENOSPC || e == EFBIG || e == EDQUOT ||
		    (e == 0 && src == SQLITE_IOERR_WRITE))
			rc = TELESPOOL_EFULL;
	}
	return rc;
}

static const char *hint(int rc, int busy_ms, char *buf, size_t len)
{
	switch (rc) {
	case TELESPOOL_EBUSY:
		snprintf(buf, len,
			 " (locked by another connection for more than %d ms)",
			 busy_ms);
		return buf;
	case TELESPOOL_EFULL:
		return " (the disk or the file size limit is full)";
	case TELESPOOL_ECORRUPT:
		return " (the file is not a telespool database or is damaged)";
	default:
		return "";
	}
}

int telespool__sqlite_fail(telespool *sp, int src, const char *what)
{
	char buf[96];
	int rc = telespool__rc_from_db(sp->db, src);
	if (rc == TELESPOOL_OK)
		return rc;
	return telespool__fail(sp, rc, "%s: %s%s", what,
			       sp->db ? sqlite3_errmsg(sp->db)
				      : sqlite3_errstr(src),
			       hint(rc, sp->busy_timeout_ms, buf, sizeof(buf)));
}

int telespool__open_db_fail(sqlite3 *db, int src, const char *path,
			    const char *what, int busy_ms)
{
	char buf[96];
	int rc = telespool__rc_from_db(db, src);
	if (rc == TELESPOOL_OK)
		rc = TELESPOOL_ERROR;
	return telespool__open_fail(rc, "%s: %s: %s%s", path, what,
				    db ? sqlite3_errmsg(db)
				       : sqlite3_errstr(src),
				    hint(rc, busy_ms, buf, sizeof(buf)));
}

/* glibc with _GNU_SOURCE has the GNU strerror_r (returns the text, maybe
 * not in buf); otherwise (the build's _POSIX_C_SOURCE, other libcs) the
 * XSI one (fills buf, returns 0). */
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
static const char *strerror_text(int e, char *buf, size_t len)
{
	return strerror_r(e, buf, len);
}
#else
static const char *strerror_text(int e, char *buf, size_t len)
{
	if (strerror_r(e, buf, len) != 0)
		snprintf(buf, len, "error %d", e);
	return buf;
}
#endif

const char *telespool__strerror(int e, char *buf, size_t len)
{
	const char *s = strerror_text(e, buf, len);
	return s != NULL ? s : "unknown error";
}

const char *telespool_open_errmsg(void)
{
	return open_err;
}

const char *telespool_errmsg(const telespool *sp)
{
	if (sp == NULL)
		return "no spool handle (NULL)";
	return sp->errmsg;
}

const char *telespool_strerror(int rc)
{
	switch (rc) {
	case TELESPOOL_OK:
		return "ok";
	case TELESPOOL_ERROR:
		return "unexpected error";
	case TELESPOOL_EINVAL:
		return "invalid argument";
	case TELESPOOL_EBUSY:
		return "spool is locked by another connection (busy timeout)";
	case TELESPOOL_EFULL:
		return "disk full: event not stored";
	case TELESPOOL_ESCHEMA:
		return "spool was written by a newer telespool";
	case TELESPOOL_EDISABLED:
		return "telemetry is disabled (opted out): nothing stored";
	case TELESPOOL_ECORRUPT:
		return "spool file is not a telespool database or is damaged";
	case TELESPOOL_EIO:
		return "cannot open, read or write the spool file";
	case TELESPOOL_ENOMEM:
		return "out of memory";
	default:
		return "unknown telespool return code";
	}
}
