#include "access_stats.h"
#include "../common/clock.h"
#include "../common/fnv.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/log.h"

#define BUCKETS     4096
#define MAX_PENDING 100000 /* versions with unwritten counts before the flusher is woken */
#define MAX_ENTRIES 65536  /* versions remembered; idle totals beyond this are forgotten */

/* One version's counts: pending (read here, not yet written), inflight
 * (being written now), and the stored total the last write returned. */
typedef struct entry {
    struct entry *next;
    uint64_t vkey;
    uint64_t pending, inflight, total;
    int64_t last_ms, total_last_ms;
    char type[STORE_TYPE_MAX];
    char id[STORE_ID_MAX + 1];
} entry;

struct access_stats {
    store *st;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_mutex_t flush_mu; /* one flush at a time (the thread, or close) */
    pthread_t thread;
    bool running, wake;
    unsigned flush_ms;
    size_t npending, nentries;
    entry *table[BUCKETS];
};

static size_t bucket_of(const char *type, const char *id, uint64_t vkey)
{
    return (size_t)(fnv_str(fnv_str(FNV_BASIS ^ vkey, type), id) % BUCKETS);
}

static entry *find(access_stats *a, size_t b, const char *type, const char *id, uint64_t vkey)
{
    for (entry *e = a->table[b]; e; e = e->next)
        if (e->vkey == vkey && strcmp(e->id, id) == 0 && strcmp(e->type, type) == 0)
            return e;
    return NULL;
}

/* Forgets idle entries (nothing pending or in flight) once there are too
 * many: their records then show the stored counts they were read with. */
static void trim_locked(access_stats *a)
{
    if (a->nentries <= MAX_ENTRIES)
        return;
    for (size_t b = 0; b < BUCKETS; b++) {
        entry **pp = &a->table[b];
        while (*pp) {
            entry *e = *pp;
            if (e->pending == 0 && e->inflight == 0) {
                *pp = e->next;
                free(e);
                a->nentries--;
            } else {
                pp = &e->next;
            }
        }
    }
}

int access_stats_flush(access_stats *a)
{
    pthread_mutex_lock(&a->flush_mu);
    /* move pending to inflight and copy out what to write */
    pthread_mutex_lock(&a->mu);
    size_t n = a->npending, k = 0;
    store_access *items = n ? calloc(n, sizeof *items) : NULL;
    entry **owners = n ? calloc(n, sizeof *owners) : NULL;
    if (n > 0 && (items == NULL || owners == NULL)) {
        pthread_mutex_unlock(&a->mu);
        pthread_mutex_unlock(&a->flush_mu);
        free(items);
        free(owners);
        slog_warn("access counts not written: out of memory");
        return -1;
    }
    for (size_t b = 0; b < BUCKETS && k < n; b++)
        for (entry *e = a->table[b]; e && k < n; e = e->next) {
            if (e->pending == 0)
                continue;
            /* entries are only freed by trim_locked, under flush_mu: the
             * strings stay valid while the store writes them */
            items[k] = (store_access){e->type, e->id, e->vkey, e->pending, e->last_ms, 0, 0};
            owners[k++] = e;
            e->inflight += e->pending;
            e->pending = 0;
        }
    a->npending = 0;
    pthread_mutex_unlock(&a->mu);

    int rc = 0;
    strata_error err;
    if (k > 0 && a->st->ops->add_access(a->st, items, k, &err) != 0) {
        slog_warn("access counts of %zu versions not written (kept for the next flush): %s", k,
                  err.detail);
        rc = -1;
    }
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < k; i++) {
        entry *e = owners[i];
        e->inflight -= items[i].count;
        if (rc != 0) { /* back to pending, to be written next time */
            if (e->pending == 0)
                a->npending++;
            e->pending += items[i].count;
        } else if (items[i].total > e->total) {
            e->total = items[i].total;
            e->total_last_ms = items[i].total_last_ms;
        }
    }
    trim_locked(a);
    pthread_mutex_unlock(&a->mu);
    pthread_mutex_unlock(&a->flush_mu);
    free(items);
    free(owners);
    return rc;
}

static void *flusher(void *arg)
{
    access_stats *a = arg;
    pthread_mutex_lock(&a->mu);
    while (a->running) {
        struct timespec ts = clock_deadline_ms(a->flush_ms);
        while (a->running && !a->wake)
            if (pthread_cond_timedwait(&a->cv, &a->mu, &ts) != 0)
                break;
        a->wake = false;
        if (!a->running)
            break;
        pthread_mutex_unlock(&a->mu);
        access_stats_flush(a);
        pthread_mutex_lock(&a->mu);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

access_stats *access_stats_new(store *st, unsigned flush_ms, strata_error *err)
{
    access_stats *a = calloc(1, sizeof *a);
    if (a == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    a->st = st;
    a->flush_ms = flush_ms ? flush_ms : 5000;
    a->running = true;
    pthread_mutex_init(&a->mu, NULL);
    pthread_mutex_init(&a->flush_mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    if (pthread_create(&a->thread, NULL, flusher, a) != 0) {
        pthread_mutex_destroy(&a->mu);
        pthread_mutex_destroy(&a->flush_mu);
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
    access_stats_flush(a);
    for (size_t b = 0; b < BUCKETS; b++)
        while (a->table[b]) {
            entry *e = a->table[b];
            a->table[b] = e->next;
            free(e);
        }
    pthread_mutex_destroy(&a->mu);
    pthread_mutex_destroy(&a->flush_mu);
    pthread_cond_destroy(&a->cv);
    free(a);
}

void access_stats_hit(access_stats *a, const char *type, const char *id, uint64_t vkey)
{
    size_t b = bucket_of(type, id, vkey);
    pthread_mutex_lock(&a->mu);
    entry *e = find(a, b, type, id, vkey);
    if (e == NULL && (e = calloc(1, sizeof *e)) != NULL) {
        snprintf(e->type, sizeof e->type, "%s", type);
        snprintf(e->id, sizeof e->id, "%s", id);
        e->vkey = vkey;
        e->next = a->table[b];
        a->table[b] = e;
        a->nentries++;
    }
    if (e != NULL) {
        if (e->pending++ == 0 && ++a->npending >= MAX_PENDING) {
            a->wake = true; /* the flusher writes early; this thread does not */
            pthread_cond_signal(&a->cv);
        }
        e->last_ms = clock_wall_ms();
    }
    pthread_mutex_unlock(&a->mu);
}

void access_stats_merge(access_stats *a, const char *type, const char *id, uint64_t vkey,
                        uint64_t stored_count, int64_t stored_last, uint64_t *count, int64_t *last)
{
    size_t b = bucket_of(type, id, vkey);
    *count = stored_count;
    *last = stored_last;
    pthread_mutex_lock(&a->mu);
    entry *e = find(a, b, type, id, vkey);
    if (e != NULL) {
        if (e->total > *count)
            *count = e->total;
        if (e->total_last_ms > *last)
            *last = e->total_last_ms;
        *count += e->pending + e->inflight;
        if ((e->pending || e->inflight) && e->last_ms > *last)
            *last = e->last_ms;
    }
    pthread_mutex_unlock(&a->mu);
}
