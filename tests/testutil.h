/*
 * testutil.h - the few assertion macros the C tests share.  Each failed
 * assertion prints both values and where, and ends its test case (inside
 * tu_main(), on the thread that runs the case: an assertion that fails on
 * another thread, or in a forked child, is counted and the case goes on);
 * a test program ends with TEST_REPORT(), which prints "N passed, N
 * failed" and gives the exit code.
 *
 * Below them, the scaffolding of testutil.c (a private directory, raw files,
 * raw SQLite), which every C test links.
 */
#ifndef TELESPOOL_TESTUTIL_H
#define TELESPOOL_TESTUTIL_H

#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Static: each test program, its own executable, has its own counters.
 * testutil.c asserts nothing and defines TESTUTIL_NO_COUNTERS. */
#ifndef TESTUTIL_NO_COUNTERS
static int tu_passed, tu_failed;
/* Set while tu_main() runs a case: where a failed assertion jumps to. */
static jmp_buf tu_case_end;
static int tu_in_case;
static pthread_t tu_case_thread;
static pid_t tu_case_pid;
#define TU_END_CASE()                                                          \
	do {                                                                   \
		if (tu_in_case && getpid() == tu_case_pid &&                   \
		    pthread_equal(pthread_self(), tu_case_thread))             \
			longjmp(tu_case_end, 1);                               \
	} while (0)
#else
#define TU_END_CASE() ((void)0)
#endif

/* A named test function, for tu_main(). */
struct tu_test {
	const char *name;
	void (*fn)(void);
};

#define TU_FAIL(...)                                                           \
	do {                                                                   \
		tu_failed++;                                                   \
		fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                \
		fprintf(stderr, __VA_ARGS__);                                  \
		fputc('\n', stderr);                                           \
		TU_END_CASE();                                                 \
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

/* ---- testutil.c ---- */

struct sqlite3;

/* dir = $TMPDIR/PREFIX-XXXXXX (/tmp without TMPDIR), created; exits 2 if it
 * cannot be. */
void make_temp_dir(char *dir, size_t len, const char *prefix);
/* Removes path, and everything below it if it is a directory. */
void rm_rf(const char *path);

/* out = path followed by suffix ("-wal", "-journal", ...). */
void path_suffix(char *out, size_t len, const char *path, const char *suffix);
/* The whole file, malloc'd, its length in *len; NULL (and 0) if it cannot
 * be opened. */
unsigned char *slurp_file(const char *path, size_t *len);

/* CLOCK_REALTIME in milliseconds. */
int64_t wall_ms(void);

/* Raw SQLite, around the library: raw_open opens read-write (creating
 * the file if there is none) with a 10 s busy timeout; NULL on failure.
 * Failures are also printed to stderr. */
struct sqlite3 *raw_open(const char *path);
int raw_exec(struct sqlite3 *db, const char *sql);
/* First column of the first row as an integer; -999 on error, -998 if no
 * row. */
int64_t raw_int(struct sqlite3 *db, const char *sql);
/* First column of the first row as malloc'd text; NULL for no row, NULL
 * value or an error. */
char *raw_text(struct sqlite3 *db, const char *sql);
/* The same on a connection of their own, closed again; path_int gives
 * -997 and path_exec SQLITE_CANTOPEN if it cannot be opened. */
int64_t path_int(const char *path, const char *sql);
char *path_text(const char *path, const char *sql);
int path_exec(const char *path, const char *sql);
/* drops.count for this reason, 0 if it has no row. */
int64_t drops_of(const char *path, const char *reason);

#ifndef TESTUTIL_NO_COUNTERS
/* A fresh directory of dir's pattern (made by make_temp_dir: "...-XXXXXX"
 * once filled in) in dir, so that each case starts empty; the old one is
 * removed unless keep. */
static inline void tu_fresh_dir(char *dir, int keep)
{
	size_t n = strlen(dir);
	if (!keep)
		rm_rf(dir);
	if (n >= 6)
		memcpy(dir + n - 6, "XXXXXX", 6);
	if (n < 6 || mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		exit(2);
	}
}

/*
 * The main loop every C test shares.  "--list" prints the case names, one
 * a line (tests/CMakeLists.txt registers each with ctest from it);
 * otherwise it runs the cases named on the command line (all of them
 * without names; an unknown name fails), each announced and, on failure,
 * named again.  Each case runs in a fresh dir (the caller's, made with
 * make_temp_dir(), is replaced before every case; NULL: no directory) and
 * ends at its first failed assertion.  The last dir is removed when
 * everything passed, kept for a look otherwise (with the failed case's
 * files).  Returns the exit code.
 */
static inline int tu_main(const struct tu_test *tests, size_t n, int argc,
			  char **argv, char *dir)
{
	if (argc == 2 && strcmp(argv[1], "--list") == 0) {
		for (size_t i = 0; i < n; i++)
			printf("%s\n", tests[i].name);
		if (dir)
			rm_rf(dir);
		return 0;
	}
	int ran = 0, kept = 0;
	for (size_t i = 0; i < n; i++) {
		int wanted = argc < 2;
		for (int a = 1; a < argc; a++)
			wanted |= strcmp(argv[a], tests[i].name) == 0;
		if (!wanted)
			continue;
		if (dir && ran++)
			tu_fresh_dir(dir, kept);
		int failed = tu_failed;
		printf("-- %s\n", tests[i].name);
		fflush(stdout);
		tu_case_thread = pthread_self();
		tu_case_pid = getpid();
		if (setjmp(tu_case_end) == 0) {
			tu_in_case = 1;
			tests[i].fn();
		}
		tu_in_case = 0;
		kept = tu_failed != failed;
		if (kept) {
			printf("   FAILED: %s\n", tests[i].name);
			if (dir)
				printf("   its files are kept in %s\n", dir);
		}
	}
	for (int a = 1; a < argc; a++) {
		size_t i = 0;
		while (i < n && strcmp(argv[a], tests[i].name) != 0)
			i++;
		if (i == n)
			TU_FAIL("no test named %s", argv[a]);
	}
	if (dir && !kept)
		rm_rf(dir);
	return TEST_REPORT();
}
#endif

#endif
