/*
 * test_policy.c - the uploader's policy: classification of answers,
 * backoff, Retry-After and survey extraction.  Every decision the drain loop
 * takes about an answer is pinned down here.
 */
#include "policy.h"
#include "testutil.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *verdict_name(tsu_verdict v)
{
	return v == TSU_SENT ? "SENT" : v == TSU_RETRY ? "RETRY" : "DEAD";
}

/* Classifies with a body given as a C string and checks the verdict. */
static void check_status(int line, long status, const char *body,
			 tsu_verdict want, const char *want_reason)
{
	char reason[128];
	tsu_verdict v =
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
		     TSU_SENT, "HTTP 200");
	check_status(__LINE__, 200,
		     "{\"code\":422,\"msg\":\"bad field\",\"data\":null}",
		     TSU_DEAD, "HTTP 200 code 422: bad field");
	check_status(__LINE__, 200, "{\"code\":400}", TSU_DEAD,
		     "HTTP 200 code 400");
	check_status(__LINE__, 200, "{\"code\":499,\"msg\":\"\"}", TSU_DEAD,
		     "HTTP 200 code 499");
	check_status(__LINE__, 200, "{\"code\":503,\"msg\":\"busy\"}",
		     TSU_RETRY, "HTTP 200 code 503: busy");
	check_status(__LINE__, 200, "{\"code\":500}", TSU_RETRY,
		     "HTTP 200 code 500");
	check_status(__LINE__, 200, "{\"code\":399}", TSU_SENT, "HTTP 200");
	check_status(__LINE__, 200, "{\"code\":-1}", TSU_SENT, "HTTP 200");
	check_status(__LINE__, 200, "<html>ok</html>", TSU_SENT, "HTTP 200");
	check_status(__LINE__, 200, "{\"code\":", TSU_SENT, "HTTP 200");
	check_status(__LINE__, 200, "[422]", TSU_SENT, "HTTP 200");
	check_status(__LINE__, 200, "{\"code\":\"422\"}", TSU_SENT, "HTTP 200");
	check_status(__LINE__, 200, "{\"code\":422.5}", TSU_SENT, "HTTP 200");
	check_status(__LINE__, 200, "{\"code\":1e999}", TSU_SENT, "HTTP 200");
	check_status(__LINE__, 200, "{\"code\":null}", TSU_SENT, "HTTP 200");
	check_status(__LINE__, 200, "{\"msg\":\"no code\"}", TSU_SENT,
		     "HTTP 200");
	check_status(__LINE__, 200, "{\"code\":4.22e2}", TSU_DEAD,
		     "HTTP 200 code 422");
	check_status(__LINE__, 200, "{\"code\":1e20}", TSU_RETRY,
		     "HTTP 200 code 1e+20");
	/* A body cut at the transport's cap: the top-level "code" of its
	 * prefix still decides, nested or quoted ones do not. */
	check_status(__LINE__, 200,
		     "{\"code\": 422, \"msg\": \"bad\", \"pad\": \"xxxx",
		     TSU_DEAD, "HTTP 200 code 422");
	check_status(__LINE__, 200,
		     "{\"msg\":\"a \\\"code\\\"\",\"code\":503,\"p\":[1,",
		     TSU_RETRY, "HTTP 200 code 503");
	check_status(__LINE__, 200,
		     "{\"data\":{\"code\":500},\"code\":0,\"pad\":\"xx",
		     TSU_SENT, "HTTP 200");
	check_status(__LINE__, 200, "{\"data\":{\"code\":500,\"pad\":\"xx",
		     TSU_SENT, "HTTP 200");
	check_status(__LINE__, 200, "{\"code\":42", TSU_SENT, "HTTP 200");
	check_status(__LINE__, 200, "{\"code\":422.5,\"pad\":\"x", TSU_SENT,
		     "HTTP 200");
	check_status(__LINE__, 201, "{\"code\":0}", TSU_SENT, "HTTP 201");
	check_status(__LINE__, 204, "", TSU_SENT, "HTTP 204");
	check_status(__LINE__, 204, NULL, TSU_SENT, "HTTP 204");
	check_status(__LINE__, 299, NULL, TSU_SENT, "HTTP 299");

	/* 1xx/3xx (redirects are not followed) say the URL is wrong: retry;
	 * other 4xx are permanent. */
	check_status(__LINE__, 100, NULL, TSU_RETRY,
		     "HTTP 100 (unexpected informational answer)");
	check_status(__LINE__, 301, NULL, TSU_RETRY,
		     "HTTP 301 (redirects are not followed: check space.url)");
	check_status(__LINE__, 304, NULL, TSU_RETRY,
		     "HTTP 304 (redirects are not followed: check space.url)");
	check_status(__LINE__, 400, "{\"code\":0}", TSU_DEAD, "HTTP 400");
	check_status(__LINE__, 401, NULL, TSU_DEAD, "HTTP 401");
	check_status(__LINE__, 403, NULL, TSU_DEAD, "HTTP 403");
	check_status(__LINE__, 404, NULL, TSU_DEAD, "HTTP 404");
	check_status(__LINE__, 409, NULL, TSU_DEAD, "HTTP 409");
	check_status(__LINE__, 413, NULL, TSU_DEAD, "HTTP 413");
	check_status(__LINE__, 422, NULL, TSU_DEAD, "HTTP 422");

	/* Timeouts, throttling and server errors come back later. */
	check_status(__LINE__, 408, NULL, TSU_RETRY, "HTTP 408");
	check_status(__LINE__, 429, NULL, TSU_RETRY, "HTTP 429");
	check_status(__LINE__, 500, NULL, TSU_RETRY, "HTTP 500");
	check_status(__LINE__, 502, "<html>bad gateway</html>", TSU_RETRY,
		     "HTTP 502");
	check_status(__LINE__, 503, "{\"code\":0}", TSU_RETRY, "HTTP 503");
	check_status(__LINE__, 599, NULL, TSU_RETRY, "HTTP 599");

	/* Not an HTTP status at all: a broken transport, not the event. */
	check_status(__LINE__, 0, NULL, TSU_RETRY, "HTTP 0 (invalid status)");
	check_status(__LINE__, 600, NULL, TSU_RETRY,
		     "HTTP 600 (invalid status)");
	check_status(__LINE__, -1, NULL, TSU_RETRY, "HTTP -1 (invalid status)");
}

static void test_classify_body_edges(void)
{
	static const char buf[] = "{\"code\":422}{\"code\":0} trailing";
	char reason[128];
	tsu_verdict v;

	/* Only body_len bytes count: the buffer need not end in NUL. */
	v = tsu_classify(TSU_NET_OK, 200, buf, 12, NULL, reason, sizeof reason);
	ASSERT_EQ(v, TSU_DEAD);
	ASSERT_STREQ(reason, "HTTP 200 code 422");
	v = tsu_classify(TSU_NET_OK, 200, buf, 11, NULL, reason, sizeof reason);
	ASSERT_EQ(v, TSU_SENT);

	/* The message is from the server: printable ASCII only, one line. */
	v = tsu_classify(
	    TSU_NET_OK, 200,
	    "{\"code\":400,\"msg\":\"caf\\u00e9\\n\\u001b[31mx\"}",
	    strlen("{\"code\":400,\"msg\":\"caf\\u00e9\\n\\u001b[31mx\"}"),
	    NULL, reason, sizeof reason);
	ASSERT_EQ(v, TSU_DEAD);
	ASSERT_STREQ(reason, "HTTP 200 code 400: caf?? ?[31mx");
	ASSERT_TRUE(printable(reason));

	/* Truncation keeps the terminator inside reasonlen. */
	memset(reason, 'Z', sizeof reason);
	v = tsu_classify(TSU_NET_OK, 200, "{\"code\":422,\"msg\":\"long\"}", 26,
			 NULL, reason, 8);
	ASSERT_EQ(v, TSU_DEAD);
	ASSERT_STREQ(reason, "HTTP 20");
	ASSERT_EQ(reason[8], 'Z');
	memset(reason, 'Z', sizeof reason);
	v = tsu_classify(TSU_NET_OK, 404, NULL, 0, NULL, reason, 1);
	ASSERT_EQ(v, TSU_DEAD);
	ASSERT_STREQ(reason, "");
	ASSERT_EQ(reason[1], 'Z');
	v = tsu_classify(TSU_NET_OK, 503, NULL, 0, NULL, NULL, 0);
	ASSERT_EQ(v, TSU_RETRY);
	memset(reason, 'Z', sizeof reason);
	v = tsu_classify(TSU_NET_OK, 200, "{\"code\":422}", 12, NULL, reason,
			 0);
	ASSERT_EQ(v, TSU_DEAD);
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
		tsu_verdict v;

		/* A status or body left over must not change the verdict. */
		v = tsu_classify(rows[i].t, 400, "{\"code\":422}", 12, NULL,
				 reason, sizeof reason);
		ASSERT_EQ(v, TSU_RETRY);
		ASSERT_STREQ(reason, rows[i].name);

		v = tsu_classify(rows[i].t, 0, NULL, 0, "Couldn't connect",
				 reason, sizeof reason);
		ASSERT_EQ(v, TSU_RETRY);
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
		  TSU_RETRY);
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

static const struct tu_test tests[] = {
    {"classify_status", test_classify_status},
    {"classify_body_edges", test_classify_body_edges},
    {"classify_transport", test_classify_transport},
    {"backoff", test_backoff},
    {"retry_after_seconds", test_retry_after_seconds},
    {"retry_after_dates", test_retry_after_dates},
    {"survey", test_survey},
};

int main(int argc, char **argv)
{
	return tu_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv,
		       NULL);
}
