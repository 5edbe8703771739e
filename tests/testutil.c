/*
 * testutil.c - the scaffolding the C tests share (test_api, test_concurrency,
 * test_spool_internal, test_queue, ...): a private temporary directory, raw
 * files and raw SQLite, which the public-API tests link as SQLite itself,
 * not through the library.  Nothing here asserts (the counters are each
 * test program's own, in testutil.h): the helpers return what they found
 * and the tests assert on it.
 */
#define TESTUTIL_NO_COUNTERS
#include "testutil.h"

#include <dirent.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- a private directory ---- */

void make_temp_dir(char *dir, size_t len, const char *prefix)
{
	const char *t = getenv("TMPDIR");
	snprintf(dir, len, "%s/%s-XXXXXX", t && *t ? t : "/tmp", prefix);
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		exit(2);
	}
}

void rm_rf(const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return;
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(path);
		struct dirent *e;
		while (d && (e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") == 0 ||
			    strcmp(e->d_name, "..") == 0)
				continue;
			char sub[1024];
			snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
			rm_rf(sub);
		}
		if (d)
			closedir(d);
		rmdir(path);
	} else {
		unlink(path);
	}
}

/* ---- raw files ---- */

void path_suffix(char *out, size_t len, const char *path, const char *suffix)
{
	snprintf(out, len, "%s%s", path, suffix);
}

unsigned char *slurp_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	*len = 0;
	if (f == NULL)
		return NULL;
	size_t cap = 65536, n = 0;
	unsigned char *buf = malloc(cap);
	size_t r;
	while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap) {
			unsigned char *nb = realloc(buf, cap * 2);
			if (nb == NULL) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
	}
	fclose(f);
	*len = n;
	return buf;
}

/* ---- time ---- */

int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- raw SQLite ---- */

sqlite3 *raw_open(const char *path)
{
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(path, &db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
			    NULL) != SQLITE_OK) {
		fprintf(stderr, "raw_open %s: %s\n", path,
			db ? sqlite3_errmsg(db) : "?");
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 10000);
	return db;
}

int raw_exec(sqlite3 *db, const char *sql)
{
	char *err = NULL;
	int src = sqlite3_exec(db, sql, NULL, NULL, &err);
	if (src != SQLITE_OK) {
		fprintf(stderr, "raw_exec %s: %s\n", sql, err ? err : "?");
		sqlite3_free(err);
	}
	return src;
}

int64_t raw_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int64_t v = -999;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "raw_int %s: %s\n", sql, sqlite3_errmsg(db));
		return v;
	}
	int src = sqlite3_step(st);
	if (src == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	else if (src == SQLITE_DONE)
		v = -998;
	else
		fprintf(stderr, "raw_int %s: %s\n", sql, sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return v;
}

char *raw_text(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	char *v = NULL;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "raw_text %s: %s\n", sql, sqlite3_errmsg(db));
		return NULL;
	}
	if (sqlite3_step(st) == SQLITE_ROW &&
	    sqlite3_column_type(st, 0) != SQLITE_NULL)
		v = strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return v;
}

int64_t path_int(const char *path, const char *sql)
{
	sqlite3 *db = raw_open(path);
	int64_t v = db ? raw_int(db, sql) : -997;
	sqlite3_close(db);
	return v;
}

char *path_text(const char *path, const char *sql)
{
	sqlite3 *db = raw_open(path);
	char *v = db ? raw_text(db, sql) : NULL;
	sqlite3_close(db);
	return v;
}

int path_exec(const char *path, const char *sql)
{
	sqlite3 *db = raw_open(path);
	int src = db ? raw_exec(db, sql) : SQLITE_CANTOPEN;
	sqlite3_close(db);
	return src;
}

int64_t drops_of(const char *path, const char *reason)
{
	char sql[256];
	snprintf(
	    sql, sizeof(sql),
	    "SELECT coalesce((SELECT count FROM drops WHERE reason = '%s'),"
	    " 0)",
	    reason);
	return path_int(path, sql);
}
