/* L1: eviction order (LRU, W-TinyLFU admission), item and byte bounds, TTLs, the global budget,
 * glob deletes, entries tagged with L2 tokens, and many threads at once. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "../../src/cache/l1.h"
#include "../support/harness.h"

static cache_value *val(size_t n)
{
    static unsigned char buf[1 << 20];
    return cache_value_new(buf, n, "application/octet-stream");
}

static void put(l1_cache *c, const char *key, size_t n, uint64_t now, uint64_t ttl)
{
    cache_value *v = val(n);
    l1_set(c, key, v, now, ttl);
    cache_value_unref(v);
}

static bool has(l1_cache *c, const char *key, uint64_t now)
{
    cache_value *v = l1_get(c, key, now);
    cache_value_unref(v);
    return v != NULL;
}

START_TEST(item_bound_evicts_least_recent)
{
    l1_budget b = {0, 1 << 30};
    /* 32 shards x 20 items */
    l1_cache *c = l1_new(640, 1 << 30, &b);
    char key[32];
    for (int i = 0; i < 4000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        put(c, key, 10, 1, 0);
        if (i > 0)
            ck_assert(has(c, "k0", 1)); /* touched every round, so never evicted */
    }
    l1_stats s;
    l1_get_stats(c, &s);
    ck_assert_uint_le(s.items, 640);
    ck_assert_uint_gt(s.evictions, 3000);
    ck_assert(has(c, "k0", 1));    /* touched every round: never the least recent */
    ck_assert(has(c, "k3999", 1)); /* the newest */
    ck_assert(!has(c, "k1", 1));   /* long evicted */
    l1_free(c);
}
END_TEST

START_TEST(byte_bound_holds)
{
    l1_budget b = {0, 1 << 30};
    l1_cache *c = l1_new(100000, 1 << 20, &b); /* 1 MiB */
    char key[32];
    for (int i = 0; i < 1000; i++) { /* 10 MiB offered */
        snprintf(key, sizeof key, "k%d", i);
        put(c, key, 10000, 1, 0);
    }
    l1_stats s;
    l1_get_stats(c, &s);
    ck_assert_uint_le(s.bytes, 1 << 20);
    ck_assert_uint_gt(s.items, 50);
    ck_assert_uint_le(atomic_load(&b.used), 1 << 20);
    /* a value bigger than a shard's share is simply not cached */
    cache_value *big = val(512 * 1024);
    ck_assert(!l1_set(c, "big", big, 1, 0));
    cache_value_unref(big);
    l1_free(c);
    ck_assert_uint_eq(atomic_load(&b.used), 0);
}
END_TEST

START_TEST(ttl_expires_entries)
{
    l1_budget b = {0, 1 << 30};
    l1_cache *c = l1_new(100, 1 << 20, &b);
    put(c, "short", 5, 1000, 100);
    put(c, "forever", 5, 1000, 0);
    ck_assert(has(c, "short", 1099));
    ck_assert(!has(c, "short", 1100));
    ck_assert(has(c, "forever", 999999999));
    l1_stats s;
    l1_get_stats(c, &s);
    ck_assert_uint_eq(s.expirations, 1);
    ck_assert_uint_eq(s.items, 1);
    l1_free(c);
}
END_TEST

START_TEST(global_budget_is_shared)
{
    l1_budget b = {0, 200 * 1024};
    l1_cache *a = l1_new(1000, 1 << 30, &b);
    l1_cache *z = l1_new(1000, 1 << 30, &b);
    char key[32];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "k%d", i);
        put(a, key, 4000, 1, 0);
        put(z, key, 4000, 1, 0);
    }
    ck_assert_uint_le(atomic_load(&b.used), 200 * 1024);
    l1_free(a);
    l1_free(z);
    ck_assert_uint_eq(atomic_load(&b.used), 0);
}
END_TEST

/* Small item limits are exact: never more items than configured. */
START_TEST(item_limits_are_exact)
{
    l1_budget b = {0, 1 << 30};
    for (size_t limit = 1; limit <= 40; limit++) {
        l1_cache *c = l1_new(limit, 1 << 20, &b);
        char key[32];
        for (int i = 0; i < 500; i++) {
            snprintf(key, sizeof key, "k%d", i);
            put(c, key, 3, 1, 0);
        }
        l1_stats st;
        l1_get_stats(c, &st);
        ck_assert_uint_le(st.items, limit);
        ck_assert_uint_ge(st.items, 1);
        l1_free(c);
    }
}
END_TEST

/* The shared glob dialect: '!' negation, '?' one UTF-8 character. */
START_TEST(glob_dialect_matches_l2)
{
    l1_budget b = {0, 1 << 30};
    l1_cache *c = l1_new(100, 1 << 20, &b);
    const char *keys[] = {"apple", "banana", "caf\xc3\xa9", "cafe"};
    for (int i = 0; i < 4; i++)
        put(c, keys[i], 3, 1, 0);
    ck_assert_uint_eq(l1_delete_matching(c, "caf?", NULL, NULL), 2);
    ck_assert_uint_eq(l1_delete_matching(c, "[!a]*", NULL, NULL), 1);
    ck_assert(has(c, "apple", 1));
    l1_free(c);
}
END_TEST

START_TEST(glob_delete_and_replace)
{
    l1_budget b = {0, 1 << 30};
    l1_cache *c = l1_new(100, 1 << 20, &b);
    const char *keys[] = {"apple", "apple/pie", "applesauce", "banana", "pineapple"};
    for (int i = 0; i < 5; i++)
        put(c, keys[i], 3, 1, 0);
    ck_assert_uint_eq(l1_delete_matching(c, "apple*", NULL, NULL), 3);
    ck_assert(!has(c, "apple/pie", 1));
    ck_assert(has(c, "banana", 1));
    ck_assert(has(c, "pineapple", 1));
    put(c, "banana", 7, 1, 0); /* replacing keeps one entry */
    cache_value *v = l1_get(c, "banana", 1);
    ck_assert_uint_eq(v->len, 7);
    cache_value_unref(v);
    l1_stats s;
    l1_get_stats(c, &s);
    ck_assert_uint_eq(s.items, 2);
    ck_assert(l1_delete(c, "banana"));
    ck_assert(!l1_delete(c, "banana"));
    l1_free(c);
}
END_TEST

/* W-TinyLFU: a set of keys read often survives a long scan of keys read
 * once, and a value just set is served right after. */
START_TEST(frequent_keys_survive_a_scan)
{
    l1_budget b = {0, 1 << 30};
    l1_cache *c = l1_new(640, 1 << 30, &b);
    char key[32];
    for (int round = 0; round < 5; round++)
        for (int i = 0; i < 300; i++) {
            snprintf(key, sizeof key, "hot%d", i);
            if (!has(c, key, 1))
                put(c, key, 10, 1, 0);
        }
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof key, "scan%d", i);
        ck_assert(!has(c, key, 1));
        put(c, key, 10, 1, 0);
        ck_assert(l1_holds(c, key));
    }
    int kept = 0;
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof key, "hot%d", i);
        kept += has(c, key, 1);
    }
    ck_assert_int_ge(kept, 240); /* 268 measured; an LRU keeps none */
    l1_stats s;
    l1_get_stats(c, &s);
    ck_assert_uint_le(s.items, 640);
    /* the refused scan keys left nothing behind: what is counted is what
     * is held, in the shard's and the global books alike */
    uint64_t held = 0;
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof key, "hot%d", i);
        held += l1_holds(c, key);
    }
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof key, "scan%d", i);
        held += l1_holds(c, key);
    }
    ck_assert_uint_eq(held, s.items);
    ck_assert_uint_eq(atomic_load(&b.used), s.bytes);
    ck_assert_uint_eq(s.evictions + s.items, 300 + 20000);
    l1_free(c);
    ck_assert_uint_eq(atomic_load(&b.used), 0);

    /* the same with the policy off: the scan flushes every hot key */
    c = l1_new_policy(640, 1 << 30, &b, L1_LRU);
    for (int round = 0; round < 5; round++)
        for (int i = 0; i < 300; i++) {
            snprintf(key, sizeof key, "hot%d", i);
            if (!has(c, key, 1))
                put(c, key, 10, 1, 0);
        }
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof key, "scan%d", i);
        put(c, key, 10, 1, 0);
    }
    kept = 0;
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof key, "hot%d", i);
        kept += has(c, key, 1);
    }
    ck_assert_int_eq(kept, 0);
    l1_get_stats(c, &s);
    ck_assert_uint_eq(s.window, 640);
    l1_free(c);
}
END_TEST

/* What is deleted, replaced or invalidated never comes back, however
 * often it was asked for: admission only ever chooses among entries held. */
START_TEST(an_invalidated_entry_never_comes_back)
{
    l1_budget b = {0, 1 << 30};
    l1_cache *c = l1_new(640, 1 << 30, &b);
    char key[32];
    l2_token t1 = {{0, 2, 0, 1}}, t2 = {{0, 4, 0, 1}};
    for (int round = 0; round < 20; round++)
        for (int i = 0; i < 100; i++) {
            snprintf(key, sizeof key, "hot%d", i);
            cache_value *v = l1_get(c, key, 1);
            if (v == NULL) {
                v = val(10);
                l1_set_tagged(c, key, v, 1, 0, &t1);
            }
            cache_value_unref(v);
        }
    ck_assert(l1_delete(c, "hot1"));
    ck_assert_uint_eq(l1_delete_matching(c, "hot2?", NULL, NULL), 10);
    ck_assert_ptr_null(l1_get_current(c, "hot3", 1, &t2)); /* stale: removed */
    cache_value *v4 = val(4);
    ck_assert(l1_set(c, "hot4", v4, 1, 0)); /* replaced */
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "scan%d", i);
        put(c, key, 10, 1, 0);
        if (i % 100 == 0) {
            ck_assert(!l1_holds(c, "hot1"));
            ck_assert(!l1_holds(c, "hot25"));
            ck_assert(!l1_holds(c, "hot3"));
        }
    }
    ck_assert_ptr_null(l1_get(c, "hot1", 1));
    ck_assert_ptr_null(l1_get(c, "hot25", 1));
    ck_assert_ptr_null(l1_get(c, "hot3", 1));
    cache_value *got = l1_get(c, "hot4", 1);
    if (got != NULL) /* the replacement, or nothing: never the old value */
        ck_assert_ptr_eq(got, v4);
    cache_value_unref(got);
    cache_value_unref(v4);
    ck_assert(has(c, "hot5", 1)); /* the others stayed */
    l1_free(c);
}
END_TEST

/* An entry past its TTL loses admission without a contest, however hot it
 * was: new keys take its place. */
START_TEST(expired_entries_make_way)
{
    l1_budget b = {0, 1 << 30};
    l1_cache *c = l1_new(640, 1 << 30, &b);
    char key[32];
    for (int round = 0; round < 10; round++)
        for (int i = 0; i < 600; i++) {
            snprintf(key, sizeof key, "hot%d", i);
            if (!has(c, key, 1000))
                put(c, key, 10, 1000, 100);
        }
    for (int i = 0; i < 2000; i++) { /* after the TTL: each new key asked for twice */
        snprintf(key, sizeof key, "new%d", i);
        if (!has(c, key, 5000))
            put(c, key, 10, 5000, 0);
        ck_assert(has(c, key, 5000));
    }
    int kept = 0, stuck = 0;
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof key, "new%d", i);
        kept += l1_holds(c, key);
    }
    for (int i = 0; i < 600; i++) {
        snprintf(key, sizeof key, "hot%d", i);
        stuck += l1_holds(c, key);
    }
    ck_assert_int_ge(kept, 500);
    ck_assert_int_le(stuck, 60);
    l1_stats s;
    l1_get_stats(c, &s);
    ck_assert_uint_ge(s.expirations, 540);
    l1_free(c);
}
END_TEST

/* The hill climber: on a workload where recency pays (a hot set replaced
 * often) the window grows from its 1% start; on Zipf it stays small. */
static uint64_t window_after(const char *workload)
{
    l1_budget b = {0, 1 << 30};
    l1_cache *c = l1_new(3200, 1 << 30, &b);
    char key[32];
    uint64_t x = 12345;
    for (int i = 0; i < 400000; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        unsigned r = (unsigned)(x >> 33);
        unsigned k;
        if (strcmp(workload, "shift") == 0) /* 2,000 hot keys, new ones every 10,000 */
            k = (unsigned)(i / 10000) * 2000 + r % 2000;
        else /* roughly Zipf: small ranks far more often */
            k = (unsigned)((double)(r % 100000) * (double)(r % 100000) / 100000.0 *
                           (double)((r >> 17) % 1000 + 1) / 1000.0);
        snprintf(key, sizeof key, "k%u", k);
        if (!has(c, key, 1))
            put(c, key, 10, 1, 0);
    }
    l1_stats s;
    l1_get_stats(c, &s);
    l1_free(c);
    return s.window;
}

START_TEST(climber_moves_the_window)
{
    uint64_t shift = window_after("shift"), skewed = window_after("skewed");
    fprintf(stderr, "window: shift %llu skewed %llu of 3200\n", (unsigned long long)shift,
            (unsigned long long)skewed);
    ck_assert_uint_ge(shift, 3200 / 5);
    ck_assert_uint_lt(skewed, shift);
}
END_TEST

static l1_cache *shared;

static void *hammer(void *arg)
{
    long t = (long)arg;
    char key[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof key, "k%d", (int)((i * 7 + t) % 500));
        if (i % 4 == 0) {
            put(shared, key, (size_t)(i % 300), 1, 0);
        } else {
            cache_value *v = l1_get(shared, key, 1);
            if (v)
                ck_assert_uint_lt(v->len, 300);
            cache_value_unref(v);
        }
    }
    return NULL;
}

static l2_token tok(uint64_t ns_gen, uint64_t key_gen)
{
    l2_token t = {{ns_gen, key_gen, 0, 1}};
    return t;
}

START_TEST(a_tagged_entry_is_served_only_while_its_token_holds)
{
    l1_budget b = {0, 1 << 30};
    l1_cache *c = l1_new(100, 1 << 20, &b);
    cache_value *v = val(10);
    l2_token t1 = tok(0, 2), t2 = tok(0, 4), other_ns = tok(2, 2);
    ck_assert(l1_set_tagged(c, "k", v, 1, 0, &t1));
    cache_value *got = l1_get_current(c, "k", 1, &t1);
    ck_assert_ptr_eq(got, v);
    cache_value_unref(got);
    /* no check asked for: served whatever its tag */
    got = l1_get(c, "k", 1);
    ck_assert_ptr_eq(got, v);
    cache_value_unref(got);
    /* the key's token moved (or its namespace's): stale, removed */
    ck_assert_ptr_null(l1_get_current(c, "k", 1, &other_ns));
    ck_assert_ptr_null(l1_get(c, "k", 1)); /* gone, not only hidden */
    ck_assert(l1_set_tagged(c, "k", v, 1, 0, &t1));
    ck_assert_ptr_null(l1_get_current(c, "k", 1, &t2));
    l1_stats st;
    l1_get_stats(c, &st);
    ck_assert_uint_eq(st.stale, 2);
    ck_assert_uint_eq(st.items, 0);
    /* an untagged entry never matches a token */
    ck_assert(l1_set(c, "u", v, 1, 0));
    ck_assert_ptr_null(l1_get_current(c, "u", 1, &t1));
    /* an unusable tag (a change was in progress) stores nothing, and
     * drops the older copy */
    l2_token busy = tok(0, 3);
    busy.w[3] = 0;
    ck_assert(l1_set_tagged(c, "k", v, 1, 0, &t1));
    ck_assert(!l1_set_tagged(c, "k", v, 1, 0, &busy));
    ck_assert_ptr_null(l1_get(c, "k", 1));
    /* nor does an unusable current token validate anything */
    ck_assert(l1_set_tagged(c, "k", v, 1, 0, &t1));
    ck_assert_ptr_null(l1_get_current(c, "k", 1, &busy));
    /* a value too big to cache drops the older copy as well */
    ck_assert(l1_set_tagged(c, "k", v, 1, 0, &t1));
    cache_value *big = val(900 * 1024);
    ck_assert(!l1_set_tagged(c, "k", big, 1, 0, &t1));
    ck_assert_ptr_null(l1_get(c, "k", 1));
    cache_value_unref(big);
    cache_value_unref(v);
    l1_free(c);
}
END_TEST

/* Sets from many threads into two namespaces never pass the global
 * budget together. */
static l1_cache *pair[2];

static void *fill(void *arg)
{
    long t = (long)arg;
    char key[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(key, sizeof key, "t%ldk%d", t, i);
        put(pair[t % 2], key, 3000 + (size_t)(i % 7) * 500, 1, 0);
    }
    return NULL;
}

static atomic_int filling;
static l1_budget *watched;

/* The most the budget's books ever showed while the fillers ran. */
static void *watch(void *arg)
{
    unsigned long long most = 0;
    while (atomic_load(&filling)) {
        unsigned long long u = atomic_load(&watched->used);
        most = u > most ? u : most;
    }
    *(unsigned long long *)arg = most;
    return NULL;
}

START_TEST(threads_never_pass_the_global_budget)
{
    l1_budget b = {0, 200 * 1024};
    pair[0] = l1_new(1000, 1 << 30, &b);
    pair[1] = l1_new(1000, 1 << 30, &b);
    unsigned long long most = 0;
    watched = &b;
    atomic_store(&filling, 1);
    pthread_t th[6], w;
    pthread_create(&w, NULL, watch, &most);
    for (long i = 0; i < 6; i++)
        pthread_create(&th[i], NULL, fill, (void *)i);
    for (int i = 0; i < 6; i++)
        pthread_join(th[i], NULL);
    atomic_store(&filling, 0);
    pthread_join(w, NULL);
    ck_assert_uint_le(most, 200 * 1024); /* not even for a moment */
    ck_assert_uint_le(atomic_load(&b.used), 200 * 1024);
    l1_stats s0, s1;
    l1_get_stats(pair[0], &s0);
    l1_get_stats(pair[1], &s1);
    ck_assert_uint_eq(atomic_load(&b.used), s0.bytes + s1.bytes);
    l1_free(pair[0]);
    l1_free(pair[1]);
    ck_assert_uint_eq(atomic_load(&b.used), 0);
}
END_TEST

START_TEST(many_threads_keep_it_consistent)
{
    l1_budget b = {0, 1 << 30};
    shared = l1_new(200, 1 << 20, &b);
    pthread_t th[8];
    for (long i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, hammer, (void *)i);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    l1_stats s;
    l1_get_stats(shared, &s);
    ck_assert_uint_le(s.items, 200);
    ck_assert_uint_eq(s.hits + s.misses, 8 * 15000);
    l1_free(shared);
    ck_assert_uint_eq(atomic_load(&b.used), 0);
}
END_TEST

/* ---- memos ---------------------------------------------------------------- */

static atomic_int memos_freed;

typedef struct test_memo {
    cache_memo m;
    int who;
} test_memo;

static void test_memo_free(cache_memo *m)
{
    atomic_fetch_add(&memos_freed, 1);
    free(m);
}

static test_memo *memo_new(size_t size, int who)
{
    test_memo *t = malloc(sizeof *t);
    t->m.size = size;
    t->m.free = test_memo_free;
    t->who = who;
    return t;
}

static cache_value *memo_target;
static const cache_memo *memo_won[8];

static void *attach_racer(void *arg)
{
    long i = (long)arg;
    test_memo *t = memo_new(100, (int)i);
    const cache_memo *got = cache_value_attach_memo(memo_target, &t->m);
    if (got != &t->m)
        test_memo_free(&t->m);
    memo_won[i] = got;
    return NULL;
}

/* A memo is attached once, within the value's reserve, charged to the
 * budget up front, and freed with the value's last reference. */
START_TEST(a_memo_is_kept_once_and_freed_with_its_value)
{
    atomic_store(&memos_freed, 0);
    cache_value *v = val(1000);
    ck_assert_ptr_null(cache_value_memo(v));
    /* no reserve: nothing is attached, and the caller keeps its memo */
    test_memo *t = memo_new(1, 0);
    ck_assert_ptr_null(cache_value_attach_memo(v, &t->m));
    ck_assert_ptr_null(cache_value_memo(v));
    test_memo_free(&t->m);

    v->memo_reserve = CACHE_MEMO_RESERVE(v->len);
    ck_assert_uint_eq(cache_value_charge(v, 3), sizeof *v + 1000 + 2024 + 3 + 64);
    t = memo_new(CACHE_MEMO_RESERVE(v->len) + 1, 0); /* too large */
    ck_assert_ptr_null(cache_value_attach_memo(v, &t->m));
    test_memo_free(&t->m);

    /* eight readers race: one memo wins, all see it */
    memo_target = v;
    pthread_t th[8];
    for (long i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, attach_racer, (void *)i);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    const cache_memo *kept = cache_value_memo(v);
    ck_assert_ptr_nonnull(kept);
    for (int i = 0; i < 8; i++)
        ck_assert_ptr_eq(memo_won[i], kept);
    ck_assert_int_eq(atomic_load(&memos_freed), 2 + 7);

    /* in L1, the value is charged its reserve; the memo goes with the
     * last reference, never before */
    l1_budget b = {0, 1 << 30};
    l1_cache *c = l1_new(100, 1 << 20, &b);
    ck_assert(l1_set(c, "k", v, 1, 0));
    ck_assert_uint_ge(atomic_load(&b.used), 1000 + 2024);
    cache_value_unref(v);
    cache_value *again = l1_get(c, "k", 1);
    ck_assert_ptr_eq(again, v);
    ck_assert_ptr_eq(cache_value_memo(again), kept);
    ck_assert_int_eq(((const test_memo *)(const void *)kept)->who,
                     ((const test_memo *)(const void *)memo_won[0])->who);
    l1_free(c);
    ck_assert_int_eq(atomic_load(&memos_freed), 9); /* "again" still holds it */
    cache_value_unref(again);
    ck_assert_int_eq(atomic_load(&memos_freed), 10);
}
END_TEST

static Suite *l1_suite(void)
{
    Suite *s = suite_create("l1");
    TCase *t = tcase_create("l1");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, item_bound_evicts_least_recent);
    tcase_add_test(t, byte_bound_holds);
    tcase_add_test(t, ttl_expires_entries);
    tcase_add_test(t, global_budget_is_shared);
    tcase_add_test(t, glob_delete_and_replace);
    tcase_add_test(t, item_limits_are_exact);
    tcase_add_test(t, glob_dialect_matches_l2);
    tcase_add_test(t, a_tagged_entry_is_served_only_while_its_token_holds);
    tcase_add_test(t, many_threads_keep_it_consistent);
    tcase_add_test(t, threads_never_pass_the_global_budget);
    tcase_add_test(t, frequent_keys_survive_a_scan);
    tcase_add_test(t, an_invalidated_entry_never_comes_back);
    tcase_add_test(t, expired_entries_make_way);
    tcase_add_test(t, climber_moves_the_window);
    tcase_add_test(t, a_memo_is_kept_once_and_freed_with_its_value);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(l1_suite());
}
