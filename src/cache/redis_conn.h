/* Connections to one redis-server for the Redis L2: the URL, a pool of
 * hiredis contexts shared by the worker threads, timeouts, reconnection
 * with backoff, the server's incarnation, and Lua scripts run by their
 * SHA-1 (loaded again when the server forgot them).
 *
 * URL: redis://[user:password@]host[:port][/db][?prefix=NAME&timeout_ms=N]
 *   port 6379 and db 0 by default; prefix (default "strata",
 *   [A-Za-z0-9._-]{1,64}) starts every key this deployment writes, so
 *   deployments sharing a server never see each other's keys; timeout_ms
 *   (default 2000) bounds connecting and every command. rediss:// is
 *   refused: Debian 12's hiredis 0.14 has no TLS.
 *
 * The incarnation. Every new connection (pooled or the subscriber's) asks
 * the server for its run_id, which changes at every restart, and checks it
 * against the one recorded under PREFIX:inc; a different one (the server
 * restarted, empty or from a snapshot) gets a new random incarnation id
 * recorded there, atomically, so that all nodes agree on it. Values and
 * fill tokens carry the id: nothing from before a restart is taken as
 * current after it. The check runs before any other command on the
 * connection, so no command ever reaches a new incarnation unchecked.
 *
 * Thread safety: every function may be called from any thread; a context
 * taken with redis_pool_take belongs to the caller until it gives it
 * back. */
#ifndef STRATA_REDIS_CONN_H
#define STRATA_REDIS_CONN_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"

#define REDIS_PREFIX_MAX 64
#define REDIS_INC_MAX    24 /* an incarnation id: decimal, at most 19 digits */

typedef struct redis_url {
    char host[256];
    int port;
    int db;
    char user[128];
    char password[256];
    char prefix[REDIS_PREFIX_MAX + 1];
    int timeout_ms;
} redis_url;

/* Parses url (redis://...). SERR_INVALID naming what is wrong;
 * SERR_UNAVAILABLE for rediss://. *out is unspecified on failure. */
int redis_url_parse(const char *url, redis_url *out, strata_error *err);

/* A new connection, authenticated, on its database, its memory policy
 * checked (allkeys-* is refused: it could evict fences), its incarnation
 * checked (the id into inc, REDIS_INC_MAX bytes), with the command timeout
 * set. NULL with *err set: SERR_UNAVAILABLE (the server cannot be reached
 * or the connection was lost), SERR_INVALID (the server answered no:
 * credentials, database, memory policy; waiting will not help),
 * SERR_CORRUPT (PREFIX:inc holds something that is not Strata's), or
 * SERR_NOMEM. */
redisContext *redis_connect(const redis_url *u, char inc[REDIS_INC_MAX], strata_error *err);

typedef struct redis_pool redis_pool;

/* A pool of at most max connections to u (nothing connects yet). NULL
 * with SERR_NOMEM. */
redis_pool *redis_pool_new(const redis_url *u, int max);
/* Closes every idle connection; none may be taken. NULL is a no-op. */
void redis_pool_free(redis_pool *p);

/* A connection for the caller's exclusive use: an idle one, or a new one.
 * After a failure to connect, new connections are not tried again until a
 * backoff (50 ms, doubling to 2 s) has passed: meanwhile this fails at
 * once. NULL with SERR_UNAVAILABLE (the message names the cause). */
redisContext *redis_pool_take(redis_pool *p, strata_error *err);
/* Gives a connection back; one that failed (c->err set, or broken true:
 * a reply was not read in full) is closed instead. */
void redis_pool_give(redis_pool *p, redisContext *c, bool broken);

/* A Lua script: its text and, computed once, its SHA-1 in hex. */
typedef struct redis_script {
    const char *text;
    char sha[41];
} redis_script;

/* Fills s->sha from s->text. */
void redis_script_init(redis_script *s);

/* The most KEYS + ARGV a script takes. */
#define REDIS_SCRIPT_ARGS_MAX 61

/* Runs a script (EVALSHA, then EVAL when the server has forgotten it)
 * with nkeys KEYS then nargs ARGV (at most REDIS_SCRIPT_ARGS_MAX in all;
 * more is SERR_INTERNAL): argv/lens hold the keys first, then
 * the args. The reply (free it with freeReplyObject), or NULL with *err
 * set: SERR_UNAVAILABLE when the connection failed (c->err is then set:
 * give it back as broken), SERR_IO when the server answered with an error
 * (its text in the message). */
redisReply *redis_script_run(redisContext *c, const redis_script *s, int nkeys, int nargs,
                             const char **argv, const size_t *lens, strata_error *err);

/* Runs a command given as argv/lens. Same outcomes as redis_script_run. */
redisReply *redis_command(redisContext *c, int argc, const char **argv, const size_t *lens,
                          strata_error *err);

#endif
