/*
 * spool_cases.c - helpers of the spool's public and internal tests
 * (spool_cases.h); the public header only.
 */
#include "spool_cases.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

char g_dir[512];

/* out = g_dir/name */
void path_in(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", g_dir, name);
}

int64_t count_events(const char *path)
{
	return path_int(path, "SELECT count(*) FROM events");
}

telespool *open_ok(const char *path, const telespool_options *o)
{
	telespool *sp = NULL;
	int rc = telespool_open(&sp, path, o);
	if (rc != TELESPOOL_OK)
		TU_FAIL("open %s: %s: %s", path, telespool_strerror(rc),
			telespool_open_errmsg());
	return sp;
}

int record_simple(telespool *sp, const char *query_id)
{
	telespool_query q = TELESPOOL_QUERY_INIT;
	q.query_id = query_id;
	q.adapter = "TelegramAdapter";
	q.runner = "local-agent";
	q.model_name = "gpt-4o";
	q.duration_ms = 12;
	return telespool_record_query(sp, &q);
}

int record_with_error(telespool *sp, const char *query_id, const char *error)
{
	telespool_query q = TELESPOOL_QUERY_INIT;
	q.query_id = query_id;
	q.adapter = "TelegramAdapter";
	q.runner = "local-agent";
	q.model_name = "gpt-4o";
	q.error = error;
	return telespool_record_query(sp, &q);
}

/* A traceback-shaped text of about n bytes with nothing a redactor would
 * remove. */
char *traceback_text(size_t n)
{
	static const char frame[] = "  File \"pipeline/stage.py\", line 42, in "
				    "process\n    result = await step(ctx)\n";
	char *s = malloc(n + 64);
	size_t len = 0;
	len += (size_t)sprintf(s, "Traceback (most recent call last):\n");
	while (len + sizeof(frame) < n) {
		memcpy(s + len, frame, sizeof(frame) - 1);
		len += sizeof(frame) - 1;
	}
	len += (size_t)sprintf(s + len, "RuntimeError: stage failed\n");
	s[len] = '\0';
	return s;
}

int count_corrupt_copies(const char *path)
{
	const char *slash = strrchr(path, '/');
	char dir[600], prefix[300];
	snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	snprintf(prefix, sizeof(prefix), "%s.corrupt-", slash + 1);
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	while (d && (e = readdir(d)) != NULL)
		if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 &&
		    strstr(e->d_name, "-wal") == NULL &&
		    strstr(e->d_name, "-shm") == NULL)
			n++;
	if (d)
		closedir(d);
	return n;
}

/* NULL options and an all-zero TELESPOOL_OPTIONS_INIT both give the
 * documented defaults, in the handle's fields (test_api open_defaults shows
 * them in the file). */

void record_tracebacks(telespool *sp, int n)
{
	char qid[32];
	char *tb = traceback_text(1500);
	for (int i = 0; i < n; i++) {
		snprintf(qid, sizeof(qid), "before-%d", i);
		ASSERT_EQ(record_with_error(sp, qid, tb), TELESPOOL_OK);
	}
	free(tb);
}

void damage_middle(const char *file)
{
	int64_t size = path_int(file, "PRAGMA page_count") * 4096;
	unsigned char junk[3 * 4096];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)(i * 151 + 7);
	int fd = open(file, O_WRONLY);
	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(pwrite(fd, junk, sizeof(junk), (size / 2) & ~4095),
		  (long)sizeof(junk));
	close(fd);
}

void linked_spool_paths(char real[700], char link_path[700])
{
	char real_dir[600], link_dir[600];
	path_in(real_dir, sizeof(real_dir), "symreal");
	path_in(link_dir, sizeof(link_dir), "symlink");
	ASSERT_EQ(mkdir(real_dir, 0700), 0);
	ASSERT_EQ(mkdir(link_dir, 0700), 0);
	snprintf(real, 700, "%s/s.db", real_dir);
	snprintf(link_path, 700, "%s/s.db", link_dir);
	ASSERT_EQ(symlink(real, link_path), 0);
}

telespool *past_max_events(const char *path)
{
	char qid[32];
	telespool_options o = TELESPOOL_OPTIONS_INIT;
	o.max_events = 100;
	telespool *sp = open_ok(path, &o);
	if (sp == NULL)
		return NULL;
	for (int i = 0; i < 150; i++) {
		snprintf(qid, sizeof(qid), "q%d", i);
		if (record_simple(sp, qid) != TELESPOOL_OK)
			TU_FAIL("record %d: %s", i, telespool_errmsg(sp));
	}
	ASSERT_EQ(count_events(path), 100);
	ASSERT_EQ(drops_of(path, "evicted_max_events"), 50);
	char *first = path_text(path, "SELECT query_id FROM events ORDER BY id "
				      "LIMIT 1");
	char *last = path_text(path, "SELECT query_id FROM events ORDER BY id "
				     "DESC LIMIT 1");
	ASSERT_STREQ(first, "q50");
	ASSERT_STREQ(last, "q149");
	free(first);
	free(last);
	return sp;
}
