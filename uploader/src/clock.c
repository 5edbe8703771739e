/*
 * clock.c - the uploader's clocks, randomness and time text (clock.h).
 */
#include "clock.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z in unix ms. */
#define ISO_MIN_MS (-62167219200000LL)
#define ISO_MAX_MS (253402300799999LL)

static int64_t clock_us(clockid_t id)
{
	struct timespec ts;

	if (clock_gettime(id, &ts) != 0)
		return 0;
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t tsu_now_ms(void)
{
	return clock_us(CLOCK_REALTIME) / 1000;
}

int64_t tsu_monotonic_ms(void)
{
	return clock_us(CLOCK_MONOTONIC) / 1000;
}

int64_t tsu_monotonic_us(void)
{
	return clock_us(CLOCK_MONOTONIC);
}

/* splitmix64's finaliser: spreads nearby inputs over all 64 bits. */
static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

uint64_t tsu_random64(void)
{
	static uint64_t counter;
	unsigned char b[8];
	size_t got = 0;

	while (got < sizeof b) {
		ssize_t n = getrandom(b + got, sizeof b - got, GRND_NONBLOCK);
		if (n > 0)
			got += (size_t)n;
		else if (n < 0 && errno == EINTR)
			continue;
		else
			break;
	}
	if (got == sizeof b) {
		uint64_t r = 0;
		for (size_t i = 0; i < sizeof b; i++)
			r = r << 8 | b[i];
		return r;
	}
	counter += 0x9e3779b97f4a7c15ULL;
	return mix64((uint64_t)clock_us(CLOCK_REALTIME) ^
		     mix64((uint64_t)clock_us(CLOCK_MONOTONIC)) ^
		     mix64((uint64_t)getpid()) ^ counter);
}

void tsu_iso(int64_t ms, char out[TSU_ISO_LEN])
{
	struct tm tm;
	char buf[64];

	if (ms < ISO_MIN_MS)
		ms = ISO_MIN_MS;
	if (ms > ISO_MAX_MS)
		ms = ISO_MAX_MS;
	/* Floor division: a time before 1970 still has 0..999 ms. */
	int64_t s = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
	time_t t = (time_t)s;
	if (gmtime_r(&t, &tm) == NULL)
		memset(&tm, 0, sizeof tm);
	/* Not strftime's %Y: it does not pad years before 1000. */
	snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, (int)(ms - s * 1000));
	memcpy(out, buf, TSU_ISO_LEN - 1);
	out[TSU_ISO_LEN - 1] = '\0';
}
