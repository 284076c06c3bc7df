/* The S3 L2's operations that list a namespace: clear and stats (see
 * l2_s3.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/glob.h"
#include "l2_s3_int.h"

#define CLEAR_BATCH 2000 /* names a clear collects before deleting them */

typedef struct clear_batch {
    const char *ns, *pattern;
    char (*names)[L2S3_NAME_MAX];
    uint64_t *sizes;
    size_t n;
    bool full;
} clear_batch;

static int collect_clear(void *ctx, const char *name, uint64_t size, int64_t mtime_ms)
{
    (void)mtime_ms;
    clear_batch *b = ctx;
    l2s3_listed l;
    if (l2s3_parse_name(name, &l) != 0 || strcmp(l.ns, b->ns) != 0)
        return 0;
    if (!l.hashed && !glob_match(b->pattern, l.key))
        return 0;
    if (b->n == CLEAR_BATCH) {
        b->full = true;
        return 1;
    }
    snprintf(b->names[b->n], L2S3_NAME_MAX, "%s", name);
    b->sizes[b->n++] = size;
    return 0;
}

/* Removes what batch b collected (a hashed name once its key, read from
 * its header, matches); counts the values. */
static int clear_collected(l2s3 *c, clear_batch *b, size_t *count, size_t *removed,
                           void (*on_key)(void *, const char *), void *ctx, strata_error *err)
{
    for (size_t i = 0; i < b->n; i++) {
        l2s3_listed l;
        if (l2s3_parse_name(b->names[i], &l) != 0)
            continue;
        if (l.hashed) {
            char state[L2S3_NAME_MAX];
            snprintf(state, sizeof state, "%.*s", (int)(strlen(b->names[i]) - (l.marker ? 2 : 0)),
                     b->names[i]);
            strata_buf hb;
            sbuf_init(&hb, 0);
            l2s3_header_view h;
            int rc = s3_get(c->s3, state, 0, L2S3_VALUE_HDR + l.klen, L2S3_VALUE_HDR + l.klen, &hb,
                            NULL, err);
            bool match = false;
            if (rc == 0 && hb.len >= L2S3_BLANK_HDR + l.klen) {
                /* a value's header is one byte longer than a blank's */
                size_t hl = hb.data[3] == 'B' ? L2S3_BLANK_HDR + l.klen : hb.len;
                if (l2s3_parse_header(hb.data, hl, &h) == 0 && h.klen == l.klen) {
                    memcpy(l.key, h.key, h.klen);
                    l.key[h.klen] = '\0';
                    match = strlen(l.key) == h.klen && glob_match(b->pattern, l.key);
                }
            }
            sbuf_free(&hb);
            if (rc != 0 && err->kind != SERR_NOT_FOUND)
                return -1;
            if (!match)
                continue;
        }
        /* a state object gets a new blank, not a DELETE: a fill that
         * checked the old epoch lands before it or is refused (l2_s3.h) */
        if ((l.marker ? l2s3_delete(c, b->names[i], err)
                      : l2s3_blank_new(c, b->names[i], l.key, err)) != 0)
            return -1;
        (*removed)++;
        uint64_t dl;
        if (!l.marker && l2s3_sized(b->sizes[i], l.klen, &dl) == 1) {
            (*count)++;
            if (on_key)
                on_key(ctx, l.key);
        }
    }
    return 0;
}

int l2s3_clear(l2_cache *base, const char *ns, const char *pattern, size_t *count,
               void (*on_key)(void *ctx, const char *key), void *ctx, strata_error *err)
{
    l2s3 *c = (l2s3 *)base;
    *count = 0;
    char ename[L2S3_NAME_MAX], nsp[L2S3_NS_ENC_MAX + 1], lit[L2_KEY_MAX + 1];
    if (l2s3_check_ns(ns, err) != 0 || l2s3_ready(c, err) != 0 ||
        l2s3_epoch_name(ns, ename, err) != 0 || l2s3_ns_part(ns, nsp) != 0)
        return -1;
    /* first every token of the namespace moves (a fill that checked the
     * old epoch lands before the blanks below, which replace it), then
     * the matching state objects get new blanks */
    uint64_t r;
    char body[17];
    if (l2s3_random(&r, err) != 0)
        return -1;
    l2s3_hex64(r, body);
    const s3_put_opts o = {.content_type = "text/plain"};
    if (l2s3_put_again(c, ename, body, 16, &o, err) != 0)
        return -1;
    size_t litlen = glob_literal_prefix(pattern);
    snprintf(lit, sizeof lit, "%.*s", (int)(litlen < L2_KEY_MAX ? litlen : L2_KEY_MAX), pattern);
    char kp[L2S3_ENC_MAX + 1] = "";
    /* a literal prefix too long to write as a name part: list them all */
    if (l2s3_key_part(lit, kp) != 0 || kp[0] == '~')
        kp[0] = '\0';
    char prefixes[2][L2S3_NAME_MAX];
    snprintf(prefixes[0], L2S3_NAME_MAX, "v/%s/%s", nsp, kp);
    snprintf(prefixes[1], L2S3_NAME_MAX, "v/%s/~", nsp); /* hashed names */
    int nprefixes = kp[0] != '\0' ? 2 : 1;
    clear_batch b = {.ns = ns, .pattern = pattern};
    b.names = malloc(CLEAR_BATCH * sizeof *b.names);
    b.sizes = malloc(CLEAR_BATCH * sizeof *b.sizes);
    if (b.names == NULL || b.sizes == NULL) {
        free(b.names);
        free(b.sizes);
        return serr_set(err, SERR_NOMEM, "out of memory");
    }
    size_t n = 0;
    int rc = 0;
    for (int p = 0; p < nprefixes && rc == 0; p++) {
        /* a full batch stops the listing; what it removed is gone from
         * the next one, so list again until a batch is not full (or
         * removes nothing: only hashed names that do not match) */
        for (;;) {
            b.n = 0;
            b.full = false;
            size_t removed = 0;
            rc = s3_list(c->s3, prefixes[p], collect_clear, &b, err);
            if (rc == 0)
                rc = clear_collected(c, &b, &n, &removed, on_key, ctx, err);
            if (rc != 0 || !b.full || removed == 0)
                break;
        }
    }
    free(b.names);
    free(b.sizes);
    if (rc != 0)
        return -1;
    l2s3_count(c, ns, L2S3_DELETES, n);
    *count = n;
    return 0;
}

/* ---- stats ------------------------------------------------------------------------------ */

typedef struct ns_total {
    const char *ns;
    uint64_t items, bytes;
} ns_total;

static int add_total(void *ctx, const char *name, uint64_t size, int64_t mtime_ms)
{
    (void)mtime_ms;
    ns_total *t = ctx;
    l2s3_listed l;
    uint64_t dl;
    if (l2s3_parse_name(name, &l) == 0 && !l.marker && strcmp(l.ns, t->ns) == 0 &&
        l2s3_sized(size, l.klen, &dl) == 1) {
        t->items++;
        t->bytes += dl;
    }
    return 0;
}

int l2s3_stats(l2_cache *base, const char *ns, l2_stats *out, strata_error *err)
{
    l2s3 *c = (l2s3 *)base;
    memset(out, 0, sizeof *out);
    char prefix[L2S3_NAME_MAX], nsp[L2S3_NS_ENC_MAX + 1];
    if (l2s3_check_ns(ns, err) != 0 || l2s3_ns_part(ns, nsp) != 0 || l2s3_ready(c, err) != 0)
        return -1;
    snprintf(prefix, sizeof prefix, "v/%s/", nsp);
    ns_total t = {.ns = ns};
    if (s3_list(c->s3, prefix, add_total, &t, err) != 0)
        return -1;
    l2s3_counters_read(c, ns, out);
    out->items = t.items;
    out->bytes = t.bytes;
    return 0;
}
