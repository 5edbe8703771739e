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

#include "body.h"
#include "db.h"
#include "error.h"
#include "redact.h"
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

/* A survey is Space's JSON, handed to LangBot's UI: it gets the shape caps
 * of survey answers and heartbeat features (body.c), so that no reader of
 * it (Python's json, a recursive renderer) meets more than 8 levels. */
#define SURVEY_MAX_DEPTH   8
#define SURVEY_MAX_MEMBERS 256
#define SURVEY_STRING_MAX  4096
#define SURVEY_KEY_MAX     TELESPOOL_NAME_MAX

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if it is not one. */
static size_t utf8_seq(const unsigned char *s)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		unsigned char lo = c == 0xe0 ? 0xa0 : 0x80,
			      hi = c == 0xed ? 0x9f : 0xbf;
		return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3
									 : 0;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		unsigned char lo = c == 0xf0 ? 0x90 : 0x80,
			      hi = c == 0xf4 ? 0x8f : 0xbf;
		return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 &&
			       (s[3] & 0xc0) == 0x80
			   ? 4
			   : 0;
	}
	return 0;
}

/*
 * s as valid UTF-8 (each invalid byte becomes U+FFFD), cut at max bytes on a
 * character boundary; malloc'd, NULL when out of memory.  Unlike the
 * redactor this keeps the text as it is: Space's survey is display text,
 * not something we send.
 */
static char *utf8_clean(const char *s, size_t max)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	size_t len = strlen((const char *)p), o = 0;
	char *out = malloc((len < max ? len : max) * 3 + 4);
	if (out == NULL)
		return NULL;
	while (*p) {
		size_t n = utf8_seq(p);
		const char *src = n ? (const char *)p : "\xef\xbf\xbd";
		size_t w = n ? n : 3;
		if (o + w > max)
			break;
		memcpy(out + o, src, w);
		o += w;
		p += n ? n : 1;
	}
	out[o] = '\0';
	return out;
}

static char *clean_survey_key(const char *key)
{
	return utf8_clean(key, SURVEY_KEY_MAX);
}

static char *clean_survey_value(const char *s, const char *key, int depth,
				size_t cap)
{
	/* Not the id: LangBot's answer quotes it. */
	int id = depth == 1 && key != NULL &&
		 (strcmp(key, "survey_id") == 0 || strcmp(key, "id") == 0);
	return utf8_clean(s, id ? SURVEY_STRING_MAX : cap);
}

/* A parsed survey: valid UTF-8 strings and keys, capped, containers at most
 * SURVEY_MAX_DEPTH deep with SURVEY_MAX_MEMBERS each. */
static const struct telespool__cjson_cleaner survey_cleaner = {
    SURVEY_MAX_DEPTH, SURVEY_MAX_MEMBERS, clean_survey_key, clean_survey_value};

/* The JSON text without its \u0000 escapes: cJSON keeps strings as C
 * strings, so one would silently cut the rest of its string off. */
static char *drop_nul_escapes(const char *json)
{
	size_t len = strlen(json), o = 0;
	int in_string = 0;
	char *out = malloc(len + 1);
	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		char c = json[i];
		if (in_string && c == '\\' && i + 1 < len) {
			if (strncmp(json + i + 1, "u0000", 5) == 0) {
				i += 5;
				continue;
			}
			out[o++] = c;
			c = json[++i];
		} else if (c == '"') {
			in_string = !in_string;
		}
		out[o++] = c;
	}
	out[o] = '\0';
	return out;
}

/*
 * Space's survey as the text to store: an object, cleaned as above, at most
 * TELESPOOL_BODY_MAX bytes (strings are cut shorter until it fits).  NULL
 * with *oom 0 when it is not a JSON object (or nests deeper than cJSON
 * parses, 1,000 levels) or cannot be made to fit.
 */
static char *survey_text(const char *json, int *oom)
{
	static const size_t caps[] = {SURVEY_STRING_MAX, 1024, 256, 64, 16, 0};
	char *text = drop_nul_escapes(json);
	cJSON *orig = text ? cJSON_ParseWithOpts(text, NULL, 1) : NULL;
	char *out = NULL;

	*oom = text == NULL;
	free(text);
	if (orig == NULL || !cJSON_IsObject(orig)) {
		cJSON_Delete(orig);
		return NULL;
	}
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		cJSON *c = cJSON_Duplicate(orig, 1);
		if (c == NULL || telespool__clean_cjson(c, 1, caps[i],
							&survey_cleaner) != 0) {
			cJSON_Delete(c);
			*oom = 1;
			break;
		}
		out = cJSON_PrintUnformatted(c);
		cJSON_Delete(c);
		if (out == NULL) {
			*oom = 1;
			break;
		}
		if (strlen(out) <= TELESPOOL_BODY_MAX)
			break;
		cJSON_free(out);
		out = NULL;
	}
	cJSON_Delete(orig);
	return out;
}

/* Stores data.survey from a /survey/pending answer, unless that survey was
 * answered or dismissed already.  A survey that is not a JSON object is
 * not stored; it is counted in drops as 'survey_invalid'. */
static int store_survey(telespool *sp, const char *json, const char *now)
{
	int oom = 0;
	char *clean = survey_text(json, &oom);
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
		char *why = utf8_clean(o->last_error, 1024);
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
	sp->wal.frames = 0;
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
	int rc = TELESPOOL_OK;

	*value = NULL;
	telespool__lock(sp);
	sqlite3_stmt *st = telespool__prepare(
	    sp, "SELECT value FROM uploader_state WHERE key = ?1");
	if (st != NULL)
		sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	if (telespool__row(sp, st, "reading uploader state", &rc) &&
	    sqlite3_column_type(st, 0) != SQLITE_NULL) {
		*value = telespool__column_dup(st, 0);
		if (*value == NULL)
			rc = telespool__fail(sp, TELESPOOL_ENOMEM,
					     "out of memory");
	}
	telespool__release(sp, st);
	telespool__unlock(sp);
	return rc;
}

int telespool__state_set(telespool *sp, const char *key, const char *value)
{
	telespool__lock(sp);
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
	int rc = telespool__step_done(sp, st, "saving uploader state");
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
		char *detail = utf8_clean(r->detail, 1024);
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

/* Steps the rows of sql into s with row(). */
static int each_row(telespool *sp, const char *sql, const char *what,
		    void (*row)(sqlite3_stmt *, telespool__status *),
		    telespool__status *s)
{
	int rc = TELESPOOL_OK;
	sqlite3_stmt *st = telespool__prepare(sp, sql);

	while (telespool__row(sp, st, what, &rc))
		row(st, s);
	telespool__release(sp, st);
	return rc;
}

/* Rows and bytes by state. */
static void count_row(sqlite3_stmt *st, telespool__status *s)
{
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

/* The oldest and next pending rows, leases, surveys, the schema version
 * and a purge waiting to finish. */
static int read_heads(telespool *sp, const char *now, telespool__status *s)
{
	int rc = TELESPOOL_OK;
	sqlite3_stmt *st = telespool__prepare(
	    sp,
	    "SELECT (SELECT created_at FROM spool WHERE id "
	    ">= " TELESPOOL__PENDING_FROM
	    " AND state = 'pending' ORDER BY id LIMIT 1),"
	    " (SELECT min(next_attempt_at) FROM spool WHERE id "
	    ">= " TELESPOOL__PENDING_FROM " AND state = 'pending'),"
	    " (SELECT count(*) FROM spool WHERE id >= " TELESPOOL__PENDING_FROM
	    " AND state = 'pending' AND lease_until > ?1),"
	    " (SELECT count(*) FROM surveys WHERE state = 'pending'),"
	    " (SELECT user_version FROM pragma_user_version),"
	    " (SELECT value FROM uploader_state"
	    "  WHERE key = '" PURGE_MARK "')");

	if (st != NULL)
		sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
	if (telespool__row(sp, st, "reading the pending events", &rc)) {
		telespool__column_text(st, 0, s->oldest_pending,
				       sizeof(s->oldest_pending));
		telespool__column_text(st, 1, s->next_attempt,
				       sizeof(s->next_attempt));
		s->leased = sqlite3_column_int64(st, 2);
		s->surveys_pending = sqlite3_column_int64(st, 3);
		s->schema_version = sqlite3_column_int(st, 4);
		telespool__column_text(st, 5, s->purge_incomplete,
				       sizeof(s->purge_incomplete));
	}
	telespool__release(sp, st);
	return rc;
}

static void drop_row(sqlite3_stmt *st, telespool__status *s)
{
	size_t i = s->n_drops++;

	telespool__column_text(st, 0, s->drops[i].reason,
			       sizeof(s->drops[i].reason));
	s->drops[i].count = sqlite3_column_int64(st, 1);
	telespool__column_text(st, 2, s->drops[i].last_at,
			       sizeof(s->drops[i].last_at));
}

static void run_row(sqlite3_stmt *st, telespool__status *s)
{
	size_t i = s->n_runs++;

	s->runs[i].id = sqlite3_column_int64(st, 0);
	telespool__column_text(st, 1, s->runs[i].started_at,
			       sizeof(s->runs[i].started_at));
	telespool__column_text(st, 2, s->runs[i].ended_at,
			       sizeof(s->runs[i].ended_at));
	s->runs[i].sent = sqlite3_column_int64(st, 3);
	s->runs[i].retried = sqlite3_column_int64(st, 4);
	s->runs[i].dead = sqlite3_column_int64(st, 5);
	s->runs[i].purged = sqlite3_column_int64(st, 6);
	telespool__column_text(st, 7, s->runs[i].outcome,
			       sizeof(s->runs[i].outcome));
	telespool__column_text(st, 8, s->runs[i].detail,
			       sizeof(s->runs[i].detail));
}

int telespool__get_status(telespool *sp, int64_t now_ms, telespool__status *s)
{
	char now[TELESPOOL_ISO_LEN];

	memset(s, 0, sizeof(*s));
	telespool__iso(now_ms, now);
	telespool__lock(sp);
	/* One read transaction, so the numbers agree with each other. */
	int rc = telespool__exec(sp, "BEGIN");
	if (rc == TELESPOOL_OK)
		rc = each_row(sp,
			      "SELECT state, count(*), sum(size) FROM spool"
			      " GROUP BY state",
			      "reading the spool's counts", count_row, s);
	if (rc == TELESPOOL_OK)
		rc = read_heads(sp, now, s);
	if (rc == TELESPOOL_OK)
		rc = each_row(sp,
			      "SELECT reason, count, coalesce(last_at, '')"
			      " FROM drops WHERE count > 0"
			      " ORDER BY count DESC, reason LIMIT 16",
			      "reading the drops", drop_row, s);
	if (rc == TELESPOOL_OK)
		rc = each_row(sp,
			      "SELECT id, started_at, coalesce(ended_at, ''),"
			      " sent, retried, dead, purged,"
			      " coalesce(outcome, ''), coalesce(detail, '')"
			      " FROM upload_runs ORDER BY id DESC LIMIT 5",
			      "reading the runs", run_row, s);
	if (rc == TELESPOOL_OK)
		rc = telespool__exec(sp, "COMMIT");
	else
		telespool__rollback(sp);
	telespool__unlock(sp);
	return rc;
}
