/* The S3 object operations (s3_client.h): argument checks, the request
 * each one sends (s3_request.h) and how its answer is read. Listings are
 * in s3_list.c, configuration in s3_config.c. */
#include "s3_client.h"
#include "s3_config.h"
#include "s3_request.h"
#include "s3_sigv4.h"
#include "s3_xml.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define META_TOTAL_MAX 2048 /* S3's bound on user metadata (names + values) */
#define PARTS_MAX      10000

/* ---- arguments, options, object info -------------------------------------- */

static int check_key(const char *key, strata_error *err)
{
    if (key == NULL || key[0] == '\0')
        return serr_set(err, SERR_INVALID, "an S3 key is empty");
    if (strlen(key) > S3_KEY_MAX)
        return serr_set(err, SERR_INVALID, "an S3 key is longer than %d bytes", S3_KEY_MAX);
    return 0;
}

/* Adds opts' content type and metadata (and, when cond, its conditions) to
 * rq; names points at room for S3_META_MAX header names (NULL will do for
 * opts without metadata). SERR_INVALID naming a bad option. */
static int add_opts(s3_request *rq, const s3_put_opts *opts, bool cond, char (*names)[80],
                    strata_error *err)
{
    if (opts == NULL)
        return 0;
    if (cond && opts->if_none_match)
        rq->extra[rq->n_extra++] = (s3_hdr){"If-None-Match", "*"};
    if (cond && opts->if_match != NULL) {
        if (opts->if_match[0] == '\0' || strlen(opts->if_match) >= S3_ETAG_MAX ||
            strpbrk(opts->if_match, "\r\n") != NULL)
            return serr_set(err, SERR_INVALID, "a bad If-Match ETag");
        rq->extra[rq->n_extra++] = (s3_hdr){"If-Match", opts->if_match};
    }
    if (opts->content_type != NULL) {
        if (opts->content_type[0] == '\0' || strlen(opts->content_type) > 255 ||
            strpbrk(opts->content_type, "\r\n") != NULL)
            return serr_set(err, SERR_INVALID, "a bad content type for S3");
        rq->extra[rq->n_extra++] = (s3_hdr){"Content-Type", opts->content_type};
    }
    if (opts->n_meta < 0 || opts->n_meta > S3_META_MAX || (opts->n_meta > 0 && opts->meta == NULL))
        return serr_set(err, SERR_INVALID, "%d metadata entries (at most %d)", opts->n_meta,
                        S3_META_MAX);
    size_t total = 0;
    for (int i = 0; i < opts->n_meta; i++) {
        const char *name = opts->meta[i].name, *value = opts->meta[i].value;
        size_t nl = name != NULL ? strlen(name) : 0, vl = value != NULL ? strlen(value) : 0;
        if (nl == 0 || nl > 63 || value == NULL || vl > 255)
            return serr_set(err, SERR_INVALID,
                            "S3 metadata needs a name of 1-63 bytes, a value "
                            "of at most 255");
        for (size_t k = 0; k < nl; k++)
            if (!(islower((unsigned char)name[k]) || isdigit((unsigned char)name[k]) ||
                  name[k] == '-'))
                return serr_set(err, SERR_INVALID,
                                "the S3 metadata name \"%.63s\" is not [a-z0-9-]", name);
        for (size_t k = 0; k < vl; k++)
            if ((unsigned char)value[k] < 0x20 || (unsigned char)value[k] > 0x7e)
                return serr_set(err, SERR_INVALID,
                                "the S3 metadata %s holds a byte outside printable ASCII", name);
        if (vl > 0 && (value[0] == ' ' || value[vl - 1] == ' '))
            return serr_set(err, SERR_INVALID, "the S3 metadata %s starts or ends with a space",
                            name);
        for (int j = 0; j < i; j++)
            if (strcmp(opts->meta[j].name, name) == 0)
                return serr_set(err, SERR_INVALID, "the S3 metadata %s is given twice", name);
        total += nl + vl;
        snprintf(names[i], 80, "x-amz-meta-%s", name);
        rq->extra[rq->n_extra++] = (s3_hdr){names[i], value};
    }
    if (total > META_TOTAL_MAX)
        return serr_set(err, SERR_INVALID, "S3 metadata over %d bytes", META_TOTAL_MAX);
    return 0;
}

static void fill_info(const s3_response *rs, s3_object_info *info)
{
    if (info == NULL)
        return;
    memset(info, 0, sizeof *info);
    info->size = rs->have_total ? rs->total : rs->content_length;
    info->mtime_ms = rs->mtime_ms;
    snprintf(info->etag, sizeof info->etag, "%s", rs->etag);
    info->n_meta = rs->n_meta;
    for (int i = 0; i < rs->n_meta; i++) {
        memcpy(info->meta_name[i], rs->meta_name[i], sizeof info->meta_name[i]);
        memcpy(info->meta_value[i], rs->meta_value[i], sizeof info->meta_value[i]);
    }
}

/* ---- operations ------------------------------------------------------------ */

int s3_check(s3_client *c, strata_error *err)
{
    char query[2048];
    const char *pairs[][2] = {
        {"list-type", "2"}, {"max-keys", "1"}, {"prefix", s3_client_config(c)->prefix}};
    if (s3_build_query(pairs, 3, query, sizeof query, err) != 0)
        return -1;
    s3_request rq = {.method = "GET", .op = "ListObjectsV2", .query = query};
    s3_response rs;
    int rc = s3_perform(c, &rq, &rs, err);
    if (rc == 0 && rs.status != 200) {
        s3_answer_error(&rq, &rs, err);
        if (err != NULL)
            err->kind = SERR_UNAVAILABLE; /* whatever it is, the bucket is not usable */
        rc = -1;
    }
    s3_response_free(&rs);
    return rc;
}

int s3_put(s3_client *c, const char *key, const void *data, size_t len, const s3_put_opts *opts,
           char *etag_out, strata_error *err)
{
    char names[S3_META_MAX][80];
    s3_request rq = {.method = "PUT",
                     .op = "PutObject",
                     .key = key,
                     .upload = true,
                     .body = data,
                     .body_len = len};
    if (etag_out != NULL)
        etag_out[0] = '\0';
    if (check_key(key, err) != 0 || add_opts(&rq, opts, true, names, err) != 0)
        return -1;
    if (data == NULL && len > 0)
        return serr_set(err, SERR_INVALID, "no bytes to put");
    s3_response rs;
    int rc = s3_perform(c, &rq, &rs, err);
    if (rc == 0 && rs.status != 200)
        rc = s3_answer_error(&rq, &rs, err);
    if (rc == 0 && etag_out != NULL)
        snprintf(etag_out, S3_ETAG_MAX, "%s", rs.etag);
    s3_response_free(&rs);
    return rc;
}

int s3_head(s3_client *c, const char *key, s3_object_info *info, strata_error *err)
{
    if (check_key(key, err) != 0)
        return -1;
    s3_request rq = {.method = "HEAD", .op = "HeadObject", .key = key};
    s3_response rs;
    int rc = s3_perform(c, &rq, &rs, err);
    if (rc == 0 && rs.status == 200) {
        fill_info(&rs, info);
    } else if (rc == 0 && rs.status == 404) {
        rc = serr_set(err, SERR_NOT_FOUND, "S3 object %.120s not found", key);
    } else if (rc == 0) {
        /* HEAD answers carry no body: ask for one byte to learn the cause */
        strata_buf tmp;
        sbuf_init(&tmp, 1);
        s3_request g = {.method = "GET",
                        .op = "HeadObject",
                        .key = key,
                        .sink = &tmp,
                        .sink_max = 1,
                        .ranged = true,
                        .off = 0,
                        .len = 1};
        g.extra[g.n_extra++] = (s3_hdr){"Range", "bytes=0-0"};
        s3_response gs;
        int grc = s3_perform(c, &g, &gs, err);
        if (grc == 0 && (gs.status < 200 || gs.status >= 300) && gs.status != 416)
            rc = s3_answer_error(&g, &gs, err);
        else if (grc == 0)
            rc = s3_answer_error(&rq, &rs, err);
        else
            rc = -1;
        s3_response_free(&gs);
        sbuf_free(&tmp);
    }
    s3_response_free(&rs);
    return rc;
}

int s3_get(s3_client *c, const char *key, uint64_t offset, uint64_t len, size_t max_len,
           strata_buf *out, s3_object_info *info, strata_error *err)
{
    char range[64];
    if (check_key(key, err) != 0)
        return -1;
    if (out == NULL)
        return serr_set(err, SERR_INVALID, "s3_get needs a buffer");
    s3_request rq = {
        .method = "GET", .op = "GetObject", .key = key, .sink = out, .sink_max = max_len};
    if (offset > 0 || len > 0) {
        if (len > 0 && offset > UINT64_MAX - len)
            len = UINT64_MAX - offset;
        if (len > 0)
            snprintf(range, sizeof range, "bytes=%" PRIu64 "-%" PRIu64, offset, offset + len - 1);
        else
            snprintf(range, sizeof range, "bytes=%" PRIu64 "-", offset);
        rq.extra[rq.n_extra++] = (s3_hdr){"Range", range};
        rq.ranged = true;
        rq.off = offset;
        rq.len = len;
    }
    s3_response rs;
    int rc = s3_perform(c, &rq, &rs, err);
    if (rc == 0 && (rs.status == 200 || rs.status == 206)) {
        fill_info(&rs, info);
        if (info != NULL && !rs.have_len && !rs.have_total && !rq.ranged)
            info->size = out->len - rs.sink_start; /* chunked: what arrived is the whole */
    } else if (rc == 0 && rs.status == 416) {
        /* a range past the end: nothing to append; the size from a HEAD */
        rc = info != NULL ? s3_head(c, key, info, err) : 0;
    } else if (rc == 0) {
        rc = s3_answer_error(&rq, &rs, err);
    }
    s3_response_free(&rs);
    return rc;
}

static int delete_object(s3_client *c, const char *key, const char *if_match, strata_error *err)
{
    if (check_key(key, err) != 0)
        return -1;
    s3_request rq = {.method = "DELETE", .op = "DeleteObject", .key = key};
    s3_put_opts cond = {.if_match = if_match};
    if (add_opts(&rq, &cond, true, NULL, err) != 0)
        return -1;
    s3_response rs;
    int rc = s3_perform(c, &rq, &rs, err);
    if (rc == 0 && rs.status != 204 && rs.status != 200) {
        s3_parse_error_body(&rs);
        if (!(rs.status == 404 && (rs.code[0] == '\0' || strcmp(rs.code, "NoSuchKey") == 0)))
            rc = s3_answer_error(&rq, &rs, err);
    }
    s3_response_free(&rs);
    return rc;
}

int s3_delete(s3_client *c, const char *key, strata_error *err)
{
    return delete_object(c, key, NULL, err);
}

int s3_delete_if_match(s3_client *c, const char *key, const char *etag, strata_error *err)
{
    return delete_object(c, key, etag, err);
}

int s3_copy(s3_client *c, const char *src_key, const char *dst_key, bool replace_meta,
            const s3_put_opts *opts, strata_error *err)
{
    char names[S3_META_MAX][80];
    if (check_key(src_key, err) != 0 || check_key(dst_key, err) != 0)
        return -1;
    char raw[S3_KEY_TOTAL_MAX + 80], source[3 * (S3_KEY_TOTAL_MAX + 80) + 1];
    if (s3_object_path(c, src_key, raw, sizeof raw, err) != 0)
        return -1;
    if (s3_sigv4_uri_encode(raw, strlen(raw), true, source, sizeof source) < 0)
        return serr_set(err, SERR_INVALID, "the copy source is too long");
    s3_request rq = {
        .method = "PUT", .op = "CopyObject", .key = dst_key, .upload = true, .error_in_200 = true};
    rq.extra[rq.n_extra++] = (s3_hdr){"x-amz-copy-source", source};
    rq.extra[rq.n_extra++] =
        (s3_hdr){"x-amz-metadata-directive", replace_meta ? "REPLACE" : "COPY"};
    if (opts != NULL && (opts->if_none_match || opts->if_match != NULL)) {
        s3_put_opts cond = {.if_none_match = opts->if_none_match, .if_match = opts->if_match};
        if (add_opts(&rq, &cond, true, names, err) != 0)
            return -1;
    }
    if (replace_meta && opts != NULL) {
        s3_put_opts meta = *opts;
        meta.if_none_match = false;
        meta.if_match = NULL;
        if (add_opts(&rq, &meta, false, names, err) != 0)
            return -1;
    }
    s3_response rs;
    int rc = s3_perform(c, &rq, &rs, err);
    if (rc == 0 && (rs.status != 200 || rs.code[0] != '\0'))
        rc = s3_answer_error(&rq, &rs, err);
    s3_response_free(&rs);
    return rc;
}

int s3_mpu_begin(s3_client *c, const char *key, const s3_put_opts *opts,
                 char upload_id[S3_UPLOAD_ID_MAX], strata_error *err)
{
    char names[S3_META_MAX][80];
    upload_id[0] = '\0';
    s3_request rq = {.method = "POST",
                     .op = "CreateMultipartUpload",
                     .key = key,
                     .upload = true,
                     .query = "uploads="};
    if (check_key(key, err) != 0 || add_opts(&rq, opts, false, names, err) != 0)
        return -1;
    s3_response rs;
    int rc = s3_perform(c, &rq, &rs, err);
    if (rc == 0 && rs.status != 200) {
        rc = s3_answer_error(&rq, &rs, err);
    } else if (rc == 0) {
        if (rs.body == NULL ||
            s3_xml_get(rs.body, rs.body + rs.body_len, "UploadId", upload_id, S3_UPLOAD_ID_MAX) !=
                0 ||
            upload_id[0] == '\0')
            rc = serr_set(err, SERR_IO, "S3 CreateMultipartUpload %.80s: no UploadId", key);
    }
    s3_response_free(&rs);
    return rc;
}

static int upload_query(const char *upload_id, int part_no, char *out, size_t cap,
                        strata_error *err)
{
    char num[16];
    if (upload_id == NULL || upload_id[0] == '\0' || strlen(upload_id) >= S3_UPLOAD_ID_MAX)
        return serr_set(err, SERR_INVALID, "a bad multipart upload id");
    if (part_no > 0) {
        snprintf(num, sizeof num, "%d", part_no);
        const char *pairs[][2] = {{"partNumber", num}, {"uploadId", upload_id}};
        return s3_build_query(pairs, 2, out, cap, err);
    }
    const char *pairs[][2] = {{"uploadId", upload_id}};
    return s3_build_query(pairs, 1, out, cap, err);
}

int s3_mpu_part(s3_client *c, const char *key, const char *upload_id, int part_no, const void *data,
                size_t len, char etag_out[S3_ETAG_MAX], strata_error *err)
{
    char query[3 * S3_UPLOAD_ID_MAX + 64];
    etag_out[0] = '\0';
    if (check_key(key, err) != 0)
        return -1;
    if (part_no < 1 || part_no > PARTS_MAX)
        return serr_set(err, SERR_INVALID, "part number %d is not in 1..%d", part_no, PARTS_MAX);
    if (data == NULL && len > 0)
        return serr_set(err, SERR_INVALID, "no bytes for a part");
    if (upload_query(upload_id, part_no, query, sizeof query, err) != 0)
        return -1;
    s3_request rq = {.method = "PUT",
                     .op = "UploadPart",
                     .key = key,
                     .query = query,
                     .upload = true,
                     .body = data,
                     .body_len = len};
    s3_response rs;
    int rc = s3_perform(c, &rq, &rs, err);
    if (rc == 0 && rs.status != 200)
        rc = s3_answer_error(&rq, &rs, err);
    else if (rc == 0 && rs.etag[0] == '\0')
        rc = serr_set(err, SERR_IO, "S3 UploadPart %.80s #%d: no ETag", key, part_no);
    if (rc == 0)
        snprintf(etag_out, S3_ETAG_MAX, "%s", rs.etag);
    s3_response_free(&rs);
    return rc;
}

int s3_mpu_complete(s3_client *c, const char *key, const char *upload_id, int n_parts,
                    char (*etags)[S3_ETAG_MAX], strata_error *err)
{
    char query[3 * S3_UPLOAD_ID_MAX + 64];
    if (check_key(key, err) != 0)
        return -1;
    if (n_parts < 1 || n_parts > PARTS_MAX || etags == NULL)
        return serr_set(err, SERR_INVALID, "%d parts to complete (1..%d)", n_parts, PARTS_MAX);
    if (upload_query(upload_id, 0, query, sizeof query, err) != 0)
        return -1;
    strata_buf body;
    sbuf_init(&body, (size_t)n_parts * (S3_ETAG_MAX * 2 + 80) + 128);
    char part[64];
    int rc = sbuf_append(&body, "<CompleteMultipartUpload>", 25, err);
    for (int i = 0; rc == 0 && i < n_parts; i++) {
        if (etags[i][0] == '\0' || memchr(etags[i], '\0', S3_ETAG_MAX) == NULL) {
            rc = serr_set(err, SERR_INVALID, "part %d has no ETag", i + 1);
            break;
        }
        int w = snprintf(part, sizeof part, "<Part><PartNumber>%d</PartNumber><ETag>", i + 1);
        rc = sbuf_append(&body, part, (size_t)w, err);
        if (rc == 0)
            rc = s3_xml_escape_append(&body, etags[i], err);
        if (rc == 0)
            rc = sbuf_append(&body, "</ETag></Part>", 14, err);
    }
    if (rc == 0)
        rc = sbuf_append(&body, "</CompleteMultipartUpload>", 26, err);
    if (rc != 0) {
        sbuf_free(&body);
        return -1;
    }
    s3_request rq = {.method = "POST",
                     .op = "CompleteMultipartUpload",
                     .key = key,
                     .query = query,
                     .upload = true,
                     .body = body.data,
                     .body_len = body.len,
                     .error_in_200 = true};
    rq.extra[rq.n_extra++] = (s3_hdr){"Content-Type", "application/xml"};
    s3_response rs;
    rc = s3_perform(c, &rq, &rs, err);
    if (rc == 0 && (rs.status != 200 || rs.code[0] != '\0')) {
        if (rs.code[0] == '\0')
            s3_parse_error_body(&rs);
        s3_object_info info;
        char suffix[24];
        snprintf(suffix, sizeof suffix, "-%d\"", n_parts);
        if (rs.attempts > 1 && strcmp(rs.code, "NoSuchUpload") == 0 &&
            s3_head(c, key, &info, NULL) == 0 &&
            (strchr(info.etag, '-') == NULL ||
             (strlen(info.etag) > strlen(suffix) &&
              strcmp(info.etag + strlen(info.etag) - strlen(suffix), suffix) == 0)))
            rc = 0; /* an earlier attempt completed it */
        else
            rc = s3_answer_error(&rq, &rs, err);
    }
    s3_response_free(&rs);
    sbuf_free(&body);
    return rc;
}

int s3_mpu_abort(s3_client *c, const char *key, const char *upload_id, strata_error *err)
{
    char query[3 * S3_UPLOAD_ID_MAX + 64];
    if (check_key(key, err) != 0 || upload_query(upload_id, 0, query, sizeof query, err) != 0)
        return -1;
    s3_request rq = {.method = "DELETE", .op = "AbortMultipartUpload", .key = key, .query = query};
    s3_response rs;
    int rc = s3_perform(c, &rq, &rs, err);
    if (rc == 0 && rs.status != 204 && rs.status != 200) {
        s3_parse_error_body(&rs);
        if (!(rs.attempts > 1 && strcmp(rs.code, "NoSuchUpload") == 0))
            rc = s3_answer_error(&rq, &rs, err);
    }
    s3_response_free(&rs);
    return rc;
}
