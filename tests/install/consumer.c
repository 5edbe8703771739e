/*
 * A program built against an installed libtelespool (tests/install): records
 * one query event into the spool named on the command line and checks that
 * telespool_version() is the version expected (the second argument) and the
 * one the header it was compiled with names.  Exit 0 when all is well.
 */
#include <stdio.h>
#include <string.h>

#include <telespool.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s SPOOL EXPECTED_VERSION\n", argv[0]);
		return 2;
	}
	const char *v = telespool_version();
	if (v == NULL || strcmp(v, argv[2]) != 0 ||
	    strcmp(v, TELESPOOL_VERSION_STRING) != 0) {
		fprintf(stderr,
			"telespool_version() is \"%s\"; expected \"%s\" "
			"(header: \"%s\")\n",
			v ? v : "(null)", argv[2], TELESPOOL_VERSION_STRING);
		return 1;
	}

	telespool_options o = TELESPOOL_OPTIONS_INIT;
	o.instance_id = "instance_install_test";
	o.version = "v0.0.0-install-test";
	telespool *sp = NULL;
	int rc = telespool_open(&sp, argv[1], &o);
	if (rc != TELESPOOL_OK) {
		fprintf(stderr, "telespool_open: %s: %s\n",
			telespool_strerror(rc), telespool_open_errmsg());
		return 1;
	}
	const char *plugins[] = {"hello"};
	telespool_query q = TELESPOOL_QUERY_INIT;
	q.query_id = "install-test";
	q.adapter = "TestAdapter";
	q.runner = "local-agent";
	q.model_name = "test-model";
	q.duration_ms = 12;
	q.pipeline_plugins = plugins;
	q.n_pipeline_plugins = 1;
	rc = telespool_record_query(sp, &q);
	if (rc != TELESPOOL_OK) {
		fprintf(stderr, "telespool_record_query: %s: %s\n",
			telespool_strerror(rc), telespool_errmsg(sp));
		telespool_close(sp);
		return 1;
	}
	/* The third initializer, for the header's C and C++ forms. */
	telespool_heartbeat hb = TELESPOOL_HEARTBEAT_INIT;
	if (hb.struct_version != TELESPOOL_HEARTBEAT_VERSION ||
	    hb.workspace_uuid != NULL || hb.features_json != NULL) {
		fprintf(stderr, "TELESPOOL_HEARTBEAT_INIT: wrong fields\n");
		telespool_close(sp);
		return 1;
	}
	telespool_close(sp);
	printf("recorded 1 event with libtelespool %s\n", v);
	return 0;
}
