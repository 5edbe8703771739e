/*
 * spool.h - the handle behind telespool *: the options it was opened with,
 * its lock and message, and each module's state (the statement cache and
 * busy handler of db.h, the WAL bound of wal.h, the claim cursor of
 * queue.h, the record path's counters); the drops counted on it.
 */
#ifndef TELESPOOL_SPOOL_H
#define TELESPOOL_SPOOL_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>

#include "db.h"
#include "queue.h"
#include "record.h"
#include "telespool.h"
#include "wal.h"

/* Reasons a drop is counted for. */
enum telespool__drop {
	DROP_MAX_EVENTS,
	DROP_MAX_BYTES,
	DROP_MAX_AGE,
	DROP_DISK_FULL,
	DROP_WAL_PINNED,
	DROP__COUNT
};

/* A caller's reason (telespool_count_drops()) that could not be written
 * yet; n 0: the slot is free. */
#define TELESPOOL__CALLER_DROPS 16
struct telespool__caller_drop {
	char reason[TELESPOOL_DROP_REASON_MAX + 1];
	int64_t n;
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
	int64_t max_events;
	int64_t max_bytes;
	int64_t max_age_ms;
	int disabled;
	int strict_errors;
	int verify_on_open; /* on_corrupt = MOVE_ASIDE: quick_check at open */
	int durability;     /* telespool_durability */
	int dir_fd; /* the spool's directory, flock'ed shared; -1 if none */

	struct telespool__stmts stmts;      /* db.c */
	struct telespool__busy busy;        /* db.c */
	struct telespool__wal wal;          /* wal.c */
	struct telespool__cursor queue;     /* queue.c */
	struct telespool__record_state rec; /* record.c */

	/* Drops that could not be written yet (disk full): counted in the
	 * next transaction that succeeds. */
	int64_t unsaved_drops[DROP__COUNT];
	struct telespool__caller_drop unsaved_caller[TELESPOOL__CALLER_DROPS];
	int64_t page_size; /* of the file: the bounds' unit */

	char errmsg[512];
};

/* Writes the drops counted in memory while the disk was full; inside a
 * transaction. */
int telespool__flush_drops(telespool *sp, const char *now_iso);

/* Counts a drop in memory (the disk or the WAL was full), for the next
 * transaction that gets through; forgets them once one that flushed them
 * committed; 1 while some are unwritten. */
void telespool__drop_later(telespool *sp, enum telespool__drop reason);
void telespool__drops_saved(telespool *sp);
int telespool__drops_unsaved(const telespool *sp);

/* Adds n to drops[reason] inside the current transaction. */
int telespool__count_drop(telespool *sp, const char *reason, int64_t n,
			  const char *now_iso);

/* The directory part of path into dir ("." when it has none). */
void telespool__dir_of(const char *path, char *dir, size_t len);

/* The lock every call takes on the handle; lock clears its message. */
void telespool__lock(telespool *sp);
void telespool__unlock(telespool *sp);

#endif
