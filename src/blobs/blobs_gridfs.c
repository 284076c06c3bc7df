/* The blob store on GridFS: the store, lookups, removal, list and the
 * staging sweep. See blobs_gridfs.h; reads and staged writes are in
 * blobs_gridfs_io.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/clock.h"
#include "../common/log.h"
#include "blobs_gridfs_int.h"

#define URL_MAX      2048
#define SWEEP_MAX    1000
#define PROBE_OPTS_N 3

static const blob_store_ops GFS_OPS;

static int missing(strata_error *err, const char *key)
{
    return serr_set(err, SERR_NOT_FOUND, "blob %s is missing", key);
}

int gfs_error(const bson_error_t *e, const char *what, strata_error *err)
{
    if (!mongo_conn_is_duplicate(e) && strstr(e->message, "duplicate key value") != NULL)
        return serr_set(err, SERR_CONFLICT, "%s: duplicate key", what);
    return mongo_conn_error(e, what, err);
}

/* ---- the URL ------------------------------------------------------------------------- */

static bool valid_bucket(const char *s, size_t n)
{
    if (n == 0 || n > BLOBS_GRIDFS_BUCKET_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

int blobs_gridfs_parse_url(const char *url, char *out, size_t cap,
                           char bucket[BLOBS_GRIDFS_BUCKET_MAX + 1], strata_error *err)
{
    if (url == NULL || strncmp(url, "gridfs://", 9) != 0)
        return serr_set(err, SERR_INVALID, "a GridFS blob URL starts with gridfs://");
    snprintf(bucket, BLOBS_GRIDFS_BUCKET_MAX + 1, "blobs");
    const char *q = strchr(url + 9, '?');
    size_t base = q ? (size_t)(q - url) - 9 : strlen(url + 9);
    int n = snprintf(out, cap, "mongodb://%.*s", (int)base, url + 9);
    if (n < 0 || (size_t)n >= cap)
        return serr_set(err, SERR_INVALID, "the GridFS blob URL is too long");
    size_t len = (size_t)n;
    bool seen = false, first = true;
    for (const char *p = q ? q + 1 : NULL; p != NULL && *p != '\0';) {
        const char *end = strchr(p, '&');
        size_t plen = end ? (size_t)(end - p) : strlen(p);
        if (plen >= 7 && strncasecmp(p, "bucket=", 7) == 0) {
            if (seen || !valid_bucket(p + 7, plen - 7))
                return serr_set(err, SERR_INVALID,
                                "bucket= names one GridFS bucket of 1 to %d characters "
                                "[A-Za-z0-9_-]",
                                BLOBS_GRIDFS_BUCKET_MAX);
            snprintf(bucket, BLOBS_GRIDFS_BUCKET_MAX + 1, "%.*s", (int)(plen - 7), p + 7);
            seen = true;
        } else if (plen > 0) {
            if (len + plen + 2 >= cap)
                return serr_set(err, SERR_INVALID, "the GridFS blob URL is too long");
            out[len++] = first ? '?' : '&';
            memcpy(out + len, p, plen);
            len += plen;
            out[len] = '\0';
            first = false;
        }
        p = end ? end + 1 : NULL;
    }
    return 0;
}

/* The URL with short timeouts for /ready's probe, where it sets none. */
static void probe_url(const char *murl, char *out, size_t cap)
{
    static const char *const opts[PROBE_OPTS_N] = {"serverSelectionTimeoutMS=2000",
                                                   "connectTimeoutMS=2000", "socketTimeoutMS=2000"};
    const char *q = strchr(murl, '?');
    size_t len = (size_t)snprintf(out, cap, "%s", murl);
    bool has_query = q != NULL;
    for (int i = 0; i < PROBE_OPTS_N && len < cap; i++) {
        char name[40];
        snprintf(name, sizeof name, "%.*s", (int)(strchr(opts[i], '=') - opts[i] + 1), opts[i]);
        if (q != NULL && strcasestr(q, name) != NULL)
            continue;
        len += (size_t)snprintf(out + len, cap - len, "%s%s", has_query ? "&" : "?", opts[i]);
        has_query = true;
    }
}

/* ---- files documents ------------------------------------------------------------------ */

void gfs_file_clear(gfs_file *f)
{
    bson_value_destroy(&f->id);
    bson_value_destroy(&f->data);
    memset(f, 0, sizeof *f);
}

bool gfs_stage_name(const bson_value_t *id, char out[GFS_NAME_MAX])
{
    if (id->value_type != BSON_TYPE_OID)
        return false;
    char hex[25];
    bson_oid_to_string(&id->value.v_oid, hex);
    snprintf(out, GFS_NAME_MAX, GFS_STAGE "%s", hex);
    return true;
}

static bool key_named(const char *s)
{
    return s != NULL && blob_key_valid(s);
}

/* Reads the fields the store uses; SERR_CORRUPT for a misshapen one. */
static int parse_file(const bson_t *doc, gfs_file *f, strata_error *err)
{
    memset(f, 0, sizeof *f);
    bson_iter_t it;
    int64_t upload_ms = 0, mtime = 0;
    bool has_id = false, has_len = false;
    f->chunk_size = 0;
    if (!bson_iter_init(&it, doc))
        return serr_set(err, SERR_CORRUPT, "a GridFS files document is malformed");
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "_id") == 0) {
            bson_value_copy(bson_iter_value(&it), &f->id);
            has_id = true;
        } else if (strcmp(k, "length") == 0 && BSON_ITER_HOLDS_NUMBER(&it)) {
            f->length = bson_iter_as_int64(&it);
            has_len = true;
        } else if (strcmp(k, "chunkSize") == 0 && BSON_ITER_HOLDS_NUMBER(&it)) {
            int64_t cs = bson_iter_as_int64(&it);
            f->chunk_size = cs > 0 && cs <= (16 << 20) ? (int32_t)cs : -1;
        } else if (strcmp(k, "uploadDate") == 0 && BSON_ITER_HOLDS_DATE_TIME(&it)) {
            upload_ms = bson_iter_date_time(&it);
        } else if (strcmp(k, "filename") == 0 && BSON_ITER_HOLDS_UTF8(&it)) {
            f->named_key = key_named(bson_iter_utf8(&it, NULL));
        } else if (strcmp(k, "data") == 0 && !f->has_data) {
            bson_value_copy(bson_iter_value(&it), &f->data);
            f->has_data = true;
        } else if (strcmp(k, "mtime") == 0 && BSON_ITER_HOLDS_DATE_TIME(&it)) {
            mtime = bson_iter_date_time(&it);
        }
    }
    if (has_id && !f->has_data)
        bson_value_copy(&f->id, &f->data);
    f->mtime_ms = mtime > 0 ? mtime : upload_ms;
    if (!has_id || !has_len || f->length < 0 || f->chunk_size < 0 ||
        (f->length > 0 && f->chunk_size == 0)) {
        gfs_file_clear(f);
        return serr_set(err, SERR_CORRUPT, "a GridFS files document lacks its length or chunkSize");
    }
    return 0;
}

static int find_one_file(gfs_blobs *b, mongoc_client_t *cl, const bson_t *filter, gfs_file *f,
                         bool *found, strata_error *err)
{
    mongoc_collection_t *coll = mongo_conn_collection(b->conn, cl, b->files);
    bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    const bson_t *doc;
    bson_error_t be;
    int rc = 0;
    *found = false;
    if (mongoc_cursor_next(cur, &doc)) {
        rc = parse_file(doc, f, err);
        *found = rc == 0;
    } else if (mongoc_cursor_error(cur, &be)) {
        rc = gfs_error(&be, "finding a GridFS file", err);
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    mongoc_collection_destroy(coll);
    return rc;
}

int gfs_find_file(gfs_blobs *b, mongoc_client_t *cl, const char *key, gfs_file *f, bool *found,
                  strata_error *err)
{
    bson_t *filter = BCON_NEW("filename", BCON_UTF8(key));
    int rc = find_one_file(b, cl, filter, f, found, err);
    bson_destroy(filter);
    return rc;
}

int gfs_find_file_by_id(gfs_blobs *b, mongoc_client_t *cl, const bson_value_t *id, gfs_file *f,
                        bool *found, strata_error *err)
{
    bson_t filter = BSON_INITIALIZER;
    BSON_APPEND_VALUE(&filter, "_id", id);
    int rc = find_one_file(b, cl, &filter, f, found, err);
    bson_destroy(&filter);
    return rc;
}

/* Looks key up with a client of the pool. */
static int lookup(gfs_blobs *b, const char *key, gfs_file *f, bool *found, strata_error *err)
{
    if (!blob_key_valid(key))
        return serr_set(err, SERR_INVALID, "bad blob key");
    mongoc_client_t *cl = mongo_conn_pop(b->conn);
    int rc = gfs_find_file(b, cl, key, f, found, err);
    mongo_conn_push(b->conn, cl);
    return rc;
}

int gfs_mark_retired(gfs_blobs *b, mongoc_client_t *cl, const bson_value_t *data, strata_error *err)
{
    mongoc_collection_t *coll = mongo_conn_collection(b->conn, cl, b->staging);
    bson_t filter = BSON_INITIALIZER;
    BSON_APPEND_VALUE(&filter, "_id", data);
    bson_t *upd = BCON_NEW("$set", "{", "state", BCON_UTF8("r"), "}", "$currentDate", "{", "at",
                           BCON_BOOL(true), "}");
    bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
    bson_error_t be;
    int rc = 0;
    /* Two replacers of one key retire the same chunks at once. An upsert
     * that met the other's insert is refused on the unique _id (FerretDB
     * v1 does not retry it as MongoDB does): the note is there now, and
     * the next try updates it. */
    for (int attempt = 0;; attempt++) {
        if (mongoc_collection_update_one(coll, &filter, upd, opts, NULL, &be))
            break;
        bool dup = mongo_conn_is_duplicate(&be) || strstr(be.message, "duplicate key value");
        if (!dup || attempt == 3) {
            rc = gfs_error(&be, "noting chunks to delete", err);
            break;
        }
    }
    bson_destroy(opts);
    bson_destroy(upd);
    bson_destroy(&filter);
    mongoc_collection_destroy(coll);
    return rc;
}

/* ---- whole-blob operations -------------------------------------------------------------- */

static int stage_whole(gfs_blobs *b, const char *key, const void *blob, size_t len, bool replace,
                       strata_error *err)
{
    gfs_stage *s = NULL;
    if (gfs_stage_begin(b, false, &s, err) != 0)
        return -1;
    if (gfs_stage_write(s, blob, len, err) != 0) {
        gfs_stage_abort(s);
        return -1;
    }
    return gfs_stage_commit(s, key, NULL, replace, err);
}

static int gfs_exists(blob_store *base, const char *key, bool *out, strata_error *err)
{
    gfs_file f;
    if (lookup((gfs_blobs *)base, key, &f, out, err) != 0)
        return -1;
    if (*out)
        gfs_file_clear(&f);
    return 0;
}

static int gfs_put(blob_store *base, const char *key, const void *blob, size_t len,
                   strata_error *err)
{
    bool there = false;
    if (gfs_exists(base, key, &there, err) != 0)
        return -1;
    if (there)
        return 0; /* content-addressed: the same key holds the same content */
    return stage_whole((gfs_blobs *)base, key, blob, len, false, err);
}

static int gfs_replace(blob_store *base, const char *key, const void *blob, size_t len,
                       strata_error *err)
{
    if (!blob_key_valid(key))
        return serr_set(err, SERR_INVALID, "bad blob key");
    return stage_whole((gfs_blobs *)base, key, blob, len, true, err);
}

static int gfs_get(blob_store *base, const char *key, size_t max_len, strata_buf *out,
                   strata_error *err)
{
    size_t at = out->len;
    for (int attempt = 0;; attempt++) {
        blob_reader *r = NULL;
        uint64_t total = 0;
        if (gfs_open_read(base, key, 0, &r, &total, err) != 0)
            return -1;
        if (total > max_len) {
            r->ops->close(r);
            return serr_set(err, SERR_TOO_LARGE, "blob %s holds %llu bytes, more than %zu", key,
                            (unsigned long long)total, max_len);
        }
        if (sbuf_reserve(out, (size_t)total + 1, err) != 0) {
            r->ops->close(r);
            return -1;
        }
        bool changed = false;
        long n;
        while ((n = gfs_read_ex(r, out->data + out->len, (size_t)total - (out->len - at), &changed,
                                err)) > 0)
            out->len += (size_t)n;
        r->ops->close(r);
        if (n == 0)
            return 0;
        out->len = at;
        /* replaced under the read: the key's new bytes are whole */
        if (!changed || attempt == 3)
            return -1;
    }
}

/* Reads and checks only the header: one chunk fetched. */
static int gfs_head(blob_store *base, const char *key, blob_header *h, strata_error *err)
{
    blob_reader *r = NULL;
    uint64_t total = 0;
    if (gfs_open_read(base, key, 0, &r, &total, err) != 0)
        return -1;
    gfs_reader_limit(r, 1);
    unsigned char buf[BLOB_HEADER_SIZE];
    size_t got = 0;
    long n = 1;
    while (got < sizeof buf && (n = r->ops->read(r, buf + got, sizeof buf - got, err)) > 0)
        got += (size_t)n;
    r->ops->close(r);
    if (n < 0)
        return -1;
    return blob_header_decode(buf, got, h, err); /* short: SERR_CORRUPT */
}

static int delete_by(gfs_blobs *b, mongoc_client_t *cl, const char *coll_name, const bson_t *filter,
                     bool many, int64_t *deleted, strata_error *err)
{
    mongoc_collection_t *coll = mongo_conn_collection(b->conn, cl, coll_name);
    bson_t reply;
    bson_error_t be;
    bool ok = many ? mongoc_collection_delete_many(coll, filter, NULL, &reply, &be)
                   : mongoc_collection_delete_one(coll, filter, NULL, &reply, &be);
    bson_iter_t it;
    if (ok && deleted != NULL)
        *deleted = bson_iter_init_find(&it, &reply, "deletedCount") ? bson_iter_as_int64(&it) : 0;
    bson_destroy(&reply);
    mongoc_collection_destroy(coll);
    return ok ? 0 : gfs_error(&be, "deleting from GridFS", err);
}

static int gfs_remove(blob_store *base, const char *key, strata_error *err)
{
    gfs_blobs *b = (gfs_blobs *)base;
    if (!blob_key_valid(key))
        return serr_set(err, SERR_INVALID, "bad blob key");
    mongoc_client_t *cl = mongo_conn_pop(b->conn);
    gfs_file f;
    bool found = false;
    int64_t n = 0;
    int rc = gfs_find_file(b, cl, key, &f, &found, err);
    if (rc != 0 || !found) {
        mongo_conn_push(b->conn, cl);
        return rc != 0 ? -1 : missing(err, key);
    }
    /* noted first: a crash after the files document goes leaves the chunks
     * to the sweep */
    bson_t ff = BSON_INITIALIZER, cf = BSON_INITIALIZER, mf = BSON_INITIALIZER;
    BSON_APPEND_VALUE(&ff, "_id", &f.id);
    BSON_APPEND_UTF8(&ff, "filename", key);
    BSON_APPEND_VALUE(&cf, "files_id", &f.data);
    BSON_APPEND_VALUE(&mf, "_id", &f.data);
    BSON_APPEND_UTF8(&mf, "state", "r");
    rc = gfs_mark_retired(b, cl, &f.data, err);
    if (rc == 0)
        rc = delete_by(b, cl, b->files, &ff, false, &n, err);
    if (rc == 0 && n == 0)
        rc = missing(err, key); /* another remover took it */
    if (rc == 0) {
        strata_error e2;
        if (delete_by(b, cl, b->chunks, &cf, true, NULL, &e2) != 0 ||
            delete_by(b, cl, b->staging, &mf, false, NULL, &e2) != 0)
            slog_warn("blobs: the chunks of removed blob %s wait for a sweep: %s", key, e2.detail);
    }
    bson_destroy(&ff);
    bson_destroy(&cf);
    bson_destroy(&mf);
    gfs_file_clear(&f);
    mongo_conn_push(b->conn, cl);
    return rc;
}

static int gfs_touch(blob_store *base, const char *key, strata_error *err)
{
    gfs_blobs *b = (gfs_blobs *)base;
    if (!blob_key_valid(key))
        return serr_set(err, SERR_INVALID, "bad blob key");
    mongoc_client_t *cl = mongo_conn_pop(b->conn);
    mongoc_collection_t *coll = mongo_conn_collection(b->conn, cl, b->files);
    bson_t *filter = BCON_NEW("filename", BCON_UTF8(key));
    bson_t *upd = BCON_NEW("$currentDate", "{", "mtime", BCON_BOOL(true), "}");
    bson_t reply;
    bson_error_t be;
    bson_iter_t it;
    int rc = 0;
    if (!mongoc_collection_update_one(coll, filter, upd, NULL, &reply, &be))
        rc = gfs_error(&be, "touching a GridFS blob", err);
    else if (!bson_iter_init_find(&it, &reply, "matchedCount") || bson_iter_as_int64(&it) == 0)
        rc = missing(err, key);
    bson_destroy(&reply);
    bson_destroy(upd);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    mongo_conn_push(b->conn, cl);
    return rc;
}

static int gfs_stat(blob_store *base, const char *key, uint64_t *size, int64_t *mtime_ms,
                    strata_error *err)
{
    gfs_file f;
    bool found = false;
    if (lookup((gfs_blobs *)base, key, &f, &found, err) != 0)
        return -1;
    if (!found)
        return missing(err, key);
    *size = (uint64_t)f.length;
    *mtime_ms = f.mtime_ms;
    gfs_file_clear(&f);
    return 0;
}

/* ---- list and the sweep ------------------------------------------------------------------- */

static int gfs_list(blob_store *base, blob_list_fn fn, void *ctx, strata_error *err)
{
    gfs_blobs *b = (gfs_blobs *)base;
    mongoc_client_t *cl = mongo_conn_pop(b->conn);
    mongoc_collection_t *coll = mongo_conn_collection(b->conn, cl, b->files);
    bson_t filter = BSON_INITIALIZER;
    bson_t *opts = BCON_NEW("batchSize", BCON_INT32(1000));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, opts, NULL);
    const bson_t *doc;
    bson_error_t be;
    bool stopped = false;
    int rc = 0;
    while (!stopped && mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        if (!bson_iter_init_find(&it, doc, "filename") || !BSON_ITER_HOLDS_UTF8(&it) ||
            !key_named(bson_iter_utf8(&it, NULL)))
            continue; /* staged, or not ours */
        char key[SHA256_HEX_LEN + 1];
        snprintf(key, sizeof key, "%s", bson_iter_utf8(&it, NULL));
        gfs_file f;
        strata_error e2;
        if (parse_file(doc, &f, &e2) != 0)
            continue; /* (a misshapen file is no blob: reads say so) */
        stopped = fn(ctx, key, (uint64_t)f.length, f.mtime_ms) != 0;
        gfs_file_clear(&f);
    }
    if (!stopped && mongoc_cursor_error(cur, &be))
        rc = gfs_error(&be, "listing GridFS blobs", err);
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    bson_destroy(&filter);
    mongoc_collection_destroy(coll);
    mongo_conn_push(b->conn, cl);
    if (rc == 0 && !stopped) {
        /* a whole walk is the collector's: it also clears crash debris */
        strata_error e2;
        unsigned removed = 0;
        if (blobs_gridfs_sweep_staging(base, BLOBS_GRIDFS_STAGING_MAX_AGE_MS, &removed, &e2) != 0)
            slog_warn("blobs: sweeping GridFS staging failed: %s", e2.detail);
        if (removed > 0)
            slog_info("blobs: removed %u abandoned GridFS staging items", removed);
    }
    return rc;
}

typedef struct marker {
    bson_value_t id;
    char state[2];
} marker;

/* Whether a files document reads its chunks from files_id id. */
static int chunks_in_use(gfs_blobs *b, mongoc_client_t *cl, const bson_value_t *id, bool *used,
                         strata_error *err)
{
    bson_t filter = BSON_INITIALIZER, or, a, c, ex;
    BSON_APPEND_ARRAY_BEGIN(&filter, "$or", & or);
    BSON_APPEND_DOCUMENT_BEGIN(& or, "0", &a);
    BSON_APPEND_VALUE(&a, "data", id);
    bson_append_document_end(& or, &a);
    BSON_APPEND_DOCUMENT_BEGIN(& or, "1", &c);
    BSON_APPEND_VALUE(&c, "_id", id);
    BSON_APPEND_DOCUMENT_BEGIN(&c, "data", &ex);
    BSON_APPEND_BOOL(&ex, "$exists", false);
    bson_append_document_end(&c, &ex);
    bson_append_document_end(& or, &c);
    bson_append_array_end(&filter, & or);
    gfs_file f;
    int rc = find_one_file(b, cl, &filter, &f, used, err);
    if (rc == 0 && *used)
        gfs_file_clear(&f);
    bson_destroy(&filter);
    return rc;
}

static void claim_id(bson_t *doc, const bson_value_t *id)
{
    bson_t sub;
    BSON_APPEND_DOCUMENT_BEGIN(doc, "_id", &sub);
    BSON_APPEND_VALUE(&sub, "claim", id);
    bson_append_document_end(doc, &sub);
}

int gfs_claim_stage(gfs_blobs *b, mongoc_client_t *cl, const bson_value_t *id, const char *by,
                    bool *won, char holder[16], strata_error *err)
{
    *won = false;
    holder[0] = '\0';
    mongoc_collection_t *coll = mongo_conn_collection(b->conn, cl, b->staging);
    bson_t doc = BSON_INITIALIZER;
    claim_id(&doc, id);
    BSON_APPEND_UTF8(&doc, "by", by);
    bson_error_t be;
    int rc = 0;
    if (mongoc_collection_insert_one(coll, &doc, NULL, NULL, &be)) {
        *won = true;
    } else if (gfs_error(&be, "claiming a staged GridFS upload", err) == -1 &&
               err->kind == SERR_CONFLICT) {
        /* lost: who holds it? */
        bson_t filter = BSON_INITIALIZER;
        claim_id(&filter, id);
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
        const bson_t *d;
        bson_iter_t it;
        if (mongoc_cursor_next(cur, &d) && bson_iter_init_find(&it, d, "by") &&
            BSON_ITER_HOLDS_UTF8(&it))
            snprintf(holder, 16, "%s", bson_iter_utf8(&it, NULL));
        else if (mongoc_cursor_error(cur, &be))
            rc = gfs_error(&be, "reading a GridFS upload's claim", err);
        mongoc_cursor_destroy(cur);
        bson_destroy(&filter);
    } else {
        rc = -1;
    }
    bson_destroy(&doc);
    mongoc_collection_destroy(coll);
    return rc;
}

int gfs_unclaim_stage(gfs_blobs *b, mongoc_client_t *cl, const bson_value_t *id, strata_error *err)
{
    bson_t filter = BSON_INITIALIZER;
    claim_id(&filter, id);
    int rc = delete_by(b, cl, b->staging, &filter, false, NULL, err);
    bson_destroy(&filter);
    return rc;
}

/* Deals with one old marker: claims a staging one, deletes its staged
 * files document and, when no file reads them, its chunks, then itself.
 * *done: the marker is gone. */
static int sweep_one(gfs_blobs *b, mongoc_client_t *cl, const marker *m, bool *done,
                     strata_error *err)
{
    *done = false;
    bson_t mf = BSON_INITIALIZER;
    BSON_APPEND_VALUE(&mf, "_id", &m->id);
    int rc = 0;
    if (strcmp(m->state, "w") == 0 || strcmp(m->state, "c") == 0) {
        /* an upload: a commit may claim it at this very moment, and only a
         * unique insert decides between the two on every server (a
         * commit's claim means it renamed or is renaming: left alone,
         * at worst one staged copy stays after a crash in between) */
        bool won;
        char holder[16];
        rc = gfs_claim_stage(b, cl, &m->id, "sweep", &won, holder, err);
        if (rc == 0 && !won && strcmp(holder, "sweep") != 0)
            rc = 1; /* a commit's */
        if (rc == 0) {
            /* so that the writer's next renewal sees it gone (advisory) */
            mongoc_collection_t *coll = mongo_conn_collection(b->conn, cl, b->staging);
            bson_t *upd = BCON_NEW("$set", "{", "state", BCON_UTF8("d"), "}");
            bson_error_t be;
            if (!mongoc_collection_update_one(coll, &mf, upd, NULL, NULL, &be))
                rc = gfs_error(&be, "marking a GridFS staging marker swept", err);
            bson_destroy(upd);
            mongoc_collection_destroy(coll);
        }
    }
    char name[GFS_NAME_MAX];
    if (rc == 0 && gfs_stage_name(&m->id, name)) {
        bson_t ff = BSON_INITIALIZER;
        BSON_APPEND_VALUE(&ff, "_id", &m->id);
        BSON_APPEND_UTF8(&ff, "filename", name);
        rc = delete_by(b, cl, b->files, &ff, false, NULL, err);
        bson_destroy(&ff);
    }
    bool used = false;
    if (rc == 0)
        rc = chunks_in_use(b, cl, &m->id, &used, err);
    if (rc == 0 && !used) {
        bson_t cf = BSON_INITIALIZER;
        BSON_APPEND_VALUE(&cf, "files_id", &m->id);
        rc = delete_by(b, cl, b->chunks, &cf, true, NULL, err);
        bson_destroy(&cf);
    }
    /* the sweep's claim stays, a small tombstone: a writer that was only
     * slow must find its upload taken when it commits */
    if (rc == 0)
        rc = delete_by(b, cl, b->staging, &mf, false, NULL, err);
    *done = rc == 0;
    bson_destroy(&mf);
    return rc < 0 ? -1 : 0;
}

int blobs_gridfs_sweep_staging(blob_store *base, int64_t age_ms, unsigned *removed,
                               strata_error *err)
{
    strata_error local;
    if (err == NULL)
        err = &local;
    if (removed)
        *removed = 0;
    if (base == NULL || base->ops != &GFS_OPS)
        return serr_set(err, SERR_INVALID, "not a GridFS blob store");
    gfs_blobs *b = (gfs_blobs *)base;
    marker *ms = calloc(SWEEP_MAX, sizeof *ms);
    if (ms == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory sweeping GridFS staging");
    mongoc_client_t *cl = mongo_conn_pop(b->conn);
    /* markers are stamped by the server's clock: their age by it too */
    int64_t now;
    if (mongo_conn_server_ms(cl, &now, err) != 0) {
        mongo_conn_push(b->conn, cl);
        free(ms);
        return -1;
    }
    mongoc_collection_t *coll = mongo_conn_collection(b->conn, cl, b->staging);
    int64_t before = now - (age_ms > 0 ? age_ms : 0);
    bson_t *filter = BCON_NEW("at", "{", "$lt", BCON_DATE_TIME(before), "}");
    bson_t *opts = BCON_NEW("limit", BCON_INT64(SWEEP_MAX));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    const bson_t *doc;
    bson_error_t be;
    size_t n = 0;
    int rc = 0;
    /* gathered first: no request is made while the cursor is open */
    while (n < SWEEP_MAX && mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        if (!bson_iter_init_find(&it, doc, "_id"))
            continue;
        bson_value_copy(bson_iter_value(&it), &ms[n].id);
        if (bson_iter_init_find(&it, doc, "state") && BSON_ITER_HOLDS_UTF8(&it))
            snprintf(ms[n].state, sizeof ms[n].state, "%s", bson_iter_utf8(&it, NULL));
        n++;
    }
    if (mongoc_cursor_error(cur, &be))
        rc = gfs_error(&be, "listing GridFS staging", err);
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    for (size_t i = 0; i < n; i++) {
        strata_error e;
        bool done = false;
        if (rc == 0 && sweep_one(b, cl, &ms[i], &done, &e) != 0)
            rc = serr_set(err, e.kind, "%s", e.detail);
        if (done && removed)
            (*removed)++;
        bson_value_destroy(&ms[i].id);
    }
    mongo_conn_push(b->conn, cl);
    free(ms);
    return rc;
}

/* ---- the store ------------------------------------------------------------------------------ */

static int gfs_health(blob_store *base, strata_error *err)
{
    return mongo_conn_ping(((gfs_blobs *)base)->probe, err);
}

static void gfs_close(blob_store *base)
{
    gfs_blobs *b = (gfs_blobs *)base;
    if (b == NULL)
        return;
    mongo_conn_close(b->conn);
    mongo_conn_close(b->probe);
    free(b);
}

static const blob_store_ops GFS_OPS = {
    .name = "gridfs",
    .put = gfs_put,
    .replace = gfs_replace,
    .get = gfs_get,
    .exists = gfs_exists,
    .head = gfs_head,
    .remove = gfs_remove,
    .touch = gfs_touch,
    .stat = gfs_stat,
    .list = gfs_list,
    .open_read = gfs_open_read,
    .begin_write = gfs_begin_write,
    .health = gfs_health,
    .close = gfs_close,
};

/* createIndexes for one collection: {keys..., name, unique} triples. */
static int make_index(mongoc_database_t *db, const char *coll, const char *name, bool unique,
                      const char *field1, const char *field2, strata_error *err)
{
    bson_t cmd = BSON_INITIALIZER, arr, ix, key;
    BSON_APPEND_UTF8(&cmd, "createIndexes", coll);
    BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &arr);
    BSON_APPEND_DOCUMENT_BEGIN(&arr, "0", &ix);
    BSON_APPEND_DOCUMENT_BEGIN(&ix, "key", &key);
    BSON_APPEND_INT32(&key, field1, 1);
    if (field2 != NULL)
        BSON_APPEND_INT32(&key, field2, 1);
    bson_append_document_end(&ix, &key);
    BSON_APPEND_UTF8(&ix, "name", name);
    if (unique)
        BSON_APPEND_BOOL(&ix, "unique", true);
    bson_append_document_end(&arr, &ix);
    bson_append_array_end(&cmd, &arr);
    bson_error_t be;
    bool ok = mongoc_database_write_command_with_opts(db, &cmd, NULL, NULL, &be);
    bson_destroy(&cmd);
    if (!ok) {
        char what[96];
        snprintf(what, sizeof what, "creating index %s on %s", name, coll);
        return gfs_error(&be, what, err);
    }
    return 0;
}

/* The schema document: written when missing, refused when newer. */
static int check_schema(gfs_blobs *b, mongoc_client_t *cl, strata_error *err)
{
    mongoc_collection_t *coll = mongo_conn_collection(b->conn, cl, b->meta);
    bson_t *filter = BCON_NEW("_id", BCON_UTF8("schema"));
    bson_t *upd =
        BCON_NEW("$setOnInsert", "{", "version", BCON_INT32(BLOBS_GRIDFS_SCHEMA_VERSION), "}");
    bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
    bson_error_t be;
    int rc = 0;
    if (!mongoc_collection_update_one(coll, filter, upd, opts, NULL, &be))
        rc = gfs_error(&be, "writing the GridFS schema document", err);
    mongoc_cursor_t *cur =
        rc == 0 ? mongoc_collection_find_with_opts(coll, filter, NULL, NULL) : NULL;
    const bson_t *doc;
    if (cur != NULL) {
        bson_iter_t it;
        if (!mongoc_cursor_next(cur, &doc)) {
            if (mongoc_cursor_error(cur, &be))
                rc = gfs_error(&be, "reading the GridFS schema document", err);
            else
                rc = serr_set(err, SERR_IO, "the GridFS schema document of %s vanished", b->bucket);
        } else if (!bson_iter_init_find(&it, doc, "version") || !BSON_ITER_HOLDS_NUMBER(&it) ||
                   bson_iter_as_int64(&it) < 1) {
            rc = serr_set(err, SERR_CORRUPT, "the GridFS schema document of %s is malformed",
                          b->bucket);
        } else if (bson_iter_as_int64(&it) > BLOBS_GRIDFS_SCHEMA_VERSION) {
            rc = serr_set(err, SERR_INVALID,
                          "GridFS bucket %s has layout version %lld, newer than this build's %d",
                          b->bucket, (long long)bson_iter_as_int64(&it),
                          BLOBS_GRIDFS_SCHEMA_VERSION);
        }
        mongoc_cursor_destroy(cur);
    }
    bson_destroy(opts);
    bson_destroy(upd);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    return rc;
}

static int prepare(gfs_blobs *b, strata_error *err)
{
    mongoc_client_t *cl = mongo_conn_pop(b->conn);
    mongoc_database_t *db = mongoc_client_get_database(cl, mongo_conn_db(b->conn));
    /* files_id_1_n_1 and filename_1_uploadDate_1 as libmongoc names them:
     * its upload stream makes them itself in an empty bucket */
    int rc = make_index(db, b->chunks, "files_id_1_n_1", true, "files_id", "n", err);
    if (rc == 0)
        rc = make_index(db, b->files, "filename_1_uploadDate_1", false, "filename", "uploadDate",
                        err);
    if (rc == 0)
        rc = make_index(db, b->files, "strata_filename", true, "filename", NULL, err);
    if (rc == 0)
        rc = make_index(db, b->files, "strata_data", false, "data", NULL, err);
    if (rc == 0)
        rc = make_index(db, b->staging, "strata_at", false, "at", NULL, err);
    if (rc == 0)
        rc = check_schema(b, cl, err);
    mongoc_database_destroy(db);
    mongo_conn_push(b->conn, cl);
    return rc;
}

blob_store *blobs_gridfs_open(const char *url, strata_error *err)
{
    char murl[URL_MAX], purl[URL_MAX + 128];
    gfs_blobs *b = calloc(1, sizeof *b);
    if (b == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory opening the GridFS blob store");
        return NULL;
    }
    b->base.ops = &GFS_OPS;
    if (blobs_gridfs_parse_url(url, murl, sizeof murl, b->bucket, err) != 0)
        goto fail;
    snprintf(b->files, sizeof b->files, "%s.files", b->bucket);
    snprintf(b->chunks, sizeof b->chunks, "%s.chunks", b->bucket);
    snprintf(b->staging, sizeof b->staging, "%s.staging", b->bucket);
    snprintf(b->meta, sizeof b->meta, "%s.meta", b->bucket);
    probe_url(murl, purl, sizeof purl);
    b->conn = mongo_conn_open(murl, "strata-blobs", err);
    if (b->conn == NULL)
        goto fail;
    b->probe = mongo_conn_open(purl, "strata-blobs-probe", err);
    if (b->probe == NULL || prepare(b, err) != 0)
        goto fail;
    return &b->base;
fail:
    gfs_close(&b->base);
    return NULL;
}
