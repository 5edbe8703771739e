/*
 * main.c - telespool-upload's command line, signals and exit codes.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "concurrency.h"
#include "drain.h"
#include "status.h"
#include "telespool.h"

#ifndef TELESPOOL_UPLOAD_VERSION
#define TELESPOOL_UPLOAD_VERSION "0"
#endif

static volatile sig_atomic_t stop_signal;
/* The stop signals so far, up to 2: the first stops gracefully (the
 * requests in flight may finish, --stop-timeout), the second at once. */
static volatile int stop_flag;

static void on_signal(int sig)
{
	stop_signal = sig;
	if (stop_flag < 2)
		stop_flag = stop_flag + 1;
}

static void usage(FILE *f)
{
	fputs("Usage: telespool-upload [OPTION]...\n"
	      "Send LangBot's spooled telemetry to LangBot Space; purge it all "
	      "when\n"
	      "telemetry is disabled (space.disable_telemetry: true).  Run it "
	      "from\n"
	      "LangBot's working directory, by cron or a systemd timer, or "
	      "keep it\n"
	      "running with --every.\n"
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
	      "  --every DURATION    keep running: one run per DURATION "
	      "(15m, 900s,\n"
	      "                      1h, 1h30m; 100ms to 24h), each "
	      "interval\n"
	      "                      jittered by up to 10%; SIGTERM or SIGINT "
	      "end it\n"
	      "                      with exit 0 (a sidecar container's "
	      "command)\n"
	      "  --stop-timeout SECONDS  on SIGTERM or SIGINT, let the "
	      "requests in\n"
	      "                      flight finish for up to SECONDS (0..300; "
	      "default: 5,\n"
	      "                      under Docker's 10 s before SIGKILL); a "
	      "second\n"
	      "                      signal, or 0, abandons them at once\n"
	      "  --cacert FILE       verify Space's certificate with this CA "
	      "bundle\n"
	      "                      (TLS verification cannot be turned off)\n"
	      "  --auth-command CMD  run CMD WORKSPACE_UUID by /bin/sh for\n"
	      "                      an Authorization: Bearer token on\n"
	      "                      telemetry events that name a workspace\n"
	      "                      (default: no Authorization header)\n"
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
	      "Environment: SPACE__URL, SPACE__DISABLE_TELEMETRY,\n"
	      "PROXY__HTTP, PROXY__HTTPS and SYSTEM__INSTANCE_ID override\n"
	      "the config as in LangBot; LANGBOT_TELEMETRY_INGEST_TOKEN adds\n"
	      "X-LangBot-Telemetry-Token to /api/v1/telemetry; the proxy is\n"
	      "proxy.http/https, else HTTPS_PROXY, HTTP_PROXY, ALL_PROXY,\n"
	      "NO_PROXY (either case).\n"
	      "\n"
	      "Exit status (with --every: of each run, in its log line; the\n"
	      "program itself exits 0 when stopped, 78 for a bad command "
	      "line):\n"
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

/* The signals that stop the program. */
static void stop_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
}

/* Sleeps ms milliseconds unless a stop signal arrived before or arrives
 * during the sleep.  The signals are blocked while stop_flag is looked at
 * and unblocked atomically by pselect(), so one that arrives just before
 * the sleep still ends it at once.  Returns non-zero when stopped. */
static int sleep_unless_stopped(int64_t ms)
{
	sigset_t block, orig, during;
	stop_signals(&block);
	sigprocmask(SIG_BLOCK, &block, &orig);
	during = orig;
	sigdelset(&during, SIGTERM);
	sigdelset(&during, SIGINT);
	sigdelset(&during, SIGHUP);
	int64_t end = tsu_monotonic_ms() + ms;
	for (;;) {
		int64_t left = end - tsu_monotonic_ms();
		if (stop_flag || left <= 0)
			break;
		struct timespec ts = {(time_t)(left / 1000),
				      (long)(left % 1000) * 1000000L};
		(void)pselect(0, NULL, NULL, NULL, &ts, &during);
	}
	sigprocmask(SIG_SETMASK, &orig, NULL);
	return stop_flag;
}

/* --every: "15m", "900s", "1h", "1h30m", "200ms"; a bare number is
 * seconds.  Accepts 100 ms to 24 h (sub-second intervals are for tests).
 * Returns 0 and sets *out_ms, or -1 after printing why. */
static int parse_duration(const char *s, int64_t *out_ms)
{
	static const struct {
		const char *unit;
		int64_t ms;
	} units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
	const int64_t lo = 100, hi = 24LL * 3600000;
	const char *p = s;
	int64_t total = 0;

	while (*p) {
		char *end;
		if (*p < '0' || *p > '9')
			goto bad;
		errno = 0;
		long long n = strtoll(p, &end, 10);
		if (errno || n > hi)
			goto bad;
		size_t u = 0, len = 0;
		for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
			size_t l = strlen(units[i].unit);
			if (strncmp(end, units[i].unit, l) == 0 && l > len) {
				u = i;
				len = l;
			}
		}
		if (len == 0) {
			if (*end != '\0' || p != s)
				goto bad; /* a bare number only on its own */
			u = 1;
		}
		total += (int64_t)n * units[u].ms;
		if (total > hi)
			goto bad;
		p = end + len;
	}
	if (p == s || total < lo)
		goto bad;
	*out_ms = total;
	return 0;
bad:
	fprintf(stderr,
		"telespool-upload: --every must be a duration from 100ms to "
		"24h such as 15m, 900s, 1h or 1h30m, not '%s'\n",
		s);
	return -1;
}

/* What an exit code means, for the per-run line of --every. */
static const char *exit_meaning(int code)
{
	return code == TSU_EXIT_OK         ? "done"
	       : code == TSU_EXIT_TEMPFAIL ? "events left for a later run"
	       : code == TSU_EXIT_CONFIG
		   ? "configuration invalid, nothing sent or deleted"
		   : "error";
}
/* The interval to wait after a run: interval_ms jittered by up to 10% either
 * way, so that many instances started together drift apart. */
static int64_t jittered(int64_t interval_ms)
{
	int64_t spread = interval_ms / 10;
	if (spread <= 0)
		return interval_ms;
	uint64_t r = tsu_random64();
	return interval_ms - spread + (int64_t)(r % (uint64_t)(2 * spread + 1));
}

/* --every: a run, then the next one interval_ms (jittered) after the start
 * of the last, until a stop signal.  Each run is an ordinary run (the
 * config is read again, one summary line) followed by one line with its
 * exit code and when the next run starts.  Returns 0 once stopped. */
static int every(const tsu_options *o, int64_t interval_ms)
{
	unsigned long long runs = 0;
	while (!stop_flag) {
		int64_t started = tsu_monotonic_ms();
		int code = tsu_drain(o, &stop_flag);
		runs++;
		if (stop_flag) {
			fprintf(stderr,
				"telespool-upload: run %llu: exit %d (%s); "
				"stopping\n",
				runs, code, exit_meaning(code));
			break;
		}
		int64_t next = started + jittered(interval_ms);
		int64_t wait = next - tsu_monotonic_ms();
		if (wait < 0)
			wait = 0;
		fprintf(stderr,
			"telespool-upload: run %llu: exit %d (%s); next run in "
			"%.1f s\n",
			runs, code, exit_meaning(code), (double)wait / 1000.0);
		fflush(stderr);
		if (sleep_unless_stopped(wait))
			break;
	}
	fprintf(stderr,
		"telespool-upload: stopped by signal %d after %llu run%s\n",
		(int)stop_signal, runs, runs == 1 ? "" : "s");
	return TSU_EXIT_OK;
}

/* Sleeps a random time up to max_s seconds; a signal ends it early. */
static void splay(int max_s)
{
	if (max_s <= 0)
		return;
	uint64_t ms = tsu_random64() % ((uint64_t)max_s * 1000 + 1);
	(void)sleep_unless_stopped((int64_t)ms);
}

/* The command line, parsed. */
struct cli {
	tsu_options o;
	int status, json, splay_s;
	int64_t every_ms;
};

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
	OPT_EVERY,
	OPT_STOP_TIMEOUT,
	OPT_CACERT,
	OPT_AUTH,
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
    {"every", required_argument, NULL, OPT_EVERY},
    {"stop-timeout", required_argument, NULL, OPT_STOP_TIMEOUT},
    {"cacert", required_argument, NULL, OPT_CACERT},
    {"auth-command", required_argument, NULL, OPT_AUTH},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"parallel", required_argument, NULL, OPT_PAR},
    {"verbose", no_argument, NULL, OPT_VERBOSE},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

/* The options that take a number: its range and its place in struct cli. */
static const struct number_option {
	int opt;
	const char *name;
	int lo, hi;
	size_t at;
} number_options[] = {
    {OPT_MAXS, "--max-seconds", 1, 86400, offsetof(struct cli, o.max_seconds)},
    {OPT_SPLAY, "--splay", 0, 86400, offsetof(struct cli, splay_s)},
    {OPT_STOP_TIMEOUT, "--stop-timeout", 0, TSU_MAX_STOP_TIMEOUT_S,
     offsetof(struct cli, o.stop_timeout_s)},
    {OPT_BATCH, "--batch", 1, 10000, offsetof(struct cli, o.batch)},
    {OPT_PAR, "--parallel", 1, TSU_CC_CEILING,
     offsetof(struct cli, o.max_in_flight)},
};

/* One option into *a.  Returns -1 to go on, or the exit code (--help,
 * --version, a bad value: said on stderr). */
static int apply_option(int c, char **argv, struct cli *a)
{
	for (size_t i = 0; i < sizeof number_options / sizeof *number_options;
	     i++) {
		const struct number_option *n = &number_options[i];
		if (n->opt == c)
			return parse_int(optarg, n->name, n->lo, n->hi,
					 (int *)(void *)((char *)a + n->at))
				   ? TSU_EXIT_CONFIG
				   : -1;
	}
	switch (c) {
	case OPT_DATA:
		a->o.data_dir = optarg;
		break;
	case OPT_CONFIG:
		a->o.config_path = optarg;
		break;
	case OPT_DB:
		a->o.db_path = optarg;
		break;
	case OPT_IGNORE:
		a->o.ignore_backoff = 1;
		break;
	case OPT_DRY:
		a->o.dry_run = 1;
		break;
	case OPT_STATUS:
		a->status = 1;
		break;
	case OPT_JSON:
		a->json = 1;
		break;
	case OPT_EVERY:
		if (parse_duration(optarg, &a->every_ms))
			return TSU_EXIT_CONFIG;
		break;
	case OPT_CACERT:
		a->o.cacert = optarg;
		break;
	case OPT_AUTH:
		a->o.auth_cmd = optarg[0] ? optarg : NULL;
		break;
	case OPT_VERBOSE:
		a->o.verbose = 1;
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
	return -1;
}

/* Returns -1 to go on, or the exit code (every error said on stderr). */
static int parse_args(int argc, char **argv, struct cli *a)
{
	static char config_buf[4200], db_buf[4200];
	int c, code;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1)
		if ((code = apply_option(c, argv, a)) >= 0)
			return code;
	if (optind < argc) {
		fprintf(stderr, "telespool-upload: unexpected argument '%s'\n",
			argv[optind]);
		usage(stderr);
		return TSU_EXIT_CONFIG;
	}
	if (a->o.config_path == NULL) {
		snprintf(config_buf, sizeof(config_buf), "%s/config.yaml",
			 a->o.data_dir);
		a->o.config_path = config_buf;
	}
	if (a->o.db_path == NULL) {
		snprintf(db_buf, sizeof(db_buf), "%s/telemetry.db",
			 a->o.data_dir);
		a->o.db_path = db_buf;
	}
	if (a->json && !a->status) {
		fprintf(stderr,
			"telespool-upload: --json goes with --status\n");
		usage(stderr);
		return TSU_EXIT_CONFIG;
	}
	if (a->every_ms && (a->status || a->o.dry_run)) {
		fprintf(stderr,
			"telespool-upload: --every does not go with "
			"%s\n",
			a->status ? "--status" : "--dry-run");
		usage(stderr);
		return TSU_EXIT_CONFIG;
	}
	return -1;
}

static void set_up_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	stop_signals(&sa.sa_mask); /* one handler at a time: counted once */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	/* A parent (a container's init, a supervisor) may hand them down
	 * blocked; they must reach us. */
	sigset_t stops;
	stop_signals(&stops);
	sigprocmask(SIG_UNBLOCK, &stops, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Past a file size limit (ulimit -f, LimitFSIZE=) a write must fail
	 * with an error we report, not kill the process. */
	signal(SIGXFSZ, SIG_IGN);
}

int main(int argc, char **argv)
{
	struct cli a;
	int code;

	memset(&a, 0, sizeof(a));
	a.o.data_dir = "data";
	a.o.batch = TSU_DEFAULT_BATCH;
	a.o.max_in_flight = TSU_DEFAULT_IN_FLIGHT;
	a.o.max_attempts = TSU_DEFAULT_MAX_ATTEMPTS;
	a.o.max_age_ms = TSU_DEFAULT_MAX_AGE_MS;
	a.o.retention_ms = TSU_DEFAULT_RETENTION_MS;
	a.o.stop_timeout_s = TSU_DEFAULT_STOP_TIMEOUT_S;
	if ((code = parse_args(argc, argv, &a)) >= 0)
		return code;
	if (a.status)
		return tsu_status(&a.o, a.json);
	set_up_signals();

	/* A progress line only for a person watching; cron and systemd get
	 * the one summary line. */
	a.o.progress = isatty(STDERR_FILENO) && getenv("INVOCATION_ID") == NULL;

	splay(a.splay_s);
	if (stop_flag)
		return TSU_EXIT_OK;
	if (a.every_ms)
		return every(&a.o, a.every_ms);
	return tsu_drain(&a.o, &stop_flag);
}
