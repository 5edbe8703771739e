/*
 * fuzz_redact.c - libFuzzer target: clean_name() and clean_text() on
 * arbitrary bytes.
 *
 * Whatever LangBot hands over, the result must be valid UTF-8 without NULs
 * or control characters, within the cap, with no placeholder cut in half,
 * and the same for the same input (the functions are pure).  The first two
 * bytes choose the cap and the mode so the fuzzer explores small caps too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redact.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int valid_utf8(const unsigned char *s, size_t n)
{
	size_t i = 0, k, len;
	uint32_t cp;

	while (i < n) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		if ((s[i] & 0xe0) == 0xc0) {
			len = 2;
			cp = s[i] & 0x1fu;
		} else if ((s[i] & 0xf0) == 0xe0) {
			len = 3;
			cp = s[i] & 0x0fu;
		} else if ((s[i] & 0xf8) == 0xf0) {
			len = 4;
			cp = s[i] & 0x07u;
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

static int clean_bytes_ok(const unsigned char *s, size_t n, int text)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (s[i] == 0x7f ||
		    (s[i] < 0x20 && !(text && (s[i] == '\n' || s[i] == '\t'))))
			return 0;
		if (s[i] == 0xc2 && i + 1 < n && s[i + 1] <= 0x9f)
			return 0; /* C1 control */
	}
	return valid_utf8(s, n);
}

/* Every "redacted:" is a whole "<redacted:kind>". */
static int placeholders_whole(const char *s)
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t cap_text, cap_name, len, len2;
	int strict;
	const char *in;
	char *a, *b;

	if (size < 2)
		return 0;
	/* caps from 0 up, and the real ones */
	cap_text = data[0] < 240 ? (size_t)data[0] * 8 : TELESPOOL_ERROR_MAX;
	cap_name = data[1] < 200 ? data[1] : TELESPOOL_NAME_MAX;
	strict = data[0] & 1;
	in = (const char *)data + 2;
	size -= 2;

	a = telespool__clean_text(in, size, cap_text, strict, &len);
	if (!a)
		abort(); /* no allocation fails here */
	if (len > cap_text || strlen(a) != len ||
	    !clean_bytes_ok((const unsigned char *)a, len, 1))
		abort();
	/* A literal "redacted:" in the input is the user's business; only
	 * check placeholders when the input cannot have brought one. */
	if (!memchr(in, ':', size) && !placeholders_whole(a))
		abort();
	b = telespool__clean_text(in, size, cap_text, strict, &len2);
	if (!b || len2 != len || memcmp(a, b, len) != 0)
		abort(); /* pure: same input, same output */
	free(b);
	free(a);

	a = telespool__clean_name(in, size, cap_name);
	if (!a)
		abort();
	len = strlen(a);
	if (len > cap_name ||
	    !clean_bytes_ok((const unsigned char *)a, len, 0) ||
	    (len && (a[0] == ' ' || a[len - 1] == ' ')))
		abort();
	free(a);
	return 0;
}
