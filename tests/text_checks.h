/*
 * text_checks.h - what every cleaned string must be, checked independently
 * of clean.c, redact.c and traceback.c: the unit tests (test_redact.c) and
 * the fuzz targets (fuzz_redact.c, fuzz_body.c) share these.
 */
#ifndef TELESPOOL_TEXT_CHECKS_H
#define TELESPOOL_TEXT_CHECKS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Strict UTF-8: no overlongs, no surrogates, nothing above U+10FFFF. */
static inline int tc_valid_utf8(const char *p, size_t n)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		uint32_t cp;
		size_t k, len;

		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			len = 2;
			cp = c & 0x1fu;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3;
			cp = c & 0x0fu;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4;
			cp = c & 0x07u;
		} else {
			return 0;
		}
		if (n - i < len)
			return 0;
		for (k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3fu);
		}
		if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
		    (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += len;
	}
	return 1;
}

/* No control characters except (if text) \n and \t; no C1, no DEL. */
static inline int tc_no_controls(const char *p, size_t n, int text)
{
	const unsigned char *s = (const unsigned char *)p;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == 0x7f ||
		    (s[i] < 0x20 && !(text && (s[i] == '\n' || s[i] == '\t'))))
			return 0;
		if (s[i] == 0xc2 && i + 1 < n && s[i + 1] >= 0x80 &&
		    s[i + 1] <= 0x9f)
			return 0;
	}
	return 1;
}

/* Every "redacted:" is a whole "<redacted:" [a-z_]+ ">". */
static inline int tc_placeholders_whole(const char *s)
{
	const char *p = s, *q;

	while ((p = strstr(p, "redacted:")) != NULL) {
		if (p == s || p[-1] != '<')
			return 0;
		for (q = p + 9; (*q >= 'a' && *q <= 'z') || *q == '_'; q++)
			;
		if (q == p + 9 || *q != '>')
			return 0;
		p = q;
	}
	return 1;
}

#endif
