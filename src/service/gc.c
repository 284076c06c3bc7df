#include "gc.h"

#include "../common/clock.h"

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

int gc_run(versions_svc *vs, uint64_t grace_seconds, bool dry_run, json_t **report,
           strata_error *err)
{
    store *st = versions_store(vs);
    blob_store *blobs = versions_blobs(vs);
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
    size_t removed = 0, raced = 0;
    uint64_t freed = 0;
    for (size_t i = 0; rc == 0 && !dry_run && i < s.candidates.n; i++) {
        const char *key = s.candidates.keys[i];
        versions_blob_lock(vs, true);
        bool referenced = false;
        uint64_t size = 0;
        int64_t mtime = 0;
        strata_error e2;
        /* again, under the lock: a save may have shared it since the mark */
        int ok = st->ops->blob_referenced(st, key, &referenced, &e2) == 0 && !referenced &&
                 blobs->ops->stat(blobs, key, &size, &mtime, &e2) == 0 && mtime <= cutoff &&
                 blobs->ops->remove(blobs, key, &e2) == 0;
        versions_blob_unlock(vs);
        if (ok) {
            removed++;
            freed += size;
            versions_forget_blob(vs, key);
        } else {
            raced++;
        }
    }
    if (rc == 0)
        *report = json_pack("{s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "dry_run", dry_run,
                            "grace_seconds", (json_int_t)grace_seconds, "blobs_scanned",
                            (json_int_t)s.scanned, "blobs_referenced", (json_int_t)marked.n,
                            "blobs_in_grace", (json_int_t)s.in_grace, "blobs_removed",
                            (json_int_t)(dry_run ? s.candidates.n : removed), "bytes_freed",
                            (json_int_t)(dry_run ? s.candidate_bytes : freed),
                            "blobs_kept_on_recheck", (json_int_t)raced);
    free(marked.keys);
    free(s.candidates.keys);
    return rc;
}
