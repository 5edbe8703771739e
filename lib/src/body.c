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

#include "redact.h"

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

/* Non-zero when one of the 8 bytes in w is a control character, '"' or
 * '\\' (the usual bit tricks for "has a byte below n" and "has a zero
 * byte"; exact for "any", which is all that is asked). */
static uint64_t needs_escape8(uint64_t w)
{
	const uint64_t ones = 0x0101010101010101ULL, high = ones * 0x80;
	uint64_t quote = w ^ (ones * '"'), bslash = w ^ (ones * '\\');
	return ((w - ones * 0x20) | (quote - ones) | (bslash - ones)) & ~w &
	       high;
}

/* A JSON string: s is valid UTF-8 (cleaned), copied as it is except for
 * '"', '\\' and control characters. */
static void jb_str(struct jbuf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = strlen(s);
	jb_need(b, n + 2);
	if (b->oom)
		return;
	b->p[b->len++] = '"';
	const char *run = s, *end = s + n;
	for (const char *c = s;; c++) {
		/* Eight bytes at a time while none needs escaping. */
		uint64_t w;
		while (end - c >= 8 && (memcpy(&w, c, 8), !needs_escape8(w)))
			c += 8;
		unsigned char ch = (unsigned char)*c;
		if (ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		jb_raw(b, run, (size_t)(c - run));
		if (ch == '\0')
			break;
		char esc[6] = {'\\', 0, 0, 0, 0, 0};
		size_t k = 2;
		switch (ch) {
		case '"':
			esc[1] = '"';
			break;
		case '\\':
			esc[1] = '\\';
			break;
		case '\b':
			esc[1] = 'b';
			break;
		case '\f':
			esc[1] = 'f';
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		case '\t':
			esc[1] = 't';
			break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[ch >> 4];
			esc[5] = hex[ch & 15];
			k = 6;
		}
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

/*
 * Cleans caller-supplied JSON in place: strings redacted and capped at
 * string_cap, keys cleaned, containers bounded in depth and members.
 * Returns 0, or -1 when out of memory.
 */
static int clean_json(cJSON *node, int depth, size_t string_cap)
{
	cJSON *child = node->child;
	int members = 0;

	while (child != NULL) {
		cJSON *next = child->next;
		if (++members > JSON_MAX_MEMBERS ||
		    (depth >= JSON_MAX_DEPTH &&
		     (cJSON_IsObject(child) || cJSON_IsArray(child)))) {
			cJSON_Delete(cJSON_DetachItemViaPointer(node, child));
			child = next;
			continue;
		}
		if (child->string != NULL) {
			char *key = clean_name(child->string);
			if (key == NULL)
				return -1;
			if (!(child->type & cJSON_StringIsConst))
				cJSON_free(child->string);
			child->string = key;
			child->type &= ~cJSON_StringIsConst;
		}
		if (cJSON_IsString(child) && child->valuestring != NULL) {
			const char *v = child->valuestring;
			char *c = telespool__clean_text(v, strlen(v),
							string_cap, 0, NULL);
			if (c == NULL)
				return -1;
			cJSON_free(child->valuestring);
			child->valuestring = c;
		} else if (cJSON_IsObject(child) || cJSON_IsArray(child)) {
			if (clean_json(child, depth + 1, string_cap) != 0)
				return -1;
		}
		child = next;
	}
	return 0;
}

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
		if (values == NULL || clean_json(values, 1, caps[i]) != 0) {
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

int telespool__body_survey_trigger(struct telespool__event *ev,
				   const struct telespool__ident *id,
				   const char *event, const char **why)
{
	event_init(ev, "survey_trigger");
	ev->milestone = clean_name(event);
	if (ev->milestone == NULL)
		return fail(ev, NULL, TELESPOOL_ENOMEM, why, oom);
	if (ev->milestone[0] == '\0')
		return fail(ev, NULL, TELESPOOL_EINVAL, why,
			    "event (the milestone) is empty");
	cJSON *obj = cJSON_CreateObject();
	if (obj == NULL || add_owned(obj, "instance_id", id->instance_id) ||
	    add_owned(obj, "event", ev->milestone) ||
	    print_body(ev, obj) != TELESPOOL_OK)
		return fail(ev, obj, TELESPOOL_ENOMEM, why, oom);
	cJSON_Delete(obj);
	return TELESPOOL_OK;
}

struct response_ctx {
	const struct telespool__ident *id;
	int completed;
};

static int build_response(struct telespool__event *ev, cJSON *answers,
			  const void *ctx)
{
	const struct response_ctx *c = ctx;
	cJSON *obj = cJSON_CreateObject();
	cJSON *meta = cJSON_CreateObject();
	int bad = obj == NULL || meta == NULL ||
		  add_owned(obj, "survey_id", ev->survey_id) ||
		  add_owned(obj, "instance_id", c->id->instance_id);
	if (bad || !cJSON_AddItemToObject(obj, "answers", answers)) {
		cJSON_Delete(answers);
		cJSON_Delete(meta);
		cJSON_Delete(obj);
		return TELESPOOL_ENOMEM;
	}
	bad = add_owned(meta, "version", c->id->version) ||
	      add_owned(meta, "instance_id", c->id->instance_id);
	if (bad || !cJSON_AddItemToObject(obj, "metadata", meta)) {
		cJSON_Delete(meta);
		cJSON_Delete(obj);
		return TELESPOOL_ENOMEM;
	}
	if (!cJSON_AddBoolToObject(obj, "completed", c->completed != 0) ||
	    print_body(ev, obj) != TELESPOOL_OK) {
		cJSON_Delete(obj);
		return TELESPOOL_ENOMEM;
	}
	cJSON_Delete(obj);
	return TELESPOOL_OK;
}

static int survey_id_of(struct telespool__event *ev, const char *survey_id,
			const char **why)
{
	ev->survey_id = clean_id(survey_id);
	if (ev->survey_id == NULL)
		return fail(ev, NULL, TELESPOOL_ENOMEM, why, oom);
	if (ev->survey_id[0] == '\0')
		return fail(ev, NULL, TELESPOOL_EINVAL, why,
			    "survey_id is empty");
	return TELESPOOL_OK;
}

int telespool__body_survey_response(struct telespool__event *ev,
				    const struct telespool__ident *id,
				    const char *survey_id,
				    const char *answers_json, int completed,
				    const char **why)
{
	struct response_ctx c = {id, completed};

	event_init(ev, "survey_response");
	int rc = survey_id_of(ev, survey_id, why);
	if (rc != TELESPOOL_OK)
		return rc;
	if (answers_json == NULL)
		return fail(ev, NULL, TELESPOOL_EINVAL, why,
			    "answers_json is NULL");
	return build_with_json(ev, answers_json, build_response, &c,
			       "answers_json is not a JSON object", why);
}

int telespool__body_survey_dismiss(struct telespool__event *ev,
				   const struct telespool__ident *id,
				   const char *survey_id, const char **why)
{
	event_init(ev, "survey_dismiss");
	int rc = survey_id_of(ev, survey_id, why);
	if (rc != TELESPOOL_OK)
		return rc;
	cJSON *obj = cJSON_CreateObject();
	if (obj == NULL || add_owned(obj, "survey_id", ev->survey_id) ||
	    add_owned(obj, "instance_id", id->instance_id) ||
	    print_body(ev, obj) != TELESPOOL_OK)
		return fail(ev, obj, TELESPOOL_ENOMEM, why, oom);
	cJSON_Delete(obj);
	return TELESPOOL_OK;
}
