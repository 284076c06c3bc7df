#include "trees.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "resource_types.h"
#include "vocabulary.h"

#define VOCAB_PAGE   10000
#define CHILDREN_MAX 10000

struct trees_svc {
    versions_svc *vs;
    store *st;
    pthread_mutex_t mu; /* tree changes one at a time; recursive: a save inside may cascade */
    trees_saved_fn saved;
    void *saved_ctx;
};

/* Master versions created by one change, announced after it commits. */
typedef struct saved_list {
    struct {
        char id[STORE_ID_MAX + 1];
        uint64_t vkey;
    } items[TREE_DEPTH_MAX + 2];
    int n;
} saved_list;

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
    return t;
}

void trees_free(trees_svc *t)
{
    if (t == NULL)
        return;
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
    int rc = versions_save(t->vs, &rq, &v, &created, err);
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
        if (t->st->ops->vocab_apply(t->st, txn, master, d, n, NULL, err) != 0 ||
            save_master(t, txn, master, NULL, saved, &vkey, err) != 0)
            return -1;
        char parent[STORE_ID_MAX + 1];
        bool has = false;
        if (t->st->ops->tree_parent(t->st, txn, master, parent, sizeof parent, &has, err) != 0)
            return -1;
        if (!has)
            return 0;
        if (t->st->ops->tree_link(t->st, txn, parent, master, vkey, err) != 0)
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
    for (size_t i = 0; rc == 0 && i < c->n; i++) {
        uint64_t vkey;
        vocabulary v;
        /* checked again here, atomically with the link: another node may
         * have attached the child (or changed the tree) since */
        rc = check_attachable(t, c->master, c->children[i], err);
        if (rc == 0)
            rc = latest_vkey(t, txn, c->children[i], &vkey, err);
        if (rc == 0)
            rc = t->st->ops->tree_link(t->st, txn, c->master, c->children[i], vkey, err);
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
            rc = t->st->ops->vocab_apply(t->st, txn, c->master, d, v.n, NULL, err);
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
        rc = in_tree_txn(t, do_attach, &c, err);
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
        rc = in_tree_txn(t, do_attach, &c, err);
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
    if (load_vocab(t, txn, c->child, held, &v, err) != 0)
        return -1;
    vocab_delta *d = whole_delta(&v, -1, err);
    int rc = d ? t->st->ops->tree_unlink(t->st, txn, c->master, c->child, err) : -1;
    if (rc == 0)
        rc = propagate(t, txn, c->master, d, v.n, saved, err);
    free(d);
    vocabulary_free(&v);
    return rc;
}

int trees_detach(trees_svc *t, const char *master, const char *child, json_t **tree,
                 strata_error *err)
{
    pthread_mutex_lock(&t->mu);
    struct detach_ctx c = {master, child};
    int rc = in_tree_txn(t, do_detach, &c, err);
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
    if (load_vocab(t, txn, child, held, &a, err) != 0)
        return -1;
    if (load_vocab(t, txn, child, cur, &b, err) != 0) {
        vocabulary_free(&a);
        return -1;
    }
    size_t n = 0;
    vocab_delta *d = diff_delta(&a, &b, &n, err);
    int rc = d ? t->st->ops->tree_link(t->st, txn, parent, child, cur, err) : -1;
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
    int rc = in_tree_txn(t, do_child_changed, (void *)(uintptr_t)child, err);
    pthread_mutex_unlock(&t->mu);
    return rc;
}

struct sweep_ctx {
    trees_svc *t;
    char (*behind)[STORE_ID_MAX + 1];
    size_t n, cap;
    int failed;
};

static int note_edge(void *ctx, const char *parent, const char *child, uint64_t vkey)
{
    (void)parent;
    struct sweep_ctx *c = ctx;
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

int trees_sweep(trees_svc *t, size_t *caught_up, strata_error *err)
{
    struct sweep_ctx c = {.t = t};
    *caught_up = 0;
    int rc = t->st->ops->tree_edges(t->st, note_edge, &c, err);
    if (rc == 0 && c.failed)
        rc = serr_set(err, SERR_NOMEM, "out of memory listing tree edges");
    for (size_t i = 0; rc == 0 && i < c.n; i++) {
        if (trees_child_changed(t, c.behind[i], 0, 0, err) != 0)
            rc = -1;
        else
            (*caught_up)++;
    }
    free(c.behind);
    return rc;
}

static int do_reaggregate(trees_svc *t, store_txn *txn, void *arg, saved_list *saved,
                          strata_error *err)
{
    const char *master = arg;
    tree_child *kids = NULL;
    size_t nk = 0;
    if (t->st->ops->vocab_clear(t->st, txn, master, err) != 0 ||
        t->st->ops->tree_children(t->st, txn, master, &kids, &nk, err) != 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < nk; i++) {
        vocabulary v;
        rc = load_vocab(t, txn, kids[i].id, kids[i].vkey, &v, err);
        if (rc != 0)
            break;
        vocab_delta *d = whole_delta(&v, +1, err);
        rc = d ? t->st->ops->vocab_apply(t->st, txn, master, d, v.n, NULL, err) : -1;
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
        rc = t->st->ops->tree_link(t->st, txn, parent, master, vkey, err);
    return rc;
}

int trees_reaggregate(trees_svc *t, const char *master, strata_error *err)
{
    pthread_mutex_lock(&t->mu);
    int rc = in_tree_txn(t, do_reaggregate, (void *)(uintptr_t)master, err);
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
