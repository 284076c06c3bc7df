/* A cached value: immutable bytes with their content type, shared by
 * reference count so that a hit hands out the value without copying it
 * under a lock. */
#ifndef STRATA_CACHE_VALUE_H
#define STRATA_CACHE_VALUE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define CACHE_CTYPE_MAX 96

typedef struct cache_value {
    atomic_uint refs;
    uint64_t write_id;  /* which L2 write this copy came from (0: none) */
    int64_t expires_ms; /* wall-clock expiry, 0: none (for the TTL header) */
    char content_type[CACHE_CTYPE_MAX];
    size_t len;
    unsigned char data[];
} cache_value;

/* A new value with one reference; NULL when out of memory. */
cache_value *cache_value_new(const void *data, size_t len, const char *content_type);
cache_value *cache_value_ref(cache_value *v);
void cache_value_unref(cache_value *v);

/* What a value costs a byte budget: its bytes plus bookkeeping. */
size_t cache_value_charge(const cache_value *v, size_t key_len);

#endif
