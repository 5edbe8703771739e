/*
 * config.c - reads the three settings the uploader needs from LangBot's
 * data/config.yaml, data/labels/instance_id.json and the environment.
 *
 * The YAML file belongs to the user and may be anything, so it is walked
 * with libyaml's event parser and never loaded into a document: aliases are
 * not expanded (a "billion laughs" file costs what it weighs), every
 * collection we do not care about is skipped by counting its start and end
 * events, and nesting is bounded by TSU_CONFIG_MAX_DEPTH without recursion.
 *
 * Where LangBot's own loader (PyYAML) could see something we cannot without
 * expanding it - an alias or a merge key ("<<") where one of our settings
 * lives - the file is refused rather than guessed at: guessing wrong about
 * disable_telemetry would send data after the user opted out.
 *
 * space.disable_telemetry is typed the way PyYAML's FullLoader (YAML 1.1)
 * types it, because LangBot decides by Python truthiness and types the
 * environment override by what the file holds (see config.h).  What cannot
 * be typed for sure (an unknown tag) counts as disabled.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <yaml.h>

/* instance_id.json is a few dozen bytes; anything much larger is not it. */
#define LABELS_MAX_BYTES (64 * 1024)

enum section { SEC_NONE, SEC_SPACE, SEC_SYSTEM, SEC_PROXY };

/* What space.disable_telemetry holds, as PyYAML would construct it. */
enum kind {
	K_ABSENT, /* no such key */
	K_NULL,
	K_BOOL,
	K_INT,
	K_FLOAT,
	K_STR, /* also dates and anything else PyYAML makes a non-number of */
	K_SEQ,
	K_MAP,
	K_UNKNOWN /* a tag we do not know: counts as true (fail closed) */
};

/* Walk state for one document. */
struct walk {
	yaml_parser_t parser;
	const char *name; /* file name for messages */
	char *err;
	size_t errlen;
	int depth; /* nesting of the collection being read; top mapping = 1 */

	char *url; /* NULL: space.url absent */
	int url_set;
	int url_bad;       /* space.url is a sequence or a mapping */
	int space_null;    /* the space key holds null: LangBot sends nothing */
	int proxy_null;    /* the proxy key holds null (or is no mapping) */
	enum kind dkind;   /* space.disable_telemetry */
	int dtruthy;       /* ... and its Python truthiness */
	char *instance_id; /* NULL: system.instance_id absent */
	char *proxy[2];    /* proxy.http, proxy.https; NULL: absent */
	int proxy_bad[2];  /* not a scalar */
};

static void set_err(char *err, size_t errlen, const char *name, const char *msg)
{
	if (err && errlen > 0)
		snprintf(err, errlen, "%s: %s", name, msg);
}

/* Messages carry 1-based positions; libyaml's marks are 0-based. */
static void set_err_at(struct walk *w, const yaml_mark_t *m, const char *msg)
{
	if (w->err && w->errlen > 0)
		snprintf(w->err, w->errlen, "%s:%zu:%zu: %s", w->name,
			 m->line + 1, m->column + 1, msg);
}

static void set_err_key(struct walk *w, const yaml_mark_t *m, const char *key,
			const char *msg)
{
	if (w->err && w->errlen > 0)
		snprintf(w->err, w->errlen, "%s:%zu:%zu: %s %s", w->name,
			 m->line + 1, m->column + 1, key, msg);
}

/*
 * Turns libyaml's error into "FILE:LINE:COL: problem".  Reader errors
 * (invalid UTF-8, control characters) only know a byte offset; for UTF-8
 * input we count lines up to it so the user still gets a line number.
 */
static void set_parser_err(struct walk *w, const unsigned char *buf, size_t len)
{
	yaml_parser_t *p = &w->parser;
	const char *problem = p->problem ? p->problem : "unknown error";
	size_t line, col;

	if (!w->err || w->errlen == 0)
		return;
	switch (p->error) {
	case YAML_MEMORY_ERROR:
		set_err(w->err, w->errlen, w->name, "out of memory");
		return;
	case YAML_READER_ERROR:
		if (p->encoding == YAML_UTF8_ENCODING ||
		    p->encoding == YAML_ANY_ENCODING) {
			size_t off =
			    p->problem_offset < len ? p->problem_offset : len;
			line = 1;
			col = 1;
			for (size_t i = 0; i < off; i++) {
				if (buf[i] == '\n' ||
				    (buf[i] == '\r' &&
				     (i + 1 >= len || buf[i + 1] != '\n'))) {
					line++;
					col = 1;
				} else if ((buf[i] & 0xc0) != 0x80) {
					col++; /* characters, as libyaml counts */
				}
			}
			snprintf(w->err, w->errlen, "%s:%zu:%zu: %s", w->name,
				 line, col, problem);
		} else {
			snprintf(w->err, w->errlen, "%s: byte %zu: %s", w->name,
				 p->problem_offset, problem);
		}
		return;
	default:
		line = p->problem_mark.line + 1;
		col = p->problem_mark.column + 1;
		if (p->context)
			snprintf(w->err, w->errlen,
				 "%s:%zu:%zu: %s (%s at line %zu)", w->name,
				 line, col, problem, p->context,
				 p->context_mark.line + 1);
		else
			snprintf(w->err, w->errlen, "%s:%zu:%zu: %s", w->name,
				 line, col, problem);
		return;
	}
}

/* The parser's input, kept for error positions. */
struct input {
	const unsigned char *buf;
	size_t len;
};

static int next(struct walk *w, const struct input *in, yaml_event_t *ev)
{
	if (!yaml_parser_parse(&w->parser, ev)) {
		set_parser_err(w, in->buf, in->len);
		return -1;
	}
	return 0;
}

static int scalar_eq(const yaml_event_t *ev, const char *s)
{
	size_t n = strlen(s);
	return ev->type == YAML_SCALAR_EVENT && ev->data.scalar.length == n &&
	       memcmp(ev->data.scalar.value, s, n) == 0;
}

static int has_tag(const yaml_event_t *ev, const char *tag)
{
	return ev->data.scalar.tag &&
	       strcmp((const char *)ev->data.scalar.tag, tag) == 0;
}

/* YAML 1.1 null as PyYAML resolves it: only untagged plain scalars. */
static int scalar_is_null(const yaml_event_t *ev)
{
	if (ev->type != YAML_SCALAR_EVENT)
		return 0;
	if (has_tag(ev, YAML_NULL_TAG))
		return 1;
	if (!ev->data.scalar.plain_implicit ||
	    ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return 0;
	return ev->data.scalar.length == 0 || scalar_eq(ev, "~") ||
	       scalar_eq(ev, "null") || scalar_eq(ev, "Null") ||
	       scalar_eq(ev, "NULL");
}

/* A plain "<<" key is a YAML 1.1 merge key, which PyYAML honours. */
static int is_merge_key(const yaml_event_t *ev)
{
	return scalar_eq(ev, "<<") &&
	       (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ||
		has_tag(ev, "tag:yaml.org,2002:merge"));
}

static int is_start(const yaml_event_t *ev)
{
	return ev->type == YAML_MAPPING_START_EVENT ||
	       ev->type == YAML_SEQUENCE_START_EVENT;
}

static int is_end(const yaml_event_t *ev)
{
	return ev->type == YAML_MAPPING_END_EVENT ||
	       ev->type == YAML_SEQUENCE_END_EVENT;
}

static const char *kind_name(const yaml_event_t *ev)
{
	switch (ev->type) {
	case YAML_MAPPING_START_EVENT:
		return "a mapping";
	case YAML_SEQUENCE_START_EVENT:
		return "a sequence";
	case YAML_ALIAS_EVENT:
		return "an alias";
	default:
		return "a scalar";
	}
}

static int enter(struct walk *w, const yaml_event_t *ev, int depth)
{
	if (depth > TSU_CONFIG_MAX_DEPTH) {
		char msg[64];
		snprintf(msg, sizeof msg, "nesting deeper than %d levels",
			 TSU_CONFIG_MAX_DEPTH);
		set_err_at(w, &ev->start_mark, msg);
		return -1;
	}
	return 0;
}

/*
 * Skips the node that ev starts (ev itself is not consumed: the caller
 * deletes it), noting in *nonempty (if not NULL) whether a sequence or
 * mapping has any entry (Python truthiness of a list or dict).  Iterative,
 * so a deep file cannot exhaust the stack.
 */
static int skip_node(struct walk *w, const struct input *in,
		     const yaml_event_t *ev, int *nonempty)
{
	int level;

	if (nonempty != NULL)
		*nonempty = 0;
	if (!is_start(ev))
		return 0; /* scalar or alias: nothing below it */
	level = 1;
	if (enter(w, ev, w->depth + level) != 0)
		return -1;
	while (level > 0) {
		yaml_event_t e;
		int rc = 0;

		if (next(w, in, &e) != 0)
			return -1;
		if (nonempty != NULL && level == 1 && !is_end(&e))
			*nonempty = 1;
		if (is_start(&e)) {
			level++;
			rc = enter(w, &e, w->depth + level);
		} else if (is_end(&e)) {
			level--;
		}
		yaml_event_delete(&e);
		if (rc != 0)
			return -1;
	}
	return 0;
}

static int copy_scalar(struct walk *w, const yaml_event_t *ev, const char *key,
		       char **out)
{
	size_t n = ev->data.scalar.length;
	char *s;

	/* "\0" in a quoted scalar would silently cut the value short. */
	if (memchr(ev->data.scalar.value, '\0', n)) {
		set_err_key(w, &ev->start_mark, key,
			    "contains a NUL character");
		return -1;
	}
	s = malloc(n + 1);
	if (!s) {
		set_err(w->err, w->errlen, w->name, "out of memory");
		return -1;
	}
	memcpy(s, ev->data.scalar.value, n);
	s[n] = '\0';
	free(*out);
	*out = s;
	return 0;
}

/* Rejects what we cannot read as a scalar without guessing. */
static int want_scalar(struct walk *w, const yaml_event_t *ev, const char *key)
{
	if (ev->type == YAML_SCALAR_EVENT)
		return 0;
	if (ev->type == YAML_ALIAS_EVENT)
		set_err_key(w, &ev->start_mark, key,
			    "is an alias; aliases are not supported here");
	else if (ev->type == YAML_MAPPING_START_EVENT)
		set_err_key(w, &ev->start_mark, key,
			    "must be a scalar, not a mapping");
	else
		set_err_key(w, &ev->start_mark, key,
			    "must be a scalar, not a sequence");
	return -1;
}

/* PyYAML's YAML 1.1 bool words (bool_values, and its implicit resolver). */
static int bool_word(const char *v, size_t n, int *val)
{
	static const char *const words[] = {
	    "yes",   "Yes",   "YES",   "true", "True", "TRUE",
	    "on",    "On",    "ON",    "no",   "No",   "NO",
	    "false", "False", "FALSE", "off",  "Off",  "OFF"};
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
		if (strlen(words[i]) == n && memcmp(v, words[i], n) == 0) {
			*val = i < 9;
			return 1;
		}
	return 0;
}

static int is_dec(char c)
{
	return c >= '0' && c <= '9';
}

/* All of s[0..n) is in set (and n > 0). */
static int all_in(const char *s, size_t n, const char *set)
{
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!strchr(set, s[i]) || s[i] == '\0')
			return 0;
	return 1;
}

/* Some decimal or hex digit in s[0..n): PyYAML's int() of "0b_" or "0x_"
 * (underscores dropped) raises, so those are no number it can build. */
static int any_digit(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != '_')
			return 1;
	return 0;
}

/* No digit of s[0..n) other than '0' (underscores, signs, ':' ignored). */
static int all_zero(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((is_dec(s[i]) && s[i] != '0') ||
		    strchr("abcdefABCDEF", s[i]))
			return 0;
	return 1;
}

/* ":[0-5]?[0-9]" repeated at least once, from s[0..n). */
static int sexagesimal_tail(const char *s, size_t n)
{
	size_t i = 0;
	int groups = 0;

	while (i < n) {
		if (s[i] != ':')
			return 0;
		i++;
		if (i + 1 < n && s[i] >= '0' && s[i] <= '5' && is_dec(s[i + 1]))
			i += 2;
		else if (i < n && is_dec(s[i]))
			i++;
		else
			return 0;
		groups++;
	}
	return groups > 0;
}

/*
 * PyYAML's int resolver: [-+]?0b[0-1_]+ | [-+]?0[0-7_]+ |
 * [-+]?(0|[1-9][0-9_]*) | [-+]?0x[0-9a-fA-F_]+ |
 * [-+]?[1-9][0-9_]*(:[0-5]?[0-9])+.  *zero: its value is 0.
 */
static int yaml_int(const char *s, size_t n, int *zero)
{
	size_t i = 0;

	if (n > 0 && (s[0] == '-' || s[0] == '+'))
		i++;
	s += i;
	n -= i;
	if (n == 0)
		return 0;
	if (n > 2 && s[0] == '0' && s[1] == 'b') {
		if (!all_in(s + 2, n - 2, "01_") || !any_digit(s + 2, n - 2))
			return 0;
		*zero = all_zero(s + 2, n - 2);
		return 1;
	}
	if (n > 2 && s[0] == '0' && s[1] == 'x') {
		if (!all_in(s + 2, n - 2, "0123456789abcdefABCDEF_") ||
		    !any_digit(s + 2, n - 2))
			return 0;
		*zero = all_zero(s + 2, n - 2);
		return 1;
	}
	if (s[0] == '0') {
		if (n > 1 && !all_in(s + 1, n - 1, "01234567_"))
			return 0;
		*zero = all_zero(s, n);
		return 1;
	}
	if (!(s[0] >= '1' && s[0] <= '9'))
		return 0;
	i = 1;
	while (i < n && (is_dec(s[i]) || s[i] == '_'))
		i++;
	if (i < n && !sexagesimal_tail(s + i, n - i))
		return 0;
	*zero = 0;
	return 1;
}

/* [0-9_]* from s[*i]; returns how many characters. */
static size_t digits_(const char *s, size_t n, size_t *i)
{
	size_t from = *i;
	while (*i < n && (is_dec(s[*i]) || s[*i] == '_'))
		(*i)++;
	return *i - from;
}

/*
 * PyYAML's float resolver:
 *   [-+]?[0-9][0-9_]*\.[0-9_]*([eE][-+][0-9]+)?
 *   \.[0-9][0-9_]*([eE][-+][0-9]+)?
 *   [-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*
 *   [-+]?\.(inf|Inf|INF)   \.(nan|NaN|NAN)
 */
static int yaml_float(const char *s, size_t n, int *zero)
{
	size_t i = 0, mant_end;
	int sign = 0;

	*zero = 0;
	if (n == 4 && (memcmp(s, ".nan", 4) == 0 || memcmp(s, ".NaN", 4) == 0 ||
		       memcmp(s, ".NAN", 4) == 0))
		return 1;
	if (n > 0 && (s[0] == '-' || s[0] == '+')) {
		sign = 1;
		i++;
	}
	if (n - i == 4 &&
	    (memcmp(s + i, ".inf", 4) == 0 || memcmp(s + i, ".Inf", 4) == 0 ||
	     memcmp(s + i, ".INF", 4) == 0))
		return 1;
	if (i < n && s[i] == '.') {
		if (sign)
			return 0;
		i++;
		if (i >= n || !is_dec(s[i])) /* "._" is a string */
			return 0;
		digits_(s, n, &i);
	} else {
		if (i >= n || !is_dec(s[i]))
			return 0;
		digits_(s, n, &i);
		if (i < n && s[i] == ':') {
			size_t colon = i;
			while (i < n && s[i] != '.')
				i++;
			if (i >= n || !sexagesimal_tail(s + colon, i - colon))
				return 0;
			i++;
			digits_(s, n, &i);
			if (i != n)
				return 0;
			*zero = all_zero(s, n);
			return 1;
		}
		if (i >= n || s[i] != '.')
			return 0;
		i++;
		digits_(s, n, &i);
	}
	mant_end = i;
	if (i < n) {
		if (!(s[i] == 'e' || s[i] == 'E') || i + 2 >= n ||
		    !(s[i + 1] == '-' || s[i + 1] == '+'))
			return 0;
		i += 2;
		while (i < n && is_dec(s[i]))
			i++;
		if (i != n)
			return 0;
	}
	*zero = all_zero(s, mant_end);
	return 1;
}

/*
 * The kind and Python truthiness of a scalar as PyYAML's FullLoader
 * constructs it: plain scalars through the YAML 1.1 resolvers, quoted ones
 * as strings, tagged ones by their standard tag.
 */
static enum kind scalar_kind(const yaml_event_t *ev, int *truthy)
{
	const char *v = (const char *)ev->data.scalar.value;
	size_t n = ev->data.scalar.length;
	const char *tag = (const char *)ev->data.scalar.tag;
	int b, zero;

	*truthy = 1;
	if (scalar_is_null(ev)) {
		*truthy = 0;
		return K_NULL;
	}
	if (tag && !ev->data.scalar.plain_implicit &&
	    !ev->data.scalar.quoted_implicit && strcmp(tag, "!") != 0) {
		if (strcmp(tag, "tag:yaml.org,2002:str") == 0) {
			*truthy = n > 0;
			return K_STR;
		}
		if (strcmp(tag, "tag:yaml.org,2002:bool") == 0) {
			char low[8];
			size_t i;
			for (i = 0; i < n && i < sizeof low - 1; i++)
				low[i] = (char)(v[i] >= 'A' && v[i] <= 'Z'
						    ? v[i] - 'A' + 'a'
						    : v[i]);
			if (n < sizeof low && bool_word(low, n, &b)) {
				*truthy = b;
				return K_BOOL;
			}
		} else if (strcmp(tag, "tag:yaml.org,2002:int") == 0) {
			if (yaml_int(v, n, &zero)) {
				*truthy = !zero;
				return K_INT;
			}
		} else if (strcmp(tag, "tag:yaml.org,2002:float") == 0) {
			if (yaml_float(v, n, &zero)) {
				*truthy = !zero;
				return K_FLOAT;
			}
		}
		return K_UNKNOWN;
	}
	if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || tag) {
		/* Quoted, literal, folded, or "!"-tagged: a string. */
		*truthy = n > 0;
		return K_STR;
	}
	if (bool_word(v, n, &b)) {
		*truthy = b;
		return K_BOOL;
	}
	if (yaml_int(v, n, &zero)) {
		*truthy = !zero;
		return K_INT;
	}
	if (yaml_float(v, n, &zero)) {
		*truthy = !zero;
		return K_FLOAT;
	}
	if (n == 1 && v[0] == '=')
		return K_UNKNOWN; /* YAML 1.1 "value" tag: no constructor */
	*truthy = n > 0;
	return K_STR;
}

/* space.disable_telemetry: its kind and truthiness, never an error unless
 * it is an alias (which PyYAML would resolve and we will not). */
static int read_disable(struct walk *w, const struct input *in,
			const yaml_event_t *ev)
{
	if (ev->type == YAML_ALIAS_EVENT) {
		set_err_key(w, &ev->start_mark, "space.disable_telemetry",
			    "is an alias; aliases are not supported here");
		return -1;
	}
	if (ev->type == YAML_SCALAR_EVENT) {
		w->dkind = scalar_kind(ev, &w->dtruthy);
		return 0;
	}
	w->dkind = ev->type == YAML_SEQUENCE_START_EVENT ? K_SEQ : K_MAP;
	if (ev->type == YAML_MAPPING_START_EVENT &&
	    ev->data.mapping_start.tag && !ev->data.mapping_start.implicit)
		w->dkind = K_UNKNOWN;
	if (ev->type == YAML_SEQUENCE_START_EVENT &&
	    ev->data.sequence_start.tag && !ev->data.sequence_start.implicit)
		w->dkind = K_UNKNOWN;
	if (skip_node(w, in, ev, &w->dtruthy) != 0)
		return -1;
	if (w->dkind == K_UNKNOWN)
		w->dtruthy = 1;
	return 0;
}

static int read_string(struct walk *w, const yaml_event_t *ev, const char *key,
		       char **out)
{
	if (want_scalar(w, ev, key) != 0)
		return -1;
	if (scalar_is_null(ev)) {
		char *s = strdup("");
		if (!s) {
			set_err(w->err, w->errlen, w->name, "out of memory");
			return -1;
		}
		free(*out);
		*out = s;
		return 0;
	}
	return copy_scalar(w, ev, key, out);
}

/* A setting that should be a string but is a sequence or mapping: noted
 * (bad) and skipped, so that the rest of the file still counts. */
static int read_string_or_bad(struct walk *w, const struct input *in,
			      const yaml_event_t *ev, const char *key,
			      char **out, int *bad)
{
	if (ev->type == YAML_SEQUENCE_START_EVENT ||
	    ev->type == YAML_MAPPING_START_EVENT) {
		free(*out);
		*out = NULL;
		*bad = 1;
		return skip_node(w, in, ev, NULL);
	}
	*bad = 0;
	return read_string(w, ev, key, out);
}

/* Duplicate keys: the last one wins, as in PyYAML, so a section restarts. */
static void reset_section(struct walk *w, enum section sec)
{
	if (sec == SEC_SPACE) {
		free(w->url);
		w->url = NULL;
		w->url_set = 0;
		w->url_bad = 0;
		w->space_null = 0;
		w->dkind = K_ABSENT;
		w->dtruthy = 0;
	} else if (sec == SEC_PROXY) {
		for (int i = 0; i < 2; i++) {
			free(w->proxy[i]);
			w->proxy[i] = NULL;
			w->proxy_bad[i] = 0;
		}
	} else {
		free(w->instance_id);
		w->instance_id = NULL;
	}
}

/* A key of a section: *which gets the key's number (1 url,
 * 2 disable_telemetry, 3 instance_id, 4/5 proxy, 0 another key).  An alias
 * or a merge key is an error; a complex key is skipped. */
static int section_key(struct walk *w, const struct input *in,
		       const yaml_event_t *key, enum section sec,
		       const char *sname, int *which)
{
	*which = 0;
	if (key->type == YAML_ALIAS_EVENT || is_merge_key(key)) {
		set_err_key(w, &key->start_mark, sname,
			    key->type == YAML_ALIAS_EVENT
				? "has an alias as a key; not supported"
				: "uses a merge key (<<); not supported");
		return -1;
	}
	if (key->type != YAML_SCALAR_EVENT)
		return skip_node(w, in, key, NULL); /* complex key */
	if (sec == SEC_SPACE && scalar_eq(key, "url"))
		*which = 1;
	else if (sec == SEC_SPACE && scalar_eq(key, "disable_telemetry"))
		*which = 2;
	else if (sec == SEC_SYSTEM && scalar_eq(key, "instance_id"))
		*which = 3;
	else if (sec == SEC_PROXY && scalar_eq(key, "http"))
		*which = 4;
	else if (sec == SEC_PROXY && scalar_eq(key, "https"))
		*which = 5;
	return 0;
}

/* The value of the key section_key() numbered. */
static int section_value(struct walk *w, const struct input *in,
			 const yaml_event_t *v, int which)
{
	int rc;

	switch (which) {
	case 1:
		rc = read_string_or_bad(w, in, v, "space.url", &w->url,
					&w->url_bad);
		if (rc == 0)
			w->url_set = 1;
		return rc;
	case 2:
		return read_disable(w, in, v);
	case 4:
	case 5:
		return read_string_or_bad(
		    w, in, v, which == 4 ? "proxy.http" : "proxy.https",
		    &w->proxy[which - 4], &w->proxy_bad[which - 4]);
	case 3:
		return read_string(w, v, "system.instance_id", &w->instance_id);
	default:
		return skip_node(w, in, v, NULL);
	}
}

static int read_section(struct walk *w, const struct input *in,
			const yaml_event_t *val, enum section sec)
{
	const char *sname = sec == SEC_SPACE   ? "space"
			    : sec == SEC_PROXY ? "proxy"
					       : "system";
	int rc = 0;

	reset_section(w, sec);
	if (scalar_is_null(val)) {
		/* "space:" with nothing under it: LangBot's "if not cfg". */
		w->space_null = sec == SEC_SPACE;
		w->proxy_null = sec == SEC_PROXY;
		return 0;
	}
	if (sec == SEC_PROXY && val->type != YAML_MAPPING_START_EVENT) {
		/* Not ours to judge: no proxy from the config. */
		w->proxy_null = 1;
		return skip_node(w, in, val, NULL);
	}
	if (val->type != YAML_MAPPING_START_EVENT) {
		char msg[96];
		if (val->type == YAML_ALIAS_EVENT)
			snprintf(msg, sizeof msg,
				 "is an alias; aliases are not supported here");
		else
			snprintf(msg, sizeof msg, "must be a mapping, not %s",
				 kind_name(val));
		set_err_key(w, &val->start_mark, sname, msg);
		return -1;
	}
	if (enter(w, val, w->depth + 1) != 0)
		return -1;
	w->depth++;
	for (;;) {
		yaml_event_t key, v;
		/* 1 url, 2 disable_telemetry, 3 instance_id, 4/5 proxy */
		int which = 0;

		if (next(w, in, &key) != 0) {
			rc = -1;
			break;
		}
		if (key.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&key);
			break;
		}
		rc = section_key(w, in, &key, sec, sname, &which);
		yaml_event_delete(&key);
		if (rc != 0)
			break;

		if (next(w, in, &v) != 0) {
			rc = -1;
			break;
		}
		rc = section_value(w, in, &v, which);
		yaml_event_delete(&v);
		if (rc != 0)
			break;
	}
	w->depth--;
	return rc;
}

/* The top-level mapping; its MAPPING_START has been consumed. */
static int read_top(struct walk *w, const struct input *in)
{
	for (;;) {
		yaml_event_t key, v;
		enum section sec = SEC_NONE;
		int rc = 0;

		if (next(w, in, &key) != 0)
			return -1;
		if (key.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&key);
			return 0;
		}
		if (key.type == YAML_ALIAS_EVENT) {
			set_err_at(w, &key.start_mark,
				   "alias as a top-level key; not supported");
			rc = -1;
		} else if (is_merge_key(&key)) {
			set_err_at(
			    w, &key.start_mark,
			    "merge key (<<) at the top level; not supported");
			rc = -1;
		} else if (key.type == YAML_SCALAR_EVENT) {
			if (scalar_eq(&key, "space"))
				sec = SEC_SPACE;
			else if (scalar_eq(&key, "system"))
				sec = SEC_SYSTEM;
			else if (scalar_eq(&key, "proxy"))
				sec = SEC_PROXY;
		} else {
			rc = skip_node(w, in, &key, NULL);
		}
		yaml_event_delete(&key);
		if (rc != 0)
			return -1;

		if (next(w, in, &v) != 0)
			return -1;
		if (sec != SEC_NONE)
			rc = read_section(w, in, &v, sec);
		else
			rc = skip_node(w, in, &v, NULL);
		yaml_event_delete(&v);
		if (rc != 0)
			return -1;
	}
}

/* Expects exactly one document whose root is a mapping. */
static int read_stream(struct walk *w, const struct input *in)
{
	yaml_event_t ev;
	int rc = 0;

	if (next(w, in, &ev) != 0) /* STREAM-START */
		return -1;
	yaml_event_delete(&ev);

	if (next(w, in, &ev) != 0)
		return -1;
	if (ev.type == YAML_STREAM_END_EVENT) {
		yaml_event_delete(&ev);
		set_err(w->err, w->errlen, w->name, "is empty");
		return -1;
	}
	yaml_event_delete(&ev); /* DOCUMENT-START */

	if (next(w, in, &ev) != 0)
		return -1;
	if (scalar_is_null(&ev)) {
		set_err(w->err, w->errlen, w->name, "is empty");
		rc = -1;
	} else if (ev.type != YAML_MAPPING_START_EVENT) {
		char msg[96];
		snprintf(msg, sizeof msg, "top level must be a mapping, not %s",
			 kind_name(&ev));
		set_err_at(w, &ev.start_mark, msg);
		rc = -1;
	}
	yaml_event_delete(&ev);
	if (rc != 0)
		return -1;

	w->depth = 1;
	if (read_top(w, in) != 0)
		return -1;

	if (next(w, in, &ev) != 0) /* DOCUMENT-END */
		return -1;
	yaml_event_delete(&ev);

	/* PyYAML's safe_load refuses a second document; so LangBot would. */
	if (next(w, in, &ev) != 0)
		return -1;
	if (ev.type != YAML_STREAM_END_EVENT) {
		set_err_at(w, &ev.start_mark,
			   "more than one YAML document in the file");
		rc = -1;
	}
	yaml_event_delete(&ev);
	return rc;
}

/* Stripping every trailing '/' lets endpoints be appended with one '/'. */
static char *dup_url(const char *s, size_t n)
{
	char *u;

	while (n > 0 && s[n - 1] == '/')
		n--;
	u = malloc(n + 1);
	if (!u)
		return NULL;
	memcpy(u, s, n);
	u[n] = '\0';
	return u;
}

int tsu_env_bool(const char *v)
{
	if (!v)
		return 0;
	return strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0 ||
	       strcasecmp(v, "yes") == 0 || strcasecmp(v, "on") == 0;
}

int tsu_env_clearly_false(const char *v)
{
	if (!v)
		return 0;
	return v[0] == '\0' || strcasecmp(v, "false") == 0 ||
	       strcmp(v, "0") == 0 || strcasecmp(v, "no") == 0 ||
	       strcasecmp(v, "off") == 0;
}

/* The code point of the UTF-8 sequence at s[0..n) and its length in *len;
 * -1 (and *len 1) for a malformed one. */
static long utf8_at(const unsigned char *s, size_t n, size_t *len)
{
	long c;
	size_t k, i;

	*len = 1;
	if (s[0] < 0x80)
		return s[0];
	if ((s[0] & 0xe0) == 0xc0) {
		k = 2;
		c = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		k = 3;
		c = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		k = 4;
		c = s[0] & 0x07;
	} else {
		return -1;
	}
	if (k > n)
		return -1;
	for (i = 1; i < k; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return -1;
		c = (c << 6) | (s[i] & 0x3f);
	}
	*len = k;
	return c;
}

/* str.isspace() of one code point. */
static int py_space(long c)
{
	return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) ||
	       c == 0x85 || c == 0xa0 || c == 0x1680 ||
	       (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
	       c == 0x202f || c == 0x205f || c == 0x3000;
}

void tsu_py_strip(const char *s, size_t len, size_t *start, size_t *end)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t a = 0, b = len, k;

	while (a < b) {
		long c = utf8_at(u + a, b - a, &k);
		if (c < 0 || !py_space(c))
			break;
		a += k;
	}
	while (b > a) {
		/* Back to the start of the last character. */
		size_t p = b - 1;
		while (p > a && (u[p] & 0xc0) == 0x80 && b - p < 4)
			p--;
		long c = utf8_at(u + p, b - p, &k);
		if (c < 0 || p + k != b || !py_space(c))
			break;
		b = p;
	}
	*start = a;
	*end = b;
}

/* Position just past "scheme://" when the scheme is http or https. */
static size_t http_scheme(const char *url)
{
	if (strncasecmp(url, "http://", 7) == 0)
		return 7;
	if (strncasecmp(url, "https://", 8) == 0)
		return 8;
	return 0;
}

int tsu_url_check(const char *url, char *err, size_t errlen)
{
	size_t p = http_scheme(url), host;

	for (const unsigned char *c = (const unsigned char *)url; *c; c++)
		if (*c <= 0x20 || *c == 0x7f) {
			snprintf(err, errlen,
				 "space.url contains a space or a control "
				 "character");
			return -1;
		}
	if (p == 0) {
		snprintf(err, errlen,
			 "space.url must start with http:// or https://");
		return -1;
	}
	if (strpbrk(url, "?#")) {
		snprintf(err, errlen,
			 "space.url has a query string or a fragment ('?' or "
			 "'#'); the endpoints (/api/v1/...) are appended to "
			 "its path: remove everything from the '?' or '#'");
		return -1;
	}
	/* The host: after any userinfo, before the path or port. */
	host = p;
	{
		const char *slash = strchr(url + p, '/');
		const char *at = strchr(url + p, '@');
		if (at && (!slash || at < slash))
			host = (size_t)(at - url) + 1;
	}
	if (url[host] == '\0' || url[host] == '/' || url[host] == ':') {
		snprintf(err, errlen, "space.url has no host name");
		return -1;
	}
	return 0;
}

char *tsu_url_redacted(const char *url)
{
	size_t p = strlen(url), n = strlen(url);
	const char *sep = strstr(url, "://");
	char *out;

	if (sep) {
		const char *auth = sep + 3;
		const char *end = auth + strcspn(auth, "/?#");
		const char *at = NULL, *colon;
		for (const char *c = auth; c < end; c++)
			if (*c == '@')
				at = c; /* the last '@' ends the userinfo */
		colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
		if (at) {
			/* user:***, or *** for a user name alone (often a
			 * token, as in https://TOKEN@host). */
			p = (size_t)((colon ? colon + 1 : auth) - url);
			out = malloc(n + 4);
			if (!out)
				return NULL;
			memcpy(out, url, p);
			memcpy(out + p, "***", 3);
			strcpy(out + p + 3, at);
			return out;
		}
	}
	return strdup(url);
}

/* Python's bool(list) of LangBot's override of a list-valued key: the
 * comma-separated items, stripped, empty ones dropped. */
static int list_override_nonempty(const char *v)
{
	while (*v) {
		size_t n = strcspn(v, ","), a, b;
		tsu_py_strip(v, n, &a, &b);
		if (b > a)
			return 1;
		v += n;
		if (*v == ',')
			v++;
	}
	return 0;
}

/* An environment variable that LangBot's loader would apply below
 * space.disable_telemetry (SPACE__DISABLE_TELEMETRY__X): it turns the key
 * into a non-empty mapping when the key is absent. */
static int env_below_disable(void)
{
	extern char **environ;
	static const char prefix[] = "SPACE__DISABLE_TELEMETRY__";

	for (char **e = environ; e && *e; e++)
		if (strncmp(*e, prefix, sizeof prefix - 1) == 0 &&
		    (*e)[sizeof prefix - 1] != '=' &&
		    (*e)[sizeof prefix - 1] != '\0')
			return 1;
	return 0;
}

/* Python truthiness of space.disable_telemetry after LangBot's override
 * with the value e (NULL: unset), then failing closed. */
static int decide_disabled(const struct walk *w, const char *e,
			   const char **from)
{
	int t = w->dkind == K_ABSENT ? 0 : w->dtruthy;

	*from = w->dkind == K_ABSENT ? "default" : "config";
	if (e && !w->space_null) {
		switch (w->dkind) {
		case K_ABSENT:
		case K_NULL:
		case K_STR:
			t = e[0] != '\0'; /* the raw string is stored */
			break;
		case K_BOOL:
			t = tsu_env_bool(e);
			break;
		case K_INT:
		case K_FLOAT:
			/* int()/float() of a clearly false value: only "0"
			 * is a number; the rest is stored as a string. */
			t = !(e[0] == '\0' || strcmp(e, "0") == 0);
			break;
		case K_SEQ:
			t = list_override_nonempty(e);
			break;
		case K_MAP: /* LangBot skips dicts */
			break;
		case K_UNKNOWN:
			t = 1;
			break;
		}
	}
	if (e) {
		*from = "env";
		if (!tsu_env_clearly_false(e))
			t = 1; /* beyond LangBot: fail closed */
	}
	if (env_below_disable()) {
		*from = "env";
		t = 1;
	}
	return t != 0;
}

/* The first reason nothing can be sent wins: a, b and c joined. */
static void send_err(tsu_config *cfg, const char *a, const char *b,
		     const char *c)
{
	if (cfg->send_error[0] == '\0')
		snprintf(cfg->send_error, sizeof cfg->send_error, "%s%s%s", a,
			 b, c);
}

/* A header value or proxy setting must not carry control characters;
 * a header value must also be ASCII (as httpx requires). */
static const char *bad_chars(const char *s, int ascii_only)
{
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c < 0x20 || *c == 0x7f)
			return "a control character";
		if (ascii_only && *c >= 0x80)
			return "a non-ASCII character";
	}
	return NULL;
}

static const char *first_env(const char *const *names, const char **from)
{
	for (; *names; names++) {
		const char *v = getenv(*names);
		if (v && v[0]) {
			*from = *names;
			return v;
		}
	}
	return NULL;
}

/* Token, proxy and no-proxy, once space_url is known. */
static int sending_settings(tsu_config *cfg, const struct walk *w)
{
	static const char *const env_https[] = {"https_proxy", "HTTPS_PROXY",
						"all_proxy", "ALL_PROXY", NULL};
	static const char *const env_http[] = {"http_proxy", "HTTP_PROXY",
					       "all_proxy", "ALL_PROXY", NULL};
	static const char *const env_no[] = {"no_proxy", "NO_PROXY", NULL};
	int https = strncasecmp(cfg->space_url, "https://", 8) == 0;
	const char *v, *why, *from = "";
	char msg[160];

	v = getenv("LANGBOT_TELEMETRY_INGEST_TOKEN");
	if (v) {
		size_t a, b;
		tsu_py_strip(v, strlen(v), &a, &b);
		if (b > a) {
			cfg->token = malloc(b - a + 1);
			if (!cfg->token)
				return -1;
			memcpy(cfg->token, v + a, b - a);
			cfg->token[b - a] = '\0';
			why = bad_chars(cfg->token, 1);
			if (why)
				send_err(
				    cfg,
				    "LANGBOT_TELEMETRY_INGEST_TOKEN contains ",
				    why, " (an HTTP header cannot carry it)");
		}
	}

	/* proxy.http / proxy.https, after PROXY__HTTP / PROXY__HTTPS. */
	v = w->proxy_bad[https] ? NULL : w->proxy[https];
	from = https ? "proxy.https" : "proxy.http";
	if (!w->proxy_null && !w->proxy_bad[https]) {
		const char *e = getenv(https ? "PROXY__HTTPS" : "PROXY__HTTP");
		if (e) {
			v = e;
			from = https ? "PROXY__HTTPS" : "PROXY__HTTP";
		}
	}
	if (w->proxy_bad[https])
		send_err(cfg, from, " must be a string, not a list or mapping",
			 "");
	if (!v || !v[0])
		v = first_env(https ? env_https : env_http, &from);
	cfg->proxy = strdup(v ? v : "");
	cfg->proxy_from = v ? from : "none";
	v = first_env(env_no, &from);
	cfg->noproxy = strdup(v ? v : "");
	if (!cfg->proxy || !cfg->noproxy)
		return -1;
	if ((why = bad_chars(cfg->proxy, 0)) != NULL) {
		snprintf(msg, sizeof msg, "the proxy (%s) contains ",
			 cfg->proxy_from);
		send_err(cfg, msg, why, "");
	}
	if ((why = bad_chars(cfg->noproxy, 0)) != NULL)
		send_err(cfg, "no_proxy contains ", why, "");
	return 0;
}

/* The config from the walk and the environment, as LangBot would see it. */
static int build(tsu_config *cfg, const struct walk *w)
{
	const char *e, *url = w->url;

	cfg->url_from = w->url_set ? "config" : "default";
	e = getenv("SPACE__URL");
	if (e && !w->space_null && !w->url_bad) {
		/* Set, even to "", overrides: that is how a user blanks it. */
		url = e;
		cfg->url_from = "env";
	}
	if (w->space_null || w->url_bad)
		url = NULL;
	cfg->space_url = dup_url(url ? url : "", url ? strlen(url) : 0);
	if (!cfg->space_url)
		return -1;
	if (w->url_bad)
		send_err(cfg,
			 "space.url must be a string, not a list or mapping",
			 "", "");
	else if (cfg->space_url[0] &&
		 tsu_url_check(cfg->space_url, cfg->send_error,
			       sizeof cfg->send_error) != 0 &&
		 strcmp(cfg->url_from, "env") == 0) {
		/* Name where the bad URL is: the file may be fine. */
		char why[256]; /* the texts above are shorter */
		snprintf(why, sizeof why, "%s",
			 cfg->send_error + strlen("space.url"));
		snprintf(cfg->send_error, sizeof cfg->send_error,
			 "SPACE__URL (overriding space.url)%s", why);
	}

	cfg->disable_telemetry = decide_disabled(
	    w, getenv("SPACE__DISABLE_TELEMETRY"), &cfg->disabled_from);

	e = getenv("SYSTEM__INSTANCE_ID");
	cfg->instance_id = strdup(e ? e : w->instance_id ? w->instance_id : "");
	if (!cfg->instance_id)
		return -1;
	if (cfg->space_url[0] || w->url_bad)
		return sending_settings(cfg, w);
	cfg->proxy = strdup("");
	cfg->noproxy = strdup("");
	cfg->proxy_from = "none";
	return cfg->proxy && cfg->noproxy ? 0 : -1;
}

static int same_text(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

int tsu_config_same_sending(const tsu_config *a, const tsu_config *b)
{
	return !a->disable_telemetry == !b->disable_telemetry &&
	       same_text(a->space_url, b->space_url) &&
	       same_text(a->token, b->token) && same_text(a->proxy, b->proxy) &&
	       same_text(a->noproxy, b->noproxy) &&
	       strcmp(a->send_error, b->send_error) == 0;
}

void tsu_config_free(tsu_config *cfg)
{
	if (!cfg)
		return;
	free(cfg->space_url);
	free(cfg->instance_id);
	if (cfg->token) {
		/* A credential: do not leave it in freed memory. */
		volatile char *t = cfg->token;
		while (*t)
			*t++ = '\0';
	}
	free(cfg->token);
	free(cfg->proxy);
	free(cfg->noproxy);
	cfg->space_url = NULL;
	cfg->instance_id = NULL;
	cfg->token = NULL;
	cfg->proxy = NULL;
	cfg->noproxy = NULL;
}

int tsu_config_parse(tsu_config *cfg, const char *name, const char *buf,
		     size_t len, char *err, size_t errlen)
{
	struct walk w;
	struct input in;
	int rc;

	memset(cfg, 0, sizeof *cfg);
	if (err && errlen > 0)
		err[0] = '\0';
	if (!name)
		name = "config";
	if (!buf && len > 0) {
		set_err(err, errlen, name, "no buffer");
		return -1;
	}
	if (len > TSU_CONFIG_MAX_BYTES) {
		char msg[64];
		snprintf(msg, sizeof msg, "larger than %d bytes",
			 TSU_CONFIG_MAX_BYTES);
		set_err(err, errlen, name, msg);
		return -1;
	}

	memset(&w, 0, sizeof w);
	w.name = name;
	w.err = err;
	w.errlen = errlen;
	in.buf = (const unsigned char *)(buf ? buf : "");
	in.len = len;
	if (!yaml_parser_initialize(&w.parser)) {
		set_err(err, errlen, name, "out of memory");
		return -1;
	}
	yaml_parser_set_input_string(&w.parser, in.buf, in.len);
	rc = read_stream(&w, &in);
	yaml_parser_delete(&w.parser);

	/* As in LangBot, the environment has the last word. */
	if (rc == 0 && build(cfg, &w) != 0) {
		set_err(err, errlen, name, "out of memory");
		rc = -1;
	}
	free(w.url);
	free(w.instance_id);
	free(w.proxy[0]);
	free(w.proxy[1]);
	if (rc != 0) {
		tsu_config_free(cfg);
		memset(cfg, 0, sizeof *cfg);
	}
	return rc;
}

/* Opens path for reading: a regular file of at most max bytes (*st: its
 * fstat).  Returns the descriptor, or -1 (err names the file and why). */
static int open_regular(const char *path, size_t max, struct stat *st,
			char *err, size_t errlen)
{
	char msg[128];
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd < 0) {
		set_err(err, errlen, path, strerror(errno));
		return -1;
	}
	if (fstat(fd, st) != 0) {
		set_err(err, errlen, path, strerror(errno));
	} else if (S_ISDIR(st->st_mode)) {
		set_err(err, errlen, path, strerror(EISDIR));
	} else if (!S_ISREG(st->st_mode)) {
		set_err(err, errlen, path, "not a regular file");
	} else if (st->st_size < 0 || (uintmax_t)st->st_size > max) {
		snprintf(msg, sizeof msg, "larger than %zu bytes", max);
		set_err(err, errlen, path, msg);
	} else {
		return fd;
	}
	close(fd);
	return -1;
}

/*
 * Reads a whole regular file of at most max bytes.  O_NONBLOCK keeps a FIFO
 * planted at the path from hanging a cron job; it is refused after fstat.
 * Returns 0, or -1 with the reason in err.
 */
static int read_file(const char *path, size_t max, char **out, size_t *outlen,
		     char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t cap, len = 0;
	char msg[128];
	int fd;

	*out = NULL;
	*outlen = 0;
	fd = open_regular(path, max, &st, err, errlen);
	if (fd < 0)
		return -1;
	/* The file may grow between fstat and read: read to EOF, bounded. */
	cap = (size_t)st.st_size + 1;
	buf = malloc(cap);
	if (!buf) {
		set_err(err, errlen, path, "out of memory");
		goto fail;
	}
	for (;;) {
		ssize_t n;

		if (len == cap) {
			char *nb;
			if (cap > max) {
				snprintf(msg, sizeof msg,
					 "larger than %zu bytes", max);
				set_err(err, errlen, path, msg);
				goto fail;
			}
			cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
			nb = realloc(buf, cap);
			if (!nb) {
				set_err(err, errlen, path, "out of memory");
				goto fail;
			}
			buf = nb;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			set_err(err, errlen, path, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > max) {
		snprintf(msg, sizeof msg, "larger than %zu bytes", max);
		set_err(err, errlen, path, msg);
		goto fail;
	}
	close(fd);
	*out = buf;
	*outlen = len;
	return 0;
fail:
	free(buf);
	close(fd);
	return -1;
}

/*
 * data_dir/labels/instance_id.json, written by LangBot on first start.
 * Returns 0 with a malloc'd id (or NULL when there is none usable), -1 when
 * out of memory.  A missing or broken file is not our error to report.
 */
static int read_labels_id(const char *data_dir, char **out)
{
	static const char rel[] = "/labels/instance_id.json";
	char *path, *buf = NULL;
	size_t n, len = 0;
	char ignored[8];
	cJSON *root;
	const cJSON *id;

	*out = NULL;
	n = strlen(data_dir);
	path = malloc(n + sizeof rel);
	if (!path)
		return -1;
	memcpy(path, data_dir, n);
	memcpy(path + n, rel, sizeof rel);
	if (read_file(path, LABELS_MAX_BYTES, &buf, &len, ignored,
		      sizeof ignored) != 0) {
		free(path);
		return 0;
	}
	free(path);
	root = len > 0 ? cJSON_ParseWithLength(buf, len) : NULL;
	free(buf);
	id = cJSON_GetObjectItemCaseSensitive(root, "instance_id");
	if (cJSON_IsString(id) && id->valuestring && id->valuestring[0]) {
		*out = strdup(id->valuestring);
		if (!*out) {
			cJSON_Delete(root);
			return -1;
		}
	}
	cJSON_Delete(root);
	return 0;
}

int tsu_config_load(tsu_config *cfg, const char *config_path,
		    const char *data_dir, char *err, size_t errlen)
{
	char *buf;
	size_t len;
	int rc;

	memset(cfg, 0, sizeof *cfg);
	if (err && errlen > 0)
		err[0] = '\0';
	if (!config_path) {
		set_err(err, errlen, "config", "no path given");
		return -1;
	}
	if (read_file(config_path, TSU_CONFIG_MAX_BYTES, &buf, &len, err,
		      errlen) != 0)
		return -1;
	rc = tsu_config_parse(cfg, config_path, buf, len, err, errlen);
	free(buf);
	if (rc != 0)
		return -1;

	/*
	 * LangBot applies its environment overrides to the config first and
	 * falls back to the labels file when the result is empty, so an empty
	 * SYSTEM__INSTANCE_ID still lets the labels file speak.
	 */
	if (cfg->instance_id[0] == '\0' && data_dir && data_dir[0]) {
		char *id;
		if (read_labels_id(data_dir, &id) != 0) {
			set_err(err, errlen, config_path, "out of memory");
			tsu_config_free(cfg);
			memset(cfg, 0, sizeof *cfg);
			return -1;
		}
		if (id) {
			free(cfg->instance_id);
			cfg->instance_id = id;
		}
	}
	return 0;
}
