/* Deleting versions and resources: the guards (trees, pins) and the write
 * in one store transaction, fenced in the cache around it. */
#include "versions_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trees.h"

/* The trees service's guard of corpus deletes (see trees.h), per versions
 * service. It lives here, not in struct versions_svc, only because that
 * struct is not this file's to change. */
#define DELETE_GUARDS_MAX 16

static pthread_mutex_t guards_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    versions_svc *svc;
    versions_delete_guard fn;
    void *ctx;
} guards[DELETE_GUARDS_MAX];

int versions_set_delete_guard(versions_svc *svc, versions_delete_guard fn, void *ctx,
                              strata_error *err)
{
    pthread_mutex_lock(&guards_mu);
    int at = -1;
    for (int i = 0; i < DELETE_GUARDS_MAX; i++) {
        if (guards[i].svc == svc) {
            at = i;
            break;
        }
        if (at < 0 && guards[i].svc == NULL)
            at = i;
    }
    if (at >= 0) {
        guards[at].svc = fn != NULL ? svc : NULL;
        guards[at].fn = fn;
        guards[at].ctx = ctx;
    }
    pthread_mutex_unlock(&guards_mu);
    if (at < 0 && fn != NULL)
        return serr_set(err, SERR_NOMEM, "more than %d versions services have a delete guard",
                        DELETE_GUARDS_MAX);
    return 0;
}

static bool delete_guard_of(versions_svc *svc, versions_delete_guard *fn, void **ctx)
{
    pthread_mutex_lock(&guards_mu);
    bool found = false;
    for (int i = 0; i < DELETE_GUARDS_MAX && !found; i++)
        if (guards[i].svc == svc) {
            *fn = guards[i].fn;
            *ctx = guards[i].ctx;
            found = true;
        }
    pthread_mutex_unlock(&guards_mu);
    return found;
}

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
    /* Blobs stay: only the collector removes a blob, once no version
     * references it and no save claims it (invariant 4). */
    if (svc->st->ops->delete_version(svc->st, txn, j->type, j->id, j->vkey, j->removed_by, err) !=
        0)
        return -1;
    /* Pins are checked after the delete, inside the transaction: a save
     * that pins the version either committed before (and is seen here) or
     * meets the version gone (where the store has no transactions, its
     * dependency check and this one cannot both pass). Pinned: the
     * transaction is rolled back, and the version kept. */
    if (j->unless_pinned) {
        if (svc->st->ops->version_pinned(svc->st, j->type, j->id, j->vkey, &j->pinned, j->pinned_by,
                                         sizeof j->pinned_by, err) != 0)
            return -1;
        if (j->pinned)
            return serr_set(err, SERR_CONFLICT, "%s/%s is pinned by %s: kept", j->type, j->id,
                            j->pinned_by);
    }
    return 0;
}

/* Runs a delete in txn, or fenced in its own transaction. */
static int run_delete_unguarded(versions_svc *svc, store_txn *txn, struct delete_job *j,
                                strata_error *err)
{
    if (txn != NULL) /* unless_pinned needs its own transaction, to roll back */
        return delete_in(txn, j, err);
    if (versions_fence_latest(svc, j->type, j->id, err) != 0)
        return -1;
    int rc = svc->st->ops->transact(svc->st, delete_in, j, err);
    if (rc != 0 && j->pinned)
        rc = 0; /* kept: the transaction rolled the delete back */
    strata_error ierr;
    if (versions_invalidate_latest(svc, j->type, j->id, &ierr) != 0 && rc == 0)
        rc = versions_unconfirmed(err, "the delete");
    return rc;
}

struct guarded_delete {
    versions_svc *svc;
    store_txn *txn;
    struct delete_job *j;
};

static int guarded_body(void *arg, strata_error *err)
{
    struct guarded_delete *g = arg;
    return run_delete_unguarded(g->svc, g->txn, g->j, err);
}

/* A corpus delete's tree checks hold only while no tree change runs on
 * the corpus's tree: where tree writes are not transactional, the trees
 * service runs the checks and the delete under that tree's lease. In a
 * batch (txn) the lease covers the checks and the pending delete, not the
 * batch's commit, which comes later: a tree change in between may link
 * the version, and the tree's next rebuild then follows the latest. */
static int run_delete(versions_svc *svc, store_txn *txn, struct delete_job *j, strata_error *err)
{
    versions_delete_guard fn;
    void *ctx;
    if (strcmp(j->type, "corpus") != 0 || !delete_guard_of(svc, &fn, &ctx))
        return run_delete_unguarded(svc, txn, j, err);
    struct guarded_delete g = {svc, txn, j};
    return fn(ctx, j->id, guarded_body, &g, err);
}

static int resolve_vkey(versions_svc *svc, store_txn *txn, const char *type, const char *id,
                        const char *version, uint64_t *vkey, strata_error *err)
{
    if (versions_check_resource(type, id, err) != 0 ||
        versions_parse_version(version, vkey, err) != 0)
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
        versions_gone_or_missing(svc, type, id, j.vkey, version, err);
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
        versions_gone_or_missing(svc, type, id, 0, "latest", err);
    return rc;
}
