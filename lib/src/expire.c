/*
 * expire.c - the uploader's housekeeping (telespool__expire): pending
 * events past their age become dead, old sent and dead rows go, and free
 * space is given back; found by read-only walks and changed a chunk at a
 * time in short transactions.
 */
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "error.h"
#include "queue.h"
#include "spool.h"
#include "timefmt.h"
#include "wal.h"

/* Ids handled per write transaction by the chunked operations below. */
#define CHUNK 1000

/*
 * The ids a read-only SELECT finds (first column), as a JSON array text for
 * "id IN (SELECT value FROM json_each(?))", at most CHUNK of them.  The
 * SELECT runs outside any write transaction: in WAL mode a reader blocks
 * nobody, so a long scan never makes LangBot's record calls wait.
 * *last gets the largest id (for the next chunk's "id > ?").  With before,
 * the SELECT's second column is created_at and the walk stops (*ended) at
 * the first row recorded at or after it.
 */
static int collect_ids(telespool *sp, sqlite3_stmt *st, const char *before,
		       char **json, size_t *n, int64_t *last, int *ended)
{
	int64_t ids[CHUNK];
	int src = SQLITE_DONE;

	*n = 0;
	*json = NULL;
	*ended = 0;
	while (*n < CHUNK && (src = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		const char *t = (const char *)sqlite3_column_text(st, 1);
		if (before && t && strcmp(t, before) >= 0) {
			/* Rows come in id order, which is recording order: the
			 * first one recorded after the cutoff ends the walk. */
			*ended = 1;
			src = SQLITE_DONE;
			break;
		}
		ids[(*n)++] = id;
		*last = id;
	}
	if (src == SQLITE_ROW)
		src =
		    SQLITE_DONE; /* CHUNK of them: the rest is the next walk's */
	telespool__release(sp, st);
	if (src != SQLITE_DONE)
		return telespool__sqlite_fail(sp, src, "reading the spool");
	*json = telespool__ids_json(ids, *n);
	if (*json == NULL)
		return telespool__fail(sp, TELESPOOL_ENOMEM, "out of memory");
	return TELESPOOL_OK;
}

/*
 * Finds rows with select (?1 = the last id done, ?2 = before; ids in
 * order, and with stop_early a second column created_at at which the walk
 * stops at the first row recorded at or after before) and applies update
 * (?1 = JSON array of ids, ?2 = before, ?3 = now) to them, CHUNK at a time,
 * each chunk in its own short write transaction.  Changed rows are counted
 * in drops under reason (unless NULL) and in *total.
 */
static int walk_older(telespool *sp, const char *select_sql,
		      const char *update_sql, const char *before,
		      const char *now, const char *reason, int stop_early,
		      int64_t *total)
{
	int64_t last = 0;
	int ended = 0;

	*total = 0;
	while (!ended) {
		sqlite3_stmt *st = telespool__prepare(sp, select_sql);
		char *ids = NULL;
		size_t n = 0;
		if (st == NULL)
			return TELESPOOL_ERROR;
		sqlite3_bind_int64(st, 1, last);
		sqlite3_bind_text(st, 2, before, -1, SQLITE_STATIC);
		int rc = collect_ids(sp, st, stop_early ? before : NULL, &ids,
				     &n, &last, &ended);
		if (rc != TELESPOOL_OK || n == 0) {
			free(ids);
			return rc;
		}
		/* Not while a reader keeps the WAL from being reset. */
		rc = telespool__wal_room(sp);
		if (rc != TELESPOOL_OK) {
			free(ids);
			return rc;
		}
		rc = telespool__begin(sp);
		st = rc == TELESPOOL_OK ? telespool__prepare(sp, update_sql)
					: NULL;
		if (st != NULL) {
			sqlite3_bind_text(st, 1, ids, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 2, before, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 3, now, -1, SQLITE_STATIC);
		}
		if (rc == TELESPOOL_OK)
			rc = telespool__step_done(sp, st, "housekeeping");
		int64_t changed =
		    rc == TELESPOOL_OK ? sqlite3_changes64(sp->db) : 0;
		if (rc == TELESPOOL_OK && reason)
			rc = telespool__count_drop(sp, reason, changed, now);
		rc = telespool__end(sp, rc);
		free(ids);
		if (rc != TELESPOOL_OK)
			return rc;
		*total += changed;
		if (n < CHUNK)
			break;
	}
	return TELESPOOL_OK;
}

/* give_back_space(): a file with at least this much free space, and at
 * most this much in use, is rewritten (VACUUM): LangBot's writers wait
 * while it runs, and copying a few MiB takes milliseconds, well within
 * their busy timeout. */
#define COMPACT_MIN_FREE (16 * 1024 * 1024)
#define COMPACT_MAX_USED (4 * 1024 * 1024)

/*
 * After pruning: gives free pages back to the file system.  A spool made
 * before 0002 has auto_vacuum=INCREMENTAL and gives them back a little at a
 * time.  A newer one has no auto_vacuum (it cost every record call about a
 * tenth of its time, keeping the pointer map): its free pages are reused by
 * new events, and once most of a large file is free and little is in use
 * (a long outage's backlog delivered and aged out), it is rewritten.
 */
static int give_back_space(telespool *sp)
{
	int64_t mode, pages, free_pages;
	int rc = telespool__query_int(sp, "PRAGMA auto_vacuum", &mode);
	if (rc == TELESPOOL_OK && mode == 2)
		return telespool__exec(sp, "PRAGMA incremental_vacuum");
	if (rc == TELESPOOL_OK)
		rc = telespool__query_int(sp, "PRAGMA page_count", &pages);
	if (rc == TELESPOOL_OK)
		rc = telespool__query_int(sp, "PRAGMA freelist_count",
					  &free_pages);
	if (rc != TELESPOOL_OK)
		return rc;
	if (free_pages * sp->page_size < COMPACT_MIN_FREE ||
	    (pages - free_pages) * sp->page_size > COMPACT_MAX_USED)
		return TELESPOOL_OK;
	return telespool__exec(sp, "VACUUM");
}

int telespool__expire(telespool *sp, int64_t now_ms, int64_t max_age_ms,
		      int64_t retention_ms, telespool__expiry *out)
{
	char now[TELESPOOL_ISO_LEN], cutoff[TELESPOOL_ISO_LEN];
	char keep[TELESPOOL_ISO_LEN];
	telespool__expiry e = {0, 0};
	int rc;

	telespool__iso(now_ms, now);
	telespool__iso(now_ms - max_age_ms, cutoff);
	telespool__iso(now_ms - retention_ms, keep);
	telespool__lock(sp);
	/* Pending rows in id order are in recording order: the walk stops at
	 * the first one recorded after the cutoff, so a large backlog of
	 * recent events costs an index lookup, not a scan.  (One recorded
	 * under a wall clock set back is caught when the uploader tries it.) */
	rc = walk_older(
	    sp,
	    "SELECT id, created_at FROM spool WHERE id > "
	    "max(?1, " TELESPOOL__PENDING_FROM
	    " - 1) AND state = 'pending' AND ?2 = ?2 ORDER BY id LIMIT 1000",
	    "UPDATE spool SET state = 'dead', lease_until = NULL,"
	    " last_error = 'expired: not delivered before ' || ?2"
	    " WHERE id IN (SELECT value FROM json_each(?1))"
	    " AND state = 'pending'"
	    " AND (lease_until IS NULL OR lease_until <= ?3)",
	    cutoff, now, "expired", 1, &e.expired);
	/* Finished rows are found through their own index by age. */
	if (rc == TELESPOOL_OK)
		rc = walk_older(
		    sp,
		    /* Without INDEXED BY the planner walks the table in id
		     * order to skip a sort.  Every row found is deleted, so
		     * no cursor is needed (?1 unused). */
		    "SELECT id FROM spool INDEXED BY spool_done"
		    " WHERE state <> 'pending' AND created_at < ?2"
		    " AND coalesce(sent_at, created_at) < ?2 AND ?1 = ?1"
		    " LIMIT 1000",
		    "DELETE FROM spool WHERE id IN"
		    " (SELECT value FROM json_each(?1)) AND state <> 'pending'"
		    " AND coalesce(sent_at, created_at) < ?2 AND ?3 = ?3",
		    keep, now, NULL, 0, &e.pruned);
	/* Best effort: the expiries and deletions are committed and counted
	 * whether or not the space can be given back now (the next prune
	 * tries again). */
	if (rc == TELESPOOL_OK && e.pruned > 0)
		(void)give_back_space(sp);
	telespool__unlock(sp);
	if (out)
		*out = e;
	return rc;
}
