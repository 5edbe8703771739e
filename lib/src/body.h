/*
 * body.h - the exact JSON bodies that LangBot Space receives.
 *
 * Field names, order and types follow SPACE_PROTOCOL.md.  Every string is
 * cleaned (clean.h) and redacted (redact.h; the traceback through
 * traceback.h) before it goes in, and every body is at most
 * TELESPOOL_BODY_MAX bytes: the traceback, then survey and feature values,
 * are cut further until it fits.  This module calls those three; none of
 * them calls it.
 */
#ifndef TELESPOOL_BODY_H
#define TELESPOOL_BODY_H

#include <stddef.h>
#include <stdint.h>

#include "telespool.h"

struct cJSON;

/* Per-instance constants copied into each body (already cleaned). */
struct telespool__ident {
	const char *instance_id;
	const char *version;
	const char *edition;        /* NULL: omitted ("" in the heartbeat) */
	int64_t instance_create_ts; /* heartbeat only; 0 if unknown */
};

/* A built event: the body and the cleaned values that went into it. */
struct telespool__event {
	const char *event_type; /* static text */
	char *body;
	size_t body_len;
	char *query_id, *adapter, *runner, *model_name,
	    *error;          /* NULL if n/a */
	int64_t duration_ms; /* -1 if n/a */
	char *survey_id;     /* survey events */
	char *milestone;     /* survey_trigger */
	char timestamp[32];
};

/* Each returns a telespool_rc (TELESPOOL_OK, TELESPOOL_EINVAL with *why set
 * to a static explanation, TELESPOOL_ENOMEM).  timestamp_iso is the event
 * time.  On failure ev holds nothing to free. */
int telespool__body_query(struct telespool__event *ev,
			  const struct telespool__ident *id,
			  const telespool_query *q, int strict,
			  const char *timestamp_iso, const char **why);
int telespool__body_heartbeat(struct telespool__event *ev,
			      const struct telespool__ident *id,
			      const char *features_json,
			      const char *timestamp_iso, const char **why);
int telespool__body_survey_trigger(struct telespool__event *ev,
				   const struct telespool__ident *id,
				   const char *event, const char **why);
int telespool__body_survey_response(struct telespool__event *ev,
				    const struct telespool__ident *id,
				    const char *survey_id,
				    const char *answers_json, int completed,
				    const char **why);
int telespool__body_survey_dismiss(struct telespool__event *ev,
				   const struct telespool__ident *id,
				   const char *survey_id, const char **why);

/* Where a generic payload goes (telespool_record_json_to()). */
enum telespool__endpoint {
	TELESPOOL__EP_TELEMETRY,
	TELESPOOL__EP_SURVEY_PENDING,
	TELESPOOL__EP_SURVEY_RESPOND,
	TELESPOOL__EP_SURVEY_DISMISS
};

/* The endpoint named by its path (NULL: telemetry); -1 if unknown. */
int telespool__endpoint_of(const char *path);

/*
 * LangBot's payload as JSON text: for telemetry, normalised as LangBot's
 * sender does, then cleaned, redacted and capped, and printed as Python's
 * json.dumps() would (pyjson.h).  Returns as the functions above.
 */
int telespool__body_json(struct telespool__event *ev, const char *json_text,
			 enum telespool__endpoint ep, int strict,
			 const char **why);

/* The typed calls of LangBot 4.10.8, built as the payload LangBot would
 * send and then through the same path as telespool__body_json().
 * timestamp is the event time in unix microseconds. */
int telespool__body_query2(struct telespool__event *ev,
			   const struct telespool__ident *id,
			   const telespool_query *q, int strict, int64_t now_us,
			   const char **why);
/* The same body through the payload tree: what telespool__body_query2()
 * falls back to past the caps, and its reference in the tests. */
int telespool__body_query2_tree(struct telespool__event *ev,
				const struct telespool__ident *id,
				const telespool_query *q, int strict,
				int64_t now_us, const char **why);
int telespool__body_workspace_heartbeat(struct telespool__event *ev,
					const struct telespool__ident *id,
					const telespool_heartbeat *hb,
					int64_t now_us, const char **why);

void telespool__event_free(struct telespool__event *ev);

#endif
