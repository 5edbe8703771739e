/*
 * pyjson.c - a small JSON reader and writer that agree with Python's json
 * module byte for byte (see pyjson.h for why).
 */
#define _GNU_SOURCE /* newlocale, uselocale */
#include "pyjson.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Members kept per object while parsing: the rest are parsed and dropped
 * here already, so that finding a repeated key stays cheap.  The cleaning
 * that follows caps containers far lower (body.c). */
#define PARSE_MEMBERS_MAX 1024

static unsigned hash_key(const char *s, size_t n)
{
	unsigned h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h;
}

struct pj *telespool__pj_new(enum pj_type type)
{
	struct pj *v = calloc(1, sizeof(*v));
	if (v != NULL)
		v->type = type;
	return v;
}

static char *dup_n(const char *s, size_t n)
{
	char *p = malloc(n + 1);
	if (p != NULL) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

struct pj *telespool__pj_string(const char *s, size_t len)
{
	struct pj *v = telespool__pj_new(PJ_STR);
	if (v == NULL)
		return NULL;
	v->str = dup_n(s ? s : "", s ? len : 0);
	v->len = s ? len : 0;
	if (v->str == NULL) {
		free(v);
		return NULL;
	}
	return v;
}

struct pj *telespool__pj_int(long long n)
{
	char num[24];
	int k = snprintf(num, sizeof(num), "%lld", n);
	struct pj *v = telespool__pj_string(num, (size_t)k);
	if (v != NULL)
		v->type = PJ_NUM;
	return v;
}

void telespool__pj_free(struct pj *v)
{
	while (v != NULL) {
		struct pj *next = v->next;
		telespool__pj_free(v->child);
		free(v->key);
		free(v->str);
		free(v->out);
		free(v);
		v = next;
	}
}

int telespool__pj_set_key(struct pj *v, const char *key)
{
	size_t n = strlen(key);
	char *k = dup_n(key, n);
	if (k == NULL)
		return -1;
	free(v->key);
	v->key = k;
	v->key_len = n;
	v->key_hash = hash_key(k, n);
	return 0;
}

void telespool__pj_append(struct pj *parent, struct pj *child)
{
	child->next = NULL;
	if (parent->last != NULL)
		parent->last->next = child;
	else
		parent->child = child;
	parent->last = child;
	parent->n++;
}

static struct pj **link_of(struct pj *parent, const struct pj *child,
			   struct pj **prev)
{
	struct pj **pp = &parent->child;
	*prev = NULL;
	while (*pp != NULL && *pp != child) {
		*prev = *pp;
		pp = &(*pp)->next;
	}
	return pp;
}

void telespool__pj_remove(struct pj *parent, struct pj *child)
{
	struct pj *prev;
	struct pj **pp = link_of(parent, child, &prev);
	if (*pp == NULL)
		return;
	*pp = child->next;
	if (parent->last == child)
		parent->last = prev;
	parent->n--;
	child->next = NULL;
	telespool__pj_free(child);
}

void telespool__pj_replace(struct pj *parent, struct pj *old, struct pj *repl)
{
	struct pj *prev;
	struct pj **pp = link_of(parent, old, &prev);
	if (*pp == NULL)
		return;
	free(repl->key);
	repl->key = old->key;
	repl->key_len = old->key_len;
	repl->key_hash = old->key_hash;
	old->key = NULL;
	repl->next = old->next;
	*pp = repl;
	if (parent->last == old)
		parent->last = repl;
	old->next = NULL;
	telespool__pj_free(old);
}

struct pj *telespool__pj_get(const struct pj *obj, const char *key)
{
	size_t n = strlen(key);
	for (struct pj *m = obj->child; m != NULL; m = m->next)
		if (m->key_len == n && memcmp(m->key, key, n) == 0)
			return m;
	return NULL;
}

/* ---- floats --------------------------------------------------------- */

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void make_c_locale(void)
{
	c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

/* strtod and printf in the "C" locale, whatever the host set. */
static locale_t enter_c(void)
{
	pthread_once(&c_locale_once, make_c_locale);
	return c_locale ? uselocale(c_locale) : (locale_t)0;
}

static void leave_c(locale_t old)
{
	if (old)
		uselocale(old);
}

/* The digits of printf's "%.*e" text (exactly as many as asked for) into
 * D; returns the decimal point's position (value = 0.D x 10^decpt). */
static int split_e(const char *e, char *D, size_t *nd)
{
	size_t k = 0;
	const char *p = e;
	for (; *p && *p != 'e'; p++)
		if (*p >= '0' && *p <= '9')
			D[k++] = *p;
	D[k] = '\0';
	*nd = k;
	return (*p == 'e' ? atoi(p + 1) : 0) + 1;
}

static size_t strip_zeros(const char *D, size_t nd)
{
	while (nd > 1 && D[nd - 1] == '0')
		nd--;
	return nd;
}

static int roundtrips(const char *D, size_t nd, int decpt, int neg, double x)
{
	char s[64];
	snprintf(s, sizeof(s), "%s0.%.*se%d", neg ? "-" : "", (int)nd, D,
		 decpt);
	return strtod(s, NULL) == x;
}

/* D +/- 1 in its last digit, in place; -1 when that changes the number of
 * digits (then it is not a neighbour of the same length). */
static int bump(char *D, size_t nd, int delta)
{
	for (size_t i = nd; i-- > 0;) {
		int d = D[i] - '0' + delta;
		if (d >= 0 && d <= 9) {
			D[i] = (char)('0' + d);
			return D[0] == '0' ? -1 : 0;
		}
		D[i] = delta > 0 ? '0' : '9';
	}
	return -1;
}

/* The shortest digits that read back as x (what Python's repr finds):
 * the correctly rounded p digits, or, next to a power of two where the
 * rounding interval is lopsided, one of their neighbours. */
static int shortest(double x, char *D, size_t *nd)
{
	char e[48], t[48];
	int neg = x < 0, decpt = 0;
	for (int p = 1; p <= 17; p++) {
		snprintf(e, sizeof(e), "%.*e", p - 1, fabs(x));
		decpt = split_e(e, D, nd);
		if (p == 17 ||
		    roundtrips(D, strip_zeros(D, *nd), decpt, neg, x))
			break;
		int hit = 0;
		for (int delta = -1; delta <= 1 && !hit; delta += 2) {
			memcpy(t, D, *nd + 1);
			if (bump(t, *nd, delta) == 0 &&
			    roundtrips(t, strip_zeros(t, *nd), decpt, neg, x)) {
				memcpy(D, t, *nd + 1);
				hit = 1;
			}
		}
		if (hit)
			break;
	}
	*nd = strip_zeros(D, *nd);
	D[*nd] = '\0';
	return decpt;
}

void telespool__pj_float_repr(double x, char *out)
{
	if (x == 0) {
		strcpy(out, signbit(x) ? "-0.0" : "0.0");
		return;
	}
	char D[48];
	size_t nd = 0;
	locale_t old = enter_c();
	int decpt = shortest(x, D, &nd);
	leave_c(old);

	/* float_repr_style 'short': exponent form outside 1e-4 <= |x| <
	 * 1e16, else positional with at least one digit after the point. */
	char *o = out;
	if (x < 0)
		*o++ = '-';
	if (decpt <= -4 || decpt > 16) {
		*o++ = D[0];
		if (nd > 1) {
			*o++ = '.';
			memcpy(o, D + 1, nd - 1);
			o += nd - 1;
		}
		int ex = decpt - 1; /* |ex| <= 324 */
		unsigned a = (unsigned)(ex < 0 ? -ex : ex) % 1000;
		*o++ = 'e';
		*o++ = ex < 0 ? '-' : '+';
		if (a >= 100)
			*o++ = (char)('0' + a / 100);
		*o++ = (char)('0' + a / 10 % 10);
		*o++ = (char)('0' + a % 10);
		*o = '\0';
		return;
	}
	if (decpt <= 0) {
		*o++ = '0';
		*o++ = '.';
		for (int i = 0; i < -decpt; i++)
			*o++ = '0';
		memcpy(o, D, nd);
		o += nd;
	} else if ((size_t)decpt >= nd) {
		memcpy(o, D, nd);
		o += nd;
		for (size_t i = nd; i < (size_t)decpt; i++)
			*o++ = '0';
		*o++ = '.';
		*o++ = '0';
	} else {
		memcpy(o, D, (size_t)decpt);
		o += decpt;
		*o++ = '.';
		memcpy(o, D + decpt, nd - (size_t)decpt);
		o += nd - (size_t)decpt;
	}
	*o = '\0';
}

double telespool__pj_strtod(const char *s)
{
	locale_t old = enter_c();
	double x = strtod(s, NULL);
	leave_c(old);
	return x;
}

/* ---- parsing -------------------------------------------------------- */

struct parser {
	const char *p, *end;
	const char *why;
	int oom;
};

static void ws(struct parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' ||
				   *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static int failp(struct parser *ps, const char *why)
{
	if (ps->why == NULL)
		ps->why = why;
	return -1;
}

static void *oomp(struct parser *ps)
{
	ps->oom = 1;
	failp(ps, "out of memory");
	return NULL;
}

struct sbuf {
	char *p;
	size_t len, cap;
};

static int sb_put(struct sbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (p == NULL)
			return -1;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static int hex4(const char *p, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static size_t utf8_put(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (char)(0xF0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* The \u escape at ps->p (past its "\u"), a surrogate pair taken whole,
 * appended to b as UTF-8.  Returns 0, or -1 with the error set. */
static int parse_u_escape(struct parser *ps, struct sbuf *b)
{
	unsigned cp, lo;
	char u[4];

	if (ps->end - ps->p < 4 || hex4(ps->p, &cp) != 0)
		return failp(ps, "a bad \\u escape in a string");
	ps->p += 4;
	if (cp >= 0xD800 && cp <= 0xDBFF && ps->end - ps->p >= 6 &&
	    ps->p[0] == '\\' && ps->p[1] == 'u' && hex4(ps->p + 2, &lo) == 0 &&
	    lo >= 0xDC00 && lo <= 0xDFFF) {
		cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
		ps->p += 6;
	} else if (cp >= 0xD800 && cp <= 0xDFFF) {
		/* A lone surrogate cannot be sent as UTF-8 (LangBot's sender
		 * would fail on it): it becomes U+FFFD, like other invalid
		 * text. */
		cp = 0xFFFD;
	}
	if (sb_put(b, u, utf8_put(u, cp)) != 0) {
		oomp(ps);
		return -1;
	}
	return 0;
}

/* The escape at ps->p (its backslash) appended to b.  Returns 0, or -1
 * with the error set. */
static int parse_escape(struct parser *ps, struct sbuf *b)
{
	char e, one;

	if (ps->end - ps->p < 2)
		return failp(ps, "unterminated string");
	e = ps->p[1];
	ps->p += 2;
	switch (e) {
	case '"':
	case '\\':
	case '/':
		one = e;
		break;
	case 'b':
		one = '\b';
		break;
	case 'f':
		one = '\f';
		break;
	case 'n':
		one = '\n';
		break;
	case 'r':
		one = '\r';
		break;
	case 't':
		one = '\t';
		break;
	case 'u':
		return parse_u_escape(ps, b);
	default:
		return failp(ps, "a bad escape in a string");
	}
	if (sb_put(b, &one, 1) != 0) {
		oomp(ps);
		return -1;
	}
	return 0;
}

/* A string after its opening quote; the decoded text goes to *out. */
static int parse_string(struct parser *ps, char **out, size_t *out_len)
{
	struct sbuf b = {NULL, 0, 0};
	const char *run = ps->p;
	for (;;) {
		if (ps->p >= ps->end) {
			free(b.p);
			return failp(ps, "unterminated string");
		}
		unsigned char c = (unsigned char)*ps->p;
		if (c != '"' && c != '\\' && c >= 0x20) {
			ps->p++;
			continue;
		}
		if (sb_put(&b, run, (size_t)(ps->p - run)) != 0)
			goto oom;
		if (c == '"') {
			ps->p++;
			break;
		}
		if (c < 0x20) {
			free(b.p);
			return failp(ps, "a control character inside a string "
					 "(it must be escaped)");
		}
		if (parse_escape(ps, &b) != 0) {
			free(b.p);
			return -1;
		}
		run = ps->p;
	}
	if (b.p == NULL && sb_put(&b, "", 0) != 0)
		goto oom;
	*out = b.p;
	*out_len = b.len;
	return 0;
oom:
	free(b.p);
	oomp(ps);
	return -1;
}

static int is_digit(const struct parser *ps, const char *p)
{
	return p < ps->end && *p >= '0' && *p <= '9';
}

/* Walks the digits of a number from p (its first digit): *int_end after
 * its integer part, *is_float if a fraction or an exponent follows.
 * Returns its end. */
static const char *number_end(const struct parser *ps, const char *p,
			      const char **int_end, int *is_float)
{
	if (*p == '0')
		p++;
	else
		while (is_digit(ps, p))
			p++;
	*int_end = p;
	*is_float = 0;
	if (p < ps->end && *p == '.' && is_digit(ps, p + 1)) {
		*is_float = 1;
		p++;
		while (is_digit(ps, p))
			p++;
	}
	if (p < ps->end && (*p == 'e' || *p == 'E')) {
		const char *q = p + 1;
		if (q < ps->end && (*q == '+' || *q == '-'))
			q++;
		if (is_digit(ps, q)) {
			*is_float = 1;
			p = q;
			while (is_digit(ps, p))
				p++;
		}
	}
	return p;
}

/* v's text: the int s[0..e) as Python prints it (-0 is 0).  Returns 0
 * (v->str NULL when out of memory), or -1 with the error set. */
static int int_text(struct parser *ps, struct pj *v, const char *s,
		    const char *e)
{
	const char *d = s + (*s == '-');
	size_t nd = (size_t)(e - d);
	if (nd > PJ_INT_DIGITS_MAX)
		return failp(ps, "an integer of more than 4300 digits "
				 "(Python's limit for int to str)");
	/* -0 is the int 0. */
	if (nd == 1 && *d == '0')
		s = d;
	v->str = dup_n(s, (size_t)(e - s));
	v->len = (size_t)(e - s);
	return 0;
}

/* v's text: the float s[0..e) as Python's repr() prints it.  Returns 0
 * (v->str NULL when out of memory), or -1 with the error set. */
static int float_text(struct parser *ps, struct pj *v, const char *s,
		      const char *e)
{
	char *text = dup_n(s, (size_t)(e - s));
	if (text == NULL) {
		oomp(ps);
		return -1;
	}
	locale_t old = enter_c();
	double x = strtod(text, NULL);
	leave_c(old);
	free(text);
	if (!isfinite(x))
		return failp(ps, "a number too large for a float (Infinity: "
				 "LangBot's sender refuses NaN and Infinity)");
	char r[40];
	telespool__pj_float_repr(x, r);
	v->len = strlen(r);
	v->str = dup_n(r, v->len);
	return 0;
}

static struct pj *parse_number(struct parser *ps)
{
	const char *s = ps->p, *p = s, *int_end;
	int is_float;
	if (p < ps->end && *p == '-')
		p++;
	if (p < ps->end && *p == 'I') {
		failp(ps, "-Infinity is not JSON (LangBot's sender refuses "
			  "NaN and Infinity)");
		return NULL;
	}
	if (!is_digit(ps, p)) {
		failp(ps, "not a JSON value");
		return NULL;
	}
	p = number_end(ps, p, &int_end, &is_float);
	ps->p = p;
	struct pj *v = telespool__pj_new(PJ_NUM);
	if (v == NULL)
		return oomp(ps);
	v->is_float = is_float;
	if ((is_float ? float_text(ps, v, s, p)
		      : int_text(ps, v, s, int_end)) != 0) {
		free(v);
		return NULL;
	}
	if (v->str == NULL) {
		free(v);
		return oomp(ps);
	}
	return v;
}

static struct pj *parse_value(struct parser *ps, int depth);

/* Adds member m to obj as json.loads would: a repeated key keeps its first
 * place and takes the new value. */
static void add_member(struct pj *obj, struct pj *m)
{
	for (struct pj *o = obj->child; o != NULL; o = o->next) {
		if (o->key_hash == m->key_hash && o->key_len == m->key_len &&
		    memcmp(o->key, m->key, m->key_len) == 0) {
			telespool__pj_replace(obj, o, m);
			return;
		}
	}
	if (obj->n >= PARSE_MEMBERS_MAX) {
		telespool__pj_free(m);
		return;
	}
	telespool__pj_append(obj, m);
}

static struct pj *parse_container(struct parser *ps, int depth, int is_obj)
{
	struct pj *v = telespool__pj_new(is_obj ? PJ_OBJ : PJ_ARR);
	if (v == NULL)
		return oomp(ps);
	ps->p++;
	ws(ps);
	char close = is_obj ? '}' : ']';
	if (ps->p < ps->end && *ps->p == close) {
		ps->p++;
		return v;
	}
	for (;;) {
		char *key = NULL;
		size_t key_len = 0;
		ws(ps);
		if (is_obj) {
			if (ps->p >= ps->end || *ps->p != '"') {
				failp(ps, "an object key that is not a string");
				goto bad;
			}
			ps->p++;
			if (parse_string(ps, &key, &key_len) != 0)
				goto bad;
			ws(ps);
			if (ps->p >= ps->end || *ps->p != ':') {
				free(key);
				failp(ps, "':' missing after an object key");
				goto bad;
			}
			ps->p++;
		}
		struct pj *item = parse_value(ps, depth + 1);
		if (item == NULL) {
			free(key);
			goto bad;
		}
		if (is_obj) {
			item->key = key;
			item->key_len = key_len;
			item->key_hash = hash_key(key, key_len);
			add_member(v, item);
		} else if (v->n >= PARSE_MEMBERS_MAX) {
			telespool__pj_free(item);
		} else {
			telespool__pj_append(v, item);
		}
		ws(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == close) {
			ps->p++;
			return v;
		}
		failp(ps, is_obj ? "',' or '}' missing in an object"
				 : "',' or ']' missing in an array");
		goto bad;
	}
bad:
	telespool__pj_free(v);
	return NULL;
}

static int literal(struct parser *ps, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(ps->end - ps->p) >= n && memcmp(ps->p, word, n) == 0) {
		ps->p += n;
		return 1;
	}
	return 0;
}

static struct pj *parse_value(struct parser *ps, int depth)
{
	if (depth > PJ_PARSE_DEPTH_MAX) {
		failp(ps, "nested deeper than 512 levels");
		return NULL;
	}
	ws(ps);
	if (ps->p >= ps->end) {
		failp(ps, "the text ends before a value");
		return NULL;
	}
	switch (*ps->p) {
	case '{':
		return parse_container(ps, depth, 1);
	case '[':
		return parse_container(ps, depth, 0);
	case '"': {
		struct pj *v = telespool__pj_new(PJ_STR);
		if (v == NULL)
			return oomp(ps);
		ps->p++;
		if (parse_string(ps, &v->str, &v->len) != 0) {
			free(v);
			return NULL;
		}
		return v;
	}
	default:
		break;
	}
	enum pj_type lit = PJ_NUM;
	if (literal(ps, "null"))
		lit = PJ_NULL;
	else if (literal(ps, "true"))
		lit = PJ_TRUE;
	else if (literal(ps, "false"))
		lit = PJ_FALSE;
	if (lit != PJ_NUM) {
		struct pj *v = telespool__pj_new(lit);
		return v ? v : oomp(ps);
	}
	if (literal(ps, "NaN") || literal(ps, "Infinity")) {
		failp(ps, "NaN and Infinity are not JSON (LangBot's sender "
			  "refuses them: allow_nan=False)");
		return NULL;
	}
	return parse_number(ps);
}

struct pj *telespool__pj_parse(const char *text, size_t len, const char **why,
			       int *oom)
{
	struct parser ps = {text, text + len, NULL, 0};
	struct pj *v = parse_value(&ps, 0);
	if (v != NULL) {
		ws(&ps);
		if (ps.p != ps.end) {
			telespool__pj_free(v);
			v = NULL;
			failp(&ps, "text after the JSON value");
		}
	}
	*why = ps.why;
	*oom = ps.oom;
	return v;
}

/* ---- printing ------------------------------------------------------- */

static int put_str(struct sbuf *b, const char *s, size_t n)
{
	if (sb_put(b, "\"", 1) != 0)
		return -1;
	const char *run = s;
	for (size_t i = 0; i < n; i++) {
		/* Eight bytes at a time while none needs escaping. */
		uint64_t w;
		while (n - i >= 8 && (memcpy(&w, s + i, 8),
				      !telespool__json_needs_escape8(w)))
			i += 8;
		if (i >= n)
			break;
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		if (sb_put(b, run, (size_t)(s + i - run)) != 0)
			return -1;
		char esc[6];
		size_t k = telespool__json_escape(c, esc);
		if (sb_put(b, esc, k) != 0)
			return -1;
		run = s + i + 1;
	}
	if (sb_put(b, run, (size_t)(s + n - run)) != 0)
		return -1;
	return sb_put(b, "\"", 1);
}

static int put_value(struct sbuf *b, const struct pj *v)
{
	switch (v->type) {
	case PJ_NULL:
		return sb_put(b, "null", 4);
	case PJ_TRUE:
		return sb_put(b, "true", 4);
	case PJ_FALSE:
		return sb_put(b, "false", 5);
	case PJ_NUM:
		return sb_put(b, v->str, v->len);
	case PJ_STR:
		return v->out ? put_str(b, v->out, v->out_len)
			      : put_str(b, v->str, v->len);
	case PJ_ARR:
	case PJ_OBJ:
		break;
	}
	int obj = v->type == PJ_OBJ;
	if (sb_put(b, obj ? "{" : "[", 1) != 0)
		return -1;
	for (const struct pj *c = v->child; c != NULL; c = c->next) {
		if (c != v->child && sb_put(b, ",", 1) != 0)
			return -1;
		if (obj && (put_str(b, c->key ? c->key : "", c->key_len) != 0 ||
			    sb_put(b, ":", 1) != 0))
			return -1;
		if (put_value(b, c) != 0)
			return -1;
	}
	return sb_put(b, obj ? "}" : "]", 1);
}

char *telespool__pj_print(const struct pj *v, size_t *len)
{
	struct sbuf b = {malloc(1024), 0, 1024};
	if (b.p == NULL)
		return NULL;
	if (put_value(&b, v) != 0) {
		free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}
