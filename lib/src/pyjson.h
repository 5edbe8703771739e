/*
 * pyjson.h - JSON read and written the way LangBot's Python sender sees it.
 *
 * LangBot POSTs json.dumps(payload, ensure_ascii=False, separators=(",",
 * ":"), allow_nan=False).  To store the very bytes it would have sent, a
 * payload is parsed as json.loads() would (objects keep their key order, a
 * repeated key keeps its first place and its last value, integers of any
 * size stay exact, NaN and Infinity are refused) and printed as json.dumps()
 * would (floats in Python's shortest repr, strings with only '"', '\\' and
 * control characters escaped).  Everything else (cJSON) prints numbers its
 * own way, so the bodies that must match LangBot's go through this module.
 */
#ifndef TELESPOOL_PYJSON_H
#define TELESPOOL_PYJSON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum pj_type { PJ_NULL, PJ_FALSE, PJ_TRUE, PJ_NUM, PJ_STR, PJ_ARR, PJ_OBJ };

/* A value.  Members of an object carry their key; children are a list. */
struct pj {
	enum pj_type type;
	char *key; /* object members: decoded UTF-8 (NUL-terminated) */
	size_t key_len;
	char *str; /* PJ_STR: decoded UTF-8; PJ_NUM: canonical Python text */
	size_t len;
	char *out; /* PJ_STR: when set, printed instead of str (cleaned) */
	size_t out_len;
	int trusted;  /* PJ_STR: already clean (the caller's own, cleaned
		      * before): cleaning leaves it as it is */
	int is_float; /* PJ_NUM: a float (else an int) */
	struct pj *child, *last; /* containers */
	struct pj *next;         /* next member or item */
	size_t n;                /* containers: number of children */
	unsigned key_hash;       /* object members */
};

/* Payloads larger than this are refused (parsing stays well bounded). */
#define TELESPOOL_PAYLOAD_MAX (4 * 1024 * 1024)
/* Deeper nesting is refused, as Python's recursion limit would. */
#define PJ_PARSE_DEPTH_MAX 512
/* Python's default int_max_str_digits (3.11+): longer ints do not encode. */
#define PJ_INT_DIGITS_MAX 4300

/*
 * Parses one JSON value from text[0..len) (surrounding white space allowed,
 * nothing else).  Returns the value (free with telespool__pj_free()), or NULL
 * with *why set to a static explanation; *oom is set when the failure was
 * out of memory.
 */
struct pj *telespool__pj_parse(const char *text, size_t len, const char **why,
			       int *oom);

void telespool__pj_free(struct pj *v);

/* New nodes; NULL when out of memory.  Strings are copied. */
struct pj *telespool__pj_new(enum pj_type type);
struct pj *telespool__pj_string(const char *s, size_t len);
struct pj *telespool__pj_int(long long v);

/* Sets a key on v (copied).  Returns 0, or -1 when out of memory. */
int telespool__pj_set_key(struct pj *v, const char *key);
/* Appends child to a container. */
void telespool__pj_append(struct pj *parent, struct pj *child);
/* Removes child (a direct child of parent) and frees it. */
void telespool__pj_remove(struct pj *parent, struct pj *child);
/* Replaces old (a direct child of parent) with repl, keeping old's key and
 * place, and frees old. */
void telespool__pj_replace(struct pj *parent, struct pj *old, struct pj *repl);
/* The member called key, or NULL. */
struct pj *telespool__pj_get(const struct pj *obj, const char *key);

/* Python's repr of a finite double into out (at least 32 bytes). */
void telespool__pj_float_repr(double x, char *out);

/* strtod in the "C" locale. */
double telespool__pj_strtod(const char *s);

/*
 * Prints v as json.dumps(v, ensure_ascii=False, separators=(",", ":"))
 * does.  Returns a malloc'd string (length in *len), or NULL when out of
 * memory.
 */
char *telespool__pj_print(const struct pj *v, size_t *len);

/*
 * Nonzero when one of the eight bytes in w needs escaping in a JSON string
 * (below 0x20, '"' or '\\'): the usual bit tricks for "has a byte below n"
 * and "has a zero byte", exact for "any", which is all that is asked.  The
 * writers skip eight bytes at a time while this is zero.
 */
static inline uint64_t telespool__json_needs_escape8(uint64_t w)
{
	const uint64_t ones = 0x0101010101010101ULL, high = ones * 0x80;
	uint64_t quote = w ^ (ones * '"'), bslash = w ^ (ones * '\\');
	return ((w - ones * 0x20) | (quote - ones) | (bslash - ones)) & ~w &
	       high;
}

/*
 * The escape json.dumps writes for byte c (below 0x20, '"' or '\\') into
 * esc (6 bytes): \" \\ \b \f \n \r \t, or \u00XX in lower-case hex.
 * Returns its length (2 or 6).
 */
static inline size_t telespool__json_escape(unsigned char c, char esc[6])
{
	static const char hex[] = "0123456789abcdef";
	static const char from[] = "\"\\\b\f\n\r\t", to[] = "\"\\bfnrt";
	const char *p = c != 0 ? strchr(from, c) : NULL;
	esc[0] = '\\';
	if (p != NULL) {
		esc[1] = to[p - from];
		return 2;
	}
	memcpy(esc + 1, "u00", 3);
	esc[4] = hex[c >> 4];
	esc[5] = hex[c & 15];
	return 6;
}

#endif
