/*
 * test_inflight.c - the adaptive limit of requests in flight
 * (uploader/src/concurrency.c): how it grows, what cuts it and by how much,
 * and what it ignores.  Time is simulated: every sample names its times.
 */
#include "concurrency.h"
#include "testutil.h"

#include <stdint.h>

#define MS 1000LL /* us */

/* Runs `rounds` round trips of `rtt_us` with every slot busy (the
 * transport starts the next request as soon as one finishes) and every
 * answer good; returns the time after them. */
static int64_t good_rounds(tsu_cc *cc, int64_t t, int rounds, int64_t rtt_us)
{
	for (int k = 0; k < rounds; k++) {
		int n = tsu_cc_limit(cc);
		for (int i = 0; i < n; i++)
			tsu_cc_sample(cc, TSU_CC_GOOD, t, t + rtt_us, n);
		t += rtt_us;
	}
	return t;
}

static void test_defaults_and_pinned(void)
{
	tsu_cc cc;
	tsu_cc_init(&cc, 0, 0);
	ASSERT_EQ(tsu_cc_limit(&cc), TSU_CC_INITIAL);
	ASSERT_EQ(cc.ceiling, TSU_CC_CEILING);
	ASSERT_EQ(cc.pinned, 0);

	tsu_cc_init(&cc, 0, 1000); /* above the ceiling: lowered to it */
	ASSERT_EQ(cc.ceiling, TSU_CC_CEILING);

	tsu_cc_init(&cc, 16, 0); /* --parallel 16: never moves */
	ASSERT_EQ(tsu_cc_limit(&cc), 16);
	good_rounds(&cc, 0, 20, 100 * MS);
	ASSERT_EQ(tsu_cc_limit(&cc), 16);
	tsu_cc_sample(&cc, TSU_CC_THROTTLED, 0, 1, 16);
	tsu_cc_sample(&cc, TSU_CC_FAILED, 0, 1, 16);
	ASSERT_EQ(tsu_cc_limit(&cc), 16);
	ASSERT_EQ(cc.cuts, 0);

	tsu_cc_init(&cc, 500, 0);
	ASSERT_EQ(tsu_cc_limit(&cc), TSU_CC_CEILING);
	tsu_cc_init(&cc, 0, 2); /* a ceiling below the start */
	ASSERT_EQ(tsu_cc_limit(&cc), 2);
}

static void test_signals(void)
{
	ASSERT_EQ(tsu_cc_signal_of(TSU_NET_OK, 200), TSU_CC_GOOD);
	ASSERT_EQ(tsu_cc_signal_of(TSU_NET_OK, 204), TSU_CC_GOOD);
	ASSERT_EQ(tsu_cc_signal_of(TSU_NET_OK, 400), TSU_CC_GOOD);
	ASSERT_EQ(tsu_cc_signal_of(TSU_NET_OK, 422), TSU_CC_GOOD);
	ASSERT_EQ(tsu_cc_signal_of(TSU_NET_OK, 429), TSU_CC_THROTTLED);
	ASSERT_EQ(tsu_cc_signal_of(TSU_NET_OK, 503), TSU_CC_THROTTLED);
	ASSERT_EQ(tsu_cc_signal_of(TSU_NET_OK, 408), TSU_CC_FAILED);
	ASSERT_EQ(tsu_cc_signal_of(TSU_NET_OK, 500), TSU_CC_FAILED);
	ASSERT_EQ(tsu_cc_signal_of(TSU_NET_OK, 502), TSU_CC_FAILED);
	ASSERT_EQ(tsu_cc_signal_of(TSU_NET_OK, 302), TSU_CC_NONE);
	ASSERT_EQ(tsu_cc_signal_of(TSU_NET_OK, 101), TSU_CC_NONE);
	ASSERT_EQ(tsu_cc_signal_of(TSU_NET_TIMEOUT, 0), TSU_CC_FAILED);
	ASSERT_EQ(tsu_cc_signal_of(TSU_NET_CONNECT, 0), TSU_CC_FAILED);
	ASSERT_EQ(tsu_cc_signal_of(TSU_NET_DNS, 0), TSU_CC_NONE);
	ASSERT_EQ(tsu_cc_signal_of(TSU_NET_TLS, 0), TSU_CC_NONE);
	ASSERT_EQ(tsu_cc_signal_of(TSU_NET_PROTOCOL, 0), TSU_CC_NONE);
	ASSERT_EQ(tsu_cc_signal_of(TSU_NET_ABORTED, 0), TSU_CC_NONE);
}

/* Slow start doubles per round trip up to the ceiling, at 100 ms or on
 * loopback; it then stays there. */
static void test_slow_start_reaches_the_ceiling(void)
{
	tsu_cc cc;
	tsu_cc_init(&cc, 0, 0);
	int64_t t = good_rounds(&cc, 0, 1, 100 * MS);
	ASSERT_EQ(tsu_cc_limit(&cc), 2 * TSU_CC_INITIAL);
	t = good_rounds(&cc, t, 1, 100 * MS);
	ASSERT_EQ(tsu_cc_limit(&cc), 4 * TSU_CC_INITIAL);
	t = good_rounds(&cc, t, 4, 100 * MS); /* 4 -> 128 in 5 round trips */
	ASSERT_EQ(tsu_cc_limit(&cc), TSU_CC_CEILING);
	good_rounds(&cc, t, 50, 100 * MS);
	ASSERT_EQ(tsu_cc_limit(&cc), TSU_CC_CEILING);
	ASSERT_EQ(cc.peak, TSU_CC_CEILING);
	ASSERT_EQ(cc.cuts, 0);

	tsu_cc_init(&cc, 0, 0);
	good_rounds(&cc, 0, 10, 200); /* 0.2 ms round trips */
	ASSERT_EQ(tsu_cc_limit(&cc), TSU_CC_CEILING);
}

/* A small spool proves nothing: with 1 request in flight the limit stays. */
static void test_no_growth_while_unused(void)
{
	tsu_cc cc;
	tsu_cc_init(&cc, 0, 0);
	for (int i = 0; i < 100; i++)
		tsu_cc_sample(&cc, TSU_CC_GOOD, i * 100 * MS,
			      i * 100 * MS + 100 * MS, 1);
	ASSERT_EQ(tsu_cc_limit(&cc), TSU_CC_INITIAL);
	/* Half in use is enough. */
	tsu_cc_sample(&cc, TSU_CC_GOOD, 0, 100 * MS, TSU_CC_INITIAL / 2);
	ASSERT_EQ(tsu_cc_limit(&cc), TSU_CC_INITIAL + 1);
}

static void test_failure_halves_once_per_round_trip(void)
{
	tsu_cc cc;
	tsu_cc_init(&cc, 0, 0);
	int64_t t = good_rounds(&cc, 0, 3, 100 * MS);
	int before = tsu_cc_limit(&cc);
	ASSERT_EQ(before, 32);
	/* A whole window of timeouts, all sent before the first came back. */
	for (int i = 0; i < before; i++)
		tsu_cc_sample(&cc, TSU_CC_FAILED, t, t + 10000 * MS, before);
	ASSERT_EQ(tsu_cc_limit(&cc), 16);
	ASSERT_EQ(cc.cuts, 1);
	/* A failure of a request sent after the cut cuts again. */
	t += 10000 * MS;
	tsu_cc_sample(&cc, TSU_CC_FAILED, t + 1, t + 2, 16);
	ASSERT_EQ(tsu_cc_limit(&cc), 8);
	/* Never below 1. */
	for (int i = 0; i < 20; i++)
		tsu_cc_sample(&cc, TSU_CC_FAILED, t + 10 + i, t + 11 + i, 1);
	ASSERT_EQ(tsu_cc_limit(&cc), 1);
	/* After a cut: additive, one per round trip, no slow start. */
	t = good_rounds(&cc, t + 100, 10, 100 * MS);
	ASSERT_TRUE(tsu_cc_limit(&cc) >= 9 && tsu_cc_limit(&cc) <= 11);
}

/* 429 against a rate limit: the limit goes to 0.9 x (delivered rate x round
 * trip), i.e. just under the rate Space accepts, and holds there. */
static void test_throttle_cuts_to_the_delivered_rate(void)
{
	tsu_cc cc;
	tsu_cc_init(&cc, 0, 0);
	/* 2 s at 40 in flight, 100 ms: 400/s delivered (held at 40). */
	int64_t t = 0;
	cc.limit = 40;
	cc.ssthresh = 40;
	cc.hold_us = 2000 * MS;
	for (int k = 0; k < 20; k++) {
		for (int i = 0; i < 40; i++)
			tsu_cc_sample(&cc, TSU_CC_GOOD, t, t + 100 * MS, 40);
		t += 100 * MS;
	}
	int grown = tsu_cc_limit(&cc);
	ASSERT_EQ(grown, 40);
	ASSERT_TRUE(cc.rate_per_s > 380 && cc.rate_per_s < 420);
	/* Space's limit is 300/s: say it throttled at this level. */
	cc.rate_per_s = 300;
	tsu_cc_sample(&cc, TSU_CC_THROTTLED, t, t + 10 * MS, grown);
	ASSERT_EQ(tsu_cc_limit(&cc), 27); /* 0.9 x 300/s x 0.1 s */
	ASSERT_EQ(cc.cuts, 1);
	/* The other 429s of the same window do not cut again. */
	for (int i = 0; i < 10; i++)
		tsu_cc_sample(&cc, TSU_CC_THROTTLED, t + 1, t + 20 * MS, 27);
	ASSERT_EQ(tsu_cc_limit(&cc), 27);
	/* No growth during the hold, growth after it. */
	t = good_rounds(&cc, t + 20 * MS, 200, 100 * MS); /* 20 s */
	ASSERT_EQ(tsu_cc_limit(&cc), 27);
	t = good_rounds(&cc, t, 110, 100 * MS); /* 31 s after the 429 */
	ASSERT_TRUE(tsu_cc_limit(&cc) > 27);
	ASSERT_TRUE(tsu_cc_limit(&cc) < 40); /* additive: +1 per round trip */

	/* Without a rate measured yet, a 429 halves; with an enormous one it
	 * still cuts by 10 %. */
	tsu_cc_init(&cc, 0, 0);
	cc.limit = 64;
	tsu_cc_sample(&cc, TSU_CC_THROTTLED, 0, 10, 64);
	ASSERT_EQ(tsu_cc_limit(&cc), 32);
	tsu_cc_init(&cc, 0, 0);
	cc.limit = 100;
	cc.rate_per_s = 1e9;
	cc.srtt_us = 100 * MS;
	tsu_cc_sample(&cc, TSU_CC_THROTTLED, 0, 10, 100);
	ASSERT_EQ(tsu_cc_limit(&cc), 90);
}

/* Latency rising to more than twice its floor (plus 5 ms) cuts by a fifth;
 * flat latency with the usual jitter does not. */
static void test_rising_latency_cuts(void)
{
	tsu_cc cc;
	tsu_cc_init(&cc, 0, 0);
	int64_t t = good_rounds(&cc, 0, 3, 100 * MS);
	int before = tsu_cc_limit(&cc);
	/* Jitter: 100..150 ms. */
	for (int k = 0; k < 10; k++) {
		int n = tsu_cc_limit(&cc);
		for (int i = 0; i < n; i++)
			tsu_cc_sample(&cc, TSU_CC_GOOD, t,
				      t + (100 + (i * 7) % 50) * MS, n);
		t += 150 * MS;
	}
	ASSERT_EQ(cc.cuts, 0);
	ASSERT_TRUE(tsu_cc_limit(&cc) > before);
	/* Now Space queues: 400 ms. */
	int high = tsu_cc_limit(&cc);
	for (int k = 0; k < 3 && cc.cuts == 0; k++) {
		int n = tsu_cc_limit(&cc);
		for (int i = 0; i < n; i++)
			tsu_cc_sample(&cc, TSU_CC_GOOD, t, t + 400 * MS, n);
		t += 400 * MS;
	}
	ASSERT_EQ(cc.cuts, 1);
	ASSERT_TRUE(tsu_cc_limit(&cc) < high);
	ASSERT_TRUE(tsu_cc_limit(&cc) >= (int)(high * 0.8) - 1);
}

static void test_ignored_signals(void)
{
	tsu_cc cc;
	tsu_cc_init(&cc, 0, 0);
	for (int i = 0; i < 50; i++)
		tsu_cc_sample(&cc, TSU_CC_NONE, 0, 100, TSU_CC_INITIAL);
	ASSERT_EQ(tsu_cc_limit(&cc), TSU_CC_INITIAL);
	ASSERT_EQ(cc.cuts, 0);
	/* A finish before the start (a clock oddity) is a zero round trip. */
	tsu_cc_sample(&cc, TSU_CC_GOOD, 100, 50, TSU_CC_INITIAL);
	ASSERT_EQ(cc.srtt_us, 0);
	ASSERT_EQ(tsu_cc_limit(&cc), TSU_CC_INITIAL + 1);
}

static void test_resume_after_a_cut(void)
{
	tsu_cc cc;
	tsu_cc_init(&cc, 0, 0);
	tsu_cc_resume(&cc, 20);
	ASSERT_EQ(tsu_cc_limit(&cc), TSU_CC_INITIAL); /* still starts small */
	int64_t t = good_rounds(&cc, 0, 3, 100 * MS);
	ASSERT_EQ(tsu_cc_limit(&cc), 20); /* slow start stops at 20 ... */
	good_rounds(&cc, t, 5, 100 * MS);
	ASSERT_TRUE(tsu_cc_limit(&cc) >= 24 && tsu_cc_limit(&cc) <= 25);
	/* ... then one per round trip. */
	tsu_cc_init(&cc, 7, 0);
	tsu_cc_resume(&cc, 20); /* pinned: no-op */
	ASSERT_EQ(tsu_cc_limit(&cc), 7);
	tsu_cc_init(&cc, 0, 0);
	tsu_cc_resume(&cc, 0); /* nothing known */
	good_rounds(&cc, 0, 6, 100 * MS);
	ASSERT_EQ(tsu_cc_limit(&cc), TSU_CC_CEILING);
	tsu_cc_init(&cc, 0, 0);
	tsu_cc_resume(&cc, 1000); /* above the ceiling */
	good_rounds(&cc, 0, 6, 100 * MS);
	ASSERT_EQ(tsu_cc_limit(&cc), TSU_CC_CEILING);
}

static void test_cap_for_http1(void)
{
	tsu_cc cc;
	tsu_cc_init(&cc, 0, 0);
	good_rounds(&cc, 0, 6, 100 * MS);
	ASSERT_EQ(tsu_cc_limit(&cc), TSU_CC_CEILING);
	tsu_cc_cap(&cc, TSU_CC_CEILING_H1);
	ASSERT_EQ(tsu_cc_limit(&cc), TSU_CC_CEILING_H1);
	good_rounds(&cc, 0, 20, 100 * MS);
	ASSERT_EQ(tsu_cc_limit(&cc), TSU_CC_CEILING_H1);
	tsu_cc_cap(&cc, TSU_CC_CEILING); /* never raised again */
	ASSERT_EQ(cc.ceiling, TSU_CC_CEILING_H1);
	tsu_cc_init(&cc, 100, 0); /* --parallel 100 over HTTP/1.1: as asked */
	tsu_cc_cap(&cc, TSU_CC_CEILING_H1);
	ASSERT_EQ(tsu_cc_limit(&cc), 100);
}

static void test_long_round_trips_take_bigger_batches(void)
{
	tsu_cc cc;
	tsu_cc_init(&cc, 0, 0);
	good_rounds(&cc, 0, 5, 200); /* loopback: 0.2 ms */
	ASSERT_EQ(tsu_cc_limit(&cc), TSU_CC_CEILING);
	ASSERT_EQ(tsu_cc_batch(&cc, 100), 100);
	tsu_cc_init(&cc, 0, 0);
	good_rounds(&cc, 0, 5, 100 * MS);
	ASSERT_EQ(tsu_cc_batch(&cc, 100), 4 * TSU_CC_CEILING);
	ASSERT_EQ(tsu_cc_batch(&cc, 1000), 1000);
	tsu_cc_init(&cc, 64, 0); /* pinned: --batch is exact */
	good_rounds(&cc, 0, 5, 100 * MS);
	ASSERT_EQ(tsu_cc_batch(&cc, 100), 100);
}

static void test_catchup_cutoff(void)
{
	const int64_t min = 60 * 1000, now = 1767225600000LL;
	/* The last run 15 min ago: twice that, from the oldest event. */
	ASSERT_EQ(tsu_catchup_cutoff_ms(now - 75 * min, now - 15 * min, now),
		  now - 45 * min);
	/* Runs a minute apart: at least 10 min of the backlog per run. */
	ASSERT_EQ(tsu_catchup_cutoff_ms(now - 75 * min, now - 1 * min, now),
		  now - 65 * min);
	/* No previous run, one more than a day ago, one in the future (the
	 * clock went back): no limit. */
	ASSERT_EQ(tsu_catchup_cutoff_ms(now - 75 * min, 0, now), INT64_MAX);
	ASSERT_EQ(
	    tsu_catchup_cutoff_ms(now - 75 * min, now - 25 * 60 * min, now),
	    INT64_MAX);
	ASSERT_EQ(tsu_catchup_cutoff_ms(now - 75 * min, now + min, now),
		  INT64_MAX);
	/* A day ago exactly still paces (48 h of backlog per run). */
	ASSERT_EQ(
	    tsu_catchup_cutoff_ms(now - 75 * min, now - 24 * 60 * min, now),
	    now - 75 * min + 48 * 60 * min);
}

static const struct tu_test tests[] = {
    {"defaults_and_pinned", test_defaults_and_pinned},
    {"signals", test_signals},
    {"slow_start_reaches_the_ceiling", test_slow_start_reaches_the_ceiling},
    {"no_growth_while_unused", test_no_growth_while_unused},
    {"failure_halves_once_per_round_trip",
     test_failure_halves_once_per_round_trip},
    {"throttle_cuts_to_the_delivered_rate",
     test_throttle_cuts_to_the_delivered_rate},
    {"rising_latency_cuts", test_rising_latency_cuts},
    {"ignored_signals", test_ignored_signals},
    {"resume_after_a_cut", test_resume_after_a_cut},
    {"catchup_cutoff", test_catchup_cutoff},
    {"cap_for_http1", test_cap_for_http1},
    {"long_round_trips_take_bigger_batches",
     test_long_round_trips_take_bigger_batches},
};

int main(int argc, char **argv)
{
	return tu_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv,
		       NULL);
}
