/* Inside the S3 L2 (l2_s3.h): the handle, shared by l2_s3.c (the
 * operations) and l2_s3_sweep.c (the eviction pass and the sweeper). */
#ifndef STRATA_L2_S3_INT_H
#define STRATA_L2_S3_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../blobs/s3_client.h"
#include "l2.h"
#include "l2_s3_layout.h"

#define L2S3_COUNTERS_MAX 64
#define L2S3_RECENT_SLOTS 4096
#define L2S3_SEEN_MAX     512
#define L2S3_TOUCH_MS     60000 /* an access marker is rewritten at most this often per key */
#define HOLD_TEXT         24    /* a fence object's body: its hold in ms, in decimal */

enum { L2S3_HITS, L2S3_MISSES, L2S3_SETS, L2S3_DELETES, L2S3_EXPIRATIONS, L2S3_EVICTIONS, L2S3_NC };

typedef struct l2s3_counters {
    char ns[L2_NS_MAX + 1];
    uint64_t v[L2S3_NC];
} l2s3_counters;

/* This node's use of a name (a direct-mapped slot by its hash): the
 * order of its last use here (LRU ties within S3's whole seconds) and
 * when it last wrote the access marker. */
typedef struct l2s3_recent {
    uint64_t hash, seq, touched_ms;
} l2s3_recent;

/* A fence this handle has seen: when first (monotonic ms) and its hold. */
typedef struct l2s3_seen {
    uint64_t id, hold_ms, first_ms;
} l2s3_seen;

typedef struct l2s3 {
    l2_cache base;
    s3_client *s3;
    l2_config cfg;
    atomic_bool ready; /* the format record was read and is ours */
    pthread_mutex_t ready_mu;
    _Atomic uint64_t down_until; /* the breaker: calls fail at once until (monotonic ms) */
    pthread_mutex_t down_mu;
    char down_why[STRATA_ERR_DETAIL_MAX];
    pthread_mutex_t mu; /* counters, recent, seen */
    l2s3_counters counters[L2S3_COUNTERS_MAX];
    int ncounters;
    l2s3_counters overflow; /* namespaces past L2S3_COUNTERS_MAX */
    l2s3_recent recent[L2S3_RECENT_SLOTS];
    uint64_t seq;
    l2s3_seen seen[L2S3_SEEN_MAX];
    _Atomic uint64_t est_bytes;  /* the total of values as this node knows it */
    _Atomic uint64_t pass_after; /* no inline pass before (monotonic ms): one failed */
    pthread_mutex_t pass_mu;     /* one eviction pass or sweep at a time */
    char cursor[L2S3_NAME_MAX];  /* where the next sweep's expiry checks start */
    pthread_t sweeper;
    bool sweeping;
    pthread_mutex_t stop_mu;
    pthread_cond_t stop_cv;
    bool stop;
} l2s3;

/* ---- l2_s3_tables.c: this handle's own memory (all thread-safe) ---- */

/* Adds n to counter which of namespace ns. */
void l2s3_count(l2s3 *c, const char *ns, int which, uint64_t n);
/* The counters of ns into out's hits..evictions (zero when unknown). */
void l2s3_counters_read(l2s3 *c, const char *ns, l2_stats *out);
/* The order of this node's last use of object name (0: none known). */
uint64_t l2s3_recent_seq(l2s3 *c, const char *name);
/* Notes a use of object name (a read, or a write); true when a read
 * should rewrite the access marker (L2S3_TOUCH_MS since the last). */
bool l2s3_note_use(l2s3 *c, const char *name, bool read);
/* Notes that this handle sees fence id, held hold_ms, for the first time
 * now (a fence already known keeps its first sight). */
void l2s3_seen_note(l2s3 *c, uint64_t id, uint64_t hold_ms);
/* Whether fence id (object fname) stands for this node: reads its hold
 * when the fence is new to this handle. *open false for a fence gone. */
int l2s3_fence_stands(l2s3 *c, const char *fname, uint64_t id, bool *open, strata_error *err);
/* Forgets fence id (closed, or deleted by the sweeper). */
void l2s3_fence_forget(l2s3 *c, uint64_t id);

/* ---- l2_s3_ready.c ---- */

/* 0 when calls may go to the server: the breaker is closed and the
 * format record was read and is ours (read again by each call until
 * then). Otherwise why not (SERR_UNAVAILABLE at once while the breaker
 * is open; SERR_CORRUPT for a foreign format record). */
int l2s3_ready(l2s3 *c, strata_error *err);
/* Passes rc through; a failure of kind SERR_UNAVAILABLE (the server not
 * reachable, credentials refused) opens the breaker for a second. */
int l2s3_guard(l2s3 *c, int rc, strata_error *err);
/* l2_ops.health: the format record and one signed request, whatever the
 * breaker says (success closes it); SERR_UNAVAILABLE naming the cause. */
int l2s3_health(l2s3 *c, strata_error *err);

/* ---- l2_s3.c ---- */

/* SERR_INVALID for an empty or too long namespace. */
int l2s3_check_ns(const char *ns, strata_error *err);
/* s3_put and s3_delete, tried again (up to 3 times in all) on SERR_IO:
 * for writes that may be repeated as they are (unconditional). */
int l2s3_put_again(l2s3 *c, const char *name, const void *data, size_t len, const s3_put_opts *o,
                   strata_error *err);
int l2s3_delete(l2s3 *c, const char *name, strata_error *err);
/* Replaces the state object name (of key), whatever it holds, by a blank
 * of a new generation: an unconditional PUT (retried), which S3 servers
 * order with conditional PUTs in flight, unlike a DELETE (l2_s3.h). */
int l2s3_blank_new(l2s3 *c, const char *name, const char *key, strata_error *err);
/* Replaces the value that a read of name showed (etag; generation g; key)
 * by a blank of the same generation, If-Match etag: 0 replaced, 1 the
 * object changed or went since (left alone), -1 with *err on failure. */
int l2s3_blank_over(l2s3 *c, const char *name, const char *etag, uint64_t g, const char *key,
                    strata_error *err);
/* Whether the value a HEAD or GET of a state object showed has expired. */
bool l2s3_expired(const s3_object_info *info);
/* ---- l2_s3_list.c: the l2_ops clear and stats (l2.h) ---- */

int l2s3_clear(l2_cache *base, const char *ns, const char *pattern, size_t *count,
               void (*on_key)(void *ctx, const char *key), void *ctx, strata_error *err);
int l2s3_stats(l2_cache *base, const char *ns, l2_stats *out, strata_error *err);

/* ---- l2_s3_sweep.c ---- */

/* Adds bytes this node just wrote to its estimate; past max_bytes, runs
 * an eviction pass here unless one is running. */
void l2s3_account(l2s3 *c, uint64_t bytes);
/* Starts and stops the sweeper thread (stop joins it; no-op when it did
 * not start). */
void l2s3_sweeper_start(l2s3 *c);
void l2s3_sweeper_stop(l2s3 *c);

#endif
