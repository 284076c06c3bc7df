/* The MongoDB L2's key operations: get, token, set (and fills), del and
 * fence_open, each a move of the key's chain of immutable states by one
 * insert refused by a unique _id (l2_mongo.h); and the handle. */
#include "l2_mongo.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "../common/clock.h"
#include "../common/log.h"
#include "../common/utf8.h"
#include "l2_mongo_int.h"

#define CHANGE_TRIES 48  /* inserts of an unconditional change that lose to another writer */
#define PROBE_MAX    256 /* seqs walked past a hint before giving up (SERR_RETRY) */
#define JUMP_AFTER   4   /* seqs walked past a node's own hint before asking the pointer */
#define CLOSE_MAX    64  /* fences closed by one del; more are left to expire */

/* ---- small helpers ------------------------------------------------------------------ */

int l2m_random(uint64_t *out, strata_error *err)
{
    uint64_t r = 0;
    while (r == 0 || (int64_t)r == INT64_MIN)
        if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
            return serr_set(err, SERR_IO, "no random bytes for an L2 id");
    *out = r;
    return 0;
}

int64_t l2m_i64(const bson_t *doc, const char *name, int64_t fallback)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, name))
        return fallback;
    if (BSON_ITER_HOLDS_INT64(&it))
        return bson_iter_int64(&it);
    if (BSON_ITER_HOLDS_INT32(&it))
        return bson_iter_int32(&it);
    return fallback;
}

bool l2m_live(const bson_t *doc)
{
    int64_t s = l2m_i64(doc, "s", -1), x = l2m_i64(doc, "x", -1);
    return s >= 0 && x >= 0 && (x == 0 || clock_wall_ms() < x);
}

static bool valid_utf8(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq_len((const unsigned char *)s + i, n - i);
        if (l == 0)
            return false;
        i += l;
    }
    return true;
}

static int check_ns(const char *ns, strata_error *err)
{
    if (ns[0] == '\0' || strlen(ns) > L2_NS_MAX)
        return serr_set(err, SERR_INVALID, "cache namespace empty or too long");
    if (!valid_utf8(ns))
        return serr_set(err, SERR_INVALID, "MongoDB L2: a cache namespace must be UTF-8");
    return 0;
}

int l2m_chain(const char *ns, const char *key, char chain[L2M_CHAIN_MAX], strata_error *err)
{
    if (check_ns(ns, err) != 0)
        return -1;
    if (key[0] == '\0' || strlen(key) > L2_KEY_MAX)
        return serr_set(err, SERR_INVALID, "cache key empty or too long");
    if (!valid_utf8(key))
        return serr_set(err, SERR_INVALID, "MongoDB L2: a cache key must be UTF-8");
    snprintf(chain, L2M_CHAIN_MAX, "%zu:%s:%s", strlen(ns), ns, key);
    return 0;
}

static void state_id(char out[L2M_ID_MAX], uint64_t q, const char *chain)
{
    snprintf(out, L2M_ID_MAX, "s%" PRIu64 ":%s", q, chain);
}

static void epoch_id(char out[L2M_ID_MAX], const char *ns)
{
    snprintf(out, L2M_ID_MAX, "e:%s", ns);
}

static void pointer_id(char out[L2M_ID_MAX], const char *chain)
{
    snprintf(out, L2M_ID_MAX, "p:%s", chain);
}

static void make_token(l2_token *t, uint64_t e, uint64_t g)
{
    memset(t, 0, sizeof *t);
    t->w[0] = e;
    t->w[1] = g;
    t->w[3] = 1;
}

static int miss(l2m *c, const char *ns, strata_error *err, const char *why)
{
    l2m_count(c, ns, L2M_MISSES, 1);
    return serr_set(err, SERR_NOT_FOUND, "not in the L2 cache (%s)", why);
}

/* ---- hints: a seq of each chain this node saw (never above its newest,
 * since no state is ever deleted while its chain lives) ----------------------------- */

static uint64_t chain_hash(const char *chain)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = chain; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h | 1; /* 0 marks an empty slot */
}

static uint64_t hint_get(l2m *c, const char *chain)
{
    uint64_t h = chain_hash(chain), q = 0;
    pthread_mutex_lock(&c->mu);
    uint64_t *slot = c->hints[h % L2M_HINT_SLOTS];
    if (slot[0] == h)
        q = slot[1];
    pthread_mutex_unlock(&c->mu);
    return q;
}

static void hint_put(l2m *c, const char *chain, uint64_t q)
{
    uint64_t h = chain_hash(chain);
    pthread_mutex_lock(&c->mu);
    uint64_t *slot = c->hints[h % L2M_HINT_SLOTS];
    if (slot[0] != h || slot[1] < q) {
        slot[0] = h;
        slot[1] = q;
    }
    pthread_mutex_unlock(&c->mu);
}

static void hint_drop(l2m *c, const char *chain)
{
    uint64_t h = chain_hash(chain);
    pthread_mutex_lock(&c->mu);
    uint64_t *slot = c->hints[h % L2M_HINT_SLOTS];
    if (slot[0] == h)
        slot[0] = slot[1] = 0;
    pthread_mutex_unlock(&c->mu);
}

/* ---- reading states ------------------------------------------------------------------ */

void l2m_state_free(l2m_state *st)
{
    if (st->doc)
        bson_destroy(st->doc);
    st->doc = NULL;
}

/* The fences of state document doc into st. */
static void read_fences(const bson_t *doc, l2m_state *st)
{
    bson_iter_t it, arr, fi;
    st->nf = 0;
    st->fences_bad = false;
    if (!bson_iter_init_find(&it, doc, "f"))
        return;
    if (!BSON_ITER_HOLDS_ARRAY(&it)) {
        st->fences_bad = true;
        return;
    }
    bson_iter_recurse(&it, &arr);
    while (bson_iter_next(&arr)) {
        int64_t v[3] = {0, -1, -1};
        const char *names[3] = {"i", "h", "o"};
        if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || st->nf == L2M_FENCES_MAX) {
            st->fences_bad = true;
            return;
        }
        for (int j = 0; j < 3; j++) {
            bson_iter_recurse(&arr, &fi);
            if (bson_iter_find(&fi, names[j]) && BSON_ITER_HOLDS_INT64(&fi))
                v[j] = bson_iter_int64(&fi);
        }
        if (v[0] == 0 || v[1] < 0 || v[2] < 0) {
            st->fences_bad = true; /* a fence that does not read as one stands */
            return;
        }
        st->f[st->nf++] = (l2m_fence){.id = v[0], .hold = v[1], .open = v[2]};
    }
}

static void read_state(const bson_t *doc, uint64_t q, l2m_state *st)
{
    st->exists = true;
    st->q = q;
    st->doc = bson_copy(doc);
    bson_iter_t it;
    bool stub = bson_iter_init_find(&it, doc, "z");
    st->g = stub ? 0 : l2m_i64(doc, "g", 0);
    st->s = l2m_i64(doc, "s", -1);
    st->w = l2m_i64(doc, "w", 0);
    st->x = l2m_i64(doc, "x", -1);
    if (stub || st->doc == NULL)
        st->g = 0;
    if (st->g == 0)
        st->s = -1;
    read_fences(doc, st);
}

/* The pointer's hint of chain: 0 when the chain has no pointer. */
static int read_pointer(l2m *c, const char *chain, uint64_t *h, strata_error *err)
{
    char pid[L2M_ID_MAX];
    pointer_id(pid, chain);
    l2m_coll k = l2m_take(c, c->keys);
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(pid));
    bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(k.co, filter, opts, NULL);
    const bson_t *doc;
    bson_error_t be;
    int rc = 0;
    *h = 0;
    if (mongoc_cursor_next(cur, &doc)) {
        int64_t v = l2m_i64(doc, "h", 1);
        *h = v < 1 ? 1 : (uint64_t)v;
    } else if (mongoc_cursor_error(cur, &be)) {
        rc = mongo_conn_error(&be, "MongoDB L2: reading a pointer", err);
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    bson_destroy(filter);
    l2m_put(c, &k);
    return rc;
}

/* One document of the keys collection by _id into *out (a copy, or NULL
 * when absent; bson_destroy it), the value's bytes left out unless
 * with_value. Lookups by _id alone: FerretDB v1.24 scans the collection
 * for $in or $or of _ids. */
static int find_in(l2m *c, const char *coll, const bson_t *filter_in, bool with_value, bson_t **out,
                   strata_error *err)
{
    *out = NULL;
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, proj;
    bson_concat(&filter, filter_in);
    BSON_APPEND_INT64(&opts, "limit", 1);
    if (!with_value) {
        BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &proj);
        BSON_APPEND_INT32(&proj, "v", 0);
        bson_append_document_end(&opts, &proj);
    }
    l2m_coll k = l2m_take(c, coll);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(k.co, &filter, &opts, NULL);
    const bson_t *doc;
    bson_error_t be;
    int rc = 0;
    if (mongoc_cursor_next(cur, &doc)) {
        if ((*out = bson_copy(doc)) == NULL)
            rc = serr_set(err, SERR_NOMEM, "out of memory");
    } else if (mongoc_cursor_error(cur, &be)) {
        rc = mongo_conn_error(&be, "MongoDB L2: reading a key", err);
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(&opts);
    bson_destroy(&filter);
    l2m_put(c, &k);
    return rc;
}

static int find_id(l2m *c, const char *id, bool with_value, bson_t **out, strata_error *err)
{
    bson_t *f = BCON_NEW("_id", BCON_UTF8(id));
    int rc = find_in(c, c->keys, f, with_value, out, err);
    bson_destroy(f);
    return rc;
}

/* State q of chain into *st when it exists (st->exists). */
static int read_seq(l2m *c, const char *chain, uint64_t q, bool with_value, l2m_state *st,
                    strata_error *err)
{
    memset(st, 0, sizeof *st);
    char id[L2M_ID_MAX];
    state_id(id, q, chain);
    bson_t *doc;
    if (find_id(c, id, with_value, &doc, err) != 0)
        return -1;
    if (doc) {
        read_state(doc, q, st);
        bson_destroy(doc);
    }
    return 0;
}

static int read_epoch(l2m *c, const char *ns, uint64_t *e, strata_error *err)
{
    char id[L2M_ID_MAX];
    epoch_id(id, ns);
    bson_t *doc;
    *e = 0;
    if (find_id(c, id, false, &doc, err) != 0)
        return -1;
    if (doc) {
        *e = (uint64_t)l2m_i64(doc, "e", 0);
        bson_destroy(doc);
    }
    return 0;
}

int l2m_newest(l2m *c, const char *ns, const char *chain, bool with_value, uint64_t *epoch,
               l2m_state *st, strata_error *err)
{
    memset(st, 0, sizeof *st);
    if (epoch && read_epoch(c, ns, epoch, err) != 0)
        return -1;
    uint64_t from = hint_get(c, chain);
    bool from_pointer = false;
    if (from == 0) {
        if (read_pointer(c, chain, &from, err) != 0)
            return -1;
        from_pointer = true;
        if (from == 0)
            return 0; /* no pointer: no state (the pointer is made first) */
    }
    if (read_seq(c, chain, from, with_value, st, err) != 0)
        return -1;
    if (!st->exists && !from_pointer) {
        /* a hint of a chain that is gone (its collection dropped) */
        hint_drop(c, chain);
        if (read_pointer(c, chain, &from, err) != 0)
            return -1;
        from_pointer = true;
        if (from == 0)
            return 0;
        if (read_seq(c, chain, from, with_value, st, err) != 0)
            return -1;
    }
    if (!st->exists)
        return 0; /* a pointer whose first state is not in yet: no state */
    /* states are contiguous from 1 (none is deleted while its chain
     * lives), so the first seq absent above one present ends the chain */
    for (int step = 0; step < PROBE_MAX; step++) {
        l2m_state next;
        if (step == JUMP_AFTER && !from_pointer) {
            /* a hint far behind: the pointer may be further on (it never
             * passes the newest state) */
            uint64_t h;
            from_pointer = true;
            if (read_pointer(c, chain, &h, err) != 0) {
                l2m_state_free(st);
                return -1;
            }
            if (h > st->q + 1) {
                if (read_seq(c, chain, h, with_value, &next, err) != 0) {
                    l2m_state_free(st);
                    return -1;
                }
                if (next.exists) {
                    l2m_state_free(st);
                    *st = next;
                }
            }
        }
        if (read_seq(c, chain, st->q + 1, with_value, &next, err) != 0) {
            l2m_state_free(st);
            return -1;
        }
        if (!next.exists) {
            hint_put(c, chain, st->q);
            return 0;
        }
        l2m_state_free(st);
        *st = next;
    }
    l2m_state_free(st);
    return serr_set(err, SERR_RETRY, "MongoDB L2: %s keeps growing faster than it is read", chain);
}

/* The state a change builds on: the one this node saw last (one find),
 * else the newest. Only for a change whose insert of the next seq is its
 * test: if that state is no longer the newest, its successor exists and
 * the insert is refused (then the caller asks l2m_newest). */
static int read_base(l2m *c, const char *ns, const char *chain, uint64_t *epoch, l2m_state *st,
                     strata_error *err)
{
    uint64_t h = hint_get(c, chain);
    if (h == 0)
        return l2m_newest(c, ns, chain, false, epoch, st, err);
    if (epoch && read_epoch(c, ns, epoch, err) != 0)
        return -1;
    if (read_seq(c, chain, h, false, st, err) != 0)
        return -1;
    if (st->exists && st->g != 0)
        return 0;
    l2m_state_free(st);
    return l2m_newest(c, ns, chain, false, epoch, st, err);
}

/* ---- writing states ------------------------------------------------------------------ */

/* What a new state holds besides its seq and generation. */
typedef struct l2m_value {
    const void *data;
    size_t len;
    const l2_meta *meta;
    int64_t x;
    uint64_t wid;
} l2m_value;

static bson_t *state_doc(const char *ns, const char *key, const char *chain, uint64_t q, int64_t g,
                         const l2m_fence *f, size_t nf, const l2m_value *v)
{
    char id[L2M_ID_MAX];
    state_id(id, q, chain);
    bson_t *d = bson_new(), arr, fd;
    BSON_APPEND_UTF8(d, "_id", id);
    BSON_APPEND_UTF8(d, "n", ns);
    BSON_APPEND_UTF8(d, "k", key);
    BSON_APPEND_INT64(d, "g", g);
    if (v) {
        BSON_APPEND_INT64(d, "s", (int64_t)v->len);
        BSON_APPEND_INT64(d, "w", (int64_t)v->wid);
        bson_append_utf8(d, "t", 1, v->meta->content_type,
                         (int)strnlen(v->meta->content_type, sizeof v->meta->content_type - 1));
        BSON_APPEND_INT32(d, "c", v->meta->codec);
        BSON_APPEND_INT64(d, "r", (int64_t)v->meta->raw_size);
        BSON_APPEND_INT64(d, "e", v->meta->expires_ms);
        BSON_APPEND_INT64(d, "x", v->x);
    } else {
        BSON_APPEND_INT64(d, "s", -1);
    }
    if (nf > 0) {
        BSON_APPEND_ARRAY_BEGIN(d, "f", &arr);
        for (size_t i = 0; i < nf; i++) {
            char ix[16];
            const char *ik;
            bson_uint32_to_string((uint32_t)i, &ik, ix, sizeof ix);
            bson_append_document_begin(&arr, ik, -1, &fd);
            BSON_APPEND_INT64(&fd, "i", f[i].id);
            BSON_APPEND_INT64(&fd, "h", f[i].hold);
            BSON_APPEND_INT64(&fd, "o", f[i].open);
            bson_append_document_end(&arr, &fd);
        }
        bson_append_array_end(d, &arr);
    }
    return d;
}

/* Inserts doc: 0, or -1 with SERR_CONFLICT when its _id is taken. */
static int insert_into(l2m *c, const char *coll, const bson_t *doc, strata_error *err)
{
    l2m_coll k = l2m_take(c, coll);
    bson_error_t be;
    bool ok = mongoc_collection_insert_one(k.co, doc, NULL, NULL, &be);
    l2m_put(c, &k);
    if (ok)
        return 0;
    if (mongo_conn_is_duplicate(&be))
        return serr_set(err, SERR_CONFLICT, "MongoDB L2: another writer moved the key first");
    return mongo_conn_error(&be, "MongoDB L2: writing a state", err);
}

static int insert_doc(l2m *c, const bson_t *doc, strata_error *err)
{
    return insert_into(c, c->keys, doc, err);
}

/* The collection of the bytes of write id w: P_vals0..P_valsf by its low
 * 4 bits. FerretDB v1.24 answers a find by _id in time that grows with
 * the collection's bytes (measured: 20 ms at 10 MiB, seconds while
 * PostgreSQL is busy after a burst of writes), so the bytes are spread
 * over 16 collections. */
static void vals_of(const l2m *c, int64_t w, char out[L2M_PREFIX_MAX + 16])
{
    snprintf(out, L2M_PREFIX_MAX + 16, "%s%x", c->vals, (unsigned)((uint64_t)w & 15));
}

/* Deletes the bytes document of write id w (best effort). */
static void drop_bytes(l2m *c, int64_t w)
{
    char vals[L2M_PREFIX_MAX + 16];
    vals_of(c, w, vals);
    l2m_coll k = l2m_take(c, vals);
    bson_t *sel = BCON_NEW("_id", BCON_INT64(w));
    bson_error_t be;
    if (!mongoc_collection_delete_one(k.co, sel, NULL, NULL, &be))
        slog_debug("L2 mongo: dropping the bytes of %016" PRIx64 ": %s", (uint64_t)w, be.message);
    bson_destroy(sel);
    l2m_put(c, &k);
}

void l2m_shrink(l2m *c, const char *id)
{
    l2m_coll k = l2m_take(c, c->keys);
    bson_t *sel = BCON_NEW("_id", BCON_UTF8(id));
    bson_t *stub = BCON_NEW("z", BCON_INT32(1));
    bson_error_t be;
    if (!mongoc_collection_replace_one(k.co, sel, stub, NULL, NULL, &be))
        slog_debug("L2 mongo: shrinking %s: %s", id, be.message);
    bson_destroy(stub);
    bson_destroy(sel);
    l2m_put(c, &k);
}

/* After state q of chain won its insert, replacing state q-1, which held
 * the value of write id old_w (0: a blank): the hint; the pointer's hint
 * and the key's recency when this node has not stamped them within a
 * minute or every 8th seq (hints only: losing them costs readers a
 * longer walk); and q-1 shrunk to a stub and its bytes deleted when it
 * held a value (a blank is as small as a stub). Best effort. */
static void after_change(l2m *c, const char *ns, const char *key, const char *chain, uint64_t q,
                         int64_t old_w)
{
    hint_put(c, chain, q);
    if (l2m_touch_due(c, chain, false) || q % 8 == 0) {
        char pid[L2M_ID_MAX];
        pointer_id(pid, chain);
        l2m_coll k = l2m_take(c, c->keys);
        bson_t *sel = BCON_NEW("_id", BCON_UTF8(pid));
        bson_t *upd = BCON_NEW("$max", "{", "h", BCON_INT64((int64_t)q), "}", "$currentDate", "{",
                               "a", BCON_BOOL(true), "}", "$setOnInsert", "{", "n", BCON_UTF8(ns),
                               "k", BCON_UTF8(key), "}");
        bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
        bson_error_t be;
        if (!mongoc_collection_update_one(k.co, sel, upd, opts, NULL, &be))
            slog_debug("L2 mongo: the pointer of %s: %s", chain, be.message);
        bson_destroy(opts);
        bson_destroy(upd);
        bson_destroy(sel);
        l2m_put(c, &k);
    }
    if (q > 1 && old_w != 0) {
        char id[L2M_ID_MAX];
        state_id(id, q - 1, chain);
        l2m_shrink(c, id);
        drop_bytes(c, old_w);
    }
}

/* Makes the pointer of a chain that has none (before its first state, so
 * that a listing of pointers sees every chain with a state). */
static int make_pointer(l2m *c, const char *ns, const char *key, const char *chain,
                        strata_error *err)
{
    char pid[L2M_ID_MAX];
    pointer_id(pid, chain);
    bson_t *doc = BCON_NEW("_id", BCON_UTF8(pid), "n", BCON_UTF8(ns), "k", BCON_UTF8(key), "h",
                           BCON_INT64(1));
    int rc = insert_doc(c, doc, err);
    bson_destroy(doc);
    if (rc != 0 && err->kind == SERR_CONFLICT)
        rc = 0; /* another node made it */
    return rc;
}

/* Inserts state st->q + 1 of (ns, key) (state 1 of a chain with none),
 * then tidies up. SERR_CONFLICT when another writer took that seq. */
static int advance(l2m *c, const char *ns, const char *key, const char *chain, const l2m_state *st,
                   int64_t g, const l2m_fence *f, size_t nf, const l2m_value *v, strata_error *err)
{
    if (!st->exists && make_pointer(c, ns, key, chain, err) != 0)
        return -1;
    uint64_t q = st->exists ? st->q + 1 : 1;
    if (v) {
        /* the bytes first, under the write id, in a collection of their
         * own (so that listings of states stay small) */
        bson_t *bytes = bson_new();
        BSON_APPEND_INT64(bytes, "_id", (int64_t)v->wid);
        bson_append_binary(bytes, "v", 1, BSON_SUBTYPE_BINARY, (const uint8_t *)v->data,
                           (uint32_t)v->len);
        char vals[L2M_PREFIX_MAX + 16];
        vals_of(c, (int64_t)v->wid, vals);
        int rb = insert_into(c, vals, bytes, err);
        bson_destroy(bytes);
        if (rb != 0)
            return rb;
    }
    bson_t *doc = state_doc(ns, key, chain, q, g, f, nf, v);
    int rc = insert_doc(c, doc, err);
    bson_destroy(doc);
    if (rc == 0)
        after_change(c, ns, key, chain, q, st->exists && st->s >= 0 ? st->w : 0);
    else if (v && err->kind == SERR_CONFLICT)
        drop_bytes(c, (int64_t)v->wid);
    return rc;
}

/* The server's clock, in ms since the epoch. */
static int server_ms(l2m *c, int64_t *now, strata_error *err)
{
    mongoc_client_t *cl = mongo_conn_pop(c->conn);
    int rc = mongo_conn_server_ms(cl, now, err);
    mongo_conn_push(c->conn, cl);
    return rc;
}

/* Whether fence f stands at the server's time now. */
static bool fence_stands(const l2m_fence *f, int64_t now)
{
    return now < f->open || now - f->open < f->hold;
}

/* The fences of st that a new state carries: those still standing by the
 * server's clock (all of them when no clock was read: now < 0), minus the
 * ids in close[0..nclose). */
static size_t carry_fences(const l2m_state *st, int64_t now, const l2_fence_id *close,
                           size_t nclose, l2m_fence *out)
{
    size_t n = 0;
    for (size_t i = 0; i < st->nf; i++) {
        bool closed = false;
        for (size_t j = 0; j < nclose && j < CLOSE_MAX && !closed; j++)
            closed = close[j] != 0 && (int64_t)close[j] == st->f[i].id;
        if (closed || (now >= 0 && !fence_stands(&st->f[i], now)))
            continue;
        out[n++] = st->f[i];
    }
    return n;
}

int l2m_blank_if(l2m *c, const char *ns, const char *key, const char *chain, const l2m_state *st,
                 strata_error *err)
{
    if (!st->exists || st->g == 0)
        return 1;
    int rc = advance(c, ns, key, chain, st, st->g, st->f, st->fences_bad ? 0 : st->nf, NULL, err);
    if (rc != 0 && err->kind == SERR_CONFLICT)
        return 1;
    return rc;
}

/* What an unconditional change does to a key. */
typedef struct change {
    const l2m_value *value;   /* the new value, or NULL: a blank */
    const l2_fence_id *close; /* fences to close */
    size_t nclose;
    uint64_t open_id, open_hold; /* a fence to open (open_id != 0) */
} change;

/* Applies ch to (ns, key) on whatever state is newest, with a new
 * generation (into *g), retrying until its insert wins. *was_live: the
 * state it replaced held a live value; *epoch: the namespace's epoch as
 * read before the insert. */
static int change_always(l2m *c, const char *ns, const char *key, const char *chain,
                         const change *ch, uint64_t *g, uint64_t *epoch, bool *was_live,
                         strata_error *err)
{
    if (l2m_random(g, err) != 0)
        return -1;
    for (int attempt = 0; attempt < CHANGE_TRIES; attempt++) {
        l2m_state st;
        if ((attempt == 0 ? read_base(c, ns, chain, epoch, &st, err)
                          : l2m_newest(c, ns, chain, false, epoch, &st, err)) != 0)
            return -1;
        /* the server's clock: for a fence's opening, and to drop expired
         * fences once many are carried (until then they ride along) */
        int64_t now = -1;
        if ((st.nf >= L2M_FENCES_MAX / 2 || ch->open_id != 0) && server_ms(c, &now, err) != 0) {
            l2m_state_free(&st);
            return -1;
        }
        l2m_fence f[L2M_FENCES_MAX];
        size_t nf = st.fences_bad ? 0 : carry_fences(&st, now, ch->close, ch->nclose, f);
        if (st.fences_bad && ch->open_id == 0)
            slog_warn("L2 mongo: %s: unreadable fences dropped by a change", chain);
        if (ch->open_id != 0) {
            if (nf == L2M_FENCES_MAX) {
                l2m_state_free(&st);
                return serr_set(err, SERR_RETRY, "MongoDB L2: %d fences stand on %s",
                                L2M_FENCES_MAX, chain);
            }
            f[nf++] = (l2m_fence){
                .id = (int64_t)ch->open_id, .hold = (int64_t)ch->open_hold, .open = now};
        }
        bool live = st.exists && st.doc && st.g != 0 && l2m_live(st.doc);
        int rc = advance(c, ns, key, chain, &st, (int64_t)*g, f, nf, ch->value, err);
        l2m_state_free(&st);
        if (rc == 0) {
            if (was_live)
                *was_live = live;
            return 0;
        }
        if (err->kind != SERR_CONFLICT)
            return -1;
        /* lost to another writer: a random pause (up to 1, 2, .. 16 ms)
         * so that writers contending on one key do not keep colliding */
        uint64_t r;
        if (attempt > 0 && l2m_random(&r, err) == 0)
            usleep((useconds_t)(r % (1000u << (attempt < 4 ? attempt : 4))));
    }
    return serr_set(err, SERR_RETRY, "MongoDB L2: %s keeps changing", chain);
}

int l2m_blank_always(l2m *c, const char *ns, const char *key, bool *was_live, strata_error *err)
{
    char chain[L2M_CHAIN_MAX];
    uint64_t g;
    change ch = {0};
    if (l2m_chain(ns, key, chain, err) != 0)
        return -1;
    return change_always(c, ns, key, chain, &ch, &g, NULL, was_live, err);
}

/* ---- operations ---------------------------------------------------------------------- */

typedef struct value_view {
    int64_t w, s, r, e, x, codec;
    const uint8_t *bytes;
    uint32_t len;
    const char *ct;
} value_view;

/* Reads the value of a state document; -1 when it holds none. */
static int view_value(const bson_t *doc, const bson_t *bytes, value_view *v)
{
    memset(v, 0, sizeof *v);
    v->s = l2m_i64(doc, "s", INT64_MIN);
    v->w = l2m_i64(doc, "w", 0);
    v->r = l2m_i64(doc, "r", -1);
    v->e = l2m_i64(doc, "e", INT64_MIN);
    v->x = l2m_i64(doc, "x", -1);
    v->codec = l2m_i64(doc, "c", -1);
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, "t") && BSON_ITER_HOLDS_UTF8(&it))
        v->ct = bson_iter_utf8(&it, NULL);
    bson_subtype_t st;
    if (bytes && bson_iter_init_find(&it, bytes, "v") && BSON_ITER_HOLDS_BINARY(&it))
        bson_iter_binary(&it, &st, &v->len, &v->bytes);
    if (v->s < 0 || v->w == 0 || v->r < 0 || v->e == INT64_MIN || v->x < 0 || v->codec < 0 ||
        v->codec > 255 || v->ct == NULL || v->bytes == NULL || (int64_t)v->len != v->s)
        return -1;
    return 0;
}

static int mg_get(l2_cache *base, const char *ns, const char *key, size_t max_len, strata_buf *out,
                  l2_meta *meta, strata_error *err)
{
    l2m *c = (l2m *)base;
    char chain[L2M_CHAIN_MAX];
    if (l2m_chain(ns, key, chain, err) != 0 || l2m_ready(c, err) != 0)
        return -1;
    l2m_state st;
    if (l2m_newest(c, ns, chain, true, NULL, &st, err) != 0)
        return -1;
    if (!st.exists || st.g == 0 || st.s < 0) {
        l2m_state_free(&st);
        return miss(c, ns, err, st.exists ? "blank" : "absent");
    }
    /* the bytes: gone when a writer moved past this state since (a miss) */
    bson_t *bytes = NULL, *bf = BCON_NEW("_id", BCON_INT64(st.w));
    char vals[L2M_PREFIX_MAX + 16];
    vals_of(c, st.w, vals);
    int rb = find_in(c, vals, bf, true, &bytes, err);
    bson_destroy(bf);
    if (rb != 0) {
        l2m_state_free(&st);
        return -1;
    }
    if (bytes == NULL) {
        l2m_state_free(&st);
        return miss(c, ns, err, "replaced");
    }
    value_view v;
    if (view_value(st.doc, bytes, &v) != 0) {
        bson_destroy(bytes);
        l2m_state_free(&st);
        slog_warn("L2 mongo: %s/%s: a malformed entry, taken as a miss", ns, key);
        return miss(c, ns, err, "malformed");
    }
    if (v.x != 0 && clock_wall_ms() >= v.x) {
        strata_error e2;
        if (l2m_blank_if(c, ns, key, chain, &st, &e2) < 0)
            slog_warn("L2 mongo: %s/%s expired, not blanked: %s", ns, key, e2.detail);
        bson_destroy(bytes);
        l2m_state_free(&st);
        l2m_count(c, ns, L2M_EXPIRATIONS, 1);
        return miss(c, ns, err, "expired");
    }
    if (v.len > max_len) {
        bson_destroy(bytes);
        l2m_state_free(&st);
        return miss(c, ns, err, "too long");
    }
    meta->write_id = (uint64_t)v.w; /* meta->current stays as the caller set it */
    snprintf(meta->content_type, sizeof meta->content_type, "%s", v.ct);
    meta->codec = (uint8_t)v.codec;
    meta->raw_size = (uint64_t)v.r;
    meta->expires_ms = v.e;
    int rc = sbuf_append(out, v.bytes, v.len, err);
    bson_destroy(bytes);
    l2m_state_free(&st);
    if (rc != 0)
        return -1;
    l2m_count(c, ns, L2M_HITS, 1);
    if (l2m_touch_due(c, chain, false)) {
        /* the use, for LRU across nodes, by the server's clock, on the
         * pointer (states are immutable) */
        char pid[L2M_ID_MAX];
        pointer_id(pid, chain);
        l2m_coll k = l2m_take(c, c->keys);
        bson_t *sel = BCON_NEW("_id", BCON_UTF8(pid));
        bson_t *upd = BCON_NEW("$currentDate", "{", "a", BCON_BOOL(true), "}");
        bson_error_t be;
        if (!mongoc_collection_update_one(k.co, sel, upd, NULL, NULL, &be))
            slog_debug("L2 mongo: stamping %s/%s: %s", ns, key, be.message);
        bson_destroy(upd);
        bson_destroy(sel);
        l2m_put(c, &k);
    }
    return 0;
}

static int mg_token(l2_cache *base, const char *ns, const char *key, l2_token *out,
                    strata_error *err)
{
    l2m *c = (l2m *)base;
    memset(out, 0, sizeof *out);
    char chain[L2M_CHAIN_MAX];
    if (l2m_chain(ns, key, chain, err) != 0 || l2m_ready(c, err) != 0)
        return -1;
    for (int attempt = 0; attempt < CHANGE_TRIES; attempt++) {
        l2m_state st;
        uint64_t e;
        if (l2m_newest(c, ns, chain, false, &e, &st, err) != 0)
            return -1;
        if (st.exists && st.g != 0) {
            make_token(out, e, (uint64_t)st.g);
            l2m_state_free(&st);
            return 0;
        }
        /* no state (or a stub on top, left by hand): a blank of a new
         * generation, so that "absent" is never a token; a racing
         * writer's state is read back */
        uint64_t g;
        int rc = l2m_random(&g, err);
        if (rc == 0)
            rc = advance(c, ns, key, chain, &st, (int64_t)g, NULL, 0, NULL, err);
        l2m_state_free(&st);
        if (rc == 0) {
            make_token(out, e, g);
            return 0;
        }
        if (err->kind != SERR_CONFLICT)
            return -1;
    }
    return serr_set(err, SERR_RETRY, "MongoDB L2: %s/%s keeps changing", ns, key);
}

/* A fill of (ns, key) guarded by token t (l2_mongo.h). */
static int fill(l2m *c, const char *ns, const char *key, const char *chain, const l2m_value *v,
                const l2_token *t, strata_error *err)
{
    l2m_state st;
    uint64_t e;
    if (read_base(c, ns, chain, &e, &st, err) != 0)
        return -1;
    int rc = 0;
    if (e != t->w[0])
        rc = serr_set(err, SERR_CONFLICT, "the namespace was cleared: the fill is refused");
    else if (!st.exists || st.g == 0 || (uint64_t)st.g != t->w[1])
        rc = serr_set(err, SERR_CONFLICT, "the key changed: the fill is refused");
    else if (st.fences_bad)
        rc = serr_set(err, SERR_CONFLICT, "the key is fenced: the fill is refused");
    l2m_fence f[L2M_FENCES_MAX];
    size_t nf = 0;
    if (rc == 0 && st.nf > 0) {
        /* fences stand by the server's clock alone */
        int64_t now;
        if ((rc = server_ms(c, &now, err)) == 0) {
            nf = carry_fences(&st, now, NULL, 0, f);
            if (nf > 0)
                rc = serr_set(err, SERR_CONFLICT, "the key is fenced: the fill is refused");
        }
    }
    /* state q+1 keeps g: a fill is no change; whoever changed the key
     * since took q+1 first (SERR_CONFLICT) */
    if (rc == 0)
        rc = advance(c, ns, key, chain, &st, st.g, f, nf, v, err);
    if (rc != 0 && err->kind == SERR_CONFLICT && strstr(err->detail, "refused") == NULL)
        serr_set(err, SERR_CONFLICT, "the key changed: the fill is refused");
    l2m_state_free(&st);
    return rc;
}

static int mg_set(l2_cache *base, const char *ns, const char *key, const void *data, size_t len,
                  const l2_meta *meta, uint64_t ttl_ms, const l2_token *fill_tok,
                  l2_token *new_token, uint64_t *write_id, strata_error *err)
{
    l2m *c = (l2m *)base;
    l2_token none = {{0}}, t = fill_tok ? *fill_tok : none;
    if (new_token)
        *new_token = none;
    char chain[L2M_CHAIN_MAX];
    if (l2m_chain(ns, key, chain, err) != 0)
        return -1;
    if ((c->cfg.max_bytes && len > c->cfg.max_bytes) || len > L2_MONGO_VALUE_MAX)
        return serr_set(err, SERR_TOO_LARGE, "value larger than the L2 cache takes");
    if (fill_tok != NULL && !l2_token_usable(&t))
        return serr_set(err, SERR_CONFLICT, "no usable token: the fill is refused");
    uint64_t wid;
    if (l2m_ready(c, err) != 0 || l2m_random(&wid, err) != 0)
        return -1;
    l2m_value v = {.data = data,
                   .len = len,
                   .meta = meta,
                   .x = ttl_ms ? clock_wall_ms() + (int64_t)ttl_ms : 0,
                   .wid = wid};
    uint64_t g = 0, e = 0;
    int rc;
    if (fill_tok != NULL) {
        rc = fill(c, ns, key, chain, &v, &t, err);
    } else {
        change ch = {.value = &v};
        rc = change_always(c, ns, key, chain, &ch, &g, new_token ? &e : NULL, NULL, err);
    }
    if (rc != 0 && (err->kind == SERR_UNAVAILABLE || err->kind == SERR_IO)) {
        /* the insert may have landed: a miss, never a value this call
         * wrote (best effort) */
        l2m_state st;
        strata_error e2;
        if (l2m_newest(c, ns, chain, false, NULL, &st, &e2) == 0 && st.exists &&
            st.w == (int64_t)wid)
            l2m_blank_if(c, ns, key, chain, &st, &e2);
        l2m_state_free(&st);
    }
    if (rc != 0)
        return -1;
    l2m_count(c, ns, L2M_SETS, 1);
    if (write_id)
        *write_id = wid;
    if (new_token)
        *new_token = fill_tok ? t : none;
    if (new_token && !fill_tok)
        make_token(new_token, e, g);
    l2m_account(c, len);
    return 0;
}

static int mg_del(l2_cache *base, const char *ns, const char *key, const l2_fence_id *close_ids,
                  size_t nclose, bool *found, strata_error *err)
{
    l2m *c = (l2m *)base;
    if (found)
        *found = false;
    char chain[L2M_CHAIN_MAX];
    if (l2m_chain(ns, key, chain, err) != 0 || l2m_ready(c, err) != 0)
        return -1;
    change ch = {.close = close_ids, .nclose = nclose};
    uint64_t g;
    bool live = false;
    if (change_always(c, ns, key, chain, &ch, &g, NULL, &live, err) != 0)
        return -1;
    if (live)
        l2m_count(c, ns, L2M_DELETES, 1);
    if (found)
        *found = live;
    return 0;
}

static int mg_fence_open(l2_cache *base, const char *ns, const char *key, uint64_t hold_ms,
                         l2_fence_id *id_out, strata_error *err)
{
    l2m *c = (l2m *)base;
    *id_out = 0;
    char chain[L2M_CHAIN_MAX];
    uint64_t fid;
    if (l2m_chain(ns, key, chain, err) != 0 || l2m_ready(c, err) != 0 || l2m_random(&fid, err) != 0)
        return -1;
    uint64_t hold = hold_ms ? hold_ms : c->cfg.fence_ttl_ms;
    if (hold > INT64_MAX)
        hold = INT64_MAX;
    change ch = {.open_id = fid, .open_hold = hold};
    uint64_t g;
    if (change_always(c, ns, key, chain, &ch, &g, NULL, NULL, err) != 0)
        return -1;
    *id_out = fid;
    return 0;
}

/* ---- the operations as l2_ops, behind the breaker (l2_mongo_ready.c) ----------------- */

static int w_get(l2_cache *b, const char *ns, const char *key, size_t max_len, strata_buf *out,
                 l2_meta *meta, strata_error *err)
{
    return l2m_guard((l2m *)b, mg_get(b, ns, key, max_len, out, meta, err), err);
}

static int w_token(l2_cache *b, const char *ns, const char *key, l2_token *out, strata_error *err)
{
    return l2m_guard((l2m *)b, mg_token(b, ns, key, out, err), err);
}

static int w_set(l2_cache *b, const char *ns, const char *key, const void *data, size_t len,
                 const l2_meta *meta, uint64_t ttl_ms, const l2_token *fill, l2_token *new_token,
                 uint64_t *write_id, strata_error *err)
{
    return l2m_guard(
        (l2m *)b, mg_set(b, ns, key, data, len, meta, ttl_ms, fill, new_token, write_id, err), err);
}

static int w_del(l2_cache *b, const char *ns, const char *key, const l2_fence_id *close_ids,
                 size_t nclose, bool *found, strata_error *err)
{
    return l2m_guard((l2m *)b, mg_del(b, ns, key, close_ids, nclose, found, err), err);
}

static int w_fence_open(l2_cache *b, const char *ns, const char *key, uint64_t hold_ms,
                        l2_fence_id *id, strata_error *err)
{
    return l2m_guard((l2m *)b, mg_fence_open(b, ns, key, hold_ms, id, err), err);
}

static int w_clear(l2_cache *b, const char *ns, const char *pattern, size_t *count,
                   void (*on_key)(void *ctx, const char *key), void *ctx, strata_error *err)
{
    *count = 0;
    if (check_ns(ns, err) != 0)
        return -1;
    return l2m_guard((l2m *)b, l2m_clear(b, ns, pattern, count, on_key, ctx, err), err);
}

static int w_stats(l2_cache *b, const char *ns, l2_stats *out, strata_error *err)
{
    memset(out, 0, sizeof *out);
    if (check_ns(ns, err) != 0)
        return -1;
    return l2m_guard((l2m *)b, l2m_stats(b, ns, out, err), err);
}

static int w_health(l2_cache *b, strata_error *err)
{
    return l2m_health((l2m *)b, err);
}

static void free_handle(l2m *c)
{
    mongo_conn_close(c->conn);
    pthread_cond_destroy(&c->stop_cv);
    pthread_mutex_destroy(&c->stop_mu);
    pthread_mutex_destroy(&c->pass_mu);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->ready_mu);
    pthread_mutex_destroy(&c->down_mu);
    free(c);
}

static void mg_close(l2_cache *base)
{
    l2m *c = (l2m *)base;
    l2m_sweeper_stop(c);
    free_handle(c);
}

static const l2_ops MONGO_OPS = {
    .name = "mongodb",
    .get = w_get,
    .token = w_token,
    .token_seen = NULL,
    .set = w_set,
    .del = w_del,
    .fence_open = w_fence_open,
    .clear = w_clear,
    .stats = w_stats,
    .health = w_health,
    .close = mg_close,
};

l2_cache *l2_mongo_open(const char *url, const l2_config *cfg, strata_error *err)
{
    size_t cap = strlen(url) + 128;
    char *murl = malloc(cap), prefix[L2M_PREFIX_MAX + 1];
    l2m *c = calloc(1, sizeof *c);
    if (murl == NULL || c == NULL) {
        free(murl);
        free(c);
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    c->base.ops = &MONGO_OPS;
    c->cfg = *cfg;
    pthread_mutex_init(&c->ready_mu, NULL);
    pthread_mutex_init(&c->down_mu, NULL);
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->pass_mu, NULL);
    pthread_mutex_init(&c->stop_mu, NULL);
    pthread_cond_init(&c->stop_cv, NULL);
    if (l2m_parse_url(url, murl, cap, prefix, err) != 0 ||
        (c->conn = mongo_conn_open(murl, "strata-l2", err)) == NULL) {
        free(murl);
        free_handle(c);
        return NULL;
    }
    free(murl);
    snprintf(c->keys, sizeof c->keys, "%s_keys", prefix);
    snprintf(c->meta, sizeof c->meta, "%s_meta", prefix);
    snprintf(c->vals, sizeof c->vals, "%s_vals", prefix);
    if (l2m_ready(c, err) != 0) {
        if (err->kind != SERR_UNAVAILABLE && err->kind != SERR_IO && err->kind != SERR_RETRY) {
            free_handle(c);
            return NULL;
        }
        l2m_guard(c, -1, err);
        slog_warn("L2 mongo: %s; the L2 is down until the server answers", err->detail);
    }
    l2m_sweeper_start(c);
    serr_clear(err);
    return &c->base;
}
