/* access_count and last_accessed without a store write per read: reads
 * count in memory, and a background thread adds the counts to the store
 * every flush interval (and at close). A record shows stored + pending. */
#ifndef STRATA_ACCESS_STATS_H
#define STRATA_ACCESS_STATS_H

#include <stdint.h>

#include "../store/store.h"

typedef struct access_stats access_stats;

/* on_flushed (may be NULL) hears of each (type, id) whose counts were
 * written, so that cached copies of its record can be refreshed. */
typedef void (*access_flushed_fn)(void *ctx, const char *type, const char *id);

access_stats *access_stats_new(store *st, unsigned flush_ms, access_flushed_fn on_flushed,
                               void *ctx, strata_error *err);
/* Flushes what is pending and stops the thread. */
void access_stats_free(access_stats *a);

void access_stats_hit(access_stats *a, const char *type, const char *id, uint64_t vkey);
/* Unflushed count for a version, and its last access time (0 if none). */
uint64_t access_stats_pending(access_stats *a, const char *type, const char *id, uint64_t vkey,
                              int64_t *last_ms);

#endif
