/*
 * redact.c - redaction (redact.h): every secret, identity and address in a
 * string becomes "<redacted:KIND>".
 *
 * It receives text already cleaned (clean.h: valid UTF-8, no NULs or
 * control characters) and hands it back to be capped; it never repairs,
 * trims nor cuts text itself.  Redaction runs before the cap so that a
 * secret cut in half by the cap can never be half-kept.
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
 *  - After a colon a password or secret runs to the line's end, a comma or
 *    a semicolon ("password: two words"); after '=' to white space.
 *  - A number after a "code", "status" or "errno" key is an error code
 *    (Lark 230013), and CamelCase before ':' is an exception name
 *    (InvalidToken: Not Found), not a key.
 *
 * Known gap: the patterns alone (clean_name, clean_text) do not undo
 * evasive spellings; the traceback guard (traceback.c) does, first.
 */
#include "redact.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clean.h"
#include "scan.h"

static int has_digit(const unsigned char *s, size_t b, size_t e)
{
	for (; b < e; b++)
		if (is_digit(s[b]) || s[b] == '*')
			return 1;
	return 0;
}

/* ---- the scanners ------------------------------------------------------- */

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

static int is_dotted(unsigned char c)
{
	return is_word(c) || c == '.';
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

/* f"Bearer {token}" in a source line: a template, not a value. */
static int is_template(const unsigned char *s, size_t b, size_t e)
{
	return e - b >= 2 && s[b] == '{' && s[e - 1] == '}' &&
	       run_end(s, e - 1, b + 1, is_dotted) == e - 1;
}

/* The key before the '=' or ':' at i: skips "  ", a closing quote (maybe
 * escaped), then a name.  Sets [*kb, *ke); returns 0 if there is none. */
static int assign_key(const unsigned char *s, size_t i, size_t *kb, size_t *ke)
{
	size_t k = i;

	while (k > 0 && i - k < 8 && (s[k - 1] == ' ' || s[k - 1] == '\t'))
		k--;
	if (k > 0 && (s[k - 1] == '"' || s[k - 1] == '\'')) {
		k--;
		if (k > 0 && s[k - 1] == '\\')
			k--;
	}
	*ke = k;
	while (k > 0 && *ke - k < 40 && is_keyname(s[k - 1]))
		k--;
	*kb = k;
	return *kb != *ke;
}

/* Where the value after the '=' or ':' at i starts, past its opening quote
 * (*quote, 0 if none; *esc when it is \" of JSON inside a quoted string).
 * Returns 0 if the line ends first. */
static size_t assign_value(const unsigned char *s, size_t n, size_t i,
			   unsigned char *quote, int *esc)
{
	size_t v = i + 1;

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
		*quote = s[v];
		return v + 1;
	}
	if (s[v] == '\\' && v + 1 < n &&
	    (s[v + 1] == '"' || s[v + 1] == '\'')) {
		*quote = s[v + 1]; /* JSON inside a quoted string: \"...\" */
		*esc = 1;
		return v + 2;
	}
	return v;
}

/* The end of a quoted value starting at vb: its closing quote, or the
 * line's end. */
static size_t quoted_end(const unsigned char *s, size_t n, size_t vb,
			 unsigned char quote, int esc)
{
	size_t ve;

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
	return ve;
}

/* Whether the unquoted value at vb of the key s[kb..ke), after the '=' or
 * ':' at i, is code rather than a value: a structure (its own keys are
 * looked at), a call or subscript, a code word or type name, the key's own
 * name (password=password, key=self.key), or a variable on a source line
 * (Plain(text=reply_text)). */
static int value_is_code(const struct red *r, size_t i, size_t kb, size_t ke,
			 size_t vb)
{
	const unsigned char *s = r->s;
	size_t n = r->n, w, c;
	int ends;

	if (s[vb] == '[' || s[vb] == '{' || s[vb] == '(')
		return 1;
	w = run_end(s, n, vb, is_dotted);
	if (w <= vb || is_digit(s[vb]))
		return 0;
	if (w < n && (s[w] == '(' || s[w] == '['))
		return 1;
	ends = w == n || value_term(s[w]);
	if (ends && (word_in(s + vb, w - vb, code_words,
			     sizeof code_words / sizeof code_words[0]) ||
		     (s[i] == ':' &&
		      word_in(s + vb, w - vb, type_words,
			      sizeof type_words / sizeof type_words[0]))))
		return 1;
	c = w; /* last dotted component */
	while (c > vb && s[c - 1] != '.')
		c--;
	if (ends && w - c == ke - kb && ci_same(s + c, s + kb, w - c))
		return 1;
	return r->code && ends;
}

/* The end of the unquoted value at vb of a key of kind, after the '=' or
 * ':' at i. */
static size_t unquoted_end(const struct red *r, size_t i, size_t vb,
			   const char *kind)
{
	const unsigned char *s = r->s;
	size_t n = r->n, ve = vb;

	if (strcmp(kind, "authorization") == 0) {
		while (ve < n && !auth_value_term(s[ve]))
			ve++;
		while (ve > vb && (s[ve - 1] == ' ' || s[ve - 1] == '\t'))
			ve--;
		return ve;
	}
	while (ve < n && !value_term(s[ve]))
		ve++;
	/* "password: two words": a password runs to the line's end (or a ,
	 * ;) after a colon */
	if (s[i] == ':' && !r->code &&
	    (strcmp(kind, "password") == 0 || strcmp(kind, "secret") == 0))
		ve = multiword_end(s, n, ve);
	return ve;
}

/* An Authorization value s[vb..ve) keeps its scheme: where the credential
 * starts, and *kind "bearer" for a bearer token. */
static size_t auth_scheme(const unsigned char *s, size_t vb, size_t ve,
			  const char **kind)
{
	size_t a = run_end_max(s, ve, vb, is_alpha, 17);

	if (!(a > vb && a - vb <= 16 && a < ve && s[a] == ' '))
		return vb;
	if (a - vb == 6 && ci_eq(s + vb, "bearer", 6))
		*kind = "bearer";
	while (a < ve && s[a] == ' ')
		a++;
	return a;
}

static size_t try_assign(struct red *r, size_t i)
{
	const unsigned char *s = r->s;
	size_t kb, ke, vb, ve;
	const struct keyword *kw;
	const char *kind;
	unsigned char quote = 0;
	int esc = 0;

	if (!assign_key(s, i, &kb, &ke))
		return 0;
	kw = match_key(s, kb, ke, kb == 0 || !is_keyname(s[kb - 1]));
	if (!kw)
		return 0;
	kind = kw->kind;
	/* "telegram.error.InvalidToken: Not Found" names an exception */
	if (s[i] == ':' && is_camel(s, kb, ke))
		return 0;
	vb = assign_value(s, r->n, i, &quote, &esc);
	if (vb == 0)
		return 0;
	if (quote)
		ve = quoted_end(s, r->n, vb, quote, esc);
	else if (value_is_code(r, i, kb, ke, vb))
		return 0;
	else
		ve = unquoted_end(r, i, vb, kind);
	if (strcmp(kind, "authorization") == 0)
		vb = auth_scheme(s, vb, ve, &kind);
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

void telespool__redact(const char *text, size_t n, struct sbuf *out, int code)
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

/*
 * A token s[i..w) with a key's prefix: *whole set if it is long enough for
 * the patterns; the kind returned if it is a key cut short (wrapped across
 * lines, or split by a space): 10+ characters after the prefix, 2+ digits
 * and an upper-case letter (keys are mixed case; "app-v2-release-2024" is
 * not one).
 */
const char *telespool__key_prefix(const unsigned char *s, size_t i, size_t w,
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

const char *telespool__key_kind(const unsigned char *s, size_t kb, size_t ke,
				int whole)
{
	const struct keyword *kw = match_key(s, kb, ke, whole);

	return kw ? kw->kind : NULL;
}

int telespool__is_code_word(const unsigned char *s, size_t len)
{
	return word_in(s, len, code_words,
		       sizeof code_words / sizeof code_words[0]);
}

/* ---- the short fields ---------------------------------------------------- */

char *telespool__clean_name(const char *s, size_t len, size_t max_bytes)
{
	char stackbuf[512], *a = stackbuf, *heap = NULL;
	struct sbuf out = {NULL, 0, 0, 0};
	size_t b = 0, e;

	if (!s)
		len = 0;
	if (len > sizeof stackbuf / 3) {
		if (len > SIZE_MAX / 3)
			return NULL;
		heap = a = malloc(len * 3);
		if (!a)
			return NULL;
	}
	e = telespool__clean_utf8(a, (const unsigned char *)s, len, 0);
	telespool__trim((const unsigned char *)a, &b, &e);
	if (sb_reserve(&out, e - b) == 0)
		telespool__redact(a + b, e - b, &out, 0);
	free(heap);
	if (sb_failed(&out))
		return NULL;
	out.len = telespool__cap(out.p, out.len, max_bytes);
	out.p[out.len] = '\0';
	return out.p;
}
