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

enum section { SEC_NONE, SEC_SPACE, SEC_SYSTEM };

/* Walk state for one document. */
struct walk {
	yaml_parser_t parser;
	const char *name; /* file name for messages */
	char *err;
	size_t errlen;
	int depth; /* nesting of the collection being read; top mapping = 1 */

	char *url; /* NULL: space.url absent */
	int url_set;
	int disabled;
	int disabled_set;
	char *instance_id; /* NULL: system.instance_id absent */
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
 * deletes it).  Iterative, so a deep file cannot exhaust the stack.
 */
static int skip_node(struct walk *w, const struct input *in,
		     const yaml_event_t *ev)
{
	int level;

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

/*
 * LangBot's YAML gives a bool for true/false/yes/no/on/off and an int for
 * 1/0; a quoted "true" stays a string, which we read with the same
 * vocabulary as the environment (the user's intent is plain).  Anything
 * else is refused: a wrong guess either way is worse than asking.
 */
static int read_bool(struct walk *w, const yaml_event_t *ev)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};
	const char *v = (const char *)ev->data.scalar.value;
	size_t n = ev->data.scalar.length;

	if (want_scalar(w, ev, "space.disable_telemetry") != 0)
		return -1;
	if (scalar_is_null(ev)) {
		w->disabled = 0;
		w->disabled_set = 0;
		return 0;
	}
	if (n == 0) { /* quoted '': a false-y string to LangBot */
		w->disabled = 0;
		w->disabled_set = 1;
		return 0;
	}
	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		if (strlen(yes[i]) == n && strncasecmp(v, yes[i], n) == 0) {
			w->disabled = 1;
			w->disabled_set = 1;
			return 0;
		}
		if (strlen(no[i]) == n && strncasecmp(v, no[i], n) == 0) {
			w->disabled = 0;
			w->disabled_set = 1;
			return 0;
		}
	}
	set_err_key(w, &ev->start_mark, "space.disable_telemetry",
		    "must be true or false");
	return -1;
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

/* Duplicate keys: the last one wins, as in PyYAML, so a section restarts. */
static void reset_section(struct walk *w, enum section sec)
{
	if (sec == SEC_SPACE) {
		free(w->url);
		w->url = NULL;
		w->url_set = 0;
		w->disabled = 0;
		w->disabled_set = 0;
	} else {
		free(w->instance_id);
		w->instance_id = NULL;
	}
}

static int read_section(struct walk *w, const struct input *in,
			const yaml_event_t *val, enum section sec)
{
	const char *sname = sec == SEC_SPACE ? "space" : "system";
	int rc = 0;

	reset_section(w, sec);
	if (scalar_is_null(val))
		return 0; /* "space:" with nothing under it */
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
		int which = 0; /* 1 url, 2 disable_telemetry, 3 instance_id */

		if (next(w, in, &key) != 0) {
			rc = -1;
			break;
		}
		if (key.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&key);
			break;
		}
		if (key.type == YAML_ALIAS_EVENT || is_merge_key(&key)) {
			set_err_key(
			    w, &key.start_mark, sname,
			    key.type == YAML_ALIAS_EVENT
				? "has an alias as a key; not supported"
				: "uses a merge key (<<); not supported");
			rc = -1;
		} else if (key.type == YAML_SCALAR_EVENT) {
			if (sec == SEC_SPACE && scalar_eq(&key, "url"))
				which = 1;
			else if (sec == SEC_SPACE &&
				 scalar_eq(&key, "disable_telemetry"))
				which = 2;
			else if (sec == SEC_SYSTEM &&
				 scalar_eq(&key, "instance_id"))
				which = 3;
		} else {
			rc = skip_node(w, in, &key); /* complex key */
		}
		yaml_event_delete(&key);
		if (rc != 0)
			break;

		if (next(w, in, &v) != 0) {
			rc = -1;
			break;
		}
		switch (which) {
		case 1:
			rc = read_string(w, &v, "space.url", &w->url);
			if (rc == 0)
				w->url_set = 1;
			break;
		case 2:
			rc = read_bool(w, &v);
			break;
		case 3:
			rc = read_string(w, &v, "system.instance_id",
					 &w->instance_id);
			break;
		default:
			rc = skip_node(w, in, &v);
			break;
		}
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
		} else {
			rc = skip_node(w, in, &key);
		}
		yaml_event_delete(&key);
		if (rc != 0)
			return -1;

		if (next(w, in, &v) != 0)
			return -1;
		if (sec != SEC_NONE)
			rc = read_section(w, in, &v, sec);
		else
			rc = skip_node(w, in, &v);
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

int tsu_config_apply_env(tsu_config *cfg)
{
	const char *v;

	/* Set, even to "", overrides: that is how a user blanks the URL. */
	v = getenv("SPACE__URL");
	if (v) {
		char *u = dup_url(v, strlen(v));
		if (!u)
			return -1;
		free(cfg->space_url);
		cfg->space_url = u;
		cfg->url_from = "env";
	}
	v = getenv("SPACE__DISABLE_TELEMETRY");
	if (v) {
		cfg->disable_telemetry = tsu_env_bool(v);
		cfg->disabled_from = "env";
	}
	v = getenv("SYSTEM__INSTANCE_ID");
	if (v) {
		char *id = strdup(v);
		if (!id)
			return -1;
		free(cfg->instance_id);
		cfg->instance_id = id;
	}
	return 0;
}

void tsu_config_free(tsu_config *cfg)
{
	if (!cfg)
		return;
	free(cfg->space_url);
	free(cfg->instance_id);
	cfg->space_url = NULL;
	cfg->instance_id = NULL;
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

	if (rc == 0) {
		cfg->space_url =
		    dup_url(w.url ? w.url : "", w.url ? strlen(w.url) : 0);
		cfg->instance_id = strdup(w.instance_id ? w.instance_id : "");
		cfg->disable_telemetry = w.disabled;
		cfg->url_from = w.url_set ? "config" : "default";
		cfg->disabled_from = w.disabled_set ? "config" : "default";
		/* As in LangBot, the environment has the last word. */
		if (!cfg->space_url || !cfg->instance_id ||
		    tsu_config_apply_env(cfg) != 0) {
			set_err(err, errlen, name, "out of memory");
			rc = -1;
		}
	}
	free(w.url);
	free(w.instance_id);
	if (rc != 0) {
		tsu_config_free(cfg);
		memset(cfg, 0, sizeof *cfg);
	}
	return rc;
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
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		set_err(err, errlen, path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0) {
		set_err(err, errlen, path, strerror(errno));
		goto fail;
	}
	if (S_ISDIR(st.st_mode)) {
		set_err(err, errlen, path, strerror(EISDIR));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		set_err(err, errlen, path, "not a regular file");
		goto fail;
	}
	if (st.st_size < 0 || (uintmax_t)st.st_size > max) {
		snprintf(msg, sizeof msg, "larger than %zu bytes", max);
		set_err(err, errlen, path, msg);
		goto fail;
	}
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
