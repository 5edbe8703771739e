/*
 * status.c - the operator's view of a spool.  Reads only through the
 * library's queue API, in one read transaction.
 */
#include "status.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clock.h"
#include "config.h"
#include "lock.h"
#include "queue.h"

static int64_t file_size(const char *path, const char *suffix)
{
	char p[4200];
	struct stat st;
	snprintf(p, sizeof(p), "%s%s", path, suffix);
	return stat(p, &st) == 0 ? (int64_t)st.st_size : 0;
}

static void human(int64_t bytes, char *out, size_t len)
{
	if (bytes >= 10 * 1024 * 1024)
		snprintf(out, len, "%.1f MiB",
			 (double)bytes / (1024.0 * 1024.0));
	else if (bytes >= 10 * 1024)
		snprintf(out, len, "%.1f KiB", (double)bytes / 1024.0);
	else
		snprintf(out, len, "%" PRId64 " B", bytes);
}

/* A run-wide wait kept in the spool, as ISO text, or "" when none. */
static void wait_of(telespool *sp, enum telespool__gate key, int64_t now,
		    char out[TSU_ISO_LEN])
{
	int64_t ms = 0;
	out[0] = '\0';
	if (telespool__gate_get(sp, key, &ms) == TELESPOOL_OK && ms > now)
		tsu_iso(ms, out);
}

/* The last run's concurrency (telespool__cc_get, written by drain.c);
 * have = 0 when no run has sent yet. */
static struct {
	int have, level, peak, cuts;
	char mode[16];
} inflight;

/* The survey endpoints' own gate (drain.c), when closed: until then the
 * survey events wait and the telemetry goes. */
static char survey_down[TSU_ISO_LEN];

static void read_inflight(telespool *sp)
{
	telespool__cc_state cc;
	inflight.have = 0;
	if (telespool__cc_get(sp, &cc) == TELESPOOL_OK && cc.have) {
		inflight.have = 1;
		inflight.level = cc.level;
		inflight.peak = cc.peak;
		inflight.cuts = cc.cuts;
		snprintf(inflight.mode, sizeof(inflight.mode), "%s",
			 cc.fixed ? "fixed" : "adaptive");
	}
}

static void text_config(const tsu_options *o, const tsu_config *cfg,
			const char *cfg_err)
{
	if (cfg_err) {
		printf("config       %s: %s\n", o->config_path, cfg_err);
		return;
	}
	/* The URL may carry a password: never shown. */
	char *shown = tsu_url_redacted(cfg->space_url);
	printf("config       %s: telemetry %s, space.url %s\n", o->config_path,
	       cfg->disable_telemetry ? "DISABLED (opted out)" : "enabled",
	       cfg->space_url[0] ? (shown ? shown : "(set)")
				 : "(empty: nothing is sent)");
	free(shown);
	if (cfg->send_error[0] && !cfg->disable_telemetry)
		printf("cannot send  %s\n", cfg->send_error);
}

/* The drops by reason and the last runs. */
static void text_history(const telespool__status *s)
{
	if (s->n_drops == 0) {
		printf("drops        none\n");
	} else {
		printf("drops\n");
		for (size_t i = 0; i < s->n_drops; i++)
			printf("  %-22s %10" PRId64 "  last %s\n",
			       s->drops[i].reason, s->drops[i].count,
			       s->drops[i].last_at);
	}
	if (s->n_runs == 0) {
		printf("last runs    none\n");
	} else {
		printf("last runs\n");
		for (size_t i = 0; i < s->n_runs; i++)
			printf("  %s  %-16s sent %" PRId64 ", retried %" PRId64
			       ", dead %" PRId64 ", purged %" PRId64 "%s%s\n",
			       s->runs[i].started_at,
			       s->runs[i].ended_at[0] ? s->runs[i].outcome
						      : "(running or crashed)",
			       s->runs[i].sent, s->runs[i].retried,
			       s->runs[i].dead, s->runs[i].purged,
			       s->runs[i].detail[0] ? "  " : "",
			       s->runs[i].detail);
	}
}

static void print_text(const telespool__status *s, const tsu_options *o,
		       const tsu_config *cfg, const char *cfg_err,
		       const char *throttled, const char *down)
{
	char a[32], b[32];

	printf("spool        %s (schema %d)\n", o->db_path, s->schema_version);
	human(file_size(o->db_path, ""), a, sizeof(a));
	human(file_size(o->db_path, "-wal"), b, sizeof(b));
	printf("on disk      %s, write-ahead log %s\n", a, b);
	text_config(o, cfg, cfg_err);
	human(s->pending_bytes, a, sizeof(a));
	printf("pending      %" PRId64 " event%s (%s)", s->pending,
	       s->pending == 1 ? "" : "s", a);
	if (s->leased)
		printf(", %" PRId64 " being sent", s->leased);
	putchar('\n');
	printf("sent         %" PRId64 " event%s kept for audit\n", s->sent,
	       s->sent == 1 ? "" : "s");
	printf("dead         %" PRId64 " event%s given up on\n", s->dead,
	       s->dead == 1 ? "" : "s");
	printf("surveys      %" PRId64 " pending\n", s->surveys_pending);
	if (s->purge_incomplete[0])
		printf("purge        INCOMPLETE since %s: a reader holding a "
		       "transaction open keeps purged pages readable in the "
		       "file or its WAL; the next run after it ends finishes "
		       "the purge\n",
		       s->purge_incomplete);
	if (s->oldest_pending[0])
		printf("oldest       %s\n", s->oldest_pending);
	if (s->next_attempt[0])
		printf("next attempt %s\n", s->next_attempt);
	{
		char lockerr[1024];
		if (tsu_lock_problem(o->db_path, lockerr, sizeof(lockerr)))
			printf("LOCK         %s\n", lockerr);
	}
	if (throttled[0])
		printf("throttled    Space asked to wait until %s\n",
		       throttled);
	/* What the last run could not get past, and what to check. */
	if (s->n_runs > 0 && s->runs[0].ended_at[0] &&
	    (strcmp(s->runs[0].outcome, "refused") == 0 ||
	     strcmp(s->runs[0].outcome, "auth_failed") == 0 ||
	     strcmp(s->runs[0].outcome, "config_error") == 0))
		printf("attention    %s\n", s->runs[0].detail);
	if (down[0])
		printf("%s one probe per run until %s\n",
		       s->n_runs > 0 &&
			       strcmp(s->runs[0].outcome, "refused") == 0
			   ? "refused     "
			   : "server down ",
		       down);
	if (survey_down[0])
		printf(
		    "surveys down survey endpoints refused or failing; survey "
		    "events wait until %s, the telemetry goes on\n",
		    survey_down);
	if (inflight.have)
		printf("in flight    %d at the end of the last sending run "
		       "(%s, peak %d, cut %d time%s)\n",
		       inflight.level, inflight.mode, inflight.peak,
		       inflight.cuts, inflight.cuts == 1 ? "" : "s");
	text_history(s);
}

/* key: the text, or null when it is empty. */
static void add_text(cJSON *obj, const char *key, const char *text)
{
	if (text[0])
		cJSON_AddStringToObject(obj, key, text);
	else
		cJSON_AddNullToObject(obj, key);
}

static void json_config(cJSON *j, const tsu_options *o, const tsu_config *cfg,
			const char *cfg_err)
{
	cJSON *c = cJSON_AddObjectToObject(j, "config");
	cJSON_AddStringToObject(c, "path", o->config_path);
	if (cfg_err) {
		cJSON_AddStringToObject(c, "error", cfg_err);
		return;
	}
	char *shown = tsu_url_redacted(cfg->space_url);
	cJSON_AddBoolToObject(c, "telemetry_disabled", cfg->disable_telemetry);
	cJSON_AddStringToObject(c, "space_url", shown ? shown : "");
	free(shown);
	add_text(c, "send_error", cfg->send_error);
}

static void json_runs(cJSON *j, const telespool__status *s)
{
	cJSON *runs = cJSON_AddArrayToObject(j, "runs");
	for (size_t i = 0; i < s->n_runs; i++) {
		cJSON *r = cJSON_CreateObject();
		cJSON_AddStringToObject(r, "started_at", s->runs[i].started_at);
		add_text(r, "ended_at", s->runs[i].ended_at);
		cJSON_AddStringToObject(r, "outcome", s->runs[i].outcome);
		cJSON_AddNumberToObject(r, "sent", (double)s->runs[i].sent);
		cJSON_AddNumberToObject(r, "retried",
					(double)s->runs[i].retried);
		cJSON_AddNumberToObject(r, "dead", (double)s->runs[i].dead);
		cJSON_AddNumberToObject(r, "purged", (double)s->runs[i].purged);
		cJSON_AddStringToObject(r, "detail", s->runs[i].detail);
		cJSON_AddItemToArray(runs, r);
	}
}

static void print_json(const telespool__status *s, const tsu_options *o,
		       const tsu_config *cfg, const char *cfg_err,
		       const char *throttled, const char *down)
{
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "spool", o->db_path);
	cJSON_AddNumberToObject(j, "schema_version", s->schema_version);
	cJSON_AddNumberToObject(j, "file_bytes",
				(double)file_size(o->db_path, ""));
	cJSON_AddNumberToObject(j, "wal_bytes",
				(double)file_size(o->db_path, "-wal"));
	json_config(j, o, cfg, cfg_err);
	cJSON_AddNumberToObject(j, "pending", (double)s->pending);
	cJSON_AddNumberToObject(j, "pending_bytes", (double)s->pending_bytes);
	cJSON_AddNumberToObject(j, "leased", (double)s->leased);
	cJSON_AddNumberToObject(j, "sent", (double)s->sent);
	cJSON_AddNumberToObject(j, "dead", (double)s->dead);
	cJSON_AddNumberToObject(j, "surveys_pending",
				(double)s->surveys_pending);
	add_text(j, "oldest_pending", s->oldest_pending);
	add_text(j, "next_attempt", s->next_attempt);
	{
		char lockerr[1024];
		if (!tsu_lock_problem(o->db_path, lockerr, sizeof(lockerr)))
			lockerr[0] = '\0';
		add_text(j, "lock_error", lockerr);
	}
	add_text(j, "throttled_until", throttled);
	add_text(j, "down_until", down);
	add_text(j, "survey_down_until", survey_down);
	add_text(j, "purge_incomplete_since", s->purge_incomplete);
	if (inflight.have) {
		cJSON *f = cJSON_AddObjectToObject(j, "in_flight");
		cJSON_AddNumberToObject(f, "level", inflight.level);
		cJSON_AddNumberToObject(f, "peak", inflight.peak);
		cJSON_AddNumberToObject(f, "cuts", inflight.cuts);
		cJSON_AddStringToObject(f, "mode", inflight.mode);
	} else {
		cJSON_AddNullToObject(j, "in_flight");
	}
	cJSON *d = cJSON_AddObjectToObject(j, "drops");
	for (size_t i = 0; i < s->n_drops; i++)
		cJSON_AddNumberToObject(d, s->drops[i].reason,
					(double)s->drops[i].count);
	json_runs(j, s);
	char *text = cJSON_Print(j);
	if (text)
		puts(text);
	free(text);
	cJSON_Delete(j);
}

int tsu_status(const tsu_options *o, int json)
{
	struct stat st;
	if (stat(o->db_path, &st) != 0) {
		fprintf(stderr, "telespool-upload: no spool at %s\n",
			o->db_path);
		return TSU_EXIT_OK;
	}
	tsu_config cfg;
	char err[512];
	int have_cfg = tsu_config_load(&cfg, o->config_path, o->data_dir, err,
				       sizeof(err)) == 0;

	telespool *sp;
	telespool_options so = TELESPOOL_OPTIONS_INIT;
	so.busy_timeout_ms = 5000;
	int rc = telespool_open(&sp, o->db_path, &so);
	if (rc != TELESPOOL_OK) {
		fprintf(stderr, "telespool-upload: cannot use the spool: %s\n",
			telespool_open_errmsg());
		if (have_cfg)
			tsu_config_free(&cfg);
		return TSU_EXIT_ERROR;
	}
	telespool__status s;
	int64_t now = tsu_now_ms();
	rc = telespool__get_status(sp, now, &s);
	char why[512];
	snprintf(why, sizeof(why), "%s", telespool_errmsg(sp));
	char throttled[32], down[32];
	wait_of(sp, TELESPOOL__GATE_RETRY_AFTER, now, throttled);
	wait_of(sp, TELESPOOL__GATE_DOWN_UNTIL, now, down);
	wait_of(sp, TELESPOOL__GATE_SURVEY_DOWN_UNTIL, now, survey_down);
	read_inflight(sp);
	if (rc != TELESPOOL_OK) {
		fprintf(stderr, "telespool-upload: cannot read %s: %s\n",
			o->db_path, why);
	} else if (json) {
		print_json(&s, o, have_cfg ? &cfg : NULL, have_cfg ? NULL : err,
			   throttled, down);
	} else {
		print_text(&s, o, have_cfg ? &cfg : NULL, have_cfg ? NULL : err,
			   throttled, down);
	}
	telespool_close(sp);
	if (have_cfg)
		tsu_config_free(&cfg);
	return rc == TELESPOOL_OK ? TSU_EXIT_OK : TSU_EXIT_ERROR;
}
