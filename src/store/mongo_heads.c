/* Registers (chains of immutable state documents, see mongo_internal.h)
 * and the heads kept in them: one register per resource, key "type/id",
 * each state holding
 *   t, i, ns        type, id and the latest version's namespace
 *   l, m, f         latest key (0: none), max key ever issued, floor (keys
 *                   at or below it belong to an earlier, deleted life)
 *   pk, pn          the key a writer reserved (0: none) and its nonce
 *   holes           keys reserved and then given up, or deleted in a
 *                   transaction and not yet removed (never visible)
 *   dh              of those, the deletes owed: {k, b (removed by)}
 *   lh, tags        the latest version's data hash and tags (for lists)
 *   st, sr          stale flag and reason (JSON text) of the resource */
#include "mongo_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/clock.h"

/* ---- registers -------------------------------------------------------------------- */

static void state_id(char *out, size_t cap, const char *key, uint64_t seq)
{
    snprintf(out, cap, "%s#%016" PRIx64, key, seq);
}

static void ptr_id(char *out, size_t cap, char tag, const char *key)
{
    snprintf(out, cap, "%c:%s", tag, key);
}

static int state_get(mg *m, int coll, const char *key, uint64_t seq, bson_t *out, bool *found,
                     strata_error *err)
{
    char sid[MG_VID_MAX + 8];
    state_id(sid, sizeof sid, key, seq);
    bson_t *f = BCON_NEW("_id", BCON_UTF8(sid));
    int rc = mg_find_one(m, coll, f, NULL, out, found, "store: read state", err);
    bson_destroy(f);
    return rc;
}

int reg_read(mg *m, int coll, char tag, const char *key, uint64_t *seq, bson_t *state, bool *found,
             strata_error *err)
{
    *seq = 0;
    *found = false;
    char pid[MG_VID_MAX + 8];
    ptr_id(pid, sizeof pid, tag, key);
    bson_t *f = BCON_NEW("_id", BCON_UTF8(pid));
    bson_t p;
    bool have_ptr = false;
    int rc = mg_find_one(m, MC_PTRS, f, NULL, &p, &have_ptr, "store: read pointer", err);
    bson_destroy(f);
    if (rc != 0)
        return -1;
    /* the pointer carries a copy of the state it names (states never
     * change, so the copy is that state); only a newer one may exist */
    uint64_t q = 0;
    bson_t cur;
    bool have = false;
    if (have_ptr) {
        q = (uint64_t)bs_i64(&p, "q");
        bson_iter_t it;
        if (q > 0 && bson_iter_init_find(&it, &p, "s") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            uint32_t len;
            const uint8_t *data;
            bson_iter_document(&it, &len, &data);
            bson_t copy;
            if (bson_init_static(&copy, data, len)) {
                bson_copy_to(&copy, &cur);
                have = true;
            }
        }
        bson_destroy(&p);
    }
    if (!have)
        q = 0; /* no pointer (or a bad one): from the start */
    /* forward to the last state written */
    for (;;) {
        bson_t next;
        bool more = false;
        if (state_get(m, coll, key, q + 1, &next, &more, err) != 0) {
            if (have)
                bson_destroy(&cur);
            return -1;
        }
        if (!more)
            break;
        if (have)
            bson_destroy(&cur);
        bson_copy_to(&next, &cur);
        bson_destroy(&next);
        have = true;
        q++;
    }
    if (have) {
        *seq = q;
        *found = true;
        bson_copy_to(&cur, state);
        bson_destroy(&cur);
    }
    return 0;
}

int reg_write(mg *m, int coll, char tag, const char *key, uint64_t seq, const bson_t *fields,
              const bson_t *ptr_extra, strata_error *err)
{
    char sid[MG_VID_MAX + 8];
    state_id(sid, sizeof sid, key, seq);
    bson_t d = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&d, "_id", sid);
    BSON_APPEND_INT64(&d, "q", (int64_t)seq);
    bson_concat(&d, fields);
    int rc = mg_insert(m, coll, &d, "store: write state", err);
    if (rc != 0) {
        bson_destroy(&d);
        return -1;
    }
    /* the pointer: a hint for readers, who walk on from it; a slower
     * writer may set it back a little, never wrong (q and its copy go
     * together in one document) */
    strata_error e2;
    char pid[MG_VID_MAX + 8];
    ptr_id(pid, sizeof pid, tag, key);
    bson_t *pf = BCON_NEW("_id", BCON_UTF8(pid));
    bson_t u = BSON_INITIALIZER, set;
    BSON_APPEND_DOCUMENT_BEGIN(&u, "$set", &set);
    BSON_APPEND_INT64(&set, "q", (int64_t)seq);
    BSON_APPEND_DOCUMENT(&set, "s", &d);
    if (ptr_extra != NULL)
        bson_concat(&set, ptr_extra);
    bson_append_document_end(&u, &set);
    rc = mg_update(m, MC_PTRS, pf, &u, true, NULL, "store: move pointer", &e2);
    bson_destroy(pf);
    bson_destroy(&u);
    bson_destroy(&d);
    if (rc != 0 && seq == 1 && e2.kind != SERR_CONFLICT) {
        /* the first pointer is what lists the register (list_resources):
         * the caller fails, and the state it wrote is settled by whoever
         * next moves the register (a reservation: by a resolver) */
        *err = e2;
        return -1;
    }
    return 0;
}

/* ---- heads ------------------------------------------------------------------------- */

static void head_from_doc(const bson_t *d, mhead *h)
{
    h->exists = true;
    h->latest = (uint64_t)bs_i64(d, "l");
    h->max = (uint64_t)bs_i64(d, "m");
    h->floor = (uint64_t)bs_i64(d, "f");
    h->pend = (uint64_t)bs_i64(d, "pk");
    bs_str(d, "pn", h->nonce, sizeof h->nonce);
    bs_str(d, "lh", h->hash, sizeof h->hash);
    h->stale = bs_bool(d, "st");
    bson_iter_t it, a;
    h->nholes = 0;
    if (bson_iter_init_find(&it, d, "holes") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &a))
        while (bson_iter_next(&a) && h->nholes < MH_HOLES_MAX)
            h->holes[h->nholes++] = (uint64_t)bson_iter_as_int64(&a);
}

/* The fields of d without the register's own (_id, q) and a pending
 * state's (px, pi, pks). */
static void copy_fields(const bson_t *d, bson_t *out)
{
    bson_init(out);
    bson_copy_to_excluding_noinit(d, out, "_id", "q", "px", "pi", "pks", NULL);
}

static bool sub_doc(const bson_t *d, const char *key, bson_t *out)
{
    bson_iter_t it;
    uint32_t len;
    const uint8_t *data;
    if (!bson_iter_init_find(&it, d, key) || !BSON_ITER_HOLDS_DOCUMENT(&it))
        return false;
    bson_iter_document(&it, &len, &data);
    bson_t tmp;
    if (!bson_init_static(&tmp, data, len))
        return false;
    bson_copy_to(&tmp, out);
    return true;
}

int mh_decision(mg *m, const char *tid, int *out, strata_error *err)
{
    bson_t *f = BCON_NEW("_id", BCON_UTF8(tid));
    bson_t d;
    bool found = false;
    int rc = mg_find_one(m, MC_SEALS, f, NULL, &d, &found, "store: read a decision", err);
    bson_destroy(f);
    if (rc != 0)
        return -1;
    *out = !found ? 0 : bs_bool(&d, "ok") ? 1 : -1;
    if (found)
        bson_destroy(&d);
    return 0;
}

static void note_open_tx(mg *m, const char *tid)
{
    for (int i = 0; i < m->n_open_tx; i++)
        if (strcmp(m->open_tx[i], tid) == 0)
            return;
    if (m->n_open_tx == MG_OPEN_TX_MAX) {
        m->open_tx_lost = true;
        return;
    }
    snprintf(m->open_tx[m->n_open_tx++], sizeof m->open_tx[0], "%s", tid);
}

int mg_open_tx_committed(mg *m, bool *committed, strata_error *err)
{
    *committed = m->open_tx_lost;
    for (int i = 0; i < m->n_open_tx && !*committed; i++) {
        int dec = 0;
        if (mh_decision(m, m->open_tx[i], &dec, err) != 0)
            return -1;
        *committed = dec > 0;
    }
    m->n_open_tx = 0;
    m->open_tx_lost = false;
    return 0;
}

int mh_read_tx(mg *m, const char *own, const char *type, const char *id, mhead *h, bson_t *doc,
               strata_error *err)
{
    memset(h, 0, sizeof *h);
    char hid[MG_HID_MAX];
    mk_head_id(hid, sizeof hid, type, id);
    bson_t d;
    bool found = false;
    uint64_t seq = 0;
    if (reg_read(m, MC_HEADS, 'h', hid, &seq, &d, &found, err) != 0)
        return -1;
    if (!found) {
        if (doc != NULL)
            bson_init(doc);
        return 0;
    }
    char px[sizeof h->px];
    bs_str(&d, "px", px, sizeof px);
    bson_t view;
    bool intended = false;
    int pxs = MH_PX_NONE;
    if (px[0]) {
        int dec = 0;
        if (own != NULL && strcmp(own, px) == 0)
            pxs = MH_PX_OWN;
        else if (mh_decision(m, px, &dec, err) != 0) {
            bson_destroy(&d);
            return -1;
        } else
            pxs = dec > 0 ? MH_PX_SEALED : dec < 0 ? MH_PX_VOID : MH_PX_OPEN;
        intended = pxs == MH_PX_OWN || pxs == MH_PX_SEALED;
        if (pxs == MH_PX_OPEN)
            note_open_tx(m, px);
    }
    if (pxs == MH_PX_OPEN && sub_doc(&d, "pi", &view)) {
        h->pil = (uint64_t)bs_i64(&view, "l");
        bson_destroy(&view);
    }
    if (!intended || !sub_doc(&d, "pi", &view))
        copy_fields(&d, &view);
    bool exists = !bson_empty(&view) && !bs_bool(&view, "nx");
    if (exists)
        head_from_doc(&view, h);
    h->seq = seq;
    h->pxs = pxs;
    snprintf(h->px, sizeof h->px, "%s", px);
    bson_iter_t it, a;
    if (px[0] && bson_iter_init_find(&it, &d, "pks") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &a))
        while (bson_iter_next(&a) && h->npks < TX_KEYS_MAX)
            h->pks[h->npks++] = (uint64_t)bson_iter_as_int64(&a);
    if (doc != NULL) {
        if (exists)
            bson_copy_to(&view, doc);
        else
            bson_init(doc);
    }
    bson_destroy(&view);
    bson_destroy(&d);
    return 0;
}

int mh_read(mg *m, const char *type, const char *id, mhead *h, bson_t *doc, strata_error *err)
{
    return mh_read_tx(m, NULL, type, id, h, doc, err);
}

/* The fields of from (its view from_doc) with those of set replaced. */
static void merge_fields(const mhead *from, const bson_t *from_doc, const bson_t *set, bson_t *out)
{
    bson_init(out);
    bson_iter_t it;
    if (from->exists && bson_iter_init(&it, from_doc))
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            if (strcmp(k, "_id") == 0 || strcmp(k, "q") == 0 || strcmp(k, "nx") == 0 ||
                bson_has_field(set, k))
                continue;
            bson_append_iter(out, k, -1, &it);
        }
    bson_concat(out, set);
}

int mh_move(mg *m, const char *type, const char *id, const mhead *from, const bson_t *from_doc,
            const bson_t *set, bson_t *written, strata_error *err)
{
    if (from->pxs == MH_PX_OPEN || from->pxs == MH_PX_OWN)
        return serr_set(err, SERR_RETRY, "store: %s/%s is pending in transaction %s", type, id,
                        from->px);
    char hid[MG_HID_MAX];
    mk_head_id(hid, sizeof hid, type, id);
    bson_t fields;
    merge_fields(from, from_doc, set, &fields);
    bson_t *extra = BCON_NEW("t", BCON_UTF8(type), "i", BCON_UTF8(id));
    int rc = reg_write(m, MC_HEADS, 'h', hid, from->seq + 1, &fields, extra, err);
    bson_destroy(extra);
    if (rc == 0 && written != NULL)
        bson_copy_to(&fields, written);
    bson_destroy(&fields);
    return rc;
}

/* Writes the state after seq as `fields` ({nx: true} when !exists). */
static int write_state(mg *m, const char *type, const char *id, uint64_t seq, bool exists,
                       const bson_t *fields, strata_error *err)
{
    char hid[MG_HID_MAX];
    mk_head_id(hid, sizeof hid, type, id);
    bson_t *nx = BCON_NEW("nx", BCON_BOOL(true));
    bson_t *extra = BCON_NEW("t", BCON_UTF8(type), "i", BCON_UTF8(id));
    int rc = reg_write(m, MC_HEADS, 'h', hid, seq + 1, exists ? fields : nx, extra, err);
    bson_destroy(extra);
    bson_destroy(nx);
    return rc;
}

void mh_fresh_fields(bson_t *d, const char *type, const char *id, const char *ns)
{
    bson_t empty;
    BSON_APPEND_UTF8(d, "t", type);
    BSON_APPEND_UTF8(d, "i", id);
    BSON_APPEND_UTF8(d, "ns", ns);
    BSON_APPEND_INT64(d, "l", 0);
    BSON_APPEND_INT64(d, "m", 0);
    BSON_APPEND_INT64(d, "f", 0);
    BSON_APPEND_INT64(d, "pk", 0);
    BSON_APPEND_UTF8(d, "pn", "");
    BSON_APPEND_ARRAY_BEGIN(d, "holes", &empty);
    bson_append_array_end(d, &empty);
    BSON_APPEND_UTF8(d, "lh", "");
    BSON_APPEND_ARRAY_BEGIN(d, "tags", &empty);
    bson_append_array_end(d, &empty);
    BSON_APPEND_BOOL(d, "st", false);
    BSON_APPEND_NULL(d, "sr");
}

static bool is_hole(const mhead *h, uint64_t vkey)
{
    for (size_t i = 0; i < h->nholes; i++)
        if (h->holes[i] == vkey)
            return true;
    return false;
}

bool mh_visible(const mhead *h, uint64_t vkey)
{
    return h->exists && vkey > h->floor && vkey <= h->max && vkey != h->pend && !is_hole(h, vkey);
}

void mh_visible_filter(bson_t *filter, const mhead *h, uint64_t lt, uint64_t gt)
{
    bson_t k;
    BSON_APPEND_DOCUMENT_BEGIN(filter, "k", &k);
    BSON_APPEND_INT64(&k, "$gt", (int64_t)(gt > h->floor ? gt : h->floor));
    BSON_APPEND_INT64(&k, "$lte", (int64_t)h->max);
    if (lt != 0)
        BSON_APPEND_INT64(&k, "$lt", (int64_t)lt);
    if (h->pend != 0 || h->nholes > 0) {
        bson_t nin;
        BSON_APPEND_ARRAY_BEGIN(&k, "$nin", &nin);
        size_t n = 0;
        char ix[24];
        if (h->pend != 0) {
            snprintf(ix, sizeof ix, "%zu", n++);
            BSON_APPEND_INT64(&nin, ix, (int64_t)h->pend);
        }
        for (size_t i = 0; i < h->nholes; i++) {
            snprintf(ix, sizeof ix, "%zu", n++);
            BSON_APPEND_INT64(&nin, ix, (int64_t)h->holes[i]);
        }
        bson_append_array_end(&k, &nin);
    }
    bson_append_document_end(filter, &k);
}

void mh_latest_fields(bson_t *set, const bson_t *vdoc)
{
    char ns[STORE_NS_MAX + 1], hash[SHA256_HEX_LEN + 1];
    bs_str(vdoc, "ns", ns, sizeof ns);
    bs_str(vdoc, "h", hash, sizeof hash);
    BSON_APPEND_INT64(set, "l", bs_i64(vdoc, "k"));
    BSON_APPEND_UTF8(set, "lh", hash);
    BSON_APPEND_UTF8(set, "ns", ns);
    bson_iter_t it;
    if (bson_iter_init_find(&it, vdoc, "tags") && BSON_ITER_HOLDS_ARRAY(&it))
        bson_append_iter(set, "tags", -1, &it);
    else {
        bson_t empty;
        BSON_APPEND_ARRAY_BEGIN(set, "tags", &empty);
        bson_append_array_end(set, &empty);
    }
}

void mh_holes_plus(bson_t *set, const mhead *h, uint64_t vkey)
{
    bson_t holes;
    char ix[24];
    BSON_APPEND_ARRAY_BEGIN(set, "holes", &holes);
    for (size_t i = 0; i < h->nholes; i++) {
        snprintf(ix, sizeof ix, "%zu", i);
        BSON_APPEND_INT64(&holes, ix, (int64_t)h->holes[i]);
    }
    snprintf(ix, sizeof ix, "%zu", h->nholes);
    BSON_APPEND_INT64(&holes, ix, (int64_t)vkey);
    bson_append_array_end(set, &holes);
}

void mh_holes_minus(bson_t *set, const mhead *h, uint64_t vkey)
{
    bson_t holes;
    char ix[24];
    size_t n = 0;
    BSON_APPEND_ARRAY_BEGIN(set, "holes", &holes);
    for (size_t i = 0; i < h->nholes; i++) {
        if (h->holes[i] == vkey)
            continue;
        snprintf(ix, sizeof ix, "%zu", n++);
        BSON_APPEND_INT64(&holes, ix, (int64_t)h->holes[i]);
    }
    bson_append_array_end(set, &holes);
}

/* The owed removals ("dh") of a head's view doc, one entry at a time:
 * owed_first, then owed_next until it returns false; each entry e is a
 * static view of doc's bytes, valid while doc is. */
static bool owed_first(const bson_t *doc, bson_iter_t *a)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, "dh") && BSON_ITER_HOLDS_ARRAY(&it) &&
           bson_iter_recurse(&it, a);
}

static bool owed_next(bson_iter_t *a, bson_t *e)
{
    while (bson_iter_next(a)) {
        uint32_t len;
        const uint8_t *data;
        if (!BSON_ITER_HOLDS_DOCUMENT(a))
            continue;
        bson_iter_document(a, &len, &data);
        if (bson_init_static(e, data, len))
            return true;
    }
    return false;
}

/* Appends to out (an array being built, n its next index) the owed
 * removals of doc whose key is not in skip[0..nskip). */
static void owed_copy(bson_t *out, size_t *n, const bson_t *doc, const uint64_t *skip,
                      const bool *skip_if, size_t nskip)
{
    bson_iter_t a;
    bson_t e;
    if (!owed_first(doc, &a))
        return;
    while (owed_next(&a, &e)) {
        uint64_t k = (uint64_t)bs_i64(&e, "k");
        bool drop = false;
        for (size_t j = 0; j < nskip; j++)
            drop |= skip[j] == k && (skip_if == NULL || skip_if[j]);
        if (drop)
            continue;
        char ix[24];
        snprintf(ix, sizeof ix, "%zu", (*n)++);
        BSON_APPEND_DOCUMENT(out, ix, &e);
    }
}

void mh_owed_plus(bson_t *set, const bson_t *doc, uint64_t vkey, const char *by)
{
    bson_t arr, e;
    size_t n = 0;
    BSON_APPEND_ARRAY_BEGIN(set, "dh", &arr);
    owed_copy(&arr, &n, doc, NULL, NULL, 0);
    char ix[24];
    snprintf(ix, sizeof ix, "%zu", n);
    BSON_APPEND_DOCUMENT_BEGIN(&arr, ix, &e);
    BSON_APPEND_INT64(&e, "k", (int64_t)vkey);
    BSON_APPEND_UTF8(&e, "b", by);
    BSON_APPEND_INT64(&e, "at", clock_wall_ms());
    bson_append_document_end(&arr, &e);
    bson_append_array_end(set, &arr);
}

bool mh_owed_find(const bson_t *doc, uint64_t vkey, char *by, size_t cap, int64_t *at_ms)
{
    bson_iter_t a;
    bson_t e;
    if (!owed_first(doc, &a))
        return false;
    while (owed_next(&a, &e)) {
        if ((uint64_t)bs_i64(&e, "k") != vkey)
            continue;
        bs_str(&e, "b", by, cap);
        *at_ms = bs_i64(&e, "at");
        return true;
    }
    return false;
}

/* A settled head (h, its state d) that owes removals (see mongo_internal.h)
 * whose deleting transaction did not finish them: each removed, then the
 * head moved without their holes. Returns 1 when the head moved (read it
 * again), 0 when nothing was owed or nothing could be done (the holes
 * keep hiding the versions; the next writer tries again). */
static int complete_owed(mg *m, const char *type, const char *id, const mhead *h, const bson_t *d)
{
    bson_iter_t a;
    bson_t e;
    if (!owed_first(d, &a))
        return 0;
    uint64_t done[MH_HOLES_MAX];
    size_t ndone = 0;
    strata_error e2;
    while (ndone < MH_HOLES_MAX && owed_next(&a, &e)) {
        char by[128];
        uint64_t k = (uint64_t)bs_i64(&e, "k");
        bs_str(&e, "b", by, sizeof by);
        if (mv_remove_owed(m, type, id, k, by, &e2) != 0)
            break;
        done[ndone++] = k;
    }
    if (ndone == 0)
        return 0;
    bson_t set = BSON_INITIALIZER, holes, arr;
    size_t n = 0;
    BSON_APPEND_ARRAY_BEGIN(&set, "holes", &holes);
    for (size_t i = 0; i < h->nholes; i++) {
        bool drop = false;
        for (size_t j = 0; j < ndone; j++)
            drop |= done[j] == h->holes[i];
        if (drop)
            continue;
        char ix[24];
        snprintf(ix, sizeof ix, "%zu", n++);
        BSON_APPEND_INT64(&holes, ix, (int64_t)h->holes[i]);
    }
    bson_append_array_end(&set, &holes);
    n = 0;
    BSON_APPEND_ARRAY_BEGIN(&set, "dh", &arr);
    owed_copy(&arr, &n, d, done, NULL, ndone);
    bson_append_array_end(&set, &arr);
    int rc = mh_move(m, type, id, h, d, &set, NULL, &e2);
    bson_destroy(&set);
    /* moved, or another writer moved it first: read it again either way */
    return rc == 0 || e2.kind == SERR_CONFLICT ? 1 : 0;
}

int mh_decide(mg *m, const char *vid, bool ok, bool *ok_out, strata_error *err)
{
    bson_t *d = BCON_NEW("_id", BCON_UTF8(vid), "ok", BCON_BOOL(ok));
    int rc = mg_insert(m, MC_SEALS, d, "store: seal version", err);
    bson_destroy(d);
    if (rc == 0) {
        *ok_out = ok;
        return 0;
    }
    if (err->kind != SERR_CONFLICT)
        return -1;
    /* decided before us: read what stands */
    bson_t *f = BCON_NEW("_id", BCON_UTF8(vid));
    bson_t s;
    bool found = false;
    rc = mg_find_one(m, MC_SEALS, f, NULL, &s, &found, "store: seal version", err);
    bson_destroy(f);
    if (rc != 0)
        return -1;
    if (!found)
        return serr_set(err, SERR_RETRY, "store: the seal of %s went missing", vid);
    *ok_out = bs_bool(&s, "ok");
    bson_destroy(&s);
    return 0;
}

bool mh_block_key(mg *m, const char *type, const char *id, uint64_t vkey, const char *vid)
{
    strata_error e2;
    char hid[MG_HID_MAX];
    mk_head_id(hid, sizeof hid, type, id);
    bson_t *blk = BCON_NEW("_id", BCON_UTF8(vid), "t", BCON_UTF8(""), "i", BCON_UTF8(hid), "k",
                           BCON_INT64((int64_t)vkey));
    bool blocked = mg_insert(m, MC_VERSIONS, blk, "store: block a key", &e2) == 0;
    bson_destroy(blk);
    return blocked;
}

/* After a void: takes the dead reservation's key out of use for good, as
 * its writer's abort_put would have. Its document (if it got that far:
 * only its writer, named by the nonce in w, writes at that _id) and its
 * dependencies go, then a blocker takes the _id (t "", so no read of
 * versions takes it for a version). True when the blocker stands: no
 * document can appear there any more, and the key needs no hole. False
 * (a late document of the writer won the _id, or the server failed): the
 * key becomes a hole, as before. Without this a resource whose writers
 * were killed MH_HOLES_MAX times would refuse every save. */
static bool block_voided_key(mg *m, const char *type, const char *id, const mhead *h,
                             const char *vid)
{
    strata_error e2;
    bson_t *f = BCON_NEW("_id", BCON_UTF8(vid), "w", BCON_UTF8(h->nonce));
    mg_delete(m, MC_VERSIONS, f, false, NULL, "store: drop a voided version", &e2);
    bson_destroy(f);
    bson_t *df = BCON_NEW("ft", BCON_UTF8(type), "fi", BCON_UTF8(id), "fk",
                          BCON_INT64((int64_t)h->pend), "w", BCON_UTF8(h->nonce));
    mg_delete(m, MC_DEPS, df, true, NULL, "store: drop voided dependencies", &e2);
    bson_destroy(df);
    return mh_block_key(m, type, id, h->pend, vid);
}

/* Decides a reservation whose writer seems gone, racing the writer's own
 * seal in store_seals: sealed, the version is rolled forward; voided, the
 * key is blocked (else it becomes a hole) and the reservation is dropped. */
static int resolve(mg *m, const char *type, const char *id, const mhead *h, const bson_t *hdoc,
                   strata_error *err)
{
    char vid[MG_VID_MAX];
    mk_ver_id(vid, sizeof vid, type, id, h->pend);
    bool ok = false;
    if (mh_decide(m, vid, false, &ok, err) != 0)
        return -1;
    bson_t vdoc;
    bool found = false;
    if (ok) {
        bson_t *f = BCON_NEW("_id", BCON_UTF8(vid));
        int rc = mg_find_one(m, MC_VERSIONS, f, NULL, &vdoc, &found, "store: read version", err);
        bson_destroy(f);
        if (rc != 0)
            return -1;
        if (!found) /* sealed means written: a gone document is a broken store */
            return serr_set(err, SERR_CORRUPT, "store: sealed version %s is missing", vid);
    }
    bson_t set = BSON_INITIALIZER;
    BSON_APPEND_INT64(&set, "pk", 0);
    BSON_APPEND_UTF8(&set, "pn", "");
    if (ok) {
        mh_latest_fields(&set, &vdoc);
        BSON_APPEND_BOOL(&set, "st", false);
        BSON_APPEND_NULL(&set, "sr");
        bson_destroy(&vdoc);
    } else if (!block_voided_key(m, type, id, h, vid)) {
        mh_holes_plus(&set, h, h->pend);
    }
    int rc = mh_move(m, type, id, h, hdoc, &set, NULL, err);
    bson_destroy(&set);
    if (rc != 0 && err->kind == SERR_CONFLICT)
        return 0; /* the head moved on: look again */
    if (rc == 0 && ok && h->latest == 0) {
        /* a new life began: the resource's own tombstone no longer applies */
        char tid[MG_VID_MAX];
        mk_ver_id(tid, sizeof tid, type, id, 0);
        bson_t *tf = BCON_NEW("_id", BCON_UTF8(tid));
        rc = mg_delete(m, MC_TOMBS, tf, false, NULL, "store: clear tombstone", err);
        bson_destroy(tf);
    }
    return rc;
}

int mh_settled(mg *m, const char *type, const char *id, mhead *h, strata_error *err)
{
    uint64_t seen_key = 0, since = 0, start = clock_mono_ms();
    char seen_nonce[sizeof h->nonce] = "";
    unsigned pause = 1;
    for (;;) {
        bson_t doc;
        if (mh_read(m, type, id, h, &doc, err) != 0)
            return -1;
        if (h->pend == 0) {
            bson_destroy(&doc);
            return 0;
        }
        uint64_t now = clock_mono_ms();
        if (h->pend != seen_key || strcmp(h->nonce, seen_nonce) != 0) {
            seen_key = h->pend;
            snprintf(seen_nonce, sizeof seen_nonce, "%s", h->nonce);
            since = now;
        } else if (now - since >= MH_GRACE_MS) {
            /* the same reservation for the whole grace: its writer is gone */
            int rc = resolve(m, type, id, h, &doc, err);
            bson_destroy(&doc);
            if (rc != 0)
                return -1;
            continue;
        }
        bson_destroy(&doc);
        if (now - start > 4 * MH_GRACE_MS)
            return serr_set(err, SERR_RETRY, "store: the head of %s/%s stays reserved", type, id);
        mg_sleep_ms(pause);
        if (pause < 32)
            pause *= 2;
    }
}

/* A transaction's beat count ("hb:<tid>" in store_seals; 0 when none). */
static uint64_t beat_of(mg *m, const char *tid)
{
    char bid[40];
    snprintf(bid, sizeof bid, "hb:%s", tid);
    bson_t *f = BCON_NEW("_id", BCON_UTF8(bid));
    bson_t d;
    bool found = false;
    strata_error e2;
    uint64_t n = 0;
    if (mg_find_one(m, MC_SEALS, f, NULL, &d, &found, "store: read a beat", &e2) == 0 && found) {
        n = (uint64_t)bs_i64(&d, "n");
        bson_destroy(&d);
    }
    bson_destroy(f);
    return n;
}

int mh_settled_w(mg *m, const char *type, const char *id, mhead *h, bson_t *doc, strata_error *err)
{
    int owed_tries = 0;
    uint64_t since = 0, start = clock_mono_ms();
    char seen[96] = "";
    unsigned pause = 1;
    for (;;) {
        bson_t d;
        if (mh_read(m, type, id, h, &d, err) != 0)
            return -1;
        if (h->pxs == MH_PX_SEALED || h->pxs == MH_PX_VOID) {
            /* decided: write the state it stands for (a voided
             * transaction's versions go first, so that their keys can be
             * issued again) */
            if (h->pxs == MH_PX_VOID)
                mv_drop_docs(m, type, id, h->pks, h->npks, h->px);
            int rc = write_state(m, type, id, h->seq, h->exists, &d, err);
            bson_destroy(&d);
            if (rc != 0 && err->kind != SERR_CONFLICT)
                return -1;
            continue;
        }
        if (h->pend == 0 && h->pxs == MH_PX_NONE && owed_tries < 4 && bs_has(&d, "dh") &&
            complete_owed(m, type, id, h, &d) == 1) {
            owed_tries++;
            bson_destroy(&d);
            continue;
        }
        if (h->pend == 0 && h->pxs == MH_PX_NONE) {
            if (doc != NULL)
                bson_steal(doc, &d);
            else
                bson_destroy(&d);
            return 0;
        }
        bson_destroy(&d);
        char what[96];
        if (h->pend != 0)
            snprintf(what, sizeof what, "%" PRIx64 ":%s", h->pend, h->nonce);
        else
            snprintf(what, sizeof what, "%s:%" PRIu64 ":%" PRIu64, h->px, h->seq,
                     beat_of(m, h->px)); /* a new state or a beat: progress */
        uint64_t now = clock_mono_ms();
        if (strcmp(what, seen) != 0) {
            snprintf(seen, sizeof seen, "%s", what);
            since = now;
        } else if (now - since >= MH_GRACE_MS) {
            /* no progress for the whole grace: its writer is gone */
            int rc = 0;
            if (h->pend != 0) {
                bson_t hdoc;
                if (mh_read(m, type, id, h, &hdoc, err) != 0)
                    return -1;
                rc = h->pend != 0 && h->pxs == MH_PX_NONE ? resolve(m, type, id, h, &hdoc, err) : 0;
                bson_destroy(&hdoc);
            } else {
                bool ok = false;
                rc = mh_decide(m, h->px, false, &ok, err);
            }
            if (rc != 0)
                return -1;
            continue;
        }
        if (now - start > 4 * MH_GRACE_MS)
            return serr_set(err, SERR_RETRY, "store: the head of %s/%s stays held by a writer",
                            type, id);
        mg_sleep_ms(pause);
        if (pause < 32)
            pause *= 2;
    }
}

/* ---- a transaction's heads ----------------------------------------------------------- */

static tx_head *tx_find(store_txn *t, const char *type, const char *id)
{
    for (size_t i = 0; i < t->nheads; i++)
        if (strcmp(t->heads[i]->type, type) == 0 && strcmp(t->heads[i]->id, id) == 0)
            return t->heads[i];
    return NULL;
}

int tx_head_get(store_txn *t, mg *m, const char *type, const char *id, tx_head **slot, mhead *h,
                bson_t *doc, strata_error *err)
{
    *slot = tx_find(t, type, id);
    if (*slot != NULL) {
        memset(h, 0, sizeof *h);
        if (!bson_empty(&(*slot)->want)) /* (empty: a head it only read, that did not exist) */
            head_from_doc(&(*slot)->want, h);
        h->seq = (*slot)->seq;
        h->pxs = MH_PX_OWN;
        snprintf(h->px, sizeof h->px, "%s", t->tid);
        if (doc != NULL)
            bson_copy_to(&(*slot)->want, doc);
        return 0;
    }
    if (t->nheads == 0) /* holding nothing, it may wait */
        return mh_settled_w(m, type, id, h, doc, err);
    bson_t d;
    if (mh_read_tx(m, t->tid, type, id, h, &d, err) != 0)
        return -1;
    if (h->pend == 0 && h->pxs == MH_PX_NONE) {
        if (doc != NULL)
            bson_steal(doc, &d);
        else
            bson_destroy(&d);
        return 0;
    }
    bson_destroy(&d);
    /* held by another writer: never wait holding pending states */
    tx_abort(t);
    strata_error e2;
    mhead h2;
    mh_settled_w(m, type, id, &h2, NULL, &e2);
    return serr_set(err, SERR_RETRY, "store: %s/%s is held by another writer", type, id);
}

static void append_keys(bson_t *d, const char *name, const uint64_t *keys, size_t n)
{
    bson_t arr;
    char ix[24];
    BSON_APPEND_ARRAY_BEGIN(d, name, &arr);
    for (size_t i = 0; i < n; i++) {
        snprintf(ix, sizeof ix, "%zu", i);
        BSON_APPEND_INT64(&arr, ix, (int64_t)keys[i]);
    }
    bson_append_array_end(d, &arr);
}

static void tx_head_free(tx_head *x)
{
    if (x == NULL)
        return;
    bson_destroy(&x->base);
    bson_destroy(&x->want);
    free(x);
}

int tx_head_put(store_txn *t, mg *m, const char *type, const char *id, tx_head **slotp,
                const mhead *h, const bson_t *doc, const bson_t *set, uint64_t newkey,
                uint64_t dropkey, strata_error *err)
{
    tx_head *slot = *slotp, *x = slot;
    if (x == NULL) {
        if (t->nheads == t->cap_heads) {
            size_t cap = t->cap_heads ? 2 * t->cap_heads : 8;
            tx_head **nh = realloc(t->heads, cap * sizeof *nh);
            if (nh == NULL)
                return serr_set(err, SERR_NOMEM, "out of memory");
            t->heads = nh;
            t->cap_heads = cap;
        }
        x = calloc(1, sizeof *x);
        if (x == NULL)
            return serr_set(err, SERR_NOMEM, "out of memory");
        snprintf(x->type, sizeof x->type, "%s", type);
        snprintf(x->id, sizeof x->id, "%s", id);
        x->seq = h->seq;
        x->base_exists = h->exists;
        bson_init(&x->base);
        if (h->exists)
            bson_copy_to_excluding_noinit(doc, &x->base, "_id", "q", NULL);
        bson_init(&x->want);
    }
    if ((newkey != 0 && x->nkeys == TX_KEYS_MAX) || (dropkey != 0 && x->ndropped == TX_KEYS_MAX)) {
        if (slot == NULL)
            tx_head_free(x);
        return serr_set(err, SERR_TOO_LARGE,
                        "store: a transaction changes at most %d versions of one resource",
                        TX_KEYS_MAX);
    }
    bson_t want;
    merge_fields(h, doc, set, &want);
    if (newkey != 0)
        x->keys[x->nkeys++] = newkey;
    bson_t fields = BSON_INITIALIZER;
    if (x->base_exists)
        bson_concat(&fields, &x->base);
    else
        BSON_APPEND_BOOL(&fields, "nx", true);
    BSON_APPEND_UTF8(&fields, "px", t->tid);
    BSON_APPEND_DOCUMENT(&fields, "pi", &want);
    append_keys(&fields, "pks", x->keys, x->nkeys);
    char hid[MG_HID_MAX];
    mk_head_id(hid, sizeof hid, type, id);
    bson_t *extra = BCON_NEW("t", BCON_UTF8(type), "i", BCON_UTF8(id));
    int rc = tx_beat_start(t, err);
    if (rc == 0)
        rc = reg_write(m, MC_HEADS, 'h', hid, x->seq + 1, &fields, extra, err);
    bson_destroy(extra);
    bson_destroy(&fields);
    if (rc != 0) {
        if (newkey != 0)
            x->nkeys--;
        bson_destroy(&want);
        if (slot == NULL)
            tx_head_free(x);
        if (err->kind == SERR_CONFLICT)
            return serr_set(err, SERR_RETRY, "store: the head of %s/%s moved", type, id);
        return -1;
    }
    x->seq++;
    bson_destroy(&x->want);
    bson_steal(&x->want, &want);
    if (dropkey != 0)
        x->dropped[x->ndropped++] = dropkey;
    if (slot == NULL)
        t->heads[t->nheads++] = x;
    *slotp = x;
    return 0;
}

int tx_after_add(store_txn *t, const tx_after *a, strata_error *err)
{
    if (t->nafter == t->cap_after) {
        size_t cap = t->cap_after ? 2 * t->cap_after : 8;
        tx_after *na = realloc(t->after, cap * sizeof *na);
        if (na == NULL)
            return serr_set(err, SERR_NOMEM, "out of memory");
        t->after = na;
        t->cap_after = cap;
    }
    t->after[t->nafter++] = *a;
    return 0;
}

/* Used by store_mongo.c: the next state of x after seq (rolled back to
 * its base, or forward to want without the holes of versions removed). */
int tx_head_finish(mg *m, const tx_head *x, bool sealed, strata_error *err)
{
    if (!sealed)
        return write_state(m, x->type, x->id, x->seq, x->base_exists, &x->base, err);
    if (bson_empty(&x->want))
        return write_state(m, x->type, x->id, x->seq, false, &x->want, err);
    mhead h;
    memset(&h, 0, sizeof h);
    head_from_doc(&x->want, &h);
    bson_t fields = BSON_INITIALIZER;
    bson_copy_to_excluding_noinit(&x->want, &fields, "holes", "dh", NULL);
    /* only the holes of versions whose removal is done go: the others
     * still hide a document, and stay owed ("dh") for the next writer */
    bson_t holes, owed;
    BSON_APPEND_ARRAY_BEGIN(&fields, "holes", &holes);
    size_t n = 0;
    for (size_t i = 0; i < h.nholes; i++) {
        bool gone = false;
        for (size_t j = 0; j < x->ndropped; j++)
            gone |= x->dropped[j] == h.holes[i] && x->gone[j];
        if (gone)
            continue;
        char ix[24];
        snprintf(ix, sizeof ix, "%zu", n++);
        BSON_APPEND_INT64(&holes, ix, (int64_t)h.holes[i]);
    }
    bson_append_array_end(&fields, &holes);
    n = 0;
    BSON_APPEND_ARRAY_BEGIN(&fields, "dh", &owed);
    owed_copy(&owed, &n, &x->want, x->dropped, x->gone, x->ndropped);
    bson_append_array_end(&fields, &owed);
    int rc = write_state(m, x->type, x->id, x->seq, true, &fields, err);
    bson_destroy(&fields);
    return rc;
}

void tx_head_release(tx_head *x)
{
    tx_head_free(x);
}

/* A head read through a transaction is taken by it (a pending state that
 * intends it unchanged), as BEGIN IMMEDIATE would: the body's check and
 * its write stay together, and writers that want the head queue behind
 * the transaction instead of failing its compare-and-swap. Holding
 * nothing, a lost race for it is tried again at once. */
static int tx_take(store_txn *t, mg *m, const char *type, const char *id, mhead *h,
                   strata_error *err)
{
    uint64_t start = clock_mono_ms();
    for (;;) {
        tx_head *slot = NULL;
        bson_t doc;
        if (tx_head_get(t, m, type, id, &slot, h, &doc, err) != 0)
            return -1;
        int rc = 0;
        if (slot == NULL) {
            bson_t none = BSON_INITIALIZER;
            rc = tx_head_put(t, m, type, id, &slot, h, &doc, &none, 0, 0, err);
            bson_destroy(&none);
        }
        bson_destroy(&doc);
        if (rc == 0)
            return tx_head_get(t, m, type, id, &slot, h, NULL, err);
        if (err->kind != SERR_RETRY || t->nheads > 0 || clock_mono_ms() - start > 4 * MH_GRACE_MS)
            return -1;
    }
}

int mg_get_head(store *base, store_txn *txn, const char *type, const char *id, store_head *out,
                strata_error *err)
{
    mg m;
    mg_begin(&m, (mongo_store *)base);
    mhead h;
    int rc = txn != NULL ? tx_take(txn, &m, type, id, &h, err) : mh_settled(&m, type, id, &h, err);
    mg_end(&m);
    memset(out, 0, sizeof *out);
    if (rc != 0)
        return -1;
    out->exists = h.exists;
    out->latest_vkey = h.latest;
    out->max_vkey = h.max;
    if (h.latest != 0)
        snprintf(out->latest_hash, sizeof out->latest_hash, "%s", h.hash);
    return 0;
}
