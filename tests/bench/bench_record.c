/*
 * bench_record.c - the record path against the physical limit.
 *
 * One mode per run; each prints one JSON line on stdout.  tests/bench/bench.py
 * runs the modes in alternating rounds (so that every ratio is measured side
 * by side on a shared, noisy machine) and prints the tables.
 *
 *   raw       the physical limit: a table (id INTEGER PRIMARY KEY, body
 *             TEXT), WAL, synchronous=NORMAL, one prepared INSERT per
 *             BEGIN IMMEDIATE ... COMMIT, inserting the exact bodies
 *             telespool stores for the workload (built beforehand).
 *   row       the same, into a table with the columns of `spool` (no
 *             indexes, no triggers, no auto_vacuum): the cost of the row
 *             telespool stores.
 *   schema    the same row, into the spool's real schema (every migration
 *             in --migrations DIR, the library's pragmas): what SQLite
 *             alone costs telespool.
 *   telespool telespool_record_query() for each workload event (on --db,
 *             which may already hold a large spool).
 *   contend   --threads T threads record (each with its own handle, or one
 *             shared handle with --shared) at --rate events/s each (0: as
 *             fast as they can) for --seconds; reports latency percentiles
 *             and every error (busy errors counted apart).
 *
 * Options: --workload FILE (from workload.py)  --db PATH  --n N
 *          --migrations DIR (schema mode)  --max-events N  --max-bytes N
 *          --durability normal|full (telespool and contend modes)
 *          --threads T --rate R --seconds S --shared (contend mode)
 *
 * Build without CMake, against a build tree's library (B = build dir):
 *   cc -O2 -o bench_record tests/bench/bench_record.c -Ilib/include -I$B/lib/include \
 *      -L$B/lib -Wl,-rpath,$B/lib -ltelespool -lsqlite3 -lcjson -lpthread
 */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <errno.h>
#include <glob.h>
#include <stdarg.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "telespool.h"

struct event {
	char *query_id, *adapter, *runner, *model_name, *error;
	int64_t duration_ms;
	char **plugins;
	size_t n_plugins;
};

/* A row as telespool stored it (for the raw baselines). */
struct row {
	char *cols[4]; /* event_type, body, created_at, size */
};

static struct event *events;
static size_t n_events;
static char *instance_id, *version;

static struct {
	const char *mode, *workload, *db, *migrations;
	long n, threads, seconds;
	double rate;
	int shared;
	int64_t max_events, max_bytes;
	int durability;
} opt = {NULL, NULL, NULL, NULL, 20000, 8, 10, 250.0, 0, 0, 0, 0};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("bench_record: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		die("cannot open %s: %s", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	long len = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)len + 1);
	if (buf == NULL || fread(buf, 1, (size_t)len, f) != (size_t)len)
		die("cannot read %s", path);
	buf[len] = '\0';
	fclose(f);
	return buf;
}

static char *str_or_null(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
}

static void load_workload(const char *path)
{
	char *text = slurp(path);
	cJSON *root = cJSON_Parse(text);
	free(text);
	if (root == NULL)
		die("%s is not JSON", path);
	instance_id = str_or_null(root, "instance_id");
	version = str_or_null(root, "version");
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "events");
	n_events = (size_t)cJSON_GetArraySize(list);
	if (n_events == 0)
		die("%s has no events", path);
	events = calloc(n_events, sizeof(*events));
	size_t i = 0;
	const cJSON *e;
	cJSON_ArrayForEach(e, list)
	{
		struct event *ev = &events[i++];
		ev->query_id = str_or_null(e, "query_id");
		ev->adapter = str_or_null(e, "adapter");
		ev->runner = str_or_null(e, "runner");
		ev->model_name = str_or_null(e, "model_name");
		ev->error = str_or_null(e, "error");
		ev->duration_ms = (int64_t)cJSON_GetNumberValue(
		    cJSON_GetObjectItemCaseSensitive(e, "duration_ms"));
		const cJSON *pl =
		    cJSON_GetObjectItemCaseSensitive(e, "pipeline_plugins");
		ev->n_plugins = (size_t)cJSON_GetArraySize(pl);
		ev->plugins = calloc(ev->n_plugins + 1, sizeof(char *));
		size_t j = 0;
		const cJSON *p;
		cJSON_ArrayForEach(p, pl)
		{
			ev->plugins[j++] = strdup(p->valuestring);
		}
	}
	cJSON_Delete(root);
}

static telespool *open_spool(const char *path)
{
	telespool_options o = TELESPOOL_OPTIONS_INIT;
	telespool *sp = NULL;
	o.instance_id = instance_id;
	o.version = version;
	o.max_events = opt.max_events;
	o.max_bytes = opt.max_bytes;
	o.durability = opt.durability;
	int rc = telespool_open(&sp, path, &o);
	if (rc != TELESPOOL_OK)
		die("telespool_open %s: %s", path, telespool_open_errmsg());
	return sp;
}

static int record(telespool *sp, size_t i)
{
	const struct event *ev = &events[i % n_events];
	telespool_query q = TELESPOOL_QUERY_INIT;
	q.query_id = ev->query_id;
	q.adapter = ev->adapter;
	q.runner = ev->runner;
	q.model_name = ev->model_name;
	q.duration_ms = ev->duration_ms;
	q.pipeline_plugins = (const char *const *)ev->plugins;
	q.n_pipeline_plugins = ev->n_plugins;
	q.error = ev->error;
	return telespool_record_query(sp, &q);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double pct(const double *sorted, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t k = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
	return sorted[k < n ? k : n - 1];
}

/* The columns telespool stores besides the ones it generates. */
static const char *const row_cols = "event_type, body, created_at, size";
#define ROW_COLS 4

/* Records the workload once into a scratch spool and reads back the rows
 * exactly as stored: the raw baselines insert these. */
static struct row *template_rows(void)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s.tpl", opt.db);
	unlink(path);
	telespool *sp = open_spool(path);
	for (size_t i = 0; i < n_events; i++)
		if (record(sp, i) != TELESPOOL_OK)
			die("record: %s", telespool_errmsg(sp));
	telespool_close(sp);

	sqlite3 *db;
	sqlite3_stmt *st;
	char sql[512];
	if (sqlite3_open(path, &db) != SQLITE_OK)
		die("open %s", path);
	snprintf(sql, sizeof(sql), "SELECT %s FROM spool ORDER BY id",
		 row_cols);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		die("%s", sqlite3_errmsg(db));
	struct row *rows = calloc(n_events, sizeof(*rows));
	size_t n = 0;
	while (sqlite3_step(st) == SQLITE_ROW && n < n_events) {
		for (int c = 0; c < ROW_COLS; c++) {
			const char *t =
			    (const char *)sqlite3_column_text(st, c);
			rows[n].cols[c] = t ? strdup(t) : NULL;
		}
		n++;
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	char side[4300];
	unlink(path);
	snprintf(side, sizeof(side), "%s-wal", path);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", path);
	unlink(side);
	if (n != n_events)
		die("template: %zu rows, expected %zu", n, n_events);
	return rows;
}

static void exec(sqlite3 *db, const char *sql)
{
	char *err = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
		die("%s: %s", sql, err ? err : "?");
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t xorshift(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static void fake_uuid(char out[37])
{
	uint64_t a = xorshift(), b = xorshift();
	snprintf(out, 37, "%08x-%04x-4%03x-%04x-%012llx", (unsigned)(a >> 32),
		 (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xfff,
		 (unsigned)(0x8000 | ((b >> 48) & 0x3fff)),
		 (unsigned long long)(b & 0xffffffffffffULL));
}

static void print_result(const char *mode, long n, double wall, double cpu,
			 double *lat, size_t nlat)
{
	qsort(lat, nlat, sizeof(double), cmp_double);
	printf(
	    "{\"mode\": \"%s\", \"n\": %ld, \"wall_s\": %.6f, \"rate\": %.1f,"
	    " \"cpu_us\": %.3f, \"p50_us\": %.1f, \"p99_us\": %.1f,"
	    " \"max_us\": %.1f}\n",
	    mode, n, wall, (double)n / wall, cpu / (double)n * 1e6,
	    pct(lat, nlat, 50) * 1e6, pct(lat, nlat, 99) * 1e6,
	    nlat ? lat[nlat - 1] * 1e6 : 0.0);
}

/* Applies every migration in opt.migrations, in order, in one transaction. */
static void apply_migrations(sqlite3 *db)
{
	char pattern[4200];
	glob_t g;
	snprintf(pattern, sizeof(pattern), "%s/[0-9][0-9][0-9][0-9]_*.sql",
		 opt.migrations);
	if (glob(pattern, 0, NULL, &g) != 0 || g.gl_pathc == 0)
		die("no migrations in %s", opt.migrations);
	exec(db, "BEGIN");
	for (size_t i = 0; i < g.gl_pathc; i++) { /* glob sorts them */
		char *sql = slurp(g.gl_pathv[i]);
		exec(db, sql);
		free(sql);
	}
	exec(db, "COMMIT");
	globfree(&g);
}

/* raw, row and schema: one prepared INSERT per BEGIN IMMEDIATE/COMMIT. */
static void run_raw(const char *mode)
{
	struct row *rows = template_rows();
	sqlite3 *db;
	sqlite3_stmt *ins, *begin, *commit;
	int full = strcmp(mode, "raw") != 0;

	unlink(opt.db);
	if (sqlite3_open(opt.db, &db) != SQLITE_OK)
		die("open %s", opt.db);
	if (strcmp(mode, "schema") == 0) {
		if (opt.migrations == NULL)
			die("schema mode needs --migrations DIR");
		exec(db, "PRAGMA auto_vacuum = NONE");
		exec(db, "PRAGMA journal_mode = WAL");
		exec(db, "PRAGMA synchronous = NORMAL;"
			 " PRAGMA journal_size_limit = 16777216;"
			 " PRAGMA wal_autocheckpoint = 4000");
		apply_migrations(db);
	} else {
		exec(db, "PRAGMA journal_mode = WAL");
		exec(db, "PRAGMA synchronous = NORMAL");
		if (full)
			exec(db, "CREATE TABLE spool (id INTEGER PRIMARY KEY,"
				 " state TEXT NOT NULL DEFAULT 'pending',"
				 " attempts INTEGER NOT NULL DEFAULT 0,"
				 " next_attempt_at TEXT NOT NULL,"
				 " lease_until TEXT, created_at TEXT NOT NULL,"
				 " sent_at TEXT, size INTEGER NOT NULL,"
				 " event_id TEXT NOT NULL,"
				 " event_type TEXT NOT NULL, last_error TEXT,"
				 " body TEXT NOT NULL)");
		else
			exec(db, "CREATE TABLE events (id INTEGER PRIMARY KEY,"
				 " body TEXT NOT NULL)");
	}
	const char *sql =
	    full ? "INSERT INTO spool (next_attempt_at, created_at, size,"
		   " event_id, event_type, body) VALUES (?1, ?1, ?2, ?3, ?4,"
		   " ?5)"
		 : "INSERT INTO events (body) VALUES (?1)";
	if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &ins,
			       NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, NULL) !=
		SQLITE_OK ||
	    sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL) != SQLITE_OK)
		die("prepare: %s", sqlite3_errmsg(db));

	double *lat = malloc((size_t)opt.n * sizeof(double));
	char uuid[37];
	double c0 = cpu_s(), t0 = now_s();
	for (long i = 0; i < opt.n; i++) {
		const struct row *r = &rows[(size_t)i % n_events];
		double s = now_s();
		sqlite3_step(begin);
		sqlite3_reset(begin);
		if (full) {
			fake_uuid(uuid);
			sqlite3_bind_text(ins, 1, r->cols[2], -1,
					  SQLITE_STATIC);
			sqlite3_bind_int64(ins, 2, atoll(r->cols[3]));
			sqlite3_bind_text(ins, 3, uuid, -1, SQLITE_STATIC);
			sqlite3_bind_text(ins, 4, r->cols[0], -1,
					  SQLITE_STATIC);
			sqlite3_bind_text(ins, 5, r->cols[1], -1,
					  SQLITE_STATIC);
		} else {
			sqlite3_bind_text(ins, 1, r->cols[1], -1,
					  SQLITE_STATIC);
		}
		if (sqlite3_step(ins) != SQLITE_DONE)
			die("insert: %s", sqlite3_errmsg(db));
		sqlite3_reset(ins);
		if (sqlite3_step(commit) != SQLITE_DONE)
			die("commit: %s", sqlite3_errmsg(db));
		sqlite3_reset(commit);
		lat[i] = now_s() - s;
	}
	double wall = now_s() - t0, cpu = cpu_s() - c0;
	sqlite3_finalize(ins);
	sqlite3_finalize(begin);
	sqlite3_finalize(commit);
	sqlite3_close(db);
	print_result(mode, opt.n, wall, cpu, lat, (size_t)opt.n);
	free(lat);
}

static void run_telespool(void)
{
	telespool *sp = open_spool(opt.db);
	double *lat = malloc((size_t)opt.n * sizeof(double));
	double c0 = cpu_s(), t0 = now_s();
	for (long i = 0; i < opt.n; i++) {
		double s = now_s();
		int rc = record(sp, (size_t)i);
		lat[i] = now_s() - s;
		if (rc != TELESPOOL_OK)
			die("record: %s: %s", telespool_strerror(rc),
			    telespool_errmsg(sp));
	}
	double wall = now_s() - t0, cpu = cpu_s() - c0;
	telespool_close(sp);
	print_result("telespool", opt.n, wall, cpu, lat, (size_t)opt.n);
	free(lat);
}

/* ---- contend: many recorders at once, paced, latency and errors ---- */

struct worker {
	pthread_t th;
	int idx;
	telespool *sp;
	double *lat;
	double *at; /* when each call started, from the common start */
	size_t n, cap;
	long ok, busy, other;
	char last_err[256];
};

static double start_at;
static telespool *shared_sp;

static void sleep_until(double t)
{
	struct timespec ts;
	ts.tv_sec = (time_t)t;
	ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
	       EINTR)
		;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	telespool *sp = opt.shared ? shared_sp : w->sp;
	double end = start_at + (double)opt.seconds;
	double period = opt.rate > 0 ? 1.0 / opt.rate : 0;
	/* Spread the threads' schedules over one period. */
	double next = start_at + period * w->idx / (double)opt.threads;
	size_t i = (size_t)w->idx * 7919;

	sleep_until(start_at);
	for (;;) {
		if (period > 0) {
			sleep_until(next);
			next += period;
		}
		double s = now_s();
		if (s >= end)
			break;
		int rc = record(sp, i++);
		double e = now_s();
		if (w->n == w->cap) {
			w->cap = w->cap ? w->cap * 2 : 4096;
			w->lat = realloc(w->lat, w->cap * sizeof(double));
			w->at = realloc(w->at, w->cap * sizeof(double));
		}
		w->lat[w->n] = e - s;
		w->at[w->n] = s - start_at;
		w->n++;
		if (rc == TELESPOOL_OK) {
			w->ok++;
		} else {
			if (rc == TELESPOOL_EBUSY)
				w->busy++;
			else
				w->other++;
			snprintf(w->last_err, sizeof(w->last_err), "%s: %s",
				 telespool_strerror(rc),
				 opt.shared ? "" : telespool_errmsg(sp));
		}
	}
	return NULL;
}

static void run_contend(void)
{
	struct worker *w = calloc((size_t)opt.threads, sizeof(*w));
	if (opt.shared)
		shared_sp = open_spool(opt.db);
	for (long t = 0; t < opt.threads; t++) {
		w[t].idx = (int)t;
		if (!opt.shared)
			w[t].sp = open_spool(opt.db);
	}
	start_at = now_s() + 0.05;
	double c0 = cpu_s();
	for (long t = 0; t < opt.threads; t++)
		pthread_create(&w[t].th, NULL, worker_main, &w[t]);
	/* Tell the driver the window has begun (it starts the uploader). */
	fprintf(stderr, "bench_record: contend started\n");
	for (long t = 0; t < opt.threads; t++)
		pthread_join(w[t].th, NULL);
	double cpu = cpu_s() - c0;

	size_t total = 0;
	long ok = 0, busy = 0, other = 0;
	for (long t = 0; t < opt.threads; t++) {
		total += w[t].n;
		ok += w[t].ok;
		busy += w[t].busy;
		other += w[t].other;
	}
	double *all = malloc((total ? total : 1) * sizeof(double));
	size_t k = 0, over5 = 0, over50 = 0;
	double worst = 0, worst_at = 0;
	const char *err = "";
	for (long t = 0; t < opt.threads; t++) {
		for (size_t i = 0; i < w[t].n; i++) {
			double l = w[t].lat[i];
			all[k++] = l;
			over5 += l > 0.005;
			over50 += l > 0.050;
			if (l > worst) {
				worst = l;
				worst_at = w[t].at[i];
			}
		}
		if (w[t].last_err[0])
			err = w[t].last_err;
	}
	qsort(all, total, sizeof(double), cmp_double);
	printf(
	    "{\"mode\": \"contend\", \"threads\": %ld, \"shared\": %d,"
	    " \"rate_per_thread\": %.1f, \"seconds\": %ld, \"calls\": %zu,"
	    " \"ok\": %ld, \"busy\": %ld, \"other_errors\": %ld,"
	    " \"achieved_rate\": %.1f, \"cpu_us\": %.2f,"
	    " \"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f,"
	    " \"p999_us\": %.1f, \"max_us\": %.1f, \"max_at_s\": %.3f,"
	    " \"over_5ms\": %zu, \"over_50ms\": %zu, \"last_error\": \"%s\"}\n",
	    opt.threads, opt.shared, opt.rate, opt.seconds, total, ok, busy,
	    other, (double)total / (double)opt.seconds,
	    total ? cpu / (double)total * 1e6 : 0.0, pct(all, total, 50) * 1e6,
	    pct(all, total, 90) * 1e6, pct(all, total, 99) * 1e6,
	    pct(all, total, 99.9) * 1e6, worst * 1e6, worst_at, over5, over50,
	    err);
	for (long t = 0; t < opt.threads; t++) {
		telespool_close(w[t].sp);
		free(w[t].lat);
		free(w[t].at);
	}
	telespool_close(shared_sp);
	free(all);
	free(w);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		die("usage: bench_record raw|row|schema|telespool|contend "
		    "--workload FILE --db PATH [options]");
	opt.mode = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--shared") == 0) {
			opt.shared = 1;
			continue;
		}
		if (v == NULL)
			die("%s needs a value", a);
		i++;
		if (strcmp(a, "--workload") == 0)
			opt.workload = v;
		else if (strcmp(a, "--db") == 0)
			opt.db = v;
		else if (strcmp(a, "--migrations") == 0)
			opt.migrations = v;
		else if (strcmp(a, "--n") == 0)
			opt.n = atol(v);
		else if (strcmp(a, "--threads") == 0)
			opt.threads = atol(v);
		else if (strcmp(a, "--seconds") == 0)
			opt.seconds = atol(v);
		else if (strcmp(a, "--rate") == 0)
			opt.rate = atof(v);
		else if (strcmp(a, "--max-events") == 0)
			opt.max_events = atoll(v);
		else if (strcmp(a, "--max-bytes") == 0)
			opt.max_bytes = atoll(v);
		else if (strcmp(a, "--durability") == 0)
			opt.durability = strcmp(v, "full") == 0
					     ? TELESPOOL_DURABILITY_FULL
					     : TELESPOOL_DURABILITY_NORMAL;
		else
			die("unknown option %s", a);
	}
	if (opt.workload == NULL || opt.db == NULL)
		die("--workload and --db are required");
	if (opt.n <= 0 || opt.threads <= 0 || opt.seconds <= 0)
		die("--n, --threads and --seconds must be positive");
	load_workload(opt.workload);

	if (strcmp(opt.mode, "raw") == 0 || strcmp(opt.mode, "row") == 0 ||
	    strcmp(opt.mode, "schema") == 0)
		run_raw(opt.mode);
	else if (strcmp(opt.mode, "telespool") == 0)
		run_telespool();
	else if (strcmp(opt.mode, "contend") == 0)
		run_contend();
	else
		die("unknown mode %s", opt.mode);
	return 0;
}
