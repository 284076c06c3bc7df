/* The versions service: the object, cache keys and fences, reading
 * records (latest ones through the cache), listing, access counts. Saving,
 * deleting and content live in version_*.c (see versions_internal.h). */
#include "versions_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/clock.h"
#include "../common/fnv.h"
#include "../common/log.h"
#include "record_codec.h"
#include "resource_types.h"

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

int versions_notify_created(versions_svc *svc, const store_version *created, uint64_t prev_latest,
                            strata_error *err)
{
    int rc = versions_invalidate_latest(svc, created->type, created->id, err);
    if (svc->hook) {
        save_request rq = {.type = created->type, .id = created->id};
        svc->hook(svc->hook_ctx, created, prev_latest, &rq);
    }
    return rc;
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
void versions_latest_key(const char *id, char *out, size_t cap)
{
    snprintf(out, cap, "latest:%s", id);
}

void versions_blob_cache_key(const char *hash, char *out, size_t cap)
{
    snprintf(out, cap, "blob:%s", hash);
}

int versions_fence_latest(versions_svc *svc, const char *type, const char *id, strata_error *err)
{
    if (svc->cache == NULL)
        return 0;
    char key[STORE_ID_MAX + 16], ns[L2_NS_MAX + 1];
    versions_latest_key(id, key, sizeof key);
    cache_internal_ns(type, ns, sizeof ns);
    return cache_fence_begin(svc->cache, ns, key, LATEST_FENCE_HOLD_MS, err);
}

int versions_invalidate_latest(versions_svc *svc, const char *type, const char *id,
                               strata_error *err)
{
    if (svc->cache == NULL)
        return 0;
    char key[STORE_ID_MAX + 16], ns[L2_NS_MAX + 1];
    versions_latest_key(id, key, sizeof key);
    cache_internal_ns(type, ns, sizeof ns);
    /* retried across a reconnection: a change is acknowledged only once
     * its invalidation is known to have happened */
    uint64_t until = clock_mono_ms() + INVALIDATE_RETRY_MS, pause = 50;
    for (;;) {
        if (cache_invalidate(svc->cache, ns, key, true, NULL, err) == 0)
            return 0;
        if (clock_mono_ms() + pause > until)
            break;
        struct timespec ts = {0, (long)pause * 1000000L};
        nanosleep(&ts, NULL);
        pause = pause * 2 > 1000 ? 1000 : pause * 2;
    }
    slog_error("cache invalidation of %s/%s failed: %s", type, id, err->detail);
    return -1;
}

int versions_unconfirmed(strata_error *err, const char *what)
{
    return serr_set(err, SERR_UNAVAILABLE,
                    "%s was committed, but the shared cache could not be told of it, so other "
                    "nodes may not see it yet; repeat the request to confirm it",
                    what);
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
    int made = 0;
    while (made < SAVE_STRIPES && pthread_mutex_init(&svc->save_stripes[made], NULL) == 0)
        made++;
    if (made < SAVE_STRIPES) {
        while (made > 0)
            pthread_mutex_destroy(&svc->save_stripes[--made]);
        free(svc);
        serr_set(err, SERR_NOMEM, "cannot create a mutex");
        return NULL;
    }
    svc->access = access_stats_new(st, cfg->access_flush_ms, err);
    if (svc->access == NULL) {
        for (int i = 0; i < SAVE_STRIPES; i++)
            pthread_mutex_destroy(&svc->save_stripes[i]);
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
    for (int i = 0; i < SAVE_STRIPES; i++)
        pthread_mutex_destroy(&svc->save_stripes[i]);
    free(svc);
}

pthread_mutex_t *versions_save_stripe(versions_svc *svc, const char *type, const char *id)
{
    uint64_t h = fnv_str(fnv_byte(fnv_str(FNV_BASIS, type), '/'), id);
    return &svc->save_stripes[h % SAVE_STRIPES];
}

int versions_check_resource(const char *type, const char *id, strata_error *err)
{
    if (resource_type_find(type) == NULL)
        return serr_set(err, SERR_NOT_FOUND, "unknown resource type '%.32s' (one of: %s)", type,
                        resource_type_names());
    return resource_id_check("resource id", id, STORE_ID_MAX, err);
}

int versions_parse_version(const char *version, uint64_t *vkey, strata_error *err)
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

/* ---- reading --------------------------------------------------------------- */

/* A version or resource that is not there: 410 when a tombstone says who
 * removed it and when, 404 when it never existed. */
void versions_gone_or_missing(versions_svc *svc, const char *type, const char *id, uint64_t vkey,
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
    versions_gone_or_missing(svc, type, id, 0, "latest", err);
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

/* The latest record's cached copy (validated against L2, since a write
 * elsewhere replaces it): 0 with *cv a reference, or NULL when the cache
 * is bypassed (it failed: a cache is never trusted blindly nor fatal);
 * -1 with SERR_NOT_FOUND when there is no latest record. */
static int latest_copy(versions_svc *svc, const char *type, const char *id, cache_value **cv,
                       strata_error *err)
{
    char key[STORE_ID_MAX + 16], ns[L2_NS_MAX + 1];
    versions_latest_key(id, key, sizeof key);
    cache_internal_ns(type, ns, sizeof ns);
    struct latest_load l = {svc, type, id};
    enum cache_tier tier;
    *cv = NULL;
    if (cache_get_or_load(svc->cache, ns, key, true, load_latest, &l, cv, &tier, err) == 0)
        return 0;
    if (err->kind == SERR_NOT_FOUND)
        return -1;
    slog_warn("cache read of %s/%s failed, reading the store: %s", type, id, err->detail);
    *cv = NULL;
    return 0;
}

/* The record of a cached copy, checked against what it claims to be (the
 * latest record of this resource) before it is used; one that is not is
 * dropped and the store answers instead (*from_copy false). */
static int decode_copy(versions_svc *svc, const char *type, const char *id, cache_value *cv,
                       store_version *out, bool *from_copy, strata_error *err)
{
    strata_error derr;
    int rc = record_decode(cv->data, cv->len, out, &derr);
    *from_copy = rc == 0 && strcmp(out->type, type) == 0 && strcmp(out->id, id) == 0 &&
                 out->is_latest &&
                 (out->blob_key[0] == '\0' || strcmp(out->blob_key, out->data_hash) == 0);
    if (*from_copy)
        return 0;
    if (rc == 0)
        store_version_clear(out);
    slog_error("cached latest record of %s/%s is not what it claims to be; dropped", type, id);
    char key[STORE_ID_MAX + 16], ns[L2_NS_MAX + 1];
    versions_latest_key(id, key, sizeof key);
    cache_internal_ns(type, ns, sizeof ns);
    cache_invalidate(svc->cache, ns, key, false, NULL, &derr);
    return svc->st->ops->get_version(svc->st, NULL, type, id, 0, out, err);
}

/* Latest records read through the cache; exact versions come from the
 * store. */
static int read_version(versions_svc *svc, const char *type, const char *id, uint64_t vkey,
                        store_version *out, strata_error *err)
{
    cache_value *cv = NULL;
    if (vkey == 0 && svc->cache != NULL && latest_copy(svc, type, id, &cv, err) != 0)
        return -1;
    if (cv == NULL)
        return svc->st->ops->get_version(svc->st, NULL, type, id, vkey, out, err);
    bool from_copy;
    int rc = decode_copy(svc, type, id, cv, out, &from_copy, err);
    cache_value_unref(cv);
    return rc;
}

int versions_get(versions_svc *svc, const char *type, const char *id, const char *version,
                 store_version *out, strata_error *err)
{
    uint64_t vkey;
    if (versions_check_resource(type, id, err) != 0 ||
        versions_parse_version(version, &vkey, err) != 0)
        return -1;
    if (read_version(svc, type, id, vkey, out, err) != 0) {
        if (err->kind == SERR_NOT_FOUND)
            versions_gone_or_missing(svc, type, id, vkey, version, err);
        return -1;
    }
    access_stats_hit(svc->access, type, id, out->vkey);
    return 0;
}

/* ---- records rendered once -------------------------------------------------- */

static void rendered_free(cache_memo *m)
{
    free(m); /* the memo is the first member: the whole record */
}

static rendered_record *rendered_new(const store_version *v, record_renderer render,
                                     strata_error *err)
{
    strata_buf b;
    sbuf_init(&b, 0);
    size_t split = 0;
    rendered_record *r = NULL;
    if (render(v, &b, &split, err) == 0 && split <= b.len) {
        r = malloc(sizeof *r + b.len);
        if (r == NULL)
            serr_set(err, SERR_NOMEM, "out of memory");
    } else if (split > b.len) {
        serr_set(err, SERR_INTERNAL, "a record rendering split past its end");
    }
    if (r != NULL) {
        r->memo.size = sizeof *r + b.len;
        r->memo.free = rendered_free;
        snprintf(r->type, sizeof r->type, "%s", v->type);
        snprintf(r->id, sizeof r->id, "%s", v->id);
        r->vkey = v->vkey;
        snprintf(r->data_hash, sizeof r->data_hash, "%s", v->data_hash);
        r->stored_count = v->access_count;
        r->stored_last_ms = v->last_accessed_ms;
        r->split = split;
        r->len = b.len;
        if (b.len)
            memcpy(r->bytes, b.data, b.len);
    }
    sbuf_free(&b);
    return r;
}

int versions_get_rendered(versions_svc *svc, const char *type, const char *id, const char *version,
                          record_renderer render, rendered_ref *out, strata_error *err)
{
    memset(out, 0, sizeof *out);
    uint64_t vkey;
    if (versions_check_resource(type, id, err) != 0 ||
        versions_parse_version(version, &vkey, err) != 0)
        return -1;
    cache_value *cv = NULL;
    if (vkey == 0 && svc->cache != NULL) {
        if (latest_copy(svc, type, id, &cv, err) != 0)
            goto missing;
        /* a copy rendered before: made from these very bytes, after they
         * were checked (the names once more, as cheap insurance) */
        const rendered_record *r =
            (const rendered_record *)(const void *)(cv ? cache_value_memo(cv) : NULL);
        if (r != NULL && strcmp(r->type, type) == 0 && strcmp(r->id, id) == 0) {
            out->r = r;
            out->hold = cv;
            goto counted;
        }
    }
    store_version v;
    bool from_copy = false;
    int rc = cv ? decode_copy(svc, type, id, cv, &v, &from_copy, err)
                : svc->st->ops->get_version(svc->st, NULL, type, id, vkey, &v, err);
    if (rc != 0) {
        cache_value_unref(cv);
        goto missing;
    }
    rendered_record *mine = rendered_new(&v, render, err);
    store_version_clear(&v);
    if (mine == NULL) {
        cache_value_unref(cv);
        return -1;
    }
    const cache_memo *kept = from_copy ? cache_value_attach_memo(cv, &mine->memo) : NULL;
    if (kept == &mine->memo) {
        out->r = mine;
        out->hold = cv;
    } else if (kept != NULL &&
               strcmp(((const rendered_record *)(const void *)kept)->type, type) == 0 &&
               strcmp(((const rendered_record *)(const void *)kept)->id, id) == 0) {
        /* another reader rendered the copy first (checked as above) */
        rendered_free(&mine->memo);
        out->r = (const rendered_record *)(const void *)kept;
        out->hold = cv;
    } else { /* for this read alone (no memo kept, or one that failed the check) */
        cache_value_unref(cv);
        out->r = mine;
        out->own = mine;
    }
counted:
    access_stats_hit(svc->access, out->r->type, out->r->id, out->r->vkey);
    return 0;
missing:
    if (err->kind == SERR_NOT_FOUND)
        versions_gone_or_missing(svc, type, id, vkey, version, err);
    return -1;
}

void rendered_ref_release(rendered_ref *ref)
{
    cache_value_unref(ref->hold);
    free(ref->own);
    memset(ref, 0, sizeof *ref);
}

void versions_rendered_counts(versions_svc *svc, const rendered_record *r, uint64_t *count,
                              int64_t *last_ms)
{
    access_stats_merge(svc->access, r->type, r->id, r->vkey, r->stored_count, r->stored_last_ms,
                       count, last_ms);
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
        versions_gone_or_missing(svc, type, id, 0, "latest", err);
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
/* ---- records ------------------------------------------------------------------- */

void versions_access_counts(versions_svc *svc, const store_version *v, uint64_t *count,
                            int64_t *last_ms)
{
    access_stats_merge(svc->access, v->type, v->id, v->vkey, v->access_count, v->last_accessed_ms,
                       count, last_ms);
}
