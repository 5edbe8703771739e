/*
 * spool.c - opening and closing a spool, its connection settings, error
 * reporting and the statements kept on the handle.
 */
#include "spool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "migrate.h"
#include "queue.h"
#include "redact.h"
#include "timefmt.h"
#include "uuid.h"

/*
 * The WAL's disk bound W (telespool__wal_limit): max_bytes / 2 within
 * 1..64 MiB, 64 MiB for the default 128 MiB (a burst of about 13,000
 * events while a reader holds the log back).  A commit in LangBot's
 * process checkpoints once the log holds HOST_CHECKPOINT (16 MiB: 4000
 * pages of 4 KiB) or W / 2 if less; the uploader checkpoints at SQLite's
 * usual 1000 pages and at the end of each run (queue.c), so with it running
 * LangBot's record calls seldom pay for one.  A reset log is cut back to the
 * same size (journal_size_limit).  Past W, only a reader holding a
 * transaction open can have kept the checkpoints from resetting it: record
 * calls then store nothing (telespool__wal_room).
 */
#define WAL_LIMIT_MIN   (1024 * 1024)
#define WAL_LIMIT_MAX   (64 * 1024 * 1024)
#define HOST_CHECKPOINT (16 * 1024 * 1024)

/* While the log is full, how often a record call tries a checkpoint, and
 * how long a RESTART checkpoint waits for readers and writers. */
#define WAL_RETRY_MS        10
#define WAL_RESTART_WAIT_MS 2

static _Thread_local char open_err[512];

static const char *const stmt_sql[STMT__COUNT] = {
    [STMT_BEGIN] = "BEGIN IMMEDIATE",
    [STMT_COMMIT] = "COMMIT",
    [STMT_ROLLBACK] = "ROLLBACK",
    [STMT_INSERT_EVENT] =
	"INSERT INTO spool (id, next_attempt_at, created_at, size, event_id,"
	" event_type, body) VALUES (max(coalesce((SELECT max(id) FROM spool),"
	" 0) + 1, " TELESPOOL__PENDING_FROM "), ?1, ?1, ?2, ?3, ?4, ?5)",
    /* Plain pragmas, not a SELECT over pragma_page_count(): a pragma
     * table-valued function prepares its PRAGMA again on every step. */
    [STMT_PAGE_COUNT] = "PRAGMA page_count",
    [STMT_FREELIST_COUNT] = "PRAGMA freelist_count",
    [STMT_EVICT_OLDEST] = ("DELETE FROM spool WHERE id IN (SELECT id FROM"
			   " spool WHERE id < ?1 ORDER BY id LIMIT ?2)"
			   " RETURNING state"),
    [STMT_OLDEST_SIZES] = "SELECT id, size FROM spool ORDER BY id LIMIT ?1",
    [STMT_OLDEST_PENDING] =
	"SELECT created_at FROM spool WHERE id >= " TELESPOOL__PENDING_FROM
	" AND state = 'pending' ORDER BY id LIMIT 1",
    [STMT_EVICT_AGED] = "DELETE FROM spool WHERE id IN (SELECT id FROM spool "
			"WHERE id >= " TELESPOOL__PENDING_FROM
			" AND state = 'pending' AND created_at < ?1"
			" ORDER BY id LIMIT 1000)",
    [STMT_COUNT_DROP] =
	"INSERT INTO drops (reason, count, last_at) VALUES (?1, ?2, ?3)"
	" ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count,"
	" last_at = excluded.last_at",
    [STMT_MILESTONE] =
	"INSERT OR IGNORE INTO survey_milestones (event, recorded_at)"
	" VALUES (?1, ?2)",
    [STMT_SURVEY_CLOSE] =
	"INSERT INTO surveys (survey_id, body, state, received_at, closed_at)"
	" VALUES (?1, '{}', ?2, ?3, ?3) ON CONFLICT (survey_id) DO UPDATE"
	" SET state = excluded.state, closed_at = excluded.closed_at",
    [STMT_SURVEY_PENDING] = "SELECT body FROM surveys WHERE state = 'pending'"
			    " ORDER BY received_at DESC, rowid DESC LIMIT 1",
};

static void vformat(char *buf, size_t len, const char *fmt, va_list ap)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 0)))
#endif
    ;

static void vformat(char *buf, size_t len, const char *fmt, va_list ap)
{
	int n = vsnprintf(buf, len, fmt, ap);
	if (n < 0)
		buf[0] = '\0';
}

int telespool__fail(telespool *sp, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vformat(sp->errmsg, sizeof(sp->errmsg), fmt, ap);
	va_end(ap);
	return rc;
}

static int open_fail(int rc, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static int open_fail(int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vformat(open_err, sizeof(open_err), fmt, ap);
	va_end(ap);
	return rc;
}

int telespool__rc_from_sqlite(int src)
{
	switch (src & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return TELESPOOL_OK;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return TELESPOOL_EBUSY;
	case SQLITE_FULL:
		return TELESPOOL_EFULL;
	case SQLITE_NOTADB:
	case SQLITE_CORRUPT:
		return TELESPOOL_ECORRUPT;
	case SQLITE_CANTOPEN:
	case SQLITE_IOERR:
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return TELESPOOL_EIO;
	case SQLITE_NOMEM:
		return TELESPOOL_ENOMEM;
	default:
		return TELESPOOL_ERROR;
	}
}

/* SQLite reports a write past RLIMIT_FSIZE or a quota as an I/O error;
 * for the caller it is the same as a full disk.  The OS error is not always
 * kept until we look (a failed COMMIT rolls back first), so a failed write
 * with no recorded cause counts as full too. */
static int rc_from_db(sqlite3 *db, int src)
{
	int rc = telespool__rc_from_sqlite(src);
	if (rc == TELESPOOL_EIO) {
		int e = sqlite3_system_errno(db);
		if (e == ENOSPC || e == EFBIG || e == EDQUOT ||
		    (e == 0 && src == SQLITE_IOERR_WRITE))
			rc = TELESPOOL_EFULL;
	}
	return rc;
}

static const char *hint(int rc, int busy_ms)
{
	static _Thread_local char buf[96];

	switch (rc) {
	case TELESPOOL_EBUSY:
		snprintf(buf, sizeof(buf),
			 " (locked by another connection for more than %d ms)",
			 busy_ms);
		return buf;
	case TELESPOOL_EFULL:
		return " (the disk or the file size limit is full)";
	case TELESPOOL_ECORRUPT:
		return " (the file is not a telespool database or is damaged)";
	default:
		return "";
	}
}

int telespool__sqlite_fail(telespool *sp, int src, const char *what)
{
	int rc = rc_from_db(sp->db, src);
	if (rc == TELESPOOL_OK)
		return rc;
	return telespool__fail(sp, rc, "%s: %s%s", what, sqlite3_errmsg(sp->db),
			       hint(rc, sp->busy_timeout_ms));
}

sqlite3_stmt *telespool__stmt(telespool *sp, enum telespool__stmt_id id)
{
	sqlite3_stmt *st = sp->stmt[id];

	if (st != NULL) {
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
		return st;
	}
	int src = sqlite3_prepare_v3(sp->db, stmt_sql[id], -1,
				     SQLITE_PREPARE_PERSISTENT, &st, NULL);
	if (src != SQLITE_OK) {
		telespool__sqlite_fail(sp, src, "preparing a statement");
		return NULL;
	}
	sp->stmt[id] = st;
	return st;
}

static int step_done(telespool *sp, enum telespool__stmt_id id,
		     const char *what)
{
	sqlite3_stmt *st = telespool__stmt(sp, id);
	if (st == NULL)
		return TELESPOOL_ERROR;
	int src = sqlite3_step(st);
	sqlite3_reset(st);
	if (src != SQLITE_DONE)
		return telespool__sqlite_fail(sp, src, what);
	return TELESPOOL_OK;
}

int telespool__begin(telespool *sp)
{
	return step_done(sp, STMT_BEGIN, "starting a write transaction");
}

int telespool__commit(telespool *sp)
{
	int rc = step_done(sp, STMT_COMMIT, "committing");
	if (rc != TELESPOOL_OK)
		telespool__rollback(sp);
	return rc;
}

void telespool__rollback(telespool *sp)
{
	if (!sqlite3_get_autocommit(sp->db)) {
		char keep[sizeof(sp->errmsg)];
		memcpy(keep, sp->errmsg, sizeof(keep));
		step_done(sp, STMT_ROLLBACK, "rolling back");
		memcpy(sp->errmsg, keep, sizeof(keep));
	}
}

int telespool__exec(telespool *sp, const char *sql)
{
	int src = sqlite3_exec(sp->db, sql, NULL, NULL, NULL);
	if (src != SQLITE_OK)
		return telespool__sqlite_fail(sp, src, sql);
	return TELESPOOL_OK;
}

int telespool__count_drop(telespool *sp, const char *reason, int64_t n,
			  const char *now_iso)
{
	if (n <= 0)
		return TELESPOOL_OK;
	sqlite3_stmt *st = telespool__stmt(sp, STMT_COUNT_DROP);
	if (st == NULL)
		return TELESPOOL_ERROR;
	sqlite3_bind_text(st, 1, reason, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, n);
	sqlite3_bind_text(st, 3, now_iso, -1, SQLITE_STATIC);
	int src = sqlite3_step(st);
	sqlite3_reset(st);
	if (src != SQLITE_DONE)
		return telespool__sqlite_fail(sp, src, "counting a drop");
	return TELESPOOL_OK;
}

static const char *const drop_reason[DROP__COUNT] = {
    [DROP_MAX_EVENTS] = "evicted_max_events",
    [DROP_MAX_BYTES] = "evicted_max_bytes",
    [DROP_MAX_AGE] = "evicted_max_age",
    [DROP_DISK_FULL] = "disk_full",
    [DROP_WAL_PINNED] = "wal_pinned",
};

int telespool__flush_drops(telespool *sp, const char *now_iso)
{
	for (int i = 0; i < DROP__COUNT; i++) {
		if (sp->unsaved_drops[i] == 0)
			continue;
		int rc = telespool__count_drop(sp, drop_reason[i],
					       sp->unsaved_drops[i], now_iso);
		if (rc != TELESPOOL_OK)
			return rc;
	}
	/* Cleared by the caller once the transaction commits. */
	return TELESPOOL_OK;
}

void telespool__lock(telespool *sp)
{
	pthread_mutex_lock(&sp->mu);
	sp->errmsg[0] = '\0';
}

void telespool__unlock(telespool *sp)
{
	pthread_mutex_unlock(&sp->mu);
}

/* ---- open / close ---- */

static char *dup_clean(const char *s)
{
	return telespool__clean_name(s, s ? strlen(s) : 0, TELESPOOL_NAME_MAX);
}

static int check_options(const telespool_options *o)
{
	if (o->struct_version < 1 ||
	    o->struct_version > TELESPOOL_OPTIONS_VERSION)
		return open_fail(
		    TELESPOOL_EINVAL,
		    "options.struct_version %u is not supported (this "
		    "library knows 1..%d): initialise with "
		    "TELESPOOL_OPTIONS_INIT",
		    o->struct_version, TELESPOOL_OPTIONS_VERSION);
	if (o->busy_timeout_ms < 0 ||
	    o->busy_timeout_ms > TELESPOOL_MAX_BUSY_TIMEOUT_MS)
		return open_fail(
		    TELESPOOL_EINVAL,
		    "options.busy_timeout_ms %d is out of range 0..%d",
		    o->busy_timeout_ms, TELESPOOL_MAX_BUSY_TIMEOUT_MS);
	if (o->max_events < 0 || o->max_bytes < 0 || o->max_age_days < 0)
		return open_fail(
		    TELESPOOL_EINVAL,
		    "options.max_events, max_bytes and max_age_days "
		    "must not be negative");
	if (o->max_bytes > 0 && o->max_bytes < 2 * TELESPOOL_BODY_MAX)
		return open_fail(
		    TELESPOOL_EINVAL,
		    "options.max_bytes %lld is below the minimum %d",
		    (long long)o->max_bytes, 2 * TELESPOOL_BODY_MAX);
	if (o->max_age_days > 3650)
		return open_fail(TELESPOOL_EINVAL,
				 "options.max_age_days %d is more than 3650",
				 o->max_age_days);
	if (o->on_corrupt != TELESPOOL_CORRUPT_REFUSE &&
	    o->on_corrupt != TELESPOOL_CORRUPT_MOVE_ASIDE)
		return open_fail(TELESPOOL_EINVAL,
				 "options.on_corrupt %d is unknown",
				 o->on_corrupt);
	if (o->struct_version >= 2 &&
	    o->durability != TELESPOOL_DURABILITY_NORMAL &&
	    o->durability != TELESPOOL_DURABILITY_FULL)
		return open_fail(TELESPOOL_EINVAL,
				 "options.durability %d is unknown (0 normal, "
				 "1 full)",
				 o->durability);
	return TELESPOOL_OK;
}

static int create_error(const char *path, int e)
{
	if (e == ENOSPC || e == EDQUOT)
		return open_fail(TELESPOOL_EFULL, "cannot create %s: %s", path,
				 strerror(e));
	return open_fail(TELESPOOL_EIO, "cannot open %s: %s", path,
			 strerror(e));
}

/*
 * Creates the file with mode 0600 if it does not exist yet, so that the
 * spool (and the -wal/-shm files SQLite gives the same mode) is private.
 *
 * An existing spool is never opened here: closing any descriptor of a file
 * drops every POSIX lock the process holds on it, including those of other
 * SQLite connections in this process, which would then see their WAL
 * deleted under them.  A new file is made under a private name, closed,
 * and linked into place (atomically; a file that appeared meanwhile wins).
 */
static int create_private(const char *path)
{
	struct stat st;
	char tmp[4200];
	uint32_t r = 0;

	if (stat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return open_fail(TELESPOOL_EIO, "cannot open %s: %s",
					 path, strerror(EISDIR));
		/* /dev/null, a FIFO, a terminal: SQLite would write its
		 * journal next to it (as root, /dev/null-journal). */
		if (!S_ISREG(st.st_mode))
			return open_fail(TELESPOOL_EIO,
					 "cannot open %s: not a regular file; "
					 "nothing was written",
					 path);
		/* A clear reason now (read-only file system, immutable file,
		 * permissions), rather than SQLite's "unable to open" later. */
		if (faccessat(AT_FDCWD, path, R_OK | W_OK, AT_EACCESS) != 0)
			return open_fail(TELESPOOL_EIO,
					 "cannot open %s for writing: %s", path,
					 strerror(errno));
		return TELESPOOL_OK;
	}
	if (errno != ENOENT)
		return create_error(path, errno);

	telespool__random(&r, sizeof(r));
	snprintf(tmp, sizeof(tmp), "%s.new-%ld-%08x", path, (long)getpid(),
		 (unsigned)r);
	int fd =
	    open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
	if (fd < 0)
		return create_error(path, errno);
	close(fd);
	int linked = link(tmp, path);
	int e = errno;
	unlink(tmp);
	if (linked == 0 || e == EEXIST)
		return TELESPOOL_OK;

	/* A file system without hard links: create in place. */
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
	if (fd >= 0) {
		close(fd);
		return TELESPOOL_OK;
	}
	return errno == EEXIST ? TELESPOOL_OK : create_error(path, errno);
}

static int db_fail(sqlite3 *db, int src, const char *path, const char *what,
		   int busy_ms)
{
	int rc = rc_from_db(db, src);
	if (rc == TELESPOOL_OK)
		rc = TELESPOOL_ERROR;
	return open_fail(rc, "%s: %s: %s%s", path, what,
			 db ? sqlite3_errmsg(db) : sqlite3_errstr(src),
			 hint(rc, busy_ms));
}

static int64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* The schema version and the number of schema objects, from one snapshot:
 * read apart, another process's migration could commit in between. */
static int schema_state(sqlite3 *db, int *version, int *objects)
{
	sqlite3_stmt *st;
	int src = sqlite3_prepare_v2(
	    db,
	    "SELECT (SELECT user_version FROM pragma_user_version),"
	    " (SELECT count(*) FROM sqlite_schema)",
	    -1, &st, NULL);
	if (src != SQLITE_OK)
		return src;
	src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		*version = sqlite3_column_int(st, 0);
		*objects = sqlite3_column_int(st, 1);
		src = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return src;
}

/* PRAGMA journal_mode = WAL answers SQLITE_BUSY at once, without the busy
 * handler, while another connection holds a lock: retry it until the busy
 * timeout. */
static int set_wal(telespool *sp, sqlite3 *db)
{
	int64_t start = monotonic_ms();
	for (;;) {
		sqlite3_stmt *st;
		int src = sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL",
					     -1, &st, NULL);
		if (src == SQLITE_OK) {
			src = sqlite3_step(st);
			if (src == SQLITE_ROW) {
				const char *m =
				    (const char *)sqlite3_column_text(st, 0);
				src = (m && strcmp(m, "wal") == 0)
					  ? SQLITE_OK
					  : SQLITE_CANTOPEN;
			}
			sqlite3_finalize(st);
		}
		if ((src & 0xff) != SQLITE_BUSY &&
		    (src & 0xff) != SQLITE_LOCKED)
			return src;
		if (monotonic_ms() - start >= sp->busy_timeout_ms)
			return src;
		sleep_us(500 + (long)(monotonic_ms() % 1500));
	}
}

/*
 * SQLite's own busy handler sleeps in growing steps up to 100 ms, so a
 * waiting writer can sleep through the moment the lock is free and lose it
 * again and again to busier writers.  This one waits in short jittered
 * steps until busy_timeout_ms has passed since the first refusal.
 */
static int busy_wait(void *ctx, int count)
{
	telespool *sp = ctx;
	int64_t now = monotonic_ms();

	if (count == 0)
		sp->busy_since_ms = now;
	int64_t left = sp->busy_timeout_ms - (now - sp->busy_since_ms);
	if (left <= 0)
		return 0;
	sp->busy_rng = sp->busy_rng * 1103515245u + 12345u;
	long us =
	    100 + (long)((sp->busy_rng >> 8) % (count < 20 ? 400u : 2000u));
	if (us > left * 1000)
		us = (long)left * 1000;
	sleep_us(us);
	return 1;
}

int64_t telespool__wal_limit(int64_t max_bytes)
{
	int64_t w = max_bytes / 2;
	return w < WAL_LIMIT_MIN   ? WAL_LIMIT_MIN
	       : w > WAL_LIMIT_MAX ? WAL_LIMIT_MAX
				   : w;
}

void telespool__set_wal_limit(telespool *sp, int64_t bytes)
{
	/* A frame is a page and its 24-byte header. */
	sp->wal_max_frames = bytes / (sp->page_size + 24);
}

void telespool__set_checkpoint(telespool *sp, int64_t pages)
{
	sp->ckpt_frames = pages > 0 ? pages : 1;
}

/* The busy handler of a RESTART checkpoint: *ctx ms, in 200 us steps. */
static int restart_wait(void *ctx, int count)
{
	if (count >= *(const int *)ctx * 5)
		return 0;
	sleep_us(200);
	return 1;
}

/*
 * One checkpoint of this connection; returns the frames the log holds once
 * it is done (0 when all of them are copied: the next commit starts the
 * log over), or -1 when another connection was checkpointing.  PASSIVE
 * copies what the readers let through without waiting.  That is not
 * enough while other connections commit all the time: some commit always
 * lands while it copies, so the log never runs dry and never starts over
 * (checkpoint starvation).  So when it leaves frames behind, a RESTART
 * checkpoint copies the rest holding the writers off, waiting a little
 * (WAL_RESTART_WAIT_MS) for them and for the readers.  A reader holding a
 * transaction open still wins: then it costs that wait (the other writers
 * too), and the next RESTART waits 10 ms, then twice as long each time up
 * to 100 ms: 2 % of a handle's time while a reader pins the log.  wait_ms
 * is how long the RESTART may wait; force ignores that back-off (the log
 * is at its bound, see telespool__wal_room()).
 */
static int64_t checkpoint(telespool *sp, sqlite3 *db, const char *name,
			  int wait_ms, int force)
{
	int log = -1, done = -1;
	int src = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE,
					    &log, &done);
	if (log >= 0 && done >= log) {
		sp->restart_fails = 0;
		sp->restart_ms = 0;
		return 0;
	}
	int64_t now = monotonic_ms();
	if (now < sp->restart_ms && !force)
		return src == SQLITE_OK ? log : -1;
	sqlite3_busy_handler(db, restart_wait, &wait_ms);
	/* SQLite never calls the busy handler for the checkpoint lock, which
	 * another connection's (short) checkpoint may hold. */
	for (int i = 0; i <= wait_ms * 5; i++) {
		if (i > 0)
			sleep_us(200);
		src = sqlite3_wal_checkpoint_v2(
		    db, name, SQLITE_CHECKPOINT_RESTART, &log, &done);
		if (src != SQLITE_BUSY || log >= 0)
			break;
	}
	sqlite3_busy_handler(db, busy_wait, sp);
	if (log >= 0 && done >= log) {
		sp->restart_fails = 0;
		sp->restart_ms = 0;
		return 0;
	}
	/* A reader kept it from copying everything: it may hold on for
	 * long, so wait longer each time (10 ms, doubling up to 100 ms). */
	if (log >= 0) {
		int n = sp->restart_fails < 4 ? sp->restart_fails++ : 4;
		int64_t wait = (int64_t)WAL_RETRY_MS << n;
		sp->restart_ms = now + (wait < 100 ? wait : 100);
	}
	return log;
}

/*
 * After each commit of this connection: SQLite's own auto-checkpoint (a
 * checkpoint once the log holds ckpt_frames, escalated as checkpoint()
 * says), keeping the log's size for telespool__wal_room().  The bound
 * keeps the log, and so each lookup in it, from growing without end.
 */
static int wal_hook(void *ctx, sqlite3 *db, const char *name, int frames)
{
	telespool *sp = ctx;

	sp->wal_frames = frames;
	if (frames >= sp->ckpt_frames &&
	    checkpoint(sp, db, name, WAL_RESTART_WAIT_MS, 0) == 0)
		sp->wal_frames = 0; /* the next commit starts the log over */
	return SQLITE_OK;
}

/*
 * At the bound the short RESTART of wal_hook() is not enough proof that a
 * reader pins the log: on a loaded machine another writer of the same file
 * can be descheduled inside its transaction for longer than 2 ms.  So
 * before refusing, a RESTART may wait up to half the busy timeout (at most
 * WAL_BOUND_WAIT_MS), well inside the bound every call already has.  A
 * reader that outlasts it is taken for one that holds on: the next such
 * wait comes WAL_RETRY_MS later, then twice as late each time up to
 * WAL_BOUND_RETRY_MAX_MS (one call a second per handle pays the wait while
 * a reader pins the log; the others are refused at once).
 */
#define WAL_BOUND_WAIT_MS      100
#define WAL_BOUND_RETRY_MAX_MS 1000

int telespool__wal_room(telespool *sp)
{
	if (sp->wal_frames <= sp->wal_max_frames)
		return TELESPOOL_OK;
	int64_t now = monotonic_ms();
	if (now >= sp->wal_retry_ms) {
		int wait = sp->busy_timeout_ms / 2;
		if (wait > WAL_BOUND_WAIT_MS)
			wait = WAL_BOUND_WAIT_MS;
		if (wait < WAL_RESTART_WAIT_MS)
			wait = WAL_RESTART_WAIT_MS;
		int64_t left = checkpoint(sp, sp->db, NULL, wait, 1);
		/* All copied, or someone else's commit started it over. */
		if (left >= 0 && left <= sp->wal_max_frames) {
			sp->wal_frames = left;
			sp->wal_retry_gap = 0;
			return TELESPOOL_OK;
		}
		sp->wal_retry_gap = sp->wal_retry_gap == 0
					? WAL_RETRY_MS
					: sp->wal_retry_gap * 2;
		if (sp->wal_retry_gap > WAL_BOUND_RETRY_MAX_MS)
			sp->wal_retry_gap = WAL_BOUND_RETRY_MAX_MS;
		sp->wal_retry_ms = monotonic_ms() + sp->wal_retry_gap;
	}
	return telespool__fail(
	    sp, TELESPOOL_EFULL,
	    "the write-ahead log is at its bound (%lld KiB): a reader has "
	    "held a transaction open since before it filled, so no checkpoint "
	    "can start it over; nothing was written (a record call counts its "
	    "event in drops as wal_pinned)",
	    (long long)(sp->wal_max_frames * (sp->page_size + 24) / 1024));
}

/* Connection settings and schema; on failure db is left for the caller. */
static int setup(telespool *sp, sqlite3 *db, const char *path)
{
	int src, v = 0, tables = 0, busy_ms = sp->busy_timeout_ms;

	sqlite3_extended_result_codes(db, 1);
	sqlite3_busy_handler(db, busy_wait, sp);
	sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
	sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);

	/* Read before writing anything: a newer schema or a file that is not
	 * a database must be left exactly as it is. */
	src = schema_state(db, &v, &tables);
	if (src != SQLITE_OK)
		return db_fail(db, src, path, "reading the schema version",
			       busy_ms);
	if (v > telespool__migrations[telespool__n_migrations - 1].version)
		return open_fail(
		    TELESPOOL_ESCHEMA,
		    "%s: schema version %d was written by a newer "
		    "telespool (this one knows up to %d); the file is "
		    "left untouched",
		    path, v,
		    telespool__migrations[telespool__n_migrations - 1].version);
	if (v == 0 && tables > 0)
		return open_fail(
		    TELESPOOL_ECORRUPT,
		    "%s: is an SQLite database but not a telespool "
		    "spool (it has %d tables and no telespool schema "
		    "version); the file is left untouched",
		    path, tables);
	if (tables == 0) {
		/* No auto_vacuum: keeping its pointer map cost every record
		 * call about a tenth of its time; the uploader rewrites a
		 * mostly empty file instead (queue.c, give_back_space).  Only
		 * takes effect before the first table exists; spools made
		 * before 0002 keep INCREMENTAL. */
		src = sqlite3_exec(db, "PRAGMA auto_vacuum = NONE", NULL, NULL,
				   NULL);
		if (src != SQLITE_OK)
			return db_fail(db, src, path, "setting auto_vacuum",
				       busy_ms);
	}

	src = set_wal(sp, db);
	if (src != SQLITE_OK)
		return db_fail(db, src, path, "switching to WAL mode", busy_ms);

	/* NORMAL syncs the WAL at checkpoints only: a commit survives the
	 * host's crash, not the OS's.  FULL syncs it at every commit. */
	int64_t wal_limit = telespool__wal_limit(sp->max_bytes);
	int64_t ckpt_bytes =
	    wal_limit / 2 < HOST_CHECKPOINT ? wal_limit / 2 : HOST_CHECKPOINT;
	char sql[160];
	snprintf(sql, sizeof(sql),
		 "PRAGMA synchronous = %s; PRAGMA journal_size_limit = %lld;"
		 " PRAGMA foreign_keys = OFF",
		 sp->durability == TELESPOOL_DURABILITY_FULL ? "FULL"
							     : "NORMAL",
		 (long long)ckpt_bytes);
	src = sqlite3_exec(db, sql, NULL, NULL, NULL);
	sqlite3_stmt *ps;
	sp->page_size = 4096;
	if (src == SQLITE_OK && sqlite3_prepare_v2(db, "PRAGMA page_size", -1,
						   &ps, NULL) == SQLITE_OK) {
		if (sqlite3_step(ps) == SQLITE_ROW)
			sp->page_size = sqlite3_column_int64(ps, 0);
		sqlite3_finalize(ps);
	}
	if (src == SQLITE_OK) {
		telespool__set_wal_limit(sp, wal_limit);
		sp->wal_frames = 0;
		sqlite3_wal_hook(db, wal_hook, sp);
		telespool__set_checkpoint(sp, ckpt_bytes / sp->page_size);
	}
	if (src != SQLITE_OK)
		return db_fail(db, src, path, "configuring the connection",
			       busy_ms);

	char err[384];
	int rc = telespool__migrate(db, err, sizeof(err));
	if (rc != TELESPOOL_OK)
		return open_fail(rc, "%s: %s%s", path, err, hint(rc, busy_ms));
	return TELESPOOL_OK;
}

static void close_db(sqlite3 *db)
{
	if (db != NULL)
		sqlite3_close_v2(db);
}

/* Moves a corrupt spool and its -wal/-shm aside to
 * PATH.corrupt-YYYYMMDDTHHMMSSZ (then .1, .2, ... rather than overwrite an
 * earlier one), keeping them for a human. */
static int move_aside(const char *path, char *moved, size_t movedlen)
{
	char iso[TELESPOOL_ISO_LEN], stamp[24];
	size_t j = 0;
	struct stat st;

	telespool__iso(telespool__now_ms(), iso);
	for (size_t i = 0; i < 19 && j + 1 < sizeof(stamp); i++)
		if (iso[i] != '-' && iso[i] != ':')
			stamp[j++] = iso[i];
	stamp[j++] = 'Z';
	stamp[j] = '\0';
	snprintf(moved, movedlen, "%s.corrupt-%s", path, stamp);
	for (int n = 1; lstat(moved, &st) == 0 && n < 1000; n++)
		snprintf(moved, movedlen, "%s.corrupt-%s.%d", path, stamp, n);
	if (rename(path, moved) != 0)
		return -1;

	static const char *const side[] = {"-wal", "-shm"};
	for (size_t i = 0; i < 2; i++) {
		char from[4096], to[4400];
		snprintf(from, sizeof(from), "%s%s", path, side[i]);
		snprintf(to, sizeof(to), "%s%s", moved, side[i]);
		if (rename(from, to) != 0 && errno != ENOENT)
			unlink(from);
	}
	return 0;
}

/*
 * With on_corrupt = MOVE_ASIDE, damage anywhere in the file must be found
 * at open, not only in the pages the open happens to read: PRAGMA
 * quick_check reads every page once (O(file size), about a second for a
 * full 128 MiB spool).
 */
static int quick_check(telespool *sp, sqlite3 *db)
{
	sqlite3_stmt *st;
	int src =
	    sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &st, NULL);
	if (src != SQLITE_OK)
		return db_fail(db, src, sp->path, "checking the file",
			       sp->busy_timeout_ms);
	src = sqlite3_step(st);
	int rc = TELESPOOL_OK;
	if (src == SQLITE_ROW) {
		const char *r = (const char *)sqlite3_column_text(st, 0);
		if (r == NULL || strcmp(r, "ok") != 0)
			rc =
			    open_fail(TELESPOOL_ECORRUPT, "%s: damaged: %.300s",
				      sp->path, r ? r : "(no answer)");
	} else {
		rc = db_fail(db, src, sp->path, "checking the file",
			     sp->busy_timeout_ms);
	}
	sqlite3_finalize(st);
	return rc;
}

void telespool__dir_of(const char *path, char *dir, size_t len)
{
	const char *slash = strrchr(path, '/');
	if (slash == NULL)
		snprintf(dir, len, ".");
	else if (slash == path)
		snprintf(dir, len, "/");
	else
		snprintf(dir, len, "%.*s", (int)(slash - path), path);
}

/*
 * Who has the spool open.  Every handle holds a shared flock(2) on the
 * spool's directory for its whole life; moving a damaged spool aside takes
 * it exclusively, so it never renames a file another handle (in any
 * process, this one included) has open, and no handle opens the path while
 * it is being renamed.  A flock is not a POSIX lock: it does not touch
 * SQLite's locks, and closing it does not drop them (a second descriptor of
 * the spool file itself would, when closed).  The directory, not a lock
 * file of its own, so that a spool adds no file next to it: a handle of
 * another spool in the same directory makes a move aside wait its turn
 * too, which is merely cautious.  -1 when the directory cannot be opened
 * (no read permission): then nothing is ever moved aside.
 */
static int lock_dir(const char *path, int busy_ms, int *fd_out)
{
	char dir[4096];

	*fd_out = -1;
	telespool__dir_of(path, dir, sizeof(dir));
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return TELESPOOL_OK;
	int64_t start = monotonic_ms();
	while (flock(fd, LOCK_SH | LOCK_NB) != 0) {
		if ((errno != EWOULDBLOCK && errno != EINTR) ||
		    monotonic_ms() - start >= busy_ms) {
			int e = errno;
			close(fd);
			if (e != EWOULDBLOCK)
				return TELESPOOL_OK; /* no flock here */
			return open_fail(TELESPOOL_EBUSY,
					 "%s: another process is moving a "
					 "damaged spool aside in %s (waited %d "
					 "ms)",
					 path, dir, busy_ms);
		}
		sleep_us(500);
	}
	*fd_out = fd;
	return TELESPOOL_OK;
}

/*
 * The uploader opens the spool with the default bounds, not LangBot's: a
 * handle given its own max_bytes leaves its WAL bound in uploader_state
 * ('wal_limit', bytes), which telespool__run_start() holds the uploader to
 * when it is tighter.  Best effort, and written only when it changes.
 */
static void share_wal_limit(telespool *sp)
{
	char w[24];
	sqlite3_stmt *st;
	snprintf(w, sizeof(w), "%lld",
		 (long long)telespool__wal_limit(sp->max_bytes));
	if (sqlite3_prepare_v2(sp->db,
			       "INSERT INTO uploader_state (key, value)"
			       " VALUES ('wal_limit', ?1) ON CONFLICT (key)"
			       " DO UPDATE SET value = excluded.value"
			       " WHERE value IS NOT excluded.value",
			       -1, &st, NULL) != SQLITE_OK)
		return;
	sqlite3_bind_text(st, 1, w, -1, SQLITE_STATIC);
	(void)sqlite3_step(st);
	sqlite3_finalize(st);
}

/*
 * The file a spool path names, through symbolic links: SQLite keeps the WAL
 * beside that file, so the directory lock, moving aside, the purge of the
 * moved copies and creating a new spool must act there too, never on the
 * link (realpath(3) would not resolve a link to a file not made yet).
 * malloc'd; NULL when out of memory.
 */
static char *resolve_links(const char *path)
{
	char cur[4096], target[4096], next[8200];
	snprintf(cur, sizeof(cur), "%s", path);
	for (int hops = 0; hops < 40; hops++) {
		ssize_t n = readlink(cur, target, sizeof(target) - 1);
		if (n < 0)
			break; /* not a link, or nothing there */
		target[n] = '\0';
		const char *slash = strrchr(cur, '/');
		if (target[0] == '/' || slash == NULL)
			snprintf(next, sizeof(next), "%s", target);
		else
			snprintf(next, sizeof(next), "%.*s/%s",
				 (int)(slash - cur), cur, target);
		if (strlen(next) >= sizeof(cur))
			break;
		memcpy(cur, next, strlen(next) + 1);
	}
	return strdup(cur);
}

/* Opens sp->path into sp->db with the settings and schema of a spool. */
static int open_db(telespool *sp)
{
	sqlite3 *db = NULL;
	int rc = create_private(sp->path);

	if (rc != TELESPOOL_OK)
		return rc;
	int src = sqlite3_open_v2(sp->path, &db,
				  SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
				      SQLITE_OPEN_EXRESCODE,
				  NULL);
	if (src != SQLITE_OK) {
		rc = db_fail(db, src, sp->path, "opening", sp->busy_timeout_ms);
		close_db(db);
		return rc;
	}
	rc = setup(sp, db, sp->path);
	if (rc == TELESPOOL_OK && sp->verify_on_open)
		rc = quick_check(sp, db);
	if (rc != TELESPOOL_OK) {
		close_db(db);
		return rc;
	}
	sp->db = db;
	return TELESPOOL_OK;
}

/*
 * on_corrupt = MOVE_ASIDE, once open_db() found the file damaged: renames it
 * (move_aside) and opens a new spool in its place, counting the loss.  Only
 * a file nobody else has open (lock_dir): a live writer would go on writing
 * into the moved file, never to be sent nor purged.  Returns a telespool_rc,
 * with open_err set on failure; the caller closes sp.
 */
static int move_aside_and_reopen(telespool *sp, char *moved, size_t movedlen)
{
	char why[sizeof(open_err)];
	memcpy(why, open_err, sizeof(why));
	if (sp->dir_fd < 0 || flock(sp->dir_fd, LOCK_EX | LOCK_NB) != 0) {
		int e = sp->dir_fd < 0 ? 0 : errno;
		return open_fail(
		    TELESPOOL_ECORRUPT, "%s; not moved aside: %s", why,
		    e == EWOULDBLOCK
			? "another telespool handle (LangBot or the "
			  "uploader) has it open; stop them, then open "
			  "it again"
		    : e == 0 ? "its directory cannot be locked, so "
			       "whether another process has it open is "
			       "unknown"
			     : strerror(e));
	}
	if (move_aside(sp->path, moved, movedlen) != 0) {
		int e = errno;
		return open_fail(TELESPOOL_ECORRUPT,
				 "%s; moving it aside failed: %s", why,
				 strerror(e));
	}
	int rc = open_db(sp);
	if (rc == TELESPOOL_OK) {
		char iso[TELESPOOL_ISO_LEN];
		telespool__iso(telespool__now_ms(), iso);
		rc = telespool__begin(sp);
		if (rc == TELESPOOL_OK)
			rc = telespool__count_drop(sp, "corrupt_spool", 1, iso);
		if (rc == TELESPOOL_OK)
			rc = telespool__commit(sp);
		else
			telespool__rollback(sp);
		if (rc != TELESPOOL_OK)
			snprintf(open_err, sizeof(open_err), "%s", sp->errmsg);
	}
	flock(sp->dir_fd, LOCK_SH); /* never blocks: we hold it */
	return rc;
}

int telespool_open(telespool **out, const char *path,
		   const telespool_options *opts)
{
	telespool_options defaults = TELESPOOL_OPTIONS_INIT;
	char moved[4300] = "";

	open_err[0] = '\0';
	if (out == NULL)
		return open_fail(TELESPOOL_EINVAL, "out is NULL");
	*out = NULL;
	if (path == NULL || path[0] == '\0')
		return open_fail(TELESPOOL_EINVAL, "path is NULL or empty");
	if (strlen(path) >= 4000)
		return open_fail(TELESPOOL_EINVAL, "path is too long");
	if (opts == NULL)
		opts = &defaults;
	int rc = check_options(opts);
	if (rc != TELESPOOL_OK)
		return rc;

	telespool *sp = calloc(1, sizeof(*sp));
	if (sp == NULL)
		return open_fail(TELESPOOL_ENOMEM, "out of memory");
	pthread_mutex_init(&sp->mu, NULL);
	sp->dir_fd = -1;
	sp->path = resolve_links(path);
	sp->instance_id = dup_clean(opts->instance_id);
	sp->version = dup_clean(opts->version);
	sp->edition = opts->edition ? dup_clean(opts->edition) : NULL;
	sp->instance_create_ts = opts->instance_create_ts;
	sp->busy_timeout_ms = opts->busy_timeout_ms > 0
				  ? opts->busy_timeout_ms
				  : TELESPOOL_DEFAULT_BUSY_TIMEOUT_MS;
	sp->busy_rng = (unsigned)getpid() ^ (unsigned)(uintptr_t)sp;
	sp->max_events = opts->max_events > 0 ? opts->max_events
					      : TELESPOOL_DEFAULT_MAX_EVENTS;
	sp->max_bytes =
	    opts->max_bytes > 0 ? opts->max_bytes : TELESPOOL_DEFAULT_MAX_BYTES;
	sp->max_age_ms =
	    (int64_t)(opts->max_age_days > 0 ? opts->max_age_days
					     : TELESPOOL_DEFAULT_MAX_AGE_DAYS) *
	    86400000;
	sp->disabled = opts->disabled != 0;
	sp->strict_errors = opts->strict_errors != 0;
	sp->verify_on_open = opts->on_corrupt == TELESPOOL_CORRUPT_MOVE_ASIDE;
	sp->durability = opts->struct_version >= 2
			     ? opts->durability
			     : TELESPOOL_DURABILITY_NORMAL;
	if (sp->path == NULL || sp->instance_id == NULL ||
	    sp->version == NULL || (opts->edition && sp->edition == NULL)) {
		telespool_close(sp);
		return open_fail(TELESPOOL_ENOMEM, "out of memory");
	}

	rc = lock_dir(sp->path, sp->busy_timeout_ms, &sp->dir_fd);
	if (rc != TELESPOOL_OK) {
		telespool_close(sp);
		return rc;
	}
	rc = open_db(sp);
	if (rc == TELESPOOL_ECORRUPT &&
	    opts->on_corrupt == TELESPOOL_CORRUPT_MOVE_ASIDE)
		rc = move_aside_and_reopen(sp, moved, sizeof(moved));
	/* An opt-out purge that a kill -9 or a reader interrupted is finished
	 * before anything else.  Best effort and without waiting for locks
	 * (the open's bound stands): the spool opens either way, the next
	 * open or run tries again, and --status tells meanwhile. */
	if (rc == TELESPOOL_OK) {
		sqlite3_busy_handler(sp->db, NULL, NULL);
		(void)telespool__purge_resume(sp);
		if (opts->max_bytes > 0 && !sp->disabled)
			share_wal_limit(sp);
		sqlite3_busy_handler(sp->db, busy_wait, sp);
	}
	if (rc != TELESPOOL_OK) {
		telespool_close(sp);
		return rc;
	}
	sp->errmsg[0] = '\0';
	if (moved[0])
		snprintf(open_err, sizeof(open_err),
			 "%.200s was damaged and was moved aside to %.250s",
			 path, moved);
	*out = sp;
	return TELESPOOL_OK;
}

const char *telespool_open_errmsg(void)
{
	return open_err;
}

/* save_drops()'s busy handler: a few ms, what another handle's RESTART
 * checkpoint may hold the file for (about twice WAL_RESTART_WAIT_MS). */
static int close_wait(void *ctx, int count)
{
	(void)ctx;
	if (count >= WAL_RESTART_WAIT_MS * 12)
		return 0;
	sleep_us(200);
	return 1;
}

/* Drops counted in memory only (the disk or the WAL was full) are
 * written now if the file takes them within a few ms: close hardly
 * waits. */
static void save_drops(telespool *sp)
{
	int any = 0;
	for (int i = 0; i < DROP__COUNT; i++)
		any |= sp->unsaved_drops[i] != 0;
	if (!any || sp->db == NULL)
		return;
	char iso[TELESPOOL_ISO_LEN];
	telespool__iso(telespool__now_ms(), iso);
	sqlite3_busy_handler(sp->db, close_wait, NULL);
	sp->restart_ms = INT64_MAX; /* nor hold the others off (checkpoint) */
	if (telespool__begin(sp) != TELESPOOL_OK)
		return;
	if (telespool__flush_drops(sp, iso) == TELESPOOL_OK)
		telespool__commit(sp);
	else
		telespool__rollback(sp);
}

void telespool_close(telespool *sp)
{
	if (sp == NULL)
		return;
	save_drops(sp);
	for (int i = 0; i < STMT__COUNT; i++)
		sqlite3_finalize(sp->stmt[i]);
	for (size_t i = 0; i < sizeof(sp->qstmt) / sizeof(sp->qstmt[0]); i++)
		sqlite3_finalize(sp->qstmt[i]);
	close_db(sp->db);
	if (sp->dir_fd >= 0)
		close(sp->dir_fd);
	pthread_mutex_destroy(&sp->mu);
	free(sp->path);
	free(sp->instance_id);
	free(sp->version);
	free(sp->edition);
	free(sp);
}

void telespool_free(void *p)
{
	free(p);
}

const char *telespool_errmsg(const telespool *sp)
{
	if (sp == NULL)
		return "no spool handle (NULL)";
	return sp->errmsg;
}

const char *telespool_strerror(int rc)
{
	switch (rc) {
	case TELESPOOL_OK:
		return "ok";
	case TELESPOOL_ERROR:
		return "unexpected error";
	case TELESPOOL_EINVAL:
		return "invalid argument";
	case TELESPOOL_EBUSY:
		return "spool is locked by another connection (busy timeout)";
	case TELESPOOL_EFULL:
		return "disk full: event not stored";
	case TELESPOOL_ESCHEMA:
		return "spool was written by a newer telespool";
	case TELESPOOL_EDISABLED:
		return "telemetry is disabled (opted out): nothing stored";
	case TELESPOOL_ECORRUPT:
		return "spool file is not a telespool database or is damaged";
	case TELESPOOL_EIO:
		return "cannot open, read or write the spool file";
	case TELESPOOL_ENOMEM:
		return "out of memory";
	default:
		return "unknown telespool return code";
	}
}

const char *telespool_version(void)
{
	return TELESPOOL_VERSION_STRING;
}

const char *telespool__path(const telespool *sp)
{
	return sp->path;
}
