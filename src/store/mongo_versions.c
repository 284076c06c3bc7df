/* Versions in MongoDB: put (reserve, insert, seal, finalize: see
 * mongo_internal.h), reads through the head, lists, deletes with their
 * tombstones, dependents, pins and staleness.
 *
 * Version documents, _id "type/id@<vkey hex>" (and a unique (t, i, k)
 * index): t, i, k, ns, ca (created), h (data hash), b (blob key, absent
 * when inline), d (the record's JSON text), tags, c (inline content).
 * Never changed once written; whether one is visible is the head's to
 * say, and the chain fields are derived from the head and the neighbours
 * when read; w names its writer (the transaction, or the reservation's
 * nonce). Dependencies: _id "ft/fi@fk>tt/ti#w" with ft, fi, fk, tt, ti,
 * tk, w (the writer: only the one whose version stands counts, so a
 * voided writer's late document never takes another's place) and x (the
 * transaction, for its rollback). Tombstones: _id as a version's
 * ("type/id@0" for the resource), at, by. */
#include "mongo_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../codec/json_write.h"
#include "../common/clock.h"

#define REPAIR_TRIES 32

/* ---- reading ---------------------------------------------------------------- */

static int read_access(mg *m, const char *vid, uint64_t *count, int64_t *last, strata_error *err)
{
    return mg_access_total(m, vid, count, last, err);
}

/* The visible neighbour key below (dir < 0) or above vkey; 0 for none. */
static int neighbour(mg *m, const char *type, const char *id, const mhead *h, uint64_t vkey,
                     int dir, uint64_t *out, strata_error *err)
{
    bson_t f = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&f, "t", type);
    BSON_APPEND_UTF8(&f, "i", id);
    mh_visible_filter(&f, h, dir < 0 ? vkey : 0, dir < 0 ? 0 : vkey);
    bson_t *opts = BCON_NEW("sort", "{", "k", BCON_INT32(dir < 0 ? -1 : 1), "}", "projection", "{",
                            "k", BCON_INT32(1), "}");
    bson_t d;
    bool found = false;
    int rc = mg_find_one(m, MC_VERSIONS, &f, opts, &d, &found, "store: neighbour", err);
    bson_destroy(&f);
    bson_destroy(opts);
    *out = 0;
    if (rc == 0 && found) {
        *out = (uint64_t)bs_i64(&d, "k");
        bson_destroy(&d);
    }
    return rc;
}

/* A version as readers see it, from its document and its head (hdoc for
 * the stale reason); the chain fields are left to the caller. */
static int decode_version(const bson_t *vd, const mhead *h, const bson_t *hdoc, store_version *v,
                          strata_error *err)
{
    memset(v, 0, sizeof *v);
    bs_str(vd, "t", v->type, sizeof v->type);
    bs_str(vd, "i", v->id, sizeof v->id);
    bs_str(vd, "ns", v->ns, sizeof v->ns);
    v->vkey = (uint64_t)bs_i64(vd, "k");
    v->created_at_ms = bs_i64(vd, "ca");
    bs_str(vd, "h", v->data_hash, sizeof v->data_hash);
    bs_str(vd, "b", v->blob_key, sizeof v->blob_key);
    v->is_latest = v->vkey == h->latest;
    bson_iter_t it;
    if (bson_iter_init_find(&it, vd, "d") && BSON_ITER_HOLDS_UTF8(&it)) {
        uint32_t len;
        const char *s = bson_iter_utf8(&it, &len);
        v->doc = json_loadb(s, len, 0, NULL);
    } else {
        v->doc = json_object();
    }
    if (v->doc == NULL)
        return serr_set(err, SERR_CORRUPT, "store: version %s/%s has an unreadable record", v->type,
                        v->id);
    if (bson_iter_init_find(&it, vd, "c") && BSON_ITER_HOLDS_BINARY(&it)) {
        bson_subtype_t sub;
        uint32_t len;
        const uint8_t *data;
        bson_iter_binary(&it, &sub, &len, &data);
        v->content = malloc((size_t)len + 1);
        if (v->content == NULL)
            return serr_set(err, SERR_NOMEM, "out of memory reading a record");
        if (len > 0)
            memcpy(v->content, data, len);
        v->content_len = len;
    }
    v->stale = v->is_latest && h->stale;
    if (v->stale && hdoc != NULL && bson_iter_init_find(&it, hdoc, "sr") &&
        BSON_ITER_HOLDS_UTF8(&it)) {
        uint32_t len;
        const char *s = bson_iter_utf8(&it, &len);
        v->stale_reason = json_loadb(s, len, 0, NULL);
    }
    return 0;
}

/* decode_version, then the chain fields (from the neighbours) and the
 * access counts. */
static int full_version(mg *m, const bson_t *vd, const mhead *h, const bson_t *hdoc,
                        store_version *v, strata_error *err)
{
    if (decode_version(vd, h, hdoc, v, err) != 0 ||
        neighbour(m, v->type, v->id, h, v->vkey, -1, &v->supersedes, err) != 0)
        return -1;
    /* nothing visible lies above the latest */
    if (!v->is_latest && neighbour(m, v->type, v->id, h, v->vkey, 1, &v->superseded_by, err) != 0)
        return -1;
    char vid[MG_VID_MAX];
    mk_ver_id(vid, sizeof vid, v->type, v->id, v->vkey);
    return read_access(m, vid, &v->access_count, &v->last_accessed_ms, err);
}

/* The document of (type, id, vkey), if any (visible or not: the head says). */
static int find_version_doc(mg *m, const char *type, const char *id, uint64_t vkey, bson_t *out,
                            bool *found, strata_error *err)
{
    char vid[MG_VID_MAX];
    mk_ver_id(vid, sizeof vid, type, id, vkey);
    bson_t *f = BCON_NEW("_id", BCON_UTF8(vid));
    int rc = mg_find_one(m, MC_VERSIONS, f, NULL, out, found, "store: read version", err);
    bson_destroy(f);
    if (rc == 0 && *found) {
        char t[STORE_TYPE_MAX];
        bs_str(out, "t", t, sizeof t);
        if (strcmp(t, type) != 0) { /* a given-up key's blocker (abort_put) */
            bson_destroy(out);
            *found = false;
        }
    }
    return rc;
}

int mg_get_version(store *base, store_txn *txn, const char *type, const char *id, uint64_t vkey,
                   store_version *out, strata_error *err)
{
    memset(out, 0, sizeof *out);
    mg m;
    mg_begin(&m, (mongo_store *)base);
    mhead h;
    bson_t hdoc, vd;
    bool found = false;
    int rc = mh_read_tx(&m, txn != NULL ? txn->tid : NULL, type, id, &h, &hdoc, err);
    if (rc == 0) {
        uint64_t k = vkey != 0 ? vkey : h.latest;
        if (k == 0 || !mh_visible(&h, k))
            rc = serr_set(err, SERR_NOT_FOUND, "no such version");
        else if ((rc = find_version_doc(&m, type, id, k, &vd, &found, err)) == 0) {
            if (!found)
                rc = serr_set(err, SERR_NOT_FOUND, "no such version");
            else {
                rc = full_version(&m, &vd, &h, &hdoc, out, err);
                bson_destroy(&vd);
            }
        }
        bson_destroy(&hdoc);
    }
    mg_end(&m);
    if (rc != 0)
        store_version_clear(out);
    return rc;
}

/* ---- writing ---------------------------------------------------------------- */

static void append_tags(bson_t *d, const json_t *doc)
{
    bson_t arr;
    BSON_APPEND_ARRAY_BEGIN(d, "tags", &arr);
    const json_t *tags = doc ? json_object_get(doc, "tags") : NULL;
    size_t i, n = 0;
    const json_t *t;
    json_array_foreach(tags, i, t)
    {
        if (json_is_string(t)) {
            char k[24];
            snprintf(k, sizeof k, "%zu", n++);
            BSON_APPEND_UTF8(&arr, k, json_string_value(t));
        }
    }
    bson_append_array_end(d, &arr);
}

/* Gives the key of a failed put up: voided in store_seals (unless it was
 * sealed), its document and dependencies removed, the reservation dropped.
 * The key needs no hole when a blocker document (t "", i "type/id", so
 * that no read of versions takes it for one) now stands at its _id: then no document
 * can ever appear there (a late insert, this writer's or a voided
 * transaction's, is refused). Otherwise it becomes a hole. Best effort:
 * a resolver finishes what this cannot. */
static void abort_put(mg *m, const store_version *v, const char *nonce)
{
    strata_error e2;
    char vid[MG_VID_MAX];
    mk_ver_id(vid, sizeof vid, v->type, v->id, v->vkey);
    bool ok = false;
    if (mh_decide(m, vid, false, &ok, &e2) != 0 || ok)
        return;
    bson_t *f = BCON_NEW("_id", BCON_UTF8(vid));
    mg_delete(m, MC_VERSIONS, f, false, NULL, "store: drop version", &e2);
    bson_destroy(f);
    bool clean = mh_block_key(m, v->type, v->id, v->vkey, vid);
    bson_t *df = BCON_NEW("ft", BCON_UTF8(v->type), "fi", BCON_UTF8(v->id), "fk",
                          BCON_INT64((int64_t)v->vkey), "w", BCON_UTF8(nonce));
    mg_delete(m, MC_DEPS, df, true, NULL, "store: drop dependencies", &e2);
    bson_destroy(df);
    for (int tries = 0; tries < REPAIR_TRIES; tries++) {
        mhead h;
        bson_t hdoc;
        if (mh_read(m, v->type, v->id, &h, &hdoc, &e2) != 0)
            return;
        int rc = 0;
        bool mine = h.pend == v->vkey && strcmp(h.nonce, nonce) == 0 && h.pxs == MH_PX_NONE;
        bool holed = false;
        for (size_t i = 0; i < h.nholes; i++)
            holed |= h.holes[i] == v->vkey;
        /* a resolver that voided it first made it a hole: clean, it goes */
        bool unhole = clean && !mine && holed && h.pend == 0 && h.pxs == MH_PX_NONE;
        if (mine || unhole) {
            bson_t set = BSON_INITIALIZER;
            if (mine) {
                BSON_APPEND_INT64(&set, "pk", 0);
                BSON_APPEND_UTF8(&set, "pn", "");
            }
            if (mine && !clean)
                mh_holes_plus(&set, &h, v->vkey);
            else if (unhole)
                mh_holes_minus(&set, &h, v->vkey);
            rc = mh_move(m, v->type, v->id, &h, &hdoc, &set, NULL, &e2);
            bson_destroy(&set);
        }
        bson_destroy(&hdoc);
        if (rc == 0)
            break;
        if (e2.kind != SERR_CONFLICT)
            return;
    }
}

/* Step 1 of a put: the head moves from (expected latest, expected max, no
 * reservation) to max = reserved = v->vkey, or SERR_CONFLICT. */
static int reserve(mg *m, const store_version *v, uint64_t exp_latest, uint64_t exp_max,
                   const char *nonce, mhead *rh, bson_t *rdoc, strata_error *err)
{
    mhead h;
    bson_t hdoc;
    if (mh_settled_w(m, v->type, v->id, &h, &hdoc, err) != 0)
        return -1;
    int rc = 0;
    if (h.latest != exp_latest || h.max != exp_max || h.pend != 0)
        rc = serr_set(err, SERR_CONFLICT, "the latest version of %s/%s moved", v->type, v->id);
    else if (h.nholes >= MH_HOLES_MAX) /* no room for the hole a void would add */
        rc = serr_set(err, SERR_RETRY, "store: %s/%s holds too many abandoned versions", v->type,
                      v->id);
    if (rc == 0) {
        bson_t set = BSON_INITIALIZER;
        if (!h.exists) {
            bson_t fresh = BSON_INITIALIZER;
            mh_fresh_fields(&fresh, v->type, v->id, v->ns);
            bson_copy_to_excluding_noinit(&fresh, &set, "m", "pk", "pn", NULL);
            bson_destroy(&fresh);
        }
        BSON_APPEND_INT64(&set, "m", (int64_t)v->vkey);
        BSON_APPEND_INT64(&set, "pk", (int64_t)v->vkey);
        BSON_APPEND_UTF8(&set, "pn", nonce);
        rc = mh_move(m, v->type, v->id, &h, &hdoc, &set, rdoc, err);
        bson_destroy(&set);
        if (rc != 0 && err->kind == SERR_CONFLICT)
            rc = serr_set(err, SERR_CONFLICT, "the latest version of %s/%s moved", v->type, v->id);
        if (rc == 0) {
            memset(rh, 0, sizeof *rh);
            rh->exists = true;
            rh->seq = h.seq + 1;
        }
    }
    bson_destroy(&hdoc);
    return rc;
}

/* xid: the transaction writing them ("" outside one), so that a voided
 * transaction's leftovers are told from a later writer's; wid: the
 * writer (the transaction, or the reservation's nonce), in the _id so
 * that no other writer's upsert ever takes the document over. */
static int write_deps(mg *m, const store_version *v, const store_dep *deps, size_t ndeps,
                      const char *xid, const char *wid, strata_error *err)
{
    for (size_t i = 0; i < ndeps; i++) {
        char did[2 * MG_VID_MAX + 32];
        snprintf(did, sizeof did, "%s/%s@%016" PRIx64 ">%s/%s#%s", v->type, v->id, v->vkey,
                 deps[i].type, deps[i].id, wid);
        bson_t *f = BCON_NEW("_id", BCON_UTF8(did));
        bson_t *u = BCON_NEW("$set", "{", "ft", BCON_UTF8(v->type), "fi", BCON_UTF8(v->id), "fk",
                             BCON_INT64((int64_t)v->vkey), "tt", BCON_UTF8(deps[i].type), "ti",
                             BCON_UTF8(deps[i].id), "tk", BCON_INT64((int64_t)deps[i].vkey), "x",
                             BCON_UTF8(xid), "w", BCON_UTF8(wid), "}");
        int rc = mg_update(m, MC_DEPS, f, u, true, NULL, "store: index a dependency", err);
        bson_destroy(f);
        bson_destroy(u);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* After v's dependencies are indexed: each exact version v depends on is
 * still visible (a delete of it that checked pins before the index had
 * the dependency has moved its head by now). In a transaction a busy
 * head makes it abort and run again (it never waits holding heads). */
static int deps_still_there(mg *m, store_txn *t, const store_version *v, const store_dep *deps,
                            size_t ndeps, strata_error *err)
{
    for (size_t i = 0; i < ndeps; i++) {
        if (deps[i].vkey == 0)
            continue;
        mhead h;
        tx_head *slot = NULL;
        bool self = strcmp(deps[i].type, v->type) == 0 && strcmp(deps[i].id, v->id) == 0;
        int rc = self        ? mh_read(m, deps[i].type, deps[i].id, &h, NULL, err)
                 : t != NULL ? tx_head_get(t, m, deps[i].type, deps[i].id, &slot, &h, NULL, err)
                             : mh_settled_w(m, deps[i].type, deps[i].id, &h, NULL, err);
        if (rc != 0)
            return -1;
        if (!mh_visible(&h, deps[i].vkey)) {
            char vs[SEMVER_STR_MAX];
            semver_format(deps[i].vkey, vs);
            return serr_set(err, SERR_INVALID,
                            "dependencies[%zu]: %s/%s has no version %s (deleted meanwhile)", i,
                            deps[i].type, deps[i].id, vs);
        }
    }
    return 0;
}

/* A document at v's key left by a voided transaction (a slow writer's,
 * inserted after its rollback): removed, since whoever inserts v holds
 * the head, so the key is not issued to anyone else meanwhile; *cleared
 * tells whether there was one. */
static int clear_leftover(mg *m, const store_version *v, bool *cleared, strata_error *err)
{
    *cleared = false;
    char vid[MG_VID_MAX], x[24];
    mk_ver_id(vid, sizeof vid, v->type, v->id, v->vkey);
    bson_t *f = BCON_NEW("_id", BCON_UTF8(vid));
    bson_t *opts = BCON_NEW("projection", "{", "x", BCON_INT32(1), "}");
    bson_t d;
    bool found = false;
    int rc = mg_find_one(m, MC_VERSIONS, f, opts, &d, &found, "store: read version", err);
    bson_destroy(f);
    bson_destroy(opts);
    if (rc != 0 || !found)
        return rc;
    bs_str(&d, "x", x, sizeof x);
    bson_destroy(&d);
    int dec = 0;
    if (!x[0]) /* outside a transaction: its writer's abort removes it */
        return 0;
    if (mh_decision(m, x, &dec, err) != 0)
        return -1;
    if (dec < 0) {
        mv_drop_docs(m, v->type, v->id, &v->vkey, 1, x);
        *cleared = true;
    }
    return 0;
}

static int insert_version(mg *m, const store_version *v, const char *xid, const char *wid,
                          strata_error *err)
{
    char vid[MG_VID_MAX];
    mk_ver_id(vid, sizeof vid, v->type, v->id, v->vkey);
    char *text = v->doc ? json_write_text(v->doc, 0, NULL, NULL) : strdup("{}");
    if (text == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory serialising a record");
    bson_t d = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&d, "_id", vid);
    BSON_APPEND_UTF8(&d, "t", v->type);
    BSON_APPEND_UTF8(&d, "i", v->id);
    BSON_APPEND_INT64(&d, "k", (int64_t)v->vkey);
    BSON_APPEND_UTF8(&d, "ns", v->ns);
    BSON_APPEND_INT64(&d, "ca", v->created_at_ms);
    BSON_APPEND_UTF8(&d, "h", v->data_hash);
    if (v->blob_key[0])
        BSON_APPEND_UTF8(&d, "b", v->blob_key);
    BSON_APPEND_UTF8(&d, "d", text);
    free(text);
    append_tags(&d, v->doc);
    if (v->content != NULL)
        BSON_APPEND_BINARY(&d, "c", BSON_SUBTYPE_BINARY, v->content, (uint32_t)v->content_len);
    if (xid[0])
        BSON_APPEND_UTF8(&d, "x", xid);
    BSON_APPEND_UTF8(&d, "w", wid);
    int rc = mg_insert(m, MC_VERSIONS, &d, "store: insert version", err);
    if (rc != 0 && err->kind == SERR_CONFLICT) {
        strata_error e2;
        bool cleared = false;
        if (clear_leftover(m, v, &cleared, &e2) == 0 && cleared)
            rc = mg_insert(m, MC_VERSIONS, &d, "store: insert version", err);
    }
    bson_destroy(&d);
    return rc;
}

/* Step 3: the head moves from the reservation to the new latest. Another
 * writer may move the head meanwhile (staleness, a delete of an older
 * version): then again from its state. Gone, the reservation was taken by
 * a resolver, which rolled it forward since the version is sealed. */
static int finalize(mg *m, const store_version *v, const char *nonce, const mhead *rh,
                    const bson_t *rdoc, strata_error *err)
{
    bson_t set = BSON_INITIALIZER;
    BSON_APPEND_INT64(&set, "l", (int64_t)v->vkey);
    BSON_APPEND_UTF8(&set, "lh", v->data_hash);
    BSON_APPEND_UTF8(&set, "ns", v->ns);
    append_tags(&set, v->doc);
    BSON_APPEND_BOOL(&set, "st", false);
    BSON_APPEND_NULL(&set, "sr");
    BSON_APPEND_INT64(&set, "pk", 0);
    BSON_APPEND_UTF8(&set, "pn", "");
    /* first from the reservation as written: usually still the head */
    int rc = mh_move(m, v->type, v->id, rh, rdoc, &set, NULL, err);
    for (int tries = 0; rc != 0 && err->kind == SERR_CONFLICT && tries < REPAIR_TRIES; tries++) {
        mhead h;
        bson_t hdoc;
        if (mh_read(m, v->type, v->id, &h, &hdoc, err) != 0) {
            rc = -1;
            break;
        }
        if (h.pend != v->vkey || strcmp(h.nonce, nonce) != 0) {
            bson_destroy(&hdoc);
            rc = 0;
            break;
        }
        rc = mh_move(m, v->type, v->id, &h, &hdoc, &set, NULL, err);
        bson_destroy(&hdoc);
    }
    bson_destroy(&set);
    if (rc != 0 && err->kind == SERR_CONFLICT)
        rc = serr_set(err, SERR_RETRY, "store: the head of %s/%s kept moving", v->type, v->id);
    return rc;
}

/* put_version in a transaction: the head moves to a pending state that
 * intends v as its latest; the document goes in before the decision. */
static int put_in_txn(mg *m, store_txn *t, store_version *v, uint64_t exp_latest, uint64_t exp_max,
                      const store_dep *deps, size_t ndeps, uint64_t claim, strata_error *err)
{
    if (claim != 0) {
        bool stands = false;
        if (mg_claim_stands(m, v->blob_key, claim, &stands, err) != 0)
            return -1;
        if (!stands)
            return serr_set(err, SERR_RETRY, "the claim on blob %.12s lapsed", v->blob_key);
    }
    tx_head *slot = NULL;
    mhead h;
    bson_t hdoc;
    if (tx_head_get(t, m, v->type, v->id, &slot, &h, &hdoc, err) != 0)
        return -1;
    if (h.latest != exp_latest || h.max != exp_max) {
        bson_destroy(&hdoc);
        /* moved since the body read it (not by the body): run it again */
        return serr_set(err, slot != NULL ? SERR_CONFLICT : SERR_RETRY,
                        "the latest version of %s/%s moved", v->type, v->id);
    }
    bson_t set = BSON_INITIALIZER;
    if (!h.exists) {
        bson_t fresh = BSON_INITIALIZER;
        mh_fresh_fields(&fresh, v->type, v->id, v->ns);
        bson_copy_to_excluding_noinit(&fresh, &set, "l", "m", "lh", "ns", "tags", "st", "sr", NULL);
        bson_destroy(&fresh);
    }
    BSON_APPEND_INT64(&set, "l", (int64_t)v->vkey);
    BSON_APPEND_INT64(&set, "m", (int64_t)v->vkey);
    BSON_APPEND_UTF8(&set, "lh", v->data_hash);
    BSON_APPEND_UTF8(&set, "ns", v->ns);
    append_tags(&set, v->doc);
    BSON_APPEND_BOOL(&set, "st", false);
    BSON_APPEND_NULL(&set, "sr");
    int rc = tx_head_put(t, m, v->type, v->id, &slot, &h, &hdoc, &set, v->vkey, 0, err);
    bson_destroy(&set);
    bson_destroy(&hdoc);
    if (rc != 0)
        return -1;
    /* the key is the transaction's: an abort drops what follows */
    if (write_deps(m, v, deps, ndeps, t->tid, t->tid, err) != 0 ||
        deps_still_there(m, t, v, deps, ndeps, err) != 0)
        return -1;
    if (insert_version(m, v, t->tid, t->tid, err) != 0) {
        if (err->kind == SERR_CONFLICT) /* a voided transaction's leftover: cleared on retry */
            err->kind = SERR_RETRY;
        return -1;
    }
    if (claim != 0) {
        bool consumed = false;
        if (mg_claim_consume(m, v->blob_key, claim, &consumed, err) != 0)
            return -1;
        if (!consumed)
            return serr_set(err, SERR_RETRY, "the claim on blob %.12s lapsed", v->blob_key);
    }
    if (exp_latest == 0) { /* a new life: the resource's tombstone goes at the commit */
        tx_after a = {.kind = TXA_CLEAR_TOMB};
        snprintf(a.type, sizeof a.type, "%s", v->type);
        snprintf(a.id, sizeof a.id, "%s", v->id);
        if (tx_after_add(t, &a, err) != 0)
            return -1;
    }
    slot->res_deleted = false;
    v->is_latest = true;
    v->supersedes = exp_latest;
    v->superseded_by = 0;
    return 0;
}

int mg_put_version(store *base, store_txn *txn, store_version *v, uint64_t expected_latest,
                   uint64_t expected_max, const store_dep *deps, size_t ndeps, uint64_t claim,
                   strata_error *err)
{
    if (claim == 0 && v->blob_key[0])
        return serr_set(err, SERR_INTERNAL, "a version in a blob needs the save's claim on it");
    if (v->vkey <= expected_max || v->vkey > (uint64_t)INT64_MAX)
        return serr_set(err, SERR_CONFLICT, "version key not above the highest issued");
    mg m;
    mg_begin(&m, (mongo_store *)base);
    if (txn != NULL) {
        int r = put_in_txn(&m, txn, v, expected_latest, expected_max, deps, ndeps, claim, err);
        mg_end(&m);
        return r;
    }
    int rc = 0;
    if (claim != 0) {
        bool stands = false;
        rc = mg_claim_stands(&m, v->blob_key, claim, &stands, err);
        if (rc == 0 && !stands)
            rc = serr_set(err, SERR_RETRY, "the claim on blob %.12s lapsed", v->blob_key);
    }
    char nonce[24];
    snprintf(nonce, sizeof nonce, "%016" PRIx64, mg_random63());
    mhead rh;
    bson_t rdoc;
    if (rc == 0)
        rc = reserve(&m, v, expected_latest, expected_max, nonce, &rh, &rdoc, err);
    if (rc != 0) {
        mg_end(&m);
        return -1;
    }
    /* from here on the key is ours: a failure gives it up */
    rc = write_deps(&m, v, deps, ndeps, "", nonce, err);
    if (rc == 0)
        rc = deps_still_there(&m, NULL, v, deps, ndeps, err);
    if (rc == 0)
        rc = insert_version(&m, v, "", nonce, err);
    if (rc == 0 && claim != 0) {
        /* after the insert, so that a collector finds the reference */
        bool consumed = false;
        rc = mg_claim_consume(&m, v->blob_key, claim, &consumed, err);
        if (rc == 0 && !consumed)
            rc = serr_set(err, SERR_RETRY, "the claim on blob %.12s lapsed", v->blob_key);
    }
    char vid[MG_VID_MAX];
    mk_ver_id(vid, sizeof vid, v->type, v->id, v->vkey);
    bool sealed = false;
    if (rc == 0 && mh_decide(&m, vid, true, &sealed, err) == 0 && !sealed)
        rc = serr_set(err, SERR_CONFLICT, "the reservation of %s/%s was given up", v->type, v->id);
    else if (rc == 0 && !sealed)
        rc = -1;
    if (rc != 0) {
        bson_destroy(&rdoc);
        abort_put(&m, v, nonce);
        mg_end(&m);
        return -1;
    }
    rc = finalize(&m, v, nonce, &rh, &rdoc, err);
    bson_destroy(&rdoc);
    if (rc == 0 && expected_latest == 0) {
        /* a new life: the resource's own tombstone no longer applies */
        char tid[MG_VID_MAX];
        mk_ver_id(tid, sizeof tid, v->type, v->id, 0);
        bson_t *tf = BCON_NEW("_id", BCON_UTF8(tid));
        rc = mg_delete(&m, MC_TOMBS, tf, false, NULL, "store: clear tombstone", err);
        bson_destroy(tf);
    }
    mg_end(&m);
    if (rc != 0)
        return -1;
    v->is_latest = true;
    v->supersedes = expected_latest;
    v->superseded_by = 0;
    return 0;
}

/* ---- lists ------------------------------------------------------------------ */

static int page_alloc(store_page *out, size_t limit, strata_error *err)
{
    memset(out, 0, sizeof *out);
    out->items = calloc(limit + 1, sizeof *out->items);
    return out->items ? 0 : serr_set(err, SERR_NOMEM, "out of memory for a page");
}

typedef struct doc_list {
    bson_t **docs;
    size_t n, cap;
} doc_list;

static int collect_doc(const bson_t *doc, void *ctx)
{
    doc_list *l = ctx;
    if (l->n == l->cap)
        return 1;
    l->docs[l->n] = bson_copy(doc);
    if (l->docs[l->n] == NULL)
        return 1;
    l->n++;
    return 0;
}

static void doc_list_free(doc_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        bson_destroy(l->docs[i]);
    free(l->docs);
    memset(l, 0, sizeof *l);
}

static int doc_list_init(doc_list *l, size_t cap, strata_error *err)
{
    memset(l, 0, sizeof *l);
    l->docs = calloc(cap ? cap : 1, sizeof *l->docs);
    l->cap = cap;
    return l->docs ? 0 : serr_set(err, SERR_NOMEM, "out of memory for a page");
}

int mg_list_versions(store *base, const char *type, const char *id, const store_list_opts *o,
                     store_page *out, strata_error *err)
{
    memset(out, 0, sizeof *out);
    uint64_t after = 0;
    if (o->cursor && store_cursor_decode(o->cursor, 'v', &after) != 0)
        return serr_set(err, SERR_INVALID, "cursor is not valid for this list");
    mg m;
    mg_begin(&m, (mongo_store *)base);
    mhead h;
    bson_t hdoc;
    doc_list l = {0};
    int rc = mh_read(&m, type, id, &h, &hdoc, err);
    if (rc != 0) {
        mg_end(&m);
        return -1;
    }
    if (!h.exists || h.latest == 0)
        rc = serr_set(err, SERR_NOT_FOUND, "no resource %s/%s", type, id);
    if (rc == 0)
        rc = doc_list_init(&l, o->limit + 1, err);
    if (rc == 0)
        rc = page_alloc(out, o->limit, err);
    if (rc == 0) {
        bson_t f = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&f, "t", type);
        BSON_APPEND_UTF8(&f, "i", id);
        mh_visible_filter(&f, &h, after, 0);
        bson_t *opts = BCON_NEW("sort", "{", "k", BCON_INT32(-1), "}", "limit",
                                BCON_INT64((int64_t)o->limit + 1));
        bool stopped = false;
        rc = mg_each(&m, MC_VERSIONS, &f, opts, collect_doc, &l, &stopped, "store: list versions",
                     err);
        bson_destroy(&f);
        bson_destroy(opts);
        if (rc == 0 && stopped && l.n < l.cap)
            rc = serr_set(err, SERR_NOMEM, "out of memory for a page");
    }
    size_t keep = l.n > o->limit ? o->limit : l.n;
    for (size_t j = 0; rc == 0 && j < keep; j++) {
        store_version *v = calloc(1, sizeof *v);
        if (v == NULL) {
            rc = serr_set(err, SERR_NOMEM, "out of memory for a page");
            break;
        }
        out->items[out->count++] = v;
        if ((rc = decode_version(l.docs[j], &h, &hdoc, v, err)) != 0)
            break;
        v->supersedes = j + 1 < l.n ? (uint64_t)bs_i64(l.docs[j + 1], "k") : 0;
        if (j > 0)
            v->superseded_by = out->items[j - 1]->vkey;
        else
            rc = neighbour(&m, type, id, &h, v->vkey, 1, &v->superseded_by, err);
        char vid[MG_VID_MAX];
        mk_ver_id(vid, sizeof vid, type, id, v->vkey);
        if (rc == 0)
            rc = read_access(&m, vid, &v->access_count, &v->last_accessed_ms, err);
    }
    if (rc == 0 && l.n > o->limit && keep > 0) {
        out->next = store_cursor_encode('v', out->items[keep - 1]->vkey);
        if (out->next == NULL)
            rc = serr_set(err, SERR_NOMEM, "out of memory");
    }
    doc_list_free(&l);
    bson_destroy(&hdoc);
    mg_end(&m);
    if (rc != 0)
        store_page_free(out);
    return rc;
}

/* The latest version of (type, id) as a list item, if the head (h, read
 * by the caller, hdoc its state) names one (NULL *out otherwise). */
static int latest_item(mg *m, const char *type, const char *id, const mhead *h, const bson_t *hdoc,
                       store_version **out, strata_error *err)
{
    *out = NULL;
    if (h->latest == 0 || !mh_visible(h, h->latest))
        return 0;
    bson_t vd;
    bool found = false;
    if (find_version_doc(m, type, id, h->latest, &vd, &found, err) != 0)
        return -1;
    if (!found) /* a delete under way */
        return 0;
    store_version *v = calloc(1, sizeof *v);
    int rc = v ? full_version(m, &vd, h, hdoc, v, err)
               : serr_set(err, SERR_NOMEM, "out of memory for a page");
    bson_destroy(&vd);
    if (rc != 0) {
        store_version_free(v);
        return -1;
    }
    *out = v;
    return 0;
}

typedef struct res_walk {
    mg *m;
    const store_list_opts *o;
    store_page *out;
    bool more;
    int rc;
    strata_error *err;
} res_walk;

static bool has_tag(const bson_t *hdoc, const char *tag)
{
    bson_iter_t it, a;
    if (!bson_iter_init_find(&it, hdoc, "tags") || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &a))
        return false;
    while (bson_iter_next(&a))
        if (BSON_ITER_HOLDS_UTF8(&a) && strcmp(bson_iter_utf8(&a, NULL), tag) == 0)
            return true;
    return false;
}

static int res_row(const bson_t *p, void *ctx)
{
    res_walk *w = ctx;
    char type[STORE_TYPE_MAX], id[STORE_ID_MAX + 1], ns[STORE_NS_MAX + 1];
    bs_str(p, "t", type, sizeof type);
    bs_str(p, "i", id, sizeof id);
    mhead h;
    bson_t hdoc;
    if ((w->rc = mh_read(w->m, type, id, &h, &hdoc, w->err)) != 0)
        return 1;
    bs_str(&hdoc, "ns", ns, sizeof ns);
    bool keep = h.latest != 0 && (w->o->ns == NULL || strcmp(ns, w->o->ns) == 0) &&
                (w->o->stale < 0 || h.stale == (w->o->stale > 0)) &&
                (w->o->tag == NULL || has_tag(&hdoc, w->o->tag));
    store_version *v = NULL;
    if (keep && w->out->count == w->o->limit) {
        w->more = true;
        bson_destroy(&hdoc);
        return 1;
    }
    if (keep)
        w->rc = latest_item(w->m, type, id, &h, &hdoc, &v, w->err);
    bson_destroy(&hdoc);
    if (v != NULL)
        w->out->items[w->out->count++] = v;
    return w->rc != 0;
}

#define LIST_TRIES 8

/* Walks the heads' pointers of the type by id, reading each head. A
 * transaction (a batch) that commits while the walk reads its heads could
 * show in part: the heads read before its seal as they were, those after
 * as it left them. So a walk that met a transaction undecided checks it
 * at the end and, if it committed meanwhile, walks again; the page then
 * holds all of a batch or none of it. */
int mg_list_resources(store *base, const char *type, const store_list_opts *o, store_page *out,
                      strata_error *err)
{
    memset(out, 0, sizeof *out);
    char after[STORE_ID_MAX + 1] = "";
    if (o->cursor && store_cursor_decode_str(o->cursor, 'r', after, sizeof after) != 0)
        return serr_set(err, SERR_INVALID, "cursor is not valid for this list");
    mg m;
    mg_begin(&m, (mongo_store *)base);
    res_walk w;
    int rc = 0;
    for (int tries = 0;; tries++) {
        if (page_alloc(out, o->limit, err) != 0) {
            rc = -1;
            break;
        }
        w = (res_walk){&m, o, out, false, 0, err};
        bson_t *f = BCON_NEW("t", BCON_UTF8(type), "i", "{", "$gt", BCON_UTF8(after), "}");
        bson_t *opts = BCON_NEW("sort", "{", "i", BCON_INT32(1), "}");
        rc = mg_each(&m, MC_PTRS, f, opts, res_row, &w, NULL, "store: list resources", err);
        bson_destroy(f);
        bson_destroy(opts);
        if (rc == 0)
            rc = w.rc;
        bool committed = false;
        if (rc == 0)
            rc = mg_open_tx_committed(&m, &committed, err);
        if (rc != 0 || !committed)
            break;
        store_page_free(out);
        if (tries + 1 == LIST_TRIES) {
            rc = serr_set(err, SERR_RETRY, "store: batches kept committing during a listing");
            break;
        }
    }
    if (rc == 0 && w.more && out->count > 0) {
        out->next = store_cursor_encode_str('r', out->items[out->count - 1]->id);
        if (out->next == NULL)
            rc = serr_set(err, SERR_NOMEM, "out of memory");
    }
    mg_end(&m);
    if (rc != 0)
        store_page_free(out);
    return rc;
}

/* ---- deletes ---------------------------------------------------------------- */

static int put_tombstone(mg *m, const char *type, const char *id, uint64_t vkey,
                         const char *removed_by, strata_error *err)
{
    char tid[MG_VID_MAX];
    mk_ver_id(tid, sizeof tid, type, id, vkey);
    bson_t *f = BCON_NEW("_id", BCON_UTF8(tid));
    bson_t *u = BCON_NEW("$set", "{", "t", BCON_UTF8(type), "i", BCON_UTF8(id), "k",
                         BCON_INT64((int64_t)vkey), "at", BCON_INT64(clock_wall_ms()), "by",
                         BCON_UTF8(removed_by ? removed_by : "request"), "}");
    int rc = mg_update(m, MC_TOMBS, f, u, true, NULL, "store: tombstone", err);
    bson_destroy(f);
    bson_destroy(u);
    return rc;
}

/* Moves the head's latest from `from` (h, its state hdoc) to the newest
 * visible version below it (none: latest 0); *moved false when the head
 * moved first. */
/* Appends to set the head's latest fields for the newest visible version
 * below `from` (none: latest 0); *gone when that one vanished meanwhile. */
static int latest_below(mg *m, const char *type, const char *id, const mhead *h, uint64_t from,
                        bson_t *set, bool *gone, strata_error *err)
{
    *gone = false;
    uint64_t r = 0;
    if (neighbour(m, type, id, h, from, -1, &r, err) != 0)
        return -1;
    bson_t rd;
    bool found = false;
    if (r != 0 && find_version_doc(m, type, id, r, &rd, &found, err) != 0)
        return -1;
    if (r != 0 && !found) {
        *gone = true;
        return 0;
    }
    if (r != 0) {
        mh_latest_fields(set, &rd);
        bson_destroy(&rd);
    } else {
        bson_t empty;
        BSON_APPEND_INT64(set, "l", 0);
        BSON_APPEND_UTF8(set, "lh", "");
        BSON_APPEND_ARRAY_BEGIN(set, "tags", &empty);
        bson_append_array_end(set, &empty);
    }
    return 0;
}

static int move_latest_down(mg *m, const char *type, const char *id, const mhead *h,
                            const bson_t *hdoc, uint64_t from, bool *moved, strata_error *err)
{
    *moved = false;
    bool gone = false;
    bson_t set = BSON_INITIALIZER;
    if (latest_below(m, type, id, h, from, &set, &gone, err) != 0 || gone) {
        bson_destroy(&set);
        return gone ? 0 : -1; /* gone meanwhile: look again */
    }
    int rc = mh_move(m, type, id, h, hdoc, &set, NULL, err);
    bson_destroy(&set);
    if (rc != 0 && err->kind == SERR_CONFLICT)
        return 0;
    *moved = rc == 0;
    return rc;
}

/* After a delete: a head whose latest document is gone (another deleter
 * moved the head onto it meanwhile) moves down until it names one. */
static int repair_latest(mg *m, const char *type, const char *id, strata_error *err)
{
    for (int tries = 0; tries < REPAIR_TRIES; tries++) {
        mhead h;
        bson_t hdoc;
        if (mh_settled_w(m, type, id, &h, &hdoc, err) != 0)
            return -1;
        bson_t vd;
        bool found = false;
        int rc = 0;
        if (h.latest != 0)
            rc = find_version_doc(m, type, id, h.latest, &vd, &found, err);
        if (rc == 0 && found)
            bson_destroy(&vd);
        bool moved = false;
        if (rc == 0 && h.latest != 0 && !found)
            rc = move_latest_down(m, type, id, &h, &hdoc, h.latest, &moved, err);
        bson_destroy(&hdoc);
        if (rc != 0)
            return -1;
        if (h.latest == 0 || found)
            return 0;
    }
    return serr_set(err, SERR_RETRY, "store: the head of %s/%s kept moving", type, id);
}

/* Removes the document of a version the head no longer shows, with its
 * dependencies and access counts, leaving its tombstone; *deleted false
 * when it was gone already. The tombstone goes first: a crash between the
 * two leaves the version readable (it never answers 200 after an
 * acknowledged delete, which needs both), never missing without a
 * tombstone (404 where the contract says 410). A tombstone beside a
 * version that is still there is never read: readers look for one only
 * when the version is not found. */
static int remove_version(mg *m, const char *type, const char *id, uint64_t vkey,
                          const char *removed_by, bool *deleted, strata_error *err)
{
    char vid[MG_VID_MAX];
    mk_ver_id(vid, sizeof vid, type, id, vkey);
    *deleted = false;
    if (put_tombstone(m, type, id, vkey, removed_by, err) != 0)
        return -1;
    bson_t *f = BCON_NEW("_id", BCON_UTF8(vid));
    int64_t n = 0;
    int r = mg_delete(m, MC_VERSIONS, f, false, &n, "store: delete version", err);
    bson_destroy(f);
    *deleted = n > 0;
    if (r != 0 || n == 0)
        return r;
    bson_t *df =
        BCON_NEW("ft", BCON_UTF8(type), "fi", BCON_UTF8(id), "fk", BCON_INT64((int64_t)vkey));
    r = mg_delete(m, MC_DEPS, df, true, NULL, "store: delete dependencies", err);
    bson_destroy(df);
    bson_t *af = BCON_NEW("v", BCON_UTF8(vid));
    if (r == 0)
        r = mg_delete(m, MC_ACCESS, af, true, NULL, "store: delete access counts", err);
    bson_destroy(af);
    return r;
}

/* delete_version in a transaction: the head moves to a pending state
 * that hides the version (a hole) and names the next latest; the document
 * is removed once the transaction is sealed. */
static int delete_version_in_txn(mg *m, store_txn *t, const char *type, const char *id,
                                 uint64_t vkey, const char *removed_by, strata_error *err)
{
    tx_head *slot = NULL;
    mhead h;
    bson_t hdoc, vd;
    bool found = false;
    if (tx_head_get(t, m, type, id, &slot, &h, &hdoc, err) != 0)
        return -1;
    int rc = 0;
    if (vkey == 0 || !mh_visible(&h, vkey))
        rc = serr_set(err, SERR_NOT_FOUND, "no such version");
    else if ((rc = find_version_doc(m, type, id, vkey, &vd, &found, err)) == 0 && !found)
        rc = serr_set(err, SERR_NOT_FOUND, "no such version");
    if (found)
        bson_destroy(&vd);
    bson_t set = BSON_INITIALIZER;
    bool gone = false;
    if (rc == 0 && vkey == h.latest && latest_below(m, type, id, &h, vkey, &set, &gone, err) != 0)
        rc = -1;
    if (rc == 0 && gone)
        rc = serr_set(err, SERR_RETRY, "store: %s/%s changed under the transaction", type, id);
    if (rc == 0 && h.nholes >= MH_HOLES_MAX)
        rc = serr_set(err, SERR_RETRY, "store: %s/%s holds too many hidden versions", type, id);
    if (rc == 0) {
        /* hidden (a hole) and owed until its removal is done */
        mh_holes_plus(&set, &h, vkey);
        mh_owed_plus(&set, &hdoc, vkey, removed_by ? removed_by : "request");
        rc = tx_head_put(t, m, type, id, &slot, &h, &hdoc, &set, 0, vkey, err);
    }
    bson_destroy(&set);
    bson_destroy(&hdoc);
    if (rc != 0)
        return -1;
    tx_after a = {.kind = TXA_DEL_VERSION, .vkey = vkey};
    snprintf(a.type, sizeof a.type, "%s", type);
    snprintf(a.id, sizeof a.id, "%s", id);
    snprintf(a.by, sizeof a.by, "%s", removed_by ? removed_by : "request");
    return tx_after_add(t, &a, err);
}

int mg_delete_version(store *base, store_txn *txn, const char *type, const char *id, uint64_t vkey,
                      const char *removed_by, strata_error *err)
{
    mg m;
    mg_begin(&m, (mongo_store *)base);
    int rc = -1;
    bool ready = false;
    if (txn != NULL) {
        rc = delete_version_in_txn(&m, txn, type, id, vkey, removed_by, err);
        goto out;
    }
    for (int tries = 0; !ready && tries < REPAIR_TRIES; tries++) {
        mhead h;
        bson_t vd, hdoc;
        bool found = false;
        if (mh_settled_w(&m, type, id, &h, &hdoc, err) != 0)
            goto out;
        int r = 0;
        if (vkey == 0 || !mh_visible(&h, vkey))
            r = serr_set(err, SERR_NOT_FOUND, "no such version");
        else if ((r = find_version_doc(&m, type, id, vkey, &vd, &found, err)) == 0 && !found)
            r = serr_set(err, SERR_NOT_FOUND, "no such version");
        if (found)
            bson_destroy(&vd);
        bool moved = false;
        if (r == 0 && vkey != h.latest)
            ready = true;
        /* the head leaves the version first, so it never names a missing one */
        else if (r == 0 && move_latest_down(&m, type, id, &h, &hdoc, vkey, &moved, err) != 0)
            r = -1;
        bson_destroy(&hdoc);
        if (r != 0)
            goto out;
        if (moved)
            ready = true;
    }
    if (!ready) {
        serr_set(err, SERR_RETRY, "store: the head of %s/%s kept moving", type, id);
        goto out;
    }
    bool deleted = false;
    int r = remove_version(&m, type, id, vkey, removed_by, &deleted, err);
    if (r == 0 && !deleted)
        r = serr_set(err, SERR_NOT_FOUND, "no such version");
    if (r == 0)
        r = repair_latest(&m, type, id, err);
    rc = r;
out:
    mg_end(&m);
    return rc;
}

static int has_tombstone(mg *m, const char *type, const char *id, uint64_t vkey, bool *found,
                         strata_error *err)
{
    char tid[MG_VID_MAX];
    mk_ver_id(tid, sizeof tid, type, id, vkey);
    bson_t *f = BCON_NEW("_id", BCON_UTF8(tid));
    int rc = mg_find_one(m, MC_TOMBS, f, NULL, NULL, found, "store: tombstone", err);
    bson_destroy(f);
    return rc;
}

typedef struct tomb_walk {
    mg *m;
    const mhead *h;
    const char *removed_by;
    size_t count;
    strata_error *err;
} tomb_walk;

static int tomb_row(const bson_t *vd, void *ctx)
{
    tomb_walk *w = ctx;
    uint64_t k = (uint64_t)bs_i64(vd, "k");
    /* below the floor: left by an earlier delete cut short, which was
     * counted then; its tombstone is owed all the same */
    bool left = k > 0 && k <= w->h->floor;
    if (!mh_visible(w->h, k) && !left)
        return 0;
    char type[STORE_TYPE_MAX], id[STORE_ID_MAX + 1];
    bs_str(vd, "t", type, sizeof type);
    bs_str(vd, "i", id, sizeof id);
    if (!left)
        w->count++;
    return put_tombstone(w->m, type, id, k, w->removed_by, w->err) != 0;
}

/* The documents of a deleted life (h: the head before the delete, whose
 * visible versions get tombstones). The resource's tombstone goes first;
 * if a new life began meanwhile (its first save clears that tombstone,
 * maybe before ours landed), ours is taken back at the end. */
static int remove_resource_docs(mg *m, const char *type, const char *id, const mhead *h,
                                const char *removed_by, size_t *count, strata_error *err)
{
    tomb_walk w = {m, h, removed_by, 0, err};
    if (put_tombstone(m, type, id, 0, removed_by, err) != 0)
        return -1;
    bson_t *vf = BCON_NEW("t", BCON_UTF8(type), "i", BCON_UTF8(id), "k", "{", "$lte",
                          BCON_INT64((int64_t)h->max), "}");
    bson_t *opts = BCON_NEW("projection", "{", "t", BCON_INT32(1), "i", BCON_INT32(1), "k",
                            BCON_INT32(1), "}");
    bool stopped = false;
    int r =
        mg_each(m, MC_VERSIONS, vf, opts, tomb_row, &w, &stopped, "store: delete resource", err);
    bson_destroy(opts);
    if (r == 0 && stopped)
        r = -1; /* put_tombstone set err */
    if (r == 0)
        r = mg_delete(m, MC_VERSIONS, vf, true, NULL, "store: delete versions", err);
    bson_destroy(vf);
    bson_t *df = BCON_NEW("ft", BCON_UTF8(type), "fi", BCON_UTF8(id), "fk", "{", "$lte",
                          BCON_INT64((int64_t)h->max), "}");
    if (r == 0)
        r = mg_delete(m, MC_DEPS, df, true, NULL, "store: delete dependencies", err);
    bson_destroy(df);
    bson_t *af = BCON_NEW("t", BCON_UTF8(type), "i", BCON_UTF8(id), "k", "{", "$lte",
                          BCON_INT64((int64_t)h->max), "}");
    /* (access deltas of this life and before) */
    if (r == 0)
        r = mg_delete(m, MC_ACCESS, af, true, NULL, "store: delete access counts", err);
    bson_destroy(af);
    char hid[MG_HID_MAX];
    mk_head_id(hid, sizeof hid, type, id);
    bson_t *bf = BCON_NEW("t", BCON_UTF8(""), "i", BCON_UTF8(hid), "k", "{", "$lte",
                          BCON_INT64((int64_t)h->max), "}");
    /* (the blockers of keys given up in this life and before) */
    if (r == 0)
        r = mg_delete(m, MC_VERSIONS, bf, true, NULL, "store: delete blockers", err);
    bson_destroy(bf);
    mhead now;
    if (r == 0)
        r = mh_read(m, type, id, &now, NULL, err);
    if (r == 0 && now.latest != 0) {
        char tid[MG_VID_MAX];
        mk_ver_id(tid, sizeof tid, type, id, 0);
        bson_t *tf = BCON_NEW("_id", BCON_UTF8(tid));
        r = mg_delete(m, MC_TOMBS, tf, false, NULL, "store: clear tombstone", err);
        bson_destroy(tf);
    }
    if (r == 0 && count)
        *count = w.count;
    return r;
}

static int count_row(const bson_t *vd, void *ctx)
{
    tomb_walk *w = ctx;
    if (mh_visible(w->h, (uint64_t)bs_i64(vd, "k")))
        w->count++;
    return 0;
}

/* The head of a deleted resource: nothing of its life visible (the floor
 * raised to its max), and who raised the floor when (fb, fa), which later
 * states carry along: a node that dies after this move and before the
 * tombstones leaves the versions' documents below the floor, and those
 * answer with a tombstone made from fb and fa (mg_get_tombstone). */
static bson_t *deleted_head_fields(const mhead *h, const char *removed_by)
{
    return BCON_NEW("l", BCON_INT64(0), "f", BCON_INT64((int64_t)h->max), "lh", BCON_UTF8(""),
                    "tags", "[", "]", "holes", "[", "]", "dh", "[", "]", "st", BCON_BOOL(false),
                    "sr", BCON_NULL, "fb", BCON_UTF8(removed_by ? removed_by : "request"), "fa",
                    BCON_INT64(clock_wall_ms()));
}

/* delete_resource in a transaction: the head moves to a pending state of
 * the deleted resource; the documents go once the transaction is sealed. */
static int delete_resource_in_txn(mg *m, store_txn *t, const char *type, const char *id,
                                  const char *removed_by, size_t *count, strata_error *err)
{
    tx_head *slot = NULL;
    mhead h;
    bson_t hdoc;
    if (tx_head_get(t, m, type, id, &slot, &h, &hdoc, err) != 0)
        return -1;
    bool deleted = !h.exists || (slot != NULL && slot->res_deleted);
    int rc = 0;
    if (!deleted && h.latest == 0 && (slot == NULL || slot->nkeys == 0))
        rc = has_tombstone(m, type, id, 0, &deleted, err);
    if (rc == 0 && deleted)
        rc = serr_set(err, SERR_NOT_FOUND, "no resource %s/%s", type, id);
    tomb_walk w = {m, &h, removed_by, 0, err};
    if (rc == 0) {
        bson_t *vf = BCON_NEW("t", BCON_UTF8(type), "i", BCON_UTF8(id));
        bson_t *opts = BCON_NEW("projection", "{", "k", BCON_INT32(1), "}");
        rc = mg_each(m, MC_VERSIONS, vf, opts, count_row, &w, NULL, "store: count versions", err);
        bson_destroy(vf);
        bson_destroy(opts);
    }
    if (rc == 0) {
        bson_t *set = deleted_head_fields(&h, removed_by);
        rc = tx_head_put(t, m, type, id, &slot, &h, &hdoc, set, 0, 0, err);
        bson_destroy(set);
    }
    bson_destroy(&hdoc);
    if (rc != 0)
        return -1;
    slot->res_deleted = true;
    tx_after a = {.kind = TXA_DEL_RESOURCE, .h = h};
    snprintf(a.type, sizeof a.type, "%s", type);
    snprintf(a.id, sizeof a.id, "%s", id);
    snprintf(a.by, sizeof a.by, "%s", removed_by ? removed_by : "request");
    if (tx_after_add(t, &a, err) != 0)
        return -1;
    if (count)
        *count = w.count;
    return 0;
}

/* The head first (latest 0, floor raised to max: everything of this life
 * is invisible at once), then the documents, each leaving a tombstone. */
int mg_delete_resource(store *base, store_txn *txn, const char *type, const char *id,
                       const char *removed_by, size_t *count, strata_error *err)
{
    mg m;
    mg_begin(&m, (mongo_store *)base);
    int rc = -1;
    mhead h;
    bool done = false;
    if (txn != NULL) {
        rc = delete_resource_in_txn(&m, txn, type, id, removed_by, count, err);
        goto out;
    }
    for (int tries = 0; !done && tries < REPAIR_TRIES; tries++) {
        bson_t hdoc;
        if (mh_settled_w(&m, type, id, &h, &hdoc, err) != 0)
            goto out;
        bool deleted = false;
        int r = 0;
        if (h.exists && h.latest == 0)
            r = has_tombstone(&m, type, id, 0, &deleted, err);
        if (r == 0 && (!h.exists || deleted))
            r = serr_set(err, SERR_NOT_FOUND, "no resource %s/%s", type, id);
        if (r == 0) {
            bson_t *set = deleted_head_fields(&h, removed_by);
            r = mh_move(&m, type, id, &h, &hdoc, set, NULL, err);
            bson_destroy(set);
        }
        bson_destroy(&hdoc);
        if (r != 0 && err->kind != SERR_CONFLICT)
            goto out;
        done = r == 0;
    }
    if (!done) {
        serr_set(err, SERR_RETRY, "store: the head of %s/%s kept moving", type, id);
        goto out;
    }
    rc = remove_resource_docs(&m, type, id, &h, removed_by, count, err);
out:
    mg_end(&m);
    return rc;
}

/* ---- a sealed transaction's removals, a voided one's versions ------------------- */

int mv_after_run(mg *m, const tx_after *a, strata_error *err)
{
    if (a->kind == TXA_DEL_RESOURCE)
        return remove_resource_docs(m, a->type, a->id, &a->h, a->by, NULL, err);
    if (a->kind == TXA_DEL_VERSION)
        return mv_remove_owed(m, a->type, a->id, a->vkey, a->by, err);
    char tid[MG_VID_MAX];
    mk_ver_id(tid, sizeof tid, a->type, a->id, 0);
    bson_t *tf = BCON_NEW("_id", BCON_UTF8(tid));
    int rc = mg_delete(m, MC_TOMBS, tf, false, NULL, "store: clear tombstone", err);
    bson_destroy(tf);
    return rc;
}

int mv_remove_owed(mg *m, const char *type, const char *id, uint64_t vkey, const char *by,
                   strata_error *err)
{
    /* remove_version puts the tombstone first: a retry after a failure
     * finds the document gone and must not lose it */
    bool deleted = false;
    return remove_version(m, type, id, vkey, by, &deleted, err);
}

void mv_drop_docs(mg *m, const char *type, const char *id, const uint64_t *keys, size_t n,
                  const char *tid)
{
    strata_error e2;
    for (size_t i = 0; i < n; i++) {
        char vid[MG_VID_MAX];
        mk_ver_id(vid, sizeof vid, type, id, keys[i]);
        bson_t *f = BCON_NEW("_id", BCON_UTF8(vid), "x", BCON_UTF8(tid));
        mg_delete(m, MC_VERSIONS, f, false, NULL, "store: drop version", &e2);
        bson_destroy(f);
        bson_t *df = BCON_NEW("ft", BCON_UTF8(type), "fi", BCON_UTF8(id), "fk",
                              BCON_INT64((int64_t)keys[i]), "x", BCON_UTF8(tid));
        mg_delete(m, MC_DEPS, df, true, NULL, "store: drop dependencies", &e2);
        bson_destroy(df);
    }
}

/* ---- dependents, tombstones, pins, staleness ------------------------------------ */

/* Whether dependency document dd (of version fk, the head h's latest)
 * was written by that version's writer (not by a voided one, late). */
static int dep_of_writer(mg *m, const bson_t *dd, const mhead *h, bool *mine, strata_error *err)
{
    char type[STORE_TYPE_MAX], id[STORE_ID_MAX + 1], wd[24], wv[24];
    bs_str(dd, "ft", type, sizeof type);
    bs_str(dd, "fi", id, sizeof id);
    bs_str(dd, "w", wd, sizeof wd);
    bson_t vd;
    bool found = false;
    *mine = false;
    if (find_version_doc(m, type, id, h->latest, &vd, &found, err) != 0)
        return -1;
    if (found) {
        bs_str(&vd, "w", wv, sizeof wv);
        *mine = strcmp(wd, wv) == 0;
        bson_destroy(&vd);
    }
    return 0;
}

typedef struct dep_walk {
    mg *m;
    store_page *out;
    size_t limit;
    bool more;
    char last[MG_HID_MAX];
    int rc;
    strata_error *err;
} dep_walk;

static int dep_row(const bson_t *dd, void *ctx)
{
    dep_walk *w = ctx;
    char type[STORE_TYPE_MAX], id[STORE_ID_MAX + 1], hid[MG_HID_MAX];
    bs_str(dd, "ft", type, sizeof type);
    bs_str(dd, "fi", id, sizeof id);
    mk_head_id(hid, sizeof hid, type, id);
    if (strcmp(hid, w->last) == 0)
        return 0; /* one resource, several versions' dependencies */
    mhead h;
    bson_t hdoc;
    if ((w->rc = mh_read(w->m, type, id, &h, &hdoc, w->err)) != 0)
        return 1;
    bool mine = false;
    if (h.latest != 0 && h.latest == (uint64_t)bs_i64(dd, "fk") &&
        (w->rc = dep_of_writer(w->m, dd, &h, &mine, w->err)) != 0) {
        bson_destroy(&hdoc);
        return 1;
    }
    if (!mine) {
        bson_destroy(&hdoc);
        return 0;
    }
    if (w->out->count == w->limit) {
        w->more = true;
        bson_destroy(&hdoc);
        return 1;
    }
    store_version *v = NULL;
    w->rc = latest_item(w->m, type, id, &h, &hdoc, &v, w->err);
    bson_destroy(&hdoc);
    if (w->rc != 0)
        return 1;
    if (v != NULL) {
        w->out->items[w->out->count++] = v;
        snprintf(w->last, sizeof w->last, "%s", hid);
    }
    return 0;
}

int mg_dependents(store *base, const char *type, const char *id, const store_list_opts *o,
                  store_page *out, strata_error *err)
{
    memset(out, 0, sizeof *out);
    char after[MG_HID_MAX] = "";
    if (o->cursor && (store_cursor_decode_str(o->cursor, 'd', after, sizeof after) != 0 ||
                      strchr(after, '/') == NULL))
        return serr_set(err, SERR_INVALID, "cursor is not valid for this list");
    char *after_id = strchr(after, '/');
    if (after_id != NULL)
        *after_id++ = '\0';
    if (page_alloc(out, o->limit, err) != 0)
        return -1;
    mg m;
    mg_begin(&m, (mongo_store *)base);
    dep_walk w = {&m, out, o->limit, false, "", 0, err};
    bson_t *f;
    if (after_id != NULL)
        f = BCON_NEW("tt", BCON_UTF8(type), "ti", BCON_UTF8(id), "$or", "[", "{", "ft", "{", "$gt",
                     BCON_UTF8(after), "}", "}", "{", "ft", BCON_UTF8(after), "fi", "{", "$gt",
                     BCON_UTF8(after_id), "}", "}", "]");
    else
        f = BCON_NEW("tt", BCON_UTF8(type), "ti", BCON_UTF8(id));
    bson_t *opts =
        BCON_NEW("sort", "{", "ft", BCON_INT32(1), "fi", BCON_INT32(1), "fk", BCON_INT32(-1), "}");
    int rc = mg_each(&m, MC_DEPS, f, opts, dep_row, &w, NULL, "store: dependents", err);
    bson_destroy(f);
    bson_destroy(opts);
    if (rc == 0)
        rc = w.rc;
    if (rc == 0 && w.more && out->count > 0) {
        const store_version *last = out->items[out->count - 1];
        char key[MG_HID_MAX];
        mk_head_id(key, sizeof key, last->type, last->id);
        out->next = store_cursor_encode_str('d', key);
        if (out->next == NULL)
            rc = serr_set(err, SERR_NOMEM, "out of memory");
    }
    mg_end(&m);
    if (rc != 0)
        store_page_free(out);
    return rc;
}

/* Removed by a resource delete whose node died after it raised the floor
 * and before it put the tombstones (remove_resource_docs): the resource
 * while no key was issued since (no new life), and a version whose
 * document is still there below the floor (a key below it with no
 * document never existed, or has its tombstone). Who and when are the
 * head's fb and fa. */
static int cut_delete_gone(mg *m, const mhead *h, const bson_t *hd, const char *type,
                           const char *id, uint64_t vkey, store_tombstone *out, bool *gone,
                           strata_error *err)
{
    *gone = false;
    if (!h->exists || h->floor == 0)
        return 0;
    if (vkey == 0)
        *gone = h->latest == 0 && h->max == h->floor;
    else if (vkey <= h->floor) {
        bson_t vd;
        if (find_version_doc(m, type, id, vkey, &vd, gone, err) != 0)
            return -1;
        if (*gone)
            bson_destroy(&vd);
    }
    if (*gone) {
        bs_str(hd, "fb", out->removed_by, sizeof out->removed_by);
        if (out->removed_by[0] == '\0') /* a head from before fb */
            snprintf(out->removed_by, sizeof out->removed_by, "request");
        out->removed_at_ms = bs_i64(hd, "fa");
    }
    return 0;
}

int mg_get_tombstone(store *base, const char *type, const char *id, uint64_t vkey,
                     store_tombstone *out, strata_error *err)
{
    mg m;
    mg_begin(&m, (mongo_store *)base);
    char tid[MG_VID_MAX];
    mk_ver_id(tid, sizeof tid, type, id, vkey);
    bson_t *f = BCON_NEW("_id", BCON_UTF8(tid));
    bson_t d;
    bool found = false;
    int rc = mg_find_one(&m, MC_TOMBS, f, NULL, &d, &found, "store: tombstone", err);
    bson_destroy(f);
    if (rc == 0 && !found) {
        /* deleted by a sealed transaction whose node died before it put
         * the tombstone: the head still owes the removal, and says so; or
         * by a resource delete cut short the same way */
        mhead h;
        bson_t hd;
        rc = mh_read(&m, type, id, &h, &hd, err);
        if (rc == 0) {
            bool gone = vkey > 0 && mh_owed_find(&hd, vkey, out->removed_by, sizeof out->removed_by,
                                                 &out->removed_at_ms);
            if (!gone)
                rc = cut_delete_gone(&m, &h, &hd, type, id, vkey, out, &gone, err);
            bson_destroy(&hd);
            mg_end(&m);
            if (rc != 0)
                return -1;
            return gone ? 0 : serr_set(err, SERR_NOT_FOUND, "no tombstone");
        }
    }
    mg_end(&m);
    if (rc != 0)
        return -1;
    if (!found)
        return serr_set(err, SERR_NOT_FOUND, "no tombstone");
    out->removed_at_ms = bs_i64(&d, "at");
    bs_str(&d, "by", out->removed_by, sizeof out->removed_by);
    bson_destroy(&d);
    return 0;
}

typedef struct pin_walk {
    mg *m;
    bool pinned;
    char by[MG_HID_MAX];
    int rc;
    strata_error *err;
} pin_walk;

static int pin_row(const bson_t *dd, void *ctx)
{
    pin_walk *w = ctx;
    char type[STORE_TYPE_MAX], id[STORE_ID_MAX + 1];
    bs_str(dd, "ft", type, sizeof type);
    bs_str(dd, "fi", id, sizeof id);
    mhead h;
    if ((w->rc = mh_read(w->m, type, id, &h, NULL, w->err)) != 0)
        return 1;
    /* a save under way counts (its reservation, or a transaction's
     * undecided intent): it re-checks the version after its dependency
     * is indexed (deps_still_there), so one of the two always sees the
     * other */
    uint64_t fk = (uint64_t)bs_i64(dd, "fk");
    char wd[24];
    bs_str(dd, "w", wd, sizeof wd);
    /* only the writer of the version that stands (or is under way) counts */
    bool pins =
        (h.pend == fk && strcmp(h.nonce, wd) == 0) || (h.pil == fk && strcmp(h.px, wd) == 0);
    if (fk != 0 && !pins && h.latest == fk &&
        (w->rc = dep_of_writer(w->m, dd, &h, &pins, w->err)) != 0)
        return 1;
    if (fk != 0 && pins) {
        w->pinned = true;
        mk_head_id(w->by, sizeof w->by, type, id);
        return 1;
    }
    return 0;
}

int mg_version_pinned(store *base, const char *type, const char *id, uint64_t vkey, bool *pinned,
                      char *by, size_t by_cap, strata_error *err)
{
    *pinned = false;
    mg m;
    mg_begin(&m, (mongo_store *)base);
    pin_walk w = {&m, false, "", 0, err};
    bson_t *f =
        BCON_NEW("tt", BCON_UTF8(type), "ti", BCON_UTF8(id), "tk", BCON_INT64((int64_t)vkey));
    int rc = mg_each(&m, MC_DEPS, f, NULL, pin_row, &w, NULL, "store: pins", err);
    bson_destroy(f);
    mg_end(&m);
    if (rc == 0)
        rc = w.rc;
    if (rc == 0 && w.pinned) {
        *pinned = true;
        if (by)
            snprintf(by, by_cap, "%s", w.by);
    }
    return rc;
}

int mg_set_stale(store *base, store_txn *txn, const char *type, const char *id, bool stale,
                 const json_t *reason, strata_error *err)
{
    char *text = stale && reason ? json_write_text(reason, 0, NULL, NULL) : NULL;
    bson_t set = BSON_INITIALIZER;
    BSON_APPEND_BOOL(&set, "st", stale);
    if (text)
        BSON_APPEND_UTF8(&set, "sr", text);
    else
        BSON_APPEND_NULL(&set, "sr");
    free(text);
    mg m;
    mg_begin(&m, (mongo_store *)base);
    int rc = -1;
    for (int tries = 0; tries < REPAIR_TRIES; tries++) {
        mhead h;
        bson_t hdoc;
        tx_head *slot = NULL;
        if ((rc = txn != NULL ? tx_head_get(txn, &m, type, id, &slot, &h, &hdoc, err)
                              : mh_settled_w(&m, type, id, &h, &hdoc, err)) != 0)
            break;
        if (h.latest == 0) {
            bson_destroy(&hdoc);
            rc = serr_set(err, SERR_NOT_FOUND, "no resource %s/%s", type, id);
            break;
        }
        if (txn != NULL) {
            rc = tx_head_put(txn, &m, type, id, &slot, &h, &hdoc, &set, 0, 0, err);
            bson_destroy(&hdoc);
            break;
        }
        rc = mh_move(&m, type, id, &h, &hdoc, &set, NULL, err);
        bson_destroy(&hdoc);
        if (rc == 0 || err->kind != SERR_CONFLICT)
            break;
        rc = serr_set(err, SERR_RETRY, "store: the head of %s/%s kept moving", type, id);
    }
    mg_end(&m);
    bson_destroy(&set);
    return rc;
}
