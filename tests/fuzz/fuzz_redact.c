/*
 * fuzz_redact.c - libFuzzer target: clean_name(), clean_text(),
 * clean_error() and clean_display() on arbitrary bytes.
 *
 * Whatever LangBot hands over, the result must be valid UTF-8 without NULs
 * or control characters, within the cap, with no placeholder cut in half,
 * and the same for the same input (the functions are pure).  Display text
 * keeps its controls, so it is only valid UTF-8 within the cap.  The first
 * two bytes choose the cap and the mode so the fuzzer explores small caps
 * too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clean.h"
#include "redact.h"
#include "traceback.h"
#include "../text_checks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
	    !(tc_valid_utf8(a, len) && tc_no_controls(a, len, 1)))
		abort();
	/* A literal "redacted:" in the input is the user's business; only
	 * check placeholders when the input cannot have brought one. */
	if (!memchr(in, ':', size) && !tc_placeholders_whole(a))
		abort();
	b = telespool__clean_text(in, size, cap_text, strict, &len2);
	if (!b || len2 != len || memcmp(a, b, len) != 0)
		abort(); /* pure: same input, same output */
	free(b);
	free(a);

	/* the traceback guard: the same guarantees */
	a = telespool__clean_error(in, size, cap_text, strict, &len);
	if (!a)
		abort();
	if (len > cap_text || strlen(a) != len ||
	    !(tc_valid_utf8(a, len) && tc_no_controls(a, len, 1)))
		abort();
	if (!memchr(in, ':', size) && !tc_placeholders_whole(a))
		abort();
	b = telespool__clean_error(in, size, cap_text, strict, &len2);
	if (!b || len2 != len || memcmp(a, b, len) != 0)
		abort();
	free(b);
	free(a);

	a = telespool__clean_name(in, size, cap_name);
	if (!a)
		abort();
	len = strlen(a);
	if (len > cap_name ||
	    !(tc_valid_utf8(a, len) && tc_no_controls(a, len, 0)) ||
	    (len && (a[0] == ' ' || a[len - 1] == ' ')))
		abort();
	free(a);

	/* display text reads up to the first NUL */
	b = malloc(size + 1);
	if (!b)
		abort();
	memcpy(b, in, size);
	b[size] = '\0';
	a = telespool__clean_display(b, cap_name);
	if (!a)
		abort();
	len = strlen(a);
	if (len > cap_name || !tc_valid_utf8(a, len) ||
	    (len == 0 && b[0] != '\0' && cap_name >= 4))
		abort();
	free(a);
	free(b);
	return 0;
}
