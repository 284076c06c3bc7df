/* L1: the in-process cache of one namespace. An LRU bounded by item count
 * (never more than max_items in all) and by bytes, with a TTL per entry,
 * split into shards (at most one per item allowed) that each have
 * their own lock, hash table and LRU list, so threads rarely wait for one
 * another; get, set and delete are O(1). A process-wide byte budget is
 * shared by every namespace: a set that would pass it evicts from its own
 * shard first, and is not cached when that cannot make room.
 * Eviction is approximately LRU: a hit moves an entry to the front only
 * once it has drifted a quarter of the shard's capacity back. */
#ifndef STRATA_L1_H
#define STRATA_L1_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache_value.h"

typedef struct l1_stats {
    uint64_t hits, misses, evictions, expirations, items, bytes;
} l1_stats;

typedef struct l1_cache l1_cache;

/* The budget every namespace's L1 draws from. */
typedef struct l1_budget {
    atomic_ullong used;
    uint64_t limit;
} l1_budget;

l1_cache *l1_new(size_t max_items, size_t max_bytes, l1_budget *global);
void l1_free(l1_cache *c);

/* A referenced value (release with cache_value_unref) or NULL. */
cache_value *l1_get(l1_cache *c, const char *key, uint64_t now_ms);
/* Stores v (taking a new reference) until now_ms + ttl_ms (0: no expiry).
 * Returns false when it could not be cached (too big for the budgets). */
bool l1_set(l1_cache *c, const char *key, cache_value *v, uint64_t now_ms, uint64_t ttl_ms);
bool l1_delete(l1_cache *c, const char *key);
/* Called with each key a deletion removed (under the shard's lock: do not
 * call back into the cache). */
typedef void (*l1_key_fn)(void *ctx, const char *key);
/* Removes every key matching a glob (common/glob.h's dialect); returns
 * how many; fn (may be NULL) sees each. */
size_t l1_delete_matching(l1_cache *c, const char *pattern, l1_key_fn fn, void *ctx);
void l1_clear(l1_cache *c);
void l1_get_stats(l1_cache *c, l1_stats *out);

#endif
