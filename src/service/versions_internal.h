/* What the versions service's files share (not for other modules): the
 * service object and helpers used by more than one of them.
 *   versions.c         the service, cache keys and fences, reading, counts
 *   version_plan.c     a save's envelope: fields, tags, dependencies, checks
 *   version_save.c     placing content (inline or a claimed blob) and saving
 *   version_delete.c   deleting versions and resources, with their guards
 *   version_content.c  reading content, verified
 *   version_stream.c   content as a stream
 *   version_upload.c   a byte save received as a stream */
#ifndef STRATA_VERSIONS_INTERNAL_H
#define STRATA_VERSIONS_INTERNAL_H

#include "versions.h"

#include <pthread.h>

#include "../codec/blob_format.h"

#define SAVE_RETRIES 64
/* Saves of one resource in one process take turns on its stripe (hash of
 * type and id): with writes running on many threads at once, racing
 * compare-and-swaps on one head would otherwise starve a writer past
 * SAVE_RETRIES. Only a speed-up: other processes still meet at the
 * compare-and-swap, and retry. A stripe is held through the commit, so
 * two saves of different resources on one stripe wait a commit for each
 * other: with the writer pool's 32 threads, 64 stripes made about 8 such
 * pairs at any time, 1024 make one in two. */
#define SAVE_STRIPES 1024
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
    pthread_mutex_t save_stripes[SAVE_STRIPES];
};

/* The stripe that saves of type/id take turns on (see SAVE_STRIPES). */
pthread_mutex_t *versions_save_stripe(versions_svc *svc, const char *type, const char *id);

/* Cache keys, in the internal namespace of the resource type ("@corpus"),
 * which no /cache request can reach. */
void versions_latest_key(const char *id, char *out, size_t cap);
void versions_blob_cache_key(const char *hash, char *out, size_t cap);
/* "latest" (or NULL) is 0; otherwise MAJOR.MINOR.PATCH. */
int versions_parse_version(const char *version, uint64_t *vkey, strata_error *err);
/* Sets err to 410 (a tombstone says who removed it) or 404. */
void versions_gone_or_missing(versions_svc *svc, const char *type, const char *id, uint64_t vkey,
                              const char *version, strata_error *err);

/* Ends a streamed upload: the header of what was staged. raw_size and
 * raw_sha256 are the decoded content's, from the body reader (which hashes
 * every byte as it arrives, so the upload does not hash them again); for a
 * plain body raw_size must equal the bytes written (SERR_INTERNAL). */
int versions_upload_finish(content_upload *u, uint64_t raw_size, const unsigned char *raw_sha256,
                           blob_header *h, strata_error *err);
/* Places a finished upload under hash_hex (claimed by the caller): a
 * whole blob already there is shared and the staged one dropped; a
 * damaged one is replaced. Fills the content location like a save's.
 * Once committed, a second call finds the blob or fails with SERR_RETRY
 * (it was collected: the client must send it again). */
int versions_place_upload(versions_svc *svc, content_upload *u, const char *hash_hex, json_t *loc,
                          strata_error *err);

#endif
