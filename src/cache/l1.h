/* L1: the in-process cache of one namespace, bounded by item count
 * (never more than max_items in all) and by bytes, with a TTL per entry,
 * split into shards (at most one per item allowed) that each have
 * their own lock, hash table, lists and frequency sketch, so threads rarely
 * wait for one another; get, set and delete are O(1) (amortized). A
 * process-wide byte budget is shared by every namespace: a set that would
 * pass it evicts from its own shard first, and is not cached when that
 * cannot make room.
 * Eviction is W-TinyLFU (as Caffeine's): a set always puts the new entry
 * in a small LRU window (1% of the shard at first, resized by one hill
 * climber for the whole cache on its hit rate, which every shard follows
 * at its next set); what leaves the window enters a segmented LRU
 * (probation, protected 80%) only if it was asked for more often lately
 * than the entry it would evict (l1_sketch.h); a candidate refused once
 * and asked for again is let in. An entry past its TTL met there loses
 * without a contest. Lookups feed the sketch, misses and hits alike,
 * except hits in protected (already judged frequent: counting them cost
 * as much again as the rest of a hit, and the simulator measured no loss
 * without them); l1_holds does not. A rejected candidate is freed at
 * once: what is deleted, replaced or invalidated can never come back
 * through admission (only a few bits of its key's hash stay in the
 * sketch). A hit in the window or protected moves an entry to the front
 * only once it has drifted a quarter of the shard's capacity back.
 *
 * Coherence with other processes: an entry may carry a tag, the L2 token
 * (l2.h) under which its value was current when it was filled. A lookup
 * given the key's current token returns the entry only when its tag still
 * equals it, and removes it otherwise; the L1 itself never asks the L2.
 *
 * Thread safety: every function may be called from any thread, on any
 * cache, except l1_free (no other call on that cache may run or follow). */
#ifndef STRATA_L1_H
#define STRATA_L1_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache_value.h"
#include "l2.h"

typedef struct l1_stats {
    uint64_t hits, misses, evictions, expirations, items, bytes;
    uint64_t stale;  /* entries removed because their tag no longer matched (also misses) */
    uint64_t window; /* the admission window's item limit, all shards (max_items: LRU) */
} l1_stats;

/* How an L1 chooses what it keeps: W-TinyLFU (l1_new's), or a plain LRU
 * (the whole capacity is the window, nothing counts frequencies; the
 * baseline for benchmarks). */
typedef enum l1_policy { L1_TINYLFU, L1_LRU } l1_policy;

typedef struct l1_cache l1_cache;

/* The budget every namespace's L1 draws from. */
typedef struct l1_budget {
    atomic_ullong used;
    uint64_t limit;
} l1_budget;

/* A cache of at most max_items entries and max_bytes (bookkeeping
 * included, see cache_value_charge), drawing on global as well. NULL when
 * out of memory. */
l1_cache *l1_new(size_t max_items, size_t max_bytes, l1_budget *global);
/* As l1_new, with the given policy (an unknown one: L1_TINYLFU). */
l1_cache *l1_new_policy(size_t max_items, size_t max_bytes, l1_budget *global, l1_policy policy);
/* NULL is a no-op. */
void l1_free(l1_cache *c);

/* A referenced value (release with cache_value_unref) or NULL (a miss,
 * or an entry past its TTL, which is removed). The tag is not looked at. */
cache_value *l1_get(l1_cache *c, const char *key, uint64_t now_ms);
/* As l1_get, but current (non-NULL) is the key's token now: an entry
 * whose tag is not l2_token_equal to it is removed and NULL returned
 * (an untagged entry never matches). current NULL: as l1_get. */
cache_value *l1_get_current(l1_cache *c, const char *key, uint64_t now_ms, const l2_token *current);
/* Stores v (taking a new reference) until now_ms + ttl_ms (0: no expiry),
 * replacing any entry of key, untagged. Returns false when it could not
 * be cached (too big for the budgets, out of memory); any older entry of
 * key is then gone as well. */
bool l1_set(l1_cache *c, const char *key, cache_value *v, uint64_t now_ms, uint64_t ttl_ms);
/* As l1_set, tagged with *tag (NULL: untagged). An unusable tag stores
 * nothing (returns false, and the older entry is gone). */
bool l1_set_tagged(l1_cache *c, const char *key, cache_value *v, uint64_t now_ms, uint64_t ttl_ms,
                   const l2_token *tag);
/* Whether an entry of key is there (expired or not, current or not);
 * counts nothing, moves nothing. */
bool l1_holds(l1_cache *c, const char *key);
/* Whether an entry of key was there (and is now gone). */
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
