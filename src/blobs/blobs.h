/* The blob store: large content, content-addressed by the SHA-256 of the
 * raw content, kept in the self-describing stored-blob format (header +
 * payload, see codec/blob_format.h). It never loses data: writes are
 * crash-safe, and reads verify before anything is returned.
 * Backends sit behind a vtable chosen by URL (file:DIR, s3://..., gridfs://...). */
#ifndef STRATA_BLOBS_H
#define STRATA_BLOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../codec/blob_format.h"
#include "../common/buf.h"
#include "../common/error.h"

typedef struct blob_store blob_store;
typedef struct blob_reader blob_reader;
typedef struct blob_writer blob_writer;

/* Sequential reading of one stored blob, in bounded memory. */
typedef struct blob_reader_ops {
    /* Up to cap bytes into buf: the count (> 0), 0 at the end, -1 with err
     * set (SERR_IO, SERR_UNAVAILABLE; SERR_CORRUPT when the blob ends
     * early). Bytes are not verified here: the caller hashes them. */
    long (*read)(blob_reader *r, void *buf, size_t cap, strata_error *err);
    void (*close)(blob_reader *r);
} blob_reader_ops;

struct blob_reader {
    const blob_reader_ops *ops;
};

/* A blob written as its bytes arrive, whose key (the raw content's hash)
 * and header are known only at the end. Nothing is visible under any key
 * before commit; a crash before it leaves only staging debris that the
 * store removes itself (list/collection), never a blob under a key. */
typedef struct blob_writer_ops {
    /* Appends payload bytes (the header comes at commit). */
    int (*write)(blob_writer *w, const void *data, size_t len, strata_error *err);
    /* Stores header + payload under key, durably (a 2xx may follow), and
     * frees w whatever the outcome. A key that exists already keeps its
     * bytes (same key, same content) and the staged ones are dropped. */
    int (*commit)(blob_writer *w, const char *key, const unsigned char header[BLOB_HEADER_SIZE],
                  strata_error *err);
    /* Drops everything written and frees w. */
    void (*abort)(blob_writer *w);
} blob_writer_ops;

struct blob_writer {
    const blob_writer_ops *ops;
};

/* Called for each stored key by list; return non-zero to stop. */
/* mtime_ms: when the blob was last written or touched, in ms since the epoch. */
typedef int (*blob_list_fn)(void *ctx, const char *key, uint64_t size, int64_t mtime_ms);

typedef struct blob_store_ops {
    const char *name;
    /* Stores a whole encoded blob (header + payload) under key; storing a
     * key that exists is a no-op (same key, same content). */
    int (*put)(blob_store *b, const char *key, const void *blob, size_t len, strata_error *err);
    /* Stores a whole encoded blob under key whether or not one exists,
     * replacing it atomically (crash-safe: the old bytes or the new, never
     * a mix). For repairing a blob found damaged. */
    int (*replace)(blob_store *b, const char *key, const void *blob, size_t len, strata_error *err);
    /* Reads the whole encoded blob; SERR_NOT_FOUND when absent. */
    int (*get)(blob_store *b, const char *key, size_t max_len, strata_buf *out, strata_error *err);
    int (*exists)(blob_store *b, const char *key, bool *out, strata_error *err);
    /* Reads and checks only the blob's header (codec, sizes, hashes). */
    int (*head)(blob_store *b, const char *key, blob_header *h, strata_error *err);
    int (*remove)(blob_store *b, const char *key, strata_error *err);
    /* Marks a blob as just used (its age restarts): a save that shares an
     * existing blob touches it, so the collector's grace period covers it
     * until the version referencing it commits. */
    int (*touch)(blob_store *b, const char *key, strata_error *err);
    /* Size and last-use time (ms since the epoch); SERR_NOT_FOUND. */
    int (*stat)(blob_store *b, const char *key, uint64_t *size, int64_t *mtime_ms,
                strata_error *err);
    int (*list)(blob_store *b, blob_list_fn fn, void *ctx, strata_error *err);
    /* Opens the encoded blob (header included) for reading from byte
     * offset; *total is the encoded blob's whole size. SERR_NOT_FOUND. */
    int (*open_read)(blob_store *b, const char *key, uint64_t offset, blob_reader **out,
                     uint64_t *total, strata_error *err);
    /* Starts a streamed write (blob_writer above). */
    int (*begin_write)(blob_store *b, blob_writer **out, strata_error *err);
    /* Optional (NULL: always answers): one cheap request proving that the
     * store answers to its credentials. On failure err->detail starts with
     * the backend's own error code when it gave one ("SignatureDoesNotMatch:
     * ..."), which /ready shows; anything else is not shown. */
    int (*health)(blob_store *b, strata_error *err);
    void (*close)(blob_store *b);
} blob_store_ops;

struct blob_store {
    const blob_store_ops *ops;
};

blob_store *blobs_open(const char *url, strata_error *err);
void blobs_close(blob_store *b);

/* A key is 64 lower-case hex digits: nothing else reaches a backend. */
bool blob_key_valid(const char *key);

/* Checks a whole encoded blob held in memory (a cached copy) against its
 * key: header, payload hash, and the raw hash the header names.
 * SERR_CORRUPT when anything disagrees; h is filled on success. */
int blob_check_copy(const void *blob, size_t len, const char *key, blob_header *h,
                    strata_error *err);

/* blob_check_copy without the payload hash: the header, the payload's
 * size and the key, for a copy whose payload was checked when it came
 * into memory and has stayed there since (a cache value marked verified).
 * SERR_CORRUPT when anything disagrees; h is filled on success. */
int blob_check_header(const void *blob, size_t len, const char *key, blob_header *h,
                      strata_error *err);

/* Reads a blob and checks its header and payload hash against the key
 * (cheap: no decompression). SERR_CORRUPT when anything disagrees. */
int blobs_get_verified(blob_store *b, const char *key, size_t max_len, strata_buf *out,
                       blob_header *h, strata_error *err);

/* Reads a stored blob through open_read in bounded memory and checks its
 * header, size, payload hash and key, as blobs_get_verified does without
 * holding it. SERR_CORRUPT (damaged), SERR_NOT_FOUND, or the store's
 * errors; h is filled on success. */
int blobs_check_stored(blob_store *b, const char *key, blob_header *h, strata_error *err);

#endif
