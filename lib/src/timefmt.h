/*
 * timefmt.h - the one time format of the spool: ISO 8601 UTC with
 * milliseconds, "YYYY-MM-DDTHH:MM:SS.sssZ", which sorts in time order;
 * and the library's clocks.
 */
#ifndef TELESPOOL_TIMEFMT_H
#define TELESPOOL_TIMEFMT_H

#include <stdint.h>

#define TELESPOOL_ISO_LEN 25 /* with the NUL */

/* Wall clock, unix ms. */
int64_t telespool__now_ms(void);

/* Monotonic clock, ms: for waits and bounds, never stored. */
int64_t telespool__monotonic_ms(void);

/* Sleeps us microseconds, through signals. */
void telespool__sleep_us(long us);

/* Formats unix ms into out (at least TELESPOOL_ISO_LEN bytes); years are
 * clamped to 0000..9999 so the text always has the same width. */
void telespool__iso(int64_t ms, char *out);

/* Wall clock, unix microseconds. */
int64_t telespool__now_us(void);

#define TELESPOOL_PYISO_LEN 33 /* with the NUL */

/* Formats unix microseconds as Python's datetime.isoformat() does for a
 * UTC time: "YYYY-MM-DDTHH:MM:SS.ffffff", the fraction left out when the
 * microsecond is 0, and "+00:00" after it when with_offset (an aware
 * datetime).  out holds at least TELESPOOL_PYISO_LEN bytes. */
void telespool__iso_python(int64_t us, int with_offset, char *out);

/* Parses text made by telespool__iso(); -1 if it is not such text. */
int64_t telespool__iso_parse(const char *s);

#endif
