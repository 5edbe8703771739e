/*
 * test_policy.c - the uploader's policy: classification of answers,
 * backoff, Retry-After and survey extraction.  Every decision the drain loop
 * takes about an answer is pinned down here, with the clock text and the
 * randomness (clock.h) its jitter and messages use.
 */
#include "clock.h"
#include "policy.h"
#include "testutil.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *verdict_name(telespool__verdict v)
{
	return v == TELESPOOL__SENT    ? "SENT"
	       : v == TELESPOOL__RETRY ? "RETRY"
				       : "DEAD";
}

/* Classifies with a body given as a C string and checks the verdict. */
static void check_status(int line, long status, const char *body,
			 telespool__verdict want, const char *want_reason)
{
	char reason[128];
	telespool__verdict v =
	    tsu_classify(TSU_NET_OK, status, body, body ? strlen(body) : 0,
			 NULL, reason, sizeof reason);

	if (v == want && (!want_reason || strcmp(reason, want_reason) == 0)) {
		tu_passed++;
		return;
	}
	tu_failed++;
	fprintf(stderr,
		"%s:%d: HTTP %ld body %s: got %s \"%s\", want %s \"%s\"\n",
		__FILE__, line, status, body ? body : "(null)", verdict_name(v),
		reason, verdict_name(want), want_reason ? want_reason : "*");
}

static int printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return 0;
	return 1;
}

static void test_classify_status(void)
{
	check_status(__LINE__, 200, "{\"code\":0,\"msg\":\"ok\",\"data\":null}",
		     TELESPOOL__SENT, "HTTP 200");
	check_status(__LINE__, 200,
		     "{\"code\":422,\"msg\":\"bad field\",\"data\":null}",
		     TELESPOOL__DEAD, "HTTP 200 code 422: bad field");
	check_status(__LINE__, 200, "{\"code\":400}", TELESPOOL__DEAD,
		     "HTTP 200 code 400");
	check_status(__LINE__, 200, "{\"code\":499,\"msg\":\"\"}",
		     TELESPOOL__DEAD, "HTTP 200 code 499");
	check_status(__LINE__, 200, "{\"code\":503,\"msg\":\"busy\"}",
		     TELESPOOL__RETRY, "HTTP 200 code 503: busy");
	check_status(__LINE__, 200, "{\"code\":500}", TELESPOOL__RETRY,
		     "HTTP 200 code 500");
	check_status(__LINE__, 200, "{\"code\":399}", TELESPOOL__SENT,
		     "HTTP 200");
	check_status(__LINE__, 200, "{\"code\":-1}", TELESPOOL__SENT,
		     "HTTP 200");
	check_status(__LINE__, 200, "<html>ok</html>", TELESPOOL__SENT,
		     "HTTP 200");
	check_status(__LINE__, 200, "{\"code\":", TELESPOOL__SENT, "HTTP 200");
	check_status(__LINE__, 200, "[422]", TELESPOOL__SENT, "HTTP 200");
	check_status(__LINE__, 200, "{\"code\":\"422\"}", TELESPOOL__SENT,
		     "HTTP 200");
	check_status(__LINE__, 200, "{\"code\":422.5}", TELESPOOL__SENT,
		     "HTTP 200");
	check_status(__LINE__, 200, "{\"code\":1e999}", TELESPOOL__SENT,
		     "HTTP 200");
	check_status(__LINE__, 200, "{\"code\":null}", TELESPOOL__SENT,
		     "HTTP 200");
	check_status(__LINE__, 200, "{\"msg\":\"no code\"}", TELESPOOL__SENT,
		     "HTTP 200");
	check_status(__LINE__, 200, "{\"code\":4.22e2}", TELESPOOL__DEAD,
		     "HTTP 200 code 422");
	check_status(__LINE__, 200, "{\"code\":1e20}", TELESPOOL__RETRY,
		     "HTTP 200 code 1e+20");
	/* A body cut at the transport's cap: the top-level "code" of its
	 * prefix still decides, nested or quoted ones do not. */
	check_status(__LINE__, 200,
		     "{\"code\": 422, \"msg\": \"bad\", \"pad\": \"xxxx",
		     TELESPOOL__DEAD, "HTTP 200 code 422");
	check_status(__LINE__, 200,
		     "{\"msg\":\"a \\\"code\\\"\",\"code\":503,\"p\":[1,",
		     TELESPOOL__RETRY, "HTTP 200 code 503");
	check_status(__LINE__, 200,
		     "{\"data\":{\"code\":500},\"code\":0,\"pad\":\"xx",
		     TELESPOOL__SENT, "HTTP 200");
	check_status(__LINE__, 200, "{\"data\":{\"code\":500,\"pad\":\"xx",
		     TELESPOOL__SENT, "HTTP 200");
	check_status(__LINE__, 200, "{\"code\":42", TELESPOOL__SENT,
		     "HTTP 200");
	check_status(__LINE__, 200, "{\"code\":422.5,\"pad\":\"x",
		     TELESPOOL__SENT, "HTTP 200");
	check_status(__LINE__, 201, "{\"code\":0}", TELESPOOL__SENT,
		     "HTTP 201");
	check_status(__LINE__, 204, "", TELESPOOL__SENT, "HTTP 204");
	check_status(__LINE__, 204, NULL, TELESPOOL__SENT, "HTTP 204");
	check_status(__LINE__, 299, NULL, TELESPOOL__SENT, "HTTP 299");

	/* 1xx/3xx (redirects are not followed) say the URL is wrong: retry;
	 * other 4xx are permanent. */
	check_status(__LINE__, 100, NULL, TELESPOOL__RETRY,
		     "HTTP 100 (unexpected informational answer)");
	check_status(__LINE__, 301, NULL, TELESPOOL__RETRY,
		     "HTTP 301 (redirects are not followed: check space.url)");
	check_status(__LINE__, 304, NULL, TELESPOOL__RETRY,
		     "HTTP 304 (redirects are not followed: check space.url)");
	check_status(__LINE__, 400, "{\"code\":0}", TELESPOOL__DEAD,
		     "HTTP 400");
	check_status(__LINE__, 401, NULL, TELESPOOL__DEAD, "HTTP 401");
	check_status(__LINE__, 403, NULL, TELESPOOL__DEAD, "HTTP 403");
	check_status(__LINE__, 404, NULL, TELESPOOL__DEAD, "HTTP 404");
	check_status(__LINE__, 409, NULL, TELESPOOL__DEAD, "HTTP 409");
	check_status(__LINE__, 413, NULL, TELESPOOL__DEAD, "HTTP 413");
	check_status(__LINE__, 422, NULL, TELESPOOL__DEAD, "HTTP 422");

	/* Timeouts, throttling and server errors come back later. */
	check_status(__LINE__, 408, NULL, TELESPOOL__RETRY, "HTTP 408");
	check_status(__LINE__, 429, NULL, TELESPOOL__RETRY, "HTTP 429");
	check_status(__LINE__, 500, NULL, TELESPOOL__RETRY, "HTTP 500");
	check_status(__LINE__, 502, "<html>bad gateway</html>",
		     TELESPOOL__RETRY, "HTTP 502");
	check_status(__LINE__, 503, "{\"code\":0}", TELESPOOL__RETRY,
		     "HTTP 503");
	check_status(__LINE__, 599, NULL, TELESPOOL__RETRY, "HTTP 599");

	/* Not an HTTP status at all: a broken transport, not the event. */
	check_status(__LINE__, 0, NULL, TELESPOOL__RETRY,
		     "HTTP 0 (invalid status)");
	check_status(__LINE__, 600, NULL, TELESPOOL__RETRY,
		     "HTTP 600 (invalid status)");
	check_status(__LINE__, -1, NULL, TELESPOOL__RETRY,
		     "HTTP -1 (invalid status)");
}

static void test_classify_body_edges(void)
{
	static const char buf[] = "{\"code\":422}{\"code\":0} trailing";
	char reason[128];
	telespool__verdict v;

	/* Only body_len bytes count: the buffer need not end in NUL. */
	v = tsu_classify(TSU_NET_OK, 200, buf, 12, NULL, reason, sizeof reason);
	ASSERT_EQ(v, TELESPOOL__DEAD);
	ASSERT_STREQ(reason, "HTTP 200 code 422");
	v = tsu_classify(TSU_NET_OK, 200, buf, 11, NULL, reason, sizeof reason);
	ASSERT_EQ(v, TELESPOOL__SENT);

	/* The message is from the server: printable ASCII only, one line. */
	v = tsu_classify(
	    TSU_NET_OK, 200,
	    "{\"code\":400,\"msg\":\"caf\\u00e9\\n\\u001b[31mx\"}",
	    strlen("{\"code\":400,\"msg\":\"caf\\u00e9\\n\\u001b[31mx\"}"),
	    NULL, reason, sizeof reason);
	ASSERT_EQ(v, TELESPOOL__DEAD);
	ASSERT_STREQ(reason, "HTTP 200 code 400: caf?? ?[31mx");
	ASSERT_TRUE(printable(reason));

	/* Truncation keeps the terminator inside reasonlen. */
	memset(reason, 'Z', sizeof reason);
	v = tsu_classify(TSU_NET_OK, 200, "{\"code\":422,\"msg\":\"long\"}", 26,
			 NULL, reason, 8);
	ASSERT_EQ(v, TELESPOOL__DEAD);
	ASSERT_STREQ(reason, "HTTP 20");
	ASSERT_EQ(reason[8], 'Z');
	memset(reason, 'Z', sizeof reason);
	v = tsu_classify(TSU_NET_OK, 404, NULL, 0, NULL, reason, 1);
	ASSERT_EQ(v, TELESPOOL__DEAD);
	ASSERT_STREQ(reason, "");
	ASSERT_EQ(reason[1], 'Z');
	v = tsu_classify(TSU_NET_OK, 503, NULL, 0, NULL, NULL, 0);
	ASSERT_EQ(v, TELESPOOL__RETRY);
	memset(reason, 'Z', sizeof reason);
	v = tsu_classify(TSU_NET_OK, 200, "{\"code\":422}", 12, NULL, reason,
			 0);
	ASSERT_EQ(v, TELESPOOL__DEAD);
	ASSERT_EQ(reason[0], 'Z');
}

static void test_classify_transport(void)
{
	static const struct {
		tsu_transport t;
		const char *name;
	} rows[] = {
	    {TSU_NET_CONNECT, "connection failed"},
	    {TSU_NET_DNS, "name did not resolve"},
	    {TSU_NET_TIMEOUT, "timed out"},
	    {TSU_NET_TLS, "TLS failure"},
	    {TSU_NET_PROTOCOL, "protocol error"},
	    {TSU_NET_ABORTED, "aborted"},
	};
	char reason[64], want[128];

	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		telespool__verdict v;

		/* A status or body left over must not change the verdict. */
		v = tsu_classify(rows[i].t, 400, "{\"code\":422}", 12, NULL,
				 reason, sizeof reason);
		ASSERT_EQ(v, TELESPOOL__RETRY);
		ASSERT_STREQ(reason, rows[i].name);

		v = tsu_classify(rows[i].t, 0, NULL, 0, "Couldn't connect",
				 reason, sizeof reason);
		ASSERT_EQ(v, TELESPOOL__RETRY);
		snprintf(want, sizeof want, "%s: Couldn't connect",
			 rows[i].name);
		ASSERT_STREQ(reason, want);
	}

	/* curl's text is ours to print: control bytes and UTF-8 go. */
	tsu_classify(TSU_NET_TLS, 0, NULL, 0,
		     "bad\r\ncert \xe2\x80\x94 \x01\x7f end", reason,
		     sizeof reason);
	ASSERT_STREQ(reason, "TLS failure: bad  cert ??? ?? end");
	ASSERT_TRUE(printable(reason));

	/* A long detail is truncated, never overflowing. */
	{
		char detail[1000];
		memset(detail, 'x', sizeof detail - 1);
		detail[sizeof detail - 1] = '\0';
		tsu_classify(TSU_NET_TIMEOUT, 0, NULL, 0, detail, reason,
			     sizeof reason);
		ASSERT_EQ(strlen(reason), sizeof reason - 1);
	}

	/* An out-of-range transport value is still a transport failure. */
	ASSERT_EQ(tsu_classify((tsu_transport)99, 200, NULL, 0, NULL, reason,
			       sizeof reason),
		  TELESPOOL__RETRY);
	ASSERT_STREQ(reason, "transport failure");
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static void test_backoff(void)
{
	const int64_t base = 1000, cap = 300000;
	uint64_t seed = 0x9e3779b97f4a7c15u;
	int bad_range = 0, bad_low = 0;
	double prev_mean = -1;
	int grew = 0;

	for (int a = 0; a <= 1000; a++) {
		int64_t hi = a >= 20             ? cap
			     : (base << a) > cap ? cap
						 : base << a;
		double sum = 0;

		for (int i = 0; i < 200; i++) {
			int64_t d =
			    tsu_backoff_ms(a, base, cap, xorshift(&seed));
			if (d < 0 || d > hi || d > cap)
				bad_range++;
			if (d < base / 2)
				bad_low++;
			sum += (double)d;
		}
		if (a <= 10 && sum / 200 > prev_mean)
			grew++;
		if (a <= 10)
			prev_mean = sum / 200;
	}
	ASSERT_EQ(bad_range, 0);
	ASSERT_EQ(bad_low, 0);
	ASSERT_EQ(grew,
		  11); /* the mean rises with every attempt until the cap */

	/* The ends of the range are reachable. */
	ASSERT_EQ(tsu_backoff_ms(0, base, cap, 0), 500);
	ASSERT_EQ(tsu_backoff_ms(0, base, cap, 500), 1000);
	ASSERT_EQ(tsu_backoff_ms(3, base, cap, 7500), 8000);
	ASSERT_EQ(tsu_backoff_ms(3, base, cap, 7501), 500);
	ASSERT_EQ(tsu_backoff_ms(30, base, cap, cap - base / 2), cap);

	/* Overflow territory. */
	for (int i = 0; i < 1000; i++) {
		uint64_t r = xorshift(&seed);
		int64_t d;

		d = tsu_backoff_ms(INT_MAX, base, cap, r);
		ASSERT_TRUE(d >= base / 2 && d <= cap);
		d = tsu_backoff_ms(62, INT64_MAX, INT64_MAX, r);
		ASSERT_TRUE(d >= INT64_MAX / 2);
		d = tsu_backoff_ms(INT_MAX, INT64_MAX, INT64_MAX, r);
		ASSERT_TRUE(d >= INT64_MAX / 2);
		d = tsu_backoff_ms(61, 3, INT64_MAX, r);
		ASSERT_TRUE(d >= 1 && d <= INT64_MAX);
		d = tsu_backoff_ms(i % 64, base, INT64_MAX, r);
		ASSERT_TRUE(d >= base / 2);
	}
	ASSERT_EQ(tsu_backoff_ms(0, INT64_MAX, INT64_MAX, UINT64_MAX),
		  INT64_MAX / 2 +
		      (int64_t)(UINT64_MAX %
				((uint64_t)(INT64_MAX - INT64_MAX / 2) + 1)));

	/* Odd arguments stay in bounds. */
	ASSERT_EQ(tsu_backoff_ms(-5, base, cap, 0), 500);
	ASSERT_EQ(tsu_backoff_ms(INT_MIN, base, cap, 500), 1000);
	ASSERT_EQ(tsu_backoff_ms(5, 0, cap, 12345), 0);
	ASSERT_EQ(tsu_backoff_ms(5, base, 0, 12345), 0);
	ASSERT_EQ(tsu_backoff_ms(5, base, -1, 12345), 0);
	ASSERT_EQ(tsu_backoff_ms(5, -1000, cap, 12345), 0);
	/* A cap below base/2 still caps. */
	ASSERT_EQ(tsu_backoff_ms(0, base, 100, UINT64_MAX), 100);
	ASSERT_EQ(tsu_backoff_ms(9, base, 100, 7), 100);
}

/* 1994-11-06 08:49:37 UTC, the RFC's example date. */
#define RFC_DATE_S INT64_C(784111777)

static void test_retry_after_seconds(void)
{
	const int64_t now = 1700000000000, max = 3600000;

	ASSERT_EQ(tsu_retry_after_ms("120", now, max), 120000);
	ASSERT_EQ(tsu_retry_after_ms(" 120 ", now, max), 120000);
	ASSERT_EQ(tsu_retry_after_ms("\t7\t", now, max), 7000);
	ASSERT_EQ(tsu_retry_after_ms("0", now, max), 0);
	ASSERT_EQ(tsu_retry_after_ms("000", now, max), 0);
	ASSERT_EQ(tsu_retry_after_ms("3600", now, max), 3600000);
	ASSERT_EQ(tsu_retry_after_ms("3601", now, max), max);
	ASSERT_EQ(tsu_retry_after_ms("86400", now, max), max);
	ASSERT_EQ(tsu_retry_after_ms("9223372036854775807", now, max), max);
	ASSERT_EQ(tsu_retry_after_ms("99999999999999999999999999999999999999",
				     now, max),
		  max);
	ASSERT_EQ(tsu_retry_after_ms("99999999999999999999999999999999999999",
				     now, INT64_MAX),
		  INT64_MAX / 1000 * 1000);
	ASSERT_EQ(tsu_retry_after_ms("5", now, 0), 0);
	ASSERT_EQ(tsu_retry_after_ms("5", now, -7), 0);

	ASSERT_EQ(tsu_retry_after_ms(NULL, now, max), -1);
	ASSERT_EQ(tsu_retry_after_ms("", now, max), -1);
	ASSERT_EQ(tsu_retry_after_ms("   ", now, max), -1);
	ASSERT_EQ(tsu_retry_after_ms("-5", now, max), -1);
	ASSERT_EQ(tsu_retry_after_ms("+5", now, max), -1);
	ASSERT_EQ(tsu_retry_after_ms("1.5", now, max), -1);
	ASSERT_EQ(tsu_retry_after_ms("12abc", now, max), -1);
	ASSERT_EQ(tsu_retry_after_ms("1 2", now, max), -1);
	ASSERT_EQ(tsu_retry_after_ms("0x10", now, max), -1);
	ASSERT_EQ(tsu_retry_after_ms("abc", now, max), -1);
	ASSERT_EQ(tsu_retry_after_ms("soon", now, max), -1);
	ASSERT_EQ(tsu_retry_after_ms("5\n", now, max), -1);
}

static void test_retry_after_dates(void)
{
	const int64_t when = RFC_DATE_S * 1000, max = INT64_C(1) << 50;
	static const char *const forms[] = {
	    "Sun, 06 Nov 1994 08:49:37 GMT",
	    "Sunday, 06-Nov-94 08:49:37 GMT",
	    "Sun Nov  6 08:49:37 1994",
	    "  Sun, 06 Nov 1994 08:49:37 GMT\t",
	};

	for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
		/* A minute ahead, half a second ahead, now, and past. */
		ASSERT_EQ(tsu_retry_after_ms(forms[i], when - 60000, max),
			  60000);
		ASSERT_EQ(tsu_retry_after_ms(forms[i], when - 500, max), 500);
		ASSERT_EQ(tsu_retry_after_ms(forms[i], when - 60000, 1000),
			  1000);
		ASSERT_EQ(tsu_retry_after_ms(forms[i], when, max), 0);
		ASSERT_EQ(tsu_retry_after_ms(forms[i], when + 1, max), 0);
		ASSERT_EQ(tsu_retry_after_ms(forms[i], when + 86400000, max),
			  0);
		ASSERT_EQ(tsu_retry_after_ms(forms[i], 0, max), when);
	}

	/* A far-future date is clamped; leap years and day 29 are real. */
	ASSERT_EQ(tsu_retry_after_ms("Fri, 31 Dec 9999 23:59:59 GMT",
				     1700000000000, 3600000),
		  3600000);
	ASSERT_EQ(tsu_retry_after_ms("Thu, 29 Feb 2024 00:00:00 GMT",
				     INT64_C(1709164800000) - 1000, max),
		  1000);
	ASSERT_EQ(tsu_retry_after_ms("Tue, 01 Jan 1970 00:00:10 GMT", 0, max),
		  10000);
	ASSERT_EQ(tsu_retry_after_ms("Wed Feb 29 12:00:00 2000",
				     INT64_C(951825600000) - 2000, max),
		  2000);
	/* A negative clock (before 1970) still works. */
	ASSERT_EQ(
	    tsu_retry_after_ms("Thu, 01 Jan 1970 00:00:00 GMT", -1500, max),
	    1500);

	/*
	 * RFC 850's two-digit year: more than 50 years ahead means the
	 * previous century.  Seen from 2025, "30" is 2030 and "94" is 1994.
	 */
	{
		const int64_t now2025 = INT64_C(1735689600000); /* 2025-01-01 */
		const int64_t in2030 = INT64_C(1893456000000);  /* 2030-01-01 */
		ASSERT_EQ(tsu_retry_after_ms("Tuesday, 01-Jan-30 00:00:00 GMT",
					     now2025, max),
			  in2030 - now2025);
		ASSERT_EQ(tsu_retry_after_ms("Sunday, 06-Nov-94 08:49:37 GMT",
					     now2025, max),
			  0);
		ASSERT_EQ(tsu_retry_after_ms("Sunday, 06-Nov-94 08:49:37 GMT",
					     when - 1000, max),
			  1000);
	}

	/* Garbage that looks like a date. */
	static const char *const bad[] = {
	    "Sun, 31 Feb 1994 08:49:37 GMT", /* no such day */
	    "Sun, 29 Feb 1900 08:49:37 GMT", /* 1900 is not leap */
	    "Sun, 06 Nov 1994 24:00:00 GMT",
	    "Sun, 06 Nov 1994 08:60:37 GMT",
	    "Sun, 06 Nov 1994 08:49:61 GMT",
	    "Sun, 06 Nov 1994 08:49:37 UTC",
	    "Sun, 06 Nov 1994 08:49:37 gmt",
	    "Sun, 06 nov 1994 08:49:37 GMT",
	    "Sun, 6 Nov 1994 08:49:37 GMT",
	    "Sun, 06 Nov 94 08:49:37 GMT",
	    "Sun, 06 Nov 1994 08:49 GMT",
	    "Xyz, 06 Nov 1994 08:49:37 GMT",
	    "Sun, 06 Nov 1994 08:49:37 GMT junk",
	    "Sun, 06 Nov 1994 08:49:37 GMTX",
	    "Sun, 00 Nov 1994 08:49:37 GMT",
	    "Sun, 06 Foo 1994 08:49:37 GMT",
	    "Sun, 06 Nov 1994 8:49:37  GMT",
	    "Sun, 06 Nov 19x4 08:49:37 GMT",
	    "Sunday, 06-Nov-1994 08:49:37 GMT",
	    "Sunday, 06 Nov 94 08:49:37 GMT",
	    "Sun, 06-Nov-94 08:49:37 GMT",
	    "Sunday, 06-Nov-9x 08:49:37 GMT",
	    "Sun Nov 6 08:49:37 1994",
	    "Sun Nov 06 08:49:37 94",
	    "Sun Nov  6 08:49:37 1994 GMT",
	    "Sun Nov   6 08:49:37 1994",
	    "Sun",
	    "Sunday,",
	    "Sunday, ",
	    "Sun,",
	    "Mon, 06 Nov 1994 08:49:37 GMT\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int64_t r = tsu_retry_after_ms(bad[i], 0, max);
		if (r != -1)
			fprintf(stderr, "  bad date accepted: \"%s\"\n",
				bad[i]);
		ASSERT_EQ(r, -1);
	}
	/* The day name is not checked against the date (RFC 9110 allows). */
	ASSERT_EQ(tsu_retry_after_ms("Mon, 06 Nov 1994 08:49:37 GMT", 0, max),
		  when);
	/* A leap second is accepted and lands on the next second. */
	ASSERT_EQ(tsu_retry_after_ms("Sat, 31 Dec 2016 23:59:60 GMT", 0, max),
		  INT64_C(1483228800000));
}

static void test_survey(void)
{
	char *s;

	s = tsu_survey_from_response(
	    "{\"code\":0,\"msg\":\"ok\",\"data\":{\"survey\":{\"id\":\"s1\","
	    "\"questions\":[{\"q\":\"How?\",\"options\":[1, 2]}]}}}",
	    strlen("{\"code\":0,\"msg\":\"ok\",\"data\":{\"survey\":{\"id\":"
		   "\"s1\","
		   "\"questions\":[{\"q\":\"How?\",\"options\":[1, 2]}]}}}"));
	ASSERT_STREQ(s, "{\"id\":\"s1\",\"questions\":[{\"q\":\"How?\","
			"\"options\":[1,2]}]}");
	free(s);

	s = tsu_survey_from_response("{\"data\":{\"survey\":{}}}", 22);
	ASSERT_STREQ(s, "{}");
	free(s);

	/* Only len bytes are read. */
	{
		static const char buf[] =
		    "{\"data\":{\"survey\":{\"a\":1}}}XXXX";
		s = tsu_survey_from_response(buf, sizeof buf - 1 - 4);
		ASSERT_STREQ(s, "{\"a\":1}");
		free(s);
		s = tsu_survey_from_response(buf, 10);
		ASSERT_TRUE(s == NULL);
		free(s);
	}

	static const char *const none[] = {
	    "{\"code\":0,\"msg\":\"ok\",\"data\":{}}",
	    "{\"code\":0,\"msg\":\"ok\",\"data\":null}",
	    "{\"code\":0,\"data\":{\"survey\":null}}",
	    "{\"code\":0,\"data\":{\"survey\":[1,2]}}",
	    "{\"code\":0,\"data\":{\"survey\":\"s1\"}}",
	    "{\"code\":0,\"data\":[{\"survey\":{}}]}",
	    "{\"code\":0,\"survey\":{\"id\":1}}",
	    "[{\"data\":{\"survey\":{}}}]",
	    "not json",
	    "{\"data\":{\"survey\":{\"id\":",
	    "",
	};
	for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
		s = tsu_survey_from_response(none[i], strlen(none[i]));
		if (s)
			fprintf(stderr, "  unexpected survey from %s: %s\n",
				none[i], s);
		ASSERT_TRUE(s == NULL);
		free(s);
	}
	ASSERT_TRUE(tsu_survey_from_response(NULL, 0) == NULL);
	ASSERT_TRUE(tsu_survey_from_response(NULL, 10) == NULL);
}

/* tsu_judge(): one event per case, against what Space answered. */
#define NOW     1700000000000LL
#define BACKOFF (-1) /* want_next: now + the row's backoff */

struct judge_case {
	int line;
	const char *type;
	int attempts;
	int64_t age_ms; /* created NOW - age_ms; 0: created unknown */
	tsu_transport net;
	long status;
	const char *body;
	const char *retry_after;
	unsigned ok_in; /* endpoints that accepted an event before */
	telespool__verdict want;
	const char *want_drop;
	int64_t want_next; /* ms after NOW, BACKOFF, or 0 (not RETRY) */
	unsigned ok_out;
	int want_throttled;
};

static const tsu_judge_params judge_params = {NOW,  5,    60000,
					      1000, 8000, 3600000};

static const struct judge_case judge_cases[] = {
    {__LINE__, "query", 0, 10, TSU_NET_OK, 200, "{}", NULL, 0, TELESPOOL__SENT,
     NULL, 0, 1, 0},
    {__LINE__, "survey_trigger", 0, 10, TSU_NET_OK, 200, NULL, NULL, 0,
     TELESPOOL__SENT, NULL, 0, 2, 0},
    {__LINE__, "bogus", 0, 10, TSU_NET_OK, 0, NULL, NULL, 0, TELESPOOL__DEAD,
     "rejected", 0, 0, 0},
    {__LINE__, "query", 0, 10, TSU_NET_ABORTED, 0, NULL, NULL, 0,
     TELESPOOL__RELEASE, NULL, 0, 0, 0},
    {__LINE__, "query", 0, 10, TSU_NET_OK, 503, NULL, NULL, 0, TELESPOOL__RETRY,
     NULL, BACKOFF, 0, 0},
    {__LINE__, "query", 2, 0, TSU_NET_CONNECT, 0, NULL, NULL, 0,
     TELESPOOL__RETRY, NULL, BACKOFF, 0, 0},
    /* max attempts, then the age limit */
    {__LINE__, "query", 4, 10, TSU_NET_OK, 503, NULL, NULL, 0, TELESPOOL__DEAD,
     "max_attempts", 0, 0, 0},
    {__LINE__, "query", 0, 60001, TSU_NET_OK, 503, NULL, NULL, 0,
     TELESPOOL__DEAD, "expired", 0, 0, 0},
    {__LINE__, "query", 0, 60000, TSU_NET_OK, 503, NULL, NULL, 0,
     TELESPOOL__RETRY, NULL, BACKOFF, 0, 0},
    /* Retry-After replaces the backoff, and 429 throttles */
    {__LINE__, "query", 0, 10, TSU_NET_OK, 503, NULL, "7", 0, TELESPOOL__RETRY,
     NULL, 7000, 0, 1},
    {__LINE__, "query", 0, 10, TSU_NET_OK, 429, NULL, NULL, 0, TELESPOOL__RETRY,
     NULL, BACKOFF, 0, 1},
    {__LINE__, "query", 0, 10, TSU_NET_OK, 429, NULL, "99999", 0,
     TELESPOOL__RETRY, NULL, 3600000, 0, 1},
    {__LINE__, "query", 0, 10, TSU_NET_OK, 200, "{}", "30", 0, TELESPOOL__SENT,
     NULL, 0, 1, 0},
    /* a refusal: about the event once its endpoint accepted one */
    {__LINE__, "query", 0, 10, TSU_NET_OK, 400, NULL, NULL, 1, TELESPOOL__DEAD,
     "rejected", 0, 1, 0},
    {__LINE__, "query", 0, 10, TSU_NET_OK, 200, "{\"code\":422}", NULL, 1,
     TELESPOOL__DEAD, "rejected", 0, 1, 0},
    {__LINE__, "query", 0, 10, TSU_NET_OK, 400, NULL, NULL, 2, TELESPOOL__RETRY,
     NULL, BACKOFF, 2, 0},
    {__LINE__, "query", 0, 10, TSU_NET_OK, 401, NULL, NULL, 1, TELESPOOL__RETRY,
     NULL, BACKOFF, 1, 0},
    {__LINE__, "survey_response", 0, 10, TSU_NET_OK, 404, NULL, NULL, 0,
     TELESPOOL__RETRY, NULL, BACKOFF, 0, 0},
    {__LINE__, "query", 4, 10, TSU_NET_OK, 401, NULL, NULL, 0, TELESPOOL__DEAD,
     "max_attempts", 0, 0, 0},
    {__LINE__, "query", 0, 70000, TSU_NET_OK, 403, NULL, NULL, 0,
     TELESPOOL__DEAD, "expired", 0, 0, 0},
    {__LINE__, "query", 0, 10, TSU_NET_OK, 401, NULL, "5", 0, TELESPOOL__RETRY,
     NULL, 5000, 0, 1},
};

static void test_judge_table(void)
{
	for (size_t k = 0; k < sizeof(judge_cases) / sizeof(judge_cases[0]);
	     k++) {
		const struct judge_case *c = &judge_cases[k];
		tsu_answer a = {c->type,
				c->attempts,
				c->age_ms ? NOW - c->age_ms : 0,
				c->net,
				c->net == TSU_NET_OK ? c->status : 0,
				c->body ? c->body : "",
				c->body ? strlen(c->body) : 0,
				"connection refused",
				c->retry_after,
				0x9e3779b97f4a7c15ULL};
		telespool__outcome oc;
		char why[1][200];
		tsu_tally t;
		unsigned ok = c->ok_in;
		memset(&oc, 0, sizeof(oc));
		tsu_judge(&a, 1, &judge_params, &ok, &oc, why, &t);
		int64_t next =
		    c->want_next == BACKOFF
			? NOW + tsu_backoff_ms(c->attempts, 1000, 8000, a.rnd)
		    : c->want_next ? NOW + c->want_next
				   : 0;
		const char *drop = oc.drop_reason ? oc.drop_reason : "-";
		if (oc.verdict == c->want && oc.next_attempt_ms == next &&
		    strcmp(drop, c->want_drop ? c->want_drop : "-") == 0 &&
		    ok == c->ok_out && t.throttled == c->want_throttled &&
		    (oc.verdict == TELESPOOL__SENT ||
		     oc.verdict == TELESPOOL__RELEASE) == !oc.last_error) {
			tu_passed++;
			continue;
		}
		tu_failed++;
		fprintf(stderr,
			"%s:%d: got %d %s next %+" PRId64 " ok %u throttled "
			"%d\n",
			__FILE__, c->line, (int)oc.verdict, drop,
			(int64_t)(oc.next_attempt_ms ? oc.next_attempt_ms - NOW
						     : 0),
			ok, t.throttled);
	}
}

/* The batch-wide rules: an endpoint that accepted one event in the batch
 * makes a content refusal about its event; a refusal at an endpoint that
 * accepted nothing is kept and counted; Retry-After floors every RETRY. */
static void test_judge_batch(void)
{
	const tsu_answer a[] = {
	    {"query", 0, 0, TSU_NET_OK, 422, "", 0, NULL, NULL, 1},
	    {"query", 0, 0, TSU_NET_OK, 200, "{}", 2, NULL, NULL, 2},
	    {"survey_dismiss", 0, 0, TSU_NET_OK, 403, "", 0, NULL, NULL, 3},
	    {"query", 0, 0, TSU_NET_OK, 503, "", 0, NULL, "20", 4},
	    {"query", 0, 0, TSU_NET_CONNECT, 0, NULL, 0, "refused", NULL, 5},
	    {"query", 0, 0, TSU_NET_ABORTED, 0, NULL, 0, NULL, NULL, 6},
	};
	telespool__outcome oc[6];
	char why[6][200];
	tsu_tally t;
	unsigned ok = 0;

	memset(oc, 0, sizeof(oc));
	tsu_judge(a, 6, &judge_params, &ok, oc, why, &t);
	ASSERT_EQ(oc[0].verdict, TELESPOOL__DEAD);
	ASSERT_STREQ(oc[0].drop_reason, "rejected");
	ASSERT_STREQ(oc[0].last_error, "HTTP 422");
	ASSERT_EQ(oc[1].verdict, TELESPOOL__SENT);
	ASSERT_EQ(oc[2].verdict, TELESPOOL__RETRY);
	ASSERT_EQ(oc[2].next_attempt_ms, NOW + 20000); /* the floor */
	ASSERT_EQ(oc[3].next_attempt_ms, NOW + 20000);
	ASSERT_EQ(oc[4].verdict, TELESPOOL__RETRY);
	ASSERT_EQ(oc[4].next_attempt_ms, NOW + 20000);
	ASSERT_EQ(oc[5].verdict, TELESPOOL__RELEASE);
	ASSERT_EQ(ok, 1u);
	ASSERT_EQ(t.sent, 1);
	ASSERT_EQ(t.dead, 1);
	ASSERT_EQ(t.retried, 3);
	ASSERT_EQ(t.retryable, 2);
	ASSERT_EQ(t.refusals, 1);
	ASSERT_EQ(t.refused, 1);
	ASSERT_EQ(t.attempted, 5);
	ASSERT_EQ(t.released, 1);
	ASSERT_EQ(t.throttled, 1);
	ASSERT_EQ(t.retry_after, 20000);
	ASSERT_STREQ(t.refusal, "HTTP 403");
	ASSERT_EQ(t.refused_endpoint,
		  tsu_endpoint_index("/api/v1/survey/dismiss"));
	ASSERT_STREQ(tsu_endpoint_path(t.refused_endpoint),
		     "/api/v1/survey/dismiss");
	ASSERT_TRUE(tsu_endpoint_path(TSU_ENDPOINTS) == NULL);
	ASSERT_TRUE(tsu_endpoint_index(NULL) == -1);
}

/* The time text of messages and --status: the spool's format, one width. */
static void test_clock_iso(void)
{
	char t[TSU_ISO_LEN];

	tsu_iso(0, t);
	ASSERT_STREQ(t, "1970-01-01T00:00:00.000Z");
	tsu_iso(1764763200123LL, t);
	ASSERT_STREQ(t, "2025-12-03T12:00:00.123Z");
	tsu_iso(951782400999LL, t); /* a leap day */
	ASSERT_STREQ(t, "2000-02-29T00:00:00.999Z");
	tsu_iso(-1, t); /* floor, not truncation, before 1970 */
	ASSERT_STREQ(t, "1969-12-31T23:59:59.999Z");
	tsu_iso(INT64_MAX, t);
	ASSERT_STREQ(t, "9999-12-31T23:59:59.999Z");
	tsu_iso(INT64_MIN, t);
	ASSERT_STREQ(t, "0000-01-01T00:00:00.000Z");
	tsu_iso(-61000000000000LL, t); /* a year below 1000: padded */
	ASSERT_STREQ(t, "0036-12-26T11:33:20.000Z");
}

static void test_clock_random(void)
{
	uint64_t a = tsu_random64(), b = tsu_random64(), or = a | b;

	/* Two equal draws, or bits never set, would mean no randomness
	 * (chance 2^-64 and about 2^-58 respectively). */
	ASSERT_TRUE(a != b);
	for (int i = 0; i < 62; i++)
		or |= tsu_random64();
	ASSERT_TRUE(or == UINT64_MAX);
	int64_t m0 = tsu_monotonic_ms(), w = tsu_now_ms();
	ASSERT_TRUE(m0 > 0);
	ASSERT_TRUE(tsu_monotonic_ms() >= m0);
	ASSERT_TRUE(w > 0);
}

static const struct tu_test tests[] = {
    {"classify_status", test_classify_status},
    {"classify_body_edges", test_classify_body_edges},
    {"classify_transport", test_classify_transport},
    {"backoff", test_backoff},
    {"retry_after_seconds", test_retry_after_seconds},
    {"retry_after_dates", test_retry_after_dates},
    {"survey", test_survey},
    {"judge_table", test_judge_table},
    {"judge_batch", test_judge_batch},
    {"clock_iso", test_clock_iso},
    {"clock_random", test_clock_random},
};

int main(int argc, char **argv)
{
	return tu_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv,
		       NULL);
}
