/* L2: the shared cache tier (local disk by default; Redis, S3, MongoDB in
 * a later issue). Small on purpose: get, set with a TTL, delete, exists,
 * clear by glob, stats. Values are opaque bytes plus a content type and a
 * codec tag (the cache manager compresses); every stored copy has a write
 * id so an L1 copy can be checked against L2 cheaply.
 *
 * Fences: deleting with a fence leaves a marker, for fence_ttl, saying
 * when the key was invalidated. A set made with a load start time
 * ("fill_since") earlier than a live fence is refused, so a read-through
 * fill that began before a write cannot put the old value back. */
#ifndef STRATA_L2_H
#define STRATA_L2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/error.h"

#define L2_KEY_MAX 512
#define L2_NS_MAX  64

typedef struct l2_meta {
    uint64_t write_id;
    char content_type[96];
    uint8_t codec;     /* scodec of the stored bytes */
    uint64_t raw_size; /* size once decoded */
    int64_t expires_ms;
} l2_meta;

typedef struct l2_stats {
    uint64_t hits, misses, sets, deletes, expirations, evictions, items, bytes;
} l2_stats;

typedef struct l2_cache l2_cache;

typedef struct l2_ops {
    const char *name;
    /* SERR_NOT_FOUND on a miss (absent, expired or unreadable). */
    int (*get)(l2_cache *c, const char *ns, const char *key, size_t max_len, strata_buf *out,
               l2_meta *meta, strata_error *err);
    /* Metadata only (no value bytes): for validating an L1 copy. */
    int (*get_meta)(l2_cache *c, const char *ns, const char *key, l2_meta *meta, strata_error *err);
    /* ttl_ms 0: the cache's default. fill_since_ms 0: unconditional;
     * otherwise SERR_CONFLICT when a fence newer than it stands. */
    int (*set)(l2_cache *c, const char *ns, const char *key, const void *data, size_t len,
               const l2_meta *meta, uint64_t ttl_ms, int64_t fill_since_ms, uint64_t *write_id,
               strata_error *err);
    /* fence_ms 0: plain delete; otherwise leave a fence stamped fence_ms. */
    int (*del)(l2_cache *c, const char *ns, const char *key, int64_t fence_ms, bool *found,
               strata_error *err);
    /* Removes the live keys of ns matching a glob (common/glob.h's
     * dialect, the same as L1's); *count gets how many, and on_key (may be
     * NULL) sees each. */
    int (*clear)(l2_cache *c, const char *ns, const char *pattern, size_t *count,
                 void (*on_key)(void *ctx, const char *key), void *ctx, strata_error *err);
    int (*stats)(l2_cache *c, const char *ns, l2_stats *out, strata_error *err);
    void (*close)(l2_cache *c);
} l2_ops;

struct l2_cache {
    const l2_ops *ops;
};

typedef struct l2_config {
    uint64_t max_bytes;    /* the disk cache's size limit */
    uint64_t fence_ttl_ms; /* how long invalidation fences stand */
} l2_config;

/* "file:DIR" or "none" (NULL is returned, with no error, for none). */
l2_cache *l2_open(const char *url, const l2_config *cfg, strata_error *err);
void l2_close(l2_cache *c);

#endif
