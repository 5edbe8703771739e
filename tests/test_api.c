/*
 * test_api.c - the public API of libtelespool against real files, as a user
 * sees it: every path and return code of open, the record calls,
 * pending_survey, errmsg and strerror; the exact JSON bodies and the row
 * behind each; migrations and files that are not spools; lock, spool and
 * disk bounds.
 *
 * Through the installed header only: it includes telespool.h and nothing
 * of lib/src, links the shared libtelespool (which exports telespool_*
 * alone), and observes what the library did through the file itself, on a
 * plain sqlite3 connection (the schema is public: README "Inspecting the
 * spool with sqlite3").  tests/install/check_install.sh builds it again
 * against an installed tree.  What can only be seen inside the library is
 * in test_spool_internal.c.
 *
 * "test_api NAME..." runs only the named tests.  TELESPOOL_MIGRATIONS_DIR
 * (a compile definition) is the source tree's migrations/ directory, the
 * schema's history.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "telespool.h"
#include "spool_cases.h"
#include "testutil.h"

#ifndef TELESPOOL_MIGRATIONS_DIR
#error "TELESPOOL_MIGRATIONS_DIR: the source tree's migrations/ directory"
#endif

/* ---- scaffolding: a private directory, raw SQLite, raw files ---- */

static int exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static int write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (f == NULL)
		return -1;
	size_t w = fwrite(data, 1, len, f);
	return fclose(f) == 0 && w == len ? 0 : -1;
}

/* 1 when both files exist with the same bytes. */
static int same_bytes(const unsigned char *a, size_t alen, const char *path)
{
	size_t blen;
	unsigned char *b = slurp_file(path, &blen);
	int same = b != NULL && alen == blen && memcmp(a, b, alen) == 0;
	free(b);
	return same;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* out = ms since the epoch as 'YYYY-MM-DDTHH:MM:SS.sssZ', the form of every
 * time column (README "Inspecting the spool with sqlite3"). */
static void iso_ms(int64_t ms, char out[32])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char s[24];
	gmtime_r(&t, &tm);
	strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, 32, "%s.%03dZ", s, (int)(ms % 1000));
}

/* The schema's history, from the migration files themselves: the version
 * of the newest (0003_x.sql: 3), or, with want > 0, the malloc'd text of
 * migration number want (NULL if there is none). */
static int migrations_scan(int want, char **sql)
{
	DIR *d = opendir(TELESPOOL_MIGRATIONS_DIR);
	struct dirent *e;
	int newest = 0;
	while (d && (e = readdir(d)) != NULL) {
		int v = 0, n = 0;
		size_t len = strlen(e->d_name);
		if (sscanf(e->d_name, "%4d_%n", &v, &n) != 1 || n != 5 ||
		    len < 4 || strcmp(e->d_name + len - 4, ".sql") != 0)
			continue;
		if (v > newest)
			newest = v;
		if (v == want && sql) {
			char p[1024];
			size_t flen;
			snprintf(p, sizeof(p), "%s/%s",
				 TELESPOOL_MIGRATIONS_DIR, e->d_name);
			unsigned char *text = slurp_file(p, &flen);
			char *z = text ? realloc(text, flen + 1) : NULL;
			if (z)
				z[flen] = '\0';
			else
				free(text);
			*sql = z;
		}
	}
	if (d)
		closedir(d);
	return newest;
}

static int newest_migration(void)
{
	int newest = migrations_scan(0, NULL);
	if (newest < 1)
		TU_FAIL("no migrations in %s", TELESPOOL_MIGRATIONS_DIR);
	return newest;
}

/* The WAL's bound for a max_bytes, as telespool.h documents it:
 * max_bytes / 2 within 1..64 MiB. */
static int64_t wal_bound_of(int64_t max_bytes)
{
	int64_t w = max_bytes / 2;
	if (w < 1024 * 1024)
		w = 1024 * 1024;
	if (w > 64 * 1024 * 1024)
		w = 64 * 1024 * 1024;
	return w;
}

/* Parses 'YYYY-MM-DDTHH:MM:SS.sssZ' strictly; -1 if it is not that. */
static int64_t parse_iso(const char *s)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
	if (s == NULL || strlen(s) != sizeof(shape) - 1)
		return -1;
	for (size_t i = 0; shape[i]; i++) {
		if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9')
				    : s[i] != shape[i])
			return -1;
	}
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	int ms;
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3d", &tm.tm_year, &tm.tm_mon,
		   &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	time_t t = timegm(&tm);
	return (int64_t)t * 1000 + ms;
}

static void assert_recent_iso(const char *s, int64_t before, int64_t after)
{
	int64_t t = parse_iso(s);
	if (t < 0) {
		TU_FAIL("not an ISO UTC time with ms: \"%s\"",
			s ? s : "(null)");
		return;
	}
	ASSERT_TRUE(t >= before - 2 && t <= after + 2);
}

static int is_uuid4(const char *s)
{
	if (s == NULL || strlen(s) != 36)
		return 0;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return 0;
		} else if (!((s[i] >= '0' && s[i] <= '9') ||
			     (s[i] >= 'a' && s[i] <= 'f'))) {
			return 0;
		}
	}
	return s[14] == '4' && strchr("89ab", s[19]) != NULL;
}

/* Asserts that obj's members have exactly these names, in this order. */
static void assert_keys(const cJSON *obj, const char *const *keys)
{
	const cJSON *c = obj ? obj->child : NULL;
	size_t i = 0;
	for (; keys[i] != NULL; i++, c = c->next) {
		if (c == NULL) {
			TU_FAIL("body ends before key \"%s\"", keys[i]);
			return;
		}
		ASSERT_STREQ(c->string, keys[i]);
	}
	if (c != NULL)
		TU_FAIL("body has an extra key \"%s\"", c->string);
	else
		tu_passed++;
}

static void assert_str_member(const cJSON *obj, const char *key,
			      const char *want)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!cJSON_IsString(v)) {
		TU_FAIL("member \"%s\" is not a string", key);
		return;
	}
	ASSERT_STREQ(v->valuestring, want);
}

static void assert_int_member(const cJSON *obj, const char *key, double want)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!cJSON_IsNumber(v)) {
		TU_FAIL("member \"%s\" is not a number", key);
		return;
	}
	ASSERT_TRUE(v->valuedouble == want);
}

/* The body of the newest event, parsed. */
static cJSON *last_body(const char *path)
{
	char *b = path_text(path, "SELECT body FROM events ORDER BY id DESC "
				  "LIMIT 1");
	cJSON *j = b ? cJSON_Parse(b) : NULL;
	if (j == NULL)
		TU_FAIL("newest body does not parse: %s", b ? b : "(none)");
	free(b);
	return j;
}

/* Runs fn in a child process and adds its assertion counts to ours: for
 * tests that change process-wide state (rlimits, signals). */
static void in_child(void (*fn)(const char *), const char *arg)
{
	int fds[2];
	if (pipe(fds) != 0) {
		TU_FAIL("pipe: %s", strerror(errno));
		return;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		close(fds[0]);
		tu_passed = tu_failed = 0;
		fn(arg);
		int counts[2] = {tu_passed, tu_failed};
		ssize_t w = write(fds[1], counts, sizeof(counts));
		(void)w;
		fflush(NULL);
		_exit(0);
	}
	close(fds[1]);
	int counts[2] = {0, 0}, status = 0;
	ssize_t r = read(fds[0], counts, sizeof(counts));
	close(fds[0]);
	waitpid(pid, &status, 0);
	if (r != (ssize_t)sizeof(counts) || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		TU_FAIL("child died (status 0x%x)", status);
		return;
	}
	tu_passed += counts[0];
	tu_failed += counts[1];
}

/* ---- version, strerror, errmsg ---- */

static void test_version_and_texts(void)
{
	ASSERT_STREQ(telespool_version(), TELESPOOL_VERSION_STRING);
	ASSERT_STREQ(telespool_version(), "0.1.0");

	static const struct {
		int rc;
		const char *text;
	} codes[] = {
	    {TELESPOOL_OK, "ok"},
	    {TELESPOOL_ERROR, "unexpected error"},
	    {TELESPOOL_EINVAL, "invalid argument"},
	    {TELESPOOL_EBUSY,
	     "spool is locked by another connection (busy timeout)"},
	    {TELESPOOL_EFULL, "disk full: event not stored"},
	    {TELESPOOL_ESCHEMA, "spool was written by a newer telespool"},
	    {TELESPOOL_EDISABLED,
	     "telemetry is disabled (opted out): nothing stored"},
	    {TELESPOOL_ECORRUPT,
	     "spool file is not a telespool database or is damaged"},
	    {TELESPOOL_EIO, "cannot open, read or write the spool file"},
	    {TELESPOOL_ENOMEM, "out of memory"},
	};
	size_t n = sizeof(codes) / sizeof(codes[0]);
	for (size_t i = 0; i < n; i++) {
		ASSERT_STREQ(telespool_strerror(codes[i].rc), codes[i].text);
		for (size_t j = 0; j < i; j++)
			ASSERT_TRUE(strcmp(telespool_strerror(codes[i].rc),
					   telespool_strerror(codes[j].rc)) !=
				    0);
	}
	/* The ABI values are fixed. */
	ASSERT_EQ(TELESPOOL_OK, 0);
	ASSERT_EQ(TELESPOOL_ERROR, -1);
	ASSERT_EQ(TELESPOOL_EINVAL, -2);
	ASSERT_EQ(TELESPOOL_EBUSY, -3);
	ASSERT_EQ(TELESPOOL_EFULL, -4);
	ASSERT_EQ(TELESPOOL_ESCHEMA, -5);
	ASSERT_EQ(TELESPOOL_EDISABLED, -6);
	ASSERT_EQ(TELESPOOL_ECORRUPT, -7);
	ASSERT_EQ(TELESPOOL_EIO, -8);
	ASSERT_EQ(TELESPOOL_ENOMEM, -9);

	ASSERT_STREQ(telespool_strerror(-10), "unknown telespool return code");
	ASSERT_STREQ(telespool_strerror(1), "unknown telespool return code");
	ASSERT_STREQ(telespool_strerror(-2147483647 - 1),
		     "unknown telespool return code");

	ASSERT_STREQ(telespool_errmsg(NULL), "no spool handle (NULL)");
	telespool_close(NULL);
	telespool_free(NULL);
	tu_passed++;
}

/* ---- open: arguments and options ---- */

static void expect_open_einval(const char *path, const telespool_options *o,
			       const char *errmsg_has)
{
	telespool *sp = (telespool *)&sp; /* not NULL: must be cleared */
	int rc = telespool_open(&sp, path, o);
	ASSERT_EQ(rc, TELESPOOL_EINVAL);
	ASSERT_TRUE(sp == NULL);
	ASSERT_CONTAINS(telespool_open_errmsg(), errmsg_has);
	if (sp != NULL && rc == TELESPOOL_OK)
		telespool_close(sp);
	/* Arguments are checked before the file is touched. */
	if (path && path[0])
		ASSERT_TRUE(!exists(path));
}

static void test_open_arguments(void)
{
	char path[600];
	path_in(path, sizeof(path), "args.db");
	telespool_options o = TELESPOOL_OPTIONS_INIT;

	ASSERT_EQ(telespool_open(NULL, path, NULL), TELESPOOL_EINVAL);
	ASSERT_CONTAINS(telespool_open_errmsg(), "out");
	ASSERT_TRUE(!exists(path));
	expect_open_einval(NULL, NULL, "path");
	expect_open_einval("", NULL, "path");

	o.struct_version = 0;
	expect_open_einval(path, &o, "struct_version");
	o.struct_version = TELESPOOL_OPTIONS_VERSION + 1;
	expect_open_einval(path, &o, "struct_version");
	o.struct_version = TELESPOOL_OPTIONS_VERSION;

	o.busy_timeout_ms = -1;
	expect_open_einval(path, &o, "busy_timeout_ms");
	o.busy_timeout_ms = TELESPOOL_MAX_BUSY_TIMEOUT_MS + 1;
	expect_open_einval(path, &o, "busy_timeout_ms");
	o.busy_timeout_ms = 0;

	o.max_events = -1;
	expect_open_einval(path, &o, "max_events");
	o.max_events = 0;
	o.max_bytes = -1;
	expect_open_einval(path, &o, "max_bytes");
	o.max_bytes = 2 * 65536 - 1;
	expect_open_einval(path, &o, "max_bytes");
	o.max_bytes = 0;
	o.max_age_days = -1;
	expect_open_einval(path, &o, "max_age_days");
	o.max_age_days = 3651;
	expect_open_einval(path, &o, "max_age_days");
	o.max_age_days = 0;
	o.on_corrupt = 2;
	expect_open_einval(path, &o, "on_corrupt");
	o.on_corrupt = -1;
	expect_open_einval(path, &o, "on_corrupt");
	o.on_corrupt = 0;

	/* The edges of each range are accepted. */
	o.busy_timeout_ms = TELESPOOL_MAX_BUSY_TIMEOUT_MS;
	o.max_bytes = 2 * 65536;
	o.max_events = 1;
	o.max_age_days = 3650;
	o.on_corrupt = TELESPOOL_CORRUPT_MOVE_ASIDE;
	telespool *sp = open_ok(path, &o);
	ASSERT_TRUE(sp != NULL);
	ASSERT_STREQ(telespool_open_errmsg(), "");
	ASSERT_STREQ(telespool_errmsg(sp), "");
	telespool_close(sp);

	/* A failed open after a good one has its own message; a good open
	 * clears it again. */
	expect_open_einval(NULL, NULL, "path");
	sp = open_ok(path, NULL);
	ASSERT_STREQ(telespool_open_errmsg(), "");
	telespool_close(sp);
}

static void test_open_defaults(void)
{
	telespool_options o = TELESPOOL_OPTIONS_INIT;
	ASSERT_EQ(o.struct_version, TELESPOOL_OPTIONS_VERSION);
	ASSERT_EQ(o.struct_version, 2);
	ASSERT_TRUE(o.instance_id == NULL && o.version == NULL &&
		    o.edition == NULL);
	ASSERT_EQ(o.instance_create_ts, 0);
	ASSERT_EQ(o.busy_timeout_ms, 0);
	ASSERT_EQ(o.max_events, 0);
	ASSERT_EQ(o.max_bytes, 0);
	ASSERT_EQ(o.max_age_days, 0);
	ASSERT_EQ(o.disabled, 0);
	ASSERT_EQ(o.strict_errors, 0);
	ASSERT_EQ(o.on_corrupt, TELESPOOL_CORRUPT_REFUSE);
	ASSERT_EQ(o.durability, TELESPOOL_DURABILITY_NORMAL);

	telespool_query q = TELESPOOL_QUERY_INIT;
	ASSERT_EQ(q.struct_version, TELESPOOL_QUERY_VERSION);
	ASSERT_TRUE(q.query_id == NULL && q.pipeline_plugins == NULL &&
		    q.error == NULL);
	ASSERT_EQ(q.n_pipeline_plugins, 0);

	ASSERT_EQ(TELESPOOL_DEFAULT_BUSY_TIMEOUT_MS, 250);
	ASSERT_EQ(TELESPOOL_DEFAULT_MAX_EVENTS, 200000);
	ASSERT_EQ(TELESPOOL_DEFAULT_MAX_AGE_DAYS, 30);

	/* NULL options and an all-zero TELESPOOL_OPTIONS_INIT both give the
	 * documented defaults, as the file and the messages show them (the
	 * handle's fields themselves: test_spool_internal open_defaults;
	 * max_bytes's 128 MiB would take 128 MiB to show).  Each round starts
	 * from a spool holding an event of 31 days and one of 29 days
	 * (max_age_days), and ids up to max_events - 2. */
	char path[600], name[32];
	for (int i = 0; i < 2; i++) {
		snprintf(name, sizeof(name), "defaults-%d.db", i);
		path_in(path, sizeof(path), name);
		telespool *sp = open_ok(path, i == 0 ? NULL : &o);
		if (sp == NULL)
			return;
		telespool_close(sp);
		char old[32], young[32], sql[800];
		iso_ms(wall_ms() - 31LL * 86400000, old);
		iso_ms(wall_ms() - 29LL * 86400000, young);
		snprintf(sql, sizeof(sql),
			 "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL"
			 " SELECT i + 1 FROM n WHERE i < %d)"
			 " INSERT INTO spool (id, event_id, event_type, body,"
			 " next_attempt_at, created_at, size)"
			 " SELECT i, '00000000-0000-4000-8000-' ||"
			 " printf('%%012d', i), 'query', '{}',"
			 " CASE i WHEN 1 THEN '%s' ELSE '%s' END,"
			 " CASE i WHEN 1 THEN '%s' ELSE '%s' END, 100 FROM n",
			 TELESPOOL_DEFAULT_MAX_EVENTS - 2, old, young, old,
			 young);
		ASSERT_EQ(path_exec(path, sql), SQLITE_OK);

		sp = open_ok(path, i == 0 ? NULL : &o);
		if (sp == NULL)
			return;
		/* disabled 0: it records.  The event of 31 days goes. */
		ASSERT_EQ(record_simple(sp, "d"), TELESPOOL_OK);
		ASSERT_EQ(drops_of(path, "evicted_max_age"), 1);
		ASSERT_EQ(path_int(path, "SELECT min(id) FROM spool"), 2);
		ASSERT_EQ(count_events(path), TELESPOOL_DEFAULT_MAX_EVENTS - 2);
		/* max_events: the spool fills up to 200,000 rows, then the
		 * oldest goes. */
		ASSERT_EQ(record_simple(sp, "d"), TELESPOOL_OK);
		ASSERT_EQ(record_simple(sp, "d"), TELESPOOL_OK);
		ASSERT_EQ(count_events(path), TELESPOOL_DEFAULT_MAX_EVENTS);
		ASSERT_EQ(drops_of(path, "evicted_max_events"), 0);
		ASSERT_EQ(record_simple(sp, "d"), TELESPOOL_OK);
		ASSERT_EQ(count_events(path), TELESPOOL_DEFAULT_MAX_EVENTS);
		ASSERT_EQ(drops_of(path, "evicted_max_events"), 1);
		ASSERT_EQ(path_int(path, "SELECT min(id) FROM spool"), 3);
		ASSERT_EQ(path_int(path, "SELECT count(*) FROM events WHERE"
					 " query_id = 'd'"),
			  4);

		/* busy_timeout_ms 250: a lock held longer is EBUSY, and the
		 * message says how long it waited. */
		sqlite3 *other = raw_open(path);
		ASSERT_EQ(raw_exec(other, "BEGIN EXCLUSIVE"), SQLITE_OK);
		ASSERT_EQ(record_simple(sp, "blocked"), TELESPOOL_EBUSY);
		ASSERT_CONTAINS(telespool_errmsg(sp), "more than 250 ms");
		ASSERT_EQ(raw_exec(other, "ROLLBACK"), SQLITE_OK);
		sqlite3_close(other);
		telespool_close(sp);
	}
}

/*
 * Every fsync() and fdatasync() of this process, counted.  The program's
 * own definitions come before libc's for the shared libraries it loads, so
 * the calls of the library's SQLite land here too: what a commit asks of
 * the disk is seen from outside the library.  (Visible: the build hides
 * every symbol by default, and a hidden one would not be the one SQLite
 * finds.)
 */
static volatile int g_syncs;

#define TU_EXPORTED __attribute__((visibility("default")))

TU_EXPORTED int fsync(int fd)
{
	g_syncs++;
	return (int)syscall(SYS_fsync, fd);
}

TU_EXPORTED int fdatasync(int fd)
{
	g_syncs++;
	return (int)syscall(SYS_fdatasync, fd);
}

/* How many times recording one event synced a file. */
static int syncs_of_a_record(telespool *sp, const char *query_id)
{
	int before = g_syncs;
	ASSERT_EQ(record_simple(sp, query_id), TELESPOOL_OK);
	return g_syncs - before;
}

/* durability picks the sync level of every commit; a caller built against
 * the version 1 struct (no durability field) gets NORMAL, whatever lies
 * after its struct.  (What a power cut does is not simulated here: FULL
 * syncs the WAL at each commit, as SQLite's synchronous=FULL does, and
 * NORMAL leaves that to the checkpoints, which a record call far from the
 * WAL's bound does not run; test_spool_internal durability reads the
 * pragma itself.) */
static void test_durability(void)
{
	char path[600];
	path_in(path, sizeof(path), "durable.db");
	telespool_options o = TELESPOOL_OPTIONS_INIT;

	o.durability = 2;
	expect_open_einval(path, &o, "durability");
	o.durability = -1;
	expect_open_einval(path, &o, "durability");

	o.durability = TELESPOOL_DURABILITY_FULL;
	telespool *sp = open_ok(path, &o);
	if (sp == NULL)
		return;
	ASSERT_TRUE(syncs_of_a_record(sp, "full") >= 1);
	ASSERT_TRUE(syncs_of_a_record(sp, "full") >= 1);
	telespool_close(sp);

	sp = open_ok(path, NULL);
	if (sp == NULL)
		return;
	/* (The first write into a reset WAL syncs its header.) */
	ASSERT_EQ(record_simple(sp, "normal"), TELESPOOL_OK);
	ASSERT_EQ(syncs_of_a_record(sp, "normal"), 0);
	telespool_close(sp);

	o.durability = 77; /* beyond a version 1 struct: never read */
	o.struct_version = 1;
	sp = open_ok(path, &o);
	if (sp == NULL)
		return;
	ASSERT_EQ(record_simple(sp, "v1"), TELESPOOL_OK);
	ASSERT_EQ(syncs_of_a_record(sp, "v1"), 0);
	telespool_close(sp);
	ASSERT_EQ(count_events(path), 6);
}

/* ---- open: files ---- */

static void test_open_modes_and_reopen(void)
{
	char path[600], side[700];
	struct stat st;
	path_in(path, sizeof(path), "modes.db");

	/* With no umask a default mode would show as 0644 or 0666. */
	mode_t old = umask(0);
	telespool *sp = open_ok(path, NULL);
	umask(old);
	if (sp == NULL)
		return;
	ASSERT_EQ(record_simple(sp, "m1"), TELESPOOL_OK);
	ASSERT_EQ(stat(path, &st), 0);
	ASSERT_EQ(st.st_mode & 07777, 0600);
	path_suffix(side, sizeof(side), path, "-wal");
	ASSERT_EQ(stat(side, &st), 0);
	ASSERT_EQ(st.st_mode & 07777, 0600);
	path_suffix(side, sizeof(side), path, "-shm");
	ASSERT_EQ(stat(side, &st), 0);
	ASSERT_EQ(st.st_mode & 07777, 0600);
	telespool_close(sp);

	/* Reopen: the data is there and the file is still private. */
	sp = open_ok(path, NULL);
	if (sp == NULL)
		return;
	ASSERT_EQ(count_events(path), 1);
	ASSERT_EQ(record_simple(sp, "m2"), TELESPOOL_OK);
	telespool *sp2 = open_ok(path, NULL); /* two handles, one file */
	ASSERT_EQ(record_simple(sp2, "m3"), TELESPOOL_OK);
	telespool_close(sp2);
	telespool_close(sp);
	ASSERT_EQ(count_events(path), 3);
	ASSERT_EQ(stat(path, &st), 0);
	ASSERT_EQ(st.st_mode & 07777, 0600);

	/* An existing empty file is a new spool. */
	path_in(path, sizeof(path), "empty.db");
	ASSERT_EQ(write_file(path, "", 0), 0);
	sp = open_ok(path, NULL);
	ASSERT_EQ(record_simple(sp, "e"), TELESPOOL_OK);
	telespool_close(sp);
	ASSERT_EQ(count_events(path), 1);
}

static void test_migrations_fresh(void)
{
	char path[600];
	path_in(path, sizeof(path), "fresh.db");
	telespool *sp = open_ok(path, NULL);
	if (sp == NULL)
		return;
	int newest = newest_migration();
	ASSERT_TRUE(newest >= 1);
	ASSERT_EQ(path_int(path, "PRAGMA user_version"), newest);
	ASSERT_EQ(path_int(path, "PRAGMA auto_vacuum"), 0);
	char *mode = path_text(path, "PRAGMA journal_mode");
	ASSERT_STREQ(mode, "wal");
	free(mode);
	static const char *const names[] = {
	    "spool",   "events",      "drops",          "survey_milestones",
	    "surveys", "upload_runs", "uploader_state", "pending",
	    "sent",    "dead",        "summary",        "spool_pending_again",
	    NULL};
	for (size_t i = 0; names[i]; i++) {
		char sql[200];
		snprintf(sql, sizeof(sql),
			 "SELECT count(*) FROM sqlite_schema WHERE name = '%s'",
			 names[i]);
		if (path_int(path, sql) != 1)
			TU_FAIL("schema object %s missing", names[i]);
		else
			tu_passed++;
	}
	/* An index a new row goes into would be one more page per record
	 * call: the only one is partial, on finished rows, and event_id is
	 * deliberately not indexed (see 0002). */
	ASSERT_EQ(path_int(path, "SELECT group_concat(name) = 'spool_done'"
				 " FROM sqlite_schema WHERE type = 'index'"
				 " AND tbl_name = 'spool'"),
		  1);
	ASSERT_EQ(path_int(path, "SELECT value FROM uploader_state"
				 " WHERE key = 'pending_from'"),
		  1);
	telespool_close(sp);

	/* Reopening does not migrate again. */
	int64_t objects = path_int(path, "SELECT count(*) FROM sqlite_schema");
	sp = open_ok(path, NULL);
	telespool_close(sp);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM sqlite_schema"),
		  objects);
	ASSERT_EQ(path_int(path, "PRAGMA user_version"), newest);
}

/*
 * A spool written by a telespool with only migration 0001 (rows in every
 * state, one leased) keeps every row and every column through 0002, and the
 * pending rows are the ones the uploader finds.
 */
static void test_migration_0002_upgrades(void)
{
	char path[600];
	path_in(path, sizeof(path), "upgrade.db");
	sqlite3 *db = raw_open(path);
	if (db == NULL) {
		TU_FAIL("cannot open %s", path);
		return;
	}
	char *m1 = NULL;
	migrations_scan(1, &m1);
	if (m1 == NULL) {
		sqlite3_close(db);
		TU_FAIL("no migration 0001_*.sql in %s",
			TELESPOOL_MIGRATIONS_DIR);
		return;
	}
	ASSERT_EQ(raw_exec(db, "PRAGMA journal_mode = WAL"), SQLITE_OK);
	ASSERT_EQ(raw_exec(db, "BEGIN"), SQLITE_OK);
	ASSERT_EQ(raw_exec(db, m1), SQLITE_OK);
	free(m1);
	ASSERT_EQ(raw_exec(db, "PRAGMA user_version = 1"), SQLITE_OK);
	static const char *const states[] = {"sent", "dead", "pending", "sent",
					     "pending"};
	for (int i = 0; i < 5; i++) {
		char sql[1200], t[32];
		iso_ms(wall_ms() - 60000 + i * 1000, t);
		snprintf(
		    sql, sizeof(sql),
		    "INSERT INTO events (event_id, event_type, query_id,"
		    " adapter, runner, model_name, duration_ms, version,"
		    " instance_id, pipeline_plugins, error, timestamp, body,"
		    " state, attempts, next_attempt_at, last_error, created_at,"
		    " sent_at, lease_until, size) VALUES"
		    " ('00000000-0000-4000-8000-00000000000%d', 'query', 'q%d',"
		    " 'TelegramAdapter', 'local-agent', 'gpt-4o', %d, 'v4.3.1',"
		    " 'instance_x', '[\"a\"]', '', '%s',"
		    " json_object('event_type', 'query', 'query_id', 'q%d',"
		    " 'adapter', 'TelegramAdapter', 'runner', 'local-agent',"
		    " 'model_name', 'gpt-4o', 'duration_ms', %d, 'version',"
		    " 'v4.3.1', 'instance_id', 'instance_x', "
		    "'pipeline_plugins',"
		    " json_array('a'), 'error', '', 'timestamp',"
		    " '%s'), '%s', %d,"
		    " '%s', %s,"
		    " '%s', %s, %s, 999)",
		    i, i, 100 + i, t, i, 100 + i, t, states[i], i, t,
		    i == 1 ? "'HTTP 400'" : "NULL", t,
		    states[i][0] == 's' ? "'2026-01-01T00:01:00.000Z'" : "NULL",
		    i == 4 ? "'2999-01-01T00:00:00.000Z'" : "NULL");
		ASSERT_EQ(raw_exec(db, sql), SQLITE_OK);
	}
	ASSERT_EQ(raw_exec(db, "COMMIT"), SQLITE_OK);
	sqlite3_close(db);

	telespool *sp = open_ok(path, NULL);
	if (sp == NULL)
		return;
	int newest = newest_migration();
	ASSERT_EQ(path_int(path, "PRAGMA user_version"), newest);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM spool"), 5);
	/* The first pending row is id 3: the two before it are done. */
	ASSERT_EQ(path_int(path, "SELECT value FROM uploader_state"
				 " WHERE key = 'pending_from'"),
		  3);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM pending"), 2);
	/* Every 0001 column reads the same through the events view. */
	ASSERT_EQ(
	    path_int(
		path,
		"SELECT count(*) FROM events WHERE query_id = 'q' || (id - 1)"
		" AND adapter = 'TelegramAdapter' AND runner = 'local-agent'"
		" AND model_name = 'gpt-4o' AND duration_ms = 99 + id"
		" AND version = 'v4.3.1' AND instance_id = 'instance_x'"
		" AND pipeline_plugins = '[\"a\"]' AND error = ''"
		" AND timestamp = next_attempt_at AND created_at = timestamp"
		" AND attempts = id - 1 AND event_id LIKE '00000000-%'"),
	    5);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM events WHERE"
				 " state = 'sent' AND sent_at IS NOT NULL"),
		  2);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM events WHERE"
				 " last_error = 'HTTP 400' AND state = 'dead'"),
		  1);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM spool"
				 " WHERE lease_until IS NOT NULL"),
		  1);
	/* size is recomputed for the narrower row. */
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM spool WHERE size ="
				 " length(CAST(body AS BLOB)) + 160"),
		  5);
	/* New events go after the old ones. */
	ASSERT_EQ(record_simple(sp, "after-upgrade"), TELESPOOL_OK);
	ASSERT_EQ(path_int(path, "SELECT max(id) FROM pending"), 6);
	telespool_close(sp);
}

/* Leaves a file at path made by plain SQLite with the given statements. */
static void make_sqlite_file(const char *path, const char *sql)
{
	sqlite3 *db = raw_open(path);
	if (db == NULL || raw_exec(db, sql) != SQLITE_OK)
		TU_FAIL("could not make %s", path);
	sqlite3_close(db);
}

/* Opens path expecting want, and checks the main file's bytes (and that no
 * side files or moved copies appeared). */
static void expect_untouched(const char *path, const telespool_options *o,
			     int want, const char *errmsg_has)
{
	size_t len;
	unsigned char *before = slurp_file(path, &len);
	char wal[700], journal[700];
	path_suffix(wal, sizeof(wal), path, "-wal");
	path_suffix(journal, sizeof(journal), path, "-journal");
	int had_wal = exists(wal);

	telespool *sp = (telespool *)&len;
	int rc = telespool_open(&sp, path, o);
	ASSERT_EQ(rc, want);
	ASSERT_TRUE(sp == NULL);
	if (errmsg_has)
		ASSERT_CONTAINS(telespool_open_errmsg(), errmsg_has);
	ASSERT_TRUE(strlen(telespool_open_errmsg()) > 0);
	if (rc == TELESPOOL_OK)
		telespool_close(sp);
	ASSERT_TRUE(before != NULL && same_bytes(before, len, path));
	if (!had_wal)
		ASSERT_TRUE(!exists(wal));
	ASSERT_TRUE(!exists(journal));
	ASSERT_EQ(count_corrupt_copies(path), 0);
	free(before);
}

static void test_schema_newer(void)
{
	char path[600];
	telespool_options o = TELESPOOL_OPTIONS_INIT;

	path_in(path, sizeof(path), "newer.db");
	make_sqlite_file(path, "CREATE TABLE events (x); PRAGMA user_version = "
			       "999;");
	expect_untouched(path, NULL, TELESPOOL_ESCHEMA, "newer");
	/* Moving aside is for corrupt files only, never for a newer one. */
	o.on_corrupt = TELESPOOL_CORRUPT_MOVE_ASIDE;
	expect_untouched(path, &o, TELESPOOL_ESCHEMA, "999");

	/* The same in WAL mode. */
	path_in(path, sizeof(path), "newer-wal.db");
	make_sqlite_file(path, "PRAGMA journal_mode = WAL; CREATE TABLE t (x);"
			       " PRAGMA user_version = 999;");
	expect_untouched(path, NULL, TELESPOOL_ESCHEMA, "newer");

	/* A real spool whose user_version was bumped by a "future" build. */
	path_in(path, sizeof(path), "newer-spool.db");
	telespool *sp = open_ok(path, NULL);
	ASSERT_EQ(record_simple(sp, "x"), TELESPOOL_OK);
	telespool_close(sp);
	ASSERT_EQ(path_exec(path, "PRAGMA user_version = 999"), SQLITE_OK);
	expect_untouched(path, NULL, TELESPOOL_ESCHEMA, "newer");
}

static void test_corrupt_refused(void)
{
	char path[600];
	unsigned char junk[8192];

	path_in(path, sizeof(path), "random.db");
	srand(12345);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)(rand() & 0xff);
	ASSERT_EQ(write_file(path, junk, sizeof(junk)), 0);
	expect_untouched(path, NULL, TELESPOOL_ECORRUPT, NULL);

	path_in(path, sizeof(path), "text.db");
	static const char text[] =
	    "This is not a database.\nJust some notes.\n";
	ASSERT_EQ(write_file(path, text, sizeof(text) - 1), 0);
	expect_untouched(path, NULL, TELESPOOL_ECORRUPT, NULL);

	/* Shorter than an SQLite header.  (A 1-byte file is not tested: SQLite
	 * itself reads it as an empty database, see unixFileSize().) */
	path_in(path, sizeof(path), "short.db");
	ASSERT_EQ(write_file(path, "SQLite format 3", 15), 0);
	expect_untouched(path, NULL, TELESPOOL_ECORRUPT, NULL);

	/* Somebody else's database. */
	path_in(path, sizeof(path), "other.db");
	make_sqlite_file(path, "CREATE TABLE notes (id INTEGER PRIMARY KEY, "
			       "text TEXT); INSERT INTO notes (text) "
			       "VALUES ('keep me');");
	expect_untouched(path, NULL, TELESPOOL_ECORRUPT, "not a telespool");
	char *t = path_text(path, "SELECT text FROM notes");
	ASSERT_STREQ(t, "keep me");
	free(t);

	/* A spool whose schema page was overwritten. */
	path_in(path, sizeof(path), "damaged.db");
	telespool *sp = open_ok(path, NULL);
	ASSERT_EQ(record_simple(sp, "x"), TELESPOOL_OK);
	telespool_close(sp);
	size_t len;
	unsigned char *bytes = slurp_file(path, &len);
	if (bytes && len > 4096) {
		memset(bytes + 100, 0xA5, 4096 - 100);
		ASSERT_EQ(write_file(path, bytes, len), 0);
		expect_untouched(path, NULL, TELESPOOL_ECORRUPT, NULL);
	} else {
		TU_FAIL("spool %s is too small (%zu)", path, len);
	}
	free(bytes);
}

static void test_corrupt_moved_aside(void)
{
	char path[600];
	static const char text[] = "definitely not SQLite\n";
	telespool_options o = TELESPOOL_OPTIONS_INIT;
	o.on_corrupt = TELESPOOL_CORRUPT_MOVE_ASIDE;

	path_in(path, sizeof(path), "aside.db");
	ASSERT_EQ(write_file(path, text, sizeof(text) - 1), 0);
	telespool *sp = NULL;
	int rc = telespool_open(&sp, path, &o);
	ASSERT_EQ(rc, TELESPOOL_OK);
	ASSERT_CONTAINS(telespool_open_errmsg(), "moved aside");
	if (sp == NULL)
		return;
	ASSERT_EQ(record_simple(sp, "after"), TELESPOOL_OK);
	telespool_close(sp);
	ASSERT_EQ(count_events(path), 1);
	ASSERT_EQ(drops_of(path, "corrupt_spool"), 1);

	/* Exactly one copy, named PATH.corrupt-YYYYMMDDTHHMMSSZ, with the old
	 * bytes. */
	ASSERT_EQ(count_corrupt_copies(path), 1);
	DIR *d = opendir(g_dir);
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "aside.db.corrupt-", 17) != 0)
			continue;
		const char *stamp = e->d_name + 17;
		static const char shape[] = "ddddddddTddddddZ";
		int ok = strlen(stamp) == sizeof(shape) - 1;
		for (size_t i = 0; ok && shape[i]; i++)
			ok = shape[i] == 'd'
				 ? (stamp[i] >= '0' && stamp[i] <= '9')
				 : stamp[i] == shape[i];
		if (!ok)
			TU_FAIL("moved-aside name \"%s\" is not "
				"PATH.corrupt-YYYYMMDDTHHMMSSZ",
				e->d_name);
		else
			tu_passed++;
		char moved[1200];
		snprintf(moved, sizeof(moved), "%s/%s", g_dir, e->d_name);
		ASSERT_TRUE(same_bytes((const unsigned char *)text,
				       sizeof(text) - 1, moved));
	}
	if (d)
		closedir(d);

	/* Somebody else's database is "not a spool" too. */
	path_in(path, sizeof(path), "aside-other.db");
	make_sqlite_file(path, "CREATE TABLE notes (x)");
	sp = open_ok(path, &o);
	telespool_close(sp);
	ASSERT_EQ(count_corrupt_copies(path), 1);
	ASSERT_EQ(drops_of(path, "corrupt_spool"), 1);
}

/*
 * Move-aside never renames a file someone else has open: a live writer (a
 * handle opened before the damage, in refuse mode) would go on writing
 * into the moved file, never to be sent nor purged.  The open refuses
 * instead, like refuse mode; once the writer is gone it moves the file.
 */
static void test_move_aside_not_under_a_writer(void)
{
	char path[600], qid[32];
	path_in(path, sizeof(path), "aside-live.db");
	telespool *w = open_ok(path, NULL);
	if (w == NULL)
		return;
	record_tracebacks(w, 300);
	telespool_close(w);
	damage_middle(path);

	w = open_ok(path, NULL); /* refuse mode reads no data page at open */
	if (w == NULL)
		return;
	telespool_options o = TELESPOOL_OPTIONS_INIT;
	o.on_corrupt = TELESPOOL_CORRUPT_MOVE_ASIDE;
	telespool *m = (telespool *)&m;
	ASSERT_EQ(telespool_open(&m, path, &o), TELESPOOL_ECORRUPT);
	ASSERT_TRUE(m == NULL);
	ASSERT_CONTAINS(telespool_open_errmsg(), "not moved aside");
	ASSERT_CONTAINS(telespool_open_errmsg(), "has it open");
	ASSERT_EQ(count_corrupt_copies(path), 0);

	/* The writer goes on; what it acknowledges stays in the file at the
	 * spool's path, where the uploader and a purge find it. */
	int acked = 0, lost = 0;
	for (int i = 0; i < 20; i++) {
		snprintf(qid, sizeof(qid), "after-%d", i);
		if (record_simple(w, qid) == TELESPOOL_OK)
			acked++;
	}
	if (count_corrupt_copies(path) != 0)
		lost = acked;
	telespool_close(w);

	/* Nobody has it open now: moved aside, a new spool in its place. */
	m = open_ok(path, &o);
	ASSERT_CONTAINS(telespool_open_errmsg(), "moved aside");
	telespool_close(m);
	ASSERT_EQ(count_corrupt_copies(path), 1);
	ASSERT_EQ(drops_of(path, "corrupt_spool"), 1);
	printf("FAULT: move aside while a live writer has the spool open: "
	       "tried %d times, lost %d\n",
	       acked, lost);
}

/*
 * A spool reached through a symbolic link (data/telemetry.db -> elsewhere):
 * SQLite keeps the file's WAL next to the target, so moving aside, the
 * lock that guards it and the purge of the moved copies act there, never
 * on the link, and a writer that opened the target directly counts.
 */
static void test_move_aside_through_a_symlink(void)
{
	char real[700], link_path[700];
	linked_spool_paths(real, link_path);
	telespool *w = open_ok(link_path, NULL);
	if (w == NULL)
		return;
	record_tracebacks(w, 300);
	telespool_close(w);
	damage_middle(real);

	/* A writer that opened the target itself keeps it from moving. */
	w = open_ok(real, NULL);
	telespool_options o = TELESPOOL_OPTIONS_INIT;
	o.on_corrupt = TELESPOOL_CORRUPT_MOVE_ASIDE;
	telespool *m = NULL;
	ASSERT_EQ(telespool_open(&m, link_path, &o), TELESPOOL_ECORRUPT);
	ASSERT_CONTAINS(telespool_open_errmsg(), "has it open");
	telespool_close(m);
	telespool_close(w);

	/* Alone: the target is moved aside beside itself; the link stays. */
	m = open_ok(link_path, &o);
	ASSERT_CONTAINS(telespool_open_errmsg(), "moved aside");
	struct stat st;
	ASSERT_EQ(lstat(link_path, &st), 0);
	ASSERT_TRUE(S_ISLNK(st.st_mode));
	ASSERT_EQ(count_corrupt_copies(real), 1);
	ASSERT_EQ(count_corrupt_copies(link_path), 0);
	ASSERT_EQ(drops_of(real, "corrupt_spool"), 1);
	/* (The uploader's opt-out purge removes that copy:
	 * test_spool_internal purge_moved_aside_copy.) */
	telespool_close(m);
}

static void test_open_bad_paths(void)
{
	char path[600];
	telespool *sp = (telespool *)&sp;

	path_in(path, sizeof(path), "a-directory");
	ASSERT_EQ(mkdir(path, 0700), 0);
	ASSERT_EQ(telespool_open(&sp, path, NULL), TELESPOOL_EIO);
	ASSERT_TRUE(sp == NULL);
	ASSERT_TRUE(strlen(telespool_open_errmsg()) > 0);

	path_in(path, sizeof(path), "no-such-dir/spool.db");
	sp = (telespool *)&sp;
	ASSERT_EQ(telespool_open(&sp, path, NULL), TELESPOOL_EIO);
	ASSERT_TRUE(sp == NULL);
	ASSERT_CONTAINS(telespool_open_errmsg(), "no-such-dir");

	char file[600];
	path_in(file, sizeof(file), "plain-file");
	ASSERT_EQ(write_file(file, "x", 1), 0);
	path_in(path, sizeof(path), "plain-file/spool.db");
	ASSERT_EQ(telespool_open(&sp, path, NULL), TELESPOOL_EIO);
	ASSERT_TRUE(sp == NULL);

	/* Not a regular file: refused before SQLite writes a journal next to
	 * it (as root that was /dev/null-journal). */
	const char *devnull_journal = "/dev/null-journal";
	int had_journal = exists(devnull_journal);
	path_in(path, sizeof(path), "null.db");
	ASSERT_EQ(symlink("/dev/null", path), 0);
	const char *odd[] = {"/dev/null", path};
	for (size_t i = 0; i < 2; i++) {
		ASSERT_EQ(telespool_open(&sp, odd[i], NULL), TELESPOOL_EIO);
		ASSERT_TRUE(sp == NULL);
		ASSERT_CONTAINS(telespool_open_errmsg(), "not a regular file");
	}
	if (!had_journal)
		ASSERT_TRUE(!exists(devnull_journal));
	path_in(file, sizeof(file), "null.db-journal");
	ASSERT_TRUE(!exists(file));

	/* Read-only: permissions do not bind root. */
	if (geteuid() == 0) {
		printf("note: running as root, read-only file test skipped\n");
		return;
	}
	path_in(path, sizeof(path), "readonly.db");
	sp = open_ok(path, NULL);
	ASSERT_EQ(record_simple(sp, "ro"), TELESPOOL_OK);
	telespool_close(sp);
	ASSERT_EQ(chmod(path, 0400), 0);
	ASSERT_EQ(telespool_open(&sp, path, NULL), TELESPOOL_EIO);
	ASSERT_TRUE(sp == NULL);
	chmod(path, 0600);
}

/*
 * Eight processes open one fresh file at the same moment; returns how many
 * failed.  Each child records one event.
 */
static int race_open(const char *path, int on_corrupt)
{
	enum { N = 8 };
	int go[2], failed = 0;
	if (pipe(go) != 0) {
		TU_FAIL("pipe: %s", strerror(errno));
		return N;
	}
	fflush(NULL);
	pid_t pids[N];
	for (int i = 0; i < N; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			char c;
			close(go[1]);
			ssize_t r =
			    read(go[0], &c, 1); /* EOF: everyone starts */
			(void)r;
			telespool_options o = TELESPOOL_OPTIONS_INIT;
			o.busy_timeout_ms = 5000;
			o.on_corrupt = on_corrupt;
			telespool *sp = NULL;
			int64_t t0 = mono_ms();
			int rc = telespool_open(&sp, path, &o);
			if (rc != TELESPOOL_OK)
				fprintf(stderr,
					"child %d: open failed after %lld ms\n",
					i, (long long)(mono_ms() - t0));
			if (rc == TELESPOOL_OK &&
			    telespool_open_errmsg()[0] != '\0') {
				fprintf(stderr, "child %d: %s\n", i,
					telespool_open_errmsg());
				rc = TELESPOOL_ERROR;
			}
			if (rc == TELESPOOL_OK)
				rc = record_simple(sp, "race");
			if (rc != TELESPOOL_OK)
				fprintf(stderr, "child %d: %s: %s %s\n", i,
					telespool_strerror(rc),
					telespool_open_errmsg(),
					telespool_errmsg(sp));
			telespool_close(sp);
			_exit(rc == TELESPOOL_OK ? 0 : 100 - rc);
		}
	}
	close(go[0]);
	close(go[1]);
	for (int i = 0; i < N; i++) {
		int status = 0;
		waitpid(pids[i], &status, 0);
		failed += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
	}
	return failed;
}

static void test_concurrent_first_open(void)
{
	char path[600], ref[600];
	int newest = newest_migration();
	path_in(ref, sizeof(ref), "race-ref.db");
	telespool *sp = open_ok(ref, NULL);
	telespool_close(sp);
	int64_t objects = path_int(ref, "SELECT count(*) FROM sqlite_schema");

	/* The race is short: try it a few times, half of them with
	 * MOVE_ASIDE, where losing it would move a good spool aside. */
	int rounds = getenv("TELESPOOL_UNDER_VALGRIND") ? 2 : 10;
	for (int round = 0; round < rounds; round++) {
		char name[64];
		int on_corrupt = round % 2 ? TELESPOOL_CORRUPT_MOVE_ASIDE
					   : TELESPOOL_CORRUPT_REFUSE;
		snprintf(name, sizeof(name), "race-%d.db", round);
		path_in(path, sizeof(path), name);
		int failed = race_open(path, on_corrupt);
		if (failed) {
			TU_FAIL(
			    "round %d (on_corrupt %d): %d of 8 opens failed",
			    round, on_corrupt, failed);
			continue;
		}
		ASSERT_EQ(path_int(path, "PRAGMA user_version"), newest);
		ASSERT_EQ(path_int(path, "PRAGMA auto_vacuum"), 0);
		ASSERT_EQ(count_events(path), 8);
		ASSERT_EQ(path_int(path, "SELECT count(*) FROM sqlite_schema"),
			  objects);
		ASSERT_EQ(count_corrupt_copies(path), 0);
		ASSERT_EQ(drops_of(path, "corrupt_spool"), 0);
	}
}

/* ---- the record calls ---- */

static void test_record_einval(void)
{
	char path[600];
	path_in(path, sizeof(path), "einval.db");
	telespool *sp = open_ok(path, NULL);
	if (sp == NULL)
		return;
	telespool_query q = TELESPOOL_QUERY_INIT;
	char *out = (char *)&q;
	int ok = 0;

#define EXPECT_EINVAL(call, has)                                               \
	do {                                                                   \
		ASSERT_EQ((call), TELESPOOL_EINVAL);                           \
		ASSERT_CONTAINS(telespool_errmsg(sp), has);                    \
		ASSERT_EQ(record_simple(sp, "good"), TELESPOOL_OK);            \
		ok++;                                                          \
		ASSERT_STREQ(telespool_errmsg(sp), "");                        \
	} while (0)

	ASSERT_EQ(telespool_record_query(NULL, &q), TELESPOOL_EINVAL);
	ASSERT_EQ(telespool_record_heartbeat(NULL, NULL), TELESPOOL_EINVAL);
	ASSERT_EQ(telespool_record_survey_trigger(NULL, "e"), TELESPOOL_EINVAL);
	ASSERT_EQ(telespool_record_survey_response(NULL, "s", "{}", 1),
		  TELESPOOL_EINVAL);
	ASSERT_EQ(telespool_record_survey_dismiss(NULL, "s"), TELESPOOL_EINVAL);
	ASSERT_EQ(telespool_pending_survey(NULL, &out), TELESPOOL_EINVAL);
	ASSERT_TRUE(out == NULL);

	EXPECT_EINVAL(telespool_record_query(sp, NULL), "query");
	q.struct_version = 0;
	EXPECT_EINVAL(telespool_record_query(sp, &q), "struct_version");
	q.struct_version = TELESPOOL_QUERY_VERSION + 1;
	EXPECT_EINVAL(telespool_record_query(sp, &q), "struct_version");
	q.struct_version = TELESPOOL_QUERY_VERSION;
	q.n_pipeline_plugins = 2;
	EXPECT_EINVAL(telespool_record_query(sp, &q), "pipeline_plugins");
	q.n_pipeline_plugins = 0;
	ASSERT_EQ(telespool_record_query(sp, &q), TELESPOOL_OK); /* NULL, 0 */
	ok++;

	static const char *const not_objects[] = {
	    "[]", "[1, 2]", "42",        "\"text\"", "null", "true",
	    "",   "{",      "{\"a\": }", "not json", NULL};
	for (size_t i = 0; not_objects[i]; i++) {
		EXPECT_EINVAL(telespool_record_heartbeat(sp, not_objects[i]),
			      "features");
		EXPECT_EINVAL(telespool_record_survey_response(
				  sp, "s-1", not_objects[i], 1),
			      "answers");
	}
	EXPECT_EINVAL(telespool_record_survey_response(sp, "s-1", NULL, 1),
		      "answers");
	EXPECT_EINVAL(telespool_record_survey_response(sp, NULL, "{}", 1),
		      "survey_id");
	EXPECT_EINVAL(telespool_record_survey_response(sp, "", "{}", 1),
		      "survey_id");
	EXPECT_EINVAL(telespool_record_survey_dismiss(sp, NULL), "survey_id");
	EXPECT_EINVAL(telespool_record_survey_dismiss(sp, ""), "survey_id");
	EXPECT_EINVAL(telespool_record_survey_trigger(sp, NULL), "event");
	EXPECT_EINVAL(telespool_record_survey_trigger(sp, ""), "event");
	out = (char *)&q;
	EXPECT_EINVAL(telespool_pending_survey(sp, NULL), "out_json");

	/* features NULL is {}. */
	ASSERT_EQ(telespool_record_heartbeat(sp, NULL), TELESPOOL_OK);
	ok++;
	ASSERT_STREQ(telespool_errmsg(sp), "");
#undef EXPECT_EINVAL

	telespool_close(sp);
	/* Nothing of the failed calls was stored. */
	ASSERT_EQ(count_events(path), ok);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM events WHERE event_type"
				 " <> 'query' AND event_type <> "
				 "'instance_heartbeat'"),
		  0);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM surveys"), 0);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM survey_milestones"), 0);
}

/* JSON text with something after the object is not a JSON object. */
static void test_json_trailing_garbage(void)
{
	char path[600];
	path_in(path, sizeof(path), "trailing.db");
	telespool *sp = open_ok(path, NULL);
	if (sp == NULL)
		return;
	static const char *const texts[] = {"{} {}", "{\"bots\": 1} trailing",
					    "{}]", NULL};
	for (size_t i = 0; texts[i]; i++) {
		ASSERT_EQ(telespool_record_heartbeat(sp, texts[i]),
			  TELESPOOL_EINVAL);
		ASSERT_EQ(
		    telespool_record_survey_response(sp, "s-1", texts[i], 1),
		    TELESPOOL_EINVAL);
	}
	telespool_close(sp);
	ASSERT_EQ(count_events(path), 0);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM surveys"), 0);
}

static void test_disabled(void)
{
	char path[600];
	path_in(path, sizeof(path), "disabled.db");
	telespool_options o = TELESPOOL_OPTIONS_INIT;
	o.disabled = 1;
	telespool *sp = open_ok(path, &o);
	if (sp == NULL)
		return;
	const char *plugins[] = {"p"};
	telespool_query q = TELESPOOL_QUERY_INIT;
	q.pipeline_plugins = plugins;
	q.n_pipeline_plugins = 1;

	ASSERT_EQ(telespool_record_query(sp, &q), TELESPOOL_EDISABLED);
	ASSERT_CONTAINS(telespool_errmsg(sp), "disabled");
	ASSERT_EQ(telespool_record_heartbeat(sp, "{\"bots\": 1}"),
		  TELESPOOL_EDISABLED);
	ASSERT_EQ(
	    telespool_record_survey_trigger(sp, "first_bot_response_success"),
	    TELESPOOL_EDISABLED);
	ASSERT_EQ(telespool_record_survey_response(sp, "s", "{}", 1),
		  TELESPOOL_EDISABLED);
	ASSERT_EQ(telespool_record_survey_dismiss(sp, "s"),
		  TELESPOOL_EDISABLED);
	ASSERT_CONTAINS(telespool_errmsg(sp), "disabled");

	/* A survey that was offered before the opt-out is not shown. */
	ASSERT_EQ(path_exec(path, "INSERT INTO surveys (survey_id, body, state,"
				  " received_at) VALUES ('s-old', "
				  "'{\"survey_id\":\"s-old\"}', 'pending', "
				  "'2024-01-01T00:00:00.000Z')"),
		  SQLITE_OK);
	char *out = (char *)&q;
	ASSERT_EQ(telespool_pending_survey(sp, &out), TELESPOOL_OK);
	ASSERT_TRUE(out == NULL);
	ASSERT_STREQ(telespool_errmsg(sp), "");
	telespool_close(sp);

	ASSERT_EQ(count_events(path), 0);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM survey_milestones"), 0);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM surveys WHERE state <> "
				 "'pending'"),
		  0);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM drops"), 0);
}

/* Checks the row of the newest event against its body. */
static void assert_row_matches_body(const char *path, int64_t before,
				    int64_t after)
{
	sqlite3 *db = raw_open(path);
	sqlite3_stmt *st = NULL;
	if (db == NULL ||
	    sqlite3_prepare_v2(
		db,
		"SELECT event_id, event_type, query_id, adapter,"
		" runner, model_name, duration_ms, version,"
		" instance_id, pipeline_plugins, error, timestamp,"
		" body, state, attempts, next_attempt_at,"
		" last_error, created_at, sent_at, lease_until,"
		" size FROM events ORDER BY id DESC LIMIT 1",
		-1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW) {
		TU_FAIL("no newest row in %s", path);
		sqlite3_finalize(st);
		sqlite3_close(db);
		return;
	}
#define COL(i) ((const char *)sqlite3_column_text(st, i))
	cJSON *body = cJSON_Parse(COL(12));
	ASSERT_TRUE(body != NULL);
	ASSERT_TRUE(is_uuid4(COL(0)));
	const char *type = COL(1);
	const cJSON *et = cJSON_GetObjectItemCaseSensitive(body, "event_type");
	if (strcmp(type, "query") == 0 ||
	    strcmp(type, "instance_heartbeat") == 0)
		ASSERT_STREQ(cJSON_IsString(et) ? et->valuestring : NULL, type);
	static const struct {
		int col;
		const char *key;
	} strs[] = {{2, "query_id"},   {3, "adapter"},   {4, "runner"},
		    {5, "model_name"}, {7, "version"},   {8, "instance_id"},
		    {10, "error"},     {11, "timestamp"}};
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		const cJSON *v =
		    cJSON_GetObjectItemCaseSensitive(body, strs[i].key);
		if (v == NULL)
			continue; /* not a field of this kind */
		ASSERT_STREQ(COL(strs[i].col), v->valuestring);
	}
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(body, "duration_ms");
	if (d)
		ASSERT_EQ(sqlite3_column_int64(st, 6), (int64_t)d->valuedouble);
	const cJSON *p =
	    cJSON_GetObjectItemCaseSensitive(body, "pipeline_plugins");
	if (p) {
		char *arr = cJSON_PrintUnformatted(p);
		ASSERT_STREQ(COL(9), arr);
		free(arr);
	}
	ASSERT_STREQ(COL(13), "pending");
	ASSERT_EQ(sqlite3_column_int(st, 14), 0);
	ASSERT_STREQ(COL(15), COL(17)); /* next_attempt_at = created_at */
	ASSERT_TRUE(sqlite3_column_type(st, 16) == SQLITE_NULL);
	assert_recent_iso(COL(17), before, after);
	ASSERT_TRUE(sqlite3_column_type(st, 18) == SQLITE_NULL);
	ASSERT_TRUE(sqlite3_column_type(st, 19) == SQLITE_NULL);
	ASSERT_TRUE(sqlite3_column_int64(st, 20) >= (int64_t)strlen(COL(12)));
#undef COL
	cJSON_Delete(body);
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static void test_body_query(void)
{
	char path[600];
	path_in(path, sizeof(path), "body-query.db");
	telespool_options o = TELESPOOL_OPTIONS_INIT;
	o.instance_id = "instance_2f1c7e8a-4b6d-4f5e-9a3b-1c2d3e4f5a6b";
	o.version = "v4.3.1";
	telespool *sp = open_ok(path, &o);
	if (sp == NULL)
		return;

	/* A caller built against the 0.1.0 header: the 4.10.6 body. */
	const char *plugins[] = {"WebSearch", "Memory"};
	telespool_query q = TELESPOOL_QUERY_INIT;
	q.struct_version = 1;
	q.query_id = "q-0001";
	q.adapter = "TelegramAdapter";
	q.runner = "local-agent";
	q.model_name = "gpt-4o";
	q.duration_ms = 1234;
	q.pipeline_plugins = plugins;
	q.n_pipeline_plugins = 2;
	q.error = "Traceback (most recent call last):\n  File \"a.py\", line 1,"
		  " in f\nValueError: bad value\n";
	int64_t before = wall_ms();
	ASSERT_EQ(telespool_record_query(sp, &q), TELESPOOL_OK);
	int64_t after = wall_ms();
	ASSERT_STREQ(telespool_errmsg(sp), "");

	cJSON *b = last_body(path);
	static const char *const keys[] = {
	    "event_type",       "query_id",    "adapter",   "runner",
	    "model_name",       "duration_ms", "version",   "instance_id",
	    "pipeline_plugins", "error",       "timestamp", NULL};
	assert_keys(b, keys);
	assert_str_member(b, "event_type", "query");
	assert_str_member(b, "query_id", "q-0001");
	assert_str_member(b, "adapter", "TelegramAdapter");
	assert_str_member(b, "runner", "local-agent");
	assert_str_member(b, "model_name", "gpt-4o");
	assert_int_member(b, "duration_ms", 1234);
	assert_str_member(b, "version", "v4.3.1");
	assert_str_member(b, "instance_id", o.instance_id);
	const cJSON *arr =
	    cJSON_GetObjectItemCaseSensitive(b, "pipeline_plugins");
	ASSERT_TRUE(cJSON_IsArray(arr));
	ASSERT_EQ(cJSON_GetArraySize(arr), 2);
	ASSERT_STREQ(cJSON_GetArrayItem(arr, 0)->valuestring, "WebSearch");
	ASSERT_STREQ(cJSON_GetArrayItem(arr, 1)->valuestring, "Memory");
	assert_str_member(b, "error", q.error);
	const cJSON *ts = cJSON_GetObjectItemCaseSensitive(b, "timestamp");
	ASSERT_TRUE(cJSON_IsString(ts));
	assert_recent_iso(cJSON_IsString(ts) ? ts->valuestring : NULL, before,
			  after);
	cJSON_Delete(b);
	assert_row_matches_body(path, before, after);

	/* Every string NULL: "" everywhere, duration 0, no plugins. */
	telespool_query empty = TELESPOOL_QUERY_INIT;
	empty.struct_version = 1;
	empty.duration_ms = -5;
	ASSERT_EQ(telespool_record_query(sp, &empty), TELESPOOL_OK);
	b = last_body(path);
	assert_keys(b, keys);
	assert_str_member(b, "query_id", "");
	assert_str_member(b, "adapter", "");
	assert_str_member(b, "runner", "");
	assert_str_member(b, "model_name", "");
	assert_int_member(b, "duration_ms", 0);
	assert_str_member(b, "error", "");
	arr = cJSON_GetObjectItemCaseSensitive(b, "pipeline_plugins");
	ASSERT_TRUE(cJSON_IsArray(arr) && cJSON_GetArraySize(arr) == 0);
	cJSON_Delete(b);
	assert_row_matches_body(path, before, wall_ms());
	ASSERT_EQ(path_int(path, "SELECT duration_ms FROM events ORDER BY id "
				 "DESC LIMIT 1"),
		  0);

	/* A NULL entry among the plugins is skipped. */
	const char *holes[] = {"a", NULL, "b"};
	q.pipeline_plugins = holes;
	q.n_pipeline_plugins = 3;
	ASSERT_EQ(telespool_record_query(sp, &q), TELESPOOL_OK);
	char *pp =
	    path_text(path, "SELECT pipeline_plugins FROM events ORDER BY"
			    " id DESC LIMIT 1");
	ASSERT_STREQ(pp, "[\"a\",\"b\"]");
	free(pp);
	telespool_close(sp);

	/* runner_category and edition appear only when set. */
	path_in(path, sizeof(path), "body-query-ed.db");
	o.edition = "community";
	o.instance_id = NULL;
	o.version = NULL;
	sp = open_ok(path, &o);
	if (sp == NULL)
		return;
	q.runner_category = "agent";
	q.pipeline_plugins = NULL;
	q.n_pipeline_plugins = 0;
	ASSERT_EQ(telespool_record_query(sp, &q), TELESPOOL_OK);
	b = last_body(path);
	static const char *const keys_ed[] = {
	    "event_type",      "query_id",   "adapter",          "runner",
	    "runner_category", "model_name", "duration_ms",      "version",
	    "instance_id",     "edition",    "pipeline_plugins", "error",
	    "timestamp",       NULL};
	assert_keys(b, keys_ed);
	assert_str_member(b, "runner_category", "agent");
	assert_str_member(b, "edition", "community");
	assert_str_member(b, "instance_id", ""); /* NULL option: "" */
	assert_str_member(b, "version", "");
	cJSON_Delete(b);
	assert_row_matches_body(path, before, wall_ms());
	telespool_close(sp);
}

/* Raw text of the newest body. */
static char *last_body_text(const char *path)
{
	return path_text(path,
			 "SELECT body FROM events ORDER BY id DESC LIMIT 1");
}

/* What is stored has been cleaned and redacted: in the body and in the
 * columns alike. */
static void test_redacted_end_to_end(void)
{
	char path[600];
	path_in(path, sizeof(path), "redact.db");
	telespool *sp = open_ok(path, NULL);
	if (sp == NULL)
		return;
	telespool_query q = TELESPOOL_QUERY_INIT;
	q.query_id = "q-r";
	q.adapter = "TelegramAdapter";
	q.runner = "local-agent";
	q.model_name = "gpt\xff-4o"; /* invalid UTF-8 */
	q.error = "Traceback (most recent call last):\n  File \"a.py\", line 3,"
		  " in f\nValueError: login failed for alice@example.com "
		  "password=hunter2secret\n";
	ASSERT_EQ(telespool_record_query(sp, &q), TELESPOOL_OK);
	char *body = last_body_text(path);
	char *err = path_text(path, "SELECT error FROM events ORDER BY id DESC "
				    "LIMIT 1");
	char *model =
	    path_text(path, "SELECT model_name FROM events ORDER BY id"
			    " DESC LIMIT 1");
	ASSERT_NOT_CONTAINS(body, "alice@example.com");
	ASSERT_NOT_CONTAINS(body, "hunter2secret");
	ASSERT_NOT_CONTAINS(err, "alice@example.com");
	ASSERT_NOT_CONTAINS(err, "hunter2secret");
	ASSERT_CONTAINS(err, "<redacted:");
	ASSERT_CONTAINS(err, "ValueError");
	ASSERT_CONTAINS(body, "gpt\xef\xbf\xbd-4o"); /* U+FFFD */
	ASSERT_STREQ(model, "gpt\xef\xbf\xbd-4o");
	cJSON *j = body ? cJSON_Parse(body) : NULL;
	ASSERT_TRUE(j != NULL);
	cJSON_Delete(j);
	free(body);
	free(err);
	free(model);

	ASSERT_EQ(
	    telespool_record_survey_response(
		sp, "s-r", "{\"comment\": \"write to bob@example.org\"}", 1),
	    TELESPOOL_OK);
	body = last_body_text(path);
	ASSERT_NOT_CONTAINS(body, "bob@example.org");
	ASSERT_CONTAINS(body, "\"comment\"");
	free(body);
	telespool_close(sp);

	/* strict_errors keeps frames and exception types, no messages. */
	path_in(path, sizeof(path), "redact-strict.db");
	telespool_options o = TELESPOOL_OPTIONS_INIT;
	o.strict_errors = 1;
	sp = open_ok(path, &o);
	if (sp == NULL)
		return;
	q.model_name = "gpt-4o";
	q.error =
	    "Traceback (most recent call last):\n  File \"a.py\", line 3,"
	    " in f\n    run()\nValueError: the user asked about holidays\n";
	ASSERT_EQ(telespool_record_query(sp, &q), TELESPOOL_OK);
	err = path_text(path,
			"SELECT error FROM events ORDER BY id DESC LIMIT 1");
	ASSERT_NOT_CONTAINS(err, "holidays");
	ASSERT_CONTAINS(err, "ValueError");
	ASSERT_CONTAINS(err, "a.py");
	free(err);
	telespool_close(sp);
}

/* Whatever the caller passes, a body stays within 64 KiB and keeps its
 * shape. */
static void test_body_caps(void)
{
	char path[600];
	path_in(path, sizeof(path), "caps.db");
	telespool *sp = open_ok(path, NULL);
	if (sp == NULL)
		return;

	/* 100 plugins: 64 kept; 1000-byte names: 128 bytes kept. */
	char longname[1001];
	memset(longname, 'm', 1000);
	longname[1000] = '\0';
	const char *plugins[100];
	for (int i = 0; i < 100; i++)
		plugins[i] = "Plugin";
	telespool_query q = TELESPOOL_QUERY_INIT;
	q.model_name = longname;
	q.adapter = longname;
	q.pipeline_plugins = plugins;
	q.n_pipeline_plugins = 100;
	q.duration_ms = INT64_MAX;
	ASSERT_EQ(telespool_record_query(sp, &q), TELESPOOL_OK);
	cJSON *b = last_body(path);
	const cJSON *arr =
	    cJSON_GetObjectItemCaseSensitive(b, "pipeline_plugins");
	ASSERT_EQ(cJSON_GetArraySize(arr), 64);
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(b, "model_name");
	ASSERT_EQ(cJSON_IsString(m) ? strlen(m->valuestring) : 0, 128);
	cJSON_Delete(b);
	/* duration_ms is a JSON integer: digits only, no exponent. */
	char *text = last_body_text(path);
	const char *d = text ? strstr(text, "\"duration_ms\":") : NULL;
	int digits_only = d != NULL;
	if (d) {
		d += strlen("\"duration_ms\":");
		size_t n = strspn(d, "0123456789");
		digits_only = n > 0 && n < 20 && d[n] == ',';
	}
	ASSERT_TRUE(digits_only);
	free(text);

	/* A heartbeat with far too much in it. */
	size_t cap = 2 * 1024 * 1024, len = 0;
	char *big = malloc(cap);
	len += (size_t)snprintf(big, cap, "{\"nested\": ");
	for (int i = 0; i < 20; i++)
		len += (size_t)snprintf(big + len, cap - len, "{\"d%d\": ", i);
	len += (size_t)snprintf(big + len, cap - len, "1");
	for (int i = 0; i < 20; i++)
		big[len++] = '}';
	for (int i = 0; i < 400 && len + 6000 < cap; i++) {
		len += (size_t)snprintf(big + len, cap - len, ", \"k%03d\": \"",
					i);
		memset(big + len, 'v', 5000);
		len += 5000;
		big[len++] = '"';
	}
	big[len++] = '}';
	big[len] = '\0';
	ASSERT_EQ(telespool_record_heartbeat(sp, big), TELESPOOL_OK);
	ASSERT_EQ(telespool_record_survey_response(sp, "s-big", big, 1),
		  TELESPOOL_OK);
	free(big);
	ASSERT_TRUE(path_int(path,
			     "SELECT max(length(CAST(body AS BLOB))) FROM "
			     "events") <= 65536);
	b = last_body(path);
	ASSERT_TRUE(
	    cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(b, "answers")));
	cJSON_Delete(b);
	telespool_close(sp);
}

static void test_event_ids(void)
{
	char path[600];
	path_in(path, sizeof(path), "ids.db");
	telespool *sp = open_ok(path, NULL);
	if (sp == NULL)
		return;
	for (int i = 0; i < 300; i++)
		if (record_simple(sp, "id") != TELESPOOL_OK)
			TU_FAIL("record %d: %s", i, telespool_errmsg(sp));
	telespool_close(sp);
	ASSERT_EQ(path_int(path, "SELECT count(DISTINCT event_id) FROM events"),
		  300);
	sqlite3 *db = raw_open(path);
	sqlite3_stmt *st = NULL;
	int bad = 0;
	if (db && sqlite3_prepare_v2(db, "SELECT event_id FROM events", -1, &st,
				     NULL) == SQLITE_OK) {
		while (sqlite3_step(st) == SQLITE_ROW)
			bad +=
			    !is_uuid4((const char *)sqlite3_column_text(st, 0));
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	ASSERT_EQ(bad, 0);
}

static void test_body_heartbeat(void)
{
	char path[600];
	path_in(path, sizeof(path), "body-heartbeat.db");
	telespool_options o = TELESPOOL_OPTIONS_INIT;
	o.instance_id = "instance_abc";
	o.version = "v4.3.1";
	o.edition = "community";
	o.instance_create_ts = 1700000000;
	telespool *sp = open_ok(path, &o);
	if (sp == NULL)
		return;
	int64_t before = wall_ms();
	ASSERT_EQ(
	    telespool_record_heartbeat(
		sp,
		"{\"bots\": 2, \"pipelines\": 3, \"models\": {\"llm\": 1}}"),
	    TELESPOOL_OK);
	int64_t after = wall_ms();
	cJSON *b = last_body(path);
	static const char *const keys[] = {
	    "event_type",         "instance_id", "version",   "edition",
	    "instance_create_ts", "features",    "timestamp", NULL};
	assert_keys(b, keys);
	assert_str_member(b, "event_type", "instance_heartbeat");
	assert_str_member(b, "instance_id", "instance_abc");
	assert_str_member(b, "version", "v4.3.1");
	assert_str_member(b, "edition", "community");
	assert_int_member(b, "instance_create_ts", 1700000000);
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(b, "features");
	ASSERT_TRUE(cJSON_IsObject(f));
	assert_int_member(f, "bots", 2);
	assert_int_member(f, "pipelines", 3);
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(f, "models");
	assert_int_member(m, "llm", 1);
	const cJSON *ts = cJSON_GetObjectItemCaseSensitive(b, "timestamp");
	assert_recent_iso(cJSON_IsString(ts) ? ts->valuestring : NULL, before,
			  after);
	cJSON_Delete(b);
	assert_row_matches_body(path, before, after);
	char *t = path_text(path, "SELECT event_type FROM events");
	ASSERT_STREQ(t, "instance_heartbeat");
	free(t);

	ASSERT_EQ(telespool_record_heartbeat(sp, NULL), TELESPOOL_OK);
	b = last_body(path);
	f = cJSON_GetObjectItemCaseSensitive(b, "features");
	ASSERT_TRUE(cJSON_IsObject(f) && f->child == NULL);
	cJSON_Delete(b);
	telespool_close(sp);
}

static void test_body_surveys(void)
{
	char path[600];
	path_in(path, sizeof(path), "body-survey.db");
	telespool_options o = TELESPOOL_OPTIONS_INIT;
	o.instance_id = "instance_abc";
	o.version = "v4.3.1";
	telespool *sp = open_ok(path, &o);
	if (sp == NULL)
		return;

	int64_t before = wall_ms();
	ASSERT_EQ(
	    telespool_record_survey_trigger(sp, "first_bot_response_success"),
	    TELESPOOL_OK);
	cJSON *b = last_body(path);
	static const char *const kt[] = {"instance_id", "event", NULL};
	assert_keys(b, kt);
	assert_str_member(b, "instance_id", "instance_abc");
	assert_str_member(b, "event", "first_bot_response_success");
	cJSON_Delete(b);
	assert_row_matches_body(path, before, wall_ms());
	/* Checked at most once: the second trigger is a no-op. */
	ASSERT_EQ(
	    telespool_record_survey_trigger(sp, "first_bot_response_success"),
	    TELESPOOL_OK);
	ASSERT_STREQ(telespool_errmsg(sp), "");
	ASSERT_EQ(path_int(path,
			   "SELECT count(*) FROM events WHERE event_type ="
			   " 'survey_trigger'"),
		  1);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM survey_milestones WHERE "
				 "event = 'first_bot_response_success'"),
		  1);
	ASSERT_EQ(
	    telespool_record_survey_trigger(sp, "bot_response_success_100"),
	    TELESPOOL_OK);
	ASSERT_EQ(path_int(path,
			   "SELECT count(*) FROM events WHERE event_type ="
			   " 'survey_trigger'"),
		  2);

	ASSERT_EQ(telespool_record_survey_response(
		      sp, "s-1",
		      "{\"q1\": \"yes\", \"score\": 4, \"tags\": [\"a\"]}", 1),
		  TELESPOOL_OK);
	b = last_body(path);
	static const char *const kr[] = {"survey_id", "instance_id", "answers",
					 "metadata",  "completed",   NULL};
	assert_keys(b, kr);
	assert_str_member(b, "survey_id", "s-1");
	assert_str_member(b, "instance_id", "instance_abc");
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(b, "answers");
	ASSERT_TRUE(cJSON_IsObject(a));
	assert_str_member(a, "q1", "yes");
	assert_int_member(a, "score", 4);
	const cJSON *md = cJSON_GetObjectItemCaseSensitive(b, "metadata");
	static const char *const km[] = {"version", "instance_id", NULL};
	assert_keys(md, km);
	assert_str_member(md, "version", "v4.3.1");
	assert_str_member(md, "instance_id", "instance_abc");
	ASSERT_TRUE(
	    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "completed")));
	cJSON_Delete(b);
	assert_row_matches_body(path, before, wall_ms());
	char *t =
	    path_text(path, "SELECT event_type FROM events ORDER BY id DESC"
			    " LIMIT 1");
	ASSERT_STREQ(t, "survey_response");
	free(t);

	ASSERT_EQ(telespool_record_survey_response(sp, "s-2", "{}", 0),
		  TELESPOOL_OK);
	b = last_body(path);
	ASSERT_TRUE(
	    cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(b, "completed")));
	cJSON_Delete(b);

	ASSERT_EQ(telespool_record_survey_dismiss(sp, "s-3"), TELESPOOL_OK);
	b = last_body(path);
	static const char *const kd[] = {"survey_id", "instance_id", NULL};
	assert_keys(b, kd);
	assert_str_member(b, "survey_id", "s-3");
	cJSON_Delete(b);
	t = path_text(path, "SELECT event_type FROM events ORDER BY id DESC"
			    " LIMIT 1");
	ASSERT_STREQ(t, "survey_dismiss");
	free(t);
	telespool_close(sp);

	ASSERT_EQ(path_int(path,
			   "SELECT count(*) FROM surveys WHERE survey_id ="
			   " 's-1' AND state = 'answered' AND closed_at IS"
			   " NOT NULL"),
		  1);
	ASSERT_EQ(path_int(path,
			   "SELECT count(*) FROM surveys WHERE survey_id ="
			   " 's-3' AND state = 'dismissed'"),
		  1);
}

static void test_pending_survey(void)
{
	char path[600];
	path_in(path, sizeof(path), "pending-survey.db");
	telespool *sp = open_ok(path, NULL);
	if (sp == NULL)
		return;
	char *out = (char *)&path;
	ASSERT_EQ(telespool_pending_survey(sp, &out), TELESPOOL_OK);
	ASSERT_TRUE(out == NULL);

	static const char s9[] = "{\"survey_id\":\"s-9\",\"title\":\"How is it "
				 "going?\"}";
	char sql[400];
	snprintf(sql, sizeof(sql),
		 "INSERT INTO surveys (survey_id, body, state, received_at) "
		 "VALUES ('s-9', '%s', 'pending', '2025-01-01T00:00:00.000Z')",
		 s9);
	ASSERT_EQ(path_exec(path, sql), SQLITE_OK);
	ASSERT_EQ(telespool_pending_survey(sp, &out), TELESPOOL_OK);
	ASSERT_STREQ(out, s9);
	telespool_free(out);

	/* The newest of two is offered. */
	ASSERT_EQ(path_exec(path, "INSERT INTO surveys (survey_id, body, state,"
				  " received_at) VALUES ('s-10', "
				  "'{\"survey_id\":\"s-10\"}', 'pending', "
				  "'2025-02-01T00:00:00.000Z')"),
		  SQLITE_OK);
	ASSERT_EQ(telespool_pending_survey(sp, &out), TELESPOOL_OK);
	ASSERT_STREQ(out, "{\"survey_id\":\"s-10\"}");
	telespool_free(out);

	ASSERT_EQ(telespool_record_survey_dismiss(sp, "s-10"), TELESPOOL_OK);
	ASSERT_EQ(telespool_pending_survey(sp, &out), TELESPOOL_OK);
	ASSERT_STREQ(out, s9);
	telespool_free(out);

	ASSERT_EQ(telespool_record_survey_response(sp, "s-9", "{\"q\": 1}", 1),
		  TELESPOOL_OK);
	out = (char *)&path;
	ASSERT_EQ(telespool_pending_survey(sp, &out), TELESPOOL_OK);
	ASSERT_TRUE(out == NULL);
	ASSERT_STREQ(telespool_errmsg(sp), "");
	telespool_close(sp);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM surveys WHERE state = "
				 "'answered'"),
		  1);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM surveys WHERE state = "
				 "'dismissed'"),
		  1);
}

/* ---- bounds: locks, events, bytes, age, disk ---- */

static void check_busy(const char *path, int busy_ms)
{
	telespool_options o = TELESPOOL_OPTIONS_INIT;
	o.busy_timeout_ms = busy_ms;
	int bound = busy_ms ? busy_ms : TELESPOOL_DEFAULT_BUSY_TIMEOUT_MS;
	telespool *sp = open_ok(path, &o);
	if (sp == NULL)
		return;
	ASSERT_EQ(record_simple(sp, "before"), TELESPOOL_OK);
	int64_t n = count_events(path);

	sqlite3 *other = raw_open(path);
	ASSERT_EQ(raw_exec(other, "BEGIN EXCLUSIVE"), SQLITE_OK);

	int64_t t0 = mono_ms();
	ASSERT_EQ(record_simple(sp, "blocked"), TELESPOOL_EBUSY);
	int64_t took = mono_ms() - t0;
	ASSERT_CONTAINS(telespool_errmsg(sp), "locked");
	if (took > bound + 200 || took < bound - 20)
		TU_FAIL("EBUSY after %lld ms with busy_timeout_ms %d",
			(long long)took, bound);
	else
		tu_passed++;

	t0 = mono_ms();
	ASSERT_EQ(telespool_record_heartbeat(sp, NULL), TELESPOOL_EBUSY);
	took = mono_ms() - t0;
	ASSERT_TRUE(took <= bound + 200);

	/* Opening an existing spool needs no write lock. */
	t0 = mono_ms();
	telespool *sp2 = NULL;
	ASSERT_EQ(telespool_open(&sp2, path, &o), TELESPOOL_OK);
	ASSERT_TRUE(mono_ms() - t0 <= 2 * bound + 200);
	telespool_close(sp2);

	/* Readers are not blocked, and nothing was half-stored. */
	ASSERT_EQ(count_events(path), n);
	ASSERT_EQ(raw_exec(other, "COMMIT"), SQLITE_OK);
	sqlite3_close(other);

	ASSERT_EQ(record_simple(sp, "after"), TELESPOOL_OK);
	ASSERT_STREQ(telespool_errmsg(sp), "");
	ASSERT_EQ(count_events(path), n + 1);
	telespool_close(sp);
}

static void test_busy(void)
{
	char path[600];
	path_in(path, sizeof(path), "busy.db");
	check_busy(path, 0);
	check_busy(path, 50);
	check_busy(path, 400);
}

static void test_max_events(void)
{
	char path[600], qid[32];
	path_in(path, sizeof(path), "max-events.db");
	telespool *sp = past_max_events(path);
	if (sp == NULL)
		return;

	/* The oldest rows go first whatever their state; delivered copies
	 * are not counted as drops.  Mark q50..q59 sent, as an uploader
	 * leaves them (through the queue API: test_spool_internal
	 * max_events_after_upload), then record 10 more: q50..q59 go,
	 * without a drop. */
	ASSERT_EQ(path_exec(path, "UPDATE spool SET state = 'sent',"
				  " attempts = 1, sent_at = strftime("
				  "'%Y-%m-%dT%H:%M:%fZ') WHERE id IN (SELECT id"
				  " FROM events ORDER BY id LIMIT 10)"),
		  SQLITE_OK);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM sent WHERE"
				 " body LIKE '%\"q5_\"%'"),
		  10);
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

static void test_max_bytes(void)
{
	char path[600], qid[32];
	path_in(path, sizeof(path), "max-bytes.db");
	telespool_options o = TELESPOOL_OPTIONS_INIT;
	o.max_bytes = 2 * 65536;
	telespool *sp = open_ok(path, &o);
	if (sp == NULL)
		return;
	char *tb = traceback_text(20000);
	int over = 0, file_over = 0;
	for (int i = 0; i < 30; i++) {
		snprintf(qid, sizeof(qid), "b%d", i);
		if (record_with_error(sp, qid, tb) != TELESPOOL_OK)
			TU_FAIL("record %d: %s", i, telespool_errmsg(sp));
		/* The file's used pages: the event just stored may overshoot
		 * by at most itself. */
		if (path_int(path,
			     "SELECT (page_count - freelist_count) *"
			     " page_size FROM pragma_page_count(),"
			     " pragma_freelist_count(), pragma_page_size()") >
		    o.max_bytes + 65536)
			over++;
		/* Room is made before the event goes in, so the file itself
		 * (free pages too) need not grow past the bound: a disk that
		 * fits max_bytes is enough. */
		if (path_int(path, "SELECT page_count * page_size FROM"
				   " pragma_page_count(), pragma_page_size()") >
		    o.max_bytes)
			file_over++;
	}
	ASSERT_EQ(over, 0);
	ASSERT_EQ(file_over, 0);
	int64_t kept = count_events(path);
	ASSERT_TRUE(kept >= 1 && kept < 30);
	ASSERT_EQ(drops_of(path, "evicted_max_bytes") + kept, 30);
	char *last = path_text(path, "SELECT query_id FROM events ORDER BY id "
				     "DESC LIMIT 1");
	ASSERT_STREQ(last, "b29");
	free(last);

	/* The largest possible event still fits alone. */
	char *huge = traceback_text(300000);
	ASSERT_EQ(record_with_error(sp, "huge", huge), TELESPOOL_OK);
	ASSERT_EQ(count_events(path) >= 1, 1);
	ASSERT_TRUE(path_int(path, "SELECT max(length(body)) FROM events") <=
		    65536);
	free(huge);
	free(tb);
	telespool_close(sp);
}

static void test_max_age(void)
{
	char path[600];
	path_in(path, sizeof(path), "max-age.db");
	telespool *sp = open_ok(path, NULL);
	telespool_close(sp);

	/* Ten events recorded three days ago, before this handle opened. */
	char old[32];
	iso_ms(wall_ms() - 3LL * 86400000, old);
	for (int i = 0; i < 10; i++) {
		char sql[600];
		snprintf(
		    sql, sizeof(sql),
		    "INSERT INTO spool (event_id, event_type, body, "
		    "next_attempt_at, created_at, size) VALUES "
		    "('00000000-0000-4000-8000-%012d', 'query', '{}', '%s', "
		    "'%s', 100)",
		    i, old, old);
		ASSERT_EQ(path_exec(path, sql), SQLITE_OK);
	}
	telespool_options o = TELESPOOL_OPTIONS_INIT;
	o.max_age_days = 1;
	sp = open_ok(path, &o);
	if (sp == NULL)
		return;
	for (int i = 0; i < 70; i++)
		ASSERT_EQ(record_simple(sp, "new"), TELESPOOL_OK);
	ASSERT_EQ(drops_of(path, "evicted_max_age"), 10);
	ASSERT_EQ(count_events(path), 70);
	ASSERT_EQ(path_int(path,
			   "SELECT count(*) FROM events WHERE created_at <"
			   " strftime('%Y-%m-%dT%H:%M:%fZ', 'now', "
			   "'-1 day')"),
		  0);

	/* Sent copies are not "evicted by age" (retention is the uploader's
	 * business), even when old. */
	ASSERT_EQ(path_exec(path,
			    "UPDATE spool SET state = 'sent', created_at ="
			    " '2000-01-01T00:00:00.000Z' WHERE id IN "
			    "(SELECT id FROM events ORDER BY id LIMIT 5)"),
		  SQLITE_OK);
	for (int i = 0; i < 70; i++)
		ASSERT_EQ(record_simple(sp, "newer"), TELESPOOL_OK);
	ASSERT_EQ(drops_of(path, "evicted_max_age"), 10);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM events WHERE state = "
				 "'sent'"),
		  5);
	telespool_close(sp);
}

/* Lowers the file size limit to 512 KiB (saved, if not NULL, keeps the old
 * one): a full disk for a child (in_child()).  0, or -1 (the case failed). */
static int limit_file_size(struct rlimit *saved)
{
	struct rlimit lim;
	signal(SIGXFSZ, SIG_IGN);
	getrlimit(RLIMIT_FSIZE, &lim);
	if (saved)
		*saved = lim;
	lim.rlim_cur = 512 * 1024;
	if (setrlimit(RLIMIT_FSIZE, &lim) == 0)
		return 0;
	TU_FAIL("setrlimit: %s", strerror(errno));
	return -1;
}

/* Records 16 KB tracebacks until one is refused with TELESPOOL_EFULL. */
static void fill_until_full(telespool *sp)
{
	char *tb = traceback_text(16000);
	int rc = TELESPOOL_OK;
	for (int i = 0; i < 500 && rc == TELESPOOL_OK; i++)
		rc = record_with_error(sp, "fill", tb);
	free(tb);
	ASSERT_EQ(rc, TELESPOOL_EFULL);
}

/* In a child: opens path, records one event, then fills the file up to a
 * 512 KiB size limit (saved keeps the old limit).  The handle, or NULL. */
static telespool *filled_under_a_size_limit(const char *path,
					    struct rlimit *saved)
{
	telespool *sp = open_ok(path, NULL);
	if (sp == NULL)
		return NULL;
	ASSERT_EQ(record_simple(sp, "first"), TELESPOOL_OK);
	if (limit_file_size(saved) != 0) {
		telespool_close(sp);
		return NULL;
	}
	fill_until_full(sp);
	return sp;
}

/* In a child: a file size limit stands in for a full disk. */
static void full_disk_child(const char *path)
{
	struct rlimit saved;
	telespool *sp = filled_under_a_size_limit(path, &saved);
	if (sp == NULL)
		return;
	ASSERT_CONTAINS(telespool_errmsg(sp), "full");
	char *tb = traceback_text(16000);
	int64_t stored = count_events(path);
	ASSERT_EQ(record_with_error(sp, "again", tb), TELESPOOL_EFULL);
	ASSERT_EQ(count_events(path), stored); /* nothing half-stored */

	setrlimit(RLIMIT_FSIZE, &saved);
	ASSERT_EQ(record_simple(sp, "room again"), TELESPOOL_OK);
	ASSERT_STREQ(telespool_errmsg(sp), "");
	ASSERT_EQ(record_simple(sp, "and again"), TELESPOOL_OK);
	telespool_close(sp);
	ASSERT_EQ(drops_of(path, "disk_full"), 2);
	ASSERT_EQ(count_events(path), stored + 2);
	free(tb);
}

static void test_full_disk(void)
{
	char path[600];
	path_in(path, sizeof(path), "full.db");
	in_child(full_disk_child, path);
}

/* ---- the WAL's disk bound ---- */

static int64_t size_of(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}

/*
 * A reader holding a transaction open keeps every checkpoint from resetting
 * the WAL.  Two handles record meanwhile: the file and its WAL stay within
 * max_bytes + the WAL bound + a record call per handle, what cannot be
 * stored is refused with TELESPOOL_EFULL and counted as wal_pinned, and
 * once the reader lets go recording works again with nothing acknowledged
 * lost.
 */
static void test_wal_bound(void)
{
	char path[600], wal[700], qid[32];
	path_in(path, sizeof(path), "walbound.db");
	snprintf(wal, sizeof(wal), "%s-wal", path);
	telespool_options o = TELESPOOL_OPTIONS_INIT;
	o.max_bytes = 8 * 1024 * 1024;
	int64_t allowed =
	    o.max_bytes + wal_bound_of(o.max_bytes) + 2 * 512 * 1024;
	telespool *sp[2] = {open_ok(path, &o), open_ok(path, &o)};
	if (sp[0] == NULL || sp[1] == NULL)
		return;
	ASSERT_EQ(record_simple(sp[0], "before"), TELESPOOL_OK);
	sqlite3 *reader = raw_open(path);
	ASSERT_EQ(raw_exec(reader, "BEGIN"), SQLITE_OK);
	ASSERT_EQ(raw_int(reader, "SELECT count(*) FROM spool"), 1);

	char *tb = traceback_text(1500);
	int64_t ok = 1, refused = 0, peak = 0;
	for (int i = 0; i < 2000; i++) {
		snprintf(qid, sizeof(qid), "w%d", i);
		int rc = record_with_error(sp[i % 2], qid, tb);
		if (rc == TELESPOOL_OK) {
			ok++;
		} else if (rc == TELESPOOL_EFULL) {
			if (refused++ == 0)
				ASSERT_CONTAINS(telespool_errmsg(sp[i % 2]),
						"wal_pinned");
		} else {
			TU_FAIL("record: %s", telespool_errmsg(sp[i % 2]));
			break;
		}
		int64_t foot = size_of(path) + size_of(wal);
		if (foot > peak)
			peak = foot;
	}
	ASSERT_TRUE(refused > 0);
	if (peak > allowed)
		TU_FAIL("file + WAL reached %lld bytes, bound %lld",
			(long long)peak, (long long)allowed);
	else
		tu_passed++;

	/* (Nor does the uploader claim anything meanwhile:
	 * test_spool_internal wal_bound_claim.) */

	/* The reader lets go: recording works again (a full WAL retries its
	 * checkpoint every 10 ms), on both handles. */
	ASSERT_EQ(raw_exec(reader, "COMMIT"), SQLITE_OK);
	sqlite3_close(reader);
	for (int h = 0; h < 2; h++) {
		int rc = TELESPOOL_EFULL;
		for (int64_t end = mono_ms() + 10000;
		     rc == TELESPOOL_EFULL && mono_ms() < end;)
			rc = record_with_error(sp[h], "after", tb);
		ASSERT_EQ(rc, TELESPOOL_OK);
		ok += rc == TELESPOOL_OK;
	}
	free(tb);
	/* Refusals while waiting for the retry are counted as well. */
	telespool_close(sp[0]);
	telespool_close(sp[1]);
	int64_t stored = count_events(path);
	int64_t counted = drops_of(path, "wal_pinned");
	ASSERT_EQ(stored, ok);
	ASSERT_TRUE(counted >= refused);
	printf("FAULT: a reader pins the WAL while 2 handles record: tried "
	       "%lld times, lost %lld (refused and counted as wal_pinned: "
	       "%lld; peak file + WAL %lld KiB, bound %lld KiB)\n",
	       (long long)ok, (long long)(ok - stored), (long long)counted,
	       (long long)peak / 1024, (long long)allowed / 1024);
}

/* ---- drops the caller counts (telespool_count_drops) ---- */

/* Every argument check, and counts that add up per reason with last_at. */
static void test_count_drops(void)
{
	char path[600], longest[TELESPOOL_DROP_REASON_MAX + 2];
	path_in(path, sizeof(path), "count-drops.db");
	telespool *sp = open_ok(path, NULL);
	if (sp == NULL)
		return;
	ASSERT_EQ(telespool_count_drops(NULL, "queue_full", 1),
		  TELESPOOL_EINVAL);

	static const struct {
		const char *reason;
		const char *why;
	} bad[] = {
	    {NULL, "is NULL"},
	    {"", "is empty"},
	    {"Queue_full", "a-z, 0-9 and '_'"},
	    {"queue-full", "a-z, 0-9 and '_'"},
	    {"queue full", "a-z, 0-9 and '_'"},
	    {"queue_f\xc3\xbcll", "a-z, 0-9 and '_'"},
	    {"disk_full", "counts itself"},
	    {"wal_pinned", "counts itself"},
	    {"evicted_max_events", "counts itself"},
	    {"corrupt_spool", "counts itself"},
	    {"expired", "counts itself"},
	    {"rejected", "counts itself"},
	    {"max_attempts", "counts itself"},
	    {"survey_invalid", "counts itself"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ASSERT_EQ(telespool_count_drops(sp, bad[i].reason, 1),
			  TELESPOOL_EINVAL);
		ASSERT_CONTAINS(telespool_errmsg(sp), bad[i].why);
	}
	memset(longest, 'a', sizeof(longest));
	longest[TELESPOOL_DROP_REASON_MAX + 1] = '\0';
	ASSERT_EQ(telespool_count_drops(sp, longest, 1), TELESPOOL_EINVAL);
	ASSERT_CONTAINS(telespool_errmsg(sp), "longer than 40 bytes");

	static const int64_t bad_n[] = {
	    0, -1, INT64_MIN, TELESPOOL_MAX_DROP_COUNT + 1LL, INT64_MAX};
	for (size_t i = 0; i < sizeof(bad_n) / sizeof(bad_n[0]); i++) {
		ASSERT_EQ(telespool_count_drops(sp, "queue_full", bad_n[i]),
			  TELESPOOL_EINVAL);
		ASSERT_CONTAINS(telespool_errmsg(sp), "drop count");
	}
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM drops"), 0);

	ASSERT_EQ(telespool_count_drops(sp, "queue_full", 3), TELESPOOL_OK);
	ASSERT_STREQ(telespool_errmsg(sp), "");
	ASSERT_EQ(telespool_count_drops(sp, "queue_full", 2), TELESPOOL_OK);
	ASSERT_EQ(telespool_count_drops(sp, "shutdown", 1), TELESPOOL_OK);
	ASSERT_EQ(telespool_count_drops(sp, "a1_", TELESPOOL_MAX_DROP_COUNT),
		  TELESPOOL_OK);
	longest[TELESPOOL_DROP_REASON_MAX] = '\0';
	ASSERT_EQ(telespool_count_drops(sp, longest, 1), TELESPOOL_OK);
	ASSERT_EQ(drops_of(path, "queue_full"), 5);
	ASSERT_EQ(drops_of(path, "shutdown"), 1);
	ASSERT_EQ(drops_of(path, "a1_"), TELESPOOL_MAX_DROP_COUNT);
	ASSERT_EQ(drops_of(path, longest), 1);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM drops"), 4);
	/* last_at as every other row's: UTC, milliseconds, 'Z'. */
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM drops WHERE last_at "
				 "GLOB '2[0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T"
				 "[0-2][0-9]:[0-5][0-9]:[0-5][0-9].[0-9][0-9]"
				 "[0-9]Z'"),
		  4);
	/* Drops are not events: nothing to send. */
	ASSERT_EQ(count_events(path), 0);
	telespool_close(sp);
}

/* Opted out: nothing counted; bad arguments are still bad. */
static void test_count_drops_disabled(void)
{
	char path[600];
	path_in(path, sizeof(path), "count-drops-disabled.db");
	telespool_options o = TELESPOOL_OPTIONS_INIT;
	o.disabled = 1;
	telespool *sp = open_ok(path, &o);
	if (sp == NULL)
		return;
	ASSERT_EQ(telespool_count_drops(sp, "queue_full", 1),
		  TELESPOOL_EDISABLED);
	ASSERT_CONTAINS(telespool_errmsg(sp), "disabled");
	ASSERT_EQ(telespool_count_drops(sp, "disk_full", 1), TELESPOOL_EINVAL);
	ASSERT_EQ(telespool_count_drops(sp, "queue_full", 0), TELESPOOL_EINVAL);
	telespool_close(sp);
	ASSERT_EQ(path_int(path, "SELECT count(*) FROM drops"), 0);
}

/* A lock held by another process: TELESPOOL_EBUSY after the busy timeout,
 * nothing counted; counted once the lock is gone. */
static void test_count_drops_busy(void)
{
	char path[600];
	path_in(path, sizeof(path), "count-drops-busy.db");
	telespool_options o = TELESPOOL_OPTIONS_INIT;
	o.busy_timeout_ms = 50;
	telespool *sp = open_ok(path, &o);
	if (sp == NULL)
		return;
	sqlite3 *other = raw_open(path);
	ASSERT_EQ(raw_exec(other, "BEGIN EXCLUSIVE"), SQLITE_OK);
	ASSERT_EQ(telespool_count_drops(sp, "queue_full", 4), TELESPOOL_EBUSY);
	ASSERT_CONTAINS(telespool_errmsg(sp), "locked");
	ASSERT_EQ(raw_exec(other, "COMMIT"), SQLITE_OK);
	sqlite3_close(other);
	ASSERT_EQ(drops_of(path, "queue_full"), 0);
	ASSERT_EQ(telespool_count_drops(sp, "queue_full", 4), TELESPOOL_OK);
	ASSERT_EQ(drops_of(path, "queue_full"), 4);
	telespool_close(sp);
}

/* In a child: a file size limit stands in for a full disk.  The caller's
 * drops are kept in memory (16 reasons at most) and written with the next
 * record that gets through, or at close. */
static void count_drops_full_child(const char *path)
{
	struct rlimit saved;
	telespool *sp = filled_under_a_size_limit(path, &saved);
	if (sp == NULL)
		return;
	int rc;
	/* A count is smaller than the event refused: it may still fit the
	 * file's last bytes.  Count until the file takes nothing more. */
	int64_t probes = 0;
	rc = TELESPOOL_OK;
	for (int i = 0; i < 1000 && rc == TELESPOOL_OK; i++, probes++)
		rc = telespool_count_drops(sp, "probe", 1);
	ASSERT_EQ(rc, TELESPOOL_EFULL);
	ASSERT_CONTAINS(telespool_errmsg(sp), "kept in memory");

	ASSERT_EQ(telespool_count_drops(sp, "queue_full", 7), TELESPOOL_EFULL);
	ASSERT_CONTAINS(telespool_errmsg(sp), "kept in memory");
	ASSERT_EQ(telespool_count_drops(sp, "queue_full", 3), TELESPOOL_EFULL);
	char reason[16];
	for (int i = 1; i <= 14; i++) {
		snprintf(reason, sizeof(reason), "r%d", i);
		ASSERT_EQ(telespool_count_drops(sp, reason, i),
			  TELESPOOL_EFULL);
	}
	/* A 17th reason finds no room: not counted, and the caller is told. */
	ASSERT_EQ(telespool_count_drops(sp, "r15", 1), TELESPOOL_ENOMEM);
	ASSERT_CONTAINS(telespool_errmsg(sp), "not counted");
	ASSERT_EQ(drops_of(path, "queue_full"), 0);
	ASSERT_EQ(drops_of(path, "probe"), probes - 1);

	setrlimit(RLIMIT_FSIZE, &saved);
	ASSERT_EQ(record_simple(sp, "room again"), TELESPOOL_OK);
	ASSERT_EQ(drops_of(path, "queue_full"), 10);
	ASSERT_EQ(drops_of(path, "probe"), probes);
	int64_t sum = 0;
	for (int i = 1; i <= 14; i++) {
		snprintf(reason, sizeof(reason), "r%d", i);
		sum += drops_of(path, reason) == i;
	}
	ASSERT_EQ(sum, 14);
	ASSERT_EQ(drops_of(path, "r15"), 0);
	ASSERT_EQ(drops_of(path, "disk_full"), 1);

	/* Kept again, and written by close this time. */
	ASSERT_EQ(limit_file_size(NULL), 0);
	fill_until_full(sp);
	int64_t shut = 0;
	rc = TELESPOOL_OK;
	for (int i = 0; i < 1000 && rc == TELESPOOL_OK; i++, shut += 2)
		rc = telespool_count_drops(sp, "shutdown", 2);
	ASSERT_EQ(rc, TELESPOOL_EFULL);
	setrlimit(RLIMIT_FSIZE, &saved);
	ASSERT_EQ(drops_of(path, "shutdown"), shut - 2);
	telespool_close(sp);
	ASSERT_EQ(drops_of(path, "shutdown"), shut);
	ASSERT_EQ(drops_of(path, "queue_full"), 10);
	ASSERT_EQ(drops_of(path, "disk_full"), 2);
}

static void test_count_drops_full_disk(void)
{
	char path[600];
	path_in(path, sizeof(path), "count-drops-full.db");
	in_child(count_drops_full_child, path);
}

/* The WAL at its bound (a reader holds it): kept in memory as on a full
 * disk, without waiting for the reader. */
static void test_count_drops_wal_pinned(void)
{
	char path[600], qid[32];
	path_in(path, sizeof(path), "count-drops-wal.db");
	telespool_options o = TELESPOOL_OPTIONS_INIT;
	o.max_bytes = 2 * 1024 * 1024;
	telespool *sp = open_ok(path, &o);
	if (sp == NULL)
		return;
	ASSERT_EQ(record_simple(sp, "before"), TELESPOOL_OK);
	sqlite3 *reader = raw_open(path);
	ASSERT_EQ(raw_exec(reader, "BEGIN"), SQLITE_OK);
	ASSERT_EQ(raw_int(reader, "SELECT count(*) FROM spool"), 1);
	char *tb = traceback_text(1500);
	int rc = TELESPOOL_OK;
	for (int i = 0; i < 5000 && rc == TELESPOOL_OK; i++) {
		snprintf(qid, sizeof(qid), "w%d", i);
		rc = record_with_error(sp, qid, tb);
	}
	free(tb);
	ASSERT_EQ(rc, TELESPOOL_EFULL);
	ASSERT_EQ(telespool_count_drops(sp, "queue_full", 5), TELESPOOL_EFULL);
	ASSERT_CONTAINS(telespool_errmsg(sp), "write-ahead log");
	ASSERT_CONTAINS(telespool_errmsg(sp), "kept in memory");
	ASSERT_EQ(raw_exec(reader, "COMMIT"), SQLITE_OK);
	sqlite3_close(reader);
	ASSERT_EQ(drops_of(path, "queue_full"), 0);
	/* The reader gone, a record gets through (a full WAL retries its
	 * checkpoint every few ms) and brings the count along. */
	rc = TELESPOOL_EFULL;
	for (int64_t end = mono_ms() + 10000;
	     rc == TELESPOOL_EFULL && mono_ms() < end;)
		rc = record_simple(sp, "after");
	ASSERT_EQ(rc, TELESPOOL_OK);
	ASSERT_EQ(drops_of(path, "queue_full"), 5);
	telespool_close(sp);
}

/* ---- LangBot's payloads as they are (telespool_record_json) ---- */

/* Records payload through the generic path and checks the stored body is
 * exactly want (and its event_type column). */
static void expect_json_body(telespool *sp, const char *path,
			     const char *payload, const char *want,
			     const char *type)
{
	int rc = telespool_record_json(sp, payload);
	if (rc != TELESPOOL_OK) {
		TU_FAIL("record_json %s: %s: %s", payload,
			telespool_strerror(rc), telespool_errmsg(sp));
		return;
	}
	char *got = last_body_text(path);
	ASSERT_STREQ(got, want);
	free(got);
	char *t = path_text(path, "SELECT event_type FROM events ORDER BY id "
				  "DESC LIMIT 1");
	ASSERT_STREQ(t, type);
	free(t);
}

static void test_record_json_bytes(void)
{
	char path[600];
	path_in(path, sizeof(path), "record-json.db");
	telespool *sp = open_ok(path, NULL);
	if (sp == NULL)
		return;
	/* Numbers as Python prints them: floats in repr, ints exactly. */
	expect_json_body(
	    sp, path,
	    "{\"event_type\":\"query\",\"query_id\":12,\"duration_ms\":812.9,"
	    "\"features\":{\"f\":1.0,\"e\":1E-7,\"n\":-0,\"z\":-0.0,\"big\":"
	    "123456789012345678901234567890,\"x\":1e16,\"y\":1e15,\"p\":0.1,"
	    "\"q\":2.5e-5,\"r\":123.456e2,\"s\":5e-324,\"t\":"
	    "1.7976931348623157e308,\"u\":0.0001}}",
	    "{\"event_type\":\"query\",\"query_id\":\"12\",\"duration_ms\":812,"
	    "\"features\":{\"f\":1.0,\"e\":1e-07,\"n\":0,\"z\":-0.0,\"big\":"
	    "123456789012345678901234567890,\"x\":1e+16,\"y\":"
	    "1000000000000000.0,\"p\":0.1,\"q\":2.5e-05,\"r\":12345.6,\"s\":"
	    "5e-324,\"t\":1.7976931348623157e+308,\"u\":0.0001}}",
	    "query");
	/* Strings: only '"', '\\' and control characters escaped; a missing
	 * event_type is added last, as LangBot's sender does. */
	expect_json_body(
	    sp, path,
	    " { \"a\" : \"x\\u00e9\\ud83d\\ude00\\u2028\\/\\\"\\\\"
	    "\\n\\tend\" , \"lone\":\"\\udc00\" } ",
	    "{\"a\":\"x\xc3\xa9\xf0\x9f\x98\x80\xe2\x80\xa8/\\\"\\\\"
	    "\\n\\tend\",\"lone\":\"\xef\xbf\xbd\","
	    "\"event_type\":\"query\"}",
	    "query");
	/* The sender's str(): None "", True "True", numbers their text; an
	 * empty event_type becomes "query" in its place. */
	expect_json_body(
	    sp, path,
	    "{\"event_type\":\"\",\"adapter\":true,\"runner\":false,"
	    "\"model_name\":null,\"version\":4.10,\"edition\":3,\"error\":"
	    "null,\"timestamp\":1e2,\"query_id\":null}",
	    "{\"event_type\":\"query\",\"adapter\":\"True\",\"runner\":"
	    "\"False\",\"model_name\":\"\",\"version\":\"4.1\",\"edition\":"
	    "\"3\",\"error\":\"\",\"timestamp\":\"100.0\",\"query_id\":\"\"}",
	    "query");
	expect_json_body(
	    sp, path,
	    "{\"event_type\":\"instance_heartbeat\",\"features\":"
	    "[1],\"pipeline_plugins\":null,\"x\":[]}",
	    "{\"event_type\":\"instance_heartbeat\",\"features\":{},"
	    "\"pipeline_plugins\":null,\"x\":[]}",
	    "instance_heartbeat");
	/* Another event type LangBot may add: kept, sent to telemetry. */
	expect_json_body(sp, path, "{\"event_type\":\"plugin_installed\"}",
			 "{\"event_type\":\"plugin_installed\"}", "query");
	/* Keys that cleaning makes equal: the first one stays. */
	expect_json_body(sp, path, "{\"a\\u0000\":1,\"a\":2}",
			 "{\"a\":1,\"event_type\":\"query\"}", "query");
	/* A repeated key keeps its first place and its last value. */
	expect_json_body(sp, path, "{\"a\":1,\"b\":2,\"a\":{\"c\":3}}",
			 "{\"a\":{\"c\":3},\"b\":2,\"event_type\":\"query\"}",
			 "query");
	/* duration_ms: Python's int(), 0 when it fails, clamped. */
	static const char *const durations[][2] = {
	    {"\" 1_200 \"", "1200"},
	    {"\"12.5\"", "0"},
	    {"null", "0"},
	    {"-5", "0"},
	    {"1e300", "1000000000000"},
	    {"true", "1"},
	    {"false", "0"},
	    {"\"1__2\"", "0"},
	    {"[1]", "0"},
	    {"\"+07\"", "7"},
	    {"99.99", "99"},
	    {"\"\"", "0"},
	    {"\"_1\"", "0"},
	    {"{}", "0"},
	    {"123456789012345678901234567890", "1000000000000"}};
	for (size_t i = 0; i < sizeof(durations) / sizeof(durations[0]); i++) {
		char in[128], want[128];
		snprintf(in, sizeof(in), "{\"duration_ms\":%s}",
			 durations[i][0]);
		snprintf(want, sizeof(want),
			 "{\"duration_ms\":%s,\"event_type\":\"query\"}",
			 durations[i][1]);
		expect_json_body(sp, path, in, want, "query");
	}
	/* Cleaning: names trimmed, secrets redacted at any depth. */
	char *before = NULL;
	ASSERT_EQ(telespool_record_json(
		      sp, "{\"model_name\":\"  gpt-4o \",\"features\":{\"a\":"
			  "{\"b\":[\"key sk-proj-abcdefghijklmnopqrstuvwxyz0123"
			  "456789ABCD\"]}}}"),
		  TELESPOOL_OK);
	before = last_body_text(path);
	ASSERT_TRUE(before && strstr(before, "\"model_name\":\"gpt-4o\""));
	ASSERT_TRUE(before && strstr(before, "<redacted:") != NULL);
	ASSERT_TRUE(before && strstr(before, "abcdefghijklmnop") == NULL);
	free(before);
	telespool_close(sp);
}

static void expect_json_einval(telespool *sp, const char *payload,
			       const char *says)
{
	ASSERT_EQ(telespool_record_json(sp, payload), TELESPOOL_EINVAL);
	const char *msg = telespool_errmsg(sp);
	if (strstr(msg, says) == NULL)
		TU_FAIL("\"%s\" does not contain \"%s\"", msg, says);
	else
		tu_passed++;
}

static char *nested(int depth)
{
	char *s = malloc((size_t)depth * 6 + 16);
	size_t n = 0;
	for (int i = 0; i < depth; i++)
		n += (size_t)sprintf(s + n, "{\"a\":");
	n += (size_t)sprintf(s + n, "1");
	for (int i = 0; i < depth; i++)
		s[n++] = '}';
	s[n] = '\0';
	return s;
}

static void test_record_json_einval(void)
{
	char path[600];
	path_in(path, sizeof(path), "record-json-einval.db");
	telespool *sp = open_ok(path, NULL);
	if (sp == NULL)
		return;
	ASSERT_EQ(telespool_record_json(NULL, "{}"), TELESPOOL_EINVAL);
	expect_json_einval(sp, NULL, "payload_json is NULL");
	expect_json_einval(sp, "", "not a JSON object");
	expect_json_einval(sp, "not json", "not a JSON object");
	expect_json_einval(sp, "[1]", "not a JSON object");
	expect_json_einval(sp, "\"s\"", "not a JSON object");
	expect_json_einval(sp, "{} x", "text after the JSON value");
	expect_json_einval(sp, "{\"a\":1,}", "not a JSON object");
	expect_json_einval(sp, "{\"a\":NaN}", "NaN");
	expect_json_einval(sp, "{\"a\":Infinity}", "NaN and Infinity");
	expect_json_einval(sp, "{\"a\":-Infinity}", "Infinity");
	expect_json_einval(sp, "{\"a\":1e400}", "Infinity");
	expect_json_einval(sp, "{\"a\":\"x\ny\"}", "control character");
	expect_json_einval(sp, "{\"a\":\"\\q\"}", "bad escape");
	expect_json_einval(sp, "{\"adapter\":[1]}", "str()");
	expect_json_einval(sp, "{\"query_id\":{}}", "str()");
	char *deep = nested(600);
	expect_json_einval(sp, deep, "deeper than 512");
	free(deep);
	char *digits = malloc(4400);
	memcpy(digits, "{\"a\":", 5);
	memset(digits + 5, '7', 4301);
	memcpy(digits + 5 + 4301, "}", 2);
	expect_json_einval(sp, digits, "4300 digits");
	size_t huge = 4 * 1024 * 1024 + 16;
	char *big = malloc(huge + 1);
	memset(big, ' ', huge);
	memcpy(big, "{}", 2);
	big[huge] = '\0';
	expect_json_einval(sp, big, "larger than 4 MiB");
	free(big);
	ASSERT_EQ(telespool_record_json_to(sp, "/api/v1/other", "{}"),
		  TELESPOOL_EINVAL);
	ASSERT_EQ(telespool_record_json_to(sp, "/api/v1/survey/pending",
					   "{\"event\":\"\"}"),
		  TELESPOOL_EINVAL);
	ASSERT_EQ(telespool_record_json_to(sp, "/api/v1/survey/respond",
					   "{\"answers\":{}}"),
		  TELESPOOL_EINVAL);
	ASSERT_EQ(count_events(path), 0); /* nothing stored */

	/* At the limits: accepted. */
	digits[5 + 4300] = '}';
	digits[5 + 4301] = '\0';
	ASSERT_EQ(telespool_record_json(sp, digits), TELESPOOL_OK);
	free(digits);
	deep = nested(500);
	ASSERT_EQ(telespool_record_json(sp, deep), TELESPOOL_OK);
	free(deep);
	char *body = last_body_text(path);
	/* Containers nested 9 levels down are dropped (a cap). */
	ASSERT_STREQ(body, "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
			   "{\"a\":{}}}}}}}},\"event_type\":\"query\"}");
	free(body);
	ASSERT_EQ(count_events(path), 2);
	telespool_close(sp);

	/* Opted out: nothing stored, whatever the payload. */
	telespool_options o = TELESPOOL_OPTIONS_INIT;
	o.disabled = 1;
	sp = open_ok(path, &o);
	if (sp == NULL)
		return;
	ASSERT_EQ(telespool_record_json(sp, "{}"), TELESPOOL_EDISABLED);
	ASSERT_EQ(count_events(path), 2);
	telespool_close(sp);
}

static void test_record_json_caps(void)
{
	char path[600];
	path_in(path, sizeof(path), "record-json-caps.db");
	telespool *sp = open_ok(path, NULL);
	if (sp == NULL)
		return;
	/* A 1 MiB traceback with escapes: stored, cut to fit 64 KiB. */
	size_t n = 1024 * 1024;
	char *p = malloc(n + 64);
	size_t k = (size_t)sprintf(p, "{\"error\":\"");
	while (k < n)
		k += (size_t)sprintf(p + k, "  File \\\"x.py\\\", line 1\\n");
	k += (size_t)sprintf(p + k, "ValueError: end\"}");
	ASSERT_EQ(telespool_record_json(sp, p), TELESPOOL_OK);
	free(p);
	char *body = last_body_text(path);
	ASSERT_TRUE(body && strlen(body) <= 65536 && strlen(body) > 40000);
	ASSERT_TRUE(body && strstr(body, "ValueError: end") != NULL);
	free(body);
	/* 300 members: 256 kept; a 5,000-byte string: capped at 4 KiB. */
	p = malloc(300 * 16 + 5100);
	k = (size_t)sprintf(p, "{\"s\":\"");
	memset(p + k, 'x', 5000);
	k += 5000;
	k += (size_t)sprintf(p + k, "\"");
	for (int i = 0; i < 299; i++)
		k += (size_t)sprintf(p + k, ",\"k%d\":%d", i, i);
	sprintf(p + k, "}");
	ASSERT_EQ(telespool_record_json(sp, p), TELESPOOL_OK);
	free(p);
	cJSON *b = last_body(path);
	ASSERT_EQ(cJSON_GetArraySize(b), 256);
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(b, "s");
	ASSERT_TRUE(cJSON_IsString(s) && strlen(s->valuestring) <= 4096 &&
		    strlen(s->valuestring) > 3000);
	cJSON_Delete(b);
	telespool_close(sp);
}

static const char *const query2_keys[] = {"event_type",
					  "query_id",
					  "adapter",
					  "runner",
					  "runner_category",
					  "duration_ms",
					  "model_name",
					  "version",
					  "instance_id",
					  "workspace_uuid",
					  "runtime_instance_id",
					  "edition",
					  "pipeline_plugins",
					  "features",
					  "error",
					  "timestamp",
					  NULL};

/* The newest body, recorded again through the generic path, is stored
 * unchanged: the typed call and record_json() agree byte for byte. */
static void assert_generic_agrees(telespool *sp, const char *path)
{
	char *typed = last_body_text(path);
	ASSERT_EQ(telespool_record_json(sp, typed), TELESPOOL_OK);
	char *generic = last_body_text(path);
	ASSERT_STREQ(generic, typed);
	free(typed);
	free(generic);
}

static int is_python_iso(const char *s, int aware)
{
	const char *shape = "dddd-dd-ddTdd:dd:dd";
	size_t n = strlen(s), i;
	for (i = 0; shape[i]; i++)
		if (i >= n || (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9')
					       : s[i] != shape[i]))
			return 0;
	if (s[i] == '.') {
		for (int j = 1; j <= 6; j++)
			if (s[i + (size_t)j] < '0' || s[i + (size_t)j] > '9')
				return 0;
		i += 7;
	}
	return strcmp(s + i, aware ? "+00:00" : "") == 0;
}

static void test_body_query_v2(void)
{
	char path[600];
	path_in(path, sizeof(path), "body-query-v2.db");
	telespool_options o = TELESPOOL_OPTIONS_INIT;
	o.instance_id = "instance_rt";
	o.version = "v4.10.8";
	o.edition = "community";
	telespool *sp = open_ok(path, &o);
	if (sp == NULL)
		return;
	const char *plugins[] = {"hello", NULL, "weather"};
	telespool_query q = TELESPOOL_QUERY_INIT;
	ASSERT_EQ(q.struct_version, 2);
	q.query_id = "42";
	q.adapter = "TelegramAdapter";
	q.runner = "local-agent";
	q.runner_category = "agent";
	q.model_name = "gpt-4o";
	q.duration_ms = 812;
	q.pipeline_plugins = plugins;
	q.n_pipeline_plugins = 3;
	q.features_json = "{\"tool_calls\":{\"mcp\":2},\"score\":1.0}";
	q.instance_id = "instance_q";
	q.workspace_uuid = "ws-1";
	ASSERT_EQ(telespool_record_query(sp, &q), TELESPOOL_OK);
	cJSON *b = last_body(path);
	assert_keys(b, query2_keys);
	assert_str_member(b, "instance_id", "instance_q");
	assert_str_member(b, "runtime_instance_id", "instance_rt");
	assert_str_member(b, "workspace_uuid", "ws-1");
	assert_str_member(b, "edition", "community");
	const cJSON *ts = cJSON_GetObjectItemCaseSensitive(b, "timestamp");
	ASSERT_TRUE(cJSON_IsString(ts) && is_python_iso(ts->valuestring, 0));
	cJSON_Delete(b);
	char *text = last_body_text(path);
	ASSERT_TRUE(text &&
		    strstr(text, "\"pipeline_plugins\":[\"hello\","
				 "\"weather\"],\"features\":{\"tool_calls"
				 "\":{\"mcp\":2},\"score\":1.0},") != NULL);
	free(text);
	/* Migration 0003: the events view shows the new fields. */
	text = path_text(path, "SELECT workspace_uuid || ',' || "
			       "runtime_instance_id || ',' || runner_category"
			       " || ',' || edition || ',' || features FROM "
			       "events ORDER BY id DESC LIMIT 1");
	ASSERT_STREQ(text, "ws-1,instance_rt,agent,community,{\"tool_calls\":"
			   "{\"mcp\":2},\"score\":1.0}");
	free(text);
	assert_generic_agrees(sp, path);

	/* NULL plugins: null ("every plugin"); an empty list: []. */
	telespool_query e = TELESPOOL_QUERY_INIT;
	ASSERT_EQ(telespool_record_query(sp, &e), TELESPOOL_OK);
	text = last_body_text(path);
	ASSERT_TRUE(text && strstr(text, "\"query_id\":\"\",\"adapter\":\"\","
					 "\"runner\":\"\",\"runner_category\":"
					 "\"\",\"duration_ms\":0,") != NULL);
	ASSERT_TRUE(text &&
		    strstr(text, "\"pipeline_plugins\":null,"
				 "\"features\":{},\"error\":\"\",") != NULL);
	free(text);
	assert_generic_agrees(sp, path);
	e.pipeline_plugins = plugins;
	e.n_pipeline_plugins = 0;
	ASSERT_EQ(telespool_record_query(sp, &e), TELESPOOL_OK);
	text = last_body_text(path);
	ASSERT_TRUE(text && strstr(text, "\"pipeline_plugins\":[],") != NULL);
	free(text);

	e.features_json = "[1]";
	ASSERT_EQ(telespool_record_query(sp, &e), TELESPOOL_EINVAL);
	ASSERT_TRUE(strstr(telespool_errmsg(sp), "features_json") != NULL);
	e.features_json = "{\"x\":NaN}";
	ASSERT_EQ(telespool_record_query(sp, &e), TELESPOOL_EINVAL);
	e.struct_version = 3;
	e.features_json = NULL;
	ASSERT_EQ(telespool_record_query(sp, &e), TELESPOOL_EINVAL);

	/* One heartbeat per workspace, LangBot 4.10.8's keys and order. */
	static const char *const hb_keys[] = {"event_type",
					      "query_id",
					      "version",
					      "instance_id",
					      "workspace_uuid",
					      "workspace_create_ts",
					      "instance_create_ts",
					      "edition",
					      "features",
					      "timestamp",
					      NULL};
	telespool_heartbeat hb = TELESPOOL_HEARTBEAT_INIT;
	hb.workspace_uuid = "ws-2";
	hb.workspace_create_ts = 1732000000;
	hb.features_json = "{\"bot_count\":2,\"adapters\":[\"A\",\"B\"]}";
	ASSERT_EQ(telespool_record_workspace_heartbeat(sp, &hb), TELESPOOL_OK);
	b = last_body(path);
	assert_keys(b, hb_keys);
	assert_str_member(b, "event_type", "instance_heartbeat");
	assert_str_member(b, "query_id", "");
	assert_int_member(b, "workspace_create_ts", 1732000000);
	ts = cJSON_GetObjectItemCaseSensitive(b, "timestamp");
	ASSERT_TRUE(cJSON_IsString(ts) && is_python_iso(ts->valuestring, 1));
	cJSON_Delete(b);
	assert_generic_agrees(sp, path);
	ASSERT_EQ(telespool_record_workspace_heartbeat(sp, NULL),
		  TELESPOOL_EINVAL);
	hb.struct_version = 0;
	ASSERT_EQ(telespool_record_workspace_heartbeat(sp, &hb),
		  TELESPOOL_EINVAL);
	telespool_close(sp);
}

static void test_record_json_surveys(void)
{
	char path[600];
	path_in(path, sizeof(path), "record-json-surveys.db");
	telespool *sp = open_ok(path, NULL);
	if (sp == NULL)
		return;
	const char *pending =
	    "{\"instance_id\":\"i\",\"event\":\"first_bot_response_success\"}";
	ASSERT_EQ(
	    telespool_record_json_to(sp, "/api/v1/survey/pending", pending),
	    TELESPOOL_OK);
	ASSERT_EQ(
	    telespool_record_json_to(sp, "/api/v1/survey/pending", pending),
	    TELESPOOL_OK); /* at most once */
	ASSERT_EQ(count_events(path), 1);
	char *t = last_body_text(path);
	ASSERT_STREQ(t, pending);
	free(t);
	const char *respond =
	    "{\"survey_id\":\"s-1\",\"instance_id\":\"i\",\"answers\":{\"q\":"
	    "4.5},\"metadata\":{\"version\":\"v\",\"instance_id\":\"i\"},"
	    "\"completed\":true}";
	ASSERT_EQ(
	    telespool_record_json_to(sp, "/api/v1/survey/respond", respond),
	    TELESPOOL_OK);
	t = last_body_text(path);
	ASSERT_STREQ(t, respond);
	free(t);
	ASSERT_EQ(telespool_record_json_to(sp, "/api/v1/survey/dismiss",
					   "{\"survey_id\":7,\"instance_id\":"
					   "\"i\"}"),
		  TELESPOOL_OK);
	t = path_text(path, "SELECT group_concat(event_type) FROM events");
	ASSERT_STREQ(t, "survey_trigger,survey_response,survey_dismiss");
	free(t);
	/* Survey bodies are not normalised: no event_type is added. */
	t = last_body_text(path);
	ASSERT_STREQ(t, "{\"survey_id\":7,\"instance_id\":\"i\"}");
	free(t);
	/* A long numeric survey id (not an account id) closes its survey. */
	ASSERT_EQ(path_exec(path, "INSERT INTO surveys (survey_id, body, "
				  "received_at) VALUES ('12345678901234', "
				  "'{\"survey_id\":\"12345678901234\"}', "
				  "'2026-01-01T00:00:00.000Z')"),
		  SQLITE_OK);
	char *pending_json = NULL;
	ASSERT_EQ(telespool_pending_survey(sp, &pending_json), TELESPOOL_OK);
	ASSERT_TRUE(pending_json != NULL);
	telespool_free(pending_json);
	ASSERT_EQ(telespool_record_json_to(sp, "/api/v1/survey/dismiss",
					   "{\"survey_id\":\"12345678901234\","
					   "\"instance_id\":\"i\"}"),
		  TELESPOOL_OK);
	ASSERT_EQ(telespool_pending_survey(sp, &pending_json), TELESPOOL_OK);
	ASSERT_TRUE(pending_json == NULL);
	telespool_close(sp);
}

/* Every way an error reaches the spool goes through the traceback guard:
 * the generic path, the typed 4.10.8 call (and its capped fallback), not
 * only the 4.10.6 body.  The guard keeps the exception's type and template
 * and drops the user's words quoted into its message. */
static void test_error_guard_every_path(void)
{
	char path[600];
	path_in(path, sizeof(path), "error-guard.db");
	telespool *sp = open_ok(path, NULL);
	if (sp == NULL)
		return;
	const char *secret = "my cat Whiskers eats lasagna";
	char tb[512];
	snprintf(tb, sizeof(tb),
		 "Traceback (most recent call last):\n"
		 "  File \"/app/pkg/handler.py\", line 42, in handle\n"
		 "    reply = check(text=message_text)\n"
		 "ValueError: cannot parse input_value='%s'\n",
		 secret);

	char payload[1024];
	snprintf(payload, sizeof(payload),
		 "{\"event_type\":\"query\",\"query_id\":\"1\","
		 "\"error\":\"%s\"}",
		 "Traceback (most recent call last):\\n  File "
		 "\\\"/app/pkg/handler.py\\\", line 42, in handle\\n"
		 "ValueError: cannot parse input_value='my cat Whiskers eats "
		 "lasagna'\\n");
	ASSERT_EQ(telespool_record_json(sp, payload), TELESPOOL_OK);
	char *b = last_body_text(path);
	ASSERT_CONTAINS(b, "ValueError: cannot parse input_value=");
	ASSERT_CONTAINS(b, "handler.py");
	ASSERT_NOT_CONTAINS(b, "Whiskers");
	free(b);

	telespool_query q = TELESPOOL_QUERY_INIT;
	q.query_id = "2";
	q.error = tb;
	ASSERT_EQ(telespool_record_query(sp, &q), TELESPOOL_OK);
	b = last_body_text(path);
	ASSERT_CONTAINS(b, "ValueError: cannot parse input_value=");
	ASSERT_CONTAINS(b, "reply = check(text=message_text)");
	ASSERT_NOT_CONTAINS(b, "Whiskers");
	free(b);
	telespool_close(sp);
}

/* ---- main ---- */

static const struct tu_test tests[] = {
    {"version_and_texts", test_version_and_texts},
    {"open_arguments", test_open_arguments},
    {"open_defaults", test_open_defaults},
    {"durability", test_durability},
    {"open_modes_and_reopen", test_open_modes_and_reopen},
    {"migrations_fresh", test_migrations_fresh},
    {"migration_0002_upgrades", test_migration_0002_upgrades},
    {"schema_newer", test_schema_newer},
    {"corrupt_refused", test_corrupt_refused},
    {"corrupt_moved_aside", test_corrupt_moved_aside},
    {"move_aside_not_under_a_writer", test_move_aside_not_under_a_writer},
    {"move_aside_through_a_symlink", test_move_aside_through_a_symlink},
    {"open_bad_paths", test_open_bad_paths},
    {"concurrent_first_open", test_concurrent_first_open},
    {"record_einval", test_record_einval},
    {"json_trailing_garbage", test_json_trailing_garbage},
    {"disabled", test_disabled},
    {"body_query", test_body_query},
    {"event_ids", test_event_ids},
    {"redacted_end_to_end", test_redacted_end_to_end},
    {"body_caps", test_body_caps},
    {"body_heartbeat", test_body_heartbeat},
    {"body_surveys", test_body_surveys},
    {"pending_survey", test_pending_survey},
    {"busy", test_busy},
    {"max_events", test_max_events},
    {"max_bytes", test_max_bytes},
    {"max_age", test_max_age},
    {"full_disk", test_full_disk},
    {"wal_bound", test_wal_bound},
    {"count_drops", test_count_drops},
    {"count_drops_disabled", test_count_drops_disabled},
    {"count_drops_busy", test_count_drops_busy},
    {"count_drops_full_disk", test_count_drops_full_disk},
    {"count_drops_wal_pinned", test_count_drops_wal_pinned},
    {"record_json_bytes", test_record_json_bytes},
    {"record_json_einval", test_record_json_einval},
    {"record_json_caps", test_record_json_caps},
    {"body_query_v2", test_body_query_v2},
    {"record_json_surveys", test_record_json_surveys},
    {"error_guard_every_path", test_error_guard_every_path},
};

int main(int argc, char **argv)
{
	make_temp_dir(g_dir, sizeof(g_dir), "test_api");
	return tu_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv,
		       g_dir);
}
