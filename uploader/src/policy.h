/*
 * policy.h - what an answer from LangBot Space means, and when to try again.
 *
 * Pure functions (no I/O, no clock, no globals): the drain loop passes the
 * time and the randomness in, so every decision can be tested and fuzzed.
 */
#ifndef TSU_POLICY_H
#define TSU_POLICY_H

#include <stddef.h>
#include <stdint.h>

typedef enum tsu_verdict {
	TSU_SENT = 0,  /* Space accepted the event */
	TSU_RETRY = 1, /* try again later (backoff) */
	TSU_DEAD = 2   /* permanent: never retried */
} tsu_verdict;

/* How the transfer ended below HTTP, from the transport. */
typedef enum tsu_transport {
	TSU_NET_OK = 0,      /* an HTTP answer was received */
	TSU_NET_CONNECT = 1, /* refused, unreachable, reset before an answer */
	TSU_NET_DNS = 2,     /* name did not resolve */
	TSU_NET_TIMEOUT = 3, /* connect or request timed out, or too slow */
	TSU_NET_TLS = 4,     /* TLS handshake or certificate failure */
	TSU_NET_PROTOCOL =
	    5,              /* malformed or cut-off HTTP, a bad URL or header */
	TSU_NET_ABORTED = 6 /* the run stopped it (deadline, opt-out) */
} tsu_transport;

/*
 * Classifies one exchange: 2xx whose body has no JSON "code" >= 400 is
 * TSU_SENT; 408, 429, 5xx, a 2xx whose "code" >= 500, and any transport
 * failure are TSU_RETRY; any other 4xx or a 2xx whose "code" is 400..499
 * is TSU_DEAD.  A 1xx or 3xx final answer (redirects are not followed) and
 * a status outside 100..599 say that space.url, a proxy or the transport is
 * wrong, not the event: TSU_RETRY.  A body
 * that is not JSON, or has no integer "code", does not change the verdict
 * of the status.  reason receives one line for last_error (e.g. "HTTP 503",
 * "HTTP 200 code 422: bad field", "connection refused"); it never contains
 * more than reasonlen-1 bytes and holds only printable ASCII.
 */
tsu_verdict tsu_classify(tsu_transport transport, long http_status,
			 const char *body, size_t body_len,
			 const char *transport_detail, char *reason,
			 size_t reasonlen);

/*
 * Delay before attempt number attempts+1, in ms: exponential backoff with
 * full jitter, random(0, min(cap_ms, base_ms * 2^attempts)), never below
 * base_ms / 2.  rnd is a uniformly random 64-bit value.
 */
int64_t tsu_backoff_ms(int attempts, int64_t base_ms, int64_t cap_ms,
		       uint64_t rnd);

/*
 * Parses a Retry-After header value: delta-seconds or an HTTP date
 * (IMF-fixdate, RFC 850 and asctime forms).  Returns the delay in ms from
 * now_ms (unix ms), clamped to [0, max_ms]; -1 when value is NULL, empty or
 * garbage.
 */
int64_t tsu_retry_after_ms(const char *value, int64_t now_ms, int64_t max_ms);

/*
 * From the body of a /api/v1/survey/pending answer, the "data.survey" JSON
 * object as compact text (malloc'd, caller frees), or NULL when there is
 * none (or the body is not JSON, or survey is not an object).
 */
char *tsu_survey_from_response(const char *body, size_t len);

#endif
