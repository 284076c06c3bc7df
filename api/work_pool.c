#include "work_pool.h"

#include <pthread.h>
#include <stdlib.h>

/* One thread of the pool. An idle thread waits on its own condition
 * variable on a stack of idle threads, and work goes to the one that went
 * idle last: under light load the same few threads (their caches, their
 * malloc arenas) do all the work, instead of every thread in turn. */
typedef struct pool_thread {
    struct work_pool *pool;
    pthread_t th;
    pthread_cond_t cv;
    struct pool_thread *next_idle;
    bool woken; /* taken off the idle stack: there may be work */
} pool_thread;

struct work_pool {
    pthread_mutex_t mu;
    work_item *head, *tail; /* queued, oldest first */
    pool_thread *idle;      /* idle threads, the last to go idle first */
    bool stopping;
    bool joined;
    work_fn fn;
    void *ctx;
    unsigned nthreads; /* started */
    pool_thread threads[];
};

static void *worker(void *arg)
{
    pool_thread *me = arg;
    work_pool *p = me->pool;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        work_item *it = p->head;
        if (it != NULL) {
            p->head = it->next;
            if (p->head == NULL)
                p->tail = NULL;
            pthread_mutex_unlock(&p->mu);
            it->next = NULL;
            p->fn(it, p->ctx);
            pthread_mutex_lock(&p->mu);
            continue;
        }
        if (p->stopping)
            break; /* and nothing left to run */
        me->woken = false;
        me->next_idle = p->idle;
        p->idle = me;
        while (!me->woken && !p->stopping)
            pthread_cond_wait(&me->cv, &p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void join_all(work_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_cond_signal(&p->threads[i].cv);
    bool joined = p->joined;
    p->joined = true;
    pthread_mutex_unlock(&p->mu);
    if (!joined)
        for (unsigned i = 0; i < p->nthreads; i++)
            pthread_join(p->threads[i].th, NULL);
}

work_pool *work_pool_start(unsigned nthreads, work_fn fn, void *ctx, strata_error *err)
{
    if (nthreads < 1 || nthreads > 1024 || fn == NULL) {
        serr_set(err, SERR_INVALID, "work pool: expected 1-1024 threads, got %u", nthreads);
        return NULL;
    }
    work_pool *p = calloc(1, sizeof *p + nthreads * sizeof(pool_thread));
    if (p == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    p->fn = fn;
    p->ctx = ctx;
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        serr_set(err, SERR_NOMEM, "work pool: cannot create a mutex");
        return NULL;
    }
    for (; p->nthreads < nthreads; p->nthreads++) {
        pool_thread *t = &p->threads[p->nthreads];
        t->pool = p;
        if (pthread_cond_init(&t->cv, NULL) != 0)
            break;
        if (pthread_create(&t->th, NULL, worker, t) != 0) {
            pthread_cond_destroy(&t->cv);
            break;
        }
    }
    if (p->nthreads < nthreads) {
        work_pool_free(p);
        serr_set(err, SERR_NOMEM, "work pool: cannot start %u threads", nthreads);
        return NULL;
    }
    return p;
}

bool work_pool_submit(work_pool *p, work_item *item)
{
    pool_thread *t = NULL;
    pthread_mutex_lock(&p->mu);
    bool ok = !p->stopping;
    if (ok) {
        item->next = NULL;
        if (p->tail != NULL)
            p->tail->next = item;
        else
            p->head = item;
        p->tail = item;
        t = p->idle; /* none idle: a running one takes it next */
        if (t != NULL) {
            p->idle = t->next_idle;
            t->woken = true;
        }
    }
    pthread_mutex_unlock(&p->mu);
    /* signalled after the unlock, so that the thread woken does not wake
     * only to wait for the mutex still held here (a second sleep). A late
     * signal is harmless: the thread waits while it has not been woken. */
    if (t != NULL)
        pthread_cond_signal(&t->cv);
    return ok;
}

void work_pool_stop(work_pool *p)
{
    if (p != NULL)
        join_all(p);
}

void work_pool_free(work_pool *p)
{
    if (p == NULL)
        return;
    join_all(p);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_cond_destroy(&p->threads[i].cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
