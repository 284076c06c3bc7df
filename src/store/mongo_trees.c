/* Corpus trees in MongoDB: edges (_id the child, p the parent, k the
 * child version the parent aggregates) and each master's vocabulary in
 * chunks (see "vocabularies" below). */
#include "mongo_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- edges ------------------------------------------------------------------------ */

int mg_tree_parent(store *base, store_txn *txn, const char *child, char *parent, size_t cap,
                   bool *has_parent, strata_error *err)
{
    (void)txn;
    mg m;
    mg_begin(&m, (mongo_store *)base);
    bson_t *f = BCON_NEW("_id", BCON_UTF8(child));
    bson_t d;
    *has_parent = false;
    int rc = mg_find_one(&m, MC_EDGES, f, NULL, &d, has_parent, "store: tree parent", err);
    bson_destroy(f);
    mg_end(&m);
    if (rc == 0 && *has_parent) {
        bs_str(&d, "p", parent, cap);
        bson_destroy(&d);
    }
    return rc;
}

typedef struct child_list {
    tree_child *items;
    size_t n, cap;
    bool nomem;
} child_list;

static int child_row(const bson_t *d, void *arg)
{
    child_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        tree_child *nc = realloc(l->items, cap * sizeof *nc);
        if (nc == NULL) {
            l->nomem = true;
            return 1;
        }
        l->items = nc;
        l->cap = cap;
    }
    bs_str(d, "_id", l->items[l->n].id, sizeof l->items[l->n].id);
    l->items[l->n].vkey = (uint64_t)bs_i64(d, "k");
    l->n++;
    return 0;
}

int mg_tree_children(store *base, store_txn *txn, const char *parent, tree_child **out, size_t *n,
                     strata_error *err)
{
    (void)txn;
    child_list l = {0};
    mg m;
    mg_begin(&m, (mongo_store *)base);
    bson_t *f = BCON_NEW("p", BCON_UTF8(parent));
    bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}");
    int rc = mg_each(&m, MC_EDGES, f, opts, child_row, &l, NULL, "store: tree children", err);
    bson_destroy(f);
    bson_destroy(opts);
    mg_end(&m);
    if (rc == 0 && l.nomem)
        rc = serr_set(err, SERR_NOMEM, "out of memory");
    if (rc != 0) {
        free(l.items);
        *out = NULL;
        *n = 0;
        return -1;
    }
    *out = l.items;
    *n = l.n;
    return 0;
}

int mg_tree_link(store *base, store_txn *txn, const char *parent, const char *child,
                 uint64_t child_vkey, strata_error *err)
{
    (void)txn;
    mg m;
    mg_begin(&m, (mongo_store *)base);
    bson_t *f = BCON_NEW("_id", BCON_UTF8(child));
    bson_t *u =
        BCON_NEW("$set", "{", "p", BCON_UTF8(parent), "k", BCON_INT64((int64_t)child_vkey), "}");
    int rc = mg_update(&m, MC_EDGES, f, u, true, NULL, "store: tree link", err);
    if (rc != 0 && err->kind == SERR_CONFLICT) /* two upserts of a new child met */
        rc = mg_update(&m, MC_EDGES, f, u, true, NULL, "store: tree link", err);
    bson_destroy(f);
    bson_destroy(u);
    mg_end(&m);
    return rc;
}

int mg_tree_unlink(store *base, store_txn *txn, const char *parent, const char *child,
                   strata_error *err)
{
    (void)txn;
    mg m;
    mg_begin(&m, (mongo_store *)base);
    bson_t *f = BCON_NEW("_id", BCON_UTF8(child), "p", BCON_UTF8(parent));
    int64_t deleted = 0;
    int rc = mg_delete(&m, MC_EDGES, f, false, &deleted, "store: tree unlink", err);
    bson_destroy(f);
    mg_end(&m);
    if (rc == 0 && deleted == 0)
        rc = serr_set(err, SERR_NOT_FOUND, "%s is not a child of %s", child, parent);
    return rc;
}

typedef struct edge_walk {
    int (*fn)(void *ctx, const char *parent, const char *child, uint64_t vkey);
    void *ctx;
} edge_walk;

static int edge_row(const bson_t *d, void *arg)
{
    edge_walk *w = arg;
    char parent[STORE_ID_MAX + 1], child[STORE_ID_MAX + 1];
    bs_str(d, "p", parent, sizeof parent);
    bs_str(d, "_id", child, sizeof child);
    return w->fn(w->ctx, parent, child, (uint64_t)bs_i64(d, "k"));
}

int mg_tree_edges(store *base,
                  int (*fn)(void *ctx, const char *parent, const char *child, uint64_t vkey),
                  void *ctx, strata_error *err)
{
    mg m;
    mg_begin(&m, (mongo_store *)base);
    edge_walk w = {fn, ctx};
    bson_t f = BSON_INITIALIZER;
    int rc = mg_each(&m, MC_EDGES, &f, NULL, edge_row, &w, NULL, "store: tree edges", err);
    bson_destroy(&f);
    mg_end(&m);
    return rc;
}

/* ---- vocabularies ------------------------------------------------------------------- */

/* A master's vocabulary is its sorted words cut into chunks: one document
 * per chunk in store_vocab, _id "<master>\x1f<key>", m, k (the key: the
 * chunk holds the words >= k and below the next chunk's key; the first
 * chunk's key is ""), and parallel arrays w (sorted bytewise), c
 * (children containing the word), f (summed frequency). The master's
 * document in store_vocab_sizes (_id the master) is the directory: n (the
 * word count) and ks (the chunk keys, sorted). A chunk document whose key
 * the directory does not list (a crash between writes) is never read.
 *
 * Why chunks: FerretDB v1.24 uses no index for a find, update or delete
 * (an equality on one field is pushed down to PostgreSQL as a scan of the
 * table; $in and ranges are not pushed down at all) and decodes each
 * document it returns at ~0.1 ms, so a document per word costs a scan of
 * the whole collection per word looked up or changed. Here an apply reads
 * the directory, then only the chunks its words fall in (by _id when they
 * are few, else in one find of the master's chunks), and rewrites those
 * whole: its cost follows the child's words and the chunks they touch,
 * never the other masters. Single writer per master (the service's tree
 * lease): the writes are read-modify-write of whole documents. */

#define VC_WORDS 4000          /* words in a chunk at most */
#define VC_BYTES (512u * 1024) /* bytes of a chunk's words at most */
#define VC_FEW   4             /* touched chunks read one by one up to this */

typedef struct vchunk {
    char **w; /* owned */
    int64_t *c, *f;
    size_t n;
    bool loaded, touched;
} vchunk;

static void vchunk_free(vchunk *ch)
{
    for (size_t i = 0; i < ch->n; i++)
        free(ch->w[i]);
    free(ch->w);
    free(ch->c);
    free(ch->f);
    memset(ch, 0, sizeof *ch);
}

typedef struct vdir {
    char **ks; /* owned, sorted; ks[0] is "" when n > 0 */
    size_t n;
    int64_t size;
} vdir;

static void vdir_free(vdir *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->ks[i]);
    free(d->ks);
    memset(d, 0, sizeof *d);
}

static char *chunk_id(const char *master, const char *key)
{
    size_t a = strlen(master), b = strlen(key);
    char *id = malloc(a + b + 2);
    if (id != NULL) {
        memcpy(id, master, a);
        id[a] = '\x1f';
        memcpy(id + a + 1, key, b + 1);
    }
    return id;
}

static size_t array_len(const bson_t *d, const char *key)
{
    bson_iter_t it, ch;
    size_t n = 0;
    if (bson_iter_init_find(&it, d, key) && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &ch))
        while (bson_iter_next(&ch))
            n++;
    return n;
}

/* Fills the int64s of array key (missing or mistyped elements read 0). */
static void array_i64(const bson_t *d, const char *key, int64_t *out, size_t n)
{
    bson_iter_t it, ch;
    size_t i = 0;
    if (bson_iter_init_find(&it, d, key) && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &ch))
        while (i < n && bson_iter_next(&ch)) {
            out[i++] = BSON_ITER_HOLDS_INT64(&ch)   ? bson_iter_int64(&ch)
                       : BSON_ITER_HOLDS_INT32(&ch) ? bson_iter_int32(&ch)
                                                    : 0;
        }
}

/* Reads a chunk document into ch (empty before); -1 only for memory. */
static int chunk_parse(const bson_t *d, vchunk *ch)
{
    size_t n = array_len(d, "w");
    ch->loaded = true;
    if (n == 0)
        return 0;
    ch->w = calloc(n, sizeof *ch->w);
    ch->c = calloc(n, sizeof *ch->c);
    ch->f = calloc(n, sizeof *ch->f);
    if (!ch->w || !ch->c || !ch->f)
        return -1;
    bson_iter_t it, el;
    if (bson_iter_init_find(&it, d, "w") && bson_iter_recurse(&it, &el))
        while (ch->n < n && bson_iter_next(&el)) {
            uint32_t len = 0;
            const char *s = BSON_ITER_HOLDS_UTF8(&el) ? bson_iter_utf8(&el, &len) : "";
            if ((ch->w[ch->n] = strndup(s, len)) == NULL)
                return -1;
            ch->n++;
        }
    array_i64(d, "c", ch->c, ch->n);
    array_i64(d, "f", ch->f, ch->n);
    return 0;
}

/* The master's directory; an empty one (n 0) when it has no vocabulary. */
static int read_dir(mg *m, const char *master, vdir *dir, strata_error *err)
{
    memset(dir, 0, sizeof *dir);
    bson_t *f = BCON_NEW("_id", BCON_UTF8(master));
    bson_t d;
    bool found = false;
    int rc = mg_find_one(m, MC_VSIZE, f, NULL, &d, &found, "store: vocabulary", err);
    bson_destroy(f);
    if (rc != 0 || !found)
        return rc;
    dir->size = bs_i64(&d, "n");
    size_t n = array_len(&d, "ks");
    dir->ks = calloc(n ? n : 1, sizeof *dir->ks);
    bson_iter_t it, el;
    if (dir->ks == NULL)
        rc = serr_set(err, SERR_NOMEM, "out of memory");
    else if (bson_iter_init_find(&it, &d, "ks") && bson_iter_recurse(&it, &el))
        while (rc == 0 && dir->n < n && bson_iter_next(&el)) {
            uint32_t len = 0;
            const char *s = BSON_ITER_HOLDS_UTF8(&el) ? bson_iter_utf8(&el, &len) : "";
            if ((dir->ks[dir->n] = strndup(s, len)) == NULL)
                rc = serr_set(err, SERR_NOMEM, "out of memory");
            else
                dir->n++;
        }
    bson_destroy(&d);
    if (rc == 0 && dir->n > 0 && dir->ks[0][0] != '\0')
        rc = serr_set(err, SERR_IO, "store: the vocabulary directory of %s is damaged", master);
    if (rc != 0)
        vdir_free(dir);
    return rc;
}

/* The chunk holding word: the last key <= word (dir->n > 0). */
static size_t dir_find(const vdir *dir, const char *word)
{
    size_t lo = 1, hi = dir->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (strcmp(dir->ks[mid], word) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo - 1;
}

static int load_one(mg *m, const char *master, const char *key, vchunk *ch, strata_error *err)
{
    char *id = chunk_id(master, key);
    if (id == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    bson_t *f = BCON_NEW("_id", BCON_UTF8(id));
    free(id);
    bson_t d;
    bool found = false;
    int rc = mg_find_one(m, MC_VOCAB, f, NULL, &d, &found, "store: vocabulary", err);
    bson_destroy(f);
    ch->loaded = true; /* a listed chunk that is missing reads as empty */
    if (rc == 0 && found) {
        if (chunk_parse(&d, ch) != 0)
            rc = serr_set(err, SERR_NOMEM, "out of memory");
        bson_destroy(&d);
    }
    return rc;
}

typedef struct load_all {
    const vdir *dir;
    vchunk *ch;
    bool nomem;
} load_all;

static int load_row(const bson_t *d, void *arg)
{
    load_all *l = arg;
    bson_iter_t it;
    if (!bson_iter_init_find(&it, d, "k") || !BSON_ITER_HOLDS_UTF8(&it))
        return 0;
    const char *k = bson_iter_utf8(&it, NULL);
    size_t i = dir_find(l->dir, k);
    if (strcmp(l->dir->ks[i], k) != 0 || !l->ch[i].touched || l->ch[i].loaded)
        return 0;
    if (chunk_parse(d, &l->ch[i]) != 0) {
        l->nomem = true;
        return 1;
    }
    return 0;
}

/* Loads the touched chunks: by _id when few, else with one find. */
static int load_touched(mg *m, const char *master, const vdir *dir, vchunk *ch, size_t ntouched,
                        strata_error *err)
{
    if (ntouched > VC_FEW) {
        load_all l = {dir, ch, false};
        bson_t *f = BCON_NEW("m", BCON_UTF8(master));
        int rc = mg_each(m, MC_VOCAB, f, NULL, load_row, &l, NULL, "store: vocabulary", err);
        bson_destroy(f);
        if (rc == 0 && l.nomem)
            rc = serr_set(err, SERR_NOMEM, "out of memory");
        if (rc != 0)
            return rc;
    }
    for (size_t i = 0; i < dir->n; i++)
        if (ch[i].touched && !ch[i].loaded && load_one(m, master, dir->ks[i], &ch[i], err) != 0)
            return -1;
    return 0;
}

typedef struct word_ref {
    const char *word;
    size_t idx;
} word_ref;

static int cmp_word(const void *a, const void *b)
{
    const word_ref *x = a, *y = b;
    int c = strcmp(x->word, y->word);
    return c ? c : (x->idx < y->idx ? -1 : x->idx > y->idx);
}

/* A bulk write flushed every MG_BULK_MAX statements (FerretDB v1 holds a
 * connection per statement until the command ends, and a command of more
 * than its pool size never ends). */
typedef struct vbulk {
    mg *m;
    int coll;
    mongoc_bulk_operation_t *b;
    size_t n;
} vbulk;

static int vbulk_flush(vbulk *v, strata_error *err)
{
    if (v->b == NULL || v->n == 0)
        return 0;
    bson_t reply;
    bson_error_t be;
    int rc = 0;
    if (mongoc_bulk_operation_execute(v->b, &reply, &be) == 0)
        rc = mongo_conn_error(&be, "store: vocabulary", err);
    bson_destroy(&reply);
    mongoc_bulk_operation_destroy(v->b);
    v->b = NULL;
    v->n = 0;
    return rc;
}

/* kind 'p' replaces (upserts) the document with _id of doc, 'r' removes sel. */
static int vbulk_add(vbulk *v, char kind, const bson_t *sel, const bson_t *doc, strata_error *err)
{
    if (v->b == NULL) {
        bson_t *bopts = BCON_NEW("ordered", BCON_BOOL(false));
        v->b = mongoc_collection_create_bulk_operation_with_opts(mg_coll(v->m, v->coll), bopts);
        bson_destroy(bopts);
    }
    bson_error_t be;
    bson_t *upsert = BCON_NEW("upsert", BCON_BOOL(true));
    bool ok = kind == 'p' ? mongoc_bulk_operation_replace_one_with_opts(v->b, sel, doc, upsert, &be)
                          : mongoc_bulk_operation_remove_one_with_opts(v->b, sel, NULL, &be);
    bson_destroy(upsert);
    if (!ok)
        return mongo_conn_error(&be, "store: vocabulary", err);
    if (++v->n >= MG_BULK_MAX)
        return vbulk_flush(v, err);
    return 0;
}

/* A touched chunk's words after the change (pointers borrowed from the
 * chunk or the deltas). */
typedef struct vout {
    const char **w;
    int64_t *c, *f;
    size_t n;
    bool changed;
} vout;

/* Merges the chunk's words with the runs of refs [j, e) (sorted), word by
 * word in the order given (a word whose count falls to zero leaves, and
 * starts afresh if it comes back, as on SQLite); sets the presences and
 * adds them to *size. */
static int merge_chunk(const vchunk *ch, const word_ref *refs, size_t j, size_t e, vocab_delta *d,
                       vout *o, int64_t *size)
{
    size_t cap = ch->n + (e - j);
    o->w = calloc(cap ? cap : 1, sizeof *o->w);
    o->c = calloc(cap ? cap : 1, sizeof *o->c);
    o->f = calloc(cap ? cap : 1, sizeof *o->f);
    if (!o->w || !o->c || !o->f)
        return -1;
    size_t i = 0;
    while (i < ch->n || j < e) {
        int cmp = i == ch->n ? 1 : j == e ? -1 : strcmp(ch->w[i], refs[j].word);
        if (cmp < 0) { /* a word the deltas leave alone */
            o->w[o->n] = ch->w[i];
            o->c[o->n] = ch->c[i];
            o->f[o->n++] = ch->f[i++];
            continue;
        }
        bool had = cmp == 0;
        int64_t c0 = had ? ch->c[i] : 0, f0 = had ? ch->f[i] : 0, c = c0, f = f0;
        bool row = had;
        const char *word = had ? ch->w[i] : refs[j].word;
        size_t k = j;
        for (; k < e && strcmp(refs[k].word, refs[j].word) == 0; k++) {
            vocab_delta *x = &d[refs[k].idx];
            int64_t before = row ? c : 0;
            int64_t now_c = before + x->count_delta, now_f = (row ? f : 0) + x->freq_delta;
            if (before <= 0 && now_c > 0)
                x->presence = 1;
            if (now_c <= 0) {
                if (before > 0)
                    x->presence = -1;
                row = false;
                c = f = 0;
            } else {
                row = true;
                c = now_c;
                f = now_f;
            }
            *size += x->presence;
        }
        j = k;
        if (had)
            i++;
        if (row) {
            o->w[o->n] = word;
            o->c[o->n] = c;
            o->f[o->n++] = f;
        }
        if (row != had || c != c0 || f != f0)
            o->changed = true;
    }
    return 0;
}

static void vout_free(vout *o)
{
    free(o->w);
    free(o->c);
    free(o->f);
}

/* Writes the chunk of master with key holding words [from, to) of o. */
static int put_chunk(vbulk *b, const char *master, const char *key, const vout *o, size_t from,
                     size_t to, strata_error *err)
{
    char *id = chunk_id(master, key);
    if (id == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    bson_t doc = BSON_INITIALIZER, aw, ac, af;
    BSON_APPEND_UTF8(&doc, "_id", id);
    BSON_APPEND_UTF8(&doc, "m", master);
    BSON_APPEND_UTF8(&doc, "k", key);
    BSON_APPEND_ARRAY_BEGIN(&doc, "w", &aw);
    for (size_t i = from; i < to; i++) {
        char ix[24];
        snprintf(ix, sizeof ix, "%zu", i - from);
        BSON_APPEND_UTF8(&aw, ix, o->w[i]);
    }
    bson_append_array_end(&doc, &aw);
    BSON_APPEND_ARRAY_BEGIN(&doc, "c", &ac);
    for (size_t i = from; i < to; i++) {
        char ix[24];
        snprintf(ix, sizeof ix, "%zu", i - from);
        BSON_APPEND_INT64(&ac, ix, o->c[i]);
    }
    bson_append_array_end(&doc, &ac);
    BSON_APPEND_ARRAY_BEGIN(&doc, "f", &af);
    for (size_t i = from; i < to; i++) {
        char ix[24];
        snprintf(ix, sizeof ix, "%zu", i - from);
        BSON_APPEND_INT64(&af, ix, o->f[i]);
    }
    bson_append_array_end(&doc, &af);
    bson_t *sel = BCON_NEW("_id", BCON_UTF8(id));
    int rc = vbulk_add(b, 'p', sel, &doc, err);
    bson_destroy(sel);
    bson_destroy(&doc);
    free(id);
    return rc;
}

/* New keys of the directory, in order. */
typedef struct keylist {
    const char **k;
    size_t n, cap;
} keylist;

static int keys_add(keylist *l, const char *k)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        const char **nk = realloc(l->k, cap * sizeof *nk);
        if (nk == NULL)
            return -1;
        l->k = nk;
        l->cap = cap;
    }
    l->k[l->n++] = k;
    return 0;
}

/* Writes a touched chunk's new words (split into pieces when over the
 * bounds) and lists their keys; *drop when the chunk leaves. */
static int write_chunk(vbulk *b, const char *master, const char *key, bool first, const vout *o,
                       keylist *keys, bool *drop, strata_error *err)
{
    *drop = false;
    size_t bytes = 0;
    for (size_t i = 0; i < o->n; i++)
        bytes += strlen(o->w[i]) + 1;
    if (o->n == 0 && !first) {
        *drop = true;
        return 0;
    }
    if (o->n <= VC_WORDS && bytes <= VC_BYTES) {
        if (keys_add(keys, key) != 0)
            return serr_set(err, SERR_NOMEM, "out of memory");
        return o->changed ? put_chunk(b, master, key, o, 0, o->n, err) : 0;
    }
    /* pieces of half the bounds, so that the next words fit */
    for (size_t from = 0; from < o->n;) {
        size_t to = from, pb = 0;
        while (to < o->n && to - from < VC_WORDS / 2 &&
               (to == from || pb + strlen(o->w[to]) + 1 <= VC_BYTES / 2))
            pb += strlen(o->w[to++]) + 1;
        const char *k = from == 0 ? key : o->w[from];
        if (keys_add(keys, k) != 0)
            return serr_set(err, SERR_NOMEM, "out of memory");
        if (put_chunk(b, master, k, o, from, to, err) != 0)
            return -1;
        from = to;
    }
    return 0;
}

static int write_dir(mg *m, const char *master, int64_t size, const keylist *keys,
                     strata_error *err)
{
    bson_t doc = BSON_INITIALIZER, ak;
    BSON_APPEND_UTF8(&doc, "_id", master);
    BSON_APPEND_INT64(&doc, "n", size);
    BSON_APPEND_ARRAY_BEGIN(&doc, "ks", &ak);
    for (size_t i = 0; i < keys->n; i++) {
        char ix[24];
        snprintf(ix, sizeof ix, "%zu", i);
        BSON_APPEND_UTF8(&ak, ix, keys->k[i]);
    }
    bson_append_array_end(&doc, &ak);
    vbulk b = {m, MC_VSIZE, NULL, 0};
    bson_t *sel = BCON_NEW("_id", BCON_UTF8(master));
    int rc = vbulk_add(&b, 'p', sel, &doc, err);
    if (rc == 0)
        rc = vbulk_flush(&b, err);
    mongoc_bulk_operation_destroy(b.b);
    bson_destroy(sel);
    bson_destroy(&doc);
    return rc;
}

/* Reads the directory and the chunks the words fall in, merges the
 * deltas in memory, then writes the changed chunks (split when over the
 * bounds), the directory, and removes the chunks left empty. */
int mg_vocab_apply(store *base, store_txn *txn, const char *master, vocab_delta *d, size_t n,
                   int64_t *size_delta, strata_error *err)
{
    (void)txn;
    if (size_delta)
        *size_delta = 0;
    word_ref *refs = calloc(n ? n : 1, sizeof *refs);
    if (refs == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    size_t nr = 0;
    for (size_t i = 0; i < n; i++) {
        d[i].presence = 0;
        if (d[i].count_delta == 0 && d[i].freq_delta == 0)
            continue;
        refs[nr].word = d[i].word;
        refs[nr].idx = i;
        nr++;
    }
    if (nr == 0) {
        free(refs);
        return 0;
    }
    qsort(refs, nr, sizeof *refs, cmp_word);
    mg m;
    mg_begin(&m, (mongo_store *)base);
    vdir dir;
    vchunk *ch = NULL;
    vout *outs = NULL;
    keylist keys = {0};
    int64_t size = 0;
    int rc = read_dir(&m, master, &dir, err);
    if (rc == 0 && dir.n == 0) { /* a new vocabulary: one chunk, key "" */
        dir.ks = calloc(1, sizeof *dir.ks);
        if (dir.ks == NULL || (dir.ks[0] = strdup("")) == NULL)
            rc = serr_set(err, SERR_NOMEM, "out of memory");
        else
            dir.n = 1;
    }
    if (rc == 0) {
        ch = calloc(dir.n, sizeof *ch);
        outs = calloc(dir.n, sizeof *outs);
        if (ch == NULL || outs == NULL)
            rc = serr_set(err, SERR_NOMEM, "out of memory");
    }
    size_t ntouched = 0;
    for (size_t j = 0; rc == 0 && j < nr; j++) {
        size_t i = dir_find(&dir, refs[j].word);
        if (!ch[i].touched)
            ntouched++;
        ch[i].touched = true;
    }
    if (rc == 0)
        rc = load_touched(&m, master, &dir, ch, ntouched, err);
    bool changed = false;
    for (size_t j = 0, i = 0; rc == 0 && i < dir.n; i++) {
        if (!ch[i].touched)
            continue;
        size_t e = j;
        while (e < nr && dir_find(&dir, refs[e].word) == i)
            e++;
        if (merge_chunk(&ch[i], refs, j, e, d, &outs[i], &size) != 0)
            rc = serr_set(err, SERR_NOMEM, "out of memory");
        changed = changed || outs[i].changed;
        j = e;
    }
    vbulk b = {&m, MC_VOCAB, NULL, 0};
    for (size_t i = 0; rc == 0 && changed && i < dir.n; i++) {
        bool drop = false;
        if (!ch[i].touched)
            rc = keys_add(&keys, dir.ks[i]) == 0 ? 0 : serr_set(err, SERR_NOMEM, "out of memory");
        else
            rc = write_chunk(&b, master, dir.ks[i], i == 0, &outs[i], &keys, &drop, err);
        ch[i].touched = drop; /* from here: the chunks to remove */
    }
    if (rc == 0)
        rc = vbulk_flush(&b, err);
    if (rc == 0 && changed)
        rc = write_dir(&m, master, dir.size + size, &keys, err);
    for (size_t i = 0; rc == 0 && changed && i < dir.n; i++) {
        if (!ch[i].touched)
            continue;
        char *id = chunk_id(master, dir.ks[i]);
        if (id == NULL) {
            rc = serr_set(err, SERR_NOMEM, "out of memory");
            break;
        }
        bson_t *sel = BCON_NEW("_id", BCON_UTF8(id));
        free(id);
        rc = vbulk_add(&b, 'r', sel, NULL, err);
        bson_destroy(sel);
    }
    if (rc == 0)
        rc = vbulk_flush(&b, err);
    mongoc_bulk_operation_destroy(b.b);
    mg_end(&m);
    for (size_t i = 0; ch != NULL && i < dir.n; i++) {
        vchunk_free(&ch[i]);
        vout_free(&outs[i]);
    }
    free(ch);
    free(outs);
    free(keys.k);
    vdir_free(&dir);
    free(refs);
    if (rc == 0 && size_delta)
        *size_delta = size;
    return rc;
}

int mg_vocab_clear(store *base, store_txn *txn, const char *master, strata_error *err)
{
    (void)txn;
    mg m;
    mg_begin(&m, (mongo_store *)base);
    bson_t *f = BCON_NEW("m", BCON_UTF8(master));
    int rc = mg_delete(&m, MC_VOCAB, f, true, NULL, "store: clear vocabulary", err);
    bson_destroy(f);
    f = BCON_NEW("_id", BCON_UTF8(master));
    if (rc == 0)
        rc = mg_delete(&m, MC_VSIZE, f, false, NULL, "store: clear vocabulary", err);
    bson_destroy(f);
    mg_end(&m);
    return rc;
}

/* Reads the chunks from the one holding `after` on, by _id, until the
 * page is full. */
int mg_vocab_page(store *base, store_txn *txn, const char *master, const char *after, size_t limit,
                  vocab_item **out, size_t *n, strata_error *err)
{
    (void)txn;
    *n = 0;
    *out = NULL;
    if (after == NULL)
        after = "";
    vocab_item *items = calloc(limit ? limit : 1, sizeof *items);
    if (items == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    size_t got = 0;
    mg m;
    mg_begin(&m, (mongo_store *)base);
    vdir dir;
    int rc = limit > 0 ? read_dir(&m, master, &dir, err) : 0;
    if (limit == 0)
        memset(&dir, 0, sizeof dir);
    for (size_t i = dir.n ? dir_find(&dir, after) : 0; rc == 0 && i < dir.n && got < limit; i++) {
        vchunk ch = {0};
        rc = load_one(&m, master, dir.ks[i], &ch, err);
        for (size_t k = 0; rc == 0 && k < ch.n && got < limit; k++) {
            if (strcmp(ch.w[k], after) <= 0)
                continue;
            items[got].word = ch.w[k];
            ch.w[k] = NULL; /* moved */
            items[got].children = ch.c[k];
            items[got].frequency = ch.f[k];
            got++;
        }
        vchunk_free(&ch);
    }
    vdir_free(&dir);
    mg_end(&m);
    if (rc != 0) {
        vocab_items_free(items, got);
        return -1;
    }
    *out = items;
    *n = got;
    return 0;
}

int mg_vocab_size(store *base, store_txn *txn, const char *master, uint64_t *n, strata_error *err)
{
    (void)txn;
    *n = 0;
    mg m;
    mg_begin(&m, (mongo_store *)base);
    vdir dir;
    int rc = read_dir(&m, master, &dir, err);
    mg_end(&m);
    if (rc == 0) {
        *n = dir.size > 0 ? (uint64_t)dir.size : 0;
        vdir_free(&dir);
    }
    return rc;
}
