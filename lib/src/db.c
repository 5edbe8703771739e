/*
 * db.c - the database layer: the statement cache (one enum, one table of
 * SQL), the stepping helpers, transactions and the busy handler.
 */
#include "db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "spool.h"
#include "timefmt.h"

/* Which pending rows are due (STMT_DUE, STMT_CLAIM): ?2 now, ?3 horizon,
 * ?4 ignore_backoff, ?5 the lease horizon: a lease ending after it was
 * taken before the wall clock went back, and is stale. */
#define DUE_ROWS                                                               \
	" state = 'pending'"                                                   \
	" AND (?4 OR next_attempt_at <= ?2 OR next_attempt_at > ?3)"           \
	" AND (lease_until IS NULL OR lease_until <= ?2 OR lease_until > ?5)"

static const char *const stmt_sql[STMT__COUNT] = {
    [STMT_BEGIN] = "BEGIN IMMEDIATE",
    [STMT_COMMIT] = "COMMIT",
    [STMT_ROLLBACK] = "ROLLBACK",
    [STMT_INSERT_EVENT] =
	"INSERT INTO spool (id, next_attempt_at, created_at, size, event_id,"
	" event_type, body) VALUES (max(coalesce((SELECT max(id) FROM spool),"
	" 0) + 1, " TELESPOOL__PENDING_FROM "), ?1, ?1, ?2, ?3, ?4, ?5)",
    /* Plain pragmas, not a SELECT over pragma_page_count(): a pragma
     * table-valued function prepares its PRAGMA again on every step. */
    [STMT_PAGE_COUNT] = "PRAGMA page_count",
    [STMT_FREELIST_COUNT] = "PRAGMA freelist_count",
    [STMT_EVICT_OLDEST] = ("DELETE FROM spool WHERE id IN (SELECT id FROM"
			   " spool WHERE id < ?1 ORDER BY id LIMIT ?2)"
			   " RETURNING state"),
    [STMT_OLDEST_SIZES] = "SELECT id, size FROM spool ORDER BY id LIMIT ?1",
    [STMT_OLDEST_PENDING] =
	"SELECT created_at FROM spool WHERE id >= " TELESPOOL__PENDING_FROM
	" AND state = 'pending' ORDER BY id LIMIT 1",
    [STMT_EVICT_AGED] = "DELETE FROM spool WHERE id IN (SELECT id FROM spool "
			"WHERE id >= " TELESPOOL__PENDING_FROM
			" AND state = 'pending' AND created_at < ?1"
			" ORDER BY id LIMIT 1000)",
    [STMT_COUNT_DROP] =
	"INSERT INTO drops (reason, count, last_at) VALUES (?1, ?2, ?3)"
	" ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count,"
	" last_at = excluded.last_at",
    [STMT_MILESTONE] =
	"INSERT OR IGNORE INTO survey_milestones (event, recorded_at)"
	" VALUES (?1, ?2)",
    [STMT_SURVEY_CLOSE] =
	"INSERT INTO surveys (survey_id, body, state, received_at, closed_at)"
	" VALUES (?1, '{}', ?2, ?3, ?3) ON CONFLICT (survey_id) DO UPDATE"
	" SET state = excluded.state, closed_at = excluded.closed_at",
    [STMT_SURVEY_PENDING] = "SELECT body FROM surveys WHERE state = 'pending'"
			    " ORDER BY received_at DESC, rowid DESC LIMIT 1",
    /* Due ids with max(?7, pending_from) <= id < ?8, at most ?6; no
     * survey event when ?9 (telespool__claim_skip()). */
    [STMT_DUE] =
	"SELECT id FROM spool WHERE id >= max(?7, " TELESPOOL__PENDING_FROM
	") AND id < ?8 AND" DUE_ROWS " AND NOT (?9 AND event_type IN"
	" ('survey_trigger', 'survey_response', 'survey_dismiss'))"
	" ORDER BY id LIMIT ?6",
    /* Leases (?1) the rows of the JSON array ?7 still due. */
    [STMT_CLAIM] = "UPDATE spool SET lease_until = ?1 WHERE id IN"
		   " (SELECT value FROM json_each(?7)) AND" DUE_ROWS
		   " RETURNING id, event_id, event_type, body,"
		   " attempts, created_at",
    /* What STMT_CLAIM would take, ids > ?1, without taking it. */
    [STMT_PEEK] =
	"SELECT id, event_id, event_type, body, attempts,"
	" created_at FROM spool WHERE id > max(?1, " TELESPOOL__PENDING_FROM
	" - 1) AND" DUE_ROWS " ORDER BY id LIMIT ?6",
    /* The verdicts on row ?1: only a row still pending changes, and, when
     * the caller says which lease it held (?5), only while that lease is
     * still the row's: a verdict that arrives after the lease ran out and
     * another uploader took the row over must not undo that uploader's
     * work.  ?2 sent_at, ?3 next_attempt_at, ?4 last_error. */
    [STMT_SENT] = "UPDATE spool SET state = 'sent', sent_at = ?2,"
		  " attempts = attempts + 1, last_error = NULL,"
		  " lease_until = NULL WHERE id = ?1 AND state = 'pending'",
    [STMT_RETRY] = "UPDATE spool SET attempts = attempts + 1,"
		   " next_attempt_at = ?3, last_error = ?4,"
		   " lease_until = NULL WHERE id = ?1 AND state = 'pending'"
		   " AND (?5 IS NULL OR lease_until = ?5)",
    [STMT_DEAD] = "UPDATE spool SET state = 'dead',"
		  " attempts = attempts + 1, last_error = ?4,"
		  " lease_until = NULL WHERE id = ?1 AND state = 'pending'"
		  " AND (?5 IS NULL OR lease_until = ?5)",
    [STMT_RELEASE] = "UPDATE spool SET lease_until = NULL"
		     " WHERE id = ?1 AND state = 'pending'"
		     " AND (?5 IS NULL OR lease_until = ?5)",
    /* pending_from up to the oldest row still pending, or past the newest. */
    [STMT_ADVANCE] = "INSERT INTO uploader_state (key, value)"
		     " VALUES ('pending_from', coalesce((SELECT id FROM"
		     " spool WHERE id >= " TELESPOOL__PENDING_FROM
		     " AND state = 'pending' ORDER BY id LIMIT 1),"
		     " (SELECT coalesce(max(id), 0) + 1 FROM spool)))"
		     " ON CONFLICT (key) DO UPDATE SET value ="
		     " excluded.value WHERE value IS NOT excluded.value",
};

sqlite3_stmt *telespool__stmt(telespool *sp, enum telespool__stmt_id id)
{
	sqlite3_stmt *st = sp->stmts.st[id];

	if (st != NULL) {
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
		return st;
	}
	int src = sqlite3_prepare_v3(sp->db, stmt_sql[id], -1,
				     SQLITE_PREPARE_PERSISTENT, &st, NULL);
	if (src != SQLITE_OK) {
		telespool__sqlite_fail(sp, src, "preparing a statement");
		return NULL;
	}
	sp->stmts.st[id] = st;
	return st;
}

sqlite3_stmt *telespool__prepare(telespool *sp, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int src = sqlite3_prepare_v2(sp->db, sql, -1, &st, NULL);
	if (src != SQLITE_OK) {
		telespool__sqlite_fail(sp, src, "preparing a statement");
		return NULL;
	}
	return st;
}

/* The result of a helper given no statement: what the failed prepare
 * that gave NULL reported (the message is set already). */
static int no_stmt(telespool *sp)
{
	int rc =
	    telespool__rc_from_db(sp->db, sqlite3_extended_errcode(sp->db));
	return rc == TELESPOOL_OK ? TELESPOOL_ERROR : rc;
}

void telespool__release(telespool *sp, sqlite3_stmt *st)
{
	if (st == NULL)
		return;
	for (int i = 0; i < STMT__COUNT; i++)
		if (sp->stmts.st[i] == st) {
			sqlite3_reset(st);
			return;
		}
	sqlite3_finalize(st);
}

int telespool__step_done(telespool *sp, sqlite3_stmt *st, const char *what)
{
	int src;

	if (st == NULL)
		return no_stmt(sp);
	while ((src = sqlite3_step(st)) == SQLITE_ROW)
		;
	telespool__release(sp, st);
	return telespool__sqlite_fail(sp, src, what);
}

int telespool__row(telespool *sp, sqlite3_stmt *st, const char *what, int *rc)
{
	if (st == NULL) {
		*rc = no_stmt(sp);
		return 0;
	}
	int src = sqlite3_step(st);
	if (src == SQLITE_ROW)
		return 1;
	if (src != SQLITE_DONE)
		*rc = telespool__sqlite_fail(sp, src, what);
	return 0;
}

int telespool__read_ints(telespool *sp, sqlite3_stmt *st, const char *what,
			 int64_t *v, int n)
{
	int rc = TELESPOOL_OK;

	for (int i = 0; i < n; i++)
		v[i] = 0;
	if (telespool__row(sp, st, what, &rc))
		for (int i = 0; i < n; i++)
			v[i] = sqlite3_column_int64(st, i);
	telespool__release(sp, st);
	return rc;
}

int telespool__read_int(telespool *sp, sqlite3_stmt *st, const char *what,
			int64_t *v)
{
	return telespool__read_ints(sp, st, what, v, 1);
}

int telespool__query_int(telespool *sp, const char *sql, int64_t *v)
{
	return telespool__read_int(sp, telespool__prepare(sp, sql), sql, v);
}

int telespool__read_text(telespool *sp, sqlite3_stmt *st, const char *what,
			 char *out, size_t len)
{
	int rc = TELESPOOL_OK;

	out[0] = '\0';
	if (telespool__row(sp, st, what, &rc))
		telespool__column_text(st, 0, out, len);
	telespool__release(sp, st);
	return rc;
}

void telespool__column_text(sqlite3_stmt *st, int i, char *out, size_t len)
{
	const char *t = (const char *)sqlite3_column_text(st, i);
	size_t n = t ? strlen(t) : 0;
	if (n >= len)
		n = len - 1;
	memcpy(out, t ? t : "", n);
	out[n] = '\0';
}

char *telespool__column_dup(sqlite3_stmt *st, int i)
{
	const char *t = (const char *)sqlite3_column_text(st, i);
	return strdup(t ? t : "");
}

char *telespool__ids_json(const int64_t *ids, size_t n)
{
	size_t cap = 2 + n * 21, len = 0;
	char *buf = malloc(cap + 1);
	if (buf == NULL)
		return NULL;
	buf[len++] = '[';
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(buf + len, cap + 1 - len, "%s%lld",
					i ? "," : "", (long long)ids[i]);
	buf[len++] = ']';
	buf[len] = '\0';
	return buf;
}

int telespool__exec_as(telespool *sp, const char *sql, const char *what)
{
	int src = sqlite3_exec(sp->db, sql, NULL, NULL, NULL);
	if (src != SQLITE_OK)
		return telespool__sqlite_fail(sp, src, what);
	return TELESPOOL_OK;
}

int telespool__exec(telespool *sp, const char *sql)
{
	return telespool__exec_as(sp, sql, sql);
}

int telespool__begin(telespool *sp)
{
	return telespool__step_done(sp, telespool__stmt(sp, STMT_BEGIN),
				    "starting a write transaction");
}

int telespool__commit(telespool *sp)
{
	int rc = telespool__step_done(sp, telespool__stmt(sp, STMT_COMMIT),
				      "committing");
	if (rc != TELESPOOL_OK)
		telespool__rollback(sp);
	return rc;
}

void telespool__rollback(telespool *sp)
{
	if (!sqlite3_get_autocommit(sp->db)) {
		char keep[sizeof(sp->errmsg)];
		memcpy(keep, sp->errmsg, sizeof(keep));
		telespool__step_done(sp, telespool__stmt(sp, STMT_ROLLBACK),
				     "rolling back");
		memcpy(sp->errmsg, keep, sizeof(keep));
	}
}

int telespool__end(telespool *sp, int rc)
{
	if (rc == TELESPOOL_OK)
		return telespool__commit(sp);
	telespool__rollback(sp);
	return rc;
}

int telespool__busy_wait(void *ctx, int count)
{
	telespool *sp = ctx;
	int64_t now = telespool__monotonic_ms();

	if (count == 0)
		sp->busy.since_ms = now;
	int64_t left = sp->busy_timeout_ms - (now - sp->busy.since_ms);
	if (left <= 0)
		return 0;
	/* Handles waiting on the same lock draw different steps. */
	if (sp->busy.rng == 0)
		sp->busy.rng = (unsigned)getpid() ^ (unsigned)(uintptr_t)sp;
	sp->busy.rng = sp->busy.rng * 1103515245u + 12345u;
	long us =
	    100 + (long)((sp->busy.rng >> 8) % (count < 20 ? 400u : 2000u));
	if (us > left * 1000)
		us = (long)left * 1000;
	telespool__sleep_us(us);
	return 1;
}

void telespool__db_close(telespool *sp)
{
	for (int i = 0; i < STMT__COUNT; i++) {
		sqlite3_finalize(sp->stmts.st[i]);
		sp->stmts.st[i] = NULL;
	}
	if (sp->db != NULL)
		sqlite3_close_v2(sp->db);
	sp->db = NULL;
}
