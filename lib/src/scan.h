/*
 * scan.h - what the redactor (redact.c) and the traceback guard
 * (traceback.c) both read text with: ASCII byte classes (no locale, no
 * <ctype.h>), the lexical tests of a "key = value" they agree on, and the
 * growable output buffer they write into.
 *
 * Internal, header-only: every function is static inline, pure and
 * bounded by its arguments.  Nothing here knows what a secret is.
 */
#ifndef TELESPOOL_SCAN_H
#define TELESPOOL_SCAN_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- growable output buffer ------------------------------------------- */

struct sbuf {
	char *p;
	size_t len;
	size_t cap; /* always leaves room for a NUL after len */
	int oom;
};

static inline int sb_reserve(struct sbuf *b, size_t extra)
{
	size_t need, ncap;
	char *np;

	if (b->oom)
		return -1;
	if (extra > SIZE_MAX - 1 - b->len) {
		b->oom = 1;
		return -1;
	}
	need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 64;
	while (ncap < need)
		ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
	np = realloc(b->p, ncap);
	if (!np) {
		b->oom = 1;
		return -1;
	}
	b->p = np;
	b->cap = ncap;
	return 0;
}

static inline void sb_put(struct sbuf *b, const char *s, size_t n)
{
	if (n == 0 || sb_reserve(b, n) != 0)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

/* Whether b ran out of memory; if so its text is freed and NULL. */
static inline int sb_failed(struct sbuf *b)
{
	if (!b->oom)
		return 0;
	free(b->p);
	b->p = NULL;
	return 1;
}

/* ---- byte classes (ASCII only: no locale, no <ctype.h>) --------------- */

static inline int is_digit(unsigned char c)
{
	return (unsigned)(c - '0') < 10u;
}

static inline int is_alpha(unsigned char c)
{
	return (unsigned)((c | 0x20) - 'a') < 26u;
}

static inline int is_upper(unsigned char c)
{
	return (unsigned)(c - 'A') < 26u;
}

static inline int is_alnum(unsigned char c)
{
	return is_alpha(c) || is_digit(c);
}

static inline int is_word(unsigned char c)
{
	return is_alnum(c) || c == '_';
}

static inline int is_hex(unsigned char c)
{
	return is_digit(c) || (unsigned)((c | 0x20) - 'a') < 6u;
}

/* base64url, the alphabet of most tokens */
static inline int is_keych(unsigned char c)
{
	return is_word(c) || c == '-';
}

/* OpenAI echoes keys masked with '*': the mask is part of the key */
static inline int is_keystar(unsigned char c)
{
	return is_keych(c) || c == '*';
}

static inline int is_bearer_ch(unsigned char c)
{
	return is_keystar(c) || c == '.' || c == '~' || c == '+' || c == '/' ||
	       c == '=' || c == ':';
}

static inline unsigned char lower(unsigned char c)
{
	return is_upper(c) ? (unsigned char)(c | 0x20) : c;
}

/* Whether c is one of the bytes of the literal set (never NUL). */
static inline int in_set(unsigned char c, const char *set)
{
	return c != 0 && strchr(set, c) != NULL;
}

/* Case-insensitive compare of n bytes with a lower-case literal. */
static inline int ci_eq(const unsigned char *s, const char *lit, size_t n)
{
	size_t k;

	for (k = 0; k < n; k++)
		if (lower(s[k]) != (unsigned char)lit[k])
			return 0;
	return 1;
}

/* Case-insensitive compare of two byte strings of length n. */
static inline int ci_same(const unsigned char *a, const unsigned char *b,
			  size_t n)
{
	size_t k;

	for (k = 0; k < n; k++)
		if (lower(a[k]) != lower(b[k]))
			return 0;
	return 1;
}

static inline int has_prefix(const unsigned char *s, size_t n, size_t p,
			     const char *lit, size_t l)
{
	return n - p >= l && memcmp(s + p, lit, l) == 0;
}

/* End of the run of bytes that pred accepts, starting at p. */
static inline size_t run_end(const unsigned char *s, size_t n, size_t p,
			     int (*pred)(unsigned char))
{
	while (p < n && pred(s[p]))
		p++;
	return p;
}

/* Same, but never looks at more than max bytes. */
static inline size_t run_end_max(const unsigned char *s, size_t n, size_t p,
				 int (*pred)(unsigned char), size_t max)
{
	size_t lim = n - p > max ? p + max : n;

	while (p < lim && pred(s[p]))
		p++;
	return p;
}

/* ---- the lexical tests of a key and its value ------------------------- */

static inline int word_in(const unsigned char *s, size_t len,
			  const char *const *set, size_t count)
{
	size_t k;

	for (k = 0; k < count; k++)
		if (strlen(set[k]) == len && memcmp(s, set[k], len) == 0)
			return 1;
	return 0;
}

static inline int is_keyname(unsigned char c)
{
	return is_keych(c);
}

static inline int value_term(unsigned char c)
{
	return in_set(c, " \t\n,;&)}]\"'`<>#");
}

/* InvalidToken, ApiKeyError: a class name (two humps), not a key. */
static inline int is_camel(const unsigned char *s, size_t kb, size_t ke)
{
	size_t k;

	if (!is_upper(s[kb]))
		return 0;
	for (k = kb + 1; k + 1 < ke; k++)
		if (s[k] >= 'a' && s[k] <= 'z' && is_upper(s[k + 1]))
			return 1;
	return 0;
}

/* Where a value that may hold spaces ends: the line's end, , or ; */
static inline size_t multiword_end(const unsigned char *s, size_t n, size_t ve)
{
	size_t k = ve;

	while (k < n && s[k] != '\n' && s[k] != ',' && s[k] != ';' &&
	       s[k] != '"' && s[k] != '\'' && s[k] != ')' && s[k] != '}')
		k++;
	while (k > ve && (s[k - 1] == ' ' || s[k - 1] == '\t'))
		k--;
	return k;
}

#endif
