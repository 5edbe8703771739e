/*
 * traceback.h - free text and the error traceback: the structural guard.
 *
 * Owns what of a traceback is kept: frame, source, caret and exception
 * lines, strict mode (frames and exception type names only), the undoing
 * of evasive spellings and the templating of exception messages.  The
 * patterns come from redact.h, UTF-8 repair and the caps from clean.h;
 * this never repairs bytes nor matches a secret pattern itself.  Every
 * function is pure (no globals, no locale), linear in its input, and safe
 * on arbitrary bytes: invalid UTF-8, NULs, huge inputs.
 */
#ifndef TELESPOOL_TRACEBACK_H
#define TELESPOOL_TRACEBACK_H

#include <stddef.h>

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
