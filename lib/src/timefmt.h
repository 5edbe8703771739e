/*
 * timefmt.h - the one time format of the spool: ISO 8601 UTC with
 * milliseconds, "YYYY-MM-DDTHH:MM:SS.sssZ", which sorts in time order.
 */
#ifndef TELESPOOL_TIMEFMT_H
#define TELESPOOL_TIMEFMT_H

#include <stdint.h>

#define TELESPOOL_ISO_LEN 25 /* with the NUL */

/* Wall clock, unix ms. */
int64_t telespool__now_ms(void);

/* Formats unix ms into out (at least TELESPOOL_ISO_LEN bytes); years are
 * clamped to 0000..9999 so the text always has the same width. */
void telespool__iso(int64_t ms, char *out);

/* Parses text made by telespool__iso(); -1 if it is not such text. */
int64_t telespool__iso_parse(const char *s);

#endif
