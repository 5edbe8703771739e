/*
 * body.c - builds the JSON bodies of SPACE_PROTOCOL.md from values that
 * have been cleaned and redacted first: the query body (the hot path) is
 * written directly, the others, which embed caller-supplied JSON, with
 * cJSON.  Both print the same compact JSON.
 */
#include "body.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clean.h"
#include "pyjson.h"
#include "redact.h"
#include "timefmt.h"
#include "traceback.h"

/* Survey answers and heartbeat features are caller-supplied JSON: bound
 * their shape as well as their strings. */
#define JSON_MAX_DEPTH   8
#define JSON_MAX_MEMBERS 256
#define JSON_STRING_MAX  4096

/* Largest duration stored; beyond it the number is not a duration. */
#define DURATION_MAX 1000000000000LL

static const char *const oom = "out of memory";

static char *clean_name(const char *s)
{
	return telespool__clean_name(s, s ? strlen(s) : 0, TELESPOOL_NAME_MAX);
}

/*
 * Ids that travel as identifiers (query_id, survey_id).  LangBot's query
 * ids are a per-process counter and Space's survey ids may be numbers: a
 * plain run of up to 20 digits is kept as it is rather than redacted as an
 * account id, since rewriting it would break the protocol, not protect
 * anyone.  Anything else is cleaned like a name.
 */
static char *clean_id(const char *s)
{
	size_t n = 0;
	while (s && n <= 20 && s[n] >= '0' && s[n] <= '9')
		n++;
	if (s && n > 0 && n <= 20 && s[n] == '\0')
		return strdup(s);
	return clean_name(s);
}

/* Adds a string we own; the object takes it over. */
static int add_owned(cJSON *obj, const char *key, const char *val)
{
	cJSON *item = cJSON_CreateString(val ? val : "");
	if (item == NULL)
		return -1;
	if (!cJSON_AddItemToObject(obj, key, item)) {
		cJSON_Delete(item);
		return -1;
	}
	return 0;
}

static int add_number(cJSON *obj, const char *key, double v)
{
	return cJSON_AddNumberToObject(obj, key, v) ? 0 : -1;
}

/* Serialises obj into ev->body; returns TELESPOOL_OK or ENOMEM. */
static int print_body(struct telespool__event *ev, cJSON *obj)
{
	free(ev->body);
	ev->body = cJSON_PrintUnformatted(obj);
	if (ev->body == NULL)
		return TELESPOOL_ENOMEM;
	ev->body_len = strlen(ev->body);
	return TELESPOOL_OK;
}

void telespool__event_free(struct telespool__event *ev)
{
	free(ev->body);
	free(ev->query_id);
	free(ev->adapter);
	free(ev->runner);
	free(ev->model_name);
	free(ev->error);
	free(ev->survey_id);
	free(ev->milestone);
	memset(ev, 0, sizeof(*ev));
	ev->duration_ms = -1;
}

static void event_init(struct telespool__event *ev, const char *type)
{
	memset(ev, 0, sizeof(*ev));
	ev->event_type = type;
	ev->duration_ms = -1;
}

static int fail(struct telespool__event *ev, cJSON *obj, int rc,
		const char **why, const char *text)
{
	cJSON_Delete(obj);
	telespool__event_free(ev);
	*why = text;
	return rc;
}

/*
 * The query body is the hot path (one per chat query): it is written
 * straight into one buffer, with the escaping cJSON_PrintUnformatted uses,
 * instead of building and printing a cJSON tree.
 */
struct jbuf {
	char *p;
	size_t len, cap;
	int oom;
};

static void jb_need(struct jbuf *b, size_t more)
{
	if (b->oom || b->len + more + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 1024;
	while (cap < b->len + more + 1)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (p == NULL) {
		b->oom = 1;
		return;
	}
	b->p = p;
	b->cap = cap;
}

static void jb_raw(struct jbuf *b, const char *s, size_t n)
{
	jb_need(b, n);
	if (b->oom)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

#define JB_LIT(b, lit) jb_raw((b), (lit), sizeof(lit) - 1)

/* A JSON string: s is valid UTF-8 (cleaned), copied as it is except for
 * '"', '\\' and control characters. */
static void jb_str(struct jbuf *b, const char *s)
{
	size_t n = strlen(s);
	jb_need(b, n + 2);
	if (b->oom)
		return;
	b->p[b->len++] = '"';
	const char *run = s, *end = s + n;
	for (const char *c = s;; c++) {
		/* Eight bytes at a time while none needs escaping. */
		uint64_t w;
		while (end - c >= 8 &&
		       (memcpy(&w, c, 8), !telespool__json_needs_escape8(w)))
			c += 8;
		unsigned char ch = (unsigned char)*c;
		if (ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		jb_raw(b, run, (size_t)(c - run));
		if (ch == '\0')
			break;
		char esc[6];
		size_t k = telespool__json_escape(ch, esc);
		jb_raw(b, esc, k);
		run = c + 1;
	}
	JB_LIT(b, "\"");
}

/* Member key literals, with what comes before and after them: the keys
 * are fixed plain ASCII, so they are written as they are, not escaped. */
#define FIRST(key) "\"" key "\":"
#define NEXT(key)  ",\"" key "\":"

/* key (from FIRST/NEXT) and a string value. */
#define JB_MEMBER(b, key, val)                                                 \
	do {                                                                   \
		JB_LIT((b), key);                                              \
		jb_str((b), (val) ? (val) : "");                               \
	} while (0)

static void jb_int(struct jbuf *b, int64_t v)
{
	char num[24];
	int n = snprintf(num, sizeof(num), "%lld", (long long)v);
	jb_raw(b, num, (size_t)n);
}

/* The cleaned plugin names, as a JSON array text, in one buffer. */
static int plugins_json(const telespool_query *q, struct jbuf *out)
{
	size_t n = q->n_pipeline_plugins;
	if (n > TELESPOOL_PLUGINS_MAX)
		n = TELESPOOL_PLUGINS_MAX;
	JB_LIT(out, "[");
	int first = 1;
	for (size_t i = 0; i < n; i++) {
		if (q->pipeline_plugins[i] == NULL)
			continue;
		char *name = clean_name(q->pipeline_plugins[i]);
		if (name == NULL)
			return TELESPOOL_ENOMEM;
		if (!first)
			JB_LIT(out, ",");
		jb_str(out, name);
		free(name);
		first = 0;
	}
	JB_LIT(out, "]");
	return out->oom ? TELESPOOL_ENOMEM : TELESPOOL_OK;
}

static void query_json(struct jbuf *b, const struct telespool__event *ev,
		       const struct telespool__ident *id, const char *category,
		       const struct jbuf *plugins)
{
	b->len = 0;
	JB_LIT(b, "{" FIRST("event_type") "\"query\"");
	JB_MEMBER(b, NEXT("query_id"), ev->query_id);
	JB_MEMBER(b, NEXT("adapter"), ev->adapter);
	JB_MEMBER(b, NEXT("runner"), ev->runner);
	if (category)
		JB_MEMBER(b, NEXT("runner_category"), category);
	JB_MEMBER(b, NEXT("model_name"), ev->model_name);
	JB_LIT(b, NEXT("duration_ms"));
	jb_int(b, ev->duration_ms);
	JB_MEMBER(b, NEXT("version"), id->version);
	JB_MEMBER(b, NEXT("instance_id"), id->instance_id);
	if (id->edition)
		JB_MEMBER(b, NEXT("edition"), id->edition);
	JB_LIT(b, NEXT("pipeline_plugins"));
	jb_raw(b, plugins->p, plugins->len);
	JB_MEMBER(b, NEXT("error"), ev->error);
	JB_MEMBER(b, NEXT("timestamp"), ev->timestamp);
	JB_LIT(b, "}");
}

/* The fields both query writers take from q: ids and names cleaned, the
 * traceback through the guard at its cap, duration_ms clamped.  A field
 * left NULL is out of memory.  Returns the length of q's traceback. */
static size_t query_fields(struct telespool__event *ev,
			   const telespool_query *q, int strict)
{
	ev->query_id = clean_id(q->query_id);
	ev->adapter = clean_name(q->adapter);
	ev->runner = clean_name(q->runner);
	ev->model_name = clean_name(q->model_name);
	const char *error_in = q->error ? q->error : "";
	size_t error_len = strlen(error_in);
	ev->error = telespool__clean_error(error_in, error_len,
					   TELESPOOL_ERROR_MAX, strict, NULL);
	ev->duration_ms = q->duration_ms < 0              ? 0
			  : q->duration_ms > DURATION_MAX ? DURATION_MAX
							  : q->duration_ms;
	return error_len;
}

int telespool__body_query(struct telespool__event *ev,
			  const struct telespool__ident *id,
			  const telespool_query *q, int strict,
			  const char *timestamp_iso, const char **why)
{
	event_init(ev, "query");
	if (q->n_pipeline_plugins > 0 && q->pipeline_plugins == NULL) {
		*why = "pipeline_plugins is NULL but n_pipeline_plugins > 0";
		return TELESPOOL_EINVAL;
	}

	const char *error_in = q->error ? q->error : "";
	size_t error_len = query_fields(ev, q, strict);
	snprintf(ev->timestamp, sizeof(ev->timestamp), "%s", timestamp_iso);

	char *category =
	    q->runner_category ? clean_name(q->runner_category) : NULL;
	struct jbuf plugins = {NULL, 0, 0, 0}, body = {NULL, 0, 0, 0};
	int rc =
	    (!ev->query_id || !ev->adapter || !ev->runner || !ev->model_name ||
	     !ev->error || (q->runner_category && !category))
		? TELESPOOL_ENOMEM
		: plugins_json(q, &plugins);
	if (rc == TELESPOOL_OK) {
		query_json(&body, ev, id, category, &plugins);
		/* JSON escapes can make the traceback longer than its cap:
		 * cut it further until the whole body fits. */
		while (!body.oom && body.len > TELESPOOL_BODY_MAX) {
			size_t have = strlen(ev->error);
			size_t over = body.len - TELESPOOL_BODY_MAX;
			size_t cap = have > over + 256 ? have - over - 256 : 0;
			if (cap > have - have / 8)
				cap = have - have / 8; /* a good step */
			free(ev->error);
			ev->error = telespool__clean_error(error_in, error_len,
							   cap, strict, NULL);
			if (ev->error == NULL)
				break;
			query_json(&body, ev, id, category, &plugins);
		}
		if (body.oom || ev->error == NULL)
			rc = TELESPOOL_ENOMEM;
	}
	free(category);
	free(plugins.p);
	if (rc != TELESPOOL_OK) {
		free(body.p);
		return fail(ev, NULL, rc, why, oom);
	}
	ev->body = body.p;
	ev->body_len = body.len;
	return TELESPOOL_OK;
}

static char *clean_json_value(const char *s, const char *key, int depth,
			      size_t cap)
{
	(void)key;
	(void)depth;
	return telespool__clean_text(s, strlen(s), cap, 0, NULL);
}

/* Caller-supplied JSON: strings redacted and capped, keys cleaned,
 * containers bounded in depth and members. */
static const struct telespool__cjson_cleaner json_cleaner = {
    JSON_MAX_DEPTH, JSON_MAX_MEMBERS, clean_name, clean_json_value};

/* cJSON and the redactor may use different allocators only if someone
 * installed cJSON hooks; we never do, so free() and cJSON_free() agree. */

/*
 * Parses json_text (NULL means {}), requires an object, and cleans it so
 * that build(obj) fits TELESPOOL_BODY_MAX, shrinking string_cap as needed.
 */
typedef int (*build_fn)(struct telespool__event *ev, cJSON *values,
			const void *ctx);

static int build_with_json(struct telespool__event *ev, const char *json_text,
			   build_fn build, const void *ctx,
			   const char *what_not_object, const char **why)
{
	/* The whole text must be one JSON value: "{} trailing" is refused. */
	cJSON *orig =
	    cJSON_ParseWithOpts(json_text ? json_text : "{}", NULL, 1);
	if (orig == NULL || !cJSON_IsObject(orig)) {
		cJSON_Delete(orig);
		telespool__event_free(ev);
		*why = what_not_object;
		return TELESPOOL_EINVAL;
	}
	static const size_t caps[] = {JSON_STRING_MAX, 1024, 256, 64, 16, 0};
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		cJSON *values = cJSON_Duplicate(orig, 1);
		if (values == NULL ||
		    telespool__clean_cjson(values, 1, caps[i], &json_cleaner) !=
			0) {
			cJSON_Delete(values);
			return fail(ev, orig, TELESPOOL_ENOMEM, why, oom);
		}
		int rc = build(ev, values, ctx); /* takes values */
		if (rc != TELESPOOL_OK)
			return fail(ev, orig, rc, why, oom);
		if (ev->body_len <= TELESPOOL_BODY_MAX)
			break;
	}
	if (ev->body_len > TELESPOOL_BODY_MAX) {
		/* Only reachable with a huge number of members at the top level
		 * of keys: keep the shape, drop the values. */
		cJSON *empty = cJSON_CreateObject();
		int rc = empty ? build(ev, empty, ctx) : TELESPOOL_ENOMEM;
		if (rc != TELESPOOL_OK)
			return fail(ev, orig, rc, why, oom);
	}
	cJSON_Delete(orig);
	return TELESPOOL_OK;
}

struct heartbeat_ctx {
	const struct telespool__ident *id;
};

static int build_heartbeat(struct telespool__event *ev, cJSON *features,
			   const void *ctx)
{
	const struct heartbeat_ctx *c = ctx;
	cJSON *obj = cJSON_CreateObject();
	int bad = obj == NULL ||
		  add_owned(obj, "event_type", "instance_heartbeat") ||
		  add_owned(obj, "instance_id", c->id->instance_id) ||
		  add_owned(obj, "version", c->id->version) ||
		  add_owned(obj, "edition", c->id->edition) ||
		  add_number(obj, "instance_create_ts",
			     (double)c->id->instance_create_ts);
	if (bad || !cJSON_AddItemToObject(obj, "features", features)) {
		cJSON_Delete(features);
		cJSON_Delete(obj);
		return TELESPOOL_ENOMEM;
	}
	if (add_owned(obj, "timestamp", ev->timestamp) ||
	    print_body(ev, obj) != TELESPOOL_OK) {
		cJSON_Delete(obj);
		return TELESPOOL_ENOMEM;
	}
	cJSON_Delete(obj);
	return TELESPOOL_OK;
}

int telespool__body_heartbeat(struct telespool__event *ev,
			      const struct telespool__ident *id,
			      const char *features_json,
			      const char *timestamp_iso, const char **why)
{
	struct heartbeat_ctx c = {id};

	event_init(ev, "instance_heartbeat");
	snprintf(ev->timestamp, sizeof(ev->timestamp), "%s", timestamp_iso);
	return build_with_json(ev, features_json, build_heartbeat, &c,
			       "features_json is not a JSON object", why);
}

/* ---- LangBot's payloads as they are (telespool_record_json) ---------- */

/* Keys whose value LangBot's sender turns into a string. */
static const char *const sender_strings[] = {
    "adapter", "runner", "runner_category", "model_name", "version",
    "edition", "error",  "timestamp",       "event_type", NULL};

/* Top-level keys that carry a short name or id: cleaned like the typed
 * calls' fields (names: trimmed, redacted, at most TELESPOOL_NAME_MAX). */
static const char *const name_keys[] = {"event_type",
					"adapter",
					"runner",
					"runner_category",
					"model_name",
					"version",
					"edition",
					"instance_id",
					"workspace_uuid",
					"runtime_instance_id",
					"timestamp",
					"event",
					NULL};

/* Keys of LangBot's bodies: plain identifiers, which cleaning leaves as
 * they are (so it is not run on them). */
static const char *const known_keys[] = {"event_type",
					 "query_id",
					 "adapter",
					 "runner",
					 "runner_category",
					 "duration_ms",
					 "model_name",
					 "version",
					 "instance_id",
					 "workspace_uuid",
					 "runtime_instance_id",
					 "edition",
					 "pipeline_plugins",
					 "features",
					 "error",
					 "timestamp",
					 "workspace_create_ts",
					 "instance_create_ts",
					 "survey_id",
					 "event",
					 "answers",
					 "metadata",
					 "completed",
					 NULL};

static int in_list(const char *const *list, const char *key)
{
	for (; *list != NULL; list++)
		if (strcmp(*list, key) == 0)
			return 1;
	return 0;
}

/* Containers nested at this level or deeper (the payload's own members are
 * level 1) are dropped; so are members beyond JSON_MAX_MEMBERS.  The same
 * bounds as the heartbeat's features always had. */
#define PAYLOAD_DROP_LEVEL (JSON_MAX_DEPTH + 1)

static const char *const not_stringable =
    "a field that LangBot's sender turns into a string (query_id, adapter, "
    "runner, runner_category, model_name, version, edition, error, "
    "timestamp or event_type) holds an array or object: its Python str() "
    "is not reproduced here, so convert it to a string first";

/* Replaces m (a member of obj) with a string node of text. */
static int set_string(struct pj *obj, struct pj *m, const char *text,
		      size_t len)
{
	struct pj *s = telespool__pj_string(text, len);
	if (s == NULL)
		return TELESPOOL_ENOMEM;
	telespool__pj_replace(obj, m, s);
	return TELESPOOL_OK;
}

/* LangBot's '' if v is None else str(v), for a value that is not a
 * container. */
static int python_str(struct pj *obj, struct pj *m, const char **why)
{
	switch (m->type) {
	case PJ_STR:
		return TELESPOOL_OK;
	case PJ_NULL:
		return set_string(obj, m, "", 0);
	case PJ_TRUE:
		return set_string(obj, m, "True", 4);
	case PJ_FALSE:
		return set_string(obj, m, "False", 5);
	case PJ_NUM: /* Python's str() of a number is its JSON text */
		return set_string(obj, m, m->str, m->len);
	default:
		*why = not_stringable;
		return TELESPOOL_EINVAL;
	}
}

static int64_t clamp_duration_text(const char *digits, size_t n, int neg)
{
	while (n > 1 && *digits == '0') {
		digits++;
		n--;
	}
	if (neg && !(n == 1 && digits[0] == '0'))
		return 0;
	if (n > 13)
		return DURATION_MAX;
	int64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v = v * 10 + (digits[i] - '0');
	return v > DURATION_MAX ? DURATION_MAX : v;
}

static int py_space(unsigned char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/* Python's int() of a string: white space around, a sign, digits with
 * single underscores between them.  -1 when int() would raise.  (Python
 * also takes other scripts' digits and Unicode spaces; those count as not
 * convertible here, so a C caller normalises them first.) */
static int64_t python_int_of_text(const char *s, size_t n)
{
	const char *e = s + n;
	while (s < e && py_space((unsigned char)*s))
		s++;
	while (e > s && py_space((unsigned char)e[-1]))
		e--;
	int neg = 0;
	if (s < e && (*s == '+' || *s == '-'))
		neg = *s++ == '-';
	char digits[16];
	size_t nd = 0, seen = 0;
	int big = 0;
	for (const char *p = s; p < e; p++) {
		if (*p >= '0' && *p <= '9') {
			seen++;
			if (nd == 0 && *p == '0')
				continue;
			if (nd < 14)
				digits[nd++] = *p;
			else
				big = 1;
		} else if (*p == '_' && p > s && p + 1 < e && p[-1] != '_' &&
			   p[1] >= '0' && p[1] <= '9') {
			continue;
		} else {
			return -1;
		}
	}
	if (seen == 0 || seen > PJ_INT_DIGITS_MAX)
		return -1;
	if (big)
		return neg ? 0 : DURATION_MAX;
	if (nd == 0)
		return 0;
	return clamp_duration_text(digits, nd, neg);
}

/* LangBot's int(duration_ms) (None or a failure: 0), clamped. */
static int64_t python_duration(const struct pj *v)
{
	switch (v->type) {
	case PJ_TRUE:
		return 1;
	case PJ_NUM:
		if (v->is_float) {
			double x = telespool__pj_strtod(v->str);
			if (x <= 0)
				return 0;
			return x >= (double)DURATION_MAX ? DURATION_MAX
							 : (int64_t)x;
		}
		return v->str[0] == '-'
			   ? 0
			   : clamp_duration_text(v->str, v->len, 0);
	case PJ_STR: {
		int64_t d = python_int_of_text(v->str, v->len);
		return d < 0 ? 0 : d;
	}
	default:
		return 0;
	}
}

/* TelemetryManager.send()'s normalisation (pkg/telemetry/telemetry.py),
 * plus the duration's clamp. */
static int normalise(struct pj *p, const char **why)
{
	struct pj *m = telespool__pj_get(p, "query_id");
	int rc = m ? python_str(p, m, why) : TELESPOOL_OK;
	for (size_t i = 0; rc == TELESPOOL_OK && sender_strings[i]; i++) {
		m = telespool__pj_get(p, sender_strings[i]);
		if (m != NULL)
			rc = python_str(p, m, why);
	}
	if (rc != TELESPOOL_OK)
		return rc;
	m = telespool__pj_get(p, "event_type");
	if (m == NULL || m->len == 0) {
		struct pj *q = telespool__pj_string("query", 5);
		if (q == NULL)
			return TELESPOOL_ENOMEM;
		if (m != NULL) {
			telespool__pj_replace(p, m, q);
		} else if (telespool__pj_set_key(q, "event_type") != 0) {
			telespool__pj_free(q);
			return TELESPOOL_ENOMEM;
		} else {
			telespool__pj_append(p, q);
		}
	}
	m = telespool__pj_get(p, "features");
	if (m != NULL && m->type != PJ_OBJ) {
		struct pj *o = telespool__pj_new(PJ_OBJ);
		if (o == NULL)
			return TELESPOOL_ENOMEM;
		telespool__pj_replace(p, m, o);
	}
	m = telespool__pj_get(p, "duration_ms");
	if (m != NULL) {
		struct pj *d = telespool__pj_int(python_duration(m));
		if (d == NULL)
			return TELESPOOL_ENOMEM;
		telespool__pj_replace(p, m, d);
	}
	return TELESPOOL_OK;
}

/* Puts text (malloc'd) in *dst in place of what was there, and its length
 * in *len; -1 if text is NULL. */
static int replace_text(char **dst, size_t *len, char *text)
{
	if (text == NULL)
		return -1;
	free(*dst);
	*dst = text;
	*len = strlen(text);
	return 0;
}

/* Sets v's cleaned text (a malloc'd string, printed instead of v->str,
 * which keeps the original for a second pass with a smaller cap); -1 if
 * cleaned is NULL. */
static int take_text(struct pj *v, char *cleaned)
{
	return replace_text(&v->out, &v->out_len, cleaned);
}

static int clean_id_node(struct pj *v)
{
	size_t n = 0;
	while (n < v->len && n <= 20 && v->str[n] >= '0' && v->str[n] <= '9')
		n++;
	if (n > 0 && n <= 20 && n == v->len) {
		free(v->out);
		v->out = NULL;
		return 0;
	}
	return take_text(
	    v, telespool__clean_name(v->str, v->len, TELESPOOL_NAME_MAX));
}

static int clean_key(struct pj *m)
{
	/* LangBot's own keys are plain identifiers: nothing to clean. */
	if (strlen(m->key) == m->key_len && in_list(known_keys, m->key))
		return 0;
	return replace_text(
	    &m->key, &m->key_len,
	    telespool__clean_name(m->key, m->key_len, TELESPOOL_NAME_MAX));
}

/* Non-zero when a member before m (in obj) has m's (cleaned) key: two keys
 * that differed only in what cleaning removes.  The later one is dropped,
 * so that the body stays an object with unique keys. */
static int key_taken(const struct pj *obj, const struct pj *m)
{
	for (const struct pj *o = obj->child; o != NULL && o != m; o = o->next)
		if (o->key_len == m->key_len &&
		    memcmp(o->key, m->key, m->key_len) == 0)
			return 1;
	return 0;
}

/*
 * The first pass, which no cap changes: containers bounded (members beyond
 * JSON_MAX_MEMBERS, containers at PAYLOAD_DROP_LEVEL, at most
 * TELESPOOL_PLUGINS_MAX plugins), keys cleaned and made unique.  level is
 * that of v's children.  -1 when out of memory.
 */
static int shape(struct pj *v, int level, int plugins)
{
	int members = 0;
	size_t max = plugins ? TELESPOOL_PLUGINS_MAX : JSON_MAX_MEMBERS;
	for (struct pj *c = v->child, *next; c != NULL; c = next) {
		next = c->next;
		int nested = c->type == PJ_OBJ || c->type == PJ_ARR;
		if ((size_t)++members > max ||
		    (nested && level >= PAYLOAD_DROP_LEVEL)) {
			telespool__pj_remove(v, c);
			continue;
		}
		if (v->type == PJ_OBJ) {
			if (clean_key(c) != 0)
				return -1;
			if (key_taken(v, c)) {
				telespool__pj_remove(v, c);
				continue;
			}
		}
		int is_plugins = level == 1 && c->type == PJ_ARR &&
				 strcmp(c->key, "pipeline_plugins") == 0;
		if (nested && shape(c, level + 1, is_plugins) != 0)
			return -1;
	}
	return 0;
}

/* Every string below v redacted and capped at cap.  -1: no memory. */
static int clean_strings(struct pj *v, size_t cap)
{
	if (v->type == PJ_STR && v->trusted)
		return 0;
	if (v->type == PJ_STR)
		return take_text(
		    v, telespool__clean_text(v->str, v->len, cap, 0, NULL));
	for (struct pj *c = v->child; c != NULL; c = c->next)
		if (clean_strings(c, cap) != 0)
			return -1;
	return 0;
}

/* The second pass: the payload's own members, by what they carry. */
static int clean_payload(struct pj *p, enum telespool__endpoint ep, size_t cap,
			 size_t error_cap, int strict)
{
	for (struct pj *m = p->child; m != NULL; m = m->next) {
		const char *k = m->key;
		int rc;
		if (m->type == PJ_STR && m->trusted)
			rc = 0;
		else if (m->type == PJ_STR && ep == TELESPOOL__EP_TELEMETRY &&
			 strcmp(k, "error") == 0)
			rc = take_text(m, telespool__clean_error(m->str, m->len,
								 error_cap,
								 strict, NULL));
		else if (m->type == PJ_STR && (strcmp(k, "query_id") == 0 ||
					       strcmp(k, "survey_id") == 0))
			rc = clean_id_node(m);
		else if (m->type == PJ_STR && in_list(name_keys, k))
			rc = take_text(
			    m, telespool__clean_name(m->str, m->len,
						     TELESPOOL_NAME_MAX));
		else if (m->type == PJ_ARR && ep == TELESPOOL__EP_TELEMETRY &&
			 strcmp(k, "pipeline_plugins") == 0) {
			rc = 0;
			for (struct pj *c = m->child; c && !rc; c = c->next)
				rc = c->type == PJ_STR
					 ? take_text(c, telespool__clean_name(
							    c->str, c->len,
							    TELESPOOL_NAME_MAX))
					 : clean_strings(c, cap);
		} else
			rc = clean_strings(m, cap);
		if (rc != 0)
			return -1;
	}
	return 0;
}

static const char *const too_large =
    "the payload is larger than 64 KiB even with every cap applied";

/* Cleans p and prints it into ev, shrinking the traceback, then every other
 * string, then emptying the payload's containers, until the body fits
 * TELESPOOL_BODY_MAX.  Each pass cleans the original strings again. */
static int print_capped(struct telespool__event *ev, struct pj *p,
			enum telespool__endpoint ep, int strict,
			const char **why)
{
	static const size_t caps[] = {JSON_STRING_MAX, 1024, 256, 64, 16, 0};
	const size_t ncaps = sizeof(caps) / sizeof(caps[0]);
	if (shape(p, 1, 0) != 0) {
		*why = oom;
		return TELESPOOL_ENOMEM;
	}
	struct pj *err = ep == TELESPOOL__EP_TELEMETRY
			     ? telespool__pj_get(p, "error")
			     : NULL;
	if (err != NULL && err->type != PJ_STR)
		err = NULL;
	size_t error_cap = TELESPOOL_ERROR_MAX;
	for (size_t i = 0; i <= ncaps; i++) {
		int last = i == ncaps;
		if (clean_payload(p, ep, caps[last ? i - 1 : i], error_cap,
				  strict) != 0) {
			*why = oom;
			return TELESPOOL_ENOMEM;
		}
		if (last) /* keep the shape, drop the values */
			for (struct pj *m = p->child; m != NULL; m = m->next)
				if (m->type == PJ_OBJ || m->type == PJ_ARR) {
					telespool__pj_free(m->child);
					m->child = m->last = NULL;
					m->n = 0;
				}
		for (;;) {
			free(ev->body);
			ev->body = telespool__pj_print(p, &ev->body_len);
			if (ev->body == NULL ||
			    ev->body_len <= TELESPOOL_BODY_MAX || err == NULL ||
			    err->out_len == 0)
				break;
			/* JSON escapes can make the traceback longer than
			 * its cap: cut it further, as the typed call does. */
			size_t have = err->out_len,
			       over = ev->body_len - TELESPOOL_BODY_MAX;
			size_t cap = have > over + 256 ? have - over - 256 : 0;
			if (cap > have - have / 8)
				cap = have - have / 8;
			error_cap = cap;
			if (take_text(err, telespool__clean_error(
					       err->str, err->len, cap, strict,
					       NULL)) != 0) {
				free(ev->body);
				ev->body = NULL;
				break;
			}
		}
		if (ev->body == NULL) {
			*why = oom;
			return TELESPOOL_ENOMEM;
		}
		if (ev->body_len <= TELESPOOL_BODY_MAX)
			return TELESPOOL_OK;
	}
	*why = too_large;
	return TELESPOOL_EINVAL;
}

int telespool__endpoint_of(const char *path)
{
	if (path == NULL || strcmp(path, "/api/v1/telemetry") == 0)
		return TELESPOOL__EP_TELEMETRY;
	if (strcmp(path, "/api/v1/survey/pending") == 0)
		return TELESPOOL__EP_SURVEY_PENDING;
	if (strcmp(path, "/api/v1/survey/respond") == 0)
		return TELESPOOL__EP_SURVEY_RESPOND;
	if (strcmp(path, "/api/v1/survey/dismiss") == 0)
		return TELESPOOL__EP_SURVEY_DISMISS;
	return -1;
}

/* The survey's identifying text, for the spool's own bookkeeping: cleaned
 * as in the body (an id keeps a plain run of digits, see clean_id()). */
static char *text_of(const struct pj *v)
{
	if (v == NULL || (v->type != PJ_STR && v->type != PJ_NUM) ||
	    v->len == 0)
		return NULL;
	size_t n = 0;
	while (n < v->len && n <= 20 && v->str[n] >= '0' && v->str[n] <= '9')
		n++;
	if (n > 0 && n <= 20 && n == v->len)
		return strdup(v->str);
	char *s = telespool__clean_name(v->str, v->len, TELESPOOL_NAME_MAX);
	if (s != NULL && s[0] == '\0') {
		free(s);
		return NULL;
	}
	return s;
}

/* Builds ev from payload (taken over): the common end of every path that
 * stores LangBot's bytes. */
static int body_from_payload(struct telespool__event *ev, struct pj *payload,
			     enum telespool__endpoint ep, int strict,
			     const char **why)
{
	int rc = TELESPOOL_OK;
	if (ep == TELESPOOL__EP_TELEMETRY) {
		event_init(ev, "query");
		rc = normalise(payload, why);
		const struct pj *t = telespool__pj_get(payload, "event_type");
		if (t && t->len == 18 &&
		    memcmp(t->str, "instance_heartbeat", 18) == 0)
			ev->event_type = "instance_heartbeat";
	} else if (ep == TELESPOOL__EP_SURVEY_PENDING) {
		event_init(ev, "survey_trigger");
		const struct pj *e = telespool__pj_get(payload, "event");
		if (e != NULL && e->type == PJ_STR)
			ev->milestone = text_of(e);
		if (ev->milestone == NULL) {
			*why = "a survey/pending body needs a non-empty string "
			       "\"event\" (the milestone)";
			rc = TELESPOOL_EINVAL;
		}
	} else {
		event_init(ev, ep == TELESPOOL__EP_SURVEY_RESPOND
				   ? "survey_response"
				   : "survey_dismiss");
		ev->survey_id =
		    text_of(telespool__pj_get(payload, "survey_id"));
		if (ev->survey_id == NULL) {
			*why = "a survey body needs a non-empty \"survey_id\"";
			rc = TELESPOOL_EINVAL;
		}
	}
	if (rc == TELESPOOL_OK)
		rc = print_capped(ev, payload, ep, strict, why);
	telespool__pj_free(payload);
	if (rc != TELESPOOL_OK) {
		const char *w = *why;
		telespool__event_free(ev);
		*why = w;
	}
	return rc;
}

/* body_from_payload() for a payload built here; bad: building it ran out
 * of memory (p, maybe partial, is freed). */
static int built_body(struct telespool__event *ev, struct pj *p, int bad,
		      enum telespool__endpoint ep, int strict, const char **why)
{
	if (bad) {
		telespool__pj_free(p);
		*why = oom;
		return TELESPOOL_ENOMEM;
	}
	return body_from_payload(ev, p, ep, strict, why);
}

/* Parses JSON text that must be an object; NULL text means {} when
 * null_ok.  On failure *why says why (not_object names the argument). */
static struct pj *parse_object(const char *text, int null_ok,
			       const char *not_object, int *rc,
			       const char **why)
{
	int oom_hit = 0;
	const char *perr = NULL;
	if (text == NULL && null_ok)
		text = "{}";
	if (text == NULL) {
		*rc = TELESPOOL_EINVAL;
		*why = not_object;
		return NULL;
	}
	size_t n = strlen(text);
	if (n > TELESPOOL_PAYLOAD_MAX) {
		*rc = TELESPOOL_EINVAL;
		*why = "the JSON text is larger than 4 MiB";
		return NULL;
	}
	struct pj *v = telespool__pj_parse(text, n, &perr, &oom_hit);
	if (v == NULL) {
		/* The argument, then what is wrong with it: valid until the
		 * thread's next record call, which is long enough for the
		 * caller (finish_record() copies it). */
		static _Thread_local char detail[256];
		snprintf(detail, sizeof(detail), "%s (%s)", not_object,
			 perr ? perr : "not JSON");
		*rc = oom_hit ? TELESPOOL_ENOMEM : TELESPOOL_EINVAL;
		*why = oom_hit ? oom : detail;
		return NULL;
	}
	if (v->type != PJ_OBJ) {
		telespool__pj_free(v);
		*rc = TELESPOOL_EINVAL;
		*why = not_object;
		return NULL;
	}
	*rc = TELESPOOL_OK;
	return v;
}

int telespool__body_json(struct telespool__event *ev, const char *json_text,
			 enum telespool__endpoint ep, int strict,
			 const char **why)
{
	int rc;
	event_init(ev, "query");
	struct pj *p = parse_object(
	    json_text, 0, "payload_json is not a JSON object", &rc, why);
	if (p == NULL)
		return rc;
	return body_from_payload(ev, p, ep, strict, why);
}

/* Appends key: node to obj (taking node); -1 when out of memory. */
static int put(struct pj *obj, const char *key, struct pj *node)
{
	if (node == NULL)
		return -1;
	if (telespool__pj_set_key(node, key) != 0) {
		telespool__pj_free(node);
		return -1;
	}
	telespool__pj_append(obj, node);
	return 0;
}

static int put_str(struct pj *obj, const char *key, const char *val)
{
	return put(obj, key,
		   telespool__pj_string(val ? val : "", val ? strlen(val) : 0));
}

/* A value the handle cleaned at open, or one we made (a timestamp, a
 * literal): stored as it is, so that it is cleaned exactly once. */
static int put_trusted(struct pj *obj, const char *key, const char *val)
{
	if (put_str(obj, key, val) != 0)
		return -1;
	obj->last->trusted = 1;
	return 0;
}

static int put_int(struct pj *obj, const char *key, int64_t v)
{
	return put(obj, key, telespool__pj_int((long long)v));
}

/* The general case: the payload as a tree, through telespool__body_json's
 * path. */
int telespool__body_query2_tree(struct telespool__event *ev,
				const struct telespool__ident *id,
				const telespool_query *q, int strict,
				int64_t now_us, const char **why)
{
	int rc = TELESPOOL_OK;
	char ts[TELESPOOL_PYISO_LEN];

	event_init(ev, "query");
	if (q->n_pipeline_plugins > 0 && q->pipeline_plugins == NULL) {
		*why = "pipeline_plugins is NULL but n_pipeline_plugins > 0";
		return TELESPOOL_EINVAL;
	}
	struct pj *features =
	    parse_object(q->features_json, 1,
			 "features_json is not a JSON object", &rc, why);
	if (features == NULL)
		return rc;
	struct pj *plugins =
	    telespool__pj_new(q->pipeline_plugins ? PJ_ARR : PJ_NULL);
	/* The first TELESPOOL_PLUGINS_MAX entries, NULL ones skipped (as
	 * plugins_json() does). */
	for (size_t i = 0;
	     plugins && i < q->n_pipeline_plugins && i < TELESPOOL_PLUGINS_MAX;
	     i++) {
		const char *name = q->pipeline_plugins[i];
		if (name == NULL)
			continue;
		struct pj *s = telespool__pj_string(name, strlen(name));
		if (s == NULL) {
			telespool__pj_free(plugins);
			plugins = NULL;
		} else {
			telespool__pj_append(plugins, s);
		}
	}
	telespool__iso_python(now_us, 0, ts);
	const char *inst = q->instance_id ? q->instance_id : id->instance_id;
	const char *runtime =
	    q->runtime_instance_id ? q->runtime_instance_id : id->instance_id;
	struct pj *p = telespool__pj_new(PJ_OBJ);
	int bad = p == NULL || plugins == NULL ||
		  put_trusted(p, "event_type", "query") ||
		  put_str(p, "query_id", q->query_id) ||
		  put_str(p, "adapter", q->adapter) ||
		  put_str(p, "runner", q->runner) ||
		  put_str(p, "runner_category", q->runner_category) ||
		  put_int(p, "duration_ms", q->duration_ms) ||
		  put_str(p, "model_name", q->model_name) ||
		  put_trusted(p, "version", id->version) ||
		  (inst == id->instance_id ? put_trusted(p, "instance_id", inst)
					   : put_str(p, "instance_id", inst)) ||
		  put_str(p, "workspace_uuid", q->workspace_uuid) ||
		  (runtime == id->instance_id
		       ? put_trusted(p, "runtime_instance_id", runtime)
		       : put_str(p, "runtime_instance_id", runtime)) ||
		  put_trusted(p, "edition", id->edition);
	if (bad) {
		telespool__pj_free(plugins);
		telespool__pj_free(features);
	} else {
		bad = put(p, "pipeline_plugins", plugins) ||
		      put(p, "features", features) ||
		      put_str(p, "error", q->error) ||
		      put_trusted(p, "timestamp", ts);
	}
	return built_body(ev, p, bad, TELESPOOL__EP_TELEMETRY, strict, why);
}

int telespool__body_workspace_heartbeat(struct telespool__event *ev,
					const struct telespool__ident *id,
					const telespool_heartbeat *hb,
					int64_t now_us, const char **why)
{
	int rc = TELESPOOL_OK;
	char ts[TELESPOOL_PYISO_LEN];

	event_init(ev, "instance_heartbeat");
	struct pj *features =
	    parse_object(hb->features_json, 1,
			 "features_json is not a JSON object", &rc, why);
	if (features == NULL)
		return rc;
	telespool__iso_python(now_us, 1, ts);
	struct pj *p = telespool__pj_new(PJ_OBJ);
	int bad = p == NULL ||
		  put_trusted(p, "event_type", "instance_heartbeat") ||
		  put_trusted(p, "query_id", "") ||
		  put_trusted(p, "version", id->version) ||
		  (hb->instance_id
		       ? put_str(p, "instance_id", hb->instance_id)
		       : put_trusted(p, "instance_id", id->instance_id)) ||
		  put_str(p, "workspace_uuid", hb->workspace_uuid) ||
		  put_int(p, "workspace_create_ts", hb->workspace_create_ts) ||
		  put_int(p, "instance_create_ts", id->instance_create_ts) ||
		  put_trusted(p, "edition", id->edition);
	if (bad)
		telespool__pj_free(features);
	else
		bad = put(p, "features", features) ||
		      put_trusted(p, "timestamp", ts);
	return built_body(ev, p, bad, TELESPOOL__EP_TELEMETRY, 0, why);
}

/* Whether s keeps any text once clean cleans it: TELESPOOL_OK, else
 * TELESPOOL_EINVAL with *why = empty_why (TELESPOOL_ENOMEM when out of
 * memory). */
static int check_not_empty(const char *s, char *(*clean)(const char *),
			   const char *empty_why, const char **why)
{
	char *c = clean(s);
	if (c == NULL) {
		*why = oom;
		return TELESPOOL_ENOMEM;
	}
	int empty = c[0] == '\0';
	free(c);
	if (empty) {
		*why = empty_why;
		return TELESPOOL_EINVAL;
	}
	return TELESPOOL_OK;
}

/* The typed survey calls build the body LangBot's SurveyManager POSTs and
 * store it like telespool_record_json_to() does. */
int telespool__body_survey_trigger(struct telespool__event *ev,
				   const struct telespool__ident *id,
				   const char *event, const char **why)
{
	event_init(ev, "survey_trigger");
	int rc = check_not_empty(event, clean_name,
				 "event (the milestone) is empty", why);
	if (rc != TELESPOOL_OK)
		return rc;
	struct pj *p = telespool__pj_new(PJ_OBJ);
	int bad = p == NULL || put_trusted(p, "instance_id", id->instance_id) ||
		  put_str(p, "event", event);
	return built_body(ev, p, bad, TELESPOOL__EP_SURVEY_PENDING, 0, why);
}

/* survey_id NULL is handled by the caller; "" (once cleaned) is EINVAL. */
static int check_survey_id(const char *survey_id, const char **why)
{
	return check_not_empty(survey_id, clean_id, "survey_id is empty", why);
}

int telespool__body_survey_response(struct telespool__event *ev,
				    const struct telespool__ident *id,
				    const char *survey_id,
				    const char *answers_json, int completed,
				    const char **why)
{
	event_init(ev, "survey_response");
	int rc = check_survey_id(survey_id, why);
	if (rc != TELESPOOL_OK)
		return rc;
	if (answers_json == NULL) {
		*why = "answers_json is NULL";
		return TELESPOOL_EINVAL;
	}
	struct pj *answers = parse_object(
	    answers_json, 0, "answers_json is not a JSON object", &rc, why);
	if (answers == NULL)
		return rc;
	struct pj *p = telespool__pj_new(PJ_OBJ);
	struct pj *meta = telespool__pj_new(PJ_OBJ);
	int bad = p == NULL || meta == NULL ||
		  put_str(p, "survey_id", survey_id) ||
		  put_trusted(p, "instance_id", id->instance_id);
	if (bad) {
		telespool__pj_free(answers);
		telespool__pj_free(meta);
	} else {
		bad = put(p, "answers", answers);
		if (bad || put_trusted(meta, "version", id->version) ||
		    put_trusted(meta, "instance_id", id->instance_id))
			bad = 1, telespool__pj_free(meta);
		else
			bad = put(p, "metadata", meta) ||
			      put(p, "completed",
				  telespool__pj_new(completed ? PJ_TRUE
							      : PJ_FALSE));
	}
	return built_body(ev, p, bad, TELESPOOL__EP_SURVEY_RESPOND, 0, why);
}

int telespool__body_survey_dismiss(struct telespool__event *ev,
				   const struct telespool__ident *id,
				   const char *survey_id, const char **why)
{
	event_init(ev, "survey_dismiss");
	int rc = check_survey_id(survey_id, why);
	if (rc != TELESPOOL_OK)
		return rc;
	struct pj *p = telespool__pj_new(PJ_OBJ);
	int bad = p == NULL || put_str(p, "survey_id", survey_id) ||
		  put_trusted(p, "instance_id", id->instance_id);
	return built_body(ev, p, bad, TELESPOOL__EP_SURVEY_DISMISS, 0, why);
}

/* q->features_json as the features member of a query body: parsed,
 * shaped and cleaned as clean_payload() does, printed into *text (NULL if
 * there are none).  Returns a telespool_rc, with *why on failure. */
static int query2_features(const telespool_query *q, char **text, size_t *len,
			   const char **why)
{
	int rc = TELESPOOL_OK;
	struct pj *features;

	*text = NULL;
	*len = 2;
	if (q->features_json == NULL)
		return TELESPOOL_OK;
	features = parse_object(q->features_json, 0,
				"features_json is not a JSON object", &rc, why);
	if (features == NULL)
		return rc;
	if (shape(features, 2, 0) != 0 ||
	    clean_strings(features, JSON_STRING_MAX) != 0 ||
	    (*text = telespool__pj_print(features, len)) == NULL) {
		telespool__pj_free(features);
		*why = oom;
		return TELESPOOL_ENOMEM;
	}
	telespool__pj_free(features);
	return TELESPOOL_OK;
}

/* The query body's strings other than the event's own. */
enum { Q2_VER, Q2_INST, Q2_WS, Q2_RT, Q2_ED, Q2_CAT, Q2_TS, Q2_NSTR };

/* Fills c[] with the query body's strings, cleaned as clean_payload()
 * cleans them.  The handle's constants were cleaned at open and the
 * timestamp ts is ours: cleaning them again would change nothing
 * (test_spool checks that the generic path stores this body unchanged).
 * Returns non-zero when out of memory. */
static int query2_strings(char *c[Q2_NSTR], const struct telespool__ident *id,
			  const telespool_query *q, const char *ts)
{
	const char *inst = q->instance_id ? q->instance_id : id->instance_id;
	const char *runtime =
	    q->runtime_instance_id ? q->runtime_instance_id : id->instance_id;
	const char *raw[Q2_NSTR] = {
	    id->version,        inst, q->workspace_uuid, runtime, id->edition,
	    q->runner_category, ts};
	const int trusted[Q2_NSTR] = {
	    1, inst == id->instance_id, 0, runtime == id->instance_id, 1, 0, 1};
	int bad = 0;

	for (int i = 0; i < Q2_NSTR; i++)
		bad |= (c[i] = trusted[i] ? strdup(raw[i] ? raw[i] : "")
					  : clean_name(raw[i])) == NULL;
	return bad;
}

/* Prints the query body into b, in LangBot's field order. */
static void query2_print(struct jbuf *b, const struct telespool__event *ev,
			 char *const c[Q2_NSTR], const struct jbuf *plugins,
			 const char *features_text, size_t features_len)
{
	JB_LIT(b, "{" FIRST("event_type") "\"query\"");
	JB_MEMBER(b, NEXT("query_id"), ev->query_id);
	JB_MEMBER(b, NEXT("adapter"), ev->adapter);
	JB_MEMBER(b, NEXT("runner"), ev->runner);
	JB_MEMBER(b, NEXT("runner_category"), c[Q2_CAT]);
	JB_LIT(b, NEXT("duration_ms"));
	jb_int(b, ev->duration_ms);
	JB_MEMBER(b, NEXT("model_name"), ev->model_name);
	JB_MEMBER(b, NEXT("version"), c[Q2_VER]);
	JB_MEMBER(b, NEXT("instance_id"), c[Q2_INST]);
	JB_MEMBER(b, NEXT("workspace_uuid"), c[Q2_WS]);
	JB_MEMBER(b, NEXT("runtime_instance_id"), c[Q2_RT]);
	JB_MEMBER(b, NEXT("edition"), c[Q2_ED]);
	JB_LIT(b, NEXT("pipeline_plugins"));
	jb_raw(b, plugins->p, plugins->len);
	JB_LIT(b, NEXT("features"));
	if (features_text != NULL)
		jb_raw(b, features_text, features_len);
	else
		JB_LIT(b, "{}");
	JB_MEMBER(b, NEXT("error"), ev->error);
	JB_MEMBER(b, NEXT("timestamp"), c[Q2_TS]);
	JB_LIT(b, "}");
}

/*
 * The hot path of the typed call: the same bytes as query2_tree() (the same
 * cleaning of each field, the same printing), written straight into one
 * buffer like the 4.10.6 body; only features goes through a tree.  A body
 * that would need caps beyond the traceback's takes the tree path.
 */
int telespool__body_query2(struct telespool__event *ev,
			   const struct telespool__ident *id,
			   const telespool_query *q, int strict, int64_t now_us,
			   const char **why)
{
	int rc;
	char ts[TELESPOOL_PYISO_LEN];

	event_init(ev, "query");
	if (q->n_pipeline_plugins > 0 && q->pipeline_plugins == NULL) {
		*why = "pipeline_plugins is NULL but n_pipeline_plugins > 0";
		return TELESPOOL_EINVAL;
	}
	char *features_text;
	size_t features_len;
	rc = query2_features(q, &features_text, &features_len, why);
	if (rc != TELESPOOL_OK)
		return rc;
	telespool__iso_python(now_us, 0, ts);
	char *c[Q2_NSTR] = {0};
	int bad = query2_strings(c, id, q, ts);
	query_fields(ev, q, strict);
	struct jbuf plugins = {NULL, 0, 0, 0}, b = {NULL, 0, 0, 0};
	bad |= !ev->query_id || !ev->adapter || !ev->runner ||
	       !ev->model_name || !ev->error;
	if (!bad && q->pipeline_plugins == NULL)
		JB_LIT(&plugins, "null");
	else if (!bad)
		bad = plugins_json(q, &plugins) != TELESPOOL_OK;
	if (!bad) {
		query2_print(&b, ev, c, &plugins, features_text, features_len);
		/* Over the cap: the tree path cuts the traceback further,
		 * then the other strings. */
		if (!b.oom && b.len > TELESPOOL_BODY_MAX)
			bad = -1;
	}
	for (int i = 0; i < Q2_NSTR; i++)
		free(c[i]);
	free(features_text);
	free(plugins.p);
	if (bad == -1) {
		free(b.p);
		telespool__event_free(ev);
		return telespool__body_query2_tree(ev, id, q, strict, now_us,
						   why);
	}
	if (bad || b.oom) {
		free(b.p);
		telespool__event_free(ev);
		*why = oom;
		return TELESPOOL_ENOMEM;
	}
	ev->body = b.p;
	ev->body_len = b.len;
	return TELESPOOL_OK;
}
