/*
 * fuzz_config.c - libFuzzer target: tsu_config_parse() on arbitrary bytes.
 *
 * The config file is the user's and may be hostile or corrupt; whatever it
 * holds, parsing must end quickly, leak nothing, and either fail with a
 * message or give a config that keeps the documented promises.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* The input alone must decide the outcome. */
	unsetenv("SPACE__URL");
	unsetenv("SPACE__DISABLE_TELEMETRY");
	unsetenv("SYSTEM__INSTANCE_ID");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tsu_config cfg;
	char err[256];
	size_t n;

	if (tsu_config_parse(&cfg, "fuzz.yaml", (const char *)data, size, err,
			     sizeof err) != 0) {
		/* Failure: a message, and nothing for the caller to free. */
		if (err[0] == '\0' || cfg.space_url || cfg.instance_id)
			abort();
		return 0;
	}
	if (!cfg.space_url || !cfg.instance_id || !cfg.url_from ||
	    !cfg.disabled_from)
		abort();
	n = strlen(cfg.space_url);
	if (n > 0 && cfg.space_url[n - 1] == '/')
		abort();
	if (cfg.disable_telemetry != 0 && cfg.disable_telemetry != 1)
		abort();
	tsu_config_free(&cfg);
	return 0;
}
