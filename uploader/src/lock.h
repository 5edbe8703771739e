/*
 * lock.h - one uploader per spool: an advisory lock on a file beside the
 * database (PATH.upload-lock), released by the kernel if the holder dies.
 */
#ifndef TSU_LOCK_H
#define TSU_LOCK_H

#include <stddef.h>

/* Returns an fd holding the lock (>= 0); -1 when another process holds it;
 * -2 on any other failure, with a message in err (a symbolic link at the
 * path is never followed: it is refused like a directory). */
int tsu_lock_acquire(const char *db_path, char *err, size_t errlen);

/* Whether something other than a regular file (a symbolic link, a
 * directory) sits at the lock path, which would make every run fail: 1
 * with a message naming it in err, else 0.  For --status. */
int tsu_lock_problem(const char *db_path, char *err, size_t errlen);

/* Releases the lock (closing the fd).  -1 is a no-op. */
void tsu_lock_release(int fd);

#endif
