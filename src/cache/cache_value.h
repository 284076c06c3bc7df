/* A cached value: immutable bytes with their content type, shared by
 * reference count so that a hit hands out the value without copying it
 * under a lock (a caller may hold its reference as long as it serves the
 * bytes, after the cache dropped the value).
 *
 * A value may also carry a memo: something its reader derived from the
 * bytes once (a rendering of them) and kept with them, so that later
 * readers of the same copy use it instead of deriving it again. A memo
 * depends on the bytes alone, so it is exactly as current as they are:
 * whatever makes a copy stale makes its memo stale with it. It is
 * attached at most once, never changes after, and is freed with the
 * value. Budgets charge a value for the memo it may carry up front
 * (memo_reserve), since the charge is taken when the value is cached.
 *
 * Verified: whoever checked the bytes against what its key names (a blob
 * against its hash) may say so, once; the flag only ever goes from false
 * to true, and the bytes never change, so a holder that sees it set may
 * skip its own check. A value is born unverified, and every copy made
 * from bytes outside the process (an L2 read) is a new, unverified value.
 * The cache itself never reads the flag. */
#ifndef STRATA_CACHE_VALUE_H
#define STRATA_CACHE_VALUE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CACHE_CTYPE_MAX 96

/* Embedded first in the caller's own structure. */
typedef struct cache_memo {
    size_t size;                        /* bytes it holds, compared with memo_reserve */
    void (*free)(struct cache_memo *m); /* releases the whole structure */
} cache_memo;

typedef struct cache_value {
    atomic_uint refs;
    uint64_t write_id;  /* which L2 write this copy came from (0: none) */
    int64_t expires_ms; /* wall-clock expiry, 0: none (for the TTL header) */
    /* the largest memo the value may carry, charged with it; set before
     * the value is shared (0: none) */
    size_t memo_reserve;
    _Atomic(cache_memo *) memo;
    atomic_bool verified;
    _Atomic uint64_t fnv1a; /* cache_value_fnv1a's, once computed (0: not yet) */
    char content_type[CACHE_CTYPE_MAX];
    size_t len;
    unsigned char *data; /* the bytes: in inline_data, or an adopted buffer */
    unsigned char inline_data[];
} cache_value;

/* A new value with one reference (a copy of data); NULL when out of
 * memory. */
cache_value *cache_value_new(const void *data, size_t len, const char *content_type);
/* A new value with one reference over buf (malloc'd, len bytes), which it
 * takes over and frees with the value: no copy. NULL when out of memory;
 * buf is then still the caller's. */
cache_value *cache_value_adopt(unsigned char *buf, size_t len, const char *content_type);
cache_value *cache_value_ref(cache_value *v);
/* Drops a reference; the last one frees the value and its memo. */
void cache_value_unref(cache_value *v);

/* What a memo of a value of len bytes may take: its size again, and a
 * little for the difference in form. */
#define CACHE_MEMO_RESERVE(len) ((len) + 1024)

/* The memo v carries, or NULL. Any thread; the memo lives as long as the
 * caller's reference to v. */
const cache_memo *cache_value_memo(cache_value *v);
/* Attaches m to v, unless v carries a memo already (a reader that got
 * there first) or m->size is larger than v's memo_reserve. Returns the
 * memo v carries after the call: m, which then belongs to v; or the
 * earlier one, or NULL when there is none and m did not fit, and then m
 * stays the caller's. Any thread. */
const cache_memo *cache_value_attach_memo(cache_value *v, cache_memo *m);

/* Marks v's bytes as checked against its key (see above): before v is
 * shared, or after, from any thread. */
void cache_value_mark_verified(cache_value *v);
/* Whether some holder marked v verified. */
bool cache_value_verified(const cache_value *v);

/* The 64-bit FNV-1a hash of v's bytes (a cheap validator for ETags),
 * computed by the first caller and kept with the value, so that serving
 * a large value again costs nothing more. Any thread. */
uint64_t cache_value_fnv1a(cache_value *v);

/* What a value costs a byte budget: its bytes, the memo it may carry,
 * plus bookkeeping. */
size_t cache_value_charge(const cache_value *v, size_t key_len);

#endif
