#include "cache_manager.h"
#include "../common/clock.h"

#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../cache/l1.h"
#include "../codec/policy.h"
#include "../common/log.h"
#include "../common/strset.h"
#include "../config/config.h"

#define DAY_MS  (24ull * 3600 * 1000)
#define HOUR_MS (3600ull * 1000)
#define MIB     (1024ull * 1024)

/* ---- configuration ------------------------------------------------------- */

void cache_config_defaults(cache_config *cfg)
{
    static const cache_ns_config defaults[] = {
        {"dictionary", 500, 64 * MIB, 1 * DAY_MS, 7 * DAY_MS, SCODEC_NONE},
        {"corpus", 100, 512 * MIB, 30 * DAY_MS, 90 * DAY_MS, SCODEC_ZSTD},
        {"literature", 100, 512 * MIB, 30 * DAY_MS, 90 * DAY_MS, SCODEC_ZSTD},
        {"semantic", 50, 512 * MIB, 7 * DAY_MS, 30 * DAY_MS, SCODEC_NONE},
        {"search", 300, 128 * MIB, 1 * HOUR_MS, 6 * HOUR_MS, SCODEC_LZ4},
        {"trie", 50, 512 * MIB, 7 * DAY_MS, 30 * DAY_MS, SCODEC_LZ4},
        {"default", 100, 64 * MIB, 1 * HOUR_MS, 1 * DAY_MS, SCODEC_NONE},
    };
    memset(cfg, 0, sizeof *cfg);
    cfg->nns = (int)(sizeof defaults / sizeof defaults[0]);
    memcpy(cfg->ns, defaults, sizeof defaults);
    cfg->l1_global_bytes = 1024 * MIB;
}

static cache_ns_config *config_find(cache_config *cfg, const char *name)
{
    for (int i = 0; i < cfg->nns; i++)
        if (strcmp(cfg->ns[i].name, name) == 0)
            return &cfg->ns[i];
    return NULL;
}

static int apply_setting(cache_ns_config *ns, const char *key, const char *val, strata_error *err)
{
    char *end = NULL;
    unsigned long long n = strtoull(val, &end, 10);
    bool number = end != val && *end == '\0';
    if (strcmp(key, "codec") == 0) {
        if (scodec_from_name(val, &ns->l2_codec) != 0)
            return serr_set(err, SERR_INVALID, "cache namespace %s: unknown codec '%s'", ns->name,
                            val);
        return 0;
    }
    if (strcmp(key, "l1_bytes") == 0) {
        uint64_t bytes;
        if (config_parse_size(val, &bytes) != 0)
            return serr_set(err, SERR_INVALID, "cache namespace %s: bad l1_bytes '%s'", ns->name,
                            val);
        ns->l1_bytes = (size_t)bytes;
        return 0;
    }
    if (!number)
        return serr_set(err, SERR_INVALID, "cache namespace %s: %s must be a number, got '%s'",
                        ns->name, key, val);
    if (strcmp(key, "l1_items") == 0 && n >= 1 && n <= 10000000)
        ns->l1_items = (size_t)n;
    else if (strcmp(key, "l1_ttl") == 0)
        ns->l1_ttl_ms = n * 1000;
    else if (strcmp(key, "l2_ttl") == 0)
        ns->l2_ttl_ms = n * 1000;
    else
        return serr_set(err, SERR_INVALID, "cache namespace %s: unknown or out-of-range '%s'",
                        ns->name, key);
    return 0;
}

int cache_config_apply(cache_config *cfg, const char *spec, strata_error *err)
{
    char *copy = strdup(spec);
    if (copy == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    int rc = 0;
    char *save_ns = NULL;
    for (char *part = strtok_r(copy, ";", &save_ns); part && rc == 0;
         part = strtok_r(NULL, ";", &save_ns)) {
        while (isspace((unsigned char)*part))
            part++;
        if (*part == '\0')
            continue;
        char *colon = strchr(part, ':');
        if (colon == NULL) {
            rc = serr_set(err, SERR_INVALID, "cache namespaces: expected NAME:key=value,...");
            break;
        }
        *colon = '\0';
        if (cache_check_key(part, "k", err) != 0) {
            rc = -1;
            break;
        }
        cache_ns_config *ns = config_find(cfg, part);
        if (ns == NULL) {
            if (cfg->nns == CACHE_CONFIG_NS_MAX) {
                rc = serr_set(err, SERR_INVALID, "too many cache namespaces (at most %d)",
                              CACHE_CONFIG_NS_MAX);
                break;
            }
            ns = &cfg->ns[cfg->nns++];
            *ns = *config_find(cfg, "default");
            snprintf(ns->name, sizeof ns->name, "%s", part);
        }
        char *save_kv = NULL;
        for (char *kv = strtok_r(colon + 1, ",", &save_kv); kv && rc == 0;
             kv = strtok_r(NULL, ",", &save_kv)) {
            char *eq = strchr(kv, '=');
            if (eq == NULL) {
                rc =
                    serr_set(err, SERR_INVALID, "cache namespace %s: expected key=value", ns->name);
                break;
            }
            *eq = '\0';
            rc = apply_setting(ns, kv, eq + 1, err);
        }
    }
    free(copy);
    return rc;
}

/* ---- the manager ----------------------------------------------------------- */

enum ns_kind { NS_CONFIGURED, NS_INTERNAL, NS_CLIENT };

typedef struct ns_state {
    cache_ns_config cfg;
    enum ns_kind kind;
    l1_cache *l1;
    atomic_ullong loader_calls;
    atomic_ullong coalesced;
    atomic_ullong l2_bypassed; /* reads the L2 could not serve or vouch for: it failed */
} ns_state;

typedef struct inflight {
    struct inflight *next;
    char ns[L2_NS_MAX + 1];
    char key[CACHE_KEY_MAX + 1];
    pthread_cond_t done_cv;
    bool done;
    int waiters;
    uint64_t epoch; /* the manager's epoch when the load began */
    l2_token token; /* the key's L2 token read before the load (with an L2) */
    bool current;   /* the result was accepted as current (see load_and_fill) */
    cache_value *value;
    strata_error err;
} inflight;

struct cache_manager {
    cache_config cfg;
    l2_cache *l2;
    l1_budget budget;
    /* Namespaces only ever get added (none is freed before cache_free):
     * ns_add fills ns[nns] under ns_mu, then publishes it by storing nns
     * with release, so lookups read nns with acquire and scan without the
     * lock (a hit would otherwise make every HTTP thread write ns_mu's
     * cache line twice a request). */
    pthread_mutex_t ns_mu;
    ns_state *ns[CACHE_NS_MAX];
    atomic_int nns;
    int nclient; /* client-created among them, under ns_mu */
    pthread_mutex_t fly_mu;
    inflight *flying;
    /* bumped by every invalidation in this process: with no L2 it is what
     * guards L1 fills; with one, only a fast path (the L2's tokens are
     * what keeps every process's L1 coherent) */
    atomic_ullong epoch;
    pthread_mutex_t fence_mu;
    struct open_fence *fences; /* the open fences this process's threads hold */
};

/* An open fence begun by a thread of this process (cache_fence_begin):
 * the change's own cache_invalidate(fence=true), on the same thread,
 * closes it by its id, and no other. Only which fences to close is kept
 * here; what a fence refuses is the L2's, for every process, and outlives
 * this list (a crash) until it expires. */
typedef struct open_fence {
    struct open_fence *next;
    pthread_t thread;
    uint64_t until_mono; /* past its hold: expired in the L2 too, forgotten */
    l2_fence_id id;
    char ns[L2_NS_MAX + 1];
    char key[CACHE_KEY_MAX + 1];
} open_fence;

static ns_state *ns_add(cache_manager *cm, const char *name, const cache_ns_config *c,
                        enum ns_kind kind, strata_error *err);

cache_manager *cache_new(const cache_config *cfg, l2_cache *l2, strata_error *err)
{
    cache_manager *cm = calloc(1, sizeof *cm);
    if (cm == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    cm->cfg = *cfg;
    cm->l2 = l2;
    cm->budget.limit = cfg->l1_global_bytes;
    pthread_mutex_init(&cm->ns_mu, NULL);
    pthread_mutex_init(&cm->fly_mu, NULL);
    pthread_mutex_init(&cm->fence_mu, NULL);
    if (config_find(&cm->cfg, "default") == NULL) {
        cache_free(cm);
        serr_set(err, SERR_INVALID, "the cache configuration has no \"default\" namespace");
        return NULL;
    }
    for (int i = 0; i < cfg->nns; i++) {
        char internal[L2_NS_MAX + 1];
        cache_internal_ns(cfg->ns[i].name, internal, sizeof internal);
        if (ns_add(cm, cfg->ns[i].name, &cfg->ns[i], NS_CONFIGURED, err) == NULL ||
            ns_add(cm, internal, &cfg->ns[i], NS_INTERNAL, err) == NULL) {
            cache_free(cm);
            return NULL;
        }
    }
    return cm;
}

void cache_free(cache_manager *cm)
{
    if (cm == NULL)
        return;
    for (int i = 0; i < atomic_load(&cm->nns); i++) {
        l1_free(cm->ns[i]->l1);
        free(cm->ns[i]);
    }
    while (cm->fences != NULL) {
        open_fence *f = cm->fences;
        cm->fences = f->next;
        free(f);
    }
    pthread_mutex_destroy(&cm->ns_mu);
    pthread_mutex_destroy(&cm->fly_mu);
    pthread_mutex_destroy(&cm->fence_mu);
    free(cm);
}

static bool name_char_ok(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '_' || c == '.';
}

int cache_check_key(const char *ns, const char *key, strata_error *err)
{
    size_t n = strlen(ns);
    if (n == 0 || n > L2_NS_MAX)
        return serr_set(err, SERR_INVALID, "cache namespace must be 1-%d characters", L2_NS_MAX);
    if (strcmp(ns, ".") == 0 || strcmp(ns, "..") == 0)
        return serr_set(err, SERR_INVALID, "cache namespace may not be '.' or '..'");
    for (size_t i = 0; i < n; i++)
        if (!name_char_ok((unsigned char)ns[i]))
            return serr_set(err, SERR_INVALID,
                            "cache namespace may hold only letters, digits, '-', '_' and '.'");
    size_t k = strlen(key);
    if (k == 0 || k > CACHE_KEY_MAX)
        return serr_set(err, SERR_INVALID, "cache key must be 1-%d bytes", CACHE_KEY_MAX);
    for (size_t i = 0; i < k; i++)
        if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f)
            return serr_set(err, SERR_INVALID, "cache key contains a control character");
    return 0;
}

int cache_check_pattern(const char *pattern, strata_error *err)
{
    size_t n = strlen(pattern);
    if (n == 0 || n > CACHE_PATTERN_MAX)
        return serr_set(err, SERR_INVALID, "pattern must be 1-%d bytes", CACHE_PATTERN_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)pattern[i] < 0x20 || pattern[i] == 0x7f || pattern[i] == '\\')
            return serr_set(err, SERR_INVALID,
                            "pattern may not hold control characters or backslashes");
    return 0;
}

void cache_internal_ns(const char *ns, char *out, size_t cap)
{
    snprintf(out, cap, "%s%.*s", CACHE_INTERNAL_PREFIX, L2_NS_MAX - 1, ns);
}

/* Adds a namespace; the caller holds ns_mu or is cache_new. */
static ns_state *ns_add(cache_manager *cm, const char *name, const cache_ns_config *c,
                        enum ns_kind kind, strata_error *err)
{
    int n = atomic_load_explicit(&cm->nns, memory_order_relaxed);
    if (n == CACHE_NS_MAX) {
        serr_set(err, SERR_CONFLICT, "too many cache namespaces (at most %d)", CACHE_NS_MAX);
        return NULL;
    }
    ns_state *s = calloc(1, sizeof *s);
    if (s == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    s->cfg = *c;
    s->kind = kind;
    snprintf(s->cfg.name, sizeof s->cfg.name, "%s", name);
    s->l1 = l1_new(s->cfg.l1_items, s->cfg.l1_bytes, &cm->budget);
    if (s->l1 == NULL) {
        free(s);
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    cm->ns[n] = s;
    atomic_store_explicit(&cm->nns, n + 1, memory_order_release);
    return s;
}

/* The namespace called name among those published; any thread, with or
 * without ns_mu (under it, nothing can be added meanwhile). */
static ns_state *ns_find(cache_manager *cm, const char *name)
{
    int n = atomic_load_explicit(&cm->nns, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (strcmp(cm->ns[i]->cfg.name, name) == 0)
            return cm->ns[i];
    return NULL;
}

/* A namespace's state; SERR_NOT_FOUND for a name that does not exist
 * (nothing is created here: see cache_ns_create). */
static ns_state *ns_get(cache_manager *cm, const char *name, strata_error *err)
{
    ns_state *s = ns_find(cm, name);
    if (s == NULL)
        serr_set(err, SERR_NOT_FOUND, "no cache namespace '%s'", name);
    return s;
}

bool cache_ns_exists(cache_manager *cm, const char *ns)
{
    strata_error err;
    ns_state *s = ns_get(cm, ns, &err);
    return s != NULL && s->kind != NS_INTERNAL;
}

int cache_ns_create(cache_manager *cm, const char *name, strata_error *err)
{
    if (strncmp(name, CACHE_INTERNAL_PREFIX, strlen(CACHE_INTERNAL_PREFIX)) == 0)
        return serr_set(err, SERR_INVALID, "cache namespace '%s' is reserved", name);
    pthread_mutex_lock(&cm->ns_mu);
    ns_state *s = ns_find(cm, name);
    int rc = 0;
    if (s != NULL && s->kind == NS_INTERNAL)
        rc = serr_set(err, SERR_INVALID, "cache namespace '%s' is reserved", name);
    else if (s == NULL && cm->nclient >= CACHE_CLIENT_NS_MAX)
        rc = serr_set(err, SERR_CONFLICT,
                      "no new cache namespace '%s': clients have created %d already (the most "
                      "allowed); use an existing one or configure it with --cache-namespaces",
                      name, CACHE_CLIENT_NS_MAX);
    else if (s == NULL &&
             ns_add(cm, name, config_find(&cm->cfg, "default"), NS_CLIENT, err) == NULL)
        rc = -1;
    else if (s == NULL)
        cm->nclient++;
    pthread_mutex_unlock(&cm->ns_mu);
    return rc;
}

static uint64_t l1_ttl_for(const ns_state *s, const cache_value *v)
{
    uint64_t ttl = s->cfg.l1_ttl_ms;
    if (v->expires_ms > 0) {
        int64_t left = v->expires_ms - clock_wall_ms();
        if (left <= 0)
            return 1;
        if ((uint64_t)left < ttl || ttl == 0)
            ttl = (uint64_t)left;
    }
    return ttl;
}

/* Reads L2 and decodes what the namespace compressed. *tag (the token
 * read before) becomes the one the L2 gave with the value, when it gave
 * one. */
static int l2_read(cache_manager *cm, ns_state *s, const char *key, cache_value **out,
                   l2_token *tag, strata_error *err)
{
    if (cm->l2 == NULL)
        return serr_set(err, SERR_NOT_FOUND, "not cached");
    strata_buf raw, dec;
    sbuf_init(&raw, 0);
    sbuf_init(&dec, 0);
    l2_meta m = {0};
    int rc = cm->l2->ops->get(cm->l2, s->cfg.name, key, CACHE_VALUE_MAX, &raw, &m, err);
    if (rc == 0 && m.codec != SCODEC_NONE) {
        rc = scodec_decompress((enum scodec)m.codec, raw.data, raw.len, CACHE_VALUE_MAX, &dec, err);
        if (rc != 0)
            rc = serr_set(err, SERR_NOT_FOUND, "not cached (undecodable entry)");
    }
    if (rc == 0) {
        strata_buf *b = m.codec != SCODEC_NONE ? &dec : &raw;
        *out = cache_value_new(b->data, b->len, m.content_type);
        if (*out == NULL)
            rc = serr_set(err, SERR_NOMEM, "out of memory");
        else {
            (*out)->write_id = m.write_id;
            (*out)->expires_ms = m.expires_ms;
            if (tag != NULL && l2_token_usable(&m.current))
                *tag = m.current;
        }
    }
    sbuf_free(&raw);
    sbuf_free(&dec);
    return rc;
}

/* Writes to L2, compressed as the namespace says when that pays. fill:
 * the token read before v was loaded (a read-through fill), or NULL (an
 * unconditional write). *tag: the token under which v is current. */
static int l2_write(cache_manager *cm, ns_state *s, const char *key, cache_value *v,
                    uint64_t ttl_ms, const l2_token *fill, l2_token *tag, strata_error *err)
{
    l2_meta m = {0};
    snprintf(m.content_type, sizeof m.content_type, "%s", v->content_type);
    m.raw_size = v->len;
    strata_buf z;
    sbuf_init(&z, 0);
    const void *data = v->data;
    size_t len = v->len;
    if (s->cfg.l2_codec != SCODEC_NONE && v->len >= POLICY_MIN_COMPRESS_BYTES &&
        scodec_compress(s->cfg.l2_codec, SCODEC_DEFAULT_LEVEL, v->data, v->len, &z, NULL) == 0 &&
        policy_compression_pays(v->len, z.len)) {
        m.codec = (uint8_t)s->cfg.l2_codec;
        data = z.data;
        len = z.len;
    }
    uint64_t id = 0;
    int rc = cm->l2->ops->set(cm->l2, s->cfg.name, key, data, len, &m, ttl_ms, fill, tag, &id, err);
    sbuf_free(&z);
    if (rc == 0)
        v->write_id = id;
    return rc;
}

/* Validates no L1 copy: l1_get_current with it only counts a miss. */
static const l2_token NO_TOKEN;

/* The key's current L2 token into *tok, returned; NULL with no L2 (the L1
 * is then this process's alone, and the epoch guards it). A token the L2
 * cannot give is unusable: it validates no L1 copy and tags none. */
static const l2_token *token_now(cache_manager *cm, ns_state *s, const char *key, l2_token *tok)
{
    if (cm->l2 == NULL)
        return NULL;
    strata_error err;
    if (cm->l2->ops->token(cm->l2, s->cfg.name, key, tok, &err) != 0) {
        memset(tok, 0, sizeof *tok);
        atomic_fetch_add(&s->l2_bypassed, 1);
    }
    return tok;
}

/* The token a read starts with, into *tok, returned (NULL with no L2);
 * *check_l1 tells whether it may validate an L1 copy. With no copy in L1
 * there is nothing to validate, and the token only tags what is read
 * after it and guards the fill: the one this node has seen will do, and a
 * network L2 spares the wait for changes made elsewhere (token_seen). */
static const l2_token *token_for_read(cache_manager *cm, ns_state *s, const char *key,
                                      l2_token *tok, bool *check_l1)
{
    *check_l1 = cm->l2 == NULL || cm->l2->ops->token_seen == NULL || l1_holds(s->l1, key);
    if (*check_l1)
        return token_now(cm, s, key, tok);
    strata_error err;
    if (cm->l2->ops->token_seen(cm->l2, s->cfg.name, key, tok, &err) != 0) {
        memset(tok, 0, sizeof *tok);
        atomic_fetch_add(&s->l2_bypassed, 1);
    }
    return tok;
}

int cache_get(cache_manager *cm, const char *ns, const char *key, cache_value **out,
              enum cache_tier *tier, strata_error *err)
{
    ns_state *s = ns_get(cm, ns, err);
    if (s == NULL)
        return -1;
    /* the token first: it must predate whatever value is read */
    l2_token tok;
    bool check_l1;
    const l2_token *cur = token_for_read(cm, s, key, &tok, &check_l1);
    cache_value *v = l1_get_current(s->l1, key, clock_mono_ms(), check_l1 ? cur : &NO_TOKEN);
    if (v != NULL) {
        *out = v;
        *tier = CACHE_TIER_L1;
        return 0;
    }
    uint64_t epoch = atomic_load(&cm->epoch);
    if (l2_read(cm, s, key, &v, &tok, err) != 0)
        return -1;
    if (atomic_load(&cm->epoch) == epoch) /* promote, unless invalidated meanwhile */
        l1_set_tagged(s->l1, key, v, clock_mono_ms(), l1_ttl_for(s, v), cur);
    *out = v;
    *tier = CACHE_TIER_L2;
    return 0;
}

/* Runs the loader and fills the tiers with what it produced: L2 unless the
 * key changed or was fenced since fill (the token read before this load
 * began), L1 only when L2 took it (or there is no L2: then unless an
 * invalidation happened in this process meanwhile). With
 * CACHE_FILL_L1_ONLY, L1 alone, tagged with fill: a change of the key
 * after fill was read makes the copy stale at once (the fence check is
 * skipped; such keys are never fenced). L1 never takes a
 * value L2 refused or failed to store: L2's check is the only one that
 * sees open fences. Returns 0 with *current telling whether the value was
 * accepted as current. */
static int load_and_fill(cache_manager *cm, ns_state *s, const char *key, const l2_token *fill,
                         unsigned flags, cache_loader loader, void *ctx, cache_value **out,
                         bool *current, strata_error *err)
{
    uint64_t epoch = atomic_load(&cm->epoch);
    atomic_fetch_add(&s->loader_calls, 1);
    *current = false;
    if (loader(ctx, out, err) != 0)
        return -1;
    if (flags & CACHE_MEMO) /* before the value is shared: L1 charges it */
        (*out)->memo_reserve = CACHE_MEMO_RESERVE((*out)->len);
    l2_token tag;
    int l2rc = 0;
    if (fill != NULL && (flags & CACHE_FILL_L1_ONLY)) {
        tag = *fill; /* (an unusable token tags no copy: l1_set_tagged stores nothing) */
    } else if (fill != NULL) {
        strata_error e2;
        l2rc = l2_write(cm, s, key, *out, s->cfg.l2_ttl_ms, fill, &tag, &e2);
    }
    bool unchanged = atomic_load(&cm->epoch) == epoch;
    if (l2rc == 0 && unchanged)
        l1_set_tagged(s->l1, key, *out, clock_mono_ms(), s->cfg.l1_ttl_ms,
                      fill != NULL ? &tag : NULL);
    /* a refused fill (the key changed, or a change is in progress), a
     * failed one (then nothing checked it) or a local invalidation:
     * another writer may have committed after this load read the store */
    *current = unchanged && l2rc == 0;
    return 0;
}

int cache_get_or_load(cache_manager *cm, const char *ns, const char *key, bool memo,
                      cache_loader loader, void *ctx, cache_value **out, enum cache_tier *tier,
                      strata_error *err)
{
    return cache_get_or_load_ex(cm, ns, key, memo ? CACHE_MEMO : 0, loader, ctx, out, tier, err);
}

int cache_get_or_load_ex(cache_manager *cm, const char *ns, const char *key, unsigned flags,
                         cache_loader loader, void *ctx, cache_value **out, enum cache_tier *tier,
                         strata_error *err)
{
    ns_state *s = ns_get(cm, ns, err);
    if (s == NULL)
        return -1;
    /* the token first: it must predate the value, from L2 or the loader */
    l2_token tok;
    bool check_l1;
    const l2_token *cur = token_for_read(cm, s, key, &tok, &check_l1);
    cache_value *v = l1_get_current(s->l1, key, clock_mono_ms(), check_l1 ? cur : &NO_TOKEN);
    if (v != NULL) {
        *out = v;
        *tier = CACHE_TIER_L1;
        return 0;
    }
    uint64_t epoch = atomic_load(&cm->epoch);
    if (l2_read(cm, s, key, &v, &tok, err) == 0) {
        if (flags & CACHE_MEMO) /* before the value is shared: L1 charges it */
            v->memo_reserve = CACHE_MEMO_RESERVE(v->len);
        if (atomic_load(&cm->epoch) == epoch)
            l1_set_tagged(s->l1, key, v, clock_mono_ms(), l1_ttl_for(s, v), cur);
        *out = v;
        *tier = CACHE_TIER_L2;
        return 0;
    }
    if (err->kind != SERR_NOT_FOUND) {
        slog_warn("cache %s: L2 read failed: %s", ns, err->detail);
        if (cur == NULL || l2_token_usable(cur)) /* (else counted already) */
            atomic_fetch_add(&s->l2_bypassed, 1);
    }
    *tier = CACHE_TIER_LOADER;
    bool current;

    /* A miss: one loader per key, the others wait for its result. A load
     * is joined only if no invalidation happened since it began (in this
     * process: the epoch; in any: the key's token, read before each of
     * the two), and its result is handed to waiters only if it was
     * accepted as current: otherwise it may predate a write that was
     * acknowledged before the waiter arrived, and the waiter loads for
     * itself. So it does when the load found nothing (SERR_NOT_FOUND). A
     * token this node has merely seen may lag behind a change acknowledged
     * elsewhere before this reader came (and the load may have filled
     * before that change): a reader about to join asks L2 first. */
    bool fresh = check_l1;
    inflight *f;
find_flight:
    pthread_mutex_lock(&cm->fly_mu);
    f = cm->flying;
    while (f && !(strcmp(f->ns, ns) == 0 && strcmp(f->key, key) == 0))
        f = f->next;
    bool joinable = f != NULL && f->epoch == atomic_load(&cm->epoch) &&
                    (cur == NULL || l2_token_equal(&f->token, cur));
    if (joinable && !fresh) {
        pthread_mutex_unlock(&cm->fly_mu);
        cur = token_now(cm, s, key, &tok); /* (no lock held across the L2's answer) */
        fresh = true;
        goto find_flight;
    }
    if (joinable) {
        f->waiters++;
        atomic_fetch_add(&s->coalesced, 1);
        while (!f->done)
            pthread_cond_wait(&f->done_cv, &cm->fly_mu);
        /* an error is shared, except "not there": the load may have read
         * the source before a write that was acknowledged before this
         * waiter arrived (on another node: nothing here tells), and a
         * miss is no value whose fill L2 could have refused */
        bool reuse = f->value != NULL ? f->current : f->err.kind != SERR_NOT_FOUND;
        int rc = 0;
        if (reuse && f->value)
            *out = cache_value_ref(f->value);
        else if (reuse) {
            *err = f->err;
            rc = -1;
        }
        if (--f->waiters == 0) {
            cache_value_unref(f->value);
            pthread_cond_destroy(&f->done_cv);
            free(f);
        }
        pthread_mutex_unlock(&cm->fly_mu);
        if (reuse)
            return rc;
        return load_and_fill(cm, s, key, cur, flags, loader, ctx, out, &current, err);
    }
    if (f != NULL) { /* a load from before an invalidation: do not join it */
        pthread_mutex_unlock(&cm->fly_mu);
        return load_and_fill(cm, s, key, cur, flags, loader, ctx, out, &current, err);
    }
    /* a load that ended between this reader's misses and the lock filled
     * L1 before it left the list: look once more before loading again
     * (only with a token that may validate a copy) */
    v = fresh ? l1_get_current(s->l1, key, clock_mono_ms(), cur) : NULL;
    if (v != NULL) {
        pthread_mutex_unlock(&cm->fly_mu);
        *out = v;
        *tier = CACHE_TIER_L1;
        return 0;
    }
    f = calloc(1, sizeof *f);
    if (f == NULL) {
        pthread_mutex_unlock(&cm->fly_mu);
        return serr_set(err, SERR_NOMEM, "out of memory");
    }
    snprintf(f->ns, sizeof f->ns, "%s", ns);
    snprintf(f->key, sizeof f->key, "%s", key);
    pthread_cond_init(&f->done_cv, NULL);
    f->waiters = 1;
    f->epoch = atomic_load(&cm->epoch);
    if (cur != NULL)
        f->token = *cur;
    f->next = cm->flying;
    cm->flying = f;
    pthread_mutex_unlock(&cm->fly_mu);

    cache_value *loaded = NULL;
    int rc = load_and_fill(cm, s, key, cur, flags, loader, ctx, &loaded, &current, err);

    pthread_mutex_lock(&cm->fly_mu);
    inflight **pp = &cm->flying;
    while (*pp != f)
        pp = &(*pp)->next;
    *pp = f->next;
    f->done = true;
    f->current = current;
    f->value = loaded ? cache_value_ref(loaded) : NULL;
    if (rc != 0)
        f->err = *err;
    pthread_cond_broadcast(&f->done_cv);
    if (--f->waiters == 0) {
        cache_value_unref(f->value);
        pthread_cond_destroy(&f->done_cv);
        free(f);
    }
    pthread_mutex_unlock(&cm->fly_mu);
    if (rc == 0)
        *out = loaded;
    return rc;
}

int cache_set(cache_manager *cm, const char *ns, const char *key, cache_value *v, uint64_t ttl_ms,
              strata_error *err)
{
    ns_state *s = ns_get(cm, ns, err);
    if (s == NULL)
        return -1;
    uint64_t l2_ttl = ttl_ms ? ttl_ms : s->cfg.l2_ttl_ms;
    v->expires_ms = l2_ttl ? clock_wall_ms() + (int64_t)l2_ttl : 0;
    atomic_fetch_add(&cm->epoch, 1); /* a fill in flight must not overwrite this */
    l1_delete(s->l1, key);
    l2_token tag;
    if (cm->l2 != NULL && l2_write(cm, s, key, v, l2_ttl, NULL, &tag, err) != 0)
        return -1;
    /* (the write moved the key's token: every other process's copy is
     * stale from now on) */
    l1_set_tagged(s->l1, key, v, clock_mono_ms(), l1_ttl_for(s, v), cm->l2 ? &tag : NULL);
    return 0;
}

/* Drops a key from both tiers, closing the L2 fences named in close. L2
 * first: its delete moves the key's token, so no copy of the old value,
 * in any process, validates afterwards; the epoch bump stops this
 * process's fills that raced with it. */
static int drop_key(cache_manager *cm, ns_state *s, const char *key, const l2_fence_id *close,
                    size_t nclose, bool *found, strata_error *err)
{
    atomic_fetch_add(&cm->epoch, 1);
    bool in_l2 = false;
    int rc = 0;
    if (cm->l2)
        rc = cm->l2->ops->del(cm->l2, s->cfg.name, key, close, nclose, &in_l2, err);
    bool in_l1 = l1_delete(s->l1, key);
    if (found)
        *found = in_l1 || in_l2;
    return rc;
}

/* Takes out of the list the open fences this thread began on (ns, key);
 * *ids (free it) gets their ids. Forgets fences past their hold. */
static size_t fences_take(cache_manager *cm, const char *ns, const char *key, l2_fence_id **ids)
{
    size_t n = 0, cap = 0;
    *ids = NULL;
    pthread_t self = pthread_self();
    uint64_t now = clock_mono_ms();
    pthread_mutex_lock(&cm->fence_mu);
    for (open_fence **pp = &cm->fences; *pp != NULL;) {
        open_fence *f = *pp;
        bool mine =
            pthread_equal(f->thread, self) && strcmp(f->ns, ns) == 0 && strcmp(f->key, key) == 0;
        if (mine && n == cap) {
            size_t ncap = cap ? 2 * cap : 4;
            l2_fence_id *grown = realloc(*ids, ncap * sizeof **ids);
            if (grown == NULL) {
                mine = false; /* left to expire */
            } else {
                *ids = grown;
                cap = ncap;
            }
        }
        if (mine)
            (*ids)[n++] = f->id;
        if (mine || f->until_mono <= now) {
            *pp = f->next;
            free(f);
        } else {
            pp = &f->next;
        }
    }
    pthread_mutex_unlock(&cm->fence_mu);
    return n;
}

int cache_invalidate(cache_manager *cm, const char *ns, const char *key, bool fence, bool *found,
                     strata_error *err)
{
    ns_state *s = ns_get(cm, ns, err);
    if (s == NULL)
        return -1;
    l2_fence_id *ids = NULL;
    size_t n = fence && cm->l2 ? fences_take(cm, ns, key, &ids) : 0;
    int rc = drop_key(cm, s, key, ids, n, found, err);
    free(ids);
    return rc;
}

int cache_fence_begin(cache_manager *cm, const char *ns, const char *key, uint64_t hold_ms,
                      strata_error *err)
{
    ns_state *s = ns_get(cm, ns, err);
    if (s == NULL)
        return -1;
    atomic_fetch_add(&cm->epoch, 1);
    if (cm->l2 == NULL) { /* this process's L1 is the only copy */
        l1_delete(s->l1, key);
        return 0;
    }
    open_fence *f = calloc(1, sizeof *f);
    l2_fence_id id = 0;
    int rc = cm->l2->ops->fence_open(cm->l2, s->cfg.name, key, hold_ms, &id, err);
    l1_delete(s->l1, key);
    if (rc != 0) {
        free(f);
        slog_error("cache %s: cannot fence %s before a change: %s", ns, key, err->detail);
        return serr_set(err, SERR_UNAVAILABLE,
                        "the cache cannot record an invalidation right now, so the change was "
                        "not made; retry later");
    }
    if (f == NULL) { /* safe: the fence then stands until its hold ends */
        slog_warn("cache %s: out of memory; the fence on %s will stand until it expires", ns, key);
        return 0;
    }
    f->thread = pthread_self();
    f->until_mono = clock_mono_ms() + (hold_ms ? hold_ms : 24 * HOUR_MS);
    f->id = id;
    snprintf(f->ns, sizeof f->ns, "%s", ns);
    snprintf(f->key, sizeof f->key, "%s", key);
    pthread_mutex_lock(&cm->fence_mu);
    f->next = cm->fences;
    cm->fences = f;
    pthread_mutex_unlock(&cm->fence_mu);
    return 0;
}

static void collect_key(void *ctx, const char *key)
{
    strset_add(ctx, key);
}

/* Counts the L2 keys that L1 did not hold as well. */
struct l2_count {
    const strset *in_l1;
    size_t only_l2;
};

static void count_l2_key(void *ctx, const char *key)
{
    struct l2_count *c = ctx;
    if (!strset_has(c->in_l1, key))
        c->only_l2++;
}

int cache_invalidate_pattern(cache_manager *cm, const char *ns, const char *pattern, size_t *count,
                             strata_error *err)
{
    if (cache_check_pattern(pattern, err) != 0)
        return -1;
    ns_state *s = ns_get(cm, ns, err);
    if (s == NULL)
        return -1;
    /* L1 first, remembering its keys, so that the count is of distinct
     * keys (a key in both tiers counts once); then L2, whose clear moves
     * the token of every key of the namespace (every process's copies
     * fail validation); then L1 again for copies promoted from L2 in
     * between (the epoch bumps stop most) */
    strset keys;
    strset_init(&keys);
    atomic_fetch_add(&cm->epoch, 1);
    l1_delete_matching(s->l1, pattern, collect_key, &keys);
    struct l2_count c2 = {&keys, 0};
    size_t in_l2 = 0;
    int rc = 0;
    if (cm->l2)
        rc = cm->l2->ops->clear(cm->l2, ns, pattern, &in_l2, count_l2_key, &c2, err);
    atomic_fetch_add(&cm->epoch, 1);
    l1_delete_matching(s->l1, pattern, NULL, NULL);
    if (rc == 0 && keys.failed)
        rc = serr_set(err, SERR_NOMEM, "out of memory while counting the keys removed");
    *count = rc == 0 ? keys.n + c2.only_l2 : 0;
    strset_free(&keys);
    return rc;
}

/* ---- stats ------------------------------------------------------------------- */

static json_t *ns_json(cache_manager *cm, ns_state *s)
{
    l1_stats a;
    l1_get_stats(s->l1, &a);
    json_t *l1 = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "hits", (json_int_t)a.hits, "misses",
                           (json_int_t)a.misses, "evictions", (json_int_t)a.evictions,
                           "expirations", (json_int_t)a.expirations, "items", (json_int_t)a.items,
                           "bytes", (json_int_t)a.bytes);
    json_t *l2 = json_null();
    l2_stats b;
    strata_error err;
    if (cm->l2 && cm->l2->ops->stats(cm->l2, s->cfg.name, &b, &err) == 0)
        l2 = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "hits", (json_int_t)b.hits,
                       "misses", (json_int_t)b.misses, "sets", (json_int_t)b.sets, "deletes",
                       (json_int_t)b.deletes, "evictions", (json_int_t)b.evictions, "expirations",
                       (json_int_t)b.expirations, "items", (json_int_t)b.items, "bytes",
                       (json_int_t)b.bytes);
    json_t *config = json_pack("{s:I, s:I, s:I, s:I, s:s}", "l1_items", (json_int_t)s->cfg.l1_items,
                               "l1_bytes", (json_int_t)s->cfg.l1_bytes, "l1_ttl_seconds",
                               (json_int_t)(s->cfg.l1_ttl_ms / 1000), "l2_ttl_seconds",
                               (json_int_t)(s->cfg.l2_ttl_ms / 1000), "l2_compression",
                               scodec_name(s->cfg.l2_codec));
    return json_pack("{s:o, s:o, s:I, s:I, s:I, s:o}", "l1", l1, "l2", l2, "loader_calls",
                     (json_int_t)atomic_load(&s->loader_calls), "coalesced_waits",
                     (json_int_t)atomic_load(&s->coalesced), "l2_bypassed",
                     (json_int_t)atomic_load(&s->l2_bypassed), "config", config);
}

json_t *cache_stats_json(cache_manager *cm, const char *ns)
{
    strata_error err;
    if (ns != NULL) {
        ns_state *s = ns_get(cm, ns, &err);
        return s && s->kind != NS_INTERNAL ? ns_json(cm, s) : NULL;
    }
    json_t *visible = json_object(), *internal = json_object();
    int n = atomic_load_explicit(&cm->nns, memory_order_acquire);
    for (int i = 0; i < n; i++) {
        bool in = cm->ns[i]->kind == NS_INTERNAL;
        /* internal namespaces show under the name they shadow, read-only */
        const char *name = cm->ns[i]->cfg.name + (in ? strlen(CACHE_INTERNAL_PREFIX) : 0);
        json_object_set_new(in ? internal : visible, name, ns_json(cm, cm->ns[i]));
    }
    return json_pack("{s:o, s:o, s:{s:I, s:I}, s:s}", "namespaces", visible, "internal", internal,
                     "l1_budget", "limit_bytes", (json_int_t)cm->budget.limit, "used_bytes",
                     (json_int_t)atomic_load(&cm->budget.used), "l2_backend",
                     cm->l2 ? cm->l2->ops->name : "none");
}

/* One metric line per namespace of both groups; internal ones are
 * labelled with their reserved name ("@dictionary"). */
static int metric_lines(strata_buf *out, json_t *all, const char *metric, const char *tier,
                        const char *field, strata_error *err)
{
    static const char *const groups[] = {"namespaces", "internal"};
    int rc = 0;
    for (int g = 0; g < 2 && rc == 0; g++) {
        const char *name;
        json_t *ns;
        json_object_foreach(json_object_get(all, groups[g]), name, ns)
        {
            json_t *src = tier ? json_object_get(ns, tier) : ns;
            if (rc != 0 || !json_is_object(src))
                continue;
            char line[256];
            int n = snprintf(line, sizeof line, "strata_cache_%s{namespace=\"%s%s\"%s%s%s} %lld\n",
                             metric, g ? CACHE_INTERNAL_PREFIX : "", name, tier ? ",tier=\"" : "",
                             tier ? tier : "", tier ? "\"" : "",
                             (long long)json_integer_value(json_object_get(src, field)));
            rc = sbuf_append(out, line, (size_t)n, err);
        }
    }
    return rc;
}

int cache_metrics(cache_manager *cm, strata_buf *out, strata_error *err)
{
    json_t *all = cache_stats_json(cm, NULL);
    static const char *const fields[] = {"hits",        "misses", "evictions",
                                         "expirations", "items",  "bytes"};
    int rc = 0;
    char line[256];
    for (size_t f = 0; f < 6 && rc == 0; f++) {
        int n = snprintf(line, sizeof line, "# TYPE strata_cache_%s %s\n", fields[f],
                         f < 4 ? "counter" : "gauge");
        rc = sbuf_append(out, line, (size_t)n, err);
        for (int t = 1; t <= 2 && rc == 0; t++)
            rc = metric_lines(out, all, fields[f], t == 1 ? "l1" : "l2", fields[f], err);
    }
    if (rc == 0)
        rc = sbuf_append(out, "# TYPE strata_cache_loader_calls counter\n", 41, err);
    if (rc == 0)
        rc = metric_lines(out, all, "loader_calls", NULL, "loader_calls", err);
    static const char bypass[] = "# TYPE strata_cache_l2_bypassed counter\n";
    if (rc == 0)
        rc = sbuf_append(out, bypass, sizeof bypass - 1, err);
    if (rc == 0)
        rc = metric_lines(out, all, "l2_bypassed", NULL, "l2_bypassed", err);
    json_decref(all);
    return rc;
}
