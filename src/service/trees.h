/* Corpus trees: a master corpus aggregates its children (corpora, or
 * masters of their own, to any depth). The master's vocabulary is the
 * union of its children's, with frequencies summed, kept incrementally:
 * per word, how many children contain it and the summed frequency. So
 * attaching, detaching or updating a child costs in proportion to that
 * child's vocabulary, not the tree's. Each change to a master is a new
 * master version whose content is a manifest naming the exact child
 * versions (and whose dependencies say the same); changes climb the tree
 * as vocabulary deltas, each master passing on only the words that
 * entered or left it and the frequency changes. */
/* Concurrency: on a store whose transactions hold tree writes
 * (STORE_CAP_TREE_TXN) every change runs in one transact(), which is what
 * keeps a master's aggregate exact when several nodes change one tree; on
 * one without (MongoDB) it runs under a lease per tree, and a change left
 * in doubt is rebuilt from the children by the tree's next holder (see
 * trees.c). A change that cannot get its tree in time fails with
 * SERR_RETRY. The process mutex only spares this node's threads from
 * waiting on each other. */
#ifndef STRATA_TREES_H
#define STRATA_TREES_H

#include <jansson.h>

#include "../common/error.h"
#include "../store/store.h"
#include "versions.h"

#define TREE_DEPTH_MAX 32

typedef struct trees_svc trees_svc;

/* Called after tree changes commit, for each master version created:
 * the cascade marks the master's other dependents stale. */
typedef void (*trees_saved_fn)(void *ctx, const char *master, uint64_t vkey);

trees_svc *trees_new(versions_svc *vs, strata_error *err);
void trees_free(trees_svc *t);
void trees_set_saved_hook(trees_svc *t, trees_saved_fn fn, void *ctx);

/* {"master": "english", "language": "en", "children": ["american",
 *  {"id": "british"}, {"id": "scots", "words": [...]}]} */
int trees_create(trees_svc *t, const json_t *body, json_t **tree, strata_error *err);
/* {"id": "x"} or {"id": "x", "words": [...]} (a new corpus) */
int trees_attach(trees_svc *t, const char *master, const json_t *child, json_t **tree,
                 strata_error *err);
int trees_detach(trees_svc *t, const char *master, const char *child, json_t **tree,
                 strata_error *err);
json_t *trees_get(trees_svc *t, const char *master, int depth, strata_error *err);
json_t *trees_children(trees_svc *t, const char *master, strata_error *err);
/* Sorted words after `after`; SERR_NOT_FOUND when master is not a master. */
int trees_vocabulary(trees_svc *t, const char *master, const char *after, size_t limit,
                     vocab_item **items, size_t *n, strata_error *err);

/* A child got a new version (a client save): its masters follow the
 * child's latest version, whatever old_vkey and new_vkey say (they are
 * hints). Idempotent; safe to call from any node at any time. */
int trees_child_changed(trees_svc *t, const char *child, uint64_t old_vkey, uint64_t new_vkey,
                        strata_error *err);
/* Rolls forward every master that records a child version older than the
 * child's latest (a node that died between a child's save and its
 * master's update leaves one behind); *caught_up counts them. */
int trees_sweep(trees_svc *t, size_t *caught_up, strata_error *err);
/* Corpus deletes and tree changes (defined in version_delete.c; its
 * place is versions.h, which this module does not own). A corpus delete's
 * tree checks (not aggregated by a master, not a master) hold only while
 * no tree change runs on its tree: where the store's transactions do not
 * hold tree writes, the guard runs body (the checks and the delete) under
 * the lease of the corpus's tree; elsewhere it just runs body. The guard
 * returns body's result, or -1 with *err set (SERR_RETRY: the tree stayed
 * busy) without running it. trees_new installs the trees service's guard,
 * trees_free removes it. versions_set_delete_guard fails (SERR_NOMEM) only
 * when too many services have one; fn NULL removes svc's. Thread safe. */
typedef int (*versions_delete_guard)(void *ctx, const char *corpus,
                                     int (*body)(void *arg, strata_error *err), void *arg,
                                     strata_error *err);
int versions_set_delete_guard(versions_svc *svc, versions_delete_guard fn, void *ctx,
                              strata_error *err);

/* Rebuilds a master's aggregate from its children, from scratch. A child
 * whose recorded version no longer exists is linked again at its latest
 * version, or let go when the corpus has none. */
int trees_reaggregate(trees_svc *t, const char *master, strata_error *err);
bool trees_is_master(trees_svc *t, const char *id);
/* The master that aggregates child, if any. */
bool trees_parent_of(trees_svc *t, const char *child, char *parent, size_t cap);

#endif
