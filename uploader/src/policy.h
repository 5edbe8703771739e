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

#include "queue.h" /* telespool__verdict: the one verdict type */

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
 * Classifies one exchange (never RELEASE): 2xx whose body has no JSON
 * "code" >= 400 is TELESPOOL__SENT; 408, 429, 5xx, a 2xx whose "code" >=
 * 500, and any transport failure are TELESPOOL__RETRY; any other 4xx or a
 * 2xx whose "code" is 400..499 is TELESPOOL__DEAD.  A 1xx or 3xx final
 * answer (redirects are not followed) and a status outside 100..599 say
 * that space.url, a proxy or the transport is wrong, not the event:
 * TELESPOOL__RETRY.  A body that is not JSON, or has no integer "code", does not change the verdict
 * of the status.  reason receives one line for last_error (e.g. "HTTP 503",
 * "HTTP 200 code 422: bad field", "connection refused"); it never contains
 * more than reasonlen-1 bytes and holds only printable ASCII.
 */
telespool__verdict tsu_classify(tsu_transport transport, long http_status,
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

/* The endpoints, as paths appended to space.url. */
#define TSU_ENDPOINTS 4

/* Where an event type is posted, or NULL for a type that cannot be sent. */
const char *tsu_endpoint_of(const char *event_type);

/* A small number per endpoint path (0..TSU_ENDPOINTS-1), or -1 (unknown or
 * NULL); tsu_endpoint_path() is the reverse (NULL out of range). */
int tsu_endpoint_index(const char *path);
const char *tsu_endpoint_path(int index);

/* One claimed event and what its request got, for tsu_judge(). */
typedef struct tsu_answer {
	const char *event_type;
	int attempts;       /* before this one */
	int64_t created_ms; /* when recorded (unix ms); 0 if unknown */
	tsu_transport transport;
	long status; /* HTTP status when TSU_NET_OK */
	const char *body;
	size_t body_len;
	const char *detail; /* the transport's error text, or NULL */
	const char
	    *retry_after; /* the Retry-After header, NULL or "" if none */
	uint64_t rnd;     /* uniformly random, for this row's backoff */
} tsu_answer;

typedef struct tsu_judge_params {
	int64_t now_ms; /* unix ms */
	int max_attempts;
	int64_t max_age_ms;
	int64_t backoff_base_ms;
	int64_t backoff_cap_ms;
	int64_t retry_after_max_ms;
} tsu_judge_params;

/* What a batch's judgement adds up to. */
typedef struct tsu_tally {
	int64_t retry_after; /* longest Retry-After on an unsent answer, ms */
	int throttled;       /* a 429, or a Retry-After on an unsent answer */
	int attempted;       /* answers judged (not released nor unsendable) */
	int released;        /* aborted before an answer: RELEASE */
	int sent;
	int dead;             /* dead now, for any reason */
	int retried;          /* RETRY, for any reason */
	int retryable;        /* retryable failures (not refusals) */
	int refusals;         /* endpoint-wide refusals (kept or past limits) */
	int refused;          /* of those, kept for a retry */
	char refusal[200];    /* the batch's first endpoint-wide refusal */
	int refused_endpoint; /* its tsu_endpoint_index() */
} tsu_tally;

/*
 * The verdict on each answer of a batch (pure: the caller passes the time
 * and the randomness).  An event type with no endpoint is DEAD "rejected";
 * an aborted transfer is RELEASE; tsu_classify() decides SENT, RETRY or a
 * refusal.  A retryable failure is DEAD at max_attempts ("max_attempts") or
 * past max_age_ms ("expired"), else RETRY after its backoff, or at once
 * when the answer carried a Retry-After.  A refusal is about the event
 * (DEAD "rejected") only when its endpoint accepted an event, in this batch
 * or before (*endpoint_ok, a bit per tsu_endpoint_index(), updated), and
 * the status judges content (400, 413, 422, or a 2xx with a 4xx code); any
 * other refusal says the endpoint or the credentials are wrong: the row is
 * kept (RETRY after its backoff) within the same limits.  The longest
 * Retry-After is a floor for every RETRY of the batch.  Fills verdict,
 * next_attempt_ms, last_error (why[i]) and drop_reason of out[i], nothing
 * else; *t gets the sums.
 */
void tsu_judge(const tsu_answer *a, size_t n, const tsu_judge_params *p,
	       unsigned *endpoint_ok, telespool__outcome *out, char (*why)[200],
	       tsu_tally *t);

#endif
