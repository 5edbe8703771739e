/*
 * migrate.h - the schema, from the numbered files in migrations/ that the
 * build embeds (see lib/cmake/embed_migrations.cmake).
 */
#ifndef TELESPOOL_MIGRATE_H
#define TELESPOOL_MIGRATE_H

#include <sqlite3.h>
#include <stddef.h>

struct telespool__migration {
	int version;      /* NNNN of NNNN_name.sql; recorded in user_version */
	const char *name; /* NNNN_name */
	const char *sql;
};

extern const struct telespool__migration telespool__migrations[];
extern const int telespool__n_migrations;

/*
 * Brings db up to the newest embedded schema, each migration in its own
 * BEGIN IMMEDIATE transaction that re-reads user_version first, so that
 * processes opening a fresh file at once apply each step exactly once.
 * Returns a telespool_rc; TELESPOOL_ESCHEMA (file untouched) when the file's
 * user_version is newer than this build knows.  err receives a message.
 */
int telespool__migrate(sqlite3 *db, char *err, size_t errlen);

#endif
