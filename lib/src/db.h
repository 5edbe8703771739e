/*
 * db.h - the database layer: the connection's prepared statements, in one
 * cache keyed by one enum and prepared on first use, and the helpers every
 * module steps statements with (to the end, one row of integers or text,
 * pragmas and DDL, transactions).  Failures set the handle's message
 * (error.h) and return a telespool_rc.
 */
#ifndef TELESPOOL_DB_H
#define TELESPOOL_DB_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "telespool.h"

/*
 * SQL for uploader_state's 'pending_from' (migration 0002): no pending row
 * has a smaller id, so a query for pending rows starts its rowid range there
 * instead of walking the sent ones.  0 when the key is missing.  The record
 * path gives every new row an id at or above it (never SQLite's max + 1
 * alone: after the newest rows were deleted that would be an id below it).
 */
#define TELESPOOL__PENDING_FROM                                                \
	"coalesce((SELECT CAST(value AS INTEGER) FROM uploader_state"          \
	" WHERE key = 'pending_from'), 0)"

/* The statements kept on the handle: those of every record call and of
 * every batch the uploader claims and finishes (their SQL and parameters
 * are in db.c). */
enum telespool__stmt_id {
	STMT_BEGIN,
	STMT_COMMIT,
	STMT_ROLLBACK,
	/* record.c */
	STMT_INSERT_EVENT,
	STMT_PAGE_COUNT,
	STMT_FREELIST_COUNT,
	STMT_EVICT_OLDEST,
	STMT_OLDEST_SIZES,
	STMT_OLDEST_PENDING,
	STMT_EVICT_AGED,
	STMT_COUNT_DROP,
	STMT_MILESTONE,
	STMT_SURVEY_CLOSE,
	STMT_SURVEY_PENDING,
	/* queue.c */
	STMT_DUE,
	STMT_CLAIM,
	STMT_PEEK,
	STMT_SENT, /* the four verdicts, in telespool__verdict order */
	STMT_RETRY,
	STMT_DEAD,
	STMT_RELEASE,
	STMT_ADVANCE,
	STMT__COUNT
};

/* The cache, on the handle (struct telespool's stmts). */
struct telespool__stmts {
	sqlite3_stmt *st[STMT__COUNT];
};

/* The busy handler's state, on the handle (struct telespool's busy): the
 * start of the current wait and the jitter's generator (seeded on first
 * use). */
struct telespool__busy {
	int64_t since_ms;
	unsigned rng;
};

/* Statement id, prepared on first use, reset and unbound; or NULL with the
 * handle's message set.  Release it with telespool__release() (or one of
 * the stepping helpers), never finalize it. */
sqlite3_stmt *telespool__stmt(telespool *sp, enum telespool__stmt_id id);

/* A statement for one use (what runs once per process or per run: the
 * open's pragmas, migration, purge, housekeeping); NULL with the message
 * set.  The stepping helpers release it. */
sqlite3_stmt *telespool__prepare(telespool *sp, const char *sql);

/* Done with st: a cached statement is reset, any other finalized.  NULL
 * is a no-op. */
void telespool__release(telespool *sp, sqlite3_stmt *st);

/* Steps st to its end (the rows of a RETURNING are skipped) and releases
 * it.  st NULL (a failed prepare) returns what that prepare reported. */
int telespool__step_done(telespool *sp, sqlite3_stmt *st, const char *what);

/* One step of st while reading rows: 1 with a row, 0 at the end or on
 * failure (then *rc is set and the message names what; st NULL is the
 * failure of its prepare).  Does not release st. */
int telespool__row(telespool *sp, sqlite3_stmt *st, const char *what, int *rc);

/* The first row's first n columns as integers (0 when there is no row),
 * then releases st. */
int telespool__read_ints(telespool *sp, sqlite3_stmt *st, const char *what,
			 int64_t *v, int n);
int telespool__read_int(telespool *sp, sqlite3_stmt *st, const char *what,
			int64_t *v);

/* The one integer a one-off statement returns (a count, a pragma); a
 * failure's message names the SQL. */
int telespool__query_int(telespool *sp, const char *sql, int64_t *v);

/* The first row's first column as text into out ("" when there is no row
 * or it is NULL), then releases st. */
int telespool__read_text(telespool *sp, sqlite3_stmt *st, const char *what,
			 char *out, size_t len);

/* Column i of the current row as text into out, cut to len - 1 bytes
 * ("" when NULL). */
void telespool__column_text(sqlite3_stmt *st, int i, char *out, size_t len);

/* Column i of the current row as malloc'd text ("" when NULL); NULL when
 * out of memory. */
char *telespool__column_dup(sqlite3_stmt *st, int i);

/* The ids as a JSON array text, for "id IN (SELECT value FROM
 * json_each(?))"; malloc'd, NULL when out of memory. */
char *telespool__ids_json(const int64_t *ids, size_t n);

/* Runs SQL that returns no rows (pragmas, DDL, several statements); a
 * failure's message names what (exec: the SQL itself). */
int telespool__exec(telespool *sp, const char *sql);
int telespool__exec_as(telespool *sp, const char *sql, const char *what);

/* Begins a write transaction (BEGIN IMMEDIATE, bounded by the busy
 * timeout), commits (rolling back when that fails) or rolls back (keeping
 * the message of the failure that made it roll back). */
int telespool__begin(telespool *sp);
int telespool__commit(telespool *sp);
void telespool__rollback(telespool *sp);

/* Ends the transaction by rc, the result of the work done in it: commits
 * when it is TELESPOOL_OK, otherwise rolls back (keeping rc's message).
 * Returns the commit's result, or rc. */
int telespool__end(telespool *sp, int rc);

/* The connection's busy handler: waits in short jittered steps until
 * busy_timeout_ms has passed since the first refusal (SQLite's own sleeps
 * in growing steps up to 100 ms, so a waiting writer can sleep through the
 * moment the lock is free and lose it again and again). */
int telespool__busy_wait(void *sp, int count);

/* Finalizes the cache and closes the connection (sp->db NULL after). */
void telespool__db_close(telespool *sp);

#endif
