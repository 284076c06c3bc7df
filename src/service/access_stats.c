#include "access_stats.h"
#include "../common/clock.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/log.h"

#define BUCKETS     4096
#define MAX_PENDING 100000 /* beyond this, hits flush synchronously */

typedef struct hit {
    struct hit *next;
    uint64_t vkey;
    uint64_t count;
    int64_t last_ms;
    char type[STORE_TYPE_MAX];
    char id[STORE_ID_MAX + 1];
} hit;

struct access_stats {
    store *st;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool running;
    unsigned flush_ms;
    size_t pending;
    access_flushed_fn on_flushed;
    void *on_flushed_ctx;
    hit *table[BUCKETS];
};

static size_t bucket_of(const char *type, const char *id, uint64_t vkey)
{
    uint64_t h = 1469598103934665603ull ^ vkey; /* FNV-1a */
    for (const char *p = type; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return (size_t)(h % BUCKETS);
}

static hit *find(access_stats *a, size_t b, const char *type, const char *id, uint64_t vkey)
{
    for (hit *h = a->table[b]; h; h = h->next)
        if (h->vkey == vkey && strcmp(h->id, id) == 0 && strcmp(h->type, type) == 0)
            return h;
    return NULL;
}

/* Takes the pending table (under the lock) and writes it out (without). */
static int flush_now(access_stats *a)
{
    hit *all = NULL;
    pthread_mutex_lock(&a->mu);
    for (size_t b = 0; b < BUCKETS; b++) {
        while (a->table[b]) {
            hit *h = a->table[b];
            a->table[b] = h->next;
            h->next = all;
            all = h;
        }
    }
    a->pending = 0;
    pthread_mutex_unlock(&a->mu);
    int rc = 0;
    while (all) {
        hit *h = all;
        all = h->next;
        strata_error err;
        /* a version deleted meanwhile simply matches no row */
        if (a->st->ops->add_access(a->st, h->type, h->id, h->vkey, h->count, h->last_ms, &err) !=
            0) {
            slog_warn("access counts for %s/%s not saved: %s", h->type, h->id, err.detail);
            rc = -1;
        } else if (a->on_flushed) {
            a->on_flushed(a->on_flushed_ctx, h->type, h->id);
        }
        free(h);
    }
    return rc;
}

static void *flusher(void *arg)
{
    access_stats *a = arg;
    pthread_mutex_lock(&a->mu);
    while (a->running) {
        struct timespec ts = clock_deadline_ms(a->flush_ms);
        pthread_cond_timedwait(&a->cv, &a->mu, &ts);
        if (!a->running)
            break;
        pthread_mutex_unlock(&a->mu);
        flush_now(a);
        pthread_mutex_lock(&a->mu);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

access_stats *access_stats_new(store *st, unsigned flush_ms, access_flushed_fn on_flushed,
                               void *ctx, strata_error *err)
{
    access_stats *a = calloc(1, sizeof *a);
    if (a == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    a->st = st;
    a->flush_ms = flush_ms ? flush_ms : 5000;
    a->on_flushed = on_flushed;
    a->on_flushed_ctx = ctx;
    a->running = true;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    if (pthread_create(&a->thread, NULL, flusher, a) != 0) {
        pthread_mutex_destroy(&a->mu);
        pthread_cond_destroy(&a->cv);
        free(a);
        serr_set(err, SERR_INTERNAL, "cannot start the access-count thread");
        return NULL;
    }
    return a;
}

void access_stats_free(access_stats *a)
{
    if (a == NULL)
        return;
    pthread_mutex_lock(&a->mu);
    a->running = false;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    flush_now(a);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a);
}

void access_stats_hit(access_stats *a, const char *type, const char *id, uint64_t vkey)
{
    size_t b = bucket_of(type, id, vkey);
    bool full = false;
    pthread_mutex_lock(&a->mu);
    hit *h = find(a, b, type, id, vkey);
    if (h == NULL && (h = calloc(1, sizeof *h)) != NULL) {
        snprintf(h->type, sizeof h->type, "%s", type);
        snprintf(h->id, sizeof h->id, "%s", id);
        h->vkey = vkey;
        h->next = a->table[b];
        a->table[b] = h;
        full = ++a->pending >= MAX_PENDING;
    }
    if (h != NULL) {
        h->count++;
        h->last_ms = clock_wall_ms();
    }
    pthread_mutex_unlock(&a->mu);
    if (full)
        flush_now(a);
}

uint64_t access_stats_pending(access_stats *a, const char *type, const char *id, uint64_t vkey,
                              int64_t *last_ms)
{
    size_t b = bucket_of(type, id, vkey);
    pthread_mutex_lock(&a->mu);
    hit *h = find(a, b, type, id, vkey);
    uint64_t n = h ? h->count : 0;
    *last_ms = h ? h->last_ms : 0;
    pthread_mutex_unlock(&a->mu);
    return n;
}
