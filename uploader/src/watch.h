/*
 * watch.h - the config file during a run: what stops sending (an opt-out at
 * once; a broken file, other Space settings after the requests in flight)
 * and the wait for a file being rewritten to settle.
 */
#ifndef TSU_WATCH_H
#define TSU_WATCH_H

#include <stddef.h>
#include <sys/stat.h>

#include "config.h"
#include "options.h"

typedef struct tsu_watch {
	const tsu_options *o;  /* config_path and data_dir */
	volatile int *stop;    /* SIGTERM, or NULL */
	const tsu_config *run; /* the run's: other settings end its sending */
	struct stat seen;      /* the config file as last read */
	int fd;                /* inotify, or -1 */
	int optout_seen;       /* the config now says telemetry is disabled */
	int broken;            /* it became unreadable during the run */
	int unsettled;         /* it failed to load, or sends differently:
				  maybe being rewritten */
	int changed;           /* it sends differently for good */
} tsu_watch;

/* What tsu_config_load_settled() returns. */
typedef enum tsu_settle_rc {
	TSU_SETTLE_OK = 0,       /* loaded: *cfg to free */
	TSU_SETTLE_ERROR = -1,   /* still unreadable; err says why */
	TSU_SETTLE_CHANGED = -2, /* sends differently from want; err says
				    so; nothing to free */
} tsu_settle_rc;

/*
 * Loads the config into *cfg, giving a file that fails to load up to 2 s to
 * become readable (LangBot rewrites it in place: truncate, then write).  A
 * load counts only if the file did not change while it was read; with
 * want (during a run: the run's config), a config that is not an opt-out
 * must still send the same way (tsu_config_same_sending()).  *seen gets
 * the file's identity as read.
 */
tsu_settle_rc tsu_config_load_settled(const tsu_options *o, tsu_config *cfg,
				      struct stat *seen, char *err,
				      size_t errlen, volatile int *stop,
				      const tsu_config *want);

/* Starts inotify on the config file and its directory (w->fd; -1 when
 * inotify is unavailable: tsu_watch_must_stop() still works by polling). */
void tsu_watch_start(tsu_watch *w);
void tsu_watch_close(tsu_watch *w);

/*
 * Whether sending must stop now (ctx is the tsu_watch, as the transport's
 * check callback), as a tsu_check: TSU_CHECK_ABORT when the config now
 * disables telemetry (or became unreadable for good: broken), abandoning
 * the requests in flight; TSU_CHECK_HOLD while it fails to load, changes
 * while read or sends differently from the run's (unsettled: maybe a
 * rewrite under way), or sends differently for good (changed): nothing
 * starts, the requests in flight finish; TSU_CHECK_GO (0) otherwise,
 * including after a rewrite that left the sending settings as they were.
 * Cheap (one stat unless the file changed): asked between batches, and
 * while a batch is in flight every 100 ms and at once when inotify
 * reports a change.
 */
int tsu_watch_must_stop(void *ctx);

/*
 * After tsu_watch_must_stop() found the config unsettled: waits a bounded
 * time for it to load.  Returns 1 when the run may go on sending, 0 when it
 * must stop (optout_seen, broken or changed set; or none of them, on a stop
 * signal before it loaded: the next run reads it).
 */
int tsu_watch_settle(tsu_watch *w);

#endif
