/*
 * purge.c - the opt-out purge (telespool__purge): every event and survey
 * deleted with a persistent mark, then VACUUM, an emptied WAL and no side
 * file left; and finishing at open a purge that was interrupted.
 */
#include "purge.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "error.h"
#include "queue.h"
#include "spool.h"
#include "timefmt.h"
#include "wal.h"

#define PURGE_MARK TELESPOOL__PURGE_MARK

/*
 * Removes every file telespool wrote next to the spool besides the spool
 * and its WAL: the copies of damaged spools moved aside (PATH.corrupt-*,
 * with their -wal/-shm) and a new file's private name left by a crash
 * (PATH.new-*).  Returns a telespool_rc; names the first failure.
 */
static int remove_side_files(telespool *sp)
{
	const char *path = sp->path, *slash = strrchr(path, '/');
	char dir[4096], full[8400], ebuf[128];
	const char *base = slash ? slash + 1 : path;
	size_t blen = strlen(base);
	int rc = TELESPOOL_OK;

	telespool__dir_of(path, dir, sizeof(dir));
	DIR *d = opendir(dir);
	if (d == NULL)
		return telespool__fail(
		    sp, TELESPOOL_EIO, "the purge cannot list %s: %s", dir,
		    telespool__strerror(errno, ebuf, sizeof(ebuf)));
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		const char *n = e->d_name;
		if (strncmp(n, base, blen) != 0 ||
		    (strncmp(n + blen, ".corrupt-", 9) != 0 &&
		     strncmp(n + blen, ".new-", 5) != 0))
			continue;
		snprintf(full, sizeof(full), "%s/%s", dir, n);
		if (unlink(full) != 0 && errno != ENOENT && rc == TELESPOOL_OK)
			rc = telespool__fail(
			    sp, TELESPOOL_EIO, "the purge cannot remove %s: %s",
			    full,
			    telespool__strerror(errno, ebuf, sizeof(ebuf)));
	}
	closedir(d);
	return rc;
}

/* PRAGMA wal_checkpoint(TRUNCATE): TELESPOOL_EBUSY when a reader kept the
 * WAL from being emptied. */
static int truncate_wal(telespool *sp)
{
	int64_t v[3]; /* busy, frames in the log, frames checkpointed */
	int rc = telespool__read_ints(
	    sp, telespool__prepare(sp, "PRAGMA wal_checkpoint(TRUNCATE)"),
	    "emptying the write-ahead log", v, 3);
	if (rc != TELESPOOL_OK)
		return rc;
	if (v[0] || v[1] != v[2])
		return telespool__fail(
		    sp, TELESPOOL_EBUSY,
		    "the purge deleted every event, but a reader holding a "
		    "transaction open keeps the old pages readable in the file "
		    "and its write-ahead log; the next open or uploader run "
		    "after it ends finishes the purge");
	telespool__wal_truncated(sp);
	return TELESPOOL_OK;
}

/*
 * The second half of a purge, after the deletion committed with the
 * PURGE_MARK key: leave no readable trace.  VACUUM rewrites the database
 * from its live rows only (every old page is overwritten or cut off, so
 * the freed content is gone, not merely unlinked, and the file shrinks), a
 * TRUNCATE checkpoint empties the WAL that held the old page images, the
 * side files go (even while a reader holds the rest back), and only then
 * the mark (its own one-page commit, emptied
 * from the WAL again).  Interrupted anywhere, the mark is still there and
 * the next open (telespool__purge_resume) does it all again.
 */
static int finish_purge(telespool *sp)
{
	int rc = telespool__exec(sp, "VACUUM");
	int side = remove_side_files(sp); /* no reader can hold these back */
	if (rc == TELESPOOL_OK)
		rc = truncate_wal(sp);
	if (rc == TELESPOOL_OK)
		rc = side;
	if (rc == TELESPOOL_OK)
		rc = telespool__exec(sp, "DELETE FROM uploader_state"
					 " WHERE key = '" PURGE_MARK "'");
	if (rc == TELESPOOL_OK)
		rc = truncate_wal(sp);
	return rc;
}

int telespool__purge_resume(telespool *sp)
{
	int64_t marked = 0;
	int rc = telespool__query_int(sp,
				      "SELECT count(*) FROM uploader_state"
				      " WHERE key = '" PURGE_MARK "'",
				      &marked);
	if (rc != TELESPOOL_OK || marked == 0)
		return rc;
	return finish_purge(sp);
}

int telespool__purge(telespool *sp, int64_t *events, int64_t *surveys)
{
	int64_t ne = 0, ns = 0;
	char now[TELESPOOL_ISO_LEN];

	telespool__iso(telespool__now_ms(), now);
	telespool__lock(sp);
	/* Without a WHERE clause SQLite drops the pages whole, in O(pages).
	 * secure_delete (on in Debian's SQLite) would first zero every page
	 * through the WAL: twice the file's size written, and a WAL so long
	 * that each page lookup slows down.  The VACUUM of finish_purge()
	 * overwrites or cuts off every freed page anyway. */
	int64_t secure = -1;
	int rc = telespool__query_int(sp, "PRAGMA secure_delete", &secure);
	if (rc == TELESPOOL_OK)
		rc = telespool__exec(sp, "PRAGMA secure_delete = FAST");
	if (rc == TELESPOOL_OK)
		rc = telespool__begin(sp);
	if (rc == TELESPOOL_OK)
		rc =
		    telespool__query_int(sp, "SELECT count(*) FROM spool", &ne);
	if (rc == TELESPOOL_OK)
		rc = telespool__query_int(sp, "SELECT count(*) FROM surveys",
					  &ns);
	if (rc == TELESPOOL_OK)
		rc = telespool__exec(sp,
				     "DELETE FROM spool; DELETE FROM surveys;"
				     " DELETE FROM survey_milestones;");
	/* In the same transaction: a purge that committed is finished by
	 * whoever opens the spool next, even after a kill -9. */
	if (rc == TELESPOOL_OK) {
		sqlite3_stmt *st = telespool__prepare(
		    sp, "INSERT OR REPLACE INTO uploader_state (key, value)"
			" VALUES ('" PURGE_MARK "', ?1)");
		if (st)
			sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
		rc = telespool__step_done(sp, st, "marking the purge");
	}
	rc = telespool__end(sp, rc);
	if (secure >= 0)
		telespool__exec(sp, secure == 1 ? "PRAGMA secure_delete = ON"
				    : secure == 2
					? "PRAGMA secure_delete = FAST"
					: "PRAGMA secure_delete = OFF");
	if (rc == TELESPOOL_OK)
		rc = finish_purge(sp);
	telespool__unlock(sp);
	if (events)
		*events = ne;
	if (surveys)
		*surveys = ns;
	return rc;
}
