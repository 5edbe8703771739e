/*
 * redact.h - cleaning and redaction of everything an event carries.
 *
 * The privacy promise (no credentials, identities, addresses or user text
 * leave the machine) is kept here, before anything is stored.  Every
 * function is pure (no globals, no locale), linear in its input, and safe
 * on arbitrary bytes: invalid UTF-8, NULs, huge inputs.
 */
#ifndef TELESPOOL_REDACT_H
#define TELESPOOL_REDACT_H

#include <stddef.h>

/* Caps, documented in the README. */
#define TELESPOOL_NAME_MAX    128   /* bytes: adapter, runner, model, ids */
#define TELESPOOL_PLUGINS_MAX 64    /* pipeline plugins kept per event */
#define TELESPOOL_ERROR_MAX   49152 /* bytes of traceback kept (head+tail) */
#define TELESPOOL_BODY_MAX    65536 /* bytes: hard cap of a stored body */

/*
 * Short identifier-like field (adapter, runner, model name, plugin name,
 * query id, survey id, milestone): valid UTF-8 (invalid sequences become
 * U+FFFD), control characters and NULs removed, leading/trailing white space
 * trimmed, redacted (a key pasted as a model name must not leave), then
 * capped at max_bytes on a character boundary.  s may be NULL (gives "").
 * Returns a malloc'd NUL-terminated string, or NULL when out of memory.
 */
char *telespool__clean_name(const char *s, size_t len, size_t max_bytes);

/*
 * Free text (the error traceback, string values inside survey answers and
 * features): valid UTF-8, NULs and control characters other than \n and \t
 * removed, every secret, identity and address replaced by a typed
 * placeholder "<redacted:KIND>", then truncated to at most max_bytes by
 * keeping the head and the tail (where a traceback's exception is) around a
 * marker line.  strict non-zero keeps only traceback frame lines
 * ("  File "...", line N, in f" and the code line under it) and exception
 * type names, dropping every exception message.  s may be NULL (gives "").
 * Returns a malloc'd NUL-terminated string (length in *out_len if non-NULL),
 * or NULL when out of memory.
 */
char *telespool__clean_text(const char *s, size_t len, size_t max_bytes,
			    int strict, size_t *out_len);

/*
 * The error traceback: what clean_text does, behind a guard that works
 * from the traceback's structure.  Frames, source lines (redacted only for
 * literal values), headers and exception type names are kept; every
 * exception message keeps the words its library wrote and loses the values
 * inserted into it (quoted strings, dict, list, tuple, JSON and XML
 * fragments, key=value values, URL paths and queries, long identifiers),
 * each becoming a typed placeholder with its length in characters
 * ("<str:42>", "<json:1.2k>", "<path:31>", "<id>"); error codes, HTTP
 * statuses and error types ("code", "errcode", "type", "status" keys of
 * error envelopes) are kept.  Zero-width characters, full-width forms,
 * Unicode digits, look-alike letters and %XX escapes are undone first, so
 * they hide nothing from the patterns.  strict as in clean_text.  Same
 * ownership and failure as clean_text.
 */
char *telespool__clean_error(const char *s, size_t len, size_t max_bytes,
			     int strict, size_t *out_len);

#endif
