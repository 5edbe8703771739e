/*
 * migrate.c - applies the embedded migrations, one transaction each, and
 * records progress in PRAGMA user_version.
 */
#include "migrate.h"

#include <stdio.h>

#include "spool.h"

static int user_version(sqlite3 *db, int *v)
{
	sqlite3_stmt *st;
	int src = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
	if (src != SQLITE_OK)
		return src;
	src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		*v = sqlite3_column_int(st, 0);
		src = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return src;
}

static int fail(sqlite3 *db, int src, const char *what, char *err,
		size_t errlen)
{
	snprintf(err, errlen, "%s: %s", what, sqlite3_errmsg(db));
	int rc = telespool__rc_from_sqlite(src);
	return rc == TELESPOOL_OK ? TELESPOOL_ERROR : rc;
}

int telespool__migrate(sqlite3 *db, char *err, size_t errlen)
{
	int newest = telespool__migrations[telespool__n_migrations - 1].version;
	int v = 0;
	int src = user_version(db, &v);

	if (src != SQLITE_OK)
		return fail(db, src, "reading the schema version", err, errlen);
	if (v == newest)
		return TELESPOOL_OK; /* the common case: no write lock taken */

	for (int i = 0; i < telespool__n_migrations; i++) {
		const struct telespool__migration *m =
		    &telespool__migrations[i];

		src = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
		if (src != SQLITE_OK)
			return fail(db, src, "locking the schema", err, errlen);
		/* Another process may have migrated while we waited. */
		src = user_version(db, &v);
		if (src != SQLITE_OK)
			goto rollback;
		if (v > newest) {
			sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
			snprintf(err, errlen,
				 "schema version %d was written by a newer "
				 "telespool "
				 "(this one knows up to %d)",
				 v, newest);
			return TELESPOOL_ESCHEMA;
		}
		if (v >= m->version) {
			sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
			continue;
		}
		src = sqlite3_exec(db, m->sql, NULL, NULL, NULL);
		if (src != SQLITE_OK)
			goto rollback;
		char sql[64];
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d",
			 m->version);
		src = sqlite3_exec(db, sql, NULL, NULL, NULL);
		if (src != SQLITE_OK)
			goto rollback;
		src = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
		if (src != SQLITE_OK)
			goto rollback;
		continue;
	rollback:;
		int rc = fail(db, src, m->name, err, errlen);
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	return TELESPOOL_OK;
}
