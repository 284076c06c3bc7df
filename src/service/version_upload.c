/* A byte save received as a stream (versions.h, content_upload): the
 * body's bytes go to a staged blob as they arrive, compressed on the way
 * or kept in the client's codec, the payload hashed as it passes (the raw
 * content's hash is the body reader's: each byte is hashed once as raw
 * content and, when the payload differs from it, once as payload);
 * versions_save claims the key
 * and commits the staged blob, so memory per upload stays bounded (one
 * encoder, one hash) whatever the content's size. */
#include "versions_internal.h"

#include <stdlib.h>
#include <string.h>

#include "../common/log.h"

struct content_upload {
    versions_svc *svc;
    blob_writer *w;                  /* NULL once committed or dropped */
    enum scodec codec;               /* of the payload */
    bool passthrough;                /* the wire bytes are the payload */
    sencoder *enc;                   /* a plain body compressed on the way */
    sha256_ctx *payload_hash;        /* NULL when the payload is the raw bytes */
    uint64_t raw_size, payload_size; /* raw_size: a plain body's, as written */
    blob_header h;                   /* once finished */
};

void versions_upload_free(content_upload *u)
{
    if (u == NULL)
        return;
    if (u->w != NULL)
        u->w->ops->abort(u->w);
    sencoder_free(u->enc);
    sha256_free(u->payload_hash);
    free(u);
}

int versions_upload_begin(versions_svc *svc, enum scodec wire_codec, enum scodec store_codec,
                          content_upload **out, strata_error *err)
{
    *out = NULL;
    content_upload *u = calloc(1, sizeof *u);
    if (u == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    u->svc = svc;
    u->passthrough = wire_codec != SCODEC_NONE;
    u->codec = u->passthrough ? wire_codec : store_codec;
    /* a plain body stored raw is its own payload: the body reader's raw
     * hash is the payload's too, so it is not taken twice */
    bool raw_payload = !u->passthrough && u->codec == SCODEC_NONE;
    if ((!raw_payload && (u->payload_hash = sha256_new(err)) == NULL) ||
        (!u->passthrough && u->codec != SCODEC_NONE &&
         (u->enc = sencoder_new(u->codec, SCODEC_DEFAULT_LEVEL, SCODEC_SIZE_UNKNOWN, err)) ==
             NULL) ||
        svc->blobs->ops->begin_write(svc->blobs, &u->w, err) != 0) {
        versions_upload_free(u);
        return -1;
    }
    *out = u;
    return 0;
}

/* Payload bytes: to the staged blob, hashed. */
static int write_payload(void *ctx, const void *data, size_t len, strata_error *err)
{
    content_upload *u = ctx;
    u->payload_size += len;
    if (u->payload_hash != NULL && sha256_update(u->payload_hash, data, len, err) != 0)
        return -1;
    return u->w->ops->write(u->w, data, len, err);
}

int versions_upload_write(content_upload *u, const void *data, size_t len, strata_error *err)
{
    if (u->w == NULL)
        return serr_set(err, SERR_INTERNAL, "an upload written after its end");
    if (u->passthrough)
        return write_payload(u, data, len, err);
    if (len > u->svc->cfg.max_content || u->raw_size > u->svc->cfg.max_content - len)
        return serr_set(err, SERR_TOO_LARGE, "content exceeds the limit of %zu bytes",
                        u->svc->cfg.max_content);
    u->raw_size += len;
    if (u->enc == NULL)
        return write_payload(u, data, len, err);
    return sencoder_feed(u->enc, data, len, write_payload, u, err);
}

int versions_upload_finish(content_upload *u, uint64_t raw_size, const unsigned char *raw_sha256,
                           blob_header *h, strata_error *err)
{
    if (u->w == NULL)
        return serr_set(err, SERR_INTERNAL, "an upload finished twice");
    if (u->enc != NULL && sencoder_finish(u->enc, write_payload, u, err) != 0)
        return -1;
    memset(&u->h, 0, sizeof u->h);
    u->h.codec = u->codec;
    u->h.payload_size = u->payload_size;
    /* a plain body's bytes were all written here: the reader's count
     * must be ours, or the hash would name other bytes than the blob's */
    if (!u->passthrough && raw_size != u->raw_size)
        return serr_set(err, SERR_INTERNAL, "an upload of %llu bytes finished as %llu",
                        (unsigned long long)u->raw_size, (unsigned long long)raw_size);
    u->h.raw_size = raw_size;
    memcpy(u->h.raw_sha256, raw_sha256, SHA256_LEN);
    if (u->payload_hash == NULL)
        memcpy(u->h.payload_sha256, raw_sha256, SHA256_LEN);
    else if (sha256_final(u->payload_hash, u->h.payload_sha256, err) != 0)
        return -1;
    *h = u->h;
    return 0;
}

static void set_location(json_t *loc, const char *hash_hex, const blob_header *h)
{
    json_object_set_new(loc, "storage_type", json_string("blob"));
    json_object_set_new(loc, "key", json_string(hash_hex));
    json_object_set_new(loc, "compression", json_string(scodec_name(h->codec)));
    json_object_set_new(loc, "size_compressed", json_integer((json_int_t)h->payload_size));
}

int versions_place_upload(versions_svc *svc, content_upload *u, const char *hash_hex, json_t *loc,
                          strata_error *err)
{
    blob_store *b = svc->blobs;
    bool exists = false;
    int rc = b->ops->exists(b, hash_hex, &exists, err);
    if (rc == 0 && exists)
        rc = b->ops->touch(b, hash_hex, err); /* restarts its age for the grace period */
    if (rc != 0 && err->kind != SERR_NOT_FOUND)
        return -1;
    blob_header h;
    if (rc == 0 && exists) {
        if (blobs_check_stored(b, hash_hex, &h, err) == 0 && h.raw_size == u->h.raw_size) {
            set_location(loc, hash_hex, &h); /* shared: the staged copy is dropped */
            if (u->w != NULL) {
                u->w->ops->abort(u->w);
                u->w = NULL;
            }
            return 0;
        }
        if (err->kind != SERR_CORRUPT && err->kind != SERR_NOT_FOUND)
            return -1;
        if (u->w == NULL)
            return serr_set(err, SERR_RETRY, "the stored content is damaged; send it again");
        slog(SLOG_ERROR, "blob %s is damaged or missing (%s): replacing it from a save", hash_hex,
             err->detail);
        if (b->ops->remove(b, hash_hex, err) != 0 && err->kind != SERR_NOT_FOUND)
            return -1;
        versions_forget_blob(svc, hash_hex);
    }
    if (u->w == NULL)
        return serr_set(err, SERR_RETRY, "the content was collected meanwhile; send it again");
    unsigned char header[BLOB_HEADER_SIZE];
    blob_header_encode(&u->h, header);
    blob_writer *w = u->w;
    u->w = NULL; /* commit frees it, whatever the outcome */
    if (w->ops->commit(w, hash_hex, header, err) != 0)
        return -1;
    set_location(loc, hash_hex, &u->h);
    return 0;
}
