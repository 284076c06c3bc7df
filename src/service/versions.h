/* The versioned store as the API sees it: saving with deduplication
 * (same content as the latest: no new version; same as an older one: a
 * new version sharing the blob), semver bumps, inline or external
 * placement, per-type fields and compression, reading records and
 * verified content, listing and deleting. */
#ifndef STRATA_VERSIONS_H
#define STRATA_VERSIONS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "../blobs/blobs.h"
#include "../codec/compress.h"
#include "../store/store.h"
#include "access_stats.h"
#include "cache_manager.h"

typedef struct versions_config {
    size_t inline_threshold; /* content up to this many bytes stays in the store */
    size_t max_content;      /* largest content, raw */
    unsigned access_flush_ms;
    /* Blob copies go to the cache's L1 only, never to its L2: set when
     * the blob store is as near as the L2 (file: blobs beside a disk L2,
     * where an L2 copy would be a second copy of every hot blob on the
     * same disk). */
    bool blobs_l1_only;
} versions_config;

typedef struct versions_svc versions_svc;

/* cache may be NULL (no caching). */
versions_svc *versions_new(store *st, blob_store *blobs, cache_manager *cache,
                           const versions_config *cfg, strata_error *err);
void versions_free(versions_svc *svc);

/* A byte save's content received as it arrives, for bodies too large to
 * hold (the HTTP layer spills past a threshold): written to the blob
 * store as a staged blob (blob_writer), compressed on the way as the
 * type's policy says, or kept in the client's codec when it sent one.
 * Its key is known at the end, when versions_save claims and commits it;
 * until then nothing is visible. One thread at a time. */
typedef struct content_upload content_upload;

/* wire_codec: the body's Content-Encoding (its bytes are then stored as
 * they are); store_codec: for a plain body, how to compress it. */
int versions_upload_begin(versions_svc *svc, enum scodec wire_codec, enum scodec store_codec,
                          content_upload **out, strata_error *err);
/* The body's wire bytes, in order. SERR_TOO_LARGE past the content limit
 * (plain bodies; encoded ones are bounded by the body reader). */
int versions_upload_write(content_upload *u, const void *data, size_t len, strata_error *err);
/* Drops whatever was staged (if versions_save did not commit it). */
void versions_upload_free(content_upload *u);

typedef struct save_request {
    const char *type;
    const char *id;
    /* The envelope: JSON saves carry "content" in it; byte saves build it
     * from query parameters and pass the bytes below. Borrowed. */
    const json_t *envelope;
    const unsigned char *bytes; /* decoded content of a byte save */
    size_t len;
    /* The SHA-256 of bytes when the caller took it already (the body
     * reader hashes the content as it arrives), or NULL (versions_save
     * hashes them). Trusted: it names the version and its blob. */
    const unsigned char *bytes_sha256;
    /* When not NULL: room_len writable bytes right before bytes, the
     * caller's, that the save may overwrite. A content stored raw in a
     * blob gets its header written there (at least BLOB_HEADER_SIZE bytes
     * are needed), so the bytes are written where they lie instead of
     * copied behind a new header; at a page-aligned address, a local blob
     * store then writes them around the page cache. */
    unsigned char *room;
    size_t room_len;
    const char *content_type;  /* of a byte save */
    const unsigned char *wire; /* the bytes as received, when encoded */
    size_t wire_len;
    enum scodec wire_codec; /* SCODEC_NONE when sent plain */
    const char *if_match;   /* If-Match header or NULL */
    /* A streamed byte save: bytes is NULL; the raw size and hash of the
     * (decoded) content come from the body reader, which hashed it as it
     * arrived. */
    content_upload *upload;
    uint64_t upload_raw_size;
    const unsigned char *upload_raw_sha256;
    store_txn *txn; /* a batch, or NULL */
    /* Saves made by the trees service: fields it computed (vocabulary
     * size of a master, ...), set as they are; the content is a manifest,
     * not a vocabulary. NULL for client saves. */
    const json_t *computed;
    /* Check everything a save checks (envelope, fields, content,
     * dependencies) and stop before writing anything: 0 when the save
     * would be accepted as far as its input goes. */
    bool validate_only;
} save_request;

/* Called after a version is created outside a batch (and after the cache
 * was invalidated), with no lock of the versions service held, so it may
 * take the trees service's lock: the cascade to dependents hangs here.
 * prev_latest is the version it replaced (0 for the first).
 *
 * Lock order (process-local locks, none of which guards an invariant):
 * the trees service mutex, then the store's writer mutex (held only inside
 * a store call or a transact() body), then the cache's mutexes. A hook
 * runs after every lock of the call that triggered it was released. */
typedef void (*versions_hook)(void *ctx, const store_version *created, uint64_t prev_latest,
                              const save_request *rq);
void versions_set_hook(versions_svc *svc, versions_hook hook, void *ctx);
store *versions_store(versions_svc *svc);
blob_store *versions_blobs(versions_svc *svc);

/* Drops cached copies of a blob from every resource type's namespace. */
void versions_forget_blob(versions_svc *svc, const char *key);
/* Ends the fence of a version a batch created and runs the after-save
 * hook, once the batch committed (saves inside a transaction do neither
 * themselves). -1 with *err set when the fence could not be ended (see
 * versions_invalidate_latest): the batch must not be acknowledged. */
int versions_notify_created(versions_svc *svc, const store_version *created, uint64_t prev_latest,
                            strata_error *err);

/* *created is false when the content equals the latest (no new version). */
int versions_save(versions_svc *svc, const save_request *rq, store_version *out, bool *created,
                  strata_error *err);

/* version: "latest" or "X.Y.Z". */
int versions_get(versions_svc *svc, const char *type, const char *id, const char *version,
                 store_version *out, strata_error *err);
/* A record rendered once for serving (the API's bytes for it), with what
 * serving it needs besides. The bytes leave out the part that changes
 * from one read to the next (the access counts): it goes at split, between
 * bytes[0, split) and bytes[split, len). Immutable. */
typedef struct rendered_record {
    cache_memo memo; /* kept with a cached copy of the record (cache_value.h) */
    char type[STORE_TYPE_MAX];
    char id[STORE_ID_MAX + 1];
    uint64_t vkey;
    char data_hash[SHA256_HEX_LEN + 1];
    uint64_t stored_count; /* access counts as read with the record */
    int64_t stored_last_ms;
    size_t split, len;
    unsigned char bytes[];
} rendered_record;

/* Renders v into out (appended), leaving the part that changes per read
 * out, at *split (an offset into out's new bytes). -1 with err set. */
typedef int (*record_renderer)(const store_version *v, strata_buf *out, size_t *split,
                               strata_error *err);

/* A rendered record being served: r, and what keeps it alive. */
typedef struct rendered_ref {
    const rendered_record *r;
    cache_value *hold;    /* the cached copy r belongs to (a reference), or NULL */
    rendered_record *own; /* r when rendered for this read alone, or NULL */
} rendered_ref;

/* versions_get for serving a record: errors and the access count as
 * there; on success out->r is the record as render renders it. A latest
 * record is rendered once per cached copy and kept with the copy (freed
 * with it), so a read that finds the copy rendered neither decodes nor
 * renders; the copy is validated by the cache exactly as versions_get's.
 * Other records (exact versions, a copy that could not take the
 * rendering, a bypassed cache) are rendered for the read alone. Release
 * *out with rendered_ref_release (also after a failure: a no-op). */
int versions_get_rendered(versions_svc *svc, const char *type, const char *id, const char *version,
                          record_renderer render, rendered_ref *out, strata_error *err);
void rendered_ref_release(rendered_ref *ref);
/* The access counts to show for r (as versions_access_counts). */
void versions_rendered_counts(versions_svc *svc, const rendered_record *r, uint64_t *count,
                              int64_t *last_ms);

int versions_list(versions_svc *svc, const char *type, const char *id, const store_list_opts *o,
                  store_page *out, strata_error *err);
int versions_list_resources(versions_svc *svc, const char *type, const store_list_opts *o,
                            store_page *out, strata_error *err);
/* removed_by names the policy or request, for the tombstone ("request",
 * "batch", "retention: keep newest 5"). */
int versions_delete(versions_svc *svc, const char *type, const char *id, const char *version,
                    store_txn *txn, const char *removed_by, strata_error *err);
/* Retention's delete: version vkey goes unless the latest version of some
 * resource depends on it exactly (*pinned, and *by names it: "type/id"),
 * decided in the same store transaction as the delete. */
int versions_delete_unpinned(versions_svc *svc, const char *type, const char *id, uint64_t vkey,
                             const char *removed_by, bool *pinned, char *by, size_t by_cap,
                             strata_error *err);
int versions_delete_resource(versions_svc *svc, const char *type, const char *id, store_txn *txn,
                             const char *removed_by, size_t *count, strata_error *err);

typedef struct content_out {
    const unsigned char *data; /* the bytes, held by owned or pin; read only */
    size_t len;
    enum scodec encoding; /* SCODEC_NONE, or the stored codec passed through */
    char content_type[128];
    unsigned char digest[SHA256_LEN]; /* SHA-256 of these bytes (Repr-Digest) */
    unsigned char *owned;             /* malloc'd buffer holding data, or NULL */
    cache_value *pin;                 /* cached blob holding data (a reference), or NULL */
} content_out;

/* Reads a version's content (v from versions_get, which counted the
 * access), verified against its hash before it is returned (SERR_CORRUPT
 * otherwise). accept_codecs is a bit mask of
 * (1 << codec) the client accepts; stored compressed bytes in an
 * accepted codec are returned as they are: then, on a cache hit, data
 * points into the cached blob itself (no copy, and no hash when the copy
 * was verified as it came into memory: cache_value.h), and out holds a
 * reference to it until content_out_free. Whatever the outcome, out can
 * be passed to content_out_free (it is zeroed on failure). */
int versions_content(versions_svc *svc, const store_version *v, unsigned accept_codecs,
                     content_out *out, strata_error *err);
void content_out_free(content_out *c);

/* Content as a stream, in bounded memory whatever its size (DESIGN.md
 * "Large content streams"). Small content (payload and raw size up to
 * CONTENT_STREAM_MIN) is read whole through the cache, as versions_content
 * does; larger content is read from the blob store as the caller reads,
 * never cached, and verified as it passes: the digest is known before the
 * first byte (from the blob's checked header), and the read that would
 * hand out the last byte of the response first reads the rest of the
 * blob and checks every hash, failing with SERR_CORRUPT instead. A caller
 * that gets an error mid-stream must abort the transfer, never complete
 * it. A stream is used by one thread at a time. */
#define CONTENT_STREAM_MIN (4u << 20)

typedef struct content_stream content_stream;

typedef struct content_info {
    uint64_t length;      /* of the whole representation */
    enum scodec encoding; /* SCODEC_NONE, or the stored codec passed through */
    char content_type[128];
    unsigned char digest[SHA256_LEN]; /* SHA-256 of the whole representation */
} content_info;

/* Opens v's content (arguments as for versions_content). Errors as
 * versions_content's; *out is NULL on failure. */
int versions_content_open(versions_svc *svc, const store_version *v, unsigned accept_codecs,
                          content_stream **out, content_info *info, strata_error *err);
/* Restricts the stream to bytes [first, last] of the representation
 * (first <= last < length); before the first read only. */
void content_stream_range(content_stream *s, uint64_t first, uint64_t last);
/* Up to cap bytes: the count, 0 at the end (everything verified), -1 with
 * err set (SERR_CORRUPT, SERR_IO, SERR_UNAVAILABLE). */
long content_stream_read(content_stream *s, void *buf, size_t cap, strata_error *err);
void content_stream_close(content_stream *s);
/* For a stream held whole in memory (small content): moves its content
 * (the whole representation, ranges aside) into *out, for the caller to
 * release with content_out_free, and returns true; false, with *out
 * untouched and nothing taken, for a stream from the blob store. Before
 * the first read only. */
bool content_stream_take(content_stream *s, content_out *out);

/* The access counts to show for v (read with v, possibly from a cached
 * copy): stored, written by this node since, and pending here. */
void versions_access_counts(versions_svc *svc, const store_version *v, uint64_t *count,
                            int64_t *last_ms);

/* Invariant 6, in two steps around any change of a resource's latest
 * version made outside versions_save and versions_delete* (which do it
 * themselves): versions_fence_latest before the change commits (-1 with
 * SERR_UNAVAILABLE when the cache cannot record it: do not commit), then
 * versions_invalidate_latest once it committed or was abandoned. If the
 * second step never happens (a crash), the fence keeps every node's
 * readers off the cached record until it expires, so none serves the
 * record the change replaced. A fence can be lost, though (a Redis L2
 * restarted without its data), so a change is acknowledged only once
 * versions_invalidate_latest succeeded: it retries for a few seconds, then
 * fails with SERR_UNAVAILABLE (the change is committed; the client is
 * told to repeat it, and a repeated save invalidates again). Alone, it
 * drops cached copies of a record whose change cannot make it older (a
 * stale flag, access counts). */
int versions_fence_latest(versions_svc *svc, const char *type, const char *id, strata_error *err);
int versions_invalidate_latest(versions_svc *svc, const char *type, const char *id,
                               strata_error *err);

/* The error of a change that committed but whose invalidation failed. */
int versions_unconfirmed(strata_error *err, const char *what);

/* Whether the resource exists now: 0, or SERR_NOT_FOUND (404) when it
 * never did and SERR_GONE (410, naming who removed it) when it was
 * removed. Counts no access. */
int versions_require(versions_svc *svc, const char *type, const char *id, strata_error *err);

/* Checks the type name and id; SERR_NOT_FOUND for an unknown type. */
int versions_check_resource(const char *type, const char *id, strata_error *err);

#endif
