/*
 * watch.c - the config file during a run: a change that opts out stops
 * sending at once (inotify wakes the transport; a stat decides); one that
 * breaks the file or changes how the run sends (space.url, the proxy)
 * starts nothing more and lets the requests in flight finish; a file being
 * rewritten gets a bounded time to settle, and one that comes back sending
 * the same way changes nothing.
 */
#include "watch.h"

#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "http.h"
#include "say.h"

/* A config that fails to load gets this long to become readable (it may be
 * in the middle of a rewrite), read again every CONFIG_RETRY_MS. */
#define CONFIG_SETTLE_MS 2000
#define CONFIG_RETRY_MS  50

static int same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev &&
	       a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	       a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* The config file itself, whichever file the path names now (a no-op
 * when it is the one watched already, as inotify keys watches by inode). */
static void watch_config_file(tsu_watch *w)
{
	(void)inotify_add_watch(w->fd, w->o->config_path,
				IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB);
}

/*
 * Loads the config into *cfg, giving a file that fails to load up to
 * CONFIG_SETTLE_MS to become readable: LangBot rewrites data/config.yaml in
 * place at every start (truncate, then write), and an opt-out edited in
 * place goes through an empty or partial file.  A load counts only if the
 * file did not change while it was read.  During a run (want set), a
 * config that is not an opt-out must also still send the way the run's
 * does: a partial file can parse (without its space section) and must not
 * be taken for the new config.  *seen gets the file's identity as read.
 */
tsu_settle_rc tsu_config_load_settled(const tsu_options *o, tsu_config *cfg,
				      struct stat *seen, char *err,
				      size_t errlen, volatile int *stop,
				      const tsu_config *want)
{
	int64_t until = tsu_monotonic_ms() + CONFIG_SETTLE_MS;
	int said = 0;
	tsu_settle_rc rc;

	for (;;) {
		struct stat after;
		rc = TSU_SETTLE_ERROR;
		if (stat(o->config_path, seen) != 0)
			memset(seen, 0, sizeof(*seen));
		if (tsu_config_load(cfg, o->config_path, o->data_dir, err,
				    errlen) == 0) {
			if (stat(o->config_path, &after) != 0)
				memset(&after, 0, sizeof(after));
			if (!same_file(seen, &after)) {
				snprintf(err, errlen,
					 "%s: changed while being read",
					 o->config_path);
			} else if (!want || cfg->disable_telemetry ||
				   tsu_config_same_sending(cfg, want)) {
				return TSU_SETTLE_OK;
			} else {
				snprintf(err, errlen,
					 "%s: the Space settings (space.url, "
					 "the proxy) changed during the run",
					 o->config_path);
				rc = TSU_SETTLE_CHANGED;
			}
			tsu_config_free(cfg);
		}
		if (tsu_monotonic_ms() >= until || (stop && *stop))
			return rc;
		if (!said) {
			tsu_say(
			    "%s; waiting up to %d ms for it to be rewritten",
			    err, CONFIG_SETTLE_MS);
			said = 1;
		}
		struct timespec ts = {0, CONFIG_RETRY_MS * 1000000L};
		nanosleep(&ts, NULL);
	}
}

/* The config file changed (its identity is now st): read it again and
 * say what the run does (tsu_watch_must_stop()). */
static int reread(tsu_watch *w, const struct stat *st)
{
	struct stat after;
	tsu_config c;
	char err[512];

	if (tsu_config_load(&c, w->o->config_path, w->o->data_dir, err,
			    sizeof(err)) != 0) {
		/* Start nothing until it is readable again (settle()). */
		w->unsettled = 1;
		return TSU_CHECK_HOLD;
	}
	w->optout_seen = c.disable_telemetry != 0;
	if (stat(w->o->config_path, &after) != 0)
		memset(&after, 0, sizeof(after));
	/* Read mid-write, or a partial file that sends differently (without
	 * its space section): start nothing and read it again (settle()).
	 * The same settings again: a rewrite that changed nothing the run
	 * uses, and the requests go on. */
	w->unsettled =
	    !w->optout_seen &&
	    (!same_file(st, &after) || !tsu_config_same_sending(&c, w->run));
	tsu_config_free(&c);
	return w->optout_seen ? TSU_CHECK_ABORT
	       : w->unsettled ? TSU_CHECK_HOLD
			      : TSU_CHECK_GO;
}

int tsu_watch_must_stop(void *ctx)
{
	tsu_watch *w = ctx;
	struct stat st;

	if (w->optout_seen || w->broken)
		return TSU_CHECK_ABORT;
	if (w->fd >= 0) {
		/* Empty the queue (the stat below decides), so that the
		 * descriptor does not stay readable; a file renamed over the
		 * config is a new one to watch. */
		char ev[4096];
		int any = 0;
		while (read(w->fd, ev, sizeof(ev)) > 0)
			any = 1;
		if (any)
			watch_config_file(w);
	}
	if (stat(w->o->config_path, &st) != 0)
		memset(&st, 0, sizeof(st));
	if (same_file(&st, &w->seen))
		return w->changed || w->unsettled ? TSU_CHECK_HOLD
						  : TSU_CHECK_GO;
	w->seen = st;
	/* Settings changed for good: only an opt-out can still come. */
	int rc = reread(w, &st);
	return rc == TSU_CHECK_GO && w->changed ? TSU_CHECK_HOLD : rc;
}

/*
 * The config failed to load, changed while read or sends differently
 * during the run: nothing new has started; wait a bounded time for it to
 * settle.  Returns 1 when the run may go on sending, 0 when it must stop
 * (opted out: optout_seen; still unreadable: broken; sending differently
 * for good: changed; a stop signal: none of these set, as the file was
 * not given its time).
 */
int tsu_watch_settle(tsu_watch *w)
{
	tsu_config c;
	char err[512];

	w->unsettled = 0;
	tsu_settle_rc rc = tsu_config_load_settled(
	    w->o, &c, &w->seen, err, sizeof(err), w->stop, w->run);
	if (rc == TSU_SETTLE_CHANGED) {
		/* Edited for good: the new settings are for the next run. */
		w->changed = 1;
		return 0;
	}
	if (rc != TSU_SETTLE_OK && w->stop && *w->stop)
		return 0; /* a stop signal, not a broken config: the next run
			     reads it */
	if (rc != TSU_SETTLE_OK) {
		tsu_say("%s; stopping", err);
		w->broken = 1;
		return 0;
	}
	w->optout_seen = c.disable_telemetry != 0;
	tsu_config_free(&c);
	return !w->optout_seen;
}

/*
 * inotify on the config file (changes in place) and on its directory (an
 * editor's rename over it, a new file): the spool's own writes in the same
 * directory wake nothing.  Without it (no inotify, a full watch table)
 * tsu_watch_must_stop() still runs every 100 ms.  A change before the watch exists
 * is caught by the first stat.
 */
void tsu_watch_start(tsu_watch *w)
{
	char dir[4096];
	const char *path = w->o->config_path;
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->fd < 0)
		return;
	if (inotify_add_watch(w->fd, dir,
			      IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE |
				  IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF) <
	    0) {
		close(w->fd);
		w->fd = -1;
		return;
	}
	watch_config_file(w);
}

void tsu_watch_close(tsu_watch *w)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
}
