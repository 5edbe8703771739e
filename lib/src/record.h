/*
 * record.h - the record path's state on the handle (record.c implements
 * the public telespool_record_*() calls of telespool.h; nothing else).
 */
#ifndef TELESPOOL_RECORD_H
#define TELESPOOL_RECORD_H

#include <stdint.h>

/* How often the record path re-reads what a bound needs: the file's size
 * for max_bytes, the oldest row for max_age.  Owned by record.c. */
struct telespool__record_state {
	unsigned since_age_check;  /* records since max_age was checked */
	unsigned since_page_check; /* records since page_count was read */
	int64_t file_bytes;        /* page_count * page_size when last read */
};

#endif
