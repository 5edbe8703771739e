/*
 * wal.c - the WAL's disk bound: the wal hook, escalating checkpoints and
 * telespool__wal_room().
 */
#include "wal.h"

#include "db.h"
#include "error.h"
#include "spool.h"
#include "timefmt.h"

/*
 * The WAL's disk bound W (telespool__wal_limit): max_bytes / 2 within
 * 1..64 MiB, 64 MiB for the default 128 MiB (a burst of about 13,000
 * events while a reader holds the log back).  A commit in LangBot's
 * process checkpoints once the log holds HOST_CHECKPOINT (16 MiB: 4000
 * pages of 4 KiB) or W / 2 if less; the uploader checkpoints at SQLite's
 * usual 1000 pages and at the end of each run (queue.c), so with it running
 * LangBot's record calls seldom pay for one.  A reset log is cut back to the
 * same size (journal_size_limit).  Past W, only a reader holding a
 * transaction open can have kept the checkpoints from resetting it: record
 * calls then store nothing (telespool__wal_room).
 */
#define WAL_LIMIT_MIN   (1024 * 1024)
#define WAL_LIMIT_MAX   (64 * 1024 * 1024)
#define HOST_CHECKPOINT (16 * 1024 * 1024)

/* While the log is full, how often a record call tries a checkpoint. */
#define WAL_RETRY_MS        10
#define WAL_RESTART_WAIT_MS TELESPOOL__WAL_RESTART_WAIT_MS

int64_t telespool__wal_limit(int64_t max_bytes)
{
	int64_t w = max_bytes / 2;
	return w < WAL_LIMIT_MIN   ? WAL_LIMIT_MIN
	       : w > WAL_LIMIT_MAX ? WAL_LIMIT_MAX
				   : w;
}

void telespool__set_wal_limit(telespool *sp, int64_t bytes)
{
	/* A frame is a page and its 24-byte header. */
	sp->wal.max_frames = bytes / (sp->page_size + 24);
}

void telespool__set_checkpoint(telespool *sp, int64_t pages)
{
	sp->wal.ckpt_frames = pages > 0 ? pages : 1;
}

int64_t telespool__host_checkpoint(int64_t wal_limit)
{
	return wal_limit / 2 < HOST_CHECKPOINT ? wal_limit / 2
					       : HOST_CHECKPOINT;
}

/* The busy handler of a RESTART checkpoint: *ctx ms, in 200 us steps. */
static int restart_wait(void *ctx, int count)
{
	if (count >= *(const int *)ctx * 5)
		return 0;
	telespool__sleep_us(200);
	return 1;
}

/*
 * One checkpoint of this connection; returns the frames the log holds once
 * it is done (0 when all of them are copied: the next commit starts the
 * log over), or -1 when another connection was checkpointing.  PASSIVE
 * copies what the readers let through without waiting.  That is not
 * enough while other connections commit all the time: some commit always
 * lands while it copies, so the log never runs dry and never starts over
 * (checkpoint starvation).  So when it leaves frames behind, a RESTART
 * checkpoint copies the rest holding the writers off, waiting a little
 * (WAL_RESTART_WAIT_MS) for them and for the readers.  A reader holding a
 * transaction open still wins: then it costs that wait (the other writers
 * too), and the next RESTART waits 10 ms, then twice as long each time up
 * to 100 ms: 2 % of a handle's time while a reader pins the log.  wait_ms
 * is how long the RESTART may wait; force ignores that back-off (the log
 * is at its bound, see telespool__wal_room()).
 */
static int64_t checkpoint(telespool *sp, sqlite3 *db, const char *name,
			  int wait_ms, int force)
{
	int log = -1, done = -1;
	int src = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE,
					    &log, &done);
	if (log >= 0 && done >= log) {
		sp->wal.restart_fails = 0;
		sp->wal.restart_ms = 0;
		return 0;
	}
	int64_t now = telespool__monotonic_ms();
	if (now < sp->wal.restart_ms && !force)
		return src == SQLITE_OK ? log : -1;
	sqlite3_busy_handler(db, restart_wait, &wait_ms);
	/* SQLite never calls the busy handler for the checkpoint lock, which
	 * another connection's (short) checkpoint may hold. */
	for (int i = 0; i <= wait_ms * 5; i++) {
		if (i > 0)
			telespool__sleep_us(200);
		src = sqlite3_wal_checkpoint_v2(
		    db, name, SQLITE_CHECKPOINT_RESTART, &log, &done);
		if (src != SQLITE_BUSY || log >= 0)
			break;
	}
	sqlite3_busy_handler(db, telespool__busy_wait, sp);
	if (log >= 0 && done >= log) {
		sp->wal.restart_fails = 0;
		sp->wal.restart_ms = 0;
		return 0;
	}
	/* A reader kept it from copying everything: it may hold on for
	 * long, so wait longer each time (10 ms, doubling up to 100 ms). */
	if (log >= 0) {
		int n = sp->wal.restart_fails < 4 ? sp->wal.restart_fails++ : 4;
		int64_t wait = (int64_t)WAL_RETRY_MS << n;
		sp->wal.restart_ms = now + (wait < 100 ? wait : 100);
	}
	return log;
}

/*
 * After each commit of this connection: SQLite's own auto-checkpoint (a
 * checkpoint once the log holds ckpt_frames, escalated as checkpoint()
 * says), keeping the log's size for telespool__wal_room().  The bound
 * keeps the log, and so each lookup in it, from growing without end.
 */
static int wal_hook(void *ctx, sqlite3 *db, const char *name, int frames)
{
	telespool *sp = ctx;

	sp->wal.frames = frames;
	if (frames >= sp->wal.ckpt_frames &&
	    checkpoint(sp, db, name, WAL_RESTART_WAIT_MS, 0) == 0)
		sp->wal.frames = 0; /* the next commit starts the log over */
	return SQLITE_OK;
}

/*
 * At the bound the short RESTART of wal_hook() is not enough proof that a
 * reader pins the log: on a loaded machine another writer of the same file
 * can be descheduled inside its transaction for longer than 2 ms.  So
 * before refusing, a RESTART may wait up to half the busy timeout (at most
 * WAL_BOUND_WAIT_MS), well inside the bound every call already has.  A
 * reader that outlasts it is taken for one that holds on: the next such
 * wait comes WAL_RETRY_MS later, then twice as late each time up to
 * WAL_BOUND_RETRY_MAX_MS (one call a second per handle pays the wait while
 * a reader pins the log; the others are refused at once).
 */
#define WAL_BOUND_WAIT_MS      100
#define WAL_BOUND_RETRY_MAX_MS 1000

int telespool__wal_room(telespool *sp)
{
	if (sp->wal.frames <= sp->wal.max_frames)
		return TELESPOOL_OK;
	int64_t now = telespool__monotonic_ms();
	if (now >= sp->wal.retry_ms) {
		int wait = sp->busy_timeout_ms / 2;
		if (wait > WAL_BOUND_WAIT_MS)
			wait = WAL_BOUND_WAIT_MS;
		if (wait < WAL_RESTART_WAIT_MS)
			wait = WAL_RESTART_WAIT_MS;
		int64_t left = checkpoint(sp, sp->db, NULL, wait, 1);
		/* All copied, or someone else's commit started it over. */
		if (left >= 0 && left <= sp->wal.max_frames) {
			sp->wal.frames = left;
			sp->wal.retry_gap = 0;
			return TELESPOOL_OK;
		}
		sp->wal.retry_gap = sp->wal.retry_gap == 0
					? WAL_RETRY_MS
					: sp->wal.retry_gap * 2;
		if (sp->wal.retry_gap > WAL_BOUND_RETRY_MAX_MS)
			sp->wal.retry_gap = WAL_BOUND_RETRY_MAX_MS;
		sp->wal.retry_ms =
		    telespool__monotonic_ms() + sp->wal.retry_gap;
	}
	return telespool__fail(
	    sp, TELESPOOL_EFULL,
	    "the write-ahead log is at its bound (%lld KiB): a reader has "
	    "held a transaction open since before it filled, so no checkpoint "
	    "can start it over; nothing was written (a record call counts its "
	    "event in drops as wal_pinned)",
	    (long long)(sp->wal.max_frames * (sp->page_size + 24) / 1024));
}

void telespool__wal_attach(telespool *sp)
{
	sp->wal.frames = 0;
	sqlite3_wal_hook(sp->db, wal_hook, sp);
}

void telespool__wal_truncated(telespool *sp)
{
	sp->wal.frames = 0;
}

void telespool__wal_closing(telespool *sp)
{
	sp->wal.restart_ms = INT64_MAX;
}
