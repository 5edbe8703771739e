/*
 * testutil.h - the few assertion macros the C tests share.  Each failed
 * assertion prints both values and where; a test program ends with
 * TEST_REPORT(), which prints "N passed, N failed" and gives the exit code.
 */
#ifndef TELESPOOL_TESTUTIL_H
#define TELESPOOL_TESTUTIL_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tu_passed, tu_failed;

#define TU_FAIL(...)                                                           \
	do {                                                                   \
		tu_failed++;                                                   \
		fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                \
		fprintf(stderr, __VA_ARGS__);                                  \
		fputc('\n', stderr);                                           \
	} while (0)

#define ASSERT_TRUE(c)                                                         \
	do {                                                                   \
		if (c)                                                         \
			tu_passed++;                                           \
		else                                                           \
			TU_FAIL("expected true: %s", #c);                      \
	} while (0)

#define ASSERT_EQ(a, b)                                                        \
	do {                                                                   \
		long long tu_a = (long long)(a), tu_b = (long long)(b);        \
		if (tu_a == tu_b)                                              \
			tu_passed++;                                           \
		else                                                           \
			TU_FAIL("%s == %s: %lld != %lld", #a, #b, tu_a, tu_b); \
	} while (0)

#define ASSERT_STREQ(a, b)                                                     \
	do {                                                                   \
		const char *tu_a = (a), *tu_b = (b);                           \
		if (tu_a && tu_b && strcmp(tu_a, tu_b) == 0)                   \
			tu_passed++;                                           \
		else                                                           \
			TU_FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b,          \
				tu_a ? tu_a : "(null)",                        \
				tu_b ? tu_b : "(null)");                       \
	} while (0)

#define ASSERT_CONTAINS(hay, needle)                                           \
	do {                                                                   \
		const char *tu_h = (hay), *tu_n = (needle);                    \
		if (tu_h && tu_n && strstr(tu_h, tu_n))                        \
			tu_passed++;                                           \
		else                                                           \
			TU_FAIL("\"%s\" does not contain \"%s\"",              \
				tu_h ? tu_h : "(null)",                        \
				tu_n ? tu_n : "(null)");                       \
	} while (0)

#define ASSERT_NOT_CONTAINS(hay, needle)                                       \
	do {                                                                   \
		const char *tu_h = (hay), *tu_n = (needle);                    \
		if (tu_h && tu_n && !strstr(tu_h, tu_n))                       \
			tu_passed++;                                           \
		else                                                           \
			TU_FAIL("\"%.200s\" contains \"%s\"",                  \
				tu_h ? tu_h : "(null)",                        \
				tu_n ? tu_n : "(null)");                       \
	} while (0)

#define TEST_REPORT()                                                          \
	(printf("%d passed, %d failed\n", tu_passed, tu_failed),               \
	 tu_failed ? 1 : 0)

#endif
