/* What the versions service's files share (not for other modules): the
 * service object and helpers used by more than one of them.
 *   versions.c         the service, cache keys and fences, reading, counts
 *   version_plan.c     a save's envelope: fields, tags, dependencies, checks
 *   version_save.c     placing content (inline or a claimed blob) and saving
 *   version_delete.c   deleting versions and resources, with their guards
 *   version_content.c  reading content, verified */
#ifndef STRATA_VERSIONS_INTERNAL_H
#define STRATA_VERSIONS_INTERNAL_H

#include "versions.h"

#define SAVE_RETRIES 64
/* How long a fence set before a change refuses cache fills if the change
 * never ends it (a crash between the fence and the commit): longer than
 * any fence-to-commit interval, short enough to lose little caching. */
#define LATEST_FENCE_HOLD_MS 60000
/* how long an invalidation after a commit is retried before the change
 * is answered 503 (committed, unconfirmed) */
#define INVALIDATE_RETRY_MS 5000
/* How long a save waits for a collector to finish with a blob it wants:
 * past a maintenance lease's life, so a dead collector's key is freed. */
#define CLAIM_WAIT_MS 45000

struct versions_svc {
    store *st;
    blob_store *blobs;
    cache_manager *cache;
    versions_config cfg;
    access_stats *access;
    versions_hook hook;
    void *hook_ctx;
};

/* Cache keys, in the internal namespace of the resource type ("@corpus"),
 * which no /cache request can reach. */
void versions_latest_key(const char *id, char *out, size_t cap);
void versions_blob_cache_key(const char *hash, char *out, size_t cap);
/* "latest" (or NULL) is 0; otherwise MAJOR.MINOR.PATCH. */
int versions_parse_version(const char *version, uint64_t *vkey, strata_error *err);
/* Sets err to 410 (a tombstone says who removed it) or 404. */
void versions_gone_or_missing(versions_svc *svc, const char *type, const char *id, uint64_t vkey,
                              const char *version, strata_error *err);

#endif
