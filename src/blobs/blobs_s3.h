/* The blob store on S3 (or an S3-compatible server), over s3_client.h.
 *
 *   s3://BUCKET[/PREFIX][?endpoint=URL&region=R&timeout_ms=N]
 *   (credentials and endpoint from the environment: see s3_client.h)
 *
 * Layout under PREFIX:
 *   blobs/ab/cd/KEY   one object per blob (ab, cd: the key's first four
 *                     hex digits), holding the encoded blob (header +
 *                     payload) and nothing else. The fan-out mirrors the
 *                     file: store and keeps the directories of gateways
 *                     that map keys to a filesystem (versitygw's posix
 *                     backend, MinIO) small; S3 itself does not care.
 *   blobs/ab/cd/KEY.touched   the blob's touch marker (below).
 *   staging/RANDOM    streamed writes before their commit: a multipart
 *                     upload, then the completed object until it is
 *                     copied to its key. Debris a crash left there is
 *                     removed by the sweep below.
 *
 * Semantics beside blobs.h:
 * - put is a conditional PUT (If-None-Match: *): a 412 means the key
 *   exists, which is success.
 * - remove answers SERR_NOT_FOUND for a missing key (a HEAD first: S3's
 *   DELETE succeeds either way).
 * - mtime: touch writes an empty marker object beside the blob
 *   (blobs/ab/cd/KEY.touched) rather than copying the blob onto itself: a
 *   self-copy costs time in the blob's size, and versitygw's posix backend
 *   (v1.8.0) does not restart Last-Modified on it. stat and list report
 *   the later Last-Modified of blob and marker; as S3's has whole seconds,
 *   they report the last millisecond of that second, so the collector's
 *   grace period errs long, never short. remove deletes the marker too;
 *   list() removes markers older than an hour whose blob is gone.
 * - open_read fetches ranged GETs of at most BLOBS_S3_READ_CHUNK bytes as
 *   the caller reads. A blob replaced or removed while read (its ETag or
 *   size changes between ranges) fails the read (SERR_IO) rather than
 *   mixing two objects' bytes.
 * - begin_write holds at most about two parts in memory (the first part,
 *   which is sent last because the header is its front, and the part
 *   being filled). A blob of at most BLOBS_S3_FIRST_PART payload bytes is
 *   one conditional PUT at commit; a larger one goes up as a multipart
 *   upload to staging/, completed and copied to its key at commit (unless
 *   the key exists by then). A streamed blob is at most
 *   BLOBS_S3_STREAM_MAX bytes (CopyObject's limit): SERR_TOO_LARGE past it.
 * - list walks blobs/ (only well-formed names are passed on); when it ran
 *   to the end it then sweeps staging/: unfinished multipart uploads and
 *   staged objects older than BLOBS_S3_STAGING_MAX_AGE_MS are aborted and
 *   deleted (failures there are logged, not returned: the listing stands).
 *   A streamed write that takes longer than that age may have its upload
 *   aborted under it; its commit then fails and nothing is stored.
 *
 * Thread safety: a store may be used from any number of threads at once;
 * a reader or a writer by one thread at a time. */
#ifndef STRATA_BLOBS_S3_H
#define STRATA_BLOBS_S3_H

#include "blobs.h"

#define BLOBS_S3_READ_CHUNK         (1u << 20) /* per reader: 16 at once hold 16 MiB */
#define BLOBS_S3_FIRST_PART         (5u << 20) /* payload bytes before the header's part fills */
#define BLOBS_S3_PART               (8u << 20) /* later parts */
#define BLOBS_S3_STREAM_MAX         (5ull << 30)
#define BLOBS_S3_STAGING_MAX_AGE_MS (3600LL * 1000)

/* Opens the store named by an s3:// URL. Makes no request (a server that
 * is down or refuses the credentials shows in the first operation); NULL
 * with err set (SERR_INVALID naming what is wrong) on a bad URL or
 * configuration, SERR_NOMEM. */
blob_store *blobs_s3_open(const char *url, strata_error *err);

/* Aborts the multipart uploads under staging/ begun before now - age_ms
 * and deletes the staged objects last modified before it; *removed (may be
 * NULL) counts both. list() runs it with BLOBS_S3_STAGING_MAX_AGE_MS; this
 * entry point lets a test (or an operator's tool) run it with another age.
 * SERR_INVALID when b is not an S3 store; else the first S3 error, after
 * trying every item. */
int blobs_s3_sweep_staging(blob_store *b, int64_t age_ms, unsigned *removed, strata_error *err);

#endif
