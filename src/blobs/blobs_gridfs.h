/* The blob store on GridFS (MongoDB, or a MongoDB-wire server such as
 * FerretDB), over mongo_conn.h and libmongoc's GridFS bucket API.
 *
 *   gridfs://[user:password@]host[:port][,host...]/DB[?options]
 *
 * The URL is a mongodb:// URL with the scheme replaced; libmongoc reads
 * its options, but for `bucket=NAME` ([A-Za-z0-9_-]{1,32}, default
 * "blobs"), which names the GridFS bucket and is removed before the URL
 * reaches mongo_conn_open.
 *
 * Layout in DB (standard GridFS, so GridFS tools read the blobs):
 *   NAME.files    one document per stored file: {_id, length, chunkSize,
 *                 uploadDate, filename, mtime, data}. A blob is the file
 *                 whose filename is its key (unique index on filename:
 *                 at most one visible file per key); its bytes are the
 *                 whole encoded blob (header + payload). mtime is the
 *                 server's time of the last commit or touch; data, when
 *                 set, names the files_id its chunks are under (a
 *                 replaced blob, below), else its own _id. (Top-level
 *                 fields, not in metadata: FerretDB v1 refuses dotted
 *                 paths in $currentDate.)
 *   NAME.chunks   {files_id, n, data}, BLOBS_GRIDFS_CHUNK bytes each but
 *                 the last (unique index on files_id, n).
 *   NAME.staging  one marker per staged upload or retired chunk set:
 *                 {_id: the files_id, at: server time, state}; state "w"
 *                 (being written), "c" (being committed), "d" (claimed
 *                 by a sweep), "r" (chunks to delete once no file uses
 *                 them).
 *   NAME.meta     {_id: "schema", version: 1}. open refuses a newer one.
 * open creates the collections' indexes and the schema document.
 *
 * Semantics beside blobs.h:
 * - Writes stream through a GridFS upload stream to a staging file named
 *   "~stage-<its id>" (never a key), with a marker in NAME.staging first.
 *   Commit claims the marker ("w" -> "c"), then renames the files
 *   document to the key: one single-document update, so a blob appears
 *   whole or not at all. A duplicate key there means the key is stored
 *   already: the staged file is dropped (same key, same content).
 * - A streamed write reserves header space in chunk 0 and holds a copy of
 *   chunk 0 (at most one chunk) to put the header in at commit; with
 *   libmongoc's own chunk buffer a writer holds about two chunks, and one
 *   pooled client from begin_write until commit or abort.
 * - replace stages the new bytes, then (when the key exists) points the
 *   key's files document at them with one conditional update
 *   (data, length): readers see the old bytes or the new. The
 *   old chunks are not deleted at once (a reader may be in them): they
 *   get an "r" marker and a sweep deletes them after
 *   BLOBS_GRIDFS_STAGING_MAX_AGE_MS.
 * - remove notes the chunk set with an "r" marker, deletes the files
 *   document (readers stop seeing the blob), then the chunks, then the
 *   marker: a crash between leaves work for the sweep, never a
 *   half-deleted visible blob. A missing key: SERR_NOT_FOUND.
 * - open_read finds the files document, then fetches at most
 *   BLOBS_GRIDFS_READ_CHUNKS chunks per query as the caller reads, taking
 *   a pooled client only for each query. A missing or misshapen chunk
 *   fails the read: SERR_IO when the blob was removed or replaced
 *   meanwhile, else SERR_CORRUPT. get retries a read whose blob changed
 *   under it (replace) a few times.
 * - touch and commit set mtime with $currentDate (the server's
 *   clock); stat and list report it (else uploadDate), in ms.
 * - list walks NAME.files (only key-named files are passed on); when it
 *   ran to the end it sweeps NAME.staging: markers older than
 *   BLOBS_GRIDFS_STAGING_MAX_AGE_MS (by this node's clock against the
 *   server's time) are claimed, their staged files and unused chunks
 *   deleted (failures are logged: the listing stands). A live writer
 *   renews its marker every few minutes, so only dead ones age.
 * - Errors come from mongo_conn_error: SERR_UNAVAILABLE when MongoDB is
 *   not reachable, SERR_IO for other refusals. health sends a ping
 *   through a pool of its own with 2 s timeouts.
 *
 * Thread safety: a store may be used from any number of threads at once;
 * a reader or a writer by one thread at a time. */
#ifndef STRATA_BLOBS_GRIDFS_H
#define STRATA_BLOBS_GRIDFS_H

#include "blobs.h"

#define BLOBS_GRIDFS_CHUNK              (256u << 10)
#define BLOBS_GRIDFS_READ_CHUNKS        8 /* per query: 2 MiB per reader */
#define BLOBS_GRIDFS_STAGING_MAX_AGE_MS (3600 * 1000LL)
#define BLOBS_GRIDFS_BUCKET_MAX         32
#define BLOBS_GRIDFS_SCHEMA_VERSION     1

/* Opens the store named by a gridfs:// URL: contacts the server to create
 * the indexes and check the schema version. NULL with *err set:
 * SERR_INVALID (a malformed URL or bucket name, a layout newer than this
 * build), SERR_UNAVAILABLE (MongoDB not reachable), SERR_IO, SERR_NOMEM. */
blob_store *blobs_gridfs_open(const char *url, strata_error *err);

/* Splits a gridfs:// URL into the mongodb:// URL for mongo_conn_open
 * (into out, cap bytes) and the bucket name (into bucket). SERR_INVALID
 * when the URL is not gridfs://, bucket= is malformed or repeated, or out
 * is too small. */
int blobs_gridfs_parse_url(const char *url, char *out, size_t cap,
                           char bucket[BLOBS_GRIDFS_BUCKET_MAX + 1], strata_error *err);

/* The sweep list() runs, with another age (0: every marker older than
 * now); *removed (may be NULL) counts the markers dealt with. SERR_INVALID
 * when b is not a GridFS store; the first failure otherwise. */
int blobs_gridfs_sweep_staging(blob_store *b, int64_t age_ms, unsigned *removed, strata_error *err);

#endif
