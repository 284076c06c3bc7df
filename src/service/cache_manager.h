/* The cache manager: named namespaces (dictionary, corpus, ...) each with
 * an L1 and a share of the L2, read-through (L1, then L2 promoting to L1,
 * then the loader, with concurrent misses on one key running the loader
 * once), writes to both tiers (compressed at L2 as the namespace says),
 * invalidation by key or glob in both tiers, and stats.
 *
 * Namespaces come in three kinds, all created by cache_new except the
 * last:
 * - configured: the design's namespaces and --cache-namespaces, for
 *   clients' own values (/cache/{ns}/{key});
 * - internal: one per configured namespace, named CACHE_INTERNAL_PREFIX +
 *   its name ("@dictionary"), with the same settings; the versioned store
 *   keeps its latest records and blob copies there. Their names hold a
 *   character that cache_check_key refuses, so no client request can
 *   read, write, invalidate or list them;
 * - client-created: made by a client's PUT to an unknown name, at most
 *   CACHE_CLIENT_NS_MAX of them, with the "default" settings. They can
 *   never take a place that a configured or internal namespace needs.
 * No other call creates a namespace: an unknown name is SERR_NOT_FOUND.
 *
 * Thread safety: every function may be called from any thread. */
#ifndef STRATA_CACHE_MANAGER_H
#define STRATA_CACHE_MANAGER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../cache/cache_value.h"
#include "../cache/l2.h"
#include "../codec/compress.h"
#include "../common/buf.h"
#include "../common/error.h"

#define CACHE_CONFIG_NS_MAX   16 /* configured namespaces, "default" included */
#define CACHE_CLIENT_NS_MAX   32 /* namespaces clients may create with a PUT */
#define CACHE_NS_MAX          (2 * CACHE_CONFIG_NS_MAX + CACHE_CLIENT_NS_MAX)
#define CACHE_INTERNAL_PREFIX "@"
#define CACHE_KEY_MAX         512 /* bytes of a key */
#define CACHE_PATTERN_MAX     256 /* bytes of a glob */
#define CACHE_VALUE_MAX       (256u << 20)

typedef struct cache_ns_config {
    char name[L2_NS_MAX + 1];
    size_t l1_items;
    size_t l1_bytes;
    uint64_t l1_ttl_ms;
    uint64_t l2_ttl_ms;
    enum scodec l2_codec;
} cache_ns_config;

typedef struct cache_config {
    cache_ns_config ns[CACHE_CONFIG_NS_MAX];
    int nns;
    uint64_t l1_global_bytes;
} cache_config;

/* The design documents' namespaces; "default" applies to any other name. */
void cache_config_defaults(cache_config *cfg);
/* Overrides: "corpus:l1_items=200,l1_bytes=512M,l1_ttl=3600,l2_ttl=86400,codec=zstd;..."
 * (TTLs in seconds). Unknown names add a namespace. */
int cache_config_apply(cache_config *cfg, const char *spec, strata_error *err);

typedef struct cache_manager cache_manager;

cache_manager *cache_new(const cache_config *cfg, l2_cache *l2, strata_error *err);
void cache_free(cache_manager *cm);

enum cache_tier { CACHE_TIER_L1 = 1, CACHE_TIER_L2 = 2, CACHE_TIER_LOADER = 3 };

/* Produces a value on a miss (one reference for the caller), or -1. */
typedef int (*cache_loader)(void *ctx, cache_value **out, strata_error *err);

/* The internal namespace that shadows configured namespace ns (its
 * settings), for the versioned store's own entries: "@" + ns. */
void cache_internal_ns(const char *ns, char *out, size_t cap);

/* Whether a namespace exists that clients may address (configured or
 * client-created; never internal). */
bool cache_ns_exists(cache_manager *cm, const char *ns);
/* Makes sure client namespace ns exists, creating it with the default
 * settings if not. SERR_CONFLICT when CACHE_CLIENT_NS_MAX client-created
 * namespaces exist already; SERR_INVALID for an internal name. */
int cache_ns_create(cache_manager *cm, const char *ns, strata_error *err);

/* Coherence (with an L2): every L1 copy is tagged with the L2 token
 * (l2.h) of its key read before the value was read or loaded, and an L1
 * hit is served only while the key's token still equals it (an atomic
 * load for the disk L2, no query). So a change made through any process
 * sharing the L2 (a set, an invalidation, a fence, a pattern clear) is
 * seen by every other process's next read, with no TTL to wait out. With
 * no L2 the L1 is this process's alone and its own invalidations are all
 * there is. */

/* L1, then L2 (promoting to L1). SERR_NOT_FOUND on a miss or an unknown
 * namespace (*out untouched); other kinds: L2 failed. On success *out is
 * a reference for the caller and *tier tells where it came from. */
int cache_get(cache_manager *cm, const char *ns, const char *key, cache_value **out,
              enum cache_tier *tier, strata_error *err);
/* Read-through: L1, L2, then the loader, whose value fills L2 only when
 * no change or open fence of the key came since the load began (the L2
 * decides, atomically with the write) and L1 only when L2 took it.
 * Concurrent misses on one key in this process run the loader once when
 * nothing changed in between: a reader joins a load only once L2 itself
 * (not the token this node has seen) says the key did not change since
 * the load began, one token read per joiner. The load's value is handed
 * to those who joined only when L2 took it as current (not when L2
 * refused or failed the fill), its error only when it is not
 * SERR_NOT_FOUND (the save that creates a resource moves no token, so a
 * load that found nothing may have read the source before a creation
 * another node acknowledged): otherwise each loads for itself. Every L1
 * copy is checked (see above). memo:
 * a value this call reads from L2 or loads gets a memo_reserve of
 * CACHE_MEMO_RESERVE(len) (cache_value.h), charged to L1 with it, so that
 * the caller may attach a memo to it. Errors: the loader's, or
 * SERR_NOT_FOUND for an unknown namespace; an L2 failure is not one (the
 * loader answers). */
int cache_get_or_load(cache_manager *cm, const char *ns, const char *key, bool memo,
                      cache_loader loader, void *ctx, cache_value **out, enum cache_tier *tier,
                      strata_error *err);
/* cache_get_or_load with flags:
 * - CACHE_FILL_L1_ONLY: the loader's value goes to this process's L1 only,
 *   never to the L2 (L2 values are still read and promoted). For values
 *   the L2 would only duplicate, such as blobs whose store is as near as
 *   the L2 is. The L1 copy is tagged with the token read before the load,
 *   so any later change of the key (an invalidation, a set, a clear, in
 *   any process) makes it stale as usual; but no L2 checks the fill
 *   against open fences, so only keys that are never fenced may use it
 *   (immutable values, such as content-addressed blobs). */
#define CACHE_FILL_L1_ONLY 1u
/* - CACHE_MEMO: as cache_get_or_load's memo. */
#define CACHE_MEMO 2u
int cache_get_or_load_ex(cache_manager *cm, const char *ns, const char *key, unsigned flags,
                         cache_loader loader, void *ctx, cache_value **out, enum cache_tier *tier,
                         strata_error *err);
/* Both tiers (an unconditional write: every process's copy of the old
 * value is stale from here on); ttl_ms 0 takes the namespace's TTLs.
 * On failure (L2 refused or failed) this process's L1 holds no copy of
 * the key and L2 holds no value this call wrote. */
int cache_set(cache_manager *cm, const char *ns, const char *key, cache_value *v, uint64_t ttl_ms,
              strata_error *err);
/* Both tiers: removes the key and makes every process's copy of it stale
 * (the L2 moves the key's token whether or not it held a value); a fill
 * that began before this call can no longer land. fence: this is the end
 * of a change begun with cache_fence_begin on this thread: the open
 * fences this thread holds on the key are closed as well (only those;
 * other writers' fences stay). *found (may be NULL): whether either tier
 * held a value. Returns -1 only when L2 could not record the removal (the
 * L1 copy is gone either way; a fence that could not be closed stands
 * until its hold ends, which is safe). */
int cache_invalidate(cache_manager *cm, const char *ns, const char *key, bool fence, bool *found,
                     strata_error *err);
/* Starts a change that replaces a value other readers fill through the
 * cache (a resource's latest record), before the change is made durable:
 * drops the value from both tiers, makes every process's L1 copy stale,
 * and leaves a durable L2 fence that refuses every fill, in every
 * process, for hold_ms by the L2's clock. The caller then commits its
 * change and calls cache_invalidate(fence=true) on the same thread, which
 * closes this fence; if it never does (a crash), readers bypass the cache
 * for that key until the hold ends, so none is served a value older than
 * the change. Returns -1 (SERR_UNAVAILABLE) when L2 cannot record the
 * fence durably: the caller must not make its change. With no L2 it only
 * drops this process's L1 copy, and succeeds. */
int cache_fence_begin(cache_manager *cm, const char *ns, const char *key, uint64_t hold_ms,
                      strata_error *err);
/* Removes the keys of ns matching a glob from both tiers (and makes every
 * process's copies of the namespace's keys stale); *count gets how many
 * distinct keys held a value (0 on failure). */
int cache_invalidate_pattern(cache_manager *cm, const char *ns, const char *pattern, size_t *count,
                             strata_error *err);

/* Checks a namespace name and a key (length, characters). */
int cache_check_key(const char *ns, const char *key, strata_error *err);
int cache_check_pattern(const char *pattern, strata_error *err);

/* {"namespaces": {...client-visible...}, "internal": {...}, "l1_budget":
 * {...}} or one client-visible namespace's object (NULL when unknown). */
json_t *cache_stats_json(cache_manager *cm, const char *ns);
int cache_metrics(cache_manager *cm, strata_buf *out, strata_error *err);

#endif
