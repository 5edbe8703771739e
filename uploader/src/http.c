/*
 * http.c - the uploader's HTTP transport on libcurl's multi interface.
 *
 * One CURLM and a pool of easy handles (max_in_flight, or the controller's
 * ceiling; each created when first needed) live as long as the tsu_http,
 * so the connections in the multi's cache survive from one
 * tsu_http_perform() to the next (HTTP/1.1 keep-alive, or one HTTP/2
 * connection multiplexing the requests when Space offers h2 over TLS:
 * CURLOPT_PIPEWAIT makes a new request over TLS wait for its ALPN
 * answer instead of opening connections of its own).
 * Every exchange is bounded: connect and total time, a low-speed floor, and
 * the number of response bytes kept.  Requests are added to the multi one
 * per free easy handle while fewer than the limit are in flight.
 *
 * Signals: CURLOPT_NOSIGNAL is set (no alarm() around name resolution,
 * which would be unsafe with the uploader's own handlers; the threaded
 * resolver makes it unnecessary).  libcurl sends with MSG_NOSIGNAL, but the
 * uploader should still ignore SIGPIPE.  A signal that sets *stop also
 * interrupts tsu_curl.multi_poll(), so the run reacts at once.
 *
 * Answers: a body longer than TSU_HTTP_MAX_RESPONSE is cut off by the
 * write callback, which also ends the transfer (and the connection); since
 * the status line and headers came first, that is still TSU_NET_OK, with
 * truncated set.  Redirects are answers, never followed.  The proxy is the
 * one the caller names (from LangBot's config and HTTPS_PROXY / HTTP_PROXY
 * in either case, see config.h); libcurl's own reading of the environment,
 * which ignores upper-case HTTP_PROXY, is switched off.
 *
 * Threads: a tsu_http is used by one thread at a time.
 */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "clock.h"
#include "config.h"
#include "curl_api.h"
#include "say.h"

#define DEF_CONNECT_TIMEOUT_MS 5000L
#define DEF_REQUEST_TIMEOUT_MS 10000L
#define DEF_LOW_SPEED_BYTES    1L
#define DEF_LOW_SPEED_SECONDS  10L
#define DEF_MAX_IN_FLIGHT      4
#define MAX_MAX_IN_FLIGHT      TSU_CC_CEILING
#define POLL_SLICE_MS          100 /* *stop and the deadline are looked at this often */

/* One easy handle of the pool and the request it is carrying, if any. */
struct slot {
	CURL *easy;
	tsu_request *req;           /* NULL while the handle is idle */
	struct curl_slist *headers; /* this request's header list */
	size_t cap;                 /* bytes allocated at req->response */
	int oom;                    /* the write callback ran out of memory */
	int64_t started_ms;
	int64_t started_us; /* for the controller */
	char errbuf[CURL_ERROR_SIZE];
};

struct tsu_http {
	CURLM *multi;
	struct slot *slots;
	int nslots;
	tsu_cc *cc;                /* or NULL: all nslots may be in flight */
	tsu_http_options opts;     /* for handles created later */
	char *user_agent, *cacert; /* opts' strings, owned */
	int verbose;
	char *token_header;      /* "X-LangBot-Telemetry-Token: ...", or NULL */
	int (*check)(void *ctx); /* non-zero: abort (tsu_http_set_check) */
	void *check_ctx;
	int watch_fd;       /* readable: call check now; -1 if none */
	int watch_fired;    /* watch_fd was readable after the last poll */
	int64_t checked_ms; /* when check last ran */
	int check_held;     /* check said TSU_CHECK_HOLD last time */
};

/* Header values must not smuggle extra header lines into the request. */
static int header_value_ok(const char *s)
{
	return strpbrk(s, "\r\n") == NULL;
}

/* Zeroes and frees a string that held a credential. */
static void wipe(char *s)
{
	if (!s)
		return;
	for (volatile char *p = s; *p; p++)
		*p = '\0';
	free(s);
}

static char *join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s = malloc(la + lb + 1);

	if (s) {
		memcpy(s, a, la);
		memcpy(s + la, b, lb + 1);
	}
	return s;
}

static void copy_text(char *dst, size_t dstlen, const char *src)
{
	size_t n = strlen(src);

	if (n >= dstlen)
		n = dstlen - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/*
 * Keeps the first TSU_HTTP_MAX_RESPONSE bytes of the body.  Past that,
 * returning short makes libcurl abort the transfer (CURLE_WRITE_ERROR):
 * the status line and the headers have arrived by then, so the answer is
 * complete as far as the policy is concerned and is reported as
 * TSU_NET_OK with truncated = 1.  The buffer grows by doubling so that
 * small answers cost small allocations.
 */
static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct slot *s = userdata;
	tsu_request *r = s->req;
	size_t n = size * nmemb;
	size_t room = TSU_HTTP_MAX_RESPONSE - r->response_len;
	size_t take = n < room ? n : room;

	if (take > 0) {
		size_t need = r->response_len + take + 1;
		if (need > s->cap) {
			size_t cap = s->cap ? s->cap : 1024;
			char *p;
			while (cap < need)
				cap *= 2;
			if (cap > TSU_HTTP_MAX_RESPONSE + 1)
				cap = TSU_HTTP_MAX_RESPONSE + 1;
			p = realloc(r->response, cap);
			if (!p) {
				s->oom = 1;
				return 0;
			}
			r->response = p;
			s->cap = cap;
		}
		memcpy(r->response + r->response_len, data, take);
		r->response_len += take;
		r->response[r->response_len] = '\0';
	}
	if (take < n) {
		r->truncated = 1;
		return 0;
	}
	return n;
}

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * Captures Retry-After (name in any case, value trimmed and cut to the
 * buffer).  A status line starts a new response (a 1xx, or a proxy's
 * CONNECT answer, comes before the final one), so it forgets what an
 * earlier response said.  Header sizes are bounded by libcurl itself
 * (CURL_MAX_HTTP_HEADER, 100 KiB per header).
 */
static size_t on_header(char *line, size_t size, size_t nmemb, void *userdata)
{
	static const char name[] = "retry-after:";
	struct slot *s = userdata;
	tsu_request *r = s->req;
	size_t n = size * nmemb;

	if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
		r->retry_after[0] = '\0';
	} else if (n >= sizeof name - 1 &&
		   strncasecmp(line, name, sizeof name - 1) == 0) {
		const char *v = line + sizeof name - 1, *end = line + n;
		size_t len;
		while (v < end && is_space(*v))
			v++;
		while (end > v && is_space(end[-1]))
			end--;
		len = (size_t)(end - v);
		if (len >= sizeof r->retry_after)
			len = sizeof r->retry_after - 1;
		memcpy(r->retry_after, v, len);
		r->retry_after[len] = '\0';
	}
	return n;
}

/* Sets the options every request shares, once per handle. */
static int setup_easy(CURL *e, struct slot *s, const tsu_http_options *o)
{
	long connect_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms
						    : DEF_CONNECT_TIMEOUT_MS;
	long request_ms = o->request_timeout_ms > 0 ? o->request_timeout_ms
						    : DEF_REQUEST_TIMEOUT_MS;
	long low_bytes =
	    o->low_speed_bytes > 0 ? o->low_speed_bytes : DEF_LOW_SPEED_BYTES;
	long low_secs = o->low_speed_seconds > 0 ? o->low_speed_seconds
						 : DEF_LOW_SPEED_SECONDS;
	CURLcode c = CURLE_OK;

#define SET(opt, val)                                                          \
	do {                                                                   \
		if (c == CURLE_OK)                                             \
			c = tsu_curl.easy_setopt(e, opt, val);                 \
	} while (0)
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	/* h2 only where ALPN negotiates it; plain http:// stays HTTP/1.1. */
	SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	/* Answers and bodies are small: the smallest buffers libcurl takes
	 * (1 KiB to receive, 16 KiB to send) keep 128 handles cheap. */
	SET(CURLOPT_BUFFERSIZE, 1024L);
	SET(CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
	SET(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
	SET(CURLOPT_TIMEOUT_MS, request_ms);
	SET(CURLOPT_LOW_SPEED_LIMIT, low_bytes);
	SET(CURLOPT_LOW_SPEED_TIME, low_secs);
	/* "" disables the proxy: never libcurl's own guess from the env. */
	SET(CURLOPT_PROXY, o->proxy ? o->proxy : "");
	SET(CURLOPT_NOPROXY, o->noproxy ? o->noproxy : "");
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	if (o->cacert && *o->cacert) {
		/* Replace the store: Debian's libcurl also trusts a built-in
		 * CApath (/etc/ssl/certs) next to CAINFO unless it is cleared. */
		SET(CURLOPT_CAINFO, o->cacert);
		SET(CURLOPT_CAPATH, (char *)NULL);
	}
	if (o->user_agent && *o->user_agent)
		SET(CURLOPT_USERAGENT, o->user_agent);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, (void *)s);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, (void *)s);
	SET(CURLOPT_ERRORBUFFER, s->errbuf);
	SET(CURLOPT_PRIVATE, (void *)s);
#undef SET
	return c == CURLE_OK ? 0 : -1;
}

/* Creates the slot's easy handle the first time it is needed. */
static int easy_of(tsu_http *h, struct slot *s)
{
	if (s->easy)
		return 0;
	s->easy = tsu_curl.easy_init();
	if (!s->easy || setup_easy(s->easy, s, &h->opts) != 0) {
		if (s->easy)
			tsu_curl.easy_cleanup(s->easy);
		s->easy = NULL;
		return -1;
	}
	return 0;
}

/* tsu_http_new() failed: why into err (if any), -1. */
static int new_failed(tsu_http **out, char *err, size_t errlen, const char *why)
{
	if (out)
		*out = NULL;
	if (err && errlen)
		copy_text(err, errlen, why);
	return -1;
}

/* A new tsu_http's fields from opts (its strings copied) with n slots:
 * 0, or -1 out of memory (tsu_http_free() undoes what was done). */
static int fill(tsu_http *h, const tsu_http_options *opts, int n)
{
	h->verbose = opts->verbose;
	h->watch_fd = -1;
	h->cc = opts->cc;
	h->opts = *opts;
	h->opts.token = NULL; /* kept as token_header */
	h->user_agent = opts->user_agent ? strdup(opts->user_agent) : NULL;
	h->cacert = opts->cacert ? strdup(opts->cacert) : NULL;
	h->opts.user_agent = h->user_agent;
	h->opts.cacert = h->cacert;
	h->slots = calloc((size_t)n, sizeof *h->slots);
	h->multi = tsu_curl.multi_init();
	if (!h->slots || !h->multi || (opts->user_agent && !h->user_agent) ||
	    (opts->cacert && !h->cacert))
		return -1;
	h->nslots = n;
	if (opts->token && *opts->token) {
		h->token_header =
		    join("X-LangBot-Telemetry-Token: ", opts->token);
		if (!h->token_header)
			return -1;
	}
	return 0;
}

/* n connections at most, multiplexed over HTTP/2 when Space offers it. */
static CURLMcode multi_limits(CURLM *multi, int n)
{
	CURLMcode mc = tsu_curl.multi_setopt(multi, CURLMOPT_PIPELINING,
					     (long)CURLPIPE_MULTIPLEX);
	if (mc == CURLM_OK)
		mc = tsu_curl.multi_setopt(
		    multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)n);
	if (mc == CURLM_OK)
		mc = tsu_curl.multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS,
					   (long)n);
	/* The cache would otherwise be sized from the handles added (4 each). */
	if (mc == CURLM_OK)
		mc =
		    tsu_curl.multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)n);
	return mc;
}

int tsu_http_new(tsu_http **out, const tsu_http_options *opts, char *err,
		 size_t errlen)
{
	tsu_http *h;
	int n;
	CURLMcode mc = CURLM_OK;

	if (!out || !opts)
		return new_failed(out, err, errlen, "no options");
	*out = NULL;
	if (opts->token && !header_value_ok(opts->token))
		return new_failed(out, err, errlen,
				  "the ingest token contains a line break");
	if (opts->user_agent && !header_value_ok(opts->user_agent))
		return new_failed(out, err, errlen,
				  "the User-Agent contains a line break");
	n = opts->cc                  ? opts->cc->ceiling
	    : opts->max_in_flight > 0 ? opts->max_in_flight
				      : DEF_MAX_IN_FLIGHT;
	if (n > MAX_MAX_IN_FLIGHT)
		n = MAX_MAX_IN_FLIGHT;

	/*
	 * Reference-counted by libcurl, undone in tsu_http_free().  Before
	 * 7.84 it was not thread-safe; the uploader is single-threaded.
	 */
	char why[256];
	if (tsu_curl_load(why, sizeof why) != 0)
		return new_failed(out, err, errlen, why);
	if (tsu_curl.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return new_failed(out, err, errlen,
				  "curl_global_init() failed");
	h = calloc(1, sizeof *h);
	if (!h) {
		tsu_curl.global_cleanup();
		return new_failed(out, err, errlen, "out of memory");
	}
	if (fill(h, opts, n) != 0) {
		copy_text(why, sizeof why, "out of memory");
		goto fail;
	}
	mc = multi_limits(h->multi, n);
	if (mc != CURLM_OK) {
		copy_text(why, sizeof why, tsu_curl.multi_strerror(mc));
		goto fail;
	}
	/* The first handle now, so that a setup failure shows here; the
	 * others when the limit first reaches them. */
	if (easy_of(h, &h->slots[0]) != 0) {
		copy_text(why, sizeof why,
			  "cannot set up a transfer (a bad --cacert or proxy, "
			  "or out of memory)");
		goto fail;
	}
	*out = h;
	return 0;
fail:
	tsu_http_free(h);
	return new_failed(out, err, errlen, why);
}

void tsu_http_free(tsu_http *h)
{
	int i;

	if (!h)
		return;
	for (i = 0; i < h->nslots; i++) {
		struct slot *s = &h->slots[i];
		/* Handles are only in the multi during tsu_http_perform(). */
		tsu_curl.slist_free_all(s->headers);
		if (s->easy)
			tsu_curl.easy_cleanup(s->easy);
	}
	tsu_curl.multi_cleanup(h->multi); /* closes the cached connections */
	free(h->slots);
	free(h->token_header);
	free(h->user_agent);
	free(h->cacert);
	free(h);
	tsu_curl.global_cleanup();
}

void tsu_requests_reset(tsu_request *reqs, size_t n)
{
	size_t i;

	if (!reqs)
		return;
	for (i = 0; i < n; i++) {
		free(reqs[i].response);
		reqs[i].response = NULL;
		reqs[i].response_len = 0;
		reqs[i].truncated = 0;
	}
}

/* Every out field of a request that has not run (yet). */
static void init_out(tsu_request *r)
{
	r->transport = TSU_NET_ABORTED;
	r->status = 0;
	r->detail[0] = '\0';
	r->retry_after[0] = '\0';
	r->response = NULL;
	r->response_len = 0;
	r->truncated = 0;
	r->abandoned = 0;
}

static void drop_response(tsu_request *r)
{
	free(r->response);
	r->response = NULL;
	r->response_len = 0;
	r->truncated = 0;
}

static tsu_transport map_code(CURLcode c)
{
	switch (c) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return TSU_NET_DNS;
	case CURLE_COULDNT_CONNECT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
		return TSU_NET_CONNECT;
	case CURLE_OPERATION_TIMEDOUT:
		/* Also a name lookup that outlasts the connect timeout: the
		 * detail then says "Resolving timed out". */
		return TSU_NET_TIMEOUT;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_USE_SSL_FAILED:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_SHUTDOWN_FAILED:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CLIENTCERT:
		return TSU_NET_TLS;
	default:
		return TSU_NET_PROTOCOL;
	}
}

/* Turns what libcurl reported for a finished transfer into the outcome. */
static void finish(struct slot *s, CURLcode c)
{
	tsu_request *r = s->req;
	long status = 0;

	tsu_curl.easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
	r->status = status;
	if (c == CURLE_OK ||
	    (c == CURLE_WRITE_ERROR && r->truncated && !s->oom)) {
		r->transport = TSU_NET_OK;
		r->detail[0] = '\0';
		if (!r->response) {
			/* An empty body is still an answer: "" rather than NULL. */
			r->response = calloc(1, 1);
			if (!r->response) {
				r->transport = TSU_NET_PROTOCOL;
				copy_text(r->detail, sizeof r->detail,
					  "out of memory");
			}
		}
	} else {
		r->transport = map_code(c);
		if (s->oom)
			copy_text(r->detail, sizeof r->detail,
				  "out of memory storing the response");
		else
			copy_text(r->detail, sizeof r->detail,
				  s->errbuf[0] ? s->errbuf
					       : tsu_curl.easy_strerror(c));
	}
	/* A half-received answer is no answer: callers may look at status alone. */
	if (r->transport != TSU_NET_OK) {
		r->status = 0;
		drop_response(r);
	}
}

static void log_outcome(const tsu_http *h, const tsu_request *r,
			int64_t started_ms)
{
	long long ms = (long long)(tsu_monotonic_ms() - started_ms);

	if (!h->verbose)
		return;
	/* space.url may carry a password: never print it. */
	char *shown = r->url ? tsu_url_redacted(r->url) : NULL;
	const char *u = shown ? shown : "(URL)";
	if (r->transport == TSU_NET_OK)
		fprintf(stderr, "http: POST %s -> %ld%s (%lld ms)\n", u,
			r->status, r->truncated ? ", body truncated" : "", ms);
	else
		fprintf(stderr, "http: POST %s -> failed: %s (%lld ms)\n", u,
			r->detail, ms);
	free(shown);
}

static void release_slot(struct slot *s)
{
	tsu_curl.slist_free_all(s->headers);
	s->headers = NULL;
	s->req = NULL;
	s->cap = 0;
	s->oom = 0;
}

/* A request that cannot even be started: it fails on its own. */
static void fail_request(tsu_request *r, const char *why)
{
	r->transport = TSU_NET_PROTOCOL;
	copy_text(r->detail, sizeof r->detail, why);
}

/* The request's header lines (checked by start()), or NULL out of memory. */
static struct curl_slist *request_headers(const tsu_http *h,
					  const tsu_request *r)
{
	struct curl_slist *l = NULL, *t;
	char *key = NULL, *auth = NULL;

	if (r->idempotency_key && *r->idempotency_key) {
		key = join("Idempotency-Key: ", r->idempotency_key);
		if (!key)
			goto oom;
	}
	/* "Expect:" with no value stops libcurl's 100-continue wait. */
	if (!(t = tsu_curl.slist_append(l, "Content-Type: application/json")))
		goto oom;
	l = t;
	if (!(t = tsu_curl.slist_append(l, "Expect:")))
		goto oom;
	l = t;
	if (h->token_header && r->with_token) {
		if (!(t = tsu_curl.slist_append(l, h->token_header)))
			goto oom;
		l = t;
	}
	if (r->authorization && *r->authorization) {
		/* libcurl copies the line; ours is wiped at once. */
		auth = join("Authorization: ", r->authorization);
		if (!auth)
			goto oom;
		t = tsu_curl.slist_append(l, auth);
		wipe(auth);
		auth = NULL;
		if (!t)
			goto oom;
		l = t;
	}
	if (key) {
		if (!(t = tsu_curl.slist_append(l, key)))
			goto oom;
		l = t;
		free(key);
	}
	return l;
oom:
	free(key);
	tsu_curl.slist_free_all(l);
	return NULL;
}

/*
 * Points slot s at request r.  Returns 0 when the handle is ready to be
 * added, -1 when r failed already (its outcome is set).
 */
static int start(tsu_http *h, struct slot *s, tsu_request *r)
{
	struct curl_slist *l;
	/* NULL POSTFIELDS would make libcurl read the body from stdin. */
	const char *body = r->body ? r->body : "";
	CURLcode c;

	if (!r->url || !*r->url) {
		fail_request(r, "no URL");
		return -1;
	}
	if (r->idempotency_key && !header_value_ok(r->idempotency_key)) {
		fail_request(r, "Idempotency-Key contains a line break");
		return -1;
	}
	if (r->authorization && !header_value_ok(r->authorization)) {
		fail_request(r, "Authorization contains a line break");
		return -1;
	}
	l = request_headers(h, r);
	if (!l) {
		fail_request(r, "out of memory");
		return -1;
	}

	c = tsu_curl.easy_setopt(s->easy, CURLOPT_URL, r->url);
	if (c == CURLE_OK)
		c = tsu_curl.easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE,
					 (curl_off_t)r->body_len);
	if (c == CURLE_OK)
		c = tsu_curl.easy_setopt(s->easy, CURLOPT_POSTFIELDS, body);
	if (c == CURLE_OK)
		c = tsu_curl.easy_setopt(s->easy, CURLOPT_HTTPHEADER, l);
	/* Over TLS, wait for the first connection's ALPN answer rather than
	 * open one connection per request: with h2 they all share it.  Not
	 * over plain HTTP, where libcurl would only learn it from the first
	 * answer, so one slow answer would hold up every other request. */
	if (c == CURLE_OK)
		c = tsu_curl.easy_setopt(
		    s->easy, CURLOPT_PIPEWAIT,
		    strncasecmp(r->url, "https://", 8) == 0 ? 1L : 0L);
	if (c != CURLE_OK) {
		tsu_curl.slist_free_all(l);
		fail_request(r, tsu_curl.easy_strerror(c));
		return -1;
	}
	s->headers = l;
	s->req = r;
	s->cap = 0;
	s->oom = 0;
	s->errbuf[0] = '\0';
	s->started_ms = tsu_monotonic_ms();
	s->started_us = tsu_monotonic_us();
	return 0;
}

/* Why the run must stop now, or NULL.  grace_until: the end of a graceful
 * stop under way (0: none). */
static const char *halted(tsu_http *h, int64_t deadline_ms, volatile int *stop,
			  int64_t grace_until)
{
	if (stop && *stop && (*stop > 1 || h->opts.stop_grace_ms <= 0))
		return "aborted: stop requested";
	if (deadline_ms > 0 && tsu_monotonic_ms() >= deadline_ms)
		return "aborted: deadline passed";
	if (grace_until > 0 && tsu_monotonic_ms() >= grace_until)
		return "aborted: the stop timeout passed";
	if (h->check) {
		/* Between libcurl steps: only when the watch fired or the
		 * slice is over, so that a fast drain is not a stream of
		 * system calls. */
		int64_t now = tsu_monotonic_ms();
		if (h->watch_fd < 0 || h->watch_fired ||
		    now - h->checked_ms >= POLL_SLICE_MS) {
			h->watch_fired = 0;
			h->checked_ms = now;
			int c = h->check(h->check_ctx);
			h->check_held = c == TSU_CHECK_HOLD;
			if (c != TSU_CHECK_GO && c != TSU_CHECK_HOLD)
				return "aborted: the run must stop";
		}
	}
	return NULL;
}

void tsu_http_set_check(tsu_http *h, int (*check)(void *ctx), void *ctx,
			int watch_fd)
{
	h->check = check;
	h->check_ctx = ctx;
	h->watch_fd = watch_fd;
	h->watch_fired = 0;
	h->checked_ms = 0;
	h->check_held = 0;
}

/*
 * A first stop signal (*stop == 1) with stop_grace_ms: a graceful stop, in
 * which no request starts and those in flight get until *grace_until
 * (set here when the stop is first seen) to finish.  Says so once, when
 * requests are in flight.  Returns non-zero while stopping.
 */
static int stopping(const tsu_http *h, volatile int *stop, int active,
		    int64_t *grace_until)
{
	if (*grace_until > 0)
		return 1;
	if (!stop || *stop != 1 || h->opts.stop_grace_ms <= 0)
		return 0;
	*grace_until = tsu_monotonic_ms() + h->opts.stop_grace_ms;
	if (active > 0)
		tsu_say("stopping: waiting up to %.1f s for %d request%s in "
			"flight (signal again to stop at once)",
			(double)h->opts.stop_grace_ms / 1000.0, active,
			active == 1 ? "" : "s");
	return 1;
}

/* Takes every request still in a handle out of the multi, as aborted. */
static void abort_active(tsu_http *h, const char *why)
{
	int i;

	for (i = 0; i < h->nslots; i++) {
		struct slot *s = &h->slots[i];
		if (!s->req)
			continue;
		/* Mid-transfer, libcurl closes the connection rather than caching it. */
		tsu_curl.multi_remove_handle(h->multi, s->easy);
		drop_response(s->req);
		s->req->transport = TSU_NET_ABORTED;
		s->req->abandoned = 1;
		copy_text(s->req->detail, sizeof s->req->detail, why);
		log_outcome(h, s->req, s->started_ms);
		release_slot(s);
	}
}

/* Fills the free handles up to the limit (none while held); the other
 * requests wait.  A request that cannot start is done at once. */
static CURLMcode fill_slots(tsu_http *h, tsu_request *reqs, size_t n, int held,
			    size_t *next, int *active, size_t *done)
{
	int cap = held ? 0 : h->cc ? tsu_cc_limit(h->cc) : h->nslots;
	CURLMcode mc;

	for (size_t i = 0;
	     i < (size_t)h->nslots && *next < n && *active < cap;) {
		struct slot *s = &h->slots[i];
		tsu_request *r;
		if (s->req) {
			i++;
			continue;
		}
		if (easy_of(h, s) != 0) {
			if (*active > 0)
				break; /* go on with fewer */
			return CURLM_OUT_OF_MEMORY;
		}
		r = &reqs[(*next)++];
		if (start(h, s, r) != 0) {
			log_outcome(h, r, tsu_monotonic_ms());
			(*done)++;
			continue; /* this handle is still free */
		}
		mc = tsu_curl.multi_add_handle(h->multi, s->easy);
		if (mc != CURLM_OK) {
			release_slot(s);
			return mc;
		}
		(*active)++;
		i++;
	}
	return CURLM_OK;
}

/* A finished transfer: its outcome, the concurrency's sample, its handle
 * free again.  A 429/503 holds further starts (*held). */
static void reap(tsu_http *h, CURLMsg *m, int *active, size_t *done, int *held)
{
	struct slot *s;
	char *priv = NULL;

	tsu_curl.easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
	s = (struct slot *)(void *)priv;
	finish(s, m->data.result);
	log_outcome(h, s->req, s->started_ms);
	tsu_cc_signal sig = tsu_cc_signal_of(s->req->transport, s->req->status);
	if (sig == TSU_CC_THROTTLED)
		*held = 1;
	if (h->cc) {
		long v = 0;
		/* HTTP/1.x: a connection per request. */
		if (s->req->transport == TSU_NET_OK &&
		    tsu_curl.easy_getinfo(s->easy, CURLINFO_HTTP_VERSION, &v) ==
			CURLE_OK &&
		    (v == CURL_HTTP_VERSION_1_0 || v == CURL_HTTP_VERSION_1_1))
			tsu_cc_cap(h->cc, TSU_CC_CEILING_H1);
		tsu_cc_sample(h->cc, sig, s->started_us, tsu_monotonic_us(),
			      *active);
	}
	tsu_curl.multi_remove_handle(h->multi, s->easy);
	release_slot(s);
	(*active)--;
	(*done)++;
}

/* Waits for a transfer or the watched descriptor, at most POLL_SLICE_MS
 * and never past the deadline. */
static CURLMcode wait_a_slice(tsu_http *h, int64_t deadline_ms)
{
	int wait_ms = POLL_SLICE_MS;
	if (deadline_ms > 0) {
		int64_t left_ms = deadline_ms - tsu_monotonic_ms();
		if (left_ms < wait_ms)
			wait_ms = left_ms > 0 ? (int)left_ms : 0;
	}
	struct curl_waitfd w = {h->watch_fd, CURL_WAIT_POLLIN, 0};
	CURLMcode mc =
	    tsu_curl.multi_poll(h->multi, h->watch_fd >= 0 ? &w : NULL,
				h->watch_fd >= 0 ? 1 : 0, wait_ms, NULL);
	if (mc == CURLM_OK && w.revents)
		h->watch_fired = 1;
	return mc;
}

int tsu_http_perform(tsu_http *h, tsu_request *reqs, size_t n,
		     int64_t deadline_ms, volatile int *stop)
{
	size_t next = 0, done = 0, i;
	int active = 0;
	int held = 0;            /* Space answered 429/503: start no more */
	int64_t grace_until = 0; /* a graceful stop: start no more */
	const char *why = NULL;
	CURLMcode mc = CURLM_OK;

	if (!h || (!reqs && n > 0))
		return -1;
	for (i = 0; i < n; i++)
		init_out(&reqs[i]);

	h->watch_fired = 1; /* check before the first start */
	why = halted(h, deadline_ms, stop, 0);
	while (!why && done < n) {
		int running, left;
		CURLMsg *m;
		int quiet = stopping(h, stop, active, &grace_until) || held ||
			    h->check_held;

		mc = fill_slots(h, reqs, n, quiet, &next, &active, &done);
		if (mc != CURLM_OK)
			goto fail;
		mc = tsu_curl.multi_perform(h->multi, &running);
		if (mc != CURLM_OK)
			goto fail;
		while ((m = tsu_curl.multi_info_read(h->multi, &left)))
			if (m->msg == CURLMSG_DONE)
				reap(h, m, &active, &done, &held);
		if (done == n)
			break;
		why = halted(h, deadline_ms, stop, grace_until);
		if (why)
			break;
		quiet = stopping(h, stop, active, &grace_until) || held ||
			h->check_held;
		if (quiet && active == 0) {
			why = grace_until ? "not sent: stopping"
			      : held      ? "not sent: Space asked to slow down"
					  : "not sent: the config is being "
					    "re-read";
			break;
		}
		if (!quiet &&
		    active < (h->cc ? tsu_cc_limit(h->cc) : h->nslots) &&
		    next < n)
			continue; /* a handle came free: start the next at once */
		mc = wait_a_slice(
		    h, grace_until > 0 &&
			       (deadline_ms <= 0 || grace_until < deadline_ms)
			   ? grace_until
			   : deadline_ms);
		if (mc != CURLM_OK)
			goto fail;
		if (h->watch_fired) /* before the next start */
			why = halted(h, deadline_ms, stop, grace_until);
	}
	if (why) {
		abort_active(h, why);
		for (; next < n; next++) /* never started */
			copy_text(reqs[next].detail, sizeof reqs[next].detail,
				  grace_until ? "not sent: stopping" : why);
	}
	return 0;

fail:
	abort_active(h, tsu_curl.multi_strerror(mc));
	for (i = 0; i < n; i++) {
		drop_response(&reqs[i]);
		reqs[i].transport = TSU_NET_ABORTED;
		copy_text(reqs[i].detail, sizeof reqs[i].detail,
			  tsu_curl.multi_strerror(mc));
	}
	return -1;
}
