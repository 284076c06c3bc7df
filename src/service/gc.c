#include "gc.h"

#include "../common/clock.h"
#include "../common/node_id.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct keyset {
    char (*keys)[SHA256_HEX_LEN + 1];
    size_t n, cap;
} keyset;

static int keyset_add(void *ctx, const char *key)
{
    keyset *s = ctx;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        char(*nk)[SHA256_HEX_LEN + 1] = realloc(s->keys, cap * sizeof *nk);
        if (nk == NULL)
            return -1;
        s->keys = nk;
        s->cap = cap;
    }
    strncpy(s->keys[s->n], key, SHA256_HEX_LEN);
    s->keys[s->n][SHA256_HEX_LEN] = '\0';
    s->n++;
    return 0;
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(a, b);
}

typedef struct sweep {
    keyset *marked;
    int64_t cutoff; /* ms: blobs used after this are in their grace period */
    keyset candidates;
    size_t scanned, in_grace;
    uint64_t candidate_bytes;
    int failed;
} sweep;

static int visit(void *ctx, const char *key, uint64_t size, int64_t mtime_ms)
{
    sweep *s = ctx;
    s->scanned++;
    /* (bsearch wants a real array even for zero keys) */
    if (s->marked->n > 0 &&
        bsearch(key, s->marked->keys, s->marked->n, sizeof *s->marked->keys, cmp_key) != NULL)
        return 0;
    if (mtime_ms > s->cutoff) {
        s->in_grace++;
        return 0;
    }
    if (keyset_add(&s->candidates, key) != 0) {
        s->failed = 1;
        return 1;
    }
    s->candidate_bytes += size;
    return 0;
}

int gc_lease(versions_svc *vs, bool *held, uint64_t *token, strata_error *err)
{
    store *st = versions_store(vs);
    return st->ops->lease_acquire(st, MAINTENANCE_LEASE, node_id(), MAINTENANCE_LEASE_MS, held,
                                  token, NULL, err);
}

/* The lease is renewed as the run goes: a holder that can no longer renew
 * it stops before its next removal (another node may be collecting). */
typedef struct lease_keeper {
    versions_svc *vs;
    uint64_t token;
    uint64_t renewed_ms;
} lease_keeper;

static int keep_lease(lease_keeper *k, strata_error *err)
{
    if (clock_mono_ms() - k->renewed_ms < MAINTENANCE_LEASE_MS / 3)
        return 0;
    bool held = false;
    uint64_t token = 0;
    if (gc_lease(k->vs, &held, &token, err) != 0)
        return -1;
    if (!held || token != k->token)
        return serr_set(err, SERR_CONFLICT, "the maintenance lease passed to another node");
    k->renewed_ms = clock_mono_ms();
    return 0;
}

typedef struct orphan_list {
    uint64_t token;
    keyset keys;
    int failed;
} orphan_list;

static int note_orphan(void *ctx, const char *key, uint64_t token)
{
    orphan_list *o = ctx;
    /* doomed under an older token: its collector lost the lease (died) */
    if (token != o->token && keyset_add(&o->keys, key) != 0) {
        o->failed = 1;
        return 1;
    }
    return 0;
}

/* Removes a doomed blob and frees its key for claims again, also when the
 * removal failed: the blob is then whole or gone, and a save that claims
 * it next verifies it or writes it again. */
static int finish_doomed(versions_svc *vs, const char *key, uint64_t *size, strata_error *err)
{
    blob_store *blobs = versions_blobs(vs);
    store *st = versions_store(vs);
    int64_t mtime = 0;
    *size = 0;
    int rc = 0;
    if (blobs->ops->stat(blobs, key, size, &mtime, err) != 0 && err->kind != SERR_NOT_FOUND)
        rc = -1;
    if (rc == 0 && blobs->ops->remove(blobs, key, err) != 0 && err->kind != SERR_NOT_FOUND)
        rc = -1;
    versions_forget_blob(vs, key);
    strata_error e2;
    if (st->ops->blob_collect_end(st, key, rc == 0 ? err : &e2) != 0 && rc == 0)
        return -1;
    return rc;
}

int gc_run(versions_svc *vs, uint64_t grace_seconds, bool dry_run, json_t **report,
           strata_error *err)
{
    store *st = versions_store(vs);
    blob_store *blobs = versions_blobs(vs);
    lease_keeper lk = {.vs = vs};
    size_t finished = 0;
    const unsigned need = STORE_CAP_BLOB_CLAIMS | STORE_CAP_LEASES;
    if ((st->ops->caps & need) != need) /* without them a removal could race a save */
        return serr_set(err, SERR_UNAVAILABLE,
                        "blob collection needs a store with blob claims and leases; the %s store "
                        "has not both",
                        st->ops->name);
    if (!dry_run) {
        bool held = false;
        if (gc_lease(vs, &held, &lk.token, err) != 0)
            return -1;
        if (!held)
            return serr_set(err, SERR_CONFLICT,
                            "blob collection is running on another node; retry later");
        lk.renewed_ms = clock_mono_ms();
        /* keys a dead collector doomed and never ended */
        orphan_list o = {.token = lk.token};
        int orc = st->ops->blob_collecting(st, note_orphan, &o, err);
        if (orc == 0 && o.failed)
            orc = serr_set(err, SERR_NOMEM, "out of memory listing doomed blobs");
        for (size_t i = 0; orc == 0 && i < o.keys.n; i++) {
            uint64_t size;
            orc = keep_lease(&lk, err);
            if (orc == 0)
                orc = finish_doomed(vs, o.keys.keys[i], &size, err);
            if (orc == 0)
                finished++;
        }
        free(o.keys.keys);
        if (orc != 0)
            return -1;
    }
    keyset marked = {0};
    /* the grace cutoff is taken before marking: a blob written after it
     * is young whatever the mark saw */
    int64_t cutoff = clock_wall_ms() - (int64_t)grace_seconds * 1000;
    if (st->ops->blob_refs(st, keyset_add, &marked, err) != 0) {
        free(marked.keys);
        return -1;
    }
    if (marked.n > 1)
        qsort(marked.keys, marked.n, sizeof *marked.keys, cmp_key);
    sweep s = {.marked = &marked, .cutoff = cutoff};
    int rc = blobs->ops->list(blobs, visit, &s, err);
    if (rc == 0 && s.failed)
        rc = serr_set(err, SERR_NOMEM, "out of memory listing blobs");
    size_t removed = 0, kept = 0;
    uint64_t freed = 0;
    int64_t claims_before = clock_wall_ms() - BLOB_CLAIM_TTL_MS;
    for (size_t i = 0; rc == 0 && !dry_run && i < s.candidates.n; i++) {
        const char *key = s.candidates.keys[i];
        bool doomed = false;
        uint64_t size = 0;
        /* the store decides: still unreferenced, and no save claims it */
        rc = keep_lease(&lk, err);
        if (rc == 0)
            rc = st->ops->blob_collect_begin(st, key, lk.token, claims_before, &doomed, err);
        if (rc == 0 && !doomed) {
            kept++; /* shared or claimed since the mark */
            continue;
        }
        if (rc == 0)
            rc = finish_doomed(vs, key, &size, err);
        if (rc == 0) {
            removed++;
            freed += size;
        }
    }
    if (rc == 0)
        *report = json_pack(
            "{s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "dry_run", dry_run, "grace_seconds",
            (json_int_t)grace_seconds, "blobs_scanned", (json_int_t)s.scanned, "blobs_referenced",
            (json_int_t)marked.n, "blobs_in_grace", (json_int_t)s.in_grace, "blobs_removed",
            (json_int_t)(dry_run ? s.candidates.n : removed), "bytes_freed",
            (json_int_t)(dry_run ? s.candidate_bytes : freed), "blobs_kept_on_recheck",
            (json_int_t)kept, "interrupted_collections_finished", (json_int_t)finished);
    free(marked.keys);
    free(s.candidates.keys);
    return rc;
}
