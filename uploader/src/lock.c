/*
 * lock.c - the uploader lock.  flock() rather than a PID file: there is no
 * stale lock to clean up after a crash or kill -9.
 *
 * The lock file is opened with O_NOFOLLOW: a symbolic link planted at its
 * path (dangling or not) must not make the uploader create or lock a file
 * elsewhere.  Anything but a regular file there is refused with a message
 * that names the path and the remedy, and --status says so too.
 */
#include "lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* db_path + ".upload-lock", malloc'd (any length), or NULL. */
static char *lock_path(const char *db_path)
{
	static const char suffix[] = ".upload-lock";
	size_t n = strlen(db_path);
	char *p = malloc(n + sizeof suffix);

	if (p) {
		memcpy(p, db_path, n);
		memcpy(p + n, suffix, sizeof suffix);
	}
	return p;
}

/* What is wrong with st as a lock file, or NULL. */
static const char *not_a_lock(const struct stat *st)
{
	if (S_ISLNK(st->st_mode))
		return "is a symbolic link (never followed there)";
	if (S_ISDIR(st->st_mode))
		return "is a directory";
	if (!S_ISREG(st->st_mode))
		return "is not a regular file";
	return NULL;
}

int tsu_lock_problem(const char *db_path, char *err, size_t errlen)
{
	char *path = lock_path(db_path);
	struct stat st;
	const char *why;
	int rc = 0;

	if (!path)
		return 0;
	if (lstat(path, &st) == 0 && (why = not_a_lock(&st)) != NULL) {
		snprintf(err, errlen,
			 "%s %s: every upload run fails until it is removed",
			 path, why);
		rc = 1;
	}
	free(path);
	return rc;
}

/* The lock file, opened and checked: an fd, or -1 with err set. */
static int open_lock(const char *path, char *err, size_t errlen)
{
	struct stat st;
	int fd = open(path,
		      O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW |
			  O_NONBLOCK,
		      0600);

	if (fd < 0) {
		int e = errno;
		const char *why = NULL;
		if (lstat(path, &st) == 0)
			why = not_a_lock(&st);
		if (why)
			snprintf(err, errlen,
				 "cannot take the uploader lock: %s %s; remove "
				 "it (telespool-upload creates a regular file "
				 "there)",
				 path, why);
		else
			snprintf(err, errlen, "cannot open lock file %s: %s",
				 path, strerror(e));
		return -1;
	}
	if (fstat(fd, &st) != 0) {
		snprintf(err, errlen, "cannot read lock file %s: %s", path,
			 strerror(errno));
		close(fd);
		return -1;
	}
	if (not_a_lock(&st)) {
		/* A FIFO or device: O_NONBLOCK kept the open from hanging. */
		snprintf(err, errlen,
			 "cannot take the uploader lock: %s %s; remove it",
			 path, not_a_lock(&st));
		close(fd);
		return -1;
	}
	return fd;
}

tsu_lock_rc tsu_lock_acquire(int *fd, const char *db_path, char *err,
			     size_t errlen)
{
	char *path = lock_path(db_path);
	tsu_lock_rc rc = TSU_LOCK_OK;

	*fd = -1;
	if (!path) {
		snprintf(err, errlen,
			 "cannot take the uploader lock: out of "
			 "memory");
		return TSU_LOCK_ERROR;
	}
	int f = open_lock(path, err, errlen);
	if (f < 0) {
		free(path);
		return TSU_LOCK_ERROR;
	}
	while (flock(f, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		if (e == EINTR)
			continue;
		if (e == EWOULDBLOCK) {
			snprintf(
			    err, errlen,
			    "another telespool-upload is running (lock %s)",
			    path);
			rc = TSU_LOCK_BUSY;
		} else {
			snprintf(err, errlen, "cannot lock %s: %s", path,
				 strerror(e));
			rc = TSU_LOCK_ERROR;
		}
		close(f);
		f = -1;
		break;
	}
	free(path);
	*fd = f;
	return rc;
}

void tsu_lock_release(int fd)
{
	if (fd >= 0)
		close(fd);
}
