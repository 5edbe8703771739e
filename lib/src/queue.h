/*
 * queue.h - the spool seen from the uploader: claim, finish, purge, report.
 *
 * The library owns every SQL statement on the spool; telespool-upload (which
 * links the static library) decides policy and speaks HTTP, and reaches the
 * tables only through these calls.  Times are unix ms passed in by the
 * caller, so the uploader's clock is the only clock that decides delivery.
 * Each call is one short transaction; none is held across network I/O.
 */
#ifndef TELESPOOL_QUEUE_H
#define TELESPOOL_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "telespool.h"

/* queue.c's state on the handle (struct telespool's queue). */
struct telespool__cursor {
	int64_t claim_next; /* telespool__claim(): look from this id first */
	unsigned skip;      /* telespool__claim_skip(): families left alone */
};

/* One claimed event. */
typedef struct telespool__item {
	int64_t id;
	char event_id[40];
	char event_type[24];
	char *body; /* exact JSON to POST */
	size_t body_len;
	int attempts; /* before this one */
	int64_t created_ms;
	char lease_until[32]; /* the lease taken by telespool__claim() */
} telespool__item;

/* Longest lease a claim may take; a lease ending later than this from now
 * is stale (the wall clock went back since it was taken). */
#define TELESPOOL__MAX_LEASE_MS (60LL * 60 * 1000)

typedef struct telespool__batch {
	telespool__item *items; /* oldest first */
	size_t n;
} telespool__batch;

/*
 * Claims up to max due pending events, oldest first, with a lease until
 * now_ms + lease_ms (at most TELESPOOL__MAX_LEASE_MS), in one UPDATE ...
 * RETURNING: two uploaders never hold the same row.  Due means next_attempt_at <= now, or further than
 * horizon_ms in the future (the clock went back: do not wait forever), or
 * any next_attempt_at when ignore_backoff.  Rows whose lease has not expired
 * are skipped.  On success *out owns the items (telespool__batch_free);
 * out->n is 0 when nothing is due.  TELESPOOL_EBUSY, nothing claimed, while
 * a reader keeps the WAL at its bound (telespool__wal_room(); the bound is
 * LangBot's when it set a tighter one, see telespool__run_start()).
 */
int telespool__claim(telespool *sp, int64_t now_ms, int64_t lease_ms,
		     int64_t horizon_ms, int ignore_backoff, int max,
		     telespool__batch *out);

void telespool__batch_free(telespool__batch *b);

/* Families of event types, for telespool__claim_skip(). */
#define TELESPOOL__FAMILY_SURVEY                                               \
	1u /* survey_trigger, survey_response, survey_dismiss */

/* From now on, this handle's claims leave the rows of these families
 * (TELESPOOL__FAMILY_*, or 0 for none, the default) where they are: the
 * uploader skips the survey events while their endpoints look down, and
 * sends the telemetry.  telespool__peek() is not filtered. */
void telespool__claim_skip(telespool *sp, unsigned families);

/* The same rows telespool__claim() would take, without taking them: due
 * rows with id > after_id, oldest first (for --dry-run).  Writes nothing. */
int telespool__peek(telespool *sp, int64_t now_ms, int64_t lease_ms,
		    int64_t horizon_ms, int ignore_backoff, int64_t after_id,
		    int max, telespool__batch *out);

/* The verdict on one claimed event. */
typedef enum telespool__verdict {
	TELESPOOL__SENT = 0,   /* state sent, sent_at now */
	TELESPOOL__RETRY = 1,  /* attempts+1, next_attempt_at, last_error */
	TELESPOOL__DEAD = 2,   /* state dead, attempts+1, last_error */
	TELESPOOL__RELEASE = 3 /* not tried: lease dropped, nothing else */
} telespool__verdict;

typedef struct telespool__outcome {
	int64_t id;
	telespool__verdict verdict;
	int64_t next_attempt_ms; /* RETRY */
	const char *last_error;  /* RETRY, DEAD; NULL otherwise */
	const char *drop_reason; /* DEAD: counted in drops (e.g. "rejected") */
	const char *survey_json; /* SENT survey_trigger: data.survey, or NULL */
	const char *lease_until; /* the item's lease: RETRY, DEAD and RELEASE
	                          * apply only while it is still the row's
	                          * (NULL: no such check) */
} telespool__outcome;

/* Records the outcomes of a batch in one transaction.  Only rows still
 * pending change (and, with lease_until, only under that lease), so a late
 * verdict never undoes another uploader's delivery.  A SENT survey_trigger
 * with survey_json stores that survey as pending (unless it was already
 * answered or dismissed). */
int telespool__finish(telespool *sp, const telespool__outcome *o, size_t n,
		      int64_t now_ms);

/* Drops every lease at once.  Only for an uploader that holds the uploader
 * lock: no other uploader can be alive, so leases are leftovers of a crash. */
int telespool__reclaim_leases(telespool *sp, int64_t *n_reclaimed);

/* Housekeeping: pending events recorded more than max_age_ms ago become
 * dead (counted in drops as 'expired'); sent and dead rows recorded more
 * than retention_ms ago are deleted; then free pages are given back
 * (incremental vacuum).  Rows are found by a read-only walk that stops at
 * the first row recorded after the cutoff, and changed 1,000 at a time in
 * short transactions, so LangBot never waits long for the lock; a chunk
 * is not started while a reader keeps the WAL at its bound (TELESPOOL_EFULL,
 * what was done stays).  (Events that use up their attempts are marked dead
 * by the uploader when their last attempt fails.) */
typedef struct telespool__expiry {
	int64_t expired, pruned;
} telespool__expiry;
int telespool__expire(telespool *sp, int64_t now_ms, int64_t max_age_ms,
		      int64_t retention_ms, telespool__expiry *out);

/*
 * Opt-out: deletes every event and every survey row in one transaction,
 * which also leaves a persistent mark (uploader_state 'purge_incomplete');
 * then VACUUM rewrites the file from what is left (no purged value stays
 * readable in it, and it shrinks), a TRUNCATE checkpoint empties the WAL,
 * and the copies of damaged spools moved aside (PATH.corrupt-*) and any
 * leftover private new file (PATH.new-*) are removed; only then the mark
 * goes.  Counts go to *events and *surveys.  TELESPOOL_EBUSY if a reader
 * holding a transaction open keeps the WAL from being emptied (the rows
 * are deleted all the same; the mark stays, so the next open finishes it:
 * telespool__purge_resume()); TELESPOOL_EIO if a side file cannot be
 * removed.  (An interrupted purge is finished at open: purge.h.)
 */
int telespool__purge(telespool *sp, int64_t *events, int64_t *surveys);

/*
 * The uploader's run-wide gates and what decides them, kept in
 * uploader_state under keys of the library's (the uploader cannot reach
 * the library's own, such as pending_from): unix ms or a count, 0 when
 * unset.  Setting 0 removes it.  TELESPOOL_EINVAL for an unknown gate.
 */
enum telespool__gate {
	TELESPOOL__GATE_RETRY_AFTER, /* Space said wait until (unix ms) */
	TELESPOOL__GATE_DOWN_UNTIL,  /* Space looked down until (unix ms) */
	TELESPOOL__GATE_DOWN_COUNT,  /* runs in a row that found it down */
	TELESPOOL__GATE_LAST_RUN,    /* when the last run with events began */
	/* The survey endpoints alone looked down (refused or failing) until
	 * (unix ms), and the runs in a row that found them so. */
	TELESPOOL__GATE_SURVEY_DOWN_UNTIL,
	TELESPOOL__GATE_SURVEY_DOWN_COUNT,
	TELESPOOL__GATE_COUNT
};
int telespool__gate_get(telespool *sp, enum telespool__gate g, int64_t *value);
int telespool__gate_set(telespool *sp, enum telespool__gate g, int64_t value);

/* Where the last run's limit of requests in flight ended (for the next
 * run's start and --status).  cc_get: have 0 when none is stored (or it
 * cannot be read back). */
typedef struct telespool__cc_state {
	int have;
	int level, peak, cuts;
	int fixed; /* the limit was pinned by configuration, not adaptive */
} telespool__cc_state;
int telespool__cc_get(telespool *sp, telespool__cc_state *cc);
int telespool__cc_set(telespool *sp, const telespool__cc_state *cc);

/* upload_runs: a row at start, completed at the end.  run_start also
 * takes on the checkpoints and holds this handle to the WAL bound a LangBot
 * handle left in uploader_state ('wal_limit') when it is tighter. */
int telespool__run_start(telespool *sp, int64_t now_ms, int64_t *run_id);
typedef struct telespool__run {
	int64_t sent, retried, dead, purged;
	const char *outcome;
	const char *detail;
} telespool__run;
int telespool__run_end(telespool *sp, int64_t run_id, int64_t now_ms,
		       const telespool__run *r);

/* What --status shows. */
typedef struct telespool__status {
	int64_t pending, sent, dead;
	int64_t pending_bytes, total_bytes;
	int64_t leased;          /* pending rows under a live lease */
	char oldest_pending[32]; /* created_at, "" if none */
	char next_attempt[32];   /* earliest next_attempt_at, "" if none */
	int64_t surveys_pending;
	char purge_incomplete[32]; /* since when a purge waits to finish, or
				    * "" (a reader held it back) */
	struct {
		char reason[48];
		int64_t count;
		char last_at[32];
	} drops[16];
	size_t n_drops;
	struct {
		int64_t id;
		char started_at[32], ended_at[32];
		int64_t sent, retried, dead, purged;
		char outcome[32];
		char detail[160];
	} runs[5]; /* newest first */
	size_t n_runs;
	int schema_version;
} telespool__status;
int telespool__get_status(telespool *sp, int64_t now_ms, telespool__status *st);

/* The database file's path as opened. */
const char *telespool__path(const telespool *sp);

#endif
