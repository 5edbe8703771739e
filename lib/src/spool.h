/*
 * spool.h - the handle behind telespool *, and helpers every module uses.
 */
#ifndef TELESPOOL_SPOOL_H
#define TELESPOOL_SPOOL_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>

#include "telespool.h"

/* Prepared statements kept on the handle, prepared on first use. */
enum telespool__stmt_id {
	STMT_BEGIN,
	STMT_COMMIT,
	STMT_ROLLBACK,
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
	STMT__COUNT
};

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

/* Reasons a drop is counted for. */
enum telespool__drop {
	DROP_MAX_EVENTS,
	DROP_MAX_BYTES,
	DROP_MAX_AGE,
	DROP_DISK_FULL,
	DROP_WAL_PINNED,
	DROP__COUNT
};

struct telespool {
	sqlite3 *db;
	pthread_mutex_t mu; /* serialises every call on the handle */
	char *path;

	char *instance_id;
	char *version;
	char *edition; /* NULL when not set */
	int64_t instance_create_ts;

	int busy_timeout_ms;
	int64_t busy_since_ms; /* busy_wait(): when the current wait began */
	unsigned busy_rng;     /* busy_wait(): jitter */
	int64_t max_events;
	int64_t max_bytes;
	int64_t max_age_ms;
	int disabled;
	int strict_errors;
	int verify_on_open; /* on_corrupt = MOVE_ASIDE: quick_check at open */
	int durability;     /* telespool_durability */
	int dir_fd; /* the spool's directory, flock'ed shared; -1 if none */

	sqlite3_stmt *stmt[STMT__COUNT];
	sqlite3_stmt *qstmt[8]; /* queue.c's hot statements, prepared once */

	/* Drops that could not be written yet (disk full): counted in the
	 * next transaction that succeeds. */
	int64_t unsaved_drops[DROP__COUNT];
	unsigned records_since_age_check;
	unsigned records_since_page_check;
	int64_t file_bytes; /* page_count * page_size when last read */
	int64_t claim_next; /* telespool__claim(): look from this id first */
	int64_t page_size;  /* of the file, for the max_bytes bound */

	/* The WAL's bound (see telespool__wal_room): frames in the log after
	 * this handle's last commit (the wal hook), the most it may hold, the
	 * size at which a commit checkpoints, and (monotonic ms) when a full
	 * log may next try one. */
	int64_t wal_frames;
	int64_t wal_max_frames;
	int64_t ckpt_frames;
	int64_t wal_retry_ms;
	int64_t wal_retry_gap; /* ms between waits at the WAL bound */
	int64_t restart_ms;    /* when a RESTART checkpoint may next be tried */
	int restart_fails;     /* RESTARTs a reader held back in a row */

	char errmsg[512];
};

/* Sets sp->errmsg (printf-style) and returns rc. */
int telespool__fail(telespool *sp, int rc, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/*
 * Maps an SQLite result to a telespool_rc and sets sp->errmsg with what and
 * sqlite3_errmsg().  Returns TELESPOOL_OK for SQLITE_OK/ROW/DONE.
 */
int telespool__sqlite_fail(telespool *sp, int src, const char *what);

/* Maps an SQLite result code (primary or extended) to a telespool_rc. */
int telespool__rc_from_sqlite(int src);

/* Returns the prepared statement id (reset, bindings cleared), or NULL
 * with sp->errmsg set. */
sqlite3_stmt *telespool__stmt(telespool *sp, enum telespool__stmt_id id);

/* Begins a write transaction (BEGIN IMMEDIATE, bounded by the busy
 * timeout), commits or rolls back.  Return a telespool_rc. */
int telespool__begin(telespool *sp);
int telespool__commit(telespool *sp);
void telespool__rollback(telespool *sp);

/* Writes the drops counted in memory while the disk was full; inside a
 * transaction. */
int telespool__flush_drops(telespool *sp, const char *now_iso);

/* Adds n to drops[reason] inside the current transaction. */
int telespool__count_drop(telespool *sp, const char *reason, int64_t n,
			  const char *now_iso);

/*
 * The disk bound of the WAL: TELESPOOL_OK while the log is within its
 * bound (telespool__wal_limit()), or once a checkpoint lets it start over.
 * Otherwise a reader has held a transaction open since before the log
 * filled up and it cannot be reset: TELESPOOL_EFULL with sp->errmsg set,
 * nothing written (the caller counts what it did not store).  Costs a comparison unless the log is full; then one
 * PASSIVE checkpoint attempt every 10 ms at most.
 */
int telespool__wal_room(telespool *sp);

/* The most bytes the WAL may hold for a spool bounded by max_bytes:
 * max_bytes / 2, at least 1 MiB and at most 64 MiB. */
int64_t telespool__wal_limit(int64_t max_bytes);

/* The directory part of path into dir ("." when it has none). */
void telespool__dir_of(const char *path, char *dir, size_t len);

/* Sets the most bytes the WAL may hold for telespool__wal_room(). */
void telespool__set_wal_limit(telespool *sp, int64_t bytes);

/* Sets the WAL size (in pages) at which this handle's commits checkpoint. */
void telespool__set_checkpoint(telespool *sp, int64_t pages);

/* Runs one statement that returns no rows; for pragmas and DDL. */
int telespool__exec(telespool *sp, const char *sql);

void telespool__lock(telespool *sp);
void telespool__unlock(telespool *sp);

#endif
