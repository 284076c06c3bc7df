/* Where nodes agree, in MongoDB: blob references, claims and doomed keys,
 * leases, and access counts beside the versions.
 *
 * Blob claims: one document per claim in store_claims (_id "<key>/<claim
 * hex>", k the key, at the server's ms when made); doomed keys: one
 * document per key in store_blob_doomed (_id the key, tk the collector's
 * token). A claim is inserted, then the doom looked for; a doom is
 * inserted, then the claims looked for: of a claim and a doom that meet,
 * at least one sees the other, and the one that sees withdraws. A save
 * inserts its version (which references the key) before it consumes its
 * claim (a delete by _id, which exactly one of the save, a release and a
 * collector dropping it as abandoned gets), and the collector looks for
 * references after its doom: a version whose claim was consumed before
 * the doom is seen, and one that comes after finds its claim gone and
 * gives its key up. So a key a version relies on is never collected.
 *
 * Leases: a register per lease (mongo_heads.c), states h (holder), tk
 * (fencing token), ex (expiry in the server's clock).
 *
 * Access counts: deltas (v the version's _id, t, i, k, c, last), summed
 * when read. */
#include "mongo_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/clock.h"

/* ---- blob references ---------------------------------------------------------- */

typedef struct ref_walk {
    int (*fn)(void *ctx, const char *key);
    void *ctx;
    char last[SHA256_HEX_LEN + 1];
} ref_walk;

static int ref_row(const bson_t *d, void *arg)
{
    ref_walk *w = arg;
    char key[SHA256_HEX_LEN + 1];
    bs_str(d, "b", key, sizeof key);
    if (key[0] == '\0' || strcmp(key, w->last) == 0)
        return 0; /* sorted by key: each once */
    snprintf(w->last, sizeof w->last, "%s", key);
    return w->fn(w->ctx, key) != 0;
}

/* Every document that names a key counts, linked or not: a version being
 * written references its blob before its head names it. */
int mg_blob_refs(store *base, int (*fn)(void *ctx, const char *key), void *ctx, strata_error *err)
{
    mg m;
    mg_begin(&m, (mongo_store *)base);
    ref_walk w = {fn, ctx, ""};
    bson_t *f = BCON_NEW("b", "{", "$exists", BCON_BOOL(true), "}");
    bson_t *opts = BCON_NEW("sort", "{", "b", BCON_INT32(1), "}", "projection", "{", "b",
                            BCON_INT32(1), "_id", BCON_INT32(0), "}");
    bool stopped = false;
    int rc =
        mg_each(&m, MC_VERSIONS, f, opts, ref_row, &w, &stopped, "store: blob references", err);
    bson_destroy(f);
    bson_destroy(opts);
    mg_end(&m);
    if (rc == 0 && stopped) /* a walk the callback cut short is not a mark */
        rc = serr_set(err, SERR_NOMEM, "out of memory collecting blob references");
    return rc;
}

static int referenced_on(mg *m, const char *key, bool *referenced, strata_error *err)
{
    bson_t *f = BCON_NEW("b", BCON_UTF8(key));
    int rc = mg_find_one(m, MC_VERSIONS, f, NULL, NULL, referenced, "store: blob reference", err);
    bson_destroy(f);
    return rc;
}

int mg_blob_referenced(store *base, const char *key, bool *referenced, strata_error *err)
{
    mg m;
    mg_begin(&m, (mongo_store *)base);
    int rc = referenced_on(&m, key, referenced, err);
    mg_end(&m);
    return rc;
}

/* ---- claims ----------------------------------------------------------------------- */

static void claim_id(char *out, size_t cap, const char *key, uint64_t claim)
{
    snprintf(out, cap, "%s/%016" PRIx64, key, claim);
}

int mg_claim_stands(mg *m, const char *key, uint64_t claim, bool *stands, strata_error *err)
{
    char cid[SHA256_HEX_LEN + 24];
    claim_id(cid, sizeof cid, key, claim);
    bson_t *f = BCON_NEW("_id", BCON_UTF8(cid));
    int rc = mg_find_one(m, MC_CLAIMS, f, NULL, NULL, stands, "store: blob claim", err);
    bson_destroy(f);
    return rc;
}

/* A delete by _id: exactly one of a consumer, a releaser and a collector
 * dropping it as abandoned counts it. */
static int drop_claim(mg *m, const char *key, uint64_t claim, bool *dropped, strata_error *err)
{
    char cid[SHA256_HEX_LEN + 24];
    claim_id(cid, sizeof cid, key, claim);
    bson_t *f = BCON_NEW("_id", BCON_UTF8(cid));
    int64_t deleted = 0;
    int rc = mg_delete(m, MC_CLAIMS, f, false, &deleted, "store: blob claim", err);
    bson_destroy(f);
    if (dropped)
        *dropped = rc == 0 && deleted > 0;
    return rc;
}

int mg_claim_consume(mg *m, const char *key, uint64_t claim, bool *consumed, strata_error *err)
{
    return drop_claim(m, key, claim, consumed, err);
}

static int is_doomed(mg *m, const char *key, bool *doomed, strata_error *err)
{
    bson_t *f = BCON_NEW("_id", BCON_UTF8(key));
    int rc = mg_find_one(m, MC_BLOBS, f, NULL, NULL, doomed, "store: doomed blob", err);
    bson_destroy(f);
    return rc;
}

/* The claim is written, then the doom looked for (the collector writes
 * its doom, then looks for claims): of two that meet, at least one sees
 * the other, and a claim that sees a doom withdraws. */
int mg_blob_claim(store *base, store_txn *txn, const char *key, uint64_t *claim, strata_error *err)
{
    *claim = 0;
    mg m;
    mg_begin(&m, (mongo_store *)base);
    int64_t now = 0;
    uint64_t c = mg_random63();
    char cid[SHA256_HEX_LEN + 24];
    claim_id(cid, sizeof cid, key, c);
    bool doomed = false;
    int rc = mg_server_now(&m, &now, err);
    if (rc == 0)
        rc = is_doomed(&m, key, &doomed, err);
    if (rc == 0 && !doomed) {
        bson_t *d = BCON_NEW("_id", BCON_UTF8(cid), "k", BCON_UTF8(key), "at", BCON_INT64(now));
        rc = mg_insert(&m, MC_CLAIMS, d, "store: blob claim", err);
        bson_destroy(d);
        if (rc == 0)
            rc = is_doomed(&m, key, &doomed, err);
        if (rc == 0 && doomed)
            rc = drop_claim(&m, key, c, NULL, err);
    }
    if (rc == 0 && !doomed && txn != NULL) {
        /* the transaction's: dropped if it aborts */
        if (txn->nclaims == txn->cap_claims) {
            size_t cap = txn->cap_claims ? 2 * txn->cap_claims : 4;
            tx_claim *nc = realloc(txn->claims, cap * sizeof *nc);
            if (nc == NULL) {
                strata_error e2;
                drop_claim(&m, key, c, NULL, &e2);
                mg_end(&m);
                return serr_set(err, SERR_NOMEM, "out of memory");
            }
            txn->claims = nc;
            txn->cap_claims = cap;
        }
        snprintf(txn->claims[txn->nclaims].key, sizeof txn->claims[txn->nclaims].key, "%s", key);
        txn->claims[txn->nclaims++].claim = c;
    }
    mg_end(&m);
    if (rc != 0)
        return -1;
    if (doomed)
        return serr_set(err, SERR_RETRY, "blob %.12s is being collected", key);
    *claim = c;
    return 0;
}

int mg_blob_release(store *base, const char *key, uint64_t claim, strata_error *err)
{
    mg m;
    mg_begin(&m, (mongo_store *)base);
    int rc = drop_claim(&m, key, claim, NULL, err);
    mg_end(&m);
    return rc;
}

typedef struct claim_walk {
    int64_t threshold;
    bool young;
    char (*old)[SHA256_HEX_LEN + 24];
    size_t nold, cap;
} claim_walk;

static int claim_row(const bson_t *d, void *arg)
{
    claim_walk *w = arg;
    if (bs_i64(d, "at") >= w->threshold) {
        w->young = true;
        return 0;
    }
    if (w->nold < w->cap)
        bs_str(d, "_id", w->old[w->nold++], sizeof w->old[0]);
    return 0;
}

/* Drops the key's claims older than threshold (server ms); *standing tells
 * whether any claim remains. */
static int sweep_claims(mg *m, const char *key, int64_t threshold, bool *standing,
                        strata_error *err)
{
    char old[64][SHA256_HEX_LEN + 24];
    for (;;) {
        claim_walk w = {threshold, false, old, 0, 64};
        bson_t *f = BCON_NEW("k", BCON_UTF8(key));
        int rc = mg_each(m, MC_CLAIMS, f, NULL, claim_row, &w, NULL, "store: blob claims", err);
        bson_destroy(f);
        if (rc != 0)
            return -1;
        for (size_t i = 0; i < w.nold; i++) {
            bson_t *df = BCON_NEW("_id", BCON_UTF8(old[i]));
            rc = mg_delete(m, MC_CLAIMS, df, false, NULL, "store: drop abandoned claim", err);
            bson_destroy(df);
            if (rc != 0)
                return -1;
        }
        if (w.young || w.nold < w.cap) {
            *standing = w.young;
            return 0;
        }
    }
}

int mg_blob_collect_begin(store *base, const char *key, uint64_t token, int64_t claims_before_ms,
                          bool *doomed, strata_error *err)
{
    *doomed = false;
    mg m;
    mg_begin(&m, (mongo_store *)base);
    int64_t now = 0;
    int rc = mg_server_now(&m, &now, err);
    /* the caller's threshold is an age on its own clock; the claims' stamps
     * are the server's, so the age is applied to the server's now */
    int64_t threshold = now - (clock_wall_ms() - claims_before_ms);
    bool standing = false, doom = false, used = false;
    if (rc == 0)
        rc = sweep_claims(&m, key, threshold, &standing, err);
    if (rc == 0 && !standing) {
        bson_t *d = BCON_NEW("_id", BCON_UTF8(key), "tk", BCON_INT64((int64_t)token), "at",
                             BCON_INT64(now));
        rc = mg_insert(&m, MC_BLOBS, d, "store: doom blob", err);
        bson_destroy(d);
        if (rc != 0 && err->kind == SERR_CONFLICT) /* doomed already */
            rc = 0;
        else
            doom = rc == 0;
    }
    /* doomed: now the claims and references it must not have */
    if (rc == 0 && doom)
        rc = sweep_claims(&m, key, threshold, &standing, err);
    if (rc == 0 && doom && !standing)
        rc = referenced_on(&m, key, &used, err);
    if (rc == 0 && doom && (standing || used)) {
        bson_t *f = BCON_NEW("_id", BCON_UTF8(key));
        rc = mg_delete(&m, MC_BLOBS, f, false, NULL, "store: undo doom", err);
        bson_destroy(f);
        doom = false;
    }
    mg_end(&m);
    *doomed = rc == 0 && doom;
    return rc;
}

int mg_blob_collect_end(store *base, const char *key, strata_error *err)
{
    mg m;
    mg_begin(&m, (mongo_store *)base);
    bson_t *f = BCON_NEW("_id", BCON_UTF8(key));
    int rc = mg_delete(&m, MC_BLOBS, f, false, NULL, "store: end collection", err);
    bson_destroy(f);
    mg_end(&m);
    return rc;
}

typedef struct doomed_walk {
    int (*fn)(void *ctx, const char *key, uint64_t token);
    void *ctx;
} doomed_walk;

static int doomed_row(const bson_t *d, void *arg)
{
    doomed_walk *w = arg;
    char key[SHA256_HEX_LEN + 1];
    bs_str(d, "_id", key, sizeof key);
    return w->fn(w->ctx, key, (uint64_t)bs_i64(d, "tk"));
}

int mg_blob_collecting(store *base, int (*fn)(void *ctx, const char *key, uint64_t token),
                       void *ctx, strata_error *err)
{
    mg m;
    mg_begin(&m, (mongo_store *)base);
    doomed_walk w = {fn, ctx};
    bson_t f = BSON_INITIALIZER;
    int rc = mg_each(&m, MC_BLOBS, &f, NULL, doomed_row, &w, NULL, "store: doomed blobs", err);
    bson_destroy(&f);
    mg_end(&m);
    return rc;
}

/* ---- leases ------------------------------------------------------------------------- */

/* A register per lease (h holder, tk token, ex expiry in the server's
 * clock): renewed by its holder (same token), taken when expired (token
 * + 1), created (token 1); each a new state that one writer gets. */
static int lease_move(mg *m, const char *name, const char *holder, int64_t now, int64_t until,
                      bool release, bool *held, uint64_t *token, bool *abandoned, strata_error *err)
{
    for (int tries = 0; tries < 16; tries++) {
        uint64_t seq = 0;
        bson_t st;
        bool found = false;
        if (reg_read(m, MC_LEASES, 'l', name, &seq, &st, &found, err) != 0)
            return -1;
        char cur[256] = "";
        uint64_t tk = 0;
        int64_t ex = 0;
        if (found) {
            bs_str(&st, "h", cur, sizeof cur);
            tk = (uint64_t)bs_i64(&st, "tk");
            ex = bs_i64(&st, "ex");
            bson_destroy(&st);
        }
        bool mine = found && strcmp(cur, holder) == 0;
        if (release) {
            if (!mine || ex == 0)
                return 0;
            until = 0; /* expired, kept: the next holder's token must still grow */
        } else if (!mine && found && ex > now) {
            *held = false;
            *token = tk;
            return 0;
        }
        uint64_t ntk = mine ? tk : tk + 1;
        bson_t *fields = BCON_NEW("h", BCON_UTF8(holder), "tk", BCON_INT64((int64_t)ntk), "ex",
                                  BCON_INT64(until));
        int rc = reg_write(m, MC_LEASES, 'l', name, seq + 1, fields, NULL, err);
        bson_destroy(fields);
        if (rc == 0) {
            *held = !release;
            *token = ntk;
            /* taken from another holder that never released (ex 0 is a
             * release): it may have died mid-work */
            *abandoned = !release && found && !mine && ex != 0;
            return 0;
        }
        if (err->kind != SERR_CONFLICT)
            return -1;
    }
    return serr_set(err, SERR_RETRY, "store: lease %s keeps changing hands", name);
}

int mg_lease_acquire(store *base, const char *name, const char *holder, uint64_t ttl_ms, bool *held,
                     uint64_t *token, bool *abandoned, strata_error *err)
{
    *held = false;
    *token = 0;
    bool took_abandoned = false;
    mg m;
    mg_begin(&m, (mongo_store *)base);
    int64_t now = 0;
    int rc = mg_server_now(&m, &now, err);
    int64_t until = now + (int64_t)(ttl_ms > (uint64_t)INT32_MAX ? (uint64_t)INT32_MAX : ttl_ms);
    if (rc == 0)
        rc = lease_move(&m, name, holder, now, until, false, held, token, &took_abandoned, err);
    mg_end(&m);
    if (abandoned != NULL)
        *abandoned = rc == 0 && *held && took_abandoned;
    return rc;
}

int mg_lease_release(store *base, const char *name, const char *holder, strata_error *err)
{
    mg m;
    mg_begin(&m, (mongo_store *)base);
    bool held = false, abandoned = false;
    uint64_t token = 0;
    int rc = lease_move(&m, name, holder, 0, 0, true, &held, &token, &abandoned, err);
    mg_end(&m);
    return rc;
}

/* ---- access counts ------------------------------------------------------------------- */

/* Counts are inserted as deltas, one document per addition ($inc is no
 * atomic addition on FerretDB v1), and summed when read; a version's
 * deltas are folded into one when they pile up (each delta deleted by _id
 * first, so that two folders never count one twice; a crash between the
 * deletes and the insert loses those counts, never doubles them). */
#define ACCESS_FOLD_AT  16
#define ACCESS_FOLD_MAX 256

typedef struct acc_sum {
    uint64_t count;
    int64_t last;
    size_t docs;
    bson_oid_t ids[ACCESS_FOLD_MAX];
    int64_t counts[ACCESS_FOLD_MAX], lasts[ACCESS_FOLD_MAX];
} acc_sum;

static int sum_row(const bson_t *d, void *arg)
{
    acc_sum *a = arg;
    int64_t c = bs_i64(d, "c"), l = bs_i64(d, "last");
    a->count += (uint64_t)(c > 0 ? c : 0);
    if (l > a->last)
        a->last = l;
    bson_iter_t it;
    if (a->docs < ACCESS_FOLD_MAX && bson_iter_init_find(&it, d, "_id") &&
        BSON_ITER_HOLDS_OID(&it)) {
        bson_oid_copy(bson_iter_oid(&it), &a->ids[a->docs]);
        a->counts[a->docs] = c;
        a->lasts[a->docs] = l;
        a->docs++;
    }
    return 0;
}

static int access_sum(mg *m, const char *vid, acc_sum *a, strata_error *err)
{
    memset(a, 0, sizeof *a);
    bson_t *f = BCON_NEW("v", BCON_UTF8(vid));
    int rc = mg_each(m, MC_ACCESS, f, NULL, sum_row, a, NULL, "store: access counts", err);
    bson_destroy(f);
    return rc;
}

int mg_access_total(mg *m, const char *vid, uint64_t *count, int64_t *last, strata_error *err)
{
    acc_sum *a = malloc(sizeof *a);
    if (a == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    int rc = access_sum(m, vid, a, err);
    *count = rc == 0 ? a->count : 0;
    *last = rc == 0 ? a->last : 0;
    free(a);
    return rc;
}

/* Folds the deltas read in a into one (best effort). */
static void access_fold(mg *m, const store_access *item, const char *vid, const acc_sum *a)
{
    strata_error e2;
    int64_t c = 0, l = 0;
    for (size_t j = 0; j < a->docs; j++) {
        bson_t *f = BCON_NEW("_id", BCON_OID(&a->ids[j]));
        int64_t deleted = 0;
        int rc = mg_delete(m, MC_ACCESS, f, false, &deleted, "store: fold access counts", &e2);
        bson_destroy(f);
        if (rc != 0)
            break;
        if (deleted > 0) {
            c += a->counts[j];
            if (a->lasts[j] > l)
                l = a->lasts[j];
        }
    }
    if (c == 0 && l == 0)
        return;
    bson_t *d =
        BCON_NEW("v", BCON_UTF8(vid), "t", BCON_UTF8(item->type), "i", BCON_UTF8(item->id), "k",
                 BCON_INT64((int64_t)item->vkey), "c", BCON_INT64(c), "last", BCON_INT64(l));
    mg_insert(m, MC_ACCESS, d, "store: fold access counts", &e2);
    bson_destroy(d);
}

typedef struct acc_key {
    char vid[MG_VID_MAX];
    size_t idx;
} acc_key;

static int cmp_acc(const void *a, const void *b)
{
    const acc_key *x = a, *y = b;
    int c = strcmp(x->vid, y->vid);
    return c ? c : (x->idx < y->idx ? -1 : x->idx > y->idx);
}

/* One bulk insert of the deltas of the versions that exist, then each
 * version's sum. Totals after each item: the sum less what later items of
 * the same version in this call added; the last access the latest so far. */
int mg_add_access(store *base, store_access *items, size_t n, strata_error *err)
{
    if (n == 0)
        return 0;
    acc_key *keys = calloc(n, sizeof *keys);
    bool *exists = calloc(n, sizeof *exists);
    acc_sum *sum = malloc(sizeof *sum);
    if (!keys || !exists || !sum) {
        free(keys);
        free(exists);
        free(sum);
        return serr_set(err, SERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        mk_ver_id(keys[i].vid, sizeof keys[i].vid, items[i].type, items[i].id, items[i].vkey);
        keys[i].idx = i;
        items[i].total = 0;
        items[i].total_last_ms = 0;
    }
    qsort(keys, n, sizeof *keys, cmp_acc);
    mg m;
    mg_begin(&m, (mongo_store *)base);
    int rc = 0;
    size_t writes = 0;
    bson_t *bopts = BCON_NEW("ordered", BCON_BOOL(false));
    mongoc_bulk_operation_t *bulk =
        mongoc_collection_create_bulk_operation_with_opts(mg_coll(&m, MC_ACCESS), bopts);
    bson_destroy(bopts);
    for (size_t j = 0; rc == 0 && j < n; j++) {
        if (j > 0 && strcmp(keys[j].vid, keys[j - 1].vid) == 0)
            exists[j] = exists[j - 1];
        else {
            bson_t *f = BCON_NEW("_id", BCON_UTF8(keys[j].vid));
            rc = mg_find_one(&m, MC_VERSIONS, f, NULL, NULL, &exists[j], "store: record access",
                             err);
            bson_destroy(f);
        }
        if (rc != 0 || !exists[j])
            continue;
        const store_access *a = &items[keys[j].idx];
        bson_t *d = BCON_NEW("v", BCON_UTF8(keys[j].vid), "t", BCON_UTF8(a->type), "i",
                             BCON_UTF8(a->id), "k", BCON_INT64((int64_t)a->vkey), "c",
                             BCON_INT64((int64_t)a->count), "last", BCON_INT64(a->last_ms));
        bson_error_t be;
        if (!mongoc_bulk_operation_insert_with_opts(bulk, d, NULL, &be))
            rc = mongo_conn_error(&be, "store: record access", err);
        bson_destroy(d);
        writes++;
    }
    if (rc == 0 && writes > 0) {
        bson_t reply;
        bson_error_t be;
        if (mongoc_bulk_operation_execute(bulk, &reply, &be) == 0)
            rc = mongo_conn_error(&be, "store: record access", err);
        bson_destroy(&reply);
    }
    mongoc_bulk_operation_destroy(bulk);
    for (size_t j = 0; rc == 0 && j < n;) {
        size_t e = j;
        while (e < n && strcmp(keys[e].vid, keys[j].vid) == 0)
            e++;
        if (exists[j] && (rc = access_sum(&m, keys[j].vid, sum, err)) == 0) {
            int64_t later = 0, before_last = sum->last;
            for (size_t k = j; k < e; k++) {
                later += (int64_t)items[keys[k].idx].count;
                if (items[keys[k].idx].last_ms >= before_last)
                    before_last = INT64_MIN; /* the stored last may be ours: unknown */
            }
            int64_t seen_last = before_last == INT64_MIN ? 0 : sum->last;
            for (size_t k = j; k < e; k++) {
                store_access *a = &items[keys[k].idx];
                later -= (int64_t)a->count;
                a->total = (uint64_t)((int64_t)sum->count - later);
                if (a->last_ms > seen_last)
                    seen_last = a->last_ms;
                a->total_last_ms = seen_last;
            }
            if (sum->docs > ACCESS_FOLD_AT)
                access_fold(&m, &items[keys[j].idx], keys[j].vid, sum);
        }
        j = e;
    }
    mg_end(&m);
    free(keys);
    free(exists);
    free(sum);
    return rc;
}
