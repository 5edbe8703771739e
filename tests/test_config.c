/*
 * test_config.c - reading LangBot's data/config.yaml, the labels file and
 * the environment overrides.  Every case writes real files into a fresh
 * mkdtemp() directory, because the uploader reads real files: sizes,
 * permissions, directories and FIFOs are part of what is tested.
 */
#include "config.h"
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char g_dir[512];

static void clear_env(void)
{
	unsetenv("SPACE__URL");
	unsetenv("SPACE__DISABLE_TELEMETRY");
	unsetenv("SYSTEM__INSTANCE_ID");
}

/* g_dir/name, into a caller's buffer. */
static const char *path_of(char *buf, size_t n, const char *name)
{
	snprintf(buf, n, "%s/%s", g_dir, name);
	return buf;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		exit(2);
	}
}

/* Writes text to g_dir/name; returns the path (static, one at a time). */
static const char *put(const char *name, const char *text)
{
	static char p[1024];
	path_of(p, sizeof p, name);
	write_bytes(p, text, strlen(text));
	return p;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Loads text as config.yaml; 0 or -1 as tsu_config_load. */
static int load_text(const char *text, tsu_config *cfg, char *err,
		     size_t errlen)
{
	const char *p = put("config.yaml", text);
	return tsu_config_load(cfg, p, NULL, err, errlen);
}

/* Expects text to fail; err must name the file and contain want. */
static void expect_error(int line, const char *text, const char *want)
{
	tsu_config cfg;
	char err[1500];
	char p[1024];
	int rc;

	path_of(p, sizeof p, "config.yaml");
	rc = load_text(text, &cfg, err, sizeof err);
	if (rc == -1 && strstr(err, p) && strstr(err, want) &&
	    cfg.space_url == NULL && cfg.instance_id == NULL) {
		tu_passed++;
		return;
	}
	tu_failed++;
	fprintf(stderr,
		"%s:%d: want error containing \"%s\", got rc %d \"%s\"\n",
		__FILE__, line, want, rc, err);
	if (rc == 0)
		tsu_config_free(&cfg);
}

static const char langbot_config[] =
    "# LangBot instance configuration, as written by LangBot v4\n"
    "admins:\n"
    "- person_10001\n"
    "admin-sessions:\n"
    "  - person_10001\n"
    "  - group_20002\n"
    "api:\n"
    "  port: 5300\n"
    "  webhook_prefix: 'http://127.0.0.1:5300'\n"
    "  extra_webhook_prefix: ''\n"
    "command:\n"
    "  enable: true\n"
    "  prefix:\n"
    "  - '!'\n"
    "  - \xef\xbc\x81\n" /* a full-width '!' */
    "  privilege: {}\n"
    "concurrency:\n"
    "  pipeline: 20\n"
    "  session: 1\n"
    "defaults: &defaults\n"
    "  timeout: 120\n"
    "  retries: [1, 2, 3]\n"
    "pipeline:\n"
    "  <<: *defaults\n"
    "  stages: [*defaults, {name: ai, url: 'ignored'}]\n"
    "mcp:\n"
    "  servers: []\n"
    "proxy:\n"
    "  http: ''\n"
    "  https: ''\n"
    "system:\n"
    "  allow_modify_login_info: true\n"
    "  instance_id: 'instance_7d9b4c5e-1f0a-4c3e-9a1b-2f6d8e0c4b3a'\n"
    "  jwt:\n"
    "    expire: 604800\n"
    "    secret: 'f3a9c1d2e4b5a6978877665544332211'\n"
    "  recovery_key: ''\n"
    "  limitation:\n"
    "    max_bots: -1\n"
    "    max_pipelines: -1\n"
    "plugin:\n"
    "  enable: true\n"
    "  runtime_ws_url: 'ws://langbot_plugin_runtime:5400/control/ws'\n"
    "  enable_marketplace: true\n"
    "  cloud_service_url: 'https://space.langbot.app'\n"
    "notes: |\n"
    "  space:\n"
    "    url: http://not-this-one\n"
    "  disable_telemetry: true\n"
    "vdb:\n"
    "  use: chroma\n"
    "  qdrant:\n"
    "    url: ''\n"
    "    host: localhost\n"
    "    port: 6333\n"
    "    api_key: ''\n"
    "space:\n"
    "  # base URL of LangBot Space\n"
    "  url: 'https://space.langbot.app/'\n"
    "  models_gateway_api_url: 'https://api.langbot.cloud/v1'\n"
    "  oauth_authorize_url: 'https://space.langbot.app/auth/authorize'\n"
    "  disable_models_service: false\n"
    "  disable_telemetry: false\n"
    "database:\n"
    "  use: sqlite\n"
    "  sqlite:\n"
    "    path: 'data/langbot.db'\n"
    "  postgresql:\n"
    "    host: '127.0.0.1'\n"
    "    port: 5432\n"
    "    user: 'postgres'\n"
    "    password: 'postgres'\n"
    "    database: 'postgres'\n"
    "? [complex, key]\n"
    ": ignored\n";

static void test_langbot_config(void)
{
	tsu_config cfg;
	char err[1500];

	clear_env();
	ASSERT_EQ(load_text(langbot_config, &cfg, err, sizeof err), 0);
	ASSERT_STREQ(cfg.space_url, "https://space.langbot.app");
	ASSERT_EQ(cfg.disable_telemetry, 0);
	ASSERT_STREQ(cfg.instance_id,
		     "instance_7d9b4c5e-1f0a-4c3e-9a1b-2f6d8e0c4b3a");
	ASSERT_STREQ(cfg.url_from, "config");
	ASSERT_STREQ(cfg.disabled_from, "config");
	tsu_config_free(&cfg);
	tsu_config_free(&cfg); /* twice is harmless */

	/* The same from a buffer, without a trailing newline. */
	ASSERT_EQ(tsu_config_parse(&cfg, "buf.yaml", langbot_config,
				   sizeof langbot_config - 2, err, sizeof err),
		  0);
	ASSERT_STREQ(cfg.space_url, "https://space.langbot.app");
	tsu_config_free(&cfg);

	/* LangBot's own template before the user touched it. */
	ASSERT_EQ(load_text("admins: []\napi:\n    port: 5300\n"
			    "space:\n    url: 'https://space.langbot.app'\n"
			    "    disable_telemetry: false\n"
			    "system:\n    instance_id: ''\n",
			    &cfg, err, sizeof err),
		  0);
	ASSERT_STREQ(cfg.space_url, "https://space.langbot.app");
	ASSERT_STREQ(cfg.instance_id, "");
	tsu_config_free(&cfg);

	/* Flow style, quoted keys, a document marker and an explicit end. */
	ASSERT_EQ(
	    load_text("%YAML 1.1\n---\n{\"space\": {'url': \"http://h:1/x/\","
		      " disable_telemetry: yes}, system: {instance_id: abc}}\n"
		      "...\n",
		      &cfg, err, sizeof err),
	    0);
	ASSERT_STREQ(cfg.space_url, "http://h:1/x");
	ASSERT_EQ(cfg.disable_telemetry, 1);
	ASSERT_STREQ(cfg.instance_id, "abc");
	tsu_config_free(&cfg);
}

static void test_missing_keys(void)
{
	static const char *const texts[] = {
	    "api:\n  port: 5300\n",
	    "space:\n",
	    "space: ~\nsystem: null\n",
	    "space: {}\nsystem: {}\n",
	    "space:\n  models_gateway_api_url: x\n",
	    "{}",
	};
	tsu_config cfg;
	char err[1500];

	clear_env();
	for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
		ASSERT_EQ(load_text(texts[i], &cfg, err, sizeof err), 0);
		ASSERT_STREQ(cfg.space_url, "");
		ASSERT_EQ(cfg.disable_telemetry, 0);
		ASSERT_STREQ(cfg.disabled_from, "default");
		ASSERT_STREQ(cfg.instance_id, "");
		tsu_config_free(&cfg);
	}
	/* Null keys: present, so the config's word, but empty and false. */
	ASSERT_EQ(load_text("space:\n  url:\n  disable_telemetry:\n", &cfg, err,
			    sizeof err),
		  0);
	ASSERT_STREQ(cfg.space_url, "");
	ASSERT_EQ(cfg.disable_telemetry, 0);
	ASSERT_STREQ(cfg.disabled_from, "config");
	tsu_config_free(&cfg);
	/* An explicit empty url is the config's word, not a default. */
	ASSERT_EQ(load_text("space:\n  url:\n", &cfg, err, sizeof err), 0);
	ASSERT_STREQ(cfg.url_from, "config");
	tsu_config_free(&cfg);
	ASSERT_EQ(load_text("api: {}\n", &cfg, err, sizeof err), 0);
	ASSERT_STREQ(cfg.url_from, "default");
	tsu_config_free(&cfg);
}

static void check_bool(int line, const char *value, int want)
{
	char text[256];
	tsu_config cfg;
	char err[1500];
	int rc;

	snprintf(text, sizeof text,
		 "space:\n  url: http://x\n  disable_telemetry: %s\n", value);
	rc = load_text(text, &cfg, err, sizeof err);
	if (rc == 0 && cfg.disable_telemetry == want) {
		tu_passed++;
	} else {
		tu_failed++;
		fprintf(
		    stderr,
		    "%s:%d: disable_telemetry: %s: rc %d got %d want %d %s\n",
		    __FILE__, line, value, rc,
		    rc == 0 ? cfg.disable_telemetry : -1, want, rc ? err : "");
	}
	if (rc == 0)
		tsu_config_free(&cfg);
}

/* space.disable_telemetry typed as PyYAML's FullLoader types it, then
 * Python truthiness (LangBot: if cfg.get('disable_telemetry', False)). */
static void test_bools(void)
{
	static const char *const yes[] = {
	    "true",
	    "True",
	    "TRUE",
	    "yes",
	    "Yes",
	    "YES",
	    "on",
	    "On",
	    "ON",
	    "1",
	    "'true'",
	    "\"TRUE\"",
	    "'yes'",
	    "'on'",
	    "'1'",
	    "!!bool true",
	    "!!bool YES",
	    "true # opted out",
	    /* Strings: any non-empty one is true to Python. */
	    "tRuE",
	    "'false'",
	    "\"no\"",
	    "'0'",
	    "\"False\"",
	    "maybe",
	    "y",
	    "n",
	    "'enable'",
	    "'null'",
	    "\" true\"",
	    "truee",
	    "!!str false",
	    "|\n    false",
	    "2026-01-01",
	    /* Numbers other than zero, and what cannot be typed for sure. */
	    "2",
	    "-1",
	    "0x1",
	    "0b10",
	    "07",
	    "1:30",
	    "1.0",
	    ".5",
	    "1e3",
	    ".inf",
	    "-.Inf",
	    ".nan",
	    "!!bool maybe",
	    "!custom x",
	    "=",
	    "!!python/none ''",
	    /* Strings to PyYAML: ".<digit>" starts its float, "._" does not. */
	    "._",
	    "._0",
	    "._e+1",
	    /* No digit after 0b / 0x, or "._" tagged as a float: PyYAML
	     * raises, LangBot cannot load its config and sends nothing. */
	    "0b_",
	    "-0x__",
	    "!!int 0b_",
	    "!!float ._",
	    /* Non-empty collections. */
	    "[true]",
	    "[false]",
	    "[[]]",
	    "{a: b}",
	    "{false: false}",
	};
	static const char *const no[] = {
	    "false",   "False",       "FALSE",     "no",
	    "No",      "NO",          "off",       "Off",
	    "OFF",     "0",           "''",        "\"\"",
	    "~",       "null",        "NULL",      "Null",
	    "",        "!!null ''",   "!!bool no", "!!bool FALSE",
	    "!!int 0", "!!float 0.0", "!!str ''",  "-0",
	    "+0",      "00",          "0x0",       "0b0",
	    "0_0",     "0.0",         "0.",        ".0",
	    "-0.0e+5", "[]",          "{}",        "[ ]",
	};
	static const char *const refused[] = {
	    "*a",
	};
	char text[256];

	clear_env();
	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
		check_bool(__LINE__, yes[i], 1);
	for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
		check_bool(__LINE__, no[i], 0);
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		snprintf(text, sizeof text,
			 "x: &a true\nspace:\n  disable_telemetry: %s\n",
			 refused[i]);
		expect_error(__LINE__, text, ":3:22: space.disable_telemetry");
	}
}

/*
 * The opt-out decision over config values x SPACE__DISABLE_TELEMETRY:
 * LangBot 4.10.8's answer (load_config.py types the override by what the
 * file holds; telemetry.py tests Python truthiness), and on top the
 * fail-closed cases (an env value not clearly false is "disabled" even
 * where LangBot would read false: "true ", "y", " false").
 */
static void test_optout_matrix(void)
{
	static const struct {
		const char *space; /* the text under "space:" (or the file) */
		const char *env;   /* NULL: unset */
		int want;
	} rows[] = {
	    /* key absent: LangBot stores the raw string */
	    {"  url: http://x\n", NULL, 0},
	    {"  url: http://x\n", "true", 1},
	    {"  url: http://x\n", "false", 1},
	    {"  url: http://x\n", "FALSE", 1},
	    {"  url: http://x\n", "0", 1},
	    {"  url: http://x\n", "no", 1},
	    {"  url: http://x\n", "off", 1},
	    {"  url: http://x\n", "", 0},
	    {"  url: http://x\n", "true ", 1},
	    {"  url: http://x\n", "y", 1},
	    /* a bool: the override becomes a bool */
	    {"  disable_telemetry: false\n", NULL, 0},
	    {"  disable_telemetry: false\n", "true", 1},
	    {"  disable_telemetry: false\n", "TRUE", 1},
	    {"  disable_telemetry: false\n", "1", 1},
	    {"  disable_telemetry: false\n", "Yes", 1},
	    {"  disable_telemetry: false\n", "on", 1},
	    {"  disable_telemetry: false\n", "false", 0},
	    {"  disable_telemetry: false\n", "False", 0},
	    {"  disable_telemetry: false\n", "0", 0},
	    {"  disable_telemetry: false\n", "no", 0},
	    {"  disable_telemetry: false\n", "OFF", 0},
	    {"  disable_telemetry: false\n", "", 0},
	    {"  disable_telemetry: false\n", "true ", 1},  /* fail closed */
	    {"  disable_telemetry: false\n", "y", 1},      /* fail closed */
	    {"  disable_telemetry: false\n", "2", 1},      /* fail closed */
	    {"  disable_telemetry: false\n", " false", 1}, /* fail closed */
	    {"  disable_telemetry: false\n", "enable", 1}, /* fail closed */
	    {"  disable_telemetry: true\n", NULL, 1},
	    {"  disable_telemetry: true\n", "false", 0},
	    {"  disable_telemetry: true\n", "0", 0},
	    {"  disable_telemetry: true\n", "", 0},
	    {"  disable_telemetry: true\n", "nope", 1},
	    /* strings and null: the raw string */
	    {"  disable_telemetry: 'false'\n", NULL, 1},
	    {"  disable_telemetry: 'false'\n", "false", 1},
	    {"  disable_telemetry: 'false'\n", "", 0},
	    {"  disable_telemetry: ''\n", NULL, 0},
	    {"  disable_telemetry: ''\n", "false", 1},
	    {"  disable_telemetry: ''\n", "no", 1},
	    {"  disable_telemetry: ~\n", NULL, 0},
	    {"  disable_telemetry: ~\n", "false", 1},
	    {"  disable_telemetry: ~\n", "", 0},
	    {"  disable_telemetry:\n", "0", 1},
	    /* numbers: int() / float() of the value, else the string */
	    {"  disable_telemetry: 0\n", NULL, 0},
	    {"  disable_telemetry: 0\n", "0", 0},
	    {"  disable_telemetry: 0\n", "1", 1},
	    {"  disable_telemetry: 0\n", "false", 1},
	    {"  disable_telemetry: 0\n", "", 0},
	    {"  disable_telemetry: 1\n", "0", 0},
	    {"  disable_telemetry: 0.0\n", "0", 0},
	    {"  disable_telemetry: 0.0\n", "no", 1},
	    /* lists: comma-separated items; dicts: the override is skipped */
	    {"  disable_telemetry: []\n", NULL, 0},
	    {"  disable_telemetry: []\n", "", 0},
	    {"  disable_telemetry: []\n", "false", 1},
	    {"  disable_telemetry: []\n", "0", 1},
	    {"  disable_telemetry: [x]\n", "", 0},
	    {"  disable_telemetry: {}\n", NULL, 0},
	    {"  disable_telemetry: {}\n", "false", 0},
	    {"  disable_telemetry: {}\n", "true", 1}, /* fail closed */
	    {"  disable_telemetry: {a: 1}\n", NULL, 1},
	    {"  disable_telemetry: {a: 1}\n", "false", 1},
	    /* space: null - LangBot ignores the override (sends nothing) */
	    {"", NULL, 0},
	    {"", "false", 0},
	    {"", "true", 1}, /* fail closed */
	};
	char text[256], err[1500];
	tsu_config cfg;

	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		clear_env();
		if (rows[i].env)
			setenv("SPACE__DISABLE_TELEMETRY", rows[i].env, 1);
		snprintf(text, sizeof text, "api: {}\nspace:\n%s",
			 rows[i].space);
		if (load_text(text, &cfg, err, sizeof err) != 0) {
			TU_FAIL("row %zu: %s", i, err);
			continue;
		}
		if (cfg.disable_telemetry == rows[i].want)
			tu_passed++;
		else
			TU_FAIL(
			    "row %zu: space:\n%s with SPACE__DISABLE_TELEMETRY"
			    "=%s%s%s: disabled %d, want %d",
			    i, rows[i].space, rows[i].env ? "'" : "",
			    rows[i].env ? rows[i].env : "(unset)",
			    rows[i].env ? "'" : "", cfg.disable_telemetry,
			    rows[i].want);
		ASSERT_STREQ(cfg.disabled_from,
			     rows[i].env ? "env"
			     : strstr(rows[i].space, "disable_telemetry")
				 ? "config"
				 : "default");
		tsu_config_free(&cfg);
	}

	/* No space section at all: LangBot creates it for the override. */
	clear_env();
	setenv("SPACE__DISABLE_TELEMETRY", "false", 1);
	ASSERT_EQ(load_text("api: {}\n", &cfg, err, sizeof err), 0);
	ASSERT_EQ(cfg.disable_telemetry, 1);
	tsu_config_free(&cfg);
	/* An override below the key makes a non-empty dict of an absent key. */
	clear_env();
	setenv("SPACE__DISABLE_TELEMETRY__X", "0", 1);
	ASSERT_EQ(load_text("space:\n  url: http://x\n", &cfg, err, sizeof err),
		  0);
	ASSERT_EQ(cfg.disable_telemetry, 1);
	tsu_config_free(&cfg);
	unsetenv("SPACE__DISABLE_TELEMETRY__X");
	clear_env();
}

static void test_urls(void)
{
	static const struct {
		const char *yaml, *want;
	} rows[] = {
	    {"https://space.langbot.app", "https://space.langbot.app"},
	    {"https://space.langbot.app/", "https://space.langbot.app"},
	    {"'https://space.langbot.app///'", "https://space.langbot.app"},
	    {"http://127.0.0.1:8080/base/", "http://127.0.0.1:8080/base"},
	    {"''", ""},
	    {"\"\"", ""},
	    {"~", ""},
	    {"null", ""},
	    {"", ""},
	    {"/", ""},
	    {"'~'", "~"},
	    {"12345", "12345"},
	    {"\"http://h/\\u00e9/\"", "http://h/\xc3\xa9"},
	    {">-\n    http://folded/\n", "http://folded"},
	};
	char text[256];
	tsu_config cfg;
	char err[1500];

	clear_env();
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		snprintf(text, sizeof text, "space:\n  url: %s\n",
			 rows[i].yaml);
		ASSERT_EQ(load_text(text, &cfg, err, sizeof err), 0);
		ASSERT_STREQ(cfg.space_url, rows[i].want);
		tsu_config_free(&cfg);
	}
}

static void test_duplicates(void)
{
	tsu_config cfg;
	char err[1500];

	clear_env();
	ASSERT_EQ(load_text("space:\n  url: http://a\n  url: http://b\n", &cfg,
			    err, sizeof err),
		  0);
	ASSERT_STREQ(cfg.space_url, "http://b");
	tsu_config_free(&cfg);

	/* A second "space" replaces the first entirely, as in PyYAML. */
	ASSERT_EQ(
	    load_text("space:\n  url: http://a\n  disable_telemetry: true\n"
		      "api: {}\nspace:\n  url: http://b\n",
		      &cfg, err, sizeof err),
	    0);
	ASSERT_STREQ(cfg.space_url, "http://b");
	ASSERT_EQ(cfg.disable_telemetry, 0);
	ASSERT_STREQ(cfg.disabled_from, "default");
	tsu_config_free(&cfg);

	ASSERT_EQ(load_text("system: {instance_id: a}\nsystem: ~\n", &cfg, err,
			    sizeof err),
		  0);
	ASSERT_STREQ(cfg.instance_id, "");
	tsu_config_free(&cfg);
}

static void test_env(void)
{
	static const char *const trues[] = {"true", "TRUE", "True", "tRUE",
					    "1",    "yes",  "YES",  "Yes",
					    "on",   "ON",   "On"};
	static const char *const falses[] = {"false", "0",     "no", "off",
					     "",      "FALSE", "Off"};
	/* Neither clearly true nor clearly false: LangBot would read false
	 * (the key holds a bool); telespool fails closed. */
	static const char *const unclear[] = {
	    "2", "y", "enable", " true", "true ", "truee", "01", " false"};
	const char *base = "space:\n  url: http://cfg/\n"
			   "  disable_telemetry: true\n"
			   "system:\n  instance_id: cfg-id\n";
	tsu_config cfg;
	char err[1500];

	clear_env();
	setenv("SPACE__URL", "http://127.0.0.1:8080/", 1);
	ASSERT_EQ(load_text(base, &cfg, err, sizeof err), 0);
	ASSERT_STREQ(cfg.space_url, "http://127.0.0.1:8080");
	ASSERT_STREQ(cfg.url_from, "env");
	ASSERT_EQ(cfg.disable_telemetry, 1);
	ASSERT_STREQ(cfg.disabled_from, "config");
	ASSERT_STREQ(cfg.instance_id, "cfg-id");
	tsu_config_free(&cfg);

	/* Set but empty still overrides: the user blanked the URL. */
	setenv("SPACE__URL", "", 1);
	ASSERT_EQ(load_text(base, &cfg, err, sizeof err), 0);
	ASSERT_STREQ(cfg.space_url, "");
	ASSERT_STREQ(cfg.url_from, "env");
	tsu_config_free(&cfg);
	clear_env();

	for (size_t i = 0; i < sizeof trues / sizeof trues[0]; i++) {
		setenv("SPACE__DISABLE_TELEMETRY", trues[i], 1);
		ASSERT_EQ(load_text("api: {}\n", &cfg, err, sizeof err), 0);
		ASSERT_EQ(cfg.disable_telemetry, 1);
		ASSERT_STREQ(cfg.disabled_from, "env");
		tsu_config_free(&cfg);
		ASSERT_EQ(tsu_env_bool(trues[i]), 1);
	}
	for (size_t i = 0; i < sizeof falses / sizeof falses[0]; i++) {
		setenv("SPACE__DISABLE_TELEMETRY", falses[i], 1);
		ASSERT_EQ(load_text(base, &cfg, err, sizeof err), 0);
		if (cfg.disable_telemetry != 0)
			fprintf(stderr, "  env value \"%s\"\n", falses[i]);
		ASSERT_EQ(cfg.disable_telemetry, 0);
		ASSERT_STREQ(cfg.disabled_from, "env");
		tsu_config_free(&cfg);
		ASSERT_EQ(tsu_env_bool(falses[i]), 0);
		ASSERT_EQ(tsu_env_clearly_false(falses[i]), 1);
	}
	for (size_t i = 0; i < sizeof unclear / sizeof unclear[0]; i++) {
		setenv("SPACE__DISABLE_TELEMETRY", unclear[i], 1);
		ASSERT_EQ(load_text(base, &cfg, err, sizeof err), 0);
		if (cfg.disable_telemetry != 1)
			fprintf(stderr, "  env value \"%s\"\n", unclear[i]);
		ASSERT_EQ(cfg.disable_telemetry, 1);
		tsu_config_free(&cfg);
		ASSERT_EQ(tsu_env_bool(unclear[i]), 0);
		ASSERT_EQ(tsu_env_clearly_false(unclear[i]), 0);
	}
	ASSERT_EQ(tsu_env_clearly_false(NULL), 0);
	ASSERT_EQ(tsu_env_bool(NULL), 0);
	clear_env();

	setenv("SYSTEM__INSTANCE_ID", "instance_env", 1);
	ASSERT_EQ(load_text(base, &cfg, err, sizeof err), 0);
	ASSERT_STREQ(cfg.instance_id, "instance_env");
	tsu_config_free(&cfg);
	clear_env();

	/* space: null - LangBot ignores SPACE__URL (and sends nothing). */
	setenv("SPACE__URL", "http://env", 1);
	ASSERT_EQ(load_text("space:\n", &cfg, err, sizeof err), 0);
	ASSERT_STREQ(cfg.space_url, "");
	tsu_config_free(&cfg);
	ASSERT_EQ(load_text("space: {}\n", &cfg, err, sizeof err), 0);
	ASSERT_STREQ(cfg.space_url, "http://env");
	tsu_config_free(&cfg);
	clear_env();
}

/* Python's str.strip(): the token is stripped with exactly that set. */
static void test_py_strip(void)
{
	static const struct {
		const char *in, *out;
	} rows[] = {
	    {"tok", "tok"},
	    {" \t\r\n\v\ftok \n", "tok"},
	    {"\x1c\x1d\x1e\x1ftok\x1f", "tok"},
	    {"\xc2\x85\xc2\xa0tok\xe3\x80\x80",
	     "tok"}, /* U+0085 U+00A0, U+3000 */
	    {"\xe2\x80\x80tok\xe2\x80\x8a\xe2\x80\xa8",
	     "tok"}, /* U+2000, U+200A, U+2028 */
	    {"\xe2\x80\xaftok\xe2\x81\x9f\xe1\x9a\x80",
	     "tok"},                                /* U+202F, U+205F, U+1680 */
	    {"\xe2\x80\x8btok", "\xe2\x80\x8btok"}, /* U+200B is no space */
	    {"to k", "to k"},
	    {"\x00", "\x00"},
	    {"   ", ""},
	    {"\xfftok\xff", "\xfftok\xff"},
	    {"", ""},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		size_t a, b;
		char got[64];
		tsu_py_strip(rows[i].in, strlen(rows[i].in), &a, &b);
		snprintf(got, sizeof got, "%.*s", (int)(b - a), rows[i].in + a);
		ASSERT_STREQ(got, rows[i].out);
	}
}

/* space.url: any length; query strings, fragments and non-URLs are a
 * send_error (exit 78 unless opted out), never a truncated endpoint. */
static void test_url_checks(void)
{
	static const struct {
		const char *url;
		const char *err; /* NULL: usable */
	} rows[] = {
	    {"https://space.langbot.app", NULL},
	    {"HTTP://127.0.0.1:8080/base", NULL},
	    {"https://user:pw@host/p", NULL},
	    {"https://space.langbot.app/?x=1", "query string or a fragment"},
	    {"https://space.langbot.app/base#frag",
	     "query string or a fragment"},
	    {"https://h/p?", "query string"},
	    {"ftp://h", "must start with http:// or https://"},
	    {"space.langbot.app", "must start with http://"},
	    {"12345", "must start with http://"},
	    {"https://@", "no host"},
	    {"https://:80/x", "no host"},
	    {"https://u:p@/x", "no host"},
	    {"https://h /x", "a space or a control character"},
	    {"https://h/\tx", "a space or a control character"},
	};
	char err[512], text[300], e2[1500];
	tsu_config cfg;

	clear_env();
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		err[0] = '\0';
		int rc = tsu_url_check(rows[i].url, err, sizeof err);
		ASSERT_EQ(rc, rows[i].err ? -1 : 0);
		if (rows[i].err)
			ASSERT_CONTAINS(err, rows[i].err);
		ASSERT_NOT_CONTAINS(err, "pw");
		/* And through the config: loaded, but nothing can be sent. */
		snprintf(text, sizeof text, "space:\n  url: '%s'\n",
			 rows[i].url);
		ASSERT_EQ(load_text(text, &cfg, e2, sizeof e2), 0);
		if (rows[i].err)
			ASSERT_CONTAINS(cfg.send_error, rows[i].err);
		else
			ASSERT_STREQ(cfg.send_error, "");
		tsu_config_free(&cfg);
	}
	/* A list or mapping: not a load failure (opt-out still counts). */
	ASSERT_EQ(load_text("space:\n  url: [a]\n  disable_telemetry: true\n",
			    &cfg, e2, sizeof e2),
		  0);
	ASSERT_EQ(cfg.disable_telemetry, 1);
	ASSERT_CONTAINS(cfg.send_error, "space.url must be a string");
	tsu_config_free(&cfg);
	ASSERT_EQ(load_text("space:\n  url: {a: b}\n", &cfg, e2, sizeof e2), 0);
	ASSERT_CONTAINS(cfg.send_error, "space.url must be a string");
	tsu_config_free(&cfg);

	/* Any length: a 100 KB URL is kept whole. */
	{
		size_t n = 100000;
		char *big = malloc(n + 64);
		if (!big)
			exit(2);
		strcpy(big, "space:\n  url: http://h/");
		size_t h = strlen(big);
		memset(big + h, 'a', n);
		strcpy(big + h + n, "\n");
		ASSERT_EQ(load_text(big, &cfg, e2, sizeof e2), 0);
		ASSERT_EQ(strlen(cfg.space_url), strlen("http://h/") + n);
		ASSERT_STREQ(cfg.send_error, "");
		tsu_config_free(&cfg);
		free(big);
	}

	/* A bad SPACE__URL is named as such: the file may be fine. */
	setenv("SPACE__URL", "https://h/?x", 1);
	ASSERT_EQ(load_text("space:\n  url: https://ok\n", &cfg, e2, sizeof e2),
		  0);
	ASSERT_CONTAINS(cfg.send_error, "SPACE__URL");
	ASSERT_CONTAINS(cfg.send_error, "query string");
	tsu_config_free(&cfg);
	clear_env();

	/* Redaction for display. */
	static const struct {
		const char *in, *out;
	} red[] = {
	    {"https://user:secret@host/p", "https://user:***@host/p"},
	    /* A user name alone is often the credential (a token). */
	    {"https://user@host/p", "https://***@host/p"},
	    {"https://tok%40en@host", "https://***@host"},
	    {"https://u:p@x@host:1/p@q", "https://u:***@host:1/p@q"},
	    {"https://host/a:b@c", "https://host/a:b@c"},
	    {"http://:pw@h", "http://:***@h"},
	    {"no scheme:pw@h", "no scheme:pw@h"},
	};
	for (size_t i = 0; i < sizeof red / sizeof red[0]; i++) {
		char *r = tsu_url_redacted(red[i].in);
		ASSERT_STREQ(r, red[i].out);
		free(r);
	}
}

/* LANGBOT_TELEMETRY_INGEST_TOKEN and the proxy settings. */
static void test_token_and_proxy(void)
{
	static const char *const proxy_env[] = {
	    "http_proxy",
	    "HTTP_PROXY",
	    "https_proxy",
	    "HTTPS_PROXY",
	    "all_proxy",
	    "ALL_PROXY",
	    "no_proxy",
	    "NO_PROXY",
	    "PROXY__HTTP",
	    "PROXY__HTTPS",
	    "LANGBOT_TELEMETRY_INGEST_TOKEN"};
	const char *https = "space:\n  url: https://space\n"
			    "proxy:\n  http: 'http://cfg-http:1'\n"
			    "  https: 'http://cfg-https:2'\n";
	const char *http_noproxy = "space:\n  url: http://space\n"
				   "proxy:\n  http: ''\n  https: ''\n";
	tsu_config cfg;
	char err[1500];

	clear_env();
	for (size_t i = 0; i < sizeof proxy_env / sizeof proxy_env[0]; i++)
		unsetenv(proxy_env[i]);

	/* Token: Python strip(), then no control or non-ASCII character. */
	setenv("LANGBOT_TELEMETRY_INGEST_TOKEN", " \ttok-123\n", 1);
	ASSERT_EQ(load_text(http_noproxy, &cfg, err, sizeof err), 0);
	ASSERT_STREQ(cfg.token, "tok-123");
	ASSERT_STREQ(cfg.send_error, "");
	tsu_config_free(&cfg);
	setenv("LANGBOT_TELEMETRY_INGEST_TOKEN", "  \n", 1);
	ASSERT_EQ(load_text(http_noproxy, &cfg, err, sizeof err), 0);
	ASSERT_TRUE(cfg.token == NULL);
	tsu_config_free(&cfg);
	setenv("LANGBOT_TELEMETRY_INGEST_TOKEN", "tok\r\nX-Evil: 1", 1);
	ASSERT_EQ(load_text(http_noproxy, &cfg, err, sizeof err), 0);
	ASSERT_CONTAINS(cfg.send_error, "LANGBOT_TELEMETRY_INGEST_TOKEN");
	ASSERT_CONTAINS(cfg.send_error, "control character");
	ASSERT_NOT_CONTAINS(cfg.send_error, "tok");
	tsu_config_free(&cfg);
	setenv("LANGBOT_TELEMETRY_INGEST_TOKEN", "t\xc3\xa9", 1);
	ASSERT_EQ(load_text(http_noproxy, &cfg, err, sizeof err), 0);
	ASSERT_CONTAINS(cfg.send_error, "non-ASCII");
	tsu_config_free(&cfg);
	/* With no URL nothing is sent, so nothing is wrong. */
	ASSERT_EQ(load_text("space:\n  url: ''\n", &cfg, err, sizeof err), 0);
	ASSERT_STREQ(cfg.send_error, "");
	tsu_config_free(&cfg);
	unsetenv("LANGBOT_TELEMETRY_INGEST_TOKEN");

	/* The config's proxy for the URL's scheme wins over the env. */
	setenv("HTTPS_PROXY", "http://env-https:3", 1);
	ASSERT_EQ(load_text(https, &cfg, err, sizeof err), 0);
	ASSERT_STREQ(cfg.proxy, "http://cfg-https:2");
	ASSERT_STREQ(cfg.proxy_from, "proxy.https");
	tsu_config_free(&cfg);
	setenv("PROXY__HTTPS", "http://langbot-env:4", 1);
	ASSERT_EQ(load_text(https, &cfg, err, sizeof err), 0);
	ASSERT_STREQ(cfg.proxy, "http://langbot-env:4");
	tsu_config_free(&cfg);
	unsetenv("PROXY__HTTPS");
	/* Empty in the config: the environment, upper or lower case. */
	ASSERT_EQ(load_text("space:\n  url: https://s\nproxy:\n  https: ''\n",
			    &cfg, err, sizeof err),
		  0);
	ASSERT_STREQ(cfg.proxy, "http://env-https:3");
	ASSERT_STREQ(cfg.proxy_from, "HTTPS_PROXY");
	tsu_config_free(&cfg);
	setenv("https_proxy", "http://lower:5", 1);
	ASSERT_EQ(
	    load_text("space:\n  url: https://s\n", &cfg, err, sizeof err), 0);
	ASSERT_STREQ(cfg.proxy, "http://lower:5");
	tsu_config_free(&cfg);
	unsetenv("https_proxy");
	unsetenv("HTTPS_PROXY");

	/* http:// uses proxy.http / HTTP_PROXY (which libcurl would not). */
	setenv("HTTP_PROXY", "http://upper-http:6", 1);
	setenv("NO_PROXY", "localhost,.internal", 1);
	ASSERT_EQ(load_text(http_noproxy, &cfg, err, sizeof err), 0);
	ASSERT_STREQ(cfg.proxy, "http://upper-http:6");
	ASSERT_STREQ(cfg.noproxy, "localhost,.internal");
	tsu_config_free(&cfg);
	setenv("ALL_PROXY", "socks5://all:7", 1);
	unsetenv("HTTP_PROXY");
	ASSERT_EQ(load_text(http_noproxy, &cfg, err, sizeof err), 0);
	ASSERT_STREQ(cfg.proxy, "socks5://all:7");
	tsu_config_free(&cfg);
	unsetenv("ALL_PROXY");
	unsetenv("NO_PROXY");
	ASSERT_EQ(load_text(http_noproxy, &cfg, err, sizeof err), 0);
	ASSERT_STREQ(cfg.proxy, "");
	ASSERT_STREQ(cfg.noproxy, "");
	tsu_config_free(&cfg);
	/* A proxy with a line break is an error naming where it came from. */
	setenv("HTTP_PROXY", "http://p:1\r\nX: y", 1);
	ASSERT_EQ(load_text(http_noproxy, &cfg, err, sizeof err), 0);
	ASSERT_CONTAINS(cfg.send_error, "HTTP_PROXY");
	tsu_config_free(&cfg);
	unsetenv("HTTP_PROXY");
	/* A proxy section that is no mapping is not the uploader's concern. */
	ASSERT_EQ(load_text("space:\n  url: http://s\nproxy: ''\n", &cfg, err,
			    sizeof err),
		  0);
	ASSERT_STREQ(cfg.proxy, "");
	tsu_config_free(&cfg);
	ASSERT_EQ(load_text("space:\n  url: http://s\nproxy:\n  http: [a]\n",
			    &cfg, err, sizeof err),
		  0);
	ASSERT_CONTAINS(cfg.send_error, "proxy.http must be a string");
	tsu_config_free(&cfg);
}

/* What a rewrite during a run is compared on: the settings it sends with,
 * not LangBot's other keys. */
static void test_same_sending(void)
{
	const char *base = "space:\n  url: https://space/\n"
			   "  disable_telemetry: false\n"
			   "proxy:\n  https: 'http://p:1'\n"
			   "system:\n  instance_id: a\n"
			   "concurrency:\n  pipeline: 20\n";
	static const struct {
		const char *text;
		int same;
	} cases[] = {
	    /* LangBot's own keys, key order, comments, the trailing '/'. */
	    {"# rewritten\nconcurrency:\n  pipeline: 21\n"
	     "system:\n  instance_id: b\n"
	     "proxy:\n  https: 'http://p:1'\n"
	     "space:\n  disable_telemetry: false\n  url: https://space\n",
	     1},
	    {"space:\n  url: https://other\n  disable_telemetry: false\n"
	     "proxy:\n  https: 'http://p:1'\n",
	     0},
	    {"space:\n  url: https://space\n  disable_telemetry: false\n"
	     "proxy:\n  https: 'http://p:2'\n",
	     0},
	    {"space:\n  url: https://space\n  disable_telemetry: true\n"
	     "proxy:\n  https: 'http://p:1'\n",
	     0},
	    /* A partial file: no space section, nothing to send. */
	    {"proxy:\n  https: 'http://p:1'\n", 0},
	    {"space:\n  url: 'https://space x'\n"
	     "proxy:\n  https: 'http://p:1'\n",
	     0},
	};
	tsu_config a, b;
	char err[1500];

	clear_env();
	unsetenv("HTTPS_PROXY");
	unsetenv("https_proxy");
	unsetenv("LANGBOT_TELEMETRY_INGEST_TOKEN");
	ASSERT_EQ(load_text(base, &a, err, sizeof err), 0);
	ASSERT_EQ(tsu_config_same_sending(&a, &a), 1);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		ASSERT_EQ(load_text(cases[i].text, &b, err, sizeof err), 0);
		ASSERT_EQ(tsu_config_same_sending(&a, &b), cases[i].same);
		ASSERT_EQ(tsu_config_same_sending(&b, &a), cases[i].same);
		tsu_config_free(&b);
	}
	/* The token comes from the environment: another one sends
	 * differently. */
	setenv("LANGBOT_TELEMETRY_INGEST_TOKEN", "tok-2", 1);
	ASSERT_EQ(load_text(base, &b, err, sizeof err), 0);
	ASSERT_EQ(tsu_config_same_sending(&a, &b), 0);
	tsu_config_free(&b);
	unsetenv("LANGBOT_TELEMETRY_INGEST_TOKEN");
	tsu_config_free(&a);
}

static void test_instance_id(void)
{
	const char *with_id = "system:\n  instance_id: from-config\n";
	const char *without = "system:\n  instance_id: ''\n";
	char data[1024], labels[1100], file[1200], p[1024];
	tsu_config cfg;
	char err[1500];

	clear_env();
	path_of(data, sizeof data, "data");
	snprintf(labels, sizeof labels, "%s/labels", data);
	snprintf(file, sizeof file, "%s/instance_id.json", labels);
	ASSERT_TRUE(mkdir(data, 0700) == 0);
	ASSERT_TRUE(mkdir(labels, 0700) == 0);
	put("data/labels/instance_id.json",
	    "{\"instance_id\": "
	    "\"instance_3f2b8c1e-9d4a-4e6b-8f0c-1a2b3c4d5e6f\","
	    " \"instance_create_ts\": 1720000000}");
	path_of(p, sizeof p, "config.yaml");

	/* The config wins over the labels file. */
	put("config.yaml", with_id);
	ASSERT_EQ(tsu_config_load(&cfg, p, data, err, sizeof err), 0);
	ASSERT_STREQ(cfg.instance_id, "from-config");
	tsu_config_free(&cfg);

	put("config.yaml", without);
	ASSERT_EQ(tsu_config_load(&cfg, p, data, err, sizeof err), 0);
	ASSERT_STREQ(cfg.instance_id,
		     "instance_3f2b8c1e-9d4a-4e6b-8f0c-1a2b3c4d5e6f");
	tsu_config_free(&cfg);

	/* An empty SYSTEM__INSTANCE_ID empties the key: labels speak. */
	setenv("SYSTEM__INSTANCE_ID", "", 1);
	put("config.yaml", with_id);
	ASSERT_EQ(tsu_config_load(&cfg, p, data, err, sizeof err), 0);
	ASSERT_STREQ(cfg.instance_id,
		     "instance_3f2b8c1e-9d4a-4e6b-8f0c-1a2b3c4d5e6f");
	tsu_config_free(&cfg);
	clear_env();

	/* No data_dir, or an empty one: no labels. */
	put("config.yaml", without);
	ASSERT_EQ(tsu_config_load(&cfg, p, NULL, err, sizeof err), 0);
	ASSERT_STREQ(cfg.instance_id, "");
	tsu_config_free(&cfg);
	ASSERT_EQ(tsu_config_load(&cfg, p, "", err, sizeof err), 0);
	ASSERT_STREQ(cfg.instance_id, "");
	tsu_config_free(&cfg);

	/* Broken labels files are not errors; the id just stays "". */
	static const char *const broken[] = {
	    "",
	    "{",
	    "not json",
	    "[\"instance_x\"]",
	    "{\"instance_id\": 42}",
	    "{\"instance_id\": null}",
	    "{\"instance_id\": \"\"}",
	    "{\"id\": \"instance_x\"}",
	};
	for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
		put("data/labels/instance_id.json", broken[i]);
		put("config.yaml", without);
		ASSERT_EQ(tsu_config_load(&cfg, p, data, err, sizeof err), 0);
		ASSERT_STREQ(cfg.instance_id, "");
		tsu_config_free(&cfg);
	}
	/* Missing file, and a directory where the file should be. */
	ASSERT_TRUE(unlink(file) == 0);
	ASSERT_EQ(tsu_config_load(&cfg, p, data, err, sizeof err), 0);
	ASSERT_STREQ(cfg.instance_id, "");
	tsu_config_free(&cfg);
	ASSERT_TRUE(mkdir(file, 0700) == 0);
	ASSERT_EQ(tsu_config_load(&cfg, p, data, err, sizeof err), 0);
	ASSERT_STREQ(cfg.instance_id, "");
	tsu_config_free(&cfg);
	ASSERT_TRUE(rmdir(file) == 0);
	path_of(data, sizeof data, "no-such-dir");
	ASSERT_EQ(tsu_config_load(&cfg, p, data, err, sizeof err), 0);
	ASSERT_STREQ(cfg.instance_id, "");
	tsu_config_free(&cfg);
}

static void test_syntax_errors(void)
{
	clear_env();
	/* Positions are 1-based; libyaml's marks are 0-based. */
	expect_error(__LINE__, "api:\n  x: [unclosed\nspace: {}\n",
		     ":3:6: did not find expected ',' or ']' (while parsing a "
		     "flow sequence at line 2)");
	expect_error(__LINE__, "space:\n  url: 'unterminated\n",
		     "found unexpected end of stream");
	expect_error(__LINE__, "space:\n  url: a\n bad: indent\n", ":3:");
	expect_error(__LINE__, "a: b\n\tc: d\n", ":2:");
	expect_error(__LINE__, "space: {url: a\n", "did not find expected");
	expect_error(
	    __LINE__, "a: *\n",
	    ":1:5: did not find expected alphabetic or numeric character");
	expect_error(__LINE__, "key: \"\\q\"\n", ":1:");
	expect_error(__LINE__, "%YAML 2.0\n---\na: b\n",
		     "incompatible YAML document");
	expect_error(__LINE__, "a: b\n\x01\n",
		     ":2:1: control characters are not allowed");
}

static void test_shape_errors(void)
{
	clear_env();
	expect_error(__LINE__, "", "config.yaml: is empty");
	expect_error(__LINE__, "# only a comment\n\n", "is empty");
	expect_error(__LINE__, "---\n", "is empty");
	expect_error(__LINE__, "~\n", "is empty");
	expect_error(__LINE__, "- a\n- b\n",
		     ":1:1: top level must be a mapping, not a sequence");
	expect_error(__LINE__, "hello\n",
		     ":1:1: top level must be a mapping, not a scalar");
	expect_error(__LINE__, "'space'\n", "top level must be a mapping");
	expect_error(__LINE__, "a: b\n---\nc: d\n",
		     ":2:1: more than one YAML document");

	expect_error(__LINE__, "space: [1, 2]\n",
		     ":1:8: space must be a mapping, not a sequence");
	expect_error(__LINE__, "space: 5\n",
		     ":1:8: space must be a mapping, not a scalar");
	expect_error(__LINE__, "space: ''\n", "space must be a mapping");
	expect_error(__LINE__, "system: [1]\n",
		     ":1:9: system must be a mapping");
	expect_error(__LINE__, "system:\n  instance_id: [a]\n",
		     ":2:16: system.instance_id must be a scalar");
	expect_error(__LINE__, "space:\n  url: \"http://a\\0b\"\n",
		     ":2:8: space.url contains a NUL");

	/* What LangBot would expand and we will not: refuse, never guess. */
	expect_error(__LINE__, "x: &u http://a\nspace:\n  url: *u\n",
		     ":3:8: space.url is an alias");
	expect_error(__LINE__, "x: &t true\nspace:\n  disable_telemetry: *t\n",
		     ":3:22: space.disable_telemetry is an alias");
	expect_error(__LINE__, "x: &s {url: a}\nspace: *s\n",
		     ":2:8: space is an alias");
	expect_error(__LINE__,
		     "x: &s {disable_telemetry: true}\nspace:\n  <<: *s\n",
		     ":3:3: space uses a merge key");
	expect_error(__LINE__, "x: &s {space: {url: a}}\n<<: *s\n",
		     ":2:1: merge key (<<) at the top level");
	expect_error(__LINE__, "x: &k space\n*k : {url: a}\n",
		     ":2:1: alias as a top-level key");
	expect_error(__LINE__, "x: &k url\nspace:\n  *k : a\n",
		     ":3:3: space has an alias as a key");
}

static void test_aliases_elsewhere(void)
{
	tsu_config cfg;
	char err[1500];

	clear_env();
	/* Aliases, even undefined ones, are fine where we do not look. */
	ASSERT_EQ(load_text("a: &x [1, 2]\nb: *x\nc: *undefined\n"
			    "d: {<<: *x, e: f}\n\"<<\": quoted-is-a-plain-key\n"
			    "space:\n  other: *x\n  url: http://ok\n",
			    &cfg, err, sizeof err),
		  0);
	ASSERT_STREQ(cfg.space_url, "http://ok");
	tsu_config_free(&cfg);
}

/* The "billion laughs": aliases are never expanded, so it is tiny. */
static void test_yaml_bomb(void)
{
	static const char bomb[] =
	    "a: &a "
	    "[\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\","
	    "\"lol\"]\n"
	    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
	    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
	    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
	    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
	    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
	    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
	    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
	    "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
	    "space:\n  url: http://after-the-bomb/\n  extra: *i\n";
	tsu_config cfg;
	char err[1500];
	double t0 = now_s();

	clear_env();
	ASSERT_EQ(load_text(bomb, &cfg, err, sizeof err), 0);
	ASSERT_STREQ(cfg.space_url, "http://after-the-bomb");
	tsu_config_free(&cfg);
	ASSERT_TRUE(now_s() - t0 < 1.0);

	expect_error(__LINE__,
		     "a: &a [x, x, x, x, x, x, x, x, x]\n"
		     "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
		     "space:\n  url: *b\n",
		     ":4:8: space.url is an alias");
}

static char *repeat(const char *head, char open, size_t n, char close,
		    const char *tail)
{
	size_t h = strlen(head), t = strlen(tail);
	char *s = malloc(h + 2 * n + t + 1);

	if (!s)
		exit(2);
	memcpy(s, head, h);
	memset(s + h, open, n);
	memset(s + h + n, close, n);
	memcpy(s + h + 2 * n, tail, t + 1);
	return s;
}

static void test_depth(void)
{
	tsu_config cfg;
	char err[1500];
	char *s;
	double t0 = now_s();

	clear_env();
	/* The top mapping is level 1: 63 more levels fit, 64 do not. */
	s = repeat("a: ", '[', TSU_CONFIG_MAX_DEPTH - 1, ']',
		   "\nspace: {url: http://deep}\n");
	ASSERT_EQ(load_text(s, &cfg, err, sizeof err), 0);
	ASSERT_STREQ(cfg.space_url, "http://deep");
	tsu_config_free(&cfg);
	free(s);

	s = repeat("a: ", '[', TSU_CONFIG_MAX_DEPTH, ']', "\n");
	expect_error(__LINE__, s, ":1:67: nesting deeper than 64 levels");
	free(s);

	s = repeat("a: ", '[', 10000, ']', "\n");
	expect_error(__LINE__, s, "nesting deeper than 64 levels");
	free(s);
	s = repeat("space:\n  x: ", '{', 10000, '}', "\n");
	expect_error(__LINE__, s, "nesting deeper than 64 levels");
	free(s);
	s = repeat("", '[', 10000, ']', "\n");
	expect_error(__LINE__, s, "top level must be a mapping");
	free(s);
	/* Unbalanced: the bound hits before the missing ']' matters. */
	s = repeat("a: ", '[', 10000, ' ', "\n");
	expect_error(__LINE__, s, "nesting deeper than 64 levels");
	free(s);

	/* Block style nesting, as a hand-edited file would have it. */
	{
		size_t cap = 200000, len = 0;
		char *b = malloc(cap);
		if (!b)
			exit(2);
		for (int lvl = 0; lvl < 100; lvl++) {
			len += (size_t)snprintf(b + len, cap - len, "%*sk:\n",
						lvl, "");
		}
		len += (size_t)snprintf(b + len, cap - len, "%*sv\n", 100, "");
		expect_error(__LINE__, b, ":65:");
		free(b);
	}
	ASSERT_TRUE(now_s() - t0 < 5.0);
}

static void test_sizes(void)
{
	size_t big = 5 * 1024 * 1024;
	char *buf = malloc(big);
	char p[1024], err[1500];
	tsu_config cfg;
	static const char head[] = "space:\n  url: http://big\n";

	clear_env();
	if (!buf)
		exit(2);
	/* Valid YAML throughout: only the size is wrong. */
	memset(buf, '#', big);
	for (size_t i = 79; i < big; i += 80)
		buf[i] = '\n';
	memcpy(buf, head, sizeof head - 1);
	path_of(p, sizeof p, "big.yaml");
	write_bytes(p, buf, big);
	ASSERT_EQ(tsu_config_load(&cfg, p, NULL, err, sizeof err), -1);
	ASSERT_CONTAINS(err, p);
	ASSERT_CONTAINS(err, "larger than 4194304 bytes");
	ASSERT_TRUE(cfg.space_url == NULL);
	ASSERT_EQ(tsu_config_parse(&cfg, "buf", buf, big, err, sizeof err), -1);
	ASSERT_CONTAINS(err, "buf: larger than");

	/* Exactly the limit is accepted. */
	buf[TSU_CONFIG_MAX_BYTES - 1] = '\n';
	write_bytes(p, buf, TSU_CONFIG_MAX_BYTES);
	ASSERT_EQ(tsu_config_load(&cfg, p, NULL, err, sizeof err), 0);
	ASSERT_STREQ(cfg.space_url, "http://big");
	tsu_config_free(&cfg);
	write_bytes(p, buf, TSU_CONFIG_MAX_BYTES + 1);
	ASSERT_EQ(tsu_config_load(&cfg, p, NULL, err, sizeof err), -1);
	ASSERT_CONTAINS(err, "larger than");
	free(buf);
}

/* UTF-8 text to UTF-16 with a BOM; ASCII only, which is all we write. */
static size_t to_utf16(const char *s, unsigned char *out, int big_endian)
{
	size_t n = 0;

	out[n++] = big_endian ? 0xfe : 0xff;
	out[n++] = big_endian ? 0xff : 0xfe;
	for (; *s; s++) {
		out[n++] = big_endian ? 0 : (unsigned char)*s;
		out[n++] = big_endian ? (unsigned char)*s : 0;
	}
	return n;
}

static void test_encodings(void)
{
	static const char text[] = "api:\n  port: 5300\nspace:\n"
				   "  url: http://utf16/\n"
				   "  disable_telemetry: on\n";
	unsigned char buf[512];
	char p[1024], err[1500];
	tsu_config cfg;
	size_t n;

	clear_env();
	path_of(p, sizeof p, "utf16.yaml");
	for (int be = 0; be <= 1; be++) {
		n = to_utf16(text, buf, be);
		write_bytes(p, buf, n);
		ASSERT_EQ(tsu_config_load(&cfg, p, NULL, err, sizeof err), 0);
		ASSERT_STREQ(cfg.space_url, "http://utf16");
		ASSERT_EQ(cfg.disable_telemetry, 1);
		tsu_config_free(&cfg);
	}
	/* A UTF-16 file with a broken surrogate fails with a byte offset. */
	n = to_utf16(text, buf, 0);
	buf[n++] = 0x00;
	buf[n++] = 0xdc; /* lone low surrogate */
	write_bytes(p, buf, n);
	ASSERT_EQ(tsu_config_load(&cfg, p, NULL, err, sizeof err), -1);
	ASSERT_CONTAINS(err, p);
	ASSERT_CONTAINS(err, "surrogate");

	/* A UTF-8 BOM is fine. */
	ASSERT_EQ(load_text("\xef\xbb\xbfspace:\n  url: http://bom\n", &cfg,
			    err, sizeof err),
		  0);
	ASSERT_STREQ(cfg.space_url, "http://bom");
	tsu_config_free(&cfg);

	/* Invalid UTF-8 on line 3: the reader's error, with that line. */
	expect_error(__LINE__,
		     "api:\n  port: 5300\nspace: {url: \"\xff\xfe\"}\n",
		     ":3:15: invalid leading UTF-8 octet");
	expect_error(__LINE__, "a: b\nc: \xc3\x28\n",
		     ":2:5: invalid trailing UTF-8 octet");
	expect_error(__LINE__, "a: \xc3\xa9\xc3\xa9 \xff\n",
		     ":1:7: invalid leading UTF-8 octet");
	expect_error(__LINE__, "a: b\r\nc: d\rx: \xff\n",
		     ":3:4: invalid leading UTF-8 octet");
	expect_error(__LINE__, "a: \xed\xa0\x80\n",
		     "invalid Unicode character");
	expect_error(__LINE__, "a: b\xc3", "incomplete UTF-8 octet sequence");

	/* An embedded NUL byte is a control character to libyaml. */
	ASSERT_EQ(tsu_config_parse(&cfg, "nul.yaml", "a: b\n\0c: d\n", 11, err,
				   sizeof err),
		  -1);
	ASSERT_CONTAINS(err,
			"nul.yaml:2:1: control characters are not allowed");
}

static void test_file_errors(void)
{
	char p[1024], err[1500];
	tsu_config cfg;

	clear_env();
	path_of(p, sizeof p, "does-not-exist.yaml");
	ASSERT_EQ(tsu_config_load(&cfg, p, NULL, err, sizeof err), -1);
	ASSERT_CONTAINS(err, p);
	ASSERT_CONTAINS(err, strerror(ENOENT));
	ASSERT_TRUE(cfg.space_url == NULL && cfg.instance_id == NULL);

	ASSERT_EQ(tsu_config_load(&cfg, g_dir, NULL, err, sizeof err), -1);
	ASSERT_CONTAINS(err, g_dir);
	ASSERT_CONTAINS(err, strerror(EISDIR));

	/* A FIFO must be refused, not waited on. */
	path_of(p, sizeof p, "fifo.yaml");
	ASSERT_TRUE(mkfifo(p, 0600) == 0);
	ASSERT_EQ(tsu_config_load(&cfg, p, NULL, err, sizeof err), -1);
	ASSERT_CONTAINS(err, "not a regular file");

	/* A symlink to a config is followed. */
	{
		char link[1024];
		put("real.yaml", "space: {url: http://linked}\n");
		path_of(p, sizeof p, "real.yaml");
		path_of(link, sizeof link, "link.yaml");
		ASSERT_TRUE(symlink(p, link) == 0);
		ASSERT_EQ(tsu_config_load(&cfg, link, NULL, err, sizeof err),
			  0);
		ASSERT_STREQ(cfg.space_url, "http://linked");
		tsu_config_free(&cfg);
	}

	/* Odd arguments. */
	ASSERT_EQ(tsu_config_load(&cfg, NULL, NULL, err, sizeof err), -1);
	ASSERT_EQ(tsu_config_load(&cfg, p, NULL, NULL, 0), 0);
	tsu_config_free(&cfg);
	ASSERT_EQ(tsu_config_parse(&cfg, NULL, "[", 1, err, sizeof err), -1);
	ASSERT_CONTAINS(err, "config:");
	ASSERT_EQ(tsu_config_parse(&cfg, "x", NULL, 0, err, sizeof err), -1);
	ASSERT_CONTAINS(err, "x: is empty");
	{
		char tiny[12];
		ASSERT_EQ(tsu_config_parse(&cfg, "long-name.yaml", "[", 1, tiny,
					   sizeof tiny),
			  -1);
		ASSERT_EQ(strlen(tiny), sizeof tiny - 1);
	}
}

/*
 * Root reads anything, so the check runs in a child that drops to
 * "nobody".  The child first proves it can read a public file next to the
 * secret one, so EACCES cannot come from a parent directory instead.
 * Where that is impossible the check is skipped, with a note.
 */
static void test_permission_denied(void)
{
	char p[1024], pub[1024];
	pid_t pid;
	int status;

	clear_env();
	put("public.yaml", "space: {url: http://public}\n");
	path_of(pub, sizeof pub, "public.yaml");
	put("secret.yaml", "space: {url: http://x}\n");
	path_of(p, sizeof p, "secret.yaml");
	ASSERT_TRUE(chmod(pub, 0644) == 0);
	ASSERT_TRUE(chmod(p, 0) == 0);
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		tsu_config cfg;
		char err[1500];
		int rc;

		if (geteuid() == 0) {
			if (chmod(g_dir, 0711) != 0 || setgid(65534) != 0 ||
			    setuid(65534) != 0)
				_exit(77);
		}
		if (tsu_config_load(&cfg, pub, NULL, err, sizeof err) != 0)
			_exit(78);
		tsu_config_free(&cfg);
		rc = tsu_config_load(&cfg, p, NULL, err, sizeof err);
		if (rc == 0)
			tsu_config_free(&cfg);
		if (rc == -1 && strstr(err, p) && strstr(err, strerror(EACCES)))
			_exit(0);
		fprintf(stderr, "  permission check: rc %d \"%s\"\n", rc, err);
		_exit(1);
	}
	ASSERT_TRUE(pid > 0);
	ASSERT_TRUE(waitpid(pid, &status, 0) == pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
		printf("note: permission-denied check skipped "
		       "(running as root and cannot switch to uid 65534)\n");
	} else if (WIFEXITED(status) && WEXITSTATUS(status) == 78) {
		printf("note: permission-denied check skipped "
		       "(uid 65534 cannot reach %s)\n",
		       g_dir);
	} else {
		ASSERT_EQ(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 0);
	}
	ASSERT_TRUE(chmod(g_dir, 0700) == 0);
}

static const struct tu_test tests[] = {
    {"langbot_config", test_langbot_config},
    {"missing_keys", test_missing_keys},
    {"bools", test_bools},
    {"optout_matrix", test_optout_matrix},
    {"urls", test_urls},
    {"duplicates", test_duplicates},
    {"env", test_env},
    {"py_strip", test_py_strip},
    {"url_checks", test_url_checks},
    {"token_and_proxy", test_token_and_proxy},
    {"same_sending", test_same_sending},
    {"instance_id", test_instance_id},
    {"syntax_errors", test_syntax_errors},
    {"shape_errors", test_shape_errors},
    {"aliases_elsewhere", test_aliases_elsewhere},
    {"yaml_bomb", test_yaml_bomb},
    {"depth", test_depth},
    {"sizes", test_sizes},
    {"encodings", test_encodings},
    {"file_errors", test_file_errors},
    {"permission_denied", test_permission_denied},
};

int main(int argc, char **argv)
{
	make_temp_dir(g_dir, sizeof g_dir, "tsu-config");
	return tu_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv,
		       g_dir);
}
