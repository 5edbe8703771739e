/*
 * migrate.c - the schema's version checks, and the embedded migrations
 * applied one transaction each, progress recorded in PRAGMA user_version.
 */
#include "migrate.h"

#include <stdint.h>
#include <stdio.h>

#include "db.h"
#include "error.h"

static int newest(void)
{
	return telespool__migrations[telespool__n_migrations - 1].version;
}

/* The schema version and the number of schema objects, from one snapshot:
 * read apart, another process's migration could commit in between. */
static int schema_state(telespool *sp, int64_t *version, int64_t *objects)
{
	int64_t v[2];
	int rc = telespool__read_ints(
	    sp,
	    telespool__prepare(
		sp, "SELECT (SELECT user_version FROM pragma_user_version),"
		    " (SELECT count(*) FROM sqlite_schema)"),
	    "reading the schema version", v, 2);
	*version = v[0];
	if (objects)
		*objects = v[1];
	return rc;
}

static int newer_schema(telespool *sp, int64_t v)
{
	return telespool__fail(sp, TELESPOOL_ESCHEMA,
			       "schema version %lld was written by a newer "
			       "telespool (this one knows up to %d); the file "
			       "is left untouched",
			       (long long)v, newest());
}

int telespool__schema_check(telespool *sp, int *fresh)
{
	int64_t v = 0, objects = 0;
	int rc = schema_state(sp, &v, &objects);

	*fresh = 0;
	if (rc != TELESPOOL_OK)
		return rc;
	if (v > newest())
		return newer_schema(sp, v);
	if (v == 0 && objects > 0)
		return telespool__fail(
		    sp, TELESPOOL_ECORRUPT,
		    "is an SQLite database but not a telespool spool (it has "
		    "%lld tables and no telespool schema version); the file "
		    "is left untouched",
		    (long long)objects);
	*fresh = objects == 0;
	return TELESPOOL_OK;
}

/* Applies migration m unless another process did while we waited for the
 * lock: 1 when it is done (by either), 0 on failure (rolled back).
 * schema_state() reads sqlite_schema under the lock, so SQLite loads a
 * schema another process changed before m's SQL is prepared against it
 * (PRAGMA user_version alone would not: test_spool_internal
 * migrate_stale_schema). */
static int apply(telespool *sp, const struct telespool__migration *m, int *rc)
{
	int64_t v = 0;
	char sql[64];

	*rc = telespool__exec_as(sp, "BEGIN IMMEDIATE", "locking the schema");
	if (*rc == TELESPOOL_OK)
		*rc = schema_state(sp, &v, NULL);
	if (*rc == TELESPOOL_OK && v > newest())
		*rc = newer_schema(sp, v);
	if (*rc == TELESPOOL_OK && v >= m->version) {
		telespool__rollback(sp);
		return 1;
	}
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", m->version);
	if (*rc == TELESPOOL_OK)
		*rc = telespool__exec_as(sp, m->sql, m->name);
	if (*rc == TELESPOOL_OK)
		*rc = telespool__exec_as(sp, sql, m->name);
	if (*rc == TELESPOOL_OK)
		*rc = telespool__exec_as(sp, "COMMIT", m->name);
	if (*rc != TELESPOOL_OK)
		telespool__rollback(sp);
	return *rc == TELESPOOL_OK;
}

int telespool__migrate(telespool *sp)
{
	int64_t v = 0;
	int rc = schema_state(sp, &v, NULL);

	if (rc != TELESPOOL_OK || v == newest())
		return rc; /* the common case: no write lock taken */
	for (int i = 0; i < telespool__n_migrations; i++)
		if (!apply(sp, &telespool__migrations[i], &rc))
			return rc;
	return TELESPOOL_OK;
}
