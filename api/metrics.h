/* Prometheus metrics of the HTTP layer: requests by route and status, a
 * latency histogram, in-flight requests. Counters are relaxed atomics,
 * kept per thread (in slots a scrape adds up), so that counting takes no
 * lock and threads do not share the cache lines they count in. All
 * functions may be called from any thread. */
#ifndef STRATA_METRICS_H
#define STRATA_METRICS_H

#include <stdint.h>

#include "../src/common/buf.h"
#include "router.h"

typedef struct http_metrics http_metrics;

/* Routes are labelled by pattern; one extra slot counts unmatched paths. */
http_metrics *metrics_new(const router *r);
void metrics_free(http_metrics *m);

void metrics_request_started(http_metrics *m);
/* route_index -1 for an unmatched path. */
void metrics_request_finished(http_metrics *m, int route_index, int status, uint64_t micros);
long metrics_in_flight(const http_metrics *m);

int metrics_render(const http_metrics *m, strata_buf *out, strata_error *err);

#endif
