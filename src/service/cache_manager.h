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

/* L1, then L2. SERR_NOT_FOUND on a miss or an unknown namespace. */
int cache_get(cache_manager *cm, const char *ns, const char *key, cache_value **out,
              enum cache_tier *tier, strata_error *err);
/* Read-through. validate: an L1 hit is checked against L2's current write
 * (for values that a write elsewhere may replace, like latest records). */
int cache_get_or_load(cache_manager *cm, const char *ns, const char *key, bool validate,
                      cache_loader loader, void *ctx, cache_value **out, enum cache_tier *tier,
                      strata_error *err);
/* Both tiers; ttl_ms 0 takes the namespace's TTLs. */
int cache_set(cache_manager *cm, const char *ns, const char *key, cache_value *v, uint64_t ttl_ms,
              strata_error *err);
/* Both tiers. fence: refuse read-through fills that began before now.
 * Returns -1 only when L2 could not record the removal (the L1 copy is
 * gone either way). */
int cache_invalidate(cache_manager *cm, const char *ns, const char *key, bool fence, bool *found,
                     strata_error *err);
/* Starts a change that replaces a value other readers fill through the
 * cache (a resource's latest record), before the change is made durable:
 * drops the value from both tiers and leaves an L2 fence that refuses
 * every fill, and makes every L1 copy fail validation, for hold_ms. The
 * caller then commits its change and calls cache_invalidate(fence=true),
 * which ends the hold; if it never does (a crash), readers bypass the
 * cache for that key until the hold ends, so none is served a value
 * older than the change. Returns -1 (SERR_UNAVAILABLE) when L2 cannot
 * record the fence durably: the caller must not make its change. */
int cache_fence_begin(cache_manager *cm, const char *ns, const char *key, uint64_t hold_ms,
                      strata_error *err);
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
