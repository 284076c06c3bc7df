#include "s3_sigv4.h"

#include "../codec/sha256.h"
#include "../common/hex.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NAME_MAX_LEN 128 /* a header name */

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

long s3_sigv4_uri_encode(const void *in, size_t len, bool keep_slash, char *out, size_t cap)
{
    static const char digits[] = "0123456789ABCDEF";
    const unsigned char *p = in;
    size_t n = 0;
    if (cap == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = p[i];
        if (unreserved(c) || (keep_slash && c == '/')) {
            if (n + 1 >= cap)
                return -1;
            out[n++] = (char)c;
        } else {
            if (n + 3 >= cap)
                return -1;
            out[n++] = '%';
            out[n++] = digits[c >> 4];
            out[n++] = digits[c & 15];
        }
    }
    out[n] = '\0';
    return (long)n;
}

/* Decodes %XX in [s, s+len) into out (cap bytes, not NUL-terminated);
 * returns the decoded length or -1 on a bad escape or no room. */
static long pct_decode(const char *s, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= len)
                return -1;
            int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (n >= cap)
            return -1;
        out[n++] = c;
    }
    return (long)n;
}

typedef struct qparam {
    char *name;
    char *value;
} qparam;

static int qparam_cmp(const void *a, const void *b)
{
    const qparam *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c != 0 ? c : strcmp(x->value, y->value);
}

/* Decodes then strictly re-encodes [s, s+len) into a fresh string. */
static char *reencode(const char *s, size_t len, strata_error *err)
{
    char *dec = malloc(len + 1);
    size_t cap = 3 * len + 1;
    char *enc = malloc(cap);
    long n = -1;
    if (dec == NULL || enc == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory for a query parameter");
        goto fail;
    }
    n = pct_decode(s, len, dec, len + 1);
    if (n < 0) {
        serr_set(err, SERR_INVALID, "a bad %% escape in the query parameter \"%.*s\"",
                 (int)(len > 64 ? 64 : len), s);
        goto fail;
    }
    if (s3_sigv4_uri_encode(dec, (size_t)n, false, enc, cap) < 0) {
        serr_set(err, SERR_INTERNAL, "query parameter encoding overflowed");
        goto fail;
    }
    free(dec);
    return enc;
fail:
    free(dec);
    free(enc);
    return NULL;
}

int s3_sigv4_canonical_query(const char *query, char *out, size_t cap, strata_error *err)
{
    qparam params[S3_SIGV4_MAX_PARAMS];
    int n = 0, rc = -1;
    if (cap == 0)
        return serr_set(err, SERR_TOO_LARGE, "no room for the canonical query");
    out[0] = '\0';
    if (query == NULL || query[0] == '\0')
        return 0;
    const char *p = query;
    while (*p != '\0') {
        const char *amp = strchr(p, '&');
        size_t len = amp != NULL ? (size_t)(amp - p) : strlen(p);
        if (len > 0) {
            if (n == S3_SIGV4_MAX_PARAMS) {
                serr_set(err, SERR_INVALID, "more than %d query parameters", S3_SIGV4_MAX_PARAMS);
                goto done;
            }
            const char *eq = memchr(p, '=', len);
            size_t nlen = eq != NULL ? (size_t)(eq - p) : len;
            params[n].name = reencode(p, nlen, err);
            params[n].value = NULL;
            if (params[n].name == NULL)
                goto done;
            n++;
            params[n - 1].value =
                eq != NULL ? reencode(eq + 1, len - nlen - 1, err) : reencode("", 0, err);
            if (params[n - 1].value == NULL)
                goto done;
        }
        if (amp == NULL)
            break;
        p = amp + 1;
    }
    qsort(params, (size_t)n, sizeof params[0], qparam_cmp);
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        int w = snprintf(out + used, cap - used, "%s%s=%s", i > 0 ? "&" : "", params[i].name,
                         params[i].value);
        if (w < 0 || (size_t)w >= cap - used) {
            out[0] = '\0';
            serr_set(err, SERR_TOO_LARGE, "the canonical query exceeds %zu bytes", cap - 1);
            goto done;
        }
        used += (size_t)w;
    }
    rc = 0;
done:
    for (int i = 0; i < n; i++) {
        free(params[i].name);
        free(params[i].value);
    }
    return rc;
}

typedef struct canon_header {
    char name[NAME_MAX_LEN];
    const char *value;
} canon_header;

static int canon_header_cmp(const void *a, const void *b)
{
    return strcmp(((const canon_header *)a)->name, ((const canon_header *)b)->name);
}

/* Appends value trimmed, with runs of spaces and tabs made one space. */
static int append_trimmed(strata_buf *out, const char *v, strata_error *err)
{
    size_t len = strlen(v);
    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    size_t i = 0;
    while (i < len && (v[i] == ' ' || v[i] == '\t'))
        i++;
    bool space = false;
    for (; i < len; i++) {
        if (v[i] == ' ' || v[i] == '\t') {
            space = true;
            continue;
        }
        if (space && sbuf_append(out, " ", 1, err) != 0)
            return -1;
        space = false;
        if (sbuf_append(out, &v[i], 1, err) != 0)
            return -1;
    }
    return 0;
}

static int append_str(strata_buf *out, const char *s, strata_error *err)
{
    return sbuf_append(out, s, strlen(s), err);
}

int s3_sigv4_canonical_request(const s3_sigv4_request *rq, strata_buf *out, char *signed_headers,
                               size_t signed_cap, strata_error *err)
{
    canon_header hs[S3_SIGV4_MAX_HEADERS];
    if (rq == NULL || rq->method == NULL || rq->path == NULL || rq->path[0] != '/' ||
        rq->payload_hash == NULL)
        return serr_set(err, SERR_INVALID, "a request to sign needs a method, a path, a hash");
    if (rq->n_headers < 0 || rq->n_headers > S3_SIGV4_MAX_HEADERS ||
        (rq->n_headers > 0 && rq->headers == NULL))
        return serr_set(err, SERR_INVALID, "%d headers to sign (at most %d)", rq->n_headers,
                        S3_SIGV4_MAX_HEADERS);
    for (int i = 0; i < rq->n_headers; i++) {
        const char *name = rq->headers[i].name, *value = rq->headers[i].value;
        size_t len = name != NULL ? strlen(name) : 0;
        if (len == 0 || len >= NAME_MAX_LEN || value == NULL)
            return serr_set(err, SERR_INVALID,
                            "a header to sign has no name, a long one or no value");
        for (size_t k = 0; k <= len; k++)
            hs[i].name[k] = (char)tolower((unsigned char)name[k]);
        if (strpbrk(value, "\r\n") != NULL || strpbrk(hs[i].name, " :\t\r\n") != NULL)
            return serr_set(err, SERR_INVALID, "the header %s has a bad name or a line break",
                            hs[i].name);
        hs[i].value = value;
    }
    qsort(hs, (size_t)rq->n_headers, sizeof hs[0], canon_header_cmp);
    for (int i = 1; i < rq->n_headers; i++)
        if (strcmp(hs[i - 1].name, hs[i].name) == 0)
            return serr_set(err, SERR_INVALID, "the header %s appears twice", hs[i].name);

    size_t plen = strlen(rq->path);
    size_t ecap = 3 * plen + 1;
    if (ecap > S3_SIGV4_CANON_MAX)
        return serr_set(err, SERR_TOO_LARGE, "a path of %zu bytes is too long to sign", plen);
    char *path = malloc(ecap);
    char *query = malloc(S3_SIGV4_CANON_MAX);
    int rc = -1;
    size_t cap0 = out->cap;
    if (path == NULL || query == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory for a canonical request");
        goto done;
    }
    s3_sigv4_uri_encode(rq->path, plen, true, path, ecap);
    if (s3_sigv4_canonical_query(rq->query, query, S3_SIGV4_CANON_MAX, err) != 0)
        goto done;
    /* the canonical request is bounded whatever the caller's buffer allows */
    if (out->cap == 0 || out->cap > out->len + S3_SIGV4_CANON_MAX)
        out->cap = out->len + S3_SIGV4_CANON_MAX;
    if (append_str(out, rq->method, err) || append_str(out, "\n", err) ||
        append_str(out, path, err) || append_str(out, "\n", err) || append_str(out, query, err) ||
        append_str(out, "\n", err))
        goto done;
    size_t sused = 0;
    if (signed_cap > 0)
        signed_headers[0] = '\0';
    for (int i = 0; i < rq->n_headers; i++) {
        if (append_str(out, hs[i].name, err) || append_str(out, ":", err) ||
            append_trimmed(out, hs[i].value, err) || append_str(out, "\n", err))
            goto done;
        int w = snprintf(signed_headers + sused, signed_cap - sused, "%s%s", i > 0 ? ";" : "",
                         hs[i].name);
        if (w < 0 || (size_t)w >= signed_cap - sused) {
            serr_set(err, SERR_TOO_LARGE, "no room for the signed header list");
            goto done;
        }
        sused += (size_t)w;
    }
    if (append_str(out, "\n", err) || append_str(out, signed_headers, err) ||
        append_str(out, "\n", err) || append_str(out, rq->payload_hash, err))
        goto done;
    rc = 0;
done:
    out->cap = cap0;
    free(path);
    free(query);
    return rc;
}

int s3_sigv4_sha256_hex(const void *data, size_t len, char *out, strata_error *err)
{
    unsigned char d[SHA256_LEN];
    if (sha256_oneshot(data, len, d, err) != 0)
        return -1;
    sha256_to_hex(d, out);
    return 0;
}

static bool valid_amz_date(const char *d)
{
    if (d == NULL || strlen(d) != S3_SIGV4_DATE_LEN || d[8] != 'T' || d[15] != 'Z')
        return false;
    for (int i = 0; i < 15; i++)
        if (i != 8 && !isdigit((unsigned char)d[i]))
            return false;
    return true;
}

int s3_sigv4_string_to_sign(const char *amz_date, const char *region, const char *service,
                            const void *canonical, size_t canonical_len, strata_buf *out,
                            strata_error *err)
{
    char hash[S3_SIGV4_HASH_HEX + 1];
    char head[256];
    if (!valid_amz_date(amz_date) || region == NULL || service == NULL)
        return serr_set(err, SERR_INVALID, "a bad date, region or service to sign with");
    if (s3_sigv4_sha256_hex(canonical, canonical_len, hash, err) != 0)
        return -1;
    int w = snprintf(head, sizeof head, "AWS4-HMAC-SHA256\n%s\n%.8s/%s/%s/aws4_request\n", amz_date,
                     amz_date, region, service);
    if (w < 0 || (size_t)w >= sizeof head)
        return serr_set(err, SERR_INVALID, "the region or service is too long");
    if (sbuf_append(out, head, (size_t)w, err) != 0 ||
        sbuf_append(out, hash, S3_SIGV4_HASH_HEX, err) != 0)
        return -1;
    return 0;
}

static int hmac(const void *key, size_t key_len, const void *data, size_t len,
                unsigned char out[32], strata_error *err)
{
    unsigned int n = 0;
    if (HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &n) == NULL || n != 32)
        return serr_set(err, SERR_INTERNAL, "HMAC-SHA256 failed");
    return 0;
}

int s3_sigv4_signing_key(const char *secret_key, const char *date, const char *region,
                         const char *service, unsigned char key[32], strata_error *err)
{
    char k0[4 + 256];
    if (secret_key == NULL || date == NULL || region == NULL || service == NULL || strlen(date) < 8)
        return serr_set(err, SERR_INVALID, "a signing key needs a secret, a date, a region");
    size_t slen = strlen(secret_key);
    if (slen > 256)
        return serr_set(err, SERR_INVALID, "the secret key is longer than 256 bytes");
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret_key, slen);
    unsigned char a[32], b[32];
    int rc = -1;
    if (hmac(k0, 4 + slen, date, 8, a, err) == 0 &&
        hmac(a, 32, region, strlen(region), b, err) == 0 &&
        hmac(b, 32, service, strlen(service), a, err) == 0 &&
        hmac(a, 32, "aws4_request", 12, key, err) == 0)
        rc = 0;
    OPENSSL_cleanse(k0, sizeof k0);
    OPENSSL_cleanse(a, sizeof a);
    OPENSSL_cleanse(b, sizeof b);
    return rc;
}

int s3_sigv4_authorization(const s3_sigv4_request *rq, const s3_sigv4_creds *creds, char *out,
                           size_t cap, char *sig_hex, strata_error *err)
{
    const char *date = NULL;
    if (rq == NULL || creds == NULL || creds->access_key == NULL || creds->secret_key == NULL ||
        creds->region == NULL)
        return serr_set(err, SERR_INVALID, "signing needs a request and credentials");
    const char *service = creds->service != NULL ? creds->service : "s3";
    for (int i = 0; i < rq->n_headers && rq->headers != NULL; i++)
        if (rq->headers[i].name != NULL && strcasecmp(rq->headers[i].name, "x-amz-date") == 0)
            date = rq->headers[i].value;
    if (!valid_amz_date(date))
        return serr_set(err, SERR_INVALID, "the request to sign has no valid x-amz-date header");

    strata_buf canon, sts;
    char signed_headers[S3_SIGV4_MAX_HEADERS * NAME_MAX_LEN];
    unsigned char key[32], sig[32];
    char hex[S3_SIGV4_HASH_HEX + 1];
    int rc = -1;
    sbuf_init(&canon, S3_SIGV4_CANON_MAX);
    sbuf_init(&sts, 1024);
    if (s3_sigv4_canonical_request(rq, &canon, signed_headers, sizeof signed_headers, err) != 0 ||
        s3_sigv4_string_to_sign(date, creds->region, service, canon.data, canon.len, &sts, err) !=
            0 ||
        s3_sigv4_signing_key(creds->secret_key, date, creds->region, service, key, err) != 0 ||
        hmac(key, sizeof key, sts.data, sts.len, sig, err) != 0)
        goto done;
    hex_encode(sig, sizeof sig, hex);
    int w = snprintf(out, cap,
                     "AWS4-HMAC-SHA256 Credential=%s/%.8s/%s/%s/aws4_request,"
                     "SignedHeaders=%s,Signature=%s",
                     creds->access_key, date, creds->region, service, signed_headers, hex);
    if (w < 0 || (size_t)w >= cap) {
        serr_set(err, SERR_TOO_LARGE, "no room for the Authorization header");
        goto done;
    }
    if (sig_hex != NULL)
        memcpy(sig_hex, hex, sizeof hex);
    rc = 0;
done:
    OPENSSL_cleanse(key, sizeof key);
    sbuf_free(&canon);
    sbuf_free(&sts);
    return rc;
}

void s3_sigv4_amz_date(time_t t, char *out)
{
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL ||
        strftime(out, S3_SIGV4_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm) != S3_SIGV4_DATE_LEN)
        snprintf(out, S3_SIGV4_DATE_LEN + 1, "19700101T000000Z");
}
