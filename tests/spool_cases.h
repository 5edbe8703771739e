/*
 * spool_cases.h - what the spool's public and internal tests (test_api.c,
 * test_spool_internal.c) both need, through the public header alone: the
 * case's directory, opening, a typical query event, traceback-shaped text.
 */
#ifndef TELESPOOL_TESTS_SPOOL_CASES_H
#define TELESPOOL_TESTS_SPOOL_CASES_H

#include <stddef.h>
#include <stdint.h>

#include "telespool.h"

/* The test executable's scratch directory (tu_main() gives each case a
 * fresh one below it); set by main() with make_temp_dir(). */
extern char g_dir[512];

/* out = g_dir/name */
void path_in(char *out, size_t len, const char *name);

/* Rows in the events view of the spool at path. */
int64_t count_events(const char *path);

/* telespool_open(), or the case fails with the open error. */
telespool *open_ok(const char *path, const telespool_options *o);

/* One query event with typical fields; with an error traceback. */
int record_simple(telespool *sp, const char *query_id);
int record_with_error(telespool *sp, const char *query_id, const char *error);

/* A traceback-shaped text of about n bytes with nothing a redactor would
 * remove; malloc'd. */
char *traceback_text(size_t n);

/* Records n query events carrying a 1.5 KiB traceback, query ids
 * "before-0" .. (the case fails at the first refused record). */
void record_tracebacks(telespool *sp, int n);

/* Writes garbage over three pages in the middle of the closed spool file
 * (the schema page stays readable): damage that only a full check sees. */
void damage_middle(const char *file);

/* Makes DIR/symreal/s.db (real) reached through DIR/symlink/s.db
 * (link_path, a symbolic link to it); DIR = g_dir.  Buffers of 700. */
void linked_spool_paths(char real[700], char link_path[700]);

/* Opens path with max_events 100 and records q0..q149 (query events):
 * checks that q50..q149 are kept and 50 evictions counted; the handle, or
 * NULL (the case failed). */
telespool *past_max_events(const char *path);

/* The copies of path moved aside as damaged (PATH.corrupt-*). */
int count_corrupt_copies(const char *path);

#endif
