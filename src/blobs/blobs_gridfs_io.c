/* The GridFS blob store's streamed reads and staged writes (see
 * blobs_gridfs.h). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/clock.h"
#include "../common/log.h"
#include "blobs_gridfs_int.h"

/* a live writer renews its marker this often: only dead ones age */
#define RENEW_MS (5 * 60 * 1000)

static bool same_value(const bson_value_t *a, const bson_value_t *b)
{
    if (a->value_type != b->value_type)
        return false;
    switch (a->value_type) {
    case BSON_TYPE_OID:
        return bson_oid_equal(&a->value.v_oid, &b->value.v_oid);
    case BSON_TYPE_INT32:
        return a->value.v_int32 == b->value.v_int32;
    case BSON_TYPE_INT64:
        return a->value.v_int64 == b->value.v_int64;
    case BSON_TYPE_UTF8:
        return a->value.v_utf8.len == b->value.v_utf8.len &&
               memcmp(a->value.v_utf8.str, b->value.v_utf8.str, a->value.v_utf8.len) == 0;
    default:
        return false;
    }
}

/* ---- streamed reads ------------------------------------------------------------------------ */

typedef struct gfs_reader {
    blob_reader base;
    gfs_blobs *b;
    gfs_file f;
    char key[SHA256_HEX_LEN + 1];
    uint64_t next; /* offset of the next byte to fetch */
    int max_chunks;
    strata_buf buf;
    size_t at; /* bytes of buf handed out */
    bool failed, changed;
} gfs_reader;

/* After a fetch found the chunks wrong: SERR_IO (and changed) when the
 * key's file is gone or reads other chunks now, else SERR_CORRUPT. */
static int chunk_trouble(gfs_reader *r, mongoc_client_t *cl, const char *what, long long n,
                         strata_error *err)
{
    gfs_file now;
    bool found = false;
    strata_error e2;
    if (gfs_find_file_by_id(r->b, cl, &r->f.id, &now, &found, &e2) != 0)
        return serr_set(err, e2.kind, "%s", e2.detail);
    bool same =
        found && now.named_key && now.length == r->f.length && same_value(&now.data, &r->f.data);
    if (found)
        gfs_file_clear(&now);
    if (!same) {
        r->changed = true;
        return serr_set(err, SERR_IO, "blob %s was removed or replaced while being read", r->key);
    }
    return serr_set(err, SERR_CORRUPT, "blob %s: chunk %lld %s", r->key, n, what);
}

/* Fetches the chunks from r->next on, at most BLOBS_GRIDFS_READ_CHUNKS. */
static int fetch(gfs_reader *r, strata_error *err)
{
    const int64_t cs = r->f.chunk_size, len = r->f.length;
    const int64_t nchunks = (len + cs - 1) / cs, first = (int64_t)(r->next / (uint64_t)cs);
    size_t skip = (size_t)(r->next % (uint64_t)cs);
    int64_t count = nchunks - first;
    if (count > r->max_chunks)
        count = r->max_chunks;
    r->buf.len = 0;
    r->at = 0;
    if (sbuf_reserve(&r->buf, (size_t)(count * cs), err) != 0)
        return -1;
    /* one equality query per chunk: FerretDB v1 serves {files_id, n} from
     * its index, where a range on n makes it read every chunk of the file */
    bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
    mongoc_client_t *cl = mongo_conn_pop(r->b->conn);
    mongoc_collection_t *coll = mongo_conn_collection(r->b->conn, cl, r->b->chunks);
    bson_error_t be;
    int64_t want = first;
    const char *trouble = NULL;
    int rc = 0;
    for (; rc == 0 && trouble == NULL && want < first + count; want++) {
        bson_t filter = BSON_INITIALIZER;
        BSON_APPEND_VALUE(&filter, "files_id", &r->f.data);
        BSON_APPEND_INT32(&filter, "n", (int32_t)want);
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, opts, NULL);
        const bson_t *doc;
        bson_iter_t it;
        const uint8_t *data = NULL;
        uint32_t dlen = 0;
        bson_subtype_t sub;
        int64_t expect = want < nchunks - 1 ? cs : len - (nchunks - 1) * cs;
        if (!mongoc_cursor_next(cur, &doc)) {
            if (mongoc_cursor_error(cur, &be))
                rc = gfs_error(&be, "reading GridFS chunks", err);
            else
                trouble = "is missing";
        } else if (!bson_iter_init_find(&it, doc, "data") || !BSON_ITER_HOLDS_BINARY(&it)) {
            trouble = "holds no data";
        } else if (bson_iter_binary(&it, &sub, &dlen, &data), (int64_t)dlen != expect) {
            trouble = "has the wrong size";
        } else {
            memcpy(r->buf.data + r->buf.len, data + skip, dlen - skip);
            r->buf.len += dlen - skip;
            skip = 0;
        }
        mongoc_cursor_destroy(cur);
        bson_destroy(&filter);
    }
    if (rc == 0 && trouble != NULL)
        rc = chunk_trouble(r, cl, trouble, (long long)(want - 1), err);
    mongoc_collection_destroy(coll);
    mongo_conn_push(r->b->conn, cl);
    bson_destroy(opts);
    if (rc != 0) {
        r->buf.len = 0;
        return -1;
    }
    r->next += r->buf.len;
    return 0;
}

long gfs_read_ex(blob_reader *base, void *out, size_t cap, bool *changed, strata_error *err)
{
    strata_error local;
    if (err == NULL)
        err = &local;
    gfs_reader *r = (gfs_reader *)base;
    if (r->failed) {
        *changed = r->changed;
        return serr_set(err, SERR_IO, "the read of blob %s failed earlier", r->key);
    }
    if (r->at == r->buf.len) {
        if (r->next >= (uint64_t)r->f.length || cap == 0)
            return 0;
        if (fetch(r, err) != 0) {
            r->failed = true;
            *changed = r->changed;
            return -1;
        }
    }
    size_t n = r->buf.len - r->at;
    if (n > cap)
        n = cap;
    if (n > LONG_MAX)
        n = LONG_MAX;
    memcpy(out, r->buf.data + r->at, n);
    r->at += n;
    return (long)n;
}

static long gfs_read(blob_reader *base, void *out, size_t cap, strata_error *err)
{
    bool changed = false;
    return gfs_read_ex(base, out, cap, &changed, err);
}

static void gfs_reader_close(blob_reader *base)
{
    gfs_reader *r = (gfs_reader *)base;
    if (r == NULL)
        return;
    gfs_file_clear(&r->f);
    sbuf_free(&r->buf);
    free(r);
}

static const blob_reader_ops GFS_READER_OPS = {.read = gfs_read, .close = gfs_reader_close};

void gfs_reader_limit(blob_reader *base, int chunks)
{
    ((gfs_reader *)base)->max_chunks = chunks > 0 ? chunks : 1;
}

int gfs_open_read(blob_store *base, const char *key, uint64_t offset, blob_reader **out,
                  uint64_t *total, strata_error *err)
{
    gfs_blobs *b = (gfs_blobs *)base;
    *out = NULL;
    if (!blob_key_valid(key))
        return serr_set(err, SERR_INVALID, "bad blob key");
    gfs_reader *r = calloc(1, sizeof *r);
    if (r == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory opening blob %s", key);
    r->base.ops = &GFS_READER_OPS;
    r->b = b;
    memcpy(r->key, key, sizeof r->key);
    sbuf_init(&r->buf, 0);
    bool found = false;
    mongoc_client_t *cl = mongo_conn_pop(b->conn);
    int rc = gfs_find_file(b, cl, key, &r->f, &found, err);
    mongo_conn_push(b->conn, cl);
    if (rc != 0 || !found) {
        free(r);
        return rc != 0 ? -1 : serr_set(err, SERR_NOT_FOUND, "blob %s is missing", key);
    }
    r->max_chunks = BLOBS_GRIDFS_READ_CHUNKS;
    r->next = offset; /* past the end: nothing to read, as a file's reader */
    *total = (uint64_t)r->f.length;
    *out = &r->base;
    return 0;
}

/* ---- staged writes -------------------------------------------------------------------------- */

struct gfs_stage {
    gfs_blobs *b;
    mongoc_client_t *cl; /* held from begin to commit or abort */
    mongoc_database_t *db;
    mongoc_gridfs_bucket_t *bucket;
    mongoc_stream_t *stream;
    bool closed; /* the stream saved its files document */
    bson_value_t id;
    char name[GFS_NAME_MAX];
    uint64_t written;
    unsigned char *first; /* with a reserved header: chunk 0 as written */
    size_t first_len;
    uint64_t renewed_ms;
    bool failed;
};

static void stage_free(gfs_stage *s)
{
    if (s->stream != NULL) {
        /* destroying an unsaved upload stream would save it */
        if (!s->closed)
            mongoc_gridfs_bucket_abort_upload(s->stream);
        mongoc_stream_destroy(s->stream);
    }
    mongoc_gridfs_bucket_destroy(s->bucket);
    if (s->db != NULL)
        mongoc_database_destroy(s->db);
    mongo_conn_push(s->b->conn, s->cl);
    atomic_fetch_sub(&s->b->uploads, 1);
    free(s->first);
    free(s);
}

static int by_id(mongoc_collection_t *coll, const char *field, const bson_value_t *id,
                 const char *name, const char *state, const bson_t *upd, bool many, int64_t *count,
                 strata_error *err, const char *what)
{
    bson_t filter = BSON_INITIALIZER, reply;
    BSON_APPEND_VALUE(&filter, field, id);
    if (name != NULL)
        BSON_APPEND_UTF8(&filter, "filename", name);
    if (state != NULL)
        BSON_APPEND_UTF8(&filter, "state", state);
    bson_error_t be;
    bool ok;
    if (upd != NULL)
        ok = mongoc_collection_update_one(coll, &filter, upd, NULL, &reply, &be);
    else if (many)
        ok = mongoc_collection_delete_many(coll, &filter, NULL, &reply, &be);
    else
        ok = mongoc_collection_delete_one(coll, &filter, NULL, &reply, &be);
    bson_iter_t it;
    if (ok && count != NULL)
        *count = bson_iter_init_find(&it, &reply, upd ? "matchedCount" : "deletedCount")
                     ? bson_iter_as_int64(&it)
                     : 0;
    bson_destroy(&reply);
    bson_destroy(&filter);
    return ok ? 0 : gfs_error(&be, what, err);
}

/* One operation on the stage's marker, files document or chunks. */
static int on_coll(gfs_stage *s, const char *coll_name, const char *field, const char *name,
                   const char *state, const bson_t *upd, bool many, int64_t *count,
                   strata_error *err, const char *what)
{
    mongoc_collection_t *coll = mongo_conn_collection(s->b->conn, s->cl, coll_name);
    int rc = by_id(coll, field, &s->id, name, state, upd, many, count, err, what);
    mongoc_collection_destroy(coll);
    return rc;
}

/* Deletes what the stage stored; the marker last, and only when the rest
 * went (else the sweep finishes). */
static void stage_drop(gfs_stage *s)
{
    strata_error e;
    if (s->stream != NULL && !s->closed) {
        mongoc_gridfs_bucket_abort_upload(s->stream);
        mongoc_stream_destroy(s->stream);
        s->stream = NULL;
    }
    if (on_coll(s, s->b->files, "_id", s->name, NULL, NULL, false, NULL, &e,
                "dropping a staged GridFS file") != 0 ||
        on_coll(s, s->b->chunks, "files_id", NULL, NULL, NULL, true, NULL, &e,
                "dropping staged GridFS chunks") != 0 ||
        on_coll(s, s->b->staging, "_id", NULL, NULL, NULL, false, NULL, &e,
                "dropping a GridFS staging marker") != 0 ||
        gfs_unclaim_stage(s->b, s->cl, &s->id, &e) != 0)
        slog_warn("blobs: staged GridFS upload %s waits for a sweep: %s", s->name, e.detail);
    stage_free(s);
}

void gfs_stage_abort(gfs_stage *s)
{
    if (s != NULL)
        stage_drop(s);
}

static int stream_failed(gfs_stage *s, const char *what, strata_error *err)
{
    bson_error_t be;
    s->failed = true;
    if (s->stream != NULL && mongoc_gridfs_bucket_stream_error(s->stream, &be))
        return gfs_error(&be, what, err);
    return serr_set(err, SERR_IO, "%s failed", what);
}

/* Moves the marker's time on (state "w" only: a swept one fails). */
static int renew(gfs_stage *s, strata_error *err)
{
    bson_t *upd = BCON_NEW("$currentDate", "{", "at", BCON_BOOL(true), "}");
    int64_t n = 0;
    int rc = on_coll(s, s->b->staging, "_id", NULL, "w", upd, false, &n, err,
                     "renewing a GridFS staging marker");
    bson_destroy(upd);
    if (rc == 0 && n == 0)
        rc = serr_set(err, SERR_IO, "staged GridFS upload %s was swept as abandoned", s->name);
    if (rc == 0)
        s->renewed_ms = clock_mono_ms();
    return rc;
}

int gfs_stage_write(gfs_stage *s, const void *data, size_t len, strata_error *err)
{
    if (s->failed)
        return serr_set(err, SERR_IO, "an earlier write to this blob failed");
    if (len == 0)
        return 0;
    if (s->first != NULL && s->first_len < BLOBS_GRIDFS_CHUNK) {
        size_t k = BLOBS_GRIDFS_CHUNK - s->first_len;
        k = k < len ? k : len;
        memcpy(s->first + s->first_len, data, k);
        s->first_len += k;
    }
    /* (libmongoc's stream writes every byte, or fails) */
    ssize_t n = mongoc_stream_write(s->stream, (void *)data, len, 0);
    bson_error_t be;
    if (n != (ssize_t)len || mongoc_gridfs_bucket_stream_error(s->stream, &be))
        return stream_failed(s, "writing to GridFS", err);
    s->written += len;
    if (clock_mono_ms() - s->renewed_ms > RENEW_MS && renew(s, err) != 0) {
        s->failed = true;
        return -1;
    }
    return 0;
}

int gfs_stage_begin(gfs_blobs *b, bool reserve_header, gfs_stage **out, strata_error *err)
{
    *out = NULL;
    int cap = mongo_conn_pool_size(b->conn) / 2;
    if (atomic_fetch_add(&b->uploads, 1) >= (cap > 0 ? cap : 1)) {
        atomic_fetch_sub(&b->uploads, 1);
        return serr_set(err, SERR_UNAVAILABLE,
                        "too many uploads to GridFS in progress (at most %d): try again later",
                        cap > 0 ? cap : 1);
    }
    gfs_stage *s = calloc(1, sizeof *s);
    if (s == NULL) {
        atomic_fetch_sub(&b->uploads, 1);
        return serr_set(err, SERR_NOMEM, "out of memory starting a GridFS upload");
    }
    s->b = b;
    s->cl = mongo_conn_pop(b->conn);
    s->db = mongoc_client_get_database(s->cl, mongo_conn_db(b->conn));
    bson_t *opts = BCON_NEW("bucketName", BCON_UTF8(b->bucket), "chunkSizeBytes",
                            BCON_INT32((int32_t)BLOBS_GRIDFS_CHUNK));
    bson_error_t be;
    s->bucket = mongoc_gridfs_bucket_new(s->db, opts, NULL, &be);
    bson_destroy(opts);
    if (s->bucket == NULL) {
        gfs_error(&be, "opening the GridFS bucket", err);
        stage_free(s);
        return -1;
    }
    s->id.value_type = BSON_TYPE_OID;
    bson_oid_init(&s->id.value.v_oid, NULL);
    gfs_stage_name(&s->id, s->name);
    /* the marker before any chunk: a crash leaves nothing the sweep misses */
    bson_t *upd = BCON_NEW("$set", "{", "state", BCON_UTF8("w"), "}", "$currentDate", "{", "at",
                           BCON_BOOL(true), "}");
    bson_t *uopts = BCON_NEW("upsert", BCON_BOOL(true));
    mongoc_collection_t *coll = mongo_conn_collection(b->conn, s->cl, b->staging);
    bson_t filter = BSON_INITIALIZER;
    BSON_APPEND_VALUE(&filter, "_id", &s->id);
    bool ok = mongoc_collection_update_one(coll, &filter, upd, uopts, NULL, &be);
    bson_destroy(&filter);
    mongoc_collection_destroy(coll);
    bson_destroy(uopts);
    bson_destroy(upd);
    if (!ok) {
        gfs_error(&be, "writing a GridFS staging marker", err);
        stage_free(s);
        return -1;
    }
    s->renewed_ms = clock_mono_ms();
    s->stream =
        mongoc_gridfs_bucket_open_upload_stream_with_id(s->bucket, &s->id, s->name, NULL, &be);
    if (s->stream == NULL) {
        gfs_error(&be, "opening a GridFS upload stream", err);
        stage_drop(s);
        return -1;
    }
    if (reserve_header) {
        static const unsigned char zero[BLOB_HEADER_SIZE];
        s->first = malloc(BLOBS_GRIDFS_CHUNK);
        if (s->first == NULL) {
            serr_set(err, SERR_NOMEM, "out of memory starting a GridFS upload");
            stage_drop(s);
            return -1;
        }
        if (gfs_stage_write(s, zero, sizeof zero, err) != 0) {
            stage_drop(s);
            return -1;
        }
    }
    *out = s;
    return 0;
}

/* Puts the header at the front of chunk 0, now saved. */
static int patch_header(gfs_stage *s, const unsigned char *header, strata_error *err)
{
    memcpy(s->first, header, BLOB_HEADER_SIZE);
    bson_t *upd = BCON_NEW("$set", "{", "data",
                           BCON_BIN(BSON_SUBTYPE_BINARY, s->first, (uint32_t)s->first_len), "}");
    mongoc_collection_t *coll = mongo_conn_collection(s->b->conn, s->cl, s->b->chunks);
    bson_t filter = BSON_INITIALIZER, reply;
    BSON_APPEND_VALUE(&filter, "files_id", &s->id);
    BSON_APPEND_INT32(&filter, "n", 0);
    bson_error_t be;
    bson_iter_t it;
    int rc = 0;
    if (!mongoc_collection_update_one(coll, &filter, upd, NULL, &reply, &be))
        rc = gfs_error(&be, "writing a blob's header to GridFS", err);
    else if (!bson_iter_init_find(&it, &reply, "matchedCount") || bson_iter_as_int64(&it) != 1)
        rc = serr_set(err, SERR_IO, "chunk 0 of staged GridFS upload %s is missing", s->name);
    bson_destroy(&reply);
    bson_destroy(&filter);
    mongoc_collection_destroy(coll);
    bson_destroy(upd);
    return rc;
}

/* The key exists: points its files document at the staged chunks (one
 * conditional update), the old chunks left to the sweep. 1: the key
 * changed meanwhile (try again). */
static int swap_into(gfs_stage *s, const char *key, strata_error *err)
{
    gfs_file o;
    bool found = false;
    if (gfs_find_file(s->b, s->cl, key, &o, &found, err) != 0)
        return -1;
    if (!found)
        return 1; /* removed meanwhile: the rename may work now */
    int rc = gfs_mark_retired(s->b, s->cl, &o.data, err);
    bson_t filter = BSON_INITIALIZER, set, cd, ex, reply;
    BSON_APPEND_VALUE(&filter, "_id", &o.id);
    BSON_APPEND_UTF8(&filter, "filename", key);
    if (o.has_data) {
        BSON_APPEND_VALUE(&filter, "data", &o.data);
    } else {
        BSON_APPEND_DOCUMENT_BEGIN(&filter, "data", &ex);
        BSON_APPEND_BOOL(&ex, "$exists", false);
        bson_append_document_end(&filter, &ex);
    }
    bson_t upd = BSON_INITIALIZER;
    BSON_APPEND_DOCUMENT_BEGIN(&upd, "$set", &set);
    BSON_APPEND_INT64(&set, "length", (int64_t)s->written);
    BSON_APPEND_INT32(&set, "chunkSize", (int32_t)BLOBS_GRIDFS_CHUNK);
    BSON_APPEND_VALUE(&set, "data", &s->id);
    bson_append_document_end(&upd, &set);
    BSON_APPEND_DOCUMENT_BEGIN(&upd, "$currentDate", &cd);
    BSON_APPEND_BOOL(&cd, "mtime", true);
    bson_append_document_end(&upd, &cd);
    mongoc_collection_t *coll = mongo_conn_collection(s->b->conn, s->cl, s->b->files);
    bson_error_t be;
    bson_iter_t it;
    if (rc == 0) {
        if (!mongoc_collection_update_one(coll, &filter, &upd, NULL, &reply, &be))
            rc = gfs_error(&be, "replacing a GridFS blob", err);
        else if (!bson_iter_init_find(&it, &reply, "matchedCount") || bson_iter_as_int64(&it) != 1)
            rc = 1;
        bson_destroy(&reply);
    }
    mongoc_collection_destroy(coll);
    bson_destroy(&upd);
    bson_destroy(&filter);
    gfs_file_clear(&o);
    return rc;
}

int gfs_stage_commit(gfs_stage *s, const char *key, const unsigned char *header, bool replace,
                     strata_error *err)
{
    strata_error local;
    if (err == NULL)
        err = &local;
    if (s->failed) {
        serr_set(err, SERR_IO, "an earlier write to this blob failed");
        goto drop;
    }
    if (!blob_key_valid(key)) {
        serr_set(err, SERR_INVALID, "bad blob key");
        goto drop;
    }
    if (!replace) { /* the key keeps the bytes it has: no need to finish */
        gfs_file f;
        bool found = false;
        if (gfs_find_file(s->b, s->cl, key, &f, &found, err) != 0)
            goto drop;
        if (found) {
            gfs_file_clear(&f);
            stage_drop(s);
            return 0;
        }
    }
    bson_error_t be;
    if (mongoc_stream_close(s->stream) != 0 || mongoc_gridfs_bucket_stream_error(s->stream, &be)) {
        stream_failed(s, "saving a GridFS upload", err);
        goto drop;
    }
    s->closed = true;
    if (s->first != NULL && header == NULL) {
        /* a streamed write reserved its header: committing one is its contract */
        serr_set(err, SERR_INTERNAL, "a streamed GridFS write committed without its header");
        goto drop;
    }
    if (s->first != NULL && patch_header(s, header, err) != 0)
        goto drop;
    /* claimed: a sweep can no longer take it (nor can this take a swept
     * one); a unique insert, atomic on every server (gfs_claim_stage) */
    bool won;
    char holder[16];
    int64_t n = 0;
    int rc = gfs_claim_stage(s->b, s->cl, &s->id, "commit", &won, holder, err);
    if (rc == 0 && !won)
        rc = serr_set(err, SERR_IO, "staged GridFS upload %s was swept as abandoned", s->name);
    if (rc != 0)
        goto drop;
    bson_t *rename = BCON_NEW("$set", "{", "filename", BCON_UTF8(key), "}", "$currentDate", "{",
                              "mtime", BCON_BOOL(true), "}");
    for (int attempt = 0; attempt < 5; attempt++) {
        strata_error e2;
        rc = on_coll(s, s->b->files, "_id", s->name, NULL, rename, false, &n, &e2,
                     "committing a GridFS blob");
        if (rc == 0 && n == 1)
            break; /* visible under key, whole */
        if (rc == 0) {
            rc = serr_set(err, SERR_IO, "staged GridFS upload %s vanished before its commit",
                          s->name);
            break;
        }
        if (e2.kind != SERR_CONFLICT) {
            *err = e2;
            break;
        }
        if (!replace) {
            rc = 1; /* stored meanwhile: same key, same content */
            break;
        }
        rc = swap_into(s, key, err);
        if (rc == 0) {
            /* its chunks are the key's now: only the files document goes */
            if (on_coll(s, s->b->files, "_id", s->name, NULL, NULL, false, NULL, &e2,
                        "dropping a staged GridFS file") != 0)
                slog_warn("blobs: staged GridFS file %s waits for a sweep: %s", s->name, e2.detail);
            break;
        }
        if (rc < 0)
            break;
        rc = serr_set(err, SERR_RETRY, "blob %s kept changing while being replaced", key);
    }
    bson_destroy(rename);
    if (rc == 1) {
        stage_drop(s);
        return 0;
    }
    if (rc != 0)
        goto drop;
    strata_error e3;
    if (on_coll(s, s->b->staging, "_id", NULL, NULL, NULL, false, NULL, &e3,
                "deleting a GridFS staging marker") != 0 ||
        gfs_unclaim_stage(s->b, s->cl, &s->id, &e3) != 0)
        slog_warn("blobs: GridFS staging marker %s waits for a sweep: %s", s->name, e3.detail);
    stage_free(s);
    return 0;
drop:
    stage_drop(s);
    return -1;
}

/* ---- blob_writer ---------------------------------------------------------------------------- */

typedef struct gfs_writer {
    blob_writer base;
    gfs_stage *s;
} gfs_writer;

static int gfs_w_write(blob_writer *base, const void *data, size_t len, strata_error *err)
{
    return gfs_stage_write(((gfs_writer *)base)->s, data, len, err);
}

static int gfs_w_commit(blob_writer *base, const char *key,
                        const unsigned char header[BLOB_HEADER_SIZE], strata_error *err)
{
    gfs_writer *w = (gfs_writer *)base;
    int rc = gfs_stage_commit(w->s, key, header, false, err);
    free(w);
    return rc;
}

static void gfs_w_abort(blob_writer *base)
{
    gfs_writer *w = (gfs_writer *)base;
    if (w == NULL)
        return;
    gfs_stage_abort(w->s);
    free(w);
}

static const blob_writer_ops GFS_WRITER_OPS = {
    .write = gfs_w_write, .commit = gfs_w_commit, .abort = gfs_w_abort};

int gfs_begin_write(blob_store *base, blob_writer **out, strata_error *err)
{
    *out = NULL;
    gfs_writer *w = calloc(1, sizeof *w);
    if (w == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory starting a streamed blob");
    w->base.ops = &GFS_WRITER_OPS;
    if (gfs_stage_begin((gfs_blobs *)base, true, &w->s, err) != 0) {
        free(w);
        return -1;
    }
    *out = &w->base;
    return 0;
}
