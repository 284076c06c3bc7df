#include "versions.h"
#include "../common/clock.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../codec/blob_format.h"
#include "../codec/json_canon.h"
#include "../codec/json_parse.h"
#include "../common/log.h"
#include "../common/strset.h"
#include "record_codec.h"
#include "resource_types.h"
#include "vocabulary.h"

#define SAVE_RETRIES     64
#define MAX_TAGS         100
#define MAX_TAG_LEN      128
#define MAX_DEPENDENCIES 1000
/* How long a fence set before a change refuses cache fills if the change
 * never ends it (a crash between the fence and the commit): longer than
 * any fence-to-commit interval, short enough to lose little caching. */
#define LATEST_FENCE_HOLD_MS 60000
/* How long a save waits for a collector to finish with a blob it wants:
 * past a maintenance lease's life, so a dead collector's key is freed. */
#define CLAIM_WAIT_MS 45000

struct versions_svc {
    store *st;
    blob_store *blobs;
    cache_manager *cache;
    versions_config cfg;
    access_stats *access;
    versions_hook hook;
    void *hook_ctx;
};

blob_store *versions_blobs(versions_svc *svc)
{
    return svc->blobs;
}

void versions_forget_blob(versions_svc *svc, const char *key)
{
    if (svc->cache == NULL)
        return;
    static const char *const types[] = {"dictionary", "corpus", "semantic",
                                        "literature", "trie",   "search"};
    char ckey[SHA256_HEX_LEN + 8], ns[L2_NS_MAX + 1];
    snprintf(ckey, sizeof ckey, "blob:%s", key);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        strata_error err;
        cache_internal_ns(types[i], ns, sizeof ns);
        cache_invalidate(svc->cache, ns, ckey, false, NULL, &err);
    }
}

void versions_notify_created(versions_svc *svc, const store_version *created, uint64_t prev_latest)
{
    versions_invalidate_latest(svc, created->type, created->id);
    if (svc->hook) {
        save_request rq = {.type = created->type, .id = created->id};
        svc->hook(svc->hook_ctx, created, prev_latest, &rq);
    }
}

void versions_set_hook(versions_svc *svc, versions_hook hook, void *ctx)
{
    svc->hook = hook;
    svc->hook_ctx = ctx;
}

store *versions_store(versions_svc *svc)
{
    return svc->st;
}

/* Cache keys, in the internal namespace of the resource type ("@corpus"),
 * which no /cache request can reach. */
static void latest_key(const char *id, char *out, size_t cap)
{
    snprintf(out, cap, "latest:%s", id);
}

static void blob_cache_key(const char *hash, char *out, size_t cap)
{
    snprintf(out, cap, "blob:%s", hash);
}

int versions_fence_latest(versions_svc *svc, const char *type, const char *id, strata_error *err)
{
    if (svc->cache == NULL)
        return 0;
    char key[STORE_ID_MAX + 16], ns[L2_NS_MAX + 1];
    latest_key(id, key, sizeof key);
    cache_internal_ns(type, ns, sizeof ns);
    return cache_fence_begin(svc->cache, ns, key, LATEST_FENCE_HOLD_MS, err);
}

void versions_invalidate_latest(versions_svc *svc, const char *type, const char *id)
{
    if (svc->cache == NULL)
        return;
    char key[STORE_ID_MAX + 16], ns[L2_NS_MAX + 1];
    latest_key(id, key, sizeof key);
    cache_internal_ns(type, ns, sizeof ns);
    strata_error err;
    /* a failure here is safe when the change began with
     * versions_fence_latest: its fence keeps readers off the cache */
    if (cache_invalidate(svc->cache, ns, key, true, NULL, &err) != 0)
        slog_error("cache invalidation of %s/%s failed: %s", type, id, err.detail);
}

versions_svc *versions_new(store *st, blob_store *blobs, cache_manager *cache,
                           const versions_config *cfg, strata_error *err)
{
    versions_svc *svc = calloc(1, sizeof *svc);
    if (svc == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    svc->st = st;
    svc->blobs = blobs;
    svc->cache = cache;
    svc->cfg = *cfg;
    svc->access = access_stats_new(st, cfg->access_flush_ms, err);
    if (svc->access == NULL) {
        free(svc);
        return NULL;
    }
    return svc;
}

void versions_free(versions_svc *svc)
{
    if (svc == NULL)
        return;
    access_stats_free(svc->access);
    free(svc);
}

int versions_check_resource(const char *type, const char *id, strata_error *err)
{
    if (resource_type_find(type) == NULL)
        return serr_set(err, SERR_NOT_FOUND, "unknown resource type '%.32s' (one of: %s)", type,
                        resource_type_names());
    return resource_id_check("resource id", id, STORE_ID_MAX, err);
}

static int parse_version(const char *version, uint64_t *vkey, strata_error *err)
{
    if (version == NULL || strcmp(version, "latest") == 0) {
        *vkey = 0;
        return 0;
    }
    if (semver_parse(version, vkey) != 0)
        return serr_set(err, SERR_INVALID, "version '%.32s' is not MAJOR.MINOR.PATCH or 'latest'",
                        version);
    if (*vkey == 0) /* 0 stands for "latest" inside; no version is numbered 0.0.0 */
        return serr_set(err, SERR_NOT_FOUND, "there is no version 0.0.0 (versions start at 1.0.0)");
    return 0;
}

/* ---- the envelope ---------------------------------------------------------- */

typedef struct save_plan {
    const resource_type_def *type;
    json_t *fields; /* the type's own fields */
    json_t *metadata;
    json_t *tags;
    json_t *deps_json;
    store_dep *deps;
    size_t ndeps;
    json_t *ttl;
    enum semver_bump bump;
    bool fold_case;
    char ns[STORE_NS_MAX + 1];
} save_plan;

static void plan_free(save_plan *p)
{
    json_decref(p->fields);
    json_decref(p->metadata);
    json_decref(p->tags);
    json_decref(p->deps_json);
    json_decref(p->ttl);
    free(p->deps);
}

static int parse_tags(save_plan *p, const json_t *v, strata_error *err)
{
    if (!json_is_array(v) || json_array_size(v) > MAX_TAGS)
        return serr_set(err, SERR_INVALID, "'tags' must be an array of at most %d strings",
                        MAX_TAGS);
    size_t i;
    const json_t *t;
    json_array_foreach(v, i, t)
    {
        if (!json_is_string(t) || json_string_length(t) == 0 || json_string_length(t) > MAX_TAG_LEN)
            return serr_set(err, SERR_INVALID, "tags[%zu] must be a string of 1-%d characters", i,
                            MAX_TAG_LEN);
    }
    p->tags = json_deep_copy(v);
    return 0;
}

static int parse_dependencies(save_plan *p, const json_t *v, strata_error *err)
{
    if (!json_is_array(v) || json_array_size(v) > MAX_DEPENDENCIES)
        return serr_set(err, SERR_INVALID, "'dependencies' must be an array of at most %d objects",
                        MAX_DEPENDENCIES);
    size_t n = json_array_size(v);
    p->deps = calloc(n ? n : 1, sizeof *p->deps);
    p->deps_json = json_array();
    if (p->deps == NULL || p->deps_json == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    size_t i;
    const json_t *d;
    json_array_foreach(v, i, d)
    {
        const char *type = json_string_value(json_object_get(d, "type"));
        const char *id = json_string_value(json_object_get(d, "id"));
        const json_t *ver = json_object_get(d, "version");
        char what[64];
        snprintf(what, sizeof what, "dependencies[%zu].id", i);
        if (!json_is_object(d) || type == NULL || id == NULL)
            return serr_set(err, SERR_INVALID,
                            "dependencies[%zu] must be an object with 'type' and 'id'", i);
        if (resource_type_find(type) == NULL)
            return serr_set(err, SERR_INVALID, "dependencies[%zu].type '%.32s' is not one of: %s",
                            i, type, resource_type_names());
        if (resource_id_check(what, id, STORE_ID_MAX, err) != 0)
            return -1;
        for (size_t k = 0; k < p->ndeps; k++)
            if (strcmp(p->deps[k].type, type) == 0 && strcmp(p->deps[k].id, id) == 0)
                return serr_set(err, SERR_INVALID,
                                "dependencies[%zu] names %s/%s again (dependencies[%zu]); a "
                                "version depends on one version of a resource",
                                i, type, id, k);
        store_dep *sd = &p->deps[p->ndeps++];
        snprintf(sd->type, sizeof sd->type, "%s", type);
        snprintf(sd->id, sizeof sd->id, "%s", id);
        if (ver != NULL && !json_is_null(ver) &&
            (!json_is_string(ver) || strcmp(json_string_value(ver), "latest") != 0)) {
            if (!json_is_string(ver) || semver_parse(json_string_value(ver), &sd->vkey) != 0)
                return serr_set(err, SERR_INVALID,
                                "dependencies[%zu].version must be MAJOR.MINOR.PATCH or 'latest'",
                                i);
            if (sd->vkey == 0)
                return serr_set(err, SERR_INVALID,
                                "dependencies[%zu]: %s/%s has no version 0.0.0 (versions start at "
                                "1.0.0)",
                                i, type, id);
        }
        char vs[SEMVER_STR_MAX];
        semver_format(sd->vkey, vs);
        json_array_append_new(p->deps_json, json_pack("{s:s, s:s, s:s?}", "type", type, "id", id,
                                                      "version", sd->vkey ? vs : NULL));
    }
    return 0;
}

/* Reads every envelope key into the plan; unknown keys are refused by
 * name so that a typo never silently drops data. */
static int plan_from_envelope(save_plan *p, const json_t *env, bool json_save, strata_error *err)
{
    if (!json_is_object(env))
        return serr_set(err, SERR_INVALID, "the body must be a JSON object (the save envelope)");
    p->fields = json_object();
    snprintf(p->ns, sizeof p->ns, "default");
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)env, key, v)
    {
        if (strcmp(key, "content") == 0) {
            if (!json_save)
                return serr_set(err, SERR_INVALID, "'content' is the body of a byte save");
        } else if (strcmp(key, "metadata") == 0) {
            if (!json_is_object(v))
                return serr_set(err, SERR_INVALID, "'metadata' must be an object");
            p->metadata = json_deep_copy(v);
        } else if (strcmp(key, "tags") == 0) {
            if (parse_tags(p, v, err) != 0)
                return -1;
        } else if (strcmp(key, "dependencies") == 0) {
            if (parse_dependencies(p, v, err) != 0)
                return -1;
        } else if (strcmp(key, "ttl") == 0) {
            long long ttl = 0;
            if (!json_is_null(v) && (!json_whole_number(v, &ttl) || ttl < 0))
                return serr_set(err, SERR_INVALID,
                                "'ttl' must be a non-negative integer (seconds)");
            p->ttl = json_is_null(v) ? json_null() : json_integer(ttl);
        } else if (strcmp(key, "bump") == 0) {
            if (!json_is_string(v) || semver_parse_bump(json_string_value(v), &p->bump) != 0)
                return serr_set(err, SERR_INVALID, "'bump' must be patch, minor or major");
        } else if (strcmp(key, "fold_case") == 0 && strcmp(p->type->name, "corpus") == 0) {
            if (!json_is_boolean(v))
                return serr_set(err, SERR_INVALID, "'fold_case' must be true or false");
            p->fold_case = json_is_true(v);
        } else if (strcmp(key, "namespace") == 0) {
            if (!json_is_string(v) ||
                resource_id_check("namespace", json_string_value(v), STORE_NS_MAX, err) != 0)
                return json_is_string(v)
                           ? -1
                           : serr_set(err, SERR_INVALID, "'namespace' must be a string");
            snprintf(p->ns, sizeof p->ns, "%s", json_string_value(v));
        } else {
            const field_def *f = resource_type_field(p->type, key);
            if (f == NULL)
                return serr_set(err, SERR_INVALID,
                                "unknown field '%.64s' for %s (extra data goes in 'metadata')", key,
                                p->type->name);
            if (f->computed)
                continue; /* the service computes it */
            if (field_check(f, v, err) != 0)
                return -1;
            long long whole;
            if (f->kind == FIELD_INT && json_whole_number(v, &whole))
                json_object_set_new(p->fields, key, json_integer(whole)); /* 5.0 is stored as 5 */
            else
                json_object_set(p->fields, key, (json_t *)v);
        }
    }
    for (size_t i = 0; i < p->type->nfields; i++) {
        const field_def *f = &p->type->fields[i];
        if (f->required && json_object_get(p->fields, f->name) == NULL)
            return serr_set(err, SERR_INVALID, "missing required field '%s' for %s", f->name,
                            p->type->name);
    }
    if (json_save && json_object_get(env, "content") == NULL)
        return serr_set(err, SERR_INVALID, "missing 'content' in the save envelope");
    return 0;
}

/* ---- placement --------------------------------------------------------------- */

/* Builds the stored form of new content: the client's frames kept as
 * they are (Accept-Encoding serves them unchanged), or compressed as the
 * type's policy says. */
static int encode_blob(const save_request *rq, const save_plan *p, const unsigned char *bytes,
                       size_t len, const char *hash_hex, strata_buf *blob, blob_header *h,
                       strata_error *err)
{
    if (rq->wire_codec != SCODEC_NONE && rq->wire != NULL) {
        unsigned char raw_sha[SHA256_LEN];
        sha256_from_hex(hash_hex, raw_sha);
        return blob_encode_precompressed(rq->wire_codec, rq->wire, rq->wire_len, len, raw_sha, blob,
                                         h, err);
    }
    return blob_encode(bytes, len, resource_codec_for(p->type, p->fields, len), blob, h, err);
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
        int rc = encode_blob(rq, p, bytes, len, hash_hex, &blob, &h, err);
        if (rc == 0)
            rc = exists ? svc->blobs->ops->replace(svc->blobs, hash_hex, blob.data, blob.len, err)
                        : svc->blobs->ops->put(svc->blobs, hash_hex, blob.data, blob.len, err);
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

/* A corpus's content becomes its normalised vocabulary (vocabulary.h):
 * the canonical JSON replaces what was sent, and the service sets
 * vocabulary_size and vocabulary_hash. */
static int normalize_corpus(save_plan *p, const json_t *json_content, const unsigned char *bytes,
                            size_t len, char **canon, size_t *canon_len, strata_error *err)
{
    vocabulary v;
    int rc = json_content ? vocabulary_from_json(json_content, p->fold_case, &v, err)
                          : vocabulary_from_text(bytes, len, p->fold_case, &v, err);
    if (rc != 0)
        return -1;
    json_t *j = vocabulary_to_json(&v);
    char hash[SHA256_HEX_LEN + 1];
    vocabulary_hash(&v, hash);
    json_object_set_new(p->fields, "vocabulary_size", json_integer((json_int_t)v.n));
    json_object_set_new(p->fields, "vocabulary_hash", json_string(hash));
    vocabulary_free(&v);
    *canon = j ? json_canon_dump(j, canon_len, err) : NULL;
    json_decref(j);
    if (*canon == NULL)
        return j ? -1 : serr_set(err, SERR_NOMEM, "out of memory");
    return 0;
}

/* Would these dependencies make the saved resource depend on itself? A
 * breadth-first walk over the latest versions' dependencies, complete or
 * refused: a graph past CYCLE_CHECK_MAX nodes, or a store error, fails the
 * save rather than passing it unchecked. Names the path of a cycle. */
#define CYCLE_CHECK_MAX 100000

typedef struct dep_node {
    char type[STORE_TYPE_MAX];
    char id[STORE_ID_MAX + 1];
    long from; /* the node that led here, -1 for a direct dependency */
} dep_node;

typedef struct dep_walk {
    dep_node *q;
    size_t n, cap;
    strset seen; /* "type/id" (ids hold no '/') */
} dep_walk;

/* Queues a node unless it was seen; -1 with err past the bound. */
static int walk_push(dep_walk *w, const char *type, const char *id, long from, strata_error *err)
{
    char key[STORE_TYPE_MAX + STORE_ID_MAX + 2];
    snprintf(key, sizeof key, "%s/%s", type, id);
    if (strset_has(&w->seen, key))
        return 0;
    if (w->n == CYCLE_CHECK_MAX)
        return serr_set(err, SERR_CONFLICT,
                        "the dependencies reach more than %d resources: too many to check for "
                        "cycles",
                        CYCLE_CHECK_MAX);
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        dep_node *q = realloc(w->q, cap * sizeof *q);
        if (q == NULL)
            return serr_set(err, SERR_NOMEM, "out of memory");
        w->q = q;
        w->cap = cap;
    }
    if (!strset_add(&w->seen, key) && w->seen.failed)
        return serr_set(err, SERR_NOMEM, "out of memory");
    dep_node *d = &w->q[w->n++];
    snprintf(d->type, sizeof d->type, "%s", type);
    snprintf(d->id, sizeof d->id, "%s", id);
    d->from = from;
    return 0;
}

static int cycle_error(const dep_walk *w, size_t at, const char *type, const char *id,
                       strata_error *err)
{
    char path[900];
    int len = snprintf(path, sizeof path, "%s/%s", type, id);
    long chain[64];
    int depth = 0;
    for (long i = (long)at; i >= 0 && depth < 64; i = w->q[i].from)
        chain[depth++] = i;
    for (int k = depth - 1; k >= 0 && len > 0 && (size_t)len < sizeof path; k--)
        len += snprintf(path + len, sizeof path - (size_t)len, " -> %s/%s", w->q[chain[k]].type,
                        w->q[chain[k]].id);
    return serr_set(err, SERR_CONFLICT, "dependency cycle: %s", path);
}

static int check_dependency_cycle(versions_svc *svc, store_txn *txn, const char *type,
                                  const char *id, const store_dep *deps, size_t ndeps,
                                  strata_error *err)
{
    dep_walk w = {0};
    strset_init(&w.seen);
    int rc = 0;
    for (size_t i = 0; i < ndeps && rc == 0; i++)
        rc = walk_push(&w, deps[i].type, deps[i].id, -1, err);
    for (size_t head = 0; head < w.n && rc == 0; head++) {
        if (strcmp(w.q[head].type, type) == 0 && strcmp(w.q[head].id, id) == 0) {
            rc = cycle_error(&w, head, type, id, err);
            break;
        }
        store_version v;
        if (svc->st->ops->get_version(svc->st, txn, w.q[head].type, w.q[head].id, 0, &v, err) !=
            0) {
            if (err->kind != SERR_NOT_FOUND)
                rc = -1;
            continue; /* removed: nothing to follow */
        }
        size_t i;
        json_t *d;
        json_array_foreach(json_object_get(v.doc, "dependencies"), i, d)
        {
            const char *dt = json_string_value(json_object_get(d, "type"));
            const char *di = json_string_value(json_object_get(d, "id"));
            if (rc == 0 && dt != NULL && di != NULL)
                rc = walk_push(&w, dt, di, (long)head, err);
        }
        store_version_clear(&v);
    }
    free(w.q);
    strset_free(&w.seen);
    return rc;
}

/* Every dependency names a resource that exists, and a version of it that
 * exists when it names one (400 naming the dependency otherwise). */
static int check_dependencies_exist(versions_svc *svc, store_txn *txn, const store_dep *deps,
                                    size_t ndeps, strata_error *err)
{
    for (size_t i = 0; i < ndeps; i++) {
        store_version v;
        if (svc->st->ops->get_version(svc->st, txn, deps[i].type, deps[i].id, deps[i].vkey, &v,
                                      err) == 0) {
            store_version_clear(&v);
            continue;
        }
        if (err->kind != SERR_NOT_FOUND)
            return -1;
        if (deps[i].vkey == 0)
            return serr_set(err, SERR_INVALID, "dependencies[%zu]: there is no resource %s/%s", i,
                            deps[i].type, deps[i].id);
        char vs[SEMVER_STR_MAX];
        semver_format(deps[i].vkey, vs);
        return serr_set(err, SERR_INVALID, "dependencies[%zu]: %s/%s has no version %s", i,
                        deps[i].type, deps[i].id, vs);
    }
    return 0;
}

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
    bool json_save = rq->bytes == NULL;
    bool fenced = false, run_hook = false;
    uint64_t claim = 0; /* our claim on the blob in the store, until put_version consumes it */
    uint64_t prev_latest = 0;
    char *canon = NULL;
    json_t *doc = NULL, *loc = NULL;
    int rc = -1;
    if (plan_from_envelope(&p, rq->envelope, json_save, err) != 0)
        goto done;

    /* the content bytes, and their hash: the version's identity */
    const json_t *json_content = json_save ? json_object_get(rq->envelope, "content") : NULL;
    const unsigned char *bytes = rq->bytes;
    size_t len = rq->len;
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
    if (sha256_oneshot(bytes ? bytes : (const unsigned char *)"", len, digest, err) != 0)
        goto done;
    sha256_to_hex(digest, hash);

    /* place the content: inline in the store, or a shared external blob,
     * claimed in the store first so that no collector removes it before
     * the version that uses it commits */
    bool external = p.type->always_external || len > svc->cfg.inline_threshold;
    if (external && claim_blob(svc, rq->txn, hash, &claim, err) != 0)
        goto done;
    loc = json_object();
    const char *ctype = json_save
                            ? "application/json"
                            : (rq->content_type ? rq->content_type : "application/octet-stream");
    save_request placed = *rq;
    if (canon != NULL)
        placed.wire = NULL; /* the bytes are not the client's: its frames no longer apply */
    if (external) {
        if (place_external(svc, &placed, &p, bytes, len, hash, loc, err) != 0)
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
         * crash or cache failure after the commit can leave it served. */
        if (rq->txn == NULL && !fenced) {
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
                versions_invalidate_latest(svc, rq->type, rq->id);
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
                place_external(svc, &placed, &p, bytes, len, hash, loc, err) != 0)
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
    if (fenced) /* nothing committed: lift the fence early */
        versions_invalidate_latest(svc, rq->type, rq->id);
    if (claim != 0 && rq->txn == NULL) { /* not consumed: give it back */
        strata_error e2;
        if (svc->st->ops->blob_release(svc->st, hash, claim, &e2) != 0)
            slog_warn("claim on blob %.12s not released (it lapses): %s", hash, e2.detail);
    }
    /* the cascade runs with no lock of ours held (it takes the trees
     * service's lock, which is taken before the blob lock elsewhere) */
    if (run_hook)
        svc->hook(svc->hook_ctx, out, prev_latest, rq);
    free(canon);
    json_decref(doc);
    json_decref(loc);
    plan_free(&p);
    return rc;
}

/* ---- reading --------------------------------------------------------------- */

/* A version or resource that is not there: 410 when a tombstone says who
 * removed it and when, 404 when it never existed. */
static void gone_or_missing(versions_svc *svc, const char *type, const char *id, uint64_t vkey,
                            const char *version, strata_error *err)
{
    store_tombstone t;
    strata_error e2;
    bool gone = svc->st->ops->get_tombstone(svc->st, type, id, vkey, &t, &e2) == 0;
    if (!gone && vkey == 0) /* no latest: the whole resource may have been removed */
        gone = svc->st->ops->get_tombstone(svc->st, type, id, 0, &t, &e2) == 0;
    if (!gone) {
        if (vkey == 0)
            serr_set(err, SERR_NOT_FOUND, "no resource %s/%s", type, id);
        else
            serr_set(err, SERR_NOT_FOUND, "no version %s of %s/%s", version, type, id);
        return;
    }
    time_t secs = (time_t)(t.removed_at_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char when[40];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (vkey == 0)
        serr_set(err, SERR_GONE, "%s/%s was removed by %s at %s", type, id, t.removed_by, when);
    else
        serr_set(err, SERR_GONE, "version %s of %s/%s was removed by %s at %s", version, type, id,
                 t.removed_by, when);
}

int versions_require(versions_svc *svc, const char *type, const char *id, strata_error *err)
{
    if (versions_check_resource(type, id, err) != 0)
        return -1;
    store_head head;
    if (svc->st->ops->get_head(svc->st, NULL, type, id, &head, err) != 0)
        return -1;
    if (head.latest_vkey != 0)
        return 0;
    gone_or_missing(svc, type, id, 0, "latest", err);
    return -1;
}

struct latest_load {
    versions_svc *svc;
    const char *type, *id;
};

static int load_latest(void *ctx, cache_value **out, strata_error *err)
{
    struct latest_load *l = ctx;
    store_version v;
    if (l->svc->st->ops->get_version(l->svc->st, NULL, l->type, l->id, 0, &v, err) != 0)
        return -1;
    strata_buf b;
    sbuf_init(&b, 0);
    int rc = record_encode(&v, &b, err);
    store_version_clear(&v);
    if (rc == 0) {
        *out = cache_value_new(b.data, b.len, "application/x-strata-record");
        if (*out == NULL)
            rc = serr_set(err, SERR_NOMEM, "out of memory");
    }
    sbuf_free(&b);
    return rc;
}

/* Latest records read through the cache (validated against L2, since a
 * write elsewhere replaces them); exact versions come from the store. A
 * cached copy is checked against what it claims to be (the latest record
 * of this resource) before it is used; one that is not is dropped and the
 * store answers instead. */
static int read_version(versions_svc *svc, const char *type, const char *id, uint64_t vkey,
                        store_version *out, strata_error *err)
{
    if (vkey != 0 || svc->cache == NULL)
        return svc->st->ops->get_version(svc->st, NULL, type, id, vkey, out, err);
    char key[STORE_ID_MAX + 16], ns[L2_NS_MAX + 1];
    latest_key(id, key, sizeof key);
    cache_internal_ns(type, ns, sizeof ns);
    struct latest_load l = {svc, type, id};
    cache_value *cv = NULL;
    enum cache_tier tier;
    if (cache_get_or_load(svc->cache, ns, key, true, load_latest, &l, &cv, &tier, err) != 0) {
        if (err->kind == SERR_NOT_FOUND)
            return -1;
        /* a cache that fails is bypassed, never trusted blindly nor fatal */
        slog_warn("cache read of %s/%s failed, reading the store: %s", type, id, err->detail);
        return svc->st->ops->get_version(svc->st, NULL, type, id, 0, out, err);
    }
    strata_error derr;
    int rc = record_decode(cv->data, cv->len, out, &derr);
    cache_value_unref(cv);
    if (rc == 0 && strcmp(out->type, type) == 0 && strcmp(out->id, id) == 0 && out->is_latest &&
        (out->blob_key[0] == '\0' || strcmp(out->blob_key, out->data_hash) == 0))
        return 0;
    if (rc == 0)
        store_version_clear(out);
    slog_error("cached latest record of %s/%s is not what it claims to be; dropped", type, id);
    cache_invalidate(svc->cache, ns, key, false, NULL, &derr);
    return svc->st->ops->get_version(svc->st, NULL, type, id, 0, out, err);
}

int versions_get(versions_svc *svc, const char *type, const char *id, const char *version,
                 store_version *out, strata_error *err)
{
    uint64_t vkey;
    if (versions_check_resource(type, id, err) != 0 || parse_version(version, &vkey, err) != 0)
        return -1;
    if (read_version(svc, type, id, vkey, out, err) != 0) {
        if (err->kind == SERR_NOT_FOUND)
            gone_or_missing(svc, type, id, vkey, version, err);
        return -1;
    }
    access_stats_hit(svc->access, type, id, out->vkey);
    return 0;
}

static int check_limit(const store_list_opts *o, strata_error *err)
{
    if (o->limit < 1 || o->limit > STORE_LIST_MAX)
        return serr_set(err, SERR_INVALID, "limit must be 1-%d", STORE_LIST_MAX);
    return 0;
}

int versions_list(versions_svc *svc, const char *type, const char *id, const store_list_opts *o,
                  store_page *out, strata_error *err)
{
    if (versions_check_resource(type, id, err) != 0 || check_limit(o, err) != 0)
        return -1;
    if (svc->st->ops->list_versions(svc->st, type, id, o, out, err) == 0)
        return 0;
    if (err->kind == SERR_NOT_FOUND) /* 410 for a removed resource, as its latest */
        gone_or_missing(svc, type, id, 0, "latest", err);
    return -1;
}

int versions_list_resources(versions_svc *svc, const char *type, const store_list_opts *o,
                            store_page *out, strata_error *err)
{
    if (resource_type_find(type) == NULL)
        return serr_set(err, SERR_NOT_FOUND, "unknown resource type '%.32s' (one of: %s)", type,
                        resource_type_names());
    if (check_limit(o, err) != 0)
        return -1;
    if (o->ns && resource_id_check("namespace", o->ns, STORE_NS_MAX, err) != 0)
        return -1;
    return svc->st->ops->list_resources(svc->st, type, o, out, err);
}

/* A corpus version a master aggregates (the child version its master
 * records), or a master's latest manifest, cannot be deleted: the tree
 * would name a version that is gone. 409, saying to detach first. */
static int check_tree_version_deletable(versions_svc *svc, store_txn *txn, const char *id,
                                        uint64_t vkey, strata_error *err)
{
    char parent[STORE_ID_MAX + 1];
    bool has_parent = false;
    tree_child *kids = NULL;
    size_t nkids = 0;
    if (svc->st->ops->tree_parent(svc->st, txn, id, parent, sizeof parent, &has_parent, err) != 0)
        return -1;
    if (has_parent) {
        if (svc->st->ops->tree_children(svc->st, txn, parent, &kids, &nkids, err) != 0)
            return -1;
        bool held = false;
        for (size_t i = 0; i < nkids; i++)
            held |= strcmp(kids[i].id, id) == 0 && kids[i].vkey == vkey;
        free(kids);
        if (held) {
            char vs[SEMVER_STR_MAX];
            semver_format(vkey, vs);
            return serr_set(err, SERR_CONFLICT,
                            "version %s of corpus %s is aggregated by master %s: detach it first "
                            "(DELETE /trees/%s/children/%s)",
                            vs, id, parent, parent, id);
        }
    }
    if (svc->st->ops->tree_children(svc->st, txn, id, &kids, &nkids, err) != 0)
        return -1;
    free(kids);
    store_head head;
    if (nkids > 0 && svc->st->ops->get_head(svc->st, txn, "corpus", id, &head, err) != 0)
        return -1;
    if (nkids > 0 && head.latest_vkey == vkey)
        return serr_set(err, SERR_CONFLICT,
                        "corpus %s is a master: its latest version is its tree's manifest", id);
    return 0;
}

/* One delete, its checks and its write in one store transaction, so that
 * no other node can attach, pin or re-link the version in between. */
struct delete_job {
    versions_svc *svc;
    const char *type, *id, *removed_by;
    uint64_t vkey;      /* 0: the resource */
    bool unless_pinned; /* retention: keep a version a latest depends on */
    bool pinned;        /* out: kept because of that */
    char pinned_by[STORE_TYPE_MAX + STORE_ID_MAX + 2];
    size_t count; /* out: versions removed (resource deletes) */
};

static int check_corpus_deletable(versions_svc *svc, store_txn *txn, const char *id,
                                  strata_error *err)
{
    /* a corpus in a tree: its masters aggregate it; detach it first */
    char parent[STORE_ID_MAX + 1];
    bool has_parent = false;
    tree_child *kids = NULL;
    size_t nkids = 0;
    if (svc->st->ops->tree_parent(svc->st, txn, id, parent, sizeof parent, &has_parent, err) != 0 ||
        svc->st->ops->tree_children(svc->st, txn, id, &kids, &nkids, err) != 0)
        return -1;
    free(kids);
    if (has_parent)
        return serr_set(err, SERR_CONFLICT, "corpus %s is a child of %s: detach it first", id,
                        parent);
    if (nkids > 0)
        return serr_set(err, SERR_CONFLICT,
                        "corpus %s is a master with %zu children: detach them first", id, nkids);
    return 0;
}

static int delete_in(store_txn *txn, void *ctx, strata_error *err)
{
    struct delete_job *j = ctx;
    versions_svc *svc = j->svc;
    bool corpus = strcmp(j->type, "corpus") == 0;
    j->pinned = false;
    j->count = 0;
    if (j->vkey == 0) {
        if (corpus && check_corpus_deletable(svc, txn, j->id, err) != 0)
            return -1;
        return svc->st->ops->delete_resource(svc->st, txn, j->type, j->id, j->removed_by, &j->count,
                                             err);
    }
    if (corpus && check_tree_version_deletable(svc, txn, j->id, j->vkey, err) != 0)
        return -1;
    if (j->unless_pinned) {
        if (svc->st->ops->version_pinned(svc->st, j->type, j->id, j->vkey, &j->pinned, j->pinned_by,
                                         sizeof j->pinned_by, err) != 0)
            return -1;
        if (j->pinned)
            return 0;
    }
    /* Blobs stay: only the collector removes a blob, once no version
     * references it and no save claims it (invariant 4). */
    return svc->st->ops->delete_version(svc->st, txn, j->type, j->id, j->vkey, j->removed_by, err);
}

/* Runs a delete in txn, or fenced in its own transaction. */
static int run_delete(versions_svc *svc, store_txn *txn, struct delete_job *j, strata_error *err)
{
    if (txn != NULL)
        return delete_in(txn, j, err);
    if (versions_fence_latest(svc, j->type, j->id, err) != 0)
        return -1;
    int rc = svc->st->ops->transact(svc->st, delete_in, j, err);
    versions_invalidate_latest(svc, j->type, j->id);
    return rc;
}

static int resolve_vkey(versions_svc *svc, store_txn *txn, const char *type, const char *id,
                        const char *version, uint64_t *vkey, strata_error *err)
{
    if (versions_check_resource(type, id, err) != 0 || parse_version(version, vkey, err) != 0)
        return -1;
    if (*vkey == 0) {
        store_head head;
        if (svc->st->ops->get_head(svc->st, txn, type, id, &head, err) != 0)
            return -1;
        *vkey = head.latest_vkey;
        if (*vkey == 0)
            return serr_set(err, SERR_NOT_FOUND, "no resource %s/%s", type, id);
    }
    return 0;
}

int versions_delete(versions_svc *svc, const char *type, const char *id, const char *version,
                    store_txn *txn, const char *removed_by, strata_error *err)
{
    struct delete_job j = {.svc = svc, .type = type, .id = id, .removed_by = removed_by};
    if (resolve_vkey(svc, txn, type, id, version, &j.vkey, err) != 0)
        return -1;
    int rc = run_delete(svc, txn, &j, err);
    if (rc != 0 && err->kind == SERR_NOT_FOUND)
        gone_or_missing(svc, type, id, j.vkey, version, err);
    return rc;
}

int versions_delete_unpinned(versions_svc *svc, const char *type, const char *id, uint64_t vkey,
                             const char *removed_by, bool *pinned, char *by, size_t by_cap,
                             strata_error *err)
{
    struct delete_job j = {.svc = svc,
                           .type = type,
                           .id = id,
                           .removed_by = removed_by,
                           .vkey = vkey,
                           .unless_pinned = true};
    if (versions_check_resource(type, id, err) != 0)
        return -1;
    int rc = run_delete(svc, NULL, &j, err);
    *pinned = rc == 0 && j.pinned;
    if (by != NULL && by_cap > 0)
        snprintf(by, by_cap, "%s", *pinned ? j.pinned_by : "");
    return rc;
}

int versions_delete_resource(versions_svc *svc, const char *type, const char *id, store_txn *txn,
                             const char *removed_by, size_t *count, strata_error *err)
{
    if (versions_check_resource(type, id, err) != 0)
        return -1;
    struct delete_job j = {.svc = svc, .type = type, .id = id, .removed_by = removed_by};
    int rc = run_delete(svc, txn, &j, err);
    if (rc == 0 && count)
        *count = j.count;
    if (rc != 0 && err->kind == SERR_NOT_FOUND)
        gone_or_missing(svc, type, id, 0, "latest", err);
    return rc;
}

struct blob_load {
    versions_svc *svc;
    const char *key;
};

static int load_blob(void *ctx, cache_value **out, strata_error *err)
{
    struct blob_load *l = ctx;
    strata_buf b;
    sbuf_init(&b, 0);
    blob_header h;
    int rc = blobs_get_verified(l->svc->blobs, l->key, l->svc->cfg.max_content + BLOB_HEADER_SIZE,
                                &b, &h, err);
    if (rc == 0) {
        *out = cache_value_new(b.data, b.len, "application/x-strata-blob");
        if (*out == NULL)
            rc = serr_set(err, SERR_NOMEM, "out of memory");
    }
    sbuf_free(&b);
    return rc;
}

/* A stored blob, through the cache (immutable: found by its hash, never
 * stale). Whatever tier it came from, its header, payload hash and raw
 * hash are checked against the key before anything is served (invariant
 * 3); a cached copy that fails is dropped and the blob store answers. */
static int read_blob(versions_svc *svc, const store_version *v, strata_buf *out, blob_header *h,
                     strata_error *err)
{
    size_t max = svc->cfg.max_content + BLOB_HEADER_SIZE;
    int rc;
    if (svc->cache != NULL) {
        char key[SHA256_HEX_LEN + 8], ns[L2_NS_MAX + 1];
        blob_cache_key(v->blob_key, key, sizeof key);
        cache_internal_ns(v->type, ns, sizeof ns);
        struct blob_load l = {svc, v->blob_key};
        cache_value *cv = NULL;
        enum cache_tier tier;
        strata_error cerr;
        if (cache_get_or_load(svc->cache, ns, key, false, load_blob, &l, &cv, &tier, &cerr) == 0) {
            if (blob_check_copy(cv->data, cv->len, v->blob_key, h, &cerr) == 0) {
                rc = sbuf_append(out, cv->data, cv->len, err);
                cache_value_unref(cv);
                return rc;
            }
            slog_error("cached copy of blob %s is damaged (%s); dropped", v->blob_key, cerr.detail);
            cache_invalidate(svc->cache, ns, key, false, NULL, &cerr);
            cache_value_unref(cv);
        }
        /* a failed or damaged copy: the blob store itself decides */
    }
    rc = blobs_get_verified(svc->blobs, v->blob_key, max, out, h, err);
    if (rc != 0 && err->kind == SERR_NOT_FOUND)
        serr_set(err, SERR_CORRUPT, "the content of %s/%s is missing from the blob store", v->type,
                 v->id);
    return rc;
}

void content_out_free(content_out *c)
{
    free(c->data);
    c->data = NULL;
}

int versions_content(versions_svc *svc, const store_version *v, unsigned accept_codecs,
                     content_out *out, strata_error *err)
{
    memset(out, 0, sizeof *out);
    const json_t *loc = json_object_get(v->doc, "content_location");
    const char *ctype = json_string_value(json_object_get(loc, "content_type"));
    snprintf(out->content_type, sizeof out->content_type, "%s",
             ctype ? ctype : "application/octet-stream");
    unsigned char digest[SHA256_LEN], want[SHA256_LEN];
    if (sha256_from_hex(v->data_hash, want) != 0)
        return serr_set(err, SERR_CORRUPT, "the record of %s/%s has a bad data hash", v->type,
                        v->id);
    if (v->blob_key[0] == '\0') {
        /* inline: small, so verify by hashing it again */
        if (sha256_oneshot(v->content ? v->content : (const unsigned char *)"", v->content_len,
                           digest, err) != 0)
            return -1;
        if (memcmp(digest, want, SHA256_LEN) != 0)
            return serr_set(err, SERR_CORRUPT, "stored content of %s/%s does not match its hash",
                            v->type, v->id);
        out->data = malloc(v->content_len ? v->content_len : 1);
        if (out->data == NULL)
            return serr_set(err, SERR_NOMEM, "out of memory");
        if (v->content_len)
            memcpy(out->data, v->content, v->content_len);
        out->len = v->content_len;
        return 0;
    }
    strata_buf blob;
    sbuf_init(&blob, 0);
    blob_header h;
    if (read_blob(svc, v, &blob, &h, err) != 0) {
        sbuf_free(&blob);
        return -1;
    }
    size_t plen = blob.len - BLOB_HEADER_SIZE;
    /* the blob was checked against its key; the key must be this record's
     * data hash (for raw payloads, the payload hash is the content hash) */
    if (memcmp(h.raw_sha256, want, SHA256_LEN) != 0) {
        sbuf_free(&blob);
        return serr_set(err, SERR_CORRUPT, "the blob of %s/%s holds other content", v->type, v->id);
    }
    if (h.codec == SCODEC_NONE || (accept_codecs & (1u << h.codec))) {
        if (h.codec == SCODEC_NONE && memcmp(h.payload_sha256, want, SHA256_LEN) != 0) {
            sbuf_free(&blob);
            return serr_set(err, SERR_CORRUPT, "stored content of %s/%s does not match its hash",
                            v->type, v->id);
        }
        memmove(blob.data, blob.data + BLOB_HEADER_SIZE, plen);
        out->data = sbuf_take(&blob, NULL);
        out->len = plen;
        out->encoding = h.codec;
    } else {
        strata_buf raw;
        sbuf_init(&raw, 0);
        if (blob_decode(blob.data, blob.len, svc->cfg.max_content, &raw, &h, err) != 0) {
            sbuf_free(&blob);
            sbuf_free(&raw);
            return -1;
        }
        sbuf_free(&blob);
        out->len = raw.len;
        out->data = sbuf_take(&raw, NULL);
        if (out->data == NULL)
            out->data = malloc(1);
    }
    return 0;
}

/* ---- records ------------------------------------------------------------------- */

void versions_access_counts(versions_svc *svc, const store_version *v, uint64_t *count,
                            int64_t *last_ms)
{
    access_stats_merge(svc->access, v->type, v->id, v->vkey, v->access_count, v->last_accessed_ms,
                       count, last_ms);
}
