/* AWS Signature Version 4 for S3, over a canonical request built here
 * (not by libcurl: Debian 12's curl 7.88 signs unsorted queries, "?uploads"
 * and unencoded paths wrongly and never sends x-amz-content-sha256).
 *
 *   canonical request = METHOD \n URI \n QUERY \n HEADERS \n \n SIGNED \n PAYLOAD_HASH
 *   string to sign    = "AWS4-HMAC-SHA256" \n DATE \n SCOPE \n hex(SHA-256(canonical))
 *   signing key       = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, YYYYMMDD), region), "s3"),
 *                            "aws4_request")
 *
 * S3 encodes the path once (not twice as other services do): every byte
 * outside A-Za-z0-9-._~ becomes %XX (upper-case hex), '/' kept. Query
 * names and values are encoded the same way ('/' too), sorted by name
 * then value, and a parameter without '=' ("uploads") becomes "uploads=".
 *
 * All functions are pure (thread-safe, no global state) and bound their
 * output: on failure they return -1 with err set (err may be NULL) and
 * leave nothing the caller must free. */
#ifndef STRATA_S3_SIGV4_H
#define STRATA_S3_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "../common/buf.h"
#include "../common/error.h"

#define S3_SIGV4_DATE_LEN    16 /* "YYYYMMDDTHHMMSSZ" */
#define S3_SIGV4_HASH_HEX    64
#define S3_SIGV4_MAX_HEADERS 32
#define S3_SIGV4_MAX_PARAMS  32
#define S3_SIGV4_CANON_MAX   (64u << 10) /* bound of a canonical request */
#define S3_SIGV4_AUTH_MAX    1024        /* room for an Authorization value */

/* SHA-256 of the empty payload, in hex. */
#define S3_SIGV4_EMPTY_HASH "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

typedef struct s3_sigv4_header {
    const char *name; /* any case; lower-cased when signed */
    const char *value;
} s3_sigv4_header;

typedef struct s3_sigv4_request {
    const char *method; /* "GET", "PUT", ... */
    const char *path;   /* decoded absolute path ("/bucket/a key"); encoded when signed */
    const char *query;  /* query as sent, without '?' (may be NULL): see s3_sigv4_canonical_query */
    const s3_sigv4_header *headers; /* every header to sign: host and x-amz-date among them */
    int n_headers;
    const char *payload_hash; /* hex SHA-256 of the body (also sent as x-amz-content-sha256) */
} s3_sigv4_request;

typedef struct s3_sigv4_creds {
    const char *access_key;
    const char *secret_key;
    const char *region;
    const char *service; /* NULL: "s3" */
} s3_sigv4_creds;

/* Percent-encodes len bytes of in into out (cap bytes, NUL-terminated):
 * every byte outside A-Za-z0-9-._~ as %XX, '/' kept when keep_slash.
 * Returns the length written, or -1 when it does not fit in cap. */
long s3_sigv4_uri_encode(const void *in, size_t len, bool keep_slash, char *out, size_t cap);

/* The canonical form of a query string: each parameter split at its first
 * '=' (none: an empty value), %XX sequences decoded, name and value
 * re-encoded strictly ('+' is a literal plus), the pairs sorted by name then
 * value and joined with '&'. A string the client built from encoded pairs
 * is its own canonical form, so the same text is sent and signed.
 * SERR_INVALID for more than S3_SIGV4_MAX_PARAMS parameters or a bad %
 * escape; SERR_TOO_LARGE when out (cap bytes) is too small. */
int s3_sigv4_canonical_query(const char *query, char *out, size_t cap, strata_error *err);

/* Appends the canonical request to out (a fresh or reset buffer) and writes
 * the signed header list ("host;x-amz-date") into signed_headers
 * (signed_cap bytes). Header names are lower-cased and sorted, values
 * trimmed with inner runs of spaces made one. SERR_INVALID for a missing
 * method/path/hash, a duplicate header name, a value with CR or LF, too
 * many headers; SERR_TOO_LARGE past S3_SIGV4_CANON_MAX or signed_cap. */
int s3_sigv4_canonical_request(const s3_sigv4_request *rq, strata_buf *out, char *signed_headers,
                               size_t signed_cap, strata_error *err);

/* The string to sign for a canonical request, appended to out.
 * amz_date is "YYYYMMDDTHHMMSSZ". */
int s3_sigv4_string_to_sign(const char *amz_date, const char *region, const char *service,
                            const void *canonical, size_t canonical_len, strata_buf *out,
                            strata_error *err);

/* The signing key for a day ("YYYYMMDD", or the amz_date: its first 8). */
int s3_sigv4_signing_key(const char *secret_key, const char *date, const char *region,
                         const char *service, unsigned char key[32], strata_error *err);

/* The Authorization header value ("AWS4-HMAC-SHA256 Credential=...,
 * SignedHeaders=...,Signature=...") for rq, whose headers must hold
 * x-amz-date (the time signed). sig_hex (65 bytes) may be NULL; it gets the
 * signature alone. */
int s3_sigv4_authorization(const s3_sigv4_request *rq, const s3_sigv4_creds *creds, char *out,
                           size_t cap, char *sig_hex, strata_error *err);

/* "YYYYMMDDTHHMMSSZ" for t (UTC); out has room for S3_SIGV4_DATE_LEN + 1. */
void s3_sigv4_amz_date(time_t t, char *out);

/* Lower-case hex SHA-256 of data (out: S3_SIGV4_HASH_HEX + 1 bytes). */
int s3_sigv4_sha256_hex(const void *data, size_t len, char *out, strata_error *err);

#endif
