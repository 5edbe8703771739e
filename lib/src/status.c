/*
 * status.c - the numbers telespool-upload --status shows
 * (telespool__get_status), read in one read transaction so that they
 * agree with each other.
 */
#include <string.h>

#include "db.h"
#include "error.h"
#include "purge.h"
#include "queue.h"
#include "spool.h"
#include "timefmt.h"

#define PENDING_FROM TELESPOOL__PENDING_FROM

/* Steps the rows of sql into s with row(). */
static int each_row(telespool *sp, const char *sql, const char *what,
		    void (*row)(sqlite3_stmt *, telespool__status *),
		    telespool__status *s)
{
	int rc = TELESPOOL_OK;
	sqlite3_stmt *st = telespool__prepare(sp, sql);

	while (telespool__row(sp, st, what, &rc))
		row(st, s);
	telespool__release(sp, st);
	return rc;
}

/* Rows and bytes by state. */
static void count_row(sqlite3_stmt *st, telespool__status *s)
{
	const char *state = (const char *)sqlite3_column_text(st, 0);
	int64_t n = sqlite3_column_int64(st, 1),
		b = sqlite3_column_int64(st, 2);

	s->total_bytes += b;
	if (state && strcmp(state, "pending") == 0) {
		s->pending = n;
		s->pending_bytes = b;
	} else if (state && strcmp(state, "sent") == 0) {
		s->sent = n;
	} else {
		s->dead += n;
	}
}

/* The oldest and next pending rows, leases, surveys, the schema version
 * and a purge waiting to finish. */
static int read_heads(telespool *sp, const char *now, telespool__status *s)
{
	int rc = TELESPOOL_OK;
	sqlite3_stmt *st = telespool__prepare(
	    sp,
	    "SELECT (SELECT created_at FROM spool WHERE id >= " PENDING_FROM
	    " AND state = 'pending' ORDER BY id LIMIT 1),"
	    " (SELECT min(next_attempt_at) FROM spool WHERE id >= " PENDING_FROM
	    " AND state = 'pending'),"
	    " (SELECT count(*) FROM spool WHERE id >= " PENDING_FROM
	    " AND state = 'pending' AND lease_until > ?1),"
	    " (SELECT count(*) FROM surveys WHERE state = 'pending'),"
	    " (SELECT user_version FROM pragma_user_version),"
	    " (SELECT value FROM uploader_state"
	    "  WHERE key = '" TELESPOOL__PURGE_MARK "')");

	if (st != NULL)
		sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
	if (telespool__row(sp, st, "reading the pending events", &rc)) {
		telespool__column_text(st, 0, s->oldest_pending,
				       sizeof(s->oldest_pending));
		telespool__column_text(st, 1, s->next_attempt,
				       sizeof(s->next_attempt));
		s->leased = sqlite3_column_int64(st, 2);
		s->surveys_pending = sqlite3_column_int64(st, 3);
		s->schema_version = sqlite3_column_int(st, 4);
		telespool__column_text(st, 5, s->purge_incomplete,
				       sizeof(s->purge_incomplete));
	}
	telespool__release(sp, st);
	return rc;
}

static void drop_row(sqlite3_stmt *st, telespool__status *s)
{
	size_t i = s->n_drops++;

	telespool__column_text(st, 0, s->drops[i].reason,
			       sizeof(s->drops[i].reason));
	s->drops[i].count = sqlite3_column_int64(st, 1);
	telespool__column_text(st, 2, s->drops[i].last_at,
			       sizeof(s->drops[i].last_at));
}

static void run_row(sqlite3_stmt *st, telespool__status *s)
{
	size_t i = s->n_runs++;

	s->runs[i].id = sqlite3_column_int64(st, 0);
	telespool__column_text(st, 1, s->runs[i].started_at,
			       sizeof(s->runs[i].started_at));
	telespool__column_text(st, 2, s->runs[i].ended_at,
			       sizeof(s->runs[i].ended_at));
	s->runs[i].sent = sqlite3_column_int64(st, 3);
	s->runs[i].retried = sqlite3_column_int64(st, 4);
	s->runs[i].dead = sqlite3_column_int64(st, 5);
	s->runs[i].purged = sqlite3_column_int64(st, 6);
	telespool__column_text(st, 7, s->runs[i].outcome,
			       sizeof(s->runs[i].outcome));
	telespool__column_text(st, 8, s->runs[i].detail,
			       sizeof(s->runs[i].detail));
}

int telespool__get_status(telespool *sp, int64_t now_ms, telespool__status *s)
{
	char now[TELESPOOL_ISO_LEN];

	memset(s, 0, sizeof(*s));
	telespool__iso(now_ms, now);
	telespool__lock(sp);
	/* One read transaction, so the numbers agree with each other. */
	int rc = telespool__exec(sp, "BEGIN");
	if (rc == TELESPOOL_OK)
		rc = each_row(sp,
			      "SELECT state, count(*), sum(size) FROM spool"
			      " GROUP BY state",
			      "reading the spool's counts", count_row, s);
	if (rc == TELESPOOL_OK)
		rc = read_heads(sp, now, s);
	if (rc == TELESPOOL_OK)
		rc = each_row(sp,
			      "SELECT reason, count, coalesce(last_at, '')"
			      " FROM drops WHERE count > 0"
			      " ORDER BY count DESC, reason LIMIT 16",
			      "reading the drops", drop_row, s);
	if (rc == TELESPOOL_OK)
		rc = each_row(sp,
			      "SELECT id, started_at, coalesce(ended_at, ''),"
			      " sent, retried, dead, purged,"
			      " coalesce(outcome, ''), coalesce(detail, '')"
			      " FROM upload_runs ORDER BY id DESC LIMIT 5",
			      "reading the runs", run_row, s);
	/* Ended on every path (a failed COMMIT rolls back): a read
	 * transaction left open would keep the WAL from being reset. */
	rc = telespool__end(sp, rc);
	telespool__unlock(sp);
	return rc;
}
