#include "maintenance.h"
#include "../common/clock.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "../common/log.h"
#include "../common/node_id.h"
#include "gc.h"

struct maintenance {
    versions_svc *vs;
    trees_svc *trees;
    const retention_config *rules;
    unsigned interval_s;
    uint64_t grace_s;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    uint64_t token; /* the lease's fencing token when this node last held it */
};

static void run_once(maintenance *m)
{
    json_t *report = NULL;
    strata_error err;
    bool held = false;
    uint64_t token = 0;
    if (gc_lease(m->vs, &held, &token, &err) != 0) {
        slog_warn("maintenance lease not taken: %s", err.detail);
        return;
    }
    if (!held)
        return; /* another node runs maintenance now */
    if (token != m->token) {
        /* each taking of the lease gets a new token: an operator (and the
         * cluster test) reads from these lines which node ran maintenance
         * when, and that it moved when its holder died */
        slog_info("maintenance lease taken: token %llu, holder %s", (unsigned long long)token,
                  node_id());
        m->token = token;
    }
    size_t caught_up = 0;
    if (trees_sweep(m->trees, &caught_up, &err) != 0)
        slog_warn("tree sweep failed: %s", err.detail);
    else if (caught_up > 0)
        slog_info("tree sweep rolled %zu masters forward", caught_up);
    if (retention_cleanup_all(m->vs, m->rules, false, &report, &err) != 0)
        slog_warn("scheduled cleanup failed: %s", err.detail);
    else
        slog_info("scheduled cleanup removed %lld versions",
                  (long long)json_integer_value(json_object_get(report, "removed_total")));
    json_decref(report);
    report = NULL;
    if (gc_run(m->vs, m->grace_s, false, &report, &err) != 0)
        slog_warn("scheduled blob collection failed: %s", err.detail);
    else
        slog_info("scheduled blob collection removed %lld blobs, %lld bytes",
                  (long long)json_integer_value(json_object_get(report, "blobs_removed")),
                  (long long)json_integer_value(json_object_get(report, "bytes_freed")));
    json_decref(report);
}

static void *loop(void *arg)
{
    maintenance *m = arg;
    pthread_mutex_lock(&m->mu);
    while (!m->stopping) {
        struct timespec ts = clock_deadline_ms((uint64_t)m->interval_s * 1000);
        pthread_cond_timedwait(&m->cv, &m->mu, &ts);
        if (m->stopping)
            break;
        pthread_mutex_unlock(&m->mu);
        run_once(m);
        pthread_mutex_lock(&m->mu);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

maintenance *maintenance_start(versions_svc *vs, trees_svc *trees, const retention_config *rules,
                               unsigned interval_s, uint64_t gc_grace_s, strata_error *err)
{
    serr_clear(err);
    if (interval_s == 0)
        return NULL;
    maintenance *m = calloc(1, sizeof *m);
    if (m == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    m->vs = vs;
    m->trees = trees;
    m->rules = rules;
    m->interval_s = interval_s;
    m->grace_s = gc_grace_s;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    if (pthread_create(&m->thread, NULL, loop, m) != 0) {
        pthread_mutex_destroy(&m->mu);
        pthread_cond_destroy(&m->cv);
        free(m);
        serr_set(err, SERR_INTERNAL, "cannot start the maintenance thread");
        return NULL;
    }
    return m;
}

void maintenance_stop(maintenance *m)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->mu);
    m->stopping = true;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    store *st = versions_store(m->vs);
    strata_error err;
    if (st->ops->lease_release(st, MAINTENANCE_LEASE, node_id(), &err) != 0)
        slog_warn("maintenance lease not released (it lapses): %s", err.detail);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    free(m);
}
