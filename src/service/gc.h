/* Blob garbage collection: mark every blob key a version references,
 * sweep the blobs nobody references once they are older than a grace
 * period.
 *
 * Safe against saves on any node (invariant 4), decided in the store and
 * not by a lock or by comparing clocks: a save claims a key in the store
 * before it relies on the blob, and the collector removes a blob only
 * after the store doomed its key (blob_collect_begin: no version refers to
 * it, no claim stands, and none is granted until the collector ends). The
 * grace period is an extra courtesy, not what safety rests on; with grace
 * 0 nothing acknowledged is lost either.
 *
 * A run holds the store's "maintenance" lease (one collector at a time
 * across nodes; the lease token fences one that lost it) and first
 * finishes keys doomed by a collector that died before it ended them. */
#ifndef STRATA_GC_H
#define STRATA_GC_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "versions.h"

#define MAINTENANCE_LEASE    "maintenance"
#define MAINTENANCE_LEASE_MS 15000
/* A claim older than this is a save that died: collectors drop it. */
#define BLOB_CLAIM_TTL_MS 3600000

/* SERR_CONFLICT when another node holds the maintenance lease (a dry run
 * needs no lease). *report (a new reference) on success. */
int gc_run(versions_svc *vs, uint64_t grace_seconds, bool dry_run, json_t **report,
           strata_error *err);

/* Takes or renews the maintenance lease for this node: 0 with *held and
 * *token (the fencing token) set. */
int gc_lease(versions_svc *vs, bool *held, uint64_t *token, strata_error *err);

#endif
