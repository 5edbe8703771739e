/*
 * uuid.h - random UUID v4 from the operating system's random source.
 */
#ifndef TELESPOOL_UUID_H
#define TELESPOOL_UUID_H

#include <stddef.h>
#include <stdint.h>

/* Fills buf with n random bytes (getrandom, else /dev/urandom).  0 or -1. */
int telespool__random(void *buf, size_t n);

/* Writes a lower-case UUID v4 and a NUL into out[37].  0 or -1. */
int telespool__uuid4(char out[37]);

#endif
