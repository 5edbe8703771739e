/*
 * clock.h - the uploader's clocks and randomness: the wall clock (what the
 * spool stores), the monotonic clock (deadlines and waits), a random
 * 64-bit number (jitter, --splay) and the time as text for messages and
 * --status.  The uploader's own, so it needs none of the library's
 * internals for them.
 */
#ifndef TSU_CLOCK_H
#define TSU_CLOCK_H

#include <stdint.h>

#define TSU_ISO_LEN 25 /* "YYYY-MM-DDTHH:MM:SS.sssZ" and the NUL */

/* Wall clock (CLOCK_REALTIME), unix ms; 0 if it cannot be read. */
int64_t tsu_now_ms(void);

/* CLOCK_MONOTONIC in ms (deadlines, waits); 0 if it cannot be read. */
int64_t tsu_monotonic_ms(void);

/* CLOCK_MONOTONIC in microseconds (request durations). */
int64_t tsu_monotonic_us(void);

/* 64 random bits from getrandom(2); if the kernel cannot give them (an
 * old kernel, a seccomp filter), bits mixed from the clocks and the
 * process id, good enough for jitter, never for a secret. */
uint64_t tsu_random64(void);

/* Unix ms as ISO 8601 UTC with milliseconds, "2026-12-03T12:15:56.000Z",
 * the spool's format, into out (TSU_ISO_LEN bytes at least).  Times
 * outside years 0000..9999 are clamped, so the text has one width. */
void tsu_iso(int64_t ms, char out[TSU_ISO_LEN]);

#endif
