#include "redis_inval.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/clock.h"
#include "../common/log.h"

#define RELOAD_CHUNK 4096
#define KEEPALIVE_MS 5000
#define RETRY_MIN_MS 50
#define RETRY_MAX_MS 2000

static uint64_t fnv1a(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= UINT64_C(1099511628211);
    }
    return h;
}

#define FNV_BASIS UINT64_C(14695981039346656037)

uint32_t redis_key_bucket(const char *ns, const char *key)
{
    uint64_t h = fnv1a(FNV_BASIS, ns, strlen(ns) + 1); /* with its NUL: ns|key is unambiguous */
    return (uint32_t)(fnv1a(h, key, strlen(key)) % REDIS_KEY_BUCKETS);
}

uint32_t redis_ns_bucket(const char *ns)
{
    return (uint32_t)(fnv1a(FNV_BASIS, ns, strlen(ns)) % REDIS_NS_BUCKETS);
}

struct redis_inval {
    redis_url url;
    redis_pool *pool;
    char channel[REDIS_PREFIX_MAX + 8];
    _Atomic uint64_t kslots[REDIS_KEY_BUCKETS];
    _Atomic uint64_t nslots[REDIS_NS_BUCKETS];
    _Atomic uint64_t epoch;
    _Atomic uint64_t inc; /* the incarnation of the table, as a number */
    atomic_bool up;
    atomic_bool stop;
    _Atomic uint64_t messages, barriers, resubscribes;

    pthread_mutex_t mu; /* the barrier's state */
    pthread_cond_t cv;
    uint64_t pings_sent, pongs_got;
    bool want_ping;
    int wake[2]; /* readers wake the thread to send a PING */
    pthread_t thread;
};

/* ---- the table --------------------------------------------------------------- */

static void raise_slot(_Atomic uint64_t *slot, uint64_t seq)
{
    uint64_t cur = atomic_load(slot);
    while (cur < seq && !atomic_compare_exchange_weak(slot, &cur, seq))
        ;
}

/* "K <seq> <bucket>" or "N <seq> <bucket>". */
static void apply_message(redis_inval *s, const char *msg, size_t len)
{
    char buf[64];
    if (len == 0 || len >= sizeof buf)
        return;
    memcpy(buf, msg, len);
    buf[len] = '\0';
    char kind;
    uint64_t seq;
    unsigned idx;
    if (sscanf(buf, "%c %" SCNu64 " %u", &kind, &seq, &idx) != 3)
        return;
    if (kind == 'K' && idx < REDIS_KEY_BUCKETS)
        raise_slot(&s->kslots[idx], seq);
    else if (kind == 'N' && idx < REDIS_NS_BUCKETS)
        raise_slot(&s->nslots[idx], seq);
    atomic_fetch_add(&s->messages, 1);
}

/* Loads one kind of bucket (kb or nb) from Redis into slots: replacing
 * what they hold (replace) or raising it. */
static int reload_kind(redis_inval *s, redisContext *c, const char *kind, _Atomic uint64_t *slots,
                       uint32_t n, bool replace, strata_error *err)
{
    enum { NAME = REDIS_PREFIX_MAX + 16 };
    const char **argv = malloc((RELOAD_CHUNK + 1) * sizeof *argv);
    size_t *lens = malloc((RELOAD_CHUNK + 1) * sizeof *lens);
    char *names = malloc((size_t)RELOAD_CHUNK * NAME);
    int rc = 0;
    if (argv == NULL || lens == NULL || names == NULL) {
        rc = serr_set(err, SERR_NOMEM, "out of memory");
        goto out;
    }
    for (uint32_t base = 0; base < n && rc == 0; base += RELOAD_CHUNK) {
        uint32_t m = n - base < RELOAD_CHUNK ? n - base : RELOAD_CHUNK;
        argv[0] = "MGET";
        lens[0] = 4;
        for (uint32_t i = 0; i < m; i++) {
            char *nm = names + (size_t)i * NAME;
            int l = snprintf(nm, NAME, "%s:%s:%u", s->url.prefix, kind, base + i);
            argv[i + 1] = nm;
            lens[i + 1] = (size_t)l;
        }
        redisReply *r = redis_command(c, (int)m + 1, argv, lens, err);
        if (r == NULL) {
            rc = -1;
            break;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != m) {
            rc = serr_set(err, SERR_UNAVAILABLE, "Redis: unexpected MGET reply");
        } else {
            for (uint32_t i = 0; i < m; i++) {
                redisReply *e = r->element[i];
                uint64_t v = e->type == REDIS_REPLY_STRING ? strtoull(e->str, NULL, 10) : 0;
                if (replace)
                    atomic_store(&slots[base + i], v);
                else
                    raise_slot(&slots[base + i], v);
            }
        }
        freeReplyObject(r);
    }
out:
    free(argv);
    free(lens);
    free(names);
    return rc;
}

/* Reloads the whole table for a subscription of incarnation inc (which
 * must still be the server's: checked on the connection it reads with). */
static int reload(redis_inval *s, const char *inc, strata_error *err)
{
    redisContext *c = redis_pool_take(s->pool, err);
    if (c == NULL)
        return -1;
    int rc = 0;
    char key[REDIS_PREFIX_MAX + 8];
    snprintf(key, sizeof key, "%s:inc", s->url.prefix);
    redisReply *r = redisCommand(c, "HGET %s id", key);
    if (r == NULL || r->type != REDIS_REPLY_STRING || strcmp(r->str, inc) != 0)
        rc = serr_set(err, SERR_UNAVAILABLE, "Redis restarted while the subscription began");
    if (r != NULL)
        freeReplyObject(r);
    uint64_t incn = strtoull(inc, NULL, 10);
    bool replace = atomic_load(&s->inc) != incn;
    if (rc == 0)
        rc = reload_kind(s, c, "kb", s->kslots, REDIS_KEY_BUCKETS, replace, err);
    if (rc == 0)
        rc = reload_kind(s, c, "nb", s->nslots, REDIS_NS_BUCKETS, replace, err);
    if (rc == 0)
        atomic_store(&s->inc, incn);
    redis_pool_give(s->pool, c, rc != 0);
    return rc;
}

/* ---- the subscriber thread --------------------------------------------------- */

static void set_down(redis_inval *s)
{
    pthread_mutex_lock(&s->mu);
    atomic_store(&s->up, false);
    atomic_fetch_add(&s->epoch, 1);
    s->pings_sent = s->pongs_got = 0;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Sleeps ms unless stopped; whether to go on. */
static bool nap(redis_inval *s, uint64_t ms)
{
    struct pollfd p = {s->wake[0], POLLIN, 0};
    uint64_t until = clock_mono_ms() + ms;
    while (!atomic_load(&s->stop)) {
        uint64_t now = clock_mono_ms();
        if (now >= until)
            return true;
        if (poll(&p, 1, (int)(until - now)) > 0) {
            char b[64];
            while (read(s->wake[0], b, sizeof b) > 0)
                ;
        }
    }
    return false;
}

static int send_ping(redis_inval *s, redisContext *c)
{
    if (redisAppendCommand(c, "PING") != REDIS_OK)
        return -1;
    int done = 0;
    while (!done)
        if (redisBufferWrite(c, &done) != REDIS_OK)
            return -1;
    s->pings_sent++;
    return 0;
}

/* One reply read from the subscription: a message or a PING's answer. */
static void handle_reply(redis_inval *s, redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = r->element[0]->str;
    if (strcmp(kind, "message") == 0 && r->elements == 3 &&
        r->element[2]->type == REDIS_REPLY_STRING) {
        apply_message(s, r->element[2]->str, r->element[2]->len);
    } else if (strcmp(kind, "pong") == 0) {
        pthread_mutex_lock(&s->mu);
        s->pongs_got++;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
}

/* Serves one subscription until it fails or the stream stops. */
static void serve(redis_inval *s, redisContext *c)
{
    uint64_t last_io = clock_mono_ms(), ping_at = 0;
    for (;;) {
        if (atomic_load(&s->stop))
            return;
        pthread_mutex_lock(&s->mu);
        bool idle = s->pings_sent == s->pongs_got;
        bool ping = idle && (s->want_ping || clock_mono_ms() - last_io >= KEEPALIVE_MS);
        if (ping)
            s->want_ping = false;
        int rc = ping ? send_ping(s, c) : 0;
        pthread_mutex_unlock(&s->mu);
        if (rc != 0)
            return;
        if (ping)
            ping_at = clock_mono_ms();
        if (!idle && clock_mono_ms() - ping_at > (uint64_t)s->url.timeout_ms) {
            slog_warn("L2 redis: the subscription stopped answering");
            return;
        }
        struct pollfd p[2] = {{c->fd, POLLIN, 0}, {s->wake[0], POLLIN, 0}};
        int n = poll(p, 2, 200);
        if (n < 0 && errno != EINTR)
            return;
        if (n <= 0)
            continue;
        if (p[1].revents) {
            char b[64];
            while (read(s->wake[0], b, sizeof b) > 0)
                ;
        }
        if (p[0].revents) {
            if (redisBufferRead(c) != REDIS_OK)
                return;
            last_io = clock_mono_ms();
            void *reply;
            while (redisGetReplyFromReader(c, &reply) == REDIS_OK && reply != NULL) {
                handle_reply(s, reply);
                freeReplyObject(reply);
            }
            if (c->err)
                return;
        }
    }
}

/* Subscribes on a new connection; the connection, or NULL. */
static redisContext *subscribe(redis_inval *s, char inc[REDIS_INC_MAX], strata_error *err)
{
    redisContext *c = redis_connect(&s->url, inc, err);
    if (c == NULL)
        return NULL;
    redisReply *r = redisCommand(c, "SUBSCRIBE %s", s->channel);
    bool ok = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 3;
    if (!ok)
        serr_set(err, SERR_UNAVAILABLE, "Redis: SUBSCRIBE failed%s%s", c->err ? ": " : "",
                 c->err ? c->errstr : "");
    if (r != NULL)
        freeReplyObject(r);
    if (!ok) {
        redisFree(c);
        return NULL;
    }
    return c;
}

static void *subscriber_main(void *arg)
{
    redis_inval *s = arg;
    uint64_t backoff = 0;
    bool was_up = false;
    while (!atomic_load(&s->stop)) {
        strata_error err;
        char inc[REDIS_INC_MAX];
        redisContext *c = subscribe(s, inc, &err);
        if (c != NULL && reload(s, inc, &err) != 0) {
            redisFree(c);
            c = NULL;
        }
        if (c == NULL) {
            if (was_up || backoff == 0)
                slog_warn("L2 redis: no invalidation stream (%s); L1 copies are not trusted",
                          err.detail);
            was_up = false;
            backoff = backoff ? backoff * 2 : RETRY_MIN_MS;
            if (backoff > RETRY_MAX_MS)
                backoff = RETRY_MAX_MS;
            if (!nap(s, backoff))
                break;
            continue;
        }
        pthread_mutex_lock(&s->mu);
        atomic_fetch_add(&s->epoch, 1);
        atomic_store(&s->up, true);
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        atomic_fetch_add(&s->resubscribes, 1);
        if (!was_up && backoff != 0)
            slog_info("L2 redis: invalidation stream back");
        was_up = true;
        backoff = 0;
        serve(s, c);
        set_down(s);
        redisFree(c);
    }
    return NULL;
}

/* ---- the interface ----------------------------------------------------------- */

redis_inval *redis_inval_start(const redis_url *u, redis_pool *pool, strata_error *err)
{
    redis_inval *s = calloc(1, sizeof *s);
    if (s == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    s->url = *u;
    s->pool = pool;
    snprintf(s->channel, sizeof s->channel, "%s:inv", u->prefix);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pipe2(s->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        serr_set(err, SERR_INTERNAL, "no pipe for the invalidation stream");
        goto fail;
    }
    if (pthread_create(&s->thread, NULL, subscriber_main, s) != 0) {
        close(s->wake[0]);
        close(s->wake[1]);
        serr_set(err, SERR_INTERNAL, "no thread for the invalidation stream");
        goto fail;
    }
    return s;
fail:
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return NULL;
}

void redis_inval_stop(redis_inval *s)
{
    if (s == NULL)
        return;
    atomic_store(&s->stop, true);
    (void)!write(s->wake[1], "x", 1);
    pthread_join(s->thread, NULL);
    close(s->wake[0]);
    close(s->wake[1]);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* Waits on s->cv (s->mu held) for at most ms: a wake-up or a recheck. */
static void wait_a_little(redis_inval *s, long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += ms * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&s->cv, &s->mu, &ts);
}

bool redis_inval_wait_up(redis_inval *s, int ms)
{
    uint64_t until = clock_mono_ms() + (uint64_t)ms;
    pthread_mutex_lock(&s->mu);
    while (!atomic_load(&s->up) && clock_mono_ms() < until) {
        wait_a_little(s, 20);
    }
    bool up = atomic_load(&s->up);
    pthread_mutex_unlock(&s->mu);
    return up;
}

/* Waits for a PING sent after this call began to come back. */
static int barrier(redis_inval *s, strata_error *err)
{
    uint64_t until = clock_mono_ms() + (uint64_t)s->url.timeout_ms;
    pthread_mutex_lock(&s->mu);
    uint64_t epoch = atomic_load(&s->epoch);
    uint64_t target = s->pings_sent + 1;
    if (!s->want_ping) {
        s->want_ping = true;
        (void)!write(s->wake[1], "x", 1);
    }
    int rc = 0;
    for (;;) {
        if (!atomic_load(&s->up) || atomic_load(&s->epoch) != epoch) {
            rc = serr_set(err, SERR_UNAVAILABLE, "the Redis invalidation stream is down");
            break;
        }
        if (s->pongs_got >= target)
            break;
        if (clock_mono_ms() >= until) {
            rc = serr_set(err, SERR_UNAVAILABLE, "the Redis invalidation stream is slow");
            break;
        }
        wait_a_little(s, 5);
    }
    pthread_mutex_unlock(&s->mu);
    if (rc == 0)
        atomic_fetch_add(&s->barriers, 1);
    return rc;
}

static void unusable(l2_token *out)
{
    memset(out, 0, sizeof *out);
}

void redis_inval_token_now(redis_inval *s, const char *ns, const char *key, l2_token *out)
{
    uint64_t epoch = atomic_load(&s->epoch);
    if (!atomic_load(&s->up)) {
        unusable(out);
        return;
    }
    out->w[0] = atomic_load(&s->nslots[redis_ns_bucket(ns)]);
    out->w[1] = atomic_load(&s->kslots[redis_key_bucket(ns, key)]);
    out->w[2] = epoch;
    out->w[3] = (atomic_load(&s->inc) << 1) | 1;
    /* a resubscription in between may have reloaded the table */
    if (!atomic_load(&s->up) || atomic_load(&s->epoch) != epoch)
        unusable(out);
}

int redis_inval_token(redis_inval *s, const char *ns, const char *key, l2_token *out,
                      strata_error *err)
{
    if (barrier(s, err) != 0) {
        unusable(out);
        return -1;
    }
    redis_inval_token_now(s, ns, key, out);
    if (!l2_token_usable(out))
        return serr_set(err, SERR_UNAVAILABLE, "the Redis invalidation stream is down");
    return 0;
}

void redis_inval_token_after(redis_inval *s, const char *ns, const char *key, uint64_t seq,
                             const char *inc, l2_token *out)
{
    redis_inval_token_now(s, ns, key, out);
    /* the key bucket only rises, so a later change of the key makes it
     * differ from seq for good; a clear after seq would not: refuse */
    if (!l2_token_usable(out) || strtoull(inc, NULL, 10) != (out->w[3] >> 1) || out->w[0] > seq ||
        out->w[1] > seq)
        unusable(out);
    else
        out->w[1] = seq;
}

uint64_t redis_inval_epoch(redis_inval *s)
{
    return atomic_load(&s->epoch);
}

void redis_inval_tag(redis_inval *s, uint64_t epoch, uint64_t nseq, uint64_t kseq, const char *inc,
                     l2_token *out)
{
    uint64_t incn = strtoull(inc, NULL, 10);
    if (!atomic_load(&s->up) || atomic_load(&s->epoch) != epoch || atomic_load(&s->inc) != incn) {
        unusable(out);
        return;
    }
    out->w[0] = nseq;
    out->w[1] = kseq;
    out->w[2] = epoch;
    out->w[3] = (incn << 1) | 1;
}

void redis_token_parts(const l2_token *t, char nseq[24], char kseq[24], char inc[REDIS_INC_MAX])
{
    snprintf(nseq, 24, "%" PRIu64, t->w[0]);
    snprintf(kseq, 24, "%" PRIu64, t->w[1]);
    snprintf(inc, REDIS_INC_MAX, "%" PRIu64, t->w[3] >> 1);
}

void redis_inval_stats_get(redis_inval *s, redis_inval_stats *out)
{
    out->messages = atomic_load(&s->messages);
    out->barriers = atomic_load(&s->barriers);
    out->resubscribes = atomic_load(&s->resubscribes);
    out->up = atomic_load(&s->up);
}
