/* Listings (s3_client.h): ListObjectsV2 (s3_list) and ListMultipartUploads
 * (s3_mpu_list), all their pages. One pager serves both: it asks for a
 * page, asks again for smaller pages when an answer passes its bound,
 * hands each entry to the listing, and follows the listing's continuation
 * until the answer is complete, the caller stops, or the server names no
 * new position (so that a server repeating itself cannot loop us). */
#include "s3_client.h"
#include "s3_config.h"
#include "s3_request.h"
#include "s3_xml.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIST_BODY_MAX (1u << 20) /* one listing page */
#define TOKEN_MAX     4096       /* a continuation token */
#define QUERY_MAX     (4 * TOKEN_MAX)
#define KEY_TEXT_MAX  (S3_KEY_TOTAL_MAX * 4 + 1) /* a key or key marker, decoded */

/* One kind of listing, as list_pages drives it; st is its state. */
typedef struct lister {
    const char *op;        /* the S3 operation, for requests and errors */
    const char *entry_tag; /* the element of one entry */
    /* The query for the next page of page_size entries (held in st), or
     * NULL with err set. */
    const char *(*query)(void *st, const char *page_size, strata_error *err);
    /* One entry's XML [t, t+len): 1 when the caller asked to stop, 0 to go
     * on, -1 with err set when the entry cannot be read. */
    int (*entry)(void *st, const char *t, size_t len, strata_error *err);
    /* After a truncated page [body, end): moves st to the next page; -1
     * with err set when the page names no new position. */
    int (*next)(void *st, const char *body, const char *end, strata_error *err);
} lister;

/* A key from a listing made relative to the client's prefix; NULL when it
 * is not under it. */
static const char *relative(const s3_client *c, const char *full)
{
    const char *prefix = s3_client_config(c)->prefix;
    size_t pl = strlen(prefix);
    return strncmp(full, prefix, pl) == 0 ? full + pl : NULL;
}

/* The client's prefix and key_prefix into out: SERR_INVALID past
 * S3_KEY_TOTAL_MAX bytes. */
static int full_prefix(const s3_client *c, const char *key_prefix, char *out, size_t cap,
                       strata_error *err)
{
    int w = snprintf(out, cap, "%s%s", s3_client_config(c)->prefix,
                     key_prefix != NULL ? key_prefix : "");
    if (w < 0 || (size_t)w >= cap || (size_t)w > S3_KEY_TOTAL_MAX)
        return serr_set(err, SERR_INVALID, "an S3 listing prefix is too long");
    return 0;
}

/* Lists every page of ls under key_prefix (written into prefix, S3_KEY_TOTAL_MAX
 * + 1 bytes, for ls's queries): 0 when the listing is complete or an
 * entry asked to stop, -1 with err set otherwise. */
static int list_pages(s3_client *c, const lister *ls, void *st, const char *key_prefix,
                      char *prefix, strata_error *err)
{
    char pagestr[16];
    int page = s3_client_config(c)->list_page_size;
    if (full_prefix(c, key_prefix, prefix, S3_KEY_TOTAL_MAX + 1, err) != 0)
        return -1;
    for (;;) {
        snprintf(pagestr, sizeof pagestr, "%d", page);
        const char *query = ls->query(st, pagestr, err);
        if (query == NULL)
            return -1;
        s3_request rq = {.method = "GET", .op = ls->op, .query = query, .body_cap = LIST_BODY_MAX};
        s3_response rs;
        if (s3_perform(c, &rq, &rs, err) != 0) {
            s3_response_free(&rs);
            return -1;
        }
        if (rs.status != 200) {
            s3_answer_error(&rq, &rs, err);
            s3_response_free(&rs);
            return -1;
        }
        if (rs.overflow || rs.body == NULL) {
            s3_response_free(&rs);
            if (rs.overflow && page > 1) {
                page = page / 4 > 0 ? page / 4 : 1; /* long keys: smaller pages */
                continue;
            }
            return serr_set(err, rs.overflow ? SERR_TOO_LARGE : SERR_IO, "S3 %s answered %s",
                            ls->op, rs.overflow ? "more than 1 MiB" : "nothing");
        }
        const char *p = rs.body, *end = rs.body + rs.body_len, *t;
        size_t tl;
        int stop = 0;
        while (stop == 0 && (p = s3_xml_find(p, end, ls->entry_tag, &t, &tl)) != NULL)
            stop = ls->entry(st, t, tl, err);
        char trunc[8] = "";
        s3_xml_get(rs.body, end, "IsTruncated", trunc, sizeof trunc);
        bool more = stop == 0 && strcmp(trunc, "true") == 0;
        int rc = stop < 0 || (more && ls->next(st, rs.body, end, err) != 0) ? -1 : 0;
        s3_response_free(&rs);
        if (rc != 0 || !more)
            return rc;
    }
}

/* ---- ListObjectsV2 ------------------------------------------------------------ */

typedef struct objects_list {
    const s3_client *c;
    s3_list_fn fn;
    void *ctx;
    char prefix[S3_KEY_TOTAL_MAX + 1];
    char token[TOKEN_MAX], prev[TOKEN_MAX]; /* this page's, the last one's */
    char key[KEY_TEXT_MAX];
    char query[QUERY_MAX];
} objects_list;

static const char *objects_query(void *arg, const char *page_size, strata_error *err)
{
    objects_list *st = arg;
    const char *pairs[][2] = {{"list-type", "2"},
                              {"max-keys", page_size},
                              {"prefix", st->prefix},
                              {"continuation-token", st->token}};
    if (s3_build_query(pairs, st->token[0] != '\0' ? 4 : 3, st->query, sizeof st->query, err) != 0)
        return NULL;
    return st->query;
}

static int objects_entry(void *arg, const char *t, size_t len, strata_error *err)
{
    objects_list *st = arg;
    char num[32];
    uint64_t size = 0;
    int64_t mtime = 0;
    if (s3_xml_get(t, t + len, "Key", st->key, sizeof st->key) != 0)
        return serr_set(err, SERR_IO, "S3 ListObjectsV2: an entry without a readable Key");
    if (s3_xml_get(t, t + len, "Size", num, sizeof num) == 0)
        s3_parse_u64(num, strlen(num), &size);
    if (s3_xml_get(t, t + len, "LastModified", num, sizeof num) == 0)
        mtime = s3_iso8601_ms(num);
    const char *rel = relative(st->c, st->key);
    return rel != NULL && st->fn(st->ctx, rel, size, mtime) != 0 ? 1 : 0;
}

static int objects_next(void *arg, const char *body, const char *end, strata_error *err)
{
    objects_list *st = arg;
    memcpy(st->prev, st->token, sizeof st->prev);
    if (s3_xml_get(body, end, "NextContinuationToken", st->token, sizeof st->token) != 0)
        return serr_set(err, SERR_IO, "S3 ListObjectsV2: truncated without a continuation token");
    if (st->token[0] == '\0' || strcmp(st->token, st->prev) == 0)
        return serr_set(err, SERR_IO, "S3 ListObjectsV2 repeats its continuation token");
    return 0;
}

static const lister objects_lister = {"ListObjectsV2", "Contents", objects_query, objects_entry,
                                      objects_next};

int s3_list(s3_client *c, const char *key_prefix, s3_list_fn fn, void *ctx, strata_error *err)
{
    objects_list *st = calloc(1, sizeof *st);
    if (st == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory for an S3 listing");
    st->c = c;
    st->fn = fn;
    st->ctx = ctx;
    int rc = list_pages(c, &objects_lister, st, key_prefix, st->prefix, err);
    free(st);
    return rc;
}

/* ---- ListMultipartUploads ------------------------------------------------------ */

typedef struct uploads_list {
    const s3_client *c;
    s3_upload_fn fn;
    void *ctx;
    char prefix[S3_KEY_TOTAL_MAX + 1];
    char kmark[KEY_TEXT_MAX], umark[S3_UPLOAD_ID_MAX]; /* this page's markers */
    char prevk[KEY_TEXT_MAX], prevu[S3_UPLOAD_ID_MAX]; /* the last page's */
    char key[KEY_TEXT_MAX], id[S3_UPLOAD_ID_MAX];
    char query[QUERY_MAX];
} uploads_list;

static const char *uploads_query(void *arg, const char *page_size, strata_error *err)
{
    uploads_list *st = arg;
    const char *pairs[][2] = {{"uploads", ""},
                              {"max-uploads", page_size},
                              {"prefix", st->prefix},
                              {"key-marker", st->kmark},
                              {"upload-id-marker", st->umark}};
    int np = st->kmark[0] != '\0' ? (st->umark[0] != '\0' ? 5 : 4) : 3;
    if (s3_build_query(pairs, np, st->query, sizeof st->query, err) != 0)
        return NULL;
    return st->query;
}

static int uploads_entry(void *arg, const char *t, size_t len, strata_error *err)
{
    uploads_list *st = arg;
    char when[40];
    int64_t initiated = 0;
    if (s3_xml_get(t, t + len, "Key", st->key, sizeof st->key) != 0 ||
        s3_xml_get(t, t + len, "UploadId", st->id, sizeof st->id) != 0)
        return serr_set(err, SERR_IO, "S3 ListMultipartUploads: an entry without Key/UploadId");
    if (s3_xml_get(t, t + len, "Initiated", when, sizeof when) == 0)
        initiated = s3_iso8601_ms(when);
    const char *rel = relative(st->c, st->key);
    return rel != NULL && st->fn(st->ctx, rel, st->id, initiated) != 0 ? 1 : 0;
}

static int uploads_next(void *arg, const char *body, const char *end, strata_error *err)
{
    uploads_list *st = arg;
    memcpy(st->prevk, st->kmark, strlen(st->kmark) + 1);
    memcpy(st->prevu, st->umark, strlen(st->umark) + 1);
    if (s3_xml_get(body, end, "NextKeyMarker", st->kmark, sizeof st->kmark) != 0)
        st->kmark[0] = '\0';
    if (s3_xml_get(body, end, "NextUploadIdMarker", st->umark, sizeof st->umark) != 0)
        st->umark[0] = '\0';
    if (st->kmark[0] == '\0' ||
        (strcmp(st->kmark, st->prevk) == 0 && strcmp(st->umark, st->prevu) == 0))
        return serr_set(err, SERR_IO, "S3 ListMultipartUploads: truncated without a new marker");
    return 0;
}

static const lister uploads_lister = {"ListMultipartUploads", "Upload", uploads_query,
                                      uploads_entry, uploads_next};

int s3_mpu_list(s3_client *c, const char *key_prefix, s3_upload_fn fn, void *ctx, strata_error *err)
{
    uploads_list *st = calloc(1, sizeof *st);
    if (st == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory for an S3 upload listing");
    st->c = c;
    st->fn = fn;
    st->ctx = ctx;
    int rc = list_pages(c, &uploads_lister, st, key_prefix, st->prefix, err);
    free(st);
    return rc;
}
