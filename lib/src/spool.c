/*
 * spool.c - the handle's helpers: its lock, the drops counted on it, and
 * the few public calls that need no database (telespool_free,
 * telespool_version).  Opening and closing are open.c's.
 */
#include "spool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

int telespool__count_drop(telespool *sp, const char *reason, int64_t n,
			  const char *now_iso)
{
	if (n <= 0)
		return TELESPOOL_OK;
	sqlite3_stmt *st = telespool__stmt(sp, STMT_COUNT_DROP);
	if (st != NULL) {
		sqlite3_bind_text(st, 1, reason, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, n);
		sqlite3_bind_text(st, 3, now_iso, -1, SQLITE_STATIC);
	}
	return telespool__step_done(sp, st, "counting a drop");
}

static const char *const drop_reason[DROP__COUNT] = {
    [DROP_MAX_EVENTS] = "evicted_max_events",
    [DROP_MAX_BYTES] = "evicted_max_bytes",
    [DROP_MAX_AGE] = "evicted_max_age",
    [DROP_DISK_FULL] = "disk_full",
    [DROP_WAL_PINNED] = "wal_pinned",
};

int telespool__flush_drops(telespool *sp, const char *now_iso)
{
	for (int i = 0; i < DROP__COUNT; i++) {
		if (sp->unsaved_drops[i] == 0)
			continue;
		int rc = telespool__count_drop(sp, drop_reason[i],
					       sp->unsaved_drops[i], now_iso);
		if (rc != TELESPOOL_OK)
			return rc;
	}
	/* Cleared by the caller once the transaction commits
	 * (telespool__drops_saved). */
	return TELESPOOL_OK;
}

void telespool__drop_later(telespool *sp, enum telespool__drop reason)
{
	sp->unsaved_drops[reason]++;
}

void telespool__drops_saved(telespool *sp)
{
	memset(sp->unsaved_drops, 0, sizeof(sp->unsaved_drops));
}

int telespool__drops_unsaved(const telespool *sp)
{
	for (int i = 0; i < DROP__COUNT; i++)
		if (sp->unsaved_drops[i] != 0)
			return 1;
	return 0;
}

void telespool__lock(telespool *sp)
{
	pthread_mutex_lock(&sp->mu);
	sp->errmsg[0] = '\0';
}

void telespool__unlock(telespool *sp)
{
	pthread_mutex_unlock(&sp->mu);
}

void telespool__dir_of(const char *path, char *dir, size_t len)
{
	const char *slash = strrchr(path, '/');
	if (slash == NULL)
		snprintf(dir, len, ".");
	else if (slash == path)
		snprintf(dir, len, "/");
	else
		snprintf(dir, len, "%.*s", (int)(slash - path), path);
}

void telespool_free(void *p)
{
	free(p);
}

const char *telespool_version(void)
{
	return TELESPOOL_VERSION_STRING;
}
