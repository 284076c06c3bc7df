/* Retention: keep the newest N versions of each resource (per type, the
 * design's defaults), optionally also removing versions older than a
 * maximum age. Never the latest version, and never a version that the
 * latest version of another resource depends on exactly. Removed versions
 * leave tombstones naming the policy; their blobs are left to the
 * collector. */
#ifndef STRATA_RETENTION_H
#define STRATA_RETENTION_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "versions.h"

typedef struct retention_rule {
    char type[STORE_TYPE_MAX];
    int keep;           /* newest versions kept, at least 1 */
    uint64_t max_age_s; /* 0: no age limit */
} retention_rule;

typedef struct retention_config {
    retention_rule rules[8];
    int n;
} retention_config;

void retention_defaults(retention_config *cfg);
/* "dictionary:keep=5,max_age=2592000;corpus:keep=2" (max_age in seconds) */
int retention_config_apply(retention_config *cfg, const char *spec, strata_error *err);

/* keep < 0: the type's rule. */
int retention_cleanup(versions_svc *vs, const retention_config *cfg, const char *type,
                      const char *id, int keep, bool dry_run, json_t **report, strata_error *err);
int retention_cleanup_all(versions_svc *vs, const retention_config *cfg, bool dry_run,
                          json_t **report, strata_error *err);

#endif
