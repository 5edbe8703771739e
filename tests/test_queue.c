/*
 * test_queue.c - the internal queue API the uploader drains the spool with
 * (lib/src/queue.h): claims and leases, outcomes, surveys from Space,
 * housekeeping, the opt-out purge, uploader state, runs and --status.
 * Times are passed in, so each test picks its own clock.
 *
 * "test_queue NAME..." runs only the named tests.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdint.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "migrate.h"
#include "queue.h"
#include "spool.h"
#include "telespool.h"
#include "testutil.h"
#include "timefmt.h"

#define DAY_MS (86400000LL)

/* ---- scaffolding ---- */

static char g_dir[512];

/* A column of the event with this id, as text ("NULL" for NULL). */
static char *col_of(const char *path, const char *col, int64_t id)
{
	char sql[200];
	snprintf(sql, sizeof(sql),
		 "SELECT coalesce(%s, 'NULL') FROM events WHERE id = %lld", col,
		 (long long)id);
	return path_text(path, sql);
}

static void assert_col(const char *path, const char *col, int64_t id,
		       const char *want)
{
	char *v = col_of(path, col, id);
	if (v == NULL || strcmp(v, want) != 0)
		TU_FAIL("events[%lld].%s = \"%s\", want \"%s\"", (long long)id,
			col, v ? v : "(no row)", want);
	else
		tu_passed++;
	free(v);
}

static telespool *fresh(const char *name, char *path, size_t len)
{
	snprintf(path, len, "%s/%s", g_dir, name);
	telespool *sp = NULL;
	int rc = telespool_open(&sp, path, NULL);
	if (rc != TELESPOOL_OK)
		TU_FAIL("open %s: %s", path, telespool_open_errmsg());
	return sp;
}

/* Records n query events with query_id PREFIXi. */
static void record_n(telespool *sp, const char *prefix, int n,
		     const char *error_prefix)
{
	char qid[64], err[128];
	for (int i = 0; i < n; i++) {
		telespool_query q = TELESPOOL_QUERY_INIT;
		snprintf(qid, sizeof(qid), "%s%d", prefix, i);
		q.query_id = qid;
		q.adapter = "TelegramAdapter";
		q.runner = "local-agent";
		q.model_name = "gpt-4o";
		q.duration_ms = i;
		if (error_prefix) {
			snprintf(err, sizeof(err), "%s%d", error_prefix, i);
			q.error = err;
		}
		int rc = telespool_record_query(sp, &q);
		if (rc != TELESPOOL_OK) {
			TU_FAIL("record %s: %s", qid, telespool_errmsg(sp));
			return;
		}
	}
}

/* query_id inside a claimed body. */
static void body_query_id(const telespool__item *it, char *out, size_t len)
{
	cJSON *j = cJSON_Parse(it->body);
	const cJSON *q = cJSON_GetObjectItemCaseSensitive(j, "query_id");
	snprintf(out, len, "%s", cJSON_IsString(q) ? q->valuestring : "?");
	cJSON_Delete(j);
}

static void assert_claimed(const telespool__batch *b, const char *prefix,
			   int first, int n)
{
	char want[64], got[64];
	ASSERT_EQ(b->n, n);
	for (size_t i = 0; i < b->n && (int)i < n; i++) {
		snprintf(want, sizeof(want), "%s%d", prefix, first + (int)i);
		body_query_id(&b->items[i], got, sizeof(got));
		ASSERT_STREQ(got, want);
		if (i > 0)
			ASSERT_TRUE(b->items[i].id > b->items[i - 1].id);
	}
}

static int64_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

/* 1 when the file holds needle anywhere (a missing file holds nothing). */
static int file_contains(const char *path, const char *needle)
{
	size_t len;
	unsigned char *b = slurp_file(path, &len);
	size_t n = strlen(needle);
	int found = 0;
	for (size_t i = 0; b && !found && i + n <= len; i++)
		found = b[i] == (unsigned char)needle[0] &&
			memcmp(b + i, needle, n) == 0;
	free(b);
	return found;
}

/* ---- claim ---- */

static void test_claim_order_and_leases(void)
{
	char path[600];
	telespool *sp = fresh("claim.db", path, sizeof(path));
	if (sp == NULL)
		return;
	record_n(sp, "q", 10, NULL);
	int64_t now = wall_ms() + 1000, lease = 60000;
	telespool__batch b;

	ASSERT_EQ(telespool__claim(sp, now, lease, DAY_MS, 0, 3, &b),
		  TELESPOOL_OK);
	assert_claimed(&b, "q", 0, 3);
	char until[TELESPOOL_ISO_LEN];
	telespool__iso(now + lease, until);
	for (size_t i = 0; i < b.n; i++) {
		const telespool__item *it = &b.items[i];
		char *eid = col_of(path, "event_id", it->id);
		char *body = col_of(path, "body", it->id);
		char *created = col_of(path, "created_at", it->id);
		ASSERT_STREQ(it->event_id, eid);
		ASSERT_STREQ(it->body, body);
		ASSERT_EQ(it->body_len, strlen(body ? body : ""));
		ASSERT_STREQ(it->event_type, "query");
		ASSERT_EQ(it->attempts, 0);
		ASSERT_EQ(it->created_ms, telespool__iso_parse(created));
		ASSERT_TRUE(it->created_ms > now - 60000 &&
			    it->created_ms <= now);
		assert_col(path, "lease_until", it->id, until);
		free(eid);
		free(body);
		free(created);
	}
	telespool__batch_free(&b);
	ASSERT_TRUE(b.items == NULL && b.n == 0);

	/* Leased rows are skipped, by this handle and by another one. */
	ASSERT_EQ(telespool__claim(sp, now, lease, DAY_MS, 0, 3, &b),
		  TELESPOOL_OK);
	assert_claimed(&b, "q", 3, 3);
	telespool__batch_free(&b);
	telespool *other = NULL;
	ASSERT_EQ(telespool_open(&other, path, NULL), TELESPOOL_OK);
	ASSERT_EQ(telespool__claim(other, now + 1, lease, DAY_MS, 0, 100, &b),
		  TELESPOOL_OK);
	assert_claimed(&b, "q", 6, 4);
	telespool__batch_free(&b);
	ASSERT_EQ(telespool__claim(sp, now + 2, lease, DAY_MS, 0, 100, &b),
		  TELESPOOL_OK);
	ASSERT_EQ(b.n, 0);
	ASSERT_TRUE(b.items == NULL);
	telespool_close(other);

	/* Ignoring backoff does not ignore leases. */
	ASSERT_EQ(telespool__claim(sp, now + 2, lease, DAY_MS, 1, 100, &b),
		  TELESPOOL_OK);
	ASSERT_EQ(b.n, 0);

	/* A lease is good until it ends, exactly. */
	ASSERT_EQ(
	    telespool__claim(sp, now + lease - 1, lease, DAY_MS, 0, 100, &b),
	    TELESPOOL_OK);
	ASSERT_EQ(b.n, 0);
	ASSERT_EQ(
	    telespool__claim(sp, now + lease + 10, lease, DAY_MS, 0, 100, &b),
	    TELESPOOL_OK);
	assert_claimed(&b, "q", 0, 10);
	telespool__batch_free(&b);

	/* A lease that ends further out than one lease from now was taken
	 * before the clock went back: it is stale. */
	ASSERT_EQ(
	    telespool__claim(sp, now - DAY_MS, lease, 365 * DAY_MS, 1, 100, &b),
	    TELESPOOL_OK);
	assert_claimed(&b, "q", 0, 10);
	telespool__batch_free(&b);

	/* Bad arguments. */
	b.n = 99;
	ASSERT_EQ(telespool__claim(sp, now, lease, DAY_MS, 0, 0, &b),
		  TELESPOOL_EINVAL);
	ASSERT_EQ(b.n, 0);
	ASSERT_TRUE(strlen(telespool_errmsg(sp)) > 0);
	ASSERT_EQ(telespool__claim(sp, now, 0, DAY_MS, 0, 5, &b),
		  TELESPOOL_EINVAL);
	ASSERT_EQ(telespool__claim(sp, now, lease, DAY_MS, 0, -1, &b),
		  TELESPOOL_EINVAL);
	telespool_close(sp);
}

/* telespool__claim_skip(): while the survey endpoints look down, claims
 * leave survey events where they are and take the telemetry behind them;
 * 0 takes them again, oldest first. */
static void test_claim_skip(void)
{
	char path[600];
	telespool *sp = fresh("claim_skip.db", path, sizeof(path));
	if (sp == NULL)
		return;
	ASSERT_EQ(telespool_record_survey_trigger(sp, "first"), TELESPOOL_OK);
	ASSERT_EQ(telespool_record_survey_response(sp, "s1", "{}", 1),
		  TELESPOOL_OK);
	record_n(sp, "q", 3, NULL);
	ASSERT_EQ(telespool_record_survey_dismiss(sp, "s2"), TELESPOOL_OK);
	record_n(sp, "h", 2, NULL);
	int64_t now = wall_ms() + 1000, lease = 60000;
	telespool__batch b;

	telespool__claim_skip(sp, TELESPOOL__FAMILY_SURVEY);
	ASSERT_EQ(telespool__claim(sp, now, lease, DAY_MS, 0, 4, &b),
		  TELESPOOL_OK);
	ASSERT_EQ(b.n, 4);
	const char *want[] = {"q0", "q1", "q2", "h0"};
	char got[64];
	for (size_t i = 0; i < b.n && i < 4; i++) {
		ASSERT_STREQ(b.items[i].event_type, "query");
		body_query_id(&b.items[i], got, sizeof(got));
		ASSERT_STREQ(got, want[i]);
	}
	telespool__batch_free(&b);
	ASSERT_EQ(telespool__claim(sp, now, lease, DAY_MS, 1, 100, &b),
		  TELESPOOL_OK);
	ASSERT_EQ(b.n, 1); /* h1; the three survey rows stay unleased */
	telespool__batch_free(&b);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM spool WHERE event_type"
				 " LIKE 'survey_%' AND lease_until IS NULL"),
		  3);

	/* Claims take them again, oldest first, once skipping ends. */
	telespool__claim_skip(sp, 0);
	ASSERT_EQ(telespool__claim(sp, now, lease, DAY_MS, 0, 100, &b),
		  TELESPOOL_OK);
	ASSERT_EQ(b.n, 3);
	if (b.n == 3) {
		ASSERT_STREQ(b.items[0].event_type, "survey_trigger");
		ASSERT_STREQ(b.items[1].event_type, "survey_response");
		ASSERT_STREQ(b.items[2].event_type, "survey_dismiss");
	}
	telespool__batch_free(&b);
	telespool_close(sp);
}

static void test_claim_due_and_horizon(void)
{
	char path[600];
	telespool *sp = fresh("due.db", path, sizeof(path));
	if (sp == NULL)
		return;
	record_n(sp, "d", 2, NULL);
	int64_t now = wall_ms() + 1000;
	telespool__batch b;

	/* Recorded events are due at once, not before they were recorded. */
	ASSERT_EQ(telespool__claim(sp, now - 600000, 1000, DAY_MS, 0, 10, &b),
		  TELESPOOL_OK);
	ASSERT_EQ(b.n, 0);
	ASSERT_EQ(telespool__claim(sp, now - 600000, 1000, DAY_MS, 1, 10, &b),
		  TELESPOOL_OK);
	ASSERT_EQ(b.n, 2);
	int64_t id0 = b.n ? b.items[0].id : 0,
		id1 = b.n > 1 ? b.items[1].id : 0;

	/* d0 backs off ten days, d1 one minute. */
	telespool__outcome oc[2];
	memset(oc, 0, sizeof(oc));
	oc[0].id = id0;
	oc[0].verdict = TELESPOOL__RETRY;
	oc[0].next_attempt_ms = now + 10 * DAY_MS;
	oc[0].last_error = "HTTP 503";
	oc[1].id = id1;
	oc[1].verdict = TELESPOOL__RETRY;
	oc[1].next_attempt_ms = now + 60000;
	oc[1].last_error = "timeout";
	ASSERT_EQ(telespool__finish(sp, oc, 2, now), TELESPOOL_OK);
	telespool__batch_free(&b);

	ASSERT_EQ(telespool__claim(sp, now, 1000, 30 * DAY_MS, 0, 10, &b),
		  TELESPOOL_OK);
	ASSERT_EQ(b.n, 0);
	/* Ten days is beyond a one-day horizon: the clock must have gone
	 * back, so it is due now rather than never. */
	ASSERT_EQ(telespool__claim(sp, now, 1000, DAY_MS, 0, 10, &b),
		  TELESPOOL_OK);
	ASSERT_EQ(b.n, 1);
	ASSERT_EQ(b.n ? b.items[0].id : 0, id0);
	ASSERT_EQ(b.n ? b.items[0].attempts : -1, 1);
	telespool__batch_free(&b);

	/* d1 becomes due when its minute is over. */
	ASSERT_EQ(
	    telespool__claim(sp, now + 59999, 1000, 30 * DAY_MS, 0, 10, &b),
	    TELESPOOL_OK);
	ASSERT_EQ(b.n, 0);
	ASSERT_EQ(
	    telespool__claim(sp, now + 60000, 1000, 30 * DAY_MS, 0, 10, &b),
	    TELESPOOL_OK);
	ASSERT_EQ(b.n, 1);
	ASSERT_EQ(b.n ? b.items[0].id : 0, id1);
	telespool__batch_free(&b);

	/* ignore_backoff: everything not leased. */
	ASSERT_EQ(
	    telespool__claim(sp, now + 120000, 1000, 30 * DAY_MS, 1, 10, &b),
	    TELESPOOL_OK);
	ASSERT_EQ(b.n, 2);
	telespool__batch_free(&b);
	telespool_close(sp);
}

/* peek: what claim would take, without taking it (--dry-run). */
static void test_peek(void)
{
	char path[600];
	telespool *sp = fresh("peek.db", path, sizeof(path));
	if (sp == NULL)
		return;
	record_n(sp, "k", 6, NULL);
	int64_t now = wall_ms() + 1000;
	telespool__batch b, p;
	ASSERT_EQ(telespool__claim(sp, now, 60000, DAY_MS, 0, 2, &b),
		  TELESPOOL_OK);
	assert_claimed(&b, "k", 0, 2);
	telespool__batch_free(&b);

	ASSERT_EQ(telespool__peek(sp, now, 60000, DAY_MS, 0, 0, 10, &p),
		  TELESPOOL_OK);
	assert_claimed(&p, "k", 2, 4);
	ASSERT_EQ(p.n ? p.items[0].attempts : -1, 0);
	ASSERT_EQ(path_int(path,
			   "SELECT count(*) FROM events WHERE lease_until "
			   "IS NOT NULL"),
		  2);
	/* Paging: after the second one peeked. */
	int64_t after = p.n >= 2 ? p.items[1].id : 0;
	telespool__batch_free(&p);
	ASSERT_EQ(telespool__peek(sp, now, 60000, DAY_MS, 0, after, 1, &p),
		  TELESPOOL_OK);
	assert_claimed(&p, "k", 4, 1);
	telespool__batch_free(&p);
	/* Nothing due before the events were recorded, unless backoff is
	 * ignored; seen from two hours earlier, the two leases end further
	 * out than TELESPOOL__MAX_LEASE_MS and are stale. */
	ASSERT_EQ(
	    telespool__peek(sp, now - 7200000, 60000, DAY_MS, 0, 0, 10, &p),
	    TELESPOOL_OK);
	ASSERT_EQ(p.n, 0);
	ASSERT_TRUE(p.items == NULL);
	ASSERT_EQ(
	    telespool__peek(sp, now - 7200000, 60000, DAY_MS, 1, 0, 10, &p),
	    TELESPOOL_OK);
	ASSERT_EQ(p.n, 6);
	telespool__batch_free(&p);
	ASSERT_EQ(telespool__peek(sp, now, 60000, DAY_MS, 1, 0, 10, &p),
		  TELESPOOL_OK);
	ASSERT_EQ(p.n, 4);
	telespool__batch_free(&p);

	/* The claim takes what the peek showed. */
	ASSERT_EQ(telespool__peek(sp, now, 60000, DAY_MS, 0, 0, 3, &p),
		  TELESPOOL_OK);
	ASSERT_EQ(telespool__claim(sp, now, 60000, DAY_MS, 0, 3, &b),
		  TELESPOOL_OK);
	ASSERT_EQ(p.n, b.n);
	for (size_t i = 0; i < p.n && i < b.n; i++) {
		ASSERT_EQ(p.items[i].id, b.items[i].id);
		ASSERT_STREQ(p.items[i].body, b.items[i].body);
	}
	telespool__batch_free(&p);
	telespool__batch_free(&b);

	ASSERT_EQ(telespool__peek(sp, now, 60000, DAY_MS, 0, 0, 0, &p),
		  TELESPOOL_EINVAL);
	ASSERT_EQ(p.n, 0);
	telespool_close(sp);
}

/* Two uploaders with different lease lengths: the shorter one must not take
 * rows whose (longer) lease is still running. */
static void test_claim_respects_longer_lease(void)
{
	char path[600];
	telespool *sp = fresh("lease-mix.db", path, sizeof(path));
	if (sp == NULL)
		return;
	record_n(sp, "l", 3, NULL);
	int64_t now = wall_ms() + 1000;
	telespool__batch a, b;
	ASSERT_EQ(telespool__claim(sp, now, 600000, DAY_MS, 0, 10, &a),
		  TELESPOOL_OK);
	ASSERT_EQ(a.n, 3);
	ASSERT_EQ(telespool__claim(sp, now + 1000, 60000, DAY_MS, 0, 10, &b),
		  TELESPOOL_OK);
	ASSERT_EQ(b.n, 0);
	telespool__batch_free(&a);
	telespool__batch_free(&b);
	telespool_close(sp);
}

/* ---- finish ---- */

static void test_finish_verdicts(void)
{
	char path[600];
	telespool *sp = fresh("finish.db", path, sizeof(path));
	if (sp == NULL)
		return;
	record_n(sp, "f", 6, NULL);
	int64_t now = wall_ms() + 1000;
	telespool__batch b;
	ASSERT_EQ(telespool__claim(sp, now, 60000, DAY_MS, 0, 6, &b),
		  TELESPOOL_OK);
	if (b.n != 6) {
		TU_FAIL("claimed %zu of 6", b.n);
		telespool__batch_free(&b);
		telespool_close(sp);
		return;
	}
	int64_t id[6];
	char *created[6];
	for (int i = 0; i < 6; i++) {
		id[i] = b.items[i].id;
		created[i] = col_of(path, "created_at", id[i]);
	}
	telespool__batch_free(&b);

	telespool__outcome oc[6];
	memset(oc, 0, sizeof(oc));
	for (int i = 0; i < 6; i++)
		oc[i].id = id[i];
	oc[0].verdict = TELESPOOL__SENT;
	oc[1].verdict = TELESPOOL__RETRY;
	oc[1].next_attempt_ms = now + 5000;
	oc[1].last_error = "HTTP 503 Service Unavailable";
	oc[2].verdict = TELESPOOL__DEAD;
	oc[2].last_error = "HTTP 400: bad event";
	oc[2].drop_reason = "rejected";
	oc[3].verdict = TELESPOOL__RELEASE;
	oc[4].verdict = TELESPOOL__DEAD; /* no drop_reason: not counted */
	oc[4].last_error = "given up";
	oc[5].verdict = TELESPOOL__DEAD;
	oc[5].last_error = "HTTP 413";
	oc[5].drop_reason = "rejected";

	/* A bad verdict anywhere rolls back the whole batch. */
	telespool__outcome bad[2] = {oc[0], oc[0]};
	bad[1].verdict = (telespool__verdict)7;
	ASSERT_EQ(telespool__finish(sp, bad, 2, now), TELESPOOL_EINVAL);
	ASSERT_CONTAINS(telespool_errmsg(sp), "verdict");
	assert_col(path, "state", id[0], "pending");
	assert_col(path, "attempts", id[0], "0");

	ASSERT_EQ(telespool__finish(sp, oc, 0, now), TELESPOOL_OK);
	ASSERT_EQ(telespool__finish(sp, oc, 6, now), TELESPOOL_OK);
	ASSERT_STREQ(telespool_errmsg(sp), "");

	char now_iso[TELESPOOL_ISO_LEN], next_iso[TELESPOOL_ISO_LEN];
	telespool__iso(now, now_iso);
	telespool__iso(now + 5000, next_iso);

	assert_col(path, "state", id[0], "sent");
	assert_col(path, "sent_at", id[0], now_iso);
	assert_col(path, "attempts", id[0], "1");
	assert_col(path, "last_error", id[0], "NULL");
	assert_col(path, "lease_until", id[0], "NULL");

	assert_col(path, "state", id[1], "pending");
	assert_col(path, "attempts", id[1], "1");
	assert_col(path, "next_attempt_at", id[1], next_iso);
	assert_col(path, "last_error", id[1], "HTTP 503 Service Unavailable");
	assert_col(path, "lease_until", id[1], "NULL");
	assert_col(path, "sent_at", id[1], "NULL");

	assert_col(path, "state", id[2], "dead");
	assert_col(path, "attempts", id[2], "1");
	assert_col(path, "last_error", id[2], "HTTP 400: bad event");
	assert_col(path, "lease_until", id[2], "NULL");
	assert_col(path, "sent_at", id[2], "NULL");

	assert_col(path, "state", id[3], "pending");
	assert_col(path, "attempts", id[3], "0");
	assert_col(path, "next_attempt_at", id[3], created[3]);
	assert_col(path, "last_error", id[3], "NULL");
	assert_col(path, "lease_until", id[3], "NULL");

	assert_col(path, "state", id[4], "dead");
	ASSERT_EQ(drops_of(path, "rejected"), 2);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM drops"), 1);

	/* A sent event that had failed before keeps no stale error. */
	ASSERT_EQ(telespool__claim(sp, now + 5000, 60000, DAY_MS, 0, 10, &b),
		  TELESPOOL_OK);
	ASSERT_EQ(b.n, 2); /* f1 (retry due) and f3 (released) */
	if (b.n == 2) {
		ASSERT_EQ(b.items[0].id, id[1]);
		ASSERT_EQ(b.items[0].attempts, 1);
		ASSERT_EQ(b.items[1].id, id[3]);
	}
	telespool__batch_free(&b);
	telespool__outcome sent = {id[1], TELESPOOL__SENT, 0, NULL, NULL, NULL,
				   NULL};
	ASSERT_EQ(telespool__finish(sp, &sent, 1, now + 6000), TELESPOOL_OK);
	assert_col(path, "state", id[1], "sent");
	assert_col(path, "attempts", id[1], "2");
	assert_col(path, "last_error", id[1], "NULL");

	/* Sent and dead rows are never claimed again. */
	ASSERT_EQ(
	    telespool__claim(sp, now + 10 * DAY_MS, 1000, DAY_MS, 1, 10, &b),
	    TELESPOOL_OK);
	ASSERT_EQ(b.n, 1);
	ASSERT_EQ(b.n ? b.items[0].id : 0, id[3]);
	telespool__batch_free(&b);
	for (int i = 0; i < 6; i++)
		free(created[i]);
	telespool_close(sp);
}

/* An uploader whose lease ran out reports late, after another uploader
 * delivered the event: the late verdict must not undo the delivery. */
static void test_finish_after_lease_lost(void)
{
	char path[600];
	telespool *sp = fresh("late.db", path, sizeof(path));
	if (sp == NULL)
		return;
	record_n(sp, "late", 1, NULL);
	int64_t now = wall_ms() + 1000;
	telespool__batch a, b;
	ASSERT_EQ(telespool__claim(sp, now, 1000, DAY_MS, 0, 1, &a),
		  TELESPOOL_OK);
	ASSERT_EQ(telespool__claim(sp, now + 2000, 1000, DAY_MS, 0, 1, &b),
		  TELESPOOL_OK);
	ASSERT_EQ(a.n, 1);
	ASSERT_EQ(b.n, 1);
	if (a.n != 1 || b.n != 1) {
		telespool__batch_free(&a);
		telespool__batch_free(&b);
		telespool_close(sp);
		return;
	}
	int64_t id = b.items[0].id;
	telespool__outcome sent = {id,  TELESPOOL__SENT, 0, NULL, NULL, NULL,
				   NULL};
	ASSERT_EQ(telespool__finish(sp, &sent, 1, now + 2500), TELESPOOL_OK);
	telespool__outcome dead = {
	    id, TELESPOOL__DEAD, 0, "HTTP 400", "rejected", NULL, NULL};
	int rc = telespool__finish(sp, &dead, 1, now + 3000);
	ASSERT_TRUE(rc == TELESPOOL_OK || rc == TELESPOOL_ERROR);
	assert_col(path, "state", id, "sent");
	ASSERT_EQ(drops_of(path, "rejected"), 0);
	telespool__outcome retry = {
	    id, TELESPOOL__RETRY, now + 60000, "timeout", NULL, NULL, NULL};
	telespool__finish(sp, &retry, 1, now + 3000);
	assert_col(path, "state", id, "sent");

	/* While the other uploader still holds its newer lease, a late
	 * verdict naming the old lease changes nothing either. */
	record_n(sp, "fence", 1, NULL);
	telespool__batch c, d;
	ASSERT_EQ(telespool__claim(sp, now + 10000, 1000, DAY_MS, 0, 1, &c),
		  TELESPOOL_OK);
	ASSERT_EQ(telespool__claim(sp, now + 12000, 1000, DAY_MS, 0, 1, &d),
		  TELESPOOL_OK);
	if (c.n == 1 && d.n == 1) {
		telespool__outcome late = {c.items[0].id,
					   TELESPOOL__RETRY,
					   now + 60000,
					   "timeout",
					   NULL,
					   NULL,
					   c.items[0].lease_until};
		ASSERT_EQ(telespool__finish(sp, &late, 1, now + 12500),
			  TELESPOOL_OK);
		assert_col(path, "attempts", d.items[0].id, "0");
		assert_col(path, "lease_until", d.items[0].id,
			   d.items[0].lease_until);
	} else {
		TU_FAIL("claims for the fencing check: %zu, %zu", c.n, d.n);
	}
	telespool__batch_free(&c);
	telespool__batch_free(&d);
	assert_col(path, "attempts", id, "1");
	assert_col(path, "last_error", id, "NULL");
	telespool__batch_free(&a);
	telespool__batch_free(&b);
	telespool_close(sp);
}

/* Claims everything due and marks it sent, with survey_json for each. */
static void send_all(telespool *sp, int64_t now, const char *survey_json)
{
	telespool__batch b;
	ASSERT_EQ(telespool__claim(sp, now, 60000, DAY_MS, 0, 100, &b),
		  TELESPOOL_OK);
	telespool__outcome *oc = calloc(b.n ? b.n : 1, sizeof(*oc));
	for (size_t i = 0; i < b.n; i++) {
		oc[i].id = b.items[i].id;
		oc[i].verdict = TELESPOOL__SENT;
		if (strcmp(b.items[i].event_type, "survey_trigger") == 0)
			oc[i].survey_json = survey_json;
	}
	ASSERT_EQ(telespool__finish(sp, oc, b.n, now), TELESPOOL_OK);
	free(oc);
	telespool__batch_free(&b);
}

/* Claims and marks sent until nothing is pending (or 20 rounds); returns
 * how many rows became sent. */
static int64_t deliver_all(telespool *sp, const char *path, int64_t now)
{
	const char *sent = "SELECT count(*) FROM spool WHERE state = 'sent'";
	int64_t before = path_int(path, sent);
	for (int i = 0;
	     i < 20 && path_int(path, "SELECT count(*) FROM pending") > 0; i++)
		send_all(sp, now, NULL);
	return path_int(path, sent) - before;
}

static void assert_pending_survey(telespool *sp, const char *survey_id)
{
	char *out = NULL;
	ASSERT_EQ(telespool_pending_survey(sp, &out), TELESPOOL_OK);
	if (survey_id == NULL) {
		if (out != NULL)
			TU_FAIL("pending survey %s, want none", out);
		else
			tu_passed++;
		telespool_free(out);
		return;
	}
	cJSON *j = out ? cJSON_Parse(out) : NULL;
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "survey_id");
	if (!cJSON_IsString(id))
		id = cJSON_GetObjectItemCaseSensitive(j, "id");
	ASSERT_TRUE(cJSON_IsObject(j));
	ASSERT_STREQ(cJSON_IsString(id) ? id->valuestring : NULL, survey_id);
	cJSON_Delete(j);
	telespool_free(out);
}

static void test_finish_surveys(void)
{
	char path[600];
	telespool *sp = fresh("surveys.db", path, sizeof(path));
	if (sp == NULL)
		return;
	int64_t now = wall_ms() + 1000;

	/* A query sent with survey_json stores nothing: only triggers do. */
	record_n(sp, "s", 1, NULL);
	send_all(sp, now, "{\"survey_id\": \"never\"}");
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM surveys"), 0);

	ASSERT_EQ(
	    telespool_record_survey_trigger(sp, "first_bot_response_success"),
	    TELESPOOL_OK);
	send_all(sp, now,
		 "{\"survey_id\": \"sv-1\", \"title\": \"How do you like it?\","
		 " \"questions\": [{\"id\": \"q1\", \"type\": \"rating\"}]}");
	assert_pending_survey(sp, "sv-1");
	char *out = NULL;
	ASSERT_EQ(telespool_pending_survey(sp, &out), TELESPOOL_OK);
	cJSON *j = out ? cJSON_Parse(out) : NULL;
	ASSERT_TRUE(
	    cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "questions")));
	cJSON_Delete(j);
	telespool_free(out);

	/* No survey in Space's answer: nothing new. */
	ASSERT_EQ(
	    telespool_record_survey_trigger(sp, "bot_response_success_10"),
	    TELESPOOL_OK);
	send_all(sp, now, NULL);
	assert_pending_survey(sp, "sv-1");

	/* A survey answered before Space offers it again is not pending. */
	ASSERT_EQ(
	    telespool_record_survey_response(sp, "sv-2", "{\"q1\": 5}", 1),
	    TELESPOOL_OK);
	ASSERT_EQ(
	    telespool_record_survey_trigger(sp, "bot_response_success_100"),
	    TELESPOOL_OK);
	send_all(sp, now + 1, "{\"survey_id\": \"sv-2\"}");
	assert_pending_survey(sp, "sv-1");
	ASSERT_EQ(path_int(path,
			   "SELECT count(*) FROM surveys WHERE survey_id ="
			   " 'sv-2' AND state = 'answered'"),
		  1);
	/* The same for a dismissed one. */
	ASSERT_EQ(telespool_record_survey_dismiss(sp, "sv-3"), TELESPOOL_OK);
	ASSERT_EQ(
	    telespool_record_survey_trigger(sp, "bot_response_success_1000"),
	    TELESPOOL_OK);
	send_all(sp, now + 2, "{\"survey_id\": \"sv-3\"}");
	assert_pending_survey(sp, "sv-1");

	ASSERT_EQ(
	    telespool_record_survey_response(sp, "sv-1", "{\"q1\": 4}", 1),
	    TELESPOOL_OK);
	assert_pending_survey(sp, NULL);

	/* A survey named by "id" instead of "survey_id". */
	ASSERT_EQ(telespool_record_survey_trigger(sp, "weekly"), TELESPOOL_OK);
	send_all(sp, now + 3, "{\"id\": \"sv-4\"}");
	assert_pending_survey(sp, "sv-4");
	ASSERT_EQ(telespool_record_survey_dismiss(sp, "sv-4"), TELESPOOL_OK);
	assert_pending_survey(sp, NULL);
	telespool_close(sp);
}

static int json_depth(const cJSON *j)
{
	int deepest = 0;
	for (const cJSON *c = j ? j->child : NULL; c; c = c->next) {
		int d = json_depth(c);
		if (d > deepest)
			deepest = d;
	}
	return (cJSON_IsArray(j) || cJSON_IsObject(j)) ? deepest + 1 : 0;
}

/* A survey of `levels` nested arrays under "q". */
static char *nested_survey(const char *id, int levels)
{
	size_t len = (size_t)levels * 2 + 64;
	char *s = malloc(len);
	int o = snprintf(s, len, "{\"survey_id\": \"%s\", \"q\": ", id);
	for (int i = 0; i < levels; i++)
		s[o++] = '[';
	for (int i = 0; i < levels; i++)
		s[o++] = ']';
	s[o++] = '}';
	s[o] = '\0';
	return s;
}

static int valid_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		int n = *p < 0x80         ? 1
			: (*p >> 5) == 6  ? 2
			: (*p >> 4) == 14 ? 3
			: (*p >> 3) == 30 ? 4
					  : 0;
		if (n == 0)
			return 0;
		for (int i = 1; i < n; i++)
			if ((p[i] & 0xc0) != 0x80)
				return 0;
		p += n;
	}
	return 1;
}

/*
 * Nothing Space sends can break the host: a survey is stored with the caps
 * of survey answers (8 levels), as valid UTF-8, with \u0000 removed rather
 * than cutting its string; what is not a JSON object is not stored and is
 * counted.  Each case once; FAULT line for the README.
 */
static void test_hostile_surveys(void)
{
	char path[600];
	telespool *sp = fresh("hostile.db", path, sizeof(path));
	if (sp == NULL)
		return;
	int64_t now = wall_ms() + 1000;
	int tried = 0, lost = 0;
	char milestone[32];

	char *deep = nested_survey("deep", 995);
	struct {
		const char *json, *id;
	} cases[] = {
	    {deep, "deep"},
	    {"{\"survey_id\": \"u8\", \"title\": \"a\xff\xfe\xc3"
	     "b\","
	     " \"\xe9"
	     "key\": \"\xed\xa0\x80\"}",
	     "u8"},
	    {"{\"survey_id\": \"nul\", \"title\": \"before\\u0000after\","
	     " \"esc\": \"\\\\u0000 stays\"}",
	     "nul"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(milestone, sizeof(milestone), "m%zu", i);
		ASSERT_EQ(telespool_record_survey_trigger(sp, milestone),
			  TELESPOOL_OK);
		send_all(sp, now, cases[i].json);
		tried++;
		char *out = NULL;
		ASSERT_EQ(telespool_pending_survey(sp, &out), TELESPOOL_OK);
		cJSON *j = out ? cJSON_Parse(out) : NULL;
		const cJSON *id =
		    cJSON_GetObjectItemCaseSensitive(j, "survey_id");
		if (!cJSON_IsString(id) || strcmp(id->valuestring, cases[i].id))
			lost++;
		ASSERT_TRUE(out != NULL && valid_utf8(out));
		ASSERT_TRUE(json_depth(j) <= 8);
		if (i == 1) {
			ASSERT_STREQ(cJSON_GetStringValue(
					 cJSON_GetObjectItem(j, "title")),
				     "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
				     "b");
		}
		if (i == 2) {
			ASSERT_STREQ(cJSON_GetStringValue(
					 cJSON_GetObjectItem(j, "title")),
				     "beforeafter");
			ASSERT_STREQ(
			    cJSON_GetStringValue(cJSON_GetObjectItem(j, "esc")),
			    "\\u0000 stays");
		}
		cJSON_Delete(j);
		telespool_free(out);
	}
	free(deep);
	/* Every stored survey body, read raw, is valid UTF-8. */
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM surveys"), 3);
	char *bodies =
	    path_text(path, "SELECT group_concat(body) FROM surveys");
	ASSERT_TRUE(bodies != NULL && valid_utf8(bodies));
	free(bodies);

	/* Deeper than any parser should follow, or not an object: not
	 * stored, counted. */
	char *deeper = nested_survey("deeper", 2000);
	const char *bad[] = {deeper, "[1, 2]", "{\"survey_id\": "};
	for (size_t i = 0; i < 3; i++) {
		snprintf(milestone, sizeof(milestone), "bad%zu", i);
		ASSERT_EQ(telespool_record_survey_trigger(sp, milestone),
			  TELESPOOL_OK);
		send_all(sp, now, bad[i]);
	}
	free(deeper);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM surveys"), 3);
	ASSERT_EQ(path_int(path, "SELECT count FROM drops"
				 " WHERE reason = 'survey_invalid'"),
		  3);

	/* Too large for a body: its strings are cut until it fits, but not
	 * its id, or LangBot's answer could never be matched to it. */
	const char *uuid = "6f1c2a8e-3b7d-4c59-9e0a-1d2b3c4d5e6f";
	size_t big_len = 5 * 256 * 260 + 400;
	char *big = malloc(big_len);
	int o = snprintf(big, big_len, "{\"survey_id\": \"%s\"", uuid);
	for (int q = 0; q < 5; q++) {
		o += snprintf(big + o, big_len - (size_t)o, ", \"q%d\": [", q);
		for (int i = 0; i < 256; i++) {
			o += snprintf(big + o, big_len - (size_t)o, "%s\"",
				      i ? ", " : "");
			memset(big + o, 'a' + i % 26, 250);
			o += 250;
			big[o++] = '"';
		}
		big[o++] = ']';
	}
	snprintf(big + o, big_len - (size_t)o, "}");
	ASSERT_EQ(telespool__exec(sp, "DELETE FROM surveys"), TELESPOOL_OK);
	ASSERT_EQ(telespool_record_survey_trigger(sp, "big"), TELESPOOL_OK);
	send_all(sp, now, big);
	free(big);
	assert_pending_survey(sp, uuid);

	/* Space's text quoted in last_error is stored as valid UTF-8. */
	record_n(sp, "le", 1, NULL);
	telespool__batch b;
	ASSERT_EQ(telespool__claim(sp, now, 60000, DAY_MS, 0, 10, &b),
		  TELESPOOL_OK);
	ASSERT_EQ(b.n, 1);
	if (b.n == 1) {
		telespool__outcome oc = {0};
		oc.id = b.items[0].id;
		oc.verdict = TELESPOOL__RETRY;
		oc.next_attempt_ms = now;
		oc.last_error = "HTTP 500: \xff\xfe broken";
		ASSERT_EQ(telespool__finish(sp, &oc, 1, now), TELESPOOL_OK);
		char *le = col_of(path, "last_error", oc.id);
		ASSERT_TRUE(le != NULL && valid_utf8(le));
		ASSERT_CONTAINS(le, "broken");
		free(le);
	}
	telespool__batch_free(&b);
	telespool_close(sp);
	printf("FAULT: hostile survey (995 levels, invalid UTF-8, \\u0000): "
	       "tried %d times, lost %d\n",
	       tried, lost);
}

/* ---- leases, expiry ---- */

/*
 * pending_from (migration 0002) moves past what was sent, and nothing can
 * hide below it: not events recorded after the newest rows were deleted by
 * hand (SQLite would give out their ids again), nor rows set back to
 * pending by hand.
 */
static void test_pending_from(void)
{
	char path[600];
	telespool *sp = fresh("pending-from.db", path, sizeof(path));
	if (sp == NULL)
		return;
	const char *pf = "SELECT CAST(value AS INTEGER) FROM uploader_state"
			 " WHERE key = 'pending_from'";
	const char *sent = "SELECT count(*) FROM spool WHERE state = 'sent'";
	int64_t now = wall_ms() + 1000;
	ASSERT_EQ(path_int(path, pf), 1);
	record_n(sp, "a", 5, NULL);
	ASSERT_EQ(deliver_all(sp, path, now), 5);
	ASSERT_EQ(path_int(path, pf), 6);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM pending"), 0);

	/* The newest rows deleted by hand: the next event still gets an id
	 * at or above pending_from, and goes out. */
	ASSERT_EQ(path_exec(path, "DELETE FROM spool WHERE id >= 3"),
		  SQLITE_OK);
	record_n(sp, "b", 2, NULL);
	ASSERT_EQ(path_int(path, "SELECT min(id) FROM pending"), 6);
	ASSERT_EQ(deliver_all(sp, path, now), 2);
	ASSERT_EQ(path_int(path, pf), 8);

	/* Everything deleted by hand. */
	ASSERT_EQ(path_exec(path, "DELETE FROM spool"), SQLITE_OK);
	record_n(sp, "c", 3, NULL);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM pending"), 3);
	ASSERT_EQ(deliver_all(sp, path, now), 3);

	/* A sent row set back to pending (to send it again) is found. */
	ASSERT_EQ(path_exec(path, "UPDATE spool SET state = 'pending'"
				  " WHERE id = (SELECT min(id) FROM spool)"),
		  SQLITE_OK);
	ASSERT_EQ(path_int(path, pf),
		  path_int(path, "SELECT min(id) FROM spool"));
	ASSERT_EQ(deliver_all(sp, path, now), 1);
	ASSERT_EQ(path_int(path, sent), 3);

	/* After a purge, new events go out as well. */
	int64_t ne = 0, ns = 0;
	ASSERT_EQ(telespool__purge(sp, &ne, &ns), TELESPOOL_OK);
	record_n(sp, "d", 2, NULL);
	ASSERT_EQ(deliver_all(sp, path, now), 2);
	telespool_close(sp);
}

static void test_reclaim_leases(void)
{
	char path[600];
	telespool *sp = fresh("reclaim.db", path, sizeof(path));
	if (sp == NULL)
		return;
	record_n(sp, "r", 8, NULL);
	int64_t now = wall_ms() + 1000, n = -1;
	telespool__batch b;
	ASSERT_EQ(telespool__claim(sp, now, 600000, DAY_MS, 0, 5, &b),
		  TELESPOOL_OK);
	telespool__batch_free(&b);
	ASSERT_EQ(path_int(path,
			   "SELECT count(*) FROM events WHERE lease_until "
			   "IS NOT NULL"),
		  5);
	ASSERT_EQ(telespool__reclaim_leases(sp, &n), TELESPOOL_OK);
	ASSERT_EQ(n, 5);
	ASSERT_EQ(path_int(path,
			   "SELECT count(*) FROM events WHERE lease_until "
			   "IS NOT NULL"),
		  0);
	ASSERT_EQ(telespool__claim(sp, now, 600000, DAY_MS, 0, 5, &b),
		  TELESPOOL_OK);
	assert_claimed(&b, "r", 0, 5);
	telespool__batch_free(&b);
	ASSERT_EQ(telespool__reclaim_leases(sp, NULL), TELESPOOL_OK);
	ASSERT_EQ(telespool__reclaim_leases(sp, &n), TELESPOOL_OK);
	ASSERT_EQ(n, 0);
	telespool_close(sp);
}

static void test_expire(void)
{
	char path[600], sql[400], t[TELESPOOL_ISO_LEN];
	telespool *sp = fresh("expire.db", path, sizeof(path));
	if (sp == NULL)
		return;
	record_n(sp, "x", 12, NULL);
	int64_t now = wall_ms() + 1000;
	int64_t first = path_int(path, "SELECT min(id) FROM events");

	/* x0-x2 two days old; x3, x4 five attempts, x5 four; x6, x7 sent ten
	 * days ago; x8 sent a day ago; x9 dead, recorded ten days ago. */
	telespool__iso(now - 2 * DAY_MS, t);
	snprintf(sql, sizeof(sql),
		 "UPDATE spool SET created_at = '%s' WHERE id BETWEEN %lld AND "
		 "%lld",
		 t, (long long)first, (long long)first + 2);
	ASSERT_EQ(path_exec(path, sql), SQLITE_OK);
	snprintf(
	    sql, sizeof(sql),
	    "UPDATE spool SET attempts = CASE WHEN id = %lld THEN 4 ELSE 5 "
	    "END, last_error = 'HTTP 502' WHERE id BETWEEN %lld AND %lld",
	    (long long)first + 5, (long long)first + 3, (long long)first + 5);
	ASSERT_EQ(path_exec(path, sql), SQLITE_OK);
	telespool__iso(now - 10 * DAY_MS, t);
	snprintf(sql, sizeof(sql),
		 "UPDATE spool SET state = 'sent', sent_at = '%s',"
		 " created_at = '%s' WHERE id IN (%lld, %lld)",
		 t, t, (long long)first + 6, (long long)first + 7);
	ASSERT_EQ(path_exec(path, sql), SQLITE_OK);
	snprintf(
	    sql, sizeof(sql),
	    "UPDATE spool SET state = 'dead', created_at = '%s' WHERE id = "
	    "%lld",
	    t, (long long)first + 9);
	ASSERT_EQ(path_exec(path, sql), SQLITE_OK);
	telespool__iso(now - DAY_MS, t);
	snprintf(sql, sizeof(sql),
		 "UPDATE spool SET state = 'sent', sent_at = '%s' WHERE id = "
		 "%lld",
		 t, (long long)first + 8);
	ASSERT_EQ(path_exec(path, sql), SQLITE_OK);

	telespool__expiry e = {-1, -1};
	ASSERT_EQ(telespool__expire(sp, now, DAY_MS, 7 * DAY_MS, &e),
		  TELESPOOL_OK);
	ASSERT_EQ(e.expired, 3);
	ASSERT_EQ(e.pruned, 3);
	ASSERT_EQ(drops_of(path, "expired"), 3);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM events"), 9);
	for (int i = 0; i < 3; i++) {
		assert_col(path, "state", first + i, "dead");
		assert_col(path, "lease_until", first + i, "NULL");
		char *le = col_of(path, "last_error", first + i);
		ASSERT_CONTAINS(le, "expired");
		free(le);
	}
	/* Used-up attempts are the uploader's verdict when the last attempt
	 * fails, not housekeeping's. */
	for (int i = 3; i < 5; i++)
		assert_col(path, "state", first + i, "pending");
	assert_col(path, "state", first + 5, "pending");
	assert_col(path, "state", first + 8, "sent");
	assert_col(path, "state", first + 10, "pending");
	assert_col(path, "state", first + 11, "pending");

	/* Nothing left to do: all zeros, nothing counted twice. */
	ASSERT_EQ(telespool__expire(sp, now, DAY_MS, 7 * DAY_MS, &e),
		  TELESPOOL_OK);
	ASSERT_EQ(e.expired + e.pruned, 0);
	ASSERT_EQ(drops_of(path, "expired"), 3);
	ASSERT_EQ(telespool__expire(sp, now, DAY_MS, 7 * DAY_MS, NULL),
		  TELESPOOL_OK);
	/* Ten days later every finished row is past retention; the pending
	 * ones (30 days max age) stay. */
	ASSERT_EQ(path_exec(path, "UPDATE spool SET state = 'sent', sent_at ="
				  " created_at WHERE state = 'pending'"),
		  SQLITE_OK);
	ASSERT_EQ(telespool__expire(sp, now + 10 * DAY_MS, 30 * DAY_MS,
				    7 * DAY_MS, &e),
		  TELESPOOL_OK);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM events"), 0);
	ASSERT_EQ(e.pruned, 9);
	telespool_close(sp);
}

/*
 * A spool with no auto_vacuum (0002 on) is rewritten after pruning once most
 * of a large file is free and little is in use: a long outage's backlog,
 * delivered and aged out, does not keep its disk space.
 */
static void test_compact_after_prune(void)
{
	char path[600];
	telespool *sp = fresh("compact.db", path, sizeof(path));
	if (sp == NULL)
		return;
	ASSERT_EQ(path_int(path, "PRAGMA auto_vacuum"), 0);
	static const char line[] = "  File \"/app/pkg/x.py\", line 1, in f\n";
	char tb[8192];
	size_t k = 0;
	while (k + sizeof(line) < sizeof(tb)) {
		memcpy(tb + k, line, sizeof(line) - 1);
		k += sizeof(line) - 1;
	}
	tb[k] = '\0';
	for (int i = 0; i < 3000; i++) {
		telespool_query q = TELESPOOL_QUERY_INIT;
		q.query_id = "big";
		q.error = tb;
		ASSERT_EQ(telespool_record_query(sp, &q), TELESPOOL_OK);
	}
	record_n(sp, "recent", 10, NULL);
	int64_t now = wall_ms();
	char t[TELESPOOL_ISO_LEN], sql[300];
	telespool__iso(now - 10 * DAY_MS, t);
	snprintf(sql, sizeof(sql),
		 "UPDATE spool SET state = 'sent', sent_at = '%s',"
		 " created_at = '%s' WHERE json_extract(body, '$.query_id')"
		 " = 'big'",
		 t, t);
	ASSERT_EQ(path_exec(path, sql), SQLITE_OK);
	int64_t before = path_int(path, "PRAGMA page_count");
	ASSERT_TRUE(before * 4096 > 20 * 1024 * 1024);

	telespool__expiry e = {-1, -1};
	ASSERT_EQ(telespool__expire(sp, now, 30 * DAY_MS, 7 * DAY_MS, &e),
		  TELESPOOL_OK);
	ASSERT_EQ(e.pruned, 3000);
	int64_t after = path_int(path, "PRAGMA page_count");
	ASSERT_TRUE(after * 4096 < 1024 * 1024);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM pending"), 10);

	/* Little freed, or much still in use: no rewrite. */
	for (int i = 0; i < 300; i++) {
		telespool_query q = TELESPOOL_QUERY_INIT;
		q.query_id = "big";
		q.error = tb;
		ASSERT_EQ(telespool_record_query(sp, &q), TELESPOOL_OK);
	}
	ASSERT_EQ(path_exec(path, sql), SQLITE_OK);
	int64_t grown = path_int(path, "PRAGMA page_count");
	ASSERT_EQ(telespool__expire(sp, now, 30 * DAY_MS, 7 * DAY_MS, &e),
		  TELESPOOL_OK);
	ASSERT_EQ(e.pruned, 300);
	ASSERT_EQ(path_int(path, "PRAGMA page_count"), grown);
	telespool_close(sp);
}

/* ---- purge ---- */

static void test_purge(void)
{
	char path[600], wal[700];
	telespool *sp = fresh("purge.db", path, sizeof(path));
	if (sp == NULL)
		return;
	path_suffix(wal, sizeof(wal), path, "-wal");
	record_n(sp, "p", 5000, "PURGE-CANARY-");
	ASSERT_EQ(
	    telespool_record_survey_trigger(sp, "first_bot_response_success"),
	    TELESPOOL_OK);
	ASSERT_EQ(telespool_record_survey_response(
		      sp, "sv-1", "{\"note\": \"PURGE-CANARY-survey\"}", 1),
		  TELESPOOL_OK);
	ASSERT_EQ(path_exec(path,
			    "INSERT INTO surveys (survey_id, body, state, "
			    "received_at) VALUES ('sv-2', "
			    "'{\"title\":\"PURGE-CANARY-offered\"}', "
			    "'pending', '2025-01-01T00:00:00.000Z')"),
		  SQLITE_OK);
	int64_t run_id = 0;
	ASSERT_EQ(telespool__run_start(sp, wall_ms(), &run_id), TELESPOOL_OK);
	/* Everything into the main file first, so its size means something. */
	ASSERT_EQ(path_exec(path, "PRAGMA wal_checkpoint(TRUNCATE)"),
		  SQLITE_OK);
	int64_t before = file_size(path);
	ASSERT_TRUE(
	    file_contains(path, "PURGE-CANARY-4999")); /* the probe works */

	/* The purge deletes with secure_delete = FAST (the VACUUM cuts the
	 * pages off), and gives the connection its own setting back. */
	ASSERT_EQ(
	    sqlite3_exec(sp->db, "PRAGMA secure_delete = ON", NULL, NULL, NULL),
	    SQLITE_OK);
	int64_t ne = -1, ns = -1;
	ASSERT_EQ(telespool__purge(sp, &ne, &ns), TELESPOOL_OK);
	ASSERT_STREQ(telespool_errmsg(sp), "");
	sqlite3_stmt *sd = NULL;
	ASSERT_EQ(
	    sqlite3_prepare_v2(sp->db, "PRAGMA secure_delete", -1, &sd, NULL),
	    SQLITE_OK);
	ASSERT_EQ(sqlite3_step(sd), SQLITE_ROW);
	ASSERT_EQ(sqlite3_column_int(sd, 0), 1);
	sqlite3_finalize(sd);
	ASSERT_EQ(ne, 5002);
	ASSERT_EQ(ns, 2);
	ASSERT_TRUE(!file_contains(path, "PURGE-CANARY"));
	ASSERT_TRUE(!file_contains(wal, "PURGE-CANARY"));
	ASSERT_TRUE(file_size(wal) <= 0);
	int64_t after = file_size(path);
	if (!(after > 0 && after < before / 4))
		TU_FAIL("file %lld bytes before the purge, %lld after",
			(long long)before, (long long)after);
	else
		tu_passed++;
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM events"), 0);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM surveys"), 0);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM survey_milestones"), 0);
	/* Runs and drops carry no content and are kept. */
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM upload_runs"), 1);

	/* The spool keeps working, and a purge of nothing is fine. */
	record_n(sp, "after", 3, NULL);
	ASSERT_EQ(telespool__purge(sp, &ne, NULL), TELESPOOL_OK);
	ASSERT_EQ(ne, 3);
	ASSERT_EQ(telespool__purge(sp, NULL, NULL), TELESPOOL_OK);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM events"), 0);
	telespool_close(sp);
}

static void test_purge_with_reader(void)
{
	char path[600], wal[700];
	telespool *sp = fresh("purge-reader.db", path, sizeof(path));
	if (sp == NULL)
		return;
	path_suffix(wal, sizeof(wal), path, "-wal");
	record_n(sp, "p", 200, "PURGE-CANARY-");

	sqlite3 *reader = raw_open(path);
	ASSERT_EQ(raw_exec(reader, "BEGIN"), SQLITE_OK);
	ASSERT_EQ(raw_int(reader, "SELECT count(*) FROM events"), 200);

	int64_t ne = -1;
	ASSERT_EQ(telespool__purge(sp, &ne, NULL), TELESPOOL_EBUSY);
	ASSERT_CONTAINS(telespool_errmsg(sp), "reader");
	ASSERT_EQ(ne, 200);
	/* The rows are gone for everyone but the old snapshot. */
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM events"), 0);
	ASSERT_EQ(raw_int(reader, "SELECT count(*) FROM events"), 200);
	ASSERT_EQ(raw_exec(reader, "COMMIT"), SQLITE_OK);
	sqlite3_close(reader);

	/* The next purge finishes the job. */
	ASSERT_EQ(telespool__purge(sp, &ne, NULL), TELESPOOL_OK);
	ASSERT_EQ(ne, 0);
	ASSERT_TRUE(!file_contains(path, "PURGE-CANARY"));
	ASSERT_TRUE(!file_contains(wal, "PURGE-CANARY"));
	telespool_close(sp);
}

/* Writes a small file holding text at path. */
static void put_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");
	if (f == NULL) {
		TU_FAIL("cannot create %s", path);
		return;
	}
	fputs(text, f);
	fclose(f);
}

/* What a damaged spool moved aside and a crashed create leave behind. */
static void make_side_files(const char *path, char side[3][700])
{
	path_suffix(side[0], 700, path, ".corrupt-20260101T000000Z");
	path_suffix(side[1], 700, path, ".corrupt-20260101T000000Z-wal");
	path_suffix(side[2], 700, path, ".new-123-0badf00d");
	for (int i = 0; i < 3; i++)
		put_file(side[i], "PURGE-CANARY-side-file");
}

/*
 * A purge a reader held back leaves its mark: --status says so, and the
 * next open, by anyone, finishes it (VACUUM, WAL emptied, the copies of
 * damaged spools and leftover new files removed) before anything else.
 */
static void test_purge_resumed_at_open(void)
{
	char path[600], wal[700], side[3][700];
	telespool *sp = fresh("purge-resume.db", path, sizeof(path));
	if (sp == NULL)
		return;
	path_suffix(wal, sizeof(wal), path, "-wal");
	record_n(sp, "p", 300, "PURGE-CANARY-");
	make_side_files(path, side);

	/* holder, idle, keeps the reader's close from being the last one
	 * (the last connection to close checkpoints and would finish it). */
	sqlite3 *holder = raw_open(path), *reader = raw_open(path);
	ASSERT_EQ(raw_int(holder, "SELECT count(*) FROM events"), 300);
	ASSERT_EQ(raw_exec(reader, "BEGIN"), SQLITE_OK);
	ASSERT_EQ(raw_int(reader, "SELECT count(*) FROM events"), 300);
	ASSERT_EQ(telespool__purge(sp, NULL, NULL), TELESPOOL_EBUSY);
	telespool__status st;
	ASSERT_EQ(telespool__get_status(sp, wall_ms(), &st), TELESPOOL_OK);
	ASSERT_TRUE(st.purge_incomplete[0] != '\0');
	telespool_close(sp);
	ASSERT_EQ(raw_exec(reader, "COMMIT"), SQLITE_OK);
	sqlite3_close(reader);
	ASSERT_TRUE(file_contains(path, "PURGE-CANARY") ||
		    file_contains(wal, "PURGE-CANARY"));

	/* LangBot's next open, with no purge call of its own. */
	sp = fresh("purge-resume.db", path, sizeof(path));
	if (sp == NULL)
		return;
	ASSERT_TRUE(!file_contains(path, "PURGE-CANARY"));
	ASSERT_TRUE(!file_contains(wal, "PURGE-CANARY"));
	for (int i = 0; i < 3; i++)
		ASSERT_TRUE(file_size(side[i]) < 0);
	ASSERT_EQ(telespool__get_status(sp, wall_ms(), &st), TELESPOOL_OK);
	ASSERT_STREQ(st.purge_incomplete, "");
	record_n(sp, "after", 2, NULL);
	telespool_close(sp);
	sqlite3_close(holder);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM events"), 2);
}

/* A wal hook for the purging child: kill -9 itself after its n-th commit. */
static int kill_at_commit(void *ctx, sqlite3 *db, const char *name, int n)
{
	(void)db;
	(void)name;
	(void)n;
	if (--*(int *)ctx == 0)
		raise(SIGKILL);
	return SQLITE_OK;
}

/*
 * kill -9 after each commit of a purge (its deletion; the VACUUM; the
 * removal of its mark), then the next open: nothing purged is readable in
 * the file, its WAL or a side file.  (A kill before the first commit purges
 * nothing: the uploader's next run purges again, as the config still says.)
 */
static void test_purge_killed(void)
{
	char path[600], wal[700], side[3][700];
	int rounds = getenv("TELESPOOL_UNDER_VALGRIND") ? 3 : 9;
	int lost = 0;
	for (int r = 0; r < rounds; r++) {
		char name[64];
		snprintf(name, sizeof(name), "purge-kill-%d.db", r);
		telespool *sp = fresh(name, path, sizeof(path));
		if (sp == NULL)
			return;
		path_suffix(wal, sizeof(wal), path, "-wal");
		record_n(sp, "k", 10, "PURGE-CANARY-");
		telespool_close(sp);
		ASSERT_EQ(
		    path_exec(path,
			      "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL"
			      " SELECT i + 1 FROM c WHERE i < 3000)"
			      " INSERT INTO spool (next_attempt_at,"
			      " created_at, size, event_id, event_type,"
			      " body) SELECT '2026-01-01T00:00:00.000Z',"
			      " '2026-01-01T00:00:00.000Z', 600, 'e' || i,"
			      " 'query', '{\"error\":\"PURGE-CANARY-' || i"
			      " || printf('%.400c', 'x') || '\"}' FROM c"),
		    SQLITE_OK);
		make_side_files(path, side);
		fflush(NULL);
		pid_t pid = fork();
		if (pid == 0) {
			telespool *c = NULL;
			int commits = r % 3 + 1;
			if (telespool_open(&c, path, NULL) == TELESPOOL_OK) {
				sqlite3_wal_hook(c->db, kill_at_commit,
						 &commits);
				telespool__purge(c, NULL, NULL);
			}
			_exit(3);
		}
		int status = 0;
		waitpid(pid, &status, 0);
		ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

		/* The next open, which purges nothing by itself. */
		sp = fresh(name, path, sizeof(path));
		if (sp == NULL)
			return;
		ASSERT_EQ(path_int(path, "SELECT count(*) FROM spool"), 0);
		telespool_close(sp);
		int found = file_contains(path, "PURGE-CANARY") ||
			    file_contains(wal, "PURGE-CANARY");
		for (int i = 0; i < 3; i++)
			found |= file_size(side[i]) >= 0;
		lost += found;
	}
	ASSERT_EQ(lost, 0);
	printf("FAULT: kill -9 after each commit of an opt-out purge, then "
	       "the next open: tried %d times, lost %d\n",
	       rounds, lost);
}

/* ---- uploader state, runs, status ---- */

static void test_state(void)
{
	char path[600];
	telespool *sp = fresh("state.db", path, sizeof(path));
	if (sp == NULL)
		return;
	int64_t v = -1;
	ASSERT_EQ(telespool__gate_get(sp, TELESPOOL__GATE_RETRY_AFTER, &v),
		  TELESPOOL_OK);
	ASSERT_EQ(v, 0);
	ASSERT_EQ(telespool__gate_set(sp, TELESPOOL__GATE_RETRY_AFTER,
				      1700000000000LL),
		  TELESPOOL_OK);
	ASSERT_EQ(telespool__gate_get(sp, TELESPOOL__GATE_RETRY_AFTER, &v),
		  TELESPOOL_OK);
	ASSERT_EQ(v, 1700000000000LL);
	/* Stored as the documented schema and earlier uploaders have it. */
	char *text = path_text(path, "SELECT value FROM uploader_state"
				     " WHERE key = 'retry_after_until'");
	ASSERT_STREQ(text, "1700000000000");
	free(text);
	ASSERT_EQ(telespool__gate_set(sp, TELESPOOL__GATE_DOWN_COUNT, 3),
		  TELESPOOL_OK);
	ASSERT_EQ(telespool__gate_set(sp, TELESPOOL__GATE_DOWN_UNTIL, 42),
		  TELESPOOL_OK);
	ASSERT_EQ(telespool__gate_get(sp, TELESPOOL__GATE_DOWN_COUNT, &v),
		  TELESPOOL_OK);
	ASSERT_EQ(v, 3);
	/* 0 removes it. */
	ASSERT_EQ(telespool__gate_set(sp, TELESPOOL__GATE_RETRY_AFTER, 0),
		  TELESPOOL_OK);
	ASSERT_EQ(telespool__gate_get(sp, TELESPOOL__GATE_RETRY_AFTER, &v),
		  TELESPOOL_OK);
	ASSERT_EQ(v, 0);
	ASSERT_EQ(telespool__gate_set(sp, TELESPOOL__GATE_LAST_RUN, 0),
		  TELESPOOL_OK);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM uploader_state"
				 " WHERE key IN ('down_count', 'down_until')"),
		  2);
	/* The survey endpoints' gate is its own. */
	ASSERT_EQ(telespool__gate_set(sp, TELESPOOL__GATE_SURVEY_DOWN_UNTIL, 7),
		  TELESPOOL_OK);
	ASSERT_EQ(telespool__gate_get(sp, TELESPOOL__GATE_DOWN_UNTIL, &v),
		  TELESPOOL_OK);
	ASSERT_EQ(v, 42);
	ASSERT_EQ(
	    telespool__gate_get(sp, TELESPOOL__GATE_SURVEY_DOWN_UNTIL, &v),
	    TELESPOOL_OK);
	ASSERT_EQ(v, 7);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM uploader_state"
				 " WHERE key = 'survey_down_until'"),
		  1);
	ASSERT_EQ(telespool__gate_set(sp, TELESPOOL__GATE_SURVEY_DOWN_UNTIL, 0),
		  TELESPOOL_OK);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM uploader_state"
				 " WHERE key NOT IN ('pending_from',"
				 " 'down_count', 'down_until')"),
		  0);
	/* Only the gates: no key of the library's can be named. */
	ASSERT_EQ(telespool__gate_set(sp, TELESPOOL__GATE_COUNT, 5),
		  TELESPOOL_EINVAL);
	ASSERT_TRUE(strstr(telespool_errmsg(sp), "unknown uploader state") !=
		    NULL);
	ASSERT_EQ(telespool__gate_get(sp, (enum telespool__gate)99, &v),
		  TELESPOOL_EINVAL);
	ASSERT_EQ(v, 0);

	/* The concurrency, in the text earlier uploaders wrote. */
	telespool__cc_state cc = {0, 0, 0, 0, 0};
	ASSERT_EQ(telespool__cc_get(sp, &cc), TELESPOOL_OK);
	ASSERT_EQ(cc.have, 0);
	telespool__cc_state put = {1, 24, 48, 2, 0};
	ASSERT_EQ(telespool__cc_set(sp, &put), TELESPOOL_OK);
	text = path_text(path, "SELECT value FROM uploader_state"
			       " WHERE key = 'concurrency'");
	ASSERT_STREQ(text, "24 48 2 adaptive");
	free(text);
	ASSERT_EQ(telespool__cc_get(sp, &cc), TELESPOOL_OK);
	ASSERT_EQ(cc.have, 1);
	ASSERT_EQ(cc.level, 24);
	ASSERT_EQ(cc.peak, 48);
	ASSERT_EQ(cc.cuts, 2);
	ASSERT_EQ(cc.fixed, 0);
	put.fixed = 1;
	ASSERT_EQ(telespool__cc_set(sp, &put), TELESPOOL_OK);
	ASSERT_EQ(telespool__cc_get(sp, &cc), TELESPOOL_OK);
	ASSERT_EQ(cc.have, 1);
	ASSERT_EQ(cc.fixed, 1);
	/* A value that is not one is not taken for one. */
	ASSERT_EQ(path_exec(path, "UPDATE uploader_state SET value = '7 x'"
				  " WHERE key = 'concurrency'"),
		  SQLITE_OK);
	ASSERT_EQ(telespool__cc_get(sp, &cc), TELESPOOL_OK);
	ASSERT_EQ(cc.have, 0);
	ASSERT_STREQ(telespool__path(sp), path);
	telespool_close(sp);
}

/* A status that cannot be read all says so by its return code and leaves
 * no read transaction open behind it. */
static void test_status_failure(void)
{
	char path[600];
	telespool *sp = fresh("status_fail.db", path, sizeof(path));
	if (sp == NULL)
		return;
	telespool__status s;
	record_n(sp, "sf", 3, NULL);
	ASSERT_EQ(path_exec(path, "DROP TABLE upload_runs"), SQLITE_OK);
	int rc = telespool__get_status(sp, wall_ms(), &s);
	ASSERT_TRUE(rc != TELESPOOL_OK);
	ASSERT_CONTAINS(telespool_errmsg(sp), "upload_runs");
	/* The numbers read before the failure are there; the handle still
	 * writes (no transaction left open). */
	ASSERT_EQ(s.pending, 3);
	record_n(sp, "sf2", 1, NULL);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM spool"), 4);
	telespool_close(sp);
}

static void test_runs_and_status(void)
{
	char path[600];
	telespool *sp = fresh("status.db", path, sizeof(path));
	if (sp == NULL)
		return;
	int64_t now = wall_ms() + 1000;
	telespool__status s;

	ASSERT_EQ(telespool__get_status(sp, now, &s), TELESPOOL_OK);
	ASSERT_EQ(s.pending + s.sent + s.dead + s.total_bytes, 0);
	ASSERT_STREQ(s.oldest_pending, "");
	ASSERT_STREQ(s.next_attempt, "");
	ASSERT_EQ(s.n_drops, 0);
	ASSERT_EQ(s.n_runs, 0);
	ASSERT_EQ(s.schema_version,
		  telespool__migrations[telespool__n_migrations - 1].version);

	record_n(sp, "st", 10, NULL);
	int64_t r1 = 0, r2 = 0;
	ASSERT_EQ(telespool__run_start(sp, now, &r1), TELESPOOL_OK);
	ASSERT_TRUE(r1 > 0);
	telespool__batch b;
	ASSERT_EQ(telespool__claim(sp, now, 60000, DAY_MS, 0, 5, &b),
		  TELESPOOL_OK);
	telespool__outcome oc[5];
	memset(oc, 0, sizeof(oc));
	for (size_t i = 0; i < b.n && i < 5; i++) {
		oc[i].id = b.items[i].id;
		oc[i].verdict = i < 3 ? TELESPOOL__SENT : TELESPOOL__DEAD;
		oc[i].last_error = i < 3 ? NULL : "HTTP 400";
		oc[i].drop_reason = i < 3 ? NULL : "rejected";
	}
	ASSERT_EQ(telespool__finish(sp, oc, b.n, now), TELESPOOL_OK);
	telespool__batch_free(&b);
	/* Two of the five pending rows leased, one backing off. */
	ASSERT_EQ(telespool__claim(sp, now, 60000, DAY_MS, 0, 3, &b),
		  TELESPOOL_OK);
	telespool__outcome retry = {b.n == 3 ? b.items[2].id : 0,
				    TELESPOOL__RETRY,
				    now + 3600000,
				    "HTTP 503",
				    NULL,
				    NULL,
				    NULL};
	ASSERT_EQ(telespool__finish(sp, &retry, 1, now), TELESPOOL_OK);
	telespool__batch_free(&b);
	telespool__run r = {3, 1, 2, 0, "retry_later", "sent 3, 2 rejected"};
	ASSERT_EQ(telespool__run_end(sp, r1, now + 1500, &r), TELESPOOL_OK);
	ASSERT_EQ(telespool__run_start(sp, now + 2000, &r2), TELESPOOL_OK);
	ASSERT_TRUE(r2 > r1);
	ASSERT_EQ(path_exec(path,
			    "INSERT INTO surveys (survey_id, body, state, "
			    "received_at) VALUES ('sv', '{}', 'pending', "
			    "'2025-01-01T00:00:00.000Z')"),
		  SQLITE_OK);

	ASSERT_EQ(telespool__get_status(sp, now + 1000, &s), TELESPOOL_OK);
	ASSERT_EQ(s.pending, 5);
	ASSERT_EQ(s.sent, 3);
	ASSERT_EQ(s.dead, 2);
	ASSERT_EQ(s.leased, 2);
	ASSERT_EQ(s.total_bytes,
		  path_int(path, "SELECT sum(size) FROM events"));
	ASSERT_EQ(s.pending_bytes,
		  path_int(path, "SELECT sum(size) FROM events "
				 "WHERE state = 'pending'"));
	char *oldest = path_text(path, "SELECT created_at FROM events WHERE "
				       "state = 'pending' ORDER BY id LIMIT 1");
	char *next = path_text(path, "SELECT min(next_attempt_at) FROM events "
				     "WHERE state = 'pending'");
	ASSERT_STREQ(s.oldest_pending, oldest);
	ASSERT_STREQ(s.next_attempt, next);
	free(oldest);
	free(next);
	ASSERT_EQ(s.surveys_pending, 1);
	ASSERT_EQ(s.n_drops, 1);
	ASSERT_STREQ(s.drops[0].reason, "rejected");
	ASSERT_EQ(s.drops[0].count, 2);
	ASSERT_TRUE(strlen(s.drops[0].last_at) == TELESPOOL_ISO_LEN - 1);
	ASSERT_EQ(s.n_runs, 2);
	ASSERT_EQ(s.runs[0].id, r2); /* newest first */
	ASSERT_STREQ(s.runs[0].ended_at, "");
	ASSERT_EQ(s.runs[1].id, r1);
	ASSERT_EQ(s.runs[1].sent, 3);
	ASSERT_EQ(s.runs[1].retried, 1);
	ASSERT_EQ(s.runs[1].dead, 2);
	ASSERT_EQ(s.runs[1].purged, 0);
	ASSERT_STREQ(s.runs[1].outcome, "retry_later");
	ASSERT_STREQ(s.runs[1].detail, "sent 3, 2 rejected");
	char iso[TELESPOOL_ISO_LEN];
	telespool__iso(now, iso);
	ASSERT_STREQ(s.runs[1].started_at, iso);
	telespool__iso(now + 1500, iso);
	ASSERT_STREQ(s.runs[1].ended_at, iso);

	/* Leases that have run out no longer count. */
	ASSERT_EQ(telespool__get_status(sp, now + 120000, &s), TELESPOOL_OK);
	ASSERT_EQ(s.leased, 0);

	/* Only the five newest runs. */
	for (int i = 0; i < 6; i++) {
		int64_t id;
		ASSERT_EQ(telespool__run_start(sp, now + 3000 + i, &id),
			  TELESPOOL_OK);
	}
	ASSERT_EQ(telespool__get_status(sp, now, &s), TELESPOOL_OK);
	ASSERT_EQ(s.n_runs, 5);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM upload_runs"), 8);
	/* get_status leaves no transaction open behind it. */
	record_n(sp, "later", 1, NULL);
	telespool_close(sp);
}

/* ---- main ---- */

static const struct tu_test tests[] = {
    {"claim_order_and_leases", test_claim_order_and_leases},
    {"claim_due_and_horizon", test_claim_due_and_horizon},
    {"claim_skip", test_claim_skip},
    {"peek", test_peek},
    {"claim_respects_longer_lease", test_claim_respects_longer_lease},
    {"finish_verdicts", test_finish_verdicts},
    {"finish_after_lease_lost", test_finish_after_lease_lost},
    {"finish_surveys", test_finish_surveys},
    {"hostile_surveys", test_hostile_surveys},
    {"reclaim_leases", test_reclaim_leases},
    {"pending_from", test_pending_from},
    {"expire", test_expire},
    {"compact_after_prune", test_compact_after_prune},
    {"purge", test_purge},
    {"purge_with_reader", test_purge_with_reader},
    {"purge_resumed_at_open", test_purge_resumed_at_open},
    {"purge_killed", test_purge_killed},
    {"state", test_state},
    {"runs_and_status", test_runs_and_status},
    {"status_failure", test_status_failure},
};

int main(int argc, char **argv)
{
	make_temp_dir(g_dir, sizeof(g_dir), "test_queue");
	return tu_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv,
		       g_dir);
}
