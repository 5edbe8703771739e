/*
 * lock.h - one uploader per spool: an advisory lock on a file beside the
 * database (PATH.upload-lock), released by the kernel if the holder dies.
 */
#ifndef TSU_LOCK_H
#define TSU_LOCK_H

#include <stddef.h>

/* What tsu_lock_acquire() returns; err says why for both failures. */
typedef enum tsu_lock_rc {
	TSU_LOCK_OK = 0,     /* *fd holds the lock */
	TSU_LOCK_ERROR = -1, /* it cannot be taken (what to do is in err) */
	TSU_LOCK_BUSY = -2   /* another process holds it: nothing to do */
} tsu_lock_rc;

/* Takes the lock of the spool at db_path: TSU_LOCK_OK with the fd holding
 * it in *fd, else a failure with *fd -1 and a one-line message in err (a
 * symbolic link at the path is never followed: it is refused like a
 * directory). */
tsu_lock_rc tsu_lock_acquire(int *fd, const char *db_path, char *err,
			     size_t errlen);

/* Whether something other than a regular file (a symbolic link, a
 * directory) sits at the lock path, which would make every run fail: 1
 * with a message naming it in err, else 0.  For --status. */
int tsu_lock_problem(const char *db_path, char *err, size_t errlen);

/* Releases the lock (closing the fd).  -1 is a no-op. */
void tsu_lock_release(int fd);

#endif
