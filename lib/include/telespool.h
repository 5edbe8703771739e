/*
 * telespool.h - the offline-first telemetry spool that LangBot links.
 *
 * Each record call builds the exact JSON body that LangBot Space expects,
 * cleans and redacts it, and stores it in one short SQLite transaction in a
 * local file (by convention data/telemetry.db).  Nothing here touches the
 * network: the separate program telespool-upload drains the spool.
 *
 * Conventions (the same for every function below):
 *   - Return codes are TELESPOOL_OK (0) or a negative telespool_rc.  A code's
 *     fixed text comes from telespool_strerror(); the detail of the last
 *     failure on a handle comes from telespool_errmsg().
 *   - Strings are NUL-terminated UTF-8.  Invalid UTF-8 is replaced with
 *     U+FFFD and over-long values are capped (see README "Caps"): a dirty
 *     event is cleaned and stored, never rejected.
 *   - The library copies every string it is given; the caller keeps
 *     ownership of its arguments.  Memory the library returns through an
 *     out-parameter belongs to the caller and is released with
 *     telespool_free().
 *   - A handle may be used from several threads: calls on one handle are
 *     serialised by a mutex inside it.  Any number of handles, in any number
 *     of threads and processes, may use the same file at once.
 *   - No call blocks for longer than its documented bound.  A database that
 *     another process keeps locked makes a call fail with TELESPOOL_EBUSY
 *     after busy_timeout_ms (default 250 ms) instead of waiting.
 *
 * SQLite, cJSON and libyaml types never appear in this header.
 */
#ifndef TELESPOOL_H
#define TELESPOOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(TELESPOOL_BUILDING) && defined(__GNUC__)
#define TELESPOOL_EXTERN __attribute__((visibility("default")))
#else
#define TELESPOOL_EXTERN
#endif

/* TELESPOOL_VERSION_MAJOR, _MINOR, _PATCH and _STRING: the version of this
 * header, written by the build from CMakeLists.txt's project(VERSION), the
 * one place the version is set (build the tree, or add <build>/lib/include
 * to the include path when compiling against lib/include directly). */
#include "telespool_version.h"

/* Return codes.  Values are stable: they are part of the ABI. */
typedef enum telespool_rc {
	TELESPOOL_OK = 0,
	TELESPOOL_ERROR = -1,  /* unexpected failure; see telespool_errmsg() */
	TELESPOOL_EINVAL = -2, /* bad argument (NULL handle, out of range) */
	TELESPOOL_EBUSY = -3,  /* database locked longer than busy_timeout_ms */
	TELESPOOL_EFULL = -4,  /* disk full, or the WAL at its bound (a reader
				* holds it); event not stored, drop counted */
	TELESPOOL_ESCHEMA = -5,   /* file written by a newer telespool */
	TELESPOOL_EDISABLED = -6, /* telemetry is opted out; nothing stored */
	TELESPOOL_ECORRUPT = -7,  /* not a database, or a damaged one */
	TELESPOOL_EIO = -8, /* cannot open, read or write (permissions, I/O) */
	TELESPOOL_ENOMEM = -9 /* out of memory */
} telespool_rc;

/* Opaque spool handle. */
typedef struct telespool telespool;

/* Default bounds, also used when an option is left 0. */
#define TELESPOOL_DEFAULT_BUSY_TIMEOUT_MS 250
#define TELESPOOL_DEFAULT_MAX_EVENTS      200000
#define TELESPOOL_DEFAULT_MAX_BYTES       (128 * 1024 * 1024)
#define TELESPOOL_DEFAULT_MAX_AGE_DAYS    30
#define TELESPOOL_MAX_BUSY_TIMEOUT_MS     60000

/* What telespool_open() does with a file that is not a usable database. */
typedef enum telespool_on_corrupt {
	/* Refuse with TELESPOOL_ECORRUPT and leave the file untouched. */
	TELESPOOL_CORRUPT_REFUSE = 0,
	/* Rename the file (and its -wal/-shm) to PATH.corrupt-YYYYMMDDTHHMMSSZ,
	 * start a new spool and count the loss in drops ('corrupt_spool').
	 * To find damage anywhere in the file, open then also reads every page
	 * once (PRAGMA quick_check: O(file size), about 1 s for 128 MiB).
	 * Only a file no other handle (in any process) has open is moved:
	 * every handle holds a shared flock(2) on the spool's directory,
	 * which moving takes exclusively; otherwise, or when the directory
	 * cannot be locked, TELESPOOL_ECORRUPT as with REFUSE.  A path that
	 * is a symbolic link stands for the file it points to. */
	TELESPOOL_CORRUPT_MOVE_ASIDE = 1
} telespool_on_corrupt;

/* What a TELESPOOL_OK record call survives (telespool_options.durability). */
typedef enum telespool_durability {
	/* A crash of the host process (kill -9, abort): SQLite's WAL with
	 * synchronous=NORMAL.  An OS crash or a power cut can lose the last
	 * events acknowledged before it (never the file's integrity). */
	TELESPOOL_DURABILITY_NORMAL = 0,
	/* Also an OS crash or a power cut: every commit is synced to the disk
	 * (synchronous=FULL) before the call returns.  See README "Performance"
	 * for its cost. */
	TELESPOOL_DURABILITY_FULL = 1
} telespool_durability;

/* 2 added durability. */
#define TELESPOOL_OPTIONS_VERSION 2

/*
 * Options for telespool_open().  Initialise with TELESPOOL_OPTIONS_INIT and
 * then set fields, so that fields appended in later versions get defaults.
 * Numeric fields left 0 take their default.
 */
typedef struct telespool_options {
	unsigned int struct_version; /* TELESPOOL_OPTIONS_VERSION */

	/* Per-instance constants, copied into every event body. */
	const char *instance_id; /* "instance_<uuid4>"; NULL is sent as "" */
	const char *version;     /* LangBot version, e.g. "v4.3.1" */
	const char *edition;     /* optional; added to bodies when non-NULL */
	int64_t
	    instance_create_ts; /* unix seconds, for the heartbeat; 0 if unknown */

	/* Longest a call waits for a lock held by someone else, in ms.
	 * 0 means the default (250); at most TELESPOOL_MAX_BUSY_TIMEOUT_MS. */
	int busy_timeout_ms;

	/* Spool bounds: max_events rows, max_bytes of used file pages, pending
	 * events younger than max_age_days.  When a new event would exceed one,
	 * the oldest rows are evicted (pending ones counted in the drops table),
	 * at most 256 per call.  0 means the default.  The WAL is bounded
	 * by max_bytes / 2 (1..64 MiB): past it, while a reader holds a
	 * transaction open, record calls return TELESPOOL_EFULL (counted in
	 * drops as 'wal_pinned'). */
	int64_t max_events;
	int64_t max_bytes;
	int max_age_days;

	/* Non-zero: telemetry is opted out.  Record calls store nothing and
	 * return TELESPOOL_EDISABLED; pending_survey finds nothing. */
	int disabled;

	/* Non-zero: keep only frame lines and exception type names of the error
	 * traceback, dropping every exception message. */
	int strict_errors;

	/* telespool_on_corrupt. */
	int on_corrupt;

	/* struct_version >= 2.  telespool_durability; read only when
	 * struct_version says the caller knows it (older callers get
	 * NORMAL). */
	int durability;
} telespool_options;

#define TELESPOOL_OPTIONS_INIT                                                 \
	{                                                                      \
		TELESPOOL_OPTIONS_VERSION, NULL, NULL, NULL, 0, 0, 0, 0, 0, 0, \
		    0, 0, 0                                                    \
	}

/*
 * Opens (creating with mode 0600 if needed) the spool at path and brings its
 * schema up to date.  On success *out is a new handle owned by the caller
 * (release with telespool_close()); on failure *out is NULL.  opts may be
 * NULL for defaults.  A path that is a symbolic link stands for the file it
 * points to.  Before returning, it finishes an opt-out purge that was cut
 * short (best effort, without waiting for locks).  Bound: about 3 x
 * busy_timeout_ms plus file I/O.
 *
 * Returns TELESPOOL_OK; TELESPOOL_EINVAL (out or path NULL, an option out of
 * range); TELESPOOL_EBUSY (another process held the file locked past the
 * bound, or was moving a damaged spool aside in its directory);
 * TELESPOOL_ESCHEMA (written by a newer telespool: the file is left
 * untouched); TELESPOOL_ECORRUPT (not a database: left untouched unless
 * on_corrupt says otherwise); TELESPOOL_EIO (cannot create, open or write,
 * e.g. permission denied or read-only, or not a regular file: nothing is
 * written next to a device or a FIFO); TELESPOOL_EFULL (disk full);
 * TELESPOOL_ENOMEM.  Details of a failed open are only available through
 * the return code, since there is no handle: use telespool_open_errmsg().
 */
TELESPOOL_EXTERN int telespool_open(telespool **out, const char *path,
				    const telespool_options *opts);

/*
 * Detail of the most recent telespool_open() failure in the calling thread
 * ("" if none).  Static thread-local storage: valid until the thread's next
 * telespool_open().
 */
TELESPOOL_EXTERN const char *telespool_open_errmsg(void);

/*
 * Closes the handle and releases everything it owns.  NULL is a no-op.
 * Never fails.  It waits for locks only to write the drops it counted but
 * could not write (TELESPOOL_EFULL), and then at most about 5 ms.
 */
TELESPOOL_EXTERN void telespool_close(telespool *sp);

#define TELESPOOL_QUERY_VERSION 1

/* One processed chat query.  Initialise with TELESPOOL_QUERY_INIT. */
typedef struct telespool_query {
	unsigned int struct_version; /* TELESPOOL_QUERY_VERSION */
	const char *query_id;        /* NULL is stored as "" */
	const char *adapter;         /* e.g. "TelegramAdapter" */
	const char *runner;          /* e.g. "local-agent" */
	const char *runner_category; /* optional; added when non-NULL */
	const char *model_name;      /* e.g. "gpt-4o" */
	int64_t duration_ms;         /* negative values are stored as 0 */
	const char *const *pipeline_plugins; /* may be NULL when n is 0 */
	size_t n_pipeline_plugins;
	const char *error; /* traceback, or NULL; redacted before storing */
} telespool_query;

#define TELESPOOL_QUERY_INIT                                                   \
	{                                                                      \
		TELESPOOL_QUERY_VERSION, NULL, NULL, NULL, NULL, NULL, 0,      \
		    NULL, 0, NULL                                              \
	}

/*
 * Records one query event: builds the JSON body POSTed later to
 * /api/v1/telemetry (event_type "query"), redacts and caps it, and stores it
 * with a fresh random event_id in one transaction.  Returns only after the
 * commit, so a TELESPOOL_OK event survives a crash of the host; with
 * durability TELESPOOL_DURABILITY_FULL the commit is also on the disk, so it
 * survives an OS crash or a power cut (with NORMAL, the last events
 * acknowledged before one can be lost).
 *
 * Returns TELESPOOL_OK; TELESPOOL_EINVAL (sp or q NULL, pipeline_plugins
 * NULL with n_pipeline_plugins > 0, unknown struct_version);
 * TELESPOOL_EDISABLED; TELESPOOL_EBUSY (locked past busy_timeout_ms);
 * TELESPOOL_EFULL (disk full, or the WAL at its bound while a reader holds
 * a transaction open; counted in drops as 'disk_full' or 'wal_pinned');
 * TELESPOOL_EIO; TELESPOOL_ECORRUPT; TELESPOOL_ENOMEM; TELESPOOL_ERROR.
 * On any failure nothing is stored.
 */
TELESPOOL_EXTERN int telespool_record_query(telespool *sp,
					    const telespool_query *q);

/*
 * Records the daily "instance_heartbeat" event.  features_json is a JSON
 * object of configuration counts (NULL means {}); anything but a JSON object
 * is TELESPOOL_EINVAL.  Returns as telespool_record_query().
 */
TELESPOOL_EXTERN int telespool_record_heartbeat(telespool *sp,
						const char *features_json);

/*
 * Records a survey milestone (e.g. "first_bot_response_success").  The
 * uploader turns it into one /api/v1/survey/pending request and stores the
 * survey it answers, if any, for telespool_pending_survey().  A milestone is
 * checked at most once per spool: recording it again is a no-op that
 * returns TELESPOOL_OK.  event NULL or "" is TELESPOOL_EINVAL.
 */
TELESPOOL_EXTERN int telespool_record_survey_trigger(telespool *sp,
						     const char *event);

/*
 * Records the answers to a survey (POSTed to /api/v1/survey/respond) and
 * marks that survey answered, so telespool_pending_survey() no longer
 * returns it.  answers_json must be a JSON object.  survey_id NULL or "",
 * or answers_json not an object, is TELESPOOL_EINVAL.
 */
TELESPOOL_EXTERN int telespool_record_survey_response(telespool *sp,
						      const char *survey_id,
						      const char *answers_json,
						      int completed);

/*
 * Records the dismissal of a survey (POSTed to /api/v1/survey/dismiss) and
 * marks it dismissed.  survey_id NULL or "" is TELESPOOL_EINVAL.
 */
TELESPOOL_EXTERN int telespool_record_survey_dismiss(telespool *sp,
						     const char *survey_id);

/*
 * The survey LangBot Space offered and that is neither answered nor
 * dismissed, as the JSON object text Space sent (e.g. {"survey_id": ...}).
 * On TELESPOOL_OK *out_json is a string owned by the caller (release with
 * telespool_free()), or NULL when no survey is pending.  On failure
 * *out_json is NULL.  When disabled, always TELESPOOL_OK with NULL.
 */
TELESPOOL_EXTERN int telespool_pending_survey(telespool *sp, char **out_json);

/* Releases memory returned by the library.  NULL is a no-op. */
TELESPOOL_EXTERN void telespool_free(void *p);

/*
 * Detail of the last failed call on sp, e.g. "database is locked after
 * 250 ms (another process holds a write lock)".  Never NULL; "" when the
 * last call succeeded.  Valid until the next call on sp; copy it first when
 * other threads share the handle.  sp NULL gives a fixed text.
 */
TELESPOOL_EXTERN const char *telespool_errmsg(const telespool *sp);

/* Fixed English text for a return code.  Never NULL; static storage. */
TELESPOOL_EXTERN const char *telespool_strerror(int rc);

/* The library's version, e.g. "0.1.0" (may differ from the header's). */
TELESPOOL_EXTERN const char *telespool_version(void);

#ifdef __cplusplus
}
#endif

#endif /* TELESPOOL_H */
