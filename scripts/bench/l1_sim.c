/* The L1's hit rate on synthetic traces, driven directly (no HTTP): each
 * request is an l1_get, and a miss is filled with l1_set, as the cache
 * manager does on an L2 hit or a store read. Deterministic for a seed.
 *   bench_l1_sim [--lru] [--seed N] [--optimum] [TRACE...]   (default: all)
 *     --lru      the L1 as a plain LRU (L1_LRU), the baseline
 *     --seed N   the traces' random seed (default 42)
 *     --optimum  no cache: the trace's static optimum (the hit rate of
 *                the CAPACITY keys asked for most in the measured part,
 *                kept all along) and Belady's (future known, a key may
 *                bypass the cache), over the same measured part
 * Prints one line per trace: TRACE POLICY seed N hit RATE (or static RATE
 * opt RATE).
 * Traces (capacity 10,000 items, 100-byte values; a warm-up of 1M
 * requests, then 2M measured):
 *   zipf     Zipf(0.99) over 100,000 keys
 *   shift    a hot set of 5,000 keys (Zipf(0.99) within it) replaced by
 *            a fresh one every 50,000 requests
 *   drift    Zipf(0.99) over 100,000 keys whose popularity ranking
 *            rotates by 1,000 keys every 20,000 requests
 *   scan     Zipf(0.99) over 100,000 keys, every third request the next
 *            key of an endless scan over other keys (never repeated)
 *   loop     a loop over 12,000 keys (slightly more than fits), mixed
 *            half and half with Zipf(0.99)
 *   recency  each request repeats one of the last 2,000 distinct keys
 *            (chosen uniformly) with probability 0.7, else a new key */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/cache/l1.h"

#define CAPACITY 10000
#define KEYS     100000
#define WARMUP   1000000
#define MEASURED 2000000

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull); /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unit(void)
{
    return (double)(rnd() >> 11) / 9007199254740992.0;
}

static double *zipf_cdf(size_t n, double s)
{
    double *cdf = malloc(n * sizeof *cdf), sum = 0;
    if (cdf == NULL)
        abort();
    for (size_t i = 0; i < n; i++)
        cdf[i] = (sum += 1.0 / pow((double)(i + 1), s));
    for (size_t i = 0; i < n; i++)
        cdf[i] /= sum;
    return cdf;
}

/* A rank from 0 (the most popular) to n - 1. */
static size_t zipf(const double *cdf, size_t n)
{
    double u = unit();
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static double *cdf_keys, *cdf_hot;
static uint64_t recent[2000];
static uint64_t fresh;

/* The key (a number) of request i of a trace. */
static uint64_t next_key(const char *trace, uint64_t i)
{
    if (strcmp(trace, "zipf") == 0)
        return zipf(cdf_keys, KEYS);
    if (strcmp(trace, "shift") == 0)
        return (i / 50000) * 5000 + zipf(cdf_hot, 5000);
    if (strcmp(trace, "drift") == 0)
        return (zipf(cdf_keys, KEYS) + (i / 20000) * 1000) % KEYS;
    if (strcmp(trace, "scan") == 0)
        return i % 3 == 2 ? KEYS + i : zipf(cdf_keys, KEYS);
    if (strcmp(trace, "loop") == 0)
        return i % 2 ? KEYS + (i / 2) % 12000 : zipf(cdf_keys, KEYS);
    /* recency */
    size_t n = sizeof recent / sizeof *recent;
    if (fresh >= n && unit() < 0.7)
        return recent[rnd() % n];
    uint64_t k = fresh++;
    recent[k % n] = k;
    return k;
}

static uint64_t seed = 42;

static double run(const char *trace, l1_policy policy)
{
    l1_budget budget = {0, 1ull << 40};
    l1_cache *c = l1_new_policy(CAPACITY, 1ull << 30, &budget, policy);
    cache_value *v =
        cache_value_new("0123456789012345678901234567890123456789012345678901234567890123456789"
                        "012345678901234567890123456789",
                        100, "application/json");
    rng_state = seed;
    fresh = 0;
    uint64_t hits = 0;
    char key[32];
    for (uint64_t i = 0; i < WARMUP + MEASURED; i++) {
        snprintf(key, sizeof key, "k%llu", (unsigned long long)next_key(trace, i));
        cache_value *got = l1_get(c, key, 1);
        if (got != NULL) {
            hits += i >= WARMUP;
            cache_value_unref(got);
        } else {
            l1_set(c, key, v, 1, 0);
        }
    }
    cache_value_unref(v);
    l1_free(c);
    return (double)hits / MEASURED;
}

#define TOTAL   (WARMUP + MEASURED)
#define NEVER   UINT32_MAX
#define MAX_KEY (KEYS + TOTAL + 1) /* no trace makes a larger key */

static int by_count_desc(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* A max-heap of (next use << 32 | key) for Belady's. */
static uint64_t *heap;
static size_t heap_n;

static void heap_push(uint64_t x)
{
    size_t i = heap_n++;
    for (; i > 0 && heap[(i - 1) / 2] < x; i = (i - 1) / 2)
        heap[i] = heap[(i - 1) / 2];
    heap[i] = x;
}

static uint64_t heap_pop(void)
{
    uint64_t top = heap[0], x = heap[--heap_n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, m = l + 1 < heap_n && heap[l + 1] > heap[l] ? l + 1 : l;
        if (l >= heap_n || heap[m] <= x)
            break;
        heap[i] = heap[m];
        i = m;
    }
    heap[i] = x;
    return top;
}

/* The static optimum and Belady's hit rate over the measured requests. */
static void optimum(const char *trace, double *stat, double *opt)
{
    uint32_t *key = malloc(TOTAL * sizeof *key), *next = malloc(TOTAL * sizeof *next);
    uint32_t *aux = calloc(MAX_KEY, sizeof *aux), *cur = malloc(MAX_KEY * sizeof *cur);
    heap = malloc((TOTAL + 1) * sizeof *heap);
    if (!key || !next || !aux || !cur || !heap)
        abort();
    rng_state = seed;
    fresh = 0;
    for (uint64_t i = 0; i < TOTAL; i++) {
        uint64_t k = next_key(trace, i);
        if (k >= MAX_KEY)
            abort();
        key[i] = (uint32_t)k;
    }
    /* static: the measured part's CAPACITY most asked-for keys */
    for (uint64_t i = WARMUP; i < TOTAL; i++)
        aux[key[i]]++;
    qsort(aux, MAX_KEY, sizeof *aux, by_count_desc);
    uint64_t top = 0;
    for (size_t i = 0; i < CAPACITY; i++)
        top += aux[i];
    *stat = (double)top / MEASURED;
    /* Belady: on a miss, keep the key whose next use is the farthest
     * out (perhaps the new one, which then bypasses) */
    for (size_t k = 0; k < MAX_KEY; k++)
        aux[k] = NEVER; /* now: the next use seen so far, scanning back */
    for (uint64_t i = TOTAL; i-- > 0;) {
        next[i] = aux[key[i]];
        aux[key[i]] = (uint32_t)i;
    }
    for (size_t k = 0; k < MAX_KEY; k++)
        cur[k] = NEVER; /* a cached key's next use; NEVER: not cached */
    heap_n = 0;
    size_t held = 0;
    uint64_t hits = 0;
    for (uint64_t i = 0; i < TOTAL; i++) {
        uint32_t k = key[i], nu = next[i];
        if (cur[k] != NEVER) {
            hits += i >= WARMUP;
            cur[k] = nu;
            if (nu == NEVER) { /* never asked again: drop it now */
                held--;
                continue;
            }
        } else {
            if (nu == NEVER)
                continue;
            if (held == CAPACITY) {
                uint64_t far;
                for (;;) { /* the farthest live entry (stale ones skipped) */
                    far = heap[0];
                    uint32_t fk = (uint32_t)far, fn = (uint32_t)(far >> 32);
                    if (cur[fk] == fn && fn != NEVER)
                        break;
                    heap_pop();
                }
                if ((uint32_t)(far >> 32) < nu)
                    continue; /* the new key is needed last: it bypasses */
                heap_pop();
                cur[(uint32_t)far] = NEVER;
                held--;
            }
            cur[k] = nu;
            held++;
        }
        heap_push((uint64_t)nu << 32 | k);
        if (heap_n > TOTAL - 1) { /* rebuild from the live entries */
            heap_n = 0;
            for (size_t j = 0; j < MAX_KEY; j++)
                if (cur[j] != NEVER)
                    heap_push((uint64_t)cur[j] << 32 | j);
        }
    }
    *opt = (double)hits / MEASURED;
    free(key);
    free(next);
    free(aux);
    free(cur);
    free(heap);
}

int main(int argc, char **argv)
{
    static const char *const all[] = {"zipf", "shift", "drift", "scan", "loop", "recency"};
    l1_policy policy = L1_TINYLFU;
    bool opt = false;
    int first = 1;
    for (; first < argc && strncmp(argv[first], "--", 2) == 0; first++) {
        if (strcmp(argv[first], "--lru") == 0)
            policy = L1_LRU;
        else if (strcmp(argv[first], "--optimum") == 0)
            opt = true;
        else if (strcmp(argv[first], "--seed") == 0 && first + 1 < argc)
            seed = strtoull(argv[++first], NULL, 10);
        else {
            fprintf(stderr, "usage: bench_l1_sim [--lru] [--seed N] [--optimum] [TRACE...]\n");
            return 2;
        }
    }
    cdf_keys = zipf_cdf(KEYS, 0.99);
    cdf_hot = zipf_cdf(5000, 0.99);
    int n = argc > first ? argc - first : (int)(sizeof all / sizeof *all);
    for (int i = 0; i < n; i++) {
        const char *t = argc > first ? argv[first + i] : all[i];
        if (opt) {
            double st, be;
            optimum(t, &st, &be);
            printf("%s optimum seed %llu static %.4f opt %.4f\n", t, (unsigned long long)seed, st,
                   be);
        } else {
            printf("%s %s seed %llu hit %.4f\n", t, policy == L1_LRU ? "lru" : "tinylfu",
                   (unsigned long long)seed, run(t, policy));
        }
        fflush(stdout);
    }
    free(cdf_keys);
    free(cdf_hot);
    return 0;
}
