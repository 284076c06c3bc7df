/* Reading an S3 answer (s3_request.h): the headers an operation uses, a
 * body appended into the caller's buffer within its bound (or, for error
 * bodies and small answers, held up to a fixed bound), the S3 error code
 * and message of an <Error> body, and the strata_error an unexpected
 * answer becomes. */
#include "s3_request.h"
#include "s3_xml.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void s3_response_free(s3_response *rs)
{
    free(rs->body);
    rs->body = NULL;
}

/* Forgets the headers read so far (a new answer begins). */
static void reset_headers(s3_response *rs)
{
    rs->have_len = rs->have_total = false;
    rs->content_length = rs->total = 0;
    rs->mtime_ms = 0;
    rs->etag[0] = '\0';
    rs->n_meta = 0;
}

void s3_response_start(s3_response *rs, const s3_request *rq)
{
    reset_headers(rs);
    rs->status = 0;
    rs->body_len = 0;
    if (rs->body != NULL)
        rs->body[0] = '\0';
    rs->overflow = rs->too_large = rs->sink_failed = false;
    rs->code[0] = rs->message[0] = '\0';
    rs->sink = rq->sink;
    rs->sink_start = rq->sink != NULL ? rq->sink->len : 0;
    rs->sink_max = rq->sink_max;
    rs->ranged = rq->ranged;
    rs->off = rq->off;
    rs->len = rq->len;
    rs->pos = 0;
    rs->reserved = false;
}

bool s3_parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 20)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

size_t s3_response_on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    s3_response *rs = ud;
    size_t n = size * nmemb;
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        reset_headers(rs); /* a new answer (after a 100 Continue, say) */
        return n;
    }
    const char *colon = memchr(p, ':', n);
    if (colon == NULL)
        return n;
    size_t nlen = (size_t)(colon - p);
    const char *v = colon + 1, *end = p + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vlen = (size_t)(end - v);
    char val[512];
    if (vlen >= sizeof val)
        vlen = sizeof val - 1; /* no header we read is longer */
    memcpy(val, v, vlen);
    val[vlen] = '\0';
#define IS(name) (nlen == sizeof name - 1 && strncasecmp(p, name, nlen) == 0)
    if (IS("etag")) {
        if (vlen < sizeof rs->etag)
            memcpy(rs->etag, val, vlen + 1);
    } else if (IS("content-length")) {
        rs->have_len = s3_parse_u64(val, vlen, &rs->content_length);
    } else if (IS("content-range")) {
        const char *slash = strrchr(val, '/');
        if (slash != NULL)
            rs->have_total = s3_parse_u64(slash + 1, strlen(slash + 1), &rs->total);
    } else if (IS("last-modified")) {
        time_t t = curl_getdate(val, NULL);
        if (t != (time_t)-1)
            rs->mtime_ms = (int64_t)t * 1000;
    } else if (nlen > 11 && nlen - 11 < 64 && strncasecmp(p, "x-amz-meta-", 11) == 0 &&
               rs->n_meta < S3_META_MAX && vlen < 256) {
        char *name = rs->meta_name[rs->n_meta];
        for (size_t i = 0; i < nlen - 11; i++)
            name[i] = (char)tolower((unsigned char)p[11 + i]);
        name[nlen - 11] = '\0';
        memcpy(rs->meta_value[rs->n_meta], val, vlen + 1);
        rs->n_meta++;
    }
#undef IS
    return n;
}

size_t s3_response_on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    s3_response *rs = ud;
    size_t n = size * nmemb;
    long status = 0;
    curl_easy_getinfo(rs->h, CURLINFO_RESPONSE_CODE, &status);
    if (rs->sink != NULL && status >= 200 && status < 300) {
        const char *d = p;
        size_t m = n;
        if (!rs->reserved && rs->have_len) {
            /* one allocation of the announced size (within the bound) */
            rs->reserved = true;
            uint64_t want = rs->content_length;
            if (status == 200 && rs->ranged && rs->len > 0 && rs->len < want)
                want = rs->len;
            if (want > 0 && want <= rs->sink_max) {
                /* capped for the call so that the buffer is not doubled past it */
                size_t cap = rs->sink->cap;
                if (cap == 0 || cap - rs->sink->len > want)
                    rs->sink->cap = rs->sink->len + (size_t)want;
                sbuf_reserve(rs->sink, (size_t)want, NULL);
                rs->sink->cap = cap;
            }
        }
        if (status == 200 && rs->ranged) {
            /* the server ignored Range: keep [off, off+len) of the whole */
            uint64_t pos = rs->pos, stop = rs->len > 0 ? rs->off + rs->len : UINT64_MAX;
            rs->pos += n;
            if (pos + m <= rs->off || pos >= stop)
                return n;
            if (pos < rs->off) {
                d += rs->off - pos;
                m -= (size_t)(rs->off - pos);
                pos = rs->off;
            }
            if (pos + m > stop)
                m = (size_t)(stop - pos);
        }
        if (rs->sink->len - rs->sink_start + m > rs->sink_max) {
            rs->too_large = true;
            return 0; /* aborts the transfer */
        }
        strata_error e;
        if (sbuf_append(rs->sink, d, m, &e) != 0) {
            rs->sink_failed = true;
            snprintf(rs->sink_detail, sizeof rs->sink_detail, "%s", e.detail);
            return 0;
        }
        return n;
    }
    /* an error body or a small answer: kept up to its bound, the rest read
     * and dropped (so that the connection stays usable) */
    if (rs->body == NULL) {
        rs->body = malloc(rs->body_cap + 1);
        if (rs->body == NULL) {
            rs->sink_failed = true;
            snprintf(rs->sink_detail, sizeof rs->sink_detail, "out of memory for an S3 answer");
            return 0;
        }
        rs->body_len = 0;
    }
    size_t room = rs->body_cap - rs->body_len, m = n;
    if (m > room) {
        m = room;
        rs->overflow = true;
    }
    memcpy(rs->body + rs->body_len, p, m);
    rs->body_len += m;
    rs->body[rs->body_len] = '\0';
    return n;
}

void s3_parse_error_body(s3_response *rs)
{
    rs->code[0] = rs->message[0] = '\0';
    if (rs->body == NULL)
        return;
    const char *end = rs->body + rs->body_len;
    if (s3_xml_get(rs->body, end, "Code", rs->code, sizeof rs->code) != 0)
        rs->code[0] = '\0';
    const char *t;
    size_t len;
    if (s3_xml_find(rs->body, end, "Message", &t, &len) != NULL) {
        /* a long message is cut rather than lost */
        while (len > 0 && s3_xml_text(t, len, rs->message, sizeof rs->message) != 0)
            len = len > sizeof rs->message - 8 ? sizeof rs->message - 8 : len - 1;
    }
}

/* Codes that blame the credentials, the account or the bucket rather than
 * the object: the store is unusable, whatever the status. */
static bool auth_code(const char *code)
{
    static const char *const codes[] = {
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "AccessDenied",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
        "MissingSecurityHeader",
        "RequestTimeTooSkewed",
        "InvalidSecurity",
        "AccountProblem",
        "NoSuchBucket",
        "PermanentRedirect",
        "AllAccessDisabled",
        "InvalidBucketName",
        "XAdminUserNotFound", /* versitygw: an unknown access key, with a 404 */
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(code, codes[i]) == 0)
            return true;
    return false;
}

int s3_answer_error(const s3_request *rq, s3_response *rs, strata_error *err)
{
    const char *what = rq->key != NULL ? rq->key : "(bucket)";
    if (rs->code[0] == '\0')
        s3_parse_error_body(rs);
    const char *code = rs->code[0] != '\0' ? rs->code : NULL;
    const char *msg = rs->message[0] != '\0' ? rs->message : "no error message";
    enum strata_err_kind kind = SERR_IO;
    /* a 404 names a missing object only with one of these codes (or none,
     * as a HEAD answer has no body): a missing bucket or user is not a
     * missing object */
    bool missing = code == NULL || strcmp(code, "NoSuchKey") == 0 ||
                   strcmp(code, "NoSuchUpload") == 0 || strcmp(code, "NoSuchVersion") == 0 ||
                   strcmp(code, "NotFound") == 0;
    if (code != NULL && auth_code(code))
        kind = SERR_UNAVAILABLE;
    else if (rs->status == 404 && missing)
        kind = SERR_NOT_FOUND;
    else if (rs->status == 412 || (code != NULL && strcmp(code, "ConditionalRequestConflict") == 0))
        kind = SERR_PRECONDITION;
    else if (rs->status == 401 || rs->status == 403 || rs->status >= 500)
        kind = SERR_UNAVAILABLE;
    if (code == NULL) {
        code = rs->status == 404   ? "NotFound"
               : rs->status == 412 ? "PreconditionFailed"
               : rs->status == 403 ? "Forbidden"
                                   : "UnexpectedAnswer";
    }
    return serr_set(err, kind, "%s: %.150s (S3 %s %.60s, HTTP %ld)", code, msg, rq->op, what,
                    rs->status);
}
