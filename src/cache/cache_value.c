#include "cache_value.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void init(cache_value *v, size_t len, const char *content_type)
{
    atomic_init(&v->refs, 1);
    v->write_id = 0;
    v->expires_ms = 0;
    v->memo_reserve = 0;
    atomic_init(&v->memo, NULL);
    atomic_init(&v->verified, false);
    atomic_init(&v->fnv1a, 0);
    snprintf(v->content_type, sizeof v->content_type, "%s",
             content_type ? content_type : "application/octet-stream");
    v->len = len;
}

cache_value *cache_value_new(const void *data, size_t len, const char *content_type)
{
    cache_value *v = malloc(sizeof *v + (len ? len : 1));
    if (v == NULL)
        return NULL;
    init(v, len, content_type);
    v->data = v->inline_data;
    if (len)
        memcpy(v->data, data, len);
    return v;
}

cache_value *cache_value_adopt(unsigned char *buf, size_t len, const char *content_type)
{
    cache_value *v = malloc(sizeof *v);
    if (v == NULL)
        return NULL;
    init(v, len, content_type);
    v->data = buf;
    return v;
}

cache_value *cache_value_ref(cache_value *v)
{
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
    return v;
}

void cache_value_unref(cache_value *v)
{
    if (v == NULL || atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1)
        return;
    cache_memo *m = atomic_load_explicit(&v->memo, memory_order_acquire);
    if (m != NULL)
        m->free(m);
    if (v->data != v->inline_data)
        free(v->data);
    free(v);
}

const cache_memo *cache_value_memo(cache_value *v)
{
    return atomic_load_explicit(&v->memo, memory_order_acquire);
}

const cache_memo *cache_value_attach_memo(cache_value *v, cache_memo *m)
{
    if (m->size > v->memo_reserve)
        return atomic_load_explicit(&v->memo, memory_order_acquire);
    cache_memo *expected = NULL;
    /* release: whoever loads the pointer sees the memo's contents */
    if (atomic_compare_exchange_strong_explicit(&v->memo, &expected, m, memory_order_acq_rel,
                                                memory_order_acquire))
        return m;
    return expected;
}

uint64_t cache_value_fnv1a(cache_value *v)
{
    uint64_t h = atomic_load_explicit(&v->fnv1a, memory_order_relaxed);
    if (h != 0)
        return h;
    /* every caller computes the same hash, so a race only repeats work;
     * a hash of 0 is computed each time (one in 2^64) */
    h = 1469598103934665603ull;
    for (size_t i = 0; i < v->len; i++)
        h = (h ^ v->data[i]) * 1099511628211ull;
    atomic_store_explicit(&v->fnv1a, h, memory_order_relaxed);
    return h;
}

void cache_value_mark_verified(cache_value *v)
{
    atomic_store_explicit(&v->verified, true, memory_order_release);
}

bool cache_value_verified(const cache_value *v)
{
    return atomic_load_explicit(&v->verified, memory_order_acquire);
}

size_t cache_value_charge(const cache_value *v, size_t key_len)
{
    /* 64: entry and table overhead */
    return sizeof *v + v->len + v->memo_reserve + key_len + 64;
}
