/* The S3 L2's local tables (l2_s3_int.h): what one handle keeps in its
 * own memory (counters, recency hints, fences seen). None of it is what
 * keeps nodes coherent: it only counts, orders ties and times holds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/clock.h"
#include "l2_s3_int.h"

static l2s3_counters *counters_for(l2s3 *c, const char *ns)
{
    for (int i = 0; i < c->ncounters; i++)
        if (strcmp(c->counters[i].ns, ns) == 0)
            return &c->counters[i];
    if (c->ncounters == L2S3_COUNTERS_MAX)
        return &c->overflow;
    l2s3_counters *n = &c->counters[c->ncounters++];
    memset(n, 0, sizeof *n);
    snprintf(n->ns, sizeof n->ns, "%s", ns);
    return n;
}

void l2s3_count(l2s3 *c, const char *ns, int which, uint64_t n)
{
    pthread_mutex_lock(&c->mu);
    counters_for(c, ns)->v[which] += n;
    pthread_mutex_unlock(&c->mu);
}

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h | 1; /* 0 marks an empty slot */
}

uint64_t l2s3_recent_seq(l2s3 *c, const char *name)
{
    uint64_t h = name_hash(name), seq = 0;
    pthread_mutex_lock(&c->mu);
    const l2s3_recent *r = &c->recent[h % L2S3_RECENT_SLOTS];
    if (r->hash == h)
        seq = r->seq;
    pthread_mutex_unlock(&c->mu);
    return seq;
}

/* Notes a use of name; true when its access marker is due (read). */
bool l2s3_note_use(l2s3 *c, const char *name, bool read)
{
    uint64_t h = name_hash(name), now = clock_mono_ms();
    bool due = false;
    pthread_mutex_lock(&c->mu);
    l2s3_recent *r = &c->recent[h % L2S3_RECENT_SLOTS];
    if (r->hash != h)
        *r = (l2s3_recent){.hash = h};
    r->seq = ++c->seq;
    if (!read) {
        r->touched_ms = now; /* a write restarts Last-Modified itself */
    } else if (r->touched_ms == 0 || now - r->touched_ms >= L2S3_TOUCH_MS) {
        r->touched_ms = now;
        due = true;
    }
    pthread_mutex_unlock(&c->mu);
    return due;
}

void l2s3_seen_note(l2s3 *c, uint64_t id, uint64_t hold_ms)
{
    uint64_t now = clock_mono_ms();
    pthread_mutex_lock(&c->mu);
    l2s3_seen *slot = &c->seen[0];
    for (int i = 0; i < L2S3_SEEN_MAX && slot != NULL; i++) {
        l2s3_seen *s = &c->seen[i];
        if (s->id == id)
            slot = NULL; /* known: its first sight stands */
        else if (slot->id != 0 && (s->id == 0 || s->first_ms < slot->first_ms))
            slot = s; /* a free slot, else the oldest (met again, it waits anew) */
    }
    if (slot != NULL)
        *slot = (l2s3_seen){.id = id, .hold_ms = hold_ms, .first_ms = now};
    pthread_mutex_unlock(&c->mu);
}

void l2s3_fence_forget(l2s3 *c, uint64_t id)
{
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < L2S3_SEEN_MAX; i++)
        if (c->seen[i].id == id)
            c->seen[i].id = 0;
    pthread_mutex_unlock(&c->mu);
}

int l2s3_fence_stands(l2s3 *c, const char *fname, uint64_t id, bool *open, strata_error *err)
{
    *open = false;
    int known = 0;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < L2S3_SEEN_MAX; i++)
        if (c->seen[i].id == id) {
            known = 1;
            *open = clock_mono_ms() - c->seen[i].first_ms < c->seen[i].hold_ms;
            break;
        }
    pthread_mutex_unlock(&c->mu);
    if (known)
        return 0;
    strata_buf b;
    sbuf_init(&b, 0);
    int rc = s3_get(c->s3, fname, 0, 0, HOLD_TEXT, &b, NULL, err);
    char text[HOLD_TEXT + 1];
    snprintf(text, sizeof text, "%.*s", (int)b.len, b.len ? (const char *)b.data : "");
    sbuf_free(&b);
    if (rc != 0) {
        if (err->kind == SERR_NOT_FOUND)
            return 0; /* closed meanwhile */
        if (err->kind != SERR_TOO_LARGE)
            return -1;
        text[0] = '\0';
    }
    char *end;
    unsigned long long hold = strtoull(text, &end, 10);
    if (end == text || *end != '\0')
        hold = c->cfg.fence_ttl_ms ? c->cfg.fence_ttl_ms : 60000; /* unreadable: the default */
    l2s3_seen_note(c, id, hold);
    *open = hold > 0;
    return 0;
}

void l2s3_counters_read(l2s3 *c, const char *ns, l2_stats *out)
{
    pthread_mutex_lock(&c->mu);
    const l2s3_counters *n = counters_for(c, ns);
    out->hits = n->v[L2S3_HITS];
    out->misses = n->v[L2S3_MISSES];
    out->sets = n->v[L2S3_SETS];
    out->deletes = n->v[L2S3_DELETES];
    out->expirations = n->v[L2S3_EXPIRATIONS];
    out->evictions = n->v[L2S3_EVICTIONS];
    pthread_mutex_unlock(&c->mu);
}
