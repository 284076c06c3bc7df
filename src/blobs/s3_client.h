/* A small S3 client: the object operations Strata's S3 blob store and S3
 * L2 need, over libcurl, signed with AWS Signature Version 4 over a
 * canonical request built here (s3_sigv4.h), with path-style addressing
 * so that S3-compatible servers (versitygw, MinIO) work with an endpoint.
 *
 * Configuration (s3_config_from_url): the URL names the bucket and a key
 * prefix; credentials, region and endpoint come from the variables AWS
 * tools read, overridden by STRATA_S3_* ones and by URL parameters:
 *
 *   s3://BUCKET[/PREFIX][?endpoint=URL&region=R&timeout_ms=N]
 *   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
 *   AWS_REGION (else AWS_DEFAULT_REGION, else us-east-1),
 *   AWS_ENDPOINT_URL_S3 (else AWS_ENDPOINT_URL; else
 *   https://s3.REGION.amazonaws.com), STRATA_S3_ENDPOINT over both.
 *
 * Keys passed to the operations are relative to PREFIX; the client adds
 * it. Every key byte outside A-Za-z0-9-._~/ is percent-encoded in the
 * path, and the query is sorted and encoded before signing.
 *
 * Errors: SERR_NOT_FOUND (404/NoSuchKey/NoSuchUpload), SERR_PRECONDITION
 * (412: a conditional write lost), SERR_UNAVAILABLE (the server could not
 * be reached, 5xx or SlowDown after the retries, or credentials refused:
 * 403 with the S3 error code and message in err->detail, e.g.
 * "SignatureDoesNotMatch: ..."), SERR_TOO_LARGE (an object larger than
 * the caller's bound), SERR_INVALID (bad configuration), SERR_IO (any
 * other answer; its code and message in the detail), SERR_NOMEM.
 * Retries: 5xx, SlowDown/503, and dropped or timed-out connections are
 * retried with exponential backoff (100 ms doubling, jittered, up to
 * max_retries) for every operation S3 makes idempotent (all of these;
 * s3_mpu_complete is retried and treats NoSuchUpload after a retry of a
 * completion that may have landed as success only if the object exists).
 *
 * Thread safety: one s3_client may be used from any number of threads at
 * once. Connections are reused: a client keeps a pool of curl easy
 * handles, each with its keep-alive connection; a request takes the one
 * returned last and gives it back, so there are never more handles than
 * requests in flight. Handles share DNS and TLS session caches (libcurl
 * cannot share connection caches between threads safely).
 *
 * Timeouts: timeout_ms bounds one operation, its retries included. A
 * conditional PUT retried after its first answer was lost may meet its own
 * earlier write and report SERR_PRECONDITION. ETags are given as the
 * server sends them, quotes included (as If-Match and completion want). */
#ifndef STRATA_S3_CLIENT_H
#define STRATA_S3_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/error.h"

#define S3_KEY_MAX       900 /* bytes of a key after the prefix (S3 allows 1024) */
#define S3_ETAG_MAX      128
#define S3_UPLOAD_ID_MAX 512
#define S3_META_MAX      8 /* x-amz-meta-* headers per object */

typedef struct s3_config {
    char bucket[64];
    char prefix[256];   /* without leading '/', with a trailing '/' when non-empty */
    char endpoint[256]; /* scheme://host[:port], no trailing '/' */
    char region[64];
    char access_key[128];
    char secret_key[128];
    char session_token[4096];
    long timeout_ms;    /* per request; default 30000 */
    int max_retries;    /* default 4 */
    int list_page_size; /* keys per listing page (max-keys); 0: 1000 */
} s3_config;

/* Fills cfg from url and the environment (above). SERR_INVALID naming
 * what is wrong (no bucket, a bad endpoint, a prefix too long, missing
 * credentials). */
int s3_config_from_url(const char *url, s3_config *cfg, strata_error *err);

typedef struct s3_client s3_client;

/* NULL with err set on failure. Makes no request. */
s3_client *s3_client_new(const s3_config *cfg, strata_error *err);
void s3_client_free(s3_client *c);
const s3_config *s3_client_config(const s3_client *c);

/* One signed request that touches nothing (ListObjectsV2 of the prefix,
 * max-keys=1): 0 when the bucket answers to these credentials; otherwise
 * the cause in err (SERR_UNAVAILABLE "SignatureDoesNotMatch: ...",
 * "InvalidAccessKeyId: ...", "NoSuchBucket: ...", "cannot connect ..."). */
int s3_check(s3_client *c, strata_error *err);

typedef struct s3_meta {
    const char *name; /* after "x-amz-meta-", lower case [a-z0-9-] */
    const char *value;
} s3_meta;

typedef struct s3_put_opts {
    bool if_none_match;   /* If-None-Match: * (SERR_PRECONDITION when it exists) */
    const char *if_match; /* If-Match: ETAG, or NULL */
    const char *content_type;
    const s3_meta *meta; /* n_meta user metadata headers */
    int n_meta;
} s3_put_opts;

typedef struct s3_object_info {
    uint64_t size;    /* the whole object's size (also for a range) */
    int64_t mtime_ms; /* Last-Modified, ms since the epoch */
    char etag[S3_ETAG_MAX];
    int n_meta; /* x-amz-meta-* received (HEAD and GET), names lower case */
    char meta_name[S3_META_MAX][64];
    char meta_value[S3_META_MAX][256];
} s3_object_info;

/* PUT of a whole object from memory (signed payload hash). opts may be
 * NULL. etag_out (S3_ETAG_MAX) may be NULL. */
int s3_put(s3_client *c, const char *key, const void *data, size_t len, const s3_put_opts *opts,
           char *etag_out, strata_error *err);

/* GET of bytes [offset, offset+len) (len 0: to the end) appended to out;
 * SERR_TOO_LARGE when more than max_len bytes would be appended. info
 * may be NULL. A range past the end appends nothing and returns 0. */
int s3_get(s3_client *c, const char *key, uint64_t offset, uint64_t len, size_t max_len,
           strata_buf *out, s3_object_info *info, strata_error *err);

/* HEAD: size, mtime, etag, metadata; SERR_NOT_FOUND when absent. */
int s3_head(s3_client *c, const char *key, s3_object_info *info, strata_error *err);

/* DELETE; deleting a missing key succeeds (as S3 does). */
int s3_delete(s3_client *c, const char *key, strata_error *err);
/* DELETE while the object's ETag is still etag (If-Match):
 * SERR_PRECONDITION when it changed. A server that ignores If-Match on
 * DELETE (not AWS, not versitygw) deletes unconditionally. */
int s3_delete_if_match(s3_client *c, const char *key, const char *etag, strata_error *err);

/* Server-side copy src -> dst (CopyObject, objects up to 5 GiB). With
 * replace_meta the copy takes opts' metadata (a copy onto itself with
 * replace_meta restarts its Last-Modified: how a blob is touched). */
int s3_copy(s3_client *c, const char *src_key, const char *dst_key, bool replace_meta,
            const s3_put_opts *opts, strata_error *err);

/* Called for each object under key_prefix (relative to the client's
 * prefix; key given relative too); non-zero stops the listing. */
typedef int (*s3_list_fn)(void *ctx, const char *key, uint64_t size, int64_t mtime_ms);
/* ListObjectsV2, all pages. */
int s3_list(s3_client *c, const char *key_prefix, s3_list_fn fn, void *ctx, strata_error *err);

/* Multipart upload. Parts are numbered from 1; every part but the last
 * must hold at least S3_PART_MIN bytes. */
#define S3_PART_MIN (5u << 20)
int s3_mpu_begin(s3_client *c, const char *key, const s3_put_opts *opts,
                 char upload_id[S3_UPLOAD_ID_MAX], strata_error *err);
int s3_mpu_part(s3_client *c, const char *key, const char *upload_id, int part_no, const void *data,
                size_t len, char etag_out[S3_ETAG_MAX], strata_error *err);
/* etags[i] is part i+1's ETag. */
int s3_mpu_complete(s3_client *c, const char *key, const char *upload_id, int n_parts,
                    char (*etags)[S3_ETAG_MAX], strata_error *err);
int s3_mpu_abort(s3_client *c, const char *key, const char *upload_id, strata_error *err);
/* Lists unfinished uploads under key_prefix (for collecting those a crash
 * left): fn(ctx, key, upload_id, initiated_ms). */
typedef int (*s3_upload_fn)(void *ctx, const char *key, const char *upload_id,
                            int64_t initiated_ms);
int s3_mpu_list(s3_client *c, const char *key_prefix, s3_upload_fn fn, void *ctx,
                strata_error *err);

#endif
