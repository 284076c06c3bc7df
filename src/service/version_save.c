/* Saving a version: the content placed inline or in a blob claimed in the
 * store first, the head moved by compare-and-swap, the cache fenced
 * around the commit. */
#include "version_plan.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../codec/blob_format.h"
#include "../codec/json_canon.h"
#include "../common/clock.h"
#include "../common/fsutil.h"
#include "../common/log.h"

/* ---- placement --------------------------------------------------------------- */

/* Builds the stored form of new content: the client's frames kept as
 * they are (Accept-Encoding serves them unchanged), or compressed as the
 * type's policy says. */
static int encode_blob(const save_request *rq, const save_plan *p, const unsigned char *bytes,
                       size_t len, const char *hash_hex, strata_buf *blob, blob_header *h,
                       strata_error *err)
{
    /* hash_hex is the hash of bytes (computed once, by the body reader
     * when it could): not taken again here */
    unsigned char raw_sha[SHA256_LEN];
    sha256_from_hex(hash_hex, raw_sha);
    if (rq->wire_codec != SCODEC_NONE && rq->wire != NULL)
        return blob_encode_precompressed(rq->wire_codec, rq->wire, rq->wire_len, len, raw_sha, blob,
                                         h, err);
    return blob_encode_hashed(bytes, len, raw_sha, resource_codec_for(p->type, p->fields, len),
                              blob, h, err);
}

/* Whether the content goes into its blob as it lies, the header written
 * into the caller's room before it: stored raw (sent plain, and the
 * type's policy does not compress it) with room for a header. */
static bool frame_in_place(const save_request *rq, const save_plan *p, const unsigned char *bytes,
                           size_t len)
{
    return rq->room != NULL && rq->room_len >= BLOB_HEADER_SIZE && bytes == rq->bytes &&
           rq->room + rq->room_len == bytes && len == rq->len && rq->wire_codec == SCODEC_NONE &&
           resource_codec_for(p->type, p->fields, len) == SCODEC_NONE;
}

/* Is the stored blob of this content whole? Read and checked in full
 * (header, payload hash, raw hash and size): a version must never share
 * a damaged blob (its content could not be read). 1: whole, 0: missing
 * or damaged, -1: the blob store failed. */
static int shared_blob_whole(versions_svc *svc, const char *hash_hex, size_t len, blob_header *h,
                             strata_error *err)
{
    strata_buf stored;
    sbuf_init(&stored, 0);
    int rc = blobs_get_verified(svc->blobs, hash_hex, svc->cfg.max_content + BLOB_HEADER_SIZE,
                                &stored, h, err);
    sbuf_free(&stored);
    if (rc == 0)
        return h->raw_size == len ? 1 : 0;
    if (err->kind == SERR_CORRUPT || err->kind == SERR_NOT_FOUND || err->kind == SERR_TOO_LARGE) {
        slog_error("blob %s is damaged or missing (%s): rewriting it from a save", hash_hex,
                   err->detail);
        return 0;
    }
    return -1;
}

/* Writes the blob unless a whole one with this content exists, and fills
 * the content location. A whole blob is shared (invariant 5); a damaged
 * one is rewritten from the bytes in hand. */
static int place_external(versions_svc *svc, const save_request *rq, const save_plan *p,
                          const unsigned char *bytes, size_t len, const char *hash_hex, json_t *loc,
                          strata_error *err)
{
    /* The caller holds a claim on the key in the store until the version
     * commits, so no collector anywhere removes a blob this save decided
     * to share; the touch restarts its age for the grace period. */
    bool exists = false;
    int lrc = svc->blobs->ops->exists(svc->blobs, hash_hex, &exists, err);
    if (lrc == 0 && exists)
        lrc = svc->blobs->ops->touch(svc->blobs, hash_hex, err);
    if (lrc != 0) {
        if (err->kind != SERR_NOT_FOUND)
            return -1;
        exists = false; /* removed between the two calls: write it again */
    }
    blob_header h;
    int whole = exists ? shared_blob_whole(svc, hash_hex, len, &h, err) : 0;
    if (whole < 0)
        return -1;
    if (!whole) {
        strata_buf blob;
        sbuf_init(&blob, 0);
        const unsigned char *whole_blob;
        size_t blob_len;
        int rc = 0;
        if (frame_in_place(rq, p, bytes, len)) {
            unsigned char raw_sha[SHA256_LEN];
            sha256_from_hex(hash_hex, raw_sha);
            unsigned char *head = rq->room + rq->room_len - BLOB_HEADER_SIZE;
            blob_frame_raw_in_place(head, len, raw_sha, &h);
            whole_blob = head;
            blob_len = BLOB_HEADER_SIZE + len;
        } else {
            /* large content at an aligned address, so that a local blob
             * store can write it around the page cache (fs_write_atomic) */
            if (len >= FS_DIRECT_MIN)
                rc = sbuf_reserve_aligned(&blob, BLOB_HEADER_SIZE + len, FS_DIRECT_ALIGN, err);
            if (rc == 0)
                rc = encode_blob(rq, p, bytes, len, hash_hex, &blob, &h, err);
            whole_blob = blob.data;
            blob_len = blob.len;
        }
        if (rc == 0)
            rc = exists ? svc->blobs->ops->replace(svc->blobs, hash_hex, whole_blob, blob_len, err)
                        : svc->blobs->ops->put(svc->blobs, hash_hex, whole_blob, blob_len, err);
        sbuf_free(&blob);
        if (rc != 0)
            return -1;
        if (exists)
            versions_forget_blob(svc, hash_hex);
    }
    json_object_set_new(loc, "storage_type", json_string("blob"));
    json_object_set_new(loc, "key", json_string(hash_hex));
    json_object_set_new(loc, "compression", json_string(scodec_name(h.codec)));
    json_object_set_new(loc, "size_compressed", json_integer((json_int_t)h.payload_size));
    return 0;
}

/* The content of a save into the blob store: from memory, or the staged
 * blob of a streamed upload. */
static int place_content(versions_svc *svc, const save_request *rq, const save_plan *p,
                         const unsigned char *bytes, size_t len, const char *hash_hex, json_t *loc,
                         strata_error *err)
{
    if (rq->upload != NULL)
        return versions_place_upload(svc, rq->upload, hash_hex, loc, err);
    return place_external(svc, rq, p, bytes, len, hash_hex, loc, err);
}

/* A corpus's content becomes its normalised vocabulary (vocabulary.h):
 * the canonical JSON replaces what was sent, and the service sets
 * vocabulary_size and vocabulary_hash. */
static bool etag_matches(const char *header, const char *hash)
{
    /* If-Match: "hash", hash, W/"hash", a list, or * */
    const char *p = header;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == '*')
            return true;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        if (*p == '"')
            p++;
        if (strncmp(p, hash, SHA256_HEX_LEN) == 0 &&
            (p[SHA256_HEX_LEN] == '"' || p[SHA256_HEX_LEN] == ',' || p[SHA256_HEX_LEN] == ' ' ||
             p[SHA256_HEX_LEN] == '\0'))
            return true;
        while (*p && *p != ',')
            p++;
    }
    return false;
}

/* Claims blob `key` in the store. A key a collector has doomed is free
 * again once it ends (milliseconds; a collector that died is relieved when
 * its lease lapses): outside a transaction, wait for that; inside one,
 * SERR_RETRY makes transact() run the whole transaction again. */
static int claim_blob(versions_svc *svc, store_txn *txn, const char *key, uint64_t *claim,
                      strata_error *err)
{
    uint64_t give_up = clock_mono_ms() + CLAIM_WAIT_MS;
    for (;;) {
        if (svc->st->ops->blob_claim(svc->st, txn, key, claim, err) == 0)
            return 0;
        if (err->kind != SERR_RETRY || txn != NULL || clock_mono_ms() > give_up)
            return -1;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int versions_save(versions_svc *svc, const save_request *rq, store_version *out, bool *created,
                  strata_error *err)
{
    memset(out, 0, sizeof *out);
    *created = false;
    if (versions_check_resource(rq->type, rq->id, err) != 0)
        return -1;
    save_plan p = {.type = resource_type_find(rq->type)};
    bool json_save = rq->bytes == NULL && rq->upload == NULL;
    blob_header uh; /* a streamed upload's */
    bool fenced = false, run_hook = false;
    bool unconfirmed = false; /* committed (or found) but not invalidated: not acknowledged */
    uint64_t claim = 0; /* our claim on the blob in the store, until put_version consumes it */
    uint64_t prev_latest = 0;
    pthread_mutex_t *stripe = NULL; /* held from the head's read to the commit */
    char *canon = NULL;
    json_t *doc = NULL, *loc = NULL;
    int rc = -1;
    if (plan_from_envelope(&p, rq->envelope, json_save, err) != 0)
        goto done;

    /* the content bytes, and their hash: the version's identity */
    const json_t *json_content = json_save ? json_object_get(rq->envelope, "content") : NULL;
    const unsigned char *bytes = rq->bytes;
    size_t len = rq->len;
    if (rq->upload != NULL) {
        if (versions_upload_finish(rq->upload, rq->upload_raw_size, rq->upload_raw_sha256, &uh,
                                   err) != 0)
            goto done;
        if (uh.raw_size > svc->cfg.max_content) {
            serr_set(err, SERR_TOO_LARGE, "content of %llu bytes exceeds the limit of %zu",
                     (unsigned long long)uh.raw_size, svc->cfg.max_content);
            goto done;
        }
        len = (size_t)uh.raw_size;
    }
    if (json_save) {
        canon = json_canon_dump(json_content, &len, err);
        if (canon == NULL)
            goto done;
        bytes = (const unsigned char *)canon;
    }
    if (len > svc->cfg.max_content) {
        serr_set(err, SERR_TOO_LARGE, "content of %zu bytes exceeds the limit of %zu", len,
                 svc->cfg.max_content);
        goto done;
    }
    bool corpus = strcmp(p.type->name, "corpus") == 0;
    if (corpus && rq->computed == NULL) {
        tree_child *kids = NULL;
        size_t nkids = 0;
        if (svc->st->ops->tree_children(svc->st, rq->txn, rq->id, &kids, &nkids, err) != 0)
            goto done;
        free(kids);
        if (nkids > 0) {
            serr_set(err, SERR_CONFLICT,
                     "corpus %s is a master: its versions follow its children (see /trees/%s)",
                     rq->id, rq->id);
            goto done;
        }
    }
    if (rq->computed != NULL) {
        /* a master's manifest: the trees service computed its fields */
        const char *k;
        json_t *val;
        json_object_foreach((json_t *)rq->computed, k, val)
        {
            json_object_set(p.fields, k, val);
        }
    } else if (corpus && rq->upload != NULL) {
        serr_set(err, SERR_TOO_LARGE, "a corpus is read whole: send it below the streaming size");
        goto done;
    } else if (corpus) {
        char *norm = NULL;
        if (normalize_corpus(&p, json_content, bytes, len, &norm, &len, err) != 0)
            goto done;
        free(canon);
        canon = norm;
        bytes = (const unsigned char *)canon;
        json_save = true; /* stored as canonical JSON, whatever was sent */
    }
    if (rq->computed == NULL && p.ndeps > 0 &&
        (check_dependencies_exist(svc, rq->txn, p.deps, p.ndeps, err) != 0 ||
         check_dependency_cycle(svc, rq->txn, rq->type, rq->id, p.deps, p.ndeps, err) != 0))
        goto done;
    if (rq->validate_only) {
        rc = 0;
        goto done;
    }

    unsigned char digest[SHA256_LEN];
    char hash[SHA256_HEX_LEN + 1];
    if (rq->upload != NULL)
        memcpy(digest, uh.raw_sha256, SHA256_LEN);
    else if (canon == NULL && rq->bytes_sha256 != NULL)
        memcpy(digest, rq->bytes_sha256, SHA256_LEN); /* the body reader's */
    else if (sha256_oneshot(bytes ? bytes : (const unsigned char *)"", len, digest, err) != 0)
        goto done;
    sha256_to_hex(digest, hash);

    /* place the content: inline in the store, or a shared external blob,
     * claimed in the store first so that no collector removes it before
     * the version that uses it commits */
    bool external =
        p.type->always_external || len > svc->cfg.inline_threshold || rq->upload != NULL;
    if (external && claim_blob(svc, rq->txn, hash, &claim, err) != 0)
        goto done;
    loc = json_object();
    const char *ctype = json_save
                            ? "application/json"
                            : (rq->content_type ? rq->content_type : "application/octet-stream");
    save_request placed = *rq;
    if (canon != NULL) { /* the bytes are not the client's: its frames and room do not apply */
        placed.wire = NULL;
        placed.room = NULL;
    }
    if (external) {
        if (place_content(svc, &placed, &p, bytes, len, hash, loc, err) != 0)
            goto done;
    } else {
        json_object_set_new(loc, "storage_type", json_string("inline"));
        json_object_set_new(loc, "compression", json_string("none"));
        json_object_set_new(loc, "size_compressed", json_integer((json_int_t)len));
    }
    json_object_set_new(loc, "size_bytes", json_integer((json_int_t)len));
    char checksum[80];
    snprintf(checksum, sizeof checksum, "sha256:%s", hash);
    json_object_set_new(loc, "checksum", json_string(checksum));
    json_object_set_new(loc, "content_type", json_string(ctype));

    doc = json_deep_copy(p.fields);
    json_object_set(doc, "content_location", loc);
    json_object_set_new(doc, "metadata", p.metadata ? json_incref(p.metadata) : json_object());
    json_object_set_new(doc, "tags", p.tags ? json_incref(p.tags) : json_array());
    json_object_set_new(doc, "dependencies", p.deps_json ? json_incref(p.deps_json) : json_array());
    json_object_set_new(doc, "ttl", p.ttl ? json_incref(p.ttl) : json_null());

    if (rq->txn == NULL) { /* released at done */
        stripe = versions_save_stripe(svc, rq->type, rq->id);
        pthread_mutex_lock(stripe);
    }
    for (int attempt = 0; attempt < SAVE_RETRIES; attempt++) {
        store_head head;
        if (svc->st->ops->get_head(svc->st, rq->txn, rq->type, rq->id, &head, err) != 0)
            goto done;
        /* the head carries the latest's hash: no record is read here
         * unless it is the answer */
        uint64_t latest = head.latest_vkey, max = head.max_vkey;
        if (rq->if_match != NULL &&
            (latest == 0 || !etag_matches(rq->if_match, head.latest_hash))) {
            serr_set(err, SERR_PRECONDITION,
                     latest == 0 ? "If-Match given but %s/%s has no version yet"
                                 : "If-Match does not match the latest version of %s/%s",
                     rq->type, rq->id);
            goto done;
        }
        if (latest != 0 && strcmp(head.latest_hash, hash) == 0) {
            /* same as the latest: no new version (invariant 5) */
            if (svc->st->ops->get_version(svc->st, rq->txn, rq->type, rq->id, latest, out, err) !=
                0) {
                if (err->kind == SERR_NOT_FOUND)
                    continue; /* deleted meanwhile: read the head again */
                goto done;
            }
            /* this answer acknowledges the latest: make sure no cache
             * serves an older one (the save that made it may have been
             * answered 503 for want of this very step) */
            strata_error ierr;
            if (rq->txn == NULL && versions_invalidate_latest(svc, rq->type, rq->id, &ierr) != 0)
                unconfirmed = true;
            rc = 0;
            goto done;
        }
        uint64_t vkey = semver_next(max, p.bump);
        if (vkey == 0) {
            serr_set(err, SERR_CONFLICT, "%s/%s has used up its version numbers", rq->type, rq->id);
            goto done;
        }
        store_version v = {0};
        snprintf(v.type, sizeof v.type, "%s", rq->type);
        snprintf(v.id, sizeof v.id, "%s", rq->id);
        snprintf(v.ns, sizeof v.ns, "%s", p.ns);
        v.vkey = vkey;
        v.created_at_ms = clock_wall_ms();
        snprintf(v.data_hash, sizeof v.data_hash, "%s", hash);
        if (external)
            snprintf(v.blob_key, sizeof v.blob_key, "%s", hash);
        v.doc = json_incref(doc);
        if (!external && len > 0) {
            v.content = malloc(len);
            if (v.content == NULL) {
                json_decref(v.doc);
                serr_set(err, SERR_NOMEM, "out of memory");
                goto done;
            }
            memcpy(v.content, bytes, len);
        }
        v.content_len = external ? 0 : len;
        /* Invariant 6: the cached latest record is fenced before the commit
         * (a batch or tree change fences before its own commit), so that no
         * crash or cache failure after the commit can leave it served.
         * A save that creates the resource (no latest version) has nothing
         * to fence: no cache holds a latest record of it (a delete fenced
         * and dropped the last one, absence is never cached, and a fill
         * begun before a later change of the key cannot land), and a
         * racing creator that wins makes this one retry, fencing then. */
        if (rq->txn == NULL && !fenced && latest != 0) {
            if (versions_fence_latest(svc, rq->type, rq->id, err) != 0) {
                store_version_clear(&v);
                goto done;
            }
            fenced = true;
        }
        if (svc->st->ops->put_version(svc->st, rq->txn, &v, latest, max, p.deps, p.ndeps, claim,
                                      err) == 0) {
            claim = 0; /* consumed */
            /* the fence's end: the cache may fill again from the new head */
            if (rq->txn == NULL) {
                strata_error ierr;
                if (fenced)
                    unconfirmed = versions_invalidate_latest(svc, rq->type, rq->id, &ierr) != 0;
                fenced = false;
                run_hook = svc->hook != NULL;
                prev_latest = latest;
            }
            *out = v;
            *created = true;
            rc = 0;
            goto done;
        }
        store_version_clear(&v);
        if (err->kind == SERR_RETRY && rq->txn == NULL && claim != 0) {
            /* the claim lapsed (a save slower than claims live): claim the
             * blob again and make sure it is still there */
            claim = 0;
            json_object_clear(loc);
            if (claim_blob(svc, NULL, hash, &claim, err) != 0 ||
                place_content(svc, &placed, &p, bytes, len, hash, loc, err) != 0)
                goto done;
            json_object_set_new(loc, "size_bytes", json_integer((json_int_t)len));
            json_object_set_new(loc, "checksum", json_string(checksum));
            json_object_set_new(loc, "content_type", json_string(ctype));
            continue;
        }
        if (err->kind != SERR_CONFLICT || rq->txn != NULL)
            goto done;
        /* another writer moved the head first: try again on the new head */
    }
    serr_set(err, SERR_CONFLICT, "too many concurrent writers on %s/%s; try again", rq->type,
             rq->id);
done:
    if (stripe != NULL)
        pthread_mutex_unlock(stripe);
    if (fenced) { /* nothing committed: lift the fence early (it expires if this fails) */
        strata_error ierr;
        versions_invalidate_latest(svc, rq->type, rq->id, &ierr);
    }
    if (claim != 0 && rq->txn == NULL) { /* not consumed: give it back */
        strata_error e2;
        if (svc->st->ops->blob_release(svc->st, hash, claim, &e2) != 0)
            slog_warn("claim on blob %.12s not released (it lapses): %s", hash, e2.detail);
    }
    /* the cascade runs with no lock of ours held (it takes the trees
     * service's lock, which is taken before the blob lock elsewhere) */
    if (run_hook)
        svc->hook(svc->hook_ctx, out, prev_latest, rq);
    if (rc == 0 && unconfirmed) {
        store_version_clear(out);
        *created = false;
        rc = versions_unconfirmed(err, "the version");
    }
    free(canon);
    json_decref(doc);
    json_decref(loc);
    plan_free(&p);
    return rc;
}
