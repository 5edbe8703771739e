/*
 * drain.h - one run of telespool-upload: read the config, purge on opt-out,
 * or drain due events to LangBot Space in batches and record what happened.
 */
#ifndef TSU_DRAIN_H
#define TSU_DRAIN_H

#include "options.h"

/* Runs once; returns one of the TSU_EXIT_* codes.  Prints one summary line
 * on stderr (more with verbose).  stop, if non-NULL, is polled and counts
 * stop signals: at 1 (SIGTERM) nothing more is claimed or started, the
 * requests in flight get up to o->stop_timeout_s to finish and their
 * outcomes are recorded; past that, or at 2 (a second signal), they are
 * abandoned at once.  Rows not sent are released and the run ends cleanly
 * (outcome "stopped", or "interrupted" when requests were abandoned). */
int tsu_drain(const tsu_options *o, volatile int *stop);

#endif
