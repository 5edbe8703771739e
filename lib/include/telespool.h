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
 *     event is cleaned and stored, never rejected.  (JSON text given to
 *     telespool_record_json() is refused only where LangBot's own sender
 *     could not have sent it either; see there.)
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

/*
 * The struct_version, every other field 0 or NULL (its default): a field
 * appended later needs no change here (libgit2's {GIT_*_OPTIONS_VERSION}).
 * C gets a designated initializer, which -Wextra's
 * -Wmissing-field-initializers accepts; C++ (no designated initializers
 * before C++20, and the warning for {VERSION}) gets a value-initialized
 * struct with the version set, so that -Wextra -Werror builds stay quiet in
 * both.  Use it as "telespool_options o = TELESPOOL_OPTIONS_INIT;";
 * TELESPOOL_QUERY_INIT and TELESPOOL_HEARTBEAT_INIT are made the same way.
 */
#ifdef __cplusplus
extern "C++" {
template <typename T> static inline T telespool__cxx_init(unsigned int version)
{
	T v = T();
	v.struct_version = version;
	return v;
}
}
#define TELESPOOL__INIT(type, version) telespool__cxx_init<type>(version)
#else
#define TELESPOOL__INIT(type, version)                                         \
	{                                                                      \
		.struct_version = (version)                                    \
	}
#endif
#define TELESPOOL_OPTIONS_INIT                                                 \
	TELESPOOL__INIT(telespool_options, TELESPOOL_OPTIONS_VERSION)

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

#define TELESPOOL_QUERY_VERSION 2

/*
 * One processed chat query.  Initialise with TELESPOOL_QUERY_INIT.
 *
 * struct_version 2 (what TELESPOOL_QUERY_INIT gives) stores LangBot 4.10.8's
 * body: every key LangBot's chat handler sends, in its order, a NULL string
 * sent as "", features, per-call identities, pipeline_plugins NULL sent as
 * null ("every plugin") and the naive microsecond timestamp of
 * datetime.utcnow().isoformat().  The bytes are those the generic
 * telespool_record_json() stores for the same event.  A caller built with
 * struct_version 1 keeps the body of 4.10.6 (no workspace fields, optional
 * runner_category and edition, "...Z" millisecond timestamp,
 * pipeline_plugins NULL sent as []).
 */
typedef struct telespool_query {
	unsigned int struct_version; /* TELESPOOL_QUERY_VERSION */
	const char *query_id;        /* NULL is stored as "" */
	const char *adapter;         /* e.g. "TelegramAdapter" */
	const char *runner;          /* e.g. "local-agent" */
	const char *runner_category; /* v1: added when non-NULL */
	const char *model_name;      /* e.g. "gpt-4o" */
	int64_t duration_ms;         /* negative values are stored as 0 */
	/* v2: NULL is null (LangBot: the pipeline enables every plugin); a
	 * non-NULL pointer with n_pipeline_plugins 0 is [].  NULL items are
	 * skipped. */
	const char *const *pipeline_plugins;
	size_t n_pipeline_plugins;
	const char *error; /* traceback, or NULL; redacted before storing */

	/* Since struct_version 2. */
	const char *features_json;  /* JSON object of feature usage; NULL: {} */
	const char *instance_id;    /* the query's; NULL: the handle's */
	const char *workspace_uuid; /* NULL is stored as "" */
	const char *runtime_instance_id; /* NULL: the handle's instance_id */
} telespool_query;

/* As TELESPOOL_OPTIONS_INIT: the struct_version, everything else NULL or
 * 0. */
#define TELESPOOL_QUERY_INIT                                                   \
	TELESPOOL__INIT(telespool_query, TELESPOOL_QUERY_VERSION)

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
 * NULL with n_pipeline_plugins > 0, unknown struct_version, features_json
 * not a JSON object);
 * TELESPOOL_EDISABLED; TELESPOOL_EBUSY (locked past busy_timeout_ms);
 * TELESPOOL_EFULL (disk full, or the WAL at its bound while a reader holds
 * a transaction open; counted in drops as 'disk_full' or 'wal_pinned');
 * TELESPOOL_EIO; TELESPOOL_ECORRUPT; TELESPOOL_ENOMEM; TELESPOOL_ERROR.
 * On any failure nothing is stored.
 */
TELESPOOL_EXTERN int telespool_record_query(telespool *sp,
					    const telespool_query *q);

/*
 * Records the daily "instance_heartbeat" event of LangBot 4.10.6 and
 * earlier (keys event_type, instance_id, version, edition,
 * instance_create_ts, features, timestamp; no workspace).  For LangBot
 * 4.10.8 use telespool_record_workspace_heartbeat().  features_json is a
 * JSON object of configuration counts (NULL means {}); anything but a JSON
 * object is TELESPOOL_EINVAL.  Returns as telespool_record_query().
 */
TELESPOOL_EXTERN int telespool_record_heartbeat(telespool *sp,
						const char *features_json);

/*
 * The generic record path: payload_json is the payload LangBot hands its
 * TelemetryManager.send(), as a JSON object, for /api/v1/telemetry.  It is
 * normalised exactly as LangBot's sender does (query_id and each of
 * adapter, runner, runner_category, model_name, version, edition, error,
 * timestamp, event_type that is present becomes a string: null is "", true
 * "True", a number its Python str(); an empty or missing event_type becomes
 * "query", a missing one added last; features that is not an object becomes
 * {}; duration_ms becomes Python's int() of it, 0 when that fails), then
 * cleaned and redacted (the traceback redaction on error, the secret
 * patterns on every other string at any depth) and capped (README "Caps";
 * duration_ms is clamped to 0 .. 10^12), and stored as the exact body
 * LangBot would have POSTed: json.dumps(payload, ensure_ascii=False,
 * separators=(",", ":"), allow_nan=False) with the same keys in the same
 * order, the same JSON types, integers of any size kept exactly, floats in
 * Python's repr.  Keys telespool does not know are kept as they are
 * (redacted like any other string).  A key given twice keeps its first
 * place and its last value, as Python's json.loads() does.
 *
 * event_type "instance_heartbeat" is stored as a heartbeat, any other as a
 * query event; both are POSTed to /api/v1/telemetry.
 *
 * Returns as telespool_record_query(); TELESPOOL_EINVAL when sp or
 * payload_json is NULL, the text is not one JSON object, is larger than
 * 4 MiB, is nested deeper than 512 levels, holds NaN or Infinity (or a
 * float beyond the double range) or an integer of more than 4300 digits
 * (LangBot's sender would fail on those: nothing would be sent), holds an
 * array or object where LangBot's sender turns the value into a string (its
 * Python str() is not reproduced: convert it first), or is larger than
 * 64 KiB even with every cap applied.  telespool_errmsg() says which.
 */
TELESPOOL_EXTERN int telespool_record_json(telespool *sp,
					   const char *payload_json);

/*
 * Like telespool_record_json() for a body LangBot POSTs elsewhere: endpoint
 * is "/api/v1/telemetry" (the same as telespool_record_json(); NULL means
 * this too), "/api/v1/survey/pending" (body {"instance_id", "event"}: a
 * milestone, checked at most once per spool as by
 * telespool_record_survey_trigger()), "/api/v1/survey/respond" (body with
 * "survey_id": marks that survey answered) or "/api/v1/survey/dismiss"
 * (marks it dismissed).  Survey bodies are stored as given (LangBot does not
 * normalise them), cleaned, redacted and capped.  Returns as
 * telespool_record_json(); also TELESPOOL_EINVAL for another endpoint, a
 * pending body without a non-empty string "event", or a respond or dismiss
 * body without a non-empty "survey_id".
 */
TELESPOOL_EXTERN int telespool_record_json_to(telespool *sp,
					      const char *endpoint,
					      const char *payload_json);

#define TELESPOOL_HEARTBEAT_VERSION 1

/* One workspace's heartbeat.  Initialise with TELESPOOL_HEARTBEAT_INIT. */
typedef struct telespool_heartbeat {
	unsigned int struct_version; /* TELESPOOL_HEARTBEAT_VERSION */
	const char *workspace_uuid;  /* NULL is stored as "" */
	int64_t workspace_create_ts; /* unix seconds; 0 if unknown */
	const char *features_json;   /* JSON object; NULL means {} */
	const char *instance_id;     /* NULL: the handle's */
} telespool_heartbeat;

/* As TELESPOOL_OPTIONS_INIT: the struct_version, everything else NULL or
 * 0. */
#define TELESPOOL_HEARTBEAT_INIT                                               \
	TELESPOOL__INIT(telespool_heartbeat, TELESPOOL_HEARTBEAT_VERSION)

/*
 * Records LangBot 4.10.8's "instance_heartbeat" for one workspace (LangBot
 * sends one per active workspace), with its keys in its order: event_type,
 * query_id (""), version, instance_id, workspace_uuid, workspace_create_ts,
 * instance_create_ts, edition, features, timestamp (UTC with microseconds
 * and "+00:00", as datetime.now(timezone.utc).isoformat()).  The same bytes
 * as telespool_record_json() stores for that payload.  Returns as
 * telespool_record_query(); TELESPOOL_EINVAL for hb NULL, an unknown
 * struct_version or features_json not a JSON object.
 */
/* (The name stays on the TELESPOOL_EXTERN line, which the install test
 * reads the API from.) */
/* clang-format off */
TELESPOOL_EXTERN int telespool_record_workspace_heartbeat(telespool *sp,
	const telespool_heartbeat *hb);
/* clang-format on */

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

/* telespool_count_drops(): the longest reason, in bytes, and the largest
 * count one call adds. */
#define TELESPOOL_DROP_REASON_MAX 40
#define TELESPOOL_MAX_DROP_COUNT  1000000000

/*
 * Counts n events that the caller dropped before they reached the library
 * (e.g. its own queue was full), in the drops table under reason, so that
 * every loss is found in one place.  Adds n to drops.count of that reason
 * and sets its last_at, in one short transaction that also writes the
 * drops the handle still keeps in memory (see TELESPOOL_EFULL).
 *
 * reason: 1 to TELESPOOL_DROP_REASON_MAX bytes of lower-case ASCII
 * letters, digits and '_' (e.g. "queue_full"), and none of the reasons
 * the library and the uploader count themselves (evicted_max_events,
 * evicted_max_bytes, evicted_max_age, disk_full, wal_pinned, corrupt_spool,
 * survey_invalid, rejected, max_attempts, expired): each of those means
 * one thing the spool saw, and a caller's count under it would make the
 * table lie about the cause.  n: 1 to TELESPOOL_MAX_DROP_COUNT.
 *
 * Thread safety and bounds as a record call: serialised on the handle;
 * a lock held by another process is waited for at most busy_timeout_ms.
 *
 * Returns TELESPOOL_OK (counted and committed); TELESPOOL_EINVAL (sp NULL,
 * reason NULL, empty, too long, with another character or reserved, n out
 * of range: checked first, also on a disabled spool; nothing counted);
 * TELESPOOL_EDISABLED (telemetry is opted out: nothing counted, as a
 * record call stores nothing); TELESPOOL_EBUSY (locked past
 * busy_timeout_ms: nothing counted, the caller may count them again
 * later); TELESPOOL_EFULL (disk full, or the WAL at its bound: the count
 * is kept in memory on the handle, as the library's own drops are, and
 * written by the next record or count call on it that succeeds, or at
 * telespool_close() if the file takes it then; do not count these again);
 * TELESPOOL_ENOMEM (as EFULL, but the handle already keeps 16 other
 * reasons in memory: nothing counted); TELESPOOL_EIO; TELESPOOL_ECORRUPT;
 * TELESPOOL_ERROR (nothing counted).
 */
TELESPOOL_EXTERN int telespool_count_drops(telespool *sp, const char *reason,
					   int64_t n);

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
