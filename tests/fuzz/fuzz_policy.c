/*
 * fuzz_policy.c - libFuzzer target for the answer policy.
 *
 * Input layout: byte 0 picks the transport, bytes 1-2 the HTTP status
 * (big-endian), bytes 3-10 the clock and the randomness; the rest is split
 * at the first '\n' into a Retry-After value and a response body.  Every
 * promise of policy.h is checked: verdicts in range, reasons printable and
 * bounded, delays within their clamps.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t take_u64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *rest, *nl;
	size_t rest_len, ra_len;
	tsu_transport t;
	long status;
	uint64_t bits;
	int64_t now_ms, max_ms, d;
	char reason[64], *ra, *survey;
	telespool__verdict v;

	if (size < 11)
		return 0;
	t = (tsu_transport)(data[0] % 8); /* 7 is out of range on purpose */
	status = (long)(data[1] << 8 | data[2]) - 100;
	bits = take_u64(data + 3);
	rest = data + 11;
	rest_len = size - 11;
	nl = memchr(rest, '\n', rest_len);
	ra_len = nl ? (size_t)(nl - rest) : rest_len;

	ra = malloc(ra_len + 1);
	if (!ra)
		return 0;
	memcpy(ra, rest, ra_len);
	ra[ra_len] = '\0';

	/* The body as it comes from the transport: not NUL-terminated. */
	v = tsu_classify(t, status, (const char *)rest, rest_len,
			 ra, /* as curl's error text: any bytes */
			 reason, sizeof reason);
	if (v != TELESPOOL__SENT && v != TELESPOOL__RETRY &&
	    v != TELESPOOL__DEAD)
		abort();
	if (strlen(reason) >= sizeof reason)
		abort();
	for (const char *p = reason; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			abort();

	now_ms = (int64_t)(bits >> 1) - (int64_t)(bits & 1 ? INT64_MAX / 2 : 0);
	max_ms = (int64_t)(bits % 86400000u);
	d = tsu_retry_after_ms(ra, now_ms, max_ms);
	if (d < -1 || d > max_ms)
		abort();
	free(ra);

	d = tsu_backoff_ms((int)(bits >> 33) - (int)(bits & 0xff), 1000, 300000,
			   bits * 0x9e3779b97f4a7c15u);
	if (d < 0 || d > 300000)
		abort();

	survey = tsu_survey_from_response((const char *)rest, rest_len);
	if (survey && survey[0] != '{')
		abort();
	free(survey);
	return 0;
}
