/*
 * traceback.c - the traceback guard (traceback.h): what of an error
 * traceback is kept, from its structure.
 *
 * The error traceback (clean_error) goes through a guard first, which works
 * from the traceback's structure: each line is classified (header, frame,
 * source, caret, chain separator, exception, anything else); the structure
 * is kept, source lines go to the patterns in code mode (a bare variable
 * after "key=" is code), and every message is templated: quoted strings,
 * dicts, lists, tuples, XML, key=value values, URL paths, data: payloads
 * and long identifiers become "<kind:length>" placeholders, while the words
 * around them and the codes of error envelopes stay (a quoted URL keeps its
 * host, a quoted HTTP status line or reason phrase and a MySQL errno stay;
 * Chinese quotes quote; a name before "(<account id>)", a Discord name#0
 * and a log line's "NAME said:" are users).  A line quoted under a yaml or
 * jinja2 mark ("line 7, column 14") is the document: "<excerpt:N>".  The
 * patterns run on a message before its template too, so a wrongly paired
 * quote hides nothing.
 * Evasive spellings (zero-width characters, full-width forms, other
 * digits, look-alike letters, %XX) are undone first.
 *
 * Known gap: unquoted prose in an exception message ("ValueError: my
 * words") is kept unless strict mode is on.
 *
 * The patterns and the tables of key names and key prefixes are
 * redact.c's, the UTF-8 repair and the caps clean.c's: this file decides
 * which part of a line is structure, code or message, and what of a
 * message is a value; it keeps no list of secrets of its own.
 */
#include "traceback.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clean.h"
#include "redact.h"
#include "scan.h"

/* ---- strict mode: traceback structure only ----------------------------- */

enum line_kind {
	LK_NONE,
	LK_BLANK,
	LK_HEADER,
	LK_SEP,
	LK_FRAME,
	LK_SOURCE,
	LK_CARET,
	LK_REPEAT,
	LK_EXC,
	LK_EXCERPT
};

static int line_is(const char *p, size_t n, const char *lit)
{
	return n == strlen(lit) && memcmp(p, lit, n) == 0;
}

/* File "<path>", line <N>[, in <function>] */
static int is_frame(const char *p, size_t n)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t k, q;

	if (n < 6 || memcmp(p, "File \"", 6) != 0)
		return 0;
	for (k = 6; k + 8 <= n; k++)
		if (memcmp(p + k, "\", line ", 8) == 0)
			break;
	if (k + 8 > n)
		return 0;
	q = k + 8;
	k = run_end(u, n, q, is_digit);
	if (k == q)
		return 0;
	if (k == n)
		return 1; /* SyntaxError frames have no function */
	if (n - k < 6 || memcmp(p + k, ", in ", 5) != 0)
		return 0;
	/* a function name, or jinja2's "top-level template code" (other
	 * words with spaces may be anyone's) */
	if (line_is(p + k + 5, n - k - 5, "top-level template code"))
		return 1;
	for (k += 5, q = k; k < n; k++)
		if (!is_word(u[k]) && u[k] != '.' && u[k] != '<' && u[k] != '>')
			return 0;
	return k > q;
}

/* "pkg.mod.ErrorType" or "ErrorType: message": the name's length, or 0. */
static size_t exc_name(const char *p, size_t n, int *strong)
{
	static const char *const tails[] = {
	    "Error",   "Exception", "Warning",   "Exit",  "Interrupt",
	    "Timeout", "TimedOut",  "Iteration", "Group", "Failed",
	};
	const unsigned char *u = (const unsigned char *)p;
	size_t k = 0, last = 0, t, l;
	int dotted = 0;

	for (;;) {
		if (k >= n || !(is_alpha(u[k]) || u[k] == '_'))
			return 0;
		last = k;
		k = run_end(u, n, k, is_word);
		if (k < n && u[k] == '.') {
			/* pkg.mod.Name: modules are lower case ("Jane.Doe:"
			 * is a person) */
			dotted = !is_upper(u[last]) && dotted != -1 ? 1 : -1;
			k++;
			continue;
		}
		break;
	}
	if (dotted < 0)
		dotted = 0;
	if ((k < n && u[k] != ':') || !is_upper(u[last]))
		return 0;
	*strong = dotted;
	for (t = 0; t < sizeof tails / sizeof tails[0]; t++) {
		l = strlen(tails[t]);
		if (k - last >= l && memcmp(p + k - l, tails[t], l) == 0)
			*strong = 1;
	}
	return k;
}

/* "[Previous line repeated N more times]" says nothing but N. */
static int is_repeat(const char *p, size_t n)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t k;

	if (n < 25 || memcmp(p, "[Previous line repeated ", 24) != 0)
		return 0;
	k = run_end(u, n, 24, is_digit);
	return k > 24 && (line_is(p + k, n - k, " more times]") ||
			  line_is(p + k, n - k, " more time]"));
}

static int only_carets(const char *p, size_t n)
{
	size_t k;

	for (k = 0; k < n; k++)
		if (p[k] != '^' && p[k] != '~' && p[k] != ' ')
			return 0;
	return n > 0;
}

/*
 * One line of a traceback, classified.  Margins (indentation and an
 * ExceptionGroup's "  | ") are skipped; a source line is one indented
 * deeper than the frame above it, which a Cython or <frozen> frame
 * (no source) never has, so the message line after one stays a message.
 */
struct lstate {
	int prev;
	size_t frame_indent;
	int no_source;
	int mark;           /* the line before is a document's mark */
	size_t mark_indent; /* and its indentation */
};

/*
 * yaml's `in "<file>", line 14, column 22` and jinja2's `line 1`: the
 * lines under one, indented deeper, quote the document (user text).
 */
static int is_mark(const char *p, size_t n)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t k = n, d;

	if (!(n >= 6 && memcmp(p, "line ", 5) == 0) &&
	    !(n >= 4 && memcmp(p, "in ", 3) == 0))
		return 0;
	for (d = 0; d < 2; d++) {
		size_t e = k;

		while (k > 0 && is_digit(u[k - 1]))
			k--;
		if (k == e)
			return 0;
		if (k >= 5 && memcmp(p + k - 5, "line ", 5) == 0)
			return k == 5 ||
			       (k >= 7 && p[k - 6] == ' ' && p[k - 7] == ',');
		if (d == 1 || k < 9 || memcmp(p + k - 9, ", column ", 9) != 0)
			return 0;
		k -= 9;
	}
	return 0;
}

static int group_rule(const char *p, size_t n)
{
	size_t k, dashes = 0;

	for (k = 0; k < n; k++) {
		if (p[k] == '-')
			dashes++;
		else if (!(p[k] == '+' || p[k] == ' ' || p[k] == '.' ||
			   is_digit((unsigned char)p[k])))
			return 0;
	}
	return dashes >= 8; /* "+---------------- 1 ----------------" */
}

static int classify(const char *t, size_t rd, size_t end, struct lstate *st,
		    size_t *mp, size_t *cep, size_t *name)
{
	size_t m, ce, k;
	int kind, strong = 0;
	const char *c;

	for (m = rd;
	     m < end && (t[m] == ' ' || t[m] == '\t' || t[m] == '|' ||
			 (t[m] == '+' && m + 1 < end && t[m + 1] != '-'));
	     m++)
		;
	for (ce = end; ce > m && (t[ce - 1] == ' ' || t[ce - 1] == '\t'); ce--)
		;
	c = t + m;
	*mp = m;
	*cep = ce;
	*name = 0;
	if (ce == m)
		kind = LK_BLANK;
	else if (line_is(c, ce - m, "Traceback (most recent call last):") ||
		 line_is(
		     c, ce - m,
		     "Exception Group Traceback (most recent call last):") ||
		 line_is(c, ce - m, "Stack (most recent call last):"))
		kind = LK_HEADER;
	else if (line_is(c, ce - m,
			 "During handling of the above exception, another "
			 "exception occurred:") ||
		 line_is(c, ce - m,
			 "The above exception was the direct cause of the "
			 "following exception:") ||
		 group_rule(c, ce - m))
		kind = LK_SEP;
	else if (is_frame(c, ce - m)) {
		kind = LK_FRAME;
		st->frame_indent = m - rd;
		/* File "x.pyx", line 1, in f / File "<frozen ...>": no source */
		for (k = 6; k < ce - m && c[k] != '"'; k++)
			;
		st->no_source =
		    c[6] == '<' ||
		    (k >= 10 && (memcmp(c + k - 4, ".pyx", 4) == 0 ||
				 memcmp(c + k - 4, ".pxd", 4) == 0 ||
				 memcmp(c + k - 4, ".pxi", 4) == 0));
	} else if (st->prev == LK_FRAME && !st->no_source &&
		   m - rd > st->frame_indent)
		kind = LK_SOURCE;
	else if ((st->prev == LK_SOURCE || st->prev == LK_CARET ||
		  st->prev == LK_EXCERPT) &&
		 only_carets(c, ce - m))
		kind = LK_CARET;
	else if (st->mark && m - rd > st->mark_indent)
		kind = LK_EXCERPT;
	else if (is_repeat(c, ce - m))
		kind = LK_REPEAT;
	else if ((k = exc_name(c, ce - m, &strong)) != 0 &&
		 (strong || st->prev == LK_FRAME || st->prev == LK_SOURCE ||
		  st->prev == LK_CARET || st->prev == LK_REPEAT)) {
		kind = LK_EXC;
		*name = k;
	} else
		kind = LK_NONE;
	if (kind != LK_EXCERPT) {
		st->mark = (kind == LK_NONE || kind == LK_EXC) &&
			   is_mark(c + *name, ce - m - *name);
		st->mark_indent = m - rd;
	}
	st->prev = kind;
	return kind;
}

/*
 * Keeps, in place, the lines that carry no message: headers, frames, the
 * source line under a frame, caret lines, chain separators, and of each
 * exception line its type name.  Returns the new length.
 */
static size_t strict_filter(char *t, size_t n)
{
	struct lstate st = {LK_NONE, 0, 0, 0, 0};
	size_t rd = 0, wr = 0, end, m, ce, name, keep;
	int last_out = LK_BLANK, kind, st_excerpt = 0;
	const char *nl;

	while (rd < n) {
		nl = memchr(t + rd, '\n', n - rd);
		end = nl ? (size_t)(nl - t) : n;
		kind = classify(t, rd, end, &st, &m, &ce, &name);
		keep = kind == LK_EXC ? m + name : ce;
		/* the carets under an excerpt go with it */
		st_excerpt =
		    kind == LK_EXCERPT || (kind == LK_CARET && st_excerpt);
		if (kind == LK_BLANK) {
			if (wr > 0 && last_out != LK_BLANK && nl)
				t[wr++] = '\n';
			last_out = LK_BLANK;
		} else if (kind != LK_NONE && kind != LK_EXCERPT &&
			   !(kind == LK_CARET && st_excerpt)) {
			memmove(t + wr, t + rd, keep - rd);
			wr += keep - rd;
			if (nl)
				t[wr++] = '\n';
			last_out = kind;
		}
		rd = nl ? end + 1 : n;
	}
	while (wr > 0 && t[wr - 1] == '\n')
		wr--;
	return wr;
}

/* ---- the traceback guard: a message keeps its template ----------------- */

static unsigned hex_val(unsigned char c)
{
	return is_digit(c) ? (unsigned)(c - '0')
			   : (unsigned)((c | 0x20) - 'a' + 10);
}

/* %XX at s[rd] that escapes printable ASCII (not space nor %): 3 bytes
 * become *a.  Returns the bytes taken, or 0. */
static size_t percent_at(const unsigned char *s, size_t rd, size_t n,
			 unsigned char *a)
{
	unsigned v;

	if (!(s[rd] == '%' && rd + 2 < n && is_hex(s[rd + 1]) &&
	      is_hex(s[rd + 2])))
		return 0;
	v = hex_val(s[rd + 1]) << 4 | hex_val(s[rd + 2]);
	if (v <= 0x20 || v >= 0x7f || v == '%')
		return 0;
	*a = (unsigned char)v;
	return 3;
}

/* A full-width form of an ASCII letter, digit or @ : = / . _ - + % at
 * s[rd] (0xef): 3 bytes become *a.  Returns the bytes taken, or 0. */
static size_t fullwidth_at(const unsigned char *s, size_t rd, size_t n,
			   unsigned char *a)
{
	unsigned cp;
	unsigned char c;

	if (!(rd + 2 < n && (s[rd + 1] == 0xbc || s[rd + 1] == 0xbd)))
		return 0;
	cp =
	    0xf000u | ((unsigned)(s[rd + 1] & 0x3f) << 6) | (s[rd + 2] & 0x3fu);
	if (cp < 0xff01 || cp > 0xff5e)
		return 0;
	c = (unsigned char)(cp - 0xfee0);
	if (!is_alnum(c) && !in_set(c, "@:=/._-+%"))
		return 0;
	*a = c;
	return 3;
}

/* A character at s[rd] (not ASCII) that hides or spells ASCII: NBSP (a
 * space), zero-width and direction marks (nothing), full-width forms,
 * Arabic-Indic, Devanagari and mathematical digits.  Returns the bytes
 * taken (0: none here), with *a what they become (0: nothing). */
static size_t wide_at(const unsigned char *s, size_t rd, size_t n,
		      unsigned char *a)
{
	unsigned char c = s[rd];

	*a = 0;
	if (c == 0xc2 && rd + 1 < n && s[rd + 1] == 0xa0) {
		*a = ' '; /* NBSP */
		return 2;
	}
	if (c == 0xef && rd + 2 < n && s[rd + 1] == 0xbb && s[rd + 2] == 0xbf)
		return 3; /* U+FEFF */
	if (c == 0xef)
		return fullwidth_at(s, rd, n, a);
	if (c == 0xe2 && rd + 2 < n &&
	    ((s[rd + 1] == 0x80 &&
	      ((s[rd + 2] >= 0x8b && s[rd + 2] <= 0x8f) ||
	       (s[rd + 2] >= 0xaa && s[rd + 2] <= 0xae))) ||
	     (s[rd + 1] == 0x81 && s[rd + 2] >= 0xa0 && s[rd + 2] <= 0xa4)))
		return 3; /* U+200B..U+200F, U+202A..U+202E, U+2060.. */
	if (c == 0xd9 && rd + 1 < n && s[rd + 1] >= 0xa0 && s[rd + 1] <= 0xa9) {
		*a = (unsigned char)('0' + s[rd + 1] - 0xa0);
		return 2;
	}
	if (c == 0xe0 && rd + 2 < n && s[rd + 1] == 0xa5 && s[rd + 2] >= 0xa6 &&
	    s[rd + 2] <= 0xaf) {
		*a = (unsigned char)('0' + s[rd + 2] - 0xa6);
		return 3;
	}
	if (c == 0xf0 && rd + 3 < n && s[rd + 1] == 0x9d && s[rd + 2] == 0x9f &&
	    s[rd + 3] >= 0x8e) {
		*a = (unsigned char)('0' + (s[rd + 3] - 0x8e) % 10);
		return 4;
	}
	return 0;
}

/* A Cyrillic or Greek look-alike of an ASCII letter at s[rd], next to an
 * ASCII letter or digit (after_alnum: the byte written before it is one):
 * 2 bytes become *a.  Returns the bytes taken, or 0. */
static size_t lookalike_at(const unsigned char *s, size_t rd, size_t n,
			   int after_alnum, unsigned char *a)
{
	static const char cyr_d0[64] = {
	    /* U+0400..U+043F by their second byte, minus 0x80 */
	    [0x10] = 'A', [0x12] = 'B', [0x15] = 'E', [0x1a] = 'K',
	    [0x1c] = 'M', [0x1d] = 'H', [0x1e] = 'O', [0x20] = 'P',
	    [0x21] = 'C', [0x22] = 'T', [0x25] = 'X', [0x30] = 'a',
	    [0x35] = 'e', [0x3a] = 'k', [0x3e] = 'o',
	};
	unsigned char c = s[rd], d;
	char l;

	if (!((c == 0xd0 || c == 0xd1 || c == 0xce || c == 0xcf) && rd + 1 < n))
		return 0;
	d = s[rd + 1];
	if (c == 0xd0)
		l = d >= 0x80 && d <= 0xbf ? cyr_d0[d - 0x80] : 0;
	else if (c == 0xd1)
		l = d == 0x80   ? 'p'
		    : d == 0x81 ? 'c'
		    : d == 0x83 ? 'y'
		    : d == 0x85 ? 'x'
		    : d == 0x95 ? 's'
		    : d == 0x96 ? 'i'
		    : d == 0x98 ? 'j'
				: 0;
	else if (c == 0xce)
		l = d == 0xbf ? 'o' : d == 0xb1 ? 'a' : 0;
	else
		l = d == 0x81 ? 'p' : 0;
	if (!l || !(after_alnum || (rd + 2 < n && is_alnum(s[rd + 2]))))
		return 0;
	*a = (unsigned char)l;
	return 2;
}

/*
 * Undoes what hides a secret from the patterns: zero-width and direction
 * characters go; full-width letters, digits and @ : = / . _ - + % become
 * ASCII, as do other Unicode decimal digits (Arabic-Indic, Devanagari,
 * mathematical) and Cyrillic or Greek look-alikes next to an ASCII letter
 * or digit; %XX escapes of printable ASCII are decoded.  Everything only
 * shrinks, so it works in place.  Returns the new length.
 */
static size_t normalize(char *t, size_t n)
{
	unsigned char *s = (unsigned char *)t;
	size_t rd = 0, wr = 0, k;

	while (rd < n) {
		unsigned char c = s[rd], a = 0;

		if (c < 0x80)
			k = percent_at(s, rd, n, &a);
		else if ((k = wide_at(s, rd, n, &a)) == 0)
			k = lookalike_at(s, rd, n,
					 wr > 0 && is_alnum(s[wr - 1]), &a);
		if (k == 0) {
			s[wr++] = c;
			rd++;
			continue;
		}
		if (a)
			s[wr++] = a;
		rd += k;
	}
	return wr;
}

/* Keys whose scalar value a message keeps: error codes and types. */
static const char *const code_keys[] = {
    "code",       "errcode",     "err_code",   "error_code",    "retcode",
    "status",     "status_code", "statuscode", "errno",         "type",
    "error_type", "err_type",    "param",      "input_type",    "http_status",
    "errorcode",  "reason_code", "subcode",    "error_subcode", "error",
};

/* Keys that make a {...} an error envelope, walked instead of dropped. */
static const char *const envelope_keys[] = {
    "error",  "errors",  "code",       "errcode",     "err_code",  "retcode",
    "errmsg", "err_msg", "error_code", "status_code", "error_msg", "errorCode",
};

static int word_in_ci(const unsigned char *s, size_t len,
		      const char *const *set, size_t count)
{
	size_t k;

	for (k = 0; k < count; k++)
		if (strlen(set[k]) == len && ci_eq(s, set[k], len))
			return 1;
	return 0;
}

#define IN_CODE_KEYS(s, l)                                                     \
	word_in_ci(s, l, code_keys, sizeof code_keys / sizeof code_keys[0])

struct tpl {
	const unsigned char *s;
	size_t b, e; /* the message */
	size_t from; /* first byte not yet copied out */
	struct sbuf *o;
	const uint32_t *cl; /* closer of the bracket at b + k, or 0 */
	size_t val_at;      /* where the last key's value starts */
	int keep_val;       /* that key is an error code or type */
	const char *cred;   /* that key is a credential: its kind */
	size_t env_end;     /* inside an error envelope up to here */
	size_t skip_q;      /* the closing quote of b'{...}', walked through */
	int noq[3];         /* no more ' " ` after this point */
};

static size_t n_chars(const unsigned char *s, size_t b, size_t e)
{
	size_t k = 0;

	for (; b < e; b++)
		k += (s[b] & 0xc0) != 0x80;
	return k;
}

/* Replaces s[b..e) with "<kind:length>" (or "<kind>" if len is 0). */
static void tp_emit(struct tpl *t, size_t b, size_t e, const char *kind,
		    int with_len)
{
	char buf[64];
	size_t len = n_chars(t->s, b, e);
	int w;

	if (strcmp(kind, "str") == 0 && e - b >= 6 && t->s[b] >= 0x80)
		len = n_chars(t->s, b + 3, e - 3); /* “…” */
	else if (strcmp(kind, "str") == 0 && e - b >= 2)
		len = n_chars(t->s, b + 1, e - 1); /* without the quotes */

	sb_put(t->o, (const char *)t->s + t->from, b - t->from);
	if (!with_len)
		w = snprintf(buf, sizeof buf, "<%s>", kind);
	else if (len < 1000)
		w = snprintf(buf, sizeof buf, "<%s:%zu>", kind, len);
	else if (len < 100000)
		w = snprintf(buf, sizeof buf, "<%s:%zu.%zuk>", kind, len / 1000,
			     len % 1000 / 100);
	else
		w = snprintf(buf, sizeof buf, "<%s:%zuk>", kind, len / 1000);
	if (w > 0)
		sb_put(t->o, buf, (size_t)w);
	t->from = e;
}

/* Replaces s[b..e) with "<redacted:KIND>", as the patterns would. */
static void tp_red(struct tpl *t, size_t b, size_t e, const char *kind)
{
	sb_put(t->o, (const char *)t->s + t->from, b - t->from);
	sb_put(t->o, "<redacted:", 10);
	sb_put(t->o, kind, strlen(kind));
	sb_put(t->o, ">", 1);
	t->from = e;
}

/* "<str:42>", "<redacted:ip>", "<module>": the end of one at i, or 0. */
static size_t ph_end(const unsigned char *s, size_t i, size_t e)
{
	size_t k = i + 1;

	while (k < e && k - i < 24 &&
	       ((s[k] >= 'a' && s[k] <= 'z') || s[k] == '_'))
		k++;
	if (k == i + 1 || k >= e)
		return 0;
	if (s[k] == ':') {
		k++;
		while (k < e && k - i < 48 &&
		       ((s[k] >= 'a' && s[k] <= 'z') || is_digit(s[k]) ||
			s[k] == '_' || s[k] == '.'))
			k++;
	}
	return k < e && s[k] == '>' ? k + 1 : 0;
}

static int qidx(unsigned char q)
{
	return q == '\'' ? 0 : q == '"' ? 1 : 2;
}

/* The first 3-byte sequence q in s[0..n), or NULL. */
static const unsigned char *find3(const unsigned char *s, size_t n,
				  const char *q)
{
	const unsigned char *p;

	while (n >= 3 && (p = memchr(s, q[0], n - 2)) != NULL) {
		if (memcmp(p, q, 3) == 0)
			return p;
		n -= (size_t)(p - s) + 1;
		s = p + 1;
	}
	return NULL;
}

/* The closing quote of the quote at i, or 0 (then it is an apostrophe). */
/* The first q in s[k..e) not escaped by a backslash, or 0. */
static size_t find_quote(const unsigned char *s, size_t k, size_t e,
			 unsigned char q)
{
	const unsigned char *p;
	size_t b;

	while (k < e && (p = memchr(s + k, q, e - k)) != NULL) {
		k = (size_t)(p - s);
		for (b = k; b > 0 && s[b - 1] == '\\'; b--)
			;
		if ((k - b) % 2 == 0)
			return k;
		k++;
	}
	return 0;
}

static size_t close_quote(struct tpl *t, size_t i)
{
	const unsigned char *s = t->s;
	unsigned char q = s[i];
	size_t c;

	if (t->noq[qidx(q)])
		return 0;
	if (q == '\'' && i > t->b && is_alpha(s[i - 1]) && i + 1 < t->e &&
	    is_alpha(s[i + 1]))
		return 0; /* don't */
	c = find_quote(s, i + 1, t->e, q);
	if (!c)
		t->noq[qidx(q)] = 1;
	return c;
}

static int is_ident_str(const unsigned char *s, size_t b, size_t e, size_t max)
{
	size_t k, digits = 0;

	if (e <= b || e - b > max || !(is_alpha(s[b]) || s[b] == '_'))
		return 0;
	for (k = b; k < e; k++) {
		if (!(is_word(s[k]) || s[k] == '.' || s[k] == '-'))
			return 0;
		digits = is_digit(s[k]) ? digits + 1 : 0;
		if (digits >= 6)
			return 0;
	}
	return 1;
}

/* A short scalar: an identifier, a number, an HTTP status phrase. */
static int is_code_value(const unsigned char *s, size_t b, size_t e)
{
	size_t k;

	if (e <= b || e - b > 64)
		return 0;
	if (is_ident_str(s, b, e, 64))
		return 1;
	k = run_end(s, e, b, is_digit);
	if (k > b && k - b <= 10 && (k == e || (s[k] == ' ' && k - b == 3)))
		return k == e || is_ident_str(s, k + 1, e, 40) ||
		       run_end(s, e, k + 1, is_alpha) == e;
	if (b < e && s[b] == '-' && run_end(s, e, b + 1, is_digit) == e &&
	    e - b > 1)
		return 1; /* -1 */
	return 0;
}

/* "403 Forbidden", "429 Too Many Requests", "HTTP/1.1 403 Forbidden",
 * "Unauthorized" */
static int is_status_phrase(const unsigned char *s, size_t b, size_t e)
{
	static const char *const phrases[] = {
	    "Bad Request",
	    "Unauthorized",
	    "Forbidden",
	    "Not Found",
	    "Conflict",
	    "Too Many Requests",
	    "Payment Required",
	    "Request Timeout",
	    "Gone",
	    "Unprocessable Entity",
	    "Internal Server Error",
	    "Bad Gateway",
	    "Service Unavailable",
	    "Gateway Timeout",
	    "Not Implemented",
	    "Method Not Allowed",
	    "Payload Too Large",
	    "OK",
	    "Proxy Authentication Required",
	};
	size_t k;

	for (k = 0; k < sizeof phrases / sizeof phrases[0]; k++)
		if (e - b == strlen(phrases[k]) &&
		    memcmp(s + b, phrases[k], e - b) == 0)
			return 1;
	if (e - b > 9 && memcmp(s + b, "HTTP/", 5) == 0) {
		k = run_end(s, e, b + 5, is_digit);
		if (k < e && s[k] == '.')
			k = run_end(s, e, k + 1, is_digit);
		if (k > b + 5 && k < e && s[k] == ' ')
			b = k + 1;
	}
	if (e - b < 5 || e - b > 40 || run_end(s, e, b, is_digit) != b + 3 ||
	    s[b + 3] != ' ' || s[b] < '1' || s[b] > '5')
		return 0;
	for (k = b + 4; k < e; k++)
		if (!(is_alpha(s[k]) || s[k] == ' ' || s[k] == '-'))
			return 0;
	return 1;
}

/* Whether the {...} at b (closer c) has an error envelope key at its top. */
static int is_envelope(struct tpl *t, size_t b, size_t c)
{
	const unsigned char *s = t->s;
	size_t k = b + 1, q, cl;

	while (k < c) {
		unsigned char ch = s[k];

		if (ch == '{' || ch == '[' || ch == '(') {
			cl = t->cl[k - t->b];
			k = cl ? t->b + cl + 1 : k + 1;
			continue;
		}
		if (ch == '\'' || ch == '"') {
			const unsigned char *p =
			    memchr(s + k + 1, ch, c - k - 1);

			if (!p)
				return 0;
			q = (size_t)(p - s);
			/* a key: followed by ':' */
			{
				size_t a = q + 1;

				while (a < c && s[a] == ' ')
					a++;
				if (a < c && s[a] == ':' &&
				    word_in_ci(s + k + 1, q - k - 1,
					       envelope_keys,
					       sizeof envelope_keys /
						   sizeof envelope_keys[0]))
					return 1;
			}
			k = q + 1;
			continue;
		}
		k++;
	}
	return 0;
}

/* Hosts whose URL paths are documentation, not anyone's data. */
static const char *const doc_hosts[] = {
    "errors.pydantic.dev",  "sqlalche.me",           "docs.python.org",
    "platform.openai.com",  "docs.anthropic.com",    "docs.aiohttp.org",
    "www.python-httpx.org", "developer.mozilla.org", "docs.langbot.app",
};

static int url_ch(unsigned char c)
{
	return c > 0x20 && !in_set(c, "\"'`<>()[]{}|\\^");
}

/* scheme://host[:port] kept, the rest "<path:N>"; colon: after the scheme */
static size_t tp_url(struct tpl *t, size_t colon)
{
	const unsigned char *s = t->s;
	size_t h = colon + 3, he, e, k;

	he = h;
	while (he < t->e && url_ch(s[he]) && s[he] != '/' && s[he] != '?' &&
	       s[he] != '#')
		he++;
	e = he;
	while (e < t->e) {
		if (url_ch(s[e]))
			e++;
		else if (e > he && s[e] == '<' && (k = ph_end(s, e, t->e)) != 0)
			e = k; /* an id the patterns took out of the path */
		else
			break;
	}
	while (e > he && (s[e - 1] == '.' || s[e - 1] == ',' ||
			  s[e - 1] == ':' || s[e - 1] == ';'))
		e--;
	if (e - he <= 1)
		return e;
	for (k = 0; k < sizeof doc_hosts / sizeof doc_hosts[0]; k++)
		if (he - h == strlen(doc_hosts[k]) &&
		    memcmp(s + h, doc_hosts[k], he - h) == 0)
			return e;
	tp_emit(t, he, e, "path", 1);
	return e;
}

/* s[b..c) is one URL, nothing else: the colon after its scheme, or 0. */
static size_t quoted_url(const unsigned char *s, size_t b, size_t c)
{
	size_t k = run_end(s, c, b, is_alpha), colon = k, p;

	if (k == b || k - b > 10 || k + 3 >= c ||
	    !has_prefix(s, c, k, "://", 3))
		return 0;
	for (k += 3; k < c;)
		if (url_ch(s[k]))
			k++;
		else if (s[k] == '<' && (p = ph_end(s, k, c)) != 0)
			k = p;
		else
			return 0;
	return colon;
}

/* The value of a credential key: through its quote, or to , ; ) } EOL. */
static size_t tp_cred(struct tpl *t, size_t i, unsigned char sep,
		      const char *kind)
{
	const unsigned char *s = t->s;
	size_t ve, c;

	if ((s[i] == '\'' || s[i] == '"' || s[i] == '`') &&
	    (c = close_quote(t, i)) != 0) {
		if (c > i + 1)
			tp_red(t, i + 1, c, kind);
		return c + 1;
	}
	ve = i;
	while (ve < t->e && !value_term(s[ve]))
		ve++;
	if (telespool__is_code_word(s + i, ve - i))
		return ve;
	if (sep == ':')
		ve = multiword_end(s, t->e, ve);
	if (ve > i)
		tp_red(t, i, ve, kind);
	return ve;
}

static const char *cred_kind(const unsigned char *s, size_t kb, size_t ke,
			     size_t b)
{
	const char *kind;

	if (ke == kb)
		return NULL;
	kind =
	    telespool__key_kind(s, kb, ke, kb == b || !is_keyname(s[kb - 1]));
	if (!kind || is_camel(s, kb, ke))
		return NULL;
	if (strcmp(kind, "password") == 0 || strcmp(kind, "secret") == 0 ||
	    strcmp(kind, "token") == 0 || strcmp(kind, "api_key") == 0 ||
	    strcmp(kind, "private_key") == 0 ||
	    strcmp(kind, "authorization") == 0)
		return kind;
	return NULL;
}

/* After a key ending at ke, with its separator at p: note where its value
 * starts and what it is. */
static void tp_key(struct tpl *t, size_t kb, size_t ke, size_t p)
{
	const unsigned char *s = t->s;
	size_t v = p + 1;

	while (v < t->e && s[v] == ' ')
		v++;
	t->val_at = v;
	t->keep_val = IN_CODE_KEYS(s + kb, ke - kb);
	t->cred = cred_kind(s, kb, ke, t->b);
}

/*
 * Whether the [...] or (...) at b (closer c) holds values: it opens with a
 * quote or a bracket, or lists items (the first a number, or none of
 * them "key:" or "key=");
 * "[Errno 111]", "[type=missing, input_value=...]", "(url: ..., status:
 * 403)" are walked instead.
 */
static int is_collection(const unsigned char *s, size_t b, size_t c)
{
	size_t k = b + 1;

	if (c - b > 256)
		return 1;
	while (k < c && s[k] == ' ')
		k++;
	if (k < c && (s[k] == '\'' || s[k] == '"' || s[k] == '{' ||
		      s[k] == '[' || s[k] == '('))
		return 1;
	if (!memchr(s + b, ',', c - b))
		return 0; /* "(415) 555-0100" is left to the patterns */
	return (k < c && (is_digit(s[k]) || s[k] == '-')) ||
	       (!memchr(s + b, ':', c - b) && !memchr(s + b, '=', c - b));
}

static int has_close_tag(const unsigned char *s, size_t k, size_t e)
{
	const unsigned char *p;

	while (k < e && (p = memchr(s + k, '<', e - k)) != NULL) {
		k = (size_t)(p - s) + 1;
		if (k < e && s[k] == '/')
			return 1;
	}
	return 0;
}

/* The start of the name that ends at i (letters, digits, CJK, . _ -),
 * not before what was copied out already; i if none. */
static size_t name_start(const struct tpl *t, size_t i)
{
	const unsigned char *s = t->s;
	size_t k = i;

	while (k > t->from && (s[k - 1] >= 0x80 || is_word(s[k - 1]) ||
			       s[k - 1] == '.' || s[k - 1] == '-'))
		k--;
	while (k < i && (s[k] == '.' || s[k] == '-'))
		k++;
	return k;
}

/* The message opens with (errno, 'text'): pymysql, MySQLdb, aiomysql. */
static int mysql_errno(const struct tpl *t, size_t i, size_t c)
{
	const unsigned char *s = t->s;
	size_t k = i, d;

	while (k > t->b && (s[k - 1] == ' ' || s[k - 1] == ':'))
		k--;
	if (k != t->b)
		return 0;
	d = run_end(s, c, i + 1, is_digit);
	if (!(d > i + 1 && d - i - 1 <= 5 && has_prefix(s, c, d, ", ", 2)))
		return 0;
	return ((s[d + 2] == '\'' || s[d + 2] == '"') &&
		s[c - 1] == s[d + 2]) ||
	       (has_prefix(s, c, d + 2, "<str:", 5) &&
		ph_end(s, d + 2, c + 1) == c);
}

/* At the value of a credential key: the value goes whole (tp_cred). */
static size_t tp_cred_value(struct tpl *t, size_t i)
{
	const unsigned char *s = t->s;
	const char *kind = t->cred;
	size_t sep = i;

	while (sep > t->b && s[sep - 1] == ' ')
		sep--;
	t->cred = NULL;
	return tp_cred(t, i, sep > t->b ? s[sep - 1] : '=', kind);
}

/* At '<': a placeholder is walked over, an XML fragment goes. */
static size_t tp_angle(struct tpl *t, size_t i)
{
	const unsigned char *s = t->s;
	size_t e = t->e, k, w;

	if ((k = ph_end(s, i, e)) != 0)
		return k;
	if (has_prefix(s, e, i, "<?xml", 5) ||
	    has_prefix(s, e, i, "<![CDATA[", 9) ||
	    (i + 1 < e && is_alpha(s[i + 1]) &&
	     (w = run_end(s, e, i + 1, is_keych)) < e && s[w] == '>' &&
	     has_close_tag(s, w, e))) {
		for (k = e; k > i && s[k - 1] != '>'; k--)
			;
		if (k <= i)
			k = e; /* cut before its first '>' */
		tp_emit(t, i, k, "xml", 1);
		return k;
	}
	return i + 1;
}

/* At '#': a Discord user name, name#0 or name#1234, is a user. */
static size_t tp_hash(struct tpl *t, size_t i)
{
	const unsigned char *s = t->s;
	size_t e = t->e, k, w;

	if (!(i + 1 < e && (k = name_start(t, i)) < i &&
	      ((s[i + 1] == '0' && (i + 2 == e || !is_word(s[i + 2]))) ||
	       (run_end(s, e, i + 1, is_digit) == i + 5 &&
		(i + 5 == e || !is_word(s[i + 5]))))))
		return i + 1;
	w = s[i + 1] == '0' && (i + 2 == e || !is_digit(s[i + 2])) ? i + 2
								   : i + 5;
	tp_red(t, k, w, "user");
	return w;
}

/* At 0xe2 or 0xe3: “…” ‘…’ 「…」 『…』 quote as ' and " do. */
static size_t tp_cjk_quote(struct tpl *t, size_t i)
{
	static const char *const cjk_q[][2] = {
	    {"\xe2\x80\x9c", "\xe2\x80\x9d"},
	    {"\xe2\x80\x98", "\xe2\x80\x99"},
	    {"\xe3\x80\x8c", "\xe3\x80\x8d"},
	    {"\xe3\x80\x8e", "\xe3\x80\x8f"},
	};
	const unsigned char *s = t->s, *p = NULL;
	size_t e = t->e, k;

	for (k = 0; k < 4 && !p; k++)
		if (has_prefix(s, e, i, cjk_q[k][0], 3))
			p = find3(s + i + 3, e - i - 3, cjk_q[k][1]);
	if (!p)
		return i + 1;
	tp_emit(t, i, (size_t)(p - s) + 3, "str", 1);
	return (size_t)(p - s) + 3;
}

/* At ' " or `: a key ('name':), a value that stays, a URL that keeps its
 * host, JSON in a bytes literal, or a string that goes. */
static size_t tp_quote(struct tpl *t, size_t i, int at_val)
{
	const unsigned char *s = t->s;
	size_t e = t->e, c = close_quote(t, i), k;

	if (!c)
		return i + 1;
	k = c + 1;
	while (k < e && s[k] == ' ')
		k++;
	if (k < e && s[k] == ':' && !has_prefix(s, e, k, "://", 3) &&
	    is_ident_str(s, i + 1, c, 40) && !at_val) {
		tp_key(t, i + 1, c, k);
		return k + 1;
	}
	if ((at_val && t->keep_val && is_code_value(s, i + 1, c)) ||
	    is_status_phrase(s, i + 1, c) || c == i + 1 ||
	    (is_ident_str(s, i + 1, c, 40) &&
	     has_prefix(s, e, c + 1, " object", 7)))
		return c + 1; /* 'NoneType' object has no ... */
	if ((k = quoted_url(s, i + 1, c)) != 0) {
		/* 'https://host/...': the host stays */
		t->skip_q = c;
		return tp_url(t, k);
	}
	if (s[i + 1] == '{' || s[i + 1] == '[') {
		t->skip_q = c; /* b'{"code": ...}': walk the JSON */
		return i + 1;
	}
	tp_emit(t, i, c + 1, "str", 1);
	return c + 1;
}

/* At '{' closed at c: an error envelope is walked, a dict or JSON goes. */
static size_t tp_brace(struct tpl *t, size_t i, size_t c)
{
	const unsigned char *s = t->s;
	size_t k;

	if (c == i + 1 || i < t->env_end || is_envelope(t, i, c)) {
		if (c > t->env_end)
			t->env_end = c;
		return i + 1;
	}
	k = i + 1;
	while (k < c && s[k] == ' ')
		k++;
	tp_emit(t, i, c + 1, s[k] == '"' ? "json" : "dict", 1);
	return c + 1;
}

/* At '(' closed at c: a display name before an id, a MySQL errno, a
 * tuple of values, or a call to walk. */
static size_t tp_paren(struct tpl *t, size_t i, size_t c, int at_val)
{
	const unsigned char *s = t->s;
	size_t k;

	/* nickname(<redacted:id>): a display name */
	if (c == i + 14 && memcmp(s + i + 1, "<redacted:id>", 13) == 0 &&
	    (k = name_start(t, i)) < i) {
		tp_red(t, k, i, "user");
		return i + 1;
	}
	/* pymysql's (1406, "Data too long ..."): the errno stays, the text
	 * is a string */
	if (mysql_errno(t, i, c))
		return i + 1;
	/* ( after a name is a call or a repr: walk it */
	if ((i == t->b || !is_word(s[i - 1])) && c > i + 1 &&
	    (is_collection(s, i, c) || (at_val && !t->keep_val))) {
		tp_emit(t, i, c + 1, "tuple", 1);
		return c + 1;
	}
	return i + 1;
}

/* At { [ or (: by its closer, if it has one. */
static size_t tp_bracket(struct tpl *t, size_t i, int at_val)
{
	unsigned char ch = t->s[i];
	size_t c = t->cl[i - t->b];

	if (!c)
		return i + 1;
	c += t->b;
	if (ch == '{')
		return tp_brace(t, i, c);
	if (ch == '[') {
		if (!is_collection(t->s, i, c))
			return i + 1;
		tp_emit(t, i, c + 1, "list", 1);
		return c + 1;
	}
	return tp_paren(t, i, c, at_val);
}

/* A word s[i..w) where a key's value starts: codes, code words, short
 * numbers and calls stay; an account id is left to the patterns; the rest
 * (base64, paths: up to a delimiter) goes. */
static size_t tp_word_value(struct tpl *t, size_t i, size_t w)
{
	const unsigned char *s = t->s;
	size_t e = t->e, k = w;

	while (k < e && !value_term(s[k]) && s[k] != '(')
		k++;
	if (t->keep_val || telespool__is_code_word(s + i, k - i) ||
	    (run_end(s, k, i, is_digit) == k && k - i <= 5) ||
	    (k < e && s[k] == '('))
		return k;
	if (run_end(s, k, i, is_digit) == k && k - i >= 6)
		return k; /* the patterns make it an id */
	tp_emit(t, i, k, "val", 1);
	return k;
}

/* A word s[i..w) that is no key nor value: a key cut short, or a long
 * identifier (ids, tokens, hashes) goes; a JWT is the patterns'. */
static size_t tp_word_alone(struct tpl *t, size_t i, size_t w)
{
	const unsigned char *s = t->s;
	size_t e = t->e, digits = 0, letters = 0, k;
	int secret = 0;
	const char *kind;

	/* a JWT's dotted parts are the patterns' to take */
	if (w - i >= 10 && has_prefix(s, w, i, "eyJ", 3)) {
		while (w < e && (is_keych(s[w]) || s[w] == '.'))
			w++;
		return w;
	}
	for (k = i; k < w; k++) {
		digits += is_digit(s[k]);
		letters += is_alpha(s[k]);
	}
	kind = telespool__key_prefix(s, i, w, &secret);
	if (kind) { /* a key cut short */
		tp_red(t, i, w, kind);
		return w;
	}
	if (!secret && !(w - i > 2 && s[i] == '0' && s[i + 1] == 'x') &&
	    ((w - i >= 20 && digits && letters) ||
	     (w - i >= 32 && digits && !letters) ||
	     (w - i >= 10 && ci_eq(s + i, "wxid_", 5))))
		tp_emit(t, i, w, "id", 0);
	return w;
}

/* At the start of a word: a URL, a data: payload, a key, a key's value,
 * or a word alone. */
static size_t tp_word(struct tpl *t, size_t i, int at_val)
{
	const unsigned char *s = t->s;
	size_t e = t->e, w = run_end(s, e, i, is_keych), k;

	/* scheme://, data: */
	if (w + 2 < e && s[w] == ':' && s[w + 1] == '/' && s[w + 2] == '/' &&
	    is_alpha(s[i]))
		return tp_url(t, w);
	if (w - i == 4 && ci_eq(s + i, "data", 4) && w < e && s[w] == ':') {
		k = w + 1;
		while (k < e && !value_term(s[k]))
			k++;
		if (k - w > 12) {
			sb_put(t->o, (const char *)s + t->from,
			       w + 1 - t->from);
			t->from = w + 1;
			tp_emit(t, w + 1, k, "data", 1);
			return k;
		}
	}
	/* key= and code-key: */
	if (!at_val && w < e &&
	    ((s[w] == '=' && !(w + 1 < e && s[w + 1] == '=')) ||
	     (s[w] == ':' &&
	      (IN_CODE_KEYS(s + i, w - i) || cred_kind(s, i, w, t->b))))) {
		tp_key(t, i, w, w);
		return w + 1;
	}
	if (at_val)
		return tp_word_value(t, i, w);
	return tp_word_alone(t, i, w);
}

/*
 * Templates one message (s[b..e), one line): words stay, values go.  See
 * the comment at the top of the file for what becomes what.
 */
static void template_msg(struct tpl *t)
{
	const unsigned char *s = t->s;
	size_t i = t->b, e = t->e;

	t->from = t->b;
	t->val_at = SIZE_MAX;
	t->env_end = 0;
	t->skip_q = SIZE_MAX;
	t->noq[0] = t->noq[1] = t->noq[2] = 0;
	while (i < e) {
		unsigned char ch = s[i];
		int at_val = i == t->val_at;

		if (i == t->skip_q)
			i++;
		else if (at_val && t->cred)
			i = tp_cred_value(t, i);
		else if (ch == '<')
			i = tp_angle(t, i);
		else if (ch == '#')
			i = tp_hash(t, i);
		else if (ch == 0xe2 || ch == 0xe3)
			i = tp_cjk_quote(t, i);
		else if (ch == '\'' || ch == '"' || ch == '`')
			i = tp_quote(t, i, at_val);
		else if (ch == '{' || ch == '[' || ch == '(')
			i = tp_bracket(t, i, at_val);
		else if (is_keych(ch) && (i == t->b || !is_keych(s[i - 1])))
			i = tp_word(t, i, at_val);
		else
			i++;
	}
	sb_put(t->o, (const char *)s + t->from, e - t->from);
	t->from = e;
}

/*
 * For each bracket opener at line offset k, cl[k] is the offset of its
 * closer (or 0); quoted strings are skipped.  One pass with a stack.
 */
static void match_brackets(const unsigned char *s, size_t n, uint32_t *cl,
			   uint32_t *stk)
{
	size_t k, top = 0;
	int noq[3] = {0, 0, 0};

	for (k = 0; k < n; k++) {
		unsigned char c = s[k];

		cl[k] = 0;
		if (c == '{' || c == '[' || c == '(') {
			stk[top++] = (uint32_t)k;
		} else if (c == '}' || c == ']' || c == ')') {
			unsigned char want = c == '}'   ? '{'
					     : c == ']' ? '['
							: '(';

			/* unwind to the matching opener, if any is open */
			size_t d = top;

			while (d > 0 && s[stk[d - 1]] != want)
				d--;
			if (d > 0) {
				cl[stk[d - 1]] = (uint32_t)k;
				top = d - 1;
			}
		} else if ((c == '\'' || c == '"') && !noq[qidx(c)] &&
			   !(c == '\'' && k > 0 && is_alpha(s[k - 1]) &&
			     k + 1 < n && is_alpha(s[k + 1]))) {
			size_t q = find_quote(s, k + 1, n, c);

			if (!q) {
				noq[qidx(c)] = 1;
				continue;
			}
			while (k < q)
				cl[++k] = 0;
		}
	}
}

/* Copies a message line with quotes escaped twice or more made plain
 * quotes, so that reprs of escaped JSON parse like JSON (a quote escaped
 * once is part of the string around it). */
static size_t unescape_quotes(const unsigned char *s, size_t n,
			      unsigned char *d)
{
	size_t k = 0, o = 0, j;

	while (k < n) {
		if (s[k] == '\\') {
			j = k;
			while (j < n && s[j] == '\\')
				j++;
			if (j < n && j - k >= 2 &&
			    (s[j] == '"' || s[j] == '\'')) {
				d[o++] = s[j];
				k = j + 1;
				continue;
			}
			memcpy(d + o, s + k, j - k);
			o += j - k;
			k = j;
			continue;
		}
		d[o++] = s[k++];
	}
	return o;
}

/* The length of the longest line of t[0..n). */
static size_t longest_line(const unsigned char *t, size_t n)
{
	const unsigned char *nl;
	size_t rd, end, maxl = 0;

	for (rd = 0; rd < n; rd = end + 1) {
		nl = memchr(t + rd, '\n', n - rd);
		end = nl ? (size_t)(nl - t) : n;
		if (end - rd > maxl)
			maxl = end - rd;
	}
	return maxl;
}

/* What the guard templates messages with, kept from line to line. */
struct gwork {
	struct sbuf pre;    /* a message after the patterns */
	struct sbuf ln;     /* the same with its quotes unescaped */
	uint32_t *cl, *stk; /* match_brackets()' tables */
	size_t maxl;        /* the line length they have room for */
	struct tpl tp;      /* a key's state carries over a line's end */
};

/* Gives g room for a line of len bytes.  Returns 0, or -1 when out of
 * memory or over 4 GB. */
static int gw_room(struct gwork *g, size_t len)
{
	uint32_t *np;

	if (len >= UINT32_MAX || sb_reserve(&g->ln, len) != 0 ||
	    !(np = realloc(g->cl, (len + 1) * sizeof *g->cl)))
		return -1;
	g->cl = np;
	if (!(np = realloc(g->stk, (len + 1) * sizeof *g->stk)))
		return -1;
	g->stk = np;
	g->maxl = len;
	return 0;
}

static void gw_free(struct gwork *g)
{
	free(g->pre.p);
	free(g->ln.p);
	free(g->cl);
	free(g->stk);
}

/* Appends the message t[mb..end) to mid, templated: the patterns first,
 * on the raw message (a quote paired wrongly must not hide a 'password':
 * '...'), then the template.  Returns 0, or -1 when out of memory. */
static int template_line(struct gwork *g, const unsigned char *t, size_t mb,
			 size_t end, struct sbuf *mid)
{
	size_t ll;

	g->pre.len = 0;
	telespool__redact((const char *)t + mb, end - mb, &g->pre, 0);
	if (g->pre.len > g->maxl && gw_room(g, g->pre.len) != 0)
		return -1;
	if (g->pre.oom)
		return -1;
	ll = unescape_quotes((const unsigned char *)g->pre.p, g->pre.len,
			     (unsigned char *)g->ln.p);
	match_brackets((unsigned char *)g->ln.p, ll, g->cl, g->stk);
	g->tp.s = (const unsigned char *)g->ln.p;
	g->tp.b = 0;
	g->tp.e = ll;
	g->tp.o = mid;
	g->tp.cl = g->cl;
	template_msg(&g->tp);
	return 0;
}

/* Appends the line t[rd..end) to mid with the document's text at
 * t[m..ce) as "<excerpt:N>": user text, whatever it says. */
static void excerpt_line(const unsigned char *t, size_t rd, size_t m, size_t ce,
			 size_t end, struct sbuf *mid)
{
	char buf[32];
	int w = snprintf(buf, sizeof buf, "<excerpt:%zu>", n_chars(t, m, ce));

	sb_put(mid, (const char *)t + rd, m - rd);
	sb_put(mid, buf, (size_t)w);
	sb_put(mid, (const char *)t + ce, end - ce);
}

/*
 * The guard: line by line, the traceback's structure (frames, source
 * lines, headers) is kept and every message is templated (if tmpl), then
 * the patterns run over it all, source lines in code mode.  Appends to out.
 */
static void guard(const unsigned char *t, size_t n, int tmpl, struct sbuf *out)
{
	struct lstate st = {LK_NONE, 0, 0, 0, 0};
	struct sbuf mid = {NULL, 0, 0, 0};
	struct gwork g;
	size_t rd, end, m, ce, name, seg = 0;
	int kind, code, seg_code = 1, failed = 0;
	const unsigned char *nl;

	memset(&g, 0, sizeof g);
	if (tmpl) {
		/* the longest line bounds the bracket tables */
		size_t maxl = longest_line(t, n);

		if (maxl >= UINT32_MAX)
			tmpl = 0; /* 4 GB on one line: the patterns only */
		else
			failed = gw_room(&g, maxl);
	}
	if (failed || sb_reserve(&mid, n + n / 8 + 16) != 0) {
		out->oom = 1;
		goto done;
	}
	for (rd = 0; rd < n; rd = end + 1) {
		nl = memchr(t + rd, '\n', n - rd);
		end = nl ? (size_t)(nl - t) : n;
		kind = classify((const char *)t, rd, end, &st, &m, &ce, &name);
		code = kind != LK_EXC && kind != LK_NONE;
		if (kind == LK_BLANK)
			code = seg_code;
		if (code != seg_code) {
			telespool__redact(mid.p + seg, mid.len - seg, out,
					  seg_code);
			seg = mid.len;
			seg_code = code;
		}
		if (kind == LK_EXCERPT && ph_end(t, m, ce) != ce) {
			excerpt_line(t, rd, m, ce, end, &mid);
		} else if (code || !tmpl) {
			sb_put(&mid, (const char *)t + rd, end - rd);
		} else {
			size_t mb = kind == LK_EXC ? m + name : m;

			sb_put(&mid, (const char *)t + rd, mb - rd);
			if (template_line(&g, t, mb, end, &mid) != 0)
				mid.oom = 1;
		}
		if (nl)
			sb_put(&mid, "\n", 1);
		if (mid.oom) {
			out->oom = 1;
			goto done;
		}
	}
	telespool__redact(mid.p + seg, mid.len - seg, out, seg_code);
done:
	free(mid.p);
	gw_free(&g);
}

/* ---- the two entry points ---------------------------------------------- */

static char *clean_free_text(const char *s, size_t len, size_t max_bytes,
			     int strict, int guarded, size_t *out_len)
{
	struct sbuf out = {NULL, 0, 0, 0};
	char *a, *p;
	size_t an;

	if (out_len)
		*out_len = 0;
	if (!s)
		len = 0;
	if (len > (SIZE_MAX - 1) / 3)
		return NULL;
	a = malloc(len * 3 + 1);
	if (!a)
		return NULL;
	an = telespool__clean_utf8(a, (const unsigned char *)s, len, 1);
	if (guarded)
		an = normalize(a, an);
	if (strict)
		an = strict_filter(a, an);
	if (sb_reserve(&out, an + an / 16 + 32) == 0)
		guard((const unsigned char *)a, an, guarded && !strict, &out);
	free(a);
	if (sb_failed(&out))
		return NULL;
	out.len = telespool__fit(out.p, out.len, max_bytes);
	out.p[out.len] = '\0';
	/* a 1 MB traceback shrinks to 48 KB: give the rest back */
	if (out.cap > 2 * (out.len + 1) && (p = realloc(out.p, out.len + 1)))
		out.p = p;
	if (out_len)
		*out_len = out.len;
	return out.p;
}

char *telespool__clean_text(const char *s, size_t len, size_t max_bytes,
			    int strict, size_t *out_len)
{
	return clean_free_text(s, len, max_bytes, strict, 0, out_len);
}

char *telespool__clean_error(const char *s, size_t len, size_t max_bytes,
			     int strict, size_t *out_len)
{
	return clean_free_text(s, len, max_bytes, strict, 1, out_len);
}
