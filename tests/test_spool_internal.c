/*
 * test_spool_internal.c - what of libtelespool can only be seen from
 * inside: the handle's fields behind the options, the connection's own
 * pragmas, the embedded migrations, and the library's queue API (claim,
 * finish, purge, expire, runs) where it meets the record path.  The public
 * API is tested through the installed header only, in test_api.c; this
 * file links the static library with lib/src on its include path.
 *
 * "test_spool_internal NAME..." runs only the named tests.
 * "test_spool_internal --make-sample PATH" writes a small spool with every
 * kind of row (an upload run through the queue API included) for
 * sqlite_queries.sh.
 */
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migrate.h"
#include "queue.h"
#include "spool.h"
#include "spool_cases.h"
#include "telespool.h"
#include "testutil.h"

static void test_open_defaults(void)
{
	telespool_options o = TELESPOOL_OPTIONS_INIT;
	/* NULL options and an all-zero TELESPOOL_OPTIONS_INIT both give the
	 * documented defaults. */
	char path[600];
	path_in(path, sizeof(path), "defaults.db");
	for (int i = 0; i < 2; i++) {
		telespool *sp = open_ok(path, i == 0 ? NULL : &o);
		if (sp == NULL)
			return;
		ASSERT_EQ(sp->busy_timeout_ms,
			  TELESPOOL_DEFAULT_BUSY_TIMEOUT_MS);
		ASSERT_EQ(sp->busy_timeout_ms, 250);
		ASSERT_EQ(sp->max_events, TELESPOOL_DEFAULT_MAX_EVENTS);
		ASSERT_EQ(sp->max_bytes, TELESPOOL_DEFAULT_MAX_BYTES);
		ASSERT_EQ(sp->max_age_ms,
			  (int64_t)TELESPOOL_DEFAULT_MAX_AGE_DAYS * 86400000);
		ASSERT_EQ(sp->disabled, 0);
		ASSERT_EQ(record_simple(sp, "d"), TELESPOOL_OK);
		telespool_close(sp);
	}
	ASSERT_EQ(count_events(path), 2);
}

/* PRAGMA synchronous on the handle's own connection: 1 NORMAL, 2 FULL. */
static int64_t synchronous_of(telespool *sp)
{
	sqlite3_stmt *st;
	int64_t v = -1;
	if (sqlite3_prepare_v2(sp->db, "PRAGMA synchronous", -1, &st, NULL) !=
	    SQLITE_OK)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* durability picks the sync level of every commit; a caller built against
 * the version 1 struct (no durability field) gets NORMAL, whatever lies
 * after its struct.  The promise rests on SQLite's synchronous=FULL, which
 * this checks is in effect on the handle's connection (test_api durability
 * counts the syncs of a commit). */
static void test_durability(void)
{
	char path[600];
	path_in(path, sizeof(path), "durable.db");
	telespool_options o = TELESPOOL_OPTIONS_INIT;

	o.durability = TELESPOOL_DURABILITY_FULL;
	telespool *sp = open_ok(path, &o);
	if (sp == NULL)
		return;
	ASSERT_EQ(synchronous_of(sp), 2);
	ASSERT_EQ(record_simple(sp, "full"), TELESPOOL_OK);
	ASSERT_EQ(synchronous_of(sp), 2);
	telespool_close(sp);

	sp = open_ok(path, NULL);
	if (sp == NULL)
		return;
	ASSERT_EQ(synchronous_of(sp), 1);
	telespool_close(sp);

	o.durability = 77; /* beyond a version 1 struct: never read */
	o.struct_version = 1;
	sp = open_ok(path, &o);
	if (sp == NULL)
		return;
	ASSERT_EQ(synchronous_of(sp), 1);
	telespool_close(sp);
	ASSERT_EQ(count_events(path), 1);
}

/* The migrations compiled into the library are numbered from 1 without a
 * gap, and a new spool ends at the newest (test_api checks the files in
 * migrations/ against the spool). */
static void test_migrations_embedded(void)
{
	char path[600];
	ASSERT_TRUE(telespool__n_migrations >= 1);
	ASSERT_EQ(telespool__migrations[0].version, 1);
	for (int i = 0; i < telespool__n_migrations; i++) {
		ASSERT_EQ(telespool__migrations[i].version, i + 1);
		ASSERT_TRUE(telespool__migrations[i].sql != NULL &&
			    telespool__migrations[i].sql[0] != '\0');
	}
	path_in(path, sizeof(path), "embedded.db");
	telespool *sp = open_ok(path, NULL);
	telespool_close(sp);
	ASSERT_EQ(path_int(path, "PRAGMA user_version"),
		  telespool__migrations[telespool__n_migrations - 1].version);
}

/*
 * test_api concurrent_first_open's race, made certain: a connection read
 * the schema of 0001 (events a table), then another process applied 0002
 * (events a view).  migrate.c reads sqlite_schema before it runs a
 * migration, which makes SQLite load the changed schema again; 0003's DROP
 * VIEW events must not be prepared against the stale one ("use DROP TABLE
 * to delete table events").
 */
static void test_migrate_stale_schema(void)
{
	char path[600];
	int newest = telespool__migrations[telespool__n_migrations - 1].version;
	ASSERT_TRUE(telespool__n_migrations >= 3);
	path_in(path, sizeof(path), "stale.db");
	ASSERT_EQ(path_exec(path, telespool__migrations[0].sql), SQLITE_OK);
	ASSERT_EQ(path_exec(path, "PRAGMA user_version = 1"), SQLITE_OK);

	telespool *sp = calloc(1, sizeof(*sp));
	ASSERT_TRUE(sp != NULL);
	int src = sqlite3_open_v2(path, &sp->db, SQLITE_OPEN_READWRITE, NULL);
	if (src == SQLITE_OK)
		src = sqlite3_exec(sp->db, "SELECT count(*) FROM events", NULL,
				   NULL, NULL);
	ASSERT_EQ(path_exec(path, telespool__migrations[1].sql), SQLITE_OK);
	ASSERT_EQ(path_exec(path, "PRAGMA user_version = 2"), SQLITE_OK);
	int rc = src == SQLITE_OK ? telespool__migrate(sp) : TELESPOOL_ERROR;
	char msg[sizeof(sp->errmsg)];
	snprintf(msg, sizeof(msg), "%s", sp->errmsg);
	telespool__db_close(sp);
	free(sp);
	ASSERT_EQ(src, SQLITE_OK);
	ASSERT_STREQ(msg, "");
	ASSERT_EQ(rc, TELESPOOL_OK);
	ASSERT_EQ(path_int(path, "PRAGMA user_version"), newest);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM sqlite_schema"
				 " WHERE name = 'events' AND type = 'view'"),
		  1);
}

/*
 * A spool reached through a symbolic link (data/telemetry.db -> elsewhere)
 * and moved aside there (test_api move_aside_through_a_symlink): the
 * uploader's opt-out purge removes the moved copy beside the target.
 */
static void test_purge_moved_aside_copy(void)
{
	char real[700], link_path[700];
	linked_spool_paths(real, link_path);
	telespool *w = open_ok(link_path, NULL);
	if (w == NULL)
		return;
	record_tracebacks(w, 300);
	telespool_close(w);
	damage_middle(real);

	telespool_options o = TELESPOOL_OPTIONS_INIT;
	o.on_corrupt = TELESPOOL_CORRUPT_MOVE_ASIDE;
	telespool *m = NULL;
	/* Moved aside beside the target. */
	m = open_ok(link_path, &o);
	ASSERT_CONTAINS(telespool_open_errmsg(), "moved aside");
	ASSERT_EQ(count_corrupt_copies(real), 1);
	ASSERT_EQ(count_corrupt_copies(link_path), 0);
	ASSERT_EQ(drops_of(real, "corrupt_spool"), 1);

	/* And opting out removes that copy. */
	if (m != NULL)
		ASSERT_EQ(telespool__purge(m, NULL, NULL), TELESPOOL_OK);
	telespool_close(m);
	ASSERT_EQ(count_corrupt_copies(real), 0);
	ASSERT_EQ(count_corrupt_copies(link_path), 0);
}

/* max_events with rows delivered through the queue API (test_api
 * max_events marks them sent in the file): the oldest rows go first whatever
 * their state, and delivered copies are not counted as drops. */
static void test_max_events_after_upload(void)
{
	char path[600], qid[32];
	path_in(path, sizeof(path), "max-events-up.db");
	telespool *sp = past_max_events(path);
	if (sp == NULL)
		return;

	/* The oldest rows go first whatever their state; delivered copies
	 * are not counted as drops.  Claim q50..q59 and mark them sent, then
	 * record 10 more: q50..q59 go, without a drop. */
	telespool__batch b;
	int64_t now = wall_ms() + 1000;
	ASSERT_EQ(telespool__claim(sp, now, 60000, 86400000, 0, 10, &b),
		  TELESPOOL_OK);
	ASSERT_EQ(b.n, 10);
	telespool__outcome oc[10];
	memset(oc, 0, sizeof(oc));
	for (size_t i = 0; i < b.n && i < 10; i++) {
		oc[i].id = b.items[i].id;
		oc[i].verdict = TELESPOOL__SENT;
	}
	ASSERT_EQ(telespool__finish(sp, oc, b.n, now), TELESPOOL_OK);
	telespool__batch_free(&b);
	for (int i = 150; i < 160; i++) {
		snprintf(qid, sizeof(qid), "q%d", i);
		ASSERT_EQ(record_simple(sp, qid), TELESPOOL_OK);
	}
	ASSERT_EQ(count_events(path), 100);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM events WHERE state = "
				 "'sent'"),
		  0);
	char *first =
	    path_text(path, "SELECT query_id FROM events ORDER BY id LIMIT 1");
	ASSERT_STREQ(first, "q60");
	free(first);
	ASSERT_EQ(drops_of(path, "evicted_max_events"), 50);

	/* Ten more push out ten pending ones, which are counted. */
	for (int i = 160; i < 170; i++) {
		snprintf(qid, sizeof(qid), "q%d", i);
		ASSERT_EQ(record_simple(sp, qid), TELESPOOL_OK);
	}
	telespool_close(sp);
	ASSERT_EQ(count_events(path), 100);
	ASSERT_EQ(drops_of(path, "evicted_max_events"), 60);
}

static int64_t size_of(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}

/* The WAL's bound is as telespool.h documents it (test_api wal_bound holds
 * the file to it). */
static void test_wal_limit(void)
{
	ASSERT_EQ(telespool__wal_limit(0), 1024 * 1024);
	ASSERT_EQ(telespool__wal_limit(2 * 65536), 1024 * 1024);
	ASSERT_EQ(telespool__wal_limit(8 * 1024 * 1024), 4 * 1024 * 1024);
	ASSERT_EQ(telespool__wal_limit(TELESPOOL_DEFAULT_MAX_BYTES),
		  64 * 1024 * 1024);
	ASSERT_EQ(telespool__wal_limit(INT64_C(1) << 40), 64 * 1024 * 1024);
}

/*
 * A reader holding a transaction open keeps every checkpoint from resetting
 * the WAL: once record calls are refused (test_api wal_bound), the uploader
 * claims nothing either, since it would write leases.
 */
static void test_wal_bound_claim(void)
{
	char path[600], qid[32];
	path_in(path, sizeof(path), "walbound-claim.db");
	telespool_options o = TELESPOOL_OPTIONS_INIT;
	o.max_bytes = 8 * 1024 * 1024;
	telespool *sp = open_ok(path, &o);
	if (sp == NULL)
		return;
	ASSERT_EQ(record_simple(sp, "before"), TELESPOOL_OK);
	sqlite3 *reader = raw_open(path);
	ASSERT_EQ(raw_exec(reader, "BEGIN"), SQLITE_OK);
	ASSERT_EQ(raw_int(reader, "SELECT count(*) FROM spool"), 1);
	char *tb = traceback_text(1500);
	int rc = TELESPOOL_OK;
	for (int i = 0; i < 4000 && rc == TELESPOOL_OK; i++) {
		snprintf(qid, sizeof(qid), "w%d", i);
		rc = record_with_error(sp, qid, tb);
	}
	free(tb);
	ASSERT_EQ(rc, TELESPOOL_EFULL);
	ASSERT_CONTAINS(telespool_errmsg(sp), "wal_pinned");

	telespool__batch b;
	ASSERT_EQ(telespool__claim(sp, wall_ms(), 60000, 86400000, 1, 10, &b),
		  TELESPOOL_EBUSY);
	ASSERT_EQ(b.n, 0);
	ASSERT_CONTAINS(telespool_errmsg(sp), "reader");
	ASSERT_EQ(raw_exec(reader, "COMMIT"), SQLITE_OK);
	sqlite3_close(reader);
	telespool_close(sp);
}

/*
 * The uploader opens the spool with the default bounds, not LangBot's: it
 * must still keep the WAL within the bound of LangBot's max_bytes while a
 * reader pins it, however large the backlog it drains.
 */
static void test_wal_bound_uploader(void)
{
	char path[600], wal[700], qid[32];
	path_in(path, sizeof(path), "walbound-up.db");
	snprintf(wal, sizeof(wal), "%s-wal", path);
	telespool_options o = TELESPOOL_OPTIONS_INIT;
	o.max_bytes = 8 * 1024 * 1024;
	int64_t allowed =
	    o.max_bytes + telespool__wal_limit(o.max_bytes) + 1024 * 1024;
	telespool *host = open_ok(path, &o);
	if (host == NULL)
		return;
	/* Well inside max_bytes, so that nothing is evicted before the drain. */
	const int n_events = 1500;
	char *tb = traceback_text(1500);
	for (int i = 0; i < n_events; i++) {
		snprintf(qid, sizeof(qid), "b%d", i);
		ASSERT_EQ(record_with_error(host, qid, tb), TELESPOOL_OK);
	}
	free(tb);
	telespool_close(host);
	telespool *up = open_ok(path, NULL);
	if (up == NULL)
		return;
	int64_t run_id = 0;
	ASSERT_EQ(telespool__run_start(up, wall_ms(), &run_id), TELESPOOL_OK);
	sqlite3 *reader = raw_open(path);
	ASSERT_EQ(raw_exec(reader, "BEGIN"), SQLITE_OK);
	ASSERT_EQ(raw_int(reader, "SELECT count(*) FROM spool"), n_events);

	int64_t peak = 0, sent = 0;
	int rc = TELESPOOL_OK;
	while (rc == TELESPOOL_OK) {
		telespool__batch b;
		rc = telespool__claim(up, wall_ms(), 60000, 86400000, 1, 100,
				      &b);
		if (rc != TELESPOOL_OK || b.n == 0)
			break;
		telespool__outcome oc[100];
		memset(oc, 0, sizeof(oc));
		for (size_t i = 0; i < b.n; i++) {
			oc[i].id = b.items[i].id;
			oc[i].verdict = TELESPOOL__SENT;
		}
		rc = telespool__finish(up, oc, b.n, wall_ms());
		sent += (int64_t)b.n;
		telespool__batch_free(&b);
		int64_t foot = size_of(path) + size_of(wal);
		if (foot > peak)
			peak = foot;
	}
	ASSERT_EQ(rc, TELESPOOL_EBUSY);
	ASSERT_CONTAINS(telespool_errmsg(up), "reader");
	/* Nor does housekeeping (pruning every delivered row) go on. */
	telespool__expiry ex;
	ASSERT_EQ(telespool__expire(up, wall_ms(), 86400000, 0, &ex),
		  TELESPOOL_EFULL);
	int64_t foot = size_of(path) + size_of(wal);
	if (foot > peak)
		peak = foot;
	if (peak > allowed)
		TU_FAIL("file + WAL reached %lld bytes, bound %lld",
			(long long)peak, (long long)allowed);
	else
		tu_passed++;
	ASSERT_EQ(raw_exec(reader, "COMMIT"), SQLITE_OK);
	sqlite3_close(reader);
	telespool_close(up);
	printf("FAULT: a reader pins the WAL while the uploader drains %d "
	       "events of an 8 MiB spool: %lld sent, then it stopped; peak "
	       "file + WAL %lld KiB, bound %lld KiB\n",
	       n_events, (long long)sent, (long long)peak / 1024,
	       (long long)allowed / 1024);
}

/* ---- --make-sample ---- */

static int make_sample(const char *path)
{
	telespool_options o = TELESPOOL_OPTIONS_INIT;
	o.instance_id = "instance_7d9e3c2a-1b4f-4e8d-a6c5-0f1e2d3c4b5a";
	o.version = "v4.3.1";
	o.max_events = 40;
	telespool *sp = NULL;
	int rc = telespool_open(&sp, path, &o);
	if (rc != TELESPOOL_OK) {
		fprintf(stderr, "open %s: %s\n", path, telespool_open_errmsg());
		return 1;
	}
	static const char *const adapters[] = {
	    "TelegramAdapter", "AiocqhttpAdapter", "DiscordAdapter"};
	static const char *const models[] = {"gpt-4o", "deepseek-chat"};
	const char *plugins[] = {"WebSearch", "Memory"};
	char qid[32];
	for (int i = 0; i < 45 && rc == TELESPOOL_OK; i++) {
		telespool_query q = TELESPOOL_QUERY_INIT;
		snprintf(qid, sizeof(qid), "sample-q%02d", i);
		q.query_id = qid;
		q.adapter = adapters[i % 3];
		q.runner = i % 4 ? "local-agent" : "dify-service-api";
		q.model_name = models[i % 2];
		q.duration_ms = 100 + 37 * i;
		q.pipeline_plugins = plugins;
		q.n_pipeline_plugins = (size_t)(i % 3);
		if (i % 7 == 3)
			q.error = "Traceback (most recent call last):\n  File "
				  "\"pkg/runner.py\", line 88, in run\n"
				  "TimeoutError: upstream timed out\n";
		rc = telespool_record_query(sp, &q);
	}
	if (rc == TELESPOOL_OK)
		rc = telespool_record_heartbeat(
		    sp, "{\"bots\": 2, \"pipelines\": 1}");
	if (rc == TELESPOOL_OK)
		rc = telespool_record_survey_trigger(
		    sp, "first_bot_response_success");

	/* One upload run: 10 sent, 3 retried, 2 dead. */
	int64_t now = wall_ms(), run_id = 0;
	telespool__batch b = {NULL, 0};
	if (rc == TELESPOOL_OK)
		rc = telespool__run_start(sp, now, &run_id);
	if (rc == TELESPOOL_OK)
		rc = telespool__claim(sp, now, 60000, 86400000, 0, 15, &b);
	telespool__outcome oc[15];
	memset(oc, 0, sizeof(oc));
	for (size_t i = 0; i < b.n && i < 15; i++) {
		oc[i].id = b.items[i].id;
		if (i < 10) {
			oc[i].verdict = TELESPOOL__SENT;
		} else if (i < 13) {
			oc[i].verdict = TELESPOOL__RETRY;
			oc[i].next_attempt_ms = now + 60000;
			oc[i].last_error = "HTTP 503 from /api/v1/telemetry";
		} else {
			oc[i].verdict = TELESPOOL__DEAD;
			oc[i].last_error =
			    "HTTP 400 from /api/v1/telemetry: bad event";
			oc[i].drop_reason = "rejected";
		}
	}
	if (rc == TELESPOOL_OK)
		rc = telespool__finish(sp, oc, b.n, now);
	telespool__batch_free(&b);
	telespool__run r = {
	    10, 3, 2, 0, "retry_later", "sent 10, 3 to retry, 2 rejected"};
	if (rc == TELESPOOL_OK)
		rc = telespool__run_end(sp, run_id, now + 500, &r);
	if (rc != TELESPOOL_OK)
		fprintf(stderr, "sample: %s: %s\n", telespool_strerror(rc),
			telespool_errmsg(sp));
	telespool_close(sp);
	return rc == TELESPOOL_OK ? 0 : 1;
}

/* ---- main ---- */

static const struct tu_test tests[] = {
    {"open_defaults", test_open_defaults},
    {"durability", test_durability},
    {"migrations_embedded", test_migrations_embedded},
    {"migrate_stale_schema", test_migrate_stale_schema},
    {"purge_moved_aside_copy", test_purge_moved_aside_copy},
    {"max_events_after_upload", test_max_events_after_upload},
    {"wal_limit", test_wal_limit},
    {"wal_bound_claim", test_wal_bound_claim},
    {"wal_bound_uploader", test_wal_bound_uploader},
};

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--make-sample") == 0)
		return make_sample(argv[2]);
	make_temp_dir(g_dir, sizeof(g_dir), "test_spool_internal");
	return tu_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv,
		       g_dir);
}
