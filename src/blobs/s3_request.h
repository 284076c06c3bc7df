/* Inside the S3 client (s3_client.h): one signed request and its answer.
 * s3_request.c owns the client (its configuration and its pool of curl
 * handles) and sends a request with signing, retries, backoff and the
 * operation's deadline; s3_response.c reads an answer (headers, a body
 * into the caller's buffer or a bounded one, an <Error> body) and maps an
 * unexpected one to a strata_error. The operations (s3_client.c,
 * s3_list.c) fill an s3_request, call s3_perform, and read the
 * s3_response.
 *
 * Thread safety: s3_perform may be called on one client from any number
 * of threads at once; an s3_request and its s3_response belong to the
 * calling thread. The other functions touch only their arguments. */
#ifndef STRATA_S3_REQUEST_H
#define STRATA_S3_REQUEST_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/error.h"
#include "s3_client.h"

#define S3_SIGNED_MAX 24 /* signed headers of a request, the 4 always sent included */

typedef struct s3_hdr {
    const char *name;
    const char *value;
} s3_hdr;

typedef struct s3_request {
    const char *method; /* GET HEAD PUT POST DELETE */
    const char *op;     /* names the operation in errors */
    const char *key;    /* relative key; NULL: the bucket itself */
    const char *query;  /* built with s3_build_query, or NULL */
    s3_hdr extra[S3_SIGNED_MAX - 4];
    int n_extra;
    bool upload; /* sends body (possibly empty) */
    const void *body;
    size_t body_len;
    const char *body_hash; /* NULL: computed */
    /* GET: appended to sink (at most sink_max bytes); NULL: held in resp.body */
    strata_buf *sink;
    size_t sink_max;
    bool ranged; /* asked for [off, off+len) (len 0: to the end) */
    uint64_t off, len;
    size_t body_cap;   /* bound of resp.body; 0: 64 KiB */
    bool error_in_200; /* CopyObject, CompleteMultipartUpload: 200 may carry <Error> */
} s3_request;

typedef struct s3_response {
    CURL *h;
    long status;
    int attempts;
    /* from the headers */
    bool have_len, have_total;
    uint64_t content_length, total;
    int64_t mtime_ms;
    char etag[S3_ETAG_MAX];
    int n_meta;
    char meta_name[S3_META_MAX][64];
    char meta_value[S3_META_MAX][256];
    /* body */
    char *body;
    size_t body_len, body_cap;
    bool overflow;
    strata_buf *sink;
    size_t sink_start, sink_max;
    bool ranged;
    uint64_t off, len, pos;
    bool too_large, sink_failed;
    bool reserved; /* the sink was sized from Content-Length */
    char sink_detail[STRATA_ERR_DETAIL_MAX];
    char code[64]; /* an S3 error code from the body */
    char message[160];
    char curl_err[CURL_ERROR_SIZE];
} s3_response;

/* ---- s3_request.c ---------------------------------------------------------- */

/* Sends rq, retrying dropped connections, 5xx and SlowDown-like codes with
 * jittered exponential backoff within cfg.timeout_ms. Returns 0 when an
 * HTTP answer arrived (any status: rs->status, with rs->code/message for
 * an error body), -1 with err set when none did, the sink refused the body
 * (SERR_TOO_LARGE, SERR_NOMEM), or retries ran out on a 5xx
 * (SERR_UNAVAILABLE). rs is filled either way and must be released with
 * s3_response_free; on -1 nothing stays appended to rq->sink. */
int s3_perform(s3_client *c, const s3_request *rq, s3_response *rs, strata_error *err);

/* "/BUCKET[/PREFIXKEY]" (decoded; key NULL: the bucket) into out (cap
 * bytes). SERR_INVALID when it does not fit. */
int s3_object_path(const s3_client *c, const char *key, char *out, size_t cap, strata_error *err);

/* Encodes n name=value pairs (value NULL: "name=") into a sorted canonical
 * query in out (cap bytes). SERR_INVALID when it does not fit, SERR_NOMEM. */
int s3_build_query(const char *const pairs[][2], int n, char *out, size_t cap, strata_error *err);

/* ---- s3_response.c --------------------------------------------------------- */

/* Clears what one attempt of rq fills in rs and points rs at rq's sink,
 * range and bounds (rs->body, if any, is kept and emptied). */
void s3_response_start(s3_response *rs, const s3_request *rq);

/* libcurl's header and write callbacks (ud: the s3_response). The header
 * callback keeps ETag, Content-Length, Content-Range's total,
 * Last-Modified and x-amz-meta-*; the write callback appends a 2xx body to
 * the sink within its bound (too_large or sink_failed set, and the
 * transfer stopped, when it cannot) and keeps any other body up to
 * body_cap (overflow set past it). */
size_t s3_response_on_header(char *p, size_t size, size_t nmemb, void *ud);
size_t s3_response_on_body(char *p, size_t size, size_t nmemb, void *ud);

/* Releases rs's body (safe to call twice). */
void s3_response_free(s3_response *rs);

/* Fills rs->code and rs->message from an <Error> body (empty when there is
 * none; a long message is cut). */
void s3_parse_error_body(s3_response *rs);

/* Sets err for an answer the operation did not expect and returns -1:
 * SERR_UNAVAILABLE for credentials, bucket or server trouble,
 * SERR_NOT_FOUND for a 404 naming a missing object, SERR_PRECONDITION for
 * a lost condition, SERR_IO otherwise; the detail holds the S3 code and
 * message, the operation, the key and the status. */
int s3_answer_error(const s3_request *rq, s3_response *rs, strata_error *err);

/* The decimal [s, s+len) (1-20 digits, no sign) into *out: false when it
 * is not one or overflows (*out then untouched). */
bool s3_parse_u64(const char *s, size_t len, uint64_t *out);

#endif
