/*
 * lock.h - one uploader per spool: an advisory lock on a file beside the
 * database (PATH.upload-lock), released by the kernel if the holder dies.
 */
#ifndef TSU_LOCK_H
#define TSU_LOCK_H

#include <stddef.h>

/* Returns an fd holding the lock (>= 0); -1 when another process holds it;
 * -2 on any other failure, with a message in err. */
int tsu_lock_acquire(const char *db_path, char *err, size_t errlen);

/* Releases the lock (closing the fd).  -1 is a no-op. */
void tsu_lock_release(int fd);

#endif
