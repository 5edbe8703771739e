/*
 * clean.h - cleaning: what every string becomes before anything else looks
 * at it, and the caps it is cut to afterwards.
 *
 * Owns UTF-8 repair, the removal of NULs and control characters, white
 * space trimming, cuts on a character boundary and the head+tail
 * truncation of long text around a marker line.  Never looks for secrets
 * (redact.h does) nor at a traceback's structure (traceback.h does); it
 * only knows that a placeholder ("<redacted:ip>", "<str:42>") must not be
 * cut in half.  Every function is pure (no globals, no locale), linear in
 * its input and safe on arbitrary bytes.
 */
#ifndef TELESPOOL_CLEAN_H
#define TELESPOOL_CLEAN_H

#include <stddef.h>

struct cJSON;

/* Caps, documented in the README. */
#define TELESPOOL_NAME_MAX    128   /* bytes: adapter, runner, model, ids */
#define TELESPOOL_PLUGINS_MAX 64    /* pipeline plugins kept per event */
#define TELESPOOL_ERROR_MAX   49152 /* bytes of traceback kept (head+tail) */
#define TELESPOOL_BODY_MAX    65536 /* bytes: hard cap of a stored body */

/*
 * Copies s[0..n) to dst, which has room for 3*n bytes (one bad byte becomes
 * a 3-byte U+FFFD), as valid UTF-8 without NULs and control characters
 * (C0, DEL and C1); text non-zero keeps \n and \t.  A malformed sequence
 * becomes one U+FFFD per maximal subpart, as Python's
 * decode(errors="replace") does, so LangBot and the spool agree.  \r is
 * dropped, so \r\n becomes \n.  Returns the bytes written (no NUL added).
 */
size_t telespool__clean_utf8(char *dst, const unsigned char *s, size_t n,
			     int text);

/* Narrows [*b, *e) of s so that it neither starts nor ends with white
 * space (ASCII, NBSP, the Unicode spaces, zero-width space, BOM). */
void telespool__trim(const unsigned char *s, size_t *b, size_t *e);

/* The length that t (len bytes of valid UTF-8) keeps under a cap of max
 * bytes: cut on a character boundary, never inside a placeholder, without
 * the white space the cut leaves at the end.  len itself if it fits. */
size_t telespool__cap(const char *t, size_t len, size_t max);

/*
 * Shrinks t (len bytes, room for len + 1) to at most max bytes, keeping
 * the head and the tail around the line
 * "... [telespool: N bytes truncated] ...", both cut on a character
 * boundary (a line boundary where one is near), never inside a
 * placeholder.  Returns the new length (len if it fits).
 */
size_t telespool__fit(char *t, size_t len, size_t max);

/*
 * Text stored for reading and never sent (Space's survey, an upload's
 * error, a run's detail): s
 * (NUL-terminated; NULL gives "") as valid UTF-8, each invalid byte a
 * U+FFFD and everything else kept as it is, control characters too, cut at
 * max bytes on a character boundary.  Returns a malloc'd string, or NULL
 * when out of memory.
 */
char *telespool__clean_display(const char *s, size_t max);

/* How telespool__clean_cjson() cleans a parsed tree. */
struct telespool__cjson_cleaner {
	int max_depth;   /* containers in a node this deep are dropped */
	int max_members; /* so are members past this many in a node */
	/* A cleaned, malloc'd copy of a key; NULL when out of memory. */
	char *(*key)(const char *key);
	/* A cleaned, malloc'd copy of the string value s of member key (NULL
	 * in an array) at depth, capped at cap; NULL when out of memory. */
	char *(*value)(const char *s, const char *key, int depth, size_t cap);
};

/* Cleans the children of node (node's own depth: the top level is 1) in
 * place as how says.  Returns 0, or -1 when out of memory. */
int telespool__clean_cjson(struct cJSON *node, int depth, size_t cap,
			   const struct telespool__cjson_cleaner *how);

/*
 * Space's survey (data.survey of a /survey/pending answer) as the text to
 * store: a JSON object with valid UTF-8 strings and keys (\u0000 escapes
 * dropped), at most 8 levels deep with 256 members each, at most
 * TELESPOOL_BODY_MAX bytes (strings are cut shorter until it fits).
 * Returns a string to free with cJSON_free(); NULL with *oom 0 when it is
 * not a JSON object (or nests deeper than cJSON parses, 1,000 levels) or
 * cannot be made to fit, NULL with *oom 1 when out of memory.
 */
char *telespool__clean_survey(const char *json, int *oom);

#endif
