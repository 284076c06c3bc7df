/* The invalidation stream of the Redis L2: what lets a node trust its L1
 * copies without asking Redis about each key.
 *
 * Every change a node makes to the L2 (a set, a delete, a fence, a clear)
 * runs as one Lua script that takes a sequence number from PREFIX:seq,
 * records it as the latest change of the key's bucket (PREFIX:kb:<i>) or
 * of the namespace's bucket (PREFIX:nb:<i>), and publishes "K <seq> <i>"
 * or "N <seq> <i>" on PREFIX:inv, atomically. Each node subscribes and
 * keeps a copy of the bucket table (65536 key buckets, 1024 namespace
 * buckets). A key's token is (its namespace bucket's seq, its key bucket's
 * seq, the subscription's epoch, the incarnation): it moves whenever a
 * change of the key (or of a key sharing its bucket: a spurious miss, never
 * a stale hit) reaches this node.
 *
 * Freshness across nodes. Redis appends a published message to every
 * subscriber's stream when the script runs, before the writer's reply. A
 * token is taken only after a barrier: a PING sent on the subscription
 * after the token was asked for, whose answer comes after every message
 * published before it. So a change acknowledged on any node before a read
 * began is in the table that read's token comes from. Concurrent readers
 * share one PING.
 *
 * Lost messages. While the subscription is down no token is given (the
 * caller trusts no L1 copy). A new subscription starts a new epoch (every
 * older token differs) and reloads the bucket table from Redis before it
 * gives tokens again, so nothing missed meanwhile is taken as current. A
 * server that restarted (another incarnation) gets its table loaded whole,
 * not merged.
 *
 * Thread safety: everything may be called from any thread; one background
 * thread per stream reads the subscription. */
#ifndef STRATA_REDIS_INVAL_H
#define STRATA_REDIS_INVAL_H

#include <stdbool.h>
#include <stdint.h>

#include "../common/error.h"
#include "l2.h"
#include "redis_conn.h"

#define REDIS_KEY_BUCKETS 65536u
#define REDIS_NS_BUCKETS  1024u

/* The buckets of a key and of a namespace: pure functions of the strings,
 * the same in every process. */
uint32_t redis_key_bucket(const char *ns, const char *key);
uint32_t redis_ns_bucket(const char *ns);

typedef struct redis_inval redis_inval;

/* Starts the subscriber thread for u's prefix; it (re)connects by itself
 * and uses pool for reloading the table. NULL with SERR_NOMEM or
 * SERR_INTERNAL (no thread). Tokens are refused until the first
 * subscription is up: redis_inval_wait_up waits for it. */
redis_inval *redis_inval_start(const redis_url *u, redis_pool *pool, strata_error *err);
/* Stops the thread and frees the stream. NULL is a no-op. */
void redis_inval_stop(redis_inval *s);

/* Waits up to ms for the subscription to be up; whether it is. */
bool redis_inval_wait_up(redis_inval *s, int ms);

/* The current token of (ns, key) into *out, after a barrier (see above).
 * SERR_UNAVAILABLE, *out unusable, when the subscription is down or the
 * barrier did not come back within the command timeout. */
int redis_inval_token(redis_inval *s, const char *ns, const char *key, l2_token *out,
                      strata_error *err);

/* The same without the barrier: what this node has seen so far. Never
 * fails; unusable while down. */
void redis_inval_token_now(redis_inval *s, const char *ns, const char *key, l2_token *out);

/* The token (ns, key) will have once this node has applied the change
 * seq, which the caller made under incarnation inc and whose message may
 * not have arrived yet: the tag of the value that change wrote. Unusable
 * when that cannot be told (the stream is down, another incarnation, or
 * a later clear of the namespace was seen already). */
void redis_inval_token_after(redis_inval *s, const char *ns, const char *key, uint64_t seq,
                             const char *inc, l2_token *out);

/* The epoch of the subscription now (for redis_inval_tag). */
uint64_t redis_inval_epoch(redis_inval *s);

/* The token of a value read from Redis together with the seqs of its
 * namespace and key buckets (nseq, kseq) under incarnation inc: current
 * while this node has applied no later change of either. Unusable when
 * the subscription is down or is no longer the one of epoch (read before
 * the value), or inc is not the table's incarnation. */
void redis_inval_tag(redis_inval *s, uint64_t epoch, uint64_t nseq, uint64_t kseq, const char *inc,
                     l2_token *out);

/* The parts of a usable token a fill is checked with in Redis: the
 * namespace bucket's seq, the key bucket's seq (decimal) and the
 * incarnation id it was taken under. */
void redis_token_parts(const l2_token *t, char nseq[24], char kseq[24], char inc[REDIS_INC_MAX]);

/* Counters for /metrics: messages applied, barriers run, resubscriptions. */
typedef struct redis_inval_stats {
    uint64_t messages, barriers, resubscribes;
    bool up;
} redis_inval_stats;
void redis_inval_stats_get(redis_inval *s, redis_inval_stats *out);

#endif
