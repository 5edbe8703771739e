/*
 * redact.h - redaction: the patterns that find secrets, identities,
 * addresses and user text in a string.
 *
 * The privacy promise (no credentials, identities, addresses or user text
 * leave the machine) is kept here and in traceback.h, before anything is
 * stored.  Redaction works on text that clean.h has already made valid
 * UTF-8; it never repairs, trims nor cuts text itself, and it knows nothing
 * of a traceback's structure (traceback.h, which calls it, does).  Every
 * function is pure (no globals, no locale), linear in its input, and safe
 * on arbitrary bytes.
 */
#ifndef TELESPOOL_REDACT_H
#define TELESPOOL_REDACT_H

#include <stddef.h>

#include "clean.h" /* the caps that telespool__clean_name() is called with */

struct sbuf; /* scan.h */

/*
 * Short identifier-like field (adapter, runner, model name, plugin name,
 * query id, survey id, milestone): valid UTF-8 (invalid sequences become
 * U+FFFD), control characters and NULs removed, leading/trailing white space
 * trimmed (clean.h), redacted (a key pasted as a model name must not
 * leave), then capped at max_bytes on a character boundary.  s may be NULL
 * (gives "").  Returns a malloc'd NUL-terminated string, or NULL when out
 * of memory.
 */
char *telespool__clean_name(const char *s, size_t len, size_t max_bytes);

/* Appends text[0..n) (cleaned UTF-8) to out with every finding replaced by
 * "<redacted:KIND>" and NUL-terminates it; code non-zero: the text is
 * source code, where a bare identifier after "key=" is a variable.  Out of
 * memory sets out->oom. */
void telespool__redact(const char *text, size_t n, struct sbuf *out, int code);

/* The kind ("password", "token", "user", ...) of the credential, identity
 * or content key that s[kb..ke) names, or NULL; whole: the key is not the
 * tail of a longer name. */
const char *telespool__key_kind(const unsigned char *s, size_t kb, size_t ke,
				int whole);

/* Whether s[0..len) is a word that, as a whole unquoted value, is code and
 * not a secret (None, True, self, ...). */
int telespool__is_code_word(const unsigned char *s, size_t len);

/* For a token s[i..w) that starts with an API key's prefix (sk-, ghp_,
 * ...): sets *whole when it is long enough for the patterns to take it
 * whole; returns the kind when it is a key cut short (10+ characters after
 * the prefix, 2+ digits and an upper-case letter), else NULL. */
const char *telespool__key_prefix(const unsigned char *s, size_t i, size_t w,
				  int *whole);

#endif
