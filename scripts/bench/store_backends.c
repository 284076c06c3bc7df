/* Saves and latest reads per second through the store interface
 * (src/store/store.h), the same program against each backend so that
 * both pay the same client costs (scripts/bench/store_backends runs it on
 * SQLite and on MongoDB in one go).
 *
 *   bench_store_backends URL THREADS SECONDS RESOURCES
 *
 * Phase 1 (saves): THREADS threads for SECONDS, each saving new versions
 * of its own RESOURCES/THREADS dictionary resources in turn, as the
 * service does: read the head, put_version with the head's keys (inline
 * content of 300 bytes, a fresh hash each). Phase 2 (reads): THREADS
 * threads for SECONDS reading the latest version of a random resource.
 * Prints one line:
 *   saves N/s reads N/s (errors E)
 * A lost compare-and-swap cannot happen (each resource has one writer);
 * any failure is counted as an error, and the exit status is 1 if any. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../src/codec/sha256.h"
#include "../../src/store/store.h"

typedef struct bench {
    store *st;
    int threads, resources;
    double seconds;
    char run[17]; /* the run's tag: ids are unique to it */
    _Atomic uint64_t saves, reads, errors;
    _Atomic int stop;
} bench;

typedef struct worker {
    bench *b;
    int index;
    uint64_t rng;
} worker;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void resource_id(const bench *b, int r, char *out, size_t cap)
{
    snprintf(out, cap, "bench-%s-%d", b->run, r);
}

static int save_one(bench *b, const char *id, uint64_t serial)
{
    strata_error err;
    store_head h;
    if (b->st->ops->get_head(b->st, NULL, "dictionary", id, &h, &err) != 0) {
        fprintf(stderr, "get_head: %s\n", err.detail);
        return -1;
    }
    char text[300];
    memset(text, 'x', sizeof text);
    int n = snprintf(text, sizeof text, "{\"id\":\"%s\",\"n\":%" PRIu64 "}", id, serial);
    text[n] = ' ';
    unsigned char d[SHA256_LEN];
    store_version v;
    memset(&v, 0, sizeof v);
    snprintf(v.type, sizeof v.type, "dictionary");
    snprintf(v.id, sizeof v.id, "%s", id);
    snprintf(v.ns, sizeof v.ns, "bench");
    if (sha256_oneshot(text, sizeof text, d, NULL) != 0)
        return -1;
    sha256_to_hex(d, v.data_hash);
    v.vkey = h.max_vkey + 1;
    v.created_at_ms = (int64_t)time(NULL) * 1000;
    v.doc = json_object();
    v.content = (unsigned char *)text;
    v.content_len = sizeof text;
    int rc = b->st->ops->put_version(b->st, NULL, &v, h.latest_vkey, h.max_vkey, NULL, 0, 0, &err);
    v.content = NULL; /* on the stack: not the record's to free */
    store_version_clear(&v);
    if (rc != 0)
        fprintf(stderr, "put_version: %s\n", err.detail);
    return rc;
}

static void *saver(void *arg)
{
    worker *w = arg;
    bench *b = w->b;
    char id[64];
    uint64_t serial = 0;
    int per = b->resources / b->threads;
    while (!atomic_load(&b->stop)) {
        int r = w->index * per + (int)(serial % (uint64_t)per);
        resource_id(b, r, id, sizeof id);
        if (save_one(b, id, serial++) == 0)
            atomic_fetch_add(&b->saves, 1);
        else
            atomic_fetch_add(&b->errors, 1);
    }
    return NULL;
}

static void *reader(void *arg)
{
    worker *w = arg;
    bench *b = w->b;
    char id[64];
    while (!atomic_load(&b->stop)) {
        int r = (int)(next_rand(&w->rng) % (uint64_t)b->resources);
        resource_id(b, r, id, sizeof id);
        store_version v;
        strata_error err;
        memset(&v, 0, sizeof v);
        if (b->st->ops->get_version(b->st, NULL, "dictionary", id, 0, &v, &err) == 0) {
            atomic_fetch_add(&b->reads, 1);
        } else {
            fprintf(stderr, "get_version %s: %s\n", id, err.detail);
            atomic_fetch_add(&b->errors, 1);
        }
        store_version_clear(&v);
    }
    return NULL;
}

/* Runs fn on every thread for b->seconds; the rate of *counter. */
static double phase(bench *b, void *(*fn)(void *), _Atomic uint64_t *counter)
{
    pthread_t t[64];
    worker w[64];
    atomic_store(&b->stop, 0);
    uint64_t before = atomic_load(counter);
    double t0 = now_s();
    for (int i = 0; i < b->threads; i++) {
        w[i] = (worker){.b = b, .index = i, .rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1)};
        if (pthread_create(&t[i], NULL, fn, &w[i]) != 0) {
            fprintf(stderr, "cannot start a thread\n");
            exit(1);
        }
    }
    struct timespec ts = {(time_t)b->seconds,
                          (long)((b->seconds - (double)(time_t)b->seconds) * 1e9)};
    nanosleep(&ts, NULL);
    atomic_store(&b->stop, 1);
    for (int i = 0; i < b->threads; i++)
        pthread_join(t[i], NULL);
    return (double)(atomic_load(counter) - before) / (now_s() - t0);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s URL THREADS SECONDS RESOURCES\n", argv[0]);
        return 2;
    }
    bench b = {.threads = atoi(argv[2]), .seconds = atof(argv[3]), .resources = atoi(argv[4])};
    if (b.threads < 1 || b.threads > 64 || b.seconds <= 0 || b.resources < b.threads) {
        fprintf(stderr, "THREADS 1..64, SECONDS > 0, RESOURCES >= THREADS\n");
        return 2;
    }
    b.resources -= b.resources % b.threads;
    snprintf(b.run, sizeof b.run, "%lx%04x", (unsigned long)time(NULL),
             (unsigned)(now_s() * 1e6) & 0xffff);
    strata_error err;
    b.st = store_open(argv[1], &err);
    if (b.st == NULL) {
        fprintf(stderr, "store_open: %s\n", err.detail);
        return 1;
    }
    double saves = phase(&b, saver, &b.saves);
    double reads = phase(&b, reader, &b.reads);
    printf("saves %.0f/s reads %.0f/s (errors %" PRIu64 ")\n", saves, reads,
           atomic_load(&b.errors));
    store_close(b.st);
    return atomic_load(&b.errors) ? 1 : 0;
}
