/*
 * main.c - telespool-upload's command line, signals and exit codes.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "concurrency.h"
#include "drain.h"
#include "status.h"
#include "telespool.h"
#include "uuid.h"

#ifndef TELESPOOL_UPLOAD_VERSION
#define TELESPOOL_UPLOAD_VERSION "0"
#endif

static volatile sig_atomic_t stop_signal;
static volatile int stop_flag;

static void on_signal(int sig)
{
	stop_signal = sig;
	stop_flag = 1;
}

static void usage(FILE *f)
{
	fputs("Usage: telespool-upload [OPTION]...\n"
	      "Send LangBot's spooled telemetry to LangBot Space; purge it all "
	      "when\n"
	      "telemetry is disabled (space.disable_telemetry: true).  Run it "
	      "from\n"
	      "LangBot's working directory, by cron or a systemd timer.\n"
	      "\n"
	      "  --data-dir DIR      LangBot's data directory (default: data)\n"
	      "  --config FILE       config file (default: DIR/config.yaml)\n"
	      "  --db FILE           spool (default: DIR/telemetry.db)\n"
	      "  --max-seconds N     stop the run after N seconds (default: "
	      "300)\n"
	      "  --ignore-backoff    send pending events now, even if their "
	      "next\n"
	      "                      attempt or a Retry-After is later (manual "
	      "flush)\n"
	      "  --dry-run           print what would be sent; send nothing\n"
	      "  --status            print the spool's state; send nothing\n"
	      "  --json              with --status: print JSON\n"
	      "  --splay SECONDS     wait a random 0..SECONDS before starting\n"
	      "  --cacert FILE       verify Space's certificate with this CA "
	      "bundle\n"
	      "                      (TLS verification cannot be turned off)\n"
	      "  --batch N           events claimed per batch (default: 100; "
	      "more over\n"
	      "                      long round trips: 4 per request in "
	      "flight)\n"
	      "  --parallel N        requests in flight at once, fixed "
	      "(1..128; default:\n"
	      "                      adaptive, from 4 up to 128, 32 over "
	      "HTTP/1.x)\n"
	      "  --verbose           log each request and failure (never "
	      "bodies,\n"
	      "                      except with --dry-run)\n"
	      "  --help              show this help\n"
	      "  --version           show the version\n"
	      "\n"
	      "Environment: SPACE__URL, SPACE__DISABLE_TELEMETRY and\n"
	      "SYSTEM__INSTANCE_ID override the config as in LangBot;\n"
	      "LANGBOT_TELEMETRY_INGEST_TOKEN adds X-LangBot-Telemetry-Token;\n"
	      "http_proxy, https_proxy and no_proxy are honoured.\n"
	      "\n"
	      "Exit status:\n"
	      "   0  done (also: nothing due, opted out and purged, another\n"
	      "      uploader already running, no spool yet)\n"
	      "  75  events are left for a later run after retryable failures\n"
	      "  78  the configuration or the command line is unreadable or\n"
	      "      invalid (nothing sent or deleted)\n"
	      "   1  anything else (e.g. the spool is unusable)\n",
	      f);
}

static int parse_int(const char *s, const char *name, int lo, int hi, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr,
			"telespool-upload: %s must be a number from %d to %d, "
			"not '%s'\n",
			name, lo, hi, s);
		return -1;
	}
	*out = (int)v;
	return 0;
}

/* Sleeps a random time up to max_s seconds; a signal ends it early. */
static void splay(int max_s)
{
	uint64_t r = 0;
	if (max_s <= 0 || telespool__random(&r, sizeof(r)) != 0)
		return;
	uint64_t ms = r % ((uint64_t)max_s * 1000 + 1);
	struct timespec ts = {(time_t)(ms / 1000),
			      (long)(ms % 1000) * 1000000L};
	while (!stop_flag && nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int main(int argc, char **argv)
{
	enum {
		OPT_DATA = 256,
		OPT_CONFIG,
		OPT_DB,
		OPT_MAXS,
		OPT_IGNORE,
		OPT_DRY,
		OPT_STATUS,
		OPT_JSON,
		OPT_SPLAY,
		OPT_CACERT,
		OPT_BATCH,
		OPT_PAR,
		OPT_VERBOSE,
		OPT_HELP,
		OPT_VERSION
	};
	static const struct option longopts[] = {
	    {"data-dir", required_argument, NULL, OPT_DATA},
	    {"config", required_argument, NULL, OPT_CONFIG},
	    {"db", required_argument, NULL, OPT_DB},
	    {"max-seconds", required_argument, NULL, OPT_MAXS},
	    {"ignore-backoff", no_argument, NULL, OPT_IGNORE},
	    {"dry-run", no_argument, NULL, OPT_DRY},
	    {"status", no_argument, NULL, OPT_STATUS},
	    {"json", no_argument, NULL, OPT_JSON},
	    {"splay", required_argument, NULL, OPT_SPLAY},
	    {"cacert", required_argument, NULL, OPT_CACERT},
	    {"batch", required_argument, NULL, OPT_BATCH},
	    {"parallel", required_argument, NULL, OPT_PAR},
	    {"verbose", no_argument, NULL, OPT_VERBOSE},
	    {"help", no_argument, NULL, OPT_HELP},
	    {"version", no_argument, NULL, OPT_VERSION},
	    {NULL, 0, NULL, 0},
	};
	tsu_options o;
	int status = 0, json = 0, splay_s = 0, c;
	static char config_buf[4200], db_buf[4200];

	memset(&o, 0, sizeof(o));
	o.data_dir = "data";
	o.batch = TSU_DEFAULT_BATCH;
	o.max_in_flight = TSU_DEFAULT_IN_FLIGHT;
	o.max_attempts = TSU_DEFAULT_MAX_ATTEMPTS;
	o.max_age_ms = TSU_DEFAULT_MAX_AGE_MS;
	o.retention_ms = TSU_DEFAULT_RETENTION_MS;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_DATA:
			o.data_dir = optarg;
			break;
		case OPT_CONFIG:
			o.config_path = optarg;
			break;
		case OPT_DB:
			o.db_path = optarg;
			break;
		case OPT_MAXS:
			if (parse_int(optarg, "--max-seconds", 1, 86400,
				      &o.max_seconds))
				return TSU_EXIT_CONFIG;
			break;
		case OPT_IGNORE:
			o.ignore_backoff = 1;
			break;
		case OPT_DRY:
			o.dry_run = 1;
			break;
		case OPT_STATUS:
			status = 1;
			break;
		case OPT_JSON:
			json = 1;
			break;
		case OPT_SPLAY:
			if (parse_int(optarg, "--splay", 0, 86400, &splay_s))
				return TSU_EXIT_CONFIG;
			break;
		case OPT_CACERT:
			o.cacert = optarg;
			break;
		case OPT_BATCH:
			if (parse_int(optarg, "--batch", 1, 10000, &o.batch))
				return TSU_EXIT_CONFIG;
			break;
		case OPT_PAR:
			if (parse_int(optarg, "--parallel", 1, TSU_CC_CEILING,
				      &o.max_in_flight))
				return TSU_EXIT_CONFIG;
			break;
		case OPT_VERBOSE:
			o.verbose = 1;
			break;
		case OPT_HELP:
			usage(stdout);
			return TSU_EXIT_OK;
		case OPT_VERSION:
			printf("telespool-upload %s (libtelespool %s)\n",
			       TELESPOOL_UPLOAD_VERSION, telespool_version());
			return TSU_EXIT_OK;
		default:
			fprintf(stderr,
				"telespool-upload: unknown or incomplete "
				"option '%s'\n",
				argv[optind - 1]);
			usage(stderr);
			return TSU_EXIT_CONFIG;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "telespool-upload: unexpected argument '%s'\n",
			argv[optind]);
		usage(stderr);
		return TSU_EXIT_CONFIG;
	}
	if (o.config_path == NULL) {
		snprintf(config_buf, sizeof(config_buf), "%s/config.yaml",
			 o.data_dir);
		o.config_path = config_buf;
	}
	if (o.db_path == NULL) {
		snprintf(db_buf, sizeof(db_buf), "%s/telemetry.db", o.data_dir);
		o.db_path = db_buf;
	}
	if (json && !status) {
		fprintf(stderr,
			"telespool-upload: --json goes with --status\n");
		usage(stderr);
		return TSU_EXIT_CONFIG;
	}
	if (status)
		return tsu_status(&o, json);

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Past a file size limit (ulimit -f, LimitFSIZE=) a write must fail
	 * with an error we report, not kill the process. */
	signal(SIGXFSZ, SIG_IGN);

	/* A progress line only for a person watching; cron and systemd get
	 * the one summary line. */
	o.progress = isatty(STDERR_FILENO) && getenv("INVOCATION_ID") == NULL;

	splay(splay_s);
	if (stop_flag)
		return TSU_EXIT_OK;
	return tsu_drain(&o, &stop_flag);
}
