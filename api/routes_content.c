/* GET/HEAD /{type}/{id}/versions/{version}/content: a version's content,
 * streamed from the blob store in bounded memory (versions.h,
 * content_stream), with a single byte range (RFC 9110 section 14: Range,
 * If-Range, 206, 416, Accept-Ranges) and the representation's SHA-256 in
 * Repr-Digest (RFC 9530) beside the ETag. A stream that fails
 * verification mid-transfer ends the connection before the response is
 * complete, so a client never receives a wrong body as a whole one. */
#include <inttypes.h>
#include <microhttpd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../src/common/base64.h"
#include "../src/common/log.h"
#include "../src/service/versions.h"
#include "app.h"
#include "negotiate.h"
#include "record_json.h"
#include "request.h"
#include "routes.h"

#define STREAM_BLOCK (64u << 10)

enum range_kind { RANGE_NONE, RANGE_ONE, RANGE_UNSATISFIABLE };

/* Digits to a number; false when none, or past 2^63 (then *out is
 * UINT64_MAX so that a huge first byte is unsatisfiable). */
static bool parse_pos(const char **p, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    bool huge = false;
    while (*s >= '0' && *s <= '9') {
        if (v > (UINT64_MAX - 9) / 10)
            huge = true;
        else
            v = v * 10 + (uint64_t)(*s - '0');
        s++;
    }
    if (s == *p)
        return false;
    *p = s;
    *out = huge ? UINT64_MAX : v;
    return true;
}

/* One range of "bytes=FIRST-[LAST]" or "bytes=-SUFFIX" against length.
 * Anything else (other units, several ranges, bad syntax) is ignored:
 * the whole representation is served, as RFC 9110 allows. */
static enum range_kind parse_range(const char *h, uint64_t length, uint64_t *first, uint64_t *last)
{
    if (h == NULL || strncasecmp(h, "bytes=", 6) != 0 || strchr(h, ',') != NULL)
        return RANGE_NONE;
    const char *p = h + 6;
    while (*p == ' ' || *p == '\t')
        p++;
    uint64_t a = 0, b = 0;
    if (*p == '-') {
        p++;
        if (!parse_pos(&p, &b))
            return RANGE_NONE;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != '\0')
            return RANGE_NONE;
        if (b == 0 || length == 0)
            return RANGE_UNSATISFIABLE;
        *first = b >= length ? 0 : length - b;
        *last = length - 1;
        return RANGE_ONE;
    }
    if (!parse_pos(&p, &a) || *p++ != '-')
        return RANGE_NONE;
    bool open_end = !parse_pos(&p, &b);
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '\0' || (!open_end && b < a))
        return RANGE_NONE;
    if (a >= length)
        return RANGE_UNSATISFIABLE;
    *first = a;
    *last = open_end || b >= length ? length - 1 : b;
    return RANGE_ONE;
}

/* If-Range: the range applies only while the client's validator is our
 * strong ETag; a date (we send no Last-Modified) or another tag gets the
 * whole representation. */
static bool if_range_holds(const char *h, const char *etag)
{
    return h == NULL || strcmp(h, etag) == 0;
}

typedef struct streamer {
    content_stream *s;
    char what[160];
} streamer;

static ssize_t stream_block(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos; /* the stream keeps its own position; MHD reads in order */
    streamer *st = cls;
    strata_error err;
    long n = content_stream_read(st->s, buf, max, &err);
    if (n > 0)
        return (ssize_t)n;
    if (n == 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    slog(SLOG_ERROR, "content of %s aborted mid-transfer: %s", st->what, err.detail);
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

static void stream_free(void *cls)
{
    streamer *st = cls;
    content_stream_close(st->s);
    free(st);
}

static void held_free(void *cls)
{
    content_out_free(cls);
    free(cls);
}

static void get_content(request *req, reply *rep)
{
    store_version v;
    strata_error err;
    const char *type = req_param(req, "type"), *id = req_param(req, "id");
    if (versions_get(req->app->versions, type, id, req_param(req, "version"), &v, &err) != 0) {
        reply_error(rep, &err);
        return;
    }
    char etag[SHA256_HEX_LEN + 3];
    record_etag(&v, etag, sizeof etag);
    if (none_match(req_header(req, "If-None-Match"), etag)) {
        reply_empty(rep, 304);
        reply_header_set(rep, "ETag", "%s", etag);
        store_version_clear(&v);
        return;
    }
    content_stream *s = NULL;
    content_info info;
    unsigned accept = accept_encoding_mask(req_header(req, "Accept-Encoding"));
    if (versions_content_open(req->app->versions, &v, accept, &s, &info, &err) != 0) {
        reply_error(rep, &err);
        store_version_clear(&v);
        return;
    }
    uint64_t first = 0, last = 0;
    enum range_kind rk = RANGE_NONE;
    if (if_range_holds(req_header(req, "If-Range"), etag))
        rk = parse_range(req_header(req, "Range"), info.length, &first, &last);
    if (rk == RANGE_UNSATISFIABLE) {
        reply_problem(rep, 416, "range-not-satisfiable",
                      "the range is outside the %" PRIu64 " bytes of the content", info.length);
        reply_header_set(rep, "Content-Range", "bytes */%" PRIu64, info.length);
        goto headers;
    }
    int status = rk == RANGE_ONE ? 206 : 200;
    uint64_t body_len = rk == RANGE_ONE ? last - first + 1 : info.length;
    content_out mem;
    if (content_stream_take(s, &mem)) {
        /* the bytes where they lie (a cached blob's payload, pinned until
         * MHD is done with them), a range by its offset: no copy */
        content_out *held = malloc(sizeof *held);
        struct MHD_Response *r = NULL;
        if (held != NULL) {
            *held = mem;
            void *body = (void *)(uintptr_t)(held->data + (rk == RANGE_ONE ? first : 0));
            r = MHD_create_response_from_buffer_with_free_callback_cls((size_t)body_len, body,
                                                                       held_free, held);
        }
        if (r == NULL) {
            content_out_free(&mem);
            free(held);
            reply_problem(rep, 503, "out-of-memory", "out of memory for a content response");
            goto headers;
        }
        rep->status = status;
        rep->set = true;
        rep->response = r;
    } else {
        if (rk == RANGE_ONE)
            content_stream_range(s, first, last);
        streamer *st = malloc(sizeof *st);
        struct MHD_Response *r = st ? MHD_create_response_from_callback(
                                          body_len, STREAM_BLOCK, stream_block, st, stream_free)
                                    : NULL;
        if (r == NULL) {
            free(st);
            reply_problem(rep, 503, "out-of-memory", "out of memory for a content stream");
            goto headers;
        }
        st->s = s;
        snprintf(st->what, sizeof st->what, "%s/%s@%s", type, id, v.data_hash);
        s = NULL; /* the response owns it now */
        rep->status = status;
        rep->set = true;
        rep->response = r;
    }
    if (rk == RANGE_ONE)
        reply_header_set(rep, "Content-Range", "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, first,
                         last, info.length);
    reply_header_set(rep, "Content-Type", "%s", info.content_type);
    if (info.encoding != SCODEC_NONE)
        reply_header_set(rep, "Content-Encoding", "%s", scodec_name(info.encoding));
    char b64[BASE64_LEN(SHA256_LEN) + 1];
    base64_encode(info.digest, SHA256_LEN, b64);
    reply_header_set(rep, "Repr-Digest", "sha-256=:%s:", b64);
headers:
    reply_header_set(rep, "ETag", "%s", etag);
    reply_header_set(rep, "Vary", "Accept-Encoding");
    reply_header_set(rep, "Accept-Ranges", "bytes");
    content_stream_close(s);
    store_version_clear(&v);
}

int routes_content_register(router *r)
{
    return router_add(r, HTTP_GET, "/{type}/{id}/versions/{version}/content", get_content);
}
