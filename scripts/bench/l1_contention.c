/* L1 under threads: ops/s of 90% get / 10% set over 10,000 keys on one
 * namespace (8 lock shards), with 1 and with 2 threads (this machine has
 * 2 cores). Usage: bench_l1 [SECONDS_PER_RUN] */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../src/cache/l1.h"

static l1_cache *cache;
static l1_cache *private_cache[8]; /* the baseline: one cache per thread */
static atomic_int stop;
static char keys[10000][16];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *worker(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    l1_cache *mine = private_cache[seed % 8] ? private_cache[seed % 8] : cache;
    unsigned long ops = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        for (int i = 0; i < 1000; i++) {
            seed = seed * 1103515245u + 12345u;
            const char *k = keys[(seed >> 8) % 10000];
            if ((seed >> 4) % 10 == 0) {
                /* a new value per set, as a PUT or a reload makes */
                cache_value *v = cache_value_new("value-bytes-0123456789", 22, "text/plain");
                l1_set(mine, k, v, 1, 0);
                cache_value_unref(v);
            } else {
                cache_value *got = l1_get(mine, k, 1);
                cache_value_unref(got);
            }
        }
        ops += 1000;
    }
    return (void *)(uintptr_t)ops;
}

/* Thread i gets seed i*8+1, so seed % 8 == 1 + ... picks its own private
 * cache when `private` is set. */
static double run(int threads, double secs, int private)
{
    l1_budget budget = {0, 1u << 30};
    cache = l1_new(20000, 256u << 20, &budget);
    for (int i = 0; i < 8; i++)
        private_cache[i] = private ? l1_new(20000, 256u << 20, &budget) : NULL;
    atomic_store(&stop, 0);
    pthread_t th[8];
    double t0 = now_s();
    for (int i = 0; i < threads; i++)
        pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)(i * 8 + i + 1));
    struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
    nanosleep(&ts, NULL);
    atomic_store(&stop, 1);
    unsigned long total = 0;
    for (int i = 0; i < threads; i++) {
        void *ops;
        pthread_join(th[i], &ops);
        total += (unsigned long)(uintptr_t)ops;
    }
    double rate = (double)total / (now_s() - t0);
    l1_free(cache);
    for (int i = 0; i < 8; i++)
        l1_free(private_cache[i]);
    return rate;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 3.0;
    for (int i = 0; i < 10000; i++)
        snprintf(keys[i], sizeof keys[i], "key:%d", i);
    double one = run(1, secs, 0), two = run(2, secs, 0);
    double base1 = run(1, secs, 1), base2 = run(2, secs, 1);
    printf("L1 90%% get / 10%% set, 10000 keys, %.0f s per run\n", secs);
    printf("  shared cache,  1 thread : %10.0f ops/s (%.0f ns/op)\n", one, 1e9 / one);
    printf("  shared cache,  2 threads: %10.0f ops/s (%.2fx of 1 thread)\n", two, two / one);
    printf("  private caches, 1 thread: %10.0f ops/s\n", base1);
    printf("  private caches, 2 threads: %9.0f ops/s (%.2fx: what this machine scales at all)\n",
           base2, base2 / base1);
    return 0;
}
