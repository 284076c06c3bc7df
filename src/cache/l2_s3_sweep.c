/* The S3 L2's eviction pass and sweeper (see l2_s3.h: "Recency and the
 * byte budget", "The sweeper"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/clock.h"
#include "../common/log.h"
#include "l2_s3_int.h"

#define SWEEP_FIRST_MS 2000
#define SWEEP_EVERY_MS 30000
#define CANDIDATES     2048   /* least recent values a pass considers */
#define EXPIRY_CHECKS  256    /* values whose expiry a sweep reads */
#define BLANK_AGE_MS   600000 /* a blank untouched this long is removed */
#define DEBRIS_MAX     1024   /* orphan markers and old blanks removed per sweep */
#define FENCES_MAX     1024   /* fence objects a sweep looks at */
#define RETRY_PASS_MS  1000   /* after a pass that could not meet the budget */

typedef struct cand {
    char name[L2S3_NAME_MAX];
    uint64_t bytes, seq;
    int64_t lm;       /* recency: the later Last-Modified of value and marker */
    int64_t value_lm; /* the value's own, to recognise it again */
} cand;

typedef struct scan {
    l2s3 *c;
    bool full; /* a sweep (else an eviction pass) */
    int64_t now;
    uint64_t total;
    cand *heap; /* max-heap (newest on top) of the CANDIDATES least recent */
    size_t n;
    cand pending; /* the last value listed, until its marker had a chance to follow */
    bool has_pending;
    char last[L2S3_NAME_MAX]; /* the last state object listed, and whether a value */
    bool last_value;
    char (*debris)[L2S3_NAME_MAX];
    bool *debris_blank;
    size_t ndebris;
    char (*expiry)[L2S3_NAME_MAX];
    size_t nexpiry;
} scan;

static bool newer(const cand *a, const cand *b)
{
    return a->lm > b->lm || (a->lm == b->lm && a->seq > b->seq);
}

static void sift_down(cand *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && newer(&h[l], &h[m]))
            m = l;
        if (r < n && newer(&h[r], &h[m]))
            m = r;
        if (m == i)
            return;
        cand t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void heap_push(scan *s, const cand *k)
{
    if (s->n == CANDIDATES) {
        if (!newer(&s->heap[0], k))
            return;
        s->heap[0] = *k;
        sift_down(s->heap, s->n, 0);
        return;
    }
    size_t i = s->n++;
    s->heap[i] = *k;
    while (i > 0 && newer(&s->heap[i], &s->heap[(i - 1) / 2])) {
        cand t = s->heap[i];
        s->heap[i] = s->heap[(i - 1) / 2];
        s->heap[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

static void flush_pending(scan *s)
{
    if (s->has_pending)
        heap_push(s, &s->pending);
    s->has_pending = false;
}

static void add_debris(scan *s, const char *name, bool blank)
{
    if (!s->full || s->ndebris == DEBRIS_MAX)
        return;
    snprintf(s->debris[s->ndebris], L2S3_NAME_MAX, "%s", name);
    s->debris_blank[s->ndebris++] = blank;
}

static int on_listed(void *ctx, const char *name, uint64_t size, int64_t mtime_ms)
{
    scan *s = ctx;
    l2s3_listed l;
    if (l2s3_parse_name(name, &l) != 0)
        return 0;
    size_t nl = strlen(name);
    if (l.marker) {
        bool mine =
            s->last_value && strlen(s->last) == nl - 2 && strncmp(s->last, name, nl - 2) == 0;
        if (mine && s->has_pending && s->pending.lm < mtime_ms)
            s->pending.lm = mtime_ms;
        else if (!mine)
            add_debris(s, name, false); /* its value is gone (or it is listed apart) */
        return 0;
    }
    flush_pending(s);
    snprintf(s->last, sizeof s->last, "%s", name);
    uint64_t dl;
    int kind = l2s3_sized(size, l.klen, &dl);
    s->last_value = kind == 1;
    if (kind == 0 && mtime_ms < s->now - BLANK_AGE_MS)
        add_debris(s, name, true);
    if (kind != 1)
        return 0;
    s->total += dl;
    cand *p = &s->pending;
    snprintf(p->name, sizeof p->name, "%s", name);
    p->bytes = dl;
    p->lm = p->value_lm = mtime_ms;
    p->seq = l2s3_recent_seq(s->c, name);
    s->has_pending = true;
    if (s->full && s->nexpiry < EXPIRY_CHECKS && strcmp(name, s->c->cursor) > 0)
        snprintf(s->expiry[s->nexpiry++], L2S3_NAME_MAX, "%s", name);
    return 0;
}

/* Reads the header of state object name: its info and view (key copied
 * into key). 1 when it is a value, 0 a blank, -1 gone or not ours. */
static int read_head(l2s3 *c, const char *name, s3_object_info *info, l2s3_header_view *h,
                     char key[L2_KEY_MAX + 1], strata_error *err)
{
    l2s3_listed l;
    if (l2s3_parse_name(name, &l) != 0 || l.marker)
        return -1;
    size_t want = L2S3_VALUE_HDR + l.klen;
    strata_buf b;
    sbuf_init(&b, 0);
    int rc = s3_get(c->s3, name, 0, want, want, &b, info, err);
    int kind = -1;
    uint64_t g;
    if (rc == 0 && b.len >= L2S3_BLANK_HDR + l.klen) {
        size_t hl = b.data[3] == 'B' ? L2S3_BLANK_HDR + l.klen : b.len;
        if (l2s3_parse_header(b.data, hl, h) == 0 && h->klen == l.klen &&
            l2s3_parse_hex64(l2s3_meta(info, "g"), &g) == 0 && g == h->g &&
            memchr(h->key, '\0', h->klen) == NULL) {
            memcpy(key, h->key, h->klen);
            key[h->klen] = '\0';
            h->key = key;
            kind = h->kind == 'V' ? 1 : 0;
        }
    }
    sbuf_free(&b);
    return kind;
}

/* Replaces a value judged least recent by a blank, unless it changed
 * since the listing. True when it went. */
static bool evict(l2s3 *c, const cand *k)
{
    s3_object_info info;
    l2s3_header_view h;
    char key[L2_KEY_MAX + 1];
    strata_error err;
    if (read_head(c, k->name, &info, &h, key, &err) != 1 || info.mtime_ms != k->value_lm)
        return false;
    if (l2s3_blank_over(c, k->name, info.etag, h.g, key, &err) != 0)
        return false;
    l2s3_listed l;
    if (l2s3_parse_name(k->name, &l) == 0)
        l2s3_count(c, l.ns, L2S3_EVICTIONS, 1);
    return true;
}

static int by_age(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    return newer(x, y) ? 1 : newer(y, x) ? -1 : 0;
}

static void check_expiry(l2s3 *c, const char *name)
{
    s3_object_info info;
    l2s3_header_view h;
    char key[L2_KEY_MAX + 1];
    strata_error err;
    if (read_head(c, name, &info, &h, key, &err) != 1 || !l2s3_expired(&info))
        return;
    l2s3_listed l;
    if (l2s3_blank_over(c, name, info.etag, h.g, key, &err) == 0 && l2s3_parse_name(name, &l) == 0)
        l2s3_count(c, l.ns, L2S3_EXPIRATIONS, 1);
}

static void remove_debris(l2s3 *c, const char *name, bool blank, int64_t now)
{
    strata_error err;
    if (blank) {
        /* still the old blank? Deleted only while it is (If-Match): a
         * fill landing between the two keeps its value */
        s3_object_info info;
        l2s3_header_view h;
        char key[L2_KEY_MAX + 1];
        if (read_head(c, name, &info, &h, key, &err) != 0 || info.mtime_ms >= now - BLANK_AGE_MS)
            return;
        s3_delete_if_match(c->s3, name, info.etag, &err);
        return;
    }
    s3_delete(c->s3, name, &err);
}

typedef struct fence_scan {
    char (*names)[L2S3_NAME_MAX];
    size_t n;
} fence_scan;

static int on_fence(void *ctx, const char *name, uint64_t size, int64_t mtime_ms)
{
    (void)size;
    (void)mtime_ms;
    fence_scan *f = ctx;
    if (f->n == FENCES_MAX)
        return 1;
    snprintf(f->names[f->n++], L2S3_NAME_MAX, "%s", name);
    return 0;
}

/* Fence objects: first met, their hold starts for this node; met again
 * once it has passed, they go. */
static void sweep_fences(l2s3 *c)
{
    fence_scan f = {.names = malloc(FENCES_MAX * sizeof *f.names)};
    strata_error err;
    if (f.names == NULL || s3_list(c->s3, "f/", on_fence, &f, &err) != 0) {
        free(f.names);
        return;
    }
    for (size_t i = 0; i < f.n; i++) {
        char dir[L2S3_NAME_MAX];
        const char *slash = strrchr(f.names[i], '/');
        uint64_t id;
        bool open = true;
        if (slash == NULL)
            continue;
        snprintf(dir, sizeof dir, "%.*s", (int)(slash + 1 - f.names[i]), f.names[i]);
        if (!l2s3_fence_id(dir, f.names[i], &id) ||
            l2s3_fence_stands(c, f.names[i], id, &open, &err) != 0 || open)
            continue;
        if (s3_delete(c->s3, f.names[i], &err) == 0)
            l2s3_fence_forget(c, id);
    }
    free(f.names);
}

/* One listing of v/; the budget kept; a sweep also does the rest. Under
 * pass_mu. */
static void pass(l2s3 *c, bool full)
{
    scan s = {.c = c, .full = full, .now = clock_wall_ms()};
    s.heap = malloc(CANDIDATES * sizeof *s.heap);
    if (full) {
        s.debris = malloc(DEBRIS_MAX * sizeof *s.debris);
        s.debris_blank = malloc(DEBRIS_MAX * sizeof *s.debris_blank);
        s.expiry = malloc(EXPIRY_CHECKS * sizeof *s.expiry);
    }
    strata_error err;
    if (l2s3_ready(c, &err) != 0)
        goto out; /* never on a prefix that is not ours, nor while the server is away */
    if (s.heap == NULL || (full && (!s.debris || !s.debris_blank || !s.expiry))) {
        slog_warn("L2 s3: no memory for a sweep");
        goto out;
    }
    if (s3_list(c->s3, "v/", on_listed, &s, &err) != 0) {
        slog_debug("L2 s3: sweep listing: %s", err.detail);
        atomic_store(&c->pass_after, clock_mono_ms() + RETRY_PASS_MS);
        goto out;
    }
    flush_pending(&s);
    uint64_t max = c->cfg.max_bytes;
    if (max && s.total > max) {
        uint64_t target = max / 10 * 9;
        qsort(s.heap, s.n, sizeof *s.heap, by_age);
        for (size_t i = 0; i < s.n && s.total > target; i++)
            if (evict(c, &s.heap[i]))
                s.total -= s.heap[i].bytes < s.total ? s.heap[i].bytes : s.total;
        if (s.total > max)
            atomic_store(&c->pass_after, clock_mono_ms() + RETRY_PASS_MS);
    }
    atomic_store(&c->est_bytes, s.total);
    if (!full)
        goto out;
    for (size_t i = 0; i < s.nexpiry; i++)
        check_expiry(c, s.expiry[i]);
    if (s.nexpiry == EXPIRY_CHECKS)
        snprintf(c->cursor, sizeof c->cursor, "%s", s.expiry[s.nexpiry - 1]);
    else
        c->cursor[0] = '\0'; /* the end: the next sweep starts again */
    for (size_t i = 0; i < s.ndebris; i++)
        remove_debris(c, s.debris[i], s.debris_blank[i], s.now);
    sweep_fences(c);
out:
    free(s.heap);
    free(s.debris);
    free(s.debris_blank);
    free(s.expiry);
}

void l2s3_account(l2s3 *c, uint64_t bytes)
{
    uint64_t est = atomic_fetch_add(&c->est_bytes, bytes) + bytes;
    if (c->cfg.max_bytes == 0 || est <= c->cfg.max_bytes ||
        clock_mono_ms() < atomic_load(&c->pass_after))
        return;
    if (pthread_mutex_trylock(&c->pass_mu) != 0)
        return; /* a pass is running: it will see this write, or the next one will */
    pass(c, false);
    pthread_mutex_unlock(&c->pass_mu);
}

static void *sweeper_main(void *arg)
{
    l2s3 *c = arg;
    uint64_t wait = SWEEP_FIRST_MS;
    pthread_mutex_lock(&c->stop_mu);
    while (!c->stop) {
        struct timespec ts = clock_deadline_ms(wait);
        pthread_cond_timedwait(&c->stop_cv, &c->stop_mu, &ts);
        if (c->stop)
            break;
        pthread_mutex_unlock(&c->stop_mu);
        pthread_mutex_lock(&c->pass_mu);
        pass(c, true);
        pthread_mutex_unlock(&c->pass_mu);
        pthread_mutex_lock(&c->stop_mu);
        wait = SWEEP_EVERY_MS;
    }
    pthread_mutex_unlock(&c->stop_mu);
    return NULL;
}

void l2s3_sweeper_start(l2s3 *c)
{
    if (pthread_create(&c->sweeper, NULL, sweeper_main, c) == 0)
        c->sweeping = true;
    else
        slog_warn("L2 s3: no sweeper thread: expired values go when read");
}

void l2s3_sweeper_stop(l2s3 *c)
{
    if (!c->sweeping)
        return;
    pthread_mutex_lock(&c->stop_mu);
    c->stop = true;
    pthread_cond_broadcast(&c->stop_cv);
    pthread_mutex_unlock(&c->stop_mu);
    pthread_join(c->sweeper, NULL);
    c->sweeping = false;
}
