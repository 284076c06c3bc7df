#include "l1.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "../common/glob.h"
#include "l1_sketch.h"

#define SHARDS 32

/* Where an entry is (W-TinyLFU): the admission window, or the main
 * segmented LRU's probation or protected segment; NONE while it is
 * between two of them (only inside one call, under the shard's lock). */
enum { WINDOW, PROBATION, PROTECTED, NSEGS, NONE = NSEGS };

typedef struct l1_entry {
    struct l1_entry *hnext;       /* hash chain */
    struct l1_entry *prev, *next; /* its segment's list: head is most recent */
    uint64_t hash;
    uint64_t stamp;      /* the shard's clock when last moved to a front */
    uint64_t expires_ms; /* 0: never */
    size_t charge;
    l2_token tag; /* zero: untagged (never current) */
    cache_value *value;
    int seg;
    size_t key_len;
    char key[];
} l1_entry;

typedef struct l1_list {
    l1_entry *head, *tail;
    size_t items, bytes;
} l1_list;

/* Each shard on its own cache lines, so that two threads working in two
 * shards do not bounce one line between cores (measured: it halved
 * throughput with 2 threads). */
typedef struct l1_shard {
    alignas(64) pthread_mutex_t mu;
    l1_entry **buckets;
    size_t nbuckets;
    l1_list seg[NSEGS];
    size_t items, bytes;
    size_t max_items, max_bytes;
    /* the window's and the protected segment's limits (the window's
     * moves with the hill climber; probation takes what is left) */
    size_t window_items, window_bytes, protected_items, protected_bytes;
    l1_sketch sketch;
    /* candidates lately refused admission (a small bloom filter, cleared
     * after REFUSED_SPAN x capacity refusals): one refused once already is
     * let in, so a new hot set is not kept out long by old counts */
    uint64_t *refused;
    size_t refused_mask, refusals;
    uint64_t hits, misses, evictions, expirations, stale;
    uint64_t clock; /* counts moves to a front */
    uint64_t rng;
    /* lookups not yet passed on to the cache's hill climber */
    uint32_t pending_hits, pending_lookups;
    uint64_t window_gen; /* the climber's window last applied here */
    char pad[64];
} l1_shard;

/* The hill climber, one for the whole cache (as Caffeine's): shards pass
 * their hits and lookups on in batches (one atomic add per batch); the
 * lookup that completes a sample moves the window's share of the capacity,
 * and each shard takes the new share at its next set. */
typedef struct l1_climber {
    alignas(64) atomic_ullong sample; /* hits << 32 | lookups */
    atomic_ullong gen;                /* window_share's version */
    _Atomic double window_share;
    pthread_mutex_t mu; /* the rest: only whoever completes a sample */
    uint64_t sample_size;
    double step, prev_rate;
    char pad[64];
} l1_climber;

struct l1_cache {
    l1_budget *global;
    int nshards; /* at most max_items: each shard holds one item or more */
    bool lru;    /* L1_LRU: no sketch, no climber, the window is everything */
    l1_climber climber;
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

#define WINDOW_START    0.01 /* of the capacity, as in Caffeine */
#define PROTECTED_SHARE 0.8  /* of the main segment */
#define CLIMB_STEP      0.1  /* of the capacity: the hill climber's first step (Caffeine: 0.0625) */
#define CLIMB_DECAY     0.98 /* each sample shortens the step so */
#define CLIMB_RESTART   0.05 /* a hit rate that moved this much restarts it */
#define CLIMB_NOISE     0.002 /* a hit rate falling less than this keeps the direction */
#define CLIMB_SAMPLE    10    /* lookups per sample, times the capacity */
#define CLIMB_BATCH     64    /* lookups a shard counts before passing them on */
#define REFUSED_SPAN    4     /* refusals the refused filter remembers, times the capacity */
#define SHRINK_BATCH    16    /* entries a set moves out of a window that shrank, at most */

/* Sets the window to about `target` items (one at least: the newest entry
 * always lives there) and the byte limits in proportion. */
static void set_window(l1_shard *s, double target)
{
    double max = (double)s->max_items;
    if (target < 1)
        target = 1;
    if (target > max)
        target = max;
    s->window_items = (size_t)(target + 0.5);
    if (s->window_items < 1)
        s->window_items = 1;
    double share = (double)s->window_items / max;
    s->window_bytes = (size_t)((double)s->max_bytes * share);
    s->protected_items = (size_t)((double)(s->max_items - s->window_items) * PROTECTED_SHARE);
    s->protected_bytes = (size_t)((double)(s->max_bytes - s->window_bytes) * PROTECTED_SHARE);
}

l1_cache *l1_new(size_t max_items, size_t max_bytes, l1_budget *global)
{
    return l1_new_policy(max_items, max_bytes, global, L1_TINYLFU);
}

l1_cache *l1_new_policy(size_t max_items, size_t max_bytes, l1_budget *global, l1_policy policy)
{
    l1_cache *c = aligned_alloc(64, (sizeof *c + 63) / 64 * 64);
    if (c == NULL)
        return NULL;
    memset(c, 0, sizeof *c);
    c->global = global;
    c->lru = policy == L1_LRU;
    if (max_items == 0)
        max_items = 1;
    c->nshards = max_items < SHARDS ? (int)max_items : SHARDS;
    size_t n = (size_t)c->nshards;
    l1_climber *cl = &c->climber;
    pthread_mutex_init(&cl->mu, NULL);
    uint64_t sample = (uint64_t)max_items * CLIMB_SAMPLE;
    cl->sample_size = sample < CLIMB_BATCH  ? CLIMB_BATCH
                      : sample > (1u << 30) ? (1u << 30)
                                            : sample;
    cl->step = CLIMB_STEP;
    atomic_init(&cl->window_share, WINDOW_START);
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
        s->refused_mask = 511;
        while (s->refused_mask + 1 < s->max_items * 16 && s->refused_mask < (1u << 24) - 1)
            s->refused_mask = s->refused_mask * 2 + 1;
        s->refused = calloc((s->refused_mask + 1) / 64, sizeof *s->refused);
        if (s->buckets == NULL || s->refused == NULL || !l1_sketch_init(&s->sketch, s->max_items)) {
            l1_free(c);
            return NULL;
        }
        s->rng = 0x853c49e6748fea9bull ^ (uint64_t)i;
        set_window(s, (c->lru ? 1.0 : WINDOW_START) * (double)s->max_items);
    }
    return c;
}

static void seg_unlink(l1_shard *s, l1_entry *e)
{
    if (e->seg == NONE)
        return;
    l1_list *l = &s->seg[e->seg];
    if (e->prev)
        e->prev->next = e->next;
    else
        l->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        l->tail = e->prev;
    l->items--;
    l->bytes -= e->charge;
    e->prev = e->next = NULL;
    e->seg = NONE;
}

static void seg_push_front(l1_shard *s, int seg, l1_entry *e)
{
    l1_list *l = &s->seg[seg];
    e->seg = seg;
    e->stamp = ++s->clock;
    e->prev = NULL;
    e->next = l->head;
    if (l->head)
        l->head->prev = e;
    l->head = e;
    if (l->tail == NULL)
        l->tail = e;
    l->items++;
    l->bytes += e->charge;
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
    seg_unlink(s, e);
    s->items--;
    s->bytes -= e->charge;
    atomic_fetch_sub_explicit(&c->global->used, e->charge, memory_order_relaxed);
    cache_value_unref(e->value);
    free(e);
}

static void evict(l1_cache *c, l1_shard *s, l1_entry *e)
{
    remove_entry(c, s, find_slot(s, e->key, e->key_len, e->hash));
    s->evictions++;
}

/* Whether one more entry of `charge` bytes would pass a limit. */
static bool over(const l1_cache *c, const l1_shard *s, size_t charge)
{
    return s->items + 1 > s->max_items || s->bytes + charge > s->max_bytes ||
           atomic_load_explicit(&c->global->used, memory_order_relaxed) + charge > c->global->limit;
}

/* Moves protected entries back to probation while the protected segment
 * is past its limits. */
static void demote(l1_shard *s)
{
    l1_list *p = &s->seg[PROTECTED];
    while (p->tail != NULL && (p->items > s->protected_items || p->bytes > s->protected_bytes)) {
        l1_entry *e = p->tail;
        seg_unlink(s, e);
        seg_push_front(s, PROBATION, e);
    }
}

/* TinyLFU: whether the candidate leaving the window is worth more than
 * the main segment's victim, by how often each was asked for lately. */
static bool admits(l1_shard *s, const l1_entry *cand, const l1_entry *victim)
{
    unsigned fc = l1_sketch_estimate(&s->sketch, cand->hash);
    unsigned fv = l1_sketch_estimate(&s->sketch, victim->hash);
    if (fc > fv)
        return true;
    /* refused once lately and asked for again: recency wins this time */
    if (s->refused != NULL && fc > 0) {
        size_t a = (size_t)(cand->hash >> 16) & s->refused_mask;
        /* (mixed: the hash's top bits chose the shard, so they are all
         * alike here) */
        size_t b = (size_t)((cand->hash * 0x9e3779b97f4a7c15ull) >> 40) & s->refused_mask;
        if ((s->refused[a / 64] >> (a % 64) & 1) && (s->refused[b / 64] >> (b % 64) & 1))
            return true;
        if (++s->refusals > REFUSED_SPAN * s->max_items) {
            memset(s->refused, 0, (s->refused_mask + 1) / 8);
            s->refusals = 0;
        }
        s->refused[a / 64] |= (uint64_t)1 << (a % 64);
        s->refused[b / 64] |= (uint64_t)1 << (b % 64);
    }
    /* two entries nobody asked for: the newer wins, as in an LRU */
    if (fc == 0 && fv == 0)
        return true;
    /* a warm candidate against a hot victim (perhaps one whose hash
     * collides with many keys) sometimes wins, so none stays forever */
    if (fc >= 6) {
        s->rng ^= s->rng << 13;
        s->rng ^= s->rng >> 7;
        s->rng ^= s->rng << 17;
        return (s->rng & 127) == 0;
    }
    return false;
}

static bool expired(const l1_entry *e, uint64_t now_ms)
{
    return e->expires_ms != 0 && e->expires_ms <= now_ms;
}

/* Removes an entry past its TTL (counted as an expiration). */
static void expire(l1_cache *c, l1_shard *s, l1_entry *e)
{
    remove_entry(c, s, find_slot(s, e->key, e->key_len, e->hash));
    s->expirations++;
}

/* cand has just left the window (it is in no list, but still counted):
 * while one more entry of `charge` bytes would not fit, it meets the main
 * segment's victim, and the loser is evicted (one past its TTL loses
 * unasked: its past popularity is worth nothing); if it survives, it goes
 * to the front of probation. */
static void admit(l1_cache *c, l1_shard *s, l1_entry *cand, size_t charge, uint64_t now_ms)
{
    if (expired(cand, now_ms)) {
        expire(c, s, cand);
        return;
    }
    while (over(c, s, charge)) {
        l1_entry *victim = s->seg[PROBATION].tail;
        /* the protected tail too: without hits in probation nothing is
         * demoted, and expired entries would hold protected for good */
        l1_entry *old = s->seg[PROTECTED].tail;
        if (victim != NULL && expired(victim, now_ms)) {
            expire(c, s, victim);
            continue;
        }
        if (old != NULL && expired(old, now_ms)) {
            expire(c, s, old);
            continue;
        }
        if (victim == NULL)
            victim = old;
        if (victim == NULL || !admits(s, cand, victim)) {
            evict(c, s, cand);
            return;
        }
        evict(c, s, victim);
    }
    seg_push_front(s, PROBATION, cand);
}

/* Makes room for one more entry of `charge` bytes in the window (moving
 * what leaves it through admission) and in the shard and global budget. */
static void make_room(l1_cache *c, l1_shard *s, size_t charge, uint64_t now_ms)
{
    l1_list *w = &s->seg[WINDOW];
    /* a window the climber shrank sheds its excess a few at a time, so
     * that no one set pays for all of it */
    for (int moved = 0;
         w->tail != NULL && (w->items + 1 > s->window_items || w->bytes + charge > s->window_bytes);
         moved++) {
        if (moved >= SHRINK_BATCH && !over(c, s, charge))
            break;
        l1_entry *cand = w->tail;
        seg_unlink(s, cand);
        admit(c, s, cand, charge, now_ms);
    }
    /* still too full (the byte budgets, or a window left short by
     * deletions): the window's oldest goes through admission all the
     * same, and only with an empty window does main lose one unasked */
    while (over(c, s, charge)) {
        l1_entry *cand = w->tail;
        if (cand != NULL) {
            seg_unlink(s, cand);
            admit(c, s, cand, charge, now_ms);
            continue;
        }
        l1_entry *victim = s->seg[PROBATION].tail;
        if (victim == NULL)
            victim = s->seg[PROTECTED].tail;
        if (victim == NULL)
            break;
        evict(c, s, victim);
    }
}

/* A hit: probation promotes to protected; elsewhere the move to the front
 * is lazy: an entry still in the newer part of its list stays where it
 * is, so most hits write nothing shared. */
static void touch(l1_shard *s, l1_entry *e)
{
    if (e->seg == PROBATION) {
        seg_unlink(s, e);
        seg_push_front(s, PROTECTED, e);
        demote(s);
    } else if (s->clock - e->stamp > s->max_items / 4) {
        int seg = e->seg;
        seg_unlink(s, e);
        seg_push_front(s, seg, e);
    }
}

/* The hill climber (as Caffeine's): after each sample of lookups, moves
 * the window's share one step the same way as last time if the hit rate
 * rose (or fell by less than the noise), the other way if it fell; steps shrink as it settles, and
 * start over when the hit rate jumps (the workload changed). */
static void climb(l1_climber *cl, uint64_t sample)
{
    if (pthread_mutex_trylock(&cl->mu) != 0)
        return; /* another sample is being taken: this one is dropped */
    uint64_t hits = sample >> 32, n = sample & 0xffffffffu;
    double rate = n ? (double)hits / (double)n : 0;
    double change = rate - cl->prev_rate;
    /* a sample of 10x the capacity measures the hit rate within about
     * 0.0015 (binomial): a smaller fall is no evidence against the step */
    double amount = change >= -CLIMB_NOISE ? cl->step : -cl->step;
    bool restart = change >= CLIMB_RESTART || change <= -CLIMB_RESTART;
    cl->step = restart ? CLIMB_STEP * (amount >= 0 ? 1 : -1) : CLIMB_DECAY * amount;
    cl->prev_rate = rate;
    double share = atomic_load_explicit(&cl->window_share, memory_order_relaxed) + amount;
    share = share < 0 ? 0 : share > 1 ? 1 : share;
    atomic_store_explicit(&cl->window_share, share, memory_order_relaxed);
    atomic_fetch_add_explicit(&cl->gen, 1, memory_order_release);
    pthread_mutex_unlock(&cl->mu);
}

/* Counts a lookup for the climber (under the shard's lock). */
static void count_lookup(l1_cache *c, l1_shard *s, bool hit)
{
    s->pending_hits += hit;
    if (++s->pending_lookups < CLIMB_BATCH)
        return;
    l1_climber *cl = &c->climber;
    uint64_t add = (uint64_t)s->pending_hits << 32 | s->pending_lookups;
    s->pending_hits = s->pending_lookups = 0;
    uint64_t before = atomic_fetch_add_explicit(&cl->sample, add, memory_order_relaxed);
    if ((before & 0xffffffffu) < cl->sample_size &&
        ((before + add) & 0xffffffffu) >= cl->sample_size)
        climb(cl, atomic_exchange_explicit(&cl->sample, 0, memory_order_relaxed));
}

/* Takes the climber's latest window share, if it moved since this shard
 * last did: a larger window takes main's oldest entries (probation
 * first), so that main shrinks without losing anything; a smaller one
 * lets its oldest go through admission as new entries push them out. */
static void follow_climber(l1_cache *c, l1_shard *s)
{
    l1_climber *cl = &c->climber;
    if (c->lru)
        return;
    uint64_t gen = atomic_load_explicit(&cl->gen, memory_order_acquire);
    if (gen == s->window_gen)
        return;
    s->window_gen = gen;
    double share = atomic_load_explicit(&cl->window_share, memory_order_relaxed);
    size_t before = s->window_items;
    set_window(s, share * (double)s->max_items);
    for (size_t i = before; i < s->window_items; i++) {
        l1_entry *e = s->seg[PROBATION].tail;
        if (e == NULL)
            e = s->seg[PROTECTED].tail;
        if (e == NULL)
            break;
        seg_unlink(s, e);
        seg_push_front(s, WINDOW, e);
    }
    demote(s);
}

/* Takes charge bytes of the global budget if they are there: a check
 * and an add apart would let two namespaces' sets pass the limit at once. */
static bool reserve(l1_budget *g, size_t charge)
{
    unsigned long long used = atomic_load_explicit(&g->used, memory_order_relaxed);
    do {
        if (used + charge > g->limit)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(&g->used, &used, used + charge,
                                                    memory_order_relaxed, memory_order_relaxed));
    return true;
}

static l1_shard *shard_of(l1_cache *c, uint64_t h)
{
    /* the hash's top bits, scaled: no division on every lookup */
    return &c->shards[((h >> 32) * (uint64_t)c->nshards) >> 32];
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
    /* misses and hits count, but for hits in protected (l1.h) */
    if (!c->lru && (e == NULL || e->seg != PROTECTED))
        l1_sketch_add(&s->sketch, h);
    if (e != NULL) {
        touch(s, e);
        v = cache_value_ref(e->value);
        s->hits++;
    } else {
        s->misses++;
    }
    if (!c->lru)
        count_lookup(c, s, e != NULL);
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
    e->seg = NONE;

    pthread_mutex_lock(&s->mu);
    l1_entry **slot = find_slot(s, key, len, h);
    if (*slot != NULL)
        remove_entry(c, s, slot);
    follow_climber(c, s);
    /* The new entry always goes to the window, so that it is there right
     * after the set; admission decides what leaves the window. */
    make_room(c, s, charge, now_ms);
    bool stored = reserve(c->global, charge);
    if (stored) {
        slot = find_slot(s, key, len, h);
        e->hnext = NULL;
        *slot = e;
        seg_push_front(s, WINDOW, e);
        s->items++;
        s->bytes += charge;
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
        out->window += s->window_items;
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
            for (int g = 0; g < NSEGS; g++)
                while (s->seg[g].head) {
                    l1_entry *e = s->seg[g].head;
                    remove_entry(c, s, find_slot(s, e->key, e->key_len, e->hash));
                }
            free(s->buckets);
        }
        l1_sketch_free(&s->sketch);
        free(s->refused);
        pthread_mutex_destroy(&s->mu);
    }
    pthread_mutex_destroy(&c->climber.mu);
    free(c);
}
