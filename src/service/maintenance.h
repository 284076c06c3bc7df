/* The background scheduler: every interval, under the store's maintenance
 * lease (so one node at a time, whichever holds it; a node that dies
 * loses it when it lapses): tree masters left behind by a node that died
 * mid-change are rolled forward, retention runs over every resource, then
 * blob collection. Off unless an interval is configured. */
#ifndef STRATA_MAINTENANCE_H
#define STRATA_MAINTENANCE_H

#include "retention.h"
#include "trees.h"

typedef struct maintenance maintenance;

/* interval_s 0: returns NULL without error (off). */
maintenance *maintenance_start(versions_svc *vs, trees_svc *trees, const retention_config *rules,
                               unsigned interval_s, uint64_t gc_grace_s, strata_error *err);
/* Stops the thread and gives the lease up. */
void maintenance_stop(maintenance *m);

#endif
