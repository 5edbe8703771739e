/*
 * status.h - `telespool-upload --status`: what is waiting, what left, what
 * was dropped, and how the last runs ended; as text or as JSON.
 */
#ifndef TSU_STATUS_H
#define TSU_STATUS_H

#include "options.h"

/* Prints the status of o->db_path to stdout; sends nothing.  Returns a
 * TSU_EXIT_* code.  A config that cannot be read is shown, not fatal. */
int tsu_status(const tsu_options *o, int json);

#endif
