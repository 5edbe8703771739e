/*
 * queue.c - the uploader's side of the spool: leases, outcomes, expiry,
 * the opt-out purge and the numbers --status shows.  Each function is one
 * short transaction; the uploader never holds one across the network.
 */
#include "queue.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clean.h"
#include "spool.h"
#include "timefmt.h"

/* A statement prepared for one call; the queue path runs once per batch,
 * so keeping these on the handle would buy nothing. */
static sqlite3_stmt *prep(telespool *sp, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int src = sqlite3_prepare_v2(sp->db, sql, -1, &st, NULL);
	if (src != SQLITE_OK) {
		telespool__sqlite_fail(sp, src, "preparing a statement");
		return NULL;
	}
	return st;
}

/* The statements of every batch, kept on the handle (sp->qstmt). */
enum qstmt { Q_DUE, Q_CLAIM, Q_SENT, Q_RETRY, Q_DEAD, Q_RELEASE, Q_ADVANCE };

/* Slot id's statement, prepared on first use, reset and unbound; release
 * it with sqlite3_reset(), never finalize it. */
static sqlite3_stmt *cprep(telespool *sp, enum qstmt id, const char *sql)
{
	sqlite3_stmt *st = sp->qstmt[id];
	if (st != NULL) {
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
		return st;
	}
	int src = sqlite3_prepare_v3(sp->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
				     &st, NULL);
	if (src != SQLITE_OK) {
		telespool__sqlite_fail(sp, src, "preparing a statement");
		return NULL;
	}
	sp->qstmt[id] = st;
	return st;
}

/* Steps a statement that returns no rows and finalizes it. */
static int run(telespool *sp, sqlite3_stmt *st, const char *what)
{
	if (st == NULL)
		return TELESPOOL_ERROR;
	int src = sqlite3_step(st);
	sqlite3_finalize(st);
	if (src != SQLITE_DONE && src != SQLITE_ROW)
		return telespool__sqlite_fail(sp, src, what);
	return TELESPOOL_OK;
}

static char *dup_col(sqlite3_stmt *st, int i)
{
	const char *s = (const char *)sqlite3_column_text(st, i);
	return strdup(s ? s : "");
}

static void copy_col(sqlite3_stmt *st, int i, char *out, size_t len)
{
	const char *s = (const char *)sqlite3_column_text(st, i);
	snprintf(out, len, "%s", s ? s : "");
}

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
 * at most max, into out, oldest first; st is finalized.  Stepping to the
 * end matters for an UPDATE ... RETURNING: that is when it completes. */
static int read_items(telespool *sp, sqlite3_stmt *st, int cached, int max,
		      telespool__batch *out, const char *what)
{
	telespool__item *items = calloc((size_t)max, sizeof(*items));
	size_t n = 0;
	int src, rc = TELESPOOL_OK;

	if (items == NULL)
		rc = telespool__fail(sp, TELESPOOL_ENOMEM, "out of memory");
	while (rc == TELESPOOL_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == (size_t)max)
			continue; /* cannot happen with LIMIT max; finish the statement */
		telespool__item *it = &items[n++];
		it->id = sqlite3_column_int64(st, 0);
		copy_col(st, 1, it->event_id, sizeof(it->event_id));
		copy_col(st, 2, it->event_type, sizeof(it->event_type));
		it->body = dup_col(st, 3);
		it->body_len = it->body ? strlen(it->body) : 0;
		it->attempts = sqlite3_column_int(st, 4);
		it->created_ms = telespool__iso_parse(
		    (const char *)sqlite3_column_text(st, 5));
		if (it->body == NULL)
			rc = telespool__fail(sp, TELESPOOL_ENOMEM,
					     "out of memory");
	}
	if (rc == TELESPOOL_OK && src != SQLITE_DONE)
		rc = telespool__sqlite_fail(sp, src, what);
	if (cached)
		sqlite3_reset(st);
	else
		sqlite3_finalize(st);

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

/* Ids handled per write transaction by the chunked operations below. */
#define CHUNK 1000

/* The ids as a JSON array text, for "id IN (SELECT value FROM
 * json_each(?))"; NULL when out of memory. */
static char *ids_json(const int64_t *ids, size_t n)
{
	size_t cap = 2 + n * 21, len = 0;
	char *buf = malloc(cap + 1);
	if (buf == NULL)
		return NULL;
	buf[len++] = '[';
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(buf + len, cap + 1 - len, "%s%lld",
					i ? "," : "", (long long)ids[i]);
	buf[len++] = ']';
	buf[len] = '\0';
	return buf;
}

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
	sqlite3_finalize(st);
	if (src != SQLITE_DONE)
		return telespool__sqlite_fail(sp, src, "reading the spool");
	*json = ids_json(ids, *n);
	if (*json == NULL)
		return telespool__fail(sp, TELESPOOL_ENOMEM, "out of memory");
	return TELESPOOL_OK;
}

/* Which pending rows are due; ?2 now, ?3 horizon, ?4 ignore_backoff, ?5 the
 * lease horizon: a lease ending after it was taken before the wall clock
 * went back, and is stale. */
#define PENDING_FROM TELESPOOL__PENDING_FROM

#define DUE_ROWS                                                               \
	" state = 'pending'"                                                   \
	" AND (?4 OR next_attempt_at <= ?2 OR next_attempt_at > ?3)"           \
	" AND (lease_until IS NULL OR lease_until <= ?2 OR lease_until > ?5)"

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
	sqlite3_stmt *st =
	    cprep(sp, Q_DUE,
		  "SELECT id FROM spool WHERE id >= max(?7, " PENDING_FROM
		  ") AND id < ?8 AND" DUE_ROWS " ORDER BY id LIMIT ?6");
	int src;

	*n = 0;
	if (st == NULL)
		return TELESPOOL_ERROR;
	bind_due(st, now_ms, horizon_ms, ignore_backoff, bufs);
	sqlite3_bind_int(st, 6, max);
	sqlite3_bind_int64(st, 7, from);
	sqlite3_bind_int64(st, 8, below);
	while (*n < (size_t)max && (src = sqlite3_step(st)) == SQLITE_ROW)
		ids[(*n)++] = sqlite3_column_int64(st, 0);
	if (*n == (size_t)max)
		src = SQLITE_DONE;
	sqlite3_reset(st);
	if (src != SQLITE_DONE)
		return telespool__sqlite_fail(sp, src, "reading the spool");
	return TELESPOOL_OK;
}

int telespool__claim(telespool *sp, int64_t now_ms, int64_t lease_ms,
		     int64_t horizon_ms, int ignore_backoff, int max,
		     telespool__batch *out)
{
	char until[TELESPOOL_ISO_LEN];

	out->items = NULL;
	out->n = 0;
	telespool__lock(sp);
	if (max <= 0 || lease_ms <= 0 || lease_ms > TELESPOOL__MAX_LEASE_MS) {
		telespool__unlock(sp);
		return telespool__fail(sp, TELESPOOL_EINVAL,
				       "bad claim arguments");
	}
	/* Sending more means writing more: not while a reader keeps the
	 * WAL from being reset (the uploader stops, exit 75, and tries
	 * again next run; what it sent is recorded by finish as usual). */
	if (telespool__wal_room(sp) != TELESPOOL_OK) {
		telespool__unlock(sp);
		return TELESPOOL_EBUSY;
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
	int rc = cand ? TELESPOOL_OK
		      : telespool__fail(sp, TELESPOOL_ENOMEM, "out of memory");
	for (int round = 0; rc == TELESPOOL_OK && round < 8; round++) {
		size_t n_new = 0, n_old = 0;
		rc = due_ids(sp, sp->claim_next, INT64_MAX, now_ms, horizon_ms,
			     ignore_backoff, max, cand + max, &n_new);
		if (rc == TELESPOOL_OK && n_new < (size_t)max &&
		    sp->claim_next > 0)
			rc = due_ids(sp, 0, sp->claim_next, now_ms, horizon_ms,
				     ignore_backoff, max - (int)n_new, cand,
				     &n_old);
		if (rc != TELESPOOL_OK || n_old + n_new == 0)
			break;
		memmove(cand + n_old, cand + max, n_new * sizeof(*cand));
		char *ids = ids_json(cand, n_old + n_new);
		if (ids == NULL) {
			rc = telespool__fail(sp, TELESPOOL_ENOMEM,
					     "out of memory");
			break;
		}
		sqlite3_stmt *st =
		    cprep(sp, Q_CLAIM,
			  "UPDATE spool SET lease_until = ?1 WHERE id IN"
			  " (SELECT value FROM json_each(?7)) AND" DUE_ROWS
			  " RETURNING id, event_id, event_type, body,"
			  " attempts, created_at");
		if (st == NULL) {
			free(ids);
			rc = TELESPOOL_ERROR;
			break;
		}
		char bufs[3][32];
		sqlite3_bind_text(st, 1, until, -1, SQLITE_STATIC);
		bind_due(st, now_ms, horizon_ms, ignore_backoff, bufs);
		sqlite3_bind_text(st, 7, ids, -1, SQLITE_STATIC);
		rc = read_items(sp, st, 1, max, out, "claiming events");
		free(ids);
		for (size_t i = 0; i < out->n; i++)
			memcpy(out->items[i].lease_until, until, sizeof(until));
		if (rc == TELESPOOL_OK && n_new > 0)
			sp->claim_next = cand[n_old + n_new - 1] + 1;
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

	(void)lease_ms; /* a peek takes no lease; the same due rows as claim */
	out->items = NULL;
	out->n = 0;
	telespool__lock(sp);
	if (max <= 0) {
		telespool__unlock(sp);
		return telespool__fail(sp, TELESPOOL_EINVAL,
				       "bad peek arguments");
	}
	sqlite3_stmt *st = prep(
	    sp, "SELECT id, event_id, event_type, body, attempts, created_at"
		" FROM spool WHERE id > max(?1, " PENDING_FROM
		" - 1) AND" DUE_ROWS " ORDER BY id LIMIT ?6");
	int rc = TELESPOOL_ERROR;
	if (st != NULL) {
		sqlite3_bind_int64(st, 1, after_id);
		bind_due(st, now_ms, horizon_ms, ignore_backoff, bufs);
		sqlite3_bind_int(st, 6, max);
		rc = read_items(sp, st, 0, max, out, "reading due events");
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
	sqlite3_stmt *st = prep(
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
		rc = run(sp, st, "storing a survey");
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
	sqlite3_stmt *st =
	    cprep(sp, Q_ADVANCE,
		  "INSERT INTO uploader_state (key, value)"
		  " VALUES ('pending_from', coalesce((SELECT id FROM"
		  " spool WHERE id >= " PENDING_FROM
		  " AND state = 'pending' ORDER BY id LIMIT 1),"
		  " (SELECT coalesce(max(id), 0) + 1 FROM spool)))"
		  " ON CONFLICT (key) DO UPDATE SET value ="
		  " excluded.value WHERE value IS NOT excluded.value");
	if (st == NULL)
		return TELESPOOL_ERROR;
	int src = sqlite3_step(st);
	sqlite3_reset(st);
	if (src != SQLITE_DONE)
		return telespool__sqlite_fail(sp, src, "moving pending_from");
	return TELESPOOL_OK;
}

int telespool__finish(telespool *sp, const telespool__outcome *o, size_t n,
		      int64_t now_ms)
{
	char now[TELESPOOL_ISO_LEN], next[TELESPOOL_ISO_LEN];
	/* Only a row still pending is changed, and, when the caller says which
	 * lease it held, only while that lease is still the row's: a verdict
	 * that arrives after the lease ran out and another uploader took the
	 * row over must not undo that uploader's work. */
	static const char *const sql[] = {
	    [TELESPOOL__SENT] = ("UPDATE spool SET state = 'sent',"
				 " sent_at = ?2, attempts = attempts + 1,"
				 " last_error = NULL, lease_until = NULL"
				 " WHERE id = ?1 AND state = 'pending'"),
	    [TELESPOOL__RETRY] = ("UPDATE spool SET attempts = attempts + 1,"
				  " next_attempt_at = ?3, last_error = ?4,"
				  " lease_until = NULL WHERE id = ?1"
				  " AND state = 'pending'"
				  " AND (?5 IS NULL OR lease_until = ?5)"),
	    [TELESPOOL__DEAD] = ("UPDATE spool SET state = 'dead',"
				 " attempts = attempts + 1, last_error = ?4,"
				 " lease_until = NULL WHERE id = ?1"
				 " AND state = 'pending'"
				 " AND (?5 IS NULL OR lease_until = ?5)"),
	    [TELESPOOL__RELEASE] = ("UPDATE spool SET lease_until = NULL"
				    " WHERE id = ?1 AND state = 'pending'"
				    " AND (?5 IS NULL OR lease_until = ?5)"),
	};
	sqlite3_stmt *st[4] = {NULL, NULL, NULL, NULL};

	telespool__iso(now_ms, now);
	telespool__lock(sp);
	int rc = telespool__begin(sp);
	for (int i = 0; rc == TELESPOOL_OK && i < 4; i++)
		if ((st[i] = cprep(sp, (enum qstmt)(Q_SENT + i), sql[i])) ==
		    NULL)
			rc = TELESPOOL_ERROR;
	for (size_t i = 0; rc == TELESPOOL_OK && i < n; i++) {
		unsigned v = (unsigned)o[i].verdict;
		if (v > TELESPOOL__RELEASE) {
			rc = telespool__fail(sp, TELESPOOL_EINVAL,
					     "bad verdict %u", v);
			break;
		}
		sqlite3_stmt *s = st[v];
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
		sqlite3_bind_int64(s, 1, o[i].id);
		if (v == TELESPOOL__SENT)
			sqlite3_bind_text(s, 2, now, -1, SQLITE_STATIC);
		if (v == TELESPOOL__RETRY) {
			telespool__iso(o[i].next_attempt_ms, next);
			sqlite3_bind_text(s, 3, next, -1, SQLITE_TRANSIENT);
		}
		if (v == TELESPOOL__RETRY || v == TELESPOOL__DEAD) {
			/* It may quote Space's answer: valid UTF-8 only. */
			char *why =
			    telespool__clean_display(o[i].last_error, 1024);
			if (why == NULL) {
				rc = telespool__fail(sp, TELESPOOL_ENOMEM,
						     "out of memory");
				break;
			}
			sqlite3_bind_text(s, 4, why, -1, free);
		}
		if (v != TELESPOOL__SENT && o[i].lease_until)
			sqlite3_bind_text(s, 5, o[i].lease_until, -1,
					  SQLITE_STATIC);
		int src = sqlite3_step(s);
		if (src != SQLITE_DONE)
			rc = telespool__sqlite_fail(sp, src,
						    "recording an outcome");
		if (rc == TELESPOOL_OK && sqlite3_changes(sp->db) == 0)
			continue; /* someone else's now; not ours to record */
		if (rc == TELESPOOL_OK && v == TELESPOOL__DEAD &&
		    o[i].drop_reason)
			rc =
			    telespool__count_drop(sp, o[i].drop_reason, 1, now);
		if (rc == TELESPOOL_OK && v == TELESPOOL__SENT &&
		    o[i].survey_json)
			rc = store_survey(sp, o[i].survey_json, now);
	}
	for (int i = 0; i < 4; i++)
		if (st[i] != NULL)
			sqlite3_reset(st[i]);
	if (rc == TELESPOOL_OK)
		rc = advance_pending_from(sp);
	if (rc == TELESPOOL_OK)
		rc = telespool__commit(sp);
	else
		telespool__rollback(sp);
	telespool__unlock(sp);
	return rc;
}

int telespool__reclaim_leases(telespool *sp, int64_t *n_reclaimed)
{
	telespool__lock(sp);
	int rc = run(sp,
		     /* Leased rows are pending: at or above pending_from. */
		     prep(sp, "UPDATE spool SET lease_until = NULL"
			      " WHERE id >= " PENDING_FROM
			      " AND lease_until IS NOT NULL"),
		     "taking back leases");
	if (n_reclaimed)
		*n_reclaimed =
		    rc == TELESPOOL_OK ? sqlite3_changes64(sp->db) : 0;
	sp->claim_next = 0; /* the next claim starts from the oldest again */
	telespool__unlock(sp);
	return rc;
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
		sqlite3_stmt *st = prep(sp, select_sql);
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
		st = rc == TELESPOOL_OK ? prep(sp, update_sql) : NULL;
		if (st != NULL) {
			sqlite3_bind_text(st, 1, ids, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 2, before, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 3, now, -1, SQLITE_STATIC);
			rc = run(sp, st, "housekeeping");
		} else if (rc == TELESPOOL_OK) {
			rc = TELESPOOL_ERROR;
		}
		int64_t changed =
		    rc == TELESPOOL_OK ? sqlite3_changes64(sp->db) : 0;
		if (rc == TELESPOOL_OK && reason)
			rc = telespool__count_drop(sp, reason, changed, now);
		if (rc == TELESPOOL_OK)
			rc = telespool__commit(sp);
		else
			telespool__rollback(sp);
		free(ids);
		if (rc != TELESPOOL_OK)
			return rc;
		*total += changed;
		if (n < CHUNK)
			break;
	}
	return TELESPOOL_OK;
}

/* The one integer a statement returns (a count, a pragma). */
static int read_int(telespool *sp, const char *sql, int64_t *n)
{
	sqlite3_stmt *st = prep(sp, sql);
	if (st == NULL)
		return TELESPOOL_ERROR;
	int src = sqlite3_step(st);
	*n = src == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	sqlite3_finalize(st);
	if (src != SQLITE_ROW)
		return telespool__sqlite_fail(sp, src, sql);
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
	int rc = read_int(sp, "PRAGMA auto_vacuum", &mode);
	if (rc == TELESPOOL_OK && mode == 2)
		return telespool__exec(sp, "PRAGMA incremental_vacuum");
	if (rc == TELESPOOL_OK)
		rc = read_int(sp, "PRAGMA page_count", &pages);
	if (rc == TELESPOOL_OK)
		rc = read_int(sp, "PRAGMA freelist_count", &free_pages);
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
	    "SELECT id, created_at FROM spool WHERE id > max(?1, " PENDING_FROM
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

/* The uploader_state key of a purge whose deletion committed but whose
 * cleanup (VACUUM, WAL, side files) has not finished: its start time. */
#define PURGE_MARK "purge_incomplete"

/*
 * Removes every file telespool wrote next to the spool besides the spool
 * and its WAL: the copies of damaged spools moved aside (PATH.corrupt-*,
 * with their -wal/-shm) and a new file's private name left by a crash
 * (PATH.new-*).  Returns a telespool_rc; names the first failure.
 */
static int remove_side_files(telespool *sp)
{
	const char *path = sp->path, *slash = strrchr(path, '/');
	char dir[4096], full[8400];
	const char *base = slash ? slash + 1 : path;
	size_t blen = strlen(base);
	int rc = TELESPOOL_OK;

	telespool__dir_of(path, dir, sizeof(dir));
	DIR *d = opendir(dir);
	if (d == NULL)
		return telespool__fail(sp, TELESPOOL_EIO,
				       "the purge cannot list %s: %s", dir,
				       strerror(errno));
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		const char *n = e->d_name;
		if (strncmp(n, base, blen) != 0 ||
		    (strncmp(n + blen, ".corrupt-", 9) != 0 &&
		     strncmp(n + blen, ".new-", 5) != 0))
			continue;
		snprintf(full, sizeof(full), "%s/%s", dir, n);
		if (unlink(full) != 0 && errno != ENOENT && rc == TELESPOOL_OK)
			rc = telespool__fail(sp, TELESPOOL_EIO,
					     "the purge cannot remove %s: %s",
					     full, strerror(errno));
	}
	closedir(d);
	return rc;
}

/* PRAGMA wal_checkpoint(TRUNCATE): TELESPOOL_EBUSY when a reader kept the
 * WAL from being emptied. */
static int truncate_wal(telespool *sp)
{
	int busy = 0, logged = 0, done = 0;
	sqlite3_stmt *st = prep(sp, "PRAGMA wal_checkpoint(TRUNCATE)");
	if (st == NULL)
		return TELESPOOL_ERROR;
	if (sqlite3_step(st) == SQLITE_ROW) {
		busy = sqlite3_column_int(st, 0);
		logged = sqlite3_column_int(st, 1);
		done = sqlite3_column_int(st, 2);
	}
	sqlite3_finalize(st);
	if (busy || logged != done)
		return telespool__fail(
		    sp, TELESPOOL_EBUSY,
		    "the purge deleted every event, but a reader holding a "
		    "transaction open keeps the old pages readable in the file "
		    "and its write-ahead log; the next open or uploader run "
		    "after it ends finishes the purge");
	sp->wal_frames = 0;
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
	int rc = read_int(sp,
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
	int rc = read_int(sp, "PRAGMA secure_delete", &secure);
	if (rc == TELESPOOL_OK)
		rc = telespool__exec(sp, "PRAGMA secure_delete = FAST");
	if (rc == TELESPOOL_OK)
		rc = telespool__begin(sp);
	if (rc == TELESPOOL_OK)
		rc = read_int(sp, "SELECT count(*) FROM spool", &ne);
	if (rc == TELESPOOL_OK)
		rc = read_int(sp, "SELECT count(*) FROM surveys", &ns);
	if (rc == TELESPOOL_OK)
		rc = telespool__exec(sp,
				     "DELETE FROM spool; DELETE FROM surveys;"
				     " DELETE FROM survey_milestones;");
	/* In the same transaction: a purge that committed is finished by
	 * whoever opens the spool next, even after a kill -9. */
	if (rc == TELESPOOL_OK) {
		sqlite3_stmt *st = prep(
		    sp, "INSERT OR REPLACE INTO uploader_state (key, value)"
			" VALUES ('" PURGE_MARK "', ?1)");
		if (st)
			sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
		rc = run(sp, st, "marking the purge");
	}
	if (rc == TELESPOOL_OK)
		rc = telespool__commit(sp);
	else
		telespool__rollback(sp);
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

int telespool__state_get(telespool *sp, const char *key, char **value)
{
	*value = NULL;
	telespool__lock(sp);
	sqlite3_stmt *st =
	    prep(sp, "SELECT value FROM uploader_state WHERE key = ?1");
	int rc = st ? TELESPOOL_OK : TELESPOOL_ERROR;
	if (st != NULL) {
		sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
		int src = sqlite3_step(st);
		if (src == SQLITE_ROW &&
		    sqlite3_column_type(st, 0) != SQLITE_NULL) {
			*value = dup_col(st, 0);
			if (*value == NULL)
				rc = telespool__fail(sp, TELESPOOL_ENOMEM,
						     "out of memory");
		} else if (src != SQLITE_ROW && src != SQLITE_DONE) {
			rc = telespool__sqlite_fail(sp, src,
						    "reading uploader state");
		}
		sqlite3_finalize(st);
	}
	telespool__unlock(sp);
	return rc;
}

int telespool__state_set(telespool *sp, const char *key, const char *value)
{
	telespool__lock(sp);
	sqlite3_stmt *st;
	if (value != NULL) {
		st = prep(
		    sp,
		    "INSERT INTO uploader_state (key, value) VALUES (?1, ?2)"
		    " ON CONFLICT (key) DO UPDATE SET value = excluded.value");
		if (st)
			sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
	} else {
		st = prep(sp, "DELETE FROM uploader_state WHERE key = ?1");
	}
	if (st)
		sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	int rc = run(sp, st, "saving uploader state");
	telespool__unlock(sp);
	return rc;
}

int telespool__run_start(telespool *sp, int64_t now_ms, int64_t *run_id)
{
	char now[TELESPOOL_ISO_LEN];

	telespool__iso(now_ms, now);
	telespool__lock(sp);
	/* The uploader takes on the checkpoints (see HOST_CHECKPOINT, spool.c):
	 * at SQLite's usual threshold and at the end of a run that changed
	 * rows (run_end), but not when it closes the spool: a checkpoint then
	 * also deletes the WAL, which the next run must create and sync again,
	 * and an idle run under cron would pay four syncs for nothing. */
	/* LangBot's handles may bound the WAL tighter than this one's default
	 * options (share_wal_limit, spool.c): hold to theirs, so that draining
	 * a backlog while a reader pins the WAL stops at the same bound. */
	int64_t limit = telespool__wal_limit(sp->max_bytes), shared = 0;
	if (read_int(sp,
		     "SELECT coalesce((SELECT CAST(value AS INTEGER)"
		     " FROM uploader_state WHERE key = 'wal_limit'), 0)",
		     &shared) == TELESPOOL_OK &&
	    shared > 0 && shared < limit)
		limit = shared;
	telespool__set_wal_limit(sp, limit);
	int64_t half = limit / 2 / sp->page_size;
	telespool__set_checkpoint(sp, half < UPLOADER_CHECKPOINT_PAGES
					  ? half
					  : UPLOADER_CHECKPOINT_PAGES);
	sqlite3_db_config(sp->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
	sqlite3_stmt *st =
	    prep(sp, "INSERT INTO upload_runs (started_at) VALUES (?1)");
	if (st)
		sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
	int rc = run(sp, st, "recording the run");
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
	sqlite3_stmt *st = prep(
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
	int rc = run(sp, st, "recording the run");
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

int telespool__get_status(telespool *sp, int64_t now_ms, telespool__status *s)
{
	char now[TELESPOOL_ISO_LEN];
	int rc = TELESPOOL_OK, src;

	memset(s, 0, sizeof(*s));
	telespool__iso(now_ms, now);
	telespool__lock(sp);
	/* One read transaction, so the numbers agree with each other. */
	rc = telespool__exec(sp, "BEGIN");
	sqlite3_stmt *st = rc ? NULL
			      : prep(sp, "SELECT state, count(*), sum(size) "
					 "FROM spool GROUP BY state");
	while (st && (src = sqlite3_step(st)) == SQLITE_ROW) {
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
	sqlite3_finalize(st);

	st = rc ? NULL
		: prep(sp,
		       "SELECT (SELECT created_at FROM spool WHERE id "
		       ">= " PENDING_FROM " AND state = 'pending' ORDER BY id"
		       " LIMIT 1),"
		       "       (SELECT min(next_attempt_at) FROM spool"
		       "        WHERE id >= " PENDING_FROM
		       " AND state = 'pending'),"
		       "       (SELECT count(*) FROM spool WHERE id "
		       ">= " PENDING_FROM " AND state = 'pending'"
		       " AND lease_until > ?1),"
		       "       (SELECT count(*) FROM surveys WHERE state = "
		       "'pending'),"
		       "       (SELECT user_version FROM pragma_user_version),"
		       "       (SELECT value FROM uploader_state"
		       "        WHERE key = '" PURGE_MARK "')");
	if (st) {
		sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW) {
			copy_col(st, 0, s->oldest_pending,
				 sizeof(s->oldest_pending));
			copy_col(st, 1, s->next_attempt,
				 sizeof(s->next_attempt));
			s->leased = sqlite3_column_int64(st, 2);
			s->surveys_pending = sqlite3_column_int64(st, 3);
			s->schema_version = sqlite3_column_int(st, 4);
			copy_col(st, 5, s->purge_incomplete,
				 sizeof(s->purge_incomplete));
		}
		sqlite3_finalize(st);
	}

	st = rc ? NULL
		: prep(sp,
		       "SELECT reason, count, coalesce(last_at, '') FROM drops"
		       " WHERE count > 0 ORDER BY count DESC, reason LIMIT 16");
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		size_t i = s->n_drops++;
		copy_col(st, 0, s->drops[i].reason, sizeof(s->drops[i].reason));
		s->drops[i].count = sqlite3_column_int64(st, 1);
		copy_col(st, 2, s->drops[i].last_at,
			 sizeof(s->drops[i].last_at));
	}
	sqlite3_finalize(st);

	st =
	    rc ? NULL
	       : prep(sp, "SELECT id, started_at, coalesce(ended_at, ''), "
			  "sent, retried, dead,"
			  " purged, coalesce(outcome, ''), coalesce(detail, '')"
			  " FROM upload_runs ORDER BY id DESC LIMIT 5");
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		size_t i = s->n_runs++;
		s->runs[i].id = sqlite3_column_int64(st, 0);
		copy_col(st, 1, s->runs[i].started_at,
			 sizeof(s->runs[i].started_at));
		copy_col(st, 2, s->runs[i].ended_at,
			 sizeof(s->runs[i].ended_at));
		s->runs[i].sent = sqlite3_column_int64(st, 3);
		s->runs[i].retried = sqlite3_column_int64(st, 4);
		s->runs[i].dead = sqlite3_column_int64(st, 5);
		s->runs[i].purged = sqlite3_column_int64(st, 6);
		copy_col(st, 7, s->runs[i].outcome, sizeof(s->runs[i].outcome));
		copy_col(st, 8, s->runs[i].detail, sizeof(s->runs[i].detail));
	}
	sqlite3_finalize(st);
	if (rc == TELESPOOL_OK)
		telespool__exec(sp, "COMMIT");
	if (rc == TELESPOOL_OK && sp->errmsg[0] != '\0')
		rc = TELESPOOL_ERROR;
	telespool__unlock(sp);
	return rc;
}
