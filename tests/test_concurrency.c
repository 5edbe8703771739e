/*
 * test_concurrency.c - many writers on one spool file: processes and threads
 * with a handle each while a reader keeps a read transaction open the whole
 * time, and threads sharing one handle (documented as thread-safe).  Every
 * event recorded must be there exactly once, with no error.
 *
 * "test_concurrency NAME..." runs only the named tests.
 */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "telespool.h"
#include "testutil.h"

enum { PROCS = 2, THREADS = 2, SHARED_THREADS = 8 };

/* Events per writer; a fifth of that under valgrind, which runs threads one
 * at a time. */
static int per_thread = 2500, shared_per_thread = 1000;

static char g_dir[512];

struct writer {
	const char *path;
	telespool *shared; /* NULL: open a handle of its own */
	int proc, thread, n;
	int64_t max_bytes; /* 0: the default */
	const char *error; /* the traceback recorded, or NULL */
	int errors;
	char first_error[300];
};

static void *write_events(void *arg)
{
	struct writer *w = arg;
	telespool *sp = w->shared;
	char qid[64];
	const char *plugins[] = {"WebSearch"};

	if (sp == NULL) {
		/* A long busy timeout: this test is about losing nothing.  With
		 * the default 250 ms a writer starved by the others on a loaded
		 * machine gets TELESPOOL_EBUSY, as documented. */
		telespool_options o = TELESPOOL_OPTIONS_INIT;
		o.busy_timeout_ms = 10000;
		o.max_bytes = w->max_bytes;
		int rc = telespool_open(&sp, w->path, &o);
		if (rc != TELESPOOL_OK) {
			w->errors = w->n;
			snprintf(w->first_error, sizeof(w->first_error),
				 "open: %s", telespool_open_errmsg());
			return NULL;
		}
	}
	for (int i = 0; i < w->n; i++) {
		telespool_query q = TELESPOOL_QUERY_INIT;
		snprintf(qid, sizeof(qid), "p%d-t%d-%d", w->proc, w->thread, i);
		q.query_id = qid;
		q.adapter = "TelegramAdapter";
		q.runner = "local-agent";
		q.model_name = "gpt-4o";
		q.duration_ms = i;
		q.pipeline_plugins = plugins;
		q.n_pipeline_plugins = 1;
		q.error = w->error;
		int rc = telespool_record_query(sp, &q);
		if (rc != TELESPOOL_OK && w->errors++ == 0)
			snprintf(w->first_error, sizeof(w->first_error),
				 "%s: %s", telespool_strerror(rc),
				 w->shared ? "(shared handle)"
					   : telespool_errmsg(sp));
	}
	if (w->shared == NULL)
		telespool_close(sp);
	return NULL;
}

/* One writer process: THREADS threads, a handle each.  Exit status: the
 * number of failed records, capped. */
static int writer_process(const char *path, int proc)
{
	struct writer w[THREADS];
	pthread_t tid[THREADS];
	int errors = 0;

	for (int t = 0; t < THREADS; t++) {
		memset(&w[t], 0, sizeof(w[t]));
		w[t].path = path;
		w[t].proc = proc;
		w[t].thread = t;
		w[t].n = per_thread;
		if (pthread_create(&tid[t], NULL, write_events, &w[t]) != 0) {
			fprintf(stderr, "pthread_create failed\n");
			return 100;
		}
	}
	for (int t = 0; t < THREADS; t++) {
		pthread_join(tid[t], NULL);
		errors += w[t].errors;
		if (w[t].errors)
			fprintf(stderr,
				"process %d thread %d: %d errors, first: %s\n",
				proc, t, w[t].errors, w[t].first_error);
	}
	return errors > 99 ? 99 : errors;
}

static void test_processes_and_reader(void)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/procs.db", g_dir);
	telespool *sp = NULL;
	ASSERT_EQ(telespool_open(&sp, path, NULL), TELESPOOL_OK);
	telespool_close(sp);

	/* The reader's snapshot stays open until every writer is done. */
	sqlite3 *reader = NULL;
	ASSERT_EQ(sqlite3_open_v2(path, &reader, SQLITE_OPEN_READONLY, NULL),
		  SQLITE_OK);
	sqlite3_stmt *st = NULL;
	ASSERT_EQ(sqlite3_exec(reader, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
	ASSERT_EQ(sqlite3_prepare_v2(reader, "SELECT count(*) FROM events", -1,
				     &st, NULL),
		  SQLITE_OK);
	ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
	ASSERT_EQ(sqlite3_column_int(st, 0), 0);
	sqlite3_reset(st);

	fflush(NULL);
	pid_t pids[PROCS];
	for (int p = 0; p < PROCS; p++) {
		pids[p] = fork();
		if (pids[p] == 0)
			_exit(writer_process(path, p));
	}
	for (int p = 0; p < PROCS; p++) {
		int status = 0;
		waitpid(pids[p], &status, 0);
		ASSERT_TRUE(WIFEXITED(status));
		ASSERT_EQ(WEXITSTATUS(status), 0);
	}
	/* Still the old snapshot. */
	ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
	ASSERT_EQ(sqlite3_column_int(st, 0), 0);
	sqlite3_finalize(st);
	ASSERT_EQ(sqlite3_exec(reader, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(reader);

	int64_t total = PROCS * THREADS * per_thread;
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM events"), total);
	ASSERT_EQ(path_int(path, "SELECT count(DISTINCT event_id) FROM events"),
		  total);
	ASSERT_EQ(path_int(path, "SELECT count(DISTINCT query_id) FROM events"),
		  total);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM drops"), 0);
	/* Each writer's events are stored in the order it recorded them. */
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM (SELECT duration_ms - "
				 "lag(duration_ms) OVER (PARTITION BY "
				 "substr(query_id, 1, 5) ORDER BY id) AS step "
				 "FROM events) WHERE step <> 1"),
		  0);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM pragma_integrity_check "
				 "WHERE integrity_check <> 'ok'"),
		  0);
}

static void test_shared_handle(void)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/shared.db", g_dir);
	telespool *sp = NULL;
	ASSERT_EQ(telespool_open(&sp, path, NULL), TELESPOOL_OK);
	if (sp == NULL)
		return;
	struct writer w[SHARED_THREADS];
	pthread_t tid[SHARED_THREADS];
	for (int t = 0; t < SHARED_THREADS; t++) {
		memset(&w[t], 0, sizeof(w[t]));
		w[t].path = path;
		w[t].shared = sp;
		w[t].thread = t;
		w[t].n = shared_per_thread;
		ASSERT_EQ(pthread_create(&tid[t], NULL, write_events, &w[t]),
			  0);
	}
	for (int t = 0; t < SHARED_THREADS; t++) {
		pthread_join(tid[t], NULL);
		ASSERT_EQ(w[t].errors, 0);
		if (w[t].errors)
			fprintf(stderr, "thread %d: %s\n", t, w[t].first_error);
	}
	telespool_close(sp);
	int64_t total = SHARED_THREADS * shared_per_thread;
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM events"), total);
	ASSERT_EQ(path_int(path, "SELECT count(DISTINCT event_id) FROM events"),
		  total);
	ASSERT_EQ(path_int(path, "SELECT count(DISTINCT query_id) FROM events"),
		  total);
}

/*
 * Threads writing flat out, no reader at all: some connection is always
 * mid-transaction, so a PASSIVE checkpoint never copies the whole log and
 * the log never starts over (checkpoint starvation).  With a small spool
 * the WAL's bound is 2 MiB: the writers must still store every event, not
 * refuse them as if a reader pinned the log.
 */
static void test_threads_small_bound(void)
{
	char path[600], tb[1200];
	pthread_t th[4];
	struct writer w[4];
	int64_t total = 0;

	snprintf(path, sizeof(path), "%s/small-bound.db", g_dir);
	memset(tb, 0, sizeof(tb));
	for (size_t i = 0; i + 1 < sizeof(tb); i++)
		tb[i] = (char)('a' + i % 26);
	for (int t = 0; t < 4; t++) {
		w[t] = (struct writer){.path = path,
				       .thread = t,
				       .n = per_thread / 2,
				       .max_bytes = 4 * 1024 * 1024,
				       .error = tb};
		ASSERT_EQ(pthread_create(&th[t], NULL, write_events, &w[t]), 0);
	}
	for (int t = 0; t < 4; t++) {
		pthread_join(th[t], NULL);
		if (w[t].errors)
			TU_FAIL("thread %d: %d of %d failed, first: %s", t,
				w[t].errors, w[t].n, w[t].first_error);
		else
			tu_passed++;
		total += w[t].n - w[t].errors;
	}
	/* Stored, or evicted for max_bytes (counted): none refused. */
	ASSERT_EQ(path_int(path, "SELECT (SELECT count(*) FROM events) +"
				 " (SELECT coalesce(sum(count), 0) FROM drops"
				 "  WHERE reason = 'evicted_max_bytes')"),
		  total);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM drops"
				 " WHERE reason = 'wal_pinned'"),
		  0);
}

static const struct tu_test tests[] = {
    {"processes_and_reader", test_processes_and_reader},
    {"shared_handle", test_shared_handle},
    {"threads_small_bound", test_threads_small_bound},
};

int main(int argc, char **argv)
{
	if (getenv("TELESPOOL_UNDER_VALGRIND")) {
		per_thread /= 5;
		shared_per_thread /= 5;
	}
	make_temp_dir(g_dir, sizeof(g_dir), "test_concurrency");
	return tu_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv,
		       g_dir);
}
