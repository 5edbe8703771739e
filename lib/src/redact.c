/*
 * redact.c - cleaning and redaction of the strings an event carries.
 *
 * A string goes through three linear passes: clean (valid UTF-8, no NULs or
 * control characters), redact (each finding becomes "<redacted:KIND>"), then
 * cap (names) or head+tail truncation (free text).  Redaction runs before
 * the cap so that a secret cut in half by the cap can never be half-kept.
 *
 * There is no regex library: clean_name is on LangBot's hot path, and a
 * backtracking engine would make adversarial input quadratic.  The redactor
 * walks the text once and tries a scanner only where a finding can start (a
 * word start, a digit run start, or one of + - @ : = / \).  Every scanner
 * either matches, and the walk jumps past the match, or gives up after a
 * bounded look; the two that may give up after an unbounded look (JWT, URL
 * authority) remember how far they got.  So megabytes of digits, '@', "sk-"
 * or "-----BEGIN" cost the same per byte as a traceback.  Copying is lazy:
 * plain text is copied out only when the next finding or the end is reached,
 * which lets the e-mail scanner reach back to the start of a local part it
 * has already walked over without un-writing anything.
 *
 * Decisions worth knowing:
 *  - Loopback and unspecified addresses (127.0.0.0/8, 0.0.0.0, ::1, ::) and
 *    255.x.x.x netmasks are kept: they identify no one, and they tell the
 *    reader that LangBot failed to reach a service on its own machine.
 *    Private ranges (10/8, 192.168/16, ...) are redacted like any address.
 *  - /root/ is kept (not a person's name).  /home/NAME, /Users/NAME and
 *    C:\Users\NAME lose only NAME, so the path still says which file failed.
 *  - Digits survive in UUIDs, hex strings, versions, decimals, identifiers
 *    and "line N"; only a free-standing run of 6+ digits is an account id
 *    (QQ, WeChat, Telegram; a leading '-' of a Telegram chat id goes too).
 *    LangBot's own session names "person_<id>" and "group_<id>" lose the id.
 *  - Under a credential, identity or content key (password=, "token": ,
 *    'nickname': , text=...) a quoted value is redacted whole and an unquoted
 *    one up to white space.  Values that are plainly code (None, a call, a
 *    variable of the same name, a type annotation) are kept, so the source
 *    line under a frame stays readable.
 *  - A lone \r is dropped like any other control character; \r\n becomes \n.
 *
 *  - After a colon a password or secret runs to the line's end, a comma or
 *    a semicolon ("password: two words"); after '=' to white space.
 *  - A number after a "code", "status" or "errno" key is an error code
 *    (Lark 230013), and CamelCase before ':' is an exception name
 *    (InvalidToken: Not Found), not a key.
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
 * Known gaps: unquoted prose in an exception message ("ValueError: my
 * words") is kept unless strict mode is on; the patterns alone (clean_text)
 * do not undo evasive spellings.
 */
#include "redact.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The truncation marker; its %zu is the number of bytes left out. */
#define MARKER_FMT "\n... [telespool: %zu bytes truncated] ...\n"

/* ---- growable output buffer ------------------------------------------ */

struct sbuf {
	char *p;
	size_t len;
	size_t cap; /* always leaves room for a NUL after len */
	int oom;
};

static int sb_reserve(struct sbuf *b, size_t extra)
{
	size_t need, ncap;
	char *np;

	if (b->oom)
		return -1;
	if (extra > SIZE_MAX - 1 - b->len) {
		b->oom = 1;
		return -1;
	}
	need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 64;
	while (ncap < need)
		ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
	np = realloc(b->p, ncap);
	if (!np) {
		b->oom = 1;
		return -1;
	}
	b->p = np;
	b->cap = ncap;
	return 0;
}

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
	if (n == 0 || sb_reserve(b, n) != 0)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

/* ---- byte classes (ASCII only: no locale, no <ctype.h>) --------------- */

static int is_digit(unsigned char c)
{
	return (unsigned)(c - '0') < 10u;
}

static int is_alpha(unsigned char c)
{
	return (unsigned)((c | 0x20) - 'a') < 26u;
}

static int is_upper(unsigned char c)
{
	return (unsigned)(c - 'A') < 26u;
}

static int is_alnum(unsigned char c)
{
	return is_alpha(c) || is_digit(c);
}

static int is_word(unsigned char c)
{
	return is_alnum(c) || c == '_';
}

static int is_hex(unsigned char c)
{
	return is_digit(c) || (unsigned)((c | 0x20) - 'a') < 6u;
}

/* base64url, the alphabet of most tokens */
static int is_keych(unsigned char c)
{
	return is_word(c) || c == '-';
}

/* OpenAI echoes keys masked with '*': the mask is part of the key */
static int is_keystar(unsigned char c)
{
	return is_keych(c) || c == '*';
}

static int is_bearer_ch(unsigned char c)
{
	return is_keystar(c) || c == '.' || c == '~' || c == '+' || c == '/' ||
	       c == '=' || c == ':';
}

static unsigned char lower(unsigned char c)
{
	return is_upper(c) ? (unsigned char)(c | 0x20) : c;
}

/* Whether c is one of the bytes of the literal set (never NUL). */
static int in_set(unsigned char c, const char *set)
{
	return c != 0 && strchr(set, c) != NULL;
}

/* Case-insensitive compare of n bytes with a lower-case literal. */
static int ci_eq(const unsigned char *s, const char *lit, size_t n)
{
	size_t k;

	for (k = 0; k < n; k++)
		if (lower(s[k]) != (unsigned char)lit[k])
			return 0;
	return 1;
}

/* Case-insensitive compare of two byte strings of length n. */
static int ci_same(const unsigned char *a, const unsigned char *b, size_t n)
{
	size_t k;

	for (k = 0; k < n; k++)
		if (lower(a[k]) != lower(b[k]))
			return 0;
	return 1;
}

static int has_prefix(const unsigned char *s, size_t n, size_t p,
		      const char *lit, size_t l)
{
	return n - p >= l && memcmp(s + p, lit, l) == 0;
}

/* End of the run of bytes that pred accepts, starting at p. */
static size_t run_end(const unsigned char *s, size_t n, size_t p,
		      int (*pred)(unsigned char))
{
	while (p < n && pred(s[p]))
		p++;
	return p;
}

/* Same, but never looks at more than max bytes. */
static size_t run_end_max(const unsigned char *s, size_t n, size_t p,
			  int (*pred)(unsigned char), size_t max)
{
	size_t lim = n - p > max ? p + max : n;

	while (p < lim && pred(s[p]))
		p++;
	return p;
}

static int has_digit(const unsigned char *s, size_t b, size_t e)
{
	for (; b < e; b++)
		if (is_digit(s[b]) || s[b] == '*')
			return 1;
	return 0;
}

/* ---- pass 1: clean ----------------------------------------------------- */

/*
 * Copies s to dst (room for 3*n bytes: one bad byte becomes a 3-byte U+FFFD)
 * as valid UTF-8 without NULs and control characters; text keeps \n and \t.
 * A malformed sequence becomes one U+FFFD per maximal subpart, as Python's
 * decode(errors="replace") does, so LangBot and the spool agree.
 */
/* Non-zero when one of the 8 bytes in w is below 0x20 or at or above 0x7f:
 * not plain printable ASCII.  (Bit tricks: a byte below 0x20 borrows when
 * 0x20 is subtracted; a byte at or above 0x7f carries into its top bit when
 * 0x01 is added, or has it set already.) */
static uint64_t not_printable8(uint64_t w)
{
	const uint64_t ones = 0x0101010101010101ULL, high = ones * 0x80;
	return ((w - ones * 0x20) | (w + ones) | w) & high;
}

static size_t clean_bytes(char *dst, const unsigned char *s, size_t n, int text)
{
	size_t i = 0, o = 0, k, need;
	unsigned char c, lo, hi;

	while (i < n) {
		/* Runs of plain printable ASCII, the common case, 8 bytes at a
		 * time. */
		uint64_t w;
		while (i + 8 <= n &&
		       (memcpy(&w, s + i, 8), !not_printable8(w))) {
			memcpy(dst + o, s + i, 8);
			o += 8;
			i += 8;
		}
		if (i >= n)
			break;
		c = s[i];
		if (c < 0x80) {
			if ((c >= 0x20 && c != 0x7f) ||
			    (text && (c == '\n' || c == '\t')))
				dst[o++] = (char)c;
			/* \r and the rest go; CRLF keeps its \n */
			i++;
			continue;
		}
		lo = 0x80;
		hi = 0xbf;
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			if (c == 0xe0)
				lo = 0xa0; /* overlong */
			else if (c == 0xed)
				hi = 0x9f; /* UTF-16 surrogates */
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			if (c == 0xf0)
				lo = 0x90; /* overlong */
			else if (c == 0xf4)
				hi = 0x8f; /* above U+10FFFF */
		} else {
			need =
			    0; /* stray continuation, C0/C1 overlong, F5..FF */
		}
		for (k = 1; need && k <= need && i + k < n; k++) {
			if (s[i + k] < lo || s[i + k] > hi)
				break;
			lo = 0x80;
			hi = 0xbf;
		}
		if (!need || k <= need) {
			memcpy(dst + o, "\xef\xbf\xbd", 3);
			o += 3;
			i += k > 1 ? k : 1;
			continue;
		}
		/* C1 controls U+0080..U+009F are controls too */
		if (!(c == 0xc2 && s[i + 1] <= 0x9f)) {
			memcpy(dst + o, s + i, k);
			o += k;
		}
		i += k;
	}
	return o;
}

/* Byte length of the white-space character at p (n bytes left), or 0. */
static size_t ws_at(const unsigned char *p, size_t n)
{
	if (n >= 1 && (p[0] == ' ' || p[0] == '\t' || p[0] == '\n'))
		return 1;
	if (n >= 2 && p[0] == 0xc2 && p[1] == 0xa0) /* NBSP */
		return 2;
	if (n < 3)
		return 0;
	if (p[0] == 0xe2 && p[1] == 0x80 &&
	    (p[2] <= 0x8b || p[2] == 0xa8 || p[2] == 0xa9 || p[2] == 0xaf))
		return 3; /* U+2000..U+200B, U+2028, U+2029, U+202F */
	if ((p[0] == 0xe2 && p[1] == 0x81 && p[2] == 0x9f) || /* U+205F */
	    (p[0] == 0xe3 && p[1] == 0x80 && p[2] == 0x80) || /* U+3000 */
	    (p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf) || /* U+FEFF */
	    (p[0] == 0xe1 && p[1] == 0x9a && p[2] == 0x80))   /* U+1680 */
		return 3;
	return 0;
}

/* Byte length of the white-space character that ends p[0..n), or 0. */
static size_t ws_before(const unsigned char *p, size_t n)
{
	if (n >= 1 && ws_at(p + n - 1, 1) == 1)
		return 1;
	if (n >= 2 && ws_at(p + n - 2, 2) == 2)
		return 2;
	if (n >= 3 && ws_at(p + n - 3, 3) == 3)
		return 3;
	return 0;
}

/* ---- pass 2: redact ---------------------------------------------------- */

struct red {
	const unsigned char *s;
	size_t n;
	size_t from; /* first input byte not yet copied out */
	struct sbuf *out;
	size_t jwt_fail; /* no JWT starts before this offset */
	size_t auth_end; /* end of the last URL authority scanned */
	size_t auth_at;  /* its last '@', or SIZE_MAX */
	int code;        /* source lines: a bare identifier value is code */
};

/* Replaces s[b..e) with a placeholder; returns e, where the walk goes on. */
static size_t emit(struct red *r, size_t b, size_t e, const char *kind)
{
	struct sbuf *o = r->out;

	if (b < r->from)
		b = r->from;
	sb_put(o, (const char *)r->s + r->from, b - r->from);
	sb_put(o, "<redacted:", 10);
	sb_put(o, kind, strlen(kind));
	sb_put(o, ">", 1);
	r->from = e;
	return e;
}

/* -- private key blocks -- */

static int pem_body_ch(unsigned char c)
{
	/* base64, the RFC 1421 headers, and the \n of a key quoted in a repr */
	return is_alnum(c) || c == '+' || c == '/' || c == '=' || c == ' ' ||
	       c == '\t' || c == '\n' || c == '\\' || c == ':' || c == ',' ||
	       c == '-' || c == '.';
}

/* "<LABEL>-----" at p: the offset after it, or 0; *priv if a private key. */
static size_t pem_label(const unsigned char *s, size_t n, size_t p, int *priv)
{
	size_t q = p, k;

	while (q < n && q - p <= 48 &&
	       (is_upper(s[q]) || is_digit(s[q]) || s[q] == ' '))
		q++;
	if (!has_prefix(s, n, q, "-----", 5))
		return 0;
	*priv = 0;
	for (k = p; k + 11 <= q; k++)
		if (memcmp(s + k, "PRIVATE KEY", 11) == 0)
			*priv = 1;
	return q + 5;
}

/* Whether a stretch of text after a key body still looks like key data. */
static int looks_like_key(const unsigned char *s, size_t b, size_t e)
{
	size_t run = 0;

	for (; b < e; b++) {
		if (s[b] == '=')
			return 1;
		run = s[b] == ' ' || s[b] == '\t' ? 0 : run + 1;
		if (run >= 16)
			return 1;
	}
	return 0;
}

static size_t try_private_key(struct red *r, size_t i)
{
	const unsigned char *s = r->s;
	size_t n = r->n, j, k, e, nl = SIZE_MAX;
	int priv = 0, p2;

	if (!has_prefix(s, n, i, "-----BEGIN ", 11))
		return 0;
	j = pem_label(s, n, i + 11, &priv);
	if (!j || !priv)
		return 0; /* certificates and public keys are not secrets */
	for (k = j; k < n; k++) {
		if (s[k] == '-' && has_prefix(s, n, k, "-----END ", 9) &&
		    (e = pem_label(s, n, k + 9, &p2)) != 0)
			return emit(r, i, e, "private_key");
		if (!pem_body_ch(s[k]))
			break;
		if (s[k] == '\n')
			nl = k;
	}
	/* No END (the block was cut): stop at the line where key data ends. */
	if (k < n && nl != SIZE_MAX && !looks_like_key(s, nl + 1, k))
		k = nl;
	while (k > j && s[k - 1] == '\n')
		k--; /* the line break is not part of the key */
	return emit(r, i, k, "private_key");
}

/* -- scheme://user:pass@host -- */

static int auth_term(unsigned char c)
{
	return in_set(c, " \t\n/?#\"'`<>\\[]{}|^");
}

static size_t try_url_auth(struct red *r, size_t i)
{
	const unsigned char *s = r->s;
	size_t p = i + 3, k, at = SIZE_MAX;

	if (i == 0 || !is_alnum(s[i - 1]))
		return 0;
	/* One scan serves every "://" up to the authority's end. */
	if (p >= r->auth_end) {
		for (k = p; k < r->n && !auth_term(s[k]); k++)
			if (s[k] == '@')
				at =
				    k; /* the last '@': passwords may hold one */
		r->auth_end = k;
		r->auth_at = at;
	}
	if (r->auth_at == SIZE_MAX || r->auth_at <= p)
		return 0;
	return emit(r, p, r->auth_at, "url_password");
}

/* -- e-mail -- */

static int is_local(unsigned char c)
{
	return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' ||
	       c == '-';
}

static int is_label(unsigned char c)
{
	return is_alnum(c) || c == '-';
}

static size_t try_email(struct red *r, size_t i)
{
	const unsigned char *s = r->s;
	size_t n = r->n, b = i, e = i + 1, dot = 0, l;

	while (b > r->from && i - b < 64 && is_local(s[b - 1]))
		b--;
	while (b < i && !is_word(s[b]))
		b++;
	if (b == i)
		return 0;
	for (;;) {
		l = run_end_max(s, n, e, is_label, 64);
		if (l == e)
			break;
		e = l;
		if (e - i > 255 || e + 1 >= n || s[e] != '.' ||
		    !is_alnum(s[e + 1]))
			break;
		dot = e++;
	}
	if (!dot || e - dot < 3)
		return 0;
	for (l = dot + 1; l < e; l++)
		if (!is_alpha(s[l]))
			return 0; /* "user@1.2.3.4", "pkg@1.0.2": not a mail domain */
	return emit(r, b, e, "email");
}

/* Python names that follow '@' in a source line: decorators, not people. */
static const char *const decorators[] = {
    "property",
    "staticmethod",
    "classmethod",
    "dataclass",
    "abstractmethod",
    "override",
    "overload",
    "wraps",
    "cache",
    "lru_cache",
    "cached_property",
    "contextmanager",
    "asynccontextmanager",
    "pytest",
    "app",
    "router",
};

static int word_in(const unsigned char *s, size_t len, const char *const *set,
		   size_t count);

/* "@alice_tg": a Telegram (or other platform) handle in a message. */
static size_t try_mention(struct red *r, size_t i)
{
	const unsigned char *s = r->s;
	size_t n = r->n, e;

	if ((i > 0 && is_local(s[i - 1])) || i + 1 >= n ||
	    !(is_alpha(s[i + 1]) || s[i + 1] == '_'))
		return 0;
	e = run_end_max(s, n, i + 1, is_word, 33);
	if (e - (i + 1) < 3 || e - (i + 1) > 32)
		return 0;
	/* "@types/node", "@app.route(...)", "@pytest.fixture" are code */
	if (e < n && (s[e] == '/' || s[e] == '(' || s[e] == '.' || s[e] == '@'))
		return 0;
	if (word_in(s + i + 1, e - (i + 1), decorators,
		    sizeof decorators / sizeof decorators[0]))
		return 0;
	return emit(r, i + 1, e, "user");
}

/*
 * A database account: for user "langbot" (PostgreSQL), user 'root'@'host'
 * (MySQL).  Only a quoted name right after the word "user" is taken.
 */
static size_t try_user_quoted(struct red *r, size_t i)
{
	const unsigned char *s = r->s;
	size_t n = r->n, b, e;
	unsigned char q;

	if (n - i < 7 || !ci_eq(s + i, "user", 4) || s[i + 4] != ' ')
		return 0;
	q = s[i + 5];
	if (q != '"' && q != '\'' && q != '`')
		return 0;
	b = i + 6;
	for (e = b; e < n && e - b <= 64 && s[e] != q && s[e] != '\n'; e++)
		;
	if (e >= n || s[e] != q || e == b || e - b > 64)
		return 0;
	return emit(r, b, e, "user");
}

/* -- key = value -- */

#define KW_SUFFIX 0 /* the key ends with the word: OPENAI_API_KEY= */
#define KW_EXACT  1 /* the key is the word */
#define KW_QUERY  2 /* the key is the word, in a URL query (?key=, &sig=) */

struct keyword {
	const char *word; /* lower case */
	unsigned char len;
	unsigned char how;
	const char *kind;
};

#define KW(w, how, kind)                                                       \
	{                                                                      \
		w, sizeof(w) - 1, how, kind                                    \
	}

static const struct keyword keywords[] = {
    KW("password", KW_SUFFIX, "password"),
    KW("passwd", KW_SUFFIX, "password"),
    KW("passphrase", KW_SUFFIX, "password"),
    KW("pwd", KW_SUFFIX, "password"),
    KW("secret", KW_SUFFIX, "secret"),
    KW("secret_key", KW_SUFFIX, "secret"),
    KW("secretkey", KW_SUFFIX, "secret"),
    KW("cookie", KW_SUFFIX, "secret"),
    KW("signature", KW_SUFFIX, "secret"),
    KW("sig", KW_QUERY, "secret"),
    KW("sign", KW_QUERY, "secret"),
    KW("token", KW_SUFFIX, "token"),
    KW("api_key", KW_SUFFIX, "api_key"),
    KW("apikey", KW_SUFFIX, "api_key"),
    KW("api-key", KW_SUFFIX, "api_key"),
    KW("access_key", KW_SUFFIX, "api_key"),
    KW("accesskey", KW_SUFFIX, "api_key"),
    KW("accountkey", KW_SUFFIX, "api_key"),
    KW("private_key", KW_SUFFIX, "private_key"),
    KW("key", KW_QUERY, "api_key"),
    KW("authorization", KW_SUFFIX, "authorization"),
    /* who: platform account names and ids in event reprs */
    KW("username", KW_SUFFIX, "user"),
    KW("user_name", KW_SUFFIX, "user"),
    KW("nickname", KW_SUFFIX, "user"),
    KW("first_name", KW_SUFFIX, "user"),
    KW("last_name", KW_SUFFIX, "user"),
    KW("full_name", KW_SUFFIX, "user"),
    KW("display_name", KW_SUFFIX, "user"),
    KW("card", KW_EXACT, "user"),
    KW("user", KW_EXACT, "user"),
    KW("user_id", KW_SUFFIX, "id"),
    KW("userid", KW_SUFFIX, "id"),
    KW("chat_id", KW_SUFFIX, "id"),
    KW("chatid", KW_SUFFIX, "id"),
    KW("group_id", KW_SUFFIX, "id"),
    KW("groupid", KW_SUFFIX, "id"),
    KW("sender_id", KW_SUFFIX, "id"),
    KW("senderid", KW_SUFFIX, "id"),
    KW("open_id", KW_SUFFIX, "id"),
    KW("openid", KW_SUFFIX, "id"),
    KW("union_id", KW_SUFFIX, "id"),
    KW("unionid", KW_SUFFIX, "id"),
    KW("staff_id", KW_SUFFIX, "id"),
    KW("staffid", KW_SUFFIX, "id"),
    KW("fromusername", KW_SUFFIX, "id"),
    KW("tousername", KW_SUFFIX, "id"),
    KW("corpid", KW_SUFFIX, "id"),
    KW("wxid", KW_SUFFIX, "id"),
    KW("fileid", KW_SUFFIX, "secret"), /* QQ media: fileid=, rkey= */
    KW("file_id", KW_SUFFIX, "secret"),
    KW("rkey", KW_SUFFIX, "secret"),
    KW("phone", KW_SUFFIX, "phone"),
    KW("mobile", KW_SUFFIX, "phone"),
    /* what: message content in event and request reprs */
    KW("text", KW_EXACT, "text"),
    KW("content", KW_EXACT, "text"),
    KW("raw_message", KW_EXACT, "text"),
    KW("caption", KW_EXACT, "text"),
    KW("prompt", KW_EXACT, "text"),
};

/* Words that, as a whole unquoted value, are code and not a secret. */
static const char *const code_words[] = {
    "None",      "True",  "False", "null",  "true", "false", "nil",
    "undefined", "NULL",  "none",  "await", "self", "cls",   "lambda",
    "not",       "yield", "YES",   "NO", /* MySQL: "(using password: YES)" */
};

/* Type names after "key:" in a signature or a dataclass. */
static const char *const type_words[] = {
    "str", "bytes",    "int",   "float",     "bool", "dict", "list",
    "Any", "Optional", "Union", "SecretStr", "Dict", "List", "typing",
};

static int word_in(const unsigned char *s, size_t len, const char *const *set,
		   size_t count)
{
	size_t k;

	for (k = 0; k < count; k++)
		if (strlen(set[k]) == len && memcmp(s, set[k], len) == 0)
			return 1;
	return 0;
}

static int is_keyname(unsigned char c)
{
	return is_keych(c);
}

static int is_dotted(unsigned char c)
{
	return is_word(c) || c == '.';
}

static int value_term(unsigned char c)
{
	return in_set(c, " \t\n,;&)}]\"'`<>#");
}

/* An Authorization value runs to the end of the header, spaces and all. */
static int auth_value_term(unsigned char c)
{
	return in_set(c, "\n\"'`,;})]<>");
}

/* The keyword that the key s[kb..ke) names, or NULL. */
static const struct keyword *match_key(const unsigned char *s, size_t kb,
				       size_t ke, int whole)
{
	size_t k, len = ke - kb;
	unsigned char last = lower(s[ke - 1]);
	const struct keyword *kw;

	for (k = 0; k < sizeof keywords / sizeof keywords[0]; k++) {
		kw = &keywords[k];
		if ((unsigned char)kw->word[kw->len - 1] != last ||
		    kw->len > len)
			continue;
		if (kw->how != KW_SUFFIX && (kw->len != len || !whole))
			continue;
		if (kw->how == KW_QUERY &&
		    (kb == 0 || (s[kb - 1] != '?' && s[kb - 1] != '&')))
			continue;
		if (ci_eq(s + ke - kw->len, kw->word, kw->len))
			return kw;
	}
	return NULL;
}

/* InvalidToken, ApiKeyError: a class name (two humps), not a key. */
static int is_camel(const unsigned char *s, size_t kb, size_t ke)
{
	size_t k;

	if (!is_upper(s[kb]))
		return 0;
	for (k = kb + 1; k + 1 < ke; k++)
		if (s[k] >= 'a' && s[k] <= 'z' && is_upper(s[k + 1]))
			return 1;
	return 0;
}

/* Where a value that may hold spaces ends: the line's end, , or ; */
static size_t multiword_end(const unsigned char *s, size_t n, size_t ve)
{
	size_t k = ve;

	while (k < n && s[k] != '\n' && s[k] != ',' && s[k] != ';' &&
	       s[k] != '"' && s[k] != '\'' && s[k] != ')' && s[k] != '}')
		k++;
	while (k > ve && (s[k - 1] == ' ' || s[k - 1] == '\t'))
		k--;
	return k;
}

/* f"Bearer {token}" in a source line: a template, not a value. */
static int is_template(const unsigned char *s, size_t b, size_t e)
{
	return e - b >= 2 && s[b] == '{' && s[e - 1] == '}' &&
	       run_end(s, e - 1, b + 1, is_dotted) == e - 1;
}

static size_t try_assign(struct red *r, size_t i)
{
	const unsigned char *s = r->s;
	size_t n = r->n, k = i, ke, kb, v, vb, ve, w;
	const struct keyword *kw;
	const char *kind;
	unsigned char quote = 0;
	int esc = 0, whole;

	/* the key: skip "  ", a closing quote (maybe escaped), then a name */
	while (k > 0 && i - k < 8 && (s[k - 1] == ' ' || s[k - 1] == '\t'))
		k--;
	if (k > 0 && (s[k - 1] == '"' || s[k - 1] == '\'')) {
		k--;
		if (k > 0 && s[k - 1] == '\\')
			k--;
	}
	ke = k;
	while (k > 0 && ke - k < 40 && is_keyname(s[k - 1]))
		k--;
	kb = k;
	if (kb == ke)
		return 0;
	whole = kb == 0 || !is_keyname(s[kb - 1]);
	kw = match_key(s, kb, ke, whole);
	if (!kw)
		return 0;
	kind = kw->kind;
	/* "telegram.error.InvalidToken: Not Found" names an exception */
	if (s[i] == ':' && is_camel(s, kb, ke))
		return 0;

	/* the value */
	v = i + 1;
	if (v < n && s[v] == '=')
		v++; /* "==", ":=" */
	while (v < n && (s[v] == ' ' || s[v] == '\t'))
		v++;
	if (v >= n || s[v] == '\n')
		return 0;
	if (v + 1 < n && (s[v + 1] == '"' || s[v + 1] == '\'') && s[v] &&
	    strchr("bBrRuUfF", s[v]) != NULL)
		v++; /* b'...', f"..." */
	if (s[v] == '"' || s[v] == '\'' || s[v] == '`') {
		quote = s[v];
		vb = v + 1;
	} else if (s[v] == '\\' && v + 1 < n &&
		   (s[v + 1] == '"' || s[v + 1] == '\'')) {
		quote = s[v + 1]; /* JSON inside a quoted string: \"...\" */
		esc = 1;
		vb = v + 2;
	} else {
		vb = v;
	}

	if (quote) {
		for (ve = vb; ve < n && s[ve] != '\n'; ve++) {
			if (s[ve] == '\\' && ve + 1 < n) {
				if (esc && s[ve + 1] == quote)
					break;
				if (s[ve + 1] != '\n')
					ve++;
				continue;
			}
			if (!esc && s[ve] == quote)
				break;
		}
	} else {
		if (s[vb] == '[' || s[vb] == '{' || s[vb] == '(')
			return 0; /* a structure: its own keys are looked at */
		w = run_end(s, n, vb, is_dotted);
		if (w > vb && !is_digit(s[vb])) {
			size_t c = w; /* last dotted component */

			if (w < n && (s[w] == '(' || s[w] == '['))
				return 0; /* a call or a subscript */
			if ((w == n || value_term(s[w])) &&
			    (word_in(s + vb, w - vb, code_words,
				     sizeof code_words /
					 sizeof code_words[0]) ||
			     (s[i] == ':' &&
			      word_in(s + vb, w - vb, type_words,
				      sizeof type_words /
					  sizeof type_words[0]))))
				return 0;
			while (c > vb && s[c - 1] != '.')
				c--;
			if ((w == n || value_term(s[w])) && w - c == ke - kb &&
			    ci_same(s + c, s + kb, w - c))
				return 0; /* password=password, key=self.key */
			/* Plain(text=reply_text) on a source line: a variable */
			if (r->code && (w == n || value_term(s[w])))
				return 0;
		}
		ve = vb;
		if (strcmp(kind, "authorization") == 0) {
			while (ve < n && !auth_value_term(s[ve]))
				ve++;
			while (ve > vb &&
			       (s[ve - 1] == ' ' || s[ve - 1] == '\t'))
				ve--;
		} else {
			while (ve < n && !value_term(s[ve]))
				ve++;
			/* "password: two words": a password runs to the line's
			 * end (or a , ;) after a colon */
			if (s[i] == ':' && !r->code &&
			    (strcmp(kind, "password") == 0 ||
			     strcmp(kind, "secret") == 0))
				ve = multiword_end(s, n, ve);
		}
	}
	if (strcmp(kind, "authorization") == 0) {
		/* keep the scheme: "Bearer <redacted:bearer>" */
		size_t a = run_end_max(s, ve, vb, is_alpha, 17);

		if (a > vb && a - vb <= 16 && a < ve && s[a] == ' ') {
			if (a - vb == 6 && ci_eq(s + vb, "bearer", 6))
				kind = "bearer";
			while (a < ve && s[a] == ' ')
				a++;
			vb = a;
		}
	}
	if (ve <= vb || is_template(s, vb, ve))
		return 0;
	return emit(r, vb, ve, kind);
}

/* -- Bearer tokens -- */

static size_t try_bearer(struct red *r, size_t i)
{
	const unsigned char *s = r->s;
	size_t n = r->n, p, e;

	if (n - i < 8 || !ci_eq(s + i, "bearer", 6) ||
	    (s[i + 6] != ' ' && s[i + 6] != '\t'))
		return 0;
	for (p = i + 6; p < n && p - i < 12 && (s[p] == ' ' || s[p] == '\t');
	     p++)
		;
	e = run_end(s, n, p, is_bearer_ch);
	/* "Bearer token was rejected" is prose; a token has digits or length */
	if (e - p < 8 || (e - p < 20 && !has_digit(s, p, e)))
		return 0;
	return emit(r, p, e, "bearer");
}

/* -- tokens recognised by their prefix -- */

#define SET_KEY   0 /* [A-Za-z0-9_-] */
#define SET_STAR  1 /* [A-Za-z0-9_*-]: may be masked */
#define SET_ALNUM 2 /* [A-Za-z0-9] */
#define SET_WORD  3 /* [A-Za-z0-9_] */

struct prefix {
	const char *pre;
	unsigned char len;
	unsigned char min; /* bytes after the prefix */
	unsigned char set;
	unsigned char digit; /* shorter than 32 needs a digit (or '*') */
	const char *kind;
};

#define PFX(p, min, set, digit, kind)                                          \
	{                                                                      \
		p, sizeof(p) - 1, min, set, digit, kind                        \
	}

static const struct prefix prefixes[] = {
    /* OpenAI (incl. sk-proj-), Anthropic sk-ant-, DeepSeek, Moonshot, ... */
    PFX("sk-", 16, SET_STAR, 1, "api_key"),
    PFX("sk_", 16, SET_STAR, 1, "api_key"),
    PFX("AIza", 30, SET_KEY, 0, "api_key"),
    PFX("hf_", 30, SET_ALNUM, 0, "api_key"),
    PFX("gsk_", 40, SET_ALNUM, 0, "api_key"),
    PFX("xai-", 40, SET_ALNUM, 0, "api_key"),
    PFX("app-", 20, SET_ALNUM, 1, "api_key"), /* Dify */
    PFX("ghp_", 30, SET_ALNUM, 0, "github_token"),
    PFX("gho_", 30, SET_ALNUM, 0, "github_token"),
    PFX("ghu_", 30, SET_ALNUM, 0, "github_token"),
    PFX("ghs_", 30, SET_ALNUM, 0, "github_token"),
    PFX("ghr_", 30, SET_ALNUM, 0, "github_token"),
    PFX("github_pat_", 20, SET_WORD, 0, "github_token"),
    PFX("glpat-", 20, SET_KEY, 0, "gitlab_token"),
    PFX("gldt-", 20, SET_KEY, 0, "gitlab_token"),
    PFX("glrt-", 20, SET_KEY, 0, "gitlab_token"),
    PFX("glptt-", 20, SET_KEY, 0, "gitlab_token"),
    PFX("xoxa-", 10, SET_KEY, 0, "slack_token"),
    PFX("xoxb-", 10, SET_KEY, 0, "slack_token"),
    PFX("xoxe-", 10, SET_KEY, 0, "slack_token"),
    PFX("xoxp-", 10, SET_KEY, 0, "slack_token"),
    PFX("xoxr-", 10, SET_KEY, 0, "slack_token"),
    PFX("xoxs-", 10, SET_KEY, 0, "slack_token"),
    PFX("xapp-", 10, SET_KEY, 0, "slack_token"),
};

static int (*const set_pred[])(unsigned char) = {
    is_keych,
    is_keystar,
    is_alnum,
    is_word,
};

static size_t try_prefixes(struct red *r, size_t i)
{
	const unsigned char *s = r->s;
	size_t n = r->n, k, b, e, len;
	const struct prefix *p;

	for (k = 0; k < sizeof prefixes / sizeof prefixes[0]; k++) {
		p = &prefixes[k];
		if ((unsigned char)p->pre[0] != s[i] ||
		    !has_prefix(s, n, i, p->pre, p->len))
			continue;
		b = i + p->len;
		e = run_end(s, n, b, set_pred[p->set]);
		len = e - b;
		if (len < p->min ||
		    (p->digit && len < 32 && !has_digit(s, b, e)))
			continue;
		return emit(r, i, e, p->kind);
	}
	return 0;
}

static size_t try_aws(struct red *r, size_t i)
{
	static const char ids[][4] = {
	    "AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA",
	    "AIPA", "ANPA", "ANVA", "AROA", "APKA", "ASCA",
	};
	const unsigned char *s = r->s;
	size_t n = r->n, k, e;

	if (n - i < 20)
		return 0;
	for (k = 0; k < sizeof ids / sizeof ids[0]; k++)
		if (memcmp(s + i, ids[k], 4) == 0)
			break;
	if (k == sizeof ids / sizeof ids[0])
		return 0;
	for (e = i + 4;
	     e < n && e - i <= 20 && (is_upper(s[e]) || is_digit(s[e])); e++)
		;
	if (e - i != 20 || (e < n && is_word(s[e])))
		return 0;
	return emit(r, i, e, "aws_key");
}

/* header.payload[.signature], base64url, the header being "{"... */
static size_t try_jwt(struct red *r, size_t i)
{
	const unsigned char *s = r->s;
	size_t n = r->n, a, b, e;

	if (i < r->jwt_fail || !has_prefix(s, n, i, "eyJ", 3))
		return 0;
	a = run_end(s, n, i, is_keych);
	if (a - i >= 10 && a + 1 < n && s[a] == '.') {
		b = run_end(s, n, a + 1, is_keych);
		if (b - (a + 1) >= 2) {
			e = b;
			if (b < n && s[b] == '.')
				e = run_end(s, n, b + 1, is_keych);
			return emit(r, i, e, "jwt");
		}
	}
	/* every "eyJ" up to a fails the same way: do not look again */
	r->jwt_fail = a;
	return 0;
}

/* Discord bot token: base64(user id).timestamp.hmac */
static size_t try_discord(struct red *r, size_t i)
{
	const unsigned char *s = r->s;
	size_t n = r->n, a, b, e;

	a = run_end_max(s, n, i, is_keych, 29);
	if (a - i < 23 || a - i > 28 || a >= n || s[a] != '.' ||
	    !has_digit(s, i, a))
		return 0;
	b = run_end_max(s, n, a + 1, is_keych, 8);
	if (b - (a + 1) < 6 || b - (a + 1) > 7 || b >= n || s[b] != '.')
		return 0;
	e = run_end(s, n, b + 1, is_keych);
	if (e - (b + 1) < 27)
		return 0;
	return emit(r, i, e, "discord_token");
}

/* -- addresses -- */

/* Parses d.d.d.d exactly spanning s[p..e); the octets go to oct. */
static int parse_quad(const unsigned char *s, size_t p, size_t e,
		      unsigned oct[4])
{
	size_t part, start;

	for (part = 0; part < 4; part++) {
		oct[part] = 0;
		for (start = p; p < e && is_digit(s[p]) && p - start < 4; p++)
			oct[part] = oct[part] * 10 + (unsigned)(s[p] - '0');
		if (p == start || p - start > 3 || oct[part] > 255)
			return 0;
		if (part < 3) {
			if (p >= e || s[p] != '.')
				return 0;
			p++;
		}
	}
	return p == e;
}

/* ":port" after an address: the offset after it, or p if there is none. */
static size_t port_end(const unsigned char *s, size_t n, size_t p)
{
	size_t q;

	if (p + 1 >= n || s[p] != ':' || !is_digit(s[p + 1]))
		return p;
	q = run_end_max(s, n, p + 1, is_digit, 6);
	if (q - (p + 1) > 5 || (q < n && is_word(s[q])))
		return p;
	return q;
}

static int is_v4ch(unsigned char c)
{
	return is_digit(c) || c == '.';
}

static size_t try_ipv4(struct red *r, size_t i)
{
	const unsigned char *s = r->s;
	size_t n = r->n, e, end;
	unsigned oct[4];

	e = run_end_max(s, n, i, is_v4ch, 24);
	while (e > i && s[e - 1] == '.')
		e--; /* "connecting to 10.0.0.1..." */
	if (e - i < 7 || e - i > 15 || (e < n && is_word(s[e])) ||
	    !parse_quad(s, i, e, oct))
		return 0; /* also 1.2.3.4.5: a version, not an address */
	end = port_end(s, n, e);
	if (oct[0] == 127 || oct[0] == 255 ||
	    (oct[0] == 0 && oct[1] == 0 && oct[2] == 0 && oct[3] == 0))
		return end; /* loopback, unspecified, netmask: kept */
	return emit(r, i, end, "ip");
}

static int is_v6ch(unsigned char c)
{
	return is_hex(c) || c == ':' || c == '.';
}

static size_t try_ipv6(struct red *r, size_t s0)
{
	const unsigned char *s = r->s;
	size_t n = r->n, e, p, q, b, groups = 0, hexd = 0;
	int dbl = 0, v4 = 0;
	unsigned oct[4];

	/* cheap rejection: an address has a ':' within its first 5 bytes */
	p = run_end_max(s, n, s0, is_hex, 5);
	if (p >= n || s[p] != ':')
		return 0;
	e = run_end_max(s, n, s0, is_v6ch, 65);
	if (e - s0 > 64 || (e < n && is_word(s[e])))
		return 0;
	while (e > s0 && s[e - 1] == '.')
		e--;
	if (e - s0 >= 2 && s[e - 1] == ':' && s[e - 2] != ':')
		e--; /* "fe80::1: connection refused" */

	p = s0;
	if (e - p >= 2 && s[p] == ':' && s[p + 1] == ':') {
		dbl = 1;
		p += 2;
	} else if (s[p] == ':') {
		return 0;
	}
	while (p < e) {
		q = run_end(s, e, p, is_hex);
		if (q < e && s[q] == '.') {
			if (!parse_quad(s, p, e, oct))
				return 0;
			groups += 2;
			v4 = 1;
			break;
		}
		if (q == p || q - p > 4)
			return 0;
		groups++;
		hexd += q - p;
		p = q;
		if (p == e)
			break;
		p++; /* the ':' */
		if (p < e && s[p] == ':') {
			if (dbl)
				return 0;
			dbl = 1;
			p++;
		} else if (p == e) {
			return 0;
		}
	}
	if (dbl ? groups > 7 : groups != 8)
		return 0;
	/* "::", "::1" are kept; "a[1::2]" is a slice, not an address */
	if (hexd < 4 && !v4)
		return 0;
	b = s0;
	if (e < n && s[e] == '%') { /* zone: fe80::1%eth0 */
		q = run_end_max(s, n, e + 1, is_keych, 32);
		if (q > e + 1)
			e = q;
	}
	if (s0 > r->from && s[s0 - 1] == '[' && e < n && s[e] == ']') {
		b = s0 - 1;
		e = port_end(s, n, e + 1);
	}
	return emit(r, b, e, "ip");
}

/* -- phone numbers and account ids -- */

/* After a number ending at e: is the number over?  (not 12.5, 12-ab, 12a) */
static int num_ends(const unsigned char *s, size_t n, size_t e)
{
	if (e >= n)
		return 1;
	if (is_word(s[e]) || s[e] == '@')
		return 0;
	if ((s[e] == '.' || s[e] == '-') && e + 1 < n && is_alnum(s[e + 1]))
		return 0;
	return 1;
}

static int is_phone_sep(unsigned char c)
{
	return c == ' ' || c == '-' || c == '.' || c == '(' || c == ')';
}

/* A Chinese mobile number 1[3-9]xxxxxxxxx (or 3-4-4 grouped) at p: its end, or 0. */
static size_t cn_mobile_at(const unsigned char *s, size_t n, size_t p)
{
	size_t e = run_end_max(s, n, p, is_digit, 12), end = 0;
	unsigned char sep;

	if (e - p < 3 || s[p] != '1' || s[p + 1] < '3')
		return 0;
	if (e - p == 11) {
		end = e;
	} else if (e - p == 3 && e + 10 <= n && (s[e] == ' ' || s[e] == '-')) {
		sep = s[e];
		if (run_end(s, e + 5, e + 1, is_digit) == e + 5 &&
		    s[e + 5] == sep &&
		    run_end(s, e + 10, e + 6, is_digit) == e + 10)
			end = e + 10;
	}
	if (!end || (end < n && is_digit(s[end])) || !num_ends(s, n, end))
		return 0;
	return end;
}

/* +1 415 555 0100, +86 138 0013 8000, +44 20 7946 0958, +1 (415) 555-0100 */
static size_t try_plus_phone(struct red *r, size_t i)
{
	const unsigned char *s = r->s;
	size_t n = r->n, k = i + 1, g, sep, digits = 0, end = 0;
	int style = 0; /* 1: dotted 1.415.555.0100, 2: spaces, dashes, () */
	int dot;

	if ((i > 0 && is_alnum(s[i - 1])) || k >= n || !is_digit(s[k]))
		return 0; /* "UTC+8", "+08:00" after a time */
	for (;;) {
		g = run_end_max(s, n, k, is_digit, 16);
		/* a group glued to something else is not part of the number:
		 * 2001:db8::1, 550e8400-..., 10.0.0.1 after a spaced number */
		if (g < n && (is_word(s[g]) || s[g] == '@' || s[g] == ':'))
			break;
		if (style == 2 && g + 1 < n && s[g] == '.' &&
		    is_digit(s[g + 1]))
			break;
		if (digits + (g - k) > 15 ||
		    (digits >= 8 && cn_mobile_at(s, n, k)))
			break; /* the next number starts here */
		digits += g - k;
		end = g;
		sep = run_end_max(s, n, g, is_phone_sep, 2);
		if (sep == g || sep >= n || !is_digit(s[sep]))
			break;
		dot = memchr(s + g, '.', sep - g) != NULL;
		if (style == 0)
			style = dot ? 1 : 2;
		else if ((style == 1) != dot)
			break;
		k = sep;
	}
	if (digits < 8)
		return 0;
	return emit(r, i, end, "phone");
}

/* Chinese mobile 1[3-9]xxxxxxxxx (also 3-4-4 grouped) and 0xx-xxxxxxxx */
static size_t try_cn_phone(struct red *r, size_t i, size_t e)
{
	const unsigned char *s = r->s;
	size_t n = r->n, len = e - i, end, g;

	end = cn_mobile_at(s, n, i);
	if (!end && (len == 3 || len == 4) && s[i] == '0' && e + 1 < n &&
	    s[e] == '-' && s[e + 1] != '0') {
		g = run_end_max(s, n, e + 1, is_digit, 9);
		if ((g - (e + 1) == 7 || g - (e + 1) == 8) && num_ends(s, n, g))
			end = g;
	}
	if (!end)
		return 0;
	return emit(r, i, end, "phone");
}

/* LangBot's session names: person_<QQ id>, group_<group id> */
static int after_session_prefix(const unsigned char *s, size_t i)
{
	return (i >= 7 && ci_eq(s + i - 7, "person_", 7) &&
		(i == 7 || !is_word(s[i - 8]))) ||
	       (i >= 6 && ci_eq(s + i - 6, "group_", 6) &&
		(i == 6 || !is_word(s[i - 7])));
}

/*
 * Whether the number at i is the value of an error code or status key
 * ('code': 230013, "errcode":100016, retcode=1200, status 404): a
 * provider's error code, kept for debugging.
 */
static int after_code_key(const unsigned char *s, size_t i)
{
	static const char *const keys[] = {"code", "status", "errno"};
	size_t k = i, gap = 0, t, l;

	while (k > 0 && gap < 4 &&
	       (s[k - 1] == ' ' || s[k - 1] == ':' || s[k - 1] == '=' ||
		s[k - 1] == '"' || s[k - 1] == '\'' || s[k - 1] == '\\')) {
		k--;
		gap++;
	}
	if (gap == 0)
		return 0;
	for (t = 0; t < sizeof keys / sizeof keys[0]; t++) {
		l = strlen(keys[t]);
		if (k >= l && ci_eq(s + k - l, keys[t], l))
			return 1;
	}
	return 0;
}

/* (415) 555-0100, 415-555-0100, 415.555.0100 at i (3 digits to e). */
static size_t us_phone_end(const unsigned char *s, size_t n, size_t i, size_t e)
{
	size_t p = e, g;
	unsigned char sep;

	if (e - i != 3)
		return 0;
	if (i > 0 && s[i - 1] == '(') {
		if (p + 1 >= n || s[p] != ')')
			return 0;
		p++;
		if (p < n && s[p] == ' ')
			p++;
		sep = '-';
	} else {
		if (p >= n || (s[p] != '-' && s[p] != '.'))
			return 0;
		sep = s[p++];
	}
	g = run_end_max(s, n, p, is_digit, 4);
	if (g - p != 3 || g >= n || s[g] != sep)
		return 0;
	p = run_end_max(s, n, g + 1, is_digit, 5);
	if (p - (g + 1) != 4 || !num_ends(s, n, p))
		return 0;
	return p;
}

static size_t scan_digits(struct red *r, size_t i)
{
	const unsigned char *s = r->s;
	size_t n = r->n, e, len, t, b;
	unsigned char prev = i ? s[i - 1] : ' ';

	e = run_end(s, n, i, is_digit);
	len = e - i;
	/* Telegram bot token 123456789:AA..., also inside ".../bot123:AA.../" */
	if (len >= 5 && len <= 12 && e < n && s[e] == ':') {
		t = run_end(s, n, e + 1, is_keych);
		if (t - (e + 1) >= 30)
			return emit(r, i, t, "bot_token");
	}
	if (is_word(prev)) {
		if (len >= 5 && after_session_prefix(s, i) && num_ends(s, n, e))
			return emit(r, i, e, "id");
		return e; /* part of an identifier or a hex string */
	}
	if (prev != '.' && prev != ':' && (t = try_ipv6(r, i)) != 0)
		return t;
	if (prev != '.' && (t = try_ipv4(r, i)) != 0)
		return t;
	if (prev != '.' && prev != '-' && (t = us_phone_end(s, n, i, e)) != 0)
		return emit(r, prev == '(' && i - 1 >= r->from ? i - 1 : i, t,
			    "phone");
	if (i >= 2 && (prev == '.' || prev == '-') && is_alnum(s[i - 2])) {
		/* 3.1415926, v1.123456, uuid-446655440000, 2024-123456 ... */
		if (prev == '-' && (t = try_cn_phone(r, i, e)) != 0)
			return t; /* 86-13800138000 */
		return e;
	}
	if ((t = try_cn_phone(r, i, e)) != 0)
		return t;
	if (len < 6 || !num_ends(s, n, e))
		return e;
	if (i >= 5 && (memcmp(s + i - 5, "line ", 5) == 0 ||
		       memcmp(s + i - 5, "Line ", 5) == 0))
		return e; /* a traceback's line number */
	if (len <= 10 && after_code_key(s, i))
		return e; /* Lark 230013, QQ 100016: error codes */
	b = i;
	if (prev == '-' && i - 1 >= r->from)
		b = i - 1; /* Telegram chat id -1001234567890 */
	return emit(r, b, e, "id");
}

/* -- home directories -- */

static int name_term(unsigned char c)
{
	return in_set(c, "/\\ \t\n\"'`:*?<>|,;)]}");
}

static size_t try_home(struct red *r, size_t i)
{
	const unsigned char *s = r->s;
	size_t n = r->n, p = 0, e;

	if (s[i] == '/') {
		if (has_prefix(s, n, i, "/home/", 6))
			p = i + 6;
		else if (has_prefix(s, n, i, "/Users/", 7))
			p = i + 7;
	} else if (n - i >= 7 && ci_eq(s + i + 1, "users", 5) &&
		   s[i + 6] == '\\') {
		p = i + 7; /* C:\Users\NAME */
	} else if (n - i >= 9 && s[i + 1] == '\\' &&
		   ci_eq(s + i + 2, "users", 5) && s[i + 7] == '\\' &&
		   s[i + 8] == '\\') {
		p = i + 9; /* "C:\\Users\\NAME" as a repr shows it */
	}
	if (!p)
		return 0;
	e = p;
	while (e < n && !name_term(s[e]))
		e++;
	if (e < n && (s[e] == ' ' || s[e] == '\t')) {
		/* "C:\Users\First Last\": a name with spaces ends at the
		 * next separator, if one comes before the quote or line ends */
		size_t k = e;

		while (k < n && k - p < 64 && s[k] != '/' && s[k] != '\\' &&
		       s[k] != '\n' && s[k] != '"' && s[k] != '\'' &&
		       s[k] != '`' && s[k] != ',' && s[k] != ':')
			k++;
		if (k < n && k - p < 64 && (s[k] == '/' || s[k] == '\\'))
			e = k;
	}
	if (e == p)
		return 0;
	if ((e - p == 6 && (memcmp(s + p, "Shared", 6) == 0 ||
			    memcmp(s + p, "Public", 6) == 0)) ||
	    (e - p == 7 && memcmp(s + p, "Default", 7) == 0))
		return e; /* not a person */
	return emit(r, p, e, "user");
}

/* -- chat-platform ids, data: URLs, webhook paths -- */

static int is_lhex(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f');
}

/*
 * WeChat wxid_..., Lark ou_/oc_/on_ + 32 hex, WeCom corp ids ww + 16 hex,
 * and the 28-character openids of WeChat official accounts (o + 27 of
 * base64url, mixed case with a digit).
 */
static size_t try_platform_id(struct red *r, size_t i)
{
	const unsigned char *s = r->s;
	size_t n = r->n, e, k;
	int up = 0, lo = 0, dg = 0;

	e = run_end_max(r->s, n, i, is_keych, 65);
	if (e < n && (is_keych(s[e]) || s[e] == '.'))
		return 0;
	if (e - i >= 11 && ci_eq(s + i, "wxid_", 5))
		return emit(r, i, e, "id");
	if (e - i == 35 && s[i] == 'o' && s[i + 2] == '_' &&
	    (s[i + 1] == 'u' || s[i + 1] == 'c' || s[i + 1] == 'n') &&
	    run_end(s, e, i + 3, is_lhex) == e)
		return emit(r, i, e, "id");
	if (e - i == 18 && s[i] == 'w' && s[i + 1] == 'w' &&
	    run_end(s, e, i + 2, is_lhex) == e)
		return emit(r, i, e, "id");
	if (e - i == 28 && s[i] == 'o') {
		for (k = i + 1; k < e; k++) {
			up |= is_upper(s[k]);
			lo |= s[k] >= 'a' && s[k] <= 'z';
			dg |= is_digit(s[k]);
		}
		if (up && lo && dg)
			return emit(r, i, e, "id");
	}
	return 0;
}

/* "12345678@chatroom", "wxid_x@openim": a WeChat room or contact */
static size_t try_chatroom(struct red *r, size_t i)
{
	const unsigned char *s = r->s;
	size_t n = r->n, b = i;

	if (!has_prefix(s, n, i, "@chatroom", 9) &&
	    !has_prefix(s, n, i, "@openim", 7))
		return 0;
	while (b > r->from && i - b < 64 && is_keych(s[b - 1]))
		b--;
	if (b == i)
		return 0;
	return emit(r, b, i, "id");
}

static int is_b64ch(unsigned char c)
{
	return is_alnum(c) || c == '+' || c == '/' || c == '=' || c == '-' ||
	       c == '_' || c == '%';
}

/* data:image/png;base64,iVBOR...: the payload goes, the type stays. */
static size_t try_data_url(struct red *r, size_t i)
{
	const unsigned char *s = r->s;
	size_t n = r->n, k, e;

	if (i < 4 || !ci_eq(s + i - 4, "data", 4) ||
	    (i > 4 && is_alnum(s[i - 5])))
		return 0;
	for (k = i + 1; k < n && k - i < 80 && s[k] != ','; k++)
		if (!(is_keych(s[k]) || s[k] == '/' || s[k] == ';' ||
		      s[k] == '=' || s[k] == '+' || s[k] == '.'))
			return 0;
	if (k >= n || s[k] != ',' || memchr(s + i, '/', k - i) == NULL)
		return 0;
	e = run_end(s, n, k + 1, is_b64ch);
	if (e - (k + 1) < 8)
		return 0;
	return emit(r, k + 1, e, "data");
}

/*
 * Webhook URLs carry their secret in the path: Discord
 * /webhooks/<id>/<token>, Slack /services/T.../B.../<secret>, Lark and
 * Feishu /hook/<uuid>.  The path after the marker goes.
 */
static size_t try_webhook(struct red *r, size_t i)
{
	static const char *const marks[] = {"/webhooks/", "/services/",
					    "/hook/"};
	const unsigned char *s = r->s;
	size_t n = r->n, t, l, b, e;

	for (t = 0; t < sizeof marks / sizeof marks[0]; t++) {
		l = strlen(marks[t]);
		if (!has_prefix(s, n, i, marks[t], l))
			continue;
		b = i + l;
		e = b;
		while (e < n && (is_keych(s[e]) || s[e] == '/'))
			e++;
		while (e > b && s[e - 1] == '/')
			e--;
		if (e - b < 16 || !has_digit(s, b, e))
			return 0;
		return emit(r, b, e, "webhook");
	}
	return 0;
}

/* 密码：, 口令:, 密钥 =, 令牌: a Chinese credential key before i; 发送:,
 * 消息:, 内容: a message's text, up to the line's end. */
static size_t try_cjk_key(struct red *r, size_t i, size_t after)
{
	static const char *const keys[] = {
	    "密码", "口令", "密钥", "令牌", "验证码", /* credentials */
	    "发送", "消息", "内容", "说",   "提问",   "回复", "原文"};
	const unsigned char *s = r->s;
	size_t n = r->n, k = i, t, l, vb, ve;
	int text;

	while (k > 0 && s[k - 1] == ' ')
		k--;
	for (t = 0; t < sizeof keys / sizeof keys[0]; t++) {
		l = strlen(keys[t]);
		if (k >= l && memcmp(s + k - l, keys[t], l) == 0)
			break;
	}
	if (t == sizeof keys / sizeof keys[0])
		return 0;
	text = t >= 5;
	vb = after;
	while (vb < n && s[vb] == ' ')
		vb++;
	ve = vb;
	while (ve < n && s[ve] != '\n' &&
	       (text || (s[ve] != ',' && s[ve] != ';' &&
			 !has_prefix(s, n, ve, "，", 3) &&
			 !has_prefix(s, n, ve, "。", 3))))
		ve++;
	while (ve > vb && s[ve - 1] == ' ')
		ve--;
	if (ve == vb)
		return 0;
	return emit(r, vb, ve, text ? "text" : "password");
}

/* "Hannah Schmidt said: ..." in a log line: the speaker's name (up to
 * three capitalised words) is a user, the rest of the line a message. */
static size_t try_said(struct red *r, size_t i, size_t after)
{
	static const char *const verbs[] = {"said",  "says",    "wrote",
					    "asked", "replied", "sent"};
	const unsigned char *s = r->s;
	size_t n = r->n, k = i, t, l, vb, ve, nb, w, words;

	if (r->code)
		return 0;
	for (t = 0; t < sizeof verbs / sizeof verbs[0]; t++) {
		l = strlen(verbs[t]);
		if (k >= l && memcmp(s + k - l, verbs[t], l) == 0 &&
		    (k == l || !is_word(s[k - l - 1])))
			break;
	}
	if (t == sizeof verbs / sizeof verbs[0])
		return 0;
	vb = after;
	while (vb < n && s[vb] == ' ')
		vb++;
	ve = vb;
	while (ve < n && s[ve] != '\n')
		ve++;
	while (ve > vb && s[ve - 1] == ' ')
		ve--;
	if (ve == vb)
		return 0;
	/* the speaker: capitalised words before the verb */
	nb = k - l;
	for (words = 0; words < 3; words++) {
		w = nb;
		while (w > 0 && s[w - 1] == ' ')
			w--;
		k = w;
		while (k > 0 && (is_alpha(s[k - 1]) || s[k - 1] >= 0x80 ||
				 s[k - 1] == '-' || s[k - 1] == '.'))
			k--;
		if (k == w || !(is_upper(s[k]) || s[k] >= 0x80) ||
		    (k > 0 && s[k - 1] != ' '))
			break;
		nb = k;
	}
	if (words > 0 && nb >= r->from) {
		k = i - l;
		while (k > nb && s[k - 1] == ' ')
			k--;
		emit(r, nb, k, "user");
	}
	return emit(r, vb, ve, "text");
}

/* -- the walk -- */

static size_t scan_word(struct red *r, size_t i)
{
	const unsigned char *s = r->s;
	size_t t = 0;
	unsigned char c = s[i];

	switch (c) {
	case 's':
	case 'h':
	case 'x':
	case 'a':
	case 'g':
		t = try_prefixes(r, i);
		break;
	case 'A':
		t = try_prefixes(r, i);
		if (!t)
			t = try_aws(r, i);
		break;
	case 'e':
		t = try_jwt(r, i);
		break;
	case 'b':
	case 'B':
		t = try_bearer(r, i);
		break;
	case 'u':
	case 'U':
		t = try_user_quoted(r, i);
		break;
	case 'M':
	case 'N':
	case 'O':
		t = try_discord(r, i);
		break;
	case 'w':
	case 'W':
	case 'o':
		t = try_platform_id(r, i);
		break;
	}
	if (!t && is_hex(c) && (i == 0 || (s[i - 1] != '.' && s[i - 1] != ':')))
		t = try_ipv6(r, i);
	return t;
}

static size_t try_colon(struct red *r, size_t i)
{
	const unsigned char *s = r->s;
	size_t n = r->n, t;

	if (n - i >= 3 && s[i + 1] == '/' && s[i + 2] == '/')
		return try_url_auth(r, i);
	if ((t = try_data_url(r, i)) != 0 || (t = try_cjk_key(r, i, i + 1)) ||
	    (t = try_said(r, i, i + 1)))
		return t;
	if (i + 1 < n && s[i + 1] == ':' &&
	    (i == 0 ||
	     (!is_word(s[i - 1]) && s[i - 1] != ':' && s[i - 1] != '.')) &&
	    (t = try_ipv6(r, i)) != 0)
		return t;
	return try_assign(r, i);
}

/* Appends s[0..n) to out with every finding replaced; code: the text is
 * source code, where a bare identifier after "key=" is a variable. */
static void redact_mode(const char *text, size_t n, struct sbuf *out, int code)
{
	const unsigned char *s = (const unsigned char *)text;
	struct red r;
	size_t i = 0, t;
	unsigned char c;

	memset(&r, 0, sizeof r);
	r.s = s;
	r.n = n;
	r.out = out;
	r.auth_at = SIZE_MAX;
	r.code = code;
	while (i < n) {
		c = s[i];
		t = 0;
		if (is_digit(c)) {
			if (i == 0 || !is_digit(s[i - 1])) {
				i = scan_digits(&r, i);
				continue;
			}
		} else if (is_alpha(c)) {
			/* prefixes after any boundary but a letter or digit
			 * ("_sk-..."); "sk-" glued to letters if long */
			if (i == 0 || !is_alnum(s[i - 1]))
				t = scan_word(&r, i);
			else if (c == 's' && i + 3 < n && s[i + 1] == 'k' &&
				 (s[i + 2] == '-' || s[i + 2] == '_') &&
				 run_end(s, n, i + 3, is_keystar) - i >= 35)
				t = try_prefixes(&r, i);
		} else {
			switch (c) {
			case '-':
				t = try_private_key(&r, i);
				break;
			case '+':
				t = try_plus_phone(&r, i);
				break;
			case '@':
				t = try_chatroom(&r, i);
				if (!t)
					t = try_email(&r, i);
				if (!t)
					t = try_mention(&r, i);
				break;
			case '=':
				t = try_assign(&r, i);
				break;
			case ':':
				t = try_colon(&r, i);
				break;
			case '/':
				t = try_home(&r, i);
				if (!t)
					t = try_webhook(&r, i);
				break;
			case '\\':
				t = try_home(&r, i);
				break;
			case 0xef: /* full-width colon */
				if (i + 2 < n && s[i + 1] == 0xbc &&
				    s[i + 2] == 0x9a)
					t = try_cjk_key(&r, i, i + 3);
				break;
			}
		}
		i = t > i ? t : i + 1;
	}
	if (n > r.from)
		sb_put(out, (const char *)s + r.from, n - r.from);
	if (!out->oom && out->p)
		out->p[out->len] = '\0';
}

static void redact(const unsigned char *s, size_t n, struct sbuf *out)
{
	redact_mode((const char *)s, n, out, 0);
}

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
	static const char cyr_d0[64] = {
	    /* U+0400..U+043F by their second byte, minus 0x80 */
	    [0x10] = 'A', [0x12] = 'B', [0x15] = 'E', [0x1a] = 'K',
	    [0x1c] = 'M', [0x1d] = 'H', [0x1e] = 'O', [0x20] = 'P',
	    [0x21] = 'C', [0x22] = 'T', [0x25] = 'X', [0x30] = 'a',
	    [0x35] = 'e', [0x3a] = 'k', [0x3e] = 'o',
	};
	unsigned char *s = (unsigned char *)t;
	size_t rd = 0, wr = 0;
	unsigned cp;
	char a;

	while (rd < n) {
		unsigned char c = s[rd];

		if (c < 0x80) {
			if (c == '%' && rd + 2 < n && is_hex(s[rd + 1]) &&
			    is_hex(s[rd + 2])) {
				unsigned v =
				    (unsigned)((is_digit(s[rd + 1])
						    ? s[rd + 1] - '0'
						    : (s[rd + 1] | 0x20) - 'a' +
							  10)
					       << 4) |
				    (unsigned)(is_digit(s[rd + 2])
						   ? s[rd + 2] - '0'
						   : (s[rd + 2] | 0x20) - 'a' +
							 10);

				if (v > 0x20 && v < 0x7f && v != '%') {
					s[wr++] = (unsigned char)v;
					rd += 3;
					continue;
				}
			}
			s[wr++] = c;
			rd++;
			continue;
		}
		a = 0;
		if (c == 0xc2 && rd + 1 < n && s[rd + 1] == 0xa0) {
			s[wr++] = ' '; /* NBSP */
			rd += 2;
			continue;
		}
		if (c == 0xef && rd + 2 < n &&
		    (s[rd + 1] == 0xbc || s[rd + 1] == 0xbd)) {
			cp = 0xf000u | ((unsigned)(s[rd + 1] & 0x3f) << 6) |
			     (s[rd + 2] & 0x3fu);
			if (cp >= 0xff01 && cp <= 0xff5e) {
				a = (char)(cp - 0xfee0);
				if (!is_alnum((unsigned char)a) &&
				    !in_set((unsigned char)a, "@:=/._-+%"))
					a = 0;
			}
			if (a) {
				s[wr++] = (unsigned char)a;
				rd += 3;
				continue;
			}
		} else if (c == 0xef && rd + 2 < n && s[rd + 1] == 0xbb &&
			   s[rd + 2] == 0xbf) {
			rd += 3; /* U+FEFF */
			continue;
		} else if (c == 0xe2 && rd + 2 < n &&
			   ((s[rd + 1] == 0x80 &&
			     ((s[rd + 2] >= 0x8b && s[rd + 2] <= 0x8f) ||
			      (s[rd + 2] >= 0xaa && s[rd + 2] <= 0xae))) ||
			    (s[rd + 1] == 0x81 && s[rd + 2] >= 0xa0 &&
			     s[rd + 2] <= 0xa4))) {
			rd += 3; /* U+200B..U+200F, U+202A..U+202E, U+2060.. */
			continue;
		} else if (c == 0xd9 && rd + 1 < n && s[rd + 1] >= 0xa0 &&
			   s[rd + 1] <= 0xa9) {
			s[wr++] = (unsigned char)('0' + s[rd + 1] - 0xa0);
			rd += 2;
			continue;
		} else if (c == 0xe0 && rd + 2 < n && s[rd + 1] == 0xa5 &&
			   s[rd + 2] >= 0xa6 && s[rd + 2] <= 0xaf) {
			s[wr++] = (unsigned char)('0' + s[rd + 2] - 0xa6);
			rd += 3;
			continue;
		} else if (c == 0xf0 && rd + 3 < n && s[rd + 1] == 0x9d &&
			   s[rd + 2] == 0x9f && s[rd + 3] >= 0x8e) {
			s[wr++] =
			    (unsigned char)('0' + (s[rd + 3] - 0x8e) % 10);
			rd += 4;
			continue;
		} else if ((c == 0xd0 || c == 0xd1 || c == 0xce || c == 0xcf) &&
			   rd + 1 < n) {
			unsigned char d = s[rd + 1];

			if (c == 0xd0 && d >= 0x80 && d <= 0xbf)
				a = cyr_d0[d - 0x80];
			else if (c == 0xd1)
				a = d == 0x80   ? 'p'
				    : d == 0x81 ? 'c'
				    : d == 0x83 ? 'y'
				    : d == 0x85 ? 'x'
				    : d == 0x95 ? 's'
				    : d == 0x96 ? 'i'
				    : d == 0x98 ? 'j'
						: 0;
			else if (c == 0xce)
				a = d == 0xbf ? 'o' : d == 0xb1 ? 'a' : 0;
			else
				a = d == 0x81 ? 'p' : 0;
			if (a && ((wr > 0 && is_alnum(s[wr - 1])) ||
				  (rd + 2 < n && is_alnum(s[rd + 2])))) {
				s[wr++] = (unsigned char)a;
				rd += 2;
				continue;
			}
		}
		s[wr++] = c;
		rd++;
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
	if (word_in(s + i, ve - i, code_words,
		    sizeof code_words / sizeof code_words[0]))
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
	const struct keyword *kw;

	if (ke == kb)
		return NULL;
	kw = match_key(s, kb, ke, kb == b || !is_keyname(s[kb - 1]));
	if (!kw || is_camel(s, kb, ke))
		return NULL;
	if (strcmp(kw->kind, "password") == 0 ||
	    strcmp(kw->kind, "secret") == 0 || strcmp(kw->kind, "token") == 0 ||
	    strcmp(kw->kind, "api_key") == 0 ||
	    strcmp(kw->kind, "private_key") == 0 ||
	    strcmp(kw->kind, "authorization") == 0)
		return kw->kind;
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

/*
 * A token s[i..w) with a key's prefix: *whole set if it is long enough for
 * the patterns; the kind returned if it is a key cut short (wrapped across
 * lines, or split by a space): 10+ characters after the prefix, 2+ digits
 * and an upper-case letter (keys are mixed case; "app-v2-release-2024" is
 * not one).
 */
static const char *key_prefix(const unsigned char *s, size_t i, size_t w,
			      int *whole)
{
	size_t k, d, len;
	int up;

	for (k = 0; k < sizeof prefixes / sizeof prefixes[0]; k++) {
		len = prefixes[k].len;
		if (!has_prefix(s, w, i, prefixes[k].pre, len))
			continue;
		if (w - i >= len + prefixes[k].min) {
			*whole = 1;
			return NULL;
		}
		for (d = 0, up = 0, len += i; len < w; len++) {
			d += is_digit(s[len]);
			up |= is_upper(s[len]);
		}
		if (w - i >= prefixes[k].len + 10u && d >= 2 && up)
			return prefixes[k].kind;
	}
	return NULL;
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

/*
 * Templates one message (s[b..e), one line): words stay, values go.  See
 * the comment at the top of the file for what becomes what.
 */
static void template_msg(struct tpl *t)
{
	const unsigned char *s = t->s;
	size_t i = t->b, e = t->e, c, k, w;

	t->from = t->b;
	t->val_at = SIZE_MAX;
	t->env_end = 0;
	t->skip_q = SIZE_MAX;
	t->noq[0] = t->noq[1] = t->noq[2] = 0;
	while (i < e) {
		unsigned char ch = s[i];
		int at_val = i == t->val_at;

		if (i == t->skip_q) {
			i++;
			continue;
		}
		if (at_val && t->cred) {
			const char *kind = t->cred;
			size_t sep = i;

			while (sep > t->b && s[sep - 1] == ' ')
				sep--;
			t->cred = NULL;
			i = tp_cred(t, i, sep > t->b ? s[sep - 1] : '=', kind);
			continue;
		}
		if (ch == '<') {
			if ((k = ph_end(s, i, e)) != 0) {
				i = k;
				continue;
			}
			if (has_prefix(s, e, i, "<?xml", 5) ||
			    has_prefix(s, e, i, "<![CDATA[", 9) ||
			    (i + 1 < e && is_alpha(s[i + 1]) &&
			     (w = run_end(s, e, i + 1, is_keych)) < e &&
			     s[w] == '>' && has_close_tag(s, w, e))) {
				for (k = e; k > i && s[k - 1] != '>'; k--)
					;
				if (k <= i)
					k = e; /* cut before its first '>' */
				tp_emit(t, i, k, "xml", 1);
				i = k;
				continue;
			}
			i++;
			continue;
		}
		if (ch == '#' && i + 1 < e && (k = name_start(t, i)) < i &&
		    ((s[i + 1] == '0' && (i + 2 == e || !is_word(s[i + 2]))) ||
		     (run_end(s, e, i + 1, is_digit) == i + 5 &&
		      (i + 5 == e || !is_word(s[i + 5]))))) {
			/* a Discord user name: name#0, name#1234 */
			w = s[i + 1] == '0' &&
				    (i + 2 == e || !is_digit(s[i + 2]))
				? i + 2
				: i + 5;
			tp_red(t, k, w, "user");
			i = w;
			continue;
		}
		if (ch == 0xe2 || ch == 0xe3) {
			/* “…” ‘…’ 「…」 『…』 quote as ' and " do */
			static const char *const cjk_q[][2] = {
			    {"\xe2\x80\x9c", "\xe2\x80\x9d"},
			    {"\xe2\x80\x98", "\xe2\x80\x99"},
			    {"\xe3\x80\x8c", "\xe3\x80\x8d"},
			    {"\xe3\x80\x8e", "\xe3\x80\x8f"},
			};
			const unsigned char *p = NULL;

			for (k = 0; k < 4 && !p; k++)
				if (has_prefix(s, e, i, cjk_q[k][0], 3))
					p = find3(s + i + 3, e - i - 3,
						  cjk_q[k][1]);
			if (p) {
				tp_emit(t, i, (size_t)(p - s) + 3, "str", 1);
				i = (size_t)(p - s) + 3;
				continue;
			}
		}
		if (ch == '\'' || ch == '"' || ch == '`') {
			c = close_quote(t, i);
			if (!c) {
				i++;
				continue;
			}
			/* a key: 'name': */
			k = c + 1;
			while (k < e && s[k] == ' ')
				k++;
			if (k < e && s[k] == ':' &&
			    !has_prefix(s, e, k, "://", 3) &&
			    is_ident_str(s, i + 1, c, 40) && !at_val) {
				tp_key(t, i + 1, c, k);
				i = k + 1;
				continue;
			}
			if ((at_val && t->keep_val &&
			     is_code_value(s, i + 1, c)) ||
			    is_status_phrase(s, i + 1, c) || c == i + 1 ||
			    (is_ident_str(s, i + 1, c, 40) &&
			     has_prefix(s, e, c + 1, " object", 7))) {
				i = c + 1; /* 'NoneType' object has no ... */
				continue;
			}
			if ((k = quoted_url(s, i + 1, c)) != 0) {
				/* 'https://host/...': the host stays */
				t->skip_q = c;
				i = tp_url(t, k);
				continue;
			}
			if (s[i + 1] == '{' || s[i + 1] == '[') {
				t->skip_q =
				    c; /* b'{"code": ...}': walk the JSON */
				i++;
				continue;
			}
			tp_emit(t, i, c + 1, "str", 1);
			i = c + 1;
			continue;
		}
		if (ch == '{' || ch == '[' || ch == '(') {
			c = t->cl[i - t->b];
			if (!c) {
				i++;
				continue;
			}
			c += t->b;
			if (ch == '{') {
				if (c == i + 1 || i < t->env_end ||
				    is_envelope(t, i, c)) {
					if (c > t->env_end)
						t->env_end = c;
					i++;
					continue;
				}
				k = i + 1;
				while (k < c && s[k] == ' ')
					k++;
				tp_emit(t, i, c + 1,
					s[k] == '"' ? "json" : "dict", 1);
				i = c + 1;
				continue;
			}
			if (ch == '[') {
				if (is_collection(s, i, c)) {
					tp_emit(t, i, c + 1, "list", 1);
					i = c + 1;
					continue;
				}
				i++;
				continue;
			}
			/* nickname(<redacted:id>): a display name */
			if (c == i + 14 &&
			    memcmp(s + i + 1, "<redacted:id>", 13) == 0 &&
			    (k = name_start(t, i)) < i) {
				tp_red(t, k, i, "user");
				i++;
				continue;
			}
			/* pymysql's (1406, "Data too long ..."): the errno
			 * stays, the text is a string */
			if (mysql_errno(t, i, c)) {
				i++;
				continue;
			}
			/* ( after a name is a call or a repr: walk it */
			if ((i == t->b || !is_word(s[i - 1])) && c > i + 1 &&
			    (is_collection(s, i, c) ||
			     (at_val && !t->keep_val))) {
				tp_emit(t, i, c + 1, "tuple", 1);
				i = c + 1;
				continue;
			}
			i++;
			continue;
		}
		if (is_keych(ch) && (i == t->b || !is_keych(s[i - 1]))) {
			w = run_end(s, e, i, is_keych);
			/* scheme://, data: */
			if (w + 2 < e && s[w] == ':' && s[w + 1] == '/' &&
			    s[w + 2] == '/' && is_alpha(ch)) {
				i = tp_url(t, w);
				continue;
			}
			if (w - i == 4 && ci_eq(s + i, "data", 4) && w < e &&
			    s[w] == ':') {
				k = w + 1;
				while (k < e && !value_term(s[k]))
					k++;
				if (k - w > 12) {
					sb_put(t->o, (const char *)s + t->from,
					       w + 1 - t->from);
					t->from = w + 1;
					tp_emit(t, w + 1, k, "data", 1);
					i = k;
					continue;
				}
			}
			/* key= and code-key: */
			if (w < e && s[w] == '=' &&
			    !(w + 1 < e && s[w + 1] == '=') && !at_val) {
				tp_key(t, i, w, w);
				i = w + 1;
				continue;
			}
			if (w < e && s[w] == ':' && !at_val &&
			    (IN_CODE_KEYS(s + i, w - i) ||
			     cred_kind(s, i, w, t->b))) {
				tp_key(t, i, w, w);
				i = w + 1;
				continue;
			}
			if (at_val) {
				k = w;
				/* base64 and paths too: up to a delimiter */
				while (k < e && !value_term(s[k]) &&
				       s[k] != '(')
					k++;
				if (t->keep_val ||
				    word_in(s + i, k - i, code_words,
					    sizeof code_words /
						sizeof code_words[0]) ||
				    (run_end(s, k, i, is_digit) == k &&
				     k - i <= 5) ||
				    (k < e && s[k] == '(')) {
					i = k;
					continue;
				}
				if (run_end(s, k, i, is_digit) == k &&
				    k - i >= 6) {
					i = k; /* the patterns make it an id */
					continue;
				}
				tp_emit(t, i, k, "val", 1);
				i = k;
				continue;
			}
			/* a JWT's dotted parts are the patterns' to take */
			if (w - i >= 10 && has_prefix(s, w, i, "eyJ", 3)) {
				while (w < e && (is_keych(s[w]) || s[w] == '.'))
					w++;
				i = w;
				continue;
			}
			/* long identifiers: ids, tokens, hashes */
			{
				size_t digits = 0, letters = 0;
				int secret = 0;
				const char *kind;

				for (k = i; k < w; k++) {
					digits += is_digit(s[k]);
					letters += is_alpha(s[k]);
				}
				kind = key_prefix(s, i, w, &secret);
				if (kind) { /* a key cut short */
					tp_red(t, i, w, kind);
					i = w;
					continue;
				}
				if (!secret &&
				    !(w - i > 2 && s[i] == '0' &&
				      s[i + 1] == 'x') &&
				    ((w - i >= 20 && digits && letters) ||
				     (w - i >= 32 && digits && !letters) ||
				     (w - i >= 10 &&
				      ci_eq(s + i, "wxid_", 5)))) {
					tp_emit(t, i, w, "id", 0);
					i = w;
					continue;
				}
			}
			i = w;
			continue;
		}
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

/*
 * The guard: line by line, the traceback's structure (frames, source
 * lines, headers) is kept and every message is templated (if tmpl), then
 * the patterns run over it all, source lines in code mode.  Appends to out.
 */
static void guard(const unsigned char *t, size_t n, int tmpl, struct sbuf *out)
{
	struct lstate st = {LK_NONE, 0, 0, 0, 0};
	struct sbuf mid = {NULL, 0, 0, 0}, ln = {NULL, 0, 0, 0};
	struct sbuf pre = {NULL, 0, 0, 0};
	uint32_t *cl = NULL, *stk = NULL, *np;
	size_t rd = 0, end, m, ce, name, seg = 0, maxl = 0;
	int kind, code, seg_code = 1;
	const unsigned char *nl;
	struct tpl tp;

	memset(&tp, 0, sizeof tp);
	if (tmpl) {
		/* the longest line bounds the bracket tables */
		for (rd = 0; rd < n; rd = end + 1) {
			nl = memchr(t + rd, '\n', n - rd);
			end = nl ? (size_t)(nl - t) : n;
			if (end - rd > maxl)
				maxl = end - rd;
		}
		if (maxl >= UINT32_MAX)
			tmpl = 0; /* 4 GB on one line: the patterns only */
		else {
			cl = malloc((maxl + 1) * sizeof *cl);
			stk = malloc((maxl + 1) * sizeof *stk);
			if (!cl || !stk || sb_reserve(&ln, maxl) != 0) {
				out->oom = 1;
				goto done;
			}
		}
	}
	if (sb_reserve(&mid, n + n / 8 + 16) != 0) {
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
			redact_mode(mid.p + seg, mid.len - seg, out, seg_code);
			seg = mid.len;
			seg_code = code;
		}
		if (kind == LK_EXCERPT && ph_end(t, m, ce) != ce) {
			/* a document's line: user text, whatever it says */
			char buf[32];
			int w = snprintf(buf, sizeof buf, "<excerpt:%zu>",
					 n_chars(t, m, ce));

			sb_put(&mid, (const char *)t + rd, m - rd);
			sb_put(&mid, buf, (size_t)w);
			sb_put(&mid, (const char *)t + ce, end - ce);
		} else if (code || !tmpl) {
			sb_put(&mid, (const char *)t + rd, end - rd);
		} else {
			size_t mb = kind == LK_EXC ? m + name : m, ll;

			sb_put(&mid, (const char *)t + rd, mb - rd);
			/* the patterns first, on the raw message: a quote
			 * paired wrongly must not hide a 'password': '...' */
			pre.len = 0;
			redact_mode((const char *)t + mb, end - mb, &pre, 0);
			if (pre.len > maxl) {
				if (pre.len >= UINT32_MAX ||
				    sb_reserve(&ln, pre.len) != 0 ||
				    !(np = realloc(cl, (pre.len + 1) *
							   sizeof *cl))) {
					out->oom = 1;
					goto done;
				}
				cl = np;
				if (!(np = realloc(stk, (pre.len + 1) *
							    sizeof *stk))) {
					out->oom = 1;
					goto done;
				}
				stk = np;
				maxl = pre.len;
			}
			if (pre.oom) {
				out->oom = 1;
				goto done;
			}
			ll = unescape_quotes((const unsigned char *)pre.p,
					     pre.len, (unsigned char *)ln.p);
			match_brackets((unsigned char *)ln.p, ll, cl, stk);
			tp.s = (const unsigned char *)ln.p;
			tp.b = 0;
			tp.e = ll;
			tp.o = &mid;
			tp.cl = cl;
			template_msg(&tp);
		}
		if (nl)
			sb_put(&mid, "\n", 1);
		if (mid.oom) {
			out->oom = 1;
			goto done;
		}
	}
	redact_mode(mid.p + seg, mid.len - seg, out, seg_code);
done:
	free(mid.p);
	free(pre.p);
	free(ln.p);
	free(cl);
	free(stk);
}

/* ---- pass 3: cap and truncate ------------------------------------------ */

/* If cutting at pos splits a placeholder, its start and end. */
static int in_placeholder(const char *t, size_t len, size_t pos, size_t *ps,
			  size_t *pe)
{
	size_t k, lim = pos > 32 ? pos - 32 : 0, b, e;

	for (k = pos; k > lim; k--) {
		if (t[k - 1] == '>' || t[k - 1] == '\n')
			return 0;
		if (t[k - 1] != '<')
			continue;
		b = k - 1;
		/* "<redacted:ip>", and the guard's "<str:42>", "<id>" */
		for (e = b + 1; e < len && e - b < 48 &&
				((t[e] >= 'a' && t[e] <= 'z') || t[e] == '_' ||
				 t[e] == ':' || t[e] == '.' ||
				 (t[e] >= '0' && t[e] <= '9'));
		     e++)
			;
		if (e >= len || t[e] != '>' || pos <= b || pos > e)
			return 0;
		*ps = b;
		*pe = e + 1;
		return 1;
	}
	return 0;
}

static int is_cont(char c)
{
	return ((unsigned char)c & 0xc0) == 0x80;
}

/* The largest cut <= pos that splits neither a character nor a placeholder. */
static size_t cut_back(const char *t, size_t len, size_t pos)
{
	size_t ps, pe;

	if (pos >= len)
		return len;
	while (pos > 0 && is_cont(t[pos]))
		pos--;
	if (in_placeholder(t, len, pos, &ps, &pe))
		pos = ps;
	return pos;
}

/* The smallest start >= pos that splits neither. */
static size_t cut_fwd(const char *t, size_t len, size_t pos)
{
	size_t ps, pe;

	while (pos < len && is_cont(t[pos]))
		pos++;
	if (pos < len && in_placeholder(t, len, pos, &ps, &pe))
		pos = pe;
	return pos;
}

/*
 * Shrinks t (len bytes, room for len + 1) to at most max bytes: the head
 * (about a quarter: the first frames say where it started) and the tail
 * (the rest: the exception is at the end) around a marker line, both cut at
 * a line boundary where one is near.  Returns the new length.
 */
static size_t fit(char *t, size_t len, size_t max)
{
	char marker[80];
	size_t mmax, budget, hb, tb, h, ts, k, ml;
	int w;

	if (len <= max)
		return len;
	w = snprintf(marker, sizeof marker, MARKER_FMT, len);
	mmax = w > 0 ? (size_t)w : sizeof marker;
	if (max < mmax + 32) {
		/* too small for a marker: as much of the tail as fits */
		ts = cut_fwd(t, len, len - max);
		memmove(t, t + ts, len - ts);
		return len - ts;
	}
	budget = max - mmax;
	hb = budget / 4;
	tb = budget - hb;
	h = cut_back(t, len, hb);
	for (k = hb; k > hb / 2; k--)
		if (t[k - 1] == '\n') {
			h = k - 1;
			break;
		}
	ts = cut_fwd(t, len, len - tb);
	for (k = len - tb; k < len && k < len - tb + tb / 2; k++)
		if (t[k] == '\n') {
			ts = k + 1;
			break;
		}
	w = snprintf(marker, sizeof marker, MARKER_FMT, ts - h);
	ml = w > 0 ? (size_t)w : 0;
	if (ml > mmax)
		ml = 0; /* cannot happen: ts - h < len */
	memmove(t + h + ml, t + ts, len - ts);
	memcpy(t + h, marker, ml);
	return h + ml + (len - ts);
}

/* ---- the two entry points ---------------------------------------------- */

char *telespool__clean_name(const char *s, size_t len, size_t max_bytes)
{
	char stackbuf[512], *a = stackbuf, *heap = NULL;
	const unsigned char *u;
	struct sbuf out = {NULL, 0, 0, 0};
	size_t an, b = 0, e, w;

	if (!s)
		len = 0;
	if (len > sizeof stackbuf / 3) {
		if (len > SIZE_MAX / 3)
			return NULL;
		heap = a = malloc(len * 3);
		if (!a)
			return NULL;
	}
	an = clean_bytes(a, (const unsigned char *)s, len, 0);
	u = (const unsigned char *)a;
	e = an;
	while (b < e && (w = ws_at(u + b, e - b)) != 0)
		b += w;
	while (e > b && (w = ws_before(u + b, e - b)) != 0)
		e -= w;
	if (sb_reserve(&out, e - b) == 0)
		redact(u + b, e - b, &out);
	free(heap);
	if (out.oom) {
		free(out.p);
		return NULL;
	}
	if (out.len > max_bytes) {
		out.len = cut_back(out.p, out.len, max_bytes);
		while (out.len && (w = ws_before((const unsigned char *)out.p,
						 out.len)) != 0)
			out.len -= w;
	}
	out.p[out.len] = '\0';
	return out.p;
}

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
	an = clean_bytes(a, (const unsigned char *)s, len, 1);
	if (guarded)
		an = normalize(a, an);
	if (strict)
		an = strict_filter(a, an);
	if (sb_reserve(&out, an + an / 16 + 32) == 0)
		guard((const unsigned char *)a, an, guarded && !strict, &out);
	free(a);
	if (out.oom) {
		free(out.p);
		return NULL;
	}
	out.len = fit(out.p, out.len, max_bytes);
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
