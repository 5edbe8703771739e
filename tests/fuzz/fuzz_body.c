/*
 * fuzz_body.c - libFuzzer target for the JSON body builder: whatever a
 * caller passes, every body is valid JSON, valid UTF-8 and under the cap.
 * The 4.10.6 bodies are byte for byte what cJSON prints for them (the query
 * body is written without cJSON: same escapes, same order, no spaces); the
 * bodies of LangBot's payloads as they are (pyjson.c, Python's json.dumps
 * form) read back and print again as the same bytes.
 * The input is split at 0x01 bytes into the query's fields; the whole input
 * is also tried as heartbeat features, as survey answers, and as a payload
 * for each endpoint of telespool_record_json_to().
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "pyjson.h"
#include "redact.h"
#include "../text_checks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const struct telespool__event *ev)
{
	if (ev->body_len > TELESPOOL_BODY_MAX ||
	    strlen(ev->body) != ev->body_len ||
	    !tc_valid_utf8(ev->body, ev->body_len))
		abort();
	cJSON *j = cJSON_Parse(ev->body);
	if (j == NULL || !cJSON_IsObject(j))
		abort();
	char *again = cJSON_PrintUnformatted(j);
	if (again == NULL || strcmp(again, ev->body) != 0)
		abort();
	cJSON_free(again);
	cJSON_Delete(j);
}

/* A body in Python's json.dumps form: JSON, and a fixed point of
 * pyjson's reading and printing. */
static void check_py(const struct telespool__event *ev)
{
	if (ev->body_len > TELESPOOL_BODY_MAX ||
	    strlen(ev->body) != ev->body_len ||
	    !tc_valid_utf8(ev->body, ev->body_len))
		abort();
	cJSON *j = cJSON_Parse(ev->body);
	if (j == NULL || !cJSON_IsObject(j))
		abort();
	cJSON_Delete(j);
	const char *why;
	int oom = 0;
	struct pj *v = telespool__pj_parse(ev->body, ev->body_len, &why, &oom);
	if (v == NULL)
		abort();
	size_t len = 0;
	char *again = telespool__pj_print(v, &len);
	if (again == NULL || len != ev->body_len ||
	    memcmp(again, ev->body, len) != 0)
		abort();
	free(again);
	telespool__pj_free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1);
	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';

	/* Fields separated by 0x01; a NUL ends the C string early, as in C. */
	char *field[8] = {0};
	size_t nf = 0;
	char *p = buf;
	field[nf++] = p;
	for (size_t i = 0; i < size && nf < 8; i++)
		if (buf[i] == '\x01') {
			buf[i] = '\0';
			field[nf++] = &buf[i + 1];
		}
	const char *plugins[3] = {field[5], field[6], field[7]};
	/* The per-instance constants are cleaned once, at open, as
	 * telespool_open() does; the body builder trusts them. */
	char *inst = telespool__clean_name(
	    field[1], field[1] ? strlen(field[1]) : 0, TELESPOOL_NAME_MAX);
	char *edition = field[2]
			    ? telespool__clean_name(field[2], strlen(field[2]),
						    TELESPOOL_NAME_MAX)
			    : NULL;
	if (inst == NULL) {
		free(edition);
		free(buf);
		return 0;
	}
	struct telespool__ident id = {inst, "v4.3.1", edition, 1700000000};
	telespool_query q = TELESPOOL_QUERY_INIT;
	q.struct_version = 1;
	q.query_id = field[0];
	q.adapter = field[1];
	q.runner = field[2];
	q.model_name = field[3];
	q.error = field[4];
	q.duration_ms = (int64_t)size * 1000003 - 5;
	q.pipeline_plugins = plugins;
	q.n_pipeline_plugins = 3;

	struct telespool__event ev;
	const char *why;
	for (int strict = 0; strict < 2; strict++)
		if (telespool__body_query(&ev, &id, &q, strict,
					  "2026-01-01T00:00:00.000Z",
					  &why) == 0) {
			check(&ev);
			telespool__event_free(&ev);
		}

	q.struct_version = 2;
	q.features_json = size % 3 ? field[5] : NULL;
	q.workspace_uuid = field[6];
	q.runner_category = field[7];
	q.pipeline_plugins = size % 5 ? plugins : NULL;
	/* The typed call's direct writer and the payload tree agree. */
	struct telespool__event tree;
	int64_t when = (int64_t)size * 999983;
	int rc2 = telespool__body_query2(&ev, &id, &q, 0, when, &why);
	int rct = telespool__body_query2_tree(&tree, &id, &q, 0, when, &why);
	if (rc2 != rct)
		abort();
	if (rc2 == 0) {
		check_py(&ev);
		if (ev.body_len != tree.body_len ||
		    memcmp(ev.body, tree.body, ev.body_len) != 0)
			abort();
		telespool__event_free(&ev);
		telespool__event_free(&tree);
	}

	memcpy(buf, data, size);
	buf[size] = '\0';
	for (int ep = TELESPOOL__EP_TELEMETRY;
	     ep <= TELESPOOL__EP_SURVEY_DISMISS; ep++)
		if (telespool__body_json(&ev, buf, (enum telespool__endpoint)ep,
					 ep == 1, &why) == 0) {
			check_py(&ev);
			telespool__event_free(&ev);
		}
	telespool_heartbeat hb = TELESPOOL_HEARTBEAT_INIT;
	hb.features_json = buf;
	hb.workspace_uuid = field[0];
	if (telespool__body_workspace_heartbeat(&ev, &id, &hb, 1, &why) == 0) {
		check_py(&ev);
		telespool__event_free(&ev);
	}
	if (telespool__body_heartbeat(&ev, &id, buf, "2026-01-01T00:00:00.000Z",
				      &why) == 0) {
		check(&ev);
		telespool__event_free(&ev);
	}
	if (telespool__body_survey_response(&ev, &id, "s1", buf, 1, &why) ==
	    0) {
		check_py(&ev);
		telespool__event_free(&ev);
	}
	if (telespool__body_survey_trigger(&ev, &id, buf, &why) == 0) {
		check_py(&ev);
		telespool__event_free(&ev);
	}
	free(inst);
	free(edition);
	free(buf);
	return 0;
}
