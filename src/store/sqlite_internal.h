/* What the SQLite store's files share (not for other modules).
 *   store_sqlite.c      the vtable, open and close
 *   sqlite_conn.c       connections, the statement cache, errors, writes
 *                       and transactions
 *   sqlite_schema.c     the layout and its migrations
 *   sqlite_versions.c   heads, versions, lists, deletes, tombstones, pins
 *   sqlite_trees.c      tree edges and master vocabularies
 *   sqlite_coord.c      blob references, claims, collection, leases and
 *                       access counts
 *
 * Connections: one writer (SQLite has one writer at a time anyway) and a
 * pool of reader connections that WAL lets run beside it. A connection is
 * used by one thread at a time (the writer by the member whose turn it is,
 * a reader between reader_get and reader_put), so its statement cache
 * needs no lock.
 *
 * Group commit. Writes (in_write without a transaction, and sq_transact)
 * join a commit group. The members of a group take turns on the writer
 * connection inside ONE transaction (BEGIN IMMEDIATE by the first), each
 * running its body on its own thread in a savepoint of its own, so one
 * member's failure rolls back only its own changes; the last member to
 * run commits, and every member returns only after that commit is durable
 * (synchronous=FULL): its 2xx still means durable. While a group commits
 * (its fsync), the next one gathers the writers that arrive; so N
 * concurrent saves cost about one fsync instead of N. A group holds at
 * most WGROUP_MAX members. Groups run strictly one after another
 * (wg_turn); other processes are kept out by SQLite's own file lock, as
 * before. A combined group (plain writes: one member, its leader, runs
 * every member's body) wakes each member once, on a semaphore of the
 * member's own, with the outcome; a transaction's group wakes its members
 * one at a time for their turn on the group's condition variables (all
 * at once only for the commit). Either way a group of N costs about N
 * wake-ups, not N squared. */
#ifndef STRATA_SQLITE_INTERNAL_H
#define STRATA_SQLITE_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>

#include "store.h"

#define READER_POOL 8
#define WGROUP_MAX  64 /* members of one commit group at most */
#define STMT_CACHE  96 /* more than the distinct statements this store runs */

/* A connection and its prepared statements, keyed by the address of
 * their SQL text (always a string literal). */
typedef struct sq_conn {
    sqlite3 *h;
    int ncached;
    struct {
        const char *sql;
        sqlite3_stmt *st;
    } cached[STMT_CACHE];
} sq_conn;

typedef struct sqlite_store {
    store base;
    char path[PATH_MAX];
    pthread_mutex_t write_mu; /* guards the group state below */
    struct wgroup *wg_head;   /* the oldest group not yet committed (its turn) */
    struct wgroup *wg_tail;   /* the newest group */
    struct wgroup *wg_open;   /* the group new writers join (NULL: start one) */
    uint64_t wg_next;         /* sequence number of the next group */
    uint64_t wg_turn;         /* the group whose members may use the writer */
    bool wg_busy;             /* a member is using the writer connection */
    uint64_t wg_commits;      /* groups committed (stats) */
    uint64_t wg_writes;       /* members of committed groups (stats) */
    sq_conn *writer;
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    sq_conn *idle[READER_POOL];
    int nidle;
    int nopen;
} sqlite_store;

struct store_txn {
    sqlite_store *s;
};

/* Connections (WAL, synchronous=FULL, busy_timeout). */
int sq_conn_open(const char *path, sq_conn **out, strata_error *err);
void sq_conn_close(sq_conn *c);
/* Sets err from the connection's last error (BUSY: SERR_RETRY,
 * CONSTRAINT: SERR_CONFLICT); returns -1. */
int db_error(sq_conn *db, strata_error *err, const char *what);
int exec(sq_conn *db, const char *sql, strata_error *err);
/* A prepared statement for sql (a string literal), from the cache: reset,
 * bindings cleared. Give it back with sq_release, never finalize it. */
int prepare(sq_conn *db, const char *sql, sqlite3_stmt **st, strata_error *err);
void sq_release(sqlite3_stmt *st);
/* Steps a statement that returns no row, then releases it. */
int step_done(sq_conn *db, sqlite3_stmt *st, const char *what, strata_error *err);

/* Reader connections; inside a transaction, reads use its connection so
 * that they see its own writes. */
sq_conn *reader_get(sqlite_store *s, strata_error *err);
void reader_put(sqlite_store *s, sq_conn *db);
sq_conn *read_conn(sqlite_store *s, store_txn *txn, strata_error *err);
void read_done(sqlite_store *s, store_txn *txn, sq_conn *db);

/* Runs fn inside the caller's transaction, or its own when txn is NULL. */
typedef int (*write_fn)(sq_conn *db, void *ctx, strata_error *err);
int in_write(sqlite_store *s, store_txn *txn, write_fn fn, void *ctx, strata_error *err);
int sq_transact(store *base, store_txn_fn fn, void *ctx, strata_error *err);
int sq_ping(store *base, strata_error *err);

/* Runs sql (no parameters) on a reader connection, calling row for each
 * result row until it returns non-zero (*stopped then says so; may be
 * NULL). A failing step is an error, never a short walk. row must not
 * call the store. */
int sq_each_row(sqlite_store *s, const char *sql, int (*row)(sqlite3_stmt *st, void *ctx),
                void *ctx, bool *stopped, const char *what, strata_error *err);

/* Row helpers. */
void copy_text(char *dst, size_t cap, sqlite3_stmt *st, int col);
int bind_tiv(sqlite3_stmt *st, const char *type, const char *id, uint64_t vkey);

/* Creates or upgrades the layout in one transaction. */
int sq_migrate(sq_conn *db, strata_error *err);

/* The operations, by file. */
int sq_get_head(store *base, store_txn *txn, const char *type, const char *id, store_head *out,
                strata_error *err);
int sq_get_version(store *base, store_txn *txn, const char *type, const char *id, uint64_t vkey,
                   store_version *out, strata_error *err);
int sq_put_version(store *base, store_txn *txn, store_version *v, uint64_t expected_latest,
                   uint64_t expected_max, const store_dep *deps, size_t ndeps, uint64_t claim,
                   strata_error *err);
int sq_list_versions(store *base, const char *type, const char *id, const store_list_opts *o,
                     store_page *out, strata_error *err);
int sq_list_resources(store *base, const char *type, const store_list_opts *o, store_page *out,
                      strata_error *err);
int sq_delete_version(store *base, store_txn *txn, const char *type, const char *id, uint64_t vkey,
                      const char *removed_by, strata_error *err);
int sq_delete_resource(store *base, store_txn *txn, const char *type, const char *id,
                       const char *removed_by, size_t *count, strata_error *err);
int sq_dependents(store *base, const char *type, const char *id, const store_list_opts *o,
                  store_page *out, strata_error *err);
int sq_get_tombstone(store *base, const char *type, const char *id, uint64_t vkey,
                     store_tombstone *out, strata_error *err);
int sq_version_pinned(store *base, const char *type, const char *id, uint64_t vkey, bool *pinned,
                      char *by, size_t by_cap, strata_error *err);
int sq_set_stale(store *base, store_txn *txn, const char *type, const char *id, bool stale,
                 const json_t *reason, strata_error *err);

int sq_tree_parent(store *base, store_txn *txn, const char *child, char *parent, size_t cap,
                   bool *has_parent, strata_error *err);
int sq_tree_children(store *base, store_txn *txn, const char *parent, tree_child **out, size_t *n,
                     strata_error *err);
int sq_tree_link(store *base, store_txn *txn, const char *parent, const char *child,
                 uint64_t child_vkey, strata_error *err);
int sq_tree_unlink(store *base, store_txn *txn, const char *parent, const char *child,
                   strata_error *err);
int sq_tree_edges(store *base,
                  int (*fn)(void *ctx, const char *parent, const char *child, uint64_t vkey),
                  void *ctx, strata_error *err);
int sq_vocab_apply(store *base, store_txn *txn, const char *master, vocab_delta *d, size_t n,
                   int64_t *size_delta, strata_error *err);
int sq_vocab_clear(store *base, store_txn *txn, const char *master, strata_error *err);
int sq_vocab_page(store *base, store_txn *txn, const char *master, const char *after, size_t limit,
                  vocab_item **out, size_t *n, strata_error *err);
int sq_vocab_size(store *base, store_txn *txn, const char *master, uint64_t *n, strata_error *err);

int sq_add_access(store *base, store_access *items, size_t n, strata_error *err);
int sq_blob_refs(store *base, int (*fn)(void *ctx, const char *key), void *ctx, strata_error *err);
int sq_blob_referenced(store *base, const char *key, bool *referenced, strata_error *err);
int sq_blob_claim(store *base, store_txn *txn, const char *key, uint64_t *claim, strata_error *err);
int sq_blob_release(store *base, const char *key, uint64_t claim, strata_error *err);
int sq_blob_collect_begin(store *base, const char *key, uint64_t token, int64_t claims_before_ms,
                          bool *doomed, strata_error *err);
int sq_blob_collect_end(store *base, const char *key, strata_error *err);
int sq_blob_collecting(store *base, int (*fn)(void *ctx, const char *key, uint64_t token),
                       void *ctx, strata_error *err);
int sq_lease_acquire(store *base, const char *name, const char *holder, uint64_t ttl_ms, bool *held,
                     uint64_t *token, bool *abandoned, strata_error *err);
int sq_lease_release(store *base, const char *name, const char *holder, strata_error *err);

#endif
