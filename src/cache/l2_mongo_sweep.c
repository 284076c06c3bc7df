/* The MongoDB L2's namespace-wide work (l2_mongo.h): clear, stats, the
 * eviction pass that keeps the values under max_bytes, and the sweeper.
 * Every change of a key here is a move of its chain like any other
 * (l2_mongo.c): an insert that exactly one writer wins. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/clock.h"
#include "../common/glob.h"
#include "../common/log.h"
#include "l2_mongo_int.h"

#define CLEAR_BATCH    100
#define SWEEP_EVERY_MS 30000
#define SWEEP_LIMIT    256
#define EPOCH_TRIES    4
#define PASS_BACKOFF   5000             /* no inline pass this long after one failed */
#define EST_UNKNOWN    (UINT64_MAX / 4) /* before the first pass: past any budget */

/* ---- clear ----------------------------------------------------------------------------- */

typedef struct clear_item {
    char key[L2_KEY_MAX + 1];
} clear_item;

/* Blanks each of items[0..n) with a new generation (an unconditional
 * change: it retries on whatever state is newest), counting and reporting
 * the live values that went. */
static int clear_flush(l2m *c, const char *ns, clear_item *items, size_t n, size_t *count,
                       void (*on_key)(void *, const char *), void *ctx, strata_error *err)
{
    for (size_t i = 0; i < n; i++) {
        bool live = false;
        if (l2m_blank_always(c, ns, items[i].key, &live, err) != 0)
            return -1;
        if (live) {
            (*count)++;
            if (on_key)
                on_key(ctx, items[i].key);
        }
    }
    return 0;
}

/* "^" and the literal prefix of pattern, its ASCII punctuation escaped. */
static void prefix_regex(const char *pattern, char *out, size_t cap)
{
    size_t lit = glob_literal_prefix(pattern), at = 0;
    out[at++] = '^';
    for (size_t i = 0; i < lit && at + 3 < cap; i++) {
        unsigned char ch = (unsigned char)pattern[i];
        if (ch < 0x80 && ispunct(ch))
            out[at++] = '\\';
        out[at++] = (char)ch;
    }
    out[at] = '\0';
}

/* A new random epoch for ns (an unconditional replace: any new value
 * moves every token of ns). */
static int new_epoch(l2m *c, const char *ns, strata_error *err)
{
    uint64_t e;
    if (l2m_random(&e, err) != 0)
        return -1;
    char id[L2M_ID_MAX];
    snprintf(id, sizeof id, "e:%s", ns);
    l2m_coll k = l2m_take(c, c->keys);
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(id));
    bson_t *update = BCON_NEW("$set", "{", "e", BCON_INT64((int64_t)e), "}");
    bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
    bson_error_t be;
    bool ok = false;
    for (int attempt = 0; attempt < EPOCH_TRIES && !ok; attempt++) {
        ok = mongoc_collection_update_one(k.co, filter, update, opts, NULL, &be);
        /* a racing upsert made the document (FerretDB reports it without
         * code 11000): again, as an update */
        if (!ok && !mongo_conn_is_duplicate(&be) && strstr(be.message, "duplicate") == NULL)
            break;
    }
    bson_destroy(opts);
    bson_destroy(update);
    bson_destroy(filter);
    l2m_put(c, &k);
    if (!ok)
        return mongo_conn_error(&be, "MongoDB L2: clear", err);
    return 0;
}

int l2m_clear(l2_cache *base, const char *ns, const char *pattern, size_t *count,
              void (*on_key)(void *ctx, const char *key), void *ctx, strata_error *err)
{
    l2m *c = (l2m *)base;
    *count = 0;
    /* first every token of the namespace moves (a fill that checked the
     * old epoch lands before the blanks below, or loses its insert) */
    if (l2m_ready(c, err) != 0 || new_epoch(c, ns, err) != 0)
        return -1;
    /* then every matching key with a chain (its pointer is made before
     * its first state) moves to a blank of a new generation */
    char re[2 * L2_KEY_MAX + 2];
    prefix_regex(pattern, re, sizeof re);
    bson_t *filter = BCON_NEW("n", BCON_UTF8(ns), "h", "{", "$exists", BCON_BOOL(true), "}");
    if (re[1] != '\0')
        BCON_APPEND(filter, "k", "{", "$regex", BCON_UTF8(re), "}");
    bson_t *fopts = BCON_NEW("projection", "{", "k", BCON_INT32(1), "}");
    clear_item *items = malloc(CLEAR_BATCH * sizeof *items);
    if (items == NULL) {
        bson_destroy(fopts);
        bson_destroy(filter);
        return serr_set(err, SERR_NOMEM, "out of memory");
    }
    l2m_coll k = l2m_take(c, c->keys);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(k.co, filter, fopts, NULL);
    size_t n = 0, removed = 0;
    int rc = 0;
    const bson_t *doc;
    bson_error_t be;
    while (rc == 0 && mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        const char *key = NULL;
        if (bson_iter_init_find(&it, doc, "k") && BSON_ITER_HOLDS_UTF8(&it))
            key = bson_iter_utf8(&it, NULL);
        if (key == NULL || key[0] == '\0' || strlen(key) > L2_KEY_MAX || !glob_match(pattern, key))
            continue;
        snprintf(items[n++].key, sizeof items->key, "%s", key);
        if (n == CLEAR_BATCH) {
            rc = clear_flush(c, ns, items, n, &removed, on_key, ctx, err);
            n = 0;
        }
    }
    if (rc == 0 && mongoc_cursor_error(cur, &be))
        rc = mongo_conn_error(&be, "MongoDB L2: clear", err);
    mongoc_cursor_destroy(cur);
    l2m_put(c, &k);
    if (rc == 0 && n > 0)
        rc = clear_flush(c, ns, items, n, &removed, on_key, ctx, err);
    free(items);
    bson_destroy(fopts);
    bson_destroy(filter);
    if (rc == 0) {
        *count = removed;
        l2m_count(c, ns, L2M_DELETES, removed);
    }
    return rc;
}

/* ---- stats ----------------------------------------------------------------------------- */

int l2m_stats(l2_cache *base, const char *ns, l2_stats *out, strata_error *err)
{
    l2m *c = (l2m *)base;
    if (l2m_ready(c, err) != 0)
        return -1;
    l2m_counters_read(c, ns, out);
    /* the states that hold values: the newest of their chains (the one
     * below is shrunk by the writer that moved past it) */
    bson_t *filter = BCON_NEW("n", BCON_UTF8(ns), "s", "{", "$gte", BCON_INT64(0), "}");
    bson_t *opts = BCON_NEW("projection", "{", "_id", BCON_INT32(0), "s", BCON_INT32(1), "x",
                            BCON_INT32(1), "}");
    l2m_coll k = l2m_take(c, c->keys);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(k.co, filter, opts, NULL);
    const bson_t *doc;
    while (mongoc_cursor_next(cur, &doc))
        if (l2m_live(doc)) {
            out->items++;
            out->bytes += (uint64_t)l2m_i64(doc, "s", 0);
        }
    bson_error_t be;
    int rc = 0;
    if (mongoc_cursor_error(cur, &be))
        rc = mongo_conn_error(&be, "MongoDB L2: stats", err);
    mongoc_cursor_destroy(cur);
    l2m_put(c, &k);
    bson_destroy(opts);
    bson_destroy(filter);
    return rc;
}

/* ---- the byte budget ------------------------------------------------------------------- */

/* Namespace and key of a document (a pointer or a state) a cursor
 * showed. */
static bool doc_key(const bson_t *doc, const char **ns, const char **key)
{
    bson_iter_t it;
    *ns = *key = NULL;
    if (bson_iter_init_find(&it, doc, "n") && BSON_ITER_HOLDS_UTF8(&it))
        *ns = bson_iter_utf8(&it, NULL);
    if (bson_iter_init_find(&it, doc, "k") && BSON_ITER_HOLDS_UTF8(&it))
        *key = bson_iter_utf8(&it, NULL);
    return *ns != NULL && *key != NULL && (*ns)[0] != '\0' && strlen(*ns) <= L2_NS_MAX &&
           (*key)[0] != '\0' && strlen(*key) <= L2_KEY_MAX;
}

/* Blanks the newest state of (ns, key) if it holds a value (keeping its
 * generation): its size into *bytes and whether it had expired into
 * *expired when it did. 0 blanked, 1 nothing to do, -1 failure. */
static int blank_newest(l2m *c, const char *ns, const char *key, uint64_t only_q, uint64_t *bytes,
                        bool *expired, strata_error *err)
{
    char chain[L2M_CHAIN_MAX];
    if (l2m_chain(ns, key, chain, err) != 0)
        return 1;
    l2m_state st;
    if (l2m_newest(c, ns, chain, false, NULL, &st, err) != 0)
        return -1;
    int rc = 1;
    if (st.exists && st.g != 0 && st.s >= 0 && (only_q == 0 || st.q == only_q)) {
        *bytes = (uint64_t)st.s;
        *expired = st.doc == NULL || !l2m_live(st.doc);
        rc = l2m_blank_if(c, ns, key, chain, &st, err);
    }
    l2m_state_free(&st);
    return rc;
}

/* The eviction pass (l2_mongo.h); the caller holds pass_mu. */
static int evict_pass(l2m *c, strata_error *err)
{
    bson_t *filter = BCON_NEW("s", "{", "$gte", BCON_INT64(0), "}");
    bson_t *opts = BCON_NEW("projection", "{", "_id", BCON_INT32(0), "s", BCON_INT32(1), "}");
    l2m_coll k = l2m_take(c, c->keys);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(k.co, filter, opts, NULL);
    const bson_t *doc;
    uint64_t total = 0;
    while (mongoc_cursor_next(cur, &doc))
        total += (uint64_t)l2m_i64(doc, "s", 0);
    bson_error_t be;
    int rc = 0;
    if (mongoc_cursor_error(cur, &be))
        rc = mongo_conn_error(&be, "MongoDB L2: eviction", err);
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    bson_destroy(filter);
    if (rc == 0 && c->cfg.max_bytes != 0 && total > c->cfg.max_bytes) {
        /* the least recently used keys first (their pointers' a), until
         * 90% of the budget */
        uint64_t target = c->cfg.max_bytes / 10 * 9;
        filter = BCON_NEW("h", "{", "$exists", BCON_BOOL(true), "}");
        opts = BCON_NEW("projection", "{", "n", BCON_INT32(1), "k", BCON_INT32(1), "}", "sort", "{",
                        "a", BCON_INT32(1), "}");
        cur = mongoc_collection_find_with_opts(k.co, filter, opts, NULL);
        while (total > target && mongoc_cursor_next(cur, &doc)) {
            const char *ns, *key;
            if (!doc_key(doc, &ns, &key))
                continue;
            uint64_t bytes = 0;
            bool expired = false;
            strata_error e2;
            int b = blank_newest(c, ns, key, 0, &bytes, &expired, &e2);
            if (b < 0) {
                rc = -1;
                *err = e2;
                break;
            }
            if (b == 0) {
                total -= bytes < total ? bytes : total;
                l2m_count(c, ns, expired ? L2M_EXPIRATIONS : L2M_EVICTIONS, 1);
            }
        }
        if (rc == 0 && mongoc_cursor_error(cur, &be))
            rc = mongo_conn_error(&be, "MongoDB L2: eviction", err);
        mongoc_cursor_destroy(cur);
        bson_destroy(opts);
        bson_destroy(filter);
    }
    l2m_put(c, &k);
    if (rc == 0)
        atomic_store(&c->est_bytes, total);
    return rc;
}

void l2m_account(l2m *c, uint64_t bytes)
{
    uint64_t est = atomic_fetch_add(&c->est_bytes, bytes) + bytes;
    if (c->cfg.max_bytes == 0 || est <= c->cfg.max_bytes ||
        clock_mono_ms() < atomic_load(&c->pass_after))
        return;
    if (pthread_mutex_trylock(&c->pass_mu) != 0)
        return; /* a pass is running */
    strata_error err;
    if (evict_pass(c, &err) != 0) {
        atomic_store(&c->pass_after, clock_mono_ms() + PASS_BACKOFF);
        slog_warn("L2 mongo: eviction pass: %s", err.detail);
    }
    pthread_mutex_unlock(&c->pass_mu);
}

/* ---- the sweeper ----------------------------------------------------------------------- */

/* Up to SWEEP_LIMIT expired values blanked; a state found holding a
 * value below the newest (its writer died before shrinking it) shrunk. */
static void sweep_expired(l2m *c)
{
    bson_t *filter = BCON_NEW("s", "{", "$gte", BCON_INT64(0), "}", "x", "{", "$gt", BCON_INT64(0),
                              "$lte", BCON_INT64(clock_wall_ms()), "}");
    bson_t *opts = BCON_NEW("limit", BCON_INT64(SWEEP_LIMIT), "projection", "{", "n", BCON_INT32(1),
                            "k", BCON_INT32(1), "}");
    l2m_coll k = l2m_take(c, c->keys);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(k.co, filter, opts, NULL);
    const bson_t *doc;
    while (mongoc_cursor_next(cur, &doc)) {
        const char *ns, *key;
        bson_iter_t it;
        if (!doc_key(doc, &ns, &key) || !bson_iter_init_find(&it, doc, "_id") ||
            !BSON_ITER_HOLDS_UTF8(&it))
            continue;
        const char *id = bson_iter_utf8(&it, NULL);
        char *end;
        uint64_t q = id[0] == 's' ? strtoull(id + 1, &end, 10) : 0;
        if (q == 0)
            continue;
        uint64_t bytes;
        bool expired;
        strata_error err;
        int b = blank_newest(c, ns, key, q, &bytes, &expired, &err);
        if (b == 0)
            l2m_count(c, ns, L2M_EXPIRATIONS, 1);
        else if (b == 1)
            l2m_shrink(c, id); /* not the newest (or gone): a stub */
    }
    mongoc_cursor_destroy(cur);
    l2m_put(c, &k);
    bson_destroy(opts);
    bson_destroy(filter);
}

static void sweep(l2m *c)
{
    strata_error err;
    if (l2m_ready(c, &err) != 0)
        return;
    if (l2m_make_indexes(c, &err) != 0)
        slog_debug("L2 mongo: sweep: %s", err.detail);
    pthread_mutex_lock(&c->pass_mu);
    if (evict_pass(c, &err) != 0)
        slog_debug("L2 mongo: sweep: %s", err.detail);
    sweep_expired(c);
    pthread_mutex_unlock(&c->pass_mu);
}

static void *sweeper_main(void *arg)
{
    l2m *c = arg;
    pthread_mutex_lock(&c->stop_mu);
    while (!c->stop) {
        struct timespec ts = clock_deadline_ms(SWEEP_EVERY_MS);
        pthread_cond_timedwait(&c->stop_cv, &c->stop_mu, &ts);
        if (c->stop)
            break;
        pthread_mutex_unlock(&c->stop_mu);
        sweep(c);
        pthread_mutex_lock(&c->stop_mu);
    }
    pthread_mutex_unlock(&c->stop_mu);
    return NULL;
}

void l2m_sweeper_start(l2m *c)
{
    atomic_store(&c->est_bytes, EST_UNKNOWN);
    if (pthread_create(&c->sweeper, NULL, sweeper_main, c) == 0)
        c->sweeping = true;
}

void l2m_sweeper_stop(l2m *c)
{
    if (!c->sweeping)
        return;
    pthread_mutex_lock(&c->stop_mu);
    c->stop = true;
    pthread_cond_broadcast(&c->stop_cv);
    pthread_mutex_unlock(&c->stop_mu);
    pthread_join(c->sweeper, NULL);
    c->sweeping = false;
}
