/*
 * uuid.c - event ids: random UUID v4 straight from the kernel, so that
 * forked processes and threads never share state that could repeat an id.
 */
#include "uuid.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

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

int telespool__uuid4(char out[37])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[16];

	if (telespool__random(b, sizeof(b)) != 0)
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
