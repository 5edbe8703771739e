/*
 * auth.c - runs the --auth-command credential helper and keeps what it
 * printed, per workspace, in memory for one run.
 *
 * The helper is spawned in a process group of its own, so that a timeout
 * kills whatever it started too; its stdout is read through a pipe, capped
 * and bounded in time; its stderr is the operator's and passes through.
 * Signals the uploader ignores (SIGPIPE) are reset to their defaults in
 * the helper, and it inherits no descriptor but stdin, stdout and stderr.
 */
#include "auth.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"

extern char **environ;

struct entry {
	struct entry *next;
	char *workspace;
	char *value; /* "Bearer ...", or NULL for none */
	char *error; /* the helper failed: why, or NULL */
};

struct tsu_auth {
	const char *command;
	long timeout_ms;
	struct entry *entries;
};

static void wipe(char *s, size_t n)
{
	volatile char *p = s;
	while (n--)
		*p++ = '\0';
}

static void wipe_str(char *s)
{
	if (s)
		wipe(s, strlen(s));
	free(s);
}

int tsu_auth_new(tsu_auth **out, const char *command, long timeout_ms,
		 char *err, size_t errlen)
{
	*out = NULL;
	if (!command || !command[0]) {
		snprintf(err, errlen, "--auth-command names no command");
		return -1;
	}
	tsu_auth *a = calloc(1, sizeof(*a));
	if (!a) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	a->command = command;
	a->timeout_ms = timeout_ms > 0 ? timeout_ms : TSU_AUTH_TIMEOUT_MS;
	*out = a;
	return 0;
}

void tsu_auth_free(tsu_auth *a)
{
	if (!a)
		return;
	while (a->entries) {
		struct entry *e = a->entries;
		a->entries = e->next;
		free(e->workspace);
		wipe_str(e->value);
		free(e->error);
		free(e);
	}
	free(a);
}

/* Waits for pid until deadline; then kills its group.  Returns the
 * status, or -1 when it had to be killed. */
static int reap(pid_t pid, int64_t deadline)
{
	int status;

	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			return status;
		if (w < 0 && errno != EINTR)
			return -1;
		if (tsu_monotonic_ms() >= deadline) {
			kill(-pid, SIGKILL);
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			return -1;
		}
		struct timespec ts = {0, 5 * 1000000L};
		nanosleep(&ts, NULL);
	}
}

/*
 * Marks every descriptor above stderr close-on-exec, so that the helper
 * inherits none of the uploader's: libcurl opens its sockets without
 * O_CLOEXEC.  The uploader execs nothing else, so this changes nothing
 * for it.
 */
static void cloexec_all(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	if (!d) {
		for (int fd = 3; fd < 1024; fd++) {
			int fl = fcntl(fd, F_GETFD);
			if (fl >= 0)
				fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
		}
		return;
	}
	while ((e = readdir(d)) != NULL) {
		char *end;
		long fd = strtol(e->d_name, &end, 10);
		if (*end != '\0' || end == e->d_name || fd < 3 ||
		    fd == dirfd(d))
			continue;
		int fl = fcntl((int)fd, F_GETFD);
		if (fl >= 0)
			fcntl((int)fd, F_SETFD, fl | FD_CLOEXEC);
	}
	closedir(d);
}

/*
 * Starts "/bin/sh -c 'COMMAND "$@"' telespool-auth WORKSPACE" in a process
 * group of its own, stdin from /dev/null, stdout into a pipe.  Returns 0
 * with *pid and the pipe's read end in *rfd, or -1 with err.  Every spawn
 * setting is checked: a child left with the uploader's own stdout would
 * print the token into the run's log.
 */
static int spawn_helper(const char *command, const char *workspace, pid_t *pid,
			int *rfd, char *err, size_t errlen)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, defaults;
	int fds[2], rc;
	static const int sigs[] = {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGXFSZ};

	/* The workspace is an argument, never part of the shell text. */
	char *script = malloc(strlen(command) + sizeof " \"$@\"");
	char *ws = strdup(workspace);
	if (!script || !ws || pipe(fds) != 0) {
		snprintf(err, errlen, "cannot run it: %s",
			 script && ws ? strerror(errno) : "out of memory");
		free(script);
		free(ws);
		return -1;
	}
	strcpy(script, command);
	strcat(script, " \"$@\"");
	char sh[] = "/bin/sh", dash_c[] = "-c", name[] = "telespool-auth";
	char *argv[] = {sh, dash_c, script, name, ws, NULL};

	sigemptyset(&none);
	sigemptyset(&defaults);
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		sigaddset(&defaults, sigs[i]);
	cloexec_all();
	rc = fcntl(fds[0], F_SETFD, FD_CLOEXEC) == -1 ||
		     fcntl(fds[1], F_SETFD, FD_CLOEXEC) == -1
		 ? errno
		 : posix_spawn_file_actions_init(&fa);
	if (rc == 0 && (rc = posix_spawnattr_init(&at)) != 0)
		posix_spawn_file_actions_destroy(&fa);
	if (rc == 0) {
		if ((rc = posix_spawn_file_actions_adddup2(
			 &fa, fds[1], STDOUT_FILENO)) == 0 &&
		    (rc = posix_spawn_file_actions_addopen(
			 &fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0)) == 0 &&
		    (rc = posix_spawnattr_setsigmask(&at, &none)) == 0 &&
		    (rc = posix_spawnattr_setsigdefault(&at, &defaults)) == 0 &&
		    (rc = posix_spawnattr_setpgroup(&at, 0)) == 0 &&
		    (rc = posix_spawnattr_setflags(
			 &at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
				  POSIX_SPAWN_SETSIGDEF)) == 0)
			rc = posix_spawn(pid, "/bin/sh", &fa, &at, argv,
					 environ);
		posix_spawn_file_actions_destroy(&fa);
		posix_spawnattr_destroy(&at);
	}
	close(fds[1]);
	free(script);
	free(ws);
	if (rc != 0) {
		close(fds[0]);
		snprintf(err, errlen, "cannot run /bin/sh: %s", strerror(rc));
		return -1;
	}
	*rfd = fds[0];
	return 0;
}

/* How reading the helper's output ended. */
enum ending { END_EOF, END_TIMEOUT, END_TOO_LONG, END_NOMEM };

/*
 * Reads the helper's stdout from rfd into *buf (capacity *cap, grown as
 * needed; what it replaces is wiped) until EOF, the deadline, more than
 * TSU_AUTH_MAX_OUTPUT bytes, or the helper's exit with nothing left to
 * read (*exited set, *status its wait status).
 */
static enum ending read_output(int rfd, pid_t pid, int64_t deadline, char **buf,
			       size_t *len, size_t *cap, int *status,
			       int *exited)
{
	for (;;) {
		int64_t left = deadline - tsu_monotonic_ms();
		struct pollfd p = {rfd, POLLIN, 0};
		if (left <= 0)
			return END_TIMEOUT;
		int n =
		    poll(&p, 1, *exited ? 0 : (int)(left > 100 ? 100 : left));
		if (n < 0 && errno != EINTR)
			return END_EOF;
		if (n == 0 && *exited)
			return END_EOF; /* all it wrote before exiting */
		if (n == 0) {
			/* A child the helper left running may hold the pipe
			 * open long after the helper exited: its exit, not
			 * the end of the output, ends the wait. */
			if (waitpid(pid, status, WNOHANG) == pid)
				*exited = 1;
			continue;
		}
		if (n < 0)
			continue;
		if (*len + 1 >= *cap) {
			/* *len <= TSU_AUTH_MAX_OUTPUT here, so *cap stays
			 * below twice that. */
			char *nb = malloc(*cap * 2);
			if (!nb)
				return END_NOMEM;
			memcpy(nb, *buf, *len);
			wipe(*buf, *len);
			free(*buf);
			*buf = nb;
			*cap *= 2;
		}
		ssize_t r = read(rfd, *buf + *len, *cap - *len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return END_EOF;
		*len += (size_t)r;
		if (*len > TSU_AUTH_MAX_OUTPUT)
			return END_TOO_LONG;
	}
}

/*
 * Runs the helper for workspace; on success *out is its output (malloc'd,
 * NUL-terminated, the caller wipes it).  Returns 0 or -1 with err.
 */
static int run_helper(tsu_auth *a, const char *workspace, char **out,
		      size_t *outlen, char *err, size_t errlen)
{
	int rfd, status = 0, exited = 0;
	pid_t pid;
	size_t len = 0, cap = 1024;
	char *buf = malloc(cap);
	int64_t deadline = tsu_monotonic_ms() + a->timeout_ms;
	enum ending end;

	*out = NULL;
	*outlen = 0;
	if (!buf) {
		snprintf(err, errlen, "cannot run it: out of memory");
		return -1;
	}
	if (spawn_helper(a->command, workspace, &pid, &rfd, err, errlen) != 0) {
		free(buf);
		return -1;
	}
	end =
	    read_output(rfd, pid, deadline, &buf, &len, &cap, &status, &exited);
	close(rfd);
	if (end != END_EOF && !exited)
		kill(-pid, SIGKILL); /* once reaped, its pid is not ours */
	if (!exited)
		status =
		    reap(pid, end != END_EOF ? tsu_monotonic_ms() : deadline);
	buf[len] = '\0';
	if (end == END_TIMEOUT || (status == -1 && end == END_EOF)) {
		snprintf(err, errlen, "timed out after %ld ms", a->timeout_ms);
	} else if (end == END_TOO_LONG) {
		snprintf(err, errlen, "printed more than %d bytes",
			 TSU_AUTH_MAX_OUTPUT);
	} else if (end == END_NOMEM) {
		snprintf(err, errlen, "out of memory");
	} else if (WIFSIGNALED(status)) {
		snprintf(err, errlen, "killed by signal %d", WTERMSIG(status));
	} else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
		snprintf(err, errlen, "exited with status %d",
			 WEXITSTATUS(status));
	} else {
		*out = buf;
		*outlen = len;
		return 0;
	}
	wipe(buf, len);
	free(buf);
	return -1;
}

/* "Bearer <token>" from the helper's first line, or NULL for an empty
 * one.  Returns 0, or -1 with err for a token no header can carry. */
static int to_value(const char *out, size_t len, char **value, char *err,
		    size_t errlen)
{
	/* By length: a NUL in the line is a control character, never the
	 * end of the token. */
	const char *nl = memchr(out, '\n', len);
	size_t n = nl ? (size_t)(nl - out) : len, a, b;
	char *v;

	*value = NULL;
	tsu_py_strip(out, n, &a, &b);
	if (b - a >= 7 && strncasecmp(out + a, "Bearer ", 7) == 0) {
		size_t a2, b2;
		tsu_py_strip(out + a + 7, b - a - 7, &a2, &b2);
		b = a + 7 + b2;
		a = a + 7 + a2;
	}
	if (b == a || (b - a == 6 && strncasecmp(out + a, "Bearer", 6) == 0))
		return 0; /* nothing, or "Bearer" and nothing after it */
	for (size_t i = a; i < b; i++) {
		unsigned char c = (unsigned char)out[i];
		if (c < 0x20 || c >= 0x7f) {
			snprintf(err, errlen,
				 "printed a token with a control or non-ASCII "
				 "character");
			return -1;
		}
	}
	v = malloc(b - a + sizeof "Bearer ");
	if (!v) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	memcpy(v, "Bearer ", 7);
	memcpy(v + 7, out + a, b - a);
	v[7 + b - a] = '\0';
	*value = v;
	return 0;
}

int tsu_auth_get(tsu_auth *a, const char *workspace, const char **value,
		 char *err, size_t errlen)
{
	struct entry *e;
	char *out = NULL, why[160];
	size_t len = 0;

	*value = NULL;
	for (e = a->entries; e; e = e->next)
		if (strcmp(e->workspace, workspace) == 0)
			break;
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e || !(e->workspace = strdup(workspace))) {
			free(e);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		why[0] = '\0';
		if (run_helper(a, workspace, &out, &len, why, sizeof(why)) ==
		    0) {
			to_value(out, len, &e->value, why, sizeof(why));
			wipe(out, len);
			free(out);
		}
		if (why[0] && !(e->error = strdup(why)))
			e->error = NULL;
		if (why[0] && !e->error) {
			free(e->workspace);
			free(e);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		e->next = a->entries;
		a->entries = e;
	}
	if (e->error) {
		snprintf(err, errlen, "%s", e->error);
		return -1;
	}
	*value = e->value;
	return 0;
}
