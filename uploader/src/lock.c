/*
 * lock.c - the uploader lock.  flock() rather than a PID file: there is no
 * stale lock to clean up after a crash or kill -9.
 */
#include "lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int tsu_lock_acquire(const char *db_path, char *err, size_t errlen)
{
	char path[4200];

	if (snprintf(path, sizeof(path), "%s.upload-lock", db_path) >=
	    (int)sizeof(path)) {
		snprintf(err, errlen, "spool path is too long");
		return -2;
	}
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open lock file %s: %s", path,
			 strerror(errno));
		return -2;
	}
	while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		if (e == EINTR)
			continue;
		close(fd);
		if (e == EWOULDBLOCK) {
			snprintf(
			    err, errlen,
			    "another telespool-upload is running (lock %s)",
			    path);
			return -1;
		}
		snprintf(err, errlen, "cannot lock %s: %s", path, strerror(e));
		return -2;
	}
	return fd;
}

void tsu_lock_release(int fd)
{
	if (fd >= 0)
		close(fd);
}
