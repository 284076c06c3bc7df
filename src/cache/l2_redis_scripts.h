/* The Lua scripts of the Redis L2 (one per operation, each atomic in
 * Redis). Private to l2_redis.c; kept apart so that the C reads as C.
 *
 * Keys, under the deployment's prefix P (no ':' in P or in a namespace,
 * so every name below parses one way):
 *   P:inc            hash {run, id}: the server's incarnation (redis_conn.h)
 *   P:seq            the counter behind write ids, fence ids and changes
 *   P:kb:<i>         seq of the latest change of a key in key bucket i
 *   P:nb:<i>         seq of the latest clear of a namespace in ns bucket i
 *   P:v:<ns>:<key>   a value: hash {i: incarnation, w: write id,
 *                    m: "raw codec expires_ms content-type", d: bytes},
 *                    always with an expiry (so volatile-* policies may
 *                    evict it); nothing else has one
 *   P:f:<ns>:<key>   open fences: zset of fence id scored by expiry (ms,
 *                    Redis' clock); never evicted, swept when checked
 *   P:z:<ns>         hash key -> "size expires_ms": what the namespace
 *                    holds, for items and bytes without a scan
 *   P:s:<ns>         hash of counters: hits misses sets deletes
 *                    expirations evictions items bytes
 *   P:nss            set of namespaces with values (for the sweeper)
 *   P:lru            zset of value names scored by last use (Redis' ms)
 *   P:total          bytes of every value, for the max_bytes budget
 *   P:inv            the invalidation channel (redis_inval.h) */
#ifndef STRATA_L2_REDIS_SCRIPTS_H
#define STRATA_L2_REDIS_SCRIPTS_H

/* Shared by the scripts (every script's KEYS[1] starts with "P:"): Redis'
 * clock in ms; the removal of a key's size record and LRU entry, counted
 * as an expiry (its time passed), an eviction, or neither (a delete); and
 * eviction of the least recently used values while the total is over a
 * budget. */
#define LUA_COMMON                                                                                 \
    "local P = string.match(KEYS[1], '^([^:]+):')\n"                                               \
    "local function now_ms()\n"                                                                    \
    "  local t = redis.call('TIME')\n"                                                             \
    "  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"                         \
    "end\n"                                                                                        \
    "local function unsize(zkey, skey, key, kind, now)\n"                                          \
    "  local ns = string.sub(zkey, #P + 4)\n"                                                      \
    "  redis.call('ZREM', P .. ':lru', P .. ':v:' .. ns .. ':' .. key)\n"                          \
    "  local z = redis.call('HGET', zkey, key)\n"                                                  \
    "  if not z then return end\n"                                                                 \
    "  redis.call('HDEL', zkey, key)\n"                                                            \
    "  local sz, exp = string.match(z, '^(%d+) (%d+)$')\n"                                         \
    "  sz = tonumber(sz or '0')\n"                                                                 \
    "  redis.call('HINCRBY', skey, 'items', -1)\n"                                                 \
    "  redis.call('HINCRBY', skey, 'bytes', -sz)\n"                                                \
    "  redis.call('INCRBY', P .. ':total', -sz)\n"                                                 \
    "  if kind == 'evicted' then redis.call('HINCRBY', skey, 'evictions', 1)\n"                    \
    "  elseif kind == 'gone' then\n"                                                               \
    "    local e = tonumber(exp or '0')\n"                                                         \
    "    if e > 0 and e <= now then redis.call('HINCRBY', skey, 'expirations', 1)\n"               \
    "    else redis.call('HINCRBY', skey, 'evictions', 1) end\n"                                   \
    "  end\n"                                                                                      \
    "end\n"                                                                                        \
    "local function evict(max, keep, now)\n"                                                       \
    "  if max <= 0 then return end\n"                                                              \
    "  while tonumber(redis.call('GET', P .. ':total') or '0') > max do\n"                         \
    "    local m = redis.call('ZPOPMIN', P .. ':lru')\n"                                           \
    "    if #m == 0 then break end\n"                                                              \
    "    if m[1] == keep then\n"                                                                   \
    "      redis.call('ZADD', P .. ':lru', m[2], m[1])\n"                                          \
    "      break\n"                                                                                \
    "    end\n"                                                                                    \
    "    local ns, key = string.match(m[1], '^[^:]+:v:([^:]+):(.*)$')\n"                           \
    "    if ns then\n"                                                                             \
    "      redis.call('DEL', m[1])\n"                                                              \
    "      unsize(P .. ':z:' .. ns, P .. ':s:' .. ns, key, 'evicted', now)\n"                      \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "end\n"

/* get: KEYS vkey inc stats sizes nb kb; ARGV key max_len.
 * {1, write_id, meta, data, nseq, kseq, incarnation} or {0}: with the
 * value, the namespace and key buckets it is current under. */
#define LUA_GET                                                                                    \
    LUA_COMMON                                                                                     \
    "local inc = redis.call('HGET', KEYS[2], 'id')\n"                                              \
    "local v = redis.call('HMGET', KEYS[1], 'i', 'w', 'm')\n"                                      \
    "if inc and v[1] == inc then\n"                                                                \
    "  if redis.call('HSTRLEN', KEYS[1], 'd') > tonumber(ARGV[2]) then\n"                          \
    "    redis.call('HINCRBY', KEYS[3], 'misses', 1)\n"                                            \
    "    return {0}\n"                                                                             \
    "  end\n"                                                                                      \
    "  redis.call('HINCRBY', KEYS[3], 'hits', 1)\n"                                                \
    "  redis.call('ZADD', P .. ':lru', now_ms(), KEYS[1])\n"                                       \
    "  return {1, v[2], v[3], redis.call('HGET', KEYS[1], 'd'),\n"                                 \
    "          redis.call('GET', KEYS[5]) or '0', redis.call('GET', KEYS[6]) or '0', inc}\n"       \
    "end\n"                                                                                        \
    "if v[1] then redis.call('DEL', KEYS[1]) end\n"                                                \
    "redis.call('HINCRBY', KEYS[3], 'misses', 1)\n"                                                \
    "unsize(KEYS[4], KEYS[3], ARGV[1], 'gone', now_ms())\n"                                        \
    "return {0}\n"

/* set: KEYS vkey fkey kb nb seq inc stats sizes nss;
 * ARGV data meta ttl_ms key ns mode(set|fill) nseq kseq tokinc channel kbidx
 * max_bytes (0: no budget; otherwise least recently used values go until
 * the total fits).
 * A fill is refused ({0}) unless the incarnation, the namespace bucket
 * and the key bucket are as the token saw them and no fence stands; it
 * publishes nothing and leaves the buckets (a fill changes no token). An
 * unconditional set moves the key bucket and publishes.
 * {1, write_id, incarnation}. */
#define LUA_SET                                                                                    \
    LUA_COMMON                                                                                     \
    "local inc = redis.call('HGET', KEYS[6], 'id')\n"                                              \
    "if not inc then return redis.error_reply('STRATA no incarnation recorded') end\n"             \
    "local now = now_ms()\n"                                                                       \
    "if ARGV[6] == 'fill' then\n"                                                                  \
    "  if ARGV[9] ~= inc then return {0} end\n"                                                    \
    "  if (redis.call('GET', KEYS[4]) or '0') ~= ARGV[7] then return {0} end\n"                    \
    "  if (redis.call('GET', KEYS[3]) or '0') ~= ARGV[8] then return {0} end\n"                    \
    "  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)\n"                                     \
    "  if redis.call('ZCARD', KEYS[2]) > 0 then return {0} end\n"                                  \
    "end\n"                                                                                        \
    "local id = redis.call('INCR', KEYS[5])\n"                                                     \
    "local ttl = tonumber(ARGV[3])\n"                                                              \
    "redis.call('DEL', KEYS[1])\n"                                                                 \
    "redis.call('HSET', KEYS[1], 'i', inc, 'w', id, 'm', ARGV[2], 'd', ARGV[1])\n"                 \
    "redis.call('PEXPIRE', KEYS[1], ttl)\n"                                                        \
    "local sz = string.len(ARGV[1])\n"                                                             \
    "local old = redis.call('HGET', KEYS[8], ARGV[4])\n"                                           \
    "local delta = sz\n"                                                                           \
    "if old then\n"                                                                                \
    "  delta = sz - tonumber(string.match(old, '^%d+') or '0')\n"                                  \
    "else\n"                                                                                       \
    "  redis.call('HINCRBY', KEYS[7], 'items', 1)\n"                                               \
    "end\n"                                                                                        \
    "redis.call('HINCRBY', KEYS[7], 'bytes', delta)\n"                                             \
    "redis.call('INCRBY', P .. ':total', delta)\n"                                                 \
    "redis.call('ZADD', P .. ':lru', now, KEYS[1])\n"                                              \
    "redis.call('HSET', KEYS[8], ARGV[4], string.format('%d %d', sz, now + ttl))\n"                \
    "redis.call('SADD', KEYS[9], ARGV[5])\n"                                                       \
    "redis.call('HINCRBY', KEYS[7], 'sets', 1)\n"                                                  \
    "evict(tonumber(ARGV[12]), KEYS[1], now)\n"                                                    \
    "if ARGV[6] ~= 'fill' then\n"                                                                  \
    "  redis.call('SET', KEYS[3], id)\n"                                                           \
    "  redis.call('PUBLISH', ARGV[10], string.format('K %d %s', id, ARGV[11]))\n"                  \
    "end\n"                                                                                        \
    "return {1, id, inc}\n"

/* del / fence: KEYS vkey fkey kb seq inc stats sizes;
 * ARGV key channel kbidx mode(del|fence) hold_ms fence-ids-to-close...
 * Removes the value, moves the key bucket and publishes; a fence also
 * records a fence (id = this change's seq) until now + hold_ms; a del
 * closes the fences named. {live(0|1), seq}. */
#define LUA_CHANGE                                                                                 \
    LUA_COMMON                                                                                     \
    "local inc = redis.call('HGET', KEYS[5], 'id')\n"                                              \
    "if not inc then return redis.error_reply('STRATA no incarnation recorded') end\n"             \
    "local now = now_ms()\n"                                                                       \
    "local id = redis.call('INCR', KEYS[4])\n"                                                     \
    "redis.call('SET', KEYS[3], id)\n"                                                             \
    "local live = 0\n"                                                                             \
    "local vi = redis.call('HGET', KEYS[1], 'i')\n"                                                \
    "if vi then\n"                                                                                 \
    "  redis.call('DEL', KEYS[1])\n"                                                               \
    "  if vi == inc then live = 1 end\n"                                                           \
    "end\n"                                                                                        \
    "unsize(KEYS[7], KEYS[6], ARGV[1], live == 1 and 'deleted' or 'gone', now)\n"                  \
    "if live == 1 then redis.call('HINCRBY', KEYS[6], 'deletes', 1) end\n"                         \
    "if ARGV[4] == 'fence' then\n"                                                                 \
    "  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), id)\n"                                 \
    "else\n"                                                                                       \
    "  for i = 6, #ARGV do redis.call('ZREM', KEYS[2], ARGV[i]) end\n"                             \
    "end\n"                                                                                        \
    "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)\n"                                       \
    "if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('DEL', KEYS[2]) end\n"                   \
    "redis.call('PUBLISH', ARGV[2], string.format('K %d %s', id, ARGV[3]))\n"                      \
    "return {live, id}\n"

/* clear, first step: KEYS nb seq; ARGV channel nbidx. Moves the
 * namespace bucket (every key's token) and publishes. */
#define LUA_CLEAR_NS                                                                               \
    "local id = redis.call('INCR', KEYS[2])\n"                                                     \
    "redis.call('SET', KEYS[1], id)\n"                                                             \
    "redis.call('PUBLISH', ARGV[1], string.format('N %d %s', id, ARGV[2]))\n"                      \
    "return id\n"

/* clear, per batch of keys SCAN found: KEYS stats sizes inc vkey...;
 * ARGV key... (the same order). Removes each value; returns the keys
 * that held a live one. Also the sweeper's step (mode in ARGV[1]:
 * "clear" removes, "sweep" only drops the size records of values that
 * are gone), ARGV[2..] the keys. */
#define LUA_REMOVE                                                                                 \
    LUA_COMMON                                                                                     \
    "local inc = redis.call('HGET', KEYS[3], 'id')\n"                                              \
    "local now = now_ms()\n"                                                                       \
    "local out = {}\n"                                                                             \
    "for i = 4, #KEYS do\n"                                                                        \
    "  local key = ARGV[i - 2]\n"                                                                  \
    "  local vi = redis.call('HGET', KEYS[i], 'i')\n"                                              \
    "  if ARGV[1] == 'clear' then\n"                                                               \
    "    if vi then redis.call('DEL', KEYS[i]) end\n"                                              \
    "    if vi and vi == inc then\n"                                                               \
    "      out[#out + 1] = key\n"                                                                  \
    "      redis.call('HINCRBY', KEYS[1], 'deletes', 1)\n"                                         \
    "      unsize(KEYS[2], KEYS[1], key, 'deleted', now)\n"                                        \
    "    else\n"                                                                                   \
    "      unsize(KEYS[2], KEYS[1], key, 'gone', now)\n"                                           \
    "    end\n"                                                                                    \
    "  elseif not vi then\n"                                                                       \
    "    unsize(KEYS[2], KEYS[1], key, 'gone', now)\n"                                             \
    "  end\n"                                                                                      \
    "end\n"                                                                                        \
    "return out\n"

#endif
