/*
 * queue.c - the uploader's side of the spool: claims and leases, outcomes
 * (and the surveys they bring), the run records and the uploader's own
 * state.  Expiry is expire.c's, the opt-out purge purge.c's, --status's
 * numbers status.c's.  Each function is one short transaction; the
 * uploader never holds one across the network.
 */
#include "queue.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clean.h"
#include "db.h"
#include "error.h"
#include "spool.h"
#include "timefmt.h"

static int cmp_item(const void *a, const void *b)
{
	const telespool__item *x = a, *y = b;
	return (x->id > y->id) - (x->id < y->id);
}

void telespool__batch_free(telespool__batch *b)
{
	if (b == NULL)
		return;
	for (size_t i = 0; i < b->n; i++)
		free(b->items[i].body);
	free(b->items);
	b->items = NULL;
	b->n = 0;
}

/* The rows of st (id, event_id, event_type, body, attempts, created_at),
 * at most max, into out, oldest first; st is released.  Stepping to the
 * end matters for an UPDATE ... RETURNING: that is when it completes. */
static int read_items(telespool *sp, sqlite3_stmt *st, int max,
		      telespool__batch *out, const char *what)
{
	telespool__item *items = calloc((size_t)max, sizeof(*items));
	size_t n = 0;
	int rc = TELESPOOL_OK;

	if (items == NULL)
		rc = telespool__fail(sp, TELESPOOL_ENOMEM, "out of memory");
	while (rc == TELESPOOL_OK && telespool__row(sp, st, what, &rc)) {
		if (n == (size_t)max)
			continue; /* cannot happen with LIMIT max; finish the statement */
		telespool__item *it = &items[n++];
		it->id = sqlite3_column_int64(st, 0);
		telespool__column_text(st, 1, it->event_id,
				       sizeof(it->event_id));
		telespool__column_text(st, 2, it->event_type,
				       sizeof(it->event_type));
		it->body = telespool__column_dup(st, 3);
		it->body_len = it->body ? strlen(it->body) : 0;
		it->attempts = sqlite3_column_int(st, 4);
		it->created_ms = telespool__iso_parse(
		    (const char *)sqlite3_column_text(st, 5));
		if (it->body == NULL)
			rc = telespool__fail(sp, TELESPOOL_ENOMEM,
					     "out of memory");
	}
	telespool__release(sp, st);

	out->items = items;
	out->n = n;
	if (rc != TELESPOOL_OK || n == 0) {
		telespool__batch_free(out);
		return rc;
	}
	qsort(items, n, sizeof(*items), cmp_item);
	return TELESPOOL_OK;
}

/* WAL pages after which the uploader's commits checkpoint: SQLite's
 * default. */
#define UPLOADER_CHECKPOINT_PAGES 1000

/* Binds the due rows' parameters (db.c, DUE_ROWS): ?2 now, ?3 horizon,
 * ?4 ignore_backoff, ?5 the lease horizon. */
static void bind_due(sqlite3_stmt *st, int64_t now_ms, int64_t horizon_ms,
		     int ignore_backoff, char bufs[3][32])
{
	telespool__iso(now_ms, bufs[0]);
	telespool__iso(now_ms + horizon_ms, bufs[1]);
	telespool__iso(now_ms + TELESPOOL__MAX_LEASE_MS, bufs[2]);
	sqlite3_bind_text(st, 2, bufs[0], -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, bufs[1], -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 4, ignore_backoff != 0);
	sqlite3_bind_text(st, 5, bufs[2], -1, SQLITE_STATIC);
}

/*
 * Up to max ids of due rows with from <= id < below (and id >=
 * pending_from), oldest first, into ids; read-only.
 */
static int due_ids(telespool *sp, int64_t from, int64_t below, int64_t now_ms,
		   int64_t horizon_ms, int ignore_backoff, int max,
		   int64_t *ids, size_t *n)
{
	char bufs[3][32];
	sqlite3_stmt *st = telespool__stmt(sp, STMT_DUE);
	int rc = TELESPOOL_OK;

	*n = 0;
	if (st == NULL)
		return TELESPOOL_ERROR;
	bind_due(st, now_ms, horizon_ms, ignore_backoff, bufs);
	sqlite3_bind_int(st, 6, max);
	sqlite3_bind_int64(st, 7, from);
	sqlite3_bind_int64(st, 8, below);
	sqlite3_bind_int(st, 9,
			 (sp->queue.skip & TELESPOOL__FAMILY_SURVEY) != 0);
	while (*n < (size_t)max &&
	       telespool__row(sp, st, "reading the spool", &rc))
		ids[(*n)++] = sqlite3_column_int64(st, 0);
	telespool__release(sp, st);
	return rc;
}

/*
 * One look for due rows and one UPDATE that leases those still due and
 * unleased (see telespool__claim()); cand has room for 2 * max ids.
 * out->n is 0 when another writer took or evicted them meanwhile.
 */
static int claim_round(telespool *sp, int64_t now_ms, int64_t horizon_ms,
		       int ignore_backoff, int max, const char *until,
		       int64_t *cand, telespool__batch *out)
{
	int64_t from = sp->queue.claim_next;
	size_t n_new = 0, n_old = 0;
	char bufs[3][32];

	int rc = due_ids(sp, from, INT64_MAX, now_ms, horizon_ms,
			 ignore_backoff, max, cand + max, &n_new);
	if (rc == TELESPOOL_OK && n_new < (size_t)max && from > 0)
		rc = due_ids(sp, 0, from, now_ms, horizon_ms, ignore_backoff,
			     max - (int)n_new, cand, &n_old);
	if (rc != TELESPOOL_OK || n_old + n_new == 0)
		return rc;
	memmove(cand + n_old, cand + max, n_new * sizeof(*cand));
	char *ids = telespool__ids_json(cand, n_old + n_new);
	if (ids == NULL)
		return telespool__fail(sp, TELESPOOL_ENOMEM, "out of memory");
	sqlite3_stmt *st = telespool__stmt(sp, STMT_CLAIM);
	if (st == NULL) {
		free(ids);
		return TELESPOOL_ERROR;
	}
	sqlite3_bind_text(st, 1, until, -1, SQLITE_STATIC);
	bind_due(st, now_ms, horizon_ms, ignore_backoff, bufs);
	sqlite3_bind_text(st, 7, ids, -1, SQLITE_STATIC);
	rc = read_items(sp, st, max, out, "claiming events");
	free(ids);
	for (size_t i = 0; i < out->n; i++)
		snprintf(out->items[i].lease_until,
			 sizeof(out->items[i].lease_until), "%s", until);
	if (rc == TELESPOOL_OK && n_new > 0)
		sp->queue.claim_next = cand[n_old + n_new - 1] + 1;
	return rc;
}

void telespool__claim_skip(telespool *sp, unsigned families)
{
	telespool__lock(sp);
	sp->queue.skip = families;
	telespool__unlock(sp);
}

int telespool__claim(telespool *sp, int64_t now_ms, int64_t lease_ms,
		     int64_t horizon_ms, int ignore_backoff, int max,
		     telespool__batch *out)
{
	char until[TELESPOOL_ISO_LEN];
	int rc = TELESPOOL_OK;

	out->items = NULL;
	out->n = 0;
	telespool__lock(sp);
	if (max <= 0 || lease_ms <= 0 || lease_ms > TELESPOOL__MAX_LEASE_MS)
		rc = telespool__fail(sp, TELESPOOL_EINVAL,
				     "bad claim arguments");
	/* Sending more means writing more: not while a reader keeps the
	 * WAL from being reset (the uploader stops, exit 75, and tries
	 * again next run; what it sent is recorded by finish as usual). */
	else if (telespool__wal_room(sp) != TELESPOOL_OK)
		rc = TELESPOOL_EBUSY;
	if (rc != TELESPOOL_OK) {
		telespool__unlock(sp);
		return rc;
	}
	telespool__iso(now_ms + lease_ms, until);

	/* Candidates first, read-only (a spool whose rows all wait out a
	 * backoff costs a scan, and nobody must wait for it); then one short
	 * UPDATE takes those still due and unleased.  Between the two, LangBot
	 * may evict the oldest rows (the spool is at its bounds) or another
	 * uploader may take them: then look again, rather than report that
	 * nothing is due while rows are.
	 *
	 * The scans are rowid ranges: from the handle's cursor, just past what
	 * it claimed last, so that rows left behind in backoff are not walked
	 * again for every batch of a long drain; and only when that does not
	 * fill the batch, from pending_from up to the cursor as well (rows
	 * released, due again, or whose lease ran out), oldest first. */
	int64_t *cand = malloc(2 * (size_t)max * sizeof(*cand));
	if (cand == NULL)
		rc = telespool__fail(sp, TELESPOOL_ENOMEM, "out of memory");
	for (int round = 0; rc == TELESPOOL_OK && round < 8; round++) {
		rc = claim_round(sp, now_ms, horizon_ms, ignore_backoff, max,
				 until, cand, out);
		if (out->n > 0)
			break;
	}
	free(cand);
	telespool__unlock(sp);
	return rc;
}

int telespool__peek(telespool *sp, int64_t now_ms, int64_t lease_ms,
		    int64_t horizon_ms, int ignore_backoff, int64_t after_id,
		    int max, telespool__batch *out)
{
	char bufs[3][32];
	int rc = TELESPOOL_ERROR;

	(void)lease_ms; /* a peek takes no lease; the same due rows as claim */
	out->items = NULL;
	out->n = 0;
	telespool__lock(sp);
	if (max <= 0) {
		rc =
		    telespool__fail(sp, TELESPOOL_EINVAL, "bad peek arguments");
		telespool__unlock(sp);
		return rc;
	}
	sqlite3_stmt *st = telespool__stmt(sp, STMT_PEEK);
	if (st != NULL) {
		sqlite3_bind_int64(st, 1, after_id);
		bind_due(st, now_ms, horizon_ms, ignore_backoff, bufs);
		sqlite3_bind_int(st, 6, max);
		rc = read_items(sp, st, max, out, "reading due events");
	}
	telespool__unlock(sp);
	return rc;
}

/* Stores data.survey from a /survey/pending answer, unless that survey was
 * answered or dismissed already.  A survey that is not a JSON object is
 * not stored; it is counted in drops as 'survey_invalid'. */
static int store_survey(telespool *sp, const char *json, const char *now)
{
	int oom = 0;
	char *clean = telespool__clean_survey(json, &oom);
	if (clean == NULL)
		return oom ? telespool__fail(sp, TELESPOOL_ENOMEM,
					     "out of memory")
			   : telespool__count_drop(sp, "survey_invalid", 1,
						   now);
	sqlite3_stmt *st = telespool__prepare(
	    sp, "INSERT INTO surveys (survey_id, body, state, received_at)"
		" SELECT coalesce(json_extract(?1, '$.survey_id'),"
		"                 json_extract(?1, '$.id'), 'survey'),"
		"        ?1, 'pending', ?2"
		" ON CONFLICT (survey_id) DO UPDATE SET body = excluded.body"
		" WHERE surveys.state = 'pending'");
	int rc = TELESPOOL_ERROR;
	if (st != NULL) {
		sqlite3_bind_text(st, 1, clean, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
		rc = telespool__step_done(sp, st, "storing a survey");
	}
	cJSON_free(clean);
	return rc;
}

/*
 * Moves pending_from up to the oldest row still pending (or past the newest
 * row), in the write transaction that just finished some: the walk covers
 * only rows finished since the last call, so it costs O(1) per event.
 */
static int advance_pending_from(telespool *sp)
{
	return telespool__step_done(sp, telespool__stmt(sp, STMT_ADVANCE),
				    "moving pending_from");
}

/* Records outcome o (its verdict checked) in the current transaction,
 * with its statement (st[verdict]): a drop for a dead event, the survey a
 * sent survey_trigger brought. */
static int finish_one(telespool *sp, sqlite3_stmt *const st[4],
		      const telespool__outcome *o, const char *now)
{
	unsigned v = (unsigned)o->verdict;
	char next[TELESPOOL_ISO_LEN];
	sqlite3_stmt *s = st[v];

	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	sqlite3_bind_int64(s, 1, o->id);
	if (v == TELESPOOL__SENT)
		sqlite3_bind_text(s, 2, now, -1, SQLITE_STATIC);
	if (v == TELESPOOL__RETRY) {
		telespool__iso(o->next_attempt_ms, next);
		sqlite3_bind_text(s, 3, next, -1, SQLITE_TRANSIENT);
	}
	if (v == TELESPOOL__RETRY || v == TELESPOOL__DEAD) {
		/* It may quote Space's answer: valid UTF-8 only. */
		char *why = telespool__clean_display(o->last_error, 1024);
		if (why == NULL)
			return telespool__fail(sp, TELESPOOL_ENOMEM,
					       "out of memory");
		sqlite3_bind_text(s, 4, why, -1, free);
	}
	if (v != TELESPOOL__SENT && o->lease_until)
		sqlite3_bind_text(s, 5, o->lease_until, -1, SQLITE_STATIC);
	int rc = telespool__step_done(sp, s, "recording an outcome");
	if (rc != TELESPOOL_OK || sqlite3_changes(sp->db) == 0)
		return rc; /* someone else's now; not ours to record */
	if (v == TELESPOOL__DEAD && o->drop_reason)
		rc = telespool__count_drop(sp, o->drop_reason, 1, now);
	if (rc == TELESPOOL_OK && v == TELESPOOL__SENT && o->survey_json)
		rc = store_survey(sp, o->survey_json, now);
	return rc;
}

int telespool__finish(telespool *sp, const telespool__outcome *o, size_t n,
		      int64_t now_ms)
{
	char now[TELESPOOL_ISO_LEN];
	sqlite3_stmt *st[4] = {NULL, NULL, NULL, NULL};

	telespool__iso(now_ms, now);
	telespool__lock(sp);
	int rc = telespool__begin(sp);
	for (int i = 0; rc == TELESPOOL_OK && i < 4; i++)
		if ((st[i] = telespool__stmt(
			 sp, (enum telespool__stmt_id)(STMT_SENT + i))) == NULL)
			rc = TELESPOOL_ERROR;
	for (size_t i = 0; rc == TELESPOOL_OK && i < n; i++) {
		if ((unsigned)o[i].verdict > TELESPOOL__RELEASE)
			rc = telespool__fail(sp, TELESPOOL_EINVAL,
					     "bad verdict %u",
					     (unsigned)o[i].verdict);
		else
			rc = finish_one(sp, st, &o[i], now);
	}
	for (int i = 0; i < 4; i++)
		telespool__release(sp, st[i]);
	if (rc == TELESPOOL_OK)
		rc = advance_pending_from(sp);
	rc = telespool__end(sp, rc);
	telespool__unlock(sp);
	return rc;
}

int telespool__reclaim_leases(telespool *sp, int64_t *n_reclaimed)
{
	telespool__lock(sp);
	int rc = telespool__step_done(
	    sp,
	    /* Leased rows are pending: at or above pending_from. */
	    telespool__prepare(sp, "UPDATE spool SET lease_until = NULL"
				   " WHERE id >= " TELESPOOL__PENDING_FROM
				   " AND lease_until IS NOT NULL"),
	    "taking back leases");
	if (n_reclaimed)
		*n_reclaimed =
		    rc == TELESPOOL_OK ? sqlite3_changes64(sp->db) : 0;
	/* The next claim starts from the oldest again. */
	sp->queue.claim_next = 0;
	telespool__unlock(sp);
	return rc;
}

/* The uploader_state keys of enum telespool__gate; the library's own keys
 * (pending_from, wal_limit, purge_incomplete) are never among them. */
static const char *const gate_key[TELESPOOL__GATE_COUNT] = {
    [TELESPOOL__GATE_RETRY_AFTER] = "retry_after_until",
    [TELESPOOL__GATE_DOWN_UNTIL] = "down_until",
    [TELESPOOL__GATE_DOWN_COUNT] = "down_count",
    [TELESPOOL__GATE_LAST_RUN] = "last_run_at",
    [TELESPOOL__GATE_SURVEY_DOWN_UNTIL] = "survey_down_until",
    [TELESPOOL__GATE_SURVEY_DOWN_COUNT] = "survey_down_count",
};

/* The uploader's last concurrency, "level peak cuts mode" (mode adaptive
 * or fixed), as uploaders before the typed calls wrote it. */
#define CC_KEY "concurrency"

static int bad_gate(telespool *sp, enum telespool__gate g)
{
	return telespool__fail(sp, TELESPOOL_EINVAL,
			       "unknown uploader state %u", (unsigned)g);
}

int telespool__gate_get(telespool *sp, enum telespool__gate g, int64_t *value)
{
	int rc;

	*value = 0;
	telespool__lock(sp);
	if ((unsigned)g >= TELESPOOL__GATE_COUNT) {
		rc = bad_gate(sp, g);
	} else {
		sqlite3_stmt *st = telespool__prepare(
		    sp, "SELECT CAST(value AS INTEGER) FROM uploader_state"
			" WHERE key = ?1");
		if (st != NULL)
			sqlite3_bind_text(st, 1, gate_key[g], -1,
					  SQLITE_STATIC);
		rc = telespool__read_int(sp, st, "reading uploader state",
					 value);
	}
	telespool__unlock(sp);
	return rc;
}

/* Sets key to value (text), or deletes it when value is NULL. */
static int state_put(telespool *sp, const char *key, const char *value)
{
	sqlite3_stmt *st = telespool__prepare(
	    sp, value != NULL
		    ? "INSERT INTO uploader_state (key, value) VALUES (?1, ?2)"
		      " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
		    : "DELETE FROM uploader_state WHERE key = ?1");
	if (st != NULL) {
		sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
		if (value != NULL)
			sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
	}
	return telespool__step_done(sp, st, "saving uploader state");
}

int telespool__gate_set(telespool *sp, enum telespool__gate g, int64_t value)
{
	char text[24];
	int rc;

	snprintf(text, sizeof(text), "%lld", (long long)value);
	telespool__lock(sp);
	if ((unsigned)g >= TELESPOOL__GATE_COUNT)
		rc = bad_gate(sp, g);
	else
		rc = state_put(sp, gate_key[g], value != 0 ? text : NULL);
	telespool__unlock(sp);
	return rc;
}

int telespool__cc_get(telespool *sp, telespool__cc_state *cc)
{
	char text[64], mode[16] = "";

	memset(cc, 0, sizeof(*cc));
	telespool__lock(sp);
	sqlite3_stmt *st = telespool__prepare(
	    sp, "SELECT value FROM uploader_state WHERE key = '" CC_KEY "'");
	int rc = telespool__read_text(sp, st, "reading uploader state", text,
				      sizeof(text));
	telespool__unlock(sp);
	if (rc == TELESPOOL_OK &&
	    sscanf(text, "%d %d %d %15s", &cc->level, &cc->peak, &cc->cuts,
		   mode) == 4 &&
	    (strcmp(mode, "adaptive") == 0 || strcmp(mode, "fixed") == 0)) {
		cc->have = 1;
		cc->fixed = strcmp(mode, "fixed") == 0;
	}
	return rc;
}

int telespool__cc_set(telespool *sp, const telespool__cc_state *cc)
{
	char text[64];

	snprintf(text, sizeof(text), "%d %d %d %s", cc->level, cc->peak,
		 cc->cuts, cc->fixed ? "fixed" : "adaptive");
	telespool__lock(sp);
	int rc = state_put(sp, CC_KEY, text);
	telespool__unlock(sp);
	return rc;
}

int telespool__run_start(telespool *sp, int64_t now_ms, int64_t *run_id)
{
	char now[TELESPOOL_ISO_LEN];

	telespool__iso(now_ms, now);
	telespool__lock(sp);
	/* The uploader takes on the checkpoints (see HOST_CHECKPOINT, wal.c):
	 * at SQLite's usual threshold and at the end of a run that changed
	 * rows (run_end), but not when it closes the spool: a checkpoint then
	 * also deletes the WAL, which the next run must create and sync again,
	 * and an idle run under cron would pay four syncs for nothing. */
	/* LangBot's handles may bound the WAL tighter than this one's default
	 * options (share_wal_limit, open.c): hold to theirs, so that draining
	 * a backlog while a reader pins the WAL stops at the same bound. */
	int64_t limit = telespool__wal_limit(sp->max_bytes), shared = 0;
	if (telespool__read_int(
		sp,
		telespool__prepare(sp,
				   "SELECT CAST(value AS INTEGER) FROM"
				   " uploader_state WHERE key = 'wal_limit'"),
		"reading the shared WAL bound", &shared) == TELESPOOL_OK &&
	    shared > 0 && shared < limit)
		limit = shared;
	telespool__set_wal_limit(sp, limit);
	int64_t half = limit / 2 / sp->page_size;
	telespool__set_checkpoint(sp, half < UPLOADER_CHECKPOINT_PAGES
					  ? half
					  : UPLOADER_CHECKPOINT_PAGES);
	sqlite3_db_config(sp->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
	sqlite3_stmt *st = telespool__prepare(
	    sp, "INSERT INTO upload_runs (started_at) VALUES (?1)");
	if (st)
		sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
	int rc = telespool__step_done(sp, st, "recording the run");
	*run_id = rc == TELESPOOL_OK ? sqlite3_last_insert_rowid(sp->db) : 0;
	telespool__unlock(sp);
	return rc;
}

int telespool__run_end(telespool *sp, int64_t run_id, int64_t now_ms,
		       const telespool__run *r)
{
	char now[TELESPOOL_ISO_LEN];

	telespool__iso(now_ms, now);
	telespool__lock(sp);
	sqlite3_stmt *st = telespool__prepare(
	    sp,
	    "UPDATE upload_runs SET ended_at = ?2, sent = ?3, retried = ?4,"
	    " dead = ?5, purged = ?6, outcome = ?7, detail = ?8 WHERE id = ?1");
	if (st) {
		sqlite3_bind_int64(st, 1, run_id);
		sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, r->sent);
		sqlite3_bind_int64(st, 4, r->retried);
		sqlite3_bind_int64(st, 5, r->dead);
		sqlite3_bind_int64(st, 6, r->purged);
		sqlite3_bind_text(st, 7, r->outcome ? r->outcome : "", -1,
				  SQLITE_STATIC);
		/* It may quote Space's answer: valid UTF-8 only. */
		char *detail = telespool__clean_display(r->detail, 1024);
		if (detail != NULL)
			sqlite3_bind_text(st, 8, detail, -1, free);
	}
	int rc = telespool__step_done(sp, st, "recording the run");
	/* After a run that changed rows, copy the WAL back into the file
	 * now, so that LangBot's next commits do not have to.  PASSIVE: it
	 * waits for no one, and what a reader still needs is left for the
	 * next one.  (An idle run skips it: it costs a sync.) */
	if (r->sent + r->retried + r->dead + r->purged > 0)
		sqlite3_wal_checkpoint_v2(
		    sp->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	telespool__unlock(sp);
	return rc;
}

const char *telespool__path(const telespool *sp)
{
	return sp->path;
}
