/*
 * drain.h - one run of telespool-upload: read the config, purge on opt-out,
 * or drain due events to LangBot Space in batches and record what happened.
 */
#ifndef TSU_DRAIN_H
#define TSU_DRAIN_H

#include "options.h"

/* Runs once; returns one of the TSU_EXIT_* codes.  Prints one summary line
 * on stderr (more with verbose).  stop, if non-NULL, is polled: when it
 * becomes non-zero (SIGTERM), in-flight requests are abandoned, their rows
 * released, and the run ends cleanly. */
int tsu_drain(const tsu_options *o, volatile int *stop);

#endif
