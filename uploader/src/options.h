/*
 * options.h - what a run of telespool-upload is asked to do: the command
 * line's options, their defaults and the exit codes.  Shared by main.c,
 * drain.c, watch.c and status.c; it depends on nothing of the uploader.
 */
#ifndef TSU_OPTIONS_H
#define TSU_OPTIONS_H

#include <stdint.h>

/* Exit codes, as documented in --help and the README. */
#define TSU_EXIT_OK    0 /* done, nothing due, purged, or already running */
#define TSU_EXIT_ERROR 1 /* anything else: the spool is unusable, ... */
#define TSU_EXIT_TEMPFAIL                                                      \
	75 /* rows left for a later run after retryable failures */
#define TSU_EXIT_CONFIG 78 /* configuration unreadable or invalid */

/* Defaults of the tunables below. */
#define TSU_DEFAULT_BATCH        100
#define TSU_DEFAULT_IN_FLIGHT    0 /* adaptive (concurrency.h) */
#define TSU_DEFAULT_MAX_ATTEMPTS 30
#define TSU_DEFAULT_MAX_AGE_MS   (7LL * 86400 * 1000)
#define TSU_DEFAULT_RETENTION_MS (7LL * 86400 * 1000)
#define TSU_LEASE_MS             (60LL * 1000)
#define TSU_BACKOFF_BASE_MS      (30LL * 1000)
#define TSU_BACKOFF_CAP_MS       (6LL * 3600 * 1000)
#define TSU_RETRY_AFTER_MAX_MS   (24LL * 3600 * 1000)
/* A first SIGTERM lets the requests in flight finish this long: half of
 * Docker's default 10 s between SIGTERM and SIGKILL (Kubernetes gives
 * 30 s), leaving time to record their outcomes and exit. */
#define TSU_DEFAULT_STOP_TIMEOUT_S 5
#define TSU_MAX_STOP_TIMEOUT_S     300

typedef struct tsu_options {
	const char *data_dir;    /* default "data" */
	const char *config_path; /* default DATA_DIR/config.yaml */
	const char *db_path;     /* default DATA_DIR/telemetry.db */
	const char *cacert;      /* CA bundle for TLS, or NULL */
	const char *auth_cmd;    /* --auth-command (auth.h), or NULL */
	int max_seconds;         /* whole run; 0 = default 300 */
	int ignore_backoff;
	int dry_run;
	int verbose;
	int batch;            /* rows claimed per batch, at least */
	int max_in_flight;    /* parallel requests; 0 = adaptive */
	int max_attempts;     /* then dead */
	int64_t max_age_ms;   /* then dead */
	int64_t retention_ms; /* sent/dead rows kept this long */
	int progress;         /* show a progress line (interactive terminal) */
	int stop_timeout_s;   /* graceful stop's bound; 0 = abandon at once */
} tsu_options;

#endif
