#include "l2_s3.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/clock.h"
#include "../common/hex.h"
#include "../common/log.h"
#include "l2_s3_int.h"

#define TOKEN_TRIES 6 /* rounds of HEAD / make-a-blank when others race us */

/* ---- writes that may be repeated ---------------------------------------------------- */

/* S3 answers some writes that meet others with a 409 (versitygw's posix
 * backend: a directory that a write beside it made or removed,
 * "ExistingObjectIsDirectory"), which s3_client reports as SERR_IO. A
 * write that may be repeated as it is (an unconditional PUT, a DELETE)
 * gets a few more tries. */
#define AGAIN_TRIES 3

int l2s3_put_again(l2s3 *c, const char *name, const void *data, size_t len, const s3_put_opts *o,
                   strata_error *err)
{
    int rc = -1;
    for (int i = 0; i < AGAIN_TRIES && rc != 0; i++)
        if ((rc = s3_put(c->s3, name, data, len, o, NULL, err)) != 0 && err->kind != SERR_IO)
            break;
    return rc;
}

int l2s3_delete(l2s3 *c, const char *name, strata_error *err)
{
    int rc = -1;
    for (int i = 0; i < AGAIN_TRIES && rc != 0; i++)
        if ((rc = s3_delete(c->s3, name, err)) != 0 && err->kind != SERR_IO)
            break;
    return rc;
}

/* ---- reading state ----------------------------------------------------------------- */

/* E of ns: a hash of the ETag of n/NS (each clear writes a new random
 * body), 0 while no clear ever ran. */
static int read_epoch(l2s3 *c, const char *ns, uint64_t *e, strata_error *err)
{
    char name[L2S3_NAME_MAX];
    if (l2s3_epoch_name(ns, name, err) != 0)
        return -1;
    s3_object_info info;
    if (s3_head(c->s3, name, &info, err) != 0) {
        if (err->kind != SERR_NOT_FOUND)
            return -1;
        *e = 0;
        return 0;
    }
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = info.etag; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    *e = h | 1;
    return 0;
}

int l2s3_check_ns(const char *ns, strata_error *err)
{
    if (ns[0] == '\0' || strlen(ns) > L2_NS_MAX)
        return serr_set(err, SERR_INVALID, "cache namespace empty or too long");
    return 0;
}

static int check_key(const char *ns, const char *key, strata_error *err)
{
    if (l2s3_check_ns(ns, err) != 0)
        return -1;
    if (key[0] == '\0' || strlen(key) > L2_KEY_MAX)
        return serr_set(err, SERR_INVALID, "cache key empty or too long");
    return 0;
}

static void make_token(l2_token *t, uint64_t e, uint64_t g)
{
    memset(t, 0, sizeof *t);
    t->w[0] = e;
    t->w[1] = g;
    t->w[3] = 1;
}

/* PUTs a state object: kind 'B' (data NULL) or 'V'; meta m and content
 * type for a value. cond: NULL (unconditional), "*" (If-None-Match) or
 * an ETag (If-Match). */
static int put_state(l2s3 *c, const char *name, char kind, uint64_t g, const char *key,
                     const void *data, size_t len, const l2_meta *meta, const char *m,
                     const char *cond, strata_error *err)
{
    size_t hdr_max = L2S3_VALUE_HDR + strlen(key);
    if (len > SIZE_MAX - hdr_max)
        return serr_set(err, SERR_TOO_LARGE, "value too large");
    unsigned char *body = malloc(hdr_max + len);
    if (body == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    size_t h = l2s3_header(body, kind, g, key, meta ? meta->codec : 0);
    if (len)
        memcpy(body + h, data, len);
    char gh[17], ct[2 * sizeof meta->content_type + 1] = "";
    l2s3_hex64(g, gh);
    s3_meta md[3] = {{"g", gh}, {"m", m}, {"t", ct}};
    if (kind == 'V')
        hex_encode(meta->content_type, strnlen(meta->content_type, sizeof meta->content_type - 1),
                   ct);
    s3_put_opts o = {.content_type = "application/octet-stream",
                     .meta = md,
                     .n_meta = kind == 'V' ? 3 : 1,
                     .if_none_match = cond != NULL && strcmp(cond, "*") == 0,
                     .if_match = cond != NULL && strcmp(cond, "*") != 0 ? cond : NULL};
    int rc = cond == NULL ? l2s3_put_again(c, name, body, h + len, &o, err)
                          : s3_put(c->s3, name, body, h + len, &o, NULL, err);
    free(body);
    return rc;
}

int l2s3_blank_new(l2s3 *c, const char *name, const char *key, strata_error *err)
{
    uint64_t g;
    if (l2s3_random(&g, err) != 0)
        return -1;
    return put_state(c, name, 'B', g, key, NULL, 0, NULL, NULL, NULL, err);
}

int l2s3_blank_over(l2s3 *c, const char *name, const char *etag, uint64_t g, const char *key,
                    strata_error *err)
{
    if (put_state(c, name, 'B', g, key, NULL, 0, NULL, NULL, etag, err) == 0)
        return 0;
    return err->kind == SERR_PRECONDITION || err->kind == SERR_NOT_FOUND ? 1 : -1;
}

/* The generation of a HEAD's state object; -1 when it has none we made. */
static int state_g(const s3_object_info *info, uint64_t *g)
{
    return l2s3_parse_hex64(l2s3_meta(info, "g"), g);
}

/* ---- operations ---------------------------------------------------------------------- */

typedef struct value_meta {
    uint64_t wid, raw;
    long long expires, expire_at;
} value_meta;

static int parse_m(const char *m, value_meta *v)
{
    char wid[17];
    int used = 0;
    if (m == NULL ||
        sscanf(m, "%16s %" SCNu64 " %lld %lld%n", wid, &v->raw, &v->expires, &v->expire_at,
               &used) != 4 ||
        m[used] != '\0' || l2s3_parse_hex64(wid, &v->wid) != 0)
        return -1;
    return 0;
}

static int miss(l2s3 *c, const char *ns, strata_error *err, const char *why)
{
    l2s3_count(c, ns, L2S3_MISSES, 1);
    return serr_set(err, SERR_NOT_FOUND, "not in the L2 cache (%s)", why);
}

static int s3l2_get(l2_cache *base, const char *ns, const char *key, size_t max_len,
                    strata_buf *out, l2_meta *meta, strata_error *err)
{
    l2s3 *c = (l2s3 *)base;
    char name[L2S3_NAME_MAX];
    if (check_key(ns, key, err) != 0 || l2s3_ready(c, err) != 0 ||
        l2s3_state_name(ns, key, 'v', name, err) != 0)
        return -1;
    size_t klen = strlen(key), hdr = L2S3_VALUE_HDR + klen;
    size_t cap = max_len > SIZE_MAX - hdr ? SIZE_MAX : max_len + hdr;
    strata_buf b;
    sbuf_init(&b, 0);
    s3_object_info info;
    if (s3_get(c->s3, name, 0, 0, cap, &b, &info, err) != 0) {
        sbuf_free(&b);
        if (err->kind == SERR_NOT_FOUND || err->kind == SERR_TOO_LARGE)
            return miss(c, ns, err, err->kind == SERR_NOT_FOUND ? "absent" : "too long");
        return -1;
    }
    l2s3_header_view h;
    uint64_t g;
    value_meta vm;
    const char *why = NULL;
    if (l2s3_parse_header(b.data, b.len, &h) != 0 || state_g(&info, &g) != 0 || g != h.g ||
        h.klen != klen || memcmp(h.key, key, klen) != 0)
        why = "malformed";
    else if (h.kind != 'V')
        why = "blank";
    else if (parse_m(l2s3_meta(&info, "m"), &vm) != 0)
        why = "malformed";
    if (why != NULL) {
        if (strcmp(why, "malformed") == 0)
            slog_warn("L2 s3: %s/%s: a malformed entry, taken as a miss", ns, key);
        sbuf_free(&b);
        return miss(c, ns, err, why);
    }
    if (vm.expire_at != 0 && clock_wall_ms() >= vm.expire_at) {
        strata_error e2;
        if (l2s3_blank_over(c, name, info.etag, g, key, &e2) < 0)
            slog_warn("L2 s3: %s/%s expired, not replaced: %s", ns, key, e2.detail);
        sbuf_free(&b);
        l2s3_count(c, ns, L2S3_EXPIRATIONS, 1);
        return miss(c, ns, err, "expired");
    }
    meta->write_id = vm.wid; /* meta->current stays as the caller set it */
    meta->codec = h.codec;
    meta->raw_size = vm.raw;
    meta->expires_ms = vm.expires;
    const char *ct = l2s3_meta(&info, "t");
    size_t ctl = ct ? strlen(ct) / 2 : 0;
    if (ctl >= sizeof meta->content_type || hex_decode(ct, ctl, meta->content_type) != 0)
        ctl = 0;
    meta->content_type[ctl] = '\0';
    int rc = sbuf_append(out, b.data + h.hdr_len, b.len - h.hdr_len, err);
    sbuf_free(&b);
    if (rc != 0)
        return -1;
    l2s3_count(c, ns, L2S3_HITS, 1);
    if (l2s3_note_use(c, name, true)) {
        /* the access, for LRU across nodes: an empty marker beside it */
        char marker[L2S3_NAME_MAX + 4];
        strata_error e2;
        snprintf(marker, sizeof marker, "%s!a", name);
        if (s3_put(c->s3, marker, "", 0, NULL, NULL, &e2) != 0)
            slog_debug("L2 s3: access marker %s: %s", marker, e2.detail);
    }
    return 0;
}

static int s3l2_token(l2_cache *base, const char *ns, const char *key, l2_token *out,
                      strata_error *err)
{
    l2s3 *c = (l2s3 *)base;
    memset(out, 0, sizeof *out);
    char name[L2S3_NAME_MAX];
    uint64_t e;
    if (check_key(ns, key, err) != 0 || l2s3_ready(c, err) != 0 ||
        l2s3_state_name(ns, key, 'v', name, err) != 0 || read_epoch(c, ns, &e, err) != 0)
        return -1;
    for (int attempt = 0; attempt < TOKEN_TRIES; attempt++) {
        s3_object_info info;
        uint64_t g;
        if (s3_head(c->s3, name, &info, err) == 0) {
            if (state_g(&info, &g) == 0) {
                make_token(out, e, g);
                return 0;
            }
            /* not a state object of ours: a fresh blank replaces it */
            if (l2s3_random(&g, err) != 0)
                return -1;
            if (put_state(c, name, 'B', g, key, NULL, 0, NULL, NULL, info.etag, err) == 0) {
                make_token(out, e, g);
                return 0;
            }
        } else if (err->kind == SERR_NOT_FOUND) {
            /* absent: a blank with a new generation, so that "absent" is
             * never a token (l2_s3.h) */
            if (l2s3_random(&g, err) != 0)
                return -1;
            if (put_state(c, name, 'B', g, key, NULL, 0, NULL, NULL, "*", err) == 0) {
                make_token(out, e, g);
                return 0;
            }
        } else {
            return -1;
        }
        if (err->kind == SERR_IO)
            continue; /* perhaps S3's 409 to conditional writes in flight */
        if (err->kind != SERR_PRECONDITION && err->kind != SERR_NOT_FOUND)
            return -1;
        serr_set(err, SERR_RETRY, "S3 L2: %s/%s keeps changing", ns, key);
    }
    return -1;
}

typedef struct fence_list {
    const char *dir;
    uint64_t ids[16];
    int n;
    bool more;
} fence_list;

static int collect_fence(void *ctx, const char *name, uint64_t size, int64_t mtime_ms)
{
    (void)size;
    (void)mtime_ms;
    fence_list *f = ctx;
    uint64_t id;
    if (!l2s3_fence_id(f->dir, name, &id))
        return 0;
    if (f->n == (int)(sizeof f->ids / sizeof f->ids[0])) {
        f->more = true; /* more than we look at: taken as fenced */
        return 1;
    }
    f->ids[f->n++] = id;
    return 0;
}

/* Whether an open fence of (ns, key) stands for this node. */
static int fenced(l2s3 *c, const char *ns, const char *key, bool *out, strata_error *err)
{
    char dir[L2S3_NAME_MAX], fname[L2S3_NAME_MAX];
    *out = false;
    if (l2s3_fence_dir(ns, key, dir, err) != 0)
        return -1;
    fence_list f = {.dir = dir};
    if (s3_list(c->s3, dir, collect_fence, &f, err) != 0)
        return -1;
    if (f.more) {
        *out = true;
        return 0;
    }
    for (int i = 0; i < f.n && !*out; i++) {
        l2s3_fence_name(dir, f.ids[i], fname);
        if (l2s3_fence_stands(c, fname, f.ids[i], out, err) != 0)
            return -1;
    }
    return 0;
}

static int s3l2_set(l2_cache *base, const char *ns, const char *key, const void *data, size_t len,
                    const l2_meta *meta, uint64_t ttl_ms, const l2_token *fill, l2_token *new_token,
                    uint64_t *write_id, strata_error *err)
{
    l2s3 *c = (l2s3 *)base;
    l2_token none = {{0}}, fill_tok = fill ? *fill : none;
    if (new_token)
        *new_token = none;
    char name[L2S3_NAME_MAX], m[128];
    if (check_key(ns, key, err) != 0 || l2s3_ready(c, err) != 0 ||
        l2s3_state_name(ns, key, 'v', name, err) != 0)
        return -1;
    if (c->cfg.max_bytes && len > c->cfg.max_bytes)
        return serr_set(err, SERR_TOO_LARGE, "value larger than the L2 cache");
    uint64_t g, wid;
    if (l2s3_random(&wid, err) != 0)
        return -1;
    long long expire_at = ttl_ms ? (long long)(clock_wall_ms() + (int64_t)ttl_ms) : 0;
    char widh[17];
    l2s3_hex64(wid, widh);
    snprintf(m, sizeof m, "%s %" PRIu64 " %lld %lld", widh, meta->raw_size,
             (long long)meta->expires_ms, expire_at);
    char etag[S3_ETAG_MAX] = "";
    if (fill != NULL) {
        /* a fill: the state object must still be the token's, under the
         * token's epoch, with no fence standing (l2_s3.h) */
        if (!l2_token_usable(&fill_tok))
            return serr_set(err, SERR_CONFLICT, "no usable token: the fill is refused");
        s3_object_info info;
        uint64_t e;
        bool f = false;
        if (s3_head(c->s3, name, &info, err) != 0) {
            if (err->kind == SERR_NOT_FOUND)
                return serr_set(err, SERR_CONFLICT, "the key changed: the fill is refused");
            return -1;
        }
        if (state_g(&info, &g) != 0 || g != fill_tok.w[1])
            return serr_set(err, SERR_CONFLICT, "the key changed: the fill is refused");
        if (read_epoch(c, ns, &e, err) != 0)
            return -1;
        if (e != fill_tok.w[0])
            return serr_set(err, SERR_CONFLICT, "the namespace was cleared: the fill is refused");
        if (fenced(c, ns, key, &f, err) != 0)
            return -1;
        if (f)
            return serr_set(err, SERR_CONFLICT, "the key is fenced: the fill is refused");
        snprintf(etag, sizeof etag, "%s", info.etag);
    } else if (l2s3_random(&g, err) != 0) {
        return -1;
    }
    if (put_state(c, name, 'V', g, key, data, len, meta, m, fill ? etag : NULL, err) != 0) {
        if (fill != NULL && (err->kind == SERR_PRECONDITION || err->kind == SERR_NOT_FOUND))
            return serr_set(err, SERR_CONFLICT, "the key changed: the fill is refused");
        if (fill == NULL && (err->kind == SERR_UNAVAILABLE || err->kind == SERR_IO)) {
            /* it may have landed: a miss, never a value this call wrote
             * (a fill that landed passed its conditions: it stays) */
            strata_error e2;
            l2s3_delete(c, name, &e2);
        }
        return -1;
    }
    l2s3_count(c, ns, L2S3_SETS, 1);
    l2s3_note_use(c, name, false);
    if (write_id)
        *write_id = wid;
    if (new_token && fill) {
        *new_token = fill_tok;
    } else if (new_token) {
        uint64_t e;
        strata_error e2;
        if (read_epoch(c, ns, &e, &e2) == 0)
            make_token(new_token, e, g);
    }
    l2s3_account(c, len);
    return 0;
}

bool l2s3_expired(const s3_object_info *info)
{
    value_meta vm;
    return parse_m(l2s3_meta(info, "m"), &vm) == 0 && vm.expire_at != 0 &&
           clock_wall_ms() >= vm.expire_at;
}

/* Whether the state object a HEAD showed holds a live value. */
static bool live_value(const s3_object_info *info, size_t klen)
{
    uint64_t dl;
    value_meta vm;
    return l2s3_sized(info->size, klen, &dl) == 1 && parse_m(l2s3_meta(info, "m"), &vm) == 0 &&
           (vm.expire_at == 0 || clock_wall_ms() < vm.expire_at);
}

static int s3l2_del(l2_cache *base, const char *ns, const char *key, const l2_fence_id *close_ids,
                    size_t nclose, bool *found, strata_error *err)
{
    l2s3 *c = (l2s3 *)base;
    if (found)
        *found = false;
    char name[L2S3_NAME_MAX], dir[L2S3_NAME_MAX], fname[L2S3_NAME_MAX];
    if (check_key(ns, key, err) != 0 || l2s3_ready(c, err) != 0 ||
        l2s3_state_name(ns, key, 'v', name, err) != 0 || l2s3_fence_dir(ns, key, dir, err) != 0)
        return -1;
    s3_object_info info;
    bool live = false;
    if (s3_head(c->s3, name, &info, err) == 0)
        live = live_value(&info, strlen(key));
    else if (err->kind != SERR_NOT_FOUND)
        return -1;
    /* the fences, then the state object: a fill that passed the fence
     * check lands before the new blank (which replaces it) or meets a
     * changed ETag (l2_s3.h: why a blank and not a DELETE) */
    for (size_t i = 0; i < nclose; i++) {
        if (close_ids[i] == 0)
            continue;
        l2s3_fence_name(dir, close_ids[i], fname);
        if (l2s3_delete(c, fname, err) != 0)
            return -1;
        l2s3_fence_forget(c, close_ids[i]);
    }
    if (l2s3_blank_new(c, name, key, err) != 0)
        return -1;
    if (live)
        l2s3_count(c, ns, L2S3_DELETES, 1);
    if (found)
        *found = live;
    return 0;
}

static int s3l2_fence_open(l2_cache *base, const char *ns, const char *key, uint64_t hold_ms,
                           l2_fence_id *id, strata_error *err)
{
    l2s3 *c = (l2s3 *)base;
    *id = 0;
    char name[L2S3_NAME_MAX], dir[L2S3_NAME_MAX], fname[L2S3_NAME_MAX], text[HOLD_TEXT];
    uint64_t fid;
    if (check_key(ns, key, err) != 0 || l2s3_ready(c, err) != 0 ||
        l2s3_state_name(ns, key, 'v', name, err) != 0 || l2s3_fence_dir(ns, key, dir, err) != 0 ||
        l2s3_random(&fid, err) != 0)
        return -1;
    uint64_t hold = hold_ms ? hold_ms : c->cfg.fence_ttl_ms;
    snprintf(text, sizeof text, "%" PRIu64, hold);
    l2s3_fence_name(dir, fid, fname);
    l2s3_seen_note(c, fid, hold); /* its hold runs from before it exists */
    const s3_put_opts o = {.content_type = "text/plain"};
    if (l2s3_put_again(c, fname, text, strlen(text), &o, err) != 0) {
        l2s3_fence_forget(c, fid);
        return -1;
    }
    /* then the value goes and the token moves: a fill that passed its
     * fence check before the fence existed is replaced here or refused */
    if (l2s3_blank_new(c, name, key, err) != 0) {
        strata_error e2;
        l2s3_delete(c, fname, &e2);
        l2s3_fence_forget(c, fid);
        return -1;
    }
    *id = fid;
    return 0;
}

/* ---- the operations as l2_ops, behind the breaker (l2_s3_ready.c) ---------------- */

static int w_get(l2_cache *b, const char *ns, const char *key, size_t max_len, strata_buf *out,
                 l2_meta *meta, strata_error *err)
{
    return l2s3_guard((l2s3 *)b, s3l2_get(b, ns, key, max_len, out, meta, err), err);
}

static int w_token(l2_cache *b, const char *ns, const char *key, l2_token *out, strata_error *err)
{
    return l2s3_guard((l2s3 *)b, s3l2_token(b, ns, key, out, err), err);
}

static int w_set(l2_cache *b, const char *ns, const char *key, const void *data, size_t len,
                 const l2_meta *meta, uint64_t ttl_ms, const l2_token *fill, l2_token *new_token,
                 uint64_t *write_id, strata_error *err)
{
    return l2s3_guard((l2s3 *)b,
                      s3l2_set(b, ns, key, data, len, meta, ttl_ms, fill, new_token, write_id, err),
                      err);
}

static int w_del(l2_cache *b, const char *ns, const char *key, const l2_fence_id *close_ids,
                 size_t nclose, bool *found, strata_error *err)
{
    return l2s3_guard((l2s3 *)b, s3l2_del(b, ns, key, close_ids, nclose, found, err), err);
}

static int w_fence_open(l2_cache *b, const char *ns, const char *key, uint64_t hold_ms,
                        l2_fence_id *id, strata_error *err)
{
    return l2s3_guard((l2s3 *)b, s3l2_fence_open(b, ns, key, hold_ms, id, err), err);
}

static int w_clear(l2_cache *b, const char *ns, const char *pattern, size_t *count,
                   void (*on_key)(void *ctx, const char *key), void *ctx, strata_error *err)
{
    return l2s3_guard((l2s3 *)b, l2s3_clear(b, ns, pattern, count, on_key, ctx, err), err);
}

static int w_stats(l2_cache *b, const char *ns, l2_stats *out, strata_error *err)
{
    return l2s3_guard((l2s3 *)b, l2s3_stats(b, ns, out, err), err);
}

static int w_health(l2_cache *b, strata_error *err)
{
    return l2s3_health((l2s3 *)b, err);
}

static void free_handle(l2s3 *c)
{
    s3_client_free(c->s3);
    pthread_cond_destroy(&c->stop_cv);
    pthread_mutex_destroy(&c->stop_mu);
    pthread_mutex_destroy(&c->pass_mu);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->ready_mu);
    pthread_mutex_destroy(&c->down_mu);
    free(c);
}

static void s3l2_close(l2_cache *base)
{
    l2s3 *c = (l2s3 *)base;
    l2s3_sweeper_stop(c);
    free_handle(c);
}

static const l2_ops S3_OPS = {
    .name = "s3",
    .get = w_get,
    .token = w_token,
    .token_seen = NULL,
    .set = w_set,
    .del = w_del,
    .fence_open = w_fence_open,
    .clear = w_clear,
    .stats = w_stats,
    .health = w_health,
    .close = s3l2_close,
};

l2_cache *l2_s3_open(const char *url, const l2_config *cfg, strata_error *err)
{
    s3_config sc;
    if (s3_config_from_url(url, &sc, err) != 0)
        return NULL;
    l2s3 *c = calloc(1, sizeof *c);
    if (c == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    c->base.ops = &S3_OPS;
    c->cfg = *cfg;
    pthread_mutex_init(&c->ready_mu, NULL);
    pthread_mutex_init(&c->down_mu, NULL);
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->pass_mu, NULL);
    pthread_mutex_init(&c->stop_mu, NULL);
    pthread_cond_init(&c->stop_cv, NULL);
    if (sc.max_retries > 2)
        sc.max_retries = 2; /* a cache fails fast: a miss beats a wait */
    c->s3 = s3_client_new(&sc, err);
    if (c->s3 == NULL) {
        free_handle(c);
        return NULL;
    }
    if (l2s3_ready(c, err) != 0) {
        if (err->kind != SERR_UNAVAILABLE && err->kind != SERR_IO) {
            free_handle(c);
            return NULL;
        }
        slog_warn("L2 s3: %s; the L2 is down until the server answers", err->detail);
    }
    l2s3_sweeper_start(c);
    serr_clear(err);
    return &c->base;
}
