#include "l2_redis.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/clock.h"
#include "../common/glob.h"
#include "../common/log.h"
#include "l2_redis_scripts.h"
#include "redis_conn.h"
#include "redis_inval.h"

#define POOL_MAX       32
#define NO_TTL_MS      (365ULL * 24 * 3600 * 1000) /* "no expiry": a year, so it stays evictable */
#define SWEEP_EVERY_MS 30000
/* keys per removal script: each is a KEY and an ARGV, beside 3 KEYS and a mode */
#define BATCH_KEYS   ((REDIS_SCRIPT_ARGS_MAX - 4) / 2)
#define NAME_MAX_LEN (REDIS_PREFIX_MAX + L2_NS_MAX + L2_KEY_MAX + 16)

static redis_script S_GET = {.text = LUA_GET};
static redis_script S_SET = {.text = LUA_SET};
static redis_script S_CHANGE = {.text = LUA_CHANGE};
static redis_script S_CLEAR_NS = {.text = LUA_CLEAR_NS};
static redis_script S_REMOVE = {.text = LUA_REMOVE};
static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;

static void scripts_init(void)
{
    redis_script_init(&S_GET);
    redis_script_init(&S_SET);
    redis_script_init(&S_CHANGE);
    redis_script_init(&S_CLEAR_NS);
    redis_script_init(&S_REMOVE);
}

typedef struct redis_l2 {
    l2_cache base;
    redis_url url;
    l2_config cfg;
    redis_pool *pool;
    redis_inval *inval;
    char channel[REDIS_PREFIX_MAX + 8];
    pthread_t sweeper;
    bool sweeping;
    pthread_mutex_t stop_mu;
    pthread_cond_t stop_cv;
    bool stop;
} redis_l2;

/* ---- names ------------------------------------------------------------------- */

/* "P:kind:ns:key" (key NULL: "P:kind:ns"); its length. */
static size_t name(char *out, const redis_l2 *c, const char *kind, const char *ns, const char *key)
{
    int n = key ? snprintf(out, NAME_MAX_LEN, "%s:%s:%s:%s", c->url.prefix, kind, ns, key)
                : snprintf(out, NAME_MAX_LEN, "%s:%s:%s", c->url.prefix, kind, ns);
    return (size_t)n;
}

static size_t bucket_name(char *out, const redis_l2 *c, const char *kind, uint32_t i)
{
    return (size_t)snprintf(out, NAME_MAX_LEN, "%s:%s:%" PRIu32, c->url.prefix, kind, i);
}

static size_t plain_name(char *out, const redis_l2 *c, const char *what)
{
    return (size_t)snprintf(out, NAME_MAX_LEN, "%s:%s", c->url.prefix, what);
}

static int check_key(const char *ns, const char *key, strata_error *err)
{
    if (strlen(ns) > L2_NS_MAX || strlen(key) > L2_KEY_MAX || strchr(ns, ':') != NULL)
        return serr_set(err, SERR_INVALID, "cache key too long");
    return 0;
}

/* ---- running scripts ----------------------------------------------------------- */

/* Runs a script on a pooled connection, once more on a fresh one when the
 * connection failed or met a server that restarted (no incarnation
 * recorded yet: a new connection records it). */
static redisReply *run(redis_l2 *c, redis_script *s, int nkeys, int nargs, const char **argv,
                       const size_t *lens, strata_error *err)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        redisContext *rc = redis_pool_take(c->pool, err);
        if (rc == NULL)
            return NULL;
        redisReply *r = redis_script_run(rc, s, nkeys, nargs, argv, lens, err);
        bool retry = r == NULL && (err->kind == SERR_UNAVAILABLE ||
                                   strstr(err->detail, "STRATA no incarnation") != NULL);
        redis_pool_give(c->pool, rc, retry);
        if (r != NULL || !retry)
            return r;
    }
    return NULL;
}

static long long int_at(const redisReply *r, size_t i)
{
    if (r->type != REDIS_REPLY_ARRAY || i >= r->elements)
        return -1;
    const redisReply *e = r->element[i];
    if (e->type == REDIS_REPLY_INTEGER)
        return e->integer;
    if (e->type == REDIS_REPLY_STRING)
        return strtoll(e->str, NULL, 10);
    return -1;
}

static int bad_reply(redisReply *r, strata_error *err)
{
    freeReplyObject(r);
    return serr_set(err, SERR_IO, "Redis L2: unexpected reply");
}

/* ---- operations -------------------------------------------------------------- */

static int rd_get(l2_cache *base, const char *ns, const char *key, size_t max_len, strata_buf *out,
                  l2_meta *meta, strata_error *err)
{
    redis_l2 *c = (redis_l2 *)base;
    if (check_key(ns, key, err) != 0)
        return -1;
    char vkey[NAME_MAX_LEN], inc[NAME_MAX_LEN], stats[NAME_MAX_LEN], sizes[NAME_MAX_LEN],
        nb[NAME_MAX_LEN], kb[NAME_MAX_LEN], max[24];
    size_t lv = name(vkey, c, "v", ns, key), li = plain_name(inc, c, "inc"),
           ls = name(stats, c, "s", ns, NULL), lz = name(sizes, c, "z", ns, NULL),
           ln = bucket_name(nb, c, "nb", redis_ns_bucket(ns)),
           lk = bucket_name(kb, c, "kb", redis_key_bucket(ns, key));
    snprintf(max, sizeof max, "%zu", max_len);
    uint64_t epoch = redis_inval_epoch(c->inval);
    const char *argv[] = {vkey, inc, stats, sizes, nb, kb, key, max};
    size_t lens[] = {lv, li, ls, lz, ln, lk, strlen(key), strlen(max)};
    redisReply *r = run(c, &S_GET, 6, 2, argv, lens, err);
    if (r == NULL)
        return -1;
    if (int_at(r, 0) == 0) {
        freeReplyObject(r);
        return serr_set(err, SERR_NOT_FOUND, "not in the L2 cache");
    }
    /* an entry that does not read as one is a miss, never a value */
    unsigned codec = 0;
    unsigned long long raw = 0;
    long long expires = 0;
    int used = 0;
    if (r->elements != 7 || r->element[2]->type != REDIS_REPLY_STRING ||
        r->element[3]->type != REDIS_REPLY_STRING || int_at(r, 1) <= 0 ||
        sscanf(r->element[2]->str, "%llu %u %lld %n", &raw, &codec, &expires, &used) != 3 ||
        codec > 255) {
        freeReplyObject(r);
        slog_warn("L2 redis: %s/%s: a malformed entry, taken as a miss", ns, key);
        return serr_set(err, SERR_NOT_FOUND, "not in the L2 cache");
    }
    const char *m = r->element[2]->str;
    memset(meta, 0, sizeof *meta);
    meta->write_id = (uint64_t)int_at(r, 1);
    snprintf(meta->content_type, sizeof meta->content_type, "%s", m + used);
    meta->codec = (uint8_t)codec;
    meta->raw_size = raw;
    meta->expires_ms = expires;
    if (r->element[6]->type == REDIS_REPLY_STRING)
        redis_inval_tag(c->inval, epoch, (uint64_t)int_at(r, 4), (uint64_t)int_at(r, 5),
                        r->element[6]->str, &meta->current);
    const redisReply *d = r->element[3];
    int rc = sbuf_append(out, d->str, d->len, err);
    freeReplyObject(r);
    return rc;
}

static int rd_token(l2_cache *base, const char *ns, const char *key, l2_token *out,
                    strata_error *err)
{
    redis_l2 *c = (redis_l2 *)base;
    return redis_inval_token(c->inval, ns, key, out, err);
}

static int rd_token_seen(l2_cache *base, const char *ns, const char *key, l2_token *out,
                         strata_error *err)
{
    redis_l2 *c = (redis_l2 *)base;
    redis_inval_token_now(c->inval, ns, key, out);
    if (!l2_token_usable(out))
        return serr_set(err, SERR_UNAVAILABLE, "the Redis invalidation stream is down");
    return 0;
}

static int rd_set(l2_cache *base, const char *ns, const char *key, const void *data, size_t len,
                  const l2_meta *meta, uint64_t ttl_ms, const l2_token *fill, l2_token *new_token,
                  uint64_t *write_id, strata_error *err)
{
    redis_l2 *c = (redis_l2 *)base;
    l2_token none = {{0}};
    if (check_key(ns, key, err) != 0)
        goto fail;
    if (c->cfg.max_bytes && len > c->cfg.max_bytes) {
        serr_set(err, SERR_TOO_LARGE, "value larger than the L2 cache");
        goto fail;
    }
    if (fill != NULL && !l2_token_usable(fill)) {
        serr_set(err, SERR_CONFLICT, "no usable token: the fill is refused");
        goto fail;
    }
    char vkey[NAME_MAX_LEN], fkey[NAME_MAX_LEN], kb[NAME_MAX_LEN], nb[NAME_MAX_LEN],
        seq[NAME_MAX_LEN], inc[NAME_MAX_LEN], stats[NAME_MAX_LEN], sizes[NAME_MAX_LEN],
        nss[NAME_MAX_LEN];
    uint32_t kbi = redis_key_bucket(ns, key);
    size_t l1 = name(vkey, c, "v", ns, key), l2 = name(fkey, c, "f", ns, key),
           l3 = bucket_name(kb, c, "kb", kbi), l4 = bucket_name(nb, c, "nb", redis_ns_bucket(ns)),
           l5 = plain_name(seq, c, "seq"), l6 = plain_name(inc, c, "inc"),
           l7 = name(stats, c, "s", ns, NULL), l8 = name(sizes, c, "z", ns, NULL),
           l9 = plain_name(nss, c, "nss");
    char m[160], ttl[24], nseq[24] = "0", kseq[24] = "0", tinc[REDIS_INC_MAX] = "0", kbs[16];
    snprintf(m, sizeof m, "%" PRIu64 " %u %lld %s", meta->raw_size, (unsigned)meta->codec,
             (long long)meta->expires_ms, meta->content_type);
    snprintf(ttl, sizeof ttl, "%" PRIu64, ttl_ms ? ttl_ms : (uint64_t)NO_TTL_MS);
    snprintf(kbs, sizeof kbs, "%" PRIu32, kbi);
    if (fill != NULL)
        redis_token_parts(fill, nseq, kseq, tinc);
    const char *mode = fill ? "fill" : "set";
    char maxb[24];
    snprintf(maxb, sizeof maxb, "%" PRIu64, c->cfg.max_bytes);
    /* KEYS, then ARGV (see LUA_SET) */
    const char *argv[] = {vkey, fkey, kb, nb,   seq,  inc,  stats, sizes,      nss, data, m,
                          ttl,  key,  ns, mode, nseq, kseq, tinc,  c->channel, kbs, maxb};
    size_t lens[] = {l1,
                     l2,
                     l3,
                     l4,
                     l5,
                     l6,
                     l7,
                     l8,
                     l9,
                     len,
                     strlen(m),
                     strlen(ttl),
                     strlen(key),
                     strlen(ns),
                     strlen(mode),
                     strlen(nseq),
                     strlen(kseq),
                     strlen(tinc),
                     strlen(c->channel),
                     strlen(kbs),
                     strlen(maxb)};
    redisReply *r = run(c, &S_SET, 9, 12, argv, lens, err);
    if (r == NULL)
        goto fail;
    long long ok = int_at(r, 0), id = int_at(r, 1);
    char winc[REDIS_INC_MAX] = "";
    if (ok == 1 && r->elements == 3 && r->element[2]->type == REDIS_REPLY_STRING)
        snprintf(winc, sizeof winc, "%s", r->element[2]->str);
    freeReplyObject(r);
    if (ok == 0) {
        serr_set(err, SERR_CONFLICT, "the key changed or is fenced: the fill is refused");
        goto fail;
    }
    if (ok != 1 || id <= 0) {
        serr_set(err, SERR_IO, "Redis L2: unexpected reply to a write");
        goto fail;
    }
    if (write_id)
        *write_id = (uint64_t)id;
    /* a fill changes no token: the copy is current while the fill's token
     * is; an unconditional write's is the token its own message will
     * make (redis_inval_token_after) */
    if (new_token && fill)
        *new_token = *fill;
    else if (new_token)
        redis_inval_token_after(c->inval, ns, key, (uint64_t)id, winc, new_token);
    return 0;
fail:
    if (new_token)
        *new_token = none;
    return -1;
}

/* A del or a fence (see LUA_CHANGE). */
static int change(redis_l2 *c, const char *ns, const char *key, bool fence, uint64_t hold_ms,
                  const l2_fence_id *close_ids, size_t nclose, bool *live, uint64_t *seq_out,
                  strata_error *err)
{
    enum { FIXED = 12, MAXCLOSE = REDIS_SCRIPT_ARGS_MAX - FIXED };
    char vkey[NAME_MAX_LEN], fkey[NAME_MAX_LEN], kb[NAME_MAX_LEN], seq[NAME_MAX_LEN],
        inc[NAME_MAX_LEN], stats[NAME_MAX_LEN], sizes[NAME_MAX_LEN];
    uint32_t kbi = redis_key_bucket(ns, key);
    char kbs[16], hold[24], ids[MAXCLOSE][24];
    snprintf(kbs, sizeof kbs, "%" PRIu32, kbi);
    snprintf(hold, sizeof hold, "%" PRIu64, hold_ms);
    const char *argv[FIXED + MAXCLOSE] = {
        vkey, fkey, kb, seq, inc, stats, sizes, key, c->channel, kbs, fence ? "fence" : "del",
        hold};
    size_t lens[FIXED + MAXCLOSE] = {name(vkey, c, "v", ns, key),
                                     name(fkey, c, "f", ns, key),
                                     bucket_name(kb, c, "kb", kbi),
                                     plain_name(seq, c, "seq"),
                                     plain_name(inc, c, "inc"),
                                     name(stats, c, "s", ns, NULL),
                                     name(sizes, c, "z", ns, NULL),
                                     strlen(key),
                                     strlen(c->channel),
                                     strlen(kbs),
                                     fence ? 5 : 3,
                                     strlen(hold)};
    size_t n = nclose < MAXCLOSE ? nclose : MAXCLOSE; /* more: left to expire */
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], sizeof ids[i], "%" PRIu64, close_ids[i]);
        argv[FIXED + i] = ids[i];
        lens[FIXED + i] = strlen(ids[i]);
    }
    redisReply *r = run(c, &S_CHANGE, 7, 5 + (int)n, argv, lens, err);
    if (r == NULL)
        return -1;
    long long l = int_at(r, 0), id = int_at(r, 1);
    freeReplyObject(r);
    if (l < 0 || id <= 0)
        return serr_set(err, SERR_IO, "Redis L2: unexpected reply to a change");
    if (live)
        *live = l == 1;
    if (seq_out)
        *seq_out = (uint64_t)id;
    return 0;
}

static int rd_del(l2_cache *base, const char *ns, const char *key, const l2_fence_id *close_ids,
                  size_t nclose, bool *found, strata_error *err)
{
    redis_l2 *c = (redis_l2 *)base;
    if (found)
        *found = false;
    if (check_key(ns, key, err) != 0)
        return -1;
    return change(c, ns, key, false, 0, close_ids, nclose, found, NULL, err);
}

static int rd_fence_open(l2_cache *base, const char *ns, const char *key, uint64_t hold_ms,
                         l2_fence_id *id, strata_error *err)
{
    redis_l2 *c = (redis_l2 *)base;
    *id = 0;
    if (check_key(ns, key, err) != 0)
        return -1;
    uint64_t seq;
    if (change(c, ns, key, true, hold_ms ? hold_ms : c->cfg.fence_ttl_ms, NULL, 0, NULL, &seq,
               err) != 0)
        return -1;
    *id = seq;
    return 0;
}

/* Appends s to out with Redis' glob characters escaped. */
static size_t glob_escape(char *out, size_t at, size_t cap, const char *s, size_t n)
{
    for (size_t i = 0; i < n && at + 2 < cap; i++) {
        if (strchr("*?[]\\", s[i]))
            out[at++] = '\\';
        out[at++] = s[i];
    }
    out[at] = '\0';
    return at;
}

/* Removes a batch of keys (mode "clear" or "sweep"); calls on_key for
 * each live value removed and counts it. */
static int remove_batch(redis_l2 *c, const char *ns, const char *mode, char **keys, size_t n,
                        size_t *count, void (*on_key)(void *, const char *), void *ctx,
                        strata_error *err)
{
    enum { FIXED = 3 };
    const char *argv[FIXED + 2 * BATCH_KEYS + 1];
    size_t lens[FIXED + 2 * BATCH_KEYS + 1];
    char fixed[FIXED][NAME_MAX_LEN];
    char(*vkeys)[NAME_MAX_LEN] = malloc(n * sizeof *vkeys);
    if (vkeys == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    lens[0] = name(fixed[0], c, "s", ns, NULL);
    lens[1] = name(fixed[1], c, "z", ns, NULL);
    lens[2] = plain_name(fixed[2], c, "inc");
    for (int i = 0; i < FIXED; i++)
        argv[i] = fixed[i];
    for (size_t i = 0; i < n; i++) {
        lens[FIXED + i] = name(vkeys[i], c, "v", ns, keys[i]);
        argv[FIXED + i] = vkeys[i];
    }
    argv[FIXED + n] = mode;
    lens[FIXED + n] = strlen(mode);
    for (size_t i = 0; i < n; i++) {
        argv[FIXED + n + 1 + i] = keys[i];
        lens[FIXED + n + 1 + i] = strlen(keys[i]);
    }
    redisReply *r = run(c, &S_REMOVE, FIXED + (int)n, 1 + (int)n, argv, lens, err);
    free(vkeys);
    if (r == NULL)
        return -1;
    if (r->type != REDIS_REPLY_ARRAY)
        return bad_reply(r, err);
    for (size_t i = 0; i < r->elements; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING)
            continue;
        if (count)
            (*count)++;
        if (on_key)
            on_key(ctx, r->element[i]->str);
    }
    freeReplyObject(r);
    return 0;
}

static void free_keys(char **keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
}

static int rd_clear(l2_cache *base, const char *ns, const char *pattern, size_t *count,
                    void (*on_key)(void *ctx, const char *key), void *ctx, strata_error *err)
{
    redis_l2 *c = (redis_l2 *)base;
    *count = 0;
    if (check_key(ns, "", err) != 0)
        return -1;
    /* first every token of the namespace moves (fills that loaded before
     * are refused from now on), then the matching values go */
    char nb[NAME_MAX_LEN], seq[NAME_MAX_LEN], nbs[16];
    uint32_t nbi = redis_ns_bucket(ns);
    snprintf(nbs, sizeof nbs, "%" PRIu32, nbi);
    const char *argv[] = {nb, seq, c->channel, nbs};
    size_t lens[] = {bucket_name(nb, c, "nb", nbi), plain_name(seq, c, "seq"), strlen(c->channel),
                     strlen(nbs)};
    redisReply *r = run(c, &S_CLEAR_NS, 2, 2, argv, lens, err);
    if (r == NULL)
        return -1;
    freeReplyObject(r);

    /* SCAN for P:v:ns:<the pattern's literal prefix>*, glob_match decides */
    char match[2 * NAME_MAX_LEN], vprefix[NAME_MAX_LEN];
    size_t vplen = name(vprefix, c, "v", ns, "");
    size_t at = glob_escape(match, 0, sizeof match, vprefix, vplen);
    at = glob_escape(match, at, sizeof match, pattern, glob_literal_prefix(pattern));
    snprintf(match + at, sizeof match - at, "*");
    char cursor[32] = "0";
    size_t removed = 0;
    int rc = 0;
    do {
        redisContext *rc_conn = redis_pool_take(c->pool, err);
        if (rc_conn == NULL) {
            rc = -1;
            break;
        }
        const char *sargv[] = {"SCAN", cursor, "MATCH", match, "COUNT", "1000"};
        size_t slens[] = {4, strlen(cursor), 5, strlen(match), 5, 4};
        redisReply *s = redis_command(rc_conn, 6, sargv, slens, err);
        redis_pool_give(c->pool, rc_conn, s == NULL);
        if (s == NULL) {
            rc = -1;
            break;
        }
        if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 ||
            s->element[0]->type != REDIS_REPLY_STRING || s->element[1]->type != REDIS_REPLY_ARRAY) {
            rc = bad_reply(s, err);
            break;
        }
        snprintf(cursor, sizeof cursor, "%s", s->element[0]->str);
        char *batch[BATCH_KEYS];
        size_t nb_keys = 0;
        const redisReply *keys = s->element[1];
        for (size_t i = 0; i < keys->elements && rc == 0; i++) {
            const redisReply *k = keys->element[i];
            if (k->type != REDIS_REPLY_STRING || k->len <= vplen ||
                memcmp(k->str, vprefix, vplen) != 0 || memchr(k->str, '\0', k->len) != NULL)
                continue;
            const char *suffix = k->str + vplen;
            if (!glob_match(pattern, suffix))
                continue;
            batch[nb_keys] = strdup(suffix);
            if (batch[nb_keys] == NULL) {
                rc = serr_set(err, SERR_NOMEM, "out of memory");
                break;
            }
            if (++nb_keys == BATCH_KEYS) {
                rc = remove_batch(c, ns, "clear", batch, nb_keys, &removed, on_key, ctx, err);
                free_keys(batch, nb_keys);
                nb_keys = 0;
            }
        }
        if (rc == 0 && nb_keys > 0)
            rc = remove_batch(c, ns, "clear", batch, nb_keys, &removed, on_key, ctx, err);
        free_keys(batch, nb_keys);
        freeReplyObject(s);
    } while (rc == 0 && strcmp(cursor, "0") != 0);
    if (rc == 0)
        *count = removed;
    return rc;
}

static uint64_t field_u64(const redisReply *r, const char *field)
{
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        if (r->element[i]->type == REDIS_REPLY_STRING && strcmp(r->element[i]->str, field) == 0 &&
            r->element[i + 1]->type == REDIS_REPLY_STRING) {
            long long v = strtoll(r->element[i + 1]->str, NULL, 10);
            return v > 0 ? (uint64_t)v : 0;
        }
    return 0;
}

static int rd_stats(l2_cache *base, const char *ns, l2_stats *out, strata_error *err)
{
    redis_l2 *c = (redis_l2 *)base;
    memset(out, 0, sizeof *out);
    if (check_key(ns, "", err) != 0)
        return -1;
    char stats[NAME_MAX_LEN];
    size_t ls = name(stats, c, "s", ns, NULL);
    redisContext *rc = redis_pool_take(c->pool, err);
    if (rc == NULL)
        return -1;
    const char *argv[] = {"HGETALL", stats};
    size_t lens[] = {7, ls};
    redisReply *r = redis_command(rc, 2, argv, lens, err);
    redis_pool_give(c->pool, rc, r == NULL);
    if (r == NULL)
        return -1;
    if (r->type != REDIS_REPLY_ARRAY)
        return bad_reply(r, err);
    out->hits = field_u64(r, "hits");
    out->misses = field_u64(r, "misses");
    out->sets = field_u64(r, "sets");
    out->deletes = field_u64(r, "deletes");
    out->expirations = field_u64(r, "expirations");
    out->evictions = field_u64(r, "evictions");
    out->items = field_u64(r, "items");
    out->bytes = field_u64(r, "bytes");
    freeReplyObject(r);
    return 0;
}

static int rd_health(l2_cache *base, strata_error *err)
{
    redis_l2 *c = (redis_l2 *)base;
    redisContext *rc = redis_pool_take(c->pool, err);
    if (rc == NULL)
        return -1;
    const char *argv[] = {"PING"};
    size_t lens[] = {4};
    redisReply *r = redis_command(rc, 1, argv, lens, err);
    redis_pool_give(c->pool, rc, r == NULL);
    if (r == NULL)
        return -1;
    freeReplyObject(r);
    redis_inval_stats st;
    redis_inval_stats_get(c->inval, &st);
    if (!st.up)
        return serr_set(err, SERR_UNAVAILABLE, "the Redis invalidation stream is not subscribed");
    return 0;
}

/* ---- the sweeper: size records of values Redis expired or evicted -------------- */

static void sweep_ns(redis_l2 *c, const char *ns)
{
    char sizes[NAME_MAX_LEN], cursor[32] = "0";
    size_t lz = name(sizes, c, "z", ns, NULL);
    strata_error err;
    do {
        redisContext *rc = redis_pool_take(c->pool, &err);
        if (rc == NULL)
            return;
        const char *argv[] = {"HSCAN", sizes, cursor, "COUNT", "200"};
        size_t lens[] = {5, lz, strlen(cursor), 5, 3};
        redisReply *r = redis_command(rc, 5, argv, lens, &err);
        redis_pool_give(c->pool, rc, r == NULL);
        if (r == NULL)
            return;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            return;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        const redisReply *kv = r->element[1];
        char *batch[BATCH_KEYS];
        size_t n = 0;
        int rc2 = 0;
        for (size_t i = 0; i + 1 < kv->elements && rc2 == 0; i += 2) {
            const redisReply *k = kv->element[i];
            if (k->type != REDIS_REPLY_STRING || k->len > L2_KEY_MAX ||
                memchr(k->str, '\0', k->len) != NULL || (batch[n] = strdup(k->str)) == NULL)
                continue;
            if (++n == BATCH_KEYS) {
                rc2 = remove_batch(c, ns, "sweep", batch, n, NULL, NULL, NULL, &err);
                free_keys(batch, n);
                n = 0;
            }
        }
        if (rc2 == 0 && n > 0)
            rc2 = remove_batch(c, ns, "sweep", batch, n, NULL, NULL, NULL, &err);
        free_keys(batch, n);
        freeReplyObject(r);
        if (rc2 != 0)
            return;
    } while (strcmp(cursor, "0") != 0);
}

static void sweep(redis_l2 *c)
{
    char nss[NAME_MAX_LEN];
    size_t ln = plain_name(nss, c, "nss");
    strata_error err;
    redisContext *rc = redis_pool_take(c->pool, &err);
    if (rc == NULL)
        return;
    const char *argv[] = {"SMEMBERS", nss};
    size_t lens[] = {8, ln};
    redisReply *r = redis_command(rc, 2, argv, lens, &err);
    redis_pool_give(c->pool, rc, r == NULL);
    if (r == NULL)
        return;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type == REDIS_REPLY_STRING && e->len <= L2_NS_MAX && !strchr(e->str, ':'))
            sweep_ns(c, e->str);
    }
    freeReplyObject(r);
}

static void *sweeper_main(void *arg)
{
    redis_l2 *c = arg;
    pthread_mutex_lock(&c->stop_mu);
    while (!c->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += SWEEP_EVERY_MS / 1000;
        pthread_cond_timedwait(&c->stop_cv, &c->stop_mu, &ts);
        if (c->stop)
            break;
        pthread_mutex_unlock(&c->stop_mu);
        sweep(c);
        pthread_mutex_lock(&c->stop_mu);
    }
    pthread_mutex_unlock(&c->stop_mu);
    return NULL;
}

/* ---- the handle -------------------------------------------------------------- */

static void rd_close(l2_cache *base)
{
    redis_l2 *c = (redis_l2 *)base;
    if (c->sweeping) {
        pthread_mutex_lock(&c->stop_mu);
        c->stop = true;
        pthread_cond_broadcast(&c->stop_cv);
        pthread_mutex_unlock(&c->stop_mu);
        pthread_join(c->sweeper, NULL);
    }
    redis_inval_stop(c->inval);
    redis_pool_free(c->pool);
    pthread_cond_destroy(&c->stop_cv);
    pthread_mutex_destroy(&c->stop_mu);
    free(c);
}

static const l2_ops REDIS_OPS = {
    .name = "redis",
    .get = rd_get,
    .token = rd_token,
    .token_seen = rd_token_seen,
    .set = rd_set,
    .del = rd_del,
    .fence_open = rd_fence_open,
    .clear = rd_clear,
    .stats = rd_stats,
    .health = rd_health,
    .close = rd_close,
};

/* How long l2_redis_open waits for the first subscription. */
#define FIRST_SUBSCRIBE_MS 5000

l2_cache *l2_redis_open(const char *url, const l2_config *cfg, strata_error *err)
{
    pthread_once(&scripts_once, scripts_init);
    redis_l2 *c = calloc(1, sizeof *c);
    if (c == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    c->base.ops = &REDIS_OPS;
    c->cfg = *cfg;
    pthread_mutex_init(&c->stop_mu, NULL);
    pthread_cond_init(&c->stop_cv, NULL);
    if (redis_url_parse(url, &c->url, err) != 0)
        goto fail;
    snprintf(c->channel, sizeof c->channel, "%s:inv", c->url.prefix);
    c->pool = redis_pool_new(&c->url, POOL_MAX);
    if (c->pool == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory");
        goto fail;
    }
    /* a first connection proves the credentials and the configuration; a
     * server not reachable yet is waited for (the L2 is down meanwhile) */
    redisContext *first = redis_pool_take(c->pool, err);
    if (first == NULL && err->kind != SERR_UNAVAILABLE)
        goto fail;
    if (first == NULL)
        slog_warn("L2 redis: %s; the L2 is down until the server answers", err->detail);
    redis_pool_give(c->pool, first, false);
    c->inval = redis_inval_start(&c->url, c->pool, err);
    if (c->inval == NULL)
        goto fail;
    if (!redis_inval_wait_up(c->inval, FIRST_SUBSCRIBE_MS))
        slog_warn("L2 redis: the invalidation stream is not up yet; L1 copies wait for it");
    if (pthread_create(&c->sweeper, NULL, sweeper_main, c) == 0)
        c->sweeping = true;
    return &c->base;
fail:
    redis_inval_stop(c->inval);
    redis_pool_free(c->pool);
    pthread_cond_destroy(&c->stop_cv);
    pthread_mutex_destroy(&c->stop_mu);
    free(c);
    return NULL;
}
