/*
 * record.c - the record path that runs inside LangBot: build the body
 * outside any transaction, then one short BEGIN IMMEDIATE ... COMMIT that
 * makes room within the spool's bounds and inserts the event.
 */
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "db.h"
#include "error.h"
#include "record.h"
#include "spool.h"
#include "timefmt.h"
#include "uuid.h"
#include "wal.h"

/* How often (in records per handle) the age bound is checked. */
#define AGE_CHECK_EVERY 64

/* How often (in records per handle) the file's size is read while it is
 * more than PAGE_CHECK_MARGIN below max_bytes; within the margin, at every
 * record.  32 records of at most 64 KiB each (and whatever other
 * processes add meanwhile) fit in the margin four times over. */
#define PAGE_CHECK_EVERY  32
#define PAGE_CHECK_MARGIN (8 * 1024 * 1024)

/* Rows evicted by one record call at most: a spool far over its bounds
 * (the bounds were lowered) converges over the next calls instead of
 * stalling one. */
#define EVICT_CHUNK 256

/* Bytes a row takes besides its body (ids, times, state, record header),
 * for its size column; migration 0002 uses the same figure. */
#define ROW_OVERHEAD 160

/*
 * Deletes up to max of the oldest rows with id < below and counts the
 * pending ones among them as drops for reason.  *deleted gets the number of
 * rows removed (sent and dead audit copies are removed without a drop:
 * they were delivered or given up on already).
 */
static int evict_oldest(telespool *sp, int64_t below, int64_t max,
			const char *reason, const char *now_iso,
			int64_t *deleted)
{
	sqlite3_stmt *st = telespool__stmt(sp, STMT_EVICT_OLDEST);
	int64_t pending = 0, n = 0;
	int src;

	if (st == NULL)
		return TELESPOOL_ERROR;
	sqlite3_bind_int64(st, 1, below);
	sqlite3_bind_int64(st, 2, max);
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		const char *state = (const char *)sqlite3_column_text(st, 0);
		n++;
		if (state && strcmp(state, "pending") == 0)
			pending++;
	}
	sqlite3_reset(st);
	if (src != SQLITE_DONE)
		return telespool__sqlite_fail(sp, src, "evicting old events");
	*deleted = n;
	return telespool__count_drop(sp, reason, pending, now_iso);
}

/* Pending events older than max_age are evicted, oldest first. */
static int evict_aged(telespool *sp, int64_t now_ms, const char *now_iso)
{
	char cutoff[TELESPOOL_ISO_LEN];
	sqlite3_stmt *st = telespool__stmt(sp, STMT_OLDEST_PENDING);
	if (st == NULL)
		return TELESPOOL_ERROR;
	telespool__iso(now_ms - sp->max_age_ms, cutoff);
	int src = sqlite3_step(st);
	int old = src == SQLITE_ROW &&
		  strcmp((const char *)sqlite3_column_text(st, 0), cutoff) < 0;
	sqlite3_reset(st);
	if (src != SQLITE_ROW && src != SQLITE_DONE)
		return telespool__sqlite_fail(sp, src, "checking event ages");
	while (old) {
		st = telespool__stmt(sp, STMT_EVICT_AGED);
		if (st == NULL)
			return TELESPOOL_ERROR;
		sqlite3_bind_text(st, 1, cutoff, -1, SQLITE_STATIC);
		src = sqlite3_step(st);
		sqlite3_reset(st);
		if (src != SQLITE_DONE)
			return telespool__sqlite_fail(sp, src,
						      "evicting old events");
		int64_t n = sqlite3_changes64(sp->db);
		int rc =
		    telespool__count_drop(sp, "evicted_max_age", n, now_iso);
		if (rc != TELESPOOL_OK)
			return rc;
		old = n >= 1000;
	}
	return TELESPOOL_OK;
}

/*
 * Inserts the event, in the record's transaction.  Its id is max(id) + 1,
 * as SQLite would choose, but never below pending_from (after the newest
 * rows were deleted, SQLite would give their ids out again).
 */
static int insert_event(telespool *sp, const struct telespool__event *ev,
			const char *event_id, const char *now_iso, int64_t size)
{
	sqlite3_stmt *st = telespool__stmt(sp, STMT_INSERT_EVENT);
	if (st == NULL)
		return TELESPOOL_ERROR;
	sqlite3_bind_text(st, 1, now_iso, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, size);
	sqlite3_bind_text(st, 3, event_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, ev->event_type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, ev->body, (int)ev->body_len, SQLITE_STATIC);
	int src = sqlite3_step(st);
	sqlite3_reset(st);
	if (src != SQLITE_DONE)
		return telespool__sqlite_fail(sp, src, "storing the event");
	return TELESPOOL_OK;
}

/*
 * Makes room within max_bytes for a new row of size bytes, before it goes
 * in (so that the file never has to grow past the bound, even by one
 * event): the file's used pages (pages less free pages) are its size, and
 * just enough of the oldest rows go, by their recorded sizes, whatever
 * their state (pending ones are counted in drops).
 */
static int make_room(telespool *sp, int64_t size, const char *now_iso)
{
	int64_t pages = 0, free_pages = 0, deleted = 0;
	int rc = TELESPOOL_OK, src;

	/* PRAGMA page_count is compiled again on every run: far from the
	 * bound it is read every PAGE_CHECK_EVERY records only. */
	if (sp->rec.since_page_check++ % PAGE_CHECK_EVERY == 0 ||
	    sp->rec.file_bytes + PAGE_CHECK_MARGIN > sp->max_bytes) {
		rc = telespool__read_int(sp,
					 telespool__stmt(sp, STMT_PAGE_COUNT),
					 "reading the spool size", &pages);
		sp->rec.file_bytes = pages * sp->page_size;
	}
	/* The free pages only matter near the bound. */
	if (rc == TELESPOOL_OK && sp->rec.file_bytes + size > sp->max_bytes)
		rc = telespool__read_int(
		    sp, telespool__stmt(sp, STMT_FREELIST_COUNT),
		    "reading the spool size", &free_pages);
	if (rc != TELESPOOL_OK)
		return rc;
	int64_t used = sp->rec.file_bytes - free_pages * sp->page_size;
	if (used + size <= sp->max_bytes)
		return TELESPOOL_OK;
	sqlite3_stmt *st = telespool__stmt(sp, STMT_OLDEST_SIZES);
	if (st == NULL)
		return TELESPOOL_ERROR;
	int64_t need = used + size - sp->max_bytes, freed = 0, upto = 0;
	sqlite3_bind_int(st, 1, EVICT_CHUNK);
	while (freed < need && (src = sqlite3_step(st)) == SQLITE_ROW) {
		upto = sqlite3_column_int64(st, 0);
		freed += sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	if (upto > 0)
		rc = evict_oldest(sp, upto + 1, EVICT_CHUNK,
				  "evicted_max_bytes", now_iso, &deleted);
	return rc;
}

/*
 * Keeps max_events after the event new_id went in (same transaction), in
 * O(log n): ids only grow, so the rows below new_id + 1 - max_events are
 * the ones beyond the bound.  The oldest go first, whatever their state;
 * the new one never does.
 */
static int keep_count(telespool *sp, int64_t new_id, const char *now_iso)
{
	int64_t deleted = 0, below = new_id + 1 - sp->max_events;
	if (below <= 1)
		return TELESPOOL_OK;
	return evict_oldest(sp, below, EVICT_CHUNK, "evicted_max_events",
			    now_iso, &deleted);
}

/* Survey bookkeeping done in the same transaction as the event. */
enum side_effect { SIDE_NONE, SIDE_MILESTONE, SIDE_ANSWERED, SIDE_DISMISSED };

static int survey_side(telespool *sp, enum side_effect side,
		       const struct telespool__event *ev, const char *now_iso,
		       int *skip)
{
	*skip = 0;
	if (side == SIDE_NONE)
		return TELESPOOL_OK;
	sqlite3_stmt *st;
	if (side == SIDE_MILESTONE) {
		st = telespool__stmt(sp, STMT_MILESTONE);
		if (st == NULL)
			return TELESPOOL_ERROR;
		sqlite3_bind_text(st, 1, ev->milestone, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, now_iso, -1, SQLITE_STATIC);
	} else {
		st = telespool__stmt(sp, STMT_SURVEY_CLOSE);
		if (st == NULL)
			return TELESPOOL_ERROR;
		sqlite3_bind_text(st, 1, ev->survey_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(
		    st, 2, side == SIDE_ANSWERED ? "answered" : "dismissed", -1,
		    SQLITE_STATIC);
		sqlite3_bind_text(st, 3, now_iso, -1, SQLITE_STATIC);
	}
	int src = sqlite3_step(st);
	sqlite3_reset(st);
	if (src != SQLITE_DONE)
		return telespool__sqlite_fail(sp, src, "recording the survey");
	/* A milestone already checked once is not checked again. */
	if (side == SIDE_MILESTONE && sqlite3_changes(sp->db) == 0)
		*skip = 1;
	return TELESPOOL_OK;
}

/*
 * Stores a built event in one transaction.  Called with the handle locked;
 * consumes ev.
 */
static int store(telespool *sp, struct telespool__event *ev, int64_t now_ms,
		 const char *now_iso, enum side_effect side)
{
	char event_id[37];
	int skip = 0;

	if (telespool__uuid4(event_id) != 0) {
		telespool__event_free(ev);
		return telespool__fail(sp, TELESPOOL_ERROR,
				       "the system's random source failed");
	}
	/* The body, the other columns, and the row's own overhead. */
	int64_t size = (int64_t)ev->body_len + ROW_OVERHEAD;

	/* A WAL a reader keeps from being reset takes nothing more. */
	int rc = telespool__wal_room(sp);
	if (rc != TELESPOOL_OK) {
		telespool__drop_later(sp, DROP_WAL_PINNED);
		telespool__event_free(ev);
		return rc;
	}
	/* Drops kept in memory (a full disk before) are rare: most records
	 * neither write nor clear them. */
	int unsaved = telespool__drops_unsaved(sp);
	rc = telespool__begin(sp);
	if (rc == TELESPOOL_OK && unsaved)
		rc = telespool__flush_drops(sp, now_iso);
	if (rc == TELESPOOL_OK &&
	    sp->rec.since_age_check++ % AGE_CHECK_EVERY == 0)
		rc = evict_aged(sp, now_ms, now_iso);
	if (rc == TELESPOOL_OK)
		rc = survey_side(sp, side, ev, now_iso, &skip);
	if (rc == TELESPOOL_OK && !skip)
		rc = make_room(sp, size, now_iso);
	if (rc == TELESPOOL_OK && !skip)
		rc = insert_event(sp, ev, event_id, now_iso, size);
	if (rc == TELESPOOL_OK && !skip)
		rc = keep_count(sp, sqlite3_last_insert_rowid(sp->db), now_iso);
	rc = telespool__end(sp, rc);
	telespool__event_free(ev);

	if (rc == TELESPOOL_OK) {
		if (unsaved)
			telespool__drops_saved(sp);
	} else if (rc == TELESPOOL_EFULL) {
		/* Counted in the next transaction that gets through. */
		telespool__drop_later(sp, DROP_DISK_FULL);
	}
	return rc;
}

/* One record call: its moment (read once under the handle's lock), the
 * handle's identity, the event built, its result and why it failed. */
struct rec {
	int64_t us, ms;
	char iso[TELESPOOL_ISO_LEN];
	struct telespool__ident id;
	struct telespool__event ev;
	int rc;
	const char *why;
	int locked;
};

/* Takes the lock and reads the time: 1 when the event may be built then,
 * 0 when sp is NULL or disabled (refused, r->rc set, lock released). */
static int begin_record(telespool *sp, struct rec *r)
{
	r->rc = TELESPOOL_OK;
	r->why = NULL;
	r->locked = 0;
	if (sp == NULL) {
		r->rc = TELESPOOL_EINVAL;
		return 0;
	}
	telespool__lock(sp);
	if (sp->disabled) {
		r->rc = telespool__fail(
		    sp, TELESPOOL_EDISABLED,
		    "telemetry is disabled: the event was not stored");
		telespool__unlock(sp);
		return 0;
	}
	r->locked = 1;
	r->us = telespool__now_us();
	r->ms = r->us / 1000;
	telespool__iso(r->ms, r->iso);
	r->id = (struct telespool__ident){sp->instance_id, sp->version,
					  sp->edition, sp->instance_create_ts};
	return 1;
}

/* 1 when the argument arg a call needs is there; otherwise r fails with
 * TELESPOOL_EINVAL and why.  why also stands for a failure the body
 * builder does not explain. */
static int need(struct rec *r, const void *arg, const char *why)
{
	r->why = why;
	if (arg == NULL)
		r->rc = TELESPOOL_EINVAL;
	return arg != NULL;
}

/* Stores the event built, or says why there is none; releases the lock
 * begin_record() took. */
static int finish_record(telespool *sp, struct rec *r, enum side_effect side)
{
	if (!r->locked)
		return r->rc;
	if (r->rc == TELESPOOL_OK)
		r->rc = store(sp, &r->ev, r->ms, r->iso, side);
	else
		telespool__fail(sp, r->rc, "%s",
				r->why ? r->why : "invalid event");
	telespool__unlock(sp);
	return r->rc;
}

int telespool_record_query(telespool *sp, const telespool_query *q)
{
	struct rec r;

	if (sp != NULL && q == NULL) {
		telespool__lock(sp);
		telespool__fail(sp, TELESPOOL_EINVAL, "query is NULL");
		telespool__unlock(sp);
		return TELESPOOL_EINVAL;
	}
	if (!begin_record(sp, &r))
		return r.rc;
	if (q->struct_version < 1 ||
	    q->struct_version > TELESPOOL_QUERY_VERSION) {
		r.rc = telespool__fail(sp, TELESPOOL_EINVAL,
				       "query.struct_version %u is not "
				       "supported: initialise with "
				       "TELESPOOL_QUERY_INIT",
				       q->struct_version);
		telespool__unlock(sp);
		return r.rc;
	}
	if (q->struct_version >= 2)
		r.rc = telespool__body_query2(&r.ev, &r.id, q,
					      sp->strict_errors, r.us, &r.why);
	else
		r.rc = telespool__body_query(&r.ev, &r.id, q, sp->strict_errors,
					     r.iso, &r.why);
	return finish_record(sp, &r, SIDE_NONE);
}

int telespool_record_heartbeat(telespool *sp, const char *features_json)
{
	struct rec r;

	/* features_json may be NULL: no features. */
	if (begin_record(sp, &r))
		r.rc = telespool__body_heartbeat(&r.ev, &r.id, features_json,
						 r.iso, &r.why);
	return finish_record(sp, &r, SIDE_NONE);
}

int telespool_record_workspace_heartbeat(telespool *sp,
					 const telespool_heartbeat *hb)
{
	struct rec r;

	if (!begin_record(sp, &r) || !need(&r, hb, "heartbeat is NULL"))
		return finish_record(sp, &r, SIDE_NONE);
	if (hb->struct_version < 1 ||
	    hb->struct_version > TELESPOOL_HEARTBEAT_VERSION) {
		r.rc = TELESPOOL_EINVAL;
		r.why = "heartbeat.struct_version is not supported: initialise "
			"with TELESPOOL_HEARTBEAT_INIT";
	} else {
		r.rc = telespool__body_workspace_heartbeat(&r.ev, &r.id, hb,
							   r.us, &r.why);
	}
	return finish_record(sp, &r, SIDE_NONE);
}

int telespool_record_json_to(telespool *sp, const char *endpoint,
			     const char *payload_json)
{
	static const enum side_effect sides[] = {SIDE_NONE, SIDE_MILESTONE,
						 SIDE_ANSWERED, SIDE_DISMISSED};
	struct rec r;
	int ep = telespool__endpoint_of(endpoint);

	if (begin_record(sp, &r) &&
	    need(&r, ep < 0 ? NULL : &ep,
		 "endpoint is not one of /api/v1/telemetry, "
		 "/api/v1/survey/pending, /api/v1/survey/respond, "
		 "/api/v1/survey/dismiss") &&
	    need(&r, payload_json, "payload_json is NULL"))
		r.rc = telespool__body_json(&r.ev, payload_json,
					    (enum telespool__endpoint)ep,
					    sp->strict_errors, &r.why);
	return finish_record(sp, &r, ep < 0 ? SIDE_NONE : sides[ep]);
}

int telespool_record_json(telespool *sp, const char *payload_json)
{
	return telespool_record_json_to(sp, NULL, payload_json);
}

/* The survey calls: the milestone reached (SIDE_MILESTONE), or survey id
 * answered or dismissed. */
static int record_survey(telespool *sp, enum side_effect side, const char *id,
			 const char *answers_json, int completed)
{
	struct rec r;

	if (!begin_record(sp, &r) ||
	    !need(&r, id,
		  side == SIDE_MILESTONE ? "event (the milestone) is NULL"
					 : "survey_id is NULL"))
		return finish_record(sp, &r, side);
	if (side == SIDE_MILESTONE)
		r.rc = telespool__body_survey_trigger(&r.ev, &r.id, id, &r.why);
	else if (side == SIDE_ANSWERED)
		r.rc = telespool__body_survey_response(
		    &r.ev, &r.id, id, answers_json, completed, &r.why);
	else
		r.rc = telespool__body_survey_dismiss(&r.ev, &r.id, id, &r.why);
	return finish_record(sp, &r, side);
}

int telespool_record_survey_trigger(telespool *sp, const char *event)
{
	return record_survey(sp, SIDE_MILESTONE, event, NULL, 0);
}

int telespool_record_survey_response(telespool *sp, const char *survey_id,
				     const char *answers_json, int completed)
{
	return record_survey(sp, SIDE_ANSWERED, survey_id, answers_json,
			     completed);
}

int telespool_record_survey_dismiss(telespool *sp, const char *survey_id)
{
	return record_survey(sp, SIDE_DISMISSED, survey_id, NULL, 0);
}

int telespool_pending_survey(telespool *sp, char **out_json)
{
	if (out_json != NULL)
		*out_json = NULL;
	if (sp == NULL)
		return TELESPOOL_EINVAL;
	telespool__lock(sp);
	if (out_json == NULL) {
		telespool__fail(sp, TELESPOOL_EINVAL, "out_json is NULL");
		telespool__unlock(sp);
		return TELESPOOL_EINVAL;
	}
	if (sp->disabled) {
		telespool__unlock(sp);
		return TELESPOOL_OK;
	}
	int rc = TELESPOOL_OK;
	sqlite3_stmt *st = telespool__stmt(sp, STMT_SURVEY_PENDING);
	if (st == NULL) {
		rc = TELESPOOL_ERROR;
	} else {
		int src = sqlite3_step(st);
		if (src == SQLITE_ROW) {
			const char *body =
			    (const char *)sqlite3_column_text(st, 0);
			*out_json = strdup(body ? body : "{}");
			if (*out_json == NULL)
				rc = telespool__fail(sp, TELESPOOL_ENOMEM,
						     "out of memory");
		} else if (src != SQLITE_DONE) {
			rc = telespool__sqlite_fail(sp, src, "reading surveys");
		}
		sqlite3_reset(st);
	}
	telespool__unlock(sp);
	return rc;
}
