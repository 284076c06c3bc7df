/* The store: version records, the one role that may never lose data, and
 * the place where every node agrees (see "Coordination" below).
 *
 * Versions. Each resource (type, id) has a head: the key of its latest
 * version and the highest key ever issued. A version record is immutable
 * once written; whether it is the latest, and what it supersedes or is
 * superseded by, are derived from the head and from its neighbours when it
 * is read. A new version is written with a compare-and-swap on the head
 * (expected latest and expected max), so backends without multi-document
 * transactions (MongoDB: a head document moved by findAndModify plus a
 * unique (type, id, vkey) index) keep the invariants: versions unique and
 * strictly increasing, exactly one latest, and a key never issued twice
 * even after deletions. A version written but not linked by the head (a
 * crash in between) is ignored by every reader. A lost race returns
 * SERR_CONFLICT and the service retries from a fresh head.
 *
 * A head outlives its versions: deleting a resource (or every version of
 * it) leaves the head with no latest (latest_vkey 0) and max_vkey as it
 * was, so that the resource, saved again, numbers on above every key it
 * ever had. Such a resource is absent to every reader (get_version,
 * list_versions, list_resources, dependents, version_pinned, set_stale)
 * until a version is put again.
 *
 * Coordination. Several processes (nodes) may use one store at once; the
 * store is where they agree, never a lock of one process:
 *  - blobs: a save claims a blob key (blob_claim) before it relies on the
 *    blob, and put_version consumes the claim in the version's own write;
 *    the collector dooms a key (blob_collect_begin) only when no version
 *    references it and no claim stands, and a claim is refused while a key
 *    is doomed. So a blob a 2xx acknowledged is never collected.
 *  - maintenance runs under a lease (lease_acquire) that expires when its
 *    holder stops renewing it; its token fences a holder that lost it.
 *  - read-check-write sequences (batches, tree changes, guarded deletes)
 *    run in transact(), which the backend may run again from the start.
 *
 * Errors. Every operation returns 0, or -1 with err set: SERR_NOT_FOUND
 * as documented per operation, SERR_CONFLICT for a lost compare-and-swap,
 * SERR_RETRY for a transient conflict between writers (retryable as a
 * whole), SERR_UNAVAILABLE or SERR_IO when the backend fails, SERR_NOMEM.
 * Outputs are undefined on failure unless stated; nothing is left written
 * by a failed write. Thread safety: every operation may be called from any
 * thread at once; a store_txn belongs to the one thread that runs the
 * transact() callback it was handed to. Callbacks (blob_refs, tree_edges,
 * blob_collecting) run on the caller's thread and must not call the store.
 *
 * Backends sit behind a vtable chosen by URL (sqlite:PATH, mongodb://...)
 * and declare what they can do in caps (STORE_CAP_*). */
#ifndef STRATA_STORE_H
#define STRATA_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../codec/sha256.h"
#include "../common/error.h"
#include "../common/semver.h"

#define STORE_TYPE_MAX     16
#define STORE_ID_MAX       200
#define STORE_NS_MAX       64
#define STORE_LIST_MAX     1000
#define STORE_LIST_DEFAULT 50

/* One version. `doc` holds everything a client sees besides the chain
 * fields: content_location, metadata, tags, ttl, dependencies, and the
 * type's own fields (owned; may be NULL when empty). */
typedef struct store_version {
    char type[STORE_TYPE_MAX];
    char id[STORE_ID_MAX + 1];
    char ns[STORE_NS_MAX + 1];
    uint64_t vkey;
    int64_t created_at_ms;
    char data_hash[SHA256_HEX_LEN + 1];
    char blob_key[SHA256_HEX_LEN + 1]; /* "" when the content is inline */
    bool is_latest;
    uint64_t supersedes;    /* vkey, 0 for none */
    uint64_t superseded_by; /* vkey, 0 for none */
    json_t *doc;
    unsigned char *content; /* inline content (owned), NULL when in a blob */
    size_t content_len;
    uint64_t access_count;
    int64_t last_accessed_ms;
    bool stale;           /* of the resource, reported on its latest version */
    json_t *stale_reason; /* owned, may be NULL */
    /* Set by put_version when, in the same write, no version of any
     * resource depended on (type, id); false when something did, or when
     * the backend does not tell. */
    bool no_dependents;
} store_version;

void store_version_free(store_version *v);
void store_version_clear(store_version *v);

typedef struct store_head {
    bool exists;          /* some key was ever issued (true after a delete too) */
    uint64_t latest_vkey; /* 0 when there is no version: never saved, deleted, or emptied */
    uint64_t max_vkey;    /* the highest key ever issued, never lowered */
    char latest_hash[SHA256_HEX_LEN + 1]; /* data hash of the latest ("" when none) */
} store_head;

/* A dependency as stored: (type, id) and an optional exact version. */
typedef struct store_dep {
    char type[STORE_TYPE_MAX];
    char id[STORE_ID_MAX + 1];
    uint64_t vkey; /* 0 = whatever is latest */
} store_dep;

/* A vocabulary change for a master's aggregate: the word, the change in
 * how many of its children contain it, and in its summed frequency. */
typedef struct vocab_delta {
    const char *word;
    int count_delta;
    int64_t freq_delta;
    int presence; /* out: +1 when the word entered the master, -1 when it left */
} vocab_delta;

typedef struct vocab_item {
    char *word;
    int64_t children; /* children containing it */
    int64_t frequency;
} vocab_item;

typedef struct tree_child {
    char id[STORE_ID_MAX + 1];
    uint64_t vkey; /* the child version the master aggregates */
} tree_child;

typedef struct store_tombstone {
    int64_t removed_at_ms;
    char removed_by[128];
} store_tombstone;

/* Access counts gathered in memory, added in bulk: count and last_ms in,
 * total and total_last_ms out (the stored totals after the addition; 0
 * when the version no longer exists). */
typedef struct store_access {
    const char *type;
    const char *id;
    uint64_t vkey;
    uint64_t count;
    int64_t last_ms;
    uint64_t total;
    int64_t total_last_ms;
} store_access;

typedef struct store_list_opts {
    const char *cursor; /* opaque, from a previous page; NULL for the first */
    size_t limit;
    const char *ns;  /* resources: filter by namespace */
    const char *tag; /* resources: latest version carries this tag */
    int stale;       /* resources: -1 any, 0 fresh only, 1 stale only */
} store_list_opts;

/* Items are appended to `items` (array of store_version*, caller frees
 * each); *next is an opaque cursor (caller frees) or NULL at the end. */
typedef struct store_page {
    store_version **items;
    size_t count;
    char *next;
} store_page;

void store_page_free(store_page *p);
void vocab_items_free(vocab_item *items, size_t n);

typedef struct store store;
typedef struct store_txn store_txn;

/* A transaction body: reads and writes through txn. Return 0 to commit,
 * -1 with err set to roll back; SERR_RETRY asks transact() to run it
 * again. It may run more than once, so it must not keep effects outside
 * the store from an earlier run (reset what it collects on entry). */
typedef int (*store_txn_fn)(store_txn *txn, void *ctx, strata_error *err);

/* Capabilities (store_ops.caps). */
#define STORE_CAP_TRANSACTIONS (1u << 0) /* transact() is atomic across records */
#define STORE_CAP_BLOB_CLAIMS  (1u << 1) /* blob_claim / blob_collect_* coordinate collectors */
#define STORE_CAP_LEASES       (1u << 2) /* lease_acquire / lease_release */
/* The tree writes (tree_link, tree_unlink, vocab_apply, vocab_clear) made
 * through a txn commit and roll back with it. Without it a tree change
 * cannot be made atomic by transact() (even where version writes are):
 * the service runs it under its trees' leases instead (trees.c). */
#define STORE_CAP_TREE_TXN (1u << 3)

#define STORE_TRANSACT_ATTEMPTS 8

typedef struct store_ops {
    const char *name;
    unsigned caps; /* STORE_CAP_* */
    /* 0 when the backend answers (for /ready); SERR_UNAVAILABLE otherwise. */
    int (*ping)(store *s, strata_error *err);
    /* Runs fn in one transaction and commits it; runs it again (up to
     * STORE_TRANSACT_ATTEMPTS times, backing off) when it fails with
     * SERR_RETRY or the backend reports a transient conflict. Returns fn's
     * error, or SERR_RETRY when the attempts ran out. Not re-entrant: fn
     * must not call transact() (pass txn down instead). */
    int (*transact)(store *s, store_txn_fn fn, void *ctx, strata_error *err);
    /* Reads take txn to see a batch's own writes; NULL reads committed data. */
    int (*get_head)(store *s, store_txn *txn, const char *type, const char *id, store_head *out,
                    strata_error *err);
    /* vkey 0 means the latest. SERR_NOT_FOUND when absent. */
    int (*get_version)(store *s, store_txn *txn, const char *type, const char *id, uint64_t vkey,
                       store_version *out, strata_error *err);
    /* Writes v as the new latest iff the head still has expected_latest and
     * expected_max; v->vkey must exceed expected_max. Links the chain
     * (supersedes / superseded_by) and indexes the dependencies. From a
     * head with no latest (expected_latest 0, expected_max as read, which
     * is above 0 after a delete) v starts a new life: the tombstones of
     * earlier versions stay, the resource's own (vkey 0) is cleared.
     * claim: for a version in a blob, the claim blob_claim gave for
     * v->blob_key, consumed by this write (SERR_RETRY when it no longer
     * stands: claim again); 0 for inline content. On success v's derived
     * fields (is_latest, supersedes, superseded_by) are set, and
     * no_dependents may be (a backend that sets it saves the caller its
     * look for dependents to cascade to). */
    int (*put_version)(store *s, store_txn *txn, store_version *v, uint64_t expected_latest,
                       uint64_t expected_max, const store_dep *deps, size_t ndeps, uint64_t claim,
                       strata_error *err);
    int (*list_versions)(store *s, const char *type, const char *id, const store_list_opts *o,
                         store_page *out, strata_error *err);
    /* Latest records of a type, by id, with the filters of opts; a
     * resource with no latest version (deleted) is not listed. */
    int (*list_resources)(store *s, const char *type, const store_list_opts *o, store_page *out,
                          strata_error *err);
    /* Removes one version and repairs the chain; the head moves to the
     * newest remaining version when the latest goes. A tombstone records
     * removed_by ("request", "retention: ...") and when. */
    int (*delete_version)(store *s, store_txn *txn, const char *type, const char *id, uint64_t vkey,
                          const char *removed_by, strata_error *err);
    /* Removes a resource's versions and dependencies, leaving tombstones
     * for it (vkey 0) and each version. The head stays with latest 0 and
     * its max_vkey, so numbering goes on above it if the resource is saved
     * again. *count gets the number of versions removed. SERR_NOT_FOUND
     * when there is no head, or the resource is already deleted (no latest
     * and a resource tombstone); a head emptied one version at a time is
     * deleted with *count 0. */
    int (*delete_resource)(store *s, store_txn *txn, const char *type, const char *id,
                           const char *removed_by, size_t *count, strata_error *err);
    /* The tombstone of a removed version (vkey 0: of the removed resource);
     * SERR_NOT_FOUND when there is none. A version's tombstone is kept for
     * good (its key is never issued again); the resource's goes when the
     * resource is saved again. */
    int (*get_tombstone)(store *s, const char *type, const char *id, uint64_t vkey,
                         store_tombstone *out, strata_error *err);
    /* Does the latest version of another resource depend on exactly this
     * version? (by names the first such resource, "type/id") */
    int (*version_pinned)(store *s, const char *type, const char *id, uint64_t vkey, bool *pinned,
                          char *by, size_t by_cap, strata_error *err);
    /* Calls fn for every blob key some version references, once each; fn
     * returning non-zero (it could not keep the key) fails the walk with
     * SERR_NOMEM, since a partial mark must not drive a sweep. */
    int (*blob_refs)(store *s, int (*fn)(void *ctx, const char *key), void *ctx, strata_error *err);
    int (*blob_referenced)(store *s, const char *key, bool *referenced, strata_error *err);
    /* Resources whose latest version depends on (type, id): their latest
     * records ordered by (type, id), o->limit per page, from o->cursor
     * (only limit and cursor of o are read). SERR_INVALID for a cursor of
     * another list. */
    int (*dependents)(store *s, const char *type, const char *id, const store_list_opts *o,
                      store_page *out, strata_error *err);
    /* Adds access counts gathered in memory, all n in one write; fills
     * each item's totals. Counts live beside the version records, which
     * they never change. */
    int (*add_access)(store *s, store_access *items, size_t n, strata_error *err);
    /* Marks a resource stale (reason: a JSON object, borrowed), or clears it.
     * SERR_NOT_FOUND when it has no latest version. */
    int (*set_stale)(store *s, store_txn *txn, const char *type, const char *id, bool stale,
                     const json_t *reason, strata_error *err);

    /* Corpus trees: each child has at most one parent; the aggregate of a
     * master holds, per word, how many children contain it and the summed
     * frequency. Derived data: it can always be rebuilt from the children. */
    int (*tree_parent)(store *s, store_txn *txn, const char *child, char *parent, size_t cap,
                       bool *has_parent, strata_error *err);
    int (*tree_children)(store *s, store_txn *txn, const char *parent, tree_child **out, size_t *n,
                         strata_error *err);
    int (*tree_link)(store *s, store_txn *txn, const char *parent, const char *child,
                     uint64_t child_vkey, strata_error *err);
    int (*tree_unlink)(store *s, store_txn *txn, const char *parent, const char *child,
                       strata_error *err);
    /* Applies deltas to a master's aggregate; fills each delta's presence
     * and *size_delta (words that entered minus words that left). */
    int (*vocab_apply)(store *s, store_txn *txn, const char *master, vocab_delta *d, size_t n,
                       int64_t *size_delta, strata_error *err);
    int (*vocab_clear)(store *s, store_txn *txn, const char *master, strata_error *err);
    /* Words after `after` ("" for the first), sorted bytewise. */
    int (*vocab_page)(store *s, store_txn *txn, const char *master, const char *after, size_t limit,
                      vocab_item **out, size_t *n, strata_error *err);
    int (*vocab_size)(store *s, store_txn *txn, const char *master, uint64_t *n, strata_error *err);

    /* Every tree edge (parent, child, the child version the parent
     * aggregates), in no particular order; fn returning non-zero stops. */
    int (*tree_edges)(store *s,
                      int (*fn)(void *ctx, const char *parent, const char *child, uint64_t vkey),
                      void *ctx, strata_error *err);

    /* Blob claims. Records that a save is about to rely on blob `key`
     * (write it, or share the one there) and returns the claim's id in
     * *claim. SERR_RETRY while a collector has doomed the key (try again
     * in a moment: the key is free once the collector ends). With txn the
     * claim is part of that transaction. */
    int (*blob_claim)(store *s, store_txn *txn, const char *key, uint64_t *claim,
                      strata_error *err);
    /* Drops a claim that will not be consumed (a save that failed). */
    int (*blob_release)(store *s, const char *key, uint64_t claim, strata_error *err);
    /* The collector's decision, atomic: claims made before claims_before_ms
     * are dropped as abandoned; then, if no version references key and no
     * claim stands, the key is doomed under the collector's lease token
     * and *doomed is true: no claim is granted until blob_collect_end. */
    int (*blob_collect_begin)(store *s, const char *key, uint64_t token, int64_t claims_before_ms,
                              bool *doomed, strata_error *err);
    int (*blob_collect_end)(store *s, const char *key, strata_error *err);
    /* Doomed keys (a collector may have died before it ended them), with
     * the lease token that doomed each. */
    int (*blob_collecting)(store *s, int (*fn)(void *ctx, const char *key, uint64_t token),
                           void *ctx, strata_error *err);

    /* Leases: takes or renews lease `name` for holder (any string unique
     * to the process) until ttl_ms from now. *held tells whether holder
     * has it; *token grows each time the lease changes hands (a fencing
     * token). *abandoned (may be NULL) is true when this call took the
     * lease over from another holder whose lease expired without
     * lease_release (that holder may have died in the middle of its
     * work); false when it was free, released, or already holder's, and
     * when holder did not get it. Expiry uses the clock of the machine
     * the store lives on (SQLite: this host; a server: the server's).
     * Outputs are false/0 on failure. */
    int (*lease_acquire)(store *s, const char *name, const char *holder, uint64_t ttl_ms,
                         bool *held, uint64_t *token, bool *abandoned, strata_error *err);
    /* Gives the lease up if holder has it (a later taker is not told
     * abandoned). */
    int (*lease_release)(store *s, const char *name, const char *holder, strata_error *err);

    void (*close)(store *s);
} store_ops;

struct store {
    const store_ops *ops;
};

/* Opens the backend named by url ("sqlite:PATH"). */
store *store_open(const char *url, strata_error *err);
void store_close(store *s);

/* Opaque list cursors: a key encoded as hex with a kind prefix. */
char *store_cursor_encode(char kind, uint64_t key);
char *store_cursor_encode_str(char kind, const char *key);
int store_cursor_decode(const char *cursor, char kind, uint64_t *key);
int store_cursor_decode_str(const char *cursor, char kind, char *out, size_t cap);

#endif
