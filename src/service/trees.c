/* Corpus trees (see trees.h): attach, detach, a child's new version and
 * reaggregation, each a change to masters' aggregates, edges and versions.
 *
 * Where the store's transactions hold the tree writes too
 * (STORE_CAP_TREE_TXN: SQLite) a change runs in one transact(): all of it
 * or nothing, for every node.
 *
 * Without that (MongoDB/FerretDB: no multi-document transactions, and an
 * update or a $inc is no compare-and-swap there; its transact() may make
 * a batch of version writes atomic, never the vocabulary's $inc, the
 * edges, and the reads they depend on) a change runs under a
 * lease per tree it touches, "tree:<root>", named after the tree's root
 * master (found by walking parents; checked again once the lease is held,
 * since an attach or detach may have moved it, else let go and tried
 * again). A change spanning trees (a corpus or a tree's root attached
 * under another tree, a new master and its children) takes every lease
 * in name order, so that two nodes never wait on each other for long. A
 * busy lease is waited for up to TREE_WAIT_MS (more than a dead holder's
 * lease lives), then the change fails with SERR_RETRY (503). Within the
 * lease one node at a time writes a tree: the single writer per master
 * that the store's vocab_apply (read the counts, then $inc the net
 * change) needs.
 *
 * In doubt. The lease is released only when its tree equals its
 * children: after the change completed, or after a rebuild. A holder
 * that dies (or stops midway and cannot rebuild) leaves it to expire
 * unreleased, and lease_acquire tells the next holder it took the lease
 * over "abandoned"; that holder rebuilds every master of the tree from
 * its children (deepest first: do_reaggregate, or letting go of the
 * children of a master whose creation never saved it) before its own
 * change. The lease itself is the dirty marker: no extra write per
 * change, and no marker that could be cleared by anyone but the holder
 * that made the tree whole again. A change that fails after its first
 * write is never run again from the middle (transact() is stopped from
 * retrying it: its deltas would count twice); its trees are rebuilt
 * before it lets go, and the edges it wrote stand: the aggregates follow
 * the edges. The maintenance sweep takes every root's lease for a moment,
 * so a tree left in doubt is rebuilt even if no change comes to it.
 *
 * Corpus deletes take the same lease (the corpus's tree; delete_guard,
 * installed in the versions service): a delete's checks (the version is
 * not what a master aggregates, the corpus is no master's child) hold
 * only while no change moves the tree's edges. Should a master still
 * record a version that is gone, its rebuild follows the child's latest
 * (or lets a corpus with no version go) rather than stop there for good.
 * Vocabulary deltas are applied in slices of VOCAB_SLICE words, each
 * behind the write guard, so that no single store call outlasts a lease.
 *
 * Fencing. The lease's token grows each time the lease changes hands,
 * and the lease moves by an insert a unique index decides (atomic on
 * FerretDB): at most one holder per token. The token protects the
 * lease's own transitions, and every renewal: a holder renews before a
 * write once TREE_RENEW_MS have passed, learns there that the token moved
 * (another node took the tree) and stops before its next write. It does
 * NOT fence the writes themselves: FerretDB cannot make a $inc, a delete
 * or an upsert conditional on the token atomically, so a write already
 * sent when the lease passed is not refused. That window is bounded by
 * time, not by the token: the expiry is stamped on the store's clock, the
 * holder counts its remaining time on its own monotonic clock from the
 * moment it sent the renewal (so it never overestimates, and no two
 * machines' clocks need agree), and starts no write with less than
 * TREE_WRITE_MARGIN_MS left. A holder paused longer than that margin in
 * the middle of a store call (a stall, a partition within the client's
 * 30 s socket timeout) can land one write after the next holder's
 * rebuild: that tree is then off its children until its next rebuild
 * (POST /corpus/{id}/rebuild, or a holder that dies). Master versions are fenced
 * better: the head moves by compare-and-swap, so a stale holder's
 * save_master loses to the new holder's. */
#include "trees.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/clock.h"
#include "../common/log.h"
#include "../common/node_id.h"
#include "resource_types.h"
#include "vocabulary.h"

#define VOCAB_PAGE   10000
#define CHILDREN_MAX 10000
/* Words per vocab_apply: one call is many store round trips, and the
 * lease is renewed only between calls, so a whole 200,000-word delta in
 * one call could outlast the lease. */
#define VOCAB_SLICE 2000

typedef struct lease_set lease_set;

struct trees_svc {
    versions_svc *vs;
    store *st;
    pthread_mutex_t mu; /* tree changes one at a time; recursive: a save inside may cascade */
    trees_saved_fn saved;
    void *saved_ctx;
    lease_set *cur; /* the leases of the change this node runs (under mu), or NULL */
    uint64_t seq;   /* numbers this node's changes (under mu): each its own lease holder */
};

/* Master versions created by one change, announced after it commits. */
typedef struct saved_list {
    struct {
        char id[STORE_ID_MAX + 1];
        uint64_t vkey;
    } items[TREE_DEPTH_MAX + 2];
    int n;
} saved_list;

/* ---- tree leases (stores without transactions) ------------------------------------ */

#define TREE_LEASE_MS        15000 /* a lease's life, on the store's clock */
#define TREE_RENEW_MS        5000  /* renewed once this much has passed since the last renewal */
#define TREE_WRITE_MARGIN_MS 5000  /* no write starts with less than this left */
#define TREE_WAIT_MS         20000 /* longer than a dead holder's lease lives */
#define TREE_LEASES_MAX      256   /* trees one change may touch (a new master and its children) */
#define TREE_LEASE_TRIES     8     /* roots that moved while their leases were taken */

typedef struct tree_lease {
    char root[STORE_ID_MAX + 1];
    char name[STORE_ID_MAX + 8]; /* "tree:<root>" */
    uint64_t token;
    uint64_t renewed_ms; /* monotonic: when the request that last took or renewed it left */
    bool held;
    bool dirty; /* its tree may be off its children: taken over abandoned, or written to */
} tree_lease;

struct lease_set {
    char holder[NODE_ID_MAX + 32]; /* this change's own: one per change, not per node */
    tree_lease l[TREE_LEASES_MAX];
    size_t n;
    /* names taken dirty that the change could not rebuild (their root
     * moved): kept unreleased, so that whoever takes them next rebuilds */
    char carried[8][STORE_ID_MAX + 8];
    size_t ncarried;
    bool carry_full; /* one more could not be carried: the change must stop */
    /* a body run under the leases as it is, outside any transaction of
     * the trees service (a corpus delete: its own transaction) */
    int (*raw)(void *arg, strata_error *err);
    uint64_t writes; /* write steps of the change itself */
    bool rebuilding; /* a rebuild's writes leave the dirty marks alone */
    bool doubt;      /* the store asked to run the change again after it had written */
};

/* Renews the leases that are due (all with force). A lease that passed to
 * another node is lost: the change stops, its trees are that node's to
 * rebuild. */
static int lease_renew(trees_svc *t, lease_set *ls, bool force, strata_error *err)
{
    for (size_t i = 0; i < ls->n; i++) {
        tree_lease *l = &ls->l[i];
        if (!l->held || (!force && clock_mono_ms() - l->renewed_ms < TREE_RENEW_MS))
            continue;
        uint64_t sent = clock_mono_ms(), token = 0;
        bool held = false, abandoned = false;
        if (t->st->ops->lease_acquire(t->st, l->name, ls->holder, TREE_LEASE_MS, &held, &token,
                                      &abandoned, err) != 0)
            return -1;
        if (!held || token != l->token) {
            /* lost: the tree is another holder's now. A lease that was
             * free again is taken back by that call with a new token; it
             * is never used: given back at once when it had been released,
             * left to expire when its holder never released it (so that
             * the next holder is told, and rebuilds that holder's tree). */
            strata_error e2;
            if (held && !abandoned &&
                t->st->ops->lease_release(t->st, l->name, ls->holder, &e2) != 0)
                slog_warn("tree lease %s not given back (it expires): %s", l->name, e2.detail);
            l->held = false;
            return serr_set(err, SERR_RETRY,
                            "the lease of the tree of %s passed to another node in the middle of "
                            "a change (this node paused for more than %d ms?); retry",
                            l->root, TREE_LEASE_MS);
        }
        l->renewed_ms = sent;
    }
    return 0;
}

/* Before each write of a leased change: the leases renewed when due, and
 * enough of each left for the write to land inside it. */
static int write_guard(trees_svc *t, strata_error *err)
{
    lease_set *ls = t->cur;
    if (ls == NULL)
        return 0; /* a transaction makes the change atomic */
    if (lease_renew(t, ls, false, err) != 0)
        return -1;
    uint64_t now = clock_mono_ms();
    for (size_t i = 0; i < ls->n; i++)
        if (ls->l[i].held && now - ls->l[i].renewed_ms > TREE_LEASE_MS - TREE_WRITE_MARGIN_MS)
            return serr_set(err, SERR_RETRY,
                            "the lease of the tree of %s could not be renewed in time; retry",
                            ls->l[i].root);
    if (!ls->rebuilding) {
        for (size_t i = 0; i < ls->n; i++)
            ls->l[i].dirty = true; /* until the change completes */
        ls->writes++;
    }
    return 0;
}

/* The store writes of a tree change, each behind the guard. */
static int w_vocab_apply(trees_svc *t, store_txn *txn, const char *master, vocab_delta *d, size_t n,
                         strata_error *err)
{
    /* in slices, each behind the guard (in a transaction they are one) */
    size_t at = 0;
    do {
        size_t k = n - at < VOCAB_SLICE ? n - at : VOCAB_SLICE;
        if (write_guard(t, err) != 0 ||
            t->st->ops->vocab_apply(t->st, txn, master, d + at, k, NULL, err) != 0)
            return -1;
        at += k;
    } while (at < n);
    return 0;
}

static int w_link(trees_svc *t, store_txn *txn, const char *parent, const char *child,
                  uint64_t vkey, strata_error *err)
{
    if (write_guard(t, err) != 0)
        return -1;
    return t->st->ops->tree_link(t->st, txn, parent, child, vkey, err);
}

static int w_unlink(trees_svc *t, store_txn *txn, const char *parent, const char *child,
                    strata_error *err)
{
    if (write_guard(t, err) != 0)
        return -1;
    return t->st->ops->tree_unlink(t->st, txn, parent, child, err);
}

static int w_clear(trees_svc *t, store_txn *txn, const char *master, strata_error *err)
{
    if (write_guard(t, err) != 0)
        return -1;
    return t->st->ops->vocab_clear(t->st, txn, master, err);
}

static int delete_guard(void *ctx, const char *corpus, int (*body)(void *arg, strata_error *err),
                        void *arg, strata_error *err);

trees_svc *trees_new(versions_svc *vs, strata_error *err)
{
    trees_svc *t = calloc(1, sizeof *t);
    if (t == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    t->vs = vs;
    t->st = versions_store(vs);
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&t->mu, &attr);
    pthread_mutexattr_destroy(&attr);
    if (versions_set_delete_guard(vs, delete_guard, t, err) != 0) {
        pthread_mutex_destroy(&t->mu);
        free(t);
        return NULL;
    }
    return t;
}

void trees_free(trees_svc *t)
{
    if (t == NULL)
        return;
    strata_error err;
    versions_set_delete_guard(t->vs, NULL, NULL, &err);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

void trees_set_saved_hook(trees_svc *t, trees_saved_fn fn, void *ctx)
{
    t->saved = fn;
    t->saved_ctx = ctx;
}

/* ---- vocabularies ------------------------------------------------------------ */

static int child_count(trees_svc *t, store_txn *txn, const char *id, size_t *n, strata_error *err)
{
    tree_child *kids = NULL;
    int rc = t->st->ops->tree_children(t->st, txn, id, &kids, n, err);
    free(kids);
    return rc;
}

/* A master's aggregate as a vocabulary (its words and summed frequencies). */
static int load_aggregate(trees_svc *t, store_txn *txn, const char *master, vocabulary *out,
                          strata_error *err)
{
    memset(out, 0, sizeof *out);
    size_t cap = 0, used = 0, arena_cap = 0;
    char after[VOCAB_WORD_MAX + 1] = "";
    for (;;) {
        vocab_item *items = NULL;
        size_t n = 0;
        if (t->st->ops->vocab_page(t->st, txn, master, after, VOCAB_PAGE, &items, &n, err) != 0)
            goto fail;
        for (size_t i = 0; i < n; i++) {
            size_t len = strlen(items[i].word);
            if (out->n == cap) {
                cap = cap ? cap * 2 : VOCAB_PAGE;
                vocab_word *nw = realloc(out->w, cap * sizeof *nw);
                if (nw == NULL)
                    goto nomem;
                out->w = nw;
            }
            if (used + len + 1 > arena_cap) {
                arena_cap = arena_cap ? arena_cap * 2 : 1 << 20;
                while (arena_cap < used + len + 1)
                    arena_cap *= 2;
                char *na = realloc(out->arena, arena_cap);
                if (na == NULL)
                    goto nomem;
                out->arena = na;
            }
            memcpy(out->arena + used, items[i].word, len + 1);
            /* offsets for now: the arena may still move */
            out->w[out->n++] = (vocab_word){(char *)(uintptr_t)used, len, items[i].frequency};
            used += len + 1;
        }
        if (n > 0)
            snprintf(after, sizeof after, "%s", items[n - 1].word);
        vocab_items_free(items, n);
        if (n < VOCAB_PAGE)
            break;
        continue;
    nomem:
        vocab_items_free(items, n);
        serr_set(err, SERR_NOMEM, "out of memory reading a vocabulary");
        goto fail;
    }
    for (size_t i = 0; i < out->n; i++)
        out->w[i].word = out->arena + (uintptr_t)out->w[i].word;
    return 0;
fail:
    vocabulary_free(out);
    return -1;
}

/* The vocabulary a child brings to its master: a master's aggregate, or a
 * plain corpus's stored content at the given version. */
static int load_vocab(trees_svc *t, store_txn *txn, const char *id, uint64_t vkey, vocabulary *out,
                      strata_error *err)
{
    size_t kids = 0;
    if (child_count(t, txn, id, &kids, err) != 0)
        return -1;
    if (kids > 0)
        return load_aggregate(t, txn, id, out, err);
    store_version v;
    if (t->st->ops->get_version(t->st, txn, "corpus", id, vkey, &v, err) != 0) {
        if (err->kind == SERR_NOT_FOUND)
            serr_set(err, SERR_NOT_FOUND, "no corpus %s", id);
        return -1;
    }
    content_out c;
    int rc = versions_content(t->vs, &v, 0, &c, err);
    store_version_clear(&v);
    if (rc != 0)
        return -1;
    json_error_t je;
    json_t *j = json_loadb((const char *)c.data, c.len, 0, &je);
    content_out_free(&c);
    if (j == NULL)
        return serr_set(err, SERR_CORRUPT, "the stored vocabulary of %s is not JSON", id);
    rc = vocabulary_from_json(j, false, out, err);
    json_decref(j);
    return rc;
}

/* Every word of v entering (sign +1) or leaving (-1) a master. */
static vocab_delta *whole_delta(const vocabulary *v, int sign, strata_error *err)
{
    vocab_delta *d = calloc(v->n ? v->n : 1, sizeof *d);
    if (d == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < v->n; i++)
        d[i] = (vocab_delta){v->w[i].word, sign, sign * v->w[i].freq, 0};
    return d;
}

/* What changes when a child goes from vocabulary a to b: a merge of two
 * sorted lists, so it costs the size of the child. */
static vocab_delta *diff_delta(const vocabulary *a, const vocabulary *b, size_t *n,
                               strata_error *err)
{
    vocab_delta *d = calloc(a->n + b->n + 1, sizeof *d);
    if (d == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    size_t i = 0, j = 0, k = 0;
    while (i < a->n || j < b->n) {
        int c;
        if (i == a->n)
            c = 1;
        else if (j == b->n)
            c = -1;
        else {
            size_t m = a->w[i].len < b->w[j].len ? a->w[i].len : b->w[j].len;
            c = memcmp(a->w[i].word, b->w[j].word, m);
            if (c == 0)
                c = a->w[i].len < b->w[j].len ? -1 : a->w[i].len > b->w[j].len;
        }
        if (c < 0) {
            d[k++] = (vocab_delta){a->w[i].word, -1, -a->w[i].freq, 0};
            i++;
        } else if (c > 0) {
            d[k++] = (vocab_delta){b->w[j].word, 1, b->w[j].freq, 0};
            j++;
        } else {
            if (a->w[i].freq != b->w[j].freq)
                d[k++] = (vocab_delta){b->w[j].word, 0, b->w[j].freq - a->w[i].freq, 0};
            i++;
            j++;
        }
    }
    *n = k;
    return d;
}

/* ---- master versions ------------------------------------------------------------ */

static const char *const COMPUTED_OR_TREE[] = {"vocabulary_size",
                                               "vocabulary_hash",
                                               "children",
                                               "is_master",
                                               "content_location",
                                               "metadata",
                                               "tags",
                                               "dependencies",
                                               "ttl"};

/* Saves the master's next version: a manifest of its children at their
 * exact versions, its vocabulary size from the aggregate, its own fields
 * kept (or taken from base for a new master). */
static int save_master(trees_svc *t, store_txn *txn, const char *master, const json_t *base,
                       saved_list *saved, uint64_t *vkey, strata_error *err)
{
    tree_child *kids = NULL;
    size_t nk = 0;
    uint64_t size = 0;
    if (t->st->ops->tree_children(t->st, txn, master, &kids, &nk, err) != 0 ||
        t->st->ops->vocab_size(t->st, txn, master, &size, err) != 0) {
        free(kids);
        return -1;
    }
    json_t *manifest = json_array(), *deps = json_array(), *ids = json_array();
    for (size_t i = 0; i < nk; i++) {
        char v[SEMVER_STR_MAX];
        semver_format(kids[i].vkey, v);
        json_array_append_new(manifest, json_pack("{s:s, s:s}", "id", kids[i].id, "version", v));
        json_array_append_new(
            deps, json_pack("{s:s, s:s, s:s}", "type", "corpus", "id", kids[i].id, "version", v));
        json_array_append_new(ids, json_string(kids[i].id));
    }
    free(kids);
    json_t *env =
        json_pack("{s:{s:o}, s:o}", "content", "children", manifest, "dependencies", deps);
    store_version cur;
    strata_error e2;
    if (t->st->ops->get_version(t->st, txn, "corpus", master, 0, &cur, &e2) == 0) {
        const char *k;
        json_t *val;
        json_object_foreach(cur.doc, k, val)
        {
            bool skip = false;
            for (size_t i = 0; i < sizeof COMPUTED_OR_TREE / sizeof *COMPUTED_OR_TREE; i++)
                skip |= strcmp(k, COMPUTED_OR_TREE[i]) == 0;
            if (!skip)
                json_object_set(env, k, val);
        }
        json_object_set_new(env, "namespace", json_string(cur.ns));
        json_object_set(env, "metadata", json_object_get(cur.doc, "metadata"));
        json_object_set(env, "tags", json_object_get(cur.doc, "tags"));
        store_version_clear(&cur);
    } else if (base != NULL) {
        json_object_update(env, (json_t *)base);
    }
    json_t *computed = json_pack("{s:I, s:b, s:o}", "vocabulary_size", (json_int_t)size,
                                 "is_master", 1, "children", ids);
    save_request rq = {
        .type = "corpus", .id = master, .envelope = env, .txn = txn, .computed = computed};
    store_version v;
    bool created = false;
    int rc = write_guard(t, err) == 0 ? versions_save(t->vs, &rq, &v, &created, err) : -1;
    json_decref(env);
    json_decref(computed);
    if (rc != 0)
        return -1;
    *vkey = v.vkey;
    store_version_clear(&v);
    if (created && saved->n < (int)(sizeof saved->items / sizeof saved->items[0])) {
        snprintf(saved->items[saved->n].id, sizeof saved->items[0].id, "%s", master);
        saved->items[saved->n++].vkey = *vkey;
    }
    return 0;
}

/* Applies deltas to master, saves its new version, and climbs: each level
 * passes on only what changed for it. */
static int propagate(trees_svc *t, store_txn *txn, const char *start, vocab_delta *d, size_t n,
                     saved_list *saved, strata_error *err)
{
    char master[STORE_ID_MAX + 1];
    snprintf(master, sizeof master, "%s", start);
    for (int level = 0; level <= TREE_DEPTH_MAX; level++) {
        uint64_t vkey;
        if (w_vocab_apply(t, txn, master, d, n, err) != 0 ||
            save_master(t, txn, master, NULL, saved, &vkey, err) != 0)
            return -1;
        char parent[STORE_ID_MAX + 1];
        bool has = false;
        if (t->st->ops->tree_parent(t->st, txn, master, parent, sizeof parent, &has, err) != 0)
            return -1;
        if (!has)
            return 0;
        if (w_link(t, txn, parent, master, vkey, err) != 0)
            return -1;
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (d[i].presence != 0 || d[i].freq_delta != 0)
                d[k++] = (vocab_delta){d[i].word, d[i].presence, d[i].freq_delta, 0};
        n = k;
        snprintf(master, sizeof master, "%s", parent);
    }
    return serr_set(err, SERR_CONFLICT, "the tree is deeper than %d levels", TREE_DEPTH_MAX);
}

/* Runs fn in one store transaction (which the store may run again: fn
 * starts from an empty saved list each time); the masters it changes are
 * fenced in the cache before the commit, their cached records dropped
 * after it, and their new versions announced. The transaction, not the
 * process mutex, is what makes a tree change atomic for every node. */
typedef int (*tree_change_fn)(trees_svc *t, store_txn *txn, void *ctx, saved_list *saved,
                              strata_error *err);

#define FENCED_MAX 64

struct tree_job {
    trees_svc *t;
    tree_change_fn fn;
    void *ctx;
    saved_list saved;
    /* every master fenced by any attempt: each gets its invalidation */
    char fenced[FENCED_MAX][STORE_ID_MAX + 1];
    int nfenced;
    int runs;
    uint64_t writes0; /* the leased change's writes when the body first ran */
};

static int remember_fence(struct tree_job *j, const char *id, strata_error *err)
{
    for (int i = 0; i < j->nfenced; i++)
        if (strcmp(j->fenced[i], id) == 0)
            return 0;
    if (j->nfenced == FENCED_MAX)
        return serr_set(err, SERR_RETRY, "too many masters changed at once; retry");
    snprintf(j->fenced[j->nfenced++], sizeof j->fenced[0], "%s", id);
    return 0;
}

static int tree_in(store_txn *txn, void *arg, strata_error *err)
{
    struct tree_job *j = arg;
    lease_set *ls = j->t->cur;
    if (ls != NULL && !ls->rebuilding) {
        /* without transactions a run that wrote is not undone: running
         * the body again would count its deltas twice */
        if (j->runs > 0 && ls->writes != j->writes0) {
            ls->doubt = true;
            err->kind = SERR_CONFLICT; /* keeps the cause's detail; ends transact's retries */
            return -1;
        }
        if (j->runs == 0)
            j->writes0 = ls->writes;
    }
    j->runs++;
    j->saved.n = 0;
    if (j->fn(j->t, txn, j->ctx, &j->saved, err) != 0)
        return -1;
    /* invariant 6: the masters' cached records are fenced before the
     * commit makes their new versions visible */
    for (int i = 0; i < j->saved.n; i++)
        if (remember_fence(j, j->saved.items[i].id, err) != 0 ||
            versions_fence_latest(j->t->vs, "corpus", j->saved.items[i].id, err) != 0)
            return -1;
    return 0;
}

static int in_tree_txn(trees_svc *t, tree_change_fn fn, void *ctx, strata_error *err)
{
    struct tree_job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    j->t = t;
    j->fn = fn;
    j->ctx = ctx;
    int rc = t->st->ops->transact(t->st, tree_in, j, err);
    bool unconfirmed = false;
    for (int i = 0; i < j->nfenced; i++) {
        strata_error ierr;
        unconfirmed |= versions_invalidate_latest(t->vs, "corpus", j->fenced[i], &ierr) != 0;
    }
    for (int i = 0; rc == 0 && t->saved && i < j->saved.n; i++)
        t->saved(t->saved_ctx, j->saved.items[i].id, j->saved.items[i].vkey);
    if (rc == 0 && unconfirmed)
        rc = versions_unconfirmed(err, "the tree change");
    free(j);
    return rc;
}

/* ---- leased changes (stores without transactions) ---------------------------------- */

static int do_reaggregate(trees_svc *t, store_txn *txn, void *arg, saved_list *saved,
                          strata_error *err);

/* The top of the tree id is in (id itself when it has no parent). */
static int find_root(trees_svc *t, const char *id, char *root, strata_error *err)
{
    char at[STORE_ID_MAX + 1];
    snprintf(at, sizeof at, "%s", id);
    for (int up = 0; up <= TREE_DEPTH_MAX + 1; up++) {
        char parent[STORE_ID_MAX + 1];
        bool has = false;
        if (t->st->ops->tree_parent(t->st, NULL, at, parent, sizeof parent, &has, err) != 0)
            return -1;
        if (!has) {
            snprintf(root, STORE_ID_MAX + 1, "%s", at);
            return 0;
        }
        snprintf(at, sizeof at, "%s", parent);
    }
    return serr_set(err, SERR_CONFLICT, "the tree above %s is deeper than %d levels", id,
                    TREE_DEPTH_MAX);
}

static int held_index(const lease_set *ls, const char *root)
{
    for (size_t i = 0; i < ls->n; i++)
        if (ls->l[i].held && strcmp(ls->l[i].root, root) == 0)
            return (int)i;
    return -1;
}

static bool carried(const lease_set *ls, const char *name)
{
    for (size_t i = 0; i < ls->ncarried; i++)
        if (strcmp(ls->carried[i], name) == 0)
            return true;
    return false;
}

/* Takes lease i, waiting (bounded) while another node holds it; the
 * leases already taken are renewed meanwhile. */
static int lease_take(trees_svc *t, lease_set *ls, size_t i, bool wait, strata_error *err)
{
    tree_lease *l = &ls->l[i];
    uint64_t start = clock_mono_ms();
    long pause_ms = 10;
    for (;;) {
        uint64_t sent = clock_mono_ms(), token = 0;
        bool held = false, abandoned = false;
        if (t->st->ops->lease_acquire(t->st, l->name, ls->holder, TREE_LEASE_MS, &held, &token,
                                      &abandoned, err) != 0)
            return -1;
        if (held) {
            l->held = true;
            l->token = token;
            l->renewed_ms = sent;
            l->dirty = abandoned || carried(ls, l->name);
            if (abandoned)
                slog_warn("tree lease %s taken over from a holder that never released it (token "
                          "%llu): the tree is rebuilt from its children",
                          l->name, (unsigned long long)token);
            return 0;
        }
        if (!wait || clock_mono_ms() - start >= TREE_WAIT_MS)
            return serr_set(err, SERR_RETRY,
                            "the tree of %s is being changed by another node (lease %s, token "
                            "%llu, waited %llu ms); retry in a moment",
                            l->root, l->name, (unsigned long long)token,
                            (unsigned long long)(clock_mono_ms() - start));
        if (lease_renew(t, ls, false, err) != 0)
            return -1;
        struct timespec ts = {0, pause_ms * 1000000L};
        nanosleep(&ts, NULL);
        pause_ms = pause_ms < 320 ? pause_ms * 2 : 500;
    }
}

/* Rebuilds every master of the tree under root from its children,
 * deepest first, so that each master reads children already rebuilt. A
 * master that never had a version is a creation that stopped midway: its
 * children are let go. */
static int rebuild_tree(trees_svc *t, const char *root, strata_error *err)
{
    size_t n = 1, cap = 64;
    char(*ids)[STORE_ID_MAX + 1] = malloc(cap * sizeof *ids);
    unsigned char *depth = malloc(cap);
    if (ids == NULL || depth == NULL) {
        free(ids);
        free(depth);
        return serr_set(err, SERR_NOMEM, "out of memory");
    }
    snprintf(ids[0], sizeof ids[0], "%s", root);
    depth[0] = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        tree_child *kids = NULL;
        size_t nk = 0;
        if (t->st->ops->tree_children(t->st, NULL, ids[i], &kids, &nk, err) != 0) {
            rc = -1;
            break;
        }
        if (nk > 0 && depth[i] > TREE_DEPTH_MAX)
            rc = serr_set(err, SERR_CONFLICT, "the tree of %s is deeper than %d levels", root,
                          TREE_DEPTH_MAX);
        for (size_t k = 0; rc == 0 && k < nk; k++) {
            if (n == cap) {
                cap *= 2;
                void *ni = realloc(ids, cap * sizeof *ids), *nd = ni ? realloc(depth, cap) : NULL;
                if (ni != NULL)
                    ids = ni;
                if (nd != NULL)
                    depth = nd;
                if (ni == NULL || nd == NULL) {
                    rc = serr_set(err, SERR_NOMEM, "out of memory");
                    break;
                }
            }
            snprintf(ids[n], sizeof ids[0], "%s", kids[k].id);
            depth[n++] = (unsigned char)(depth[i] + 1);
        }
        free(kids);
        if (nk == 0)
            ids[i][0] = '\0'; /* not a master */
    }
    for (size_t i = n; rc == 0 && i-- > 0;) {
        if (ids[i][0] == '\0')
            continue;
        store_head h;
        rc = t->st->ops->get_head(t->st, NULL, "corpus", ids[i], &h, err);
        /* a deleted corpus keeps its head (latest 0): a master re-created
         * under its id that never saved a version is a creation that stopped */
        if (rc == 0 && h.latest_vkey != 0) {
            rc = in_tree_txn(t, do_reaggregate, ids[i], err);
            continue;
        }
        tree_child *kids = NULL;
        size_t nk = 0;
        if (rc == 0)
            rc = t->st->ops->tree_children(t->st, NULL, ids[i], &kids, &nk, err);
        for (size_t k = 0; rc == 0 && k < nk; k++)
            rc = w_unlink(t, NULL, ids[i], kids[k].id, err);
        free(kids);
        if (rc == 0)
            rc = w_clear(t, NULL, ids[i], err);
    }
    free(ids);
    free(depth);
    return rc;
}

/* Rebuilds the trees of the dirty leases held; a lease whose name is no
 * longer a root (an attach moved it) stays dirty unless its new root is
 * held too. */
static int rebuild_dirty(trees_svc *t, lease_set *ls, strata_error *err)
{
    bool rebuilt[TREE_LEASES_MAX] = {false};
    int rc = 0;
    ls->rebuilding = true;
    for (size_t i = 0; rc == 0 && i < ls->n; i++) {
        if (!ls->l[i].held || !ls->l[i].dirty)
            continue;
        char root[STORE_ID_MAX + 1];
        if ((rc = find_root(t, ls->l[i].root, root, err)) != 0)
            break;
        int k = held_index(ls, root);
        if (k < 0)
            continue;
        if (!rebuilt[k] && (rc = rebuild_tree(t, root, err)) != 0)
            break;
        rebuilt[k] = true;
        ls->l[i].dirty = false;
    }
    ls->rebuilding = false;
    return rc;
}

/* Lets go of the leases: the clean ones released, the dirty ones left to
 * expire (the next holder of each is told it was abandoned, and rebuilds). */
static void lease_let_go(trees_svc *t, lease_set *ls)
{
    for (size_t i = 0; i < ls->n; i++) {
        tree_lease *l = &ls->l[i];
        if (!l->held)
            continue;
        strata_error e2;
        if (l->dirty) {
            bool room = ls->ncarried < sizeof ls->carried / sizeof ls->carried[0];
            if (!carried(ls, l->name) && room)
                snprintf(ls->carried[ls->ncarried++], sizeof ls->carried[0], "%s", l->name);
            else if (!carried(ls, l->name))
                ls->carry_full = true; /* re-taken by this holder, it would pass for clean */
        } else if (t->st->ops->lease_release(t->st, l->name, ls->holder, &e2) != 0) {
            slog_warn("tree lease %s not released (it expires): %s", l->name, e2.detail);
        }
        l->held = false;
    }
}

/* One try: the roots of the anchors' trees found, their leases taken in
 * name order, the roots checked again (*moved when one changed), trees a
 * dead holder left in doubt rebuilt, then fn (NULL: nothing more). */
static int leased_try(trees_svc *t, lease_set *ls, const char *const *anchors, size_t na,
                      tree_change_fn fn, void *ctx, bool wait, bool *moved, strata_error *err)
{
    *moved = false;
    ls->n = 0;
    ls->writes = 0;
    ls->doubt = false;
    for (size_t a = 0; a < na; a++) {
        char root[STORE_ID_MAX + 1];
        if (find_root(t, anchors[a], root, err) != 0)
            return -1;
        size_t at = 0;
        while (at < ls->n && strcmp(ls->l[at].root, root) < 0)
            at++;
        if (at < ls->n && strcmp(ls->l[at].root, root) == 0)
            continue;
        if (ls->n == TREE_LEASES_MAX)
            return serr_set(err, SERR_INVALID,
                            "a change may touch at most %d trees on the %s store; attach the "
                            "rest one by one",
                            TREE_LEASES_MAX, t->st->ops->name);
        memmove(&ls->l[at + 1], &ls->l[at], (ls->n - at) * sizeof ls->l[0]);
        memset(&ls->l[at], 0, sizeof ls->l[0]);
        snprintf(ls->l[at].root, sizeof ls->l[at].root, "%s", root);
        snprintf(ls->l[at].name, sizeof ls->l[at].name, "tree:%s", root);
        ls->n++;
    }
    int rc = 0;
    t->cur = ls;
    for (size_t i = 0; rc == 0 && i < ls->n; i++)
        rc = lease_take(t, ls, i, wait, err);
    for (size_t a = 0; rc == 0 && a < na && !*moved; a++) {
        char root[STORE_ID_MAX + 1];
        rc = find_root(t, anchors[a], root, err);
        *moved = rc == 0 && held_index(ls, root) < 0;
    }
    if (rc == 0 && !*moved)
        rc = rebuild_dirty(t, ls, err);
    for (size_t i = 0; rc == 0 && !*moved && i < ls->n; i++)
        if (ls->l[i].dirty)
            rc = serr_set(err, SERR_RETRY,
                          "the tree of %s was left in doubt by a node that died and cannot be "
                          "rebuilt yet; retry",
                          ls->l[i].root);
    if (rc == 0 && !*moved && ls->raw != NULL) {
        /* the full lease for the body: it writes no aggregate, but what it
         * checks must not change before its write lands */
        rc = lease_renew(t, ls, true, err);
        if (rc == 0)
            rc = ls->raw(ctx, err);
    } else if (rc == 0 && !*moved && fn != NULL) {
        rc = in_tree_txn(t, fn, ctx, err);
        bool lost = false;
        for (size_t i = 0; i < ls->n; i++)
            lost |= !ls->l[i].held;
        if (rc == 0) {
            for (size_t i = 0; i < ls->n; i++)
                ls->l[i].dirty = false; /* complete: each tree equals its children again */
        } else if (ls->writes > 0 && !lost) {
            /* stopped midway: never run again from the middle (its deltas
             * would count twice), but rebuilt from the children */
            strata_error cause = *err;
            if (rebuild_dirty(t, ls, err) == 0)
                serr_set(err, ls->doubt ? SERR_RETRY : cause.kind,
                         "%s (the change stopped midway; its trees were rebuilt from their "
                         "children)",
                         cause.detail);
            else
                serr_set(err, SERR_RETRY,
                         "%s (the change stopped midway; the tree is rebuilt by its next change: "
                         "%s)",
                         cause.detail, err->detail);
        }
    }
    t->cur = NULL;
    lease_let_go(t, ls);
    return rc;
}

/* A tree change: in one transaction where the store has them; otherwise
 * under the leases of every tree it touches (anchors: the nodes it
 * changes or links). */
static int tree_change_any(trees_svc *t, const char *const *anchors, size_t na, tree_change_fn fn,
                           int (*raw)(void *arg, strata_error *err), void *ctx, bool wait,
                           strata_error *err)
{
    if (t->st->ops->caps & STORE_CAP_TREE_TXN)
        return raw ? raw(ctx, err) : fn ? in_tree_txn(t, fn, ctx, err) : 0;
    if (t->cur != NULL) {
        /* nested on this thread (mu is held): only inside the trees held */
        for (size_t a = 0; a < na; a++) {
            char root[STORE_ID_MAX + 1];
            if (find_root(t, anchors[a], root, err) != 0)
                return -1;
            if (held_index(t->cur, root) < 0)
                return serr_set(err, SERR_RETRY,
                                "a tree change on %s met another in progress on this node; retry",
                                anchors[a]);
        }
        return raw ? raw(ctx, err) : fn ? in_tree_txn(t, fn, ctx, err) : 0;
    }
    lease_set *ls = calloc(1, sizeof *ls);
    if (ls == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    snprintf(ls->holder, sizeof ls->holder, "%s/tree/%llu", node_id(),
             (unsigned long long)++t->seq);
    ls->raw = raw;
    int rc = 0;
    bool moved = true;
    for (int tries = 0; moved && tries < TREE_LEASE_TRIES && !ls->carry_full; tries++)
        rc = leased_try(t, ls, anchors, na, fn, ctx, wait, &moved, err);
    if (rc == 0 && moved && ls->carry_full)
        rc = serr_set(err, SERR_RETRY,
                      "more trees were left in doubt than one change can carry; they are rebuilt "
                      "by their next holders; retry");
    else if (rc == 0 && moved)
        rc = serr_set(err, SERR_RETRY, "the tree kept moving while its lease was taken; retry");
    free(ls);
    return rc;
}

static int tree_change(trees_svc *t, const char *const *anchors, size_t na, tree_change_fn fn,
                       void *ctx, bool wait, strata_error *err)
{
    return tree_change_any(t, anchors, na, fn, NULL, ctx, wait, err);
}

/* versions_delete_guard for corpus deletes: the tree checks and the
 * delete under the lease of the corpus's tree (trees.h). */
static int delete_guard(void *ctx, const char *corpus, int (*body)(void *arg, strata_error *err),
                        void *arg, strata_error *err)
{
    trees_svc *t = ctx;
    if (t->st->ops->caps & STORE_CAP_TREE_TXN)
        return body(arg, err); /* checked in the delete's own transaction */
    pthread_mutex_lock(&t->mu);
    const char *anchors[1] = {corpus};
    int rc = tree_change_any(t, anchors, 1, NULL, body, arg, true, err);
    pthread_mutex_unlock(&t->mu);
    return rc;
}

/* ---- checks ---------------------------------------------------------------------- */

static int latest_vkey(trees_svc *t, store_txn *txn, const char *id, uint64_t *vkey,
                       strata_error *err)
{
    store_head h;
    if (t->st->ops->get_head(t->st, txn, "corpus", id, &h, err) != 0)
        return -1;
    *vkey = h.latest_vkey;
    if (*vkey == 0)
        return serr_set(err, SERR_NOT_FOUND, "no corpus %s", id);
    return 0;
}

/* How many levels of masters stand below id (0 for a corpus with no
 * children), looked at no deeper than TREE_DEPTH_MAX + 1. */
static int subtree_height(trees_svc *t, const char *id, int *height, strata_error *err)
{
    /* breadth-first, one level at a time */
    size_t n = 1, cap = 16;
    char(*level)[STORE_ID_MAX + 1] = malloc(cap * sizeof *level);
    if (level == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    snprintf(level[0], sizeof level[0], "%s", id);
    int rc = 0;
    *height = 0;
    while (rc == 0 && n > 0 && *height <= TREE_DEPTH_MAX) {
        char(*next)[STORE_ID_MAX + 1] = NULL;
        size_t nn = 0, ncap = 0;
        for (size_t i = 0; rc == 0 && i < n; i++) {
            tree_child *kids = NULL;
            size_t nk = 0;
            rc = t->st->ops->tree_children(t->st, NULL, level[i], &kids, &nk, err);
            for (size_t k = 0; rc == 0 && k < nk; k++) {
                if (nn == ncap) {
                    ncap = ncap ? 2 * ncap : 16;
                    void *grown = realloc(next, ncap * sizeof *next);
                    if (grown == NULL) {
                        rc = serr_set(err, SERR_NOMEM, "out of memory");
                        break;
                    }
                    next = grown;
                }
                snprintf(next[nn++], sizeof next[0], "%s", kids[k].id);
            }
            free(kids);
        }
        free(level);
        level = next;
        n = nn;
        if (rc == 0 && n > 0)
            (*height)++;
    }
    free(level);
    return rc;
}

/* A child may join master unless it is master, already has a parent, is
 * one of master's ancestors (which would close a loop), or would make the
 * tree deeper than TREE_DEPTH_MAX levels (409 naming the limit). */
static int check_attachable(trees_svc *t, const char *master, const char *child, strata_error *err)
{
    if (strcmp(master, child) == 0)
        return serr_set(err, SERR_CONFLICT, "corpus %s cannot be its own child", child);
    char parent[STORE_ID_MAX + 1];
    bool has = false;
    if (t->st->ops->tree_parent(t->st, NULL, child, parent, sizeof parent, &has, err) != 0)
        return -1;
    if (has)
        return serr_set(err, SERR_CONFLICT, "corpus %s is already a child of %s", child, parent);
    char at[STORE_ID_MAX + 1];
    snprintf(at, sizeof at, "%s", master);
    int above = 0; /* masters above master */
    for (;; above++) {
        if (above > TREE_DEPTH_MAX)
            return serr_set(err, SERR_CONFLICT, "the tree is deeper than %d levels",
                            TREE_DEPTH_MAX);
        if (t->st->ops->tree_parent(t->st, NULL, at, parent, sizeof parent, &has, err) != 0)
            return -1;
        if (!has)
            break;
        if (strcmp(parent, child) == 0)
            return serr_set(err, SERR_CONFLICT,
                            "attaching %s under %s would make %s its own ancestor", child, master,
                            child);
        snprintf(at, sizeof at, "%s", parent);
    }
    int below = 0;
    if (subtree_height(t, child, &below, err) != 0)
        return -1;
    if (above + 1 + below > TREE_DEPTH_MAX)
        return serr_set(err, SERR_CONFLICT,
                        "attaching %s under %s would make the tree %d levels deep; the limit is %d",
                        child, master, above + 1 + below, TREE_DEPTH_MAX);
    return 0;
}

/* A child given by id, or created from {"id", "words" | "frequencies",
 * ...}: its id, and for an inline child the save that creates it (with
 * validate_only, it checks the save without writing). A child given by
 * id must exist. */
static int resolve_child(trees_svc *t, const json_t *spec, const char *language, bool validate_only,
                         char *id, size_t cap, strata_error *err)
{
    const char *cid = json_is_string(spec) ? json_string_value(spec)
                                           : json_string_value(json_object_get(spec, "id"));
    if (cid == NULL)
        return serr_set(err, SERR_INVALID, "a child is a corpus id or an object with \"id\"");
    if (resource_id_check("child id", cid, STORE_ID_MAX, err) != 0)
        return -1;
    snprintf(id, cap, "%s", cid);
    const json_t *words = json_object_get(spec, "words");
    const json_t *freqs = json_object_get(spec, "frequencies");
    if (words == NULL && freqs == NULL) {
        uint64_t vkey; /* a reference to an existing corpus */
        return validate_only ? latest_vkey(t, NULL, cid, &vkey, err) : 0;
    }
    json_t *env =
        json_pack("{s:{}, s:s, s:s}", "content", "corpus_type", "base", "language", language);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)spec, k, v)
    {
        if (strcmp(k, "words") == 0 || strcmp(k, "frequencies") == 0)
            json_object_set(json_object_get(env, "content"), k, v);
        else if (strcmp(k, "id") != 0)
            json_object_set(env, k, v);
    }
    save_request rq = {
        .type = "corpus", .id = cid, .envelope = env, .validate_only = validate_only};
    store_version sv;
    bool created;
    int rc = versions_save(t->vs, &rq, &sv, &created, err);
    json_decref(env);
    if (rc == 0)
        store_version_clear(&sv);
    return rc;
}

/* ---- operations ---------------------------------------------------------------------- */

/* The version of child that parent records is gone (err: SERR_NOT_FOUND):
 * no delta can be taken from it. Under leases the change stops as one that
 * wrote, so that its trees are rebuilt from their children before the
 * leases go (the rebuild makes the master follow the child's latest);
 * err becomes SERR_RETRY. In a transaction err stays. */
static void held_version_missing(trees_svc *t, const char *parent, const char *child,
                                 strata_error *err)
{
    if (t->cur == NULL || t->cur->rebuilding)
        return;
    for (size_t i = 0; i < t->cur->n; i++)
        t->cur->l[i].dirty = true;
    t->cur->writes++;
    serr_set(err, SERR_RETRY, "master %s aggregated a deleted version of %s; its tree is rebuilt",
             parent, child);
}

struct attach_ctx {
    const char *master;
    const char *const *children;
    size_t n;
    const json_t *base; /* fields of a new master, or NULL */
};

static int do_attach(trees_svc *t, store_txn *txn, void *arg, saved_list *saved, strata_error *err)
{
    struct attach_ctx *c = arg;
    vocabulary climb_vocab = {0};
    vocab_delta *climb = NULL;
    int rc = 0;
    store_head mh;
    /* checked again here, atomically with the links (in the transaction,
     * or under the trees' leases): another node may have created the
     * master, attached a child or changed the tree since. All before the
     * first write, so that a refusal leaves nothing half done. */
    if (c->base != NULL && t->st->ops->get_head(t->st, txn, "corpus", c->master, &mh, err) != 0)
        return -1;
    if (c->base != NULL && mh.exists && mh.latest_vkey != 0)
        return serr_set(err, SERR_CONFLICT,
                        "corpus %s exists; attach children with POST /trees/%s/children", c->master,
                        c->master);
    for (size_t i = 0; rc == 0 && i < c->n; i++)
        rc = check_attachable(t, c->master, c->children[i], err);
    for (size_t i = 0; rc == 0 && i < c->n; i++) {
        uint64_t vkey;
        vocabulary v;
        rc = latest_vkey(t, txn, c->children[i], &vkey, err);
        if (rc == 0)
            rc = w_link(t, txn, c->master, c->children[i], vkey, err);
        if (rc == 0)
            rc = load_vocab(t, txn, c->children[i], vkey, &v, err);
        if (rc != 0)
            break;
        vocab_delta *d = whole_delta(&v, +1, err);
        if (d == NULL) {
            vocabulary_free(&v);
            rc = -1;
        } else if (c->base == NULL) {
            /* one child joins an existing master: its words climb the tree */
            climb = d;
            climb_vocab = v;
        } else {
            /* a new master has no parent: each child applies directly */
            rc = w_vocab_apply(t, txn, c->master, d, v.n, err);
            free(d);
            vocabulary_free(&v);
        }
    }
    uint64_t vkey;
    if (rc == 0)
        rc = c->base != NULL ? save_master(t, txn, c->master, c->base, saved, &vkey, err)
                             : propagate(t, txn, c->master, climb, climb_vocab.n, saved, err);
    free(climb);
    vocabulary_free(&climb_vocab);
    return rc;
}

int trees_create(trees_svc *t, const json_t *body, json_t **tree, strata_error *err)
{
    const char *master = json_string_value(json_object_get(body, "master"));
    const char *language = json_string_value(json_object_get(body, "language"));
    const char *corpus_type = json_string_value(json_object_get(body, "corpus_type"));
    const json_t *children = json_object_get(body, "children");
    if (!json_is_object(body) || master == NULL)
        return serr_set(err, SERR_INVALID, "a tree needs \"master\" (a corpus id)");
    if (resource_id_check("master", master, STORE_ID_MAX, err) != 0)
        return -1;
    if (language == NULL)
        return serr_set(err, SERR_INVALID, "a tree needs \"language\"");
    /* a master's content and dependencies are its manifest, never a client's */
    static const char *const not_for_masters[] = {"content", "dependencies"};
    for (size_t i = 0; i < sizeof not_for_masters / sizeof *not_for_masters; i++)
        if (json_object_get(body, not_for_masters[i]) != NULL)
            return serr_set(err, SERR_INVALID,
                            "\"%s\" cannot be given for a master: its versions follow its "
                            "children",
                            not_for_masters[i]);
    if (children != NULL && (!json_is_array(children) || json_array_size(children) > CHILDREN_MAX))
        return serr_set(err, SERR_INVALID, "\"children\" must be an array of at most %d",
                        CHILDREN_MAX);
    size_t n = json_array_size(children);
    char(*ids)[STORE_ID_MAX + 1] = calloc(n ? n : 1, sizeof *ids);
    const char **names = calloc(n ? n : 1, sizeof *names);
    if (ids == NULL || names == NULL) {
        free(ids);
        free(names);
        return serr_set(err, SERR_NOMEM, "out of memory");
    }
    pthread_mutex_lock(&t->mu);
    int rc = 0;
    store_head h;
    if (t->st->ops->get_head(t->st, NULL, "corpus", master, &h, err) != 0)
        rc = -1;
    else if (h.exists && h.latest_vkey != 0)
        rc = serr_set(err, SERR_CONFLICT,
                      "corpus %s exists; attach children with POST /trees/%s/children", master,
                      master);
    /* everything a client can get wrong is checked before anything is
     * written, so that a 4xx leaves nothing behind */
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = resolve_child(t, json_array_get(children, i), language, true, ids[i], sizeof ids[i],
                           err);
        for (size_t k = 0; rc == 0 && k < i; k++)
            if (strcmp(ids[k], ids[i]) == 0)
                rc = serr_set(err, SERR_INVALID, "child %s is listed twice", ids[i]);
        if (rc == 0)
            rc = check_attachable(t, master, ids[i], err);
        names[i] = ids[i];
    }
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = resolve_child(t, json_array_get(children, i), language, false, ids[i], sizeof ids[i],
                           err);
    if (rc == 0) {
        json_t *base = json_pack("{s:s, s:s}", "corpus_type",
                                 corpus_type ? corpus_type : "language", "language", language);
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)body, k, v)
        {
            if (strcmp(k, "master") != 0 && strcmp(k, "children") != 0)
                json_object_set(base, k, v);
        }
        struct attach_ctx c = {master, names, n, base};
        const char **anchors = calloc(n + 1, sizeof *anchors);
        if (anchors == NULL) {
            rc = serr_set(err, SERR_NOMEM, "out of memory");
        } else {
            anchors[0] = master;
            for (size_t i = 0; i < n; i++)
                anchors[i + 1] = names[i];
            rc = tree_change(t, anchors, n + 1, do_attach, &c, true, err);
        }
        free(anchors);
        json_decref(base);
    }
    pthread_mutex_unlock(&t->mu);
    free(ids);
    free(names);
    if (rc == 0 && tree)
        *tree = trees_get(t, master, 8, err);
    return rc;
}

int trees_attach(trees_svc *t, const char *master, const json_t *child, json_t **tree,
                 strata_error *err)
{
    if (resource_id_check("master", master, STORE_ID_MAX, err) != 0)
        return -1;
    pthread_mutex_lock(&t->mu);
    uint64_t mk;
    char id[STORE_ID_MAX + 1];
    store_version mv;
    int rc = latest_vkey(t, NULL, master, &mk, err);
    if (rc == 0)
        rc = t->st->ops->get_version(t->st, NULL, "corpus", master, 0, &mv, err);
    if (rc == 0) {
        /* checked in full before the inline child is saved: a 4xx leaves
         * nothing behind */
        const char *language = json_string_value(json_object_get(mv.doc, "language"));
        rc = resolve_child(t, child, language ? language : "", true, id, sizeof id, err);
        if (rc == 0)
            rc = check_attachable(t, master, id, err);
        if (rc == 0)
            rc = resolve_child(t, child, language ? language : "", false, id, sizeof id, err);
        store_version_clear(&mv);
    }
    if (rc == 0) {
        const char *names[1] = {id};
        struct attach_ctx c = {master, names, 1, NULL};
        const char *anchors[2] = {master, id};
        rc = tree_change(t, anchors, 2, do_attach, &c, true, err);
    }
    pthread_mutex_unlock(&t->mu);
    if (rc == 0 && tree)
        *tree = trees_get(t, master, 1, err);
    return rc;
}

struct detach_ctx {
    const char *master, *child;
};

static int do_detach(trees_svc *t, store_txn *txn, void *arg, saved_list *saved, strata_error *err)
{
    struct detach_ctx *c = arg;
    /* the version the master holds, read in the transaction that removes
     * it: a concurrent re-link on another node cannot slip in between */
    tree_child *kids = NULL;
    size_t nk = 0;
    if (t->st->ops->tree_children(t->st, txn, c->master, &kids, &nk, err) != 0)
        return -1;
    uint64_t held = 0;
    for (size_t i = 0; i < nk; i++)
        if (strcmp(kids[i].id, c->child) == 0)
            held = kids[i].vkey;
    free(kids);
    if (held == 0)
        return serr_set(err, SERR_NOT_FOUND, "%s is not a child of %s", c->child, c->master);
    vocabulary v;
    if (load_vocab(t, txn, c->child, held, &v, err) != 0) {
        if (err->kind == SERR_NOT_FOUND)
            held_version_missing(t, c->master, c->child, err);
        return -1;
    }
    vocab_delta *d = whole_delta(&v, -1, err);
    int rc = d ? w_unlink(t, txn, c->master, c->child, err) : -1;
    if (rc == 0)
        rc = propagate(t, txn, c->master, d, v.n, saved, err);
    free(d);
    vocabulary_free(&v);
    return rc;
}

int trees_detach(trees_svc *t, const char *master, const char *child, json_t **tree,
                 strata_error *err)
{
    /* a request naming no edge takes no lease (nor leaves one behind) */
    char parent[STORE_ID_MAX + 1];
    bool has = false;
    if (t->st->ops->tree_parent(t->st, NULL, child, parent, sizeof parent, &has, err) != 0)
        return -1;
    if (!has || strcmp(parent, master) != 0)
        return serr_set(err, SERR_NOT_FOUND, "%s is not a child of %s", child, master);
    pthread_mutex_lock(&t->mu);
    struct detach_ctx c = {master, child};
    const char *anchors[1] = {master};
    int rc = tree_change(t, anchors, 1, do_detach, &c, true, err);
    pthread_mutex_unlock(&t->mu);
    if (rc == 0 && tree)
        *tree = trees_get(t, master, 1, err);
    return rc;
}

/* A child's master follows the child's latest version: the delta from the
 * version the master records to the latest, both read in the transaction
 * that applies it and moves the record. Idempotent (a master already at
 * the latest is left alone) and order-free (two nodes announcing v2 and v3
 * in either order end at v3, counted once), so it is safe to run it again
 * from anywhere: after a save, from a batch, from the maintenance sweep. */
static int do_child_changed(trees_svc *t, store_txn *txn, void *arg, saved_list *saved,
                            strata_error *err)
{
    const char *child = arg;
    char parent[STORE_ID_MAX + 1];
    bool has = false;
    if (t->st->ops->tree_parent(t->st, txn, child, parent, sizeof parent, &has, err) != 0)
        return -1;
    if (!has)
        return 0;
    tree_child *kids = NULL;
    size_t nk = 0;
    if (t->st->ops->tree_children(t->st, txn, parent, &kids, &nk, err) != 0)
        return -1;
    uint64_t held = 0, cur = 0;
    for (size_t i = 0; i < nk; i++)
        if (strcmp(kids[i].id, child) == 0)
            held = kids[i].vkey;
    free(kids);
    store_head h;
    if (t->st->ops->get_head(t->st, txn, "corpus", child, &h, err) != 0)
        return -1;
    cur = h.latest_vkey;
    if (held == 0 || cur == 0 || held == cur)
        return 0;
    vocabulary a, b;
    if (load_vocab(t, txn, child, held, &a, err) != 0) {
        if (err->kind == SERR_NOT_FOUND)
            held_version_missing(t, parent, child, err);
        return -1;
    }
    if (load_vocab(t, txn, child, cur, &b, err) != 0) {
        vocabulary_free(&a);
        return -1;
    }
    size_t n = 0;
    vocab_delta *d = diff_delta(&a, &b, &n, err);
    int rc = d ? w_link(t, txn, parent, child, cur, err) : -1;
    if (rc == 0)
        rc = propagate(t, txn, parent, d, n, saved, err);
    free(d);
    vocabulary_free(&a);
    vocabulary_free(&b);
    return rc;
}

int trees_child_changed(trees_svc *t, const char *child, uint64_t old_vkey, uint64_t new_vkey,
                        strata_error *err)
{
    (void)old_vkey; /* the edge, read in the transaction, says what the master holds */
    (void)new_vkey; /* and the head what the child's latest is now */
    /* no parent now: an attach made later reads the child's latest in its
     * own transaction, so it includes this version */
    char parent[STORE_ID_MAX + 1];
    bool has = false;
    if (t->st->ops->tree_parent(t->st, NULL, child, parent, sizeof parent, &has, err) != 0)
        return -1;
    if (!has)
        return 0;
    pthread_mutex_lock(&t->mu);
    const char *anchors[1] = {child};
    int rc = tree_change(t, anchors, 1, do_child_changed, (void *)(uintptr_t)child, true, err);
    pthread_mutex_unlock(&t->mu);
    return rc;
}

typedef char tree_id[STORE_ID_MAX + 1];

struct sweep_ctx {
    trees_svc *t;
    tree_id *behind;
    size_t n, cap;
    /* without transactions: every edge, to find the roots */
    bool edges;
    tree_id *parents, *children;
    size_t ne, ecap;
    int failed;
};

static int keep_edge(struct sweep_ctx *c, const char *parent, const char *child)
{
    if (c->ne == c->ecap) {
        size_t cap = c->ecap ? c->ecap * 2 : 64;
        tree_id *np = realloc(c->parents, cap * sizeof *np);
        if (np != NULL)
            c->parents = np;
        tree_id *nc = np ? realloc(c->children, cap * sizeof *nc) : NULL;
        if (nc != NULL)
            c->children = nc;
        if (np == NULL || nc == NULL)
            return -1;
        c->ecap = cap;
    }
    snprintf(c->parents[c->ne], sizeof c->parents[0], "%s", parent);
    snprintf(c->children[c->ne++], sizeof c->children[0], "%s", child);
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

static int note_edge(void *ctx, const char *parent, const char *child, uint64_t vkey)
{
    struct sweep_ctx *c = ctx;
    if (c->edges && keep_edge(c, parent, child) != 0) {
        c->failed = 1;
        return 1;
    }
    store_head h;
    strata_error err;
    if (c->t->st->ops->get_head(c->t->st, NULL, "corpus", child, &h, &err) != 0 ||
        h.latest_vkey == 0 || h.latest_vkey == vkey)
        return 0;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        char(*nb)[STORE_ID_MAX + 1] = realloc(c->behind, cap * sizeof *nb);
        if (nb == NULL) {
            c->failed = 1;
            return 1;
        }
        c->behind = nb;
        c->cap = cap;
    }
    snprintf(c->behind[c->n++], sizeof c->behind[0], "%s", child);
    return 0;
}

/* Without transactions: each tree's lease taken for a moment (without
 * waiting), so that a tree whose last holder died mid-change is rebuilt
 * even if no change comes to it. */
static void check_roots(trees_svc *t, struct sweep_ctx *c)
{
    qsort(c->children, c->ne, sizeof c->children[0], cmp_id);
    qsort(c->parents, c->ne, sizeof c->parents[0], cmp_id);
    for (size_t i = 0; i < c->ne; i++) {
        if ((i > 0 && strcmp(c->parents[i], c->parents[i - 1]) == 0) ||
            bsearch(c->parents[i], c->children, c->ne, sizeof c->children[0], cmp_id) != NULL)
            continue; /* seen, or not a root */
        const char *anchors[1] = {c->parents[i]};
        strata_error e2;
        pthread_mutex_lock(&t->mu);
        if (tree_change(t, anchors, 1, NULL, NULL, false, &e2) != 0 && e2.kind != SERR_RETRY)
            slog_warn("tree of %s not checked: %s", c->parents[i], e2.detail);
        pthread_mutex_unlock(&t->mu);
    }
}

int trees_sweep(trees_svc *t, size_t *caught_up, strata_error *err)
{
    struct sweep_ctx c = {.t = t, .edges = !(t->st->ops->caps & STORE_CAP_TREE_TXN)};
    *caught_up = 0;
    int rc = t->st->ops->tree_edges(t->st, note_edge, &c, err);
    if (rc == 0 && c.failed)
        rc = serr_set(err, SERR_NOMEM, "out of memory listing tree edges");
    if (rc == 0 && c.edges)
        check_roots(t, &c);
    for (size_t i = 0; rc == 0 && i < c.n; i++) {
        if (trees_child_changed(t, c.behind[i], 0, 0, err) != 0)
            rc = -1;
        else
            (*caught_up)++;
    }
    free(c.behind);
    free(c.parents);
    free(c.children);
    return rc;
}

/* A child's vocabulary at the version its master records; when that
 * version no longer exists (deleted while the master aggregated it: never
 * through a delete's checks, but a tree must not stay stuck on it), the
 * master records the child's latest instead, or lets the child go when
 * the corpus has no version left (*gone). */
static int child_vocab_following(trees_svc *t, store_txn *txn, const char *master, tree_child *kid,
                                 vocabulary *v, bool *gone, strata_error *err)
{
    *gone = false;
    if (load_vocab(t, txn, kid->id, kid->vkey, v, err) == 0)
        return 0;
    if (err->kind != SERR_NOT_FOUND)
        return -1;
    strata_error cause = *err;
    store_head h;
    if (t->st->ops->get_head(t->st, txn, "corpus", kid->id, &h, err) != 0)
        return -1;
    if (h.latest_vkey == kid->vkey) {
        *err = cause; /* the latest itself is unreadable: not a deleted version */
        return -1;
    }
    char was[SEMVER_STR_MAX];
    semver_format(kid->vkey, was);
    if (h.latest_vkey == 0) {
        slog_warn("master %s aggregated corpus %s at %s, which was deleted: the child is let go",
                  master, kid->id, was);
        *gone = true;
        return w_unlink(t, txn, master, kid->id, err);
    }
    slog_warn("master %s aggregated corpus %s at %s, which was deleted: it follows the latest",
              master, kid->id, was);
    if (w_link(t, txn, master, kid->id, h.latest_vkey, err) != 0)
        return -1;
    kid->vkey = h.latest_vkey;
    return load_vocab(t, txn, kid->id, kid->vkey, v, err);
}

static int do_reaggregate(trees_svc *t, store_txn *txn, void *arg, saved_list *saved,
                          strata_error *err)
{
    const char *master = arg;
    tree_child *kids = NULL;
    size_t nk = 0;
    if (w_clear(t, txn, master, err) != 0 ||
        t->st->ops->tree_children(t->st, txn, master, &kids, &nk, err) != 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < nk; i++) {
        vocabulary v;
        bool gone = false;
        rc = child_vocab_following(t, txn, master, &kids[i], &v, &gone, err);
        if (rc != 0)
            break;
        if (gone)
            continue;
        vocab_delta *d = whole_delta(&v, +1, err);
        rc = d ? w_vocab_apply(t, txn, master, d, v.n, err) : -1;
        free(d);
        vocabulary_free(&v);
    }
    free(kids);
    uint64_t vkey;
    if (rc == 0)
        rc = save_master(t, txn, master, NULL, saved, &vkey, err);
    char parent[STORE_ID_MAX + 1];
    bool has = false;
    if (rc == 0)
        rc = t->st->ops->tree_parent(t->st, txn, master, parent, sizeof parent, &has, err);
    if (rc == 0 && has) /* the parent aggregates this version from now on */
        rc = w_link(t, txn, parent, master, vkey, err);
    return rc;
}

int trees_reaggregate(trees_svc *t, const char *master, strata_error *err)
{
    pthread_mutex_lock(&t->mu);
    const char *anchors[1] = {master};
    int rc = tree_change(t, anchors, 1, do_reaggregate, (void *)(uintptr_t)master, true, err);
    pthread_mutex_unlock(&t->mu);
    return rc;
}

bool trees_is_master(trees_svc *t, const char *id)
{
    size_t n = 0;
    strata_error err;
    return child_count(t, NULL, id, &n, &err) == 0 && n > 0;
}

bool trees_parent_of(trees_svc *t, const char *child, char *parent, size_t cap)
{
    bool has = false;
    strata_error err;
    return t->st->ops->tree_parent(t->st, NULL, child, parent, cap, &has, &err) == 0 && has;
}

/* ---- reading ---------------------------------------------------------------------- */

static json_t *node_json(trees_svc *t, const char *id, uint64_t held, int depth, strata_error *err)
{
    store_version v;
    if (versions_get(t->vs, "corpus", id, "latest", &v, err) != 0)
        return NULL;
    char ver[SEMVER_STR_MAX];
    semver_format(v.vkey, ver);
    json_t *node = json_pack("{s:s, s:s, s:O?, s:O?}", "id", id, "version", ver, "vocabulary_size",
                             json_object_get(v.doc, "vocabulary_size"), "corpus_type",
                             json_object_get(v.doc, "corpus_type"));
    store_version_clear(&v);
    if (held) {
        semver_format(held, ver);
        json_object_set_new(node, "aggregated_version", json_string(ver));
    }
    tree_child *kids = NULL;
    size_t nk = 0;
    if (t->st->ops->tree_children(t->st, NULL, id, &kids, &nk, err) != 0) {
        json_decref(node);
        return NULL;
    }
    json_object_set_new(node, "is_master", json_boolean(nk > 0));
    if (nk > 0 && depth <= 0) {
        json_object_set_new(node, "children_truncated", json_true());
    } else if (nk > 0) {
        json_t *arr = json_array();
        for (size_t i = 0; i < nk; i++) {
            json_t *c = node_json(t, kids[i].id, kids[i].vkey, depth - 1, err);
            if (c == NULL) {
                json_decref(arr);
                json_decref(node);
                free(kids);
                return NULL;
            }
            json_array_append_new(arr, c);
        }
        json_object_set_new(node, "children", arr);
    }
    free(kids);
    return node;
}

json_t *trees_get(trees_svc *t, const char *master, int depth, strata_error *err)
{
    if (resource_id_check("master", master, STORE_ID_MAX, err) != 0)
        return NULL;
    if (depth < 0 || depth > TREE_DEPTH_MAX) {
        serr_set(err, SERR_INVALID, "depth must be 0-%d", TREE_DEPTH_MAX);
        return NULL;
    }
    return node_json(t, master, 0, depth, err);
}

json_t *trees_children(trees_svc *t, const char *master, strata_error *err)
{
    json_t *node = trees_get(t, master, 1, err);
    if (node == NULL)
        return NULL;
    json_t *kids = json_object_get(node, "children");
    /* "o" steals the reference: a fresh empty array must not leak */
    json_t *out =
        json_pack("{s:s, s:o}", "master", master, "items", kids ? json_incref(kids) : json_array());
    json_decref(node);
    return out;
}

int trees_vocabulary(trees_svc *t, const char *master, const char *after, size_t limit,
                     vocab_item **items, size_t *n, strata_error *err)
{
    if (resource_id_check("master", master, STORE_ID_MAX, err) != 0)
        return -1;
    if (!trees_is_master(t, master)) {
        uint64_t vkey;
        if (latest_vkey(t, NULL, master, &vkey, err) != 0)
            return -1;
        /* a master whose last child left has an empty vocabulary */
    }
    return t->st->ops->vocab_page(t->st, NULL, master, after, limit, items, n, err);
}
