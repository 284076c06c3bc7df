/* A fixed pool of threads that run queued items, for work that may wait a
 * long time (a write waiting for its shared commit) and must not hold an
 * HTTP event thread meanwhile: with the writes moved here, as many saves
 * can wait for one commit as there are pool threads, while the event
 * threads keep serving reads.
 *
 * Items are intrusive (a work_item inside the caller's own struct), so
 * submitting allocates nothing and cannot fail for want of memory. The
 * queue is unbounded: its length is bounded by the caller (one item per
 * HTTP connection at most, and connections are limited).
 *
 * Thread safety: work_pool_submit may be called from any thread, until
 * work_pool_free; work_pool_stop and work_pool_free from one thread. */
#ifndef STRATA_WORK_POOL_H
#define STRATA_WORK_POOL_H

#include <stdbool.h>

#include "../src/common/error.h"

typedef struct work_item {
    struct work_item *next; /* the pool's; the caller leaves it alone */
} work_item;

/* Runs one item on a pool thread. It owns the item until it returns. */
typedef void (*work_fn)(work_item *item, void *ctx);

typedef struct work_pool work_pool;

/* Starts nthreads (1-1024) threads that call fn(item, ctx) for each item
 * submitted, in the order submitted. Returns NULL with err set
 * (SERR_INVALID for a bad count, SERR_NOMEM when threads or memory cannot
 * be had; no thread is left running). */
work_pool *work_pool_start(unsigned nthreads, work_fn fn, void *ctx, strata_error *err);

/* Queues item. Returns false, and queues nothing, once the pool is
 * stopping: the caller then runs the work itself. */
bool work_pool_submit(work_pool *p, work_item *item);

/* Refuses new items (work_pool_submit returns false from now on), lets
 * the threads finish every item already queued and joins them. The pool
 * stays valid for work_pool_submit until work_pool_free. NULL is a no-op;
 * a second call does nothing. */
void work_pool_stop(work_pool *p);

/* Stops the pool if it runs, and frees it. NULL is a no-op. */
void work_pool_free(work_pool *p);

#endif
