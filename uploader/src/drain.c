/*
 * drain.c - the uploader's run, as orchestration: the per-event verdicts
 * are policy.c's (tsu_judge()), the config file during the run is
 * watch.c's; here are the run's order, its gates (Retry-After, "the
 * server is down", catch-up pacing) and what is recorded.
 *
 * Order of a run: config (a bad one stops everything before the spool is
 * touched), the uploader lock, opt-out (purge and stop), housekeeping, the
 * run-wide gates (Retry-After, server down), then batches until nothing is
 * due, the time is up, or Space asks us to stop.  The config is read again
 * before every batch, so an opt-out mid-run stops sending at once.
 */
#include "drain.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "clock.h"
#include "concurrency.h"
#include "config.h"
#include "curl_api.h"
#include "http.h"
#include "lock.h"
#include "policy.h"
#include "queue.h"
#include "say.h"
#include "watch.h"

#include <cjson/cJSON.h>

#ifndef TELESPOOL_UPLOAD_VERSION
#define TELESPOOL_UPLOAD_VERSION "0"
#endif

#define DEFAULT_MAX_SECONDS 300
/* A lease outlives the batch that holds it by this margin at least. */
#define LEASE_MARGIN_MS (10LL * 1000)
/* Run-wide waits further away than this are from a clock that went back. */
#define HORIZON_MS (TSU_RETRY_AFTER_MAX_MS + 3600LL * 1000)

/* The run-wide state kept in the spool (queue.h, telespool__gate). */
#define KEY_RETRY_AFTER TELESPOOL__GATE_RETRY_AFTER /* Space said wait */
#define KEY_DOWN_UNTIL  TELESPOOL__GATE_DOWN_UNTIL  /* Space looked down */
#define KEY_DOWN_COUNT  TELESPOOL__GATE_DOWN_COUNT  /* consecutive down runs */
/* The same for the survey endpoints alone (an older Space may lack them). */
#define KEY_SURVEY_DOWN_UNTIL TELESPOOL__GATE_SURVEY_DOWN_UNTIL
#define KEY_SURVEY_DOWN_COUNT TELESPOOL__GATE_SURVEY_DOWN_COUNT
/* When the last run that had something to send began (ms). */
#define KEY_LAST_RUN TELESPOOL__GATE_LAST_RUN
/* A Retry-After up to this long is waited out within the run (if the run
 * has the time) instead of ending it. */
#define PAUSE_MAX_MS (60LL * 1000)

struct run {
	const tsu_options *o;
	volatile int *stop;
	telespool *sp;
	tsu_http *http;
	tsu_config cfg;
	int64_t deadline; /* monotonic ms */
	int64_t run_id;
	telespool__run rec; /* counts and outcome for upload_runs */
	char detail[1024];
	int64_t attempted; /* requests that got an outcome this run */
	int64_t start_mono;
	int any_retry;    /* a retryable failure left rows behind */
	int64_t released; /* claimed rows given back unsent (time, signal) */
	int64_t
	    abandoned; /* requests aborted in flight (Space may have them) */
	int exit_code; /* set with a spool failure inside a batch */
	int64_t pending_at_start; /* for the progress line */
	tsu_watch w;              /* the config file during the run */
	/* The last batch delivered a telemetry event (Space is up). */
	int telemetry_sent;

	/* A config being rewritten, Space refusing a whole endpoint, and
	 * the --auth-command helper's tokens. */
	unsigned endpoint_ok;  /* bit per tsu_endpoint_index(): accepted one */
	int64_t refused;       /* rows kept after an endpoint-wide refusal */
	char refusal[200];     /* what Space answered, for the run's detail */
	int refused_endpoint;  /* tsu_endpoint_index() of that answer */
	tsu_auth *auth;        /* the helper's tokens, or NULL */
	tsu_cc cc;             /* requests in flight (adaptive or --parallel) */
	int64_t throttle_wait; /* ms Space asked us to wait, last batch */
	int pauses;            /* Retry-After waits sat out within the run */
};

static int64_t state_ms(struct run *r, enum telespool__gate key)
{
	int64_t ms = 0;
	if (telespool__gate_get(r->sp, key, &ms) != TELESPOOL_OK)
		ms = 0;
	return ms;
}

/* 0 removes it. */
static void set_state_ms(struct run *r, enum telespool__gate key, int64_t ms)
{
	(void)telespool__gate_set(r->sp, key, ms);
}

/* A stored run-wide wait, ignored when it lies beyond any wait we would
 * ever store (the wall clock went back since it was written). */
static int64_t gate(struct run *r, enum telespool__gate key, int64_t now)
{
	int64_t until = state_ms(r, key);
	if (until <= now || until > now + HORIZON_MS)
		return 0;
	return until;
}

/*
 * A spool operation failed: records why (naming the file) and returns the
 * exit code: a spool locked past the busy timeout is temporary (75), any
 * other failure is not (1).
 */
static int spool_failed(struct run *r, int rc)
{
	const char *path = telespool__path(r->sp);
	snprintf(r->detail, sizeof(r->detail), "%s: %s%s", path,
		 telespool_errmsg(r->sp),
		 rc == TELESPOOL_ECORRUPT
		     ? "; stop LangBot, move the file aside (sqlite3 FILE "
		       "'.recover' salvages what is readable) and restart"
		     : "");
	r->rec.outcome = rc == TELESPOOL_EBUSY ? "busy" : "error";
	return rc == TELESPOOL_EBUSY ? TSU_EXIT_TEMPFAIL : TSU_EXIT_ERROR;
}

/* Opt-out found (at start or between batches): purge and say so. */
static int purge(struct run *r, const char *why)
{
	int64_t events = 0, surveys = 0;
	int rc = telespool__purge(r->sp, &events, &surveys);
	r->rec.purged = events + surveys;
	r->rec.outcome = "purged";
	snprintf(r->detail, sizeof(r->detail),
		 "telemetry disabled (%s): purged %" PRId64
		 " event%s and %" PRId64 " survey%s",
		 why, events, events == 1 ? "" : "s", surveys,
		 surveys == 1 ? "" : "s");
	if (rc != TELESPOOL_OK) {
		snprintf(r->detail, sizeof(r->detail),
			 "telemetry disabled (%s): purge incomplete: %s", why,
			 telespool_errmsg(r->sp));
		r->rec.outcome = "purge_incomplete";
		return TSU_EXIT_ERROR;
	}
	return TSU_EXIT_OK;
}

struct verdicts {
	telespool__outcome *out;
	char (*why)[200];
	char **survey;
	tsu_answer *answers;
};

/*
 * Turns one batch's HTTP results into outcomes (tsu_judge() decides) and
 * adds them to the run's counts.  *t gets the batch's sums.
 */
static void judge(struct run *r, const telespool__batch *b,
		  const tsu_request *req, struct verdicts *v, int64_t now,
		  tsu_tally *t)
{
	tsu_answer *a = v->answers;
	const tsu_judge_params p = {now,
				    r->o->max_attempts,
				    r->o->max_age_ms,
				    TSU_BACKOFF_BASE_MS,
				    TSU_BACKOFF_CAP_MS,
				    TSU_RETRY_AFTER_MAX_MS};

	for (size_t i = 0; i < b->n; i++) {
		const telespool__item *it = &b->items[i];
		memset(&v->out[i], 0, sizeof(v->out[i]));
		v->out[i].id = it->id;
		v->out[i].lease_until = it->lease_until;
		v->survey[i] = NULL;
		a[i] = (tsu_answer){it->event_type,      it->attempts,
				    it->created_ms,      req[i].transport,
				    req[i].status,       req[i].response,
				    req[i].response_len, req[i].detail,
				    req[i].retry_after,  tsu_random64()};
		r->abandoned += req[i].abandoned;
	}
	tsu_judge(a, b->n, &p, &r->endpoint_ok, v->out, v->why, t);
	for (size_t i = 0; i < b->n; i++)
		if (v->out[i].verdict == TELESPOOL__SENT &&
		    strcmp(b->items[i].event_type, "survey_trigger") == 0) {
			v->survey[i] = tsu_survey_from_response(
			    req[i].response, req[i].response_len);
			v->out[i].survey_json = v->survey[i];
		}
	r->attempted += t->attempted;
	r->released += t->released;
	r->rec.sent += t->sent;
	r->rec.dead += t->dead;
	r->rec.retried += t->retried;
	if (t->retried > 0)
		r->any_retry = 1;
	r->refused += t->refusals;
	if (r->refusal[0] == '\0' && t->refusal[0] != '\0') {
		snprintf(r->refusal, sizeof(r->refusal), "%s", t->refusal);
		r->refused_endpoint = t->refused_endpoint;
	}
}

/* What to check after an endpoint-wide refusal, by the answer. */
static const char *refusal_advice(const char *why)
{
	long status = 0;
	if (sscanf(why, "HTTP %ld", &status) != 1)
		status = 0;
	if (status == 401 || status == 403)
		return "check LANGBOT_TELEMETRY_INGEST_TOKEN (or "
		       "--auth-command) and any proxy or firewall in between";
	if (status == 407)
		return "check the proxy's credentials (proxy.http/https, "
		       "HTTPS_PROXY)";
	if (status == 404 || status == 405 || status == 410)
		return "check space.url: the endpoints are appended to it, so "
		       "it must be Space's base URL with no extra path";
	return "check space.url, the credentials, and any proxy in between";
}

static void refusal_detail(struct run *r)
{
	const char *ep = tsu_endpoint_path(r->refused_endpoint);
	char *shown = tsu_url_redacted(r->cfg.space_url);
	snprintf(r->detail, sizeof(r->detail),
		 "Space answered %s to every request (%s%s); events kept: %s",
		 r->refusal[0] ? r->refusal : "a refusal",
		 shown ? shown : "space.url", ep ? ep : "",
		 refusal_advice(r->refusal));
	free(shown);
}

static void progress(struct run *r)
{
	if (!r->o->progress)
		return;
	double secs = (double)(tsu_monotonic_ms() - r->start_mono) / 1000.0;
	int64_t left = r->pending_at_start - r->rec.sent - r->rec.dead;
	fprintf(stderr,
		"\rtelespool-upload: sent %" PRId64 ", %.0f/s, retried %" PRId64
		", dead %" PRId64 ", about %" PRId64 " left   ",
		r->rec.sent, secs > 0 ? (double)r->rec.sent / secs : 0.0,
		r->rec.retried, r->rec.dead, left > 0 ? left : 0);
	fflush(stderr);
}

/* The event's workspace_uuid (stripped), malloc'd, or NULL when it has
 * none: LangBot asks for a token only for an event that names one. */
static char *workspace_of(const telespool__item *it)
{
	cJSON *root = cJSON_ParseWithLength(it->body, it->body_len);
	const cJSON *w =
	    cJSON_GetObjectItemCaseSensitive(root, "workspace_uuid");
	char *out = NULL;

	if (cJSON_IsString(w) && w->valuestring) {
		size_t a, b;
		tsu_py_strip(w->valuestring, strlen(w->valuestring), &a, &b);
		if (b > a) {
			out = malloc(b - a + 1);
			if (out) {
				memcpy(out, w->valuestring + a, b - a);
				out[b - a] = '\0';
			}
		}
	}
	cJSON_Delete(root);
	return out;
}

/*
 * --auth-command: an Authorization header for each telemetry request whose
 * event names a workspace, as LangBot 4.10.7+ sends when there is no
 * ingest token (with a token, the token alone is sent, as in LangBot).
 * Returns 0, or -1 when the helper failed (the run stops: auth_failed).
 */
static int authorize(struct run *r, const telespool__batch *b, tsu_request *req)
{
	char err[200];

	if (!r->o->auth_cmd || !r->o->auth_cmd[0] || r->cfg.token)
		return 0;
	for (size_t i = 0; i < b->n; i++) {
		if (!req[i].url || !req[i].with_token)
			continue;
		char *ws = workspace_of(&b->items[i]);
		if (!ws)
			continue;
		if ((!r->auth &&
		     tsu_auth_new(&r->auth, r->o->auth_cmd, TSU_AUTH_TIMEOUT_MS,
				  err, sizeof(err)) != 0) ||
		    tsu_auth_get(r->auth, ws, &req[i].authorization, err,
				 sizeof(err)) != 0) {
			r->rec.outcome = "auth_failed";
			snprintf(r->detail, sizeof(r->detail),
				 "--auth-command failed for workspace %.64s: "
				 "%s; nothing sent, events kept",
				 ws, err);
			free(ws);
			return -1;
		}
		free(ws);
	}
	return 0;
}

/* An endpoint family looked down: its gate closes for a backoff that grows
 * with each such run (count_key).  Returns that backoff in ms. */
static int64_t gate_down(struct run *r, enum telespool__gate until_key,
			 enum telespool__gate count_key, int64_t now)
{
	int64_t count = state_ms(r, count_key) + 1;
	int64_t wait =
	    tsu_backoff_ms((int)(count < 30 ? count : 30), TSU_BACKOFF_BASE_MS,
			   TSU_BACKOFF_CAP_MS, tsu_random64());
	set_state_ms(r, count_key, count);
	set_state_ms(r, until_key, now + wait);
	return wait;
}

/* Space refused or failed every request: the following runs send one
 * probe each until a backoff that grows with each such run has passed.
 * Returns that backoff in ms. */
static int64_t space_down(struct run *r, int64_t now)
{
	return gate_down(r, KEY_DOWN_UNTIL, KEY_DOWN_COUNT, now);
}
/* The batch's requests: each event to its endpoint under space.url (urls[i]
 * malloc'd; none for an event type that cannot be sent).  -1 out of memory
 * (the caller says so). */
static int build_requests(struct run *r, const telespool__batch *b,
			  tsu_request *req, char **urls)
{
	for (size_t i = 0; i < b->n; i++) {
		const char *ep = tsu_endpoint_of(b->items[i].event_type);
		if (ep == NULL)
			continue;
		/* Any length: space.url is whatever the user configured. */
		size_t ul = strlen(r->cfg.space_url), el = strlen(ep);
		urls[i] = malloc(ul + el + 1);
		if (!urls[i])
			return -1;
		memcpy(urls[i], r->cfg.space_url, ul);
		memcpy(urls[i] + ul, ep, el + 1);
		req[i].url = urls[i];
		/* LangBot sends its ingest token to the telemetry endpoint
		 * only, never to the survey endpoints. */
		req[i].with_token = strcmp(ep, "/api/v1/telemetry") == 0;
		req[i].body = b->items[i].body;
		req[i].body_len = b->items[i].body_len;
		req[i].idempotency_key = b->items[i].event_id;
	}
	return 0;
}

/* Gives every row of the batch back unsent (rel: room for b->n).  Returns
 * 0 (the run stops), or -1 on a spool failure. */
static int release_all(struct run *r, const telespool__batch *b,
		       telespool__outcome *rel)
{
	for (size_t i = 0; i < b->n; i++) {
		memset(&rel[i], 0, sizeof(rel[i]));
		rel[i].id = b->items[i].id;
		rel[i].verdict = TELESPOOL__RELEASE;
		rel[i].lease_until = b->items[i].lease_until;
	}
	int frc = telespool__finish(r->sp, rel, b->n, tsu_now_ms());
	if (frc != TELESPOOL_OK) {
		r->exit_code = spool_failed(r, frc);
		return -1;
	}
	r->released += (int64_t)b->n;
	return 0;
}

/* What one batch says about each endpoint family: answers (rows not given
 * back unsent), and of those the sent ones; and the first survey row kept
 * for a retry (-1 for none). */
struct families {
	int telemetry, telemetry_sent;
	int survey, survey_sent;
	long survey_kept;
};

static void tally_families(const telespool__batch *b,
			   const telespool__outcome *out, struct families *f)
{
	memset(f, 0, sizeof(*f));
	f->survey_kept = -1;
	for (size_t i = 0; i < b->n; i++) {
		const char *ep = tsu_endpoint_of(b->items[i].event_type);
		if (ep == NULL || out[i].verdict == TELESPOOL__RELEASE)
			continue;
		int sent = out[i].verdict == TELESPOOL__SENT;
		if (strcmp(ep, "/api/v1/telemetry") == 0) {
			f->telemetry++;
			f->telemetry_sent += sent;
			continue;
		}
		f->survey++;
		f->survey_sent += sent;
		if (out[i].verdict == TELESPOOL__RETRY && f->survey_kept < 0)
			f->survey_kept = (long)i;
	}
}

/* The survey endpoints' own gate: a delivered survey event opens it; survey
 * events answered, none delivered and some kept (refused or failing: an
 * older Space without them) close it, and the run's claims leave the
 * survey events alone from then on.  why: that row's reason. */
static void surveys_end(struct run *r, const struct families *f, int64_t now,
			const char *why)
{
	if (f->survey_sent > 0) {
		if (state_ms(r, KEY_SURVEY_DOWN_COUNT) != 0) {
			set_state_ms(r, KEY_SURVEY_DOWN_COUNT, 0);
			set_state_ms(r, KEY_SURVEY_DOWN_UNTIL, 0);
		}
		return;
	}
	if (f->survey_kept < 0)
		return;
	int64_t wait =
	    gate_down(r, KEY_SURVEY_DOWN_UNTIL, KEY_SURVEY_DOWN_COUNT, now);
	telespool__claim_skip(r->sp, TELESPOOL__FAMILY_SURVEY);
	if (r->detail[0] == '\0')
		snprintf(r->detail, sizeof(r->detail),
			 "the survey endpoints answered %s; survey events "
			 "wait %" PRId64 " s, the telemetry goes on",
			 why[0] ? why : "no answer", wait / 1000);
}

/* What a batch's sums say about Space: throttled (Retry-After, for the
 * whole instance), refusing every request, or down; stored for the next
 * runs.  Only the telemetry endpoint opens or closes the down gate: a
 * batch of survey events alone that fails (an older Space without the
 * survey endpoints) keeps them with their own backoff and goes on.
 * Returns 1 to go on, 0 to stop the run.  why0: the first answer's reason. */
static int batch_end(struct run *r, const telespool__batch *b,
		     const struct verdicts *v, const tsu_tally *t, int64_t now)
{
	const char *why0 = v->why[0];
	struct families f;
	tally_families(b, v->out, &f);
	r->telemetry_sent = f.telemetry_sent > 0;
	if (t->throttled) {
		int64_t wait =
		    t->retry_after > 0 ? t->retry_after : TSU_BACKOFF_BASE_MS;
		set_state_ms(r, KEY_RETRY_AFTER, now + wait);
		r->throttle_wait = t->retry_after; /* 0 without a Retry-After */
		r->rec.outcome = "throttled";
		snprintf(r->detail, sizeof(r->detail),
			 "Space asked to slow down; next try after %" PRId64
			 " s",
			 wait / 1000);
		return 0;
	}
	surveys_end(r, &f, now, f.survey_kept < 0 ? "" : v->why[f.survey_kept]);
	if (t->sent == 0 && f.telemetry == 0) {
		return 1; /* survey events only: kept, with their backoff */
	} else if (t->sent == 0 && t->refused > 0) {
		/* Space refused every request: the endpoint or the
		 * credentials, not the events.  Keep them, stop, and let the
		 * next runs probe with one request until a backoff passes. */
		space_down(r, now);
		r->rec.outcome = "refused";
		refusal_detail(r);
		return 0;
	} else if (t->sent == 0 && t->retryable > 0) {
		/* Every request of the batch failed (the first batch of a run is
		 * a handful): Space is down or unreachable.  Stop, and let the next runs send one probe each
		 * until the wait below has passed. */
		int64_t wait = space_down(r, now);
		r->rec.outcome = "server_down";
		snprintf(r->detail, sizeof(r->detail),
			 "Space unreachable or failing (%s); next probe after "
			 "%" PRId64 " s",
			 why0[0] ? why0 : "no answer", wait / 1000);
		return 0;
	} else if (r->telemetry_sent) {
		set_state_ms(r, KEY_DOWN_COUNT, 0);
		set_state_ms(r, KEY_DOWN_UNTIL, 0);
	}
	return 1;
}

/* libcurl's multi interface failed during a batch (every request aborted,
 * the rows released): the run stops with why in its detail. */
static int transport_failed(struct run *r, const char *why)
{
	r->rec.outcome = "error";
	snprintf(r->detail, sizeof(r->detail),
		 "the HTTP transport failed (%s); the batch was released for "
		 "the next run",
		 why);
	return 0;
}

/* Sends one claimed batch and records the outcomes.  Returns 1 to go on, 0
 * to stop the run (throttled, down, deadline), -1 on a spool failure. */
static int send_batch(struct run *r, telespool__batch *b)
{
	tsu_request *req = calloc(b->n, sizeof(*req));
	char **urls = calloc(b->n, sizeof(*urls));
	struct verdicts v = {
	    calloc(b->n, sizeof(*v.out)), calloc(b->n, sizeof(*v.why)),
	    calloc(b->n, sizeof(*v.survey)), calloc(b->n, sizeof(*v.answers))};
	int ret = 1;

	if (!req || !urls || !v.out || !v.why || !v.survey || !v.answers ||
	    build_requests(r, b, req, urls) != 0) {
		snprintf(r->detail, sizeof(r->detail),
			 "out of memory for a batch of %zu; its leases run out "
			 "and the rows come back",
			 b->n);
		ret = -1; /* the summary line shows the detail */
		goto out;
	}

	/* The lease must outlive every request of the batch. */
	int64_t claimed = tsu_monotonic_ms();
	if (authorize(r, b, req) != 0) {
		/* Nothing of the batch is sent; every row is released. */
		ret = release_all(r, b, v.out);
		goto out;
	}
	int64_t deadline = claimed + TSU_LEASE_MS - LEASE_MARGIN_MS;
	if (deadline > r->deadline)
		deadline = r->deadline;
	int failed = tsu_http_perform(r->http, req, b->n, deadline, r->stop);

	int64_t now = tsu_now_ms();
	tsu_tally t;
	judge(r, b, req, &v, now, &t);
	int rc = telespool__finish(r->sp, v.out, b->n, now);
	if (rc != TELESPOOL_OK) {
		/* The leases run out and the rows come back: nothing is lost,
		 * some may be sent twice with the same Idempotency-Key. */
		r->exit_code = spool_failed(r, rc);
		ret = -1;
		goto out;
	}
	if (r->o->verbose)
		for (size_t i = 0; i < b->n; i++)
			if (v.out[i].verdict != TELESPOOL__SENT &&
			    v.out[i].verdict != TELESPOOL__RELEASE)
				tsu_say("%s %s: %s", b->items[i].event_id,
					v.out[i].verdict == TELESPOOL__DEAD
					    ? "dead"
					    : "retry",
					v.why[i]);

	ret = failed ? transport_failed(r, req[0].detail)
		     : batch_end(r, b, &v, &t, now);
	if (ret == 1 && (r->w.optout_seen || r->w.broken || r->w.unsettled))
		ret = 0; /* the caller purges, or stops with the config error */
	else if (ret == 1 && r->stop && *r->stop)
		ret = 0;
	else if (ret == 1 && tsu_monotonic_ms() >= r->deadline)
		ret = 0;
	progress(r);
out:
	if (req)
		tsu_requests_reset(req, b->n);
	if (v.survey)
		for (size_t i = 0; i < b->n; i++)
			free(v.survey[i]);
	free(v.survey);
	free(v.answers);
	free(v.why);
	free(v.out);
	for (size_t i = 0; urls && i < b->n; i++)
		free(urls[i]);
	free(urls);
	free(req);
	return ret;
}

static void dry_run_print(const telespool__batch *b, const char *shown,
			  int verbose)
{
	for (size_t i = 0; i < b->n; i++) {
		const char *ep = tsu_endpoint_of(b->items[i].event_type);
		printf(
		    "would POST %s%s  Idempotency-Key: %s  (%s, attempt %d)\n",
		    shown, ep ? ep : "(unknown event type)",
		    b->items[i].event_id, b->items[i].event_type,
		    b->items[i].attempts + 1);
		if (verbose)
			printf("  %s\n", b->items[i].body);
	}
}

/* --dry-run: what a run would do, reading only.  Nothing is claimed,
 * expired, purged or recorded. */
static int dry_run(struct run *r)
{
	int64_t now = tsu_now_ms(), after = 0, n = 0;

	if (r->cfg.disable_telemetry) {
		telespool__status st;
		if (telespool__get_status(r->sp, now, &st) == TELESPOOL_OK)
			printf("telemetry is disabled (%s): a real run would "
			       "send nothing "
			       "and purge %" PRId64 " events\n",
			       r->cfg.disabled_from,
			       st.pending + st.sent + st.dead);
		tsu_say("dry run: nothing sent, nothing deleted");
		return TSU_EXIT_OK;
	}
	if (r->cfg.send_error[0]) {
		tsu_say("%s: %s", r->o->config_path, r->cfg.send_error);
		tsu_say("dry run: a real run would send nothing and exit %d",
			TSU_EXIT_CONFIG);
		return TSU_EXIT_CONFIG;
	}
	if (r->cfg.space_url[0] == '\0') {
		tsu_say("dry run: space.url is empty, a real run would send "
			"nothing");
		return TSU_EXIT_OK;
	}
	for (;;) {
		telespool__batch b;
		int rc = telespool__peek(r->sp, now, TSU_LEASE_MS, HORIZON_MS,
					 r->o->ignore_backoff, after,
					 r->o->batch, &b);
		if (rc != TELESPOOL_OK) {
			tsu_say("reading %s: %s", telespool__path(r->sp),
				telespool_errmsg(r->sp));
			return TSU_EXIT_ERROR;
		}
		if (b.n == 0)
			break;
		char *shown = tsu_url_redacted(r->cfg.space_url);
		dry_run_print(&b, shown ? shown : "(space.url)", r->o->verbose);
		free(shown);
		n += (int64_t)b.n;
		after = b.items[b.n - 1].id;
		telespool__batch_free(&b);
	}
	tsu_say("dry run: %" PRId64 " events would be sent now; nothing sent",
		n);
	return TSU_EXIT_OK;
}

static int start_http(struct run *r)
{
	tsu_http_options ho = {0};
	char ua[64];

	snprintf(ua, sizeof(ua), "telespool/%s", TELESPOOL_UPLOAD_VERSION);
	ho.user_agent = ua;
	ho.token = r->cfg.token; /* stripped and checked by the config */
	ho.proxy = r->cfg.proxy;
	ho.noproxy = r->cfg.noproxy;
	ho.cacert = r->o->cacert;
	ho.cc = &r->cc;
	ho.verbose = r->o->verbose;
	ho.stop_grace_ms = 1000L * r->o->stop_timeout_s;
	char err[512];
	if (tsu_curl_load(err, sizeof(err)) != 0) {
		tsu_say("%s", err);
		snprintf(r->detail, sizeof(r->detail),
			 "cannot set up libcurl: %s", err);
		return -1;
	}
	if (tsu_http_new(&r->http, &ho, err, sizeof(err)) != 0) {
		tsu_say("cannot set up libcurl: %s", err);
		snprintf(r->detail, sizeof(r->detail),
			 "cannot set up libcurl: %s", err);
		return -1;
	}
	tsu_watch_start(&r->w);
	tsu_http_set_check(r->http, tsu_watch_must_stop, &r->w, r->w.fd);
	return 0;
}

/* Whether a row is due now (one this run would have claimed next). */
static int due_left(struct run *r)
{
	telespool__batch b;
	int left;

	if (telespool__peek(r->sp, tsu_now_ms(), TSU_LEASE_MS, HORIZON_MS,
			    r->o->ignore_backoff, 0, 1, &b) != TELESPOOL_OK)
		return 1; /* cannot tell: say that work may be left */
	left = b.n > 0;
	telespool__batch_free(&b);
	return left;
}

/*
 * Space answered 429/503 with a Retry-After of at most PAUSE_MAX_MS (a
 * throttle without one still ends the run): sit it out here, asking
 * must_stop() every 100 ms, rather than end the run and leave the backlog
 * to the next one.  Returns 1 when the wait is over and the run goes on,
 * 0 when the run must end (the wait is too long or outlasts the run, a
 * signal, an opt-out); the run-wide wait stays stored either way.
 */
static int sit_out_retry_after(struct run *r)
{
	int64_t wait = r->throttle_wait;
	int64_t until = tsu_monotonic_ms() + wait;

	r->throttle_wait = 0;
	if (wait > PAUSE_MAX_MS || until >= r->deadline)
		return 0;
	while (tsu_monotonic_ms() < until) {
		struct timespec ts = {0, 100 * 1000000L};
		if ((r->stop && *r->stop) || tsu_watch_must_stop(&r->w))
			return 0;
		nanosleep(&ts, NULL);
	}
	if ((r->stop && *r->stop) || tsu_watch_must_stop(&r->w))
		return 0;
	set_state_ms(r, KEY_RETRY_AFTER, 0);
	r->rec.outcome = NULL;
	r->detail[0] = '\0';
	r->pauses++;
	return 1;
}

/* A recent run that was cut: this one's slow start ends where it settled. */
static void resume_concurrency(struct run *r, int64_t prev_run, int64_t now)
{
	telespool__cc_state cc;

	if (prev_run <= 0 || now - prev_run < 0 ||
	    now - prev_run > TSU_CC_MEMORY_MS)
		return;
	if (telespool__cc_get(r->sp, &cc) == TELESPOOL_OK && cc.have &&
	    cc.cuts > 0 && !cc.fixed)
		tsu_cc_resume(&r->cc, cc.level);
}

/* Where the limit of requests in flight ended, for the summary and for
 * --status (telespool__cc_set). */
static void note_concurrency(struct run *r)
{
	telespool__cc_state cc = {1, tsu_cc_limit(&r->cc), r->cc.peak,
				  r->cc.cuts, r->cc.pinned != 0};
	(void)telespool__cc_set(r->sp, &cc);
}

static const char *iso_text(int64_t ms)
{
	static char t[32];
	tsu_iso(ms, t);
	return t;
}

/*
 * Puts back the rows of b recorded after cutoff (catch-up pacing): their
 * leases are released, nothing is charged, b keeps the older rows.
 * Returns how many were put back, or -1 if the spool failed.
 */
static int keep_until(struct run *r, telespool__batch *b, int64_t cutoff)
{
	size_t k = 0;
	while (k < b->n && b->items[k].created_ms <= cutoff)
		k++;
	if (k == b->n)
		return 0;
	size_t n = b->n - k;
	telespool__outcome *rel = calloc(n, sizeof(*rel));
	if (rel == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		rel[i].id = b->items[k + i].id;
		rel[i].verdict = TELESPOOL__RELEASE;
		rel[i].lease_until = b->items[k + i].lease_until;
	}
	int rc = telespool__finish(r->sp, rel, n, tsu_now_ms());
	free(rel);
	for (size_t i = k; i < b->n; i++)
		free(b->items[i].body);
	b->n = k;
	return rc == TELESPOOL_OK ? (int)n : -1;
}

/* The batches.  Returns an exit code. */
/* A stored Retry-After still running: the run sends nothing. */
static int throttled_until(struct run *r, int64_t now)
{
	int64_t until = gate(r, KEY_RETRY_AFTER, now);
	char t[32];

	if (!until)
		return 0;
	tsu_iso(until, t);
	r->rec.outcome = "throttled";
	snprintf(r->detail, sizeof(r->detail),
		 "Space asked to wait until %s; nothing sent", t);
	return 1;
}

/* libcurl cannot be set up (start_http() said why in the detail): the
 * batch is given back, the run ends. */
static int no_transport(struct run *r, telespool__batch *b)
{
	telespool__outcome *rel = calloc(b->n, sizeof(*rel));
	for (size_t i = 0; rel && i < b->n; i++) {
		rel[i].id = b->items[i].id;
		rel[i].verdict = TELESPOOL__RELEASE;
		rel[i].lease_until = b->items[i].lease_until;
	}
	if (rel)
		telespool__finish(r->sp, rel, b->n, tsu_now_ms());
	free(rel);
	telespool__batch_free(b);
	r->rec.outcome = "error";
	return TSU_EXIT_ERROR;
}

/* After the batches: the run's outcome and exit code, from what stopped
 * it (the config, a signal, the time limit, catching up, or nothing due). */
static int run_outcome(struct run *r, int caught_up, int64_t cutoff)
{
	/* An opt-out being written must still be seen. */
	if (r->w.unsettled)
		tsu_watch_settle(&r->w);
	if (r->w.broken) {
		r->rec.outcome = "config_error";
		snprintf(r->detail, sizeof(r->detail),
			 "the config became unreadable during the run; nothing "
			 "deleted");
		return TSU_EXIT_CONFIG;
	}
	if (r->w.optout_seen)
		return purge(r, "the flag changed during the run");
	if (r->w.changed && r->rec.outcome == NULL) {
		r->rec.outcome = "config_changed";
		snprintf(r->detail, sizeof(r->detail),
			 "the Space settings (space.url, the proxy) changed "
			 "during the run; the rest waits for the next run");
		return TSU_EXIT_TEMPFAIL;
	}
	if (r->rec.outcome == NULL && r->stop && *r->stop) {
		/* Graceful unless requests in flight had to be abandoned (a
		 * second signal, --stop-timeout): Space may have those. */
		r->rec.outcome = r->abandoned ? "interrupted" : "stopped";
		if (r->abandoned)
			snprintf(r->detail, sizeof(r->detail),
				 "stopped by a signal: %" PRId64
				 " request%s in flight abandoned (sent again "
				 "later with the same Idempotency-Key); the "
				 "rest waits for the next run",
				 r->abandoned, r->abandoned == 1 ? "" : "s");
		else
			snprintf(r->detail, sizeof(r->detail),
				 "stopped by a signal, nothing in flight "
				 "abandoned; the rest waits for the next run");
		return r->any_retry || due_left(r) ? TSU_EXIT_TEMPFAIL
						   : TSU_EXIT_OK;
	} else if (r->rec.outcome == NULL &&
		   tsu_monotonic_ms() >= r->deadline && due_left(r)) {
		/* Whether the time ran out mid-request or between batches,
		 * the outcome and the exit code are the same: rows are left. */
		r->rec.outcome = "time_limit";
		snprintf(
		    r->detail, sizeof(r->detail),
		    "--max-seconds reached; the rest waits for the next run");
		return TSU_EXIT_TEMPFAIL;
	}
	if (r->rec.outcome == NULL && caught_up)
		snprintf(r->detail, sizeof(r->detail),
			 "catching up: events recorded after %s wait for the "
			 "next run",
			 iso_text(cutoff));
	if (r->rec.outcome == NULL)
		r->rec.outcome = r->attempted ? "ok" : "nothing_due";
	/* Events given back unsent (and not sent since) wait for a later
	 * run, like retried ones. */
	return r->any_retry || (r->released && due_left(r)) ? TSU_EXIT_TEMPFAIL
							    : TSU_EXIT_OK;
}

/* Claims the next batch: one row for a probe, a handful first, then what
 * the concurrency allows, up to the catch-up cutoff (set from the first
 * batch).  Returns 1 with rows in *b, 0 when none is left to send now, -1
 * on a spool failure (r->exit_code). */
static int claim_next(struct run *r, int probe, int first, int64_t prev_run,
		      int64_t *cutoff, int *caught_up, telespool__batch *b)
{
	int level = tsu_cc_limit(&r->cc);
	/* With --parallel, --batch is exact (the rows one kill can
	 * leave claimed); adaptive, it is a floor. */
	int max = probe   ? 1
		  : first ? (level < r->o->batch ? level : r->o->batch)
			  : tsu_cc_batch(&r->cc, r->o->batch);
	int64_t now = tsu_now_ms();
	int rc = telespool__claim(r->sp, now, TSU_LEASE_MS, HORIZON_MS,
				  r->o->ignore_backoff, max, b);
	if (rc != TELESPOOL_OK) {
		r->exit_code = spool_failed(r, rc);
		return -1;
	}
	if (b->n == 0)
		return 0;
	if (first) {
		/* Written only once there is something to send: a
		 * run that cannot claim (a damaged file) writes
		 * nothing. */
		set_state_ms(r, KEY_LAST_RUN, now);
		if (!r->o->ignore_backoff)
			*cutoff = tsu_catchup_cutoff_ms(b->items[0].created_ms,
							prev_run, now);
	}
	int rc_keep = keep_until(r, b, *cutoff);
	if (rc_keep < 0) {
		telespool__batch_free(b);
		r->exit_code = spool_failed(r, TELESPOOL_ERROR);
		return -1;
	}
	if (rc_keep > 0)
		*caught_up = 1; /* this batch is the run's last */
	if (b->n == 0) {
		telespool__batch_free(b);
		return 0;
	}
	return 1;
}

/* The survey endpoints looked down in an earlier run: until their wait has
 * passed, the run's claims leave survey events alone; the telemetry goes. */
static void skip_surveys_if_down(struct run *r, int64_t now)
{
	int down =
	    !r->o->ignore_backoff && gate(r, KEY_SURVEY_DOWN_UNTIL, now) != 0;
	telespool__claim_skip(r->sp, down ? TELESPOOL__FAMILY_SURVEY : 0);
}

static int drain(struct run *r)
{
	int64_t now = tsu_now_ms();
	int probe = 0;

	if (!r->o->ignore_backoff) {
		if (throttled_until(r, now))
			return TSU_EXIT_OK;
		probe = gate(r, KEY_DOWN_UNTIL, now) != 0;
	}
	skip_surveys_if_down(r, now);

	/* libcurl is set up only once there is something to send, so that an
	 * idle run (the common case under cron) costs a few milliseconds. */
	/* Counting costs a pass over the pending index: only for a person
	 * watching. */
	if (r->o->progress) {
		telespool__status st;
		if (telespool__get_status(r->sp, now, &st) == TELESPOOL_OK)
			r->pending_at_start = st.pending;
	}

	/* Catch-up pacing (concurrency.h): how far into an old backlog this
	 * run goes, from when the last run began.  A manual flush
	 * (--ignore-backoff) sends everything. */
	int64_t prev_run = state_ms(r, KEY_LAST_RUN);
	int64_t cutoff = INT64_MAX;
	int caught_up = 0;
	resume_concurrency(r, prev_run, now);

	/* The first batch of a run is small: if Space is down we learn it
	 * from a handful of requests, not from a hundred timeouts. */
	int first = 1;
	for (;;) {
		if (tsu_watch_must_stop(&r->w) &&
		    !(r->w.unsettled && tsu_watch_settle(&r->w)))
			break;
		if (r->stop && *r->stop)
			break;
		if (tsu_monotonic_ms() >= r->deadline)
			break;
		telespool__batch b;
		int got = claim_next(r, probe, first, prev_run, &cutoff,
				     &caught_up, &b);
		if (got < 0)
			return r->exit_code;
		if (got == 0)
			break;
		if (r->http == NULL && start_http(r) != 0)
			return no_transport(r, &b);
		int go = send_batch(r, &b);
		telespool__batch_free(&b);
		if (go < 0) {
			if (r->exit_code)
				return r->exit_code;
			r->rec.outcome = "error";
			return TSU_EXIT_ERROR;
		}
		if (go == 0 && r->w.unsettled && r->rec.outcome == NULL &&
		    tsu_watch_settle(&r->w))
			continue; /* the rewrite is over and did not opt out */
		/* Waited out a Retry-After: on, with a lower limit. */
		if (go == 0 && r->throttle_wait > 0 && sit_out_retry_after(r))
			go = 1;
		if (go == 0 || caught_up)
			break;
		if (r->telemetry_sent)
			probe = 0; /* a probe went through: Space is back */
		first = 0;
	}

	return run_outcome(r, caught_up, cutoff);
}

static int file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* The config (a broken one, or one that cannot send, stops the run before
 * anything is touched) and the spool's presence.  Returns -1 to go on, or
 * the exit code (the config is freed then). */
static int preflight(struct run *r)
{
	char err[768];

	/* 1. The config: a broken one stops the run before anything is touched.
	 * Its identity is noted first, so a change after reading is seen. */
	if (tsu_config_load_settled(r->o, &r->cfg, &r->w.seen, err, sizeof(err),
				    r->stop, NULL) != TSU_SETTLE_OK) {
		tsu_say("%s", err);
		tsu_say("nothing sent, nothing deleted (exit %d)",
			TSU_EXIT_CONFIG);
		return TSU_EXIT_CONFIG;
	}
	r->w.run = &r->cfg;
	/* A config that cannot send (a bad space.url, token or proxy) stops
	 * the run before the spool is touched, unless it opts out. */
	if (!r->cfg.disable_telemetry && r->cfg.send_error[0]) {
		tsu_say("%s: %s", r->o->config_path, r->cfg.send_error);
		tsu_say("nothing sent, nothing deleted (exit %d)",
			TSU_EXIT_CONFIG);
		tsu_config_free(&r->cfg);
		return TSU_EXIT_CONFIG;
	}
	if (!file_exists(r->o->db_path)) {
		tsu_say("no spool at %s: nothing to send", r->o->db_path);
		tsu_config_free(&r->cfg);
		return TSU_EXIT_OK;
	}
	return -1;
}

/* The uploader lock, then the spool.  Returns -1 to go on (*lock held,
 * r->sp open), or the exit code (nothing held; the config freed). */
static int open_spool(struct run *r, int *lock)
{
	char err[768];
	int rc;

	tsu_lock_rc lrc =
	    tsu_lock_acquire(lock, r->o->db_path, err, sizeof(err));
	if (lrc == TSU_LOCK_BUSY) {
		tsu_say("%s; exiting", err);
		tsu_config_free(&r->cfg);
		return TSU_EXIT_OK;
	}
	if (lrc != TSU_LOCK_OK) {
		tsu_say("%s", err);
		tsu_config_free(&r->cfg);
		return TSU_EXIT_ERROR;
	}

	telespool_options so = TELESPOOL_OPTIONS_INIT;
	so.busy_timeout_ms = 5000; /* we are not on anyone's hot path */
	rc = telespool_open(&r->sp, r->o->db_path, &so);
	if (rc != TELESPOOL_OK) {
		tsu_say("cannot use the spool: %s", telespool_open_errmsg());
		if (rc == TELESPOOL_EBUSY) {
			tsu_lock_release(*lock);
			tsu_config_free(&r->cfg);
			return TSU_EXIT_TEMPFAIL;
		}
		tsu_lock_release(*lock);
		tsu_config_free(&r->cfg);
		return TSU_EXIT_ERROR;
	}
	return -1;
}

/* Leases a crashed run left, expiry and retention.  Returns -1 to go on,
 * or the exit code of a damaged spool. */
static int housekeeping(struct run *r)
{
	int64_t reclaimed = 0;
	telespool__reclaim_leases(r->sp, &reclaimed);
	telespool__expiry ex;
	int rc = telespool__expire(r->sp, tsu_now_ms(), r->o->max_age_ms,
				   r->o->retention_ms, &ex);
	if (rc == TELESPOOL_ECORRUPT)
		return spool_failed(r, rc);
	if (rc != TELESPOOL_OK)
		tsu_say("housekeeping skipped: %s: %s", r->o->db_path,
			telespool_errmsg(r->sp));
	else
		r->rec.dead += ex.expired;
	return -1;
}

/* Records the run and prints its one summary line. */
static void summary(struct run *r)
{
	if (r->rec.outcome == NULL)
		r->rec.outcome = "ok";
	r->rec.detail = r->detail;
	/* Before run_end: the run's record stays the last write. */
	if (r->http)
		note_concurrency(r);
	telespool__run_end(r->sp, r->run_id, tsu_now_ms(), &r->rec);
	if (r->o->progress)
		fputc('\n', stderr);
	/* The level of concurrency rides in the detail part of the line, so
	 * that the line keeps its documented shape. */
	char level[96] = "";
	if (r->http)
		snprintf(level, sizeof(level),
			 "%s%d in flight (%s, peak %d%s%s)",
			 r->detail[0] ? "; " : "", tsu_cc_limit(&r->cc),
			 r->cc.pinned ? "fixed" : "adaptive", r->cc.peak,
			 r->cc.cuts ? ", cut" : "",
			 r->pauses ? ", waited out Retry-After" : "");
	tsu_say("%s: sent %" PRId64 ", retried %" PRId64 ", dead %" PRId64
		", purged %" PRId64 " in %.1f s%s%s%s",
		r->rec.outcome, r->rec.sent, r->rec.retried, r->rec.dead,
		r->rec.purged,
		(double)(tsu_monotonic_ms() - r->start_mono) / 1000.0,
		r->detail[0] || level[0] ? " - " : "", r->detail, level);
}

int tsu_drain(const tsu_options *o, volatile int *stop)
{
	struct run r;
	int code, rc, lock = -1;

	memset(&r, 0, sizeof(r));
	r.w.fd = -1;
	r.w.o = o;
	r.w.stop = stop;
	r.o = o;
	r.stop = stop;
	tsu_cc_init(&r.cc, o->max_in_flight, 0);
	r.start_mono = tsu_monotonic_ms();
	r.deadline =
	    r.start_mono + 1000LL * (o->max_seconds > 0 ? o->max_seconds
							: DEFAULT_MAX_SECONDS);

	code = preflight(&r);
	if (code >= 0)
		return code;

	/* 2. One uploader per spool. */
	code = open_spool(&r, &lock);
	if (code >= 0)
		return code;
	if (o->dry_run) {
		code = dry_run(&r);
		goto done;
	}
	rc = telespool__run_start(r.sp, tsu_now_ms(), &r.run_id);
	if (rc != TELESPOOL_OK) {
		code = spool_failed(&r, rc);
		tsu_say("%s", r.detail);
		goto done;
	}

	/* 3. Opt-out wins over everything. */
	if (r.cfg.disable_telemetry) {
		code = purge(&r, r.cfg.disabled_from);
		goto end;
	}

	/* 4. Rows a crashed run left leased are ours again: we hold the lock,
	 * so no other uploader is alive. */
	code = housekeeping(&r);
	if (code >= 0)
		goto end;
	code = TSU_EXIT_OK;

	if (r.cfg.space_url[0] == '\0') {
		r.rec.outcome = "no_url";
		snprintf(r.detail, sizeof(r.detail),
			 "space.url is empty: nothing sent, events kept");
		goto end;
	}
	code = drain(&r);

end:
	summary(&r);
done:
	tsu_auth_free(r.auth); /* wipes the helper's tokens */
	tsu_http_free(r.http);
	tsu_watch_close(&r.w);
	telespool_close(r.sp);
	tsu_lock_release(lock);
	tsu_config_free(&r.cfg);
	return code;
}
