/* What the MongoDB store's files share (not for other modules).
 *   store_mongo.c     the vtable, open, close, ping, transact
 *   mongo_ops.c       a pooled client per operation, BSON reading, the
 *                     calls with their error mapping, the server's clock
 *   mongo_schema.c    collections, indexes, the schema version document
 *   mongo_heads.c     heads: reading, waiting out and resolving a
 *                     reservation a writer left behind
 *   mongo_versions.c  versions: put, get, lists, deletes, tombstones,
 *                     pins, dependents, staleness
 *   mongo_trees.c     tree edges and master vocabularies
 *   mongo_coord.c     blob references, claims, collection, leases and
 *                     access counts
 *
 * Only single-document atomic operations are used (FerretDB v1 and a
 * standalone MongoDB have no multi-document transactions), and of those
 * only the ones FerretDB v1 really makes atomic: an insert refused by a
 * unique index, and a delete by _id (exactly one deleter counts it).
 * FerretDB v1.24 runs update and findAndModify as a read, a change in its
 * own memory and a write by _id, so a filtered update is no
 * compare-and-swap there and $inc loses increments under concurrency.
 *
 * Registers (heads, leases): a value that moves by compare-and-swap is a
 * chain of immutable state documents "<key>#<seq, 16 hex>"; moving it
 * from state q is inserting state q + 1, which exactly one writer gets.
 * The current state is the highest seq, found from a pointer document
 * (store_pointers: a seq q and a copy of state q, kept close by each
 * writer) by looking up q + 1, q + 2 ... by _id until one is missing.
 * States are never deleted, so that no seq can be inserted twice (see
 * the report of issue 14 on pruning them).
 *
 * Writing a version (put_version), in order:
 *  1. reserve: the head moves from (latest L, max M, no reservation) to
 *     (L, max X, reservation X + a nonce). Losers get SERR_CONFLICT and
 *     have written nothing. X is issued from here on: max never goes
 *     down, so X is never issued again.
 *  2. the version document X and its dependencies are inserted; for a
 *     blob, the save's claim is consumed after the insert (so that a
 *     collector finds the reference before the claim is gone).
 *  3. seal: {_id: X, ok: true} is inserted in store_seals.
 *  4. finalize: the head moves from reservation X to latest X.
 * Readers go through the head: a document is visible only when floor <
 * k <= max, k is not the reserved key and not a hole. So a version is
 * seen whole or not at all. A reservation whose writer died is resolved
 * by whoever waits on it for MH_GRACE_MS (mongo_heads.c): it inserts
 * {_id: X, ok: false} in store_seals; the first of the writer's seal and
 * the resolver's void to be inserted decides. Sealed, the version is
 * rolled forward; voided, X becomes a hole of the head (invisible even if
 * a late writer inserts its document) and the reservation is dropped. A
 * writer that gives its own key up puts a blocker document at X's _id
 * instead (t "", so no read takes it for a version): no document can
 * appear there any more, so X needs no hole.
 *
 * A delete of a whole resource sets the head's floor to its max before it
 * removes the documents, so that documents a crash left behind stay
 * invisible in the resource's next life.
 *
 * transact() builds multi-head atomicity from the same two primitives: a
 * transaction moves each head it touches to a pending state and commits
 * with one insert in store_seals (see "transactions" below). Pins: a save
 * with an exact dependency indexes it, then re-reads the version it
 * depends on (deps_still_there); version_pinned counts a dependent's save
 * under way (reservation or undecided intent). A delete that hides the
 * version (its pending state) before it checks pins is therefore never
 * missed by such a save, and version_delete.c deletes first, then checks
 * pins in the same transaction. */
#ifndef STRATA_MONGO_INTERNAL_H
#define STRATA_MONGO_INTERNAL_H

#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../common/mongo_conn.h"
#include "store.h"

/* Collections (in the URL's database, all named store_*). */
enum {
    MC_META,
    MC_HEADS,
    MC_VERSIONS,
    MC_DEPS,
    MC_TOMBS,
    MC_ACCESS,
    MC_EDGES,
    MC_VOCAB,
    MC_VSIZE,
    MC_BLOBS,
    MC_LEASES,
    MC_PTRS,
    MC_CLAIMS,
    MC_SEALS,
    MC_COUNT
};
extern const char *const MC_NAMES[MC_COUNT];

typedef struct mongo_store {
    store base;
    mongo_conn *conn;
} mongo_store;

/* ---- transactions (store_mongo.c, mongo_heads.c) ----
 * A transaction T (id "txn:<16 hex>") moves every head it changes to a
 * pending state: the head's state as it was (top level; {nx: true} for a
 * head that did not exist), px = T, pi = the state T intends, pks = the
 * version keys T inserted for it. Readers see pi when store_seals holds
 * {_id: T, ok: true}, the state as it was otherwise (T voided or not yet
 * decided). Version documents are inserted before the decision; removals
 * (deleted versions, tombstones) wait until after it, so until then the
 * pending states are T's only visible change. Commit is the one insert of
 * {_id: T, ok: true}; abort (or a writer that waited out a dead T's grace)
 * inserts {_id: T, ok: false}: the first insert decides. Whoever finds a
 * decided pending state writes the next state from the one it stands for
 * (rolls forward or back), so a crash of T's node leaves all or nothing.
 * Writers wait for an undecided T (mh_settled_w) up to MH_GRACE_MS of no
 * progress (a thread of T beats "hb:T" in store_seals every MH_BEAT_MS
 * from T's first head on, for at most MH_BEAT_MAX_MS), then void it.
 * A version T deletes stays a hole of its head, and is listed in the
 * head's "dh" (owed removals: {k, b, at}), until its document is removed;
 * T's commit removes them, and whoever finds a settled head that still
 * owes some (T's node failed or crashed) completes them (mh_settled_w).
 * T never waits while it holds pending states: meeting another's, it
 * aborts itself, waits with nothing held and returns SERR_RETRY. */
#define TX_KEYS_MAX 16
typedef struct tx_head {
    char type[STORE_TYPE_MAX];
    char id[STORE_ID_MAX + 1];
    uint64_t seq;     /* of T's last pending state of the head */
    bool base_exists; /* the head as it was before T */
    bson_t base;      /* its fields (no _id, q) */
    bson_t want;      /* the state T intends (fields) */
    size_t nkeys, ndropped;
    uint64_t keys[TX_KEYS_MAX];    /* versions T inserted */
    uint64_t dropped[TX_KEYS_MAX]; /* versions T deleted (holes in want until removed) */
    bool gone[TX_KEYS_MAX];        /* dropped[i]'s removal done (its hole may go) */
    bool res_deleted;              /* T deleted the resource (and did not save it since) */
} tx_head;

enum { TXA_CLEAR_TOMB, TXA_DEL_VERSION, TXA_DEL_RESOURCE };
typedef struct mhead mhead;
typedef struct tx_after tx_after; /* a removal run once T is sealed (below) */

typedef struct tx_claim {
    char key[SHA256_HEX_LEN + 1];
    uint64_t claim;
} tx_claim;

struct store_txn {
    mongo_store *s;
    char tid[24];
    tx_head **heads;
    size_t nheads, cap_heads;
    tx_after *after;
    size_t nafter, cap_after;
    tx_claim *claims; /* made in T: dropped if T aborts */
    size_t nclaims, cap_claims;
    /* the beat thread (started with the first head, joined at the end) */
    pthread_mutex_t beat_mu;
    pthread_cond_t beat_cv;
    pthread_t beater;
    bool beating, beat_stop;
    uint64_t beats; /* written by the beater only while it runs */
};

/* One operation's client (from the pool) and the collections it opened. */
#define MG_OPEN_TX_MAX 8

typedef struct mg {
    mongo_store *s;
    mongoc_client_t *cl;
    mongoc_collection_t *c[MC_COUNT];
    /* Transactions this operation found undecided (heads read as before
     * them), so that a read of many heads can tell whether one of them
     * committed midway: mh_read_tx records, mg_open_tx_committed checks. */
    char open_tx[MG_OPEN_TX_MAX][24];
    int n_open_tx;
    bool open_tx_lost; /* more than MG_OPEN_TX_MAX: treated as committed */
} mg;

void mg_begin(mg *m, mongo_store *s);
/* Whether a transaction recorded in m as undecided has committed since (a
 * read of several heads then may show part of it: read again); the record
 * is emptied. -1 with *err when a decision cannot be read. */
int mg_open_tx_committed(mg *m, bool *committed, strata_error *err);
void mg_end(mg *m);
mongoc_collection_t *mg_coll(mg *m, int which);

/* Calls; each maps libmongoc's error through mongo_conn_error (a
 * duplicate key is SERR_CONFLICT). what names the operation. */
int mg_find_one(mg *m, int coll, const bson_t *filter, const bson_t *opts, bson_t *out, bool *found,
                const char *what, strata_error *err);
/* *matched (may be NULL) gets matchedCount (+ upsertedCount). */
int mg_update(mg *m, int coll, const bson_t *filter, const bson_t *update, bool upsert,
              int64_t *matched, const char *what, strata_error *err);
int mg_insert(mg *m, int coll, const bson_t *doc, const char *what, strata_error *err);
int mg_delete(mg *m, int coll, const bson_t *filter, bool many, int64_t *deleted, const char *what,
              strata_error *err);
/* findAndModify returning the document after the change; *found false
 * when nothing matched (and nothing was upserted). */
int mg_modify(mg *m, int coll, const bson_t *filter, const bson_t *update, bool upsert, bson_t *out,
              bool *found, const char *what, strata_error *err);
/* Calls row for each document until it returns non-zero (*stopped then
 * true; may be NULL). A failing cursor is an error, never a short walk. */
int mg_each(mg *m, int coll, const bson_t *filter, const bson_t *opts,
            int (*row)(const bson_t *doc, void *ctx), void *ctx, bool *stopped, const char *what,
            strata_error *err);
/* The server's clock, in ms since the epoch (one clock for every node). */
int mg_server_now(mg *m, int64_t *ms, strata_error *err);

/* BSON reading: absent or mistyped fields read as empty / 0 / false. */
void bs_str(const bson_t *d, const char *key, char *out, size_t cap);
int64_t bs_i64(const bson_t *d, const char *key);
bool bs_bool(const bson_t *d, const char *key);
bool bs_has(const bson_t *d, const char *key);

/* Ids of documents: "type/id" (types hold no '/'), "type/id@<16 hex>". */
void mk_head_id(char *out, size_t cap, const char *type, const char *id);
void mk_ver_id(char *out, size_t cap, const char *type, const char *id, uint64_t vkey);
#define MG_HID_MAX (STORE_TYPE_MAX + STORE_ID_MAX + 2)
#define MG_VID_MAX (MG_HID_MAX + 18)

/* Update or delete statements per command at most: FerretDB v1 holds a
 * PostgreSQL connection per statement until the command ends, so a
 * command with more statements than its pool (50) never ends. */
#define MG_BULK_MAX 16

uint64_t mg_random63(void);
void mg_sleep_ms(unsigned ms);

int mg_migrate(mongo_store *s, strata_error *err);

/* ---- registers (mongo_heads.c) ---- */
/* The current state of register key in coll (states) / MC_PTRS (pointer
 * "<tag>:<key>"): *seq 0 and *found false when it was never written;
 * state (when found) is the caller's to destroy. */
int reg_read(mg *m, int coll, char tag, const char *key, uint64_t *seq, bson_t *state, bool *found,
             strata_error *err);
/* Writes state seq (fields: the whole state, without _id and q); SERR_CONFLICT
 * when another writer has it. ptr_extra (may be NULL) is set on the
 * pointer document too (t, i for heads, so they can be listed). */
int reg_write(mg *m, int coll, char tag, const char *key, uint64_t seq, const bson_t *fields,
              const bson_t *ptr_extra, strata_error *err);

/* ---- heads (mongo_heads.c) ---- */
/* A head holds at most MH_HOLES_MAX holes: a reservation or a delete in
 * a transaction is refused (SERR_RETRY) while they are full, so the one
 * hole each may add always fits. */
#define MH_HOLES_MAX 64
/* What a pending state (see transactions above) stands for. */
enum { MH_PX_NONE, MH_PX_OWN, MH_PX_SEALED, MH_PX_VOID, MH_PX_OPEN };
struct mhead {
    bool exists;
    uint64_t seq; /* of the state read */
    uint64_t latest, max, floor;
    uint64_t pend; /* reserved key, 0 for none */
    char nonce[24];
    char hash[SHA256_HEX_LEN + 1];
    bool stale;
    size_t nholes; /* keys given up after a reservation (never visible) */
    uint64_t holes[MH_HOLES_MAX];
    int pxs; /* MH_PX_*: the state read is pending in transaction px */
    char px[24];
    size_t npks; /* the keys px inserted */
    uint64_t pks[TX_KEYS_MAX];
    uint64_t pil; /* MH_PX_OPEN: the latest px intends */
};

/* h: the head T saw when it deleted the resource (TXA_DEL_RESOURCE). */
struct tx_after {
    int kind;
    char type[STORE_TYPE_MAX];
    char id[STORE_ID_MAX + 1];
    uint64_t vkey;
    char by[128];
    mhead h;
};

/* The head as readers see it (a reservation may stand; a pending state is
 * read as what it stands for, see transactions above); doc (may be NULL)
 * gets the state's fields (empty when there is none), the caller destroys
 * it. mh_read_tx reads the pending states of transaction own (may be
 * NULL) as their intended state. h->seq is the seq of the state stored. */
int mh_read(mg *m, const char *type, const char *id, mhead *h, bson_t *doc, strata_error *err);
int mh_read_tx(mg *m, const char *own, const char *type, const char *id, mhead *h, bson_t *doc,
               strata_error *err);
/* The head for a writer outside a transaction: no reservation and no
 * undecided pending state (waits for them, resolves them after the
 * grace), decided pending states rolled forward or back. doc may be NULL. */
int mh_settled_w(mg *m, const char *type, const char *id, mhead *h, bson_t *doc, strata_error *err);
/* Moves the head from state `from` (its document from_doc) to the same
 * state with the fields of set replaced; SERR_CONFLICT when another
 * writer moved it first. written (may be NULL) gets the state written
 * (the caller destroys it) on success. */
int mh_move(mg *m, const char *type, const char *id, const mhead *from, const bson_t *from_doc,
            const bson_t *set, bson_t *written, strata_error *err);
/* The fields of a fresh head state (no version). */
void mh_fresh_fields(bson_t *d, const char *type, const char *id, const char *ns);
/* The head with no reservation, for readers: waits while one stands and
 * resolves it once the same one has stood for MH_GRACE_MS (pending states
 * of transactions are read as they stand, never waited for). */
int mh_settled(mg *m, const char *type, const char *id, mhead *h, strata_error *err);
#define MH_GRACE_MS 3000
/* Whether a document at vkey with this head is visible to readers. */
bool mh_visible(const mhead *h, uint64_t vkey);
/* Adds to filter the conditions on k for visible documents of the head
 * (sealed, floor < k <= max, k != reserved) with extra bounds lt/gt (0:
 * none). */
void mh_visible_filter(bson_t *filter, const mhead *h, uint64_t lt, uint64_t gt);
/* The head's fields for a latest version doc (l, lh, ns, tags). */
void mh_latest_fields(bson_t *set, const bson_t *vdoc);
/* Appends to set the head's holes with vkey added / removed. */
void mh_holes_plus(bson_t *set, const mhead *h, uint64_t vkey);
/* Puts a blocker (t "", i the head's id) at version _id vid of key vkey,
 * so that no version document can ever appear there (nor be read as one).
 * True when it stands now; false when a document holds the _id or the
 * server failed. */
bool mh_block_key(mg *m, const char *type, const char *id, uint64_t vkey, const char *vid);
void mh_holes_minus(bson_t *set, const mhead *h, uint64_t vkey);
/* Appends to set the head's owed removals (from its view doc) with
 * (vkey, by, now) added. */
void mh_owed_plus(bson_t *set, const bson_t *doc, uint64_t vkey, const char *by);
/* Whether the head's view doc owes the removal of vkey: a version deleted
 * by a sealed transaction whose removal is not done yet (its node may
 * have died before it). If so, by (cap bytes) and *at_ms get who removed
 * it and when (0 for a removal recorded without a time). */
bool mh_owed_find(const bson_t *doc, uint64_t vkey, char *by, size_t cap, int64_t *at_ms);
/* Seals (ok) or voids the version key vid in store_seals: the first
 * insert decides; *ok_out gets the decision that stands. */
int mh_decide(mg *m, const char *vid, bool ok, bool *ok_out, strata_error *err);

/* ---- a transaction's heads (mongo_heads.c) ---- */
/* The head (type, id) as txn sees it: its slot (*slot, NULL when txn has
 * not written it) and view. A head a writer holds (reservation, another
 * transaction's undecided state) is waited for when txn holds nothing;
 * else txn aborts itself, waits and returns SERR_RETRY. */
int tx_head_get(store_txn *t, mg *m, const char *type, const char *id, tx_head **slot, mhead *h,
                bson_t *doc, strata_error *err);
/* Moves the head to a pending state whose intended state is the view
 * (h, doc, from tx_head_get) with the fields of set replaced; newkey /
 * dropkey (0: none) a version key inserted / deleted by txn; *slot gets
 * the head's slot (created on the first write). SERR_RETRY
 * when another writer moved the head (or voided txn). */
int tx_head_put(store_txn *t, mg *m, const char *type, const char *id, tx_head **slot,
                const mhead *h, const bson_t *doc, const bson_t *set, uint64_t newkey,
                uint64_t dropkey, strata_error *err);
/* The state after x's last pending one: rolled back to its base, or
 * forward to what x intends (without the holes of versions removed
 * since); SERR_CONFLICT when another writer did it first. */
int tx_head_finish(mg *m, const tx_head *x, bool sealed, strata_error *err);
void tx_head_release(tx_head *x);
/* Adds a removal to run once txn is sealed. */
int tx_after_add(store_txn *t, const tx_after *a, strata_error *err);
/* Starts txn's beat thread unless it runs (it shows txn is alive to
 * writers waiting on its heads, whatever txn's caller is doing); 0 or
 * SERR_INTERNAL when no thread can be started. tx_beat_stop joins it (a
 * no-op when none runs). Called from txn's thread only. */
#define MH_BEAT_MS     500
#define MH_BEAT_MAX_MS (10 * 60 * 1000)
int tx_beat_start(store_txn *t, strata_error *err);
void tx_beat_stop(store_txn *t);
/* Gives txn up (void decided, heads rolled back, its versions and claims
 * dropped; best effort: resolvers finish it); txn is empty after. */
void tx_abort(store_txn *t);
/* mongo_versions.c: runs a removal of a sealed transaction; drops the
 * documents (and dependencies) of versions the voided transaction tid
 * inserted (only those marked x = tid: its keys may have been issued
 * again since it was rolled back). */
int mv_after_run(mg *m, const tx_after *a, strata_error *err);
void mv_drop_docs(mg *m, const char *type, const char *id, const uint64_t *keys, size_t n,
                  const char *tid);
/* An owed removal (see transactions above): the version's tombstone, then
 * its document, dependencies and access counts. Idempotent. */
int mv_remove_owed(mg *m, const char *type, const char *id, uint64_t vkey, const char *by,
                   strata_error *err);
/* The decision on transaction tid: 1 sealed, -1 voided, 0 none yet. */
int mh_decision(mg *m, const char *tid, int *out, strata_error *err);

/* ---- the operations, by file ---- */
int mg_get_head(store *base, store_txn *txn, const char *type, const char *id, store_head *out,
                strata_error *err);
int mg_get_version(store *base, store_txn *txn, const char *type, const char *id, uint64_t vkey,
                   store_version *out, strata_error *err);
int mg_put_version(store *base, store_txn *txn, store_version *v, uint64_t expected_latest,
                   uint64_t expected_max, const store_dep *deps, size_t ndeps, uint64_t claim,
                   strata_error *err);
int mg_list_versions(store *base, const char *type, const char *id, const store_list_opts *o,
                     store_page *out, strata_error *err);
int mg_list_resources(store *base, const char *type, const store_list_opts *o, store_page *out,
                      strata_error *err);
int mg_delete_version(store *base, store_txn *txn, const char *type, const char *id, uint64_t vkey,
                      const char *removed_by, strata_error *err);
int mg_delete_resource(store *base, store_txn *txn, const char *type, const char *id,
                       const char *removed_by, size_t *count, strata_error *err);
int mg_dependents(store *base, const char *type, const char *id, const store_list_opts *o,
                  store_page *out, strata_error *err);
int mg_get_tombstone(store *base, const char *type, const char *id, uint64_t vkey,
                     store_tombstone *out, strata_error *err);
int mg_version_pinned(store *base, const char *type, const char *id, uint64_t vkey, bool *pinned,
                      char *by, size_t by_cap, strata_error *err);
int mg_set_stale(store *base, store_txn *txn, const char *type, const char *id, bool stale,
                 const json_t *reason, strata_error *err);

int mg_tree_parent(store *base, store_txn *txn, const char *child, char *parent, size_t cap,
                   bool *has_parent, strata_error *err);
int mg_tree_children(store *base, store_txn *txn, const char *parent, tree_child **out, size_t *n,
                     strata_error *err);
int mg_tree_link(store *base, store_txn *txn, const char *parent, const char *child,
                 uint64_t child_vkey, strata_error *err);
int mg_tree_unlink(store *base, store_txn *txn, const char *parent, const char *child,
                   strata_error *err);
int mg_tree_edges(store *base,
                  int (*fn)(void *ctx, const char *parent, const char *child, uint64_t vkey),
                  void *ctx, strata_error *err);
int mg_vocab_apply(store *base, store_txn *txn, const char *master, vocab_delta *d, size_t n,
                   int64_t *size_delta, strata_error *err);
int mg_vocab_clear(store *base, store_txn *txn, const char *master, strata_error *err);
int mg_vocab_page(store *base, store_txn *txn, const char *master, const char *after, size_t limit,
                  vocab_item **out, size_t *n, strata_error *err);
int mg_vocab_size(store *base, store_txn *txn, const char *master, uint64_t *n, strata_error *err);

int mg_add_access(store *base, store_access *items, size_t n, strata_error *err);
int mg_blob_refs(store *base, int (*fn)(void *ctx, const char *key), void *ctx, strata_error *err);
int mg_blob_referenced(store *base, const char *key, bool *referenced, strata_error *err);
int mg_blob_claim(store *base, store_txn *txn, const char *key, uint64_t *claim, strata_error *err);
int mg_blob_release(store *base, const char *key, uint64_t claim, strata_error *err);
int mg_blob_collect_begin(store *base, const char *key, uint64_t token, int64_t claims_before_ms,
                          bool *doomed, strata_error *err);
int mg_blob_collect_end(store *base, const char *key, strata_error *err);
int mg_blob_collecting(store *base, int (*fn)(void *ctx, const char *key, uint64_t token),
                       void *ctx, strata_error *err);
int mg_lease_acquire(store *base, const char *name, const char *holder, uint64_t ttl_ms, bool *held,
                     uint64_t *token, bool *abandoned, strata_error *err);
int mg_lease_release(store *base, const char *name, const char *holder, strata_error *err);

/* Claim handling used by put_version (mongo_coord.c): whether claim
 * stands on key, and consuming it (*consumed false when it had lapsed).
 * Claims: store_claims, _id "<key>/<claim hex>", k, at (server ms). */
int mg_claim_stands(mg *m, const char *key, uint64_t claim, bool *stands, strata_error *err);
int mg_claim_consume(mg *m, const char *key, uint64_t claim, bool *consumed, strata_error *err);
/* The summed access counts of version vid (mongo_coord.c). */
int mg_access_total(mg *m, const char *vid, uint64_t *count, int64_t *last, strata_error *err);

#endif
