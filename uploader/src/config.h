/*
 * config.h - what the uploader needs from LangBot's data/config.yaml and
 * the environment, decided the way LangBot 4.10.8 decides it.
 *
 * Read with libyaml's event parser (aliases are never expanded, nesting and
 * size are bounded), then LangBot's environment overrides are applied with
 * LangBot's typing (pkg/core/stages/load_config.py): SPACE__URL,
 * SPACE__DISABLE_TELEMETRY, SYSTEM__INSTANCE_ID, PROXY__HTTP, PROXY__HTTPS.
 *
 * Opt-out is Python truthiness, as in LangBot's TelemetryManager.send():
 * space.disable_telemetry as PyYAML reads it (a bool, a number, a string, a
 * list, a mapping; any non-empty string - 'false', 'no', '0' - is true).
 * SPACE__DISABLE_TELEMETRY becomes a bool (true/1/yes/on, any case) only
 * when the file's key holds a bool; otherwise the raw string is stored, so
 * with the key absent, null, a string or a list any non-empty value means
 * disabled.  Beyond LangBot, failing closed: an environment value that is
 * not clearly false (false, 0, no, off in any case, or empty) always means
 * disabled.
 */
#ifndef TSU_CONFIG_H
#define TSU_CONFIG_H

#include <stddef.h>

#define TSU_CONFIG_MAX_BYTES (4 * 1024 * 1024) /* larger files are refused */
#define TSU_CONFIG_MAX_DEPTH 64                /* deeper nesting is refused */

typedef struct tsu_config {
	/* space.url, trailing '/' stripped; "" when empty, missing, or the
	 * space section is null (LangBot then sends nothing).  Holds a
	 * password when the URL has one: show it with tsu_url_redacted(). */
	char *space_url;
	int disable_telemetry; /* non-zero: opted out */
	char *
	    instance_id; /* system.instance_id, else labels/instance_id.json, else "" */
	const char *url_from; /* "config", "env" or "default" (static text) */
	const char
	    *disabled_from; /* "config", "env" or "default" (static text) */

	/* LANGBOT_TELEMETRY_INGEST_TOKEN with Python's str.strip() applied;
	 * NULL when unset or blank.  A credential: never log it. */
	char *token;
	/* The proxy for space_url's scheme: proxy.https / proxy.http from the
	 * config (after PROXY__HTTPS / PROXY__HTTP), else https_proxy,
	 * HTTPS_PROXY, all_proxy, ALL_PROXY (http_proxy, HTTP_PROXY, ... for
	 * an http:// URL); "" for none.  May hold a password. */
	char *proxy;
	const char *proxy_from; /* where proxy came from (static text) */
	char *noproxy;          /* no_proxy, else NO_PROXY; "" for none */

	/*
	 * Why nothing can be sent, "" when something can: space.url is not an
	 * http(s) URL or has a query string or fragment, the token or a proxy
	 * holds a control character.  Not a load failure, because an opt-out
	 * must still be honoured (purged) with such a config; a run that
	 * would send exits 78 with this text instead.
	 */
	char send_error[512];
} tsu_config;

/*
 * Loads config_path (and data_dir/labels/instance_id.json when
 * system.instance_id is empty; data_dir may be NULL), then applies the
 * environment overrides.  A missing space.url or space.disable_telemetry is
 * not an error (defaults "" and false).  Returns 0, or -1 with a one-line
 * message in err naming the file and, when known, the line and column: the
 * file is missing, unreadable, too large, not valid YAML, not a mapping at
 * the top, a section is not a mapping, or a setting is an alias or (for
 * system.instance_id) not a scalar.  On failure *cfg holds nothing to free.
 */
int tsu_config_load(tsu_config *cfg, const char *config_path,
		    const char *data_dir, char *err, size_t errlen);

/* Same as tsu_config_load() but from a buffer (env overrides applied, the
 * labels file not read); name is used in messages. */
int tsu_config_parse(tsu_config *cfg, const char *name, const char *buf,
		     size_t len, char *err, size_t errlen);

/* LangBot's boolean rule for an environment value that overrides a bool:
 * true, 1, yes, on (any case) are true.  NULL is false. */
int tsu_env_bool(const char *v);

/* Whether an environment value clearly says "false": false, 0, no, off in
 * any case, or "".  NULL is not. */
int tsu_env_clearly_false(const char *v);

/*
 * Python's str.strip() on UTF-8 text: *start and *end (exclusive) delimit
 * s[0..len) without the leading and trailing characters str.isspace()
 * accepts (ASCII spaces, \x1c-\x1f, U+0085, U+00A0, U+1680, U+2000-U+200A,
 * U+2028, U+2029, U+202F, U+205F, U+3000).
 */
void tsu_py_strip(const char *s, size_t len, size_t *start, size_t *end);

/*
 * Checks that url is something the uploader can POST to: http:// or
 * https://, a host, no whitespace or control characters, no query string
 * or fragment (endpoints are appended to the path).  Returns 0, or -1 with
 * the reason in err (the URL itself is not repeated: it may hold a
 * password).
 */
int tsu_url_check(const char *url, char *err, size_t errlen);

/* url with the password of its userinfo (scheme://user:PASSWORD@host), or
 * a user name given alone (scheme://TOKEN@host), replaced by "***",
 * malloc'd (NULL when out of memory).  For display. */
char *tsu_url_redacted(const char *url);

/*
 * Whether a and b send the same way: the same opt-out state, space.url,
 * token, proxy, no_proxy and send_error (what a run of the uploader uses).
 * Other keys (LangBot's own settings, the instance id, where a value came
 * from) do not count.  Returns 1 or 0.
 */
int tsu_config_same_sending(const tsu_config *a, const tsu_config *b);

void tsu_config_free(tsu_config *cfg);

#endif
