/*
 * open.c - opening and closing a spool: the options, the private new file,
 * the directory lock, the connection's settings (pragmas, WAL mode and its
 * bound), the schema (migrate.h), the check of a damaged file and moving
 * it aside, and finishing an interrupted purge (purge.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"
#include "error.h"
#include "migrate.h"
#include "purge.h"
#include "redact.h"
#include "spool.h"
#include "timefmt.h"
#include "uuid.h"
#include "wal.h"

static char *dup_clean(const char *s)
{
	return telespool__clean_name(s, s ? strlen(s) : 0, TELESPOOL_NAME_MAX);
}

static int check_options(const telespool_options *o)
{
	if (o->struct_version < 1 ||
	    o->struct_version > TELESPOOL_OPTIONS_VERSION)
		return telespool__open_fail(
		    TELESPOOL_EINVAL,
		    "options.struct_version %u is not supported (this "
		    "library knows 1..%d): initialise with "
		    "TELESPOOL_OPTIONS_INIT",
		    o->struct_version, TELESPOOL_OPTIONS_VERSION);
	if (o->busy_timeout_ms < 0 ||
	    o->busy_timeout_ms > TELESPOOL_MAX_BUSY_TIMEOUT_MS)
		return telespool__open_fail(
		    TELESPOOL_EINVAL,
		    "options.busy_timeout_ms %d is out of range 0..%d",
		    o->busy_timeout_ms, TELESPOOL_MAX_BUSY_TIMEOUT_MS);
	if (o->max_events < 0 || o->max_bytes < 0 || o->max_age_days < 0)
		return telespool__open_fail(
		    TELESPOOL_EINVAL,
		    "options.max_events, max_bytes and max_age_days "
		    "must not be negative");
	if (o->max_bytes > 0 && o->max_bytes < 2 * TELESPOOL_BODY_MAX)
		return telespool__open_fail(
		    TELESPOOL_EINVAL,
		    "options.max_bytes %lld is below the minimum %d",
		    (long long)o->max_bytes, 2 * TELESPOOL_BODY_MAX);
	if (o->max_age_days > 3650)
		return telespool__open_fail(
		    TELESPOOL_EINVAL,
		    "options.max_age_days %d is more than 3650",
		    o->max_age_days);
	if (o->on_corrupt != TELESPOOL_CORRUPT_REFUSE &&
	    o->on_corrupt != TELESPOOL_CORRUPT_MOVE_ASIDE)
		return telespool__open_fail(TELESPOOL_EINVAL,
					    "options.on_corrupt %d is unknown",
					    o->on_corrupt);
	if (o->struct_version >= 2 &&
	    o->durability != TELESPOOL_DURABILITY_NORMAL &&
	    o->durability != TELESPOOL_DURABILITY_FULL)
		return telespool__open_fail(
		    TELESPOOL_EINVAL,
		    "options.durability %d is unknown (0 normal, "
		    "1 full)",
		    o->durability);
	return TELESPOOL_OK;
}

static int create_error(const char *path, int e)
{
	char buf[128];
	if (e == ENOSPC || e == EDQUOT)
		return telespool__open_fail(
		    TELESPOOL_EFULL, "cannot create %s: %s", path,
		    telespool__strerror(e, buf, sizeof(buf)));
	return telespool__open_fail(TELESPOOL_EIO, "cannot open %s: %s", path,
				    telespool__strerror(e, buf, sizeof(buf)));
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
	char tmp[4200], ebuf[128];
	uint32_t r = 0;

	if (stat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return telespool__open_fail(
			    TELESPOOL_EIO, "cannot open %s: %s", path,
			    telespool__strerror(EISDIR, ebuf, sizeof(ebuf)));
		/* /dev/null, a FIFO, a terminal: SQLite would write its
		 * journal next to it (as root, /dev/null-journal). */
		if (!S_ISREG(st.st_mode))
			return telespool__open_fail(
			    TELESPOOL_EIO,
			    "cannot open %s: not a regular file; "
			    "nothing was written",
			    path);
		/* A clear reason now (read-only file system, immutable file,
		 * permissions), rather than SQLite's "unable to open" later. */
		if (faccessat(AT_FDCWD, path, R_OK | W_OK, AT_EACCESS) != 0)
			return telespool__open_fail(
			    TELESPOOL_EIO, "cannot open %s for writing: %s",
			    path,
			    telespool__strerror(errno, ebuf, sizeof(ebuf)));
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

/* PRAGMA journal_mode = WAL answers SQLITE_BUSY at once, without the busy
 * handler, while another connection holds a lock: retry it until the busy
 * timeout. */
static int set_wal(telespool *sp)
{
	int64_t start = telespool__monotonic_ms();
	char mode[16];

	for (;;) {
		int rc = telespool__read_text(
		    sp, telespool__prepare(sp, "PRAGMA journal_mode = WAL"),
		    "switching to WAL mode", mode, sizeof(mode));
		if (rc == TELESPOOL_OK && strcmp(mode, "wal") != 0)
			return telespool__fail(sp, TELESPOOL_EIO,
					       "switching to WAL mode: the "
					       "journal stays in mode '%s'",
					       mode);
		if (rc != TELESPOOL_EBUSY ||
		    telespool__monotonic_ms() - start >= sp->busy_timeout_ms)
			return rc;
		telespool__sleep_us(500 +
				    (long)(telespool__monotonic_ms() % 1500));
	}
}

/* Durability, the journal's size and the WAL's bound (wal.h). */
static int configure(telespool *sp)
{
	/* NORMAL syncs the WAL at checkpoints only: a commit survives the
	 * host's crash, not the OS's.  FULL syncs it at every commit. */
	int64_t wal_limit = telespool__wal_limit(sp->max_bytes);
	int64_t ckpt_bytes = telespool__host_checkpoint(wal_limit);
	int64_t page_size = 0;
	char sql[160];
	snprintf(sql, sizeof(sql),
		 "PRAGMA synchronous = %s; PRAGMA journal_size_limit = %lld;"
		 " PRAGMA foreign_keys = OFF",
		 sp->durability == TELESPOOL_DURABILITY_FULL ? "FULL"
							     : "NORMAL",
		 (long long)ckpt_bytes);
	int rc = telespool__exec_as(sp, sql, "configuring the connection");
	if (rc == TELESPOOL_OK)
		rc = telespool__read_int(
		    sp, telespool__prepare(sp, "PRAGMA page_size"),
		    "configuring the connection", &page_size);
	if (rc != TELESPOOL_OK)
		return rc;
	sp->page_size = page_size > 0 ? page_size : 4096;
	telespool__set_wal_limit(sp, wal_limit);
	telespool__set_checkpoint(sp, ckpt_bytes / sp->page_size);
	telespool__wal_attach(sp);
	return TELESPOOL_OK;
}

/* Connection settings and schema of sp->db; the message is the handle's. */
static int setup(telespool *sp)
{
	int fresh = 0;

	sqlite3_extended_result_codes(sp->db, 1);
	sqlite3_busy_handler(sp->db, telespool__busy_wait, sp);
	sqlite3_db_config(sp->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
	sqlite3_db_config(sp->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);

	/* Read before writing anything: a newer schema or a file that is not
	 * a database must be left exactly as it is. */
	int rc = telespool__schema_check(sp, &fresh);
	/* No auto_vacuum: keeping its pointer map cost every record call
	 * about a tenth of its time; the uploader rewrites a mostly empty
	 * file instead (expire.c, give_back_space).  Only takes effect before
	 * the first table exists; spools made before 0002 keep INCREMENTAL. */
	if (rc == TELESPOOL_OK && fresh)
		rc = telespool__exec_as(sp, "PRAGMA auto_vacuum = NONE",
					"setting auto_vacuum");
	if (rc == TELESPOOL_OK)
		rc = set_wal(sp);
	if (rc == TELESPOOL_OK)
		rc = configure(sp);
	if (rc == TELESPOOL_OK)
		rc = telespool__migrate(sp);
	return rc;
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
static int quick_check(telespool *sp)
{
	char r[320];
	int rc = telespool__read_text(
	    sp, telespool__prepare(sp, "PRAGMA quick_check(1)"),
	    "checking the file", r, sizeof(r));
	if (rc == TELESPOOL_OK && strcmp(r, "ok") != 0)
		rc = telespool__fail(sp, TELESPOOL_ECORRUPT, "damaged: %.300s",
				     r[0] ? r : "(no answer)");
	return rc;
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
	int64_t start = telespool__monotonic_ms();
	while (flock(fd, LOCK_SH | LOCK_NB) != 0) {
		if ((errno != EWOULDBLOCK && errno != EINTR) ||
		    telespool__monotonic_ms() - start >= busy_ms) {
			int e = errno;
			close(fd);
			if (e != EWOULDBLOCK)
				return TELESPOOL_OK; /* no flock here */
			return telespool__open_fail(
			    TELESPOOL_EBUSY,
			    "%s: another process is moving a "
			    "damaged spool aside in %s (waited %d "
			    "ms)",
			    path, dir, busy_ms);
		}
		telespool__sleep_us(500);
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
	snprintf(w, sizeof(w), "%lld",
		 (long long)telespool__wal_limit(sp->max_bytes));
	sqlite3_stmt *st =
	    telespool__prepare(sp, "INSERT INTO uploader_state (key, value)"
				   " VALUES ('wal_limit', ?1) ON CONFLICT (key)"
				   " DO UPDATE SET value = excluded.value"
				   " WHERE value IS NOT excluded.value");
	if (st != NULL)
		sqlite3_bind_text(st, 1, w, -1, SQLITE_STATIC);
	(void)telespool__step_done(sp, st, "sharing the WAL bound");
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

/* Opens sp->path into sp->db with the settings and schema of a spool;
 * on failure sets the open message and leaves sp->db NULL. */
static int open_db(telespool *sp)
{
	int rc = create_private(sp->path);

	if (rc != TELESPOOL_OK)
		return rc;
	int src = sqlite3_open_v2(sp->path, &sp->db,
				  SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
				      SQLITE_OPEN_EXRESCODE,
				  NULL);
	if (src != SQLITE_OK) {
		rc = telespool__open_db_fail(sp->db, src, sp->path, "opening",
					     sp->busy_timeout_ms);
		telespool__db_close(sp);
		return rc;
	}
	rc = setup(sp);
	if (rc == TELESPOOL_OK && sp->verify_on_open)
		rc = quick_check(sp);
	if (rc != TELESPOOL_OK) {
		telespool__open_fail(rc, "%s: %s", sp->path, sp->errmsg);
		telespool__db_close(sp);
	}
	return rc;
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
	char why[TELESPOOL__OPEN_ERR_LEN], ebuf[128];
	memcpy(why, telespool__open_err(), sizeof(why));
	if (sp->dir_fd < 0 || flock(sp->dir_fd, LOCK_EX | LOCK_NB) != 0) {
		int e = sp->dir_fd < 0 ? 0 : errno;
		return telespool__open_fail(
		    TELESPOOL_ECORRUPT, "%s; not moved aside: %s", why,
		    e == EWOULDBLOCK
			? "another telespool handle (LangBot or the "
			  "uploader) has it open; stop them, then open "
			  "it again"
		    : e == 0 ? "its directory cannot be locked, so "
			       "whether another process has it open is "
			       "unknown"
			     : telespool__strerror(e, ebuf, sizeof(ebuf)));
	}
	if (move_aside(sp->path, moved, movedlen) != 0) {
		int e = errno;
		return telespool__open_fail(
		    TELESPOOL_ECORRUPT, "%s; moving it aside failed: %s", why,
		    telespool__strerror(e, ebuf, sizeof(ebuf)));
	}
	int rc = open_db(sp);
	if (rc == TELESPOOL_OK) {
		char iso[TELESPOOL_ISO_LEN];
		telespool__iso(telespool__now_ms(), iso);
		rc = telespool__begin(sp);
		if (rc == TELESPOOL_OK)
			rc = telespool__count_drop(sp, "corrupt_spool", 1, iso);
		rc = telespool__end(sp, rc);
		if (rc != TELESPOOL_OK)
			telespool__open_fail(
			    rc,
			    "%s: %s (the damaged file was moved aside to %s)",
			    sp->path, sp->errmsg, moved);
	}
	flock(sp->dir_fd, LOCK_SH); /* never blocks: we hold it */
	return rc;
}

/* A handle for path with opts (checked), not open yet: *out, or NULL with
 * the open message set. */
static int new_handle(const char *path, const telespool_options *opts,
		      telespool **out)
{
	telespool *sp = calloc(1, sizeof(*sp));
	*out = NULL;
	if (sp == NULL)
		return telespool__open_fail(TELESPOOL_ENOMEM, "out of memory");
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
		return telespool__open_fail(TELESPOOL_ENOMEM, "out of memory");
	}
	*out = sp;
	return TELESPOOL_OK;
}

int telespool_open(telespool **out, const char *path,
		   const telespool_options *opts)
{
	telespool_options defaults = TELESPOOL_OPTIONS_INIT;
	char moved[4300] = "";

	telespool__open_err()[0] = '\0';
	if (out == NULL)
		return telespool__open_fail(TELESPOOL_EINVAL, "out is NULL");
	*out = NULL;
	if (path == NULL || path[0] == '\0')
		return telespool__open_fail(TELESPOOL_EINVAL,
					    "path is NULL or empty");
	if (strlen(path) >= 4000)
		return telespool__open_fail(TELESPOOL_EINVAL,
					    "path is too long");
	if (opts == NULL)
		opts = &defaults;
	int rc = check_options(opts);
	if (rc != TELESPOOL_OK)
		return rc;

	telespool *sp = NULL;
	rc = new_handle(path, opts, &sp);
	if (rc != TELESPOOL_OK)
		return rc;
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
		sqlite3_busy_handler(sp->db, telespool__busy_wait, sp);
	}
	if (rc != TELESPOOL_OK) {
		telespool_close(sp);
		return rc;
	}
	sp->errmsg[0] = '\0';
	if (moved[0])
		telespool__open_fail(
		    TELESPOOL_OK,
		    "%.200s was damaged and was moved aside to %.250s", path,
		    moved);
	*out = sp;
	return TELESPOOL_OK;
}

/* save_drops()'s busy handler: a few ms, what another handle's RESTART
 * checkpoint may hold the file for (about twice
 * TELESPOOL__WAL_RESTART_WAIT_MS). */
static int close_wait(void *ctx, int count)
{
	(void)ctx;
	if (count >= TELESPOOL__WAL_RESTART_WAIT_MS * 12)
		return 0;
	telespool__sleep_us(200);
	return 1;
}

/* Drops counted in memory only (the disk or the WAL was full) are
 * written now if the file takes them within a few ms: close hardly
 * waits. */
static void save_drops(telespool *sp)
{
	if (!telespool__drops_unsaved(sp) || sp->db == NULL)
		return;
	char iso[TELESPOOL_ISO_LEN];
	telespool__iso(telespool__now_ms(), iso);
	sqlite3_busy_handler(sp->db, close_wait, NULL);
	/* Nor hold the others off (checkpoint). */
	telespool__wal_closing(sp);
	if (telespool__begin(sp) != TELESPOOL_OK)
		return;
	(void)telespool__end(sp, telespool__flush_drops(sp, iso));
}

void telespool_close(telespool *sp)
{
	if (sp == NULL)
		return;
	save_drops(sp);
	telespool__db_close(sp);
	if (sp->dir_fd >= 0)
		close(sp->dir_fd);
	pthread_mutex_destroy(&sp->mu);
	free(sp->path);
	free(sp->instance_id);
	free(sp->version);
	free(sp->edition);
	free(sp);
}
