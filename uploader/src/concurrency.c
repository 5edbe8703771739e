/*
 * concurrency.c - the adaptive limit of requests in flight (concurrency.h
 * describes the rules; this file only applies them).
 */
#include "concurrency.h"

#include <limits.h>

#define US_PER_S          1000000LL
#define MIN_WINDOW_US     (10 * US_PER_S) /* latency floor: 2 windows */
#define LATENCY_TOLERANCE 1000            /* us above twice the floor */
#define LATENCY_CUT       0.8
#define FAILURE_CUT       0.5
#define THROTTLE_CUT_MAX  0.9   /* a 429 cuts at least this much ... */
#define THROTTLE_CUT_MIN  0.5   /* ... and at most this much */
#define THROTTLE_HEADROOM 0.9   /* of rate x round trip */
#define BATCH_PER_SLOT    4     /* rows claimed per request in flight ... */
#define LONG_RTT_US       10000 /* ... when round trips take this long */
#define SRTT_DIV          8     /* srtt += (rtt - srtt) / 8, as TCP */

static double clampd(double v, double lo, double hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

void tsu_cc_init(tsu_cc *cc, int pinned, int ceiling)
{
	if (ceiling <= 0 || ceiling > TSU_CC_CEILING)
		ceiling = TSU_CC_CEILING;
	*cc = (tsu_cc){0};
	cc->ceiling = ceiling;
	cc->pinned = pinned > 0;
	cc->limit = pinned > 0 ? clampd(pinned, 1, ceiling)
			       : clampd(TSU_CC_INITIAL, 1, ceiling);
	cc->ssthresh = ceiling;
	cc->peak = (int)cc->limit;
	cc->cut_us = INT64_MIN;
	cc->hold_us = INT64_MIN;
	cc->min_cur_us = INT64_MAX;
	cc->min_prev_us = INT64_MAX;
	cc->min_window_us = INT64_MIN;
	cc->rate_start_us = INT64_MIN;
	cc->latency_check_us = INT64_MIN;
}

int tsu_cc_batch(const tsu_cc *cc, int batch)
{
	int per_slot = BATCH_PER_SLOT * tsu_cc_limit(cc);

	if (cc->pinned || cc->srtt_us < LONG_RTT_US || per_slot <= batch)
		return batch;
	return per_slot;
}

void tsu_cc_cap(tsu_cc *cc, int ceiling)
{
	if (cc->pinned || ceiling < 1 || ceiling >= cc->ceiling)
		return;
	cc->ceiling = ceiling;
	if (cc->limit > ceiling)
		cc->limit = ceiling;
	if (cc->ssthresh > ceiling)
		cc->ssthresh = ceiling;
}

void tsu_cc_resume(tsu_cc *cc, int last_level)
{
	if (cc->pinned || last_level <= 0)
		return;
	cc->ssthresh = clampd(last_level, cc->limit, cc->ceiling);
}

int tsu_cc_limit(const tsu_cc *cc)
{
	int n = (int)cc->limit;
	return n < 1 ? 1 : n > cc->ceiling ? cc->ceiling : n;
}

tsu_cc_signal tsu_cc_signal_of(tsu_transport transport, long status)
{
	switch (transport) {
	case TSU_NET_OK:
		if (status == 429 || status == 503)
			return TSU_CC_THROTTLED;
		if (status == 408 || (status >= 500 && status <= 599))
			return TSU_CC_FAILED;
		if ((status >= 200 && status <= 299) ||
		    (status >= 400 && status <= 499))
			return TSU_CC_GOOD;
		return TSU_CC_NONE; /* 1xx/3xx: a wrong URL, not load */
	case TSU_NET_CONNECT:
	case TSU_NET_TIMEOUT:
		return TSU_CC_FAILED;
	default:
		return TSU_CC_NONE;
	}
}

static void cut(tsu_cc *cc, double to, int64_t now_us)
{
	cc->limit = clampd(to, 1, cc->ceiling);
	cc->ssthresh = cc->limit;
	cc->cut_us = now_us;
	cc->cuts++;
}

/* The floor of the round trip: the lowest of two windows, so that it
 * follows a route that got slower within 20 s. */
static int64_t rtt_floor(tsu_cc *cc, int64_t rtt, int64_t now_us)
{
	if (cc->min_window_us == INT64_MIN ||
	    now_us - cc->min_window_us >= MIN_WINDOW_US) {
		cc->min_prev_us = cc->min_cur_us;
		cc->min_cur_us = INT64_MAX;
		cc->min_window_us = now_us;
	}
	if (rtt < cc->min_cur_us)
		cc->min_cur_us = rtt;
	return cc->min_cur_us < cc->min_prev_us ? cc->min_cur_us
						: cc->min_prev_us;
}

static void count_good(tsu_cc *cc, int64_t now_us)
{
	if (cc->rate_start_us == INT64_MIN)
		cc->rate_start_us = now_us;
	cc->rate_count++;
	if (now_us - cc->rate_start_us >= US_PER_S) {
		cc->rate_per_s = (double)cc->rate_count * US_PER_S /
				 (double)(now_us - cc->rate_start_us);
		cc->rate_start_us = now_us;
		cc->rate_count = 0;
	}
}

void tsu_cc_sample(tsu_cc *cc, tsu_cc_signal s, int64_t started_us,
		   int64_t finished_us, int in_flight)
{
	int64_t rtt = finished_us - started_us;
	/* An answer to a request sent before the last cut was sent under the
	 * old limit: it may not cut again. */
	int fresh = started_us >= cc->cut_us;

	if (cc->pinned || s == TSU_CC_NONE)
		return;
	if (rtt < 0)
		rtt = 0;
	if (s == TSU_CC_THROTTLED) {
		double target = THROTTLE_HEADROOM * cc->rate_per_s *
				(double)cc->srtt_us / US_PER_S;
		cc->hold_us = finished_us + (int64_t)TSU_CC_HOLD_MS * 1000;
		if (fresh)
			cut(cc,
			    clampd(target, cc->limit * THROTTLE_CUT_MIN,
				   cc->limit * THROTTLE_CUT_MAX),
			    finished_us);
		return;
	}
	if (s == TSU_CC_FAILED) {
		if (fresh)
			cut(cc, cc->limit * FAILURE_CUT, finished_us);
		return;
	}

	/* A good answer. */
	cc->srtt_us = cc->srtt_us == 0
			  ? rtt
			  : cc->srtt_us + (rtt - cc->srtt_us) / SRTT_DIV;
	int64_t floor_us = rtt_floor(cc, rtt, finished_us);
	count_good(cc, finished_us);
	if (fresh && finished_us >= cc->latency_check_us) {
		cc->latency_check_us = finished_us + cc->srtt_us;
		if (cc->srtt_us > 2 * floor_us + LATENCY_TOLERANCE) {
			cut(cc, cc->limit * LATENCY_CUT, finished_us);
			return;
		}
	}
	/* Growth needs the limit in use and this answer's latency flat. */
	if (finished_us < cc->hold_us || 2 * in_flight < (int)cc->limit ||
	    rtt > 2 * floor_us + LATENCY_TOLERANCE)
		return;
	if (cc->limit < cc->ssthresh)
		cc->limit += 1; /* slow start: doubles per round trip */
	else
		cc->limit += 1.0 / cc->limit; /* one more per round trip */
	if (cc->limit > cc->ceiling)
		cc->limit = cc->ceiling;
	if (tsu_cc_limit(cc) > cc->peak)
		cc->peak = tsu_cc_limit(cc);
}

int64_t tsu_catchup_cutoff_ms(int64_t oldest_ms, int64_t prev_run_ms,
			      int64_t now_ms)
{
	int64_t gap = now_ms - prev_run_ms;

	if (prev_run_ms <= 0 || gap < 0 || gap > 24LL * 3600 * 1000)
		return INT64_MAX;
	gap *= TSU_CATCHUP_FACTOR;
	if (gap < TSU_CATCHUP_MIN_MS)
		gap = TSU_CATCHUP_MIN_MS;
	return oldest_ms + gap;
}
