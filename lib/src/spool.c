/*
 * spool.c - the handle's helpers: its lock, the drops counted on it
 * (telespool_count_drops for the caller's own), and the few public calls
 * that need no database (telespool_free, telespool_version).  Opening and
 * closing are open.c's.
 */
#include "spool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "error.h"
#include "timefmt.h"
#include "wal.h"

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
	for (int i = 0; i < TELESPOOL__CALLER_DROPS; i++) {
		const struct telespool__caller_drop *d = &sp->unsaved_caller[i];
		if (d->n == 0)
			continue;
		int rc = telespool__count_drop(sp, d->reason, d->n, now_iso);
		if (rc != TELESPOOL_OK)
			return rc;
	}
	/* Cleared by the caller once the transaction commits
	 * (telespool__drops_saved). */
	return TELESPOOL_OK;
}

int telespool__drops_unsaved(const telespool *sp)
{
	for (int i = 0; i < DROP__COUNT; i++)
		if (sp->unsaved_drops[i] != 0)
			return 1;
	for (int i = 0; i < TELESPOOL__CALLER_DROPS; i++)
		if (sp->unsaved_caller[i].n != 0)
			return 1;
	return 0;
}

void telespool__drop_later(telespool *sp, enum telespool__drop reason)
{
	sp->unsaved_drops[reason]++;
}

void telespool__drops_saved(telespool *sp)
{
	memset(sp->unsaved_drops, 0, sizeof(sp->unsaved_drops));
	memset(sp->unsaved_caller, 0, sizeof(sp->unsaved_caller));
}

/* Reasons the library and the uploader count themselves: a caller's drops
 * under one of them would hide what the spool saw. */
static const char *const reserved_reason[] = {
    "evicted_max_events", "evicted_max_bytes", "evicted_max_age", "disk_full",
    "wal_pinned",         "corrupt_spool",     "survey_invalid",  "rejected",
    "max_attempts",       "expired",
};

/* What is wrong with a caller's reason, or NULL. */
static const char *reason_problem(const char *reason)
{
	size_t len = 0;

	if (reason == NULL)
		return "is NULL";
	for (const char *p = reason; *p != '\0'; p++, len++) {
		if (len == TELESPOOL_DROP_REASON_MAX)
			return "is longer than 40 bytes";
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		      *p == '_'))
			return "may hold only the characters a-z, 0-9 and '_'";
	}
	if (len == 0)
		return "is empty";
	for (size_t i = 0;
	     i < sizeof(reserved_reason) / sizeof(*reserved_reason); i++)
		if (strcmp(reason, reserved_reason[i]) == 0)
			return "is one the library or the uploader counts "
			       "itself: name the caller's own cause";
	return NULL;
}

/* Keeps n drops of a caller's reason in memory until a transaction gets
 * through (the handle locked). */
static int keep_unsaved(telespool *sp, const char *reason, int64_t n)
{
	struct telespool__caller_drop *free_slot = NULL;

	for (int i = 0; i < TELESPOOL__CALLER_DROPS; i++) {
		struct telespool__caller_drop *d = &sp->unsaved_caller[i];
		if (d->n == 0) {
			if (free_slot == NULL)
				free_slot = d;
		} else if (strcmp(d->reason, reason) == 0) {
			/* Saturates rather than wraps (10^9 calls away). */
			d->n = d->n > INT64_MAX - n ? INT64_MAX : d->n + n;
			return TELESPOOL_OK;
		}
	}
	if (free_slot == NULL)
		return TELESPOOL_ENOMEM;
	snprintf(free_slot->reason, sizeof(free_slot->reason), "%s", reason);
	free_slot->n = n;
	return TELESPOOL_OK;
}

/* One transaction: what waits in memory, then n more of reason. */
static int count_now(telespool *sp, const char *reason, int64_t n)
{
	char iso[TELESPOOL_ISO_LEN];

	telespool__iso(telespool__now_ms(), iso);
	/* A WAL a reader keeps from being reset takes nothing more. */
	int rc = telespool__wal_room(sp);
	if (rc == TELESPOOL_OK) {
		rc = telespool__begin(sp);
		if (rc == TELESPOOL_OK)
			rc = telespool__flush_drops(sp, iso);
		if (rc == TELESPOOL_OK)
			rc = telespool__count_drop(sp, reason, n, iso);
		rc = telespool__end(sp, rc);
	}
	if (rc == TELESPOOL_OK) {
		telespool__drops_saved(sp);
	} else if (rc == TELESPOOL_EFULL) {
		char why[sizeof(sp->errmsg)];
		memcpy(why, sp->errmsg, sizeof(why));
		if (keep_unsaved(sp, reason, n) == TELESPOOL_OK)
			telespool__fail(sp, TELESPOOL_EFULL,
					"%.300s; the %lld '%s' drops are kept "
					"in memory and written by the next "
					"record or count that succeeds",
					why, (long long)n, reason);
		else
			rc = telespool__fail(
			    sp, TELESPOOL_ENOMEM,
			    "%.300s; the handle already keeps %d other "
			    "reasons in memory: the %lld '%s' drops were not "
			    "counted",
			    why, TELESPOOL__CALLER_DROPS, (long long)n, reason);
	}
	return rc;
}

int telespool_count_drops(telespool *sp, const char *reason, int64_t n)
{
	if (sp == NULL)
		return TELESPOOL_EINVAL;
	telespool__lock(sp);
	int rc;
	const char *bad = reason_problem(reason);
	if (bad != NULL)
		rc = telespool__fail(sp, TELESPOOL_EINVAL, "the drop reason %s",
				     bad);
	else if (n < 1 || n > TELESPOOL_MAX_DROP_COUNT)
		rc = telespool__fail(sp, TELESPOOL_EINVAL,
				     "the drop count %lld is not in 1..%d",
				     (long long)n, TELESPOOL_MAX_DROP_COUNT);
	else if (sp->disabled)
		rc = telespool__fail(
		    sp, TELESPOOL_EDISABLED,
		    "telemetry is disabled: the drops were not counted");
	else
		rc = count_now(sp, reason, n);
	telespool__unlock(sp);
	return rc;
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
