/*
 * migrate.h - the schema, from the numbered files in migrations/ that the
 * build embeds (see lib/cmake/embed_migrations.cmake): its version checks
 * and its migrations, recorded in PRAGMA user_version.
 */
#ifndef TELESPOOL_MIGRATE_H
#define TELESPOOL_MIGRATE_H

#include <stddef.h>

#include "telespool.h"

struct telespool__migration {
	int version;      /* NNNN of NNNN_name.sql; recorded in user_version */
	const char *name; /* NNNN_name */
	const char *sql;
};

extern const struct telespool__migration telespool__migrations[];
extern const int telespool__n_migrations;

/*
 * What the open may do with the file, read before anything is written
 * (the schema version and the number of schema objects from one
 * snapshot): TELESPOOL_ESCHEMA when a newer telespool wrote it,
 * TELESPOOL_ECORRUPT when it is an SQLite database but not a spool (both
 * leave it untouched); *fresh = 1 when it has no schema object yet.
 * The message is the handle's.
 */
int telespool__schema_check(telespool *sp, int *fresh);

/*
 * Brings the spool up to the newest embedded schema, each migration in its
 * own BEGIN IMMEDIATE transaction that re-reads user_version first, so that
 * processes opening a fresh file at once apply each step exactly once.
 * Returns a telespool_rc with the handle's message set; TELESPOOL_ESCHEMA
 * (file untouched) when the file's user_version is newer than this build
 * knows.
 */
int telespool__migrate(telespool *sp);

#endif
