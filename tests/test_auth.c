/*
 * test_auth.c - the --auth-command credential helper (uploader/src/auth.c):
 * what it is given, what is taken from its output, one run per workspace,
 * and every way it can fail, each bounded in time.  The helpers are small
 * shell scripts in a fresh temporary directory.
 */
#include "auth.h"
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char g_dir[512];

/* Writes an executable script g_dir/name with body; returns its path
 * (static, one at a time) quoted for /bin/sh. */
static const char *script(const char *name, const char *body)
{
	static char cmd[1200];
	char path[1100];
	FILE *f;

	snprintf(path, sizeof path, "%s/%s", g_dir, name);
	f = fopen(path, "w");
	if (!f || fprintf(f, "#!/bin/sh\n%s", body) < 0 || fclose(f) != 0) {
		perror(path);
		exit(2);
	}
	chmod(path, 0700);
	snprintf(cmd, sizeof cmd, "'%s'", path);
	return cmd;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int lines_in(const char *name)
{
	char path[1100];
	int n = 0, c;
	FILE *f;

	snprintf(path, sizeof path, "%s/%s", g_dir, name);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* A helper for command, asserted to be set up. */
static tsu_auth *helper(const char *command, long timeout_ms)
{
	tsu_auth *a = NULL;
	char err[200] = "";
	int rc = tsu_auth_new(&a, command, timeout_ms, err, sizeof err);

	if (rc != 0 || a == NULL)
		fprintf(stderr, "tsu_auth_new(%s): %d %s\n", command, rc, err);
	ASSERT_EQ(rc, 0);
	ASSERT_TRUE(a != NULL);
	return a;
}

/* Setting up a helper without a command fails, saying so. */
static void t_new_errors(void)
{
	tsu_auth *a = (tsu_auth *)&a;
	char err[200] = "";

	ASSERT_EQ(tsu_auth_new(&a, "", 0, err, sizeof err), -1);
	ASSERT_TRUE(a == NULL);
	ASSERT_STREQ(err, "--auth-command names no command");
	a = (tsu_auth *)&a;
	err[0] = '\0';
	ASSERT_EQ(tsu_auth_new(&a, NULL, 0, err, sizeof err), -1);
	ASSERT_TRUE(a == NULL);
	ASSERT_STREQ(err, "--auth-command names no command");
}

static void t_token_and_cache(void)
{
	char body[1400];
	const char *v = NULL;
	char err[256];

	snprintf(body, sizeof body,
		 "echo \"$#:$1:$2\" >> '%s/calls'\n"
		 "printf ' \\t Bearer tok-%%s \\n second line\\n' \"$1\"\n",
		 g_dir);
	tsu_auth *a = helper(script("ok.sh", body), 0);
	ASSERT_TRUE(a != NULL);
	ASSERT_EQ(tsu_auth_get(a, "ws-1", &v, err, sizeof err), 0);
	ASSERT_STREQ(v, "Bearer tok-ws-1");
	ASSERT_EQ(tsu_auth_get(a, "ws-2", &v, err, sizeof err), 0);
	ASSERT_STREQ(v, "Bearer tok-ws-2");
	ASSERT_EQ(tsu_auth_get(a, "ws-1", &v, err, sizeof err), 0);
	ASSERT_STREQ(v, "Bearer tok-ws-1");
	/* Once per workspace for the life of the tsu_auth (a run). */
	ASSERT_EQ(lines_in("calls"), 2);
	tsu_auth_free(a);
	tsu_auth_free(NULL);

	/* The workspace is one argument, never shell text. */
	a = helper(script("arg.sh", "printf '%s' \"$#\"\n"), 0);
	ASSERT_EQ(
	    tsu_auth_get(a, "a b; $(touch x) `y` \"z\"", &v, err, sizeof err),
	    0);
	ASSERT_STREQ(v, "Bearer 1");
	tsu_auth_free(a);

	/* Empty output: no header; that is remembered too. */
	a = helper(script("empty.sh", "echo\n"), 0);
	v = "x";
	ASSERT_EQ(tsu_auth_get(a, "ws", &v, err, sizeof err), 0);
	ASSERT_TRUE(v == NULL);
	tsu_auth_free(a);
	a = helper(script("bearer.sh", "echo 'Bearer   '\n"), 0);
	ASSERT_EQ(tsu_auth_get(a, "ws", &v, err, sizeof err), 0);
	ASSERT_TRUE(v == NULL);
	tsu_auth_free(a);

	/* Exactly the cap is still accepted. */
	a = helper(
	    script("cap.sh", "head -c 16383 /dev/zero | tr '\\0' a; echo\n"),
	    0);
	ASSERT_EQ(tsu_auth_get(a, "ws", &v, err, sizeof err), 0);
	ASSERT_TRUE(v != NULL && strlen(v) == 7 + 16383);
	tsu_auth_free(a);
}

/* A descriptor the uploader holds without O_CLOEXEC (libcurl's sockets
 * are such) is not the helper's to inherit. */
static void t_no_inherited_fds(void)
{
	const char *v = NULL;
	char err[256];
	int fd = dup2(STDERR_FILENO, 20);

	ASSERT_EQ(fd, 20);
	tsu_auth *a =
	    helper(script("fds.sh", "[ -e /proc/$$/fd/20 ] && echo leaked || "
				    "echo clean\n"),
		   0);
	ASSERT_EQ(tsu_auth_get(a, "ws", &v, err, sizeof err), 0);
	ASSERT_STREQ(v, "Bearer clean");
	tsu_auth_free(a);
	/* Still open, and still usable, in the uploader. */
	ASSERT_EQ(write(fd, "", 0), 0);
	close(fd);
}

static void t_failures(void)
{
	static const struct {
		const char *body, *want;
	} rows[] = {
	    {"exit 3\n", "exited with status 3"},
	    {"echo sekrit; exit 1\n", "exited with status 1"},
	    {"kill -TERM $$\n", "exited with status 143"},
	    {"exec kill -KILL $PPID\n", "killed by signal 9"},
	    {"printf 'sekrit\\001\\n'\n", "control or non-ASCII"},
	    {"printf 'sekrit\\303\\251\\n'\n", "control or non-ASCII"},
	    {"head -c 40000 /dev/zero | tr '\\0' a\n", "more than 16384 bytes"},
	    /* The cap is the documented one, not the buffer's next size. */
	    {"head -c 16385 /dev/zero | tr '\\0' a\n", "more than 16384 bytes"},
	    /* A NUL would cut the token short without a word. */
	    {"printf 'tok\\000sekrit\\n'\n", "control or non-ASCII"},
	};
	const char *v;
	char err[256];

	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		char name[32];
		snprintf(name, sizeof name, "fail%zu.sh", i);
		/* exec: the script's own shell gets the signal, not a child */
		tsu_auth *a = helper(script(name, rows[i].body), 0);
		err[0] = '\0';
		v = "x";
		ASSERT_EQ(tsu_auth_get(a, "ws", &v, err, sizeof err), -1);
		ASSERT_CONTAINS(err, rows[i].want);
		ASSERT_NOT_CONTAINS(err, "sekrit");
		/* Remembered: not run again for the same workspace. */
		ASSERT_EQ(tsu_auth_get(a, "ws", &v, err, sizeof err), -1);
		tsu_auth_free(a);
	}
	/* Not a command at all. */
	tsu_auth *a = helper("/nonexistent/helper", 0);
	ASSERT_EQ(tsu_auth_get(a, "ws", &v, err, sizeof err), -1);
	ASSERT_CONTAINS(err, "exited with status 127");
	tsu_auth_free(a);
}

static void t_timeout(void)
{
	char body[1400];
	const char *v;
	char err[256];
	int64_t t0;

	/* A helper that hangs, with a child that would outlive it. */
	snprintf(body, sizeof body,
		 "(sleep 30; touch '%s/survivor') &\nsleep 30\n", g_dir);
	tsu_auth *a = helper(script("hang.sh", body), 300);
	t0 = mono_ms();
	ASSERT_EQ(tsu_auth_get(a, "ws", &v, err, sizeof err), -1);
	ASSERT_TRUE(mono_ms() - t0 < 5000);
	ASSERT_CONTAINS(err, "timed out after 300 ms");
	tsu_auth_free(a);

	/* The helper exits, a child it left behind keeps its stdout open:
	 * what the helper printed counts, without waiting for the child. */
	a = helper(script("bg.sh", "echo tok\nsleep 5 &\n"), 2000);
	ASSERT_EQ(tsu_auth_get(a, "ws", &v, err, sizeof err), 0);
	ASSERT_STREQ(v, "Bearer tok");
	tsu_auth_free(a);

	/* Output closed early but the helper lingers: still bounded. */
	a = helper(script("linger.sh", "echo tok; exec >&-; sleep 30\n"), 300);
	t0 = mono_ms();
	ASSERT_EQ(tsu_auth_get(a, "ws", &v, err, sizeof err), -1);
	ASSERT_TRUE(mono_ms() - t0 < 5000);
	ASSERT_CONTAINS(err, "timed out");
	tsu_auth_free(a);
}

int main(int argc, char **argv)
{
	static const struct tu_test tests[] = {
	    {"new_errors", t_new_errors},
	    {"token_and_cache", t_token_and_cache},
	    {"no_inherited_fds", t_no_inherited_fds},
	    {"failures", t_failures},
	    {"timeout", t_timeout},
	};
	make_temp_dir(g_dir, sizeof g_dir, "tsu-auth");
	return tu_main(tests, sizeof tests / sizeof tests[0], argc, argv,
		       g_dir);
}
