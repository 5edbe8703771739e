/*
 * http.h - the uploader's HTTP transport: POSTs over libcurl's multi
 * interface with keep-alive, a bounded number of requests in flight, and
 * hard bounds on time and response size.
 */
#ifndef TSU_HTTP_H
#define TSU_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "concurrency.h"
#include "policy.h"

#define TSU_HTTP_MAX_RESPONSE (64 * 1024) /* bytes of response body kept */

/* A field left 0 takes its default; max_in_flight is capped at
 * TSU_CC_CEILING. */
typedef struct tsu_http_options {
	const char *user_agent;  /* "telespool/<version>" */
	const char *token;       /* X-LangBot-Telemetry-Token, or NULL; sent
	                                only on requests with with_token set */
	const char *proxy;       /* proxy URL; NULL or "" for none (the
	                                environment is not consulted) */
	const char *noproxy;     /* hosts that bypass it (CURLOPT_NOPROXY) */
	const char *cacert;      /* CA bundle to verify Space with (replaces
	                                the system store), or NULL */
	long connect_timeout_ms; /* default 5000 */
	long request_timeout_ms; /* whole request; default 10000 (LangBot's) */
	long low_speed_bytes;    /* abort if slower than this ... */
	long low_speed_seconds;  /* ... for this long; defaults 1 B/s, 10 s */
	int max_in_flight;       /* default 4; ignored with cc */
	long stop_grace_ms;      /* *stop == 1: the requests in flight get
	                                this long to finish; default 0 (they
	                                are abandoned at once) */
	tsu_cc *cc;  /* borrowed, or NULL: decides how many are in flight and
	                 learns from every finished request */
	int verbose; /* log requests to stderr */
} tsu_http_options;

/* One POST and its outcome. */
typedef struct tsu_request {
	/* in: borrowed, must outlive tsu_http_perform() */
	const char *url;
	const char *body;
	size_t body_len;
	const char *idempotency_key; /* Idempotency-Key header, or NULL */
	int with_token;              /* add X-LangBot-Telemetry-Token */
	const char *authorization;   /* Authorization header value, or NULL;
	                                a credential, never logged */

	/* out */
	tsu_transport transport; /* TSU_NET_OK when an HTTP answer came */
	long status;             /* HTTP status; 0 unless TSU_NET_OK */
	char detail[256];        /* curl's error text for transport failures */
	char retry_after[128];   /* Retry-After header value, "" if none */
	char *response; /* body (malloc'd, NUL-terminated, capped); non-NULL
	                             (maybe "") exactly when TSU_NET_OK */
	size_t response_len;
	int truncated; /* body was longer than TSU_HTTP_MAX_RESPONSE: the
	                             transfer was cut there, still TSU_NET_OK */
	int abandoned; /* TSU_NET_ABORTED while in flight: Space may have
	                             it (not set for one never started) */
} tsu_request;

typedef struct tsu_http tsu_http;

/*
 * Returns 0 and a new transport in *out, or -1 with *out NULL and why in
 * err (if not NULL): bad options, e.g. a line break in token or
 * user_agent, or curl could not be set up.  Calls curl_global_init(),
 * which is not thread-safe before libcurl 7.84.
 */
int tsu_http_new(tsu_http **out, const tsu_http_options *opts, char *err,
		 size_t errlen);

/*
 * Performs the n requests, at most max_in_flight (or the controller's
 * limit, asked before each start) at once, reusing connections.  Once an
 * answer is 429 or 503, no further request is started: those in flight
 * finish, the others end TSU_NET_ABORTED ("not sent: Space asked to slow
 * down"), so that a Retry-After is not answered with the rest of a batch.
 * Returns when every request has an outcome, or when deadline_ms
 * (CLOCK_MONOTONIC, ms; 0 = none) passes or *stop becomes non-zero (may be
 * NULL): the unfinished ones get TSU_NET_ABORTED.  With stop_grace_ms, a
 * *stop of 1 (a first stop signal) is a graceful stop instead: no request
 * starts any more (those not started end TSU_NET_ABORTED, "not sent:
 * stopping"), and those in flight get up to stop_grace_ms from when the
 * stop was seen to finish with their real outcome; past that, or once
 * *stop is 2 or more (a second signal), they are abandoned at once.
 * Redirects are not followed (a 3xx is an answer).  A request that cannot
 * be sent (no URL, line break in the key) fails alone as TSU_NET_PROTOCOL.
 * The out fields are written, never read: release earlier responses with
 * tsu_requests_reset() before reusing reqs.  Returns 0, or -1 on a failure
 * of the transport itself (then every request is TSU_NET_ABORTED).
 */
int tsu_http_perform(tsu_http *h, tsu_request *reqs, size_t n,
		     int64_t deadline_ms, volatile int *stop);

/* What a check callback returns (tsu_http_set_check()). */
typedef enum tsu_check {
	TSU_CHECK_GO = 0,    /* carry on */
	TSU_CHECK_ABORT = 1, /* abandon the unfinished requests at once */
	TSU_CHECK_HOLD = 2,  /* start no request; those in flight finish */
} tsu_check;

/*
 * check, if set, is called before perform starts and then at least every
 * 100 ms while it runs, and at once whenever watch_fd (if >= 0) becomes
 * readable.  TSU_CHECK_ABORT (any value but GO and HOLD): unfinished
 * requests are abandoned as TSU_NET_ABORTED (as for *stop).
 * TSU_CHECK_HOLD: no request starts while it lasts, those in flight finish
 * with their real outcome; once none is in flight, perform returns and the
 * ones never started end TSU_NET_ABORTED ("not sent: the config is being
 * re-read"); a later GO lifts the hold.  The uploader uses it to notice
 * an opt-out (abort) or a config being rewritten (hold) while a batch is
 * in flight, watch_fd being an inotify descriptor on the config's
 * directory (check reads it).
 */
void tsu_http_set_check(tsu_http *h, int (*check)(void *ctx), void *ctx,
			int watch_fd);

/* Releases the responses held by reqs[0..n) (safe to call twice). */
void tsu_requests_reset(tsu_request *reqs, size_t n);

/* NULL is a no-op. */
void tsu_http_free(tsu_http *h);

#endif
