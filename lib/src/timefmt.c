/*
 * timefmt.c - ISO 8601 UTC text with milliseconds, without locale or TZ;
 * the wall and monotonic clocks.
 */
#include "timefmt.h"

#include <errno.h>
#include <string.h>
#include <time.h>

int64_t telespool__now_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		return 0;
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t telespool__monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void telespool__sleep_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Days since 1970-01-01 -> civil date (Howard Hinnant's algorithm). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;

	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + (int64_t)doe - 719468;
}

/* Writes v as exactly n decimal digits. */
static void put(char *p, int n, unsigned v)
{
	for (int i = n - 1; i >= 0; i--) {
		p[i] = (char)('0' + v % 10);
		v /= 10;
	}
}

#define MS_MIN (-62167219200000LL) /* 0000-01-01T00:00:00.000Z */
#define MS_MAX (253402300799999LL) /* 9999-12-31T23:59:59.999Z */

void telespool__iso(int64_t ms, char *out)
{
	if (ms < MS_MIN)
		ms = MS_MIN;
	if (ms > MS_MAX)
		ms = MS_MAX;

	int64_t days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
	int64_t rem = ms - days * 86400000;
	int64_t y;
	unsigned mo, d;

	civil_from_days(days, &y, &mo, &d);
	/* By hand: this runs on every record, and snprintf is slow. */
	put(out, 4, (unsigned)y);
	out[4] = '-';
	put(out + 5, 2, mo);
	out[7] = '-';
	put(out + 8, 2, d);
	out[10] = 'T';
	put(out + 11, 2, (unsigned)(rem / 3600000));
	out[13] = ':';
	put(out + 14, 2, (unsigned)(rem / 60000 % 60));
	out[16] = ':';
	put(out + 17, 2, (unsigned)(rem / 1000 % 60));
	out[19] = '.';
	put(out + 20, 3, (unsigned)(rem % 1000));
	out[23] = 'Z';
	out[24] = '\0';
}

int64_t telespool__now_us(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		return 0;
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void telespool__iso_python(int64_t us, int with_offset, char *out)
{
	int64_t ms = us >= 0 ? us / 1000 : -((-us + 999) / 1000);
	unsigned micro = (unsigned)(us - ms * 1000);

	telespool__iso(ms, out); /* YYYY-MM-DDTHH:MM:SS.sssZ */
	micro += (unsigned)(out[20] - '0') * 100000 +
		 (unsigned)(out[21] - '0') * 10000 +
		 (unsigned)(out[22] - '0') * 1000;
	size_t n = 19;
	if (micro != 0) {
		out[19] = '.';
		put(out + 20, 6, micro);
		n = 26;
	}
	if (with_offset) {
		memcpy(out + n, "+00:00", 6);
		n += 6;
	}
	out[n] = '\0';
}

static int digits(const char *s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

int64_t telespool__iso_parse(const char *s)
{
	int y, mo, d, h, mi, se, ms;

	if (s == NULL || strlen(s) != TELESPOOL_ISO_LEN - 1)
		return -1;
	if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
	    s[16] != ':' || s[19] != '.' || s[23] != 'Z')
		return -1;
	if (digits(s, 4, &y) || digits(s + 5, 2, &mo) || digits(s + 8, 2, &d) ||
	    digits(s + 11, 2, &h) || digits(s + 14, 2, &mi) ||
	    digits(s + 17, 2, &se) || digits(s + 20, 3, &ms))
		return -1;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
	    se > 60)
		return -1;
	return days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400000 +
	       (int64_t)h * 3600000 + (int64_t)mi * 60000 + (int64_t)se * 1000 +
	       ms;
}
