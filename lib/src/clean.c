/*
 * clean.c - cleaning (clean.h): valid UTF-8 without control characters,
 * trimming, and the caps.
 *
 * Linear passes over bytes; only the display text and the survey allocate
 * what they return.  Nothing here knows what a secret or a traceback is.
 */
#include "clean.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The truncation marker; its %zu is the number of bytes left out. */
#define MARKER_FMT "\n... [telespool: %zu bytes truncated] ...\n"

/* ---- UTF-8 and control characters ------------------------------------- */

/* Non-zero when one of the 8 bytes in w is below 0x20 or at or above 0x7f:
 * not plain printable ASCII.  (Bit tricks: a byte below 0x20 borrows when
 * 0x20 is subtracted; a byte at or above 0x7f carries into its top bit when
 * 0x01 is added, or has it set already.) */
static uint64_t not_printable8(uint64_t w)
{
	const uint64_t ones = 0x0101010101010101ULL, high = ones * 0x80;
	return ((w - ones * 0x20) | (w + ones) | w) & high;
}

/* The length (2-4) of the valid UTF-8 sequence at s[0..n) (s[0] is not
 * ASCII), or 0 with *bad the length of its maximal invalid subpart (1-3):
 * the bytes that one U+FFFD replaces. */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t need, k;

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
		*bad = 1; /* stray continuation, C0/C1 overlong, F5..FF */
		return 0;
	}
	for (k = 1; k <= need && k < n; k++) {
		if (s[k] < lo || s[k] > hi)
			break;
		lo = 0x80;
		hi = 0xbf;
	}
	if (k <= need) {
		*bad = k;
		return 0;
	}
	return k;
}

size_t telespool__clean_utf8(char *dst, const unsigned char *s, size_t n,
			     int text)
{
	size_t i = 0, o = 0, k, bad;
	unsigned char c;

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
		k = utf8_seq(s + i, n - i, &bad);
		if (!k) {
			memcpy(dst + o, "\xef\xbf\xbd", 3);
			o += 3;
			i += bad;
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

/* ---- caps ---------------------------------------------------------------- */

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
size_t telespool__fit(char *t, size_t len, size_t max)
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

void telespool__trim(const unsigned char *s, size_t *b, size_t *e)
{
	size_t w;

	while (*b < *e && (w = ws_at(s + *b, *e - *b)) != 0)
		*b += w;
	while (*e > *b && (w = ws_before(s + *b, *e - *b)) != 0)
		*e -= w;
}

size_t telespool__cap(const char *t, size_t len, size_t max)
{
	size_t w;

	if (len <= max)
		return len;
	len = cut_back(t, len, max);
	while (len && (w = ws_before((const unsigned char *)t, len)) != 0)
		len -= w;
	return len;
}

/* ---- display text and JSON trees --------------------------------------- */

char *telespool__clean_display(const char *s, size_t max)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	size_t len = strlen((const char *)p), i = 0, o = 0, n, w, bad;
	char *out = malloc((len < max ? len : max) * 3 + 4);

	if (out == NULL)
		return NULL;
	while (i < len) {
		n = p[i] < 0x80 ? 1 : utf8_seq(p + i, len - i, &bad);
		w = n ? n : 3;
		if (o + w > max)
			break;
		memcpy(out + o, n ? (const char *)p + i : "\xef\xbf\xbd", w);
		o += w;
		i += n ? n : 1;
	}
	out[o] = '\0';
	return out;
}

int telespool__clean_cjson(cJSON *node, int depth, size_t cap,
			   const struct telespool__cjson_cleaner *how)
{
	int members = 0;
	for (cJSON *child = node->child, *next; child != NULL; child = next) {
		next = child->next;
		if (++members > how->max_members ||
		    (depth >= how->max_depth &&
		     (cJSON_IsObject(child) || cJSON_IsArray(child)))) {
			cJSON_Delete(cJSON_DetachItemViaPointer(node, child));
			continue;
		}
		if (child->string != NULL) {
			char *key = how->key(child->string);
			if (key == NULL)
				return -1;
			if (!(child->type & cJSON_StringIsConst))
				cJSON_free(child->string);
			child->string = key;
			child->type &= ~cJSON_StringIsConst;
		}
		if (cJSON_IsString(child) && child->valuestring != NULL) {
			char *v = how->value(child->valuestring, child->string,
					     depth, cap);
			if (v == NULL)
				return -1;
			cJSON_free(child->valuestring);
			child->valuestring = v;
		} else if (cJSON_IsObject(child) || cJSON_IsArray(child)) {
			if (telespool__clean_cjson(child, depth + 1, cap,
						   how) != 0)
				return -1;
		}
	}
	return 0;
}

/* A survey is Space's JSON, handed to LangBot's UI: it gets the shape caps
 * of survey answers and heartbeat features (body.c), so that no reader of
 * it (Python's json, a recursive renderer) meets more than 8 levels. */
#define SURVEY_MAX_DEPTH   8
#define SURVEY_MAX_MEMBERS 256
#define SURVEY_STRING_MAX  4096
#define SURVEY_KEY_MAX     TELESPOOL_NAME_MAX

static char *clean_survey_key(const char *key)
{
	return telespool__clean_display(key, SURVEY_KEY_MAX);
}

static char *clean_survey_value(const char *s, const char *key, int depth,
				size_t cap)
{
	/* Not the id: LangBot's answer quotes it. */
	int id = depth == 1 && key != NULL &&
		 (strcmp(key, "survey_id") == 0 || strcmp(key, "id") == 0);
	return telespool__clean_display(s, id ? SURVEY_STRING_MAX : cap);
}

/* A parsed survey: valid UTF-8 strings and keys, capped, containers at most
 * SURVEY_MAX_DEPTH deep with SURVEY_MAX_MEMBERS each. */
static const struct telespool__cjson_cleaner survey_cleaner = {
    SURVEY_MAX_DEPTH, SURVEY_MAX_MEMBERS, clean_survey_key, clean_survey_value};

/* The JSON text without its \u0000 escapes: cJSON keeps strings as C
 * strings, so one would silently cut the rest of its string off. */
static char *drop_nul_escapes(const char *json)
{
	size_t len = strlen(json), o = 0;
	int in_string = 0;
	char *out = malloc(len + 1);
	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		char c = json[i];
		if (in_string && c == '\\' && i + 1 < len) {
			if (strncmp(json + i + 1, "u0000", 5) == 0) {
				i += 5;
				continue;
			}
			out[o++] = c;
			c = json[++i];
		} else if (c == '"') {
			in_string = !in_string;
		}
		out[o++] = c;
	}
	out[o] = '\0';
	return out;
}

char *telespool__clean_survey(const char *json, int *oom)
{
	static const size_t caps[] = {SURVEY_STRING_MAX, 1024, 256, 64, 16, 0};
	char *text = drop_nul_escapes(json);
	cJSON *orig = text ? cJSON_ParseWithOpts(text, NULL, 1) : NULL;
	char *out = NULL;

	*oom = text == NULL;
	free(text);
	if (orig == NULL || !cJSON_IsObject(orig)) {
		cJSON_Delete(orig);
		return NULL;
	}
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		cJSON *c = cJSON_Duplicate(orig, 1);
		if (c == NULL || telespool__clean_cjson(c, 1, caps[i],
							&survey_cleaner) != 0) {
			cJSON_Delete(c);
			*oom = 1;
			break;
		}
		out = cJSON_PrintUnformatted(c);
		cJSON_Delete(c);
		if (out == NULL) {
			*oom = 1;
			break;
		}
		if (strlen(out) <= TELESPOOL_BODY_MAX)
			break;
		cJSON_free(out);
		out = NULL;
	}
	cJSON_Delete(orig);
	return out;
}
