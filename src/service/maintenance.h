/* The background scheduler: every interval, retention over every resource
 * and then blob collection. Off unless an interval is configured. */
#ifndef STRATA_MAINTENANCE_H
#define STRATA_MAINTENANCE_H

#include "retention.h"

typedef struct maintenance maintenance;

/* interval_s 0: returns NULL without error (off). */
maintenance *maintenance_start(versions_svc *vs, const retention_config *rules, unsigned interval_s,
                               uint64_t gc_grace_s, strata_error *err);
void maintenance_stop(maintenance *m);

#endif
