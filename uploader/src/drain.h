/*
 * drain.h - one run of telespool-upload: read the config, purge on opt-out,
 * or drain due events to LangBot Space in batches and record what happened.
 */
#ifndef TSU_DRAIN_H
#define TSU_DRAIN_H

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
} tsu_options;

/* Runs once; returns one of the TSU_EXIT_* codes.  Prints one summary line
 * on stderr (more with verbose).  stop, if non-NULL, is polled: when it
 * becomes non-zero (SIGTERM), in-flight requests are abandoned, their rows
 * released, and the run ends cleanly. */
int tsu_drain(const tsu_options *o, volatile int *stop);

/* One line on stderr, "telespool-upload: " and the message. */
void tsu_say(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

#endif
