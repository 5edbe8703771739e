/*
 * config.h - what the uploader needs from LangBot's data/config.yaml.
 *
 * Read with libyaml's event parser (aliases are never expanded, nesting and
 * size are bounded), then LangBot's environment overrides are applied:
 * SPACE__URL, SPACE__DISABLE_TELEMETRY (true/1/yes/on in any case is true,
 * anything else false) and SYSTEM__INSTANCE_ID.
 */
#ifndef TSU_CONFIG_H
#define TSU_CONFIG_H

#include <stddef.h>

#define TSU_CONFIG_MAX_BYTES (4 * 1024 * 1024) /* larger files are refused */
#define TSU_CONFIG_MAX_DEPTH 64                /* deeper nesting is refused */

typedef struct tsu_config {
	char *space_url; /* trailing '/' stripped; "" when empty or missing */
	int disable_telemetry; /* non-zero: opted out */
	char *
	    instance_id; /* system.instance_id, else labels/instance_id.json, else "" */
	const char *url_from; /* "config", "env" or "default" (static text) */
	const char
	    *disabled_from; /* "config", "env" or "default" (static text) */
} tsu_config;

/*
 * Loads config_path (and data_dir/labels/instance_id.json when
 * system.instance_id is empty; data_dir may be NULL), then applies the
 * environment overrides.  A missing space.url or space.disable_telemetry is
 * not an error (defaults "" and false).  Returns 0, or -1 with a one-line
 * message in err naming the file and, when known, the line and column: the
 * file is missing, unreadable, too large, not valid YAML, not a mapping at
 * the top, or a key has the wrong type (e.g. space.url is a list).  On
 * failure *cfg holds nothing to free.
 */
int tsu_config_load(tsu_config *cfg, const char *config_path,
		    const char *data_dir, char *err, size_t errlen);

/* Same as tsu_config_load() but from a buffer (env overrides applied, the
 * labels file not read); name is used in messages. */
int tsu_config_parse(tsu_config *cfg, const char *name, const char *buf,
		     size_t len, char *err, size_t errlen);

/* Applies the SPACE__* / SYSTEM__* environment overrides to cfg. Returns 0 or -1 (out of memory). */
int tsu_config_apply_env(tsu_config *cfg);

/* LangBot's boolean rule: true, 1, yes, on (any case) are true. NULL is false. */
int tsu_env_bool(const char *v);

void tsu_config_free(tsu_config *cfg);

#endif
