/*
 * wal.h - the disk bound of the write-ahead log: its size after each of
 * this handle's commits (the wal hook), the checkpoints that start it
 * over, and the refusal to write while a reader pins it at its bound.
 */
#ifndef TELESPOOL_WAL_H
#define TELESPOOL_WAL_H

#include <sqlite3.h>
#include <stdint.h>

#include "telespool.h"

/* How long a RESTART checkpoint waits for readers and writers (ms). */
#define TELESPOOL__WAL_RESTART_WAIT_MS 2

/* The WAL's state, on the handle (struct telespool's wal): frames in the
 * log after this handle's last commit, the most it may hold, the size at
 * which a commit checkpoints, and (monotonic ms) when a full log may next
 * try one. */
struct telespool__wal {
	int64_t frames;
	int64_t max_frames;
	int64_t ckpt_frames;
	int64_t retry_ms;
	int64_t retry_gap;  /* ms between waits at the WAL bound */
	int64_t restart_ms; /* when a RESTART checkpoint may next be tried */
	int restart_fails;  /* RESTARTs a reader held back in a row */
};

/* The most bytes the WAL may hold for a spool bounded by max_bytes:
 * max_bytes / 2, at least 1 MiB and at most 64 MiB. */
int64_t telespool__wal_limit(int64_t max_bytes);

/* The WAL size (bytes) at which a commit in LangBot's process checkpoints
 * for a log bounded by wal_limit: half of it, at most 16 MiB. */
int64_t telespool__host_checkpoint(int64_t wal_limit);

/* Sets the most bytes the WAL may hold for telespool__wal_room(). */
void telespool__set_wal_limit(telespool *sp, int64_t bytes);

/* Sets the WAL size (in pages) at which this handle's commits checkpoint. */
void telespool__set_checkpoint(telespool *sp, int64_t pages);

/* Starts counting the log's frames after each commit of sp->db and
 * checkpointing at the bound set above (sqlite3_wal_hook). */
void telespool__wal_attach(telespool *sp);

/*
 * The disk bound of the WAL: TELESPOOL_OK while the log is within its
 * bound (telespool__wal_limit()), or once a checkpoint lets it start over.
 * Otherwise a reader has held a transaction open since before the log
 * filled up and it cannot be reset: TELESPOOL_EFULL with sp->errmsg set,
 * nothing written (the caller counts what it did not store).  Costs a
 * comparison unless the log is full; then one PASSIVE checkpoint attempt
 * every 10 ms at most.
 */
int telespool__wal_room(telespool *sp);

/* The log was emptied by a TRUNCATE checkpoint (the purge): the next
 * commit starts it over. */
void telespool__wal_truncated(telespool *sp);

/* The handle is closing: its last commits checkpoint without a RESTART,
 * which would hold the other connections off. */
void telespool__wal_closing(telespool *sp);

#endif
