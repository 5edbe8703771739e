/*
 * purge.h - what the rest of the library needs of the opt-out purge
 * (telespool__purge() itself is the uploader's, in queue.h).
 */
#ifndef TELESPOOL_PURGE_H
#define TELESPOOL_PURGE_H

#include "telespool.h"

/* The uploader_state key of a purge whose deletion committed but whose
 * cleanup (VACUUM, WAL, side files) has not finished: its start time. */
#define TELESPOOL__PURGE_MARK "purge_incomplete"

/* Finishes a purge that committed its deletion but was interrupted (kill
 * -9, a reader): called by telespool_open() before anything else.  OK when
 * there is none or it is now finished; otherwise as telespool__purge()
 * (the mark stays for the next try). */
int telespool__purge_resume(telespool *sp);

#endif
