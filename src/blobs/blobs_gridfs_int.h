/* Inside the GridFS blob store (blobs_gridfs.h): shared by blobs_gridfs.c
 * (the store, lookups, list and sweep) and blobs_gridfs_io.c (streamed
 * reads, staged writes). Not for other modules. */
#ifndef STRATA_BLOBS_GRIDFS_INT_H
#define STRATA_BLOBS_GRIDFS_INT_H

#include <stdatomic.h>

#include "../common/mongo_conn.h"
#include "blobs_gridfs.h"

#define GFS_COLL_MAX 48
#define GFS_STAGE    "~stage-" /* + the staged file's ObjectId in hex */
#define GFS_NAME_MAX 40

typedef struct gfs_blobs {
    blob_store base;
    mongo_conn *conn;
    mongo_conn *probe; /* health: short timeouts */
    char bucket[BLOBS_GRIDFS_BUCKET_MAX + 1];
    char files[GFS_COLL_MAX], chunks[GFS_COLL_MAX], staging[GFS_COLL_MAX], meta[GFS_COLL_MAX];
    /* uploads in progress, each holding a pooled client until it ends: at
     * most half the pool, so that slow clients cannot take all of it */
    _Atomic int uploads;
} gfs_blobs;

/* A files document as the store reads it. */
typedef struct gfs_file {
    bson_value_t id;   /* _id */
    bson_value_t data; /* the chunks' files_id: data, else _id */
    bool has_data;     /* data is set */
    int64_t length;
    int32_t chunk_size;
    int64_t mtime_ms;
    bool named_key; /* filename is a key (not a staging name) */
} gfs_file;

void gfs_file_clear(gfs_file *f);

/* mongo_conn_error, but for FerretDB v1 an update that a unique index
 * refuses comes back as PostgreSQL's "duplicate key value violates unique
 * constraint" under another code than 11000: SERR_CONFLICT too. */
int gfs_error(const bson_error_t *e, const char *what, strata_error *err);

/* Claims the staged upload id for `by` ("commit" or "sweep") by inserting
 * {_id: {claim: id}, by} into the staging collection: a unique-index
 * insert, the one primitive FerretDB v1 makes atomic (its conditional
 * updates are not), so exactly one of a commit and a sweep wins. *won;
 * when lost, holder gets the winner's `by` (16 bytes). */
int gfs_claim_stage(gfs_blobs *b, mongoc_client_t *cl, const bson_value_t *id, const char *by,
                    bool *won, char holder[16], strata_error *err);
/* Deletes the claim of id, if any. */
int gfs_unclaim_stage(gfs_blobs *b, mongoc_client_t *cl, const bson_value_t *id, strata_error *err);

/* The files document named key (*found false when none), through cl. */
int gfs_find_file(gfs_blobs *b, mongoc_client_t *cl, const char *key, gfs_file *f, bool *found,
                  strata_error *err);

/* The files document with _id id (*found false when none). */
int gfs_find_file_by_id(gfs_blobs *b, mongoc_client_t *cl, const bson_value_t *id, gfs_file *f,
                        bool *found, strata_error *err);

/* Marks the chunk set data for the sweep: state "r", at = now. */
int gfs_mark_retired(gfs_blobs *b, mongoc_client_t *cl, const bson_value_t *data,
                     strata_error *err);

/* "~stage-<hex>" for an ObjectId id; false for another type. */
bool gfs_stage_name(const bson_value_t *id, char out[GFS_NAME_MAX]);

/* A staged upload (blobs_gridfs_io.c): put, replace and streamed writes
 * stage their bytes this way, then commit them under a key. */
typedef struct gfs_stage gfs_stage;

/* Starts one: a marker, then an upload stream. With reserve_header, the
 * first BLOB_HEADER_SIZE bytes are zeros, filled at commit. */
int gfs_stage_begin(gfs_blobs *b, bool reserve_header, gfs_stage **out, strata_error *err);
int gfs_stage_write(gfs_stage *s, const void *data, size_t len, strata_error *err);
/* Makes the staged bytes visible under key (header: with reserve_header,
 * else NULL). replace: point an existing key at them rather than keep
 * it. Frees s whatever the outcome. */
int gfs_stage_commit(gfs_stage *s, const char *key, const unsigned char *header, bool replace,
                     strata_error *err);
/* Drops the staged bytes and frees s. NULL is a no-op. */
void gfs_stage_abort(gfs_stage *s);

/* Streamed reads (blobs_gridfs_io.c). *changed is set when a failure came
 * from the blob being removed or replaced during the read. */
int gfs_open_read(blob_store *base, const char *key, uint64_t offset, blob_reader **out,
                  uint64_t *total, strata_error *err);
long gfs_read_ex(blob_reader *r, void *buf, size_t cap, bool *changed, strata_error *err);
/* Fetches at most chunks chunks per query from now on (head: 1). */
void gfs_reader_limit(blob_reader *r, int chunks);
int gfs_begin_write(blob_store *base, blob_writer **out, strata_error *err);

#endif
