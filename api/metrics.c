#include "metrics.h"

#include <stdalign.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int STATUSES[] = {200, 201, 204, 206, 304, 400, 401, 403, 404, 405, 409,
                               410, 412, 413, 415, 416, 422, 500, 501, 503, 0};
#define N_STATUS (sizeof STATUSES / sizeof STATUSES[0]) /* last slot: any other */

static const double BUCKETS[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                 0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
#define N_BUCKETS (sizeof BUCKETS / sizeof BUCKETS[0])

/* Every counter is kept per slot, and each thread counts in a slot of its
 * own (handed out in turn, wrapping past METRICS_SLOTS), so that threads
 * serving requests side by side do not write the same cache lines on
 * every request; a scrape adds the slots up. A slot starts on a cache line
 * of its own, and so does each slot's row of route counts. */
#define METRICS_SLOTS 32
#define LINE          64

/* A slot's latency counters: the buckets (the last one past them all),
 * then the sum of microseconds and the count. */
enum { LAT_SUM_US = N_BUCKETS + 1, LAT_COUNT, LAT_N };

typedef struct metrics_slot {
    alignas(LINE) atomic_long in_flight; /* started minus finished here */
    atomic_ullong latency[LAT_N];
} metrics_slot;

struct http_metrics {
    const router *router;
    int nroutes;
    size_t counts_stride;  /* counters per slot in counts, a whole number of lines */
    metrics_slot *slots;   /* METRICS_SLOTS */
    atomic_ullong *counts; /* per slot: (nroutes + 1) * N_STATUS */
};

static atomic_uint next_slot;
static _Thread_local unsigned thread_slot_plus1; /* 0: none yet */

static unsigned my_slot(void)
{
    if (thread_slot_plus1 == 0)
        thread_slot_plus1 =
            atomic_fetch_add_explicit(&next_slot, 1, memory_order_relaxed) % METRICS_SLOTS + 1;
    return thread_slot_plus1 - 1;
}

/* n bytes aligned to a cache line, zeroed; NULL when out of memory. */
static void *line_calloc(size_t n)
{
    n = (n + LINE - 1) / LINE * LINE;
    void *p = aligned_alloc(LINE, n);
    if (p != NULL)
        memset(p, 0, n);
    return p;
}

http_metrics *metrics_new(const router *r)
{
    http_metrics *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->router = r;
    m->nroutes = router_count(r);
    const size_t per_line = LINE / sizeof(atomic_ullong);
    m->counts_stride = ((size_t)(m->nroutes + 1) * N_STATUS + per_line - 1) / per_line * per_line;
    m->slots = line_calloc(METRICS_SLOTS * sizeof *m->slots);
    m->counts = line_calloc(METRICS_SLOTS * m->counts_stride * sizeof *m->counts);
    if (m->slots == NULL || m->counts == NULL) {
        metrics_free(m);
        return NULL;
    }
    return m;
}

void metrics_free(http_metrics *m)
{
    if (m == NULL)
        return;
    free(m->slots);
    free(m->counts);
    free(m);
}

void metrics_request_started(http_metrics *m)
{
    atomic_fetch_add_explicit(&m->slots[my_slot()].in_flight, 1, memory_order_relaxed);
}

/* The count of route r and status slot st, over the slots. */
static unsigned long long route_count(const http_metrics *m, size_t r, size_t st)
{
    unsigned long long v = 0;
    for (size_t i = 0; i < METRICS_SLOTS; i++)
        v += atomic_load_explicit(&m->counts[i * m->counts_stride + r * N_STATUS + st],
                                  memory_order_relaxed);
    return v;
}

/* Latency counter k (a bucket, LAT_SUM_US or LAT_COUNT), over the slots. */
static unsigned long long latency_sum(const http_metrics *m, size_t k)
{
    unsigned long long v = 0;
    for (size_t i = 0; i < METRICS_SLOTS; i++)
        v += atomic_load_explicit(&m->slots[i].latency[k], memory_order_relaxed);
    return v;
}

long metrics_in_flight(const http_metrics *m)
{
    long v = 0;
    for (size_t i = 0; i < METRICS_SLOTS; i++)
        v += atomic_load_explicit(&m->slots[i].in_flight, memory_order_relaxed);
    /* a request may start in one slot and finish in another between the
     * loads: never show less than none */
    return v > 0 ? v : 0;
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
    unsigned i = my_slot();
    metrics_slot *sl = &m->slots[i];
    atomic_fetch_sub_explicit(&sl->in_flight, 1, memory_order_relaxed);
    size_t r =
        route_index >= 0 && route_index < m->nroutes ? (size_t)route_index : (size_t)m->nroutes;
    atomic_fetch_add_explicit(&m->counts[i * m->counts_stride + r * N_STATUS + status_slot(status)],
                              1, memory_order_relaxed);
    double secs = (double)micros / 1e6;
    size_t b = 0;
    while (b < N_BUCKETS && secs > BUCKETS[b])
        b++;
    atomic_fetch_add_explicit(&sl->latency[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&sl->latency[LAT_SUM_US], micros, memory_order_relaxed);
    atomic_fetch_add_explicit(&sl->latency[LAT_COUNT], 1, memory_order_relaxed);
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
            unsigned long long v = route_count(m, (size_t)r, s);
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
        cumulative += latency_sum(m, b);
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
                     (double)latency_sum(m, LAT_SUM_US) / 1e6, latency_sum(m, LAT_COUNT),
                     metrics_in_flight(m));
    return rc;
}
