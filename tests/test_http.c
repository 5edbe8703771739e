/*
 * test_http.c - tests of the uploader's HTTP transport (uploader/src/http.c)
 * against servers on 127.0.0.1 that answer canned bytes, so that every
 * oddity (stalls, byte-by-byte answers, resets, huge bodies, interim 1xx,
 * plain HTTP under https://) is exactly reproducible.
 *
 * Each server listens before server_start() returns, so a client can
 * connect at once (the kernel queues it): nothing here waits by sleeping.
 * The TLS verification test runs a tiny Python TLS server (skipped when
 * python3 or openssl is missing) and reads its port from a pipe.
 *
 * Prints "N passed, N failed" and exits non-zero on any failure.
 */
#include "clock.h"
#include "http.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- checks */

#define ASSERT_LE(a, b)                                                        \
	do {                                                                   \
		long long tu_a = (long long)(a), tu_b = (long long)(b);        \
		if (tu_a <= tu_b)                                              \
			tu_passed++;                                           \
		else                                                           \
			TU_FAIL("%s <= %s: %lld > %lld", #a, #b, tu_a, tu_b);  \
	} while (0)

/* The header of the last request, or its absence (want NULL). */
#define ASSERT_HEADER(sv, name, want)                                          \
	do {                                                                   \
		char *tu_v = last_header(sv, name);                            \
		const char *tu_w = (want);                                     \
		if (tu_w ? tu_v && strcmp(tu_v, tu_w) == 0 : tu_v == NULL)     \
			tu_passed++;                                           \
		else                                                           \
			TU_FAIL("header %s: \"%s\", want \"%s\"", name,        \
				tu_v ? tu_v : "(absent)",                      \
				tu_w ? tu_w : "(absent)");                     \
		free(tu_v);                                                    \
	} while (0)

/* ---------------------------------------------------------- the servers */

enum mode {
	M_OK,            /* 200 JSON, keep-alive */
	M_SLOW,          /* 200 JSON after delay_ms */
	M_RETRY_AFTER,   /* 503 with a padded, odd-case Retry-After */
	M_CONTINUE,      /* an unasked-for 100 (with Retry-After), then 201 */
	M_REDIRECT,      /* 302 to another path */
	M_BYTES,         /* 200 JSON one byte at a time */
	M_CLOSE_MID,     /* headers and part of the body, then close */
	M_CLOSE_NOTHING, /* reads the request, closes without a byte */
	M_BODY,          /* 200 with a body of body_size bytes */
	M_STALL,         /* reads the request, never answers */
	M_SIGNAL         /* like M_STALL, but first sends SIGUSR1 to main */
};

#define MAXCONN 32
#define OK_BODY "{\"code\":0,\"msg\":\"ok\",\"data\":{}}"

struct conn {
	int fd;
	char *buf;
	size_t len, cap;
	int waiting; /* a request awaits its (delayed) answer */
	int64_t respond_at;
};

struct server {
	int lfd, port, wake[2];
	pthread_t th, main_thread;
	enum mode mode;
	int delay_ms;
	size_t body_size;
	struct conn c[MAXCONN];

	pthread_mutex_t mu; /* guards what follows */
	int accepts, open, max_open, requests, outstanding, max_outstanding;
	char *last; /* the last complete request, NUL-terminated */
	size_t last_len;
};

static void send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* the client went away: that is its business */
		p += w;
		n -= (size_t)w;
	}
}

static void send_str(int fd, const char *s)
{
	send_all(fd, s, strlen(s));
}

static void close_conn(struct server *sv, struct conn *c)
{
	close(c->fd);
	free(c->buf);
	memset(c, 0, sizeof *c);
	c->fd = -1;
	pthread_mutex_lock(&sv->mu);
	sv->open--;
	pthread_mutex_unlock(&sv->mu);
}

/* Case-insensitive search for needle in hay[0..n). */
static const char *ci_find(const char *hay, size_t n, const char *needle)
{
	size_t k = strlen(needle), i;

	for (i = 0; i + k <= n; i++)
		if (strncasecmp(hay + i, needle, k) == 0)
			return hay + i;
	return NULL;
}

static void answer_ok(int fd, int status_code, const char *reason)
{
	char head[256];

	snprintf(head, sizeof head,
		 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
		 "Content-Length: %zu\r\n\r\n",
		 status_code, reason, strlen(OK_BODY));
	send_str(fd, head);
	send_str(fd, OK_BODY);
}

static char body_byte(size_t i)
{
	return (char)('a' + i % 26);
}

/* Answers one request; returns 1 when the connection must be closed. */
static int respond(struct server *sv, struct conn *c)
{
	char head[256];
	size_t i;

	switch (sv->mode) {
	case M_OK:
	case M_SLOW:
		answer_ok(c->fd, 200, "OK");
		break;
	case M_RETRY_AFTER:
		send_str(c->fd, "HTTP/1.1 503 Service Unavailable\r\n"
				"retry-AFTER: \t 120  \r\n"
				"Content-Length: 2\r\n\r\n{}");
		break;
	case M_CONTINUE:
		send_str(c->fd,
			 "HTTP/1.1 100 Continue\r\nRetry-After: 5\r\n\r\n"
			 "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}");
		break;
	case M_REDIRECT:
		send_str(c->fd,
			 "HTTP/1.1 302 Found\r\nLocation: /api/v1/elsewhere\r\n"
			 "Content-Length: 0\r\n\r\n");
		break;
	case M_BYTES:
		snprintf(head, sizeof head,
			 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			 "Retry-After: 7\r\nContent-Length: %zu\r\n\r\n%s",
			 strlen(OK_BODY), OK_BODY);
		for (i = 0; head[i]; i++) {
			struct timespec ts = {0, 1000000};
			send_all(c->fd, head + i, 1);
			nanosleep(&ts, NULL); /* pacing, not synchronisation */
		}
		break;
	case M_CLOSE_MID:
		send_str(
		    c->fd,
		    "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"code\":");
		return 1;
	case M_CLOSE_NOTHING:
		return 1;
	case M_BODY: {
		char *b = malloc(sv->body_size ? sv->body_size : 1);
		snprintf(head, sizeof head,
			 "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n",
			 sv->body_size);
		send_str(c->fd, head);
		if (b) {
			for (i = 0; i < sv->body_size; i++)
				b[i] = body_byte(i);
			send_all(c->fd, b, sv->body_size);
			free(b);
		}
		break;
	}
	case M_STALL:
	case M_SIGNAL:
		return 0;
	}
	pthread_mutex_lock(&sv->mu);
	sv->outstanding--;
	pthread_mutex_unlock(&sv->mu);
	return 0;
}

/*
 * Consumes the complete requests in c's buffer.  Returns 1 when the
 * connection must be closed.
 */
static int take_requests(struct server *sv, struct conn *c)
{
	for (;;) {
		const char *end, *cl;
		size_t head_len, body_len = 0, total;

		if (c->len == 0 || c->waiting)
			return 0;
		if (c->buf[0] < 'A' || c->buf[0] > 'Z') {
			/* Not HTTP (a TLS hello, say): what nginx would say. */
			send_str(
			    c->fd,
			    "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n"
			    "Content-Length: 0\r\n\r\n");
			return 1;
		}
		end = ci_find(c->buf, c->len, "\r\n\r\n");
		if (!end)
			return 0;
		head_len = (size_t)(end - c->buf) + 4;
		cl = ci_find(c->buf, head_len, "\r\ncontent-length:");
		if (cl)
			body_len = strtoul(cl + 17, NULL, 10);
		total = head_len + body_len;
		if (c->len < total)
			return 0;

		pthread_mutex_lock(&sv->mu);
		free(sv->last);
		sv->last = malloc(total + 1);
		if (sv->last) {
			memcpy(sv->last, c->buf, total);
			sv->last[total] = '\0';
		}
		sv->last_len = sv->last ? total : 0;
		sv->requests++;
		sv->outstanding++;
		if (sv->outstanding > sv->max_outstanding)
			sv->max_outstanding = sv->outstanding;
		pthread_mutex_unlock(&sv->mu);
		memmove(c->buf, c->buf + total, c->len - total);
		c->len -= total;

		if (sv->mode == M_SIGNAL)
			pthread_kill(sv->main_thread, SIGUSR1);
		if (sv->mode == M_SLOW) {
			c->waiting = 1;
			c->respond_at = tsu_monotonic_ms() + sv->delay_ms;
			return 0;
		}
		if (respond(sv, c))
			return 1;
	}
}

static void *server_main(void *arg)
{
	struct server *sv = arg;
	struct pollfd p[2 + MAXCONN];
	int map[2 + MAXCONN];
	int i;

	for (;;) {
		int n = 0, timeout = -1;
		int64_t now = tsu_monotonic_ms();

		p[n].fd = sv->wake[0];
		p[n++].events = POLLIN;
		p[n].fd = sv->lfd;
		p[n++].events = POLLIN;
		for (i = 0; i < MAXCONN; i++) {
			struct conn *c = &sv->c[i];
			if (c->fd < 0)
				continue;
			map[n] = i;
			p[n].fd = c->fd;
			p[n++].events = POLLIN;
			if (c->waiting) {
				int64_t t = c->respond_at - now;
				if (t < 0)
					t = 0;
				if (timeout < 0 || t < timeout)
					timeout = (int)t;
			}
		}
		if (poll(p, (nfds_t)n, timeout) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents)
			break;
		if (p[1].revents & POLLIN) {
			int fd = accept(sv->lfd, NULL, NULL);
			if (fd >= 0) {
				int one = 1;
				struct timeval tv = {
				    5, 0}; /* never wedge the test */
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
					   sizeof one);
				setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv,
					   sizeof tv);
				for (i = 0; i < MAXCONN && sv->c[i].fd >= 0;
				     i++)
					;
				if (i == MAXCONN) {
					close(fd);
				} else {
					sv->c[i].fd = fd;
					pthread_mutex_lock(&sv->mu);
					sv->accepts++;
					if (++sv->open > sv->max_open)
						sv->max_open = sv->open;
					pthread_mutex_unlock(&sv->mu);
				}
			}
		}
		for (i = 2; i < n; i++) {
			struct conn *c = &sv->c[map[i]];
			char tmp[16384];
			ssize_t r;
			if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			r = recv(c->fd, tmp, sizeof tmp, 0);
			if (r <= 0) {
				close_conn(sv, c);
				continue;
			}
			if (c->len + (size_t)r + 1 > c->cap) {
				size_t cap = c->cap ? c->cap : 4096;
				char *nb;
				while (cap < c->len + (size_t)r + 1)
					cap *= 2;
				nb = realloc(c->buf, cap);
				if (!nb) {
					close_conn(sv, c);
					continue;
				}
				c->buf = nb;
				c->cap = cap;
			}
			memcpy(c->buf + c->len, tmp, (size_t)r);
			c->len += (size_t)r;
			if (take_requests(sv, c))
				close_conn(sv, c);
		}
		now = tsu_monotonic_ms();
		for (i = 0; i < MAXCONN; i++) {
			struct conn *c = &sv->c[i];
			if (c->fd < 0 || !c->waiting || c->respond_at > now)
				continue;
			c->waiting = 0;
			if (respond(sv, c) || take_requests(sv, c))
				close_conn(sv, c);
		}
	}
	for (i = 0; i < MAXCONN; i++)
		if (sv->c[i].fd >= 0)
			close_conn(sv, &sv->c[i]);
	return NULL;
}

/*
 * Listens on 127.0.0.1 (port chosen by the kernel) before returning.  param
 * is the delay in ms for M_SLOW, the body size for M_BODY.
 */
static int server_start(struct server *sv, enum mode mode, size_t param)
{
	struct sockaddr_in a;
	socklen_t alen = sizeof a;
	int i, one = 1;

	memset(sv, 0, sizeof *sv);
	for (i = 0; i < MAXCONN; i++)
		sv->c[i].fd = -1;
	sv->mode = mode;
	sv->delay_ms = (int)param;
	sv->body_size = param;
	sv->main_thread = pthread_self();
	pthread_mutex_init(&sv->mu, NULL);
	sv->lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (sv->lfd < 0)
		return -1;
	setsockopt(sv->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(sv->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    listen(sv->lfd, 64) != 0 ||
	    getsockname(sv->lfd, (struct sockaddr *)&a, &alen) != 0 ||
	    pipe(sv->wake) != 0) {
		close(sv->lfd);
		return -1;
	}
	sv->port = ntohs(a.sin_port);
	if (pthread_create(&sv->th, NULL, server_main, sv) != 0) {
		close(sv->lfd);
		close(sv->wake[0]);
		close(sv->wake[1]);
		return -1;
	}
	return 0;
}

static void server_stop(struct server *sv)
{
	ssize_t w;

	do
		w = write(sv->wake[1], "x", 1);
	while (w < 0 && errno == EINTR);
	pthread_join(sv->th, NULL);
	close(sv->wake[0]);
	close(sv->wake[1]);
	close(sv->lfd);
	free(sv->last);
	pthread_mutex_destroy(&sv->mu);
}

/* A snapshot of the counters (the server thread keeps running). */
struct stats {
	int accepts, max_open, requests, max_outstanding;
};

static struct stats server_stats(struct server *sv)
{
	struct stats s;

	pthread_mutex_lock(&sv->mu);
	s.accepts = sv->accepts;
	s.max_open = sv->max_open;
	s.requests = sv->requests;
	s.max_outstanding = sv->max_outstanding;
	pthread_mutex_unlock(&sv->mu);
	return s;
}

/* The last request's header named name (malloc'd, trimmed), or NULL. */
static char *last_header(struct server *sv, const char *name)
{
	char pat[128], *v = NULL;
	const char *end, *h, *e;

	snprintf(pat, sizeof pat, "\r\n%s:", name);
	pthread_mutex_lock(&sv->mu);
	if (sv->last && (end = strstr(sv->last, "\r\n\r\n")) &&
	    (h = ci_find(sv->last, (size_t)(end - sv->last) + 2, pat))) {
		h += strlen(pat);
		while (*h == ' ')
			h++;
		e = strstr(h, "\r\n");
		v = strndup(h, (size_t)(e - h));
	}
	pthread_mutex_unlock(&sv->mu);
	return v;
}

/* ------------------------------------------------------------- helpers */

static tsu_http_options base_opts(void)
{
	tsu_http_options o;

	memset(&o, 0, sizeof o);
	o.user_agent = "telespool/0.1-test";
	o.connect_timeout_ms = 2000;
	o.request_timeout_ms = 5000;
	o.max_in_flight = 4;
	return o;
}

static void url_for(char *buf, size_t len, const char *scheme, int port)
{
	snprintf(buf, len, "%s://127.0.0.1:%d/api/v1/telemetry", scheme, port);
}

static void make_reqs(tsu_request *r, size_t n, const char *url)
{
	size_t i;

	memset(r, 0, n * sizeof *r);
	for (i = 0; i < n; i++) {
		r[i].url = url;
		r[i].body = "{\"event_type\":\"query\"}";
		r[i].body_len = strlen(r[i].body);
	}
}

/* One request through a fresh transport to sv. */
static void one_shot(tsu_http_options o, tsu_request *r, struct server *sv,
		     const char *scheme)
{
	static char url[128];
	tsu_http *h = NULL;

	url_for(url, sizeof url, scheme, sv->port);
	make_reqs(r, 1, url);
	ASSERT_EQ(tsu_http_new(&h, &o, NULL, 0), 0);
	if (h)
		ASSERT_EQ(tsu_http_perform(h, r, 1, 0, NULL), 0);
	tsu_http_free(h);
}

static volatile int g_stop;

static void on_usr1(int sig)
{
	(void)sig;
	g_stop = 1;
}

/* --------------------------------------------------------------- tests */

static void t_headers_and_body(void)
{
	struct server sv;
	tsu_http_options o = base_opts();
	tsu_http *h = NULL;
	tsu_request r;
	char url[128], cl[32], *body;
	size_t blen = 5000, i;

	if (server_start(&sv, M_OK, 0) != 0) {
		TU_FAIL("server failed");
		return;
	}
	/* Over 1 KiB (libcurl would add Expect: 100-continue), with a NUL. */
	body = malloc(blen);
	for (i = 0; i < blen; i++)
		body[i] = (char)(' ' + i % 90);
	body[100] = '\0';
	url_for(url, sizeof url, "http", sv.port);
	memset(&r, 0, sizeof r);
	r.url = url;
	r.body = body;
	r.body_len = blen;
	r.idempotency_key = "0b4f6c1e-5d6a-4f5e-9a0b-1c2d3e4f5a6b";
	r.with_token = 1;
	r.authorization = "Bearer sekrit";
	o.token = "tok-123";
	ASSERT_EQ(tsu_http_new(&h, &o, NULL, 0), 0);
	ASSERT_EQ(tsu_http_perform(h, &r, 1, 0, NULL), 0);
	ASSERT_EQ(r.transport, TSU_NET_OK);
	ASSERT_EQ(r.status, 200);
	ASSERT_STREQ(r.detail, "");
	ASSERT_STREQ(r.retry_after, "");
	ASSERT_STREQ(r.response, OK_BODY);
	ASSERT_EQ(r.response_len, strlen(OK_BODY));
	ASSERT_EQ(r.truncated, 0);

	pthread_mutex_lock(&sv.mu);
	{
		static const char line[] =
		    "POST /api/v1/telemetry HTTP/1.1\r\n";
		ASSERT_TRUE(sv.last &&
			    strncmp(sv.last, line, sizeof line - 1) == 0);
	}
	pthread_mutex_unlock(&sv.mu);
	ASSERT_HEADER(&sv, "Content-Type", "application/json");
	ASSERT_HEADER(&sv, "Idempotency-Key",
		      "0b4f6c1e-5d6a-4f5e-9a0b-1c2d3e4f5a6b");
	ASSERT_HEADER(&sv, "X-LangBot-Telemetry-Token", "tok-123");
	ASSERT_HEADER(&sv, "Authorization", "Bearer sekrit");
	ASSERT_HEADER(&sv, "User-Agent", "telespool/0.1-test");
	ASSERT_HEADER(&sv, "Expect", NULL);
	ASSERT_HEADER(&sv, "Accept-Encoding", NULL);
	ASSERT_HEADER(&sv, "Transfer-Encoding", NULL);
	snprintf(cl, sizeof cl, "%zu", blen);
	ASSERT_HEADER(&sv, "Content-Length", cl);
	pthread_mutex_lock(&sv.mu);
	{
		const char *b = sv.last ? strstr(sv.last, "\r\n\r\n") : NULL;
		ASSERT_TRUE(b &&
			    sv.last_len - (size_t)(b + 4 - sv.last) == blen &&
			    memcmp(b + 4, body, blen) == 0);
	}
	pthread_mutex_unlock(&sv.mu);

	tsu_requests_reset(&r, 1);
	ASSERT_TRUE(r.response == NULL);
	tsu_requests_reset(&r, 1); /* twice is fine */
	tsu_http_free(h);
	server_stop(&sv);
	free(body);
}

static void t_token_absent(void)
{
	struct server sv;
	tsu_request r;
	tsu_http_options o = base_opts();

	if (server_start(&sv, M_OK, 0) != 0) {
		TU_FAIL("server failed");
		return;
	}
	o.token = NULL;
	one_shot(o, &r, &sv, "http");
	ASSERT_EQ(r.status, 200);
	ASSERT_HEADER(&sv, "X-LangBot-Telemetry-Token", NULL);
	ASSERT_HEADER(&sv, "Idempotency-Key", NULL);
	tsu_requests_reset(&r, 1);

	o.token = "";
	one_shot(o, &r, &sv, "http");
	ASSERT_EQ(r.status, 200);
	ASSERT_HEADER(&sv, "X-LangBot-Telemetry-Token", NULL);
	tsu_requests_reset(&r, 1);

	/* A token, but a request without with_token (a survey endpoint):
	 * not sent; no Authorization either unless the request has one. */
	o.token = "tok-123";
	one_shot(o, &r, &sv, "http");
	ASSERT_EQ(r.status, 200);
	ASSERT_HEADER(&sv, "X-LangBot-Telemetry-Token", NULL);
	ASSERT_HEADER(&sv, "Authorization", NULL);
	tsu_requests_reset(&r, 1);
	server_stop(&sv);
}

/* The proxy is the one named in the options, never libcurl's guess from
 * the environment; noproxy bypasses it. */
static void t_proxy(void)
{
	struct server sv;
	tsu_request r;
	tsu_http *h = NULL;
	tsu_http_options o = base_opts();
	char proxy[64], url[128];
	static const char target[] = "http://telespool-proxied.invalid:81"
				     "/api/v1/telemetry";

	if (server_start(&sv, M_OK, 0) != 0) {
		TU_FAIL("server failed");
		return;
	}
	/* The test server plays the proxy: it gets the absolute-form line. */
	snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", sv.port);
	o.proxy = proxy;
	ASSERT_EQ(tsu_http_new(&h, &o, NULL, 0), 0);
	make_reqs(&r, 1, target);
	ASSERT_EQ(tsu_http_perform(h, &r, 1, 0, NULL), 0);
	ASSERT_EQ(r.status, 200);
	pthread_mutex_lock(&sv.mu);
	{
		static const char line[] =
		    "POST http://telespool-proxied."
		    "invalid:81/api/v1/telemetry HTTP/1.1";
		ASSERT_TRUE(sv.last &&
			    strncmp(sv.last, line, sizeof line - 1) == 0);
	}
	pthread_mutex_unlock(&sv.mu);
	tsu_requests_reset(&r, 1);
	tsu_http_free(h);

	/* NO_PROXY's list: direct, so the .invalid name does not resolve. */
	o.noproxy = "localhost,telespool-proxied.invalid";
	ASSERT_EQ(tsu_http_new(&h, &o, NULL, 0), 0);
	make_reqs(&r, 1, target);
	ASSERT_EQ(tsu_http_perform(h, &r, 1, 0, NULL), 0);
	ASSERT_EQ(r.transport, TSU_NET_DNS);
	tsu_requests_reset(&r, 1);
	tsu_http_free(h);

	/* No proxy in the options: the environment's is ignored. */
	setenv("http_proxy", "http://127.0.0.1:9", 1);
	setenv("ALL_PROXY", "http://127.0.0.1:9", 1);
	o.proxy = NULL;
	o.noproxy = NULL;
	url_for(url, sizeof url, "http", sv.port);
	ASSERT_EQ(tsu_http_new(&h, &o, NULL, 0), 0);
	make_reqs(&r, 1, url);
	ASSERT_EQ(tsu_http_perform(h, &r, 1, 0, NULL), 0);
	ASSERT_EQ(r.status, 200);
	tsu_requests_reset(&r, 1);
	tsu_http_free(h);
	unsetenv("http_proxy");
	unsetenv("ALL_PROXY");
	server_stop(&sv);
}

static void t_reuse(void)
{
	struct server sv;
	tsu_http_options o = base_opts();
	tsu_http *h = NULL;
	tsu_request r[8];
	char url[128];
	int call;
	size_t i;
	struct stats st;

	if (server_start(&sv, M_OK, 0) != 0) {
		TU_FAIL("server failed");
		return;
	}
	url_for(url, sizeof url, "http", sv.port);
	o.max_in_flight = 1;
	ASSERT_EQ(tsu_http_new(&h, &o, NULL, 0), 0);
	for (call = 0; call < 5; call++) {
		make_reqs(r, 3, url);
		ASSERT_EQ(tsu_http_perform(h, r, 3, 0, NULL), 0);
		for (i = 0; i < 3; i++)
			ASSERT_EQ(r[i].status, 200);
		tsu_requests_reset(r, 3);
	}
	tsu_http_free(h);
	st = server_stats(&sv);
	ASSERT_EQ(st.requests, 15);
	ASSERT_EQ(st.accepts, 1);
	server_stop(&sv);

	/* Four handles, ten batches: never more than four connections. */
	if (server_start(&sv, M_OK, 0) != 0) {
		TU_FAIL("server failed");
		return;
	}
	url_for(url, sizeof url, "http", sv.port);
	o.max_in_flight = 4;
	ASSERT_EQ(tsu_http_new(&h, &o, NULL, 0), 0);
	for (call = 0; call < 10; call++) {
		make_reqs(r, 8, url);
		ASSERT_EQ(tsu_http_perform(h, r, 8, 0, NULL), 0);
		for (i = 0; i < 8; i++)
			ASSERT_EQ(r[i].transport, TSU_NET_OK);
		tsu_requests_reset(r, 8);
	}
	tsu_http_free(h);
	st = server_stats(&sv);
	ASSERT_EQ(st.requests, 80);
	ASSERT_LE(st.accepts, 4);
	server_stop(&sv);
}

static void t_max_in_flight(void)
{
	struct server sv;
	tsu_http_options o = base_opts();
	tsu_http *h = NULL;
	tsu_request r[12];
	char url[128];
	size_t i;
	struct stats st;

	if (server_start(&sv, M_SLOW, 40) != 0) {
		TU_FAIL("server failed");
		return;
	}
	url_for(url, sizeof url, "http", sv.port);
	o.max_in_flight = 3;
	ASSERT_EQ(tsu_http_new(&h, &o, NULL, 0), 0);
	make_reqs(r, 12, url);
	ASSERT_EQ(tsu_http_perform(h, r, 12, 0, NULL), 0);
	for (i = 0; i < 12; i++)
		ASSERT_EQ(r[i].status, 200);
	tsu_requests_reset(r, 12);
	tsu_http_free(h);
	st = server_stats(&sv);
	ASSERT_EQ(st.requests, 12);
	ASSERT_EQ(st.max_outstanding, 3); /* reached, never exceeded */
	ASSERT_LE(st.max_open, 3);
	ASSERT_LE(st.accepts, 3);
	server_stop(&sv);
}

static void t_answers(void)
{
	struct server sv;
	tsu_request r;
	tsu_http_options o = base_opts();

	if (server_start(&sv, M_RETRY_AFTER, 0) == 0) {
		one_shot(o, &r, &sv, "http");
		ASSERT_EQ(r.transport, TSU_NET_OK);
		ASSERT_EQ(r.status, 503);
		ASSERT_STREQ(r.retry_after, "120");
		ASSERT_STREQ(r.response, "{}");
		tsu_requests_reset(&r, 1);
		server_stop(&sv);
	}

	if (server_start(&sv, M_CONTINUE, 0) == 0) {
		one_shot(o, &r, &sv, "http");
		ASSERT_EQ(r.transport, TSU_NET_OK);
		ASSERT_EQ(r.status, 201);
		ASSERT_STREQ(r.retry_after,
			     ""); /* the 100's header is not the answer's */
		ASSERT_STREQ(r.response, "{}");
		tsu_requests_reset(&r, 1);
		server_stop(&sv);
	}

	if (server_start(&sv, M_REDIRECT, 0) == 0) {
		one_shot(o, &r, &sv, "http");
		ASSERT_EQ(r.transport, TSU_NET_OK);
		ASSERT_EQ(r.status, 302);
		ASSERT_TRUE(r.response && r.response_len == 0 &&
			    r.response[0] == '\0');
		ASSERT_EQ(server_stats(&sv).requests, 1);
		tsu_requests_reset(&r, 1);
		server_stop(&sv);
	}

	if (server_start(&sv, M_BYTES, 0) == 0) {
		one_shot(o, &r, &sv, "http");
		ASSERT_EQ(r.transport, TSU_NET_OK);
		ASSERT_EQ(r.status, 200);
		ASSERT_STREQ(r.retry_after, "7");
		ASSERT_STREQ(r.response, OK_BODY);
		tsu_requests_reset(&r, 1);
		server_stop(&sv);
	}

	/* The answer is incomplete: a failure (libcurl's PARTIAL_FILE). */
	if (server_start(&sv, M_CLOSE_MID, 0) == 0) {
		one_shot(o, &r, &sv, "http");
		ASSERT_EQ(r.transport, TSU_NET_PROTOCOL);
		ASSERT_EQ(r.status, 0);
		ASSERT_TRUE(r.response == NULL);
		ASSERT_TRUE(r.detail[0] != '\0');
		tsu_requests_reset(&r, 1);
		server_stop(&sv);
	}

	if (server_start(&sv, M_CLOSE_NOTHING, 0) == 0) {
		one_shot(o, &r, &sv, "http");
		ASSERT_EQ(r.transport, TSU_NET_CONNECT);
		ASSERT_EQ(r.status, 0);
		ASSERT_TRUE(r.detail[0] != '\0');
		tsu_requests_reset(&r, 1);
		server_stop(&sv);
	}
}

static void t_body_cap(void)
{
	struct server sv;
	tsu_request r;
	tsu_http_options o = base_opts();
	size_t i;
	int same = 1;

	if (server_start(&sv, M_BODY, 1024 * 1024) != 0) {
		TU_FAIL("server failed");
		return;
	}
	one_shot(o, &r, &sv, "http");
	ASSERT_EQ(r.transport, TSU_NET_OK);
	ASSERT_EQ(r.status, 200);
	ASSERT_EQ(r.truncated, 1);
	ASSERT_EQ(r.response_len, TSU_HTTP_MAX_RESPONSE);
	ASSERT_STREQ(r.detail, "");
	for (i = 0; r.response && i < r.response_len; i++)
		same &= r.response[i] == body_byte(i);
	ASSERT_TRUE(r.response && same && r.response[r.response_len] == '\0');
	tsu_requests_reset(&r, 1);
	server_stop(&sv);

	if (server_start(&sv, M_BODY, TSU_HTTP_MAX_RESPONSE) != 0) {
		TU_FAIL("server failed");
		return;
	}
	one_shot(o, &r, &sv, "http");
	ASSERT_EQ(r.transport, TSU_NET_OK);
	ASSERT_EQ(r.truncated, 0);
	ASSERT_EQ(r.response_len, TSU_HTTP_MAX_RESPONSE);
	tsu_requests_reset(&r, 1);
	server_stop(&sv);
}

static void t_timeouts(void)
{
	struct server sv;
	tsu_http_options o = base_opts();
	tsu_http *h = NULL;
	tsu_request r[3];
	char url[128];
	int64_t t0, el;
	size_t i;

	if (server_start(&sv, M_STALL, 0) != 0) {
		TU_FAIL("server failed");
		return;
	}
	url_for(url, sizeof url, "http", sv.port);
	o.request_timeout_ms = 400;
	ASSERT_EQ(tsu_http_new(&h, &o, NULL, 0), 0);
	make_reqs(r, 1, url);
	t0 = tsu_monotonic_ms();
	ASSERT_EQ(tsu_http_perform(h, r, 1, 0, NULL), 0);
	el = tsu_monotonic_ms() - t0;
	ASSERT_EQ(r[0].transport, TSU_NET_TIMEOUT);
	ASSERT_TRUE(el >= 390 && el <= 700);
	ASSERT_TRUE(r[0].detail[0] != '\0');
	tsu_http_free(h);

	o.request_timeout_ms = 10000;
	o.max_in_flight = 2;
	ASSERT_EQ(tsu_http_new(&h, &o, NULL, 0), 0);
	make_reqs(r, 3, url);
	t0 = tsu_monotonic_ms();
	ASSERT_EQ(tsu_http_perform(h, r, 3, t0 + 300, NULL), 0);
	el = tsu_monotonic_ms() - t0;
	for (i = 0; i < 3; i++) {
		ASSERT_EQ(r[i].transport, TSU_NET_ABORTED);
		ASSERT_STREQ(r[i].detail, "aborted: deadline passed");
	}
	ASSERT_TRUE(el >= 295 && el <= 450);

	/* The handles are reusable after an abort. */
	make_reqs(r, 3, url);
	{
		int before = server_stats(&sv).requests;
		ASSERT_EQ(
		    tsu_http_perform(h, r, 3, tsu_monotonic_ms() - 1, NULL), 0);
		for (i = 0; i < 3; i++)
			ASSERT_EQ(r[i].transport, TSU_NET_ABORTED);
		ASSERT_EQ(server_stats(&sv).requests, before);
	}
	tsu_http_free(h);
	server_stop(&sv);
}

/*
 * A listener with a full accept queue (backlog 0 and one connection that
 * is never accepted) drops further SYNs: the connect times out, which must
 * read as a timeout, not as a name that did not resolve.
 */
static void t_connect_timeout(void)
{
	tsu_http_options o = base_opts();
	tsu_http *h = NULL;
	tsu_request r;
	struct sockaddr_in a;
	socklen_t alen = sizeof a;
	struct pollfd p;
	char url[128];
	int l, filler;
	int64_t t0, el;

	l = socket(AF_INET, SOCK_STREAM, 0);
	filler = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASSERT_TRUE(bind(l, (struct sockaddr *)&a, sizeof a) == 0);
	ASSERT_TRUE(listen(l, 0) == 0);
	ASSERT_TRUE(getsockname(l, (struct sockaddr *)&a, &alen) == 0);
	connect(filler, (struct sockaddr *)&a, sizeof a);
	p.fd = filler;
	p.events = POLLOUT;
	ASSERT_EQ(poll(&p, 1, 5000), 1); /* the queue is full from now on */

	url_for(url, sizeof url, "http", ntohs(a.sin_port));
	o.connect_timeout_ms = 300;
	ASSERT_EQ(tsu_http_new(&h, &o, NULL, 0), 0);
	make_reqs(&r, 1, url);
	t0 = tsu_monotonic_ms();
	ASSERT_EQ(tsu_http_perform(h, &r, 1, 0, NULL), 0);
	el = tsu_monotonic_ms() - t0;
	ASSERT_EQ(r.transport, TSU_NET_TIMEOUT);
	ASSERT_TRUE(el >= 290 && el <= 600);
	tsu_http_free(h);
	close(filler);
	close(l);
}

static void t_stop(void)
{
	struct server sv;
	tsu_http_options o = base_opts();
	tsu_http *h = NULL;
	tsu_request r[2];
	char url[128];
	struct sigaction sa;
	int64_t t0, el;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1; /* no SA_RESTART, like the uploader's */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	if (server_start(&sv, M_SIGNAL, 0) != 0) {
		TU_FAIL("server failed");
		return;
	}
	url_for(url, sizeof url, "http", sv.port);
	o.request_timeout_ms = 10000;
	ASSERT_EQ(tsu_http_new(&h, &o, NULL, 0), 0);
	make_reqs(r, 1, url);
	g_stop = 0;
	t0 = tsu_monotonic_ms();
	/* The server raises SIGUSR1 as soon as it has the request. */
	ASSERT_EQ(tsu_http_perform(h, r, 1, 0, &g_stop), 0);
	el = tsu_monotonic_ms() - t0;
	ASSERT_EQ(g_stop, 1);
	ASSERT_EQ(r[0].transport, TSU_NET_ABORTED);
	ASSERT_STREQ(r[0].detail, "aborted: stop requested");
	ASSERT_TRUE(el <= 500);

	make_reqs(r, 2, url);
	ASSERT_EQ(tsu_http_perform(h, r, 2, 0, &g_stop), 0);
	ASSERT_EQ(r[0].transport, TSU_NET_ABORTED);
	ASSERT_EQ(r[1].transport, TSU_NET_ABORTED);
	ASSERT_EQ(server_stats(&sv).requests, 1);
	tsu_http_free(h);
	server_stop(&sv);
	signal(SIGUSR1, SIG_DFL);
}

/* For t_stop_graceful: the "signals" come from the transport's check, once
 * the server has a request, so that they land while it is in flight. */
struct signaller {
	struct server *sv;
	int signals; /* how many to raise, one per check */
};

static int raise_stop(void *ctx)
{
	struct signaller *s = ctx;
	if (g_stop < s->signals && server_stats(s->sv).requests >= 1)
		g_stop++;
	return 0;
}

/* A graceful stop (*stop == 1, stop_grace_ms): r[0] in flight, r[1] and
 * r[2] waiting.  Returns the milliseconds perform took. */
static int64_t stop_in_flight(struct server *sv, long grace_ms, int signals,
			      tsu_request *r)
{
	tsu_http_options o = base_opts();
	struct signaller sg = {sv, signals};
	tsu_http *h = NULL;
	char url[128];
	int64_t t0;

	url_for(url, sizeof url, "http", sv->port);
	o.max_in_flight = 1;
	o.request_timeout_ms = 60000;
	o.stop_grace_ms = grace_ms;
	ASSERT_EQ(tsu_http_new(&h, &o, NULL, 0), 0);
	if (!h)
		return 0;
	tsu_http_set_check(h, raise_stop, &sg, -1);
	make_reqs(r, 3, url);
	g_stop = 0;
	t0 = tsu_monotonic_ms();
	ASSERT_EQ(tsu_http_perform(h, r, 3, 0, &g_stop), 0);
	t0 = tsu_monotonic_ms() - t0;
	ASSERT_EQ(g_stop, signals);
	ASSERT_EQ(server_stats(sv).requests, 1); /* nothing started after */
	for (int i = 1; i < 3; i++) {
		ASSERT_EQ(r[i].transport, TSU_NET_ABORTED);
		ASSERT_STREQ(r[i].detail, "not sent: stopping");
		ASSERT_EQ(r[i].abandoned, 0);
	}
	tsu_http_free(h);
	return t0;
}

/* The first stop lets the request in flight finish; past stop_grace_ms, or
 * at a second stop, it is abandoned.  Bounds are generous (loaded CI). */
static void t_stop_graceful(void)
{
	struct server sv;
	tsu_request r[3];
	int64_t el;

	/* Answered 1.5 s after it arrives: the stop (checked every 100 ms)
	 * comes first, the grace (30 s) is long enough. */
	if (server_start(&sv, M_SLOW, 1500) != 0) {
		TU_FAIL("server failed");
		return;
	}
	stop_in_flight(&sv, 30000, 1, r);
	ASSERT_EQ(r[0].transport, TSU_NET_OK);
	ASSERT_EQ(r[0].status, 200);
	ASSERT_EQ(r[0].abandoned, 0);
	tsu_requests_reset(r, 3);
	server_stop(&sv);

	/* Never answered: abandoned once the grace is over. */
	if (server_start(&sv, M_STALL, 0) != 0) {
		TU_FAIL("server failed");
		return;
	}
	el = stop_in_flight(&sv, 300, 1, r);
	ASSERT_EQ(r[0].transport, TSU_NET_ABORTED);
	ASSERT_STREQ(r[0].detail, "aborted: the stop timeout passed");
	ASSERT_EQ(r[0].abandoned, 1);
	ASSERT_TRUE(el >= 300 && el < 20000);
	tsu_requests_reset(r, 3);
	server_stop(&sv);

	/* A second stop abandons it at once, long before the grace ends. */
	if (server_start(&sv, M_STALL, 0) != 0) {
		TU_FAIL("server failed");
		return;
	}
	el = stop_in_flight(&sv, 120000, 2, r);
	ASSERT_EQ(r[0].transport, TSU_NET_ABORTED);
	ASSERT_STREQ(r[0].detail, "aborted: stop requested");
	ASSERT_EQ(r[0].abandoned, 1);
	ASSERT_TRUE(el < 60000);
	tsu_requests_reset(r, 3);
	server_stop(&sv);
}

/* For t_check_hold: HOLD once the server has a request (r[0] in flight),
 * for holds checks, then GO (holds < 0: HOLD for good). */
struct holder {
	struct server *sv;
	int holds, seen;
};

static int hold_check(void *ctx)
{
	struct holder *hd = ctx;
	if (server_stats(hd->sv).requests < 1)
		return TSU_CHECK_GO;
	if (hd->holds >= 0 && hd->seen >= hd->holds)
		return TSU_CHECK_GO;
	hd->seen++;
	return TSU_CHECK_HOLD;
}

static void hold_batch(struct server *sv, int holds, tsu_request *r)
{
	tsu_http_options o = base_opts();
	struct holder hd = {sv, holds, 0};
	tsu_http *h = NULL;
	char url[128];

	url_for(url, sizeof url, "http", sv->port);
	o.max_in_flight = 1;
	o.request_timeout_ms = 60000;
	ASSERT_EQ(tsu_http_new(&h, &o, NULL, 0), 0);
	if (!h)
		return;
	tsu_http_set_check(h, hold_check, &hd, -1);
	make_reqs(r, 3, url);
	ASSERT_EQ(tsu_http_perform(h, r, 3, 0, NULL), 0);
	ASSERT_TRUE(hd.seen >= 1);
	tsu_http_free(h);
}

/* A config being re-read holds the batch: the request in flight finishes
 * with its real answer, none starts; a GO before it ends lifts the hold. */
static void t_check_hold(void)
{
	struct server sv;
	tsu_request r[3];

	/* Held for good: r[0] answered, r[1] and r[2] never sent. */
	if (server_start(&sv, M_SLOW, 1500) != 0) {
		TU_FAIL("server failed");
		return;
	}
	hold_batch(&sv, -1, r);
	ASSERT_EQ(r[0].transport, TSU_NET_OK);
	ASSERT_EQ(r[0].status, 200);
	ASSERT_EQ(r[0].abandoned, 0);
	for (int i = 1; i < 3; i++) {
		ASSERT_EQ(r[i].transport, TSU_NET_ABORTED);
		ASSERT_STREQ(r[i].detail,
			     "not sent: the config is being re-read");
		ASSERT_EQ(r[i].abandoned, 0);
	}
	ASSERT_EQ(server_stats(&sv).requests, 1);
	tsu_requests_reset(r, 3);
	server_stop(&sv);

	/* Held for two checks while r[0] is in flight, then GO: all sent. */
	if (server_start(&sv, M_SLOW, 1500) != 0) {
		TU_FAIL("server failed");
		return;
	}
	hold_batch(&sv, 2, r);
	for (int i = 0; i < 3; i++) {
		ASSERT_EQ(r[i].transport, TSU_NET_OK);
		ASSERT_EQ(r[i].status, 200);
	}
	ASSERT_EQ(server_stats(&sv).requests, 3);
	tsu_requests_reset(r, 3);
	server_stop(&sv);
}

static void t_failures(void)
{
	tsu_http_options o = base_opts();
	tsu_http *h = NULL;
	tsu_request r[5];
	char refused[128], plain[128], url[128];
	struct sockaddr_in a;
	socklen_t alen = sizeof a;
	struct server sv;
	int fd;

	/* Bound but not listening: the kernel refuses, and nobody can take it. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASSERT_TRUE(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
	ASSERT_TRUE(getsockname(fd, (struct sockaddr *)&a, &alen) == 0);
	url_for(refused, sizeof refused, "http", ntohs(a.sin_port));
	ASSERT_EQ(tsu_http_new(&h, &o, NULL, 0), 0);
	make_reqs(r, 1, refused);
	ASSERT_EQ(tsu_http_perform(h, r, 1, 0, NULL), 0);
	ASSERT_EQ(r[0].transport, TSU_NET_CONNECT);
	ASSERT_EQ(r[0].status, 0);
	ASSERT_TRUE(r[0].detail[0] != '\0');
	ASSERT_TRUE(r[0].response == NULL);

	make_reqs(r, 1, "http://nonexistent.invalid/api/v1/telemetry");
	ASSERT_EQ(tsu_http_perform(h, r, 1, 0, NULL), 0);
	ASSERT_EQ(r[0].transport, TSU_NET_DNS);

	/* A plain-HTTP server answers the TLS hello with a 400: OpenSSL
	 * reports "wrong version number" (SSL_CONNECT_ERROR), so TLS. */
	if (server_start(&sv, M_OK, 0) == 0) {
		url_for(plain, sizeof plain, "https", sv.port);
		make_reqs(r, 1, plain);
		ASSERT_EQ(tsu_http_perform(h, r, 1, 0, NULL), 0);
		ASSERT_EQ(r[0].transport, TSU_NET_TLS);
		ASSERT_EQ(r[0].status, 0);

		/* Bad requests fail alone; the rest of the batch goes on. */
		url_for(url, sizeof url, "http", sv.port);
		make_reqs(r, 5, url);
		r[0].url = NULL;
		r[1].url = "ftp://127.0.0.1/x";
		r[2].idempotency_key = "abc\r\nX-Evil: 1";
		r[4].body = NULL;
		r[4].body_len = 0;
		ASSERT_EQ(tsu_http_perform(h, r, 5, 0, NULL), 0);
		ASSERT_EQ(r[0].transport, TSU_NET_PROTOCOL);
		ASSERT_EQ(r[1].transport, TSU_NET_PROTOCOL);
		ASSERT_EQ(r[2].transport, TSU_NET_PROTOCOL);
		ASSERT_EQ(r[3].transport, TSU_NET_OK);
		ASSERT_EQ(r[4].transport, TSU_NET_OK);
		ASSERT_HEADER(&sv, "Content-Length", "0");
		ASSERT_EQ(server_stats(&sv).requests, 2);
		tsu_requests_reset(r, 5);
		server_stop(&sv);
	}
	tsu_http_free(h);
	close(fd);

	h = NULL;
	o.token = "tok\nX-Evil: 1";
	char err[128] = "";
	ASSERT_EQ(tsu_http_new(&h, &o, err, sizeof(err)), -1);
	ASSERT_TRUE(h == NULL);
	/* Every failure says why; the token itself is never in the text. */
	ASSERT_STREQ(err, "the ingest token contains a line break");
	o.token = "tok";
	o.user_agent = "ua\r\n";
	ASSERT_EQ(tsu_http_new(&h, &o, err, sizeof(err)), -1);
	ASSERT_STREQ(err, "the User-Agent contains a line break");
	ASSERT_EQ(tsu_http_new(&h, &o, NULL, 0), -1);
	ASSERT_EQ(tsu_http_new(&h, NULL, NULL, 0), -1);
	ASSERT_EQ(tsu_http_new(NULL, &o, NULL, 0), -1);
	tsu_http_free(NULL);
	o = base_opts();
	ASSERT_EQ(tsu_http_new(&h, &o, NULL, 0), 0);
	ASSERT_EQ(tsu_http_perform(h, NULL, 0, 0, NULL), 0);
	ASSERT_EQ(tsu_http_perform(h, NULL, 1, 0, NULL), -1);
	tsu_http_free(h);
}

static void t_verbose(void)
{
	struct server sv;
	tsu_http_options o = base_opts();
	tsu_request r;
	FILE *cap = tmpfile();
	char log[1024] = "";
	int saved;
	size_t n;

	if (!cap || server_start(&sv, M_OK, 0) != 0) {
		TU_FAIL("setup failed");
		if (cap)
			fclose(cap);
		return;
	}
	o.verbose = 1;
	fflush(stderr);
	saved = dup(2);
	dup2(fileno(cap), 2);
	one_shot(o, &r, &sv, "http");
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(cap);
	n = fread(log, 1, sizeof log - 1, cap);
	log[n] = '\0';
	fclose(cap);
	ASSERT_TRUE(strstr(log, "POST http://127.0.0.1:") != NULL);
	ASSERT_TRUE(strstr(log, " 200 ") != NULL);
	ASSERT_TRUE(strstr(log, "event_type") == NULL); /* never the body */
	ASSERT_TRUE(strchr(log, '\n') == log + n - 1);  /* one line */
	tsu_requests_reset(&r, 1);
	server_stop(&sv);
}

static void t_bench(void)
{
	struct server sv;
	tsu_http_options o = base_opts();
	tsu_http *h = NULL;
	enum { BATCH = 100 };
	tsu_request r[BATCH];
	char url[128];
	const char *env = getenv("TEST_HTTP_BENCH_N");
	int total = env ? atoi(env) : 2000, sent = 0, ok = 0;
	int64_t t0, el;
	size_t i;

	if (server_start(&sv, M_OK, 0) != 0) {
		TU_FAIL("server failed");
		return;
	}
	url_for(url, sizeof url, "http", sv.port);
	o.max_in_flight = 4;
	ASSERT_EQ(tsu_http_new(&h, &o, NULL, 0), 0);
	t0 = tsu_monotonic_ms();
	while (sent < total) {
		size_t n =
		    (size_t)(total - sent < BATCH ? total - sent : BATCH);
		make_reqs(r, n, url);
		for (i = 0; i < n; i++)
			r[i].idempotency_key =
			    "0b4f6c1e-5d6a-4f5e-9a0b-1c2d3e4f5a6b";
		ASSERT_EQ(tsu_http_perform(h, r, n, 0, NULL), 0);
		for (i = 0; i < n; i++)
			ok += r[i].status == 200;
		tsu_requests_reset(r, n);
		sent += (int)n;
	}
	el = tsu_monotonic_ms() - t0;
	tsu_http_free(h);
	ASSERT_EQ(ok, total);
	ASSERT_LE(server_stats(&sv).accepts, 4);
	printf("bench: %d POSTs, max_in_flight 4, batches of %d: %lld ms, %.0f "
	       "requests/s\n",
	       total, BATCH, (long long)el,
	       el > 0 ? total * 1000.0 / (double)el : 0.0);
	server_stop(&sv);
}

/* ---------------------------------------------------- TLS verification */

static int run_quiet(char *const argv[])
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		if (null >= 0) {
			dup2(null, 1);
			dup2(null, 2);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char tls_server_py[] =
    "import socket, ssl, sys\n"
    "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "ctx.load_cert_chain(sys.argv[1], sys.argv[2])\n"
    "s = socket.socket()\n"
    "s.bind(('127.0.0.1', 0))\n"
    "s.listen(8)\n"
    "print(s.getsockname()[1], flush=True)\n"
    "while True:\n"
    "    c, _ = s.accept()\n"
    "    try:\n"
    "        t = ctx.wrap_socket(c, server_side=True)\n"
    "        d = b''\n"
    "        while b'\\r\\n\\r\\n' not in d:\n"
    "            x = t.recv(65536)\n"
    "            if not x: break\n"
    "            d += x\n"
    "        t.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 10\\r\\n'\n"
    "                  b'Connection: close\\r\\n\\r\\n{\"code\":0}')\n"
    "        t.close()\n"
    "    except (OSError, ssl.SSLError):\n"
    "        c.close()\n";

static void t_tls_verify(void)
{
	const char *tmp = getenv("TMPDIR");
	char dir[512], cert[600], key[600], url[128];
	char portbuf[16] = "";
	int pfd[2], port = 0;
	pid_t pid;
	tsu_http_options o = base_opts();
	tsu_request r;
	tsu_http *h = NULL;
	size_t got = 0;

	snprintf(dir, sizeof dir, "%s/test_http_XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		TU_FAIL("mkdtemp failed");
		return;
	}
	snprintf(cert, sizeof cert, "%s/cert.pem", dir);
	snprintf(key, sizeof key, "%s/key.pem", dir);
	{
		char *argv[] = {"openssl",
				"req",
				"-x509",
				"-newkey",
				"ec",
				"-pkeyopt",
				"ec_paramgen_curve:prime256v1",
				"-nodes",
				"-keyout",
				key,
				"-out",
				cert,
				"-days",
				"1",
				"-subj",
				"/CN=127.0.0.1",
				"-addext",
				"subjectAltName=IP:127.0.0.1",
				NULL};
		if (run_quiet(argv) != 0) {
			printf("skip tls_verify: openssl could not make a "
			       "certificate\n");
			goto out;
		}
	}
	if (pipe(pfd) != 0)
		goto out;
	pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		close(pfd[1]);
		execlp("python3", "python3", "-c", tls_server_py, cert, key,
		       (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	/* The port line means the server listens; EOF means it died. */
	while (got < sizeof portbuf - 1) {
		ssize_t k = read(pfd[0], portbuf + got, 1);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0 || portbuf[got] == '\n')
			break;
		got++;
	}
	portbuf[got] = '\0';
	close(pfd[0]);
	port = atoi(portbuf);
	if (pid < 0 || port <= 0) {
		printf("skip tls_verify: python3 TLS server did not start\n");
		if (pid > 0) {
			kill(pid, SIGTERM);
			waitpid(pid, NULL, 0);
		}
		goto out;
	}
	url_for(url, sizeof url, "https", port);

	/* Self-signed, not in the system store: verification fails. */
	ASSERT_EQ(tsu_http_new(&h, &o, NULL, 0), 0);
	make_reqs(&r, 1, url);
	ASSERT_EQ(tsu_http_perform(h, &r, 1, 0, NULL), 0);
	ASSERT_EQ(r.transport, TSU_NET_TLS);
	tsu_http_free(h);

	/* With that certificate as the CA bundle it verifies. */
	o.cacert = cert;
	ASSERT_EQ(tsu_http_new(&h, &o, NULL, 0), 0);
	make_reqs(&r, 1, url);
	ASSERT_EQ(tsu_http_perform(h, &r, 1, 0, NULL), 0);
	ASSERT_EQ(r.transport, TSU_NET_OK);
	ASSERT_EQ(r.status, 200);
	ASSERT_STREQ(r.response, "{\"code\":0}");
	tsu_requests_reset(&r, 1);
	tsu_http_free(h);

	/* A missing bundle is a TLS failure, not a crash. */
	o.cacert = "/nonexistent/ca.pem";
	ASSERT_EQ(tsu_http_new(&h, &o, NULL, 0), 0);
	make_reqs(&r, 1, url);
	ASSERT_EQ(tsu_http_perform(h, &r, 1, 0, NULL), 0);
	ASSERT_EQ(r.transport, TSU_NET_TLS);
	tsu_http_free(h);

	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
out:
	unlink(cert);
	unlink(key);
	rmdir(dir);
}

static const struct tu_test tests[] = {
    {"headers_and_body", t_headers_and_body},
    {"token_absent", t_token_absent},
    {"proxy", t_proxy},
    {"reuse", t_reuse},
    {"max_in_flight", t_max_in_flight},
    {"answers", t_answers},
    {"body_cap", t_body_cap},
    {"timeouts", t_timeouts},
    {"connect_timeout", t_connect_timeout},
    {"stop", t_stop},
    {"stop_graceful", t_stop_graceful},
    {"check_hold", t_check_hold},
    {"failures", t_failures},
    {"verbose", t_verbose},
    {"tls_verify", t_tls_verify},
    {"bench", t_bench},
};

int main(int argc, char **argv)
{
	int64_t t0 = tsu_monotonic_ms();
	static const char *const proxies[] = {
	    "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
	    "all_proxy",  "ALL_PROXY",  "no_proxy",    "NO_PROXY"};
	size_t i;

	/* Everything here is local: a proxy from the environment must not
	 * take these requests elsewhere. */
	for (i = 0; i < sizeof proxies / sizeof proxies[0]; i++)
		unsetenv(proxies[i]);
	signal(SIGPIPE, SIG_IGN);

	int rc =
	    tu_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv, NULL);
	if (argc != 2 || strcmp(argv[1], "--list") != 0)
		printf("%lld ms\n", (long long)(tsu_monotonic_ms() - t0));
	return rc;
}
