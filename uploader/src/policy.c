/*
 * policy.c - what an answer from LangBot Space means, and when to try again.
 *
 * Everything here is a pure function of its arguments so that the drain
 * loop's decisions can be unit-tested and fuzzed: the caller supplies the
 * clock and the randomness.  Dates are parsed by hand, not with strptime(),
 * because an HTTP date is always English and GMT whatever the locale.
 */
#include "policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

/* Appends to a fixed buffer, keeping it printable ASCII and terminated. */
struct line {
	char *p;
	size_t cap; /* bytes available including the NUL */
	size_t len;
};

static void line_put(struct line *l, const char *s, size_t n)
{
	for (size_t i = 0; i < n && l->len + 1 < l->cap; i++) {
		unsigned char c = (unsigned char)s[i];
		/* last_error ends up in logs and terminals: no escapes. */
		if (c == '\t' || c == '\n' || c == '\r')
			c = ' ';
		else if (c < 0x20 || c > 0x7e)
			c = '?';
		l->p[l->len++] = (char)c;
	}
	if (l->cap > 0)
		l->p[l->len] = '\0';
}

static void line_str(struct line *l, const char *s)
{
	if (s)
		line_put(l, s, strlen(s));
}

static void line_num(struct line *l, double v)
{
	char tmp[32];
	int n;

	/* Integral by the time we get here; very large ones print as %g. */
	if (v > -1e15 && v < 1e15)
		n = snprintf(tmp, sizeof tmp, "%.0f", v);
	else
		n = snprintf(tmp, sizeof tmp, "%g", v);
	if (n > 0)
		line_put(l, tmp,
			 (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static const char *transport_name(tsu_transport t)
{
	switch (t) {
	case TSU_NET_CONNECT:
		return "connection failed";
	case TSU_NET_DNS:
		return "name did not resolve";
	case TSU_NET_TIMEOUT:
		return "timed out";
	case TSU_NET_TLS:
		return "TLS failure";
	case TSU_NET_PROTOCOL:
		return "protocol error";
	case TSU_NET_ABORTED:
		return "aborted";
	default:
		return "transport failure";
	}
}

/*
 * The top-level "code" of a JSON object that cannot be parsed whole (the
 * transport keeps only the first 64 KiB of an answer): scans the prefix,
 * skipping strings and nested values, for "code": <integer> at depth 1.
 */
static int prefix_code(const char *p, size_t len, double *code)
{
	size_t i = 0;
	int depth = 0, expect_key = 0;

	while (i < len &&
	       (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
		i++;
	if (i >= len || p[i] != '{')
		return 0;
	for (; i < len; i++) {
		char c = p[i];
		if (c == '{' || c == '[') {
			depth++;
			expect_key = depth == 1 && c == '{';
		} else if (c == '}' || c == ']') {
			depth--;
		} else if (c == ',') {
			expect_key = depth == 1;
		} else if (c == '"') {
			size_t start = ++i;
			while (i < len && p[i] != '"')
				i += p[i] == '\\' ? 2 : 1;
			if (i >= len)
				return 0;
			if (!(expect_key && depth == 1 && i - start == 4 &&
			      memcmp(p + start, "code", 4) == 0)) {
				expect_key = 0;
				continue;
			}
			size_t j = i + 1;
			while (j < len &&
			       (p[j] == ' ' || p[j] == ':' || p[j] == '\t'))
				j++;
			char num[24];
			size_t k = 0;
			if (j < len && p[j] == '-')
				num[k++] = p[j++];
			while (j < len && k + 1 < sizeof(num) && p[j] >= '0' &&
			       p[j] <= '9')
				num[k++] = p[j++];
			num[k] = '\0';
			if (k == 0 || (k == 1 && num[0] == '-') || j >= len ||
			    p[j] == '.' || p[j] == 'e' || p[j] == 'E')
				return 0;
			*code = strtod(num, NULL);
			return 1;
		}
	}
	return 0;
}

/*
 * Space's application code from a 2xx body: 1 and *code when the body is
 * a JSON object with an integral numeric "code" (or, when the body is cut
 * short, such a "code" in its prefix); *msg then points into *root (a
 * string "msg"), or is NULL.  The caller deletes *root.
 */
static int body_code(const char *body, size_t len, cJSON **root, double *code,
		     const char **msg)
{
	const cJSON *c, *m;
	double x;

	*root = NULL;
	*msg = NULL;
	if (!body || len == 0)
		return 0;
	*root = cJSON_ParseWithLength(body, len);
	if (*root == NULL)
		return prefix_code(body, len, code);
	if (!cJSON_IsObject(*root))
		return 0;
	c = cJSON_GetObjectItemCaseSensitive(*root, "code");
	if (!cJSON_IsNumber(c))
		return 0;
	x = c->valuedouble;
	/* NaN and infinities (x - x is not 0) and 422.5 are not codes. */
	if (x - x != 0)
		return 0;
	if (x > -1e15 && x < 1e15 && x != (double)(long long)x)
		return 0;
	*code = x;
	m = cJSON_GetObjectItemCaseSensitive(*root, "msg");
	if (cJSON_IsString(m))
		*msg = m->valuestring;
	return 1;
}

telespool__verdict tsu_classify(tsu_transport transport, long http_status,
				const char *body, size_t body_len,
				const char *transport_detail, char *reason,
				size_t reasonlen)
{
	struct line l = {reason, reason ? reasonlen : 0, 0};
	char tmp[48];
	telespool__verdict v;

	if (l.cap > 0)
		l.p[0] = '\0';

	/* Nothing reached Space (or the run stopped it): the event is fine. */
	if (transport != TSU_NET_OK) {
		line_str(&l, transport_name(transport));
		if (transport_detail && transport_detail[0]) {
			line_str(&l, ": ");
			line_str(&l, transport_detail);
		}
		return TELESPOOL__RETRY;
	}

	snprintf(tmp, sizeof tmp, "HTTP %ld", http_status);
	line_str(&l, tmp);

	if (http_status >= 200 && http_status <= 299) {
		cJSON *root;
		double code = 0;
		const char *msg;

		v = TELESPOOL__SENT;
		if (body_code(body, body_len, &root, &code, &msg) &&
		    code >= 400) {
			v = code >= 500 ? TELESPOOL__RETRY : TELESPOOL__DEAD;
			line_str(&l, " code ");
			line_num(&l, code);
			if (msg && msg[0]) {
				line_str(&l, ": ");
				line_str(&l, msg);
			}
		}
		cJSON_Delete(root);
		return v;
	}
	if (http_status == 408 || http_status == 429 ||
	    (http_status >= 500 && http_status <= 599))
		return TELESPOOL__RETRY;
	if (http_status < 100 || http_status > 599) {
		/*
		 * Not a status HTTP defines: a broken proxy or transport,
		 * like TSU_NET_PROTOCOL, says nothing about the event.
		 */
		line_str(&l, " (invalid status)");
		return TELESPOOL__RETRY;
	}
	if (http_status < 200 || (http_status >= 300 && http_status <= 399)) {
		/*
		 * A redirect (not followed, so that a body is never re-POSTed
		 * somewhere the operator did not configure) or a stray 1xx says
		 * space.url or a proxy is wrong, not that the event is: keep it
		 * until the operator fixes the URL (or it expires).
		 */
		line_str(&l,
			 http_status >= 300
			     ? " (redirects are not followed: check space.url)"
			     : " (unexpected informational answer)");
		return TELESPOOL__RETRY;
	}
	return TELESPOOL__DEAD; /* other 4xx */
}

int64_t tsu_backoff_ms(int attempts, int64_t base_ms, int64_t cap_ms,
		       uint64_t rnd)
{
	int64_t hi, lo;

	if (attempts < 0)
		attempts = 0;
	if (base_ms < 0)
		base_ms = 0;
	if (cap_ms < 0)
		cap_ms = 0;
	/* min(cap, base * 2^attempts) without ever computing an overflow. */
	if (base_ms == 0)
		hi = 0;
	else if (attempts >= 62 || base_ms > (cap_ms >> attempts))
		hi = cap_ms;
	else
		hi = base_ms << attempts;
	lo = base_ms / 2;
	if (lo > hi)
		lo = hi; /* a cap below base/2 still wins */
	/* Modulo bias is at most (hi-lo+1)/2^64: irrelevant here. */
	return lo + (int64_t)(rnd % ((uint64_t)(hi - lo) + 1));
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* n decimal digits at s; -1 unless all are digits. */
static int digits(const char *s, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

static int month_of(const char *s)
{
	static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";

	for (int i = 0; i < 12; i++)
		if (memcmp(s, names + 3 * i, 3) == 0)
			return i + 1;
	return 0;
}

static int is_wkday(const char *s)
{
	static const char names[] = "MonTueWedThuFriSatSun";

	for (int i = 0; i < 7; i++)
		if (memcmp(s, names + 3 * i, 3) == 0)
			return 1;
	return 0;
}

/* The full day name of RFC 850; returns its length, or 0. */
static size_t weekday_len(const char *s)
{
	static const char *const names[] = {"Monday",   "Tuesday", "Wednesday",
					    "Thursday", "Friday",  "Saturday",
					    "Sunday"};

	for (int i = 0; i < 7; i++) {
		size_t n = strlen(names[i]);
		if (strncmp(s, names[i], n) == 0)
			return n;
	}
	return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* The year of a day count, the inverse of days_from_civil() for years. */
static int64_t year_from_days(int64_t z)
{
	int64_t era, doe, yoe, doy, mp, y;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	y = yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	return mp >= 10 ? y + 1 : y;
}

static int days_in_month(int64_t y, int m)
{
	static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return 29;
	return d[m - 1];
}

/* "HH:MM:SS" at s into seconds of the day; -1 when malformed. */
static int64_t time_of_day(const char *s)
{
	int h = digits(s, 2), m = digits(s + 3, 2), sec = digits(s + 6, 2);

	if (s[2] != ':' || s[5] != ':' || h < 0 || m < 0 || sec < 0 || h > 23 ||
	    m > 59 || sec > 60)
		return -1;
	return (int64_t)h * 3600 + m * 60 + sec;
}

static int ymd_ok(int64_t y, int m, int d)
{
	return m >= 1 && m <= 12 && d >= 1 && d <= days_in_month(y, m);
}

/*
 * An HTTP date (RFC 9110 section 5.6.7) as unix seconds in *out; 0 or -1.
 * s is trimmed and n its length; now_s resolves RFC 850's two-digit year.
 */
static int parse_http_date(const char *s, size_t n, int64_t now_s, int64_t *out)
{
	int64_t y, tod;
	int m, d;
	const char *t;

	if (n == 29 && is_wkday(s) && memcmp(s + 3, ", ", 2) == 0) {
		/* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
		d = digits(s + 5, 2);
		m = month_of(s + 8);
		y = digits(s + 12, 4);
		t = s + 17;
		if (s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
		    memcmp(s + 25, " GMT", 4) != 0)
			return -1;
	} else if (n == 24 && is_wkday(s) && s[3] == ' ') {
		/* asctime: Sun Nov  6 08:49:37 1994 */
		m = month_of(s + 4);
		d = s[8] == ' ' ? digits(s + 9, 1) : digits(s + 8, 2);
		y = digits(s + 20, 4);
		t = s + 11;
		if (s[7] != ' ' || s[10] != ' ' || s[19] != ' ')
			return -1;
	} else {
		/* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
		size_t w = weekday_len(s);
		const char *p = s + w;
		int64_t now_y, yy;

		if (w == 0 || n != w + 24 || memcmp(p, ", ", 2) != 0 ||
		    p[4] != '-' || p[8] != '-' || p[11] != ' ' ||
		    memcmp(p + 20, " GMT", 4) != 0)
			return -1;
		d = digits(p + 2, 2);
		m = month_of(p + 5);
		yy = digits(p + 9, 2);
		t = p + 12;
		if (yy < 0)
			return -1;
		/*
		 * RFC 9110: a two-digit year more than 50 years in the
		 * future is the most recent past year with those digits.
		 */
		now_y = year_from_days(
		    now_s >= 0 ? now_s / 86400 : -((-now_s + 86399) / 86400));
		y = now_y - now_y % 100 + yy;
		if (y > now_y + 50)
			y -= 100;
	}
	if (y < 0 || d < 0 || !ymd_ok(y, m, d))
		return -1;
	tod = time_of_day(t);
	if (tod < 0)
		return -1;
	*out = days_from_civil(y, m, d) * 86400 + tod;
	return 0;
}

static int is_ows(char c)
{
	return c == ' ' || c == '\t';
}

static int64_t clamp_ms(int64_t v, int64_t max_ms)
{
	if (max_ms < 0)
		max_ms = 0;
	if (v < 0)
		return 0;
	return v > max_ms ? max_ms : v;
}

int64_t tsu_retry_after_ms(const char *value, int64_t now_ms, int64_t max_ms)
{
	const char *s, *e;
	size_t n;
	int64_t when_s, now_s, delta_s;

	if (!value)
		return -1;
	s = value;
	e = value + strlen(value);
	while (s < e && is_ows(*s))
		s++;
	while (e > s && is_ows(e[-1]))
		e--;
	n = (size_t)(e - s);
	if (n == 0)
		return -1;

	if (is_digit(*s)) {
		int64_t secs = 0;
		for (const char *p = s; p < e; p++) {
			if (!is_digit(*p))
				return -1;
			/* Saturate: the result is clamped to max_ms anyway. */
			if (secs <= INT64_MAX / 1000 / 10)
				secs = secs * 10 + (*p - '0');
			else
				secs = INT64_MAX / 1000;
		}
		if (secs > INT64_MAX / 1000)
			secs = INT64_MAX / 1000;
		return clamp_ms(secs * 1000, max_ms);
	}

	/* Floor division, so a negative clock still rounds the same way. */
	now_s = now_ms >= 0 ? now_ms / 1000 : -((-(now_ms + 1)) / 1000) - 1;
	if (parse_http_date(s, n, now_s, &when_s) != 0)
		return -1;
	/* Dates are whole seconds: compare at that resolution first. */
	delta_s = when_s - now_s; /* both within a few thousand years */
	if (delta_s <= 0)
		return 0;
	if (delta_s > INT64_MAX / 1000)
		return clamp_ms(INT64_MAX, max_ms);
	return clamp_ms(delta_s * 1000 - (now_ms - now_s * 1000), max_ms);
}

char *tsu_survey_from_response(const char *body, size_t len)
{
	cJSON *root;
	const cJSON *data, *survey;
	char *out = NULL;

	if (!body || len == 0)
		return NULL;
	root = cJSON_ParseWithLength(body, len);
	data = cJSON_GetObjectItemCaseSensitive(root, "data");
	survey = cJSON_GetObjectItemCaseSensitive(data, "survey");
	if (cJSON_IsObject(root) && cJSON_IsObject(data) &&
	    cJSON_IsObject(survey))
		out = cJSON_PrintUnformatted(survey);
	cJSON_Delete(root);
	return out;
}

static const char *const endpoints[TSU_ENDPOINTS] = {
    "/api/v1/telemetry", "/api/v1/survey/pending", "/api/v1/survey/respond",
    "/api/v1/survey/dismiss"};

const char *tsu_endpoint_of(const char *event_type)
{
	if (strcmp(event_type, "query") == 0 ||
	    strcmp(event_type, "instance_heartbeat") == 0)
		return endpoints[0];
	if (strcmp(event_type, "survey_trigger") == 0)
		return endpoints[1];
	if (strcmp(event_type, "survey_response") == 0)
		return endpoints[2];
	if (strcmp(event_type, "survey_dismiss") == 0)
		return endpoints[3];
	return NULL;
}

int tsu_endpoint_index(const char *path)
{
	for (int i = 0; path && i < TSU_ENDPOINTS; i++)
		if (strcmp(path, endpoints[i]) == 0)
			return i;
	return -1;
}

const char *tsu_endpoint_path(int index)
{
	return index >= 0 && index < TSU_ENDPOINTS ? endpoints[index] : NULL;
}

/* An answer that judges the event's content, not the endpoint or the
 * credentials: 400, 413, 422, or a 2xx whose JSON code is 4xx. */
static int about_the_event(long status)
{
	return (status >= 200 && status <= 299) || status == 400 ||
	       status == 413 || status == 422;
}

/* A failure the row may be retried after: DEAD past the limits, else RETRY
 * at now + wait. */
static void retry_or_drop(const tsu_answer *a, const tsu_judge_params *p,
			  int64_t wait, telespool__outcome *oc, tsu_tally *t)
{
	if (a->attempts + 1 >= p->max_attempts) {
		oc->verdict = TELESPOOL__DEAD;
		oc->drop_reason = "max_attempts";
		t->dead++;
	} else if (a->created_ms > 0 &&
		   p->now_ms - a->created_ms > p->max_age_ms) {
		oc->verdict = TELESPOOL__DEAD;
		oc->drop_reason = "expired";
		t->dead++;
	} else {
		oc->verdict = TELESPOOL__RETRY;
		oc->next_attempt_ms = p->now_ms + wait;
		t->retried++;
	}
}

static int64_t backoff_of(const tsu_answer *a, const tsu_judge_params *p)
{
	return tsu_backoff_ms(a->attempts, p->backoff_base_ms,
			      p->backoff_cap_ms, a->rnd);
}

/* One answer on its own; a refusal is left DEAD with no drop_reason, to be
 * decided once the batch's answers are known. */
static void judge_one(const tsu_answer *a, const tsu_judge_params *p,
		      telespool__outcome *oc, char *why, size_t whylen,
		      tsu_tally *t)
{
	if (tsu_endpoint_of(a->event_type) == NULL) {
		oc->verdict = TELESPOOL__DEAD;
		snprintf(why, whylen, "unknown event type '%s'", a->event_type);
		oc->last_error = why;
		oc->drop_reason = "rejected";
		t->dead++;
		return;
	}
	if (a->transport == TSU_NET_ABORTED) {
		oc->verdict = TELESPOOL__RELEASE;
		t->released++;
		return;
	}
	t->attempted++;
	telespool__verdict vd =
	    tsu_classify(a->transport, a->status, a->body, a->body_len,
			 a->detail, why, whylen);
	if (a->status == 429)
		t->throttled = 1;
	int64_t ra = tsu_retry_after_ms(a->retry_after, p->now_ms,
					p->retry_after_max_ms);
	if (ra > 0 && vd != TELESPOOL__SENT) {
		t->throttled = 1;
		if (ra > t->retry_after)
			t->retry_after = ra;
	}
	oc->verdict = vd;
	if (vd == TELESPOOL__SENT) {
		t->sent++;
		return;
	}
	oc->last_error = why;
	if (vd == TELESPOOL__DEAD)
		return;
	t->retryable++;
	/* Space said when (Retry-After, the floor): the row's own
	 * exponential backoff is for failures. */
	retry_or_drop(a, p, ra > 0 ? 0 : backoff_of(a, p), oc, t);
}

/* A refusal: about the event only when its endpoint accepted another one
 * and the answer judges content; else the endpoint, the credentials or
 * something in between is wrong and the row is kept. */
static void judge_refusal(const tsu_answer *a, const tsu_judge_params *p,
			  unsigned endpoint_ok, telespool__outcome *oc,
			  const char *why, tsu_tally *t)
{
	int ep = tsu_endpoint_index(tsu_endpoint_of(a->event_type));
	if (ep >= 0 && (endpoint_ok & (1u << ep)) &&
	    about_the_event(a->status)) {
		oc->drop_reason = "rejected";
		t->dead++;
		return;
	}
	if (t->refusal[0] == '\0') {
		snprintf(t->refusal, sizeof(t->refusal), "%s", why);
		t->refused_endpoint = ep;
	}
	t->refusals++;
	retry_or_drop(a, p, backoff_of(a, p), oc, t);
	if (oc->verdict == TELESPOOL__RETRY)
		t->refused++;
}

void tsu_judge(const tsu_answer *a, size_t n, const tsu_judge_params *p,
	       unsigned *endpoint_ok, telespool__outcome *out, char (*why)[200],
	       tsu_tally *t)
{
	memset(t, 0, sizeof(*t));
	t->refused_endpoint = -1;
	for (size_t i = 0; i < n; i++) {
		out[i].next_attempt_ms = 0;
		out[i].last_error = NULL;
		out[i].drop_reason = NULL;
		judge_one(&a[i], p, &out[i], why[i], sizeof(why[i]), t);
	}
	for (size_t i = 0; i < n; i++) {
		int ep = tsu_endpoint_index(tsu_endpoint_of(a[i].event_type));
		if (out[i].verdict == TELESPOOL__SENT && ep >= 0)
			*endpoint_ok |= 1u << ep;
	}
	for (size_t i = 0; i < n; i++)
		if (out[i].verdict == TELESPOOL__DEAD && !out[i].drop_reason)
			judge_refusal(&a[i], p, *endpoint_ok, &out[i], why[i],
				      t);
	for (size_t i = 0; t->retry_after > 0 && i < n; i++)
		if (out[i].verdict == TELESPOOL__RETRY &&
		    out[i].next_attempt_ms < p->now_ms + t->retry_after)
			out[i].next_attempt_ms = p->now_ms + t->retry_after;
}
