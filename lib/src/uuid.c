/*
 * uuid.c - event ids: random UUID v4 from the kernel's random source.
 *
 * Bytes are fetched 512 at a time into a per-thread pool (one getrandom()
 * per 32 ids instead of one per id).  Threads never share a pool, and a
 * forked child throws its copy away (pthread_atfork): the parent's next ids
 * are in it, and a child must never repeat them.
 */
#include "uuid.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define POOL_BYTES 512

int telespool__random(void *buf, size_t n)
{
	unsigned char *p = buf;
	size_t got = 0;

	while (got < n) {
		ssize_t r = getrandom(p + got, n - got, 0);
		if (r > 0) {
			got += (size_t)r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		break;
	}
	if (got == n)
		return 0;

	/* getrandom() missing (old kernel, seccomp): fall back to the device. */
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	while (got < n) {
		ssize_t r = read(fd, p + got, n - got);
		if (r > 0)
			got += (size_t)r;
		else if (!(r < 0 && errno == EINTR))
			break;
	}
	close(fd);
	return got == n ? 0 : -1;
}

/* Bumped in every forked child; a pool filled under an older value is
 * stale. */
static volatile unsigned fork_generation = 1;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void in_child(void)
{
	fork_generation++;
}

static void register_atfork(void)
{
	pthread_atfork(NULL, NULL, in_child);
}

static _Thread_local struct {
	unsigned char bytes[POOL_BYTES];
	size_t used; /* bytes handed out; POOL_BYTES when empty */
	unsigned generation;
} pool = {{0}, POOL_BYTES, 0};

/* 16 random bytes; each byte is handed out once and then wiped. */
static int random16(unsigned char b[16])
{
	pthread_once(&atfork_once, register_atfork);
	if (pool.generation != fork_generation || pool.used > POOL_BYTES - 16) {
		if (telespool__random(pool.bytes, POOL_BYTES) != 0) {
			pool.used = POOL_BYTES;
			return -1;
		}
		pool.used = 0;
		pool.generation = fork_generation;
	}
	memcpy(b, pool.bytes + pool.used, 16);
	memset(pool.bytes + pool.used, 0, 16);
	pool.used += 16;
	return 0;
}

int telespool__uuid4(char out[37])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[16];

	if (random16(b) != 0)
		return -1;
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */

	char *o = out;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*o++ = '-';
		*o++ = hex[b[i] >> 4];
		*o++ = hex[b[i] & 15];
	}
	*o = '\0';
	return 0;
}
