/* L2: the shared cache tier (local disk by default, Redis or S3; MongoDB
 * in a later issue), shared by every process (node) that opens the same
 * location. Small on purpose: get, set with a TTL, delete, clear by glob,
 * stats, plus the coherence primitives below. Values are opaque bytes
 * plus a content type and a codec tag (the cache manager compresses).
 *
 * Coherence comes from the L2 itself, never from the clocks of the nodes
 * that use it:
 *
 * - Tokens. token() returns an l2_token for (ns, key): a value the L2
 *   issues that changes whenever the key may have changed (a set, a
 *   delete, a fence) and whenever its namespace was cleared, in any
 *   process. Two tokens of a key compare equal (l2_token_equal) only when
 *   no such change happened between the two reads. A node keeps the token
 *   it read BEFORE reading a value (from the L2 or from the source of
 *   truth) beside its L1 copy of that value; the copy is current exactly
 *   as long as the key's token still equals it. A token read while a
 *   change is in progress is not usable (l2_token_usable): it equals no
 *   token, tags no copy and guards no fill. How cheap token() is, is the
 *   backend's business (the disk L2: two atomic loads from a shared
 *   mapping); it may fail (a backend that lost its connection to the
 *   invalidation stream), and a caller must then trust no L1 copy.
 *
 * - Fills. set() with a fill token is a read-through fill: it is refused
 *   (SERR_CONFLICT) when the key's token moved since the fill token was
 *   read, or when an open fence stands on the key, checked atomically
 *   with the write itself. So a fill that loaded before a change can never
 *   put the older value back, on any node.
 *
 * - Open fences. fence_open() (before a change is committed to the source
 *   of truth) deletes the value, moves the token and records durably a
 *   fence that refuses every fill until del() closes it by its id (after
 *   the commit) or until it expires. Expiry is measured by the L2's own
 *   clock: for the disk L2 every user is on one host, and the host's
 *   CLOCK_REALTIME as read by the L2 code (not by the caller) is that
 *   clock; a network L2 (Redis) expires fences by its own clock (PEXPIRE).
 *   A writer that dies between fence_open and del therefore keeps every
 *   node off the cache for that key until the fence expires, never longer
 *   and never shorter.
 *
 * Every operation is safe to call from any thread, and from several
 * processes sharing the L2 at once. Every call that can fail returns 0 on
 * success and -1 with *err set otherwise; on failure, outputs not
 * described otherwise are unspecified. */
#ifndef STRATA_L2_H
#define STRATA_L2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../common/buf.h"
#include "../common/error.h"

#define L2_KEY_MAX 512
#define L2_NS_MAX  64

/* Opaque: what a token holds is the backend's business. Callers copy it,
 * compare it with l2_token_equal and pass it back, nothing else. By
 * convention a backend sets bit 0 of w[3] in every usable token. */
typedef struct l2_token {
    uint64_t w[4];
} l2_token;

/* Whether a token may tag an L1 copy or guard a fill. */
static inline bool l2_token_usable(const l2_token *t)
{
    return (t->w[3] & 1) != 0;
}

/* Equal and usable: an L1 copy tagged with a is current when the key's
 * token is now b. */
static inline bool l2_token_equal(const l2_token *a, const l2_token *b)
{
    return l2_token_usable(a) && memcmp(a, b, sizeof *a) == 0;
}

/* The id of an open fence, issued by the L2; 0 is never one. */
typedef uint64_t l2_fence_id;

typedef struct l2_meta {
    uint64_t write_id; /* issued by the L2: unique among this L2's writes */
    char content_type[96];
    uint8_t codec;     /* scodec of the stored bytes */
    uint64_t raw_size; /* size once decoded */
    int64_t expires_ms;
    /* From get, when the backend can tell it atomically with the read: the
     * token under which the value read is current (the tag for an L1 copy
     * of it, better than the token read before, which may lag). Otherwise
     * left as the caller set it (zeroed: unusable). */
    l2_token current;
} l2_meta;

/* items and bytes are what the L2 holds, whoever wrote it; hits..evictions
 * count this handle's own operations on the disk L2, and every node's on
 * a network L2 that keeps its counters itself (Redis). */
typedef struct l2_stats {
    uint64_t hits, misses, sets, deletes, expirations, evictions, items, bytes;
} l2_stats;

typedef struct l2_cache l2_cache;

typedef struct l2_ops {
    const char *name;
    /* The live value of (ns, key), appended to out (at most max_len
     * bytes), and its metadata (the caller zeroes *meta first).
     * SERR_NOT_FOUND on a miss (absent,
     * expired, fenced, unreadable or longer than max_len): out is then
     * as it was. Other kinds: the L2 failed. */
    int (*get)(l2_cache *c, const char *ns, const char *key, size_t max_len, strata_buf *out,
               l2_meta *meta, strata_error *err);
    /* The current token of (ns, key) into *out (see above). On failure
     * (SERR_UNAVAILABLE: the backend cannot tell what changed) *out is an
     * unusable token. */
    int (*token)(l2_cache *c, const char *ns, const char *key, l2_token *out, strata_error *err);
    /* The token of (ns, key) as this node knows it now, without waiting
     * for changes made elsewhere to reach it: it may lag behind a change
     * acknowledged on another node. Fit to tag a copy read after it and
     * to guard a fill (a lagging token only makes them fail to match),
     * never to validate an L1 copy (use token). May be NULL: token is
     * used. Same outcomes as token. */
    int (*token_seen)(l2_cache *c, const char *ns, const char *key, l2_token *out,
                      strata_error *err);
    /* Stores a value for ttl_ms (0: no expiry). meta->write_id is
     * ignored: the L2 issues one, returned in *write_id (may be NULL).
     * fill NULL: an unconditional write, which moves the key's token (it
     * replaces what every node may hold). fill non-NULL: a read-through
     * fill guarded by the token read before the value was loaded;
     * SERR_CONFLICT when that token is unusable or moved since, or an
     * open fence stands; a fill leaves the token as it is. On success
     * *new_token (may be NULL, may point at *fill) is the token under
     * which the stored value is current (unusable when that cannot be
     * told): the tag for an L1 copy of it. Errors: SERR_INVALID (ns or
     * key too long), SERR_TOO_LARGE (larger than the cache), SERR_IO and
     * the like; on any failure the key holds no value this call wrote
     * (and may have lost the one it held: a miss, never a wrong value). */
    int (*set)(l2_cache *c, const char *ns, const char *key, const void *data, size_t len,
               const l2_meta *meta, uint64_t ttl_ms, const l2_token *fill, l2_token *new_token,
               uint64_t *write_id, strata_error *err);
    /* Removes (ns, key) and moves its token, whether or not a value was
     * there (a node may hold a copy the L2 has evicted), and closes the
     * open fences named in close[0..nclose) (their ids from fence_open;
     * unknown or expired ids are ignored; other fences stay). *found (may
     * be NULL) tells whether a live value was removed; false on failure.
     * On failure the value may still be there and the fences stay open
     * until they expire. */
    int (*del)(l2_cache *c, const char *ns, const char *key, const l2_fence_id *close,
               size_t nclose, bool *found, strata_error *err);
    /* Before a change to what (ns, key) caches is committed elsewhere:
     * removes the value, moves the token and opens a fence that refuses
     * every fill of the key until del() closes it or hold_ms pass (0: the
     * configured fence_ttl_ms) by the L2's clock. Returns only once the
     * fence is durable (it survives a crash of the host); its id goes to
     * *id. On failure no fence is open, *id is 0, and the caller must not
     * make its change. */
    int (*fence_open)(l2_cache *c, const char *ns, const char *key, uint64_t hold_ms,
                      l2_fence_id *id, strata_error *err);
    /* Removes the live keys of ns matching a glob (common/glob.h's
     * dialect, the same as L1's) and moves the token of every key of ns
     * (matching or not: the namespace's share of every token); *count
     * gets how many live values went, and on_key (may be NULL; called
     * with no lock of the caller's held, must not call back into this
     * L2) sees each. Open fences stay. On failure *count is 0 and nothing
     * was removed. */
    int (*clear)(l2_cache *c, const char *ns, const char *pattern, size_t *count,
                 void (*on_key)(void *ctx, const char *key), void *ctx, strata_error *err);
    /* Stats of namespace ns (see l2_stats); zeroed counters for a
     * namespace this handle has not used. */
    int (*stats)(l2_cache *c, const char *ns, l2_stats *out, strata_error *err);
    /* Whether the L2 can serve now: 0, or -1 with SERR_UNAVAILABLE naming
     * the cause (for /ready and /health). May be NULL: always fine. */
    int (*health)(l2_cache *c, strata_error *err);
    /* Releases the handle (no other call may be running or follow); what
     * the L2 holds stays. */
    void (*close)(l2_cache *c);
} l2_ops;

struct l2_cache {
    const l2_ops *ops;
};

typedef struct l2_config {
    uint64_t max_bytes;    /* the disk cache's size limit */
    uint64_t fence_ttl_ms; /* how long an open fence stands when hold_ms is 0 */
} l2_config;

/* "file:DIR", "redis://..." (l2_redis.h) or "none" (NULL is returned,
 * with no error, for none).
 * Otherwise NULL with *err set: SERR_INVALID (a malformed URL),
 * SERR_UNAVAILABLE (a backend not in this build), SERR_IO or SERR_CORRUPT
 * (the location cannot be used, for instance its coherence state cannot
 * be shared: an L2 that could not keep nodes coherent is never opened). */
l2_cache *l2_open(const char *url, const l2_config *cfg, strata_error *err);
/* NULL is a no-op. */
void l2_close(l2_cache *c);

#endif
