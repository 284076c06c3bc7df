/* The L2 on Redis (hiredis), shared by every node that uses one server
 * and prefix. See l2.h for the contract; what is particular to Redis:
 *
 * - URL and connections: redis_conn.h (redis://[user:password@]host:port
 *   [/db][?prefix=NAME&timeout_ms=N]; a pool of connections reused by the
 *   worker threads; reconnection with backoff).
 * - Write ids, fence ids and the changes behind tokens are numbers from
 *   one counter in Redis; every change and every guarded fill is one Lua
 *   script, atomic in the server; fences expire by Redis' clock.
 * - Tokens come from the invalidation stream (redis_inval.h): pub/sub
 *   plus a barrier, so that a change acknowledged on any node is seen by
 *   every later token on every node; a node that lost its subscription
 *   gives no usable token until it has resubscribed and reloaded.
 * - TTLs are Redis expiries. A value asked to live forever gets a year,
 *   so that the volatile-* memory policies can still evict it; fences,
 *   buckets and counters have no expiry and are never evicted under them.
 *   max_bytes is a budget over every value of the prefix, kept by the
 *   scripts: a set evicts the least recently used values (by Redis'
 *   clock) until the total fits, as the disk L2 does; Redis' maxmemory
 *   is the backstop (see the README's operator notes).
 * - Stats are counters kept in Redis by the scripts, shared by every node
 *   (not per handle); items and bytes follow sets and deletes at once and
 *   Redis' own expiries and evictions within a sweep (30 s) or at the
 *   next read of the key.
 * - A clear removes its keys in batches: a failure part way leaves some
 *   removed (misses, never wrong values); every token of the namespace
 *   has moved before the first removal. */
#ifndef STRATA_L2_REDIS_H
#define STRATA_L2_REDIS_H

#include "l2.h"

/* Opens the Redis L2 of url: connects once, so that a server that says
 * no (a wrong password or database, an allkeys-* memory policy) fails
 * here with SERR_INVALID naming the cause; a server not reachable yet is
 * waited for in the background (the L2 reports down until then). Starts
 * the invalidation stream and the sweeper. NULL with *err set otherwise:
 * SERR_INVALID (a malformed URL, or the above), SERR_UNAVAILABLE
 * (rediss://), SERR_NOMEM. */
l2_cache *l2_redis_open(const char *url, const l2_config *cfg, strata_error *err);

#endif
