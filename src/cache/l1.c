#include "l1.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "../common/glob.h"

#define SHARDS 32

typedef struct l1_entry {
    struct l1_entry *hnext;       /* hash chain */
    struct l1_entry *prev, *next; /* LRU list: head is most recent */
    uint64_t hash;
    uint64_t stamp;      /* the shard's clock when last moved to the front */
    uint64_t expires_ms; /* 0: never */
    size_t charge;
    l2_token tag; /* zero: untagged (never current) */
    cache_value *value;
    size_t key_len;
    char key[];
} l1_entry;

/* Each shard on its own cache lines, so that two threads working in two
 * shards do not bounce one line between cores (measured: it halved
 * throughput with 2 threads). */
typedef struct l1_shard {
    alignas(64) pthread_mutex_t mu;
    l1_entry **buckets;
    size_t nbuckets;
    l1_entry *head, *tail;
    size_t items, bytes;
    size_t max_items, max_bytes;
    uint64_t hits, misses, evictions, expirations, stale;
    uint64_t clock; /* counts moves to the front */
    char pad[64];
} l1_shard;

struct l1_cache {
    l1_budget *global;
    int nshards; /* at most max_items: each shard holds one item or more */
    l1_shard shards[SHARDS];
};

static uint64_t hash_key(const char *key, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a, then a final mix */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

l1_cache *l1_new(size_t max_items, size_t max_bytes, l1_budget *global)
{
    l1_cache *c = aligned_alloc(64, (sizeof *c + 63) / 64 * 64);
    if (c == NULL)
        return NULL;
    memset(c, 0, sizeof *c);
    c->global = global;
    if (max_items == 0)
        max_items = 1;
    c->nshards = max_items < SHARDS ? (int)max_items : SHARDS;
    size_t n = (size_t)c->nshards;
    for (int i = 0; i < c->nshards; i++) {
        l1_shard *s = &c->shards[i];
        pthread_mutex_init(&s->mu, NULL);
        /* the shards' limits add up to exactly max_items */
        s->max_items = max_items / n + ((size_t)i < max_items % n);
        s->max_bytes = max_bytes / n;
        s->nbuckets = 16;
        while (s->nbuckets < s->max_items && s->nbuckets < (1u << 20))
            s->nbuckets *= 2;
        s->buckets = calloc(s->nbuckets, sizeof *s->buckets);
        if (s->buckets == NULL) {
            l1_free(c);
            return NULL;
        }
    }
    return c;
}

static void lru_unlink(l1_shard *s, l1_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        s->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(l1_shard *s, l1_entry *e)
{
    e->stamp = ++s->clock;
    e->prev = NULL;
    e->next = s->head;
    if (s->head)
        s->head->prev = e;
    s->head = e;
    if (s->tail == NULL)
        s->tail = e;
}

static l1_entry **find_slot(l1_shard *s, const char *key, size_t len, uint64_t h)
{
    l1_entry **p = &s->buckets[h & (s->nbuckets - 1)];
    while (*p && !((*p)->hash == h && (*p)->key_len == len && memcmp((*p)->key, key, len) == 0))
        p = &(*p)->hnext;
    return p;
}

/* Unlinks an entry from table and list and frees it. */
static void remove_entry(l1_cache *c, l1_shard *s, l1_entry **slot)
{
    l1_entry *e = *slot;
    *slot = e->hnext;
    lru_unlink(s, e);
    s->items--;
    s->bytes -= e->charge;
    atomic_fetch_sub_explicit(&c->global->used, e->charge, memory_order_relaxed);
    cache_value_unref(e->value);
    free(e);
}

static void evict_tail(l1_cache *c, l1_shard *s)
{
    l1_entry *e = s->tail;
    remove_entry(c, s, find_slot(s, e->key, e->key_len, e->hash));
    s->evictions++;
}

static l1_shard *shard_of(l1_cache *c, uint64_t h)
{
    return &c->shards[(h >> 56) % (uint64_t)c->nshards];
}

cache_value *l1_get_current(l1_cache *c, const char *key, uint64_t now_ms, const l2_token *current)
{
    size_t len = strlen(key);
    uint64_t h = hash_key(key, len);
    l1_shard *s = shard_of(c, h);
    cache_value *v = NULL;
    pthread_mutex_lock(&s->mu);
    l1_entry **slot = find_slot(s, key, len, h);
    l1_entry *e = *slot;
    if (e != NULL && e->expires_ms != 0 && e->expires_ms <= now_ms) {
        remove_entry(c, s, slot);
        s->expirations++;
        e = NULL;
    }
    if (e != NULL && current != NULL && !l2_token_equal(&e->tag, current)) {
        remove_entry(c, s, slot); /* changed elsewhere since it was filled */
        s->stale++;
        e = NULL;
    }
    if (e != NULL) {
        /* Lazy promotion: an entry still in the newer part of the list
         * stays where it is, so most hits write nothing shared; the
         * eviction order stays close to LRU. */
        if (s->clock - e->stamp > s->max_items / 4) {
            lru_unlink(s, e);
            lru_push_front(s, e);
        }
        v = cache_value_ref(e->value);
        s->hits++;
    } else {
        s->misses++;
    }
    pthread_mutex_unlock(&s->mu);
    return v;
}

bool l1_holds(l1_cache *c, const char *key)
{
    size_t len = strlen(key);
    uint64_t h = hash_key(key, len);
    l1_shard *s = shard_of(c, h);
    pthread_mutex_lock(&s->mu);
    bool held = *find_slot(s, key, len, h) != NULL;
    pthread_mutex_unlock(&s->mu);
    return held;
}

cache_value *l1_get(l1_cache *c, const char *key, uint64_t now_ms)
{
    return l1_get_current(c, key, now_ms, NULL);
}

bool l1_set_tagged(l1_cache *c, const char *key, cache_value *v, uint64_t now_ms, uint64_t ttl_ms,
                   const l2_token *tag)
{
    size_t len = strlen(key);
    uint64_t h = hash_key(key, len);
    l1_shard *s = shard_of(c, h);
    size_t charge = cache_value_charge(v, len);
    l1_entry *e = NULL;
    /* too big (it would evict everything and still not fit), never
     * current, or no memory: not cached, and no older copy stays */
    if (charge > s->max_bytes || charge > c->global->limit ||
        (tag != NULL && !l2_token_usable(tag)) || (e = malloc(sizeof *e + len + 1)) == NULL) {
        l1_delete(c, key);
        return false;
    }
    memcpy(e->key, key, len + 1);
    e->key_len = len;
    e->hash = h;
    e->charge = charge;
    e->expires_ms = ttl_ms ? now_ms + ttl_ms : 0;
    if (tag != NULL)
        e->tag = *tag;
    else
        memset(&e->tag, 0, sizeof e->tag);
    e->value = cache_value_ref(v);
    e->prev = e->next = e->hnext = NULL;

    pthread_mutex_lock(&s->mu);
    l1_entry **slot = find_slot(s, key, len, h);
    if (*slot != NULL)
        remove_entry(c, s, slot);
    while (
        s->tail != NULL &&
        (s->items + 1 > s->max_items || s->bytes + charge > s->max_bytes ||
         atomic_load_explicit(&c->global->used, memory_order_relaxed) + charge > c->global->limit))
        evict_tail(c, s);
    bool stored =
        atomic_load_explicit(&c->global->used, memory_order_relaxed) + charge <= c->global->limit;
    if (stored) {
        slot = find_slot(s, key, len, h);
        e->hnext = NULL;
        *slot = e;
        lru_push_front(s, e);
        s->items++;
        s->bytes += charge;
        atomic_fetch_add_explicit(&c->global->used, charge, memory_order_relaxed);
    }
    pthread_mutex_unlock(&s->mu);
    if (!stored) {
        cache_value_unref(e->value);
        free(e);
    }
    return stored;
}

bool l1_set(l1_cache *c, const char *key, cache_value *v, uint64_t now_ms, uint64_t ttl_ms)
{
    return l1_set_tagged(c, key, v, now_ms, ttl_ms, NULL);
}

bool l1_delete(l1_cache *c, const char *key)
{
    size_t len = strlen(key);
    uint64_t h = hash_key(key, len);
    l1_shard *s = shard_of(c, h);
    pthread_mutex_lock(&s->mu);
    l1_entry **slot = find_slot(s, key, len, h);
    bool found = *slot != NULL;
    if (found)
        remove_entry(c, s, slot);
    pthread_mutex_unlock(&s->mu);
    return found;
}

size_t l1_delete_matching(l1_cache *c, const char *pattern, l1_key_fn fn, void *ctx)
{
    size_t n = 0;
    for (int i = 0; i < c->nshards; i++) {
        l1_shard *s = &c->shards[i];
        pthread_mutex_lock(&s->mu);
        for (size_t b = 0; b < s->nbuckets; b++) {
            l1_entry **slot = &s->buckets[b];
            while (*slot) {
                if (glob_match(pattern, (*slot)->key)) {
                    if (fn)
                        fn(ctx, (*slot)->key);
                    remove_entry(c, s, slot);
                    n++;
                } else {
                    slot = &(*slot)->hnext;
                }
            }
        }
        pthread_mutex_unlock(&s->mu);
    }
    return n;
}

void l1_clear(l1_cache *c)
{
    l1_delete_matching(c, "*", NULL, NULL);
}

void l1_get_stats(l1_cache *c, l1_stats *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < c->nshards; i++) {
        l1_shard *s = &c->shards[i];
        pthread_mutex_lock(&s->mu);
        out->hits += s->hits;
        out->misses += s->misses;
        out->evictions += s->evictions;
        out->expirations += s->expirations;
        out->stale += s->stale;
        out->items += s->items;
        out->bytes += s->bytes;
        pthread_mutex_unlock(&s->mu);
    }
}

void l1_free(l1_cache *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < c->nshards; i++) {
        l1_shard *s = &c->shards[i];
        if (s->buckets) {
            while (s->head)
                remove_entry(c, s, find_slot(s, s->head->key, s->head->key_len, s->head->hash));
            free(s->buckets);
        }
        pthread_mutex_destroy(&s->mu);
    }
    free(c);
}
