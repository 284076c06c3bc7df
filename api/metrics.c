#include "metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static const int STATUSES[] = {200, 201, 204, 206, 304, 400, 401, 403, 404, 405, 409,
                               410, 412, 413, 415, 416, 422, 500, 501, 503, 0};
#define N_STATUS (sizeof STATUSES / sizeof STATUSES[0]) /* last slot: any other */

static const double BUCKETS[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                 0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
#define N_BUCKETS (sizeof BUCKETS / sizeof BUCKETS[0])

struct http_metrics {
    const router *router;
    int nroutes;
    atomic_long in_flight;
    atomic_ullong latency_buckets[N_BUCKETS + 1];
    atomic_ullong latency_sum_us;
    atomic_ullong latency_count;
    atomic_ullong *counts; /* (nroutes + 1) * N_STATUS */
};

http_metrics *metrics_new(const router *r)
{
    http_metrics *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->router = r;
    m->nroutes = router_count(r);
    m->counts = calloc((size_t)(m->nroutes + 1) * N_STATUS, sizeof *m->counts);
    if (m->counts == NULL) {
        free(m);
        return NULL;
    }
    return m;
}

void metrics_free(http_metrics *m)
{
    if (m == NULL)
        return;
    free(m->counts);
    free(m);
}

void metrics_request_started(http_metrics *m)
{
    atomic_fetch_add_explicit(&m->in_flight, 1, memory_order_relaxed);
}

long metrics_in_flight(const http_metrics *m)
{
    return atomic_load_explicit(&m->in_flight, memory_order_relaxed);
}

static size_t status_slot(int status)
{
    for (size_t i = 0; i + 1 < N_STATUS; i++)
        if (STATUSES[i] == status)
            return i;
    return N_STATUS - 1;
}

void metrics_request_finished(http_metrics *m, int route_index, int status, uint64_t micros)
{
    atomic_fetch_sub_explicit(&m->in_flight, 1, memory_order_relaxed);
    size_t r =
        route_index >= 0 && route_index < m->nroutes ? (size_t)route_index : (size_t)m->nroutes;
    atomic_fetch_add_explicit(&m->counts[r * N_STATUS + status_slot(status)], 1,
                              memory_order_relaxed);
    double secs = (double)micros / 1e6;
    size_t b = 0;
    while (b < N_BUCKETS && secs > BUCKETS[b])
        b++;
    atomic_fetch_add_explicit(&m->latency_buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->latency_sum_us, micros, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->latency_count, 1, memory_order_relaxed);
}

static int appendf(strata_buf *out, strata_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int appendf(strata_buf *out, strata_error *err, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return serr_set(err, SERR_INTERNAL, "metrics formatting failed");
    return sbuf_append(out, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1, err);
}

int metrics_render(const http_metrics *m, strata_buf *out, strata_error *err)
{
    int rc = appendf(out, err,
                     "# HELP strata_http_requests_total HTTP requests by route and status.\n"
                     "# TYPE strata_http_requests_total counter\n");
    for (int r = 0; rc == 0 && r <= m->nroutes; r++) {
        const route *rt = router_at(m->router, r);
        const char *label = rt ? rt->pattern : "unmatched";
        for (size_t s = 0; rc == 0 && s < N_STATUS; s++) {
            unsigned long long v = atomic_load_explicit(
                (atomic_ullong *)&m->counts[(size_t)r * N_STATUS + s], memory_order_relaxed);
            if (v == 0)
                continue;
            if (STATUSES[s] != 0)
                rc = appendf(out, err,
                             "strata_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n", label,
                             STATUSES[s], v);
            else
                rc = appendf(out, err,
                             "strata_http_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                             label, v);
        }
    }
    if (rc == 0)
        rc = appendf(out, err,
                     "# HELP strata_http_request_duration_seconds Time from request start to "
                     "response sent.\n# TYPE strata_http_request_duration_seconds histogram\n");
    unsigned long long cumulative = 0;
    for (size_t b = 0; rc == 0 && b <= N_BUCKETS; b++) {
        cumulative +=
            atomic_load_explicit((atomic_ullong *)&m->latency_buckets[b], memory_order_relaxed);
        if (b < N_BUCKETS)
            rc = appendf(out, err, "strata_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                         BUCKETS[b], cumulative);
        else
            rc =
                appendf(out, err, "strata_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                        cumulative);
    }
    if (rc == 0)
        rc = appendf(out, err,
                     "strata_http_request_duration_seconds_sum %.6f\n"
                     "strata_http_request_duration_seconds_count %llu\n"
                     "# HELP strata_http_requests_in_flight Requests being served now.\n"
                     "# TYPE strata_http_requests_in_flight gauge\n"
                     "strata_http_requests_in_flight %ld\n",
                     (double)atomic_load((atomic_ullong *)&m->latency_sum_us) / 1e6,
                     (unsigned long long)atomic_load((atomic_ullong *)&m->latency_count),
                     metrics_in_flight(m));
    return rc;
}
