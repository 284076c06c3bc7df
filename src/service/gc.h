/* Blob garbage collection: mark every blob key a version references,
 * sweep the blobs nobody references once they are older than a grace
 * period. Each removal re-checks, under the exclusive blob lock, that the
 * blob is still unreferenced and still old: a save holds the shared lock
 * from deciding to share (or write) a blob until its version commits, so
 * no acknowledged version ever loses its content (invariant 4). */
#ifndef STRATA_GC_H
#define STRATA_GC_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "versions.h"

int gc_run(versions_svc *vs, uint64_t grace_seconds, bool dry_run, json_t **report,
           strata_error *err);

#endif
