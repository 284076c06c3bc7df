/* The cache manager: named namespaces (dictionary, corpus, ...) each with
 * an L1 and a share of the L2, read-through (L1, then L2 promoting to L1,
 * then the loader, with concurrent misses on one key running the loader
 * once), writes to both tiers (compressed at L2 as the namespace says),
 * invalidation by key or glob in both tiers, and stats. */
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

#define CACHE_NS_MAX      64  /* namespaces alive at once */
#define CACHE_KEY_MAX     512 /* bytes of a key */
#define CACHE_PATTERN_MAX 256 /* bytes of a glob */
#define CACHE_VALUE_MAX   (256u << 20)

typedef struct cache_ns_config {
    char name[L2_NS_MAX + 1];
    size_t l1_items;
    size_t l1_bytes;
    uint64_t l1_ttl_ms;
    uint64_t l2_ttl_ms;
    enum scodec l2_codec;
} cache_ns_config;

typedef struct cache_config {
    cache_ns_config ns[CACHE_NS_MAX];
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

/* L1, then L2. SERR_NOT_FOUND on a miss. */
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
/* Both tiers. fence: refuse read-through fills that began before now. */
int cache_invalidate(cache_manager *cm, const char *ns, const char *key, bool fence, bool *found,
                     strata_error *err);
int cache_invalidate_pattern(cache_manager *cm, const char *ns, const char *pattern, size_t *count,
                             strata_error *err);

/* Checks a namespace name and a key (length, characters). */
int cache_check_key(const char *ns, const char *key, strata_error *err);
int cache_check_pattern(const char *pattern, strata_error *err);

/* {"namespaces": {...}, "l1_budget": {...}} or one namespace's object. */
json_t *cache_stats_json(cache_manager *cm, const char *ns);
int cache_metrics(cache_manager *cm, strata_buf *out, strata_error *err);

#endif
