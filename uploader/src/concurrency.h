/*
 * concurrency.h - how many requests the uploader keeps in flight.
 *
 * An adaptive limit in the manner of TCP congestion control (slow start,
 * then additive increase, multiplicative decrease), with the latency and
 * explicit signals of a service client (Netflix concurrency-limits, Envoy's
 * adaptive concurrency): the limit starts at TSU_CC_INITIAL, doubles every
 * round trip while answers are 2xx and latency stays flat, then grows by one
 * per round trip, and is cut when Space shows strain:
 *
 *   429 or 503 (Space says slow down)   cut to what was actually delivered
 *                                       (0.9 x rate x round trip), at least
 *                                       by 10 %, at most by half; no growth
 *                                       for TSU_CC_HOLD_MS afterwards
 *   timeout, connection failure, 408,   halved
 *   other 5xx
 *   latency above 2 x its floor + 1 ms  x 0.8
 *
 * at most once per round trip (answers to requests sent before a cut say
 * nothing about the new limit), never below 1 nor above the ceiling
 * (TSU_CC_CEILING unless set lower).  The limit grows only while it is in
 * use (at least half of it in flight: a small spool proves nothing) and
 * only on answers whose own round trip is within 2 x the floor + 1 ms.
 * Retry-After itself is honoured by the drain loop, not here.
 *
 * Pure: no I/O, no clock, no globals; the caller passes the times in, so the
 * same code runs in the uploader, in its tests and in the fleet simulation.
 */
#ifndef TSU_CONCURRENCY_H
#define TSU_CONCURRENCY_H

#include <stdint.h>

#include "policy.h"

#define TSU_CC_INITIAL    4           /* requests in flight at the start */
#define TSU_CC_CEILING    128         /* the most ever in flight (HTTP/2) */
#define TSU_CC_CEILING_H1 32          /* over HTTP/1.x: one connection each */
#define TSU_CC_HOLD_MS    (30 * 1000) /* no growth after a 429/503 */

/* What one finished request says about Space's load. */
typedef enum tsu_cc_signal {
	TSU_CC_GOOD = 0,      /* an answer in time: 2xx, or a 4xx about the
	                        event itself */
	TSU_CC_THROTTLED = 1, /* 429 or 503: Space asks for less */
	TSU_CC_FAILED = 2,    /* timeout, connection failure, 408, other 5xx */
	TSU_CC_NONE = 3       /* says nothing about load (aborted by us, DNS,
	                        TLS, a malformed request or answer) */
} tsu_cc_signal;

typedef struct tsu_cc {
	double limit;    /* current limit (fractional while growing) */
	double ssthresh; /* slow start ends here */
	int ceiling;
	int pinned;      /* a fixed limit (--parallel): never changes */
	int peak;        /* highest limit reached */
	int cuts;        /* how many times the limit was cut */
	int64_t cut_us;  /* when it was last cut (caller's clock, us) */
	int64_t hold_us; /* no growth before this */
	/* Latency: smoothed round trip of good answers, and its floor (the
	 * lowest over the current and the previous window of 10 s). */
	int64_t srtt_us;
	int64_t min_cur_us, min_prev_us, min_window_us;
	/* Goodput: good answers in the current second, and the rate of the
	 * last whole one. */
	int64_t rate_start_us;
	int64_t rate_count;
	double rate_per_s;
	int64_t latency_check_us; /* the latency rule runs once per srtt */
} tsu_cc;

/*
 * Starts a controller: adaptive from TSU_CC_INITIAL when pinned is 0, else
 * fixed at pinned (clamped to 1..ceiling).  ceiling <= 0 means
 * TSU_CC_CEILING, and a larger one is lowered to it.
 */
void tsu_cc_init(tsu_cc *cc, int pinned, int ceiling);

/*
 * A run after one that was cut (within TSU_CC_MEMORY_MS): slow start ends
 * at the level the last run settled at, then the limit grows by one per
 * round trip, as TCP keeps ssthresh across an idle restart.  No-op when
 * pinned or when last_level is 0.
 */
#define TSU_CC_MEMORY_MS (3600LL * 1000)
void tsu_cc_resume(tsu_cc *cc, int last_level);

/*
 * Lowers the ceiling (never raises it): the transport calls it with
 * TSU_CC_CEILING_H1 when answers come over HTTP/1.x, where every request in
 * flight is a connection of its own, a socket and a TLS handshake for
 * Space.  A pinned limit (--parallel) is left alone.
 */
void tsu_cc_cap(tsu_cc *cc, int ceiling);

/* Requests that may be in flight now: 1..ceiling. */
int tsu_cc_limit(const tsu_cc *cc);

/*
 * Rows to claim for the next batch: batch, or 4 per request in flight when
 * that is more and round trips are long (10 ms or more): a batch ends when
 * its last answer comes, so over a long round trip it must hold several
 * round trips' worth to keep the limit full; over a short one the pause
 * between batches costs little, and smaller batches less memory.
 */
int tsu_cc_batch(const tsu_cc *cc, int batch);

/* The signal of a finished request (transport outcome and HTTP status). */
tsu_cc_signal tsu_cc_signal_of(tsu_transport transport, long status);

/*
 * Feeds one finished request: when it was started and finished (us, any
 * monotonic clock) and how many requests were in flight just before it
 * finished (itself included).
 */
void tsu_cc_sample(tsu_cc *cc, tsu_cc_signal s, int64_t started_us,
		   int64_t finished_us, int in_flight);

/*
 * Catch-up pacing: how far through an old backlog one run may go, so that
 * a fleet coming back from a Space outage does not send an hour's backlog
 * in one period.  A run sends events created up to
 *
 *     oldest + max(TSU_CATCHUP_FACTOR x (now - previous run's start),
 *                  TSU_CATCHUP_MIN_MS)
 *
 * (oldest: the run's oldest due event), i.e. at most twice the time since
 * the last run's worth of events: in steady state that is everything, after
 * an outage a backlog shrinks by one interval per run and the fleet sends
 * about twice its usual rate.  Returns that cutoff (unix ms), or INT64_MAX
 * for no limit: no previous run, or a previous run in the future (the clock
 * went back) or more than a day ago.
 */
#define TSU_CATCHUP_FACTOR 2
#define TSU_CATCHUP_MIN_MS (10LL * 60 * 1000)
int64_t tsu_catchup_cutoff_ms(int64_t oldest_ms, int64_t prev_run_ms,
			      int64_t now_ms);

#endif
