/* The MongoDB store: the vtable, open and close, ping and transact (see
 * store_mongo.h, and mongo_internal.h for the layout). */
#include "store_mongo.h"

#include <inttypes.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "../common/clock.h"
#include "mongo_internal.h"

static void mg_close(store *base)
{
    mongo_store *s = (mongo_store *)base;
    mongo_conn_close(s->conn);
    free(s);
}

static int mg_ping(store *base, strata_error *err)
{
    return mongo_conn_ping(((mongo_store *)base)->conn, err);
}

static int tx_init(store_txn *t, mongo_store *s, strata_error *err)
{
    memset(t, 0, sizeof *t);
    t->s = s;
    snprintf(t->tid, sizeof t->tid, "txn:%016" PRIx64, mg_random63());
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return serr_set(err, SERR_NOMEM, "store: cannot set up a transaction");
    int rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0 && (rc = pthread_cond_init(&t->beat_cv, &ca)) == 0 &&
        (rc = pthread_mutex_init(&t->beat_mu, NULL)) != 0)
        pthread_cond_destroy(&t->beat_cv);
    pthread_condattr_destroy(&ca);
    if (rc != 0)
        return serr_set(err, SERR_NOMEM, "store: cannot set up a transaction");
    return 0;
}

static void tx_fini(store_txn *t)
{
    pthread_cond_destroy(&t->beat_cv);
    pthread_mutex_destroy(&t->beat_mu);
}

/* The beat thread: "hb:T" {n: beats} every MH_BEAT_MS (the first after
 * one period, so a short transaction never beats), for MH_BEAT_MAX_MS at
 * most: a body stuck longer is taken for dead. A client is taken from
 * the pool for each beat only. */
static void *beat_main(void *arg)
{
    store_txn *t = arg;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    char bid[40];
    snprintf(bid, sizeof bid, "hb:%s", t->tid);
    pthread_mutex_lock(&t->beat_mu);
    for (uint64_t n = 1; !t->beat_stop && n * MH_BEAT_MS <= MH_BEAT_MAX_MS; n++) {
        uint64_t at_ms = n * MH_BEAT_MS;
        struct timespec ts = start;
        ts.tv_sec += (time_t)(at_ms / 1000);
        ts.tv_nsec += (long)(at_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (!t->beat_stop && pthread_cond_timedwait(&t->beat_cv, &t->beat_mu, &ts) == 0)
            ;
        if (t->beat_stop)
            break;
        pthread_mutex_unlock(&t->beat_mu);
        mg m;
        mg_begin(&m, t->s);
        bson_t *f = BCON_NEW("_id", BCON_UTF8(bid));
        bson_t *u = BCON_NEW("$set", "{", "n", BCON_INT64((int64_t)n), "}");
        strata_error e2; /* a missed beat only shortens the patience of waiters */
        t->beats = n;    /* (tried: its document may exist) */
        mg_update(&m, MC_SEALS, f, u, true, NULL, "store: beat", &e2);
        bson_destroy(f);
        bson_destroy(u);
        mg_end(&m);
        pthread_mutex_lock(&t->beat_mu);
    }
    pthread_mutex_unlock(&t->beat_mu);
    return NULL;
}

int tx_beat_start(store_txn *t, strata_error *err)
{
    if (t->beating)
        return 0;
    t->beat_stop = false;
    if (pthread_create(&t->beater, NULL, beat_main, t) != 0)
        return serr_set(err, SERR_INTERNAL, "store: cannot start a transaction's beat thread");
    t->beating = true;
    return 0;
}

void tx_beat_stop(store_txn *t)
{
    if (!t->beating)
        return;
    pthread_mutex_lock(&t->beat_mu);
    t->beat_stop = true;
    pthread_cond_signal(&t->beat_cv);
    pthread_mutex_unlock(&t->beat_mu);
    pthread_join(t->beater, NULL);
    t->beating = false;
}

/* Forgets the heads, removals and claims of t (nothing written); its
 * beats stop. */
static void tx_clear(store_txn *t)
{
    tx_beat_stop(t);
    for (size_t i = 0; i < t->nheads; i++)
        tx_head_release(t->heads[i]);
    free(t->heads);
    free(t->after);
    free(t->claims);
    t->heads = NULL;
    t->after = NULL;
    t->claims = NULL;
    t->nheads = t->cap_heads = t->nafter = t->cap_after = t->nclaims = t->cap_claims = 0;
}

static void drop_beat(mg *m, store_txn *t)
{
    tx_beat_stop(t); /* (no beat may follow the drop) */
    if (t->beats == 0)
        return;
    char bid[40];
    snprintf(bid, sizeof bid, "hb:%s", t->tid);
    bson_t *f = BCON_NEW("_id", BCON_UTF8(bid));
    strata_error e2;
    mg_delete(m, MC_SEALS, f, false, NULL, "store: drop beat", &e2);
    bson_destroy(f);
    t->beats = 0;
}

/* The heads of a decided t: rolled forward (its removals first, so that
 * the holes that hide removed versions can go) or back (its versions
 * dropped first). Best effort: whoever finds a decided pending state
 * finishes it. */
static void tx_finish(mg *m, store_txn *t, bool sealed)
{
    strata_error e2;
    if (sealed)
        for (size_t i = 0; i < t->nafter; i++) {
            const tx_after *a = &t->after[i];
            if (mv_after_run(m, a, &e2) != 0)
                break; /* the rest stay owed by their heads (holes, "dh") */
            if (a->kind != TXA_DEL_VERSION)
                continue;
            for (size_t j = 0; j < t->nheads; j++) {
                tx_head *x = t->heads[j];
                if (strcmp(x->type, a->type) != 0 || strcmp(x->id, a->id) != 0)
                    continue;
                for (size_t k = 0; k < x->ndropped; k++)
                    if (x->dropped[k] == a->vkey)
                        x->gone[k] = true;
            }
        }
    for (size_t i = 0; i < t->nheads; i++) {
        const tx_head *x = t->heads[i];
        if (!sealed)
            mv_drop_docs(m, x->type, x->id, x->keys, x->nkeys, t->tid);
        tx_head_finish(m, x, sealed, &e2);
    }
    drop_beat(m, t);
}

static void release_claims(store_txn *t)
{
    strata_error e2;
    for (size_t i = 0; i < t->nclaims; i++)
        mg_blob_release(&t->s->base, t->claims[i].key, t->claims[i].claim, &e2);
    t->nclaims = 0;
}

void tx_abort(store_txn *t)
{
    mg m;
    mg_begin(&m, t->s);
    strata_error e2;
    bool ok = false;
    if (t->nheads > 0 && mh_decide(&m, t->tid, false, &ok, &e2) == 0)
        tx_finish(&m, t, ok);
    drop_beat(&m, t); /* (a no-op when tx_finish did it) */
    release_claims(t);
    mg_end(&m);
    tx_clear(t);
}

/* The one atomic step: {_id: T, ok: true} in store_seals. */
static int tx_commit(store_txn *t, strata_error *err)
{
    if (t->nheads == 0) {
        if (t->beating) { /* (a first head it failed to write) */
            mg m;
            mg_begin(&m, t->s);
            drop_beat(&m, t);
            mg_end(&m);
        }
        tx_clear(t);
        return 0;
    }
    mg m;
    mg_begin(&m, t->s);
    bool ok = false;
    int rc = mh_decide(&m, t->tid, true, &ok, err);
    if (rc != 0) {
        /* the seal may or may not be in: decide it once more (the first
         * insert stands, so this tells which) */
        strata_error e2;
        if (mh_decide(&m, t->tid, false, &ok, &e2) != 0) {
            drop_beat(&m, t); /* no more beats: the heads' next writer voids it */
            mg_end(&m);
            tx_clear(t); /* undecided: the heads' next writer voids it */
            return serr_set(err, SERR_UNAVAILABLE,
                            "store: the outcome of a transaction is unknown (%s)", err->detail);
        }
    }
    tx_finish(&m, t, ok);
    if (!ok)
        release_claims(t);
    mg_end(&m);
    tx_clear(t);
    if (!ok)
        return serr_set(err, SERR_RETRY, "store: the transaction was given up by another writer");
    return 0;
}

/* Runs the body in a transaction of pending states (see mongo_internal.h),
 * again (after a short, growing pause) when it fails with SERR_RETRY. */
static int mg_transact(store *base, store_txn_fn fn, void *ctx, strata_error *err)
{
    for (int attempt = 1;; attempt++) {
        store_txn t;
        if (tx_init(&t, (mongo_store *)base, err) != 0)
            return -1;
        int rc = fn(&t, ctx, err);
        if (rc == 0)
            rc = tx_commit(&t, err);
        else
            tx_abort(&t);
        tx_fini(&t);
        if (rc == 0 || err->kind != SERR_RETRY)
            return rc;
        if (attempt >= STORE_TRANSACT_ATTEMPTS)
            return serr_set(err, SERR_RETRY, "store: writers kept meeting (%d attempts)", attempt);
        unsigned shift = attempt < 7 ? (unsigned)attempt : 7u;
        mg_sleep_ms((1u << shift) + (unsigned)(mg_random63() % (1u << shift)));
    }
}

static const store_ops MONGO_OPS = {
    .name = "mongodb",
    .caps = STORE_CAP_TRANSACTIONS | STORE_CAP_BLOB_CLAIMS | STORE_CAP_LEASES,
    .ping = mg_ping,
    .transact = mg_transact,
    .get_head = mg_get_head,
    .get_version = mg_get_version,
    .put_version = mg_put_version,
    .list_versions = mg_list_versions,
    .list_resources = mg_list_resources,
    .delete_version = mg_delete_version,
    .delete_resource = mg_delete_resource,
    .dependents = mg_dependents,
    .add_access = mg_add_access,
    .set_stale = mg_set_stale,
    .get_tombstone = mg_get_tombstone,
    .version_pinned = mg_version_pinned,
    .blob_refs = mg_blob_refs,
    .blob_referenced = mg_blob_referenced,
    .tree_parent = mg_tree_parent,
    .tree_children = mg_tree_children,
    .tree_link = mg_tree_link,
    .tree_unlink = mg_tree_unlink,
    .vocab_apply = mg_vocab_apply,
    .vocab_clear = mg_vocab_clear,
    .vocab_page = mg_vocab_page,
    .vocab_size = mg_vocab_size,
    .tree_edges = mg_tree_edges,
    .blob_claim = mg_blob_claim,
    .blob_release = mg_blob_release,
    .blob_collect_begin = mg_blob_collect_begin,
    .blob_collect_end = mg_blob_collect_end,
    .blob_collecting = mg_blob_collecting,
    .lease_acquire = mg_lease_acquire,
    .lease_release = mg_lease_release,
    .close = mg_close,
};

store *store_mongo_open(const char *url, strata_error *err)
{
    mongo_store *s = calloc(1, sizeof *s);
    if (s == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    s->base.ops = &MONGO_OPS;
    s->conn = mongo_conn_open(url, "strata-store", err);
    if (s->conn == NULL) {
        free(s);
        return NULL;
    }
    if (mg_migrate(s, err) != 0) {
        mg_close(&s->base);
        return NULL;
    }
    return &s->base;
}
