/* Inside the MongoDB L2 (l2_mongo.h): the handle, shared by l2_mongo.c
 * (the key operations), l2_mongo_ready.c (opening: URL, format record,
 * indexes, the breaker, counters) and l2_mongo_sweep.c (clear, stats,
 * the eviction pass and the sweeper). */
#ifndef STRATA_L2_MONGO_INT_H
#define STRATA_L2_MONGO_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../common/mongo_conn.h"
#include "l2.h"
#include "l2_mongo.h"

#define L2M_PREFIX_MAX   32
#define L2M_COUNTERS_MAX 64
#define L2M_RECENT_SLOTS 4096
#define L2M_HINT_SLOTS   4096
#define L2M_TOUCH_MS     60000 /* a read restamps a key's recency at most this often */
#define L2M_FENCES_MAX   64    /* fences one state may carry */
#define L2M_CHAIN_MAX    (24 + L2_NS_MAX + L2_KEY_MAX) /* "LEN:NS:KEY" */
#define L2M_ID_MAX       (L2M_CHAIN_MAX + 24)          /* "s<q>:" or "p:" in front */

enum { L2M_HITS, L2M_MISSES, L2M_SETS, L2M_DELETES, L2M_EXPIRATIONS, L2M_EVICTIONS, L2M_NC };

typedef struct l2m_counters {
    char ns[L2_NS_MAX + 1];
    uint64_t v[L2M_NC];
} l2m_counters;

typedef struct l2m {
    l2_cache base;
    mongo_conn *conn;
    l2_config cfg;
    char keys[L2M_PREFIX_MAX + 8], meta[L2M_PREFIX_MAX + 8], vals[L2M_PREFIX_MAX + 8];
    atomic_bool ready;   /* the format record was read (or made) and is ours */
    atomic_bool indexed; /* the indexes are known to exist */
    pthread_mutex_t ready_mu;
    _Atomic uint64_t down_until; /* the breaker: calls fail at once until (monotonic ms) */
    pthread_mutex_t down_mu;
    char down_why[STRATA_ERR_DETAIL_MAX];
    pthread_mutex_t mu; /* counters, touched, hints */
    l2m_counters counters[L2M_COUNTERS_MAX];
    int ncounters;
    l2m_counters overflow;                 /* namespaces past L2M_COUNTERS_MAX */
    uint64_t touched[L2M_RECENT_SLOTS][2]; /* {hash of the chain, monotonic ms of the last stamp} */
    uint64_t hints[L2M_HINT_SLOTS][2];     /* {hash of the chain, a seq seen there} */
    _Atomic uint64_t est_bytes;            /* the total of values as this node knows it */
    _Atomic uint64_t pass_after;           /* no inline pass before (monotonic ms) */
    pthread_mutex_t pass_mu;               /* one eviction pass or sweep at a time */
    pthread_t sweeper;
    bool sweeping;
    pthread_mutex_t stop_mu;
    pthread_cond_t stop_cv;
    bool stop;
} l2m;

/* A client and a collection of the handle, taken together. */
typedef struct l2m_coll {
    mongoc_client_t *cl;
    mongoc_collection_t *co;
} l2m_coll;

/* An open fence as a state carries it: its id, its hold and the server's
 * time (ms) at its opening. */
typedef struct l2m_fence {
    int64_t id, hold, open;
} l2m_fence;

/* The newest state of a key's chain, as l2m_newest read it. */
typedef struct l2m_state {
    bool exists;  /* the chain has a state (else the fields below are 0) */
    uint64_t q;   /* its seq */
    int64_t g;    /* its generation (0: a stub or malformed: no generation) */
    bson_t *doc;  /* a copy of the state document (freed by l2m_state_free) */
    int64_t s, w; /* the value's size (-1: a blank) and write id */
    int64_t x;    /* the value's expiry instant (writer's wall clock; 0: none) */
    l2m_fence f[L2M_FENCES_MAX];
    size_t nf;
    bool fences_bad; /* a fence did not read as one: it stands */
} l2m_state;

/* ---- l2_mongo_ready.c ---- */

/* Takes a client from the pool and collection name of it; l2m_put gives
 * both back. */
l2m_coll l2m_take(l2m *c, const char *name);
void l2m_put(l2m *c, l2m_coll *k);
/* 0 when calls may go to the server: the breaker is closed, and the
 * format record was read (or made) and is ours (tried again by each call
 * until then; the node that made it makes the indexes, and sweepers make
 * any that are missing). Otherwise why not
 * (SERR_UNAVAILABLE at once while the breaker is open; SERR_CORRUPT for
 * a foreign format record). */
int l2m_ready(l2m *c, strata_error *err);
/* Passes rc through; a failure of kind SERR_UNAVAILABLE opens the
 * breaker for a second. */
int l2m_guard(l2m *c, int rc, strata_error *err);
/* Makes the keys collection's indexes unless they exist (listIndexes
 * first). */
int l2m_make_indexes(l2m *c, strata_error *err);
/* l2_ops.health: the format record and a ping, whatever the breaker says
 * (success closes it). */
int l2m_health(l2m *c, strata_error *err);
/* Adds n to counter which of namespace ns; the counters of ns into out's
 * hits..evictions. Thread-safe. */
void l2m_count(l2m *c, const char *ns, int which, uint64_t n);
void l2m_counters_read(l2m *c, const char *ns, l2_stats *out);
/* Whether a read of _id id should restamp its recency now (at most once
 * per L2M_TOUCH_MS per id on this handle); a write notes the stamp. */
bool l2m_touch_due(l2m *c, const char *id, bool write);
/* Parses url into the libmongoc URL (prefix= removed, the L2's default
 * timeouts added) and the prefix. SERR_INVALID on a malformed one. */
int l2m_parse_url(const char *url, char *out, size_t cap, char prefix[L2M_PREFIX_MAX + 1],
                  strata_error *err);

/* ---- l2_mongo.c ---- */

/* A random 64-bit value, never 0; as a BSON int64. SERR_IO without one. */
int l2m_random(uint64_t *out, strata_error *err);
/* The int64 field name of doc, or fallback when absent or of another
 * type. */
int64_t l2m_i64(const bson_t *doc, const char *name, int64_t fallback);
/* Whether state document doc (fields s and x) holds a live value now. */
bool l2m_live(const bson_t *doc);
/* The chain name "LEN:NS:KEY" of (ns, key), checked (SERR_INVALID). */
int l2m_chain(const char *ns, const char *key, char chain[L2M_CHAIN_MAX], strata_error *err);
/* The newest state of chain into *st (l2m_state_free it, also on
 * failure), its value's bytes included when with_value; the namespace's
 * clear epoch into *epoch when epoch is non-NULL (read in the same
 * find). Errors: the server's; SERR_RETRY when the chain grows faster
 * than it can be followed. */
int l2m_newest(l2m *c, const char *ns, const char *chain, bool with_value, uint64_t *epoch,
               l2m_state *st, strata_error *err);
void l2m_state_free(l2m_state *st);
/* Replaces the value of newest state st (a value, as read) of (ns, key)
 * by a blank that keeps its generation and fences (an expiry or an
 * eviction: no node's copy becomes stale by it): state st->q + 1. 0 done,
 * 1 the chain moved since (left alone), -1 with *err on failure. */
int l2m_blank_if(l2m *c, const char *ns, const char *key, const char *chain, const l2m_state *st,
                 strata_error *err);
/* The unconditional change of (ns, key) to a blank of a new generation
 * (a clear's), on whatever state is newest: *was_live (may be NULL) when
 * it replaced a live value. Retries on the newest state until its insert
 * wins (bounded: SERR_RETRY). */
int l2m_blank_always(l2m *c, const char *ns, const char *key, bool *was_live, strata_error *err);
/* Shrinks state doc id (not the newest) to a stub {_id, z: 1}: the stub
 * keeps its seq taken forever. Best effort (logged). */
void l2m_shrink(l2m *c, const char *id);

/* ---- l2_mongo_sweep.c: the l2_ops clear and stats (l2.h) ---- */

int l2m_clear(l2_cache *base, const char *ns, const char *pattern, size_t *count,
              void (*on_key)(void *ctx, const char *key), void *ctx, strata_error *err);
int l2m_stats(l2_cache *base, const char *ns, l2_stats *out, strata_error *err);
/* Adds bytes this node just wrote to its estimate; past max_bytes, runs
 * an eviction pass here unless one is running. */
void l2m_account(l2m *c, uint64_t bytes);
/* Starts and stops the sweeper thread (stop joins it; no-op when it did
 * not start). */
void l2m_sweeper_start(l2m *c);
void l2m_sweeper_stop(l2m *c);

#endif
