#include "redis_conn.h"

#include <ctype.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>

#include "../common/clock.h"
#include "../common/hex.h"
#include "../common/log.h"

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000

/* ---- the URL ----------------------------------------------------------------- */

/* Copies [s, s+n) into out (cap bytes) decoding %XX; -1 when it does not
 * fit or an escape is malformed. */
static int pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%') {
            if (i + 2 >= n || !isxdigit((unsigned char)s[i + 1]) ||
                !isxdigit((unsigned char)s[i + 2]))
                return -1;
            char hexs[3] = {s[i + 1], s[i + 2], 0};
            ch = (char)strtol(hexs, NULL, 16);
            i += 2;
        }
        if (ch == '\0' || o + 1 >= cap)
            return -1;
        out[o++] = ch;
    }
    out[o] = '\0';
    return 0;
}

static bool prefix_ok(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n > REDIS_PREFIX_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)p[i]) && !strchr("._-", p[i]))
            return false;
    return true;
}

/* One query parameter name=value into u. */
static int url_param(redis_url *u, const char *p, size_t n, strata_error *err)
{
    const char *eq = memchr(p, '=', n);
    if (eq == NULL)
        return serr_set(err, SERR_INVALID, "Redis URL: parameter '%.*s' has no value", (int)n, p);
    size_t kn = (size_t)(eq - p);
    char val[128];
    if (pct_decode(eq + 1, n - kn - 1, val, sizeof val) != 0)
        return serr_set(err, SERR_INVALID, "Redis URL: bad value of '%.*s'", (int)kn, p);
    if (kn == 6 && memcmp(p, "prefix", 6) == 0) {
        if (!prefix_ok(val))
            return serr_set(err, SERR_INVALID,
                            "Redis URL: prefix must be 1-%d letters, digits, '.', '_' or '-'",
                            REDIS_PREFIX_MAX);
        memcpy(u->prefix, val, strlen(val) + 1); /* fits: prefix_ok checked the length */
        return 0;
    }
    if (kn == 10 && memcmp(p, "timeout_ms", 10) == 0) {
        char *end;
        long v = strtol(val, &end, 10);
        if (*end != '\0' || v < 10 || v > 600000)
            return serr_set(err, SERR_INVALID, "Redis URL: timeout_ms must be 10-600000");
        u->timeout_ms = (int)v;
        return 0;
    }
    return serr_set(err, SERR_INVALID, "Redis URL: unknown parameter '%.*s'", (int)kn, p);
}

int redis_url_parse(const char *url, redis_url *u, strata_error *err)
{
    memset(u, 0, sizeof *u);
    u->port = 6379;
    u->timeout_ms = 2000;
    snprintf(u->prefix, sizeof u->prefix, "strata");
    if (strncmp(url, "rediss://", 9) == 0)
        return serr_set(err, SERR_UNAVAILABLE,
                        "rediss:// (Redis over TLS) is not available: this build's hiredis (0.14, "
                        "Debian 12) has no TLS; use redis:// over a trusted network or a tunnel");
    if (strncmp(url, "redis://", 8) != 0)
        return serr_set(err, SERR_INVALID, "a Redis URL starts with redis://");
    const char *s = url + 8;
    const char *q = strchr(s, '?');
    const char *end = q ? q : s + strlen(s);
    const char *slash = memchr(s, '/', (size_t)(end - s));
    const char *hostend = slash ? slash : end;
    /* userinfo: everything before the last '@' of the authority */
    const char *at = NULL;
    for (const char *p = s; p < hostend; p++)
        if (*p == '@')
            at = p;
    const char *host = s;
    if (at != NULL) {
        const char *colon = memchr(s, ':', (size_t)(at - s));
        const char *uend = colon ? colon : at;
        if (pct_decode(s, (size_t)(uend - s), u->user, sizeof u->user) != 0 ||
            (colon &&
             pct_decode(colon + 1, (size_t)(at - colon - 1), u->password, sizeof u->password) != 0))
            return serr_set(err, SERR_INVALID, "Redis URL: bad user or password");
        if (colon == NULL) { /* redis://password@host, as redis-cli takes it */
            memcpy(u->password, u->user,
                   sizeof u->password < sizeof u->user ? sizeof u->password : sizeof u->user);
            u->user[0] = '\0';
        }
        host = at + 1;
    }
    const char *pcolon = NULL;
    for (const char *p = host; p < hostend; p++)
        if (*p == ':')
            pcolon = p;
    const char *hend = pcolon ? pcolon : hostend;
    if (hend == host || (size_t)(hend - host) >= sizeof u->host)
        return serr_set(err, SERR_INVALID, "Redis URL: no host");
    memcpy(u->host, host, (size_t)(hend - host));
    u->host[hend - host] = '\0';
    if (pcolon != NULL) {
        char *e;
        long port = strtol(pcolon + 1, &e, 10);
        if (e != hostend || port < 1 || port > 65535)
            return serr_set(err, SERR_INVALID, "Redis URL: bad port");
        u->port = (int)port;
    }
    if (slash != NULL && slash + 1 < end) {
        char *e;
        long db = strtol(slash + 1, &e, 10);
        if (e != end || db < 0 || db > 100000)
            return serr_set(err, SERR_INVALID, "Redis URL: the path must be a database number");
        u->db = (int)db;
    }
    if (q != NULL) {
        const char *p = q + 1;
        while (*p) {
            const char *amp = strchr(p, '&');
            size_t n = amp ? (size_t)(amp - p) : strlen(p);
            if (n > 0 && url_param(u, p, n, err) != 0)
                return -1;
            p += n + (amp ? 1 : 0);
        }
    }
    return 0;
}

/* ---- commands ---------------------------------------------------------------- */

static int reply_fail(redisContext *c, redisReply *r, strata_error *err)
{
    if (r == NULL)
        return serr_set(err, SERR_UNAVAILABLE, "Redis: %s",
                        c->err ? c->errstr : "no reply (connection lost)");
    if (r->type == REDIS_REPLY_ERROR)
        return serr_set(err, SERR_IO, "Redis: %.*s", (int)(r->len > 300 ? 300 : r->len), r->str);
    return 0;
}

/* r, or NULL with *err set (and r freed) when there is none or it is an
 * error. */
static redisReply *checked(redisContext *c, redisReply *r, strata_error *err)
{
    if (r != NULL && r->type != REDIS_REPLY_ERROR)
        return r;
    reply_fail(c, r, err);
    if (r != NULL)
        freeReplyObject(r);
    return NULL;
}

redisReply *redis_command(redisContext *c, int argc, const char **argv, const size_t *lens,
                          strata_error *err)
{
    return checked(c, redisCommandArgv(c, argc, argv, lens), err);
}

void redis_script_init(redis_script *s)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(s->text, strlen(s->text), md, &n, EVP_sha1(), NULL);
    hex_encode(md, n, s->sha);
}

redisReply *redis_script_run(redisContext *c, const redis_script *s, int nkeys, int nargs,
                             const char **argv, const size_t *lens, strata_error *err)
{
    enum { MAXARGS = REDIS_SCRIPT_ARGS_MAX + 3 };
    if (nkeys + nargs + 3 > MAXARGS) {
        serr_set(err, SERR_INTERNAL, "Redis script with too many arguments");
        return NULL;
    }
    const char *av[MAXARGS];
    size_t al[MAXARGS];
    char nk[16];
    snprintf(nk, sizeof nk, "%d", nkeys);
    av[0] = "EVALSHA";
    av[1] = s->sha;
    av[2] = nk;
    al[0] = 7;
    al[1] = 40;
    al[2] = strlen(nk);
    for (int i = 0; i < nkeys + nargs; i++) {
        av[3 + i] = argv[i];
        al[3 + i] = lens[i];
    }
    redisReply *r = redisCommandArgv(c, nkeys + nargs + 3, av, al);
    if (r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(r);
        av[0] = "EVAL";
        al[0] = 4;
        av[1] = s->text;
        al[1] = strlen(s->text);
        r = redisCommandArgv(c, nkeys + nargs + 3, av, al);
    }
    return checked(c, r, err);
}

/* ---- connecting -------------------------------------------------------------- */

/* Records the server's run_id under PREFIX:inc unless it is there already
 * (then the id recorded with it stands); returns the incarnation id. */
static redis_script INCARNATION = {
    .text = "local run = redis.call('HGET', KEYS[1], 'run')\n"
            "if run == ARGV[1] then\n"
            "  local id = redis.call('HGET', KEYS[1], 'id')\n"
            "  if id then return id end\n"
            "end\n"
            "redis.call('HSET', KEYS[1], 'run', ARGV[1], 'id', ARGV[2])\n"
            "return ARGV[2]\n"};
static pthread_once_t incarnation_once = PTHREAD_ONCE_INIT;

static void incarnation_init(void)
{
    redis_script_init(&INCARNATION);
}

static int check_incarnation(redisContext *c, const redis_url *u, char inc[REDIS_INC_MAX],
                             strata_error *err)
{
    redisReply *r = redisCommand(c, "INFO server");
    if (r == NULL || r->type != REDIS_REPLY_STRING) {
        if (r == NULL || r->type == REDIS_REPLY_ERROR)
            reply_fail(c, r, err);
        else
            serr_set(err, SERR_UNAVAILABLE, "Redis: INFO gave no text");
        if (r != NULL)
            freeReplyObject(r);
        return -1;
    }
    char run[64] = "";
    const char *p = strstr(r->str, "run_id:");
    if (p != NULL)
        sscanf(p + 7, "%63[0-9a-fA-F]", run);
    freeReplyObject(r);
    if (run[0] == '\0')
        return serr_set(err, SERR_UNAVAILABLE, "Redis: the server reports no run_id");
    uint64_t rnd = 0;
    while (rnd == 0) {
        if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
            return serr_set(err, SERR_INTERNAL, "no randomness for a Redis incarnation id");
        rnd &= (UINT64_C(1) << 62) - 1;
    }
    char fresh[REDIS_INC_MAX], key[REDIS_PREFIX_MAX + 8];
    snprintf(fresh, sizeof fresh, "%" PRIu64, rnd);
    snprintf(key, sizeof key, "%s:inc", u->prefix);
    const char *argv[] = {key, run, fresh};
    size_t lens[] = {strlen(key), strlen(run), strlen(fresh)};
    pthread_once(&incarnation_once, incarnation_init);
    r = redis_script_run(c, &INCARNATION, 1, 2, argv, lens, err);
    if (r == NULL && err->kind == SERR_IO && strstr(err->detail, "WRONGTYPE") != NULL)
        return serr_set(err, SERR_CORRUPT,
                        "Redis: %s is not Strata's (another type of value); remove it while no "
                        "node uses the prefix %s",
                        key, u->prefix);
    if (r == NULL)
        return -1;
    int rc = 0;
    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len >= REDIS_INC_MAX)
        rc = serr_set(err, SERR_UNAVAILABLE, "Redis: unexpected incarnation reply");
    else
        snprintf(inc, REDIS_INC_MAX, "%s", r->str);
    freeReplyObject(r);
    return rc;
}

/* Refuses a server whose memory policy may evict what keeps nodes
 * coherent: allkeys-* evicts open fences and bucket counters, which have
 * no expiry (volatile-* and noeviction never touch them). A server that
 * hides its configuration (managed Redis) is taken at its operator's word,
 * with a warning. */
static int check_policy(redisContext *rc, strata_error *err)
{
    redisReply *r = redisCommand(rc, "CONFIG GET maxmemory-policy");
    if (r == NULL)
        return serr_set(err, SERR_UNAVAILABLE, "Redis: %s", rc->errstr);
    int out = 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_STRING) {
        if (strncmp(r->element[1]->str, "allkeys-", 8) == 0)
            out = serr_set(err, SERR_INVALID,
                           "Redis' maxmemory-policy is %s, which can evict the fences that keep "
                           "nodes coherent; use volatile-lru (or another volatile-* policy)",
                           r->element[1]->str);
    } else {
        slog_warn("L2 redis: cannot read maxmemory-policy; it must not be allkeys-* (see the "
                  "README's operator notes)");
    }
    freeReplyObject(r);
    return out;
}

redisContext *redis_connect(const redis_url *u, char inc[REDIS_INC_MAX], strata_error *err)
{
    struct timeval tv = {u->timeout_ms / 1000, (u->timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(u->host, u->port, tv);
    if (c == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory for a Redis connection");
        return NULL;
    }
    if (c->err) {
        serr_set(err, SERR_UNAVAILABLE, "Redis at %s:%d: %s", u->host, u->port, c->errstr);
        redisFree(c);
        return NULL;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        serr_set(err, SERR_UNAVAILABLE, "Redis: cannot set the command timeout");
        redisFree(c);
        return NULL;
    }
    redisReply *r = NULL;
    if (u->user[0] != '\0')
        r = redisCommand(c, "AUTH %s %s", u->user, u->password);
    else if (u->password[0] != '\0')
        r = redisCommand(c, "AUTH %s", u->password);
    if ((u->user[0] || u->password[0]) && (r == NULL || r->type == REDIS_REPLY_ERROR)) {
        reply_fail(c, r, err);
        if (c->err == 0) /* an answer, not a lost connection: waiting will not help */
            serr_set(err, SERR_INVALID, "Redis refused the credentials: %s", err->detail);
        goto fail;
    }
    if (r != NULL)
        freeReplyObject(r);
    r = NULL;
    if (u->db != 0) {
        r = redisCommand(c, "SELECT %d", u->db);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            reply_fail(c, r, err);
            if (c->err == 0)
                serr_set(err, SERR_INVALID, "Redis refused database %d: %s", u->db, err->detail);
            goto fail;
        }
        freeReplyObject(r);
        r = NULL;
    }
    if (check_policy(c, err) != 0 || check_incarnation(c, u, inc, err) != 0)
        goto fail;
    return c;
fail:
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return NULL;
}

/* ---- the pool ---------------------------------------------------------------- */

struct redis_pool {
    redis_url url;
    pthread_mutex_t mu;
    redisContext **idle;
    int nidle, max;
    uint64_t retry_at_ms; /* no new connection before (mono) */
    uint64_t backoff_ms;
    bool down;
    char cause[256];
};

redis_pool *redis_pool_new(const redis_url *u, int max)
{
    redis_pool *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->idle = calloc((size_t)max, sizeof *p->idle);
    if (p->idle == NULL) {
        free(p);
        return NULL;
    }
    p->url = *u;
    p->max = max;
    pthread_mutex_init(&p->mu, NULL);
    return p;
}

void redis_pool_free(redis_pool *p)
{
    if (p == NULL)
        return;
    for (int i = 0; i < p->nidle; i++)
        redisFree(p->idle[i]);
    pthread_mutex_destroy(&p->mu);
    free(p->idle);
    free(p);
}

redisContext *redis_pool_take(redis_pool *p, strata_error *err)
{
    pthread_mutex_lock(&p->mu);
    if (p->nidle > 0) {
        redisContext *c = p->idle[--p->nidle];
        pthread_mutex_unlock(&p->mu);
        return c;
    }
    uint64_t now = clock_mono_ms();
    if (p->down && now < p->retry_at_ms) {
        serr_set(err, SERR_UNAVAILABLE, "Redis is unreachable (%s); retrying shortly", p->cause);
        pthread_mutex_unlock(&p->mu);
        return NULL;
    }
    pthread_mutex_unlock(&p->mu);
    char inc[REDIS_INC_MAX];
    redisContext *c = redis_connect(&p->url, inc, err);
    pthread_mutex_lock(&p->mu);
    if (c == NULL) {
        if (!p->down)
            slog_warn("L2 redis: %s", err->detail);
        p->down = true;
        p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : BACKOFF_MIN_MS;
        if (p->backoff_ms > BACKOFF_MAX_MS)
            p->backoff_ms = BACKOFF_MAX_MS;
        p->retry_at_ms = clock_mono_ms() + p->backoff_ms;
        snprintf(p->cause, sizeof p->cause, "%s", err->detail);
    } else {
        if (p->down)
            slog_info("L2 redis: reachable again");
        p->down = false;
        p->backoff_ms = 0;
    }
    pthread_mutex_unlock(&p->mu);
    return c;
}

void redis_pool_give(redis_pool *p, redisContext *c, bool broken)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    if (!broken && c->err == 0 && p->nidle < p->max) {
        p->idle[p->nidle++] = c;
        c = NULL;
    } else if (c->err != 0 && !p->down) {
        /* a lost connection: the idle ones are likely dead too */
        for (int i = 0; i < p->nidle; i++)
            redisFree(p->idle[i]);
        p->nidle = 0;
    }
    pthread_mutex_unlock(&p->mu);
    if (c != NULL)
        redisFree(c);
}
