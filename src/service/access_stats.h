/* access_count and last_accessed without a store write per read.
 *
 * Reads count in memory; a background thread adds the counts to the store
 * every flush interval (and at close) in one bulk write, never on a
 * request thread. Flushing changes no version record and invalidates no
 * cached copy: a record shows its counts merged at render time, from the
 * stored count it was read with, the totals this process last wrote, and
 * what is still pending here. Counts are exact per process and converge
 * across processes at each flush; they are statistics, not invariants.
 *
 * Thread safety: every function may be called from any thread; one mutex
 * guards the table and is never held during a store call. */
#ifndef STRATA_ACCESS_STATS_H
#define STRATA_ACCESS_STATS_H

#include <stdint.h>

#include "../store/store.h"

typedef struct access_stats access_stats;

/* NULL with err set (SERR_NOMEM, SERR_INTERNAL when the thread cannot
 * start). flush_ms 0 means 5000. */
access_stats *access_stats_new(store *st, unsigned flush_ms, strata_error *err);
/* Flushes what is pending and stops the thread. */
void access_stats_free(access_stats *a);

/* Counts one read of a version. Never blocks on the store. */
void access_stats_hit(access_stats *a, const char *type, const char *id, uint64_t vkey);

/* The counts to show for a version read with stored_count/stored_last
 * (from its record, possibly a cached copy): the larger of that and the
 * total this process last wrote, plus what is pending or being written. */
void access_stats_merge(access_stats *a, const char *type, const char *id, uint64_t vkey,
                        uint64_t stored_count, int64_t stored_last, uint64_t *count, int64_t *last);

/* Writes what is pending now (the flusher's work, for tests and close).
 * 0, or -1 when the store refused (the counts stay pending). */
int access_stats_flush(access_stats *a);

#endif
